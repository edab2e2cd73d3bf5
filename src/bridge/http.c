/* The bridge's HTTP side (see bridge.h): building requests to the app and
 * parsing its responses with llhttp, every byte of which is untrusted. */
#include "bridge.h"

#include <ctype.h>
#include <llhttp.h>
#include <strings.h>

/* ---- requests -------------------------------------------------------------- */

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

static bool is_token(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (!is_tchar((unsigned char)*s))
            return false;
    return true;
}

static bool safe_value(const char *s)
{
    for (; *s; s++)
        if (*s == '\r' || *s == '\n')
            return false;
    return true;
}

void br_percent_encode(gr_buf *b, const char *s)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
            strchr("-_.~", *p)) {
            gr_buf_append(b, p, 1);
        } else {
            char esc[3] = {'%', hex[*p >> 4], hex[*p & 15]};
            gr_buf_append(b, esc, 3);
        }
    }
}

/* "Name: value\r\n", appended without a format string: this runs for every
 * header of every request. */
static void put_header(gr_buf *b, const char *name, const char *value, size_t vlen)
{
    gr_buf_puts(b, name);
    gr_buf_append(b, ": ", 2);
    gr_buf_append(b, value, vlen);
    gr_buf_append(b, "\r\n", 2);
}

int br_request_header(gr_buf *b, const char *name, const char *value, gr_error_t *err)
{
    if (!is_token(name))
        return gr_make_error(err, 0, "header name '%.64s' is not an HTTP token", name);
    if (!safe_value(value))
        return gr_make_error(err, 0, "header %s: the value holds a line break", name);
    put_header(b, name, value, strlen(value));
    return 0;
}

/* The host part of a base path like "https://ui-ab.example:6080". */
static const char *host_of(const char *base, size_t *len, bool *https)
{
    *https = gr_starts_with(base, "https://");
    const char *h = strstr(base, "://");
    h = h ? h + 3 : base;
    *len = strcspn(h, "/");
    return h;
}

int br_request_line(gr_buf *b, const char *method, const char *path, gr_error_t *err)
{
    if (!is_token(method))
        return gr_make_error(err, 0, "method '%.32s' is not an HTTP token", method);
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        if (*p <= 0x20 || *p == 0x7f)
            return gr_make_error(err, 0, "the path holds a space or a control character");
    gr_buf_reserve(b, 1000); /* a whole head, most often, in one 1 KiB allocation */
    gr_buf_puts(b, method);
    gr_buf_append(b, " /", 2);
    gr_buf_puts(b, path[0] == '/' ? path + 1 : path);
    gr_buf_puts(b, " HTTP/1.1\r\n");
    return 0;
}

int br_session_headers(gr_buf *b, const br_session_info *s, gr_error_t *err)
{
    const char *base = s && s->base_path ? s->base_path : NULL;
    if (base == NULL || base[0] == '\0') {
        gr_buf_puts(b, "Host: sandbox\r\n");
    } else {
        size_t hlen;
        bool https;
        const char *host = host_of(base, &hlen, &https);
        for (size_t i = 0; i < hlen; i++)
            if ((unsigned char)host[i] <= 0x20 || host[i] == 0x7f)
                return gr_make_error(err, 0, "the base path holds a space or a control character");
        put_header(b, "Host", host, hlen);
        gr_buf_puts(b, https ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n");
    }
    if (s == NULL)
        return 0;

    gr_buf_puts(b, "X-Sandstorm-Username: ");
    br_percent_encode(b, s->username ? s->username : "Anonymous User");
    gr_buf_append(b, "\r\n", 2);
    struct {
        const char *header, *value;
    } fields[] = {
        {"X-Sandstorm-Tab-Id", s->tab_id},
        {"X-Sandstorm-User-Id", s->user_id},
        {"X-Sandstorm-Preferred-Handle", s->preferred_handle},
        {"X-Sandstorm-User-Picture", s->picture},
        {"X-Sandstorm-User-Pronouns", s->pronouns},
        {"X-Sandstorm-Session-Type", s->session_type ? s->session_type : "normal"},
        {"X-Sandstorm-Permissions", s->permissions ? s->permissions : ""},
        {"X-Sandstorm-Base-Path", s->base_path},
        {"X-Sandstorm-Session-Id", s->session_id},
    };
    for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
        if (fields[i].value && br_request_header(b, fields[i].header, fields[i].value, err) < 0)
            return -1;
    return 0;
}

int br_request_begin(gr_buf *b, const char *method, const char *path, const br_session_info *s,
                     gr_error_t *err)
{
    if (br_request_line(b, method, path, err) < 0)
        return -1;
    return br_session_headers(b, s, err);
}

void br_request_end(gr_buf *b, int64_t body_len)
{
    if (body_len >= 0) {
        char digits[24];
        int n = snprintf(digits, sizeof(digits), "%lld", (long long)body_len);
        put_header(b, "Content-Length", digits, (size_t)n);
    } else if (body_len == -1)
        gr_buf_puts(b, "Transfer-Encoding: chunked\r\n");
    gr_buf_puts(b, "\r\n");
}

/* The two whitelists of web-session.capnp (lowercase; '*' ends a prefix). */
static const char *const request_whitelist[] = {
    "x-sandstorm-app-*", "oc-total-length", "oc-chunk-size", "x-oc-mtime", "oc-fileid",
    "oc-chunked", "oc-checksum", "oc-chunk-offset", "oc-lazyops", "x-hgarg-*",
    "x-phabricator-*", "x-requested-with", "x-csrftoken", "x-csrf-token",
};
static const char *const response_whitelist[] = {"x-sandstorm-app-*", "x-oc-mtime"};

static bool whitelisted(const char *name, size_t nlen, const char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        size_t len = strlen(list[i]);
        if (list[i][len - 1] == '*') {
            if (nlen >= len - 1 && strncasecmp(name, list[i], len - 1) == 0)
                return true;
        } else if (nlen == len && strncasecmp(name, list[i], len) == 0) {
            return true;
        }
    }
    return false;
}

