/* A hostile program for the sandbox tests, built static and without
 * sanitizers so it runs alone in an empty package. `probe probes HOSTPID
 * ABSTRACT` tries escapes and leaks one by one (each in a forked child) and
 * prints "PASS name" when the sandbox refused it (or, for the allow_ probes,
 * when the allowed thing worked) and "FAIL name detail" otherwise. The other
 * modes are small grain programs for the remaining tests. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/keyctl.h>
#include <linux/netlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <grp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

extern char **environ;

static long host_pid;
static const char *abstract_name = "";
static char detail[512];
static int harness_fd = -1; /* the probe harness's own pipe */

/* Records why a probe failed; returns 1 so `return fail(...)` reads well. */
static int fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    return 1;
}

/* A refused call returns -1; anything else is an escape. */
#define REFUSED(call)                                                                              \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(call);                                                                    \
        if (r_ != -1)                                                                              \
            return fail("%s returned %ld", #call, r_);                                             \
    } while (0)

#define WORKS(call)                                                                                \
    do {                                                                                           \
        errno = 0;                                                                                 \
        if ((long)(call) < 0)                                                                      \
            return fail("%s: %s", #call, strerror(errno));                                         \
    } while (0)

/* ---- the filesystem */

static int p_write_root(void)
{
    REFUSED(open("/newfile", O_WRONLY | O_CREAT, 0644));
    return 0;
}
static int p_mkdir_root(void)
{
    REFUSED(mkdir("/newdir", 0755));
    return 0;
}
static int p_write_package(void)
{
    REFUSED(open("/etc/hostname", O_WRONLY | O_APPEND));
    return 0;
}
static int p_truncate_package(void)
{
    REFUSED(truncate("/etc/hostname", 0));
    return 0;
}
static int p_chmod_package(void)
{
    REFUSED(chmod("/etc/hostname", 04777));
    return 0;
}
static int p_unlink_package(void)
{
    REFUSED(unlink("/etc/hostname"));
    return 0;
}
static int p_rename_package(void)
{
    REFUSED(rename("/etc/hostname", "/etc/h2"));
    return 0;
}
static int p_write_own_binary(void)
{
    REFUSED(open("/bin/probe", O_WRONLY));
    return 0;
}
static int p_bridge_write(void)
{
    REFUSED(open("/sandstorm-http-bridge", O_WRONLY));
    return 0;
}
static int p_bridge_chmod(void)
{
    REFUSED(chmod("/sandstorm-http-bridge", 04755));
    return 0;
}
static int p_bridge_replace(void)
{
    REFUSED(rename("/tmp", "/sandstorm-http-bridge"));
    REFUSED(unlink("/sandstorm-http-bridge"));
    return 0;
}
static int p_proc_absent(void)
{
    struct stat st;
    REFUSED(stat("/proc/self", &st));
    REFUSED(stat("/proc/1/root", &st));
    return 0;
}
static int p_sys_absent(void)
{
    struct stat st;
    REFUSED(stat("/sys/kernel", &st));
    REFUSED(stat("/sys/fs/cgroup", &st));
    return 0;
}
static int p_host_files(void)
{
    REFUSED(open("/etc/passwd", O_RDONLY));
    REFUSED(open("/../../../../etc/shadow", O_RDONLY));
    REFUSED(open("/var/../../root", O_RDONLY));
    return 0;
}
static int p_symlink_escape(void)
{
    WORKS(symlink("/../../../../etc/passwd", "/tmp/link"));
    REFUSED(open("/tmp/link", O_RDONLY));
    return 0;
}

static int p_dev_contents(void)
{
    DIR *d = opendir("/dev");
    if (!d)
        return fail("opendir /dev: %s", strerror(errno));
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *ok[] = {".", "..", "null", "zero", "urandom", "random", "shm"};
        int found = 0;
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
            found |= strcmp(e->d_name, ok[i]) == 0;
        if (!found)
            return fail("unexpected /dev/%s", e->d_name);
    }
    closedir(d);
    return 0;
}
static int p_dev_tty(void)
{
    REFUSED(open("/dev/tty", O_RDWR));
    REFUSED(open("/dev/ptmx", O_RDWR));
    REFUSED(open("/dev/kmsg", O_RDONLY));
    return 0;
}
static int p_dotdot_root(void)
{
    /* ".." of the root is the root: the old root is gone. */
    struct stat root, up;
    WORKS(chdir("/"));
    WORKS(chdir("../../.."));
    WORKS(stat("/", &root));
    WORKS(stat(".", &up));
    if (root.st_ino != up.st_ino || root.st_dev != up.st_dev)
        return fail("\"..\" left the root");
    return 0;
}
static int p_bridge_hardlink(void)
{
    REFUSED(link("/sandstorm-http-bridge", "/tmp/bridge"));
    REFUSED(link("/sandstorm-http-bridge", "/var/bridge"));
    return 0;
}
static int p_dev_write(void)
{
    REFUSED(open("/dev/sda", O_WRONLY | O_CREAT, 0600));
    return 0;
}
static int p_dev_random_link(void)
{
    char buf[64];
    ssize_t n = readlink("/dev/random", buf, sizeof buf - 1);
    if (n < 0)
        return fail("readlink: %s", strerror(errno));
    buf[n] = 0;
    return strcmp(buf, "urandom") == 0 ? 0 : fail("random -> %s", buf);
}
static int p_mknod_char(void)
{
    REFUSED(mknod("/tmp/mem", S_IFCHR | 0666, makedev(1, 1)));
    return 0;
}
static int p_mknod_block(void)
{
    REFUSED(mknod("/var/sda", S_IFBLK | 0666, makedev(8, 0)));
    return 0;
}
static int p_mknod_char_highbits(void)
{
    /* A FIFO type in the high bits must not smuggle a device past the filter. */
    REFUSED(
        syscall(SYS_mknodat, AT_FDCWD, "/tmp/mem2", 0x100000000ul | S_IFCHR | 0666, makedev(1, 1)));
    return 0;
}
static int p_allow_fifo(void)
{
    WORKS(mkfifo("/tmp/fifo", 0600));
    struct stat st;
    WORKS(stat("/tmp/fifo", &st));
    return S_ISFIFO(st.st_mode) ? 0 : fail("not a fifo");
}

