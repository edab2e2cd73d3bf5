/* Internals of the grain sandbox shared by its modules. Each kernel facility
 * (users, cgroups, mounts, network, process state, seccomp) is one file with a
 * `prepare` half that runs in the daemon and may allocate, and an `apply`
 * half that runs in the cloned child, which makes only raw system calls. */
#ifndef GRANARY_SANDBOX_INTERNAL_H
#define GRANARY_SANDBOX_INTERNAL_H

#include <linux/filter.h>
#include <net/if.h>
#include <sys/resource.h>

#include "sandbox.h"

/* Code that runs in the child between clone and execve: no allocation, no
 * locks, no sanitizer runtime. */
#define SBX__CHILD __attribute__((no_sanitize("address", "undefined")))

/* The staging directory the new root is built on inside the child's own mount
 * namespace; covering it there does not affect the host. */
#define SBX__STAGE "/tmp"

/* A grain's cgroups: one per v1 controller (memory, pids, cpu), or the one
 * v2 cgroup in [0]; [SBX__CG_LOOPBACK] is the grain's cgroup-v2 directory
 * for the loopback redirect on a host whose limits are not v2 ones. */
#define SBX__V1_CONTROLLERS 3
#define SBX__CG_LOOPBACK 3
#define SBX__MAX_CGROUPS 4

/* ---- seccomp (seccomp.c) */

/* Compiles the allowlist into BPF. Returns 0 and sets *prog (caller frees
 * prog->filter), or -1 with err. */
int sbx__seccomp_compile(struct sock_fprog *prog, gr_error_t *err);
/* Child: sets no_new_privs and loads the filter. Returns 0 or -errno. */
int sbx__seccomp_apply(const struct sock_fprog *prog);

/* ---- the opt-in loopback redirect (loopback.c, loopback.bpf.c) */

typedef struct sbx__loopback sbx__loopback;
/* Loads the BPF programs and attaches the sk_msg one to the socket hash.
 * Returns 0 and sets *out, or -1 with err. */
int sbx__loopback_open(sbx__loopback **out, gr_error_t *err);
/* Attaches the sockops program to the cgroup-v2 directory; returns the BPF
 * link's fd (closing it detaches), or -1 with err. */
int sbx__loopback_attach(const sbx__loopback *lo, const char *cgroup_dir, gr_error_t *err);
void sbx__loopback_close(sbx__loopback *lo);

/* ---- cgroups (cgroups.c) */

typedef struct sbx__cgroups_host {
    sbx_limits_mode mode;
    /* For v1: the parent directory per controller (memory, pids, cpu); for
     * v2 only [0]. NULL when that controller is unavailable. With the
     * loopback redirect on a host whose limits are not v2 ones,
     * [SBX__CG_LOOPBACK] is the cgroup-v2 directory grains go under. */
    char *parent[SBX__MAX_CGROUPS];
    sbx__loopback *loopback; /* NULL: the redirect is off (the default) */
} sbx__cgroups_host;

typedef struct sbx__cgroups_grain {
    char *dir[SBX__MAX_CGROUPS]; /* created per grain, removed after reaping */
    int procs_fd[SBX__MAX_CGROUPS];
    int loopback_link; /* the sockops program's link on the grain's v2 cgroup, or -1 */
} sbx__cgroups_grain;

/* The cgroup path of hierarchy `want` ("memory" for a v1 controller, ""
 * for the v2 "0::" line) in the text of /proc/self/cgroup; a new string, or
 * NULL when it is not there. */
char *sbx__cgroup_path(const char *proc_cgroup, const char *want);
void sbx__cgroups_probe(sbx__cgroups_host *host);
void sbx__cgroups_host_release(sbx__cgroups_host *host);
/* Turns the loopback redirect on for grains prepared from now on. Returns 0,
 * or -1 with err (no writable cgroup v2, BPF refused). */
int sbx__cgroups_enable_loopback(sbx__cgroups_host *host, gr_error_t *err);
/* Creates the grain's cgroups with the spec's limits and opens their
 * cgroup.procs; in rlimit mode only the loopback redirect's v2 directory,
 * when it is on. Returns 0, or -1 with err. */
