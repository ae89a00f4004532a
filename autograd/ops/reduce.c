/* Reductions: sum / mean of everything (-> [1]) and over one dim (which is removed).
 * Sums are accumulated in double: a float running sum over B*N*C terms loses digits. */
#include "autograd/ops.h"

#define RD_PAR 32768
#define RD_COLS 64

/* ---- all elements ------------------------------------------------------------------------- */

/* dx += dy[0] * scale (scale = 1 for sum, 1/numel for mean). */
static void total_backward(ag_ctx *ctx, ag_node *n) {
    float *dx = ag_grad(ctx, n->in[0]);
    if (!dx) return;
    const float g = n->out->grad[0] * n->f[0];
    const size_t total = ag_numel(n->in[0]);
    #pragma omp parallel for simd if (parallel: total > RD_PAR)
    for (size_t i = 0; i < total; i++) dx[i] += g;
}

static ag_tensor *total(ag_ctx *ctx, const char *op, ag_tensor *x, bool mean) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    const size_t count = ag_numel(x);
    if (!ag_is_contiguous(x) || count == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: input %s must be contiguous and non-empty", op, ag_shape_str(x, s, sizeof s));
    ag_tensor *y = ag_new1(ctx, 1);
    if (!y) return NULL;
    double acc = 0.0;
    const float *v = x->data;
    #pragma omp parallel for reduction(+ : acc) if (count > RD_PAR)
    for (size_t i = 0; i < count; i++) acc += v[i];
    const double scale = mean ? 1.0 / (double)count : 1.0;
    y->data[0] = (float)(acc * scale);
    ag_node *n = ag_record(ctx, op, total_backward, y, 1, &x);
    if (n) n->f[0] = (float)scale;
    return ctx->status == TPSC_OK ? y : NULL;
}

ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *x) { return total(ctx, "sum", x, false); }
ag_tensor *ag_mean(ag_ctx *ctx, ag_tensor *x) { return total(ctx, "mean", x, true); }

/* ---- one dim ------------------------------------------------------------------------------ */

/* x seen as [outer, L, inner] with L the reduced dim; y is [outer, inner]. */
typedef struct rd_dims {
    size_t outer, L, inner;
} rd_dims;

static rd_dims split_at(const ag_tensor *x, int d) {
    rd_dims r = {1, x->shape[d], 1};
    for (int i = 0; i < d; i++) r.outer *= x->shape[i];
    for (int i = d + 1; i < x->ndim; i++) r.inner *= x->shape[i];
    return r;
}

/* dx[o, l, i] += dy[o, i] * scale. */
static void dim_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *x = n->in[0];
    float *dx = ag_grad(ctx, x);
    if (!dx) return;
    const rd_dims r = split_at(x, (int)n->i[0]);
    const float scale = n->f[0], *dy = n->out->grad;
    #pragma omp parallel for if (r.outer * r.L * r.inner > RD_PAR && r.outer > 1)
    for (size_t o = 0; o < r.outer; o++)
        for (size_t l = 0; l < r.L; l++) {
            float *d = dx + (o * r.L + l) * r.inner;
            const float *g = dy + o * r.inner;
            #pragma omp simd
            for (size_t i = 0; i < r.inner; i++) d[i] += g[i] * scale;
        }
}

static ag_tensor *over_dim(ag_ctx *ctx, const char *op, ag_tensor *x, int dim, bool mean) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    const int d = dim < 0 ? dim + x->ndim : dim;
    if (d < 0 || d >= x->ndim || x->shape[d] == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: dim %d out of range (or empty) for %s", op, dim, ag_shape_str(x, s, sizeof s));
    if (!ag_is_contiguous(x)) return ag_error(ctx, TPSC_ERR_SHAPE, "%s: input %s must be contiguous", op, ag_shape_str(x, s, sizeof s));
    /* The reduced dim is dropped; a 1-D input gives a scalar [1]. */
    size_t shape[AG_MAX_DIMS];
    int nd = 0;
    for (int i = 0; i < x->ndim; i++)
        if (i != d) shape[nd++] = x->shape[i];
    if (nd == 0) shape[nd++] = 1;
    ag_tensor *y = ag_new(ctx, nd, shape);
    if (!y) return NULL;
    const rd_dims r = split_at(x, d);
    const double scale = mean ? 1.0 / (double)r.L : 1.0;
    /* Blocks of inner columns, each summed over L in a stack of doubles: contiguous loads for
     * any dim, and (outer, block) pairs are independent, so they go to threads. */
    const size_t blocks = (r.inner + RD_COLS - 1) / RD_COLS, jobs = r.outer * blocks;
    #pragma omp parallel for if (r.outer * r.L * r.inner > RD_PAR && jobs > 1)
    for (size_t job = 0; job < jobs; job++) {
        const size_t o = job / blocks, i0 = (job % blocks) * RD_COLS;
        const size_t w = r.inner - i0 < RD_COLS ? r.inner - i0 : RD_COLS;
        double acc[RD_COLS] = {0};
        for (size_t l = 0; l < r.L; l++) {
            const float *v = x->data + (o * r.L + l) * r.inner + i0;
            #pragma omp simd
            for (size_t i = 0; i < w; i++) acc[i] += v[i];
        }
        for (size_t i = 0; i < w; i++) y->data[o * r.inner + i0 + i] = (float)(acc[i] * scale);
    }
    ag_node *n = ag_record(ctx, op, dim_backward, y, 1, &x);
    if (n) {
        n->i[0] = d;
        n->f[0] = (float)scale;
    }
    return ctx->status == TPSC_OK ? y : NULL;
}

ag_tensor *ag_sum_dim(ag_ctx *ctx, ag_tensor *x, int dim) { return over_dim(ctx, "sum_dim", x, dim, false); }
ag_tensor *ag_mean_dim(ag_ctx *ctx, ag_tensor *x, int dim) { return over_dim(ctx, "mean_dim", x, dim, true); }
