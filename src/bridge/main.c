/* granary-http-bridge: the first process of an HTTP app's grain
 * (docs/bridge.md). It starts the app, waits for it to listen on
 * 127.0.0.1:PORT, and serves MainView on fd 3 (Cap'n Proto, the platform on
 * the other end): getViewInfo from /sandstorm-http-bridge-config, and
 * newSession → a WebSession that session.c turns into HTTP. It exits when
 * the app exits, with its status, and kills the app when fd 3 closes. */
#include "bridge_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <signal.h>
#include <sys/stat.h>

#include "grain.capnp.h"
#include "identity.capnp.h"
#include "package.capnp.h"
#include "util.capnp.h"
#include "web-session.capnp.h"
#include "util.h"

#define CONFIG_PATH "/sandstorm-http-bridge-config"
#define API_SOCKET_PATH "/tmp/sandstorm-api"

static struct {
    uv_loop_t *loop;
    uv_process_t proc;
    bool app_running;
    cp_rpc_conn *conn;
    cp_message config;
    bool have_config;
    char **perm_names;
    uint32_t nperms;
    uint64_t sessions;
    cp_cap *platform_api;
} g;

/* ---- the config ------------------------------------------------------------- */

static int load_config(const char *path, gr_error_t *err)
{
    struct stat st;
    cp_message_init(&g.config, 0);
    if (stat(path, &st) < 0 && errno == ENOENT) {
        gr_debug("no %s: an empty view", path);
        return 0;
    }
    _cleanup_free_ char *data = NULL;
    size_t len;
    if (gr_read_file(path, 16 << 20, &data, &len, err) < 0)
        return -1;
    cp_message_release(&g.config);
    if (cp_message_read(&g.config, data, len, NULL, err) < 0)
        return gr_error_prefix(err, "config %s", path);
    g.have_config = true;
    UiView_ViewInfo_R vi = BridgeConfig_get_viewInfo(BridgeConfig_root(&g.config));
    PermissionDef_LR perms = UiView_ViewInfo_get_permissions(vi);
    g.nperms = PermissionDef_list_len(perms);
    g.perm_names = gr_calloc(g.nperms + 1, sizeof(char *));
    for (uint32_t i = 0; i < g.nperms; i++)
        g.perm_names[i] = gr_strdup(PermissionDef_get_name(PermissionDef_list_get(perms, i)).str);
    if (cp_message_check(&g.config, err) < 0)
        return gr_error_prefix(err, "config %s", path);
    return 0;
}

/* ---- MainView ------------------------------------------------------------------ */

static void mv_get_view_info(cp_server *self, cp_call *call, UiView_getViewInfo_Params_R params)
{
    UiView_ViewInfo_B out = UiView_getViewInfo_results(call);
    if (g.have_config) {
        UiView_ViewInfo_R vi = BridgeConfig_get_viewInfo(BridgeConfig_root(&g.config));
        for (uint16_t i = 0; i < UiView_ViewInfo_PTR_WORDS; i++)
            cp_ptr_set_copy(cp_builder_ptr(out.s, i), cp_get_ptr(vi.s, i));
    }
    cp_call_return(call);
}

static char *hex_of(cp_data d, size_t max)
{
    size_t n = d.len < max ? d.len : max;
    char *out = gr_malloc(2 * n + 1);
    gr_hex(d.ptr, n, out);
    return out;
}

static char *text_or_null(cp_text t)
{
    return t.len ? gr_strdup(t.str) : NULL;
}

/* The session's headers from newSession's arguments (facts §16). */
static int session_params(UserInfo_R user, uint64_t type, cp_ptr_reader params, cp_data tab,
                          cp_cap *context, const char *session_type, br__session_params *out,
                          gr_error_t *err)
{
    if (type != WebSession_TYPE_ID) {
        cp_cap_unref(context);
        return gr_make_error(err, 0,
                             "session type 0x%016llx is not served by this bridge (only WebSession "
                             "0x%016llx)",
                             (unsigned long long)type, (unsigned long long)WebSession_TYPE_ID);
    }
    memset(out, 0, sizeof(*out));
    out->context = context;
    br_session_info *i = &out->info;
    i->tab_id = hex_of(tab, tab.len);
    i->session_type = gr_strdup(session_type);
    i->session_id = gr_asprintf("%llu", (unsigned long long)++g.sessions);

    cp_text name = LocalizedText_get_defaultText(UserInfo_get_displayName(user));
    i->username = text_or_null(name);
    cp_data id = UserInfo_get_identityId(user);
    if (id.len) {
        i->user_id = hex_of(id, 16);
        i->preferred_handle = text_or_null(UserInfo_get_preferredHandle(user));
        i->picture = text_or_null(UserInfo_get_pictureUrl(user));
        static const char *const pronouns[] = {NULL, "male", "female", "robot"};
        unsigned p = (unsigned)UserInfo_get_pronouns(user);
        if (p < 4 && pronouns[p])
            i->pronouns = gr_strdup(pronouns[p]);
    }
    cp_list_reader held = UserInfo_get_permissions(user);
    gr_buf perms = GR_BUF_INIT;
    gr_buf_puts(&perms, "");
    for (uint32_t k = 0; k < held.len && k < g.nperms; k++)
        if (cp_list_get_bool(held, k))
            gr_buf_printf(&perms, "%s%s", perms.len ? "," : "", g.perm_names[k]);
    i->permissions = gr_buf_steal(&perms);

    WebSession_Params_R wp = WebSession_Params_read(params);
    i->base_path = text_or_null(WebSession_Params_get_basePath(wp));
    out->user_agent = text_or_null(WebSession_Params_get_userAgent(wp));
    cp_list_reader langs = WebSession_Params_get_acceptableLanguages(wp);
    if (langs.len) {
        gr_buf l = GR_BUF_INIT;
        for (uint32_t k = 0; k < langs.len; k++)
            gr_buf_printf(&l, "%s%s", k ? "," : "", cp_list_get_text(langs, k).str);
        out->accept_language = gr_buf_steal(&l);
    }
    /* Refuse what would split a request now, rather than on every call. */
    const char *check[] = {i->username,  i->preferred_handle, i->picture,
                           i->base_path, out->user_agent,     out->accept_language};
    for (size_t k = 0; k < sizeof(check) / sizeof(check[0]); k++)
        if (check[k] && strpbrk(check[k], "\r\n")) {
            br__session_params_release(out);
            return gr_make_error(err, 0, "newSession: a user or session field holds a line break");
        }
    return 0;
}

