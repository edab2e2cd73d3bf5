/* Interop tests of Granary's RPC against the C++ reference (libcapnp-rpc):
 * the C++ peer (peer.c++) runs as a child on one end of a socketpair, as a
 * client of a Granary server object or as the server of a Granary client.
 * argv[1] is the peer executable. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "interop_c.h"
#include "rpc_internal.h"

static const char *peer_path;

typedef struct fixture {
    uv_loop_t loop;
    interop_state st;
    cp_rpc_conn *conn;
    cp_cap *remote; /* the C++ server's bootstrap, for client tests */
    uv_process_t proc;
    bool exited;
    int64_t exit_status;
    int term_signal;
    int disconnects;
    char *reason;
} fixture;

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    fixture *f = p->data;
    f->exited = true;
    f->exit_status = status;
    f->term_signal = sig;
    uv_close((uv_handle_t *)p, NULL);
}

static void on_disconnect(cp_rpc_conn *conn, const char *reason, void *ud)
{
    fixture *f = ud;
    f->disconnects++;
    free(f->reason);
    f->reason = gr_strdup(reason);
}

/* Starts the peer in mode on fd 3 = the other end of a socketpair and opens
 * our end, offering an Interop server when serve is set. */
static fixture *start(const char *mode, const char *scenario, const cp_rpc_options *opts,
                      bool serve, bool delay)
{
    fixture *f = gr_calloc(1, sizeof(*f));
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->st.loop = &f->loop;
    f->st.delay_counters = delay;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char *args[] = {(char *)peer_path, (char *)mode, (char *)"3", (char *)scenario, NULL};
    uv_stdio_container_t stdio[4] = {
        {.flags = UV_IGNORE},
        {.flags = UV_INHERIT_FD, .data.fd = 1},
        {.flags = UV_INHERIT_FD, .data.fd = 2},
        {.flags = UV_INHERIT_FD, .data.fd = sv[1]},
    };
    uv_process_options_t po = {
        .file = peer_path, .args = args, .stdio = stdio, .stdio_count = 4, .exit_cb = on_exit_cb};
    f->proc.data = f;
    int r = uv_spawn(&f->loop, &f->proc, &po);
    if (r < 0)
        fail_msg("spawn %s: %s", peer_path, uv_strerror(r));
    close(sv[1]);
    cp_cap *bootstrap = serve ? interop_server_new(&f->st) : NULL;
    _cleanup_error_ gr_error_t err = NULL;
    if (cp_rpc_conn_open(&f->loop, sv[0], bootstrap, opts, &f->conn, &err) < 0)
        fail_msg("%s", gr_error_msg(err));
    cp_cap_unref(bootstrap);
    cp_rpc_conn_on_disconnect(f->conn, on_disconnect, f);
    return f;
}

/* Runs until the peer has exited and the connection has ended. */
static void run_to_end(fixture *f)
{
    while ((!f->exited || !f->disconnects) && uv_run(&f->loop, UV_RUN_ONCE))
        ;
    assert_true(f->exited);
    assert_int_equal(f->term_signal, 0);
    assert_int_equal(f->exit_status, 0);
}

static void finish(fixture *f)
{
    cp_cap_unref(f->remote);
    cp_rpc_conn_free(f->conn);
    if (!f->exited)
        uv_process_kill(&f->proc, SIGKILL);
    while (uv_run(&f->loop, UV_RUN_DEFAULT))
        ;
    assert_int_equal(f->st.live, 0); /* every exported object was released */
    assert_int_equal(uv_loop_close(&f->loop), 0);
    free(f->reason);
    free(f);
}

/* ---- the C++ client against a Granary server --------------------------------------- */

static fixture *serve_cxx_client(const char *scenario, const cp_rpc_options *opts, bool delay)
{
    fixture *f = start("client", scenario, opts, true, delay);
    run_to_end(f);
    return f;
}

static void test_cxx_client_ping(void **state)
{
    fixture *f = serve_cxx_client("ping", NULL, false);
    assert_string_equal(f->reason, "peer closed the connection");
    finish(f);
}

