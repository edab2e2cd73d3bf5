/* The Cap'n Proto wire layout: decoding pointers (with every bound, the
 * traversal budget and the nesting depth checked) for readers, and allocating
 * objects and encoding pointers for builders. Words are always accessed with
 * memcpy so that no alignment is assumed. */
#include <stdarg.h>

#include "capnp.h"

#define KIND_STRUCT 0u
#define KIND_LIST 1u
#define KIND_FAR 2u
#define KIND_OTHER 3u

/* Built messages start with a segment of DEFAULT_SEGMENT_WORDS (8 KiB) and
 * most RPC messages use a few dozen words of it. Released first segments are
 * zeroed over their used part and kept per thread (up to SEGMENTS_KEPT, in a
 * stash, util.h) for the next message, instead of a calloc of the whole
 * segment each time. */
#define SEGMENTS_KEPT 8
static _Thread_local gr_stash segment_stash;

/* Nearly every message also gets a segment list of FIRST_SEGS entries, and
 * most RPC messages a capability table of FIRST_CAPS: released ones of just
 * that size are kept per thread, in a stash each (util.h). A list block always
 * holds exactly segs_cap (caps_cap) entries, so the size alone says whether
 * it may go to the stash. */
#define FIRST_SEGS 4u
#define FIRST_CAPS 8u
enum { LIST_SEGS, LIST_CAPS };
static _Thread_local gr_stash list_stash[2];

static void *list_alloc(int which, size_t bytes)
{
    void *list = gr_stash_take(&list_stash[which]);
    return list ? list : gr_malloc(bytes);
}

static void list_free(int which, void *list, bool cacheable)
{
    if (list && (!cacheable || !gr_stash_keep(&list_stash[which], list)))
        free(list);
}

