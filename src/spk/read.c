/* Reading a package: the magic, one xz stream decoded in chunks, the
 * Signature message, then the Archive message decoded straight into one
 * buffer of its framed size (so file contents are never copied twice), the
 * Ed25519 check over its SHA-512, and the walk that enforces every rule of
 * the tree and the manifest before anything is written to disk. */
#include <errno.h>
#include <fcntl.h>
#include <lzma.h>
#include <sodium.h>
#include <unistd.h>

#include "spk_internal.h"

#define XZ_MEMLIMIT (256u << 20)
#define SIG_MAX_BYTES 4096

/* ---- the decompressing source -------------------------------------------- */

typedef struct source {
    int fd;             /* -1 when reading from memory */
    const uint8_t *mem; /* remaining bytes when fd < 0 */
    size_t mem_len;
    uint8_t in[64 * 1024];
    lzma_stream xz;
    bool xz_started, xz_end, xz_failed, eof;
    crypto_hash_sha256_state file_hash;
} source;

/* Raw bytes of the file, hashed for the package id. Returns bytes read (0 at
 * EOF) or -1 with err. */
static ssize_t raw_read(source *s, uint8_t *buf, size_t n, gr_error_t *err)
{
    ssize_t r;
    if (s->fd >= 0) {
        do
            r = read(s->fd, buf, n);
        while (r < 0 && errno == EINTR);
        if (r < 0)
            return gr_make_error(err, errno, "read package");
    } else {
        r = (ssize_t)(n < s->mem_len ? n : s->mem_len);
        memcpy(buf, s->mem, (size_t)r);
        s->mem += r;
        s->mem_len -= (size_t)r;
    }
    crypto_hash_sha256_update(&s->file_hash, buf, (size_t)r);
    return r;
}

static const char *xz_problem(lzma_ret rc)
{
    switch (rc) {
    case LZMA_FORMAT_ERROR:
        return "not an xz stream";
    case LZMA_DATA_ERROR:
        return "corrupt xz data";
    case LZMA_MEMLIMIT_ERROR:
        return "xz stream needs too much memory to decode";
    case LZMA_OPTIONS_ERROR:
        return "unsupported xz options";
    case LZMA_BUF_ERROR:
        return "truncated xz stream";
    default:
        return "xz decoder failed";
    }
}

/* Fills out[0..n) with decompressed bytes. Sets *got to the bytes produced
 * (less than n only at the end of the stream). Returns 0, or -1 with err. */
static int xz_read(source *s, uint8_t *out, size_t n, size_t *got, gr_error_t *err)
{
    s->xz.next_out = out;
    s->xz.avail_out = n;
    while (s->xz.avail_out > 0 && !s->xz_end) {
        if (s->xz.avail_in == 0 && !s->eof) {
            ssize_t r = raw_read(s, s->in, sizeof(s->in), err);
            if (r < 0)
                return -1;
            if (r == 0)
                s->eof = true;
            s->xz.next_in = s->in;
            s->xz.avail_in = (size_t)r;
        }
        lzma_ret rc = lzma_code(&s->xz, s->eof ? LZMA_FINISH : LZMA_RUN);
        if (rc == LZMA_STREAM_END) {
            s->xz_end = true;
        } else if (rc != LZMA_OK) {
            /* A stream cut short shows as LZMA_BUF_ERROR: liblzma returns it
             * on the second call in a row that can make no progress. */
            s->xz_failed = true;
            return gr_make_error(err, 0, "%s", xz_problem(rc));
        }
    }
    *got = n - s->xz.avail_out;
    return 0;
}

/* Reads exactly n bytes or fails naming what was cut short. */
static int xz_read_exact(source *s, uint8_t *out, size_t n, const char *what, gr_error_t *err)
{
    size_t got = 0;
    if (xz_read(s, out, n, &got, err) < 0)
        return -1;
    if (got < n)
        return gr_make_error(err, 0, "package truncated in the %s", what);
    return 0;
}

