#include "src/cli/cli_util.h"

#include "src/dist/dist.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_fail(const char *cmd, tpsc_status st) {
    const char *msg = tpsc_last_error();
    char rank[48] = "";
    if (dist_active()) snprintf(rank, sizeof rank, " (MPI rank %d of %d)", dist_rank(), dist_size());
    fprintf(stderr, "tpsc %s%s: %s%s%s\n", cmd, rank, tpsc_status_name(st), msg[0] ? ": " : "", msg);
    return 1;
}

bool cli_opt(int argc, char **argv, int *i, const char *name, const char **value) {
    if (strcmp(argv[*i], name) != 0) return false;
    if (*i + 1 >= argc) {
        *value = NULL;
        return true;
    }
    *value = argv[++*i];
    return true;
}

bool cli_is_help(const char *arg) { return !strcmp(arg, "--help") || !strcmp(arg, "-h"); }

bool cli_int(const char *cmd, const char *name, const char *value, long lo, long hi, int *out) {
    char *end = NULL;
    errno = 0;
    const long v = value ? strtol(value, &end, 10) : 0;
    if (!value || end == value || *end || errno == ERANGE || v < lo || v > hi) {
        fprintf(stderr, "tpsc %s: %s '%s' is not a whole number in %ld..%ld\n", cmd, name, value ? value : "", lo, hi);
        return false;
    }
    *out = (int)v;
    return true;
}

bool cli_float(const char *cmd, const char *name, const char *value, float lo, bool lo_open, float hi, float *out) {
    char *end = NULL;
    const float v = value ? strtof(value, &end) : 0.0f;
    /* !(v <= hi) also refuses NaN */
    if (!value || end == value || *end || (lo_open ? !(v > lo) : !(v >= lo)) || !(v <= hi)) {
        fprintf(stderr, "tpsc %s: %s '%s' is not a number in %c%g, %g]\n", cmd, name, value ? value : "",
                lo_open ? '(' : '[', (double)lo, (double)hi);
        return false;
    }
    *out = v;
    return true;
}
