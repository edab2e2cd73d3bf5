/* The message of everything.txt, built and checked through the accessors
 * capnpc-c generated from test.capnp. Shared by the cmocka tests and the
 * capnp_sample tool that the interop tests (test_interop.py) drive. */
#ifndef GRANARY_TEST_SAMPLE_H
#define GRANARY_TEST_SAMPLE_H

#include <math.h>

#include "test.capnp.h"

static inline void sample_set_text(cp_ptr_builder p, const char *s)
{
    cp_ptr_set_text(p, s, strlen(s));
}

static inline void sample_inner(Inner_B b, uint32_t id, const char *name, bool flag)
{
    Inner_set_id(b, id);
    if (name)
        Inner_set_name(b, name, strlen(name));
    Inner_set_flag(b, flag);
}

/* Builds everything.txt's message as the root of m. */
static inline void sample_build(cp_message *m)
{
    Everything_B e = Everything_init_root(m);
    Everything_set_boolField(e, true);
    Everything_set_int8Field(e, INT8_MIN);
    Everything_set_int16Field(e, INT16_MIN);
    Everything_set_int32Field(e, INT32_MIN);
    Everything_set_int64Field(e, INT64_MIN);
    Everything_set_uint8Field(e, UINT8_MAX);
    Everything_set_uint16Field(e, UINT16_MAX);
    Everything_set_uint32Field(e, UINT32_MAX);
    Everything_set_uint64Field(e, UINT64_MAX);
    Everything_set_float32Field(e, 1.5f);
    Everything_set_float64Field(e, -2.25e100);
    const char *t = "hello, \"world\"\n";
    Everything_set_textField(e, t, strlen(t));
    Everything_set_dataField(e, "\x00\xff\x10\x20", 4);
    sample_inner(Everything_init_structField(e), 17, "inner", true);
    Everything_set_enumField(e, Color_blue);

    static const bool bools[] = {true, false, false, true, true, false, true, false, true};
    cp_list_builder l = Everything_init_boolList(e, 9);
    for (uint32_t i = 0; i < 9; i++)
        cp_list_set_bool(l, i, bools[i]);
    l = Everything_init_int8List(e, 3);
    cp_list_set_i8(l, 0, -1);
    cp_list_set_i8(l, 1, 2);
    cp_list_set_i8(l, 2, -3);
    l = Everything_init_int16List(e, 2);
    cp_list_set_i16(l, 0, -300);
    cp_list_set_u16(l, 1, 400);
    l = Everything_init_int32List(e, 3);
    cp_list_set_i32(l, 0, -70000);
    cp_list_set_u32(l, 1, 80000);
    cp_list_set_u32(l, 2, 0);
    l = Everything_init_int64List(e, 2);
    cp_list_set_i64(l, 0, -5000000000LL);
    cp_list_set_u64(l, 1, 6000000000ULL);
    l = Everything_init_uint8List(e, 3);
    cp_list_set_u8(l, 0, 1);
    cp_list_set_u8(l, 1, 2);
    cp_list_set_u8(l, 2, 254);
    l = Everything_init_uint16List(e, 2);
    cp_list_set_u16(l, 0, 65000);
    cp_list_set_u16(l, 1, 1);
    l = Everything_init_uint32List(e, 1);
    cp_list_set_u32(l, 0, 4000000000u);
    l = Everything_init_uint64List(e, 3);
    cp_list_set_u64(l, 0, 10000000000000000000ULL);
    cp_list_set_u64(l, 1, 0);
    cp_list_set_u64(l, 2, 1);
    l = Everything_init_float32List(e, 2);
    cp_list_set_f32(l, 0, 0.5f);
    cp_list_set_f32(l, 1, -1.25f);
    l = Everything_init_float64List(e, 2);
    cp_list_set_f64(l, 0, 3.125);
    cp_list_set_f64(l, 1, -1e-300);
    l = Everything_init_textList(e, 3);
    sample_set_text(cp_list_ptr_at(l, 0), "one");
    sample_set_text(cp_list_ptr_at(l, 1), "");
    sample_set_text(cp_list_ptr_at(l, 2), "three");
    l = Everything_init_dataList(e, 3);
    cp_ptr_set_data(cp_list_ptr_at(l, 0), "\x01", 1);
    cp_ptr_set_data(cp_list_ptr_at(l, 1), "", 0);
    cp_ptr_set_data(cp_list_ptr_at(l, 2), "\x02\x03", 2);
    Inner_LB sl = Everything_init_structList(e, 3);
    sample_inner(Inner_list_at(sl, 0), 1, "a", false);
    sample_inner(Inner_list_at(sl, 1), 2, NULL, true);
    sample_inner(Inner_list_at(sl, 2), 3, "c", true);
    l = Everything_init_enumList(e, 3);
    cp_list_set_u16(l, 0, Color_green);
    cp_list_set_u16(l, 1, Color_red);
    cp_list_set_u16(l, 2, Color_blue);
    Everything_init_voidList(e, 4);
    l = Everything_init_listOfLists(e, 3);
    cp_list_builder sub = cp_ptr_init_list(cp_list_ptr_at(l, 0), CP_ELEM_FOUR_BYTES, 2);
    cp_list_set_u32(sub, 0, 1);
    cp_list_set_u32(sub, 1, 2);
    cp_ptr_init_list(cp_list_ptr_at(l, 1), CP_ELEM_FOUR_BYTES, 0);
    sub = cp_ptr_init_list(cp_list_ptr_at(l, 2), CP_ELEM_FOUR_BYTES, 3);
    for (uint32_t i = 0; i < 3; i++)
        cp_list_set_u32(sub, i, 3 + i);
    l = Everything_init_listOfStructLists(e, 2);
    Inner_LB s0 = Inner_list_init(cp_list_ptr_at(l, 0), 1);
    sample_inner(Inner_list_at(s0, 0), 10, NULL, false);
    Inner_LB s1 = Inner_list_init(cp_list_ptr_at(l, 1), 2);
    sample_inner(Inner_list_at(s1, 0), 20, NULL, false);
    sample_inner(Inner_list_at(s1, 1), 21, "x", false);
    t = "in the union";
    Everything_set_unionText(e, t, strlen(t));
    Everything_group_B g = Everything_init_group(e);
    Everything_group_set_x(g, -99);
    Everything_group_set_y(g, 0.75f);
    Everything_group_inner_set_right(Everything_group_init_inner(g), true);
}

