/* Element-wise add, sub, mul, scale and add-scalar, with the two broadcasting rules of ops.h:
 *  - suffix: b's dims (leading 1s dropped) equal a's trailing dims, so b repeats with period
 *    numel(b) over a's flat data (bias [C] over x [M,C], pos_embed [1,N,C] over x [B,N,C]);
 *  - per row (mul only): b is a's shape with last dim 1, one factor per row (mask [B,N,1]).
 * The output always has a's shape. Backward reduces over the repeated copies of b. */
#include <stdio.h>
#include <string.h>

#include "autograd/ops.h"

#define EW_PAR 32768 /* element count above which a loop is worth threads */
#define EW_COLS 64   /* column block of the broadcast reductions: a stack accumulator */
#define EW_TILE 4096 /* elements of one row handed to a thread: a same-shape op is one long row */

/* The [R,P] walks below go tile by tile, so the threads have work both when R is large
 * (bias over M rows) and when R is 1 (same shapes) or small (pos_embed over B). */
static size_t tile_count(size_t R, size_t P) { return R * ((P + EW_TILE - 1) / EW_TILE); }

/* Tile t covers row r, columns [j0, j1). */
static void tile_bounds(size_t t, size_t P, size_t *r, size_t *j0, size_t *j1) {
    const size_t per_row = (P + EW_TILE - 1) / EW_TILE;
    *r = t / per_row;
    *j0 = (t % per_row) * EW_TILE;
    *j1 = P - *j0 < EW_TILE ? P : *j0 + EW_TILE;
}

typedef enum ew_kind { EW_SAME, EW_SUFFIX, EW_ROW } ew_kind;

/* The layout a (,b) pair obeys, or -1. `period` is numel(b) for EW_SUFFIX. */
static int broadcast_kind(const ag_tensor *a, const ag_tensor *b, bool allow_row) {
    if (ag_same_shape(a, b)) return EW_SAME;
    int lead = 0;
    while (lead < b->ndim && b->shape[lead] == 1) lead++;
    int kept = b->ndim - lead;
    if (kept <= a->ndim) {
        bool match = true;
        for (int i = 0; i < kept; i++)
            if (b->shape[lead + i] != a->shape[a->ndim - kept + i]) match = false;
        if (match) return EW_SUFFIX;
    }
    if (allow_row && a->ndim == b->ndim && b->shape[b->ndim - 1] == 1) {
        bool match = true;
        for (int i = 0; i < a->ndim - 1; i++)
            if (b->shape[i] != a->shape[i]) match = false;
        if (match) return EW_ROW;
    }
    return -1;
}

static ag_tensor *check_pair(ag_ctx *ctx, const char *op, ag_tensor *a, ag_tensor *b, bool allow_row, int *kind) {
    char sa[64], sb[64];
    *kind = broadcast_kind(a, b, allow_row);
    if (*kind < 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: a %s and b %s do not broadcast (b must match a's trailing dims%s)", op,
                        ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb),
                        allow_row ? " or be a's shape with last dim 1" : "");
    if (!ag_is_contiguous(a) || !ag_is_contiguous(b))
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: inputs must be contiguous (a %s, b %s)", op,
                        ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb));
    return ag_new(ctx, a->ndim, a->shape);
}

/* db[j] += sign * sum_i dy[i*P + j] (* a[i*P + j] when a is given), over R = numel(dy)/P
 * repeats: the reduction for b of period P. Columns are split across threads so no two
 * threads write the same db entry; accumulated in double since R can be B*N. */
