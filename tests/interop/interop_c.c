/* C implementations of the interop schema's interfaces (the Granary peer of
 * peer.c++) and a small "call and wait" helper for linear test code. */
#include "interop_c.h"

/* ---- Counter ------------------------------------------------------------------ */

typedef struct counter {
    cp_server base;
    interop_state *st;
    int64_t value;
} counter;

static void counter_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    counter *c = (counter *)self;
    if (iface != Counter_TYPE_ID || method != Counter_inc_METHOD_ID) {
        cp_call_unimplemented(call, iface, method);
        return;
    }
    Counter_inc_Params_R p = {cp_call_params(call)};
    c->value += Counter_inc_Params_get_by(p);
    Counter_inc_Results_B r = {
        cp_call_results(call, Counter_inc_Results_DATA_WORDS, Counter_inc_Results_PTR_WORDS)};
    Counter_inc_Results_set_value(r, c->value);
    cp_call_return(call);
}

static void counter_destroy(cp_server *self)
{
    counter *c = (counter *)self;
    c->st->live--;
    free(c);
}

static const cp_server_vtable counter_vt = {"Counter", counter_dispatch, counter_destroy};

static cp_cap *counter_new(interop_state *st, int64_t start)
{
    counter *c = gr_calloc(1, sizeof(*c));
    c->base.vt = &counter_vt;
    c->st = st;
    c->value = start;
    st->live++;
    return cp_server_cap(&c->base);
}

/* ---- Callback ------------------------------------------------------------------- */

typedef struct callback {
    cp_server base;
    interop_state *st;
    uint32_t next; /* the i the next call should carry */
} callback;

static void callback_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    if (iface != Callback_TYPE_ID || method != Callback_call_METHOD_ID) {
        cp_call_unimplemented(call, iface, method);
        return;
    }
    callback *cb = (callback *)self;
    Callback_call_Params_R p = {cp_call_params(call)};
    if (Callback_call_Params_get_i(p) != cb->next)
        cb->st->out_of_order++;
    cb->next++;
    Callback_call_Results_B r = {
        cp_call_results(call, Callback_call_Results_DATA_WORDS, Callback_call_Results_PTR_WORDS)};
    Callback_call_Results_set_r(r, (int64_t)Callback_call_Params_get_i(p) * 10);
    cp_call_return(call);
}

static void callback_destroy(cp_server *self)
{
    callback *c = (callback *)self;
    c->st->live--;
    c->st->callbacks_destroyed++;
    free(c);
}

static const cp_server_vtable callback_vt = {"Callback", callback_dispatch, callback_destroy};

cp_cap *interop_callback_new(interop_state *st)
{
    callback *c = gr_calloc(1, sizeof(*c));
    c->base.vt = &callback_vt;
    c->st = st;
    st->live++;
    return cp_server_cap(&c->base);
}

/* ---- Interop ------------------------------------------------------------------------ */

typedef struct interop {
    cp_server base;
    interop_state *st;
} interop;

typedef struct later {
    uv_timer_t timer;
    cp_call *call;
    interop_state *st;
    int64_t start;
} later;

static void later_closed(uv_handle_t *h)
{
    free(h->data);
}

static void later_fire(uv_timer_t *t)
{
    later *l = t->data;
    Interop_newCounter_Results_B r = {cp_call_results(
        l->call, Interop_newCounter_Results_DATA_WORDS, Interop_newCounter_Results_PTR_WORDS)};
    cp_set_capability(r.s, 0, counter_new(l->st, l->start));
    cp_call_return(l->call);
    uv_close((uv_handle_t *)t, later_closed);
}

typedef struct loop_state {
    cp_call *call; /* the callBack call being answered */
    cp_cap *cb;
    uint32_t i, n;
    int64_t sum;
} loop_state;

static void callback_step(loop_state *ls);

static void callback_returned(const cp_response *resp, void *ud)
{
    loop_state *ls = ud;
    if (resp->exception) {
        cp_call_fail(ls->call, resp->exception->type, "callback failed: %s",
                     resp->exception->reason);
        cp_cap_unref(ls->cb);
        free(ls);
        return;
    }
    ls->sum += Callback_call_Results_get_r((Callback_call_Results_R){resp->results});
    ls->i++;
    callback_step(ls);
}

