/* `granary run`: the daemon. Reads the configuration, takes the data
 * directory's lock, opens the store, and serves HTTP until SIGINT or SIGTERM. */
#include "commands.h"
#include "config.h"
#include "gateway.h"
#include "grains.h"
#include "store.h"
#include "util.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>

typedef struct {
    uv_loop_t *loop;
    gw_server *gw;
    uv_signal_t sigint, sigterm;
    uv_timer_t drain;
    uint64_t drain_deadline_ns;
    uint64_t end_reads_ns; /* when idle connections are told to close */
    bool reads_ended;
    int signum;
} daemon_state;

#define DRAIN_SECONDS 5

/* Waits for open connections to finish after a stop, up to a deadline. */
static void on_drain_tick(uv_timer_t *t)
{
    daemon_state *d = t->data;
    size_t open = gw_server_open_connections(d->gw);
    if (open && !d->reads_ended && gr_monotonic_ns() > d->end_reads_ns) {
        gw_server_end_reads(d->gw);
        d->reads_ended = true;
    }
    if (open == 0 || gr_monotonic_ns() > d->drain_deadline_ns) {
        if (open)
            gr_warn("closing with %zu connection(s) still open", open);
        uv_stop(d->loop);
    }
}

static void on_signal(uv_signal_t *h, int signum)
{
    daemon_state *d = h->data;
    if (d->signum) /* a second signal while stopping: leave now */
        _exit(1);
    d->signum = signum;
    gr_info("received %s, shutting down", signum == SIGINT ? "SIGINT" : "SIGTERM");
    gw_server_stop(d->gw);
    uv_close((uv_handle_t *)&d->sigint, NULL);
    uv_close((uv_handle_t *)&d->sigterm, NULL);
    /* Requests in flight get a moment to finish before idle connections are
     * closed, and the whole drain has a deadline. */
    d->end_reads_ns = gr_monotonic_ns() + 300000000ull;
    d->drain_deadline_ns = gr_monotonic_ns() + DRAIN_SECONDS * 1000000000ull;
    uv_timer_start(&d->drain, on_drain_tick, 0, 20);
}

/* The bridge built beside this granary: <exe dir>/../bridge/granary-http-bridge
 * in the build tree, or <exe dir>/granary-http-bridge when installed. */
static char *default_bridge(void)
{
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n <= 0)
        return gr_strdup("/usr/lib/granary/granary-http-bridge");
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    *slash = '\0';
    char *built = gr_asprintf("%s/../bridge/granary-http-bridge", exe);
    if (access(built, X_OK) == 0) {
        char *real = realpath(built, NULL);
        free(built);
        return real ? real : gr_asprintf("%s/../bridge/granary-http-bridge", exe);
    }
    free(built);
    return gr_asprintf("%s/granary-http-bridge", exe);
}

/* Makes the data directory usable and locks it, so two daemons never share
 * one. Returns the lock's fd, or -1 with err. */
static int prepare_data_dir(const char *dir, gr_error_t *err)
{
    if (gr_mkdir_p(dir, 0750, err) < 0)
        return gr_error_prefix(err, "cannot use data directory %s", dir);
    if (access(dir, R_OK | W_OK | X_OK) < 0)
        return gr_make_error(err, errno, "cannot use data directory %s", dir);
    _cleanup_free_ char *lock = gr_asprintf("%s/granary.lock", dir);
    _cleanup_close_ int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return gr_make_error(err, errno, "cannot use data directory %s: open %s", dir, lock);
    if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return gr_make_error(err, 0, "another granary is already running on %s", dir);
        return gr_make_error(err, errno, "lock %s", lock);
    }
    return gr_steal_fd(&fd);
}

/* Every client connection and every running grain holds descriptors; the
 * usual soft limit of 1024 would be reached by a few hundred of each. The
 * daemon takes the hard limit (up to a million). Grains get their own
 * limits in the sandbox. */
static void raise_descriptor_limit(void)
{
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) < 0)
        return;
    rlim_t want = r.rlim_max == RLIM_INFINITY || r.rlim_max > (1u << 20) ? (1u << 20) : r.rlim_max;
    if (r.rlim_cur < want) {
        r.rlim_cur = want;
        if (setrlimit(RLIMIT_NOFILE, &r) < 0)
            gr_warn("cannot raise the limit of open files: %s", strerror(errno));
    }
}

/* Runs the daemon until a signal stops it. Returns 0, or -1 with err when it
 * could not start. */
