/* Grain origins: ui-<32 hex>.<wildcard host>, one per opening of a grain.
 *
 * The shell opens a grain with gw__grain_session_new, which makes the origin
 * and a one-time init link. The browser's first request to the origin is
 * /_granary/init?token=..., which sets the origin's own session cookie and
 * redirects into the app; every later request must carry that cookie. Each
 * request becomes one WebSession call on the grain (started on demand), and
 * the WebSession.Response becomes the HTTP response, with the grain origin's
 * Content-Security-Policy and without anything the app may not set. */
#include "auth.h"
#include "bridge.h"
#include "gateway_internal.h"
#include "grain.capnp.h"
#include "identity.capnp.h"
#include "util.capnp.h"
#include "web-session.capnp.h"
#include "websession.h"

#include <sodium.h>
#include <strings.h>
#include <ctype.h>

/* An origin's cookie. Over https it has the __Host- prefix: browsers refuse
 * a cookie of that name set with a Domain, so a grain's page cannot plant
 * one for the parent domain that would take another origin's browser into
 * the planter's session. Over http nothing can stop the planting; a planted
 * cookie beside the origin's own changes nothing, as any of them may match. */
#define GRAIN_COOKIE "granary_grain"
#define GRAIN_COOKIE_HTTPS "__Host-granary_grain"

static const char *grain_cookie(const gw_server *srv)
{
    return srv->cfg->base_https ? GRAIN_COOKIE_HTTPS : GRAIN_COOKIE;
}

/* The platform's cookie under either name: never the app's to see or set. */
static bool platform_cookie(const char *name, size_t len)
{
    return h2o_memis(name, len, H2O_STRLIT(GRAIN_COOKIE)) ||
           h2o_memis(name, len, H2O_STRLIT(GRAIN_COOKIE_HTTPS));
}
#define WEB_SESSION_TYPE_ID 0xa50711a14d35a8ceull
#define MAX_INLINE_BODY (1u << 20)  /* larger request bodies are streamed */
#define UPLOAD_CHUNK (64u << 10)
#define UPLOAD_WINDOW (1u << 20)    /* bytes of an upload in flight to the grain */
#define MAX_STREAM_QUEUE (4u << 20) /* bytes a grain may write ahead of the browser */
#define OWNER_PERMISSION_BITS 64    /* the owner holds every permission an app can declare */

struct gw_grain_session {
    char label[40];                   /* "ui-" and 32 hex digits */
    char secret[AU_TOKEN_HEX];        /* the origin's cookie */
    char init_hash[AU_TOKEN_HEX];     /* of the one-time init token; "" once used */
    char *grain_id, *account_id, *user_name;
    uint8_t identity_id[32];
    uint8_t tab_id[16];
    cp_cap *web_session;              /* from UiView.newSession, for one grain start */
    uint64_t grain_generation;
    uint64_t last_used_ns;
    gw_grain_session *next; /* the server's list, newest first */
};

/* One account may hold this many sessions; opening one more closes the one it
 * used least recently (a shell opens a session per grain it shows). */
#define MAX_SESSIONS_PER_ACCOUNT 256

/* ---- sessions ------------------------------------------------------------- */

static void session_free(gw_grain_session *s)
{
    cp_cap_unref(s->web_session);
    free(s->grain_id);
    free(s->account_id);
    free(s->user_name);
    free(s);
}

/* Puts s at the head of the server's list and into its label index. */
static void session_add(gw_server *srv, gw_grain_session *s)
{
    s->next = srv->grain_sessions;
    srv->grain_sessions = s;
    gr_index_add(&srv->sessions_by_label, s->label, s);
}

/* Takes *link (an entry of the server's list) out of the list and the index,
 * and frees it. */
static void session_remove(gw_server *srv, gw_grain_session **link)
{
    gw_grain_session *s = *link;
    *link = s->next;
    gr_index_remove(&srv->sessions_by_label, s->label, s);
    session_free(s);
}

static gw_grain_session *find_session(gw_server *srv, const char *label)
{
    return gr_index_find(&srv->sessions_by_label, label, NULL);
}

/* Keeps an account below MAX_SESSIONS_PER_ACCOUNT before it opens another. */
static void account_make_room(gw_server *srv, const char *account_id)
{
    size_t n = 0;
    gw_grain_session **oldest = NULL;
    for (gw_grain_session **p = &srv->grain_sessions; *p; p = &(*p)->next)
        if (strcmp((*p)->account_id, account_id) == 0) {
            n++;
            if (!oldest || (*p)->last_used_ns <= (*oldest)->last_used_ns)
                oldest = p;
        }
    if (n >= MAX_SESSIONS_PER_ACCOUNT)
        session_remove(srv, oldest);
}

char *gw__grain_session_new(gw_server *srv, const char *grain_id, const char *account_id,
                            const char *user_name, const char *path)
{
    account_make_room(srv, account_id);
    gw_grain_session *s = gr_calloc(1, sizeof(*s));
    unsigned char raw[16];
    randombytes_buf(raw, sizeof(raw));
    char hex[33];
    gr_hex(raw, sizeof(raw), hex);
    snprintf(s->label, sizeof(s->label), "ui-%s", hex);
    au_token_new(s->secret);
    char token[AU_TOKEN_HEX];
    au_token_new(token);
    au_token_hash(token, s->init_hash);
    randombytes_buf(s->tab_id, sizeof(s->tab_id));
    /* A per-grain identity: the same user gets the same id in one grain and
     * unrelated ids in different grains. */
    _cleanup_free_ char *ident = gr_asprintf("%s/%s/%s", st_install_id(srv->store), grain_id,
                                             account_id);
    crypto_hash_sha256(s->identity_id, (const unsigned char *)ident, strlen(ident));
    s->grain_id = gr_strdup(grain_id);
    s->account_id = gr_strdup(account_id);
    s->user_name = gr_strdup(user_name ? user_name : "");
    s->last_used_ns = gw__loop_ns(srv);
    session_add(srv, s);
    const char *scheme = srv->cfg->base_https ? "https" : "http";
    gr_buf url = GR_BUF_INIT;
    gr_buf_printf(&url, "%s://%s%s/_granary/init?token=%s&path=", scheme, s->label,
                  srv->cfg->wildcard_suffix, token);
    /* The path goes back into a URL: keep it to the safe characters. */
    for (const char *p = path && *path == '/' ? path : "/"; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("/-._~", *p))
            gr_buf_append(&url, p, 1);
        else
            gr_buf_printf(&url, "%%%02X", (unsigned char)*p);
    }
    return gr_buf_steal(&url);
}

void gw__grain_sessions_sweep(gw_server *srv, uint64_t idle_ns)
{
    uint64_t now = gw__loop_ns(srv);
    for (gw_grain_session **p = &srv->grain_sessions; *p;) {
        gw_grain_session *s = *p;
        if (now - s->last_used_ns > idle_ns)
            session_remove(srv, p);
        else
            p = &s->next;
    }
}

void gw__grain_sessions_touch(gw_server *srv, const char *grain_id, const char *account_id)
{
    uint64_t now = gw__loop_ns(srv);
    for (gw_grain_session *s = srv->grain_sessions; s; s = s->next)
        if (strcmp(s->grain_id, grain_id) == 0 && strcmp(s->account_id, account_id) == 0)
            s->last_used_ns = now;
}

void gw__grain_sessions_drop_grain(gw_server *srv, const char *grain_id)
{
    for (gw_grain_session **p = &srv->grain_sessions; *p;) {
        gw_grain_session *s = *p;
        if (strcmp(s->grain_id, grain_id) == 0)
            session_remove(srv, p);
        else
            p = &s->next;
    }
}

void gw__grain_sessions_free(gw_server *srv)
{
    while (srv->grain_sessions)
        session_remove(srv, &srv->grain_sessions);
    gr_index_release(&srv->sessions_by_label);
}

/* ---- small helpers ----------------------------------------------------------- */

