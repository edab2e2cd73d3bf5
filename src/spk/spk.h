/* Sandstorm-compatible packages (.spk): keys, the pure id encodings and name
 * checks, reading and verifying a package, unpacking it, packing a project
 * from its sandstorm-pkgdef.capnp, and installing into a server's data dir.
 * docs/packages.md describes the format as implemented and every check. All
 * functions are blocking and touch no event loop, so the daemon may call them
 * from a libuv worker thread. */
#ifndef GRANARY_SPK_H
#define GRANARY_SPK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"
#include "util.h"

/* Limits from the format (spec 3.4) and Granary's own bounds. */
#define SPK_MAX_ARCHIVE_BYTES (UINT64_C(1) << 30) /* decompressed archive */
/* One file: under 512 MiB, which is also the most a Data field can hold. */
#define SPK_MAX_FILE_BYTES ((UINT64_C(512) << 20) - 1)
#define SPK_MAX_MANIFEST_WORDS (UINT64_C(1) << 20) /* 8 MiB */
#define SPK_MAX_DEPTH 64                           /* directories inside directories */
#define SPK_MAX_ENTRIES 200000                     /* entries in the tree */
#define SPK_MAX_NAME_BYTES 255                     /* one path component */
/* Sandstorm's packer gives every file's contents a segment of its own. */
#define SPK_MAX_SEGMENTS (SPK_MAX_ENTRIES + 1024)

#define SPK_APP_ID_LEN 52     /* base32 characters of a 32-byte key */
#define SPK_PACKAGE_ID_LEN 32 /* hex characters of 16 bytes */

/* ---- pure parts ----------------------------------------------------------- */

/* Writes the 52-character app id of a 32-byte public key and a NUL to out.
 * Cannot fail. */
void spk_app_id_encode(const uint8_t key[32], char out[SPK_APP_ID_LEN + 1]);

/* Decodes an app id (case-insensitive; o->0, i/l->1, b->8). Returns 0 and
 * fills key, or -1 with err (bad character, wrong length, nonzero padding). */
int spk_app_id_decode(const char *text, uint8_t key[32], gr_error_t *err);

/* The package id of a whole .spk file: hex of the first 16 bytes of its
 * SHA-256. Cannot fail. */
void spk_package_id(const void *spk, size_t len, char out[SPK_PACKAGE_ID_LEN + 1]);

/* Checks one archive entry name (non-empty, not "." or "..", no "/" or NUL,
 * at most SPK_MAX_NAME_BYTES). Returns 0, or -1 with err saying why. */
int spk_check_name(const char *name, size_t len, gr_error_t *err);

/* Checks a symlink target found at depth (0 = the package root directory)
 * stays inside the package: not absolute, not empty, no NUL, and ".." never
 * climbs above the root. Returns 0, or -1 with err. */
int spk_check_symlink(const char *target, size_t len, unsigned depth, gr_error_t *err);

/* Applies the table of re-keyed apps to the app id of a verified package in
 * place: a package signed by a revoked key is refused unless its package id
 * is one of the versions known to be genuine (-1 with err); a replacement
 * key's id becomes the original app's id. Returns 0. */
int spk_app_id_replace(char app_id[SPK_APP_ID_LEN + 1], const char *package_id, gr_error_t *err);

/* The id of the key that now signs for app_id, or NULL when it has none. */
const char *spk_app_id_replacement_of(const char *app_id);

/* A copy of text from a package (a title, a version) safe to print on a
 * terminal: control characters become '?'; UTF-8 is kept. Cannot fail. */
char *spk_printable(const char *s);

/* ---- keys ----------------------------------------------------------------- */

typedef struct spk_key {
    uint8_t public_key[32];
    uint8_t secret_key[64];
} spk_key;

/* The default keyring path ($HOME/.sandstorm-keyring), newly allocated. */
char *spk_default_keyring(void);

/* Generates a key and appends it to the keyring at path (created mode 0600).
 * Returns 0 and the key, or -1 with err. */
int spk_keygen(const char *path, spk_key *out, gr_error_t *err);

/* Reads every key of the keyring at path into a new array (*keys, *n; free
 * with spk_keys_free). A missing keyring is an error. Returns 0, or -1. */
int spk_keyring_read(const char *path, spk_key **keys, size_t *n, gr_error_t *err);

/* Wipes and frees keys from spk_keyring_read. Safe on NULL. */
void spk_keys_free(spk_key *keys, size_t n);

/* Finds the key of app_id in the keyring at path. Returns 0, or -1 with err
 * (no such key, unreadable keyring). */
int spk_keyring_find(const char *path, const char *app_id, spk_key *out, gr_error_t *err);