/* Counts (and prints) the differences between m's root and everything.txt. */
static inline int sample_check(cp_message *m)
{
    int bad = 0;
#define SAMPLE_EXPECT(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "sample mismatch: %s (line %d)\n", #cond, __LINE__);                   \
            bad++;                                                                                 \
        }                                                                                          \
    } while (0)
#define SAMPLE_TEXT(t, s) SAMPLE_EXPECT((t).len == strlen(s) && memcmp((t).str, s, (t).len) == 0)
    Everything_R e = Everything_root(m);
    SAMPLE_EXPECT(Everything_get_boolField(e));
    SAMPLE_EXPECT(Everything_get_int8Field(e) == INT8_MIN);
    SAMPLE_EXPECT(Everything_get_int16Field(e) == INT16_MIN);
    SAMPLE_EXPECT(Everything_get_int32Field(e) == INT32_MIN);
    SAMPLE_EXPECT(Everything_get_int64Field(e) == INT64_MIN);
    SAMPLE_EXPECT(Everything_get_uint8Field(e) == UINT8_MAX);
    SAMPLE_EXPECT(Everything_get_uint16Field(e) == UINT16_MAX);
    SAMPLE_EXPECT(Everything_get_uint32Field(e) == UINT32_MAX);
    SAMPLE_EXPECT(Everything_get_uint64Field(e) == UINT64_MAX);
    SAMPLE_EXPECT(Everything_get_float32Field(e) == 1.5f);
    SAMPLE_EXPECT(Everything_get_float64Field(e) == -2.25e100);
    SAMPLE_TEXT(Everything_get_textField(e), "hello, \"world\"\n");
    cp_data d = Everything_get_dataField(e);
    SAMPLE_EXPECT(d.len == 4 && memcmp(d.ptr, "\x00\xff\x10\x20", 4) == 0);
    Inner_R in = Everything_get_structField(e);
    SAMPLE_EXPECT(Inner_get_id(in) == 17 && Inner_get_flag(in));
    SAMPLE_TEXT(Inner_get_name(in), "inner");
    SAMPLE_EXPECT(Everything_get_enumField(e) == Color_blue);

    static const bool bools[] = {true, false, false, true, true, false, true, false, true};
    cp_list_reader l = Everything_get_boolList(e);
    SAMPLE_EXPECT(l.len == 9);
    for (uint32_t i = 0; i < l.len && i < 9; i++)
        SAMPLE_EXPECT(cp_list_get_bool(l, i) == bools[i]);
    l = Everything_get_int8List(e);
    SAMPLE_EXPECT(l.len == 3 && cp_list_get_i8(l, 0) == -1 && cp_list_get_u8(l, 1) == 2 &&
                  (int8_t)cp_list_get_u8(l, 2) == -3);
    l = Everything_get_int16List(e);
    SAMPLE_EXPECT(l.len == 2 && cp_list_get_i16(l, 0) == -300 && cp_list_get_u16(l, 1) == 400);
    l = Everything_get_int32List(e);
    SAMPLE_EXPECT(l.len == 3 && cp_list_get_i32(l, 0) == -70000 && cp_list_get_u32(l, 1) == 80000 &&
                  cp_list_get_u32(l, 2) == 0);
    l = Everything_get_int64List(e);
    SAMPLE_EXPECT(l.len == 2 && cp_list_get_i64(l, 0) == -5000000000LL &&
                  cp_list_get_u64(l, 1) == 6000000000ULL);
    l = Everything_get_uint8List(e);
    SAMPLE_EXPECT(l.len == 3 && cp_list_get_u8(l, 2) == 254);
    l = Everything_get_uint16List(e);
    SAMPLE_EXPECT(l.len == 2 && cp_list_get_u16(l, 0) == 65000 && cp_list_get_u16(l, 1) == 1);
    l = Everything_get_uint32List(e);
    SAMPLE_EXPECT(l.len == 1 && cp_list_get_u32(l, 0) == 4000000000u);
    l = Everything_get_uint64List(e);
    SAMPLE_EXPECT(l.len == 3 && cp_list_get_u64(l, 0) == 10000000000000000000ULL &&
                  cp_list_get_u64(l, 2) == 1);
    l = Everything_get_float32List(e);
    SAMPLE_EXPECT(l.len == 2 && cp_list_get_f32(l, 0) == 0.5f && cp_list_get_f32(l, 1) == -1.25f);
    l = Everything_get_float64List(e);
    SAMPLE_EXPECT(l.len == 2 && cp_list_get_f64(l, 0) == 3.125 && cp_list_get_f64(l, 1) == -1e-300);
    l = Everything_get_textList(e);
    SAMPLE_EXPECT(l.len == 3);
    SAMPLE_TEXT(cp_list_get_text(l, 0), "one");
    SAMPLE_TEXT(cp_list_get_text(l, 1), "");
    SAMPLE_TEXT(cp_list_get_text(l, 2), "three");
    l = Everything_get_dataList(e);
    SAMPLE_EXPECT(l.len == 3 && cp_list_get_data(l, 0).len == 1 &&
                  cp_list_get_data(l, 1).len == 0 && cp_list_get_data(l, 2).len == 2 &&
                  cp_list_get_data(l, 2).ptr[1] == 3);
    Inner_LR sl = Everything_get_structList(e);
    SAMPLE_EXPECT(Inner_list_len(sl) == 3);
    SAMPLE_EXPECT(Inner_get_id(Inner_list_get(sl, 0)) == 1);
    SAMPLE_TEXT(Inner_get_name(Inner_list_get(sl, 0)), "a");
    SAMPLE_EXPECT(Inner_get_flag(Inner_list_get(sl, 1)) && !Inner_has_name(Inner_list_get(sl, 1)));
    SAMPLE_TEXT(Inner_get_name(Inner_list_get(sl, 2)), "c");
    l = Everything_get_enumList(e);
    SAMPLE_EXPECT(l.len == 3 && cp_list_get_u16(l, 0) == Color_green &&
                  cp_list_get_u16(l, 2) == Color_blue);
    SAMPLE_EXPECT(Everything_get_voidList(e).len == 4);
    l = Everything_get_listOfLists(e);
    SAMPLE_EXPECT(l.len == 3);
    cp_list_reader sub = cp_ptr_get_list(cp_list_get_ptr(l, 2), CP_ELEM_FOUR_BYTES, cp_ptr_null());
    SAMPLE_EXPECT(sub.len == 3 && cp_list_get_u32(sub, 2) == 5);
    sub = cp_ptr_get_list(cp_list_get_ptr(l, 1), CP_ELEM_FOUR_BYTES, cp_ptr_null());
    SAMPLE_EXPECT(sub.len == 0);
    l = Everything_get_listOfStructLists(e);
    Inner_LR s1 = Inner_list_read(cp_list_get_ptr(l, 1));
    SAMPLE_EXPECT(l.len == 2 && Inner_list_len(s1) == 2 &&
                  Inner_get_id(Inner_list_get(s1, 1)) == 21);
    SAMPLE_TEXT(Inner_get_name(Inner_list_get(s1, 1)), "x");
    SAMPLE_EXPECT(Everything_which(e) == Everything_WHICH_unionText);
    SAMPLE_TEXT(Everything_get_unionText(e), "in the union");
    Everything_group_R g = Everything_get_group(e);
    SAMPLE_EXPECT(Everything_group_get_x(g) == -99 && Everything_group_get_y(g) == 0.75f);
    Everything_group_inner_R gi = Everything_group_get_inner(g);
    SAMPLE_EXPECT(Everything_group_inner_which(gi) == Everything_group_inner_WHICH_right &&
                  Everything_group_inner_get_right(gi));
    SAMPLE_EXPECT(cp_message_ok(m));
#undef SAMPLE_TEXT
#undef SAMPLE_EXPECT
    return bad;
}

#endif
