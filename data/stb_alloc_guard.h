#ifndef TPSC_DATA_STB_ALLOC_GUARD_H
#define TPSC_DATA_STB_ALLOC_GUARD_H

#include <stddef.h>
#include <stdlib.h>

/* stb_image's own allocations, capped per thread. Even for a file whose header passed the
 * checks above, stb 2.27 keeps inflating a corrupt PNG stream (it reads zeros past the end)
 * until its output buffer reaches 4 GB. A decode never needs a buffer much larger than its
 * pixels (16-bit samples, PNG filter bytes, the doubling of a growing buffer), so the caller
 * sets TPSC_STB_DECODE_CAP(w, h) for the decode and an allocation past it fails, which stb
 * reports as "outofmem". A translation unit that compiles stb_image puts
 * TPSC_STB_ALLOC_GUARD(storage, setter) before including it, which defines the cap's setter:
 * tpsc_data's is tpsc_stb_set_cap (declared below), libtpsinfer's own copy is static. */
#define TPSC_STB_DECODE_CAP(w, h) ((size_t)(w) * (size_t)(h) * 16u + ((size_t)1 << 20))
#define TPSC_STB_ALLOC_GUARD(storage, setter)                                                              \
    static _Thread_local size_t tpsc_stb_cap_ = (size_t)-1;                                          \
    storage void setter(size_t bytes) { tpsc_stb_cap_ = bytes; }                                     \
    static void *tpsc_stb_malloc_(size_t n) { return n > tpsc_stb_cap_ ? NULL : malloc(n); }         \
    static void *tpsc_stb_realloc_(void *p, size_t n) { return n > tpsc_stb_cap_ ? NULL : realloc(p, n); }
void tpsc_stb_set_cap(size_t bytes);
#define STBI_MALLOC(sz) tpsc_stb_malloc_(sz)
#define STBI_REALLOC(p, newsz) tpsc_stb_realloc_((p), (newsz))
#define STBI_FREE(p) free(p)

#endif
