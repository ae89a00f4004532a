/* Build identity recorded in checkpoints. */
#include "src/build_info.h"

const char *tpsc_git_describe(void) { return TPSC_GIT_DESCRIBE; }
