/* The register-only peaks tpsc bench quotes (src/perf/fma_peak.h, amx_peak.h): their contract,
 * never their speed. A peak is 0 exactly when its instructions are missing on this CPU (then
 * they are never executed) or when there is nothing to time (threads or repeats < 1), and a
 * positive, finite GFLOP/s otherwise. The CPU's features are read here with GCC's own builtin (the AMX peak
 * also with a permission asked here), independently of the library's checks. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "src/perf/amx_peak.h"
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

/* AMX-TILE and AMX-BF16: GCC's builtin; clang 14 (the sanitizer builds) has no names for them
 * there, so the kernel's flags in /proc/cpuinfo, which Linux shows only where it supports AMX. */
static bool cpu_has_amx_bf16(void) {
#if defined(__clang__)
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[8192];
    bool tile = false, bf16 = false;
    while (fgets(line, sizeof line, f) && strncmp(line, "flags", 5)) {}
    if (!strncmp(line, "flags", 5)) tile = strstr(line, " amx_tile") != NULL, bf16 = strstr(line, " amx_bf16") != NULL;
    fclose(f);
    return tile && bf16;
#else
    __builtin_cpu_init();
    return __builtin_cpu_supports("amx-tile") && __builtin_cpu_supports("amx-bf16");
#endif
}

/* Linux's permission for the tile data (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA);
 * granted once, it holds for the process. */
static bool os_grants_amx(void) {
    return syscall(SYS_arch_prctl, 0x1023, 18) == 0;
}

Test(perf_peak, amx_peak_is_measured_exactly_where_the_cpu_has_amx_bf16_and_linux_allows_it) {
    const bool has = cpu_has_amx_bf16() && os_grants_amx();
    cr_assert_eq(tpsc_amx_peak_supported(), has);
    const double g = tpsc_amx_peak_gflops(1, 1);
    if (has) cr_assert(g > 0.0 && isfinite(g), "AMX peak %g GFLOP/s on a CPU with AMX-BF16", g);
    else cr_assert_eq(g, 0.0, "AMX peak %g GFLOP/s without AMX-BF16 or the tile permission", g);
}

Test(perf_peak, amx_peak_runs_on_several_threads) {
    /* each thread configures its own tiles: a second thread must not fault or stall */
    const double g = tpsc_amx_peak_gflops(2, 1);
    if (tpsc_amx_peak_supported()) cr_assert(g > 0.0 && isfinite(g), "AMX peak %g GFLOP/s on 2 threads", g);
    else cr_assert_eq(g, 0.0);
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
    cr_assert_eq(tpsc_amx_peak_gflops(0, 1), 0.0);
    cr_assert_eq(tpsc_amx_peak_gflops(1, 0), 0.0);
}
