/* WebSession → HTTP/1.1 on loopback (docs/bridge.md). Each call becomes an
 * exchange: a request written to a connection to the app (an idle kept-alive
 * one when there is one), the app's response parsed by br_parser and turned
 * into a WebSession.Response. Bodies up to SMALL_BODY with a known length
 * come back as bytes; longer ones go to context.responseStream through a
 * cp_flow, and reading from the app stops while its window is full, so the
 * bridge holds at most a window and a read buffer per exchange. */
#include "bridge_internal.h"

#include <strings.h>

#include "util.capnp.h"
#include "web-session.capnp.h"
#include "util.h"

#define SMALL_BODY (64 * 1024)   /* largest body sent as content.body.bytes */
#define ERROR_BODY (64 * 1024)   /* error bodies kept for descriptionHtml */
#define FLOW_WINDOW (256 * 1024) /* bytes of ByteStream.write in flight */
#define MAX_IDLE 128             /* kept-alive connections to the app (one per concurrent request) */

/* ---- connections to the app ------------------------------------------------ */

struct exch;

typedef struct appconn {
    uv_tcp_t tcp;
    uv_connect_t connect;
    struct exch *x;       /* the exchange using it; NULL when idle or a probe */
    struct appconn *next; /* in the idle list */
    bool reused;          /* came from the idle list: may have been closed */
    bool closing;
    bool reading; /* kept on across exchanges: a stop and start costs two epoll_ctl */
} appconn;

static struct {
    uv_loop_t *loop;
    int port;
    uint64_t started_ns, deadline_ns;
    uint64_t timeout_ms;
    bool ready, timed_out;
    uv_timer_t poll;
    appconn *probe;
    appconn *idle;
    size_t nidle;
    struct exch *waiting; /* exchanges waiting for the app to listen */
} app;

static char read_buf[64 * 1024]; /* one loop thread: every read is handled at once */

static void conn_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(appconn *c)
{
    if (c == NULL || c->closing)
        return;
    c->closing = true;
    c->x = NULL;
    uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static appconn *conn_new(void)
{
    appconn *c = gr_calloc(1, sizeof(*c));
    uv_tcp_init(app.loop, &c->tcp);
    c->tcp.data = c;
    return c;
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    buf->base = read_buf;
    buf->len = sizeof(read_buf);
}

static void idle_remove(appconn *c)
{
    for (appconn **p = &app.idle; *p; p = &(*p)->next)
        if (*p == c) {
            *p = c->next;
            app.nidle--;
            return;
        }
}

static void exch_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* One read callback for the connection's whole life: bytes go to its
 * exchange; an idle connection that the app closes, or talks on, is dropped. */
static void conn_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    appconn *c = s->data;
    if (c->x) {
        exch_read(s, nread, buf);
        return;
    }
    if (nread == 0)
        return;
    idle_remove(c);
    conn_close(c);
}

static void conn_reading(appconn *c, bool on)
{
    if (c->reading == on || c->closing)
        return;
    c->reading = on;
    if (on)
        uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, conn_read);
    else
        uv_read_stop((uv_stream_t *)&c->tcp);
}

static void idle_put(appconn *c)
{
    c->x = NULL;
    if (app.nidle >= MAX_IDLE) {
        conn_close(c);
        return;
    }
    c->next = app.idle;
    app.idle = c;
    app.nidle++;
    conn_reading(c, true);
}

static appconn *idle_take(void)
{
    appconn *c = app.idle;
    if (c == NULL)
        return NULL;
    app.idle = c->next;
    app.nidle--;
    c->reused = true;
    c->next = NULL;
    return c;
}

/* ---- exchanges ------------------------------------------------------------ */

typedef enum { EX_HTTP, EX_UPLOAD, EX_WEBSOCKET } ex_kind;
typedef enum { ANSWER_RESPONSE, ANSWER_OPTIONS, ANSWER_NONE } ex_answer;

typedef struct wreq {
    uv_write_t w;
    struct exch *x;
    unsigned attempt; /* the exchange's connection it was written to */
    char *data;
    size_t len;
    cp_call *call;     /* returned once the bytes are written */
    struct wreq *next; /* queued until connected */
} wreq;

typedef struct handle_server handle_server;
typedef struct reqstream_server reqstream_server;
typedef struct ws_server ws_server;

typedef struct exch {
    ex_kind kind;
    ex_answer answer;
    int refs;
    cp_call *call; /* to answer with the response; NULL when not (yet) asked */
    bool answered;
    gr_buf req; /* the request head (and small body) to send */
    bool head_request, fresh_only, retried, got_bytes;
    bool has_body;    /* the request carried a body: its connection is not reused */
    unsigned attempt; /* bumped for each connection tried */
    unsigned writes;  /* uv_writes not yet completed */
    appconn *c;
    bool connected, reading, paused;
    br_parser *parser;
    br_response *resp; /* the parser's, once the head is in */
    br_status_map map;
    bool streaming; /* the body goes to response_stream */
    gr_buf body;    /* a small body whole; of a streamed one, what the current read brought */
    bool http_done; /* the response is complete, or failed */
    char *error;
    cp_cap *response_stream;
    cp_flow *flow;
    handle_server *handle;
    /* uploads */
    reqstream_server *rs;
    wreq *queue, **queue_tail;
    /* WebSockets */
    cp_cap *client_stream;
    ws_server *ws;
    bool ws_open;
    char ws_accept[29]; /* the Sec-WebSocket-Accept the app must answer */
    struct exch *next_waiting;
} exch;

struct handle_server {
    cp_server base;
    exch *x;
};

struct reqstream_server {
    cp_server base;
    exch *x;
    bool done;
};

struct ws_server {
    cp_server base;
    exch *x;
};

