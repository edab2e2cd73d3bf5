/* The HTTP side of granary-http-bridge: turning a WebSession call into an
 * HTTP/1.1 request to the app (with the X-Sandstorm-* headers), and the app's
 * untrusted HTTP response back into the parts of a WebSession.Response
 * (status kind and code, content headers, cookies, whitelisted headers, the
 * body as a stream of chunks). No Cap'n Proto here: the RPC glue fills and
 * reads these structs. */
#ifndef GRANARY_BRIDGE_H
#define GRANARY_BRIDGE_H

#include "util.h"

/* ---- requests ------------------------------------------------------------ */

/* Who is asking, as the platform told the bridge for this session. Any field
 * may be NULL (an anonymous user has no user_id and gets the username
 * "Anonymous User"). */
typedef struct br_session_info {
    const char *tab_id;           /* 32 hex digits */
    const char *username;         /* display name, sent percent-encoded */
    const char *user_id;          /* 32 hex digits, absent for anonymous */
    const char *preferred_handle;
    const char *picture;
    const char *pronouns;
    const char *session_type;     /* "normal", "request" or "offer" */
    const char *permissions;      /* held permission names, comma-separated */
    const char *base_path;        /* the session's origin, e.g. http://ui-ab12.example */
    const char *session_id;
} br_session_info;

/* Starts a request in b: "METHOD /path HTTP/1.1", Host from base_path, and
 * the session headers. path is the WebSession path (no leading '/'; query
 * allowed). Returns 0, or -1 with err when the method or path holds a byte
 * that could split the request (space, control characters, NUL). */
int br_request_begin(gr_buf *b, const char *method, const char *path, const br_session_info *s,
                     gr_error_t *err);
/* The two halves of br_request_begin: the request line, and the headers that
 * stay the same for every request of a session (which a session makes once). */
int br_request_line(gr_buf *b, const char *method, const char *path, gr_error_t *err);
int br_session_headers(gr_buf *b, const br_session_info *s, gr_error_t *err);

/* Adds one header. A name that is not an HTTP token or a value holding CR,
 * LF or NUL is refused with err, so no app ever sees an injected header. */
int br_request_header(gr_buf *b, const char *name, const char *value, gr_error_t *err);

/* Ends the headers: Content-Length when body_len >= 0, chunked when it is
 * -1 (a streaming upload), nothing for -2 (no body). */
void br_request_end(gr_buf *b, int64_t body_len);

/* True when a header the browser sent may be passed to the app although it
 * is not one the bridge handles itself (WebSession.Context.headerWhitelist),
 * or when a header of the app's response may go back to the browser
 * (WebSession.Response.headerWhitelist). Names compare without case; an
 * entry ending in '*' matches a prefix. */
bool br_request_header_allowed(const char *name);
bool br_request_header_allowed_n(const char *name, size_t len); /* name need not end in NUL */
bool br_response_header_allowed(const char *name);

/* The Sec-WebSocket-Accept an app must answer to key (RFC 6455 4.2.2):
 * base64 of the SHA-1 of key and the protocol's GUID, into out (29 bytes). */
void br_websocket_accept(const char *key, char out[29]);

/* Appends the standard base64 (padded) of n bytes to b. */
void br_base64(gr_buf *b, const unsigned char *d, size_t n);

/* Percent-encodes s into b for a header value (X-Sandstorm-Username). */
void br_percent_encode(gr_buf *b, const char *s);

/* ---- responses ------------------------------------------------------------ */

/* What WebSession.Response an HTTP status becomes. */
typedef enum {
    BR_CONTENT,             /* code: a SuccessCode ordinal */
    BR_NO_CONTENT,          /* reset_form for 205 */
    BR_REDIRECT,            /* permanent, switch_to_get */
    BR_PRECONDITION_FAILED, /* 304 and 412 */
    BR_CLIENT_ERROR,        /* code: a ClientErrorCode ordinal */
    BR_SERVER_ERROR,        /* 5xx, and statuses WebSession cannot carry */
} br_kind;

