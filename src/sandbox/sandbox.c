/* Starting, killing and reaping grains. sbx_start prepares everything that
 * allocates, then makes one clone (vfork-style: the child borrows the
 * daemon's memory and the calling thread waits until it execs) into new
 * namespaces; the child runs the modules' apply steps in a fixed order and
 * execs. A failed step is written into the shared plan for the parent. */
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "sandbox_internal.h"
#include "util.h"

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define CHILD_STACK (256u << 10)

struct sbx_policy {
    struct sock_fprog prog;
    sbx__cgroups_host cg;
    int self_pidfd;
    int last_cap;
};

struct sbx_grain {
    pid_t pid;
    int pidfd;
    bool reaped;
    int status;
    sbx_limits_mode mode;
    sbx__cgroups_grain cg;
};

static int read_last_cap(void)
{
    _cleanup_free_ char *text = NULL;
    size_t len;
    long v;
    gr_error_t err = NULL;
    if (gr_read_file("/proc/sys/kernel/cap_last_cap", 64, &text, &len, &err) < 0 ||
        gr_parse_long(gr_strstrip(text), 0, 255, &v, &err) < 0) {
        gr_error_release(&err);
        return 63; /* dropping a cap the kernel does not know is harmless */
    }
    return (int)v;
}

int sbx_policy_new(sbx_policy **out, gr_error_t *err)
{
    sbx_policy *p = gr_calloc(1, sizeof(*p));
    p->self_pidfd = -1;
    if (sbx__seccomp_compile(&p->prog, err) < 0) {
        free(p);
        return gr_error_prefix(err, "sandbox policy");
    }
    p->self_pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (p->self_pidfd < 0) {
        gr_make_error(err, errno, "sandbox policy: pidfd_open");
        sbx_policy_free(p);
        return -1;
    }
    fcntl(p->self_pidfd, F_SETFD, FD_CLOEXEC);
    p->last_cap = read_last_cap();
    sbx__cgroups_probe(&p->cg);
    *out = p;
    return 0;
}

void sbx_policy_free(sbx_policy *p)
{
    if (!p)
        return;
    free(p->prog.filter);
    sbx__cgroups_host_release(&p->cg);
    gr_closep(&p->self_pidfd);
    free(p);
}

sbx_limits_mode sbx_policy_limits_mode(const sbx_policy *p)
{
    return p->cg.mode;
}

const char *sbx_limits_mode_name(sbx_limits_mode m)
{
    switch (m) {
    case SBX_LIMITS_CGROUP_V2:
        return "cgroup-v2";
    case SBX_LIMITS_CGROUP_V1:
        return "cgroup-v1";
    case SBX_LIMITS_RLIMIT:
        break;
    }
    return "rlimit";
}

int sbx_policy_enable_loopback_redirect(sbx_policy *p, gr_error_t *err)
{
    return sbx__cgroups_enable_loopback(&p->cg, err);
}

bool sbx_policy_loopback_redirect(const sbx_policy *p)
{
    return p->cg.loopback != NULL;
}

size_t sbx_policy_filter_len(const sbx_policy *p)
{
    return p->prog.len;
}

/* ---- the child */

SBX__CHILD __attribute__((noreturn)) static void child_fail(sbx__plan *plan, const char *step,
                                                            const char *detail, int e)
{
    plan->fail_step = step;
    plan->fail_detail = detail;
    plan->fail_errno = e;
    for (;;)
        syscall(SYS_exit_group, 127);
}

#define STEP(name, detail, expr)                                                                   \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ < 0)                                                                               \
            child_fail(plan, name, detail, -rc_);                                                  \
    } while (0)

SBX__CHILD static int parent_alive(const sbx__plan *plan)
{
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0L, 0L, 0L) < 0)
        return -errno;
    /* The daemon may have died before the death signal was armed. */
    struct pollfd pfd = {plan->parent_pidfd, POLLIN, 0};
    if (syscall(SYS_poll, &pfd, 1, 0) != 0)
        return -ESRCH;
    return 0;
}

SBX__CHILD static int child_main(void *arg)
{
    sbx__plan *plan = arg;
    const char *where = NULL;
    STEP("parent-death signal", NULL, parent_alive(plan));
    STEP("cgroups", NULL, sbx__cgroups_apply(&plan->cg));
    STEP("user namespace", NULL, sbx__users_apply(plan));
    STEP("network", "sysctls", sbx__net_sysctls_apply(plan));
    int rc = sbx__mounts_apply(&plan->mounts, &where);
    if (rc < 0)
        child_fail(plan, "mounts", where, -rc);
    STEP("network", "lo", sbx__net_apply(plan));
    STEP("rlimits", NULL, sbx__rlimits_apply(plan));
    STEP("file descriptors", NULL, sbx__fds_apply(plan));
    STEP("capabilities", NULL, sbx__caps_apply(plan));
    STEP("signals", NULL, sbx__signals_apply());
    STEP("seccomp", NULL, sbx__seccomp_apply(plan->seccomp));
    syscall(SYS_execve, plan->argv[0], plan->argv, plan->envp);
    child_fail(plan, "execve", plan->argv[0], errno);
}

