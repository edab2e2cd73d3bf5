/* Plays the platform for granary-http-bridge tests: starts the bridge with fd 3
 * = one end of a socketpair, bootstraps its MainView, then runs one JSON
 * command per stdin line and prints one JSON line per result (see
 * tests/bridge/test_bridge.py for the commands).
 *
 *   platform BRIDGE PORT -- APP [ARGS...]
 */
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "activity.capnp.h"
#include "capnp.h"
#include "grain.capnp.h"
#include "identity.capnp.h"
#include "util.capnp.h"
#include "web-session.capnp.h"
#include "util.h"

static uv_loop_t *loop;
static cp_rpc_conn *conn;
static cp_cap *view, *session;
static bool busy;
static json_t *out;
static uv_process_t bridge;
static bool bridge_exited;
static cp_pending *cancel_pending;
static uv_timer_t cancel_timer;

static void emit(json_t *j)
{
    char *s = json_dumps(j, JSON_COMPACT);
    printf("%s\n", s);
    fflush(stdout);
    free(s);
    json_decref(j);
}

static void finish(void)
{
    busy = false;
}

/* Prints the current result and ends the command. */
static void emit_done(void)
{
    emit(out);
    out = NULL;
    finish();
}

static void fail_out(const cp_response *resp)
{
    json_object_set_new(out, "error", json_string(resp->exception->reason));
}

/* ---- a ByteStream that hashes what it receives ------------------------------------ */

typedef struct sink {
    cp_server base;
    EVP_MD_CTX *md;
    uint64_t bytes;
    bool done, dropped, waiting;
    gr_buf text; /* the first 64 KiB */
} sink;

static sink *cur_sink;
static uint64_t drop_after; /* drop the body's Handle after this many bytes */
/* A slow reader: each write returns only after the previous one has, one
 * per slow_ms, as a browser-paced gateway would. */
static uint64_t slow_ms;
static cp_call *slow_queue[64];
static size_t slow_n;
static uv_timer_t slow_timer;

static void slow_tick(uv_timer_t *t)
{
    if (slow_n == 0)
        return;
    cp_call_return(slow_queue[0]);
    memmove(slow_queue, slow_queue + 1, --slow_n * sizeof(slow_queue[0]));
    if (slow_n)
        uv_timer_start(&slow_timer, slow_tick, slow_ms, 0);
}
static cp_cap *cur_handle;

static void sink_report(sink *k)
{
    unsigned char md[32];
    unsigned n = 0;
    EVP_DigestFinal_ex(k->md, md, &n);
    char hex[65];
    gr_hex(md, n, hex);
    json_object_set_new(out, "bodyBytes", json_integer((json_int_t)k->bytes));
    json_object_set_new(out, "sha256", json_string(hex));
    json_object_set_new(out, "streamDone", json_boolean(k->done));
    k->waiting = false;
    cp_cap_unref(cur_handle);
    cur_handle = NULL;
    emit_done();
}

static void sink_write(cp_server *self, cp_call *call, ByteStream_write_Params_R p)
{
    sink *k = (sink *)self;
    cp_data d = ByteStream_write_Params_get_data(p);
    EVP_DigestUpdate(k->md, d.ptr, d.len);
    k->bytes += d.len;
    if (slow_ms && slow_n < 64) {
        slow_queue[slow_n++] = call;
        if (slow_n == 1)
            uv_timer_start(&slow_timer, slow_tick, slow_ms, 0);
    } else {
        cp_call_return(call);
    }
    if (drop_after && k->bytes >= drop_after && k->waiting && cur_handle) {
        json_object_set_new(out, "handleDropped", json_true());
        sink_report(k); /* drops the Handle: the bridge must stop the body */
    }
}

static void sink_done(cp_server *self, cp_call *call, ByteStream_done_Params_R p)
{
    sink *k = (sink *)self;
    k->done = true;
    cp_call_return(call);
    if (k->waiting)
        sink_report(k);
}

static void sink_expect(cp_server *self, cp_call *call, ByteStream_expectSize_Params_R p)
{
    cp_call_return(call);
}

static const ByteStream_methods sink_methods = {sink_write, sink_done, sink_expect};

