/* The grain manager: starts a grain in its sandbox on the first request that
 * needs it, keeps it while it is used, stops it when it has been idle, and
 * notices when it dies. There is no supervisor process per grain: the daemon
 * holds the grain's end of the RPC socket, a pidfd, and its log pipe, all on
 * the daemon's libuv loop. */
#ifndef GRANARY_GRAINS_H
#define GRANARY_GRAINS_H

#include <uv.h>

#include "capnp.h"
#include "store.h"
#include "util.h"

typedef struct gm_config {
    const char *data_dir;    /* apps/<packageId>/ and grains/<id>/ live here */
    const char *bridge_path; /* bound at /sandstorm-http-bridge in every grain, or NULL */
    uint64_t idle_ms;        /* stop a grain unused for this long (0: 120 s) */
    bool loopback_redirect;  /* sbx_policy_enable_loopback_redirect (opt-in) */
    uint64_t memory_bytes;   /* per-grain limits (0: none) */
    uint64_t pids;
} gm_config;

typedef struct gm_manager gm_manager;
typedef struct gm_grain gm_grain;

/* Prepares the sandbox policy (compiled once) and an empty table. Keeps
 * pointers to conf's strings and to st. Returns 0 and *out, or -1 with err. */
int gm_manager_new(gm_manager **out, uv_loop_t *loop, const gm_config *conf, st_store *st,
                   gr_error_t *err);

/* Kills every running grain and frees the manager; runs the loop briefly so
 * the handles close. Safe on NULL. */
void gm_manager_free(gm_manager *m);

/* Returns the running grain `id`, starting it first when it is stopped (its
 * action's command the first time, continueCommand after). Concurrent calls
 * for one grain start it once. The grain is held for the caller until
 * gm_grain_release; a held grain is never stopped for being idle. Returns 0
 * and *out, or -1 with err (no such grain, no package, the sandbox failed). */
int gm_grain_acquire(gm_manager *m, const char *id, gm_grain **out, gr_error_t *err);

/* Ends a hold and marks the grain as used now. */
void gm_grain_release(gm_grain *g);

/* The app's bootstrap capability (its MainView), borrowed: valid while the
 * grain is held. Calls on it fail with "disconnected" once the grain dies. */
cp_cap *gm_grain_main_view(gm_grain *g);

/* A number that differs for every start of every grain: what a caller
 * remembers to know a capability from an earlier start is stale. */
uint64_t gm_grain_generation(const gm_grain *g);

/* True while the grain's process runs. */
bool gm_grain_alive(const gm_grain *g);

/* Marks grain `id` as used now, if it runs (an open view's keep-alive). */
void gm_touch(gm_manager *m, const char *id);

/* Stops a running grain (a no-op when it is not running). */
void gm_stop(gm_manager *m, const char *id);

/* How many grains are running; and whether grain `id` is. */
size_t gm_running_count(const gm_manager *m);
bool gm_is_running(const gm_manager *m, const char *id);
/* When running grain `id` last served a request (gr_monotonic_ns), 0 when
 * it does not run. */
uint64_t gm_last_used_ns(const gm_manager *m, const char *id);

/* The captions of the stayAwake handles running grain `id` holds, which
 * keep it from being stopped for being idle: up to max of them in out
 * (borrowed, valid until the loop runs again). Returns how many it holds. */
size_t gm_kept_awake(const gm_manager *m, const char *id, const char **out, size_t max);

/* The owner lets grain `id` sleep: each of its stayAwake handles stops
 * holding it, and the app is told through its OngoingNotification.cancel().
 * Returns how many there were. The app may take no more until the grain's
 * next start. */
size_t gm_let_sleep(gm_manager *m, const char *id);

/* Stops grain `id` and waits up to timeout_ms for its processes to go (a
 * killed grain takes milliseconds). Returns whether they have. */
bool gm_stop_and_reap(gm_manager *m, const char *id, int timeout_ms);

/* Whether grain `id` is not started for now: its app crashed soon after
 * starting several times in a row (gm_grain_acquire says for how long). */
bool gm_held_back(const gm_manager *m, const char *id);

/* Forgets grain `id`'s crashes (it has been deleted). */
void gm_forget(gm_manager *m, const char *id);

/* When grain `id` last died without being asked to (exit status, or 128 +
 * signal, and the Unix time), since the daemon started: returns true and
 * fills them, false when it has not crashed. */
bool gm_last_crash(const gm_manager *m, const char *id, int *status, int64_t *at);

/* The path of a grain's log and storage, newly allocated. */
char *gm_log_path(const gm_manager *m, const char *id);
char *gm_grain_dir(const gm_manager *m, const char *id);

#endif
