/* Cap'n Proto in C: messages as arenas of segments, readers and builders over
 * them, stream framing (with an incremental reader for nonblocking sockets) and
 * the packed encoding. Generated code (capnpc-c) is a thin typed layer on top of
 * the functions here; docs/capnp.md explains the design.
 *
 * Errors: readers never fail per call. A reader that meets a malformed pointer,
 * a bound it cannot honour or an exhausted limit returns the default value and
 * records the first such problem in its message (the "sticky error"); callers
 * check it once with cp_message_check() after reading what they need. Functions
 * that deal with bytes from outside (framing, unpacking) follow the project
 * convention: `gr_error_t *err` last, negative return. */
#ifndef GRANARY_CAPNP_H
#define GRANARY_CAPNP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "util.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "cp_ assumes a little-endian host"
#endif

/* Limits a reader enforces unless told otherwise (the reference's defaults). */
#define CP_DEFAULT_TRAVERSAL_LIMIT_WORDS (8u * 1024u * 1024u)
#define CP_DEFAULT_NESTING_LIMIT 64
#define CP_DEFAULT_MAX_SEGMENTS 512
/* Largest framed message the stream reader accepts by default, in bytes. */
#define CP_DEFAULT_MAX_MESSAGE_BYTES (64u * 1024u * 1024u)

/* Returned by capability getters when the pointer is null or not a capability. */
#define CP_NO_CAP UINT32_MAX

/* ---- messages ------------------------------------------------------------ */

typedef struct cp_segment {
    uint64_t *words; /* little-endian words; not necessarily owned */
    uint32_t len;    /* words in use */
    uint32_t cap;    /* words allocated (builder); equal to len for a reader */
    bool owned;      /* freed by cp_message_release */
} cp_segment;

typedef struct cp_read_options {
    uint64_t traversal_limit_words; /* 0 means the default */
    unsigned nesting_limit;         /* 0 means the default */
    uint32_t max_segments;          /* 0 means the default */
} cp_read_options;

/* A message: the segments, the capability table that the RPC layer fills, the
 * read limits and the sticky error. Builders and readers point into it, so it
 * must outlive them and must not be moved while they exist. Segments of a
 * builder never move once allocated (new space goes into new segments). */
typedef struct cp_message {
    cp_segment *segs;
    uint32_t nsegs, segs_cap;
    uint32_t next_seg_words; /* size of the next segment a builder allocates */

    /* Capability table: pointer slots hold an index into it. Entries are opaque
     * to this layer. */
    void **caps;
    uint32_t ncaps, caps_cap;

    int64_t traversal_left; /* words left to read before the limit trips */
    unsigned nesting_limit;
    gr_error *error; /* first problem met while reading or building */
    void *owned_buf; /* one allocation holding all segments, for read messages */
    bool segs_in_buf; /* segs lives in owned_buf, in front of the frame */
    bool self_in_buf; /* this struct lives at the start of owned_buf (see
                         cp_stream_reader_take_message): cp_message_release frees it */
    bool owned_small; /* owned_buf is a CP__SMALL_READ block (goes back to a stash) */
} cp_message;

/* Starts an empty message to build; first_segment_words of 0 picks a default
 * (1024). Cannot fail. Release with cp_message_release. */
void cp_message_init(cp_message *m, uint32_t first_segment_words);

/* Frees the message's segments, cap table and error (not the struct). */
void cp_message_release(cp_message *m);

/* Reads a framed message (segment table then segments) from buf[0..len), which
 * must hold exactly one message (trailing bytes are an error). The bytes are
 * copied. Returns 0, or -1 with err (bad or truncated frame, too many segments).
 * opts may be NULL. */
int cp_message_read(cp_message *m, const void *buf, size_t len, const cp_read_options *opts,
                    gr_error_t *err);

/* Like cp_message_read for packed bytes. max_bytes bounds the unpacked size
 * (0 means CP_DEFAULT_MAX_MESSAGE_BYTES). */
int cp_message_read_packed(cp_message *m, const void *buf, size_t len, size_t max_bytes,
                           const cp_read_options *opts, gr_error_t *err);

/* Makes m read the given segments in place (no copy, not owned: they must
 * outlive m). Cannot fail; bad contents surface as the sticky error. */
