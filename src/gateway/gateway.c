/* The gateway's HTTP server: listener, host routing, the health endpoint and
 * the static shell. Grain origins are routed here too; the WebSession path
 * to grains is in grain_host.c. */
#include "gateway_internal.h"
#include "websession.h"

#include <arpa/inet.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

typedef struct {
    h2o_handler_t super;
    gw_server *srv;
} gw_handler;

#define MAX_HOST 255

gw_host_kind gw_classify_host(const cfg *c, const char *host, size_t len, char *label,
                              size_t label_size)
{
    char h[MAX_HOST + 1];
    if (len == 0 || len > MAX_HOST)
        return GW_HOST_UNKNOWN;
    memcpy(h, host, len);
    h[len] = '\0';
    if (memchr(h, '\0', len))
        return GW_HOST_UNKNOWN;
    gr_ascii_lower(h);
    if (strcmp(h, c->base_host) == 0)
        return GW_HOST_SHELL;
    size_t sl = strlen(c->wildcard_suffix);
    if (len > sl && strcmp(h + len - sl, c->wildcard_suffix) == 0) {
        size_t ll = len - sl;
        /* Exactly one label: a.b.WILDCARD is not a grain origin. */
        if (memchr(h, '.', ll) || ll >= label_size)
            return GW_HOST_UNKNOWN;
        for (size_t i = 0; i < ll; i++) {
            char ch = h[i];
            if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-'))
                return GW_HOST_UNKNOWN;
        }
        memcpy(label, h, ll);
        label[ll] = '\0';
        return GW_HOST_WILDCARD;
    }
    return GW_HOST_UNKNOWN;
}

/* A path is servable when every segment is a plain name: no empty, "." or
 * ".." segments, no dotfiles, no backslashes or control characters. */
static bool safe_static_path(const char *p, size_t len)
{
    if (len == 0 || p[0] != '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\\')
            return false;
        if (ch == '/' && i + 1 < len && (p[i + 1] == '.' || p[i + 1] == '/'))
            return false;
    }
    return true;
}

static const char *mime_for(gw_server *srv, const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot == NULL)
        return "application/octet-stream";
    h2o_mimemap_type_t *t = h2o_mimemap_get_type_by_extension(srv->mimemap,
                                                              h2o_iovec_init(dot + 1, strlen(dot + 1)));
    if (t == NULL || t->type != H2O_MIMEMAP_TYPE_MIMETYPE)
        return "application/octet-stream";
    return t->data.mimetype.base;
}

static int send_file(gw_server *srv, h2o_req_t *req, const char *file, bool immutable)
{
    gw__add_common_headers(req);
    gw__add_header_str(req, "content-security-policy", srv->csp_shell);
    gw__add_header(req, H2O_TOKEN_CACHE_CONTROL,
               immutable ? "public, max-age=31536000, immutable" : "no-cache");
    const char *type = mime_for(srv, file);
    if (h2o_file_send(req, 200, "OK", file, h2o_iovec_init(type, strlen(type)), 0) != 0)
        return gw__send_error_page(srv, req, 404, "Not Found", "No such page.", "", 0);
    return 0;
}

