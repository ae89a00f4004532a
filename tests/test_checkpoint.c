/* Checkpoint format: bit-exact round trip, every refused input (with the file and tensor named
 * in the message), partial loads, the h5py-compatible layout, and crash safety of the write.
 * Exact comparisons throughout: a checkpoint must give back the very bits it was given. */
#include <criterion/criterion.h>

#include <dirent.h>
#include <fcntl.h>
#include <hdf5.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/io/atomic.h"
#include "src/io/checkpoint.h"
#include "src/io/h5util.h"
#include "src/util/alloc.h"
#include "src/util/rng.h"
#include "support/files.h"

/* ---- fixtures ------------------------------------------------------------------------- */

/* A miniature DeiT with C=8: timm / official TPS names, PyTorch shapes (Linear weight [out,in]). */
typedef struct spec {
    const char *name;
    int ndim;
    size_t shape[4];
} spec;

static const spec TINY[] = {
    {"cls_token", 3, {1, 1, 8}},
    {"pos_embed", 3, {1, 5, 8}},
    {"patch_embed.proj.weight", 4, {8, 3, 2, 2}},
    {"patch_embed.proj.bias", 1, {8}},
    {"blocks.0.attn.qkv.weight", 2, {24, 8}},
    {"blocks.0.attn.qkv.bias", 1, {24}},
    {"head.weight", 2, {3, 8}},
    {"head.bias", 1, {3}},
    {"score_predictor.0.in_conv.0.weight", 1, {8}},
    {"score_predictor.0.in_conv.1.weight", 2, {8, 8}},
};
#define N_TINY (int)(sizeof TINY / sizeof TINY[0])

static char dir[64];
static char path[128];

static void make_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/tpsc-ckpt-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/run.h5", dir);
}

static void remove_dir(void) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char full[512];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        snprintf(full, sizeof full, "%s/%s", dir, e->d_name);
        unlink(full);
    }
    closedir(d);
    rmdir(dir);
}

TestSuite(checkpoint, .init = make_dir, .fini = remove_dir);

/* Declares TINY minus `skip` (may be NULL), optionally overriding one shape, and fills the
 * parameters with N(0,1) from `seed` (0 leaves them zero). */
static void declare(ag_params *p, const char *skip, const char *reshape, const size_t *new_shape, uint64_t seed) {
    ag_params_init(p);
    for (int i = 0; i < N_TINY; i++) {
        if (skip && strcmp(TINY[i].name, skip) == 0) continue;
        const size_t *shape = reshape && strcmp(TINY[i].name, reshape) == 0 ? new_shape : TINY[i].shape;
        cr_assert_geq(ag_params_add(p, TINY[i].name, TINY[i].ndim, shape), 0, "%s", tpsc_last_error());
    }
    cr_assert_eq(ag_params_finalise(p), TPSC_OK);
    if (!seed) return;
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (int i = 0; i < p->count; i++)
        for (size_t j = 0; j < p->items[i].numel; j++) p->data[p->items[i].offset + j] = tpsc_rng_normal(&rng);
}

static vit_config tiny_vit(void) {
    vit_config v;
    memset(&v, 0, sizeof v);
    snprintf(v.arch, sizeof v.arch, "custom");
    v.img_size = 4, v.patch_size = 2, v.in_chans = 3, v.embed_dim = 8;
    v.depth = 1, v.num_heads = 2, v.num_classes = 3, v.mlp_ratio = 4.0f, v.ln_eps = 1e-6f;
    return v;
}

static tok_config tiny_tps(void) {
    tok_config t;
    memset(&t, 0, sizeof t);
    t.method = TOK_DTPS;
    t.n_stages = 3;
    t.prune_loc[0] = 3, t.prune_loc[1] = 6, t.prune_loc[2] = 9;
    t.keep_frac[0] = 0.7f, t.keep_frac[1] = 0.49f, t.keep_frac[2] = 0.343f;
    t.squeeze_temp = 1.0f;
    return t;
}

/* Saves only the model (plus config), as a converted timm file would hold. */
static void save_model_only(const char *to, const ag_params *p) {
    vit_config v = tiny_vit();
    tpsc_checkpoint ck = {.vit = &v, .params = p};
    cr_assert_eq(tpsc_checkpoint_save(to, &ck), TPSC_OK, "%s", tpsc_last_error());
}

/* Bitwise equality of every parameter's values in two blocks laid out like p (padding between
 * parameters is not part of any tensor and is not saved). */
