/* The sandbox library as the daemon will use it: sbx_start, polling the
 * pidfd (also from a libuv loop), non-blocking sbx_wait, sbx_kill, /dev/null
 * stdio, start errors, the memory accessor, and threads starting grains at once. Runs real grains;
 * argv[1] is the static probe program (tests/sandbox/probe.c), copied into a fresh package. */
#include "sandbox.h"
#include "testutil.h"
#include "util.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <uv.h>

#include <setjmp.h>
#include <cmocka.h>

static const char *probe_path;

typedef struct {
    char dir[64];
    char *pkg, *var;
    sbx_policy *policy;
} fixture;

static int copy_file(const char *from, const char *to)
{
    _cleanup_free_ char *data = NULL;
    size_t len;
    gr_error_t err = NULL;
    if (gr_read_file(from, 64 << 20, &data, &len, &err) < 0) {
        gr_error_release(&err);
        return -1;
    }
    _cleanup_close_ int fd = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0755);
    return fd >= 0 && write(fd, data, len) == (ssize_t)len ? 0 : -1;
}

static int setup(void **state)
{
    fixture *f = gr_calloc(1, sizeof(*f));
    gr_strlcpy(f->dir, "/tmp/granary-sbxlib-XXXXXX", sizeof f->dir);
    assert_non_null(mkdtemp(f->dir));
    f->pkg = gr_asprintf("%s/pkg", f->dir);
    f->var = gr_asprintf("%s/var", f->dir);
    _cleanup_free_ char *bin = gr_asprintf("%s/bin", f->pkg);
    _cleanup_free_ char *probe = gr_asprintf("%s/probe", bin);
    assert_int_equal(mkdir(f->pkg, 0755), 0);
    assert_int_equal(mkdir(bin, 0755), 0);
    assert_int_equal(mkdir(f->var, 0755), 0);
    assert_int_equal(copy_file(probe_path, probe), 0);
    gr_error_t err = NULL;
    assert_int_equal(sbx_policy_new(&f->policy, &err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    sbx_policy_free(f->policy);
    testutil_rm_rf(f->dir);
    free(f->pkg);
    free(f->var);
    free(f);
    return 0;
}

static char *const no_env[] = {NULL};

static void spec_for(const fixture *f, sbx_spec *s, char *const *argv)
{
    sbx_spec_init(s);
    s->package_dir = f->pkg;
    s->var_dir = f->var;
    s->argv = argv;
    s->envp = no_env;
}

static bool readable(int fd, int timeout_ms)
{
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, timeout_ms) == 1 && (p.revents & POLLIN);
}

static void test_poll_kill_reap(void **state)
{
    fixture *f = *state;
    int out[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    char *const argv[] = {"/bin/probe", "sleep", NULL};
    sbx_spec s;
    spec_for(f, &s, argv);
    s.stdio[1] = out[1];
    s.memory_bytes = 64u << 20;
    sbx_grain *g = NULL;
    gr_error_t err = NULL;
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), 0);
    close(out[1]);
    assert_true(sbx_grain_pid(g) > 0);
    char buf[16] = {0};
    assert_int_equal(read(out[0], buf, 6), 6);
    assert_string_equal(buf, "ready\n");

    /* Running: the pidfd is quiet and a non-blocking wait reports nothing. */
    assert_false(readable(sbx_grain_pidfd(g), 50));
    int status = -1;
    assert_int_equal(sbx_wait(g, false, &status, &err), 0);
    uint64_t bytes = 0;
    if (sbx_policy_limits_mode(f->policy) != SBX_LIMITS_RLIMIT) {
        assert_int_equal(sbx_grain_memory(g, &bytes, &err), 0);
        assert_true(bytes > 0 && bytes < (64u << 20));
    }

    assert_int_equal(sbx_kill(g, &err), 0);
    assert_true(readable(sbx_grain_pidfd(g), 10000));
    assert_int_equal(sbx_wait(g, false, &status, &err), 1);
    assert_int_equal(status, 128 + 9);
    /* Reaped: the answer stays, killing again is harmless. */
    assert_int_equal(sbx_wait(g, true, &status, &err), 1);
    assert_int_equal(status, 137);
    assert_int_equal(sbx_kill(g, &err), 0);
    assert_int_equal(read(out[0], buf, sizeof buf), 0); /* every writer is gone */
    close(out[0]);
    sbx_grain_free(g);
}

static void test_devnull_stdio_and_rpc(void **state)
{
    fixture *f = *state;
    int out[2], sv[2];
    assert_int_equal(pipe2(out, O_CLOEXEC), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char *const argv[] = {"/bin/probe", "fds", NULL};
    sbx_spec s;
    spec_for(f, &s, argv);
    s.stdio[1] = out[1]; /* stdin and stderr -1: /dev/null */
    s.rpc_fd = sv[1];
    sbx_grain *g = NULL;
    gr_error_t err = NULL;
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), 0);
    close(out[1]);
    close(sv[1]);
    int status;
    assert_int_equal(sbx_wait(g, true, &status, &err), 1);
    assert_int_equal(status, 0);
    char buf[256] = {0};
    ssize_t n = read(out[0], buf, sizeof buf - 1);
    assert_true(n > 0);
    assert_string_equal(buf, "0 chr\n1 fifo\n2 chr\n3 socket\n");
    close(out[0]);
    close(sv[0]);
    sbx_grain_free(g);
}

/* Kills the grain a moment after the test starts waiting for it. */
static void *kill_later(void *grain)
{
    usleep(200 * 1000);
    gr_error_t err = NULL;
    if (sbx_kill(grain, &err) < 0)
        gr_error_release(&err);
    return NULL;
}

