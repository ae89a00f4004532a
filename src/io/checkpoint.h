/* The tpsc checkpoint: one HDF5 file holding everything needed to rebuild, resume or export a
 * run. Layout (docs/checkpoints.md has every field):
 *
 *   /                  attrs: format ("tpsc-checkpoint" | "tpsc-inference"), format_version,
 *                      arch, img_size, patch_size, in_chans, embed_dim, depth, num_heads,
 *                      num_classes, mlp_ratio, ln_eps, method, prune_loc[], keep_frac[],
 *                      squeeze_temp, git_describe, class_names[], recipe;
 *                      channel gates: cdcp_keep_qk[], cdcp_keep_v[], cdcp_keep_mlp[],
 *                      cdcp_gate_init, cdcp_gate_temp (checkpoints), or the kept widths
 *                      head_dim_qk[], head_dim_v[], mlp_hidden[] (inference files)
 *   /model/<name>      every parameter, float32, PyTorch shapes, ag_params' (timm) names
 *   /optimizer         attrs name ("adamw" | "sgd"), step
 *   /optimizer/m/<name>, /optimizer/v/<name>   AdamW moments (SGD: m = momentum buffer only);
 *                      optional int64 attr step on each m tensor (its own update count)
 *   /ema/<name>        EMA weights, when EMA is used
 *   /state/rng [n,4] uint64, /state/loader int64[], /state/epoch, /state/step, /state/best_top1
 *
 * Reading is in pieces, because the model must be built (from the config) before its
 * parameters can be loaded. Every function opens and closes the file itself and checks the
 * format name and version first. Errors name the file and the tensor or key at fault. */
#ifndef TPSC_IO_CHECKPOINT_H
#define TPSC_IO_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/params.h"
#include "src/model/vit.h"
#include "src/tokens/tokens.h"
#include "src/util/status.h"

#define TPSC_FORMAT_CHECKPOINT "tpsc-checkpoint"
#define TPSC_FORMAT_INFERENCE "tpsc-inference"
/* The newest format_version this build writes and reads; older versions stay readable. */
#define TPSC_CHECKPOINT_VERSION 1

/* Inference files: how an image becomes the model's input (libtpsinfer's tps_preprocess). */
typedef struct tpsc_preprocessing {
    int64_t input_size;
    double crop_pct;
    float mean[3], std[3];            /* per input channel */
    const char *interpolation;        /* "bicubic" */
} tpsc_preprocessing;

/* What to save. Pointers are borrowed for the duration of the call. Buffers laid out like
 * params->data (params->total floats, the same offsets) may be NULL when absent. */
typedef struct tpsc_checkpoint {
    const char *format;               /* NULL = TPSC_FORMAT_CHECKPOINT */
    const vit_config *vit;            /* required */
    const tok_config *tps;            /* NULL = dense (method none) */
    const ag_params *params;          /* required, finalised -> /model */
    const float *opt_m, *opt_v;       /* -> /optimizer/m, /optimizer/v (SGD: opt_v NULL) */
    int64_t opt_step;
    const char *opt_name;             /* "adamw" / "sgd"; required when opt_m is set. When set,
                                         /optimizer (name, step) is written even without m. */
    const int64_t *opt_param_step;    /* per-parameter update counts (params->count, in item
                                         order), or NULL; stored as attribute "step" of each
                                         /optimizer/m/<name>, so it follows names, not order */
    const float *ema;                 /* -> /ema */
    const uint64_t *rng_states;       /* n_rng states of 4 words each (tpsc_rng.s) -> /state/rng */
    int n_rng;
    const int64_t *loader_pos;        /* opaque data-loader position -> /state/loader */
    int n_loader_pos;
    int64_t epoch, step;
    float best_top1;
    const char *recipe_text;          /* the full resolved recipe; NULL = "" */
    const char *precision;            /* the GEMM precision the run trained in ("fp32", "bf16") ->
                                         root attribute "precision"; NULL = not written. The
                                         weights are FP32 either way. */
    const char *const *class_names;   /* may be NULL with n_class_names 0 */
    const int32_t *chan_width[CHAN_KINDS]; /* inference files with channels removed: per block
                                         the kept head_dim_qk, head_dim_v, mlp_hidden (depth
                                         entries each), or NULL (see chan_prune_params) */
    int n_class_names;
    const tpsc_preprocessing *preprocessing; /* root attrs input_size, crop_pct, mean, std,
                                         interpolation (inference files), or NULL */
} tpsc_checkpoint;

/* Writes the file atomically (src/io/atomic.h): a crash leaves the previous file intact.
 * /state is written only for TPSC_FORMAT_CHECKPOINT. */
