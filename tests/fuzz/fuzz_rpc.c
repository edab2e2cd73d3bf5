/* libFuzzer target for the RPC message handler: arbitrary bytes from "the
 * peer" go to a connection that offers a server object, has questions of its
 * own outstanding, and holds some calls unanswered until the input ends.
 * Nothing may crash, leak or trip a sanitizer. Method 4 returns a promise
 * (exported as senderPromise, resolved when the held calls end). Seeds are frames recorded
 * from the C++ reference client (tests/fuzz/record-rpc-seeds). */
#include <stdint.h>
#include <stdlib.h>

#include "rpc_internal.h"

#define MAX_HELD 8

typedef struct fuzz_server {
    cp_server base;
    cp_call *held[MAX_HELD];
    int nheld;
} fuzz_server;

static void echo_done(const cp_response *resp, void *ud)
{
    cp_call *call = ud;
    if (resp->exception) {
        cp_call_fail(call, resp->exception->type, "%s", resp->exception->reason);
        return;
    }
    cp_struct_builder r = cp_call_results(call, 1, 1);
    cp_set_u64(r, 0, cp_get_u64(resp->results, 0, 0), 0);
    cp_set_capability(r, 0, cp_get_capability(resp->results, 0));
    cp_call_return(call);
}

static void fuzz_dispatch(cp_server *self, cp_call *call, uint64_t iface, uint16_t method)
{
    fuzz_server *s = (fuzz_server *)self;
    cp_struct_reader params = cp_call_params(call);
    switch (method) {
    case 0: { /* return data, text and capabilities, some taken from the params */
        cp_struct_builder r = cp_call_results(call, 1, 3);
        cp_set_u64(r, 0, cp_get_u64(params, 0, 0) + 1, 0);
        cp_text t = cp_get_text(params, 1, "");
        cp_set_text(r, 1, t.str, t.len);
        cp_set_capability(r, 0, cp_server_cap(self));
        cp_set_capability(r, 2, cp_get_capability(params, 0));
        cp_call_return(call);
        return;
    }
    case 1: /* answer later: pipelining on and canceling unanswered calls */
        if (s->nheld < MAX_HELD) {
            s->held[s->nheld++] = call;
            return;
        }
        cp_call_return(call);
        return;
    case 2:
        cp_call_fail(call, CP_EXC_OVERLOADED, "method %u fails", method);
        return;
    case 3: { /* call the capability in the params, then answer with its result */
        cp_cap *cap = cp_get_capability(params, 0);
        cp_request *req = cp_request_new(cap, iface, 0);
        cp_cap_unref(cap);
        cp_struct_builder p = cp_request_params(req, 1, 1);
        cp_set_capability(p, 0, cp_server_cap(self));
        gr_error_t err = NULL;
        if (cp_request_send(req, echo_done, call, NULL, &err) < 0) {
            cp_call_fail(call, CP_EXC_FAILED, "%s", gr_error_msg(err));
            gr_error_release(&err);
        }
        return;
    }
    case 4: { /* return a promise: a pipelined call on ourselves that is held */
        cp_cap *me = cp_server_cap(self);
        cp_request *req = cp_request_new(me, iface, 1);
        cp_cap_unref(me);
        cp_pending *p = NULL;
        gr_error_t err = NULL;
        if (cp_request_send(req, NULL, NULL, &p, &err) < 0 || !p) {
            gr_error_release(&err);
            cp_call_fail(call, CP_EXC_FAILED, "no promise");
            return;
        }
        static const uint16_t field[] = {0};
        cp_set_capability(cp_call_results(call, 0, 1), 0, cp_pending_pipeline(p, field, 1));
        cp_call_return(call);
        return;
    }
    default:
        cp_call_unimplemented(call, iface, method);
    }
}

static void fuzz_destroy(cp_server *self)
{
    (void)self; /* static storage; reset per input */
}

static const cp_server_vtable fuzz_vt = {"fuzz", fuzz_dispatch, fuzz_destroy};

static void drop_output(const void *data, size_t len, void *ud)
{
    (void)data;
    (void)len;
    (void)ud;
}

static void ignore(const cp_response *resp, void *ud)
{
    (void)resp;
    (void)ud;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int quiet;
    if (!quiet++)
        gr_log_set_level(GR_LOG_ERROR);
    fuzz_server srv = {.base.vt = &fuzz_vt};
    cp_cap *boot = cp_server_cap(&srv.base);
    cp_rpc_options opts = {.max_message_bytes = 1u << 20, .max_outstanding_calls = 64};
    cp_rpc_conn *conn = cp__rpc_conn_new_raw(boot, &opts, drop_output, NULL);
    cp_cap_unref(boot);

    /* Questions of our own (ids 0 and 1), one pipelined on the other. */
    cp_cap *remote = cp_rpc_conn_bootstrap(conn);
    cp_request *req = cp_request_new(remote, 0x1234, 7);
    cp_set_capability(cp_request_params(req, 0, 1), 0, cp_server_cap(&srv.base));
    cp_pending *pending = NULL;
    gr_error_t err = NULL;
    if (cp_request_send(req, ignore, NULL, &pending, &err) < 0)
        gr_error_release(&err);
    static const uint16_t path[] = {0};
    cp_cap *piped = pending ? cp_pending_pipeline(pending, path, 1) : NULL;
    if (piped) {
        req = cp_request_new(piped, 0x1234, 8);
        if (cp_request_send(req, ignore, NULL, NULL, &err) < 0)
            gr_error_release(&err);
    }

    /* The input, in two pieces to exercise partial frames. */
    size_t half = size / 2;
    if (cp__rpc_conn_feed(conn, data, half) == 0)
        cp__rpc_conn_feed(conn, data + half, size - half);

    for (int i = 0; i < srv.nheld; i++)
        cp_call_return(srv.held[i]);
    cp_cap_unref(piped);
    cp_cap_unref(remote);
    cp_rpc_conn_free(conn);
    return 0;
}
