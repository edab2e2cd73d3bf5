/* The seccomp allowlist of every grain, compiled once per process with
 * libseccomp and exported as BPF, so the child loads it with one syscall.
 * docs/sandbox.md gives the reason for every group; keep the two in step. */
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>

#include "sandbox_internal.h"
#include "util.h"

/* Allowed without conditions. */
static const int allow_plain[] = {
    /* files and directories, within what the mounts expose */
    SCMP_SYS(read),
    SCMP_SYS(write),
    SCMP_SYS(readv),
    SCMP_SYS(writev),
    SCMP_SYS(pread64),
    SCMP_SYS(pwrite64),
    SCMP_SYS(preadv),
    SCMP_SYS(pwritev),
    SCMP_SYS(preadv2),
    SCMP_SYS(pwritev2),
    SCMP_SYS(open),
    SCMP_SYS(openat),
    SCMP_SYS(openat2),
    SCMP_SYS(creat),
    SCMP_SYS(close),
    SCMP_SYS(close_range),
    SCMP_SYS(stat),
    SCMP_SYS(fstat),
    SCMP_SYS(lstat),
    SCMP_SYS(newfstatat),
    SCMP_SYS(statx),
    SCMP_SYS(statfs),
    SCMP_SYS(fstatfs),
    SCMP_SYS(lseek),
    SCMP_SYS(access),
    SCMP_SYS(faccessat),
    SCMP_SYS(faccessat2),
    SCMP_SYS(getdents),
    SCMP_SYS(getdents64),
    SCMP_SYS(getcwd),
    SCMP_SYS(chdir),
    SCMP_SYS(fchdir),
    SCMP_SYS(rename),
    SCMP_SYS(renameat),
    SCMP_SYS(renameat2),
    SCMP_SYS(mkdir),
    SCMP_SYS(mkdirat),
    SCMP_SYS(rmdir),
    SCMP_SYS(link),
    SCMP_SYS(linkat),
    SCMP_SYS(unlink),
    SCMP_SYS(unlinkat),
    SCMP_SYS(symlink),
    SCMP_SYS(symlinkat),
    SCMP_SYS(readlink),
    SCMP_SYS(readlinkat),
    SCMP_SYS(chmod),
    SCMP_SYS(fchmod),
    SCMP_SYS(fchmodat),
    SCMP_SYS(umask),
    SCMP_SYS(truncate),
    SCMP_SYS(ftruncate),
    SCMP_SYS(fallocate),
    SCMP_SYS(fsync),
    SCMP_SYS(fdatasync),
    SCMP_SYS(sync_file_range),
    SCMP_SYS(syncfs),
    SCMP_SYS(flock),
    SCMP_SYS(fcntl),
    SCMP_SYS(dup),
    SCMP_SYS(dup2),
    SCMP_SYS(dup3),
    SCMP_SYS(pipe),
    SCMP_SYS(pipe2),
    SCMP_SYS(utime),
    SCMP_SYS(utimes),
    SCMP_SYS(utimensat),
    SCMP_SYS(futimesat),
    SCMP_SYS(sendfile),
    SCMP_SYS(splice),
    SCMP_SYS(tee),
    SCMP_SYS(copy_file_range),
    SCMP_SYS(readahead),
    SCMP_SYS(fadvise64),
    SCMP_SYS(memfd_create),
    SCMP_SYS(inotify_init),
    SCMP_SYS(inotify_init1),
    SCMP_SYS(inotify_add_watch),
    SCMP_SYS(inotify_rm_watch),
    /* memory */
    SCMP_SYS(brk),
    SCMP_SYS(mmap),
    SCMP_SYS(munmap),
    SCMP_SYS(mremap),
    SCMP_SYS(mprotect),
    SCMP_SYS(msync),
    SCMP_SYS(mincore),
    SCMP_SYS(madvise),
    SCMP_SYS(membarrier),
    /* System V IPC, private to the grain's IPC namespace */
    SCMP_SYS(shmget),
    SCMP_SYS(shmat),
    SCMP_SYS(shmdt),
    SCMP_SYS(shmctl),
    SCMP_SYS(semget),
    SCMP_SYS(semop),
    SCMP_SYS(semtimedop),
    SCMP_SYS(semctl),
    SCMP_SYS(msgget),
    SCMP_SYS(msgsnd),
    SCMP_SYS(msgrcv),
    SCMP_SYS(msgctl),
    /* processes and threads (clone is conditional below) */
    SCMP_SYS(fork),
    SCMP_SYS(vfork),
    SCMP_SYS(execve),
    SCMP_SYS(execveat),
    SCMP_SYS(exit),
    SCMP_SYS(exit_group),
    SCMP_SYS(wait4),
    SCMP_SYS(waitid),
    SCMP_SYS(set_tid_address),
    SCMP_SYS(set_robust_list),
    SCMP_SYS(futex),
    SCMP_SYS(futex_waitv),
    SCMP_SYS(getpid),
    SCMP_SYS(gettid),
    SCMP_SYS(getppid),
    SCMP_SYS(getpgrp),
    SCMP_SYS(getpgid),
    SCMP_SYS(setpgid),
    SCMP_SYS(getsid),
    SCMP_SYS(setsid),
    SCMP_SYS(getuid),
    SCMP_SYS(geteuid),
    SCMP_SYS(getgid),
    SCMP_SYS(getegid),
    SCMP_SYS(getresuid),
    SCMP_SYS(getresgid),
    SCMP_SYS(getgroups),
    SCMP_SYS(capget),
    SCMP_SYS(sched_yield),
    SCMP_SYS(sched_getaffinity),
    SCMP_SYS(sched_getparam),
    SCMP_SYS(sched_getscheduler),
    SCMP_SYS(sched_get_priority_max),
    SCMP_SYS(sched_get_priority_min),
    SCMP_SYS(getpriority),
    SCMP_SYS(setpriority),
    SCMP_SYS(getrlimit),
    SCMP_SYS(setrlimit),
    SCMP_SYS(getrusage),
    SCMP_SYS(uname),
    SCMP_SYS(sysinfo),
    SCMP_SYS(times),
    SCMP_SYS(getcpu),
    SCMP_SYS(getrandom),
    SCMP_SYS(restart_syscall),
    /* signals, within the grain's PID namespace */
    SCMP_SYS(rt_sigaction),
    SCMP_SYS(rt_sigprocmask),
    SCMP_SYS(rt_sigreturn),
    SCMP_SYS(rt_sigpending),
    SCMP_SYS(rt_sigtimedwait),
    SCMP_SYS(rt_sigsuspend),
    SCMP_SYS(sigaltstack),
    SCMP_SYS(kill),
    SCMP_SYS(tkill),
    SCMP_SYS(tgkill),
    SCMP_SYS(pause),
    /* time */
    SCMP_SYS(clock_gettime),
    SCMP_SYS(clock_getres),
    SCMP_SYS(clock_nanosleep),
    SCMP_SYS(gettimeofday),
    SCMP_SYS(time),
    SCMP_SYS(nanosleep),
    SCMP_SYS(alarm),
    SCMP_SYS(getitimer),
    SCMP_SYS(setitimer),
    SCMP_SYS(timer_create),
    SCMP_SYS(timer_settime),
    SCMP_SYS(timer_gettime),
    SCMP_SYS(timer_getoverrun),
    SCMP_SYS(timer_delete),
    /* waiting for events */
    SCMP_SYS(poll),
    SCMP_SYS(ppoll),
    SCMP_SYS(select),
    SCMP_SYS(pselect6),
    SCMP_SYS(epoll_create),
    SCMP_SYS(epoll_create1),
    SCMP_SYS(epoll_ctl),
    SCMP_SYS(epoll_wait),
    SCMP_SYS(epoll_pwait),
    SCMP_SYS(epoll_pwait2),
    SCMP_SYS(eventfd),
    SCMP_SYS(eventfd2),
    SCMP_SYS(signalfd),
    SCMP_SYS(signalfd4),
    SCMP_SYS(timerfd_create),
    SCMP_SYS(timerfd_settime),
    SCMP_SYS(timerfd_gettime),
    /* sockets (socket and socketpair are conditional below) */
    SCMP_SYS(bind),
    SCMP_SYS(listen),
    SCMP_SYS(accept),
    SCMP_SYS(accept4),
    SCMP_SYS(connect),
    SCMP_SYS(shutdown),
    SCMP_SYS(getsockname),
    SCMP_SYS(getpeername),
    SCMP_SYS(sendto),
    SCMP_SYS(recvfrom),
    SCMP_SYS(sendmsg),
    SCMP_SYS(recvmsg),
    SCMP_SYS(sendmmsg),
    SCMP_SYS(recvmmsg),
    SCMP_SYS(setsockopt),
    SCMP_SYS(getsockopt),
};