static int route_static(gw_server *srv, h2o_req_t *req, const char *path, size_t len)
{
    if (!gw__method_is(req, "GET") && !gw__method_is(req, "HEAD"))
        return gw__send_error_page(srv, req, 405, "Method Not Allowed",
                               "The shell's pages are read with GET.", "", 0);
    _cleanup_free_ char *index = gr_asprintf("%s/index.html", srv->cfg->web_dir);
    struct stat st;
    if (stat(index, &st) < 0 || !S_ISREG(st.st_mode))
        return gw__send_error_page(srv, req, 503, "Service Unavailable",
                               "The web shell has not been built (run make).", index,
                               strlen(index));
    if (len == 1)
        return send_file(srv, req, index, false);
    if (!safe_static_path(path, len) || len > 1024)
        return gw__send_error_page(srv, req, 404, "Not Found", "No such page:", path, len);
    _cleanup_free_ char *file = gr_asprintf("%s%.*s", srv->cfg->web_dir, (int)len, path);
    if (stat(file, &st) == 0 && S_ISREG(st.st_mode))
        return send_file(srv, req, file, gr_starts_with(path, "/assets/"));
    /* A path without an extension is a route of the single-page shell. */
    const char *last = memrchr(path, '/', len);
    if (memchr(last, '.', len - (size_t)(last - path)) == NULL)
        return send_file(srv, req, index, false);
    return gw__send_error_page(srv, req, 404, "Not Found", "No such file:", path, len);
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    gw_server *srv = ((gw_handler *)self)->srv;
    h2o_iovec_t host = req->input.authority;
    char label[64];
    const char *path = req->path_normalized.base;
    size_t len = req->path_normalized.len;
    switch (gw_classify_host(srv->cfg, host.base, host.len, label, sizeof(label))) {
    case GW_HOST_SHELL:
        if (len >= 5 && memcmp(path, "/api/", 5) == 0)
            return gw__route_api(srv, req, path, len);
        if (h2o_memis(path, len, H2O_STRLIT("/api")))
            return gw__send_json_error(req, 404, "Not Found", "no such API endpoint");
        return route_static(srv, req, path, len);
    case GW_HOST_WILDCARD:
        return gw__route_grain(srv, req, label);
    case GW_HOST_UNKNOWN:
    default:
        return gw__send_error_page(srv, req, 404, "Not Found",
                               "This Granary server has nothing at the host:", host.base,
                               host.len > MAX_HOST ? MAX_HOST : host.len);
    }
}

/* A client connection: the uv handle (whose data field h2o owns) and the
 * server, so that closing it can be counted, and what the reading clock
 * below has seen of it. */
struct gw_conn {
    uv_tcp_t tcp;
    gw_server *srv;
    gw_conn *prev, *next; /* the server's list of open connections */
    h2o_socket_t *sock;   /* h2o's, valid while the handle is not closing */
    size_t bytes_seen;    /* sock->bytes_read at the last look */
    size_t input_seen;    /* sock->input->size at the last look */
    size_t written_seen;  /* sock->bytes_written at the last look */
    size_t scanned;       /* how much of the head was searched for its end */
    uint64_t last_byte_ms;  /* when bytes last came (or h2o began to read) */
    uint64_t head_start_ms; /* when the request being read began */
    bool reading;   /* h2o was reading a request at the last look */
    bool head_done; /* that request's head has all come */
    bool vetted;    /* its sender was asked about, for a body past 1 MiB */
    bool cut;       /* closed by the clock */
    struct gw_peer *peer; /* the address it came from, when counted */
};

/* ---- connections per address ---------------------------------------------------
 *
 * Each open connection holds a descriptor, and the daemon's descriptors are
 * shared with every grain it runs: one client opening thousands would starve
 * everyone. So one address (an IPv4 address, or an IPv6 /64, which is one
 * site's) may hold at most --connections-per-address (256) connections, and
 * all clients together at most three quarters of the daemon's descriptors
 * (the rest, at least 256, are the grains' and the store's). More are closed
 * as they come, and the log says so (the first 16, then every 1000th). A
 * browser opens about six per origin, and each grain view is an origin of
 * its own. 127.0.0.1 and ::1 are not counted against an address's share: a
 * proxy in front of Granary on the same machine brings every user from
 * there. */
typedef struct gw_peer {
    char key[INET6_ADDRSTRLEN + 8];
    size_t conns;
} gw_peer;

/* The counted key of a connection's peer, or false for one not counted. */
static bool peer_key(uv_tcp_t *tcp, char *key, size_t size)
{
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0)
        return false;
    unsigned char a[16];
    if (ss.ss_family == AF_INET) {
        memcpy(a, &((struct sockaddr_in *)&ss)->sin_addr, 4);
    } else if (ss.ss_family == AF_INET6) {
        const struct in6_addr *v6 = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(v6))
            return false;
        if (!IN6_IS_ADDR_V4MAPPED(v6)) {
            memcpy(a, v6->s6_addr, 8); /* the /64 */
            memset(a + 8, 0, 8);
            inet_ntop(AF_INET6, a, key, (socklen_t)size);
            return true;
        }
        memcpy(a, v6->s6_addr + 12, 4);
    } else {
        return false;
    }
    if (a[0] == 127 && a[1] == 0 && a[2] == 0 && a[3] == 1)
        return false;
    inet_ntop(AF_INET, a, key, (socklen_t)size);
    return true;
}

