#include "support/small_model.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/io/checkpoint.h"
#include "src/util/log.h"
#include "src/util/rng.h"
#include "support/fixture.h"

vit_config sm_config(void) {
    vit_config c = {.img_size = 32, .patch_size = 4, .in_chans = 3, .embed_dim = 48, .depth = 4, .num_heads = 4,
                    .num_classes = 10, .mlp_ratio = 4.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    return c;
}

tok_config sm_tokens(tok_method method, float rho) {
    tok_config t = {.method = method, .n_stages = method == TOK_NONE ? 0 : 3, .prune_loc = {1, 2, 3},
                    .squeeze_temp = 1.0f};
    tok_config_fill_rho(&t, rho);
    return t;
}

void sm_random_weights(vit_model *m, uint64_t seed) {
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (int i = 0; i < m->params.count; i++) {
        ag_param *p = &m->params.items[i];
        const char *name = p->name;
        const bool norm = (strstr(name, "norm") && strstr(name, ".weight") && p->t.ndim == 1) ||
                          strstr(name, "in_conv.0.weight");
        const size_t fan_in = p->t.ndim >= 2 ? p->numel / p->t.shape[0] : 1;
        for (size_t j = 0; j < p->numel; j++) {
            const float z = tpsc_rng_normal(&rng);
            if (norm)
                p->t.data[j] = 1.0f + 0.1f * z;
            else if (!strcmp(name, "cls_token") || !strcmp(name, "pos_embed"))
                p->t.data[j] = 0.5f * z;
            else if (p->t.ndim == 1)
                p->t.data[j] = 0.05f * z;
            else
                p->t.data[j] = z / sqrtf((float)fan_in);
        }
    }
}

void sm_save_inference(const char *path, vit_model *m) {
    static const char *const names[10] = {"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"};
    tpsc_checkpoint ck = {.format = TPSC_FORMAT_INFERENCE, .vit = &m->cfg, .tps = &m->tps, .params = &m->params,
                          .class_names = names, .n_class_names = m->cfg.num_classes <= 10 ? (int)m->cfg.num_classes : 0};
    cr_assert_eq(tpsc_checkpoint_save(path, &ck), TPSC_OK, "saving %s: %s", path, tpsc_last_error());
}

void sm_write_random_model(const char *path, tok_method method, uint64_t seed) {
    const vit_config c = sm_config();
    const tok_config t = sm_tokens(method, 0.7f);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    sm_random_weights(&m, seed);
    sm_save_inference(path, &m);
    vit_model_free(&m);
}

float *sm_random_images(size_t B, const vit_config *c, uint64_t seed) {
    return fx_random_normal(B * c->in_chans * c->img_size * c->img_size, seed);
}

sm_run *sm_run_model(const char *path, const tps_open_options *o, const float *images, size_t B, int reps) {
    tps_model *m;
    tps_workspace *ws;
    cr_assert_eq(tps_model_open_ex(path, o, &m), TPS_OK, "%s: %s", path, tps_last_error());
    cr_assert_eq(tps_model_precision(m), o->precision);
    if (o->gemm != TPS_GEMM_AUTO)
        cr_assert_eq(tps_model_gemm(m), o->gemm, "opened with %s, runs on %s", tps_gemm_name(o->gemm),
                     tps_gemm_name(tps_model_gemm(m)));
    if (o->attention != TPS_ATTENTION_AUTO) cr_assert_eq(tps_model_attention(m), o->attention);
    tps_model_info info;
    tps_model_get_info(m, &info);
    cr_assert(B <= SM_RUN_MAX_B && (size_t)info.num_patches <= SM_RUN_MAX_N);
    cr_assert_eq(tps_workspace_create(m, B, &ws), TPS_OK, "%s", tps_last_error());
    sm_run *r = calloc(1, sizeof *r);
    cr_assert_not_null(r);
    r->K = (size_t)info.num_classes, r->depth = info.depth;
    r->logits = malloc(B * r->K * sizeof(float));
    cr_assert_not_null(r->logits);
    for (int rep = 0; rep < reps; rep++)
        cr_assert_eq(tps_run(ws, images, B, r->logits), TPS_OK, "%s", tps_last_error());
    r->n_stages = tps_num_stages(ws);
    for (int s = 0; s < r->n_stages; s++)
        for (size_t b = 0; b < B; b++) {
            const int32_t *idx;
            cr_assert_eq(tps_kept_tokens(ws, s, b, &idx, &r->k[s][b]), TPS_OK);
            memcpy(r->kept[s][b], idx, r->k[s][b] * sizeof(int32_t));
        }
    tps_workspace_free(ws);
    tps_model_close(m);
    return r;
}

void sm_run_free(sm_run *r) {
    if (!r) return;
    free(r->logits);
    free(r);
}

void sm_tmp_path(char *buf, size_t len, const char *test, const char *name) {
    snprintf(buf, len, "%s/%s_%d_%s", TPSC_BINARY_DIR, test, (int)getpid(), name);
}