static void assert_same_tensors(const ag_params *p, const float *a, const float *b) {
    for (int i = 0; i < p->count; i++) {
        const ag_param *it = &p->items[i];
        cr_assert_eq(memcmp(a + it->offset, b + it->offset, it->numel * sizeof(float)), 0, "%s differs", it->name);
    }
}

static void assert_message_has(const char *needle) {
    cr_assert(strstr(tpsc_last_error(), needle) != NULL, "message '%s' lacks '%s'", tpsc_last_error(), needle);
}

/* A model-only checkpoint at path (TINY, weights from seed 6; p keeps them) whose root
 * attribute `name` is then rewritten, to forge a bad file: to the string `str`, or when str is
 * NULL to the integer `i64`. */
static void save_forged(ag_params *p, const char *name, const char *str, int64_t i64) {
    declare(p, NULL, NULL, NULL, 6);
    save_model_only(path, p);
    tpsc_h5 f = {.id = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT)};
    cr_assert_geq(f.id, 0);
    snprintf(f.name, sizeof f.name, "%s", path);
    tpsc_status st = str ? tpsc_h5_write_attr_str(&f, "/", name, str) : tpsc_h5_write_attr_i64(&f, "/", name, i64);
    cr_assert_eq(st, TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_h5_close(&f), TPSC_OK);
}

/* Saves `saved` model-only and loads it into `model`: refused with `want`, the message naming
 * the file and `needle`. */
static void expect_load_refused(const ag_params *saved, ag_params *model, tpsc_status want, const char *needle) {
    save_model_only(path, saved);
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", model, NULL, NULL), want);
    assert_message_has(path);
    assert_message_has(needle);
}

static int count_temporaries(void) {
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) n += strstr(e->d_name, ".tmp-") != NULL;
    closedir(d);
    return n;
}

/* ---- round trip ------------------------------------------------------------------------ */

