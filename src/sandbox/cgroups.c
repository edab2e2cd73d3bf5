/* Per-grain cgroups: memory, pids and CPU limits. The daemon creates the
 * grain's cgroup and opens its cgroup.procs before the clone; the child writes
 * itself in as its first step, before anything of the grain runs, so no
 * process of the grain ever runs outside it. Hosts without usable cgroups
 * fall back to rlimits (process.c). */
#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>

#include "sandbox_internal.h"
#include "util.h"

#define CG_ROOT "/sys/fs/cgroup"

static const char *const v1_controllers[SBX__V1_CONTROLLERS] = {"memory", "pids", "cpu"};

char *sbx__cgroup_path(const char *proc_cgroup, const char *want)
{
    _cleanup_free_ char *text = gr_strdup(proc_cgroup);
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2 || c2[1] != '/')
            continue;
        *c1 = *c2 = '\0'; /* line is now the hierarchy id */
        const char *list = c1 + 1;
        if (want[0] == '\0') {
            if (strcmp(line, "0") == 0 && list[0] == '\0')
                return gr_strdup(c2 + 1);
            continue;
        }
        /* v1 lines list controllers separated by commas ("cpu,cpuacct"). */
        _cleanup_free_ char *copy = gr_strdup(list);
        char *s2 = NULL;
        for (char *ctl = strtok_r(copy, ",", &s2); ctl; ctl = strtok_r(NULL, ",", &s2))
            if (strcmp(ctl, want) == 0)
                return gr_strdup(c2 + 1);
    }
    return NULL;
}

static char *own_cgroup(const char *want)
{
    _cleanup_free_ char *text = NULL;
    size_t len;
    gr_error_t err = NULL;
    if (gr_read_file("/proc/self/cgroup", 1 << 16, &text, &len, &err) < 0) {
        gr_error_release(&err);
        return NULL;
    }
    return sbx__cgroup_path(text, want);
}

static bool is_fs(const char *path, long magic)
{
    struct statfs sf;
    return statfs(path, &sf) == 0 && sf.f_type == magic;
}

static bool writable_dir(const char *path)
{
    return access(path, W_OK | X_OK) == 0;
}

/* v2: grains go beside the daemon, under the parent of its cgroup, when that
 * parent delegates memory and pids to its children (systemd Delegate=yes with
 * the daemon in a leaf such as .../granary.service/daemon). */
static void probe_v2(sbx__cgroups_host *host)
{
    _cleanup_free_ char *own = own_cgroup("");
    if (!own || strcmp(own, "/") == 0)
        return;
    char *slash = strrchr(own, '/');
    *slash = '\0';
    _cleanup_free_ char *parent = gr_asprintf(CG_ROOT "%s", own);
    _cleanup_free_ char *ctl_path = gr_asprintf("%s/cgroup.subtree_control", parent);
    _cleanup_free_ char *ctl = NULL;
    size_t len;
    gr_error_t err = NULL;
    if (gr_read_file(ctl_path, 4096, &ctl, &len, &err) < 0) {
        gr_error_release(&err);
        return;
    }
    if (!strstr(ctl, "memory") || !strstr(ctl, "pids") || !writable_dir(parent))
        return;
    host->mode = SBX_LIMITS_CGROUP_V2;
    host->parent[0] = gr_steal_pointer(&parent);
}

static void probe_v1(sbx__cgroups_host *host)
{
    char *found[SBX__V1_CONTROLLERS] = {NULL};
    for (int i = 0; i < SBX__V1_CONTROLLERS; i++) {
        _cleanup_free_ char *mnt = gr_asprintf(CG_ROOT "/%s", v1_controllers[i]);
        _cleanup_free_ char *own = own_cgroup(v1_controllers[i]);
        if (!own || !is_fs(mnt, CGROUP_SUPER_MAGIC))
            continue;
        char *dir = gr_asprintf("%s%s", mnt, strcmp(own, "/") == 0 ? "" : own);
        if (writable_dir(dir))
            found[i] = dir;
        else
            free(dir);
    }
    /* Memory and pids are the limits that protect the host; without both,
     * rlimits are the honest answer. CPU is optional. */
    if (!found[0] || !found[1]) {
        for (int i = 0; i < SBX__V1_CONTROLLERS; i++)
            free(found[i]);
        return;
    }
    host->mode = SBX_LIMITS_CGROUP_V1;
    for (int i = 0; i < SBX__V1_CONTROLLERS; i++)
        host->parent[i] = found[i];
}

/* Removes grain cgroups left by a daemon that died without reaping (its
 * grains died with it). A cgroup still in use refuses rmdir, so this is safe. */
static void remove_stale(const char *parent)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        long pid;
        gr_error_t err = NULL;
        if (!gr_starts_with(e->d_name, "granary-grain-"))
            continue;
        _cleanup_free_ char *pid_text = gr_strdup(e->d_name + strlen("granary-grain-"));
        char *dash = strchr(pid_text, '-');
        if (dash)
            *dash = '\0';
        if (gr_parse_long(pid_text, 1, INT_MAX, &pid, &err) < 0) {
            gr_error_release(&err);
            continue;
        }
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH)
            continue;
        _cleanup_free_ char *path = gr_asprintf("%s/%s", parent, e->d_name);
        if (rmdir(path) == 0)
            gr_debug("removed stale grain cgroup %s", path);
    }
    closedir(d);
}

