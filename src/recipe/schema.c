/* THE list of recipe keys. Looking for a key? It is in this table, one row each.
 *
 * Columns: section, key, where it is stored in tpsc_recipe, default (as written in a recipe),
 * range (lo, hi; LIST rows give item count min/max first), doc. Defaults follow DeiT/timm and
 * the official dTPS DeiT-S script (megvii-research/TPS-CVPR2023,
 * torch_codebase/scripts/deit/dtps_deit_s_30e.sh) unless the doc says otherwise.
 * After adding a row: the tests check it (recipe_schema_check) and docs/recipes.md lists keys
 * from `tpsc_recipe_print_keys_markdown`. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "src/recipe/schema.h"
#include "src/util/alloc.h"

#define INF HUGE_VAL
#define AT(field) offsetof(tpsc_recipe, field), sizeof(((tpsc_recipe *)0)->field)
#define COUNT(field) offsetof(tpsc_recipe, field)

/* One macro per type keeps each row on a line or two. */
#define INT(sec, key, field, def, lo, hi, doc) {sec, key, RT_INT, def, lo, hi, false, 0, 0, NULL, AT(field), 0, doc}
#define SIZE(sec, key, field, def, lo, hi, doc) {sec, key, RT_SIZE, def, lo, hi, false, 0, 0, NULL, AT(field), 0, doc}
#define FLOAT(sec, key, field, def, lo, hi, doc) {sec, key, RT_FLOAT, def, lo, hi, false, 0, 0, NULL, AT(field), 0, doc}
/* (lo, hi]: for values that must be strictly positive. */
#define FLOAT_GT(sec, key, field, def, lo, hi, doc) {sec, key, RT_FLOAT, def, lo, hi, true, 0, 0, NULL, AT(field), 0, doc}
#define BOOL(sec, key, field, def, doc) {sec, key, RT_BOOL, def, 0, 1, false, 0, 0, NULL, AT(field), 0, doc}
#define STRING(sec, key, field, def, doc) {sec, key, RT_STRING, def, 0, 0, false, 0, 0, NULL, AT(field), 0, doc}
#define NAME(sec, key, field, def, choices, doc) {sec, key, RT_STRING, def, 0, 0, false, 0, 0, choices, AT(field), 0, doc}
#define ENUM(sec, key, field, def, choices, doc) {sec, key, RT_ENUM, def, 0, 0, false, 0, 0, choices, AT(field), 0, doc}
#define INT_LIST(sec, key, field, count, def, nmin, nmax, lo, hi, doc) \
    {sec, key, RT_INT_LIST, def, lo, hi, false, nmin, nmax, NULL, AT(field), COUNT(count), doc}
#define FLOAT_LIST(sec, key, field, count, def, nmin, nmax, lo, hi, lo_open, doc) \
    {sec, key, RT_FLOAT_LIST, def, lo, hi, lo_open, nmin, nmax, NULL, AT(field), COUNT(count), doc}

#define BIG 1e9 /* "no practical limit" for ints, still far from INT_MAX */