void cp_message_init_segments(cp_message *m, const cp_segment *segs, uint32_t nsegs,
                              const cp_read_options *opts);

/* Inspects the start of a frame in buf[0..len). Returns 1 and sets *need to
 * the frame's total size once the segment table is complete, 0 and sets *need
 * to the bytes required to learn more when it is not, or -1 with err when the
 * table is invalid (too many segments, more than max_bytes; 0 means
 * CP_DEFAULT_MAX_MESSAGE_BYTES). opts may be NULL. */
int cp_frame_size(const void *buf, size_t len, size_t max_bytes, const cp_read_options *opts,
                  size_t *need, gr_error_t *err);

/* Like cp_message_read but without copying: m reads buf in place, so buf must
 * outlive m. */
int cp_message_open(cp_message *m, const void *buf, size_t len, const cp_read_options *opts,
                    gr_error_t *err);

/* Appends only the segment table of m's frame to out (the segments follow it
 * verbatim: m->segs[i].words, m->segs[i].len * 8 bytes), for writev. */
void cp_message_write_table(const cp_message *m, gr_buf *out);

/* Size of the framed form in bytes. */
size_t cp_message_frame_size(const cp_message *m);

/* Appends the framed message (segment table and segments) to out. */
void cp_message_write(const cp_message *m, gr_buf *out);

/* Appends the packed framed message to out. */
void cp_message_write_packed(const cp_message *m, gr_buf *out);

/* Writes the framed message to fd (blocking; retries short writes and EINTR).
 * Returns 0, or -1 with err. */
int cp_message_write_fd(const cp_message *m, int fd, gr_error_t *err);

