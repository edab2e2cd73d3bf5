/* RPC tests without the C++ peer: local calls and promises, two Granary
 * vats wired back to back in memory (every byte still goes through the
 * framing and the protocol), and hand-made hostile messages fed to a
 * connection, checking what it answers. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "interop_c.h"
#include "rpc_internal.h"

/* ---- two connections back to back ------------------------------------------------ */

typedef struct wire {
    cp_rpc_conn *a, *b;
    gr_buf to_a, to_b;
} wire;

static void write_to_b(const void *d, size_t n, void *ud)
{
    gr_buf_append(&((wire *)ud)->to_b, d, n);
}

static void write_to_a(const void *d, size_t n, void *ud)
{
    gr_buf_append(&((wire *)ud)->to_a, d, n);
}

static void feed(cp_rpc_conn *c, gr_buf *q)
{
    gr_buf b = *q;
    *q = (gr_buf)GR_BUF_INIT;
    if (b.len)
        cp__rpc_conn_feed(c, b.data, b.len);
    gr_buf_release(&b);
}

static void pump(wire *w)
{
    while (w->to_a.len || w->to_b.len) {
        feed(w->b, &w->to_b);
        feed(w->a, &w->to_a);
    }
}

static void wire_init(wire *w, cp_cap *a_boot, cp_cap *b_boot)
{
    memset(w, 0, sizeof(*w));
    w->a = cp__rpc_conn_new_raw(a_boot, NULL, write_to_b, w);
    w->b = cp__rpc_conn_new_raw(b_boot, NULL, write_to_a, w);
}

static void wire_release(wire *w)
{
    cp_rpc_conn_free(w->a);
    cp_rpc_conn_free(w->b);
    gr_buf_release(&w->to_a);
    gr_buf_release(&w->to_b);
}

static cp_request *ping_req(cp_cap *cap, uint64_t n)
{
    cp_request *req = cp_request_new(cap, Interop_TYPE_ID, Interop_ping_METHOD_ID);
    Interop_ping_Params_set_n((Interop_ping_Params_B){cp_request_params(req, 1, 0)}, n);
    return req;
}

static cp_request *cb_req(cp_cap *cb, uint32_t i)
{
    cp_request *req = cp_request_new(cb, Callback_TYPE_ID, Callback_call_METHOD_ID);
    Callback_call_Params_set_i((Callback_call_Params_B){cp_request_params(req, 1, 0)}, i);
    return req;
}

static interop_outcome *send_call(cp_request *req, cp_pending **p)
{
    _cleanup_error_ gr_error_t err = NULL;
    interop_outcome *o = interop_send(req, p, &err);
    if (!o)
        fail_msg("%s", gr_error_msg(err));
    return o;
}

static int64_t i64_of(interop_outcome *o)
{
    assert_true(o->done);
    if (o->failed)
        fail_msg("call failed: %s", o->reason);
    return cp_get_i64(o->results, 0, 0);
}

/* ---- local objects ------------------------------------------------------------------- */

static void test_local_calls(void **state)
{
    interop_state st = {.loop = uv_default_loop()};
    cp_cap *srv = interop_server_new(&st);
    cp_pending *p = (cp_pending *)1;
    interop_outcome *o = send_call(ping_req(srv, 41), &p);
    assert_true(o->done); /* answered inside cp_request_send */
    assert_null(p);
    assert_int_equal(cp_get_u64(o->results, 0, 0), 42);
    interop_outcome_free(o);

    /* A call answered later, canceled by the caller: the server hears of it. */
    o = send_call(cp_request_new(srv, Interop_TYPE_ID, Interop_hang_METHOD_ID), &p);
    assert_non_null(p);
    cp_pending_cancel(p);
    assert_int_equal(st.canceled, 1);
    assert_false(o->done);
    interop_outcome_free(o);

    /* Pipelining on a local call that answers from a timer: queued, then replayed. */
    st.delay_counters = true;
    cp_request *req = cp_request_new(srv, Interop_TYPE_ID, Interop_newCounter_METHOD_ID);
    Interop_newCounter_Params_set_start((Interop_newCounter_Params_B){cp_request_params(req, 1, 0)},
                                        7);
    interop_outcome *made = send_call(req, &p);
    static const uint16_t path[] = {0};
    cp_cap *counter = cp_pending_pipeline(p, path, 1);
    req = cp_request_new(counter, Counter_TYPE_ID, Counter_inc_METHOD_ID);
    Counter_inc_Params_set_by((Counter_inc_Params_B){cp_request_params(req, 1, 0)}, 3);
    interop_outcome *inc = send_call(req, NULL);
    assert_false(inc->done);
    interop_wait(uv_default_loop(), inc);
    assert_int_equal(i64_of(inc), 10);
    assert_true(made->done);
    interop_outcome_free(inc);
    interop_outcome_free(made);
    cp_cap_unref(counter);
    assert_int_equal(st.live, 0);

    /* A streaming flow reports the first failure of its calls to later sends. */
    cp_flow *flow = cp_flow_new(0, NULL, NULL);
    _cleanup_error_ gr_error_t ferr = NULL;
    assert_int_equal(cp_flow_send(flow, ping_req(srv, 1), &ferr), 1);
    cp_request *bad = cp_request_new(srv, Interop_TYPE_ID, Interop_fail_METHOD_ID);
    cp_set_text(cp_request_params(bad, 0, 1), 0, "disk full", 9);
    assert_true(cp_flow_send(flow, bad, &ferr) < 0); /* answered at once: already failed */
    gr_error_release(&ferr);
    assert_true(cp_flow_send(flow, ping_req(srv, 2), &ferr) < 0);
    assert_non_null(strstr(gr_error_msg(ferr), "disk full"));
    assert_int_equal(cp_flow_in_flight(flow), 0);
    cp_flow_free(flow);

    /* A broken capability refuses at once, without calling back. */
    cp_cap *broken = cp_cap_broken(CP_EXC_OVERLOADED, "busy %d", 3);
    assert_true(cp_cap_is_broken(broken));
    _cleanup_error_ gr_error_t err = NULL;
    assert_true(cp_request_send(ping_req(broken, 1), NULL, NULL, NULL, &err) < 0);
    assert_non_null(strstr(gr_error_msg(err), "busy 3"));
    cp_cap_unref(broken);
    cp_cap_unref(srv);
    while (uv_run(uv_default_loop(), UV_RUN_DEFAULT))
        ;
}

/* A server that holds its first call and answers it with the capability
 * passed to its second: a promise can be made to resolve to itself. */
typedef struct keeper {
    cp_server base;
    cp_call *held;
} keeper;

static void keeper_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    keeper *k = (keeper *)self;
    if (method == 0) {
        k->held = call;
        return;
    }
    cp_set_capability(cp_call_results(k->held, 0, 1), 0,
                      cp_get_capability(cp_call_params(call), 0));
    cp_call_return(gr_steal_pointer(&k->held));
    cp_call_return(call);
}

static void keeper_destroy(cp_server *self)
{
    (void)self;
}

static const cp_server_vtable keeper_vt = {"keeper", keeper_dispatch, keeper_destroy};

static void test_promise_cycle(void **state)
{
    keeper k = {.base.vt = &keeper_vt};
    cp_cap *cap = cp_server_cap(&k.base);
    cp_pending *p = NULL;
    interop_outcome *held = send_call(cp_request_new(cap, 1, 0), &p);
    static const uint16_t path[] = {0};
    cp_cap *self_promise = cp_pending_pipeline(p, path, 1);
    interop_outcome *queued = send_call(cb_req(self_promise, 0), NULL);
    cp_request *give = cp_request_new(cap, 1, 1);
    cp_set_capability(cp_request_params(give, 0, 1), 0, cp_cap_ref(self_promise));
    interop_outcome *gave = send_call(give, NULL);
    assert_true(held->done && gave->done);
    assert_true(cp_cap_is_broken(self_promise));
    assert_true(queued->done && queued->failed);
    assert_non_null(strstr(queued->reason, "resolved to itself"));
    interop_outcome_free(held);
    interop_outcome_free(gave);
    interop_outcome_free(queued);
    cp_cap_unref(self_promise);
    cp_cap_unref(cap);
}

/* ---- two Granary vats ------------------------------------------------------------------ */

