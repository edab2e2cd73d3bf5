/* `granary admin ...`: operator commands that work on a server's data
 * directory directly (the daemon may be running: SQLite's WAL lets both in). */
#include "commands.h"
#include "config.h"
#include "store.h"

static void admin_usage(FILE *out)
{
    fprintf(out, "Usage: granary admin setup-link [OPTIONS]\n"
                 "       granary admin install FILE.spk [--data DIR]\n\n"
                 "  setup-link   print a one-time link (valid 24 hours) that creates an\n"
                 "               administrator account\n"
                 "  install      verify a package and install it into the server's data\n\n"
                 "Options (as for granary run):\n%s",
            cfg_usage());
}

static int setup_link(cfg *c)
{
    _cleanup_error_ gr_error_t err = NULL;
    _cleanup_free_ char *db = gr_asprintf("%s/granary.sqlite", c->data_dir);
    if (access(db, F_OK) < 0) {
        fprintf(stderr, "granary: no Granary data in %s (start it once with granary run, or pass "
                        "--data)\n",
                c->data_dir);
        return 1;
    }
    st_store *st = NULL;
    if (st_open(&st, db, &err) < 0) {
        fprintf(stderr, "granary: %s\n", gr_error_msg(err));
        return 1;
    }
    char *link = gr_setup_link_new(st, c->base_url, &err);
    st_close(st);
    if (link == NULL) {
        fprintf(stderr, "granary: %s\n", gr_error_msg(err));
        return 1;
    }
    printf("%s\n", link);
    free(link);
    return 0;
}

int cmd_admin(int argc, char **argv)
{
    if (argc < 1 || strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0) {
        admin_usage(argc < 1 ? stderr : stdout);
        return argc < 1 ? 2 : 0;
    }
    cfg c;
    cfg_init(&c);
    _cleanup_error_ gr_error_t err = NULL;
    int status;
    if (strcmp(argv[0], "install") == 0) {
        status = cmd_admin_install(argc, argv);
    } else if (strcmp(argv[0], "setup-link") != 0) {
        fprintf(stderr, "granary: unknown admin command '%s' (see granary admin --help)\n",
                argv[0]);
        status = 2;
    } else if (cfg_parse_args(&c, argc - 1, argv + 1, &err) < 0) {
        fprintf(stderr, "granary: %s\n", gr_error_msg(err));
        status = 2;
    } else {
        status = setup_link(&c);
    }
    cfg_release(&c);
    return status;
}
