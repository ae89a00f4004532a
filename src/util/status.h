/* Status codes and the thread-local error message.
 *
 * Library code never exits: a function that can fail returns a tpsc_status and, on failure,
 * leaves a message (naming the file, key, tensor or line at fault) that tpsc_last_error()
 * returns. Only the CLI prints it and exits. The message is per thread, like errno. */
#ifndef TPSC_UTIL_STATUS_H
#define TPSC_UTIL_STATUS_H

typedef enum tpsc_status {
    TPSC_OK = 0,
    TPSC_ERR_NOMEM,    /* an allocation failed */
    TPSC_ERR_IO,       /* open/read/write/rename failed */
    TPSC_ERR_FORMAT,   /* a file is not what it claims (not HDF5, bad magic, truncated) */
    TPSC_ERR_SHAPE,    /* tensor shapes disagree */
    TPSC_ERR_MISSING,  /* a named tensor, key or file is absent */
    TPSC_ERR_CONFIG,   /* a recipe key is unknown, mistyped or out of range */
    TPSC_ERR_ARG,      /* a bad argument from the caller */
    TPSC_ERR_NUMERIC,  /* NaN or Inf where a finite number was required */
    TPSC_ERR_INTERNAL, /* a bug: an invariant did not hold */
    TPSC_ERR_INTERRUPTED, /* stopped on request (a signal) after saving what resumes it */
} tpsc_status;

/* A short name for a status, e.g. "format error". */
const char *tpsc_status_name(tpsc_status s);

/* Sets this thread's error message (printf-style) and returns `s`, so a failing function
 * can `return tpsc_fail(TPSC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));`. */
tpsc_status tpsc_fail(tpsc_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prepends context to the current message: "loading run/last.h5: " + old message, unless the
 * message already starts with it. */
void tpsc_error_context(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* This thread's last error message ("" when none). */
const char *tpsc_last_error(void);
void tpsc_clear_error(void);

#define TPSC_TRY(expr)                        \
    do {                                      \
        tpsc_status _st = (expr);             \
        if (_st != TPSC_OK) return _st;       \
    } while (0)

#endif
