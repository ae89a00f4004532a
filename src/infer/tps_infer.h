/* libtpsinfer: forward-only inference of DeiT / ViT models exported by `tpsc export`, with
 * the token pruning and squeezing of TPS (CVPR 2023) and its baselines really removing tokens,
 * and token merging (ToMe, CAIT-style ATME) really merging them.
 *
 * The one public header. C11 and C++ compatible; no other tpsc header is needed.
 *
 *   tps_model *m;      tps_model_open("model.h5", &m)         read-only after open, shareable
 *   tps_workspace *ws; tps_workspace_create(m, 32, &ws)       one per thread, sized once
 *   tps_run(ws, images, B, logits)                            float [B,3,S,S] -> logits [B,K]
 *   tps_run_rgb8(ws, pixels, B, w, h, logits)                 raw RGB bytes, preprocessed here
 *   tps_topk(logits, B, K, 5, idx, prob)                      softmax top-k
 *   tps_kept_tokens(ws, stage, b, &idx, &n)                   what survived stage `stage`
 *
 * Every function that can fail returns a tps_status; tps_last_error() gives a message naming
 * the file, tensor or argument at fault (per thread, like errno). Nothing here prints, exits
 * or aborts on bad input.
 *
 * Threads: a tps_model is never written after tps_model_open, so any number of threads may
 * run it at once, each with its own tps_workspace. A workspace is used by one thread at a time.
 * Inside one call the work is split over OpenMP threads (omp_set_num_threads / OMP_NUM_THREADS).
 *
 * Shapes use B batch, S image side, K classes, N patch tokens (cls excluded). */
#ifndef TPS_INFER_H
#define TPS_INFER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define TPS_API
#else
#define TPS_API __attribute__((visibility("default")))
#endif

#define TPS_INFER_VERSION_MAJOR 0
#define TPS_INFER_VERSION_MINOR 7 /* 2: tps_model_open_memory, tps_open_options.gemm; 3: tome, atme, tps_token_map;
                                     4: cait, tps_patch_grid; 5: tps_open_options.attention;
                                     6: tps_open_options.unprobed; 7: TPS_GEMM_PANEL, tps_gemm_from_name */
/* The inference-file format_version this build reads (older ones stay readable). */
#define TPS_INFER_FORMAT_VERSION 1
#define TPS_INFER_MAX_STAGES 8

typedef enum tps_status {
    TPS_OK = 0,
    TPS_ERR_NOMEM,    /* an allocation failed */
    TPS_ERR_IO,       /* a file cannot be opened or read */
    TPS_ERR_FORMAT,   /* not an HDF5 file, not an inference file, wrong version, truncated */
    TPS_ERR_MISSING,  /* a tensor or attribute the architecture needs is absent */
    TPS_ERR_SHAPE,    /* a tensor's shape disagrees with the architecture */
    TPS_ERR_ARG,      /* a bad argument (NULL, batch too large, ratio out of range, ...) */
    TPS_ERR_DECODE,   /* an image could not be decoded */
    TPS_ERR_INTERNAL, /* a bug: an invariant did not hold */
    TPS_ERR_UNSUPPORTED, /* this build or this CPU cannot do what was asked (BF16 without oneDNN or AVX512-BF16) */
} tps_status;

/* A short name for a status ("format error"). Never NULL. */
TPS_API const char *tps_status_str(tps_status s);
/* This thread's message for the last failure ("" if none). Valid until the next failing call
 * on this thread. */
TPS_API const char *tps_last_error(void);

typedef struct tps_model tps_model;
typedef struct tps_workspace tps_workspace;

/* ---- model ------------------------------------------------------------------------------- */

TPS_API tps_status tps_model_open(const char *path, tps_model **out);
TPS_API void tps_model_close(tps_model *m); /* NULL is fine */

/* The arithmetic of the linear layers (patch embedding, qkv, proj, MLP, head, predictors). */
typedef enum tps_precision {
    TPS_PRECISION_FP32 = 0, /* float everywhere: the default and the reference */
    /* Opt-in: each linear's input rows and weights are rounded to bfloat16 (8-bit mantissa),
     * products accumulate in float, bias and residual are added in float (oneDNN, CPUs with
     * AVX512-BF16). Attention products, LayerNorm, GELU, softmax and the pruning decisions stay
     * float. Logits move by about 1e-2 relative; kept tokens and top-1 can change where scores
     * are near ties (docs/inference.md, "BF16"). */
    TPS_PRECISION_BF16 = 1,
} tps_precision;