/* Refused with a specific errno rather than the default ENOSYS, so programs
 * see a familiar answer ("not permitted", "no extended attributes"). */
typedef struct {
    int nr;
    int errno_;
} deny_rule;

static const deny_rule deny_errno[] = {
    /* ownership and identity: the grain has one uid and one gid */
    {SCMP_SYS(chown), EPERM},
    {SCMP_SYS(fchown), EPERM},
    {SCMP_SYS(lchown), EPERM},
    {SCMP_SYS(fchownat), EPERM},
    {SCMP_SYS(setuid), EPERM},
    {SCMP_SYS(setgid), EPERM},
    {SCMP_SYS(setreuid), EPERM},
    {SCMP_SYS(setregid), EPERM},
    {SCMP_SYS(setresuid), EPERM},
    {SCMP_SYS(setresgid), EPERM},
    {SCMP_SYS(setfsuid), EPERM},
    {SCMP_SYS(setfsgid), EPERM},
    {SCMP_SYS(setgroups), EPERM},
    {SCMP_SYS(capset), EPERM},
    /* the filesystem view is fixed */
    {SCMP_SYS(mount), EPERM},
    {SCMP_SYS(umount2), EPERM},
    {SCMP_SYS(pivot_root), EPERM},
    {SCMP_SYS(chroot), EPERM},
    {SCMP_SYS(open_tree), EPERM},
    {SCMP_SYS(move_mount), EPERM},
    {SCMP_SYS(fsopen), EPERM},
    {SCMP_SYS(fsconfig), EPERM},
    {SCMP_SYS(fsmount), EPERM},
    {SCMP_SYS(fspick), EPERM},
    {SCMP_SYS(mount_setattr), EPERM},
    {SCMP_SYS(name_to_handle_at), EPERM},
    {SCMP_SYS(open_by_handle_at), EPERM},
    /* namespaces and other processes */
    {SCMP_SYS(unshare), EPERM},
    {SCMP_SYS(setns), EPERM},
    {SCMP_SYS(ptrace), EPERM},
    {SCMP_SYS(process_vm_readv), EPERM},
    {SCMP_SYS(process_vm_writev), EPERM},
    {SCMP_SYS(kcmp), EPERM},
    {SCMP_SYS(pidfd_getfd), EPERM},
    /* the kernel itself */
    {SCMP_SYS(bpf), EPERM},
    {SCMP_SYS(perf_event_open), EPERM},
    {SCMP_SYS(userfaultfd), EPERM},
    {SCMP_SYS(keyctl), EPERM},
    {SCMP_SYS(add_key), EPERM},
    {SCMP_SYS(request_key), EPERM},
    {SCMP_SYS(init_module), EPERM},
    {SCMP_SYS(finit_module), EPERM},
    {SCMP_SYS(delete_module), EPERM},
    {SCMP_SYS(kexec_load), EPERM},
    {SCMP_SYS(kexec_file_load), EPERM},
    {SCMP_SYS(reboot), EPERM},
    {SCMP_SYS(swapon), EPERM},
    {SCMP_SYS(swapoff), EPERM},
    {SCMP_SYS(syslog), EPERM},
    {SCMP_SYS(acct), EPERM},
    {SCMP_SYS(personality), EPERM},
    {SCMP_SYS(modify_ldt), EPERM},
    {SCMP_SYS(iopl), EPERM},
    {SCMP_SYS(ioperm), EPERM},
    {SCMP_SYS(sethostname), EPERM},
    {SCMP_SYS(setdomainname), EPERM},
    {SCMP_SYS(settimeofday), EPERM},
    {SCMP_SYS(clock_settime), EPERM},
    {SCMP_SYS(clock_adjtime), EPERM},
    {SCMP_SYS(adjtimex), EPERM},
    {SCMP_SYS(quotactl), EPERM},
    {SCMP_SYS(fanotify_init), EPERM},
    {SCMP_SYS(vhangup), EPERM},
    {SCMP_SYS(mlock), EPERM},
    {SCMP_SYS(mlock2), EPERM},
    {SCMP_SYS(mlockall), EPERM},
    /* extended attributes are not part of a grain's storage */
    {SCMP_SYS(setxattr), ENOTSUP},
    {SCMP_SYS(lsetxattr), ENOTSUP},
    {SCMP_SYS(fsetxattr), ENOTSUP},
    {SCMP_SYS(getxattr), ENOTSUP},
    {SCMP_SYS(lgetxattr), ENOTSUP},
    {SCMP_SYS(fgetxattr), ENOTSUP},
    {SCMP_SYS(listxattr), ENOTSUP},
    {SCMP_SYS(llistxattr), ENOTSUP},
    {SCMP_SYS(flistxattr), ENOTSUP},
    {SCMP_SYS(removexattr), ENOTSUP},
    {SCMP_SYS(lremovexattr), ENOTSUP},
    {SCMP_SYS(fremovexattr), ENOTSUP},
    /* ENOSYS on purpose: glibc falls back to clone, and callers of io_uring
     * and rseq fall back to ordinary system calls */
    {SCMP_SYS(clone3), ENOSYS},
    {SCMP_SYS(io_uring_setup), ENOSYS},
    {SCMP_SYS(io_uring_enter), ENOSYS},
    {SCMP_SYS(io_uring_register), ENOSYS},
    {SCMP_SYS(rseq), ENOSYS},
};

