/* Checked allocation, cleanup helpers and the growable buffer. */
#include "util.h"

static void oom(size_t size)
{
    char msg[96];
    int n = snprintf(msg, sizeof(msg), "granary: out of memory allocating %zu bytes\n", size);
    ssize_t w = write(STDERR_FILENO, msg, (size_t)n);
    (void)w;
    abort();
}

/* A size that does not fit in size_t: no allocation could be right. */
static void overflow(size_t a, size_t b)
{
    char msg[128];
    int n = snprintf(msg, sizeof(msg), "granary: allocation size overflows (%zu and %zu)\n", a, b);
    ssize_t w = write(STDERR_FILENO, msg, (size_t)n);
    (void)w;
    abort();
}

void *gr_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (p == NULL)
        oom(size);
    return p;
}

/* glibc's calloc always takes the allocator's slow path (it has no use for
 * the per-thread cache), where malloc of a small size is served from the
 * cache: small zeroed blocks are malloc and memset, about a tenth of the
 * instructions. Large ones keep calloc, which can skip zeroing fresh pages. */
#define SMALL_CALLOC 1024

void *gr_calloc(size_t n, size_t size)
{
    size_t bytes;
    if (__builtin_mul_overflow(n, size, &bytes))
        overflow(n, size);
    if (bytes <= SMALL_CALLOC)
        return memset(gr_malloc(bytes), 0, bytes);
    void *p = calloc(n, size);
    if (p == NULL)
        oom(bytes);
    return p;
}

void *gr_realloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    if (q == NULL)
        oom(size);
    return q;
}

char *gr_strdup(const char *s)
{
    return gr_strndup(s, strlen(s));
}

char *gr_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = gr_malloc(len + 1);
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *gr_asprintf(const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char *s = gr_malloc((size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return s;
}

void gr_freep(void *pp)
{
    void **p = pp;
    free(*p);
    *p = NULL;
}

void gr_closep(int *fdp)
{
    if (*fdp >= 0) {
        int saved = errno;
        close(*fdp);
        errno = saved;
    }
    *fdp = -1;
}

void gr_fclosep(FILE **fp)
{
    if (*fp)
        fclose(*fp);
    *fp = NULL;
}

void gr_buf_reserve(gr_buf *b, size_t extra)
{
    if (extra > SIZE_MAX - b->len - 1)
        overflow(b->len, extra);
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    b->data = gr_realloc(b->data, cap);
    b->cap = cap;
}

void gr_buf_puts(gr_buf *b, const char *s)
{
    gr_buf_append(b, s, strlen(s));
}

void gr_buf_printf(gr_buf *b, const char *fmt, ...)
{
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    gr_buf_reserve(b, (size_t)n);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    b->len += (size_t)n;
}

void gr_buf_from_stash(gr_buf *b, gr_stash *s, size_t block)
{
    if (b->data)
        return;
    b->data = gr_stash_take(s);
    if (b->data == NULL)
        b->data = gr_malloc(block);
    b->cap = block;
    b->len = 0;
    b->data[0] = '\0';
}

void gr_buf_release_to(gr_buf *b, gr_stash *s, size_t block)
{
    if (b->data && b->cap == block) {
        gr_stash_free(s, b->data);
        *b = (gr_buf)GR_BUF_INIT;
        return;
    }
    gr_buf_release(b);
}

void gr_buf_clear(gr_buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void gr_buf_release(gr_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *gr_buf_steal(gr_buf *b)
{
    if (b->data == NULL)
        return gr_strdup("");
    char *d = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
