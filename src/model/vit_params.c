/* Declaring and initialising the parameters of a ViT/DeiT, with timm's names. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/model/vit.h"
#include "src/util/alloc.h"

static int declare(ag_params *p, const char *name, int ndim, size_t a, size_t b, size_t c, size_t d) {
    size_t shape[4] = {a, b, c, d};
    return ag_params_add(p, name, ndim, shape);
}

#define DECLARE_OR_FAIL(dst, ...)            \
    do {                                     \
        (dst) = declare(__VA_ARGS__);        \
        if ((dst) < 0) return TPSC_ERR_ARG;  \
    } while (0)

tpsc_status vit_model_create(vit_model *m, const vit_config *cfg, const tok_config *tps) {
    memset(m, 0, sizeof *m);
    TPSC_TRY(vit_config_validate(cfg));
    m->cfg = *cfg;
    if (tps) {
        m->tps = *tps;
        TPSC_TRY(tok_config_validate(tps, (int)cfg->depth));
    }
    const size_t D = cfg->embed_dim / cfg->num_heads, F = (size_t)lroundf((float)cfg->embed_dim * cfg->mlp_ratio);
    TPSC_TRY(chan_config_validate(&m->tps.chan, (int)cfg->depth, D, F));
    ag_params *p = &m->params;
    ag_params_init(p);
    const size_t C = cfg->embed_dim, P = cfg->patch_size, Cin = cfg->in_chans;
    const size_t hidden = (size_t)lroundf((float)C * cfg->mlp_ratio), N = vit_num_patches(cfg);

    DECLARE_OR_FAIL(m->cls_token, p, "cls_token", 3, 1, 1, C, 0);
    DECLARE_OR_FAIL(m->pos_embed, p, "pos_embed", 3, 1, N + 1, C, 0);
    DECLARE_OR_FAIL(m->patch_w, p, "patch_embed.proj.weight", 4, C, Cin, P, P);
    DECLARE_OR_FAIL(m->patch_b, p, "patch_embed.proj.bias", 1, C, 0, 0, 0);
    m->blocks = tpsc_calloc(cfg->depth, sizeof *m->blocks, "block parameter table");
    m->gates = tpsc_calloc(cfg->depth, sizeof *m->gates, "channel gate table");
    if (!m->blocks || !m->gates) return TPSC_ERR_NOMEM;
    char name[AG_PARAM_NAME_MAX];
    for (size_t i = 0; i < cfg->depth; i++) {
        vit_block *b = &m->blocks[i];
#define BLOCK_PARAM(field, suffix, ndim, d0, d1)                      \
        snprintf(name, sizeof name, "blocks.%zu.%s", i, suffix);      \
        DECLARE_OR_FAIL(b->field, p, name, ndim, d0, d1, 0, 0)
        BLOCK_PARAM(norm1_w, "norm1.weight", 1, C, 0);
        BLOCK_PARAM(norm1_b, "norm1.bias", 1, C, 0);
        BLOCK_PARAM(qkv_w, "attn.qkv.weight", 2, 3 * C, C);
        BLOCK_PARAM(qkv_b, "attn.qkv.bias", 1, 3 * C, 0);
        BLOCK_PARAM(proj_w, "attn.proj.weight", 2, C, C);
        BLOCK_PARAM(proj_b, "attn.proj.bias", 1, C, 0);
        BLOCK_PARAM(norm2_w, "norm2.weight", 1, C, 0);
        BLOCK_PARAM(norm2_b, "norm2.bias", 1, C, 0);
        BLOCK_PARAM(fc1_w, "mlp.fc1.weight", 2, hidden, C);
        BLOCK_PARAM(fc1_b, "mlp.fc1.bias", 1, hidden, 0);
        BLOCK_PARAM(fc2_w, "mlp.fc2.weight", 2, C, hidden);
        BLOCK_PARAM(fc2_b, "mlp.fc2.bias", 1, C, 0);
#undef BLOCK_PARAM
        TPSC_TRY(chan_gates_declare(&m->gates[i], p, &m->tps.chan, (int)i, D, F));
    }
    DECLARE_OR_FAIL(m->norm_w, p, "norm.weight", 1, C, 0, 0, 0);
    DECLARE_OR_FAIL(m->norm_b, p, "norm.bias", 1, C, 0, 0, 0);
    DECLARE_OR_FAIL(m->head_w, p, "head.weight", 2, cfg->num_classes, C, 0, 0);
    DECLARE_OR_FAIL(m->head_b, p, "head.bias", 1, cfg->num_classes, 0, 0, 0);
    if (tok_method_has_predictor(m->tps.method))
        for (int s = 0; s < m->tps.n_stages; s++) TPSC_TRY(tok_predictor_declare(&m->pred[s], p, s, C));
    return ag_params_finalise(p);
}

void vit_model_free(vit_model *m) {
    ag_params_free(&m->params);
    tpsc_free(m->blocks);
    tpsc_free(m->gates);
    memset(m, 0, sizeof *m);
}

static void fill_trunc_normal(ag_params *p, int idx, float std, tpsc_rng *rng) {
    ag_param *it = &p->items[idx];
    for (size_t i = 0; i < it->numel; i++) it->t.data[i] = tpsc_rng_trunc_normal(rng, 0.0f, std, -2.0f, 2.0f);
}

static void fill_const(ag_params *p, int idx, float v) {
    ag_param *it = &p->items[idx];
    for (size_t i = 0; i < it->numel; i++) it->t.data[i] = v;
}

static void fill_uniform(ag_params *p, int idx, float bound, tpsc_rng *rng) {
    ag_param *it = &p->items[idx];
    for (size_t i = 0; i < it->numel; i++) it->t.data[i] = (2.0f * tpsc_rng_uniform(rng) - 1.0f) * bound;
}

void vit_model_init(vit_model *m, tpsc_rng *rng) {
    ag_params *p = &m->params;
    const vit_config *c = &m->cfg;
    /* Conv2d default (kaiming_uniform a=sqrt(5)): bound 1/sqrt(fan_in) for weight and bias. */
    float bound = 1.0f / sqrtf((float)(c->in_chans * c->patch_size * c->patch_size));
    fill_uniform(p, m->patch_w, bound, rng);
    fill_uniform(p, m->patch_b, bound, rng);
    fill_trunc_normal(p, m->pos_embed, 0.02f, rng);
    fill_trunc_normal(p, m->cls_token, 0.02f, rng);
    for (size_t i = 0; i < c->depth; i++) {
        vit_block *b = &m->blocks[i];
        fill_const(p, b->norm1_w, 1.0f);
        fill_const(p, b->norm1_b, 0.0f);
        fill_const(p, b->norm2_w, 1.0f);
        fill_const(p, b->norm2_b, 0.0f);
        int weights[] = {b->qkv_w, b->proj_w, b->fc1_w, b->fc2_w};
        int biases[] = {b->qkv_b, b->proj_b, b->fc1_b, b->fc2_b};
        for (int k = 0; k < 4; k++) {
            fill_trunc_normal(p, weights[k], 0.02f, rng);
            fill_const(p, biases[k], 0.0f);
        }
        chan_gates_init(&m->gates[i], p, &m->tps.chan);
    }
    fill_const(p, m->norm_w, 1.0f);
    fill_const(p, m->norm_b, 0.0f);
    fill_trunc_normal(p, m->head_w, 0.02f, rng);
    fill_const(p, m->head_b, 0.0f);
    if (tok_method_has_predictor(m->tps.method))
        for (int s = 0; s < m->tps.n_stages; s++) tok_predictor_init(&m->pred[s], p, rng);
}

size_t vit_model_num_params(const vit_model *m, bool backbone_only) {
    size_t n = 0;
    for (int i = 0; i < m->params.count; i++) {
        if (backbone_only && strncmp(m->params.items[i].name, "score_predictor.", 16) == 0) continue;
        n += m->params.items[i].numel;
    }
    return n;
}
