/* cdcp_dynamic: what per-image (dynamic) channel gates would cost at inference, against the
 * static gates libtpsinfer runs and against the dense model (docs/cait.md, "Per-image gates").
 *
 * The shapes are DeiT-S at 224: C = 384 channels, H = 6 heads of D = 64, n = 197 tokens per
 * image (cls first), 12 blocks. Each block runs the attention half of a ViT block on the
 * tokens x [B n, C] of all images:
 *     qkv = x Wqkv^T + b  [B n, H(2dq+dv)];  per image and head: A = softmax(q k^T / sqrt(D)),
 *     o = A v  [B n, H dv];  x += o Wproj^T + b
 * in three variants, timed in alternation:
 *   dense    dq = dv = D, the full weights;
 *   static   the weights already shrunk to the kept channels (one Q/K set and one V set per
 *            block, shared by every image), as `tpsc export` writes them: one GEMM per linear
 *            for the whole batch, as libtpsinfer runs it;
 *   dynamic  per image and block: two gate predictors on that image's cls row (a linear
 *            C -> D of logits for Q/K, another for V), the top-k channels of each (the same
 *            fixed counts as static, kept in their original order), that image's qkv weight
 *            rows and bias and its proj weight columns gathered to the kept channels, then the
 *            same GEMMs on that image's n rows only, and attention on the kept channels.
 * The three share every kernel. qkv and proj run on one of libtpsinfer's two FP32 back-ends
 * (--gemm): OpenBLAS cblas_sgemm with the bias written first and the residual accumulated by
 * the product, as its OpenBLAS path; or oneDNN's matmul with bias and residual fused (see the
 * oneDNN section below for how each variant gets its weights). Attention is one sgemm for
 * q k^T, the shared row softmax (src/common/rows.h) and one sgemm for A v per (image, head):
 * libtpsinfer's TPS_ATTENTION_GEMM (its fused kernel, the default on AVX-512, runs the same
 * products at the same widths for static and dynamic).
 *
 * Threads as libtpsinfer uses them (src/infer/forward.c): a batch of at least 4 images per
 * thread is split into one chunk per thread, each run start to end by its thread with
 * single-threaded BLAS (dynamic: image after image inside the chunk); a smaller batch runs as
 * one team sharing each linear (OpenBLAS: by output columns, each member gathering only its
 * own rows of the per-image weights, so dynamic adds no barrier; oneDNN: by rows) and
 * attention by heads at batch 1, by query rows otherwise, with a barrier after qkv, after
 * attention and after proj.
 *
 * Timed: the 12 blocks' qkv, attention and proj; for dynamic also the predictors, the top-k
 * and the gathers. Not timed (identical in the three, or not part of this half of a block):
 * the patch embedding, LayerNorm (the predictor reads the block input's cls row where the real
 * one would read norm1's, the same cost), the MLP, the head, the setup of the weights and the
 * copy of the input. The static variant's channel sets are fixed per block (random): its
 * speed does not depend on which channels are kept. libtpsinfer's own barrier
 * (team_barrier.c) is replaced by OpenMP's; BF16 is not modelled.
 *
 * Output: per batch size, the attention part's images/s (wall, from the median pass) and
 * the medians over rounds of the per-round speed ratios in wall-clock and process-CPU time,
 * plus the MACs per image of each variant (dynamic: the static GEMM MACs plus its
 * predictors) and the floats it gathers per image. The MAC count of the GEMMs is checked
 * against the shared cost model (src/common/macs.h).
 *
 *   build/bench/cdcp_dynamic [--batch 1,32] [--threads 2] [--rounds 15] [--keep-qk 0.5]
 *                            [--keep-v 0.5] [--passes P] [--gemm openblas|onednn]
 * (P: passes per timed sample; --gemm: the linears' back-end, OpenBLAS by default)
 */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "src/channels/channels.h"
#include "src/common/macs.h"
#include "src/common/rows.h"
#include "src/perf/bench.h"
#include "src/util/status.h"

/* Letters: B images, n tokens per image, C channels, H heads, D channels per head (dense),
 * dq / dv kept Q/K and V channels per head, L blocks. */
enum { C = 384, H = 6, D = 64, NTOK = 197, L = 12, IMG = 224, PATCH = 16, MLP = 1536, CLASSES = 1000 };
enum { DENSE = 0, STATIC = 1, DYNAMIC = 2, VARIANTS = 3 };
static const char *const variant_name[VARIANTS] = {"dense", "static", "dynamic"};

typedef struct block_w {
    float *qkv_w, *qkv_b;   /* dense [3C, C], [3C] */
    float *proj_w, *proj_b; /* dense [C, C], [C] */
    float *sq_w, *sq_b;     /* static [H(2dq+dv), C], [H(2dq+dv)] */
    float *sp_w;            /* static [C, H dv] (bias: proj_b) */
    float *gq_w, *gq_b;     /* dynamic predictors: Q/K logits [D, C], [D] */
    float *gv_w, *gv_b;     /*                      V logits [D, C], [D] */
    int32_t s_iq[D], s_iv[D]; /* static: the kept channels */
} block_w;

typedef struct thread_buf { /* one thread's scratch */
    float *scores;          /* [n, n] */
    float *w_qkv, *b_qkv;   /* dynamic, split batch: the image's gathered qkv [H(2dq+dv), C], [..] */
    float *w_proj;          /* dynamic, split batch: [C, H dv] */
    int32_t *iq, *iv;       /* dynamic: kept channel indices [B, D] each (team) or [1, D] */
} thread_buf;

typedef struct bench {
    size_t B, T, dq, dv;
    bool onednn; /* the GEMM back-end: oneDNN, else OpenBLAS */
    block_w blk[L];
    float *x0, *x, *qkv, *att; /* [B n, C], [B n, C], [B n, 3C], [B n, C] */
    float *team_w_qkv, *team_b_qkv, *team_w_proj; /* dynamic, team: each image's gathered weights, shared */
    thread_buf *tb;
} bench;

static void *xmalloc(size_t bytes) {
    void *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (!p) {
        fprintf(stderr, "cdcp_dynamic: out of memory (%zu bytes)\n", bytes);
        exit(1);
    }
    return p;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static float urand(float a) { /* uniform in [-a, a) */
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return a * (2.0f * (float)(rng_state >> 40) / (float)(1u << 24) - 1.0f);
}
static float *rand_array(size_t n, float a) {
    float *p = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) p[i] = urand(a);
    return p;
}