static void test_two_vats(void **state)
{
    interop_state sa = {0}, sb = {0};
    cp_cap *srv = interop_server_new(&sb);
    wire w;
    wire_init(&w, NULL, srv);
    cp_cap_unref(srv);
    cp_cap *remote = cp_rpc_conn_bootstrap(w.a);

    interop_outcome *o = send_call(ping_req(remote, 1), NULL);
    pump(&w);
    assert_int_equal(cp_get_u64(o->results, 0, 0), 2);
    interop_outcome_free(o);

    /* Pipelined call, and the promise passed back as a parameter. */
    cp_pending *p = NULL;
    cp_request *req = cp_request_new(remote, Interop_TYPE_ID, Interop_newCounter_METHOD_ID);
    Interop_newCounter_Params_set_start((Interop_newCounter_Params_B){cp_request_params(req, 1, 0)},
                                        10);
    interop_outcome *made = send_call(req, &p);
    static const uint16_t path[] = {0};
    cp_cap *counter = cp_pending_pipeline(p, path, 1);
    req = cp_request_new(remote, Interop_TYPE_ID, Interop_add_METHOD_ID);
    cp_struct_builder ap = cp_request_params(req, 1, 1);
    cp_set_capability(ap, 0, cp_cap_ref(counter));
    Interop_add_Params_set_by((Interop_add_Params_B){ap}, 5);
    interop_outcome *add = send_call(req, NULL);
    pump(&w);
    assert_int_equal(i64_of(add), 15);
    interop_outcome_free(add);
    interop_outcome_free(made);
    cp_cap_unref(counter);
    pump(&w);
    assert_int_equal(sb.live, 0); /* the counter went with our last reference */

    /* A callback from A called by B, then released by B. */
    req = cp_request_new(remote, Interop_TYPE_ID, Interop_callBack_METHOD_ID);
    cp_struct_builder cp = cp_request_params(req, 1, 1);
    cp_set_capability(cp, 0, interop_callback_new(&sa));
    Interop_callBack_Params_set_n((Interop_callBack_Params_B){cp}, 4);
    o = send_call(req, NULL);
    pump(&w);
    assert_int_equal(i64_of(o), 60);
    interop_outcome_free(o);
    assert_int_equal(sa.callbacks_destroyed, 1);

    cp_rpc_stats st;
    cp_rpc_conn_stats(w.a, &st);
    assert_int_equal(st.imports, 1);
    assert_int_equal(st.exports, 0);
    assert_int_equal(st.questions, 0);
    cp_rpc_conn_stats(w.b, &st);
    assert_int_equal(st.exports, 1);
    assert_int_equal(st.answers, 0);

    /* Embargo between two of ours: A's own callback comes back through B. */
    req = cp_request_new(remote, Interop_TYPE_ID, Interop_reflect_METHOD_ID);
    cp_set_capability(cp_request_params(req, 0, 1), 0, interop_callback_new(&sa));
    interop_outcome *refl = send_call(req, &p);
    cp_cap *cb = cp_pending_pipeline(p, path, 1);
    interop_outcome *calls[4];
    for (uint32_t i = 0; i < 3; i++)
        calls[i] = send_call(cb_req(cb, i), NULL);
    feed(w.b, &w.to_b); /* B answers reflect and sends the three calls back to A */
    feed(w.a, &w.to_a); /* A learns the answer is its own object: embargo */
    assert_true(refl->done);
    cp_rpc_conn_stats(w.a, &st);
    assert_int_equal(st.embargoes, 1);
    calls[3] = send_call(cb_req(cb, 3), NULL);
    assert_false(calls[3]->done); /* held until the Disembargo comes back */
    pump(&w);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(i64_of(calls[i]), i * 10);
        interop_outcome_free(calls[i]);
    }
    assert_int_equal(sa.out_of_order, 0);
    cp_rpc_conn_stats(w.b, &st);
    assert_int_equal(st.reflections, 1);
    interop_outcome_free(refl);
    cp_cap_unref(cb);
    pump(&w);

    /* A promise that resolves to an exception is not embargoed: the peer
     * could not reflect a Disembargo on it (the C++ implementation aborts
     * the connection), and calls on it all fail alike anyway. */
    req = cp_request_new(remote, Interop_TYPE_ID, Interop_fail_METHOD_ID);
    cp_set_text(cp_request_params(req, 0, 1), 0, "no such object", 14);
    interop_outcome *failed = send_call(req, &p);
    cb = cp_pending_pipeline(p, path, 1);
    calls[0] = send_call(cb_req(cb, 0), NULL); /* pipelined: it reaches B first */
    pump(&w);
    assert_true(failed->done && failed->failed);
    assert_true(calls[0]->done && calls[0]->failed);
    assert_non_null(strstr(calls[0]->reason, "no such object"));
    gr_error_t berr = NULL;
    assert_null(interop_send(cb_req(cb, 1), NULL, &berr)); /* now broken here */
    assert_non_null(strstr(gr_error_msg(berr), "no such object"));
    gr_error_release(&berr);
    cp_rpc_conn_stats(w.a, &st);
    assert_int_equal(st.embargoes, 1); /* still only the one above */
    assert_true(cp_rpc_conn_alive(w.a) && cp_rpc_conn_alive(w.b));
    interop_outcome_free(calls[0]);
    interop_outcome_free(failed);
    cp_cap_unref(cb);
    pump(&w);

    /* Disconnect: outstanding calls fail once, imports break. */
    o = send_call(cp_request_new(remote, Interop_TYPE_ID, Interop_hang_METHOD_ID), NULL);
    pump(&w);
    cp__rpc_conn_disconnect(w.b, "test cut the wire");
    cp__rpc_conn_disconnect(w.a, "test cut the wire");
    assert_true(o->done);
    assert_int_equal(o->callbacks, 1);
    assert_int_equal(o->type, CP_EXC_DISCONNECTED);
    assert_int_equal(sb.canceled, 1);
    assert_true(cp_cap_is_broken(remote));
    interop_outcome_free(o);
    cp_cap_unref(remote);
    wire_release(&w);
    assert_int_equal(sa.live, 0);
    assert_int_equal(sb.live, 0);
}

static void test_question_limit(void **state)
{
    interop_state sb = {0};
    cp_cap *srv = interop_server_new(&sb);
    wire w;
    memset(&w, 0, sizeof(w));
    cp_rpc_options few = {.max_questions = 2};
    w.a = cp__rpc_conn_new_raw(NULL, &few, write_to_b, &w);
    w.b = cp__rpc_conn_new_raw(srv, NULL, write_to_a, &w);
    cp_cap_unref(srv);
    cp_cap *remote = cp_rpc_conn_bootstrap(w.a);
    pump(&w);
    interop_outcome *h[2];
    for (int i = 0; i < 2; i++)
        h[i] = send_call(cp_request_new(remote, Interop_TYPE_ID, Interop_hang_METHOD_ID), NULL);
    _cleanup_error_ gr_error_t err = NULL;
    assert_true(cp_request_send(ping_req(remote, 1), NULL, NULL, NULL, &err) < 0);
    assert_non_null(strstr(gr_error_msg(err), "(limit 2)"));
    pump(&w);
    assert_int_equal(sb.hanging, 2);
    cp_rpc_conn_free(w.b); /* the peer goes: both calls fail once */
    cp__rpc_conn_disconnect(w.a, "peer gone");
    for (int i = 0; i < 2; i++) {
        assert_true(h[i]->done && h[i]->failed);
        assert_int_equal(h[i]->callbacks, 1);
        assert_int_equal(h[i]->type, CP_EXC_DISCONNECTED);
        interop_outcome_free(h[i]);
    }
    assert_int_equal(sb.canceled, 2);
    cp_cap_unref(remote);
    w.b = NULL;
    cp_rpc_conn_free(w.a);
    gr_buf_release(&w.to_a);
    gr_buf_release(&w.to_b);
}

/* ---- hostile input --------------------------------------------------------------------- */

typedef struct victim {
    interop_state st;
    cp_rpc_conn *conn;
    gr_buf out; /* what it sent */
} victim;

static void collect(const void *d, size_t n, void *ud)
{
    gr_buf_append(&((victim *)ud)->out, d, n);
}

static victim *victim_new(const cp_rpc_options *opts)
{
    victim *v = gr_calloc(1, sizeof(*v));
    cp_cap *srv = interop_server_new(&v->st);
    v->conn = cp__rpc_conn_new_raw(srv, opts, collect, v);
    cp_cap_unref(srv);
    return v;
}

static void victim_free(victim *v)
{
    cp_rpc_conn_free(v->conn);
    gr_buf_release(&v->out);
    assert_int_equal(v->st.live, 0);
    free(v);
}

/* Feeds one message built by fill into v. */
static int inject(victim *v, uint16_t which, uint16_t dw, uint16_t pw,
                  void (*fill)(cp_struct_builder b, const uint32_t *args), const uint32_t *args)
{
    cp_message m;
    cp_message_init(&m, 0);
    cp_struct_builder root = cp_message_init_root(&m, 1, 1);
    cp_set_u16(root, 0, which, 0);
    cp_struct_builder body = cp_init_struct(root, 0, dw, pw);
    if (fill)
        fill(body, args);
    gr_buf b = GR_BUF_INIT;
    cp_message_write(&m, &b);
    cp_message_release(&m);
    int r = cp__rpc_conn_feed(v->conn, b.data, b.len);
    gr_buf_release(&b);
    return r;
}

