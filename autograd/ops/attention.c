/* Multi-head self-attention core: qkv [B,N,3C] -> out [B,N,C], between the qkv and proj linears.
 *
 * Per (b, h) pair, with q, k, v the head's D columns of the q, k and v blocks of qkv:
 *   S = q k^T * D^-0.5          [N,N]
 *   A = softmax(S)              [N,N]  (or DynamicViT's softmax_with_policy when policy != NULL)
 *   O = A v                     [N,D]  written into out's columns h*D .. h*D+D
 * In FP32 the head slices are never copied: the GEMM reads them in place with leading dimension
 * 3C and writes O with leading dimension C, which is exactly timm's reshape/permute layout. BF16
 * rounds them into dense per-thread copies, which its kernels need (head_bufs below).
 * The pairs are independent, so the B*H loop is the parallel one; OpenBLAS (OpenMP build)
 * runs single-threaded inside the parallel region, so the cores are not oversubscribed.
 *
 * Saved for backward: the probabilities A [B,H,N,N] (needed for dV and the softmax backward);
 * BF16 keeps them rounded to bf16, the operand its products take, and its softmax backward
 * widens them (half the bytes to store, write and read).
 * With a policy, the backward also needs the unmasked exponentials exp(S - m), which A does not
 * hold where G = 0; rather than keep a second [B,H,N,N] buffer per block it recomputes S with
 * one more GEMM per pair (N*N*D MACs, the size of one of the backward products). What the rows
 * of the forward found is kept instead, three [B,H,N] vectors: each row's max m, its
 * denominator Z and the index of its max, so the backward needs neither the scan nor the sum.
 * The recomputed S is the forward's to the bit (the same GEMM on the same operands), so these
 * are exactly the values a second pass would find.
 *
 * cls_attn (EViT's score) is a second output [B,N-1] = mean_h A[b,h,0,1:]. It gets its own
 * tiny tape node, recorded right after the attention node, so it runs first in reverse. That
 * node does not touch qkv: it adds its incoming gradient into an accumulator dcls that the
 * attention node owns, and makes sure the attention output has a (possibly zero) gradient so
 * that the attention node's backward runs even when only cls_attn was used downstream. The
 * attention backward then adds dcls/H into dA[b,h,0,1:] for every head before the softmax
 * backward, so both outputs share one pass over the heads. */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <string.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "src/common/bf16_round.h"
#include "src/common/rows.h"
#include "src/common/vecmath.h"
#include "src/util/alloc.h"

#define POLICY_EPS 1e-6f

typedef struct attention_saved {
    float *attn;   /* [B,H,N,N] probabilities (FP32) */
    uint16_t *attn_h; /* [B,H,N,N] probabilities rounded to bf16 (BF16; attn is then NULL) */
    float *row_m;  /* [B,H,N] with a policy: max_j S_ij */
    float *row_z;  /* [B,H,N] with a policy: Z_i = sum_k A_ik + eps (A unnormalised) */
    uint32_t *row_am; /* [B,H,N] with a policy: the first j where S_ij = m_i */
    float *dcls;   /* [B,N-1] gradient of cls_attn, filled by the cls node; NULL without it */
    size_t B, N, C, H;
    float scale;
} attention_saved;

/* Below this many MACs per op the thread start-up costs more than it saves. */
static bool worth_threads(size_t B, size_t H, size_t N, size_t D) { return B * H > 1 && B * H * N * N * D > 65536; }

/* BF16 runs each pair's products on dense copies: a thread rounds its image's qkv (and dout,
 * in the backward) into bf16 buffers of its own laid out head by head, [3,H,N,D] (and
 * [H,N,D]), and a product that belongs in a head's columns is written dense into o [N,D], then
 * stored there. oneDNN 2.6 gives dense operands and outputs its AMX kernels where the CPU has
 * them; for the strided head slices it falls back to a non-AMX GEMM that is several times
 * slower (docs/performance.md, "Attention and fc2 on AMX"). The image is rounded once for its heads,
 * row by row, so the read streams through memory as rounding qkv whole did (a head's columns
 * alone are a strided read that waits on memory). */
typedef struct head_bufs {
    uint16_t *qkv;  /* [3,H,N,D] bf16: the thread's current image, q, k and v head by head */
    uint16_t *dout; /* [H,N,D] bf16, in the backward */
    uint16_t *ds;     /* [N,N] bf16: dS, in the backward */
    float *s;         /* [N,N] the forward's scores, softmaxed here, then rounded into A */
    float *o;         /* [N,D] a product on its way into a head's columns */
    size_t *image;    /* the image now in qkv (and dout); SIZE_MAX for none */
} head_bufs;