/* The k largest of logits [D] (ties: lower index first), in ascending channel order. */
static void top_k(const float *logits, size_t k, int32_t *idx) {
    size_t m = 0;
    for (size_t i = 0; i < D; i++) {
        size_t rank = 0;
        for (size_t j = 0; j < D; j++) rank += logits[j] > logits[i] || (logits[j] == logits[i] && j < i);
        if (rank < k) idx[m++] = (int32_t)i;
    }
}

/* The dense qkv row behind row r of a qkv weight shrunk to Q/K channels iq and V channels iv
 * (layout [Q | K | V], Q = H dq, heads in order). */
static size_t qkv_source_row(size_t r, size_t dq, size_t dv, const int32_t *iq, const int32_t *iv) {
    const size_t Q = H * dq;
    if (r < 2 * Q) {
        const size_t part = r / Q, h = (r % Q) / dq, j = r % dq;
        return part * C + h * D + (size_t)iq[j];
    }
    r -= 2 * Q;
    return 2 * C + (r / dv) * D + (size_t)iv[r % dv];
}

/* Rows r0 .. r1-1 of the shrunk qkv weight and bias, and rows o0 .. o1-1 of the shrunk proj
 * weight [C, H dv] (its kept input columns), gathered from the dense ones. */
static void gather_qkv(const block_w *w, size_t dq, size_t dv, const int32_t *iq, const int32_t *iv, size_t r0,
                       size_t r1, float *wq, float *bq) {
    for (size_t r = r0; r < r1; r++) {
        const size_t s = qkv_source_row(r, dq, dv, iq, iv);
        memcpy(wq + r * C, w->qkv_w + s * C, C * sizeof(float));
        bq[r] = w->qkv_b[s];
    }
}
static void gather_proj(const float *proj_w, size_t dv, const int32_t *iv, size_t o0, size_t o1, float *wp) {
    const size_t V = H * dv;
    for (size_t o = o0; o < o1; o++) {
        const float *src = proj_w + o * C;
        float *dst = wp + o * V;
        for (size_t h = 0; h < H; h++)
            for (size_t j = 0; j < dv; j++) dst[h * dv + j] = src[h * D + (size_t)iv[j]];
    }
}

/* The two predictors on one cls row [C] and their top-k: the image's channel sets. */
static void predict_channels(const block_w *w, const float *cls, size_t dq, size_t dv, int32_t *iq, int32_t *iv) {
    float lq[D], lv[D];
    memcpy(lq, w->gq_b, sizeof lq);
    memcpy(lv, w->gv_b, sizeof lv);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, D, C, 1.0f, w->gq_w, C, cls, 1, 1.0f, lq, 1);
    cblas_sgemv(CblasRowMajor, CblasNoTrans, D, C, 1.0f, w->gv_w, C, cls, 1, 1.0f, lv, 1);
    top_k(lq, dq, iq);
    top_k(lv, dv, iv);
}

/* y [M, cols c0..c1-1 of ldy] = x [M, K] w[c0..c1-1]^T + b (residual: y += ...), libtpsinfer's
 * OpenBLAS linear: the bias (or residual + bias) written first, then sgemm with beta 1. */
static void linear_cols(const float *x, size_t M, size_t K, const float *w, const float *b, size_t c0, size_t c1,
                        float *y, size_t ldy, bool residual) {
    if (M == 0 || c1 <= c0) return;
    const size_t nc = c1 - c0;
    for (size_t r = 0; r < M; r++) {
        float *yr = y + r * ldy + c0;
        if (residual) {
            #pragma omp simd
            for (size_t o = 0; o < nc; o++) yr[o] += b[c0 + o];
        } else {
            memcpy(yr, b + c0, nc * sizeof(float));
        }
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nc, (int)K, 1.0f, x, (int)K, w + c0 * K, (int)K,
                1.0f, y + c0, (int)ldy);
}

/* One image's attention, head h, query rows i0 .. i1-1: qkv [n, H(2dq+dv)] -> out [n, H dv]
 * (libtpsinfer's ti_attention_rows without its options). */
static void attend(const float *qkv, size_t dq, size_t dv, size_t i0, size_t i1, size_t h, float *scores, float *out) {
    if (i1 <= i0) return;
    const size_t Q = H * dq, V = H * dv, W = 2 * Q + V, nq = i1 - i0;
    const float *q = qkv + i0 * W + h * dq, *k = qkv + Q + h * dq, *v = qkv + 2 * Q + h * dv;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nq, NTOK, (int)dq, 1.0f / sqrtf((float)D), q, (int)W, k,
                (int)W, 0.0f, scores, NTOK);
    for (size_t i = 0; i < nq; i++) row_softmax(scores + i * NTOK, NTOK);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nq, (int)dv, NTOK, 1.0f, scores, NTOK, v, (int)W, 0.0f,
                out + i0 * V + h * dv, (int)V);
}

/* This member's output columns [*c0, *c1) of a linear with `cols` outputs (libtpsinfer's
 * split: boundaries on multiples of 16). */
static void my_cols(size_t cols, size_t t, size_t T, size_t *c0, size_t *c1) {
    *c0 = t == 0 ? 0 : (cols * t / T) & ~(size_t)15;
    *c1 = t + 1 == T ? cols : (cols * (t + 1) / T) & ~(size_t)15;
}

/* ---- oneDNN (libtpsinfer's oneDNN back-end, src/infer/gemm_onednn.c; its default on AVX-512,
 * the panel back-end, runs the team's linears on its own kernel over these packed weights) ---
 * dense and static: each weight reordered once, outside the timed passes, into the layout the
 * matmul primitive asks for, bias and residual (sum post-op) fused; a team shares a linear by
 * rows (oneDNN writes dense output rows only). dynamic: the gathered weight [N,K] is given to
 * the matmul as it is (plain w^T, "ba"), which oneDNN's kernel copies into its own blocks
 * during the call; reordering it first would add a pass over the weight and a primitive. In a
 * team the members gather halves of each image's weights and wait at one more barrier per
 * block, since each runs the whole weight on its own rows. Every thread makes and runs its own
 * primitives: with oneDNN's default (library) scratchpad a primitive must run on the thread
 * that created it. */
