/* Linear layers fused with their neighbours in a transformer block, x [M,Cin] as rows:
 *   ag_linear_residual       y = r + x w^T + b          attention proj and its residual
 *   ag_gelu_linear_residual  y = r + gelu(x) w^T + b    MLP fc2 with the GELU before it and the
 *                                                        residual after it
 * w [Cout,Cin], b [Cout] or NULL, r [M,Cout] (y's shape) or NULL.
 *
 * Why fuse: the unfused chain stores every intermediate for the whole step. The residual add
 * needs none of its inputs for backward, so adding r and b as the GEMM stores y
 * (ag_gemm_linear) drops the linear's own output: [M,Cout] floats per layer. The GELU output
 * is needed only by the fc2 weight gradient; recomputing it in backward (a few flops per
 * element next to the Cout-long dot products) drops [M,4C] floats per block, the widest
 * activation of the MLP. The GELU values live in pool scratch (ag_scratch_get) only while one
 * op runs, and the same buffer then serves as a gradient. In BF16 the GELU values are only
 * ever a GEMM operand, so they are rounded as they are computed and never stored as floats;
 * and the GELU's input may itself be kept as bf16 only (fc1's output, as PyTorch's autocast
 * keeps it), read and widened here, forward and backward.
 *
 * Backward:  dr += dy;  dw += dy^T g;  db += sum_M dy;  with g = x or gelu(x):
 *   linear:  dx += dy w
 *   gelu:    dx += (dy w) * gelu'(x),  gelu'(x) = Phi(x) + x phi(x). */
#include <omp.h>
#include <pthread.h>
#include <string.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "src/common/bf16_round.h"
#include "src/common/vecmath.h"

#define FL_PAR 32768 /* element count above which an element loop is worth threads */

enum { IN_X, IN_W, IN_B, IN_R };

/* gelu'(x) = Phi(x) + x phi(x), from Phi(x) = cdf (the passes compute Phi once for both) */
static inline float gelu_slope(float x, float cdf) { return cdf + x * vm_normal_pdf(x); }

/* g [n] = gelu(x [n]) */
static void gelu_into(float *g, const float *x, size_t n) {
    #pragma omp parallel for simd if (parallel: n > FL_PAR)
    for (size_t i = 0; i < n; i++) g[i] = x[i] * vm_normal_cdf_rational(x[i]);
}

/* h [n] = bf16(gelu(x [n])), the rounding of bf16_round_row */
static void gelu_bf16_into(uint16_t *h, const float *x, size_t n) {
    #pragma omp parallel for simd if (parallel: n > FL_PAR)
    for (size_t i = 0; i < n; i++) h[i] = bf16_from_float(x[i] * vm_normal_cdf_rational(x[i]));
}

/* BF16's backward pass over x: hv [n] = bf16(gelu(x)) when hv is not NULL, and gelu'(x) into
 * hd [n] as bf16, or else into d [n] as floats. Phi(x) serves both. */
static void gelu_grad_bf16(const float *x, size_t n, uint16_t *hv, uint16_t *hd, float *d) {
    if (hd) {
        #pragma omp parallel for simd if (parallel: n > FL_PAR)
        for (size_t i = 0; i < n; i++) {
            const float cdf = vm_normal_cdf_rational(x[i]);
            if (hv) hv[i] = bf16_from_float(x[i] * cdf);
            hd[i] = bf16_from_float(gelu_slope(x[i], cdf));
        }
        return;
    }
    #pragma omp parallel for simd if (parallel: n > FL_PAR)
    for (size_t i = 0; i < n; i++) {
        const float cdf = vm_normal_cdf_rational(x[i]);
        if (hv) hv[i] = bf16_from_float(x[i] * cdf);
        d[i] = gelu_slope(x[i], cdf);
    }
}

/* The GELU of an x kept as bf16 only has 65536 possible inputs, so both of its bf16 results are
 * looked up: gelu_table[h] = bf16(gelu(x)) | bf16(gelu'(x)) << 16 for x the bf16 value h, made
 * by the formulas of the passes above and rounded as they round, so a lookup gives their bits.
 * The 256 KB table stays in L2 beside the streams, and a load replaces a rational function
 * with a division and an exponential, which made those passes compute-bound. */
