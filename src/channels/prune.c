/* Physical removal of the channels the gates drop (see prune.h). */
#include <string.h>

#include "src/channels/prune.h"
#include "src/io/checkpoint.h"
#include "src/util/alloc.h"

/* The kept channel indices of block i's gate of kind k (all of them when ungated). */
static tpsc_status kept_channels(const vit_model *m, size_t i, chan_gate_kind k, size_t width, int32_t *kept, size_t *n) {
    const int g = m->gates[i].gate[k];
    *n = chan_keep_count(&m->tps.chan, (int)i, k, width);
    if (g < 0) {
        for (size_t c = 0; c < width; c++) kept[c] = (int32_t)c;
        return TPSC_OK;
    }
    if (!chan_topk_indices(m->params.items[g].t.data, width, *n, kept))
        return tpsc_fail(TPSC_ERR_ARG, "%s: cannot keep %zu of %zu channels", m->params.items[g].name, *n, width);
    return TPSC_OK;
}

/* Block i's rows (or columns) that stay: the qkv row map, the proj column map (= the v part of
 * qkv's, less 2C), and the MLP map. */
typedef struct block_maps {
    int32_t *qkv, *proj, *mlp;
    size_t n_qkv, n_proj, n_mlp;
} block_maps;

static tpsc_status block_maps_make(const vit_model *m, size_t i, int32_t *iqk, int32_t *iv, block_maps *bm) {
    const size_t C = m->cfg.embed_dim, H = m->cfg.num_heads, D = C / H;
    const size_t F = m->params.items[m->blocks[i].fc1_b].numel;
    size_t dq, dv;
    TPSC_TRY(kept_channels(m, i, CHAN_QK, D, iqk, &dq));
    TPSC_TRY(kept_channels(m, i, CHAN_V, D, iv, &dv));
    TPSC_TRY(kept_channels(m, i, CHAN_MLP, F, bm->mlp, &bm->n_mlp));
    size_t r = 0;
    for (size_t part = 0; part < 2; part++)
        for (size_t h = 0; h < H; h++)
            for (size_t j = 0; j < dq; j++) bm->qkv[r++] = (int32_t)(part * C + h * D + (size_t)iqk[j]);
    bm->n_proj = 0;
    for (size_t h = 0; h < H; h++)
        for (size_t j = 0; j < dv; j++) {
            bm->proj[bm->n_proj++] = (int32_t)(h * D + (size_t)iv[j]);
            bm->qkv[r++] = (int32_t)(2 * C + h * D + (size_t)iv[j]);
        }
    bm->n_qkv = r;
    return TPSC_OK;
}

/* dst [n, cols] <- rows idx of src [., cols]; dst [rows, n] <- columns idx of src [rows, cols_src]. */
static void take_rows(const float *src, size_t cols, const int32_t *idx, size_t n, float *dst) {
    for (size_t r = 0; r < n; r++) memcpy(dst + r * cols, src + (size_t)idx[r] * cols, cols * sizeof(float));
}
static void take_cols(const float *src, size_t rows, size_t cols_src, const int32_t *idx, size_t n, float *dst) {
    for (size_t r = 0; r < rows; r++)
        for (size_t c = 0; c < n; c++) dst[r * n + c] = src[r * cols_src + (size_t)idx[c]];
}

/* Which block tensor a parameter is, or -1. */
enum { T_QKV_W, T_QKV_B, T_PROJ_W, T_FC1_W, T_FC1_B, T_FC2_W };
static int block_tensor(const vit_block *b, int p) {
    if (p == b->qkv_w) return T_QKV_W;
    if (p == b->qkv_b) return T_QKV_B;
    if (p == b->proj_w) return T_PROJ_W;
    if (p == b->fc1_w) return T_FC1_W;
    if (p == b->fc1_b) return T_FC1_B;
    if (p == b->fc2_w) return T_FC2_W;
    return -1;
}

static bool is_gate(const vit_model *m, int p) {
    for (size_t i = 0; i < m->cfg.depth; i++)
        for (int k = 0; k < CHAN_KINDS; k++)
            if (m->gates[i].gate[k] == p) return true;
    return false;
}

