/* The schema, as an ordered list of migrations. Never edit a migration that
 * has shipped: append a new one. PRAGMA user_version records how many have
 * been applied. */
#include "store_internal.h"

static const char *const migrations[] = {
    /* 1: the first schema. */
    "CREATE TABLE meta ("
    "  key TEXT PRIMARY KEY NOT NULL,"
    "  value TEXT NOT NULL"
    ") STRICT;"
    "CREATE TABLE accounts ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  email TEXT UNIQUE COLLATE NOCASE,"
    "  display_name TEXT NOT NULL DEFAULT '',"
    "  password_hash TEXT,"
    "  totp_secret TEXT,"
    "  is_admin INTEGER NOT NULL DEFAULT 0,"
    "  created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE apps ("
    "  app_id TEXT PRIMARY KEY NOT NULL,"
    "  created_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE packages ("
    "  package_id TEXT PRIMARY KEY NOT NULL,"
    "  app_id TEXT NOT NULL REFERENCES apps(app_id),"
    "  version INTEGER NOT NULL,"
    "  marketing_version TEXT NOT NULL DEFAULT '',"
    "  title TEXT NOT NULL DEFAULT '',"
    "  installed_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX packages_by_app ON packages(app_id, version);"
    "CREATE TABLE grains ("
    "  id TEXT PRIMARY KEY NOT NULL,"
    "  owner_id TEXT NOT NULL REFERENCES accounts(id),"
    "  package_id TEXT NOT NULL REFERENCES packages(package_id),"
    "  title TEXT NOT NULL DEFAULT '',"
    "  created_at INTEGER NOT NULL,"
    "  last_used_at INTEGER NOT NULL,"
    "  trashed_at INTEGER"
    ") STRICT;"
    "CREATE INDEX grains_by_owner ON grains(owner_id);",

    /* 2: logins. Secrets (session cookies, login links, setup links) are
     * stored only as their SHA-256, so a copy of the database opens nothing. */
    "CREATE TABLE sessions ("
    "  token_hash TEXT PRIMARY KEY NOT NULL,"
    "  account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,"
    "  csrf TEXT NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX sessions_by_account ON sessions(account_id);"
    "CREATE TABLE login_tokens ("
    "  token_hash TEXT PRIMARY KEY NOT NULL,"
    "  kind TEXT NOT NULL CHECK (kind IN ('email', 'setup')),"
    "  account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE,"
    "  expires_at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE TABLE login_failures ("
    "  key TEXT NOT NULL,"
    "  at INTEGER NOT NULL"
    ") STRICT;"
    "CREATE INDEX login_failures_by_key ON login_failures(key, at);",

    /* 3: what a grain runs. A new grain runs its action's command once; after
     * that first start succeeded, every start runs continueCommand. */
    ("ALTER TABLE grains ADD COLUMN action_index INTEGER NOT NULL DEFAULT 0;"
     "ALTER TABLE grains ADD COLUMN started INTEGER NOT NULL DEFAULT 0;"),
};

int st_migration_count(void)
{
    return (int)(sizeof(migrations) / sizeof(migrations[0]));
}

const char *st_migration_sql(int i)
{
    return migrations[i];
}
