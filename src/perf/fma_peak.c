/* A register-only FMA loop per thread: 12 independent accumulators (more than the FMA latency
 * times the issue width of current cores, so the pipes never wait on a result). The BF16 peak
 * runs the same loop with vdpbf16ps (its latency times issue width is no larger). */
#include <immintrin.h>
#include <omp.h>
#include <string.h>

#include "src/perf/fma_peak.h"
#include "src/train/progress.h"

#define ACC 12
#define ITERS 4000000L

/* Twelve named accumulators (an array stays in memory at -O2: a store-to-load chain). */
#define FMA12(f, a, b)                                                                                          \
    x0 = f(x0, a, b), x1 = f(x1, a, b), x2 = f(x2, a, b), x3 = f(x3, a, b), x4 = f(x4, a, b), x5 = f(x5, a, b), \
    x6 = f(x6, a, b), x7 = f(x7, a, b), x8 = f(x8, a, b), x9 = f(x9, a, b), x10 = f(x10, a, b), x11 = f(x11, a, b)

/* The twelve zmm accumulators of the FP32 and BF16 loops, and their sum as the loop's result. */
#define ZMM12_INIT                                                                                         \
    __m512 x0 = _mm512_set1_ps(0), x1 = _mm512_set1_ps(1), x2 = _mm512_set1_ps(2), x3 = _mm512_set1_ps(3); \
    __m512 x4 = _mm512_set1_ps(4), x5 = _mm512_set1_ps(5), x6 = _mm512_set1_ps(6), x7 = _mm512_set1_ps(7); \
    __m512 x8 = _mm512_set1_ps(8), x9 = _mm512_set1_ps(9), x10 = _mm512_set1_ps(10), x11 = _mm512_set1_ps(11)
#define ZMM12_RETURN_SUM                                                                                          \
    x0 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x0, x1), _mm512_add_ps(x2, x3)), _mm512_add_ps(x4, x5));     \
    x6 = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(x6, x7), _mm512_add_ps(x8, x9)), _mm512_add_ps(x10, x11));   \
    return _mm512_reduce_add_ps(_mm512_add_ps(x0, x6))

__attribute__((target("avx512f"))) static float loop_zmm(long iters) {
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    ZMM12_INIT;
    for (long it = 0; it < iters; it++) FMA12(_mm512_fmadd_ps, a, b);
    ZMM12_RETURN_SUM;
}

__attribute__((target("avx2,fma"))) static float loop_ymm(long iters) {
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    __m256 x0 = _mm256_set1_ps(0), x1 = _mm256_set1_ps(1), x2 = _mm256_set1_ps(2), x3 = _mm256_set1_ps(3);
    __m256 x4 = _mm256_set1_ps(4), x5 = _mm256_set1_ps(5), x6 = _mm256_set1_ps(6), x7 = _mm256_set1_ps(7);
    __m256 x8 = _mm256_set1_ps(8), x9 = _mm256_set1_ps(9), x10 = _mm256_set1_ps(10), x11 = _mm256_set1_ps(11);
    for (long it = 0; it < iters; it++) FMA12(_mm256_fmadd_ps, a, b);
    x0 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x0, x1), _mm256_add_ps(x2, x3)), _mm256_add_ps(x4, x5));
    x6 = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(x6, x7), _mm256_add_ps(x8, x9)), _mm256_add_ps(x10, x11));
    float out[8];
    _mm256_storeu_ps(out, _mm256_add_ps(x0, x6));
    return out[0] + out[7];
}

/* vdpbf16ps: each of the 16 FP32 lanes adds two BF16 products, 32 MACs per instruction. The
 * operands are small (1e-3) so the sums stay normal and finite over ITERS. */
__attribute__((target("avx512f,avx512bf16"))) static float loop_bf16(long iters) {
    const __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(-1e-3f));
    const __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
    ZMM12_INIT;
    for (long it = 0; it < iters; it++) FMA12(_mm512_dpbf16_ps, a, b);
    ZMM12_RETURN_SUM;
}

const char *tpsc_fma_peak_isa(void) {
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return "avx512";
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return "avx2";
    return "none";
}

bool tpsc_bf16_peak_supported(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bf16");
}

double tpsc_peak_best_gflops(tpsc_peak_loop loop, long iters, int threads, int repeats, double macs) {
    double best = 1e30;
    volatile float sink = 0.0f; /* keeps the loops */
    for (int r = 0; r < repeats; r++) {
        const double t0 = tpsc_now();
        #pragma omp parallel num_threads(threads)
        {
            const float s = loop(iters);
            #pragma omp atomic
            sink += s;
        }
        const double t = tpsc_now() - t0;
        if (t < best) best = t;
    }
    (void)sink;
    return 2.0 * macs * (double)threads * (double)iters / best * 1e-9;
}

double tpsc_fma_peak_gflops(int threads, int repeats) {
    const char *isa = tpsc_fma_peak_isa();
    const int lanes = !strcmp(isa, "avx512") ? 16 : !strcmp(isa, "avx2") ? 8 : 0;
    if (!lanes || threads < 1 || repeats < 1) return 0.0;
    return tpsc_peak_best_gflops(lanes == 16 ? loop_zmm : loop_ymm, ITERS, threads, repeats, (double)ACC * lanes);
}

double tpsc_bf16_peak_gflops(int threads, int repeats) {
    if (!tpsc_bf16_peak_supported() || threads < 1 || repeats < 1) return 0.0;
    return tpsc_peak_best_gflops(loop_bf16, ITERS, threads, repeats, (double)ACC * 16 * 2);
}
