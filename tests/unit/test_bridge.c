/* Unit tests for the bridge's HTTP side: requests with the X-Sandstorm
 * headers and no way to inject more, status mapping, cookies, and the parser
 * of the app's responses against well-formed and hostile input. */
#include "bridge.h"

#include <setjmp.h>
#include <cmocka.h>

static void test_request_headers(void **state)
{
    gr_buf b = GR_BUF_INIT;
    gr_error_t err = NULL;
    br_session_info s = {.tab_id = "00112233445566778899aabbccddeeff",
                         .username = "Ada Lovelace & co",
                         .user_id = "0123456789abcdef0123456789abcdef",
                         .permissions = "read,write",
                         .base_path = "https://ui-ab12.granary.example:6080",
                         .session_id = "sess"};
    assert_int_equal(br_request_begin(&b, "GET", "notes?x=1", &s, &err), 0);
    assert_int_equal(br_request_header(&b, "Accept", "text/html", &err), 0);
    br_request_end(&b, -2);
    assert_true(gr_starts_with(b.data, "GET /notes?x=1 HTTP/1.1\r\n"
                                       "Host: ui-ab12.granary.example:6080\r\n"
                                       "X-Forwarded-Proto: https\r\n"
                                       "X-Sandstorm-Username: Ada%20Lovelace%20%26%20co\r\n"));
    assert_non_null(strstr(b.data, "X-Sandstorm-Tab-Id: 00112233445566778899aabbccddeeff\r\n"));
    assert_non_null(strstr(b.data, "X-Sandstorm-User-Id: 0123456789abcdef0123456789abcdef\r\n"));
    assert_non_null(strstr(b.data, "X-Sandstorm-Permissions: read,write\r\n"));
    assert_non_null(strstr(b.data, "X-Sandstorm-Session-Type: normal\r\n"));
    assert_non_null(strstr(b.data, "X-Sandstorm-Base-Path: https://ui-ab12.granary.example:6080\r\n"));
    assert_true(strcmp(b.data + b.len - 4, "\r\n\r\n") == 0);
    gr_buf_release(&b);

    br_session_info anon = {.base_path = "http://ui-1.x"};
    assert_int_equal(br_request_begin(&b, "POST", "", &anon, &err), 0);
    br_request_end(&b, 5);
    assert_non_null(strstr(b.data, "X-Sandstorm-Username: Anonymous%20User\r\n"));
    assert_null(strstr(b.data, "X-Sandstorm-User-Id"));
    assert_non_null(strstr(b.data, "Content-Length: 5\r\n"));
    gr_buf_release(&b);

    /* Without a base path: Host: sandbox and no X-Forwarded-Proto (facts 16). */
    br_session_info bare = {.session_id = "1"};
    assert_int_equal(br_request_begin(&b, "GET", "", &bare, &err), 0);
    assert_true(gr_starts_with(b.data, "GET / HTTP/1.1\r\nHost: sandbox\r\nX-Sandstorm-Username:"));
    assert_null(strstr(b.data, "X-Forwarded-Proto"));
    gr_buf_release(&b);
    br_session_info spaced = {.base_path = "http://a b.example"};
    assert_int_equal(br_request_begin(&b, "GET", "", &spaced, &err), -1);
    gr_error_release(&err);
    gr_buf_release(&b);
}

static void test_injection_is_refused(void **state)
{
    gr_buf b = GR_BUF_INIT;
    gr_error_t err = NULL;
    const char *bad_paths[] = {"a b", "a\r\nX: y", "a\nb", "a\tb", "\x7f"};
    for (size_t i = 0; i < sizeof(bad_paths) / sizeof(bad_paths[0]); i++) {
        assert_int_equal(br_request_begin(&b, "GET", bad_paths[i], NULL, &err), -1);
        gr_error_release(&err);
    }
    assert_int_equal(br_request_begin(&b, "GE T", "x", NULL, &err), -1);
    gr_error_release(&err);
    assert_int_equal(br_request_header(&b, "X-Evil", "a\r\nSet-Cookie: x=y", &err), -1);
    assert_string_equal(gr_error_msg(err), "header X-Evil: the value holds a line break");
    gr_error_release(&err);
    assert_int_equal(br_request_header(&b, "Bad Name", "v", &err), -1);
    gr_error_release(&err);
    assert_int_equal(br_request_header(&b, "", "v", &err), -1);
    gr_error_release(&err);
    br_session_info s = {.username = "x", .permissions = "read\r\nX-Injected: 1"};
    assert_int_equal(br_request_begin(&b, "GET", "x", &s, &err), -1);
    gr_error_release(&err);
    /* A display name with a line break is percent-encoded, not refused. */
    gr_buf_release(&b);
    br_session_info n = {.username = "line\r\nbreak"};
    assert_int_equal(br_request_begin(&b, "GET", "x", &n, &err), 0);
    assert_non_null(strstr(b.data, "line%0D%0Abreak"));
    gr_buf_release(&b);
}

