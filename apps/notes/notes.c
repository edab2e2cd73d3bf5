/* notes: Granary's example app. A plain HTTP/1.1 server (libuv + llhttp) that
 * keeps one note under $NOTES_DIR (default /var, the grain's storage), lets
 * only sessions holding the "write" permission (X-Sandstorm-Permissions)
 * change it, and pushes every change to open pages over a WebSocket.
 *
 * It also answers a few /debug/ paths that the platform's tests use to look
 * at what reaches an app: the request headers, any status code, large bodies
 * streamed both ways, a WebSocket echo, a crash, and calls to the platform
 * through the app API (api.c).
 *
 * Usage: notes [PORT]   (default 8000, on 127.0.0.1) */
#include <llhttp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <strings.h>
#include <sys/stat.h>
#include <uv.h>

#include "notes.h"
#include "util.h"

#define MAX_HEADERS 100
#define MAX_BODY (1 << 20)     /* a note or a request body we keep */
#define MAX_URL 8192
#define MAX_HEADER_BYTES 65536 /* all header names and values together */
#define CHUNK (64 * 1024)

typedef struct {
    size_t name, value; /* offsets of NUL-terminated strings in nt_conn.hbytes */
} header;

struct nt_conn {
    uv_tcp_t tcp;
    llhttp_t parser;
    gr_buf url;
    /* A request's headers, names and values one after another in one buffer
     * that the next request reuses. */
    gr_buf hbytes;
    header headers[MAX_HEADERS];
    int nheaders;
    header cur; /* the header being read */
    size_t header_bytes;
    gr_buf body;
    bool body_too_large;
    bool is_upload; /* /debug/upload: count and hash, keep nothing */
    EVP_MD_CTX *upload_hash;
    uint64_t upload_bytes;
    /* A response streamed in chunks pauses the parser until it is sent. */
    uint64_t stream_left;
    gr_buf pending; /* bytes read while paused */
    bool paused;
    bool waiting; /* for an answer from elsewhere (nt_respond_later) */
    bool keep_alive;
    bool closing_after_write;
    bool closing;
    /* WebSocket state, once upgraded. */
    int ws_kind; /* 0: not a WebSocket, NT_WS_ECHO or NT_WS_LIVE */
    gr_buf ws_in;
    gr_buf ws_message;
    int ws_opcode;
    nt_conn *live_next;
};

static uv_loop_t *loop;
static char *notes_dir;
static char *note_text; /* the note, always loaded */
static size_t note_len;
static nt_conn *live_conns;

/* ---- writing ------------------------------------------------------------- */

typedef struct {
    uv_write_t req;
    char *data;
} write_req;

static void after_write(uv_write_t *req, int status);

void nt_write(nt_conn *c, const void *data, size_t len)
{
    if (c->closing || len == 0)
        return;
    write_req *w = gr_malloc(sizeof(*w));
    w->data = gr_malloc(len);
    memcpy(w->data, data, len);
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    w->req.data = c;
    if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &buf, 1, after_write) != 0) {
        free(w->data);
        free(w);
        nt_close(c);
    }
}

static void on_closed(uv_handle_t *h)
{
    nt_conn *c = (nt_conn *)h;
    gr_buf_release(&c->url);
    gr_buf_release(&c->hbytes);
    gr_buf_release(&c->body);
    gr_buf_release(&c->pending);
    gr_buf_release(&c->ws_in);
    gr_buf_release(&c->ws_message);
    if (c->upload_hash)
        EVP_MD_CTX_free(c->upload_hash);
    free(c);
}

