/* capnpc-c: a plugin for the `capnp compile` tool that turns schemas into C
 * headers of typed inline accessors over the cp_ reader and builder API. It
 * reads the CodeGeneratorRequest on stdin with this library's own reader,
 * through the hand-written schema.capnp accessors below, and writes
 * <file>.capnp.h for each requested file into the current directory (capnp
 * runs plugins in the output directory). */
#include <stdarg.h>

#include "capnp.h"

/* ---- schema.capnp, by hand (offsets from `capnp compile -ocapnp`) -------- */

enum {
    NODE_FILE = 0,
    NODE_STRUCT = 1,
    NODE_ENUM = 2,
    NODE_INTERFACE = 3,
    NODE_CONST = 4,
    NODE_ANNOTATION = 5,
};

enum {
    T_VOID,
    T_BOOL,
    T_INT8,
    T_INT16,
    T_INT32,
    T_INT64,
    T_UINT8,
    T_UINT16,
    T_UINT32,
    T_UINT64,
    T_FLOAT32,
    T_FLOAT64,
    T_TEXT,
    T_DATA,
    T_LIST,
    T_ENUM,
    T_STRUCT,
    T_INTERFACE,
    T_ANYPOINTER,
};

static uint64_t node_id(cp_struct_reader n)
{
    return cp_get_u64(n, 0, 0);
}
static cp_text node_display_name(cp_struct_reader n)
{
    return cp_get_text(n, 0, NULL);
}
static uint16_t node_which(cp_struct_reader n)
{
    return cp_get_u16(n, 12, 0);
}
static uint64_t node_scope(cp_struct_reader n)
{
    return cp_get_u64(n, 16, 0);
}
static cp_list_reader node_nested(cp_struct_reader n)
{
    return cp_get_list(n, 1, CP_ELEM_COMPOSITE, cp_ptr_null());
}
static uint16_t struct_data_words(cp_struct_reader n)
{
    return cp_get_u16(n, 14, 0);
}
static uint16_t struct_ptr_words(cp_struct_reader n)
{
    return cp_get_u16(n, 24, 0);
}
static bool struct_is_group(cp_struct_reader n)
{
    return cp_get_bool(n, 224, false);
}
static uint16_t struct_disc_count(cp_struct_reader n)
{
    return cp_get_u16(n, 30, 0);
}
static uint32_t struct_disc_offset(cp_struct_reader n)
{
    return cp_get_u32(n, 32, 0);
}
/* fields, enumerants, methods; const type */
static uint16_t node_which(cp_struct_reader n);
static cp_list_reader node_members(cp_struct_reader n)
{
    uint16_t w = node_which(n);
    if (w != NODE_STRUCT && w != NODE_ENUM && w != NODE_INTERFACE)
        return cp_get_list(n, 7, CP_ELEM_COMPOSITE, cp_ptr_null()); /* slot 7: empty */
    return cp_get_list(n, 3, CP_ELEM_COMPOSITE, cp_ptr_null());
}
static cp_struct_reader const_type(cp_struct_reader n)
{
    return cp_get_struct(n, 3, cp_ptr_null());
}
static cp_struct_reader const_value(cp_struct_reader n)
{
    return cp_get_struct(n, 4, cp_ptr_null());
}

static cp_text member_name(cp_struct_reader f)
{
    return cp_get_text(f, 0, NULL);
}
static uint16_t field_disc_value(cp_struct_reader f)
{
    return cp_get_u16(f, 2, 0xffff);
}
static bool field_is_group(cp_struct_reader f)
{
    return cp_get_u16(f, 8, 0) == 1;
}
static uint32_t field_offset(cp_struct_reader f)
{
    return cp_get_u32(f, 4, 0);
}
static cp_struct_reader field_type(cp_struct_reader f)
{
    return cp_get_struct(f, 2, cp_ptr_null());
}
static cp_struct_reader field_default(cp_struct_reader f)
{
    return cp_get_struct(f, 3, cp_ptr_null());
}
static uint64_t field_group_id(cp_struct_reader f)
{
    return cp_get_u64(f, 16, 0);
}

static uint64_t method_param_id(cp_struct_reader m)
{
    return cp_get_u64(m, 8, 0);
}
static uint64_t method_result_id(cp_struct_reader m)
{
    return cp_get_u64(m, 16, 0);
}

static uint16_t type_which(cp_struct_reader t)
{
    return cp_get_u16(t, 0, 0);
}
static uint64_t type_id(cp_struct_reader t)
{
    return cp_get_u64(t, 8, 0);
}
/* anyPointer.unconstrained.capability, i.e. the `Capability` type. */
static bool type_is_capability(cp_struct_reader t)
{
    return cp_get_u16(t, 8, 0) == 0 && cp_get_u16(t, 10, 0) == 3;
}
static cp_struct_reader type_elem(cp_struct_reader t)
{
    return cp_get_struct(t, 0, cp_ptr_null());
}

/* ---- the node table ------------------------------------------------------ */

typedef struct node {
    uint64_t id;
    cp_struct_reader r;
    char *cname;      /* C name prefix, e.g. Outer_Inner */
    uint64_t file_id; /* the file the node belongs to, 0 until named */
} node;

typedef struct gen {
    cp_message msg;
    node *nodes;
    uint32_t nnodes;
    FILE *out;
    uint64_t file_id;
    bool failed;
} gen;

static int cmp_node(const void *a, const void *b)
{
    uint64_t x = ((const node *)a)->id, y = ((const node *)b)->id;
    return x < y ? -1 : x > y;
}

static node *find(gen *g, uint64_t id)
{
    node key = {.id = id};
    return bsearch(&key, g->nodes, g->nnodes, sizeof(node), cmp_node);
}

__attribute__((format(printf, 2, 3))) static void emit(gen *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(g->out, fmt, ap);
    va_end(ap);
}

static void name_node(gen *g, uint64_t id, const char *cname, uint64_t file_id);

/* Names a struct's groups and, for an interface, its implicit param/result
 * structs, then the nested nodes. */