/* Calls fn(which, body, ud) for each message in data, in order, until it
 * returns false. */
static void each_message(const char *data, size_t len,
                         bool (*fn)(uint16_t which, cp_struct_reader body, void *ud), void *ud)
{
    cp_stream_reader sr;
    cp_stream_reader_init(&sr, 0, NULL);
    size_t off = 0;
    bool more = true;
    while (off < len && more) {
        size_t used = 0;
        gr_error_t err = NULL;
        int r = cp_stream_reader_feed(&sr, data + off, len - off, &used, &err);
        assert_true(r >= 0);
        off += used;
        if (r != 1)
            continue;
        cp_message m;
        assert_int_equal(cp_stream_reader_take(&sr, &m, &err), 0);
        cp_struct_reader root = cp_message_root(&m);
        more = fn(cp_get_u16(root, 0, 0), cp_get_struct(root, 0, cp_ptr_null()), ud);
        cp_message_release(&m);
    }
    cp_stream_reader_release(&sr);
}

/* The messages v sent, as (which, first u32 of the body) pairs; the last
 * Abort's reason goes to *abort_reason (caller frees). */
typedef struct sent_list {
    uint16_t *which;
    uint32_t *first;
    int n, max;
    char **abort_reason;
} sent_list;

static bool note_kind(uint16_t which, cp_struct_reader body, void *ud)
{
    sent_list *k = ud;
    k->which[k->n] = which;
    k->first[k->n] = cp_get_u32(body, 0, 0);
    if (which == CP__MSG_ABORT && k->abort_reason) {
        free(*k->abort_reason);
        *k->abort_reason = gr_strdup(cp_get_text(body, 0, "").str);
    }
    return ++k->n < k->max;
}

static int sent_kinds(victim *v, uint16_t *which, uint32_t *first, int max, char **abort_reason)
{
    sent_list k = {which, first, 0, max, abort_reason};
    if (max > 0)
        each_message(v->out.data, v->out.len, note_kind, &k);
    return k.n;
}

static void fill_call(cp_struct_builder c, const uint32_t *a)
{
    /* args: question id, export id, method */
    cp_set_u32(c, 0, a[0], 0);
    cp_set_u64(c, 8, Interop_TYPE_ID, 0);
    cp_set_u16(c, 4, (uint16_t)a[2], 0);
    cp_struct_builder mt = cp_init_struct(c, 0, 1, 1);
    cp_set_u32(mt, 0, a[1], 0);
    cp_struct_builder payload = cp_init_struct(c, 1, 0, 2);
    cp_init_struct(payload, 0, 1, 1);
}

static void fill_u32s(cp_struct_builder b, const uint32_t *a)
{
    cp_set_u32(b, 0, a[0], 0);
    cp_set_u32(b, 4, a[1], 0);
}

static void fill_receiver_loopback(cp_struct_builder d, const uint32_t *a)
{
    cp_init_struct(d, 0, 1, 1);
    cp_set_u16(d, 4, 1, 0);
    cp_set_u32(d, 0, a[0], 0);
}

static void test_hostile_duplicate_question(void **state)
{
    victim *v = victim_new(NULL);
    const uint32_t boot[] = {0, 0};
    assert_int_equal(inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot), 0);
    const uint32_t hang[] = {5, 0, Interop_hang_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call, hang), 0);
    assert_int_equal(v->st.hanging, 1);
    assert_true(inject(v, CP__MSG_CALL, 3, 3, fill_call, hang) < 0);
    assert_false(cp_rpc_conn_alive(v->conn));
    assert_int_equal(v->st.canceled, 1); /* the first hang was canceled by the end */
    uint16_t which[8];
    uint32_t first[8];
    char *reason = NULL;
    int n = sent_kinds(v, which, first, 8, &reason);
    assert_int_equal(which[0], CP__MSG_RETURN); /* the bootstrap */
    assert_int_equal(which[n - 1], CP__MSG_ABORT);
    assert_string_equal(reason, "Call reuses question id 5");
    free(reason);
    victim_free(v);
}

static void test_hostile_messages(void **state)
{
    struct {
        uint16_t which, dw, pw;
        void (*fill)(cp_struct_builder, const uint32_t *);
        uint32_t args[3];
        const char *abort; /* NULL: the connection must survive */
    } cases[] = {
        {CP__MSG_RETURN, 2, 1, fill_u32s, {77, 0}, "Return for an unknown question 77"},
        {CP__MSG_DISEMBARGO, 1, 1, fill_receiver_loopback, {9}, "for unknown embargo 9"},
        {CP__MSG_FINISH, 1, 0, fill_u32s, {1234, 0}, NULL}, /* unknown: ignored */
        {CP__MSG_RELEASE, 1, 0, fill_u32s, {99, 1}, NULL},  /* unknown export */
        {12 /* join */, 1, 2, fill_u32s, {1, 0}, NULL},     /* answered unimplemented */
        {CP__MSG_CALL, 3, 3, fill_call, {3, 42, 0}, NULL},  /* unknown target: exception */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        victim *v = victim_new(NULL);
        int r = inject(v, cases[i].which, cases[i].dw, cases[i].pw, cases[i].fill, cases[i].args);
        uint16_t which[8];
        uint32_t first[8];
        char *reason = NULL;
        int n = sent_kinds(v, which, first, 8, &reason);
        if (cases[i].abort) {
            assert_true(r < 0);
            assert_non_null(reason);
            assert_non_null(strstr(reason, cases[i].abort));
        } else {
            assert_int_equal(r, 0);
            assert_null(reason);
            assert_true(cp_rpc_conn_alive(v->conn));
        }
        if (cases[i].which == 12) {
            assert_int_equal(n, 1);
            assert_int_equal(which[0], CP__MSG_UNIMPLEMENTED);
        }
        if (cases[i].which == CP__MSG_CALL) {
            assert_int_equal(n, 1);
            assert_int_equal(which[0], CP__MSG_RETURN);
            assert_int_equal(first[0], 3);
        }
        free(reason);
        victim_free(v);
    }
}

static void test_hostile_release_and_limits(void **state)
{
    /* Releasing more references than were sent drops the export; calls to
     * it then fail, and the connection lives on. */
    victim *v = victim_new(NULL);
    const uint32_t boot[] = {0, 0};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);
    cp_rpc_stats st;
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.exports, 1);
    /* A level-0 Finish (releaseResultCaps left true) releases the results' caps. */
    const uint32_t fin[] = {0, 0};
    inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fin);
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.exports, 0);
    assert_int_equal(st.answers, 0);
    const uint32_t boot2[] = {1, 0};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot2);
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.exports, 1);
    const uint32_t rel[] = {0, 5};
    assert_int_equal(inject(v, CP__MSG_RELEASE, 1, 0, fill_u32s, rel), 0);
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.exports, 0);
    const uint32_t ping[] = {2, 0, Interop_ping_METHOD_ID};
    gr_buf_release(&v->out);
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call, ping), 0);
    uint16_t kinds[4];
    uint32_t ids[4];
    assert_int_equal(sent_kinds(v, kinds, ids, 4, NULL), 1);
    assert_int_equal(kinds[0], CP__MSG_RETURN); /* an exception: no such export */
    victim_free(v);

    /* A frame over the size limit is refused before it is read. */
    cp_rpc_options opts = {.max_message_bytes = 1024};
    v = victim_new(&opts);
    uint32_t table[2] = {0, 1u << 20}; /* one segment of 8 MiB */
    assert_true(cp__rpc_conn_feed(v->conn, table, sizeof(table)) < 0);
    char *reason = NULL;
    sent_kinds(v, kinds, ids, 4, &reason);
    assert_non_null(reason);
    assert_non_null(strstr(reason, "exceeds the limit of 1024"));
    free(reason);
    victim_free(v);

    /* Too many unanswered calls. */
    cp_rpc_options few = {.max_outstanding_calls = 2};
    v = victim_new(&few);
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);
    for (uint32_t q = 1; q <= 3; q++) {
        const uint32_t hang[] = {q, 0, Interop_hang_METHOD_ID};
        int r = inject(v, CP__MSG_CALL, 3, 3, fill_call, hang);
        assert_int_equal(r, q <= 2 ? 0 : -1);
    }
    reason = NULL;
    sent_kinds(v, kinds, ids, 4, &reason);
    assert_string_equal(reason, "too many outstanding calls (limit 2)");
    free(reason);
    assert_int_equal(v->st.canceled, 2);
    victim_free(v);

    /* Calls answered but never finished by the peer are bounded too. */
    v = victim_new(&few);
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);
    int r = 0;
    uint32_t q = 1;
    for (; q < 100 && r == 0; q++) {
        const uint32_t call[] = {q, 0, Interop_ping_METHOD_ID};
        r = inject(v, CP__MSG_CALL, 3, 3, fill_call, call);
    }
    assert_int_equal(r, -1);
    assert_int_equal(q - 1, 8); /* the bootstrap and 7 pings fill 4 x 2 */
    reason = NULL;
    uint16_t many_kinds[16];
    uint32_t many_ids[16];
    assert_int_equal(sent_kinds(v, many_kinds, many_ids, 16, &reason), 9); /* 8 Returns, Abort */
    assert_non_null(reason);
    assert_string_equal(reason, "too many unfinished calls (limit 8)");
    free(reason);
    victim_free(v);

    /* So are Bootstraps never finished: each answer holds a results message. */
    v = victim_new(&few);
    r = 0;
    for (q = 0; q < 100 && r == 0; q++) {
        const uint32_t b[] = {q, 0};
        r = inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, b);
    }
    assert_int_equal(r, -1);
    assert_int_equal(q, 9); /* 8 answered, the 9th refused */
    reason = NULL;
    assert_int_equal(sent_kinds(v, many_kinds, many_ids, 16, &reason), 9);
    assert_string_equal(reason, "too many unfinished calls (limit 8)");
    free(reason);
    victim_free(v);
}