/* The GEMM back-end of the FP32 linear layers (since 0.2). */
typedef enum tps_gemm {
    /* The faster one on this CPU: the panel back-end where the CPU has AVX-512 (oneDNN's f32
     * matmul then has its kernel for weights packed at open), else OpenBLAS. The environment
     * variable TPSINFER_GEMM=openblas|onednn|panel overrides this choice (not an explicit one). */
    TPS_GEMM_AUTO = 0,
    /* cblas_sgemm on the FP32 weights (OpenBLAS packs them on every call; its kernels follow
     * OPENBLAS_CORETYPE). */
    TPS_GEMM_OPENBLAS = 1,
    /* oneDNN's matmul on weights reordered once at open (the model then holds them twice),
     * bias, residual and GELU fused into the product. Logits differ from OpenBLAS' by float
     * rounding (other summation order, oneDNN's erf in GELU). */
    TPS_GEMM_ONEDNN = 2,
    /* The weights packed at open as for TPS_GEMM_ONEDNN; the linears a thread team shares run
     * on libtpsinfer's own AVX-512 kernel, each member on its own 64-column panels of the packed
     * weight (oneDNN writes whole rows only, so there every member reads the whole weight);
     * the other linears (patch embedding, head, the score predictors' narrow layers, and any
     * whose width is not a multiple of 64) run on oneDNN. Needs oneDNN and AVX-512 (since 0.7). */
    TPS_GEMM_PANEL = 3,
} tps_gemm;

/* How attention's per-head products run (since 0.5), in FP32 and BF16 alike. */
typedef enum tps_attention {
    /* The faster one here (docs/inference.md): the fused kernel where the CPU has AVX-512, else
     * GEMM. The environment variable TPSINFER_ATTENTION=gemm|fused overrides this choice (not an
     * explicit one). */
    TPS_ATTENTION_AUTO = 0,
    /* per (image, head): cblas_sgemm for the scores, the softmax, cblas_sgemm for the sum */
    TPS_ATTENTION_GEMM = 1,
    /* per (image, head) and tile of query rows: scores, softmax and the weighted sum of the
     * values in one kernel, in cache (AVX-512 or AVX2 with FMA; TPSINFER_MAX_ISA=avx2 keeps it
     * to AVX2). Logits differ from GEMM's by float rounding (summation order). Where the CPU
     * has neither, it runs as GEMM. */
    TPS_ATTENTION_FUSED = 2,
} tps_attention;

/* Options of tps_model_open_ex. Zero-initialise (later versions append fields; zero keeps
 * today's behaviour). */
typedef struct tps_open_options {
    tps_precision precision;
    tps_gemm gemm; /* FP32 linears' back-end (BF16 linears always run on oneDNN) */
    /* Since 0.3. tome_r > 0: run ToMe off the shelf on a dense model (or a tome model at
     * another r), no training: r tokens merged per block with proportional attention,
     * tome_inflect ToMe's schedule (0 constant, -1 decreasing 2r .. 0; docs/merging.md). A
     * schedule that merges more tokens than the model has patches, or a pruning or atme
     * model, fails with TPS_ERR_ARG. 0: the file's own method. */
    int tome_r;
    float tome_inflect;
    tps_attention attention; /* since 0.5 */
    /* Since 0.6. Before libhdf5 reads a file (or an image) in this process, a forked child
     * reads its metadata first, so that a damaged file on which libhdf5 itself would crash or
     * hang is refused with TPS_ERR_FORMAT ("corrupt HDF5 metadata: libhdf5 crashed reading
     * it") instead of ending or blocking the caller (docs/reliability.md). The child calls
     * only HDF5 and ends within TPSC_HDF5_PROBE_SECONDS (default 30; a value that is not a
     * whole number from 1 to 3600 fails with TPS_ERR_ARG, naming it); a file that passed is
     * not read twice while it is unchanged. Nonzero: no child, for hosts that must not fork
     * (as does the environment variable TPSC_HDF5_PROBE=off); only trusted files then. */
    int unprobed;
} tps_open_options;

/* tps_model_open with options (opt NULL: the defaults). TPS_PRECISION_BF16 fails with
 * TPS_ERR_UNSUPPORTED when the library was built without oneDNN or the CPU lacks AVX512-BF16;
 * it packs the weights once here (the model then holds them in both precisions). */