bool br_request_header_allowed_n(const char *name, size_t len)
{
    return whitelisted(name, len, request_whitelist,
                       sizeof(request_whitelist) / sizeof(request_whitelist[0]));
}

bool br_request_header_allowed(const char *name)
{
    return br_request_header_allowed_n(name, strlen(name));
}

bool br_response_header_allowed(const char *name)
{
    return whitelisted(name, strlen(name), response_whitelist,
                       sizeof(response_whitelist) / sizeof(response_whitelist[0]));
}

/* ---- WebSocket handshake -------------------------------------------------- */

void br_base64(gr_buf *b, const unsigned char *d, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
                     (i + 2 < n ? d[i + 2] : 0);
        char out[4] = {tab[v >> 18 & 63], tab[v >> 12 & 63], i + 1 < n ? tab[v >> 6 & 63] : '=',
                       i + 2 < n ? tab[v & 63] : '='};
        gr_buf_append(b, out, 4);
    }
}

static uint32_t rol(uint32_t v, int n)
{
    return v << n | v >> (32 - n);
}

/* SHA-1 (FIPS 180-4) of a short message, for the handshake only: the
 * static bridge links no crypto library. */
static void sha1(const unsigned char *msg, size_t len, unsigned char out[20])
{
    uint32_t h[5] = {0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0};
    size_t total = (len + 9 + 63) / 64 * 64;
    unsigned char *m = gr_calloc(1, total);
    memcpy(m, msg, len);
    m[len] = 0x80;
    uint64_t bits = (uint64_t)len * 8;
    for (int i = 0; i < 8; i++)
        m[total - 1 - i] = (unsigned char)(bits >> (8 * i));
    for (size_t blk = 0; blk < total; blk += 64) {
        uint32_t w[80];
        for (int i = 0; i < 16; i++)
            w[i] = (uint32_t)m[blk + 4 * i] << 24 | (uint32_t)m[blk + 4 * i + 1] << 16 |
                   (uint32_t)m[blk + 4 * i + 2] << 8 | m[blk + 4 * i + 3];
        for (int i = 16; i < 80; i++)
            w[i] = rol(w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16], 1);
        uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4];
        for (int i = 0; i < 80; i++) {
            uint32_t f, k;
            if (i < 20) {
                f = (b & c) | (~b & d);
                k = 0x5A827999;
            } else if (i < 40) {
                f = b ^ c ^ d;
                k = 0x6ED9EBA1;
            } else if (i < 60) {
                f = (b & c) | (b & d) | (c & d);
                k = 0x8F1BBCDC;
            } else {
                f = b ^ c ^ d;
                k = 0xCA62C1D6;
            }
            uint32_t t = rol(a, 5) + f + e + k + w[i];
            e = d;
            d = c;
            c = rol(b, 30);
            b = a;
            a = t;
        }
        h[0] += a;
        h[1] += b;
        h[2] += c;
        h[3] += d;
        h[4] += e;
    }
    free(m);
    for (int i = 0; i < 5; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (unsigned char)(h[i] >> (24 - 8 * j));
}