static void name_children(gen *g, node *n, uint64_t file_id)
{
    cp_list_reader nested = node_nested(n->r);
    for (uint32_t i = 0; i < nested.len; i++) {
        cp_struct_reader nn = cp_list_get_struct(nested, i);
        _cleanup_free_ char *c = n->cname[0]
                                     ? gr_asprintf("%s_%s", n->cname, cp_get_text(nn, 0, NULL).str)
                                     : gr_strdup(cp_get_text(nn, 0, NULL).str);
        name_node(g, cp_get_u64(nn, 0, 0), c, file_id);
    }
    uint16_t w = node_which(n->r);
    cp_list_reader members = node_members(n->r);
    if (w == NODE_STRUCT) {
        for (uint32_t i = 0; i < members.len; i++) {
            cp_struct_reader f = cp_list_get_struct(members, i);
            if (!field_is_group(f))
                continue;
            _cleanup_free_ char *c = gr_asprintf("%s_%s", n->cname, member_name(f).str);
            name_node(g, field_group_id(f), c, file_id);
        }
    } else if (w == NODE_INTERFACE) {
        for (uint32_t i = 0; i < members.len; i++) {
            cp_struct_reader m = cp_list_get_struct(members, i);
            const char *mn = member_name(m).str;
            node *p = find(g, method_param_id(m));
            if (p && p->cname == NULL && node_scope(p->r) == 0) {
                _cleanup_free_ char *c = gr_asprintf("%s_%s_Params", n->cname, mn);
                name_node(g, p->id, c, file_id);
            }
            node *r = find(g, method_result_id(m));
            if (r && r->cname == NULL && node_scope(r->r) == 0) {
                _cleanup_free_ char *c = gr_asprintf("%s_%s_Results", n->cname, mn);
                name_node(g, r->id, c, file_id);
            }
        }
    }
}

static void name_node(gen *g, uint64_t id, const char *cname, uint64_t file_id)
{
    node *n = find(g, id);
    if (n == NULL || n->cname != NULL)
        return;
    n->cname = gr_strdup(cname);
    n->file_id = file_id;
    name_children(g, n, file_id);
}

/* Nodes of file fid in a stable order (table order is by id; we want
 * declaration order, so walk the tree). */
typedef struct nodelist {
    node **v;
    uint32_t n, cap;
} nodelist;

static void push(nodelist *l, node *n)
{
    for (uint32_t i = 0; i < l->n; i++)
        if (l->v[i] == n)
            return;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 32;
        l->v = gr_realloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = n;
}

/* ---- helpers for emitting ------------------------------------------------ */

static void emit_c_string(gen *g, const char *s, size_t len)
{
    emit(g, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            emit(g, "\\%c", c);
        else if (c >= 0x20 && c < 0x7f && c != '?')
            emit(g, "%c", c);
        else
            emit(g, "\\%03o", c);
    }
    emit(g, "\"");
}

/* The C type and cp_ accessor suffix of a primitive type. */
static bool primitive(uint16_t t, const char **ctype, const char **suffix, unsigned *bytes)
{
    static const struct {
        const char *ctype, *suffix;
        unsigned bytes;
    } tab[] = {
        [T_INT8] = {"int8_t", "i8", 1},      [T_INT16] = {"int16_t", "i16", 2},
        [T_INT32] = {"int32_t", "i32", 4},   [T_INT64] = {"int64_t", "i64", 8},
        [T_UINT8] = {"uint8_t", "u8", 1},    [T_UINT16] = {"uint16_t", "u16", 2},
        [T_UINT32] = {"uint32_t", "u32", 4}, [T_UINT64] = {"uint64_t", "u64", 8},
        [T_FLOAT32] = {"float", "u32", 4},   [T_FLOAT64] = {"double", "u64", 8},
    };
    if (t < T_INT8 || t > T_FLOAT64)
        return false;
    *ctype = tab[t].ctype;
    *suffix = tab[t].suffix;
    *bytes = tab[t].bytes;
    return true;
}

/* The raw bits of a primitive default value of type t. */
static uint64_t value_bits(cp_struct_reader v, uint16_t t)
{
    switch (t) {
    case T_BOOL:
        return cp_get_bool(v, 16, false);
    case T_INT8:
    case T_UINT8:
        return cp_get_u8(v, 2, 0);
    case T_INT16:
    case T_UINT16:
    case T_ENUM:
        return cp_get_u16(v, 2, 0);
    case T_INT32:
    case T_UINT32:
    case T_FLOAT32:
        return cp_get_u32(v, 4, 0);
    case T_INT64:
    case T_UINT64:
    case T_FLOAT64:
        return cp_get_u64(v, 8, 0);
    default:
        return 0;
    }
}

static cp_elem_size elem_size_of(cp_struct_reader t)
{
    switch (type_which(t)) {
    case T_VOID:
        return CP_ELEM_VOID;
    case T_BOOL:
        return CP_ELEM_BIT;
    case T_INT8:
    case T_UINT8:
        return CP_ELEM_BYTE;
    case T_INT16:
    case T_UINT16:
    case T_ENUM:
        return CP_ELEM_TWO_BYTES;
    case T_INT32:
    case T_UINT32:
    case T_FLOAT32:
        return CP_ELEM_FOUR_BYTES;
    case T_INT64:
    case T_UINT64:
    case T_FLOAT64:
        return CP_ELEM_EIGHT_BYTES;
    case T_STRUCT:
        return CP_ELEM_COMPOSITE;
    default:
        return CP_ELEM_POINTER;
    }
}

static const char *const elem_names[] = {
    "CP_ELEM_VOID",       "CP_ELEM_BIT",         "CP_ELEM_BYTE",    "CP_ELEM_TWO_BYTES",
    "CP_ELEM_FOUR_BYTES", "CP_ELEM_EIGHT_BYTES", "CP_ELEM_POINTER", "CP_ELEM_COMPOSITE",
};

static const char *type_cname(gen *g, uint64_t id)
{
    node *n = find(g, id);
    if (n == NULL || n->cname == NULL) {
        fprintf(stderr, "capnpc-c: unknown type id 0x%016llx\n", (unsigned long long)id);
        g->failed = true;
        return "cp_unknown";
    }
    return n->cname;
}

/* Emits `static const uint64_t <name>[]` holding the default/constant pointer
 * p as a root pointer followed by its target; returns the word count. */
static uint32_t emit_words(gen *g, const char *name, cp_ptr_reader p)
{
    cp_message m;
    cp_message_init(&m, 1u << 20);
    cp_ptr_set_copy(cp_message_root_builder(&m), p);
    if (m.nsegs != 1) {
        fprintf(stderr, "capnpc-c: %s: value too large\n", name);
        g->failed = true;
    }
    uint32_t n = m.segs[0].len;
    emit(g, "static const uint64_t %s[%u] __attribute__((unused)) = {", name, n);
    for (uint32_t i = 0; i < n; i++)
        emit(g, "%sUINT64_C(0x%016llx)",
             i == 0  ? "\n    "
             : i % 3 ? ", "
                     : ",\n    ",
             (unsigned long long)m.segs[0].words[i]);
    emit(g, "\n};\n");
    cp_message_release(&m);
    return n;
}