#ifdef CDCP_HAVE_ONEDNN
#include <oneapi/dnnl/dnnl.h>

#define MAX_ENTRIES 128
#define MAX_COPIES 4

typedef struct mm_entry { /* one thread's matmul primitive and its memory objects */
    size_t M, N, K, owner;
    bool residual, plain;
    dnnl_primitive_t prim;
    dnnl_memory_desc_t wei;
    dnnl_memory_t src, w, bias, dst;
} mm_entry;

typedef struct packed_w { /* a weight [N,K] packed once per layout asked for */
    const float *f;
    int n;
    dnnl_memory_desc_t md[MAX_COPIES];
    void *data[MAX_COPIES];
} packed_w;

static dnnl_engine_t dnn_engine;
static dnnl_stream_t dnn_stream[64];
static mm_entry *dnn_entries[MAX_ENTRIES];
static size_t dnn_n_entries;
static packed_w *dnn_packed;   /* [L][4]: dense qkv, dense proj, static qkv, static proj */

static void dnn_check(dnnl_status_t s, const char *what) {
    if (s != dnnl_success) {
        fprintf(stderr, "cdcp_dynamic: oneDNN %s failed (status %d)\n", what, (int)s);
        exit(1);
    }
}

static void dnn_init(size_t T) {
    dnn_check(dnnl_engine_create(&dnn_engine, dnnl_cpu, 0), "engine");
    for (size_t t = 0; t < T; t++) dnn_check(dnnl_stream_create(&dnn_stream[t], dnn_engine, dnnl_stream_default_flags), "stream");
    dnn_packed = calloc(L * 4, sizeof *dnn_packed);
    if (!dnn_packed) dnn_check(dnnl_out_of_memory, "weight table");
}

static mm_entry *dnn_entry(size_t M, size_t N, size_t K, bool residual, bool plain, size_t t) {
    mm_entry *e = NULL;
    #pragma omp critical(cdcp_onednn)
    {
        for (size_t i = 0; i < dnn_n_entries && !e; i++) {
            mm_entry *c = dnn_entries[i];
            if (c->M == M && c->N == N && c->K == K && c->owner == t && c->residual == residual && c->plain == plain)
                e = c;
        }
        if (!e) {
            if (dnn_n_entries == MAX_ENTRIES) dnn_check(dnnl_out_of_memory, "primitive table");
            e = calloc(1, sizeof *e);
            if (!e) dnn_check(dnnl_out_of_memory, "primitive");
            *e = (mm_entry){.M = M, .N = N, .K = K, .owner = t, .residual = residual, .plain = plain};
            dnnl_memory_desc_t src, wei, bias, dst;
            dnnl_dims_t sd = {(dnnl_dim_t)M, (dnnl_dim_t)K}, wd = {(dnnl_dim_t)K, (dnnl_dim_t)N};
            dnnl_dims_t bd = {1, (dnnl_dim_t)N}, dd = {(dnnl_dim_t)M, (dnnl_dim_t)N};
            dnn_check(dnnl_memory_desc_init_by_tag(&src, 2, sd, dnnl_f32, dnnl_ab), "src desc");
            dnn_check(dnnl_memory_desc_init_by_tag(&wei, 2, wd, dnnl_f32, plain ? dnnl_ba : dnnl_format_tag_any), "weights desc");
            dnn_check(dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab), "bias desc");
            dnn_check(dnnl_memory_desc_init_by_tag(&dst, 2, dd, dnnl_f32, dnnl_ab), "dst desc");
            dnnl_matmul_desc_t desc;
            dnn_check(dnnl_matmul_desc_init(&desc, &src, &wei, &bias, &dst), "matmul desc");
            dnnl_primitive_attr_t attr;
            dnnl_post_ops_t ops;
            dnn_check(dnnl_primitive_attr_create(&attr), "attr");
            if (residual) {
                dnn_check(dnnl_post_ops_create(&ops), "post-ops");
                dnn_check(dnnl_post_ops_append_sum(ops, 1.0f), "sum post-op");
                dnn_check(dnnl_primitive_attr_set_post_ops(attr, ops), "post-ops");
                dnnl_post_ops_destroy(ops);
            }
            dnnl_primitive_desc_t pd;
            dnn_check(dnnl_primitive_desc_create(&pd, &desc, attr, dnn_engine, NULL), "matmul primitive desc");
            dnnl_primitive_attr_destroy(attr);
            e->wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            dnn_check(dnnl_primitive_create(&e->prim, pd), "matmul primitive");
            dnnl_primitive_desc_destroy(pd);
            dnn_check(dnnl_memory_create(&e->src, &src, dnn_engine, DNNL_MEMORY_NONE), "memory");
            dnn_check(dnnl_memory_create(&e->w, &e->wei, dnn_engine, DNNL_MEMORY_NONE), "memory");
            dnn_check(dnnl_memory_create(&e->bias, &bias, dnn_engine, DNNL_MEMORY_NONE), "memory");
            dnn_check(dnnl_memory_create(&e->dst, &dst, dnn_engine, DNNL_MEMORY_NONE), "memory");
            dnn_entries[dnn_n_entries++] = e;
        }
    }
    return e;
}

/* w's copy in layout md, packed the first time it is asked for (warm-up). */
static void *dnn_packed_copy(packed_w *p, const dnnl_memory_desc_t *md, size_t N, size_t K, size_t t) {
    void *data = NULL;
    #pragma omp critical(cdcp_onednn)
    {
        for (int i = 0; i < p->n && !data; i++)
            if (dnnl_memory_desc_equal(&p->md[i], md)) data = p->data[i];
        if (!data) {
            if (p->n == MAX_COPIES) dnn_check(dnnl_out_of_memory, "weight copies");
            data = xmalloc(dnnl_memory_desc_get_size(md));
            dnnl_memory_desc_t user;
            dnnl_dims_t wd = {(dnnl_dim_t)K, (dnnl_dim_t)N};
            dnnl_memory_t from, to;
            dnnl_primitive_desc_t rpd;
            dnnl_primitive_t reorder;
            dnn_check(dnnl_memory_desc_init_by_tag(&user, 2, wd, dnnl_f32, dnnl_ba), "weights desc");
            dnn_check(dnnl_memory_create(&from, &user, dnn_engine, (void *)p->f), "memory");
            dnn_check(dnnl_memory_create(&to, md, dnn_engine, data), "memory");
            dnn_check(dnnl_reorder_primitive_desc_create(&rpd, &user, dnn_engine, md, dnn_engine, NULL), "reorder desc");
            dnn_check(dnnl_primitive_create(&reorder, rpd), "reorder");
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
            dnn_check(dnnl_primitive_execute(reorder, dnn_stream[t], 2, args), "reorder");
            dnn_check(dnnl_stream_wait(dnn_stream[t]), "stream");
            dnnl_primitive_destroy(reorder), dnnl_primitive_desc_destroy(rpd);
            dnnl_memory_destroy(from), dnnl_memory_destroy(to);
            p->md[p->n] = *md, p->data[p->n] = data, p->n++;
        }
    }
    return data;
}