void br_websocket_accept(const char *key, char out[29])
{
    _cleanup_free_ char *in = gr_asprintf("%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    unsigned char md[20];
    sha1((const unsigned char *)in, strlen(in), md);
    gr_buf b = GR_BUF_INIT;
    br_base64(&b, md, sizeof(md));
    memcpy(out, b.data, 28);
    out[28] = '\0';
    gr_buf_release(&b);
}

/* ---- status mapping -------------------------------------------------------- */

br_status_map br_map_status(int status)
{
    br_status_map m = {.kind = BR_SERVER_ERROR};
    /* SuccessCode ordinals: ok, created, accepted, noContent, partialContent,
     * multiStatus, notModified. */
    switch (status) {
    case 200: m.kind = BR_CONTENT; m.code = 0; return m;
    case 201: m.kind = BR_CONTENT; m.code = 1; return m;
    case 202: m.kind = BR_CONTENT; m.code = 2; return m;
    case 206: m.kind = BR_CONTENT; m.code = 4; return m;
    case 207: m.kind = BR_CONTENT; m.code = 5; return m;
    case 204: m.kind = BR_NO_CONTENT; return m;
    case 205: m.kind = BR_NO_CONTENT; m.reset_form = true; return m;
    case 304: case 412: m.kind = BR_PRECONDITION_FAILED; return m;
    case 301: m.kind = BR_REDIRECT; m.permanent = true; m.switch_to_get = true; return m;
    case 302: case 303: m.kind = BR_REDIRECT; m.switch_to_get = true; return m;
    case 307: m.kind = BR_REDIRECT; return m;
    case 308: m.kind = BR_REDIRECT; m.permanent = true; return m;
    default: break;
    }
    if (status >= 400 && status < 500) {
        /* ClientErrorCode ordinals, by the HTTP status each stands for. */
        static const int codes[] = {400, 403, 404, 405, 406, 409, 410,
                                    413, 414, 415, 418, 412, 422};
        m.kind = BR_CLIENT_ERROR;
        m.code = 0; /* badRequest for any other 4xx */
        for (int i = 0; i < (int)(sizeof(codes) / sizeof(codes[0])); i++)
            if (codes[i] == status)
                m.code = i;
        return m;
    }
    /* 5xx; and 1xx out of place, other 2xx and 3xx, which WebSession cannot
     * carry: the app's answer is an error either way. */
    return m;
}

/* ---- cookies ---------------------------------------------------------------- */

void br_cookie_release(br_cookie *c)
{
    free(c->name);
    free(c->value);
    free(c->path);
    memset(c, 0, sizeof(*c));
}


int br_parse_set_cookie(const char *value, br_cookie *c)
{
    memset(c, 0, sizeof(*c));
    const char *semi = strchr(value, ';');
    size_t first = semi ? (size_t)(semi - value) : strlen(value);
    const char *eq = memchr(value, '=', first);
    if (eq == NULL)
        return -1;
    c->name = gr_strndup_trim(value, (size_t)(eq - value));
    c->value = gr_strndup_trim(eq + 1, first - (size_t)(eq - value) - 1);
    if (c->name[0] == '\0') {
        br_cookie_release(c);
        return -1;
    }
    bool have_max_age = false;
    for (const char *p = semi; p && *p;) {
        p++;
        const char *next = strchr(p, ';');
        size_t len = next ? (size_t)(next - p) : strlen(p);
        _cleanup_free_ char *attr = gr_strndup_trim(p, len);
        char *aeq = strchr(attr, '=');
        char *aval = NULL;
        if (aeq) {
            *aeq = '\0';
            aval = aeq + 1;
        }
        if (strcasecmp(attr, "httponly") == 0) {
            c->http_only = true;
        } else if (strcasecmp(attr, "path") == 0 && aval) {
            free(c->path);
            c->path = gr_strdup(aval);
        } else if (strcasecmp(attr, "max-age") == 0 && aval) {
            long v;
            gr_error_t err = NULL;
            if (gr_parse_long(aval, -(1L << 40), 1L << 40, &v, &err) == 0) {
                have_max_age = true;
                c->expires = BR_EXPIRES_RELATIVE;
                c->expires_value = v < 0 ? 0 : v;
            }
            gr_error_release(&err);
        } else if (strcasecmp(attr, "expires") == 0 && aval && !have_max_age) {
            struct tm tm;
            memset(&tm, 0, sizeof(tm));
            const char *end = strptime(aval, "%a, %d %b %Y %H:%M:%S", &tm);
            if (end) {
                c->expires = BR_EXPIRES_ABSOLUTE;
                c->expires_value = (int64_t)timegm(&tm);
            }
        }
        p = next;
    }
    return 0;
}

/* ---- responses ---------------------------------------------------------------- */

void br_response_release(br_response *r)
{
    free(r->content_type);
    free(r->content_encoding);
    free(r->content_language);
    free(r->etag);
    free(r->location);
    free(r->disposition_filename);
    free(r->dav);
    free(r->ws_protocol);
    free(r->ws_accept);
    for (size_t i = 0; i < r->ncookies; i++)
        br_cookie_release(&r->cookies[i]);
    free(r->cookies);
    for (size_t i = 0; i < r->nheaders; i++) {
        free(r->headers[i].name);
        free(r->headers[i].value);
    }
    free(r->headers);
    memset(r, 0, sizeof(*r));
}

br_limits br_limits_default(void)
{
    return (br_limits){.max_header_bytes = 64 * 1024, .max_headers = 128, .max_cookies = 64};
}

struct br_parser {
    llhttp_t http;
    llhttp_settings_t settings;
    br_limits limits;
    br_parser_callbacks cb;
    void *ud;
    br_response resp;
    gr_buf name, value;
    bool in_value;
    size_t header_bytes, header_count;
    bool done, head_delivered;
    bool body_unsent; /* the head announced a body that cannot follow it */
    bool expect_upgrade, upgraded;
    size_t upgrade_offset;
    const char *problem; /* set by a callback that failed */
};

static br_parser *parser_of(llhttp_t *h)
{
    return h->data;
}

static int fail(br_parser *p, const char *problem)
{
    p->problem = problem;
    return -1;
}

/* Appends name (len bytes) to b as UTF-8 without the characters that
 * gr_name_char_ok refuses.
 * latin1: the bytes are ISO-8859-1. Otherwise they must be UTF-8: false,
 * with b as it was, when they are not. */
static bool clean_name(gr_buf *b, const char *name, size_t len, bool latin1)
{
    size_t start = b->len;
    for (size_t i = 0; i < len;) {
        uint32_t c;
        size_t n = latin1 ? 1 : gr_utf8_next(name + i, len - i, &c);
        if (latin1)
            c = (unsigned char)name[i];
        if (n == 0) {
            b->len = start;
            if (b->data)
                b->data[start] = '\0';
            return false;
        }
        if (gr_name_char_ok(c)) {
            if (latin1 && c >= 0x80) {
                char two[2] = {(char)(0xc0 | (c >> 6)), (char)(0x80 | (c & 0x3f))};
                gr_buf_append(b, two, 2);
            } else {
                gr_buf_append(b, name + i, n);
            }
        }
        i += n;
    }
    return true;
}

/* One parameter of a header value, after a ';': its name, and its value
 * unquoted (backslash escapes undone) into *value. Moves *p past it.
 * False when none is left. */
static bool next_param(const char **p, const char **name, size_t *name_len, gr_buf *value)
{
    const char *s = *p;
    while (*s && *s != ';')
        s++;
    if (*s == '\0')
        return false;
    s++;
    while (*s == ' ' || *s == '\t')
        s++;
    *name = s;
    while (*s && *s != '=' && *s != ';' && *s != ' ' && *s != '\t')
        s++;
    *name_len = (size_t)(s - *name);
    while (*s == ' ' || *s == '\t')
        s++;
    gr_buf_clear(value);
    gr_buf_append(value, "", 0);
    if (*s == '=') {
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s == '"') {
            for (s++; *s && *s != '"'; s++) {
                if (*s == '\\' && s[1])
                    s++;
                gr_buf_append(value, s, 1);
            }
            if (*s == '"')
                s++;
        } else {
            const char *v = s;
            while (*s && *s != ';' && *s != ' ' && *s != '\t')
                s++;
            gr_buf_append(value, v, (size_t)(s - v));
        }
    }
    *p = s;
    return true;
}