static void sink_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!ByteStream_dispatch(&sink_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void sink_destroy(cp_server *self)
{
    sink *k = (sink *)self;
    k->dropped = true;
    if (k->waiting && !k->done) {
        json_object_set_new(out, "streamError", json_string("dropped without done()"));
        sink_report(k);
    }
    if (cur_sink == k)
        cur_sink = NULL;
    EVP_MD_CTX_free(k->md);
    free(k);
}

static const cp_server_vtable sink_vt = {"Sink", sink_dispatch, sink_destroy};

static cp_cap *sink_new(void)
{
    sink *k = gr_calloc(1, sizeof(*k));
    k->base.vt = &sink_vt;
    k->md = EVP_MD_CTX_new();
    EVP_DigestInit_ex(k->md, EVP_sha256(), NULL);
    cur_sink = k;
    return cp_server_cap(&k->base);
}

/* ---- reading a Response ------------------------------------------------------- */

static const char *kinds[] = {"redirect",    "content",   "clientError",
                              "serverError", "noContent", "preconditionFailed"};

static json_t *etag_json(WebSession_ETag_R e)
{
    return json_pack("{s:s,s:b}", "value", WebSession_ETag_get_value(e).str, "weak",
                     WebSession_ETag_get_weak(e));
}

static void body_json(const void *d, size_t n)
{
    unsigned char md[32];
    unsigned mdn = 0;
    EVP_Digest(d, n, md, &mdn, EVP_sha256(), NULL);
    char hex[65];
    gr_hex(md, mdn, hex);
    json_object_set_new(out, "bodyBytes", json_integer((json_int_t)n));
    json_object_set_new(out, "sha256", json_string(hex));
    if (n <= 65536)
        json_object_set_new(out, "body", json_stringn_nocheck(d, n));
}

/* Returns true when the body still streams in. */
static bool read_response(WebSession_Response_R r)
{
    unsigned w = WebSession_Response_which(r);
    json_object_set_new(out, "kind", json_string(w < 6 ? kinds[w] : "?"));
    WebSession_Cookie_LR cl = WebSession_Response_get_setCookies(r);
    json_t *cookies = json_array();
    for (uint32_t i = 0; i < WebSession_Cookie_list_len(cl); i++) {
        WebSession_Cookie_R c = WebSession_Cookie_list_get(cl, i);
        WebSession_Cookie_expires_R e = WebSession_Cookie_get_expires(c);
        unsigned ew = WebSession_Cookie_expires_which(e);
        json_t *cj =
            json_pack("{s:s,s:s,s:s,s:b}", "name", WebSession_Cookie_get_name(c).str, "value",
                      WebSession_Cookie_get_value(c).str, "path", WebSession_Cookie_get_path(c).str,
                      "httpOnly", WebSession_Cookie_get_httpOnly(c));
        if (ew == 1)
            json_object_set_new(cj, "absolute",
                                json_integer(WebSession_Cookie_expires_get_absolute(e)));
        if (ew == 2)
            json_object_set_new(
                cj, "relative",
                json_integer((json_int_t)WebSession_Cookie_expires_get_relative(e)));
        json_array_append_new(cookies, cj);
    }
    json_object_set_new(out, "cookies", cookies);
    WebSession_Response_Header_LR hl = WebSession_Response_get_additionalHeaders(r);
    json_t *headers = json_array();
    for (uint32_t i = 0; i < WebSession_Response_Header_list_len(hl); i++) {
        WebSession_Response_Header_R h = WebSession_Response_Header_list_get(hl, i);
        json_array_append_new(headers,
                              json_pack("[s,s]", WebSession_Response_Header_get_name(h).str,
                                        WebSession_Response_Header_get_value(h).str));
    }
    json_object_set_new(out, "headers", headers);
    switch (w) {
    case 0: {
        WebSession_Response_redirect_R rd = WebSession_Response_get_redirect(r);
        json_object_set_new(out, "location",
                            json_string(WebSession_Response_redirect_get_location(rd).str));
        json_object_set_new(out, "isPermanent",
                            json_boolean(WebSession_Response_redirect_get_isPermanent(rd)));
        json_object_set_new(out, "switchToGet",
                            json_boolean(WebSession_Response_redirect_get_switchToGet(rd)));
        break;
    }
    case 1: {
        WebSession_Response_content_R c = WebSession_Response_get_content(r);
        json_object_set_new(out, "statusCode",
                            json_integer(WebSession_Response_content_get_statusCode(c)));
        json_object_set_new(out, "mimeType",
                            json_string(WebSession_Response_content_get_mimeType(c).str));
        json_object_set_new(out, "encoding",
                            json_string(WebSession_Response_content_get_encoding(c).str));
        json_object_set_new(out, "language",
                            json_string(WebSession_Response_content_get_language(c).str));
        if (WebSession_Response_content_has_eTag(c))
            json_object_set_new(out, "etag", etag_json(WebSession_Response_content_get_eTag(c)));
        WebSession_Response_content_disposition_R d =
            WebSession_Response_content_get_disposition(c);
        if (WebSession_Response_content_disposition_which(d) == 1)
            json_object_set_new(
                out, "download",
                json_string(WebSession_Response_content_disposition_get_download(d).str));
        WebSession_Response_content_body_R b = WebSession_Response_content_get_body(c);
        if (WebSession_Response_content_body_which(b) == 1) {
            json_object_set_new(out, "streamed", json_true());
            /* Holding the Handle keeps the body coming. */
            cur_handle = cp_get_capability(b.s, 4);
            return true;
        }
        cp_data bytes = WebSession_Response_content_body_get_bytes(b);
        body_json(bytes.ptr, bytes.len);
        break;
    }
    case 2:
    case 3: {
        cp_text html;
        WebSession_Response_ErrorBody_R eb;
        bool has;
        if (w == 2) {
            WebSession_Response_clientError_R ce = WebSession_Response_get_clientError(r);
            json_object_set_new(out, "statusCode",
                                json_integer(WebSession_Response_clientError_get_statusCode(ce)));
            html = WebSession_Response_clientError_get_descriptionHtml(ce);
            has = WebSession_Response_clientError_has_nonHtmlBody(ce);
            eb = WebSession_Response_clientError_get_nonHtmlBody(ce);
        } else {
            WebSession_Response_serverError_R se = WebSession_Response_get_serverError(r);
            html = WebSession_Response_serverError_get_descriptionHtml(se);
            has = WebSession_Response_serverError_has_nonHtmlBody(se);
            eb = WebSession_Response_serverError_get_nonHtmlBody(se);
        }
        if (html.len)
            json_object_set_new(out, "descriptionHtml", json_string(html.str));
        if (has) {
            cp_data d = WebSession_Response_ErrorBody_get_data(eb);
            json_object_set_new(out, "nonHtmlBody",
                                json_stringn_nocheck((const char *)d.ptr, d.len));
            json_object_set_new(out, "mimeType",
                                json_string(WebSession_Response_ErrorBody_get_mimeType(eb).str));
        }
        break;
    }
    case 4: {
        WebSession_Response_noContent_R n = WebSession_Response_get_noContent(r);
        json_object_set_new(out, "shouldResetForm",
                            json_boolean(WebSession_Response_noContent_get_shouldResetForm(n)));
        if (WebSession_Response_noContent_has_eTag(n))
            json_object_set_new(out, "etag", etag_json(WebSession_Response_noContent_get_eTag(n)));
        break;
    }
    case 5: {
        WebSession_Response_preconditionFailed_R p = WebSession_Response_get_preconditionFailed(r);
        if (WebSession_Response_preconditionFailed_has_matchingETag(p))
            json_object_set_new(
                out, "etag", etag_json(WebSession_Response_preconditionFailed_get_matchingETag(p)));
        break;
    }
    }
    return false;
}

static void on_response(const cp_response *resp, void *ud)
{
    uv_timer_stop(&cancel_timer);
    if (resp->exception) {
        fail_out(resp);
    } else if (read_response((WebSession_Response_R){resp->results})) {
        if (cur_sink) {
            cur_sink->waiting = true;
            if (cur_sink->done)
                sink_report(cur_sink);
            return;
        }
        json_object_set_new(out, "streamError", json_string("dropped without done()"));
    }
    emit_done();
}

/* ---- building calls from JSON ---------------------------------------------------- */

static const char *jstr(json_t *cmd, const char *key, const char *def)
{
    json_t *v = json_object_get(cmd, key);
    return json_is_string(v) ? json_string_value(v) : def;
}

static bool jbool(json_t *cmd, const char *key)
{
    return json_is_true(json_object_get(cmd, key));
}

static void set_text(cp_ptr_builder p, const char *s)
{
    cp_ptr_set_text(p, s, strlen(s));
}

static void etags(WebSession_ETag_LB l, json_t *arr)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        WebSession_ETag_B b = WebSession_ETag_list_at(l, (uint32_t)i);
        const char *v = json_string_value(json_array_get(e, 0));
        WebSession_ETag_set_value(b, v, strlen(v));
        WebSession_ETag_set_weak(b, json_is_true(json_array_get(e, 1)));
    }
}

