/* The local side of RPC: capability handles, server objects, call contexts,
 * requests and their outcomes, promises that queue calls until they resolve,
 * and streaming flow control. The wire protocol is in rpc_conn.c; both meet
 * in cp__deliver (a call going somewhere) and cp__call_dispatch (a call
 * arriving at a capability). */
#include <stdarg.h>

#include "rpc_internal.h"

/* ---- id maps ---------------------------------------------------------------- */

static uint32_t idmap_hash(uint32_t key)
{
    key ^= key >> 16;
    key *= 0x45d9f3bu;
    key ^= key >> 16;
    return key;
}

static void idmap_grow(cp__idmap *m)
{
    cp__idmap old = *m;
    m->cap = old.cap ? old.cap * 2 : 16;
    m->slots = gr_calloc(m->cap, sizeof(*m->slots));
    m->count = 0;
    for (uint32_t i = 0; i < old.cap; i++)
        if (old.slots[i].val)
            cp__idmap_put(m, old.slots[i].key, old.slots[i].val);
    free(old.slots);
}

/* The slot of key, or of the free slot where its probe ends. */
static uint32_t idmap_find(const cp__idmap *m, uint32_t key)
{
    uint32_t mask = m->cap - 1, i = idmap_hash(key) & mask;
    while (m->slots[i].val && m->slots[i].key != key)
        i = (i + 1) & mask;
    return i;
}

void *cp__idmap_get(const cp__idmap *m, uint32_t key)
{
    return m->cap ? m->slots[idmap_find(m, key)].val : NULL;
}

void cp__idmap_put(cp__idmap *m, uint32_t key, void *val)
{
    if ((m->count + 1) * 4 >= m->cap * 3)
        idmap_grow(m);
    cp__idmap_slot *s = &m->slots[idmap_find(m, key)];
    if (!s->val)
        m->count++;
    s->key = key;
    s->val = val;
}

void *cp__idmap_del(cp__idmap *m, uint32_t key)
{
    if (!m->cap)
        return NULL;
    uint32_t mask = m->cap - 1, hole = idmap_find(m, key);
    void *v = m->slots[hole].val;
    if (!v)
        return NULL;
    m->count--;
    /* Entries after the hole whose probe passes through it move back into
     * it, so that every entry stays reachable from its home slot. */
    for (uint32_t j = (hole + 1) & mask; m->slots[j].val; j = (j + 1) & mask) {
        uint32_t home = idmap_hash(m->slots[j].key) & mask;
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].val = NULL;
    return v;
}

void cp__idmap_each(cp__idmap *m, void (*fn)(uint32_t key, void *val, void *ud), void *ud)
{
    /* Deletions move entries between slots: walk the keys as they were. */
    uint32_t n = 0;
    _cleanup_free_ uint32_t *keys = gr_malloc((m->count ? m->count : 1) * sizeof(*keys));
    for (uint32_t i = 0; i < m->cap; i++)
        if (m->slots[i].val)
            keys[n++] = m->slots[i].key;
    for (uint32_t i = 0; i < n; i++) {
        void *v = cp__idmap_get(m, keys[i]);
        if (v)
            fn(keys[i], v, ud);
    }
}

void cp__idmap_release(cp__idmap *m)
{
    free(m->slots);
    memset(m, 0, sizeof(*m));
}

/* The objects every call makes and frees (messages, capabilities, requests,
 * outcomes, calls) come from per-thread stashes (util.h). */
static _Thread_local gr_stash msg_stash, cap_stash, pending_stash, request_stash, call_stash;

/* ---- messages ---------------------------------------------------------------- */

cp_message *cp__msg_new(void)
{
    cp_message *m = gr_stash_zalloc(&msg_stash, sizeof(*m));
    cp_message_init(m, 0);
    return m;
}

void cp__msg_free(cp_message *m)
{
    if (!m)
        return;
    for (uint32_t i = 0; i < m->ncaps; i++)
        cp_cap_unref(m->caps[i]);
    m->ncaps = 0;
    bool self_in_buf = m->self_in_buf;
    cp_message_release(m);
    if (!self_in_buf)
        gr_stash_free(&msg_stash, m);
}

/* ---- capabilities -------------------------------------------------------------- */

cp_cap *cp__cap_new(cp__cap_kind kind)
{
    cp_cap *c = gr_stash_zalloc(&cap_stash, sizeof(*c));
    c->refs = 1;
    c->kind = kind;
    c->queue_tail = &c->queue;
    return c;
}

