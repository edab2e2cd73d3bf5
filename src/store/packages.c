/* Installed apps and packages: the rows spk_install reads and writes. A
 * package row is written only after its tree is in place, so a row always
 * names a complete apps/<packageId>/ directory. */
#include "store_internal.h"

int st_package_exists(st_store *st, const char *package_id, bool *exists, gr_error_t *err)
{
    int64_t n = st__query_int(st, err, "SELECT count(*) FROM packages WHERE package_id = ?", "s",
                          package_id);
    if (n < 0)
        return gr_error_prefix(err, "look up package");
    *exists = n > 0;
    return 0;
}

int st_app_latest_version(st_store *st, const char *app_id, long *version, gr_error_t *err)
{
    /* Versions are UInt32; +1 keeps "none" (0) apart from version 0. */
    int64_t v = st__query_int(st, err,
                              "SELECT coalesce(max(version) + 1, 0) FROM packages WHERE app_id = ?",
                              "s", app_id);
    if (v < 0)
        return gr_error_prefix(err, "look up app");
    *version = (long)v - 1;
    return 0;
}

int st_package_add(st_store *st, const char *package_id, const char *app_id, long version,
                   const char *marketing_version, const char *title, gr_error_t *err)
{
    int64_t now = gr_now_unix();
    if (st__run(st, err, "BEGIN IMMEDIATE", "") < 0)
        return gr_error_prefix(err, "record package");
    if (st__run(st, err,
                "INSERT INTO apps(app_id, created_at) VALUES(?, ?) ON CONFLICT(app_id) DO NOTHING",
                "si", app_id, now) < 0 ||
        st__run(st, err,
                "INSERT INTO packages(package_id, app_id, marketing_version, title, version, "
                "installed_at) VALUES(?, ?, ?, ?, ?, ?)",
                "ssssii", package_id, app_id, marketing_version, title, (int64_t)version, now) < 0 ||
        st__run(st, err, "COMMIT", "") < 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return gr_error_prefix(err, "record package");
    }
    return 0;
}