const recipe_key recipe_keys[] = {
    /* ---- [model] ----------------------------------------------------------------------------- */
    NAME("model", "arch", model.vit.arch, "custom", "custom|deit_tiny_patch16_224|deit_small_patch16_224|deit_base_patch16_224",
         "custom: the sizes below; a named DeiT fixes patch_size, embed_dim, depth, num_heads, mlp_ratio"),
    SIZE("model", "img_size", model.vit.img_size, "224", 1, 4096, "input image side in pixels"),
    SIZE("model", "patch_size", model.vit.patch_size, "16", 1, 1024, "patch side in pixels; must divide img_size"),
    SIZE("model", "in_chans", model.vit.in_chans, "3", 1, 3, "image channels: 1 grey, 3 RGB (the loader converts)"),
    SIZE("model", "embed_dim", model.vit.embed_dim, "384", 1, 65536, "token width C"),
    SIZE("model", "depth", model.vit.depth, "12", 1, 256, "transformer blocks"),
    SIZE("model", "num_heads", model.vit.num_heads, "6", 1, 1024, "attention heads H; must divide embed_dim"),
    SIZE("model", "num_classes", model.vit.num_classes, "1000", 1, 1000000, "classes K of the head"),
    FLOAT_GT("model", "mlp_ratio", model.vit.mlp_ratio, "4.0", 0, 64, "MLP hidden width = embed_dim * mlp_ratio"),
    STRING("model", "init", model.init, "", "checkpoint (.h5) to start from; \"\" = random init (timm's)"),
    BOOL("model", "init_strict", model.init_strict, "false",
         "true: every model tensor must be in init; false: missing ones (e.g. predictors) are initialised and listed"),

    /* ---- [tps] ------------------------------------------------------------------------------- */
    ENUM("tps", "method", tps.cfg.method, "none", TOK_METHOD_CHOICES,
         "none dense; dynamicvit/dtps learned predictor (dtps squeezes); evit/etps cls attention (etps squeezes); "
         "tome ToMe merging in every block; atme CAIT-style neighbour merging at prune_loc; cait atme + [cdcp] channel "
         "gates (CAIT-style)"),
    INT_LIST("tps", "prune_loc", tps.prune_loc, tps.n_prune_loc, "3, 6, 9", 1, TOK_MAX_STAGES, 1, 1024,
             "blocks where stages prune, increasing, inside [1, depth)"),
    FLOAT_LIST("tps", "keep_ratio", tps.keep_ratio, tps.n_keep_ratio, "0.7", 1, TOK_MAX_STAGES, 0, 1, true,
               "one rho (stage s keeps rho^(s+1) of the patches) or one cumulative fraction per prune_loc"),
    FLOAT_GT("tps", "squeeze_temp", tps.cfg.squeeze_temp, "1.0", 0, INF, "temperature T of the squeeze similarity (paper: 1)"),
    BOOL("tps", "fuse_token", tps.fuse_token, "true",
         "evit: fuse the pruned tokens into one extra token (EViT's --fuse_token, the published runs) or drop them"),
    ENUM("tps", "train_mask", tps.cfg.train_mask, "gumbel", "gumbel|topk", /* = tok_train_mask order */
         "training keep mask of predictor methods: gumbel per token (official) or topk, exactly the inference budget (ours)"),
    BOOL("tps", "train_removal", tps.cfg.train_removal, "false",
         "topk masks: the blocks after a stage run on the kept tokens only, as inference (faster; the predictor gets no "
         "gradient for a pruned token through later blocks' attention); false = masked"),
    INT("tps", "tome_r", tps.cfg.tome_r, "8", 0, BIG,
        "tome: tokens merged per block (ToMe's r; at most half the tokens of a block, and r summed over blocks <= patches)"),
    FLOAT("tps", "tome_inflect", tps.cfg.tome_inflect, "0", -1, 1,
          "tome: ToMe's schedule inflection: 0 constant r, -1 decreasing (2r in block 0 down to 0), +1 increasing"),
    BOOL("tps", "prop_attn", tps.cfg.prop_attn, "true",
         "tome/atme: proportional attention softmax(qk/sqrt(d) + log size), as ToMe off the shelf"),

    /* ---- [cdcp] ------------------------------------------------------------------------------ */
    FLOAT_LIST("cdcp", "keep_qk", cdcp.keep[CHAN_QK], cdcp.n_keep[CHAN_QK], "1.0", 1, CHAN_MAX_BLOCKS, 0, 1, true,
               "kept fraction of a head's Q/K channels (one mask for all heads, Q and K): one value for every block or "
               "one per block; 1 = no gate"),
    FLOAT_LIST("cdcp", "keep_v", cdcp.keep[CHAN_V], cdcp.n_keep[CHAN_V], "1.0", 1, CHAN_MAX_BLOCKS, 0, 1, true,
               "kept fraction of a head's V channels (and proj's input columns), as keep_qk"),
    FLOAT_LIST("cdcp", "keep_mlp", cdcp.keep[CHAN_MLP], cdcp.n_keep[CHAN_MLP], "1.0", 1, CHAN_MAX_BLOCKS, 0, 1, true,
               "kept fraction of the MLP hidden channels (fc1 rows, fc2 columns), as keep_qk"),
    FLOAT("cdcp", "gate_init", tps.cfg.chan.gate_init, "3.0", -100, 100,
          "initial channel gate logit: sigmoid(3) = 0.95 of the channels kept at the first steps"),
    FLOAT_GT("cdcp", "gate_temp", tps.cfg.chan.gate_temp, "1.0", 0, 100, "Gumbel-sigmoid temperature of the gates' backward"),

    /* ---- [data] ------------------------------------------------------------------------------ */
    ENUM("data", "format", data.format, "fashion_mnist", "fashion_mnist|imagefolder|idx|h5", /* = tpsc_data_format order */
         "fashion_mnist: Debian's dataset-fashion-mnist; imagefolder: root/<class>/<image>; idx: MNIST-style pair; h5: HDF5"),
    STRING("data", "train", data.train, "",
           "imagefolder root, idx prefix (.../train: train-images-idx3-ubyte[.gz] + labels) or h5 file; fashion_mnist: \"\" = Debian's"),
    STRING("data", "val", data.val, "", "the same for the evaluation split (fashion_mnist: \"\" = Debian's t10k files)"),
    INT("data", "batch_size", data.batch_size, "128", 1, 1 << 20,
        "training images per forward pass, over all MPI ranks; an optimiser step takes batch_size x optim.accum_steps"),
    INT("data", "eval_batch_size", data.eval_batch_size, "256", 1, 1 << 20, "images per evaluation batch"),
    INT("data", "workers", data.workers, "2", 0, 256, "loader threads decoding and augmenting (0 = in the training thread)"),
    INT("data", "prefetch", data.prefetch, "4", 1, 1024, "batches prepared ahead of the trainer"),
    BOOL("data", "drop_last", data.drop_last, "true", "drop the last incomplete training batch of an epoch"),
    INT("data", "limit_train", data.limit_train, "0", 0, 2147483647, "use only the first n training images (0 = all)"),
    INT("data", "limit_val", data.limit_val, "0", 0, 2147483647, "use only the first n validation images (0 = all)"),
    INT("data", "repeated_aug", data.repeated_aug, "1", 1, 16,
        "repeated augmentation (DeiT's RASampler, 3 in DeiT/TPS): each image this many times per epoch; 1 = off"),
    ENUM("data", "on_bad_image", data.on_bad_image, "error", "error|skip",
         "an unreadable image stops the run (error) or is skipped and counted (skip)"),

    /* ---- [augment] --------------------------------------------------------------------------- */
    BOOL("augment", "rrc", augment.rrc, "true", "RandomResizedCrop for training (false: resize and centre crop)"),
    FLOAT_LIST("augment", "scale", augment.scale, augment.n_scale, "0.08, 1.0", 2, 2, 0, 1, true,
               "rrc area fraction range (min, max)"),
    FLOAT_LIST("augment", "ratio", augment.ratio, augment.n_ratio, "0.75, 1.3333333", 2, 2, 0, 100, true,
               "rrc aspect ratio range (min, max)"),
    FLOAT("augment", "hflip", augment.hflip, "0.5", 0, 1, "horizontal flip probability"),
    FLOAT("augment", "color_jitter", augment.color_jitter, "0.4", 0, 1,
          "brightness/contrast/saturation jitter strength (0 = off; timm ignores it when randaug is on)"),
    FLOAT_LIST("augment", "mean", augment.mean, augment.n_mean, "0.485, 0.456, 0.406", 1, TPSC_RECIPE_CHANNELS_MAX, -INF, INF,
               false, "per-channel mean subtracted after scaling pixels to [0,1]; one per in_chans"),
    FLOAT_LIST("augment", "std", augment.std, augment.n_std, "0.229, 0.224, 0.225", 1, TPSC_RECIPE_CHANNELS_MAX, 0, INF, true,
               "per-channel std divided by; one per in_chans"),
    FLOAT_GT("augment", "crop_pct", augment.crop_pct, "0.875", 0, 1, "evaluation: resize to img_size/crop_pct, centre-crop img_size"),
    FLOAT("augment", "mixup", augment.mixup, "0.8", 0, 100, "mixup Beta alpha (0 = off)"),
    FLOAT("augment", "cutmix", augment.cutmix, "1.0", 0, 100, "cutmix Beta alpha (0 = off)"),
    FLOAT("augment", "mixup_prob", augment.mixup_prob, "1.0", 0, 1, "probability a batch is mixed at all"),
    FLOAT("augment", "mixup_switch_prob", augment.mixup_switch_prob, "0.5", 0, 1, "probability of cutmix instead of mixup when both are on"),
    FLOAT("augment", "smoothing", augment.smoothing, "0.1", 0, 0.999, "label smoothing"),
    FLOAT("augment", "random_erase", augment.random_erase, "0.25", 0, 1, "random erasing probability (timm reprob, mode pixel)"),
    STRING("augment", "randaug", augment.randaug, "", "RandAugment in timm's grammar, e.g. rand-m9-mstd0.5-inc1; \"\" = off"),

    /* ---- [optim] ----------------------------------------------------------------------------- */
    ENUM("optim", "name", optim.name, "adamw", "adamw|sgd", "optimiser"),
    FLOAT("optim", "lr", optim.lr, "5e-4", 0, 10, "peak learning rate, used as given (no batch-size scaling)"),
    FLOAT("optim", "weight_decay", optim.weight_decay, "0.05", 0, 10, "decoupled weight decay (not on norms, biases, cls_token, pos_embed)"),
    FLOAT("optim", "beta1", optim.beta1, "0.9", 0, 0.999999, "AdamW first-moment decay"),
    FLOAT("optim", "beta2", optim.beta2, "0.999", 0, 0.999999999, "AdamW second-moment decay"),
    FLOAT_GT("optim", "eps", optim.eps, "1e-8", 0, 1, "AdamW denominator epsilon"),
    FLOAT("optim", "momentum", optim.momentum, "0.9", 0, 1, "SGD momentum"),
    FLOAT("optim", "clip_grad", optim.clip_grad, "0", 0, INF, "clip the global gradient norm to this (0 = off)"),
    FLOAT("optim", "backbone_lr_scale", optim.backbone_lr_scale, "1.0", 0, 1000,
          "lr multiplier of everything but the score predictors (dTPS fine-tune: 0.01)"),
    STRING("optim", "freeze", optim.freeze, "", "comma-separated parameter-name prefixes kept frozen, e.g. cls_token, pos_embed"),
    BOOL("optim", "ema", optim.ema, "false", "keep an exponential moving average of the weights and evaluate it too"),
    FLOAT("optim", "ema_decay", optim.ema_decay, "0.99996", 0, 1, "EMA decay per step"),
    INT("optim", "accum_steps", optim.accum_steps, "1", 1, 65536,
        "gradient accumulation: batches of data.batch_size averaged into one optimiser step"),

    /* ---- [schedule] -------------------------------------------------------------------------- */
    INT("schedule", "epochs", schedule.epochs, "30", 1, 100000, "training epochs"),
    FLOAT("schedule", "warmup_epochs", schedule.warmup_epochs, "5", 0, 100000, "linear warm-up epochs from warmup_lr to lr (fractions allowed)"),
    FLOAT("schedule", "warmup_lr", schedule.warmup_lr, "1e-6", 0, 10, "learning rate at the start of warm-up"),
    FLOAT("schedule", "min_lr", schedule.min_lr, "1e-5", 0, 10, "cosine floor"),
    ENUM("schedule", "sched", schedule.sched, "cosine", "cosine|constant", "learning-rate decay after warm-up"),
    INT("schedule", "max_steps", schedule.max_steps, "0", 0, 2147483647, "stop after this many optimiser steps (0 = no limit; smoke tests)"),

    /* ---- [loss] ------------------------------------------------------------------------------ */
    FLOAT("loss", "clf_weight", loss.clf_weight, "1.0", 0, 1000, "weight of the (soft-target) cross-entropy"),
    FLOAT("loss", "ratio_weight", loss.ratio_weight, "2.0", 0, 1000, "weight of the keep-ratio loss (predictor methods)"),
    FLOAT("loss", "distill_weight", loss.distill_weight, "0.5", 0, 1000,
          "weight of the distillation terms (predictor methods; needs [teacher] checkpoint)"),
    ENUM("loss", "distill_token", loss.distill_token, "kl", "kl|mse|none",
         "distillation of the final kept spatial tokens: KL of channel softmax (TPS), MSE (DynamicViT), none"),
    BOOL("loss", "distill_cls", loss.distill_cls, "true", "KL distillation of the classification logits"),
    FLOAT("loss", "guide_weight", loss.guide_weight, "0", 0, 1000,
          "weight of the predictor guide: CE of each score predictor against the teacher's cls-attention top-k "
          "(predictor methods; needs [teacher] checkpoint; ours, 0 = official)"),

    FLOAT("loss", "channel_ratio_weight", loss.channel_ratio_weight, "2.0", 0, 1000,
          "weight of the channel keep-ratio loss: mean over gates of (kept fraction - cdcp target)^2"),

    /* ---- [teacher] --------------------------------------------------------------------------- */
    STRING("teacher", "checkpoint", teacher.checkpoint, "",
           "dense teacher checkpoint (.h5, its recipe inside gives the arch); required when distillation is on"),

    /* ---- [run] ------------------------------------------------------------------------------- */
    STRING("run", "name", run.name, "", "run name; \"\" = the recipe file's stem"),
    STRING("run", "out_dir", run.out_dir, "checkpoints", "checkpoints and logs go to out_dir/name/"),
    INT("run", "seed", run.seed, "0", 0, 2147483647, "seed of every random draw (init, data order, augmentation, Gumbel noise)"),
    INT("run", "threads", run.threads, "0", 0, 1024, "OpenMP/BLAS threads (0 = all cores)"),
    ENUM("run", "precision", run.precision, "fp32", "fp32|bf16", /* = ag_precision order */
         "GEMMs of linears and attention: fp32, or bf16 with fp32 accumulation (weights, grads, optimiser, norms, "
         "softmax, losses stay fp32; needs AVX512-BF16)"),
    INT("run", "log_every", run.log_every, "10", 1, BIG, "log loss and lr every n steps"),
    INT("run", "eval_every", run.eval_every, "1", 1, BIG, "evaluate every n epochs (and after the last)"),
    INT("run", "save_every", run.save_every, "1", 1, BIG, "write last.h5 every n epochs (and after the last)"),
    STRING("run", "resume", run.resume, "", "checkpoint to continue an interrupted run from (optimiser state included)"),
    FLOAT_GT("run", "bucket_mb", run.bucket_mb, "25", 0, 65536,
             "MPI: gradients are averaged in buckets of about this many MB (PyTorch DDP's default)"),
    BOOL("run", "overlap_allreduce", run.overlap_allreduce, "true",
         "MPI: average the late layers' gradient buckets while the early layers' backward runs"),
};
const int recipe_key_count = (int)(sizeof recipe_keys / sizeof recipe_keys[0]);

