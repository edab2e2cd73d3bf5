/* The grain manager (see grains.h): a table of running grains, each a
 * sandboxed process with its RPC connection, pidfd watch and log pipe. */
#include "grains.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include "activity.capnp.h"
#include "grain.capnp.h"
#include "package.capnp.h"
#include "sandbox.h"
#include "util.capnp.h"

#define DEFAULT_IDLE_MS 120000
#define MAX_MANIFEST (8u << 20)
#define MAX_WAKE_LOCKS 64    /* per grain start */
#define MAX_CAPTION_BYTES 200 /* of a wake lock's caption, in the log */
#define MAX_WAKE_LOGS 16      /* wake locks logged at info per grain start */
/* A grain that keeps crashing soon after it starts is not started again at
 * once: after QUICK_CRASHES such crashes in a row it waits 1 s, then 2, 4...
 * up to 64 s, so a broken app cannot make every request cost a start. */
#define QUICK_CRASH_NS (10 * 1000000000ull)
#define QUICK_CRASHES 3
#define MAX_BACKOFF_SHIFT 6

typedef struct gm_wake_lock gm_wake_lock;
typedef struct gm_api gm_api;

struct gm_grain {
    gm_manager *m;
    char *id;
    sbx_grain *proc;
    cp_rpc_conn *conn;
    cp_cap *main_view;
    uv_poll_t exit_watch;
    uv_pipe_t log_pipe;
    sbx_log *log;
    int holds;
    uint64_t last_used_ns;
    bool exited;    /* the process is gone (reaped) */
    bool stopping;  /* we asked it to go */
    bool broken;    /* its RPC connection ended: of no use, and a crash */
    int handles_open;
    uint64_t generation;
    gm_api *api;            /* our bootstrap on its connection, while it lives */
    gm_wake_lock *wake_locks; /* stayAwake handles it holds: no idle stop */
    unsigned nwake_locks;
    unsigned wake_logged; /* wake locks taken this start, for wake_log */
    bool let_sleep;       /* its owner ended its wake locks: no more this start */
    uint64_t started_ns;
    gm_grain *next;
};

/* A grain that died unasked, for its owner to see. */
typedef struct gm_crash {
    char *id;
    int status;
    int64_t at;
    unsigned quick;    /* crashes in a row, each within QUICK_CRASH_NS of its start */
    uint64_t retry_ns; /* while quick >= QUICK_CRASHES: no start before this */
    struct gm_crash *next;
} gm_crash;

struct gm_manager {
    gm_crash *crashes;
    uv_loop_t *loop;
    gm_config conf;
    st_store *store;
    sbx_policy *policy;
    gm_grain *grains; /* running, and dead ones still held */
    gr_index by_id;   /* the same grains by id (a dead one and its successor may share one) */
    uv_timer_t idle_timer;
};

static void grain_free_when_closed(gm_grain *g);
static void api_detach(gm_grain *g);

/* ---- paths and the manifest ---------------------------------------------- */

char *gm_grain_dir(const gm_manager *m, const char *id)
{
    return gr_asprintf("%s/grains/%s", m->conf.data_dir, id);
}

char *gm_log_path(const gm_manager *m, const char *id)
{
    return gr_asprintf("%s/grains/%s/log", m->conf.data_dir, id);
}

/* Copies a List(Text) into a NULL-terminated vector. */
static char **text_vector(cp_list_reader l)
{
    char **v = gr_calloc(l.len + 1, sizeof(char *));
    for (uint32_t i = 0; i < l.len; i++) {
        cp_text t = cp_list_get_text(l, i);
        v[i] = gr_strndup(t.str, t.len);
    }
    return v;
}

static void free_vector(char **v)
{
    for (char **p = v; p && *p; p++)
        free(*p);
    free(v);
}

/* Reads the command a grain runs from its package's manifest: the action's
 * command for a new grain, continueCommand after its first start. */