static char *query_param(h2o_req_t *req, const char *name)
{
    if (req->query_at == SIZE_MAX)
        return NULL;
    const char *q = req->path.base + req->query_at + 1;
    const char *end = req->path.base + req->path.len;
    size_t nl = strlen(name);
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *item_end = amp ? amp : end;
        if ((size_t)(item_end - q) > nl && memcmp(q, name, nl) == 0 && q[nl] == '=') {
            /* Decode %XX; tokens and paths here are plain ASCII. */
            gr_buf b = GR_BUF_INIT;
            for (const char *p = q + nl + 1; p < item_end; p++) {
                if (*p == '%' && item_end - p >= 3 && isxdigit((unsigned char)p[1]) &&
                    isxdigit((unsigned char)p[2])) {
                    char hx[3] = {p[1], p[2], 0};
                    char ch = (char)strtol(hx, NULL, 16);
                    gr_buf_append(&b, &ch, 1);
                    p += 2;
                } else {
                    gr_buf_append(&b, p, 1);
                }
            }
            return gr_buf_steal(&b);
        }
        q = item_end + 1;
    }
    return NULL;
}

static char *header_copy(h2o_req_t *req, const char *name)
{
    const h2o_iovec_t *v = gw__header(req, name);
    return v ? gr_strndup(v->base, v->len) : NULL;
}

static void add_grain_headers(gw_server *srv, h2o_req_t *req)
{
    gw__add_header_lasting(req, "content-security-policy", srv->csp_grain);
    gw__add_common_headers(req);
}

static int grain_error_page(gw_server *srv, h2o_req_t *req, int status, const char *reason,
                            const char *title, const char *detail)
{
    return gw__send_error_page(srv, req, status, reason, title, detail, strlen(detail));
}

/* ---- the init handshake --------------------------------------------------------- */

static int serve_init(gw_server *srv, h2o_req_t *req, gw_grain_session *s)
{
    _cleanup_free_ char *token = query_param(req, "token");
    _cleanup_free_ char *path = query_param(req, "path");
    char hash[AU_TOKEN_HEX];
    if (token == NULL || s->init_hash[0] == '\0' || strlen(token) != AU_TOKEN_HEX - 1)
        return grain_error_page(srv, req, 403, "Forbidden",
                                "This link to a grain was used already or is incomplete.",
                                "Open the grain again from the shell.");
    au_token_hash(token, hash);
    if (!au_secret_equal(hash, s->init_hash))
        return grain_error_page(srv, req, 403, "Forbidden", "This link to a grain is not valid.",
                                "Open the grain again from the shell.");
    s->init_hash[0] = '\0';
    _cleanup_free_ char *cookie = gr_asprintf("%s=%s; Path=/; HttpOnly; SameSite=Lax%s",
                                              grain_cookie(srv), s->secret,
                                              srv->cfg->base_https ? "; Secure" : "");
    gw__add_header(req, H2O_TOKEN_SET_COOKIE, cookie);
    gw__add_header(req, H2O_TOKEN_CACHE_CONTROL, "no-store");
    const char *target = path && path[0] == '/' && path[1] != '/' ? path : "/";
    for (const char *p = target; *p; p++)
        if ((unsigned char)*p < 0x21 || *p == '\\')
            target = "/";
    /* By hand: h2o_send_redirect would drop the cookie set above. */
    gw__add_header(req, H2O_TOKEN_LOCATION, target);
    req->res.status = 303;
    req->res.reason = "See Other";
    h2o_send_inline(req, "", 0);
    return 0;
}

/* ---- building the call ------------------------------------------------------------ */

static void set_text(cp_struct_builder b, uint16_t slot, const char *s)
{
    if (s)
        cp_set_text(b, slot, s, strlen(s));
}

