/* Parsing and validation of the daemon's options; see config.h. */
#include "config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <strings.h>
#include <sys/stat.h>

void cfg_init(cfg *c)
{
    memset(c, 0, sizeof(*c));
    gr_error_t err = NULL;
    /* The defaults are valid by construction; a failure here is a bug. */
    if (cfg_set(c, "data", CFG_DEFAULT_DATA, &err) < 0 ||
        cfg_set(c, "listen", CFG_DEFAULT_LISTEN, &err) < 0 ||
        cfg_set(c, "base-url", CFG_DEFAULT_BASE_URL, &err) < 0 ||
        cfg_set(c, "wildcard-host", CFG_DEFAULT_WILDCARD, &err) < 0 ||
        cfg_set(c, "web-dir", "web/dist", &err) < 0)
        abort();
    c->log_level = GR_LOG_INFO;
    c->grain_idle_seconds = CFG_DEFAULT_GRAIN_IDLE;
    c->grain_memory = CFG_DEFAULT_GRAIN_MEMORY;
    c->grain_pids = CFG_DEFAULT_GRAIN_PIDS;
    c->connections_per_address = CFG_DEFAULT_PER_ADDRESS;
}

void cfg_release(cfg *c)
{
    free(c->data_dir);
    free(c->listen_host);
    free(c->base_url);
    free(c->base_host);
    free(c->wildcard_host);
    free(c->wildcard_suffix);
    free(c->web_dir);
    free(c->config_file);
    free(c->bridge_path);
    memset(c, 0, sizeof(*c));
}

static void replace(char **slot, char *value)
{
    free(*slot);
    *slot = value;
}

/* A host name in a URL or Host header: letters, digits, '-' and '.', or an
 * IPv6 literal in brackets. */