/* y [M,N] = x [M,K] w^T + b (residual: y += ...) on thread t: w packed (p) or plain [N,K]. */
static void dnn_linear(size_t t, const float *x, size_t M, size_t K, packed_w *p, const float *plain,
                       const float *b, size_t N, float *y, bool residual) {
    if (M == 0) return;
    mm_entry *e = dnn_entry(M, N, K, residual, plain != NULL, t);
    void *w = plain ? (void *)plain : dnn_packed_copy(p, &e->wei, N, K, t);
    dnnl_memory_set_data_handle(e->src, (void *)x);
    dnnl_memory_set_data_handle(e->w, w);
    dnnl_memory_set_data_handle(e->bias, (void *)b);
    dnnl_memory_set_data_handle(e->dst, y);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, e->src}, {DNNL_ARG_WEIGHTS, e->w}, {DNNL_ARG_BIAS, e->bias},
                               {DNNL_ARG_DST, e->dst}};
    dnn_check(dnnl_primitive_execute(e->prim, dnn_stream[t], 4, args), "matmul");
}
#endif

/* The widths and the whole-batch weights of variant v in block l (dynamic: NULL weights). */
static void variant_weights(const bench *bn, int v, size_t l, size_t *dq, size_t *dv, const float **wq,
                            const float **bq, const float **wp) {
    const block_w *w = &bn->blk[l];
    *dq = v == DENSE ? D : bn->dq, *dv = v == DENSE ? D : bn->dv;
    *wq = v == DENSE ? w->qkv_w : v == STATIC ? w->sq_w : NULL;
    *bq = v == DENSE ? w->qkv_b : v == STATIC ? w->sq_b : NULL;
    *wp = v == DENSE ? w->proj_w : v == STATIC ? w->sp_w : NULL;
}

/* A small batch: one team shares every step (libtpsinfer's team pass). */
static void pass_team(bench *bn, int v) {
    const size_t B = bn->B, T = bn->T, M = B * NTOK;
    #pragma omp parallel num_threads((int)T)
    {
        const size_t t = (size_t)omp_get_thread_num();
        thread_buf *tb = &bn->tb[t];
        for (size_t l = 0; l < L; l++) {
            size_t dq, dv, c0, c1;
            const float *wq, *bq, *wp;
            variant_weights(bn, v, l, &dq, &dv, &wq, &bq, &wp);
            const size_t W = H * (2 * dq + dv), V = H * dv;
            my_cols(W, t, T, &c0, &c1);
            if (v != DYNAMIC) {
                linear_cols(bn->x, M, C, wq, bq, c0, c1, bn->qkv, W, false);
            } else {
                for (size_t b = 0; b < B; b++) { /* every member predicts (no barrier); gathers its own rows */
                    int32_t *iq = tb->iq + b * D, *iv = tb->iv + b * D;
                    predict_channels(&bn->blk[l], bn->x + b * NTOK * C, dq, dv, iq, iv);
                    gather_qkv(&bn->blk[l], dq, dv, iq, iv, c0, c1, bn->team_w_qkv, bn->team_b_qkv);
                    linear_cols(bn->x + b * NTOK * C, NTOK, C, bn->team_w_qkv, bn->team_b_qkv, c0, c1,
                                bn->qkv + b * NTOK * W, W, false);
                }
            }
            #pragma omp barrier
            if (B == 1 && H % T == 0) { /* whole heads per member */
                for (size_t h = H * t / T; h < H * (t + 1) / T; h++)
                    attend(bn->qkv, dq, dv, 0, NTOK, h, tb->scores, bn->att);
            } else { /* query rows */
                const size_t r0 = M * t / T, r1 = M * (t + 1) / T;
                for (size_t b = 0; b < B; b++) {
                    const size_t off = b * NTOK;
                    if (off + NTOK <= r0) continue;
                    if (off >= r1) break;
                    const size_t i0 = r0 > off ? r0 - off : 0, i1 = r1 < off + NTOK ? r1 - off : NTOK;
                    for (size_t h = 0; h < H; h++)
                        attend(bn->qkv + off * W, dq, dv, i0, i1, h, tb->scores, bn->att + off * V);
                }
            }
            #pragma omp barrier
            my_cols(C, t, T, &c0, &c1);
            if (v != DYNAMIC) {
                linear_cols(bn->att, M, V, wp, bn->blk[l].proj_b, c0, c1, bn->x, C, true);
            } else {
                for (size_t b = 0; b < B; b++) { /* each image's V set, kept from before qkv */
                    gather_proj(bn->blk[l].proj_w, dv, tb->iv + b * D, c0, c1, bn->team_w_proj);
                    linear_cols(bn->att + b * NTOK * V, NTOK, V, bn->team_w_proj, bn->blk[l].proj_b, c0, c1,
                                bn->x + b * NTOK * C, C, true);
                }
            }
            #pragma omp barrier
        }
    }
}

/* A large batch: one chunk of images per thread, each thread a team of one (libtpsinfer's
 * split batch). */
