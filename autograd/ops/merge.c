/* Size-weighted token merging by a map (ToMe's merge_wavg, ATME's fold), and its backward.
 *
 *   x [B,n,C], size [B,n] (or NULL: every token has size 1), map [B,n] with values in [0,m)
 *   y[b,o,:] = sum_{i: map[b,i] = o} s_bi x[b,i,:] / S_bo,   S_bo = sum_{i: map[b,i] = o} s_bi
 *
 * The map and the sizes are constants (which tokens merge is a discrete choice and gets no
 * gradient, as in ToMe); the gradient flows through the weighted averages:
 *   dx[b,i,:] += (s_bi / S_b,map[b,i]) dy[b,map[b,i],:]. */
#include <string.h>

#include "autograd/ops.h"

typedef struct merge_saved {
    int32_t *map;  /* [B,n] */
    float *weight; /* [B,n] s_i / S_map(i) */
} merge_saved;

static void merge_backward(ag_ctx *ctx, ag_node *nd) {
    ag_tensor *x = nd->in[0];
    float *dx = ag_grad(ctx, x);
    if (!dx) return;
    const merge_saved *s = nd->saved;
    const size_t B = x->shape[0], n = x->shape[1], C = x->shape[2], m = nd->out->shape[1];
    const float *dy = nd->out->grad;
    #pragma omp parallel for if (B > 1 && B * n * C > 32768)
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++) {
            const float w = s->weight[b * n + i];
            const float *g = dy + (b * m + (size_t)s->map[b * n + i]) * C;
            float *d = dx + (b * n + i) * C;
            #pragma omp simd
            for (size_t c = 0; c < C; c++) d[c] += w * g[c];
        }
}

ag_tensor *ag_merge_tokens(ag_ctx *ctx, ag_tensor *x, const float *size, const int32_t *map, size_t m, float *size_out) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    if (x->ndim != 3 || !ag_is_contiguous(x) || m == 0 || m > x->shape[1])
        return ag_error(ctx, TPSC_ERR_SHAPE, "merge_tokens: x %s must be contiguous [B,n,C] and 0 < m = %zu <= n",
                        ag_shape_str(x, s, sizeof s), m);
    if (!map) return ag_error(ctx, TPSC_ERR_ARG, "merge_tokens: map is NULL");
    const size_t B = x->shape[0], n = x->shape[1], C = x->shape[2];
    int32_t *mp = ag_alloc(ctx, B * n * sizeof *mp);
    float *weight = ag_alloc(ctx, B * n * sizeof *weight);
    float *total = ag_alloc(ctx, B * m * sizeof *total);
    ag_tensor *y = ag_zeros(ctx, 3, (size_t[]){B, m, C});
    if (!mp || !weight || !total || !y) return NULL;
    memcpy(mp, map, B * n * sizeof *mp);
    memset(total, 0, B * m * sizeof *total);
    for (size_t b = 0; b < B; b++)
        for (size_t i = 0; i < n; i++) {
            const int32_t o = mp[b * n + i];
            const float si = size ? size[b * n + i] : 1.0f;
            if (o < 0 || (size_t)o >= m)
                return ag_error(ctx, TPSC_ERR_ARG, "merge_tokens: map[%zu] = %d (image %zu) is outside [0, %zu)", i, o,
                                b, m);
            if (!(si > 0.0f))
                return ag_error(ctx, TPSC_ERR_ARG, "merge_tokens: size[%zu] = %g (image %zu) must be positive", i,
                                (double)si, b);
            total[b * m + (size_t)o] += si;
        }
    for (size_t b = 0; b < B; b++)
        for (size_t o = 0; o < m; o++)
            if (total[b * m + o] == 0.0f)
                return ag_error(ctx, TPSC_ERR_ARG, "merge_tokens: output token %zu of image %zu receives no input", o, b);
    /* y = sum s_i x_i, then divided by S: the order of ToMe's merge(x * size) / merge(size) */
    #pragma omp parallel for if (B > 1 && B * n * C > 32768)
    for (size_t b = 0; b < B; b++) {
        for (size_t i = 0; i < n; i++) {
            const float si = size ? size[b * n + i] : 1.0f;
            const size_t o = (size_t)mp[b * n + i];
            const float *xi = x->data + (b * n + i) * C;
            float *yo = y->data + (b * m + o) * C;
            #pragma omp simd
            for (size_t c = 0; c < C; c++) yo[c] += xi[c] * si;
            weight[b * n + i] = si / total[b * m + o];
        }
        for (size_t o = 0; o < m; o++) {
            float *yo = y->data + (b * m + o) * C;
            const float S = total[b * m + o];
            #pragma omp simd
            for (size_t c = 0; c < C; c++) yo[c] /= S;
        }
    }
    if (size_out) memcpy(size_out, total, B * m * sizeof *total);
    ag_node *node = ag_record(ctx, "merge_tokens", merge_backward, y, 1, &x);
    if (node) {
        merge_saved *sv = ag_alloc(ctx, sizeof *sv);
        if (!sv) return NULL;
        *sv = (merge_saved){.map = mp, .weight = weight};
        node->saved = sv;
    }
    return ctx->status == TPSC_OK ? y : NULL;
}