Test(checkpoint, round_trip_is_bit_identical) {
    ag_params p, q;
    declare(&p, NULL, NULL, NULL, 1);
    declare(&q, NULL, NULL, NULL, 0);
    float *m = tpsc_aligned_alloc(p.total * sizeof(float), "m"), *v = tpsc_aligned_alloc(p.total * sizeof(float), "v");
    float *ema = tpsc_aligned_alloc(p.total * sizeof(float), "ema");
    for (size_t i = 0; i < p.total; i++) m[i] = p.data[i] * 0.5f, v[i] = p.data[i] * p.data[i], ema[i] = -p.data[i];
    /* Extreme values must survive too. */
    m[0] = 1e-40f, v[1] = 3.4e38f;
    tpsc_rng r0, r1;
    tpsc_rng_seed(&r0, 7);
    tpsc_rng_seed(&r1, 8);
    uint64_t rng[8];
    memcpy(rng, r0.s, 32);
    memcpy(rng + 4, r1.s, 32);
    int64_t loader[3] = {2, 4096, -1};
    const char *classes[] = {"tench", "goldfish", "great white shark"};
    const char *recipe = "[model]\narch = deit_small_patch16_224\n\n[tps]\nmethod = dtps # é\n";
    vit_config vit = tiny_vit();
    tok_config tps = tiny_tps();
    int64_t param_step[N_TINY];
    for (int i = 0; i < N_TINY; i++) param_step[i] = 1234 - 100 * (i % 3);
    tpsc_checkpoint ck = {.vit = &vit, .tps = &tps, .params = &p, .opt_m = m, .opt_v = v, .opt_step = 1234,
                          .opt_param_step = param_step,
                          .opt_name = "adamw", .ema = ema, .rng_states = rng, .n_rng = 2, .loader_pos = loader,
                          .n_loader_pos = 3, .epoch = 5, .step = 98765, .best_top1 = 71.25f,
                          .recipe_text = recipe, .class_names = classes, .n_class_names = 3};
    cr_assert_eq(tpsc_checkpoint_save(path, &ck), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(count_temporaries(), 0);

    vit_config vit2;
    tok_config tps2;
    tpsc_checkpoint_info info;
    cr_assert_eq(tpsc_checkpoint_read_config(path, &vit2, &tps2, &info), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(vit2.arch, "custom");
    cr_assert_eq(vit2.img_size, 4);
    cr_assert_eq(vit2.patch_size, 2);
    cr_assert_eq(vit2.in_chans, 3);
    cr_assert_eq(vit2.embed_dim, 8);
    cr_assert_eq(vit2.depth, 1);
    cr_assert_eq(vit2.num_heads, 2);
    cr_assert_eq(vit2.num_classes, 3);
    cr_assert_eq(memcmp(&vit2.mlp_ratio, &vit.mlp_ratio, sizeof(float)), 0);
    cr_assert_eq(memcmp(&vit2.ln_eps, &vit.ln_eps, sizeof(float)), 0);
    cr_assert_eq(tps2.method, TOK_DTPS);
    cr_assert_eq(tps2.n_stages, 3);
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(tps2.prune_loc[s], tps.prune_loc[s]);
        cr_assert_eq(memcmp(&tps2.keep_frac[s], &tps.keep_frac[s], sizeof(float)), 0);
    }
    cr_assert_eq(tps2.squeeze_temp, 1.0f);
    cr_assert_str_eq(info.format, TPSC_FORMAT_CHECKPOINT);
    cr_assert_eq(info.format_version, TPSC_CHECKPOINT_VERSION);
    cr_assert(info.has_optimizer && info.has_ema && info.has_state);
    cr_assert_gt(strlen(info.git_describe), 0);

    tpsc_load_report rep;
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &q, NULL, &rep), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(rep.n_loaded, N_TINY);
    cr_assert_eq(rep.n_missing + rep.n_ignored, 0);
    tpsc_load_report_free(&rep);
    assert_same_tensors(&p, q.data, p.data);

    float *m2 = tpsc_aligned_alloc(p.total * sizeof(float), "m2"), *v2 = tpsc_aligned_alloc(p.total * sizeof(float), "v2");
    float *ema2 = tpsc_aligned_alloc(p.total * sizeof(float), "ema2");
    memset(m2, 0, p.total * sizeof(float));
    memset(v2, 0, p.total * sizeof(float));
    memset(ema2, 0, p.total * sizeof(float));
    uint64_t rng2[12] = {0};
    int64_t loader2[8] = {0};
    int64_t param_step2[N_TINY] = {0};
    tpsc_checkpoint_state st = {.opt_m = m2, .opt_v = v2, .ema = ema2, .rng_states = rng2, .rng_cap = 3,
                                .loader_pos = loader2, .loader_cap = 8, .opt_param_step = param_step2};
    cr_assert_eq(tpsc_checkpoint_load_state(path, &q, &st), TPSC_OK, "%s", tpsc_last_error());
    assert_same_tensors(&p, m2, m);
    assert_same_tensors(&p, v2, v);
    assert_same_tensors(&p, ema2, ema);
    cr_assert_str_eq(st.opt_name, "adamw");
    cr_assert_eq(st.opt_step, 1234);
    cr_assert(st.has_opt_v);
    cr_assert(st.has_opt_param_step);
    cr_assert_eq(memcmp(param_step2, param_step, sizeof param_step), 0);
    cr_assert_eq(st.n_rng, 2);
    cr_assert_eq(memcmp(rng2, rng, sizeof rng), 0);
    cr_assert_eq(st.n_loader_pos, 3);
    cr_assert_eq(memcmp(loader2, loader, sizeof loader), 0);
    cr_assert_eq(st.epoch, 5);
    cr_assert_eq(st.step, 98765);
    cr_assert_eq(memcmp(&st.best_top1, &ck.best_top1, sizeof(float)), 0);

    char *text;
    cr_assert_eq(tpsc_checkpoint_read_recipe(path, &text), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(text, recipe);
    tpsc_free(text);
    char **names;
    int n;
    cr_assert_eq(tpsc_checkpoint_read_class_names(path, &names, &n), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(n, 3);
    for (int i = 0; i < 3; i++) cr_assert_str_eq(names[i], classes[i]);
    tpsc_checkpoint_free_names(names, n);

    tpsc_free(m), tpsc_free(v), tpsc_free(ema), tpsc_free(m2), tpsc_free(v2), tpsc_free(ema2);
    ag_params_free(&p);
    ag_params_free(&q);
}

Test(checkpoint, model_only_has_no_state_and_empty_lists) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 2);
    save_model_only(path, &p);
    tok_config t;
    tpsc_checkpoint_info info;
    cr_assert_eq(tpsc_checkpoint_read_config(path, NULL, &t, &info), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(t.method, TOK_NONE);
    cr_assert_eq(t.n_stages, 0);
    cr_assert(!info.has_optimizer && !info.has_ema && info.has_state);
    char **names = (char **)1;
    int n = -1;
    cr_assert_eq(tpsc_checkpoint_read_class_names(path, &names, &n), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(n, 0);
    cr_assert_null(names);
    /* Asking for optimizer state that was never saved is an error, not zeros. */
    float *m = tpsc_aligned_alloc(p.total * sizeof(float), "m");
    tpsc_checkpoint_state st = {.opt_m = m};
    cr_assert_eq(tpsc_checkpoint_load_state(path, &p, &st), TPSC_ERR_MISSING);
    assert_message_has(path);
    assert_message_has("/optimizer");
    tpsc_free(m);
    ag_params_free(&p);
}

/* Saves p at path with SGD state: momentum buffer opt_m (NULL: none) at step `step`. */
static void save_sgd(ag_params *p, float *opt_m, int64_t step) {
    vit_config vit = tiny_vit();
    tpsc_checkpoint ck = {.vit = &vit, .params = p, .opt_m = opt_m, .opt_name = "sgd", .opt_step = step};
    cr_assert_eq(tpsc_checkpoint_save(path, &ck), TPSC_OK, "%s", tpsc_last_error());
}

Test(checkpoint, sgd_keeps_only_momentum) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 3);
    save_sgd(&p, p.data, 9);
    float *m = tpsc_aligned_alloc(p.total * sizeof(float), "m"), *v = tpsc_aligned_alloc(p.total * sizeof(float), "v");
    memset(m, 0, p.total * sizeof(float));
    int64_t steps[N_TINY];
    tpsc_checkpoint_state st = {.opt_m = m, .opt_v = v, .opt_param_step = steps};
    cr_assert_eq(tpsc_checkpoint_load_state(path, &p, &st), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(st.opt_name, "sgd");
    cr_assert_eq(st.opt_step, 9);
    cr_assert(!st.has_opt_v);
    cr_assert(!st.has_opt_param_step, "none were saved");
    assert_same_tensors(&p, m, p.data);
    tpsc_free(m), tpsc_free(v);
    ag_params_free(&p);
}

Test(checkpoint, sgd_without_momentum_keeps_its_step) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 3);
    save_sgd(&p, NULL, 77);
    tpsc_checkpoint_state st = {0};
    cr_assert_eq(tpsc_checkpoint_load_state(path, &p, &st), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(st.opt_name, "sgd");
    cr_assert_eq(st.opt_step, 77);
    float *m = tpsc_aligned_alloc(p.total * sizeof(float), "m");
    st = (tpsc_checkpoint_state){.opt_m = m};
    cr_assert_eq(tpsc_checkpoint_load_state(path, &p, &st), TPSC_ERR_MISSING, "there is no buffer to load");
    assert_message_has("/optimizer/m");
    tpsc_free(m);
    ag_params_free(&p);
}

