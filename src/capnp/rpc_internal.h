/* Internals shared by the RPC files: the capability, call and question
 * objects, and the hooks the wire protocol (rpc_conn.c) and the local side
 * (rpc.c) use on each other. Tests and the fuzz target use the raw
 * connection constructor to run the protocol without a socket. */
#ifndef GRANARY_CAPNP_RPC_INTERNAL_H
#define GRANARY_CAPNP_RPC_INTERNAL_H

#include <stdarg.h>

#include "rpc.h"

/* Field layout of rpc.capnp (capnp 0.9), in bytes for data and slots for
 * pointers, as `capnp compile -ocapnp /usr/include/capnp/rpc.capnp` prints. */
enum {
    CP__MSG_UNIMPLEMENTED = 0,
    CP__MSG_ABORT = 1,
    CP__MSG_CALL = 2,
    CP__MSG_RETURN = 3,
    CP__MSG_FINISH = 4,
    CP__MSG_RESOLVE = 5,
    CP__MSG_RELEASE = 6,
    CP__MSG_BOOTSTRAP = 8,
    CP__MSG_DISEMBARGO = 13,
};

/* Bits of rpc.capnp fields that protocol 0.9 does not have (its readers
 * ignore them): Call.noPromisePipelining (@9) and Return.noFinishNeeded (@8),
 * offsets as capnp lays them out. */
enum {
    CP__CALL_NO_PIPELINING_BIT = 129,
    CP__RETURN_NO_FINISH_BIT = 33,
};

/* A table from 32-bit ids to pointers: open addressing with linear probing,
 * each slot's key beside its value (one cache line a probe); a deletion
 * shifts the entries after it back, so no tombstones lengthen the probes. */
typedef struct cp__idmap_slot {
    void *val; /* NULL marks a free slot */
    uint32_t key;
} cp__idmap_slot;

typedef struct cp__idmap {
    cp__idmap_slot *slots;
    uint32_t cap, count;
} cp__idmap;

void *cp__idmap_get(const cp__idmap *m, uint32_t key);
void cp__idmap_put(cp__idmap *m, uint32_t key, void *val);
void *cp__idmap_del(cp__idmap *m, uint32_t key);
void cp__idmap_release(cp__idmap *m);
/* Calls fn for each entry there at the start and still there when its turn
 * comes; fn may delete any entry, and may add some (not visited). */
void cp__idmap_each(cp__idmap *m, void (*fn)(uint32_t key, void *val, void *ud), void *ud);

typedef enum cp__cap_kind {
    CP__CAP_LOCAL,   /* a server object in this process */
    CP__CAP_IMPORT,  /* hosted by the peer of conn (maybe a promise) */
    CP__CAP_PROMISE, /* a pipelined answer not yet known */
    CP__CAP_BROKEN,
} cp__cap_kind;

typedef struct cp__queued cp__queued;

struct cp_cap {
    int refs;
    cp__cap_kind kind;
    cp_cap *resolved;                     /* set once a promise or promise import resolves */
    cp_rpc_conn *conn;                    /* IMPORT: the connection it came over */
    struct cp_cap *conn_next, *conn_prev; /* the conn's list of its caps */
    cp_server *server;                    /* LOCAL */
    uint32_t import_id;                   /* IMPORT */
    bool is_promise;                      /* IMPORT of a senderPromise */
    cp_pending *question;                 /* PROMISE on an outgoing call */
    cp_call *answer;                      /* PROMISE on a call we are answering */
    uint16_t *path;                       /* PROMISE: pointer fields to follow */
    uint16_t npath;
    bool calls_sent;                 /* PROMISE/IMPORT: calls went to the peer */
    uint32_t embargo_id;             /* nonzero while calls wait for a Disembargo */
    cp__queued *queue, **queue_tail; /* calls waiting for resolution or embargo */
    bool flush_waiting;              /* in the list of queues to flush */
    struct cp_cap *flush_link;
    cp_exception exc;           /* BROKEN: reason owned */
    struct cp_cap *waiter_next; /* list of promises waiting on a question/answer */
    /* One-entry cache of this cap's export id on a connection. */
    cp_rpc_conn *export_conn;
    uint32_t export_id;
    uint32_t remote_refs;               /* IMPORT: how many times the peer sent it */
    struct cp__export *promise_exports; /* connections owed a Resolve */
};

