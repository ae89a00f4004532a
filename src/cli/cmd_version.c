#include <stdio.h>

#include "autograd/threads.h"
#include "src/build_info.h"
#include "src/cli/commands.h"

int cmd_version(int argc, char **argv) {
    (void)argc;
    (void)argv;
    printf("tpsc %s\n", tpsc_git_describe());
    printf("OpenBLAS: %s (core %s), threads %d\n", ag_blas_config(), ag_blas_corename(), ag_get_threads());
    return 0;
}
