#include "src/export/export.h"

#include <string.h>

#include "src/channels/prune.h"
#include "src/recipe/recipe.h"
#include "src/util/alloc.h"

/* The preprocessing of the recipe text, or the defaults' when there is none (a converted timm
 * checkpoint). */
static tpsc_status preprocessing_of(const char *ckpt, const char *recipe_text, size_t img_size, tpsc_preprocessing *p) {
    static tpsc_recipe r; /* large; the CLI is single-threaded here */
    tpsc_status st = TPSC_OK;
    if (recipe_text[0])
        st = tpsc_recipe_load_string(&r, recipe_text, ckpt);
    else
        tpsc_recipe_defaults(&r);
    if (st != TPSC_OK) {
        tpsc_error_context("%s: the stored recipe: ", ckpt);
        return st;
    }
    const tpsc_recipe_augment *a = &r.augment;
    p->input_size = (int64_t)img_size;
    p->crop_pct = a->crop_pct;
    for (int c = 0; c < 3; c++) {
        /* one value per input channel; a one-channel model repeats its value (RGB -> grey happens first) */
        p->mean[c] = a->mean[c < a->n_mean ? c : 0];
        p->std[c] = a->std[c < a->n_std ? c : 0];
    }
    p->interpolation = "bicubic";
    return TPSC_OK;
}

tpsc_status tpsc_export_load(tpsc_export *x, const char *ckpt, bool prefer_ema) {
    memset(x, 0, sizeof *x);
    vit_config vc;
    tok_config tc;
    tpsc_checkpoint_info info;
    TPSC_TRY(tpsc_checkpoint_read_config(ckpt, &vc, &tc, &info));
    if (strcmp(info.format, TPSC_FORMAT_CHECKPOINT) != 0)
        return tpsc_fail(TPSC_ERR_ARG, "%s is already an inference file (format '%s')", ckpt, info.format);
    const bool ema = prefer_ema && info.has_ema;
    x->weights = ema ? "ema" : "model";
    TPSC_TRY(tpsc_checkpoint_read_recipe(ckpt, &x->recipe_text));
    tpsc_status st = preprocessing_of(ckpt, x->recipe_text, vc.img_size, &x->preprocessing);
    if (st == TPSC_OK) st = vit_model_create(&x->model, &vc, &tc);
    if (st == TPSC_OK) st = tpsc_checkpoint_load_params(ckpt, ema ? "/ema" : "/model", &x->model.params, NULL, NULL);
    if (st == TPSC_OK) st = tpsc_checkpoint_read_class_names(ckpt, &x->class_names, &x->n_class_names);
    if (st != TPSC_OK) tpsc_export_free(x);
    return st;
}

static tpsc_checkpoint checkpoint_of(const tpsc_export *x) {
    return (tpsc_checkpoint){.format = TPSC_FORMAT_INFERENCE, .vit = &x->model.cfg, .tps = &x->model.tps,
                             .params = &x->model.params, .recipe_text = x->recipe_text,
                             .class_names = (const char *const *)x->class_names, .n_class_names = x->n_class_names,
                             .preprocessing = &x->preprocessing};
}

tpsc_status tpsc_export_write(const tpsc_export *x, const char *path) {
    const tpsc_checkpoint ck = checkpoint_of(x);
    return chan_save_inference(path, &x->model, &ck);
}

/* ck's inference file in memory, opened by libtpsinfer; the image is freed once open. The
 * image is this process's own output of a moment ago, not input to distrust, so it is opened
 * unprobed. The probe forks the whole process (docs/reliability.md), which in `tpsc eval`
 * under MPI also holds Open MPI's and OpenMP's threads; once, under ASan with two ranks, that
 * child did not finish within the 30 s bound and the model was refused as corrupt (a lock
 * another thread held at the fork would do that). The checkpoint the model came from was
 * probed when it was read. */
static tpsc_status open_image(const vit_model *m, const tpsc_checkpoint *ck, const char *name,
                              const tps_open_options *opt, tps_model **out) {
    *out = NULL;
    void *image = NULL;
    size_t bytes = 0;
    TPSC_TRY(chan_save_inference_image(m, ck, name, &image, &bytes));
    tps_open_options own = opt ? *opt : (tps_open_options){0};
    own.unprobed = 1;
    const tps_status ts = tps_model_open_memory(image, bytes, name, &own, out);
    tpsc_free(image);
    if (ts == TPS_ERR_UNSUPPORTED || ts == TPS_ERR_ARG) return tpsc_fail(TPSC_ERR_ARG, "libtpsinfer: %s", tps_last_error());
    if (ts != TPS_OK) return tpsc_fail(TPSC_ERR_INTERNAL, "libtpsinfer: %s", tps_last_error());
    return TPSC_OK;
}

tpsc_status tpsc_export_open(const tpsc_export *x, const tps_open_options *opt, tps_model **out) {
    const tpsc_checkpoint ck = checkpoint_of(x);
    return open_image(&x->model, &ck, "the exported model", opt, out);
}

tpsc_status tpsc_export_open_model(const vit_model *m, const tps_open_options *opt, tps_model **out) {
    const tpsc_checkpoint ck = {.format = TPSC_FORMAT_INFERENCE, .vit = &m->cfg, .tps = &m->tps, .params = &m->params};
    return open_image(m, &ck, "the model in memory", opt, out);
}

void tpsc_export_free(tpsc_export *x) {
    vit_model_free(&x->model);
    tpsc_free(x->recipe_text);
    tpsc_checkpoint_free_names(x->class_names, x->n_class_names);
    memset(x, 0, sizeof *x);
}

tpsc_status tpsc_open_for_inference(const char *path, const tps_open_options *opt, tps_model **out) {
    *out = NULL;
    tpsc_checkpoint_info info;
    const bool training = tpsc_checkpoint_read_config(path, NULL, NULL, &info) == TPSC_OK &&
                          strcmp(info.format, TPSC_FORMAT_CHECKPOINT) == 0;
    if (!training) { /* an inference file, or something libtpsinfer explains best */
        const tps_status ts = tps_model_open_ex(path, opt, out);
        if (ts == TPS_OK) return TPSC_OK;
        return tpsc_fail(ts == TPS_ERR_IO ? TPSC_ERR_IO : ts == TPS_ERR_UNSUPPORTED || ts == TPS_ERR_ARG ? TPSC_ERR_ARG : TPSC_ERR_FORMAT,
                         "%s", tps_last_error());
    }
    tpsc_export x;
    TPSC_TRY(tpsc_export_load(&x, path, true));
    tpsc_status st = tpsc_export_open(&x, opt, out);
    tpsc_export_free(&x);
    if (st != TPSC_OK) tpsc_error_context("%s: ", path);
    return st;
}