/* ---- the daemon side */

static void plan_release(sbx__plan *plan)
{
    sbx__cgroups_close_fds(&plan->cg);
    sbx__mounts_release(&plan->mounts);
    gr_closep(&plan->devnull_fd);
}

int sbx_start(const sbx_policy *p, const sbx_spec *spec, sbx_grain **out, gr_error_t *err)
{
    if (sbx_spec_validate(spec, err) < 0)
        return -1;
    sbx__plan *plan = gr_calloc(1, sizeof(*plan));
    plan->devnull_fd = -1;
    plan->seccomp = &p->prog;
    plan->last_cap = p->last_cap;
    plan->parent_pidfd = p->self_pidfd;
    sbx__users_prepare(plan);
    sbx__net_prepare(plan);
    plan->no_fastopen = p->cg.loopback != NULL;
    sbx__process_prepare(plan, spec, p->cg.mode);
    if (sbx__mounts_prepare(spec, &plan->mounts, err) < 0) {
        free(plan);
        return gr_error_prefix(err, "sandbox");
    }
    if (sbx__cgroups_prepare(&p->cg, spec, &plan->cg, err) < 0) {
        plan_release(plan);
        free(plan);
        return gr_error_prefix(err, "sandbox");
    }
    plan->devnull_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    void *stack = mmap(NULL, CHILD_STACK, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
    if (plan->devnull_fd < 0 || stack == MAP_FAILED) {
        gr_make_error(err, errno, "sandbox: %s", stack == MAP_FAILED ? "mmap" : "open /dev/null");
        goto fail;
    }

    /* No signal handler of the daemon may run on the borrowed memory. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int pidfd = -1;
    int flags = CLONE_VM | CLONE_VFORK | CLONE_PIDFD | CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID |
                CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS | SIGCHLD;
    pid_t pid = clone(child_main, (char *)stack + CHILD_STACK, flags, plan, &pidfd);
    int clone_errno = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    munmap(stack, CHILD_STACK);
    stack = MAP_FAILED;
    if (pid < 0) {
        gr_make_error(err, clone_errno, "sandbox: clone");
        goto fail;
    }
    fcntl(pidfd, F_SETFD, FD_CLOEXEC);
    sbx__cgroups_close_fds(&plan->cg);
    sbx_grain *g = gr_calloc(1, sizeof(*g));
    g->pid = pid;
    g->pidfd = pidfd;
    g->cg = plan->cg;
    g->mode = p->cg.mode;
    for (int i = 0; i < SBX__MAX_CGROUPS; i++)
        plan->cg.dir[i] = NULL;
    if (plan->fail_step) {
        gr_make_error(err, plan->fail_errno, "sandbox: %s%s%s", plan->fail_step,
                      plan->fail_detail ? " " : "", plan->fail_detail ? plan->fail_detail : "");
        sbx_grain_free(g);
        plan_release(plan);
        free(plan);
        return -1;
    }
    plan_release(plan);
    free(plan);
    *out = g;
    return 0;
fail:
    if (stack != MAP_FAILED)
        munmap(stack, CHILD_STACK);
    sbx__cgroups_close_fds(&plan->cg);
    sbx__cgroups_remove(&plan->cg);
    plan_release(plan);
    free(plan);
    return -1;
}

pid_t sbx_grain_pid(const sbx_grain *g)
{
    return g->pid;
}

int sbx_grain_pidfd(const sbx_grain *g)
{
    return g->pidfd;
}

int sbx_grain_memory(const sbx_grain *g, uint64_t *bytes, gr_error_t *err)
{
    if (g->mode == SBX_LIMITS_RLIMIT || !g->cg.dir[0])
        return gr_make_error(err, 0, "grain %ld has no memory cgroup", (long)g->pid);
    _cleanup_free_ char *path =
        gr_asprintf("%s/%s", g->cg.dir[0],
                    g->mode == SBX_LIMITS_CGROUP_V2 ? "memory.current" : "memory.usage_in_bytes");
    _cleanup_free_ char *text = NULL;
    size_t len;
    long v;
    if (gr_read_file(path, 64, &text, &len, err) < 0 ||
        gr_parse_long(gr_strstrip(text), 0, LONG_MAX, &v, err) < 0)
        return gr_error_prefix(err, "grain memory");
    *bytes = (uint64_t)v;
    return 0;
}

int sbx_kill(sbx_grain *g, gr_error_t *err)
{
    if (g->reaped)
        return 0;
    if (syscall(SYS_pidfd_send_signal, g->pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
        return gr_make_error(err, errno, "kill grain %ld", (long)g->pid);
    return 0;
}

int sbx_wait(sbx_grain *g, bool block, int *status, gr_error_t *err)
{
    if (!g->reaped) {
        siginfo_t info;
        memset(&info, 0, sizeof info);
        int rc;
        for (;;) {
            rc = waitid((idtype_t)P_PIDFD, (id_t)g->pidfd, &info, WEXITED | (block ? 0 : WNOHANG));
            if (rc == 0)
                break;
            if (errno == EINTR)
                continue;
            /* A pidfd that a libuv poll watches is non-blocking, and then
             * waitid answers EAGAIN while the grain runs: wait for it here. */
            if (!block || errno != EAGAIN)
                break;
            struct pollfd p = {.fd = g->pidfd, .events = POLLIN};
            if (poll(&p, 1, -1) < 0 && errno != EINTR)
                break;
        }
        if (rc < 0)
            return gr_make_error(err, errno, "wait for grain %ld", (long)g->pid);
        if (info.si_pid == 0)
            return 0;
        g->status = info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
        g->reaped = true;
        /* pid 1 of a PID namespace is reaped only after every other process
         * in it is gone, so the cgroups are empty now. */
        sbx__cgroups_remove(&g->cg);
    }
    *status = g->status;
    return 1;
}