/* filename*='s value (RFC 8187: charset'language'percent-encoded) into b,
 * cleaned; false when its charset is not UTF-8 or ISO-8859-1 or it is not
 * valid in its charset. */
static bool extended_filename(gr_buf *b, const char *v)
{
    bool latin1;
    if (strncasecmp(v, "utf-8'", 6) == 0)
        latin1 = false;
    else if (strncasecmp(v, "iso-8859-1'", 11) == 0)
        latin1 = true;
    else
        return false;
    const char *lang = strchr(v, '\'') + 1; /* there is one: it was compared */
    const char *text = strchr(lang, '\'');
    if (text == NULL)
        return false;
    gr_buf raw = GR_BUF_INIT;
    for (const char *c = text + 1; *c; c++) {
        char ch = *c;
        if (ch == '%' && isxdigit((unsigned char)c[1]) && isxdigit((unsigned char)c[2])) {
            char hex[3] = {c[1], c[2], 0};
            ch = (char)strtol(hex, NULL, 16);
            c += 2;
        }
        gr_buf_append(&raw, &ch, 1);
    }
    bool ok = clean_name(b, raw.data ? raw.data : "", raw.len, latin1) && b->len > 0;
    gr_buf_release(&raw);
    return ok;
}

/* The download name of Content-Disposition: attachment, as UTF-8 without
 * control or reordering characters: filename*= when it can be read (RFC
 * 6266 asks clients to prefer it), else filename=; "" for an attachment
 * without a name; NULL for no attachment. Parameters are read one by one,
 * so that neither name is found inside the other's quoted value. */