static void exch_begin(exch *x);
static void exch_fail(exch *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void exch_try_answer(exch *x);

/* Exchanges, one a request, are kept in a stash (util.h) for the next; so
 * are the buffers of request heads (which nearly all fit HEAD_BLOCK) and of
 * small response bodies (BODY_BLOCK). */
#define HEAD_BLOCK 1024
#define BODY_BLOCK 256
static _Thread_local gr_stash exch_stash, head_stash, body_stash;

static exch *exch_new(ex_kind kind, ex_answer answer, cp_call *call)
{
    exch *x = gr_stash_zalloc(&exch_stash, sizeof(*x));
    x->kind = kind;
    x->answer = answer;
    x->refs = 1; /* the HTTP side, until the response is complete or failed */
    x->call = call;
    x->queue_tail = &x->queue;
    if (call)
        x->refs++;
    return x;
}

static void exch_unref(exch *x)
{
    if (--x->refs > 0)
        return;
    gr_buf_release_to(&x->req, &head_stash, HEAD_BLOCK);
    gr_buf_release_to(&x->body, &body_stash, BODY_BLOCK);
    br_parser_free(x->parser);
    cp_flow_free(x->flow);
    cp_cap_unref(x->response_stream);
    cp_cap_unref(x->client_stream);
    free(x->error);
    gr_stash_free(&exch_stash, x);
}

static void waiting_remove(exch *x)
{
    for (exch **p = &app.waiting; *p; p = &(*p)->next_waiting)
        if (*p == x) {
            *p = x->next_waiting;
            return;
        }
}

/* Ends the HTTP side: the connection goes back to the pool when the app
 * keeps it alive and the response ended properly, else it is closed. */
static void exch_http_end(exch *x, bool keep)
{
    if (x->http_done)
        return;
    x->http_done = true;
    waiting_remove(x);
    appconn *c = x->c;
    x->c = NULL;
    if (c) {
        /* An app may answer before it has read the whole request, and a
         * body it never reads would be taken for the next request on the
         * connection (a request smuggled by the user who sent the body,
         * with X-Sandstorm-* headers of their choosing, which would swallow
         * the next user's request): only a connection that carried no body
         * is reused. */
        if (keep && x->kind == EX_HTTP && !x->has_body && x->writes == 0)
            idle_put(c);
        else
            conn_close(c);
    }
    wreq *q = x->queue;
    x->queue = NULL;
    while (q) {
        wreq *n = q->next;
        if (q->call)
            cp_call_fail(q->call, CP_EXC_FAILED, "%s", x->error ? x->error : "the request ended");
        free(q->data);
        free(q);
        q = n;
    }
    if (x->kind == EX_WEBSOCKET) {
        cp_cap_unref(x->client_stream); /* dropping it tells the platform the app hung up */
        x->client_stream = NULL;
    }
    exch_unref(x);
}

static void exch_fail(exch *x, const char *fmt, ...)
{
    if (x->error == NULL) {
        va_list ap;
        va_start(ap, fmt);
        if (vasprintf(&x->error, fmt, ap) < 0)
            abort();
        va_end(ap);
        gr_warn("%s", x->error);
    }
    if (x->streaming) {
        /* Dropping the stream without done() tells the reader the body failed. */
        cp_cap_unref(x->response_stream);
        x->response_stream = NULL;
    }
    x->refs++; /* ending the HTTP side may drop the last other reference */
    exch_http_end(x, false);
    exch_try_answer(x);
    exch_unref(x);
}

/* ---- the response ----------------------------------------------------------- */

static void set_etag(WebSession_ETag_B b, const char *raw)
{
    const char *v = raw;
    bool weak = false;
    if (strncmp(v, "W/", 2) == 0) {
        weak = true;
        v += 2;
    }
    size_t len = strlen(v);
    if (len >= 2 && v[0] == '"' && v[len - 1] == '"') {
        v++;
        len -= 2;
    }
    WebSession_ETag_set_value(b, v, len);
    WebSession_ETag_set_weak(b, weak);
}

static void set_error_body(exch *x, cp_struct_builder group, bool client)
{
    br_response *r = x->resp;
    const char *mime = r->content_type ? r->content_type : "";
    if (strncasecmp(mime, "text/html", 9) == 0) {
        if (client)
            WebSession_Response_clientError_set_descriptionHtml(
                (WebSession_Response_clientError_B){group}, x->body.data ? x->body.data : "",
                x->body.len);
        else
            WebSession_Response_serverError_set_descriptionHtml(
                (WebSession_Response_serverError_B){group}, x->body.data ? x->body.data : "",
                x->body.len);
        return;
    }
    WebSession_Response_ErrorBody_B eb = client ? WebSession_Response_clientError_init_nonHtmlBody(
                                                      (WebSession_Response_clientError_B){group})
                                                : WebSession_Response_serverError_init_nonHtmlBody(
                                                      (WebSession_Response_serverError_B){group});
    WebSession_Response_ErrorBody_set_data(eb, x->body.data ? x->body.data : "", x->body.len);
    if (r->content_type)
        WebSession_Response_ErrorBody_set_mimeType(eb, r->content_type, strlen(r->content_type));
    if (r->content_encoding)
        WebSession_Response_ErrorBody_set_encoding(eb, r->content_encoding,
                                                   strlen(r->content_encoding));
    if (r->content_language)
        WebSession_Response_ErrorBody_set_language(eb, r->content_language,
                                                   strlen(r->content_language));
}

static cp_cap *handle_new(exch *x);

static void fill_response(exch *x, WebSession_Response_B b)
{
    br_response *r = x->resp;
    if (r->ncookies) {
        WebSession_Cookie_LB cl = WebSession_Response_init_setCookies(b, (uint32_t)r->ncookies);
        for (size_t i = 0; i < r->ncookies; i++) {
            br_cookie *k = &r->cookies[i];
            WebSession_Cookie_B cb = WebSession_Cookie_list_at(cl, (uint32_t)i);
            WebSession_Cookie_set_name(cb, k->name, strlen(k->name));
            WebSession_Cookie_set_value(cb, k->value, strlen(k->value));
            if (k->path)
                WebSession_Cookie_set_path(cb, k->path, strlen(k->path));
            WebSession_Cookie_set_httpOnly(cb, k->http_only);
            WebSession_Cookie_expires_B e = WebSession_Cookie_init_expires(cb);
            if (k->expires == BR_EXPIRES_ABSOLUTE)
                WebSession_Cookie_expires_set_absolute(e, k->expires_value);
            else if (k->expires == BR_EXPIRES_RELATIVE)
                WebSession_Cookie_expires_set_relative(e, (uint64_t)k->expires_value);
        }
    }
    if (r->nheaders) {
        WebSession_Response_Header_LB hl =
            WebSession_Response_init_additionalHeaders(b, (uint32_t)r->nheaders);
        for (size_t i = 0; i < r->nheaders; i++) {
            WebSession_Response_Header_B hb = WebSession_Response_Header_list_at(hl, (uint32_t)i);
            _cleanup_free_ char *lower = gr_strdup(r->headers[i].name);
            gr_ascii_lower(lower);
            WebSession_Response_Header_set_name(hb, lower, strlen(lower));
            WebSession_Response_Header_set_value(hb, r->headers[i].value,
                                                 strlen(r->headers[i].value));
        }
    }
    br_status_map m = x->map;
    switch (m.kind) {
    case BR_CONTENT: {
        WebSession_Response_content_B c = WebSession_Response_init_content(b);
        WebSession_Response_content_set_statusCode(c, (WebSession_Response_SuccessCode)m.code);
        const char *mime = r->content_type ? r->content_type : "application/octet-stream";
        WebSession_Response_content_set_mimeType(c, mime, strlen(mime));
        if (r->content_encoding)
            WebSession_Response_content_set_encoding(c, r->content_encoding,
                                                     strlen(r->content_encoding));
        if (r->content_language)
            WebSession_Response_content_set_language(c, r->content_language,
                                                     strlen(r->content_language));
        if (r->etag)
            set_etag(WebSession_Response_content_init_eTag(c), r->etag);
        if (r->disposition_filename)
            WebSession_Response_content_disposition_set_download(
                WebSession_Response_content_init_disposition(c), r->disposition_filename,
                strlen(r->disposition_filename));
        WebSession_Response_content_body_B body = WebSession_Response_content_init_body(c);
        if (x->streaming)
            WebSession_Response_content_body_set_stream(body, handle_new(x));
        else
            WebSession_Response_content_body_set_bytes(body, x->body.data ? x->body.data : "",
                                                       x->body.len);
        break;
    }
    case BR_NO_CONTENT: {
        WebSession_Response_noContent_B n = WebSession_Response_init_noContent(b);
        WebSession_Response_noContent_set_shouldResetForm(n, m.reset_form);
        if (r->etag)
            set_etag(WebSession_Response_noContent_init_eTag(n), r->etag);
        break;
    }
    case BR_REDIRECT: {
        WebSession_Response_redirect_B rd = WebSession_Response_init_redirect(b);
        WebSession_Response_redirect_set_isPermanent(rd, m.permanent);
        WebSession_Response_redirect_set_switchToGet(rd, m.switch_to_get);
        const char *loc = r->location ? r->location : "";
        WebSession_Response_redirect_set_location(rd, loc, strlen(loc));
        break;
    }
    case BR_PRECONDITION_FAILED: {
        WebSession_Response_preconditionFailed_B pf =
            WebSession_Response_init_preconditionFailed(b);
        if (r->etag)
            set_etag(WebSession_Response_preconditionFailed_init_matchingETag(pf), r->etag);
        break;
    }
    case BR_CLIENT_ERROR: {
        WebSession_Response_clientError_B ce = WebSession_Response_init_clientError(b);
        WebSession_Response_clientError_set_statusCode(ce,
                                                       (WebSession_Response_ClientErrorCode)m.code);
        set_error_body(x, ce.s, true);
        break;
    }
    case BR_SERVER_ERROR:
        set_error_body(x, WebSession_Response_init_serverError(b).s, false);
        break;
    }
}

static void fill_options(exch *x, WebSession_Options_B o)
{
    const char *dav = x->resp->dav ? x->resp->dav : "";
    _cleanup_free_ char *copy = gr_strdup(dav);
    char *save = NULL;
    char *ext[32];
    uint32_t next = 0;
    for (char *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        t = gr_strstrip(t);
        if (strcmp(t, "1") == 0)
            WebSession_Options_set_davClass1(o, true);
        else if (strcmp(t, "2") == 0)
            WebSession_Options_set_davClass2(o, true);
        else if (strcmp(t, "3") == 0)
            WebSession_Options_set_davClass3(o, true);
        else if (*t && next < 32)
            ext[next++] = t;
    }
    if (next) {
        cp_list_builder l = WebSession_Options_init_davExtensions(o, next);
        for (uint32_t i = 0; i < next; i++)
            cp_ptr_set_text(cp_list_ptr_at(l, i), ext[i], strlen(ext[i]));
    }
}

static void on_call_cancel(cp_call *call, void *ud);

/* Answers the call once there is something to answer with: an error, a
 * streamed head, or a complete small response. */
static void exch_try_answer(exch *x)
{
    if (x->call == NULL || x->answered)
        return;
    if (x->error == NULL &&
        (x->kind == EX_WEBSOCKET || !(x->resp && (x->streaming || x->http_done))))
        return;
    cp_call *call = x->call;
    x->call = NULL;
    x->answered = true;
    if (!x->streaming) {
        /* The answer carries the whole body: the stream goes unused, and
         * dropping it first lets the Return release it (no Release). */
        cp_cap_unref(x->response_stream);
        x->response_stream = NULL;
    }
    if (x->error) {
        cp_call_fail(call, CP_EXC_FAILED, "%s", x->error);
    } else if (x->answer == ANSWER_OPTIONS && x->resp->status >= 400) {
        cp_call_fail(call, CP_EXC_FAILED, "the app answered OPTIONS with HTTP %d", x->resp->status);
    } else if (x->answer == ANSWER_OPTIONS) {
        fill_options(x, WebSession_options_results(call));
        cp_call_return(call);
    } else {
        fill_response(x, WebSession_get_results(call));
        cp_call_return(call);
    }
    exch_unref(x);
}

static void on_call_cancel(cp_call *call, void *ud)
{
    exch *x = ud;
    if (x->answered || x->call != call)
        return;
    exch_fail(x, "the call was canceled");
}

/* ---- the body stream and its Handle ----------------------------------------------- */

static void handle_ping(cp_server *self, cp_call *call, Handle_ping_Params_R params)
{
    cp_call_return(call);
}

static const Handle_methods handle_methods = {.ping = handle_ping};

static void handle_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!Handle_dispatch(&handle_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void handle_destroy(cp_server *self)
{
    handle_server *h = (handle_server *)self;
    exch *x = h->x;
    if (x) {
        x->handle = NULL;
        if (!x->http_done)
            exch_fail(x, "the platform dropped the response body's handle");
        exch_unref(x);
    }
    free(h);
}

static const cp_server_vtable handle_vt = {"ResponseBodyHandle", handle_dispatch, handle_destroy};

static cp_cap *handle_new(exch *x)
{
    handle_server *h = gr_calloc(1, sizeof(*h));
    h->base.vt = &handle_vt;
    h->x = x;
    x->handle = h;
    x->refs++;
    return cp_server_cap(&h->base);
}

static void ignore_response(const cp_response *resp, void *ud)
{
    if (resp->exception)
        gr_warn("response stream: %s", resp->exception->reason);
}

static void flow_ready(cp_flow *flow, void *ud)
{
    exch *x = ud;
    if (x->paused && x->c && !x->http_done) {
        x->paused = false;
        conn_reading(x->c, true);
    }
}

/* Sends one piece of the body (or WebSocket bytes) down the flow; pauses
 * reading from the app while the window is full. */
static int flow_push(exch *x, cp_cap *target, bool websocket, const char *data, size_t len)
{
    cp_request *req;
    if (websocket) {
        WebSession_WebSocketStream_sendBytes_Params_B p;
        req = WebSession_WebSocketStream_sendBytes_request(target, &p);
        WebSession_WebSocketStream_sendBytes_Params_set_message(p, data, len);
    } else {
        ByteStream_write_Params_B p;
        req = ByteStream_write_request(target, &p);
        ByteStream_write_Params_set_data(p, data, len);
    }
    _cleanup_error_ gr_error_t err = NULL;
    int r = cp_flow_send(x->flow, req, &err);
    if (r < 0) {
        exch_fail(x, "%s: %s", websocket ? "the WebSocket's client stream" : "the response stream",
                  gr_error_msg(err));
        return -1;
    }
    if (r == 0 && x->c && !x->paused) {
        x->paused = true;
        conn_reading(x->c, false);
    }
    return 0;
}

/* ---- parser callbacks ------------------------------------------------------------ */

static int on_head(void *ud, br_response *r)
{
    exch *x = ud;
    x->resp = r;
    x->map = br_map_status(r->status);
    if (x->kind == EX_WEBSOCKET)
        return 0;
    if (x->answer == ANSWER_RESPONSE && x->map.kind == BR_CONTENT && !x->head_request &&
        x->response_stream && (r->content_length < 0 || r->content_length > SMALL_BODY)) {
        x->streaming = true;
        x->flow = cp_flow_new(FLOW_WINDOW, flow_ready, x);
        if (r->content_length >= 0) {
            ByteStream_expectSize_Params_B p;
            cp_request *req = ByteStream_expectSize_request(x->response_stream, &p);
            ByteStream_expectSize_Params_set_size(p, (uint64_t)r->content_length);
            _cleanup_error_ gr_error_t err = NULL;
            if (cp_request_send(req, ignore_response, NULL, NULL, &err) < 0)
                gr_debug("expectSize: %s", gr_error_msg(err));
        }
        exch_try_answer(x);
    }
    return 0;
}

/* Sends what the current read brought of a streamed body as one write:
 * one per chunk would let an app's one-byte chunks turn a 64 KiB read into
 * thousands of calls, past the window's reach and the connection's limit
 * of unanswered calls (which every stream of the grain shares). */
static int body_flush(exch *x)
{
    if (!x->streaming || x->body.len == 0)
        return 0;
    int r = flow_push(x, x->response_stream, false, x->body.data, x->body.len);
    gr_buf_clear(&x->body);
    return r;
}

static int on_body(void *ud, const char *data, size_t len)
{
    exch *x = ud;
    if (x->streaming) {
        gr_buf_append(&x->body, data, len); /* at most one read: body_flush follows it */
        return 0;
    }
    if (x->map.kind == BR_CONTENT || x->answer == ANSWER_OPTIONS) {
        if (x->body.len + len > SMALL_BODY && x->map.kind == BR_CONTENT) {
            exch_fail(
                x, "the app's response body is over %d bytes and the call has no response stream",
                SMALL_BODY);
            return -1;
        }
        if (x->answer == ANSWER_OPTIONS)
            return 0;
    } else if (x->map.kind != BR_CLIENT_ERROR && x->map.kind != BR_SERVER_ERROR) {
        return 0; /* redirects, no content, preconditions: no body to carry */
    }
    if (x->body.len < ERROR_BODY) {
        size_t n = len < ERROR_BODY - x->body.len ? len : ERROR_BODY - x->body.len;
        gr_buf_from_stash(&x->body, &body_stash, BODY_BLOCK);
        gr_buf_append(&x->body, data, n);
    }
    return 0;
}

static int on_done(void *ud)
{
    exch *x = ud;
    if (body_flush(x) < 0)
        return -1;
    if (x->streaming && x->response_stream) {
        ByteStream_done_Params_B p;
        cp_request *req = ByteStream_done_request(x->response_stream, &p);
        _cleanup_error_ gr_error_t err = NULL;
        if (cp_request_send(req, ignore_response, NULL, NULL, &err) < 0)
            gr_warn("response stream done: %s", gr_error_msg(err));
    }
    return 0;
}

static const br_parser_callbacks parser_cb = {on_head, on_body, on_done};

/* ---- the connection's life --------------------------------------------------------- */

static void ws_forward(exch *x, const char *data, size_t len)
{
    if (len && x->client_stream)
        flow_push(x, x->client_stream, true, data, len);
}

static void ws_opened(exch *x);

/* A kept-alive connection that the app had closed before answering (read
 * EOF or a failed write, no byte of an answer yet): tries once more on a
 * fresh connection. Returns true when it did. */
static bool exch_retry(exch *x)
{
    appconn *c = x->c;
    if (c == NULL || x->got_bytes || !c->reused || x->retried || x->kind != EX_HTTP ||
        x->req.len == 0)
        return false;
    gr_debug("a kept-alive connection was closed by the app: retrying on a fresh one");
    x->retried = true;
    x->c = NULL;
    conn_close(c);
    x->connected = false;
    exch_begin(x);
    return true;
}

static void exch_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    appconn *c = s->data;
    exch *x = c->x;
    if (x == NULL || nread == 0)
        return;
    if (x->ws_open) {
        if (nread < 0) {
            exch_http_end(x, false);
            return;
        }
        ws_forward(x, buf->base, (size_t)nread);
        return;
    }
    _cleanup_error_ gr_error_t err = NULL;
    if (nread < 0) {
        if (exch_retry(x))
            return;
        if (br_parser_finish(x->parser, &err) < 0) {
            exch_fail(x, "%s", gr_error_msg(err));
            return;
        }
        x->refs++;
        exch_http_end(x, false);
        exch_try_answer(x);
        exch_unref(x);
        return;
    }
    if (!x->got_bytes) {
        x->got_bytes = true;
        gr_buf_release_to(&x->req, &head_stash, HEAD_BLOCK); /* no retry once the app has answered */
    }
    x->refs++; /* callbacks may end the exchange */
    int r = br_parser_feed(x->parser, buf->base, (size_t)nread, &err);
    if (r == 0 && !x->http_done)
        body_flush(x); /* a failure is reported by it */
    if (x->http_done) {
        /* failed inside a callback (already reported) */
    } else if (r < 0) {
        exch_fail(x, "%s", gr_error_msg(err));
    } else if (x->kind == EX_WEBSOCKET && br_parser_upgraded(x->parser) &&
               !(x->resp->ws_accept &&
                 strcmp(gr_strstrip(x->resp->ws_accept), x->ws_accept) == 0)) {
        exch_fail(x, "the app's WebSocket handshake is wrong: Sec-WebSocket-Accept does not answer "
                     "the bridge's key");
    } else if (x->kind == EX_WEBSOCKET && br_parser_upgraded(x->parser)) {
        size_t off = br_parser_upgrade_offset(x->parser);
        ws_opened(x);
        if (!x->http_done)
            ws_forward(x, buf->base + off, (size_t)nread - off);
    } else if (x->kind == EX_WEBSOCKET && x->resp) {
        exch_fail(x, "the app refused the WebSocket upgrade: it answered HTTP %d instead of 101",
                  x->resp->status);
    } else if (br_parser_done(x->parser)) {
        exch_http_end(x, br_parser_keep_alive(x->parser));
        exch_try_answer(x);
    }
    exch_unref(x);
}

static void wreq_done(uv_write_t *w, int status)
{
    wreq *q = w->data;
    exch *x = q->x;
    unsigned q_attempt = q->attempt;
    x->writes--;
    if (q->call) {
        if (status < 0)
            cp_call_fail(q->call, CP_EXC_FAILED, "writing to the app: %s", uv_strerror(status));
        else
            cp_call_return(q->call);
    }
    free(q->data);
    free(q);
    if (status < 0 && !x->http_done && status != UV_ECANCELED && q_attempt == x->attempt &&
        !exch_retry(x))
        exch_fail(x, "writing to the app: %s", uv_strerror(status));
    exch_unref(x);
}

/* Writes data (taken) to the app; call, if any, returns once it is written. */
static void exch_write(exch *x, char *data, size_t len, cp_call *call)
{
    wreq *q = gr_calloc(1, sizeof(*q));
    q->x = x;
    q->data = data;
    q->len = len;
    q->call = call;
    if (!x->connected) {
        *x->queue_tail = q;
        x->queue_tail = &q->next;
        return;
    }
    uv_buf_t b = uv_buf_init(q->data, (unsigned)len);
    if (call == NULL) {
        /* Written at once when the socket takes it: a uv_write that
         * completes still costs an epoll_ctl when libuv drains the queue.
         * A failure goes the uv_write way, reported from the loop. */
        int n = uv_try_write((uv_stream_t *)&x->c->tcp, &b, 1);
        if (n == (int)len) {
            free(q->data);
            free(q);
            return;
        }
        if (n > 0)
            b = uv_buf_init(q->data + n, (unsigned)(len - (size_t)n));
    }
    q->w.data = q;
    q->attempt = x->attempt;
    x->refs++;
    x->writes++;
    int r = uv_write(&q->w, (uv_stream_t *)&x->c->tcp, &b, 1, wreq_done);
    if (r < 0) {
        x->refs--;
        x->writes--;
        if (call)
            cp_call_fail(call, CP_EXC_FAILED, "writing to the app: %s", uv_strerror(r));
        free(q->data);
        free(q);
        exch_fail(x, "writing to the app: %s", uv_strerror(r));
    }
}

static void exch_connected(exch *x)
{
    x->connected = true;
    x->attempt++;
    x->c->x = x;
    if (x->parser == NULL) {
        x->parser = br_parser_new(NULL, &parser_cb, x, x->head_request);
        if (x->kind == EX_WEBSOCKET)
            br_parser_expect_upgrade(x->parser);
    }
    /* The head goes out at once when the socket takes it, as it most often
     * does; what it does not take is queued. On a reused connection the head
     * is kept until the answer starts, for exch_retry. */
    size_t len = x->req.len;
    bool keep = x->c->reused && !x->retried && x->kind == EX_HTTP;
    uv_buf_t head = uv_buf_init(x->req.data, (unsigned)len);
    int took = uv_try_write((uv_stream_t *)&x->c->tcp, &head, 1);
    size_t sent = took > 0 ? (size_t)took : 0; /* a failure goes the uv_write way below */
    if (sent < len) {
        char *rest = gr_malloc(len - sent);
        memcpy(rest, x->req.data + sent, len - sent);
        exch_write(x, rest, len - sent, NULL);
    }
    if (!keep)
        gr_buf_release_to(&x->req, &head_stash, HEAD_BLOCK);
    if (x->http_done)
        return;
    wreq *q = x->queue;
    x->queue = NULL;
    x->queue_tail = &x->queue;
    while (q && !x->http_done) {
        wreq *n = q->next;
        exch_write(x, q->data, q->len, q->call);
        free(q);
        q = n;
    }
    if (x->http_done || x->c == NULL)
        return;
    conn_reading(x->c, true);
}

static void on_connect(uv_connect_t *req, int status)
{
    appconn *c = req->data;
    exch *x = c->x;
    if (x == NULL) {
        conn_close(c);
        return;
    }
    if (status < 0) {
        x->c = NULL;
        conn_close(c);
        exch_fail(x, "connecting to the app on 127.0.0.1:%d: %s", app.port, uv_strerror(status));
        return;
    }
    exch_connected(x);
}

static void loopback(struct sockaddr_in *sa)
{
    uv_ip4_addr("127.0.0.1", app.port, sa);
}

static void exch_begin(exch *x)
{
    if (x->http_done)
        return;
    if (!app.ready) {
        if (app.timed_out) {
            exch_fail(x, "the app did not listen on 127.0.0.1:%d within %llu ms", app.port,
                      (unsigned long long)app.timeout_ms);
            return;
        }
        x->next_waiting = app.waiting;
        app.waiting = x;
        return;
    }
    appconn *c = x->fresh_only || x->retried ? NULL : idle_take();
    if (c) {
        x->c = c;
        exch_connected(x);
        return;
    }
    c = conn_new();
    c->x = x;
    x->c = c;
    c->connect.data = c;
    struct sockaddr_in sa;
    loopback(&sa);
    int r = uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&sa, on_connect);
    if (r < 0) {
        x->c = NULL;
        conn_close(c);
        exch_fail(x, "connecting to the app: %s", uv_strerror(r));
    }
}