static int check_flags(const char *path, unsigned long want)
{
    struct statvfs sv;
    if (statvfs(path, &sv) < 0)
        return fail("statvfs %s: %s", path, strerror(errno));
    if ((sv.f_flag & want) != want)
        return fail("%s flags %#lx lack %#lx", path, sv.f_flag, want);
    return 0;
}
static int p_root_ro(void)
{
    return check_flags("/", ST_RDONLY | ST_NOSUID | ST_NODEV);
}
static int p_package_ro(void)
{
    return check_flags("/etc", ST_RDONLY | ST_NOSUID | ST_NODEV);
}
static int p_var_nosuid(void)
{
    return check_flags("/var", ST_NOSUID | ST_NODEV);
}
static int p_tmp_nosuid(void)
{
    return check_flags("/tmp", ST_NOSUID | ST_NODEV);
}
static int p_dev_ro(void)
{
    return check_flags("/dev", ST_RDONLY | ST_NOSUID | ST_NODEV | ST_NOEXEC);
}

/* Fills a file until the filesystem refuses; returns the bytes written. */
static long fill(const char *path, long max)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0)
        return -1;
    static char buf[1 << 16];
    long total = 0;
    while (total < max) {
        ssize_t n = write(fd, buf, sizeof buf);
        if (n <= 0)
            break;
        total += n;
    }
    close(fd);
    unlink(path);
    return total;
}
static int p_shm_size(void)
{
    long n = fill("/dev/shm/big", 64L << 20);
    return n >= 0 && n <= (16L << 20) ? 0 : fail("wrote %ld bytes to /dev/shm", n);
}
static int p_tmp_size(void)
{
    long n = fill("/tmp/big", 64L << 20);
    return n >= 0 && n <= (16L << 20) ? 0 : fail("wrote %ld bytes to /tmp", n);
}
static int p_chown(void)
{
    WORKS(close(open("/var/owned", O_WRONLY | O_CREAT, 0600)));
    REFUSED(chown("/var/owned", 0, 0));
    REFUSED(lchown("/var/owned", 1001, 1001));
    return 0;
}
static int p_xattr(void)
{
    WORKS(close(open("/var/attr", O_WRONLY | O_CREAT, 0600)));
    REFUSED(setxattr("/var/attr", "security.capability", "x", 1, 0));
    return 0;
}
static int p_open_by_handle(void)
{
    struct {
        struct file_handle h;
        unsigned char b[128];
    } fh = {.h.handle_bytes = 8, .h.handle_type = 1};
    REFUSED(syscall(SYS_open_by_handle_at, AT_FDCWD, &fh.h, O_RDONLY));
    int mnt;
    fh.h.handle_bytes = 128;
    REFUSED(syscall(SYS_name_to_handle_at, AT_FDCWD, "/var", &fh.h, &mnt, 0));
    return 0;
}

/* ---- mounts and namespaces */

static int p_mount(void)
{
    REFUSED(mount("none", "/tmp", "tmpfs", 0, NULL));
    return 0;
}
static int p_remount_rw(void)
{
    REFUSED(mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND, NULL));
    return 0;
}
static int p_umount(void)
{
    REFUSED(umount2("/var", MNT_DETACH));
    REFUSED(umount2("/", MNT_DETACH));
    return 0;
}
static int p_pivot_root(void)
{
    REFUSED(syscall(SYS_pivot_root, "/tmp", "/tmp"));
    return 0;
}
static int p_chroot(void)
{
    REFUSED(chroot("/tmp"));
    return 0;
}
static int p_new_mount_api(void)
{
    REFUSED(syscall(SYS_fsopen, "tmpfs", 0));
    REFUSED(syscall(SYS_open_tree, AT_FDCWD, "/var", 1));
    REFUSED(syscall(SYS_move_mount, AT_FDCWD, "/var", AT_FDCWD, "/tmp", 0));
    REFUSED(syscall(SYS_fspick, AT_FDCWD, "/", 0));
    REFUSED(syscall(SYS_mount_setattr, AT_FDCWD, "/", 0, NULL, 0));
    return 0;
}
static int p_unshare(void)
{
    const int flags[] = {CLONE_NEWUSER, CLONE_NEWNS,  CLONE_NEWNET,    CLONE_NEWPID,
                         CLONE_NEWIPC,  CLONE_NEWUTS, CLONE_NEWCGROUP, 0x80 /* CLONE_NEWTIME */,
                         CLONE_FS};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++)
        REFUSED(unshare(flags[i]));
    return 0;
}
static int p_setns(void)
{
    REFUSED(setns(3, 0));
    return 0;
}

static int clone_flag(unsigned long flag)
{
    long pid = syscall(SYS_clone, flag | SIGCHLD, 0, NULL, NULL, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        waitpid((pid_t)pid, NULL, 0);
        return fail("clone with %#lx made pid %ld", flag, pid);
    }
    return 0;
}
static int p_clone_newuser(void)
{
    return clone_flag(CLONE_NEWUSER);
}
static int p_clone_newns(void)
{
    return clone_flag(CLONE_NEWNS);
}
static int p_clone_newpid(void)
{
    return clone_flag(CLONE_NEWPID);
}
static int p_clone_newnet(void)
{
    return clone_flag(CLONE_NEWNET);
}
static int p_clone_newipc(void)
{
    return clone_flag(CLONE_NEWIPC);
}
static int p_clone_newuts(void)
{
    return clone_flag(CLONE_NEWUTS);
}
static int p_clone_newcgroup(void)
{
    return clone_flag(CLONE_NEWCGROUP);
}
static int p_clone_parent(void)
{
    return clone_flag(CLONE_PARENT);
}
static int p_clone_pidfd(void)
{
    return clone_flag(CLONE_PIDFD);
}
static int p_clone_newuser_highbits(void)
{
    /* Flags above 32 bits must not sneak a namespace past the filter. */
    return clone_flag(CLONE_NEWUSER | (1ul << 40));
}
static int p_clone3(void)
{
    struct {
        uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
    } args = {.flags = CLONE_NEWUSER, .exit_signal = SIGCHLD};
    long r = syscall(SYS_clone3, &args, sizeof args);
    if (r == 0)
        _exit(0);
    if (r > 0)
        return fail("clone3 made pid %ld", r);
    return errno == ENOSYS ? 0 : fail("clone3 errno %d, want ENOSYS", errno);
}
static int p_io_uring(void)
{
    char params[120] = {0};
    REFUSED(syscall(SYS_io_uring_setup, 8, params));
    return 0;
}