static void callback_step(loop_state *ls)
{
    if (ls->i == ls->n) {
        cp_cap_unref(gr_steal_pointer(&ls->cb)); /* released before we return */
        Interop_callBack_Results_B r = {cp_call_results(
            ls->call, Interop_callBack_Results_DATA_WORDS, Interop_callBack_Results_PTR_WORDS)};
        Interop_callBack_Results_set_sum(r, ls->sum);
        cp_call_return(ls->call);
        free(ls);
        return;
    }
    cp_request *req = cp_request_new(ls->cb, Callback_TYPE_ID, Callback_call_METHOD_ID);
    Callback_call_Params_B p = {
        cp_request_params(req, Callback_call_Params_DATA_WORDS, Callback_call_Params_PTR_WORDS)};
    Callback_call_Params_set_i(p, ls->i);
    _cleanup_error_ gr_error_t err = NULL;
    if (cp_request_send(req, callback_returned, ls, NULL, &err) < 0) {
        cp_call_fail(ls->call, CP_EXC_FAILED, "%s", gr_error_msg(err));
        cp_cap_unref(ls->cb);
        free(ls);
    }
}

typedef struct add_state {
    cp_call *call;
} add_state;

static void add_returned(const cp_response *resp, void *ud)
{
    cp_call *call = ud;
    if (resp->exception) {
        cp_call_fail(call, resp->exception->type, "%s", resp->exception->reason);
        return;
    }
    Interop_add_Results_B r = {
        cp_call_results(call, Interop_add_Results_DATA_WORDS, Interop_add_Results_PTR_WORDS)};
    Interop_add_Results_set_value(
        r, Counter_inc_Results_get_value((Counter_inc_Results_R){resp->results}));
    cp_call_return(call);
}

static void hang_canceled(cp_call *call, void *ud)
{
    interop_state *st = ud;
    st->canceled++;
    st->hanging--;
    cp_call_fail(call, CP_EXC_FAILED, "canceled");
}

static void interop_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    interop *s = (interop *)self;
    interop_state *st = s->st;
    if (iface != Interop_TYPE_ID) {
        cp_call_unimplemented(call, iface, method);
        return;
    }
    cp_struct_reader params = cp_call_params(call);
    switch (method) {
    case Interop_ping_METHOD_ID: {
        Interop_ping_Results_B r = {cp_call_results(call, 1, 0)};
        Interop_ping_Results_set_n(r,
                                   Interop_ping_Params_get_n((Interop_ping_Params_R){params}) + 1);
        cp_call_return(call);
        return;
    }
    case Interop_echo_METHOD_ID: {
        cp_text t = cp_get_text(params, 0, "");
        cp_struct_builder r = cp_call_results(call, 0, 1);
        cp_set_text(r, 0, t.str, t.len);
        cp_call_return(call);
        return;
    }
    case Interop_fail_METHOD_ID:
        cp_call_fail(call, CP_EXC_FAILED, "%s", cp_get_text(params, 0, "").str);
        return;
    case Interop_hang_METHOD_ID:
        st->hanging++;
        cp_call_on_cancel(call, hang_canceled, st);
        return;
    case Interop_canceledCount_METHOD_ID: {
        Interop_canceledCount_Results_B r = {cp_call_results(call, 1, 0)};
        Interop_canceledCount_Results_set_count(r, st->canceled);
        cp_call_return(call);
        return;
    }
    case Interop_newCounter_METHOD_ID: {
        int64_t start = Interop_newCounter_Params_get_start((Interop_newCounter_Params_R){params});
        if (st->delay_counters) {
            later *l = gr_calloc(1, sizeof(*l));
            l->call = call;
            l->st = st;
            l->start = start;
            uv_timer_init(st->loop, &l->timer);
            l->timer.data = l;
            uv_timer_start(&l->timer, later_fire, 5, 0);
            return;
        }
        cp_struct_builder r = cp_call_results(call, 0, 1);
        cp_set_capability(r, 0, counter_new(st, start));
        cp_call_return(call);
        return;
    }
    case Interop_callBack_METHOD_ID: {
        loop_state *ls = gr_calloc(1, sizeof(*ls));
        ls->call = call;
        ls->cb = cp_get_capability(params, 0);
        ls->n = Interop_callBack_Params_get_n((Interop_callBack_Params_R){params});
        if (!ls->cb) {
            free(ls);
            cp_call_fail(call, CP_EXC_FAILED, "callBack needs a callback");
            return;
        }
        callback_step(ls);
        return;
    }
    case Interop_write_METHOD_ID:
        st->bytes += cp_get_data(params, 0, NULL, 0).len;
        st->writes++;
        cp_call_return(call);
        return;
    case Interop_writeDone_METHOD_ID: {
        Interop_writeDone_Results_B r = {cp_call_results(call, 2, 0)};
        Interop_writeDone_Results_set_bytes(r, st->bytes);
        Interop_writeDone_Results_set_calls(r, st->writes);
        cp_call_return(call);
        return;
    }
    case Interop_add_METHOD_ID: {
        cp_cap *c = cp_get_capability(params, 0);
        cp_request *req = cp_request_new(c, Counter_TYPE_ID, Counter_inc_METHOD_ID);
        cp_cap_unref(c);
        Counter_inc_Params_B p = {cp_request_params(req, 1, 0)};
        Counter_inc_Params_set_by(p, Interop_add_Params_get_by((Interop_add_Params_R){params}));
        _cleanup_error_ gr_error_t err = NULL;
        if (cp_request_send(req, add_returned, call, NULL, &err) < 0)
            cp_call_fail(call, CP_EXC_FAILED, "%s", gr_error_msg(err));
        return;
    }
    case Interop_promiseCounter_METHOD_ID: {
        /* Call ourselves with the counter made from a timer, and return the
         * pipelined (still unsettled) capability. */
        bool delay = st->delay_counters;
        st->delay_counters = true;
        cp_cap *me = cp_server_cap(self);
        cp_request *req = cp_request_new(me, Interop_TYPE_ID, Interop_newCounter_METHOD_ID);
        cp_cap_unref(me);
        cp_set_i64(cp_request_params(req, 1, 0), 0, cp_get_i64(params, 0, 0), 0);
        cp_pending *p = NULL;
        _cleanup_error_ gr_error_t err = NULL;
        int r = cp_request_send(req, NULL, NULL, &p, &err);
        st->delay_counters = delay;
        if (r < 0 || !p) {
            cp_call_fail(call, CP_EXC_FAILED, "%s", r < 0 ? gr_error_msg(err) : "answered at once");
            return;
        }
        static const uint16_t field[] = {0};
        cp_set_capability(cp_call_results(call, 0, 1), 0, cp_pending_pipeline(p, field, 1));
        cp_call_return(call);
        return;
    }
    case Interop_reflect_METHOD_ID: {
        cp_struct_builder r = cp_call_results(call, 0, 1);
        cp_set_capability(r, 0, cp_get_capability(params, 0));
        cp_call_return(call);
        return;
    }
    case Interop_liveObjects_METHOD_ID: {
        Interop_liveObjects_Results_B r = {cp_call_results(call, 1, 0)};
        Interop_liveObjects_Results_set_count(r, (uint32_t)st->live);
        cp_call_return(call);
        return;
    }
    default:
        cp_call_unimplemented(call, iface, method);
        return;
    }
}