void sbx__cgroups_probe(sbx__cgroups_host *host)
{
    memset(host, 0, sizeof(*host));
    host->mode = SBX_LIMITS_RLIMIT;
    if (is_fs(CG_ROOT, CGROUP2_SUPER_MAGIC))
        probe_v2(host);
    else
        probe_v1(host);
    for (int i = 0; i < SBX__MAX_CGROUPS; i++)
        if (host->parent[i])
            remove_stale(host->parent[i]);
}

void sbx__cgroups_host_release(sbx__cgroups_host *host)
{
    for (int i = 0; i < SBX__MAX_CGROUPS; i++) {
        free(host->parent[i]);
        host->parent[i] = NULL;
    }
    sbx__loopback_close(host->loopback);
    host->loopback = NULL;
}

/* The redirect's sockops program is attached per grain, to a cgroup-v2
 * directory holding only that grain: with v2 limits, the grain's own
 * cgroup; otherwise a directory made for it under the daemon's place in the
 * v2 hierarchy (/sys/fs/cgroup/unified on a hybrid host). */
int sbx__cgroups_enable_loopback(sbx__cgroups_host *host, gr_error_t *err)
{
    if (host->loopback)
        return 0;
    if (host->mode != SBX_LIMITS_CGROUP_V2) {
        const char *mnt = is_fs(CG_ROOT, CGROUP2_SUPER_MAGIC) ? CG_ROOT
                          : is_fs(CG_ROOT "/unified", CGROUP2_SUPER_MAGIC) ? CG_ROOT "/unified"
                                                                           : NULL;
        if (!mnt)
            return gr_make_error(err, 0, "loopback redirect: no cgroup v2 hierarchy is mounted "
                                         "(at " CG_ROOT " or " CG_ROOT "/unified)");
        _cleanup_free_ char *own = own_cgroup("");
        if (!own)
            return gr_make_error(err, 0, "loopback redirect: /proc/self/cgroup has no v2 line");
        char *dir = gr_asprintf("%s%s", mnt, strcmp(own, "/") == 0 ? "" : own);
        if (!writable_dir(dir)) {
            gr_make_error(err, errno, "loopback redirect: cannot make grain cgroups in %s", dir);
            free(dir);
            return -1;
        }
        remove_stale(dir);
        host->parent[SBX__CG_LOOPBACK] = dir;
    }
    if (sbx__loopback_open(&host->loopback, err) < 0) {
        free(host->parent[SBX__CG_LOOPBACK]);
        host->parent[SBX__CG_LOOPBACK] = NULL;
        return -1;
    }
    return 0;
}

/* Writes value to dir/file. Returns 0, or -1 with err. */
static int cg_write(const char *dir, const char *file, const char *value, gr_error_t *err)
{
    _cleanup_free_ char *path = gr_asprintf("%s/%s", dir, file);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return gr_make_error(err, errno, "open %s", path);
    size_t n = strlen(value);
    if (write(fd, value, n) != (ssize_t)n)
        return gr_make_error(err, errno, "write %s to %s", value, path);
    return 0;
}

static int write_limits(sbx_limits_mode mode, int which, const char *dir, const sbx_spec *spec,
                        gr_error_t *err)
{
    char v[64];
    if (mode == SBX_LIMITS_CGROUP_V2) {
        if (spec->memory_bytes) {
            snprintf(v, sizeof v, "%llu", (unsigned long long)spec->memory_bytes);
            if (cg_write(dir, "memory.max", v, err) < 0)
                return -1;
            /* No swap, and the whole grain dies together on OOM. */
            _cleanup_free_ char *swap = gr_asprintf("%s/memory.swap.max", dir);
            if (access(swap, F_OK) == 0 && cg_write(dir, "memory.swap.max", "0", err) < 0)
                return -1;
            if (cg_write(dir, "memory.oom.group", "1", err) < 0)
                return -1;
        }
        if (spec->pids) {
            snprintf(v, sizeof v, "%llu", (unsigned long long)spec->pids);
            if (cg_write(dir, "pids.max", v, err) < 0)
                return -1;
        }
        /* The cpu controller is optional, as in v1: without it the grain
         * runs unthrottled. */
        _cleanup_free_ char *cpu_max = gr_asprintf("%s/cpu.max", dir);
        if (spec->cpu_percent && access(cpu_max, F_OK) == 0) {
            snprintf(v, sizeof v, "%u 100000", spec->cpu_percent * 1000u);
            if (cg_write(dir, "cpu.max", v, err) < 0)
                return -1;
        }
        return 0;
    }
    if (which == 0 && spec->memory_bytes) {
        snprintf(v, sizeof v, "%llu", (unsigned long long)spec->memory_bytes);
        if (cg_write(dir, "memory.limit_in_bytes", v, err) < 0)
            return -1;
        _cleanup_free_ char *memsw = gr_asprintf("%s/memory.memsw.limit_in_bytes", dir);
        if (access(memsw, F_OK) == 0 && cg_write(dir, "memory.memsw.limit_in_bytes", v, err) < 0)
            return -1;
        /* v1 counts socket buffers apart, and only once this is set (v2
         * counts them in memory.max): a grain's unread data, queued by the
         * loopback redirect or by TCP, is then bounded by its own limit. */
        _cleanup_free_ char *tcp = gr_asprintf("%s/memory.kmem.tcp.limit_in_bytes", dir);
        if (access(tcp, F_OK) == 0 && cg_write(dir, "memory.kmem.tcp.limit_in_bytes", v, err) < 0)
            return -1;
    }
    if (which == 1 && spec->pids) {
        snprintf(v, sizeof v, "%llu", (unsigned long long)spec->pids);
        if (cg_write(dir, "pids.max", v, err) < 0)
            return -1;
    }
    if (which == 2 && spec->cpu_percent) {
        snprintf(v, sizeof v, "%u", spec->cpu_percent * 1000u);
        if (cg_write(dir, "cpu.cfs_period_us", "100000", err) < 0 ||
            cg_write(dir, "cpu.cfs_quota_us", v, err) < 0)
            return -1;
    }
    return 0;
}

