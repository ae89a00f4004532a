/* Token merging on one image of the packed batch: ToMe's and ATME's plans and the
 * size-weighted average (docs/merging.md). The decisions are src/common/merge_rules.h's, the
 * same the framework takes (src/tokens/{tome,atme}.c); the average follows ag_merge_tokens
 * (autograd/ops/merge.c) operation for operation, so both engines agree to float rounding.
 * forward.c runs these per image inside the team, between a block's attention and its MLP.
 *
 * Letters: t tokens of the image (cls first), n = t - 1 spatial ones, m after the merge,
 * C width, N patches of the g x g grid, W the qkv row width, D the metric's width (the key
 * channels of one head). */
#include <math.h>
#include <string.h>

#include "src/common/merge_rules.h"
#include "src/infer/internal.h"

/* The metric [t, D] of an image: its keys averaged over heads (qkv rows [t, W], keys from
 * column Q = H dq on). */
static void key_mean(const float *qkv, size_t t, const ti_heads *g, float *metric) {
    const size_t Q = g->H * g->dq, W = 2 * Q + g->H * g->dv;
    tok_key_mean_ld(qkv, t, W, Q, g->H, g->dq, metric);
}

size_t ti_merge_scratch_floats(size_t t, size_t D) {
    const size_t n = t - 1;
    size_t plan = tok_tome_scratch_bytes(t, D);
    const size_t atme = tok_atme_scratch_bytes(n) + n * sizeof(int32_t);
    if (atme > plan) plan = atme;
    /* metric [t, D], the map [t], the plan's scratch; whole floats, 16 of slack for alignment */
    return t * D + t + (plan + sizeof(float) - 1) / sizeof(float) + 16;
}

/* Carves the scratch: metric [t, D], then the map [t], then the plan's room (8-byte aligned). */
static void carve(float *scratch, size_t t, size_t D, float **metric, int32_t **map, void **plan) {
    *metric = scratch;
    *map = (int32_t *)(scratch + t * D);
    size_t at = t * D + t;
    at += at & 1;
    *plan = scratch + at;
}

size_t ti_tome_plan(const float *qkv, size_t t, const ti_heads *g, size_t r, float *scratch, int32_t **map_out) {
    float *metric;
    int32_t *map;
    void *plan;
    carve(scratch, t, g->dq, &metric, &map, &plan);
    key_mean(qkv, t, g, metric);
    *map_out = map;
    return tok_tome_match(metric, t, g->dq, r, map, plan);
}

size_t ti_atme_plan(const float *qkv, size_t t, const ti_heads *g, const float *importance, int32_t *patch_tok,
                    size_t grid, size_t k, float *scratch, int32_t **map_out) {
    const size_t n = t - 1;
    float *metric;
    int32_t *map;
    void *plan;
    carve(scratch, t, g->dq, &metric, &map, &plan);
    int32_t *spatial = (int32_t *)((char *)plan + tok_atme_scratch_bytes(n)); /* [n] */
    key_mean(qkv, t, g, metric);
    const size_t m = tok_atme_plan(n, patch_tok, grid, importance, metric + g->dq, g->dq, k, spatial, plan);
    if (m != n - k) return 0;
    map[0] = 0; /* the cls token stays first, alone */
    for (size_t i = 0; i < n; i++) map[1 + i] = 1 + spatial[i];
    *map_out = map;
    return 1 + m;
}

void ti_merge_rows(const float *x, const float *size, size_t t, size_t C, const int32_t *map, size_t m, float *y,
                   float *size_out, float *log_out) {
    memset(size_out, 0, m * sizeof *size_out);
    for (size_t i = 0; i < t; i++) size_out[map[i]] += size[i];
    memset(y, 0, m * C * sizeof *y);
    /* y = sum s_i x_i, then divided by S: ag_merge_tokens' order */
    for (size_t i = 0; i < t; i++) {
        const float si = size[i];
        const float *xi = x + i * C;
        float *yo = y + (size_t)map[i] * C;
        #pragma omp simd
        for (size_t c = 0; c < C; c++) yo[c] += xi[c] * si;
    }
    for (size_t o = 0; o < m; o++) {
        float *yo = y + o * C;
        const float S = size_out[o];
        #pragma omp simd
        for (size_t c = 0; c < C; c++) yo[c] /= S;
        log_out[o] = logf(S);
    }
}

void ti_tome_source_update(int32_t *patch_tok, size_t N, const int32_t *map) {
    for (size_t p = 0; p < N; p++) patch_tok[p] = map[1 + (size_t)patch_tok[p]] - 1;
}