static void test_whitelists(void **state)
{
    assert_true(br_request_header_allowed("X-Sandstorm-App-Foo"));
    assert_true(br_request_header_allowed("x-requested-with"));
    assert_true(br_request_header_allowed("OC-Chunked"));
    assert_false(br_request_header_allowed("X-Sandstorm-Permissions"));
    assert_false(br_request_header_allowed("Authorization"));
    assert_true(br_response_header_allowed("x-sandstorm-app-thing"));
    assert_false(br_response_header_allowed("Set-Cookie"));
    assert_false(br_response_header_allowed("Content-Security-Policy"));
    /* By length, on bytes that do not end in NUL (h2o's header names). */
    const char names[] = "x-csrf-tokenx-csrf-tokensx-sandstorm-app-x-sandstorm-ap";
    assert_true(br_request_header_allowed_n(names, 12));       /* x-csrf-token */
    assert_false(br_request_header_allowed_n(names + 12, 13)); /* x-csrf-tokens */
    assert_false(br_request_header_allowed_n(names, 11));      /* x-csrf-toke */
    assert_true(br_request_header_allowed_n(names + 25, 16));  /* the bare prefix */
    assert_false(br_request_header_allowed_n(names + 41, 14)); /* short of the prefix */
}

static void test_status_map(void **state)
{
    struct {
        int status;
        br_kind kind;
        int code;
        bool permanent, get;
    } v[] = {
        {200, BR_CONTENT, 0}, {201, BR_CONTENT, 1}, {202, BR_CONTENT, 2}, {206, BR_CONTENT, 4},
        {207, BR_CONTENT, 5}, {203, BR_SERVER_ERROR, 0}, {299, BR_SERVER_ERROR, 0},
        {204, BR_NO_CONTENT, 0},
        {304, BR_PRECONDITION_FAILED, 0}, {412, BR_PRECONDITION_FAILED, 0},
        {301, BR_REDIRECT, 0, true, true}, {302, BR_REDIRECT, 0, false, true},
        {303, BR_REDIRECT, 0, false, true}, {307, BR_REDIRECT, 0, false, false},
        {308, BR_REDIRECT, 0, true, false}, {400, BR_CLIENT_ERROR, 0}, {403, BR_CLIENT_ERROR, 1},
        {404, BR_CLIENT_ERROR, 2}, {405, BR_CLIENT_ERROR, 3}, {406, BR_CLIENT_ERROR, 4},
        {409, BR_CLIENT_ERROR, 5}, {410, BR_CLIENT_ERROR, 6}, {413, BR_CLIENT_ERROR, 7},
        {414, BR_CLIENT_ERROR, 8}, {415, BR_CLIENT_ERROR, 9}, {418, BR_CLIENT_ERROR, 10},
        {422, BR_CLIENT_ERROR, 12}, {401, BR_CLIENT_ERROR, 0}, {429, BR_CLIENT_ERROR, 0},
        {500, BR_SERVER_ERROR, 0}, {503, BR_SERVER_ERROR, 0}, {300, BR_SERVER_ERROR, 0},
        {100, BR_SERVER_ERROR, 0}, {-1, BR_SERVER_ERROR, 0}, {99999, BR_SERVER_ERROR, 0},
    };
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        br_status_map m = br_map_status(v[i].status);
        if (m.kind != v[i].kind || m.code != v[i].code || m.permanent != v[i].permanent ||
            m.switch_to_get != v[i].get)
            fail_msg("status %d: kind %d code %d", v[i].status, m.kind, m.code);
    }
    assert_true(br_map_status(205).reset_form);
}

static void test_cookies(void **state)
{
    br_cookie c;
    assert_int_equal(br_parse_set_cookie("sid=abc; Path=/app; HttpOnly; Max-Age=3600; "
                                         "Expires=Wed, 21 Oct 2015 07:28:00 GMT",
                                         &c),
                     0);
    assert_string_equal(c.name, "sid");
    assert_string_equal(c.value, "abc");
    assert_string_equal(c.path, "/app");
    assert_true(c.http_only);
    assert_int_equal(c.expires, BR_EXPIRES_RELATIVE); /* Max-Age wins */
    assert_int_equal(c.expires_value, 3600);
    br_cookie_release(&c);
    assert_int_equal(br_parse_set_cookie(" a = b ; expires=Wed, 21 Oct 2015 07:28:00 GMT", &c), 0);
    assert_string_equal(c.name, "a");
    assert_int_equal(c.expires, BR_EXPIRES_ABSOLUTE);
    assert_int_equal(c.expires_value, 1445412480);
    br_cookie_release(&c);
    assert_int_equal(br_parse_set_cookie("noequals", &c), -1);
    assert_int_equal(br_parse_set_cookie("=v", &c), -1);
    assert_int_equal(br_parse_set_cookie("x=1; Max-Age=-5; Max-Age=zz", &c), 0);
    assert_int_equal(c.expires_value, 0);
    br_cookie_release(&c);
}