/* Starts a message of the given kind; returns its body. */
static cp_struct_builder msg_body(cp_message *m, uint16_t which, uint16_t dw, uint16_t pw)
{
    cp_message_init(m, 0);
    cp_struct_builder root = cp_message_init_root(m, 1, 1);
    cp_set_u16(root, 0, which, 0);
    return cp_init_struct(root, 0, dw, pw);
}

static int inject_msg(victim *v, cp_message *m)
{
    gr_buf b = GR_BUF_INIT;
    cp_message_write(m, &b);
    cp_message_release(m);
    int r = cp__rpc_conn_feed(v->conn, b.data, b.len);
    gr_buf_release(&b);
    return r;
}

/* A Return for question id with results {r = value}. */
static int inject_return(victim *v, uint32_t id, int64_t value)
{
    cp_message m;
    cp_struct_builder r = msg_body(&m, CP__MSG_RETURN, 2, 1);
    cp_set_u32(r, 0, id, 0);
    cp_set_bool(r, 32, false, true);
    cp_struct_builder payload = cp_init_struct(r, 0, 0, 2);
    cp_set_i64(cp_init_struct(payload, 0, 1, 0), 0, value, 0);
    return inject_msg(v, &m);
}

typedef struct seen {
    int calls, releases, returns;
    uint32_t call_qid[4], call_target[4];
    uint32_t release_id[4], release_count[4];
    int64_t last_return_value;
    bool last_return_releases_params;
    int disembargoes;
    uint32_t embargo_id, embargo_target;
    bool last_return_failed;
    bool last_return_no_finish; /* noFinishNeeded */
    bool call_no_pipelining[4]; /* noPromisePipelining */
    int finishes;
    char last_reason[160];
} seen;

static bool note_sent(uint16_t which, cp_struct_reader body, void *ud)
{
    seen *out = ud;
    switch (which) {
    case CP__MSG_CALL:
        if (out->calls < 4) {
            out->call_qid[out->calls] = cp_get_u32(body, 0, 0);
            out->call_target[out->calls] =
                cp_get_u32(cp_get_struct(body, 0, cp_ptr_null()), 0, 0);
            out->call_no_pipelining[out->calls] =
                cp_get_bool(body, CP__CALL_NO_PIPELINING_BIT, false);
        }
        out->calls++;
        break;
    case CP__MSG_RELEASE:
        if (out->releases < 4) {
            out->release_id[out->releases] = cp_get_u32(body, 0, 0);
            out->release_count[out->releases] = cp_get_u32(body, 4, 0);
        }
        out->releases++;
        break;
    case CP__MSG_RETURN: {
        cp_struct_reader payload = cp_get_struct(body, 0, cp_ptr_null());
        out->last_return_value = cp_get_i64(cp_get_struct(payload, 0, cp_ptr_null()), 0, 0);
        out->last_return_failed = cp_get_u16(body, 6, 0) == 1;
        out->last_return_releases_params = cp_get_bool(body, 32, true);
        out->last_return_no_finish = cp_get_bool(body, CP__RETURN_NO_FINISH_BIT, false);
        if (out->last_return_failed)
            gr_strlcpy(out->last_reason, cp_get_text(payload, 0, "").str,
                       sizeof(out->last_reason));
        out->returns++;
        break;
    }
    case CP__MSG_FINISH:
        out->finishes++;
        break;
    case CP__MSG_DISEMBARGO:
        out->disembargoes++;
        out->embargo_id = cp_get_u32(body, 0, 0);
        out->embargo_target = cp_get_u32(cp_get_struct(body, 0, cp_ptr_null()), 0, 0);
        break;
    }
    return true;
}

static void parse_sent(victim *v, seen *out)
{
    memset(out, 0, sizeof(*out));
    each_message(v->out.data, v->out.len, note_sent, out);
}

static void fill_pipelined_call(cp_struct_builder c, const uint32_t *a)
{
    /* args: question id, answer to pipeline on, method */
    cp_set_u32(c, 0, a[0], 0);
    cp_set_u64(c, 8, Interop_TYPE_ID, 0);
    cp_set_u16(c, 4, (uint16_t)a[2], 0);
    cp_struct_builder mt = cp_init_struct(c, 0, 1, 1);
    cp_set_u16(mt, 4, 1, 0);
    cp_struct_builder pa = cp_init_struct(mt, 0, 1, 1);
    cp_set_u32(pa, 0, a[1], 0);
    cp_list_builder ops = cp_init_struct_list(pa, 0, 1, 1, 0);
    cp_struct_builder op = cp_list_struct_at(ops, 0);
    cp_set_u16(op, 0, 1, 0);
    cp_set_u16(op, 2, 0, 0);
    cp_struct_builder payload = cp_init_struct(c, 1, 0, 2);
    cp_init_struct(payload, 0, 1, 1);
}

static int inject_resolve(victim *v, uint32_t promise, uint16_t kind, uint32_t to_id)
{
    cp_message m;
    cp_struct_builder res = msg_body(&m, CP__MSG_RESOLVE, 1, 1);
    cp_set_u32(res, 0, promise, 0);
    cp_struct_builder to = cp_init_struct(res, 0, 1, 1);
    cp_set_u16(to, 0, kind, 0);
    cp_set_u32(to, 4, to_id, 0);
    return inject_msg(v, &m);
}

/* Injects Call qid on the bootstrap: method (callBack or reflect) with
 * params {cb = capability 0, n}, whose capability table holds ncaps entries
 * of kind (senderHosted 1, senderPromise 2) for the peer's export_id. */
static void inject_cap_call(victim *v, uint32_t qid, uint16_t method, uint32_t n, uint16_t kind,
                            uint32_t export_id, uint32_t ncaps)
{
    cp_message m;
    cp_struct_builder c = msg_body(&m, CP__MSG_CALL, 3, 3);
    cp_set_u32(c, 0, qid, 0);
    cp_set_u64(c, 8, Interop_TYPE_ID, 0);
    cp_set_u16(c, 4, method, 0);
    cp_init_struct(c, 0, 1, 1); /* importedCap 0: the bootstrap */
    cp_struct_builder payload = cp_init_struct(c, 1, 0, 2);
    cp_struct_builder params = cp_init_struct(payload, 0, 1, 1);
    Interop_callBack_Params_set_n((Interop_callBack_Params_B){params}, n);
    cp_set_cap(params, 0, 0);
    cp_list_builder table = cp_init_struct_list(payload, 1, ncaps, 1, 1);
    for (uint32_t i = 0; i < ncaps; i++) {
        cp_struct_builder d = cp_list_struct_at(table, i);
        cp_set_u16(d, 0, kind, 0);
        cp_set_u32(d, 4, export_id, 0);
    }
    assert_int_equal(inject_msg(v, &m), 0);
}

/* callBack(cb, 0) with ncaps entries of one kind for export_id: the Return
 * must not say releaseParamCaps, and one Release of all of them follows. */
static void expect_released_after_return(victim *v, uint32_t qid, uint16_t kind, uint32_t export_id,
                                         uint32_t ncaps)
{
    seen s;
    v->out.len = 0;
    inject_cap_call(v, qid, Interop_callBack_METHOD_ID, 0, kind, export_id, ncaps);
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_false(s.last_return_releases_params);
    assert_int_equal(s.releases, 1);
    assert_int_equal(s.release_id[0], export_id);
    assert_int_equal(s.release_count[0], ncaps);
}

/* A victim (bootstrapped) answering callBack(cb, 2) where cb is the peer's
 * senderPromise promise_id: it has just sent its first cb.call(). */
static victim *victim_calling_back(uint32_t promise_id)
{
    victim *v = victim_new(NULL);
    const uint32_t boot[] = {0, 0};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);
    inject_cap_call(v, 1, Interop_callBack_METHOD_ID, 2, 2, promise_id, 1);
    return v;
}

