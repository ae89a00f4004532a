/* Shape ops: reshape (a view), permute/transpose, concat, slice and expand0 (copies).
 * Dims may be given negative, counted from the end as in PyTorch (-1 is the last). */
#include <string.h>

#include "autograd/ops.h"

#define SH_PAR 32768

/* dim in [-ndim, ndim) -> [0, ndim), or -1. */
static int norm_dim(int dim, int ndim) {
    if (dim < 0) dim += ndim;
    return dim >= 0 && dim < ndim ? dim : -1;
}

/* Flat element count before dim, and after it. */
static size_t outer_of(const ag_tensor *t, int dim) {
    size_t n = 1;
    for (int i = 0; i < dim; i++) n *= t->shape[i];
    return n;
}
static size_t inner_of(const ag_tensor *t, int dim) {
    size_t n = 1;
    for (int i = dim + 1; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static ag_tensor *need_contiguous(ag_ctx *ctx, const char *op, ag_tensor *x) {
    char s[64];
    if (!ag_is_contiguous(x)) return ag_error(ctx, TPSC_ERR_SHAPE, "%s: input %s must be contiguous", op, ag_shape_str(x, s, sizeof s));
    return x;
}

static void add_into(float *dst, const float *src, size_t n) {
    #pragma omp parallel for simd if (parallel: n > SH_PAR)
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* ---- reshape ------------------------------------------------------------------------------ */

/* The view shares x's data, but not its gradient: the view's grad is added back to x's. */
static void reshape_backward(ag_ctx *ctx, ag_node *n) {
    float *dx = ag_grad(ctx, n->in[0]);
    if (dx) add_into(dx, n->out->grad, ag_numel(n->out));
}

ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *x, int ndim, const size_t *shape) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    if (ndim < 1 || ndim > AG_MAX_DIMS)
        return ag_error(ctx, TPSC_ERR_SHAPE, "reshape: %s to %d dims (1..%d allowed)", ag_shape_str(x, s, sizeof s), ndim, AG_MAX_DIMS);
    size_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    if (numel != ag_numel(x))
        return ag_error(ctx, TPSC_ERR_SHAPE, "reshape: %s has %zu elements, the new shape %zu", ag_shape_str(x, s, sizeof s),
                        ag_numel(x), numel);
    if (!need_contiguous(ctx, "reshape", x)) return NULL;
    ag_tensor *y = ag_view(ctx, x, ndim, shape);
    if (!y) return NULL;
    ag_record(ctx, "reshape", reshape_backward, y, 1, &x);
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- permute / transpose ----------------------------------------------------------------- */

/* Both directions walk the output in order; `src_stride[k]` is the input stride of output
 * dim k (all padded to 4 dims). Forward: y[o] = x[i(o)]; backward: dx[i(o)] += dy[o]. Every
 * input element is hit once, so rows can go to threads in both directions. */
static void permute_walk(const size_t os[4], const size_t ist[4], const float *src, float *dst, bool backward) {
    const size_t rows = os[0] * os[1] * os[2], W = os[3], s3 = ist[3];
    #pragma omp parallel for if (rows * W > SH_PAR)
    for (size_t r = 0; r < rows; r++) {
        const size_t i2 = r % os[2], i1 = (r / os[2]) % os[1], i0 = r / (os[1] * os[2]);
        const size_t base = i0 * ist[0] + i1 * ist[1] + i2 * ist[2];
        const float *s = backward ? src + r * W : src + base;
        float *d = backward ? dst + base : dst + r * W;
        if (backward) {
            if (s3 == 1)
                #pragma omp simd
                for (size_t j = 0; j < W; j++) d[j] += s[j];
            else
                for (size_t j = 0; j < W; j++) d[j * s3] += s[j];
        } else {
            if (s3 == 1)
                memcpy(d, s, W * sizeof(float));
            else
                for (size_t j = 0; j < W; j++) d[j] = s[j * s3];
        }
    }
}

/* Output shape and the input strides in output order, padded in front to 4 dims. */
static void permute_layout(const ag_tensor *x, const int64_t *perm, size_t os[4], size_t ist[4]) {
    const int pad = AG_MAX_DIMS - x->ndim;
    for (int k = 0; k < AG_MAX_DIMS; k++) {
        if (k < pad) {
            os[k] = 1;
            ist[k] = 0;
        } else {
            os[k] = x->shape[perm[k - pad]];
            ist[k] = x->stride[perm[k - pad]];
        }
    }
}

static void permute_backward(ag_ctx *ctx, ag_node *n) {
    float *dx = ag_grad(ctx, n->in[0]);
    if (!dx) return;
    size_t os[4], ist[4];
    permute_layout(n->in[0], n->i, os, ist);
    permute_walk(os, ist, n->out->grad, dx, true);
}

ag_tensor *ag_permute(ag_ctx *ctx, ag_tensor *x, const int *perm) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    if (!need_contiguous(ctx, "permute", x)) return NULL;
    char s[64];
    int64_t p[AG_MAX_DIMS] = {0};
    bool seen[AG_MAX_DIMS] = {false};
    for (int i = 0; i < x->ndim; i++) {
        if (perm[i] < 0 || perm[i] >= x->ndim || seen[perm[i]])
            return ag_error(ctx, TPSC_ERR_SHAPE, "permute: perm[%d] = %d is not a permutation of the %d dims of %s", i, perm[i],
                            x->ndim, ag_shape_str(x, s, sizeof s));
        seen[perm[i]] = true;
        p[i] = perm[i];
    }
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[p[i]];
    ag_tensor *y = ag_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    size_t os[4], ist[4];
    permute_layout(x, p, os, ist);
    permute_walk(os, ist, x->data, y->data, false);
    ag_node *n = ag_record(ctx, "permute", permute_backward, y, 1, &x);
    if (n) memcpy(n->i, p, sizeof p);
    return ctx->status == TPSC_OK ? y : NULL;
}

ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *x, int d0, int d1) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    const int a = norm_dim(d0, x->ndim), b = norm_dim(d1, x->ndim);
    if (a < 0 || b < 0) {
        char s[64];
        return ag_error(ctx, TPSC_ERR_SHAPE, "transpose: dims %d, %d out of range for %s", d0, d1, ag_shape_str(x, s, sizeof s));
    }
    int perm[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) perm[i] = i;
    perm[a] = b;
    perm[b] = a;
    return ag_permute(ctx, x, perm);
}

