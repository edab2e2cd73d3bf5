/* What granary-http-bridge's files share: main.c (the app process, the
 * config, the MainView bootstrap on fd 3), session.c (WebSession calls
 * turned into HTTP on loopback, the app connections, WebSockets) and api.c
 * (the app's API socket). */
#ifndef GRANARY_BRIDGE_INTERNAL_H
#define GRANARY_BRIDGE_INTERNAL_H

#include <uv.h>

#include "bridge.h"
#include "capnp.h"

/* Everything a WebSession needs to make its requests; the strings are owned
 * (freed by br__session_params_release). */
typedef struct br__session_params {
    br_session_info info;  /* the X-Sandstorm-* fields */
    char *user_agent;      /* WebSession.Params.userAgent, or NULL */
    char *accept_language; /* acceptableLanguages joined with ",", or NULL */
    cp_cap *context;       /* the SessionContext newSession gave, or NULL */
} br__session_params;

void br__session_params_release(br__session_params *p);

/* Starts watching for the app on 127.0.0.1:port (every 10 ms); calls made
 * before it listens wait, and fail once listen_timeout_ms has passed. */
void br__app_init(uv_loop_t *loop, int port, uint64_t listen_timeout_ms);

/* A new WebSession serving p (taken) as a capability (a new reference). */
cp_cap *br__websession_new(br__session_params *p);

/* Whether a session with X-Sandstorm-Session-Id `id` (len bytes, compared
 * whole) is open; if so *context is a new reference to its context (NULL
 * when the platform gave none). */
bool br__session_context(const char *id, size_t len, cp_cap **context);

/* The platform's bootstrap capability, SandstormApi (a new reference). */
cp_cap *br__platform_api(void);

/* Serves SandstormHttpBridge on a Unix socket at path (an old socket there
 * is replaced). Returns 0, or -1 with err. */
int br__api_listen(uv_loop_t *loop, const char *path, gr_error_t *err);

#endif