/* A callee that is done with the capabilities in its params says so in its
 * Return (releaseParamCaps), instead of sending a Release for each; one that
 * keeps them (here, in its results) says false and releases them itself. */
static void test_return_releases_param_caps(void **state)
{
    victim *v = victim_new(NULL);
    const uint32_t boot[] = {0, 0};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);

    /* callBack(cb, 0) uses cb no more once it returns. */
    v->out.len = 0;
    inject_cap_call(v, 1, Interop_callBack_METHOD_ID, 0, 1, 7, 1);
    seen s;
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_true(s.last_return_releases_params);
    assert_int_equal(s.releases, 0);
    cp_rpc_stats st;
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.imports, 0);

    /* The caller may reuse the export id at once: it is a new import. */
    v->out.len = 0;
    inject_cap_call(v, 2, Interop_callBack_METHOD_ID, 0, 1, 7, 1);
    parse_sent(v, &s);
    assert_true(s.last_return_releases_params);
    assert_int_equal(s.releases, 0);

    /* reflect(cb) keeps cb in its results until the caller's Finish. */
    v->out.len = 0;
    inject_cap_call(v, 3, Interop_reflect_METHOD_ID, 0, 1, 8, 1);
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_false(s.last_return_releases_params);
    assert_int_equal(s.releases, 0);
    v->out.len = 0;
    const uint32_t fin[] = {3, 0};
    inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fin);
    parse_sent(v, &s);
    assert_int_equal(s.releases, 1);
    assert_int_equal(s.release_id[0], 8);
    assert_int_equal(s.release_count[0], 1);
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.imports, 0);

    /* A table past the few capabilities the check looks through (it must not
     * cost a peer's long table its square) is released the usual way. */
    expect_released_after_return(v, 4, 1, 9, 9);
    /* So is a senderPromise (noted as the table arrived, not read again at
     * the Return): it is not the caller's to drop. */
    expect_released_after_return(v, 5, 2, 10, 1);
    victim_free(v);
}

/* Results without capabilities are let go at the Return, not at the Finish:
 * a call the peer then pipelines on such an answer still gets a clean
 * exception, while an answer holding a capability keeps it for pipelining. */
static void test_capless_results_go_at_return(void **state)
{
    victim *v = victim_new(NULL);
    const uint32_t boot[] = {0, 0};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);
    const uint32_t ping[] = {1, 0, Interop_ping_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call, ping), 0);
    v->out.len = 0;
    const uint32_t on_ping[] = {2, 1, Interop_ping_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_pipelined_call, on_ping), 0);
    seen s;
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_true(s.last_return_failed);
    assert_non_null(strstr(s.last_reason, "not a capability"));

    const uint32_t made[] = {3, 0, Interop_newCounter_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call, made), 0);
    v->out.len = 0;
    const uint32_t on_counter[] = {4, 3, Interop_ping_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_pipelined_call, on_counter), 0);
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_true(s.last_return_failed); /* a Counter has no Interop methods */
    assert_null(strstr(s.last_reason, "not a capability"));
    const uint32_t fins[][2] = {{1, 0}, {2, 0}, {3, 0}, {4, 0}};
    for (int i = 0; i < 4; i++)
        inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fins[i]);
    assert_true(cp_rpc_conn_alive(v->conn));
    victim_free(v);
}

static void fill_call_no_pipelining(cp_struct_builder c, const uint32_t *a)
{
    fill_call(c, a);
    cp_set_bool(c, CP__CALL_NO_PIPELINING_BIT, true, false);
}

static uint32_t answers_of(victim *v)
{
    cp_rpc_stats st;
    cp_rpc_conn_stats(v->conn, &st);
    return st.answers;
}

/* Call qid (method) built by fill: its Return does not say noFinishNeeded
 * and its answer stays until the Finish. */
static void expect_answer_kept_until_finish(victim *v, uint32_t qid, uint32_t method,
                                            void (*fill)(cp_struct_builder, const uint32_t *))
{
    seen s;
    v->out.len = 0;
    const uint32_t call[] = {qid, 0, method};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill, call), 0);
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_false(s.last_return_no_finish);
    assert_int_equal(answers_of(v), 2);
    const uint32_t fin[] = {qid, 0};
    inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fin);
    assert_int_equal(answers_of(v), 1);
}

/* A caller that says it will not pipeline on a call's results
 * (noPromisePipelining) needs no Finish when the results hold no
 * capabilities: the Return says noFinishNeeded and the answer goes at once.
 * Callers that do not say so (protocol 0.9's) still Finish as before. */
static void test_no_finish_needed(void **state)
{
    victim *v = victim_new(NULL);
    const uint32_t boot[] = {0, 0};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);
    assert_int_equal(answers_of(v), 1); /* the bootstrap, until its Finish */

    seen s;
    v->out.len = 0;
    const uint32_t ping[] = {1, 0, Interop_ping_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call_no_pipelining, ping), 0);
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_false(s.last_return_failed);
    assert_true(s.last_return_no_finish);
    assert_int_equal(answers_of(v), 1);
    /* The id is free again at once; a Finish sent anyway is ignored. */
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call_no_pipelining, ping), 0);
    const uint32_t fin1[] = {1, 0};
    assert_int_equal(inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fin1), 0);
    /* A pipelined call on it anyway gets an exception, not an Abort. */
    v->out.len = 0;
    const uint32_t on_ping[] = {2, 1, Interop_ping_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_pipelined_call, on_ping), 0);
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_true(s.last_return_failed);
    const uint32_t fin2[] = {2, 0};
    inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fin2);
    assert_true(cp_rpc_conn_alive(v->conn));
    assert_int_equal(answers_of(v), 1);

    /* Without the hint the answer waits for the Finish, and with it so do
     * results holding a capability. */
    expect_answer_kept_until_finish(v, 3, Interop_ping_METHOD_ID, fill_call);
    expect_answer_kept_until_finish(v, 4, Interop_newCounter_METHOD_ID, fill_call_no_pipelining);

    /* As the caller: callBack(cb, 2) makes the victim call our cb twice
     * without pipelining, so each Call says so; a Return that says
     * noFinishNeeded gets no Finish, one that does not gets one. */
    v->out.len = 0;
    inject_cap_call(v, 5, Interop_callBack_METHOD_ID, 2, 1, 7, 1);
    parse_sent(v, &s);
    assert_int_equal(s.calls, 1);
    assert_true(s.call_no_pipelining[0]);
    uint32_t q = s.call_qid[0];
    cp_message m;
    cp_struct_builder r = msg_body(&m, CP__MSG_RETURN, 2, 1);
    cp_set_u32(r, 0, q, 0);
    cp_set_bool(r, CP__RETURN_NO_FINISH_BIT, true, false);
    cp_set_i64(cp_init_struct(cp_init_struct(r, 0, 0, 2), 0, 1, 0), 0, 20, 0);
    v->out.len = 0;
    assert_int_equal(inject_msg(v, &m), 0);
    parse_sent(v, &s);
    assert_int_equal(s.finishes, 0);
    assert_int_equal(s.calls, 1); /* the second cb.call() */
    v->out.len = 0;
    assert_int_equal(inject_return(v, s.call_qid[0], 22), 0);
    parse_sent(v, &s);
    assert_int_equal(s.finishes, 1);
    assert_int_equal(s.returns, 1);
    assert_int_equal(s.last_return_value, 42);
    /* So does an exception: callBack(cb, 1) whose cb.call() fails. */
    v->out.len = 0;
    inject_cap_call(v, 6, Interop_callBack_METHOD_ID, 1, 1, 7, 1);
    parse_sent(v, &s);
    assert_int_equal(s.calls, 1);
    r = msg_body(&m, CP__MSG_RETURN, 2, 1);
    cp_set_u32(r, 0, s.call_qid[0], 0);
    cp_set_bool(r, CP__RETURN_NO_FINISH_BIT, true, false);
    cp_set_u16(r, 6, 1, 0); /* exception */
    cp_set_text(cp_init_struct(r, 0, 1, 2), 0, "no", 2);
    v->out.len = 0;
    assert_int_equal(inject_msg(v, &m), 0);
    parse_sent(v, &s);
    assert_int_equal(s.finishes, 0);
    assert_int_equal(s.returns, 1);
    assert_true(s.last_return_failed);
    assert_non_null(strstr(s.last_reason, "callback failed: no"));
    cp_rpc_stats st;
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.questions, 0);
    assert_true(cp_rpc_conn_alive(v->conn));
    victim_free(v);
}

/* ---- answers let go at their Return ------------------------------------------ *
 * A "factory" bootstrap whose method 1 makes a "fragile" object; the fragile
 * object's method 0 keeps its call until the test returns it, as a server
 * answering from a later callback (a socket write done) would. */

