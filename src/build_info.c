/* Build identity recorded in checkpoints. */
#include "src/build_info.h"

#include "git_describe.h" /* generated at build time: build/generated/ */

const char *tpsc_git_describe(void) { return TPSC_GIT_DESCRIBE; }
