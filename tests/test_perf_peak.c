/* The register-only peaks tpsc bench quotes (src/perf/fma_peak.h): their contract, never their
 * speed. A peak is 0 exactly when its instructions are missing on this CPU (then they are never
 * executed) or when there is nothing to time (threads or repeats < 1), and a positive, finite
 * GFLOP/s otherwise. The CPU's features are read here with GCC's own builtin, independently of
 * the library's checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "src/perf/fma_peak.h"

static bool cpu_has(bool avx512f, bool bf16) {
    __builtin_cpu_init();
    return (!avx512f || __builtin_cpu_supports("avx512f")) && (!bf16 || __builtin_cpu_supports("avx512bf16"));
}

Test(perf_peak, bf16_peak_is_measured_exactly_where_the_cpu_has_avx512_bf16) {
    const bool has = cpu_has(true, true);
    cr_assert_eq(tpsc_bf16_peak_supported(), has);
    const double g = tpsc_bf16_peak_gflops(1, 1);
    if (has) cr_assert(g > 0.0 && isfinite(g), "BF16 peak %g GFLOP/s on a CPU with AVX512-BF16", g);
    else cr_assert_eq(g, 0.0, "BF16 peak %g GFLOP/s on a CPU without AVX512-BF16", g);
}

Test(perf_peak, fma_peak_follows_its_isa) {
    const char *isa = tpsc_fma_peak_isa();
    cr_assert_eq(!strcmp(isa, "avx512"), cpu_has(true, false), "%s", isa);
    const double g = tpsc_fma_peak_gflops(1, 1);
    if (strcmp(isa, "none")) cr_assert(g > 0.0 && isfinite(g), "FMA peak %g GFLOP/s (%s)", g, isa);
    else cr_assert_eq(g, 0.0);
}

Test(perf_peak, nothing_to_time_is_zero) {
    cr_assert_eq(tpsc_bf16_peak_gflops(0, 1), 0.0);
    cr_assert_eq(tpsc_bf16_peak_gflops(1, 0), 0.0);
    cr_assert_eq(tpsc_fma_peak_gflops(0, 1), 0.0);
    cr_assert_eq(tpsc_fma_peak_gflops(1, 0), 0.0);
}
