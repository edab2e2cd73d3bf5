/* The grain sandbox: starts one program in fresh user, mount, PID, network,
 * IPC, UTS and cgroup namespaces, on a read-only package root, with a seccomp
 * allowlist, no capabilities and per-grain limits. See docs/sandbox.md. */
#ifndef GRANARY_SANDBOX_H
#define GRANARY_SANDBOX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util.h"

/* Where the bridge binary appears inside every grain. */
#define SBX_BRIDGE_PATH "/sandstorm-http-bridge"

/* Defaults for the limits of an sbx_spec left at 0. */
#define SBX_DEFAULT_TMP_BYTES (16u << 20)
#define SBX_DEFAULT_SHM_BYTES (16u << 20)

/* The process-wide part of the sandbox: the compiled seccomp program and what
 * the host offers for cgroups. Build it once at start-up and share it between
 * grains; it is read-only after sbx_policy_new, so any thread may use it. */
typedef struct sbx_policy sbx_policy;

/* How per-grain limits are enforced on this host. */
typedef enum {
    SBX_LIMITS_CGROUP_V2, /* memory.max, pids.max, cpu.max in a delegated cgroup2 tree */
    SBX_LIMITS_CGROUP_V1, /* memory, pids and cpu controllers of a v1 hierarchy */
    SBX_LIMITS_RLIMIT,    /* no usable cgroups: RLIMIT_AS and RLIMIT_NPROC only */
} sbx_limits_mode;

/* Compiles the seccomp allowlist and probes the host's cgroups. Returns 0 and
 * sets *out, or -1 with err (libseccomp refused a rule, or no memfd). */
int sbx_policy_new(sbx_policy **out, gr_error_t *err);
void sbx_policy_free(sbx_policy *p);

/* Opt-in, off by default: grains' TCP connections on their own loopback skip
 * the TCP/IP stack. A sockops BPF program on each grain's cgroup v2 puts the
 * grain's loopback sockets in a socket hash keyed by network namespace and
 * four-tuple, and an sk_msg program hands each write to the peer's receive
 * queue (docs/sandbox.md, "Loopback redirect"). Faster for HTTP apps behind
 * the bridge, at the price of running every grain's socket calls through
 * the kernel's sockmap code. Needs CAP_BPF and CAP_NET_ADMIN and a writable
 * cgroup-v2 hierarchy. Call before the policy is shared; grains started
 * before are not covered. Returns 0, or -1 with err. */
int sbx_policy_enable_loopback_redirect(sbx_policy *p, gr_error_t *err);
bool sbx_policy_loopback_redirect(const sbx_policy *p);

/* How this host's limits are enforced, and the BPF program (for tests). */
sbx_limits_mode sbx_policy_limits_mode(const sbx_policy *p);
const char *sbx_limits_mode_name(sbx_limits_mode m);
/* Number of BPF instructions of the compiled filter. */
size_t sbx_policy_filter_len(const sbx_policy *p);

/* Everything one grain needs. The caller owns every string and fd in it; the
 * sandbox only reads them during sbx_start. */
typedef struct sbx_spec {
    const char *package_dir; /* read-only root of the grain; absolute */
    const char *var_dir;     /* the grain's storage, writable, at /var; absolute */
    const char *bridge_path; /* file bound read-only at SBX_BRIDGE_PATH, or NULL */
    char *const *argv;       /* argv[0] is an absolute path inside the grain; no PATH search */
    char *const *envp;       /* exactly the grain's environment (may be empty, not NULL) */
    int rpc_fd;              /* becomes fd 3, or -1 for none */
    int stdio[3];            /* become fds 0, 1, 2; -1 means /dev/null */
    uint64_t memory_bytes;   /* 0: unlimited */
    uint64_t pids;           /* 0: unlimited */
    uint32_t cpu_percent;    /* 100 = one core; 0: unlimited */
    uint64_t tmp_bytes;      /* size of /tmp; 0: SBX_DEFAULT_TMP_BYTES */
} sbx_spec;

/* Sets every field of spec to its default (fds -1, limits 0). */
void sbx_spec_init(sbx_spec *spec);

/* Checks a spec without starting anything: absolute existing directories,
 * argv[0] absolute, env entries of the form K=V, fds open. Returns 0, or -1
 * with err naming the first problem. */
int sbx_spec_validate(const sbx_spec *spec, gr_error_t *err);

/* A running (or exited, not yet reaped) grain. */
typedef struct sbx_grain sbx_grain;

/* Starts a grain and returns once its program has been executed. Returns 0
 * and sets *out, or -1 with err when the spec is invalid or a setup step
 * failed in the child (the error names the step). Call it from a thread that
 * lives as long as the grain: the grain is killed when that thread exits. */
int sbx_start(const sbx_policy *p, const sbx_spec *spec, sbx_grain **out, gr_error_t *err);

/* The grain's first process, as the host sees it, and a pidfd for it that
 * becomes readable when it exits (poll it with uv_poll). */
pid_t sbx_grain_pid(const sbx_grain *g);
int sbx_grain_pidfd(const sbx_grain *g);

/* Memory charged to the grain's cgroup now: its processes, their page
 * tables and the kernel objects of its namespaces and mounts. Returns 0 and
 * sets *bytes, or -1 with err (also when limits are rlimits only). */
int sbx_grain_memory(const sbx_grain *g, uint64_t *bytes, gr_error_t *err);

/* Kills the whole grain: SIGKILL to pid 1 of its PID namespace, which takes
 * every process in it. Returns 0 (also when it already exited), or -1 with err. */
int sbx_kill(sbx_grain *g, gr_error_t *err);

/* Reaps the grain. With block false it returns 0 when the grain still runs.
 * Returns 1 with *status set to the exit code, or 128 + signal when killed by
 * a signal, once reaped (its cgroup is then removed); -1 with err. */
int sbx_wait(sbx_grain *g, bool block, int *status, gr_error_t *err);

/* Kills and reaps a grain that was not yet reaped, then frees it. Safe on NULL. */
void sbx_grain_free(sbx_grain *g);

/* ---- grain logs -----------------------------------------------------------
 * A grain's stdout and stderr are a pipe; the daemon reads it and appends to
 * the grain's log file through this writer, which keeps the file below a cap
 * by renaming it to "<path>.1" (replacing the older one) as Sandstorm does. */
#define SBX_LOG_MAX_BYTES (512u << 10)

typedef struct sbx_log sbx_log;

/* Opens (appending) the log at path, rotating at max_bytes (0: the default).
 * Returns 0 and sets *out, or -1 with err. */
int sbx_log_open(const char *path, size_t max_bytes, sbx_log **out, gr_error_t *err);
/* Appends len bytes, rotating first when they would not fit. Returns 0, or -1. */
int sbx_log_write(sbx_log *l, const void *data, size_t len, gr_error_t *err);
void sbx_log_close(sbx_log *l);

#endif