/* AcceptedType and AcceptedEncoding share a layout: a name (p0) and a qValue
 * (Float32 at d0, default 1). From [[name, q], ...]. */
static void q_list(cp_list_builder l, json_t *arr)
{
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        cp_struct_builder b = cp_list_struct_at(l, (uint32_t)i);
        set_text(cp_builder_ptr(b, 0), json_string_value(json_array_get(e, 0)));
        cp_set_f32(b, 0, (float)json_number_value(json_array_get(e, 1)), 1.0f);
    }
}

/* context: cookies {k:v}, accept [[type,q]], acceptEncoding [[coding,q]],
 * headers [[n,v]], precondition {"kind":..., "etags":[[v,weak]]}. */
static void build_context(WebSession_Context_B c, json_t *cmd, bool stream)
{
    json_t *cookies = json_object_get(cmd, "cookies");
    if (json_is_object(cookies)) {
        KeyValue_LB l = WebSession_Context_init_cookies(c, (uint32_t)json_object_size(cookies));
        const char *k;
        json_t *v;
        uint32_t i = 0;
        json_object_foreach(cookies, k, v)
        {
            KeyValue_B kv = KeyValue_list_at(l, i++);
            KeyValue_set_key(kv, k, strlen(k));
            KeyValue_set_value(kv, json_string_value(v), strlen(json_string_value(v)));
        }
    }
    json_t *acc = json_object_get(cmd, "accept");
    if (json_is_array(acc))
        q_list(WebSession_Context_init_accept(c, (uint32_t)json_array_size(acc)).l, acc);
    json_t *enc = json_object_get(cmd, "acceptEncoding");
    if (json_is_array(enc))
        q_list(WebSession_Context_init_acceptEncoding(c, (uint32_t)json_array_size(enc)).l, enc);
    json_t *hs = json_object_get(cmd, "headers");
    if (json_is_array(hs)) {
        WebSession_Context_Header_LB l =
            WebSession_Context_init_additionalHeaders(c, (uint32_t)json_array_size(hs));
        size_t i;
        json_t *e;
        json_array_foreach(hs, i, e)
        {
            WebSession_Context_Header_B b = WebSession_Context_Header_list_at(l, (uint32_t)i);
            const char *n = json_string_value(json_array_get(e, 0));
            const char *v = json_string_value(json_array_get(e, 1));
            WebSession_Context_Header_set_name(b, n, strlen(n));
            WebSession_Context_Header_set_value(b, v, strlen(v));
        }
    }
    json_t *pre = json_object_get(cmd, "precondition");
    if (json_is_object(pre)) {
        const char *k = jstr(pre, "kind", "none");
        WebSession_Context_eTagPrecondition_B p = WebSession_Context_init_eTagPrecondition(c);
        json_t *list = json_object_get(pre, "etags");
        uint32_t n = (uint32_t)json_array_size(list);
        if (strcmp(k, "exists") == 0)
            WebSession_Context_eTagPrecondition_set_exists(p);
        else if (strcmp(k, "doesntExist") == 0)
            WebSession_Context_eTagPrecondition_set_doesntExist(p);
        else if (strcmp(k, "matchesOneOf") == 0)
            etags(WebSession_Context_eTagPrecondition_init_matchesOneOf(p, n), list);
        else if (strcmp(k, "matchesNoneOf") == 0)
            etags(WebSession_Context_eTagPrecondition_init_matchesNoneOf(p, n), list);
    }
    if (stream)
        WebSession_Context_set_responseStream(c, sink_new());
}

/* A body: "body" text, or "bodyBytes" N bytes of a pattern. */
static char *body_of(json_t *cmd, size_t *len)
{
    json_t *n = json_object_get(cmd, "bodyBytes");
    if (json_is_integer(n)) {
        *len = (size_t)json_integer_value(n);
        char *b = gr_malloc(*len + 1);
        for (size_t i = 0; i < *len; i++)
            b[i] = (char)('A' + i % 23);
        return b;
    }
    const char *t = jstr(cmd, "body", "");
    *len = strlen(t);
    return gr_strdup(t);
}

