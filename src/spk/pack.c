/* Packing: evaluate sandstorm-pkgdef.capnp with the capnp compiler against
 * Granary's schema, map the package tree through the source map, build the
 * Archive in one segment sized up front (file contents are read straight into
 * it), sign the SHA-512 of its frame, and stream magic + xz(Signature,
 * Archive) to a temporary file that is renamed into place. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <lzma.h>
#include <sodium.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "spk_internal.h"

extern char **environ;

#define PKGDEF_MAX_BYTES (64u << 20)

#ifndef GRANARY_SCHEMA_DIR
#define GRANARY_SCHEMA_DIR "schema"
#endif
#ifndef GRANARY_SCHEMA_INSTALL_DIR
#define GRANARY_SCHEMA_INSTALL_DIR "/usr/local/share/granary/schema"
#endif

const char *spk_schema_dir(void)
{
    const char *env = getenv("GRANARY_SCHEMA_DIR");
    if (env && *env)
        return env;
    /* The source tree this binary was built from, else where it installs. */
    if (access(GRANARY_SCHEMA_DIR "/sandstorm/package.capnp", R_OK) == 0)
        return GRANARY_SCHEMA_DIR;
    return GRANARY_SCHEMA_INSTALL_DIR;
}

/* ---- evaluating the package definition ----------------------------------- */

static int eval_pkgdef(const spk_pack_options *o, gr_buf *out, gr_error_t *err)
{
    _cleanup_free_ char *copy = gr_strdup(o->pkgdef), *copy2 = gr_strdup(o->pkgdef);
    const char *dir = dirname(copy), *base = basename(copy2);
    const char *schema = o->schema_dir ? o->schema_dir : spk_schema_dir();
    _cleanup_free_ char *inc = gr_asprintf("-I%s", schema);
    const char *capnp = o->capnp ? o->capnp : "capnp";
    size_t nimport = 0;
    while (o->import_path && o->import_path[nimport])
        nimport++;
    char **argv = gr_calloc(nimport + 8, sizeof(*argv));
    char **extra = gr_calloc(nimport + 1, sizeof(*extra));
    size_t a = 0;
    argv[a++] = (char *)capnp;
    argv[a++] = "eval";
    argv[a++] = "--binary";
    argv[a++] = inc;
    for (size_t i = 0; i < nimport; i++) {
        /* Relative import dirs are meant from where pack was run. */
        char *absdir = realpath(o->import_path[i], NULL);
        extra[i] = gr_asprintf("-I%s", absdir ? absdir : o->import_path[i]);
        free(absdir);
        argv[a++] = extra[i];
    }
    argv[a++] = (char *)base;
    argv[a++] = (char *)(o->constant ? o->constant : "pkgdef");
    argv[a] = NULL;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return gr_make_error(err, errno, "pipe");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addchdir_np(&fa, dir);
    /* The child runs in the pkgdef's directory; its PWD says so too (capnp
     * warns when PWD and the directory differ). */
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = gr_calloc(nenv + 2, sizeof(*envp));
    size_t n = 0;
    for (size_t i = 0; i < nenv; i++)
        if (!gr_starts_with(environ[i], "PWD="))
            envp[n++] = environ[i];
    _cleanup_free_ char *abs = realpath(dir, NULL);
    _cleanup_free_ char *pwd = abs ? gr_asprintf("PWD=%s", abs) : NULL;
    if (pwd)
        envp[n++] = pwd;
    pid_t pid;
    int rc = posix_spawnp(&pid, capnp, &fa, NULL, argv, envp);
    free(envp);
    for (size_t i = 0; i < nimport; i++)
        free(extra[i]);
    free(extra);
    free(argv);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        return gr_make_error(err, rc, "run %s", capnp);
    }
    int read_errno = 0;
    bool too_big = false;
    for (;;) {
        char chunk[65536];
        ssize_t r = read(fds[0], chunk, sizeof(chunk));
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            read_errno = errno;
            break;
        }
        if (r == 0)
            break;
        if (out->len + (size_t)r > PKGDEF_MAX_BYTES)
            too_big = true;
        else
            gr_buf_append(out, chunk, (size_t)r);
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return gr_make_error(err, 0, "%s eval of %s failed (see its message above)", capnp,
                             o->pkgdef);
    if (read_errno)
        return gr_make_error(err, read_errno, "read the output of %s", capnp);
    if (too_big)
        return gr_make_error(err, 0, "package definition is over %u bytes", PKGDEF_MAX_BYTES);
    return 0;
}

