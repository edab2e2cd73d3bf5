/* `granary spk`: make keys, write a starting package definition, pack,
 * verify and unpack Sandstorm-compatible packages. The work is in src/spk/;
 * this file parses arguments and prints. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "spk.h"
#include "util.h"

static void spk_usage(FILE *out)
{
    fprintf(out,
            "Usage: granary spk COMMAND [OPTIONS]\n\n"
            "Commands:\n"
            "  keygen                 make a new app key in the keyring, print its app id\n"
            "  listkeys               print the app id of every key in the keyring\n"
            "  getkey APPID           write the key of APPID (a KeyFile message) to stdout\n"
            "  init [-p PORT] [-- COMMAND...]\n"
            "                         write sandstorm-pkgdef.capnp for a new app (new key)\n"
            "  pack OUT.spk           pack the app of sandstorm-pkgdef.capnp in this directory\n"
            "  verify [--json] FILE   check a package, print its app id, package id, title\n"
            "  unpack FILE [DIR]      check a package and unpack it into DIR (new; default\n"
            "                         FILE without .spk)\n\n"
            "Options:\n"
            "  -k, --keyring FILE     keyring to use (default ~/.sandstorm-keyring)\n"
            "  -p, --pkg-def FILE[:CONST]\n"
            "                         package definition for pack (default\n"
            "                         ./sandstorm-pkgdef.capnp, constant pkgdef)\n"
            "  -I, --import-path DIR  another directory for the pkgdef's imports\n"
            "  -q, --quiet            accepted for Sandstorm's spk compatibility\n"
            "  --schema-dir DIR       holds sandstorm/package.capnp (default %s)\n",
            spk_schema_dir());
}

#define SPK_MAX_IMPORTS 16

typedef struct spk_args {
    char *keyring;
    const char *imports[SPK_MAX_IMPORTS + 1];
    int nimports;
    const char *pkgdef;
    const char *schema_dir;
    const char *port;
    bool json;
    int nargs;
    char **args;
} spk_args;

static int fail(gr_error_t err)
{
    fprintf(stderr, "granary spk: %s\n", gr_error_msg(err));
    gr_error_release(&err);
    return 1;
}

static int parse(int argc, char **argv, spk_args *a)
{
    static const struct option longopts[] = {
        {"keyring", required_argument, NULL, 'k'},
        {"pkg-def", required_argument, NULL, 'p'},
        {"import-path", required_argument, NULL, 'I'},
        {"quiet", no_argument, NULL, 'q'},
        {"schema-dir", required_argument, NULL, 's'},
        {"port", required_argument, NULL, 'P'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "p:k:I:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'k':
            free(a->keyring);
            a->keyring = gr_strdup(optarg);
            break;
        case 'p':
            if (strcmp(argv[0], "init") == 0)
                a->port = optarg;
            else
                a->pkgdef = optarg;
            break;
        case 'P':
            a->port = optarg;
            break;
        case 'I':
            if (a->nimports < SPK_MAX_IMPORTS)
                a->imports[a->nimports++] = optarg;
            break;
        case 'q':
            break;
        case 's':
            a->schema_dir = optarg;
            break;
        case 'j':
            a->json = true;
            break;
        case 'h':
            spk_usage(stdout);
            return 1;
        default:
            spk_usage(stderr);
            return 2;
        }
    }
    a->nargs = argc - optind;
    a->args = argv + optind;
    if (!a->keyring)
        a->keyring = spk_default_keyring();
    return 0;
}

/* Makes a key in the keyring and writes its app id to id; the private key
 * does not stay in memory. */
static int new_app_key(spk_args *a, char id[SPK_APP_ID_LEN + 1], gr_error_t *err)
{
    spk_key key;
    if (spk_keygen(a->keyring, &key, err) < 0)
        return -1;
    spk_app_id_encode(key.public_key, id);
    memset(&key, 0, sizeof(key));
    return 0;
}

static int do_keygen(spk_args *a)
{
    gr_error_t err = NULL;
    char id[SPK_APP_ID_LEN + 1];
    if (new_app_key(a, id, &err) < 0)
        return fail(err);
    printf("%s\n", id);
    return 0;
}

static int do_listkeys(spk_args *a)
{
    gr_error_t err = NULL;
    spk_key *keys = NULL;
    size_t n = 0;
    if (spk_keyring_read(a->keyring, &keys, &n, &err) < 0)
        return fail(err);
    for (size_t i = 0; i < n; i++) {
        char id[SPK_APP_ID_LEN + 1];
        spk_app_id_encode(keys[i].public_key, id);
        printf("%s\n", id);
    }
    spk_keys_free(keys, n);
    return 0;
}