/* Lays one thread's head_bufs out from `at` (NULL: only measures) and returns the bytes they
 * take, a multiple of TPSC_ALIGN, so that the next thread's start stays aligned. */
static size_t head_bufs_carve(unsigned char *at, size_t N, size_t C, size_t D, bool backward, head_bufs *w) {
    size_t used = 0;
#define HB_TAKE(field, type, count)                                                        \
    do {                                                                                   \
        if (at) w->field = (type *)(void *)(at + used);                                    \
        used += ((count) * sizeof(type) + TPSC_ALIGN - 1) & ~(size_t)(TPSC_ALIGN - 1);     \
    } while (0)
    HB_TAKE(qkv, uint16_t, 3 * N * C);
    if (backward) {
        HB_TAKE(dout, uint16_t, N * C);
        HB_TAKE(ds, uint16_t, N * N);
    } else {
        HB_TAKE(s, float, N * N);
    }
    HB_TAKE(o, float, N * D);
    HB_TAKE(image, size_t, 1);
#undef HB_TAKE
    return used;
}

/* BF16: one head_bufs per thread of the coming parallel loop, in the step's arena, none holding
 * an image yet; *bytes receives one thread's share. NULL in FP32, or out of memory (ctx's
 * error set). */
static unsigned char *head_bufs_new(ag_ctx *ctx, size_t N, size_t C, size_t D, bool backward, size_t *bytes) {
    if (ag_operand_bytes(ctx, 1) == 0) return NULL;
    const int nthreads = omp_get_max_threads();
    head_bufs w = {0};
    *bytes = head_bufs_carve(NULL, N, C, D, backward, &w);
    unsigned char *buf = ag_alloc(ctx, (size_t)nthreads * *bytes);
    for (int t = 0; buf && t < nthreads; t++) {
        head_bufs_carve(buf + (size_t)t * *bytes, N, C, D, backward, &w);
        *w.image = SIZE_MAX;
    }
    return buf;
}

/* Thread t's head_bufs in buf (from head_bufs_new); all NULL (the FP32 way) when buf is. */
static head_bufs head_bufs_of(unsigned char *buf, size_t bytes, int t, size_t N, size_t C, size_t D, bool backward) {
    head_bufs w = {0};
    if (buf) head_bufs_carve(buf + (size_t)t * bytes, N, C, D, backward, &w);
    return w;
}

/* h [P,N,D] = bf16 of x [N, P*D], chunk p of each row going to h's p-th [N,D] */
static void round_by_heads(const float *x, size_t N, size_t P, size_t D, uint16_t *h) {
    for (size_t i = 0; i < N; i++)
        for (size_t p = 0; p < P; p++) bf16_round_row(x + (i * P + p) * D, D, h + (p * N + i) * D);
}

/* h [P,N,D] = x [N, P*D] already in bf16 (a qkv kept as bf16 only), regrouped as round_by_heads
 * does */
static void copy_by_heads(const uint16_t *x, size_t N, size_t P, size_t D, uint16_t *h) {
    for (size_t i = 0; i < N; i++)
        for (size_t p = 0; p < P; p++) memcpy(h + (p * N + i) * D, x + (i * P + p) * D, D * sizeof(uint16_t));
}

/* y [N,D] (rows ld apart) = o [N,D], or += o when add */
static void store_head(float *y, size_t ld, const float *o, size_t N, size_t D, bool add) {
    for (size_t i = 0; i < N; i++) {
        float *yi = y + i * ld;
        const float *oi = o + i * D;
        if (!add) {
            memcpy(yi, oi, D * sizeof(float));
            continue;
        }
        #pragma omp simd
        for (size_t j = 0; j < D; j++) yi[j] += oi[j];
    }
}

/* Pair (b, h)'s q, k, v (and dO) as GEMM operands with their row strides: FP32 reads the head's
 * columns of qkv [B,N,3C] (and of dout [B,N,C]) in place; BF16 reads w's dense copies, rounding
 * image b first unless w holds it already (or copying it, from a qkv kept as bf16 only). */
typedef struct pair_operands {
    ag_operand q, k, v, dout;
    int ld, ld_dout;
} pair_operands;

