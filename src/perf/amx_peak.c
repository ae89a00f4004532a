/* A register-only AMX loop per thread: four accumulator tiles (tmm0-3) fed by two A tiles
 * (tmm4-5) and two B tiles (tmm6-7), every tile 16 rows of 64 bytes. Each accumulator is
 * written every fourth instruction, which covers TDPBF16PS's latency over its issue interval
 * on current cores, and all eight tiles are in use, so there is no room for more. The tile
 * state is per thread: each thread loads the configuration and releases the tiles when done
 * (afterwards the kernel no longer saves 8 KB of tile data at every context switch). */
#include <cpuid.h>
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "src/perf/amx_peak.h"
#include "src/perf/fma_peak.h"

#define ARCH_REQ_XCOMP_PERM 0x1023 /* arch_prctl: ask for an extended state component */
#define XFEATURE_XTILEDATA 18      /* the tile data (tmm0-7) */
#define CPUID7_EDX_AMX_BF16 (1u << 22)
#define CPUID7_EDX_AMX_TILE (1u << 24)
#define AMX_ITERS 200000L /* four instructions each, far more work per instruction than a zmm FMA */

/* LDTILECFG's 64-byte operand, palette 1 */
typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tile_config;

bool tpsc_amx_peak_supported(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
    if (!(d & CPUID7_EDX_AMX_TILE) || !(d & CPUID7_EDX_AMX_BF16)) return false;
    /* fails on kernels without AMX support (before 5.16) or where the signal stack is too small */
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

/* bf16 of x (truncated: the operands only need to be small and normal) */
static uint16_t bf16_of(float x) {
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (uint16_t)(u >> 16);
}

/* TDPBF16PS: C[16,16] += A[16,32] B[32,16] in FP32, 8192 MACs per instruction. The operands
 * are small (1e-3) so the sums stay normal and finite over AMX_ITERS. */
__attribute__((target("amx-tile,amx-bf16"))) static float loop_amx(long iters) {
    tile_config cfg = {.palette_id = 1};
    for (int t = 0; t < 8; t++) cfg.colsb[t] = 64, cfg.rows[t] = 16;
    uint16_t ab[16 * 32]; /* one 16 x 64-byte tile of BF16 */
    float c[16 * 16];     /* one 16 x 64-byte tile of FP32 */
    for (int i = 0; i < 16 * 32; i++) ab[i] = bf16_of(i & 1 ? 1e-3f : -1e-3f);
    /* GCC's tile intrinsics are asm statements that name their memory operands only by address
     * (ldtilecfg: by its first 8 bytes), so nothing tells the compiler they read cfg and ab or
     * write c: these empty statements do, and keep the stores before them and the loads after. */
    __asm__ volatile("" ::"m"(cfg), "m"(ab));
    _tile_loadconfig(&cfg);
    _tile_loadd(4, ab, 64);
    _tile_loadd(5, ab, 64);
    _tile_loadd(6, ab, 64);
    _tile_loadd(7, ab, 64);
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (long it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float sum = 0.0f;
    _tile_stored(0, c, 64);
    __asm__ volatile("" : "+m"(c));
    sum += c[0];
    _tile_stored(3, c, 64);
    __asm__ volatile("" : "+m"(c));
    sum += c[255];
    _tile_release();
    return sum;
}

double tpsc_amx_peak_gflops(int threads, int repeats) {
    if (threads < 1 || repeats < 1 || !tpsc_amx_peak_supported()) return 0.0;
    return tpsc_peak_best_gflops(loop_amx, AMX_ITERS, threads, repeats, 4.0 * 16 * 16 * 32);
}
