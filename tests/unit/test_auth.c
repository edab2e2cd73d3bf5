/* Unit tests for src/auth against published vectors: RFC 4648 base32,
 * RFC 6238 TOTP (SHA-1), SHA-256, and argon2id round trips. */
#include "auth.h"

#include <setjmp.h>
#include <cmocka.h>

static int setup(void **state)
{
    gr_error_t err = NULL;
    return au_init(&err);
}

static void test_base32_rfc4648(void **state)
{
    struct {
        const char *in, *out;
    } v[] = {{"", ""}, {"f", "MY"}, {"fo", "MZXQ"}, {"foo", "MZXW6"}, {"foob", "MZXW6YQ"},
             {"fooba", "MZXW6YTB"}, {"foobar", "MZXW6YTBOI"}};
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
        char out[32];
        au_base32_encode((const unsigned char *)v[i].in, strlen(v[i].in), out);
        assert_string_equal(out, v[i].out);
        unsigned char back[32];
        ssize_t n = au_base32_decode(v[i].out, back, sizeof(back));
        assert_int_equal(n, (ssize_t)strlen(v[i].in));
        assert_memory_equal(back, v[i].in, (size_t)n);
    }
    unsigned char small[2];
    assert_int_equal(au_base32_decode("mzxw6ytb", small, sizeof(small)), -1); /* too small */
    unsigned char buf[16];
    assert_int_equal(au_base32_decode("MZ1W", buf, sizeof(buf)), -1); /* '1' is not base32 */
    assert_int_equal(au_base32_decode("mzxq", buf, sizeof(buf)), 2);  /* any case */
}

static void test_totp_rfc6238(void **state)
{
    /* RFC 6238 appendix B, SHA-1 seed "12345678901234567890", last 6 digits. */
    char secret[64];
    au_base32_encode((const unsigned char *)"12345678901234567890", 20, secret);
    struct {
        int64_t t;
        int code;
    } v[] = {{59, 287082}, {1111111109, 81804}, {1111111111, 50471},
             {1234567890, 5924}, {2000000000, 279037}, {20000000000, 353130}};
    gr_error_t err = NULL;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        assert_int_equal(au_totp_code(secret, v[i].t, &err), v[i].code);
    assert_true(au_totp_verify(secret, "287082", 59));
    assert_true(au_totp_verify(secret, "287082", 59 + 30));  /* one step of drift */
    assert_false(au_totp_verify(secret, "287082", 59 + 90)); /* not three */
    assert_false(au_totp_verify(secret, "28708", 59));
    assert_false(au_totp_verify(secret, "28708x", 59));
    assert_false(au_totp_verify(secret, NULL, 59));
    assert_int_equal(au_totp_code("not base32!", 59, &err), -1);
    gr_error_release(&err);
    char fresh[AU_TOTP_SECRET_B32];
    au_totp_secret_new(fresh);
    assert_int_equal(strlen(fresh), 32);
}

static void test_tokens(void **state)
{
    char a[AU_TOKEN_HEX], b[AU_TOKEN_HEX], h[AU_TOKEN_HEX];
    au_token_new(a);
    au_token_new(b);
    assert_int_equal(strlen(a), 64);
    assert_string_not_equal(a, b);
    au_token_hash("abc", h);
    assert_string_equal(h, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(au_secret_equal(a, a));
    assert_false(au_secret_equal(a, b));
    assert_false(au_secret_equal("abc", "abcd"));
}

static void test_passwords(void **state)
{
    gr_error_t err = NULL;
    char hash[AU_HASH_MAX];
    assert_int_equal(au_password_hash("correct horse", 13, hash, &err), 0);
    assert_true(gr_starts_with(hash, "$argon2id$"));
    assert_true(au_password_verify(hash, "correct horse", 13));
    assert_false(au_password_verify(hash, "correct horsf", 13));
    assert_false(au_password_verify(NULL, "x", 1));
    assert_false(au_password_verify("garbage", "x", 1));
    assert_int_equal(au_password_check("short", 5, &err), -1);
    gr_error_release(&err);
    assert_int_equal(au_password_check("long enough\0x", 13, &err), -1);
    assert_non_null(strstr(gr_error_msg(err), "NUL"));
    gr_error_release(&err);
    assert_int_equal(au_password_check("long enough", 11, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base32_rfc4648),
        cmocka_unit_test(test_totp_rfc6238),
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_passwords),
    };
    return cmocka_run_group_tests(tests, setup, NULL);
}
