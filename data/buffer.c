#include "data/buffer.h"

#include "src/util/alloc.h"

void *tpsc_grow(tpsc_grow_buf *b, size_t bytes, const char *what) {
    if (bytes <= b->cap && b->p) return b->p;
    /* Grow by half again so a slowly increasing size (image folders) settles quickly. */
    size_t cap = bytes + bytes / 2 + 64;
    void *p = tpsc_aligned_alloc(cap, what);
    if (!p) return NULL;
    tpsc_free(b->p);
    b->p = p;
    b->cap = cap;
    return p;
}

void tpsc_grow_free(tpsc_grow_buf *b) {
    tpsc_free(b->p);
    b->p = NULL;
    b->cap = 0;
}