/* After a failure in what the stream decoded: xz's checks come only at the
 * end of a block, so damaged xz data can first look like a bad message.
 * Decodes the rest (bounded by the archive limit) and, when xz itself then
 * fails, reports that instead, as the real problem. */
static void blame_xz(source *s, gr_error_t *err)
{
    if (!s->xz_started || s->xz_end || s->xz_failed)
        return;
    uint8_t *scratch = gr_malloc(64 * 1024);
    uint64_t total = 0;
    gr_error_t xz_err = NULL;
    while (!s->xz_end && total <= SPK_MAX_ARCHIVE_BYTES) {
        size_t got = 0;
        if (xz_read(s, scratch, 64 * 1024, &got, &xz_err) < 0)
            break;
        total += got;
    }
    free(scratch);
    if (xz_err) {
        gr_error_release(err);
        *err = xz_err;
    }
}

/* Reads one framed message of at most max bytes and max_segs segments: its
 * segment table first, then the rest straight into a buffer of the frame's
 * size. */
static int read_frame(source *s, size_t max, uint32_t max_segs, const char *what, uint8_t **out,
                      size_t *out_len, gr_error_t *err)
{
    uint8_t first[4];
    if (xz_read_exact(s, first, sizeof(first), what, err) < 0)
        return -1;
    uint64_t nsegs =
        (uint64_t)(first[0] | first[1] << 8 | first[2] << 16 | (uint32_t)first[3] << 24) + 1;
    if (nsegs > max_segs)
        return gr_make_error(err, 0, "%s has %llu segments, more than the limit of %u", what,
                             (unsigned long long)nsegs, max_segs);
    size_t table = (size_t)(4 + 4 * nsegs + 7) / 8 * 8;
    uint8_t *head = gr_malloc(table);
    memcpy(head, first, sizeof(first));
    size_t need = 0;
    cp_read_options opts = {.max_segments = max_segs};
    if (xz_read_exact(s, head + 4, table - 4, what, err) < 0) {
        free(head);
        return -1;
    }
    if (cp_frame_size(head, table, SIZE_MAX / 2, &opts, &need, err) != 1) {
        free(head);
        return *err ? gr_error_prefix(err, "%s", what)
                    : gr_make_error(err, 0, "%s: bad segment table", what);
    }
    if (need > max) {
        free(head);
        return gr_make_error(err, 0, "%s is %zu bytes, more than the limit of %zu", what, need,
                             max);
    }
    uint8_t *buf = malloc(need);
    if (!buf) {
        free(head);
        return gr_make_error(err, ENOMEM, "%s of %zu bytes", what, need);
    }
    memcpy(buf, head, table);
    free(head);
    if (xz_read_exact(s, buf + table, need - table, what, err) < 0) {
        free(buf);
        return -1;
    }
    *out = buf;
    *out_len = need;
    return 0;
}

/* ---- the archive walk ------------------------------------------------------ */

typedef struct walk {
    spk_info *info;
    gr_buf path; /* the entry being checked, for messages */
} walk;