/* Counts one more of a kind of refusal; whether to log it: the first 16,
 * then every 1000th, so that a flood of them cannot flood the log. */
static bool worth_logging(size_t *count)
{
    ++*count;
    return *count <= 16 || *count % 1000 == 0;
}

/* Counts conn against its address: false when there is no room for it. */
static bool peer_admit(gw_server *srv, gw_conn *conn)
{
    if (srv->open_connections > srv->max_connections) {
        if (worth_logging(&srv->refusals))
            gr_warn("gateway: %zu connections are open, the most the daemon's descriptors "
                    "allow; another was closed (%zu such so far)",
                    srv->max_connections, srv->refusals);
        return false;
    }
    size_t most = (size_t)srv->cfg->connections_per_address;
    char key[sizeof(((gw_peer *)0)->key)];
    if (most == 0 || !peer_key(&conn->tcp, key, sizeof key))
        return true;
    gw_peer *p = gr_index_find(&srv->peers, key, NULL);
    if (p && p->conns >= most) {
        if (worth_logging(&srv->refusals))
            gr_warn("gateway: %s already has %zu connections open; another was closed "
                    "(%zu such so far; see --connections-per-address)",
                    key, most, srv->refusals);
        return false;
    }
    if (!p) {
        p = gr_calloc(1, sizeof(*p));
        gr_strlcpy(p->key, key, sizeof p->key);
        gr_index_add(&srv->peers, p->key, p);
    }
    p->conns++;
    conn->peer = p;
    return true;
}

static void peer_leave(gw_server *srv, gw_conn *conn)
{
    gw_peer *p = conn->peer;
    if (!p || --p->conns)
        return;
    gr_index_remove(&srv->peers, p->key, p);
    free(p);
}

/* h2o 2.2 reads a request's whole body before any handler sees the request,
 * so bodies of up to max_request_entity_size (1 GiB) are held for clients
 * not yet known to be anyone. h2o keeps a body in memory up to 32 MiB, then
 * in a deleted file under /tmp (often a tmpfs, which is memory too). Here
 * the memory part is 1 MiB and the files are under the data directory: a
 * crowd of unfinished uploads costs disk space the pages of which the
 * kernel can write back, not heap the daemon would be killed for. */
#define GW_BODY_IN_MEMORY (1024 * 1024)

static void set_body_template(gw_server *srv, bool disk_short);

static int hold_bodies_on_disk(gw_server *srv, gr_error_t *err)
{
    char *dir = srv->body_dir = gr_asprintf("%s/tmp", srv->cfg->data_dir);
    if (gr_mkdir_p(dir, 0700, err) < 0)
        return gr_error_prefix(err, "request bodies");
    h2o_buffer_mmap_settings_t *m = &h2o_socket_buffer_mmap_settings;
    if (strlen(dir) + sizeof "/disk-full/body-XXXXXX" > sizeof m->fn_template)
        return gr_make_error(err, 0, "request bodies: the data directory's path is too long");
    set_body_template(srv, false);
    m->threshold = GW_BODY_IN_MEMORY;
    return 0;
}

/* h2o allocates a body's file as its buffer doubles (fallocate), so a few
 * large uploads could take the disk the store and the grains write to, for
 * as long as their clients keep sending. So the reading clock keeps a tenth
 * of that disk (at most 1 GiB) free. Below that:
 * - the upload holding the most is answered 507 and cut, each second until
 *   there is room again;
 * - h2o is given a file name in a directory that does not exist, so a new
 *   body past 1 MiB is refused at once (h2o 2.2 leaks the descriptor of a
 *   file it made but could not allocate; one it cannot make costs nothing). */
#define GW_DISK_RESERVE_MAX (1024ull * 1024 * 1024)