void nt_close(nt_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    nt_api_conn_closed(c);
    for (nt_conn **p = &live_conns; *p; p = &(*p)->live_next) {
        if (*p == c) {
            *p = c->live_next;
            break;
        }
    }
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

static const char *reason_for(int status)
{
    switch (status) {
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 418: return "I'm a teapot";
    case 500: return "Internal Server Error";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    default: return "Status";
    }
}

void nt_respond(nt_conn *c, int status, const char *type, const char *extra_headers,
                const void *body, size_t len)
{
    gr_buf b = GR_BUF_INIT;
    gr_buf_printf(&b, "HTTP/1.1 %d %s\r\n", status, reason_for(status));
    bool no_body = status == 204 || status == 304 || (status >= 100 && status < 200);
    if (!no_body)
        gr_buf_printf(&b, "Content-Length: %zu\r\n", len);
    if (type && !no_body)
        gr_buf_printf(&b, "Content-Type: %s\r\n", type);
    if (extra_headers)
        gr_buf_puts(&b, extra_headers);
    gr_buf_puts(&b, c->keep_alive ? "" : "Connection: close\r\n");
    gr_buf_puts(&b, "\r\n");
    if (!no_body && llhttp_get_method(&c->parser) != HTTP_HEAD)
        gr_buf_append(&b, body, len);
    nt_write(c, b.data, b.len);
    gr_buf_release(&b);
}

/* ---- the note -------------------------------------------------------------- */

static void load_note(void)
{
    _cleanup_free_ char *path = gr_asprintf("%s/note.txt", notes_dir);
    gr_error_t err = NULL;
    if (gr_read_file(path, MAX_BODY, &note_text, &note_len, &err) < 0) {
        if (err->status != ENOENT)
            fprintf(stderr, "notes: %s\n", gr_error_msg(err));
        gr_error_release(&err);
        note_text = gr_strdup("");
        note_len = 0;
    }
}

/* Replaces the note on disk atomically: a temporary file, fsync, rename. */
static int save_note(const char *text, size_t len)
{
    _cleanup_free_ char *tmp = gr_asprintf("%s/note.txt.tmp", notes_dir);
    _cleanup_free_ char *path = gr_asprintf("%s/note.txt", notes_dir);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        return -1;
    bool ok = fwrite(text, 1, len, f) == len && fflush(f) == 0 && fsync(fileno(f)) == 0;
    ok &= fclose(f) == 0;
    if (!ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    free(note_text);
    note_text = gr_strndup(text, len);
    note_len = len;
    return 0;
}

static void nt_note_etag(char out[40])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_Digest(note_text, note_len, md, &n, EVP_sha256(), NULL);
    out[0] = '"';
    gr_hex(md, 8, out + 1);
    out[17] = '"';
    out[18] = '\0';
}

static void json_string(gr_buf *b, const char *s, size_t len)
{
    gr_buf_puts(b, "\"");
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            gr_buf_printf(b, "\\%c", ch);
        else if (ch < 0x20)
            gr_buf_printf(b, "\\u%04x", ch);
        else
            gr_buf_append(b, &s[i], 1);
    }
    gr_buf_puts(b, "\"");
}

static char *note_json(void)
{
    char etag[40];
    nt_note_etag(etag);
    gr_buf b = GR_BUF_INIT;
    gr_buf_puts(&b, "{\"text\":");
    json_string(&b, note_text, note_len);
    gr_buf_puts(&b, ",\"etag\":");
    json_string(&b, etag, strlen(etag));
    gr_buf_puts(&b, "}");
    return gr_buf_steal(&b);
}

/* ---- requests ------------------------------------------------------------- */

static const char *header_name(nt_conn *c, int i)
{
    return c->hbytes.data + c->headers[i].name;
}

static const char *header_value(nt_conn *c, int i)
{
    return c->hbytes.data + c->headers[i].value;
}

const char *nt_header(nt_conn *c, const char *name)
{
    for (int i = 0; i < c->nheaders; i++)
        if (strcasecmp(header_name(c, i), name) == 0)
            return header_value(c, i);
    return NULL;
}

static bool may_write(nt_conn *c)
{
    const char *perms = nt_header(c, "X-Sandstorm-Permissions");
    if (perms == NULL)
        return false;
    _cleanup_free_ char *copy = gr_strdup(perms);
    char *save = NULL;
    for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save))
        if (strcmp(gr_strstrip(p), "write") == 0)
            return true;
    return false;
}

static void serve_page(nt_conn *c)
{
    gr_buf b = GR_BUF_INIT;
    gr_buf_printf(&b, NT_PAGE_HTML, may_write(c) ? "true" : "false");
    nt_respond(c, 200, "text/html; charset=utf-8", "Cache-Control: no-cache\r\n", b.data, b.len);
    gr_buf_release(&b);
}

static void serve_note(nt_conn *c)
{
    char etag[40], extra[128];
    nt_note_etag(etag);
    snprintf(extra, sizeof(extra), "ETag: %s\r\nCache-Control: no-cache\r\n", etag);
    const char *inm = nt_header(c, "If-None-Match");
    if (inm && strcmp(inm, etag) == 0) {
        nt_respond(c, 304, NULL, extra, NULL, 0);
        return;
    }
    _cleanup_free_ char *json = note_json();
    nt_respond(c, 200, "application/json", extra, json, strlen(json));
}