static uint32_t gelu_table[1u << 16];
static pthread_once_t gelu_table_once = PTHREAD_ONCE_INIT;

static void gelu_table_fill(void) {
    for (uint32_t h = 0; h < (1u << 16); h++) {
        const float v = bf16_to_float((uint16_t)h), cdf = vm_normal_cdf_rational(v);
        gelu_table[h] = (uint32_t)bf16_from_float(v * cdf) | (uint32_t)bf16_from_float(gelu_slope(v, cdf)) << 16;
    }
}

/* hv [n] = bf16(gelu(x)) and, when hd is not NULL, hd [n] = bf16(gelu'(x)), x [n] in bf16 */
static void gelu_lookup(const uint16_t *x, size_t n, uint16_t *hv, uint16_t *hd) {
    pthread_once(&gelu_table_once, gelu_table_fill);
    const uint32_t *t = gelu_table;
    if (hd) {
        #pragma omp parallel for simd if (parallel: n > FL_PAR)
        for (size_t i = 0; i < n; i++) {
            const uint32_t e = t[x[i]];
            if (hv) hv[i] = (uint16_t)e;
            hd[i] = (uint16_t)(e >> 16);
        }
        return;
    }
    #pragma omp parallel for simd if (parallel: n > FL_PAR)
    for (size_t i = 0; i < n; i++) hv[i] = (uint16_t)t[x[i]];
}

/* BF16 with x kept as bf16 only (fc1's output): x's gradient is kept as bf16 only too
 * (x->grad_bf16), which is all that x's producer reads of it (a linear: its products' operand
 * and its bias sums). dy w is stored as bf16 and one pass multiplies it by gelu'(x) (bf16),
 * rounding once more: PyTorch's autocast does the same, its GELU backward running on bf16
 * tensors. Against the float dx it writes a quarter of the bytes of the two passes it replaces. */
static void gelu_backward_kept_bf16(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, const float *dy, float *db, float *dw,
                                    int M, int Cin, int Cout) {
    const size_t MCin = (size_t)M * (size_t)Cin;
    uint16_t *dx = ag_grad_bf16_take(ctx, x);
    if (ctx->status != TPSC_OK) return;
    ag_operand dyo = ag_operand_grad_sums(ctx, dy, M, Cout, db); /* and db += sum_M dy */
    ag_operand gh = dw ? ag_operand_bf16_scratch(ctx, MCin) : (ag_operand){0};
    ag_operand dh = dx ? ag_operand_bf16_scratch(ctx, MCin) : (ag_operand){0};
    if ((dw || dx) && (!dw || gh.h) && (!dx || dh.h)) {
        gelu_lookup(x->bf16, MCin, (uint16_t *)gh.h, (uint16_t *)dh.h);
        if (dw) ag_gemm(ctx, true, false, Cout, Cin, M, 1.0f, dyo, Cout, gh, Cin, 1.0f, dw, Cin);
        if (dx) {
            const ag_operand wo = ag_operand_param(ctx, w->data, (size_t)Cout * Cin);
            ag_gemm_to_bf16(ctx, false, false, M, Cin, Cout, dyo, Cout, wo, Cin, dx, Cin);
            const uint16_t *d = dh.h;
            /* the pass also sums dx by columns for x's producer's bias (fc1's), which then need
             * not read dx again: per thread in double, rows split evenly */
            const int threads = omp_get_max_threads();
            double *part = ctx->status == TPSC_OK ? ag_grad_bf16_sums_new(ctx, x, threads) : NULL;
            if (part) {
                #pragma omp parallel if (MCin > FL_PAR)
                {
                    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
                    const size_t lo = (size_t)M * (size_t)t / (size_t)nt, hi = (size_t)M * (size_t)(t + 1) / (size_t)nt;
                    double *acc = part + (size_t)t * (size_t)Cin;
                    for (size_t r = lo; r < hi; r++) {
                        uint16_t *row = dx + r * (size_t)Cin;
                        const uint16_t *dr = d + r * (size_t)Cin;
                        #pragma omp simd
                        for (int c = 0; c < Cin; c++) {
                            row[c] = bf16_from_float(bf16_to_float(row[c]) * bf16_to_float(dr[c]));
                            acc[c] += bf16_to_float(row[c]);
                        }
                    }
                }
                ag_grad_bf16_sums_fold(x, threads);
            }
        }
    }
    ag_operand_done(ctx, &dh);
    ag_operand_done(ctx, &gh);
    ag_operand_done(ctx, &dyo);
}