static void set_body_template(gw_server *srv, bool disk_short)
{
    h2o_buffer_mmap_settings_t *m = &h2o_socket_buffer_mmap_settings;
    /* Both fit: hold_bodies_on_disk checked the longer. */
    snprintf(m->fn_template, sizeof m->fn_template, "%s/%sbody-XXXXXX", srv->body_dir,
             disk_short ? "disk-full/" : "");
}

/* ---- who may send a large body ------------------------------------------------
 *
 * A body past 1 MiB is taken only from someone known: on a grain origin,
 * a request carrying that origin's cookie; on the shell, the package upload
 * (POST /api/apps) from an administrator's session. The clock looks once,
 * at its first look after such a body has begun to come, at the head h2o
 * holds, parsed with the parser h2o itself ran on those bytes (libh2o's
 * picohttpparser, whose header Debian does not ship: its two declarations
 * are below), so that the two cannot read different heads. Anyone else's
 * upload is answered 403 and cut, instead of being held whole, up to 1 GiB,
 * until a handler could refuse it. A body that arrives whole between two
 * looks is not held for long, and its handler answers. */
struct phr_header {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
};
int phr_parse_request(const char *buf, size_t len, const char **method, size_t *method_len,
                      const char **path, size_t *path_len, int *minor_version,
                      struct phr_header *headers, size_t *num_headers, size_t last_len);

static bool body_welcome(gw_server *srv, const h2o_buffer_t *in, bool *shell)
{
    *shell = false;
    const char *method, *path;
    size_t method_len, path_len, nh = H2O_MAX_HEADERS;
    int minor;
    struct phr_header hs[H2O_MAX_HEADERS];
    size_t n = in->size < H2O_MAX_REQLEN ? in->size : H2O_MAX_REQLEN;
    if (phr_parse_request(in->bytes, n, &method, &method_len, &path, &path_len, &minor, hs, &nh,
                          0) <= 0)
        return false; /* h2o would not have read this far */
    const struct phr_header *host = NULL;
    h2o_iovec_t cookies[GW_MAX_COOKIE_HEADERS];
    size_t nc = 0;
    for (size_t i = 0; i < nh; i++) {
        if (hs[i].name_len == 4 && strncasecmp(hs[i].name, "host", 4) == 0) {
            host = &hs[i]; /* the last one, as h2o takes */
        } else if (hs[i].name_len == 6 && strncasecmp(hs[i].name, "cookie", 6) == 0) {
            if (nc == GW_MAX_COOKIE_HEADERS)
                return false;
            cookies[nc++] = h2o_iovec_init(hs[i].value, hs[i].value_len);
        }
    }
    if (!host)
        return false; /* nothing here takes a body without one */
    char label[64];
    switch (gw_classify_host(srv->cfg, host->value, host->value_len, label, sizeof label)) {
    case GW_HOST_WILDCARD:
        return gw__grain_cookie_ok(srv, label, cookies, nc);
    case GW_HOST_SHELL: {
        *shell = true;
        const char *q = memchr(path, '?', path_len);
        if (!h2o_memis(method, method_len, H2O_STRLIT("POST")) ||
            !h2o_memis(path, q ? (size_t)(q - path) : path_len, H2O_STRLIT("/api/apps")))
            return false;
        gw_session s;
        gr_error_t err = NULL;
        int r = gw__session_find_in(srv, cookies, nc, &s, &err);
        if (r < 0) { /* the store failed: the handler will say so */
            gr_error_release(&err);
            return true;
        }
        bool admin = r > 0 && s.account.is_admin;
        if (r > 0)
            gw__session_release(&s);
        return admin;
    }
    default:
        return false;
    }
}

/* ---- the reading clock -------------------------------------------------------
 *
 * h2o 2.2 gives the reading of a request one timer: the whole request, body
 * included, must arrive within it, and the same timer ends idle keep-alive
 * connections. At its default of 10 s, any upload longer than 10 s (a
 * package over a home line) was cut without a word. So h2o's timer is now an
 * hour (the most one request may take to arrive), and this clock, once a
 * second, looks at each connection that h2o is reading a request from:
 * - idle between requests for 10 s: closed (as h2o did);
 * - a request head (request line and headers) not all there 10 s after its
 *   first byte: closed (as h2o did; a client trickling a head keeps a
 *   connection for nothing);
 * - a body from which no byte came for 30 s: closed, and logged.
 * A connection h2o is not reading from (a request being answered, a
 * WebSocket) is not the clock's business. A connection is closed the way
 * h2o closes one whose client went away: its read callback is told so. */
