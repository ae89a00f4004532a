/* Token-row gather and scatter: the index form of pruning (keep rows) and of putting rows back.
 * Indices are per batch: idx[b*n + j] names a row of batch b. The caller owns idx and may
 * reuse its buffer, so the node keeps a copy in the arena. */
#include <string.h>

#include "autograd/ops.h"

#define GA_PAR 32768

/* Checks every index against [0, N) and copies them to the arena when a node will keep them. */
static const int32_t *check_indices(ag_ctx *ctx, const char *op, const int32_t *idx, size_t B, size_t n, size_t N, bool keep) {
    const size_t count = B * n;
    if (!idx && count) {
        ag_error(ctx, TPSC_ERR_ARG, "%s: index array is NULL", op);
        return NULL;
    }
    for (size_t i = 0; i < count; i++)
        if (idx[i] < 0 || (size_t)idx[i] >= N) {
            ag_error(ctx, TPSC_ERR_ARG, "%s: index %d at position %zu (batch %zu) is outside [0, %zu)", op, idx[i], i,
                     i / n, N);
            return NULL;
        }
    if (!keep) return idx;
    int32_t *copy = ag_alloc(ctx, count * sizeof *copy);
    if (copy) memcpy(copy, idx, count * sizeof *copy);
    return copy;
}

/* Row j of batch b moves between x [B,N,C] row idx[b*n+j] and the compact [B,n,C] row j.
 * add_to_full: full[idx] += compact (scatter, gather's backward); else compact (+)= full[idx].
 * Threads split batches only: within a batch one index may repeat, so two rows could add
 * into the same place. */
static void move_rows(float *full, float *compact, const int32_t *idx, size_t B, size_t N, size_t n, size_t C, bool add_to_full,
                      bool accumulate) {
    #pragma omp parallel for if (B * n * C > GA_PAR && B > 1)
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < n; j++) {
            float *f = full + (b * N + (size_t)idx[b * n + j]) * C, *c = compact + (b * n + j) * C;
            if (add_to_full)
                #pragma omp simd
                for (size_t k = 0; k < C; k++) f[k] += c[k];
            else if (accumulate)
                #pragma omp simd
                for (size_t k = 0; k < C; k++) c[k] += f[k];
            else
                memcpy(c, f, C * sizeof(float));
        }
}

/* ---- gather ------------------------------------------------------------------------------- */

/* dx [B,N,C]: dx[b, idx[b*n+j], :] += dy[b, j, :]. */
static void gather_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *x = n->in[0];
    float *dx = ag_grad(ctx, x);
    if (!dx) return;
    move_rows(dx, n->out->grad, n->saved, x->shape[0], x->shape[1], n->out->shape[1], x->shape[2], true, false);
}

ag_tensor *ag_gather_rows(ag_ctx *ctx, ag_tensor *x, const int32_t *idx, size_t n) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    if (x->ndim != 3 || n == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "gather_rows: x %s must be [B,N,C] and n = %zu > 0", ag_shape_str(x, s, sizeof s), n);
    if (!ag_is_contiguous(x)) return ag_error(ctx, TPSC_ERR_SHAPE, "gather_rows: x %s must be contiguous", ag_shape_str(x, s, sizeof s));
    const size_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    const bool keep = ag_needs_grad(ctx, 1, &x);
    const int32_t *ix = check_indices(ctx, "gather_rows", idx, B, n, N, keep);
    if (!ix) return NULL;
    ag_tensor *y = ag_new3(ctx, B, n, C);
    if (!y) return NULL;
    move_rows(x->data, y->data, ix, B, N, n, C, false, false);
    ag_node *node = ag_record(ctx, "gather_rows", gather_backward, y, 1, &x);
    if (node) node->saved = (void *)ix;
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- scatter ------------------------------------------------------------------------------ */

/* dsrc [B,n,C]: dsrc[b, j, :] += dy[b, idx[b*n+j], :]. */
static void scatter_backward(ag_ctx *ctx, ag_node *nd) {
    ag_tensor *src = nd->in[0];
    float *ds = ag_grad(ctx, src);
    if (!ds) return;
    const ag_tensor *y = nd->out;
    move_rows(y->grad, ds, nd->saved, src->shape[0], y->shape[1], src->shape[1], src->shape[2], false, true);
}

ag_tensor *ag_scatter_rows(ag_ctx *ctx, ag_tensor *src, const int32_t *idx, size_t N) {
    if (!ag_ok(ctx, 1, src)) return NULL;
    char s[64];
    if (src->ndim != 3 || N == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "scatter_rows: src %s must be [B,n,C] and N = %zu > 0", ag_shape_str(src, s, sizeof s), N);
    if (!ag_is_contiguous(src))
        return ag_error(ctx, TPSC_ERR_SHAPE, "scatter_rows: src %s must be contiguous", ag_shape_str(src, s, sizeof s));
    const size_t B = src->shape[0], n = src->shape[1], C = src->shape[2];
    const bool keep = ag_needs_grad(ctx, 1, &src);
    const int32_t *ix = check_indices(ctx, "scatter_rows", idx, B, n, N, keep);
    if (!ix) return NULL;
    ag_tensor *y = ag_zeros(ctx, 3, (size_t[]){B, N, C});
    if (!y) return NULL;
    move_rows(y->data, src->data, ix, B, N, n, C, true, false);
    ag_node *node = ag_record(ctx, "scatter_rows", scatter_backward, y, 1, &src);
    if (node) node->saved = (void *)ix;
    return ctx->status == TPSC_OK ? y : NULL;
}