static int read_command(const char *pkg_dir, bool started, int action, char ***argv,
                        char ***envp, gr_error_t *err)
{
    _cleanup_free_ char *path = gr_asprintf("%s/sandstorm-manifest", pkg_dir);
    _cleanup_free_ char *buf = NULL;
    size_t len;
    if (gr_read_file(path, MAX_MANIFEST, &buf, &len, err) < 0)
        return gr_error_prefix(err, "the package has no readable manifest");
    cp_message msg;
    if (cp_message_open(&msg, buf, len, NULL, err) < 0)
        return gr_error_prefix(err, "manifest %s", path);
    Manifest_R man = Manifest_root(&msg);
    Manifest_Command_R cmd;
    if (started) {
        cmd = Manifest_get_continueCommand(man);
    } else {
        Manifest_Action_LR actions = Manifest_get_actions(man);
        if (action < 0 || (uint32_t)action >= Manifest_Action_list_len(actions)) {
            cp_message_release(&msg);
            return gr_make_error(err, 0, "the package has no action %d", action);
        }
        cmd = Manifest_Action_get_command(Manifest_Action_list_get(actions, (uint32_t)action));
    }
    *argv = text_vector(Manifest_Command_get_argv(cmd));
    KeyValue_LR env = Manifest_Command_get_environ(cmd);
    uint32_t n = KeyValue_list_len(env);
    *envp = gr_calloc(n + 1, sizeof(char *));
    for (uint32_t i = 0; i < n; i++) {
        KeyValue_R kv = KeyValue_list_get(env, i);
        cp_text k = KeyValue_get_key(kv), v = KeyValue_get_value(kv);
        (*envp)[i] = gr_asprintf("%.*s=%.*s", (int)k.len, k.str, (int)v.len, v.str);
    }
    bool ok = cp_message_ok(&msg);
    if (!ok)
        gr_make_error(err, 0, "manifest %s: %s", path, gr_error_msg(msg.error));
    cp_message_release(&msg);
    if (!ok || (*argv)[0] == NULL) {
        free_vector(*argv);
        free_vector(*envp);
        *argv = *envp = NULL;
        return ok ? gr_make_error(err, 0, "the package's command is empty") : -1;
    }
    return 0;
}

/* ---- a grain's life ---------------------------------------------------------- */

static void on_handle_closed(uv_handle_t *h)
{
    gm_grain *g = h->data;
    if (--g->handles_open == 0)
        grain_free_when_closed(g);
}

static void unlink_grain(gm_grain *g)
{
    gr_index_remove(&g->m->by_id, g->id, g);
    for (gm_grain **p = &g->m->grains; *p; p = &(*p)->next) {
        if (*p == g) {
            *p = g->next;
            return;
        }
    }
}

static gm_crash *find_crash(const gm_manager *m, const char *id)
{
    gm_crash *c = m->crashes;
    while (c && strcmp(c->id, id) != 0)
        c = c->next;
    return c;
}

static const char *ordinal_suffix(unsigned n)
{
    if (n % 100 >= 11 && n % 100 <= 13)
        return "th";
    return n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
}

static void grain_free_when_closed(gm_grain *g)
{
    if (g->holds > 0 || g->handles_open > 0)
        return;
    unlink_grain(g);
    cp_cap_unref(g->main_view);
    cp_rpc_conn_free(g->conn);
    api_detach(g);
    sbx_grain_free(g->proc);
    sbx_log_close(g->log);
    free(g->id);
    free(g);
}

/* The process is gone: close what watched it; the grain is freed once no
 * one holds it. */