static void interop_destroy(cp_server *self)
{
    free(self);
}

static const cp_server_vtable interop_vt = {"Interop", interop_dispatch, interop_destroy};

cp_cap *interop_server_new(interop_state *st)
{
    interop *s = gr_calloc(1, sizeof(*s));
    s->base.vt = &interop_vt;
    s->st = st;
    return cp_server_cap(&s->base);
}

/* ---- call and wait --------------------------------------------------------------------- */

static void outcome_cb(const cp_response *resp, void *ud)
{
    interop_outcome *o = ud;
    if (o->callbacks++) /* a second outcome for one call: keep the first */
        return;
    o->done = true;
    if (resp->exception) {
        o->failed = true;
        o->type = resp->exception->type;
        o->reason = gr_strdup(resp->exception->reason);
        return;
    }
    o->msg = gr_calloc(1, sizeof(*o->msg));
    cp_message_init(o->msg, 0);
    cp_struct_builder root = cp_message_init_root(o->msg, 0, 1);
    cp_ptr_set_copy(cp_builder_ptr(root, 0), resp->content_);
    const cp_message *src = resp->content_.msg;
    for (uint32_t i = 0; src && i < src->ncaps; i++)
        cp_message_add_cap(o->msg, cp_cap_ref(src->caps[i]));
    o->results = cp_get_struct(cp_struct_builder_as_reader(root), 0, cp_ptr_null());
}

interop_outcome *interop_send(cp_request *req, cp_pending **pending, gr_error_t *err)
{
    interop_outcome *o = gr_calloc(1, sizeof(*o));
    if (cp_request_send(req, outcome_cb, o, pending, err) < 0) {
        free(o);
        return NULL;
    }
    return o;
}

void interop_wait(uv_loop_t *loop, interop_outcome *o)
{
    while (!o->done && uv_run(loop, UV_RUN_ONCE))
        ;
}

interop_outcome *interop_call(uv_loop_t *loop, cp_request *req)
{
    _cleanup_error_ gr_error_t err = NULL;
    interop_outcome *o = interop_send(req, NULL, &err);
    if (!o) {
        o = gr_calloc(1, sizeof(*o));
        o->done = o->failed = true;
        o->type = CP_EXC_FAILED;
        o->reason = gr_strdup(gr_error_msg(err));
        return o;
    }
    interop_wait(loop, o);
    return o;
}

void interop_outcome_free(interop_outcome *o)
{
    if (!o)
        return;
    if (o->msg) {
        for (uint32_t i = 0; i < o->msg->ncaps; i++)
            cp_cap_unref(o->msg->caps[i]);
        cp_message_release(o->msg);
        free(o->msg);
    }
    free(o->reason);
    free(o);
}
