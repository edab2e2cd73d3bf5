/* The subcommands of the granary binary. Each takes the arguments after its
 * own name and returns the process's exit status. */
#ifndef GRANARY_COMMANDS_H
#define GRANARY_COMMANDS_H

typedef struct gr_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} gr_command;

#include "store.h"
#include "util.h"

int cmd_run(int argc, char **argv);
int cmd_sandbox_run(int argc, char **argv);
int cmd_admin(int argc, char **argv);
int cmd_spk(int argc, char **argv);
int cmd_admin_install(int argc, char **argv);

/* Makes a one-time link (valid 24 hours) that creates an administrator
 * account: base_url + "/setup#token=...". Returns it (caller frees), or NULL
 * with err. */
char *gr_setup_link_new(st_store *st, const char *base_url, gr_error_t *err);

#endif