/* ---- per-node emitters --------------------------------------------------- */

static void emit_enum(gen *g, node *n)
{
    cp_list_reader es = node_members(n->r);
    emit(g, "typedef enum %s {\n", n->cname);
    for (uint32_t i = 0; i < es.len; i++)
        emit(g, "    %s_%s = %u,\n", n->cname, member_name(cp_list_get_struct(es, i)).str, i);
    emit(g, "} %s;\n#define %s_TYPE_ID UINT64_C(0x%016llx)\n\n", n->cname, n->cname,
         (unsigned long long)n->id);
}

/* The annotation `id` on enumerant e, or false. */
static bool enumerant_annotation(cp_struct_reader e, uint64_t id, cp_struct_reader *value)
{
    cp_list_reader as = cp_get_list(e, 1, CP_ELEM_COMPOSITE, cp_ptr_null());
    for (uint32_t i = 0; i < as.len; i++) {
        cp_struct_reader a = cp_list_get_struct(as, i);
        if (cp_get_u64(a, 0, 0) == id) {
            *value = cp_get_struct(a, 0, cp_ptr_null());
            return true;
        }
    }
    return false;
}

/* For each annotation placed on the enum's enumerants (as Sandstorm's
 * httpStatus is), `Enum_has_anno(v)` and, for primitive, text and struct
 * values, `Enum_anno(v)` giving the value (its type's zero when absent). */
static void emit_enum_annotations(gen *g, node *n)
{
    const char *c = n->cname;
    cp_list_reader es = node_members(n->r);
    nodelist seen = {0};
    for (uint32_t i = 0; i < es.len; i++) {
        cp_list_reader as =
            cp_get_list(cp_list_get_struct(es, i), 1, CP_ELEM_COMPOSITE, cp_ptr_null());
        for (uint32_t j = 0; j < as.len; j++) {
            node *an = find(g, cp_get_u64(cp_list_get_struct(as, j), 0, 0));
            if (an && an->cname && node_which(an->r) == NODE_ANNOTATION)
                push(&seen, an);
        }
    }
    for (uint32_t k = 0; k < seen.n; k++) {
        node *an = seen.v[k];
        const char *a = an->cname;
        cp_struct_reader at = cp_get_struct(an->r, 3, cp_ptr_null());
        uint16_t tw = type_which(at);
        cp_struct_reader v;
        emit(g, "static inline bool %s_has_%s(%s v)\n{\n    switch (v) {\n", c, a, c);
        for (uint32_t i = 0; i < es.len; i++) {
            cp_struct_reader e = cp_list_get_struct(es, i);
            if (enumerant_annotation(e, an->id, &v))
                emit(g, "    case %s_%s:\n", c, member_name(e).str);
        }
        emit(g, "        return true;\n    default:\n        return false;\n    }\n}\n");
        const char *ctype = NULL, *suffix = NULL;
        unsigned bytes = 0;
        bool prim = primitive(tw, &ctype, &suffix, &bytes) && tw != T_FLOAT32 && tw != T_FLOAT64;
        if (tw == T_STRUCT) {
            for (uint32_t i = 0; i < es.len; i++) {
                cp_struct_reader e = cp_list_get_struct(es, i);
                if (!enumerant_annotation(e, an->id, &v))
                    continue;
                _cleanup_free_ char *arr = gr_asprintf("%s__%s_%s", c, a, member_name(e).str);
                emit_words(g, arr, cp_get_ptr(v, 0));
            }
        }
        if (!prim && tw != T_BOOL && tw != T_ENUM && tw != T_TEXT && tw != T_STRUCT)
            continue;
        const char *rtype = tw == T_BOOL   ? "bool"
                            : tw == T_ENUM ? type_cname(g, type_id(at))
                            : tw == T_TEXT ? "cp_text"
                                           : ctype;
        _cleanup_free_ char *st =
            tw == T_STRUCT ? gr_asprintf("%s_R", type_cname(g, type_id(at))) : NULL;
        emit(g, "static inline %s %s_%s(%s v)\n{\n    switch (v) {\n", st ? st : rtype, c, a, c);
        for (uint32_t i = 0; i < es.len; i++) {
            cp_struct_reader e = cp_list_get_struct(es, i);
            if (!enumerant_annotation(e, an->id, &v))
                continue;
            const char *en = member_name(e).str;
            emit(g, "    case %s_%s: {\n", c, en);
            if (tw == T_STRUCT) {
                _cleanup_free_ char *arr = gr_asprintf("%s__%s_%s", c, a, en);
                emit(g,
                     "        %s x = {cp_ptr_get_struct(cp_const_ptr(%s, sizeof(%s) / 8), "
                     "cp_ptr_null())};\n        return x;\n",
                     st, arr, arr);
            } else if (tw == T_TEXT) {
                cp_text t = cp_get_text(v, 0, NULL);
                emit(g, "        cp_text x = {");
                emit_c_string(g, t.str, t.len);
                emit(g, ", %zu};\n        return x;\n", t.len);
            } else if (tw == T_BOOL) {
                emit(g, "        return %s;\n", value_bits(v, T_BOOL) ? "true" : "false");
            } else {
                emit(g, "        return (%s)UINT64_C(0x%llx);\n", rtype,
                     (unsigned long long)value_bits(v, tw));
            }
            emit(g, "    }\n");
        }
        emit(g, "    default: {\n");
        if (tw == T_STRUCT)
            emit(g, "        %s x = {cp_struct_reader_empty()};\n        return x;\n", st);
        else if (tw == T_TEXT)
            emit(g, "        cp_text x = {\"\", 0};\n        return x;\n");
        else
            emit(g, "        return (%s)0;\n", rtype);
        emit(g, "    }\n    }\n}\n");
    }
    free(seen.v);
    if (seen.n)
        emit(g, "\n");
}

