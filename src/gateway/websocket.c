/* WebSockets between a browser and a grain. The gateway answers the browser's
 * upgrade itself once the grain accepted WebSession.openWebSocket, then
 * carries raw WebSocket bytes (frames, unparsed) both ways: the browser's to
 * the grain's serverStream.sendBytes under a flow-control window (reading
 * from the browser stops while the window is full), and the grain's, arriving
 * on our clientStream, to the browser one write at a time (each sendBytes
 * returns when its bytes are written, which is the grain's back-pressure). */
#include "gateway_internal.h"
#include "web-session.capnp.h"
#include "websession.h"

#include <h2o/http1.h>
#include <openssl/evp.h>
#include <strings.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_WINDOW (256u << 10) /* bytes of browser data in flight to the grain */
#define WS_MAX_QUEUE (4u << 20) /* bytes a grain may send ahead of the browser */

typedef struct ws_write {
    cp_call *call;
    char *data;
    size_t len;
    struct ws_write *next;
} ws_write;

typedef struct ws_tunnel {
    gw_server *srv;
    int refs;             /* the socket side, the clientStream object, the openWebSocket
                           * call until its answer, an upgrade under way */
    h2o_socket_t *sock;   /* NULL before the upgrade and after the close */
    cp_cap *server_stream;
    cp_flow *flow;
    gm_grain *grain;      /* held while the tunnel is open */
    ws_write *head, *tail;
    size_t queued; /* bytes of head.. not yet written */
    bool writing, closed;
    bool in_send; /* inside cp_flow_send: the flow is freed after it, not during */
    gw_req_ref ref;       /* the upgrade request, until it is answered */
    /* While the grain has not answered openWebSocket: the call, when it
     * left, and the links of srv->opening_websockets. */
    cp_pending *pending;
    uint64_t sent_ns;
    gr_link open;
    char accept[64];
    char *protocol;
} ws_tunnel;

typedef struct ws_client {
    cp_server base;
    ws_tunnel *t;
} ws_client;

static void tunnel_unref(ws_tunnel *t)
{
    if (--t->refs > 0)
        return;
    free(t->protocol);
    free(t);
}

static void fail_writes(ws_tunnel *t, const char *why)
{
    while (t->head) {
        ws_write *w = t->head;
        t->head = w->next;
        cp_call_fail(w->call, CP_EXC_DISCONNECTED, "%s", why);
        free(w->data);
        free(w);
    }
    t->tail = NULL;
    t->queued = 0;
}

/* Ends the tunnel: the browser's socket closes, the grain's stream is
 * dropped (which ends the app's side), the grain is no longer held. */
static void tunnel_close(ws_tunnel *t, const char *why)
{
    if (t->closed)
        return;
    t->closed = true;
    gr_debug("websocket: closed (%s)", why);
    if (t->sock) {
        h2o_socket_t *sock = t->sock;
        t->sock = NULL;
        sock->data = NULL;
        h2o_socket_close(sock);
    }
    /* A write being done is failed too: its socket is gone. */
    fail_writes(t, why);
    cp_cap_unref(t->server_stream);
    t->server_stream = NULL;
    if (!t->in_send) {
        cp_flow_free(t->flow);
        t->flow = NULL;
    }
    if (t->grain) {
        gm_grain_release(t->grain);
        t->grain = NULL;
    }
    tunnel_unref(t); /* the socket side's reference */
}

/* ---- grain to browser --------------------------------------------------------- */

static void write_next(ws_tunnel *t);

static void on_written(h2o_socket_t *sock, const char *err)
{
    ws_tunnel *t = sock->data;
    if (t == NULL)
        return;
    t->refs++; /* answering the write may drop the grain's last hold on t */
    t->writing = false;
    ws_write *w = t->head;
    if (w) {
        t->head = w->next;
        if (t->head == NULL)
            t->tail = NULL;
        t->queued -= w->len;
        if (err)
            cp_call_fail(w->call, CP_EXC_DISCONNECTED, "the browser went away");
        else
            cp_call_return(w->call);
        free(w->data);
        free(w);
    }
    if (err)
        tunnel_close(t, "write failed");
    else
        write_next(t);
    tunnel_unref(t);
}

