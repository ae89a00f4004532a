/* Recipes: everything a training run needs, read from an INI file.
 *
 *     ; recipes/deit_s_dtps.ini
 *     [optim]
 *     lr = 2.5e-4
 *     [tps]
 *     method = dtps
 *     prune_loc = 3, 6, 9
 *
 * Every key is listed once, with type, default, range and a one-line doc, in schema.c; that
 * table drives parsing, overrides, logging, serialisation and `tpsc_recipe_print_keys`.
 * Format and key reference: docs/recipes.md.
 *
 * Typical use (the trainer):
 *     tpsc_recipe r;
 *     TPSC_TRY(tpsc_recipe_load(&r, "recipes/deit_s_dtps.ini"));   // defaults + file + checks
 *     for (each --set argument) TPSC_TRY(tpsc_recipe_set(&r, arg)); // "optim.lr=1e-4"
 *     TPSC_TRY(tpsc_recipe_validate(&r));                           // cross-key rules again
 *     tpsc_recipe_log_defaults(&r);                                 // darknet-style
 *     char *ini = tpsc_recipe_to_ini(&r);                           // into the checkpoint
 *
 * The model takes r.model.vit and r.tps.cfg as they are. */
#ifndef TPSC_RECIPE_RECIPE_H
#define TPSC_RECIPE_RECIPE_H

#include <stdbool.h>
#include <stdio.h>

#include "data/loader.h"
#include "src/model/vit.h"
#include "src/tokens/tokens.h"
#include "src/util/status.h"

#define TPSC_RECIPE_PATH_MAX 256 /* paths and free strings, with the terminating NUL */
#define TPSC_RECIPE_NAME_MAX 64
#define TPSC_RECIPE_CHANNELS_MAX 4 /* mean/std values (one per input channel) */
#define TPSC_RECIPE_MAX_KEYS 128   /* capacity of the per-key provenance table */

/* The data enums (format, bad-image policy) are the loader's own, so the recipe and the
 * loader cannot disagree on their values. */
typedef tpsc_bad_image_policy tpsc_bad_image;
typedef enum tpsc_optim_name { TPSC_OPTIM_ADAMW = 0, TPSC_OPTIM_SGD } tpsc_optim_name;
typedef enum tpsc_sched_name { TPSC_SCHED_COSINE = 0, TPSC_SCHED_CONSTANT } tpsc_sched_name;
typedef enum tpsc_distill_token { TPSC_DISTILL_TOKEN_KL = 0, TPSC_DISTILL_TOKEN_MSE, TPSC_DISTILL_TOKEN_NONE } tpsc_distill_token;

/* [model] */
typedef struct tpsc_recipe_model {
    vit_config vit;                    /* arch, img_size, patch_size, in_chans, embed_dim, depth,
                                          num_heads, num_classes, mlp_ratio; ln_eps is 1e-6 */
    char init[TPSC_RECIPE_PATH_MAX];   /* checkpoint to start from ("" = random init) */
    bool init_strict;                  /* false: tensors missing from init are initialised and listed */
} tpsc_recipe_model;

/* [tps] */
typedef struct tpsc_recipe_tps {
    tok_config cfg;                    /* resolved, what the model takes: method, n_stages,
                                          prune_loc, keep_frac (cumulative), squeeze_temp.
                                          n_stages = 0 when method is none. */
    int prune_loc[TOK_MAX_STAGES];     /* as written */
    int n_prune_loc;
    float keep_ratio[TOK_MAX_STAGES];  /* as written: one rho (compounds) or one cumulative
                                          fraction per stage */
    int n_keep_ratio;
    bool fuse_token;                   /* evit: fuse the pruned tokens into one (cfg.evit_drop_pruned
                                          is its negation) */
} tpsc_recipe_tps;

/* [cdcp] channel gates (src/channels/channels.h); resolved into tps.cfg.chan */
typedef struct tpsc_recipe_cdcp {
    float keep[CHAN_KINDS][CHAN_MAX_BLOCKS]; /* as written: keep_qk, keep_v, keep_mlp */
    int n_keep[CHAN_KINDS];                  /* 1 (every block) or model.depth values */
} tpsc_recipe_cdcp;

