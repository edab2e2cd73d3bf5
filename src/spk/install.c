/* Installing a package into a server: verify, unpack once into
 * <data>/apps/<packageId>/ (atomically), then record it in the store. The
 * row is written last and the tree removed again if that fails, so an error
 * leaves nothing behind. */
#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "spk_internal.h"

void spk_install_result_release(spk_install_result *r)
{
    spk_info_release(&r->info);
    free(r->dir);
    r->dir = NULL;
}

static void copy_info(spk_info *dst, const spk_info *src)
{
    *dst = *src;
    dst->title = gr_strdup(src->title);
    dst->marketing_version = gr_strdup(src->marketing_version);
}

int spk_install(const char *path, const char *data_dir, st_store *st, spk_install_result *out,
                gr_error_t *err)
{
    memset(out, 0, sizeof(*out));
    spk_package *pkg = NULL;
    if (spk_package_open(path, &pkg, err) < 0)
        return -1; /* the message already names the file */
    const spk_info *info = spk_package_info(pkg);
    _cleanup_free_ char *apps = gr_asprintf("%s/apps", data_dir);
    _cleanup_free_ char *dir = gr_asprintf("%s/%s", apps, info->package_id);
    int rc = 0;
    bool recorded = false;
    long latest = -1;
    struct stat sb;
    bool have_dir = false;

    /* Installs into one data directory take turns (the daemon's uploads and
     * `granary admin install` alike), so each sees the others' trees and rows
     * complete; verifying, the slow part, happened before. */
    _cleanup_close_ int lock = -1;
    _cleanup_free_ char *lock_path = gr_asprintf("%s/install.lock", data_dir);
    if (gr_mkdir_p(apps, 0755, err) < 0) {
        rc = -1;
        goto out;
    }
    lock = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock < 0 || flock(lock, LOCK_EX) < 0) {
        rc = gr_make_error(err, errno, "lock %s", lock_path);
        goto out;
    }
    have_dir = lstat(dir, &sb) == 0;
    if (st_package_exists(st, info->package_id, &recorded, err) < 0 ||
        st_app_latest_version(st, info->app_id, &latest, err) < 0) {
        rc = -1;
        goto out;
    }
    if (recorded && have_dir) {
        out->status = SPK_INSTALLED_ALREADY;
        goto done;
    }
    if (have_dir) {
        /* A tree without a row: left by an install that died before its
         * commit. Its contents are unknown, so it goes. */
        gr_warn("removing %s, left by an unfinished install", dir);
        if (spk__rm_rf(dir, err) < 0) {
            rc = -1;
            goto out;
        }
    }
    if (spk_unpack(pkg, dir, err) < 0) {
        rc = -1;
        goto out;
    }
    if (recorded) {
        /* The row survived but the tree had gone: restored. */
        out->status = SPK_INSTALLED_ALREADY;
        goto done;
    }
    if (st_package_add(st, info->package_id, info->app_id, (long)info->version,
                       info->marketing_version, info->title, err) < 0) {
        gr_error_t cleanup = NULL;
        if (spk__rm_rf(dir, &cleanup) < 0) {
            gr_warn("%s", cleanup->msg);
            gr_error_release(&cleanup);
        }
        rc = -1;
        goto out;
    }
    if (latest < 0)
        out->status = SPK_INSTALLED_NEW_APP;
    else if ((long)info->version > latest)
        out->status = SPK_INSTALLED_UPGRADE;
    else
        out->status = SPK_INSTALLED_OLDER;
done:
    out->previous_version = latest;
    out->dir = gr_steal_pointer(&dir);
    copy_info(&out->info, info);
out:
    spk_package_free(pkg);
    if (rc < 0)
        return gr_error_prefix(err, "install %s", path);
    return 0;
}