static void test_cxx_client_pipeline(void **state)
{
    fixture *f = serve_cxx_client("pipeline", NULL, true);
    /* newCounter answers from a timer: the C++ side's inc() came before it
     * and waited in our queue. */
    cp_rpc_stats stats;
    cp_rpc_conn_stats(f->conn, &stats);
    assert_true(stats.early_pipelined >= 1);
    finish(f);
}

static void test_cxx_client_callback(void **state)
{
    fixture *f = serve_cxx_client("callback", NULL, false);
    finish(f);
}

static void test_cxx_client_exception(void **state)
{
    fixture *f = serve_cxx_client("exception", NULL, false);
    finish(f);
}

static void test_cxx_client_cancel(void **state)
{
    fixture *f = serve_cxx_client("cancel", NULL, false);
    assert_int_equal(f->st.canceled, 2);
    assert_int_equal(f->st.hanging, 0);
    finish(f);
}

static void test_cxx_client_stream(void **state)
{
    fixture *f = serve_cxx_client("stream", NULL, false);
    assert_int_equal(f->st.writes, 200);
    assert_int_equal(f->st.bytes, 200 * 4096);
    finish(f);
}

static void test_cxx_client_disconnect(void **state)
{
    fixture *f = serve_cxx_client("disconnect", NULL, false);
    /* The hang() left outstanding was canceled exactly once. */
    assert_int_equal(f->st.canceled, 1);
    assert_int_equal(f->st.hanging, 0);
    assert_int_equal(f->disconnects, 1);
    finish(f);
}

static void test_cxx_client_embargo(void **state)
{
    /* The peer checks the order; we forwarded its pipelined calls back to it
     * and reflected its Disembargo. */
    fixture *f = serve_cxx_client("embargo", NULL, false);
    cp_rpc_stats stats;
    cp_rpc_conn_stats(f->conn, &stats);
    assert_int_equal(stats.reflections, 1);
    finish(f);
}

static void test_cxx_client_promise(void **state)
{
    /* We export an unsettled promise (senderPromise), then Resolve it. */
    fixture *f = serve_cxx_client("promise", NULL, false);
    cp_rpc_stats stats;
    cp_rpc_conn_stats(f->conn, &stats);
    assert_int_equal(stats.resolves, 1);
    finish(f);
}

static void test_cxx_client_flood(void **state)
{
    cp_rpc_options opts = {.max_outstanding_calls = 4};
    fixture *f = serve_cxx_client("flood", &opts, false);
    assert_non_null(strstr(f->reason, "too many outstanding calls (limit 4)"));
    assert_int_equal(f->st.canceled, 4);
    finish(f);
}

/* ---- a Granary client against the C++ server ------------------------------------------ */

static fixture *client_of_cxx(const cp_rpc_options *opts)
{
    fixture *f = start("serve", NULL, opts, false, false);
    f->remote = cp_rpc_conn_bootstrap(f->conn);
    return f;
}

static cp_request *ping_req(cp_cap *cap, uint64_t n)
{
    cp_request *req = cp_request_new(cap, Interop_TYPE_ID, Interop_ping_METHOD_ID);
    Interop_ping_Params_B p = {cp_request_params(req, 1, 0)};
    Interop_ping_Params_set_n(p, n);
    return req;
}

static uint64_t ping(fixture *f, uint64_t n)
{
    interop_outcome *o = interop_call(&f->loop, ping_req(f->remote, n));
    assert_true(o->done);
    if (o->failed)
        fail_msg("ping failed: %s", o->reason);
    uint64_t v = Interop_ping_Results_get_n((Interop_ping_Results_R){o->results});
    interop_outcome_free(o);
    return v;
}

static void end_client(fixture *f)
{
    cp_cap_unref(gr_steal_pointer(&f->remote));
    cp_rpc_conn_close(f->conn); /* the C++ server exits when we go */
    run_to_end(f);
    finish(f);
}

static void test_c_client_ping(void **state)
{
    fixture *f = client_of_cxx(NULL);
    for (uint64_t i = 0; i < 100; i++)
        assert_int_equal(ping(f, i * 7), i * 7 + 1);
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_echo_METHOD_ID);
    const char *text = "h\xc3\xa9llo from C";
    cp_set_text(cp_request_params(req, 0, 1), 0, text, strlen(text));
    interop_outcome *o = interop_call(&f->loop, req);
    assert_false(o->failed);
    assert_string_equal(cp_get_text(o->results, 0, "").str, text);
    interop_outcome_free(o);
    end_client(f);
}

