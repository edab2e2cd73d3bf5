/* The user namespace: uid and gid 1000 inside are the daemon's own uid and
 * gid outside, and nothing else is mapped. The child writes its own maps,
 * which an unprivileged service user may do for exactly this one mapping once
 * setgroups is denied. */
#include <fcntl.h>
#include <sys/syscall.h>

#include "sandbox_internal.h"
#include "util.h"

#define GRAIN_ID 1000

void sbx__users_prepare(sbx__plan *plan)
{
    snprintf(plan->uid_map, sizeof plan->uid_map, "%d %u 1\n", GRAIN_ID, (unsigned)geteuid());
    snprintf(plan->gid_map, sizeof plan->gid_map, "%d %u 1\n", GRAIN_ID, (unsigned)getegid());
}

SBX__CHILD size_t sbx__strlen(const char *s)
{
    size_t n = 0;
    while (s[n])
        n++;
    return n;
}

SBX__CHILD int sbx__write_file(const char *path, const char *s)
{
    int fd = (int)syscall(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t n = sbx__strlen(s);
    int rc = syscall(SYS_write, fd, s, n) == (long)n ? 0 : -(errno ? errno : EIO);
    syscall(SYS_close, fd);
    return rc;
}

SBX__CHILD int sbx__users_apply(const sbx__plan *plan)
{
    int rc;
    if ((rc = sbx__write_file("/proc/self/setgroups", "deny")) < 0 ||
        (rc = sbx__write_file("/proc/self/uid_map", plan->uid_map)) < 0 ||
        (rc = sbx__write_file("/proc/self/gid_map", plan->gid_map)) < 0)
        return rc;
    return 0;
}