/* Fills WebSession.Context from the browser's request. */
static int fill_context(gw_server *srv, h2o_req_t *req, WebSession_Context_B ctx, cp_cap *stream,
                        gr_error_t *err)
{
    /* The browser's cookies but the platform's own, straight from the
     * headers (which may repeat) into the message: counted, then copied. */
    uint32_t nc = 0;
    for (int pass = 0; pass < 2; pass++) {
        KeyValue_LB cl = {0};
        if (pass == 1)
            cl = WebSession_Context_init_cookies(ctx, nc);
        uint32_t k = 0;
        for (ssize_t i = -1; (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1;) {
            const char *p = req->headers.entries[i].value.base;
            const char *end = gw__cookie_end(req->headers.entries[i].value.base, req->headers.entries[i].value.len);
            gw_cookie c;
            while (gw__cookie_next(&p, end, &c)) {
                if (platform_cookie(c.name, c.name_len))
                    continue;
                if (pass == 0 && ++nc > GW_WS_MAX_ITEMS)
                    return gr_make_error(err, 0, "too many cookies (at most %d)", GW_WS_MAX_ITEMS);
                if (pass == 1) {
                    KeyValue_B kv = KeyValue_list_at(cl, k++);
                    KeyValue_set_key(kv, c.name, c.name_len);
                    KeyValue_set_value(kv, c.value, c.value_len);
                }
            }
        }
    }

    if (stream)
        WebSession_Context_set_responseStream(ctx, cp_cap_ref(stream));

    /* AcceptedType and AcceptedEncoding share a layout: the name, then qValue. */
    cp_ptr_builder lists[2] = {WebSession_Context_ptr_accept(ctx),
                               WebSession_Context_ptr_acceptEncoding(ctx)};
    static const char *const names[2] = {"accept", "accept-encoding"};
    for (int k = 0; k < 2; k++) {
        _cleanup_free_ char *header = header_copy(req, names[k]);
        gw_accepted *acc = NULL;
        ssize_t n = header ? gw__ws_parse_accept(header, &acc, err) : 0;
        if (n < 0)
            return -1;
        WebSession_AcceptedType_LB l = {
            cp_ptr_init_struct_list(lists[k], (uint32_t)n, WebSession_AcceptedType_DATA_WORDS,
                                    WebSession_AcceptedType_PTR_WORDS)};
        for (ssize_t i = 0; i < n; i++) {
            WebSession_AcceptedType_B t = WebSession_AcceptedType_list_at(l, (uint32_t)i);
            WebSession_AcceptedType_set_mimeType(t, acc[i].name, strlen(acc[i].name));
            WebSession_AcceptedType_set_qValue(t, acc[i].q);
        }
        gw__accepted_free(acc, n > 0 ? (size_t)n : 0);
    }

    _cleanup_free_ char *im = header_copy(req, "if-match");
    _cleanup_free_ char *inm = header_copy(req, "if-none-match");
    gw_precondition pre;
    if (gw__ws_parse_precondition(im, inm, &pre, err) < 0)
        return -1;
    WebSession_Context_eTagPrecondition_B pb = WebSession_Context_init_eTagPrecondition(ctx);
    WebSession_ETag_LB tags = {0};
    switch (pre.kind) {
    case GW_PRE_NONE: WebSession_Context_eTagPrecondition_set_none(pb); break;
    case GW_PRE_EXISTS: WebSession_Context_eTagPrecondition_set_exists(pb); break;
    case GW_PRE_DOESNT_EXIST: WebSession_Context_eTagPrecondition_set_doesntExist(pb); break;
    case GW_PRE_MATCHES_ONE_OF:
        tags = WebSession_Context_eTagPrecondition_init_matchesOneOf(pb, (uint32_t)pre.n);
        break;
    case GW_PRE_MATCHES_NONE_OF:
        tags = WebSession_Context_eTagPrecondition_init_matchesNoneOf(pb, (uint32_t)pre.n);
        break;
    }
    for (size_t i = 0; i < pre.n && (pre.kind == GW_PRE_MATCHES_ONE_OF ||
                                     pre.kind == GW_PRE_MATCHES_NONE_OF);
         i++) {
        WebSession_ETag_B t = WebSession_ETag_list_at(tags, (uint32_t)i);
        WebSession_ETag_set_value(t, pre.etags[i].value, strlen(pre.etags[i].value));
        WebSession_ETag_set_weak(t, pre.etags[i].weak);
    }
    gw__precondition_release(&pre);

    /* Whitelisted extra headers, names in lower case. */
    size_t nh = 0;
    for (size_t i = 0; i < req->headers.size; i++)
        nh += br_request_header_allowed_n(req->headers.entries[i].name->base,
                                          req->headers.entries[i].name->len);
    WebSession_Context_Header_LB hl = WebSession_Context_init_additionalHeaders(ctx, (uint32_t)nh);
    for (size_t i = 0, k = 0; i < req->headers.size && k < nh; i++) {
        const h2o_iovec_t *n = req->headers.entries[i].name;
        if (!br_request_header_allowed_n(n->base, n->len))
            continue;
        _cleanup_free_ char *name = gr_strndup(n->base, n->len); /* a whitelisted one: rare */
        gr_ascii_lower(name);
        WebSession_Context_Header_B h = WebSession_Context_Header_list_at(hl, (uint32_t)k++);
        WebSession_Context_Header_set_name(h, name, strlen(name));
        WebSession_Context_Header_set_value(h, req->headers.entries[i].value.base,
                                            req->headers.entries[i].value.len);
    }
    (void)srv;
    return 0;
}

/* ---- the response body stream ------------------------------------------------------
 * A ByteStream the grain writes a streamed response body to. Writes are sent
 * to h2o one at a time; each write call returns when h2o asks for more, which
 * is the flow control back to the grain. */

typedef struct pending_write {
    cp_call *call;
    char *data;
    size_t len;
    struct pending_write *next;
} pending_write;

typedef struct body_stream {
    cp_server base;
    h2o_generator_t gen; /* h2o calls proceed/stop on this */
    gw_req_ref ref;
    gw_server *srv;
    /* While h2o holds gen: the last write the grain made or h2o took, and
     * the links of srv->open_streams, for the deadline. */
    uint64_t progress_ns;
    gr_link open;
    bool started, sending, done, failed, finished;
    bool cut;        /* the body cannot be whole: the response ends broken */
    bool h2o_active; /* h2o holds gen: from the start of the response to its end */
    bool grain_gone; /* the capability is gone (destroy ran) */
    int busy;        /* inside a function that must not see b freed */
    size_t queued;   /* bytes written by the grain and not yet taken by h2o */
    pending_write *head, *tail;
    pending_write *in_flight; /* its data is h2o's until proceed */
    cp_cap *handle; /* the grain's Handle for this body: dropping it cancels the body */
} body_stream;

/* A body_stream lives while the grain holds its capability (each call on it
 * holds it too) and while h2o holds its generator, and is freed when both
 * have let go. Answering a call can drop the grain's last reference, and so
 * run stream_destroy, in the middle of any function that answers one: those
 * count themselves in busy, and the last to leave frees. */
static _Thread_local gr_stash stream_stash;

static void stream_leave(body_stream *b)
{
    if (--b->busy == 0 && b->grain_gone && !b->h2o_active) {
        gw__req_ref_clear(&b->ref);
        gr_stash_free(&stream_stash, b);
    }
}

/* Ends the response for h2o, when it is not writing: completely when the
 * grain said done and nothing failed, else as broken (h2o then closes the
 * connection, so the browser sees a cut body, never a short one). */
static void stream_finish(body_stream *b)
{
    h2o_req_t *req = b->ref.req;
    if (!b->h2o_active || b->sending || b->finished)
        return;
    b->finished = true;
    b->h2o_active = false;
    gr_link_remove(&b->open);
    cp_cap_unref(b->handle);
    b->handle = NULL;
    if (req)
        h2o_send(req, NULL, 0, b->done && !b->cut ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_ERROR);
}

/* Refuses the grain's writes from now on, failing those not yet written;
 * cut says the body is not whole (else it is, as for HEAD). */
static void stream_fail_all(body_stream *b, bool cut, const char *why)
{
    b->busy++;
    b->failed = true;
    b->cut |= cut;
    cp_cap_unref(b->handle); /* tells the grain nobody wants the rest */
    b->handle = NULL;
    if (b->in_flight && b->in_flight->call) {
        /* Its bytes stay until h2o is done with them (stream_proceed). */
        cp_call *call = b->in_flight->call;
        b->in_flight->call = NULL;
        cp_call_fail(call, CP_EXC_DISCONNECTED, "%s", why);
    }
    if (b->in_flight && !b->sending) {
        free(b->in_flight->data);
        free(b->in_flight);
        b->in_flight = NULL;
    }
    while (b->head) {
        pending_write *w = b->head;
        b->head = w->next;
        if (b->head == NULL)
            b->tail = NULL;
        b->queued -= w->len;
        cp_call_fail(w->call, CP_EXC_DISCONNECTED, "%s", why);
        free(w->data);
        free(w);
    }
    b->tail = NULL;
    stream_finish(b);
    stream_leave(b);
}

static void stream_pump(body_stream *b)
{
    h2o_req_t *req = b->ref.req;
    if (req == NULL) {
        stream_fail_all(b, true, "the browser closed the connection");
        return;
    }
    if (!b->started || b->sending || b->finished)
        return;
    if (b->failed) {
        stream_finish(b);
        return;
    }
    if (b->head) {
        pending_write *w = b->head;
        b->head = w->next;
        if (b->head == NULL)
            b->tail = NULL;
        b->in_flight = w;
        b->sending = true;
        h2o_iovec_t buf = h2o_iovec_init(w->data, w->len);
        h2o_send(req, &buf, 1, H2O_SEND_STATE_IN_PROGRESS);
        return;
    }
    if (b->done || b->grain_gone)
        stream_finish(b); /* gone without done(): the body is cut */
}

static void stream_proceed(h2o_generator_t *gen, h2o_req_t *req)
{
    body_stream *b = (body_stream *)((char *)gen - offsetof(body_stream, gen));
    b->busy++;
    b->sending = false;
    b->progress_ns = gw__loop_ns(b->srv);
    pending_write *w = b->in_flight;
    b->in_flight = NULL;
    if (w) {
        b->queued -= w->len;
        if (w->call)
            cp_call_return(w->call); /* may drop the grain's last reference */
        free(w->data);
        free(w);
    }
    stream_pump(b);
    stream_leave(b);
}

static void stream_stop(h2o_generator_t *gen, h2o_req_t *req)
{
    body_stream *b = (body_stream *)((char *)gen - offsetof(body_stream, gen));
    b->h2o_active = false; /* h2o is done with gen and with the bytes in flight */
    b->sending = false;
    gr_link_remove(&b->open);
    b->busy++;
    gw__req_ref_clear(&b->ref);
    stream_fail_all(b, true, "the browser closed the connection");
    stream_leave(b);
}

static void stream_write(cp_server *self, cp_call *call, ByteStream_write_Params_R params)
{
    body_stream *b = (body_stream *)self;
    if (b->failed || b->done || b->ref.req == NULL) {
        cp_call_fail(call, CP_EXC_DISCONNECTED, "the response body is no longer wanted");
        return;
    }
    cp_data d = ByteStream_write_Params_get_data(params);
    if (b->queued + d.len > MAX_STREAM_QUEUE) {
        /* Each write is answered once h2o took its bytes: an app that does
         * not wait would otherwise fill the gateway's memory. */
        cp_call_fail(call, CP_EXC_OVERLOADED,
                     "the app wrote more than %u MiB ahead of the browser (wait for each "
                     "ByteStream.write to return)",
                     MAX_STREAM_QUEUE >> 20);
        gr_warn("grain response: the app wrote more than %u MiB ahead of the browser; the "
                "response is cut",
                MAX_STREAM_QUEUE >> 20);
        stream_fail_all(b, true, "the response was cut: the app wrote too far ahead");
        return;
    }
    pending_write *w = gr_calloc(1, sizeof(*w));
    w->call = call;
    w->data = gr_malloc(d.len ? d.len : 1);
    memcpy(w->data, d.ptr, d.len);
    w->len = d.len;
    b->queued += d.len;
    b->progress_ns = gw__loop_ns(b->srv);
    if (b->tail)
        b->tail->next = w;
    else
        b->head = w;
    b->tail = w;
    stream_pump(b);
}

static void stream_done(cp_server *self, cp_call *call, ByteStream_done_Params_R params)
{
    body_stream *b = (body_stream *)self;
    b->done = true;
    cp_call_return(call);
    stream_pump(b);
}

static void stream_expect_size(cp_server *self, cp_call *call, ByteStream_expectSize_Params_R p)
{
    cp_call_return(call); /* a hint only: the body is sent chunked */
}

static const ByteStream_methods stream_methods = {
    .write = stream_write, .done = stream_done, .expectSize = stream_expect_size};

static void stream_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!ByteStream_dispatch(&stream_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

/* Each request makes a grain call (and a response stream, above): kept in
 * stashes (util.h) for the next ones. */
static _Thread_local gr_stash call_stash;

/* The grain let go of the stream (no call on it is left): a response h2o is
 * still sending ends once its bytes in flight are written. */
static void stream_destroy(cp_server *self)
{
    body_stream *b = (body_stream *)self;
    b->busy++;
    b->grain_gone = true;
    if (b->h2o_active && !b->sending)
        stream_pump(b); /* a request gone fails all; else what is left goes, then the end */
    stream_leave(b);
}

static const cp_server_vtable stream_vt = {"gateway ByteStream", stream_dispatch, stream_destroy};

/* ---- one request ------------------------------------------------------------------ */

typedef struct grain_call {
    gw_server *srv;
    gw_req_ref ref;
    /* While the grain has not answered: the call, when it left, and the
     * links of srv->open_calls. */
    cp_pending *pending;
    uint64_t sent_ns;
    gr_link open;
    gm_grain *grain;
    body_stream *stream; /* borrowed; owned by its capability */
    cp_cap *stream_cap;
    bool head, conditional_get;
    /* A streamed upload: the grain's RequestStream, written in chunks of the
     * (h2o-buffered) request body under a flow-control window. */
    cp_cap *upload;
    cp_flow *upload_flow;
    size_t upload_off;
    bool upload_done;
} grain_call;

static void grain_call_free(grain_call *gc)
{
    gr_link_remove(&gc->open);
    cp_flow_free(gc->upload_flow);
    cp_cap_unref(gc->upload);
    gw__req_ref_clear(&gc->ref);
    if (gc->grain)
        gm_grain_release(gc->grain);
    /* Writes to a stream the response did not use are refused now, not
     * kept until the grain lets go of it. */
    if (gc->stream && !gc->stream->started)
        stream_fail_all(gc->stream, false, "the response did not use its stream");
    cp_cap_unref(gc->stream_cap);
    gr_stash_free(&call_stash, gc);
}

static const int success_status[] = {200, 201, 202, 204, 206, 207, 304};
static const int client_error_status[] = {400, 403, 404, 405, 406, 409, 410,
                                          413, 414, 415, 418, 412, 422};

static const char *status_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 207: return "Multi-Status";
    case 301: return "Moved Permanently";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 412: return "Precondition Failed";
    case 500: return "Internal Server Error";
    default: return status >= 500 ? "Server Error" : status >= 400 ? "Client Error" : "OK";
    }
}

