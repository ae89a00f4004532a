#include "src/util/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define TPSC_ERROR_MAX 2048
static _Thread_local char last_error[TPSC_ERROR_MAX];

const char *tpsc_status_name(tpsc_status s) {
    switch (s) {
    case TPSC_OK: return "ok";
    case TPSC_ERR_NOMEM: return "out of memory";
    case TPSC_ERR_IO: return "I/O error";
    case TPSC_ERR_FORMAT: return "format error";
    case TPSC_ERR_SHAPE: return "shape error";
    case TPSC_ERR_MISSING: return "missing";
    case TPSC_ERR_CONFIG: return "configuration error";
    case TPSC_ERR_ARG: return "bad argument";
    case TPSC_ERR_NUMERIC: return "numerical error";
    case TPSC_ERR_INTERNAL: return "internal error";
    case TPSC_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown status";
}

tpsc_status tpsc_fail(tpsc_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return s;
}

void tpsc_error_context(const char *fmt, ...) {
    char prefix[TPSC_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    size_t plen = (size_t)n < sizeof prefix ? (size_t)n : sizeof prefix - 1;
    /* A reader that named the file itself ("run/last.h5: cannot list group /model") already
     * carries this context: adding it again would print the path twice. */
    if (strncmp(last_error, prefix, plen) == 0) return;
    size_t olen = strlen(last_error);
    if (plen + olen >= TPSC_ERROR_MAX) olen = TPSC_ERROR_MAX - 1 - plen;
    memmove(last_error + plen, last_error, olen);
    memcpy(last_error, prefix, plen);
    last_error[plen + olen] = '\0';
}

const char *tpsc_last_error(void) { return last_error; }
void tpsc_clear_error(void) { last_error[0] = '\0'; }