static void reduce_periods(float *db, const float *dy, const float *a, size_t R, size_t P, float sign) {
    const size_t blocks = (P + EW_COLS - 1) / EW_COLS;
    #pragma omp parallel for if (R * P > EW_PAR && blocks > 1)
    for (size_t blk = 0; blk < blocks; blk++) {
        const size_t j0 = blk * EW_COLS, w = P - j0 < EW_COLS ? P - j0 : EW_COLS;
        double acc[EW_COLS] = {0};
        for (size_t i = 0; i < R; i++) {
            const float *g = dy + i * P + j0;
            if (a) {
                const float *x = a + i * P + j0;
                #pragma omp simd
                for (size_t j = 0; j < w; j++) acc[j] += (double)(g[j] * x[j]);
            } else {
                #pragma omp simd
                for (size_t j = 0; j < w; j++) acc[j] += (double)g[j];
            }
        }
        for (size_t j = 0; j < w; j++) db[j0 + j] += sign * (float)acc[j];
    }
}

/* ---- add / sub -------------------------------------------------------------------------- */

/* da += dy;  db += ±dy, summed over the copies of b. */
static void add_sub_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *a = n->in[0], *b = n->in[1];
    const float sign = n->f[0];
    const float *dy = n->out->grad;
    const size_t total = ag_numel(a), P = ag_numel(b);
    float *da = ag_grad(ctx, a), *db = ag_grad(ctx, b);
    if (da) {
        #pragma omp parallel for simd if (parallel: total > EW_PAR)
        for (size_t i = 0; i < total; i++) da[i] += dy[i];
    }
    if (db) {
        if (P == total) {
            #pragma omp parallel for simd if (parallel: total > EW_PAR)
            for (size_t i = 0; i < total; i++) db[i] += sign * dy[i];
        } else {
            reduce_periods(db, dy, NULL, total / P, P, sign);
        }
    }
}

static ag_tensor *add_sub(ag_ctx *ctx, const char *op, ag_tensor *a, ag_tensor *b, float sign) {
    if (!ag_ok(ctx, 2, a, b)) return NULL;
    int kind;
    ag_tensor *y = check_pair(ctx, op, a, b, false, &kind);
    if (!y) return NULL;
    const size_t total = ag_numel(a), P = ag_numel(b), R = total / P;
    const float *x = a->data, *c = b->data;
    /* y [R,P] = a [R,P] ± b [P]; the same-shape case is R = 1. */
    const size_t tiles = tile_count(R, P);
    #pragma omp parallel for if (total > EW_PAR)
    for (size_t t = 0; t < tiles; t++) {
        size_t r, j0, j1;
        tile_bounds(t, P, &r, &j0, &j1);
        #pragma omp simd
        for (size_t j = j0; j < j1; j++) y->data[r * P + j] = x[r * P + j] + sign * c[j];
    }
    ag_node *node = ag_record(ctx, op, add_sub_backward, y, 2, (ag_tensor *[]){a, b});
    if (node) node->f[0] = sign;
    return ctx->status == TPSC_OK ? y : NULL;
}

ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return add_sub(ctx, "add", a, b, 1.0f); }
ag_tensor *ag_sub(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) { return add_sub(ctx, "sub", a, b, -1.0f); }

/* ---- mul ------------------------------------------------------------------------------- */

/* Suffix: da[r,j] += dy[r,j] b[j], db[j] += sum_r dy[r,j] a[r,j].
 * Per row: da[r,c] += dy[r,c] b[r], db[r] += sum_c dy[r,c] a[r,c]. */