/* ---- other processes and the kernel */

static int p_ptrace_traceme(void)
{
    REFUSED(syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0));
    return 0;
}
static int p_ptrace_attach(void)
{
    REFUSED(syscall(SYS_ptrace, 16 /* PTRACE_ATTACH */, getppid(), 0, 0));
    REFUSED(syscall(SYS_ptrace, 0x4206 /* PTRACE_SEIZE */, 1, 0, 0));
    return 0;
}
static int p_process_vm(void)
{
    char buf[8];
    struct iovec l = {buf, 8}, r = {(void *)&host_pid, 8};
    REFUSED(syscall(SYS_process_vm_readv, getppid(), &l, 1, &r, 1, 0));
    REFUSED(syscall(SYS_process_vm_writev, getppid(), &l, 1, &r, 1, 0));
    return 0;
}
static int p_kill_host(void)
{
    if (host_pid <= 0)
        return fail("no host pid given");
    REFUSED(kill((pid_t)host_pid, SIGKILL));
    return errno == ESRCH ? 0 : fail("errno %d, want ESRCH", errno);
}
static int p_pid_namespace(void)
{
    /* Only the grain's own few processes exist. */
    int seen = 0;
    for (pid_t p = 1; p < 4096; p++)
        if (kill(p, 0) == 0 || errno == EPERM)
            seen++;
    return seen <= 4 ? 0 : fail("%d processes visible", seen);
}
static int p_pidfd_host(void)
{
    if (host_pid <= 0)
        return fail("no host pid given");
    REFUSED(syscall(SYS_pidfd_open, host_pid, 0));
    REFUSED(syscall(SYS_pidfd_send_signal, 0, SIGKILL, NULL, 0));
    return 0;
}
static int p_kcmp(void)
{
    REFUSED(syscall(SYS_kcmp, getpid(), 1, 0, 0, 0));
    return 0;
}
static int p_pidfd_getfd(void)
{
    int pfd = (int)syscall(SYS_pidfd_open, getppid(), 0);
    REFUSED(syscall(SYS_pidfd_getfd, pfd >= 0 ? pfd : 0, 3, 0));
    return 0;
}
static int p_keyctl(void)
{
    REFUSED(syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_USER_KEYRING, 0));
    REFUSED(syscall(SYS_add_key, "user", "x", "y", 1, KEY_SPEC_PROCESS_KEYRING));
    REFUSED(syscall(SYS_request_key, "user", "x", NULL, 0));
    return 0;
}
static int p_bpf(void)
{
    char attr[128] = {0};
    REFUSED(syscall(SYS_bpf, 0, attr, sizeof attr));
    return 0;
}
static int p_perf(void)
{
    char attr[128] = {0};
    REFUSED(syscall(SYS_perf_event_open, attr, 0, -1, -1, 0));
    return 0;
}
static int p_userfaultfd(void)
{
    REFUSED(syscall(SYS_userfaultfd, 0));
    return 0;
}
static int p_modules(void)
{
    REFUSED(syscall(SYS_init_module, "", 0, ""));
    REFUSED(syscall(SYS_finit_module, 0, "", 0));
    REFUSED(syscall(SYS_delete_module, "loop", 0));
    return 0;
}
static int p_kexec(void)
{
    REFUSED(syscall(SYS_kexec_load, 0, 0, NULL, 0));
    REFUSED(syscall(SYS_kexec_file_load, 0, 0, 0, "", 0));
    return 0;
}
static int p_reboot(void)
{
    REFUSED(syscall(SYS_reboot, 0xfee1dead, 672274793, 0x1234567, NULL));
    return 0;
}
static int p_personality(void)
{
    REFUSED(syscall(SYS_personality, 0x0400000 /* READ_IMPLIES_EXEC */));
    return 0;
}
static int p_modify_ldt(void)
{
    char b[16] = {0};
    REFUSED(syscall(SYS_modify_ldt, 1, b, sizeof b));
    return 0;
}
static int p_ioperm(void)
{
    REFUSED(syscall(SYS_ioperm, 0x80, 1, 1));
    REFUSED(syscall(SYS_iopl, 3));
    return 0;
}
static int p_syslog(void)
{
    char b[64];
    REFUSED(syscall(SYS_syslog, 3, b, sizeof b));
    return 0;
}
static int p_swap_acct_quota(void)
{
    REFUSED(syscall(SYS_swapon, "/var/swap", 0));
    REFUSED(syscall(SYS_acct, "/var/acct"));
    REFUSED(syscall(SYS_quotactl, 0, "/var", 0, NULL));
    return 0;
}
static int p_time(void)
{
    struct timespec ts = {0, 0};
    REFUSED(clock_settime(CLOCK_REALTIME, &ts));
    REFUSED(syscall(SYS_settimeofday, NULL, NULL));
    return 0;
}
static int p_hostname(void)
{
    char h[64] = {0};
    gethostname(h, sizeof h - 1);
    if (strcmp(h, "sandbox") != 0)
        return fail("hostname %s", h);
    REFUSED(sethostname("evil", 4));
    return 0;
}
static int p_mlock(void)
{
    static char page[4096];
    REFUSED(mlock(page, sizeof page));
    REFUSED(mlockall(MCL_CURRENT));
    return 0;
}
static int p_fanotify(void)
{
    REFUSED(syscall(SYS_fanotify_init, 0, 0));
    return 0;
}
static int p_vhangup(void)
{
    REFUSED(syscall(SYS_vhangup));
    return 0;
}
static int p_prctl_other(void)
{
    REFUSED(prctl(PR_SET_MM, PR_SET_MM_START_CODE, 0, 0, 0));
    REFUSED(prctl(PR_SET_SECCOMP, 0, 0, 0, 0));
    REFUSED(prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, 21, 0, 0));
    REFUSED(prctl(PR_SET_PTRACER, -1, 0, 0, 0));
    return 0;
}
static int p_x32_abi(void)
{
    /* The filter kills the process for another ABI; the harness counts a
     * SIGSYS death as refused. */
    REFUSED(syscall(0x40000000 | SYS_getpid));
    return 0;
}
static int p_i386_abi(void)
{
    long r;
    __asm__ volatile("int $0x80" : "=a"(r) : "a"(20L) : "memory");
    return r < 0 ? 0 : fail("int 0x80 getpid returned %ld", r);
}

