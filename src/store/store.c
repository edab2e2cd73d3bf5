/* Opening, migrating and closing the SQLite store. */
#include "store_internal.h"

int st__db_error(gr_error_t *err, sqlite3 *db, const char *what)
{
    return gr_make_error(err, 0, "%s: %s", what, db ? sqlite3_errmsg(db) : "out of memory");
}

#define db_error st__db_error

int st__vprepare(st_store *st, sqlite3_stmt **stmt, gr_error_t *err, const char *sql,
                    const char *types, va_list ap)
{
    if (sqlite3_prepare_v2(st->db, sql, -1, stmt, NULL) != SQLITE_OK)
        return db_error(err, st->db, "prepare");
    for (int i = 0; types[i]; i++) {
        int rc;
        if (types[i] == 's')
            rc = sqlite3_bind_text(*stmt, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        else
            rc = sqlite3_bind_int64(*stmt, i + 1, va_arg(ap, int64_t));
        if (rc != SQLITE_OK) {
            sqlite3_finalize(*stmt);
            *stmt = NULL;
            return db_error(err, st->db, "bind");
        }
    }
    return 0;
}

int st__prepare(st_store *st, sqlite3_stmt **stmt, gr_error_t *err, const char *sql,
                const char *types, ...)
{
    va_list ap;
    va_start(ap, types);
    int r = st__vprepare(st, stmt, err, sql, types, ap);
    va_end(ap);
    return r;
}

int st__run(st_store *st, gr_error_t *err, const char *sql, const char *types, ...)
{
    sqlite3_stmt *stmt = NULL;
    va_list ap;
    va_start(ap, types);
    int r = st__vprepare(st, &stmt, err, sql, types, ap);
    va_end(ap);
    if (r < 0)
        return -1;
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        if ((rc & 0xff) == SQLITE_CONSTRAINT) {
            gr_make_error(err, 0, "already exists");
            (*err)->status = EEXIST; /* lets callers tell a duplicate apart */
            return -1;
        }
        return db_error(err, st->db, "write");
    }
    return sqlite3_changes(st->db);
}

int64_t st__query_int(st_store *st, gr_error_t *err, const char *sql, const char *types, ...)
{
    sqlite3_stmt *stmt = NULL;
    va_list ap;
    va_start(ap, types);
    int r = st__vprepare(st, &stmt, err, sql, types, ap);
    va_end(ap);
    if (r < 0)
        return -1;
    int rc = sqlite3_step(stmt);
    int64_t v = rc == SQLITE_ROW ? sqlite3_column_int64(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW)
        return st__db_error(err, st->db, "query");
    return v;
}

char *st__column_dup(sqlite3_stmt *stmt, int i)
{
    const unsigned char *t = sqlite3_column_text(stmt, i);
    return t ? gr_strdup((const char *)t) : NULL;
}

