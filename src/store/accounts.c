/* Accounts, sessions and login tokens in the store. */
#include "store_internal.h"

void st_account_release(st_account *a)
{
    free(a->id);
    free(a->email);
    free(a->display_name);
    free(a->password_hash);
    free(a->totp_secret);
    memset(a, 0, sizeof(*a));
}

int st_account_create(st_store *st, const st_account *a, gr_error_t *err)
{
    int r = st__run(st, err,
                    "INSERT INTO accounts(id, email, display_name, password_hash, totp_secret, "
                    "is_admin, created_at) VALUES(?, ?, ?, ?, ?, ?, ?)",
                    "sssssii", a->id, a->email, a->display_name ? a->display_name : "",
                    a->password_hash, a->totp_secret, (int64_t)a->is_admin, a->created_at);
    if (r < 0 && (*err)->status == EEXIST) {
        gr_error_release(err);
        gr_make_error(err, 0, "an account with this email already exists");
        (*err)->status = EEXIST;
    }
    return r < 0 ? -1 : 0;
}

#define ACCOUNT_COLUMNS "id, email, display_name, password_hash, totp_secret, is_admin, created_at"

static int account_query(st_store *st, const char *sql, const char *key, st_account *out,
                         gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (st__prepare(st, &stmt, err, sql, "s", key) < 0)
        return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        out->id = st__column_dup(stmt, 0);
        out->email = st__column_dup(stmt, 1);
        out->display_name = st__column_dup(stmt, 2);
        out->password_hash = st__column_dup(stmt, 3);
        out->totp_secret = st__column_dup(stmt, 4);
        out->is_admin = sqlite3_column_int(stmt, 5) != 0;
        out->created_at = sqlite3_column_int64(stmt, 6);
    }
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return st__db_error(err, st->db, "read account");
}

int st_account_by_id(st_store *st, const char *id, st_account *out, gr_error_t *err)
{
    return account_query(st, "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE id = ?", id, out,
                         err);
}

int st_account_by_email(st_store *st, const char *email, st_account *out, gr_error_t *err)
{
    return account_query(st, "SELECT " ACCOUNT_COLUMNS " FROM accounts WHERE email = ?", email,
                         out, err);
}

int st_account_count(st_store *st, bool admins_only, gr_error_t *err)
{
    return (int)st__query_int(st, err,
                     admins_only ? "SELECT count(*) FROM accounts WHERE is_admin"
                                 : "SELECT count(*) FROM accounts",
                     "");
}

static int update_one(st_store *st, gr_error_t *err, const char *sql, const char *value,
                      const char *id)
{
    int r = st__run(st, err, sql, "ss", value, id);
    if (r == 0)
        return gr_make_error(err, 0, "no such account");
    return r < 0 ? -1 : 0;
}

int st_account_set_password(st_store *st, const char *id, const char *hash, gr_error_t *err)
{
    return update_one(st, err, "UPDATE accounts SET password_hash = ? WHERE id = ?", hash, id);
}

int st_account_set_totp(st_store *st, const char *id, const char *secret, gr_error_t *err)
{
    return update_one(st, err, "UPDATE accounts SET totp_secret = ? WHERE id = ?", secret, id);
}

int st_session_create(st_store *st, const char *token_hash, const char *account_id,
                      const char *csrf, int64_t expires_at, gr_error_t *err)
{
    int r = st__run(st, err,
                    "INSERT INTO sessions(token_hash, account_id, csrf, created_at, expires_at) "
                    "VALUES(?, ?, ?, ?, ?)",
                    "sssii", token_hash, account_id, csrf, gr_now_unix(), expires_at);
    return r < 0 ? -1 : 0;
}

int st_session_get(st_store *st, const char *token_hash, int64_t now, char **account_id,
                   char **csrf, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (st__prepare(st, &stmt, err,
                    "SELECT account_id, csrf FROM sessions WHERE token_hash = ? AND expires_at > ?",
                    "si", token_hash, now) < 0)
        return -1;
    int rc = sqlite3_step(stmt);
    if (rc == SQLITE_ROW) {
        *account_id = st__column_dup(stmt, 0);
        *csrf = st__column_dup(stmt, 1);
    }
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return st__db_error(err, st->db, "read session");
}