tpsc_status chan_prune_params(const vit_model *m, ag_params *out, int32_t width[CHAN_KINDS][CHAN_MAX_BLOCKS]) {
    ag_params_init(out);
    const size_t depth = m->cfg.depth, C = m->cfg.embed_dim, H = m->cfg.num_heads, D = C / H;
    const size_t F = depth ? m->params.items[m->blocks[0].fc1_b].numel : 0;
    if (depth > CHAN_MAX_BLOCKS)
        return tpsc_fail(TPSC_ERR_ARG, "channel export: %zu blocks, at most %d", depth, CHAN_MAX_BLOCKS);
    block_maps *maps = tpsc_calloc(depth, sizeof *maps, "channel export maps");
    int32_t *iqk = tpsc_malloc(2 * D * sizeof(int32_t), "channel export indices"), *iv = iqk ? iqk + D : NULL;
    tpsc_status st = maps && iqk ? TPSC_OK : TPSC_ERR_NOMEM;
    for (size_t i = 0; i < depth && st == TPSC_OK; i++) {
        block_maps *bm = &maps[i];
        bm->qkv = tpsc_malloc((3 * C + C + F) * sizeof(int32_t), "channel export indices");
        if (!bm->qkv) {
            st = TPSC_ERR_NOMEM;
            break;
        }
        bm->proj = bm->qkv + 3 * C;
        bm->mlp = bm->proj + C;
        st = block_maps_make(m, i, iqk, iv, bm);
        width[CHAN_QK][i] = (int32_t)((bm->n_qkv - bm->n_proj) / (2 * H));
        width[CHAN_V][i] = (int32_t)(bm->n_proj / H);
        width[CHAN_MLP][i] = (int32_t)bm->n_mlp;
    }
    /* declare the smaller shapes, then copy */
    for (int p = 0; p < m->params.count && st == TPSC_OK; p++) {
        if (is_gate(m, p)) continue;
        const ag_param *it = &m->params.items[p];
        size_t shape[AG_MAX_DIMS];
        memcpy(shape, it->t.shape, sizeof shape);
        for (size_t i = 0; i < depth; i++) {
            const block_maps *bm = &maps[i];
            switch (block_tensor(&m->blocks[i], p)) {
            case T_QKV_W: case T_QKV_B: shape[0] = bm->n_qkv; break;
            case T_PROJ_W: shape[1] = bm->n_proj; break;
            case T_FC1_W: case T_FC1_B: shape[0] = bm->n_mlp; break;
            case T_FC2_W: shape[1] = bm->n_mlp; break;
            default: break;
            }
        }
        if (ag_params_add(out, it->name, it->t.ndim, shape) < 0) st = TPSC_ERR_ARG;
    }
    if (st == TPSC_OK) st = ag_params_finalise(out);
    for (int p = 0, q = 0; p < m->params.count && st == TPSC_OK; p++) {
        if (is_gate(m, p)) continue;
        const ag_param *it = &m->params.items[p];
        float *dst = out->items[q++].t.data;
        const float *src = it->t.data;
        int kind = -1;
        size_t i = 0;
        for (; i < depth && kind < 0; i++) kind = block_tensor(&m->blocks[i], p);
        const block_maps *bm = kind >= 0 ? &maps[i - 1] : NULL;
        switch (kind) {
        case T_QKV_W: take_rows(src, C, bm->qkv, bm->n_qkv, dst); break;
        case T_QKV_B: take_rows(src, 1, bm->qkv, bm->n_qkv, dst); break;
        case T_PROJ_W: take_cols(src, C, C, bm->proj, bm->n_proj, dst); break;
        case T_FC1_W: take_rows(src, C, bm->mlp, bm->n_mlp, dst); break;
        case T_FC1_B: take_rows(src, 1, bm->mlp, bm->n_mlp, dst); break;
        case T_FC2_W: take_cols(src, C, F, bm->mlp, bm->n_mlp, dst); break;
        default: memcpy(dst, src, it->numel * sizeof(float)); break;
        }
    }
    for (size_t i = 0; maps && i < depth; i++) tpsc_free(maps[i].qkv);
    tpsc_free(maps);
    tpsc_free(iqk);
    if (st != TPSC_OK) ag_params_free(out);
    return st;
}

/* path NULL: into memory (*image, *bytes) under the name `name` */
static tpsc_status save_inference(const char *path, const char *name, void **image, size_t *bytes, const vit_model *m,
                                  const tpsc_checkpoint *ck) {
    tpsc_checkpoint c = *ck;
    c.format = TPSC_FORMAT_INFERENCE;
    int32_t width[CHAN_KINDS][CHAN_MAX_BLOCKS];
    ag_params pruned;
    const bool gated = chan_enabled(&m->tps.chan);
    c.params = &m->params;
    if (gated) {
        TPSC_TRY(chan_prune_params(m, &pruned, width));
        c.params = &pruned;
        for (int k = 0; k < CHAN_KINDS; k++) c.chan_width[k] = width[k];
    }
    tpsc_status st = path ? tpsc_checkpoint_save(path, &c) : tpsc_checkpoint_save_image(&c, name, image, bytes);
    if (gated) ag_params_free(&pruned);
    return st;
}

tpsc_status chan_save_inference(const char *path, const vit_model *m, const tpsc_checkpoint *ck) {
    return save_inference(path, path, NULL, NULL, m, ck);
}

tpsc_status chan_save_inference_image(const vit_model *m, const tpsc_checkpoint *ck, const char *name, void **image,
                                      size_t *bytes) {
    return save_inference(NULL, name, image, bytes, m, ck);
}