static int serve(const cfg *c, gr_error_t *err)
{
    _cleanup_close_ int lock = prepare_data_dir(c->data_dir, err);
    if (lock < 0)
        return -1;
    raise_descriptor_limit();
    _cleanup_free_ char *db = gr_asprintf("%s/granary.sqlite", c->data_dir);
    st_store *st = NULL;
    if (st_open(&st, db, err) < 0)
        return -1;

    daemon_state d = {.loop = uv_default_loop()};
    if (gw_server_start(&d.gw, d.loop, c, st, err) < 0) {
        st_close(st);
        return -1;
    }
    _cleanup_free_ char *bridge = c->bridge_path ? gr_strdup(c->bridge_path) : default_bridge();
    gm_config gconf = {.data_dir = c->data_dir,
                       .bridge_path = bridge,
                       .idle_ms = (uint64_t)c->grain_idle_seconds * 1000u,
                       .loopback_redirect = c->grain_loopback_redirect,
                       .memory_bytes = c->grain_memory,
                       .pids = c->grain_pids};
    gm_manager *grains = NULL;
    if (access(bridge, X_OK) < 0)
        gr_warn("no HTTP bridge at %s: HTTP apps will not run (pass --bridge)", bridge);
    if (gm_manager_new(&grains, d.loop, &gconf, st, err) < 0) {
        /* An option the operator chose and the host cannot honour stops the
         * start; otherwise the shell still works without grains. */
        if (c->grain_loopback_redirect) {
            gw_server_free(d.gw);
            uv_run(d.loop, UV_RUN_NOWAIT);
            st_close(st);
            return -1;
        }
        gr_warn("grains cannot run here: %s", gr_error_msg(*err));
        gr_error_release(err);
    } else {
        gw_server_set_grains(d.gw, grains);
    }
    d.sigint.data = d.sigterm.data = &d;
    uv_signal_init(d.loop, &d.sigint);
    uv_signal_init(d.loop, &d.sigterm);
    uv_signal_start(&d.sigint, on_signal, SIGINT);
    uv_signal_start(&d.sigterm, on_signal, SIGTERM);
    uv_timer_init(d.loop, &d.drain);
    d.drain.data = &d;

    gr_info("granary %s: data in %s, store at schema %d", GRANARY_VERSION, c->data_dir,
            st_latest_version());
    gr_info("Granary is running at %s/", c->base_url);
    int admins = st_account_count(st, true, err);
    if (admins < 0) {
        gw_server_free(d.gw);
        st_close(st);
        return -1;
    }
    if (admins == 0) {
        _cleanup_free_ char *link = gr_setup_link_new(st, c->base_url, err);
        if (link == NULL) {
            gw_server_free(d.gw);
            st_close(st);
            return -1;
        }
        gr_info("No administrator yet. To create one, open this link (valid 24 hours): %s",
                link);
    } else {
        gr_info("Log in at %s/login (a new admin link: granary admin setup-link)", c->base_url);
    }
    /* Last, so that whoever waits for this line has seen the ones above. */
    gr_info("listening on %s:%d", c->listen_host, gw_server_port(d.gw));
    uv_run(d.loop, UV_RUN_DEFAULT);
    gm_manager_free(grains);
    uv_close((uv_handle_t *)&d.drain, NULL);
    gw_server_free(d.gw);
    uv_run(d.loop, UV_RUN_NOWAIT);
    uv_loop_close(d.loop);
    st_close(st);
    gr_info("stopped");
    return 0;
}

static void run_usage(FILE *out)
{
    fprintf(out, "Usage: granary run [OPTIONS]\n\nServes Granary. Options (each also settable "
                 "as 'name = value' in granary.conf):\n%s",
            cfg_usage());
}

int cmd_run(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            run_usage(stdout);
            return 0;
        }
    }
    cfg c;
    cfg_init(&c);
    _cleanup_error_ gr_error_t err = NULL;
    if (cfg_parse_args(&c, argc, argv, &err) < 0) {
        fprintf(stderr, "granary: %s\n", gr_error_msg(err));
        cfg_release(&c);
        return 2;
    }
    gr_log_set_level(c.log_level);
    signal(SIGPIPE, SIG_IGN);

    int status = serve(&c, &err) < 0 ? 1 : 0;
    if (err)
        fprintf(stderr, "granary: %s\n", gr_error_msg(err));
    cfg_release(&c);
    return status;
}
