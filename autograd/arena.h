/* A bump arena for one training or inference step.
 *
 * Allocation is a pointer bump (64-byte aligned). When the current block is full the arena
 * chains an overflow block; at the next reset it frees the overflow and grows the main block
 * to the high-water mark. So the first step with a new shape may call malloc, and every later
 * step with the same or smaller shapes calls none. Token counts change after pruning, so
 * nothing here assumes fixed shapes. */
#ifndef TPSC_AUTOGRAD_ARENA_H
#define TPSC_AUTOGRAD_ARENA_H

#include <stddef.h>

typedef struct ag_arena_block ag_arena_block;

typedef struct ag_arena {
    char *base;
    size_t size;              /* bytes in base */
    size_t used;              /* bytes used in base */
    ag_arena_block *overflow; /* chained blocks used since the last reset */
    size_t overflow_used;     /* bytes handed out from overflow blocks */
    size_t high_water;        /* most bytes ever in use at once */
    const char *name;
} ag_arena;

/* `initial` may be 0: the arena then sizes itself on the first step. */
int ag_arena_init(ag_arena *a, size_t initial, const char *name);
void ag_arena_free(ag_arena *a);
/* NULL (with tpsc error set) only when malloc fails. */
void *ag_arena_alloc(ag_arena *a, size_t bytes);
void ag_arena_reset(ag_arena *a);
size_t ag_arena_in_use(const ag_arena *a);

#endif
