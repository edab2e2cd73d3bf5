/* The two-party wire protocol (rpc.capnp, level 1): the four tables
 * (questions, answers, exports, imports), cap descriptors both ways,
 * embargoes, limits, and the libuv transport. Every message from the peer is
 * untrusted: a malformed one ends the connection with an Abort that says
 * what was wrong. */
#include <stdarg.h>

#include "rpc_internal.h"

#define CP__DEFAULT_MAX_CALLS 10000u
#define CP__MAX_PATH 64u
#define CP__READ_CHUNK (64u * 1024u)

typedef struct cp__export {
    cp_cap *cap;
    uint32_t refs;
    /* Exported as a senderPromise: on the cap's list of connections to tell
     * (with a Resolve) once it resolves. */
    cp_rpc_conn *conn;
    uint32_t id;
    struct cp__export *pnext, **pprev;
} cp__export;

struct cp_rpc_conn {
    uv_loop_t *loop;
    uv_stream_t *stream; /* NULL for a raw connection; owned */
    cp__write_fn write_fn;
    void *write_ud;
    cp_stream_reader reader;
    cp_rpc_options opts;
    cp_cap *bootstrap;

    cp__idmap questions, answers, exports, imports, embargoes;
    uint32_t next_question, next_export, next_embargo;
    uint32_t *free_questions, nfree_questions, free_questions_cap;
    uint32_t *free_exports, nfree_exports, free_exports_cap;
    uint32_t outstanding; /* the peer's calls not yet returned */
    cp_cap *caps;         /* imports, to break on disconnect */

    bool alive, closing, closed, free_requested;
    int handles;       /* libuv handles not yet closed */
    int write_status;  /* the first write error */
    uv_timer_t linger; /* bounds the wait for the peer after an Abort */
    /* Messages queue in `out` and go out in one write per loop iteration:
     * before the loop polls (prepare) and after it ran the I/O callbacks
     * (check), so that a batch of calls or returns costs one syscall. */
    uv_prepare_t flush_prepare;
    uv_check_t flush_check;
    bool flush_armed;
    uv_shutdown_t shutdown;
    int busy;
    char *reason;
    cp_rpc_disconnect_cb on_disconnect;
    void *disconnect_ud;
    gr_buf out;
    char *read_buf;
    cp_rpc_stats stats;
    /* Answers that needed no Finish: out of the table at their Return, but
     * still holding their call (and its target) until the code that made
     * the Return is done, so that returning never frees the object that
     * returned under it. Dropped after each read callback, each flush, and
     * once the connection's handles are closed (or when it is freed). */
    cp_call *done_answers;
};