/* ---- identity and privileges */

static int p_setuid(void)
{
    REFUSED(setuid(0));
    REFUSED(setgid(0));
    REFUSED(setresuid(0, 0, 0));
    REFUSED(setreuid(1000, 0));
    gid_t g = 0;
    REFUSED(setgroups(1, &g));
    return getuid() == 1000 && getgid() == 1000 ? 0 : fail("uid %d gid %d", getuid(), getgid());
}
static int p_capabilities(void)
{
    struct {
        uint32_t version;
        int pid;
    } hdr = {0x20080522, 0};
    struct {
        uint32_t eff, perm, inh;
    } data[2];
    if (syscall(SYS_capget, &hdr, data) < 0)
        return fail("capget: %s", strerror(errno));
    for (int i = 0; i < 2; i++)
        if (data[i].eff || data[i].perm || data[i].inh)
            return fail("capabilities %x %x %x", data[i].eff, data[i].perm, data[i].inh);
    if (prctl(PR_CAPBSET_READ, 21 /* CAP_SYS_ADMIN */, 0, 0, 0) != 0)
        return fail("CAP_SYS_ADMIN still in the bounding set");
    return 0;
}
static int p_no_new_privs(void)
{
    if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
        return fail("no_new_privs not set");
    return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) == 2 ? 0 : fail("seccomp not in filter mode");
}
static int p_rlimits(void)
{
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    if (r.rlim_max > 4096)
        return fail("RLIMIT_NOFILE hard %lu", (unsigned long)r.rlim_max);
    r.rlim_max = r.rlim_cur = 1 << 20;
    REFUSED(setrlimit(RLIMIT_NOFILE, &r));
    getrlimit(RLIMIT_CORE, &r);
    return r.rlim_max == 0 ? 0 : fail("core dumps allowed: %lu", (unsigned long)r.rlim_max);
}

/* ---- fds, environment, terminal */

static int p_inherited_fds(void)
{
    for (int fd = 4; fd < 1024; fd++)
        if (fd != harness_fd && fcntl(fd, F_GETFD) >= 0)
            return fail("fd %d is open", fd);
    return 0;
}
static int p_env_exact(void)
{
    int n = 0;
    for (char **e = environ; *e; e++, n++)
        if (strcmp(*e, "GRANARY_PROBE=1") != 0)
            return fail("unexpected environment entry %s", *e);
    return n == 1 ? 0 : fail("%d environment entries", n);
}
static int p_tiocsti(void)
{
    struct termios {
        char b[60];
    } t;
    if (ioctl(0, TCGETS, &t) < 0)
        return fail("stdin is not a terminal, the probe needs one");
    char c = 'x';
    REFUSED(ioctl(0, TIOCSTI, &c));
    /* High bits in the request must not turn a refused call into TIOCSTI. */
    REFUSED(syscall(SYS_ioctl, 0, 0x100000000ul | TIOCSTI, &c));
    return 0;
}
static int p_ioctl_other(void)
{
    REFUSED(ioctl(0, TIOCSCTTY, 1));
    REFUSED(ioctl(0, TIOCLINUX, "\x06"));
    REFUSED(ioctl(3, SIOCGIFCONF, NULL));
    return 0;
}

/* ---- the network */

static int p_raw_socket(void)
{
    REFUSED(socket(AF_INET, SOCK_RAW, IPPROTO_ICMP));
    REFUSED(socket(AF_INET6, SOCK_RAW, IPPROTO_RAW));
    return 0;
}
static int p_packet_socket(void)
{
    REFUSED(socket(AF_PACKET, SOCK_RAW, 0));
    return 0;
}
static int p_netlink_socket(void)
{
    REFUSED(socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE));
    REFUSED(socket(AF_NETLINK, SOCK_DGRAM, 0));
    return 0;
}
static int p_exotic_sockets(void)
{
    const int fams[] = {AF_VSOCK, AF_ALG, AF_BLUETOOTH, AF_KEY, AF_XDP,
                        AF_TIPC,  AF_RDS, AF_APPLETALK, AF_X25};
    for (size_t i = 0; i < sizeof fams / sizeof fams[0]; i++)
        REFUSED(socket(fams[i], SOCK_STREAM, 0));
    REFUSED(socket(AF_UNIX, SOCK_SEQPACKET, 0));
    REFUSED(socket(AF_INET, SOCK_STREAM, IPPROTO_SCTP));
    REFUSED(socket(AF_INET, SOCK_DGRAM, 136 /* UDPLITE */));
    return 0;
}
static int p_external_tcp(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(80), .sin_addr.s_addr = htonl(0x01010101)};
    REFUSED(connect(s, (struct sockaddr *)&a, sizeof a));
    return 0;
}
static int p_external_udp(void)
{
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(53), .sin_addr.s_addr = htonl(0x08080808)};
    REFUSED(sendto(s, "x", 1, 0, (struct sockaddr *)&a, sizeof a));
    return 0;
}
static int p_external_ipv6(void)
{
    int s = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(80)};
    a.sin6_addr.s6_addr[0] = 0x20;
    a.sin6_addr.s6_addr[1] = 0x01;
    a.sin6_addr.s6_addr[15] = 1;
    REFUSED(connect(s, (struct sockaddr *)&a, sizeof a));
    return 0;
}
static int p_host_abstract_socket(void)
{
    if (!abstract_name[0])
        return fail("no abstract socket name given");
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    size_t n = strlen(abstract_name);
    memcpy(a.sun_path + 1, abstract_name, n);
    REFUSED(connect(s, (struct sockaddr *)&a,
                    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n)));
    return 0;
}

/* ---- allowed */