static void content(cp_struct_builder c, json_t *cmd)
{
    /* PostContent and PutContent share one layout: mimeType, content, encoding. */
    size_t len;
    _cleanup_free_ char *b = body_of(cmd, &len);
    set_text(cp_builder_ptr(c, 0), jstr(cmd, "mimeType", "text/plain"));
    cp_ptr_set_data(cp_builder_ptr(c, 1), b, len);
    if (jstr(cmd, "encoding", NULL))
        set_text(cp_builder_ptr(c, 2), jstr(cmd, "encoding", NULL));
}

static void cancel_now(uv_timer_t *t)
{
    if (out == NULL)
        return; /* answered first */
    cp_pending_cancel(cancel_pending);
    cancel_pending = NULL;
    cp_cap_unref(cur_handle);
    cur_handle = NULL;
    json_object_set_new(out, "canceled", json_true());
    emit_done();
}

static const struct {
    const char *name;
    uint16_t id, dw, pw;
    int path, ctx, content, xml; /* pointer slots, -1 when absent */
} methods[] = {
    {"get", 0, 1, 2, 0, 1, -1, -1},     {"post", 1, 0, 3, 0, 2, 1, -1},
    {"put", 3, 0, 3, 0, 2, 1, -1},      {"delete", 4, 0, 2, 0, 1, -1, -1},
    {"propfind", 7, 1, 3, 0, 2, -1, 1}, {"proppatch", 8, 0, 3, 0, 2, -1, 1},
    {"mkcol", 9, 0, 3, 0, 2, 1, -1},    {"copy", 10, 1, 3, 0, 2, -1, -1},
    {"move", 11, 1, 3, 0, 2, -1, -1},   {"lock", 12, 1, 3, 0, 2, -1, 1},
    {"unlock", 13, 0, 3, 0, 2, -1, -1}, {"acl", 14, 0, 3, 0, 2, -1, 1},
    {"report", 15, 0, 3, 0, 2, 1, -1},  {"options", 16, 0, 2, 0, 1, -1, -1},
    {"patch", 17, 0, 3, 0, 2, 1, -1},
};

static void on_options(const cp_response *resp, void *ud)
{
    if (resp->exception) {
        fail_out(resp);
    } else {
        WebSession_Options_R o = {resp->results};
        json_object_set_new(out, "davClass1", json_boolean(WebSession_Options_get_davClass1(o)));
        json_object_set_new(out, "davClass2", json_boolean(WebSession_Options_get_davClass2(o)));
        json_object_set_new(out, "davClass3", json_boolean(WebSession_Options_get_davClass3(o)));
        cp_list_reader l = WebSession_Options_get_davExtensions(o);
        json_t *a = json_array();
        for (uint32_t i = 0; i < l.len; i++)
            json_array_append_new(a, json_string(cp_list_get_text(l, i).str));
        json_object_set_new(out, "davExtensions", a);
    }
    emit_done();
}

static void send_or_fail(cp_request *req, cp_response_cb cb)
{
    _cleanup_error_ gr_error_t err = NULL;
    if (cp_request_send(req, cb, NULL, NULL, &err) < 0) {
        json_object_set_new(out, "error", json_string(gr_error_msg(err)));
        emit_done();
    }
}

static void call_method(json_t *cmd, const char *name)
{
    size_t m = 0;
    while (m < sizeof(methods) / sizeof(methods[0]) && strcmp(methods[m].name, name) != 0)
        m++;
    if (m == sizeof(methods) / sizeof(methods[0])) {
        json_object_set_new(out, "error", json_string("unknown method"));
        emit_done();
        return;
    }
    cp_request *req = cp_request_new(session, WebSession_TYPE_ID, methods[m].id);
    cp_struct_builder p = cp_request_params(req, methods[m].dw, methods[m].pw);
    set_text(cp_builder_ptr(p, 0), jstr(cmd, "path", ""));
    build_context((WebSession_Context_B){cp_ptr_init_struct(
                      cp_builder_ptr(p, (uint16_t)methods[m].ctx), WebSession_Context_DATA_WORDS,
                      WebSession_Context_PTR_WORDS)},
                  cmd, methods[m].id != 16);
    if (methods[m].content >= 0)
        content(cp_ptr_init_struct(cp_builder_ptr(p, (uint16_t)methods[m].content), 0, 3), cmd);
    if (methods[m].xml >= 0 && jstr(cmd, "xml", NULL))
        set_text(cp_builder_ptr(p, (uint16_t)methods[m].xml), jstr(cmd, "xml", NULL));
    if (strcmp(name, "get") == 0)
        cp_set_bool(p, 0, jbool(cmd, "ignoreBody"), false);
    if (strcmp(name, "propfind") == 0) {
        const char *d = jstr(cmd, "depth", "infinity");
        cp_set_u16(p, 0, strcmp(d, "0") == 0 ? 1 : strcmp(d, "1") == 0 ? 2 : 0, 0);
    }
    if (strcmp(name, "copy") == 0 || strcmp(name, "move") == 0) {
        set_text(cp_builder_ptr(p, 1), jstr(cmd, "destination", ""));
        cp_set_bool(p, 0, jbool(cmd, "noOverwrite"), false);
        if (strcmp(name, "copy") == 0)
            cp_set_bool(p, 1, jbool(cmd, "shallow"), false);
    }
    if (strcmp(name, "lock") == 0)
        cp_set_bool(p, 0, jbool(cmd, "shallow"), false);
    if (strcmp(name, "unlock") == 0)
        set_text(cp_builder_ptr(p, 1), jstr(cmd, "lockToken", ""));
    json_t *cancel = json_object_get(cmd, "cancelAfterMs");
    if (json_is_integer(cancel)) {
        /* Gives up on the call after a while (Finish before Return). */
        _cleanup_error_ gr_error_t err = NULL;
        if (cp_request_send(req, on_response, NULL, &cancel_pending, &err) < 0) {
            json_object_set_new(out, "error", json_string(gr_error_msg(err)));
            emit_done();
            return;
        }
        uv_timer_start(&cancel_timer, cancel_now, (uint64_t)json_integer_value(cancel), 0);
        return;
    }
    send_or_fail(req, methods[m].id == 16 ? on_options : on_response);
}

