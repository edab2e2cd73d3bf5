/* A grain's log: the daemon appends what the grain writes on stdout and
 * stderr, and keeps the file under a cap by renaming it to "<path>.1" (the
 * one old file kept) and starting afresh, as Sandstorm does at 512 KiB. */
#include <fcntl.h>
#include <sys/stat.h>

#include "sandbox.h"
#include "util.h"

struct sbx_log {
    char *path;
    char *old_path;
    int fd;
    size_t size, max;
};

static int reopen(sbx_log *l, int extra, gr_error_t *err)
{
    gr_closep(&l->fd);
    l->fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW | extra, 0640);
    if (l->fd < 0)
        return gr_make_error(err, errno, "open log %s", l->path);
    struct stat st;
    if (fstat(l->fd, &st) < 0)
        return gr_make_error(err, errno, "stat log %s", l->path);
    l->size = (size_t)st.st_size;
    return 0;
}

int sbx_log_open(const char *path, size_t max_bytes, sbx_log **out, gr_error_t *err)
{
    sbx_log *l = gr_calloc(1, sizeof(*l));
    l->fd = -1;
    l->path = gr_strdup(path);
    l->old_path = gr_asprintf("%s.1", path);
    l->max = max_bytes ? max_bytes : SBX_LOG_MAX_BYTES;
    if (reopen(l, 0, err) < 0) {
        sbx_log_close(l);
        return -1;
    }
    *out = l;
    return 0;
}

static int write_all(sbx_log *l, const char *p, size_t len, gr_error_t *err)
{
    while (len > 0) {
        ssize_t n = write(l->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return gr_make_error(err, errno, "write log %s", l->path);
        p += n;
        len -= (size_t)n;
        l->size += (size_t)n;
    }
    return 0;
}

static int rotate(sbx_log *l, gr_error_t *err)
{
    if (rename(l->path, l->old_path) < 0)
        return gr_make_error(err, errno, "rotate log %s", l->path);
    return reopen(l, O_TRUNC, err);
}

int sbx_log_write(sbx_log *l, const void *data, size_t len, gr_error_t *err)
{
    const char *p = data;
    /* A single write larger than the cap keeps only its newest part. */
    if (len > l->max) {
        p += len - l->max;
        len = l->max;
    }
    while (len > l->max - l->size) {
        /* Rotate after the last whole line that still fits, so that lines
         * are not split between the two files when they can be kept whole. */
        size_t room = l->max - l->size, cut = 0;
        for (size_t i = room; i > 0 && !cut; i--)
            if (p[i - 1] == '\n')
                cut = i;
        if (!cut && l->size == 0)
            cut = room; /* one line longer than the whole file */
        if (write_all(l, p, cut, err) < 0 || rotate(l, err) < 0)
            return -1;
        p += cut;
        len -= cut;
    }
    return write_all(l, p, len, err);
}

void sbx_log_close(sbx_log *l)
{
    if (!l)
        return;
    gr_closep(&l->fd);
    free(l->path);
    free(l->old_path);
    free(l);
}