static int p_allow_write_var(void)
{
    int fd = open("/var/data", O_WRONLY | O_CREAT | O_TRUNC, 0600);
    WORKS(fd);
    WORKS(write(fd, "kept", 4));
    WORKS(close(fd));
    return 0;
}
static int p_allow_write_tmp(void)
{
    WORKS(mkdir("/tmp/d", 0700));
    WORKS(close(open("/tmp/d/f", O_WRONLY | O_CREAT, 0600)));
    return 0;
}
static int p_allow_urandom(void)
{
    unsigned char b[32] = {0}, z[32] = {0};
    int fd = open("/dev/urandom", O_RDONLY);
    WORKS(fd);
    if (read(fd, b, sizeof b) != (ssize_t)sizeof b || memcmp(b, z, sizeof b) == 0)
        return fail("no random bytes");
    int fr = open("/dev/random", O_RDONLY);
    WORKS(fr);
    WORKS(read(fr, b, sizeof b));
    return 0;
}
static int p_allow_dev_null_zero(void)
{
    int fd = open("/dev/null", O_WRONLY | O_TRUNC);
    WORKS(fd);
    WORKS(write(fd, "x", 1));
    int z = open("/dev/zero", O_RDONLY);
    char c = 1;
    WORKS(read(z, &c, 1));
    return c == 0 ? 0 : fail("/dev/zero gave %d", c);
}
static int loopback(int family)
{
    int l = socket(family, SOCK_STREAM, 0);
    WORKS(l);
    struct sockaddr_storage ss = {0};
    socklen_t len;
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *a;
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
        len = sizeof *a;
    }
    WORKS(bind(l, (struct sockaddr *)&ss, len));
    WORKS(listen(l, 1));
    WORKS(getsockname(l, (struct sockaddr *)&ss, &len));
    int c = socket(family, SOCK_STREAM, 0);
    WORKS(connect(c, (struct sockaddr *)&ss, len));
    int a = accept(l, NULL, NULL);
    WORKS(a);
    WORKS(write(c, "ping", 4));
    char buf[4];
    if (read(a, buf, 4) != 4 || memcmp(buf, "ping", 4) != 0)
        return fail("no data over loopback");
    return 0;
}
static int p_allow_listen_loopback(void)
{
    return loopback(AF_INET);
}
static int p_allow_listen_loopback6(void)
{
    return loopback(AF_INET6);
}
static int p_allow_fork(void)
{
    pid_t p = fork();
    WORKS(p);
    if (p == 0)
        _exit(7);
    int st;
    WORKS(waitpid(p, &st, 0));
    return WIFEXITED(st) && WEXITSTATUS(st) == 7 ? 0 : fail("child status %#x", st);
}
static void *thread_fn(void *arg)
{
    return arg;
}
static int p_allow_threads(void)
{
    /* glibc tries clone3 first; ENOSYS makes it fall back to clone. */
    pthread_t t;
    int rc = pthread_create(&t, NULL, thread_fn, (void *)42);
    if (rc)
        return fail("pthread_create: %s", strerror(rc));
    void *r;
    pthread_join(t, &r);
    return r == (void *)42 ? 0 : fail("thread returned %p", r);
}
static int p_allow_fd3_socket(void)
{
    struct stat st;
    WORKS(fstat(3, &st));
    return S_ISSOCK(st.st_mode) ? 0 : fail("fd 3 is not a socket");
}
static int p_allow_unix_socketpair(void)
{
    int sv[2];
    WORKS(socketpair(AF_UNIX, SOCK_STREAM, 0, sv));
    WORKS(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv));
    return 0;
}
static int p_allow_shm(void)
{
    long n = fill("/dev/shm/small", 1 << 20);
    return n == (1 << 20) ? 0 : fail("wrote %ld to /dev/shm", n);
}
static int p_allow_exec_memory(void)
{
    void *p =
        mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p != MAP_FAILED ? 0 : fail("mmap exec: %s", strerror(errno));
}

typedef struct {
    const char *name;
    int (*fn)(void);
} probe;

static const probe probes[] = {
    {"write_root", p_write_root},
    {"mkdir_root", p_mkdir_root},
    {"write_package", p_write_package},
    {"truncate_package", p_truncate_package},
    {"chmod_package", p_chmod_package},
    {"unlink_package", p_unlink_package},
    {"rename_package", p_rename_package},
    {"write_own_binary", p_write_own_binary},
    {"bridge_write", p_bridge_write},
    {"bridge_chmod", p_bridge_chmod},
    {"bridge_replace", p_bridge_replace},
    {"proc_absent", p_proc_absent},
    {"sys_absent", p_sys_absent},
    {"host_files", p_host_files},
    {"symlink_escape", p_symlink_escape},
    {"dev_contents", p_dev_contents},
    {"dev_write", p_dev_write},
    {"dev_tty", p_dev_tty},
    {"dotdot_root", p_dotdot_root},
    {"bridge_hardlink", p_bridge_hardlink},
    {"pidfd_host", p_pidfd_host},
    {"dev_random_link", p_dev_random_link},
    {"mknod_char", p_mknod_char},
    {"mknod_block", p_mknod_block},
    {"mknod_char_highbits", p_mknod_char_highbits},
    {"allow_fifo", p_allow_fifo},
    {"root_ro", p_root_ro},
    {"package_ro", p_package_ro},
    {"var_nosuid", p_var_nosuid},
    {"tmp_nosuid", p_tmp_nosuid},
    {"dev_ro", p_dev_ro},
    {"shm_size", p_shm_size},
    {"tmp_size", p_tmp_size},
    {"chown", p_chown},
    {"xattr", p_xattr},
    {"open_by_handle", p_open_by_handle},
    {"mount", p_mount},
    {"remount_rw", p_remount_rw},
    {"umount", p_umount},
    {"pivot_root", p_pivot_root},
    {"chroot", p_chroot},
    {"new_mount_api", p_new_mount_api},
    {"unshare", p_unshare},
    {"setns", p_setns},
    {"clone_newuser", p_clone_newuser},
    {"clone_newns", p_clone_newns},
    {"clone_newpid", p_clone_newpid},
    {"clone_newnet", p_clone_newnet},
    {"clone_newipc", p_clone_newipc},
    {"clone_newuts", p_clone_newuts},
    {"clone_newcgroup", p_clone_newcgroup},
    {"clone_parent", p_clone_parent},
    {"clone_pidfd", p_clone_pidfd},
    {"clone_newuser_highbits", p_clone_newuser_highbits},
    {"clone3", p_clone3},
    {"io_uring", p_io_uring},
    {"ptrace_traceme", p_ptrace_traceme},
    {"ptrace_attach", p_ptrace_attach},
    {"process_vm", p_process_vm},
    {"kill_host_pid", p_kill_host},
    {"pid_namespace", p_pid_namespace},
    {"kcmp", p_kcmp},
    {"pidfd_getfd", p_pidfd_getfd},
    {"keyctl", p_keyctl},
    {"bpf", p_bpf},
    {"perf_event_open", p_perf},
    {"userfaultfd", p_userfaultfd},
    {"modules", p_modules},
    {"kexec", p_kexec},
    {"reboot", p_reboot},
    {"personality", p_personality},
    {"modify_ldt", p_modify_ldt},
    {"ioperm", p_ioperm},
    {"syslog", p_syslog},
    {"swap_acct_quota", p_swap_acct_quota},
    {"set_time", p_time},
    {"hostname", p_hostname},
    {"mlock", p_mlock},
    {"fanotify", p_fanotify},
    {"vhangup", p_vhangup},
    {"prctl_other", p_prctl_other},
    {"x32_abi", p_x32_abi},
    {"i386_abi", p_i386_abi},
    {"setuid", p_setuid},
    {"capabilities", p_capabilities},
    {"no_new_privs", p_no_new_privs},
    {"rlimits", p_rlimits},
    {"inherited_fds", p_inherited_fds},
    {"env_exact", p_env_exact},
    {"tiocsti", p_tiocsti},
    {"ioctl_other", p_ioctl_other},
    {"raw_socket", p_raw_socket},
    {"packet_socket", p_packet_socket},
    {"netlink_socket", p_netlink_socket},
    {"exotic_sockets", p_exotic_sockets},
    {"external_tcp", p_external_tcp},
    {"external_udp", p_external_udp},
    {"external_ipv6", p_external_ipv6},
    {"host_abstract_socket", p_host_abstract_socket},
    {"allow_write_var", p_allow_write_var},
    {"allow_write_tmp", p_allow_write_tmp},
    {"allow_urandom", p_allow_urandom},
    {"allow_dev_null_zero", p_allow_dev_null_zero},
    {"allow_listen_loopback", p_allow_listen_loopback},
    {"allow_listen_loopback6", p_allow_listen_loopback6},
    {"allow_fork", p_allow_fork},
    {"allow_threads", p_allow_threads},
    {"allow_fd3_socket", p_allow_fd3_socket},
    {"allow_unix_socketpair", p_allow_unix_socketpair},
    {"allow_shm", p_allow_shm},
    {"allow_exec_memory", p_allow_exec_memory},
};