/* ---- streaming uploads ---------------------------------------------------------- */

static struct {
    cp_cap *stream;
    cp_flow *flow;
    uint64_t left;
    bool failed;
} up;

static void up_pump(cp_flow *flow, void *ud);

static void up_finish(const cp_response *resp, void *ud)
{
    if (resp->exception)
        json_object_set_new(out, "doneError", json_string(resp->exception->reason));
}

static void up_pump(cp_flow *flow, void *ud)
{
    static char chunk[65536];
    while (up.left > 0) {
        size_t n = up.left < sizeof(chunk) ? (size_t)up.left : sizeof(chunk);
        for (size_t i = 0; i < n; i++)
            chunk[i] = (char)('A' + i % 23);
        ByteStream_write_Params_B p;
        cp_request *req = ByteStream_write_request(up.stream, &p);
        ByteStream_write_Params_set_data(p, chunk, n);
        up.left -= n;
        _cleanup_error_ gr_error_t err = NULL;
        int r = cp_flow_send(up.flow, req, &err);
        if (r < 0) {
            json_object_set_new(out, "writeError", json_string(gr_error_msg(err)));
            up.left = 0;
            break;
        }
        if (r == 0)
            return;
    }
    if (up.stream) {
        ByteStream_done_Params_B p;
        cp_request *req = ByteStream_done_request(up.stream, &p);
        _cleanup_error_ gr_error_t err = NULL;
        if (cp_request_send(req, up_finish, NULL, NULL, &err) < 0)
            json_object_set_new(out, "doneError", json_string(gr_error_msg(err)));
        cp_cap_unref(up.stream);
        up.stream = NULL;
    }
}

static void on_streaming(const cp_response *resp, void *ud)
{
    if (resp->exception) {
        fail_out(resp);
        emit_done();
        return;
    }
    up.stream = cp_get_capability(resp->results, 0);
    /* getResponse first (full duplex), then the body. */
    WebSession_RequestStream_getResponse_Params_B gp;
    cp_request *req = WebSession_RequestStream_getResponse_request(up.stream, &gp);
    send_or_fail(req, on_response);
    up.flow = cp_flow_new(256 * 1024, up_pump, NULL);
    up_pump(up.flow, NULL);
}

static void call_streaming(json_t *cmd, bool put)
{
    cp_request *req = cp_request_new(session, WebSession_TYPE_ID, put ? 6 : 5);
    cp_struct_builder p = cp_request_params(req, 0, 4);
    set_text(cp_builder_ptr(p, 0), jstr(cmd, "path", ""));
    set_text(cp_builder_ptr(p, 1), jstr(cmd, "mimeType", "application/octet-stream"));
    build_context((WebSession_Context_B){cp_ptr_init_struct(cp_builder_ptr(p, 2),
                                                            WebSession_Context_DATA_WORDS,
                                                            WebSession_Context_PTR_WORDS)},
                  cmd, true);
    json_t *n = json_object_get(cmd, "bodyBytes");
    up.left = json_is_integer(n) ? (uint64_t)json_integer_value(n) : 0;
    send_or_fail(req, on_streaming);
}

/* ---- WebSockets --------------------------------------------------------------------- */

typedef struct wsclient {
    cp_server base;
    gr_buf in;
    json_t *got;
    size_t want;
} wsclient;

static wsclient *cur_ws;
static cp_cap *ws_server_stream;
static uv_timer_t ws_timer;

static void ws_report(void)
{
    json_object_set_new(out, "messages", cur_ws ? json_incref(cur_ws->got) : json_array());
    emit(out);
    out = NULL;
    uv_timer_stop(&ws_timer);
    cp_cap_unref(ws_server_stream);
    ws_server_stream = NULL;
    finish();
}

static void wsc_send_bytes(cp_server *self, cp_call *call,
                           WebSession_WebSocketStream_sendBytes_Params_R p)
{
    wsclient *w = (wsclient *)self;
    cp_data d = WebSession_WebSocketStream_sendBytes_Params_get_message(p);
    gr_buf_append(&w->in, d.ptr, d.len);
    cp_call_return(call);
    /* Unmasked server frames: FIN|op, len (<126 or 126+16 bits), payload. */
    for (;;) {
        const unsigned char *b = (const unsigned char *)w->in.data;
        size_t n = w->in.len, hl = 2, len;
        if (n < 2)
            break;
        len = b[1] & 0x7f;
        if (len == 126) {
            if (n < 4)
                break;
            len = (size_t)b[2] << 8 | b[3];
            hl = 4;
        } else if (len == 127) {
            break;
        }
        if (n < hl + len)
            break;
        if ((b[0] & 0x0f) == 1)
            json_array_append_new(w->got, json_stringn_nocheck((const char *)b + hl, len));
        memmove(w->in.data, w->in.data + hl + len, n - hl - len);
        w->in.len = n - hl - len;
    }
    if (out && json_array_size(w->got) >= w->want && ws_server_stream)
        ws_report();
}

static const WebSession_WebSocketStream_methods wsc_methods = {wsc_send_bytes};