int sbx__cgroups_prepare(const sbx__cgroups_host *host, const sbx_spec *spec, sbx__cgroups_grain *g,
                         gr_error_t *err)
{
    static unsigned counter;
    for (int i = 0; i < SBX__MAX_CGROUPS; i++) {
        g->dir[i] = NULL;
        g->procs_fd[i] = -1;
    }
    g->loopback_link = -1;
    if (host->mode == SBX_LIMITS_RLIMIT && !host->loopback)
        return 0;
    /* A controller is used only for a limit that was asked for: a grain
     * without limits costs no cgroup (and starts as fast as bubblewrap's),
     * unless the loopback redirect needs one to attach to. */
    bool want[SBX__MAX_CGROUPS] = {spec->memory_bytes != 0, spec->pids != 0,
                                   spec->cpu_percent != 0, host->loopback != NULL};
    if (host->mode == SBX_LIMITS_CGROUP_V2)
        want[0] = want[0] || want[1] || want[2] || want[SBX__CG_LOOPBACK];
    unsigned n = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < SBX__MAX_CGROUPS; i++) {
        if (!host->parent[i] || !want[i])
            continue;
        char *dir = gr_asprintf("%s/granary-grain-%ld-%u", host->parent[i], (long)getpid(), n);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
            gr_make_error(err, errno, "mkdir %s", dir);
            free(dir);
            goto fail;
        }
        g->dir[i] = dir;
        if (write_limits(host->mode, i, dir, spec, err) < 0)
            goto fail;
        _cleanup_free_ char *procs = gr_asprintf("%s/cgroup.procs", dir);
        g->procs_fd[i] = open(procs, O_WRONLY | O_CLOEXEC);
        if (g->procs_fd[i] < 0) {
            gr_make_error(err, errno, "open %s", procs);
            goto fail;
        }
    }
    if (host->loopback) {
        int at = host->mode == SBX_LIMITS_CGROUP_V2 ? 0 : SBX__CG_LOOPBACK;
        if (!g->dir[at]) {
            gr_make_error(err, 0, "loopback redirect: the grain has no cgroup-v2 directory");
            goto fail;
        }
        g->loopback_link = sbx__loopback_attach(host->loopback, g->dir[at], err);
        if (g->loopback_link < 0)
            goto fail;
    }
    return 0;
fail:
    sbx__cgroups_close_fds(g);
    sbx__cgroups_remove(g);
    return gr_error_prefix(err, "cgroup");
}

void sbx__cgroups_close_fds(sbx__cgroups_grain *g)
{
    for (int i = 0; i < SBX__MAX_CGROUPS; i++)
        gr_closep(&g->procs_fd[i]);
}

void sbx__cgroups_remove(sbx__cgroups_grain *g)
{
    gr_closep(&g->loopback_link);
    for (int i = 0; i < SBX__MAX_CGROUPS; i++) {
        if (!g->dir[i])
            continue;
        /* The last tasks of a reaped PID namespace can take a moment to leave. */
        for (int tries = 0; rmdir(g->dir[i]) < 0 && errno == EBUSY && tries < 200; tries++) {
            struct timespec ts = {0, 1000000};
            nanosleep(&ts, NULL);
        }
        free(g->dir[i]);
        g->dir[i] = NULL;
    }
}

SBX__CHILD int sbx__cgroups_apply(const sbx__cgroups_grain *g)
{
    for (int i = 0; i < SBX__MAX_CGROUPS; i++)
        if (g->procs_fd[i] >= 0 && syscall(SYS_write, g->procs_fd[i], "0", 1) != 1)
            return -errno;
    if (syscall(SYS_unshare, CLONE_NEWCGROUP) < 0)
        return -errno;
    return 0;
}