const char *const recipe_sections[] = {"model", "tps", "cdcp", "data", "augment", "optim", "schedule", "loss", "teacher", "run"};
const int recipe_section_count = (int)(sizeof recipe_sections / sizeof recipe_sections[0]);

/* Enums are stored through an int lvalue; C lets the compiler pick the enum's integer type. */
_Static_assert(sizeof(tok_method) == sizeof(int), "tok_method must be int-sized");
_Static_assert(sizeof(tpsc_data_format) == sizeof(int), "enum must be int-sized");
_Static_assert(sizeof(tpsc_distill_token) == sizeof(int), "enum must be int-sized");
_Static_assert(sizeof(tpsc_bad_image_policy) == sizeof(int), "enum must be int-sized");
/* ENUM rows store the index of the name in their choices: the C enums must follow that order. */
_Static_assert(TOK_NONE == 0 && TOK_DYNAMICVIT == 1 && TOK_DTPS == 2 && TOK_EVIT == 3 && TOK_ETPS == 4 && TOK_TOME == 5 &&
                   TOK_ATME == 6 && TOK_CAIT == 7,
               "tps.method order");
_Static_assert(TPSC_DATA_FASHION_MNIST == 0 && TPSC_DATA_IMAGEFOLDER == 1 && TPSC_DATA_IDX == 2 && TPSC_DATA_H5 == 3,
               "data.format order");
