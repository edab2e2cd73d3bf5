/* Driver for bench/sandbox-start. Modes, each printing one number:
 *   lib N PKG VAR CMD...   mean seconds to sbx_start CMD in a grain and reap it
 *   spawn N CMD...         mean seconds to posix_spawn CMD and reap it (for
 *                          bubblewrap and the granary CLI, with the same spawner)
 *   hold K USAGE grain|plain PKG VAR CMD ARG
 *                          bytes per process by which the memory cgroup whose
 *                          usage file is USAGE (the driver's own) grows while
 *                          K grains (or K plain copies of PKG/CMD) run */
#include <signal.h>
#include <spawn.h>
#include <limits.h>
#include <sys/wait.h>

#include "sandbox.h"
#include "util.h"

extern char **environ;

static double now(void)
{
    return (double)gr_monotonic_ns() / 1e9;
}

static long count(const char *s)
{
    long n;
    gr_error_t err = NULL;
    if (gr_parse_long(s, 1, 10000000, &n, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    return n;
}

static void spec_for(sbx_spec *spec, char **args)
{
    static char *const no_env[] = {NULL};
    sbx_spec_init(spec);
    spec->package_dir = args[0];
    spec->var_dir = args[1];
    spec->argv = args + 2;
    spec->envp = no_env;
}

static int run_lib(long n, char **args)
{
    sbx_policy *p;
    gr_error_t err = NULL;
    if (sbx_policy_new(&p, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    sbx_spec spec;
    spec_for(&spec, args);
    double t0 = now(), in_start = 0;
    for (long i = 0; i < n; i++) {
        sbx_grain *g;
        int status;
        double t = now();
        if (sbx_start(p, &spec, &g, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        in_start += now() - t;
        if (sbx_wait(g, true, &status, &err) < 0)
            gr_die("%s", gr_error_msg(err));
        if (status != 0)
            gr_die("grain exited with %d", status);
        sbx_grain_free(g);
    }
    double total = (now() - t0) / (double)n;
    /* stderr: how much of it is sbx_start (to exec) and the rest (run, exit, teardown). */
    fprintf(stderr, "start %.9f rest %.9f\n", in_start / (double)n, total - in_start / (double)n);
    printf("%.9f\n", total);
    sbx_policy_free(p);
    return 0;
}

static int run_spawn(long n, char **args)
{
    double t0 = now();
    for (long i = 0; i < n; i++) {
        pid_t pid;
        int rc = posix_spawn(&pid, args[0], NULL, NULL, args, environ);
        if (rc != 0)
            gr_die("spawn %s: %s", args[0], strerror(rc));
        int st;
        if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            gr_die("%s failed (status %#x)", args[0], st);
    }
    printf("%.9f\n", (now() - t0) / (double)n);
    return 0;
}

static uint64_t read_usage(const char *path)
{
    _cleanup_free_ char *text = NULL;
    size_t len;
    long v;
    gr_error_t err = NULL;
    if (gr_read_file(path, 64, &text, &len, &err) < 0 ||
        gr_parse_long(gr_strstrip(text), 0, LONG_MAX, &v, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    return (uint64_t)v;
}

/* Run inside a fresh memory cgroup whose usage file is `usage`: starts k
 * grains (or k plain processes) and prints how much the cgroup grew per
 * process, kernel objects of clone and namespaces included. */
static int run_hold(long k, const char *usage, bool sandboxed, char **args)
{
    sbx_policy *p = NULL;
    gr_error_t err = NULL;
    if (sandboxed && sbx_policy_new(&p, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    sbx_spec spec;
    spec_for(&spec, args);
    sbx_grain **grains = gr_calloc((size_t)k, sizeof(*grains));
    pid_t *pids = gr_calloc((size_t)k, sizeof(*pids));
    struct timespec settle = {0, 300000000};
    nanosleep(&settle, NULL);
    uint64_t before = read_usage(usage);
    for (long i = 0; i < k; i++) {
        if (sandboxed) {
            if (sbx_start(p, &spec, &grains[i], &err) < 0)
                gr_die("%s", gr_error_msg(err));
        } else {
            /* The same program, unsandboxed, from the package copy. */
            char *path = gr_asprintf("%s%s", args[0], args[2]);
            char *argv2[] = {path, args[3], NULL};
            int rc = posix_spawn(&pids[i], path, NULL, NULL, argv2, environ);
            free(path);
            if (rc)
                gr_die("spawn: %s", strerror(rc));
        }
    }
    nanosleep(&settle, NULL);
    uint64_t after = read_usage(usage);
    printf("%.0f\n", ((double)after - (double)before) / (double)k);
    for (long i = 0; i < k; i++) {
        if (sandboxed) {
            sbx_grain_free(grains[i]);
        } else {
            kill(pids[i], SIGKILL);
            waitpid(pids[i], NULL, 0);
        }
    }
    free(grains);
    free(pids);
    sbx_policy_free(p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "lib") == 0)
        return run_lib(count(argv[2]), argv + 3);
    if (argc >= 4 && strcmp(argv[1], "spawn") == 0)
        return run_spawn(count(argv[2]), argv + 3);
    if (argc >= 9 && strcmp(argv[1], "hold") == 0)
        return run_hold(count(argv[2]), argv[3], strcmp(argv[4], "grain") == 0, argv + 5);
    fprintf(stderr, "usage: bench-sandbox-start lib N PKG VAR CMD... | spawn N CMD... | "
                    "hold K USAGE grain|plain PKG VAR CMD ARG\n");
    return 2;
}