TPS_API tps_status tps_model_open_ex(const char *path, const tps_open_options *opt, tps_model **out);
/* tps_model_open_ex on an inference file held in memory: image holds the bytes of the file
 * (bytes of them), as `tpsc export` writes it or as a program embeds it. The library copies
 * what it keeps; image may be freed on return. name stands for the file in error messages
 * (NULL: "model image"). Since version 0.2. */
TPS_API tps_status tps_model_open_memory(const void *image, size_t bytes, const char *name,
                                         const tps_open_options *opt, tps_model **out);
/* The precision the model was opened with. */
TPS_API tps_precision tps_model_precision(const tps_model *m);
/* The back-end its linears run on (TPS_GEMM_AUTO resolved; BF16: TPS_GEMM_ONEDNN). */
TPS_API tps_gemm tps_model_gemm(const tps_model *m);
/* TPS_OK when this build and CPU can run back-end g; else TPS_ERR_UNSUPPORTED and a message. */
TPS_API tps_status tps_gemm_supported(tps_gemm g);
/* What TPS_GEMM_AUTO resolves to here (the environment's TPSINFER_GEMM included). */
TPS_API tps_gemm tps_gemm_default(void);
/* "auto", "openblas", "onednn", "panel"; never NULL. */
TPS_API const char *tps_gemm_name(tps_gemm g);
/* The back-end tps_gemm_name calls name ("auto", "openblas", "onednn", "panel"); TPS_ERR_ARG
 * with a message naming the accepted ones otherwise (since 0.7). */
TPS_API tps_status tps_gemm_from_name(const char *name, tps_gemm *out);
/* The way its attention runs (TPS_ATTENTION_AUTO resolved; since 0.5). */
TPS_API tps_attention tps_model_attention(const tps_model *m);
/* The kernel choice a resolves to on this CPU and environment: "gemm", "fused avx512" or
 * "fused avx2"; never NULL (since 0.5). */
TPS_API const char *tps_attention_name(tps_attention a);
/* TPS_OK when this build and CPU can run precision p; else TPS_ERR_UNSUPPORTED and a message
 * (tps_last_error) saying why. */
TPS_API tps_status tps_precision_supported(tps_precision p);

typedef struct tps_model_info {
    char arch[64];            /* "deit_small_patch16_224" or "custom" */
    char method[16];          /* "none", "dynamicvit", "dtps", "evit", "etps", "tome", "atme", "cait" */
    int img_size, patch_size, in_chans, embed_dim, depth, num_heads, num_classes, mlp_hidden;
    int num_patches;          /* N */
    int n_stages;             /* 0 for none and tome (ToMe merges in every block) */
    int prune_loc[TPS_INFER_MAX_STAGES];
    float keep_frac[TPS_INFER_MAX_STAGES]; /* cumulative fraction of N kept after stage s */
    int fuse_token;           /* evit: 1 fuses the pruned tokens into one extra token (EViT's
                                 --fuse_token), 0 drops them; 1 for the other methods */
    /* Preprocessing (timm eval): resize the short side to floor(input_size / crop_pct), centre
     * crop input_size, x / 255, (x - mean) / std per channel. */
    int input_size;
    float crop_pct;
    float mean[3], std[3];
    char interpolation[16];   /* "bicubic" or "bilinear" */
    int n_class_names;        /* 0 when the file has none */
} tps_model_info;

TPS_API tps_status tps_model_get_info(const tps_model *m, tps_model_info *info);
/* Class k's name, or NULL when the file has no names or k is out of range. */
TPS_API const char *tps_model_class_name(const tps_model *m, int k);
/* Multiply-accumulates per image of one inference forward pass at the model's default
 * ratios (keep_ratio > 0: at that ratio instead), counting every linear, the attention
 * products and the score predictors. */
TPS_API double tps_model_macs(const tps_model *m, float keep_ratio);

/* ---- workspace and budgets --------------------------------------------------------------- */

/* All buffers for batches of up to max_batch images, allocated here and never again. */
TPS_API tps_status tps_workspace_create(const tps_model *m, size_t max_batch, tps_workspace **out);
TPS_API void tps_workspace_free(tps_workspace *ws); /* NULL is fine */

typedef enum tps_budget_mode {
    TPS_BUDGET_FIXED = 0,     /* every image keeps the same count (the official behaviour) */
    TPS_BUDGET_THRESHOLD = 1, /* each image keeps the tokens whose keep-probability > threshold */
} tps_budget_mode;

