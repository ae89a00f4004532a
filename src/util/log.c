#include "src/util/log.h"

#include <stdarg.h>
#include <stdio.h>

static tpsc_log_level current_level = TPSC_LOG_INFO;

void tpsc_log_set_level(tpsc_log_level level) { current_level = level; }
tpsc_log_level tpsc_log_get_level(void) { return current_level; }

void tpsc_log(tpsc_log_level level, const char *fmt, ...) {
    if (level > current_level) return;
    va_list ap;
    va_start(ap, fmt);
    if (level == TPSC_LOG_WARN) fputs("warning: ", stderr);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}