/* BF16 with x kept as bf16 only, no GELU (the attention's output before proj): x is the
 * operand as it is, and x's gradient dy w is kept as bf16 only, rounded as it is stored: the
 * values its consumer would round the float gradient to. */
static void linear_backward_kept_bf16(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, const float *dy, float *db, float *dw,
                                      int M, int Cin, int Cout) {
    uint16_t *dx = ag_grad_bf16_take(ctx, x);
    if (ctx->status != TPSC_OK) return;
    ag_operand dyo = ag_operand_grad_sums(ctx, dy, M, Cout, db); /* and db += sum_M dy */
    const ag_operand xo = {.h = x->bf16};
    if (dw) ag_gemm(ctx, true, false, Cout, Cin, M, 1.0f, dyo, Cout, xo, Cin, 1.0f, dw, Cin);
    if (dx)
        ag_gemm_to_bf16(ctx, false, false, M, Cin, Cout, dyo, Cout, ag_operand_param(ctx, w->data, (size_t)Cout * Cin),
                        Cin, dx, Cin);
    ag_operand_done(ctx, &dyo);
}

static void fused_linear_backward(ag_ctx *ctx, ag_node *n) {
    const bool gelu = n->i[0] != 0;
    ag_tensor *x = n->in[IN_X], *w = n->in[IN_W];
    ag_tensor *b = n->i[1] ? n->in[IN_B] : NULL, *r = n->i[2] ? n->in[IN_R] : NULL;
    const int M = (int)ag_rows(x), Cin = (int)ag_cols(x), Cout = (int)w->shape[0];
    const size_t MCin = (size_t)M * (size_t)Cin, MCout = (size_t)M * (size_t)Cout;
    const float *dy = n->out->grad;

    /* dr = dy: r takes dy's buffer when it has no gradient yet (the first consumer of the
     * residual stream to run backward), else dy is added to it. dy stays readable below. */
    bool fresh;
    const bool passed = r && r != x && ag_grad_pass(ctx, n, r);
    float *dr = r && !passed ? ag_grad_write(ctx, r, &fresh) : NULL;
    if (dr && fresh) memcpy(dr, dy, MCout * sizeof(float));
    else if (dr) {
        #pragma omp parallel for simd if (parallel: MCout > FL_PAR)
        for (size_t i = 0; i < MCout; i++) dr[i] += dy[i];
    }
    float *db = b ? ag_grad(ctx, b) : NULL;
    float *dw = ag_grad(ctx, w);
    if (gelu && x->bf16) {
        gelu_backward_kept_bf16(ctx, x, w, dy, db, dw, M, Cin, Cout);
        return;
    }
    if (x->bf16) { /* the proj linear on the attention's output kept as bf16 only */
        linear_backward_kept_bf16(ctx, x, w, dy, db, dw, M, Cin, Cout);
        return;
    }
    float *dx = ag_grad_write(ctx, x, &fresh);
    ag_operand dyo = ag_operand_grad_sums(ctx, dy, M, Cout, db); /* and db += sum_M dy */
    if (!dw && !dx) {
        ag_operand_done(ctx, &dyo);
        return;
    }
    const ag_operand wo = ag_operand_param(ctx, w->data, (size_t)Cout * Cin);
    if (!gelu) {
        if (dw) {
            ag_operand xo = ag_operand_act(ctx, x->data, MCin);
            ag_gemm(ctx, true, false, Cout, Cin, M, 1.0f, dyo, Cout, xo, Cin, 1.0f, dw, Cin);
            ag_operand_done(ctx, &xo);
        }
        if (dx) ag_gemm(ctx, false, false, M, Cin, Cout, 1.0f, dyo, Cout, wo, Cin, fresh ? 0.0f : 1.0f, dx, Cin);
        ag_operand_done(ctx, &dyo);
        return;
    }
    /* One pass over x yields both gelu(x) (into g for dw, or straight into its bf16 operand gh
     * in BF16) and gelu'(x) (into d: dx itself when it is new); Phi(x) is shared, so the
     * recompute costs no more than the unfused backward's derivative pass. g then receives
     * dy w. */
    /* BF16 with a new dx: gelu'(x) goes to bf16 scratch dh, dy w into dx, and one pass
     * multiplies them (ag_gemm_mul); the factor costs 2 bytes a value to write and read, not 4. Rounding gelu' to bf16 is what
     * PyTorch's bf16 autocast does too: its GELU backward runs on bf16 tensors. BF16 adding into
     * an existing dx keeps a float d. FP32 keeps its order (d in dx, g = dy w, then dx *= g),
     * which needs no scratch for d beside g's. */
    const bool bf16 = ctx->precision == AG_BF16;
    ag_operand gh = bf16 && dw ? ag_operand_bf16_scratch(ctx, MCin) : (ag_operand){0};
    ag_operand dh = bf16 && dx && fresh ? ag_operand_bf16_scratch(ctx, MCin) : (ag_operand){0};
    float *g = bf16 ? NULL : ag_scratch_get(ctx, MCin);
    float *d = !dx || (bf16 && fresh) ? NULL : fresh ? dx : ag_scratch_get(ctx, MCin);
    if ((bf16 && dw && !gh.h) || (bf16 && dx && fresh && !dh.h) || (!bf16 && !g) || (dx && !fresh && !d)) {
        ag_operand_done(ctx, &gh);
        ag_operand_done(ctx, &dh);
        ag_operand_done(ctx, &dyo);
        return;
    }
    const float *v = x->data;
    uint16_t *hv = (uint16_t *)gh.h, *hd = (uint16_t *)dh.h;
    if (bf16 && (hd || d)) {
        gelu_grad_bf16(v, MCin, hv, hd, d);
    } else if (d) {
        #pragma omp parallel for simd if (parallel: MCin > FL_PAR)
        for (size_t i = 0; i < MCin; i++) {
            const float cdf = vm_normal_cdf_rational(v[i]);
            g[i] = v[i] * cdf;
            d[i] = gelu_slope(v[i], cdf);
        }
    } else if (bf16) {
        gelu_bf16_into(hv, v, MCin);
    } else {
        gelu_into(g, v, MCin);
    }
    if (dw) {
        ag_operand go = bf16 ? gh : ag_operand_act(ctx, g, MCin);
        ag_gemm(ctx, true, false, Cout, Cin, M, 1.0f, dyo, Cout, go, Cin, 1.0f, dw, Cin);
        ag_operand_done(ctx, &go);
    }
    if (hd) {
        ag_gemm_mul(ctx, M, Cin, Cout, dyo, wo, dh, dx);
        ag_operand_done(ctx, &dh);
    } else if (dx && bf16) {
        g = ag_scratch_get(ctx, MCin);
    }
    if (dx && g) {
        ag_gemm(ctx, false, false, M, Cin, Cout, 1.0f, dyo, Cout, wo, Cin, 0.0f, g, Cin);
        if (fresh) {
            #pragma omp parallel for simd if (parallel: MCin > FL_PAR)
            for (size_t i = 0; i < MCin; i++) dx[i] *= g[i];
        } else {
            #pragma omp parallel for simd if (parallel: MCin > FL_PAR)
            for (size_t i = 0; i < MCin; i++) dx[i] += g[i] * d[i];
            ag_scratch_put(ctx, d, MCin);
        }
    }
    if (g) ag_scratch_put(ctx, g, MCin);
    ag_operand_done(ctx, &dyo);
}

