/* Browser headers into WebSession shapes and back; see websession.h. */
#include "websession.h"

#include <math.h>
#include <strings.h>
#include <time.h>

static void trim(const char **s, size_t *len)
{
    while (*len && (**s == ' ' || **s == '\t')) {
        (*s)++;
        (*len)--;
    }
    while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
        (*len)--;
}

bool gw__cookie_next(const char **p, const char *end, gw_cookie *c)
{
    while (*p && *p < end) {
        const char *item = *p;
        const char *semi = memchr(item, ';', (size_t)(end - item));
        size_t len = semi ? (size_t)(semi - item) : (size_t)(end - item);
        *p = semi ? semi + 1 : end;
        const char *eq = memchr(item, '=', len);
        if (!eq)
            continue;
        c->name = item;
        c->name_len = (size_t)(eq - item);
        trim(&c->name, &c->name_len);
        if (c->name_len == 0)
            continue;
        c->value = eq + 1;
        c->value_len = len - (size_t)(eq - item) - 1;
        trim(&c->value, &c->value_len);
        return true;
    }
    return false;
}

void gw__accepted_free(gw_accepted *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(a[i].name);
    free(a);
}

/* The q parameter of one Accept item's parameters ("; q=0.5; level=1"). */
static float parse_q(const char *params, size_t len)
{
    _cleanup_free_ char *copy = gr_strndup(params, len);
    for (char *p = copy; p && *p;) {
        char *next = strchr(p, ';');
        if (next)
            *next++ = '\0';
        char *t = gr_strstrip(p);
        if ((t[0] == 'q' || t[0] == 'Q') && t[1] == '=') {
            char *end = NULL;
            float q = strtof(t + 2, &end);
            if (end == t + 2 || *end != '\0' || isnan(q))
                return 1.0f;
            return q < 0 ? 0.0f : q > 1 ? 1.0f : q;
        }
        p = next;
    }
    return 1.0f;
}

ssize_t gw__ws_parse_accept(const char *header, gw_accepted **out, gr_error_t *err)
{
    *out = NULL;
    size_t n = 0;
    gw_accepted *a = NULL;
    for (const char *p = header; p && *p;) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *semi = memchr(p, ';', len);
        size_t name_len = semi ? (size_t)(semi - p) : len;
        char *name = gr_strndup_trim(p, name_len);
        if (*name == '\0') {
            free(name);
        } else {
            if (n >= GW_WS_MAX_ITEMS) {
                free(name);
                gw__accepted_free(a, n);
                return gr_make_error(err, 0, "the Accept header lists too many types");
            }
            a = gr_realloc(a, (n + 1) * sizeof(*a));
            a[n].name = name;
            a[n].q = semi ? parse_q(semi + 1, len - name_len - 1) : 1.0f;
            n++;
        }
        p = end ? end + 1 : NULL;
    }
    *out = a;
    return (ssize_t)n;
}

void gw__precondition_release(gw_precondition *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->etags[i].value);
    free(p->etags);
    memset(p, 0, sizeof(*p));
}

/* Parses a list of entity tags: W/"a", "b". Returns 0, or -1 with err. */
static int parse_etags(const char *s, gw_precondition *out, gr_error_t *err)
{
    const char *p = s;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            break;
        bool weak = false;
        if (p[0] == 'W' && p[1] == '/') {
            weak = true;
            p += 2;
        }
        if (*p != '"')
            return gr_make_error(err, 0, "an entity tag must be quoted");
        const char *close = strchr(p + 1, '"');
        if (close == NULL)
            return gr_make_error(err, 0, "an entity tag is not closed");
        if (out->n >= GW_WS_MAX_ITEMS)
            return gr_make_error(err, 0, "too many entity tags (at most %d)", GW_WS_MAX_ITEMS);
        out->etags = gr_realloc(out->etags, (out->n + 1) * sizeof(*out->etags));
        out->etags[out->n].value = gr_strndup(p + 1, (size_t)(close - p - 1));
        out->etags[out->n].weak = weak;
        out->n++;
        p = close + 1;
        while (*p == ' ' || *p == '\t')
            p++;
        if (*p != ',' && *p != '\0')
            return gr_make_error(err, 0, "entity tags must be separated by commas");
    }
    return 0;
}

static bool is_star(const char *s)
{
    while (*s == ' ')
        s++;
    if (*s != '*')
        return false;
    s++;
    while (*s == ' ')
        s++;
    return *s == '\0';
}

