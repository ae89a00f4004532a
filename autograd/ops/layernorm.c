/* LayerNorm over the last dim, as torch.nn.LayerNorm: biased variance, eps inside the sqrt.
 *     xhat = (x - mean) * rstd,  rstd = 1 / sqrt(var + eps),  y = xhat * w + b.
 * x [..., C] is seen as rows [M, C]. The forward saves mean and rstd [M] so the backward can
 * rebuild xhat without a second pass over statistics. */
#include <math.h>
#include <omp.h>
#include <string.h>

#include "autograd/ops.h"
#include "autograd/ops/layernorm_rows.h"
#include "src/common/rows.h"

#define LN_PAR 16384
#define LN_COLS 64 /* column block of the w/b gradient reduction */

typedef struct ln_saved {
    float *mean, *rstd; /* [M] */
} ln_saved;

/* One row of dx (stored when fresh, else added): g = dy * w,
 * dx = rstd * (g - mean_c(g) - xhat * mean_c(g * xhat)). */
static inline void ln_backward_row(const float *xr, const float *g, size_t C, const float *wv, float mu, float rs,
                                   float *dr, bool fresh) {
    float sum_g = 0.0f, sum_gx = 0.0f;
    #pragma omp simd reduction(+ : sum_g, sum_gx)
    for (size_t c = 0; c < C; c++) {
        const float gw = g[c] * wv[c];
        sum_g += gw;
        sum_gx += gw * (xr[c] - mu) * rs;
    }
    const float mg = sum_g / (float)C, mgx = sum_gx / (float)C;
    /* Stored or added: multiplying stale pool memory by 0 would keep a NaN. */
    if (fresh) {
        #pragma omp simd
        for (size_t c = 0; c < C; c++) dr[c] = rs * (g[c] * wv[c] - mg - (xr[c] - mu) * rs * mgx);
    } else {
        #pragma omp simd
        for (size_t c = 0; c < C; c++) dr[c] += rs * (g[c] * wv[c] - mg - (xr[c] - mu) * rs * mgx);
    }
}

/* dx as above;  dw += sum_M dy * xhat;  db += sum_M dy, each sum in double. */
void ln_backward_rows(const float *xv, const float *dy, size_t M, size_t C, const float *wv, const float *mean,
                      const float *rstd, float *dx, bool fresh, float *dw, float *db, double *part) {
    if (dx && (dw || db) && part) {
        /* One pass: each thread takes a run of rows, writes their dx and sums their dw and db
         * terms into its own part [2,C]; the parts are added once at the end. */
        const int threads = omp_get_max_threads();
        memset(part, 0, 2 * (size_t)threads * C * sizeof(double));
        #pragma omp parallel if (M * C > LN_PAR)
        {
            const size_t t = (size_t)omp_get_thread_num(), nt = (size_t)omp_get_num_threads();
            double *aw = part + 2 * t * C, *ab = aw + C;
            for (size_t r = M * t / nt; r < M * (t + 1) / nt; r++) {
                const float *xr = xv + r * C, *g = dy + r * C;
                const float mu = mean[r], rs = rstd[r];
                ln_backward_row(xr, g, C, wv, mu, rs, dx + r * C, fresh);
                #pragma omp simd
                for (size_t c = 0; c < C; c++) {
                    aw[c] += (double)(g[c] * (xr[c] - mu) * rs);
                    ab[c] += (double)g[c];
                }
            }
        }
        for (size_t c = 0; c < C; c++) {
            double sw = 0.0, sb = 0.0;
            for (int t = 0; t < threads; t++) sw += part[2 * (size_t)t * C + c], sb += part[(2 * (size_t)t + 1) * C + c];
            if (dw) dw[c] += (float)sw;
            if (db) db[c] += (float)sb;
        }
        return;
    }
    if (dx) {
        #pragma omp parallel for if (M * C > LN_PAR)
        for (size_t r = 0; r < M; r++) ln_backward_row(xv + r * C, dy + r * C, C, wv, mean[r], rstd[r], dx + r * C, fresh);
    }
    if (dw || db) {
        /* Column blocks to threads, so no two threads add into the same dw/db entry. */
        const size_t blocks = (C + LN_COLS - 1) / LN_COLS;
        #pragma omp parallel for if (M * C > LN_PAR && blocks > 1)
        for (size_t blk = 0; blk < blocks; blk++) {
            const size_t c0 = blk * LN_COLS, wd = C - c0 < LN_COLS ? C - c0 : LN_COLS;
            double aw[LN_COLS] = {0}, ab[LN_COLS] = {0};
            for (size_t r = 0; r < M; r++) {
                const float *xr = xv + r * C + c0, *g = dy + r * C + c0;
                const float mu = mean[r], rs = rstd[r];
                #pragma omp simd
                for (size_t c = 0; c < wd; c++) {
                    aw[c] += (double)(g[c] * (xr[c] - mu) * rs);
                    ab[c] += (double)g[c];
                }
            }
            for (size_t c = 0; c < wd; c++) {
                if (dw) dw[c0 + c] += (float)aw[c];
                if (db) db[c0 + c] += (float)ab[c];
            }
        }
    }
}