static void test_exit_status_and_free_running(void **state)
{
    fixture *f = *state;
    char *const argv[] = {"/bin/probe", "exit", "42", NULL};
    sbx_spec s;
    spec_for(f, &s, argv);
    sbx_grain *g = NULL;
    gr_error_t err = NULL;
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), 0);
    int status;
    assert_int_equal(sbx_wait(g, true, &status, &err), 1);
    assert_int_equal(status, 42);
    sbx_grain_free(g);

    /* Freeing a running grain kills and reaps it. */
    char *const sleeper[] = {"/bin/probe", "tree", NULL};
    spec_for(f, &s, sleeper);
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), 0);
    pid_t pid = sbx_grain_pid(g);
    sbx_grain_free(g);
    assert_int_equal(kill(pid, 0), -1);
    assert_int_equal(errno, ESRCH);
    sbx_grain_free(NULL);

    /* A blocking wait blocks even when a libuv poll has made the pidfd
     * non-blocking (waitid then answers EAGAIN while the grain runs). */
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), 0);
    int fd = sbx_grain_pidfd(g);
    assert_int_equal(fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK), 0);
    pthread_t killer;
    assert_int_equal(pthread_create(&killer, NULL, kill_later, g), 0);
    status = -1;
    assert_int_equal(sbx_wait(g, true, &status, &err), 1);
    assert_int_equal(status, 137);
    pthread_join(killer, NULL);
    sbx_grain_free(g);
}

static void test_start_errors(void **state)
{
    fixture *f = *state;
    char *const missing[] = {"/bin/missing", NULL};
    sbx_spec s;
    spec_for(f, &s, missing);
    sbx_grain *g = NULL;
    gr_error_t err = NULL;
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), -1);
    assert_null(g);
    assert_string_equal(gr_error_msg(err),
                        "sandbox: execve /bin/missing: No such file or directory");
    gr_error_release(&err);

    /* A directory in the package is not a program. */
    char *const dir[] = {"/bin", NULL};
    spec_for(f, &s, dir);
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "execve /bin: Permission denied"));
    gr_error_release(&err);

    char *const ok[] = {"/bin/probe", "exit", "0", NULL};
    spec_for(f, &s, ok);
    s.var_dir = "/nonexistent/var";
    assert_int_equal(sbx_start(f->policy, &s, &g, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "var directory /nonexistent/var"));
    gr_error_release(&err);
}

/* ---- from a libuv loop, as the daemon will */

typedef struct {
    sbx_grain *grain;
    uv_poll_t poll;
    int status, polls;
} watched;

static void on_exit_readable(uv_poll_t *h, int status, int events)
{
    watched *w = h->data;
    gr_error_t err = NULL;
    w->polls++;
    assert_int_equal(status, 0);
    assert_true(events & UV_READABLE);
    assert_int_equal(sbx_wait(w->grain, false, &w->status, &err), 1);
    uv_close((uv_handle_t *)h, NULL);
}

static void on_timer(uv_timer_t *t)
{
    watched *w = t->data;
    gr_error_t err = NULL;
    assert_int_equal(w->polls, 0); /* still running: nothing reported */
    assert_int_equal(sbx_kill(w->grain, &err), 0);
    uv_close((uv_handle_t *)t, NULL);
}

static void test_uv_poll(void **state)
{
    fixture *f = *state;
    char *const argv[] = {"/bin/probe", "tree", NULL};
    sbx_spec s;
    spec_for(f, &s, argv);
    watched w = {0};
    gr_error_t err = NULL;
    assert_int_equal(sbx_start(f->policy, &s, &w.grain, &err), 0);
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(uv_poll_init(&loop, &w.poll, sbx_grain_pidfd(w.grain)), 0);
    w.poll.data = &w;
    assert_int_equal(uv_poll_start(&w.poll, UV_READABLE, on_exit_readable), 0);
    uv_timer_t timer;
    uv_timer_init(&loop, &timer);
    timer.data = &w;
    uv_timer_start(&timer, on_timer, 100, 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(w.polls, 1);
    assert_int_equal(w.status, 137);
    assert_int_equal(uv_loop_close(&loop), 0);
    sbx_grain_free(w.grain);
}

/* ---- several threads starting grains at once share one policy */

typedef struct {
    const fixture *f;
    int ok;
} worker;

static void *start_many(void *arg)
{
    worker *w = arg;
    char *const argv[] = {"/bin/probe", "exit", "7", NULL};
    for (int i = 0; i < 20; i++) {
        sbx_spec s;
        spec_for(w->f, &s, argv);
        s.pids = 16; /* a cgroup per grain, created concurrently */
        sbx_grain *g = NULL;
        gr_error_t err = NULL;
        int status = -1;
        if (sbx_start(w->f->policy, &s, &g, &err) == 0 && sbx_wait(g, true, &status, &err) == 1 &&
            status == 7)
            w->ok++;
        gr_error_release(&err);
        sbx_grain_free(g);
    }
    return NULL;
}

static void test_threads(void **state)
{
    fixture *f = *state;
    pthread_t t[3];
    worker w[3];
    for (int i = 0; i < 3; i++) {
        w[i] = (worker){f, 0};
        assert_int_equal(pthread_create(&t[i], NULL, start_many, &w[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(w[i].ok, 20);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_sandbox_lib PROBE\n");
        return 2;
    }
    probe_path = argv[1];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_poll_kill_reap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_devnull_stdio_and_rpc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_status_and_free_running, setup, teardown),
        cmocka_unit_test_setup_teardown(test_start_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_uv_poll, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
