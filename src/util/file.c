/* Files, directories, randomness and clocks. */
#include "util.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>

int gr_read_file(const char *path, size_t max_size, char **out, size_t *len, gr_error_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return gr_make_error(err, errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gr_make_error(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return gr_make_error(err, 0, "%s is not a regular file", path);
    if ((uint64_t)st.st_size > max_size)
        return gr_make_error(err, 0, "%s is too large (%lld bytes, limit %zu)", path,
                             (long long)st.st_size, max_size);
    gr_buf b = GR_BUF_INIT;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            gr_buf_release(&b);
            return gr_make_error(err, e, "read %s", path);
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max_size) {
            gr_buf_release(&b);
            return gr_make_error(err, 0, "%s grew past the limit of %zu bytes", path, max_size);
        }
        gr_buf_append(&b, chunk, (size_t)n);
    }
    *len = b.len;
    *out = gr_buf_steal(&b);
    return 0;
}

int gr_mkdir_p(const char *dir, int mode, gr_error_t *err)
{
    if (*dir == '\0')
        return gr_make_error(err, 0, "empty directory name");
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    _cleanup_free_ char *path = gr_strdup(dir);
    size_t len = strlen(path);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        /* An existing parent may refuse mkdir with EACCES rather than
         * EEXIST (no write permission); that is fine when it exists. */
        if (mkdir(path, (mode_t)mode) < 0 && errno != EEXIST) {
            int e = errno;
            if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return gr_make_error(err, e, "create directory %s", path);
        }
        path[i] = saved;
    }
    if (stat(dir, &st) < 0)
        return gr_make_error(err, errno, "stat %s", dir);
    if (!S_ISDIR(st.st_mode))
        return gr_make_error(err, ENOTDIR, "%s", dir);
    return 0;
}

int gr_random_bytes(void *buf, size_t n, gr_error_t *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return gr_make_error(err, errno, "getrandom");
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int64_t gr_now_unix(void)
{
    return (int64_t)time(NULL);
}

uint64_t gr_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
