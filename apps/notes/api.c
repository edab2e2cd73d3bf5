/* notes: the uses the app makes of Sandstorm's app API, for the platform's
 * tests. Each connects to the bridge's API socket ($NOTES_API_SOCKET,
 * default /tmp/sandstorm-api), whose bootstrap is SandstormHttpBridge, and
 * answers its HTTP request once the platform has answered (200, or 502 with
 * the error):
 *
 * - GET /debug/stay-awake?ms=N[&count=K]: getSandstormApi() and, pipelined
 *   on it, K calls of SandstormApi.stayAwake() (1 by default). The handles
 *   are kept for N ms and then dropped, with the connection, which lets the
 *   grain be stopped for being idle. If any call fails, the answer is 502
 *   with how many succeeded and the first failure, and every handle goes at
 *   once.
 * - GET /debug/activity[?session=ID]: getSessionContext(ID, by default the
 *   request's X-Sandstorm-Session-Id) and, pipelined on it,
 *   SessionContext.activity() with path "debug/activity". */
#include <stdarg.h>
#include <uv.h>

#include "activity.capnp.h"
#include "capnp.h"
#include "grain.capnp.h"
#include "notes.h"
#include "sandstorm-http-bridge.capnp.h"
#include "util.capnp.h"
#include "util.h"

typedef struct awake {
    nt_conn *c; /* the request to answer, NULL once answered or gone */
    uint64_t ms;
    char *session_id; /* for /debug/activity; NULL for stay-awake */
    uv_connect_t connect;
    uv_pipe_t *pipe; /* until the RPC connection takes it */
    cp_rpc_conn *conn;
    unsigned want, answered, held; /* stayAwake calls: made, answered, succeeded */
    cp_cap *handles[NT_MAX_WAKE_LOCKS];
    char failure[300]; /* the first one's reason */
    uv_timer_t timer;
    struct awake *next;
} awake;

static awake *awakes; /* the requests not yet answered and the handles held */