static bool valid_hostname(const char *h, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    if (h[0] == '[') {
        if (len < 3 || h[len - 1] != ']')
            return false;
        char tmp[64];
        if (len - 2 >= sizeof(tmp))
            return false;
        memcpy(tmp, h + 1, len - 2);
        tmp[len - 2] = '\0';
        struct in6_addr a;
        return inet_pton(AF_INET6, tmp, &a) == 1;
    }
    for (size_t i = 0; i < len; i++) {
        char ch = h[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '-' || ch == '.';
        if (!ok)
            return false;
    }
    return h[0] != '.' && h[0] != '-';
}

/* Checks "host[:port]" and returns it lowercase, or NULL. */
static char *check_authority(const char *auth, gr_error_t *err, const char *what)
{
    const char *colon = NULL;
    if (auth[0] == '[') {
        const char *close = strchr(auth, ']');
        if (close && close[1] == ':')
            colon = close + 1;
        else if (close && close[1] != '\0')
            close = NULL;
        if (close == NULL) {
            gr_make_error(err, 0, "%s: bad IPv6 host in '%s'", what, auth);
            return NULL;
        }
    } else {
        colon = strchr(auth, ':');
    }
    size_t hostlen = colon ? (size_t)(colon - auth) : strlen(auth);
    if (!valid_hostname(auth, hostlen)) {
        gr_make_error(err, 0, "%s: '%.*s' is not a valid host name", what, (int)hostlen, auth);
        return NULL;
    }
    if (colon) {
        long port;
        if (gr_parse_long(colon + 1, 1, 65535, &port, err) < 0) {
            gr_error_prefix(err, "%s: bad port", what);
            return NULL;
        }
    }
    char *out = gr_strdup(auth);
    gr_ascii_lower(out);
    return out;
}

static int set_listen(cfg *c, const char *value, gr_error_t *err)
{
    const char *colon = strrchr(value, ':');
    if (colon == NULL)
        return gr_make_error(err, 0, "--listen: expected HOST:PORT, got '%s'", value);
    const char *h = value;
    size_t hl = (size_t)(colon - value);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    char host[64];
    if (hl == 0 || hl >= sizeof(host))
        return gr_make_error(err, 0, "--listen: bad address in '%s'", value);
    memcpy(host, h, hl);
    host[hl] = '\0';
    if (strcmp(host, "localhost") == 0)
        gr_strlcpy(host, "127.0.0.1", sizeof(host));
    struct in_addr a4;
    struct in6_addr a6;
    if (inet_pton(AF_INET, host, &a4) != 1 && inet_pton(AF_INET6, host, &a6) != 1)
        return gr_make_error(err, 0, "--listen: '%s' is not a numeric IPv4 or IPv6 address",
                             host);
    long port;
    if (gr_parse_long(colon + 1, 0, 65535, &port, err) < 0)
        return gr_error_prefix(err, "--listen: bad port");
    replace(&c->listen_host, gr_strdup(host));
    c->listen_port = (int)port;
    return 0;
}

static int set_base_url(cfg *c, const char *value, gr_error_t *err)
{
    bool https;
    const char *rest;
    if (strncasecmp(value, "http://", 7) == 0) {
        https = false;
        rest = value + 7;
    } else if (strncasecmp(value, "https://", 8) == 0) {
        https = true;
        rest = value + 8;
    } else {
        return gr_make_error(err, 0, "--base-url: '%s' must start with http:// or https://",
                             value);
    }
    _cleanup_free_ char *auth = gr_strdup(rest);
    size_t len = strlen(auth);
    if (len > 0 && auth[len - 1] == '/')
        auth[--len] = '\0';
    if (strchr(auth, '/') || strchr(auth, '?') || strchr(auth, '#') || strchr(auth, '@'))
        return gr_make_error(err, 0, "--base-url: '%s' must be scheme://host[:port] with no path",
                             value);
    char *host = check_authority(auth, err, "--base-url");
    if (host == NULL)
        return -1;
    replace(&c->base_host, host);
    replace(&c->base_url, gr_asprintf("%s://%s", https ? "https" : "http", host));
    c->base_https = https;
    return 0;
}

static int set_wildcard(cfg *c, const char *value, gr_error_t *err)
{
    if (!gr_starts_with(value, "*.") || value[2] == '\0')
        return gr_make_error(err, 0,
                             "--wildcard-host: '%s' must look like *.example.com[:port]", value);
    char *host = check_authority(value + 2, err, "--wildcard-host");
    if (host == NULL)
        return -1;
    replace(&c->wildcard_suffix, gr_asprintf(".%s", host));
    replace(&c->wildcard_host, gr_asprintf("*.%s", host));
    free(host);
    return 0;
}

static int set_int(int *slot, const char *name, const char *value, long min, long max,
                   gr_error_t *err)
{
    long v;
    if (gr_parse_long(value, min, max, &v, err) < 0)
        return gr_error_prefix(err, "--%s", name);
    *slot = (int)v;
    return 0;
}

/* A size in bytes, with an optional K, M, G or T (powers of 1024, either
 * case): 0 (none), or from 1 MiB to 1 TiB. */
static int set_size(uint64_t *slot, const char *name, const char *value, gr_error_t *err)
{
    size_t len = strlen(value);
    unsigned shift = 0;
    const char *units = "kmgt",
               *u = len > 0 ? strchr(units, tolower((unsigned char)value[len - 1])) : NULL;
    if (u && *u) {
        shift = 10 * (unsigned)(u - units + 1);
        len--;
    }
    _cleanup_free_ char *digits = gr_strndup(value, len);
    long v;
    gr_error_t why = NULL;
    if (gr_parse_long(digits, 0, (1l << 40) >> shift, &v, &why) < 0) {
        gr_error_release(&why);
        return gr_make_error(err, 0,
                             "--%s: '%s' is not a size (bytes, or a number with K, M, G or T, "
                             "up to 1T)",
                             name, value);
    }
    uint64_t bytes = (uint64_t)v << shift;
    if (bytes != 0 && bytes < (1u << 20))
        return gr_make_error(err, 0, "--%s: '%s' is below 1M (0 turns the limit off)", name, value);
    *slot = bytes;
    return 0;
}

static int set_bool(bool *out, const char *name, const char *value, gr_error_t *err)
{
    static const char *const yes[] = {"on", "yes", "true", "1"}, *const no[] = {"off", "no", "false", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(value, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(value, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    return gr_make_error(err, 0, "--%s: '%s' is not on or off", name, value);
}

int cfg_set(cfg *c, const char *name, const char *value, gr_error_t *err)
{
    if (strcmp(name, "data") == 0) {
        if (*value == '\0')
            return gr_make_error(err, 0, "--data: the data directory must not be empty");
        replace(&c->data_dir, gr_strdup(value));
        return 0;
    }
    if (strcmp(name, "web-dir") == 0) {
        if (*value == '\0')
            return gr_make_error(err, 0, "--web-dir: must not be empty");
        replace(&c->web_dir, gr_strdup(value));
        return 0;
    }
    if (strcmp(name, "listen") == 0)
        return set_listen(c, value, err);
    if (strcmp(name, "base-url") == 0)
        return set_base_url(c, value, err);
    if (strcmp(name, "wildcard-host") == 0)
        return set_wildcard(c, value, err);
    if (strcmp(name, "grain-idle-seconds") == 0)
        return set_int(&c->grain_idle_seconds, name, value, 1, 86400, err);
    if (strcmp(name, "grain-memory") == 0)
        return set_size(&c->grain_memory, name, value, err);
    if (strcmp(name, "grain-pids") == 0) {
        int pids = 0;
        if (set_int(&pids, name, value, 0, 1 << 22, err) < 0)
            return -1;
        c->grain_pids = (uint64_t)pids;
        return 0;
    }
    if (strcmp(name, "grain-loopback-redirect") == 0)
        return set_bool(&c->grain_loopback_redirect, name, value, err);
    if (strcmp(name, "connections-per-address") == 0)
        return set_int(&c->connections_per_address, name, value, 0, 1000000, err);
    if (strcmp(name, "bridge") == 0) {
        if (*value != '/')
            return gr_make_error(err, 0, "--bridge: '%s' must be an absolute path", value);
        replace(&c->bridge_path, gr_strdup(value));
        return 0;
    }
    if (strcmp(name, "log-level") == 0) {
        if (gr_log_parse_level(value, &c->log_level) < 0)
            return gr_make_error(err, 0,
                                 "--log-level: '%s' is not one of debug, info, warn, error", value);
        return 0;
    }
    return gr_make_error(err, 0, "unknown option '%s'", name);
}

int cfg_load_file(cfg *c, const char *path, gr_error_t *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len;
    if (gr_read_file(path, 1 << 20, &text, &len, err) < 0)
        return gr_error_prefix(err, "configuration");
    if (strlen(text) != len)
        return gr_make_error(err, 0, "%s: contains a NUL byte", path);
    int lineno = 0;
    for (char *line = text, *next; line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        lineno++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = gr_strstrip(line);
        if (*s == '\0')
            continue;
        char *eq = strchr(s, '=');
        if (eq == NULL)
            return gr_make_error(err, 0, "%s:%d: expected 'name = value'", path, lineno);
        *eq = '\0';
        char *name = gr_strstrip(s);
        char *value = gr_strstrip(eq + 1);
        if (cfg_set(c, name, value, err) < 0)
            return gr_error_prefix(err, "%s:%d", path, lineno);
    }
    replace(&c->config_file, gr_strdup(path));
    return 0;
}

int cfg_parse_args(cfg *c, int argc, char **argv, gr_error_t *err)
{
    const char *conf = NULL;
    bool explicit_conf = false;
    /* First pass: find --config, so the file sits under the flags. */
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0) {
            if (i + 1 >= argc)
                return gr_make_error(err, 0, "--config needs a file name");
            conf = argv[++i];
            explicit_conf = true;
        } else if (gr_starts_with(argv[i], "--config=")) {
            conf = argv[i] + 9;
            explicit_conf = true;
        }
    }
    if (!explicit_conf && access(CFG_DEFAULT_CONF, F_OK) == 0)
        conf = CFG_DEFAULT_CONF;
    if (conf && cfg_load_file(c, conf, err) < 0)
        return -1;

    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if (!gr_starts_with(arg, "--") || arg[2] == '\0')
            return gr_make_error(err, 0, "unexpected argument '%s'", arg);
        _cleanup_free_ char *name = NULL;
        const char *value;
        const char *eq = strchr(arg, '=');
        if (eq) {
            name = gr_strndup(arg + 2, (size_t)(eq - arg - 2));
            value = eq + 1;
        } else {
            name = gr_strdup(arg + 2);
            if (i + 1 >= argc)
                return gr_make_error(err, 0, "--%s needs a value", name);
            value = argv[++i];
        }
        if (strcmp(name, "config") == 0)
            continue;
        if (cfg_set(c, name, value, err) < 0) {
            if (strncmp(gr_error_msg(*err), "unknown option", 14) == 0) {
                gr_error_release(err);
                return gr_make_error(err, 0, "unknown flag --%s (see granary run --help)", name);
            }
            return -1;
        }
    }
    return 0;
}

const char *cfg_usage(void)
{
    return "  --data DIR             data directory (default " CFG_DEFAULT_DATA ")\n"
           "  --listen HOST:PORT     address to listen on (default " CFG_DEFAULT_LISTEN ")\n"
           "  --base-url URL         URL of the shell (default " CFG_DEFAULT_BASE_URL ")\n"
           "  --wildcard-host PAT    host pattern for grain origins (default " CFG_DEFAULT_WILDCARD
           ")\n"
           "  --web-dir DIR          the built web shell (default web/dist)\n"
           "  --log-level LEVEL      debug, info, warn or error (default info)\n"
           "  --grain-idle-seconds N stop a grain unused for N seconds (default 120)\n"
           "  --connections-per-address N\n"
           "                         connections one client address may hold open (default\n"
           "                         256; 0 for no limit; 127.0.0.1 and ::1 have none)\n"
           "  --grain-memory SIZE    memory limit per grain, and for its socket buffers\n"
           "                         (default 1G; K, M, G, T; 0 for none; cgroup hosts only)\n"
           "  --grain-pids N         processes and threads per grain (default 1024; 0 for\n"
           "                         none; cgroup hosts only)\n"
           "  --grain-loopback-redirect on|off\n"
           "                         let grains' loopback TCP skip the TCP/IP stack (BPF\n"
           "                         sockmap; faster HTTP apps, more kernel code reachable\n"
           "                         from grains; default off; docs/sandbox.md)\n"
           "  --bridge FILE          granary-http-bridge to bind into grains (default: the\n"
           "                         one built beside this granary)\n"
           "  --config FILE          read 'name = value' settings from FILE first\n"
           "                         (default ./" CFG_DEFAULT_CONF " when it exists)\n";
}