_Static_assert(TPSC_BAD_IMAGE_ERROR == 0 && TPSC_BAD_IMAGE_SKIP == 1, "data.on_bad_image order");
_Static_assert(TPSC_OPTIM_ADAMW == 0 && TPSC_OPTIM_SGD == 1, "optim.name order");
_Static_assert(TPSC_SCHED_COSINE == 0 && TPSC_SCHED_CONSTANT == 1, "schedule.sched order");
_Static_assert(TPSC_DISTILL_TOKEN_KL == 0 && TPSC_DISTILL_TOKEN_MSE == 1 && TPSC_DISTILL_TOKEN_NONE == 2,
               "loss.distill_token order");

int recipe_key_find(const char *section, const char *name) {
    for (int i = 0; i < recipe_key_count; i++)
        if (!strcmp(recipe_keys[i].section, section) && !strcmp(recipe_keys[i].name, name)) return i;
    return -1;
}

bool recipe_section_known(const char *section) {
    for (int s = 0; s < recipe_section_count; s++)
        if (!strcmp(recipe_sections[s], section)) return true;
    return false;
}

static size_t type_item_size(recipe_type t) {
    switch (t) {
    case RT_INT: case RT_ENUM: case RT_INT_LIST: return sizeof(int);
    case RT_SIZE: return sizeof(size_t);
    case RT_FLOAT: case RT_FLOAT_LIST: return sizeof(float);
    case RT_BOOL: return sizeof(bool);
    case RT_STRING: return 1;
    }
    return 0;
}