/* ---- concat ------------------------------------------------------------------------------- */

/* Input k owns columns [off_k, off_k + w_k) of every outer row of the output seen as
 * [outer, total]; dx_k gets those columns back. */
static void concat_backward(ag_ctx *ctx, ag_node *n) {
    const int dim = (int)n->i[0];
    const size_t outer = outer_of(n->out, dim), total = ag_numel(n->out) / outer;
    const float *dy = n->out->grad;
    size_t off = 0;
    for (int k = 0; k < n->n_in; k++) {
        ag_tensor *x = n->in[k];
        const size_t w = ag_numel(x) / outer;
        float *dx = ag_grad(ctx, x);
        if (dx) {
            #pragma omp parallel for if (outer * w > SH_PAR)
            for (size_t o = 0; o < outer; o++)
                #pragma omp simd
                for (size_t j = 0; j < w; j++) dx[o * w + j] += dy[o * total + off + j];
        }
        off += w;
    }
}

ag_tensor *ag_concat(ag_ctx *ctx, int n, ag_tensor **xs, int dim) {
    if (n < 1 || !xs) return ag_error(ctx, TPSC_ERR_ARG, "concat: %d inputs", n);
    for (int k = 0; k < n; k++)
        if (!ag_ok(ctx, 1, xs[k])) return NULL;
    if (n > AG_MAX_INPUTS) {
        /* A node holds at most AG_MAX_INPUTS inputs: join the first ones, then the rest. */
        ag_tensor **rest = ag_alloc(ctx, (size_t)(n - AG_MAX_INPUTS + 1) * sizeof *rest);
        if (!rest) return NULL;
        rest[0] = ag_concat(ctx, AG_MAX_INPUTS, xs, dim);
        for (int k = AG_MAX_INPUTS; k < n; k++) rest[k - AG_MAX_INPUTS + 1] = xs[k];
        return rest[0] ? ag_concat(ctx, n - AG_MAX_INPUTS + 1, rest, dim) : NULL;
    }
    const ag_tensor *x0 = xs[0];
    const int d = norm_dim(dim, x0->ndim);
    char s0[64], sk[64];
    if (d < 0) return ag_error(ctx, TPSC_ERR_SHAPE, "concat: dim %d out of range for %s", dim, ag_shape_str(x0, s0, sizeof s0));
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x0->ndim; i++) shape[i] = x0->shape[i];
    shape[d] = 0;
    for (int k = 0; k < n; k++) {
        const ag_tensor *x = xs[k];
        bool ok = x->ndim == x0->ndim;
        for (int i = 0; ok && i < x0->ndim; i++)
            if (i != d && x->shape[i] != x0->shape[i]) ok = false;
        if (!ok)
            return ag_error(ctx, TPSC_ERR_SHAPE, "concat: input %d %s does not match input 0 %s outside dim %d", k,
                            ag_shape_str(x, sk, sizeof sk), ag_shape_str(x0, s0, sizeof s0), d);
        if (!need_contiguous(ctx, "concat", xs[k])) return NULL;
        shape[d] += x->shape[d];
    }
    ag_tensor *y = ag_new(ctx, x0->ndim, shape);
    if (!y) return NULL;
    const size_t outer = outer_of(y, d), total = ag_numel(y) / outer;
    size_t off = 0;
    for (int k = 0; k < n; k++) {
        const size_t w = ag_numel(xs[k]) / outer;
        const float *src = xs[k]->data;
        #pragma omp parallel for if (outer * w > SH_PAR)
        for (size_t o = 0; o < outer; o++) memcpy(y->data + o * total + off, src + o * w, w * sizeof(float));
        off += w;
    }
    ag_node *node = ag_record(ctx, "concat", concat_backward, y, n, xs);
    if (node) node->i[0] = d;
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- slice -------------------------------------------------------------------------------- */

