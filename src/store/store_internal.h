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
const char *st_migration_sql(int i);

#endif
