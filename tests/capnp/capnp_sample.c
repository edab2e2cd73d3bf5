/* A command-line driver over sample.h for tests/capnp/test_interop.py:
 *   capnp_sample write [--packed] [--segment-words N]   build and print
 *   capnp_sample check [--packed]                       read stdin, verify
 *   capnp_sample copy [--segment-words N]               deep-copy stdin's root
 *   capnp_sample doublefar                              a hand-made double-far message
 *   capnp_sample defaults                               Defaults, some fields changed
 *   capnp_sample check-defaults                         read stdin's Defaults, print it */
#include "sample.h"

static int read_all(gr_buf *in)
{
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        gr_buf_append(in, chunk, n);
    return ferror(stdin) ? -1 : 0;
}

static void put(const gr_buf *out)
{
    fwrite(out->data, 1, out->len, stdout);
}

int main(int argc, char **argv)
{
    if (argc < 2)
        gr_die("usage: capnp_sample write|check|copy|doublefar [--packed] [--segment-words N]");
    bool packed = false;
    long seg_words = 0;
    for (int i = 2; i < argc; i++) {
        gr_error_t err = NULL;
        if (strcmp(argv[i], "--packed") == 0)
            packed = true;
        else if (strcmp(argv[i], "--segment-words") == 0 && i + 1 < argc) {
            if (gr_parse_long(argv[++i], 1, 1 << 20, &seg_words, &err) < 0)
                gr_die("%s", gr_error_msg(err));
        } else
            gr_die("unknown argument %s", argv[i]);
    }
    gr_buf out = GR_BUF_INIT, in = GR_BUF_INIT;
    cp_message m;
    gr_error_t err = NULL;
    int rc = 0;
    if (strcmp(argv[1], "write") == 0) {
        cp_message_init(&m, (uint32_t)seg_words);
        sample_build(&m);
        if (packed)
            cp_message_write_packed(&m, &out);
        else
            cp_message_write(&m, &out);
        fprintf(stderr, "segments: %u\n", m.nsegs);
        put(&out);
        cp_message_release(&m);
    } else if (strcmp(argv[1], "check") == 0 || strcmp(argv[1], "copy") == 0) {
        if (read_all(&in) < 0)
            gr_die("reading stdin failed");
        int r = packed ? cp_message_read_packed(&m, in.data, in.len, 0, NULL, &err)
                       : cp_message_read(&m, in.data, in.len, NULL, &err);
        if (r < 0)
            gr_die("%s", gr_error_msg(err));
        if (argv[1][1] == 'h') {
            rc = sample_check(&m) ? 1 : 0;
        } else {
            cp_message dst;
            cp_message_init(&dst, (uint32_t)seg_words);
            cp_ptr_set_copy(cp_message_root_builder(&dst), cp_message_root_ptr(&m));
            if (cp_message_check(&m, &err) < 0)
                gr_die("%s", gr_error_msg(err));
            cp_message_write(&dst, &out);
            fprintf(stderr, "segments: %u\n", dst.nsegs);
            put(&out);
            cp_message_release(&dst);
        }
        cp_message_release(&m);
    } else if (strcmp(argv[1], "doublefar") == 0) {
        /* Root (segment 0) is a double-far pointer to a landing pad in segment 1
         * whose far pointer names Inner's content at the start of segment 2. */
        static const uint64_t seg0[] = {((uint64_t)1 << 32) | (0u << 3) | 4u | 2u};
        static const uint64_t seg1[] = {((uint64_t)2 << 32) | (0u << 3) | 2u,
                                        /* tag: struct, 1 data word, 1 pointer */
                                        ((uint64_t)((1u << 16) | 1u) << 32)};
        static const uint64_t seg2[] = {
            ((uint64_t)1 << 32) | 42u,               /* id = 42, flag = true */
            ((uint64_t)((3u << 3) | 2u) << 32) | 1u, /* name: 3 bytes at +0 */
            0x0000000000006968ull,                   /* "hi\0" */
        };
        cp_segment segs[3] = {{(uint64_t *)seg0, 1, 1, false},
                              {(uint64_t *)seg1, 2, 2, false},
                              {(uint64_t *)seg2, 3, 3, false}};
        cp_message_init_segments(&m, segs, 3, NULL);
        cp_message_write(&m, &out);
        put(&out);
        cp_message_release(&m);
    } else if (strcmp(argv[1], "defaults") == 0) {
        cp_message_init(&m, 0);
        Defaults_B d = Defaults_init_root(&m);
        Defaults_set_boolDefault(d, false);
        Defaults_set_int8Default(d, 0);
        Defaults_set_int32Default(d, -12345678); /* its default: stored as zero */
        Defaults_set_uint64Default(d, 1);
        Defaults_set_float64Default(d, 0.5);
        Defaults_set_enumDefault(d, Color_red);
        Defaults_set_textDefault(d, "set", 3);
        Inner_set_id(Defaults_init_structDefault(d), 5);
        cp_message_write(&m, &out);
        put(&out);
        cp_message_release(&m);
    } else if (strcmp(argv[1], "check-defaults") == 0) {
        if (read_all(&in) < 0)
            gr_die("reading stdin failed");
        if (cp_message_read(&m, in.data, in.len, NULL, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        Defaults_R d = Defaults_root(&m);
        printf(
            "bool=%d int8=%d int16=%d int32=%d int64=%lld uint8=%u uint16=%u uint32=%u "
            "uint64=%llu float32=%g float64=%g enum=%d text=%s data=%zu struct=%u/%s "
            "ints=%u textList=%u structList=%u bools=%u\n",
            Defaults_get_boolDefault(d), Defaults_get_int8Default(d), Defaults_get_int16Default(d),
            Defaults_get_int32Default(d), (long long)Defaults_get_int64Default(d),
            Defaults_get_uint8Default(d), Defaults_get_uint16Default(d),
            Defaults_get_uint32Default(d), (unsigned long long)Defaults_get_uint64Default(d),
            (double)Defaults_get_float32Default(d), Defaults_get_float64Default(d),
            (int)Defaults_get_enumDefault(d), Defaults_get_textDefault(d).str,
            Defaults_get_dataDefault(d).len, Inner_get_id(Defaults_get_structDefault(d)),
            Inner_get_name(Defaults_get_structDefault(d)).str, Defaults_get_int32ListDefault(d).len,
            Defaults_get_textListDefault(d).len, Inner_list_len(Defaults_get_structListDefault(d)),
            Defaults_get_boolListDefault(d).len);
        if (cp_message_check(&m, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        cp_message_release(&m);
    } else {
        gr_die("unknown command %s", argv[1]);
    }
    gr_buf_release(&in);
    gr_buf_release(&out);
    return rc;
}