struct cp_request {
    cp_cap *target;
    cp_message *msg; /* laid out as rpc Message{call}; caps hold references */
    cp_struct_builder call;
    cp_struct_builder params;
    bool params_init;
    uint64_t interface_id;
    uint16_t method_id;
};

/* Export ids a payload's capability table made, to release when the peer
 * says so (releaseParamCaps, releaseResultCaps). Most make one or two, which
 * stay inline. */
typedef struct cp__export_list {
    uint32_t *ids; /* inline_ids, or an allocation once more are needed */
    uint32_t n;
    uint32_t inline_ids[2];
} cp__export_list;

static inline void cp__export_list_free(cp__export_list *l)
{
    if (l->ids != l->inline_ids)
        free(l->ids);
}

/* Who learns the outcome of a call. */
struct cp_pending {
    int refs; /* the caller's handle, pipelines, the connection's table */
    cp_response_cb cb;
    void *ud;
    bool user_done; /* cb ran or the caller canceled */
    bool returned;
    cp_message *results_msg; /* owned once returned with results */
    cp_ptr_reader content;
    cp_exception exc; /* when returned with an exception; reason owned */
    bool failed;
    cp_cap *waiters; /* promises to resolve on return */
    /* Remote question state. */
    cp_rpc_conn *conn;
    uint32_t question_id;
    bool finish_sent;
    cp__export_list param_exports; /* made by our params, for releaseParamCaps */
    cp_call *local_call; /* the call a local object is answering */
    cp_flow *flow;       /* streaming: bytes to give back on return */
    size_t flow_bytes;
};

typedef enum cp__call_origin {
    CP__CALL_REMOTE, /* from the peer of conn: answer answer_id */
    CP__CALL_LOCAL,  /* from cp_request_send in this process */
} cp__call_origin;

struct cp_call {
    int refs; /* the server's turn (until ended), the answer table, pipelines */
    cp__call_origin origin;
    cp_rpc_conn *conn;
    uint32_t answer_id;
    cp_pending *pending; /* LOCAL origin */
    cp_cap *target;      /* keeps the server alive during the call */
    cp_message *params_msg;
    cp_struct_reader params;
    cp_ptr_reader params_ptr; /* the params content, for forwarding */
    uint64_t interface_id;
    uint16_t method_id;
    cp_message *results_msg; /* rpc Message{return} */
    cp_struct_builder ret;
    cp_struct_builder results;
    bool results_init;
    bool ended, canceled, returned, finished;
    bool failed;
    cp_exception exc;
    void (*on_cancel)(cp_call *, void *);
    void *cancel_ud;
    cp_cap *waiters;
    cp_pending *forward;   /* the onward call when the target is not here */
    cp_ptr_reader content; /* results content once returned */
    cp__export_list result_exports;
    bool is_bootstrap;
    bool no_pipelining; /* Call.noPromisePipelining: the Return may say noFinishNeeded */
    cp_call *done_next; /* on the connection's list of answers let go at their Return */
    bool to_yourself; /* sendResultsTo.yourself: results kept for takeFromOtherQuestion */
    /* What the params' capability table said, read as it arrived (so the
     * Return need not read it again): its length, and which entries were
     * senderHosted (bit i), or params_table_len 0xff when releaseParamCaps
     * cannot apply (a promise or a third party in it, or too many). */
    uint8_t params_table_len, params_hosted;
};

struct cp__queued {
    cp__queued *next;
    cp_request *req;
    cp_pending *pending;
};

/* ---- shared between rpc.c and rpc_conn.c ---------------------------------- */