cp_cap *cp_cap_ref(cp_cap *cap)
{
    if (cap)
        cap->refs++;
    return cap;
}

static void waiters_remove(cp_cap **head, cp_cap *cap)
{
    for (cp_cap **pp = head; *pp; pp = &(*pp)->waiter_next) {
        if (*pp == cap) {
            *pp = cap->waiter_next;
            cap->waiter_next = NULL;
            return;
        }
    }
}

/* One promise per pipelined path of a call, kept in the order they were
 * made: calls on them then resolve in the order they were sent. */
static cp_cap *waiter_find(cp_cap **head, const uint16_t *path, size_t n)
{
    for (cp_cap *w = *head; w; w = w->waiter_next)
        if (w->npath == n && (!n || memcmp(w->path, path, n * sizeof(*path)) == 0))
            return w;
    return NULL;
}

static void waiter_add(cp_cap **head, cp_cap *c, const uint16_t *path, size_t n)
{
    if (n) {
        c->path = gr_malloc(n * sizeof(*path));
        memcpy(c->path, path, n * sizeof(*path));
    }
    c->npath = (uint16_t)n;
    cp_cap **pp = head;
    while (*pp)
        pp = &(*pp)->waiter_next;
    *pp = c;
}

/* The capability a pipelined path names when it is known already (the call
 * came back, or a promise for the path exists), else NULL. */
static cp_cap *pipeline_known(bool returned, bool failed, const cp_exception *exc,
                              cp_ptr_reader content, cp_cap **waiters, const uint16_t *path,
                              size_t n)
{
    if (returned && failed)
        return cp_cap_broken(exc->type, "%s", exc->reason);
    if (returned)
        return cp__follow_path(content, path, n);
    return cp_cap_ref(waiter_find(waiters, path, n));
}

static void cap_destroy(cp_cap *cap);

char *cp__vformat(const char *fmt, va_list ap)
{
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        gr_die("out of memory");
    return s;
}

void cp_cap_unref(cp_cap *cap)
{
    /* A loop rather than recursion down a chain of resolutions, which the
     * peer can make long. */
    while (cap && --cap->refs == 0) {
        cp_cap *next = cap->resolved;
        cap->resolved = NULL;
        cap_destroy(cap);
        cap = next;
    }
}

static void cap_destroy(cp_cap *cap)
{
    switch (cap->kind) {
    case CP__CAP_LOCAL:
        if (cap->server) {
            cp_server *srv = cap->server;
            srv->cap_ = NULL;
            srv->vt->destroy(srv);
        }
        break;
    case CP__CAP_IMPORT:
        cp__conn_release_import(cap);
        break;
    case CP__CAP_PROMISE:
        if (cap->question) {
            waiters_remove(&cap->question->waiters, cap);
            cp__pending_unref(cap->question);
        }
        if (cap->answer) {
            waiters_remove(&cap->answer->waiters, cap);
            cp__call_unref(cap->answer);
        }
        break;
    case CP__CAP_BROKEN:
        break;
    }
    free((char *)cap->exc.reason);
    free(cap->path);
    gr_stash_free(&cap_stash, cap);
}

cp_cap *cp_cap_broken(cp_exc_type type, const char *fmt, ...)
{
    cp_cap *c = cp__cap_new(CP__CAP_BROKEN);
    va_list ap;
    va_start(ap, fmt);
    c->exc.reason = cp__vformat(fmt, ap);
    va_end(ap);
    c->exc.type = type;
    return c;
}

cp_cap *cp__cap_target(cp_cap *cap)
{
    cp_cap *t = cap;
    while (t->resolved && !t->embargo_id && !t->queue)
        t = t->resolved;
    /* Point cap straight at the end of the chain, so that walking it stays
     * cheap however many Resolves built it. */
    if (t != cap && cap->resolved != t && !cap->embargo_id && !cap->queue) {
        cp_cap *old = cap->resolved;
        cap->resolved = cp_cap_ref(t);
        cp_cap_unref(old);
    }
    return t;
}

bool cp_cap_is_broken(const cp_cap *cap)
{
    if (!cap)
        return true;
    while (cap->resolved)
        cap = cap->resolved;
    return cap->kind == CP__CAP_BROKEN;
}

