/* Softmax and log-softmax over the last dim, max-subtracted so exp never overflows.
 * x [..., C] is seen as rows [M, C]; each row is independent, rows go to threads. */
#include <math.h>

#include "autograd/ops.h"
#include "src/common/vecmath.h"

#define SM_PAR 16384

/* One row: returns the max and writes e[c] = exp(x[c] - max), returning their sum in *sum. */
static float row_exp(const float *x, float *e, size_t C, double *sum) {
    float mx = x[0];
    #pragma omp simd reduction(max : mx)
    for (size_t c = 1; c < C; c++) mx = x[c] > mx ? x[c] : mx;
    double s = 0.0;
    #pragma omp simd reduction(+ : s)
    for (size_t c = 0; c < C; c++) {
        e[c] = vm_expf(x[c] - mx);
        s += e[c];
    }
    *sum = s;
    return mx;
}

static ag_tensor *check(ag_ctx *ctx, const char *op, ag_tensor *x) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    char s[64];
    if (!ag_is_contiguous(x) || x->ndim < 1 || ag_cols(x) == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: input %s must be contiguous with a non-empty last dim", op,
                        ag_shape_str(x, s, sizeof s));
    return ag_new(ctx, x->ndim, x->shape);
}

/* y = softmax(x): dx = y * (dy - sum_c dy y). The forward output is all backward needs. */
static void softmax_backward(ag_ctx *ctx, ag_node *n) {
    float *dx = ag_grad(ctx, n->in[0]);
    if (!dx) return;
    const ag_tensor *y = n->out;
    const size_t M = ag_rows(y), C = ag_cols(y);
    #pragma omp parallel for if (M * C > SM_PAR)
    for (size_t r = 0; r < M; r++) {
        const float *yr = y->data + r * C, *g = y->grad + r * C;
        float *dr = dx + r * C;
        float dot = 0.0f;
        #pragma omp simd reduction(+ : dot)
        for (size_t c = 0; c < C; c++) dot += g[c] * yr[c];
        #pragma omp simd
        for (size_t c = 0; c < C; c++) dr[c] += yr[c] * (g[c] - dot);
    }
}

ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *x) {
    ag_tensor *y = check(ctx, "softmax", x);
    if (!y) return NULL;
    const size_t M = ag_rows(x), C = ag_cols(x);
    #pragma omp parallel for if (M * C > SM_PAR)
    for (size_t r = 0; r < M; r++) {
        float *yr = y->data + r * C;
        double sum;
        row_exp(x->data + r * C, yr, C, &sum);
        const float inv = (float)(1.0 / sum);
        #pragma omp simd
        for (size_t c = 0; c < C; c++) yr[c] *= inv;
    }
    ag_record(ctx, "softmax", softmax_backward, y, 1, &x);
    return ctx->status == TPSC_OK ? y : NULL;
}

/* y = log_softmax(x): dx = dy - softmax(x) sum_c dy, softmax(x) = exp(y). */
static void log_softmax_backward(ag_ctx *ctx, ag_node *n) {
    float *dx = ag_grad(ctx, n->in[0]);
    if (!dx) return;
    const ag_tensor *y = n->out;
    const size_t M = ag_rows(y), C = ag_cols(y);
    #pragma omp parallel for if (M * C > SM_PAR)
    for (size_t r = 0; r < M; r++) {
        const float *yr = y->data + r * C, *g = y->grad + r * C;
        float gsum = 0.0f;
        #pragma omp simd reduction(+ : gsum)
        for (size_t c = 0; c < C; c++) gsum += g[c];
        float *dr = dx + r * C;
        #pragma omp simd
        for (size_t c = 0; c < C; c++) dr[c] += g[c] - vm_expf(yr[c]) * gsum;
    }
}

ag_tensor *ag_log_softmax(ag_ctx *ctx, ag_tensor *x) {
    ag_tensor *y = check(ctx, "log_softmax", x);
    if (!y) return NULL;
    const size_t M = ag_rows(x), C = ag_cols(x);
    #pragma omp parallel for if (M * C > SM_PAR)
    for (size_t r = 0; r < M; r++) {
        const float *xr = x->data + r * C;
        float *yr = y->data + r * C;
        double sum;
        /* yr holds the exps for a moment, then the log-probabilities. */
        const float mx = row_exp(xr, yr, C, &sum);
        /* (x - max) - log sum, not x - (max + log sum): the latter rounds at |max|'s scale. */
        const float log_sum = (float)log(sum);
        #pragma omp simd
        for (size_t c = 0; c < C; c++) yr[c] = (xr[c] - mx) - log_sum;
    }
    ag_record(ctx, "log_softmax", log_softmax_backward, y, 1, &x);
    return ctx->status == TPSC_OK ? y : NULL;
}
