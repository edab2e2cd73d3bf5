/* The pure parts of the format: app ids in Sandstorm's base32, package ids,
 * and the rules for entry names and symlink targets (spec 3.3, 3.5). */
#include <sodium.h>

#include "spk_internal.h"

static const char b32_alphabet[] = "0123456789acdefghjkmnpqrstuvwxyz";

void spk_app_id_encode(const uint8_t key[32], char out[SPK_APP_ID_LEN + 1])
{
    unsigned acc = 0, bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < 32; i++) {
        acc = (acc << 8) | key[i];
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out[o++] = b32_alphabet[(acc >> bits) & 31u];
        }
    }
    if (bits > 0)
        out[o++] = b32_alphabet[(acc << (5 - bits)) & 31u];
    out[o] = '\0';
}

static int b32_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        c = (char)(c - 'A' + 'a');
    switch (c) {
    case 'o':
        return 0;
    case 'i':
    case 'l':
        return 1;
    case 'b':
        return 8;
    default:
        break;
    }
    const char *p = c ? strchr(b32_alphabet, c) : NULL;
    return p ? (int)(p - b32_alphabet) : -1;
}

int spk_app_id_decode(const char *text, uint8_t key[32], gr_error_t *err)
{
    size_t n = strlen(text);
    if (n * 5 / 8 != 32)
        return gr_make_error(err, 0, "app id %.60s: %zu characters, want %d", text, n,
                             SPK_APP_ID_LEN);
    unsigned acc = 0, bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b32_value(text[i]);
        if (v < 0)
            return gr_make_error(err, 0, "app id %.60s: invalid character at %zu", text, i);
        acc = (acc << 5) | (unsigned)v;
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            key[o++] = (uint8_t)(acc >> bits);
        }
    }
    if (acc & ((1u << bits) - 1u))
        return gr_make_error(err, 0, "app id %.60s: nonzero padding bits", text);
    return 0;
}

void spk_package_id(const void *spk, size_t len, char out[SPK_PACKAGE_ID_LEN + 1])
{
    uint8_t hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256(hash, spk, len);
    gr_hex(hash, 16, out);
    out[SPK_PACKAGE_ID_LEN] = '\0';
}

void spk__quote(gr_buf *out, const char *s, size_t len, size_t max)
{
    for (size_t i = 0; i < len && i < max; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c > 0x7e || c == '\\' || c == '"')
            gr_buf_printf(out, "\\x%02x", c);
        else
            gr_buf_append(out, &s[i], 1);
    }
    if (len > max)
        gr_buf_puts(out, "...");
}

char *spk_printable(const char *s)
{
    char *out = gr_strdup(s ? s : "");
    for (char *p = out; *p; p++)
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return out;
}

/* An error whose message is fmt's text around the quoted bytes. */
static int quoted_error(gr_error_t *err, const char *before, const char *s, size_t len,
                        const char *after)
{
    gr_buf b = GR_BUF_INIT;
    gr_buf_puts(&b, before);
    spk__quote(&b, s, len, 80);
    gr_buf_puts(&b, after);
    int rc = gr_make_error(err, 0, "%s", b.data);
    gr_buf_release(&b);
    return rc;
}

int spk_check_name(const char *name, size_t len, gr_error_t *err)
{
    if (len == 0)
        return gr_make_error(err, 0, "empty file name");
    if (memchr(name, '\0', len))
        return gr_make_error(err, 0, "file name contains NUL");
    if ((len == 1 && name[0] == '.') || (len == 2 && name[0] == '.' && name[1] == '.'))
        return quoted_error(err, "file name \"", name, len, "\" is not allowed");
    if (memchr(name, '/', len))
        return quoted_error(err, "file name \"", name, len, "\" contains \"/\"");
    if (len > SPK_MAX_NAME_BYTES)
        return gr_make_error(err, 0, "file name of %zu bytes is longer than %d", len,
                             SPK_MAX_NAME_BYTES);
    return 0;
}

int spk_check_symlink(const char *target, size_t len, unsigned depth, gr_error_t *err)
{
    if (len == 0)
        return gr_make_error(err, 0, "empty symlink target");
    if (memchr(target, '\0', len))
        return gr_make_error(err, 0, "symlink target contains NUL");
    if (target[0] == '/')
        return quoted_error(err, "symlink target \"", target, len, "\" is absolute");
    long level = depth;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && target[j] != '/')
            j++;
        size_t n = j - i;
        if (n == 2 && target[i] == '.' && target[i + 1] == '.') {
            if (--level < 0)
                return quoted_error(err, "symlink target \"", target, len, "\" leaves the package");
        } else if (n > 0 && !(n == 1 && target[i] == '.')) {
            level++;
        }
        i = j + 1;
    }
    return 0;
}