/* ---- waiting for the app to listen ----------------------------------------------------- */

static void start_waiting(void)
{
    exch *w = app.waiting;
    app.waiting = NULL;
    while (w) {
        exch *n = w->next_waiting;
        w->next_waiting = NULL;
        exch_begin(w);
        w = n;
    }
}

static void probe_connect(uv_connect_t *req, int status)
{
    appconn *c = req->data;
    app.probe = NULL;
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!app.ready) {
        app.ready = true;
        uv_timer_stop(&app.poll);
        gr_debug("the app listens on 127.0.0.1:%d", app.port);
        idle_put(c);
        start_waiting();
    } else {
        conn_close(c);
    }
}

static void poll_tick(uv_timer_t *t)
{
    if (app.ready)
        return;
    /* Most apps listen within milliseconds: look every millisecond at first
     * (a refused connect on loopback costs microseconds), then every 10 ms
     * as Sandstorm's bridge does. */
    if (uv_timer_get_repeat(t) == 1 && gr_monotonic_ns() > app.started_ns + 200000000ull)
        uv_timer_set_repeat(t, 10);
    if (!app.timed_out && gr_monotonic_ns() >= app.deadline_ns) {
        app.timed_out = true;
        exch *w = app.waiting;
        app.waiting = NULL;
        while (w) {
            exch *n = w->next_waiting;
            w->next_waiting = NULL;
            exch_begin(w); /* fails it */
            w = n;
        }
    }
    if (app.probe)
        return;
    appconn *c = conn_new();
    c->connect.data = c;
    struct sockaddr_in sa;
    loopback(&sa);
    if (uv_tcp_connect(&c->connect, &c->tcp, (const struct sockaddr *)&sa, probe_connect) < 0) {
        conn_close(c);
        return;
    }
    app.probe = c;
}