tpsc_status tpsc_checkpoint_save(const char *path, const tpsc_checkpoint *ck);
/* The same file, made in memory: *image (free with tpsc_free) holds its *bytes; name stands
 * for it in messages. What the framework hands libtpsinfer (tps_model_open_memory). */
tpsc_status tpsc_checkpoint_save_image(const tpsc_checkpoint *ck, const char *name, void **image, size_t *bytes);

/* What read_config learns besides the model config. */
typedef struct tpsc_checkpoint_info {
    char format[32];                  /* "tpsc-checkpoint" or "tpsc-inference" */
    int format_version;
    char git_describe[128];           /* of the build that wrote it */
    bool has_optimizer, has_ema, has_state;   /* /optimizer, /ema, /state exist */
} tpsc_checkpoint_info;

/* Reads the root attributes into vit and tps (either may be NULL; info too), so the caller can
 * build the model before loading weights. Wrong format name, a format_version newer than
 * TPSC_CHECKPOINT_VERSION or an unknown method is TPSC_ERR_FORMAT. */
tpsc_status tpsc_checkpoint_read_config(const char *path, vit_config *vit, tok_config *tps,
                                        tpsc_checkpoint_info *info);

/* By default every name and shape must match exactly both ways. */
typedef struct tpsc_load_opts {
    /* Parameters whose name starts with one of these may be absent from the file; they keep
     * their current values (initialisation) and are listed in report->missing.
     * E.g. {"score_predictor."} to start dTPS from dense DeiT weights. */
    const char *const *allow_missing_prefixes;
    int n_allow_missing_prefixes;
    /* Tensors in the file with no matching parameter are skipped (listed in report->ignored)
     * instead of failing: a teacher's or a dTPS checkpoint loaded into a dense model. */
    bool ignore_extra;
} tpsc_load_opts;

/* What a load did. Free with tpsc_load_report_free. */
typedef struct tpsc_load_report {
    int n_loaded;
    int n_missing;                    /* newly initialised parameters (allowed missing) */
    char **missing;
    int n_ignored;                    /* file tensors skipped under ignore_extra */
    char **ignored;
} tpsc_load_report;

void tpsc_load_report_init(tpsc_load_report *r);
void tpsc_load_report_free(tpsc_load_report *r);
/* "loaded 152 tensors; newly initialised: a, b; ignored: c" into buf (truncated with "..."). */
const char *tpsc_load_report_str(const tpsc_load_report *r, char *buf, size_t len);

/* Loads group ("/model" or "/ema") into params->data. opts and report may be NULL (strict,
 * no report). On error params may be partly overwritten. */
tpsc_status tpsc_checkpoint_load_params(const char *path, const char *group, ag_params *params,
                                        const tpsc_load_opts *opts, tpsc_load_report *report);
/* The same into any buffer laid out like layout->data (an EMA copy, optimizer moments). */
tpsc_status tpsc_checkpoint_load_tensors(const char *path, const char *group, const ag_params *layout,
                                         float *dst, const tpsc_load_opts *opts, tpsc_load_report *report);

/* Resume state. The caller sets the buffers it wants filled; NULL buffers are skipped. What
 * the caller asks for must be in the file (a missing /optimizer/v is fine for "sgd": then
 * has_opt_v is false and opt_v is left alone; missing per-parameter counts only leave
 * has_opt_param_step false). Tensor names and shapes are checked strictly against layout. */
typedef struct tpsc_checkpoint_state {
    /* in: buffers of layout->total floats, or NULL */
    float *opt_m, *opt_v, *ema;
    /* in: room for rng_cap states (4 words each) and loader_cap positions */
    uint64_t *rng_states;
    int rng_cap;
    int64_t *loader_pos;
    int loader_cap;
    int64_t *opt_param_step;          /* in: room for layout->count counts, or NULL */
    /* out */
    char opt_name[16];                /* "" when the file has no /optimizer */
    int64_t opt_step;
    bool has_opt_v;
    bool has_opt_param_step;          /* opt_param_step was filled (the file has the counts) */
    int n_rng, n_loader_pos;
    int64_t epoch, step;
    float best_top1;
} tpsc_checkpoint_state;

tpsc_status tpsc_checkpoint_load_state(const char *path, const ag_params *layout, tpsc_checkpoint_state *st);

/* The recipe text (tpsc_free it). */
tpsc_status tpsc_checkpoint_read_recipe(const char *path, char **text);
/* Class names (free with tpsc_checkpoint_free_names); *n may be 0 with *names NULL. */
tpsc_status tpsc_checkpoint_read_class_names(const char *path, char ***names, int *n);
void tpsc_checkpoint_free_names(char **names, int n);

#endif