static void wsc_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!WebSession_WebSocketStream_dispatch(&wsc_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void wsc_destroy(cp_server *self)
{
    wsclient *w = (wsclient *)self;
    if (cur_ws == w)
        cur_ws = NULL;
    gr_buf_release(&w->in);
    json_decref(w->got);
    free(w);
}

static const cp_server_vtable wsc_vt = {"WsClient", wsc_dispatch, wsc_destroy};

static json_t *ws_send_list;

static void ignore(const cp_response *resp, void *ud)
{
    if (resp->exception && out)
        json_object_set_new(out, "sendError", json_string(resp->exception->reason));
}

static void ws_timeout(uv_timer_t *t)
{
    if (out) {
        json_object_set_new(out, "timeout", json_true());
        ws_report();
    }
}

static void on_ws(const cp_response *resp, void *ud)
{
    if (resp->exception) {
        fail_out(resp);
        emit_done();
        return;
    }
    cp_list_reader pl = WebSession_openWebSocket_Results_get_protocol(
        (WebSession_openWebSocket_Results_R){resp->results});
    json_t *pa = json_array();
    for (uint32_t i = 0; i < pl.len; i++)
        json_array_append_new(pa, json_string(cp_list_get_text(pl, i).str));
    json_object_set_new(out, "protocol", pa);
    ws_server_stream = cp_get_capability(resp->results, 1);
    size_t i;
    json_t *m;
    json_array_foreach(ws_send_list, i, m)
    {
        const char *t = json_string_value(m);
        size_t len = strlen(t);
        gr_buf f = GR_BUF_INIT;
        unsigned char h[8] = {0x81, 0, 0, 0, 0x12, 0x34, 0x56, 0x78};
        size_t hl;
        if (len < 126) {
            h[1] = (unsigned char)(0x80 | len);
            memmove(h + 2, h + 4, 4);
            hl = 6;
        } else {
            h[1] = 0x80 | 126;
            h[2] = (unsigned char)(len >> 8);
            h[3] = (unsigned char)len;
            hl = 8;
        }
        gr_buf_append(&f, h, hl);
        for (size_t k = 0; k < len; k++) {
            unsigned char c = (unsigned char)t[k] ^ h[hl - 4 + k % 4];
            gr_buf_append(&f, &c, 1);
        }
        WebSession_WebSocketStream_sendBytes_Params_B p;
        cp_request *req = WebSession_WebSocketStream_sendBytes_request(ws_server_stream, &p);
        WebSession_WebSocketStream_sendBytes_Params_set_message(p, f.data, f.len);
        gr_buf_release(&f);
        _cleanup_error_ gr_error_t err = NULL;
        if (cp_request_send(req, ignore, NULL, NULL, &err) < 0)
            json_object_set_new(out, "sendError", json_string(gr_error_msg(err)));
    }
    if (cur_ws && json_array_size(cur_ws->got) >= cur_ws->want)
        ws_report();
    else
        uv_timer_start(&ws_timer, ws_timeout, 5000, 0);
}

static void call_websocket(json_t *cmd)
{
    cp_request *req = cp_request_new(session, WebSession_TYPE_ID, 2);
    cp_struct_builder p = cp_request_params(req, 0, 4);
    set_text(cp_builder_ptr(p, 0), jstr(cmd, "path", ""));
    build_context((WebSession_Context_B){cp_ptr_init_struct(cp_builder_ptr(p, 1),
                                                            WebSession_Context_DATA_WORDS,
                                                            WebSession_Context_PTR_WORDS)},
                  cmd, false);
    json_t *protos = json_object_get(cmd, "protocols");
    if (json_is_array(protos)) {
        cp_list_builder l = cp_init_list(p, 2, CP_ELEM_POINTER, (uint32_t)json_array_size(protos));
        size_t i;
        json_t *e;
        json_array_foreach(protos, i, e)
            set_text(cp_list_ptr_at(l, (uint32_t)i), json_string_value(e));
    }
    wsclient *w = gr_calloc(1, sizeof(*w));
    w->base.vt = &wsc_vt;
    w->got = json_array();
    ws_send_list = json_object_get(cmd, "send");
    w->want = json_array_size(ws_send_list);
    cur_ws = w;
    cp_set_capability(p, 3, cp_server_cap(&w->base));
    send_or_fail(req, on_ws);
}

/* ---- the view --------------------------------------------------------------------- */

static void on_view_info(const cp_response *resp, void *ud)
{
    if (resp->exception) {
        fail_out(resp);
    } else {
        UiView_ViewInfo_R vi = {resp->results};
        PermissionDef_LR pl = UiView_ViewInfo_get_permissions(vi);
        json_t *a = json_array();
        for (uint32_t i = 0; i < PermissionDef_list_len(pl); i++)
            json_array_append_new(
                a, json_string(PermissionDef_get_name(PermissionDef_list_get(pl, i)).str));
        json_object_set_new(out, "permissions", a);
        json_object_set_new(out, "roles",
                            json_integer(RoleDef_list_len(UiView_ViewInfo_get_roles(vi))));
    }
    emit_done();
}

static void on_session(const cp_response *resp, void *ud)
{
    if (resp->exception) {
        fail_out(resp);
    } else {
        cp_cap_unref(session);
        session = cp_get_capability(resp->results, 0);
        json_object_set_new(out, "ok", json_true());
    }
    emit_done();
}

static int unhex(const char *s, unsigned char *out_, size_t max)
{
    size_t n = strlen(s) / 2;
    if (n > max)
        n = max;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1)
            return -1;
        out_[i] = (unsigned char)v;
    }
    return (int)n;
}

/* {"method":"session", "type":"normal|request|offer", "sessionType":N,
 *  "displayName", "identityId" (hex), "handle", "picture", "pronouns" (0-3),
 *  "permissions" [bool], "tabId" (hex), "basePath", "userAgent", "languages"} */
/* ---- what the platform offers the app: SandstormApi, SessionContext ----------------
 * Each prints an "event" line when the app reaches it through the bridge. */

static void plain_destroy(cp_server *self)
{
    free(self);
}

static void awake_handle_ping(cp_server *self, cp_call *call, Handle_ping_Params_R params)
{
    cp_call_return(call);
}