static int cmp_text(const void *a, const void *b)
{
    const cp_text *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->str, y->str, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static int entry_error(walk *w, gr_error_t *err)
{
    return gr_error_prefix(err, "archive entry %s", w->path.len ? w->path.data : "/");
}

static int walk_dir(walk *w, Archive_File_LR files, unsigned depth, cp_message *m, gr_error_t *err)
{
    uint32_t n = Archive_File_list_len(files);
    if (n > SPK_MAX_ENTRIES || w->info->files + n > SPK_MAX_ENTRIES)
        return gr_make_error(err, 0, "archive has more than %d entries", SPK_MAX_ENTRIES);
    w->info->files += n;
    cp_text *names = gr_calloc(n ? n : 1, sizeof(*names));
    size_t base = w->path.len;
    int rc = 0;
    for (uint32_t i = 0; i < n && rc == 0; i++) {
        Archive_File_R f = Archive_File_list_get(files, i);
        cp_text name = Archive_File_get_name(f);
        if (!cp_message_ok(m))
            break;
        names[i] = name;
        w->path.len = base;
        if (base)
            gr_buf_append(&w->path, "/", 1);
        spk__quote(&w->path, name.str, name.len, SPK_MAX_NAME_BYTES);
        if (spk_check_name(name.str, name.len, err) < 0) {
            rc = entry_error(w, err);
            break;
        }
        switch (Archive_File_which(f)) {
        case Archive_File_WHICH_regular:
        case Archive_File_WHICH_executable: {
            cp_data d = Archive_File_get_regular(f);
            if (d.len > SPK_MAX_FILE_BYTES) {
                gr_make_error(err, 0, "file of %zu bytes is over the limit of %llu", d.len,
                              (unsigned long long)SPK_MAX_FILE_BYTES);
                rc = entry_error(w, err);
            }
            w->info->bytes += d.len;
            break;
        }
        case Archive_File_WHICH_symlink: {
            cp_text t = Archive_File_get_symlink(f);
            if (cp_message_ok(m) && spk_check_symlink(t.str, t.len, depth, err) < 0)
                rc = entry_error(w, err);
            break;
        }
        case Archive_File_WHICH_directory:
            if (depth + 1 > SPK_MAX_DEPTH) {
                gr_make_error(err, 0, "directories nested deeper than %d", SPK_MAX_DEPTH);
                rc = entry_error(w, err);
                break;
            }
            rc = walk_dir(w, Archive_File_get_directory(f), depth + 1, m, err);
            break;
        default:
            gr_make_error(err, 0, "unknown entry kind %u", Archive_File_which(f));
            rc = entry_error(w, err);
            break;
        }
    }
    w->path.len = base;
    if (base)
        w->path.data[base] = '\0';
    if (rc == 0 && cp_message_ok(m)) {
        if (n)
            qsort(names, n, sizeof(*names), cmp_text);
        for (uint32_t i = 1; i < n; i++) {
            if (cmp_text(&names[i - 1], &names[i]) == 0) {
                gr_buf q = GR_BUF_INIT;
                spk__quote(&q, names[i].str, names[i].len, 80);
                rc = gr_make_error(err, 0, "archive directory %s has two entries named \"%s\"",
                                   base ? w->path.data : "/", q.data ? q.data : "");
                gr_buf_release(&q);
                break;
            }
        }
    }
    free(names);
    return rc;
}

static Archive_File_R find_root(Archive_R ar, const char *name, bool *found)
{
    Archive_File_LR files = Archive_get_files(ar);
    size_t len = strlen(name);
    for (uint32_t i = 0; i < Archive_File_list_len(files); i++) {
        Archive_File_R f = Archive_File_list_get(files, i);
        cp_text t = Archive_File_get_name(f);
        if (t.len == len && memcmp(t.str, name, len) == 0) {
            *found = true;
            return f;
        }
    }
    *found = false;
    Archive_File_R none = {cp_struct_reader_empty()};
    return none;
}

static bool http_url(cp_text t)
{
    return t.len == 0 || gr_starts_with(t.str, "http://") || gr_starts_with(t.str, "https://");
}

static int check_command(Manifest_Command_R c, const char *what, gr_error_t *err)
{
    cp_list_reader argv = cp_get_list(c.s, 1, CP_ELEM_POINTER, cp_ptr_null());
    if (argv.len == 0 && Manifest_Command_get_deprecatedExecutablePath(c).len == 0)
        return gr_make_error(err, 0, "manifest %s has no command", what);
    return 0;
}

/* Opens an embedded message (the manifest or the bridge config). */
static int open_embedded(Archive_R ar, const char *name, bool required, cp_message *m,
                         bool *present, gr_error_t *err)
{
    bool found = false;
    Archive_File_R f = find_root(ar, name, &found);
    *present = false;
    if (!found) {
        if (required)
            return gr_make_error(err, 0, "package has no %s", name);
        return 0;
    }
    if (Archive_File_which(f) != Archive_File_WHICH_regular)
        return gr_make_error(err, 0, "%s is not a regular file", name);
    cp_data d = Archive_File_get_regular(f);
    if (d.len > SPK_MAX_MANIFEST_WORDS * 8)
        return gr_make_error(err, 0, "%s is %zu bytes, more than the limit of %llu", name, d.len,
                             (unsigned long long)(SPK_MAX_MANIFEST_WORDS * 8));
    cp_read_options opts = {.traversal_limit_words = SPK_MAX_MANIFEST_WORDS};
    if (cp_message_read(m, d.ptr, d.len, &opts, err) < 0)
        return gr_error_prefix(err, "%s", name);
    *present = true;
    return 0;
}

static int check_manifest(Archive_R ar, spk_info *info, gr_error_t *err)
{
    cp_message m;
    bool present;
    if (open_embedded(ar, "sandstorm-manifest", true, &m, &present, err) < 0)
        return -1;
    Manifest_R man = Manifest_root(&m);
    int rc = 0;
    cp_text title = LocalizedText_get_defaultText(Manifest_get_appTitle(man));
    cp_text mv = LocalizedText_get_defaultText(Manifest_get_appMarketingVersion(man));
    Manifest_Action_LR actions = Manifest_get_actions(man);
    Metadata_R meta = Manifest_get_metadata(man);
    if (title.len == 0)
        rc = gr_make_error(err, 0, "manifest has no appTitle");
    else if (Manifest_get_minApiVersion(man) > 0)
        rc = gr_make_error(err, 0, "manifest needs API version %u; Granary supports 0",
                           Manifest_get_minApiVersion(man));
    else if (!Manifest_has_continueCommand(man))
        rc = gr_make_error(err, 0, "manifest has no continueCommand");
    else if (check_command(Manifest_get_continueCommand(man), "continueCommand", err) < 0)
        rc = -1;
    else if (Manifest_Action_list_len(actions) == 0)
        rc = gr_make_error(err, 0, "manifest has no actions");
    else if (!http_url(Metadata_get_website(meta)) || !http_url(Metadata_get_codeUrl(meta)))
        rc = gr_make_error(err, 0,
                           "manifest website and codeUrl must start with http:// or https://");
    for (uint32_t i = 0; rc == 0 && i < Manifest_Action_list_len(actions); i++) {
        Manifest_Action_R a = Manifest_Action_list_get(actions, i);
        char what[32];
        snprintf(what, sizeof(what), "action %u", i);
        if (!Manifest_Action_has_command(a))
            rc = gr_make_error(err, 0, "manifest %s has no command", what);
        else
            rc = check_command(Manifest_Action_get_command(a), what, err);
    }
    if (rc == 0 && cp_message_check(&m, err) < 0)
        rc = gr_error_prefix(err, "sandstorm-manifest");
    if (rc == 0) {
        info->title = gr_strndup(title.str, title.len);
        info->marketing_version = gr_strndup(mv.str, mv.len);
        info->version = Manifest_get_appVersion(man);
        info->min_upgradable_version = Manifest_get_minUpgradableAppVersion(man);
    }
    cp_message_release(&m);
    if (rc < 0)
        return -1;

    if (open_embedded(ar, "sandstorm-http-bridge-config", false, &m, &present, err) < 0)
        return -1;
    if (present) {
        BridgeConfig_R bc = BridgeConfig_root(&m);
        UiView_ViewInfo_R vi = BridgeConfig_get_viewInfo(bc);
        (void)UiView_ViewInfo_get_permissions(vi);
        (void)UiView_ViewInfo_get_roles(vi);
        (void)BridgeConfig_get_apiPath(bc);
        rc = cp_message_check(&m, err) < 0 ? gr_error_prefix(err, "sandstorm-http-bridge-config")
                                           : 0;
        cp_message_release(&m);
    }
    return rc;
}

static cp_read_options archive_options(size_t len)
{
    cp_read_options o = {
        .traversal_limit_words = len / 8 + 1,
        .nesting_limit = 128,
        .max_segments = SPK_MAX_SEGMENTS,
    };
    return o;
}

/* Walks a framed archive already opened in m (len bytes). */
static int check_opened(cp_message *m, const cp_read_options *o, spk_info *info, gr_error_t *err)
{
    walk w = {.info = info};
    Archive_R ar = Archive_root(m);
    int rc = walk_dir(&w, Archive_get_files(ar), 0, m, err);
    gr_buf_release(&w.path);
    if (rc == 0 && cp_message_check(m, err) < 0)
        rc = gr_error_prefix(err, "archive");
    /* The walk reads the archive once over, which is what the traversal
     * limit bounds. The manifest pass scans the root directory twice (for
     * the manifest and the bridge config), so it gets twice the budget. */
    cp_read_options again = *o;
    again.traversal_limit_words = 2 * o->traversal_limit_words + 64;
    cp_message_reset_limits(m, &again);
    if (rc == 0)
        rc = check_manifest(ar, info, err);
    if (rc == 0 && cp_message_check(m, err) < 0)
        rc = gr_error_prefix(err, "archive");
    return rc;
}

int spk_check_archive(const void *archive, size_t len, spk_info *info, gr_error_t *err)
{
    memset(info, 0, sizeof(*info));
    if (len > SPK_MAX_ARCHIVE_BYTES)
        return gr_make_error(err, 0, "archive is %zu bytes, more than the limit of %llu", len,
                             (unsigned long long)SPK_MAX_ARCHIVE_BYTES);
    cp_read_options o = archive_options(len);
    cp_message m;
    if (cp_message_read(&m, archive, len, &o, err) < 0)
        return gr_error_prefix(err, "archive");
    int rc = check_opened(&m, &o, info, err);
    cp_message_release(&m);
    if (rc < 0)
        spk_info_release(info);
    return rc;
}

void spk_info_release(spk_info *info)
{
    free(info->title);
    free(info->marketing_version);
    info->title = info->marketing_version = NULL;
}

/* ---- the whole package ------------------------------------------------------ */

static int open_source(source *s, spk_package **out, gr_error_t *err)
{
    uint8_t magic[SPK_MAGIC_LEN];
    size_t have = 0;
    while (have < SPK_MAGIC_LEN) {
        ssize_t r = raw_read(s, magic + have, SPK_MAGIC_LEN - have, err);
        if (r < 0)
            return -1;
        if (r == 0)
            break;
        have += (size_t)r;
    }
    if (have < SPK_MAGIC_LEN || memcmp(magic, SPK_MAGIC, SPK_MAGIC_LEN) != 0)
        return gr_make_error(err, 0, "not a package: wrong magic number");

    if (lzma_stream_decoder(&s->xz, XZ_MEMLIMIT, 0) != LZMA_OK)
        return gr_make_error(err, 0, "cannot start the xz decoder");
    s->xz_started = true;

    uint8_t *sig_buf = NULL;
    size_t sig_len = 0;
    if (read_frame(s, SIG_MAX_BYTES, 16, "signature", &sig_buf, &sig_len, err) < 0) {
        blame_xz(s, err);
        return -1;
    }
    cp_message sm;
    int rc = cp_message_read(&sm, sig_buf, sig_len, NULL, err);
    free(sig_buf);
    if (rc < 0) {
        gr_error_prefix(err, "signature");
        blame_xz(s, err);
        return -1;
    }
    Signature_R sig = Signature_root(&sm);
    cp_data pub = Signature_get_publicKey(sig), sg = Signature_get_signature(sig);
    uint8_t public_key[32], signed_msg[128];
    if (cp_message_check(&sm, err) < 0 || pub.len != 32 || sg.len != 128) {
        if (*err)
            gr_error_prefix(err, "signature");
        else
            gr_make_error(err, 0,
                          "signature: public key of %zu bytes and signature of %zu bytes, "
                          "want 32 and 128",
                          pub.len, sg.len);
        cp_message_release(&sm);
        blame_xz(s, err);
        return -1;
    }
    memcpy(public_key, pub.ptr, 32);
    memcpy(signed_msg, sg.ptr, 128);
    cp_message_release(&sm);

    spk_package *pkg = gr_calloc(1, sizeof(*pkg));
    if (read_frame(s, SPK_MAX_ARCHIVE_BYTES, SPK_MAX_SEGMENTS, "archive", &pkg->archive,
                   &pkg->archive_len, err) < 0) {
        free(pkg);
        blame_xz(s, err);
        return -1;
    }
    /* Nothing may follow the archive: not in the xz stream, not after it. */
    uint8_t extra;
    size_t got = 0;
    if (xz_read(s, &extra, 1, &got, err) < 0 || got != 0 || !s->xz_end) {
        if (got) {
            gr_make_error(err, 0, "data after the archive in the xz stream");
            blame_xz(s, err);
        } else if (!*err) {
            gr_make_error(err, 0, "truncated xz stream");
        }
        spk_package_free(pkg);
        return -1;
    }
    ssize_t r = s->xz.avail_in ? 1 : raw_read(s, s->in, sizeof(s->in), err);
    if (r != 0) {
        if (r > 0)
            gr_make_error(err, 0, "bytes after the xz stream");
        spk_package_free(pkg);
        return -1;
    }

    uint8_t hash[crypto_hash_sha512_BYTES], opened[128];
    unsigned long long opened_len = 0;
    crypto_hash_sha512(hash, pkg->archive, pkg->archive_len);
    if (crypto_sign_open(opened, &opened_len, signed_msg, sizeof(signed_msg), public_key) != 0 ||
        opened_len != sizeof(hash)) {
        spk_package_free(pkg);
        return gr_make_error(err, 0, "bad signature: not made by the package's key");
    }
    if (sodium_memcmp(opened, hash, sizeof(hash)) != 0) {
        spk_package_free(pkg);
        return gr_make_error(err, 0, "bad signature: the archive does not match what was signed");
    }

    cp_read_options o = archive_options(pkg->archive_len);
    if (cp_message_open(&pkg->msg, pkg->archive, pkg->archive_len, &o, err) < 0) {
        free(pkg->archive);
        free(pkg);
        return gr_error_prefix(err, "archive");
    }
    if (check_opened(&pkg->msg, &o, &pkg->info, err) < 0) {
        spk_package_free(pkg);
        return -1;
    }
    cp_message_reset_limits(&pkg->msg, &o);
    spk_app_id_encode(public_key, pkg->info.app_id);
    uint8_t file_hash[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&s->file_hash, file_hash);
    gr_hex(file_hash, 16, pkg->info.package_id);
    pkg->info.package_id[SPK_PACKAGE_ID_LEN] = '\0';
    if (spk_app_id_replace(pkg->info.app_id, pkg->info.package_id, err) < 0) {
        spk_package_free(pkg);
        return -1;
    }
    *out = pkg;
    return 0;
}

static int open_with(source *s, spk_package **out, gr_error_t *err)
{
    if (sodium_init() < 0)
        return gr_make_error(err, 0, "libsodium failed to initialise");
    crypto_hash_sha256_init(&s->file_hash);
    lzma_stream init = LZMA_STREAM_INIT;
    s->xz = init;
    int rc = open_source(s, out, err);
    if (s->xz_started)
        lzma_end(&s->xz);
    return rc;
}

int spk_package_open(const char *path, spk_package **out, gr_error_t *err)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return gr_make_error(err, errno, "open %s", path);
    source *s = gr_calloc(1, sizeof(*s));
    s->fd = fd;
    int rc = open_with(s, out, err);
    free(s);
    if (rc < 0)
        return gr_error_prefix(err, "%s", path);
    return 0;
}

int spk_package_open_mem(const void *buf, size_t len, spk_package **out, gr_error_t *err)
{
    source *s = gr_calloc(1, sizeof(*s));
    s->fd = -1;
    s->mem = buf;
    s->mem_len = len;
    int rc = open_with(s, out, err);
    free(s);
    return rc;
}

const spk_info *spk_package_info(const spk_package *pkg)
{
    return &pkg->info;
}

void spk_package_free(spk_package *pkg)
{
    if (!pkg)
        return;
    if (pkg->archive)
        cp_message_release(&pkg->msg);
    spk_info_release(&pkg->info);
    free(pkg->archive);
    free(pkg);
}
