/* The grain's filesystem. The daemon turns the spec into a list of steps
 * (reading the package's top level once); the child runs them on a fresh
 * tmpfs root and pivots into it. The root tmpfs holds only mount points and
 * the package's top-level symlinks, so mount points for /var, /tmp, /dev and
 * the bridge are made there and never written into the package; it is made
 * read-only before the pivot. Binds use open_tree + mount_setattr +
 * move_mount, so "read-only, nosuid, nodev" is applied atomically and to
 * every submount of the source. */
#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "sandbox_internal.h"
#include "util.h"

static const char *const reserved[] = {"var", "tmp", "dev", "proc", "sys"};

static void add_op(sbx__mounts *m, sbx__op_kind kind, int src, const char *target, const char *data,
                   unsigned long flags)
{
    if (m->n_ops == m->cap_ops) {
        m->cap_ops = m->cap_ops ? m->cap_ops * 2 : 32;
        m->ops = gr_realloc(m->ops, m->cap_ops * sizeof(*m->ops));
    }
    sbx__mount_op *op = &m->ops[m->n_ops++];
    op->kind = kind;
    op->src = src;
    op->target = gr_asprintf(SBX__STAGE "%s", target);
    op->data = gr_strdup(data ? data : "");
    op->flags = flags;
}

static bool is_reserved(const char *name, bool bridge)
{
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcmp(name, reserved[i]) == 0)
            return true;
    return bridge && strcmp(name, &SBX_BRIDGE_PATH[1]) == 0;
}

#define RO_ATTRS (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV)

/* One step per top-level entry of the package: directories and files are
 * bound read-only, symlinks are recreated, anything else is left out. */
static int plan_package(const sbx_spec *spec, sbx__mounts *m, gr_error_t *err)
{
    DIR *d = opendir(spec->package_dir);
    if (!d)
        return gr_make_error(err, errno, "package %s", spec->package_dir);
    int dfd = dirfd(d);
    struct dirent *e;
    int rc = 0;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
            is_reserved(name, spec->bridge_path != NULL))
            continue;
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            rc = gr_make_error(err, errno, "package %s: stat %s", spec->package_dir, name);
            break;
        }
        _cleanup_free_ char *target = gr_asprintf("/%s", name);
        if (S_ISDIR(st.st_mode)) {
            add_op(m, SBX__OP_MKDIR, 0, target, NULL, 0);
            add_op(m, SBX__OP_BIND, SBX__SRC_PACKAGE, target, name, RO_ATTRS);
        } else if (S_ISREG(st.st_mode)) {
            add_op(m, SBX__OP_MKFILE, 0, target, NULL, 0);
            add_op(m, SBX__OP_BIND, SBX__SRC_PACKAGE, target, name, RO_ATTRS);
        } else if (S_ISLNK(st.st_mode)) {
            char link[4096];
            ssize_t n = readlinkat(dfd, name, link, sizeof link - 1);
            if (n < 0) {
                rc = gr_make_error(err, errno, "package %s: readlink %s", spec->package_dir, name);
                break;
            }
            link[n] = '\0';
            add_op(m, SBX__OP_SYMLINK, 0, target, link, 0);
        }
    }
    closedir(d);
    return rc;
}

int sbx__mounts_prepare(const sbx_spec *spec, sbx__mounts *m, gr_error_t *err)
{
    memset(m, 0, sizeof(*m));
    for (int i = 0; i < SBX__N_SRC; i++)
        m->src_fd[i] = -1;
    m->src_path[SBX__SRC_PACKAGE] = spec->package_dir;
    m->src_path[SBX__SRC_VAR] = spec->var_dir;
    m->src_path[SBX__SRC_BRIDGE] = spec->bridge_path;

    add_op(m, SBX__OP_TMPFS, 0, "", "size=256k,nr_inodes=8192,mode=0755", MS_NOSUID | MS_NODEV);
    if (plan_package(spec, m, err) < 0) {
        sbx__mounts_release(m);
        return -1;
    }
    add_op(m, SBX__OP_MKDIR, 0, "/var", NULL, 0);
    add_op(m, SBX__OP_BIND, SBX__SRC_VAR, "/var", "", MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);

    uint64_t tmp = spec->tmp_bytes ? spec->tmp_bytes : SBX_DEFAULT_TMP_BYTES;
    _cleanup_free_ char *tmp_opts =
        gr_asprintf("size=%llu,nr_inodes=4096,mode=1777", (unsigned long long)tmp);
    add_op(m, SBX__OP_MKDIR, 0, "/tmp", NULL, 0);
    add_op(m, SBX__OP_TMPFS, 0, "/tmp", tmp_opts, MS_NOSUID | MS_NODEV);

    add_op(m, SBX__OP_MKDIR, 0, "/dev", NULL, 0);
    add_op(m, SBX__OP_TMPFS, 0, "/dev", "size=64k,nr_inodes=16,mode=0755",
           MS_NOSUID | MS_NODEV | MS_NOEXEC);
    static const char *const devs[] = {"/dev/null", "/dev/zero", "/dev/urandom"};
    for (size_t i = 0; i < 3; i++) {
        add_op(m, SBX__OP_MKFILE, 0, devs[i], NULL, 0);
        /* Not nodev: these binds are the only device nodes a grain has. */
        add_op(m, SBX__OP_BIND, SBX__SRC_HOST, devs[i], devs[i],
               MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC);
    }
    add_op(m, SBX__OP_SYMLINK, 0, "/dev/random", "urandom", 0);
    _cleanup_free_ char *shm_opts =
        gr_asprintf("size=%u,nr_inodes=1024,mode=1777", SBX_DEFAULT_SHM_BYTES);
    add_op(m, SBX__OP_MKDIR, 0, "/dev/shm", NULL, 0);
    add_op(m, SBX__OP_TMPFS, 0, "/dev/shm", shm_opts, MS_NOSUID | MS_NODEV | MS_NOEXEC);
    add_op(m, SBX__OP_REMOUNT_RO, 0, "/dev", NULL, MS_NOSUID | MS_NODEV | MS_NOEXEC);

    if (spec->bridge_path) {
        add_op(m, SBX__OP_MKFILE, 0, SBX_BRIDGE_PATH, NULL, 0);
        add_op(m, SBX__OP_BIND, SBX__SRC_BRIDGE, SBX_BRIDGE_PATH, "", RO_ATTRS);
    }
    add_op(m, SBX__OP_REMOUNT_RO, 0, "", NULL, MS_NOSUID | MS_NODEV);
    return 0;
}