int gw__ws_parse_precondition(const char *if_match, const char *if_none_match,
                              gw_precondition *out, gr_error_t *err)
{
    memset(out, 0, sizeof(*out));
    const char *list = if_match ? if_match : if_none_match;
    if (list == NULL)
        return 0;
    if (is_star(list)) {
        out->kind = if_match ? GW_PRE_EXISTS : GW_PRE_DOESNT_EXIST;
        return 0;
    }
    out->kind = if_match ? GW_PRE_MATCHES_ONE_OF : GW_PRE_MATCHES_NONE_OF;
    if (parse_etags(list, out, err) < 0) {
        gw__precondition_release(out);
        return gr_error_prefix(err, "%s", if_match ? "If-Match" : "If-None-Match");
    }
    if (out->n == 0)
        out->kind = GW_PRE_NONE;
    return 0;
}

/* Cookie names are tokens; values are cookie-octets (RFC 6265 4.1.1). */
static bool cookie_name_ok(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch <= 0x20 || ch >= 0x7f || strchr("()<>@,;:\\\"/[]?={}", ch))
            return false;
    }
    return true;
}

static bool cookie_value_ok(const char *s)
{
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch < 0x21 || ch > 0x7e || ch == '"' || ch == ',' || ch == ';' || ch == '\\')
            return false;
    }
    return true;
}

static bool path_ok(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == ';' || *s == 0x7f)
            return false;
    return true;
}

int gw__ws_format_cookie(gr_buf *b, const gw_set_cookie *c, bool https, int64_t now,
                         gr_error_t *err)
{
    if (!cookie_name_ok(c->name ? c->name : ""))
        return gr_make_error(err, 0, "the app set a cookie with an invalid name");
    if (!cookie_value_ok(c->value ? c->value : ""))
        return gr_make_error(err, 0, "cookie %s: the value holds invalid bytes", c->name);
    if (c->path && !path_ok(c->path))
        return gr_make_error(err, 0, "cookie %s: the path holds invalid bytes", c->name);
    gr_buf_printf(b, "%s=%s", c->name, c->value ? c->value : "");
    if (c->path && *c->path)
        gr_buf_printf(b, "; Path=%s", c->path);
    if (c->expires != GW_EXPIRES_NONE) {
        int64_t at = c->expires == GW_EXPIRES_ABSOLUTE ? c->expires_value : now + c->expires_value;
        /* Beyond what browsers keep (about 400 days) or before 1970: clamp. */
        if (at < 0)
            at = 0;
        if (at > now + 400LL * 86400)
            at = now + 400LL * 86400;
        time_t t = (time_t)at;
        struct tm tm;
        gmtime_r(&t, &tm);
        char date[64];
        strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        gr_buf_printf(b, "; Expires=%s", date);
    }
    if (c->http_only)
        gr_buf_puts(b, "; HttpOnly");
    if (https)
        gr_buf_puts(b, "; Secure");
    gr_buf_puts(b, "; SameSite=Lax");
    return 0;
}

char *gw__ws_grain_csp(const char *shell_origin)
{
    return gr_asprintf("default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                       "font-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; "
                       "connect-src 'self'; form-action 'self'; base-uri 'self'; "
                       "worker-src 'none'; object-src 'none'; frame-src 'none'; "
                       "frame-ancestors %s",
                       shell_origin);
}

/* Content-Disposition for a download name the app chose. Characters that
 * gr_name_char_ok refuses (controls, marks that reorder text) and bytes
 * that are not UTF-8 are left out. What remains goes out as filename= in
 * printable ASCII without quotes or backslashes (each other character is
 * "_") for every client, and, when it has letters beyond ASCII, as
 * filename*= in UTF-8 (RFC 6266 and 8187), which browsers prefer. */
void gw__ws_download_disposition(gr_buf *b, const char *name, size_t len)
{
    gr_buf ext = GR_BUF_INIT;
    bool wide = false;
    gr_buf_puts(b, "attachment; filename=\"");
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = gr_utf8_next(name + i, len - i, &cp);
        if (n == 0 || !gr_name_char_ok(cp)) {
            i += n ? n : 1;
            continue;
        }
        char plain = cp < 0x80 && cp != '"' && cp != '\\' ? (char)cp : '_';
        gr_buf_append(b, &plain, 1);
        wide |= cp >= 0x80;
        for (size_t k = i; k < i + n; k++) {
            unsigned char ch = (unsigned char)name[k];
            if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                (ch && strchr("!#$&+-.^_`|~", ch))) {
                gr_buf_append(&ext, &name[k], 1);
            } else {
                char pct[4];
                snprintf(pct, sizeof pct, "%%%02X", ch);
                gr_buf_append(&ext, pct, 3);
            }
        }
        i += n;
    }
    gr_buf_puts(b, "\"");
    if (wide) {
        gr_buf_puts(b, "; filename*=UTF-8''");
        gr_buf_append(b, ext.data, ext.len);
    }
    gr_buf_release(&ext);
}
