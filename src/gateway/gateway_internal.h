/* What the gateway's files share: the server's state and the response
 * helpers. Not for other parts of the tree. */
#ifndef GRANARY_GATEWAY_INTERNAL_H
#define GRANARY_GATEWAY_INTERNAL_H

#include "gateway.h"
#include "grains.h"

#include <h2o.h>
#include <jansson.h>

typedef struct gw_conn gw_conn;

struct gw_server {
    uv_loop_t *loop;
    const cfg *cfg;
    st_store *store;
    h2o_globalconf_t globalconf;
    h2o_context_t ctx;
    h2o_accept_ctx_t accept_ctx;
    h2o_mimemap_t *mimemap;
    uv_tcp_t listener;
    bool listening;
    size_t open_connections;
    gw_conn *conns;
    bool h2o_ready; /* context and configuration initialised */
    int port;
    uint64_t started_ns;
    char *csp_shell; /* the shell's Content-Security-Policy */
    char *csp_grain; /* every grain origin's */
    gm_manager *grains; /* NULL when this server runs no grains */
    struct gw_grain_session *grain_sessions;
    gr_index sessions_by_label; /* the same sessions, found by their origin's label */
    uv_timer_t sweep_timer;
    bool sweep_started;
    uv_timer_t reading_clock; /* gateway.c: requests that come too slowly */
    bool clock_started;
    h2o_socket_cb h2o_reader;  /* h2o's read callback while it reads a request */
    size_t stalled_uploads;
    size_t unwelcome_bodies;
    gr_index peers; /* gateway.c: open connections by address */
    char *body_dir; /* where h2o holds request bodies past 1 MiB */
    size_t refusals;        /* connections closed for want of room */
    size_t max_connections; /* three quarters of the descriptors */
    bool disk_short;        /* under the disk's reserve at the last look */
    gr_link *open_calls;         /* grain_host.c: calls awaiting the grain's answer */
    gr_link *opening_websockets; /* websocket.c: upgrades awaiting openWebSocket's */
    gr_link *open_streams;       /* grain_host.c: streamed responses being sent */
    struct gw_grain_size *grain_sizes; /* api_grains.c: disk use, as last counted */
    gr_index sizes_by_id;
};

/* The loop's time in ns (when a session was last used, when a call left):
 * libuv reads it once an iteration, rather than a clock read per request. */
static inline uint64_t gw__loop_ns(gw_server *srv)
{
    return uv_now(srv->loop) * 1000000u;
}

/* Response helpers (http.c). Each sends a complete response and returns 0,
 * so a handler can end with `return gw__send_json(...)`. */
void gw__add_header(h2o_req_t *req, const h2o_token_t *token, const char *value);
void gw__add_header_str(h2o_req_t *req, const char *name, const char *value);
/* Adds a header whose name and value outlive the request (literals, the
 * server's own strings): nothing is copied. */
void gw__add_header_lasting(h2o_req_t *req, const char *name, const char *value);
void gw__add_common_headers(h2o_req_t *req);
int gw__send_body(h2o_req_t *req, int status, const char *reason, const char *type,
                  const char *body, size_t len);
/* Takes ownership of obj. */
int gw__send_json(h2o_req_t *req, int status, const char *reason, json_t *obj);
int gw__send_json_error(h2o_req_t *req, int status, const char *reason, const char *message);
void gw__html_escape(gr_buf *b, const char *s, size_t len);
int gw__send_error_page(gw_server *srv, h2o_req_t *req, int status, const char *reason,
                        const char *title, const char *detail, size_t detail_len);
/* Whether the request's method is m. Inline, so that the length of a
 * literal m is known when compiled rather than counted per request. */
static inline bool gw__method_is(h2o_req_t *req, const char *m)
{
    return h2o_memis(req->method.base, req->method.len, m, strlen(m));
}

/* The JSON API of the shell under /api/ (api.c), and its accounts part
 * (api_auth.c), which returns -1 when the path is not one of its own. */
int gw__route_api(gw_server *srv, h2o_req_t *req, const char *path, size_t len);
int gw__route_auth(gw_server *srv, h2o_req_t *req, const char *path, size_t len);
/* Sessions of the shell (api_auth.c). */
typedef struct gw_session {
    st_account account;
    char *csrf;
    char token_hash[65];
} gw_session;

void gw__session_release(gw_session *s);
/* The logged-in user of a request: 1 with *s filled, 0 when none, -1 with err. */
int gw__session_find(gw_server *srv, h2o_req_t *req, gw_session *s, gr_error_t *err);
/* The same from the values of a request's Cookie headers (n of them). */
#define GW_MAX_COOKIE_HEADERS 32
int gw__session_find_in(gw_server *srv, const h2o_iovec_t *cookies, size_t n, gw_session *s,
                        gr_error_t *err);
/* Whether Cookie header values hold the origin cookie of the grain session
 * at label (grain_host.c). */
bool gw__grain_cookie_ok(gw_server *srv, const char *label, const h2o_iovec_t *cookies, size_t n);
/* Checks a state-changing call: POST, same origin, the CSRF header (the
 * session's token when s is given), the body's content type. Returns 0, or
 * -1 having answered. */