static void emit_struct_types(gen *g, node *n)
{
    const char *c = n->cname;
    emit(g, "typedef struct %s_R { cp_struct_reader s; } %s_R;\n", c, c);
    emit(g, "typedef struct %s_B { cp_struct_builder s; } %s_B;\n", c, c);
    if (!struct_is_group(n->r)) {
        emit(g, "typedef struct %s_LR { cp_list_reader l; } %s_LR;\n", c, c);
        emit(g, "typedef struct %s_LB { cp_list_builder l; } %s_LB;\n", c, c);
    }
}

/* Writes into *disc the statement that sets f's union discriminant (or ""). */
static char *disc_stmt(node *n, cp_struct_reader f)
{
    uint16_t dv = field_disc_value(f);
    if (dv == 0xffff)
        return gr_strdup("");
    return gr_asprintf("cp_set_u16(b.s, %u, %u, 0); ", struct_disc_offset(n->r) * 2, dv);
}

static void emit_pointer_default(gen *g, const char *owner, const char *fname, cp_struct_reader dv,
                                 char **def_expr)
{
    cp_ptr_reader p = cp_get_ptr(dv, 0);
    if (cp_ptr_get_kind(p) == CP_PTR_NULL) {
        *def_expr = gr_strdup("cp_ptr_null()");
        return;
    }
    _cleanup_free_ char *arr = gr_asprintf("%s__default_%s", owner, fname);
    uint32_t nw = emit_words(g, arr, p);
    *def_expr = gr_asprintf("cp_const_ptr(%s, %u)", arr, nw);
}

static void emit_field(gen *g, node *n, cp_struct_reader f)
{
    const char *c = n->cname;
    const char *fname = member_name(f).str;
    _cleanup_free_ char *disc = disc_stmt(n, f);

    if (field_is_group(f)) {
        const char *gt = type_cname(g, field_group_id(f));
        emit(g, "static inline %s_R %s_get_%s(%s_R r) { %s_R x = {r.s}; return x; }\n", gt, c,
             fname, c, gt);
        emit(g,
             "/* Selects the group (in a union) and returns it; its fields keep their "
             "values. */\n"
             "static inline %s_B %s_init_%s(%s_B b) { %s%s_B x = {b.s}; return x; }\n",
             gt, c, fname, c, disc, gt);
        return;
    }
    cp_struct_reader t = field_type(f);
    cp_struct_reader dv = field_default(f);
    uint16_t tw = type_which(t);
    uint32_t off = field_offset(f);
    const char *ctype = NULL, *suffix = NULL;
    unsigned bytes = 0;

    if (tw == T_VOID) {
        if (disc[0])
            emit(g, "static inline void %s_set_%s(%s_B b) { %s}\n", c, fname, c, disc);
        return;
    }
    if (tw == T_BOOL) {
        const char *d = value_bits(dv, T_BOOL) ? "true" : "false";
        emit(g, "static inline bool %s_get_%s(%s_R r) { return cp_get_bool(r.s, %u, %s); }\n", c,
             fname, c, off, d);
        emit(g, "static inline void %s_set_%s(%s_B b, bool v) { %scp_set_bool(b.s, %u, v, %s); }\n",
             c, fname, c, disc, off, d);
        return;
    }
    if (tw == T_FLOAT32 || tw == T_FLOAT64) {
        bool f32 = tw == T_FLOAT32;
        const char *ft = f32 ? "float" : "double", *ut = f32 ? "uint32_t" : "uint64_t";
        const char *sx = f32 ? "u32" : "u64";
        unsigned sz = f32 ? 4 : 8;
        unsigned long long d = (unsigned long long)value_bits(dv, tw);
        emit(g,
             "static inline %s %s_get_%s(%s_R r) { %s u = cp_get_%s(r.s, %u, UINT64_C(0x%llx)); "
             "%s v; memcpy(&v, &u, %u); return v; }\n",
             ft, c, fname, c, ut, sx, off * sz, d, ft, sz);
        emit(g,
             "static inline void %s_set_%s(%s_B b, %s v) { %s%s u; memcpy(&u, &v, %u); "
             "cp_set_%s(b.s, %u, u, UINT64_C(0x%llx)); }\n",
             c, fname, c, ft, disc, ut, sz, sx, off * sz, d);
        return;
    }
    if (primitive(tw, &ctype, &suffix, &bytes)) {
        unsigned long long d = (unsigned long long)value_bits(dv, tw);
        emit(g,
             "static inline %s %s_get_%s(%s_R r) { return cp_get_%s(r.s, %u, "
             "(%s)UINT64_C(0x%llx)); }\n",
             ctype, c, fname, c, suffix, off * bytes, ctype, d);
        emit(g,
             "static inline void %s_set_%s(%s_B b, %s v) { %scp_set_%s(b.s, %u, v, "
             "(%s)UINT64_C(0x%llx)); }\n",
             c, fname, c, ctype, disc, suffix, off * bytes, ctype, d);
        return;
    }
    if (tw == T_ENUM) {
        const char *et = type_cname(g, type_id(t));
        unsigned d = (unsigned)value_bits(dv, T_ENUM);
        emit(g, "static inline %s %s_get_%s(%s_R r) { return (%s)cp_get_u16(r.s, %u, %u); }\n", et,
             c, fname, c, et, off * 2, d);
        emit(g,
             "static inline void %s_set_%s(%s_B b, %s v) { %scp_set_u16(b.s, %u, (uint16_t)v, "
             "%u); }\n",
             c, fname, c, et, disc, off * 2, d);
        return;
    }

    /* Pointer fields. */
    emit(g, "static inline bool %s_has_%s(%s_R r) { return cp_has_ptr(r.s, %u); }\n", c, fname, c,
         off);
    emit(g,
         "static inline cp_ptr_builder %s_ptr_%s(%s_B b) { %sreturn cp_builder_ptr(b.s, %u); }\n",
         c, fname, c, disc, off);
    switch (tw) {
    case T_TEXT: {
        cp_text d = cp_get_text(dv, 0, NULL);
        emit(g, "static inline cp_text %s_get_%s(%s_R r) { return cp_get_text(r.s, %u, ", c, fname,
             c, off);
        if (cp_has_ptr(dv, 0))
            emit_c_string(g, d.str, d.len);
        else
            emit(g, "NULL");
        emit(g, "); }\n");
        emit(g,
             "static inline void %s_set_%s(%s_B b, const char *s, size_t len) { %scp_set_text(b.s, "
             "%u, s, len); }\n",
             c, fname, c, disc, off);
        return;
    }
    case T_DATA: {
        cp_data d = cp_get_data(dv, 0, NULL, 0);
        emit(g, "static inline cp_data %s_get_%s(%s_R r) { return cp_get_data(r.s, %u, ", c, fname,
             c, off);
        if (cp_has_ptr(dv, 0)) {
            emit_c_string(g, (const char *)d.ptr, d.len);
            emit(g, ", %zu", d.len);
        } else {
            emit(g, "NULL, 0");
        }
        emit(g, "); }\n");
        emit(g,
             "static inline void %s_set_%s(%s_B b, const void *d, size_t len) { %scp_set_data(b.s, "
             "%u, d, len); }\n",
             c, fname, c, disc, off);
        return;
    }
    case T_STRUCT: {
        const char *st = type_cname(g, type_id(t));
        _cleanup_free_ char *def = NULL;
        emit_pointer_default(g, c, fname, dv, &def);
        emit(g,
             "static inline %s_R %s_get_%s(%s_R r) { %s_R x = {cp_get_struct(r.s, %u, %s)}; return "
             "x; }\n",
             st, c, fname, c, st, off, def);
        emit(g,
             "static inline %s_B %s_init_%s(%s_B b) { %s%s_B x = {cp_init_struct(b.s, %u, "
             "%s_DATA_WORDS, %s_PTR_WORDS)}; return x; }\n",
             st, c, fname, c, disc, st, off, st, st);
        return;
    }
    case T_LIST: {
        cp_struct_reader et = type_elem(t);
        cp_elem_size es = elem_size_of(et);
        _cleanup_free_ char *def = NULL;
        emit_pointer_default(g, c, fname, dv, &def);
        if (es == CP_ELEM_COMPOSITE) {
            const char *st = type_cname(g, type_id(et));
            emit(g,
                 "static inline %s_LR %s_get_%s(%s_R r) { %s_LR x = {cp_get_list(r.s, %u, "
                 "CP_ELEM_COMPOSITE, %s)}; return x; }\n",
                 st, c, fname, c, st, off, def);
            emit(g,
                 "static inline %s_LB %s_init_%s(%s_B b, uint32_t n) { %s%s_LB x = "
                 "{cp_init_struct_list(b.s, %u, n, %s_DATA_WORDS, %s_PTR_WORDS)}; return x; }\n",
                 st, c, fname, c, disc, st, off, st, st);
        } else {
            emit(g,
                 "static inline cp_list_reader %s_get_%s(%s_R r) { return cp_get_list(r.s, %u, %s, "
                 "%s); }\n",
                 c, fname, c, off, elem_names[es], def);
            emit(g,
                 "static inline cp_list_builder %s_init_%s(%s_B b, uint32_t n) { %sreturn "
                 "cp_init_list(b.s, %u, %s, n); }\n",
                 c, fname, c, disc, off, elem_names[es]);
        }
        return;
    }
    case T_ANYPOINTER:
        if (!type_is_capability(t))
            goto any;
        /* `Capability` is a capability of unknown interface. */
        __attribute__((fallthrough));
    case T_INTERFACE:
        /* As capabilities of the RPC layer, and as raw cap-table indexes. */
        emit(g, "static inline cp_cap *%s_get_%s(%s_R r) { return cp_get_capability(r.s, %u); }\n",
             c, fname, c, off);
        emit(g,
             "static inline void %s_set_%s(%s_B b, cp_cap *cap) { %scp_set_capability(b.s, %u, "
             "cap); }\n",
             c, fname, c, disc, off);
        emit(g, "static inline uint32_t %s_get_%s_index(%s_R r) { return cp_get_cap(r.s, %u); }\n",
             c, fname, c, off);
        emit(g,
             "static inline void %s_set_%s_index(%s_B b, uint32_t cap) { %scp_set_cap(b.s, %u, "
             "cap); }\n",
             c, fname, c, disc, off);
        return;
    default:
    any: /* AnyPointer, AnyStruct, AnyList and generic parameters */
        emit(g, "static inline cp_ptr_reader %s_get_%s(%s_R r) { return cp_get_ptr(r.s, %u); }\n",
             c, fname, c, off);
        return;
    }
}

