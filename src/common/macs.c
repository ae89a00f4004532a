#include "src/common/macs.h"

#include <stdbool.h>

#include "src/common/keep.h"

/* qkv, QK^T, AV and proj for a sequence of t tokens */
static double attention_macs(double t, double C) { return 4.0 * t * C * C + 2.0 * t * t * C; }
/* the same with Q = H dq and V = H dv kept channels: qkv, QK^T, AV, proj */
static double attention_macs_kept(double t, double C, double Q, double V) {
    return t * C * (2.0 * Q + V) + t * t * (Q + V) + t * V * C;
}
/* fc1 and fc2 */
static double mlp_macs(double t, double C, double F) { return 2.0 * t * C * F; }
/* PredictorLG on n tokens: C -> C, then C -> C/2 -> C/4 -> 2 (integer widths, as the code) */
static double predictor_macs(double n, size_t C) {
    const double c = (double)C, c2 = (double)(C / 2), c4 = (double)(C / 4);
    return n * (c * c + c * c2 + c2 * c4 + c4 * 2.0);
}
/* p tokens squeezed into k kept ones */
static double squeeze_macs(double p, double k, double C) { return p * k * C + p * C; }

/* A stage keeps k of the current n spatial tokens: the cost of what happens to the n - k
 * others, and (*n) the spatial tokens the following layers see. */
static double dropped_macs(method_dropped dropped, size_t k, size_t *n, double C) {
    const size_t p = *n - k;
    if (p == 0) return 0.0; /* nothing dropped: EViT fuses nothing then */
    switch (dropped) {
    case DROPPED_SQUEEZE: *n = k; return squeeze_macs((double)p, (double)k, C);
    case DROPPED_FUSE: *n = k + 1; return (double)p * C; /* the fused token */
    case DROPPED_DISCARD: break;
    }
    *n = k;
    return 0.0;
}

double macs_per_image(const macs_vit *v, const macs_tokens *t) {
    if (!v || v->patch == 0 || v->img_size < v->patch || v->embed_dim == 0) return 0.0;
    const size_t side = v->img_size / v->patch, n_patches = side * side;
    const double C = (double)v->embed_dim, F = (double)v->mlp_hidden;
    const method_row *row = t ? tok_method_row(t->method) : NULL;
    const int n_stages = row && row->scores != SCORES_NONE ? t->n_stages : 0;
    const method_dropped dropped =
        !row ? DROPPED_DISCARD : row->dropped == DROPPED_FUSE && t->evit_drop_pruned ? DROPPED_DISCARD : row->dropped;

    double macs = (double)n_patches * (double)(v->in_chans * v->patch * v->patch) * C;
    size_t n = n_patches; /* spatial tokens entering the current block */
    int s = 0;
    for (size_t i = 0; i < v->depth; i++) {
        const bool stage_here = s < n_stages && t->prune_loc[s] == (int)i;
        if (stage_here && row->scores == SCORES_PREDICTOR) {
            size_t k = keep_count_predictor(t->keep_frac, n_stages, s, n_patches);
            if (k > n) k = n;
            macs += predictor_macs((double)n, v->embed_dim);
            macs += dropped_macs(dropped, k, &n, C);
            s++;
        }
        const macs_widths *w = v->widths;
        if (w)
            macs += attention_macs_kept((double)(1 + n), C, (double)(w->num_heads * w->dq[i]), (double)(w->num_heads * w->dv[i]));
        else
            macs += attention_macs((double)(1 + n), C);
        if (stage_here && row->scores == SCORES_CLS_ATTENTION) {
            const size_t k = keep_count_evit(t->keep_frac, n_stages, s, n);
            macs += dropped_macs(dropped, k, &n, C);
            s++;
        }
        macs += mlp_macs((double)(1 + n), C, w ? (double)w->f[i] : F);
    }
    return macs + C * (double)v->num_classes;
}
