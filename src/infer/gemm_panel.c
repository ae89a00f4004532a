/* The FP32 linears of the "panel" back-end (gemm.h): libtpsinfer's own AVX-512 kernel on the
 * weight oneDNN packed at load, a team sharing each linear by output columns.
 *
 * Why a kernel of our own: oneDNN 2.6's f32 brgemm writes whole output rows only, so a team
 * shares a oneDNN linear by rows and every member streams the whole weight (88 MB a DeiT-S pass,
 * from L3) at every pass. This kernel writes any column range of a row-strided output, so each
 * member reads only its own panels; it measured faster than the row-split brgemm at every row
 * count of a DeiT-S pass (docs/inference.md, "The panel back-end").
 *
 * The weight: oneDNN's f32 layout BA16a64b of w^T [K,N] (checked at load, gemm_onednn.c):
 * panels of 64 output columns, each [Kp,64] row-major (Kp = K rounded up to 16), panel p at
 * p Kp 64 floats. The kernel reads a last partial panel's padding columns (their lanes are
 * never stored) and never its padding rows.
 *
 * The tile: MR = 6 rows x 64 columns in 24 zmm accumulators; per k, 4 weight vectors, 6
 * broadcasts of x and 24 FMAs. Rows go in equal blocks of at most MC (x's block stays in L2
 * while the member's panels pass; a short last block would stream every panel again for a
 * few rows), and each tile prefetches its share of the next panel into L2.
 *
 * Arithmetic per output: the accumulator starts at b (LIN_RESIDUAL: y + b, the residual and
 * bias first as the OpenBLAS path and the training framework's fused linear do), then adds
 * x[k] w[k] for k = 0 .. K-1 in order, one FMA each; LIN_GELU applies ti_gelu (the
 * framework's GELU) to the finished rows. */
#include <immintrin.h>

#include "src/infer/gemm.h"

#define MR 6    /* rows of a tile */
#define MC 256  /* most rows of a block (blocks are made equal: 197 rows are one block, not 192 + 5) */
#define VEC 4   /* zmm vectors across a panel */
#define AHEAD 8 /* k rows of the panel prefetched ahead into L1 */

#define PANEL_TARGET __attribute__((target("avx512f")))
#define UNROLL_MR _Pragma("GCC unroll 6")
#define UNROLL_VEC _Pragma("GCC unroll 4")

/* One tile: rows x[0 .. mr-1] (row stride ldx) times the panel wp [Kp,64] into y (row stride
 * ldy), the columns mask[] selects (a lane outside the weight's N is neither read nor
 * written in y). pf/npf: lines of the next panel to prefetch into L2. */
static inline __attribute__((always_inline)) PANEL_TARGET void tile(const int mr, const float *x, size_t ldx,
                                                                    const float *wp, size_t K, const __m512 *bias,
                                                                    const __mmask16 *mask, float *y, size_t ldy,
                                                                    lin_epilogue epi, const char *pf, size_t npf) {
    __m512 acc[MR][VEC]; /* unrolled loops keep them in registers (24 of 32) */
    UNROLL_MR for (int i = 0; i < mr; i++)
        UNROLL_VEC for (int v = 0; v < VEC; v++)
            acc[i][v] = epi == LIN_RESIDUAL && mask[v]
                            ? _mm512_add_ps(_mm512_maskz_loadu_ps(mask[v], y + (size_t)i * ldy + 16 * v), bias[v])
                            : bias[v];
    for (size_t k = 0; k < K; k++) {
        const float *wk = wp + k * PANEL_COLS;
        __m512 w[VEC];
        UNROLL_VEC for (int v = 0; v < VEC; v++) {
            w[v] = _mm512_load_ps(wk + 16 * v);
            _mm_prefetch((const char *)(wk + AHEAD * PANEL_COLS + 16 * v), _MM_HINT_T0);
        }
        if (k < npf) _mm_prefetch(pf + 64 * k, _MM_HINT_T1);
        UNROLL_MR for (int i = 0; i < mr; i++) {
            const __m512 a = _mm512_set1_ps(x[(size_t)i * ldx + k]);
            UNROLL_VEC for (int v = 0; v < VEC; v++) acc[i][v] = _mm512_fmadd_ps(a, w[v], acc[i][v]);
        }
    }
    UNROLL_MR for (int i = 0; i < mr; i++)
        UNROLL_VEC for (int v = 0; v < VEC; v++) if (mask[v]) _mm512_mask_storeu_ps(y + (size_t)i * ldy + 16 * v, mask[v], acc[i][v]);
}