static inline uint64_t load64(const void *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void store64(void *p, uint64_t v)
{
    memcpy(p, &v, 8);
}

static inline uint32_t lo32(uint64_t w)
{
    return (uint32_t)w;
}

static inline uint32_t hi32(uint64_t w)
{
    return (uint32_t)(w >> 32);
}

/* The signed 30-bit word offset of a struct or list pointer. */
static inline int32_t ptr_offset(uint64_t w)
{
    return (int32_t)lo32(w) >> 2;
}

int cp_message_fail(cp_message *m, const char *fmt, ...)
{
    if (m == NULL || m->error != NULL)
        return -1;
    char buf[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    return gr_make_error(&m->error, 0, "%s", buf);
}

int cp_message_check(cp_message *m, gr_error_t *err)
{
    if (m->error == NULL)
        return 0;
    if (*err)
        gr_error_release(err);
    *err = gr_steal_pointer(&m->error);
    return -1;
}

void *cp_message_get_cap(const cp_message *m, uint32_t index)
{
    return index < m->ncaps ? m->caps[index] : NULL;
}

uint32_t cp_message_add_cap(cp_message *m, void *cap)
{
    if (m->ncaps == m->caps_cap) {
        if (m->caps_cap == 0) {
            m->caps = list_alloc(LIST_CAPS, FIRST_CAPS * sizeof(*m->caps));
            m->caps_cap = FIRST_CAPS;
        } else {
            m->caps_cap *= 2;
            m->caps = gr_realloc(m->caps, m->caps_cap * sizeof(*m->caps));
        }
    }
    m->caps[m->ncaps] = cap;
    return m->ncaps++;
}

/* ---- reading ------------------------------------------------------------- */

/* Where a pointer leads once far pointers are followed. */
typedef struct target {
    cp_message *msg;
    const uint64_t *seg_start, *seg_end;
    uint64_t tag; /* the pointer word that describes the object */
    int64_t pos;  /* word index of the object in its segment (unchecked) */
    int16_t nesting;
} target;

static int fail(cp_message *m, const char *what)
{
    return cp_message_fail(m, "malformed message: %s", what);
}

/* Follows p to its object; returns the kind (CP_PTR_NULL for null) and fills
 * *t. Malformed far pointers record a problem and yield CP_PTR_INVALID. */
static cp_ptr_kind resolve(cp_ptr_reader p, target *t)
{
    if (p.ptr == NULL)
        return CP_PTR_NULL;
    uint64_t w = load64(p.ptr);
    if (w == 0)
        return CP_PTR_NULL;
    t->msg = p.msg;
    t->seg_start = p.seg_start;
    t->seg_end = p.seg_end;
    t->nesting = p.nesting;
    if ((lo32(w) & 3u) == KIND_FAR) {
        cp_message *m = p.msg;
        if (m == NULL) {
            return CP_PTR_INVALID; /* constants are single-segment */
        }
        uint32_t id = hi32(w);
        bool dbl = (lo32(w) & 4u) != 0;
        uint64_t off = lo32(w) >> 3;
        if (id >= m->nsegs) {
            fail(m, "far pointer to a missing segment");
            return CP_PTR_INVALID;
        }
        const cp_segment *s = &m->segs[id];
        /* cap: a builder's segments are readable (zeroed) up to capacity; a
         * read message's cap equals its length. */
        if (off + (dbl ? 2u : 1u) > s->cap) {
            fail(m, "far pointer landing pad out of bounds");
            return CP_PTR_INVALID;
        }
        const uint64_t *pad = s->words + off;
        uint64_t pw = load64(pad);
        if (!dbl) {
            if ((lo32(pw) & 3u) == KIND_FAR) {
                fail(m, "far pointer landing pad is another far pointer");
                return CP_PTR_INVALID;
            }
            t->seg_start = s->words;
            t->seg_end = s->words + s->cap;
            t->tag = pw;
            t->pos = (int64_t)off + 1 + ptr_offset(pw);
            if ((lo32(pw) & 3u) == KIND_OTHER)
                t->pos = 0;
        } else {
            if ((lo32(pw) & 7u) != KIND_FAR) {
                fail(m, "double-far landing pad is not a single far pointer");
                return CP_PTR_INVALID;
            }
            uint32_t id2 = hi32(pw);
            if (id2 >= m->nsegs) {
                fail(m, "double-far landing pad names a missing segment");
                return CP_PTR_INVALID;
            }
            uint64_t tag = load64(pad + 1);
            if ((lo32(tag) & 3u) == KIND_FAR) {
                fail(m, "double-far tag is a far pointer");
                return CP_PTR_INVALID;
            }
            const cp_segment *s2 = &m->segs[id2];
            t->seg_start = s2->words;
            t->seg_end = s2->words + s2->cap;
            t->tag = tag;
            t->pos = (int64_t)(lo32(pw) >> 3);
        }
    } else {
        t->tag = w;
        t->pos = (p.ptr - p.seg_start) + 1 + ptr_offset(w);
    }
    switch (lo32(t->tag) & 3u) {
    case KIND_STRUCT:
        return CP_PTR_STRUCT;
    case KIND_LIST:
        return CP_PTR_LIST;
    case KIND_OTHER:
        if (lo32(t->tag) == KIND_OTHER)
            return CP_PTR_CAP;
        fail(p.msg, "unknown pointer type");
        return CP_PTR_INVALID;
    default:
        fail(p.msg, "far pointer where none is allowed");
        return CP_PTR_INVALID;
    }
}

/* Checks that words [pos, pos+n) lie in t's segment, charges them (at least
 * `charge` words) to the traversal budget and takes one level of nesting.
 * Returns false after recording the problem. */
static bool admit(target *t, int64_t n, int64_t charge, const char *what)
{
    int64_t seglen = t->seg_end - t->seg_start;
    if (t->pos < 0 || n < 0 || t->pos > seglen || n > seglen - t->pos) {
        cp_message_fail(t->msg, "malformed message: %s pointer out of bounds", what);
        return false;
    }
    if (t->msg == NULL)
        return true;
    if (t->nesting <= 0) {
        cp_message_fail(t->msg, "message exceeds the nesting limit");
        return false;
    }
    t->nesting--;
    if (charge < n)
        charge = n;
    if (t->msg->traversal_left < charge) {
        t->msg->traversal_left = 0;
        cp_message_fail(t->msg, "message exceeds the traversal limit");
        return false;
    }
    t->msg->traversal_left -= charge;
    return true;
}

cp_struct_reader cp_struct_reader_empty(void)
{
    static const uint64_t zero = 0;
    cp_struct_reader r = {0};
    r.seg_start = r.seg_end = &zero;
    r.data = (const uint8_t *)&zero;
    r.ptrs = &zero;
    r.nesting = 0;
    return r;
}

cp_ptr_reader cp_const_ptr(const uint64_t *words, size_t nwords)
{
    cp_ptr_reader p = {0};
    if (words == NULL || nwords == 0)
        return p;
    p.seg_start = words;
    p.seg_end = words + nwords;
    p.ptr = words;
    p.nesting = INT16_MAX;
    return p;
}

cp_ptr_reader cp_message_root_ptr(cp_message *m)
{
    cp_ptr_reader p = {0};
    p.msg = m;
    if (m->nsegs == 0 || m->segs[0].len == 0) {
        return p;
    }
    p.seg_start = m->segs[0].words;
    p.seg_end = m->segs[0].words + m->segs[0].cap;
    p.ptr = p.seg_start;
    p.nesting = (int16_t)(m->nesting_limit > INT16_MAX ? INT16_MAX : m->nesting_limit);
    return p;
}

cp_struct_reader cp_message_root(cp_message *m)
{
    return cp_ptr_get_struct(cp_message_root_ptr(m), cp_ptr_null());
}

cp_ptr_kind cp_ptr_get_kind(cp_ptr_reader p)
{
    target t;
    return resolve(p, &t);
}

static cp_struct_reader struct_at(const target *t, const uint64_t *where, uint32_t dw, uint16_t pw)
{
    cp_struct_reader r;
    r.msg = t->msg;
    r.seg_start = t->seg_start;
    r.seg_end = t->seg_end;
    r.data = (const uint8_t *)where;
    r.data_bytes = dw * 8u;
    r.ptrs = where + dw;
    r.nptrs = pw;
    r.nesting = t->nesting;
    return r;
}

cp_struct_reader cp_ptr_get_struct(cp_ptr_reader p, cp_ptr_reader def)
{
    target t;
    cp_ptr_kind k = resolve(p, &t);
    if (k == CP_PTR_NULL) {
        if (def.ptr != NULL)
            return cp_ptr_get_struct(def, cp_ptr_null());
        cp_struct_reader e = cp_struct_reader_empty();
        e.msg = p.msg;
        return e;
    }
    if (k != CP_PTR_STRUCT) {
        if (k != CP_PTR_INVALID)
            fail(p.msg, "expected a struct pointer");
        return cp_struct_reader_empty();
    }
    uint32_t dw = hi32(t.tag) & 0xffffu;
    uint16_t pw = (uint16_t)(hi32(t.tag) >> 16);
    if (!admit(&t, (int64_t)dw + pw, 0, "struct"))
        return cp_struct_reader_empty();
    return struct_at(&t, t.seg_start + t.pos, dw, pw);
}

static const uint32_t elem_bits[8] = {0, 1, 8, 16, 32, 64, 0, 0};

static cp_list_reader empty_list(cp_message *m)
{
    static const uint64_t zero = 0;
    cp_list_reader l = {0};
    l.msg = m;
    l.seg_start = l.seg_end = &zero;
    l.base = (const uint8_t *)&zero;
    return l;
}

cp_list_reader cp_ptr_get_list(cp_ptr_reader p, cp_elem_size expected, cp_ptr_reader def)
{
    target t;
    cp_ptr_kind k = resolve(p, &t);
    if (k == CP_PTR_NULL) {
        if (def.ptr != NULL)
            return cp_ptr_get_list(def, expected, cp_ptr_null());
        return empty_list(p.msg);
    }
    if (k != CP_PTR_LIST) {
        if (k != CP_PTR_INVALID)
            fail(p.msg, "expected a list pointer");
        return empty_list(p.msg);
    }
    cp_list_reader l = {0};
    l.msg = t.msg;
    l.seg_start = t.seg_start;
    l.seg_end = t.seg_end;
    uint8_t es = hi32(t.tag) & 7u;
    uint32_t count = hi32(t.tag) >> 3;
    l.elem_size = es;
    if (es == CP_ELEM_COMPOSITE) {
        uint32_t wc = count;
        if (!admit(&t, (int64_t)wc + 1, 0, "list"))
            return empty_list(p.msg);
        uint64_t tag = load64(t.seg_start + t.pos);
        if ((lo32(tag) & 3u) != KIND_STRUCT) {
            fail(t.msg, "composite list tag is not a struct pointer");
            return empty_list(p.msg);
        }
        uint32_t n = lo32(tag) >> 2;
        uint32_t dw = hi32(tag) & 0xffffu, pw = hi32(tag) >> 16;
        if ((uint64_t)n * (dw + pw) > wc) {
            fail(t.msg, "composite list elements overrun the list");
            return empty_list(p.msg);
        }
        if (dw + pw == 0 && t.msg != NULL) {
            /* Zero-sized elements cost a word each, so a huge count cannot
             * buy unbounded work for free. */
            if (t.msg->traversal_left < n) {
                t.msg->traversal_left = 0;
                cp_message_fail(t.msg, "message exceeds the traversal limit");
                return empty_list(p.msg);
            }
            t.msg->traversal_left -= n;
        }
        l.base = (const uint8_t *)(t.seg_start + t.pos + 1);
        l.len = n;
        l.step_bits = (dw + pw) * 64u;
        l.data_bits = dw * 64u;
        l.nptrs = (uint16_t)pw;
    } else {
        uint32_t step = es == CP_ELEM_POINTER ? 64u : elem_bits[es];
        uint64_t words = ((uint64_t)count * step + 63u) / 64u;
        int64_t charge = es == CP_ELEM_VOID ? (int64_t)count : 0;
        if (!admit(&t, (int64_t)words, charge, "list"))
            return empty_list(p.msg);
        l.base = (const uint8_t *)(t.seg_start + t.pos);
        l.len = count;
        l.step_bits = step;
        l.data_bits = elem_bits[es];
        l.nptrs = es == CP_ELEM_POINTER ? 1 : 0;
    }
    l.nesting = t.nesting;

    /* Accept the encodings the reference accepts for the expected type. */
    bool ok;
    if (expected == CP_ELEM_BIT)
        ok = es == CP_ELEM_BIT;
    else if (expected == CP_ELEM_COMPOSITE)
        ok = es != CP_ELEM_BIT;
    else if (es == CP_ELEM_BIT)
        ok = expected == CP_ELEM_VOID;
    else if (expected == CP_ELEM_POINTER)
        ok = l.nptrs >= 1;
    else
        ok = l.data_bits >= elem_bits[expected];
    if (!ok) {
        cp_message_fail(t.msg, "malformed message: list element size %u where %u was expected", es,
                        (unsigned)expected);
        return empty_list(p.msg);
    }
    return l;
}

/* Follows p to a list of bytes (text or data, named by what): the bytes and
 * *n, or NULL (null pointer, or a problem, recorded). */
static const uint8_t *byte_list(cp_ptr_reader p, const char *what, uint32_t *n)
{
    target t;
    cp_ptr_kind k = resolve(p, &t);
    if (k == CP_PTR_NULL || k == CP_PTR_INVALID)
        return NULL;
    if (k != CP_PTR_LIST || (hi32(t.tag) & 7u) != CP_ELEM_BYTE) {
        cp_message_fail(p.msg, "malformed message: expected %s", what);
        return NULL;
    }
    *n = hi32(t.tag) >> 3;
    if (!admit(&t, ((int64_t)*n + 7) / 8, 0, what))
        return NULL;
    return (const uint8_t *)(t.seg_start + t.pos);
}

cp_text cp_ptr_get_text(cp_ptr_reader p, const char *def)
{
    cp_text out = {def ? def : "", def ? strlen(def) : 0};
    uint32_t n = 0;
    const char *s = (const char *)byte_list(p, "text", &n);
    if (s == NULL)
        return out;
    if (n == 0 || s[n - 1] != '\0') {
        fail(p.msg, "text is not NUL-terminated");
        return out;
    }
    out.str = s;
    out.len = n - 1;
    return out;
}

cp_data cp_ptr_get_data(cp_ptr_reader p, const void *def, size_t def_len)
{
    cp_data out = {def, def ? def_len : 0};
    uint32_t n = 0;
    const uint8_t *d = byte_list(p, "data", &n);
    if (d != NULL) {
        out.ptr = d;
        out.len = n;
    }
    return out;
}

uint32_t cp_ptr_get_cap(cp_ptr_reader p)
{
    target t;
    cp_ptr_kind k = resolve(p, &t);
    if (k == CP_PTR_CAP)
        return hi32(t.tag);
    if (k != CP_PTR_NULL && k != CP_PTR_INVALID)
        fail(p.msg, "expected a capability pointer");
    return CP_NO_CAP;
}

void cp__list_range_fail(cp_list_reader l, uint32_t i)
{
    cp_message_fail(l.msg, "list index %u out of range (length %u)", i, l.len);
}

static bool list_index(cp_list_reader l, uint32_t i, uint32_t bits)
{
    if (i >= l.len) {
        cp__list_range_fail(l, i);
        return false;
    }
    return l.data_bits >= bits;
}

static inline const uint8_t *elem_ptr(cp_list_reader l, uint32_t i)
{
    return l.base + ((uint64_t)i * l.step_bits) / 8u;
}

bool cp_list_get_bool(cp_list_reader l, uint32_t i)
{
    if (!list_index(l, i, 1))
        return false;
    uint64_t bit = (uint64_t)i * l.step_bits;
    return (l.base[bit / 8u] >> (bit % 8u)) & 1u;
}

#define DEFINE_LIST_GET(name, type, bits)                                                          \
    type cp_list_get_##name(cp_list_reader l, uint32_t i)                                          \
    {                                                                                              \
        type v = 0;                                                                                \
        if (list_index(l, i, bits))                                                                \
            memcpy(&v, elem_ptr(l, i), sizeof(type));                                              \
        return v;                                                                                  \
    }
DEFINE_LIST_GET(u8, uint8_t, 8)
DEFINE_LIST_GET(u16, uint16_t, 16)
DEFINE_LIST_GET(u32, uint32_t, 32)
DEFINE_LIST_GET(u64, uint64_t, 64)
DEFINE_LIST_GET(f32, float, 32)
DEFINE_LIST_GET(f64, double, 64)
#undef DEFINE_LIST_GET

/* ---- building ------------------------------------------------------------ */

#define MAX_SEGMENT_WORDS (1u << 28)
#define DEFAULT_SEGMENT_WORDS 1024u

void cp_message_init(cp_message *m, uint32_t first_segment_words)
{
    memset(m, 0, sizeof(*m));
    m->next_seg_words = first_segment_words ? first_segment_words : DEFAULT_SEGMENT_WORDS;
    m->traversal_left = INT64_MAX;
    m->nesting_limit = CP_DEFAULT_NESTING_LIMIT;
}

static uint64_t *segment_alloc(uint32_t words)
{
    uint64_t *w = words == DEFAULT_SEGMENT_WORDS ? gr_stash_take(&segment_stash) : NULL;
    return w ? w : gr_calloc(words, 8);
}

static void segment_free(cp_segment *s)
{
    if (s->cap == DEFAULT_SEGMENT_WORDS && segment_stash.n < SEGMENTS_KEPT) {
        memset(s->words, 0, (size_t)s->len * 8);
        if (gr_stash_keep(&segment_stash, s->words))
            return;
    }
    free(s->words);
}

static _Thread_local gr_stash small_reads;

void *cp__small_read_alloc(void)
{
    void *buf = gr_stash_take(&small_reads);
    return buf ? buf : gr_malloc(CP__SMALL_READ);
}

void cp__small_read_free(void *buf)
{
    gr_stash_free(&small_reads, buf);
}

void cp_message_release(cp_message *m)
{
    for (uint32_t i = 0; i < m->nsegs; i++)
        if (m->segs[i].owned)
            segment_free(&m->segs[i]);
    if (!m->segs_in_buf) /* else the list lives in front of the frame */
        list_free(LIST_SEGS, m->segs, m->segs_cap == FIRST_SEGS);
    list_free(LIST_CAPS, m->caps, m->caps_cap == FIRST_CAPS);
    gr_error_release(&m->error);
    void *buf = m->owned_buf;
    bool small = m->owned_small;
    if (!m->self_in_buf) /* else m goes with its buffer */
        memset(m, 0, sizeof(*m));
    if (small)
        cp__small_read_free(buf);
    else
        free(buf);
}

static uint32_t new_segment(cp_message *m, uint32_t min_words)
{
    if (m->nsegs == 0 && m->segs_cap == 0) {
        m->segs = list_alloc(LIST_SEGS, FIRST_SEGS * sizeof(*m->segs));
        m->segs_cap = FIRST_SEGS;
    } else if (m->nsegs == m->segs_cap) {
        m->segs_cap *= 2;
        if (m->segs_in_buf) { /* move out of the read buffer */
            cp_segment *segs = gr_malloc(m->segs_cap * sizeof(*segs));
            memcpy(segs, m->segs, m->nsegs * sizeof(*segs));
            m->segs = segs;
            m->segs_in_buf = false;
        } else {
            m->segs = gr_realloc(m->segs, m->segs_cap * sizeof(*m->segs));
        }
    }
    uint32_t size = m->next_seg_words > min_words ? m->next_seg_words : min_words;
    cp_segment *s = &m->segs[m->nsegs];
    s->words = segment_alloc(size);
    s->len = 0;
    s->cap = size;
    s->owned = true;
    if (m->next_seg_words < MAX_SEGMENT_WORDS / 2)
        m->next_seg_words *= 2;
    return m->nsegs++;
}

/* Takes n zeroed words from segment seg if they fit. */
static inline uint64_t *take(cp_message *m, uint32_t seg, uint32_t n)
{
    cp_segment *s = &m->segs[seg];
    if (!s->owned || s->cap - s->len < n)
        return NULL;
    uint64_t *p = s->words + s->len;
    s->len += n;
    return p;
}

static uint64_t make_ptr(uint32_t kind, int64_t offset, uint32_t hi)
{
    uint32_t lo = ((uint32_t)(int32_t)offset << 2) | kind;
    return ((uint64_t)hi << 32) | lo;
}

/* Allocates n words for the object p will point to and writes the pointer
 * (kind, hi) into p, through a far pointer and landing pad when the object
 * cannot live in p's segment. Returns the object and sets *seg_out. */
static inline __attribute__((always_inline)) uint64_t *
alloc_obj(cp_ptr_builder p, uint32_t n, uint32_t kind, uint32_t hi, uint32_t *seg_out)
{
    cp_message *m = p.msg;
    uint64_t *obj = take(m, p.seg, n);
    if (obj != NULL) {
        *seg_out = p.seg;
        int64_t off = obj - p.ptr - 1;
        if (n == 0 && kind == KIND_STRUCT)
            off = -1; /* an empty struct must not encode as a null pointer */
        store64(p.ptr, make_ptr(kind, off, hi));
        return obj;
    }
    uint32_t seg = m->nsegs - 1;
    uint64_t *pad = m->nsegs > 0 ? take(m, seg, n + 1) : NULL;
    if (pad == NULL) {
        seg = new_segment(m, n + 1);
        pad = take(m, seg, n + 1);
    }
    store64(pad, make_ptr(kind, 0, hi));
    uint64_t far = ((uint64_t)seg << 32) | ((uint32_t)(pad - m->segs[seg].words) << 3) | KIND_FAR;
    store64(p.ptr, far);
    *seg_out = seg;
    return pad + 1;
}

cp_ptr_builder cp_message_root_builder(cp_message *m)
{
    cp_ptr_builder p = {m, 0, NULL};
    if (m->nsegs == 0) {
        new_segment(m, 1);
        take(m, 0, 1);
    }
    p.ptr = m->segs[0].words;
    return p;
}

cp_struct_builder cp_message_init_root(cp_message *m, uint16_t data_words, uint16_t ptr_words)
{
    return cp_ptr_init_struct(cp_message_root_builder(m), data_words, ptr_words);
}

static cp_struct_builder discard_struct(cp_message *m)
{
    cp_struct_builder b = {0};
    b.msg = m;
    return b;
}

cp_struct_builder cp_ptr_init_struct(cp_ptr_builder p, uint16_t data_words, uint16_t ptr_words)
{
    if (p.ptr == NULL)
        return discard_struct(p.msg);
    cp_struct_builder b;
    uint32_t hi = data_words | ((uint32_t)ptr_words << 16);
    uint64_t *obj = alloc_obj(p, (uint32_t)data_words + ptr_words, KIND_STRUCT, hi, &b.seg);
    b.msg = p.msg;
    b.data = (uint8_t *)obj;
    b.data_bytes = data_words * 8u;
    b.ptrs = obj + data_words;
    b.nptrs = ptr_words;
    return b;
}

static cp_list_builder discard_list(cp_message *m)
{
    cp_list_builder l = {0};
    l.msg = m;
    return l;
}

cp_list_builder cp_ptr_init_list(cp_ptr_builder p, cp_elem_size elem, uint32_t count)
{
    if (p.ptr == NULL)
        return discard_list(p.msg);
    if (elem == CP_ELEM_COMPOSITE)
        return cp_ptr_init_struct_list(p, count, 0, 0);
    if (count >= (1u << 29)) {
        cp_message_fail(p.msg, "list of %u elements is too long to encode", count);
        return discard_list(p.msg);
    }
    cp_list_builder l = {0};
    uint32_t step = elem == CP_ELEM_POINTER ? 64u : elem_bits[elem];
    uint32_t words = (uint32_t)(((uint64_t)count * step + 63u) / 64u);
    uint64_t *obj = alloc_obj(p, words, KIND_LIST, (count << 3) | elem, &l.seg);
    l.msg = p.msg;
    l.base = (uint8_t *)obj;
    l.len = count;
    l.step_bits = step;
    l.data_bits = elem_bits[elem];
    l.nptrs = elem == CP_ELEM_POINTER ? 1 : 0;
    l.elem_size = (uint8_t)elem;
    return l;
}

cp_list_builder cp_ptr_init_struct_list(cp_ptr_builder p, uint32_t count, uint16_t data_words,
                                        uint16_t ptr_words)
{
    if (p.ptr == NULL)
        return discard_list(p.msg);
    uint64_t per = (uint64_t)data_words + ptr_words;
    if (count >= (1u << 29) || per * count >= (1u << 29)) {
        cp_message_fail(p.msg, "struct list of %u elements is too long to encode", count);
        return discard_list(p.msg);
    }
    uint32_t wc = (uint32_t)(per * count);
    cp_list_builder l = {0};
    uint64_t *obj = alloc_obj(p, wc + 1, KIND_LIST, (wc << 3) | CP_ELEM_COMPOSITE, &l.seg);
    store64(obj, make_ptr(KIND_STRUCT, count, data_words | ((uint32_t)ptr_words << 16)));
    l.msg = p.msg;
    l.base = (uint8_t *)(obj + 1);
    l.len = count;
    l.step_bits = (uint32_t)per * 64u;
    l.data_bits = data_words * 64u;
    l.nptrs = ptr_words;
    l.elem_size = CP_ELEM_COMPOSITE;
    return l;
}

static void set_bytes(cp_ptr_builder p, const void *d, size_t len, size_t extra)
{
    if (p.ptr == NULL)
        return;
    if (len + extra >= (1u << 29)) {
        cp_message_fail(p.msg, "text or data of %zu bytes is too long to encode", len);
        return;
    }
    cp_list_builder l = cp_ptr_init_list(p, CP_ELEM_BYTE, (uint32_t)(len + extra));
    if (len)
        memcpy(l.base, d, len);
}

void cp_ptr_set_text(cp_ptr_builder p, const char *s, size_t len)
{
    set_bytes(p, s, len, 1);
}

void cp_ptr_set_data(cp_ptr_builder p, const void *d, size_t len)
{
    set_bytes(p, d, len, 0);
}

void cp_ptr_set_cap(cp_ptr_builder p, uint32_t cap_index)
{
    if (p.ptr != NULL)
        store64(p.ptr, ((uint64_t)cap_index << 32) | KIND_OTHER);
}

void cp_ptr_set_null(cp_ptr_builder p)
{
    if (p.ptr != NULL)
        store64(p.ptr, 0);
}

static cp_ptr_reader builder_ptr_reader(cp_message *m, uint32_t seg, const uint64_t *ptr)
{
    cp_ptr_reader r = {0};
    r.msg = m;
    if (ptr == NULL)
        return r;
    /* A builder's segment is zeroed up to its capacity, and objects are still
     * being added, so its readers see all of it. */
    r.seg_start = m->segs[seg].words;
    r.seg_end = m->segs[seg].words + m->segs[seg].cap;
    r.ptr = ptr;
    r.nesting = (int16_t)m->nesting_limit;
    return r;
}

cp_ptr_reader cp_ptr_builder_as_reader(cp_ptr_builder p)
{
    return builder_ptr_reader(p.msg, p.seg, p.ptr);
}

cp_struct_reader cp_struct_builder_as_reader(cp_struct_builder b)
{
    if (b.data == NULL && b.ptrs == NULL) {
        cp_struct_reader e = cp_struct_reader_empty();
        e.msg = b.msg;
        return e;
    }
    cp_struct_reader r;
    r.msg = b.msg;
    r.seg_start = b.msg->segs[b.seg].words;
    r.seg_end = r.seg_start + b.msg->segs[b.seg].cap;
    r.data = b.data;
    r.data_bytes = b.data_bytes;
    r.ptrs = b.ptrs;
    r.nptrs = b.nptrs;
    r.nesting = (int16_t)b.msg->nesting_limit;
    return r;
}

cp_list_reader cp_list_builder_as_reader(cp_list_builder l)
{
    if (l.base == NULL)
        return empty_list(l.msg);
    cp_list_reader r;
    r.msg = l.msg;
    r.seg_start = l.msg->segs[l.seg].words;
    r.seg_end = r.seg_start + l.msg->segs[l.seg].cap;
    r.base = l.base;
    r.len = l.len;
    r.step_bits = l.step_bits;
    r.data_bits = l.data_bits;
    r.nptrs = l.nptrs;
    r.elem_size = l.elem_size;
    r.nesting = (int16_t)l.msg->nesting_limit;
    return r;
}

cp_struct_builder cp_ptr_get_struct_builder(cp_ptr_builder p, uint16_t data_words,
                                            uint16_t ptr_words)
{
    if (p.ptr == NULL)
        return discard_struct(p.msg);
    target t;
    cp_ptr_reader r = cp_ptr_builder_as_reader(p);
    if (resolve(r, &t) == CP_PTR_STRUCT) {
        uint32_t dw = hi32(t.tag) & 0xffffu;
        uint16_t pw = (uint16_t)(hi32(t.tag) >> 16);
        int64_t seglen = t.seg_end - t.seg_start;
        if (dw >= data_words && pw >= ptr_words && t.pos >= 0 && t.pos + dw + pw <= seglen) {
            cp_struct_builder b;
            b.msg = p.msg;
            b.seg = UINT32_MAX;
            for (uint32_t i = 0; i < p.msg->nsegs; i++)
                if (p.msg->segs[i].words == t.seg_start)
                    b.seg = i;
            uint64_t *obj = (uint64_t *)(t.seg_start + t.pos);
            b.data = (uint8_t *)obj;
            b.data_bytes = dw * 8u;
            b.ptrs = obj + dw;
            b.nptrs = pw;
            return b;
        }
    }
    return cp_ptr_init_struct(p, data_words, ptr_words);
}

static inline uint8_t *elem_bptr(cp_list_builder l, uint32_t i)
{
    return l.base + ((uint64_t)i * l.step_bits) / 8u;
}

void cp_list_set_bool(cp_list_builder l, uint32_t i, bool v)
{
    if (i >= l.len || l.data_bits < 1)
        return;
    uint64_t bit = (uint64_t)i * l.step_bits;
    uint8_t mask = (uint8_t)(1u << (bit % 8u));
    if (v)
        l.base[bit / 8u] |= mask;
    else
        l.base[bit / 8u] &= (uint8_t)~mask;
}

#define DEFINE_LIST_SET(name, type, bits)                                                          \
    void cp_list_set_##name(cp_list_builder l, uint32_t i, type v)                                 \
    {                                                                                              \
        if (i < l.len && l.data_bits >= bits)                                                      \
            memcpy(elem_bptr(l, i), &v, sizeof(type));                                             \
    }
DEFINE_LIST_SET(u8, uint8_t, 8)
DEFINE_LIST_SET(u16, uint16_t, 16)
DEFINE_LIST_SET(u32, uint32_t, 32)
DEFINE_LIST_SET(u64, uint64_t, 64)
DEFINE_LIST_SET(f32, float, 32)
DEFINE_LIST_SET(f64, double, 64)
#undef DEFINE_LIST_SET

/* ---- deep copy ----------------------------------------------------------- */

static void copy_struct_into(cp_struct_builder dst, cp_struct_reader src)
{
    uint32_t n = src.data_bytes < dst.data_bytes ? src.data_bytes : dst.data_bytes;
    if (n)
        memcpy(dst.data, src.data, n);
    uint16_t np = src.nptrs < dst.nptrs ? src.nptrs : dst.nptrs;
    for (uint16_t i = 0; i < np; i++)
        cp_ptr_set_copy(cp_builder_ptr(dst, i), cp_get_ptr(src, i));
}

void cp_ptr_set_copy(cp_ptr_builder p, cp_ptr_reader src)
{
    if (p.ptr == NULL)
        return;
    target t;
    cp_ptr_kind k = resolve(src, &t);
    switch (k) {
    case CP_PTR_NULL:
    case CP_PTR_INVALID:
        cp_ptr_set_null(p);
        return;
    case CP_PTR_CAP:
        cp_ptr_set_cap(p, hi32(t.tag));
        return;
    case CP_PTR_STRUCT: {
        cp_struct_reader r = cp_ptr_get_struct(src, cp_ptr_null());
        if (src.msg != NULL && !cp_message_ok(src.msg))
            return;
        cp_struct_builder b = cp_ptr_init_struct(p, (uint16_t)(r.data_bytes / 8u), r.nptrs);
        copy_struct_into(b, r);
        return;
    }
    case CP_PTR_LIST:
        break;
    }
    uint8_t es = hi32(t.tag) & 7u;
    cp_list_reader l =
        cp_ptr_get_list(src, es == CP_ELEM_COMPOSITE ? CP_ELEM_COMPOSITE : es, cp_ptr_null());
    if (src.msg != NULL && !cp_message_ok(src.msg))
        return;
    if (es == CP_ELEM_COMPOSITE) {
        cp_list_builder b =
            cp_ptr_init_struct_list(p, l.len, (uint16_t)(l.data_bits / 64u), l.nptrs);
        for (uint32_t i = 0; i < l.len; i++)
            copy_struct_into(cp_list_struct_at(b, i), cp_list_get_struct(l, i));
    } else if (es == CP_ELEM_POINTER) {
        cp_list_builder b = cp_ptr_init_list(p, CP_ELEM_POINTER, l.len);
        for (uint32_t i = 0; i < l.len; i++)
            cp_ptr_set_copy(cp_list_ptr_at(b, i), cp_list_get_ptr(l, i));
    } else {
        cp_list_builder b = cp_ptr_init_list(p, es, l.len);
        size_t bytes = ((uint64_t)l.len * l.step_bits + 7u) / 8u;
        if (bytes)
            memcpy(b.base, l.base, bytes);
    }
}