static void conn_abort(cp_rpc_conn *conn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void conn_maybe_free(cp_rpc_conn *conn);

/* ---- ids ------------------------------------------------------------------- */

static uint32_t id_take(uint32_t *next, uint32_t **free_ids, uint32_t *nfree)
{
    if (*nfree)
        return (*free_ids)[--*nfree];
    return (*next)++;
}

static void id_give(uint32_t id, uint32_t **free_ids, uint32_t *nfree, uint32_t *cap)
{
    if (*nfree == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *free_ids = gr_realloc(*free_ids, *cap * sizeof(**free_ids));
    }
    (*free_ids)[(*nfree)++] = id;
}

/* ---- sending ------------------------------------------------------------------ */

typedef struct cp__write {
    uv_write_t req;
    cp_rpc_conn *conn;
    char *data;
} cp__write;

static void on_write_failed(uv_timer_t *t)
{
    cp_rpc_conn *conn = t->data;
    char *why = gr_asprintf("write: %s", uv_strerror(conn->write_status));
    cp__rpc_conn_disconnect(conn, why);
    free(why);
}

/* A write that failed ends the connection, from the loop rather than from
 * inside whatever was sending. */
static void write_failed(cp_rpc_conn *conn, int status)
{
    if (!conn->alive || conn->closing || conn->write_status)
        return;
    conn->write_status = status;
    uv_timer_start(&conn->linger, on_write_failed, 0, 0);
}

static void on_written(uv_write_t *req, int status)
{
    cp__write *w = (cp__write *)req;
    if (status < 0 && status != UV_ECANCELED)
        write_failed(w->conn, status);
    free(w->data);
    free(w);
}

static void conn_flush(cp_rpc_conn *conn)
{
    if (!conn->out.len || !conn->stream || conn->closing) {
        gr_buf_release(&conn->out);
        return;
    }
    uv_buf_t buf = uv_buf_init(conn->out.data, (unsigned)conn->out.len);
    int n = uv_try_write(conn->stream, &buf, 1);
    if (n == (int)conn->out.len) {
        conn->out.len = 0;
        return;
    }
    if (n < 0 && n != UV_EAGAIN) {
        gr_buf_release(&conn->out);
        write_failed(conn, n);
        return;
    }
    size_t done = n > 0 ? (size_t)n : 0;
    cp__write *w = gr_calloc(1, sizeof(*w));
    w->conn = conn;
    w->data = gr_buf_steal(&conn->out);
    uv_buf_t rest = uv_buf_init(w->data + done, (unsigned)(buf.len - done));
    int r = uv_write(&w->req, conn->stream, &rest, 1, on_written);
    if (r < 0) {
        free(w->data);
        free(w);
        write_failed(conn, r);
    }
}

/* Beyond this many queued bytes a message is written at once. */
#define CP__OUT_EAGER (256 * 1024)

static void flush_disarm(cp_rpc_conn *conn)
{
    if (!conn->flush_armed)
        return;
    conn->flush_armed = false;
    uv_prepare_stop(&conn->flush_prepare);
    uv_check_stop(&conn->flush_check);
}

/* Drops the answers let go at their Return; called where none of the code
 * that returned them is on the stack. Their targets' destructors may free
 * conn: the caller checks with conn_maybe_free afterwards. */
static void drop_done_answers(cp_rpc_conn *conn)
{
    conn->busy++;
    while (conn->done_answers) {
        cp_call *call = conn->done_answers;
        conn->done_answers = call->done_next;
        call->done_next = NULL;
        cp__call_unref(call); /* the answers table's reference */
    }
    conn->busy--;
}

static void flush_queued(cp_rpc_conn *conn)
{
    flush_disarm(conn);
    conn_flush(conn);
    drop_done_answers(conn);
    conn_maybe_free(conn);
}

static void on_flush_prepare(uv_prepare_t *h)
{
    flush_queued(h->data);
}

static void on_flush_check(uv_check_t *h)
{
    flush_queued(h->data);
}

static void flush_arm(cp_rpc_conn *conn)
{
    if (conn->flush_armed || !conn->stream || conn->closing)
        return;
    conn->flush_armed = true;
    uv_prepare_start(&conn->flush_prepare, on_flush_prepare);
    uv_check_start(&conn->flush_check, on_flush_check);
}

static void conn_send(cp_rpc_conn *conn, cp_message *m)
{
    if (!conn->alive)
        return;
    conn->stats.messages_out++;
    if (conn->write_fn) {
        gr_buf b = GR_BUF_INIT;
        cp_message_write(m, &b);
        conn->write_fn(b.data, b.len, conn->write_ud);
        gr_buf_release(&b);
        return;
    }
    cp_message_write(m, &conn->out);
    if (conn->out.len >= CP__OUT_EAGER)
        conn_flush(conn);
    else
        flush_arm(conn);
}

static cp_struct_builder msg_start(cp_message *m, uint16_t which, uint16_t dw, uint16_t pw)
{
    cp_message_init(m, 0);
    cp_struct_builder root = cp_message_init_root(m, 1, 1);
    cp_set_u16(root, 0, which, 0);
    return cp_init_struct(root, 0, dw, pw);
}

static void send_finish(cp_rpc_conn *conn, uint32_t qid)
{
    cp_message m;
    cp_struct_builder f = msg_start(&m, CP__MSG_FINISH, 1, 0);
    cp_set_u32(f, 0, qid, 0);
    cp_set_bool(f, 32, false, true); /* releaseResultCaps: we send Releases */
    conn_send(conn, &m);
    cp_message_release(&m);
}

static void set_exception(cp_struct_builder e, cp_exc_type type, const char *reason)
{
    cp_set_text(e, 0, reason, strlen(reason));
    cp_set_u16(e, 4, (uint16_t)type, 0);
}

/* ---- tables -------------------------------------------------------------------- */

static void question_remove(cp_rpc_conn *conn, cp_pending *p)
{
    cp__idmap_del(&conn->questions, p->question_id);
    id_give(p->question_id, &conn->free_questions, &conn->nfree_questions,
            &conn->free_questions_cap);
    p->conn = NULL;
    cp__pending_unref(p);
}

void cp__conn_question_done(cp_pending *p)
{
    cp_rpc_conn *conn = p->conn;
    p->finish_sent = true;
    send_finish(conn, p->question_id);
    if (p->returned)
        question_remove(conn, p);
}

size_t cp__conn_questions(const cp_rpc_conn *conn)
{
    return conn->questions.count;
}

uint32_t cp__conn_max_questions(const cp_rpc_conn *conn)
{
    return conn->opts.max_questions;
}

static void promise_unlink(cp__export *e)
{
    if (!e->pprev)
        return;
    *e->pprev = e->pnext;
    if (e->pnext)
        e->pnext->pprev = e->pprev;
    e->pnext = NULL;
    e->pprev = NULL;
}

/* Export entries come and go with nearly every call: kept per thread. */
static _Thread_local gr_stash export_stash;

static void export_free(cp_rpc_conn *conn, cp__export *e)
{
    promise_unlink(e);
    if (e->cap->export_conn == conn && e->cap->export_id == e->id)
        e->cap->export_conn = NULL;
    cp_cap_unref(e->cap);
    gr_stash_free(&export_stash, e);
}

static void export_release(cp_rpc_conn *conn, uint32_t id, uint32_t count)
{
    cp__export *e = cp__idmap_get(&conn->exports, id);
    if (!e)
        return;
    e->refs = count >= e->refs ? 0 : e->refs - count;
    if (e->refs)
        return;
    cp__idmap_del(&conn->exports, id);
    id_give(id, &conn->free_exports, &conn->nfree_exports, &conn->free_exports_cap);
    export_free(conn, e);
}

static uint32_t export_cap(cp_rpc_conn *conn, cp_cap *cap, bool promise)
{
    if (cap->export_conn == conn) {
        cp__export *e = cp__idmap_get(&conn->exports, cap->export_id);
        if (e && e->cap == cap) {
            e->refs++;
            return cap->export_id;
        }
    }
    cp__export *e = gr_stash_zalloc(&export_stash, sizeof(*e));
    e->cap = cp_cap_ref(cap);
    e->refs = 1;
    uint32_t id = id_take(&conn->next_export, &conn->free_exports, &conn->nfree_exports);
    e->conn = conn;
    e->id = id;
    cp__idmap_put(&conn->exports, id, e);
    cap->export_conn = conn;
    cap->export_id = id;
    if (promise && !e->pprev) {
        e->pnext = cap->promise_exports;
        if (e->pnext)
            e->pnext->pprev = &e->pnext;
        e->pprev = &cap->promise_exports;
        cap->promise_exports = e;
    }
    return id;
}

void cp__conn_unlink_cap(cp_cap *cap)
{
    cp_rpc_conn *conn = cap->conn;
    if (!conn)
        return;
    if (cap->conn_prev)
        cap->conn_prev->conn_next = cap->conn_next;
    else if (conn->caps == cap)
        conn->caps = cap->conn_next;
    if (cap->conn_next)
        cap->conn_next->conn_prev = cap->conn_prev;
    cap->conn_next = cap->conn_prev = NULL;
}

void cp__conn_release_import(cp_cap *cap)
{
    cp_rpc_conn *conn = cap->conn;
    if (!conn)
        return;
    if (cp__idmap_get(&conn->imports, cap->import_id) == cap)
        cp__idmap_del(&conn->imports, cap->import_id);
    cp__conn_unlink_cap(cap);
    if (conn->alive && cap->remote_refs > 0) { /* else a Return released them all */
        cp_message m;
        cp_struct_builder r = msg_start(&m, CP__MSG_RELEASE, 1, 0);
        cp_set_u32(r, 0, cap->import_id, 0);
        cp_set_u32(r, 4, cap->remote_refs, 0);
        conn_send(conn, &m);
        cp_message_release(&m);
    }
    cap->conn = NULL;
}

static cp_cap *import_cap(cp_rpc_conn *conn, uint32_t id, bool promise)
{
    cp_cap *c = cp__idmap_get(&conn->imports, id);
    if (c) {
        c->remote_refs++;
        return cp_cap_ref(c);
    }
    c = cp__cap_new(CP__CAP_IMPORT);
    c->conn = conn;
    c->import_id = id;
    c->is_promise = promise;
    c->remote_refs = 1;
    c->conn_next = conn->caps;
    if (conn->caps)
        conn->caps->conn_prev = c;
    conn->caps = c;
    cp__idmap_put(&conn->imports, id, c);
    return c;
}

/* ---- cap descriptors ------------------------------------------------------------ */

/* Reads a PromisedAnswer's transform into path. Returns the length, or -1
 * when it is too long or holds an unknown op. */
static int read_transform(cp_struct_reader pa, uint16_t *path)
{
    cp_list_reader ops = cp_get_list(pa, 0, CP_ELEM_COMPOSITE, cp_ptr_null());
    if (ops.len > CP__MAX_PATH)
        return -1;
    int n = 0;
    for (uint32_t i = 0; i < ops.len; i++) {
        cp_struct_reader op = cp_list_get_struct(ops, i);
        uint16_t which = cp_get_u16(op, 0, 0);
        if (which == 1)
            path[n++] = cp_get_u16(op, 2, 0);
        else if (which != 0)
            return -1;
    }
    return n;
}

static void write_transform(cp_struct_builder pa, const uint16_t *path, size_t n)
{
    cp_list_builder ops = cp_init_struct_list(pa, 0, (uint32_t)n, 1, 0);
    for (size_t i = 0; i < n; i++) {
        cp_struct_builder op = cp_list_struct_at(ops, (uint32_t)i);
        cp_set_u16(op, 0, 1, 0);
        cp_set_u16(op, 2, path[i], 0);
    }
}

/* The capability a descriptor from the peer names (new ref, or NULL for
 * none). Returns 0, or -1 with *why set when the descriptor is invalid. */
static int read_desc(cp_rpc_conn *conn, cp_struct_reader d, cp_cap **out, const char **why)
{
    *out = NULL;
    uint16_t which = cp_get_u16(d, 0, 0);
    uint32_t id = cp_get_u32(d, 4, 0);
    switch (which) {
    case 0:
        return 0;
    case 1:
    case 2:
        *out = import_cap(conn, id, which == 2);
        return 0;
    case 3: {
        cp__export *e = cp__idmap_get(&conn->exports, id);
        if (!e) {
            *why = "receiverHosted names no export";
            return -1;
        }
        *out = cp_cap_ref(e->cap);
        return 0;
    }
    case 4: {
        cp_struct_reader pa = cp_get_struct(d, 0, cp_ptr_null());
        cp_call *a = cp__idmap_get(&conn->answers, cp_get_u32(pa, 0, 0));
        uint16_t path[CP__MAX_PATH];
        int n = read_transform(pa, path);
        if (!a || n < 0) {
            *why = !a ? "receiverAnswer names no answer" : "bad transform in receiverAnswer";
            return -1;
        }
        *out = cp__call_pipeline(a, path, (size_t)n);
        return 0;
    }
    case 5: { /* no third parties in two-party: use the vine */
        cp_struct_reader tp = cp_get_struct(d, 0, cp_ptr_null());
        *out = import_cap(conn, cp_get_u32(tp, 0, 0), false);
        return 0;
    }
    default:
        *why = "unknown cap descriptor";
        return -1;
    }
}

#define RELEASE_PARAMS_MAX 8 /* see return_releases_params */
#define PARAMS_TABLE_UNRELEASABLE 0xff

/* Reads a payload's capability table into m's. When len and hosted are
 * given, they get what return_releases_params needs to know of it. */
static int read_cap_table(cp_rpc_conn *conn, cp_message *m, cp_struct_reader payload,
                          uint8_t *len, uint8_t *hosted)
{
    cp_list_reader table = cp_get_list(payload, 1, CP_ELEM_COMPOSITE, cp_ptr_null());
    bool releasable = table.len <= RELEASE_PARAMS_MAX;
    uint8_t mask = 0;
    for (uint32_t i = 0; i < table.len; i++) {
        cp_cap *c = NULL;
        const char *why = NULL;
        cp_struct_reader d = cp_list_get_struct(table, i);
        if (read_desc(conn, d, &c, &why) < 0) {
            conn_abort(conn, "bad capability table entry %u: %s", i, why);
            return -1;
        }
        cp_message_add_cap(m, c);
        uint16_t which = cp_get_u16(d, 0, 0);
        if (which == 1 && i < RELEASE_PARAMS_MAX)
            mask |= (uint8_t)(1u << i);
        else if (which != 0 && which != 3 && which != 4)
            releasable = false; /* a promise, or a third party's */
    }
    if (len) {
        *len = releasable ? (uint8_t)table.len : PARAMS_TABLE_UNRELEASABLE;
        *hosted = mask;
    }
    return 0;
}

/* True for a capability that is not settled yet and not the peer's own
 * promise: it goes out as a senderPromise and a Resolve follows. */
static bool is_local_promise(cp_rpc_conn *conn, const cp_cap *c)
{
    if (c->kind == CP__CAP_PROMISE)
        return !(c->question && c->question->conn == conn);
    return c->kind == CP__CAP_IMPORT && c->is_promise && c->conn != conn;
}

/* Makes room in l for more ids. */
static void export_list_reserve(cp__export_list *l, uint32_t more)
{
    uint32_t need = l->n + more;
    if (l->ids == NULL && need <= sizeof(l->inline_ids) / sizeof(l->inline_ids[0])) {
        l->ids = l->inline_ids;
    } else if (l->ids == l->inline_ids) {
        if (need > sizeof(l->inline_ids) / sizeof(l->inline_ids[0])) {
            uint32_t *a = gr_malloc(need * sizeof(*a));
            memcpy(a, l->inline_ids, l->n * sizeof(*a));
            l->ids = a;
        }
    } else {
        l->ids = gr_realloc(l->ids, need * sizeof(*l->ids));
    }
}

/* Describes capability c (NULL: none) to the peer of conn. The export id it
 * made, if any, goes to exports (may be NULL), which has room for it. */
static void write_desc(cp_rpc_conn *conn, cp_struct_builder d, cp_cap *c, cp__export_list *exports)
{
    if (!c)
        return; /* none */
    while (c->resolved)
        c = c->resolved;
    uint32_t id;
    if (c->kind == CP__CAP_IMPORT && c->conn == conn) {
        cp_set_u16(d, 0, 3, 0);
        cp_set_u32(d, 4, c->import_id, 0);
        return;
    }
    if (c->kind == CP__CAP_PROMISE && c->question && c->question->conn == conn &&
        !c->question->returned) {
        cp_set_u16(d, 0, 4, 0);
        cp_struct_builder pa = cp_init_struct(d, 0, 1, 1);
        cp_set_u32(pa, 0, c->question->question_id, 0);
        write_transform(pa, c->path, c->npath);
        return;
    }
    bool promise = is_local_promise(conn, c);
    id = export_cap(conn, c, promise);
    cp_set_u16(d, 0, promise ? 2 : 1, 0);
    cp_set_u32(d, 4, id, 0);
    if (exports)
        exports->ids[exports->n++] = id;
}

/* Writes the capTable of a Payload from m's capability table. */
static void write_cap_table(cp_rpc_conn *conn, cp_struct_builder payload, cp_message *m,
                            cp__export_list *exports)
{
    cp_list_builder table = cp_init_struct_list(payload, 1, m->ncaps, 1, 1);
    if (m->ncaps)
        export_list_reserve(exports, m->ncaps);
    for (uint32_t i = 0; i < m->ncaps; i++)
        write_desc(conn, cp_list_struct_at(table, i), m->caps[i], exports);
}

void cp__conn_promise_resolved(cp_cap *cap)
{
    cp_cap *to = cap->resolved ? cap->resolved : cap; /* itself when broken */
    while (to->resolved)
        to = to->resolved;
    while (cap->promise_exports) {
        cp__export *e = cap->promise_exports;
        promise_unlink(e);
        cp_rpc_conn *conn = e->conn;
        if (!conn->alive)
            continue;
        cp_message m;
        cp_struct_builder r = msg_start(&m, CP__MSG_RESOLVE, 1, 1);
        cp_set_u32(r, 0, e->id, 0);
        if (to->kind == CP__CAP_BROKEN) {
            cp_set_u16(r, 4, 1, 0);
            set_exception(cp_init_struct(r, 0, 1, 2), to->exc.type, to->exc.reason);
        } else {
            write_desc(conn, cp_init_struct(r, 0, 1, 1), to, NULL);
        }
        conn->stats.resolves++;
        conn_send(conn, &m);
        cp_message_release(&m);
    }
}

/* ---- outgoing calls and returns ----------------------------------------------- */

void cp__conn_send_call(cp_rpc_conn *conn, cp_cap *target, cp_request *req, cp_pending *pending)
{
    uint32_t qid = id_take(&conn->next_question, &conn->free_questions, &conn->nfree_questions);
    pending->conn = conn;
    pending->question_id = qid;
    pending->refs++;
    cp__idmap_put(&conn->questions, qid, pending);

    cp_set_u32(req->call, 0, qid, 0);
    cp_struct_builder mt = cp_init_struct(req->call, 0, 1, 1);
    if (target->kind == CP__CAP_IMPORT) {
        cp_set_u32(mt, 0, target->import_id, 0);
    } else {
        cp_set_u16(mt, 4, 1, 0);
        cp_struct_builder pa = cp_init_struct(mt, 0, 1, 1);
        cp_set_u32(pa, 0, target->question->question_id, 0);
        write_transform(pa, target->path, target->npath);
    }
    cp_struct_builder payload = cp__request_payload(req);
    write_cap_table(conn, payload, req->msg, &pending->param_exports);
    conn_send(conn, req->msg);
    cp_request_free(req);
}

/* Whether the Return for call may say releaseParamCaps, so that the caller
 * drops the capabilities it exported in the params and we send no Release for
 * them: so when each of them (senderHosted) is held here only by the params,
 * which go right after the Return. Their references are then counted off, and
 * an import left with none leaves the table at once (the peer may reuse its
 * id). A promise among them, or one kept by the callee, answers false; so
 * do params with more than RELEASE_PARAMS_MAX capabilities, which keeps the
 * pairwise count below cheap whatever table a peer sends. The table is
 * not read again: read_cap_table noted its length and its senderHosted
 * entries (whose capabilities it made from their import ids). */
static bool return_releases_params(cp_rpc_conn *conn, cp_call *call)
{
    cp_message *m = call->params_msg;
    if (!m || m->ncaps == 0 || call->params_table_len > RELEASE_PARAMS_MAX ||
        m->ncaps != call->params_table_len)
        return false;
    for (uint32_t i = 0; i < m->ncaps; i++) {
        if (!(call->params_hosted & (1u << i)))
            continue; /* none, or ours: not the caller's to release */
        cp_cap *cap = m->caps[i];
        if (!cap || cap->kind != CP__CAP_IMPORT || cap->conn != conn || cap->is_promise ||
            cap->resolved)
            return false;
        int held = 0;
        for (uint32_t j = 0; j < m->ncaps; j++)
            held += m->caps[j] == cap;
        if (cap->refs != held || cap->remote_refs < (uint32_t)held)
            return false;
    }
    for (uint32_t i = 0; i < m->ncaps; i++) {
        if (!(call->params_hosted & (1u << i)))
            continue;
        cp_cap *cap = m->caps[i];
        if (--cap->remote_refs == 0 && cp__idmap_get(&conn->imports, cap->import_id) == cap)
            cp__idmap_del(&conn->imports, cap->import_id);
    }
    return true;
}

/* Takes call out of the answers table, whose reference the caller then owns. */
static void answer_detach(cp_rpc_conn *conn, cp_call *call)
{
    cp__idmap_del(&conn->answers, call->answer_id);
    call->finished = true;
    call->conn = NULL;
}

void cp__conn_send_return(cp_call *call)
{
    cp_rpc_conn *conn = call->conn;
    cp_struct_builder payload = cp__call_payload(call);
    if (call->to_yourself) {
        /* The peer will take the results for a question of ours. */
        cp_message m;
        cp_struct_builder r = msg_start(&m, CP__MSG_RETURN, 2, 1);
        cp_set_u32(r, 0, call->answer_id, 0);
        cp_set_bool(r, 32, false, true);
        cp_set_u16(r, 6, 3, 0); /* resultsSentElsewhere */
        conn_send(conn, &m);
        cp_message_release(&m);
        if (!call->failed)
            call->content = cp_ptr_builder_as_reader(cp_builder_ptr(payload, 0));
        call->returned = true;
        if (conn->outstanding)
            conn->outstanding--;
        return;
    }
    cp_set_u32(call->ret, 0, call->answer_id, 0);
    cp_set_bool(call->ret, 32, return_releases_params(conn, call), true);
    if (call->failed) {
        cp_set_u16(call->ret, 6, 1, 0);
        set_exception(cp_init_struct(call->ret, 0, 1, 2), call->exc.type, call->exc.reason);
    } else {
        write_cap_table(conn, payload, call->results_msg, &call->result_exports);
        call->content = cp_ptr_builder_as_reader(cp_builder_ptr(payload, 0));
    }
    /* A caller that will not pipeline on results holding no capabilities
     * has nothing to Finish: the answer goes now, and so does its id. */
    bool no_finish = call->no_pipelining && call->results_msg->ncaps == 0;
    if (no_finish)
        cp_set_bool(call->ret, CP__RETURN_NO_FINISH_BIT, true, false);
    conn_send(conn, call->results_msg);
    if (call->results_msg->ncaps == 0) {
        /* Nothing in the results can be pipelined on: they need not wait for
         * the Finish (a builder's first segment goes back to the cache). */
        cp__msg_free(gr_steal_pointer(&call->results_msg));
        call->content = cp_ptr_null();
    }
    call->returned = true;
    if (conn->outstanding)
        conn->outstanding--;
    if (no_finish && cp__idmap_get(&conn->answers, call->answer_id) == call) {
        answer_detach(conn, call);
        call->done_next = conn->done_answers;
        conn->done_answers = call;
        flush_arm(conn);
    }
}

static void send_return_canceled(cp_rpc_conn *conn, uint32_t answer_id)
{
    cp_message m;
    cp_struct_builder r = msg_start(&m, CP__MSG_RETURN, 2, 1);
    cp_set_u32(r, 0, answer_id, 0);
    cp_set_bool(r, 32, false, true);
    cp_set_u16(r, 6, 2, 0);
    conn_send(conn, &m);
    cp_message_release(&m);
}

void cp__conn_embargo(cp_rpc_conn *conn, cp_cap *promise)
{
    uint32_t id = ++conn->next_embargo;
    if (!id)
        id = ++conn->next_embargo;
    promise->embargo_id = id;
    conn->stats.embargoes++;
    cp__idmap_put(&conn->embargoes, id, cp_cap_ref(promise));
    cp_message m;
    cp_struct_builder d = msg_start(&m, CP__MSG_DISEMBARGO, 1, 1);
    cp_struct_builder mt = cp_init_struct(d, 0, 1, 1);
    if (promise->question) {
        cp_set_u16(mt, 4, 1, 0);
        cp_struct_builder pa = cp_init_struct(mt, 0, 1, 1);
        cp_set_u32(pa, 0, promise->question->question_id, 0);
        write_transform(pa, promise->path, promise->npath);
    } else {
        cp_set_u32(mt, 0, promise->import_id, 0);
    }
    cp_set_u16(d, 4, 0, 0); /* senderLoopback */
    cp_set_u32(d, 0, id, 0);
    conn_send(conn, &m);
    cp_message_release(&m);
}

/* ---- incoming messages ----------------------------------------------------------- */

static cp_call *answer_new(cp_rpc_conn *conn, uint32_t id, cp_message *params_msg,
                           cp_struct_reader params, uint64_t iface, uint16_t method)
{
    cp_call *call = cp__call_new(CP__CALL_REMOTE, params_msg, params, iface, method);
    call->conn = conn;
    call->answer_id = id;
    call->refs++; /* the answers table */
    cp__idmap_put(&conn->answers, id, call);
    conn->outstanding++;
    return call;
}

static void answer_remove(cp_rpc_conn *conn, cp_call *call)
{
    answer_detach(conn, call);
    cp__call_unref(call);
}

/* Whether the peer's calls (Bootstrap included) have reached the limits:
 * then the connection is aborted, with the reason. */
static bool answers_full(cp_rpc_conn *conn)
{
    if (conn->outstanding >= conn->opts.max_outstanding_calls) {
        conn_abort(conn, "too many outstanding calls (limit %u)", conn->opts.max_outstanding_calls);
        return true;
    }
    /* Answers stay until the peer's Finish; one that never finishes them
     * must not grow the table without end either. */
    if (conn->answers.count >= 4 * (uint64_t)conn->opts.max_outstanding_calls) {
        conn_abort(conn, "too many unfinished calls (limit %llu)",
                   4 * (unsigned long long)conn->opts.max_outstanding_calls);
        return true;
    }
    return false;
}

static void handle_bootstrap(cp_rpc_conn *conn, cp_struct_reader b)
{
    uint32_t qid = cp_get_u32(b, 0, 0);
    if (cp__idmap_get(&conn->answers, qid)) {
        conn_abort(conn, "Bootstrap reuses question id %u", qid);
        return;
    }
    if (answers_full(conn))
        return;
    cp_call *call = answer_new(conn, qid, NULL, cp_struct_reader_empty(), 0, 0);
    call->is_bootstrap = true;
    if (!conn->bootstrap) {
        cp_call_fail(call, CP_EXC_FAILED, "this side offers no bootstrap capability");
        return;
    }
    cp_struct_builder payload = cp__call_payload(call);
    cp_ptr_set_cap(cp_builder_ptr(payload, 0),
                   cp_message_add_cap(call->results_msg, cp_cap_ref(conn->bootstrap)));
    call->results_init = true;
    cp_call_return(call);
}

static cp_cap *message_target(cp_rpc_conn *conn, cp_struct_reader mt, const char **why)
{
    uint16_t which = cp_get_u16(mt, 4, 0);
    if (which == 0) {
        cp__export *e = cp__idmap_get(&conn->exports, cp_get_u32(mt, 0, 0));
        if (!e) {
            *why = "call to an unknown export";
            return NULL;
        }
        return cp_cap_ref(e->cap);
    }
    if (which == 1) {
        cp_struct_reader pa = cp_get_struct(mt, 0, cp_ptr_null());
        cp_call *a = cp__idmap_get(&conn->answers, cp_get_u32(pa, 0, 0));
        uint16_t path[CP__MAX_PATH];
        int n = read_transform(pa, path);
        if (!a || n < 0) {
            *why = !a ? "promisedAnswer names no answer" : "bad transform";
            return NULL;
        }
        if (!a->returned)
            conn->stats.early_pipelined++;
        return cp__call_pipeline(a, path, (size_t)n);
    }
    *why = "unknown message target";
    return NULL;
}

static void handle_call(cp_rpc_conn *conn, cp_message *m, cp_struct_reader c)
{
    uint32_t qid = cp_get_u32(c, 0, 0);
    if (cp__idmap_get(&conn->answers, qid)) {
        cp__msg_free(m);
        conn_abort(conn, "Call reuses question id %u", qid);
        return;
    }
    if (answers_full(conn)) {
        cp__msg_free(m);
        return;
    }
    cp_struct_reader payload = cp_get_struct(c, 1, cp_ptr_null());
    uint8_t table_len = 0, hosted = 0;
    if (read_cap_table(conn, m, payload, &table_len, &hosted) < 0) {
        cp__msg_free(m);
        return;
    }
    /* The target first: a call cannot pipeline on its own answer. */
    const char *why = NULL;
    cp_cap *target = message_target(conn, cp_get_struct(c, 0, cp_ptr_null()), &why);
    cp_ptr_reader content = cp_get_ptr(payload, 0);
    cp_struct_reader params = cp_ptr_get_struct(content, cp_ptr_null());
    cp_call *call = answer_new(conn, qid, m, params, cp_get_u64(c, 8, 0), cp_get_u16(c, 4, 0));
    call->params_ptr = content;
    call->params_table_len = table_len;
    call->params_hosted = hosted;
    uint16_t results_to = cp_get_u16(c, 6, 0);
    call->to_yourself = results_to == 1;
    call->no_pipelining = cp_get_bool(c, CP__CALL_NO_PIPELINING_BIT, false);
    if (results_to > 1) {
        cp_cap_unref(target);
        cp_call_fail(call, CP_EXC_UNIMPLEMENTED, "sendResultsTo a third party");
        return;
    }
    if (!target) {
        cp_call_fail(call, CP_EXC_FAILED, "%s", why);
        return;
    }
    cp__call_dispatch(call, target);
    cp_cap_unref(target);
}

static void handle_return(cp_rpc_conn *conn, cp_message *m, cp_struct_reader r)
{
    uint32_t id = cp_get_u32(r, 0, 0);
    cp_pending *p = cp__idmap_get(&conn->questions, id);
    if (!p || p->returned) {
        cp__msg_free(m);
        conn_abort(conn, "Return for %s question %u", p ? "an already answered" : "an unknown", id);
        return;
    }
    /* Read now: m goes to the caller (or is freed) below. */
    bool no_finish = cp_get_bool(r, CP__RETURN_NO_FINISH_BIT, false);
    if (cp_get_bool(r, 32, true))
        for (uint32_t i = 0; i < p->param_exports.n; i++)
            export_release(conn, p->param_exports.ids[i], 1);
    p->param_exports.n = 0;
    p->refs++;
    switch (cp_get_u16(r, 6, 0)) {
    case 0: {
        cp_struct_reader payload = cp_get_struct(r, 0, cp_ptr_null());
        if (read_cap_table(conn, m, payload, NULL, NULL) < 0) {
            cp__msg_free(m);
            break;
        }
        cp__pending_results(p, m, cp_get_ptr(payload, 0));
        break;
    }
    case 1: {
        cp_struct_reader e = cp_get_struct(r, 0, cp_ptr_null());
        cp_text reason = cp_get_text(e, 0, "");
        uint16_t type = cp_get_u16(e, 4, 0);
        cp__pending_fail(p, type <= CP_EXC_UNIMPLEMENTED ? (cp_exc_type)type : CP_EXC_FAILED,
                         reason.str);
        cp__msg_free(m);
        break;
    }
    case 2:
        cp__pending_fail(p, CP_EXC_FAILED, "call canceled");
        cp__msg_free(m);
        break;
    case 4: { /* the results of a call the peer made to us with sendResultsTo.yourself */
        uint32_t other = cp_get_u32(r, 8, 0);
        cp__msg_free(m);
        cp_call *a = cp__idmap_get(&conn->answers, other);
        if (!a || !a->to_yourself || !a->returned) {
            cp__pending_fail(p, CP_EXC_FAILED, "bad takeFromOtherQuestion");
            conn_abort(conn,
                       "takeFromOtherQuestion names %u, which is not a returned "
                       "sendResultsTo.yourself call",
                       other);
            break;
        }
        a->to_yourself = false; /* only once */
        if (a->failed) {
            cp__pending_fail(p, a->exc.type, a->exc.reason);
            break;
        }
        cp_message *copy = cp__msg_new();
        cp_ptr_builder root = cp_message_root_builder(copy);
        cp_ptr_set_copy(root, a->content);
        for (uint32_t i = 0; i < a->results_msg->ncaps; i++)
            cp_message_add_cap(copy, cp_cap_ref(a->results_msg->caps[i]));
        cp__pending_results(p, copy, cp_ptr_builder_as_reader(root));
        break;
    }
    default:
        cp__msg_free(m);
        cp__pending_fail(p, CP_EXC_FAILED, "unsupported kind of Return");
        conn_abort(conn, "unsupported kind of Return for question %u", id);
        break;
    }
    if (p->conn == conn) {
        if (no_finish)
            p->finish_sent = true; /* the callee has already let the answer go */
        if (!p->finish_sent) {
            p->finish_sent = true;
            send_finish(conn, id);
        }
        question_remove(conn, p);
    }
    cp__pending_unref(p);
}

static void handle_finish(cp_rpc_conn *conn, cp_struct_reader f)
{
    cp_call *call = cp__idmap_get(&conn->answers, cp_get_u32(f, 0, 0));
    if (!call)
        return; /* already gone (e.g. bootstrap answered and released) */
    call->refs++;
    if (!call->returned) {
        cp__call_cancel(call);
        if (!call->returned && conn->alive) {
            send_return_canceled(conn, call->answer_id);
            if (conn->outstanding)
                conn->outstanding--;
        }
    } else if (cp_get_bool(f, 32, true)) {
        for (uint32_t i = 0; i < call->result_exports.n; i++)
            export_release(conn, call->result_exports.ids[i], 1);
        call->result_exports.n = 0;
    }
    if (cp__idmap_get(&conn->answers, call->answer_id) == call)
        answer_remove(conn, call);
    cp__call_unref(call);
}

static void handle_resolve(cp_rpc_conn *conn, cp_struct_reader r)
{
    uint32_t id = cp_get_u32(r, 0, 0);
    cp_cap *to = NULL;
    if (cp_get_u16(r, 4, 0) == 0) {
        const char *why = NULL;
        if (read_desc(conn, cp_get_struct(r, 0, cp_ptr_null()), &to, &why) < 0) {
            conn_abort(conn, "bad Resolve: %s", why);
            return;
        }
        if (!to)
            to = cp_cap_broken(CP_EXC_FAILED, "promise resolved to a null capability");
    } else {
        cp_struct_reader e = cp_get_struct(r, 0, cp_ptr_null());
        to = cp_cap_broken((cp_exc_type)(cp_get_u16(e, 4, 0) & 3), "%s", cp_get_text(e, 0, "").str);
    }
    cp_cap *c = cp__idmap_get(&conn->imports, id);
    if (!c || !c->is_promise || c->resolved || c == to) {
        cp_cap_unref(to); /* we dropped it already: this releases the new reference */
        return;
    }
    cp_cap_ref(c);
    cp__cap_resolve(c, to);
    cp_cap_unref(c);
}

static void handle_release(cp_rpc_conn *conn, cp_struct_reader r)
{
    export_release(conn, cp_get_u32(r, 0, 0), cp_get_u32(r, 4, 0));
}

static void handle_disembargo(cp_rpc_conn *conn, cp_struct_reader d)
{
    uint16_t which = cp_get_u16(d, 4, 0);
    uint32_t id = cp_get_u32(d, 0, 0);
    if (which == 0) {
        const char *why = NULL;
        cp_cap *target = message_target(conn, cp_get_struct(d, 0, cp_ptr_null()), &why);
        if (!target) {
            conn_abort(conn, "bad Disembargo: %s", why);
            return;
        }
        cp_cap *t = target;
        while (t->resolved)
            t = t->resolved;
        if (t->kind != CP__CAP_IMPORT || t->conn != conn) {
            cp_cap_unref(target);
            conn_abort(conn, "Disembargo senderLoopback to a capability that is not the sender's");
            return;
        }
        /* Calls to it have all been forwarded already, in order: reflect. */
        cp_message m;
        cp_struct_builder out = msg_start(&m, CP__MSG_DISEMBARGO, 1, 1);
        cp_struct_builder mt = cp_init_struct(out, 0, 1, 1);
        cp_set_u32(mt, 0, t->import_id, 0);
        cp_set_u16(out, 4, 1, 0);
        cp_set_u32(out, 0, id, 0);
        conn->stats.reflections++;
        conn_send(conn, &m);
        cp_message_release(&m);
        cp_cap_unref(target);
    } else if (which == 1) {
        cp_cap *c = cp__idmap_del(&conn->embargoes, id);
        if (!c) {
            conn_abort(conn, "Disembargo receiverLoopback for unknown embargo %u", id);
            return;
        }
        c->embargo_id = 0;
        cp__cap_flush_queue(c);
        cp_cap_unref(c);
    } else {
        conn_abort(conn, "Disembargo of an unsupported kind");
    }
}

static void send_unimplemented(cp_rpc_conn *conn, cp_message *in)
{
    cp_message m;
    cp_message_init(&m, 0);
    cp_struct_builder root = cp_message_init_root(&m, 1, 1);
    cp_set_u16(root, 0, CP__MSG_UNIMPLEMENTED, 0);
    cp_ptr_set_copy(cp_builder_ptr(root, 0), cp_message_root_ptr(in));
    conn_send(conn, &m);
    cp_message_release(&m);
}

static void handle_message(cp_rpc_conn *conn, cp_message *m)
{
    conn->stats.messages_in++;
    cp_struct_reader root = cp_message_root(m);
    uint16_t which = cp_get_u16(root, 0, 0);
    cp_struct_reader body = cp_get_struct(root, 0, cp_ptr_null());
    if (!cp_message_ok(m)) {
        conn_abort(conn, "malformed message: %s", gr_error_msg(m->error));
        cp__msg_free(m);
        return;
    }
    switch (which) {
    case CP__MSG_CALL:
        handle_call(conn, m, body);
        return;
    case CP__MSG_RETURN:
        handle_return(conn, m, body);
        return;
    case CP__MSG_BOOTSTRAP:
        handle_bootstrap(conn, body);
        break;
    case CP__MSG_FINISH:
        handle_finish(conn, body);
        break;
    case CP__MSG_RESOLVE:
        handle_resolve(conn, body);
        break;
    case CP__MSG_RELEASE:
        handle_release(conn, body);
        break;
    case CP__MSG_DISEMBARGO:
        handle_disembargo(conn, body);
        break;
    case CP__MSG_ABORT: {
        cp_text reason = cp_get_text(body, 0, "");
        char *why = gr_asprintf("peer aborted: %s", reason.str);
        cp__rpc_conn_disconnect(conn, why);
        free(why);
        break;
    }
    case CP__MSG_UNIMPLEMENTED:
        gr_debug("rpc: peer did not understand a message of ours");
        break;
    default:
        send_unimplemented(conn, m);
        break;
    }
    cp__msg_free(m);
}

/* ---- connection life ------------------------------------------------------------ */

static cp_rpc_conn *conn_alloc(cp_cap *bootstrap, const cp_rpc_options *opts)
{
    cp_rpc_conn *conn = gr_calloc(1, sizeof(*conn));
    if (opts)
        conn->opts = *opts;
    if (!conn->opts.max_message_bytes)
        conn->opts.max_message_bytes = CP_DEFAULT_MAX_MESSAGE_BYTES;
    if (!conn->opts.max_outstanding_calls)
        conn->opts.max_outstanding_calls = CP__DEFAULT_MAX_CALLS;
    if (!conn->opts.max_questions)
        conn->opts.max_questions = CP__DEFAULT_MAX_CALLS;
    cp_stream_reader_init(&conn->reader, conn->opts.max_message_bytes, NULL);
    conn->bootstrap = cp_cap_ref(bootstrap);
    conn->alive = true;
    return conn;
}

cp_rpc_conn *cp__rpc_conn_new_raw(cp_cap *bootstrap, const cp_rpc_options *opts,
                                  cp__write_fn write_fn, void *ud)
{
    cp_rpc_conn *conn = conn_alloc(bootstrap, opts);
    conn->write_fn = write_fn;
    conn->write_ud = ud;
    conn->closed = true; /* no handle to wait for */
    return conn;
}

int cp__rpc_conn_feed(cp_rpc_conn *conn, const void *data, size_t len)
{
    const uint8_t *p = data;
    conn->busy++;
    while (len > 0 && conn->alive) {
        size_t used = 0;
        _cleanup_error_ gr_error_t err = NULL;
        int r = cp_stream_reader_feed(&conn->reader, p, len, &used, &err);
        if (r < 0) {
            conn_abort(conn, "message rejected: %s", gr_error_msg(err));
            break;
        }
        p += used;
        len -= used;
        if (r == 1) {
            cp_message *m = cp_stream_reader_take_message(&conn->reader, &err);
            if (m == NULL) {
                conn_abort(conn, "message rejected: %s", gr_error_msg(err));
                break;
            }
            handle_message(conn, m);
        }
    }
    if (conn->busy == 1 && !conn->stream)
        drop_done_answers(conn); /* a raw connection's outermost feed */
    conn->busy--;
    bool alive = conn->alive;
    conn_maybe_free(conn);
    return alive ? 0 : -1;
}

static void break_question(uint32_t id, void *val, void *ud)
{
    cp_rpc_conn *conn = ud;
    cp_pending *p = val;
    cp__idmap_del(&conn->questions, id);
    p->conn = NULL;
    p->finish_sent = true;
    cp__pending_fail(p, CP_EXC_DISCONNECTED, conn->reason);
    cp__pending_unref(p);
}

static void cancel_answer(uint32_t id, void *val, void *ud)
{
    cp_rpc_conn *conn = ud;
    cp_call *call = val;
    cp__idmap_del(&conn->answers, id);
    call->finished = true;
    call->conn = NULL;
    cp__call_cancel(call);
    cp__call_unref(call);
}

static void lift_embargo(uint32_t id, void *val, void *ud)
{
    cp_rpc_conn *conn = ud;
    cp_cap *c = val;
    cp__idmap_del(&conn->embargoes, id);
    c->embargo_id = 0;
    cp__cap_flush_queue(c);
    cp_cap_unref(c);
}

static void drop_export(uint32_t id, void *val, void *ud)
{
    cp_rpc_conn *conn = ud;
    cp__export *e = val;
    cp__idmap_del(&conn->exports, id);
    export_free(conn, e);
}

static void on_closed(uv_handle_t *h)
{
    cp_rpc_conn *conn = h->data;
    if (--conn->handles > 0)
        return;
    free(conn->stream);
    conn->stream = NULL;
    conn->closed = true;
    drop_done_answers(conn); /* the last flush may not have run */
    conn_maybe_free(conn);
}

static void close_handles(cp_rpc_conn *conn)
{
    if (!conn->stream || conn->closing)
        return;
    conn->closing = true;
    flush_disarm(conn);
    uv_read_stop(conn->stream);
    uv_close((uv_handle_t *)conn->stream, on_closed);
    uv_close((uv_handle_t *)&conn->linger, on_closed);
    uv_close((uv_handle_t *)&conn->flush_prepare, on_closed);
    uv_close((uv_handle_t *)&conn->flush_check, on_closed);
}

static void on_linger(uv_timer_t *t)
{
    close_handles(t->data);
}

static void on_shutdown(uv_shutdown_t *req, int status)
{
    /* Wait for the peer to close its side (it has our Abort), briefly. */
}

static void conn_end(cp_rpc_conn *conn, const char *reason, bool linger);

void cp__rpc_conn_disconnect(cp_rpc_conn *conn, const char *reason)
{
    conn_end(conn, reason, false);
}

/* Ends the connection; with linger, the socket stays open a moment (reading
 * and dropping) so that the peer reads our Abort before seeing the close. */
static void conn_end(cp_rpc_conn *conn, const char *reason, bool linger)
{
    if (!conn->alive)
        return;
    conn->busy++;
    if (conn->stream)
        conn_flush(conn);
    conn->alive = false;
    conn->reason = gr_strdup(reason);
    gr_debug("rpc: connection ended: %s", reason);
    /* Imports first, so that callbacks below see broken capabilities. */
    while (conn->caps) {
        cp_cap *c = conn->caps;
        cp__conn_unlink_cap(c);
        cp__idmap_del(&conn->imports, c->import_id);
        cp__cap_break(c, CP_EXC_DISCONNECTED, reason);
    }
    cp__idmap_each(&conn->questions, break_question, conn);
    cp__idmap_each(&conn->answers, cancel_answer, conn);
    cp__idmap_each(&conn->embargoes, lift_embargo, conn);
    cp__idmap_each(&conn->exports, drop_export, conn);
    cp_cap_unref(gr_steal_pointer(&conn->bootstrap));
    if (conn->stream && !conn->closing) {
        if (linger && !conn->free_requested &&
            uv_shutdown(&conn->shutdown, conn->stream, on_shutdown) == 0)
            uv_timer_start(&conn->linger, on_linger, 1000, 0);
        else
            close_handles(conn);
    }
    if (conn->on_disconnect) {
        cp_rpc_disconnect_cb cb = conn->on_disconnect;
        conn->on_disconnect = NULL;
        cb(conn, reason, conn->disconnect_ud);
    }
    conn->busy--;
    conn_maybe_free(conn); /* the callback may have freed it */
}

static void conn_abort(cp_rpc_conn *conn, const char *fmt, ...)
{
    if (!conn->alive)
        return;
    va_list ap;
    va_start(ap, fmt);
    char *reason = cp__vformat(fmt, ap);
    va_end(ap);
    gr_warn("rpc: aborting connection: %s", reason);
    cp_message m;
    cp_struct_builder e = msg_start(&m, CP__MSG_ABORT, 1, 2);
    set_exception(e, CP_EXC_FAILED, reason);
    conn_send(conn, &m);
    cp_message_release(&m);
    char *why = gr_asprintf("protocol error: %s", reason);
    conn_end(conn, why, true);
    free(why);
    free(reason);
}

static void conn_maybe_free(cp_rpc_conn *conn)
{
    if (!conn->free_requested || conn->busy || !conn->closed)
        return;
    drop_done_answers(conn);
    cp__idmap_release(&conn->questions);
    cp__idmap_release(&conn->answers);
    cp__idmap_release(&conn->exports);
    cp__idmap_release(&conn->imports);
    cp__idmap_release(&conn->embargoes);
    free(conn->free_questions);
    free(conn->free_exports);
    cp_stream_reader_release(&conn->reader);
    gr_buf_release(&conn->out);
    free(conn->read_buf);
    free(conn->reason);
    free(conn);
}

/* ---- libuv transport -------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    cp_rpc_conn *conn = h->data;
    if (!conn->read_buf)
        conn->read_buf = gr_malloc(CP__READ_CHUNK);
    *buf = uv_buf_init(conn->read_buf, CP__READ_CHUNK);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    cp_rpc_conn *conn = s->data;
    if (!conn->alive) { /* lingering after an Abort */
        if (nread < 0)
            close_handles(conn);
        return;
    }
    if (nread > 0) {
        conn->busy++;
        cp__rpc_conn_feed(conn, buf->base, (size_t)nread);
        drop_done_answers(conn);
        conn->busy--;
        conn_maybe_free(conn);
    } else if (nread < 0) {
        if (nread == UV_EOF) {
            cp__rpc_conn_disconnect(conn, "peer closed the connection");
        } else {
            char *why = gr_asprintf("read: %s", uv_strerror((int)nread));
            cp__rpc_conn_disconnect(conn, why);
            free(why);
        }
    }
}