static void answer(awake *a, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void answer(awake *a, int status, const char *fmt, ...)
{
    if (a->c == NULL)
        return;
    char body[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(body, sizeof(body), fmt, ap);
    va_end(ap);
    size_t len = n < 0 ? 0 : (size_t)n < sizeof(body) ? (size_t)n : sizeof(body) - 1;
    nt_conn *c = a->c;
    a->c = NULL;
    nt_respond_later(c, status, body, len);
}

static void unlink_awake(awake *a)
{
    for (awake **p = &awakes; *p; p = &(*p)->next) {
        if (*p == a) {
            *p = a->next;
            return;
        }
    }
}

static void timer_closed(uv_handle_t *h)
{
    awake *a = h->data;
    free(a->session_id);
    free(a);
}

/* Drops the handle and the connection: the grain may sleep again. */
static void release(awake *a)
{
    unlink_awake(a);
    for (unsigned i = 0; i < a->held; i++)
        cp_cap_unref(a->handles[i]);
    a->held = 0;
    cp_rpc_conn_free(a->conn);
    a->conn = NULL;
    uv_close((uv_handle_t *)&a->timer, timer_closed);
}

static void on_timer(uv_timer_t *t)
{
    release(t->data);
}

/* OngoingNotification: the platform may cancel the wake lock. */
static void notification_cancel(cp_server *self, cp_call *call,
                                OngoingNotification_cancel_Params_R params)
{
    gr_info("notes: the platform cancelled the wake lock");
    cp_call_return(call);
}

static const OngoingNotification_methods notification_methods = {.cancel = notification_cancel};

static void notification_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!OngoingNotification_dispatch(&notification_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method);
}

static void notification_destroy(cp_server *self)
{
    free(self);
}

static const cp_server_vtable notification_vt = {"OngoingNotification", notification_dispatch,
                                                 notification_destroy};

static void on_api(const cp_response *resp, void *ud)
{
    (void)resp; /* what matters is stayAwake's answer, which carries any error */
    (void)ud;
}

static void on_stay_awake(const cp_response *resp, void *ud)
{
    awake *a = ud;
    a->answered++;
    if (resp->exception) {
        if (a->failure[0] == '\0')
            snprintf(a->failure, sizeof(a->failure), "%s", resp->exception->reason);
    } else {
        a->handles[a->held++] = SandstormApi_stayAwake_Results_get_handle(
            (SandstormApi_stayAwake_Results_R){resp->results});
    }
    if (a->answered < a->want)
        return;
    if (a->failure[0]) {
        answer(a, 502, "%u of %u stayAwake calls succeeded; the first failure: %s\n", a->held,
               a->want, a->failure);
        release(a);
        return;
    }
    answer(a, 200, "kept awake for %llu ms\n", (unsigned long long)a->ms);
    uv_timer_start(&a->timer, on_timer, a->ms, 0);
}

static void on_activity(const cp_response *resp, void *ud)
{
    awake *a = ud;
    if (resp->exception)
        answer(a, 502, "activity failed: %s\n", resp->exception->reason);
    else
        answer(a, 200, "activity posted\n");
    release(a);
}

/* getSessionContext(id) and activity() on what it returns, in one go. */
static void post_activity(awake *a, cp_cap *bridge)
{
    _cleanup_error_ gr_error_t err = NULL;
    SandstormHttpBridge_getSessionContext_Params_B gp;
    cp_request *get = SandstormHttpBridge_getSessionContext_request(bridge, &gp);
    SandstormHttpBridge_getSessionContext_Params_set_id(gp, a->session_id, strlen(a->session_id));
    cp_pending *pending = NULL;
    if (cp_request_send(get, on_api, a, &pending, &err) < 0 || pending == NULL) {
        answer(a, 502, "getSessionContext: %s\n", err ? gr_error_msg(err) : "answered at once");
        release(a);
        return;
    }
    static const uint16_t context_field[] = {0};
    cp_cap *ctx = cp_pending_pipeline(pending, context_field, 1);
    SessionContext_activity_Params_B ap;
    cp_request *act = SessionContext_activity_request(ctx, &ap);
    cp_cap_unref(ctx);
    static const char path[] = "debug/activity";
    ActivityEvent_set_path(SessionContext_activity_Params_init_event(ap), path, sizeof(path) - 1);
    if (cp_request_send(act, on_activity, a, NULL, &err) < 0) {
        answer(a, 502, "activity: %s\n", gr_error_msg(err));
        release(a);
    }
}

static void on_connected(uv_connect_t *req, int status)
{
    awake *a = req->data;
    if (status < 0) {
        answer(a, 502, "the API socket: %s\n", uv_strerror(status));
        uv_close((uv_handle_t *)a->pipe, (uv_close_cb)free);
        a->pipe = NULL;
        release(a);
        return;
    }
    _cleanup_error_ gr_error_t err = NULL;
    uv_pipe_t *pipe = a->pipe;
    a->pipe = NULL;
    if (cp_rpc_conn_adopt((uv_stream_t *)pipe, NULL, NULL, &a->conn, &err) < 0) {
        answer(a, 502, "the API socket: %s\n", gr_error_msg(err));
        release(a);
        return;
    }
    cp_cap *bridge = cp_rpc_conn_bootstrap(a->conn);
    if (a->session_id) {
        post_activity(a, bridge);
        cp_cap_unref(bridge);
        return;
    }
    SandstormHttpBridge_getSandstormApi_Params_B gp;
    cp_request *get = SandstormHttpBridge_getSandstormApi_request(bridge, &gp);
    cp_cap_unref(bridge);
    cp_pending *pending = NULL;
    if (cp_request_send(get, on_api, a, &pending, &err) < 0 || pending == NULL) {
        answer(a, 502, "getSandstormApi: %s\n", err ? gr_error_msg(err) : "answered at once");
        release(a);
        return;
    }
    static const uint16_t api_field[] = {0};
    cp_cap *api = cp_pending_pipeline(pending, api_field, 1);
    unsigned want = a->want;
    a->want = 0;
    for (unsigned i = 0; i < want; i++) {
        SandstormApi_stayAwake_Params_B sp;
        cp_request *stay = SandstormApi_stayAwake_request(api, &sp);
        static const char caption[] = "a test asked notes to stay awake";
        LocalizedText_set_defaultText(NotificationDisplayInfo_init_caption(
                                          SandstormApi_stayAwake_Params_init_displayInfo(sp)),
                                      caption, sizeof(caption) - 1);
        cp_server *n = gr_calloc(1, sizeof(*n));
        n->vt = &notification_vt;
        SandstormApi_stayAwake_Params_set_notification(sp, cp_server_cap(n));
        if (cp_request_send(stay, on_stay_awake, a, NULL, &err) < 0)
            break;
        a->want++;
    }
    cp_cap_unref(api);
    if (a->want == 0) {
        answer(a, 502, "stayAwake: %s\n", gr_error_msg(err));
        release(a);
    }
}

static void connect_api(uv_loop_t *loop, nt_conn *c, uint64_t ms, unsigned count,
                        const char *session_id)
{
    const char *path = getenv("NOTES_API_SOCKET");
    awake *a = gr_calloc(1, sizeof(*a));
    a->c = c;
    a->ms = ms;
    a->want = count;
    a->session_id = session_id ? gr_strdup(session_id) : NULL;
    uv_timer_init(loop, &a->timer);
    a->timer.data = a;
    a->next = awakes;
    awakes = a;
    a->pipe = gr_calloc(1, sizeof(*a->pipe));
    uv_pipe_init(loop, a->pipe, 0);
    a->connect.data = a;
    uv_pipe_connect(&a->connect, a->pipe, path && *path ? path : "/tmp/sandstorm-api",
                    on_connected);
}

void nt_stay_awake(uv_loop_t *loop, nt_conn *c, uint64_t ms, unsigned count)
{
    connect_api(loop, c, ms, count < NT_MAX_WAKE_LOCKS ? count : NT_MAX_WAKE_LOCKS, NULL);
}

void nt_post_activity(uv_loop_t *loop, nt_conn *c, const char *session_id)
{
    connect_api(loop, c, 0, 0, session_id);
}

void nt_api_conn_closed(nt_conn *c)
{
    for (awake *a = awakes; a; a = a->next)
        if (a->c == c)
            a->c = NULL;
}
