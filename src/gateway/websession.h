/* The gateway's half of HTTP over WebSession: reading what a browser sent
 * (cookies, Accept, Accept-Encoding, ETag preconditions, whitelisted headers)
 * into the shapes of WebSession.Context, and writing a WebSession.Response's
 * cookies and the grain origin's security headers back as HTTP. Every input
 * here comes from a browser and is bounded. Internal to the gateway; the unit
 * tests and the fuzz target include it directly. */
#ifndef GRANARY_GATEWAY_WEBSESSION_H
#define GRANARY_GATEWAY_WEBSESSION_H

#include "util.h"

#define GW_WS_MAX_ITEMS 64 /* cookies, accepted types, ETags: more is refused */

typedef struct gw_accepted {
    char *name; /* a MIME type, or a content coding */
    float q;    /* 0..1, 1 when absent */
} gw_accepted;

typedef struct gw_etag {
    char *value; /* without quotes */
    bool weak;
} gw_etag;

/* WebSession.Context.eTagPrecondition. */
typedef enum {
    GW_PRE_NONE,
    GW_PRE_EXISTS,          /* If-Match: * */
    GW_PRE_MATCHES_ONE_OF,  /* If-Match: "a", "b" */
    GW_PRE_MATCHES_NONE_OF, /* If-None-Match: "a", "b" */
    GW_PRE_DOESNT_EXIST,    /* If-None-Match: * */
} gw_precondition_kind;

typedef struct gw_precondition {
    gw_precondition_kind kind;
    gw_etag *etags;
    size_t n;
} gw_precondition;

/* One "name=value" item of a Cookie header, pointing into the header. */
typedef struct gw_cookie {
    const char *name, *value;
    size_t name_len, value_len;
} gw_cookie;

/* Steps *p through a Cookie header (up to end) to its next item, trimmed of
 * spaces and tabs; items without '=' or with an empty name are passed over.
 * Returns false when none is left. Copies nothing. */
bool gw__cookie_next(const char **p, const char *end, gw_cookie *c);
/* Where a Cookie header value of len bytes at v ends for gw__cookie_next:
 * at its first NUL, if any. */
static inline const char *gw__cookie_end(const char *v, size_t len)
{
    const char *nul = memchr(v, '\0', len);
    return nul ? nul : v + len;
}

/* Whether an app's header name or value may go out: what RFC 9110 allows
 * in a field value (visible ASCII, space, tab, bytes from 0x80), so no line
 * break to split the response and no other control byte either. */
static inline bool gw__field_safe(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return false;
    }
    return true;
}

/* Content-Disposition for a download name an app chose (len bytes, any
 * bytes at all), appended to b; see websession.c. */
void gw__ws_download_disposition(gr_buf *b, const char *name, size_t len);


/* Parses an Accept or Accept-Encoding header ("a/b;q=0.5, c"). Entries with
 * a malformed q are kept with q = 1 clamped into 0..1. Returns the count
 * (*out, free with gw__accepted_free), or -1 with err when there are too many. */
ssize_t gw__ws_parse_accept(const char *header, gw_accepted **out, gr_error_t *err);
void gw__accepted_free(gw_accepted *a, size_t n);

/* Reads If-Match and If-None-Match (either may be NULL) into a precondition.
 * If-Match wins when both are present. Returns 0, or -1 with err for a list
 * that is malformed (an unquoted tag) or too long. */
int gw__ws_parse_precondition(const char *if_match, const char *if_none_match,
                              gw_precondition *out, gr_error_t *err);
void gw__precondition_release(gw_precondition *p);

/* A cookie the app sets, as WebSession.Cookie carries it. */
typedef struct gw_set_cookie {
    const char *name, *value, *path;
    enum { GW_EXPIRES_NONE, GW_EXPIRES_ABSOLUTE, GW_EXPIRES_RELATIVE } expires;
    int64_t expires_value;
    bool http_only;
} gw_set_cookie;

/* Writes a Set-Cookie value for c into b. The platform adds Secure on https
 * origins and SameSite=Lax. Returns 0, or -1 with err when the name or value
 * holds bytes that would break the header (the cookie is then dropped). */
int gw__ws_format_cookie(gr_buf *b, const gw_set_cookie *c, bool https, int64_t now,
                         gr_error_t *err);

/* The Content-Security-Policy of every response from a grain origin: the app
 * may use only its own origin (no images or media from elsewhere either, so
 * it cannot leak data through their URLs) and be framed only by the shell. */
char *gw__ws_grain_csp(const char *shell_origin);

#endif