static void put_note(nt_conn *c)
{
    if (!may_write(c)) {
        const char *msg = "you may read this note but not change it\n";
        nt_respond(c, 403, "text/plain", NULL, msg, strlen(msg));
        return;
    }
    if (c->body_too_large) {
        const char *msg = "a note is at most 1 MiB\n";
        nt_respond(c, 413, "text/plain", NULL, msg, strlen(msg));
        return;
    }
    char etag[40];
    nt_note_etag(etag);
    const char *im = nt_header(c, "If-Match");
    if (im && strcmp(im, etag) != 0) {
        const char *msg = "the note changed since you loaded it\n";
        nt_respond(c, 412, "text/plain", NULL, msg, strlen(msg));
        return;
    }
    if (save_note(c->body.data ? c->body.data : "", c->body.len) < 0) {
        const char *msg = "could not save the note\n";
        nt_respond(c, 500, "text/plain", NULL, msg, strlen(msg));
        return;
    }
    _cleanup_free_ char *json = note_json();
    for (nt_conn *l = live_conns; l; l = l->live_next)
        nt_ws_send(l, 1, json, strlen(json));
    nt_note_etag(etag);
    char extra[96];
    snprintf(extra, sizeof(extra), "ETag: %s\r\n", etag);
    nt_respond(c, 200, "application/json", extra, json, strlen(json));
}

static void serve_headers(nt_conn *c)
{
    gr_buf b = GR_BUF_INIT;
    gr_buf_puts(&b, "{\"method\":");
    const char *m = llhttp_method_name(llhttp_get_method(&c->parser));
    json_string(&b, m, strlen(m));
    gr_buf_puts(&b, ",\"url\":");
    json_string(&b, c->url.data ? c->url.data : "", c->url.len);
    gr_buf_printf(&b, ",\"body_bytes\":%zu,\"headers\":[", c->body.len);
    for (int i = 0; i < c->nheaders; i++) {
        gr_buf_puts(&b, i ? ",[" : "[");
        json_string(&b, header_name(c, i), strlen(header_name(c, i)));
        gr_buf_puts(&b, ",");
        json_string(&b, header_value(c, i), strlen(header_value(c, i)));
        gr_buf_puts(&b, "]");
    }
    gr_buf_puts(&b, "]}");
    nt_respond(c, 200, "application/json", NULL, b.data, b.len);
    gr_buf_release(&b);
}

static void serve_status(nt_conn *c, const char *code)
{
    long status = 0;
    gr_error_t err = NULL;
    if (gr_parse_long(code, 100, 599, &status, &err) < 0 || status < 200) {
        gr_error_release(&err);
        nt_respond(c, 400, "text/plain", NULL, "bad status\n", 11);
        return;
    }
    char extra[128] = "";
    if (status >= 300 && status < 400 && status != 304)
        snprintf(extra, sizeof(extra), "Location: /debug/landed\r\n");
    char body[64];
    int n = snprintf(body, sizeof(body), "status %ld\n", status);
    nt_respond(c, (int)status, "text/plain", extra, body, (size_t)n);
}

/* Streams `stream_left` bytes of a repeating pattern, one chunk per write
 * completion, so memory stays at one chunk whatever the size. */
static void stream_more(nt_conn *c)
{
    static char pattern[CHUNK];
    if (pattern[0] == '\0')
        for (size_t i = 0; i < sizeof(pattern); i++)
            pattern[i] = (char)('a' + (i % 26));
    size_t n = c->stream_left < CHUNK ? (size_t)c->stream_left : CHUNK;
    c->stream_left -= n;
    nt_write(c, pattern, n);
}

static void serve_big(nt_conn *c, const char *query)
{
    long bytes = 0;
    gr_error_t err = NULL;
    const char *v = query && gr_starts_with(query, "bytes=") ? query + 6 : "0";
    if (gr_parse_long(v, 0, 1L << 40, &bytes, &err) < 0) {
        gr_error_release(&err);
        nt_respond(c, 400, "text/plain", NULL, "bytes=N\n", 8);
        return;
    }
    char head[160];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: %ld\r\n%s\r\n",
                     bytes, c->keep_alive ? "" : "Connection: close\r\n");
    nt_write(c, head, (size_t)n);
    if (llhttp_get_method(&c->parser) == HTTP_HEAD)
        return;
    c->stream_left = (uint64_t)bytes;
    if (c->stream_left)
        stream_more(c);
}