int st_session_delete(st_store *st, const char *token_hash, gr_error_t *err)
{
    return st__run(st, err, "DELETE FROM sessions WHERE token_hash = ?", "s", token_hash) < 0
               ? -1
               : 0;
}

int st_session_delete_account(st_store *st, const char *account_id, gr_error_t *err)
{
    return st__run(st, err, "DELETE FROM sessions WHERE account_id = ?", "s", account_id) < 0
               ? -1
               : 0;
}

int st_login_token_create(st_store *st, const char *token_hash, const char *kind,
                          const char *account_id, int64_t expires_at, gr_error_t *err)
{
    int r = st__run(st, err,
                    "INSERT INTO login_tokens(token_hash, kind, account_id, expires_at) "
                    "VALUES(?, ?, ?, ?)",
                    "sssi", token_hash, kind, account_id, expires_at);
    return r < 0 ? -1 : 0;
}

int st_login_token_take(st_store *st, const char *token_hash, const char *kind, int64_t now,
                        char **account_id, gr_error_t *err)
{
    /* DELETE ... RETURNING makes the check and the consumption one step, so
     * two requests racing with the same token cannot both win. */
    sqlite3_stmt *stmt = NULL;
    if (st__prepare(st, &stmt, err,
                    "DELETE FROM login_tokens WHERE token_hash = ? AND kind = ? "
                    "RETURNING account_id, expires_at",
                    "ss", token_hash, kind) < 0)
        return -1;
    int rc = sqlite3_step(stmt);
    int found = 0;
    *account_id = NULL;
    if (rc == SQLITE_ROW) {
        if (sqlite3_column_int64(stmt, 1) > now) {
            found = 1;
            *account_id = st__column_dup(stmt, 0);
        }
        rc = sqlite3_step(stmt);
    }
    sqlite3_finalize(stmt);
    if (rc != SQLITE_DONE) {
        free(*account_id);
        *account_id = NULL;
        return st__db_error(err, st->db, "use login token");
    }
    /* Expired tokens of any kind are swept on the way. */
    st__run(st, err, "DELETE FROM login_tokens WHERE expires_at <= ?", "i", now);
    gr_error_release(err);
    return found;
}

int st_login_token_peek(st_store *st, const char *token_hash, const char *kind, int64_t now,
                        char **account_id, gr_error_t *err)
{
    sqlite3_stmt *stmt = NULL;
    if (st__prepare(st, &stmt, err,
                    "SELECT account_id FROM login_tokens WHERE token_hash = ? AND kind = ? "
                    "AND expires_at > ?",
                    "ssi", token_hash, kind, now) < 0)
        return -1;
    int rc = sqlite3_step(stmt);
    *account_id = rc == SQLITE_ROW ? st__column_dup(stmt, 0) : NULL;
    sqlite3_finalize(stmt);
    if (rc == SQLITE_ROW)
        return 1;
    if (rc == SQLITE_DONE)
        return 0;
    return st__db_error(err, st->db, "read login token");
}

int st_login_failure_add(st_store *st, const char *key, int64_t at, gr_error_t *err)
{
    return st__run(st, err, "INSERT INTO login_failures(key, at) VALUES(?, ?)", "si", key, at) < 0
               ? -1
               : 0;
}

int st_login_failure_count(st_store *st, const char *key, int64_t since, gr_error_t *err)
{
    if (st__run(st, err, "DELETE FROM login_failures WHERE at < ?", "i", since) < 0)
        return -1;
    return (int)st__query_int(st, err, "SELECT count(*) FROM login_failures WHERE key = ? AND at >= ?",
                     "si", key, since);
}

int st_login_failure_clear(st_store *st, const char *key, gr_error_t *err)
{
    return st__run(st, err, "DELETE FROM login_failures WHERE key = ?", "s", key) < 0 ? -1 : 0;
}