#define GW_REQUEST_ARRIVAL_MS (3600 * 1000)
#define GW_IDLE_MS (10 * 1000)
#define GW_HEAD_MS (10 * 1000)
#define GW_BODY_STALL_MS (30 * 1000)

/* Whether the head has ended, scanning only what came since the last look
 * (and the three bytes before, where an end may have begun). h2o itself
 * refuses a head longer than H2O_MAX_REQLEN. */
static bool head_complete(gw_conn *c, const h2o_buffer_t *in)
{
    size_t n = in->size < H2O_MAX_REQLEN ? in->size : H2O_MAX_REQLEN;
    size_t from = c->scanned > 3 ? c->scanned - 3 : 0;
    c->scanned = n;
    if (from >= n)
        return false;
    return memmem(in->bytes + from, n - from, "\n\r\n", 3) ||
           memmem(in->bytes + from, n - from, "\n\n", 2);
}

static void cut(gw_conn *c)
{
    c->cut = true;
    c->sock->_cb.read(c->sock, h2o_socket_error_closed);
}

/* Answers a request h2o is still reading (so nothing of h2o's is in the
 * socket's way), then cuts it. Best effort: a client still sending may see
 * the connection reset before it reads the answer. */
static void answer_and_cut(gw_conn *c, const char *status, const char *type, const char *body)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0) {
        gr_buf b = GR_BUF_INIT;
        gr_buf_printf(&b, "HTTP/1.1 %s\r\nConnection: close\r\nContent-Type: %s\r\n"
                          "Content-Length: %zu\r\n\r\n%s", status, type, strlen(body), body);
        (void)!write(fd, b.data, b.len);
        shutdown(fd, SHUT_WR);
        gr_buf_release(&b);
    }
    cut(c);
}