static int do_getkey(spk_args *a)
{
    if (a->nargs != 1) {
        fprintf(stderr, "granary spk getkey: expected one app id\n");
        return 2;
    }
    if (isatty(1)) {
        fprintf(stderr, "granary spk getkey: refusing to write a secret key to a terminal; "
                        "redirect stdout to a file\n");
        return 2;
    }
    gr_error_t err = NULL;
    spk_key key;
    if (spk_keyring_find(a->keyring, a->args[0], &key, &err) < 0)
        return fail(err);
    gr_buf b = GR_BUF_INIT;
    spk_key_write(&key, &b);
    memset(&key, 0, sizeof(key));
    int rc = fwrite(b.data, 1, b.len, stdout) == b.len && fflush(stdout) == 0 ? 0 : 1;
    memset(b.data, 0, b.len);
    gr_buf_release(&b);
    return rc;
}

static void put_capnp_string(gr_buf *b, const char *s)
{
    gr_buf_puts(b, "\"");
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            gr_buf_printf(b, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            gr_buf_printf(b, "\\x%02x", (unsigned char)*s);
        else
            gr_buf_append(b, s, 1);
    }
    gr_buf_puts(b, "\"");
}

static int do_init(spk_args *a)
{
    const char *path = a->pkgdef ? a->pkgdef : "sandstorm-pkgdef.capnp";
    struct stat st;
    if (lstat(path, &st) == 0) {
        fprintf(stderr, "granary spk init: %s already exists\n", path);
        return 1;
    }
    gr_error_t err = NULL;
    char id[SPK_APP_ID_LEN + 1];
    if (new_app_key(a, id, &err) < 0)
        return fail(err);
    uint8_t rnd[8];
    if (gr_random_bytes(rnd, sizeof(rnd), &err) < 0)
        return fail(err);
    rnd[0] |= 0x80; /* capnp file ids have the top bit set */

    gr_buf argv = GR_BUF_INIT;
    bool first = true;
    if (a->port) {
        gr_buf_puts(&argv, "\"/sandstorm-http-bridge\", ");
        put_capnp_string(&argv, a->port);
        gr_buf_puts(&argv, ", \"--\"");
        first = false;
    }
    if (a->nargs == 0) {
        gr_buf_printf(&argv, "%s\"/bin/sh\", \"start.sh\"", first ? "" : ", ");
    } else {
        for (int i = 0; i < a->nargs; i++) {
            gr_buf_puts(&argv, first ? "" : ", ");
            put_capnp_string(&argv, a->args[i]);
            first = false;
        }
    }
    gr_buf out = GR_BUF_INIT;
    gr_buf_printf(&out, "@0x");
    for (int i = 0; i < 8; i++)
        gr_buf_printf(&out, "%02x", rnd[i]);
    gr_buf_printf(&out,
                  ";\n\n# The package definition of this app, read by `granary spk pack`.\n"
                  "using Spk = import \"/sandstorm/package.capnp\";\n\n"
                  "const pkgdef :Spk.PackageDefinition = (\n"
                  "  id = \"%s\",\n\n"
                  "  manifest = (\n"
                  "    appTitle = (defaultText = \"Example App\"),\n"
                  "    appVersion = 0,\n"
                  "    appMarketingVersion = (defaultText = \"0.0.0\"),\n"
                  "    actions = [\n"
                  "      ( nounPhrase = (defaultText = \"instance\"),\n"
                  "        command = .myCommand )\n"
                  "    ],\n"
                  "    continueCommand = .myCommand,\n"
                  "  ),\n\n"
                  "  sourceMap = (\n"
                  "    searchPath = [ ( sourcePath = \".\" ) ]\n"
                  "  ),\n\n"
                  "  # With no fileList and no alwaysInclude, pack takes the whole source map.\n"
                  "  alwaysInclude = [],\n"
                  ");\n\n"
                  "const myCommand :Spk.Manifest.Command = (\n"
                  "  argv = [%s],\n"
                  "  environ = [ (key = \"PATH\", value = \"/usr/local/bin:/usr/bin:/bin\") ]\n"
                  ");\n",
                  id, argv.data);
    gr_buf_release(&argv);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    int rc = 0;
    if (fd < 0 || write(fd, out.data, out.len) != (ssize_t)out.len) {
        fprintf(stderr, "granary spk init: write %s: %s\n", path, strerror(errno));
        rc = 1;
    } else {
        printf("%s\n", id);
    }
    gr_buf_release(&out);
    return rc;
}

