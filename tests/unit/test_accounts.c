/* Unit tests for the accounts part of the store: accounts, sessions with
 * expiry, one-time login tokens, and the failure counter. */
#include "store.h"
#include "testutil.h"

#include <setjmp.h>
#include <cmocka.h>

typedef struct {
    char dir[64];
    st_store *st;
} fixture;

static int setup(void **state)
{
    fixture *f = gr_calloc(1, sizeof(*f));
    gr_strlcpy(f->dir, "/tmp/granary-acct-XXXXXX", sizeof(f->dir));
    if (mkdtemp(f->dir) == NULL)
        return -1;
    _cleanup_free_ char *db = gr_asprintf("%s/granary.sqlite", f->dir);
    gr_error_t err = NULL;
    if (st_open(&f->st, db, &err) < 0)
        return -1;
    st_account a = {.id = "acct1", .email = "Ann@Example.com", .display_name = "Ann",
                    .password_hash = "h", .created_at = 1};
    if (st_account_create(f->st, &a, &err) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    st_close(f->st);
    testutil_rm_rf(f->dir);
    free(f);
    return 0;
}

static void test_accounts(void **state)
{
    fixture *f = *state;
    gr_error_t err = NULL;
    st_account a = {0};
    assert_int_equal(st_account_by_email(f->st, "ann@example.COM", &a, &err), 1);
    assert_string_equal(a.id, "acct1");
    assert_null(a.totp_secret);
    st_account_release(&a);
    assert_int_equal(st_account_by_id(f->st, "nope", &a, &err), 0);
    st_account dup = {.id = "acct2", .email = "ANN@example.com", .created_at = 2};
    assert_int_equal(st_account_create(f->st, &dup, &err), -1);
    assert_int_equal(err->status, EEXIST);
    assert_string_equal(gr_error_msg(err), "an account with this email already exists");
    gr_error_release(&err);
    assert_int_equal(st_account_count(f->st, false, &err), 1);
    assert_int_equal(st_account_count(f->st, true, &err), 0);
    assert_int_equal(st_account_set_totp(f->st, "acct1", "SECRET", &err), 0);
    assert_int_equal(st_account_by_id(f->st, "acct1", &a, &err), 1);
    assert_string_equal(a.totp_secret, "SECRET");
    st_account_release(&a);
    assert_int_equal(st_account_set_password(f->st, "ghost", "h", &err), -1);
    assert_string_equal(gr_error_msg(err), "no such account");
    gr_error_release(&err);
}

static void test_sessions_expire_and_delete(void **state)
{
    fixture *f = *state;
    gr_error_t err = NULL;
    assert_int_equal(st_session_create(f->st, "s1", "acct1", "c1", 1000, &err), 0);
    char *acct = NULL, *csrf = NULL;
    assert_int_equal(st_session_get(f->st, "s1", 999, &acct, &csrf, &err), 1);
    assert_string_equal(acct, "acct1");
    assert_string_equal(csrf, "c1");
    free(acct);
    free(csrf);
    assert_int_equal(st_session_get(f->st, "s1", 1000, &acct, &csrf, &err), 0); /* expired */
    assert_int_equal(st_session_create(f->st, "s2", "acct1", "c2", 5000, &err), 0);
    assert_int_equal(st_session_delete_account(f->st, "acct1", &err), 0);
    assert_int_equal(st_session_get(f->st, "s2", 1, &acct, &csrf, &err), 0);
}

static void test_login_tokens_are_one_time(void **state)
{
    fixture *f = *state;
    gr_error_t err = NULL;
    char *acct = NULL;
    assert_int_equal(st_login_token_create(f->st, "t1", "email", "acct1", 100, &err), 0);
    assert_int_equal(st_login_token_peek(f->st, "t1", "email", 50, &acct, &err), 1);
    free(acct);
    assert_int_equal(st_login_token_take(f->st, "t1", "setup", 50, &acct, &err), 0); /* kind */
    assert_int_equal(st_login_token_take(f->st, "t1", "email", 50, &acct, &err), 1);
    assert_string_equal(acct, "acct1");
    free(acct);
    assert_int_equal(st_login_token_take(f->st, "t1", "email", 50, &acct, &err), 0);
    assert_int_equal(st_login_token_create(f->st, "t2", "setup", NULL, 100, &err), 0);
    assert_int_equal(st_login_token_take(f->st, "t2", "setup", 100, &acct, &err), 0); /* expired */
    assert_int_equal(st_login_token_create(f->st, "t3", "bogus", NULL, 100, &err), -1);
    gr_error_release(&err);
}

static void test_failures_count_in_window(void **state)
{
    fixture *f = *state;
    gr_error_t err = NULL;
    for (int i = 0; i < 3; i++)
        assert_int_equal(st_login_failure_add(f->st, "k", 100 + i, &err), 0);
    assert_int_equal(st_login_failure_count(f->st, "k", 100, &err), 3);
    assert_int_equal(st_login_failure_count(f->st, "k", 102, &err), 1);
    assert_int_equal(st_login_failure_count(f->st, "other", 0, &err), 0);
    assert_int_equal(st_login_failure_clear(f->st, "k", &err), 0);
    assert_int_equal(st_login_failure_count(f->st, "k", 0, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_accounts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sessions_expire_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_login_tokens_are_one_time, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failures_count_in_window, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