static void answer_session(cp_call *call, int r, br__session_params *p, gr_error_t *err)
{
    if (r < 0) {
        cp_call_fail(call, CP_EXC_FAILED, "%s", gr_error_msg(*err));
        return;
    }
    UiView_newSession_Results_set_session(UiView_newSession_results(call), br__websession_new(p));
    cp_call_return(call);
}

static void mv_new_session(cp_server *self, cp_call *call, UiView_newSession_Params_R params)
{
    _cleanup_error_ gr_error_t err = NULL;
    br__session_params p;
    int r = session_params(UiView_newSession_Params_get_userInfo(params),
                           UiView_newSession_Params_get_sessionType(params),
                           UiView_newSession_Params_get_sessionParams(params),
                           UiView_newSession_Params_get_tabId(params),
                           UiView_newSession_Params_get_context(params), "normal", &p, &err);
    answer_session(call, r, &p, &err);
}

static void mv_new_request_session(cp_server *self, cp_call *call,
                                   UiView_newRequestSession_Params_R params)
{
    _cleanup_error_ gr_error_t err = NULL;
    br__session_params p;
    int r = session_params(UiView_newRequestSession_Params_get_userInfo(params),
                           UiView_newRequestSession_Params_get_sessionType(params),
                           UiView_newRequestSession_Params_get_sessionParams(params),
                           UiView_newRequestSession_Params_get_tabId(params),
                           UiView_newRequestSession_Params_get_context(params), "request", &p, &err);
    answer_session(call, r, &p, &err);
}

static void mv_new_offer_session(cp_server *self, cp_call *call,
                                 UiView_newOfferSession_Params_R params)
{
    _cleanup_error_ gr_error_t err = NULL;
    br__session_params p;
    int r = session_params(UiView_newOfferSession_Params_get_userInfo(params),
                           UiView_newOfferSession_Params_get_sessionType(params),
                           UiView_newOfferSession_Params_get_sessionParams(params),
                           UiView_newOfferSession_Params_get_tabId(params),
                           UiView_newOfferSession_Params_get_context(params), "offer", &p, &err);
    answer_session(call, r, &p, &err);
}

static void mv_restore(cp_server *self, cp_call *call, MainView_restore_Params_R params)
{
    cp_call_fail(call, CP_EXC_FAILED, "this app hosts no persistent objects");
}

static void mv_drop(cp_server *self, cp_call *call, MainView_drop_Params_R params)
{
    cp_call_return(call); /* idempotent: nothing to drop */
}

static const UiView_methods uiview_methods = {
    .getViewInfo = mv_get_view_info,
    .newSession = mv_new_session,
    .newRequestSession = mv_new_request_session,
    .newOfferSession = mv_new_offer_session,
};
static const MainView_methods mainview_methods = {.restore = mv_restore, .drop = mv_drop};

