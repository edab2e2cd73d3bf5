/* Unit tests for the cp_ encoding layer: round trips (single and multi
 * segment, packed, copied, streamed), the wire details (far and double-far
 * pointers, list encodings, XOR defaults) and hostile messages that must give
 * errors: bad bounds, far pointer loops, nesting, amplification, bad frames. */
#include <fcntl.h>
#include <sys/wait.h>

#include "sample.h"

#include <setjmp.h>
#include <cmocka.h>

/* Pointer words, built by hand for hostile messages. */
static uint64_t sp(int32_t off, uint16_t dw, uint16_t pw)
{
    return ((uint64_t)(dw | ((uint32_t)pw << 16)) << 32) | ((uint32_t)off << 2);
}
static uint64_t lp(int32_t off, unsigned es, uint32_t n)
{
    return ((uint64_t)((n << 3) | es) << 32) | ((uint32_t)off << 2) | 1u;
}
static uint64_t fp(uint32_t seg, uint32_t off, bool dbl)
{
    return ((uint64_t)seg << 32) | (off << 3) | (dbl ? 4u : 0u) | 2u;
}

static void open_words(cp_message *m, uint64_t *words, uint32_t n)
{
    cp_segment s = {words, n, n, false};
    cp_message_init_segments(m, &s, 1, NULL);
}