static char *disposition_filename(const char *v)
{
    if (strncasecmp(v, "attachment", 10) != 0 || (v[10] && v[10] != ';' && v[10] != ' '))
        return NULL;
    gr_buf plain = GR_BUF_INIT, ext = GR_BUF_INIT, value = GR_BUF_INIT;
    bool have_plain = false, have_ext = false;
    const char *p = v + 10, *name;
    size_t name_len;
    while (next_param(&p, &name, &name_len, &value)) {
        if (!have_ext && name_len == 9 && strncasecmp(name, "filename*", 9) == 0)
            have_ext = extended_filename(&ext, value.data);
        else if (!have_plain && name_len == 8 && strncasecmp(name, "filename", 8) == 0) {
            /* Raw bytes: UTF-8 when they are, else ISO-8859-1 (RFC 6266's). */
            have_plain = true;
            if (!clean_name(&plain, value.data, value.len, false))
                clean_name(&plain, value.data, value.len, true);
        }
    }
    gr_buf_release(&value);
    gr_buf *pick = have_ext ? &ext : &plain;
    gr_buf_append(pick, "", 0);
    char *out = gr_buf_steal(pick);
    gr_buf_release(&ext);
    gr_buf_release(&plain);
    return out;
}

static int take_header(br_parser *p)
{
    if (p->name.len == 0)
        return 0;
    const char *n = p->name.data;
    size_t nlen = p->name.len;
    const char *v = p->value.data ? p->value.data : "";
    br_response *r = &p->resp;
    /* The headers kept whole; their names are compared only at the same length. */
    const struct {
        const char *name;
        size_t len;
        char **slot;
    } kept[] = {
        {"content-type", 12, &r->content_type},
        {"content-encoding", 16, &r->content_encoding},
        {"content-language", 16, &r->content_language},
        {"etag", 4, &r->etag},
        {"location", 8, &r->location},
        {"dav", 3, &r->dav},
        {"sec-websocket-protocol", 22, &r->ws_protocol},
        {"sec-websocket-accept", 20, &r->ws_accept},
    };
    char **slot = NULL;
    for (size_t i = 0; i < sizeof(kept) / sizeof(kept[0]) && !slot; i++)
        if (kept[i].len == nlen && strcasecmp(n, kept[i].name) == 0)
            slot = kept[i].slot;
    if (slot) {
        free(*slot);
        *slot = gr_strdup(v);
    } else if (strcasecmp(n, "content-disposition") == 0) {
        free(r->disposition_filename);
        r->disposition_filename = disposition_filename(v);
    } else if (strcasecmp(n, "set-cookie") == 0) {
        if (r->ncookies >= p->limits.max_cookies)
            return fail(p, "the app set too many cookies");
        br_cookie c;
        if (br_parse_set_cookie(v, &c) == 0) {
            r->cookies = gr_realloc(r->cookies, (r->ncookies + 1) * sizeof(*r->cookies));
            r->cookies[r->ncookies++] = c;
        }
    } else if (br_response_header_allowed(n)) {
        r->headers = gr_realloc(r->headers, (r->nheaders + 1) * sizeof(*r->headers));
        r->headers[r->nheaders].name = gr_strdup(n);
        r->headers[r->nheaders].value = gr_strdup(v);
        r->nheaders++;
    }
    gr_buf_clear(&p->name); /* their memory serves the next header */
    gr_buf_clear(&p->value);
    return 0;
}