static void add_etag(h2o_req_t *req, WebSession_ETag_R t)
{
    cp_text v = WebSession_ETag_get_value(t);
    if (v.len == 0 || memchr(v.str, '"', v.len) || !gw__field_safe(v.str, v.len))
        return;
    char *h = gr_asprintf("%s\"%s\"", WebSession_ETag_get_weak(t) ? "W/" : "", v.str);
    gw__add_header(req, H2O_TOKEN_ETAG, h);
    free(h);
}

static void add_text_header(h2o_req_t *req, const h2o_token_t *token, cp_text t)
{
    if (t.len && gw__field_safe(t.str, t.len))
        gw__add_header(req, token, t.str);
}

/* Writes the parts every kind of response shares: cookies and whitelisted
 * headers, on top of the grain origin's own headers. */
static void add_common(gw_server *srv, h2o_req_t *req, WebSession_Response_R r)
{
    add_grain_headers(srv, req);
    WebSession_Cookie_LR cookies = WebSession_Response_get_setCookies(r);
    for (uint32_t i = 0; i < WebSession_Cookie_list_len(cookies) && i < 64; i++) {
        WebSession_Cookie_R c = WebSession_Cookie_list_get(cookies, i);
        WebSession_Cookie_expires_R ex = WebSession_Cookie_get_expires(c);
        cp_text name = WebSession_Cookie_get_name(c), value = WebSession_Cookie_get_value(c);
        cp_text path = WebSession_Cookie_get_path(c);
        gw_set_cookie sc = {.name = name.str, .value = value.str,
                            .path = path.len ? path.str : NULL,
                            .http_only = WebSession_Cookie_get_httpOnly(c)};
        switch (WebSession_Cookie_expires_which(ex)) {
        case WebSession_Cookie_expires_WHICH_absolute:
            sc.expires = GW_EXPIRES_ABSOLUTE;
            sc.expires_value = WebSession_Cookie_expires_get_absolute(ex);
            break;
        case WebSession_Cookie_expires_WHICH_relative:
            sc.expires = GW_EXPIRES_RELATIVE;
            sc.expires_value = (int64_t)(WebSession_Cookie_expires_get_relative(ex) & INT32_MAX);
            break;
        default: break;
        }
        if (platform_cookie(sc.name, strlen(sc.name)))
            continue; /* the platform's cookie is not the app's to set */
        gr_buf b = GR_BUF_INIT;
        gr_error_t err = NULL;
        if (gw__ws_format_cookie(&b, &sc, srv->cfg->base_https, gr_now_unix(), &err) == 0)
            gw__add_header(req, H2O_TOKEN_SET_COOKIE, b.data);
        else
            gr_error_release(&err);
        gr_buf_release(&b);
    }
    WebSession_Response_Header_LR hs = WebSession_Response_get_additionalHeaders(r);
    for (uint32_t i = 0; i < WebSession_Response_Header_list_len(hs) && i < 64; i++) {
        WebSession_Response_Header_R h = WebSession_Response_Header_list_get(hs, i);
        cp_text n = WebSession_Response_Header_get_name(h), v = WebSession_Response_Header_get_value(h);
        if (br_response_header_allowed(n.str) && gw__field_safe(n.str, n.len) && gw__field_safe(v.str, v.len))
            gw__add_header_str(req, n.str, v.str);
    }
}

/* Whether the response may carry no body: a 204 or 304, or one to HEAD.
 * h2o frames such a response without a length or chunks, so any bytes sent
 * with it would be read as the next response on the connection, which an
 * app could write, headers and all: they are never sent. */
static bool bodiless(h2o_req_t *req, int status)
{
    return status == 204 || status == 304 || gw__method_is(req, "HEAD");
}

static int send_bytes(h2o_req_t *req, int status, const void *data, size_t len)
{
    req->res.status = status;
    req->res.reason = status_reason(status);
    /* A whole body goes out with its length rather than chunked. */
    if (bodiless(req, status)) {
        h2o_send_inline(req, "", 0);
        return 0;
    }
    req->res.content_length = len;
    h2o_send_inline(req, data, len);
    return 0;
}

static void send_error_body(h2o_req_t *req, int status, cp_text html,
                            WebSession_Response_ErrorBody_R nonhtml)
{
    if (html.len) {
        gw__add_header(req, H2O_TOKEN_CONTENT_TYPE, "text/html; charset=utf-8");
        send_bytes(req, status, html.str, html.len);
        return;
    }
    cp_data d = WebSession_Response_ErrorBody_get_data(nonhtml);
    add_text_header(req, H2O_TOKEN_CONTENT_TYPE, WebSession_Response_ErrorBody_get_mimeType(nonhtml));
    add_text_header(req, H2O_TOKEN_CONTENT_ENCODING,
                    WebSession_Response_ErrorBody_get_encoding(nonhtml));
    send_bytes(req, status, d.ptr, d.len);
}

