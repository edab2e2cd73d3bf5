/* libFuzzer target: the Cap'n Proto reader. The first byte picks how the rest
 * is read (framed, packed, or through the incremental stream reader in small
 * chunks); the message is then walked completely, every pointer followed and
 * every element read, under small limits. Problems must surface as errors,
 * never as a crash, an out-of-bounds read or unbounded work. */
#include "capnp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static volatile uint64_t sink;

static void walk(cp_ptr_reader p);

static void walk_struct(cp_struct_reader s)
{
    for (uint32_t off = 0; off + 8 <= s.data_bytes; off += 8)
        sink += cp_get_u64(s, off, 0);
    for (uint32_t bit = 0; bit < s.data_bytes * 8u && bit < 64; bit++)
        sink += cp_get_bool(s, bit, false);
    for (uint16_t i = 0; i < s.nptrs; i++)
        walk(cp_get_ptr(s, i));
}

static void walk(cp_ptr_reader p)
{
    if (p.msg && !cp_message_ok(p.msg))
        return;
    switch (cp_ptr_get_kind(p)) {
    case CP_PTR_STRUCT:
        walk_struct(cp_ptr_get_struct(p, cp_ptr_null()));
        return;
    case CP_PTR_CAP:
        sink += cp_ptr_get_cap(p);
        return;
    case CP_PTR_LIST:
        break;
    default:
        return;
    }
    /* Read the list as each type a schema could give it; mismatches are
     * errors, so reset the sticky error between attempts. */
    cp_text t = cp_ptr_get_text(p, NULL);
    sink += t.len;
    if (p.msg)
        gr_error_release(&p.msg->error);
    cp_list_reader bits = cp_ptr_get_list(p, CP_ELEM_BIT, cp_ptr_null());
    for (uint32_t i = 0; i < bits.len; i++)
        sink += cp_list_get_bool(bits, i);
    if (p.msg)
        gr_error_release(&p.msg->error);
    cp_list_reader l = cp_ptr_get_list(p, CP_ELEM_COMPOSITE, cp_ptr_null());
    for (uint32_t i = 0; i < l.len && (p.msg == NULL || cp_message_ok(p.msg)); i++) {
        walk_struct(cp_list_get_struct(l, i));
        sink += cp_list_get_u64(l, i) + cp_list_get_u8(l, i);
        if (l.nptrs)
            walk(cp_list_get_ptr(l, i));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t mode = data[0] % 4;
    data++;
    size--;
    cp_read_options opts = {.traversal_limit_words = 1u << 14, .nesting_limit = 32};
    cp_message m, *mp = &m;
    gr_error_t err = NULL;
    int rc;
    if (mode == 3) {
        /* Fed whole: the reader sizes the frame once and takes it into a
         * message that lives in the frame's buffer. */
        cp_stream_reader sr;
        cp_stream_reader_init(&sr, 1u << 20, &opts);
        size_t used;
        rc = cp_stream_reader_feed(&sr, data, size, &used, &err) == 1 ? 0 : -1;
        if (rc == 0) {
            mp = cp_stream_reader_take_message(&sr, &err);
            rc = mp ? 0 : -1;
            if (mp)
                cp_message_reset_limits(mp, &opts);
        }
        cp_stream_reader_release(&sr);
    } else if (mode == 0) {
        rc = cp_message_read(&m, data, size, &opts, &err);
    } else if (mode == 1) {
        rc = cp_message_read_packed(&m, data, size, 1u << 20, &opts, &err);
    } else {
        cp_stream_reader sr;
        cp_stream_reader_init(&sr, 1u << 20, &opts);
        rc = -1;
        size_t pos = 0;
        while (pos < size) {
            size_t used, chunk = size - pos < 7 ? size - pos : 7;
            int r = cp_stream_reader_feed(&sr, data + pos, chunk, &used, &err);
            if (r < 0)
                break;
            pos += used;
            if (r == 1) {
                rc = cp_stream_reader_take(&sr, &m, &err);
                break;
            }
        }
        cp_stream_reader_release(&sr);
    }
    if (rc < 0) {
        if (err && gr_error_msg(err)[0] == '\0')
            abort(); /* every error must say something */
        gr_error_release(&err);
        return 0;
    }
    walk(cp_message_root_ptr(mp));
    /* Deep copy goes through the same checks. */
    cp_message c;
    cp_message_init(&c, 16);
    cp_message_reset_limits(mp, &opts);
    gr_error_release(&mp->error);
    cp_ptr_set_copy(cp_message_root_builder(&c), cp_message_root_ptr(mp));
    gr_buf out = GR_BUF_INIT;
    cp_message_write_packed(&c, &out);
    gr_buf_release(&out);
    cp_message_release(&c);
    bool self_in_buf = mp->self_in_buf;
    cp_message_release(mp);
    if (mp != &m && !self_in_buf)
        free(mp);
    return 0;
}
