/* Checked allocation. Every heap allocation in tpsc goes through these, so an out-of-memory
 * condition becomes TPSC_ERR_NOMEM with a message saying what was being allocated, instead of
 * a NULL dereference later. Buffers are 64-byte aligned for AVX-512 loads. */
#ifndef TPSC_UTIL_ALLOC_H
#define TPSC_UTIL_ALLOC_H

#include <stddef.h>

#define TPSC_ALIGN 64

/* Returns NULL and sets the error message on failure. `what` names the buffer. */
void *tpsc_malloc(size_t bytes, const char *what);
void *tpsc_calloc(size_t count, size_t size, const char *what);
void *tpsc_realloc(void *p, size_t bytes, const char *what);
/* 64-byte aligned; free with tpsc_free like the others. */
void *tpsc_aligned_alloc(size_t bytes, const char *what);
char *tpsc_strdup(const char *s);
void tpsc_free(void *p);

#endif
