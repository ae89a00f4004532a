#include "support/command.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <sys/wait.h>

int tcmd_tpsc(const char *args, char *out, size_t size) {
    char line[2048];
    snprintf(line, sizeof line, "%s/tpsc %s 2>&1", TPSC_BINARY_DIR, args);
    FILE *p = popen(line, "r");
    cr_assert_not_null(p, "cannot run: %s", line);
    const size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    const int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}