static void free_handle(uv_handle_t *h)
{
    free(h);
}

int cp_rpc_conn_adopt(uv_stream_t *stream, cp_cap *bootstrap, const cp_rpc_options *opts,
                      cp_rpc_conn **out, gr_error_t *err)
{
    cp_rpc_conn *conn = conn_alloc(bootstrap, opts);
    conn->loop = stream->loop;
    conn->stream = stream;
    stream->data = conn;
    uv_timer_init(conn->loop, &conn->linger);
    conn->linger.data = conn;
    uv_prepare_init(conn->loop, &conn->flush_prepare);
    conn->flush_prepare.data = conn;
    uv_check_init(conn->loop, &conn->flush_check);
    conn->flush_check.data = conn;
    conn->handles = 4;
    int r = uv_read_start(stream, on_alloc, on_read);
    if (r < 0) {
        cp_cap_unref(gr_steal_pointer(&conn->bootstrap));
        conn->alive = false;
        conn->free_requested = true;
        close_handles(conn);
        return gr_make_error(err, -r, "rpc connection: read");
    }
    *out = conn;
    return 0;
}

int cp_rpc_conn_open(uv_loop_t *loop, int fd, cp_cap *bootstrap, const cp_rpc_options *opts,
                     cp_rpc_conn **out, gr_error_t *err)
{
    uv_pipe_t *pipe = gr_calloc(1, sizeof(*pipe));
    int r = uv_pipe_init(loop, pipe, 0);
    if (r < 0) {
        close(fd);
        free(pipe);
        return gr_make_error(err, -r, "rpc connection: uv_pipe_init");
    }
    if ((r = uv_pipe_open(pipe, fd)) < 0) {
        close(fd);
        uv_close((uv_handle_t *)pipe, free_handle);
        return gr_make_error(err, -r, "rpc connection on fd %d", fd);
    }
    if (cp_rpc_conn_adopt((uv_stream_t *)pipe, bootstrap, opts, out, err) < 0)
        return gr_error_prefix(err, "fd %d", fd);
    return 0;
}