static void pass_split(bench *bn, int v) {
    const size_t B = bn->B, T = bn->T;
    #pragma omp parallel num_threads((int)T)
    {
        const size_t t = (size_t)omp_get_thread_num(), b0 = B * t / T, b1 = B * (t + 1) / T, M = (b1 - b0) * NTOK;
        thread_buf *tb = &bn->tb[t];
        float *x = bn->x + b0 * NTOK * C, *qkv = bn->qkv + b0 * NTOK * 3 * C, *att = bn->att + b0 * NTOK * C;
        for (size_t l = 0; l < L; l++) {
            size_t dq, dv;
            const float *wq, *bq, *wp;
            variant_weights(bn, v, l, &dq, &dv, &wq, &bq, &wp);
            const size_t W = H * (2 * dq + dv), V = H * dv;
            const block_w *w = &bn->blk[l];
            if (v != DYNAMIC) {
                linear_cols(x, M, C, wq, bq, 0, W, qkv, W, false);
                for (size_t b = 0; b < b1 - b0; b++)
                    for (size_t h = 0; h < H; h++) attend(qkv + b * NTOK * W, dq, dv, 0, NTOK, h, tb->scores, att + b * NTOK * V);
                linear_cols(att, M, V, wp, w->proj_b, 0, C, x, C, true);
                continue;
            }
            for (size_t b = 0; b < b1 - b0; b++) { /* image after image, each with its own weights */
                float *xb = x + b * NTOK * C, *qb = qkv + b * NTOK * W, *ab = att + b * NTOK * V;
                predict_channels(w, xb, dq, dv, tb->iq, tb->iv);
                gather_qkv(w, dq, dv, tb->iq, tb->iv, 0, W, tb->w_qkv, tb->b_qkv);
                linear_cols(xb, NTOK, C, tb->w_qkv, tb->b_qkv, 0, W, qb, W, false);
                for (size_t h = 0; h < H; h++) attend(qb, dq, dv, 0, NTOK, h, tb->scores, ab);
                gather_proj(w->proj_w, dv, tb->iv, 0, C, tb->w_proj);
                linear_cols(ab, NTOK, V, tb->w_proj, w->proj_b, 0, C, xb, C, true);
            }
        }
    }
}

#ifdef CDCP_HAVE_ONEDNN
/* The rows [*r0, *r1) of image b (rows off .. off+NTOK-1) inside this member's rows [m0, m1). */
static bool image_rows(size_t b, size_t m0, size_t m1, size_t *r0, size_t *r1) {
    const size_t off = b * NTOK;
    *r0 = m0 > off ? m0 : off, *r1 = m1 < off + NTOK ? m1 : off + NTOK;
    return *r1 > *r0;
}

/* pass_team on oneDNN: linears shared by rows. */
static void pass_team_dnn(bench *bn, int v) {
    const size_t B = bn->B, T = bn->T, M = B * NTOK, Ws = H * (2 * bn->dq + bn->dv), Vs = H * bn->dv;
    #pragma omp parallel num_threads((int)T)
    {
        const size_t t = (size_t)omp_get_thread_num(), m0 = M * t / T, m1 = M * (t + 1) / T;
        thread_buf *tb = &bn->tb[t];
        for (size_t l = 0; l < L; l++) {
            size_t dq, dv, r0, r1;
            const float *wq, *bq, *wp;
            variant_weights(bn, v, l, &dq, &dv, &wq, &bq, &wp);
            const size_t W = H * (2 * dq + dv), V = H * dv;
            const block_w *w = &bn->blk[l];
            packed_w *pw = &dnn_packed[l * 4 + (v == DENSE ? 0 : 2)];
            if (v != DYNAMIC) {
                dnn_linear(t, bn->x + m0 * C, m1 - m0, C, pw, NULL, bq, W, bn->qkv + m0 * W, false);
            } else {
                for (size_t b = 0; b < B; b++) { /* every member predicts; each gathers half the rows */
                    int32_t *iq = tb->iq + b * D, *iv = tb->iv + b * D;
                    predict_channels(w, bn->x + b * NTOK * C, dq, dv, iq, iv);
                    gather_qkv(w, dq, dv, iq, iv, W * t / T, W * (t + 1) / T, bn->team_w_qkv + b * Ws * C,
                               bn->team_b_qkv + b * Ws);
                    gather_proj(w->proj_w, dv, iv, C * t / T, C * (t + 1) / T, bn->team_w_proj + b * C * Vs);
                }
                #pragma omp barrier
                for (size_t b = 0; b < B; b++)
                    if (image_rows(b, m0, m1, &r0, &r1))
                        dnn_linear(t, bn->x + r0 * C, r1 - r0, C, NULL, bn->team_w_qkv + b * Ws * C,
                                   bn->team_b_qkv + b * Ws, W, bn->qkv + r0 * W, false);
            }
            #pragma omp barrier
            if (B == 1 && H % T == 0) {
                for (size_t h = H * t / T; h < H * (t + 1) / T; h++)
                    attend(bn->qkv, dq, dv, 0, NTOK, h, tb->scores, bn->att);
            } else {
                for (size_t b = 0; b < B; b++)
                    if (image_rows(b, m0, m1, &r0, &r1))
                        for (size_t h = 0; h < H; h++)
                            attend(bn->qkv + b * NTOK * W, dq, dv, r0 - b * NTOK, r1 - b * NTOK, h, tb->scores,
                                   bn->att + b * NTOK * V);
            }
            #pragma omp barrier
            if (v != DYNAMIC) {
                dnn_linear(t, bn->att + m0 * V, m1 - m0, V, pw + 1, NULL, w->proj_b, C, bn->x + m0 * C, true);
            } else {
                for (size_t b = 0; b < B; b++)
                    if (image_rows(b, m0, m1, &r0, &r1))
                        dnn_linear(t, bn->att + r0 * V, r1 - r0, V, NULL, bn->team_w_proj + b * C * Vs, w->proj_b, C,
                                   bn->x + r0 * C, true);
            }
            #pragma omp barrier
        }
    }
}

