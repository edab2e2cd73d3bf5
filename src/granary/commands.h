/* The subcommands of the granary binary. Each takes the arguments after its
 * own name and returns the process's exit status. */
#ifndef GRANARY_COMMANDS_H
#define GRANARY_COMMANDS_H

typedef struct gr_command {
    const char *name;
    const char *summary;
    int (*run)(int argc, char **argv);
} gr_command;

int cmd_run(int argc, char **argv);
int cmd_sandbox_run(int argc, char **argv);

#endif
