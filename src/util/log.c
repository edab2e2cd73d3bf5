/* Logging: one line per message on stderr, which the daemon's supervisor (or
 * the terminal) collects. Timestamps are UTC so logs from hosts compare. */
#include "util.h"

#include <sys/time.h>

static gr_log_level current_level = GR_LOG_INFO;

void gr_log_set_level(gr_log_level level)
{
    current_level = level;
}

int gr_log_parse_level(const char *name, gr_log_level *out)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(name, names[i]) == 0) {
            *out = (gr_log_level)i;
            return 0;
        }
    }
    return -1;
}

void gr_log(gr_log_level level, const char *fmt, ...)
{
    static const char *const tags[] = {"debug", "info", "warn", "error"};
    if (level < current_level)
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char line[2048];
    int off = (int)strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    off += snprintf(line + off, sizeof(line) - (size_t)off, ".%03dZ %-5s ",
                    (int)(tv.tv_usec / 1000), tags[level]);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)off + (n < 0 ? 0 : (size_t)n);
    if (len > sizeof(line) - 2)
        len = sizeof(line) - 2;
    line[len++] = '\n';
    /* One write() per line, so lines from threads do not interleave. */
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}

void gr_die(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    fprintf(stderr, "granary: %s\n", msg);
    exit(1);
}
