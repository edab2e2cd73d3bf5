/* Messages on a stream: the segment-table framing (whole buffers and an
 * incremental reader for nonblocking sockets), writing to buffers and fds, and
 * the packed encoding. */
#include <sys/uio.h>

#include "capnp.h"

static void apply_options(cp_message *m, const cp_read_options *opts)
{
    uint64_t limit = opts && opts->traversal_limit_words ? opts->traversal_limit_words
                                                         : CP_DEFAULT_TRAVERSAL_LIMIT_WORDS;
    if (limit > INT64_MAX)
        limit = INT64_MAX;
    m->traversal_left = (int64_t)limit;
    m->nesting_limit = opts && opts->nesting_limit ? opts->nesting_limit : CP_DEFAULT_NESTING_LIMIT;
    if (m->nesting_limit > INT16_MAX)
        m->nesting_limit = INT16_MAX;
}

void cp_message_reset_limits(cp_message *m, const cp_read_options *opts)
{
    apply_options(m, opts);
}

static uint32_t max_segments(const cp_read_options *opts)
{
    return opts && opts->max_segments ? opts->max_segments : CP_DEFAULT_MAX_SEGMENTS;
}

static uint32_t load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* Bytes of the segment table for nsegs segments (count, sizes, padding). */
static size_t table_bytes(uint64_t nsegs)
{
    return (size_t)((4 * (1 + nsegs) + 7) / 8 * 8);
}

/* Parses the frame in buf[frame_off..frame_off+len) (exactly one message)
 * and points m's segments into it; m takes ownership of buf when own (freed
 * even on error). The frame must be 8-byte aligned. When the bytes in front
 * of the frame have room for the segment list, the list lives there, so
 * reading costs no allocation but buf. */
static int adopt(cp_message *m, uint8_t *buf, size_t frame_off, size_t len, bool own,
                 const cp_read_options *opts, gr_error_t *err)
{
    memset(m, 0, sizeof(*m));
    if (own)
        m->owned_buf = buf;
    buf += frame_off;
    if (len < 8) {
        cp_message_release(m);
        return gr_make_error(err, 0, "capnp frame truncated: %zu bytes", len);
    }
    uint64_t nsegs = (uint64_t)load32(buf) + 1;
    if (nsegs > max_segments(opts)) {
        cp_message_release(m);
        return gr_make_error(err, 0, "capnp frame has %llu segments (limit %u)",
                             (unsigned long long)nsegs, max_segments(opts));
    }
    size_t hdr = table_bytes(nsegs);
    if (len < hdr) {
        cp_message_release(m);
        return gr_make_error(err, 0, "capnp frame truncated in its segment table");
    }
    uint64_t total = hdr;
    for (uint64_t i = 0; i < nsegs; i++)
        total += (uint64_t)load32(buf + 4 + 4 * i) * 8;
    if (total != len) {
        cp_message_release(m);
        return gr_make_error(err, 0, "capnp frame %s: segments need %llu bytes, have %zu",
                             total > len ? "truncated" : "has trailing bytes",
                             (unsigned long long)total, len);
    }
    m->segs_in_buf = own && frame_off >= nsegs * sizeof(*m->segs);
    if (m->segs_in_buf) /* freed with m->owned_buf */
        m->segs = (cp_segment *)(void *)(buf - nsegs * sizeof(*m->segs));
    else
        m->segs = gr_calloc((size_t)nsegs, sizeof(*m->segs));
    m->nsegs = m->segs_cap = (uint32_t)nsegs;
    size_t off = hdr;
    for (uint32_t i = 0; i < nsegs; i++) {
        uint32_t words = load32(buf + 4 + 4 * i);
        m->segs[i] = (cp_segment){.words = (uint64_t *)(void *)(buf + off), .len = words,
                                  .cap = words, .owned = false};
        off += (size_t)words * 8;
    }
    m->next_seg_words = 1024;
    apply_options(m, opts);
    return 0;
}

int cp_message_read(cp_message *m, const void *buf, size_t len, const cp_read_options *opts,
                    gr_error_t *err)
{
    /* Room before the copy for the segment list, when the count is sane. */
    size_t prefix = 0;
    if (len >= 4) {
        uint64_t nsegs = (uint64_t)load32(buf) + 1;
        if (nsegs <= max_segments(opts) && table_bytes(nsegs) <= len)
            prefix = (size_t)nsegs * sizeof(cp_segment);
    }
    uint8_t *copy = gr_malloc(prefix + len + 1);
    if (len)
        memcpy(copy + prefix, buf, len);
    return adopt(m, copy, prefix, len, true, opts, err);
}