/* vasprintf that aborts on allocation failure. */
char *cp__vformat(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* A fresh message; frees one (dropping its capability references). */
cp_message *cp__msg_new(void);
void cp__msg_free(cp_message *m);

cp_cap *cp__cap_new(cp__cap_kind kind);
/* Follows resolutions to the capability calls should go to now. */
cp_cap *cp__cap_target(cp_cap *cap);
/* Sets what a promise resolved to (taking the reference to to) and replays
 * its queued calls unless an embargo holds them. */
void cp__cap_resolve(cp_cap *cap, cp_cap *to);
/* Turns cap (import or promise of a dead connection) into a broken one. */
void cp__cap_break(cp_cap *cap, cp_exc_type type, const char *reason);
/* Replays the queued calls of cap to its current target. */
void cp__cap_flush_queue(cp_cap *cap);
/* Follows path from ptr in a results message to a capability (new ref, or a
 * broken cap when the path does not lead to one). */
cp_cap *cp__follow_path(cp_ptr_reader ptr, const uint16_t *path, size_t n);

/* The Payload of a request / of a call's results, made on first use. */
cp_struct_builder cp__request_payload(cp_request *req);
cp_struct_builder cp__call_payload(cp_call *call);

/* Delivers a request to cap's current target; the outcome goes to pending. */
void cp__deliver(cp_cap *cap, cp_request *req, cp_pending *pending);

cp_pending *cp__pending_new(cp_response_cb cb, void *ud);
void cp__pending_unref(cp_pending *p);
/* Completes a pending call with an exception or with results (taking msg). */
void cp__pending_fail(cp_pending *p, cp_exc_type type, const char *reason);
void cp__pending_results(cp_pending *p, cp_message *msg, cp_ptr_reader content);
/* Resolves the promises waiting on a completed question. */
void cp__pending_resolve_waiters(cp_pending *p);

/* Makes a call context over params (taking params_msg). */
cp_call *cp__call_new(cp__call_origin origin, cp_message *params_msg, cp_struct_reader params,
                      uint64_t interface_id, uint16_t method_id);
void cp__call_unref(cp_call *call);
/* Starts the call on target (a local server, or forwarded elsewhere). */
void cp__call_dispatch(cp_call *call, cp_cap *target);
/* Marks the call canceled and tells the server. */
void cp__call_cancel(cp_call *call);
/* A pipelined capability on the results of a call we answer. */
cp_cap *cp__call_pipeline(cp_call *call, const uint16_t *path, size_t n);

/* Wire side, implemented in rpc_conn.c. */
void cp__conn_send_call(cp_rpc_conn *conn, cp_cap *target, cp_request *req, cp_pending *pending);
void cp__conn_send_return(cp_call *call);
void cp__conn_release_import(cp_cap *cap);
void cp__conn_question_done(cp_pending *p);
void cp__conn_unlink_cap(cp_cap *cap);
void cp__conn_embargo(cp_rpc_conn *conn, cp_cap *promise);
/* Sends a Resolve to each connection that has cap as a senderPromise. */
void cp__conn_promise_resolved(cp_cap *cap);
size_t cp__conn_questions(const cp_rpc_conn *conn);
uint32_t cp__conn_max_questions(const cp_rpc_conn *conn);

/* Gives back the bytes of a finished streaming call. */
void cp__flow_done(cp_flow *flow, size_t bytes, const cp_exception *exc);

/* ---- raw connections, for tests and fuzzing ----------------------------------
 * A connection without a socket: bytes to send go to write_fn, bytes from
 * the peer are pushed with cp__rpc_conn_feed. */

typedef void (*cp__write_fn)(const void *data, size_t len, void *ud);

cp_rpc_conn *cp__rpc_conn_new_raw(cp_cap *bootstrap, const cp_rpc_options *opts,
                                  cp__write_fn write_fn, void *ud);

/* Processes bytes from the peer. Returns 0, or -1 once the connection has
 * ended (the bytes after the end are ignored). */
int cp__rpc_conn_feed(cp_rpc_conn *conn, const void *data, size_t len);

/* Ends the connection as if the peer had gone away. */
void cp__rpc_conn_disconnect(cp_rpc_conn *conn, const char *reason);

#endif
