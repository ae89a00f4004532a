/* The subcommands of the tpsc CLI, one file each under src/cli/. */
#ifndef TPSC_CLI_COMMANDS_H
#define TPSC_CLI_COMMANDS_H

typedef struct tpsc_command {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the command name */
} tpsc_command;

int cmd_version(int argc, char **argv);
int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_recipe(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_infer(int argc, char **argv);
int cmd_sweep(int argc, char **argv);
int cmd_visualize(int argc, char **argv);

#endif