/* pass_split on oneDNN. */
static void pass_split_dnn(bench *bn, int v) {
    const size_t B = bn->B, T = bn->T;
    #pragma omp parallel num_threads((int)T)
    {
        const size_t t = (size_t)omp_get_thread_num(), b0 = B * t / T, b1 = B * (t + 1) / T, M = (b1 - b0) * NTOK;
        thread_buf *tb = &bn->tb[t];
        float *x = bn->x + b0 * NTOK * C, *qkv = bn->qkv + b0 * NTOK * 3 * C, *att = bn->att + b0 * NTOK * C;
        for (size_t l = 0; l < L; l++) {
            size_t dq, dv;
            const float *wq, *bq, *wp;
            variant_weights(bn, v, l, &dq, &dv, &wq, &bq, &wp);
            const size_t W = H * (2 * dq + dv), V = H * dv;
            const block_w *w = &bn->blk[l];
            packed_w *pw = &dnn_packed[l * 4 + (v == DENSE ? 0 : 2)];
            if (v != DYNAMIC) {
                dnn_linear(t, x, M, C, pw, NULL, bq, W, qkv, false);
                for (size_t b = 0; b < b1 - b0; b++)
                    for (size_t h = 0; h < H; h++) attend(qkv + b * NTOK * W, dq, dv, 0, NTOK, h, tb->scores, att + b * NTOK * V);
                dnn_linear(t, att, M, V, pw + 1, NULL, w->proj_b, C, x, true);
                continue;
            }
            for (size_t b = 0; b < b1 - b0; b++) {
                float *xb = x + b * NTOK * C, *qb = qkv + b * NTOK * W, *ab = att + b * NTOK * V;
                predict_channels(w, xb, dq, dv, tb->iq, tb->iv);
                gather_qkv(w, dq, dv, tb->iq, tb->iv, 0, W, tb->w_qkv, tb->b_qkv);
                dnn_linear(t, xb, NTOK, C, NULL, tb->w_qkv, tb->b_qkv, W, qb, false);
                for (size_t h = 0; h < H; h++) attend(qb, dq, dv, 0, NTOK, h, tb->scores, ab);
                gather_proj(w->proj_w, dv, tb->iv, 0, C, tb->w_proj);
                dnn_linear(t, ab, NTOK, V, NULL, tb->w_proj, w->proj_b, C, xb, true);
            }
        }
    }
}
#endif

/* One pass of variant v over the batch: seconds of wall-clock and of process CPU time. */
static double now(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
static void run_pass(bench *bn, int v, double *wall, double *cpu) {
    memcpy(bn->x, bn->x0, bn->B * NTOK * C * sizeof(float));
    const double w0 = now(CLOCK_MONOTONIC), c0 = now(CLOCK_PROCESS_CPUTIME_ID);
    const bool split = bn->B >= 4 * bn->T;
#ifdef CDCP_HAVE_ONEDNN
    if (bn->onednn) split ? pass_split_dnn(bn, v) : pass_team_dnn(bn, v);
    else
#endif
        split ? pass_split(bn, v) : pass_team(bn, v);
    *wall += now(CLOCK_MONOTONIC) - w0;
    *cpu += now(CLOCK_PROCESS_CPUTIME_ID) - c0;
}

/* MACs per image of the attention part at widths dq, dv (every block), as macs.h counts them:
 * qkv n C H(2dq+dv), q k^T n^2 H dq, A v n^2 H dv, proj n H dv C. */
static double attention_part_macs(size_t dq, size_t dv) {
    const double n = NTOK;
    return L * (n * C * H * (2.0 * dq + dv) + n * n * H * (double)(dq + dv) + n * H * dv * C);
}
/* The same difference dense - kept from the shared cost model (the whole model's MACs). */
static double model_macs_saved(size_t dq, size_t dv) {
    size_t q[L], v[L], f[L];
    for (size_t i = 0; i < L; i++) q[i] = dq, v[i] = dv, f[i] = MLP;
    const macs_widths w = {.num_heads = H, .dq = q, .dv = v, .f = f};
    macs_vit vit = {.img_size = IMG, .patch = PATCH, .in_chans = 3, .embed_dim = C, .depth = L, .mlp_hidden = MLP,
                    .num_classes = CLASSES};
    const double dense = macs_per_image(&vit, NULL);
    vit.widths = &w;
    return dense - macs_per_image(&vit, NULL);
}

static void bench_setup(bench *bn, size_t B, size_t T, size_t dq, size_t dv, bool onednn) {
    *bn = (bench){.B = B, .T = T, .dq = dq, .dv = dv, .onednn = onednn};
    const size_t Ws = H * (2 * dq + dv), Vs = H * dv;
    for (size_t l = 0; l < L; l++) {
        block_w *w = &bn->blk[l];
        w->qkv_w = rand_array(3 * C * C, 1.0f / sqrtf((float)C));
        w->qkv_b = rand_array(3 * C, 0.02f);
        w->proj_w = rand_array(C * C, 0.5f / sqrtf((float)C));
        w->proj_b = rand_array(C, 0.02f);
        w->gq_w = rand_array(D * C, 1.0f / sqrtf((float)C));
        w->gq_b = rand_array(D, 0.1f);
        w->gv_w = rand_array(D * C, 1.0f / sqrtf((float)C));
        w->gv_b = rand_array(D, 0.1f);
        /* static: a fixed random channel set per block, removed from the weights (export) */
        float lq[D], lv[D];
        for (size_t j = 0; j < D; j++) lq[j] = urand(1.0f), lv[j] = urand(1.0f);
        top_k(lq, dq, w->s_iq);
        top_k(lv, dv, w->s_iv);
        const int32_t *iq = w->s_iq, *iv = w->s_iv;
        w->sq_w = xmalloc(Ws * C * sizeof(float));
        w->sq_b = xmalloc(Ws * sizeof(float));
        w->sp_w = xmalloc(C * Vs * sizeof(float));
        gather_qkv(w, dq, dv, iq, iv, 0, Ws, w->sq_w, w->sq_b);
        gather_proj(w->proj_w, dv, iv, 0, C, w->sp_w);
    }
    bn->x0 = rand_array(B * NTOK * C, 1.0f);
    bn->x = xmalloc(B * NTOK * C * sizeof(float));
    bn->qkv = xmalloc(B * NTOK * 3 * C * sizeof(float));
    bn->att = xmalloc(B * NTOK * C * sizeof(float));
    const size_t team_images = B < 4 * T ? B : 1;
    bn->team_w_qkv = xmalloc(team_images * Ws * C * sizeof(float));
    bn->team_b_qkv = xmalloc(team_images * Ws * sizeof(float));
    bn->team_w_proj = xmalloc(team_images * C * Vs * sizeof(float));
#ifdef CDCP_HAVE_ONEDNN
    if (onednn)
        for (size_t l = 0; l < L; l++) {
            packed_w *p = &dnn_packed[l * 4];
            for (int k = 0; k < 4; k++) {
                for (int c = 0; c < p[k].n; c++) free(p[k].data[c]);
                p[k] = (packed_w){0};
            }
            p[0].f = bn->blk[l].qkv_w, p[1].f = bn->blk[l].proj_w, p[2].f = bn->blk[l].sq_w, p[3].f = bn->blk[l].sp_w;
        }
#endif
    bn->tb = xmalloc(T * sizeof(thread_buf));
    for (size_t t = 0; t < T; t++) {
        thread_buf *tb = &bn->tb[t];
        tb->scores = xmalloc(NTOK * NTOK * sizeof(float));
        tb->w_qkv = xmalloc(Ws * C * sizeof(float));
        tb->b_qkv = xmalloc(Ws * sizeof(float));
        tb->w_proj = xmalloc(C * Vs * sizeof(float));
        tb->iq = xmalloc(B * D * sizeof(int32_t));
        tb->iv = xmalloc(B * D * sizeof(int32_t));
    }
}

static void bench_free(bench *bn) {
    for (size_t l = 0; l < L; l++) {
        block_w *w = &bn->blk[l];
        float *p[] = {w->qkv_w, w->qkv_b, w->proj_w, w->proj_b, w->gq_w, w->gq_b, w->gv_w, w->gv_b, w->sq_w, w->sq_b, w->sp_w};
        for (size_t i = 0; i < sizeof p / sizeof *p; i++) free(p[i]);
    }
    for (size_t t = 0; t < bn->T; t++) {
        thread_buf *tb = &bn->tb[t];
        free(tb->scores), free(tb->w_qkv), free(tb->b_qkv), free(tb->w_proj), free(tb->iq), free(tb->iv);
    }
    free(bn->tb), free(bn->x0), free(bn->x), free(bn->qkv), free(bn->att);
    free(bn->team_w_qkv), free(bn->team_b_qkv), free(bn->team_w_proj);
}

/* Every variant's output stays finite (the random weights keep 12 residual blocks bounded). */
static bool output_finite(const bench *bn) {
    for (size_t i = 0; i < bn->B * NTOK * C; i++)
        if (!isfinite(bn->x[i])) return false;
    return true;
}

/* The dynamic path computes what the static one does when every image picks the static
 * channels: predictors with zero weights and a bias of 1 on those channels (-1 elsewhere)
 * make it so. Reference: the static output; tolerance 1e-5 of the largest |x|, for float
 * rounding (the GEMMs see other row counts, so OpenBLAS may block the sums differently). */
static bool dynamic_matches_static(bench *bn) {
    const size_t n = bn->B * NTOK * C;
    float *ref = xmalloc(n * sizeof(float)), *zero = calloc(D * C, sizeof(float));
    float (*bias)[2][D] = xmalloc(L * sizeof *bias);
    block_w saved[L];
    memcpy(saved, bn->blk, sizeof saved);
    for (size_t l = 0; l < L; l++) {
        block_w *w = &bn->blk[l];
        for (size_t j = 0; j < D; j++) bias[l][0][j] = bias[l][1][j] = -1.0f;
        for (size_t j = 0; j < bn->dq; j++) bias[l][0][w->s_iq[j]] = 1.0f;
        for (size_t j = 0; j < bn->dv; j++) bias[l][1][w->s_iv[j]] = 1.0f;
        w->gq_w = w->gv_w = zero, w->gq_b = bias[l][0], w->gv_b = bias[l][1];
    }
    double wall = 0, cpu = 0, diff = 0, scale = 0;
    run_pass(bn, STATIC, &wall, &cpu);
    memcpy(ref, bn->x, n * sizeof(float));
    run_pass(bn, DYNAMIC, &wall, &cpu);
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)bn->x[i] - ref[i]));
        scale = fmax(scale, fabs((double)ref[i]));
    }
    memcpy(bn->blk, saved, sizeof saved);
    free(ref), free(zero), free(bias);
    const bool ok = zero != NULL && diff <= 1e-5 * scale;
    printf("check at batch %zu: dynamic on the static channels = static within %.1e of max |x| %.3g (tolerance 1e-5)%s\n",
           bn->B, scale > 0 ? diff / scale : diff, scale, ok ? "" : ": FAILED");
    return ok;
}