/* x seen as [outer, L, inner]; the slice is [outer, len, inner] starting at `start`. */
static void slice_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *x = n->in[0];
    float *dx = ag_grad(ctx, x);
    if (!dx) return;
    const int d = (int)n->i[0];
    const size_t start = (size_t)n->i[1], len = n->out->shape[d];
    const size_t outer = outer_of(x, d), inner = inner_of(x, d), L = x->shape[d];
    const float *dy = n->out->grad;
    #pragma omp parallel for if (outer * len * inner > SH_PAR)
    for (size_t o = 0; o < outer; o++) {
        float *dst = dx + (o * L + start) * inner;
        const float *src = dy + o * len * inner;
        #pragma omp simd
        for (size_t j = 0; j < len * inner; j++) dst[j] += src[j];
    }
}

ag_tensor *ag_slice(ag_ctx *ctx, ag_tensor *x, int dim, size_t start, size_t len) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    const int d = norm_dim(dim, x->ndim);
    if (d < 0 || len == 0 || start > x->shape[d] || len > x->shape[d] - start)
        return ag_error(ctx, TPSC_ERR_SHAPE, "slice: [%zu, %zu) along dim %d of %s is empty or out of range", start, start + len, dim,
                        ag_shape_str(x, s, sizeof s));
    if (!need_contiguous(ctx, "slice", x)) return NULL;
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[d] = len;
    ag_tensor *y = ag_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    const size_t outer = outer_of(x, d), inner = inner_of(x, d), L = x->shape[d];
    #pragma omp parallel for if (outer * len * inner > SH_PAR)
    for (size_t o = 0; o < outer; o++)
        memcpy(y->data + o * len * inner, x->data + (o * L + start) * inner, len * inner * sizeof(float));
    ag_node *n = ag_record(ctx, "slice", slice_backward, y, 1, &x);
    if (n) {
        n->i[0] = d;
        n->i[1] = (int64_t)start;
    }
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- expand0 ------------------------------------------------------------------------------ */

/* Every copy of x got the gradient of its slot: dx [S] += sum_n dy [n, S]. */
static void expand0_backward(ag_ctx *ctx, ag_node *n) {
    float *dx = ag_grad(ctx, n->in[0]);
    if (!dx) return;
    const size_t S = ag_numel(n->in[0]), copies = n->out->shape[0];
    const float *dy = n->out->grad;
    #pragma omp parallel for if (S * copies > SH_PAR)
    for (size_t j = 0; j < S; j++) {
        double acc = 0.0;
        for (size_t c = 0; c < copies; c++) acc += dy[c * S + j];
        dx[j] += (float)acc;
    }
}

ag_tensor *ag_expand0(ag_ctx *ctx, ag_tensor *x, size_t n) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    if (x->ndim < 1 || x->shape[0] != 1 || n == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "expand0: %s must have a leading dim of 1 (to expand to %zu)", ag_shape_str(x, s, sizeof s), n);
    if (!need_contiguous(ctx, "expand0", x)) return NULL;
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[0] = n;
    ag_tensor *y = ag_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    const size_t S = ag_numel(x);
    #pragma omp parallel for if (S * n > SH_PAR)
    for (size_t c = 0; c < n; c++) memcpy(y->data + c * S, x->data, S * sizeof(float));
    ag_record(ctx, "expand0", expand0_backward, y, 1, &x);
    return ctx->status == TPSC_OK ? y : NULL;
}