typedef struct fragile {
    cp_server base;
    cp_call *call;
    bool *destroyed;
    cp_rpc_conn **free_conn; /* the destructor frees this connection, if set */
    int touched;
} fragile;

static fragile *last_fragile;
static bool fragile_destroyed;
static cp_rpc_conn *fragile_frees;

static void fragile_destroy(cp_server *self)
{
    fragile *f = (fragile *)self;
    *f->destroyed = true;
    if (f->free_conn && *f->free_conn)
        cp_rpc_conn_free(gr_steal_pointer(f->free_conn));
    free(f);
}

static void fragile_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method);
static const cp_server_vtable fragile_vt = {"fragile", fragile_dispatch, fragile_destroy};

static void fragile_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    (void)iface;
    fragile *f = (fragile *)self;
    if (f->destroyed == NULL && method == 1) { /* the factory */
        fragile *c = gr_calloc(1, sizeof(*c));
        c->base.vt = &fragile_vt;
        c->destroyed = &fragile_destroyed;
        c->free_conn = &fragile_frees;
        last_fragile = c;
        cp_set_capability(cp_call_results(call, 0, 1), 0, cp_server_cap(&c->base));
        cp_call_return(call);
    } else if (f->destroyed && method == 0) {
        f->call = call; /* answered by fragile_answer */
    } else {
        cp_call_unimplemented(call, iface, method);
    }
}

static void factory_destroy(cp_server *self)
{
    free(self);
}

static const cp_server_vtable factory_vt = {"factory", fragile_dispatch, factory_destroy};

/* Answers the fragile object's kept call, then uses the object: which must
 * still be there even if the call held its last reference. */
static void fragile_answer(fragile *f)
{
    cp_call_return(gr_steal_pointer(&f->call));
    f->touched++;
}

static void fill_call_on(cp_struct_builder c, const uint32_t *a)
{
    /* args: question id, import id, method: noPromisePipelining */
    fill_call_no_pipelining(c, a);
    cp_set_u64(c, 8, 0x1234, 0);
}

/* The export id of the first capability in the Return for answer_id among
 * the messages in data; fails the test if there is none. */
typedef struct wanted_return {
    uint32_t answer_id, cap;
} wanted_return;

static bool note_cap(uint16_t which, cp_struct_reader ret, void *ud)
{
    wanted_return *w = ud;
    if (which != CP__MSG_RETURN || cp_get_u32(ret, 0, 0) != w->answer_id)
        return true;
    assert_false(cp_get_bool(ret, CP__RETURN_NO_FINISH_BIT, false)); /* it holds a cap */
    cp_list_reader table =
        cp_get_list(cp_get_struct(ret, 0, cp_ptr_null()), 1, CP_ELEM_COMPOSITE, cp_ptr_null());
    assert_int_equal(table.len, 1);
    w->cap = cp_get_u32(cp_list_get_struct(table, 0), 4, 0);
    return false;
}

static uint32_t returned_cap(const char *data, size_t len, uint32_t answer_id)
{
    wanted_return w = {answer_id, UINT32_MAX};
    each_message(data, len, note_cap, &w);
    assert_int_not_equal(w.cap, UINT32_MAX);
    return w.cap;
}

/* A raw victim serving the factory; returns the fragile object's export id
 * (its Return's first capability), with the factory call finished. */
static victim *fragile_victim(uint32_t *export_id)
{
    victim *v = gr_calloc(1, sizeof(*v));
    fragile *factory = gr_calloc(1, sizeof(*factory)); /* one with no destroyed flag */
    factory->base.vt = &factory_vt;
    cp_cap *boot = cp_server_cap(&factory->base);
    v->conn = cp__rpc_conn_new_raw(boot, NULL, collect, v);
    cp_cap_unref(boot);
    fragile_destroyed = false;
    fragile_frees = NULL;
    /* The Finish keeps the results' capability (releaseResultCaps false). */
    const uint32_t b[] = {0, 0}, make[] = {1, 0, 1}, fin[] = {1, 1};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, b);
    v->out.len = 0;
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call_on, make), 0);
    *export_id = returned_cap(v->out.data, v->out.len, 1);
    inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fin);
    return v;
}

/* A call whose caller released the object while the call was in flight
 * holds the last reference to it; the Return (noFinishNeeded) must not free
 * the object under the code that returned, only at the next read. */
static void test_done_answer_outlives_its_return(void **state)
{
    uint32_t id;
    victim *v = fragile_victim(&id);
    fragile *f = last_fragile;
    const uint32_t call[] = {2, id, 0}, rel[] = {id, 1}, other[] = {99, 0};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call_on, call), 0);
    assert_int_equal(inject(v, CP__MSG_RELEASE, 1, 0, fill_u32s, rel), 0);
    assert_false(fragile_destroyed); /* the call holds it */
    v->out.len = 0;
    fragile_answer(f);
    assert_int_equal(f->touched, 1);
    assert_false(fragile_destroyed);
    seen s;
    parse_sent(v, &s);
    assert_int_equal(s.returns, 1);
    assert_true(s.last_return_no_finish);
    assert_int_equal(answers_of(v), 1); /* the bootstrap: id 2 is free already */
    inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, other); /* the next read */
    assert_true(fragile_destroyed);
    victim_free(v);
}

/* The object whose last reference a done answer held may free the very
 * connection in its destructor (a grain's last hold going): the read that
 * drops it then ends cleanly. */
static void test_done_answer_destructor_frees_the_connection(void **state)
{
    uint32_t id;
    victim *v = fragile_victim(&id);
    const uint32_t call[] = {2, id, 0}, rel[] = {id, 1}, other[] = {99, 0};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call_on, call), 0);
    assert_int_equal(inject(v, CP__MSG_RELEASE, 1, 0, fill_u32s, rel), 0);
    fragile_answer(last_fragile);
    fragile_frees = v->conn;
    assert_true(inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, other) < 0); /* freed in the read */
    assert_true(fragile_destroyed);
    assert_null(fragile_frees);
    gr_buf_release(&v->out);
    free(v);
}

/* Over a socket: the peer's call (noPromisePipelining) is answered at once,
 * and the peer aborts in the same read. The answer's target goes when the
 * connection's handles close, not only when its owner frees it. */
