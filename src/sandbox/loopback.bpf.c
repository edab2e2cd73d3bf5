/* Grain loopback redirect (opt-in: `granary run --grain-loopback-redirect`).
 *
 * Two BPF programs that let a grain's TCP connections on its own loopback
 * skip the TCP/IP stack: the sockops program, attached to each grain's
 * cgroup (v2), puts every TCP socket a grain process establishes on
 * 127.0.0.0/8 into a socket hash, keyed by the socket's network namespace and
 * its four-tuple; the sk_msg program, attached to that hash, hands each write
 * on such a socket straight to its peer's receive queue when the peer is in
 * the hash too, and lets it take the ordinary TCP path otherwise.
 *
 * The namespace cookie in the key keeps grains apart: two grains can hold
 * connections with the same four-tuple, each in its own namespace, and a
 * socket is only ever matched with a peer of its own namespace. Grain
 * processes cannot reach the programs or the hash (seccomp denies bpf()).
 * Compiled with clang -target bpf; loaded by loopback.c. */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

struct lo_key {
    __u64 netns;
    __u32 local_ip;
    __u32 remote_ip;
    __u32 local_port;  /* host order */
    __u32 remote_port; /* host order */
};

#define LO_SOCKETS 65536

struct {
    __uint(type, BPF_MAP_TYPE_SOCKHASH);
    __uint(max_entries, LO_SOCKETS);
    __type(key, struct lo_key);
    __type(value, __u64);
} lo_socks SEC(".maps");

/* Sockets that have sent anything over TCP (their peer was not in lo_socks
 * yet: a listener with TCP_DEFER_ACCEPT, a final ACK the accept queue
 * dropped). They never switch to the redirect, since redirected bytes would
 * be read before the ones TCP still holds. Storage that lives and dies with
 * the socket, so nothing is left behind however a grain ends. */
struct {
    __uint(type, BPF_MAP_TYPE_SK_STORAGE);
    __uint(map_flags, BPF_F_NO_PREALLOC);
    __type(key, int);
    __type(value, __u8);
} lo_tcp SEC(".maps");

static __always_inline int loopback(__u32 ip) /* network order */
{
    return (bpf_ntohl(ip) >> 24) == 127;
}

SEC("sockops")
int granary_lo_sockops(struct bpf_sock_ops *skops)
{
    if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
        skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
        return 1;
    if (skops->family != 2 /* AF_INET */ || !loopback(skops->local_ip4) ||
        !loopback(skops->remote_ip4))
        return 1;
    /* Data already sent over TCP (in a SYN, with a Fast Open cookie) would
     * be read after anything redirected: such a socket stays on TCP. */
    if (skops->data_segs_out != 0)
        return 1;
    struct lo_key key = {
        .netns = bpf_get_netns_cookie(skops),
        .local_ip = skops->local_ip4,
        .remote_ip = skops->remote_ip4,
        .local_port = skops->local_port,
        .remote_port = bpf_ntohl(skops->remote_port),
    };
    /* A live socket is the only one with its four-tuple in its namespace;
     * an entry already there is a dead one (reset, or past FIN) whose
     * descriptor is still open, and the new connection takes its place
     * (the dead socket's unread redirected bytes go with it). Taking the
     * entry out when a socket reaches CLOSE would be tidier, but drops what
     * its reader has not read yet. A full hash leaves the connection on
     * ordinary TCP. */
    bpf_sock_hash_update(skops, &lo_socks, &key, BPF_ANY);
    return 1;
}

SEC("sk_msg")
int granary_lo_msg(struct sk_msg_md *msg)
{
    struct bpf_sock *sk = msg->sk;
    if (!sk)
        return SK_PASS;
    if (bpf_sk_storage_get(&lo_tcp, sk, 0, 0))
        return SK_PASS;
    struct lo_key peer = {
        .netns = bpf_get_netns_cookie(msg),
        .local_ip = msg->remote_ip4,
        .remote_ip = msg->local_ip4,
        .local_port = bpf_ntohl(msg->remote_port),
        .remote_port = msg->local_port,
    };
    if (bpf_msg_redirect_hash(msg, &lo_socks, &peer, BPF_F_INGRESS) == SK_PASS)
        return SK_PASS;
    /* No peer in the hash (not there yet, or it closed): the write takes
     * the ordinary path, where a closed peer
     * answers with a reset, and so does every later write of this socket.
     * Without room to remember that, the write is refused rather than risk
     * the order of the bytes. */
    __u8 *mark = bpf_sk_storage_get(&lo_tcp, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    return mark ? SK_PASS : SK_DROP;
}

/* The project's licence; none of the helpers used is GPL-only. */
char LICENSE[] SEC("license") = "Apache-2.0";