typedef struct {
    int heads, dones;
    gr_buf body;
    int status;
    char *type, *etag;
    size_t ncookies, nheaders;
} sink;

static int s_head(void *ud, br_response *r)
{
    sink *s = ud;
    s->heads++;
    s->status = r->status;
    s->type = r->content_type ? gr_strdup(r->content_type) : NULL;
    s->etag = r->etag ? gr_strdup(r->etag) : NULL;
    s->ncookies = r->ncookies;
    s->nheaders = r->nheaders;
    return 0;
}

static int s_body(void *ud, const char *d, size_t n)
{
    gr_buf_append(&((sink *)ud)->body, d, n);
    return 0;
}

static int s_done(void *ud)
{
    ((sink *)ud)->dones++;
    return 0;
}

static const br_parser_callbacks cbs = {s_head, s_body, s_done};

/* Parses text fed one byte at a time (the hardest split) or whole; returns
 * 0 or -1, with the error message in *msg. */
static int parse(const char *text, size_t len, bool bytewise, bool head, sink *s, char **msg)
{
    memset(s, 0, sizeof(*s));
    br_parser *p = br_parser_new(NULL, &cbs, s, head);
    gr_error_t err = NULL;
    int r = 0;
    if (bytewise) {
        for (size_t i = 0; i < len && r == 0; i++)
            r = br_parser_feed(p, text + i, 1, &err);
    } else {
        r = br_parser_feed(p, text, len, &err);
    }
    if (r == 0)
        r = br_parser_finish(p, &err);
    *msg = r ? gr_strdup(gr_error_msg(err)) : NULL;
    gr_error_release(&err);
    br_parser_free(p);
    return r;
}

static void sink_release(sink *s);

static void test_websocket_accept(void **state)
{
    char out[29];
    br_websocket_accept("dGhlIHNhbXBsZSBub25jZQ==", out); /* RFC 6455 section 1.3 */
    assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    gr_buf b = GR_BUF_INIT;
    br_base64(&b, (const unsigned char *)"any carnal pleas", 16);
    br_base64(&b, (const unsigned char *)"ab", 2);
    br_base64(&b, (const unsigned char *)"a", 1);
    assert_string_equal(b.data, "YW55IGNhcm5hbCBwbGVhcw==YWI=YQ==");
    gr_buf_release(&b);
}

/* A 101 ends the response only for a WebSocket handshake; the bytes after it
 * belong to the new protocol, wherever the reads split. */
static void test_parser_upgrade(void **state)
{
    const char *text = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                       "Connection: Upgrade\r\nSec-WebSocket-Protocol: chat\r\n"
                       "DAV: 1\r\n\r\n\x81\x02hi";
    size_t len = strlen(text), head_len = strlen(text) - 4;
    for (size_t split = 1; split < len; split++) {
        sink s;
        memset(&s, 0, sizeof(s));
        br_parser *p = br_parser_new(NULL, &cbs, &s, false);
        br_parser_expect_upgrade(p);
        gr_error_t err = NULL;
        assert_int_equal(br_parser_feed(p, text, split, &err), 0);
        size_t rest = 0;
        if (br_parser_upgraded(p)) {
            rest = split - br_parser_upgrade_offset(p);
        } else {
            assert_int_equal(br_parser_feed(p, text + split, len - split, &err), 0);
            assert_true(br_parser_upgraded(p));
            rest = len - split - br_parser_upgrade_offset(p);
        }
        assert_int_equal(rest, split < head_len ? 4 : split - head_len);
        assert_int_equal(s.heads, 1);
        assert_int_equal(s.dones, 0);
        assert_int_equal(s.status, 101);
        br_parser_free(p);
        sink_release(&s);
    }
    /* The head keeps what the bridge needs: the protocol, and DAV for OPTIONS. */
    sink s;
    memset(&s, 0, sizeof(s));
    br_parser *p = br_parser_new(NULL, NULL, NULL, false);
    br_parser_expect_upgrade(p);
    gr_error_t err = NULL;
    assert_int_equal(br_parser_feed(p, text, len, &err), 0);
    br_parser_free(p);
    /* Without expect_upgrade a 101 is an interim answer, and what follows is no
     * HTTP response. */
    char *msg;
    assert_int_equal(parse(text, len, false, false, &s, &msg), -1);
    assert_non_null(strstr(msg, "not valid HTTP"));
    free(msg);
    sink_release(&s);
}