static int run_batch(size_t B, size_t T, size_t dq, size_t dv, int rounds, int warmup, int passes, bool onednn) {
    bench bn;
    bench_setup(&bn, B, T, dq, dv, onednn);
    if (passes <= 0) passes = B >= 8 ? 1 : (int)(8 / B);
    if (!dynamic_matches_static(&bn)) return 1;
    double *wall[VARIANTS], *cpu[VARIANTS], *ratio_wall[3], *ratio_cpu[3];
    for (int v = 0; v < VARIANTS; v++) wall[v] = xmalloc((size_t)rounds * sizeof(double)), cpu[v] = xmalloc((size_t)rounds * sizeof(double));
    for (int r = 0; r < 3; r++) ratio_wall[r] = xmalloc((size_t)rounds * sizeof(double)), ratio_cpu[r] = xmalloc((size_t)rounds * sizeof(double));
    for (int r = -warmup; r < rounds; r++) {
        double w[VARIANTS] = {0}, c[VARIANTS] = {0};
        for (int i = 0; i < VARIANTS; i++) { /* the order rotates every round */
            const int v = (int)(((r + warmup) + i) % VARIANTS);
            for (int p = 0; p < passes; p++) run_pass(&bn, v, &w[v], &c[v]);
            if (!output_finite(&bn)) {
                fprintf(stderr, "cdcp_dynamic: %s produced a non-finite value\n", variant_name[v]);
                return 1;
            }
        }
        if (r < 0) continue;
        for (int v = 0; v < VARIANTS; v++) wall[v][r] = w[v] / passes, cpu[v][r] = c[v] / passes;
        /* speed-ups: static over dense, dynamic over dense, dynamic over static */
        ratio_wall[0][r] = w[DENSE] / w[STATIC], ratio_cpu[0][r] = c[DENSE] / c[STATIC];
        ratio_wall[1][r] = w[DENSE] / w[DYNAMIC], ratio_cpu[1][r] = c[DENSE] / c[DYNAMIC];
        ratio_wall[2][r] = w[STATIC] / w[DYNAMIC], ratio_cpu[2][r] = c[STATIC] / c[DYNAMIC];
    }
    printf("batch %zu: %d rounds of %d pass%s per variant, order rotating, after %d warm-up rounds (%s)\n", B, rounds,
           passes, passes > 1 ? "es" : "", warmup, B >= 4 * T ? "split batch: a chunk per thread" : "one team");
    printf("  %-8s %12s %14s %14s\n", "variant", "images/s", "ms/pass wall", "ms/pass cpu");
    for (int v = 0; v < VARIANTS; v++) {
        const double mw = tpsc_median(wall[v], rounds), mc = tpsc_median(cpu[v], rounds);
        printf("  %-8s %12.1f %14.2f %14.2f\n", variant_name[v], (double)B / mw, 1e3 * mw, 1e3 * mc);
    }
    static const char *const ratio_name[3] = {"static over dense", "dynamic over dense", "dynamic over static"};
    printf("  speed-up, median of the per-round ratios:     wall     cpu\n");
    for (int r = 0; r < 3; r++)
        printf("  %-44s %6.3fx %6.3fx\n", ratio_name[r], tpsc_median(ratio_wall[r], rounds),
               tpsc_median(ratio_cpu[r], rounds));
    fflush(stdout);
    for (int v = 0; v < VARIANTS; v++) free(wall[v]), free(cpu[v]);
    for (int r = 0; r < 3; r++) free(ratio_wall[r]), free(ratio_cpu[r]);
    bench_free(&bn);
    return 0;
}