void cp__cap_break(cp_cap *cap, cp_exc_type type, const char *reason)
{
    cap->kind = CP__CAP_BROKEN;
    cap->conn = NULL;
    cap->exc.type = type;
    free((char *)cap->exc.reason);
    cap->exc.reason = gr_strdup(reason);
    cap->embargo_id = 0;
    cp__cap_flush_queue(cap);
    if (cap->promise_exports)
        cp__conn_promise_resolved(cap);
}

static void flush_one(cp_cap *cap)
{
    cp__queued *q = cap->queue;
    cap->queue = NULL;
    cap->queue_tail = &cap->queue;
    while (q) {
        cp__queued *next = q->next;
        cp_cap *to = cap->resolved ? cap->resolved : cap;
        if (to == cap && cap->kind != CP__CAP_BROKEN) {
            /* Still unresolved (cannot happen from resolve); keep it queued. */
            q->next = NULL;
            *cap->queue_tail = q;
            cap->queue_tail = &q->next;
        } else {
            cp__deliver(to, q->req, q->pending);
            cp__pending_unref(q->pending);
            free(q);
        }
        q = next;
    }
}

/* Delivering a queued call can end a call, which resolves promises whose
 * queues then flush, and so on: a chain the peer controls. Flushes started
 * while one runs wait in a list the outermost one works through, so the
 * stack stays flat however long the chain. */
static _Thread_local int flush_depth;
static _Thread_local cp_cap *flush_next, *flush_last;

void cp__cap_flush_queue(cp_cap *cap)
{
    if (flush_depth) {
        if (!cap->flush_waiting) {
            cap->flush_waiting = true;
            cp_cap_ref(cap);
            cap->flush_link = NULL;
            if (flush_last)
                flush_last->flush_link = cap;
            else
                flush_next = cap;
            flush_last = cap;
        }
        return;
    }
    flush_depth++;
    cp_cap_ref(cap);
    flush_one(cap);
    cp_cap_unref(cap);
    while (flush_next) {
        cp_cap *c = flush_next;
        flush_next = c->flush_link;
        if (!flush_next)
            flush_last = NULL;
        c->flush_waiting = false;
        flush_one(c);
        cp_cap_unref(c);
    }
    flush_depth--;
}

void cp__cap_resolve(cp_cap *cap, cp_cap *to)
{
    if (cap->resolved) { /* already resolved; keep the first */
        cp_cap_unref(to);
        return;
    }
    /* A promise resolved (through others) to itself would never settle. */
    for (cp_cap *t = to; t; t = t->resolved) {
        if (t == cap) {
            cp_cap_unref(to);
            to = cp_cap_broken(CP_EXC_FAILED, "promise resolved to itself");
            break;
        }
    }
    cap->resolved = to;
    cp_rpc_conn *conn = cap->question                 ? cap->question->conn
                        : cap->kind == CP__CAP_IMPORT ? cap->conn
                                                      : NULL;
    cp_cap *t = cp__cap_target(to);
    bool remote_same_conn = (t->kind == CP__CAP_IMPORT && t->conn && t->conn == conn) ||
                            (t->kind == CP__CAP_PROMISE && t->question && t->question->conn &&
                             t->question->conn == conn);
    /* Calls sent to the peer through the promise may still be on their way
     * back here; new calls must not overtake them. Not for a broken (or
     * null) resolution: it may have come as an exception on the wire, not as
     * a capability the peer could reflect, and calls on it all fail alike,
     * in any order (the C++ implementation, too, sends no Disembargo then,
     * and aborts on one whose target is broken). */
    if (cap->calls_sent && conn && !remote_same_conn && t->kind != CP__CAP_BROKEN &&
        cp_rpc_conn_alive(conn))
        cp__conn_embargo(conn, cap);
    if (cap->question) {
        cp_pending *q = cap->question;
        cap->question = NULL;
        cp__pending_unref(q);
    }
    if (cap->answer) {
        cp_call *a = cap->answer;
        cap->answer = NULL;
        cp__call_unref(a);
    }
    if (!cap->embargo_id)
        cp__cap_flush_queue(cap);
    if (cap->promise_exports)
        cp__conn_promise_resolved(cap);
}

static void enqueue(cp_cap *cap, cp_request *req, cp_pending *pending)
{
    cp__queued *q = gr_calloc(1, sizeof(*q));
    q->req = req;
    q->pending = pending;
    pending->refs++;
    *cap->queue_tail = q;
    cap->queue_tail = &q->next;
}

