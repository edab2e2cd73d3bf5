/* Writing a verified archive to disk: into a fresh temporary directory next
 * to the target, every file and directory synced, then one rename, so a
 * reader of the target never sees half a tree. Names were checked by the
 * reader; creation is relative to directory fds and never follows links. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spk_internal.h"

static int set_time(int dfd, const char *name, int64_t ns, gr_error_t *err)
{
    if (ns == 0)
        return 0;
    struct timespec ts[2];
    int64_t sec = ns / 1000000000, rem = ns % 1000000000;
    if (rem < 0) {
        rem += 1000000000;
        sec--;
    }
    ts[0].tv_sec = ts[1].tv_sec = (time_t)sec;
    ts[0].tv_nsec = ts[1].tv_nsec = (long)rem;
    if (utimensat(dfd, name, ts, AT_SYMLINK_NOFOLLOW) < 0 && errno != EINVAL && errno != EOVERFLOW)
        return gr_make_error(err, errno, "set time of %s", name);
    return 0;
}

static int write_all(int fd, const uint8_t *p, size_t n, gr_error_t *err)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return gr_make_error(err, errno, "write");
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int unpack_dir(int dfd, Archive_File_LR files, gr_error_t *err)
{
    for (uint32_t i = 0; i < Archive_File_list_len(files); i++) {
        Archive_File_R f = Archive_File_list_get(files, i);
        cp_text name = Archive_File_get_name(f);
        int64_t mtime = Archive_File_get_lastModificationTimeNs(f);
        switch (Archive_File_which(f)) {
        case Archive_File_WHICH_regular:
        case Archive_File_WHICH_executable: {
            bool exec = Archive_File_which(f) == Archive_File_WHICH_executable;
            cp_data d = Archive_File_get_regular(f);
            _cleanup_close_ int fd =
                openat(dfd, name.str, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                       exec ? 0777 : 0666);
            if (fd < 0)
                return gr_make_error(err, errno, "create %s", name.str);
            if (write_all(fd, d.ptr, d.len, err) < 0 || fsync(fd) < 0) {
                if (!*err)
                    gr_make_error(err, errno, "fsync");
                return gr_error_prefix(err, "%s", name.str);
            }
            break;
        }
        case Archive_File_WHICH_symlink: {
            cp_text t = Archive_File_get_symlink(f);
            if (symlinkat(t.str, dfd, name.str) < 0)
                return gr_make_error(err, errno, "symlink %s", name.str);
            break;
        }
        case Archive_File_WHICH_directory: {
            if (mkdirat(dfd, name.str, 0777) < 0)
                return gr_make_error(err, errno, "mkdir %s", name.str);
            _cleanup_close_ int sub =
                openat(dfd, name.str, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub < 0)
                return gr_make_error(err, errno, "open %s", name.str);
            if (unpack_dir(sub, Archive_File_get_directory(f), err) < 0)
                return gr_error_prefix(err, "%s", name.str);
            if (fsync(sub) < 0)
                return gr_make_error(err, errno, "fsync %s", name.str);
            break;
        }
        default:
            return gr_make_error(err, 0, "%s: unknown entry kind", name.str);
        }
        if (set_time(dfd, name.str, mtime, err) < 0)
            return -1;
    }
    return 0;
}

int spk__unpack_at(const spk_package *pkg, int root_fd, gr_error_t *err)
{
    Archive_R ar = Archive_root((cp_message *)&pkg->msg);
    if (unpack_dir(root_fd, Archive_get_files(ar), err) < 0)
        return -1;
    if (fsync(root_fd) < 0)
        return gr_make_error(err, errno, "fsync");
    return 0;
}

static int rm_at(int dfd, const char *name, gr_error_t *err)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return gr_make_error(err, errno, "remove %s", name);
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return gr_make_error(err, errno, "open %s", name);
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return gr_make_error(err, errno, "read %s", name);
    }
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        rc = rm_at(dirfd(d), e->d_name, err);
    }
    closedir(d);
    if (rc < 0)
        return -1;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        return gr_make_error(err, errno, "remove %s", name);
    return 0;
}

int spk__rm_rf(const char *path, gr_error_t *err)
{
    return rm_at(AT_FDCWD, path, err);
}

int spk__fsync_dir(const char *path, gr_error_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return gr_make_error(err, errno, "fsync %s", path);
    return 0;
}

int spk_unpack(const spk_package *pkg, const char *dir, gr_error_t *err)
{
    struct stat st;
    if (lstat(dir, &st) == 0)
        return gr_make_error(err, EEXIST, "unpack to %s", dir);
    _cleanup_free_ char *copy = gr_strdup(dir);
    _cleanup_free_ char *copy2 = gr_strdup(dir);
    const char *parent = dirname(copy);
    const char *base = basename(copy2);
    _cleanup_free_ char *tmp = gr_asprintf("%s/.%s.tmp-XXXXXX", parent, base);
    if (!mkdtemp(tmp))
        return gr_make_error(err, errno, "create a temporary directory in %s", parent);
    int rc = 0;
    {
        _cleanup_close_ int fd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            rc = gr_make_error(err, errno, "open %s", tmp);
        /* mkdtemp makes it 0700; a package root is readable like its files. */
        else if (fchmod(fd, 0755) < 0)
            rc = gr_make_error(err, errno, "chmod %s", tmp);
        else if (spk__unpack_at(pkg, fd, err) < 0)
            rc = gr_error_prefix(err, "unpack to %s", dir);
    }
    if (rc == 0 && renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_NOREPLACE) < 0)
        rc = gr_make_error(err, errno, "rename %s to %s", tmp, dir);
    if (rc < 0) {
        gr_error_t cleanup = NULL;
        if (spk__rm_rf(tmp, &cleanup) < 0) {
            gr_warn("%s", cleanup->msg);
            gr_error_release(&cleanup);
        }
        return -1;
    }
    return spk__fsync_dir(parent, err);
}
