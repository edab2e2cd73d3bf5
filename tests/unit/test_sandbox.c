/* Unit tests for src/sandbox that need no grain: spec validation, the mount
 * plan, the compiled seccomp filter (loaded into a forked child of the test),
 * and the rotating log writer. */
#include "sandbox_internal.h"
#include "testutil.h"
#include "util.h"

#include <fcntl.h>
#include <linux/filter.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>

#include <setjmp.h>
#include <cmocka.h>

typedef struct {
    char dir[64];
    char *pkg, *var, *file;
} fixture;

static int setup(void **state)
{
    fixture *f = gr_calloc(1, sizeof(*f));
    gr_strlcpy(f->dir, "/tmp/granary-sbx-XXXXXX", sizeof f->dir);
    assert_non_null(mkdtemp(f->dir));
    f->pkg = gr_asprintf("%s/pkg", f->dir);
    f->var = gr_asprintf("%s/var", f->dir);
    f->file = gr_asprintf("%s/file", f->dir);
    assert_int_equal(mkdir(f->pkg, 0755), 0);
    assert_int_equal(mkdir(f->var, 0755), 0);
    int fd = open(f->file, O_WRONLY | O_CREAT, 0644);
    assert_true(fd >= 0);
    close(fd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    testutil_rm_rf(f->dir);
    free(f->pkg);
    free(f->var);
    free(f->file);
    free(f);
    return 0;
}

static char *const argv_ok[] = {"/bin/app", "--flag", NULL};
static char *const env_ok[] = {"HOME=/var", "EMPTY=", NULL};
static char *const env_empty[] = {NULL};

static void good_spec(const fixture *f, sbx_spec *s)
{
    sbx_spec_init(s);
    s->package_dir = f->pkg;
    s->var_dir = f->var;
    s->argv = argv_ok;
    s->envp = env_ok;
}

/* Validates s and checks the error mentions want. */
static void expect_invalid(const sbx_spec *s, const char *want)
{
    _cleanup_error_ gr_error_t err = NULL;
    assert_int_equal(sbx_spec_validate(s, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), want));
}

static void test_spec_defaults(void **state)
{
    sbx_spec s;
    sbx_spec_init(&s);
    assert_int_equal(s.rpc_fd, -1);
    for (int i = 0; i < 3; i++)
        assert_int_equal(s.stdio[i], -1);
    assert_int_equal(s.memory_bytes, 0);
    assert_null(s.bridge_path);
}

static void test_spec_valid(void **state)
{
    fixture *f = *state;
    sbx_spec s;
    good_spec(f, &s);
    gr_error_t err = NULL;
    assert_int_equal(sbx_spec_validate(&s, &err), 0);
    assert_null(err);
    s.envp = env_empty;
    s.bridge_path = f->file;
    s.rpc_fd = 0;
    s.stdio[1] = 1;
    s.memory_bytes = 1u << 20;
    assert_int_equal(sbx_spec_validate(&s, &err), 0);
}

static void test_spec_invalid(void **state)
{
    fixture *f = *state;
    sbx_spec s;
    good_spec(f, &s);
    s.package_dir = NULL;
    expect_invalid(&s, "package directory must be an absolute path");
    s.package_dir = "relative/pkg";
    expect_invalid(&s, "package directory must be an absolute path");
    s.package_dir = "/nonexistent/granary/pkg";
    expect_invalid(&s, "No such file");
    s.package_dir = f->file;
    expect_invalid(&s, "is not a directory");

    good_spec(f, &s);
    s.var_dir = "/nonexistent/granary/var";
    expect_invalid(&s, "var directory");

    good_spec(f, &s);
    s.bridge_path = "bridge";
    expect_invalid(&s, "bridge must be an absolute path");
    s.bridge_path = f->pkg;
    expect_invalid(&s, "not a regular file");
    s.bridge_path = "/nonexistent/bridge";
    expect_invalid(&s, "bridge /nonexistent/bridge");

    good_spec(f, &s);
    s.argv = NULL;
    expect_invalid(&s, "no command");
    char *const rel[] = {"bin/app", NULL};
    s.argv = rel;
    expect_invalid(&s, "must be an absolute path inside the grain");
    char *const none[] = {NULL};
    s.argv = none;
    expect_invalid(&s, "no command");

    good_spec(f, &s);
    s.envp = NULL;
    expect_invalid(&s, "no environment");
    char *const noeq[] = {"A=1", "SECRET", NULL};
    s.envp = noeq;
    expect_invalid(&s, "'SECRET' is not NAME=VALUE");
    char *const noname[] = {"=x", NULL};
    s.envp = noname;
    expect_invalid(&s, "is not NAME=VALUE");

    good_spec(f, &s);
    s.rpc_fd = 987;
    expect_invalid(&s, "rpc fd 987");
    s.rpc_fd = -1;
    s.stdio[2] = -7;
    expect_invalid(&s, "stderr fd -7 is invalid");

    good_spec(f, &s);
    s.memory_bytes = 4096;
    expect_invalid(&s, "below 1 MiB");
    s.memory_bytes = 0;
    s.tmp_bytes = 10;
    expect_invalid(&s, "below 4 KiB");
    s.tmp_bytes = 0;
    s.cpu_percent = 1000000;
    expect_invalid(&s, "too large");
}

