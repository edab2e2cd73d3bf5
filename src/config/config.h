/* Granary's configuration: command-line flags, each also settable as
 * "name = value" in an optional granary.conf. Flags win over the file; the
 * file wins over the defaults. Every value is checked when it is read. */
#ifndef GRANARY_CONFIG_H
#define GRANARY_CONFIG_H

#include "util.h"

#define CFG_DEFAULT_DATA "./var"
#define CFG_DEFAULT_LISTEN "127.0.0.1:6080"
#define CFG_DEFAULT_BASE_URL "http://granary.localhost:6080"
#define CFG_DEFAULT_WILDCARD "*.granary.localhost:6080"
#define CFG_DEFAULT_CONF "granary.conf"
#define CFG_DEFAULT_GRAIN_IDLE 120
#define CFG_DEFAULT_GRAIN_MEMORY (1ull << 30) /* bytes per grain, where cgroups enforce it */
#define CFG_DEFAULT_GRAIN_PIDS 1024           /* processes and threads per grain */
#define CFG_DEFAULT_PER_ADDRESS 256

typedef struct cfg {
    char *data_dir;      /* where the store, apps and grains live */
    char *listen_host;   /* numeric address to bind, e.g. "127.0.0.1" or "::1" */
    int listen_port;     /* 0 means "any free port" (used by tests) */
    char *base_url;      /* e.g. "http://granary.localhost:6080", no trailing slash */
    bool base_https;     /* base_url is https */
    char *base_host;     /* the Host header of the shell, lowercase: "granary.localhost:6080" */
    char *wildcard_host; /* e.g. "*.granary.localhost:6080", lowercase */
    char *wildcard_suffix; /* the part after "*": ".granary.localhost:6080" */
    char *web_dir;       /* the built shell (web/dist) */
    char *config_file;   /* the file that was read, or NULL */
    gr_log_level log_level;
    int grain_idle_seconds; /* stop a grain unused this long */
    int connections_per_address; /* open at once from one address; 0: no limit */
    char *bridge_path;      /* granary-http-bridge, bound into every grain */
    bool grain_loopback_redirect; /* opt-in BPF redirect of grains' loopback TCP */
    uint64_t grain_memory;        /* per-grain memory limit in bytes; 0: none */
    uint64_t grain_pids;          /* per-grain process and thread limit; 0: none */
} cfg;

/* Fills c with the defaults. Release with cfg_release(). */
void cfg_init(cfg *c);
void cfg_release(cfg *c);

/* Sets one option by name ("data", "listen", "base-url", "wildcard-host",
 * "web-dir", "log-level") from text, validating it. Returns 0, or -1 with err
 * naming the option and the problem. */
int cfg_set(cfg *c, const char *name, const char *value, gr_error_t *err);

/* Reads "name = value" lines from path ('#' starts a comment). Returns 0, or
 * -1 with err naming the file and line. */
int cfg_load_file(cfg *c, const char *path, gr_error_t *err);

/* Parses the options of `granary run` in argv[0..argc): "--name value" or
 * "--name=value", plus "--config FILE". The file (given, or ./granary.conf
 * when it exists) is read first, then the flags on top. Returns 0, or -1 with
 * err; an unknown flag is an error. */
int cfg_parse_args(cfg *c, int argc, char **argv, gr_error_t *err);

/* The help text for the options, one per line, for --help. */
const char *cfg_usage(void);

#endif