Test(checkpoint, inference_export_has_no_state) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 4);
    vit_config vit = tiny_vit();
    tpsc_checkpoint ck = {.format = TPSC_FORMAT_INFERENCE, .vit = &vit, .params = &p};
    cr_assert_eq(tpsc_checkpoint_save(path, &ck), TPSC_OK, "%s", tpsc_last_error());
    tpsc_checkpoint_info info;
    cr_assert_eq(tpsc_checkpoint_read_config(path, NULL, NULL, &info), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(info.format, TPSC_FORMAT_INFERENCE);
    cr_assert(!info.has_state);
    tpsc_checkpoint_state st = {0};
    cr_assert_eq(tpsc_checkpoint_load_state(path, NULL, &st), TPSC_ERR_MISSING);
    assert_message_has("/state");
    ag_params_free(&p);
}

/* ---- refused inputs -------------------------------------------------------------------- */

Test(checkpoint, missing_file) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 0);
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &p, NULL, NULL), TPSC_ERR_IO);
    assert_message_has(path);
    cr_assert_eq(tpsc_checkpoint_read_config(path, NULL, NULL, NULL), TPSC_ERR_IO);
    assert_message_has(path);
    ag_params_free(&p);
}

Test(checkpoint, text_file_named_h5) {
    FILE *fp = fopen(path, "w");
    cr_assert_not_null(fp);
    fputs("epoch,top1\n1,12.5\n2,30.0\n", fp);
    fclose(fp);
    vit_config v;
    cr_assert_eq(tpsc_checkpoint_read_config(path, &v, NULL, NULL), TPSC_ERR_FORMAT);
    assert_message_has(path);
    assert_message_has("not an HDF5 file");
}

