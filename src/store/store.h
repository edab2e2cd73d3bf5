/* The store: Granary's metadata (accounts, apps, packages, grains) in one
 * SQLite database in WAL mode. Opening it applies any schema migrations the
 * file lacks, each in its own transaction, so an interrupted upgrade leaves
 * the database at the last complete version. The interface is narrow so a
 * PostgreSQL backend can replace this one later (DESIGN.md section 7). */
#ifndef GRANARY_STORE_H
#define GRANARY_STORE_H

#include "util.h"

typedef struct st_store st_store;

/* Opens (creating if needed) the database at path and migrates it to the
 * newest schema. A database written by a newer Granary is refused. Returns 0
 * and sets *out, or -1 with err. */
int st_open(st_store **out, const char *path, gr_error_t *err);

/* Closes the database, checkpointing the WAL. Safe on NULL. */
void st_close(st_store *st);

/* The schema version this build migrates to. */
int st_latest_version(void);

/* Reads the schema version recorded in the open database. Returns it (>= 0),
 * or -1 with err. Doubles as a liveness check of the database. */
int st_schema_version(st_store *st, gr_error_t *err);

/* The install id: a random hex string made when the database was created,
 * stable across restarts. The returned string is owned by the store. */
const char *st_install_id(st_store *st);

/* Reads or writes a key in the meta table. st_meta_get returns 0 and a new
 * string in *value (NULL when the key is absent), or -1 with err. */
int st_meta_get(st_store *st, const char *key, char **value, gr_error_t *err);
int st_meta_set(st_store *st, const char *key, const char *value, gr_error_t *err);

/* ---- accounts ----------------------------------------------------------- */

typedef struct st_account {
    char *id;            /* random, 32 hex digits */
    char *email;         /* unique, compared without case */
    char *display_name;
    char *password_hash; /* argon2id string, or NULL for link-only accounts */
    char *totp_secret;   /* base32, or NULL when the second factor is off */
    bool is_admin;
    int64_t created_at;
} st_account;

/* Frees the strings of a and zeroes it. */
void st_account_release(st_account *a);

/* Inserts a new account. A duplicate email fails with err->status EEXIST and
 * the message "an account with this email already exists". */
int st_account_create(st_store *st, const st_account *a, gr_error_t *err);

/* Looks an account up by id or by email. Returns 1 and fills *out, 0 when
 * there is none, or -1 with err. */
int st_account_by_id(st_store *st, const char *id, st_account *out, gr_error_t *err);
int st_account_by_email(st_store *st, const char *email, st_account *out, gr_error_t *err);

/* Counts accounts (only administrators when admins_only). -1 with err. */
int st_account_count(st_store *st, bool admins_only, gr_error_t *err);

/* Replace the password hash / the TOTP secret (NULL turns it off). */
int st_account_set_password(st_store *st, const char *id, const char *hash, gr_error_t *err);
int st_account_set_totp(st_store *st, const char *id, const char *secret, gr_error_t *err);

/* ---- sessions and login tokens -------------------------------------------
 * Only hashes of the secrets are stored; callers hash before calling. */

int st_session_create(st_store *st, const char *token_hash, const char *account_id,
                      const char *csrf, int64_t expires_at, gr_error_t *err);

/* Finds an unexpired session. Returns 1 and sets *account_id and *csrf (new
 * strings), 0 when there is none, or -1 with err. */
int st_session_get(st_store *st, const char *token_hash, int64_t now, char **account_id,
                   char **csrf, gr_error_t *err);

/* Deletes one session, or every session of an account. Returns 0 or -1. */
int st_session_delete(st_store *st, const char *token_hash, gr_error_t *err);
int st_session_delete_account(st_store *st, const char *account_id, gr_error_t *err);

/* Records a one-time login token of kind "email" or "setup". */
int st_login_token_create(st_store *st, const char *token_hash, const char *kind,
                          const char *account_id, int64_t expires_at, gr_error_t *err);

/* Consumes a token: returns 1 and sets *account_id (a new string, NULL for a
 * setup token) when it existed unexpired, 0 when not, or -1 with err. The
 * token is gone afterwards either way, so it can be used once. */
int st_login_token_take(st_store *st, const char *token_hash, const char *kind, int64_t now,
                        char **account_id, gr_error_t *err);

/* Checks a token without consuming it: 1 and *account_id when it exists
 * unexpired, 0 when not, -1 with err. */
int st_login_token_peek(st_store *st, const char *token_hash, const char *kind, int64_t now,
                        char **account_id, gr_error_t *err);

/* Login rate limiting: record a failure for key, count failures since. */
int st_login_failure_add(st_store *st, const char *key, int64_t at, gr_error_t *err);
int st_login_failure_count(st_store *st, const char *key, int64_t since, gr_error_t *err);
int st_login_failure_clear(st_store *st, const char *key, gr_error_t *err);

/* ---- packages (packages.c) ----------------------------------------------- */

/* st_package_exists sets *exists. */
int st_package_exists(st_store *st, const char *package_id, bool *exists, gr_error_t *err);

/* Sets *version to the newest installed appVersion of app_id, or -1 when no
 * package of it is installed. Returns 0, or -1 with err. */
int st_app_latest_version(st_store *st, const char *app_id, long *version, gr_error_t *err);

/* Records an installed package, and its app when new, in one transaction.
 * Returns 0, or -1 with err (e.g. the package id is already recorded). */
int st_package_add(st_store *st, const char *package_id, const char *app_id, long version,
                   const char *marketing_version, const char *title, gr_error_t *err);

/* ---- grains (grains.c) ---------------------------------------------------- */

typedef struct st_grain {
    char *id;         /* 22 characters of [A-Za-z0-9] */
    char *owner_id;
    char *package_id;
    char *title;
    int64_t created_at, last_used_at;
    int64_t trashed_at; /* 0 when not in the trash */
    int action_index;   /* the manifest action that made it */
    bool started;       /* has started at least once */
} st_grain;

void st_grain_release(st_grain *g);

/* Records a new grain. Returns 0, or -1 with err. */
int st_grain_create(st_store *st, const st_grain *g, gr_error_t *err);

/* Reads one grain: 1 and *out, 0 when there is none, -1 with err. */
int st_grain_get(st_store *st, const char *id, st_grain *out, gr_error_t *err);

/* The grains of owner, most recently used first: a new array in *out of *n
 * grains (free with st_grains_free). Returns 0, or -1 with err. */
int st_grain_list(st_store *st, const char *owner_id, st_grain **out, size_t *n,
                  gr_error_t *err);
void st_grains_free(st_grain *g, size_t n);

/* Small updates; each returns 0, or -1 with err ("no such grain" too). */
int st_grain_set_started(st_store *st, const char *id, gr_error_t *err);
int st_grain_touch(st_store *st, const char *id, int64_t now, gr_error_t *err);
int st_grain_rename(st_store *st, const char *id, const char *title, gr_error_t *err);
int st_grain_set_trashed(st_store *st, const char *id, int64_t at, gr_error_t *err);
int st_grain_delete(st_store *st, const char *id, gr_error_t *err);

/* The installed packages, newest first: title, version and directory name. */
typedef struct st_package {
    char *package_id, *app_id, *title, *marketing_version;
    long version;
} st_package;

int st_package_list(st_store *st, st_package **out, size_t *n, gr_error_t *err);
int st_package_get(st_store *st, const char *package_id, st_package *out, gr_error_t *err);
void st_package_release(st_package *p);
void st_packages_free(st_package *p, size_t n);

#endif
