/* What streaming the weights from memory costs libtpsinfer's panel kernel (src/infer/gemm_panel.c,
 * compiled in): the 48 linears of DeiT-S's 12 blocks (qkv, proj, fc1, fc2) at M rows, each
 * member of a team on its share of the 64-column panels and a barrier after each linear, as
 * in a pass (docs/inference.md, "Why batch 1 stops short").
 *
 *   build/bench/panel_stream [ROWS] [BLOCKS] [ROUNDS] [INPUT]   (default 197, 12, 20, shared)
 *
 * BLOCKS is how many distinct blocks of weights (7.1 MB each) the 12 blocks cycle through:
 * 12 gives every block its own (88 MB, as a real model), 1 reuses one block's. Threads come
 * from OMP_NUM_THREADS. Prints GFLOP/s (median over rounds) for the pass and, for each kind of
 * linear, the rate of thread 0 while it multiplies (its wait at the barrier left out), times
 * the team size. The weights are random panels in the kernel's layout (no oneDNN needed).
 *
 * INPUT shared: each linear reads the output of the one before, as in a pass, so a member reads
 * rows the other members wrote (in their caches). private: each member reads its own copy, never
 * written during the timing, which stays in its own cache: the difference is what the team's
 * sharing of x costs the kernel. */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/infer/gemm.h"

#define DIM 384
#define HIDDEN 1536
#define DEPTH 12
#define KINDS 4 /* qkv, proj, fc1, fc2 */
#define MAX_ROUNDS 1000

typedef struct linear {
    size_t N, K;
    ti_weight w;
    float *b;
} linear;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void *alloc_or_die(size_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        fprintf(stderr, "panel_stream: cannot allocate %zu bytes\n", bytes);
        exit(1);
    }
    return p;
}

/* w [N,K] as panels [N/64][K rounded up to 16][64] of values in [-0.5, 0.5) */
static void make_linear(linear *l, size_t N, size_t K, unsigned seed) {
    const size_t kp = (K + 15) / 16 * 16, count = kp * N;
    float *p = alloc_or_die(count * sizeof *p);
    for (size_t i = 0; i < count; i++) p[i] = (float)(((i + seed) * 2654435761u) % 1000u) / 1000.0f - 0.5f;
    l->N = N, l->K = K;
    memset(&l->w, 0, sizeof l->w);
    l->w.panels = p, l->w.panel_k = kp;
    l->b = alloc_or_die(N * sizeof *l->b);
    memset(l->b, 0, N * sizeof *l->b);
}

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* argv[i] as a whole number, fallback when absent; -1 (out of every range) when it is not one */
static long arg_long(int argc, char **argv, int i, long fallback) {
    if (argc <= i) return fallback;
    char *end;
    const long v = strtol(argv[i], &end, 10);
    return end == argv[i] || *end ? -1 : v;
}