static void look_at(gw_server *srv, gw_conn *c, uint64_t now)
{
    h2o_socket_t *sock = c->sock;
    if (!sock || c->cut || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    if (!srv->h2o_reader || sock->_cb.read != srv->h2o_reader) {
        c->reading = false;
        return;
    }
    size_t have = sock->input->size;
    /* A new request: h2o began to read (a new connection, or the next
     * request after an answer that took a while), let go of an answered
     * request's bytes, or wrote something (an answer, or a 100 Continue)
     * since the last look. */
    if (!c->reading || have < c->input_seen || sock->bytes_written != c->written_seen) {
        if (!c->reading)
            c->last_byte_ms = now;
        c->reading = true;
        c->head_done = false;
        c->vetted = false;
        c->scanned = 0;
        c->head_start_ms = now;
    }
    if (sock->bytes_read != c->bytes_seen) {
        c->bytes_seen = sock->bytes_read;
        c->last_byte_ms = now;
    }
    c->written_seen = sock->bytes_written;
    c->input_seen = have;
    if (have == 0) {
        c->head_done = false;
        c->scanned = 0;
        c->head_start_ms = now;
        if (now - c->last_byte_ms >= GW_IDLE_MS)
            cut(c);
        return;
    }
    if (!c->head_done && head_complete(c, sock->input))
        c->head_done = true;
    if (!c->head_done) {
        if (now - c->head_start_ms >= GW_HEAD_MS)
            cut(c);
        return;
    }
    if (!c->vetted && have > GW_BODY_IN_MEMORY) {
        c->vetted = true;
        bool shell;
        if (!body_welcome(srv, sock->input, &shell)) {
            if (worth_logging(&srv->unwelcome_bodies))
                gr_info("gateway: an upload past 1 MiB from nobody signed in was refused (%zu "
                        "such so far)", srv->unwelcome_bodies);
            /* JSON on the shell, as its API answers; text elsewhere. */
            if (shell)
                answer_and_cut(c, "403 Forbidden", "application/json",
                               "{\"error\": \"uploads past 1 MiB are taken only from an "
                               "administrator installing an app\"}");
            else
                answer_and_cut(c, "403 Forbidden", "text/plain",
                               "Uploads past 1 MiB are taken only from signed-in users: on a "
                               "grain's page, or an administrator installing an app.\n");
            return;
        }
    }
    if (now - c->last_byte_ms >= GW_BODY_STALL_MS) {
        if (worth_logging(&srv->stalled_uploads))
            gr_info("gateway: an upload stopped coming for %d s after %zu bytes; its connection "
                    "is closed (%zu such so far)",
                    GW_BODY_STALL_MS / 1000, have, srv->stalled_uploads);
        cut(c);
    }
}

static void keep_disk_free(gw_server *srv, gw_conn *largest)
{
    struct statvfs fs;
    if (statvfs(srv->body_dir, &fs) < 0)
        return;
    uint64_t size = (uint64_t)fs.f_blocks * fs.f_frsize;
    uint64_t free_bytes = (uint64_t)fs.f_bavail * fs.f_frsize;
    uint64_t reserve = size / 10 < GW_DISK_RESERVE_MAX ? size / 10 : GW_DISK_RESERVE_MAX;
    bool is_short = free_bytes < reserve;
    if (is_short != srv->disk_short) {
        srv->disk_short = is_short;
        set_body_template(srv, is_short);
        if (is_short)
            gr_warn("gateway: %s has %llu MiB free, under the %llu MiB kept free: uploads past "
                    "1 MiB are refused until there is room",
                    srv->body_dir, (unsigned long long)(free_bytes >> 20),
                    (unsigned long long)(reserve >> 20));
        else
            gr_info("gateway: %s has room for uploads again", srv->body_dir);
    }
    if (!is_short || !largest)
        return;
    gr_warn("gateway: an upload of %zu MiB was refused for want of disk space",
            largest->sock->input->size >> 20);
    answer_and_cut(largest, "507 Insufficient Storage", "text/plain",
                   "The server's disk is too full to take this upload. Sorry.\n");
}

static void on_reading_clock(uv_timer_t *t)
{
    gw_server *srv = t->data;
    uint64_t now = uv_now(srv->loop);
    gw_conn *largest = NULL;
    for (gw_conn *c = srv->conns; c; c = c->next) {
        look_at(srv, c, now);
        if (c->reading && !c->cut && !uv_is_closing((uv_handle_t *)&c->tcp) &&
            c->sock->input->size > GW_BODY_IN_MEMORY &&
            (!largest || c->sock->input->size > largest->sock->input->size))
            largest = c;
    }
    keep_disk_free(srv, largest);
    if (!srv->conns)
        uv_timer_stop(t); /* an idle daemon sleeps; the next connection restarts it */
}

static void on_conn_closed(uv_handle_t *h)
{
    gw_conn *conn = (gw_conn *)h;
    gw_server *srv = conn->srv;
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        srv->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    srv->open_connections--;
    peer_leave(srv, conn);
    free(conn);
}

void gw_server_end_reads(gw_server *srv)
{
    /* EOF on the read side makes h2o close each connection through its own
     * path once it has nothing more to send, so no state is freed under it. */
    for (gw_conn *c = srv->conns; c; c = c->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, SHUT_RD);
    }
}

static void on_accept(uv_stream_t *listener, int status)
{
    gw_server *srv = listener->data;
    if (status != 0) {
        gr_warn("gateway: accept: %s", uv_strerror(status));
        return;
    }
    gw_conn *conn = gr_calloc(1, sizeof(*conn));
    conn->srv = srv;
    conn->prev = NULL;
    conn->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = conn;
    srv->conns = conn;
    uv_tcp_init(srv->loop, &conn->tcp);
    srv->open_connections++;
    if (uv_accept(listener, (uv_stream_t *)&conn->tcp) != 0 || !peer_admit(srv, conn)) {
        uv_close((uv_handle_t *)&conn->tcp, on_conn_closed);
        return;
    }
    uv_tcp_nodelay(&conn->tcp, 1);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&conn->tcp, on_conn_closed);
    conn->sock = sock;
    if (srv->clock_started && !uv_is_active((uv_handle_t *)&srv->reading_clock)) {
        /* The disk may have filled while nobody was connected: look now,
         * before this connection's body can need a file. */
        keep_disk_free(srv, NULL);
        uv_timer_start(&srv->reading_clock, on_reading_clock, 1000, 1000);
    }
    h2o_accept(&srv->accept_ctx, sock);
    /* h2o's reader of requests is its own (static) function: learn it from
     * the first connection, which h2o has just begun to read from. */
    if (!srv->h2o_reader && !uv_is_closing((uv_handle_t *)&conn->tcp))
        srv->h2o_reader = sock->_cb.read;
}

