#include "src/train/setup.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "src/io/checkpoint.h"
#include "src/util/log.h"

void tpsc_data_config_from_recipe(const tpsc_recipe *r, tpsc_split split, tpsc_data_config *dc) {
    tpsc_data_config_default(dc);
    const tpsc_recipe_data *d = &r->data;
    const tpsc_recipe_augment *a = &r->augment;
    dc->format = d->format;
    snprintf(dc->train_path, sizeof dc->train_path, "%s", d->train);
    snprintf(dc->val_path, sizeof dc->val_path, "%s", d->val);
    dc->image_size = (int)r->model.vit.img_size;
    dc->channels = (int)r->model.vit.in_chans;
    dc->num_classes = 0;
    dc->batch_size = d->batch_size;
    dc->eval_batch_size = d->eval_batch_size;
    dc->workers = d->workers;
    dc->prefetch = d->prefetch;
    dc->drop_last = d->drop_last;
    dc->shuffle = true;
    dc->seed = (uint64_t)r->run.seed;
    dc->on_bad_image = d->on_bad_image;
    dc->limit = (size_t)(split == TPSC_SPLIT_TRAIN ? d->limit_train : d->limit_val);
    dc->repeated_aug = d->repeated_aug;
    tpsc_augment_config *g = &dc->aug;
    if (a->rrc) {
        g->scale_min = a->scale[0], g->scale_max = a->scale[1];
        g->ratio_min = a->ratio[0], g->ratio_max = a->ratio[1];
    } else {
        /* Whole image, no random crop: RandomResizedCrop with the full area and its aspect. */
        g->scale_min = g->scale_max = 1.0f;
        g->ratio_min = g->ratio_max = 1.0f;
    }
    g->hflip = a->hflip;
    g->color_jitter = a->color_jitter;
    snprintf(g->auto_augment, sizeof g->auto_augment, "%s", a->randaug);
    g->reprob = a->random_erase;
    g->mixup_alpha = a->mixup;
    g->cutmix_alpha = a->cutmix;
    g->mixup_prob = a->mixup_prob;
    g->mixup_switch_prob = a->mixup_switch_prob;
    g->smoothing = a->smoothing;
    g->crop_pct = a->crop_pct;
    for (int c = 0; c < 3; c++) {
        int src = c < a->n_mean ? c : a->n_mean - 1;
        g->mean[c] = a->mean[src < 0 ? 0 : src];
        src = c < a->n_std ? c : a->n_std - 1;
        g->std[c] = a->std[src < 0 ? 0 : src];
    }
}

objective_config tpsc_loss_config_from_recipe(const tpsc_recipe *r) {
    objective_config c = {.clf_weight = r->loss.clf_weight,
                         .ratio_weight = r->loss.ratio_weight,
                         .distill_weight = r->loss.distill_weight,
                         .guide_weight = r->loss.guide_weight,
                         .channel_ratio_weight = r->loss.channel_ratio_weight,
                         .distill_cls = r->loss.distill_cls};
    switch (r->loss.distill_token) {
    case TPSC_DISTILL_TOKEN_KL: c.distill_token = OBJ_DISTILL_TOKEN_KL; break;
    case TPSC_DISTILL_TOKEN_MSE: c.distill_token = OBJ_DISTILL_TOKEN_MSE; break;
    default: c.distill_token = OBJ_DISTILL_TOKEN_NONE; break;
    }
    return c;
}

static bool same_backbone(const vit_config *a, const vit_config *b) {
    return a->img_size == b->img_size && a->patch_size == b->patch_size && a->in_chans == b->in_chans &&
           a->embed_dim == b->embed_dim && a->depth == b->depth && a->num_heads == b->num_heads &&
           a->num_classes == b->num_classes;
}

tpsc_status tpsc_build_model(const tpsc_recipe *r, vit_model *m) {
    TPSC_TRY(vit_model_create(m, &r->model.vit, &r->tps.cfg));
    tpsc_rng rng = tpsc_rng_keyed((uint64_t)r->run.seed, 0x696e6974 /* "init" */, 0, 0);
    vit_model_init(m, &rng);
    if (!r->model.init[0]) return TPSC_OK;
    vit_config ic;
    tok_config it;
    TPSC_TRY(tpsc_checkpoint_read_config(r->model.init, &ic, &it, NULL));
    if (!same_backbone(&ic, &m->cfg))
        return tpsc_fail(TPSC_ERR_SHAPE,
                         "model.init %s: its model (img %zu, patch %zu, dim %zu, depth %zu, heads %zu, %zu classes) "
                         "differs from the recipe's (img %zu, patch %zu, dim %zu, depth %zu, heads %zu, %zu classes)",
                         r->model.init, ic.img_size, ic.patch_size, ic.embed_dim, ic.depth, ic.num_heads, ic.num_classes,
                         m->cfg.img_size, m->cfg.patch_size, m->cfg.embed_dim, m->cfg.depth, m->cfg.num_heads,
                         m->cfg.num_classes);
    /* What a dense model has not: the predictors, and the channel gates (each name given whole) */
    const char *prefixes[1 + CHAN_MAX_BLOCKS * CHAN_KINDS] = {"score_predictor."};
    int n_prefixes = 1;
    for (size_t i = 0; i < m->cfg.depth && i < CHAN_MAX_BLOCKS; i++)
        for (int k = 0; k < CHAN_KINDS; k++)
            if (m->gates[i].gate[k] >= 0) prefixes[n_prefixes++] = m->params.items[m->gates[i].gate[k]].name;
    tpsc_load_opts opts = {.allow_missing_prefixes = r->model.init_strict ? NULL : prefixes,
                           .n_allow_missing_prefixes = r->model.init_strict ? 0 : n_prefixes,
                           .ignore_extra = !r->model.init_strict};
    tpsc_load_report rep;
    tpsc_load_report_init(&rep);
    tpsc_status st = tpsc_checkpoint_load_params(r->model.init, "/model", &m->params, &opts, &rep);
    if (st == TPSC_OK) {
        char buf[2048];
        TPSC_INFO("model.init %s: %s", r->model.init, tpsc_load_report_str(&rep, buf, sizeof buf));
    }
    tpsc_load_report_free(&rep);
    return st;
}

tpsc_status tpsc_build_teacher(const char *path, vit_model *teacher) {
    vit_config tc;
    TPSC_TRY(tpsc_checkpoint_read_config(path, &tc, NULL, NULL));
    tok_config dense = {.method = TOK_NONE, .squeeze_temp = 1.0f};
    TPSC_TRY(vit_model_create(teacher, &tc, &dense));
    /* A teacher file may be a pruned model's checkpoint: its predictors are not needed. */
    tpsc_load_opts opts = {.ignore_extra = true};
    tpsc_status st = tpsc_checkpoint_load_params(path, "/model", &teacher->params, &opts, NULL);
    if (st != TPSC_OK) {
        tpsc_error_context("teacher: ");
        vit_model_free(teacher);
        return st;
    }
    for (int i = 0; i < teacher->params.count; i++) ag_param_set_frozen(&teacher->params, i, true);
    return TPSC_OK;
}

tpsc_status tpsc_mkdirs(const char *path) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return tpsc_fail(TPSC_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            *p = saved;
            if (saved == '\0') break;
        }
    }
    return TPSC_OK;
}