static cp_request *inc_req(cp_cap *counter, int64_t by)
{
    cp_request *req = cp_request_new(counter, Counter_TYPE_ID, Counter_inc_METHOD_ID);
    Counter_inc_Params_set_by((Counter_inc_Params_B){cp_request_params(req, 1, 0)}, by);
    return req;
}

static cp_request *add_req(cp_cap *remote, cp_cap *counter, int64_t by)
{
    cp_request *req = cp_request_new(remote, Interop_TYPE_ID, Interop_add_METHOD_ID);
    cp_struct_builder p = cp_request_params(req, 1, 1);
    cp_set_capability(p, 0, cp_cap_ref(counter));
    Interop_add_Params_set_by((Interop_add_Params_B){p}, by);
    return req;
}

static int64_t value_of(interop_outcome *o)
{
    assert_true(o->done);
    if (o->failed)
        fail_msg("call failed: %s", o->reason);
    return cp_get_i64(o->results, 0, 0);
}

static void test_c_client_pipeline(void **state)
{
    fixture *f = client_of_cxx(NULL);
    _cleanup_error_ gr_error_t err = NULL;
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_newCounter_METHOD_ID);
    Interop_newCounter_Params_set_start((Interop_newCounter_Params_B){cp_request_params(req, 1, 0)},
                                        10);
    cp_pending *pending = NULL;
    interop_outcome *made = interop_send(req, &pending, &err);
    assert_non_null(made);
    assert_non_null(pending);
    uint16_t path[] = {0};
    cp_cap *counter = cp_pending_pipeline(pending, path, 1);
    /* Both leave before newCounter has returned: promisedAnswer targets. */
    interop_outcome *inc = interop_send(inc_req(counter, 5), NULL, &err);
    interop_outcome *add = interop_send(add_req(f->remote, counter, 1), NULL, &err);
    assert_false(made->done);
    interop_wait(&f->loop, inc);
    interop_wait(&f->loop, add);
    assert_int_equal(value_of(inc), 15);
    assert_int_equal(value_of(add), 16); /* receiverAnswer */
    interop_wait(&f->loop, made);
    assert_false(made->failed);
    cp_cap *resolved = cp_get_capability(made->results, 0);
    assert_non_null(resolved);
    interop_outcome *add2 = interop_call(&f->loop, add_req(f->remote, resolved, 100));
    assert_int_equal(value_of(add2), 116); /* receiverHosted */
    interop_outcome *inc2 = interop_call(&f->loop, inc_req(counter, 1));
    assert_int_equal(value_of(inc2), 117);
    interop_outcome_free(inc);
    interop_outcome_free(add);
    interop_outcome_free(add2);
    interop_outcome_free(inc2);
    interop_outcome_free(made);
    cp_cap_unref(resolved);
    cp_cap_unref(counter);
    end_client(f);
}

static uint32_t live_remote(fixture *f)
{
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_liveObjects_METHOD_ID);
    interop_outcome *o = interop_call(&f->loop, req);
    assert_false(o->failed);
    uint32_t n = cp_get_u32(o->results, 0, 0);
    interop_outcome_free(o);
    return n;
}

static void test_c_client_callback(void **state)
{
    fixture *f = client_of_cxx(NULL);
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_callBack_METHOD_ID);
    cp_struct_builder p = cp_request_params(req, 1, 1);
    cp_set_capability(p, 0, interop_callback_new(&f->st));
    Interop_callBack_Params_set_n((Interop_callBack_Params_B){p}, 5);
    interop_outcome *o = interop_call(&f->loop, req);
    assert_int_equal(value_of(o), 100);
    interop_outcome_free(o);
    /* The C++ side released our callback: a round trip later it is gone. */
    assert_int_equal(ping(f, 1), 2);
    assert_int_equal(f->st.callbacks_destroyed, 1);
    assert_int_equal(f->st.live, 0);
    /* And objects it gave us live exactly as long as our references. */
    req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_newCounter_METHOD_ID);
    cp_request_params(req, 1, 0);
    o = interop_call(&f->loop, req);
    assert_false(o->failed);
    cp_cap *counter = cp_get_capability(o->results, 0);
    interop_outcome_free(o);
    assert_int_equal(live_remote(f), 1);
    cp_rpc_stats stats;
    cp_rpc_conn_stats(f->conn, &stats);
    assert_int_equal(stats.imports, 2); /* bootstrap and counter */
    cp_cap_unref(counter);
    assert_int_equal(live_remote(f), 0);
    end_client(f);
}