/* Turns a WebSession.Response into the HTTP response. */
static void send_response(grain_call *gc, h2o_req_t *req, WebSession_Response_R r)
{
    gw_server *srv = gc->srv;
    add_common(srv, req, r);
    switch (WebSession_Response_which(r)) {
    case WebSession_Response_WHICH_content: {
        WebSession_Response_content_R c = WebSession_Response_get_content(r);
        unsigned code = WebSession_Response_content_get_statusCode(c);
        int status = code < 7 ? success_status[code] : 200;
        add_text_header(req, H2O_TOKEN_CONTENT_TYPE, WebSession_Response_content_get_mimeType(c));
        add_text_header(req, H2O_TOKEN_CONTENT_ENCODING,
                        WebSession_Response_content_get_encoding(c));
        add_text_header(req, H2O_TOKEN_CONTENT_LANGUAGE,
                        WebSession_Response_content_get_language(c));
        if (WebSession_Response_content_has_eTag(c))
            add_etag(req, WebSession_Response_content_get_eTag(c));
        WebSession_Response_content_disposition_R disp =
            WebSession_Response_content_get_disposition(c);
        if (WebSession_Response_content_disposition_which(disp) ==
            WebSession_Response_content_disposition_WHICH_download) {
            cp_text name = WebSession_Response_content_disposition_get_download(disp);
            gr_buf b = GR_BUF_INIT;
            gw__ws_download_disposition(&b, name.str, name.len);
            gw__add_header_str(req, "content-disposition", b.data);
            gr_buf_release(&b);
        }
        WebSession_Response_content_body_R body = WebSession_Response_content_get_body(c);
        if (WebSession_Response_content_body_which(body) ==
            WebSession_Response_content_body_WHICH_stream) {
            req->res.status = status;
            req->res.reason = status_reason(status);
            /* The grain writes the body while we hold its Handle. */
            gc->stream->handle = WebSession_Response_content_body_get_stream(body);
            gc->stream->gen.proceed = stream_proceed;
            gc->stream->gen.stop = stream_stop;
            h2o_start_response(req, &gc->stream->gen);
            gc->stream->started = true;
            gc->stream->h2o_active = true;
            body_stream *b = gc->stream;
            b->progress_ns = gw__loop_ns(srv);
            gr_link_push(&srv->open_streams, &b->open);
            if (bodiless(req, status)) {
                gc->stream->done = true; /* no body goes out */
                stream_fail_all(gc->stream, false, gc->head ? "HEAD has no body"
                                                     : "a 204 or 304 response has no body");
            }
            stream_pump(gc->stream);
            return;
        }
        cp_data d = WebSession_Response_content_body_get_bytes(body);
        send_bytes(req, status, d.ptr, d.len);
        return;
    }
    case WebSession_Response_WHICH_redirect: {
        WebSession_Response_redirect_R rd = WebSession_Response_get_redirect(r);
        bool perm = WebSession_Response_redirect_get_isPermanent(rd);
        bool to_get = WebSession_Response_redirect_get_switchToGet(rd);
        int status = perm ? (to_get ? 301 : 308) : (to_get ? 303 : 307);
        cp_text loc = WebSession_Response_redirect_get_location(rd);
        if (!gw__field_safe(loc.str, loc.len)) {
            grain_error_page(srv, req, 502, "Bad Gateway", "The app sent a broken redirect.", "");
            return;
        }
        gw__add_header(req, H2O_TOKEN_LOCATION, loc.str);
        send_bytes(req, status, "", 0);
        return;
    }
    case WebSession_Response_WHICH_clientError: {
        WebSession_Response_clientError_R ce = WebSession_Response_get_clientError(r);
        unsigned code = WebSession_Response_clientError_get_statusCode(ce);
        int status = code < 13 ? client_error_status[code] : 400;
        send_error_body(req, status, WebSession_Response_clientError_get_descriptionHtml(ce),
                        WebSession_Response_clientError_get_nonHtmlBody(ce));
        return;
    }
    case WebSession_Response_WHICH_serverError: {
        WebSession_Response_serverError_R se = WebSession_Response_get_serverError(r);
        send_error_body(req, 500, WebSession_Response_serverError_get_descriptionHtml(se),
                        WebSession_Response_serverError_get_nonHtmlBody(se));
        return;
    }
    case WebSession_Response_WHICH_noContent: {
        WebSession_Response_noContent_R nc = WebSession_Response_get_noContent(r);
        if (WebSession_Response_noContent_has_eTag(nc))
            add_etag(req, WebSession_Response_noContent_get_eTag(nc));
        send_bytes(req, WebSession_Response_noContent_get_shouldResetForm(nc) ? 205 : 204, "", 0);
        return;
    }
    case WebSession_Response_WHICH_preconditionFailed: {
        WebSession_Response_preconditionFailed_R pf = WebSession_Response_get_preconditionFailed(r);
        if (WebSession_Response_preconditionFailed_has_matchingETag(pf))
            add_etag(req, WebSession_Response_preconditionFailed_get_matchingETag(pf));
        send_bytes(req, gc->conditional_get ? 304 : 412, "", 0);
        return;
    }
    default:
        grain_error_page(srv, req, 502, "Bad Gateway", "The app sent a response Granary does not know.",
                         "");
    }
}

/* Sends the call, noting it among the open ones for the deadline. */
static int send_call(grain_call *gc, cp_request *call, cp_response_cb cb, gr_error_t *err)
{
    cp_pending *p = NULL;
    if (cp_request_send(call, cb, gc, &p, err) < 0)
        return -1;
    if (p) { /* else cb ran already, and gc is gone */
        gw_server *srv = gc->srv;
        gc->pending = p;
        gc->sent_ns = gw__loop_ns(srv);
        gr_link_push(&srv->open_calls, &gc->open);
    }
    return 0;
}

void gw__grain_calls_sweep(gw_server *srv, uint64_t deadline_ns)
{
    uint64_t now = gw__loop_ns(srv);
    /* Freeing a call can release its grain and fail others at once, which
     * frees them: the walk starts over after each one given up. */
    for (bool again = true; again;) {
        again = false;
        for (gr_link *l = srv->open_calls; l; l = l->next) {
            grain_call *gc = gr_container_of(l, grain_call, open);
            if (now - gc->sent_ns < deadline_ns)
                continue;
            cp_pending_cancel(gc->pending);
            gc->pending = NULL;
            gr_warn("grain: the app did not answer a request for %llu s; giving up on it",
                    (unsigned long long)(deadline_ns / 1000000000u));
            h2o_req_t *req = gc->ref.req;
            gw__req_ref_clear(&gc->ref);
            if (req)
                grain_error_page(srv, req, 504, "Gateway Timeout",
                                 "The app did not answer in time.", "");
            grain_call_free(gc);
            again = true;
            break;
        }
    }
    /* A stream the grain writes nothing to may never end: the grain may
     * have handed the gateway's own stream back as the body's Handle, a
     * cycle that outlives the grain. Cutting it lets go of that Handle. */
    for (bool again = true; again;) {
        again = false;
        for (gr_link *l = srv->open_streams; l; l = l->next) {
            body_stream *b = gr_container_of(l, body_stream, open);
            if (now - b->progress_ns < deadline_ns)
                continue;
            gr_warn("grain: nothing was written to a streamed response for %llu s; cutting it",
                    (unsigned long long)(deadline_ns / 1000000000u));
            gr_link_remove(&b->open); /* a browser not reading keeps h2o's write: b stays */
            stream_fail_all(b, true, "the response was cut: nothing was written to it in time");
            again = true;
            break;
        }
    }
    gw__websocket_opens_sweep(srv, deadline_ns);
}

static void on_response(const cp_response *resp, void *ud)
{
    grain_call *gc = ud;
    h2o_req_t *req = gc->ref.req;
    if (req != NULL) {
        if (resp->exception) {
            gr_warn("grain: %s", resp->exception->reason);
            grain_error_page(gc->srv, req, 502, "Bad Gateway",
                             "The app did not answer. It may have crashed; reload to start it "
                             "again.",
                             resp->exception->reason);
        } else {
            /* Every method this gateway calls returns a bare Response. */
            WebSession_Response_R r = WebSession_get_response(resp);
            send_response(gc, req, r);
        }
    }
    grain_call_free(gc);
}

