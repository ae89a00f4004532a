/* Status names and the per-thread error message of libtpsinfer (its own, so the installed
 * library needs nothing from the training framework). */
#include <stdarg.h>
#include <stdio.h>

#include "src/infer/internal.h"

static _Thread_local char last_message[512];

const char *tps_status_str(tps_status s) {
    switch (s) {
    case TPS_OK: return "ok";
    case TPS_ERR_NOMEM: return "out of memory";
    case TPS_ERR_IO: return "I/O error";
    case TPS_ERR_FORMAT: return "format error";
    case TPS_ERR_MISSING: return "missing tensor or attribute";
    case TPS_ERR_SHAPE: return "shape mismatch";
    case TPS_ERR_ARG: return "invalid argument";
    case TPS_ERR_DECODE: return "image decode error";
    case TPS_ERR_INTERNAL: return "internal error";
    case TPS_ERR_UNSUPPORTED: return "not supported by this build or CPU";
    }
    return "unknown status";
}

const char *tps_last_error(void) { return last_message; }

tps_status ti_fail(tps_status s, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_message, sizeof last_message, fmt, ap);
    va_end(ap);
    return s;
}
