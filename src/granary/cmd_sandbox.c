/* `granary sandbox-run`: runs one command in a grain sandbox, for operators
 * and tests. stdin, stdout and stderr are this command's own (or, with --log,
 * stdout and stderr go through a pipe into a rotating log, as a grain's do);
 * fd 3 is one end of a socketpair whose other end this command holds. The
 * exit status is the command's (128 + N when signal N killed it); 125 means
 * the sandbox could not be built. */
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include "commands.h"
#include "sandbox.h"
#include "util.h"

#define EXIT_SANDBOX 125

static void usage(FILE *out)
{
    fprintf(out, "Usage: granary sandbox-run --package DIR --var DIR [OPTIONS] -- CMD [ARG...]\n\n"
                 "Runs CMD (an absolute path inside the grain) in a grain sandbox.\n\n"
                 "  --package DIR    read-only root of the grain\n"
                 "  --var DIR        the grain's storage, mounted at /var\n"
                 "  --bridge FILE    bound read-only at " SBX_BRIDGE_PATH "\n"
                 "  --env K=V        one environment entry (repeat); nothing else is passed\n"
                 "  --memory BYTES   memory limit\n"
                 "  --pids N         limit on processes and threads\n"
                 "  --cpu PERCENT    CPU limit, 100 = one core\n"
                 "  --tmp BYTES      size of /tmp (default 16 MiB)\n"
                 "  --log FILE       send stdout and stderr to FILE, rotated at 512 KiB\n"
                 "  --loopback-redirect\n"
                 "                   let the grain's loopback TCP skip the TCP/IP stack (BPF;\n"
                 "                   as granary run --grain-loopback-redirect on)\n"
                 "  --limits-mode    print how limits are enforced on this host and exit\n");
}

static int parse_size(const char *opt, const char *s, uint64_t *out)
{
    long v;
    gr_error_t err = NULL;
    if (gr_parse_long(s, 0, LONG_MAX, &v, &err) < 0) {
        fprintf(stderr, "granary sandbox-run: %s: %s\n", opt, gr_error_msg(err));
        gr_error_release(&err);
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static char *absolute(const char *what, const char *path)
{
    char *abs = realpath(path, NULL);
    if (!abs)
        fprintf(stderr, "granary sandbox-run: %s %s: %s\n", what, path, strerror(errno));
    return abs;
}

/* Copies the grain's output into the log until every writer has closed it. */
static int pump_log(int fd, sbx_log *log, gr_error_t *err)
{
    char buf[16384];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n == 0)
            return 1;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0
                                                     : gr_make_error(err, errno, "read log pipe");
        if (sbx_log_write(log, buf, (size_t)n, err) < 0)
            return -1;
    }
}

/* Waits for the grain, killing it on SIGINT, SIGTERM or SIGHUP, and feeds
 * the log meanwhile. Returns the grain's status, or -1 with err. */
static int supervise(sbx_grain *g, int sigfd, int log_fd, sbx_log *log, gr_error_t *err)
{
    for (;;) {
        struct pollfd pfd[3] = {
            {sbx_grain_pidfd(g), POLLIN, 0}, {sigfd, POLLIN, 0}, {log_fd, POLLIN, 0}};
        if (poll(pfd, log_fd >= 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            return gr_make_error(err, errno, "poll");
        }
        if (pfd[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof si) > 0 && sbx_kill(g, err) < 0)
                return -1;
        }
        if (log_fd >= 0 && (pfd[2].revents & (POLLIN | POLLHUP))) {
            int rc = pump_log(log_fd, log, err);
            if (rc < 0)
                return -1;
            if (rc == 1)
                log_fd = -1;
        }
        if (pfd[0].revents & POLLIN) {
            int status;
            if (sbx_wait(g, true, &status, err) < 0)
                return -1;
            /* Every writer of the pipe was in the grain, so it is at EOF now. */
            while (log_fd >= 0) {
                int rc = pump_log(log_fd, log, err);
                if (rc < 0)
                    return -1;
                if (rc == 1)
                    break;
            }
            return status;
        }
    }
}

