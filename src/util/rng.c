#include "src/util/rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tpsc_rng_seed(tpsc_rng *r, uint64_t seed) {
    uint64_t x = seed;
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

tpsc_rng tpsc_rng_keyed(uint64_t seed, uint64_t a, uint64_t b, uint64_t c) {
    uint64_t x = seed;
    uint64_t h = splitmix64(&x);
    x = h ^ (a * 0xd1b54a32d192ed03ULL);
    h = splitmix64(&x);
    x = h ^ (b * 0xabc98388fb8fac03ULL);
    h = splitmix64(&x);
    x = h ^ (c * 0x8cb92ba72f3d8dd7ULL);
    h = splitmix64(&x);
    tpsc_rng r;
    tpsc_rng_seed(&r, h);
    return r;
}

uint64_t tpsc_rng_u64(tpsc_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float tpsc_rng_uniform(tpsc_rng *r) { return (float)(tpsc_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float tpsc_rng_uniform_open(tpsc_rng *r) {
    return ((float)(tpsc_rng_u64(r) >> 41) + 0.5f) * (1.0f / 8388608.0f);
}

float tpsc_rng_normal(tpsc_rng *r) {
    double u1 = ((double)(tpsc_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(tpsc_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2));
}

uint64_t tpsc_rng_below(tpsc_rng *r, uint64_t n) {
    if (n == 0) return 0;
    /* Rejection keeps it unbiased. */
    uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x;
    do x = tpsc_rng_u64(r);
    while (x >= limit);
    return x % n;
}

float tpsc_rng_trunc_normal(tpsc_rng *r, float mean, float std, float lo, float hi) {
    for (int tries = 0; tries < 1000; tries++) {
        float v = mean + std * tpsc_rng_normal(r);
        if (v >= lo && v <= hi) return v;
    }
    return mean;
}
