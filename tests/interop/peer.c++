// The C++ reference peer for Granary's RPC interop tests and benchmark: it
// serves the Interop interface with libcapnp-rpc, or drives a Granary server
// through one scenario, over an inherited socket fd or a Unix socket path.
//
//   interop-peer serve FD                 serve until the peer disconnects
//   interop-peer serve-unix PATH          accept connections on PATH forever
//   interop-peer client FD SCENARIO       run SCENARIO, exit 0 when it passed
//   interop-peer bench PATH pingpong N    N sequential pings; prints calls/s
//   interop-peer bench PATH pipeline N    N pipelined newCounter().inc() pairs
//
// A failed check prints one line to stderr and exits 1.

#include "interop.capnp.h"

#include <capnp/rpc-twoparty.h>
#include <kj/async-io.h>
#include <kj/debug.h>
#include <kj/timer.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

namespace {

int liveObjects = 0;

[[noreturn]] void failCheck(const char *what, long long got, long long want)
{
    fprintf(stderr, "interop-peer: check failed: %s: got %lld, want %lld\n", what, got, want);
    fflush(stderr);
    _exit(1);
}

#define CHECK_EQ(got, want)                                                                        \
    do {                                                                                           \
        long long g_ = (long long)(got), w_ = (long long)(want);                                   \
        if (g_ != w_)                                                                              \
            failCheck(#got, g_, w_);                                                               \
    } while (0)

class CounterImpl final : public Counter::Server {
  public:
    explicit CounterImpl(int64_t start) : value(start) { liveObjects++; }
    ~CounterImpl() { liveObjects--; }
    kj::Promise<void> inc(IncContext context) override
    {
        value += context.getParams().getBy();
        context.getResults().setValue(value);
        return kj::READY_NOW;
    }

  private:
    int64_t value;
};

class CallbackImpl final : public Callback::Server {
  public:
    explicit CallbackImpl(bool *destroyed) : destroyed(destroyed) { liveObjects++; }
    ~CallbackImpl()
    {
        liveObjects--;
        if (destroyed)
            *destroyed = true;
    }
    kj::Promise<void> call(CallContext context) override
    {
        uint32_t i = context.getParams().getI();
        if (i != next)
            failCheck("callback calls out of order", i, next);
        next++;
        context.getResults().setR((int64_t)i * 10);
        return kj::READY_NOW;
    }

  private:
    bool *destroyed;
    uint32_t next = 0;
};

class InteropImpl final : public Interop::Server {
  public:
    explicit InteropImpl(kj::Timer &timer) : timer(timer) {}

    kj::Promise<void> ping(PingContext context) override
    {
        context.getResults().setN(context.getParams().getN() + 1);
        return kj::READY_NOW;
    }
    kj::Promise<void> echo(EchoContext context) override
    {
        context.getResults().setText(context.getParams().getText());
        return kj::READY_NOW;
    }
    kj::Promise<void> fail(FailContext context) override
    {
        return KJ_EXCEPTION(FAILED, context.getParams().getReason());
    }
    kj::Promise<void> hang(HangContext context) override
    {
        context.allowCancellation();
        kj::Promise<void> never = kj::NEVER_DONE;
        return never.attach(kj::defer([this]() { canceled++; }));
    }
    kj::Promise<void> canceledCount(CanceledCountContext context) override
    {
        context.getResults().setCount(canceled);
        return kj::READY_NOW;
    }
    kj::Promise<void> newCounter(NewCounterContext context) override
    {
        context.getResults().setCounter(kj::heap<CounterImpl>(context.getParams().getStart()));
        return kj::READY_NOW;
    }
    kj::Promise<void> callBack(CallBackContext context) override
    {
        auto params = context.getParams();
        return loop(params.getCb(), 0, params.getN(), 0).then([context](int64_t sum) mutable {
            context.getResults().setSum(sum);
        });
    }
    kj::Promise<void> write(WriteContext context) override
    {
        bytes += context.getParams().getData().size();
        calls++;
        // A little service time, so that the caller's window fills up.
        return timer.afterDelay(50 * kj::MICROSECONDS);
    }
    kj::Promise<void> writeDone(WriteDoneContext context) override
    {
        auto r = context.getResults();
        r.setBytes(bytes);
        r.setCalls(calls);
        return kj::READY_NOW;
    }
    kj::Promise<void> add(AddContext context) override
    {
        auto params = context.getParams();
        auto req = params.getCounter().incRequest();
        req.setBy(params.getBy());
        return req.send().then([context](auto r) mutable {
            context.getResults().setValue(r.getValue());
        });
    }
    kj::Promise<void> disconnectMe(DisconnectMeContext context) override
    {
        fflush(stderr);
        _exit(0);
    }
    kj::Promise<void> promiseCounter(PromiseCounterContext context) override
    {
        auto req = thisCap().newCounterRequest();
        req.setStart(context.getParams().getStart());
        context.getResults().setCounter(req.send().getCounter());
        return kj::READY_NOW;
    }
    kj::Promise<void> reflect(ReflectContext context) override
    {
        context.getResults().setCb(context.getParams().getCb());
        return kj::READY_NOW;
    }
    kj::Promise<void> liveObjects(LiveObjectsContext context) override
    {
        context.getResults().setCount((uint32_t)::liveObjects);
        return kj::READY_NOW;
    }

  private:
    kj::Promise<int64_t> loop(Callback::Client cb, uint32_t i, uint32_t n, int64_t sum)
    {
        if (i == n)
            return sum;
        auto req = cb.callRequest();
        req.setI(i);
        return req.send().then([this, cb, i, n, sum](auto r) mutable {
            return loop(kj::mv(cb), i + 1, n, sum + r.getR());
        });
    }

    kj::Timer &timer;
    uint32_t canceled = 0;
    uint64_t bytes = 0;
    uint32_t calls = 0;
};

// ---- client scenarios against a Granary server --------------------------

void scenarioPing(Interop::Client cap, kj::WaitScope &ws)
{
    for (uint64_t i = 0; i < 100; i++) {
        auto req = cap.pingRequest();
        req.setN(i * 1000);
        CHECK_EQ(req.send().wait(ws).getN(), i * 1000 + 1);
    }
    auto req = cap.echoRequest();
    req.setText("h\xc3\xa9llo, granary");
    auto resp = req.send().wait(ws);
    if (resp.getText() != "h\xc3\xa9llo, granary")
        failCheck("echo text differs", 0, 1);
}

void scenarioPipeline(Interop::Client cap, kj::WaitScope &ws)
{
    // Both calls leave before the first returns; the second targets its answer.
    auto req = cap.newCounterRequest();
    req.setStart(10);
    auto promise = req.send();
    Counter::Client counter = promise.getCounter();
    auto inc = counter.incRequest();
    inc.setBy(5);
    auto incPromise = inc.send();
    // A promised answer passed back as a parameter (receiverAnswer).
    auto add = cap.addRequest();
    add.setCounter(counter);
    add.setBy(1);
    auto addPromise = add.send();
    CHECK_EQ(incPromise.wait(ws).getValue(), 15);
    CHECK_EQ(addPromise.wait(ws).getValue(), 16);
    promise.wait(ws);
    // The resolved capability passed back (receiverHosted).
    auto add2 = cap.addRequest();
    add2.setCounter(counter);
    add2.setBy(100);
    CHECK_EQ(add2.send().wait(ws).getValue(), 116);
    auto inc2 = counter.incRequest();
    inc2.setBy(1);
    CHECK_EQ(inc2.send().wait(ws).getValue(), 117);
}

void scenarioCallback(Interop::Client cap, kj::WaitScope &ws)
{
    bool destroyed = false;
    {
        auto req = cap.callBackRequest();
        req.setCb(kj::heap<CallbackImpl>(&destroyed));
        req.setN(5);
        CHECK_EQ(req.send().wait(ws).getSum(), 0 + 10 + 20 + 30 + 40);
    }
    // The server has dropped its reference: a round trip later our object is gone.
    CHECK_EQ(cap.pingRequest().send().wait(ws).getN(), 1);
    CHECK_EQ(destroyed, true);
    // Capabilities the server made for us live until we drop them.
    auto req = cap.newCounterRequest();
    req.setStart(1);
    auto counter = req.send().wait(ws).getCounter();
    CHECK_EQ(cap.liveObjectsRequest().send().wait(ws).getCount(), 1);
    counter = nullptr;
    CHECK_EQ(cap.liveObjectsRequest().send().wait(ws).getCount(), 0);
}

void scenarioException(Interop::Client cap, kj::WaitScope &ws)
{
    auto req = cap.failRequest();
    req.setReason("boom 42: the reason travels");
    bool threw = false;
    try {
        req.send().wait(ws);
    } catch (const kj::Exception &e) {
        threw = true;
        if (!strstr(e.getDescription().cStr(), "boom 42: the reason travels")) {
            fprintf(stderr, "interop-peer: unexpected description: %s\n", e.getDescription().cStr());
            _exit(1);
        }
        CHECK_EQ((int)e.getType(), (int)kj::Exception::Type::FAILED);
    }
    CHECK_EQ(threw, true);
    threw = false;
    try {
        cap.notImplementedRequest().send().wait(ws);
    } catch (const kj::Exception &e) {
        threw = true;
        CHECK_EQ((int)e.getType(), (int)kj::Exception::Type::UNIMPLEMENTED);
    }
    CHECK_EQ(threw, true);
    // The connection is still good.
    CHECK_EQ(cap.pingRequest().send().wait(ws).getN(), 1);
}

void scenarioCancel(Interop::Client cap, kj::WaitScope &ws)
{
    {
        auto p1 = cap.hangRequest().send();
        auto p2 = cap.hangRequest().send();
        // Make sure both reached the server before we cancel them.
        cap.pingRequest().send().wait(ws);
    } // dropping the promises sends Finish
    CHECK_EQ(cap.canceledCountRequest().send().wait(ws).getCount(), 2);
}

void scenarioStream(Interop::Client cap, kj::WaitScope &ws)
{
    const size_t chunk = 4096;
    const int count = 200;
    kj::Array<kj::byte> data = kj::heapArray<kj::byte>(chunk);
    memset(data.begin(), 'x', chunk);
    for (int i = 0; i < count; i++) {
        auto req = cap.writeRequest();
        req.setData(data);
        req.send().wait(ws); // resolves when the window allows another
    }
    auto r = cap.writeDoneRequest().send().wait(ws);
    CHECK_EQ(r.getBytes(), chunk * count);
    CHECK_EQ(r.getCalls(), count);
}

void scenarioDisconnect(Interop::Client cap, kj::WaitScope &ws)
{
    auto p = cap.hangRequest().send();
    cap.pingRequest().send().wait(ws);
    // Leave without a goodbye, with a call outstanding.
    fflush(stderr);
    _exit(0);
}

void scenarioServerDisconnects(Interop::Client cap, kj::WaitScope &ws)
{
    auto p = cap.hangRequest().send();
    auto d = cap.disconnectMeRequest().send();
    bool threw = false;
    try {
        p.wait(ws);
    } catch (const kj::Exception &e) {
        threw = true;
        CHECK_EQ((int)e.getType(), (int)kj::Exception::Type::DISCONNECTED);
    }
    CHECK_EQ(threw, true);
    threw = false;
    try {
        d.wait(ws);
    } catch (const kj::Exception &e) {
        threw = true;
    }
    CHECK_EQ(threw, true);
}

void scenarioEmbargo(Interop::Client cap, kj::WaitScope &ws)
{
    // Our own callback, reflected: calls 0-2 travel there and back, call 3 is
    // made once the result is known to be local and must arrive last.
    auto req = cap.reflectRequest();
    req.setCb(kj::heap<CallbackImpl>(nullptr));
    auto promise = req.send();
    Callback::Client cb = promise.getCb();
    kj::Vector<kj::Promise<void>> calls;
    for (uint32_t i = 0; i < 3; i++) {
        auto c = cb.callRequest();
        c.setI(i);
        calls.add(c.send().then([i](auto r) { CHECK_EQ(r.getR(), i * 10); }));
    }
    promise.wait(ws);
    auto c = cb.callRequest();
    c.setI(3);
    calls.add(c.send().then([](auto r) { CHECK_EQ(r.getR(), 30); }));
    kj::joinPromises(calls.releaseAsArray()).wait(ws);
}

void scenarioPromise(Interop::Client cap, kj::WaitScope &ws, kj::Timer &timer)
{
    // The counter comes as a promise; calls work before and after it settles.
    auto req = cap.promiseCounterRequest();
    req.setStart(100);
    Counter::Client counter = req.send().wait(ws).getCounter();
    auto inc = counter.incRequest();
    inc.setBy(1);
    CHECK_EQ(inc.send().wait(ws).getValue(), 101);
    timer.afterDelay(30 * kj::MILLISECONDS).wait(ws); // the Resolve arrives
    for (int i = 2; i <= 5; i++) {
        auto more = counter.incRequest();
        more.setBy(1);
        CHECK_EQ(more.send().wait(ws).getValue(), 100 + i);
    }
}

void scenarioFlood(Interop::Client cap, kj::WaitScope &ws)
{
    // More unanswered calls than the Granary side allows: it must abort.
    kj::Vector<kj::Promise<void>> calls;
    for (int i = 0; i < 10; i++)
        calls.add(cap.hangRequest().send().ignoreResult());
    bool threw = false;
    try {
        calls[0].wait(ws);
    } catch (const kj::Exception &e) {
        threw = true;
        if (!strstr(e.getDescription().cStr(), "too many outstanding calls")) {
            fprintf(stderr, "interop-peer: unexpected description: %s\n", e.getDescription().cStr());
            _exit(1);
        }
    }
    CHECK_EQ(threw, true);
}

int runClient(kj::AsyncIoContext &io, int fd, const char *scenario)
{
    auto stream = io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    capnp::TwoPartyClient client(*stream);
    Interop::Client cap = client.bootstrap().castAs<Interop>();
    auto &ws = io.waitScope;
    if (strcmp(scenario, "ping") == 0)
        scenarioPing(cap, ws);
    else if (strcmp(scenario, "pipeline") == 0)
        scenarioPipeline(cap, ws);
    else if (strcmp(scenario, "callback") == 0)
        scenarioCallback(cap, ws);
    else if (strcmp(scenario, "exception") == 0)
        scenarioException(cap, ws);
    else if (strcmp(scenario, "cancel") == 0)
        scenarioCancel(cap, ws);
    else if (strcmp(scenario, "stream") == 0)
        scenarioStream(cap, ws);
    else if (strcmp(scenario, "disconnect") == 0)
        scenarioDisconnect(cap, ws);
    else if (strcmp(scenario, "embargo") == 0)
        scenarioEmbargo(cap, ws);
    else if (strcmp(scenario, "promise") == 0)
        scenarioPromise(cap, ws, io.provider->getTimer());
    else if (strcmp(scenario, "flood") == 0)
        scenarioFlood(cap, ws);
    else if (strcmp(scenario, "server-disconnects") == 0)
        scenarioServerDisconnects(cap, ws);
    else {
        fprintf(stderr, "interop-peer: unknown scenario %s\n", scenario);
        return 2;
    }
    return 0;
}

int runServe(kj::AsyncIoContext &io, int fd)
{
    auto stream = io.lowLevelProvider->wrapSocketFd(fd, kj::LowLevelAsyncIoProvider::TAKE_OWNERSHIP);
    capnp::TwoPartyVatNetwork network(*stream, capnp::rpc::twoparty::Side::SERVER);
    auto rpc = capnp::makeRpcServer(network, kj::heap<InteropImpl>(io.provider->getTimer()));
    network.onDisconnect().wait(io.waitScope);
    return 0;
}

int runServeUnix(kj::AsyncIoContext &io, const char *path)
{
    auto addr = io.provider->getNetwork().parseAddress(kj::str("unix:", path)).wait(io.waitScope);
    auto listener = addr->listen();
    capnp::TwoPartyServer server(kj::heap<InteropImpl>(io.provider->getTimer()));
    printf("ready\n");
    fflush(stdout);
    server.listen(*listener).wait(io.waitScope);
    return 0;
}

double nowSeconds()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int runBench(kj::AsyncIoContext &io, const char *path, const char *kind, long n)
{
    auto &ws = io.waitScope;
    auto addr = io.provider->getNetwork().parseAddress(kj::str("unix:", path)).wait(ws);
    auto stream = addr->connect().wait(ws);
    capnp::TwoPartyClient client(*stream);
    Interop::Client cap = client.bootstrap().castAs<Interop>();
    cap.pingRequest().send().wait(ws); // warm up
    double start = nowSeconds();
    if (strcmp(kind, "pingpong") == 0) {
        for (long i = 0; i < n; i++) {
            auto req = cap.pingRequest();
            req.setN((uint64_t)i);
            CHECK_EQ(req.send().wait(ws).getN(), i + 1);
        }
    } else if (strcmp(kind, "pipeline") == 0) {
        // Windows of 64 newCounter() calls, each with inc() pipelined on its
        // answer, all in flight at once.
        const long window = 64;
        for (long i = 0; i < n; i += window) {
            kj::Vector<kj::Promise<void>> done;
            for (long j = i; j < i + window && j < n; j++) {
                auto req = cap.newCounterRequest();
                req.setStart(j);
                auto p = req.send();
                auto inc = p.getCounter().incRequest();
                inc.setBy(1);
                done.add(inc.send().then([j](auto r) { CHECK_EQ(r.getValue(), j + 1); }));
            }
            kj::joinPromises(done.releaseAsArray()).wait(ws);
        }
    } else {
        fprintf(stderr, "interop-peer: unknown bench %s\n", kind);
        return 2;
    }
    double secs = nowSeconds() - start;
    printf("%.0f\n", (double)n / secs);
    return 0;
}

} // namespace

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: interop-peer serve FD | serve-unix PATH | client FD SCENARIO | "
                        "bench PATH KIND N\n");
        return 2;
    }
    auto io = kj::setupAsyncIo();
    if (strcmp(argv[1], "serve") == 0)
        return runServe(io, atoi(argv[2]));
    if (strcmp(argv[1], "serve-unix") == 0)
        return runServeUnix(io, argv[2]);
    if (strcmp(argv[1], "client") == 0 && argc == 4)
        return runClient(io, atoi(argv[2]), argv[3]);
    if (strcmp(argv[1], "bench") == 0 && argc == 5)
        return runBench(io, argv[2], argv[3], atol(argv[4]));
    fprintf(stderr, "interop-peer: bad arguments\n");
    return 2;
}