static void write_next(ws_tunnel *t)
{
    if (t->writing || t->head == NULL || t->sock == NULL)
        return;
    t->writing = true;
    h2o_iovec_t buf = h2o_iovec_init(t->head->data, t->head->len);
    h2o_socket_write(t->sock, &buf, 1, on_written);
}

static void client_send_bytes(cp_server *self, cp_call *call,
                              WebSession_WebSocketStream_sendBytes_Params_R params)
{
    ws_tunnel *t = ((ws_client *)self)->t;
    if (t->closed) {
        cp_call_fail(call, CP_EXC_DISCONNECTED, "the browser's WebSocket is closed");
        return;
    }
    cp_data d = WebSession_WebSocketStream_sendBytes_Params_get_message(params);
    if (t->queued + d.len > WS_MAX_QUEUE) {
        /* Each sendBytes returns once its bytes are written: an app that
         * does not wait would otherwise fill the gateway's memory. */
        cp_call_fail(call, CP_EXC_OVERLOADED,
                     "the app sent more than %u MiB ahead of the browser (wait for each "
                     "sendBytes to return)",
                     WS_MAX_QUEUE >> 20);
        gr_warn("websocket: the app sent more than %u MiB ahead of the browser; closing it",
                WS_MAX_QUEUE >> 20);
        tunnel_close(t, "the app sent too far ahead"); /* our clientStream still holds t */
        return;
    }
    ws_write *w = gr_calloc(1, sizeof(*w));
    w->call = call;
    w->data = gr_malloc(d.len ? d.len : 1);
    memcpy(w->data, d.ptr, d.len);
    w->len = d.len;
    t->queued += d.len;
    if (t->tail)
        t->tail->next = w;
    else
        t->head = w;
    t->tail = w;
    write_next(t);
}

static const WebSession_WebSocketStream_methods client_methods = {.sendBytes = client_send_bytes};

