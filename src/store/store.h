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

/* Packages (src/store/packages.c). st_package_exists sets *exists. */
int st_package_exists(st_store *st, const char *package_id, bool *exists, gr_error_t *err);

/* Sets *version to the newest installed appVersion of app_id, or -1 when no
 * package of it is installed. Returns 0, or -1 with err. */
int st_app_latest_version(st_store *st, const char *app_id, long *version, gr_error_t *err);

/* Records an installed package, and its app when new, in one transaction.
 * Returns 0, or -1 with err (e.g. the package id is already recorded). */
int st_package_add(st_store *st, const char *package_id, const char *app_id, long version,
                   const char *marketing_version, const char *title, gr_error_t *err);

#endif
