/* Benchmark half for bench/capnp-encode: builds, serialises, reads and walks
 * a batch of WebSession-style requests with this library, and prints
 * "encode_ns decode_ns bytes checksum" per batch. Its C++ twin is
 * capnp_encode.c++, run by the same script against libcapnp. */
#include <time.h>

#include "capnp-encode.capnp.h"

#define REQUESTS 100
#define HEADERS 8
#define BODY 512

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The batch's strings, formatted once so that the timing is the library's. */
typedef struct strings {
    char path[REQUESTS][48], value[REQUESTS][HEADERS][24], cookie[REQUESTS][24], etag[REQUESTS][24];
    char name[HEADERS][24];
} strings;

static void make_strings(strings *s)
{
    for (unsigned i = 0; i < REQUESTS; i++) {
        snprintf(s->path[i], sizeof(s->path[i]), "/grain/%u/api/items?page=%u", i, i * 3);
        for (unsigned j = 0; j < HEADERS; j++)
            snprintf(s->value[i][j], sizeof(s->value[i][j]), "value-%u-%u", i, j);
        snprintf(s->cookie[i], sizeof(s->cookie[i]), "session=%u", i);
        snprintf(s->etag[i], sizeof(s->etag[i]), "\"etag-%u\"", i);
    }
    for (unsigned j = 0; j < HEADERS; j++)
        snprintf(s->name[j], sizeof(s->name[j]), "x-header-%u", j);
}

static void set(cp_ptr_builder p, const char *s)
{
    cp_ptr_set_text(p, s, strlen(s));
}

static void build(cp_message *m, const strings *s, const uint8_t *body)
{
    Batch_B b = Batch_init_root(m);
    Batch_set_sequence(b, 7);
    Request_LB rl = Batch_init_requests(b, REQUESTS);
    for (uint32_t i = 0; i < REQUESTS; i++) {
        Request_B r = Request_list_at(rl, i);
        Request_set_method(r, (Method)(i % 4));
        set(Request_ptr_path(r), s->path[i]);
        Header_LB hl = Request_init_headers(r, HEADERS);
        for (uint32_t j = 0; j < HEADERS; j++) {
            Header_B h = Header_list_at(hl, j);
            set(Header_ptr_name(h), s->name[j]);
            set(Header_ptr_value(h), s->value[i][j]);
        }
        cp_list_builder cl = Request_init_cookies(r, 2);
        set(cp_list_ptr_at(cl, 0), s->cookie[i]);
        set(cp_list_ptr_at(cl, 1), "theme=dark");
        Request_set_body(r, body, BODY);
        Request_set_contentLength(r, BODY);
        Request_set_keepAlive(r, i % 2 == 0);
        set(Request_ptr_etag(r), s->etag[i]);
    }
}

static uint64_t walk(cp_message *m)
{
    uint64_t sum = 0;
    Batch_R b = Batch_root(m);
    sum += Batch_get_sequence(b);
    Request_LR rl = Batch_get_requests(b);
    for (uint32_t i = 0; i < Request_list_len(rl); i++) {
        Request_R r = Request_list_get(rl, i);
        sum += (uint64_t)Request_get_method(r) + Request_get_path(r).len;
        Header_LR hl = Request_get_headers(r);
        for (uint32_t j = 0; j < Header_list_len(hl); j++) {
            Header_R h = Header_list_get(hl, j);
            sum += Header_get_name(h).len + Header_get_value(h).len;
        }
        cp_list_reader cl = Request_get_cookies(r);
        for (uint32_t j = 0; j < cl.len; j++)
            sum += cp_list_get_text(cl, j).len;
        cp_data d = Request_get_body(r);
        sum += d.len + (d.len ? d.ptr[0] + d.ptr[d.len - 1] : 0);
        sum += Request_get_contentLength(r) + Request_get_keepAlive(r) + Request_get_etag(r).len;
    }
    return sum;
}

int main(int argc, char **argv)
{
    long iters = 2000;
    gr_error_t err = NULL;
    if (argc > 1 && gr_parse_long(argv[1], 1, 10000000, &iters, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    static strings strs;
    make_strings(&strs);
    uint8_t body[BODY];
    for (int i = 0; i < BODY; i++)
        body[i] = (uint8_t)(i * 7 + 3);
    uint64_t enc = 0, dec = 0, checksum = 0;
    size_t bytes = 0;
    gr_buf out = GR_BUF_INIT;
    for (long it = 0; it < iters; it++) {
        uint64_t t0 = now_ns();
        cp_message m;
        cp_message_init(&m, 0);
        build(&m, &strs, body);
        out.len = 0;
        cp_message_write(&m, &out);
        cp_message_release(&m);
        uint64_t t1 = now_ns();
        cp_message r;
        if (cp_message_open(&r, out.data, out.len, NULL, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        checksum = walk(&r);
        if (cp_message_check(&r, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        cp_message_release(&r);
        uint64_t t2 = now_ns();
        enc += t1 - t0;
        dec += t2 - t1;
        bytes = out.len;
    }
    printf("%llu %llu %zu %llu\n", (unsigned long long)(enc / (uint64_t)iters),
           (unsigned long long)(dec / (uint64_t)iters), bytes, (unsigned long long)checksum);
    gr_buf_release(&out);
    return 0;
}
