/* Granary's shared utilities: the error convention, logging, checked
 * allocation, cleanup attributes and small string helpers that every other
 * part of the tree uses. See docs/conventions.md for the rules they encode. */
#ifndef GRANARY_UTIL_H
#define GRANARY_UTIL_H

/* System headers that declare the banned functions come first, so that the
 * banning macros at the end of this file cannot break their declarations. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GRANARY_VERSION "0.1.0"

/* ---- errors -------------------------------------------------------------
 * A function that can fail takes `gr_error_t *err` as its last argument and
 * returns a negative value on failure, having filled *err. Callers either
 * handle the error and release it, or add context with gr_error_prefix() and
 * return it upwards. *err must be NULL on entry. */

typedef struct gr_error {
    int status; /* an errno value, or 0 when the error is not a system error */
    char *msg;  /* the full human-readable message, owned by the error */
} gr_error;

typedef gr_error *gr_error_t;

/* Sets *err to a new error formatted from fmt, followed by ": strerror(status)"
 * when status is non-zero. Always returns -1, so `return gr_make_error(...)`
 * reads as one line. */
int gr_make_error(gr_error_t *err, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to the message of *err (which must be set). Returns -1. */
int gr_error_prefix(gr_error_t *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Frees *err if set and sets it to NULL. Safe on NULL. */
void gr_error_release(gr_error_t *err);

/* The message of err, or "(no error)" when err is NULL. Never NULL. */
const char *gr_error_msg(const gr_error *err);

/* ---- logging ------------------------------------------------------------ */

typedef enum { GR_LOG_DEBUG, GR_LOG_INFO, GR_LOG_WARN, GR_LOG_ERROR } gr_log_level;

/* Messages below the level are dropped. The default is GR_LOG_INFO. */
void gr_log_set_level(gr_log_level level);

/* Parses "debug", "info", "warn" or "error". Returns 0, or -1 when unknown. */
int gr_log_parse_level(const char *name, gr_log_level *out);

/* Writes one line to stderr: a UTC timestamp, the level, the message. */
void gr_log(gr_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define gr_debug(...) gr_log(GR_LOG_DEBUG, __VA_ARGS__)
#define gr_info(...) gr_log(GR_LOG_INFO, __VA_ARGS__)
#define gr_warn(...) gr_log(GR_LOG_WARN, __VA_ARGS__)
#define gr_error_log(...) gr_log(GR_LOG_ERROR, __VA_ARGS__)

/* Prints "granary: message" to stderr and exits with status 1. Only for main()
 * and for a child process before it execs. */
__attribute__((noreturn, format(printf, 1, 2))) void gr_die(const char *fmt, ...);

/* ---- memory -------------------------------------------------------------
 * Allocation failure is not recoverable in Granary: these abort with a message
 * instead of returning NULL, so callers never check. */

void *gr_malloc(size_t size);
void *gr_calloc(size_t n, size_t size);
void *gr_realloc(void *p, size_t size);
char *gr_strdup(const char *s);
char *gr_strndup(const char *s, size_t n);
/* Returns a newly allocated formatted string. */
char *gr_asprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- lists -----------------------------------------------------------------
 * An intrusive doubly-linked list: each member holds a gr_link, the list is
 * a gr_link *head (NULL when empty), and gr_container_of gets the member
 * back. A link not in a list has prev NULL, so removing it twice is safe. */
typedef struct gr_link {
    struct gr_link *next, **prev;
} gr_link;

#define gr_container_of(ptr, type, member) ((type *)((char *)(ptr) - offsetof(type, member)))

static inline void gr_link_push(gr_link **head, gr_link *l)
{
    l->next = *head;
    if (l->next)
        l->next->prev = &l->next;
    l->prev = head;
    *head = l;
}

static inline void gr_link_remove(gr_link *l)
{
    if (l->prev == NULL)
        return;
    *l->prev = l->next;
    if (l->next)
        l->next->prev = l->prev;
    l->next = NULL;
    l->prev = NULL;
}

/* ---- stashes --------------------------------------------------------------
 * A stash keeps freed blocks of one size for the next object of that type, per
 * thread: the objects made and freed for every request then come back without
 * the allocator. glibc's own per-thread cache holds 7 blocks of a size, fewer
 * than a batch of requests has alive at once; past it, blocks go through the
 * allocator's slow paths. Declare one per object type, used with one size only:
 *     static _Thread_local gr_stash calls;
 * A block from a stash is ordinary heap memory (free() is also right for it),
 * and any block of at least the stash's size may be given to it. Sanitizer
 * builds keep nothing, so that a use after free is still caught. */
#if defined(__SANITIZE_ADDRESS__)
#define GR_STASH_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GR_STASH_MAX 0
#endif
#endif
#ifndef GR_STASH_MAX
#define GR_STASH_MAX 64
#endif

typedef struct gr_stash {
    void *blocks[GR_STASH_MAX ? GR_STASH_MAX : 1];
    unsigned n;
} gr_stash;

/* A block given back earlier (its contents as they were), or NULL. */
static inline void *gr_stash_take(gr_stash *s)
{
    return s->n ? s->blocks[--s->n] : NULL;
}

/* Keeps p for a later take; false when the stash is full (or keeps nothing),
 * and the caller frees p itself. */
static inline bool gr_stash_keep(gr_stash *s, void *p)
{
#if GR_STASH_MAX
    if (s->n < GR_STASH_MAX) {
        s->blocks[s->n++] = p;
        return true;
    }
#else
    (void)s;
    (void)p;
#endif
    return false;
}

/* A zeroed block of size bytes: a kept one, else a new one. */
static inline void *gr_stash_zalloc(gr_stash *s, size_t size)
{
    void *p = gr_stash_take(s);
    return p ? memset(p, 0, size) : gr_calloc(1, size);
}

/* Keeps p, or frees it when the stash is full. p may be NULL. */
static inline void gr_stash_free(gr_stash *s, void *p)
{
    if (p && !gr_stash_keep(s, p))
        free(p);
}

/* ---- cleanup attributes -------------------------------------------------
 * A variable declared with one of these is released when it goes out of
 * scope. To hand the value on, take it with gr_steal_pointer() / gr_steal_fd(),
 * which return it and leave the variable empty. */

void gr_freep(void *pp);
void gr_closep(int *fdp);
void gr_fclosep(FILE **fp);

#define _cleanup_free_ __attribute__((cleanup(gr_freep)))
#define _cleanup_close_ __attribute__((cleanup(gr_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(gr_fclosep)))
#define _cleanup_error_ __attribute__((cleanup(gr_error_release)))

static inline void *gr_steal_pointer_impl(void **pp)
{
    void *p = *pp;
    *pp = NULL;
    return p;
}
#define gr_steal_pointer(pp) gr_steal_pointer_impl((void **)(pp))

static inline int gr_steal_fd(int *fdp)
{
    int fd = *fdp;
    *fdp = -1;
    return fd;
}

/* ---- strings and buffers ------------------------------------------------ */

/* A growable byte buffer, always NUL-terminated after `len` bytes. */
typedef struct gr_buf {
    char *data;
    size_t len;
    size_t cap;
} gr_buf;

#define GR_BUF_INIT {NULL, 0, 0}

/* Makes room for extra more bytes (and the NUL) in one allocation. */
void gr_buf_reserve(gr_buf *b, size_t extra);
/* Inline: it runs for every piece of every request and response built. */
static inline void gr_buf_append(gr_buf *b, const void *data, size_t len)
{
    if (b->cap - b->len <= len) /* no room for len bytes and the NUL (or no buffer) */
        gr_buf_reserve(b, len);
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    b->data[b->len] = '\0';
}
void gr_buf_puts(gr_buf *b, const char *s);
void gr_buf_printf(gr_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Empties the buffer, keeping its memory for what comes next. */
void gr_buf_clear(gr_buf *b);
/* Frees the buffer's memory and resets it to empty. */
void gr_buf_release(gr_buf *b);
/* Buffers that most often stay within `block` bytes: gives an unallocated b
 * a block of that size (a kept one when s has one), and releases b, its
 * memory back to s when it is still that block. */
void gr_buf_from_stash(gr_buf *b, gr_stash *s, size_t block);
void gr_buf_release_to(gr_buf *b, gr_stash *s, size_t block);
/* Returns the buffer's data (caller frees) and resets the buffer. */
char *gr_buf_steal(gr_buf *b);

/* Copies src into dst of size dstsize, always terminating. Returns 0, or -1
 * (with dst holding a truncated copy) when src did not fit. */
int gr_strlcpy(char *dst, const char *src, size_t dstsize);

/* True when s starts with prefix. */
bool gr_starts_with(const char *s, const char *prefix);

/* Whether s has a byte below 0x20 or 0x7f (DEL): not fit for a name, a
 * title or a log line. */
bool gr_has_control_chars(const char *s);
/* Decodes the UTF-8 character at s (n > 0 bytes there): its length, with
 * *cp its code point, or 0 for a byte that does not begin a valid one
 * (overlong forms, surrogates and code points past U+10FFFF included). */
size_t gr_utf8_next(const char *s, size_t n, uint32_t *cp);
/* Whether a name shown to users (a file's, say) may hold code point c: not
 * a control character (C0, DEL, C1), nor one of the marks that reorder
 * text, which can make "gpj.exe" read as "exe.jpg". */
bool gr_name_char_ok(uint32_t c);

/* Removes leading and trailing ASCII whitespace in place; returns s moved
 * past the leading whitespace. */
char *gr_strstrip(char *s);

/* A new copy of the len bytes at s without leading and trailing spaces and
 * tabs (the optional whitespace of HTTP header fields). */
char *gr_strndup_trim(const char *s, size_t len);

/* Parses a whole decimal string into [min, max]. Returns 0, or -1 with err. */
int gr_parse_long(const char *s, long min, long max, long *out, gr_error_t *err);

/* Lowercases ASCII letters in place. */
void gr_ascii_lower(char *s);

/* ---- string-keyed index (index.c) ---------------------------------------
 * Finds values by a string key in constant time on average. The index keeps
 * the key pointer, not a copy: it must live as long as the entry (usually it
 * is a field of the value). One key may hold several values. Zero-initialise
 * to start; gr_index_release frees the index, not the values. */
typedef struct gr_index {
    struct gr_index_entry **slots;
    size_t nslots, count;
} gr_index;

void gr_index_add(gr_index *ix, const char *key, void *value);
/* Removes the entry of value under key; false if there is none. */
bool gr_index_remove(gr_index *ix, const char *key, const void *value);
/* A value under key that accept takes (NULL: any), or NULL. Which one, when
 * several are taken, is not defined. */
void *gr_index_find(const gr_index *ix, const char *key, bool (*accept)(const void *value));
void gr_index_release(gr_index *ix);

/* ---- files and randomness ----------------------------------------------- */

/* Reads a whole regular file of at most max_size bytes into a new
 * NUL-terminated buffer. Returns 0 and sets *out and *len, or -1 with err. */
int gr_read_file(const char *path, size_t max_size, char **out, size_t *len, gr_error_t *err);

/* Creates dir and its missing parents with the given mode; an existing
 * directory is fine. Returns 0, or -1 with err naming the failing path. */
int gr_mkdir_p(const char *dir, int mode, gr_error_t *err);

/* Removes dir and all under it, never following a symbolic link, giving
 * back to the owner the permissions it needs on the way (an app may have
 * closed a directory of its storage even to itself). Goes on past what it
 * cannot remove, then fails, naming the first such path, if anything is
 * left. 0 when dir is gone (or never was). Only for a tree nothing else
 * changes meanwhile: the walk goes by path. */
int gr_remove_tree(const char *dir, gr_error_t *err);

/* Fills buf with n random bytes from the kernel. Returns 0, or -1 with err. */
int gr_random_bytes(void *buf, size_t n, gr_error_t *err);

/* Writes 2n lowercase hex digits and a NUL for n bytes of data into out. */
void gr_hex(const void *data, size_t n, char *out);

/* Seconds since the Unix epoch, and a monotonic clock in nanoseconds. */
int64_t gr_now_unix(void);
uint64_t gr_monotonic_ns(void);

#include "banned.h"

#endif