static int bind_listener(gw_server *srv, gr_error_t *err)
{
    const cfg *c = srv->cfg;
    struct sockaddr_storage addr;
    int r = strchr(c->listen_host, ':')
                ? uv_ip6_addr(c->listen_host, c->listen_port, (struct sockaddr_in6 *)&addr)
                : uv_ip4_addr(c->listen_host, c->listen_port, (struct sockaddr_in *)&addr);
    if (r != 0)
        return gr_make_error(err, 0, "listen address %s: %s", c->listen_host, uv_strerror(r));
    uv_tcp_init(srv->loop, &srv->listener);
    srv->listener.data = srv;
    srv->listening = true;
    if ((r = uv_tcp_bind(&srv->listener, (struct sockaddr *)&addr, 0)) != 0 ||
        (r = uv_listen((uv_stream_t *)&srv->listener, 511, on_accept)) != 0)
        return gr_make_error(err, 0, "listen on %s:%d: %s", c->listen_host, c->listen_port,
                             uv_strerror(r));
    struct sockaddr_storage bound;
    int blen = sizeof(bound);
    uv_tcp_getsockname(&srv->listener, (struct sockaddr *)&bound, &blen);
    srv->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                  : ((struct sockaddr_in *)&bound)->sin_port);
    return 0;
}