static void on_new_session(const cp_response *resp, void *ud)
{
    /* Calls pipelined on the session fail with the same reason, so this is
     * only worth a log line. */
    if (resp->exception)
        gr_warn("grain: newSession failed: %s", resp->exception->reason);
}

static void on_stream_call(const cp_response *resp, void *ud)
{
    /* The upload's own calls: a failure also fails getResponse, which is
     * where the browser hears of it. */
    if (resp->exception)
        gr_debug("grain: upload: %s", resp->exception->reason);
}

/* Writes the next chunks of the body while the window has room, then done(). */
static void upload_pump(grain_call *gc)
{
    h2o_req_t *req = gc->ref.req;
    if (req == NULL || gc->upload_done)
        return;
    gr_error_t err = NULL;
    while (gc->upload_off < req->entity.len) {
        size_t n = req->entity.len - gc->upload_off;
        if (n > UPLOAD_CHUNK)
            n = UPLOAD_CHUNK;
        ByteStream_write_Params_B wp;
        cp_request *w = ByteStream_write_request(gc->upload, &wp);
        ByteStream_write_Params_set_data(wp, req->entity.base + gc->upload_off, n);
        gc->upload_off += n;
        int r = cp_flow_send(gc->upload_flow, w, &err);
        if (r < 0) {
            gr_debug("grain: upload stopped: %s", gr_error_msg(err));
            gr_error_release(&err);
            gc->upload_done = true;
            return;
        }
        if (r == 0)
            return; /* on_upload_ready goes on */
    }
    gc->upload_done = true;
    ByteStream_done_Params_B dp;
    cp_request *d = ByteStream_done_request(gc->upload, &dp);
    if (cp_request_send(d, on_stream_call, NULL, NULL, &err) < 0)
        gr_error_release(&err);
}

static void on_upload_ready(cp_flow *flow, void *ud)
{
    upload_pump(ud);
}

static void on_options(const cp_response *resp, void *ud)
{
    grain_call *gc = ud;
    h2o_req_t *req = gc->ref.req;
    if (req != NULL) {
        if (resp->exception) {
            grain_error_page(gc->srv, req, 502, "Bad Gateway", "The app did not answer.",
                             resp->exception->reason);
        } else {
            WebSession_Options_R o = {resp->results};
            gr_buf dav = GR_BUF_INIT;
            if (WebSession_Options_get_davClass1(o))
                gr_buf_puts(&dav, "1");
            if (WebSession_Options_get_davClass2(o))
                gr_buf_puts(&dav, dav.len ? ", 2" : "2");
            if (WebSession_Options_get_davClass3(o))
                gr_buf_puts(&dav, dav.len ? ", 3" : "3");
            cp_list_reader ext = WebSession_Options_get_davExtensions(o);
            for (uint32_t i = 0; i < ext.len && i < 32; i++) {
                cp_text t = cp_list_get_text(ext, i);
                if (t.len && gw__field_safe(t.str, t.len) && !memchr(t.str, ',', t.len))
                    gr_buf_printf(&dav, "%s%s", dav.len ? ", " : "", t.str);
            }
            add_grain_headers(gc->srv, req);
            if (dav.len)
                gw__add_header_str(req, "dav", dav.data);
            gw__add_header(req, H2O_TOKEN_ALLOW,
                           "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, PROPFIND, PROPPATCH, "
                           "MKCOL, COPY, MOVE, LOCK, UNLOCK, ACL, REPORT");
            gr_buf_release(&dav);
            send_bytes(req, 200, "", 0);
        }
    }
    grain_call_free(gc);
}

/* The Destination of COPY and MOVE as a WebSession path: the grain's own
 * origin (or a bare path), without the leading slash; NULL for anywhere else. */
static char *dav_destination(gw_server *srv, h2o_req_t *req, const char *label)
{
    const h2o_iovec_t *d = gw__header(req, "destination");
    if (d == NULL || d->len == 0 || d->len > 4096)
        return NULL;
    _cleanup_free_ char *v = gr_strndup(d->base, d->len);
    const char *scheme = srv->cfg->base_https ? "https" : "http";
    _cleanup_free_ char *own = gr_asprintf("%s://%s%s", scheme, label, srv->cfg->wildcard_suffix);
    const char *path = v;
    if (gr_starts_with(v, own))
        path = v + strlen(own);
    if (path[0] != '/')
        return NULL;
    for (const char *q = path; *q; q++)
        if ((unsigned char)*q <= 0x20 || *q == 0x7f)
            return NULL;
    return gr_strdup(path + 1);
}

static bool header_is(h2o_req_t *req, const char *name, const char *value)
{
    const h2o_iovec_t *h = gw__header(req, name);
    return h && h2o_lcstris(h->base, h->len, value, strlen(value));
}

/* WebDAV methods, each its own WebSession call. Returns the request with
 * *ctx its context to fill, NULL with *bad set when the request is unusable,
 * or NULL and no *bad when the method is not WebDAV. */
static cp_request *dav_call(gw_server *srv, h2o_req_t *req, cp_cap *ws, const char *p,
                            const char *label, WebSession_Context_B *ctx, const char **bad,
                            bool *options)
{
    const char *body = req->entity.base ? req->entity.base : "";
    size_t blen = req->entity.len;
    bool shallow = header_is(req, "depth", "0");
    bool no_overwrite = header_is(req, "overwrite", "f");
    cp_request *call = NULL;
    *bad = NULL;
    *options = false;
    if (gw__method_is(req, "OPTIONS")) {
        WebSession_options_Params_B x;
        call = WebSession_options_request(ws, &x);
        WebSession_options_Params_set_path(x, p, strlen(p));
        *ctx = WebSession_options_Params_init_context(x);
        *options = true;
    } else if (gw__method_is(req, "PROPFIND")) {
        WebSession_propfind_Params_B x;
        call = WebSession_propfind_request(ws, &x);
        WebSession_propfind_Params_set_path(x, p, strlen(p));
        WebSession_propfind_Params_set_xmlContent(x, body, blen);
        WebSession_propfind_Params_set_depth(x, shallow ? WebSession_PropfindDepth_zero
                                               : header_is(req, "depth", "1")
                                                   ? WebSession_PropfindDepth_one
                                                   : WebSession_PropfindDepth_infinity);
        *ctx = WebSession_propfind_Params_init_context(x);
    } else if (gw__method_is(req, "PROPPATCH")) {
        WebSession_proppatch_Params_B x;
        call = WebSession_proppatch_request(ws, &x);
        WebSession_proppatch_Params_set_path(x, p, strlen(p));
        WebSession_proppatch_Params_set_xmlContent(x, body, blen);
        *ctx = WebSession_proppatch_Params_init_context(x);
    } else if (gw__method_is(req, "MKCOL") || gw__method_is(req, "REPORT")) {
        bool mkcol = gw__method_is(req, "MKCOL");
        WebSession_mkcol_Params_B x; /* mkcol and report share a layout */
        call = mkcol ? WebSession_mkcol_request(ws, &x)
                     : WebSession_report_request(ws, (WebSession_report_Params_B *)&x);
        WebSession_mkcol_Params_set_path(x, p, strlen(p));
        WebSession_PostContent_B c = WebSession_mkcol_Params_init_content(x);
        const h2o_iovec_t *type = gw__header(req, "content-type");
        if (type)
            WebSession_PostContent_set_mimeType(c, type->base, type->len);
        WebSession_PostContent_set_content(c, body, blen);
        *ctx = WebSession_mkcol_Params_init_context(x);
    } else if (gw__method_is(req, "COPY") || gw__method_is(req, "MOVE")) {
        _cleanup_free_ char *dest = dav_destination(srv, req, label);
        if (dest == NULL) {
            *bad = "the Destination must be a path on this grain";
            return NULL;
        }
        if (gw__method_is(req, "COPY")) {
            WebSession_copy_Params_B x;
            call = WebSession_copy_request(ws, &x);
            WebSession_copy_Params_set_path(x, p, strlen(p));
            WebSession_copy_Params_set_destination(x, dest, strlen(dest));
            WebSession_copy_Params_set_noOverwrite(x, no_overwrite);
            WebSession_copy_Params_set_shallow(x, shallow);
            *ctx = WebSession_copy_Params_init_context(x);
        } else {
            WebSession_move_Params_B x;
            call = WebSession_move_request(ws, &x);
            WebSession_move_Params_set_path(x, p, strlen(p));
            WebSession_move_Params_set_destination(x, dest, strlen(dest));
            WebSession_move_Params_set_noOverwrite(x, no_overwrite);
            *ctx = WebSession_move_Params_init_context(x);
        }
    } else if (gw__method_is(req, "LOCK")) {
        WebSession_lock_Params_B x;
        call = WebSession_lock_request(ws, &x);
        WebSession_lock_Params_set_path(x, p, strlen(p));
        WebSession_lock_Params_set_xmlContent(x, body, blen);
        WebSession_lock_Params_set_shallow(x, shallow);
        *ctx = WebSession_lock_Params_init_context(x);
    } else if (gw__method_is(req, "UNLOCK")) {
        const h2o_iovec_t *token = gw__header(req, "lock-token");
        WebSession_unlock_Params_B x;
        call = WebSession_unlock_request(ws, &x);
        WebSession_unlock_Params_set_path(x, p, strlen(p));
        if (token)
            WebSession_unlock_Params_set_lockToken(x, token->base, token->len);
        *ctx = WebSession_unlock_Params_init_context(x);
    } else if (gw__method_is(req, "ACL")) {
        WebSession_acl_Params_B x;
        call = WebSession_acl_request(ws, &x);
        WebSession_acl_Params_set_path(x, p, strlen(p));
        WebSession_acl_Params_set_xmlContent(x, body, blen);
        *ctx = WebSession_acl_Params_init_context(x);
    }
    return call;
}

