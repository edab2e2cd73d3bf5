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

/* Which sockets lo_socks holds, for the sk_msg program: it may not look a
 * socket up in the hash itself (that takes a reference it cannot drop), and
 * a redirect to a socket that is not there drops the data. An entry is added
 * after the socket is in lo_socks and removed when the socket leaves
 * ESTABLISHED; twice the room, so that adding it never fails where lo_socks
 * succeeded. Grains share both maps: one that fills them leaves the others'
 * new connections on ordinary TCP (slower, never wrong). */
struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 2 * LO_SOCKETS);
    __type(key, struct lo_key);
    __type(value, __u8);
} lo_present SEC(".maps");

static __always_inline int loopback(__u32 ip) /* network order */
{
    return (bpf_ntohl(ip) >> 24) == 127;
}

static __always_inline void own_key(struct bpf_sock_ops *skops, struct lo_key *key)
{
    key->netns = bpf_get_netns_cookie(skops);
    key->local_ip = skops->local_ip4;
    key->remote_ip = skops->remote_ip4;
    key->local_port = skops->local_port;
    key->remote_port = bpf_ntohl(skops->remote_port);
}

SEC("sockops")
int granary_lo_sockops(struct bpf_sock_ops *skops)
{
    struct lo_key key = {0};
    __u8 one = 1;
    switch (skops->op) {
    case BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB:
    case BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB:
        if (skops->family != 2 /* AF_INET */ || !loopback(skops->local_ip4) ||
            !loopback(skops->remote_ip4))
            return 1;
        own_key(skops, &key);
        /* A full hash leaves the connection on ordinary TCP. */
        if (bpf_sock_hash_update(skops, &lo_socks, &key, BPF_NOEXIST) != 0)
            return 1;
        bpf_map_update_elem(&lo_present, &key, &one, BPF_ANY);
        bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
        return 1;
    case BPF_SOCK_OPS_STATE_CB:
        /* Once a socket leaves ESTABLISHED (it is closing, or its peer
         * is), writes to it take the ordinary path, so that a peer writing
         * to a closed socket meets TCP's answer (a reset), not a dropped
         * redirect. The switch is one way: the socket's reads take what was
         * redirected to it before what TCP delivered, so order is kept. */
        if (skops->args[1] == BPF_TCP_ESTABLISHED)
            return 1;
        own_key(skops, &key);
        bpf_map_delete_elem(&lo_present, &key);
        return 1;
    }
    return 1;
}

SEC("sk_msg")
int granary_lo_msg(struct sk_msg_md *msg)
{
    struct lo_key peer = {
        .netns = bpf_get_netns_cookie(msg),
        .local_ip = msg->remote_ip4,
        .remote_ip = msg->local_ip4,
        .local_port = bpf_ntohl(msg->remote_port),
        .remote_port = msg->local_port,
    };
    /* Without its peer in the hash, a write takes the ordinary path. */
    if (!bpf_map_lookup_elem(&lo_present, &peer))
        return SK_PASS;
    return bpf_msg_redirect_hash(msg, &lo_socks, &peer, BPF_F_INGRESS);
}

/* The project's licence; none of the helpers used is GPL-only. */
char LICENSE[] SEC("license") = "Apache-2.0";
