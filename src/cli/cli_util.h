/* Helpers shared by the CLI commands: error printing and option parsing. */
#ifndef TPSC_CLI_UTIL_H
#define TPSC_CLI_UTIL_H

#include <stdbool.h>

#include "src/util/status.h"

/* Prints "tpsc <cmd>: <message>" for a failed status and returns the exit code (1). */
int cli_fail(const char *cmd, tpsc_status st);
/* True if argv[i] is `name` and a value follows; *i is advanced past it. */
bool cli_opt(int argc, char **argv, int *i, const char *name, const char **value);
bool cli_is_help(const char *arg);

#endif