/* Runs one probe in a child, so that a probe the filter kills, or one that
 * succeeded in changing something, cannot affect the next. */
static void run_probe(const probe *p)
{
    int pfd[2];
    if (pipe(pfd) < 0) {
        printf("FAIL %s pipe: %s\n", p->name, strerror(errno));
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        harness_fd = pfd[1];
        detail[0] = 0;
        int rc = p->fn();
        if (rc && write(pfd[1], detail, strlen(detail)) < 0)
            _exit(2);
        _exit(rc ? 1 : 0);
    }
    close(pfd[1]);
    char buf[sizeof detail] = {0};
    ssize_t n = read(pfd[0], buf, sizeof buf - 1);
    (void)n;
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    bool killed_ok = WIFSIGNALED(st) && WTERMSIG(st) == SIGSYS &&
                     (strcmp(p->name, "x32_abi") == 0 || strcmp(p->name, "i386_abi") == 0);
    if ((WIFEXITED(st) && WEXITSTATUS(st) == 0) || killed_ok)
        printf("PASS %s\n", p->name);
    else if (WIFSIGNALED(st))
        printf("FAIL %s killed by signal %d\n", p->name, WTERMSIG(st));
    else
        printf("FAIL %s %s\n", p->name, buf[0] ? buf : "failed");
}

/* ---- the other modes */

static int mode_hog(void)
{
    /* Touch memory until the limit stops us. */
    for (size_t total = 0;; total += 1 << 20) {
        char *p = malloc(1 << 20);
        if (!p) {
            printf("malloc failed after %zu MiB\n", total >> 20);
            return 3;
        }
        memset(p, 1, 1 << 20);
    }
}

static int mode_forkbomb(void)
{
    int made = 0;
    for (int i = 0; i < 100000; i++) {
        pid_t p = fork();
        if (p == 0) {
            pause();
            _exit(0);
        }
        if (p < 0) {
            printf("fork failed after %d: %s\n", made, strerror(errno));
            fflush(stdout);
            return 0;
        }
        made++;
    }
    printf("forked %d without a limit\n", made);
    return 1;
}

static int mode_tree(void)
{
    /* Children and grandchildren that would run forever; "ready" once all
     * seven processes exist. */
    int pfd[2];
    if (pipe(pfd) < 0)
        return 1;
    for (int i = 0; i < 3; i++) {
        if (fork() == 0) {
            if (fork() == 0) {
                if (write(pfd[1], "x", 1) != 1)
                    _exit(1);
                for (;;)
                    pause();
            }
            for (;;)
                pause();
        }
    }
    char buf[3];
    for (size_t got = 0; got < 3;) {
        ssize_t n = read(pfd[0], buf, 3 - got);
        if (n <= 0)
            return 1;
        got += (size_t)n;
    }
    printf("ready\n");
    fflush(stdout);
    for (;;)
        pause();
    return 0;
}

/* `probe lopair TAG N`: a server on 127.0.0.1:8000 and a client bound to
 * 127.0.0.1:40000 in the same grain (so two grains run it with the same
 * four-tuple), N small messages each way with 20 ms between them, then 4 MiB
 * from the client to the server; prints "lopair ok" when every byte came
 * back as sent and "lopair FAIL why" otherwise, then "waiting" and sleeps
 * for ARG seconds while the host reads the grain's TCP counters. */
static int lo_socket(uint16_t port, bool listener)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {
        .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) < 0 || (listener && listen(fd, 4) < 0))
        return -1;
    return fd;
}

static bool read_exact(int fd, char *buf, size_t len)
{
    for (size_t got = 0; got < len;) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n <= 0)
            return false;
        got += (size_t)n;
    }
    return true;
}

