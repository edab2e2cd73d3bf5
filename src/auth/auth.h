/* Credentials: argon2id password hashes (libsodium), random tokens and their
 * stored hashes, and TOTP second factors (RFC 6238, the 6-digit, 30-second,
 * HMAC-SHA1 variant that authenticator apps use). Pure functions: the store
 * keeps what these make, the gateway decides when to call them. */
#ifndef GRANARY_AUTH_H
#define GRANARY_AUTH_H

#include "util.h"

/* Prepares libsodium; call once at start. Returns 0, or -1 with err. */
int au_init(gr_error_t *err);

#define AU_PASSWORD_MIN 8
#define AU_PASSWORD_MAX 1024
#define AU_HASH_MAX 128 /* room for an argon2id string hash */

/* Checks a new password against the rules (length in bytes, no NUL).
 * Returns 0, or -1 with err saying what is wrong. */
int au_password_check(const char *password, size_t len, gr_error_t *err);

/* Hashes a password with argon2id at libsodium's interactive limits into out
 * (AU_HASH_MAX bytes). Slow on purpose (tens of milliseconds, 64 MiB): call it
 * off the event loop. Returns 0, or -1 with err. */
int au_password_hash(const char *password, size_t len, char out[AU_HASH_MAX], gr_error_t *err);

/* True when password matches hash. Equally slow. */
bool au_password_verify(const char *hash, const char *password, size_t len);

#define AU_TOKEN_HEX 65 /* 32 random bytes as hex, and a NUL */

/* Writes a new random token (256 bits) as lowercase hex. */
void au_token_new(char out[AU_TOKEN_HEX]);

/* Writes SHA-256(token) as lowercase hex: what the store keeps. */
void au_token_hash(const char *token, char out[AU_TOKEN_HEX]);

/* Compares two strings in time that depends only on their lengths. */
bool au_secret_equal(const char *a, const char *b);

#define AU_TOTP_SECRET_B32 33 /* 20 bytes in base32, and a NUL */

/* Writes a new random TOTP secret in base32 (RFC 4648, no padding). */
void au_totp_secret_new(char out[AU_TOTP_SECRET_B32]);

/* The 6-digit code for secret (base32) at unix time t. Returns the code
 * (0..999999), or -1 with err when the secret is not valid base32. */
int au_totp_code(const char *secret_b32, int64_t t, gr_error_t *err);

/* True when code (six ASCII digits) is valid for secret at time now, allowing
 * one 30-second step of clock drift either way. */
bool au_totp_verify(const char *secret_b32, const char *code, int64_t now);

/* RFC 4648 base32 without padding. Encoding writes a NUL-terminated string
 * of (len * 8 + 4) / 5 characters into out (at least that plus one bytes).
 * Decoding ignores case and returns the number of bytes written, or -1 on a
 * character outside the alphabet or when out is too small. */
void au_base32_encode(const unsigned char *data, size_t len, char *out);
ssize_t au_base32_decode(const char *text, unsigned char *out, size_t out_size);

#endif