typedef struct br_status_map {
    br_kind kind;
    int code;
    bool permanent, switch_to_get, reset_form;
} br_status_map;

/* Maps an HTTP status code (any integer) to its WebSession response kind. */
br_status_map br_map_status(int status);

typedef struct br_cookie {
    char *name, *value, *path;
    enum { BR_EXPIRES_NONE, BR_EXPIRES_ABSOLUTE, BR_EXPIRES_RELATIVE } expires;
    int64_t expires_value; /* unix seconds, or seconds from now */
    bool http_only;
} br_cookie;

typedef struct br_owned_header {
    char *name, *value;
} br_owned_header;

/* The parts of the app's response head that WebSession carries. */
typedef struct br_response {
    int status;
    char *content_type, *content_encoding, *content_language;
    char *etag;     /* the raw ETag header, quotes and W/ included */
    char *location; /* for redirects */
    char *disposition_filename; /* Content-Disposition: attachment; filename=... */
    br_cookie *cookies;
    size_t ncookies;
    char *dav;                /* DAV (for OPTIONS) */
    char *ws_protocol;        /* Sec-WebSocket-Protocol (for a 101) */
    char *ws_accept;          /* Sec-WebSocket-Accept (for a 101) */
    br_owned_header *headers; /* whitelisted ones only */
    size_t nheaders;
    int64_t content_length;   /* -1 when not given */
} br_response;

void br_response_release(br_response *r);

/* Parses one Set-Cookie value. Returns 0 and fills c, or -1 when the cookie
 * has no name. */
int br_parse_set_cookie(const char *value, br_cookie *c);
void br_cookie_release(br_cookie *c);

/* Limits on what an app may send; defaults from br_limits_default(). */
typedef struct br_limits {
    size_t max_header_bytes; /* all names and values together */
    size_t max_headers;
    size_t max_cookies;
} br_limits;

br_limits br_limits_default(void);

/* An incremental parser of the app's response. The callbacks run from inside
 * br_parser_feed: on_head once the head is complete (r is owned by the
 * parser, valid until the parser is freed), on_body for each piece of the
 * body (dechunked), on_done at the end of the message. A callback returning
 * non-zero stops parsing with an error. */
typedef struct br_parser br_parser;

typedef struct br_parser_callbacks {
    int (*on_head)(void *ud, br_response *r);
    int (*on_body)(void *ud, const char *data, size_t len);
    int (*on_done)(void *ud);
} br_parser_callbacks;

/* head_request: the request was HEAD, so the response has no body. */
br_parser *br_parser_new(const br_limits *limits, const br_parser_callbacks *cb, void *ud,
                         bool head_request);
void br_parser_free(br_parser *p);

/* Feeds bytes from the app. Returns 0, or -1 with err naming what is wrong
 * with the response (malformed status line, bad chunking, too many or too
 * large headers, a callback's refusal). */
int br_parser_feed(br_parser *p, const char *data, size_t len, gr_error_t *err);

/* Tells the parser the app closed the connection. Returns 0 when that ends
 * the response properly, or -1 with err when the response was cut short. */
int br_parser_finish(br_parser *p, gr_error_t *err);

/* Makes a 101 Switching Protocols the end of the response (on_head runs,
 * on_done does not): for a WebSocket handshake. */
void br_parser_expect_upgrade(br_parser *p);

/* True once a 101 ended the response; the bytes of the last feed from
 * br_parser_upgrade_offset() on belong to the upgraded protocol. */
bool br_parser_upgraded(const br_parser *p);
size_t br_parser_upgrade_offset(const br_parser *p);

/* True once on_done has run; the connection may serve the next request when
 * br_parser_keep_alive() says so. */
bool br_parser_done(const br_parser *p);
bool br_parser_keep_alive(const br_parser *p);

#endif