static void emit_struct_funcs(gen *g, node *n)
{
    const char *c = n->cname;
    cp_struct_reader r = n->r;
    emit(g, "/* %s */\n", node_display_name(r).str);
    if (!struct_is_group(r)) {
        emit(g, "#define %s_TYPE_ID UINT64_C(0x%016llx)\n", c, (unsigned long long)n->id);
        emit(g,
             "static inline %s_R %s_read(cp_ptr_reader p) { %s_R x = {cp_ptr_get_struct(p, "
             "cp_ptr_null())}; return x; }\n",
             c, c, c);
        emit(g,
             "static inline %s_R %s_root(cp_message *m) { %s_R x = {cp_message_root(m)}; return x; "
             "}\n",
             c, c, c);
        emit(g,
             "static inline %s_B %s_init_root(cp_message *m) { %s_B x = {cp_message_init_root(m, "
             "%u, %u)}; return x; }\n",
             c, c, c, struct_data_words(r), struct_ptr_words(r));
        emit(g,
             "static inline %s_B %s_init(cp_ptr_builder p) { %s_B x = {cp_ptr_init_struct(p, %u, "
             "%u)}; return x; }\n",
             c, c, c, struct_data_words(r), struct_ptr_words(r));
        emit(g,
             "static inline uint32_t %s_list_len(%s_LR l) { return l.l.len; }\n"
             "static inline %s_R %s_list_get(%s_LR l, uint32_t i) { %s_R x = "
             "{cp_list_get_struct(l.l, i)}; return x; }\n"
             "static inline %s_LR %s_list_read(cp_ptr_reader p) { %s_LR x = "
             "{cp_ptr_get_list(p, CP_ELEM_COMPOSITE, cp_ptr_null())}; return x; }\n"
             "static inline %s_B %s_list_at(%s_LB l, uint32_t i) { %s_B x = "
             "{cp_list_struct_at(l.l, i)}; return x; }\n"
             "static inline %s_LB %s_list_init(cp_ptr_builder p, uint32_t n) { %s_LB x = "
             "{cp_ptr_init_struct_list(p, n, %u, %u)}; return x; }\n",
             c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, c, struct_data_words(r),
             struct_ptr_words(r));
    }
    emit(g,
         "static inline %s_R %s_as_reader(%s_B b) { %s_R x = {cp_struct_builder_as_reader(b.s)}; "
         "return x; }\n",
         c, c, c, c);
    cp_list_reader fields = node_members(r);
    if (struct_disc_count(r) > 0) {
        emit(g, "enum {\n");
        for (uint32_t i = 0; i < fields.len; i++) {
            cp_struct_reader f = cp_list_get_struct(fields, i);
            if (field_disc_value(f) != 0xffff)
                emit(g, "    %s_WHICH_%s = %u,\n", c, member_name(f).str, field_disc_value(f));
        }
        emit(g, "};\n");
        emit(g, "static inline uint16_t %s_which(%s_R r) { return cp_get_u16(r.s, %u, 0); }\n", c,
             c, struct_disc_offset(r) * 2);
    }
    for (uint32_t i = 0; i < fields.len; i++)
        emit_field(g, n, cp_list_get_struct(fields, i));
    emit(g, "\n");
}