static const Handle_methods awake_handle_methods = {.ping = awake_handle_ping};

static void awake_handle_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!Handle_dispatch(&awake_handle_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void awake_handle_destroy(cp_server *self)
{
    emit(json_pack("{s:s}", "event", "handleDropped"));
    free(self);
}

static const cp_server_vtable awake_handle_vt = {"Handle", awake_handle_dispatch,
                                                 awake_handle_destroy};

static void api_stay_awake(cp_server *self, cp_call *call, SandstormApi_stayAwake_Params_R params)
{
    cp_cap *n = SandstormApi_stayAwake_Params_get_notification(params);
    emit(json_pack("{s:s,s:s,s:b}", "event", "stayAwake", "caption",
                   LocalizedText_get_defaultText(NotificationDisplayInfo_get_caption(
                       SandstormApi_stayAwake_Params_get_displayInfo(params))).str,
                   "notification", n != NULL));
    cp_cap_unref(n);
    cp_server *h = gr_calloc(1, sizeof(*h));
    h->vt = &awake_handle_vt;
    SandstormApi_stayAwake_Results_set_handle(SandstormApi_stayAwake_results(call),
                                              cp_server_cap(h));
    cp_call_return(call);
}

static const SandstormApi_methods api_methods = {.stayAwake = api_stay_awake};

static void api_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!SandstormApi_dispatch(&api_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static const cp_server_vtable api_vt = {"SandstormApi", api_dispatch, plain_destroy};

static void context_activity(cp_server *self, cp_call *call,
                             SessionContext_activity_Params_R params)
{
    emit(json_pack("{s:s,s:s}", "event", "activity", "path",
                   ActivityEvent_get_path(SessionContext_activity_Params_get_event(params)).str));
    cp_call_return(call);
}

static const SessionContext_methods context_methods = {.activity = context_activity};

static void context_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!SessionContext_dispatch(&context_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void context_destroy(cp_server *self)
{
    emit(json_pack("{s:s}", "event", "contextDropped"));
    free(self);
}

static const cp_server_vtable context_vt = {"SessionContext", context_dispatch, context_destroy};

static void call_session(json_t *cmd)
{
    const char *type = jstr(cmd, "type", "normal");
    uint16_t mid = strcmp(type, "request") == 0 ? 2 : strcmp(type, "offer") == 0 ? 3 : 1;
    cp_request *req = cp_request_new(view, UiView_TYPE_ID, mid);
    cp_struct_builder p = cp_request_params(req, 1, 7);
    UserInfo_B u = UserInfo_init((cp_builder_ptr(p, 0)));
    if (jstr(cmd, "displayName", NULL)) {
        LocalizedText_B dn = UserInfo_init_displayName(u);
        LocalizedText_set_defaultText(dn, jstr(cmd, "displayName", ""),
                                      strlen(jstr(cmd, "displayName", "")));
    }
    unsigned char buf[64];
    if (jstr(cmd, "identityId", NULL)) {
        int n = unhex(jstr(cmd, "identityId", ""), buf, sizeof(buf));
        UserInfo_set_identityId(u, buf, (size_t)(n < 0 ? 0 : n));
    }
    if (jstr(cmd, "handle", NULL))
        UserInfo_set_preferredHandle(u, jstr(cmd, "handle", ""), strlen(jstr(cmd, "handle", "")));
    if (jstr(cmd, "picture", NULL))
        UserInfo_set_pictureUrl(u, jstr(cmd, "picture", ""), strlen(jstr(cmd, "picture", "")));
    json_t *pr = json_object_get(cmd, "pronouns");
    if (json_is_integer(pr))
        UserInfo_set_pronouns(u, (Profile_Pronouns)json_integer_value(pr));
    json_t *perms = json_object_get(cmd, "permissions");
    if (json_is_array(perms)) {
        cp_list_builder l = cp_init_list(u.s, 3, CP_ELEM_BIT, (uint32_t)json_array_size(perms));
        size_t i;
        json_t *e;
        json_array_foreach(perms, i, e) cp_list_set_bool(l, (uint32_t)i, json_is_true(e));
    }
    json_t *st = json_object_get(cmd, "sessionType");
    cp_set_u64(p, 0, json_is_integer(st) ? (uint64_t)json_integer_value(st) : WebSession_TYPE_ID,
               0);
    WebSession_Params_B wp = WebSession_Params_init(cp_builder_ptr(p, 2)); /* sessionParams */
    if (jstr(cmd, "basePath", NULL))
        WebSession_Params_set_basePath(wp, jstr(cmd, "basePath", ""),
                                       strlen(jstr(cmd, "basePath", "")));
    if (jstr(cmd, "userAgent", NULL))
        WebSession_Params_set_userAgent(wp, jstr(cmd, "userAgent", ""),
                                        strlen(jstr(cmd, "userAgent", "")));
    json_t *langs = json_object_get(cmd, "languages");
    if (json_is_array(langs)) {
        cp_list_builder l =
            WebSession_Params_init_acceptableLanguages(wp, (uint32_t)json_array_size(langs));
        size_t i;
        json_t *e;
        json_array_foreach(langs, i, e)
            set_text(cp_list_ptr_at(l, (uint32_t)i), json_string_value(e));
    }
    if (json_is_true(json_object_get(cmd, "context"))) {
        cp_server *ctx = gr_calloc(1, sizeof(*ctx));
        ctx->vt = &context_vt;
        cp_set_capability(p, 1, cp_server_cap(ctx));
    }
    int n = unhex(jstr(cmd, "tabId", "00112233445566778899aabbccddeeff"), buf, sizeof(buf));
    /* tabId is the last pointer: p3, p4 or p5 by method. */
    cp_set_data(p, (uint16_t)(mid == 1 ? 3 : mid == 2 ? 4 : 5), buf, (size_t)(n < 0 ? 0 : n));
    send_or_fail(req, on_session);
}

static void vm_hwm(json_t *o)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/status", bridge.pid);
    FILE *f = fopen(path, "r");
    char line[256];
    while (f && fgets(line, sizeof(line), f))
        if (strncmp(line, "VmHWM:", 6) == 0 || strncmp(line, "VmRSS:", 6) == 0) {
            long kb = strtol(line + 6, NULL, 10);
            json_object_set_new(o, line[2] == 'H' ? "vmHWMkB" : "vmRSSkB", json_integer(kb));
        }
    if (f)
        fclose(f);
}

static void bridge_exit(uv_process_t *p, int64_t status, int sig)
{
    bridge_exited = true;
    emit(json_pack("{s:I,s:i}", "bridgeExit", (json_int_t)status, "signal", sig));
    uv_close((uv_handle_t *)p, NULL);
}

static uv_timer_t sleep_timer;

static void on_sleep_done(uv_timer_t *t)
{
    emit_done();
}

static void run(json_t *cmd)
{
    const char *m = jstr(cmd, "method", "");
    out = json_pack("{s:s}", "method", m);
    json_t *id = json_object_get(cmd, "id");
    if (id)
        json_object_set(out, "id", id);
    busy = true;
    json_t *drop = json_object_get(cmd, "dropHandleAfterBytes");
    drop_after = json_is_integer(drop) ? (uint64_t)json_integer_value(drop) : 0;
    json_t *slow = json_object_get(cmd, "slowSinkMs");
    slow_ms = json_is_integer(slow) ? (uint64_t)json_integer_value(slow) : 0;
    if (strcmp(m, "viewinfo") == 0) {
        send_or_fail(cp_request_new(view, UiView_TYPE_ID, 0), on_view_info);
    } else if (strcmp(m, "session") == 0) {
        call_session(cmd);
    } else if (strcmp(m, "waitExit") == 0) {
        /* until the bridge exits by itself (its app did) */
        json_decref(out);
        out = NULL;
        while (!bridge_exited && uv_loop_alive(loop))
            uv_run(loop, UV_RUN_ONCE);
        finish();
    } else if (strcmp(m, "sleep") == 0) {
        /* lets the bridge and the app run for ms without a call */
        json_t *ms = json_object_get(cmd, "ms");
        uv_timer_start(&sleep_timer, on_sleep_done,
                       json_is_integer(ms) ? (uint64_t)json_integer_value(ms) : 0, 0);
    } else if (strcmp(m, "rss") == 0) {
        vm_hwm(out);
        emit_done();
    } else if (strcmp(m, "postStreaming") == 0 || strcmp(m, "putStreaming") == 0) {
        call_streaming(cmd, m[1] == 'u');
    } else if (strcmp(m, "websocket") == 0) {
        call_websocket(cmd);
    } else if (session == NULL) {
        json_object_set_new(out, "error", json_string("no session"));
        emit_done();
    } else {
        call_method(cmd, m);
    }
    while (busy && uv_loop_alive(loop))
        uv_run(loop, UV_RUN_ONCE);
    cp_flow_free(up.flow);
    up.flow = NULL;
}

int main(int argc, char **argv)
{
    if (argc < 5 || strcmp(argv[3], "--") != 0) {
        fprintf(stderr, "usage: platform BRIDGE PORT -- APP [ARGS...]\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        gr_die("socketpair: %m");
    loop = uv_default_loop();
    uv_timer_init(loop, &ws_timer);
    uv_timer_init(loop, &cancel_timer);
    uv_timer_init(loop, &slow_timer);
    uv_timer_init(loop, &sleep_timer);
    char **args = gr_calloc((size_t)argc, sizeof(char *));
    args[0] = argv[1];
    args[1] = argv[2];
    args[2] = "--";
    for (int i = 4; i < argc; i++)
        args[i - 1] = argv[i];
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = sv[1]},
    };
    uv_process_options_t opts = {
        .exit_cb = bridge_exit, .file = argv[1], .args = args, .stdio_count = 4, .stdio = stdio};
    int r = uv_spawn(loop, &bridge, &opts);
    if (r < 0)
        gr_die("starting %s: %s", argv[1], uv_strerror(r));
    close(sv[1]);
    emit(json_pack("{s:i}", "bridgePid", bridge.pid));
    _cleanup_error_ gr_error_t err = NULL;
    cp_server *api = gr_calloc(1, sizeof(*api));
    api->vt = &api_vt;
    cp_cap *boot = cp_server_cap(api);
    r = cp_rpc_conn_open(loop, sv[0], boot, NULL, &conn, &err);
    cp_cap_unref(boot);
    if (r < 0)
        gr_die("%s", gr_error_msg(err));
    view = cp_rpc_conn_bootstrap(conn);

    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, stdin) > 0) {
        json_error_t jerr;
        json_t *cmd = json_loads(line, 0, &jerr);
        if (cmd == NULL) {
            emit(json_pack("{s:s}", "error", jerr.text));
            continue;
        }
        run(cmd);
        json_decref(cmd);
    }
    free(line);
    /* Closing fd 3 must stop the bridge (and the app). */
    cp_cap_unref(session);
    cp_cap_unref(view);
    session = view = NULL;
    cp_rpc_conn_free(conn);
    uv_close((uv_handle_t *)&ws_timer, NULL);
    uv_close((uv_handle_t *)&cancel_timer, NULL);
    uv_close((uv_handle_t *)&slow_timer, NULL);
    uv_close((uv_handle_t *)&sleep_timer, NULL);
    while (!bridge_exited)
        uv_run(loop, UV_RUN_ONCE);
    uv_run(loop, UV_RUN_NOWAIT);
    free(args);
    return 0;
}
