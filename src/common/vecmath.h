/* exp and the normal CDF in float, written so the compiler can vectorise loops that call them;
 * shared by the training ops and libtpsinfer, so both compute them with the same operations.
 *
 * glibc's expf/erff are scalar calls (their SIMD variants need -ffast-math), so loops calling
 * them stay scalar (docs/inference.md has the measurements). These are branch-free (selects only),
 * use no tables, and are inlined into `#pragma omp simd` loops.
 *
 * Accuracy (checked over dense grids against libm in double by tests/test_ops_gelu.c and
 * tests/test_ops_softmax.c):
 *   vm_expf:       relative error < 2.5e-7 on [-87.3, 88.7]; 0 below, +inf above, NaN kept.
 *                  vm_expf_nonpos (x <= 0) equals it there; vm_expf_nonpos_avx512 is that on
 *                  16 lanes, bit for bit.
 *   vm_normal_cdf: Phi(x), absolute error < 2.5e-7; relative error < 3e-5 down to x = -12
 *                  (the float rounding of z^2 inside the exp dominates far in the tail).
 *   vm_normal_pdf: relative error < 1e-5 on [-12, 12].
 *   vm_normal_cdf_rational: Phi(x), absolute error < 2.5e-7 (no relative accuracy in the lower
 *                  tail: below x = -5.66 it returns 0); half the instructions of vm_normal_cdf,
 *                  for GELU, whose x Phi(x) needs only absolute accuracy. */
#ifndef TPSC_COMMON_VECMATH_H
#define TPSC_COMMON_VECMATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) = 2^n exp(r), n = round(x / ln 2), |r| <= ln2 / 2; exp(r) by its Taylor series to
 * r^7 (truncation r^8 / 8! < 6e-9 there). ln 2 is split in two so n ln 2 is exact enough.
 * The reduction and the polynomial, shared by vm_expf and vm_expf_nonpos: xc must be finite
 * and inside [ln FLT_MIN, ln FLT_MAX]; *n receives n. */
static inline float vm_exp_reduced_(float xc, float *n) {
    /* Adding 1.5 * 2^23 rounds to an integer (valid for |t| < 2^22). */
    *n = (xc * 1.44269504f + 12582912.0f) - 12582912.0f;
    float r = xc - *n * 0.693145751953125f;
    r = r - *n * 1.428606765330187e-06f;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    return p;
}

static inline float vm_expf(float x) {
    const float lo = -87.33654f, hi = 88.72283f; /* ln FLT_MIN, ln FLT_MAX (rounded inward) */
    /* NaN compares false both ways and becomes lo here (no NaN reaches the int conversion). */
    const float xc = x > hi ? hi : (x >= lo ? x : lo);
    float n;
    const float p = vm_exp_reduced_(xc, &n);
    /* 2^n as 2^n1 * 2^n2 with both halves in [-63, 64]: each is a normal float for every n in
     * [-126, 128], so neither end of the range loses its exponent. */
    const int32_t ni = (int32_t)n, n1 = ni / 2, n2 = ni - n1;
    const int32_t bits1 = (n1 + 127) << 23, bits2 = (n2 + 127) << 23;
    float s1, s2;
    memcpy(&s1, &bits1, sizeof s1);
    memcpy(&s2, &bits2, sizeof s2);
    float y = p * s1 * s2;
    y = x < lo ? 0.0f : y;
    y = x > hi ? INFINITY : y;
    return x != x ? x : y;
}

/* vm_expf for x <= 0 (a softmax's s - max): the same reduction and polynomial, and one scale
 * 2^n (n >= -126 is a normal float) instead of two, without the overflow selects. Equal to
 * vm_expf bit for bit wherever the result is a normal float (scaling by a power of two is
 * exact there); 0 below ln FLT_MIN, NaN kept. x > 0 is outside its domain. */