cp_cap *cp__follow_path(cp_ptr_reader ptr, const uint16_t *path, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        cp_struct_reader s = cp_ptr_get_struct(ptr, cp_ptr_null());
        ptr = cp_get_ptr(s, path[i]);
    }
    if (cp_ptr_get_kind(ptr) != CP_PTR_CAP)
        return cp_cap_broken(CP_EXC_FAILED, "pipelined field is not a capability");
    uint32_t idx = cp_ptr_get_cap(ptr);
    cp_cap *c = ptr.msg ? cp_message_get_cap(ptr.msg, idx) : NULL;
    if (!c)
        return cp_cap_broken(CP_EXC_FAILED, "pipelined field names no capability");
    return cp_cap_ref(c);
}

cp_cap *cp_get_capability(cp_struct_reader r, uint16_t idx)
{
    cp_ptr_reader p = cp_get_ptr(r, idx);
    if (!r.msg || cp_ptr_get_kind(p) != CP_PTR_CAP)
        return NULL;
    return cp_cap_ref(cp_message_get_cap(r.msg, cp_ptr_get_cap(p)));
}

void cp_set_capability(cp_struct_builder b, uint16_t idx, cp_cap *cap)
{
    cp_ptr_builder p = cp_builder_ptr(b, idx);
    if (!cap || !b.msg || !p.ptr) {
        cp_cap_unref(cap);
        cp_ptr_set_null(p);
        return;
    }
    cp_ptr_set_cap(p, cp_message_add_cap(b.msg, cap));
}

/* ---- servers ---------------------------------------------------------------- */

cp_cap *cp_server_cap(cp_server *srv)
{
    if (srv->cap_)
        return cp_cap_ref(srv->cap_);
    cp_cap *c = cp__cap_new(CP__CAP_LOCAL);
    c->server = srv;
    srv->cap_ = c;
    return c;
}

/* ---- outcomes of outgoing calls ------------------------------------------------ */

cp_pending *cp__pending_new(cp_response_cb cb, void *ud)
{
    cp_pending *p = gr_stash_zalloc(&pending_stash, sizeof(*p));
    p->refs = 1;
    p->cb = cb;
    p->ud = ud;
    return p;
}

void cp__pending_unref(cp_pending *p)
{
    if (--p->refs == 0) {
        cp__msg_free(p->results_msg);
        free((char *)p->exc.reason);
        cp__export_list_free(&p->param_exports);
        gr_stash_free(&pending_stash, p);
        return;
    }
    /* Only the connection's table still needs the question: tell the peer. */
    if (p->refs == 1 && p->conn && !p->returned && !p->finish_sent)
        cp__conn_question_done(p);
}

void cp__pending_resolve_waiters(cp_pending *p)
{
    p->refs++;
    while (p->waiters) {
        cp_cap *w = p->waiters;
        p->waiters = w->waiter_next;
        w->waiter_next = NULL;
        cp_cap *to = p->failed ? cp_cap_broken(p->exc.type, "%s", p->exc.reason)
                               : cp__follow_path(p->content, w->path, w->npath);
        cp_cap_ref(w);
        cp__cap_resolve(w, to);
        cp_cap_unref(w);
    }
    cp__pending_unref(p);
}

static void pending_finish_user(cp_pending *p, const cp_response *resp)
{
    if (p->flow) {
        cp_flow *f = p->flow;
        p->flow = NULL;
        cp__flow_done(f, p->flow_bytes, resp->exception);
    }
    if (p->user_done)
        return;
    p->user_done = true;
    if (p->cb)
        p->cb(resp, p->ud);
    cp__pending_unref(p);
}

void cp__pending_fail(cp_pending *p, cp_exc_type type, const char *reason)
{
    if (p->returned)
        return;
    p->returned = true;
    p->failed = true;
    p->exc.type = type;
    p->exc.reason = gr_strdup(reason);
    p->refs++;
    cp__pending_resolve_waiters(p);
    cp_response resp = {.exception = &p->exc, .results = cp_struct_reader_empty()};
    pending_finish_user(p, &resp);
    cp__pending_unref(p);
}

void cp__pending_results(cp_pending *p, cp_message *msg, cp_ptr_reader content)
{
    if (p->returned) {
        cp__msg_free(msg);
        return;
    }
    p->returned = true;
    p->results_msg = msg;
    p->content = content;
    p->refs++;
    cp__pending_resolve_waiters(p);
    cp_response resp = {.exception = NULL,
                        .results = cp_ptr_get_struct(content, cp_ptr_null()),
                        .content_ = content};
    pending_finish_user(p, &resp);
    cp__pending_unref(p);
}

