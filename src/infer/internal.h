/* libtpsinfer's private structures and the kernels its files share (not installed).
 * Letters: B batch, N patch tokens, C channels, H heads, D head size, K classes, P patch
 * pixels, M rows of the packed token matrix (sum over images of 1 + n_b). */
#ifndef TPS_INFER_INTERNAL_H
#define TPS_INFER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <strings.h>

#include "src/common/methods.h"
#include "src/common/squeeze.h"
#include "src/common/vecmath.h"
#include "src/infer/tps_infer.h"

#define TI_MAX_STAGES TPS_INFER_MAX_STAGES
#define TI_MAX_CLASS_NAME 128

/* One linear layer's weight [Cout,Cin]. f is the FP32 tensor (always there: the OpenBLAS
 * path and the source of any other copy); packed, when not NULL, is the same weight in
 * oneDNN's own layout (FP32 or BF16, gemm.h), made once at load, which the linears then use.
 * panels, when not NULL (the panel back-end), is that FP32 layout read as 64-column panels
 * of panel_k rows each (gemm_panel.c). */
typedef struct ti_weight {
    const float *f;
    void *packed;
    const float *panels;
    size_t panel_k;
} ti_weight;

/* A block's widths after channel pruning (model_load.c reads them from a gated model's file;
 * D, D and F otherwise): every head keeps dq Q/K and dv V channels, the MLP f hidden ones.
 * Q = H dq, V = H dv: qkv is [M, 2Q + V] (q of every head, then k, then v), attention's
 * output [M, V]. */
typedef struct ti_widths {
    size_t dq, dv, f;
} ti_widths;

/* How one (image, head) pair's attention runs (attention.c): two sgemm calls around the
 * softmax, or the fused kernel in its AVX-512 or AVX2 form. */
typedef enum ti_attn { TI_ATTN_GEMM, TI_ATTN_AVX2, TI_ATTN_AVX512 } ti_attn;

typedef struct ti_block {
    const float *norm1_w, *norm1_b, *qkv_b, *proj_b; /* [C] [C] [2Q+V] [C] */
    ti_weight qkv_w, proj_w;                          /* [2Q+V,C] [C,V] */
    const float *norm2_w, *norm2_b, *fc1_b, *fc2_b;   /* [C] [C] [f] [C] */
    ti_weight fc1_w, fc2_w;                           /* [f,C] [C,f] */
    ti_widths w;
} ti_block;

/* DynamicViT's PredictorLG: LayerNorm(eps 1e-5), Linear C->C, GELU | Linear C->C/2, GELU,
 * Linear C/2->C/4, GELU, Linear C/4->2, LogSoftmax. */
typedef struct ti_predictor {
    const float *in_norm_w, *in_norm_b, *in_fc_b, *out0_b, *out2_b, *out4_b; /* [C] [C] [C] [C/2] [C/4] [2] */
    ti_weight in_fc_w, out0_w, out2_w, out4_w;                              /* [C,C] [C/2,C] [C/4,C/2] [2,C/4] */
} ti_predictor;

struct tps_model {
    tps_model_info info;
    tok_method method;
    bool channels_pruned;           /* the file gave per-block widths (head_dim_qk, ...) */
    ti_attn attn;                   /* attention's kernel (tps_open_options.attention resolved) */
    size_t C, H, D, F, K, N, P, depth, img, patch, in_chans;
    float ln_eps, squeeze_temp;
    float *weights;                 /* one block holding every tensor */
    ti_weight patch_w, head_w;      /* [C,P] [K,C] */
    const float *patch_b, *head_b;  /* [C] [K] */
    const float *cls_token, *pos_embed, *norm_w, *norm_b;
    ti_block *blocks;
    ti_predictor pred[TI_MAX_STAGES];
    char **class_names;
    /* merging methods (tome, atme; docs/merging.md) */
    int *merge_r;                   /* tome: [depth] ToMe's requested r per block (merge_rules.h) */
    bool prop_attn;                 /* proportional attention with log token sizes after a merge */
    size_t grid;                    /* atme: the side g of the g x g patch grid (g*g = N) */
};

/* A buffer that grows to the largest request and is then reused (preprocessing scratch). */
typedef struct ti_scratch {
    void *p;
    size_t cap;
} ti_scratch;

/* Where each image's tokens sit in the packed matrix: rows off[b] .. off[b] + len[b] - 1,
 * the first of them the cls token. */
typedef struct ti_layout {
    size_t *off, *len;
    size_t rows;
} ti_layout;

/* team_barrier.c: the team pass's barrier (spin briefly, then sleep) */
typedef struct ti_barrier {
    _Atomic unsigned count, gen, sleepers;
    unsigned members, spin;
} ti_barrier;
#define TI_BARRIER_SPIN 2000 /* spin checks at most, a pause between */
void ti_barrier_init(ti_barrier *b, unsigned members, unsigned spin);
void ti_barrier_wait(ti_barrier *b);