Test(checkpoint, truncated_copy) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 5);
    save_model_only(path, &p);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_assert_eq(truncate(path, sb.st_size / 2), 0);
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &p, NULL, NULL), TPSC_ERR_FORMAT);
    assert_message_has(path);
    assert_message_has("truncated");
    ag_params_free(&p);
}

Test(checkpoint, newer_format_version_is_refused) {
    ag_params p;
    save_forged(&p, "format_version", NULL, TPSC_CHECKPOINT_VERSION + 1);
    cr_assert_eq(tpsc_checkpoint_read_config(path, NULL, NULL, NULL), TPSC_ERR_FORMAT);
    assert_message_has(path);
    assert_message_has("format_version");
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &p, NULL, NULL), TPSC_ERR_FORMAT);
    assert_message_has("format_version");
    ag_params_free(&p);
}

Test(checkpoint, wrong_format_name_is_refused) {
    ag_params p;
    save_forged(&p, "format", "keras-weights", 0);
    cr_assert_eq(tpsc_checkpoint_read_config(path, NULL, NULL, NULL), TPSC_ERR_FORMAT);
    assert_message_has(path);
    assert_message_has("keras-weights");
    ag_params_free(&p);
}

Test(checkpoint, unknown_method_is_refused) {
    ag_params p;
    save_forged(&p, "method", "bogus", 0);
    tok_config t;
    cr_assert_eq(tpsc_checkpoint_read_config(path, NULL, &t, NULL), TPSC_ERR_FORMAT);
    assert_message_has("bogus");
    ag_params_free(&p);
}

Test(checkpoint, missing_tensor) {
    ag_params saved, model;
    declare(&saved, "head.bias", NULL, NULL, 7);
    declare(&model, NULL, NULL, NULL, 0);
    expect_load_refused(&saved, &model, TPSC_ERR_MISSING, "head.bias");
    /* Checked before reading: a refused load leaves the model untouched. */
    for (size_t i = 0; i < model.total; i++) cr_assert_eq(model.data[i], 0.0f);
    ag_params_free(&saved);
    ag_params_free(&model);
}

Test(checkpoint, extra_tensor) {
    ag_params saved, model;
    declare(&saved, NULL, NULL, NULL, 8);
    declare(&model, "head.bias", NULL, NULL, 0);
    expect_load_refused(&saved, &model, TPSC_ERR_FORMAT, "head.bias");
    ag_params_free(&saved);
    ag_params_free(&model);
}

Test(checkpoint, extra_tensors_ignored_when_asked) {
    ag_params saved, model;
    declare(&saved, NULL, NULL, NULL, 8);
    declare(&model, "head.bias", NULL, NULL, 0);
    save_model_only(path, &saved);
    tpsc_load_opts opts = {.ignore_extra = true};
    tpsc_load_report rep;
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &model, &opts, &rep), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(rep.n_loaded, N_TINY - 1);
    cr_assert_eq(rep.n_ignored, 1);
    cr_assert_str_eq(rep.ignored[0], "head.bias");
    int i = ag_params_find(&model, "head.weight"), j = ag_params_find(&saved, "head.weight");
    cr_assert_eq(memcmp(model.items[i].t.data, saved.items[j].t.data, 3 * 8 * sizeof(float)), 0);
    tpsc_load_report_free(&rep);
    ag_params_free(&saved);
    ag_params_free(&model);
}

Test(checkpoint, misshaped_tensor) {
    ag_params saved, model;
    declare(&saved, NULL, NULL, NULL, 9);
    declare(&model, NULL, "head.weight", (size_t[]){4, 8}, 0);
    expect_load_refused(&saved, &model, TPSC_ERR_SHAPE, "/model/head.weight has shape [3, 8], expected [4, 8]");
    ag_params_free(&saved);
    ag_params_free(&model);
}

