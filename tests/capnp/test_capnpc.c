/* Tests of the code capnpc-c generates: defaults of every kind, constants,
 * nested types, unions and groups, generics and interfaces (generic.capnp),
 * and Debian's schema.capnp, whose generated accessors here read a real
 * CodeGeneratorRequest produced by `capnp compile -o-`. */
#include "generic.capnp.h"
#include "sample.h"
#include "persistent.capnp.h"
#include "rpc-twoparty.capnp.h"
#include "rpc.capnp.h"
#include "schema.capnp.h"
#include "stream.capnp.h"

#include <setjmp.h>
#include <cmocka.h>

static void test_pointer_defaults(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    Defaults_R r = Defaults_as_reader(Defaults_init_root(&m));
    assert_string_equal(Defaults_get_textDefault(r).str, "foo\"bar\n");
    cp_data d = Defaults_get_dataDefault(r);
    assert_int_equal(d.len, 6);
    assert_memory_equal(d.ptr, "\xde\xad\xbe\xef\x00\x01", 6);
    Inner_R in = Defaults_get_structDefault(r);
    assert_int_equal(Inner_get_id(in), 7);
    assert_string_equal(Inner_get_name(in).str, "seven");
    assert_true(Inner_get_flag(in));
    cp_list_reader l = Defaults_get_int32ListDefault(r);
    assert_int_equal(l.len, 3);
    assert_int_equal((int32_t)cp_list_get_u32(l, 1), -2);
    l = Defaults_get_textListDefault(r);
    assert_int_equal(l.len, 2);
    assert_string_equal(cp_list_get_text(l, 1).str, "bc");
    Inner_LR sl = Defaults_get_structListDefault(r);
    assert_int_equal(Inner_list_len(sl), 2);
    assert_string_equal(Inner_get_name(Inner_list_get(sl, 1)).str, "two");
    l = Defaults_get_boolListDefault(r);
    assert_int_equal(l.len, 4);
    assert_true(cp_list_get_bool(l, 0) && !cp_list_get_bool(l, 1) && cp_list_get_bool(l, 3));
    assert_false(Defaults_has_textDefault(r));
    /* Once set, the stored value wins over the default. */
    Defaults_B b = {{.msg = NULL}};
    b = Defaults_init_root(&m);
    Defaults_set_textDefault(b, "x", 1);
    r = Defaults_as_reader(b);
    assert_string_equal(Defaults_get_textDefault(r).str, "x");
    Inner_set_id(Defaults_init_structDefault(b), 8);
    assert_int_equal(Inner_get_id(Defaults_get_structDefault(r)), 8);
    assert_false(Inner_get_flag(Defaults_get_structDefault(r)));
    assert_true(cp_message_ok(&m));
    cp_message_release(&m);
}

static void test_constants_and_nested(void **state)
{
    assert_int_equal(constInt, -42);
    assert_true(constFloat == 2.5);
    assert_string_equal(constText, "constant text");
    assert_int_equal(constData_LEN, 2);
    assert_memory_equal(constData, "\x01\x02", 2);
    assert_int_equal(constEnum, Color_green);
    Inner_R c = constStruct_get();
    assert_int_equal(Inner_get_id(c), 99);
    assert_string_equal(Inner_get_name(c).str, "const");
    cp_list_reader l = constList_get();
    assert_int_equal(l.len, 3);
    assert_int_equal(cp_list_get_u16(l, 2), 30);
    l = constTextList_get();
    assert_int_equal(l.len, 2);
    assert_string_equal(cp_list_get_text(l, 1).str, "x-oc-*");
    Inner_LR il = constStructList_get();
    assert_int_equal(Inner_list_len(il), 2);
    assert_string_equal(Inner_get_name(Inner_list_get(il, 1)).str, "b");

    cp_message m;
    cp_message_init(&m, 0);
    Outer_B o = Outer_init_root(&m);
    Outer_Nested_B n = Outer_init_nested(o);
    Outer_R r = Outer_as_reader(o);
    assert_int_equal(Outer_Nested_get_mood(Outer_get_nested(r)), Outer_Nested_Mood_sad);
    assert_string_equal(
        Outer_Nested_Deeper_get_value(Outer_Nested_get_deeper(Outer_get_nested(r))).str, "deep");
    Outer_Nested_set_mood(n, Outer_Nested_Mood_happy);
    assert_int_equal(Outer_Nested_get_mood(Outer_get_nested(r)), Outer_Nested_Mood_happy);
    cp_message_release(&m);
}

