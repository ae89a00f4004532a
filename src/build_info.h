#ifndef TPSC_BUILD_INFO_H
#define TPSC_BUILD_INFO_H
/* `git describe --always --dirty` of the source tree this binary was built from. */
const char *tpsc_git_describe(void);
#endif
