/* The inference forward, stage by stage, for one image, recording kept patches and hosts.
 * Mirrors src/model/vit_forward.c (VIT_INFER); letters: N patches, n current spatial tokens,
 * k kept, C channels. */
#include "src/viz/token_map.h"

#include <math.h>
#include <string.h>

#include "autograd/ops.h"

static ag_tensor *param(vit_model *m, int idx) { return ag_param_tensor(&m->params, idx); }

/* x [1,1+n,C] -> x + proj(attention(qkv(norm1(x)))) */
static ag_tensor *attention_residual(ag_ctx *ctx, vit_model *m, const vit_block *b, ag_tensor *x, ag_tensor **cls_attn) {
    ag_tensor *h = ag_layernorm(ctx, x, param(m, b->norm1_w), param(m, b->norm1_b), m->cfg.ln_eps);
    h = ag_linear(ctx, h, param(m, b->qkv_w), param(m, b->qkv_b));
    h = ag_attention(ctx, h, m->cfg.num_heads, NULL, cls_attn);
    h = ag_linear(ctx, h, param(m, b->proj_w), param(m, b->proj_b));
    return ag_add(ctx, x, h);
}

/* x [1,1+n,C] -> x + fc2(gelu(fc1(norm2(x)))) */
static ag_tensor *mlp_residual(ag_ctx *ctx, vit_model *m, const vit_block *b, ag_tensor *x) {
    ag_tensor *h = ag_layernorm(ctx, x, param(m, b->norm2_w), param(m, b->norm2_b), m->cfg.ln_eps);
    h = ag_gelu(ctx, ag_linear(ctx, h, param(m, b->fc1_w), param(m, b->fc1_b)));
    h = ag_linear(ctx, h, param(m, b->fc2_w), param(m, b->fc2_b));
    return ag_add(ctx, x, h);
}

/* image [1,Cin,H,W] -> [1,1+N,C] */
static ag_tensor *embed(ag_ctx *ctx, vit_model *m, ag_tensor *image) {
    const vit_config *c = &m->cfg;
    ag_tensor *patches = ag_patchify(ctx, image, c->patch_size);
    size_t w_shape[2] = {c->embed_dim, c->in_chans * c->patch_size * c->patch_size};
    ag_tensor *x = ag_linear(ctx, patches, ag_reshape(ctx, param(m, m->patch_w), 2, w_shape), param(m, m->patch_b));
    ag_tensor *parts[2] = {ag_expand0(ctx, param(m, m->cls_token), 1), x};
    return ag_add(ctx, ag_concat(ctx, 2, parts, 1), param(m, m->pos_embed));
}

/* Cosine argmax over the kept tokens for every token of x's n spatial tokens not in kept_pos;
 * writes host[orig[i]] = orig[kept_pos[best]] (or FUSED when that host has no patch). */
static void record_hosts(const ag_tensor *x, const int32_t *orig, const int32_t *kept_pos, size_t k, int32_t *host) {
    const size_t n = x->shape[1] - 1, C = x->shape[2];
    const float *tok = x->data + C; /* skip cls */
    bool is_kept[TPSC_VIZ_MAX_PATCHES + 1] = {false};
    for (size_t j = 0; j < k; j++) is_kept[kept_pos[j]] = true;
    for (size_t i = 0; i < n; i++) {
        if (is_kept[i] || orig[i] < 0) continue;
        const float *xi = tok + i * C;
        double ni = 0;
        for (size_t c = 0; c < C; c++) ni += (double)xi[c] * xi[c];
        ni = sqrt(ni) + 1e-6;
        double best = -INFINITY;
        int32_t best_j = -1;
        for (size_t j = 0; j < k; j++) {
            const float *xj = tok + (size_t)kept_pos[j] * C;
            double dot = 0, nj = 0;
            for (size_t c = 0; c < C; c++) {
                dot += (double)xi[c] * xj[c];
                nj += (double)xj[c] * xj[c];
            }
            const double cosine = dot / (ni * (sqrt(nj) + 1e-6));
            if (cosine > best) best = cosine, best_j = (int32_t)j;
        }
        int32_t h = best_j >= 0 ? orig[kept_pos[best_j]] : -1;
        host[orig[i]] = h >= 0 ? h : TPSC_VIZ_FUSED;
    }
}

/* orig (n entries) -> the k kept ones, in kept order */
static void compose(int32_t *orig, size_t n, const int32_t *kept_pos, size_t k) {
    int32_t tmp[TPSC_VIZ_MAX_PATCHES + 1];
    memcpy(tmp, orig, n * sizeof *tmp);
    for (size_t j = 0; j < k; j++) orig[j] = tmp[kept_pos[j]];
}

static void record_stage(tpsc_token_map *map, int s, const int32_t *orig, size_t k) {
    map->kept_count[s] = k;
    memset(map->alive[s], 0, sizeof map->alive[s]);
    for (size_t j = 0; j < k; j++) {
        map->kept_orig[s][j] = orig[j];
        if (orig[j] >= 0) map->alive[s][orig[j]] = 1;
    }
}

int tpsc_token_map_panels(const vit_model *m) {
    if (m->tps.method == TOK_NONE) return 0;
    if (m->tps.method == TOK_TOME)
        return m->cfg.depth < TPSC_VIZ_TOME_PANELS ? (int)m->cfg.depth : TPSC_VIZ_TOME_PANELS;
    return m->tps.n_stages;
}