static pair_operands pair_operands_of(const head_bufs *w, const ag_tensor *qkv, const float *dout,
                                      const uint16_t *dout_h, size_t b, size_t h, size_t N, size_t C, size_t H) {
    const size_t D = C / H, C3 = 3 * C;
    if (!w->qkv) {
        const float *q = qkv->data + b * N * C3 + h * D;
        return (pair_operands){.q = {.f = q}, .k = {.f = q + C}, .v = {.f = q + 2 * C},
                               .dout = {.f = dout ? dout + b * N * C + h * D : NULL}, .ld = (int)C3, .ld_dout = (int)C};
    }
    if (*w->image != b) {
        if (qkv->bf16) copy_by_heads(qkv->bf16 + b * N * C3, N, 3 * H, D, w->qkv);
        else round_by_heads(qkv->data + b * N * C3, N, 3 * H, D, w->qkv);
        if (dout_h) copy_by_heads(dout_h + b * N * C, N, H, D, w->dout);
        else if (dout) round_by_heads(dout + b * N * C, N, H, D, w->dout);
        *w->image = b;
    }
    const size_t nd = N * D;
    return (pair_operands){.q = {.h = w->qkv + h * nd}, .k = {.h = w->qkv + (H + h) * nd},
                           .v = {.h = w->qkv + (2 * H + h) * nd}, .dout = {.h = dout || dout_h ? w->dout + h * nd : NULL},
                           .ld = (int)D, .ld_dout = (int)D};
}

/* A head's columns y [N,D] (rows ldy apart) = alpha op(a) b + (add ? y : 0), a [N,N], b [N,D]
 * with rows ldb apart: FP32 straight into y, BF16 through w's dense o. */
static void head_product(ag_ctx *ctx, const head_bufs *w, bool trans_a, size_t N, size_t D, float alpha, ag_operand a,
                         ag_operand b, int ldb, float *y, size_t ldy, bool add) {
    const int iN = (int)N, iD = (int)D;
    if (!w->o) {
        ag_gemm(ctx, trans_a, false, iN, iD, iN, alpha, a, iN, b, ldb, add ? 1.0f : 0.0f, y, (int)ldy);
        return;
    }
    ag_gemm(ctx, trans_a, false, iN, iD, iN, alpha, a, iN, b, ldb, 0.0f, w->o, iD);
    store_head(y, ldy, w->o, N, D, add);
}

/* BF16, into a tensor or gradient kept as bf16 only: a head's columns yh [N,D] (rows ldy
 * apart) = bf16(alpha op(a) b), computed into w's dense o and rounded as it is stored (a
 * strided output would leave oneDNN's AMX kernel); sums [D], when not NULL, += the column sums
 * of the stored values (a gradient's, for its producer's bias). */
static void head_product_to_bf16(ag_ctx *ctx, const head_bufs *w, bool trans_a, size_t N, size_t D, float alpha,
                                 ag_operand a, ag_operand b, int ldb, uint16_t *yh, size_t ldy, double *sums) {
    const int iN = (int)N, iD = (int)D;
    ag_gemm(ctx, trans_a, false, iN, iD, iN, alpha, a, iN, b, ldb, 0.0f, w->o, iD);
    for (size_t i = 0; i < N; i++) {
        uint16_t *row = yh + i * ldy;
        bf16_round_row(w->o + i * D, D, row);
        if (sums) {
            #pragma omp simd
            for (size_t j = 0; j < D; j++) sums[j] += bf16_to_float(row[j]);
        }
    }
}

/* G_ij = P_j + (1 - P_j) [i == j], in the official expression's float arithmetic. */
static inline float policy_gate(const float *p, size_t i, size_t j) {
    return p[j] + (1.0f - p[j]) * (i == j ? 1.0f : 0.0f);
}

/* The first index of the row's max (torch.max(dim)'s index, where the max's gradient goes):
 * the max by a vector reduction (exact, so any order finds the same value), then its first
 * occurrence. A NaN row gives some index in range. */
static size_t row_argmax(const float *row, size_t N) {
    float m = row[0];
    #pragma omp simd reduction(max : m)
    for (size_t j = 0; j < N; j++) m = row[j] > m ? row[j] : m;
    size_t am = 0;
    while (am + 1 < N && !(row[am] >= m)) am++;
    return am;
}

/* DynamicViT's softmax_with_policy on row i of the scores, following the official arithmetic:
 * the max is over the whole unmasked row, then A_ij = exp(S_ij - m) G_ij and
 * attn_ij = (A_ij + eps/N) / (sum_k A_ik + eps). The row becomes attn; *m, *z and *am receive
 * the max, Z = sum_k A_ik + eps and the max's index, for the backward. */