cp_cap *cp_rpc_conn_bootstrap(cp_rpc_conn *conn)
{
    if (!conn->alive)
        return cp_cap_broken(CP_EXC_DISCONNECTED, "%s", conn->reason ? conn->reason : "closed");
    cp_pending *p = cp__pending_new(NULL, NULL);
    uint32_t qid = id_take(&conn->next_question, &conn->free_questions, &conn->nfree_questions);
    p->conn = conn;
    p->question_id = qid;
    p->refs++;
    cp__idmap_put(&conn->questions, qid, p);
    cp_message m;
    cp_struct_builder b = msg_start(&m, CP__MSG_BOOTSTRAP, 1, 1);
    cp_set_u32(b, 0, qid, 0);
    conn_send(conn, &m);
    cp_message_release(&m);
    cp_cap *cap = cp_pending_pipeline(p, NULL, 0);
    p->user_done = true;
    cp__pending_unref(p);
    return cap;
}

void cp_rpc_conn_on_disconnect(cp_rpc_conn *conn, cp_rpc_disconnect_cb cb, void *ud)
{
    conn->on_disconnect = cb;
    conn->disconnect_ud = ud;
}

void cp_rpc_conn_close(cp_rpc_conn *conn)
{
    cp__rpc_conn_disconnect(conn, "connection closed locally");
}

void cp_rpc_conn_free(cp_rpc_conn *conn)
{
    if (!conn)
        return;
    conn->on_disconnect = NULL;
    conn->free_requested = true;
    conn->busy++;
    cp__rpc_conn_disconnect(conn, "connection closed locally");
    close_handles(conn);
    conn->busy--;
    conn_maybe_free(conn);
}

bool cp_rpc_conn_alive(const cp_rpc_conn *conn)
{
    return conn->alive;
}

void cp_rpc_conn_stats(const cp_rpc_conn *conn, cp_rpc_stats *out)
{
    *out = conn->stats;
    out->questions = conn->questions.count;
    out->answers = conn->answers.count;
    out->exports = conn->exports.count;
    out->imports = conn->imports.count;
}