tpsc_status tpsc_token_map_compute(vit_model *m, ag_ctx *ctx, const float *image_chw, const size_t *keep_override,
                                   tpsc_token_map *map) {
    const vit_config *c = &m->cfg;
    const tok_config *tps = &m->tps;
    const size_t N = vit_num_patches(c);
    if (N > TPSC_VIZ_MAX_PATCHES)
        return tpsc_fail(TPSC_ERR_ARG, "visualize: %zu patches, more than the %d a token map holds", N, TPSC_VIZ_MAX_PATCHES);
    if (c->num_classes > TPSC_VIZ_MAX_CLASSES)
        return tpsc_fail(TPSC_ERR_ARG, "visualize: %zu classes, more than %d", c->num_classes, TPSC_VIZ_MAX_CLASSES);
    if (tok_method_merges(tps->method)) return tpsc_merge_map_compute(m, ctx, image_chw, map);
    memset(map, 0, sizeof *map);
    map->method = tps->method;
    map->n_stages = tps->method == TOK_NONE ? 0 : tps->n_stages;
    map->n_patches = N;
    map->grid = c->img_size / c->patch_size;
    map->num_classes = c->num_classes;
    for (int s = 0; s < TOK_MAX_STAGES; s++)
        for (size_t j = 0; j < TPSC_VIZ_MAX_PATCHES; j++) map->host[s][j] = TPSC_VIZ_NO_HOST;

    ag_ctx_reset(ctx);
    ag_set_grad_enabled(ctx, false);
    size_t shape[4] = {1, c->in_chans, c->img_size, c->img_size};
    ag_tensor *x = embed(ctx, m, ag_wrap(ctx, (float *)image_chw, NULL, 4, shape, false));
    const bool predictor = tok_method_has_predictor(tps->method);
    const bool squeezes = tok_method_squeezes(tps->method);
    int32_t orig[TPSC_VIZ_MAX_PATCHES + 1], kept_pos[TPSC_VIZ_MAX_PATCHES + 1];
    for (size_t j = 0; j < N; j++) orig[j] = (int32_t)j;
    size_t n = N;
    int s = 0;
    for (size_t i = 0; i < c->depth && x; i++) {
        const vit_block *blk = &m->blocks[i];
        const bool stage_here = s < map->n_stages && tps->prune_loc[s] == (int)i;
        if (stage_here && predictor) {
            size_t k = keep_override ? keep_override[s] : tok_keep_count(tps, s, N);
            if (k < 1 || k > n) return tpsc_fail(TPSC_ERR_ARG, "visualize: stage %d cannot keep %zu of %zu tokens", s, k, n);
            ag_tensor *before = x;
            x = tok_infer_stage(ctx, tps, &m->pred[s], &m->params, x, k, kept_pos);
            if (!x) break;
            if (squeezes) record_hosts(before, orig, kept_pos, k, map->host[s]);
            compose(orig, n, kept_pos, k);
            record_stage(map, s, orig, k);
            n = k;
            s++;
        } else if (stage_here) {
            /* evit / etps: inside the block, after the attention residual, before the MLP */
            ag_tensor *cls_attn = NULL;
            x = attention_residual(ctx, m, blk, x, &cls_attn);
            if (!x) break;
            const size_t n_cur = x->shape[1] - 1;
            size_t k = keep_override ? keep_override[s] : tok_evit_keep_count(tps, s, n_cur);
            if (k < 1 || k > n_cur)
                return tpsc_fail(TPSC_ERR_ARG, "visualize: stage %d cannot keep %zu of %zu tokens", s, k, n_cur);
            ag_tensor *before = x;
            x = tok_evit_stage(ctx, tps, x, cls_attn, k, kept_pos);
            if (!x) break;
            if (squeezes) {
                record_hosts(before, orig, kept_pos, k, map->host[s]);
            } else if (!tps->evit_drop_pruned) { /* dropped ones stay TPSC_VIZ_NO_HOST */
                bool is_kept[TPSC_VIZ_MAX_PATCHES + 1] = {false};
                for (size_t j = 0; j < k; j++) is_kept[kept_pos[j]] = true;
                for (size_t j = 0; j < n_cur; j++)
                    if (!is_kept[j] && orig[j] >= 0) map->host[s][orig[j]] = TPSC_VIZ_FUSED;
            }
            compose(orig, n_cur, kept_pos, k);
            record_stage(map, s, orig, k);
            n = x->shape[1] - 1; /* evit: k kept + the fused token, which has no patch */
            for (size_t j = k; j < n; j++) orig[j] = -1;
            s++;
            x = mlp_residual(ctx, m, blk, x);
            continue;
        }
        x = attention_residual(ctx, m, blk, x, NULL);
        x = mlp_residual(ctx, m, blk, x);
    }
    if (!x) return ag_ctx_status(ctx);
    /* the head reads the cls token only: norm, then the linear classifier */
    x = ag_layernorm(ctx, x, param(m, m->norm_w), param(m, m->norm_b), c->ln_eps);
    ag_tensor *cls = ag_reshape(ctx, ag_slice(ctx, x, 1, 0, 1), 2, (size_t[]){1, c->embed_dim});
    ag_tensor *logits = ag_linear(ctx, cls, param(m, m->head_w), param(m, m->head_b));
    if (!logits) return ag_ctx_status(ctx);
    memcpy(map->logits, logits->data, c->num_classes * sizeof(float));
    return TPSC_OK;
}