static void serve_upload(nt_conn *c)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned n = 0;
    EVP_DigestFinal_ex(c->upload_hash, md, &n);
    char hex[2 * EVP_MAX_MD_SIZE + 1];
    gr_hex(md, n, hex);
    char body[200];
    int len = snprintf(body, sizeof(body), "{\"bytes\":%llu,\"sha256\":\"%s\"}",
                       (unsigned long long)c->upload_bytes, hex);
    nt_respond(c, 200, "application/json", NULL, body, (size_t)len);
}

/* The value of name=... in a query string (a copy, or NULL). */
static char *query_value(const char *query, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = query; p && *p; p = strchr(p, '&') ? strchr(p, '&') + 1 : NULL) {
        if (strncmp(p, name, n) == 0 && p[n] == '=') {
            const char *v = p + n + 1;
            return gr_strndup(v, strcspn(v, "&"));
        }
    }
    return NULL;
}

static void serve_stay_awake(nt_conn *c, const char *query)
{
    long ms = 0, count = 1;
    gr_error_t err = NULL;
    _cleanup_free_ char *ms_text = query_value(query, "ms");
    _cleanup_free_ char *count_text = query_value(query, "count");
    if (gr_parse_long(ms_text ? ms_text : "", 1, 3600 * 1000, &ms, &err) < 0 ||
        (count_text && gr_parse_long(count_text, 1, NT_MAX_WAKE_LOCKS, &count, &err) < 0)) {
        gr_error_release(&err);
        static const char usage[] = "ms=N (1 to 3600000), count=K (1 to 100)\n";
        nt_respond(c, 400, "text/plain", NULL, usage, sizeof(usage) - 1);
        return;
    }
    c->waiting = true;
    nt_stay_awake(loop, c, (uint64_t)ms, (unsigned)count);
}

static void serve_activity(nt_conn *c, const char *query)
{
    /* ?session=ID asks for another session's context than this one's. */
    const char *id = query && gr_starts_with(query, "session=") ? query + 8
                                                                 : nt_header(c, "X-Sandstorm-Session-Id");
    if (id == NULL) {
        nt_respond(c, 400, "text/plain", NULL, "no X-Sandstorm-Session-Id\n", 26);
        return;
    }
    c->waiting = true;
    nt_post_activity(loop, c, id);
}

void nt_respond_later(nt_conn *c, int status, const void *body, size_t len)
{
    c->waiting = false;
    nt_respond(c, status, "text/plain", NULL, body, len);
}

static void route(nt_conn *c)
{
    const char *url = c->url.data ? c->url.data : "/";
    _cleanup_free_ char *path = gr_strdup(url);
    char *q = strchr(path, '?');
    if (q)
        *q++ = '\0';
    int method = llhttp_get_method(&c->parser);
    bool get = method == HTTP_GET || method == HTTP_HEAD;

    if (llhttp_get_upgrade(&c->parser)) {
        if (strcmp(path, "/ws/echo") == 0 || strcmp(path, "/ws/live") == 0)
            nt_ws_accept(c, strcmp(path, "/ws/echo") == 0 ? NT_WS_ECHO : NT_WS_LIVE);
        else
            nt_respond(c, 404, "text/plain", NULL, "no WebSocket here\n", 18);
        return;
    }
    if (strcmp(path, "/") == 0 && get)
        serve_page(c);
    else if (strcmp(path, "/app.js") == 0 && get)
        nt_respond(c, 200, "text/javascript; charset=utf-8", "Cache-Control: no-cache\r\n",
                   NT_APP_JS, strlen(NT_APP_JS));
    else if (strcmp(path, "/api/note") == 0 && get)
        serve_note(c);
    else if (strcmp(path, "/api/note") == 0 && method == HTTP_PUT)
        put_note(c);
    else if (strcmp(path, "/api/note") == 0)
        nt_respond(c, 405, "text/plain", "Allow: GET, HEAD, PUT\r\n", "use GET or PUT\n", 15);
    else if (strcmp(path, "/debug/headers") == 0)
        serve_headers(c);
    else if (gr_starts_with(path, "/debug/status/"))
        serve_status(c, path + 14);
    else if (strcmp(path, "/debug/big") == 0 && get)
        serve_big(c, q);
    else if (strcmp(path, "/debug/upload") == 0 && (method == HTTP_POST || method == HTTP_PUT))
        serve_upload(c);
    else if (strcmp(path, "/debug/stay-awake") == 0 && get)
        serve_stay_awake(c, q);
    else if (strcmp(path, "/debug/activity") == 0 && get)
        serve_activity(c, q);
    else if (strcmp(path, "/debug/crash") == 0)
        abort(); /* the platform's tests check what a crashing app looks like */
    else
        nt_respond(c, 404, "text/plain", NULL, "not found\n", 10);
}