/* Client call helpers and a server dispatch table over the RPC layer
 * (rpc.h, which capnp.h includes). */
static void emit_rpc_helpers(gen *g, node *n, cp_list_reader ms)
{
    const char *c = n->cname;
    for (uint32_t i = 0; i < ms.len; i++) {
        cp_struct_reader m = cp_list_get_struct(ms, i);
        const char *mn = member_name(m).str;
        const char *pt = type_cname(g, method_param_id(m));
        const char *rt = type_cname(g, method_result_id(m));
        emit(g,
             "/* Starts a call of %s.%s on target: fill *params, then cp_request_send. */\n"
             "static inline cp_request *%s_%s_request(cp_cap *target, %s_B *params) { cp_request "
             "*req = cp_request_new(target, %s_TYPE_ID, %s_%s_METHOD_ID); %s_B p = "
             "{cp_request_params(req, %s_DATA_WORDS, %s_PTR_WORDS)}; *params = p; return req; }\n",
             c, mn, c, mn, pt, c, c, mn, pt, pt, pt);
        emit(g,
             "static inline %s_R %s_%s_response(const cp_response *resp) { %s_R x = "
             "{resp->results}; return x; }\n",
             rt, c, mn, rt);
        emit(g,
             "static inline %s_B %s_%s_results(cp_call *call) { %s_B x = {cp_call_results(call, "
             "%s_DATA_WORDS, %s_PTR_WORDS)}; return x; }\n",
             rt, c, mn, rt, rt, rt);
    }
    emit(g, "/* A server's implementations of %s's methods (NULL: unimplemented). */\n", c);
    emit(g, "typedef struct %s_methods {\n", c);
    for (uint32_t i = 0; i < ms.len; i++) {
        cp_struct_reader m = cp_list_get_struct(ms, i);
        emit(g, "    void (*%s)(cp_server *self, cp_call *call, %s_R params);\n",
             member_name(m).str, type_cname(g, method_param_id(m)));
    }
    if (ms.len == 0)
        emit(g, "    void (*unused_)(void);\n");
    emit(g, "} %s_methods;\n", c);
    emit(g,
         "/* Hands a call of one of %s's methods to m and returns true; returns false,\n"
         " * leaving the call alone, for another interface (try superclasses next) or\n"
         " * a method m lacks. */\n"
         "static inline bool %s_dispatch(const %s_methods *m, cp_server *self, cp_call *call, "
         "uint64_t interface_id, uint16_t method_id)\n{\n"
         "    if (interface_id != %s_TYPE_ID)\n        return false;\n"
         "    switch (method_id) {\n",
         c, c, c, c);
    for (uint32_t i = 0; i < ms.len; i++) {
        cp_struct_reader m = cp_list_get_struct(ms, i);
        const char *mn = member_name(m).str;
        const char *pt = type_cname(g, method_param_id(m));
        emit(g,
             "    case %s_%s_METHOD_ID:\n        if (m->%s == NULL)\n            return false;\n"
             "        { %s_R p = {cp_call_params(call)}; (m->%s)(self, call, p); }\n"
             "        return true;\n",
             c, mn, mn, pt, mn);
    }
    emit(g, "    default:\n        (void)m;\n        (void)self;\n        (void)call;\n"
            "        return false;\n    }\n}\n");
}

static void emit_interface(gen *g, node *n)
{
    const char *c = n->cname;
    cp_list_reader ms = node_members(n->r);
    emit(g, "/* %s */\n#define %s_TYPE_ID UINT64_C(0x%016llx)\n", node_display_name(n->r).str, c,
         (unsigned long long)n->id);
    emit(g, "#define %s_METHOD_COUNT %u\n", c, ms.len);
    cp_list_reader sup = cp_get_list(n->r, 4, CP_ELEM_COMPOSITE, cp_ptr_null());
    emit(g, "#define %s_SUPERCLASS_COUNT %u\n", c, sup.len);
    emit(g, "static const uint64_t %s_SUPERCLASS_IDS[%u] __attribute__((unused)) = {", c,
         sup.len ? sup.len : 1);
    for (uint32_t i = 0; i < sup.len; i++)
        emit(g, "%sUINT64_C(0x%016llx)", i ? ", " : "",
             (unsigned long long)cp_get_u64(cp_list_get_struct(sup, i), 0, 0));
    emit(g, "%s};\n", sup.len ? "" : "0");
    if (ms.len > 0) {
        emit(g, "enum {\n");
        for (uint32_t i = 0; i < ms.len; i++)
            emit(g, "    %s_%s_METHOD_ID = %u,\n", c, member_name(cp_list_get_struct(ms, i)).str,
                 i);
        emit(g, "};\n");
    }
    emit(g, "static const char *const %s_METHOD_NAMES[%u] __attribute__((unused)) = {", c,
         ms.len ? ms.len : 1);
    for (uint32_t i = 0; i < ms.len; i++)
        emit(g, "%s\"%s\"", i ? ", " : "", member_name(cp_list_get_struct(ms, i)).str);
    if (ms.len == 0)
        emit(g, "NULL");
    emit(g, "};\n");
    for (uint32_t i = 0; i < ms.len; i++) {
        cp_struct_reader m = cp_list_get_struct(ms, i);
        const char *mn = member_name(m).str;
        const char *pt = type_cname(g, method_param_id(m));
        const char *rt = type_cname(g, method_result_id(m));
        emit(g, "typedef %s_R %s_%s_params_R;\ntypedef %s_B %s_%s_params_B;\n", pt, c, mn, pt, c,
             mn);
        emit(g, "typedef %s_R %s_%s_results_R;\ntypedef %s_B %s_%s_results_B;\n", rt, c, mn, rt, c,
             mn);
    }
    emit_rpc_helpers(g, n, ms);
    emit(g, "\n");
}

