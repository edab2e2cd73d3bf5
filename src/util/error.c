/* The project's error convention (see util.h and docs/conventions.md): an
 * error is a heap-allocated message plus the errno that caused it. */
#include "util.h"

__attribute__((format(printf, 1, 0))) static char *vformat(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return gr_strdup("(unformattable error message)");
    char *s = gr_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

int gr_make_error(gr_error_t *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *msg = vformat(fmt, ap);
    va_end(ap);

    gr_error *e = gr_calloc(1, sizeof(*e));
    e->status = status;
    e->msg = status ? gr_asprintf("%s: %s", msg, strerror(status)) : gr_steal_pointer(&msg);
    if (*err) /* a bug in the caller, but never lose the first error */
        gr_error_release(err);
    *err = e;
    return -1;
}

int gr_error_prefix(gr_error_t *err, const char *fmt, ...)
{
    if (*err == NULL)
        return gr_make_error(err, 0, "unknown error");
    va_list ap;
    va_start(ap, fmt);
    _cleanup_free_ char *ctx = vformat(fmt, ap);
    va_end(ap);
    char *msg = gr_asprintf("%s: %s", ctx, (*err)->msg);
    free((*err)->msg);
    (*err)->msg = msg;
    return -1;
}

void gr_error_release(gr_error_t *err)
{
    if (err == NULL || *err == NULL)
        return;
    free((*err)->msg);
    free(*err);
    *err = NULL;
}

const char *gr_error_msg(const gr_error *err)
{
    return err ? err->msg : "(no error)";
}
