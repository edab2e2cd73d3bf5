/* The app-facing API (docs/bridge.md, "The app's API socket"): a Unix
 * socket, /tmp/sandstorm-api in a grain, on which the bridge serves
 * SandstormHttpBridge to the app. getSandstormApi hands on the platform's
 * SandstormApi (calls on it go to the platform through the bridge's fd 3);
 * getSessionContext the context the platform gave a session. The other
 * methods need identities and the powerbox, which the platform does not
 * offer yet: they fail with "unimplemented" and say so. */
#include "bridge_internal.h"

#include <errno.h>
#include <unistd.h>

#include "sandstorm-http-bridge.capnp.h"
#include "util.h"

#define MAX_API_CONNS 64

static struct {
    uv_loop_t *loop;
    uv_pipe_t listener;
    unsigned conns;
} api;

static void get_sandstorm_api(cp_server *self, cp_call *call,
                              SandstormHttpBridge_getSandstormApi_Params_R params)
{
    SandstormHttpBridge_getSandstormApi_Results_set_api(
        SandstormHttpBridge_getSandstormApi_results(call), br__platform_api());
    cp_call_return(call);
}

static void get_session_context(cp_server *self, cp_call *call,
                                SandstormHttpBridge_getSessionContext_Params_R params)
{
    cp_text id = SandstormHttpBridge_getSessionContext_Params_get_id(params);
    cp_cap *ctx = NULL;
    if (!br__session_context(id.str, id.len, &ctx)) {
        cp_call_fail(call, CP_EXC_FAILED, "no session has the id \"%.40s\"", id.str);
        return;
    }
    if (ctx == NULL) {
        cp_call_fail(call, CP_EXC_FAILED, "the platform gave session %s no context", id.str);
        return;
    }
    SandstormHttpBridge_getSessionContext_Results_set_context(
        SandstormHttpBridge_getSessionContext_results(call), ctx);
    cp_call_return(call);
}

static const SandstormHttpBridge_methods bridge_methods = {
    .getSandstormApi = get_sandstorm_api,
    .getSessionContext = get_session_context,
};

static void bridge_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    /* The methods after getSessionContext, by ordinal. */
    static const char *const unoffered[] = {"getSavedIdentity", "saveIdentity",
                                            "getSessionRequest", "getSessionOffer"};
    uint16_t first = SandstormHttpBridge_getSavedIdentity_METHOD_ID;
    if (iface == SandstormHttpBridge_TYPE_ID && method >= first &&
        method - first < (int)(sizeof(unoffered) / sizeof(unoffered[0])))
        cp_call_fail(call, CP_EXC_UNIMPLEMENTED,
                     "SandstormHttpBridge.%s is not offered by Granary yet",
                     unoffered[method - first]);
    else if (!SandstormHttpBridge_dispatch(&bridge_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void bridge_destroy(cp_server *self)
{
    free(self);
}

static const cp_server_vtable bridge_vt = {"SandstormHttpBridge", bridge_dispatch, bridge_destroy};

static void api_conn_gone(cp_rpc_conn *conn, const char *reason, void *ud)
{
    gr_debug("api socket: a connection ended (%s)", reason);
    api.conns--;
    cp_rpc_conn_free(conn);
}

static void on_api_connection(uv_stream_t *listener, int status)
{
    if (status < 0) {
        gr_warn("api socket: %s", uv_strerror(status));
        return;
    }
    uv_pipe_t *client = gr_calloc(1, sizeof(*client));
    uv_pipe_init(api.loop, client, 0);
    if (uv_accept(listener, (uv_stream_t *)client) != 0) {
        uv_close((uv_handle_t *)client, (uv_close_cb)free);
        return;
    }
    if (api.conns >= MAX_API_CONNS) {
        gr_warn("api socket: more than %d connections at once; closing the newest",
                MAX_API_CONNS);
        uv_close((uv_handle_t *)client, (uv_close_cb)free);
        return;
    }
    cp_server *srv = gr_calloc(1, sizeof(*srv));
    srv->vt = &bridge_vt;
    cp_cap *boot = cp_server_cap(srv);
    cp_rpc_conn *conn;
    _cleanup_error_ gr_error_t err = NULL;
    int r = cp_rpc_conn_adopt((uv_stream_t *)client, boot, NULL, &conn, &err);
    cp_cap_unref(boot);
    if (r < 0) {
        gr_warn("api socket: %s", gr_error_msg(err));
        return;
    }
    api.conns++;
    cp_rpc_conn_on_disconnect(conn, api_conn_gone, NULL);
}

int br__api_listen(uv_loop_t *loop, const char *path, gr_error_t *err)
{
    api.loop = loop;
    if (unlink(path) < 0 && errno != ENOENT)
        return gr_make_error(err, errno, "api socket %s: removing the old one", path);
    uv_pipe_init(loop, &api.listener, 0);
    int r = uv_pipe_bind(&api.listener, path);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&api.listener, 16, on_api_connection);
    if (r < 0) {
        uv_close((uv_handle_t *)&api.listener, NULL);
        return gr_make_error(err, -r, "api socket %s", path);
    }
    gr_debug("api socket: listening on %s", path);
    return 0;
}
