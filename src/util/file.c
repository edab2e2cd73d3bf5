/* Files, directories, randomness and clocks. */
#include "util.h"

#include <fcntl.h>
#include <ftw.h>
#include <sys/random.h>
#include <sys/stat.h>

int gr_read_file(const char *path, size_t max_size, char **out, size_t *len, gr_error_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return gr_make_error(err, errno, "open %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0)
        return gr_make_error(err, errno, "stat %s", path);
    if (!S_ISREG(st.st_mode))
        return gr_make_error(err, 0, "%s is not a regular file", path);
    if ((uint64_t)st.st_size > max_size)
        return gr_make_error(err, 0, "%s is too large (%lld bytes, limit %zu)", path,
                             (long long)st.st_size, max_size);
    gr_buf b = GR_BUF_INIT;
    char chunk[8192];
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            gr_buf_release(&b);
            return gr_make_error(err, e, "read %s", path);
        }
        if (n == 0)
            break;
        if (b.len + (size_t)n > max_size) {
            gr_buf_release(&b);
            return gr_make_error(err, 0, "%s grew past the limit of %zu bytes", path, max_size);
        }
        gr_buf_append(&b, chunk, (size_t)n);
    }
    *len = b.len;
    *out = gr_buf_steal(&b);
    return 0;
}

int gr_mkdir_p(const char *dir, int mode, gr_error_t *err)
{
    if (*dir == '\0')
        return gr_make_error(err, 0, "empty directory name");
    struct stat st;
    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    _cleanup_free_ char *path = gr_strdup(dir);
    size_t len = strlen(path);
    for (size_t i = 1; i <= len; i++) {
        if (path[i] != '/' && path[i] != '\0')
            continue;
        char saved = path[i];
        path[i] = '\0';
        /* An existing parent may refuse mkdir with EACCES rather than
         * EEXIST (no write permission); that is fine when it exists. */
        if (mkdir(path, (mode_t)mode) < 0 && errno != EEXIST) {
            int e = errno;
            if (stat(path, &st) < 0 || !S_ISDIR(st.st_mode))
                return gr_make_error(err, e, "create directory %s", path);
        }
        path[i] = saved;
    }
    if (stat(dir, &st) < 0)
        return gr_make_error(err, errno, "stat %s", dir);
    if (!S_ISDIR(st.st_mode))
        return gr_make_error(err, ENOTDIR, "%s", dir);
    return 0;
}

/* nftw's callbacks take no argument of ours: their state is here. */
static __thread unsigned tree_unreadable;
static __thread int tree_errno;
static __thread char tree_failed[256];

static void tree_note_failure(const char *path)
{
    if (tree_errno == 0) {
        tree_errno = errno;
        snprintf(tree_failed, sizeof tree_failed, "%s", path);
    }
}

/* Gives the owner back rwx on each directory, so that it can be read and
 * emptied; one the walk could not read is walked on the next pass. */
static int tree_open_up(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (flag == FTW_DNR || (flag == FTW_D && (st->st_mode & S_IRWXU) != S_IRWXU)) {
        if (chmod(path, (st->st_mode & 07777) | S_IRWXU) < 0)
            tree_note_failure(path);
        else if (flag == FTW_DNR)
            tree_unreadable++;
    }
    return 0;
}

static int tree_remove(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    if (remove(path) < 0 && errno != ENOENT)
        tree_note_failure(path);
    return 0; /* go on: remove all that can be */
}

int gr_remove_tree(const char *dir, gr_error_t *err)
{
    struct stat st;
    if (lstat(dir, &st) < 0)
        return errno == ENOENT ? 0 : gr_make_error(err, errno, "stat %s", dir);
    tree_errno = 0;
    if (S_ISDIR(st.st_mode)) {
        /* Each pass opens one more level of directories that were closed
         * even to their owner; a tree deeper than that is left for a retry. */
        for (int pass = 0; pass < 64; pass++) {
            tree_unreadable = 0;
            if (nftw(dir, tree_open_up, 32, FTW_PHYS) < 0)
                tree_note_failure(dir);
            if (tree_unreadable == 0)
                break;
        }
        tree_errno = 0;
        if (nftw(dir, tree_remove, 32, FTW_DEPTH | FTW_PHYS) < 0)
            tree_note_failure(dir);
    } else if (remove(dir) < 0) {
        tree_note_failure(dir);
    }
    if (lstat(dir, &st) == 0)
        return tree_errno ? gr_make_error(err, tree_errno, "could not remove all of %s (%s)", dir,
                                          tree_failed)
                          : gr_make_error(err, 0, "could not remove all of %s", dir);
    return 0;
}

int gr_random_bytes(void *buf, size_t n, gr_error_t *err)
{
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return gr_make_error(err, errno, "getrandom");
        }
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

int64_t gr_now_unix(void)
{
    return (int64_t)time(NULL);
}

uint64_t gr_monotonic_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