static void policy_softmax_row(float *row, const float *p, size_t i, size_t N, float *m_out, float *z_out,
                               uint32_t *am_out) {
    const size_t am = row_argmax(row, N);
    const float m = row[am];
    float sum = 0.0f;
    #pragma omp simd reduction(+ : sum)
    for (size_t j = 0; j < N; j++) {
        row[j] = vm_expf(row[j] - m);
        sum += row[j] * policy_gate(p, i, j);
    }
    const float z = sum + POLICY_EPS;
    const float eps_n = POLICY_EPS / (float)N;
    #pragma omp simd
    for (size_t j = 0; j < N; j++) row[j] = (row[j] * policy_gate(p, i, j) + eps_n) / z;
    *m_out = m, *z_out = z, *am_out = (uint32_t)am;
}

/* The policy backward of one row (see attention_backward), FP32, in the order the official
 * formulation's float arithmetic was first written here: r and dm are serial sums, so the
 * parity tests keep their bits. e holds S's row and becomes exp(S - m); g holds dA and becomes
 * dS; dp [N] += this row's share of dP. Everything elementwise runs as vectors (the same
 * operations per element, so the same bits). */
static void policy_backward_row(float *g, float *e, const float *a, const float *p, size_t i, size_t N, float m,
                                float z, size_t am, float *dp) {
    #pragma omp simd
    for (size_t j = 0; j < N; j++) e[j] = vm_expf(e[j] - m);
    float r = 0.0f;
    for (size_t j = 0; j < N; j++) r += g[j] * a[j];
    const float dp_i = dp[i]; /* dG_ii/dP_i = 0: the diagonal adds nothing */
    #pragma omp simd
    for (size_t j = 0; j < N; j++) {
        const float da = (g[j] - r) / z;
        dp[j] += da * e[j];
        g[j] = da * policy_gate(p, i, j) * e[j];
    }
    dp[i] = dp_i;
    float dm = 0.0f;
    for (size_t j = 0; j < N; j++) dm -= g[j];
    g[am] += dm;
}

/* The same in BF16, where the sums may be reordered, on the bf16 probabilities ha: one vector
 * pass per row computes dS and dP's share and rounds dS to bf16 (hs) while the row is in cache;
 * g keeps dS as floats only so that dm can be added at the argmax before that entry is rounded. */
static void policy_backward_bf16(float *g, const float *S, const uint16_t *ha, const float *p, const float *rm,
                                 const float *rz, const uint32_t *ram, size_t N, float *dp, uint16_t *hs) {
    for (size_t i = 0; i < N; i++) {
        float *gi = g + i * N;
        const float *si = S + i * N;
        const uint16_t *hai = ha + i * N;
        uint16_t *hsi = hs + i * N;
        const float m = rm[i], iz = 1.0f / rz[i];
        float r = 0.0f;
        #pragma omp simd reduction(+ : r)
        for (size_t j = 0; j < N; j++) r += gi[j] * bf16_to_float(hai[j]);
        const float dp_i = dp[i];
        float sum_ds = 0.0f; /* dm = -sum_ds */
        #pragma omp simd reduction(+ : sum_ds)
        for (size_t j = 0; j < N; j++) {
            const float e = vm_expf(si[j] - m), da = (gi[j] - r) * iz;
            const float ds = da * policy_gate(p, i, j) * e;
            dp[j] += da * e;
            sum_ds += ds;
            gi[j] = ds;
            hsi[j] = bf16_from_float(ds);
        }
        dp[i] = dp_i;
        hsi[ram[i]] = bf16_from_float(gi[ram[i]] - sum_ds);
    }
}

/* BF16, plain softmax, on the bf16 probabilities ha: hs = bf16(dS), dS_ij = A_ij (g_ij - r_i)
 * with r_i = sum_k g_ik A_ik, row by row while the row is in cache; dS is only a GEMM operand,
 * so it is never stored as floats. (FP32 keeps its serial sum, so its results stay as they
 * were.) */
static void softmax_backward_bf16(const uint16_t *ha, const float *g, size_t N, uint16_t *hs) {
    for (size_t i = 0; i < N; i++) {
        const uint16_t *hai = ha + i * N;
        const float *gi = g + i * N;
        uint16_t *hsi = hs + i * N;
        float r = 0.0f;
        #pragma omp simd reduction(+ : r)
        for (size_t j = 0; j < N; j++) r += gi[j] * bf16_to_float(hai[j]);
        #pragma omp simd
        for (size_t j = 0; j < N; j++) hsi[j] = bf16_from_float(bf16_to_float(hai[j]) * (gi[j] - r));
    }
}