void sbx__mounts_release(sbx__mounts *m)
{
    for (size_t i = 0; i < m->n_ops; i++) {
        free(m->ops[i].target);
        free(m->ops[i].data);
    }
    free(m->ops);
    m->ops = NULL;
    m->n_ops = m->cap_ops = 0;
}

SBX__CHILD static int bind_op(const sbx__mounts *m, const sbx__mount_op *op)
{
    int dirfd = op->src == SBX__SRC_HOST ? AT_FDCWD : m->src_fd[op->src];
    unsigned flags = OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE | AT_SYMLINK_NOFOLLOW;
    if (op->data[0] == '\0')
        flags |= AT_EMPTY_PATH;
    int tree = (int)syscall(SYS_open_tree, dirfd, op->data, flags);
    if (tree < 0)
        return -errno;
    struct mount_attr attr = {.attr_set = op->flags, .propagation = MS_PRIVATE};
    int rc = 0;
    if (syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) <
            0 ||
        syscall(SYS_move_mount, tree, "", AT_FDCWD, op->target, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        rc = -errno;
    syscall(SYS_close, tree);
    return rc;
}

SBX__CHILD static int run_op(const sbx__mounts *m, const sbx__mount_op *op)
{
    long rc = 0;
    switch (op->kind) {
    case SBX__OP_TMPFS:
        rc = syscall(SYS_mount, "tmpfs", op->target, "tmpfs", op->flags, op->data);
        break;
    case SBX__OP_MKDIR:
        rc = syscall(SYS_mkdirat, AT_FDCWD, op->target, 0755);
        break;
    case SBX__OP_MKFILE:
        rc = syscall(SYS_openat, AT_FDCWD, op->target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC,
                     0444);
        if (rc >= 0)
            rc = syscall(SYS_close, (int)rc);
        break;
    case SBX__OP_SYMLINK:
        rc = syscall(SYS_symlinkat, op->data, AT_FDCWD, op->target);
        break;
    case SBX__OP_BIND:
        return bind_op(m, op);
    case SBX__OP_REMOUNT_RO:
        rc = syscall(SYS_mount, NULL, op->target, NULL,
                     MS_REMOUNT | MS_BIND | MS_RDONLY | op->flags, NULL);
        break;
    }
    return rc < 0 ? -errno : 0;
}

SBX__CHILD int sbx__mounts_apply(sbx__mounts *m, const char **failed)
{
    *failed = "/";
    /* Nothing done here may propagate back to the host. */
    if (syscall(SYS_mount, NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return -errno;
    /* Sources are opened now, inside the new mount namespace (open_tree only
     * clones mounts of the caller's namespace) and before SBX__STAGE is
     * covered, since they may live under it. */
    for (int i = 0; i < SBX__N_SRC; i++) {
        if (!m->src_path[i])
            continue;
        *failed = m->src_path[i];
        int flags = O_PATH | O_CLOEXEC | (i == SBX__SRC_BRIDGE ? 0 : O_DIRECTORY);
        m->src_fd[i] = (int)syscall(SYS_openat, AT_FDCWD, m->src_path[i], flags);
        if (m->src_fd[i] < 0)
            return -errno;
    }
    for (size_t i = 0; i < m->n_ops; i++) {
        *failed = m->ops[i].target;
        int rc = run_op(m, &m->ops[i]);
        if (rc < 0)
            return rc;
    }
    for (int i = 0; i < SBX__N_SRC; i++)
        if (m->src_fd[i] >= 0)
            syscall(SYS_close, m->src_fd[i]);
    /* pivot_root(".", ".") stacks the old root under the new one; detaching
     * it leaves the host's tree unreachable. */
    *failed = "pivot_root";
    if (syscall(SYS_chdir, SBX__STAGE) < 0 || syscall(SYS_pivot_root, ".", ".") < 0 ||
        syscall(SYS_umount2, ".", MNT_DETACH) < 0 || syscall(SYS_chdir, "/") < 0)
        return -errno;
    return 0;
}