/* Records a problem in m unless one is already recorded. Returns -1. */
int cp_message_fail(cp_message *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True while no problem has been recorded. */
static inline bool cp_message_ok(const cp_message *m)
{
    return m->error == NULL;
}

/* Returns 0 if no problem was recorded; otherwise moves the recorded error
 * into *err (m becomes ok again) and returns -1. */
int cp_message_check(cp_message *m, gr_error_t *err);

/* Restores the traversal budget, e.g. before reading the same message again. */
void cp_message_reset_limits(cp_message *m, const cp_read_options *opts);

/* Appends cap to the capability table and returns its index. Cannot fail. */
uint32_t cp_message_add_cap(cp_message *m, void *cap);

/* The table entry at index, or NULL when index is out of range. */
void *cp_message_get_cap(const cp_message *m, uint32_t index);

/* ---- readers --------------------------------------------------------------
 * Readers are small values. A reader with msg == NULL reads trusted constant
 * words (defaults) without limits. All offsets into data sections are byte
 * offsets, except booleans which take a bit offset. */

typedef enum cp_elem_size {
    CP_ELEM_VOID = 0,
    CP_ELEM_BIT = 1,
    CP_ELEM_BYTE = 2,
    CP_ELEM_TWO_BYTES = 3,
    CP_ELEM_FOUR_BYTES = 4,
    CP_ELEM_EIGHT_BYTES = 5,
    CP_ELEM_POINTER = 6,
    CP_ELEM_COMPOSITE = 7,
} cp_elem_size;

typedef enum cp_ptr_kind {
    CP_PTR_NULL,
    CP_PTR_STRUCT,
    CP_PTR_LIST,
    CP_PTR_CAP,
    CP_PTR_INVALID,
} cp_ptr_kind;

typedef struct cp_struct_reader {
    cp_message *msg;
    const uint64_t *seg_start, *seg_end; /* bounds of the segment holding it */
    const uint8_t *data;
    const uint64_t *ptrs;
    uint32_t data_bytes;
    uint16_t nptrs;
    int16_t nesting; /* pointer hops still allowed below this struct */
} cp_struct_reader;

typedef struct cp_list_reader {
    cp_message *msg;
    const uint64_t *seg_start, *seg_end;
    const uint8_t *base; /* first element (after the tag for composite lists) */
    uint32_t len;        /* element count */
    uint32_t step_bits;  /* distance between elements */
    uint32_t data_bits;  /* data bits of each element */
    uint16_t nptrs;      /* pointers of each element */
    uint8_t elem_size;   /* cp_elem_size as encoded */
    int16_t nesting;
} cp_list_reader;

/* One pointer slot, for AnyPointer fields and generic code. */
typedef struct cp_ptr_reader {
    cp_message *msg;
    const uint64_t *seg_start, *seg_end;
    const uint64_t *ptr; /* NULL reads as a null pointer */
    int16_t nesting;
} cp_ptr_reader;

typedef struct cp_text {
    const char *str; /* NUL-terminated; "" when absent */
    size_t len;      /* without the NUL */
} cp_text;

typedef struct cp_data {
    const uint8_t *ptr;
    size_t len;
} cp_data;

/* The root struct of m (an empty struct when m has no root or on a problem). */
cp_struct_reader cp_message_root(cp_message *m);
cp_ptr_reader cp_message_root_ptr(cp_message *m);

/* An empty struct reader (all fields read as their defaults). */
cp_struct_reader cp_struct_reader_empty(void);

/* A reader over constant words that hold one root pointer followed by its
 * target, as capnpc-c emits for defaults and constants. Cannot fail. */
cp_ptr_reader cp_const_ptr(const uint64_t *words, size_t nwords);

/* Data section getters: each returns the stored value XOR def, so a field
 * beyond the data section (an older writer) reads as def. */
#define CP__DEFINE_GET(name, type)                                                                 \
    static inline type cp_get_##name(cp_struct_reader r, uint32_t off, type def)                   \
    {                                                                                              \
        type v = 0;                                                                                \
        if ((uint64_t)off + sizeof(type) <= r.data_bytes)                                          \
            memcpy(&v, r.data + off, sizeof(type));                                                \
        return (type)(v ^ def);                                                                    \
    }
CP__DEFINE_GET(u8, uint8_t)
CP__DEFINE_GET(u16, uint16_t)
CP__DEFINE_GET(u32, uint32_t)
CP__DEFINE_GET(u64, uint64_t)
CP__DEFINE_GET(i8, int8_t)
CP__DEFINE_GET(i16, int16_t)
CP__DEFINE_GET(i32, int32_t)
CP__DEFINE_GET(i64, int64_t)
#undef CP__DEFINE_GET

static inline bool cp_get_bool(cp_struct_reader r, uint32_t bit, bool def)
{
    bool v = (bit / 8u < r.data_bytes) && ((r.data[bit / 8u] >> (bit % 8u)) & 1u);
    return v != def;
}

static inline float cp_get_f32(cp_struct_reader r, uint32_t off, float def)
{
    uint32_t d, v;
    float f;
    memcpy(&d, &def, 4);
    v = cp_get_u32(r, off, d);
    memcpy(&f, &v, 4);
    return f;
}

static inline double cp_get_f64(cp_struct_reader r, uint32_t off, double def)
{
    uint64_t d, v;
    double f;
    memcpy(&d, &def, 8);
    v = cp_get_u64(r, off, d);
    memcpy(&f, &v, 8);
    return f;
}

/* The pointer slot idx of r (a null slot when idx >= r.nptrs). */
static inline cp_ptr_reader cp_get_ptr(cp_struct_reader r, uint16_t idx)
{
    cp_ptr_reader p = {r.msg, r.seg_start, r.seg_end, NULL, r.nesting};
    if (idx < r.nptrs)
        p.ptr = r.ptrs + idx;
    return p;
}

/* True when pointer slot idx is present and non-null. */
static inline bool cp_has_ptr(cp_struct_reader r, uint16_t idx)
{
    uint64_t w = 0;
    if (idx < r.nptrs)
        memcpy(&w, r.ptrs + idx, 8);
    return w != 0;
}

/* What the slot holds (after following far pointers). */
cp_ptr_kind cp_ptr_get_kind(cp_ptr_reader p);

/* Follows p to a struct. A null pointer yields def (a cp_const_ptr reader, or
 * an empty struct when def.ptr is NULL); a malformed one yields the empty
 * struct and records the problem. */
cp_struct_reader cp_ptr_get_struct(cp_ptr_reader p, cp_ptr_reader def);

/* Follows p to a list whose elements are expected to have the given encoded
 * size (CP_ELEM_COMPOSITE for struct lists). Compatible encodings are accepted
 * as the reference does (a struct list read as primitives reads each struct's
 * first field; a primitive list read as structs yields one-field structs). */
cp_list_reader cp_ptr_get_list(cp_ptr_reader p, cp_elem_size expected, cp_ptr_reader def);

/* Follows p to text: def (or "") when null; records a problem when the list is
 * not bytes or lacks its terminating NUL. */
cp_text cp_ptr_get_text(cp_ptr_reader p, const char *def);

/* Follows p to data: def (may be NULL, 0) when null. */
cp_data cp_ptr_get_data(cp_ptr_reader p, const void *def, size_t def_len);

/* The capability index p holds, or CP_NO_CAP when null (a non-capability
 * pointer also records a problem). */
uint32_t cp_ptr_get_cap(cp_ptr_reader p);

/* Shorthands on pointer slot idx of a struct. */
static inline cp_struct_reader cp_get_struct(cp_struct_reader r, uint16_t idx, cp_ptr_reader def)
{
    return cp_ptr_get_struct(cp_get_ptr(r, idx), def);
}
static inline cp_list_reader cp_get_list(cp_struct_reader r, uint16_t idx, cp_elem_size expected,
                                         cp_ptr_reader def)
{
    return cp_ptr_get_list(cp_get_ptr(r, idx), expected, def);
}
static inline cp_text cp_get_text(cp_struct_reader r, uint16_t idx, const char *def)
{
    return cp_ptr_get_text(cp_get_ptr(r, idx), def);
}
static inline cp_data cp_get_data(cp_struct_reader r, uint16_t idx, const void *def, size_t def_len)
{
    return cp_ptr_get_data(cp_get_ptr(r, idx), def, def_len);
}
static inline uint32_t cp_get_cap(cp_struct_reader r, uint16_t idx)
{
    return cp_ptr_get_cap(cp_get_ptr(r, idx));
}

/* The null pointer, for "no default". */
static inline cp_ptr_reader cp_ptr_null(void)
{
    cp_ptr_reader p = {0};
    return p;
}

/* List element getters. Indexes are not checked here beyond i < l.len (an
 * index out of range returns 0 / an empty value and records a problem). */
bool cp_list_get_bool(cp_list_reader l, uint32_t i);
uint8_t cp_list_get_u8(cp_list_reader l, uint32_t i);
uint16_t cp_list_get_u16(cp_list_reader l, uint32_t i);
uint32_t cp_list_get_u32(cp_list_reader l, uint32_t i);
uint64_t cp_list_get_u64(cp_list_reader l, uint32_t i);
float cp_list_get_f32(cp_list_reader l, uint32_t i);
double cp_list_get_f64(cp_list_reader l, uint32_t i);
/* Signed views of the same elements. */
static inline int8_t cp_list_get_i8(cp_list_reader l, uint32_t i)
{
    return (int8_t)cp_list_get_u8(l, i);
}
static inline int16_t cp_list_get_i16(cp_list_reader l, uint32_t i)
{
    return (int16_t)cp_list_get_u16(l, i);
}
static inline int32_t cp_list_get_i32(cp_list_reader l, uint32_t i)
{
    return (int32_t)cp_list_get_u32(l, i);
}
static inline int64_t cp_list_get_i64(cp_list_reader l, uint32_t i)
{
    return (int64_t)cp_list_get_u64(l, i);
}

/* Records an out-of-range list index in l's message. */
void cp__list_range_fail(cp_list_reader l, uint32_t i);

static inline cp_struct_reader cp_list_get_struct(cp_list_reader l, uint32_t i)
{
    if (__builtin_expect(i >= l.len || l.elem_size == CP_ELEM_BIT, 0)) {
        if (i >= l.len)
            cp__list_range_fail(l, i);
        cp_struct_reader e = cp_struct_reader_empty();
        e.msg = l.msg;
        return e;
    }
    const uint8_t *d = l.base + ((uint64_t)i * l.step_bits) / 8u;
    cp_struct_reader r = {l.msg,
                          l.seg_start,
                          l.seg_end,
                          d,
                          (const uint64_t *)(const void *)(d + l.data_bits / 8u),
                          l.data_bits / 8u,
                          l.nptrs,
                          l.nesting};
    return r;
}

static inline cp_ptr_reader cp_list_get_ptr(cp_list_reader l, uint32_t i)
{
    cp_ptr_reader p = {l.msg, l.seg_start, l.seg_end, NULL, l.nesting};
    if (__builtin_expect(i >= l.len, 0))
        cp__list_range_fail(l, i);
    else if (l.nptrs > 0)
        p.ptr = (const uint64_t *)(const void *)(l.base + ((uint64_t)i * l.step_bits) / 8u +
                                                 l.data_bits / 8u);
    return p;
}

static inline cp_text cp_list_get_text(cp_list_reader l, uint32_t i)
{
    return cp_ptr_get_text(cp_list_get_ptr(l, i), NULL);
}
static inline cp_data cp_list_get_data(cp_list_reader l, uint32_t i)
{
    return cp_ptr_get_data(cp_list_get_ptr(l, i), NULL, 0);
}

/* ---- builders -------------------------------------------------------------
 * Builders write into a message made by cp_message_init. Space is taken from
 * the segment holding the pointer when it fits, else from a new segment
 * reached through a far pointer. Allocation failure aborts; a request the
 * encoding cannot express (e.g. a list of more than 2^29 elements) records a
 * problem and returns a builder that discards writes. */

typedef struct cp_struct_builder {
    cp_message *msg;
    uint32_t seg; /* segment index holding the struct */
    uint8_t *data;
    uint64_t *ptrs;
    uint32_t data_bytes;
    uint16_t nptrs;
} cp_struct_builder;

typedef struct cp_list_builder {
    cp_message *msg;
    uint32_t seg;
    uint8_t *base; /* first element */
    uint32_t len;
    uint32_t step_bits;
    uint32_t data_bits;
    uint16_t nptrs;
    uint8_t elem_size;
} cp_list_builder;

typedef struct cp_ptr_builder {
    cp_message *msg;
    uint32_t seg;
    uint64_t *ptr; /* NULL discards writes */
} cp_ptr_builder;

/* Allocates the root struct of m with the given section sizes (in words) and
 * returns its builder. Replaces any previous root. */
cp_struct_builder cp_message_init_root(cp_message *m, uint16_t data_words, uint16_t ptr_words);

/* The root pointer slot of m (for a root that is not a struct, or a copy). */
cp_ptr_builder cp_message_root_builder(cp_message *m);

/* Data section setters: store v XOR def. Writes beyond the section are
 * ignored (cannot happen with generated code). */
#define CP__DEFINE_SET(name, type)                                                                 \
    static inline void cp_set_##name(cp_struct_builder b, uint32_t off, type v, type def)          \
    {                                                                                              \
        if ((uint64_t)off + sizeof(type) <= b.data_bytes) {                                        \
            type x = (type)(v ^ def);                                                              \
            memcpy(b.data + off, &x, sizeof(type));                                                \
        }                                                                                          \
    }
CP__DEFINE_SET(u8, uint8_t)
CP__DEFINE_SET(u16, uint16_t)
CP__DEFINE_SET(u32, uint32_t)
CP__DEFINE_SET(u64, uint64_t)
CP__DEFINE_SET(i8, int8_t)
CP__DEFINE_SET(i16, int16_t)
CP__DEFINE_SET(i32, int32_t)
CP__DEFINE_SET(i64, int64_t)
#undef CP__DEFINE_SET

static inline void cp_set_bool(cp_struct_builder b, uint32_t bit, bool v, bool def)
{
    if (bit / 8u < b.data_bytes) {
        uint8_t mask = (uint8_t)(1u << (bit % 8u));
        if (v != def)
            b.data[bit / 8u] |= mask;
        else
            b.data[bit / 8u] &= (uint8_t)~mask;
    }
}

static inline void cp_set_f32(cp_struct_builder b, uint32_t off, float v, float def)
{
    uint32_t x, d;
    memcpy(&x, &v, 4);
    memcpy(&d, &def, 4);
    cp_set_u32(b, off, x, d);
}

static inline void cp_set_f64(cp_struct_builder b, uint32_t off, double v, double def)
{
    uint64_t x, d;
    memcpy(&x, &v, 8);
    memcpy(&d, &def, 8);
    cp_set_u64(b, off, x, d);
}

/* Reads back what a builder holds. */
cp_struct_reader cp_struct_builder_as_reader(cp_struct_builder b);
cp_list_reader cp_list_builder_as_reader(cp_list_builder l);

/* The pointer slot idx of b (a discarding slot when idx >= b.nptrs). */
static inline cp_ptr_builder cp_builder_ptr(cp_struct_builder b, uint16_t idx)
{
    cp_ptr_builder p = {b.msg, b.seg, NULL};
    if (idx < b.nptrs)
        p.ptr = b.ptrs + idx;
    return p;
}

/* Each of these replaces what the slot held (the old object is abandoned in
 * place, as in the reference). */
cp_struct_builder cp_ptr_init_struct(cp_ptr_builder p, uint16_t data_words, uint16_t ptr_words);
/* A list of count primitives or pointers (elem is not CP_ELEM_COMPOSITE). */
cp_list_builder cp_ptr_init_list(cp_ptr_builder p, cp_elem_size elem, uint32_t count);
/* A list of count structs of the given size (composite, with a tag word). */
cp_list_builder cp_ptr_init_struct_list(cp_ptr_builder p, uint32_t count, uint16_t data_words,
                                        uint16_t ptr_words);
/* Copies len bytes of s and a NUL. */
void cp_ptr_set_text(cp_ptr_builder p, const char *s, size_t len);
void cp_ptr_set_data(cp_ptr_builder p, const void *d, size_t len);
void cp_ptr_set_cap(cp_ptr_builder p, uint32_t cap_index);
void cp_ptr_set_null(cp_ptr_builder p);
/* Deep-copies what src points to (struct, list, text, capability index) into
 * the slot. Problems reading src are recorded in src's message, and the copy
 * stops there. Capability indexes are copied as they are: a caller copying
 * between messages with different cap tables remaps them itself. */
void cp_ptr_set_copy(cp_ptr_builder p, cp_ptr_reader src);

/* Reads the slot back. */
cp_ptr_reader cp_ptr_builder_as_reader(cp_ptr_builder p);

/* The struct already in the slot when it is one and at least as large as
 * asked; otherwise a new one (copying nothing). Handy for re-entering a nested
 * builder. */
cp_struct_builder cp_ptr_get_struct_builder(cp_ptr_builder p, uint16_t data_words,
                                            uint16_t ptr_words);

/* Shorthands on pointer slot idx of a struct. */
static inline cp_struct_builder cp_init_struct(cp_struct_builder b, uint16_t idx,
                                               uint16_t data_words, uint16_t ptr_words)
{
    return cp_ptr_init_struct(cp_builder_ptr(b, idx), data_words, ptr_words);
}
static inline cp_list_builder cp_init_list(cp_struct_builder b, uint16_t idx, cp_elem_size elem,
                                           uint32_t count)
{
    return cp_ptr_init_list(cp_builder_ptr(b, idx), elem, count);
}
static inline cp_list_builder cp_init_struct_list(cp_struct_builder b, uint16_t idx, uint32_t count,
                                                  uint16_t data_words, uint16_t ptr_words)
{
    return cp_ptr_init_struct_list(cp_builder_ptr(b, idx), count, data_words, ptr_words);
}
static inline void cp_set_text(cp_struct_builder b, uint16_t idx, const char *s, size_t len)
{
    cp_ptr_set_text(cp_builder_ptr(b, idx), s, len);
}
static inline void cp_set_data(cp_struct_builder b, uint16_t idx, const void *d, size_t len)
{
    cp_ptr_set_data(cp_builder_ptr(b, idx), d, len);
}
static inline void cp_set_cap(cp_struct_builder b, uint16_t idx, uint32_t cap_index)
{
    cp_ptr_set_cap(cp_builder_ptr(b, idx), cap_index);
}

/* List element setters and element builders (i < l.len, else ignored). */
void cp_list_set_bool(cp_list_builder l, uint32_t i, bool v);
void cp_list_set_u8(cp_list_builder l, uint32_t i, uint8_t v);
void cp_list_set_u16(cp_list_builder l, uint32_t i, uint16_t v);
void cp_list_set_u32(cp_list_builder l, uint32_t i, uint32_t v);
void cp_list_set_u64(cp_list_builder l, uint32_t i, uint64_t v);
void cp_list_set_f32(cp_list_builder l, uint32_t i, float v);
void cp_list_set_f64(cp_list_builder l, uint32_t i, double v);
static inline void cp_list_set_i8(cp_list_builder l, uint32_t i, int8_t v)
{
    cp_list_set_u8(l, i, (uint8_t)v);
}
static inline void cp_list_set_i16(cp_list_builder l, uint32_t i, int16_t v)
{
    cp_list_set_u16(l, i, (uint16_t)v);
}
static inline void cp_list_set_i32(cp_list_builder l, uint32_t i, int32_t v)
{
    cp_list_set_u32(l, i, (uint32_t)v);
}
static inline void cp_list_set_i64(cp_list_builder l, uint32_t i, int64_t v)
{
    cp_list_set_u64(l, i, (uint64_t)v);
}

static inline cp_struct_builder cp_list_struct_at(cp_list_builder l, uint32_t i)
{
    cp_struct_builder b = {l.msg, l.seg, NULL, NULL, 0, 0};
    if (i < l.len && l.elem_size == CP_ELEM_COMPOSITE) {
        b.data = l.base + ((uint64_t)i * l.step_bits) / 8u;
        b.data_bytes = l.data_bits / 8u;
        b.ptrs = (uint64_t *)(void *)(b.data + b.data_bytes);
        b.nptrs = l.nptrs;
    }
    return b;
}

static inline cp_ptr_builder cp_list_ptr_at(cp_list_builder l, uint32_t i)
{
    cp_ptr_builder p = {l.msg, l.seg, NULL};
    if (i < l.len && l.nptrs > 0)
        p.ptr = (uint64_t *)(void *)(l.base + ((uint64_t)i * l.step_bits) / 8u + l.data_bits / 8u);
    return p;
}

/* ---- stream framing -------------------------------------------------------
 * An incremental reader for a nonblocking socket: feed it bytes as they come;
 * it says when a whole framed message is buffered and hands it over. */

typedef struct cp_stream_reader {
    uint8_t *buf;  /* room for the segment list, then the frame being assembled */
    size_t prefix; /* bytes before the frame (0 when it was not sized at once) */
    size_t len, cap; /* frame bytes held, and room for them */
    size_t need;      /* total bytes of the current frame, once known */
    uint32_t nsegs;   /* segments of the current frame, once known */
    size_t max_bytes; /* frame size limit */
    cp_read_options opts;
    bool small;       /* buf is a CP__SMALL_READ block */
} cp_stream_reader;

/* Read buffers of up to CP__SMALL_READ bytes (most RPC messages, with the
 * message struct and segment list in front) are blocks of that size, kept in
 * a per-thread stash when freed. Internal to the library. */
#define CP__SMALL_READ 1024u
void *cp__small_read_alloc(void);
void cp__small_read_free(void *buf);

/* opts and max_bytes (0 = CP_DEFAULT_MAX_MESSAGE_BYTES) apply to every message.
 * Cannot fail. */
void cp_stream_reader_init(cp_stream_reader *sr, size_t max_bytes, const cp_read_options *opts);
void cp_stream_reader_release(cp_stream_reader *sr);

/* Consumes bytes from data[0..len) up to the end of the current message and
 * sets *consumed. Returns 1 when a whole message is ready (take it with
 * cp_stream_reader_take before feeding the rest), 0 when more bytes are
 * needed, or -1 with err on a bad frame (segment count, size over the limit);
 * after an error the stream cannot be resynchronised. */
int cp_stream_reader_feed(cp_stream_reader *sr, const void *data, size_t len, size_t *consumed,
                          gr_error_t *err);

/* Moves the ready message into m (which must not be initialised) and resets
 * the reader for the next one. Returns 0, or -1 with err when no message is
 * ready. */
int cp_stream_reader_take(cp_stream_reader *sr, cp_message *m, gr_error_t *err);
/* Like cp_stream_reader_take, into a message it allocates: most often in the
 * frame's own buffer, so that a message read costs one allocation. Returns
 * NULL with err as take does. Free with cp_message_release alone when
 * m->self_in_buf, else with cp_message_release and free. */
cp_message *cp_stream_reader_take_message(cp_stream_reader *sr, gr_error_t *err);

/* ---- packed encoding ----------------------------------------------------- */

/* Appends the packed form of words[0..nwords) to out. */
void cp_pack(const uint64_t *words, size_t nwords, gr_buf *out);

/* Appends the unpacked bytes of in[0..len) to out, refusing to produce more
 * than max_bytes. Returns 0, or -1 with err (truncated input, over the limit). */
int cp_unpack(const void *in, size_t len, size_t max_bytes, gr_buf *out, gr_error_t *err);

/* The RPC layer, over the encoding above. */
#include "rpc.h"

#endif