/* Opens (or reuses) the grain's WebSession for this origin. */
static cp_cap *web_session_for(gw_server *srv, gw_grain_session *s, gm_grain *g, h2o_req_t *req,
                               gr_error_t *err)
{
    /* A session the grain refused (newSession failed) is asked for again. */
    if (s->web_session && s->grain_generation == gm_grain_generation(g) &&
        !cp_cap_is_broken(s->web_session))
        return s->web_session;
    cp_cap_unref(s->web_session);
    s->web_session = NULL;
    UiView_newSession_Params_B p;
    cp_request *call = UiView_newSession_request(gm_grain_main_view(g), &p);
    UserInfo_B ui = UiView_newSession_Params_init_userInfo(p);
    LocalizedText_B name = UserInfo_init_displayName(ui);
    LocalizedText_set_defaultText(name, s->user_name, strlen(s->user_name));
    UserInfo_set_identityId(ui, s->identity_id, sizeof(s->identity_id));
    cp_list_builder perms = UserInfo_init_permissions(ui, OWNER_PERMISSION_BITS);
    for (uint32_t i = 0; i < OWNER_PERMISSION_BITS; i++)
        cp_list_set_bool(perms, i, true);
    UiView_newSession_Params_set_sessionType(p, WEB_SESSION_TYPE_ID);
    WebSession_Params_B wp = WebSession_Params_init(UiView_newSession_Params_ptr_sessionParams(p));
    const char *scheme = srv->cfg->base_https ? "https" : "http";
    _cleanup_free_ char *base = gr_asprintf("%s://%s%s", scheme, s->label, srv->cfg->wildcard_suffix);
    WebSession_Params_set_basePath(wp, base, strlen(base));
    const h2o_iovec_t *ua = gw__header(req, "user-agent");
    if (ua)
        WebSession_Params_set_userAgent(wp, ua->base, ua->len);
    UiView_newSession_Params_set_tabId(p, s->tab_id, sizeof(s->tab_id));
    cp_pending *pending = NULL;
    if (cp_request_send(call, on_new_session, NULL, &pending, err) < 0)
        return NULL;
    if (pending == NULL)
        return gr_make_error(err, 0, "the grain answered newSession without a session"), NULL;
    static const uint16_t session_field[] = {0}; /* results.session */
    s->web_session = cp_pending_pipeline(pending, session_field, 1);
    s->grain_generation = gm_grain_generation(g);
    return s->web_session;
}