cp_cap *cp_pending_pipeline(cp_pending *p, const uint16_t *path, size_t n)
{
    cp_cap *c = pipeline_known(p->returned, p->failed, &p->exc, p->content, &p->waiters, path, n);
    if (c)
        return c;
    c = cp__cap_new(CP__CAP_PROMISE);
    c->question = p;
    p->refs++;
    waiter_add(&p->waiters, c, path, n);
    return c;
}

void cp_pending_cancel(cp_pending *p)
{
    if (!p || p->user_done)
        return;
    p->user_done = true;
    if (p->local_call)
        cp__call_cancel(p->local_call);
    cp__pending_unref(p);
}

struct cp_flow {
    size_t window, in_flight, max_in_flight;
    unsigned calls;
    bool blocked, freed;
    char *error;
    cp_flow_ready_cb ready;
    void *ud;
};

/* ---- requests ------------------------------------------------------------------- */

cp_request *cp_request_new(cp_cap *target, uint64_t interface_id, uint16_t method_id)
{
    cp_request *req = gr_stash_zalloc(&request_stash, sizeof(*req));
    req->target = cp_cap_ref(target);
    req->msg = cp__msg_new();
    cp_struct_builder root = cp_message_init_root(req->msg, 1, 1);
    cp_set_u16(root, 0, CP__MSG_CALL, 0);
    req->call = cp_init_struct(root, 0, 3, 3);
    cp_set_u64(req->call, 8, interface_id, 0);
    cp_set_u16(req->call, 4, method_id, 0);
    req->interface_id = interface_id;
    req->method_id = method_id;
    return req;
}

cp_struct_builder cp_request_params(cp_request *req, uint16_t data_words, uint16_t ptr_words)
{
    if (!req->params_init) {
        cp_struct_builder payload = cp_init_struct(req->call, 1, 0, 2);
        req->params = cp_init_struct(payload, 0, data_words, ptr_words);
        req->params_init = true;
    }
    return req->params;
}

/* The Payload of a request, with its params made if they were not. */
cp_struct_builder cp__request_payload(cp_request *req)
{
    cp_request_params(req, 0, 0);
    return cp_ptr_get_struct_builder(cp_builder_ptr(req->call, 1), 0, 2);
}

void cp_request_free(cp_request *req)
{
    if (!req)
        return;
    cp_cap_unref(req->target);
    cp__msg_free(req->msg);
    gr_stash_free(&request_stash, req);
}

void cp__deliver(cp_cap *cap, cp_request *req, cp_pending *pending)
{
    cp_cap *t = cp__cap_target(cap);
    switch (t->kind) {
    case CP__CAP_LOCAL: {
        /* The params are read where the payload points now (a forwarded
         * call copied them over the struct cp_request_params made). */
        cp_ptr_reader content =
            cp_ptr_builder_as_reader(cp_builder_ptr(cp__request_payload(req), 0));
        cp_message *msg = gr_steal_pointer(&req->msg);
        cp_struct_reader params = cp_ptr_get_struct(content, cp_ptr_null());
        cp_call *call =
            cp__call_new(CP__CALL_LOCAL, msg, params, req->interface_id, req->method_id);
        call->params_ptr = content;
        call->pending = pending;
        pending->refs++;
        pending->local_call = call;
        cp_request_free(req);
        cp__call_dispatch(call, t);
        return;
    }
    case CP__CAP_IMPORT:
        if (t->resolved || !t->conn || !cp_rpc_conn_alive(t->conn))
            break;
        t->calls_sent = true;
        cp__conn_send_call(t->conn, t, req, pending);
        return;
    case CP__CAP_PROMISE:
        if (!t->resolved && t->question && t->question->conn && !t->question->returned &&
            cp_rpc_conn_alive(t->question->conn)) {
            t->calls_sent = true;
            cp__conn_send_call(t->question->conn, t, req, pending);
            return;
        }
        enqueue(t, req, pending);
        return;
    case CP__CAP_BROKEN:
        cp_request_free(req);
        cp__pending_fail(pending, t->exc.type, t->exc.reason);
        return;
    }
    if (t->resolved) { /* an embargoed or queued import */
        enqueue(t, req, pending);
        return;
    }
    cp_request_free(req);
    cp__pending_fail(pending, CP_EXC_DISCONNECTED, "connection lost");
}

