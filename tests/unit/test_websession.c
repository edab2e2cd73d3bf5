/* Unit tests for the gateway's WebSession conversions: browser headers in,
 * cookies and security headers out, with the limits and refusals. */
#include "websession.h"

#include <setjmp.h>
#include <cmocka.h>

/* The items of a Cookie header as gw__cookie_next gives them, "name=value"
 * joined by "|". */
static char *cookie_items(const char *header)
{
    gr_buf b = GR_BUF_INIT;
    gr_buf_append(&b, "", 0);
    const char *p = header, *end = header + strlen(header);
    gw_cookie c;
    while (gw__cookie_next(&p, end, &c))
        gr_buf_printf(&b, "%s%.*s=%.*s", b.len ? "|" : "", (int)c.name_len, c.name,
                      (int)c.value_len, c.value);
    return gr_buf_steal(&b);
}

static void test_cookies(void **state)
{
    static const struct {
        const char *header, *items;
    } cases[] = {
        {" a=1; granary_grain=secret;b = two words ;=x; c=", "a=1|granary_grain=secret|b=two words|c="},
        {"", ""},
        {"novalue; ;;", ""},
        {"\tk=v=w\t", "k=v=w"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = cookie_items(cases[i].header);
        assert_string_equal(got, cases[i].items);
        free(got);
    }
}

static void test_accept(void **state)
{
    gw_accepted *a;
    gr_error_t err = NULL;
    ssize_t n = gw__ws_parse_accept("text/html, application/xhtml+xml;q=0.9 ,*/*; level=1; Q=0.8,"
                                    " x/y;q=7, z/w;q=nan, v/u;q=abc, ,",
                                    &a, &err);
    assert_int_equal(n, 6);
    assert_string_equal(a[0].name, "text/html");
    assert_true(a[0].q == 1.0f);
    assert_string_equal(a[1].name, "application/xhtml+xml");
    assert_true(a[1].q > 0.89f && a[1].q < 0.91f);
    assert_string_equal(a[2].name, "*/*");
    assert_true(a[2].q > 0.79f && a[2].q < 0.81f);
    assert_true(a[3].q == 1.0f); /* clamped */
    assert_true(a[4].q == 1.0f); /* nan is not a q */
    assert_true(a[5].q == 1.0f);
    gw__accepted_free(a, (size_t)n);
}

static void test_preconditions(void **state)
{
    gw_precondition p;
    gr_error_t err = NULL;
    assert_int_equal(gw__ws_parse_precondition(NULL, NULL, &p, &err), 0);
    assert_int_equal(p.kind, GW_PRE_NONE);
    assert_int_equal(gw__ws_parse_precondition(" * ", NULL, &p, &err), 0);
    assert_int_equal(p.kind, GW_PRE_EXISTS);
    assert_int_equal(gw__ws_parse_precondition(NULL, "*", &p, &err), 0);
    assert_int_equal(p.kind, GW_PRE_DOESNT_EXIST);
    assert_int_equal(gw__ws_parse_precondition(NULL, "W/\"a b\", \"c,d\"", &p, &err), 0);
    assert_int_equal(p.kind, GW_PRE_MATCHES_NONE_OF);
    assert_int_equal(p.n, 2);
    assert_string_equal(p.etags[0].value, "a b");
    assert_true(p.etags[0].weak);
    assert_string_equal(p.etags[1].value, "c,d");
    assert_false(p.etags[1].weak);
    gw__precondition_release(&p);
    assert_int_equal(gw__ws_parse_precondition("\"x\"", "\"y\"", &p, &err), 0);
    assert_int_equal(p.kind, GW_PRE_MATCHES_ONE_OF); /* If-Match wins */
    assert_string_equal(p.etags[0].value, "x");
    gw__precondition_release(&p);
    const char *bad[] = {"abc", "\"open", "\"a\" \"b\"", "W/x"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(gw__ws_parse_precondition(bad[i], NULL, &p, &err), -1);
        assert_true(gr_starts_with(gr_error_msg(err), "If-Match: "));
        gr_error_release(&err);
    }
}

static void test_format_cookie(void **state)
{
    gr_buf b = GR_BUF_INIT;
    gr_error_t err = NULL;
    gw_set_cookie c = {.name = "sid", .value = "abc", .path = "/", .http_only = true,
                       .expires = GW_EXPIRES_RELATIVE, .expires_value = 60};
    assert_int_equal(gw__ws_format_cookie(&b, &c, true, 1445412420, &err), 0);
    assert_string_equal(b.data, "sid=abc; Path=/; Expires=Wed, 21 Oct 2015 07:28:00 GMT; "
                                "HttpOnly; Secure; SameSite=Lax");
    gr_buf_release(&b);
    gw_set_cookie plain = {.name = "a", .value = "b"};
    assert_int_equal(gw__ws_format_cookie(&b, &plain, false, 0, &err), 0);
    assert_string_equal(b.data, "a=b; SameSite=Lax");
    gr_buf_release(&b);
    gw_set_cookie far = {.name = "a", .value = "b", .expires = GW_EXPIRES_ABSOLUTE,
                         .expires_value = INT64_MAX};
    assert_int_equal(gw__ws_format_cookie(&b, &far, false, 0, &err), 0);
    assert_non_null(strstr(b.data, "Expires=Fri, 05 Feb 1971")); /* clamped to 400 days */
    gr_buf_release(&b);
    gw_set_cookie bad[] = {{.name = "a b", .value = "v"}, {.name = "", .value = "v"},
                           {.name = "a", .value = "x;y"}, {.name = "a", .value = "x\r\ny"},
                           {.name = "a", .value = "v", .path = "/;Domain=evil"},
                           {.name = "a=b", .value = "v"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(gw__ws_format_cookie(&b, &bad[i], false, 0, &err), -1);
        gr_error_release(&err);
        assert_int_equal(b.len, 0);
    }
}

static void test_csp(void **state)
{
    char *csp = gw__ws_grain_csp("http://granary.localhost:6080");
    assert_non_null(strstr(csp, "default-src 'none'"));
    assert_non_null(strstr(csp, "img-src 'self' data: blob:"));
    assert_null(strstr(csp, "img-src *"));
    assert_non_null(strstr(csp, "frame-ancestors http://granary.localhost:6080"));
    free(csp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cookies),       cmocka_unit_test(test_accept),
        cmocka_unit_test(test_preconditions), cmocka_unit_test(test_format_cookie),
        cmocka_unit_test(test_csp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
