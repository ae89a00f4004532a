/* The framework's seeded random number generator.
 *
 * Two kinds of use:
 *  - a stream (tpsc_rng): xoshiro256** seeded by splitmix64, for Gumbel noise, dropout-free
 *    init and anything drawn in sequence. Its whole state is four uint64, saved in checkpoints.
 *  - a keyed draw (tpsc_rng_keyed): a fresh generator derived from (seed, a, b, c), e.g.
 *    (run seed, epoch, sample index, purpose). The data loader uses it so that every sample's
 *    augmentation depends only on the seed and its position, never on which thread ran it. */
#ifndef TPSC_UTIL_RNG_H
#define TPSC_UTIL_RNG_H

#include <stdint.h>

typedef struct tpsc_rng {
    uint64_t s[4];
} tpsc_rng;

void tpsc_rng_seed(tpsc_rng *r, uint64_t seed);
tpsc_rng tpsc_rng_keyed(uint64_t seed, uint64_t a, uint64_t b, uint64_t c);
uint64_t tpsc_rng_u64(tpsc_rng *r);
/* Uniform in [0, 1) with 24 random bits (exactly representable as float). */
float tpsc_rng_uniform(tpsc_rng *r);
/* Uniform in (0, 1): never 0 or 1, safe for log(-log u). */
float tpsc_rng_uniform_open(tpsc_rng *r);
/* Standard normal (Box-Muller, one value per call). */
float tpsc_rng_normal(tpsc_rng *r);
/* Uniform integer in [0, n). */
uint64_t tpsc_rng_below(tpsc_rng *r, uint64_t n);
/* Normal truncated to [lo, hi] (timm's trunc_normal_ with std 0.02 uses lo=-2, hi=2 absolute). */
float tpsc_rng_trunc_normal(tpsc_rng *r, float mean, float std, float lo, float hi);

#endif
