/* granary: the daemon and command-line tool. A thin dispatcher over the
 * subcommands; the work is in the libraries under src/. */
#include "commands.h"
#include "util.h"

static const gr_command commands[] = {
    {"run", "serve Granary (the daemon)", cmd_run},
    {"spk", "make, verify and unpack packages", cmd_spk},
    {"admin", "administer a server: setup-link, install FILE.spk", cmd_admin},
    {"sandbox-run", "run one command in a grain sandbox", cmd_sandbox_run},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *out)
{
    fprintf(out, "Usage: granary COMMAND [OPTIONS]\n\n"
                 "Granary is a self-hosted platform for web apps in which every document is\n"
                 "its own sandboxed container, a grain.\n\nCommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(out, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\nOptions:\n  --help         show this help (or COMMAND --help)\n"
                 "  --version      print the version\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "version") == 0) {
        printf("granary %s\n", GRANARY_VERSION);
        return 0;
    }
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 2, argv + 2);
    fprintf(stderr, "granary: unknown command '%s' (see granary --help)\n", name);
    return 2;
}