static int exec(st_store *st, const char *sql, gr_error_t *err)
{
    char *msg = NULL;
    if (sqlite3_exec(st->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        gr_make_error(err, 0, "%s", msg ? msg : sqlite3_errmsg(st->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int st_latest_version(void)
{
    return st_migration_count();
}

int st_schema_version(st_store *st, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &stmt, NULL) != SQLITE_OK)
        return db_error(err, st->db, "read schema version");
    int rc = sqlite3_step(stmt);
    int version = rc == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : -1;
    sqlite3_finalize(stmt);
    if (version < 0)
        return db_error(err, st->db, "read schema version");
    return version;
}

static int migrate(st_store *st, gr_error_t *err)
{
    int have = st_schema_version(st, err);
    if (have < 0)
        return -1;
    int want = st_migration_count();
    if (have > want)
        return gr_make_error(err, 0,
                             "the database is at schema version %d, newer than this Granary "
                             "understands (%d); run a newer Granary",
                             have, want);
    for (int v = have; v < want; v++) {
        /* BEGIN IMMEDIATE takes the write lock first, so two processes that
         * open a fresh database at once cannot both apply a migration. */
        if (exec(st, "BEGIN IMMEDIATE", err) < 0)
            return gr_error_prefix(err, "migrate to schema %d", v + 1);
        int now = st_schema_version(st, err);
        if (now < 0)
            goto fail;
        if (now > v) { /* another process got there first */
            exec(st, "ROLLBACK", err);
            v = now - 1;
            continue;
        }
        char pragma[64];
        snprintf(pragma, sizeof(pragma), "PRAGMA user_version = %d", v + 1);
        if (exec(st, st_migration_sql(v), err) < 0 || exec(st, pragma, err) < 0 ||
            exec(st, "COMMIT", err) < 0)
            goto fail;
        gr_debug("store: migrated %s to schema %d", st->path, v + 1);
        continue;
    fail:
        sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
        return gr_error_prefix(err, "migrate %s to schema %d", st->path, v + 1);
    }
    return 0;
}

int st_meta_get(st_store *st, const char *key, char **value, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->db, "SELECT value FROM meta WHERE key = ?", -1, &stmt, NULL) !=
        SQLITE_OK)
        return db_error(err, st->db, "read meta");
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    *value = NULL;
    if (rc == SQLITE_ROW)
        *value = gr_strdup((const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return db_error(err, st->db, "read meta");
    return 0;
}

int st_meta_set(st_store *st, const char *key, const char *value, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->db,
                           "INSERT INTO meta(key, value) VALUES(?, ?) "
                           "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(err, st->db, "write meta");
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_error(err, st->db, "write meta");
    return 0;
}

static int ensure_install_id(st_store *st, gr_error_t *err)
{
    if (st_meta_get(st, "install_id", &st->install_id, err) < 0)
        return -1;
    if (st->install_id)
        return 0;
    unsigned char raw[16];
    char hex[33];
    if (gr_random_bytes(raw, sizeof(raw), err) < 0)
        return -1;
    gr_hex(raw, sizeof(raw), hex);
    /* INSERT OR IGNORE then re-read: a concurrent opener's id wins. */
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v2(st->db, "INSERT OR IGNORE INTO meta(key, value) VALUES('install_id', ?)",
                           -1, &stmt, NULL) != SQLITE_OK)
        return db_error(err, st->db, "write install id");
    sqlite3_bind_text(stmt, 1, hex, -1, SQLITE_STATIC);
    int rc = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE)
        return db_error(err, st->db, "write install id");
    return st_meta_get(st, "install_id", &st->install_id, err);
}

int st_open(st_store **out, const char *path, gr_error_t *err)
{
    st_store *st = gr_calloc(1, sizeof(*st));
    st->path = gr_strdup(path);
    int rc = sqlite3_open_v2(path, &st->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                 SQLITE_OPEN_EXRESCODE,
                             NULL);
    if (rc != SQLITE_OK) {
        db_error(err, st->db, "open");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    /* journal_mode=WAL is the first statement that reads the file, so a file
     * that is not a database fails here with SQLite's own words. While
     * another process turns a new file to WAL, SQLite answers "database is
     * locked" at once, without waiting as busy_timeout asks: wait here, as
     * long (four processes installing into a new data directory at once hit
     * it about one time in four). */
    for (int waited_ms = 0;; waited_ms += 10) {
        rc = sqlite3_exec(st->db, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if ((rc & 0xff) != SQLITE_BUSY || waited_ms >= 5000)
            break;
        sqlite3_sleep(10);
    }
    if (rc != SQLITE_OK) {
        db_error(err, st->db, "open");
        goto fail;
    }
    if (exec(st, "PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL", err) < 0)
        goto fail;
    if (migrate(st, err) < 0 || ensure_install_id(st, err) < 0)
        goto fail;
    *out = st;
    return 0;
fail:
    gr_error_prefix(err, "store %s", path);
    st_close(st);
    return -1;
}

void st_close(st_store *st)
{
    if (st == NULL)
        return;
    if (st->db)
        sqlite3_close_v2(st->db);
    free(st->path);
    free(st->install_id);
    free(st);
}

const char *st_install_id(st_store *st)
{
    return st->install_id;
}