int main(int argc, char **argv) {
    const long rows = arg_long(argc, argv, 1, 197), blocks = arg_long(argc, argv, 2, DEPTH);
    const long rounds = arg_long(argc, argv, 3, 20);
    const int private_input = argc > 4 && !strcmp(argv[4], "private");
    if (argc > 5 || (argc > 4 && !private_input && strcmp(argv[4], "shared")) || rows < 1 || rows > 100000 ||
        blocks < 1 || blocks > DEPTH || rounds < 1 || rounds > MAX_ROUNDS) {
        fprintf(stderr, "usage: panel_stream [ROWS 1..100000] [BLOCKS 1..12] [ROUNDS 1..%d] [shared|private]\n",
                MAX_ROUNDS);
        return 2;
    }
    if (!ti_avx512_allowed()) {
        fprintf(stderr, "panel_stream: the panel kernel needs AVX-512F (and TPSINFER_MAX_ISA not capping it)\n");
        return 1;
    }
    const size_t M = (size_t)rows;
    linear L[DEPTH][KINDS];
    for (long d = 0; d < blocks; d++) {
        make_linear(&L[d][0], 3 * DIM, DIM, (unsigned)d * 4 + 0);
        make_linear(&L[d][1], DIM, DIM, (unsigned)d * 4 + 1);
        make_linear(&L[d][2], HIDDEN, DIM, (unsigned)d * 4 + 2);
        make_linear(&L[d][3], DIM, HIDDEN, (unsigned)d * 4 + 3);
    }
    float *x = alloc_or_die(M * DIM * sizeof *x), *qkv = alloc_or_die(M * 3 * DIM * sizeof *qkv);
    float *hidden = alloc_or_die(M * HIDDEN * sizeof *hidden);
    for (size_t i = 0; i < M * DIM; i++) x[i] = 0.01f * (float)(i % 7);
    memset(qkv, 0, M * 3 * DIM * sizeof *qkv);
    memset(hidden, 0, M * HIDDEN * sizeof *hidden);
    /* each kind's input, its row stride, its output and its epilogue, as in a block */
    const float *in[KINDS] = {x, qkv, x, hidden};
    float *out[KINDS] = {qkv, x, hidden, x};
    const size_t ldx[KINDS] = {DIM, 3 * DIM, DIM, HIDDEN}, ldy[KINDS] = {3 * DIM, DIM, HIDDEN, DIM};
    const lin_epilogue epi[KINDS] = {LIN_PLAIN, LIN_RESIDUAL, LIN_GELU, LIN_RESIDUAL};
    double flops = 0.0, kind_flops[KINDS] = {0};
    for (int k = 0; k < KINDS; k++) kind_flops[k] = 2.0 * (double)M * (double)L[0][k].N * (double)L[0][k].K * DEPTH;
    for (int k = 0; k < KINDS; k++) flops += kind_flops[k];
    double pass_s[MAX_ROUNDS], kind_s[KINDS] = {0};
    int team = 1;
    #pragma omp parallel
    {
        const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
        if (t == 0) team = (int)T;
        const float *input[KINDS]; /* this member's inputs: the shared buffers, or its own copies */
        for (int k = 0; k < KINDS; k++) {
            if (!private_input) {
                input[k] = in[k];
                continue;
            }
            float *copy = alloc_or_die(M * ldx[k] * sizeof *copy); /* freed at exit */
            memcpy(copy, in[k], M * ldx[k] * sizeof *copy);
            input[k] = copy;
        }
        for (long r = -1; r < rounds; r++) { /* round -1 warms up */
            #pragma omp barrier
            const double t0 = now_s();
            for (int d = 0; d < DEPTH; d++)
                for (int k = 0; k < KINDS; k++) {
                    const linear *l = &L[d % blocks][k];
                    const size_t P = l->N / PANEL_COLS;
                    const double k0 = now_s();
                    ti_panel_linear(input[k], M, l->K, ldx[k], &l->w, l->b, l->N, P * t / T, P * (t + 1) / T, out[k],
                                    ldy[k], epi[k]);
                    if (t == 0 && r >= 0) kind_s[k] += now_s() - k0;
                    #pragma omp barrier
                }
            if (t == 0 && r >= 0) pass_s[r] = now_s() - t0;
        }
    }
    qsort(pass_s, (size_t)rounds, sizeof *pass_s, by_value);
    printf("rows %zu, %ld distinct block(s) of weights (%.1f MB), %d thread(s), %ld rounds, %s input\n", M,
           blocks, (double)blocks * 4.0 * (3 * DIM * DIM + DIM * DIM + 2.0 * HIDDEN * DIM) / 1e6, team, rounds,
           private_input ? "private" : "shared");
    printf("pass: %.1f GFLOP/s (median)\n", flops / pass_s[rounds / 2] / 1e9);
    const char *names[KINDS] = {"qkv", "proj", "fc1", "fc2"};
    for (int k = 0; k < KINDS; k++)
        printf("%-4s %.1f GFLOP/s (thread 0 while multiplying, times %d)\n", names[k],
               kind_flops[k] * (double)rounds / kind_s[k] / 1e9, team);
    return 0;
}