/* Asserts that m recorded a problem whose message contains what. */
static void expect_problem(cp_message *m, const char *what)
{
    gr_error_t err = NULL;
    assert_int_equal(cp_message_check(m, &err), -1);
    if (strstr(gr_error_msg(err), what) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", gr_error_msg(err), what);
    gr_error_release(&err);
}

static void frame_of(cp_message *m, gr_buf *out)
{
    cp_message_write(m, out);
}

/* ---- round trips ---------------------------------------------------------- */

static void test_build_and_read_back(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    sample_build(&m);
    assert_int_equal(m.nsegs, 1);
    assert_int_equal(sample_check(&m), 0);
    cp_message_release(&m);
}

static void roundtrip_frames(uint32_t seg_words, bool packed)
{
    cp_message m, r;
    cp_message_init(&m, seg_words);
    sample_build(&m);
    if (seg_words && seg_words < 16)
        assert_true(m.nsegs > 3); /* far pointers were needed */
    gr_buf out = GR_BUF_INIT;
    if (packed)
        cp_message_write_packed(&m, &out);
    else
        frame_of(&m, &out);
    if (!packed)
        assert_int_equal(out.len, cp_message_frame_size(&m));
    gr_error_t err = NULL;
    int rc = packed ? cp_message_read_packed(&r, out.data, out.len, 0, NULL, &err)
                    : cp_message_read(&r, out.data, out.len, NULL, &err);
    assert_int_equal(rc, 0);
    assert_int_equal(r.nsegs, m.nsegs);
    assert_int_equal(sample_check(&r), 0);
    cp_message_release(&r);
    cp_message_release(&m);
    gr_buf_release(&out);
}

static void test_roundtrip_single_segment(void **state)
{
    roundtrip_frames(0, false);
}

static void test_roundtrip_many_segments(void **state)
{
    for (uint32_t w = 1; w < 12; w++)
        roundtrip_frames(w, false);
}

static void test_roundtrip_packed(void **state)
{
    roundtrip_frames(0, true);
    roundtrip_frames(3, true);
}

static void test_deep_copy(void **state)
{
    cp_message m, c;
    cp_message_init(&m, 0);
    sample_build(&m);
    cp_message_init(&c, 2);
    cp_ptr_set_copy(cp_message_root_builder(&c), cp_message_root_ptr(&m));
    assert_true(c.nsegs > 3);
    assert_int_equal(sample_check(&c), 0);
    cp_message_release(&c);
    cp_message_release(&m);
}

static void test_write_fd(void **state)
{
    cp_message m, r;
    cp_message_init(&m, 5);
    sample_build(&m);
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    gr_error_t err = NULL;
    size_t size = cp_message_frame_size(&m);
    assert_true(size < 65536); /* fits the pipe buffer */
    assert_int_equal(cp_message_write_fd(&m, fds[1], &err), 0);
    close(fds[1]);
    uint8_t *buf = gr_malloc(size + 1);
    size_t got = 0;
    ssize_t n;
    while ((n = read(fds[0], buf + got, size + 1 - got)) > 0)
        got += (size_t)n;
    close(fds[0]);
    assert_int_equal(got, size);
    assert_int_equal(cp_message_open(&r, buf, got, NULL, &err), 0);
    assert_int_equal(sample_check(&r), 0);
    cp_message_release(&r);
    free(buf);
    cp_message_release(&m);
}

/* ---- wire details ---------------------------------------------------------- */

static void test_pack_reference_vectors(void **state)
{
    /* The examples of the encoding spec. */
    static const uint8_t plain[] = {0x08, 0, 0, 0, 0x03, 0,    0x02, 0,
                                    0x19, 0, 0, 0, 0xaa, 0x01, 0,    0};
    static const uint8_t packed[] = {0x51, 0x08, 0x03, 0x02, 0x31, 0x19, 0xaa, 0x01};
    uint64_t words[2];
    memcpy(words, plain, 16);
    gr_buf out = GR_BUF_INIT;
    cp_pack(words, 2, &out);
    assert_int_equal(out.len, sizeof(packed));
    assert_memory_equal(out.data, packed, sizeof(packed));
    gr_buf_release(&out);

    /* Zero runs and verbatim runs. */
    uint64_t z[300] = {0};
    for (int i = 100; i < 110; i++)
        z[i] = 0x0102030405060708ull;
    cp_pack(z, 300, &out);
    gr_buf un = GR_BUF_INIT;
    gr_error_t err = NULL;
    assert_int_equal(cp_unpack(out.data, out.len, 1 << 20, &un, &err), 0);
    assert_int_equal(un.len, sizeof(z));
    assert_memory_equal(un.data, z, sizeof(z));
    assert_true(out.len < 120);
    gr_buf_release(&un);

    /* Truncation anywhere is an error, as is exceeding the output limit. */
    for (size_t cut = 1; cut < out.len; cut++) {
        gr_buf part = GR_BUF_INIT;
        int rc = cp_unpack(out.data, cut, 1 << 20, &part, &err);
        if (rc == 0) {
            /* Only cuts at a word boundary of the packed stream may succeed. */
            assert_true(part.len % 8 == 0 && part.len < sizeof(z));
        } else {
            gr_error_release(&err);
        }
        gr_buf_release(&part);
    }
    assert_int_equal(cp_unpack(out.data, out.len, 1000, &un, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "exceeds"));
    gr_error_release(&err);
    gr_buf_release(&un);
    gr_buf_release(&out);

    /* A zero tag claiming 255 more zero words cannot blow past the limit. */
    static const uint8_t bomb[] = {0x00, 0xff, 0x00, 0xff, 0x00, 0xff};
    assert_int_equal(cp_unpack(bomb, sizeof(bomb), 4096, &un, &err), -1);
    gr_error_release(&err);
    gr_buf_release(&un);
}

static void test_double_far_pointer(void **state)
{
    uint64_t seg0[] = {fp(1, 0, true)};
    uint64_t seg1[] = {fp(2, 0, false), sp(0, 1, 1)};
    uint64_t seg2[] = {((uint64_t)1 << 32) | 42u, lp(0, 2, 3), 0x6968};
    cp_segment segs[3] = {{seg0, 1, 1, false}, {seg1, 2, 2, false}, {seg2, 3, 3, false}};
    cp_message m;
    cp_message_init_segments(&m, segs, 3, NULL);
    Inner_R in = Inner_root(&m);
    assert_int_equal(Inner_get_id(in), 42);
    assert_true(Inner_get_flag(in));
    assert_string_equal(Inner_get_name(in).str, "hi");
    assert_true(cp_message_ok(&m));
    cp_message_release(&m);
}

static void test_xor_defaults(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    Defaults_B b = Defaults_init_root(&m);
    Defaults_R r = Defaults_as_reader(b);
    /* An all-zero struct reads as the defaults. */
    assert_true(Defaults_get_boolDefault(r));
    assert_int_equal(Defaults_get_int8Default(r), -123);
    assert_int_equal(Defaults_get_int64Default(r), -123456789012345LL);
    assert_true(Defaults_get_uint64Default(r) == 12345678901234567890ULL);
    assert_true(Defaults_get_float32Default(r) == 1234.5f);
    assert_true(Defaults_get_float64Default(r) == -123e45);
    assert_int_equal(Defaults_get_enumDefault(r), Color_blue);
    /* Setting the default stores zero bits; other values store value ^ default. */
    Defaults_set_int32Default(b, -12345678);
    Defaults_set_boolDefault(b, true);
    for (uint32_t i = 0; i < b.s.data_bytes; i++)
        assert_int_equal(b.s.data[i], 0);
    Defaults_set_int32Default(b, 0);
    assert_int_equal(cp_get_i32(r.s, 4, 0), -12345678); /* raw bits: 0 ^ default */
    assert_int_equal(Defaults_get_int32Default(r), 0);
    Defaults_set_boolDefault(b, false);
    assert_false(Defaults_get_boolDefault(r));
    cp_message_release(&m);
}

static void test_list_encodings_compatible(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    cp_struct_builder root = cp_message_init_root(&m, 0, 2);
    /* A struct list read as a list of its first field, as the reference does. */
    cp_list_builder sl = cp_init_struct_list(root, 0, 3, 1, 1);
    for (uint32_t i = 0; i < 3; i++)
        cp_set_u32(cp_list_struct_at(sl, i), 0, 100 + i, 0);
    /* A primitive list read as a list of one-field structs. */
    cp_list_builder ul = cp_init_list(root, 1, CP_ELEM_FOUR_BYTES, 2);
    cp_list_set_u32(ul, 0, 7);
    cp_list_set_u32(ul, 1, 8);
    cp_struct_reader r = cp_struct_builder_as_reader(root);
    cp_list_reader a = cp_get_list(r, 0, CP_ELEM_FOUR_BYTES, cp_ptr_null());
    assert_int_equal(a.len, 3);
    assert_int_equal(cp_list_get_u32(a, 2), 102);
    cp_list_reader b = cp_get_list(r, 1, CP_ELEM_COMPOSITE, cp_ptr_null());
    assert_int_equal(b.len, 2);
    assert_int_equal(cp_get_u32(cp_list_get_struct(b, 1), 0, 0), 8);
    assert_int_equal(cp_get_u64(cp_list_get_struct(b, 1), 0, 0), 0); /* beyond the element */
    assert_true(cp_message_ok(&m));
    /* A u32 list is too small to read as u64s. */
    cp_get_list(r, 1, CP_ELEM_EIGHT_BYTES, cp_ptr_null());
    expect_problem(&m, "list element size");
    cp_message_release(&m);
}

static void test_caps_and_any_pointer(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    int a, b;
    assert_int_equal(cp_message_add_cap(&m, &a), 0);
    assert_int_equal(cp_message_add_cap(&m, &b), 1);
    assert_ptr_equal(cp_message_get_cap(&m, 1), &b);
    assert_null(cp_message_get_cap(&m, 2));
    Everything_B e = Everything_init_root(&m);
    cp_ptr_set_cap(Everything_ptr_anyField(e), 1);
    Everything_R r = Everything_as_reader(e);
    assert_int_equal(cp_ptr_get_kind(Everything_get_anyField(r)), CP_PTR_CAP);
    assert_int_equal(cp_ptr_get_cap(Everything_get_anyField(r)), 1);
    /* A capability is not a struct. */
    cp_ptr_get_struct(Everything_get_anyField(r), cp_ptr_null());
    expect_problem(&m, "expected a struct");
    cp_ptr_set_text(Everything_ptr_anyField(e), "any", 3);
    assert_int_equal(cp_ptr_get_kind(Everything_get_anyField(r)), CP_PTR_LIST);
    assert_string_equal(cp_ptr_get_text(Everything_get_anyField(r), NULL).str, "any");
    assert_int_equal(cp_ptr_get_cap(Everything_get_anyField(r)), CP_NO_CAP);
    expect_problem(&m, "expected a capability");
    assert_int_equal(cp_get_cap(r.s, 0), CP_NO_CAP); /* null: no problem */
    assert_true(cp_message_ok(&m));
    cp_message_release(&m);
}

static void test_empty_struct_is_not_null(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    cp_struct_builder root = cp_message_init_root(&m, 0, 1);
    cp_init_struct(root, 0, 0, 0);
    assert_true(cp_has_ptr(cp_struct_builder_as_reader(root), 0));
    assert_int_equal(cp_ptr_get_kind(cp_get_ptr(cp_struct_builder_as_reader(root), 0)),
                     CP_PTR_STRUCT);
    cp_message_release(&m);
}

/* A released message's first segment is reused by the next (outside the
 * sanitizer builds): the next message must still start from zeroes. */
static void test_reused_segment_is_zeroed(void **state)
{
    for (int round = 0; round < 20; round++) {
        cp_message m;
        cp_message_init(&m, 0);
        cp_struct_builder root = cp_message_init_root(&m, 8, 4);
        if (round % 2 == 0) {
            for (uint16_t i = 0; i < 8; i++)
                cp_set_u64(root, i, 0x0123456789abcdefull, 0);
            cp_set_text(root, 0, "left behind", 11);
            cp_struct_builder inner = cp_init_struct(root, 1, 4, 0);
            cp_set_u64(inner, 3, ~0ull, 0);
        } else {
            /* Nothing set: every field reads its default. */
            cp_struct_reader r = cp_struct_builder_as_reader(root);
            for (uint16_t i = 0; i < 8; i++)
                assert_int_equal(cp_get_u64(r, i, 0), 0);
            for (uint16_t i = 0; i < 4; i++)
                assert_false(cp_has_ptr(r, i));
            /* Nor do the words past the root hold anything. */
            cp_list_builder l = cp_init_list(root, 2, CP_ELEM_EIGHT_BYTES, 64);
            for (uint32_t i = 0; i < 64; i++)
                assert_int_equal(cp_list_get_u64(cp_list_builder_as_reader(l), i), 0);
        }
        cp_message_release(&m);
    }
}

/* ---- the stream reader -------------------------------------------------- */

static void test_stream_reader_byte_by_byte(void **state)
{
    cp_message a, b;
    cp_message_init(&a, 4);
    sample_build(&a);
    cp_message_init(&b, 0);
    cp_set_u64(cp_message_init_root(&b, 1, 0), 0, 77, 0);
    gr_buf stream = GR_BUF_INIT;
    cp_message_write(&a, &stream);
    cp_message_write(&b, &stream);
    cp_message_release(&a);
    cp_message_release(&b);

    cp_stream_reader sr;
    cp_stream_reader_init(&sr, 0, NULL);
    gr_error_t err = NULL;
    int ready = 0;
    for (size_t i = 0; i < stream.len; i++) {
        size_t used;
        int rc = cp_stream_reader_feed(&sr, stream.data + i, 1, &used, &err);
        assert_true(rc >= 0);
        assert_int_equal(used, 1);
        if (rc == 1) {
            cp_message m;
            assert_int_equal(cp_stream_reader_take(&sr, &m, &err), 0);
            if (ready == 0)
                assert_int_equal(sample_check(&m), 0);
            else
                assert_int_equal(cp_get_u64(cp_message_root(&m), 0, 0), 77);
            cp_message_release(&m);
            ready++;
        }
    }
    assert_int_equal(ready, 2);
    cp_message m;
    assert_int_equal(cp_stream_reader_take(&sr, &m, &err), -1);
    gr_error_release(&err);

    /* Fed in one go, it stops at the end of the first message. */
    size_t used;
    assert_int_equal(cp_stream_reader_feed(&sr, stream.data, stream.len, &used, &err), 1);
    assert_true(used < stream.len);
    assert_int_equal(cp_stream_reader_take(&sr, &m, &err), 0);
    cp_message_release(&m);
    size_t used2;
    assert_int_equal(
        cp_stream_reader_feed(&sr, stream.data + used, stream.len - used, &used2, &err), 1);
    assert_int_equal(used + used2, stream.len);
    assert_int_equal(cp_stream_reader_take(&sr, &m, &err), 0);
    cp_message_release(&m);
    cp_stream_reader_release(&sr);
    gr_buf_release(&stream);
}

/* Small frames (struct, segment list and frame within CP__SMALL_READ) are
 * read into blocks of that size, which go back to a stash and serve the next
 * small frame (in the plain build; sanitizer builds keep none); a larger frame
 * gets a buffer of its own size. Each reads back whole. */
static void test_stream_reader_small_blocks(void **state)
{
    (void)state;
    gr_buf stream = GR_BUF_INIT;
    for (int i = 0; i < 3; i++) {
        cp_message b;
        cp_message_init(&b, 0);
        cp_struct_builder r = cp_message_init_root(&b, 1, 1);
        cp_set_u64(r, 0, 100 + (uint64_t)i, 0);
        static char big[4000];
        memset(big, 'x', sizeof(big));
        cp_set_data(r, 0, big, i == 1 ? sizeof(big) : 8);
        cp_message_write(&b, &stream);
        cp_message_release(&b);
    }
    cp_stream_reader sr;
    cp_stream_reader_init(&sr, 0, NULL);
    gr_error_t err = NULL;
    size_t off = 0;
    void *first_block = NULL;
    for (int i = 0; i < 3; i++) {
        size_t used;
        assert_int_equal(
            cp_stream_reader_feed(&sr, stream.data + off, stream.len - off, &used, &err), 1);
        off += used;
        cp_message *m = cp_stream_reader_take_message(&sr, &err);
        assert_non_null(m);
        assert_int_equal(m->owned_small, i != 1);
        assert_int_equal(cp_get_u64(cp_message_root(m), 0, 0), 100 + (uint64_t)i);
        assert_int_equal(cp_get_data(cp_message_root(m), 0, NULL, 0).len, i == 1 ? 4000 : 8);
        if (i == 0)
            first_block = m->owned_buf;
        else if (i == 2 && GR_STASH_MAX)
            assert_ptr_equal(m->owned_buf, first_block); /* the block came back */
        bool in_buf = m->self_in_buf;
        cp_message_release(m); /* a struct in the block goes with it */
        if (!in_buf)
            free(m);
    }
    assert_int_equal(off, stream.len);
    cp_stream_reader_release(&sr);
    gr_buf_release(&stream);
}

/* A message read in one go keeps its segment list in front of its frame, in
 * the one buffer (and, taken with cp_stream_reader_take_message, the message
 * struct too): several segments must all read back, and building onto the
 * read message (which adds a segment, so moves the list out) must neither lose
 * the old segments nor free anything twice (the sanitizer build checks). */
static void test_read_message_keeps_segment_list_in_its_buffer(void **state)
{
    cp_message a;
    cp_message_init(&a, 4);
    sample_build(&a);
    assert_true(a.nsegs > 2);
    gr_buf stream = GR_BUF_INIT;
    cp_message_write(&a, &stream);
    uint32_t nsegs = a.nsegs;
    cp_message_release(&a);

    for (int how = 0; how < 4; how++) {
        cp_message local, *m = &local;
        gr_error_t err = NULL;
        cp_stream_reader sr;
        if (how == 0 || how == 2 || how == 3) {
            cp_stream_reader_init(&sr, 0, NULL);
            size_t used, fed = 0;
            if (how == 3) /* the table comes in pieces: sized as it goes */
                for (; fed < 6; fed++)
                    assert_int_equal(cp_stream_reader_feed(&sr, stream.data + fed, 1, &used, &err), 0);
            assert_int_equal(
                cp_stream_reader_feed(&sr, stream.data + fed, stream.len - fed, &used, &err), 1);
            assert_int_equal(fed + used, stream.len);
            if (how == 0)
                assert_int_equal(cp_stream_reader_take(&sr, m, &err), 0);
            else
                assert_non_null(m = cp_stream_reader_take_message(&sr, &err));
            cp_stream_reader_release(&sr);
        } else {
            assert_int_equal(cp_message_read(m, stream.data, stream.len, NULL, &err), 0);
        }
        assert_int_equal(m->nsegs, nsegs);
        assert_int_equal(m->segs_in_buf, how != 3);
        assert_int_equal(m->self_in_buf, how == 2);
        if (how == 2)
            assert_ptr_equal((void *)m, m->owned_buf);
        assert_int_equal(sample_check(m), 0);

        cp_struct_builder extra = cp_ptr_init_struct(cp_message_root_builder(m), 1, 0);
        cp_set_u64(extra, 0, 99, 0);
        assert_int_equal(m->nsegs, nsegs + 1);
        assert_false(m->segs_in_buf);
        assert_int_equal(cp_get_u64(cp_message_root(m), 0, 0), 99);
        bool self = m->self_in_buf;
        cp_message_release(m);
        if (m != &local && !self)
            free(m);
    }
    gr_buf_release(&stream);
}

static void test_stream_reader_limits(void **state)
{
    cp_stream_reader sr;
    gr_error_t err = NULL;
    size_t used;
    /* Too many segments: refused from the first four bytes. */
    uint32_t hdr[2] = {0xffffffffu, 0};
    cp_stream_reader_init(&sr, 0, NULL);
    assert_int_equal(cp_stream_reader_feed(&sr, hdr, 8, &used, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "segments"));
    gr_error_release(&err);
    cp_stream_reader_release(&sr);
    /* Too large: refused once the segment table is in, before the body. */
    uint32_t big[2] = {0, 1u << 20};
    cp_stream_reader_init(&sr, 4096, NULL);
    assert_int_equal(cp_stream_reader_feed(&sr, big, 8, &used, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "exceeds"));
    gr_error_release(&err);
    cp_stream_reader_release(&sr);

    size_t need;
    assert_int_equal(cp_frame_size(big, 3, 0, NULL, &need, &err), 0);
    assert_int_equal(need, 4);
    assert_int_equal(cp_frame_size(big, 8, 0, NULL, &need, &err), 1);
    assert_int_equal(need, 8 + (8u << 20));
    assert_int_equal(cp_frame_size(big, 8, 1000, NULL, &need, &err), -1);
    gr_error_release(&err);
    uint32_t three[2] = {2, 0};
    assert_int_equal(cp_frame_size(three, 8, 0, NULL, &need, &err), 0);
    assert_int_equal(need, 16);
}

/* ---- hostile messages --------------------------------------------------- */

static void test_frame_truncated_or_padded(void **state)
{
    cp_message m, r;
    cp_message_init(&m, 3);
    sample_build(&m);
    gr_buf out = GR_BUF_INIT;
    cp_message_write(&m, &out);
    cp_message_release(&m);
    gr_error_t err = NULL;
    for (size_t len = 0; len < out.len; len++) {
        assert_int_equal(cp_message_read(&r, out.data, len, NULL, &err), -1);
        gr_error_release(&err);
    }
    gr_buf_append(&out, "\0\0\0\0\0\0\0\0", 8);
    assert_int_equal(cp_message_read(&r, out.data, out.len, NULL, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "trailing"));
    gr_error_release(&err);
    gr_buf_release(&out);
}

static void test_frame_segment_counts(void **state)
{
    gr_error_t err = NULL;
    cp_message r;
    uint32_t huge[4] = {0xffffffffu, 1, 0, 0};
    assert_int_equal(cp_message_read(&r, huge, sizeof(huge), NULL, &err), -1);
    gr_error_release(&err);
    /* 513 segments of zero words: over the default limit of 512. */
    size_t n = 513, len = (4 * (1 + n) + 7) / 8 * 8;
    uint32_t *many = gr_calloc(len / 4, 4);
    many[0] = (uint32_t)n - 1;
    assert_int_equal(cp_message_read(&r, many, len, NULL, &err), -1);
    gr_error_release(&err);
    cp_read_options opts = {.max_segments = 1024};
    assert_int_equal(cp_message_read(&r, many, len, &opts, &err), 0);
    assert_int_equal(r.nsegs, 513);
    /* Segment 0 is empty: the root reads as an empty struct. */
    assert_int_equal(cp_get_u64(cp_message_root(&r), 0, 5), 5);
    cp_message_release(&r);
    free(many);
    /* Segment sizes whose sum overflows 32 bits must not wrap. */
    uint32_t wrap[4] = {1, 0x80000000u, 0x80000000u, 0};
    assert_int_equal(cp_message_read(&r, wrap, sizeof(wrap), NULL, &err), -1);
    gr_error_release(&err);
}

static void test_out_of_bounds_pointers(void **state)
{
    cp_message m;
    struct {
        uint64_t w[3];
        uint32_t n;
        const char *what;
    } cases[] = {
        {{sp(5, 1, 0)}, 1, "out of bounds"},
        {{sp(-2, 1, 0)}, 1, "out of bounds"},
        {{sp(-536870912, 1, 0)}, 1, "out of bounds"},
        {{sp(0, 0xffff, 0xffff), 0}, 2, "out of bounds"},
        {{sp(0, 0, 1), lp(0, 5, 1u << 28)}, 2, "out of bounds"},
        {{sp(0, 0, 1), lp(-3, 2, 1)}, 2, "out of bounds"},
        {{fp(5, 0, false)}, 1, "missing segment"},
        {{fp(0, 7, false)}, 1, "landing pad out of bounds"},
        {{fp(0, 0, false)}, 1, "another far pointer"}, /* a far pointer landing on itself */
        {{fp(0, 0, true), 0}, 2, "not a single far pointer"},
        {{fp(0, 1, true), fp(0, 0, false), fp(0, 0, false)}, 3, "tag is a far pointer"},
        {{(7ull << 32) | 3u | (1u << 2)}, 1, "unknown pointer type"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        open_words(&m, cases[i].w, cases[i].n);
        cp_struct_reader r = cp_message_root(&m);
        cp_get_list(r, 0, CP_ELEM_EIGHT_BYTES, cp_ptr_null());
        expect_problem(&m, cases[i].what);
        cp_message_release(&m);
    }
}

static void test_text_and_kind_checks(void **state)
{
    cp_message m;
    uint64_t noterm[] = {sp(0, 0, 1), lp(0, 2, 3), 0x434241};
    open_words(&m, noterm, 3);
    cp_text t = cp_get_text(cp_message_root(&m), 0, "dflt");
    assert_string_equal(t.str, "dflt");
    expect_problem(&m, "NUL");
    cp_message_release(&m);

    uint64_t wrong[] = {sp(0, 0, 1), lp(0, 4, 1), 5};
    open_words(&m, wrong, 3);
    cp_get_text(cp_message_root(&m), 0, NULL);
    expect_problem(&m, "expected text");
    cp_message_release(&m);

    uint64_t bits[] = {sp(0, 0, 1), lp(0, 1, 10), 0x3ff};
    open_words(&m, bits, 3);
    cp_get_list(cp_message_root(&m), 0, CP_ELEM_COMPOSITE, cp_ptr_null());
    expect_problem(&m, "list element size");
    cp_list_reader l = cp_get_list(cp_message_root(&m), 0, CP_ELEM_BIT, cp_ptr_null());
    assert_int_equal(l.len, 10);
    assert_true(cp_list_get_bool(l, 9));
    assert_false(cp_list_get_bool(l, 10));
    expect_problem(&m, "out of range");
    cp_message_release(&m);

    /* A composite tag whose elements overrun the list's word count. */
    uint64_t comp[] = {sp(0, 0, 1), lp(0, 7, 2), sp(3, 1, 0), 0, 0};
    open_words(&m, comp, 5);
    cp_get_list(cp_message_root(&m), 0, CP_ELEM_COMPOSITE, cp_ptr_null());
    expect_problem(&m, "overrun");
    cp_message_release(&m);
}

static void test_nesting_limit(void **state)
{
    for (int depth = 60; depth <= 100; depth += 40) {
        cp_message m, r;
        cp_message_init(&m, 0);
        Outer_B o = Outer_init_root(&m);
        for (int i = 0; i < depth; i++)
            o = Outer_init_self(o);
        Outer_init_nested(o);
        gr_buf out = GR_BUF_INIT;
        cp_message_write(&m, &out);
        gr_error_t err = NULL;
        assert_int_equal(cp_message_read(&r, out.data, out.len, NULL, &err), 0);
        Outer_R x = Outer_root(&r);
        int seen = 0;
        while (Outer_has_self(x)) {
            x = Outer_get_self(x);
            if (!cp_message_ok(&r))
                break;
            seen++;
        }
        if (depth < CP_DEFAULT_NESTING_LIMIT) {
            assert_int_equal(seen, depth);
            assert_true(cp_message_ok(&r));
        } else {
            assert_true(seen < CP_DEFAULT_NESTING_LIMIT);
            expect_problem(&r, "nesting limit");
        }
        cp_message_release(&r);
        cp_message_release(&m);
        gr_buf_release(&out);
    }
}

static void test_pointer_cycle(void **state)
{
    /* A struct whose only pointer points back at the struct itself. */
    uint64_t w[] = {sp(0, 0, 1), sp(-1, 0, 1)};
    cp_message m;
    open_words(&m, w, 2);
    cp_struct_reader r = cp_message_root(&m);
    int hops = 0;
    while (cp_has_ptr(r, 0) && hops < 1000) {
        r = cp_get_struct(r, 0, cp_ptr_null());
        if (!cp_message_ok(&m))
            break;
        hops++;
    }
    assert_true(hops < CP_DEFAULT_NESTING_LIMIT);
    expect_problem(&m, "nesting limit");
    /* Copying it stops too, with the problem recorded in the source. */
    cp_message c;
    cp_message_init(&c, 0);
    cp_message_reset_limits(&m, NULL);
    cp_ptr_set_copy(cp_message_root_builder(&c), cp_message_root_ptr(&m));
    expect_problem(&m, "nesting limit");
    cp_message_release(&c);
    cp_message_release(&m);
}

static void test_traversal_amplification(void **state)
{
    /* 200 pointers to one list of 65536 words: 13 Mi words of reading
     * claimed by a message of 0.5 MiB, over the default limit of 8 Mi. */
    uint32_t nptrs = 200, lw = 65536;
    uint32_t n = 1 + nptrs + lw;
    uint64_t *w = gr_calloc(n, 8);
    w[0] = sp(0, 0, (uint16_t)nptrs);
    for (uint32_t i = 0; i < nptrs; i++)
        w[1 + i] = lp((int32_t)(nptrs - 1 - i), 5, lw);
    cp_message m;
    open_words(&m, w, n);
    cp_struct_reader r = cp_message_root(&m);
    uint32_t ok = 0;
    for (uint16_t i = 0; i < nptrs; i++) {
        cp_list_reader l = cp_get_list(r, i, CP_ELEM_EIGHT_BYTES, cp_ptr_null());
        if (!cp_message_ok(&m))
            break;
        assert_int_equal(l.len, lw);
        ok++;
    }
    assert_true(ok > 100 && ok < 130);
    expect_problem(&m, "traversal limit");
    /* Once exhausted, it stays exhausted. */
    cp_get_list(r, 0, CP_ELEM_EIGHT_BYTES, cp_ptr_null());
    expect_problem(&m, "traversal limit");
    cp_message_release(&m);
    free(w);

    /* Lists of zero-sized elements cost a word per element. */
    uint64_t voids[] = {sp(0, 0, 1), lp(0, 0, (1u << 29) - 1)};
    open_words(&m, voids, 2);
    cp_get_list(cp_message_root(&m), 0, CP_ELEM_VOID, cp_ptr_null());
    expect_problem(&m, "traversal limit");
    cp_message_release(&m);
    uint64_t empties[] = {sp(0, 0, 1), lp(0, 7, 0), sp((1 << 29) - 1, 0, 0)};
    open_words(&m, empties, 3);
    cp_get_list(cp_message_root(&m), 0, CP_ELEM_COMPOSITE, cp_ptr_null());
    expect_problem(&m, "traversal limit");
    cp_message_release(&m);

    /* A small explicit budget trips early. */
    uint64_t small[] = {sp(0, 0, 2), lp(1, 5, 4), lp(0, 5, 4), 1, 2, 3, 4};
    cp_segment s = {small, 7, 7, false};
    cp_read_options opts = {.traversal_limit_words = 8};
    cp_message_init_segments(&m, &s, 1, &opts);
    cp_struct_reader rr = cp_message_root(&m);
    assert_int_equal(cp_list_get_u64(cp_get_list(rr, 0, CP_ELEM_EIGHT_BYTES, cp_ptr_null()), 3), 4);
    assert_true(cp_message_ok(&m));
    cp_get_list(rr, 1, CP_ELEM_EIGHT_BYTES, cp_ptr_null());
    expect_problem(&m, "traversal limit");
    cp_message_reset_limits(&m, &opts);
    cp_get_list(rr, 1, CP_ELEM_EIGHT_BYTES, cp_ptr_null());
    assert_true(cp_message_ok(&m));
    cp_message_release(&m);
}

static void test_builder_reentry_and_null(void **state)
{
    cp_message m;
    cp_message_init(&m, 2); /* tiny segments: objects land behind far pointers */
    cp_struct_builder root = cp_message_init_root(&m, 1, 2);
    cp_struct_builder a = cp_init_struct(root, 0, 1, 1);
    cp_set_u64(a, 0, 99, 0);
    /* Re-entering an existing struct returns the same storage... */
    cp_struct_builder again = cp_ptr_get_struct_builder(cp_builder_ptr(root, 0), 1, 0);
    assert_ptr_equal(again.data, a.data);
    assert_true(again.seg < m.nsegs);
    cp_set_u64(again, 0, 100, 0);
    /* ...and asking for more than it has makes a new one. */
    cp_struct_builder bigger = cp_ptr_get_struct_builder(cp_builder_ptr(root, 0), 2, 1);
    assert_ptr_not_equal(bigger.data, a.data);
    cp_struct_reader r = cp_struct_builder_as_reader(root);
    assert_int_equal(cp_get_u64(cp_get_struct(r, 0, cp_ptr_null()), 0, 0), 0);
    assert_int_equal(cp_get_struct(r, 0, cp_ptr_null()).data_bytes, 16);

    cp_list_builder bl = cp_init_list(root, 1, CP_ELEM_BIT, 70);
    cp_list_set_bool(bl, 69, true);
    cp_list_set_bool(bl, 3, true);
    cp_list_set_bool(bl, 3, false);
    cp_list_reader blr = cp_list_builder_as_reader(bl);
    assert_true(cp_list_get_bool(blr, 69));
    assert_false(cp_list_get_bool(blr, 3));
    cp_ptr_set_null(cp_builder_ptr(root, 1));
    assert_false(cp_has_ptr(r, 1));
    assert_int_equal(cp_get_list(r, 1, CP_ELEM_BIT, cp_ptr_null()).len, 0);

    /* A new root replaces the old one. */
    cp_struct_builder root2 = cp_message_init_root(&m, 0, 0);
    (void)root2;
    assert_int_equal(cp_message_root(&m).data_bytes, 0);
    assert_true(cp_message_ok(&m));
    cp_message_release(&m);
}

static void test_builder_limits(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    cp_struct_builder root = cp_message_init_root(&m, 0, 1);
    cp_list_builder l = cp_init_list(root, 0, CP_ELEM_BYTE, 1u << 29);
    assert_null(l.base);
    expect_problem(&m, "too long");
    /* Writes through a discarding builder are ignored. */
    cp_list_set_u8(l, 0, 1);
    cp_struct_builder d = cp_init_struct(root, 5, 1, 1);
    cp_set_u64(d, 0, 1, 0);
    assert_null(d.data);
    cp_message_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_and_read_back),
        cmocka_unit_test(test_reused_segment_is_zeroed),
        cmocka_unit_test(test_stream_reader_small_blocks),
        cmocka_unit_test(test_roundtrip_single_segment),
        cmocka_unit_test(test_roundtrip_many_segments),
        cmocka_unit_test(test_roundtrip_packed),
        cmocka_unit_test(test_deep_copy),
        cmocka_unit_test(test_write_fd),
        cmocka_unit_test(test_pack_reference_vectors),
        cmocka_unit_test(test_double_far_pointer),
        cmocka_unit_test(test_xor_defaults),
        cmocka_unit_test(test_list_encodings_compatible),
        cmocka_unit_test(test_caps_and_any_pointer),
        cmocka_unit_test(test_empty_struct_is_not_null),
        cmocka_unit_test(test_stream_reader_byte_by_byte),
        cmocka_unit_test(test_read_message_keeps_segment_list_in_its_buffer),
        cmocka_unit_test(test_stream_reader_limits),
        cmocka_unit_test(test_frame_truncated_or_padded),
        cmocka_unit_test(test_frame_segment_counts),
        cmocka_unit_test(test_out_of_bounds_pointers),
        cmocka_unit_test(test_text_and_kind_checks),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_pointer_cycle),
        cmocka_unit_test(test_traversal_amplification),
        cmocka_unit_test(test_builder_reentry_and_null),
        cmocka_unit_test(test_builder_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
