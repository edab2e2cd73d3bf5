/* Cap'n Proto two-party RPC over a libuv stream: capabilities as refcounted
 * handles, server objects as vtables, calls with completion callbacks,
 * promise pipelining, streaming flow control. This is the RPC section of the
 * capnp library's public API (capnp.h includes it); docs/capnp.md, section
 * "RPC", walks through a server and a client.
 *
 * Threading: everything runs on one uv loop thread. Callbacks never run
 * inside a function that returned an error. */
#ifndef GRANARY_CAPNP_RPC_H
#define GRANARY_CAPNP_RPC_H

#include <uv.h>

#include "capnp.h"

typedef struct cp_cap cp_cap;           /* a reference to a capability */
typedef struct cp_server cp_server;     /* an object that answers calls */
typedef struct cp_call cp_call;         /* an incoming call being answered */
typedef struct cp_request cp_request;   /* an outgoing call being built */
typedef struct cp_pending cp_pending;   /* an outgoing call that was sent */
typedef struct cp_rpc_conn cp_rpc_conn; /* one two-party connection */
typedef struct cp_flow cp_flow;         /* flow control for a streaming method */

/* The four kinds of exception of the protocol (their wire values). */
typedef enum cp_exc_type {
    CP_EXC_FAILED = 0,
    CP_EXC_OVERLOADED = 1,
    CP_EXC_DISCONNECTED = 2,
    CP_EXC_UNIMPLEMENTED = 3,
} cp_exc_type;

typedef struct cp_exception {
    cp_exc_type type;
    const char *reason; /* never NULL */
} cp_exception;

/* ---- capabilities ------------------------------------------------------- */

/* Adds a reference and returns cap (NULL stays NULL). */
cp_cap *cp_cap_ref(cp_cap *cap);

/* Drops a reference; the last one releases the object (a local server's
 * destroy, or a Release message for a remote one). Safe on NULL. */
void cp_cap_unref(cp_cap *cap);