int cp_message_read_packed(cp_message *m, const void *buf, size_t len, size_t max_bytes,
                           const cp_read_options *opts, gr_error_t *err)
{
    gr_buf out = GR_BUF_INIT;
    if (cp_unpack(buf, len, max_bytes ? max_bytes : CP_DEFAULT_MAX_MESSAGE_BYTES, &out, err) < 0) {
        gr_buf_release(&out);
        return -1;
    }
    size_t n = out.len;
    /* gr_buf's storage comes from malloc, hence suitably aligned. */
    return adopt(m, (uint8_t *)gr_buf_steal(&out), 0, n, true, opts, err);
}

int cp_message_open(cp_message *m, const void *buf, size_t len, const cp_read_options *opts,
                    gr_error_t *err)
{
    return adopt(m, (uint8_t *)(uintptr_t)buf, 0, len, false, opts, err);
}

int cp_frame_size(const void *buf, size_t len, size_t max_bytes, const cp_read_options *opts,
                  size_t *need, gr_error_t *err)
{
    const uint8_t *b = buf;
    if (max_bytes == 0)
        max_bytes = CP_DEFAULT_MAX_MESSAGE_BYTES;
    if (len < 4) {
        *need = 4;
        return 0;
    }
    uint64_t nsegs = (uint64_t)load32(b) + 1;
    if (nsegs > max_segments(opts))
        return gr_make_error(err, 0, "capnp frame has %llu segments (limit %u)",
                             (unsigned long long)nsegs, max_segments(opts));
    size_t hdr = table_bytes(nsegs);
    if (len < hdr) {
        *need = hdr;
        return 0;
    }
    uint64_t total = hdr;
    for (uint64_t i = 0; i < nsegs; i++)
        total += (uint64_t)load32(b + 4 + 4 * i) * 8;
    if (total > max_bytes)
        return gr_make_error(err, 0, "capnp message of %llu bytes exceeds the limit of %zu",
                             (unsigned long long)total, max_bytes);
    *need = (size_t)total;
    return 1;
}

void cp_message_init_segments(cp_message *m, const cp_segment *segs, uint32_t nsegs,
                              const cp_read_options *opts)
{
    memset(m, 0, sizeof(*m));
    m->segs = nsegs ? gr_calloc(nsegs, sizeof(*m->segs)) : NULL; /* the list holds segs_cap */
    for (uint32_t i = 0; i < nsegs; i++) {
        m->segs[i] = segs[i];
        m->segs[i].owned = false;
        m->segs[i].cap = m->segs[i].len;
    }
    m->nsegs = m->segs_cap = nsegs;
    m->next_seg_words = 1024;
    apply_options(m, opts);
}

size_t cp_message_frame_size(const cp_message *m)
{
    uint32_t n = m->nsegs ? m->nsegs : 1;
    size_t total = table_bytes(n);
    for (uint32_t i = 0; i < m->nsegs; i++)
        total += (size_t)m->segs[i].len * 8;
    return total;
}

/* Writes the segment table into hdr (of table_bytes(nsegs) bytes). */
static size_t write_table(const cp_message *m, uint8_t *hdr)
{
    uint32_t n = m->nsegs ? m->nsegs : 1;
    size_t len = table_bytes(n);
    memset(hdr, 0, len);
    uint32_t v = n - 1;
    memcpy(hdr, &v, 4);
    for (uint32_t i = 0; i < m->nsegs; i++)
        memcpy(hdr + 4 + 4 * i, &m->segs[i].len, 4);
    return len;
}

void cp_message_write_table(const cp_message *m, gr_buf *out)
{
    uint32_t n = m->nsegs ? m->nsegs : 1;
    uint8_t small[64]; /* the table of up to 15 segments: no allocation */
    _cleanup_free_ uint8_t *big = table_bytes(n) > sizeof(small) ? gr_malloc(table_bytes(n)) : NULL;
    uint8_t *hdr = big ? big : small;
    size_t hl = write_table(m, hdr);
    gr_buf_append(out, hdr, hl);
}

void cp_message_write(const cp_message *m, gr_buf *out)
{
    cp_message_write_table(m, out);
    for (uint32_t i = 0; i < m->nsegs; i++)
        gr_buf_append(out, m->segs[i].words, (size_t)m->segs[i].len * 8);
}

void cp_message_write_packed(const cp_message *m, gr_buf *out)
{
    uint32_t n = m->nsegs ? m->nsegs : 1;
    size_t hl = table_bytes(n);
    _cleanup_free_ uint64_t *hdr = gr_malloc(hl);
    write_table(m, (uint8_t *)hdr);
    cp_pack(hdr, hl / 8, out);
    for (uint32_t i = 0; i < m->nsegs; i++)
        cp_pack(m->segs[i].words, m->segs[i].len, out);
}