/* ---- llhttp callbacks ------------------------------------------------------ */

static int on_message_begin(llhttp_t *p)
{
    nt_conn *c = p->data;
    c->nheaders = 0;
    c->header_bytes = 0;
    gr_buf_clear(&c->hbytes);
    c->cur = (header){0, 0};
    gr_buf_clear(&c->url);
    if (c->body.cap > CHUNK) /* a big body's memory is not kept for the next request */
        gr_buf_release(&c->body);
    else
        gr_buf_clear(&c->body);
    c->body_too_large = false;
    c->upload_bytes = 0;
    c->is_upload = false;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t len)
{
    nt_conn *c = p->data;
    if (c->url.len + len > MAX_URL)
        return -1;
    gr_buf_append(&c->url, at, len);
    return 0;
}

static int count_header_bytes(nt_conn *c, size_t len)
{
    c->header_bytes += len;
    return c->header_bytes > MAX_HEADER_BYTES ? -1 : 0;
}

/* A name or value may come in pieces (split across reads): each is appended
 * to hbytes, and ended with its NUL by the _complete callbacks. */
static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    nt_conn *c = p->data;
    gr_buf_append(&c->hbytes, at, len);
    return count_header_bytes(c, len);
}

static int on_header_field_complete(llhttp_t *p)
{
    nt_conn *c = p->data;
    gr_buf_append(&c->hbytes, "", 1);
    c->cur.value = c->hbytes.len;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    nt_conn *c = p->data;
    gr_buf_append(&c->hbytes, at, len);
    return count_header_bytes(c, len);
}

static int on_header_value_complete(llhttp_t *p)
{
    nt_conn *c = p->data;
    gr_buf_append(&c->hbytes, "", 1);
    if (c->nheaders < MAX_HEADERS)
        c->headers[c->nheaders++] = c->cur;
    c->cur.name = c->hbytes.len;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    nt_conn *c = p->data;
    if (c->url.data && gr_starts_with(c->url.data, "/debug/upload")) {
        c->is_upload = true;
        if (c->upload_hash == NULL)
            c->upload_hash = EVP_MD_CTX_new();
        EVP_DigestInit_ex(c->upload_hash, EVP_sha256(), NULL);
    }
    return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t len)
{
    nt_conn *c = p->data;
    if (c->is_upload) {
        EVP_DigestUpdate(c->upload_hash, at, len);
        c->upload_bytes += len;
        return 0;
    }
    if (c->body.len + len > MAX_BODY)
        c->body_too_large = true;
    else
        gr_buf_append(&c->body, at, len);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    nt_conn *c = p->data;
    c->keep_alive = llhttp_should_keep_alive(p) && !llhttp_get_upgrade(p);
    route(c);
    if (c->stream_left || c->waiting) {
        /* Hold further pipelined requests until the stream (or the answer
         * waited for) is out. */
        c->paused = true;
        return HPE_PAUSED;
    }
    if (!c->keep_alive && !c->ws_kind)
        c->closing_after_write = true;
    return 0;
}

static llhttp_settings_t settings;