static void client_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!WebSession_WebSocketStream_dispatch(&client_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void client_destroy(cp_server *self)
{
    ws_client *c = (ws_client *)self;
    /* The grain dropped our stream: its side of the socket is done. */
    tunnel_close(c->t, "the grain ended the WebSocket");
    tunnel_unref(c->t);
    free(c);
}

static const cp_server_vtable client_vt = {"gateway WebSocketStream", client_dispatch,
                                           client_destroy};

/* ---- browser to grain ------------------------------------------------------------ */

static void on_read(h2o_socket_t *sock, const char *err);

static void on_flow_ready(cp_flow *flow, void *ud)
{
    ws_tunnel *t = ud;
    if (t->sock && !t->closed)
        h2o_socket_read_start(t->sock, on_read);
}

static void on_read(h2o_socket_t *sock, const char *err)
{
    ws_tunnel *t = sock->data;
    if (t == NULL)
        return;
    if (err) {
        tunnel_close(t, err);
        return;
    }
    if (sock->input->size == 0)
        return;
    WebSession_WebSocketStream_sendBytes_Params_B p;
    cp_request *req = WebSession_WebSocketStream_sendBytes_request(t->server_stream, &p);
    WebSession_WebSocketStream_sendBytes_Params_set_message(p, sock->input->bytes,
                                                            sock->input->size);
    h2o_buffer_consume(&sock->input, sock->input->size);
    gr_error_t e = NULL;
    /* The app may have handed back our own clientStream as its serverStream:
     * then the send is answered inside cp_flow_send, which may close the
     * tunnel there (the browser too far behind). */
    t->refs++;
    t->in_send = true;
    int r = cp_flow_send(t->flow, req, &e);
    t->in_send = false;
    if (r < 0) {
        gr_debug("websocket: %s", gr_error_msg(e));
        gr_error_release(&e);
        tunnel_close(t, "the grain stopped taking data");
    } else if (r == 0 && t->sock) {
        h2o_socket_read_stop(sock); /* until the window has room */
    }
    if (t->closed) {
        cp_flow_free(t->flow);
        t->flow = NULL;
    }
    tunnel_unref(t);
}

static void on_upgraded(void *ud, h2o_socket_t *sock, size_t reqsize)
{
    ws_tunnel *t = ud;
    if (sock == NULL) {
        tunnel_close(t, "upgrade failed");
    } else if (t->closed) {
        h2o_socket_close(sock); /* the grain gave up while the 101 went out */
    } else {
        t->sock = sock;
        sock->data = t;
        h2o_buffer_consume(&sock->input, reqsize);
        if (sock->input->size)
            on_read(sock, NULL);
        if (t->sock)
            h2o_socket_read_start(sock, on_read);
        if (t->sock)
            write_next(t);
    }
    tunnel_unref(t); /* the upgrade's reference */
}

/* ---- the upgrade ----------------------------------------------------------------- */

static void open_answered(const cp_response *resp, ws_tunnel *t);

/* Takes t out of the upgrades awaiting the grain's answer, if it is there. */
static void unlink_open(ws_tunnel *t)
{
    gr_link_remove(&t->open);
    t->pending = NULL;
}

void gw__websocket_opens_sweep(gw_server *srv, uint64_t deadline_ns)
{
    uint64_t now = gw__loop_ns(srv);
    /* Closing a tunnel releases its grain, which may fail the others' calls
     * at once and unlink them: the walk starts over after each one. */
    for (bool again = true; again;) {
        again = false;
        for (gr_link *l = srv->opening_websockets; l; l = l->next) {
            ws_tunnel *t = gr_container_of(l, ws_tunnel, open);
            if (now - t->sent_ns < deadline_ns)
                continue;
            cp_pending *p = t->pending;
            unlink_open(t);
            cp_pending_cancel(p); /* on_open will not run: its reference is ours */
            gr_warn("websocket: the app did not answer the upgrade for %llu s; giving up on it",
                    (unsigned long long)(deadline_ns / 1000000000u));
            h2o_req_t *req = t->ref.req;
            gw__req_ref_clear(&t->ref);
            if (req) {
                static const char why[] = "The app did not answer in time.";
                gw__send_error_page(srv, req, 504, "Gateway Timeout", why, "", 0);
            }
            tunnel_close(t, "the app did not answer the upgrade");
            tunnel_unref(t);
            again = true;
            break;
        }
    }
}

/* The grain answered openWebSocket. Its answer may come after it let go of
 * our clientStream (the library releases the call's capabilities first),
 * which closes the tunnel: the call's own reference keeps t until here. */
static void on_open(const cp_response *resp, void *ud)
{
    ws_tunnel *t = ud;
    unlink_open(t);
    open_answered(resp, t);
    tunnel_unref(t); /* the call's reference */
}

static void open_answered(const cp_response *resp, ws_tunnel *t)
{
    h2o_req_t *req = t->ref.req;
    gw__req_ref_clear(&t->ref);
    if (req == NULL) {
        tunnel_close(t, "the browser left before the grain answered");
        return;
    }
    if (resp->exception) {
        gw__send_error_page(t->srv, req, 502, "Bad Gateway", "The app refused the WebSocket.",
                            resp->exception->reason, strlen(resp->exception->reason));
        tunnel_close(t, resp->exception->reason);
        return;
    }
    if (t->closed) {
        static const char why[] = "the app let go of the WebSocket as it accepted it";
        gw__send_error_page(t->srv, req, 502, "Bad Gateway", "The app refused the WebSocket.",
                            why, sizeof why - 1);
        return;
    }
    WebSession_openWebSocket_Results_R r = WebSession_openWebSocket_response(resp);
    t->server_stream = WebSession_openWebSocket_Results_get_serverStream(r);
    cp_list_reader protos = WebSession_openWebSocket_Results_get_protocol(r);
    t->flow = cp_flow_new(WS_WINDOW, on_flow_ready, t);
    gw__add_header(req, H2O_TOKEN_UPGRADE, "websocket");
    gw__add_header_str(req, "sec-websocket-accept", t->accept);
    if (protos.len > 0) {
        cp_text p = cp_list_get_text(protos, 0);
        bool ok = p.len > 0 && gw__field_safe(p.str, p.len) && !memchr(p.str, ',', p.len);
        if (ok)
            gw__add_header_str(req, "sec-websocket-protocol", p.str);
    }
    req->res.status = 101;
    req->res.reason = "Switching Protocols";
    t->refs++; /* until on_upgraded */
    h2o_http1_upgrade(req, NULL, 0, on_upgraded, t);
}

bool gw__is_websocket(h2o_req_t *req)
{
    /* h2o moves the Upgrade header of an HTTP/1 request out of the list. */
    return req->upgrade.base != NULL &&
           h2o_lcstris(req->upgrade.base, req->upgrade.len, H2O_STRLIT("websocket"));
}

int gw__grain_websocket(gw_server *srv, h2o_req_t *req, cp_cap *web_session, gm_grain *g,
                        const char *path, int (*fill)(gw_server *, h2o_req_t *,
                                                      WebSession_Context_B, cp_cap *, gr_error_t *))
{
    const h2o_iovec_t *key = gw__header(req, "sec-websocket-key");
    const h2o_iovec_t *version = gw__header(req, "sec-websocket-version");
    if (req->version != 0x101 || key == NULL || key->len < 16 || key->len > 64 || version == NULL ||
        !h2o_memis(version->base, version->len, H2O_STRLIT("13"))) {
        gm_grain_release(g);
        return gw__send_error_page(srv, req, 400, "Bad Request",
                                   "This is not a WebSocket handshake Granary can carry "
                                   "(HTTP/1.1, version 13).",
                                   "", 0);
    }
    WebSession_openWebSocket_Params_B p;
    cp_request *call = WebSession_openWebSocket_request(web_session, &p);
    WebSession_openWebSocket_Params_set_path(p, path, strlen(path));
    gr_error_t err = NULL;
    if (fill(srv, req, WebSession_openWebSocket_Params_init_context(p), NULL, &err) < 0) {
        cp_request_free(call);
        gm_grain_release(g);
        int rc = gw__send_error_page(srv, req, 400, "Bad Request",
                                     "The request's headers are not valid.", gr_error_msg(err),
                                     strlen(gr_error_msg(err)));
        gr_error_release(&err);
        return rc;
    }
    const h2o_iovec_t *proto = gw__header(req, "sec-websocket-protocol");
    if (proto) {
        /* "chat, superchat": a list of tokens. */
        _cleanup_free_ char *list = gr_strndup(proto->base, proto->len);
        size_t n = 1;
        for (const char *q = list; *q; q++)
            n += *q == ',';
        if (n > 16)
            n = 16;
        cp_list_builder l = WebSession_openWebSocket_Params_init_protocol(p, (uint32_t)n);
        char *save = NULL;
        uint32_t i = 0;
        for (char *tok = strtok_r(list, ",", &save); tok && i < n; tok = strtok_r(NULL, ",", &save)) {
            char *v = gr_strstrip(tok);
            cp_ptr_set_text(cp_list_ptr_at(l, i++), v, strlen(v));
        }
    }

    ws_tunnel *t = gr_calloc(1, sizeof(*t));
    t->srv = srv;
    t->refs = 3;
    t->grain = g;
    /* Sec-WebSocket-Accept = base64(SHA-1(key + GUID)) (RFC 6455 4.2.2). */
    _cleanup_free_ char *joined = gr_asprintf("%.*s%s", (int)key->len, key->base, WS_GUID);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    EVP_Digest(joined, strlen(joined), md, &mdlen, EVP_sha1(), NULL);
    EVP_EncodeBlock((unsigned char *)t->accept, md, (int)mdlen);
    ws_client *c = gr_calloc(1, sizeof(*c));
    c->base.vt = &client_vt;
    c->t = t;
    WebSession_openWebSocket_Params_set_clientStream(p, cp_server_cap(&c->base));

    gw__req_ref_init(&t->ref, req);
    cp_pending *pending = NULL;
    if (cp_request_send(call, on_open, t, &pending, &err) < 0) {
        /* The request is gone already, and with it (now or later) the
         * clientStream; the call's reference is ours to drop. */
        gw__req_ref_clear(&t->ref);
        tunnel_close(t, "send failed");
        tunnel_unref(t);
        int rc = gw__send_error_page(srv, req, 502, "Bad Gateway",
                                     "The grain could not take the WebSocket.", gr_error_msg(err),
                                     strlen(gr_error_msg(err)));
        gr_error_release(&err);
        return rc;
    }
    if (pending) { /* else on_open ran already, and t may be gone */
        t->pending = pending;
        t->sent_ns = gw__loop_ns(srv);
        gr_link_push(&srv->opening_websockets, &t->open);
    }
    return 0;
}
