/* A buffer that only grows: per-thread scratch reaches its steady size after the first few
 * samples and is then reused without allocating. */
#ifndef TPSC_DATA_BUFFER_H
#define TPSC_DATA_BUFFER_H

#include <stddef.h>

typedef struct tpsc_grow_buf {
    void *p;
    size_t cap;
} tpsc_grow_buf;

/* Returns a buffer of at least `bytes` (64-byte aligned), or NULL with the error set. */
void *tpsc_grow(tpsc_grow_buf *b, size_t bytes, const char *what);
void tpsc_grow_free(tpsc_grow_buf *b);

#endif