static void test_c_client_exception(void **state)
{
    fixture *f = client_of_cxx(NULL);
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_fail_METHOD_ID);
    const char *why = "boom 42: the reason travels";
    cp_set_text(cp_request_params(req, 0, 1), 0, why, strlen(why));
    interop_outcome *o = interop_call(&f->loop, req);
    assert_true(o->failed);
    assert_int_equal(o->type, CP_EXC_FAILED);
    assert_non_null(strstr(o->reason, why));
    interop_outcome_free(o);
    req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_notImplemented_METHOD_ID);
    o = interop_call(&f->loop, req);
    assert_true(o->failed);
    assert_int_equal(o->type, CP_EXC_UNIMPLEMENTED);
    interop_outcome_free(o);
    req = cp_request_new(f->remote, 0x1234567812345678ull, 3);
    o = interop_call(&f->loop, req);
    assert_true(o->failed);
    assert_int_equal(o->type, CP_EXC_UNIMPLEMENTED);
    interop_outcome_free(o);

    /* A call pipelined on an answer that fails fails with its reason, and
     * the connection lives on: no Disembargo goes to an exception (the C++
     * side aborts on one). */
    req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_fail_METHOD_ID);
    cp_set_text(cp_request_params(req, 0, 1), 0, why, strlen(why));
    cp_pending *pending = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    o = interop_send(req, &pending, &err);
    assert_non_null(o);
    uint16_t path[] = {0};
    cp_cap *counter = cp_pending_pipeline(pending, path, 1);
    interop_outcome *inc = interop_send(inc_req(counter, 5), NULL, &err);
    assert_non_null(inc);
    interop_wait(&f->loop, o);
    interop_wait(&f->loop, inc);
    assert_true(o->failed && inc->failed);
    assert_non_null(strstr(inc->reason, why));
    interop_outcome_free(o);
    interop_outcome_free(inc);
    cp_cap_unref(counter);
    assert_int_equal(ping(f, 41), 42);
    assert_int_equal(ping(f, 42), 43);
    end_client(f);
}

static void test_c_client_cancel(void **state)
{
    fixture *f = client_of_cxx(NULL);
    _cleanup_error_ gr_error_t err = NULL;
    cp_pending *h1 = NULL, *h2 = NULL;
    interop_outcome *o1 =
        interop_send(cp_request_new(f->remote, Interop_TYPE_ID, Interop_hang_METHOD_ID), &h1, &err);
    interop_outcome *o2 =
        interop_send(cp_request_new(f->remote, Interop_TYPE_ID, Interop_hang_METHOD_ID), &h2, &err);
    assert_int_equal(ping(f, 0), 1);
    cp_pending_cancel(h1);
    cp_pending_cancel(h2);
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_canceledCount_METHOD_ID);
    interop_outcome *o = interop_call(&f->loop, req);
    assert_false(o->failed);
    assert_int_equal(cp_get_u32(o->results, 0, 0), 2);
    interop_outcome_free(o);
    assert_int_equal(ping(f, 0), 1); /* the canceled Returns came back and were dropped */
    assert_false(o1->done);
    assert_false(o2->done);
    cp_rpc_stats stats;
    cp_rpc_conn_stats(f->conn, &stats);
    assert_int_equal(stats.questions, 0);
    interop_outcome_free(o1);
    interop_outcome_free(o2);
    end_client(f);
}

typedef struct stream_wait {
    bool ready;
} stream_wait;

static void flow_ready(cp_flow *flow, void *ud)
{
    ((stream_wait *)ud)->ready = true;
}