static int request_send(cp_request *req, cp_response_cb cb, void *ud, cp_flow *flow,
                        size_t flow_bytes, cp_pending **out, gr_error_t *err)
{
    if (out)
        *out = NULL;
    if (!req->target) {
        cp_request_free(req);
        return gr_make_error(err, 0, "call on a null capability");
    }
    cp_cap *t = cp__cap_target(req->target);
    if (t->kind == CP__CAP_BROKEN) {
        int r = gr_make_error(err, 0, "call on a broken capability: %s", t->exc.reason);
        cp_request_free(req);
        return r;
    }
    cp_rpc_conn *conn = t->kind == CP__CAP_IMPORT                   ? t->conn
                        : t->kind == CP__CAP_PROMISE && t->question ? t->question->conn
                                                                    : NULL;
    if ((t->kind == CP__CAP_IMPORT && (!conn || !cp_rpc_conn_alive(conn)))) {
        cp_request_free(req);
        return gr_make_error(err, 0, "call on a capability whose connection is gone");
    }
    if (conn && cp__conn_questions(conn) >= cp__conn_max_questions(conn)) {
        cp_request_free(req);
        return gr_make_error(err, 0, "too many outstanding calls on the connection (limit %u)",
                             cp__conn_max_questions(conn));
    }
    if (!out) /* nobody can pipeline on these results: Call.noPromisePipelining */
        cp_set_bool(req->call, CP__CALL_NO_PIPELINING_BIT, true, false);
    cp_pending *p = cp__pending_new(cb, ud);
    p->flow = flow;
    p->flow_bytes = flow_bytes;
    p->refs++;
    cp__deliver(req->target, req, p);
    if (out && !p->user_done)
        *out = p;
    cp__pending_unref(p);
    return 0;
}

int cp_request_send(cp_request *req, cp_response_cb cb, void *ud, cp_pending **out, gr_error_t *err)
{
    return request_send(req, cb, ud, NULL, 0, out, err);
}

/* ---- calls being answered ------------------------------------------------------ */

cp_call *cp__call_new(cp__call_origin origin, cp_message *params_msg, cp_struct_reader params,
                      uint64_t interface_id, uint16_t method_id)
{
    cp_call *call = gr_stash_zalloc(&call_stash, sizeof(*call));
    call->refs = 1;
    call->origin = origin;
    call->params_msg = params_msg;
    call->params = params;
    call->interface_id = interface_id;
    call->method_id = method_id;
    return call;
}

void cp__call_unref(cp_call *call)
{
    if (--call->refs > 0)
        return;
    if (call->pending) {
        call->pending->local_call = NULL;
        cp__pending_unref(call->pending);
    }
    cp_cap_unref(call->target);
    cp__msg_free(call->params_msg);
    cp__msg_free(call->results_msg);
    free((char *)call->exc.reason);
    cp__export_list_free(&call->result_exports);
    gr_stash_free(&call_stash, call);
}

cp_struct_reader cp_call_params(cp_call *call)
{
    return call->params;
}

/* Makes the results message, laid out as rpc Message{return{results}}, and
 * returns the Payload. */
cp_struct_builder cp__call_payload(cp_call *call)
{
    if (!call->results_msg) {
        call->results_msg = cp__msg_new();
        cp_struct_builder root = cp_message_init_root(call->results_msg, 1, 1);
        cp_set_u16(root, 0, CP__MSG_RETURN, 0);
        call->ret = cp_init_struct(root, 0, 2, 1);
        cp_set_bool(call->ret, 32, false, true); /* releaseParamCaps: set on sending */
        cp_init_struct(call->ret, 0, 0, 2);
    }
    return cp_ptr_get_struct_builder(cp_builder_ptr(call->ret, 0), 0, 2);
}

cp_struct_builder cp_call_results(cp_call *call, uint16_t data_words, uint16_t ptr_words)
{
    if (!call->results_init) {
        cp_struct_builder payload = cp__call_payload(call);
        call->results = cp_init_struct(payload, 0, data_words, ptr_words);
        call->results_init = true;
    }
    return call->results;
}

bool cp_call_canceled(const cp_call *call)
{
    return call->canceled;
}

void cp_call_on_cancel(cp_call *call, void (*on_cancel)(cp_call *call, void *ud), void *ud)
{
    call->on_cancel = on_cancel;
    call->cancel_ud = ud;
}

