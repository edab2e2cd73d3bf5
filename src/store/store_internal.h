/* What the store's files share and other parts must not touch. */
#ifndef GRANARY_STORE_INTERNAL_H
#define GRANARY_STORE_INTERNAL_H

#include "store.h"

#include <sqlite3.h>

struct st_store {
    sqlite3 *db;
    char *path;
    char *install_id;
};

int st_migration_count(void);

/* Prepares sql and binds its parameters from the variadic list, one per
 * character of types: 's' a const char * (NULL binds NULL), 'i' an int64_t.
 * Returns 0 and sets *stmt, or -1 with err. */
int st__prepare(st_store *st, sqlite3_stmt **stmt, gr_error_t *err, const char *sql,
                const char *types, ...);

int st__vprepare(st_store *st, sqlite3_stmt **stmt, gr_error_t *err, const char *sql,
                 const char *types, va_list ap);

/* Runs a statement that returns no rows (binding as st__prepare). Returns the
 * number of rows changed, or -1 with err. */
int st__run(st_store *st, gr_error_t *err, const char *sql, const char *types, ...);

/* Runs a query whose one row's first column is a non-negative integer, and
 * returns it; -1 with err. */
int64_t st__query_int(st_store *st, gr_error_t *err, const char *sql, const char *types, ...);

/* A copy of column i of the current row as a new string (NULL for NULL). */
char *st__column_dup(sqlite3_stmt *stmt, int i);

int st__db_error(gr_error_t *err, sqlite3 *db, const char *what);
const char *st_migration_sql(int i);

#endif