/* Feeds bytes to the HTTP parser, or to the WebSocket once upgraded. */
static void feed(nt_conn *c, const char *data, size_t len)
{
    if (c->ws_kind) {
        nt_ws_feed(c, data, len);
        return;
    }
    if (c->paused) {
        gr_buf_append(&c->pending, data, len);
        return;
    }
    llhttp_errno_t e = llhttp_execute(&c->parser, data, len);
    if (e == HPE_OK)
        return;
    size_t used = (size_t)(llhttp_get_error_pos(&c->parser) - data);
    if (e == HPE_PAUSED) {
        gr_buf_append(&c->pending, data + used, len - used);
        return;
    }
    if (e == HPE_PAUSED_UPGRADE && c->ws_kind) {
        nt_ws_feed(c, data + used, len - used);
        return;
    }
    if (e != HPE_PAUSED_UPGRADE) {
        c->keep_alive = false;
        nt_respond(c, 400, "text/plain", NULL, "malformed request\n", 18);
    }
    c->closing_after_write = true;
}

static void after_write(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    nt_conn *c = req->data;
    free(w->data);
    free(w);
    if (status < 0) {
        nt_close(c);
        return;
    }
    if (c->closing)
        return;
    if (c->stream_left) {
        stream_more(c);
        return;
    }
    if (c->paused) {
        c->paused = false;
        if (!c->keep_alive) {
            nt_close(c);
            return;
        }
        llhttp_resume(&c->parser);
        size_t n = c->pending.len;
        char *rest = gr_buf_steal(&c->pending);
        feed(c, rest, n);
        free(rest);
        return;
    }
    if (c->closing_after_write && c->tcp.write_queue_size == 0)
        nt_close(c);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char slab[65536];
    (void)h;
    (void)suggested;
    *buf = uv_buf_init(slab, sizeof(slab));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    nt_conn *c = (nt_conn *)s;
    if (n < 0) {
        nt_close(c);
        return;
    }
    if (n > 0)
        feed(c, buf->base, (size_t)n);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    nt_conn *c = gr_calloc(1, sizeof(*c));
    uv_tcp_init(loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    llhttp_init(&c->parser, HTTP_REQUEST, &settings);
    c->parser.data = c;
    uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
}

/* Accessors for ws.c, which sees the connection only through notes.h. */
int nt_ws__kind(nt_conn *c);
gr_buf *nt_ws__in(nt_conn *c);
gr_buf *nt_ws__message(nt_conn *c);
int *nt_ws__opcode(nt_conn *c);
void nt_ws__set_kind(nt_conn *c, int kind);

int nt_ws__kind(nt_conn *c)
{
    return c->ws_kind;
}

gr_buf *nt_ws__in(nt_conn *c)
{
    return &c->ws_in;
}

gr_buf *nt_ws__message(nt_conn *c)
{
    return &c->ws_message;
}

int *nt_ws__opcode(nt_conn *c)
{
    return &c->ws_opcode;
}

void nt_ws__set_kind(nt_conn *c, int kind)
{
    c->ws_kind = kind;
}

void nt_live_add(nt_conn *c)
{
    c->live_next = live_conns;
    live_conns = c;
}

int main(int argc, char **argv)
{
    long port = 8000;
    gr_error_t err = NULL;
    if (argc > 1 && gr_parse_long(argv[1], 1, 65535, &port, &err) < 0)
        gr_die("PORT: %s", gr_error_msg(err));
    const char *dir = getenv("NOTES_DIR");
    notes_dir = gr_strdup(dir && *dir ? dir : "/var");
    load_note();
    signal(SIGPIPE, SIG_IGN);

    llhttp_settings_init(&settings);
    settings.on_message_begin = on_message_begin;
    settings.on_url = on_url;
    settings.on_header_field = on_header_field;
    settings.on_header_field_complete = on_header_field_complete;
    settings.on_header_value = on_header_value;
    settings.on_header_value_complete = on_header_value_complete;
    settings.on_headers_complete = on_headers_complete;
    settings.on_body = on_body;
    settings.on_message_complete = on_message_complete;

    loop = uv_default_loop();
    uv_tcp_t server;
    uv_tcp_init(loop, &server);
    struct sockaddr_in addr;
    uv_ip4_addr("127.0.0.1", (int)port, &addr);
    int r = uv_tcp_bind(&server, (const struct sockaddr *)&addr, 0);
    if (r == 0)
        r = uv_listen((uv_stream_t *)&server, 128, on_connection);
    if (r != 0)
        gr_die("listen on 127.0.0.1:%ld: %s", port, uv_strerror(r));
    fprintf(stderr, "notes: serving %s/note.txt on 127.0.0.1:%ld\n", notes_dir, port);
    return uv_run(loop, UV_RUN_DEFAULT);
}
