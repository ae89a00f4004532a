/* A bump arena for one training or inference step.
 *
 * Allocation is a pointer bump (64-byte aligned) through a chain of blocks. When the current
 * block is full the arena moves on to the next block of the chain, or appends a new one (at
 * least half of everything reserved so far, so a first step makes few mallocs). Reset rewinds
 * to the first block and keeps every block: a step repeats the previous step's allocations, so
 * it lands on the same, already-touched pages, with no malloc and no page faults. (Freeing the
 * chain and allocating one big block instead, as this arena once did, made the kernel fault in
 * and zero every activation page again on the step after the first.) Token counts change after
 * pruning, so nothing here assumes fixed shapes: a larger step appends blocks. */
#ifndef TPSC_AUTOGRAD_ARENA_H
#define TPSC_AUTOGRAD_ARENA_H

#include <stddef.h>

typedef struct ag_arena_block ag_arena_block;

typedef struct ag_arena {
    ag_arena_block *head;     /* first block of the chain (kept across resets) */
    ag_arena_block *cur;      /* block being bumped through */
    size_t reserved;          /* bytes in all blocks */
    size_t in_use;            /* bytes handed out since the last reset */
    size_t high_water;        /* most bytes ever in use at once */
    const char *name;
} ag_arena;

/* `initial` may be 0: the arena then sizes itself on the first step. */
int ag_arena_init(ag_arena *a, size_t initial, const char *name);
void ag_arena_free(ag_arena *a);
/* NULL (with tpsc error set) only when malloc fails. */
void *ag_arena_alloc(ag_arena *a, size_t bytes);
void ag_arena_reset(ag_arena *a);

#endif