void br__app_init(uv_loop_t *loop, int port, uint64_t listen_timeout_ms)
{
    app.loop = loop;
    app.port = port;
    app.timeout_ms = listen_timeout_ms;
    app.started_ns = gr_monotonic_ns();
    app.deadline_ns = app.started_ns + listen_timeout_ms * 1000000ull;
    uv_timer_init(loop, &app.poll);
    uv_timer_start(&app.poll, poll_tick, 0, 1);
    uv_unref((uv_handle_t *)&app.poll);
}

/* ---- requests ---------------------------------------------------------------------- */

typedef struct session {
    cp_server base;
    br__session_params p;
    /* The headers every request of the session carries (Host, X-Sandstorm-*,
     * User-Agent, Accept-Language), made at the first request; or why the
     * session's fields cannot make them. */
    gr_buf head;
    char *head_error;
    bool head_made;
    gr_link open; /* in open_sessions */
} session;

void br__session_params_release(br__session_params *p)
{
    br_session_info *i = &p->info;
    char **fields[] = {
        (char **)&i->tab_id,           (char **)&i->username,    (char **)&i->user_id,
        (char **)&i->preferred_handle, (char **)&i->picture,     (char **)&i->pronouns,
        (char **)&i->session_type,     (char **)&i->permissions, (char **)&i->base_path,
        (char **)&i->session_id,       &p->user_agent,           &p->accept_language};
    for (size_t k = 0; k < sizeof(fields) / sizeof(fields[0]); k++) {
        free(*fields[k]);
        *fields[k] = NULL;
    }
    cp_cap_unref(p->context);
    p->context = NULL;
}