Test(checkpoint, allowed_missing_prefix_keeps_initialisation) {
    /* Dense DeiT weights into a dTPS model: the predictors are new. */
    ag_params dense, model;
    ag_params_init(&dense);
    for (int i = 0; i < N_TINY; i++)
        if (strncmp(TINY[i].name, "score_predictor.", 16) != 0)
            cr_assert_geq(ag_params_add(&dense, TINY[i].name, TINY[i].ndim, TINY[i].shape), 0);
    cr_assert_eq(ag_params_finalise(&dense), TPSC_OK);
    for (size_t i = 0; i < dense.total; i++) dense.data[i] = (float)i;
    save_model_only(path, &dense);

    declare(&model, NULL, NULL, NULL, 0);
    int pred = ag_params_find(&model, "score_predictor.0.in_conv.1.weight");
    for (size_t j = 0; j < model.items[pred].numel; j++) model.items[pred].t.data[j] = 0.25f;

    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &model, NULL, NULL), TPSC_ERR_MISSING);
    assert_message_has("score_predictor.0.in_conv");

    const char *prefixes[] = {"score_predictor."};
    tpsc_load_opts opts = {.allow_missing_prefixes = prefixes, .n_allow_missing_prefixes = 1};
    tpsc_load_report rep;
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &model, &opts, &rep), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(rep.n_loaded, dense.count);
    cr_assert_eq(rep.n_missing, 2);
    cr_assert_str_eq(rep.missing[0], "score_predictor.0.in_conv.0.weight");
    cr_assert_str_eq(rep.missing[1], "score_predictor.0.in_conv.1.weight");
    char buf[512];
    tpsc_load_report_str(&rep, buf, sizeof buf);
    cr_assert(strstr(buf, "newly initialised: score_predictor.0.* (2 tensors)"), "%s", buf);
    for (size_t j = 0; j < model.items[pred].numel; j++) cr_assert_eq(model.items[pred].t.data[j], 0.25f);
    int hw = ag_params_find(&model, "head.weight"), dhw = ag_params_find(&dense, "head.weight");
    cr_assert_eq(memcmp(model.items[hw].t.data, dense.items[dhw].t.data, 24 * sizeof(float)), 0);
    tpsc_load_report_free(&rep);
    ag_params_free(&dense);
    ag_params_free(&model);
}

Test(checkpoint, load_report_summarises_numbered_modules) {
    /* What loading dense weights into a 3-stage dTPS model reports: one entry per module family. */
    char *missing[] = {"head_dist.weight",
                       "score_predictor.0.in_conv.0.bias", "score_predictor.0.in_conv.0.weight",
                       "score_predictor.1.in_conv.0.bias", "score_predictor.1.in_conv.0.weight",
                       "score_predictor.2.in_conv.0.bias", "score_predictor.2.in_conv.0.weight"};
    char *ignored[] = {"blocks.11.attn.qkv.weight"};
    tpsc_load_report rep = {.n_loaded = 150, .missing = missing, .n_missing = 7, .ignored = ignored, .n_ignored = 1};
    char buf[256];
    cr_assert_str_eq(tpsc_load_report_str(&rep, buf, sizeof buf),
                     "loaded 150 tensors; newly initialised: head_dist.weight, score_predictor.{0,1,2}.* (6 tensors); "
                     "ignored: blocks.11.attn.qkv.weight");
    char small[24];
    cr_assert_str_eq(tpsc_load_report_str(&rep, small, sizeof small), "loaded 150 tensors; ...");
}

/* ---- layout other tools rely on ------------------------------------------------------- */

Test(checkpoint, layout_is_h5py_compatible) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 10);
    save_model_only(path, &p);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert_geq(f, 0);
    /* The dotted name is one dataset inside /model, as h5py's f["model"]["blocks.0.attn.qkv.weight"]. */
    hid_t ds = H5Dopen2(f, "/model/blocks.0.attn.qkv.weight", H5P_DEFAULT);
    cr_assert_geq(ds, 0);
    hid_t space = H5Dget_space(ds);
    hsize_t dims[4];
    cr_assert_eq(H5Sget_simple_extent_ndims(space), 2);
    H5Sget_simple_extent_dims(space, dims, NULL);
    cr_assert_eq(dims[0], 3 * 8, "qkv weight is [3C, C] (PyTorch Linear [out, in])");
    cr_assert_eq(dims[1], 8);
    hid_t type = H5Dget_type(ds);
    cr_assert(H5Tequal(type, H5T_IEEE_F32LE) > 0);
    hid_t dcpl = H5Dget_create_plist(ds);
    cr_assert_eq(H5Pget_layout(dcpl), H5D_CONTIGUOUS);
    cr_assert_eq(H5Pget_nfilters(dcpl), 0);
    float row0[8];
    hid_t mem = H5Screate_simple(1, (hsize_t[]){8}, NULL);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, (hsize_t[]){0, 0}, NULL, (hsize_t[]){1, 8}, NULL);
    cr_assert_geq(H5Dread(ds, H5T_NATIVE_FLOAT, mem, space, H5P_DEFAULT, row0), 0);
    int qkv = ag_params_find(&p, "blocks.0.attn.qkv.weight");
    cr_assert_eq(memcmp(row0, p.items[qkv].t.data, sizeof row0), 0);
    H5Sclose(mem), H5Pclose(dcpl), H5Tclose(type), H5Sclose(space), H5Dclose(ds), H5Fclose(f);
    ag_params_free(&p);
}