static void grain_exited(gm_grain *g, int status)
{
    if (g->exited)
        return;
    g->exited = true;
    gm_crash *c = find_crash(g->m, g->id);
    if (g->stopping) {
        gr_info("grain %s: stopped", g->id);
        if (c)
            c->quick = 0;
    } else {
        uint64_t now = gr_monotonic_ns();
        if (c == NULL) {
            c = gr_calloc(1, sizeof(*c));
            c->id = gr_strdup(g->id);
            c->next = g->m->crashes;
            g->m->crashes = c;
        }
        c->status = status;
        c->at = gr_now_unix();
        c->quick = now - g->started_ns < QUICK_CRASH_NS ? c->quick + 1 : 0;
        if (c->quick >= QUICK_CRASHES) {
            unsigned shift = c->quick - QUICK_CRASHES;
            uint64_t wait_s = 1ull << (shift < MAX_BACKOFF_SHIFT ? shift : MAX_BACKOFF_SHIFT);
            c->retry_ns = now + wait_s * 1000000000ull;
            gr_warn("grain %s: exited unexpectedly with status %d, the %u%s time in a row soon "
                    "after starting; it is not started again for %llu s",
                    g->id, status, c->quick, ordinal_suffix(c->quick), (unsigned long long)wait_s);
        } else {
            gr_warn("grain %s: exited unexpectedly with status %d (it restarts on the next request)",
                    g->id, status);
        }
    }
    if (g->conn)
        cp_rpc_conn_close(g->conn);
    uv_close((uv_handle_t *)&g->exit_watch, on_handle_closed);
    uv_close((uv_handle_t *)&g->log_pipe, on_handle_closed);
}

static void on_exit_readable(uv_poll_t *h, int status, int events)
{
    gm_grain *g = h->data;
    int code = -1;
    gr_error_t err = NULL;
    if (sbx_wait(g->proc, false, &code, &err) == 0)
        return; /* spurious wake-up: still running */
    gr_error_release(&err);
    grain_exited(g, code);
}

static void on_log_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[16384];
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_log_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    gm_grain *g = s->data;
    if (n <= 0) {
        if (n < 0)
            uv_read_stop(s);
        return;
    }
    gr_error_t err = NULL;
    if (g->log && sbx_log_write(g->log, buf->base, (size_t)n, &err) < 0) {
        gr_warn("grain %s: log: %s", g->id, gr_error_msg(err));
        gr_error_release(&err);
    }
}

static void on_disconnect(cp_rpc_conn *conn, const char *reason, void *ud)
{
    gm_grain *g = ud;
    /* A grain that hangs up on its RPC socket is of no use any more. */
    if (!g->exited && !g->stopping) {
        gr_warn("grain %s: its RPC connection ended (%s); stopping it", g->id, reason);
        g->broken = true;
        gr_error_t err = NULL;
        sbx_kill(g->proc, &err);
        gr_error_release(&err);
    }
}

/* ---- SandstormApi: what the platform offers a grain ------------------------------
 * The bootstrap capability on the grain's connection. Of its methods only
 * stayAwake is offered so far; the others need the powerbox, persistent
 * capabilities or notifications, which Granary does not have yet, and fail
 * with "unimplemented" and the method's name. The objects point back at
 * their grain until it goes (grain_free_when_closed detaches them). */

struct gm_api {
    cp_server base;
    gm_grain *g;
};

struct gm_wake_lock {
    cp_server base;
    gm_grain *g;
    cp_cap *notification; /* the app's OngoingNotification, kept while held */
    char *caption;
    bool loud; /* logged at info, not debug */
    gm_wake_lock *next;
};

/* The first wake locks of a grain start are logged at info, the rest at
 * debug: an app taking and dropping them in a loop must not flood the log. */
#define wake_log(loud, ...)                                  \
    do {                                                     \
        if (loud)                                            \
            gr_info(__VA_ARGS__);                            \
        else                                                 \
            gr_debug(__VA_ARGS__);                           \
    } while (0)

static void wake_unlink(gm_wake_lock *w, const char *why)
{
    gm_grain *g = w->g;
    if (g == NULL)
        return;
    for (gm_wake_lock **p = &g->wake_locks; *p; p = &(*p)->next) {
        if (*p == w) {
            *p = w->next;
            break;
        }
    }
    g->nwake_locks--;
    g->last_used_ns = gr_monotonic_ns(); /* the idle period starts now */
    wake_log(w->loud, "grain %s: no longer kept awake for \"%s\" (%s)", g->id, w->caption, why);
    w->g = NULL;
    /* The notification goes now, not with the handle: an app could hand
     * back a capability that holds the handle, and the two would keep each
     * other forever. Its release may free w, so w is not touched after. */
    cp_cap *n = w->notification;
    w->notification = NULL;
    cp_cap_unref(n);
}

