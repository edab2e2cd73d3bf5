/* See auth.h. libsodium does the cryptography; TOTP needs HMAC-SHA1, which
 * libsodium does not offer, so that one comes from OpenSSL (already linked
 * for TLS). */
#include "auth.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <sodium.h>

int au_init(gr_error_t *err)
{
    if (sodium_init() < 0)
        return gr_make_error(err, 0, "libsodium could not be initialised");
    return 0;
}

int au_password_check(const char *password, size_t len, gr_error_t *err)
{
    if (memchr(password, '\0', len))
        return gr_make_error(err, 0, "the password must not contain a NUL character");
    if (len < AU_PASSWORD_MIN)
        return gr_make_error(err, 0, "the password must be at least %d characters long",
                             AU_PASSWORD_MIN);
    if (len > AU_PASSWORD_MAX)
        return gr_make_error(err, 0, "the password must be at most %d bytes long",
                             AU_PASSWORD_MAX);
    return 0;
}

int au_password_hash(const char *password, size_t len, char out[AU_HASH_MAX], gr_error_t *err)
{
    _Static_assert(crypto_pwhash_STRBYTES <= AU_HASH_MAX, "hash buffer too small");
    if (crypto_pwhash_str_alg(out, password, len, crypto_pwhash_OPSLIMIT_INTERACTIVE,
                              crypto_pwhash_MEMLIMIT_INTERACTIVE,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return gr_make_error(err, ENOMEM, "hash password");
    return 0;
}

bool au_password_verify(const char *hash, const char *password, size_t len)
{
    if (hash == NULL || strnlen(hash, AU_HASH_MAX) >= AU_HASH_MAX)
        return false;
    return crypto_pwhash_str_verify(hash, password, len) == 0;
}

void au_token_new(char out[AU_TOKEN_HEX])
{
    unsigned char raw[32];
    randombytes_buf(raw, sizeof(raw));
    gr_hex(raw, sizeof(raw), out);
    sodium_memzero(raw, sizeof(raw));
}

void au_token_hash(const char *token, char out[AU_TOKEN_HEX])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(h, (const unsigned char *)token, strlen(token));
    gr_hex(h, sizeof(h), out);
}

bool au_secret_equal(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la != lb)
        return false;
    return sodium_memcmp(a, b, la) == 0;
}

static const char b32_alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

void au_base32_encode(const unsigned char *data, size_t len, char *out)
{
    size_t o = 0;
    unsigned buffer = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        buffer = (buffer << 8) | data[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32_alphabet[(buffer >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits > 0)
        out[o++] = b32_alphabet[(buffer << (5 - bits)) & 31];
    out[o] = '\0';
}

ssize_t au_base32_decode(const char *text, unsigned char *out, size_t out_size)
{
    size_t o = 0;
    unsigned buffer = 0;
    int bits = 0;
    for (const char *p = text; *p; p++) {
        char ch = *p;
        int v;
        if (ch >= 'a' && ch <= 'z')
            ch = (char)(ch - 'a' + 'A');
        if (ch >= 'A' && ch <= 'Z')
            v = ch - 'A';
        else if (ch >= '2' && ch <= '7')
            v = ch - '2' + 26;
        else
            return -1;
        buffer = (buffer << 5) | (unsigned)v;
        bits += 5;
        if (bits >= 8) {
            if (o >= out_size)
                return -1;
            out[o++] = (unsigned char)((buffer >> (bits - 8)) & 0xff);
            bits -= 8;
        }
    }
    return (ssize_t)o;
}

void au_totp_secret_new(char out[AU_TOTP_SECRET_B32])
{
    unsigned char raw[20];
    randombytes_buf(raw, sizeof(raw));
    au_base32_encode(raw, sizeof(raw), out);
    sodium_memzero(raw, sizeof(raw));
}

int au_totp_code(const char *secret_b32, int64_t t, gr_error_t *err)
{
    unsigned char key[64];
    ssize_t klen = au_base32_decode(secret_b32, key, sizeof(key));
    if (klen <= 0)
        return gr_make_error(err, 0, "the TOTP secret is not valid base32");
    uint64_t step = (uint64_t)(t < 0 ? 0 : t) / 30;
    unsigned char msg[8];
    for (int i = 7; i >= 0; i--) {
        msg[i] = (unsigned char)(step & 0xff);
        step >>= 8;
    }
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned maclen = 0;
    if (HMAC(EVP_sha1(), key, (int)klen, msg, sizeof(msg), mac, &maclen) == NULL || maclen < 20)
        return gr_make_error(err, 0, "HMAC-SHA1 failed");
    sodium_memzero(key, sizeof(key));
    int off = mac[maclen - 1] & 0x0f;
    uint32_t bin = ((uint32_t)(mac[off] & 0x7f) << 24) | ((uint32_t)mac[off + 1] << 16) |
                   ((uint32_t)mac[off + 2] << 8) | (uint32_t)mac[off + 3];
    return (int)(bin % 1000000u);
}

bool au_totp_verify(const char *secret_b32, const char *code, int64_t now)
{
    if (code == NULL || strlen(code) != 6)
        return false;
    int want = 0;
    for (int i = 0; i < 6; i++) {
        if (code[i] < '0' || code[i] > '9')
            return false;
        want = want * 10 + (code[i] - '0');
    }
    bool ok = false;
    for (int d = -1; d <= 1; d++) {
        gr_error_t err = NULL;
        int got = au_totp_code(secret_b32, now + d * 30, &err);
        gr_error_release(&err);
        ok |= got == want; /* no early exit: the time does not depend on which step */
    }
    return ok;
}
