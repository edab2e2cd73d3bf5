/* Unit tests for src/config: defaults, flags, the file, and every rejection. */
#include "config.h"
#include "testutil.h"

#include <setjmp.h>
#include <cmocka.h>

static void test_defaults(void **state)
{
    cfg c;
    cfg_init(&c);
    assert_string_equal(c.data_dir, "./var");
    assert_string_equal(c.listen_host, "127.0.0.1");
    assert_int_equal(c.listen_port, 6080);
    assert_string_equal(c.base_url, "http://granary.localhost:6080");
    assert_string_equal(c.base_host, "granary.localhost:6080");
    assert_string_equal(c.wildcard_host, "*.granary.localhost:6080");
    assert_string_equal(c.wildcard_suffix, ".granary.localhost:6080");
    assert_false(c.base_https);
    cfg_release(&c);
}

static void test_flags(void **state)
{
    cfg c;
    cfg_init(&c);
    char *argv[] = {"--data", "/srv/g", "--listen=[::1]:0", "--base-url", "HTTPS://Example.COM/",
                    "--wildcard-host", "*.Apps.Example.com", "--log-level=debug"};
    gr_error_t err = NULL;
    assert_int_equal(cfg_parse_args(&c, 8, argv, &err), 0);
    assert_string_equal(c.data_dir, "/srv/g");
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 0);
    assert_string_equal(c.base_url, "https://example.com");
    assert_string_equal(c.base_host, "example.com");
    assert_true(c.base_https);
    assert_string_equal(c.wildcard_suffix, ".apps.example.com");
    assert_int_equal(c.log_level, GR_LOG_DEBUG);
    cfg_release(&c);
}

/* Per-grain limits: on by default, sizes with K/M/G, 0 for none. */
static void test_grain_limits(void **state)
{
    (void)state;
    cfg c;
    cfg_init(&c);
    gr_error_t err = NULL;
    assert_int_equal(c.grain_memory, 1ull << 30);
    assert_int_equal(c.grain_pids, 1024);
    assert_false(c.grain_loopback_redirect);
    assert_int_equal(cfg_set(&c, "grain-memory", "256M", &err), 0);
    assert_int_equal(c.grain_memory, 256ull << 20);
    assert_int_equal(cfg_set(&c, "grain-memory", "2097152", &err), 0);
    assert_int_equal(c.grain_memory, 2u << 20);
    assert_int_equal(cfg_set(&c, "grain-memory", "1t", &err), 0);
    assert_int_equal(c.grain_memory, 1ull << 40);
    assert_int_equal(cfg_set(&c, "grain-memory", "0", &err), 0);
    assert_int_equal(c.grain_memory, 0);
    assert_int_equal(cfg_set(&c, "grain-pids", "0", &err), 0);
    assert_int_equal(c.grain_pids, 0);
    assert_int_equal(cfg_set(&c, "grain-loopback-redirect", "on", &err), 0);
    assert_true(c.grain_loopback_redirect);
    assert_int_equal(cfg_set(&c, "grain-memory", "1024k", &err), 0);
    assert_int_equal(c.grain_memory, 1u << 20);
    cfg_release(&c);
}

