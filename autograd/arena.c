#include "autograd/arena.h"

#include <string.h>

#include "src/util/alloc.h"
#include "src/util/status.h"

struct ag_arena_block {
    ag_arena_block *next;
    size_t size, used;
    char *mem;
};

static size_t align_up(size_t n) { return (n + TPSC_ALIGN - 1) & ~(size_t)(TPSC_ALIGN - 1); }

int ag_arena_init(ag_arena *a, size_t initial, const char *name) {
    memset(a, 0, sizeof *a);
    a->name = name;
    if (initial) {
        a->base = tpsc_aligned_alloc(align_up(initial), name);
        if (!a->base) return -1;
        a->size = align_up(initial);
    }
    return 0;
}

static void free_overflow(ag_arena *a) {
    ag_arena_block *b = a->overflow;
    while (b) {
        ag_arena_block *next = b->next;
        tpsc_free(b->mem);
        tpsc_free(b);
        b = next;
    }
    a->overflow = NULL;
    a->overflow_used = 0;
}

void ag_arena_free(ag_arena *a) {
    free_overflow(a);
    tpsc_free(a->base);
    memset(a, 0, sizeof *a);
}

void *ag_arena_alloc(ag_arena *a, size_t bytes) {
    bytes = align_up(bytes ? bytes : 1);
    void *p;
    if (a->used + bytes <= a->size) {
        p = a->base + a->used;
        a->used += bytes;
    } else {
        ag_arena_block *b = a->overflow;
        if (!b || b->used + bytes > b->size) {
            /* Grow geometrically so a first step makes few mallocs. */
            size_t want = bytes > a->size ? bytes : a->size;
            if (want < ((size_t)16 << 20)) want = (size_t)16 << 20;
            ag_arena_block *nb = tpsc_malloc(sizeof *nb, a->name);
            if (!nb) return NULL;
            nb->mem = tpsc_aligned_alloc(want, a->name);
            if (!nb->mem) {
                tpsc_free(nb);
                return NULL;
            }
            nb->size = want;
            nb->used = 0;
            nb->next = a->overflow;
            a->overflow = nb;
            b = nb;
        }
        p = b->mem + b->used;
        b->used += bytes;
        a->overflow_used += bytes;
    }
    size_t in_use = a->used + a->overflow_used;
    if (in_use > a->high_water) a->high_water = in_use;
    return p;
}

void ag_arena_reset(ag_arena *a) {
    if (a->overflow) {
        /* Replace base with one block big enough for the whole high-water mark. */
        free_overflow(a);
        size_t want = align_up(a->high_water + a->high_water / 8);
        char *nb = tpsc_aligned_alloc(want, a->name);
        if (nb) {
            tpsc_free(a->base);
            a->base = nb;
            a->size = want;
        }
    }
    a->used = 0;
}

size_t ag_arena_in_use(const ag_arena *a) { return a->used + a->overflow_used; }
