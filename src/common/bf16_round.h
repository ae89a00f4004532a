/* f32 -> bf16 rounding shared by the training GEMM kernels and libtpsinfer, header-only like
 * vecmath.h, so that both engines round a value to the same bf16.
 *
 * bf16 keeps f32's sign and 8-bit exponent and the top 7 of its 23 stored mantissa bits (8
 * significant bits with the implicit one). Rounding is to nearest, ties to even, on the bit
 * pattern, as the CPU's VCVTNEPS2BF16 does for normal numbers; a NaN stays a (quiet) NaN
 * instead of rounding into Inf. The relative error of one rounding is at most 2^-8. */
#ifndef TPSC_COMMON_BF16_ROUND_H
#define TPSC_COMMON_BF16_ROUND_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint16_t bf16_from_float(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

static inline float bf16_to_float(uint16_t h) {
    const uint32_t u = (uint32_t)h << 16;
    float x;
    memcpy(&x, &u, sizeof x);
    return x;
}

/* out [n] = bf16(x [n]) */
static inline void bf16_round_row(const float *x, size_t n, uint16_t *out) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &x[i], sizeof u);
        const uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
        out[i] = (u & 0x7fffffffu) > 0x7f800000u ? (uint16_t)((u >> 16) | 0x40u) : (uint16_t)r;
    }
}

#endif
