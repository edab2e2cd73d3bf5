/* Process state of the grain's first process: rlimits, the fd layout
 * (0-2 stdio, 3 the RPC socket, nothing else survives exec), capabilities
 * and signal dispositions. */
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/close_range.h>
#include <linux/securebits.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>

#include "sandbox_internal.h"
#include "util.h"

static void set_limit(sbx__plan *plan, int which, rlim_t soft, rlim_t hard)
{
    /* Raising a hard limit needs privilege outside the user namespace. */
    struct rlimit cur;
    if (getrlimit(which, &cur) == 0) {
        if (hard > cur.rlim_max)
            hard = cur.rlim_max;
        if (soft > hard)
            soft = hard;
    }
    plan->rlim[which].rlim_cur = soft;
    plan->rlim[which].rlim_max = hard;
    plan->rlim_set[which] = true;
}

void sbx__process_prepare(sbx__plan *plan, const sbx_spec *spec, sbx_limits_mode mode)
{
    set_limit(plan, RLIMIT_NOFILE, 1024, 4096);
    set_limit(plan, RLIMIT_CORE, 0, 0);
    set_limit(plan, RLIMIT_RTPRIO, 0, 0);
    set_limit(plan, RLIMIT_MEMLOCK, 64 << 10, 64 << 10);
    if (mode == SBX_LIMITS_RLIMIT) {
        if (spec->memory_bytes)
            set_limit(plan, RLIMIT_AS, spec->memory_bytes, spec->memory_bytes);
        if (spec->pids)
            set_limit(plan, RLIMIT_NPROC, spec->pids, spec->pids);
    }
    for (int i = 0; i < 3; i++)
        plan->stdio[i] = spec->stdio[i];
    plan->rpc_fd = spec->rpc_fd;
    plan->argv = spec->argv;
    plan->envp = spec->envp;
}

SBX__CHILD int sbx__rlimits_apply(const sbx__plan *plan)
{
    for (int i = 0; i < RLIM_NLIMITS; i++)
        if (plan->rlim_set[i] && syscall(SYS_prlimit64, 0, i, &plan->rlim[i], NULL) < 0)
            return -errno;
    return 0;
}

SBX__CHILD int sbx__fds_apply(const sbx__plan *plan)
{
    int src[4], moved[4];
    for (int i = 0; i < 3; i++)
        src[i] = plan->stdio[i] >= 0 ? plan->stdio[i] : plan->devnull_fd;
    src[3] = plan->rpc_fd;
    /* Move every source out of the way first, so that a source numbered 0-3
     * is not overwritten before it is used. */
    for (int i = 0; i < 4; i++) {
        moved[i] = -1;
        if (src[i] >= 0 && (moved[i] = (int)syscall(SYS_fcntl, src[i], F_DUPFD_CLOEXEC, 64)) < 0)
            return -errno;
    }
    for (int i = 0; i < 4; i++)
        if (moved[i] >= 0 && syscall(SYS_dup3, moved[i], i, 0) < 0)
            return -errno;
    /* Everything else, whatever the daemon's threads had open, closes at exec. */
    unsigned first = moved[3] >= 0 ? 4 : 3;
    if (syscall(SYS_close_range, first, ~0u, CLOSE_RANGE_CLOEXEC) < 0)
        return -errno;
    return 0;
}

SBX__CHILD int sbx__caps_apply(const sbx__plan *plan)
{
    long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (syscall(SYS_prctl, PR_SET_SECUREBITS, bits, 0L, 0L, 0L) < 0)
        return -errno;
    for (int cap = 0; cap <= plan->last_cap; cap++)
        if (syscall(SYS_prctl, PR_CAPBSET_DROP, (long)cap, 0L, 0L, 0L) < 0 && errno != EINVAL)
            return -errno;
    if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0L, 0L, 0L) < 0)
        return -errno;
    struct __user_cap_header_struct hdr = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct data[2];
    for (int i = 0; i < 2; i++)
        data[i].effective = data[i].permitted = data[i].inheritable = 0;
    if (syscall(SYS_capset, &hdr, data) < 0)
        return -errno;
    return 0;
}

/* The kernel's struct sigaction on x86-64. */
struct ksigaction {
    void *handler;
    unsigned long flags;
    void *restorer;
    uint64_t mask;
};

SBX__CHILD int sbx__signals_apply(void)
{
    struct ksigaction dfl = {SIG_DFL, 0, NULL, 0};
    for (int sig = 1; sig <= 64; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            syscall(SYS_rt_sigaction, sig, &dfl, NULL, 8);
    uint64_t empty = 0;
    if (syscall(SYS_rt_sigprocmask, SIG_SETMASK, &empty, NULL, 8) < 0)
        return -errno;
    syscall(SYS_umask, 0007);
    return 0;
}
