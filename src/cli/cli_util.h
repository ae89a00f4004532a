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
/* Parses `value` of option `name` as a whole number in lo..hi into *out. On anything else
 * (empty, trailing characters, out of range, missing) prints "tpsc <cmd>: <name> '<value>' is
 * not a whole number in lo..hi" and returns false; the command then exits 2. */
bool cli_int(const char *cmd, const char *name, const char *value, long lo, long hi, int *out);
/* The same for a number in [lo, hi], or (lo, hi] when lo_open: "tpsc <cmd>: <name> '<value>'
 * is not a number in (0, 1]". */
bool cli_float(const char *cmd, const char *name, const char *value, float lo, bool lo_open, float hi, float *out);

#endif