/* Gradients, per (b,h), with g = dL/dA (from out, plus cls_attn's share on row 0):
 *   dV = A^T dO;  g = dO V^T (+ dcls/H);  dS = softmax backward of g;
 *   dQ = scale dS K;  dK = scale dS^T Q;  all accumulated into d(qkv)'s columns of the head.
 * Plain softmax: dS_ij = A_ij (g_ij - r_i), r_i = sum_k g_ik A_ik.
 * Policy: with E = exp(S - m), Z the row's denominator, a_ij = E_ij G_ij:
 *   d a_ij = (g_ij - r_i) / Z_i;  dS_ij = d a_ij G_ij E_ij;  dm_i = -sum_j dS_ij goes to the
 *   row's argmax (m is not detached in the official code; it matters only through eps);
 *   dP_j += sum_{i != j} d a_ij E_ij (dG_ij/dP_j = 1 - [i == j]).
 * dP_j collects from every head of the same image, so each pair writes its own [N] slice of
 * a [B,H,N] scratch and the heads are summed after the parallel loop. */
static void attention_backward(ag_ctx *ctx, ag_node *n) {
    attention_saved *s = n->saved;
    ag_tensor *qkv = n->in[0], *policy = n->n_in > 1 ? n->in[1] : NULL;
    const size_t B = s->B, N = s->N, C = s->C, H = s->H, D = C / H, C3 = 3 * C;
    const float scale = s->scale;
    const float *dout = n->out->grad;
    const uint16_t *dout_h = n->out->grad_bf16; /* an output kept as bf16 only gets its gradient so */
    /* Every element of dqkv is written once, by the dQ, dK or dV product of its head: a new
     * buffer is stored into (beta 0) rather than zeroed and added to. A qkv kept as bf16 only
     * gets its gradient as bf16 only (dqkv_h), which is all its producer's products read: the
     * values the float gradient would be rounded to there. */
    bool fresh = true;
    uint16_t *dqkv_h = qkv->bf16 ? ag_grad_bf16_take(ctx, qkv) : NULL;
    float *dqkv = qkv->bf16 ? NULL : ag_grad_write(ctx, qkv, &fresh);
    float *dpolicy = policy ? ag_grad(ctx, policy) : NULL;
    if (ctx->status != TPSC_OK) return;
    if (!dqkv && !dqkv_h && !dpolicy) return;
    /* dqkv_h's column sums for the qkv linear's bias, summed as the heads are stored: [threads,3C] */
    const int nthreads = omp_get_max_threads();
    double *dqkv_sums = dqkv_h ? ag_grad_bf16_sums_new(ctx, qkv, nthreads) : NULL;
    if (dqkv_h && !dqkv_sums) return;

    const size_t per_thread = (policy ? 2 : 1) * N * N;
    float *scratch = ag_alloc(ctx, (size_t)nthreads * per_thread * sizeof(float));
    /* [B,H,N]: written even when the policy needs no gradient, so the row code has no branch */
    float *dp_heads = policy ? ag_alloc(ctx, B * H * N * sizeof(float)) : NULL;
    /* BF16: per thread, dense bf16 copies of the pair's q, k, v, dO and dS (head_bufs) */
    const bool bf16 = ag_operand_bytes(ctx, 1) > 0;
    size_t wbytes = 0;
    unsigned char *wbuf = head_bufs_new(ctx, N, C, D, true, &wbytes);
    if (!scratch || (policy && !dp_heads) || (bf16 && !wbuf)) {
        ag_error(ctx, TPSC_ERR_NOMEM, "attention backward: no scratch for B=%zu H=%zu N=%zu", B, H, N);
        return;
    }
    if (dp_heads) memset(dp_heads, 0, B * H * N * sizeof(float));
    const int iN = (int)N, iD = (int)D;

    #pragma omp parallel for schedule(static) if (worth_threads(B, H, N, D))
    for (long pair = 0; pair < (long)(B * H); pair++) {
        const size_t b = (size_t)pair / H, h = (size_t)pair % H;
        const int t = omp_get_thread_num();
        float *g = scratch + (size_t)t * per_thread;    /* [N,N] dA, then dS */
        float *e = policy ? g + N * N : NULL;           /* [N,N] exp(S - m) */
        const float *A = s->attn ? s->attn + (size_t)pair * N * N : NULL;            /* FP32 */
        const uint16_t *Ah = s->attn_h ? s->attn_h + (size_t)pair * N * N : NULL;   /* BF16 */
        const head_bufs w = head_bufs_of(wbuf, wbytes, t, N, C, D, true);
        const pair_operands op = pair_operands_of(&w, qkv, dout, dout_h, b, h, N, C, H);
        float *dq = dqkv ? dqkv + b * N * C3 + h * D : NULL, *dk = dq ? dq + C : NULL, *dv = dq ? dq + 2 * C : NULL;

        /* dV [N,D] += A^T dO (FP32 first, from A; BF16 below, from the stored bf16 A) */
        if (dv && !bf16) head_product(ctx, &w, true, N, D, 1.0f, (ag_operand){A, NULL, 0, 0}, op.dout, op.ld_dout, dv, C3, !fresh);
        /* g [N,N] = dO V^T */
        ag_gemm(ctx, false, true, iN, iN, iD, 1.0f, op.dout, op.ld_dout, op.v, op.ld, 0.0f, g, iN);
        if (s->dcls) {
            const float *dc = s->dcls + b * (N - 1);
            for (size_t j = 1; j < N; j++) g[j] += dc[j - 1] / (float)H;
        }
        const float *p = policy ? policy->data + b * N : NULL;
        float *dp = policy ? dp_heads + (size_t)pair * N : NULL;
        const size_t ro = (size_t)pair * N; /* this pair's rows in row_m, row_z, row_am */
        /* e = S = scale q k^T, as in the forward (the same GEMM, so the same bits) */
        if (policy) ag_gemm(ctx, false, true, iN, iN, iD, scale, op.q, op.ld, op.k, op.ld, 0.0f, e, iN);

        if (bf16) {
            if (policy)
                policy_backward_bf16(g, e, Ah, p, s->row_m + ro, s->row_z + ro, s->row_am + ro, N, dp, w.ds);
            else
                softmax_backward_bf16(Ah, g, N, w.ds);
            const ag_operand dS = {.h = w.ds}, Ao = {.h = Ah};
            if (dqkv) {
                head_product(ctx, &w, true, N, D, 1.0f, Ao, op.dout, op.ld_dout, dv, C3, !fresh);
                head_product(ctx, &w, false, N, D, scale, dS, op.k, op.ld, dq, C3, !fresh);
                head_product(ctx, &w, true, N, D, scale, dS, op.q, op.ld, dk, C3, !fresh);
            } else if (dqkv_h) {
                uint16_t *dqh = dqkv_h + b * N * C3 + h * D;
                double *sums = dqkv_sums + (size_t)t * C3 + h * D; /* the thread's column sums */
                head_product_to_bf16(ctx, &w, true, N, D, 1.0f, Ao, op.dout, op.ld_dout, dqh + 2 * C, C3, sums + 2 * C);
                head_product_to_bf16(ctx, &w, false, N, D, scale, dS, op.k, op.ld, dqh, C3, sums);
                head_product_to_bf16(ctx, &w, true, N, D, scale, dS, op.q, op.ld, dqh + C, C3, sums + C);
            }
            continue;
        }
        if (!policy) {
            for (size_t i = 0; i < N; i++) {
                float *gi = g + i * N;
                const float *ai = A + i * N;
                float r = 0.0f;
                for (size_t j = 0; j < N; j++) r += gi[j] * ai[j];
                for (size_t j = 0; j < N; j++) gi[j] = ai[j] * (gi[j] - r);
            }
        } else {
            for (size_t i = 0; i < N; i++)
                policy_backward_row(g + i * N, e + i * N, A + i * N, p, i, N, s->row_m[ro + i], s->row_z[ro + i],
                                    s->row_am[ro + i], dp);
        }

        if (dqkv) {
            /* dQ [N,D] += scale dS K;  dK [N,D] += scale dS^T Q */
            const ag_operand dS = {.f = g};
            head_product(ctx, &w, false, N, D, scale, dS, op.k, op.ld, dq, C3, !fresh);
            head_product(ctx, &w, true, N, D, scale, dS, op.q, op.ld, dk, C3, !fresh);
        }
    }

    if (dqkv_sums) ag_grad_bf16_sums_fold(qkv, nthreads);
    if (dpolicy)
        for (size_t b = 0; b < B; b++)
            for (size_t h = 0; h < H; h++)
                for (size_t j = 0; j < N; j++) dpolicy[b * N + j] += dp_heads[(b * H + h) * N + j];
    /* Consumed: a later backward over a new tape must not see this step's cls gradient. */
    if (s->dcls) memset(s->dcls, 0, B * (N - 1) * sizeof(float));
}

