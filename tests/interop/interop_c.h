/* Granary's side of the interop schema: C server objects for Interop,
 * Counter and Callback, and a helper that runs a uv loop until a call comes
 * back, shared by the interop tests and the RPC benchmark. */
#ifndef GRANARY_INTEROP_C_H
#define GRANARY_INTEROP_C_H

#include <uv.h>

#include "capnp.h"
#include "interop.capnp.h"
#include "rpc.h"

typedef struct interop_state {
    uv_loop_t *loop;
    bool delay_counters; /* answer newCounter from a timer, to force pipelining */
    uint32_t canceled;   /* hang() calls canceled */
    uint32_t hanging;    /* hang() calls not yet ended */
    uint64_t bytes;      /* write() totals */
    uint32_t writes;
    int live; /* Counter and Callback objects alive */
    int callbacks_destroyed;
    int out_of_order; /* Callback calls that arrived before an earlier one */
} interop_state;

/* The Interop server object (new reference). */
cp_cap *interop_server_new(interop_state *st);
/* A Callback whose call(i) returns i * 10. */
cp_cap *interop_callback_new(interop_state *st);

/* The outcome of a call, kept past its callback. */
typedef struct interop_outcome {
    int callbacks; /* how many times the callback ran: must end up 1 */
    bool done;
    bool failed;
    cp_exc_type type;
    char *reason;
    cp_message *msg; /* a copy of the results (capabilities referenced) */
    cp_struct_reader results;
} interop_outcome;

/* Sends req and returns a handle whose outcome fills in as the loop runs.
 * Returns NULL (with err) when the call cannot be sent. */
interop_outcome *interop_send(cp_request *req, cp_pending **pending, gr_error_t *err);
/* Runs loop until o is done (or the loop has nothing left to do). */
void interop_wait(uv_loop_t *loop, interop_outcome *o);
/* Send and wait. Never NULL: a send error is reported as a failed outcome. */
interop_outcome *interop_call(uv_loop_t *loop, cp_request *req);
void interop_outcome_free(interop_outcome *o);

#endif