static inline float vm_expf_nonpos(float x) {
    const float lo = -87.33654f;
    const float xc = x >= lo ? x : lo; /* NaN -> lo, as in vm_expf */
    float n;
    const float p = vm_exp_reduced_(xc, &n);
    const int32_t bits = ((int32_t)n + 127) << 23;
    float s;
    memcpy(&s, &bits, sizeof s);
    float y = p * s;
    y = x < lo ? 0.0f : y;
    return x != x ? x : y;
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
/* vm_expf_nonpos on 16 lanes: the same operations in the same order (no fused multiply-adds,
 * as the scalar form compiles under ISO C's -ffp-contract=off), so each lane's bits equal the
 * scalar form's (tests/test_ops_softmax.c checks it over a dense grid). It carries its own
 * target attribute, so any x86 build compiles it; call it only where the CPU has AVX-512F. */
__attribute__((target("avx512f"))) static inline __m512 vm_expf_nonpos_avx512(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f), shift = _mm512_set1_ps(12582912.0f);
    const __m512 xc = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_GE_OQ), lo, x); /* NaN -> lo */
    const __m512 n = _mm512_sub_ps(_mm512_add_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504f)), shift), shift);
    __m512 r = _mm512_sub_ps(xc, _mm512_mul_ps(n, _mm512_set1_ps(0.693145751953125f)));
    r = _mm512_sub_ps(r, _mm512_mul_ps(n, _mm512_set1_ps(1.428606765330187e-06f)));
    __m512 p = _mm512_set1_ps(1.0f / 5040.0f);
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f / 720.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f / 120.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f / 24.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f / 6.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(0.5f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    p = _mm512_add_ps(_mm512_mul_ps(p, r), _mm512_set1_ps(1.0f));
    const __m512i bits = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvttps_epi32(n), _mm512_set1_epi32(127)), 23);
    __m512 y = _mm512_mul_ps(p, _mm512_castsi512_ps(bits));
    y = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ), y, _mm512_setzero_ps());
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), y, x);
}
#endif

/* Phi(x) = 0.5 erfc(-x / sqrt 2). erfc(z), z >= 0, is t exp(-z^2 + P(t)), t = 1 / (1 + z/2),
 * with the Chebyshev-fitted P of Press et al., Numerical Recipes (2nd ed.) 6.2 "erfcc"
 * (fractional error < 1.2e-7 for all z). Taking erfc, not 1 + erf, keeps Phi's relative
 * accuracy in the lower tail. */
static inline float vm_normal_cdf(float x) {
    const float z = fabsf(x) * 0.70710678f;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = p * t - 0.82215223f;
    p = p * t + 1.48851587f;
    p = p * t - 1.13520398f;
    p = p * t + 0.27886807f;
    p = p * t - 0.18628806f;
    p = p * t + 0.09678418f;
    p = p * t + 0.37409196f;
    p = p * t + 1.00002368f;
    p = p * t - 1.26551223f;
    const float half_erfc = 0.5f * t * vm_expf(-z * z + p); /* = Phi(-|x|) */
    return x > 0.0f ? 1.0f - half_erfc : half_erfc;
}

/* Phi(x) = (1 + erf(x / sqrt 2)) / 2 with erf(z) = z P(u) / Q(u), u = z^2 / 16, z clamped to
 * [-4, 4] (erf(4) = 1 - 1.5e-8): a rational function of degrees 6 / 4 in u, fitted to erf on
 * [0, 4] by iteratively reweighted least squares (minimax-like), max |error| 5.5e-8 in exact
 * arithmetic; evaluated in float, < 1.8e-7 with fused multiply-adds (targets with FMA) and
 * < 2.3e-7 without. No exp and one division: GELU is the largest element-wise pass of a block
 * (N x 4C) in training and in libtpsinfer alike. */
#ifdef __FMA__
#define VM_MADD_(a, b, c) fmaf(a, b, c) /* one instruction, vectorised */
#else
#define VM_MADD_(a, b, c) ((a) * (b) + (c)) /* without FMA, fmaf would be a libm call */
#endif
static inline float vm_normal_cdf_rational(float x) {
    float z = x * 0.70710678f;
    z = z > 4.0f ? 4.0f : (z < -4.0f ? -4.0f : z); /* NaN passes through */
    const float u = z * z * 0.0625f;
    float p = 3.223435581e-01f;
    p = VM_MADD_(p, u, -2.086452723e+00f);
    p = VM_MADD_(p, u, 1.018936539e+01f);
    p = VM_MADD_(p, u, 1.757683754e+01f);
    p = VM_MADD_(p, u, 1.342163658e+01f);
    p = VM_MADD_(p, u, 3.422501087e+00f);
    p = VM_MADD_(p, u, 1.128378630e+00f);
    float q = 7.192835236e+01f;
    q = VM_MADD_(q, u, 6.368312073e+01f);
    q = VM_MADD_(q, u, 3.092060280e+01f);
    q = VM_MADD_(q, u, 8.366355896e+00f);
    q = VM_MADD_(q, u, 1.0f);
    return VM_MADD_(0.5f, z * p / q, 0.5f);
}
#undef VM_MADD_

/* phi(x) = exp(-x^2 / 2) / sqrt(2 pi). The exponent is never positive, so vm_expf_nonpos does:
 * equal to 0.39894228 vm_expf(-x^2 / 2) bit for bit for every float x (the scaled result is
 * a normal float, or is rounded once either way), without vm_expf's overflow selects. GELU's
 * derivative pass in training is bound by this arithmetic, not by memory. */
static inline float vm_normal_pdf(float x) { return 0.39894228f * vm_expf_nonpos(-0.5f * x * x); }

#endif