/* ln_backward_rows' part for ctx: BF16 sums dw and db in the dx pass (dx, x and dy read once);
 * FP32 keeps the second pass over column blocks, whose sums in row order keep its results as
 * they were. NULL in FP32 or when out of memory (ctx's error is then set). */
double *ln_backward_part(ag_ctx *ctx, size_t C) {
    if (ctx->precision != AG_BF16) return NULL;
    return ag_alloc(ctx, 2 * (size_t)omp_get_max_threads() * C * sizeof(double));
}

void ln_forward_rows(const float *x, size_t M, size_t C, const float *wv, const float *bv, float eps, float *y,
                     float *mean, float *rstd) {
    #pragma omp parallel for if (M * C > LN_PAR)
    for (size_t r = 0; r < M; r++) {
        float mu, rs;
        row_layernorm(x + r * C, C, wv, bv, eps, y + r * C, &mu, &rs);
        if (mean) {
            mean[r] = mu;
            rstd[r] = rs;
        }
    }
}

static void layernorm_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *x = n->in[0], *w = n->in[1], *b = n->in[2];
    const ln_saved *s = n->saved;
    bool fresh; /* every row of dx is written: a new buffer is stored into, not zeroed and added to */
    float *dx = ag_grad_write(ctx, x, &fresh), *dw = ag_grad(ctx, w), *db = ag_grad(ctx, b);
    ln_backward_rows(x->data, n->out->grad, ag_rows(x), ag_cols(x), w->data, s->mean, s->rstd, dx, fresh, dw, db,
                     ln_backward_part(ctx, ag_cols(x)));
}

ag_tensor *ag_layernorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, float eps) {
    if (!ag_ok(ctx, 3, x, w, b)) return NULL;
    char sx[64], sw[64], sb[64];
    const size_t C = ag_cols(x);
    if (x->ndim < 1 || C == 0 || w->ndim != 1 || b->ndim != 1 || w->shape[0] != C || b->shape[0] != C)
        return ag_error(ctx, TPSC_ERR_SHAPE, "layernorm: x %s, weight %s, bias %s: weight and bias must be [C] of x's last dim",
                        ag_shape_str(x, sx, sizeof sx), ag_shape_str(w, sw, sizeof sw), ag_shape_str(b, sb, sizeof sb));
    if (!ag_is_contiguous(x))
        return ag_error(ctx, TPSC_ERR_SHAPE, "layernorm: x %s must be contiguous", ag_shape_str(x, sx, sizeof sx));
    if (!(eps >= 0.0f)) return ag_error(ctx, TPSC_ERR_ARG, "layernorm: eps %g must be >= 0", (double)eps);
    const size_t M = ag_rows(x);
    ag_tensor *y = ag_new(ctx, x->ndim, x->shape);
    if (!y) return NULL;
    ag_tensor *in[3] = {x, w, b};
    ln_saved *s = NULL;
    if (ag_needs_grad(ctx, 3, in)) {
        s = ag_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        s->mean = ag_alloc(ctx, M * sizeof(float));
        s->rstd = ag_alloc(ctx, M * sizeof(float));
        if (!s->mean || !s->rstd) return NULL;
    }
    ln_forward_rows(x->data, M, C, w->data, b->data, eps, y->data, s ? s->mean : NULL, s ? s->rstd : NULL);
    ag_node *n = ag_record(ctx, "layernorm", layernorm_backward, y, 3, in);
    if (n) n->saved = s;
    return ctx->status == TPSC_OK ? y : NULL;
}