static void test_c_client_stream(void **state)
{
    fixture *f = client_of_cxx(NULL);
    stream_wait w = {0};
    const size_t window = 16 * 1024;
    cp_flow *flow = cp_flow_new(window, flow_ready, &w);
    uint8_t chunk[4096];
    memset(chunk, 'y', sizeof(chunk));
    int blocked = 0;
    size_t frame = 0;
    for (int i = 0; i < 200; i++) {
        cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_write_METHOD_ID);
        cp_set_data(cp_request_params(req, 0, 1), 0, chunk, sizeof(chunk));
        frame = cp_message_frame_size(req->msg);
        _cleanup_error_ gr_error_t err = NULL;
        int r = cp_flow_send(flow, req, &err);
        if (r < 0)
            fail_msg("%s", gr_error_msg(err));
        if (r == 0) {
            blocked++;
            w.ready = false;
            while (!w.ready && uv_run(&f->loop, UV_RUN_ONCE))
                ;
            assert_true(w.ready);
            assert_true(cp_flow_in_flight(flow) < window);
        }
    }
    assert_true(blocked > 0);
    assert_true(cp_flow_max_in_flight(flow) < window + frame);
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_writeDone_METHOD_ID);
    interop_outcome *o = interop_call(&f->loop, req);
    assert_false(o->failed);
    assert_int_equal(cp_get_u64(o->results, 0, 0), 200 * 4096);
    assert_int_equal(cp_get_u32(o->results, 8, 0), 200);
    interop_outcome_free(o);
    assert_int_equal(cp_flow_pending_calls(flow), 0);
    cp_flow_free(flow);
    end_client(f);
}

static cp_request *cb_call_req(cp_cap *cb, uint32_t i)
{
    cp_request *req = cp_request_new(cb, Callback_TYPE_ID, Callback_call_METHOD_ID);
    Callback_call_Params_set_i((Callback_call_Params_B){cp_request_params(req, 1, 0)}, i);
    return req;
}

static void test_c_client_embargo(void **state)
{
    fixture *f = client_of_cxx(NULL);
    _cleanup_error_ gr_error_t err = NULL;
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_reflect_METHOD_ID);
    cp_set_capability(cp_request_params(req, 0, 1), 0, interop_callback_new(&f->st));
    cp_pending *pending = NULL;
    interop_outcome *reflected = interop_send(req, &pending, &err);
    uint16_t path[] = {0};
    cp_cap *cb = cp_pending_pipeline(pending, path, 1);
    interop_outcome *calls[5];
    for (uint32_t i = 0; i < 3; i++) /* to the C++ side and back to us */
        calls[i] = interop_send(cb_call_req(cb, i), NULL, &err);
    interop_wait(&f->loop, reflected);
    assert_false(reflected->failed);
    /* The promise now resolves to our own object, but calls 0-2 may still be
     * on their way back: these must queue behind the Disembargo. */
    calls[3] = interop_send(cb_call_req(cb, 3), NULL, &err);
    calls[4] = interop_send(cb_call_req(cb, 4), NULL, &err);
    for (int i = 0; i < 5; i++) {
        interop_wait(&f->loop, calls[i]);
        assert_int_equal(value_of(calls[i]), i * 10);
        interop_outcome_free(calls[i]);
    }
    assert_int_equal(f->st.out_of_order, 0);
    cp_rpc_stats stats;
    cp_rpc_conn_stats(f->conn, &stats);
    assert_int_equal(stats.embargoes, 1);
    interop_outcome_free(reflected);
    cp_cap_unref(cb);
    end_client(f);
}

static void test_c_client_promise(void **state)
{
    /* The C++ side sends a senderPromise and later a Resolve. */
    fixture *f = client_of_cxx(NULL);
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_promiseCounter_METHOD_ID);
    cp_set_i64(cp_request_params(req, 1, 0), 0, 100, 0);
    interop_outcome *o = interop_call(&f->loop, req);
    assert_false(o->failed);
    cp_cap *counter = cp_get_capability(o->results, 0);
    interop_outcome_free(o);
    assert_non_null(counter);
    bool was_promise = counter->kind == CP__CAP_IMPORT && counter->is_promise;
    for (int i = 1; i <= 5; i++) {
        interop_outcome *inc = interop_call(&f->loop, inc_req(counter, 1));
        assert_int_equal(value_of(inc), 100 + i);
        interop_outcome_free(inc);
    }
    assert_true(was_promise);
    assert_non_null(counter->resolved); /* the Resolve came */
    cp_cap_unref(counter);
    end_client(f);
}