static void emit_const(gen *g, node *n)
{
    const char *c = n->cname;
    cp_struct_reader t = const_type(n->r);
    cp_struct_reader v = const_value(n->r);
    uint16_t tw = type_which(t);
    const char *ctype = NULL, *suffix = NULL;
    unsigned bytes = 0;
    emit(g, "/* %s */\n", node_display_name(n->r).str);
    if (tw == T_BOOL) {
        emit(g, "#define %s %s\n", c, value_bits(v, T_BOOL) ? "true" : "false");
    } else if (tw == T_FLOAT32 || tw == T_FLOAT64) {
        uint64_t bits = value_bits(v, tw);
        if (tw == T_FLOAT32) {
            float f;
            uint32_t b32 = (uint32_t)bits;
            memcpy(&f, &b32, 4);
            emit(g, "#define %s ((float)%a)\n", c, (double)f);
        } else {
            double d;
            memcpy(&d, &bits, 8);
            emit(g, "#define %s ((double)%a)\n", c, d);
        }
    } else if (primitive(tw, &ctype, &suffix, &bytes)) {
        emit(g, "#define %s ((%s)UINT64_C(0x%llx))\n", c, ctype,
             (unsigned long long)value_bits(v, tw));
    } else if (tw == T_ENUM) {
        emit(g, "#define %s ((%s)%u)\n", c, type_cname(g, type_id(t)), (unsigned)value_bits(v, tw));
    } else if (tw == T_TEXT) {
        cp_text s = cp_get_text(v, 0, NULL);
        emit(g, "#define %s ", c);
        emit_c_string(g, s.str, s.len);
        emit(g, "\n");
    } else if (tw == T_DATA) {
        cp_data d = cp_get_data(v, 0, NULL, 0);
        emit(g, "#define %s ", c);
        emit_c_string(g, (const char *)d.ptr, d.len);
        emit(g, "\n#define %s_LEN %zu\n", c, d.len);
    } else if (tw == T_STRUCT || tw == T_LIST || tw == T_ANYPOINTER) {
        _cleanup_free_ char *arr = gr_asprintf("%s__words", c);
        uint32_t nw = emit_words(g, arr, cp_get_ptr(v, 0));
        if (tw == T_STRUCT) {
            const char *st = type_cname(g, type_id(t));
            emit(g,
                 "static inline %s_R %s_get(void) { %s_R x = {cp_ptr_get_struct(cp_const_ptr(%s, "
                 "%u), cp_ptr_null())}; return x; }\n",
                 st, c, st, arr, nw);
        } else if (tw == T_LIST) {
            cp_struct_reader et = type_elem(t);
            cp_elem_size es = elem_size_of(et);
            if (es == CP_ELEM_COMPOSITE) {
                const char *st = type_cname(g, type_id(et));
                emit(g,
                     "static inline %s_LR %s_get(void) { %s_LR x = "
                     "{cp_ptr_get_list(cp_const_ptr(%s, %u), CP_ELEM_COMPOSITE, cp_ptr_null())}; "
                     "return x; }\n",
                     st, c, st, arr, nw);
            } else {
                emit(g,
                     "static inline cp_list_reader %s_get(void) { return "
                     "cp_ptr_get_list(cp_const_ptr(%s, %u), %s, cp_ptr_null()); }\n",
                     c, arr, nw, elem_names[es]);
            }
        } else {
            emit(g, "static inline cp_ptr_reader %s_get(void) { return cp_const_ptr(%s, %u); }\n",
                 c, arr, nw);
        }
    }
    emit(g, "\n");
}

/* ---- per-file driver ----------------------------------------------------- */

static void collect(gen *g, node *n, nodelist *out)
{
    push(out, n);
    cp_list_reader nested = node_nested(n->r);
    for (uint32_t i = 0; i < nested.len; i++) {
        node *c = find(g, cp_get_u64(cp_list_get_struct(nested, i), 0, 0));
        if (c && c->file_id == n->file_id)
            collect(g, c, out);
    }
    cp_list_reader members = node_members(n->r);
    uint16_t w = node_which(n->r);
    for (uint32_t i = 0; w == NODE_STRUCT && i < members.len; i++) {
        cp_struct_reader f = cp_list_get_struct(members, i);
        if (field_is_group(f)) {
            node *c = find(g, field_group_id(f));
            if (c)
                collect(g, c, out);
        }
    }
    for (uint32_t i = 0; w == NODE_INTERFACE && i < members.len; i++) {
        cp_struct_reader m = cp_list_get_struct(members, i);
        node *p = find(g, method_param_id(m)), *r = find(g, method_result_id(m));
        if (p && node_scope(p->r) == 0 && p->file_id == n->file_id)
            collect(g, p, out);
        if (r && node_scope(r->r) == 0 && r->file_id == n->file_id)
            collect(g, r, out);
    }
}

static void note_type_file(gen *g, cp_struct_reader t, uint64_t *files, uint32_t *nfiles)
{
    uint16_t w = type_which(t);
    if (w == T_LIST) {
        note_type_file(g, type_elem(t), files, nfiles);
        return;
    }
    if (w != T_STRUCT && w != T_ENUM && w != T_INTERFACE)
        return;
    node *n = find(g, type_id(t));
    if (n == NULL || n->file_id == g->file_id)
        return;
    for (uint32_t i = 0; i < *nfiles; i++)
        if (files[i] == n->file_id)
            return;
    files[(*nfiles)++] = n->file_id;
}

static void note_id_file(gen *g, uint64_t id, uint64_t *files, uint32_t *nfiles)
{
    node *n = find(g, id);
    if (n == NULL || n->file_id == g->file_id)
        return;
    for (uint32_t i = 0; i < *nfiles; i++)
        if (files[i] == n->file_id)
            return;
    files[(*nfiles)++] = n->file_id;
}

static const char *base_name(const char *path)
{
    const char *s = strrchr(path, '/');
    return s ? s + 1 : path;
}