int sbx__cgroups_prepare(const sbx__cgroups_host *host, const sbx_spec *spec, sbx__cgroups_grain *g,
                         gr_error_t *err);
/* Closes the procs fds (after clone). */
void sbx__cgroups_close_fds(sbx__cgroups_grain *g);
/* Removes the grain's cgroups (they must be empty) and frees the paths. */
void sbx__cgroups_remove(sbx__cgroups_grain *g);
/* Child: moves itself into the grain's cgroups, then into a new cgroup
 * namespace rooted there. Returns 0 or -errno. */
int sbx__cgroups_apply(const sbx__cgroups_grain *g);

/* ---- mounts (mounts.c) */

typedef enum {
    SBX__OP_TMPFS,      /* mount a tmpfs at target with `data` options and `flags` */
    SBX__OP_MKDIR,      /* create directory target */
    SBX__OP_MKFILE,     /* create empty file target (a mount point) */
    SBX__OP_SYMLINK,    /* target -> data */
    SBX__OP_BIND,       /* bind source (relative to src fd) at target with attrs */
    SBX__OP_REMOUNT_RO, /* make the mount at target read-only, keeping `flags` */
} sbx__op_kind;

enum { SBX__SRC_HOST = -1, SBX__SRC_PACKAGE, SBX__SRC_VAR, SBX__SRC_BRIDGE, SBX__N_SRC };

typedef struct sbx__mount_op {
    sbx__op_kind kind;
    int src;             /* BIND: SBX__SRC_* */
    char *target;        /* absolute, under SBX__STAGE */
    char *data;          /* TMPFS options, SYMLINK contents, BIND source path ("" = the fd) */
    unsigned long flags; /* TMPFS and REMOUNT_RO: MS_* flags; BIND: MOUNT_ATTR_* */
} sbx__mount_op;

typedef struct sbx__mounts {
    const char *src_path[SBX__N_SRC]; /* opened in the child before staging */
    int src_fd[SBX__N_SRC];
    sbx__mount_op *ops;
    size_t n_ops, cap_ops;
} sbx__mounts;

/* Plans the grain's filesystem from the spec (reads the package's top level).
 * Returns 0, or -1 with err. */
int sbx__mounts_prepare(const sbx_spec *spec, sbx__mounts *m, gr_error_t *err);
void sbx__mounts_release(sbx__mounts *m);
/* Child: runs the plan and pivots into it. Returns 0 or -errno, with *failed
 * set to the target that failed. */
int sbx__mounts_apply(sbx__mounts *m, const char **failed);

/* ---- users, network, process state (users.c, net.c, process.c) */

typedef struct sbx__plan {
    /* users */
    char uid_map[64], gid_map[64];
    /* network */
    struct ifreq lo;
    bool no_fastopen; /* the loopback redirect is on: no TCP Fast Open */
    /* process */
    struct rlimit rlim[RLIM_NLIMITS];
    bool rlim_set[RLIM_NLIMITS];
    int stdio[3], rpc_fd, devnull_fd;
    int last_cap;
    int parent_pidfd;
    char *const *argv;
    char *const *envp;
    /* the other modules */
    sbx__cgroups_grain cg;
    sbx__mounts mounts;
    const struct sock_fprog *seccomp;
    /* written by the child when a step fails */
    const char *fail_step;
    const char *fail_detail;
    int fail_errno;
} sbx__plan;

void sbx__users_prepare(sbx__plan *plan);
int sbx__users_apply(const sbx__plan *plan);
void sbx__net_prepare(sbx__plan *plan);
/* Child, while the host's /proc is still there: the grain namespace's
 * sysctls (TCP Fast Open off with the loopback redirect). */
int sbx__net_sysctls_apply(const sbx__plan *plan);
int sbx__net_apply(sbx__plan *plan);
void sbx__process_prepare(sbx__plan *plan, const sbx_spec *spec, sbx_limits_mode mode);
int sbx__rlimits_apply(const sbx__plan *plan);
int sbx__fds_apply(const sbx__plan *plan);
int sbx__caps_apply(const sbx__plan *plan);
int sbx__signals_apply(void);

/* Child helpers: writes all of s to path. Returns 0 or -errno. */
int sbx__write_file(const char *path, const char *s);
size_t sbx__strlen(const char *s);

#endif