/* cls_attn's node: hands its gradient to the attention node (see the top of the file). */
static void attention_cls_backward(ag_ctx *ctx, ag_node *n) {
    attention_saved *s = n->saved;
    ag_tensor *out = n->in[0];
    if (!ag_grad(ctx, out)) return; /* a zero gradient, so that the attention backward runs */
    const float *dc = n->out->grad;
    for (size_t i = 0; i < s->B * (s->N - 1); i++) s->dcls[i] += dc[i];
}

/* key_bias [B,N] or NULL: a constant added to every row of S before the softmax (ToMe's
 * proportional attention, log token sizes). The backward needs nothing more: it works from A. */
static ag_tensor *attention(ag_ctx *ctx, ag_tensor *qkv, size_t heads, ag_tensor *policy, const float *key_bias,
                            ag_tensor **cls_attn, bool out_bf16) {
    if (cls_attn) *cls_attn = NULL;
    /* qkv may be kept as bf16 only (ag_layernorm_linear_bf16), which BF16's products read as they are */
    const bool qkv_bf16 = qkv && !qkv->data && qkv->bf16;
    if (!(qkv_bf16 ? ag_ok(ctx, 0) : ag_ok(ctx, 1, qkv))) return NULL;
    if (qkv_bf16 && ctx->precision != AG_BF16)
        return ag_error(ctx, TPSC_ERR_ARG, "attention: a qkv kept as bf16 only needs precision bf16");
    char sq[64], sp[64];
    if (qkv->ndim != 3 || qkv->shape[2] % 3 != 0 || heads == 0 || (qkv->shape[2] / 3) % heads != 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "attention: qkv %s must be [B,N,3C] with C divisible by %zu heads",
                        ag_shape_str(qkv, sq, sizeof sq), heads);
    if (!ag_is_contiguous(qkv)) return ag_error(ctx, TPSC_ERR_SHAPE, "attention: qkv must be contiguous");
    const size_t B = qkv->shape[0], N = qkv->shape[1], C = qkv->shape[2] / 3, H = heads, D = C / H;
    if (B == 0 || N == 0 || C == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "attention: empty qkv %s", ag_shape_str(qkv, sq, sizeof sq));
    if (policy) {
        /* [B,N], or DynamicViT's own [B,N,1]. */
        bool ok = ag_is_contiguous(policy) && policy->shape[0] == B && policy->shape[1] == N &&
                  (policy->ndim == 2 || (policy->ndim == 3 && policy->shape[2] == 1));
        if (!ok)
            return ag_error(ctx, TPSC_ERR_SHAPE, "attention: policy %s does not match qkv %s (want [B,N])",
                            ag_shape_str(policy, sp, sizeof sp), ag_shape_str(qkv, sq, sizeof sq));
    }
    if (policy && key_bias)
        return ag_error(ctx, TPSC_ERR_ARG, "attention: a policy and a key bias cannot be combined");
    if (cls_attn && N < 2)
        return ag_error(ctx, TPSC_ERR_SHAPE, "attention: cls_attn needs a cls token and patches, qkv %s",
                        ag_shape_str(qkv, sq, sizeof sq));

    out_bf16 = out_bf16 && ctx->precision == AG_BF16;
    ag_tensor *out = out_bf16 ? ag_new_bf16(ctx, 3, (size_t[]){B, N, C}) : ag_new3(ctx, B, N, C);
    const bool bf16 = ag_operand_bytes(ctx, 1) > 0;
    float *attn = bf16 ? NULL : ag_alloc(ctx, B * H * N * N * sizeof(float));
    uint16_t *attn_h = bf16 ? ag_alloc(ctx, B * H * N * N * sizeof(uint16_t)) : NULL;
    if (!out || (!attn && !attn_h)) return NULL;
    /* With a policy, what each row's softmax found, for the backward (see the top of the file) */
    float *row_m = NULL, *row_z = NULL;
    uint32_t *row_am = NULL;
    if (policy) {
        row_m = ag_alloc(ctx, B * H * N * sizeof(float)), row_z = ag_alloc(ctx, B * H * N * sizeof(float));
        row_am = ag_alloc(ctx, B * H * N * sizeof(uint32_t));
        if (!row_m || !row_z || !row_am) return NULL;
    }
    const float scale = (float)(1.0 / sqrt((double)D));
    const int iN = (int)N, iD = (int)D;
    /* BF16 (gemm.h): each thread rounds its pair's q, k, v into dense buffers (head_bufs) and
     * the scores go to its own [N,N] buffer; the softmax runs there on the FP32 scores and each
     * finished row is rounded into the stored bf16 A. (A product storing its tiles straight
     * into the large, cold A ran at a third of its rate: docs/performance.md, "Attention and
     * fc2 on AMX".) */
    size_t wbytes = 0;
    unsigned char *wbuf = head_bufs_new(ctx, N, C, D, false, &wbytes);
    if (bf16 && !wbuf) return NULL;

    #pragma omp parallel for schedule(static) if (worth_threads(B, H, N, D))
    for (long pair = 0; pair < (long)(B * H); pair++) {
        const size_t b = (size_t)pair / H, h = (size_t)pair % H;
        /* FP32: S, then A, in attn itself; BF16: S in w.s, A rounded into attn_h */
        float *A = bf16 ? NULL : attn + (size_t)pair * N * N;
        uint16_t *Ah = bf16 ? attn_h + (size_t)pair * N * N : NULL;
        const head_bufs w = head_bufs_of(wbuf, wbytes, omp_get_thread_num(), N, C, D, false);
        const pair_operands op = pair_operands_of(&w, qkv, NULL, NULL, b, h, N, C, H);
        /* S [N,N] = scale q k^T, then the row softmax in place */
        float *S = bf16 ? w.s : A;
        ag_gemm(ctx, false, true, iN, iN, iD, scale, op.q, op.ld, op.k, op.ld, 0.0f, S, iN);
        if (key_bias)
            for (size_t i = 0; i < N; i++) {
                const float *kb = key_bias + b * N;
                float *row = S + i * N;
                #pragma omp simd
                for (size_t j = 0; j < N; j++) row[j] += kb[j];
            }
        for (size_t i = 0; i < N; i++) {
            if (policy)
                policy_softmax_row(S + i * N, policy->data + b * N, i, N, row_m + (size_t)pair * N + i,
                                   row_z + (size_t)pair * N + i, row_am + (size_t)pair * N + i);
            else
                row_softmax(S + i * N, N); /* libtpsinfer's, bit for bit */
            if (Ah) bf16_round_row(S + i * N, N, Ah + i * N); /* while the row is in cache */
        }
        /* out[b, :, h*D : h*D+D] = A v */
        const ag_operand Ao = {.f = A, .h = Ah};
        if (out->bf16)
            head_product_to_bf16(ctx, &w, false, N, D, 1.0f, Ao, op.v, op.ld, out->bf16 + b * N * C + h * D, C, NULL);
        else
            head_product(ctx, &w, false, N, D, 1.0f, Ao, op.v, op.ld, out->data + b * N * C + h * D, C, false);
    }
    if (ctx->status != TPSC_OK) return NULL;

    ag_tensor *cls = NULL;
    if (cls_attn) {
        cls = ag_new2(ctx, B, N - 1);
        if (!cls) return NULL;
        for (size_t b = 0; b < B; b++)
            for (size_t j = 1; j < N; j++) {
                float sum = 0.0f;
                for (size_t h = 0; h < H; h++) {
                    const size_t at = ((b * H + h) * N) * N + j; /* row 0 of the head: the cls token's */
                    sum += attn ? attn[at] : bf16_to_float(attn_h[at]);
                }
                cls->data[b * (N - 1) + j - 1] = sum / (float)H;
            }
    }

    ag_tensor *in[2] = {qkv, policy};
    ag_node *node = ag_record(ctx, "attention", attention_backward, out, policy ? 2 : 1, in);
    if (node) {
        attention_saved *s = ag_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        *s = (attention_saved){.attn = attn, .attn_h = attn_h, .row_m = row_m, .row_z = row_z, .row_am = row_am, .B = B, .N = N, .C = C, .H = H, .scale = scale};
        node->saved = s;
        if (cls) {
            s->dcls = ag_alloc(ctx, B * (N - 1) * sizeof(float));
            if (!s->dcls) return NULL;
            memset(s->dcls, 0, B * (N - 1) * sizeof(float));
            ag_node *cls_node = ag_record(ctx, "attention_cls", attention_cls_backward, cls, 1, &out);
            if (!cls_node) return NULL;
            cls_node->saved = s;
        }
    } else if (ctx->status != TPSC_OK) {
        return NULL;
    }
    if (cls_attn) *cls_attn = cls;
    return out;
}

ag_tensor *ag_attention(ag_ctx *ctx, ag_tensor *qkv, size_t heads, ag_tensor *policy, ag_tensor **cls_attn) {
    return attention(ctx, qkv, heads, policy, NULL, cls_attn, false);
}

ag_tensor *ag_attention_bf16(ag_ctx *ctx, ag_tensor *qkv, size_t heads, ag_tensor *policy, ag_tensor **cls_attn) {
    return attention(ctx, qkv, heads, policy, NULL, cls_attn, true);
}

ag_tensor *ag_attention_sized(ag_ctx *ctx, ag_tensor *qkv, size_t heads, const float *log_size, ag_tensor **cls_attn) {
    return attention(ctx, qkv, heads, NULL, log_size, cls_attn, false);
}