/* [data] */
typedef struct tpsc_recipe_data {
    tpsc_data_format format;
    char train[TPSC_RECIPE_PATH_MAX], val[TPSC_RECIPE_PATH_MAX];
    int batch_size, eval_batch_size;
    int workers, prefetch;             /* loader threads; batches prepared ahead */
    bool drop_last;
    int limit_train, limit_val;        /* 0 = all samples */
    int repeated_aug;                  /* DeiT's RASampler: each image this many times per epoch (1 = off) */
    tpsc_bad_image on_bad_image;
} tpsc_recipe_data;

/* [augment] (train split; val uses resize to img_size/crop_pct, centre crop, normalise) */
typedef struct tpsc_recipe_augment {
    bool rrc;                          /* RandomResizedCrop; false: resize + centre crop */
    float scale[2], ratio[2];          /* rrc area fraction and aspect-ratio ranges */
    int n_scale, n_ratio;              /* always 2 */
    float hflip, color_jitter;
    float mean[TPSC_RECIPE_CHANNELS_MAX], std[TPSC_RECIPE_CHANNELS_MAX];
    int n_mean, n_std;                 /* == model.vit.in_chans */
    float crop_pct;
    float mixup, cutmix, mixup_prob, mixup_switch_prob; /* alphas (0 = off) and probabilities */
    float smoothing, random_erase;
    char randaug[TPSC_RECIPE_NAME_MAX]; /* timm grammar "rand-m9-mstd0.5-inc1"; "" = off */
} tpsc_recipe_augment;

/* [optim] */
typedef struct tpsc_recipe_optim {
    tpsc_optim_name name;
    float lr, weight_decay, beta1, beta2, eps, momentum;
    float clip_grad;                   /* max global grad norm; 0 = off */
    float backbone_lr_scale;           /* lr of non-predictor params = lr * this */
    char freeze[TPSC_RECIPE_PATH_MAX]; /* comma-separated parameter-name prefixes; see
                                          tpsc_recipe_param_frozen */
    bool ema;
    float ema_decay;
    int accum_steps;                   /* micro-batches of data.batch_size per optimiser step */
} tpsc_recipe_optim;

/* [schedule] (per-step cosine over epochs, linear warm-up, as timm's scheduler) */
typedef struct tpsc_recipe_schedule {
    int epochs;
    float warmup_epochs;               /* may be a fraction: 0.3 = the first 30% of an epoch */
    float warmup_lr, min_lr;
    tpsc_sched_name sched;
    int max_steps;                     /* stop after this many optimiser steps; 0 = no limit */
} tpsc_recipe_schedule;

/* [loss] (ratio and distillation terms apply to predictor methods: dynamicvit, dtps) */
typedef struct tpsc_recipe_loss {
    float clf_weight, ratio_weight, distill_weight;
    float guide_weight;                /* predictor guide by the teacher's cls attention (ours) */
    float channel_ratio_weight;        /* channel keep-ratio loss of the [cdcp] gates */
    tpsc_distill_token distill_token;  /* on the final kept spatial tokens */
    bool distill_cls;                  /* KL on the cls logits */
} tpsc_recipe_loss;

/* [teacher] (required when loss.distill_weight > 0 with a predictor method) */
typedef struct tpsc_recipe_teacher {
    char checkpoint[TPSC_RECIPE_PATH_MAX];
} tpsc_recipe_teacher;

/* [run] */
typedef struct tpsc_recipe_run {
    char name[TPSC_RECIPE_NAME_MAX];   /* "" in the file: the recipe file's stem */
    char out_dir[TPSC_RECIPE_PATH_MAX]; /* checkpoints go to out_dir/name/ */
    int seed;
    int threads;                       /* 0 = all cores */
    int precision;                     /* GEMM kernels: 0 fp32, 1 bf16 (ag_precision's order) */
    int log_every;                     /* steps */
    int eval_every, save_every;        /* epochs */
    char resume[TPSC_RECIPE_PATH_MAX]; /* checkpoint to continue from ("" = fresh run) */
    float bucket_mb;                   /* MPI: gradient bucket size */
    bool overlap_allreduce;            /* MPI: reduce late layers during the backward */
} tpsc_recipe_run;