static void print_info(const spk_info *info, bool json)
{
    if (json) {
        json_t *o =
            json_pack("{s:s, s:s, s:s, s:I, s:s, s:I, s:I, s:I}", "appId", info->app_id,
                      "packageId", info->package_id, "title", info->title, "version",
                      (json_int_t)info->version, "marketingVersion", info->marketing_version,
                      "minUpgradableAppVersion", (json_int_t)info->min_upgradable_version, "files",
                      (json_int_t)info->files, "bytes", (json_int_t)info->bytes);
        char *s = json_dumps(o, JSON_SORT_KEYS);
        printf("%s\n", s);
        free(s);
        json_decref(o);
        return;
    }
    _cleanup_free_ char *title = spk_printable(info->title);
    _cleanup_free_ char *mv = spk_printable(info->marketing_version);
    printf("app id: %s\npackage id: %s\ntitle: %s\nversion: %u\nmarketing version: %s\n",
           info->app_id, info->package_id, title, info->version, mv);
}

static int do_pack(spk_args *a)
{
    if (a->nargs != 1) {
        fprintf(stderr, "granary spk pack: expected the output file\n");
        return 2;
    }
    /* Sandstorm's form FILE:CONSTANT is accepted too (vagrant-spk uses it). */
    _cleanup_free_ char *file = gr_strdup(a->pkgdef ? a->pkgdef : "sandstorm-pkgdef.capnp");
    const char *constant = NULL;
    char *colon = strrchr(file, ':');
    if (colon && access(file, F_OK) != 0) {
        *colon = '\0';
        constant = colon + 1;
    }
    spk_pack_options o = {
        .pkgdef = file,
        .keyring = a->keyring,
        .schema_dir = a->schema_dir,
        .constant = constant,
        .import_path = a->imports,
    };
    gr_error_t err = NULL;
    spk_info info;
    if (spk_pack(&o, a->args[0], &info, &err) < 0)
        return fail(err);
    print_info(&info, a->json);
    spk_info_release(&info);
    return 0;
}

static int do_verify(spk_args *a, bool unpack)
{
    /* As Sandstorm's: unpack without DIR unpacks FOO.spk into FOO. */
    size_t flen = a->nargs >= 1 ? strlen(a->args[0]) : 0;
    bool implied_dir =
        unpack && a->nargs == 1 && flen > 4 && strcmp(a->args[0] + flen - 4, ".spk") == 0;
    if (a->nargs != (unpack && !implied_dir ? 2 : 1)) {
        fprintf(stderr, "granary spk %s: expected %s\n", unpack ? "unpack" : "verify",
                unpack ? "a package and a directory" : "one package");
        return 2;
    }
    _cleanup_free_ char *dir =
        unpack ? (implied_dir ? gr_strndup(a->args[0], flen - 4) : gr_strdup(a->args[1])) : NULL;
    gr_error_t err = NULL;
    spk_package *pkg = NULL;
    if (spk_package_open(a->args[0], &pkg, &err) < 0)
        return fail(err);
    int rc = 0;
    if (unpack && spk_unpack(pkg, dir, &err) < 0)
        rc = fail(err);
    else if (!unpack)
        print_info(spk_package_info(pkg), a->json);
    spk_package_free(pkg);
    return rc;
}

int cmd_spk(int argc, char **argv)
{
    if (argc < 1) {
        spk_usage(stderr);
        return 2;
    }
    const char *verb = argv[0];
    if (strcmp(verb, "--help") == 0 || strcmp(verb, "-h") == 0 || strcmp(verb, "help") == 0) {
        spk_usage(stdout);
        return 0;
    }
    spk_args a = {0};
    int rc = parse(argc, argv, &a);
    if (rc != 0) {
        free(a.keyring);
        return rc == 1 ? 0 : rc;
    }
    if (strcmp(verb, "keygen") == 0)
        rc = do_keygen(&a);
    else if (strcmp(verb, "listkeys") == 0)
        rc = do_listkeys(&a);
    else if (strcmp(verb, "getkey") == 0)
        rc = do_getkey(&a);
    else if (strcmp(verb, "init") == 0)
        rc = do_init(&a);
    else if (strcmp(verb, "pack") == 0)
        rc = do_pack(&a);
    else if (strcmp(verb, "verify") == 0)
        rc = do_verify(&a, false);
    else if (strcmp(verb, "unpack") == 0)
        rc = do_verify(&a, true);
    else {
        fprintf(stderr, "granary spk: unknown command '%s' (see granary spk --help)\n", verb);
        rc = 2;
    }
    free(a.keyring);
    return rc;
}
