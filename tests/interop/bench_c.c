/* Granary's side of bench/capnp-rpc, mirroring the C++ peer's bench modes:
 *
 *   capnp-rpc-bench serve PATH             serve Interop on a Unix socket
 *   capnp-rpc-bench bench PATH pingpong N  N sequential pings; prints calls/s
 *   capnp-rpc-bench bench PATH pipeline N  N newCounter().inc() pairs, 64 in
 *                                          flight, inc pipelined; prints pairs/s */
#include <sys/socket.h>
#include <sys/un.h>

#include "interop_c.h"

typedef struct bench {
    uv_loop_t *loop;
    cp_cap *remote;
    long n, sent, done;
    bool failed;
} bench;

static void die_on(const cp_response *resp, bench *b)
{
    if (resp->exception) {
        fprintf(stderr, "capnp-rpc-bench: call failed: %s\n", resp->exception->reason);
        b->failed = true;
        uv_stop(b->loop);
    }
}

static void ping_next(bench *b);

static void ping_done(const cp_response *resp, void *ud)
{
    bench *b = ud;
    die_on(resp, b);
    if (b->failed)
        return;
    if (Interop_ping_Results_get_n((Interop_ping_Results_R){resp->results}) !=
        (uint64_t)b->done + 1) {
        fprintf(stderr, "capnp-rpc-bench: wrong ping answer\n");
        b->failed = true;
    }
    b->done++;
    if (b->done < b->n)
        ping_next(b);
}

static void ping_next(bench *b)
{
    cp_request *req = cp_request_new(b->remote, Interop_TYPE_ID, Interop_ping_METHOD_ID);
    Interop_ping_Params_set_n((Interop_ping_Params_B){cp_request_params(req, 1, 0)},
                              (uint64_t)b->done);
    _cleanup_error_ gr_error_t err = NULL;
    if (cp_request_send(req, ping_done, b, NULL, &err) < 0)
        gr_die("%s", gr_error_msg(err));
}

static void pipeline_window(bench *b);

static void inc_done(const cp_response *resp, void *ud)
{
    bench *b = ud;
    die_on(resp, b);
    b->done++;
    if (!b->failed && b->done == b->sent && b->sent < b->n)
        pipeline_window(b);
}

static void pipeline_window(bench *b)
{
    static const uint16_t path[] = {0};
    for (int j = 0; j < 64 && b->sent < b->n; j++, b->sent++) {
        cp_request *req = cp_request_new(b->remote, Interop_TYPE_ID, Interop_newCounter_METHOD_ID);
        Interop_newCounter_Params_set_start(
            (Interop_newCounter_Params_B){cp_request_params(req, 1, 0)}, b->sent);
        _cleanup_error_ gr_error_t err = NULL;
        cp_pending *p = NULL;
        if (cp_request_send(req, NULL, NULL, &p, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        cp_cap *counter = cp_pending_pipeline(p, path, 1);
        req = cp_request_new(counter, Counter_TYPE_ID, Counter_inc_METHOD_ID);
        cp_cap_unref(counter);
        Counter_inc_Params_set_by((Counter_inc_Params_B){cp_request_params(req, 1, 0)}, 1);
        if (cp_request_send(req, inc_done, b, NULL, &err) < 0)
            gr_die("%s", gr_error_msg(err));
    }
}

static int unix_socket(const char *path, struct sockaddr_un *sa)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (gr_strlcpy(sa->sun_path, path, sizeof(sa->sun_path)) < 0)
        gr_die("socket path too long: %s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        gr_die("socket: %s", strerror(errno));
    return fd;
}

typedef struct server {
    uv_pipe_t listener;
    interop_state st;
    cp_cap *cap;
} server;

static void on_conn_end(cp_rpc_conn *conn, const char *reason, void *ud)
{
    cp_rpc_conn_free(conn);
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

static void on_connection(uv_stream_t *listener, int status)
{
    server *s = listener->data;
    if (status < 0)
        return;
    uv_pipe_t *client = gr_calloc(1, sizeof(*client));
    uv_pipe_init(s->st.loop, client, 0);
    if (uv_accept(listener, (uv_stream_t *)client) < 0) {
        uv_close((uv_handle_t *)client, free_handle);
        return;
    }
    cp_rpc_conn *conn = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    if (cp_rpc_conn_adopt((uv_stream_t *)client, s->cap, NULL, &conn, &err) < 0) {
        gr_warn("%s", gr_error_msg(err));
        return;
    }
    cp_rpc_conn_on_disconnect(conn, on_conn_end, NULL);
}

static int serve(const char *path)
{
    uv_loop_t *loop = uv_default_loop();
    server s = {0};
    s.st.loop = loop;
    s.cap = interop_server_new(&s.st);
    unlink(path);
    uv_pipe_init(loop, &s.listener, 0);
    s.listener.data = &s;
    int r = uv_pipe_bind(&s.listener, path);
    if (r < 0 || (r = uv_listen((uv_stream_t *)&s.listener, 16, on_connection)) < 0)
        gr_die("listen on %s: %s", path, uv_strerror(r));
    printf("ready\n");
    fflush(stdout);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

static int run_bench(const char *path, const char *kind, long n)
{
    uv_loop_t *loop = uv_default_loop();
    struct sockaddr_un sa;
    int fd = unix_socket(path, &sa);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        gr_die("connect %s: %s", path, strerror(errno));
    cp_rpc_conn *conn = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    if (cp_rpc_conn_open(loop, fd, NULL, NULL, &conn, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    bench b = {.loop = loop, .remote = cp_rpc_conn_bootstrap(conn), .n = 1};
    ping_next(&b); /* warm up: also resolves the bootstrap */
    while (b.done < 1 && !b.failed && uv_run(loop, UV_RUN_ONCE))
        ;
    b.done = b.sent = 0;
    b.n = n;
    uint64_t start = gr_monotonic_ns();
    if (strcmp(kind, "pingpong") == 0)
        ping_next(&b);
    else if (strcmp(kind, "pipeline") == 0)
        pipeline_window(&b);
    else
        gr_die("unknown bench %s", kind);
    while (b.done < n && !b.failed && uv_run(loop, UV_RUN_ONCE))
        ;
    double secs = (double)(gr_monotonic_ns() - start) / 1e9;
    if (b.failed || b.done < n)
        gr_die("benchmark did not complete");
    printf("%.0f\n", (double)n / secs);
    cp_cap_unref(b.remote);
    cp_rpc_conn_free(conn);
    uv_run(loop, UV_RUN_DEFAULT);
    return 0;
}

int main(int argc, char **argv)
{
    long n = 0;
    _cleanup_error_ gr_error_t err = NULL;
    if (argc == 3 && strcmp(argv[1], "serve") == 0)
        return serve(argv[2]);
    if (argc == 5 && strcmp(argv[1], "bench") == 0) {
        if (gr_parse_long(argv[4], 1, 100000000, &n, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        return run_bench(argv[2], argv[3], n);
    }
    fprintf(stderr, "usage: capnp-rpc-bench serve PATH | bench PATH pingpong|pipeline N\n");
    return 2;
}