void sbx_grain_free(sbx_grain *g)
{
    if (!g)
        return;
    if (!g->reaped) {
        gr_error_t err = NULL;
        int status;
        if (sbx_kill(g, &err) < 0 || sbx_wait(g, true, &status, &err) < 0) {
            gr_warn("%s", gr_error_msg(err));
            gr_error_release(&err);
        }
    }
    gr_closep(&g->pidfd);
    sbx__cgroups_remove(&g->cg);
    free(g);
}

/* ---- specs */

void sbx_spec_init(sbx_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->rpc_fd = -1;
    spec->stdio[0] = spec->stdio[1] = spec->stdio[2] = -1;
}

static int check_dir(const char *what, const char *path, gr_error_t *err)
{
    if (!path || path[0] != '/')
        return gr_make_error(err, 0, "%s must be an absolute path", what);
    struct stat st;
    if (stat(path, &st) < 0)
        return gr_make_error(err, errno, "%s %s", what, path);
    if (!S_ISDIR(st.st_mode))
        return gr_make_error(err, 0, "%s %s is not a directory", what, path);
    return 0;
}

static int check_fd(const char *what, int fd, gr_error_t *err)
{
    if (fd >= 0 && fcntl(fd, F_GETFD) < 0)
        return gr_make_error(err, errno, "%s fd %d", what, fd);
    if (fd < -1)
        return gr_make_error(err, 0, "%s fd %d is invalid", what, fd);
    return 0;
}

int sbx_spec_validate(const sbx_spec *spec, gr_error_t *err)
{
    if (check_dir("package directory", spec->package_dir, err) < 0 ||
        check_dir("var directory", spec->var_dir, err) < 0)
        return -1;
    if (spec->bridge_path) {
        struct stat st;
        if (spec->bridge_path[0] != '/')
            return gr_make_error(err, 0, "bridge must be an absolute path");
        if (stat(spec->bridge_path, &st) < 0)
            return gr_make_error(err, errno, "bridge %s", spec->bridge_path);
        if (!S_ISREG(st.st_mode))
            return gr_make_error(err, 0, "bridge %s is not a regular file", spec->bridge_path);
    }
    if (!spec->argv || !spec->argv[0])
        return gr_make_error(err, 0, "no command to run");
    if (spec->argv[0][0] != '/')
        return gr_make_error(err, 0, "command %s must be an absolute path inside the grain",
                             spec->argv[0]);
    if (!spec->envp)
        return gr_make_error(err, 0, "no environment (give an empty list for none)");
    for (size_t i = 0; spec->envp[i]; i++) {
        const char *eq = strchr(spec->envp[i], '=');
        if (!eq || eq == spec->envp[i])
            return gr_make_error(err, 0, "environment entry '%s' is not NAME=VALUE", spec->envp[i]);
    }
    if (check_fd("rpc", spec->rpc_fd, err) < 0 || check_fd("stdin", spec->stdio[0], err) < 0 ||
        check_fd("stdout", spec->stdio[1], err) < 0 || check_fd("stderr", spec->stdio[2], err) < 0)
        return -1;
    if (spec->memory_bytes && spec->memory_bytes < (1u << 20))
        return gr_make_error(err, 0, "memory limit %llu is below 1 MiB",
                             (unsigned long long)spec->memory_bytes);
    if (spec->cpu_percent > 100000)
        return gr_make_error(err, 0, "cpu limit %u%% is too large", spec->cpu_percent);
    if (spec->tmp_bytes && spec->tmp_bytes < 4096)
        return gr_make_error(err, 0, "tmp size %llu is below 4 KiB",
                             (unsigned long long)spec->tmp_bytes);
    return 0;
}