static int etag_list(gr_buf *b, WebSession_ETag_LR l, gr_error_t *err)
{
    uint32_t n = WebSession_ETag_list_len(l);
    for (uint32_t i = 0; i < n; i++) {
        WebSession_ETag_R e = WebSession_ETag_list_get(l, i);
        cp_text v = WebSession_ETag_get_value(e);
        if (strpbrk(v.str, "\"\\") || strlen(v.str) != v.len)
            return gr_make_error(err, 0, "an ETag holds a quote, a backslash or a NUL");
        gr_buf_printf(b, "%s%s\"%s\"", i ? ", " : "", WebSession_ETag_get_weak(e) ? "W/" : "",
                      v.str);
    }
    return 0;
}

static int q_list(gr_buf *b, const char *name, float q)
{
    if (q >= 1.0f || q != q)
        gr_buf_puts(b, name);
    else
        gr_buf_printf(b, "%s;q=%.3g", name, q < 0 ? 0.0 : (double)q);
    return 0;
}

/* The request line and every header that comes from the session and the
 * call's context (facts §16). */
static int begin_request(gr_buf *b, session *s, const char *method, cp_text path,
                         WebSession_Context_R ctx, gr_error_t *err)
{
    if (strlen(path.str) != path.len)
        return gr_make_error(err, 0, "the path holds a NUL");
    gr_buf_from_stash(b, &head_stash, HEAD_BLOCK);
    if (!s->head_made) {
        s->head_made = true;
        _cleanup_error_ gr_error_t why = NULL;
        if (br_session_headers(&s->head, &s->p.info, &why) < 0 ||
            (s->p.user_agent &&
             br_request_header(&s->head, "User-Agent", s->p.user_agent, &why) < 0) ||
            (s->p.accept_language &&
             br_request_header(&s->head, "Accept-Language", s->p.accept_language, &why) < 0))
            s->head_error = gr_strdup(gr_error_msg(why));
    }
    if (s->head_error)
        return gr_make_error(err, 0, "%s", s->head_error);
    if (br_request_line(b, method, path.str, err) < 0)
        return -1;
    gr_buf_append(b, s->head.data, s->head.len);

    gr_buf v = GR_BUF_INIT;
    int r = 0;
    WebSession_AcceptedType_LR acc = WebSession_Context_get_accept(ctx);
    for (uint32_t i = 0; i < WebSession_AcceptedType_list_len(acc); i++) {
        WebSession_AcceptedType_R a = WebSession_AcceptedType_list_get(acc, i);
        if (i)
            gr_buf_puts(&v, ", ");
        q_list(&v, WebSession_AcceptedType_get_mimeType(a).str,
               WebSession_AcceptedType_get_qValue(a));
    }
    r = br_request_header(b, "Accept", v.len ? v.data : "*/*", err);
    gr_buf_release(&v);
    if (r < 0)
        return -1;

    WebSession_AcceptedEncoding_LR enc = WebSession_Context_get_acceptEncoding(ctx);
    for (uint32_t i = 0; i < WebSession_AcceptedEncoding_list_len(enc); i++) {
        WebSession_AcceptedEncoding_R a = WebSession_AcceptedEncoding_list_get(enc, i);
        if (i)
            gr_buf_puts(&v, ", ");
        q_list(&v, WebSession_AcceptedEncoding_get_contentCoding(a).str,
               WebSession_AcceptedEncoding_get_qValue(a));
    }
    if (v.len)
        r = br_request_header(b, "Accept-Encoding", v.data, err);
    gr_buf_release(&v);
    if (r < 0)
        return -1;

    KeyValue_LR cookies = WebSession_Context_get_cookies(ctx);
    for (uint32_t i = 0; i < KeyValue_list_len(cookies); i++) {
        KeyValue_R kv = KeyValue_list_get(cookies, i);
        cp_text k = KeyValue_get_key(kv), val = KeyValue_get_value(kv);
        if (strpbrk(k.str, ";=") || strchr(val.str, ';') || strlen(k.str) != k.len ||
            strlen(val.str) != val.len) {
            gr_buf_release(&v);
            return gr_make_error(err, 0, "cookie '%.64s' holds a ';', '=' or NUL", k.str);
        }
        gr_buf_printf(&v, "%s%s=%s", i ? "; " : "", k.str, val.str);
    }
    if (v.len)
        r = br_request_header(b, "Cookie", v.data, err);
    gr_buf_release(&v);
    if (r < 0)
        return -1;

    WebSession_Context_eTagPrecondition_R pre = WebSession_Context_get_eTagPrecondition(ctx);
    switch (WebSession_Context_eTagPrecondition_which(pre)) {
    case 1:
        gr_buf_puts(b, "If-Match: *\r\n");
        break;
    case 2:
    case 3: {
        bool match = WebSession_Context_eTagPrecondition_which(pre) == 2;
        if (etag_list(&v,
                      match ? WebSession_Context_eTagPrecondition_get_matchesOneOf(pre)
                            : WebSession_Context_eTagPrecondition_get_matchesNoneOf(pre),
                      err) < 0) {
            gr_buf_release(&v);
            return -1;
        }
        if (v.len)
            r = br_request_header(b, match ? "If-Match" : "If-None-Match", v.data, err);
        gr_buf_release(&v);
        if (r < 0)
            return -1;
        break;
    }
    case 4:
        gr_buf_puts(b, "If-None-Match: *\r\n");
        break;
    default:
        break;
    }

    WebSession_Context_Header_LR extra = WebSession_Context_get_additionalHeaders(ctx);
    for (uint32_t i = 0; i < WebSession_Context_Header_list_len(extra); i++) {
        WebSession_Context_Header_R h = WebSession_Context_Header_list_get(extra, i);
        cp_text n = WebSession_Context_Header_get_name(h),
                val = WebSession_Context_Header_get_value(h);
        if (!br_request_header_allowed(n.str)) {
            gr_debug("dropping header %s: not whitelisted", n.str);
            continue;
        }
        if (strlen(val.str) != val.len)
            return gr_make_error(err, 0, "header %s holds a NUL", n.str);
        if (br_request_header(b, n.str, val.str, err) < 0)
            return -1;
    }
    return 0;
}