int cp_message_write_fd(const cp_message *m, int fd, gr_error_t *err)
{
    uint32_t n = m->nsegs ? m->nsegs : 1;
    _cleanup_free_ uint8_t *hdr = gr_malloc(table_bytes(n));
    size_t hl = write_table(m, hdr);
    _cleanup_free_ struct iovec *iov = gr_calloc((size_t)m->nsegs + 1, sizeof(*iov));
    int niov = 0;
    iov[niov].iov_base = hdr;
    iov[niov++].iov_len = hl;
    for (uint32_t i = 0; i < m->nsegs; i++) {
        if (m->segs[i].len == 0)
            continue;
        iov[niov].iov_base = m->segs[i].words;
        iov[niov++].iov_len = (size_t)m->segs[i].len * 8;
    }
    struct iovec *cur = iov;
    while (niov > 0) {
        int batch = niov > 1024 ? 1024 : niov;
        ssize_t w = writev(fd, cur, batch);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return gr_make_error(err, errno, "write capnp message");
        }
        size_t left = (size_t)w;
        while (niov > 0 && left >= cur->iov_len) {
            left -= cur->iov_len;
            cur++;
            niov--;
        }
        if (niov > 0) {
            cur->iov_base = (uint8_t *)cur->iov_base + left;
            cur->iov_len -= left;
        }
    }
    return 0;
}

/* ---- incremental stream reader ------------------------------------------- */

_Static_assert(sizeof(cp_segment) % 8 == 0, "a frame after a segment list stays word-aligned");

void cp_stream_reader_init(cp_stream_reader *sr, size_t max_bytes, const cp_read_options *opts)
{
    memset(sr, 0, sizeof(*sr));
    sr->max_bytes = max_bytes ? max_bytes : CP_DEFAULT_MAX_MESSAGE_BYTES;
    sr->need = 4;
    if (opts)
        sr->opts = *opts;
}

void cp_stream_reader_release(cp_stream_reader *sr)
{
    if (sr->small)
        cp__small_read_free(sr->buf);
    else
        free(sr->buf);
    memset(sr, 0, sizeof(*sr));
}

/* Room for a message struct at the start of a read buffer. */
#define MESSAGE_ROOM ((sizeof(cp_message) + 7) / 8 * 8)

/* At a frame's start, when the input holds the whole segment table: sizes the
 * buffer once, with room in front for the message and its segment list.
 * Returns -1 on a bad table, else 0 (nothing done when the table is not all
 * there). */
static int size_frame_at_once(cp_stream_reader *sr, const uint8_t *in, size_t avail,
                              gr_error_t *err)
{
    size_t total;
    int r = cp_frame_size(in, avail, sr->max_bytes, &sr->opts, &total, err);
    if (r <= 0)
        return r;
    sr->nsegs = load32(in) + 1;
    sr->prefix = MESSAGE_ROOM + (size_t)sr->nsegs * sizeof(cp_segment);
    sr->small = sr->prefix + total <= CP__SMALL_READ;
    sr->buf = sr->small ? cp__small_read_alloc() : gr_malloc(sr->prefix + total);
    sr->cap = sr->need = total;
    return 0;
}

int cp_stream_reader_feed(cp_stream_reader *sr, const void *data, size_t len, size_t *consumed,
                          gr_error_t *err)
{
    const uint8_t *in = data;
    *consumed = 0;
    if (sr->len == 0 && sr->nsegs == 0 && size_frame_at_once(sr, in, len, err) < 0)
        return -1;
    for (;;) {
        if (sr->len < sr->need) {
            size_t want = sr->need - sr->len;
            size_t n = len - *consumed < want ? len - *consumed : want;
            if (sr->cap < sr->need) {
                size_t cap = sr->cap ? sr->cap : 64;
                while (cap < sr->need)
                    cap *= 2;
                sr->buf = gr_realloc(sr->buf, sr->prefix + cap);
                sr->small = false;
                sr->cap = cap;
            }
            memcpy(sr->buf + sr->prefix + sr->len, in + *consumed, n);
            sr->len += n;
            *consumed += n;
            if (sr->len < sr->need)
                return 0;
        }
        const uint8_t *frame = sr->buf + sr->prefix;
        if (sr->nsegs == 0) {
            uint64_t nsegs = (uint64_t)load32(frame) + 1;
            if (nsegs > max_segments(&sr->opts))
                return gr_make_error(err, 0, "capnp frame has %llu segments (limit %u)",
                                     (unsigned long long)nsegs, max_segments(&sr->opts));
            sr->nsegs = (uint32_t)nsegs;
            sr->need = table_bytes(nsegs);
            continue;
        }
        size_t hdr = table_bytes(sr->nsegs);
        if (sr->need == hdr) {
            uint64_t total = hdr;
            for (uint32_t i = 0; i < sr->nsegs; i++)
                total += (uint64_t)load32(frame + 4 + 4 * i) * 8;
            if (total > sr->max_bytes)
                return gr_make_error(err, 0, "capnp message of %llu bytes exceeds the limit of %zu",
                                     (unsigned long long)total, sr->max_bytes);
            if (total > hdr) {
                sr->need = (size_t)total;
                continue;
            }
        }
        return 1;
    }
}