static void call_resolve_waiters(cp_call *call);

/* The params (and the capabilities in them) are not needed once the call
 * has ended: drop them now rather than at Finish. */
static void call_drop_params(cp_call *call)
{
    cp__msg_free(gr_steal_pointer(&call->params_msg));
    call->params = cp_struct_reader_empty();
    call->params_ptr = cp_ptr_null();
}

void cp__call_cancel(cp_call *call)
{
    if (call->ended || call->canceled)
        return;
    call->canceled = true;
    call->refs++;
    if (call->on_cancel) {
        void (*fn)(cp_call *, void *) = call->on_cancel;
        call->on_cancel = NULL;
        fn(call, call->cancel_ud);
    }
    call_resolve_waiters(call);
    cp__call_unref(call);
}

static void call_resolve_waiters(cp_call *call)
{
    call->refs++;
    while (call->waiters) {
        cp_cap *w = call->waiters;
        call->waiters = w->waiter_next;
        w->waiter_next = NULL;
        cp_cap *to = call->failed || !call->returned
                         ? cp_cap_broken(call->failed ? call->exc.type : CP_EXC_FAILED, "%s",
                                         call->failed ? call->exc.reason : "call canceled")
                         : cp__follow_path(call->content, w->path, w->npath);
        cp_cap_ref(w);
        cp__cap_resolve(w, to);
        cp_cap_unref(w);
    }
    cp__call_unref(call);
}

/* Delivers the outcome (results or call->exc) to whoever made the call. */
static void call_complete(cp_call *call)
{
    if (call->origin == CP__CALL_LOCAL) {
        cp_pending *p = gr_steal_pointer(&call->pending);
        call->returned = true;
        if (p) {
            p->local_call = NULL;
            if (call->failed) {
                cp__pending_fail(p, call->exc.type, call->exc.reason);
            } else {
                cp_struct_builder payload = cp__call_payload(call);
                cp_ptr_reader content = cp_ptr_builder_as_reader(cp_builder_ptr(payload, 0));
                cp_message *msg = gr_steal_pointer(&call->results_msg);
                cp__pending_results(p, msg, content);
            }
            cp__pending_unref(p);
        }
    } else if (!call->finished && call->conn && cp_rpc_conn_alive(call->conn)) {
        cp__conn_send_return(call);
    }
    call_resolve_waiters(call);
}

void cp_call_return(cp_call *call)
{
    if (call->ended) {
        gr_warn("rpc: call returned twice");
        return;
    }
    call->ended = true;
    if (!call->canceled) {
        if (!call->results_init)
            cp_call_results(call, 0, 0);
        call_complete(call);
    } else {
        call_resolve_waiters(call); /* to broken: no results will come */
    }
    call_drop_params(call);
    cp__call_unref(call);
}

static void call_fail_str(cp_call *call, cp_exc_type type, char *reason)
{
    if (call->ended) {
        gr_warn("rpc: call ended twice");
        free(reason);
        return;
    }
    call->ended = true;
    call->failed = true;
    call->exc.type = type;
    call->exc.reason = reason;
    if (!call->canceled)
        call_complete(call);
    else
        call_resolve_waiters(call);
    call_drop_params(call);
    cp__call_unref(call);
}

void cp_call_fail(cp_call *call, cp_exc_type type, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *reason = cp__vformat(fmt, ap);
    va_end(ap);
    call_fail_str(call, type, reason);
}

void cp_call_unimplemented(cp_call *call, uint64_t interface_id, uint16_t method_id)
{
    cp_call_fail(call, CP_EXC_UNIMPLEMENTED, "method %u of interface 0x%016llx is not implemented",
                 method_id, (unsigned long long)interface_id);
}

cp_cap *cp__call_pipeline(cp_call *call, const uint16_t *path, size_t n)
{
    if (!call->returned && (call->ended || call->canceled))
        return cp_cap_broken(CP_EXC_FAILED, "pipelined on a canceled call");
    cp_cap *c = pipeline_known(call->returned, call->failed, &call->exc, call->content,
                               &call->waiters, path, n);
    if (c)
        return c;
    c = cp__cap_new(CP__CAP_PROMISE);
    c->answer = call;
    call->refs++;
    waiter_add(&call->waiters, c, path, n);
    return c;
}

/* A call that arrived at a capability we do not host here goes on through a
 * request of its own; its outcome is copied back. */
