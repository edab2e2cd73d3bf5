/* The opt-in loopback redirect: loads loopback.bpf.c's two programs (built
 * into the binary), attaches the sk_msg program to the socket hash once, and
 * the sockops program to each grain's cgroup-v2 directory through a BPF link
 * that the grain's cgroup record holds. Everything here is tied to file
 * descriptors the daemon holds: when the daemon exits, the links, programs
 * and hash go with it and the kernel detaches them. */
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <stdarg.h>

#include "sandbox_internal.h"
#include "util.h"

#include "loopback_bpf.h" /* generated: granary_loopback_bpf[] and its length */

struct sbx__loopback {
    struct bpf_object *obj;
    int sockops_fd;
    int msg_fd;
    int map_fd;
};

__attribute__((format(printf, 2, 0))) static int libbpf_log(enum libbpf_print_level level,
                                                            const char *fmt, va_list ap)
{
    if (level == LIBBPF_DEBUG)
        return 0;
    /* A verifier log comes as one message of many lines. */
    _cleanup_free_ char *text = NULL;
    if (vasprintf(&text, fmt, ap) < 0)
        return 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
        gr_debug("libbpf: %s", line);
    return 0;
}

int sbx__loopback_open(sbx__loopback **out, gr_error_t *err)
{
    libbpf_set_print(libbpf_log);
    sbx__loopback *lo = gr_calloc(1, sizeof(*lo));
    lo->sockops_fd = lo->msg_fd = lo->map_fd = -1;
    LIBBPF_OPTS(bpf_object_open_opts, opts, .object_name = "granary_lo");
    lo->obj = bpf_object__open_mem(granary_loopback_bpf, sizeof granary_loopback_bpf, &opts);
    if (!lo->obj) {
        gr_make_error(err, errno, "loopback redirect: open the BPF object");
        goto fail;
    }
    int r = bpf_object__load(lo->obj);
    if (r < 0) {
        gr_make_error(err, -r,
                      "loopback redirect: load the BPF programs (the daemon needs "
                      "CAP_BPF and CAP_NET_ADMIN, and a kernel with sockmap)");
        goto fail;
    }
    struct bpf_program *sockops = bpf_object__find_program_by_name(lo->obj, "granary_lo_sockops");
    struct bpf_program *msg = bpf_object__find_program_by_name(lo->obj, "granary_lo_msg");
    struct bpf_map *map = bpf_object__find_map_by_name(lo->obj, "lo_socks");
    if (!sockops || !msg || !map) {
        gr_make_error(err, 0, "loopback redirect: the BPF object lacks a program or the hash");
        goto fail;
    }
    lo->sockops_fd = bpf_program__fd(sockops);
    lo->msg_fd = bpf_program__fd(msg);
    lo->map_fd = bpf_map__fd(map);
    r = bpf_prog_attach(lo->msg_fd, lo->map_fd, BPF_SK_MSG_VERDICT, 0);
    if (r < 0) {
        gr_make_error(err, -r, "loopback redirect: attach the sk_msg program to the hash");
        goto fail;
    }
    *out = lo;
    return 0;
fail:
    sbx__loopback_close(lo);
    return -1;
}

int sbx__loopback_attach(const sbx__loopback *lo, const char *cgroup_dir, gr_error_t *err)
{
    _cleanup_close_ int cg = open(cgroup_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg < 0)
        return gr_make_error(err, errno, "loopback redirect: open %s", cgroup_dir);
    int link = bpf_link_create(lo->sockops_fd, cg, BPF_CGROUP_SOCK_OPS, NULL);
    if (link < 0)
        return gr_make_error(err, -link, "loopback redirect: attach to %s", cgroup_dir);
    return link;
}

void sbx__loopback_close(sbx__loopback *lo)
{
    if (!lo)
        return;
    bpf_object__close(lo->obj); /* closes the program and map fds */
    free(lo);
}
