/* Driver for bench/sandbox-start. Modes, each printing one number:
 *   lib N PKG VAR CMD...   mean seconds to sbx_start CMD in a grain and reap it
 *   spawn N CMD...         mean seconds to posix_spawn CMD and reap it (for
 *                          bubblewrap and the granary CLI, with the same spawner)
 *   memory PKG VAR CMD...  bytes charged to the grain's cgroup while CMD runs */
#include <spawn.h>
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

static int run_memory(char **args)
{
    sbx_policy *p;
    gr_error_t err = NULL;
    if (sbx_policy_new(&p, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    sbx_spec spec;
    spec_for(&spec, args);
    spec.memory_bytes = 256u << 20; /* a limit, so that the grain has a memory cgroup */
    sbx_grain *g;
    if (sbx_start(p, &spec, &g, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    struct timespec ts = {0, 200000000};
    nanosleep(&ts, NULL);
    uint64_t bytes;
    if (sbx_grain_memory(g, &bytes, &err) < 0)
        gr_die("%s", gr_error_msg(err));
    printf("%llu\n", (unsigned long long)bytes);
    sbx_grain_free(g);
    sbx_policy_free(p);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 6 && strcmp(argv[1], "lib") == 0)
        return run_lib(count(argv[2]), argv + 3);
    if (argc >= 4 && strcmp(argv[1], "spawn") == 0)
        return run_spawn(count(argv[2]), argv + 3);
    if (argc >= 5 && strcmp(argv[1], "memory") == 0)
        return run_memory(argv + 2);
    fprintf(stderr, "usage: bench-sandbox-start lib N PKG VAR CMD... | spawn N CMD... | "
                    "memory PKG VAR CMD...\n");
    return 2;
}