static void mv_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!MainView_dispatch(&mainview_methods, self, call, iface, method) &&
        !UiView_dispatch(&uiview_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void mv_destroy(cp_server *self)
{
    free(self);
}

static const cp_server_vtable mainview_vt = {"MainView", mv_dispatch, mv_destroy};

cp_cap *br__platform_api(void)
{
    if (g.platform_api == NULL) {
        if (g.conn == NULL)
            return cp_cap_broken(CP_EXC_DISCONNECTED, "the bridge has no connection to the platform");
        g.platform_api = cp_rpc_conn_bootstrap(g.conn);
    }
    return cp_cap_ref(g.platform_api);
}

/* ---- the app process -------------------------------------------------------------- */

static void app_exited(uv_process_t *p, int64_t status, int sig)
{
    g.app_running = false;
    int code = sig ? 128 + sig : (int)status;
    if (sig)
        gr_warn("the app was killed by signal %d", sig);
    else
        gr_info("the app exited with status %d", (int)status);
    cp_rpc_conn_free(g.conn);
    g.conn = NULL;
    exit(code);
}

static void platform_gone(cp_rpc_conn *conn, const char *reason, void *ud)
{
    gr_info("fd 3 closed (%s): stopping the app", reason);
    if (g.app_running)
        uv_process_kill(&g.proc, SIGKILL);
}

static uint64_t env_ms(const char *name, uint64_t def)
{
    const char *v = getenv(name);
    long ms;
    _cleanup_error_ gr_error_t err = NULL;
    if (v == NULL || *v == '\0')
        return def;
    if (gr_parse_long(v, 1, 24L * 3600 * 1000, &ms, &err) < 0)
        gr_die("%s: %s", name, gr_error_msg(err));
    return (uint64_t)ms;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        printf("Usage: granary-http-bridge PORT -- COMMAND [ARGS...]\n\n"
               "Runs COMMAND, an HTTP server on 127.0.0.1:PORT, and serves it to Granary\n"
               "as WebSession over Cap'n Proto on fd 3.\n\n"
               "Environment: GRANARY_BRIDGE_CONFIG (default " CONFIG_PATH "),\n"
               "GRANARY_BRIDGE_API_SOCKET (default " API_SOCKET_PATH ", the app's API),\n"
               "GRANARY_BRIDGE_LISTEN_TIMEOUT_MS (default 30000).\n");
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("granary-http-bridge %s\n", GRANARY_VERSION);
        return 0;
    }
    if (argc < 4 || strcmp(argv[2], "--") != 0) {
        fprintf(stderr, "granary-http-bridge: usage: granary-http-bridge PORT -- COMMAND...\n");
        return 2;
    }
    long port;
    _cleanup_error_ gr_error_t err = NULL;
    if (gr_parse_long(argv[1], 1, 65535, &port, &err) < 0) {
        fprintf(stderr, "granary-http-bridge: PORT: %s\n", gr_error_msg(err));
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    /* Each request frees and takes back the same few buffers: without a
     * fixed threshold glibc gives the top of the heap back and asks for it
     * again (brk and page faults) every few requests. */
    mallopt(M_TRIM_THRESHOLD, 512 * 1024);
    mallopt(M_MMAP_THRESHOLD, 512 * 1024);
    const char *level = getenv("GRANARY_LOG_LEVEL");
    gr_log_level lv;
    if (level && gr_log_parse_level(level, &lv) == 0)
        gr_log_set_level(lv);

    int fl = fcntl(3, F_GETFD);
    if (fl < 0)
        gr_die("fd 3 is not open: the bridge talks to the platform over it");
    fcntl(3, F_SETFD, fl | FD_CLOEXEC); /* the app must not inherit it */

    const char *config = getenv("GRANARY_BRIDGE_CONFIG");
    if (load_config(config && *config ? config : CONFIG_PATH, &err) < 0)
        gr_die("%s", gr_error_msg(err));

    g.loop = uv_default_loop();
    /* The app's API socket exists before the app starts. Without it the app
     * still runs: only its calls to the platform are lost. */
    const char *api_path = getenv("GRANARY_BRIDGE_API_SOCKET");
    if (br__api_listen(g.loop, api_path && *api_path ? api_path : API_SOCKET_PATH, &err) < 0) {
        gr_warn("%s; the app runs without it", gr_error_msg(err));
        gr_error_release(&err);
    }
    uv_stdio_container_t stdio[3] = {
        {.flags = UV_INHERIT_FD, .data.fd = 0},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
    };
    uv_process_options_t opts = {
        .exit_cb = app_exited,
        .file = argv[3],
        .args = argv + 3,
        .env = NULL, /* the bridge's environment, passed through */
        .stdio_count = 3,
        .stdio = stdio,
    };
    int r = uv_spawn(g.loop, &g.proc, &opts);
    if (r < 0)
        gr_die("starting %s: %s", argv[3], uv_strerror(r));
    g.app_running = true;

    br__app_init(g.loop, (int)port, env_ms("GRANARY_BRIDGE_LISTEN_TIMEOUT_MS", 30000));

    cp_server *mv = gr_calloc(1, sizeof(*mv));
    mv->vt = &mainview_vt;
    cp_cap *boot = cp_server_cap(mv);
    r = cp_rpc_conn_open(g.loop, 3, boot, NULL, &g.conn, &err);
    cp_cap_unref(boot);
    if (r < 0) {
        uv_process_kill(&g.proc, SIGKILL);
        gr_die("fd 3: %s", gr_error_msg(err));
    }
    cp_rpc_conn_on_disconnect(g.conn, platform_gone, NULL);
    uv_run(g.loop, UV_RUN_DEFAULT);
    return 1; /* the loop ends only through app_exited */
}