int cmd_sandbox_run(int argc, char **argv)
{
    static const struct option opts[] = {
        {"package", required_argument, NULL, 'p'}, {"var", required_argument, NULL, 'v'},
        {"bridge", required_argument, NULL, 'b'},  {"env", required_argument, NULL, 'e'},
        {"memory", required_argument, NULL, 'm'},  {"pids", required_argument, NULL, 'n'},
        {"cpu", required_argument, NULL, 'c'},     {"tmp", required_argument, NULL, 't'},
        {"log", required_argument, NULL, 'l'},     {"limits-mode", no_argument, NULL, 'L'},
        {"loopback-redirect", no_argument, NULL, 'R'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    sbx_spec spec;
    sbx_spec_init(&spec);
    _cleanup_free_ char *package = NULL, *var = NULL, *bridge = NULL;
    _cleanup_free_ char **env = gr_calloc((size_t)argc + 1, sizeof(char *));
    size_t n_env = 0;
    const char *log_path = NULL;
    bool limits_mode = false, loopback_redirect = false;
    uint64_t cpu = 0;
    int c;
    optind = 0;
    /* argv[0] is the first option here, so getopt must not skip it. */
    char **args = gr_calloc((size_t)argc + 2, sizeof(char *));
    args[0] = "sandbox-run";
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    int nargs = argc + 1;
    while ((c = getopt_long(nargs, args, "+h", opts, NULL)) != -1) {
        switch (c) {
        case 'p':
            free(package);
            if (!(package = absolute("package", optarg)))
                goto usage_error;
            break;
        case 'v':
            free(var);
            if (!(var = absolute("var", optarg)))
                goto usage_error;
            break;
        case 'b':
            free(bridge);
            if (!(bridge = absolute("bridge", optarg)))
                goto usage_error;
            break;
        case 'e':
            env[n_env++] = optarg;
            break;
        case 'm':
            if (parse_size("--memory", optarg, &spec.memory_bytes) < 0)
                goto usage_error;
            break;
        case 'n':
            if (parse_size("--pids", optarg, &spec.pids) < 0)
                goto usage_error;
            break;
        case 'c':
            if (parse_size("--cpu", optarg, &cpu) < 0 || cpu > 100000)
                goto usage_error;
            spec.cpu_percent = (uint32_t)cpu;
            break;
        case 't':
            if (parse_size("--tmp", optarg, &spec.tmp_bytes) < 0)
                goto usage_error;
            break;
        case 'l':
            log_path = optarg;
            break;
        case 'L':
            limits_mode = true;
            break;
        case 'R':
            loopback_redirect = true;
            break;
        case 'h':
            usage(stdout);
            free(args);
            return 0;
        default:
            goto usage_error;
        }
    }
    gr_error_t err = NULL;
    sbx_policy *policy = NULL;
    if (limits_mode) {
        free(args);
        if (sbx_policy_new(&policy, &err) < 0) {
            fprintf(stderr, "granary sandbox-run: %s\n", gr_error_msg(err));
            gr_error_release(&err);
            return EXIT_SANDBOX;
        }
        printf("%s\n", sbx_limits_mode_name(sbx_policy_limits_mode(policy)));
        sbx_policy_free(policy);
        return 0;
    }
    if (optind >= nargs || !package || !var) {
        fprintf(stderr, "granary sandbox-run: --package, --var and a command are required\n");
        goto usage_error;
    }
    spec.package_dir = package;
    spec.var_dir = var;
    spec.bridge_path = bridge;
    spec.argv = args + optind;
    spec.envp = env;
    spec.stdio[0] = 0;
    spec.stdio[1] = 1;
    spec.stdio[2] = 2;

    int status = EXIT_SANDBOX;
    int sv[2] = {-1, -1}, logpipe[2] = {-1, -1}, sigfd = -1;
    sbx_log *log = NULL;
    sbx_grain *g = NULL;
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    sigprocmask(SIG_BLOCK, &stop, NULL);
    if ((sigfd = signalfd(-1, &stop, SFD_CLOEXEC)) < 0) {
        gr_make_error(&err, errno, "signalfd");
        goto out;
    }
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        gr_make_error(&err, errno, "socketpair");
        goto out;
    }
    spec.rpc_fd = sv[1];
    if (log_path) {
        if (sbx_log_open(log_path, 0, &log, &err) < 0)
            goto out;
        if (pipe2(logpipe, O_CLOEXEC) < 0) {
            gr_make_error(&err, errno, "pipe");
            goto out;
        }
        fcntl(logpipe[0], F_SETFL, O_NONBLOCK);
        spec.stdio[1] = spec.stdio[2] = logpipe[1];
    }
    if (sbx_policy_new(&policy, &err) < 0 ||
        (loopback_redirect && sbx_policy_enable_loopback_redirect(policy, &err) < 0) ||
        sbx_start(policy, &spec, &g, &err) < 0)
        goto out;
    /* The grain holds its own ends now. */
    gr_closep(&sv[1]);
    gr_closep(&logpipe[1]);
    int rc = supervise(g, sigfd, logpipe[0], log, &err);
    if (rc >= 0)
        status = rc;
out:
    if (err) {
        fprintf(stderr, "granary sandbox-run: %s\n", gr_error_msg(err));
        gr_error_release(&err);
    }
    sbx_grain_free(g);
    sbx_policy_free(policy);
    sbx_log_close(log);
    for (int i = 0; i < 2; i++) {
        gr_closep(&sv[i]);
        gr_closep(&logpipe[i]);
    }
    gr_closep(&sigfd);
    free(args);
    return status;
usage_error:
    usage(stderr);
    free(args);
    return 2;
}
