/* A hostile grain for the gateway's tests: run in place of the HTTP bridge
 * (the daemon's --bridge), it serves MainView and WebSession on fd 3 itself
 * and answers GETs with what a malicious app could send the platform,
 * chosen by the path:
 *
 * - split204, split304: a content response with status noContent or
 *   notModified and a body that is a whole HTTP response of its own;
 *   split204stream: the same body written to the response stream;
 * - dropstream: a streamed response whose responseStream it lets go at once;
 * - dropafter: a streamed response, one write, then it lets the stream go;
 * - selfhandle: a streamed response whose Handle is the gateway's own
 *   responseStream, handed back; it keeps nothing and writes nothing;
 * - flood/N: a streamed response and N writes of 1 MiB sent back to back,
 *   never waiting for their answers and never saying done;
 * - wsflood/N (openWebSocket): N sendBytes of 1 MiB on the clientStream;
 * - wsloop (openWebSocket): hands the gateway's own clientStream back as its
 *   serverStream, so the browser's bytes come back to the browser, and
 *   sends one message of 4 MiB on it at once;
 * - wshang (openWebSocket): never answers;
 * - wsproto (openWebSocket): accepts with a subprotocol that has an escape
 *   sequence and a DEL in it;
 * - hang: never answers (the call is left unended);
 * - ctlmime: a MIME type and an ETag with an escape sequence and a DEL in
 *   them;
 * - download: a download name with quotes, a backslash, a line break (that
 *   would start a header of its own), a DEL, letters beyond ASCII, a mark
 *   that reorders text and a byte that is not UTF-8;
 * - platformcookies: sets the platform's cookie under both its names, and
 *   one of its own;
 * - anything else: 200 "hostile grain".
 * OPTIONS answers DAV class 1 and two extensions, one with an escape
 * sequence and a DEL in it.
 * newSession fails when the browser's User-Agent says "refuse-session".
 * It ignores its arguments (PORT -- COMMAND...), and runs until fd 3 ends. */
#include "capnp.h"
#include "grain.capnp.h"
#include "rpc.h"
#include "util.h"
#include "web-session.capnp.h"

#include <signal.h>

#define MIB (1u << 20)

static uv_loop_t *loop;
static cp_cap *kept[4096]; /* capabilities it holds on purpose, never let go */
static size_t nkept;

static void keep(cp_cap *c)
{
    if (nkept < sizeof kept / sizeof kept[0])
        kept[nkept++] = c;
    else
        cp_cap_unref(c);
}

static void ignore_answer(const cp_response *resp, void *ud)
{
}

/* Sends a request without waiting for its answer. */
static void fire(cp_request *req)
{
    gr_error_t err = NULL;
    if (cp_request_send(req, ignore_answer, NULL, NULL, &err) < 0) {
        gr_warn("hostile grain: %s", gr_error_msg(err));
        gr_error_release(&err);
    }
}

static void write_bytes(cp_cap *stream, const void *data, size_t len)
{
    ByteStream_write_Params_B p;
    cp_request *w = ByteStream_write_request(stream, &p);
    ByteStream_write_Params_set_data(p, data, len);
    fire(w);
}

/* A Handle that does nothing, for the stream body's handle. */
static void handle_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    cp_call_return(call);
}

static void handle_destroy(cp_server *self)
{
    free(self);
}

static const cp_server_vtable handle_vt = {"hostile Handle", handle_dispatch, handle_destroy};

static cp_cap *new_handle(void)
{
    cp_server *h = gr_calloc(1, sizeof(*h));
    h->vt = &handle_vt;
    return cp_server_cap(h);
}

static const char injected[] = "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 35\r\n"
                               "\r\n<script>alert('no CSP')</script>\r\n";

static char *mib_of(char c)
{
    char *buf = gr_malloc(MIB);
    memset(buf, c, MIB);
    return buf;
}