static int count(br_parser *p, size_t len)
{
    p->header_bytes += len;
    if (p->header_bytes > p->limits.max_header_bytes)
        return fail(p, "the app's response headers are too large");
    return 0;
}

static int on_header_field(llhttp_t *h, const char *at, size_t len)
{
    br_parser *p = parser_of(h);
    /* After the head, fields are a chunked body's trailer section: they may
     * not be merged into the response (RFC 9110 6.5.1), only counted. */
    if (p->head_delivered)
        return count(p, len);
    if (p->in_value) {
        if (take_header(p) < 0)
            return -1;
        p->in_value = false;
    }
    if (p->name.len == 0 && ++p->header_count > p->limits.max_headers)
        return fail(p, "the app's response has too many headers");
    gr_buf_append(&p->name, at, len);
    return count(p, len);
}

static int on_header_value(llhttp_t *h, const char *at, size_t len)
{
    br_parser *p = parser_of(h);
    if (p->head_delivered)
        return count(p, len);
    p->in_value = true;
    if (memchr(at, '\0', len))
        return fail(p, "the app's response has a NUL byte in a header");
    /* llhttp accepts obsolete line folding; a folded value must not carry its
     * line break on towards the browser. */
    if (memchr(at, '\r', len) || memchr(at, '\n', len))
        return fail(p, "the app's response has a line break inside a header");
    gr_buf_append(&p->value, at, len);
    return count(p, len);
}

static int on_headers_complete(llhttp_t *h)
{
    br_parser *p = parser_of(h);
    if (take_header(p) < 0)
        return -1;
    p->in_value = false;
    p->resp.status = llhttp_get_status_code(h);
    if (p->resp.status < 100 || p->resp.status > 599)
        return fail(p, "the app answered with an impossible status");
    p->resp.content_length = (h->flags & F_CONTENT_LENGTH) ? (int64_t)h->content_length : -1;
    if (p->resp.status == 101 && p->expect_upgrade) {
        p->head_delivered = true;
        p->upgraded = true;
        p->done = true;
        if (p->cb.on_head && p->cb.on_head(p->ud, &p->resp) != 0)
            return fail(p, "the response was refused");
        return 2; /* no body: the connection now speaks the new protocol */
    }
    /* 1 tells llhttp the response has no body. A 1xx, 204 or 304, and any
     * answer to HEAD, ends at its blank line whatever Content-Length or
     * Transfer-Encoding it announces (RFC 9112 6.3); llhttp would wait for
     * that body, and take the bytes after the head for it. An app that
     * sends such a body anyway would have it read as the next response on
     * the connection: after an announced body, the connection is not kept. */
    bool no_body = p->resp.status < 200 || p->resp.status == 204 || p->resp.status == 304 ||
                   p->http.method == HTTP_HEAD;
    if (no_body && ((h->flags & F_CHUNKED) || ((h->flags & F_CONTENT_LENGTH) && h->content_length)))
        p->body_unsent = true;
    if (p->resp.status < 200) {
        /* An interim response (100 Continue): the real one follows. */
        br_response_release(&p->resp);
        return 1;
    }
    p->head_delivered = true;
    if (p->cb.on_head && p->cb.on_head(p->ud, &p->resp) != 0)
        return fail(p, "the response was refused");
    return no_body ? 1 : 0;
}

static int on_body(llhttp_t *h, const char *at, size_t len)
{
    br_parser *p = parser_of(h);
    if (p->cb.on_body && p->cb.on_body(p->ud, at, len) != 0)
        return fail(p, "the body was refused");
    return 0;
}