int gw_server_start(gw_server **out, uv_loop_t *loop, const cfg *c, st_store *st,
                    gr_error_t *err)
{
    gw_server *srv = gr_calloc(1, sizeof(*srv));
    srv->loop = loop;
    srv->cfg = c;
    srv->store = st;
    struct rlimit nofile;
    size_t fds = getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY
                     ? (size_t)nofile.rlim_cur
                     : 1024;
    size_t kept = fds / 4 > 256 ? fds / 4 : 256;
    srv->max_connections = fds > kept + 16 ? fds - kept : 16;
    srv->started_ns = gr_monotonic_ns();
    if (gw__auth_init(err) < 0) {
        free(srv);
        return -1;
    }
    if (bind_listener(srv, err) < 0) {
        gw_server_stop(srv);
        uv_run(loop, UV_RUN_NOWAIT); /* lets the listener's close complete */
        free(srv);
        return -1;
    }
    if (hold_bodies_on_disk(srv, err) < 0) {
        gw_server_stop(srv);
        uv_run(loop, UV_RUN_NOWAIT);
        free(srv);
        return -1;
    }
    srv->csp_grain = gw__ws_grain_csp(c->base_url);
    srv->csp_shell = gr_asprintf("default-src 'self'; frame-src %s://%s; frame-ancestors 'none'; "
                                 "object-src 'none'; base-uri 'none'",
                                 c->base_https ? "https" : "http", c->wildcard_host);
    srv->mimemap = h2o_mimemap_create();

    h2o_config_init(&srv->globalconf);
    /* No Server header: it would tell every client (and every app the
     * grain frames) what software to probe, and it costs each response a
     * second sprintf in h2o. */
    srv->globalconf.server_name = h2o_iovec_init("", 0);
    srv->globalconf.http1.req_timeout = GW_REQUEST_ARRIVAL_MS; /* see the reading clock */
    /* No HTTP/2 over plain TCP (h2c, or a "PRI *" preface): browsers never
     * speak it, and its connections would escape the reading clock. */
    srv->globalconf.http1.upgrade_to_http2 = 0;
    /* One catch-all host: routing by Host is ours, so unknown hosts get our
     * page rather than h2o's choice of a default host. */
    h2o_hostconf_t *host = h2o_config_register_host(&srv->globalconf,
                                                    h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    gw_handler *h = (gw_handler *)h2o_create_handler(path, sizeof(*h));
    h->super.on_req = on_req;
    h->srv = srv;

    h2o_context_init(&srv->ctx, loop, &srv->globalconf);
    /* h2o keeps 16 freed socket input buffers (8 KiB each) for reuse; with
     * more connections than that busy, every read took a fresh malloc (and
     * glibc a consolidation of its fast bins). Keep one per connection up to
     * 256 (2 MiB at most). The loop thread is this one. */
    if (h2o_socket_buffer_prototype.allocator.max < 256)
        h2o_socket_buffer_prototype.allocator.max = 256;
    srv->h2o_ready = true;
    uv_timer_init(loop, &srv->reading_clock);
    srv->reading_clock.data = srv;
    uv_timer_start(&srv->reading_clock, on_reading_clock, 1000, 1000);
    srv->clock_started = true;
    srv->accept_ctx.ctx = &srv->ctx;
    srv->accept_ctx.hosts = srv->globalconf.hosts;
    *out = srv;
    return 0;
}

static void on_sweep(uv_timer_t *t)
{
    gw_server *srv = t->data;
    /* A grain session nobody used for three idle periods is closed, as
     * Sandstorm drops sessions idle for 180 s; the browser opens a new one. */
    gw__grain_sessions_sweep(srv, 3 * (uint64_t)srv->cfg->grain_idle_seconds * 1000000000u);
    /* A call unanswered for five idle periods (10 min by default) is given
     * up: h2o does not see a browser leave while it waits, so without this
     * a grain that never answers would be held, and the browser's
     * connection kept, for good. */
    gw__grain_calls_sweep(srv, 5 * (uint64_t)srv->cfg->grain_idle_seconds * 1000000000u);
}

void gw_server_set_grains(gw_server *srv, gm_manager *m)
{
    srv->grains = m;
    if (!srv->sweep_started) {
        uv_timer_init(srv->loop, &srv->sweep_timer);
        srv->sweep_timer.data = srv;
        uint64_t every = (uint64_t)srv->cfg->grain_idle_seconds * 1000u;
        uv_timer_start(&srv->sweep_timer, on_sweep, every, every);
        srv->sweep_started = true;
    }
}

int gw_server_port(const gw_server *srv)
{
    return srv->port;
}

void gw_server_stop(gw_server *srv)
{
    if (srv->listening) {
        uv_close((uv_handle_t *)&srv->listener, NULL);
        srv->listening = false;
    }
    if (srv->h2o_ready)
        h2o_context_request_shutdown(&srv->ctx);
    if (srv->sweep_started) {
        uv_close((uv_handle_t *)&srv->sweep_timer, NULL);
        srv->sweep_started = false;
    }
    if (srv->clock_started) {
        uv_close((uv_handle_t *)&srv->reading_clock, NULL);
        srv->clock_started = false;
    }
}

size_t gw_server_open_connections(const gw_server *srv)
{
    return srv->open_connections;
}

void gw_server_free(gw_server *srv)
{
    if (srv == NULL)
        return;
    /* Connections still open hold pointers into the h2o context; then the
     * context is left to the process's exit rather than freed under them. */
    if (srv->h2o_ready && srv->open_connections == 0) {
        /* The shutdown request arms an HTTP/2 drain timer that outlives the
         * last connection; h2o asserts that no timer is pending at dispose. */
        if (h2o_timeout_is_linked(&srv->ctx.http2._graceful_shutdown_timeout))
            h2o_timeout_unlink(&srv->ctx.http2._graceful_shutdown_timeout);
        h2o_context_dispose(&srv->ctx);
        h2o_config_dispose(&srv->globalconf);
        uv_run(srv->loop, UV_RUN_NOWAIT); /* completes the handles' closes */
    }
    if (srv->mimemap)
        h2o_mem_release_shared(srv->mimemap);
    free(srv->csp_shell);
    free(srv->csp_grain);
    free(srv->body_dir);
    gw__grain_sessions_free(srv);
    gw__grain_sizes_free(srv);
    gr_index_release(&srv->peers); /* empty once every connection is closed */
    free(srv);
}