static void ws_get(cp_server *self, cp_call *call, WebSession_get_Params_R params)
{
    cp_text path = WebSession_get_Params_get_path(params);
    WebSession_Context_R ctx = WebSession_get_Params_get_context(params);
    WebSession_Response_B r = WebSession_get_results(call);
    WebSession_Response_content_B c = WebSession_Response_init_content(r);
    WebSession_Response_content_set_mimeType(c, "text/plain", 10);
    WebSession_Response_content_body_B body = WebSession_Response_content_init_body(c);
    if (strncmp(path.str, "split", 5) == 0) {
        WebSession_Response_content_set_statusCode(
            c, strncmp(path.str, "split304", 8) == 0 ? WebSession_Response_SuccessCode_notModified
                                                     : WebSession_Response_SuccessCode_noContent);
        if (strstr(path.str, "stream")) {
            cp_cap *rs = WebSession_Context_get_responseStream(ctx);
            WebSession_Response_content_body_set_stream(body, new_handle());
            write_bytes(rs, injected, sizeof injected - 1);
            ByteStream_done_Params_B dp;
            fire(ByteStream_done_request(rs, &dp));
            keep(rs);
        } else {
            WebSession_Response_content_body_set_bytes(body, injected, sizeof injected - 1);
        }
    } else if (strcmp(path.str, "hang") == 0) {
        return;
    } else if (strcmp(path.str, "ctlmime") == 0) {
        static const char mime[] = "text/html\x1b[2J\x7f";
        WebSession_Response_content_set_mimeType(c, mime, sizeof mime - 1);
        WebSession_ETag_B tag = WebSession_Response_content_init_eTag(c);
        WebSession_ETag_set_value(tag, "tag\x1b[2J\x7f", 8);
        WebSession_Response_content_body_set_bytes(body, "hostile grain\n", 14);
    } else if (strcmp(path.str, "download") == 0) {
        static const char name[] =
            "r\xc3\xa9sum\xc3\xa9 \"q\"\\\r\nX-Injected: 1\x7f\xe2\x80\xae\xff;.txt";
        WebSession_Response_content_disposition_B d = WebSession_Response_content_init_disposition(c);
        WebSession_Response_content_disposition_set_download(d, name, sizeof name - 1);
        WebSession_Response_content_body_set_bytes(body, "hostile grain\n", 14);
    } else if (strcmp(path.str, "platformcookies") == 0) {
        static const char *names[] = {"granary_grain", "__Host-granary_grain", "mine"};
        WebSession_Cookie_LB l = WebSession_Response_init_setCookies(r, 3);
        for (uint32_t i = 0; i < 3; i++) {
            WebSession_Cookie_B k = WebSession_Cookie_list_at(l, i);
            WebSession_Cookie_set_name(k, names[i], strlen(names[i]));
            WebSession_Cookie_set_value(k, "planted", 7);
        }
        WebSession_Response_content_body_set_bytes(body, "hostile grain\n", 14);
    } else if (strcmp(path.str, "selfhandle") == 0) {
        WebSession_Response_content_body_set_stream(body, WebSession_Context_get_responseStream(ctx));
    } else if (strcmp(path.str, "dropstream") == 0) {
        WebSession_Response_content_body_set_stream(body, new_handle());
    } else if (strcmp(path.str, "dropafter") == 0) {
        cp_cap *rs = WebSession_Context_get_responseStream(ctx);
        WebSession_Response_content_body_set_stream(body, new_handle());
        write_bytes(rs, "one write, then nothing\n", 24);
        cp_cap_unref(rs);
    } else if (strncmp(path.str, "flood/", 6) == 0) {
        cp_cap *rs = WebSession_Context_get_responseStream(ctx);
        WebSession_Response_content_body_set_stream(body, new_handle());
        cp_call_return(call);
        long n = strtol(path.str + 6, NULL, 10);
        _cleanup_free_ char *buf = mib_of('A');
        for (long i = 0; i < n && i < 4096; i++)
            write_bytes(rs, buf, MIB);
        keep(rs);
        return;
    } else {
        WebSession_Response_content_body_set_bytes(body, "hostile grain\n", 14);
    }
    cp_call_return(call);
}