static int mode_lopair(const char *tag, int n, int wait_s)
{
    int lfd = lo_socket(8000, true), cfd = lo_socket(40000, false);
    struct sockaddr_in to = {
        .sin_family = AF_INET, .sin_port = htons(8000), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || cfd < 0 || connect(cfd, (struct sockaddr *)&to, sizeof to) < 0) {
        printf("lopair FAIL sockets: %s\n", strerror(errno));
        return 1;
    }
    int sfd = accept(lfd, NULL, NULL);
    if (sfd < 0) {
        printf("lopair FAIL accept: %s\n", strerror(errno));
        return 1;
    }
    char msg[64], got[64];
    for (int i = 0; i < n; i++) {
        int len = snprintf(msg, sizeof msg, "%s %04d\n", tag, i);
        /* client -> server, then the server echoes it back */
        if (write(cfd, msg, (size_t)len) != len || !read_exact(sfd, got, (size_t)len) ||
            memcmp(got, msg, (size_t)len) != 0 || write(sfd, got, (size_t)len) != len ||
            !read_exact(cfd, got, (size_t)len) || memcmp(got, msg, (size_t)len) != 0) {
            printf("lopair FAIL message %d: got '%.*s' for '%.*s'\n", i, len, got, len, msg);
            return 1;
        }
        usleep(20000);
    }
    /* 4 MiB one way, written by a child so that both ends run at once. */
    enum { CHUNK = 65536, CHUNKS = 64 };
    pid_t pid = fork();
    if (pid == 0) {
        static char out[CHUNK];
        for (int c = 0; c < CHUNKS; c++) {
            memset(out, tag[0] + c, sizeof out);
            for (size_t off = 0; off < sizeof out;) {
                ssize_t w = write(cfd, out + off, sizeof out - off);
                if (w <= 0)
                    _exit(1);
                off += (size_t)w;
            }
        }
        _exit(0);
    }
    static char in[CHUNK];
    for (int c = 0; c < CHUNKS; c++) {
        if (!read_exact(sfd, in, sizeof in)) {
            printf("lopair FAIL bulk chunk %d: %s\n", c, strerror(errno));
            return 1;
        }
        for (size_t k = 0; k < sizeof in; k++)
            if (in[k] != (char)(tag[0] + c)) {
                printf("lopair FAIL bulk chunk %d byte %zu\n", c, k);
                return 1;
            }
    }
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        printf("lopair FAIL the writer exited with %d\n", status);
        return 1;
    }
    close(cfd);
    close(sfd);
    close(lfd);
    printf("lopair ok\nwaiting\n");
    sleep((unsigned)wait_s);
    return 0;
}

/* `probe sockapi`: socket calls apps make on a loopback connection, printed
 * one per line for the test to compare with and without the redirect:
 * FIONREAD, MSG_PEEK, read, sendfile into the socket, and splice out of it
 * (which the redirect does not serve: docs/sandbox.md), and writes to a
 * peer that closed. */