static void test_enumerant_annotations(void **state)
{
    assert_true(Outcome_has_status(Outcome_ok) && Outcome_has_status(Outcome_missing));
    assert_false(Outcome_has_status(Outcome_other));
    assert_int_equal(StatusInfo_get_code(Outcome_status(Outcome_missing)), 404);
    assert_string_equal(StatusInfo_get_title(Outcome_status(Outcome_missing)).str, "Not Found");
    assert_int_equal(StatusInfo_get_code(Outcome_status(Outcome_other)), 0);
    assert_int_equal(Outcome_weight(Outcome_ok), -5);
    assert_int_equal(Outcome_weight(Outcome_missing), 0);
    assert_string_equal(Outcome_label(Outcome_ok).str, "fine");
    assert_int_equal(Outcome_label(Outcome_other).len, 0);
    assert_true(Outcome_has_flagged(Outcome_missing));
    assert_false(Outcome_has_flagged(Outcome_ok));
    assert_false(Outcome_has_status((Outcome)77));
}

static void test_unions_and_groups(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    Everything_B e = Everything_init_root(&m);
    Everything_R r = Everything_as_reader(e);
    assert_int_equal(Everything_which(r), Everything_WHICH_unionNone);
    Everything_set_unionInt(e, 5);
    assert_int_equal(Everything_which(r), Everything_WHICH_unionInt);
    assert_int_equal(Everything_get_unionInt(r), 5);
    Everything_unionGroup_B g = Everything_init_unionGroup(e);
    Everything_unionGroup_set_a(g, 9);
    Everything_unionGroup_set_b(g, "bee", 3);
    assert_int_equal(Everything_which(r), Everything_WHICH_unionGroup);
    Everything_unionGroup_R gr = Everything_get_unionGroup(r);
    assert_int_equal(Everything_unionGroup_get_a(gr), 9);
    assert_string_equal(Everything_unionGroup_get_b(gr).str, "bee");
    Everything_set_unionNone(e);
    assert_int_equal(Everything_which(r), Everything_WHICH_unionNone);
    Everything_group_inner_B gi = Everything_group_init_inner(Everything_init_group(e));
    Everything_group_inner_set_left(gi, 3);
    Everything_group_inner_R gir = Everything_group_get_inner(Everything_get_group(r));
    assert_int_equal(Everything_group_inner_which(gir), Everything_group_inner_WHICH_left);
    assert_int_equal(Everything_group_inner_get_left(gir), 3);
    cp_message_release(&m);
}

static void test_generics_and_interfaces(void **state)
{
    cp_message m;
    cp_message_init(&m, 0);
    Handle_B h = Handle_init_root(&m);
    Inner_set_id(Handle_init_inner(h), 3);
    /* Box(Text): the generic field is an AnyPointer slot. */
    Box_B box = Handle_init_box(h);
    cp_ptr_set_text(Box_ptr_value(box), "boxed", 5);
    Pair_B pair = Handle_init_pair(h);
    Inner_set_id(Inner_init(Pair_ptr_key(pair)), 11);
    cp_ptr_set_data(Pair_ptr_val(pair), "\x07", 1);
    Handle_R r = Handle_as_reader(h);
    assert_int_equal(Handle_get_color(r), Color_green);
    assert_int_equal(Inner_get_id(Handle_get_inner(r)), 3);
    assert_string_equal(cp_ptr_get_text(Box_get_value(Handle_get_box(r)), NULL).str, "boxed");
    assert_int_equal(Inner_get_id(Inner_read(Pair_get_key(Handle_get_pair(r)))), 11);
    assert_int_equal(cp_ptr_get_data(Pair_get_val(Handle_get_pair(r)), NULL, 0).len, 1);
    cp_message_release(&m);

    /* Interface ids, method ordinals and param/result structs. */
    assert_true(Store_TYPE_ID != Derived_TYPE_ID);
    assert_int_equal(Store_METHOD_COUNT, 3);
    assert_int_equal(Store_put_METHOD_ID, 1);
    assert_string_equal(Store_METHOD_NAMES[Store_watch_METHOD_ID], "watch");
    assert_int_equal(Derived_getStore_METHOD_ID, 1);
    assert_int_equal(Store_Watcher_changed_METHOD_ID, 0);
    assert_int_equal(Base_ping_METHOD_ID, 0);
    cp_message_init(&m, 0);
    Store_get_params_B p = Store_get_Params_init_root(&m);
    Store_get_Params_set_key(p, "k", 1);
    Store_get_results_B res = Store_get_Results_init(cp_message_root_builder(&m));
    Store_get_Results_set_found(res, true);
    cp_ptr_set_text(Store_get_Results_ptr_value(res), "v", 1);
    Store_get_results_R rr = Store_get_Results_root(&m);
    assert_true(Store_get_Results_get_found(rr));
    assert_string_equal(cp_ptr_get_text(Store_get_Results_get_value(rr), NULL).str, "v");
    Store_watch_Params_B wp = Store_watch_Params_init_root(&m);
    Store_watch_Params_set_watcher_index(wp, 4);
    assert_int_equal(Store_watch_Params_get_watcher_index(Store_watch_Params_as_reader(wp)), 4);
    /* Explicit param and result types are the named structs. */
    Derived_explicit_params_B ep = Handle_init_root(&m);
    Handle_set_color(ep, Color_red);
    assert_int_equal(Handle_get_color(Handle_as_reader(ep)), Color_red);
    Derived_explicit_results_B eb = Inner_init_root(&m);
    Inner_set_id(eb, 6);
    Derived_explicit_results_R er = Inner_root(&m);
    assert_int_equal(Inner_get_id(er), 6);
    /* `Capability` fields carry a cap-table index; superclasses are listed. */
    Untyped_B u = Untyped_init_root(&m);
    Untyped_set_cap_index(u, 2);
    assert_int_equal(Untyped_get_cap_index(Untyped_as_reader(u)), 2);
    assert_int_equal(Saveable_SUPERCLASS_COUNT, 1);
    assert_true(Saveable_SUPERCLASS_IDS[0] == Persistent_TYPE_ID);
    assert_int_equal(Derived_SUPERCLASS_COUNT, 1);
    assert_true(Derived_SUPERCLASS_IDS[0] == Base_TYPE_ID);
    assert_true(cp_message_ok(&m));
    cp_message_release(&m);
}

