#include "autograd/arena.h"

#include <string.h>

#include "src/util/alloc.h"
#include "src/util/status.h"

struct ag_arena_block {
    ag_arena_block *next;
    size_t size, used;
    char *mem;
};

#define MIN_BLOCK ((size_t)16 << 20)

static size_t align_up(size_t n) { return (n + TPSC_ALIGN - 1) & ~(size_t)(TPSC_ALIGN - 1); }

static ag_arena_block *new_block(ag_arena *a, size_t size) {
    ag_arena_block *b = tpsc_malloc(sizeof *b, a->name);
    if (!b) return NULL;
    b->mem = tpsc_aligned_alloc(size, a->name);
    if (!b->mem) {
        tpsc_free(b);
        return NULL;
    }
    b->size = size;
    b->used = 0;
    b->next = NULL;
    a->reserved += size;
    return b;
}

int ag_arena_init(ag_arena *a, size_t initial, const char *name) {
    memset(a, 0, sizeof *a);
    a->name = name;
    if (initial) {
        a->head = a->cur = new_block(a, align_up(initial));
        if (!a->head) return -1;
    }
    return 0;
}

void ag_arena_free(ag_arena *a) {
    ag_arena_block *b = a->head;
    while (b) {
        ag_arena_block *next = b->next;
        tpsc_free(b->mem);
        tpsc_free(b);
        b = next;
    }
    memset(a, 0, sizeof *a);
}

void *ag_arena_alloc(ag_arena *a, size_t bytes) {
    bytes = align_up(bytes ? bytes : 1);
    ag_arena_block *b = a->cur;
    /* Later blocks of the chain are empty since the reset; one too small for this request is
     * skipped for the rest of the step (a repeated step skips it again, in the same place). */
    while (b && b->used + bytes > b->size) {
        b = b->next;
        if (b) b->used = 0;
    }
    if (!b) {
        size_t want = a->reserved / 2;
        if (want < MIN_BLOCK) want = MIN_BLOCK;
        if (want < bytes) want = bytes;
        b = new_block(a, want);
        if (!b) return NULL;
        /* Appended after the current block: the blocks after it were all skipped. */
        if (a->cur) {
            ag_arena_block *last = a->cur;
            while (last->next) last = last->next;
            last->next = b;
        } else {
            a->head = b;
        }
    }
    a->cur = b;
    void *p = b->mem + b->used;
    b->used += bytes;
    a->in_use += bytes;
    if (a->in_use > a->high_water) a->high_water = a->in_use;
    return p;
}

void ag_arena_reset(ag_arena *a) {
    a->cur = a->head;
    if (a->head) a->head->used = 0;
    a->in_use = 0;
}

