/* What the gateway's files share: the server's state and the response
 * helpers. Not for other parts of the tree. */
#ifndef GRANARY_GATEWAY_INTERNAL_H
#define GRANARY_GATEWAY_INTERNAL_H

#include "gateway.h"

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
};

/* Response helpers (http.c). Each sends a complete response and returns 0,
 * so a handler can end with `return gw__send_json(...)`. */
void gw__add_header(h2o_req_t *req, const h2o_token_t *token, const char *value);
void gw__add_header_str(h2o_req_t *req, const char *name, const char *value);
void gw__add_common_headers(h2o_req_t *req);
int gw__send_body(h2o_req_t *req, int status, const char *reason, const char *type,
                  const char *body, size_t len);
/* Takes ownership of obj. */
int gw__send_json(h2o_req_t *req, int status, const char *reason, json_t *obj);
int gw__send_json_error(h2o_req_t *req, int status, const char *reason, const char *message);
void gw__html_escape(gr_buf *b, const char *s, size_t len);
int gw__send_error_page(gw_server *srv, h2o_req_t *req, int status, const char *reason,
                        const char *title, const char *detail, size_t detail_len);
bool gw__method_is(h2o_req_t *req, const char *m);

/* The JSON API of the shell under /api/ (api.c), and its accounts part
 * (api_auth.c), which returns -1 when the path is not one of its own. */
int gw__route_api(gw_server *srv, h2o_req_t *req, const char *path, size_t len);
int gw__route_auth(gw_server *srv, h2o_req_t *req, const char *path, size_t len);
/* Prepares the accounts API (libsodium, the timing-equaliser hash). */
int gw__auth_init(gr_error_t *err);

/* Finds the value of a request header (name in lowercase), or NULL. */
const h2o_iovec_t *gw__header(h2o_req_t *req, const char *name);

/* Work that must not block the loop (argon2id): run() on a libuv pool thread,
 * then done() on the loop thread, but only if the request is still alive (a
 * client that hung up leaves nothing to answer). run() must touch only
 * job->data, never the request. free_data releases data in every case. */
typedef struct gw_job gw_job;
struct gw_job {
    uv_work_t work;
    gw_server *srv;
    h2o_req_t *req; /* NULL once the request is gone */
    struct gw_job_guard *guard;
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