static void sink_release(sink *s)
{
    gr_buf_release(&s->body);
    free(s->type);
    free(s->etag);
}

static void test_parser_good_responses(void **state)
{
    const char *cases[] = {
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\nETag: \"v1\"\r\n"
        "Set-Cookie: a=b\r\nSet-Cookie: c=d; HttpOnly\r\nX-Sandstorm-App-X: 1\r\nX-Other: 2\r\n\r\nhello",
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
        "2\r\nhe\r\n3;ext=1\r\nllo\r\n0\r\nTrailer: x\r\n\r\n",
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello", /* ends with the connection */
        "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
        "Content-Length: 5\r\n\r\nhello",
    };
    for (int bytewise = 0; bytewise < 2; bytewise++) {
        for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
            sink s;
            char *msg;
            if (parse(cases[i], strlen(cases[i]), bytewise, false, &s, &msg) != 0)
                fail_msg("case %zu: %s", i, msg);
            assert_int_equal(s.heads, 1);
            assert_int_equal(s.dones, 1);
            assert_int_equal(s.status, 200);
            assert_string_equal(s.type, "text/plain");
            assert_int_equal(s.body.len, 5);
            assert_memory_equal(s.body.data, "hello", 5);
            if (i == 0) {
                assert_string_equal(s.etag, "\"v1\"");
                assert_int_equal(s.ncookies, 2);
                assert_int_equal(s.nheaders, 1); /* only the whitelisted one */
            }
            sink_release(&s);
        }
    }
    /* HEAD: a Content-Length but no body follows. */
    sink s;
    char *msg;
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
    assert_int_equal(parse(head, strlen(head), false, true, &s, &msg), 0);
    assert_int_equal(s.dones, 1);
    assert_int_equal(s.body.len, 0);
    sink_release(&s);
}

static void test_parser_hostile_responses(void **state)
{
    gr_buf huge = GR_BUF_INIT, many = GR_BUF_INIT;
    gr_buf_puts(&huge, "HTTP/1.1 200 OK\r\nX-Big: ");
    for (int i = 0; i < 70000; i++)
        gr_buf_puts(&huge, "a");
    gr_buf_puts(&huge, "\r\n\r\n");
    gr_buf_puts(&many, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 200; i++)
        gr_buf_printf(&many, "X-%d: v\r\n", i);
    gr_buf_puts(&many, "\r\n");
    struct {
        const char *text;
        size_t len;
        const char *expect;
    } cases[] = {
        {"HTTP/1.1 OK\r\n\r\n", 0, "not valid HTTP"},
        {"HTTX/1.1 200 OK\r\n\r\n", 0, "not valid HTTP"},
        {"HTTP/1.1 2000 OK\r\n\r\n", 0, "not valid HTTP"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 0, "not valid HTTP"},
        {"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n", 0,
         "not valid HTTP"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 0,
         "not valid HTTP"},
        {"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n", 0, "not valid HTTP"},
        {"HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", 0, "not valid HTTP"},
        {"HTTP/1.1 200 OK\r\nX: a\0b\r\n\r\n", 27, "not valid HTTP"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 0, "middle of its response"},
        {"", 0, "without answering"},
        {"HTTP/1.1 200 OK\r\nCont", 0, "without answering"},
        {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nabHTTP/1.1", 0, "bytes after its response"},
        {huge.data, huge.len, "headers are too large"},
        {many.data, many.len, "too many headers"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sink s;
        char *msg = NULL;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].text);
        int r = parse(cases[i].text, len, false, false, &s, &msg);
        if (r != -1 || strstr(msg, cases[i].expect) == NULL)
            fail_msg("case %zu: got %d '%s', wanted '%s'", i, r, msg ? msg : "", cases[i].expect);
        free(msg);
        sink_release(&s);
    }
    gr_buf_release(&huge);
    gr_buf_release(&many);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_headers), cmocka_unit_test(test_injection_is_refused),
        cmocka_unit_test(test_whitelists),      cmocka_unit_test(test_status_map),
        cmocka_unit_test(test_cookies),         cmocka_unit_test(test_parser_good_responses),
        cmocka_unit_test(test_parser_hostile_responses), cmocka_unit_test(test_parser_upgrade),
        cmocka_unit_test(test_websocket_accept),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
