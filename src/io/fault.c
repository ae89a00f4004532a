#include "src/io/fault.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct {
    char substring[256];
    int err;
    size_t budget, written;
} fault;
static atomic_int armed; /* 0 no, 1 yes */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t env_once = PTHREAD_ONCE_INIT;

void tpsc_io_fault_set(const char *substring, int err, size_t after_bytes) {
    pthread_mutex_lock(&lock);
    fault.substring[0] = '\0';
    if (substring) snprintf(fault.substring, sizeof fault.substring, "%s", substring);
    fault.err = err;
    fault.budget = after_bytes;
    fault.written = 0;
    atomic_store(&armed, substring && *substring && err ? 1 : 0);
    pthread_mutex_unlock(&lock);
}

/* TPSC_FAULT_WRITE=SUBSTRING:ERRNO[:BYTES]; a malformed value is reported once and ignored. */
static void read_env(void) {
    const char *v = getenv("TPSC_FAULT_WRITE");
    if (!v || !*v) return;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", v);
    char *colon = strchr(buf, ':');
    if (!colon) goto bad;
    *colon = '\0';
    char *name = colon + 1, *bytes = strchr(name, ':');
    if (bytes) *bytes++ = '\0';
    int err = !strcmp(name, "ENOSPC") ? ENOSPC : !strcmp(name, "EIO") ? EIO : 0;
    char *end = NULL;
    unsigned long long after = bytes ? strtoull(bytes, &end, 10) : 0;
    if (!err || !buf[0] || (bytes && (*end || !*bytes))) goto bad;
    tpsc_io_fault_set(buf, err, (size_t)after);
    fprintf(stderr, "TPSC_FAULT_WRITE: writes to *%s* fail with %s after %llu bytes\n", buf, name, after);
    return;
bad:
    fprintf(stderr, "TPSC_FAULT_WRITE='%s' ignored: expected SUBSTRING:ENOSPC|EIO[:BYTES]\n", v);
}

int tpsc_io_fault_write(const char *path, size_t bytes) {
    pthread_once(&env_once, read_env);
    if (!atomic_load_explicit(&armed, memory_order_relaxed) || !path) return 0;
    int err = 0;
    pthread_mutex_lock(&lock);
    if (strstr(path, fault.substring)) {
        fault.written += bytes;
        if (fault.written > fault.budget) err = fault.err;
    }
    pthread_mutex_unlock(&lock);
    return err;
}