/* tile() with mr a constant, so that its loops unroll and the accumulators stay in registers */
static PANEL_TARGET void tile_rows(int mr, const float *x, size_t ldx, const float *wp, size_t K, const __m512 *bias,
                                   const __mmask16 *mask, float *y, size_t ldy, lin_epilogue epi, const char *pf,
                                   size_t npf) {
    switch (mr) {
    case 1: tile(1, x, ldx, wp, K, bias, mask, y, ldy, epi, pf, npf); break;
    case 2: tile(2, x, ldx, wp, K, bias, mask, y, ldy, epi, pf, npf); break;
    case 3: tile(3, x, ldx, wp, K, bias, mask, y, ldy, epi, pf, npf); break;
    case 4: tile(4, x, ldx, wp, K, bias, mask, y, ldy, epi, pf, npf); break;
    case 5: tile(5, x, ldx, wp, K, bias, mask, y, ldy, epi, pf, npf); break;
    default: tile(MR, x, ldx, wp, K, bias, mask, y, ldy, epi, pf, npf); break;
    }
}

PANEL_TARGET void ti_panel_linear(const float *x, size_t M, size_t K, size_t ldx, const ti_weight *w, const float *b,
                                  size_t N, size_t p0, size_t p1, float *y, size_t ldy, lin_epilogue epi) {
    const size_t panel_floats = w->panel_k * PANEL_COLS;
    const size_t lines = panel_floats * sizeof(float) / 64; /* cache lines of a panel */
    const size_t blocks = (M + MC - 1) / MC, rows = (M + blocks - 1) / blocks;
    for (size_t r0 = 0; r0 < M; r0 += rows) {
        const size_t r1 = r0 + rows < M ? r0 + rows : M, tiles = (r1 - r0 + MR - 1) / MR;
        for (size_t p = p0; p < p1; p++) {
            const size_t c = p * PANEL_COLS, cols = N - c < PANEL_COLS ? N - c : PANEL_COLS;
            __mmask16 mask[VEC];
            __m512 bias[VEC];
            for (int v = 0; v < VEC; v++) {
                const size_t lo = 16 * (size_t)v, n = cols > lo ? (cols - lo < 16 ? cols - lo : 16) : 0;
                mask[v] = (__mmask16)((1u << n) - 1u);
                bias[v] = b && n ? _mm512_maskz_loadu_ps(mask[v], b + c + lo) : _mm512_setzero_ps();
            }
            const float *wp = w->panels + p * panel_floats;
            const char *next = p + 1 < p1 ? (const char *)(wp + panel_floats) : NULL;
            for (size_t j = 0; j < tiles; j++) {
                const size_t r = r0 + j * MR, mr = r1 - r < MR ? r1 - r : MR;
                const size_t l0 = j * lines / tiles, l1 = (j + 1) * lines / tiles;
                tile_rows((int)mr, x + r * ldx, ldx, wp, K, bias, mask, y + r * ldy + c, ldy, epi,
                          next ? next + 64 * l0 : NULL, next ? l1 - l0 : 0);
                if (epi == LIN_GELU)
                    for (size_t i = 0; i < mr; i++) ti_gelu(y + (r + i) * ldy + c, cols);
            }
        }
    }
}