typedef struct tps_budget {
    tps_budget_mode mode;
    /* FIXED: 0 = the exported ratios; else rho in (0, 1], stage s keeping rho^(s+1) of N
     * (predictor methods) or ceil(rho * n) of the n current tokens (evit/etps), as training
     * with that keep_ratio would. */
    float keep_ratio;
    /* THRESHOLD (dynamicvit/dtps only): at every stage image b keeps the tokens whose
     * predicted keep-probability exceeds `threshold`, but at least ceil(min_frac * n_b) (and
     * at least 1) and at most floor(max_frac * n_b) of its n_b current tokens; the kept ones
     * are still the top scores in descending order. */
    float threshold;
    float min_frac, max_frac;
} tps_budget;

/* Applies to the following runs of this workspace. Checks the values (TPS_ERR_ARG). */
TPS_API tps_status tps_workspace_set_budget(tps_workspace *ws, const tps_budget *budget);

/* ---- running ----------------------------------------------------------------------------- */

/* images: normalised float [B, in_chans, img_size, img_size]; logits: [B, K] out. */
TPS_API tps_status tps_run(tps_workspace *ws, const float *images, size_t B, float *logits);
/* pixels: B images of width x height RGB bytes, row-major [B, height, width, 3]; each goes
 * through the model's preprocessing (tps_preprocess), then tps_run. */
TPS_API tps_status tps_run_rgb8(tps_workspace *ws, const uint8_t *pixels, size_t B, int width, int height,
                                float *logits);
/* One RGB image [height, width, 3] -> the normalised model input [in_chans, S, S] (S =
 * img_size). Needs no workspace; `out` has in_chans*S*S floats. */
TPS_API tps_status tps_preprocess(const tps_model *m, const uint8_t *pixels, int width, int height, float *out);

/* Decodes a PNG/JPEG/BMP file into RGB bytes [height, width, 3] (free with tps_image_free). */
TPS_API tps_status tps_image_load(const char *path, uint8_t **pixels, int *width, int *height);
TPS_API void tps_image_free(uint8_t *pixels);

/* Softmax top-k of each row of logits [B, K]: idx [B, k] class indices in descending
 * probability (ties: lower index first), prob [B, k] (may be NULL). k <= K. */
TPS_API tps_status tps_topk(const float *logits, size_t B, size_t K, size_t k, int32_t *idx, float *prob);

/* After a run: the number of pruning stages that ran (0 for dense models). */
TPS_API int tps_num_stages(const tps_workspace *ws);
/* After a run: the original patch indices (0..N-1, cls excluded, in the order kept) of image
 * b's patch tokens that survive stage s; *n receives their count. EViT's fused token has no
 * patch and is listed as -1 when a later stage keeps it. Workspace memory: valid until the
 * next run. */
TPS_API tps_status tps_kept_tokens(const tps_workspace *ws, int stage, size_t b, const int32_t **idx, size_t *n);
/* After a run: mean over the batch of the tokens kept at stage s (cls excluded). */
TPS_API double tps_mean_kept(const tps_workspace *ws, int stage);
/* After a run of a merging model (tome, atme; since 0.3): the source map of image b, the
 * spatial token (0-based, cls excluded, in the final order) holding each of the N patches,
 * patch_token [N]; *n_tokens the spatial tokens left. Every image has the same count.
 * (atme's tps_kept_tokens lists each merged region's lowest patch.) Other methods:
 * TPS_ERR_ARG. Workspace memory: valid until the next run. */
TPS_API tps_status tps_token_map(const tps_workspace *ws, size_t b, const int32_t **patch_token, size_t *n_tokens);
/* After a run (since 0.4): image b's tokens after the last block, through the final LayerNorm,
 * scattered back to the patch grid, so that a dense head (segmentation, detection) can use a
 * compressed backbone: grid [G, G, C] row-major over the patch grid (G = image size / patch
 * size, C the embedding width), each cell holding the token that stands for its patch (a
 * merged token fills every cell of its region). Dense models and the merging methods (tome,
 * atme, cait); methods that remove tokens leave patches without one: TPS_ERR_ARG. */
TPS_API tps_status tps_patch_grid(const tps_workspace *ws, size_t b, float *grid);

#ifdef __cplusplus
}
#endif

#endif