static int content_headers(gr_buf *b, cp_text mime, cp_text encoding, gr_error_t *err)
{
    if (mime.len && br_request_header(b, "Content-Type", mime.str, err) < 0)
        return -1;
    if (encoding.len && br_request_header(b, "Content-Encoding", encoding.str, err) < 0)
        return -1;
    return 0;
}

/* Sends the request in b (head without its end) with body and answers call
 * with the response. */
static void send_request(session *s, cp_call *call, gr_buf *b, const void *body, int64_t body_len,
                         bool head_request, ex_answer answer, WebSession_Context_R ctx)
{
    br_request_end(b, body_len >= 0 ? body_len : -2);
    if (body_len > 0)
        gr_buf_append(b, body, (size_t)body_len);
    exch *x = exch_new(EX_HTTP, answer, call);
    x->req = *b;
    *b = (gr_buf)GR_BUF_INIT;
    x->head_request = head_request;
    x->has_body = body_len > 0;
    x->response_stream = WebSession_Context_get_responseStream(ctx);
    cp_call_on_cancel(call, on_call_cancel, x);
    exch_begin(x);
}

#define BEGIN(Method, NAME)                                                                        \
    session *s = (session *)self;                                                                  \
    gr_buf b = GR_BUF_INIT;                                                                        \
    _cleanup_error_ gr_error_t err = NULL;                                                         \
    WebSession_Context_R ctx = WebSession_##Method##_Params_get_context(params);                   \
    if (begin_request(&b, s, NAME, WebSession_##Method##_Params_get_path(params), ctx, &err) < 0)  \
        goto refuse;

#define REFUSE                                                                                     \
    refuse:                                                                                        \
    gr_buf_release(&b);                                                                            \
    cp_call_fail(call, CP_EXC_FAILED, "%s", gr_error_msg(err));

static void ws_get(cp_server *self, cp_call *call, WebSession_get_Params_R params)
{
    bool head = WebSession_get_Params_get_ignoreBody(params);
    BEGIN(get, head ? "HEAD" : "GET")
    send_request(s, call, &b, NULL, -2, head, ANSWER_RESPONSE, ctx);
    return;
    REFUSE
}

static void ws_delete(cp_server *self, cp_call *call, WebSession_delete_Params_R params)
{
    BEGIN(delete, "DELETE")
    send_request(s, call, &b, NULL, -2, false, ANSWER_RESPONSE, ctx);
    return;
    REFUSE
}

static void ws_options(cp_server *self, cp_call *call, WebSession_options_Params_R params)
{
    BEGIN(options, "OPTIONS")
    send_request(s, call, &b, NULL, -2, false, ANSWER_OPTIONS, ctx);
    return;
    REFUSE
}

#define WITH_CONTENT(Method, NAME, Content)                                                        \
    static void ws_##Method(cp_server *self, cp_call *call, WebSession_##Method##_Params_R params) \
    {                                                                                              \
        BEGIN(Method, NAME)                                                                        \
        WebSession_##Content##_R c = WebSession_##Method##_Params_get_content(params);             \
        if (content_headers(&b, WebSession_##Content##_get_mimeType(c),                            \
                            WebSession_##Content##_get_encoding(c), &err) < 0)                     \
            goto refuse;                                                                           \
        cp_data d = WebSession_##Content##_get_content(c);                                         \
        send_request(s, call, &b, d.ptr, (int64_t)d.len, false, ANSWER_RESPONSE, ctx);             \
        return;                                                                                    \
        REFUSE                                                                                     \
    }

WITH_CONTENT(post, "POST", PostContent)
WITH_CONTENT(put, "PUT", PutContent)
WITH_CONTENT(patch, "PATCH", PostContent)
WITH_CONTENT(mkcol, "MKCOL", PostContent)
WITH_CONTENT(report, "REPORT", PostContent)

static int xml_body(gr_buf *b, cp_text xml, const void **body, int64_t *len)
{
    if (xml.len)
        gr_buf_puts(b, "Content-Type: application/xml; charset=utf-8\r\n");
    *body = xml.str;
    *len = (int64_t)xml.len;
    return 0;
}

static void ws_propfind(cp_server *self, cp_call *call, WebSession_propfind_Params_R params)
{
    BEGIN(propfind, "PROPFIND")
    static const char *const depths[] = {"infinity", "0", "1"};
    unsigned d = (unsigned)WebSession_propfind_Params_get_depth(params);
    gr_buf_printf(&b, "Depth: %s\r\n", d < 3 ? depths[d] : "infinity");
    const void *body;
    int64_t len;
    xml_body(&b, WebSession_propfind_Params_get_xmlContent(params), &body, &len);
    send_request(s, call, &b, body, len, false, ANSWER_RESPONSE, ctx);
    return;
    REFUSE
}

#define XML_ONLY(Method, NAME)                                                                     \
    static void ws_##Method(cp_server *self, cp_call *call, WebSession_##Method##_Params_R params) \
    {                                                                                              \
        BEGIN(Method, NAME)                                                                        \
        const void *body;                                                                          \
        int64_t len;                                                                               \
        xml_body(&b, WebSession_##Method##_Params_get_xmlContent(params), &body, &len);            \
        send_request(s, call, &b, body, len, false, ANSWER_RESPONSE, ctx);                         \
        return;                                                                                    \
        REFUSE                                                                                     \
    }

XML_ONLY(proppatch, "PROPPATCH")
XML_ONLY(acl, "ACL")

static void ws_lock(cp_server *self, cp_call *call, WebSession_lock_Params_R params)
{
    BEGIN(lock, "LOCK")
    gr_buf_printf(&b, "Depth: %s\r\n",
                  WebSession_lock_Params_get_shallow(params) ? "0" : "infinity");
    const void *body;
    int64_t len;
    xml_body(&b, WebSession_lock_Params_get_xmlContent(params), &body, &len);
    send_request(s, call, &b, body, len, false, ANSWER_RESPONSE, ctx);
    return;
    REFUSE
}

static void ws_unlock(cp_server *self, cp_call *call, WebSession_unlock_Params_R params)
{
    BEGIN(unlock, "UNLOCK")
    cp_text tok = WebSession_unlock_Params_get_lockToken(params);
    {
        _cleanup_free_ char *v =
            tok.str[0] == '<' ? gr_strdup(tok.str) : gr_asprintf("<%s>", tok.str);
        if (br_request_header(&b, "Lock-Token", v, &err) < 0)
            goto refuse;
    }
    send_request(s, call, &b, NULL, -2, false, ANSWER_RESPONSE, ctx);
    return;
    REFUSE
}

/* Destination: the session's origin and the path (WebDAV wants a URL). */
static int destination(gr_buf *b, session *s, cp_text dest, gr_error_t *err)
{
    const char *d = dest.str[0] == '/' ? dest.str + 1 : dest.str;
    for (const unsigned char *p = (const unsigned char *)d; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return gr_make_error(err, 0, "the destination holds a space or a control character");
    const char *base = s->p.info.base_path ? s->p.info.base_path : "";
    size_t bl = strlen(base);
    gr_buf_printf(b, "Destination: %.*s/%s\r\n", (int)(bl && base[bl - 1] == '/' ? bl - 1 : bl),
                  base, d);
    return 0;
}

static void ws_copy(cp_server *self, cp_call *call, WebSession_copy_Params_R params)
{
    BEGIN(copy, "COPY")
    if (destination(&b, s, WebSession_copy_Params_get_destination(params), &err) < 0)
        goto refuse;
    gr_buf_printf(&b, "Overwrite: %s\r\nDepth: %s\r\n",
                  WebSession_copy_Params_get_noOverwrite(params) ? "F" : "T",
                  WebSession_copy_Params_get_shallow(params) ? "0" : "infinity");
    send_request(s, call, &b, NULL, -2, false, ANSWER_RESPONSE, ctx);
    return;
    REFUSE
}

static void ws_move(cp_server *self, cp_call *call, WebSession_move_Params_R params)
{
    BEGIN(move, "MOVE")
    if (destination(&b, s, WebSession_move_Params_get_destination(params), &err) < 0)
        goto refuse;
    gr_buf_printf(&b, "Overwrite: %s\r\n",
                  WebSession_move_Params_get_noOverwrite(params) ? "F" : "T");
    send_request(s, call, &b, NULL, -2, false, ANSWER_RESPONSE, ctx);
    return;
    REFUSE
}

/* ---- streaming uploads ------------------------------------------------------------ */

static void rs_write(cp_server *self, cp_call *call, ByteStream_write_Params_R params)
{
    reqstream_server *rs = (reqstream_server *)self;
    exch *x = rs->x;
    if (rs->done) {
        cp_call_fail(call, CP_EXC_FAILED, "write() after done()");
        return;
    }
    if (x->http_done) {
        cp_call_fail(call, CP_EXC_FAILED, "%s",
                     x->error ? x->error : "the app has already answered");
        return;
    }
    cp_data d = ByteStream_write_Params_get_data(params);
    if (d.len == 0) {
        cp_call_return(call);
        return;
    }
    char head[24];
    int hn = snprintf(head, sizeof(head), "%zx\r\n", d.len);
    size_t len = (size_t)hn + d.len + 2;
    char *chunk = gr_malloc(len);
    memcpy(chunk, head, (size_t)hn);
    memcpy(chunk + hn, d.ptr, d.len);
    memcpy(chunk + hn + d.len, "\r\n", 2);
    exch_write(x, chunk, len, call);
}

static void rs_done(cp_server *self, cp_call *call, ByteStream_done_Params_R params)
{
    reqstream_server *rs = (reqstream_server *)self;
    exch *x = rs->x;
    if (rs->done) {
        cp_call_fail(call, CP_EXC_FAILED, "done() twice");
        return;
    }
    rs->done = true;
    if (x->http_done) {
        if (x->error)
            cp_call_fail(call, CP_EXC_FAILED, "%s", x->error);
        else
            cp_call_return(call);
        return;
    }
    exch_write(x, gr_strdup("0\r\n\r\n"), 5, call);
}

static void rs_expect_size(cp_server *self, cp_call *call, ByteStream_expectSize_Params_R params)
{
    cp_call_return(call);
}

static void rs_get_response(cp_server *self, cp_call *call,
                            WebSession_RequestStream_getResponse_Params_R params)
{
    reqstream_server *rs = (reqstream_server *)self;
    exch *x = rs->x;
    if (x->call || x->answered) {
        cp_call_fail(call, CP_EXC_FAILED, "getResponse() twice");
        return;
    }
    x->call = call;
    x->refs++;
    cp_call_on_cancel(call, on_call_cancel, x);
    exch_try_answer(x);
}

static const ByteStream_methods rs_byte_methods = {
    .write = rs_write, .done = rs_done, .expectSize = rs_expect_size};
static const WebSession_RequestStream_methods rs_methods = {.getResponse = rs_get_response};

static void rs_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!WebSession_RequestStream_dispatch(&rs_methods, self, call, iface, method) &&
        !ByteStream_dispatch(&rs_byte_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void rs_destroy(cp_server *self)
{
    reqstream_server *rs = (reqstream_server *)self;
    exch *x = rs->x;
    x->rs = NULL;
    if (!rs->done && !x->http_done)
        exch_fail(x, "the request body was dropped before done()");
    exch_unref(x);
    free(rs);
}

static const cp_server_vtable rs_vt = {"RequestStream", rs_dispatch, rs_destroy};

#define STREAMING(Method, NAME)                                                                    \
    static void ws_##Method(cp_server *self, cp_call *call, WebSession_##Method##_Params_R params) \
    {                                                                                              \
        BEGIN(Method, NAME)                                                                        \
        if (content_headers(&b, WebSession_##Method##_Params_get_mimeType(params),                 \
                            WebSession_##Method##_Params_get_encoding(params), &err) < 0)          \
            goto refuse;                                                                           \
        br_request_end(&b, -1);                                                                    \
        exch *x = exch_new(EX_UPLOAD, ANSWER_RESPONSE, NULL);                                      \
        x->req = b;                                                                                \
        x->fresh_only = true;                                                                      \
        x->response_stream = WebSession_Context_get_responseStream(ctx);                           \
        reqstream_server *rs = gr_calloc(1, sizeof(*rs));                                          \
        rs->base.vt = &rs_vt;                                                                      \
        rs->x = x;                                                                                 \
        x->rs = rs;                                                                                \
        x->refs++;                                                                                 \
        WebSession_##Method##_Results_set_stream(WebSession_##Method##_results(call),              \
                                                 cp_server_cap(&rs->base));                        \
        cp_call_return(call);                                                                      \
        exch_begin(x);                                                                             \
        return;                                                                                    \
        REFUSE                                                                                     \
    }

STREAMING(postStreaming, "POST")
STREAMING(putStreaming, "PUT")

/* ---- WebSockets ------------------------------------------------------------------- */

static void wss_send_bytes(cp_server *self, cp_call *call,
                           WebSession_WebSocketStream_sendBytes_Params_R params)
{
    ws_server *w = (ws_server *)self;
    exch *x = w->x;
    if (x == NULL || x->http_done) {
        cp_call_fail(call, CP_EXC_DISCONNECTED, "the app closed the WebSocket");
        return;
    }
    cp_data d = WebSession_WebSocketStream_sendBytes_Params_get_message(params);
    if (d.len == 0) {
        cp_call_return(call);
        return;
    }
    char *copy = gr_malloc(d.len);
    memcpy(copy, d.ptr, d.len);
    exch_write(x, copy, d.len, call);
}

static const WebSession_WebSocketStream_methods wss_methods = {.sendBytes = wss_send_bytes};

static void wss_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!WebSession_WebSocketStream_dispatch(&wss_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void wss_destroy(cp_server *self)
{
    ws_server *w = (ws_server *)self;
    exch *x = w->x;
    if (x) {
        x->ws = NULL;
        exch_http_end(x, false); /* the platform is gone: hang up on the app */
        exch_unref(x);
    }
    free(w);
}

static const cp_server_vtable wss_vt = {"WebSocketStream", wss_dispatch, wss_destroy};

static void ws_opened(exch *x)
{
    x->ws_open = true;
    x->flow = cp_flow_new(FLOW_WINDOW, flow_ready, x);
    if (x->call == NULL || x->answered)
        return;
    cp_call *call = x->call;
    x->call = NULL;
    x->answered = true;
    WebSession_openWebSocket_Results_B res = WebSession_openWebSocket_results(call);
    const char *proto = x->resp->ws_protocol;
    if (proto && *proto) {
        _cleanup_free_ char *copy = gr_strdup(proto);
        char *names[16];
        uint32_t n = 0;
        char *save = NULL;
        for (char *t = strtok_r(copy, ",", &save); t && n < 16; t = strtok_r(NULL, ",", &save)) {
            t = gr_strstrip(t);
            if (*t)
                names[n++] = t;
        }
        cp_list_builder l = WebSession_openWebSocket_Results_init_protocol(res, n);
        for (uint32_t i = 0; i < n; i++)
            cp_ptr_set_text(cp_list_ptr_at(l, i), names[i], strlen(names[i]));
    }
    ws_server *w = gr_calloc(1, sizeof(*w));
    w->base.vt = &wss_vt;
    w->x = x;
    x->ws = w;
    x->refs++;
    WebSession_openWebSocket_Results_set_serverStream(res, cp_server_cap(&w->base));
    cp_call_return(call);
    exch_unref(x); /* the call's reference */
}

static void ws_open_web_socket(cp_server *self, cp_call *call,
                               WebSession_openWebSocket_Params_R params)
{
    char accept[29];
    BEGIN(openWebSocket, "GET")
    {
        unsigned char key[16];
        if (gr_random_bytes(key, sizeof(key), &err) < 0)
            goto refuse;
        gr_buf k = GR_BUF_INIT;
        br_base64(&k, key, sizeof(key));
        gr_buf_printf(&b,
                      "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                      "Sec-WebSocket-Key: %s\r\n",
                      k.data);
        br_websocket_accept(k.data, accept);
        gr_buf_release(&k);
        cp_list_reader protos = WebSession_openWebSocket_Params_get_protocol(params);
        gr_buf v = GR_BUF_INIT;
        for (uint32_t i = 0; i < protos.len; i++)
            gr_buf_printf(&v, "%s%s", i ? ", " : "", cp_list_get_text(protos, i).str);
        int r = v.len ? br_request_header(&b, "Sec-WebSocket-Protocol", v.data, &err) : 0;
        gr_buf_release(&v);
        if (r < 0)
            goto refuse;
    }
    br_request_end(&b, -2);
    exch *x = exch_new(EX_WEBSOCKET, ANSWER_NONE, call);
    x->req = b;
    x->fresh_only = true;
    memcpy(x->ws_accept, accept, sizeof(accept));
    x->client_stream = WebSession_openWebSocket_Params_get_clientStream(params);
    cp_call_on_cancel(call, on_call_cancel, x);
    exch_begin(x);
    return;
    REFUSE
}

/* ---- the session object ------------------------------------------------------------- */

static const WebSession_methods websession_methods = {
    .get = ws_get,
    .post = ws_post,
    .openWebSocket = ws_open_web_socket,
    .put = ws_put,
    .delete = ws_delete,
    .postStreaming = ws_postStreaming,
    .putStreaming = ws_putStreaming,
    .propfind = ws_propfind,
    .proppatch = ws_proppatch,
    .mkcol = ws_mkcol,
    .copy = ws_copy,
    .move = ws_move,
    .lock = ws_lock,
    .unlock = ws_unlock,
    .acl = ws_acl,
    .report = ws_report,
    .options = ws_options,
    .patch = ws_patch,
};

static void session_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!WebSession_dispatch(&websession_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

/* The open sessions, for the app's getSessionContext. */
static gr_link *open_sessions;

bool br__session_context(const char *id, size_t len, cp_cap **context)
{
    for (gr_link *l = open_sessions; l; l = l->next) {
        session *s = gr_container_of(l, session, open);
        const char *sid = s->p.info.session_id;
        if (sid && strlen(sid) == len && memcmp(sid, id, len) == 0) {
            *context = cp_cap_ref(s->p.context);
            return true;
        }
    }
    return false;
}

static void session_destroy(cp_server *self)
{
    session *s = (session *)self;
    gr_link_remove(&s->open);
    br__session_params_release(&s->p);
    gr_buf_release(&s->head);
    free(s->head_error);
    free(s);
}

static const cp_server_vtable session_vt = {"WebSession", session_dispatch, session_destroy};

cp_cap *br__websession_new(br__session_params *p)
{
    session *s = gr_calloc(1, sizeof(*s));
    s->base.vt = &session_vt;
    s->p = *p;
    memset(p, 0, sizeof(*p));
    gr_link_push(&open_sessions, &s->open);
    return cp_server_cap(&s->base);
}