/* Appends the framed KeyFile message of key to out. Cannot fail. */
void spk_key_write(const spk_key *key, gr_buf *out);

/* ---- reading and verifying ------------------------------------------------ */

typedef struct spk_info {
    char app_id[SPK_APP_ID_LEN + 1];
    char package_id[SPK_PACKAGE_ID_LEN + 1];
    char *title;             /* appTitle.defaultText */
    char *marketing_version; /* appMarketingVersion.defaultText, may be "" */
    uint32_t version;        /* appVersion */
    uint32_t min_upgradable_version;
    uint64_t files; /* entries in the tree */
    uint64_t bytes; /* bytes of file contents */
} spk_info;

/* A verified package held in memory: the archive bytes and what was checked.
 * Opaque; see spk_package_info. */
typedef struct spk_package spk_package;

/* Reads the .spk at path as a stream (xz decoded in chunks, hashes computed
 * on the way), checks the magic, the signature and every rule of the archive
 * and manifest, and returns the package in *out. Returns 0, or -1 with err
 * naming the problem. */
int spk_package_open(const char *path, spk_package **out, gr_error_t *err);

/* Like spk_package_open over bytes in memory (for the fuzz target). */
int spk_package_open_mem(const void *buf, size_t len, spk_package **out, gr_error_t *err);

/* What the package says about itself (owned by pkg). */
const spk_info *spk_package_info(const spk_package *pkg);

/* Frees a package. Safe on NULL. */
void spk_package_free(spk_package *pkg);

/* Checks a decompressed Archive message (framed) and the manifest in it, as
 * spk_package_open does after the signature. Returns 0 and fills info (free
 * with spk_info_release), or -1 with err. For the fuzz target and tests. */
int spk_check_archive(const void *archive, size_t len, spk_info *info, gr_error_t *err);

/* Frees the strings of an info. */
void spk_info_release(spk_info *info);

/* Unpacks pkg into dir, which must not exist: the tree is written to a
 * temporary directory beside it, synced, then renamed into place, so dir
 * either appears whole or not at all. Returns 0, or -1 with err. */
int spk_unpack(const spk_package *pkg, const char *dir, gr_error_t *err);

/* ---- packing -------------------------------------------------------------- */

typedef struct spk_pack_options {
    const char *pkgdef;             /* path of sandstorm-pkgdef.capnp */
    const char *keyring;            /* NULL = spk_default_keyring() */
    const char *schema_dir;         /* holding sandstorm/package.capnp; NULL = default */
    const char *capnp;              /* the capnp compiler; NULL = "capnp" on PATH */
    const char *constant;           /* the PackageDefinition constant; NULL = "pkgdef" */
    const char *const *import_path; /* more -I directories, NULL-terminated; may be NULL */
} spk_pack_options;

/* The directory holding sandstorm/package.capnp that this build uses unless
 * told otherwise: $GRANARY_SCHEMA_DIR, else the source tree it was built
 * from, else the installed copy (<datadir>/granary/schema). */
const char *spk_schema_dir(void);

/* Packs the project described by opts->pkgdef into out_path (written to a
 * temporary file and renamed). Fills *info when info is not NULL (release
 * with spk_info_release). Returns 0, or -1 with err. */
int spk_pack(const spk_pack_options *opts, const char *out_path, spk_info *info, gr_error_t *err);

/* ---- installing ----------------------------------------------------------- */

typedef enum spk_install_status {
    SPK_INSTALLED_NEW_APP, /* first package of its app */
    SPK_INSTALLED_UPGRADE, /* newer than every installed version: a candidate */
    SPK_INSTALLED_OLDER,   /* another version of an installed app, not newer */
    SPK_INSTALLED_ALREADY, /* this package was installed already: nothing done */
} spk_install_status;

typedef struct spk_install_result {
    spk_install_status status;
    spk_info info;         /* release with spk_info_release */
    long previous_version; /* newest installed version before, or -1 */
    char *dir;             /* <data>/apps/<packageId> */
} spk_install_result;

/* Verifies the .spk at path and installs it under data_dir: unpacked once to
 * data_dir/apps/<packageId>/ (atomically) and recorded in st. Installing
 * nothing new is status SPK_INSTALLED_ALREADY; a newer version of an app is
 * recorded but never applied to grains. On error nothing is left behind (no
 * directory, no temporary, no rows). Safe on a worker thread as long as no
 * other thread uses st meanwhile. Returns 0 and fills *out (release with
 * spk_install_result_release), or -1 with err. */
int spk_install(const char *path, const char *data_dir, st_store *st, spk_install_result *out,
                gr_error_t *err);

void spk_install_result_release(spk_install_result *r);

#endif