/* A capability whose every call fails with the given exception. */
cp_cap *cp_cap_broken(cp_exc_type type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* True when cap is known to fail every call (broken, or its connection is gone). */
bool cp_cap_is_broken(const cp_cap *cap);

/* The capability in pointer slot idx of a params or results reader, as a new
 * reference; NULL when the slot is null or names no capability. */
cp_cap *cp_get_capability(cp_struct_reader r, uint16_t idx);

/* Stores cap in pointer slot idx of a params or results builder, taking the
 * reference (NULL stores a null pointer). */
void cp_set_capability(cp_struct_builder b, uint16_t idx, cp_cap *cap);

/* ---- server objects -------------------------------------------------------
 * Embed cp_server as the first member of your object and point vt at a
 * static vtable. dispatch must end every call exactly once with
 * cp_call_return or cp_call_fail, before it returns or later. */

typedef struct cp_server_vtable {
    const char *name; /* for logs */
    void (*dispatch)(cp_server *self, cp_call *call, uint64_t interface_id, uint16_t method_id);
    /* Called once when the last reference goes; frees the object. */
    void (*destroy)(cp_server *self);
} cp_server_vtable;

struct cp_server {
    const cp_server_vtable *vt;
    cp_cap *cap_; /* internal: the server's one capability while referenced */
};

/* Returns a new reference to srv's capability. The first call makes the
 * server owned by its references: destroy runs when the last one goes. */
cp_cap *cp_server_cap(cp_server *srv);

/* The params of the call (valid until the call ends). */
cp_struct_reader cp_call_params(cp_call *call);

/* The results struct, allocated on first use with the given sizes in words
 * (later calls return the same struct). */
cp_struct_builder cp_call_results(cp_call *call, uint16_t data_words, uint16_t ptr_words);

/* Sends the results (empty if cp_call_results was never called) and ends the
 * call. After a cancellation it just ends it. */
void cp_call_return(cp_call *call);

/* Ends the call with an exception whose reason is formatted from fmt. */
void cp_call_fail(cp_call *call, cp_exc_type type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Ends the call with "method not implemented" (for dispatch's default case). */
void cp_call_unimplemented(cp_call *call, uint64_t interface_id, uint16_t method_id);

/* Asks to be told when the caller cancels (Finish before Return, or the
 * connection drops); on_cancel runs at most once. The call must still be
 * ended with cp_call_return or cp_call_fail. */
void cp_call_on_cancel(cp_call *call, void (*on_cancel)(cp_call *call, void *ud), void *ud);

/* True once the caller has canceled the call. */
bool cp_call_canceled(const cp_call *call);

/* ---- client calls --------------------------------------------------------- */

/* What a call came back with; valid only during the callback. */
typedef struct cp_response {
    const cp_exception *exception; /* NULL when the call returned results */
    cp_struct_reader results;      /* empty on an exception */
    cp_ptr_reader content_;        /* internal: the results pointer */
} cp_response;

typedef void (*cp_response_cb)(const cp_response *resp, void *ud);

/* Starts a call of method_id of interface interface_id on target (which it
 * references; target may be NULL, the send then fails). Cannot fail. */
cp_request *cp_request_new(cp_cap *target, uint64_t interface_id, uint16_t method_id);

/* The params struct, allocated on first use with the given sizes in words. */
cp_struct_builder cp_request_params(cp_request *req, uint16_t data_words, uint16_t ptr_words);

/* Frees a request that will not be sent. Safe on NULL. */
void cp_request_free(cp_request *req);

/* Sends req (taking it, even on failure) and calls cb once with the outcome,
 * unless canceled first. *out (may be NULL) is set to a handle for
 * pipelining and cancellation, valid until cb has run or cp_pending_cancel;
 * it is NULL when cb already ran (a local object that answered at once).
 * Returns 0, or -1 with err when the call cannot leave (null or broken
 * target, connection gone, outstanding-call limit) and cb will not run. */
int cp_request_send(cp_request *req, cp_response_cb cb, void *ud, cp_pending **out,
                    gr_error_t *err);

/* A capability for the pointer reached from the call's results by following
 * pointer fields path[0..n) (n = 0: the results content itself). Calls on it
 * are pipelined: they leave before the results come back. New reference. */
cp_cap *cp_pending_pipeline(cp_pending *p, const uint16_t *path, size_t n);

/* Cancels the call: cb will not run; the callee is told (Finish) once no
 * pipelined capability needs the answer. */
void cp_pending_cancel(cp_pending *p);

/* ---- streaming flow control ----------------------------------------------
 * For `-> stream` methods: calls leave at once while fewer than window bytes
 * are in flight; past that the caller waits for `ready`. The first failure
 * of any call is kept and reported by every later cp_flow_send. */

typedef void (*cp_flow_ready_cb)(cp_flow *flow, void *ud);

/* window 0 picks the default (64 KiB). Cannot fail. */
cp_flow *cp_flow_new(size_t window, cp_flow_ready_cb ready, void *ud);

/* Frees the flow; calls in flight finish unobserved. Safe on NULL. */
void cp_flow_free(cp_flow *flow);

/* Sends req (taking it). Returns 1 when more may be sent now, 0 when the
 * window is full (ready will be called once it has room), or -1 with err
 * when the send failed or an earlier call of this flow failed. */
int cp_flow_send(cp_flow *flow, cp_request *req, gr_error_t *err);

/* Bytes now in flight, and the most there ever were. */
size_t cp_flow_in_flight(const cp_flow *flow);
size_t cp_flow_max_in_flight(const cp_flow *flow);

/* Calls still awaiting their return. */
unsigned cp_flow_pending_calls(const cp_flow *flow);

/* ---- connections ------------------------------------------------------------ */

typedef struct cp_rpc_options {
    size_t max_message_bytes;       /* largest frame accepted; 0 = 64 MiB */
    uint32_t max_outstanding_calls; /* unanswered calls from the peer; 0 = 10000 */
    uint32_t max_questions;         /* unanswered calls to the peer; 0 = 10000 */
} cp_rpc_options;

/* Called once when the connection ends (peer closed, error, abort, or
 * cp_rpc_conn_close); reason says why. Every outstanding call has failed by
 * then. The connection stays allocated until cp_rpc_conn_free. */
typedef void (*cp_rpc_disconnect_cb)(cp_rpc_conn *conn, const char *reason, void *ud);

/* Opens a connection over the connected stream socket fd (taken, also on
 * failure), offering bootstrap (referenced; may be NULL) to the peer.
 * opts may be NULL. Returns 0, or -1 with err. */
int cp_rpc_conn_open(uv_loop_t *loop, int fd, cp_cap *bootstrap, const cp_rpc_options *opts,
                     cp_rpc_conn **out, gr_error_t *err);

/* The same over a connected libuv stream (e.g. a uv_pipe_t from uv_accept),
 * which must have been allocated with gr_malloc/gr_calloc: the connection
 * takes it, also on failure, and closes and frees it at the end. */
int cp_rpc_conn_adopt(uv_stream_t *stream, cp_cap *bootstrap, const cp_rpc_options *opts,
                      cp_rpc_conn **out, gr_error_t *err);

/* The peer's bootstrap capability (new reference; a promise until answered). */
cp_cap *cp_rpc_conn_bootstrap(cp_rpc_conn *conn);

void cp_rpc_conn_on_disconnect(cp_rpc_conn *conn, cp_rpc_disconnect_cb cb, void *ud);

/* Ends the connection (outstanding calls fail with "disconnected"); the
 * disconnect callback runs. Safe to call twice. */
void cp_rpc_conn_close(cp_rpc_conn *conn);

/* Closes if needed and frees the connection once libuv is done with it.
 * Capabilities from it stay valid handles and fail every call. Safe on NULL. */
void cp_rpc_conn_free(cp_rpc_conn *conn);

/* True until the connection has ended. */
bool cp_rpc_conn_alive(const cp_rpc_conn *conn);

/* Counters for tests and operators. */
typedef struct cp_rpc_stats {
    uint32_t questions; /* our calls awaiting Return or Finish */
    uint32_t answers;   /* the peer's calls not yet finished */
    uint32_t exports;   /* capabilities the peer holds from us */
    uint32_t imports;   /* capabilities we hold from the peer */
    uint64_t messages_in, messages_out;
    uint32_t embargoes;       /* Disembargos we sent (senderLoopback) */
    uint32_t reflections;     /* the peer's Disembargos we echoed back */
    uint32_t resolves;        /* Resolves we sent for promises we had exported */
    uint32_t early_pipelined; /* calls that came for an answer we had not given yet */
} cp_rpc_stats;
void cp_rpc_conn_stats(const cp_rpc_conn *conn, cp_rpc_stats *out);

#endif