/* clone may only make threads and forks. */
#define SBX_CLONE_ALLOWED                                                                          \
    ((uint64_t)(CSIGNAL | CLONE_VM | CLONE_FS | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD |       \
                CLONE_SYSVSEM | CLONE_SETTLS | CLONE_PARENT_SETTID | CLONE_CHILD_CLEARTID |        \
                CLONE_CHILD_SETTID | CLONE_VFORK | CLONE_DETACHED | CLONE_IO))

static const unsigned long ioctl_allowed[] = {
    FIOCLEX, FIONCLEX, FIONBIO, FIOASYNC, FIONREAD, FIOQSIZE, TCGETS, TIOCGWINSZ,
};

static const int prctl_allowed[] = {
    PR_SET_NAME,       PR_GET_NAME,         PR_SET_PDEATHSIG,    PR_GET_PDEATHSIG, PR_GET_DUMPABLE,
    PR_SET_DUMPABLE,   PR_GET_NO_NEW_PRIVS, PR_SET_NO_NEW_PRIVS, PR_GET_SECCOMP,   PR_CAPBSET_READ,
    PR_GET_TIMERSLACK, PR_SET_TIMERSLACK,   PR_GET_KEEPCAPS,
};

/* ARCH_SET_FS etc. from asm/prctl.h, and the CET and AMX queries glibc makes. */
static const int arch_prctl_allowed[] = {0x1001, 0x1002, 0x1003, 0x1004,
                                         0x3001, 0x1021, 0x1022, 0x1023};

