/* Grains and the installed packages they run, in the store. */
#include "store_internal.h"

void st_grain_release(st_grain *g)
{
    free(g->id);
    free(g->owner_id);
    free(g->package_id);
    free(g->title);
    memset(g, 0, sizeof(*g));
}

void st_grains_free(st_grain *g, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st_grain_release(&g[i]);
    free(g);
}

int st_grain_create(st_store *st, const st_grain *g, gr_error_t *err)
{
    return st__run(st, err,
                   "INSERT INTO grains(id, owner_id, package_id, title, created_at, last_used_at, "
                   "action_index) VALUES(?, ?, ?, ?, ?, ?, ?)",
                   "ssssiii", g->id, g->owner_id, g->package_id, g->title ? g->title : "",
                   g->created_at, g->created_at, (int64_t)g->action_index) < 0
               ? -1
               : 0;
}

#define GRAIN_COLUMNS                                                                            \
    "id, owner_id, package_id, title, created_at, last_used_at, coalesce(trashed_at, 0), "      \
    "action_index, started"

static void grain_from_row(sqlite3_stmt *stmt, st_grain *g)
{
    g->id = st__column_dup(stmt, 0);
    g->owner_id = st__column_dup(stmt, 1);
    g->package_id = st__column_dup(stmt, 2);
    g->title = st__column_dup(stmt, 3);
    g->created_at = sqlite3_column_int64(stmt, 4);
    g->last_used_at = sqlite3_column_int64(stmt, 5);
    g->trashed_at = sqlite3_column_int64(stmt, 6);
    g->action_index = sqlite3_column_int(stmt, 7);
    g->started = sqlite3_column_int(stmt, 8) != 0;
}

int st_grain_get(st_store *st, const char *id, st_grain *out, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (st__prepare(st, &stmt, err, "SELECT " GRAIN_COLUMNS " FROM grains WHERE id = ?", "s", id) <
        0)
        return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        grain_from_row(stmt, out);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return st__db_error(err, st->db, "read grain");
}

int st_grain_list(st_store *st, const char *owner_id, st_grain **out, size_t *n,
                  gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    *out = NULL;
    *n = 0;
    if (st__prepare(st, &stmt, err,
                    "SELECT " GRAIN_COLUMNS " FROM grains WHERE owner_id = ? "
                    "ORDER BY last_used_at DESC, created_at DESC",
                    "s", owner_id) < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        *out = gr_realloc(*out, (*n + 1) * sizeof(**out));
        grain_from_row(stmt, &(*out)[(*n)++]);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        st_grains_free(*out, *n);
        *out = NULL;
        *n = 0;
        return st__db_error(err, st->db, "list grains");
    }
    return 0;
}

static int one_row(int changed, gr_error_t *err)
{
    if (changed == 0)
        return gr_make_error(err, 0, "no such grain");
    return changed < 0 ? -1 : 0;
}

int st_grain_set_started(st_store *st, const char *id, gr_error_t *err)
{
    return one_row(st__run(st, err, "UPDATE grains SET started = 1 WHERE id = ?", "s", id), err);
}

int st_grain_touch(st_store *st, const char *id, int64_t now, gr_error_t *err)
{
    return one_row(st__run(st, err, "UPDATE grains SET last_used_at = ? WHERE id = ?", "is", now, id),
                   err);
}

int st_grain_rename(st_store *st, const char *id, const char *title, gr_error_t *err)
{
    return one_row(st__run(st, err, "UPDATE grains SET title = ? WHERE id = ?", "ss", title, id),
                   err);
}

int st_grain_set_trashed(st_store *st, const char *id, int64_t at, gr_error_t *err)
{
    /* 0 restores: NULLIF keeps "not in the trash" one value in the table. */
    return one_row(st__run(st, err, "UPDATE grains SET trashed_at = NULLIF(?, 0) WHERE id = ?",
                           "is", at, id),
                   err);
}

int st_grain_delete(st_store *st, const char *id, gr_error_t *err)
{
    return one_row(st__run(st, err, "DELETE FROM grains WHERE id = ?", "s", id), err);
}

void st_package_release(st_package *p)
{
    free(p->package_id);
    free(p->app_id);
    free(p->title);
    free(p->marketing_version);
    memset(p, 0, sizeof(*p));
}

void st_packages_free(st_package *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        st_package_release(&p[i]);
    free(p);
}

static void package_from_row(sqlite3_stmt *stmt, st_package *p)
{
    p->package_id = st__column_dup(stmt, 0);
    p->app_id = st__column_dup(stmt, 1);
    p->title = st__column_dup(stmt, 2);
    p->marketing_version = st__column_dup(stmt, 3);
    p->version = (long)sqlite3_column_int64(stmt, 4);
}

#define PACKAGE_COLUMNS "package_id, app_id, title, marketing_version, version"

int st_package_list(st_store *st, st_package **out, size_t *n, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    *out = NULL;
    *n = 0;
    if (st__prepare(st, &stmt, err,
                    "SELECT " PACKAGE_COLUMNS " FROM packages ORDER BY installed_at DESC", "") < 0)
        return -1;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        *out = gr_realloc(*out, (*n + 1) * sizeof(**out));
        package_from_row(stmt, &(*out)[(*n)++]);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        st_packages_free(*out, *n);
        *out = NULL;
        *n = 0;
        return st__db_error(err, st->db, "list packages");
    }
    return 0;
}

int st_package_get(st_store *st, const char *package_id, st_package *out, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (st__prepare(st, &stmt, err, "SELECT " PACKAGE_COLUMNS " FROM packages WHERE package_id = ?",
                    "s", package_id) < 0)
        return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW)
        package_from_row(stmt, out);
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return st__db_error(err, st->db, "read package");
}