static int mode_sockapi(void)
{
    int lfd = lo_socket(8000, true), cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {
        .sin_family = AF_INET, .sin_port = htons(8000), .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || cfd < 0 || connect(cfd, (struct sockaddr *)&to, sizeof to) < 0)
        return 1;
    int sfd = accept(lfd, NULL, NULL);
    char buf[4096];
    if (sfd < 0 || write(cfd, "peek-me", 7) != 7)
        return 1;
    struct pollfd pfd = {.fd = sfd, .events = POLLIN};
    poll(&pfd, 1, 5000);
    int avail = -1;
    ioctl(sfd, FIONREAD, &avail);
    printf("fionread %d\n", avail);
    ssize_t n = recv(sfd, buf, sizeof buf, MSG_PEEK);
    printf("peek %.*s\n", (int)(n > 0 ? n : 0), buf);
    n = read(sfd, buf, sizeof buf);
    printf("read %.*s\n", (int)(n > 0 ? n : 0), buf);
    int file = open("/bin/probe", O_RDONLY | O_CLOEXEC);
    off_t off = 0;
    ssize_t sent = sendfile(cfd, file, &off, sizeof buf);
    size_t got = 0;
    while (sent > 0 && got < (size_t)sent && (n = read(sfd, buf, sizeof buf)) > 0)
        got += (size_t)n;
    printf("sendfile %zd received %zu\n", sent, got);
    int pipefd[2];
    if (pipe(pipefd) < 0 || write(cfd, "spliced", 7) != 7)
        return 1;
    poll(&pfd, 1, 5000);
    /* Non-blocking: a blocking splice of redirected data waits forever. */
    fcntl(sfd, F_SETFL, O_NONBLOCK);
    n = splice(sfd, NULL, pipefd[1], NULL, sizeof buf, SPLICE_F_NONBLOCK);
    printf("splice %s\n", n == 7 ? "ok" : "refused");
    /* A listener with TCP_DEFER_ACCEPT: the server's socket exists only
     * once the first bytes came over TCP; later ones must still follow. */
    int dfd = lo_socket(8001, true), secs = 5;
    setsockopt(dfd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &secs, sizeof secs);
    int c2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    to.sin_port = htons(8001);
    if (dfd < 0 || c2 < 0 || connect(c2, (struct sockaddr *)&to, sizeof to) < 0 ||
        write(c2, "AAAA", 4) != 4)
        return 1;
    int s2 = accept(dfd, NULL, NULL);
    if (s2 < 0 || write(c2, "BBBB", 4) != 4)
        return 1;
    usleep(50000);
    char order[9] = {0};
    printf("order %s\n", read_exact(s2, order, 8) ? order : "short");
    /* TCP Fast Open from a client, to a server that gives no cookie: the
     * first bytes follow the handshake. Where Fast Open is off (with the
     * redirect) the client falls back to connect, as apps do. */
    int fl = lo_socket(8003, true), fc = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    to.sin_port = htons(8003);
    if (fl < 0 || fc < 0)
        return 1;
    if (sendto(fc, "AAAA", 4, MSG_FASTOPEN, (struct sockaddr *)&to, sizeof to) != 4 &&
        (errno != EOPNOTSUPP || connect(fc, (struct sockaddr *)&to, sizeof to) < 0 ||
         write(fc, "AAAA", 4) != 4))
        return 1;
    int fs = accept(fl, NULL, NULL);
    char fo[9] = {0};
    if (fs < 0 || write(fc, "BBBB", 4) != 4)
        return 1;
    printf("fastopen order %s\n", read_exact(fs, fo, 8) ? fo : "short");
    /* Half-close: the client stops writing, the server answers, closes,
     * and the client still reads the answer. */
    int hl = lo_socket(8002, true), hc = lo_socket(40002, false);
    to.sin_port = htons(8002);
    if (hl < 0 || hc < 0 || connect(hc, (struct sockaddr *)&to, sizeof to) < 0)
        return 1;
    int hs = accept(hl, NULL, NULL);
    char half[8] = {0};
    if (hs < 0 || write(hc, "one", 3) != 3 || shutdown(hc, SHUT_WR) < 0 ||
        !read_exact(hs, half, 3) || read(hs, half + 3, 1) != 0 || write(hs, "two", 3) != 3)
        return 1;
    close(hs);
    usleep(50000);
    printf("half-close %s\n",
           read_exact(hc, half, 3) && memcmp(half, "two", 3) == 0 ? "two" : "lost");
    /* A dead connection whose server end stays open (a reset), then a new
     * one with the same four-tuple: its bytes go to the new server end. */
    struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
    int rc = lo_socket(40003, false);
    to.sin_port = htons(8002);
    if (rc < 0 || connect(rc, (struct sockaddr *)&to, sizeof to) < 0)
        return 1;
    int old = accept(hl, NULL, NULL);
    setsockopt(rc, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
    close(rc);
    usleep(20000);
    rc = lo_socket(40003, false);
    if (old < 0 || rc < 0 || connect(rc, (struct sockaddr *)&to, sizeof to) < 0)
        return 1;
    int fresh = accept(hl, NULL, NULL);
    char got7[8] = {0};
    struct pollfd fp = {.fd = fresh, .events = POLLIN};
    bool arrived = fresh >= 0 && write(rc, "request", 7) == 7 && poll(&fp, 1, 2000) == 1 &&
                   read_exact(fresh, got7, 7);
    printf("reused four-tuple %s\n", arrived ? got7 : "lost");
    /* Writes to a peer that closed: the first is taken, then the reset. */
    fcntl(sfd, F_SETFL, 0);
    signal(SIGPIPE, SIG_IGN);
    close(cfd);
    usleep(20000);
    for (int i = 0; i < 2; i++) {
        ssize_t w = write(sfd, "after close", 11);
        printf("write after close %s\n", w == 11 ? "taken" : strerror(errno));
        usleep(20000);
    }
    return 0;
}

/* `probe flood`: writes without blocking to a loopback peer that never
 * reads, and prints how many MiB went in before the writes stopped and why
 * (up to 2 GiB): TCP stops the writer at the receive window, the loopback
 * redirect only at the grain's memory limit. */
static int mode_flood(void)
{
    int lfd = lo_socket(8000, true), cfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(8000),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (lfd < 0 || cfd < 0 || connect(cfd, (struct sockaddr *)&to, sizeof to) < 0 ||
        accept(lfd, NULL, NULL) < 0)
        return 1;
    fcntl(cfd, F_SETFL, O_NONBLOCK);
    static char chunk[65536];
    long total = 0;
    for (int again = 0; total < (2l << 30);) {
        ssize_t w = write(cfd, chunk, sizeof chunk);
        if (w > 0) {
            total += w;
            again = 0;
        } else if (errno == EAGAIN && ++again < 50) {
            usleep(2000);
        } else {
            break;
        }
    }
    printf("flood %ld MiB %s\n", total >> 20, total >= (2l << 30) ? "unstopped" : strerror(errno));
    return 0;
}

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "probes") == 0) {
        host_pid = argc > 2 ? strtol(argv[2], NULL, 10) : 0;
        abstract_name = argc > 3 ? argv[3] : "";
        const char *only = argc > 4 ? argv[4] : NULL;
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
            if (!only || strcmp(only, probes[i].name) == 0)
                run_probe(&probes[i]);
        return 0;
    }
    if (strcmp(mode, "list") == 0) {
        for (size_t i = 0; i < sizeof probes / sizeof probes[0]; i++)
            printf("%s\n", probes[i].name);
        return 0;
    }
    if (strcmp(mode, "exit") == 0)
        return argc > 2 ? atoi(argv[2]) : 0;
    if (strcmp(mode, "sockapi") == 0)
        return mode_sockapi();
    if (strcmp(mode, "flood") == 0)
        return mode_flood();
    if (strcmp(mode, "lopair") == 0 && argc > 4)
        return mode_lopair(argv[2], atoi(argv[3]), atoi(argv[4]));
    if (strcmp(mode, "env") == 0) {
        for (char **e = environ; *e; e++)
            printf("%s\n", *e);
        return 0;
    }
    if (strcmp(mode, "fds") == 0) {
        for (int fd = 0; fd < 1024; fd++) {
            struct stat st;
            if (fstat(fd, &st) == 0)
                printf("%d %s\n", fd,
                       S_ISSOCK(st.st_mode)   ? "socket"
                       : S_ISCHR(st.st_mode)  ? "chr"
                       : S_ISFIFO(st.st_mode) ? "fifo"
                       : S_ISREG(st.st_mode)  ? "file"
                                              : "other");
        }
        return 0;
    }
    if (strcmp(mode, "cat") == 0) {
        char buf[4096];
        ssize_t n;
        while ((n = read(0, buf, sizeof buf)) > 0)
            if (write(1, buf, (size_t)n) != n)
                return 1;
        fprintf(stderr, "to stderr\n");
        return 0;
    }
    if (strcmp(mode, "spam") == 0) {
        /* argv[2] KiB of numbered lines on stdout. */
        long kib = argc > 2 ? strtol(argv[2], NULL, 10) : 1;
        char line[64];
        for (long i = 0; i < kib * 16; i++) {
            int n = snprintf(line, sizeof line,
                             "line %08ld ......................................\n", i);
            if (write(1, line, (size_t)n) != n)
                return 1;
        }
        return 0;
    }
    if (strcmp(mode, "hog") == 0)
        return mode_hog();
    if (strcmp(mode, "forkbomb") == 0)
        return mode_forkbomb();
    if (strcmp(mode, "tree") == 0)
        return mode_tree();
    if (strcmp(mode, "spin") == 0) {
        /* Burn CPU until killed. */
        printf("ready\n");
        fflush(stdout);
        for (volatile unsigned long i = 0;; i++)
            ;
    }
    if (strcmp(mode, "sleep") == 0) {
        printf("ready\n");
        fflush(stdout);
        sleep(600);
        return 0;
    }
    fprintf(stderr,
            "usage: probe probes|list|exit N|env|fds|cat|spam KIB|hog|forkbomb|tree|spin|sleep\n");
    return 2;
}