static const sbx__mount_op *find_op(const sbx__mounts *m, sbx__op_kind kind, const char *target)
{
    for (size_t i = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == kind && strcmp(m->ops[i].target, target) == 0)
            return &m->ops[i];
    return NULL;
}

static void test_mount_plan(void **state)
{
    fixture *f = *state;
    _cleanup_free_ char *bin = gr_asprintf("%s/bin", f->pkg);
    _cleanup_free_ char *cfg = gr_asprintf("%s/config", f->pkg);
    _cleanup_free_ char *lib = gr_asprintf("%s/lib", f->pkg);
    _cleanup_free_ char *fifo = gr_asprintf("%s/fifo", f->pkg);
    _cleanup_free_ char *pvar = gr_asprintf("%s/var", f->pkg);
    _cleanup_free_ char *pbridge = gr_asprintf("%s/sandstorm-http-bridge", f->pkg);
    assert_int_equal(mkdir(bin, 0755), 0);
    assert_int_equal(mkdir(pvar, 0755), 0);
    assert_int_equal(close(open(cfg, O_WRONLY | O_CREAT, 0644)), 0);
    assert_int_equal(close(open(pbridge, O_WRONLY | O_CREAT, 0644)), 0);
    assert_int_equal(symlink("usr/lib", lib), 0);
    assert_int_equal(mkfifo(fifo, 0644), 0);

    sbx_spec s;
    good_spec(f, &s);
    s.bridge_path = f->file;
    s.tmp_bytes = 1u << 20;
    sbx__mounts m;
    gr_error_t err = NULL;
    assert_int_equal(sbx__mounts_prepare(&s, &m, &err), 0);

    /* The root is a tmpfs, made read-only last. */
    assert_int_equal(m.ops[0].kind, SBX__OP_TMPFS);
    assert_string_equal(m.ops[0].target, SBX__STAGE);
    assert_int_equal(m.ops[m.n_ops - 1].kind, SBX__OP_REMOUNT_RO);
    assert_string_equal(m.ops[m.n_ops - 1].target, SBX__STAGE);

    const sbx__mount_op *op = find_op(&m, SBX__OP_BIND, SBX__STAGE "/bin");
    assert_non_null(op);
    assert_int_equal(op->src, SBX__SRC_PACKAGE);
    assert_int_equal(op->flags, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
    assert_non_null(find_op(&m, SBX__OP_MKFILE, SBX__STAGE "/config"));
    assert_non_null(find_op(&m, SBX__OP_BIND, SBX__STAGE "/config"));
    op = find_op(&m, SBX__OP_SYMLINK, SBX__STAGE "/lib");
    assert_non_null(op);
    assert_string_equal(op->data, "usr/lib");
    assert_null(find_op(&m, SBX__OP_MKFILE, SBX__STAGE "/fifo"));
    assert_null(find_op(&m, SBX__OP_BIND, SBX__STAGE "/fifo"));

    /* The package's own var and bridge are covered, never bound. */
    op = find_op(&m, SBX__OP_BIND, SBX__STAGE "/var");
    assert_non_null(op);
    assert_int_equal(op->src, SBX__SRC_VAR);
    assert_int_equal(op->flags & MOUNT_ATTR_RDONLY, 0);
    op = find_op(&m, SBX__OP_BIND, SBX__STAGE SBX_BRIDGE_PATH);
    assert_non_null(op);
    assert_int_equal(op->src, SBX__SRC_BRIDGE);
    assert_true(op->flags & MOUNT_ATTR_RDONLY);
    size_t binds_of_bridge = 0;
    for (size_t i = 0; i < m.n_ops; i++)
        if (m.ops[i].kind == SBX__OP_BIND && strstr(m.ops[i].target, "sandstorm-http-bridge"))
            binds_of_bridge++;
    assert_int_equal(binds_of_bridge, 1);

    op = find_op(&m, SBX__OP_TMPFS, SBX__STAGE "/tmp");
    assert_non_null(op);
    assert_non_null(strstr(op->data, "size=1048576"));
    assert_non_null(find_op(&m, SBX__OP_BIND, SBX__STAGE "/dev/urandom"));
    assert_null(find_op(&m, SBX__OP_MKDIR, SBX__STAGE "/proc"));
    op = find_op(&m, SBX__OP_SYMLINK, SBX__STAGE "/dev/random");
    assert_non_null(op);
    assert_string_equal(op->data, "urandom");
    sbx__mounts_release(&m);

    s.package_dir = "/nonexistent/pkg";
    assert_int_equal(sbx__mounts_prepare(&s, &m, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "package /nonexistent/pkg"));
    gr_error_release(&err);
}

static void expect_path(const char *text, const char *want, const char *path)
{
    char *got = sbx__cgroup_path(text, want);
    if (!path) {
        assert_null(got);
        return;
    }
    assert_non_null(got);
    assert_string_equal(got, path);
    free(got);
}

static void test_cgroup_path(void **state)
{
    const char *hybrid = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n"
                         "2:cpu,cpuacct:/grains/x\n0::/\n";
    expect_path(hybrid, "memory", "/process_api/abc");
    expect_path(hybrid, "pids", "/");
    expect_path(hybrid, "cpu", "/grains/x");
    expect_path(hybrid, "cpuacct", "/grains/x");
    expect_path(hybrid, "", "/");
    expect_path(hybrid, "blkio", NULL);
    expect_path(hybrid, "systemd", NULL); /* "name=systemd" is not a controller */
    expect_path("0::/system.slice/granary.service/daemon\n", "",
                "/system.slice/granary.service/daemon");
    expect_path("0::/a\n", "memory", NULL);
    /* Malformed lines are skipped, never read past. */
    expect_path("garbage\n4:memory\n4:memory:relative\n:\n::\n", "memory", NULL);
    expect_path("", "", NULL);
}

static void test_policy(void **state)
{
    sbx_policy *p = NULL;
    gr_error_t err = NULL;
    assert_int_equal(sbx_policy_new(&p, &err), 0);
    assert_true(sbx_policy_filter_len(p) > 100);
    assert_true(sbx_policy_filter_len(p) <= BPF_MAXINSNS);
    const char *mode = sbx_limits_mode_name(sbx_policy_limits_mode(p));
    assert_true(strcmp(mode, "cgroup-v1") == 0 || strcmp(mode, "cgroup-v2") == 0 ||
                strcmp(mode, "rlimit") == 0);
    sbx_policy_free(p);
    sbx_policy_free(NULL);
}

/* One refused call checked in the filtered child: bit `bit` of the exit code
 * is set when it did not fail with the errno wanted. */
#define CHECK(bit, call, want)                                                                     \
    do {                                                                                           \
        errno = 0;                                                                                 \
        if ((long)(call) != -1 || errno != (want))                                                 \
            bad |= 1 << (bit);                                                                     \
    } while (0)

static void test_seccomp_filter(void **state)
{
    struct sock_fprog prog;
    gr_error_t err = NULL;
    assert_int_equal(sbx__seccomp_compile(&prog, &err), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        if (sbx__seccomp_apply(&prog) < 0)
            _exit(255);
        int bad = 0;
        char c = 'x';
        CHECK(0, syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0), EPERM);
        CHECK(1, syscall(SYS_clone3, NULL, 0), ENOSYS);
        CHECK(2, socket(AF_NETLINK, SOCK_RAW, 0), EAFNOSUPPORT);
        CHECK(3, socket(AF_INET, SOCK_RAW, 1), ENOSYS);
        CHECK(4, ioctl(0, TIOCSTI, &c), ENOSYS);
        CHECK(5, unshare(CLONE_NEWUSER), EPERM);
        CHECK(6, mount("none", "/", "tmpfs", 0, NULL), EPERM);
        CHECK(7, setxattr("/", "user.x", "y", 1, 0), ENOTSUP);
        CHECK(8, syscall(SYS_clone, CLONE_NEWNET | SIGCHLD, 0, NULL, NULL, 0), ENOSYS);
        CHECK(9, syscall(SYS_io_uring_setup, 1, NULL), ENOSYS);
        CHECK(10, syscall(SYS_bpf, 0, NULL, 0), EPERM);
        CHECK(11, syscall(SYS_prlimit64, 1, RLIMIT_NOFILE, NULL, NULL), ENOSYS);
        /* Allowed calls still work. */
        int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || getpid() <= 0)
            bad |= 1 << 12;
        int nb = 1;
        if (ioctl(fd, FIONBIO, &nb) < 0)
            bad |= 1 << 13;
        _exit(bad);
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    free(prog.filter);
}