static void test_done_answers_go_at_disconnect(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fragile *f = gr_calloc(1, sizeof(*f));
    bool destroyed = false;
    f->base.vt = &fragile_vt;
    f->destroyed = &destroyed;
    cp_cap *cap = cp_server_cap(&f->base);
    cp_rpc_conn *conn = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(cp_rpc_conn_open(&loop, sv[0], cap, NULL, &conn, &err), 0);
    cp_cap_unref(cap); /* the connection's bootstrap holds it */
    gr_buf b = GR_BUF_INIT;
    cp_message m;
    cp_set_u32(msg_body(&m, CP__MSG_BOOTSTRAP, 1, 1), 0, 0, 0);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    const uint32_t call[] = {1, 0, 7}; /* unimplemented: answered at once */
    fill_call_on(msg_body(&m, CP__MSG_CALL, 3, 3), call);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    const uint32_t two[] = {0, 1};
    fill_u32s(msg_body(&m, CP__MSG_FINISH, 1, 0), two); /* the bootstrap's answer */
    cp_message_write(&m, &b);
    cp_message_release(&m);
    fill_u32s(msg_body(&m, CP__MSG_RELEASE, 1, 0), two); /* and its export */
    cp_message_write(&m, &b);
    cp_message_release(&m);
    cp_set_text(msg_body(&m, CP__MSG_ABORT, 1, 2), 0, "bye", 3);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    assert_int_equal(write(sv[1], b.data, b.len), (ssize_t)b.len);
    gr_buf_release(&b);
    for (int i = 0; i < 50 && !destroyed; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_false(cp_rpc_conn_alive(conn));
    assert_true(destroyed);
    cp_rpc_conn_free(conn);
    while (uv_run(&loop, UV_RUN_DEFAULT))
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    close(sv[1]);
}

/* Over a socket, the object answers from outside any read (as a socket
 * write done would), and the connection is closed before its flush runs:
 * the done answer goes when the handles close, and the object's destructor
 * may free the connection there (a grain's last hold going). */
static void test_done_answers_go_when_closed(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    fragile *factory = gr_calloc(1, sizeof(*factory));
    factory->base.vt = &factory_vt;
    cp_cap *boot = cp_server_cap(&factory->base);
    cp_rpc_conn *conn = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(cp_rpc_conn_open(&loop, sv[0], boot, NULL, &conn, &err), 0);
    cp_cap_unref(boot);
    fragile_destroyed = false;
    last_fragile = NULL;

    gr_buf b = GR_BUF_INIT;
    cp_message m;
    cp_set_u32(msg_body(&m, CP__MSG_BOOTSTRAP, 1, 1), 0, 0, 0);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    const uint32_t make[] = {1, 0, 1}, fin[] = {1, 1};
    fill_call_on(msg_body(&m, CP__MSG_CALL, 3, 3), make);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    fill_u32s(msg_body(&m, CP__MSG_FINISH, 1, 0), fin);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    assert_int_equal(write(sv[1], b.data, b.len), (ssize_t)b.len);
    b.len = 0;
    gr_buf got = GR_BUF_INIT;
    char chunk[4096];
    for (int i = 0; i < 50 && got.len < 100; i++) {
        uv_run(&loop, UV_RUN_NOWAIT);
        ssize_t n;
        while ((n = recv(sv[1], chunk, sizeof(chunk), MSG_DONTWAIT)) > 0)
            gr_buf_append(&got, chunk, (size_t)n);
    }
    uint32_t id = returned_cap(got.data, got.len, 1);
    gr_buf_release(&got);

    const uint32_t call[] = {2, id, 0}, rel[] = {id, 1};
    fill_call_on(msg_body(&m, CP__MSG_CALL, 3, 3), call);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    fill_u32s(msg_body(&m, CP__MSG_RELEASE, 1, 0), rel);
    cp_message_write(&m, &b);
    cp_message_release(&m);
    assert_int_equal(write(sv[1], b.data, b.len), (ssize_t)b.len);
    gr_buf_release(&b);
    for (int i = 0; i < 50 && !(last_fragile && last_fragile->call); i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_non_null(last_fragile->call);
    assert_false(fragile_destroyed);

    fragile_frees = conn;
    fragile_answer(last_fragile);
    cp_rpc_conn_close(conn);
    for (int i = 0; i < 50 && !fragile_destroyed; i++)
        uv_run(&loop, UV_RUN_NOWAIT);
    assert_true(fragile_destroyed);
    assert_null(fragile_frees); /* and its destructor freed the connection */
    while (uv_run(&loop, UV_RUN_DEFAULT))
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    close(sv[1]);
}

static void test_promise_import_resolves_home(void **state)
{
    /* The peer's promise resolves to one of our own objects after we sent a
     * call through it: we embargo (Disembargo senderLoopback to the promise)
     * and hold the next call until the peer echoes it back. */
    victim *v = victim_calling_back(4);
    cp_message m;
    seen s;
    parse_sent(v, &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.call_target[0], 4);
    /* Resolved to receiverHosted 0: the victim's own bootstrap. */
    assert_int_equal(inject_resolve(v, 4, 3, 0), 0);
    parse_sent(v, &s);
    assert_int_equal(s.disembargoes, 1);
    assert_int_equal(s.embargo_target, 4);
    assert_int_equal(inject_return(v, s.call_qid[0], 1), 0);
    parse_sent(v, &s);
    assert_int_equal(s.calls, 1);   /* the second call waits behind the embargo */
    assert_int_equal(s.returns, 1); /* only the bootstrap so far */
    cp_struct_builder back = msg_body(&m, CP__MSG_DISEMBARGO, 1, 1);
    cp_init_struct(back, 0, 1, 1);
    cp_set_u16(back, 4, 1, 0); /* receiverLoopback */
    cp_set_u32(back, 0, s.embargo_id, 0);
    assert_int_equal(inject_msg(v, &m), 0);
    /* Now it goes to our own Interop object, which has no Callback.call. */
    parse_sent(v, &s);
    assert_int_equal(s.returns, 2);
    assert_true(s.last_return_failed);
    assert_non_null(strstr(s.last_reason, "not implemented"));
    victim_free(v);
}

static void test_hostile_resolve_chain(void **state)
{
    /* A promise resolved to a promise resolved to a promise... 20000 deep:
     * calls still find the end quickly, and everything is released. */
    victim *v = victim_calling_back(1);
    const uint32_t depth = 20000;
    for (uint32_t i = 1; i < depth; i++)
        assert_int_equal(inject_resolve(v, i, 2, i + 1), 0);
    assert_int_equal(inject_resolve(v, depth, 1, depth + 1), 0); /* a real object at last */
    seen s;
    parse_sent(v, &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(inject_return(v, s.call_qid[0], 1), 0);
    parse_sent(v, &s);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.call_target[1], depth + 1);
    assert_int_equal(inject_return(v, s.call_qid[1], 2), 0);
    parse_sent(v, &s);
    assert_int_equal(s.last_return_value, 3);
    cp_rpc_stats st;
    cp_rpc_conn_stats(v->conn, &st);
    assert_int_equal(st.imports, 0); /* every promise of the chain released */
    victim_free(v);
}

static void test_hostile_pipeline_chain(void **state)
{
    /* A long chain of calls, each pipelined on the answer of the one before,
     * the first held open: when it finally fails, the whole chain unwinds
     * without exhausting the stack, and every call is answered. */
    victim *v = victim_new(NULL);
    const uint32_t boot[] = {0, 0};
    inject(v, CP__MSG_BOOTSTRAP, 1, 1, fill_u32s, boot);
    const uint32_t hang[] = {1, 0, Interop_hang_METHOD_ID};
    assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_call, hang), 0);
    const uint32_t n = 9990; /* just under the outstanding-call limit */
    for (uint32_t q = 2; q < 2 + n; q++) {
        const uint32_t call[] = {q, q - 1, Interop_newCounter_METHOD_ID};
        assert_int_equal(inject(v, CP__MSG_CALL, 3, 3, fill_pipelined_call, call), 0);
    }
    gr_buf_release(&v->out);
    const uint32_t fin[] = {1, 0};
    assert_int_equal(inject(v, CP__MSG_FINISH, 1, 0, fill_u32s, fin), 0); /* cancels the hang */
    seen s;
    parse_sent(v, &s);
    assert_int_equal(s.returns, n + 1);
    assert_true(cp_rpc_conn_alive(v->conn));
    victim_free(v);
}

static void test_promise_import_resolves(void **state)
{
    /* The peer passes a promise (senderPromise 9) and later resolves it to
     * another of its objects (senderHosted 10): calls made after the
     * Resolve go to 10 directly, and both imports are released at the end. */
    victim *v = victim_calling_back(9);
    cp_message m;

    seen s;
    parse_sent(v, &s);
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.call_target[0], 9);

    cp_struct_builder res = msg_body(&m, CP__MSG_RESOLVE, 1, 1);
    cp_set_u32(res, 0, 9, 0);
    cp_struct_builder to = cp_init_struct(res, 0, 1, 1);
    cp_set_u16(to, 0, 1, 0); /* senderHosted */
    cp_set_u32(to, 4, 10, 0);
    assert_int_equal(inject_msg(v, &m), 0);
    assert_int_equal(inject_return(v, s.call_qid[0], 5), 0);

    parse_sent(v, &s);
    assert_int_equal(s.calls, 2);
    assert_int_equal(s.call_target[1], 10);
    assert_int_equal(inject_return(v, s.call_qid[1], 7), 0);

    parse_sent(v, &s);
    assert_int_equal(s.last_return_value, 12); /* callBack summed 5 + 7 */
    assert_int_equal(s.releases, 2);
    uint32_t released = 0;
    for (int i = 0; i < 2; i++) {
        assert_int_equal(s.release_count[i], 1);
        released |= 1u << s.release_id[i];
    }
    assert_int_equal(released, (1u << 9) | (1u << 10));
    victim_free(v);
}

/* ---- the example of docs/capnp.md ("RPC"), verbatim ------------------------------------ */

typedef struct counter_server {
    cp_server base; /* first member */
    int64_t value;
} counter_server;

static void counter_inc(cp_server *self, cp_call *call, Counter_inc_Params_R params)
{
    counter_server *c = (counter_server *)self;
    int64_t by = Counter_inc_Params_get_by(params);
    if (by < 0) {
        cp_call_fail(call, CP_EXC_FAILED, "inc by %lld: must not be negative", (long long)by);
        return;
    }
    c->value += by;
    Counter_inc_Results_set_value(Counter_inc_results(call), c->value);
    cp_call_return(call); /* or later, from any callback, keeping `call` */
}

static const Counter_methods counter_methods = {.inc = counter_inc};

static void counter_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (!Counter_dispatch(&counter_methods, self, call, iface, method))
        cp_call_unimplemented(call, iface, method); /* "unimplemented" to the caller */
}

static void counter_destroy(cp_server *self)
{
    free(self);
}

static const cp_server_vtable counter_vt = {"Counter", counter_dispatch, counter_destroy};

/* A new counter, as a capability (the caller owns the reference). */
static cp_cap *counter_new(int64_t start)
{
    counter_server *c = gr_calloc(1, sizeof(*c));
    c->base.vt = &counter_vt;
    c->value = start;
    return cp_server_cap(&c->base);
}

/* Serves a new counter to whoever is on the other end of fd. */
static int serve_counter(uv_loop_t *loop, int fd, cp_rpc_conn **out, gr_error_t *err)
{
    cp_cap *cap = counter_new(0);
    int r = cp_rpc_conn_open(loop, fd, cap, NULL, out, err); /* the conn takes its own ref */
    cp_cap_unref(cap);
    return r;
}