static int on_message_complete(llhttp_t *h)
{
    br_parser *p = parser_of(h);
    if (!p->head_delivered || p->upgraded)
        return 0; /* the end of an interim response, or of a 101 */
    p->done = true;
    if (p->cb.on_done && p->cb.on_done(p->ud) != 0)
        return fail(p, "the response was refused");
    return HPE_PAUSED; /* one response per request: stop here */
}

/* Freed parsers are kept in a stash (util.h) for the next exchanges, with
 * their header buffers when those are small. */
#define KEPT_HEADER_BUFFER 256
static _Thread_local gr_stash parser_stash;

static br_parser *parser_alloc(void)
{
    br_parser *p = gr_stash_take(&parser_stash);
    if (p == NULL)
        return gr_calloc(1, sizeof(br_parser));
    gr_buf name = p->name, value = p->value;
    memset(p, 0, sizeof(*p));
    p->name = name;
    p->value = value;
    gr_buf_clear(&p->name);
    gr_buf_clear(&p->value);
    return p;
}

br_parser *br_parser_new(const br_limits *limits, const br_parser_callbacks *cb, void *ud,
                         bool head_request)
{
    br_parser *p = parser_alloc();
    p->limits = limits ? *limits : br_limits_default();
    if (cb)
        p->cb = *cb;
    p->ud = ud;
    llhttp_settings_init(&p->settings);
    p->settings.on_header_field = on_header_field;
    p->settings.on_header_value = on_header_value;
    p->settings.on_headers_complete = on_headers_complete;
    p->settings.on_body = on_body;
    p->settings.on_message_complete = on_message_complete;
    llhttp_init(&p->http, HTTP_RESPONSE, &p->settings);
    p->http.data = p;
    /* llhttp reads the request method to know whether a body can follow. */
    p->http.method = head_request ? HTTP_HEAD : HTTP_GET;
    return p;
}

void br_parser_free(br_parser *p)
{
    if (p == NULL)
        return;
    br_response_release(&p->resp);
    if (p->name.cap > KEPT_HEADER_BUFFER)
        gr_buf_release(&p->name);
    if (p->value.cap > KEPT_HEADER_BUFFER)
        gr_buf_release(&p->value);
    if (gr_stash_keep(&parser_stash, p))
        return;
    gr_buf_release(&p->name);
    gr_buf_release(&p->value);
    free(p);
}

int br_parser_feed(br_parser *p, const char *data, size_t len, gr_error_t *err)
{
    if (p->done)
        return len == 0 ? 0 : gr_make_error(err, 0, "the app sent bytes after its response");
    llhttp_errno_t e = llhttp_execute(&p->http, data, len);
    if (e == HPE_PAUSED_UPGRADE && p->upgraded) {
        p->upgrade_offset = (size_t)(llhttp_get_error_pos(&p->http) - data);
        return 0;
    }
    if (e == HPE_OK || (e == HPE_PAUSED && p->done)) {
        if (e == HPE_PAUSED) {
            size_t used = (size_t)(llhttp_get_error_pos(&p->http) - data);
            if (used < len)
                return gr_make_error(err, 0, "the app sent bytes after its response");
        }
        return 0;
    }
    if (p->problem)
        return gr_make_error(err, 0, "%s", p->problem);
    return gr_make_error(err, 0, "the app's response is not valid HTTP: %s",
                         llhttp_get_error_reason(&p->http) ? llhttp_get_error_reason(&p->http)
                                                           : llhttp_errno_name(e));
}

int br_parser_finish(br_parser *p, gr_error_t *err)
{
    if (p->done)
        return 0;
    /* A body delimited by the end of the connection ends properly here. */
    llhttp_errno_t e = llhttp_finish(&p->http);
    if ((e == HPE_OK || e == HPE_PAUSED) && p->done)
        return 0;
    if (p->problem)
        return gr_make_error(err, 0, "%s", p->problem);
    if (!p->head_delivered)
        return gr_make_error(err, 0, "the app closed the connection without answering");
    return gr_make_error(err, 0, "the app closed the connection in the middle of its response");
}

void br_parser_expect_upgrade(br_parser *p)
{
    p->expect_upgrade = true;
}

bool br_parser_upgraded(const br_parser *p)
{
    return p->upgraded;
}

size_t br_parser_upgrade_offset(const br_parser *p)
{
    return p->upgrade_offset;
}

bool br_parser_done(const br_parser *p)
{
    return p->done;
}

bool br_parser_keep_alive(const br_parser *p)
{
    return p->done && !p->body_unsent && llhttp_should_keep_alive(&p->http);
}
