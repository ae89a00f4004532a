/* Logging to stderr with a level. Library code logs facts (defaults filled in, tensors newly
 * initialised); it never prints errors itself: those travel back as status + message. */
#ifndef TPSC_UTIL_LOG_H
#define TPSC_UTIL_LOG_H

typedef enum { TPSC_LOG_QUIET = 0, TPSC_LOG_WARN = 1, TPSC_LOG_INFO = 2, TPSC_LOG_DEBUG = 3 } tpsc_log_level;

void tpsc_log_set_level(tpsc_log_level level);
tpsc_log_level tpsc_log_get_level(void);
void tpsc_log(tpsc_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define TPSC_INFO(...) tpsc_log(TPSC_LOG_INFO, __VA_ARGS__)
#define TPSC_WARN(...) tpsc_log(TPSC_LOG_WARN, __VA_ARGS__)
#define TPSC_DEBUG(...) tpsc_log(TPSC_LOG_DEBUG, __VA_ARGS__)

#endif