/* Each bad input must fail with a message that names the problem. */
static void test_rejections(void **state)
{
    struct {
        const char *name, *value, *expect;
    } cases[] = {
        {"listen", "127.0.0.1", "expected HOST:PORT"},
        {"listen", "127.0.0.1:99999", "out of range"},
        {"listen", "127.0.0.1:http", "not a whole number"},
        {"listen", "example.com:80", "not a numeric"},
        {"listen", ":80", "bad address"},
        {"base-url", "granary.localhost", "must start with http"},
        {"base-url", "http://h/path", "no path"},
        {"base-url", "http://user@h", "no path"},
        {"base-url", "http://bad_host", "not a valid host name"},
        {"base-url", "http://h:0", "bad port"},
        {"base-url", "http://", "not a valid host name"},
        {"base-url", "http://[::1", "bad IPv6"},
        {"wildcard-host", "granary.localhost", "must look like"},
        {"wildcard-host", "*.", "must look like"},
        {"wildcard-host", "*.a b", "not a valid host name"},
        {"data", "", "must not be empty"},
        {"log-level", "loud", "not one of"},
        {"colour", "blue", "unknown option"},
        {"grain-memory", "12Q", "is not a size"},
        {"grain-memory", "-1", "is not a size"},
        {"grain-memory", "2T", "up to 1T"},
        {"grain-memory", "1025G", "up to 1T"},
        {"grain-memory", "4096", "below 1M"},
        {"grain-memory", "1K", "below 1M"},
        {"grain-memory", "G", "is not a size"},
        {"grain-pids", "-5", "out of range"},
        {"grain-loopback-redirect", "maybe", "is not on or off"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cfg c;
        cfg_init(&c);
        gr_error_t err = NULL;
        int r = cfg_set(&c, cases[i].name, cases[i].value, &err);
        if (r != -1 || strstr(gr_error_msg(err), cases[i].expect) == NULL)
            fail_msg("%s=%s: got %d '%s', wanted '%s'", cases[i].name, cases[i].value, r,
                     gr_error_msg(err), cases[i].expect);
        gr_error_release(&err);
        /* A rejected value leaves the previous one in place. */
        if (strcmp(cases[i].name, "listen") == 0)
            assert_int_equal(c.listen_port, 6080);
        cfg_release(&c);
    }
}

static void test_bad_args(void **state)
{
    cfg c;
    cfg_init(&c);
    gr_error_t err = NULL;
    char *a1[] = {"--frobnicate", "1"};
    assert_int_equal(cfg_parse_args(&c, 2, a1, &err), -1);
    assert_string_equal(gr_error_msg(err), "unknown flag --frobnicate (see granary run --help)");
    gr_error_release(&err);
    char *a2[] = {"--data"};
    assert_int_equal(cfg_parse_args(&c, 1, a2, &err), -1);
    assert_string_equal(gr_error_msg(err), "--data needs a value");
    gr_error_release(&err);
    char *a3[] = {"stray"};
    assert_int_equal(cfg_parse_args(&c, 1, a3, &err), -1);
    assert_string_equal(gr_error_msg(err), "unexpected argument 'stray'");
    gr_error_release(&err);
    char *a4[] = {"--config", "/nonexistent/granary.conf"};
    assert_int_equal(cfg_parse_args(&c, 2, a4, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "No such file"));
    gr_error_release(&err);
    cfg_release(&c);
}

static char *write_conf(const char *dir, const char *text)
{
    char *path = gr_asprintf("%s/granary.conf", dir);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    return path;
}

static void test_file_and_precedence(void **state)
{
    char dir[] = "/tmp/granary-cfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    _cleanup_free_ char *path = write_conf(dir, "# comment\n\n  data = /from/file  \n"
                                                "listen = 127.0.0.1:7000 # trailing\n"
                                                "base-url=http://g.test:7000\n");
    cfg c;
    cfg_init(&c);
    gr_error_t err = NULL;
    char *argv[] = {"--config", path, "--listen", "127.0.0.1:7001"};
    assert_int_equal(cfg_parse_args(&c, 4, argv, &err), 0);
    assert_string_equal(c.data_dir, "/from/file");
    assert_int_equal(c.listen_port, 7001); /* the flag wins over the file */
    assert_string_equal(c.base_host, "g.test:7000");
    assert_string_equal(c.config_file, path);
    cfg_release(&c);
    testutil_rm_rf(dir);
}

static void test_file_errors_name_the_line(void **state)
{
    char dir[] = "/tmp/granary-cfg-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct {
        const char *text, *expect;
    } cases[] = {
        {"data = /x\nlisten 1\n", "granary.conf:2: expected 'name = value'"},
        {"\n\n\nlisten = nope\n", "granary.conf:4: --listen"},
        {"volume = 11\n", "granary.conf:1: unknown option 'volume'"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        _cleanup_free_ char *path = write_conf(dir, cases[i].text);
        cfg c;
        cfg_init(&c);
        gr_error_t err = NULL;
        assert_int_equal(cfg_load_file(&c, path, &err), -1);
        if (strstr(gr_error_msg(err), cases[i].expect) == NULL)
            fail_msg("got '%s', wanted '%s'", gr_error_msg(err), cases[i].expect);
        gr_error_release(&err);
        cfg_release(&c);
    }
    /* A NUL byte in the file is refused, not silently truncated. */
    _cleanup_free_ char *path = gr_asprintf("%s/granary.conf", dir);
    FILE *f = fopen(path, "w");
    fwrite("data = /a\0b\n", 1, 12, f);
    fclose(f);
    cfg c;
    cfg_init(&c);
    gr_error_t err = NULL;
    assert_int_equal(cfg_load_file(&c, path, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "NUL"));
    gr_error_release(&err);
    cfg_release(&c);
    testutil_rm_rf(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_rejections),
        cmocka_unit_test(test_grain_limits),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_file_and_precedence),
        cmocka_unit_test(test_file_errors_name_the_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