#define DEFAULT_ACTION SCMP_ACT_ERRNO(ENOSYS)

#define N(a) (sizeof(a) / sizeof((a)[0]))

static int add(scmp_filter_ctx ctx, uint32_t action, int nr, unsigned n,
               const struct scmp_arg_cmp *cmp, gr_error_t *err)
{
    int rc = seccomp_rule_add_array(ctx, action, nr, n, cmp);
    /* libseccomp refuses a rule that repeats the default action; the
     * ENOSYS entries are listed to say they are refused on purpose. */
    if (rc == -EACCES && action == DEFAULT_ACTION)
        return 0;
    if (rc < 0) {
        char *name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, nr);
        gr_make_error(err, -rc, "seccomp rule for %s", name ? name : "?");
        free(name);
        return -1;
    }
    return 0;
}

static int add_conditional(scmp_filter_ctx ctx, gr_error_t *err)
{
    struct scmp_arg_cmp c[3];
    c[0] = SCMP_A0(SCMP_CMP_MASKED_EQ, ~SBX_CLONE_ALLOWED, 0);
    if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1, c, err) < 0)
        return -1;
    /* mknod only for FIFOs and plain files: no device nodes. */
    const unsigned node_types[] = {0, S_IFREG, S_IFIFO};
    for (size_t i = 0; i < N(node_types); i++) {
        c[0] = SCMP_A1(SCMP_CMP_MASKED_EQ, S_IFMT, node_types[i]);
        if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mknod), 1, c, err) < 0)
            return -1;
        c[0] = SCMP_A2(SCMP_CMP_MASKED_EQ, S_IFMT, node_types[i]);
        if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mknodat), 1, c, err) < 0)
            return -1;
    }
    /* glibc's getrlimit and setrlimit are prlimit64 on the calling process. */
    c[0] = SCMP_A0(SCMP_CMP_EQ, 0);
    if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prlimit64), 1, c, err) < 0)
        return -1;
    /* The kernel reads the ioctl request and the prctl option as 32 bits. */
    for (size_t i = 0; i < N(ioctl_allowed); i++) {
        c[0] = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, ioctl_allowed[i]);
        if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, c, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < N(prctl_allowed); i++) {
        c[0] = SCMP_A0(SCMP_CMP_MASKED_EQ, 0xffffffffu, (unsigned)prctl_allowed[i]);
        if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(prctl), 1, c, err) < 0)
            return -1;
    }
    for (size_t i = 0; i < N(arch_prctl_allowed); i++) {
        c[0] = SCMP_A0(SCMP_CMP_EQ, (unsigned)arch_prctl_allowed[i]);
        if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(arch_prctl), 1, c, err) < 0)
            return -1;
    }
    /* Unix, IPv4 and IPv6 stream and datagram sockets; nothing raw, no netlink. */
    const int domains[] = {AF_UNIX, AF_INET, AF_INET6};
    const int types[] = {SOCK_STREAM, SOCK_DGRAM};
    const uint64_t type_mask = ~(uint64_t)(SOCK_NONBLOCK | SOCK_CLOEXEC) & 0xffffffffu;
    for (size_t d = 0; d < N(domains); d++) {
        for (size_t t = 0; t < N(types); t++) {
            int proto = domains[d] == AF_UNIX     ? 0
                        : types[t] == SOCK_STREAM ? IPPROTO_TCP
                                                  : IPPROTO_UDP;
            c[0] = SCMP_A0(SCMP_CMP_EQ, (unsigned)domains[d]);
            c[1] = SCMP_A1(SCMP_CMP_MASKED_EQ, type_mask, (unsigned)types[t]);
            c[2] = SCMP_A2(SCMP_CMP_EQ, 0);
            if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3, c, err) < 0)
                return -1;
            if (proto) {
                c[2] = SCMP_A2(SCMP_CMP_EQ, (unsigned)proto);
                if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 3, c, err) < 0)
                    return -1;
            }
            if (domains[d] == AF_UNIX) {
                c[2] = SCMP_A2(SCMP_CMP_EQ, 0);
                if (add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socketpair), 3, c, err) < 0)
                    return -1;
            }
        }
    }
    /* Every other family answers "not supported", as the kernel would. */
    c[0] = SCMP_A0(SCMP_CMP_GT, AF_INET6);
    if (add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, c, err) < 0)
        return -1;
    for (int fam = 0; fam < AF_INET6; fam++) {
        if (fam == AF_UNIX || fam == AF_INET)
            continue;
        c[0] = SCMP_A0(SCMP_CMP_EQ, (unsigned)fam);
        if (add(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1, c, err) < 0)
            return -1;
    }
    return 0;
}