static int usage(const char *why) {
    fprintf(stderr,
            "cdcp_dynamic: %s\nusage: cdcp_dynamic [--batch 1,32] [--threads 2] [--rounds 15] [--warmup 2] [--passes P]\n"
            "                    [--keep-qk 0.5] [--keep-v 0.5] [--gemm openblas|onednn]\n",
            why);
    return 2;
}

int main(int argc, char **argv) {
    size_t batches[8] = {1, 32}, n_batches = 2;
    long threads = 2, rounds = 15, warmup = 2, passes = 0;
    float keep_qk = 0.5f, keep_v = 0.5f;
    bool onednn = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!val) return usage("an option without its value");
        i++;
        if (!strcmp(a, "--gemm")) {
            if (strcmp(val, "openblas") && strcmp(val, "onednn")) return usage("--gemm is openblas or onednn");
            onednn = !strcmp(val, "onednn");
#ifndef CDCP_HAVE_ONEDNN
            if (onednn) return usage("this build has no oneDNN (libdnnl-dev; TPSC_WITH_ONEDNN)");
#endif
        } else if (!strcmp(a, "--batch")) {
            n_batches = 0;
            for (const char *s = val; *s && n_batches < 8; s = *end ? end + 1 : end) {
                const long b = strtol(s, &end, 10);
                if (end == s || b < 1 || (*end && *end != ',')) return usage("--batch takes sizes like 1,32");
                batches[n_batches++] = (size_t)b;
            }
        } else if (!strcmp(a, "--keep-qk") || !strcmp(a, "--keep-v")) {
            const float k = strtof(val, &end);
            if (*end || !(k > 0.0f && k <= 1.0f)) return usage("a keep ratio is in (0, 1]");
            *(a[7] == 'q' ? &keep_qk : &keep_v) = k;
        } else {
            const long n = strtol(val, &end, 10);
            if (*end || n < 0) return usage("a count must be a whole number");
            if (!strcmp(a, "--threads") && n >= 1 && n <= 64) threads = n;
            else if (!strcmp(a, "--rounds") && n >= 1) rounds = n;
            else if (!strcmp(a, "--warmup")) warmup = n;
            else if (!strcmp(a, "--passes")) passes = n;
            else return usage("an unknown option or a value out of range");
        }
    }
    /* the kept counts by the rule the recipe's [cdcp] keys follow (src/channels) */
    chan_config cfg = {.n_blocks = L, .gate_init = 3.0f, .gate_temp = 1.0f}; /* the last two unused here */
    for (int b = 0; b < L; b++) cfg.keep[CHAN_QK][b] = keep_qk, cfg.keep[CHAN_V][b] = keep_v, cfg.keep[CHAN_MLP][b] = 1.0f;
    if (chan_config_validate(&cfg, L, D, MLP) != TPSC_OK) {
        fprintf(stderr, "cdcp_dynamic: %s\n", tpsc_last_error());
        return 2;
    }
    const size_t dq = chan_keep_count(&cfg, 0, CHAN_QK, D), dv = chan_keep_count(&cfg, 0, CHAN_V, D);

    const double m_dense = attention_part_macs(D, D), m_kept = attention_part_macs(dq, dv);
    const double m_pred = L * 2.0 * C * D;
    const double gathered = L * ((double)H * (2 * dq + dv) * (C + 1) + (double)C * H * dv);
    if (fabs((m_dense - m_kept) - model_macs_saved(dq, dv)) > 0.5) {
        fprintf(stderr, "cdcp_dynamic: the attention MACs disagree with src/common/macs.h\n");
        return 1;
    }
    printf("cdcp_dynamic: DeiT-S 224 attention part (%d blocks: qkv, attention, proj), kept Q/K %zu/%d and V %zu/%d "
           "channels per head, %ld threads, %s FP32\n", L, dq, D, dv, D, threads, onednn ? "oneDNN" : "OpenBLAS");
    printf("MACs per image: dense %.4f G, static %.4f G (%.3fx fewer), dynamic %.4f G (static + predictors %.2f M);\n"
           "dynamic also gathers %.2f M floats per image (%.1f MB)\n",
           1e-9 * m_dense, 1e-9 * m_kept, m_dense / m_kept, 1e-9 * (m_kept + m_pred), 1e-6 * m_pred, 1e-6 * gathered,
           4e-6 * gathered);
    fflush(stdout);
#ifdef CDCP_HAVE_ONEDNN
    if (onednn) dnn_init((size_t)threads);
#endif
    for (size_t i = 0; i < n_batches; i++)
        if (run_batch(batches[i], (size_t)threads, dq, dv, (int)rounds, (int)warmup, (int)passes, onednn)) return 1;
    return 0;
}
