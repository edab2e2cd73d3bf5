/* The gateway: Granary's HTTP front door, h2o on the daemon's libuv loop. It
 * maps each request's Host header to the shell (the base host: the JSON API
 * under /api/ and the built web shell), to a grain origin under the wildcard
 * host, or to a clear 404 page for any other host. */
#ifndef GRANARY_GATEWAY_H
#define GRANARY_GATEWAY_H

#include <uv.h>

#include "config.h"
#include "grains.h"
#include "store.h"
#include "util.h"

typedef struct gw_server gw_server;

/* Binds the configured address and starts serving on loop. The server keeps
 * pointers to c and st, which must outlive it. Returns 0 and sets *out, or -1
 * with err (for example when the address is in use). */
int gw_server_start(gw_server **out, uv_loop_t *loop, const cfg *c, st_store *st,
                    gr_error_t *err);

/* Lets the server start grains for grain origins (m must outlive it). */
void gw_server_set_grains(gw_server *srv, gm_manager *m);

/* The port actually bound (differs from the configured one when that was 0). */
int gw_server_port(const gw_server *srv);

/* Stops accepting connections and asks open ones to close once their
 * requests are done. Requests in flight may still finish while the loop runs. */
void gw_server_stop(gw_server *srv);

/* How many client connections are open; the daemon waits for zero (with a
 * deadline) before it exits. */
size_t gw_server_open_connections(const gw_server *srv);

/* Ends the read side of every open connection, so idle keep-alive
 * connections close; a response being sent is finished first by h2o. */
void gw_server_end_reads(gw_server *srv);

/* Frees the server after the loop has stopped; when connections are still
 * open, h2o's state is left for the process's exit. Safe on NULL. */
void gw_server_free(gw_server *srv);

/* Classifies a Host header (any case) for a configuration: the shell, a host
 * under the wildcard (with *label set to the first label, e.g. "ui-1a2b"),
 * or unknown. Exposed for tests. */
typedef enum { GW_HOST_UNKNOWN, GW_HOST_SHELL, GW_HOST_WILDCARD } gw_host_kind;
gw_host_kind gw_classify_host(const cfg *c, const char *host, size_t len, char *label,
                              size_t label_size);

#endif