static int call_grain(gw_server *srv, h2o_req_t *req, gw_grain_session *s)
{
    _cleanup_error_ gr_error_t err = NULL;
    gm_grain *g = NULL;
    if (srv->grains == NULL)
        return grain_error_page(srv, req, 503, "Service Unavailable",
                                "This server does not run grains.", "");
    if (gm_grain_acquire(srv->grains, s->grain_id, &g, &err) < 0) {
        if (gm_held_back(srv->grains, s->grain_id)) /* said once, at the crash */
            gr_debug("grain %s: %s", s->grain_id, gr_error_msg(err));
        else
            gr_warn("grain %s: %s", s->grain_id, gr_error_msg(err));
        return grain_error_page(srv, req, 503, "Service Unavailable", "The grain could not start.",
                                gr_error_msg(err));
    }
    cp_cap *ws = web_session_for(srv, s, g, req, &err);
    if (ws == NULL) {
        gm_grain_release(g);
        return grain_error_page(srv, req, 502, "Bad Gateway", "The grain could not open a session.",
                                gr_error_msg(err));
    }
    if (gw__is_websocket(req)) {
        const char *wpath = req->path.base + (req->path.len && req->path.base[0] == '/');
        size_t wlen = req->path.len - (req->path.len && req->path.base[0] == '/');
        _cleanup_free_ char *wp = gr_strndup(wpath, wlen);
        return gw__grain_websocket(srv, req, ws, g, wp, fill_context); /* takes the hold */
    }
    grain_call *gc = gr_stash_zalloc(&call_stash, sizeof(*gc));
    gc->srv = srv;
    gc->grain = g;
    gc->stream = gr_stash_zalloc(&stream_stash, sizeof(*gc->stream));
    gc->stream->base.vt = &stream_vt;
    gc->stream->srv = srv;
    gw__req_ref_init_pair(&gc->ref, &gc->stream->ref, req);
    gc->stream_cap = cp_server_cap(&gc->stream->base);

    /* The WebSession path: no leading slash, query kept. */
    const char *path = req->path.base;
    size_t plen = req->path.len;
    if (plen && path[0] == '/') {
        path++;
        plen--;
    }
    _cleanup_free_ char *p = NULL; /* path as a C string, for the WebDAV calls */
    cp_request *call = NULL;
    WebSession_Context_B ctx;
    const char *method = NULL;
    _cleanup_free_ char *mime = header_copy(req, "content-type");
    _cleanup_free_ char *encoding = header_copy(req, "content-encoding");
    if (gw__method_is(req, "GET") || gw__method_is(req, "HEAD")) {
        WebSession_get_Params_B gp;
        call = WebSession_get_request(ws, &gp);
        WebSession_get_Params_set_path(gp, path, plen);
        WebSession_get_Params_set_ignoreBody(gp, gw__method_is(req, "HEAD"));
        ctx = WebSession_get_Params_init_context(gp);
        gc->head = gw__method_is(req, "HEAD");
        gc->conditional_get = gw__header(req, "if-none-match") != NULL;
        method = "get";
    } else if (gw__method_is(req, "DELETE")) {
        WebSession_delete_Params_B dp;
        call = WebSession_delete_request(ws, &dp);
        WebSession_delete_Params_set_path(dp, path, plen);
        ctx = WebSession_delete_Params_init_context(dp);
        method = "delete";
    } else if (gw__method_is(req, "POST") || gw__method_is(req, "PATCH") ||
               gw__method_is(req, "PUT")) {
        if (req->entity.len > MAX_INLINE_BODY) {
            bool put = gw__method_is(req, "PUT");
            if (gw__method_is(req, "PATCH")) {
                grain_call_free(gc);
                return grain_error_page(srv, req, 413, "Payload Too Large",
                                        "A PATCH body must be at most 1 MiB.", "");
            }
            WebSession_postStreaming_Params_B sp;
            cp_request *open = put ? WebSession_putStreaming_request(ws, (WebSession_putStreaming_Params_B *)&sp)
                                   : WebSession_postStreaming_request(ws, &sp);
            WebSession_postStreaming_Params_set_path(sp, path, plen);
            set_text(sp.s, 1, mime ? mime : "application/octet-stream");
            set_text(sp.s, 2, encoding);
            /* postStreaming and putStreaming share a layout: path, mimeType,
             * context, encoding. */
            if (fill_context(srv, req, WebSession_postStreaming_Params_init_context(sp), gc->stream_cap,
                             &err) < 0) {
                cp_request_free(open);
                grain_call_free(gc);
                return grain_error_page(srv, req, 400, "Bad Request",
                                        "The request's headers are not valid.", gr_error_msg(err));
            }
            cp_pending *pending = NULL;
            if (cp_request_send(open, on_stream_call, NULL, &pending, &err) < 0 || pending == NULL) {
                grain_call_free(gc);
                return grain_error_page(srv, req, 502, "Bad Gateway",
                                        "The grain could not take the upload.", gr_error_msg(err));
            }
            static const uint16_t stream_field[] = {0}; /* results.stream */
            gc->upload = cp_pending_pipeline(pending, stream_field, 1);
            gc->upload_flow = cp_flow_new(UPLOAD_WINDOW, on_upload_ready, gc);
            WebSession_RequestStream_getResponse_Params_B gp;
            cp_request *get = WebSession_RequestStream_getResponse_request(gc->upload, &gp);
            if (send_call(gc, get, on_response, &err) < 0) {
                grain_call_free(gc);
                return grain_error_page(srv, req, 502, "Bad Gateway",
                                        "The grain could not take the upload.", gr_error_msg(err));
            }
            gr_debug("grain %s: %sStreaming /%.*s (%zu bytes)", s->grain_id, put ? "put" : "post",
                     (int)plen, path, req->entity.len);
            upload_pump(gc);
            return 0;
        }
        cp_struct_builder content;
        if (gw__method_is(req, "PUT")) {
            WebSession_put_Params_B pp;
            call = WebSession_put_request(ws, &pp);
            WebSession_put_Params_set_path(pp, path, plen);
            content = WebSession_put_Params_init_content(pp).s;
            ctx = WebSession_put_Params_init_context(pp);
            method = "put";
        } else if (gw__method_is(req, "PATCH")) {
            WebSession_patch_Params_B pp;
            call = WebSession_patch_request(ws, &pp);
            WebSession_patch_Params_set_path(pp, path, plen);
            content = WebSession_patch_Params_init_content(pp).s;
            ctx = WebSession_patch_Params_init_context(pp);
            method = "patch";
        } else {
            WebSession_post_Params_B pp;
            call = WebSession_post_request(ws, &pp);
            WebSession_post_Params_set_path(pp, path, plen);
            content = WebSession_post_Params_init_content(pp).s;
            ctx = WebSession_post_Params_init_context(pp);
            method = "post";
        }
        /* PostContent and PutContent share a layout: mimeType, content, encoding. */
        set_text(content, 0, mime ? mime : "application/octet-stream");
        cp_set_data(content, 1, req->entity.base ? req->entity.base : "", req->entity.len);
        set_text(content, 2, encoding);
    } else {
        const char *bad = NULL;
        bool options = false;
        p = gr_strndup(path, plen);
        call = dav_call(srv, req, ws, p, s->label, &ctx, &bad, &options);
        if (call == NULL) {
            grain_call_free(gc);
            if (bad)
                return grain_error_page(srv, req, 400, "Bad Request", bad, "");
            gw__add_header(req, H2O_TOKEN_ALLOW,
                           "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, PROPFIND, PROPPATCH, "
                           "MKCOL, COPY, MOVE, LOCK, UNLOCK, ACL, REPORT");
            return grain_error_page(srv, req, 405, "Method Not Allowed",
                                    "Apps are not given this method.", "");
        }
        method = options ? "options" : "webdav";
        if (options) {
            if (fill_context(srv, req, ctx, gc->stream_cap, &err) < 0) {
                cp_request_free(call);
                grain_call_free(gc);
                return grain_error_page(srv, req, 400, "Bad Request",
                                        "The request's headers are not valid.", gr_error_msg(err));
            }
            if (send_call(gc, call, on_options, &err) < 0) {
                grain_call_free(gc);
                return grain_error_page(srv, req, 502, "Bad Gateway",
                                        "The grain could not take the request.", gr_error_msg(err));
            }
            return 0;
        }
    }
    if (fill_context(srv, req, ctx, gc->stream_cap, &err) < 0) {
        cp_request_free(call);
        grain_call_free(gc);
        return grain_error_page(srv, req, 400, "Bad Request", "The request's headers are not valid.",
                                gr_error_msg(err));
    }
    gr_debug("grain %s: %s /%.*s", s->grain_id, method, (int)plen, path);
    if (send_call(gc, call, on_response, &err) < 0) {
        grain_call_free(gc);
        return grain_error_page(srv, req, 502, "Bad Gateway", "The grain could not take the request.",
                                gr_error_msg(err));
    }
    return 0;
}

/* Whether one Cookie header's value holds session s's origin cookie. */
static bool origin_cookie_in(gw_server *srv, const gw_grain_session *s, const h2o_iovec_t *value)
{
    const char *name = grain_cookie(srv);
    size_t name_len = strlen(name);
    _Static_assert(AU_TOKEN_HEX - 1 == crypto_verify_64_BYTES, "a session secret is 64 hex digits");
    const char *p = value->base;
    const char *end = gw__cookie_end(value->base, value->len);
    gw_cookie c;
    while (gw__cookie_next(&p, end, &c))
        if (h2o_memis(c.name, c.name_len, name, name_len) && c.value_len == AU_TOKEN_HEX - 1 &&
            crypto_verify_64((const unsigned char *)c.value, (const unsigned char *)s->secret) == 0)
            return true;
    return false;
}

bool gw__grain_cookie_ok(gw_server *srv, const char *label, const h2o_iovec_t *cookies, size_t n)
{
    gw_grain_session *s = find_session(srv, label);
    for (size_t i = 0; s && i < n; i++)
        if (origin_cookie_in(srv, s, &cookies[i]))
            return true;
    return false;
}

int gw__route_grain(gw_server *srv, h2o_req_t *req, const char *label)
{
    gw_grain_session *s = find_session(srv, label);
    if (s == NULL)
        return gw__send_error_page(srv, req, 404, "Not Found",
                                   "No grain session is open at this address. Open the grain "
                                   "again from the shell.",
                                   label, strlen(label));
    if (h2o_memis(req->path_normalized.base, req->path_normalized.len,
                  H2O_STRLIT("/_granary/init")))
        return serve_init(srv, req, s);
    /* Another origin's page may not drive this grain. */
    const h2o_iovec_t *origin = gw__header(req, "origin");
    if (origin) {
        const char *scheme = srv->cfg->base_https ? "https" : "http";
        _cleanup_free_ char *own = gr_asprintf("%s://%s%s", scheme, s->label, srv->cfg->wildcard_suffix);
        if (!h2o_memis(origin->base, origin->len, own, strlen(own)))
            return grain_error_page(srv, req, 403, "Forbidden",
                                    "Requests to a grain from another site are refused.", "");
    }
    bool ok = false;
    for (ssize_t i = -1; !ok && (i = h2o_find_header(&req->headers, H2O_TOKEN_COOKIE, i)) != -1;)
        ok = origin_cookie_in(srv, s, &req->headers.entries[i].value);
    if (!ok)
        return grain_error_page(srv, req, 403, "Forbidden",
                                "This grain session belongs to another browser.",
                                "Open the grain from the shell.");
    s->last_used_ns = gw__loop_ns(srv); /* only its own browser keeps it open */
    return call_grain(srv, req, s);
}
