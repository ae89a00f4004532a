/* The panel back-end's kernel (src/infer/gemm_panel.c, compiled into this test: the library
 * exports only its API) on weights laid out as oneDNN's BA16a64b: 64-column panels of Kp rows
 * (K padded to 16; the padding, rows and columns, filled with NaN here: the kernel may read a
 * partial panel's padding columns into lanes it never stores, and must never read its padding
 * rows).
 *
 * Reference: y = epi(x w^T + b) in double on the same float inputs (LIN_RESIDUAL adds the old
 * y; LIN_GELU applies x Phi(x) with Phi from erfc in double).
 * Tolerance: per output, |kernel - reference| <= (K + 2) u S + 4e-7 |reference|, u = 2^-24 and
 * S = sum_k |x_k w_k| + |b| + |y_old|: the bound of a float sum of K + 2 terms accumulated in
 * order, one FMA each, plus GELU's Phi (vecmath's rational erf, error < 1.8e-7 absolute, times
 * |x|). A wrong k, a lost row or column, the bias added twice or a missed tail each exceed it
 * by orders of magnitude. Columns outside the panels asked for, and past N, must be left as
 * they were (sentinel). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/infer/gemm.h"

static uint64_t rng = 88172645463325252ull;
static float uniform(void) { /* [-1, 1) */
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (float)((double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0);
}

#define SENTINEL 12345.0f

static void check(size_t M, size_t K, size_t N, size_t p0, size_t p1, lin_epilogue epi, size_t ldy_extra) {
    const size_t kp = (K + 15) / 16 * 16, P = (N + PANEL_COLS - 1) / PANEL_COLS, ldx = K + 3, ldy = N + ldy_extra;
    float *w = malloc(N * K * sizeof *w), *x = malloc(M * ldx * sizeof *x), *b = malloc(N * sizeof *b);
    float *y = malloc(M * ldy * sizeof *y), *y0 = malloc(M * ldy * sizeof *y0), *panels = NULL;
    cr_assert(w && x && b && y && y0);
    cr_assert_eq(posix_memalign((void **)&panels, 64, P * kp * PANEL_COLS * sizeof *panels), 0);
    for (size_t i = 0; i < N * K; i++) w[i] = uniform();
    for (size_t i = 0; i < M * ldx; i++) x[i] = uniform();
    for (size_t i = 0; i < N; i++) b[i] = uniform();
    for (size_t i = 0; i < M * ldy; i++) y0[i] = (i % ldy) < N ? uniform() : SENTINEL;
    memcpy(y, y0, M * ldy * sizeof *y);
    for (size_t i = 0; i < P * kp * PANEL_COLS; i++) panels[i] = NAN; /* padding: never read */
    for (size_t n = 0; n < N; n++)
        for (size_t k = 0; k < K; k++) panels[(n / PANEL_COLS) * kp * PANEL_COLS + k * PANEL_COLS + n % PANEL_COLS] = w[n * K + k];
    const ti_weight tw = {.f = w, .panels = panels, .panel_k = kp};
    ti_panel_linear(x, M, K, ldx, &tw, b, N, p0, p1, y, ldy, epi);
    const double u = ldexp(1.0, -24);
    const size_t c0 = p0 * PANEL_COLS, c1 = p1 * PANEL_COLS < N ? p1 * PANEL_COLS : N;
    for (size_t r = 0; r < M; r++)
        for (size_t n = 0; n < ldy; n++) {
            const float got = y[r * ldy + n];
            if (n < c0 || n >= c1) {
                cr_assert_eq(got, y0[r * ldy + n], "M %zu K %zu N %zu panels %zu..%zu: row %zu column %zu was written",
                             M, K, N, p0, p1, r, n);
                continue;
            }
            double s = b[n], mag = fabs(b[n]);
            if (epi == LIN_RESIDUAL) s += y0[r * ldy + n], mag += fabs(y0[r * ldy + n]);
            for (size_t k = 0; k < K; k++) {
                const double p = (double)x[r * ldx + k] * w[n * K + k];
                s += p, mag += fabs(p);
            }
            double ref = s, tol = (double)(K + 2) * u * mag;
            if (epi == LIN_GELU) ref = s * 0.5 * erfc(-s / sqrt(2.0)), tol += 4e-7 * fabs(ref) + 1.8e-7 * fabs(s);
            cr_assert(fabs(got - ref) <= tol, "M %zu K %zu N %zu epi %d: y[%zu,%zu] = %.9g, reference %.9g (tolerance %.3g)",
                      M, K, N, (int)epi, r, n, got, ref, tol);
        }
    free(w), free(x), free(b), free(y), free(y0), free(panels);
}

static void skip_without_avx512(void) {
    if (!ti_avx512_allowed()) cr_skip_test("no AVX-512 here (or TPSINFER_MAX_ISA caps it)");
}

/* every tile height (M mod 6), one and several row blocks (256 rows at most, made equal), K
 * not a multiple of 16, a last partial panel, every epilogue */
Test(infer_panel, shapes_and_epilogues) {
    skip_without_avx512();
    const size_t Ms[] = {1, 2, 5, 6, 7, 13, 197, 256, 257, 515};
    const size_t KN[][2] = {{48, 144}, {37, 65}, {384, 64}, {16, 1}, {130, 200}};
    for (size_t i = 0; i < sizeof Ms / sizeof *Ms; i++)
        for (size_t j = 0; j < sizeof KN / sizeof *KN; j++)
            for (int e = LIN_PLAIN; e <= LIN_GELU; e++) {
                const size_t N = KN[j][1], P = (N + PANEL_COLS - 1) / PANEL_COLS;
                check(Ms[i], KN[j][0], N, 0, P, (lin_epilogue)e, 0);
            }
}

/* a team member's share: some panels of the weight into a strided output; the others untouched */
Test(infer_panel, column_ranges) {
    skip_without_avx512();
    check(197, 384, 1152, 9, 18, LIN_PLAIN, 0);  /* the second half of DeiT-S' qkv */
    check(99, 96, 200, 0, 2, LIN_RESIDUAL, 5);   /* the first two panels, row stride N + 5 */
    check(50, 64, 200, 3, 4, LIN_GELU, 7);       /* only the partial last panel */
    check(10, 64, 128, 1, 1, LIN_PLAIN, 0);      /* no panel: nothing written */
}