/* ---- generated RPC helpers, over a local server ----------------------- */

typedef struct kv_server {
    cp_server base;
    char value[32];
    bool destroyed;
} kv_server;

static void kv_get(cp_server *self, cp_call *call, Store_get_params_R p)
{
    kv_server *kv = (kv_server *)self;
    Store_get_results_B r = Store_get_results(call);
    bool found = strcmp(Store_get_Params_get_key(p).str, "k") == 0 && kv->value[0];
    Store_get_Results_set_found(r, found);
    if (found)
        cp_ptr_set_text(Store_get_Results_ptr_value(r), kv->value, strlen(kv->value));
    cp_call_return(call);
}

static void kv_put(cp_server *self, cp_call *call, Store_put_params_R p)
{
    kv_server *kv = (kv_server *)self;
    cp_text v = cp_ptr_get_text(Store_put_Params_get_value(p), NULL);
    gr_strlcpy(kv->value, v.str, sizeof(kv->value));
    cp_call_return(call);
}

static const Store_methods kv_methods = {.get = kv_get, .put = kv_put};

static void kv_dispatch(cp_server *self, cp_call *call, uint64_t iid, uint16_t mid)
{
    if (!Store_dispatch(&kv_methods, self, call, iid, mid))
        cp_call_unimplemented(call, iid, mid);
}

static void kv_destroy(cp_server *self)
{
    ((kv_server *)self)->destroyed = true;
}

static const cp_server_vtable kv_vt = {"kv", kv_dispatch, kv_destroy};

typedef struct outcome {
    int calls;
    bool failed;
    cp_exc_type type;
    bool found;
    char value[32];
} outcome;

static void on_get(const cp_response *resp, void *ud)
{
    outcome *o = ud;
    o->calls++;
    o->failed = resp->exception != NULL;
    if (o->failed) {
        o->type = resp->exception->type;
        return;
    }
    Store_get_results_R r = Store_get_response(resp);
    o->found = Store_get_Results_get_found(r);
    gr_strlcpy(o->value, cp_ptr_get_text(Store_get_Results_get_value(r), NULL).str,
               sizeof(o->value));
}

static void send_and_expect_done(cp_request *req, outcome *o)
{
    gr_error_t err = NULL;
    cp_pending *pending = (cp_pending *)1;
    int before = o->calls;
    assert_int_equal(cp_request_send(req, on_get, o, &pending, &err), 0);
    assert_null(pending); /* a local object answers at once */
    assert_int_equal(o->calls, before + 1);
}