static int add_rules(scmp_filter_ctx ctx, gr_error_t *err)
{
    int rc;
    /* Another architecture's calling convention (i386 int 0x80, x32) kills. */
    if ((rc = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS)) < 0 ||
        (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0)) < 0 ||
        /* A binary search over syscall numbers instead of a linear list:
         * shorter to run, and much faster for the kernel to load. */
        (rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2)) < 0)
        return gr_make_error(err, -rc, "seccomp attributes");
    for (size_t i = 0; i < N(allow_plain); i++)
        if (add(ctx, SCMP_ACT_ALLOW, allow_plain[i], 0, NULL, err) < 0)
            return -1;
    for (size_t i = 0; i < N(deny_errno); i++)
        if (add(ctx, SCMP_ACT_ERRNO((uint32_t)deny_errno[i].errno_), deny_errno[i].nr, 0, NULL,
                err) < 0)
            return -1;
    return add_conditional(ctx, err);
}

/* Exports the filter as BPF through a memfd into a new array. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *prog, gr_error_t *err)
{
    _cleanup_close_ int fd = memfd_create("granary-seccomp", MFD_CLOEXEC);
    if (fd < 0)
        return gr_make_error(err, errno, "memfd_create");
    int rc = seccomp_export_bpf(ctx, fd);
    if (rc < 0)
        return gr_make_error(err, -rc, "seccomp_export_bpf");
    struct stat st;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || st.st_size % sizeof(struct sock_filter) ||
        st.st_size / sizeof(struct sock_filter) > BPF_MAXINSNS)
        return gr_make_error(err, 0, "seccomp program has a bad size");
    _cleanup_free_ struct sock_filter *insns = gr_malloc((size_t)st.st_size);
    if (pread(fd, insns, (size_t)st.st_size, 0) != st.st_size)
        return gr_make_error(err, errno, "read back seccomp program");
    prog->filter = gr_steal_pointer(&insns);
    prog->len = (unsigned short)(st.st_size / sizeof(struct sock_filter));
    return 0;
}

int sbx__seccomp_compile(struct sock_fprog *prog, gr_error_t *err)
{
    scmp_filter_ctx ctx = seccomp_init(DEFAULT_ACTION);
    if (!ctx)
        return gr_make_error(err, 0, "seccomp_init failed");
    int rc = add_rules(ctx, err) < 0 ? -1 : export_bpf(ctx, prog, err);
    seccomp_release(ctx);
    return rc;
}

SBX__CHILD int sbx__seccomp_apply(const struct sock_fprog *prog)
{
    if (syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1L, 0L, 0L, 0L) < 0)
        return -errno;
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0L, prog) < 0)
        return -errno;
    return 0;
}