int cp_stream_reader_take(cp_stream_reader *sr, cp_message *m, gr_error_t *err)
{
    if (sr->nsegs == 0 || sr->len != sr->need || sr->len < table_bytes(sr->nsegs))
        return gr_make_error(err, 0, "no complete capnp message buffered");
    uint8_t *buf = gr_steal_pointer(&sr->buf);
    size_t len = sr->len, prefix = sr->prefix;
    bool small = sr->small;
    size_t max = sr->max_bytes;
    cp_read_options opts = sr->opts;
    memset(sr, 0, sizeof(*sr));
    sr->max_bytes = max;
    sr->opts = opts;
    sr->need = 4;
    if (adopt(m, buf, prefix, len, true, &opts, err) < 0)
        return -1; /* buf is freed: a small block may go to free() too */
    m->owned_small = small;
    return 0;
}

cp_message *cp_stream_reader_take_message(cp_stream_reader *sr, gr_error_t *err)
{
    bool room = sr->prefix >= MESSAGE_ROOM + (size_t)sr->nsegs * sizeof(cp_segment);
    cp_message read;
    if (cp_stream_reader_take(sr, &read, err) < 0)
        return NULL;
    if (!room) {
        cp_message *m = gr_malloc(sizeof(*m));
        *m = read;
        return m;
    }
    cp_message *m = read.owned_buf;
    *m = read;
    m->self_in_buf = true;
    return m;
}

/* ---- packing ------------------------------------------------------------- */

void cp_pack(const uint64_t *words, size_t nwords, gr_buf *out)
{
    const uint8_t *in = (const uint8_t *)words;
    size_t i = 0;
    uint8_t tmp[10];
    while (i < nwords) {
        const uint8_t *w = in + i * 8;
        uint8_t tag = 0;
        size_t n = 1;
        for (int b = 0; b < 8; b++)
            if (w[b]) {
                tag |= (uint8_t)(1u << b);
                tmp[n++] = w[b];
            }
        tmp[0] = tag;
        gr_buf_append(out, tmp, n);
        i++;
        if (tag == 0) {
            /* A run of further zero words, counted in one byte. */
            uint8_t run = 0;
            while (i < nwords && run < 255 && load32(in + i * 8) == 0 &&
                   load32(in + i * 8 + 4) == 0) {
                run++;
                i++;
            }
            gr_buf_append(out, &run, 1);
        } else if (tag == 0xff) {
            /* Words that barely compress follow verbatim. */
            size_t start = i;
            while (i < nwords && i - start < 255) {
                const uint8_t *x = in + i * 8;
                int zeros = 0;
                for (int b = 0; b < 8; b++)
                    zeros += x[b] == 0;
                if (zeros > 1)
                    break;
                i++;
            }
            uint8_t run = (uint8_t)(i - start);
            gr_buf_append(out, &run, 1);
            gr_buf_append(out, in + start * 8, (i - start) * 8);
        }
    }
}

int cp_unpack(const void *data, size_t len, size_t max_bytes, gr_buf *out, gr_error_t *err)
{
    const uint8_t *in = data;
    size_t i = 0;
    size_t produced = 0;
    while (i < len) {
        uint8_t tag = in[i++];
        uint8_t w[8] = {0};
        for (int b = 0; b < 8; b++)
            if (tag & (1u << b)) {
                if (i >= len)
                    return gr_make_error(err, 0, "packed capnp data truncated");
                w[b] = in[i++];
            }
        if (max_bytes - produced < 8)
            return gr_make_error(err, 0, "unpacked capnp data exceeds %zu bytes", max_bytes);
        gr_buf_append(out, w, 8);
        produced += 8;
        if (tag == 0 || tag == 0xff) {
            if (i >= len)
                return gr_make_error(err, 0, "packed capnp data truncated");
            size_t run = in[i++];
            if (run * 8 > max_bytes - produced)
                return gr_make_error(err, 0, "unpacked capnp data exceeds %zu bytes", max_bytes);
            if (tag == 0) {
                static const uint8_t zeros[255 * 8];
                gr_buf_append(out, zeros, run * 8);
            } else {
                if (len - i < run * 8)
                    return gr_make_error(err, 0, "packed capnp data truncated");
                gr_buf_append(out, in + i, run * 8);
                i += run * 8;
            }
            produced += run * 8;
        }
    }
    return 0;
}