static void test_c_client_server_disconnects(void **state)
{
    fixture *f = client_of_cxx(NULL);
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(ping(f, 0), 1);
    interop_outcome *hang = interop_send(
        cp_request_new(f->remote, Interop_TYPE_ID, Interop_hang_METHOD_ID), NULL, &err);
    uint16_t path[] = {0};
    cp_pending *pc = NULL;
    interop_outcome *made = interop_send(
        cp_request_new(f->remote, Interop_TYPE_ID, Interop_disconnectMe_METHOD_ID), &pc, &err);
    cp_cap *never = cp_pending_pipeline(pc, path, 1);
    run_to_end(f);
    assert_true(hang->done && made->done);
    assert_int_equal(hang->type, CP_EXC_DISCONNECTED);
    assert_int_equal(made->type, CP_EXC_DISCONNECTED);
    assert_int_equal(hang->callbacks, 1);
    assert_int_equal(made->callbacks, 1);
    assert_int_equal(f->disconnects, 1);
    assert_true(cp_cap_is_broken(f->remote));
    assert_true(cp_cap_is_broken(never));
    gr_error_release(&err);
    assert_true(cp_request_send(ping_req(f->remote, 1), NULL, NULL, NULL, &err) < 0);
    interop_outcome_free(hang);
    interop_outcome_free(made);
    cp_cap_unref(never);
    cp_cap_unref(gr_steal_pointer(&f->remote));
    finish(f);
}

static void test_c_client_message_limit(void **state)
{
    cp_rpc_options opts = {.max_message_bytes = 4096};
    fixture *f = client_of_cxx(&opts);
    cp_request *req = cp_request_new(f->remote, Interop_TYPE_ID, Interop_echo_METHOD_ID);
    char *big = gr_malloc(65536);
    memset(big, 'z', 65535);
    big[65535] = 0;
    /* Sending is fine (the limit is on what we accept); the echo is too big. */
    cp_set_text(cp_request_params(req, 0, 1), 0, big, 65535);
    free(big);
    interop_outcome *o = interop_call(&f->loop, req);
    assert_true(o->failed);
    assert_int_equal(o->type, CP_EXC_DISCONNECTED);
    assert_int_equal(o->callbacks, 1);
    assert_non_null(strstr(f->reason, "message rejected"));
    interop_outcome_free(o);
    run_to_end(f);
    cp_cap_unref(gr_steal_pointer(&f->remote));
    finish(f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_interop PEER\n");
        return 2;
    }
    peer_path = argv[1];
    /* The peer links the uninstrumented libcapnp; its own leaks are not ours. */
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    signal(SIGPIPE, SIG_IGN);
    alarm(240);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cxx_client_ping),
        cmocka_unit_test(test_cxx_client_pipeline),
        cmocka_unit_test(test_cxx_client_callback),
        cmocka_unit_test(test_cxx_client_exception),
        cmocka_unit_test(test_cxx_client_cancel),
        cmocka_unit_test(test_cxx_client_stream),
        cmocka_unit_test(test_cxx_client_disconnect),
        cmocka_unit_test(test_cxx_client_embargo),
        cmocka_unit_test(test_cxx_client_promise),
        cmocka_unit_test(test_cxx_client_flood),
        cmocka_unit_test(test_c_client_ping),
        cmocka_unit_test(test_c_client_pipeline),
        cmocka_unit_test(test_c_client_callback),
        cmocka_unit_test(test_c_client_exception),
        cmocka_unit_test(test_c_client_cancel),
        cmocka_unit_test(test_c_client_stream),
        cmocka_unit_test(test_c_client_embargo),
        cmocka_unit_test(test_c_client_promise),
        cmocka_unit_test(test_c_client_server_disconnects),
        cmocka_unit_test(test_c_client_message_limit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