static void copy_caps(cp_message *dst, const cp_message *src)
{
    for (uint32_t i = 0; i < src->ncaps; i++)
        cp_message_add_cap(dst, cp_cap_ref(src->caps[i]));
}

static void forward_done(const cp_response *resp, void *ud)
{
    cp_call *call = ud;
    call->forward = NULL;
    if (resp->exception) {
        cp_call_fail(call, resp->exception->type, "%s", resp->exception->reason);
    } else if (!call->ended) {
        cp_struct_builder payload = cp__call_payload(call);
        cp_ptr_set_copy(cp_builder_ptr(payload, 0), resp->content_);
        copy_caps(call->results_msg, resp->content_.msg);
        call->results_init = true;
        cp_call_return(call);
    }
    cp__call_unref(call);
}

static void forward_cancel(cp_call *call, void *ud)
{
    if (call->forward) {
        cp_pending *p = gr_steal_pointer(&call->forward);
        cp_pending_cancel(p);
        cp_call_fail(call, CP_EXC_FAILED, "call canceled");
        cp__call_unref(call); /* the ref forward_done would have dropped */
    }
}

void cp__call_dispatch(cp_call *call, cp_cap *target)
{
    cp_cap *t = cp__cap_target(target);
    if (t->kind == CP__CAP_LOCAL && t->server) {
        call->target = cp_cap_ref(t);
        t->server->vt->dispatch(t->server, call, call->interface_id, call->method_id);
        return;
    }
    if (t->kind == CP__CAP_BROKEN) {
        cp_call_fail(call, t->exc.type, "%s", t->exc.reason);
        return;
    }
    cp_request *req = cp_request_new(target, call->interface_id, call->method_id);
    cp_struct_builder payload = cp__request_payload(req);
    cp_ptr_set_copy(cp_builder_ptr(payload, 0), call->params_ptr);
    copy_caps(req->msg, call->params_msg);
    cp_pending *p = cp__pending_new(forward_done, call);
    call->refs++;
    call->forward = p;
    cp_call_on_cancel(call, forward_cancel, NULL);
    p->refs++;
    cp__deliver(req->target, req, p);
    cp__pending_unref(p);
}

/* ---- streaming flow control ------------------------------------------------------ */

cp_flow *cp_flow_new(size_t window, cp_flow_ready_cb ready, void *ud)
{
    cp_flow *f = gr_calloc(1, sizeof(*f));
    f->window = window ? window : 64 * 1024;
    f->ready = ready;
    f->ud = ud;
    return f;
}

void cp_flow_free(cp_flow *flow)
{
    if (!flow)
        return;
    if (flow->calls) {
        flow->freed = true;
        return;
    }
    free(flow->error);
    free(flow);
}

int cp_flow_send(cp_flow *flow, cp_request *req, gr_error_t *err)
{
    if (flow->error) {
        cp_request_free(req);
        return gr_make_error(err, 0, "stream failed: %s", flow->error);
    }
    size_t bytes = cp_message_frame_size(req->msg);
    /* Account before sending: a local callee may answer at once. */
    flow->in_flight += bytes;
    flow->calls++;
    if (flow->in_flight > flow->max_in_flight)
        flow->max_in_flight = flow->in_flight;
    int r = request_send(req, NULL, NULL, flow, bytes, NULL, err);
    if (r < 0) {
        flow->in_flight -= bytes;
        flow->calls--;
        return r;
    }
    if (flow->error)
        return gr_make_error(err, 0, "stream failed: %s", flow->error);
    if (flow->in_flight < flow->window)
        return 1;
    flow->blocked = true;
    return 0;
}

void cp__flow_done(cp_flow *flow, size_t bytes, const cp_exception *exc)
{
    flow->in_flight -= bytes;
    flow->calls--;
    if (exc && !flow->error)
        flow->error = gr_strdup(exc->reason);
    if (flow->freed) {
        if (!flow->calls)
            cp_flow_free(flow);
        return;
    }
    if (flow->blocked && (flow->in_flight < flow->window || flow->error)) {
        flow->blocked = false;
        if (flow->ready)
            flow->ready(flow, flow->ud);
    }
}

size_t cp_flow_in_flight(const cp_flow *flow)
{
    return flow->in_flight;
}

size_t cp_flow_max_in_flight(const cp_flow *flow)
{
    return flow->max_in_flight;
}

unsigned cp_flow_pending_calls(const cp_flow *flow)
{
    return flow->calls;
}