int gw__check_post(gw_server *srv, h2o_req_t *req, const gw_session *s, const char *content_type);
/* For any call of a logged-in user: 1 with *s filled, or 0 having answered
 * (401, or 500 when the store fails). */
int gw__session_login(gw_server *srv, h2o_req_t *req, gw_session *s);
/* For a logged-in user's POST with a JSON body: 1 with *s filled, or 0
 * having answered (401, or a refused POST). */
int gw__session_require(gw_server *srv, h2o_req_t *req, gw_session *s);
/* The same, and the parsed body (the caller decrefs it and releases s), or
 * NULL having answered. */
json_t *gw__session_body(gw_server *srv, h2o_req_t *req, gw_session *s);
/* The body as a JSON object, or NULL having answered 400. */
json_t *gw__parse_body(h2o_req_t *req);
/* Logs a store error and answers 500. Returns 0. */
int gw__store_failure(h2o_req_t *req, gr_error_t *err);

/* Prepares the accounts API (libsodium, the timing-equaliser hash). */
int gw__auth_init(gr_error_t *err);

/* Finds the value of a request header (name in lowercase), or NULL; inline
 * for the same reason as gw__method_is. */
static inline const h2o_iovec_t *gw__header(h2o_req_t *req, const char *name)
{
    ssize_t i = h2o_find_header_by_str(&req->headers, name, strlen(name), -1);
    return i < 0 ? NULL : &req->headers.entries[i].value;
}

/* A pointer to a request that becomes NULL when h2o frees the request (the
 * client went away), for work that answers later. Clear it before freeing
 * the struct that holds it. */
typedef struct gw_req_ref {
    h2o_req_t *req;
    struct gw_req_guard *guard;
} gw_req_ref;

void gw__req_ref_init(gw_req_ref *ref, h2o_req_t *req);
/* Two references to one request, for the price of one guard. */
void gw__req_ref_init_pair(gw_req_ref *a, gw_req_ref *b, h2o_req_t *req);
void gw__req_ref_clear(gw_req_ref *ref);

/* Grain origins (grain_host.c). gw__grain_session_new opens a grain for a
 * user at a fresh origin and returns the one-time URL that enters it. */
typedef struct gw_grain_session gw_grain_session;
char *gw__grain_session_new(gw_server *srv, const char *grain_id, const char *account_id,
                            const char *user_name, const char *path);
int gw__route_grain(gw_server *srv, h2o_req_t *req, const char *label);
void gw__grain_sessions_sweep(gw_server *srv, uint64_t idle_ns);
/* Answers 504 to each request whose grain has not answered its call for
 * deadline_ns, and cancels the call; cuts each streamed response that went
 * that long without a write. */
void gw__grain_calls_sweep(gw_server *srv, uint64_t deadline_ns);
void gw__grain_sessions_drop_grain(gw_server *srv, const char *grain_id);
/* An open view's keep-alive: its user's sessions of the grain stay open. */
void gw__grain_sessions_touch(gw_server *srv, const char *grain_id, const char *account_id);
void gw__grain_sessions_free(gw_server *srv);
/* Frees the counts of grains' disk use (api_grains.c). */
void gw__grain_sizes_free(gw_server *srv);

/* WebSockets to grains (websocket.c). gw__grain_websocket takes the grain
 * hold g; fill writes the WebSession.Context of the request. */
bool gw__is_websocket(h2o_req_t *req);
/* Answers 504 to each upgrade whose grain has not answered openWebSocket
 * for deadline_ns, and cancels the call (gw__grain_calls_sweep runs it). */
void gw__websocket_opens_sweep(gw_server *srv, uint64_t deadline_ns);
struct WebSession_Context_B;
int gw__grain_websocket(gw_server *srv, h2o_req_t *req, cp_cap *web_session, gm_grain *g,
                        const char *path,
                        int (*fill)(gw_server *, h2o_req_t *, struct WebSession_Context_B,
                                    cp_cap *, gr_error_t *));

/* The apps and grains part of the shell API (api_grains.c); -1 when the
 * path is not one of its own. */
int gw__route_grains_api(gw_server *srv, h2o_req_t *req, const char *path, size_t len);

/* Work that must not block the loop (argon2id): run() on a libuv pool thread,
 * then done() on the loop thread, but only if the request is still alive (a
 * client that hung up leaves nothing to answer). run() must touch only
 * job->data, never the request. free_data releases data in every case. */
typedef struct gw_job gw_job;
struct gw_job {
    uv_work_t work;
    gw_server *srv;
    gw_req_ref ref; /* ref.req is NULL once the request is gone */
    void (*run)(gw_job *job);
    int (*done)(gw_job *job, h2o_req_t *req);
    void *data;
    void (*free_data)(void *data);
};

/* Queues a job (takes ownership of data). Returns 0; the handler returns 0
 * and the response is sent by done(). */
int gw__defer(gw_server *srv, h2o_req_t *req, void (*run)(gw_job *), int (*done)(gw_job *, h2o_req_t *),
              void *data, void (*free_data)(void *));

#endif