static void on_inc(const cp_response *resp, void *ud)
{
    int64_t *out = ud;
    if (resp->exception) { /* failed, overloaded, disconnected or unimplemented */
        gr_warn("inc: %s", resp->exception->reason);
        return;
    }
    *out = Counter_inc_Results_get_value(Counter_inc_response(resp));
    /* resp and its readers are valid only during the callback: copy what
     * you need; take capabilities out with cp_get_capability. */
}

/* Asks the peer's bootstrap counter to add 5; the answer lands in *out. */
static int call_inc(cp_rpc_conn *conn, int64_t *out, gr_error_t *err)
{
    cp_cap *remote = cp_rpc_conn_bootstrap(conn); /* usable at once: a promise */
    Counter_inc_Params_B params;
    cp_request *req = Counter_inc_request(remote, &params);
    cp_cap_unref(remote); /* the request holds its own reference */
    Counter_inc_Params_set_by(params, 5);
    return cp_request_send(req, on_inc, out, NULL, err); /* -1: on_inc will not run */
}

static void test_doc_example(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cp_rpc_conn *server = NULL, *client = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(serve_counter(&loop, sv[0], &server, &err), 0);
    assert_int_equal(cp_rpc_conn_open(&loop, sv[1], NULL, NULL, &client, &err), 0);
    int64_t value = -1;
    assert_int_equal(call_inc(client, &value, &err), 0);
    while (value < 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(value, 5);
    value = -1;
    assert_int_equal(call_inc(client, &value, &err), 0);
    while (value < 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(value, 10);
    cp_rpc_conn_free(client);
    cp_rpc_conn_free(server);
    while (uv_run(&loop, UV_RUN_DEFAULT))
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
}

/* ---- over a Unix socket path, the server adopting accepted streams ------------------- */

typedef struct listener {
    uv_pipe_t pipe;
    interop_state st;
    cp_cap *srv;
    cp_rpc_conn *conn;
} listener;

static void on_connection(uv_stream_t *s, int status)
{
    listener *l = s->data;
    assert_int_equal(status, 0);
    uv_pipe_t *client = gr_calloc(1, sizeof(*client));
    uv_pipe_init(s->loop, client, 0);
    assert_int_equal(uv_accept(s, (uv_stream_t *)client), 0);
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(cp_rpc_conn_adopt((uv_stream_t *)client, l->srv, NULL, &l->conn, &err), 0);
}

static void test_unix_socket_path(void **state)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    char dir[] = "/tmp/granary-rpc-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char *path = gr_asprintf("%s/rpc.sock", dir);
    listener l = {0};
    l.srv = interop_server_new(&l.st);
    uv_pipe_init(&loop, &l.pipe, 0);
    l.pipe.data = &l;
    assert_int_equal(uv_pipe_bind(&l.pipe, path), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&l.pipe, 4, on_connection), 0);

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    assert_int_equal(gr_strlcpy(sa.sun_path, path, sizeof(sa.sun_path)), 0);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cp_rpc_conn *client = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(cp_rpc_conn_open(&loop, fd, NULL, NULL, &client, &err), 0);
    cp_cap *remote = cp_rpc_conn_bootstrap(client);
    interop_outcome *o = send_call(ping_req(remote, 99), NULL);
    interop_wait(&loop, o);
    assert_false(o->failed);
    assert_int_equal(cp_get_u64(o->results, 0, 0), 100);
    interop_outcome_free(o);
    cp_cap_unref(remote);
    cp_rpc_conn_free(client);
    /* The server side sees the close and ends too. */
    while (cp_rpc_conn_alive(l.conn) && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_false(cp_rpc_conn_alive(l.conn));
    cp_rpc_conn_free(l.conn);
    cp_cap_unref(l.srv);
    uv_close((uv_handle_t *)&l.pipe, NULL);
    while (uv_run(&loop, UV_RUN_DEFAULT))
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
    rmdir(dir);
    free(path);
}

static void note_reason(cp_rpc_conn *conn, const char *reason, void *ud)
{
    *(char **)ud = gr_strdup(reason);
}

static void test_write_failure(void **state)
{
    /* The peer stops reading: our writes fail, and the connection ends with
     * the reason, failing the call in flight. */
    signal(SIGPIPE, SIG_IGN);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(shutdown(sv[1], SHUT_RD), 0);
    cp_rpc_conn *conn = NULL;
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(cp_rpc_conn_open(&loop, sv[0], NULL, NULL, &conn, &err), 0);
    char *reason = NULL;
    cp_rpc_conn_on_disconnect(conn, note_reason, &reason);
    cp_cap *remote = cp_rpc_conn_bootstrap(conn);
    interop_outcome *o = send_call(ping_req(remote, 1), NULL);
    while (!o->done && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_true(o->done && o->failed);
    assert_int_equal(o->type, CP_EXC_DISCONNECTED);
    assert_non_null(reason);
    assert_non_null(strstr(reason, "write: "));
    interop_outcome_free(o);
    cp_cap_unref(remote);
    cp_rpc_conn_free(conn);
    while (uv_run(&loop, UV_RUN_DEFAULT))
        ;
    assert_int_equal(uv_loop_close(&loop), 0);
    close(sv[1]);
    free(reason);
}

/* The id map against a plain array, through many puts and deletions (which
 * shift entries back): every key stays reachable, counts agree, and an
 * each() whose callback deletes entries visits each survivor once. */
static uint32_t idmap_seen[512];

static void idmap_visit(uint32_t key, void *val, void *ud)
{
    cp__idmap *m = ud;
    assert_ptr_equal(val, (void *)(uintptr_t)(key + 1));
    idmap_seen[key]++;
    cp__idmap_del(m, key);
    cp__idmap_del(m, key ^ 1); /* and a neighbour, maybe not yet visited */
}

static void test_idmap(void **state)
{
    (void)state;
    cp__idmap m = {0};
    bool in[512] = {0};
    uint32_t x = 12345, count = 0;
    for (int step = 0; step < 200000; step++) {
        x = x * 1103515245u + 12345u;
        uint32_t key = (x >> 8) % 512;
        /* Dense small ids as a peer allocates them, and a few far ones. */
        uint32_t id = key < 500 ? key : 0xfffff000u + key;
        if ((x >> 20) & 1) {
            cp__idmap_put(&m, id, (void *)(uintptr_t)(id + 1));
            count += !in[key];
            in[key] = true;
        } else {
            void *v = cp__idmap_del(&m, id);
            assert_ptr_equal(v, in[key] ? (void *)(uintptr_t)(id + 1) : NULL);
            count -= in[key];
            in[key] = false;
        }
        assert_int_equal(m.count, count);
        if (step % 997 == 0)
            for (uint32_t k = 0; k < 512; k++) {
                uint32_t kid = k < 500 ? k : 0xfffff000u + k;
                assert_ptr_equal(cp__idmap_get(&m, kid), in[k] ? (void *)(uintptr_t)(kid + 1) : NULL);
            }
    }
    cp__idmap_release(&m);
    for (uint32_t k = 0; k < 300; k++)
        cp__idmap_put(&m, k, (void *)(uintptr_t)(k + 1));
    cp__idmap_each(&m, idmap_visit, &m);
    for (uint32_t k = 0; k < 300; k += 2)
        assert_int_equal(idmap_seen[k] + idmap_seen[k + 1], 1); /* one of each pair, once */
    assert_int_equal(m.count, 0);
    cp__idmap_release(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idmap),
        cmocka_unit_test(test_local_calls),
        cmocka_unit_test(test_promise_cycle),
        cmocka_unit_test(test_two_vats),
        cmocka_unit_test(test_question_limit),
        cmocka_unit_test(test_hostile_duplicate_question),
        cmocka_unit_test(test_hostile_messages),
        cmocka_unit_test(test_hostile_release_and_limits),
        cmocka_unit_test(test_promise_import_resolves),
        cmocka_unit_test(test_hostile_pipeline_chain),
        cmocka_unit_test(test_hostile_resolve_chain),
        cmocka_unit_test(test_return_releases_param_caps),
        cmocka_unit_test(test_capless_results_go_at_return),
        cmocka_unit_test(test_no_finish_needed),
        cmocka_unit_test(test_done_answer_outlives_its_return),
        cmocka_unit_test(test_done_answer_destructor_frees_the_connection),
        cmocka_unit_test(test_done_answers_go_at_disconnect),
        cmocka_unit_test(test_done_answers_go_when_closed),
        cmocka_unit_test(test_promise_import_resolves_home),
        cmocka_unit_test(test_doc_example),
        cmocka_unit_test(test_unix_socket_path),
        cmocka_unit_test(test_write_failure),
    };
    gr_log_set_level(GR_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
