/* What the spk files share and other parts must not touch. */
#ifndef GRANARY_SPK_INTERNAL_H
#define GRANARY_SPK_INTERNAL_H

#include "spk.h"

#include "capnp.h"
#include "package.capnp.h"

#define SPK_MAGIC "\x8f\xc6\xcd\xef\x45\x1a\xea\x96"
#define SPK_MAGIC_LEN 8

struct spk_package {
    uint8_t *archive; /* the framed Archive message (aligned, owned) */
    size_t archive_len;
    cp_message msg; /* reads archive in place */
    spk_info info;
};

/* Appends s[0..len) to out for a message: at most max bytes of it, with
 * bytes outside printable ASCII (and backslash and quote) as \xNN, so a
 * hostile name cannot drive the reader's terminal. Cannot fail. */
void spk__quote(gr_buf *out, const char *s, size_t len, size_t max);

/* Removes path and everything under it (no symlink is followed). Best effort:
 * returns 0, or -1 with err naming the first failure. */
int spk__rm_rf(const char *path, gr_error_t *err);

/* fsyncs the directory at path. Returns 0, or -1 with err. */
int spk__fsync_dir(const char *path, gr_error_t *err);

/* Writes the tree of the package root into the existing empty directory
 * root_fd, syncing every file and directory. Returns 0, or -1 with err. */
int spk__unpack_at(const spk_package *pkg, int root_fd, gr_error_t *err);

#endif