/* What one pass works on: a workspace's buffers from some image on (a whole batch, or one
 * thread's chunk of it). Layouts are relative to the view's first row. */
typedef struct ti_view {
    const tps_model *m;
    const tps_budget *budget;
    const float *keep_frac;
    int nthreads;                   /* threads of this view's parallel loops */
    ti_barrier *bar;                /* the team's barrier during a pass (forward.c) */
    unsigned spin;                  /* its spin bound (team_barrier.c) */
    float *x, *x_next, *h, *qkv, *attn_out, *hidden, *cls_rows, *score;
    float *size, *size_next, *log_size; /* merging: per row, as x (see tps_workspace) */
    int32_t *patch_tok;             /* merging: [B*N] see tps_workspace */
    const float **final_rows;       /* [B] see tps_workspace */
    bool sized;                     /* a merge has run: proportional attention is on */
    bool merge_failed;              /* atme found a token with no neighbour (a bug) */
    float *scratch;                 /* nthreads blocks of per_thread floats */
    size_t per_thread;
    ti_layout lay, lay_next;
    int32_t *orig, *orig_next, *order;
    int32_t *kept[TI_MAX_STAGES];
    size_t *kept_n[TI_MAX_STAGES];
    int n_stages_run;
    size_t tokens_left;             /* after a run: spatial tokens per image (cls excluded) */
} ti_view;

struct tps_workspace {
    const tps_model *m;
    size_t max_batch, max_rows;
    tps_budget budget;
    float keep_frac[TI_MAX_STAGES]; /* the model's, or rho^(s+1) of a keep_ratio override */
    int nthreads;
    bool split;                     /* large batches: one chunk per thread (forward.c) */
    unsigned barrier_spin;          /* TI_BARRIER_SPIN, or TPSINFER_SPIN (team_barrier.c) */
    /* packed activations */
    float *x, *x_next, *h;          /* [M,C] residual stream, its next version, a LayerNorm out */
    float *qkv;                     /* [M,3C] */
    float *attn_out;                /* [M,C] */
    float *hidden;                  /* [M,F] MLP hidden, also the predictor's and patches' room */
    float *cls_rows;                /* [B,H,1+N] each head's cls attention row (EViT) */
    float *score;                   /* [M] keep score per row */
    /* merging (tome, atme): per row of x, the patches its token stands for, and its log
     * (proportional attention's key bias); patch_tok[b*N + p] = image b's spatial token
     * (0-based, cls excluded) holding patch p: the source map */
    float *size, *size_next, *log_size; /* [M] each */
    int32_t *patch_tok;             /* [B*N] */
    /* after a run: image b's cls row in the residual stream after the last block (its
     * spatial tokens follow), wherever the layout swaps left it (tps_patch_grid) */
    const float **final_rows;       /* [B] */
    float *thread_scratch;          /* nthreads x per_thread floats */
    size_t per_thread;
    ti_layout lay, lay_next;
    /* token bookkeeping: orig[b*N + j] original patch index of image b's j-th spatial token */
    int32_t *orig, *orig_next;
    int32_t *kept[TI_MAX_STAGES];   /* [B*N]: image b's list at kept[s] + b*N */
    size_t *kept_n[TI_MAX_STAGES];  /* [B] */
    int32_t *order;                 /* [B*N] */
    int n_stages_run;
    size_t last_batch;
    size_t last_tokens;             /* spatial tokens per image at the end of the last run */
    float *pre;                     /* [B, Cin, S, S] for tps_run_rgb8 */
    ti_scratch resized, resize_work;  /* tps_run_rgb8's preprocessing scratch */
};

/* status.c */
tps_status ti_fail(tps_status s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* What a linear does to its output besides x w^T + b: nothing, add it to y's old value (the
 * residual), or GELU. */
typedef enum lin_epilogue { LIN_PLAIN, LIN_RESIDUAL, LIN_GELU } lin_epilogue;

/* kernels.c: single-threaded on the rows given (forward.c shares rows among a team) */
void ti_layernorm(const float *x, size_t M, size_t C, const float *w, const float *b, float eps, float *y);
/* y [M,Cout] = x [M,Cin] w^T + b (bias written first so sgemm accumulates onto it, as the training
 * framework's linear does, for identical rounding). ldx/ldy are row strides. */
void ti_linear(const float *x, size_t M, size_t Cin, size_t ldx, const ti_weight *w, const float *b, size_t Cout,
               float *y, size_t ldy);
void ti_linear_residual(const float *x, size_t M, size_t Cin, const ti_weight *w, const float *b, size_t Cout, float *y);
/* y [M,Cout] = epi(x w^T + b): a packed weight through oneDNN (gemm.h), with the epilogue
 * fused; otherwise ti_linear / ti_linear_residual, then ti_gelu for LIN_GELU. */