tpsc_status recipe_schema_check(void) {
    if (recipe_key_count > TPSC_RECIPE_MAX_KEYS)
        return tpsc_fail(TPSC_ERR_INTERNAL, "recipe schema: %d keys, origin table holds %d", recipe_key_count,
                         TPSC_RECIPE_MAX_KEYS);
    if (recipe_section_count > RECIPE_MAX_SECTIONS)
        return tpsc_fail(TPSC_ERR_INTERNAL, "recipe schema: %d sections, the parser tracks %d", recipe_section_count,
                         RECIPE_MAX_SECTIONS);
    for (int i = 0; i < recipe_key_count; i++) {
        const recipe_key *k = &recipe_keys[i];
        if (!recipe_section_known(k->section))
            return tpsc_fail(TPSC_ERR_INTERNAL, "recipe schema: key %s.%s has no section in recipe_sections", k->section, k->name);
        if (recipe_key_find(k->section, k->name) != i)
            return tpsc_fail(TPSC_ERR_INTERNAL, "recipe schema: key %s.%s listed twice", k->section, k->name);
        const size_t item = type_item_size(k->type);
        const bool is_list = k->type == RT_INT_LIST || k->type == RT_FLOAT_LIST;
        if (is_list ? k->size != item * (size_t)k->list_max || k->list_min < 1 || k->list_min > k->list_max
                    : (k->type != RT_STRING && k->size != item))
            return tpsc_fail(TPSC_ERR_INTERNAL, "recipe schema: key %s.%s: storage of %zu bytes does not fit its type",
                             k->section, k->name, k->size);
        if (k->type == RT_ENUM && !k->choices)
            return tpsc_fail(TPSC_ERR_INTERNAL, "recipe schema: enum key %s.%s has no choices", k->section, k->name);
        tpsc_recipe *scratch = tpsc_calloc(1, sizeof *scratch, "recipe schema check");
        if (!scratch) return TPSC_ERR_NOMEM;
        tpsc_status st = recipe_value_parse(k, k->def, scratch);
        tpsc_free(scratch);
        if (st != TPSC_OK) {
            tpsc_error_context("recipe schema: default of %s.%s: ", k->section, k->name);
            return TPSC_ERR_INTERNAL;
        }
    }
    return TPSC_OK;
}