static int generate_file(gen *g, uint64_t fid, const char *filename)
{
    node *file = find(g, fid);
    if (file == NULL) {
        fprintf(stderr, "capnpc-c: %s: file node missing\n", filename);
        return -1;
    }
    nodelist nodes = {0};
    collect(g, file, &nodes);
    g->file_id = fid;

    /* Files whose types this one uses. */
    uint64_t *files = gr_calloc(g->nnodes + 1, sizeof(*files));
    uint32_t nfiles = 0;
    for (uint32_t i = 0; i < nodes.n; i++) {
        node *n = nodes.v[i];
        uint16_t w = node_which(n->r);
        cp_list_reader ms = node_members(n->r);
        for (uint32_t j = 0; j < ms.len; j++) {
            cp_struct_reader m = cp_list_get_struct(ms, j);
            if (w == NODE_STRUCT && !field_is_group(m))
                note_type_file(g, field_type(m), files, &nfiles);
            if (w == NODE_INTERFACE) {
                note_id_file(g, method_param_id(m), files, &nfiles);
                note_id_file(g, method_result_id(m), files, &nfiles);
            }
        }
        if (w == NODE_CONST)
            note_type_file(g, const_type(n->r), files, &nfiles);
    }

    _cleanup_free_ char *outname = gr_asprintf("%s.h", base_name(filename));
    g->out = fopen(outname, "w");
    if (g->out == NULL) {
        fprintf(stderr, "capnpc-c: open %s: %s\n", outname, strerror(errno));
        free(files);
        free(nodes.v);
        return -1;
    }
    emit(g, "/* Generated by capnpc-c from %s: do not edit. */\n", filename);
    emit(g, "#ifndef CAPNPC_C_%016llX_H\n#define CAPNPC_C_%016llX_H\n\n", (unsigned long long)fid,
         (unsigned long long)fid);
    emit(g, "#include \"capnp.h\"\n");
    for (uint32_t i = 0; i < nfiles; i++) {
        node *f = find(g, files[i]);
        if (f)
            emit(g, "#include \"%s.h\"\n", base_name(node_display_name(f->r).str));
    }
    emit(g, "\n#define CAPNPC_C_FILE_%016llX_ID UINT64_C(0x%016llx)\n\n", (unsigned long long)fid,
         (unsigned long long)fid);

    for (uint32_t i = 0; i < nodes.n; i++)
        if (node_which(nodes.v[i]->r) == NODE_ENUM)
            emit_enum(g, nodes.v[i]);
    for (uint32_t i = 0; i < nodes.n; i++)
        if (node_which(nodes.v[i]->r) == NODE_STRUCT)
            emit_struct_types(g, nodes.v[i]);
    emit(g, "\n");
    /* Sizes first, since accessors of one struct name another's. */
    for (uint32_t i = 0; i < nodes.n; i++) {
        node *n = nodes.v[i];
        if (node_which(n->r) == NODE_STRUCT && !struct_is_group(n->r))
            emit(g, "#define %s_DATA_WORDS %u\n#define %s_PTR_WORDS %u\n", n->cname,
                 struct_data_words(n->r), n->cname, struct_ptr_words(n->r));
    }
    emit(g, "\n");
    for (uint32_t i = 0; i < nodes.n; i++) {
        node *n = nodes.v[i];
        switch (node_which(n->r)) {
        case NODE_STRUCT:
            emit_struct_funcs(g, n);
            break;
        case NODE_INTERFACE:
            emit_interface(g, n);
            break;
        case NODE_CONST:
            emit_const(g, n);
            break;
        case NODE_ENUM:
            emit_enum_annotations(g, n);
            break;
        case NODE_ANNOTATION:
            emit(g, "#define %s_ANNOTATION_ID UINT64_C(0x%016llx)\n\n", n->cname,
                 (unsigned long long)n->id);
            break;
        default:
            break;
        }
    }
    emit(g, "#endif\n");
    free(files);
    free(nodes.v);
    int rc = fclose(g->out);
    g->out = NULL;
    if (rc != 0) {
        fprintf(stderr, "capnpc-c: write %s: %s\n", outname, strerror(errno));
        return -1;
    }
    if (!cp_message_ok(&g->msg) || g->failed) {
        fprintf(stderr, "capnpc-c: %s: %s\n", filename,
                g->msg.error ? g->msg.error->msg : "generation failed");
        return -1;
    }
    return 0;
}

int main(void)
{
    gr_buf in = GR_BUF_INIT;
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
        gr_buf_append(&in, chunk, n);
    gen g = {0};
    _cleanup_error_ gr_error_t err = NULL;
    cp_read_options opts = {.traversal_limit_words = UINT64_MAX, .max_segments = 1u << 20};
    if (cp_message_read(&g.msg, in.data, in.len, &opts, &err) < 0) {
        fprintf(stderr, "capnpc-c: reading the request: %s\n", gr_error_msg(err));
        gr_buf_release(&in);
        return 1;
    }
    gr_buf_release(&in);

    cp_struct_reader req = cp_message_root(&g.msg);
    cp_list_reader nodes = cp_get_list(req, 0, CP_ELEM_COMPOSITE, cp_ptr_null());
    g.nodes = gr_calloc(nodes.len + 1, sizeof(node));
    g.nnodes = nodes.len;
    for (uint32_t i = 0; i < nodes.len; i++) {
        g.nodes[i].r = cp_list_get_struct(nodes, i);
        g.nodes[i].id = node_id(g.nodes[i].r);
    }
    qsort(g.nodes, g.nnodes, sizeof(node), cmp_node);
    /* Name every file's tree, so references into imports resolve. */
    for (uint32_t i = 0; i < g.nnodes; i++)
        if (node_which(g.nodes[i].r) == NODE_FILE && g.nodes[i].cname == NULL)
            name_node(&g, g.nodes[i].id, "", g.nodes[i].id);

    int rc = 0;
    cp_list_reader files = cp_get_list(req, 1, CP_ELEM_COMPOSITE, cp_ptr_null());
    for (uint32_t i = 0; i < files.len && rc == 0; i++) {
        cp_struct_reader f = cp_list_get_struct(files, i);
        if (generate_file(&g, cp_get_u64(f, 0, 0), cp_get_text(f, 0, NULL).str) < 0)
            rc = 1;
    }
    if (cp_message_check(&g.msg, &err) < 0) {
        fprintf(stderr, "capnpc-c: malformed request: %s\n", gr_error_msg(err));
        rc = 1;
    }
    for (uint32_t i = 0; i < g.nnodes; i++)
        free(g.nodes[i].cname);
    free(g.nodes);
    cp_message_release(&g.msg);
    return rc;
}
