/* What one DeiT-S MLP's fc2 costs in training, BF16 or FP32: ag_gelu_linear_residual forward
 * and backward (GELU recomputed with its derivative, the dw and dx products, the bias and
 * residual gradients) on one block's shapes, process CPU time per round, median.
 *
 *   build/bench/fc2_backward_cost [bf16|fp32] [BATCH] [ROUNDS]   (default bf16, 16, 15)
 *
 * x [B*197, 4C], w [C, 4C], b [C], r [B*197, C], C = 384; the operands are made once, the tape
 * is reset every round, and two warm-up rounds (primitives, pool scratch) are left out. Runs
 * on the OpenMP threads the environment gives (OMP_NUM_THREADS). The op is a small part of a
 * step, so this is the view that can tell two builds of it apart on a busy machine: run the
 * binaries of both trees alternately and compare their medians (docs/performance.md). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "src/perf/bench.h"
#include "src/util/rng.h"

#define TOKENS 197 /* DeiT-S at 224 px: 196 patches and the class token */
#define DIM 384
#define WARMUP 2

static double cpu_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void fill(float *v, size_t n, uint64_t seed, float scale) {
    tpsc_rng rng = tpsc_rng_keyed(seed, 0, 0, 0);
    for (size_t i = 0; i < n; i++) v[i] = scale * tpsc_rng_normal(&rng);
}

int main(int argc, char **argv) {
    ag_precision p = AG_BF16;
    if (argc > 1 && ag_precision_parse(argv[1], &p) != TPSC_OK) {
        fprintf(stderr, "fc2_backward_cost: %s\n", tpsc_last_error());
        return 2;
    }
    const long batch = argc > 2 ? strtol(argv[2], NULL, 10) : 16, rounds = argc > 3 ? strtol(argv[3], NULL, 10) : 15;
    if (batch < 1 || batch > 1024 || rounds < 1 || rounds > 1000) {
        fprintf(stderr, "fc2_backward_cost: BATCH in [1, 1024], ROUNDS in [1, 1000]\n");
        return 2;
    }
    const size_t M = (size_t)batch * TOKENS, Cin = 4 * DIM, Cout = DIM;
    float *x = malloc(M * Cin * sizeof *x), *w = malloc(Cout * Cin * sizeof *w), *b = malloc(Cout * sizeof *b);
    float *r = malloc(M * Cout * sizeof *r), *dy = malloc(M * Cout * sizeof *dy);
    double *t = malloc((size_t)rounds * sizeof *t);
    ag_ctx *ctx = ag_ctx_create(0);
    if (!x || !w || !b || !r || !dy || !t || !ctx) {
        fprintf(stderr, "fc2_backward_cost: out of memory\n");
        return 1;
    }
    if (ag_set_precision(ctx, p) != TPSC_OK) {
        fprintf(stderr, "fc2_backward_cost: %s\n", tpsc_last_error());
        return 1;
    }
    /* fc1's outputs as a trained block has them (unit scale), DeiT's init scale for w */
    fill(x, M * Cin, 1, 1.0f), fill(w, Cout * Cin, 2, 0.02f), fill(b, Cout, 3, 0.02f);
    fill(r, M * Cout, 4, 1.0f), fill(dy, M * Cout, 5, 1e-3f);
    for (long k = 0; k < WARMUP + rounds; k++) {
        ag_ctx_reset(ctx);
        const size_t sx[2] = {M, Cin}, sw[2] = {Cout, Cin}, sb[1] = {Cout}, sr[2] = {M, Cout};
        ag_tensor *X = ag_wrap(ctx, x, NULL, 2, sx, true), *W = ag_wrap(ctx, w, NULL, 2, sw, true);
        ag_tensor *B = ag_wrap(ctx, b, NULL, 1, sb, true), *R = ag_wrap(ctx, r, NULL, 2, sr, true);
        const double t0 = cpu_s();
        ag_tensor *y = ag_gelu_linear_residual(ctx, X, W, B, R);
        if (!y || ag_backward_from(ctx, y, dy) != TPSC_OK) {
            fprintf(stderr, "fc2_backward_cost: %s\n", tpsc_last_error());
            return 1;
        }
        if (k >= WARMUP) t[k - WARMUP] = cpu_s() - t0;
    }
    printf("fc2 forward + backward, %s, x [%zu,%zu] -> [%zu,%zu]: median %.2f ms CPU over %ld rounds\n",
           ag_precision_name(p), M, Cin, M, Cout, 1e3 * tpsc_median(t, (int)rounds), rounds);
    ag_ctx_free(ctx);
    free(x), free(w), free(b), free(r), free(dy), free(t);
    return 0;
}
