/* Installed apps and packages: the rows spk_install reads and writes. A
 * package row is written only after its tree is in place, so a row always
 * names a complete apps/<packageId>/ directory. */
#include "store_internal.h"

static int pkg_db_error(gr_error_t *err, sqlite3 *db, const char *what)
{
    return gr_make_error(err, 0, "%s: %s", what, sqlite3_errmsg(db));
}

int st_package_exists(st_store *st, const char *package_id, bool *exists, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT 1 FROM packages WHERE package_id = ?", -1, &stmt,
                           NULL) != SQLITE_OK)
        return pkg_db_error(err, st->db, "look up package");
    sqlite3_bind_text(stmt, 1, package_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return pkg_db_error(err, st->db, "look up package");
    *exists = rc == SQLITE_ROW;
    return 0;
}

int st_app_latest_version(st_store *st, const char *app_id, long *version, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT max(version) FROM packages WHERE app_id = ?", -1, &stmt,
                           NULL) != SQLITE_OK)
        return pkg_db_error(err, st->db, "look up app");
    sqlite3_bind_text(stmt, 1, app_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(stmt);
        return pkg_db_error(err, st->db, "look up app");
    }
    *version =
        sqlite3_column_type(stmt, 0) == SQLITE_NULL ? -1 : (long)sqlite3_column_int64(stmt, 0);
    sqlite3_finalize(stmt);
    return 0;
}

static int step_once(sqlite3 *db, const char *sql, const char *const *text, int ntext,
                     const int64_t *ints, int nints, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return pkg_db_error(err, db, "record package");
    int i = 1;
    for (int t = 0; t < ntext; t++)
        sqlite3_bind_text(stmt, i++, text[t], -1, SQLITE_STATIC);
    for (int n = 0; n < nints; n++)
        sqlite3_bind_int64(stmt, i++, ints[n]);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return pkg_db_error(err, db, "record package");
    return 0;
}

int st_package_add(st_store *st, const char *package_id, const char *app_id, long version,
                   const char *marketing_version, const char *title, gr_error_t *err)
{
    int64_t now = gr_now_unix();
    if (sqlite3_exec(st->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK)
        return pkg_db_error(err, st->db, "record package");
    const char *app_text[] = {app_id};
    const char *pkg_text[] = {package_id, app_id, marketing_version, title};
    int64_t pkg_ints[] = {version, now};
    if (step_once(st->db,
                  "INSERT INTO apps(app_id, created_at) VALUES(?, ?) "
                  "ON CONFLICT(app_id) DO NOTHING",
                  app_text, 1, &now, 1, err) < 0 ||
        step_once(st->db,
                  "INSERT INTO packages(package_id, app_id, marketing_version, title, "
                  "version, installed_at) VALUES(?, ?, ?, ?, ?, ?)",
                  pkg_text, 4, pkg_ints, 2, err) < 0) {
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    if (sqlite3_exec(st->db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        pkg_db_error(err, st->db, "record package");
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}
