#include "src/util/alloc.h"

#include <stdlib.h>
#include <string.h>

#include "src/util/status.h"

static void *nomem(size_t bytes, const char *what) {
    tpsc_fail(TPSC_ERR_NOMEM, "out of memory allocating %zu bytes for %s", bytes, what ? what : "?");
    return NULL;
}

void *tpsc_malloc(size_t bytes, const char *what) {
    void *p = malloc(bytes ? bytes : 1);
    return p ? p : nomem(bytes, what);
}

void *tpsc_calloc(size_t count, size_t size, const char *what) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    return p ? p : nomem(count * size, what);
}

void *tpsc_realloc(void *p, size_t bytes, const char *what) {
    void *q = realloc(p, bytes ? bytes : 1);
    return q ? q : nomem(bytes, what);
}

void *tpsc_aligned_alloc(size_t bytes, const char *what) {
    size_t rounded = (bytes + TPSC_ALIGN - 1) / TPSC_ALIGN * TPSC_ALIGN;
    void *p = aligned_alloc(TPSC_ALIGN, rounded ? rounded : TPSC_ALIGN);
    return p ? p : nomem(bytes, what);
}

char *tpsc_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = tpsc_malloc(n, "string");
    if (d) memcpy(d, s, n);
    return d;
}

void tpsc_free(void *p) { free(p); }