/* ---- the source map ------------------------------------------------------- */

typedef struct strset {
    char **v;
    size_t n;
} strset;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strset_add(strset *s, const char *str)
{
    s->v = gr_realloc(s->v, (s->n + 1) * sizeof(*s->v));
    s->v[s->n++] = gr_strdup(str);
}

static void strset_finish(strset *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof(*s->v), cmp_str);
    size_t o = 0;
    for (size_t i = 0; i < s->n; i++) {
        if (o > 0 && strcmp(s->v[o - 1], s->v[i]) == 0)
            free(s->v[i]);
        else
            s->v[o++] = s->v[i];
    }
    s->n = o;
}

static bool strset_has(const strset *s, const char *str)
{
    return s->n && bsearch(&str, s->v, s->n, sizeof(*s->v), cmp_str) != NULL;
}

static void strset_free(strset *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->v[i]);
    free(s->v);
}

/* True when path is p or lies under it ("" holds everything). */
static bool path_under(const char *path, const char *p)
{
    size_t n = strlen(p);
    if (n == 0)
        return true;
    return strncmp(path, p, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

typedef struct mapping {
    char *package; /* without leading or trailing slashes */
    char *source;  /* absolute, or relative to the pkgdef's directory */
    strset hide;
} mapping;

typedef struct packer {
    mapping *maps;
    size_t nmaps;
    bool whole_tree;
    strset files;    /* listed paths */
    strset prefixes; /* directories above listed paths */
    strset always;   /* alwaysInclude paths */
    uint64_t entries, bytes, words;
    dev_t out_dev; /* the output file, when it exists already: never packed */
    ino_t out_ino;
} packer;

static char *clean_path(const char *p, size_t len)
{
    while (len && p[0] == '/') {
        p++;
        len--;
    }
    while (len && p[len - 1] == '/')
        len--;
    return gr_strndup(p, len);
}

static void add_prefixes(strset *s, const char *path)
{
    _cleanup_free_ char *c = gr_strdup(path);
    for (char *slash = strrchr(c, '/'); slash; slash = strrchr(c, '/')) {
        *slash = '\0';
        strset_add(s, c);
    }
}

static bool included(const packer *pk, const char *path)
{
    if (pk->whole_tree || strset_has(&pk->files, path) || strset_has(&pk->prefixes, path))
        return true;
    for (size_t i = 0; i < pk->always.n; i++)
        if (path_under(path, pk->always.v[i]))
            return true;
    return false;
}

/* Where the first mapping that has path finds it: sets *src (new string)
 * and *st. Returns 1 found, 0 a directory implied by a deeper mapping, -1 none. */
static int resolve(const packer *pk, const char *path, char **src, struct stat *st)
{
    bool implied = false;
    for (size_t i = 0; i < pk->nmaps; i++) {
        const mapping *m = &pk->maps[i];
        if (!path_under(path, m->package)) {
            if (path_under(m->package, path))
                implied = true;
            continue;
        }
        const char *rel = path + strlen(m->package);
        while (*rel == '/')
            rel++;
        bool hidden = false;
        for (size_t h = 0; h < m->hide.n && !hidden; h++)
            hidden = path_under(rel, m->hide.v[h]);
        if (hidden)
            continue;
        char *s = *rel ? gr_asprintf("%s/%s", m->source, rel) : gr_strdup(m->source);
        if (lstat(s, st) == 0) {
            *src = s;
            return 1;
        }
        free(s);
    }
    *src = NULL;
    return implied ? 0 : -1;
}

/* The names under package directory path, from every mapping. */
static void list_children(const packer *pk, const char *path, strset *out)
{
    for (size_t i = 0; i < pk->nmaps; i++) {
        const mapping *m = &pk->maps[i];
        if (path_under(path, m->package)) {
            const char *rel = path + strlen(m->package);
            while (*rel == '/')
                rel++;
            _cleanup_free_ char *s =
                *rel ? gr_asprintf("%s/%s", m->source, rel) : gr_strdup(m->source);
            DIR *d = opendir(s);
            if (!d)
                continue;
            struct dirent *e;
            while ((e = readdir(d)) != NULL)
                if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
                    strset_add(out, e->d_name);
            closedir(d);
        } else if (path_under(m->package, path)) {
            const char *rest = m->package + strlen(path);
            while (*rest == '/')
                rest++;
            const char *slash = strchr(rest, '/');
            _cleanup_free_ char *first =
                gr_strndup(rest, slash ? (size_t)(slash - rest) : strlen(rest));
            if (*first)
                strset_add(out, first);
        }
    }
    strset_finish(out);
}

typedef enum { N_REGULAR, N_EXEC, N_SYMLINK, N_DIR } node_kind;

typedef struct node {
    char *name;
    node_kind kind;
    char *src;        /* regular: where to read it (NULL: contents below) */
    uint8_t *content; /* regular without src */
    size_t size;
    char *target; /* symlink */
    int64_t mtime_ns;
    struct node *kids;
    size_t nkids;
} node;

static void node_free(node *n)
{
    for (size_t i = 0; i < n->nkids; i++)
        node_free(&n->kids[i]);
    free(n->kids);
    free(n->name);
    free(n->src);
    free(n->content);
    free(n->target);
}

static node *node_add(node *dir, const char *name, node_kind kind)
{
    dir->kids = gr_realloc(dir->kids, (dir->nkids + 1) * sizeof(*dir->kids));
    node *n = &dir->kids[dir->nkids++];
    memset(n, 0, sizeof(*n));
    n->name = gr_strdup(name);
    n->kind = kind;
    return n;
}

static void count(packer *pk, const char *name, size_t payload)
{
    pk->entries++;
    pk->words += 4 + (strlen(name) + 8) / 8 + (payload + 7) / 8 + 1;
}

static const char *const reserved_root[] = {
    "sandstorm-manifest", "sandstorm-http-bridge-config", "dev", "tmp", "var", "proc"};

static int build_dir(packer *pk, node *dir, const char *path, unsigned depth, gr_error_t *err)
{
    if (depth > SPK_MAX_DEPTH)
        return gr_make_error(err, 0, "%s: directories nested deeper than %d", path, SPK_MAX_DEPTH);
    strset names = {0};
    list_children(pk, path, &names);
    int rc = 0;
    for (size_t i = 0; i < names.n && rc == 0; i++) {
        const char *name = names.v[i];
        bool skip = false;
        for (size_t r = 0; depth == 0 && r < sizeof(reserved_root) / sizeof(*reserved_root); r++)
            skip = skip || strcmp(name, reserved_root[r]) == 0;
        _cleanup_free_ char *child = *path ? gr_asprintf("%s/%s", path, name) : gr_strdup(name);
        if (skip) {
            gr_warn("pack: leaving out /%s: the packer makes that entry itself", child);
            continue;
        }
        if (!included(pk, child))
            continue;
        if (spk_check_name(name, strlen(name), err) < 0) {
            rc = gr_error_prefix(err, "%s", child);
            break;
        }
        char *src = NULL;
        struct stat st;
        int found = resolve(pk, child, &src, &st);
        if (found < 0)
            continue;
        if (pk->entries >= SPK_MAX_ENTRIES) {
            free(src);
            rc = gr_make_error(err, 0, "package has more than %d entries", SPK_MAX_ENTRIES);
            break;
        }
        if (found == 0 || S_ISDIR(st.st_mode)) {
            node *n = node_add(dir, name, N_DIR);
            if (found)
                n->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            free(src);
            count(pk, name, 0);
            rc = build_dir(pk, n, child, depth + 1, err);
        } else if (S_ISREG(st.st_mode) && st.st_ino == pk->out_ino && st.st_dev == pk->out_dev) {
            gr_warn("pack: leaving out %s: it is the package being written", src);
            free(src);
        } else if (S_ISREG(st.st_mode)) {
            if ((uint64_t)st.st_size > SPK_MAX_FILE_BYTES) {
                rc = gr_make_error(err, 0, "%s: %lld bytes, over the limit of %llu bytes", src,
                                   (long long)st.st_size, (unsigned long long)SPK_MAX_FILE_BYTES);
                free(src);
                break;
            }
            node *n = node_add(dir, name, (st.st_mode & 0111) ? N_EXEC : N_REGULAR);
            n->src = src;
            n->size = (size_t)st.st_size;
            n->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            pk->bytes += n->size;
            count(pk, name, n->size);
        } else if (S_ISLNK(st.st_mode)) {
            char target[4096];
            ssize_t len = readlink(src, target, sizeof(target) - 1);
            if (len < 0) {
                rc = gr_make_error(err, errno, "readlink %s", src);
                free(src);
                break;
            }
            target[len] = '\0';
            if (spk_check_symlink(target, (size_t)len, depth, err) < 0) {
                rc = gr_error_prefix(err, "%s", src);
                free(src);
                break;
            }
            node *n = node_add(dir, name, N_SYMLINK);
            n->target = gr_strdup(target);
            n->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            count(pk, name, (size_t)len + 1);
            free(src);
        } else {
            gr_warn("pack: leaving out %s: not a file, directory or symlink", src);
            free(src);
        }
    }
    strset_free(&names);
    return rc;
}

static void fill(packer *pk, Archive_File_LB list, const node *dir, gr_error_t *err, int *rc)
{
    for (size_t i = 0; i < dir->nkids && *rc == 0; i++) {
        const node *n = &dir->kids[i];
        Archive_File_B f = Archive_File_list_at(list, (uint32_t)i);
        Archive_File_set_name(f, n->name, strlen(n->name));
        Archive_File_set_lastModificationTimeNs(f, n->mtime_ns);
        switch (n->kind) {
        case N_REGULAR:
        case N_EXEC: {
            cp_ptr_builder p =
                n->kind == N_EXEC ? Archive_File_ptr_executable(f) : Archive_File_ptr_regular(f);
            if (!n->src) {
                cp_ptr_set_data(p, n->content ? n->content : (const uint8_t *)"", n->size);
                break;
            }
            cp_list_builder data = cp_ptr_init_list(p, CP_ELEM_BYTE, (uint32_t)n->size);
            _cleanup_close_ int fd = open(n->src, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0) {
                *rc = gr_make_error(err, errno, "open %s", n->src);
                break;
            }
            size_t off = 0;
            while (off < n->size) {
                ssize_t r = read(fd, data.base + off, n->size - off);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r <= 0) {
                    *rc = r < 0 ? gr_make_error(err, errno, "read %s", n->src)
                                : gr_make_error(err, 0, "%s shrank while packing", n->src);
                    break;
                }
                off += (size_t)r;
            }
            break;
        }
        case N_SYMLINK:
            Archive_File_set_symlink(f, n->target, strlen(n->target));
            break;
        case N_DIR: {
            Archive_File_LB kids = Archive_File_init_directory(f, (uint32_t)n->nkids);
            fill(pk, kids, n, err, rc);
            break;
        }
        }
    }
}

static void load_packer(packer *pk, PackageDefinition_R pd, const char *pkgdef)
{
    _cleanup_free_ char *copy = gr_strdup(pkgdef);
    const char *dir = dirname(copy);
    SourceMap_Mapping_LR maps = SourceMap_get_searchPath(PackageDefinition_get_sourceMap(pd));
    pk->nmaps = SourceMap_Mapping_list_len(maps);
    pk->maps = gr_calloc(pk->nmaps ? pk->nmaps : 1, sizeof(*pk->maps));
    for (size_t i = 0; i < pk->nmaps; i++) {
        SourceMap_Mapping_R m = SourceMap_Mapping_list_get(maps, (uint32_t)i);
        cp_text p = SourceMap_Mapping_get_packagePath(m), s = SourceMap_Mapping_get_sourcePath(m);
        pk->maps[i].package = clean_path(p.str, p.len);
        if (s.len && s.str[0] == '/')
            pk->maps[i].source = gr_strndup(s.str, s.len);
        else
            pk->maps[i].source = gr_asprintf("%s/%.*s", dir, (int)s.len, s.str);
        cp_list_reader hide = SourceMap_Mapping_get_hidePaths(m);
        for (uint32_t h = 0; h < hide.len; h++) {
            cp_text t = cp_list_get_text(hide, h);
            _cleanup_free_ char *c = clean_path(t.str, t.len);
            strset_add(&pk->maps[i].hide, c);
        }
    }
    cp_list_reader always = PackageDefinition_get_alwaysInclude(pd);
    for (uint32_t i = 0; i < always.len; i++) {
        cp_text t = cp_list_get_text(always, i);
        _cleanup_free_ char *c = clean_path(t.str, t.len);
        strset_add(&pk->always, c);
        add_prefixes(&pk->prefixes, c);
    }
    cp_text fl = PackageDefinition_get_fileList(pd);
    bool have_list = false;
    if (fl.len) {
        _cleanup_free_ char *path =
            fl.str[0] == '/' ? gr_strdup(fl.str) : gr_asprintf("%s/%s", dir, fl.str);
        char *text = NULL;
        size_t len = 0;
        gr_error_t e = NULL;
        if (gr_read_file(path, 256u << 20, &text, &len, &e) == 0) {
            have_list = true;
            char *save = NULL;
            for (char *line = strtok_r(text, "\n", &save); line;
                 line = strtok_r(NULL, "\n", &save)) {
                /* As Sandstorm reads it: '#' starts a comment, blanks are trimmed. */
                char *hash = strchr(line, '#');
                if (hash)
                    *hash = '\0';
                char *t = gr_strstrip(line);
                _cleanup_free_ char *c = clean_path(t, strlen(t));
                if (*c) {
                    strset_add(&pk->files, c);
                    add_prefixes(&pk->prefixes, c);
                }
            }
            free(text);
        } else {
            gr_warn("pack: no file list (%s); packing what the source map and alwaysInclude name",
                    e->msg);
            gr_error_release(&e);
        }
    }
    pk->whole_tree = !have_list && always.len == 0;
    strset_finish(&pk->files);
    strset_finish(&pk->prefixes);
    strset_finish(&pk->always);
    for (size_t i = 0; i < pk->nmaps; i++)
        strset_finish(&pk->maps[i].hide);
}

/* Every path the file list or alwaysInclude names must be found, except the
 * ones the packer provides itself and the HTTP bridge, which Granary mounts
 * into every grain. */
static int check_listed(const packer *pk, const strset *paths, gr_error_t *err)
{
    for (size_t i = 0; i < paths->n; i++) {
        bool provided = path_under(paths->v[i], "sandstorm-http-bridge");
        for (size_t r = 0; r < sizeof(reserved_root) / sizeof(*reserved_root); r++)
            provided = provided || path_under(paths->v[i], reserved_root[r]);
        if (provided)
            continue;
        char *src = NULL;
        struct stat st;
        int found = resolve(pk, paths->v[i], &src, &st);
        free(src);
        if (found < 0)
            return gr_make_error(err, 0, "no file in the source map for %s", paths->v[i]);
    }
    return 0;
}

static void packer_release(packer *pk)
{
    for (size_t i = 0; i < pk->nmaps; i++) {
        free(pk->maps[i].package);
        free(pk->maps[i].source);
        strset_free(&pk->maps[i].hide);
    }
    free(pk->maps);
    strset_free(&pk->files);
    strset_free(&pk->prefixes);
    strset_free(&pk->always);
}

static void add_message_file(packer *pk, node *root, const char *name, cp_ptr_reader src)
{
    cp_message m;
    cp_message_init(&m, 0);
    cp_ptr_set_copy(cp_message_root_builder(&m), src);
    gr_buf b = GR_BUF_INIT;
    cp_message_write(&m, &b);
    cp_message_release(&m);
    node *n = node_add(root, name, N_REGULAR);
    n->size = b.len;
    n->content = (uint8_t *)gr_buf_steal(&b);
    count(pk, name, n->size);
}

static int cmp_node(const void *a, const void *b)
{
    return strcmp(((const node *)a)->name, ((const node *)b)->name);
}

static void sort_tree(node *n)
{
    if (n->nkids)
        qsort(n->kids, n->nkids, sizeof(*n->kids), cmp_node);
    for (size_t i = 0; i < n->nkids; i++)
        if (n->kids[i].kind == N_DIR)
            sort_tree(&n->kids[i]);
}

/* ---- signing and compressing ---------------------------------------------- */

typedef struct xz_out {
    lzma_stream xz;
    int fd;
    uint8_t buf[64 * 1024];
} xz_out;

static int xz_feed(xz_out *o, const void *data, size_t len, lzma_action action, gr_error_t *err)
{
    o->xz.next_in = data;
    o->xz.avail_in = len;
    for (;;) {
        o->xz.next_out = o->buf;
        o->xz.avail_out = sizeof(o->buf);
        lzma_ret rc = lzma_code(&o->xz, action);
        if (rc != LZMA_OK && rc != LZMA_STREAM_END)
            return gr_make_error(err, 0, "xz encoder failed (%d)", (int)rc);
        size_t n = sizeof(o->buf) - o->xz.avail_out, off = 0;
        while (off < n) {
            ssize_t w = write(o->fd, o->buf + off, n - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return gr_make_error(err, errno, "write package");
            off += (size_t)w;
        }
        if (rc == LZMA_STREAM_END)
            return 0;
        if (action == LZMA_RUN && o->xz.avail_in == 0)
            return 0;
    }
}

static int write_package(int fd, const gr_buf *sig, const cp_message *m, const gr_buf *table,
                         gr_error_t *err)
{
    xz_out *o = gr_calloc(1, sizeof(*o));
    lzma_stream init = LZMA_STREAM_INIT;
    o->xz = init;
    o->fd = fd;
    lzma_mt mt = {
        .threads = lzma_cputhreads() ? lzma_cputhreads() : 1,
        .preset = 6,
        .check = LZMA_CHECK_CRC64,
    };
    int rc = 0;
    if (lzma_stream_encoder_mt(&o->xz, &mt) != LZMA_OK) {
        free(o);
        return gr_make_error(err, 0, "cannot start the xz encoder");
    }
    if (write(fd, SPK_MAGIC, SPK_MAGIC_LEN) != SPK_MAGIC_LEN)
        rc = gr_make_error(err, errno, "write package");
    if (rc == 0)
        rc = xz_feed(o, sig->data, sig->len, LZMA_RUN, err);
    if (rc == 0)
        rc = xz_feed(o, table->data, table->len, LZMA_RUN, err);
    for (uint32_t i = 0; rc == 0 && i < m->nsegs; i++)
        rc = xz_feed(o, m->segs[i].words, (size_t)m->segs[i].len * 8, LZMA_RUN, err);
    if (rc == 0)
        rc = xz_feed(o, NULL, 0, LZMA_FINISH, err);
    lzma_end(&o->xz);
    free(o);
    return rc;
}

static int sign_and_write(const cp_message *m, const spk_key *key, const char *out_path,
                          gr_error_t *err)
{
    gr_buf table = GR_BUF_INIT;
    cp_message_write_table(m, &table);
    crypto_hash_sha512_state hs;
    crypto_hash_sha512_init(&hs);
    crypto_hash_sha512_update(&hs, (const uint8_t *)table.data, table.len);
    uint64_t total = table.len;
    for (uint32_t i = 0; i < m->nsegs; i++) {
        crypto_hash_sha512_update(&hs, (const uint8_t *)m->segs[i].words,
                                  (size_t)m->segs[i].len * 8);
        total += (uint64_t)m->segs[i].len * 8;
    }
    if (total > SPK_MAX_ARCHIVE_BYTES) {
        gr_buf_release(&table);
        return gr_make_error(err, 0, "archive is %llu bytes, more than the limit of %llu",
                             (unsigned long long)total, (unsigned long long)SPK_MAX_ARCHIVE_BYTES);
    }
    uint8_t hash[crypto_hash_sha512_BYTES], signed_msg[crypto_sign_BYTES + sizeof(hash)];
    crypto_hash_sha512_final(&hs, hash);
    unsigned long long smlen = 0;
    crypto_sign(signed_msg, &smlen, hash, sizeof(hash), key->secret_key);

    cp_message sm;
    cp_message_init(&sm, 0);
    Signature_B sb = Signature_init_root(&sm);
    Signature_set_publicKey(sb, key->public_key, 32);
    Signature_set_signature(sb, signed_msg, (size_t)smlen);
    gr_buf sig = GR_BUF_INIT;
    cp_message_write(&sm, &sig);
    cp_message_release(&sm);

    _cleanup_free_ char *tmp = gr_asprintf("%s.tmp-XXXXXX", out_path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    int rc = 0;
    if (fd < 0) {
        rc = gr_make_error(err, errno, "create %s", tmp);
    } else {
        rc = write_package(fd, &sig, m, &table, err);
        if (rc == 0 && (fchmod(fd, 0644) < 0 || fsync(fd) < 0))
            rc = gr_make_error(err, errno, "write %s", tmp);
        close(fd);
        if (rc == 0 && rename(tmp, out_path) < 0)
            rc = gr_make_error(err, errno, "rename %s to %s", tmp, out_path);
        if (rc < 0)
            unlink(tmp);
    }
    gr_buf_release(&sig);
    gr_buf_release(&table);
    return rc;
}

int spk_pack(const spk_pack_options *opts, const char *out_path, spk_info *info, gr_error_t *err)
{
    if (sodium_init() < 0)
        return gr_make_error(err, 0, "libsodium failed to initialise");
    gr_buf def = GR_BUF_INIT;
    if (eval_pkgdef(opts, &def, err) < 0) {
        gr_buf_release(&def);
        return -1;
    }
    cp_message pm;
    int rc = cp_message_read(&pm, def.data, def.len, NULL, err);
    gr_buf_release(&def);
    if (rc < 0)
        return gr_error_prefix(err, "package definition %s", opts->pkgdef);
    PackageDefinition_R pd = PackageDefinition_root(&pm);
    cp_text id = PackageDefinition_get_id(pd);
    _cleanup_free_ char *keyring = opts->keyring ? gr_strdup(opts->keyring) : spk_default_keyring();
    spk_key key;
    packer pk = {0};
    node root = {0};
    cp_message am;
    bool have_am = false;
    if (!PackageDefinition_has_manifest(pd)) {
        rc = gr_make_error(err, 0, "package definition %s has no manifest", opts->pkgdef);
        goto out;
    }
    if (spk_keyring_find(keyring, id.str, &key, err) < 0) {
        /* A re-keyed app keeps its id in the pkgdef and signs with the new key. */
        const char *repl = spk_app_id_replacement_of(id.str);
        gr_error_t again = NULL;
        if (!repl || spk_keyring_find(keyring, repl, &key, &again) < 0) {
            gr_error_release(&again);
            rc = gr_error_prefix(err, "package definition %s", opts->pkgdef);
            goto out;
        }
        gr_error_release(err);
    }
    load_packer(&pk, pd, opts->pkgdef);
    if ((rc = check_listed(&pk, &pk.files, err)) < 0 ||
        (rc = check_listed(&pk, &pk.always, err)) < 0) {
        gr_error_prefix(err, "package definition %s", opts->pkgdef);
        goto out;
    }
    struct stat out_st;
    if (stat(out_path, &out_st) == 0) {
        pk.out_dev = out_st.st_dev;
        pk.out_ino = out_st.st_ino;
    }
    if ((rc = build_dir(&pk, &root, "", 0, err)) < 0)
        goto out;
    const char *const empty_dirs[] = {"dev", "tmp", "var"};
    for (size_t i = 0; i < 3; i++) {
        node_add(&root, empty_dirs[i], N_DIR);
        count(&pk, empty_dirs[i], 0);
    }
    node *proc = node_add(&root, "proc", N_DIR);
    count(&pk, "proc", 0);
    node_add(proc, "cpuinfo", N_REGULAR);
    count(&pk, "cpuinfo", 0);
    add_message_file(&pk, &root, "sandstorm-manifest", cp_get_ptr(pd.s, 1));
    if (PackageDefinition_has_bridgeConfig(pd))
        add_message_file(&pk, &root, "sandstorm-http-bridge-config", cp_get_ptr(pd.s, 5));
    if ((rc = cp_message_check(&pm, err)) < 0) {
        gr_error_prefix(err, "package definition %s", opts->pkgdef);
        goto out;
    }
    sort_tree(&root);
    if (pk.words + 16 > SPK_MAX_ARCHIVE_BYTES / 8) {
        rc = gr_make_error(err, 0, "the files come to more than the archive limit of %llu bytes",
                           (unsigned long long)SPK_MAX_ARCHIVE_BYTES);
        goto out;
    }
    cp_message_init(&am, (uint32_t)(pk.words + 16));
    have_am = true;
    Archive_B ab = Archive_init_root(&am);
    Archive_File_LB files = Archive_init_files(ab, (uint32_t)root.nkids);
    fill(&pk, files, &root, err, &rc);
    if (rc == 0 && (rc = cp_message_check(&am, err)) < 0)
        gr_error_prefix(err, "archive");
    if (rc == 0)
        rc = sign_and_write(&am, &key, out_path, err);
out:
    sodium_memzero(&key, sizeof(key));
    if (have_am)
        cp_message_release(&am);
    cp_message_release(&pm);
    node_free(&root);
    packer_release(&pk);
    if (rc < 0)
        return -1;
    /* Read back what was written, so pack never makes what install refuses. */
    spk_package *pkg = NULL;
    if (spk_package_open(out_path, &pkg, err) < 0) {
        unlink(out_path);
        return gr_error_prefix(err, "packed file fails verification");
    }
    if (info) {
        *info = pkg->info;
        pkg->info.title = pkg->info.marketing_version = NULL;
    }
    spk_package_free(pkg);
    return 0;
}
