/* The network and UTS namespaces: the grain's network namespace is empty
 * but for loopback, which is brought up here (127.0.0.1 and ::1 come with
 * it); the host name is "sandbox", as in Sandstorm. */
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "sandbox_internal.h"
#include "util.h"

#define HOSTNAME "sandbox"

void sbx__net_prepare(sbx__plan *plan)
{
    memset(&plan->lo, 0, sizeof plan->lo);
    gr_strlcpy(plan->lo.ifr_name, "lo", sizeof plan->lo.ifr_name);
}

/* With the loopback redirect, a client's Fast Open data would go over TCP
 * after the handshake while the socket is already redirected, and could be
 * read after later bytes (docs/sandbox.md): the grain's namespace has no
 * Fast Open then (MSG_FASTOPEN fails with EOPNOTSUPP, and apps fall back to
 * connect). /proc/sys/net is the namespace of whoever opens it. */
SBX__CHILD int sbx__net_sysctls_apply(const sbx__plan *plan)
{
    return plan->no_fastopen ? sbx__write_file("/proc/sys/net/ipv4/tcp_fastopen", "0") : 0;
}

SBX__CHILD int sbx__net_apply(sbx__plan *plan)
{
    int rc = 0;
    if (syscall(SYS_sethostname, HOSTNAME, sizeof HOSTNAME - 1) < 0 ||
        syscall(SYS_setdomainname, HOSTNAME, sizeof HOSTNAME - 1) < 0)
        return -errno;
    int s = (int)syscall(SYS_socket, AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -errno;
    if (syscall(SYS_ioctl, s, SIOCGIFFLAGS, &plan->lo) < 0)
        rc = -errno;
    plan->lo.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (rc == 0 && syscall(SYS_ioctl, s, SIOCSIFFLAGS, &plan->lo) < 0)
        rc = -errno;
    syscall(SYS_close, s);
    return rc;
}