static void mul_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *a = n->in[0], *b = n->in[1];
    const float *dy = n->out->grad, *x = a->data, *c = b->data;
    const size_t total = ag_numel(a);
    float *da = ag_grad(ctx, a), *db = ag_grad(ctx, b);
    if (n->i[0] == EW_ROW) {
        const size_t R = ag_rows(a), C = ag_cols(a);
        #pragma omp parallel for if (total > EW_PAR)
        for (size_t r = 0; r < R; r++) {
            const float *g = dy + r * C, *xr = x + r * C;
            if (da)
                #pragma omp simd
                for (size_t j = 0; j < C; j++) da[r * C + j] += g[j] * c[r];
            if (db) {
                float s = 0.0f;
                for (size_t j = 0; j < C; j++) s += g[j] * xr[j];
                db[r] += s;
            }
        }
        return;
    }
    const size_t P = ag_numel(b), R = total / P;
    if (da) {
        const size_t tiles = tile_count(R, P);
        #pragma omp parallel for if (total > EW_PAR)
        for (size_t t = 0; t < tiles; t++) {
            size_t r, j0, j1;
            tile_bounds(t, P, &r, &j0, &j1);
            #pragma omp simd
            for (size_t j = j0; j < j1; j++) da[r * P + j] += dy[r * P + j] * c[j];
        }
    }
    if (db) {
        if (R == 1) {
            #pragma omp parallel for simd if (parallel: total > EW_PAR)
            for (size_t i = 0; i < total; i++) db[i] += dy[i] * x[i];
        } else {
            reduce_periods(db, dy, x, R, P, 1.0f);
        }
    }
}

ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (!ag_ok(ctx, 2, a, b)) return NULL;
    int kind;
    ag_tensor *y = check_pair(ctx, "mul", a, b, true, &kind);
    if (!y) return NULL;
    const size_t total = ag_numel(a);
    const float *x = a->data, *c = b->data;
    if (kind == EW_ROW) {
        const size_t R = ag_rows(a), C = ag_cols(a);
        #pragma omp parallel for if (total > EW_PAR)
        for (size_t r = 0; r < R; r++)
            #pragma omp simd
            for (size_t j = 0; j < C; j++) y->data[r * C + j] = x[r * C + j] * c[r];
    } else {
        const size_t P = ag_numel(b), R = total / P;
        const size_t tiles = tile_count(R, P);
        #pragma omp parallel for if (total > EW_PAR)
        for (size_t t = 0; t < tiles; t++) {
            size_t r, j0, j1;
            tile_bounds(t, P, &r, &j0, &j1);
            #pragma omp simd
            for (size_t j = j0; j < j1; j++) y->data[r * P + j] = x[r * P + j] * c[j];
        }
    }
    ag_node *node = ag_record(ctx, "mul", mul_backward, y, 2, (ag_tensor *[]){a, b});
    if (node) node->i[0] = kind;
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- scale / add_scalar ------------------------------------------------------------------ */

/* da += s dy (s = 1 for add_scalar). */
static void scale_backward(ag_ctx *ctx, ag_node *n) {
    const float s = n->f[0], *dy = n->out->grad;
    const size_t total = ag_numel(n->out);
    float *da = ag_grad(ctx, n->in[0]);
    if (!da) return;
    #pragma omp parallel for simd if (parallel: total > EW_PAR)
    for (size_t i = 0; i < total; i++) da[i] += s * dy[i];
}

static ag_tensor *unary_affine(ag_ctx *ctx, const char *op, ag_tensor *a, float mul, float add) {
    if (!ag_ok(ctx, 1, a)) return NULL;
    if (!ag_is_contiguous(a)) {
        char sa[64];
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: input %s must be contiguous", op, ag_shape_str(a, sa, sizeof sa));
    }
    ag_tensor *y = ag_new(ctx, a->ndim, a->shape);
    if (!y) return NULL;
    const size_t total = ag_numel(a);
    const float *x = a->data;
    #pragma omp parallel for simd if (parallel: total > EW_PAR)
    for (size_t i = 0; i < total; i++) y->data[i] = mul * x[i] + add;
    ag_node *node = ag_record(ctx, op, scale_backward, y, 1, &a);
    if (node) node->f[0] = mul;
    return ctx->status == TPSC_OK ? y : NULL;
}

ag_tensor *ag_scale(ag_ctx *ctx, ag_tensor *a, float s) { return unary_affine(ctx, "scale", a, s, 0.0f); }
ag_tensor *ag_add_scalar(ag_ctx *ctx, ag_tensor *a, float s) { return unary_affine(ctx, "add_scalar", a, 1.0f, s); }