static void handle_ping(cp_server *self, cp_call *call, Handle_ping_Params_R params)
{
    cp_call_return(call);
}

static const Handle_methods wake_methods = {.ping = handle_ping};

static void wake_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!Handle_dispatch(&wake_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void wake_destroy(cp_server *self)
{
    gm_wake_lock *w = (gm_wake_lock *)self;
    wake_unlink(w, "the app dropped it");
    cp_cap_unref(w->notification); /* still here only if never linked */
    free(w->caption);
    free(w);
}

static const cp_server_vtable wake_vt = {"SandstormApi.stayAwake handle", wake_dispatch, wake_destroy};

/* A caption fit for one log line: printable ASCII but quote and backslash
 * kept, anything else '?', cut at MAX_CAPTION_BYTES. */
static char *log_caption(cp_text t)
{
    size_t n = t.len < MAX_CAPTION_BYTES ? t.len : MAX_CAPTION_BYTES;
    char *out = gr_malloc(n + 4);
    for (size_t i = 0; i < n; i++)
        out[i] = t.str[i] >= 0x20 && t.str[i] < 0x7f && t.str[i] != '"' && t.str[i] != '\\'
                     ? t.str[i]
                     : '?';
    memcpy(out + n, t.len > n ? "..." : "", t.len > n ? 4 : 1);
    return out;
}

static void api_stay_awake(cp_server *self, cp_call *call, SandstormApi_stayAwake_Params_R params)
{
    gm_grain *g = ((gm_api *)self)->g;
    if (g == NULL || g->exited || g->stopping || g->broken) {
        cp_call_fail(call, CP_EXC_DISCONNECTED, "the grain is stopping");
        return;
    }
    if (g->let_sleep) {
        cp_call_fail(call, CP_EXC_FAILED,
                     "the grain's owner let it sleep: it may keep itself awake again after its "
                     "next start");
        return;
    }
    if (g->nwake_locks >= MAX_WAKE_LOCKS) {
        cp_call_fail(call, CP_EXC_OVERLOADED, "a grain may hold at most %d stayAwake handles",
                     MAX_WAKE_LOCKS);
        return;
    }
    gm_wake_lock *w = gr_calloc(1, sizeof(*w));
    w->base.vt = &wake_vt;
    w->g = g;
    w->notification = SandstormApi_stayAwake_Params_get_notification(params);
    w->caption = log_caption(LocalizedText_get_defaultText(
        NotificationDisplayInfo_get_caption(SandstormApi_stayAwake_Params_get_displayInfo(params))));
    w->next = g->wake_locks;
    g->wake_locks = w;
    g->nwake_locks++;
    w->loud = g->wake_logged < MAX_WAKE_LOGS;
    wake_log(w->loud, "grain %s: kept awake for \"%s\"%s", g->id, w->caption,
             g->wake_logged + 1 == MAX_WAKE_LOGS ? " (further wake locks are logged at debug)" : "");
    g->wake_logged++;
    SandstormApi_stayAwake_Results_set_handle(SandstormApi_stayAwake_results(call),
                                              cp_server_cap(&w->base));
    cp_call_return(call);
}

static const SandstormApi_methods api_methods = {.stayAwake = api_stay_awake};

static void api_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    static const char *const names[] = {
        "deprecatedPublish", "deprecatedRegisterAction", "shareCap", "shareView", "restore",
        "drop", "deleted", "stayAwake", "save", "backgroundActivity", "getIdentityId", "schedule"};
    if (iface == SandstormApi_TYPE_ID && method != SandstormApi_stayAwake_METHOD_ID &&
        method < sizeof(names) / sizeof(names[0]))
        cp_call_fail(call, CP_EXC_UNIMPLEMENTED, "SandstormApi.%s is not offered by Granary yet",
                     names[method]);
    else if (!SandstormApi_dispatch(&api_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void api_destroy(cp_server *self)
{
    gm_api *a = (gm_api *)self;
    if (a->g)
        a->g->api = NULL;
    free(a);
}

static const cp_server_vtable api_vt = {"SandstormApi", api_dispatch, api_destroy};

/* The objects of a grain about to be freed forget it. */
static void api_detach(gm_grain *g)
{
    if (g->api)
        g->api->g = NULL;
    g->api = NULL;
    while (g->wake_locks)
        wake_unlink(g->wake_locks, "the grain is gone");
}

static int start_grain(gm_manager *m, const char *id, gm_grain **out, gr_error_t *err)
{
    st_grain row = {0};
    int r = st_grain_get(m->store, id, &row, err);
    if (r <= 0)
        return r < 0 ? -1 : gr_make_error(err, 0, "no such grain");
    _cleanup_free_ char *pkg_dir = gr_asprintf("%s/apps/%s", m->conf.data_dir, row.package_id);
    _cleanup_free_ char *dir = gm_grain_dir(m, id);
    _cleanup_free_ char *var_dir = gr_asprintf("%s/sandbox", dir);
    _cleanup_free_ char *log_path = gm_log_path(m, id);
    char **argv = NULL, **envp = NULL;
    int sv[2] = {-1, -1}, logp[2] = {-1, -1};
    gm_grain *g = NULL;
    r = -1;
    if (read_command(pkg_dir, row.started, row.action_index, &argv, &envp, err) < 0 ||
        gr_mkdir_p(var_dir, 0770, err) < 0)
        goto out;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 || pipe2(logp, O_CLOEXEC) < 0) {
        gr_make_error(err, errno, "grain %s: socketpair", id);
        goto out;
    }
    g = gr_calloc(1, sizeof(*g));
    g->m = m;
    g->id = gr_strdup(id);
    static uint64_t starts;
    g->generation = ++starts;
    if (sbx_log_open(log_path, 0, &g->log, err) < 0)
        goto out;

    sbx_spec spec;
    sbx_spec_init(&spec);
    spec.package_dir = pkg_dir;
    spec.var_dir = var_dir;
    spec.bridge_path = m->conf.bridge_path;
    spec.argv = argv;
    spec.envp = envp;
    spec.rpc_fd = sv[1];
    spec.stdio[1] = logp[1];
    spec.stdio[2] = logp[1];
    spec.memory_bytes = m->conf.memory_bytes;
    spec.pids = m->conf.pids;
    if (sbx_start(m->policy, &spec, &g->proc, err) < 0) {
        gr_error_prefix(err, "grain %s: start", id);
        goto out;
    }
    close(sv[1]);
    close(logp[1]);
    sv[1] = logp[1] = -1;

    int fd = sv[0];
    sv[0] = -1;
    g->api = gr_calloc(1, sizeof(*g->api));
    g->api->base.vt = &api_vt;
    g->api->g = g;
    cp_cap *api = cp_server_cap(&g->api->base);
    r = cp_rpc_conn_open(m->loop, fd, api, NULL, &g->conn, err);
    cp_cap_unref(api);
    if (r < 0) {
        gr_error_prefix(err, "grain %s", id);
        sbx_kill(g->proc, NULL);
        goto out;
    }
    cp_rpc_conn_on_disconnect(g->conn, on_disconnect, g);
    g->main_view = cp_rpc_conn_bootstrap(g->conn);

    uv_poll_init(m->loop, &g->exit_watch, sbx_grain_pidfd(g->proc));
    g->exit_watch.data = g;
    uv_poll_start(&g->exit_watch, UV_READABLE, on_exit_readable);
    uv_pipe_init(m->loop, &g->log_pipe, 0);
    g->log_pipe.data = g;
    uv_pipe_open(&g->log_pipe, logp[0]);
    logp[0] = -1;
    uv_read_start((uv_stream_t *)&g->log_pipe, on_log_alloc, on_log_read);
    g->handles_open = 2;
    g->last_used_ns = g->started_ns = gr_monotonic_ns();
    g->next = m->grains;
    m->grains = g;
    gr_index_add(&m->by_id, g->id, g);

    if (!row.started && st_grain_set_started(m->store, id, err) < 0) {
        gr_warn("grain %s: %s", id, gr_error_msg(*err));
        gr_error_release(err);
    }
    gr_info("grain %s: started (pid %d)", id, (int)sbx_grain_pid(g->proc));
    *out = g;
    g = NULL;
    r = 0;
out:
    if (g) {
        sbx_grain_free(g->proc);
        cp_rpc_conn_free(g->conn);
        api_detach(g);
        sbx_log_close(g->log);
        free(g->id);
        free(g);
    }
    for (int i = 0; i < 2; i++) {
        if (sv[i] >= 0)
            close(sv[i]);
        if (logp[i] >= 0)
            close(logp[i]);
    }
    free_vector(argv);
    free_vector(envp);
    st_grain_release(&row);
    return r;
}

static bool is_live(const void *grain)
{
    const gm_grain *g = grain;
    return !g->exited && !g->stopping && !g->broken;
}

static gm_grain *find_live(const gm_manager *m, const char *id)
{
    return gr_index_find(&m->by_id, id, is_live);
}

int gm_grain_acquire(gm_manager *m, const char *id, gm_grain **out, gr_error_t *err)
{
    gm_grain *g = find_live(m, id);
    if (g == NULL && gm_held_back(m, id)) {
        const gm_crash *c = find_crash(m, id);
        return gr_make_error(err, 0,
                             "its app crashed %u times in a row soon after starting; Granary "
                             "tries it again in %llu s",
                             c->quick,
                             (unsigned long long)((c->retry_ns - gr_monotonic_ns()) / 1000000000u) + 1);
    }
    if (g == NULL && start_grain(m, id, &g, err) < 0)
        return -1;
    g->holds++;
    g->last_used_ns = gr_monotonic_ns();
    *out = g;
    return 0;
}

void gm_grain_release(gm_grain *g)
{
    g->last_used_ns = gr_monotonic_ns();
    if (--g->holds == 0 && g->exited && g->handles_open == 0)
        grain_free_when_closed(g);
}

cp_cap *gm_grain_main_view(gm_grain *g)
{
    return g->main_view;
}

uint64_t gm_grain_generation(const gm_grain *g)
{
    return g->generation;
}

bool gm_grain_alive(const gm_grain *g)
{
    return !g->exited;
}

static void stop_grain(gm_grain *g)
{
    if (g->exited || g->stopping)
        return;
    g->stopping = true;
    gr_error_t err = NULL;
    if (sbx_kill(g->proc, &err) < 0) {
        gr_warn("grain %s: %s", g->id, gr_error_msg(err));
        gr_error_release(&err);
    }
}

void gm_touch(gm_manager *m, const char *id)
{
    gm_grain *g = find_live(m, id);
    if (g)
        g->last_used_ns = gr_monotonic_ns();
}

void gm_stop(gm_manager *m, const char *id)
{
    gm_grain *g = find_live(m, id);
    if (g)
        stop_grain(g);
}

size_t gm_kept_awake(const gm_manager *m, const char *id, const char **out, size_t max)
{
    gm_grain *g = find_live(m, id);
    size_t n = 0;
    for (gm_wake_lock *w = g ? g->wake_locks : NULL; w; w = w->next, n++)
        if (n < max)
            out[n] = w->caption;
    return n;
}

static void on_cancelled(const cp_response *resp, void *ud)
{
    if (resp->exception)
        gr_debug("OngoingNotification.cancel: %s", resp->exception->reason);
}

size_t gm_let_sleep(gm_manager *m, const char *id)
{
    gm_grain *g = find_live(m, id);
    size_t n = 0;
    if (g)
        g->let_sleep = true; /* an app that takes a lock again at cancel() gets none */
    while (g && g->wake_locks) {
        gm_wake_lock *w = g->wake_locks;
        if (w->notification) {
            OngoingNotification_cancel_Params_B p;
            cp_request *req = OngoingNotification_cancel_request(w->notification, &p);
            gr_error_t err = NULL;
            if (cp_request_send(req, on_cancelled, NULL, NULL, &err) < 0) {
                gr_debug("grain %s: OngoingNotification.cancel: %s", id, gr_error_msg(err));
                gr_error_release(&err);
            }
        }
        wake_unlink(w, "its owner let it sleep");
        n++;
    }
    return n;
}

bool gm_held_back(const gm_manager *m, const char *id)
{
    const gm_crash *c = find_crash(m, id);
    return c && c->quick >= QUICK_CRASHES && gr_monotonic_ns() < c->retry_ns;
}

void gm_forget(gm_manager *m, const char *id)
{
    for (gm_crash **p = &m->crashes; *p; p = &(*p)->next) {
        if (strcmp((*p)->id, id) == 0) {
            gm_crash *c = *p;
            *p = c->next;
            free(c->id);
            free(c);
            return;
        }
    }
}

bool gm_last_crash(const gm_manager *m, const char *id, int *status, int64_t *at)
{
    const gm_crash *c = find_crash(m, id);
    if (c) {
        *status = c->status;
        *at = c->at;
    }
    return c != NULL;
}

size_t gm_running_count(const gm_manager *m)
{
    size_t n = 0;
    for (gm_grain *g = m->grains; g; g = g->next)
        n += !g->exited;
    return n;
}

bool gm_is_running(const gm_manager *m, const char *id)
{
    return find_live(m, id) != NULL;
}

uint64_t gm_last_used_ns(const gm_manager *m, const char *id)
{
    const gm_grain *g = find_live(m, id);
    return g ? g->last_used_ns : 0;
}

/* Whether a process of grain `id` is still there: running, or stopping and
 * not yet reaped (its storage may still change under it). */
static bool has_process(const gm_manager *m, const char *id)
{
    for (const gm_grain *g = m->grains; g; g = g->next)
        if (!g->exited && strcmp(g->id, id) == 0)
            return true;
    return false;
}

bool gm_stop_and_reap(gm_manager *m, const char *id, int timeout_ms)
{
    for (gm_grain *g = m->grains; g; g = g->next) {
        if (g->exited || strcmp(g->id, id) != 0)
            continue;
        stop_grain(g);
        struct pollfd p = {.fd = sbx_grain_pidfd(g->proc), .events = POLLIN};
        int code = 0;
        gr_error_t err = NULL;
        if (poll(&p, 1, timeout_ms) == 1 && sbx_wait(g->proc, false, &code, &err) == 1)
            grain_exited(g, code);
        gr_error_release(&err);
    }
    return !has_process(m, id);
}

/* Stops grains nobody holds that have not been used for idle_ms. */
static void on_idle_tick(uv_timer_t *t)
{
    gm_manager *m = t->data;
    uint64_t now = gr_monotonic_ns();
    for (gm_grain *g = m->grains; g; g = g->next) {
        if (g->holds == 0 && g->nwake_locks == 0 && !g->exited && !g->stopping && !g->broken &&
            now - g->last_used_ns >= m->conf.idle_ms * 1000000u) {
            gr_info("grain %s: idle for %llu s, stopping it", g->id,
                    (unsigned long long)(m->conf.idle_ms / 1000));
            stop_grain(g);
        }
    }
}

int gm_manager_new(gm_manager **out, uv_loop_t *loop, const gm_config *conf, st_store *st,
                   gr_error_t *err)
{
    gm_manager *m = gr_calloc(1, sizeof(*m));
    m->loop = loop;
    m->conf = *conf;
    if (m->conf.idle_ms == 0)
        m->conf.idle_ms = DEFAULT_IDLE_MS;
    m->store = st;
    if (sbx_policy_new(&m->policy, err) < 0) {
        free(m);
        return gr_error_prefix(err, "sandbox");
    }
    /* Asked for and not possible is an error: the operator chose it. */
    if (conf->loopback_redirect && sbx_policy_enable_loopback_redirect(m->policy, err) < 0) {
        sbx_policy_free(m->policy);
        free(m);
        return gr_error_prefix(err, "--grain-loopback-redirect on");
    }
    uv_timer_init(loop, &m->idle_timer);
    m->idle_timer.data = m;
    uint64_t tick = m->conf.idle_ms / 4;
    if (tick < 100)
        tick = 100;
    if (tick > 10000)
        tick = 10000;
    uv_timer_start(&m->idle_timer, on_idle_tick, tick, tick);
    /* Without cgroups the only limits are per-uid (RLIMIT_NPROC, shared by
     * every grain) or per address space (RLIMIT_AS, which runtimes that
     * reserve much more than they use cannot live under): neither is a
     * per-grain limit, so the daemon does not apply them. */
    if (sbx_policy_limits_mode(m->policy) == SBX_LIMITS_RLIMIT &&
        (m->conf.memory_bytes || m->conf.pids)) {
        gr_warn("grains: this host gives the daemon no cgroups, so grains run without the "
                "memory and process limits (--grain-memory, --grain-pids)");
        m->conf.memory_bytes = m->conf.pids = 0;
    }
    gr_info("grains: limits by %s (memory %llu MiB, %llu processes per grain; 0 is none), idle "
            "stop after %llu ms, loopback redirect %s",
            sbx_limits_mode_name(sbx_policy_limits_mode(m->policy)),
            (unsigned long long)(m->conf.memory_bytes >> 20), (unsigned long long)m->conf.pids,
            (unsigned long long)m->conf.idle_ms,
            sbx_policy_loopback_redirect(m->policy) ? "on" : "off");
    *out = m;
    return 0;
}

static void on_shutdown_tick(uv_timer_t *t)
{
    (void)t; /* only wakes the loop */
}

void gm_manager_free(gm_manager *m)
{
    if (m == NULL)
        return;
    for (gm_grain *g = m->grains; g; g = g->next) {
        stop_grain(g);
        g->holds = 0; /* nobody may hold a grain past the manager */
    }
    /* Reap each killed grain now rather than wait for its pidfd events. */
    for (gm_grain *g = m->grains; g; g = g->next) {
        int code = 0;
        gr_error_t err = NULL;
        if (!g->exited) {
            if (sbx_wait(g->proc, true, &code, &err) == 1)
                grain_exited(g, code);
            else if (err)
                gr_warn("grain %s: %s", g->id, gr_error_msg(err));
        }
        gr_error_release(&err);
    }
    /* The handles' closes complete within a few turns of the loop; a grain
     * whose exit is still on its way arrives through its pidfd watch. The
     * idle timer, now ticking fast, bounds each turn. */
    uv_timer_start(&m->idle_timer, on_shutdown_tick, 50, 50);
    uint64_t deadline = gr_monotonic_ns() + 5000000000u;
    while (m->grains && gr_monotonic_ns() < deadline)
        uv_run(m->loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&m->idle_timer, NULL);
    uv_run(m->loop, UV_RUN_NOWAIT);
    if (m->grains) {
        /* Freeing now would leave callbacks pointing into freed memory. */
        gr_warn("grains: %zu grain(s) did not finish stopping; leaving them to exit",
                gm_running_count(m));
        return;
    }
    sbx_policy_free(m->policy);
    gr_index_release(&m->by_id);
    while (m->crashes) {
        gm_crash *c = m->crashes;
        m->crashes = c->next;
        free(c->id);
        free(c);
    }
    free(m);
}
