// Benchmark half for bench/capnp-encode: the same batch as capnp_encode.c,
// built and walked with the reference C++ library (compiled by the script).
#include <capnp/message.h>
#include <capnp/serialize.h>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "capnp-encode.capnp.h"

static const unsigned REQUESTS = 100, HEADERS = 8, BODY = 512;

static uint64_t now_ns()
{
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// The batch's strings, formatted once so that the timing is the library's.
struct Strings {
    char path[REQUESTS][48], value[REQUESTS][HEADERS][24], cookie[REQUESTS][24], etag[REQUESTS][24];
    char name[HEADERS][24];
};

static void make_strings(Strings *s)
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

static void build(capnp::MessageBuilder &m, const Strings *s, const uint8_t *body)
{
    auto b = m.initRoot<Batch>();
    b.setSequence(7);
    auto rl = b.initRequests(REQUESTS);
    for (unsigned i = 0; i < REQUESTS; i++) {
        auto r = rl[i];
        r.setMethod((Method)(i % 4));
        r.setPath(s->path[i]);
        auto hl = r.initHeaders(HEADERS);
        for (unsigned j = 0; j < HEADERS; j++) {
            hl[j].setName(s->name[j]);
            hl[j].setValue(s->value[i][j]);
        }
        auto cl = r.initCookies(2);
        cl.set(0, s->cookie[i]);
        cl.set(1, "theme=dark");
        r.setBody(capnp::Data::Reader(body, BODY));
        r.setContentLength(BODY);
        r.setKeepAlive(i % 2 == 0);
        r.setEtag(s->etag[i]);
    }
}

static uint64_t walk(capnp::MessageReader &m)
{
    uint64_t sum = 0;
    auto b = m.getRoot<Batch>();
    sum += b.getSequence();
    for (auto r : b.getRequests()) {
        sum += (uint64_t)r.getMethod() + r.getPath().size();
        for (auto h : r.getHeaders())
            sum += h.getName().size() + h.getValue().size();
        for (auto c : r.getCookies())
            sum += c.size();
        auto d = r.getBody();
        sum += d.size() + (d.size() ? d[0] + d[d.size() - 1] : 0);
        sum += r.getContentLength() + r.getKeepAlive() + r.getEtag().size();
    }
    return sum;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? strtol(argv[1], nullptr, 10) : 2000;
    static Strings strs;
    make_strings(&strs);
    uint8_t body[BODY];
    for (unsigned i = 0; i < BODY; i++)
        body[i] = (uint8_t)(i * 7 + 3);
    uint64_t enc = 0, dec = 0, checksum = 0;
    size_t bytes = 0;
    for (long it = 0; it < iters; it++) {
        uint64_t t0 = now_ns();
        kj::Array<capnp::word> flat;
        {
            capnp::MallocMessageBuilder m;
            build(m, &strs, body);
            flat = capnp::messageToFlatArray(m);
        }
        uint64_t t1 = now_ns();
        {
            capnp::FlatArrayMessageReader r(flat);
            checksum = walk(r);
        }
        uint64_t t2 = now_ns();
        enc += t1 - t0;
        dec += t2 - t1;
        bytes = flat.size() * sizeof(capnp::word);
    }
    printf("%llu %llu %zu %llu\n", (unsigned long long)(enc / iters),
           (unsigned long long)(dec / iters), bytes, (unsigned long long)checksum);
    return 0;
}