static void ws_open_websocket(cp_server *self, cp_call *call,
                              WebSession_openWebSocket_Params_R params)
{
    cp_text path = WebSession_openWebSocket_Params_get_path(params);
    cp_cap *client = WebSession_openWebSocket_Params_get_clientStream(params);
    if (strcmp(path.str, "wshang") == 0) {
        keep(client);
        return;
    }
    bool loop_back = strcmp(path.str, "wsloop") == 0;
    WebSession_openWebSocket_Results_B r = WebSession_openWebSocket_results(call);
    WebSession_openWebSocket_Results_set_serverStream(r, loop_back ? cp_cap_ref(client) : new_handle());
    if (strcmp(path.str, "wsproto") == 0) {
        cp_list_builder protos = WebSession_openWebSocket_Results_init_protocol(r, 1);
        cp_ptr_set_text(cp_list_ptr_at(protos, 0), "chat\x1b[2J\x7f", 9);
    }
    cp_call_return(call);
    if (loop_back) {
        _cleanup_free_ char *four = gr_malloc(4 * MIB);
        memset(four, 'C', 4 * MIB);
        WebSession_WebSocketStream_sendBytes_Params_B p;
        cp_request *req = WebSession_WebSocketStream_sendBytes_request(client, &p);
        WebSession_WebSocketStream_sendBytes_Params_set_message(p, four, 4 * MIB);
        fire(req);
    }
    long n = strncmp(path.str, "wsflood/", 8) == 0 ? strtol(path.str + 8, NULL, 10) : 0;
    _cleanup_free_ char *buf = mib_of('B');
    for (long i = 0; i < n && i < 4096; i++) {
        WebSession_WebSocketStream_sendBytes_Params_B p;
        cp_request *req = WebSession_WebSocketStream_sendBytes_request(client, &p);
        WebSession_WebSocketStream_sendBytes_Params_set_message(p, buf, MIB);
        fire(req);
    }
    keep(client);
}

static void ws_options(cp_server *self, cp_call *call, WebSession_options_Params_R params)
{
    WebSession_Options_B o = WebSession_options_results(call);
    WebSession_Options_set_davClass1(o, true);
    cp_list_builder ext = WebSession_Options_init_davExtensions(o, 2);
    cp_ptr_set_text(cp_list_ptr_at(ext, 0), "ext\x1b[2J\x7f", 8);
    cp_ptr_set_text(cp_list_ptr_at(ext, 1), "calendar-access", 15);
    cp_call_return(call);
}

static const WebSession_methods web_methods = {
    .get = ws_get, .openWebSocket = ws_open_websocket, .options = ws_options};

static void session_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!WebSession_dispatch(&web_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static const cp_server_vtable session_vt = {"hostile WebSession", session_dispatch,
                                            handle_destroy};

static void mv_get_view_info(cp_server *self, cp_call *call, UiView_getViewInfo_Params_R params)
{
    UiView_getViewInfo_results(call);
    cp_call_return(call);
}

static void mv_new_session(cp_server *self, cp_call *call, UiView_newSession_Params_R params)
{
    WebSession_Params_R wp = WebSession_Params_read(UiView_newSession_Params_get_sessionParams(params));
    cp_text ua = WebSession_Params_get_userAgent(wp);
    if (ua.len && strstr(ua.str, "refuse-session")) {
        cp_call_fail(call, CP_EXC_FAILED, "hostile grain: no session for you");
        return;
    }
    cp_server *s = gr_calloc(1, sizeof(*s));
    s->vt = &session_vt;
    UiView_newSession_Results_set_session(UiView_newSession_results(call), cp_server_cap(s));
    cp_call_return(call);
}

static const UiView_methods view_methods = {.getViewInfo = mv_get_view_info,
                                            .newSession = mv_new_session};

static void mv_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!UiView_dispatch(&view_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static const cp_server_vtable mainview_vt = {"hostile MainView", mv_dispatch, handle_destroy};

static void platform_gone(cp_rpc_conn *conn, const char *reason, void *ud)
{
    exit(0);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    loop = uv_default_loop();
    cp_server *mv = gr_calloc(1, sizeof(*mv));
    mv->vt = &mainview_vt;
    cp_cap *boot = cp_server_cap(mv);
    cp_rpc_conn *conn = NULL;
    gr_error_t err = NULL;
    if (cp_rpc_conn_open(loop, 3, boot, NULL, &conn, &err) < 0)
        gr_die("fd 3: %s", gr_error_msg(err));
    cp_cap_unref(boot);
    cp_rpc_conn_on_disconnect(conn, platform_gone, NULL);
    gr_info("hostile grain: serving");
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}
