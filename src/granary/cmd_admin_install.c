/* `granary admin install FILE [--data DIR]`: verify a package and install it
 * into a server's data directory (apps/<packageId>/ and the store). Called by
 * `granary admin` with argv[0] = "install" followed by its arguments. */
#include <getopt.h>

#include "commands.h"
#include "config.h"
#include "spk.h"
#include "store.h"
#include "util.h"

int cmd_admin_install(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"data", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *data = CFG_DEFAULT_DATA;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        if (c == 'd') {
            data = optarg;
        } else {
            FILE *out = c == 'h' ? stdout : stderr;
            fprintf(out,
                    "Usage: granary admin install FILE.spk [--data DIR]\n\n"
                    "Verifies the package and installs it into DIR/apps/<packageId>/,\n"
                    "recording it in DIR/granary.sqlite (default DIR: %s).\n",
                    CFG_DEFAULT_DATA);
            return c == 'h' ? 0 : 2;
        }
    }
    if (argc - optind != 1) {
        fprintf(stderr, "granary admin install: expected one package file\n");
        return 2;
    }
    const char *file = argv[optind];
    gr_error_t err = NULL;
    if (gr_mkdir_p(data, 0750, &err) < 0) {
        fprintf(stderr, "granary admin install: %s\n", gr_error_msg(err));
        gr_error_release(&err);
        return 1;
    }
    _cleanup_free_ char *db = gr_asprintf("%s/granary.sqlite", data);
    st_store *st = NULL;
    if (st_open(&st, db, &err) < 0) {
        fprintf(stderr, "granary admin install: %s\n", gr_error_msg(err));
        gr_error_release(&err);
        return 1;
    }
    spk_install_result r;
    int rc = spk_install(file, data, st, &r, &err);
    st_close(st);
    if (rc < 0) {
        fprintf(stderr, "granary admin install: %s\n", gr_error_msg(err));
        gr_error_release(&err);
        return 1;
    }
    static const char *const what[] = {
        [SPK_INSTALLED_NEW_APP] = "installed",
        [SPK_INSTALLED_UPGRADE] = "installed as an upgrade candidate",
        [SPK_INSTALLED_OLDER] = "installed (not newer than version already installed)",
        [SPK_INSTALLED_ALREADY] = "already installed",
    };
    _cleanup_free_ char *title = spk_printable(r.info.title);
    printf("%s: %s %s version %u (app %s)\n", what[r.status], r.info.package_id, title,
           r.info.version, r.info.app_id);
    if (r.status == SPK_INSTALLED_UPGRADE)
        printf("newer than installed version %ld; grains keep their version until upgraded\n",
               r.previous_version);
    spk_install_result_release(&r);
    return 0;
}

/* Until this branch meets main's `granary admin` (cmd_admin.c), this stands
 * in for its dispatch with the one subcommand it has here. The integrator
 * drops it and the "admin" row of main.c in favour of cmd_admin.c. */