void ti_linear_epi(const float *x, size_t M, size_t Cin, size_t ldx, const ti_weight *w, const float *b, size_t Cout,
                   float *y, size_t ldy, lin_epilogue epi);
/* GELU, x Phi(x), in place, with vecmath's rational Phi (absolute error < 1.8e-7 with FMA),
 * the same as the training op's; inline for the panel kernel's tiles and the kernel tests */
static inline void ti_gelu(float *x, size_t n) {
    #pragma omp simd
    for (size_t i = 0; i < n; i++) x[i] = x[i] * vm_normal_cdf_rational(x[i]);
}
/* The heads of one block: H heads of dq Q/K and dv V channels, softmax scale 1/sqrt(D) of the
 * dense head size D (channel pruning keeps it), and the model's attention kernel. */
typedef struct ti_heads {
    size_t H, dq, dv;
    float scale;
    ti_attn kernel;
} ti_heads;
ti_heads ti_block_heads(const struct tps_model *m, const ti_block *b);
/* attention.c: one (image, head) pair for the image's query rows i0 .. i1-1: out rows i0 .. i1-1,
 * head h's dv columns, of [n, H dv] = attention over all n keys; qkv [n, H(2dq+dv)]; scratch
 * holds max((i1-i0) n, ti_attention_scratch_floats(n, dq, dv)) floats */
void ti_attention_rows(const float *qkv, const ti_heads *g, size_t n, size_t i0, size_t i1, size_t h, float *scratch,
                       float *out, float *cls_row, const float *key_bias);
size_t ti_attention_scratch_floats(size_t n, size_t dq, size_t dv);
/* True when libtpsinfer's own AVX-512 kernels (attention, the panel GEMM) may run: the CPU has
 * AVX-512F and TPSINFER_MAX_ISA=avx2 does not cap them at AVX2, as on a CPU without it. */
static inline bool ti_avx512_allowed(void) {
    __builtin_cpu_init();
    const char *cap = getenv("TPSINFER_MAX_ISA");
    return !(cap && !strcasecmp(cap, "avx2")) && __builtin_cpu_supports("avx512f");
}
/* The fused kernel's best form on this CPU (TPSINFER_MAX_ISA=avx2 caps it at AVX2, as on a CPU
 * without AVX-512), or TI_ATTN_GEMM when the CPU has neither AVX2 with FMA nor AVX-512. */
ti_attn ti_attention_best(void);
/* The shared squeeze (src/common/squeeze.h) on one image, its buffers carved from scratch:
 * kept [k,C] is squeezed in place; scratch: squeeze_scratch_floats(k, p, C) floats. */
static inline void ti_squeeze_image(float *kept, size_t k, const float *dropped, size_t p, size_t C, float temp,
                                    float *scratch) {
    squeeze_buffers b;
    squeeze_buffers_carve(&b, scratch, k, p, C);
    squeeze_image(kept, k, dropped, p, C, temp, kept, &b);
}

/* image.c: tps_preprocess with reusable scratch (both may be NULL: malloc per call) */
void *ti_scratch_get(ti_scratch *s, size_t bytes);
tps_status ti_preprocess(const tps_model *m, const uint8_t *pixels, int width, int height, float *out,
                         ti_scratch *resized, ti_scratch *resize_work);

/* merge.c: one image's merge (docs/merging.md; decisions from src/common/merge_rules.h).
 * scratch: ti_merge_scratch_floats(t, D) floats; the plans return m, the tokens left (cls
 * included), and *map [t] (in the scratch) the output row of each input row. */
size_t ti_merge_scratch_floats(size_t t, size_t D);
/* ToMe: qkv [t, 2Q+V] of the block, r merges (tok_tome_block_r) */
size_t ti_tome_plan(const float *qkv, size_t t, const ti_heads *g, size_t r, float *scratch, int32_t **map);
/* ATME: importance [t-1] (cls attention, mean over heads), patch_tok [N] of the grid x grid
 * patches (rewritten to the output positions), k spatial tokens removed; 0 when a token had
 * no neighbour region */
size_t ti_atme_plan(const float *qkv, size_t t, const ti_heads *g, const float *importance, int32_t *patch_tok,
                    size_t grid, size_t k, float *scratch, int32_t **map);
/* x [t,C], size [t] -> y [m,C] size-weighted averages, size_out [m], log_out [m] = log size */
void ti_merge_rows(const float *x, const float *size, size_t t, size_t C, const int32_t *map, size_t m, float *y,
                   float *size_out, float *log_out);
/* ToMe's source map after a merge: patch_tok [N] through map */
void ti_tome_source_update(int32_t *patch_tok, size_t N, const int32_t *map);

/* forward.c */
tps_status ti_forward(tps_workspace *ws, const float *images, size_t B, float *logits);

#endif