static ag_tensor *fused_linear(ag_ctx *ctx, const char *name, bool gelu, ag_tensor *x, ag_tensor *w, ag_tensor *b,
                               ag_tensor *r) {
    /* BF16 reads an x kept as bf16 only: fc1's output (ag_layernorm_linear_bf16) in the GELU,
     * the attention's (ag_attention_bf16) as proj's operand */
    const bool x_bf16 = ctx->precision == AG_BF16 && x && !x->data && x->bf16;
    if (!(x_bf16 ? ag_ok(ctx, 1, w) : ag_ok(ctx, 2, x, w))) return NULL;
    char sx[64], sw[64], sr[64];
    if (x->ndim < 1 || w->ndim != 2 || ag_cols(x) != w->shape[1] || (b && (b->ndim != 1 || b->shape[0] != w->shape[0])))
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: x %s, weight %s", name, ag_shape_str(x, sx, sizeof sx),
                        ag_shape_str(w, sw, sizeof sw));
    if (!ag_is_contiguous(x) || (r && !ag_is_contiguous(r)))
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: x and the residual must be contiguous", name);
    const int M = (int)ag_rows(x), Cin = (int)ag_cols(x), Cout = (int)w->shape[0];
    size_t shape[AG_MAX_DIMS];
    for (int i = 0; i < x->ndim; i++) shape[i] = x->shape[i];
    shape[x->ndim - 1] = (size_t)Cout;
    ag_tensor *y = ag_new(ctx, x->ndim, shape);
    if (!y) return NULL;
    if (r && !ag_same_shape(r, y))
        return ag_error(ctx, TPSC_ERR_SHAPE, "%s: residual %s must have the output's shape %s", name,
                        ag_shape_str(r, sr, sizeof sr), ag_shape_str(y, sx, sizeof sx));
    /* y [M,Cout] = r + g w^T + b */
    const size_t MCin = (size_t)M * (size_t)Cin;
    const bool gelu_bf16 = gelu && ctx->precision == AG_BF16;
    float *g = gelu_bf16 || x_bf16 ? NULL : gelu ? ag_scratch_get(ctx, MCin) : x->data;
    if (!gelu_bf16 && !x_bf16 && !g) return NULL;
    if (gelu && g) gelu_into(g, x->data, MCin);
    ag_operand go = gelu_bf16 ? ag_operand_bf16_scratch(ctx, MCin)
                    : x_bf16  ? (ag_operand){.h = x->bf16}
                              : ag_operand_act(ctx, g, MCin);
    if (gelu_bf16 && go.h && x_bf16) gelu_lookup(x->bf16, MCin, (uint16_t *)go.h, NULL);
    else if (gelu_bf16 && go.h) gelu_bf16_into((uint16_t *)go.h, x->data, MCin);
    ag_gemm_linear(ctx, M, Cout, Cin, go, ag_operand_param(ctx, w->data, (size_t)Cout * Cin), b ? b->data : NULL,
                   r ? r->data : NULL, y->data);
    ag_operand_done(ctx, &go);
    if (gelu && g) ag_scratch_put(ctx, g, MCin);
    if (ctx->status != TPSC_OK) return NULL;
    /* Absent inputs are passed as x so the node's input slots stay fixed; i[] says which are real. */
    ag_tensor *in[4] = {x, w, b ? b : x, r ? r : x};
    ag_node *node = ag_record(ctx, name, fused_linear_backward, y, 4, in);
    if (node) {
        node->i[0] = gelu;
        node->i[1] = b != NULL;
        node->i[2] = r != NULL;
    }
    return ctx->status == TPSC_OK ? y : NULL;
}

ag_tensor *ag_linear_residual(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_tensor *r) {
    return fused_linear(ctx, "linear_residual", false, x, w, b, r);
}

ag_tensor *ag_gelu_linear_residual(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, ag_tensor *r) {
    return fused_linear(ctx, "gelu_linear_residual", true, x, w, b, r);
}