static void test_log_rotation(void **state)
{
    fixture *f = *state;
    _cleanup_free_ char *path = gr_asprintf("%s/grain.log", f->dir);
    _cleanup_free_ char *old = gr_asprintf("%s/grain.log.1", f->dir);
    sbx_log *l = NULL;
    gr_error_t err = NULL;
    assert_int_equal(sbx_log_open(path, 4096, &l, &err), 0);
    char chunk[1000];
    memset(chunk, 'a', sizeof chunk);
    for (int i = 0; i < 4; i++)
        assert_int_equal(sbx_log_write(l, chunk, sizeof chunk, &err), 0);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4000);
    assert_int_equal(stat(old, &st), -1);
    memset(chunk, 'b', sizeof chunk);
    assert_int_equal(sbx_log_write(l, chunk, sizeof chunk, &err), 0);
    assert_int_equal(stat(old, &st), 0);
    assert_int_equal(st.st_size, 4000);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 1000);
    /* One write above the cap keeps its newest bytes only. */
    char big[10000];
    memset(big, 'c', sizeof big);
    big[sizeof big - 1] = 'z';
    assert_int_equal(sbx_log_write(l, big, sizeof big, &err), 0);
    sbx_log_close(l);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 4096);
    _cleanup_free_ char *text = NULL;
    size_t len;
    assert_int_equal(gr_read_file(path, 1 << 20, &text, &len, &err), 0);
    assert_int_equal(text[len - 1], 'z');
    /* Reopening appends and counts what is already there. */
    assert_int_equal(sbx_log_open(path, 4096, &l, &err), 0);
    assert_int_equal(sbx_log_write(l, "x", 1, &err), 0);
    sbx_log_close(l);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 1);

    /* Rotation happens after the last whole line that fits. */
    assert_int_equal(unlink(old), 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(sbx_log_open(path, 100, &l, &err), 0);
    gr_buf lines = GR_BUF_INIT;
    for (int i = 0; i < 18; i++)
        gr_buf_puts(&lines, "line\n");
    assert_int_equal(sbx_log_write(l, lines.data, lines.len, &err), 0);
    assert_int_equal(sbx_log_write(l, "line\nline\nline\n", 15, &err), 0);
    assert_int_equal(sbx_log_write(l, "partial", 7, &err), 0);
    assert_int_equal(sbx_log_write(l, " end\n", 5, &err), 0);
    sbx_log_close(l);
    gr_buf_release(&lines);
    free(text);
    text = NULL;
    assert_int_equal(gr_read_file(old, 1 << 20, &text, &len, &err), 0);
    assert_int_equal(len, 100);
    assert_int_equal(text[len - 1], '\n');
    free(text);
    text = NULL;
    assert_int_equal(gr_read_file(path, 1 << 20, &text, &len, &err), 0);
    assert_string_equal(text, "line\npartial end\n");

    _cleanup_free_ char *missing = gr_asprintf("%s/no/such/dir/log", f->dir);
    assert_int_equal(sbx_log_open(missing, 0, &l, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "open log"));
    gr_error_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_defaults),
        cmocka_unit_test_setup_teardown(test_spec_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spec_invalid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mount_plan, setup, teardown),
        cmocka_unit_test(test_cgroup_path),
        cmocka_unit_test(test_policy),
        cmocka_unit_test(test_seccomp_filter),
        cmocka_unit_test_setup_teardown(test_log_rotation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