static void test_rpc_helpers_with_local_server(void **state)
{
    kv_server kv = {.base = {.vt = &kv_vt}};
    cp_cap *cap = cp_server_cap(&kv.base);
    outcome o = {0};

    Store_get_params_B gp;
    cp_request *req = Store_get_request(cap, &gp);
    Store_get_Params_set_key(gp, "k", 1);
    send_and_expect_done(req, &o);
    assert_false(o.failed);
    assert_false(o.found);

    Store_put_params_B pp;
    req = Store_put_request(cap, &pp);
    Store_put_Params_set_key(pp, "k", 1);
    cp_ptr_set_text(Store_put_Params_ptr_value(pp), "v1", 2);
    send_and_expect_done(req, &o);
    assert_string_equal(kv.value, "v1");

    req = Store_get_request(cap, &gp);
    Store_get_Params_set_key(gp, "k", 1);
    send_and_expect_done(req, &o);
    assert_true(o.found);
    assert_string_equal(o.value, "v1");

    /* A method the table lacks, and another interface's method. */
    Store_watch_params_B wp;
    req = Store_watch_request(cap, &wp);
    send_and_expect_done(req, &o);
    assert_true(o.failed);
    assert_int_equal(o.type, CP_EXC_UNIMPLEMENTED);
    Base_ping_params_B bp;
    req = Base_ping_request(cap, &bp);
    send_and_expect_done(req, &o);
    assert_true(o.failed);
    assert_int_equal(o.type, CP_EXC_UNIMPLEMENTED);

    /* Capability fields hold cp_cap references through the cap table. */
    cp_message m;
    cp_message_init(&m, 0);
    Holder_B h = Holder_init_root(&m);
    Holder_set_marker(h, cp_cap_ref(cap));
    assert_int_equal(m.ncaps, 1);
    cp_cap *back = Holder_get_marker(Holder_as_reader(h));
    assert_ptr_equal(back, cap);
    cp_cap_unref(back);
    assert_null(cp_get_capability(Holder_as_reader(h).s, 1)); /* the null markers list */
    for (uint32_t i = 0; i < m.ncaps; i++)
        cp_cap_unref(m.caps[i]);
    cp_message_release(&m);

    assert_false(kv.destroyed);
    cp_cap_unref(cap);
    assert_true(kv.destroyed);
}

/* The generated schema.capnp accessors, over a request capnp itself wrote. */
static void test_schema_capnp_reads_real_request(void **state)
{
    FILE *p = popen(
        "capnp compile -o- --src-prefix=" CAPNP_TEST_DIR " " CAPNP_TEST_DIR "/test.capnp", "r");
    assert_non_null(p);
    gr_buf in = GR_BUF_INIT;
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), p)) > 0)
        gr_buf_append(&in, chunk, n);
    assert_int_equal(pclose(p), 0);
    cp_message m;
    gr_error_t err = NULL;
    assert_int_equal(cp_message_read(&m, in.data, in.len, NULL, &err), 0);
    CodeGeneratorRequest_R req = CodeGeneratorRequest_root(&m);
    CodeGeneratorRequest_RequestedFile_LR files = CodeGeneratorRequest_get_requestedFiles(req);
    assert_int_equal(CodeGeneratorRequest_RequestedFile_list_len(files), 1);
    assert_string_equal(CodeGeneratorRequest_RequestedFile_get_filename(
                            CodeGeneratorRequest_RequestedFile_list_get(files, 0))
                            .str,
                        "test.capnp");
    Node_LR nodes = CodeGeneratorRequest_get_nodes(req);
    bool found = false;
    for (uint32_t i = 0; i < Node_list_len(nodes); i++) {
        Node_R node = Node_list_get(nodes, i);
        if (strcmp(Node_get_displayName(node).str, "test.capnp:Everything") != 0)
            continue;
        found = true;
        assert_int_equal(Node_which(node), Node_WHICH_struct);
        Node_struct_R s = Node_get_struct(node);
        assert_int_equal(Node_struct_get_dataWordCount(s), Everything_DATA_WORDS);
        assert_int_equal(Node_struct_get_pointerCount(s), Everything_PTR_WORDS);
        assert_int_equal(Node_get_id(node), Everything_TYPE_ID);
        Field_LR fields = Node_struct_get_fields(s);
        Field_R f = Field_list_get(fields, 1);
        assert_string_equal(Field_get_name(f).str, "boolField");
        assert_int_equal(Field_which(f), Field_WHICH_slot);
        assert_int_equal(Type_which(Field_slot_get_type(Field_get_slot(f))), Type_WHICH_bool);
        /* discriminantValue defaults to 0xffff: the XOR default at work. */
        assert_int_equal(Field_get_discriminantValue(f), 0xffff);
    }
    assert_true(found);
    assert_true(cp_message_ok(&m));
    cp_message_release(&m);
    gr_buf_release(&in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pointer_defaults),
        cmocka_unit_test(test_constants_and_nested),
        cmocka_unit_test(test_enumerant_annotations),
        cmocka_unit_test(test_unions_and_groups),
        cmocka_unit_test(test_generics_and_interfaces),
        cmocka_unit_test(test_rpc_helpers_with_local_server),
        cmocka_unit_test(test_schema_capnp_reads_real_request),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
