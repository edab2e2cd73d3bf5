/* Unit tests for src/store: migrations are idempotent, survive a reopen, and
 * a newer or foreign file is refused with a clear error. */
#include <sqlite3.h>

#include "store.h"
#include "testutil.h"

#include <setjmp.h>
#include <cmocka.h>

typedef struct {
    char dir[64];
    char *db;
} fixture;

static int setup(void **state)
{
    fixture *f = gr_calloc(1, sizeof(*f));
    gr_strlcpy(f->dir, "/tmp/granary-store-XXXXXX", sizeof(f->dir));
    if (mkdtemp(f->dir) == NULL)
        return -1;
    f->db = gr_asprintf("%s/granary.sqlite", f->dir);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    testutil_rm_rf(f->dir);
    free(f->db);
    free(f);
    return 0;
}

static void test_fresh_database_is_migrated(void **state)
{
    fixture *f = *state;
    st_store *st = NULL;
    gr_error_t err = NULL;
    assert_int_equal(st_open(&st, f->db, &err), 0);
    assert_int_equal(st_schema_version(st, &err), st_latest_version());
    assert_true(st_latest_version() >= 1);
    assert_int_equal(strlen(st_install_id(st)), 32);
    st_close(st);
}

static void test_reopen_is_idempotent_and_keeps_data(void **state)
{
    fixture *f = *state;
    st_store *st = NULL;
    gr_error_t err = NULL;
    assert_int_equal(st_open(&st, f->db, &err), 0);
    char *id1 = gr_strdup(st_install_id(st));
    assert_int_equal(st_meta_set(st, "greeting", "hello", &err), 0);
    st_close(st);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(st_open(&st, f->db, &err), 0);
        assert_int_equal(st_schema_version(st, &err), st_latest_version());
        assert_string_equal(st_install_id(st), id1);
        char *v = NULL;
        assert_int_equal(st_meta_get(st, "greeting", &v, &err), 0);
        assert_string_equal(v, "hello");
        free(v);
        assert_int_equal(st_meta_get(st, "absent", &v, &err), 0);
        assert_null(v);
        st_close(st);
    }
    free(id1);
}

static void test_migrations_created_the_tables(void **state)
{
    fixture *f = *state;
    st_store *st = NULL;
    gr_error_t err = NULL;
    assert_int_equal(st_open(&st, f->db, &err), 0);
    st_close(st);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    const char *tables[] = {"meta", "accounts", "apps", "packages", "grains"};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        sqlite3_stmt *s;
        sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name=?",
                           -1, &s, NULL);
        sqlite3_bind_text(s, 1, tables[i], -1, SQLITE_STATIC);
        assert_int_equal(sqlite3_step(s), SQLITE_ROW);
        assert_int_equal(sqlite3_column_int(s, 0), 1);
        sqlite3_finalize(s);
    }
    char *jm = NULL;
    sqlite3_stmt *s;
    sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    jm = gr_strdup((const char *)sqlite3_column_text(s, 0));
    sqlite3_finalize(s);
    assert_string_equal(jm, "wal");
    free(jm);
    sqlite3_close(db);
}

static void test_newer_schema_is_refused(void **state)
{
    fixture *f = *state;
    st_store *st = NULL;
    gr_error_t err = NULL;
    assert_int_equal(st_open(&st, f->db, &err), 0);
    st_close(st);
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    char sql[64];
    snprintf(sql, sizeof(sql), "PRAGMA user_version = %d", st_latest_version() + 5);
    assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    st = NULL;
    assert_int_equal(st_open(&st, f->db, &err), -1);
    assert_null(st);
    assert_non_null(strstr(gr_error_msg(err), "newer than this Granary"));
    gr_error_release(&err);
}

static void test_not_a_database(void **state)
{
    fixture *f = *state;
    FILE *fp = fopen(f->db, "w");
    for (int i = 0; i < 200; i++)
        fputs("this is not an SQLite database\n", fp);
    fclose(fp);
    st_store *st = NULL;
    gr_error_t err = NULL;
    assert_int_equal(st_open(&st, f->db, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "not a database"));
    assert_non_null(strstr(gr_error_msg(err), f->db));
    gr_error_release(&err);
}

static void test_unopenable_path(void **state)
{
    st_store *st = NULL;
    gr_error_t err = NULL;
    assert_int_equal(st_open(&st, "/nonexistent-dir/x/granary.sqlite", &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "/nonexistent-dir/x/granary.sqlite"));
    gr_error_release(&err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_database_is_migrated, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_is_idempotent_and_keeps_data, setup, teardown),
        cmocka_unit_test_setup_teardown(test_migrations_created_the_tables, setup, teardown),
        cmocka_unit_test_setup_teardown(test_newer_schema_is_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_a_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unopenable_path, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