/* ---- crash safety -------------------------------------------------------------------- */

static int hook_fd = -1;

static void signal_and_wait(const char *tmp, void *user) {
    (void)tmp, (void)user;
    char c = 'x';
    if (write(hook_fd, &c, 1) != 1) _exit(3);
    for (;;) pause();
}

/* Forks a writer that stops inside the save (in the hook or in `writer`), kills it with
 * SIGKILL there, and checks the previous file is byte-for-byte unchanged and still loads. */
static void kill_writer_and_check(bool mid_write);

static tpsc_status half_written(const char *tmp, const char *final_path, void *user) {
    (void)final_path, (void)user;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(4);
    if (write(fd, "\x89HDF\r\n\x1a\n garbage", 17) != 17) _exit(4);
    signal_and_wait(tmp, NULL);
    return TPSC_OK;
}

static void kill_writer_and_check(bool mid_write) {
    ag_params old, fresh;
    declare(&old, NULL, NULL, NULL, 11);
    declare(&fresh, NULL, NULL, NULL, 12);
    save_model_only(path, &old);
    size_t len_before;
    char *before = tfile_read(path, &len_before);

    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) {
        close(fds[0]);
        hook_fd = fds[1];
        if (mid_write) {
            tpsc_atomic_write(path, half_written, NULL);
        } else {
            tpsc_atomic_set_before_rename_hook(signal_and_wait, NULL);
            vit_config v = tiny_vit();
            tpsc_checkpoint ck = {.vit = &v, .params = &fresh};
            tpsc_checkpoint_save(path, &ck);
        }
        _exit(2); /* not reached: the parent kills us in the hook */
    }
    close(fds[1]);
    char c;
    cr_assert_eq(read(fds[0], &c, 1), 1, "the writer never reached the hook");
    close(fds[0]);
    cr_assert_eq(count_temporaries(), 1, "the writer should have a temporary in progress");
    kill(child, SIGKILL);
    int status;
    cr_assert_eq(waitpid(child, &status, 0), child);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);

    size_t len_after;
    char *after = tfile_read(path, &len_after);
    cr_assert_eq(len_after, len_before);
    cr_assert_eq(memcmp(after, before, len_before), 0, "the old checkpoint changed");
    ag_params back;
    declare(&back, NULL, NULL, NULL, 0);
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &back, NULL, NULL), TPSC_OK, "%s", tpsc_last_error());
    assert_same_tensors(&old, back.data, old.data);

    /* The dead writer's temporary is cleaned up by the next save, which succeeds. */
    save_model_only(path, &fresh);
    cr_assert_eq(count_temporaries(), 0);
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &back, NULL, NULL), TPSC_OK, "%s", tpsc_last_error());
    assert_same_tensors(&fresh, back.data, fresh.data);

    free(before), free(after);
    ag_params_free(&old), ag_params_free(&fresh), ag_params_free(&back);
}

Test(checkpoint, writer_killed_before_rename_leaves_old_file) { kill_writer_and_check(false); }

Test(checkpoint, writer_killed_mid_write_leaves_old_file) { kill_writer_and_check(true); }

Test(checkpoint, failed_save_reports_path_and_leaves_nothing) {
    ag_params p;
    declare(&p, NULL, NULL, NULL, 13);
    char bad[192];
    snprintf(bad, sizeof bad, "%s/no-such-dir/run.h5", dir);
    vit_config v = tiny_vit();
    tpsc_checkpoint ck = {.vit = &v, .params = &p};
    cr_assert_eq(tpsc_checkpoint_save(bad, &ck), TPSC_ERR_IO);
    assert_message_has(bad);
    cr_assert_eq(count_temporaries(), 0);
    ag_params_free(&p);
}