/* Where each key's value came from, for messages and the defaults log. Not part of the
 * recipe's value: tpsc_recipe_equal ignores it. */
typedef struct tpsc_recipe_origin {
    char source[TPSC_RECIPE_PATH_MAX]; /* the file loaded, or the name given to load_string */
    int line[TPSC_RECIPE_MAX_KEYS];    /* per schema key: line in source; 0 = default;
                                          -1 = a --set override */
} tpsc_recipe_origin;

typedef struct tpsc_recipe {
    tpsc_recipe_model model;
    tpsc_recipe_tps tps;
    tpsc_recipe_cdcp cdcp;
    tpsc_recipe_data data;
    tpsc_recipe_augment augment;
    tpsc_recipe_optim optim;
    tpsc_recipe_schedule schedule;
    tpsc_recipe_loss loss;
    tpsc_recipe_teacher teacher;
    tpsc_recipe_run run;
    tpsc_recipe_origin origin;
} tpsc_recipe;

/* Every key at its default (see schema.c), resolved (model.vit, tps.cfg filled). */
void tpsc_recipe_defaults(tpsc_recipe *r);

/* Defaults, then the file, then tpsc_recipe_validate. Errors: TPSC_ERR_IO naming the path
 * for a missing file; TPSC_ERR_CONFIG "recipes/x.ini:12: [optim] lr: expected a number,
 * got 'abc'" for unknown sections or keys, wrong types, out-of-range values, duplicate keys
 * and sections, lines longer than the parser's limit, and failed cross-key rules. An empty
 * run.name becomes the file's stem. On failure *r holds no usable recipe. */
tpsc_status tpsc_recipe_load(tpsc_recipe *r, const char *path);
/* The same from text in memory (a recipe stored in a checkpoint); `name` stands in for the
 * file name in messages and in origin.source (run.name is not derived from it). */
tpsc_status tpsc_recipe_load_string(tpsc_recipe *r, const char *text, const char *name);

/* One override "section.key=value" on top of what is there (e.g. "optim.lr=1e-4",
 * "tps.prune_loc=2,4"). Checks the key's type and range; the error names the override.
 * Cross-key rules are not checked here, since a later override may fix them: call
 * tpsc_recipe_validate after the last one. */
tpsc_status tpsc_recipe_set(tpsc_recipe *r, const char *assignment);

/* Cross-key rules: patch divides img_size, heads divide embed_dim, named arch sizes not
 * contradicted, prune_loc inside [1, depth) and increasing, keep_ratio list length vs
 * prune_loc, mean/std length vs in_chans, warm-up shorter than training, teacher present
 * when distillation is on, randaug grammar. Messages name where the offending key was set. */
tpsc_status tpsc_recipe_validate(const tpsc_recipe *r);

/* Logs (TPSC_INFO) every key the file and overrides left at its default, one per line:
 * "recipe: [optim] beta2 = 0.999 (default)". */
void tpsc_recipe_log_defaults(const tpsc_recipe *r);

/* The full resolved recipe as INI text, every key of every section, which tpsc_recipe_load_string
 * turns back into an equal recipe. tpsc_malloc'd (free with tpsc_free); NULL on NOMEM. */
char *tpsc_recipe_to_ini(const tpsc_recipe *r);

/* True when every key (and the resolved model/tps configs) are equal; origin is ignored. */
bool tpsc_recipe_equal(const tpsc_recipe *a, const tpsc_recipe *b);

/* True when param_name starts with one of the optim.freeze prefixes. */
bool tpsc_recipe_param_frozen(const tpsc_recipe *r, const char *param_name);

/* The key table (section, key, type, default, range, doc), for `tpsc recipe --keys`. */
void tpsc_recipe_print_keys(FILE *f);
/* The same as a Markdown table, for docs/recipes.md. */
void tpsc_recipe_print_keys_markdown(FILE *f);

#endif
