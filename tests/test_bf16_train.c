/* BF16 precision of the training GEMMs (autograd/gemm.h): every op that multiplies matrices,
 * run with AG_BF16, against the same op with AG_FP32 on the same inputs; the kernel itself
 * against a double reference; a 20-step training trajectory of a tiny model; and the error
 * where BF16 cannot run. Gradient checks stay FP32 (test_ops_*.c).
 *
 * The tolerance, from bf16's 8-bit significand: rounding to bf16 has unit roundoff
 * u = 2^-8, so each operand value carries a relative error of at most u, and one product term
 * a_k b_k at most 2u + u^2. oneDNN accumulates in FP32, adding at most gamma_K = K 2^-24
 * (relative to the absolute sum) for a K-term dot product. So, element by element,
 *     |y_bf16 - y_exact| <= (2u + u^2 + K 2^-24) * sum_k |a_k| |b_k|,
 * and FP32's own error against exact is within gamma_K of the same sum. The tests compute
 * sum_k |a_k||b_k| by running the same op in FP32 on |inputs| (and |dy| for gradients), and
 * allow BF_C = 2u + u^2 + 2 K 2^-24 times it, with K from the op's shapes. That bound is a
 * worst case; the tests also require some element to differ from FP32, so a kernel that
 * silently ran FP32 fails. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "src/common/bf16_round.h"
#include "src/model/vit.h"
#include "src/optim/adamw.h"
#include "src/optim/param_groups.h"
#include "src/util/rng.h"
#include "support/layernorm_chain.h"

#define U_BF16 (1.0 / 256.0) /* 2^-8 */

static double bf_c(size_t K) { return 2.0 * U_BF16 + U_BF16 * U_BF16 + 2.0 * (double)K * ldexp(1.0, -24); }

static void need_bf16(void) {
    if (ag_bf16_available() != TPSC_OK) cr_skip_test("no BF16 here: %s", tpsc_last_error());
}

static void fill(float *x, size_t n, uint64_t seed, float scale) {
    tpsc_rng rng = tpsc_rng_keyed(seed, 7, 0, 0);
    for (size_t i = 0; i < n; i++) x[i] = scale * tpsc_rng_normal(&rng);
}

/* ---- the kernel -------------------------------------------------------------------------- */

/* ag_gemm against a double reference for every transpose pair, alpha, beta and padded row
 * strides (an op may hand it slices of a wider matrix; oneDNN then runs its non-AMX GEMM), with
 * the output taller than wide and wider than tall (a^T b wider than tall is computed as its
 * transpose). */
Test(bf16_train, gemm_kernel_within_the_bf16_bound) {
    need_bf16();
    const int K = 53, pad = 3;
    for (int case_ = 0; case_ < 16; case_++) {
        const bool ta = case_ & 1, tb = case_ & 2, acc = case_ & 4, wide = case_ & 8;
        const int M = wide ? 29 : 37, N = wide ? 37 : 29;
        const float alpha = acc ? 0.125f : 1.0f, beta = acc ? 1.0f : 0.0f;
        const int ra = ta ? K : M, ca = ta ? M : K, rb = tb ? N : K, cb = tb ? K : N;
        const int lda = ca + pad, ldb = cb + pad, ldy = N + pad;
        float *a = malloc(sizeof(float) * (size_t)ra * lda), *b = malloc(sizeof(float) * (size_t)rb * ldb);
        float *y = malloc(sizeof(float) * (size_t)M * ldy), *y0 = malloc(sizeof(float) * (size_t)M * ldy);
        cr_assert(a && b && y && y0);
        fill(a, (size_t)ra * lda, 1 + case_, 1.0f);
        fill(b, (size_t)rb * ldb, 100 + case_, 1.0f);
        fill(y0, (size_t)M * ldy, 200 + case_, 1.0f);
        memcpy(y, y0, sizeof(float) * (size_t)M * ldy);
        ag_ctx *ctx = ag_ctx_create(0);
        cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK, "%s", tpsc_last_error());
        ag_operand ao = ag_operand_act(ctx, a, (size_t)ra * lda), bo = ag_operand_act(ctx, b, (size_t)rb * ldb);
        ag_gemm(ctx, ta, tb, M, N, K, alpha, ao, lda, bo, ldb, beta, y, ldy);
        ag_operand_done(ctx, &bo);
        ag_operand_done(ctx, &ao);
        cr_assert_eq(ag_ctx_status(ctx), TPSC_OK, "%s", tpsc_last_error());
        double worst = 0, max_diff = 0;
        for (int i = 0; i < M; i++)
            for (int j = 0; j < N; j++) {
                double exact = 0, absum = 0;
                for (int k = 0; k < K; k++) {
                    const double av = ta ? a[(size_t)k * lda + i] : a[(size_t)i * lda + k];
                    const double bv = tb ? b[(size_t)j * ldb + k] : b[(size_t)k * ldb + j];
                    exact += av * bv, absum += fabs(av * bv);
                }
                const double want = alpha * exact + beta * y0[(size_t)i * ldy + j];
                const double diff = fabs(y[(size_t)i * ldy + j] - want);
                /* + one FP32 rounding of the output and of the beta add */
                const double tol = alpha * bf_c((size_t)K) * absum + ldexp(fabs(want), -23);
                if (diff / tol > worst) worst = diff / tol;
                if (diff > max_diff) max_diff = diff;
            }
        cr_assert(worst <= 1.0, "case %dx%d ta %d tb %d alpha %g beta %g: error %.3g x the bf16 bound", M, N, ta, tb,
                  alpha, beta, worst);
        cr_assert(max_diff > 1e-4, "case ta %d tb %d: the result matches FP32 (max diff %g): bf16 did not run", ta, tb,
                  max_diff);
        /* The padding between rows is not written. */
        for (int i = 0; i < M; i++)
            for (int j = N; j < ldy; j++) cr_assert_eq(y[(size_t)i * ldy + j], y0[(size_t)i * ldy + j]);
        ag_ctx_free(ctx);
        free(a), free(b), free(y), free(y0);
    }
}

/* (a b)[i,j] in double for a [M,K], b [K,N]; *absum = sum_k |a_ik b_kj|, what the bounds scale. */
static double exact_dot(const float *a, const float *b, int i, int j, int K, int N, double *absum) {
    double exact = 0, abs_sum = 0;
    for (int k = 0; k < K; k++) {
        const double t = (double)a[i * K + k] * b[k * N + j];
        exact += t, abs_sum += fabs(t);
    }
    *absum = abs_sum;
    return exact;
}

/* ag_gemm_mul, y = (a b) * m, in both precisions against a double reference: FP32 within
 * gamma_K of sum_k |a_k b_k| times |m| (plus one rounding of the product), BF16 within the bf16
 * bound of the same, and some element different from FP32's, so the BF16 product ran. */
Test(bf16_train, gemm_mul_within_its_bound_in_both_precisions) {
    need_bf16();
    const int M = 23, N = 31, K = 45;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *m = malloc(sizeof(float) * M * N);
    float *y[2] = {malloc(sizeof(float) * M * N), malloc(sizeof(float) * M * N)};
    cr_assert(a && b && m && y[0] && y[1]);
    fill(a, (size_t)M * K, 11, 1.0f), fill(b, (size_t)K * N, 12, 1.0f), fill(m, (size_t)M * N, 13, 1.0f);
    for (int p = 0; p < 2; p++) {
        ag_ctx *ctx = ag_ctx_create(0);
        cr_assert_eq(ag_set_precision(ctx, p ? AG_BF16 : AG_FP32), TPSC_OK, "%s", tpsc_last_error());
        ag_operand ao = ag_operand_act(ctx, a, (size_t)M * K), bo = ag_operand_act(ctx, b, (size_t)K * N);
        ag_gemm_mul(ctx, M, N, K, ao, bo, (ag_operand){.f = m}, y[p]);
        ag_operand_done(ctx, &bo);
        ag_operand_done(ctx, &ao);
        cr_assert_eq(ag_ctx_status(ctx), TPSC_OK, "%s", tpsc_last_error());
        ag_ctx_free(ctx);
    }
    double max_diff = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double absum;
            const double exact = exact_dot(a, b, i, j, K, N, &absum);
            const double mv = m[i * N + j], want = exact * mv;
            const double tol32 = (double)K * ldexp(1.0, -24) * absum * fabs(mv) + ldexp(fabs(want), -23);
            const double tol16 = bf_c((size_t)K) * absum * fabs(mv) + ldexp(fabs(want), -23);
            cr_assert(fabs(y[0][i * N + j] - want) <= tol32, "fp32 y[%d,%d] = %.8g, want %.8g", i, j, y[0][i * N + j], want);
            cr_assert(fabs(y[1][i * N + j] - want) <= tol16, "bf16 y[%d,%d] = %.8g, want %.8g", i, j, y[1][i * N + j], want);
            max_diff = fmax(max_diff, fabs((double)y[1][i * N + j] - y[0][i * N + j]));
        }
    cr_assert(max_diff > 0, "bf16 equals fp32 everywhere: bf16 did not run");
    free(a), free(b), free(m), free(y[0]), free(y[1]);
}

/* ag_gemm_mul with a bf16 factor m.h (the GELU derivative before fc2's dx), against a double
 * reference on the unrounded m. m_h = m (1 + e), |e| <= u, adds one relative error u of the
 * exact product to the bound above: |y - ab m| <= (bf_c(K) (1 + u) + u) sum_k |a_k b_k| |m|
 * plus one rounding of the product. And m_h must be read exactly: y equals, bit for bit, the
 * same product with the float factor bf16(m) (widening bf16 to float is exact). */
Test(bf16_train, gemm_mul_with_a_bf16_factor_within_its_bound) {
    need_bf16();
    const int M = 23, N = 31, K = 45;
    const size_t MN = (size_t)M * N;
    float *a = malloc(sizeof(float) * M * K), *b = malloc(sizeof(float) * K * N), *m = malloc(sizeof(float) * MN);
    float *mr = malloc(sizeof(float) * MN), *y = malloc(sizeof(float) * MN), *yr = malloc(sizeof(float) * MN);
    uint16_t *mh = malloc(sizeof(uint16_t) * MN);
    cr_assert(a && b && m && mr && y && yr && mh);
    fill(a, (size_t)M * K, 21, 1.0f), fill(b, (size_t)K * N, 22, 1.0f), fill(m, MN, 23, 1.0f);
    for (size_t i = 0; i < MN; i++) mh[i] = bf16_from_float(m[i]), mr[i] = bf16_to_float(mh[i]);
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK, "%s", tpsc_last_error());
    ag_operand ao = ag_operand_act(ctx, a, (size_t)M * K), bo = ag_operand_act(ctx, b, (size_t)K * N);
    ag_gemm_mul(ctx, M, N, K, ao, bo, (ag_operand){.h = mh}, y);
    ag_gemm_mul(ctx, M, N, K, ao, bo, (ag_operand){.f = mr}, yr);
    ag_operand_done(ctx, &bo);
    ag_operand_done(ctx, &ao);
    cr_assert_eq(ag_ctx_status(ctx), TPSC_OK, "%s", tpsc_last_error());
    ag_ctx_free(ctx);
    int rounded = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double absum;
            const double exact = exact_dot(a, b, i, j, K, N, &absum);
            const size_t e = (size_t)i * N + j;
            const double mv = m[e], want = exact * mv;
            const double tol = (bf_c((size_t)K) * (1.0 + U_BF16) + U_BF16) * absum * fabs(mv) + ldexp(fabs(want), -23);
            cr_assert(fabs(y[e] - want) <= tol, "y[%d,%d] = %.8g, want %.8g (bound %.3g)", i, j, y[e], want, tol);
            cr_assert(y[e] == yr[e], "y[%d,%d] = %.8g, but %.8g with the factor widened first", i, j, y[e], yr[e]);
            rounded += mr[e] != m[e];
        }
    cr_assert(rounded > 0, "no factor changed when rounded to bf16: the test cannot tell");
    free(a), free(b), free(m), free(mr), free(y), free(yr), free(mh);
}

/* Two threads running the same product shape at the same moment (as matmul's batch and the
 * attention's heads do inside a parallel region) get exactly what one thread gets alone: the
 * kernel's scratch (where a transposed operand is copied) must not be shared between them.
 * Reference: the same ag_gemm call made by one thread of the region while the other waits;
 * tolerance: none, the same primitive on the same data is deterministic. With a scratch shared
 * by the threads, a few of these rounds per thread came out wrong. */
Test(bf16_train, gemm_same_shape_on_two_threads_at_once) {
    need_bf16();
    if (omp_get_max_threads() < 2) omp_set_num_threads(2);
    const int M = 13, N = 17, K = 21, rounds = 50000;
    float *a[2], *b = malloc(sizeof(float) * (size_t)N * K), *ref[2];
    cr_assert_not_null(b);
    fill(b, (size_t)N * K, 11, 1.0f);
    for (int t = 0; t < 2; t++) {
        a[t] = malloc(sizeof(float) * (size_t)K * M), ref[t] = malloc(sizeof(float) * (size_t)M * N);
        cr_assert(a[t] && ref[t]);
        fill(a[t], (size_t)K * M, 12 + (uint64_t)t, 1.0f);
    }
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK, "%s", tpsc_last_error());
    const size_t hb = ag_operand_bytes(ctx, (size_t)K * M);
    uint16_t *ha[2] = {malloc(hb), malloc(hb)}, *hbuf = malloc(ag_operand_bytes(ctx, (size_t)N * K));
    cr_assert(ha[0] && ha[1] && hbuf);
    const ag_operand bo = ag_operand_into(ctx, b, (size_t)N * K, hbuf);
    const ag_operand ao[2] = {ag_operand_into(ctx, a[0], (size_t)K * M, ha[0]),
                              ag_operand_into(ctx, a[1], (size_t)K * M, ha[1])};
    int wrong[2] = {0, 0}, team = 0;
    #pragma omp parallel num_threads(2)
    {
        const int t = omp_get_thread_num();
        #pragma omp single
        {
            team = omp_get_num_threads();
            for (int i = 0; i < 2; i++) ag_gemm(ctx, true, true, M, N, K, 1.0f, ao[i], M, bo, K, 0.0f, ref[i], N);
        }
        float *y = malloc(sizeof(float) * (size_t)M * N);
        for (int r = 0; y && r < rounds; r++) {
            ag_gemm(ctx, true, true, M, N, K, 1.0f, ao[t], M, bo, K, 0.0f, y, N);
            if (memcmp(y, ref[t], sizeof(float) * (size_t)M * N) != 0) wrong[t]++;
        }
        if (!y) wrong[t] = -1;
        free(y);
    }
    cr_assert_eq(ag_ctx_status(ctx), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(team, 2, "the region ran on %d thread(s): the race cannot show", team);
    cr_assert(wrong[0] == 0 && wrong[1] == 0, "products that differ from one thread's: %d and %d of %d per thread",
              wrong[0], wrong[1], rounds);
    ag_ctx_free(ctx);
    for (int t = 0; t < 2; t++) free(a[t]), free(ref[t]), free(ha[t]);
    free(b), free(hbuf);
}

/* ---- ops: BF16 against FP32 ------------------------------------------------------------- */

typedef ag_tensor *(*op_fn)(ag_ctx *ctx, ag_tensor **in);

typedef struct op_run {
    float *out;
    float *grad[4];
    size_t n_out;
} op_run;

/* Runs f on copies of the inputs (abs_inputs: their absolute values; zero_extra: inputs from
 * index n_prod on are zeroed, they are added, not multiplied) in `precision`, seeds the output's
 * gradient with dy (or |dy|), and keeps the output and every input's gradient. */
static op_run run_op(op_fn f, int n_in, const int *ndim, const size_t (*shape)[AG_MAX_DIMS], float *const *data,
                     const float *dy, ag_precision precision, bool abs_inputs, int n_prod) {
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_not_null(ctx);
    cr_assert_eq(ag_set_precision(ctx, precision), TPSC_OK, "%s", tpsc_last_error());
    ag_tensor *in[4];
    size_t numel[4];
    for (int i = 0; i < n_in; i++) {
        ag_tensor *t = ag_new(ctx, ndim[i], shape[i]);
        cr_assert_not_null(t);
        numel[i] = ag_numel(t);
        for (size_t j = 0; j < numel[i]; j++)
            t->data[j] = !abs_inputs ? data[i][j] : i >= n_prod ? 0.0f : fabsf(data[i][j]);
        t->requires_grad = true;
        t->retain_grad = true;
        in[i] = t;
    }
    ag_tensor *y = f(ctx, in);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    op_run r = {.n_out = ag_numel(y)};
    float *seed = malloc(r.n_out * sizeof *seed);
    for (size_t j = 0; j < r.n_out; j++) seed[j] = abs_inputs ? fabsf(dy[j]) : dy[j];
    cr_assert_eq(ag_backward_from(ctx, y, seed), TPSC_OK, "%s", tpsc_last_error());
    r.out = malloc(r.n_out * sizeof *r.out);
    memcpy(r.out, y->data, r.n_out * sizeof *r.out);
    for (int i = 0; i < n_in; i++) {
        r.grad[i] = malloc(numel[i] * sizeof(float));
        cr_assert_not_null(in[i]->grad, "input %d got no gradient", i);
        memcpy(r.grad[i], in[i]->grad, numel[i] * sizeof(float));
    }
    free(seed);
    ag_ctx_free(ctx);
    return r;
}

static void free_run(op_run *r, int n_in) {
    free(r->out);
    for (int i = 0; i < n_in; i++) free(r->grad[i]);
}

/* |bf - fp| <= bf_c(K) * bound + 2^-22 |fp| element by element (the last term: FP32's own
 * roundings of the adds outside the products, e.g. bias and residual); returns the largest
 * |bf - fp| so the caller can check that BF16 ran. */
static double expect_within(const float *bf, const float *fp, const float *bound, size_t n, size_t K, const char *what) {
    double max_diff = 0;
    for (size_t j = 0; j < n; j++) {
        const double diff = fabs((double)bf[j] - fp[j]);
        const double tol = bf_c(K) * bound[j] + ldexp(fabs(fp[j]), -22) + 1e-30;
        cr_assert(diff <= tol, "%s[%zu]: bf16 %.8g vs fp32 %.8g, diff %.3g > bound %.3g", what, j, bf[j], fp[j], diff,
                  tol);
        if (diff > max_diff) max_diff = diff;
    }
    return max_diff;
}

static ag_tensor *op_linear(ag_ctx *ctx, ag_tensor **in) { return ag_linear(ctx, in[0], in[1], in[2]); }
static ag_tensor *op_linear_res(ag_ctx *ctx, ag_tensor **in) {
    return ag_linear_residual(ctx, in[0], in[1], in[2], in[3]);
}
/* gelu(|x|) >= |gelu(x)| and gelu'(|x|) >= |gelu'(x)| (gelu'(-t) = 1 - gelu'(t), gelu'(t) >= 1/2
 * for t >= 0), so the |inputs| run bounds the GELU's factors too. In BF16 gelu'(x) reaches dx
 * rounded to bf16, one more relative error u of dx itself; the bound, derived for two rounded
 * factors, is kept: dx's rounding errors stay well inside it (this test fails if they do not). */
static ag_tensor *op_gelu_linear_res(ag_ctx *ctx, ag_tensor **in) {
    return ag_gelu_linear_residual(ctx, in[0], in[1], in[2], in[3]);
}

/* x [B=3,N=11,Cin=40], w [Cout=24,Cin], b [Cout], r [3,11,Cout]: odd sizes, K up to 33. */
static void check_linear_op(op_fn f, int n_in, const char *name) {
    const size_t B = 3, N = 11, Cin = 40, Cout = 24, M = B * N;
    const int ndim[4] = {3, 2, 1, 3};
    const size_t shape[4][AG_MAX_DIMS] = {{B, N, Cin}, {Cout, Cin}, {Cout}, {B, N, Cout}};
    const size_t numel[4] = {M * Cin, Cout * Cin, Cout, M * Cout};
    float *data[4], *dy = malloc(M * Cout * sizeof *dy);
    for (int i = 0; i < n_in; i++) {
        data[i] = malloc(numel[i] * sizeof(float));
        fill(data[i], numel[i], 10 + (uint64_t)i, i == 1 ? 0.2f : 1.0f);
    }
    fill(dy, M * Cout, 99, 1.0f);
    op_run fp = run_op(f, n_in, ndim, shape, data, dy, AG_FP32, false, 2);
    op_run bf = run_op(f, n_in, ndim, shape, data, dy, AG_BF16, false, 2);
    op_run ab = run_op(f, n_in, ndim, shape, data, dy, AG_FP32, true, 2);
    double d = 0;
    d = fmax(d, expect_within(bf.out, fp.out, ab.out, fp.n_out, Cin, name));
    d = fmax(d, expect_within(bf.grad[0], fp.grad[0], ab.grad[0], numel[0], Cout, "dx"));
    d = fmax(d, expect_within(bf.grad[1], fp.grad[1], ab.grad[1], numel[1], M, "dw"));
    /* bias and residual gradients are sums of dy, no products: FP32 in both, equal */
    for (int i = 2; i < n_in; i++)
        for (size_t j = 0; j < numel[i]; j++)
            cr_assert_float_eq(bf.grad[i][j], fp.grad[i][j], 1e-6f * (1.0f + fabsf(fp.grad[i][j])), "%s: input %d [%zu]",
                               name, i, j);
    cr_assert(d > 0, "%s: bf16 equals fp32 everywhere: bf16 did not run", name);
    free_run(&fp, n_in), free_run(&bf, n_in), free_run(&ab, n_in);
    for (int i = 0; i < n_in; i++) free(data[i]);
    free(dy);
}

Test(bf16_train, linear_within_the_bf16_bound) {
    need_bf16();
    check_linear_op(op_linear, 3, "linear");
}

Test(bf16_train, linear_residual_within_the_bf16_bound) {
    need_bf16();
    check_linear_op(op_linear_res, 4, "linear_residual");
}

Test(bf16_train, gelu_linear_residual_within_the_bf16_bound) {
    need_bf16();
    check_linear_op(op_gelu_linear_res, 4, "gelu_linear_residual");
}

/* ag_matmul, batched with transposes: a [G,K,M] (trans_a), b [G,N,K] (trans_b). */
static ag_tensor *op_matmul(ag_ctx *ctx, ag_tensor **in) { return ag_matmul(ctx, in[0], in[1], true, true); }

Test(bf16_train, matmul_within_the_bf16_bound) {
    need_bf16();
    const size_t G = 3, M = 13, N = 17, K = 21;
    const int ndim[2] = {3, 3};
    const size_t shape[2][AG_MAX_DIMS] = {{G, K, M}, {G, N, K}};
    float *data[2] = {malloc(G * K * M * sizeof(float)), malloc(G * N * K * sizeof(float))};
    float *dy = malloc(G * M * N * sizeof *dy);
    fill(data[0], G * K * M, 1, 1.0f), fill(data[1], G * N * K, 2, 1.0f), fill(dy, G * M * N, 3, 1.0f);
    op_run fp = run_op(op_matmul, 2, ndim, shape, data, dy, AG_FP32, false, 2);
    op_run bf = run_op(op_matmul, 2, ndim, shape, data, dy, AG_BF16, false, 2);
    op_run ab = run_op(op_matmul, 2, ndim, shape, data, dy, AG_FP32, true, 2);
    double d = expect_within(bf.out, fp.out, ab.out, fp.n_out, K, "matmul");
    d = fmax(d, expect_within(bf.grad[0], fp.grad[0], ab.grad[0], G * K * M, N, "da"));
    d = fmax(d, expect_within(bf.grad[1], fp.grad[1], ab.grad[1], G * N * K, M, "db"));
    cr_assert(d > 0, "matmul: bf16 equals fp32 everywhere");
    free_run(&fp, 2), free_run(&bf, 2), free_run(&ab, 2);
    free(data[0]), free(data[1]), free(dy);
}

/* ag_layernorm_linear keeps the LN output only in bf16 and rounds it as it normalises; the
 * chain ag_layernorm -> ag_linear stores floats and rounds them for each product. The same
 * bf16 values reach the same kernel, so the two must agree bit for bit (the chain itself is
 * held to the bf16 bound by linear_within_the_bf16_bound). */
Test(bf16_train, layernorm_linear_matches_the_chain_in_bf16) {
    need_bf16();
    layernorm_linear_matches_chain(AG_BF16);
}

/* ---- attention --------------------------------------------------------------------------
 * The softmax sits between the two products, so the bound composes. Forward, row i of a head:
 * the scores S' = scale q' k'^T differ from S by at most delta_i = bf_c(D) scale
 * max_j sum_d |q_id||k_jd|; softmax then changes each probability by a factor within
 * exp(+-2 delta_i), |A'_ij - A_ij| <= eps_i A_ij with eps_i = exp(2 delta_i) - 1; and
 * out = A' v rounded adds bf_c(N) relative to sum_j A'_ij |v_jd|. Altogether
 *     |out' - out|_id <= ((1 + eps_i) bf_c(N) + eps_i) sum_j A_ij |v_jd|,
 * computed here in double from the FP32 inputs. Backward chains four rounded products and
 * the perturbed probabilities through the softmax backward, whose row sums cancel; there the
 * check is normwise: ||d(qkv)' - d(qkv)|| <= 8 (2u) ||d(qkv)|| (four products, each of both
 * operands rounded: 4 x 2u, doubled for the perturbed A and dS feeding them).
 * With a policy (0/1 as the hard Gumbel mask gives, or fractional), dP_j = sum_i d a_ij E_ij
 * over the heads takes dA from one rounded product (2u), A and E = exp(S - m) from the
 * rounded S (each a factor within exp(+-2 delta), about 2u here) and the same row sums as dS:
 * normwise ||dP' - dP|| <= 8 (2u) ||dP|| as well. */
enum { NO_POLICY, BINARY_POLICY, FRACTIONAL_POLICY };
static void attention_case(int policy_kind) {
    const bool with_policy = policy_kind != NO_POLICY;
    need_bf16();
    const size_t B = 2, N = 19, H = 3, D = 8, C = H * D, C3 = 3 * C;
    float *qkv = malloc(B * N * C3 * sizeof(float)), *dy = malloc(B * N * C * sizeof(float));
    float *pol = malloc(B * N * sizeof(float));
    fill(qkv, B * N * C3, 5, 1.0f), fill(dy, B * N * C, 6, 1.0f);
    for (size_t i = 0; i < B * N; i++)
        pol[i] = policy_kind == BINARY_POLICY ? ((i % 3) ? 1.0f : 0.0f) : (float)((i * 7) % 11) / 10.0f;
    float *out[2], *grad[2], *dpol[2] = {NULL, NULL};
    for (int p = 0; p < 2; p++) {
        ag_ctx *ctx = ag_ctx_create(0);
        cr_assert_eq(ag_set_precision(ctx, p ? AG_BF16 : AG_FP32), TPSC_OK, "%s", tpsc_last_error());
        ag_tensor *x = ag_new3(ctx, B, N, C3), *pt = with_policy ? ag_new2(ctx, B, N) : NULL;
        memcpy(x->data, qkv, B * N * C3 * sizeof(float));
        if (pt) {
            memcpy(pt->data, pol, B * N * sizeof(float));
            pt->requires_grad = pt->retain_grad = true;
        }
        x->requires_grad = x->retain_grad = true;
        ag_tensor *y = ag_attention(ctx, x, H, pt, NULL);
        cr_assert_not_null(y, "%s", tpsc_last_error());
        cr_assert_eq(ag_backward_from(ctx, y, dy), TPSC_OK, "%s", tpsc_last_error());
        out[p] = malloc(B * N * C * sizeof(float)), grad[p] = malloc(B * N * C3 * sizeof(float));
        memcpy(out[p], y->data, B * N * C * sizeof(float));
        memcpy(grad[p], x->grad, B * N * C3 * sizeof(float));
        if (pt) {
            cr_assert_not_null(pt->grad, "the policy got no gradient");
            dpol[p] = malloc(B * N * sizeof(float));
            memcpy(dpol[p], pt->grad, B * N * sizeof(float));
        }
        ag_ctx_free(ctx);
    }
    const double scale = 1.0 / sqrt((double)D);
    double max_diff = 0;
    double *A = malloc(N * sizeof *A);
    for (size_t b = 0; b < B; b++)
        for (size_t h = 0; h < H; h++)
            for (size_t i = 0; i < N; i++) {
                const float *q = qkv + (b * N + i) * C3 + h * D;
                double delta = 0, m = -INFINITY, z = 0;
                for (size_t j = 0; j < N; j++) {
                    const float *k = qkv + (b * N + j) * C3 + C + h * D;
                    double s = 0, sa = 0;
                    for (size_t d = 0; d < D; d++) s += (double)q[d] * k[d], sa += fabs((double)q[d] * k[d]);
                    A[j] = s * scale;
                    delta = fmax(delta, bf_c(D) * scale * sa);
                    m = fmax(m, A[j]);
                }
                /* With a policy the probabilities are the masked ones; bounding by the unmasked
                 * softmax's per-row factor still holds, as the gates multiply both alike. */
                for (size_t j = 0; j < N; j++) {
                    const double g = !with_policy ? 1.0 : (j == i ? 1.0 : pol[b * N + j]);
                    A[j] = exp(A[j] - m) * g;
                    z += A[j];
                }
                const double eps = exp(4.0 * delta) - 1.0; /* numerator and denominator: 2 delta each */
                for (size_t d = 0; d < D; d++) {
                    double av = 0;
                    for (size_t j = 0; j < N; j++) av += A[j] / z * fabs((double)qkv[(b * N + j) * C3 + 2 * C + h * D + d]);
                    const size_t o = (b * N + i) * C + h * D + d;
                    const double diff = fabs((double)out[1][o] - out[0][o]);
                    const double tol = ((1 + eps) * bf_c(N) + eps) * av + ldexp(fabs(out[0][o]), -20);
                    cr_assert(diff <= tol, "attention out[%zu]: bf16 %.7g fp32 %.7g diff %.3g > %.3g", o, out[1][o],
                              out[0][o], diff, tol);
                    max_diff = fmax(max_diff, diff);
                }
            }
    double num = 0, den = 0;
    for (size_t j = 0; j < B * N * C3; j++) {
        const double e = (double)grad[1][j] - grad[0][j];
        num += e * e, den += (double)grad[0][j] * grad[0][j];
    }
    const double rel = sqrt(num / den);
    cr_assert(rel <= 8 * 2 * U_BF16, "attention d(qkv): relative error %.3g > %.3g", rel, 8 * 2 * U_BF16);
    cr_assert(max_diff > 0 && rel > 0, "attention: bf16 equals fp32: bf16 did not run");
    if (with_policy) {
        num = den = 0;
        for (size_t j = 0; j < B * N; j++) {
            const double e = (double)dpol[1][j] - dpol[0][j];
            num += e * e, den += (double)dpol[0][j] * dpol[0][j];
        }
        const double rel_p = sqrt(num / den);
        cr_assert(den > 0, "the policy gradient is all zero");
        cr_assert(rel_p <= 8 * 2 * U_BF16, "attention d(policy): relative error %.3g > %.3g", rel_p, 8 * 2 * U_BF16);
        cr_assert(rel_p > 0, "attention d(policy): bf16 equals fp32: bf16 did not run");
    }
    free(A), free(qkv), free(dy), free(pol);
    for (int p = 0; p < 2; p++) free(out[p]), free(grad[p]), free(dpol[p]);
}

Test(bf16_train, attention_within_the_bf16_bound) { attention_case(NO_POLICY); }
Test(bf16_train, attention_with_policy_within_the_bf16_bound) { attention_case(BINARY_POLICY); }
Test(bf16_train, attention_with_fractional_policy_within_the_bf16_bound) { attention_case(FRACTIONAL_POLICY); }

/* Backward from y [numel(y)] with the seed values fill(seed) gives; y's values into out, and
 * the float gradient of in[i], i from `first` to n - 1, into grads[i] (an input kept as bf16
 * only has none: the caller reads it). */
static void backward_and_keep(ag_ctx *ctx, ag_tensor *y, uint64_t seed, float *out, ag_tensor **in, int first, int n,
                              float **grads) {
    const size_t numel = ag_numel(y);
    float *dy = malloc(numel * sizeof *dy);
    cr_assert_not_null(dy);
    fill(dy, numel, seed, 1.0f);
    cr_assert_eq(ag_backward_from(ctx, y, dy), TPSC_OK, "%s", tpsc_last_error());
    memcpy(out, y->data, numel * sizeof(float));
    for (int i = first; i < n; i++) {
        cr_assert_not_null(in[i]->grad, "input %d got no gradient", i);
        memcpy(grads[i], in[i]->grad, ag_numel(in[i]) * sizeof(float));
    }
    free(dy);
}

/* ag_layernorm_linear_bf16 keeps qkv as bf16 only, stored by the kernel as it rounds the FP32
 * sums; ag_layernorm_linear stores the floats and attention rounds them itself. Both roundings
 * are to nearest even, so qkv and the attention's output agree bit for bit. qkv's gradient is
 * then kept as bf16 only too: the values the float gradient is rounded to for the qkv linear's
 * products, so the gradients of x, the norm and w agree bit for bit as well; the bias sums the
 * rounded values, within U_BF16 sum_M |d(qkv)| of the float sums. In FP32 the variant is the
 * plain op. dqkv_abs [3C], when not NULL, receives sum_M |d(qkv)| of the run. */
static void qkv_attention(ag_precision precision, bool keep_bf16, float *out, float *grads[5], double *dqkv_abs) {
    const size_t B = 2, N = 19, C = 24, H = 3, C3 = 3 * C;
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, precision), TPSC_OK, "%s", tpsc_last_error());
    ag_tensor *in[5] = {ag_new3(ctx, B, N, C), ag_new1(ctx, C), ag_new1(ctx, C), ag_new2(ctx, C3, C), ag_new1(ctx, C3)};
    for (int i = 0; i < 5; i++) {
        cr_assert_not_null(in[i]);
        fill(in[i]->data, ag_numel(in[i]), 40 + (uint64_t)i, i == 1 ? 0.3f : 1.0f);
        if (i == 1)
            for (size_t j = 0; j < C; j++) in[i]->data[j] += 1.0f;
        in[i]->requires_grad = in[i]->retain_grad = true;
    }
    ag_tensor *qkv = (keep_bf16 ? ag_layernorm_linear_bf16 : ag_layernorm_linear)(ctx, in[0], in[1], in[2], 1e-6f, in[3],
                                                                                 in[4]);
    cr_assert_not_null(qkv, "%s", tpsc_last_error());
    const bool bf16_only = keep_bf16 && precision == AG_BF16;
    cr_assert(bf16_only ? !qkv->data && qkv->bf16 : qkv->data && !qkv->bf16, "qkv kept as %s",
              qkv->data ? "floats" : "bf16");
    qkv->retain_grad = dqkv_abs != NULL;
    ag_tensor *y = ag_attention(ctx, qkv, H, NULL, NULL);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    backward_and_keep(ctx, y, 47, out, in, 0, 5, grads);
    if (dqkv_abs) {
        cr_assert_not_null(qkv->grad);
        for (size_t c = 0; c < C3; c++) {
            dqkv_abs[c] = 0;
            for (size_t r = 0; r < B * N; r++) dqkv_abs[c] += fabs(qkv->grad[r * C3 + c]);
        }
    }
    ag_ctx_free(ctx);
}

Test(bf16_train, qkv_kept_as_bf16_matches_floats) {
    need_bf16();
    const size_t B = 2, N = 19, C = 24, C3 = 3 * C;
    const size_t numel[5] = {B * N * C, C, C, C3 * C, C3};
    double dqkv_abs[72];
    for (int p = 0; p < 2; p++) {
        const ag_precision precision = p ? AG_BF16 : AG_FP32;
        float *out[2], *g[2][5];
        for (int v = 0; v < 2; v++) {
            out[v] = malloc(B * N * C * sizeof(float));
            for (int i = 0; i < 5; i++) g[v][i] = malloc(numel[i] * sizeof(float));
            qkv_attention(precision, v == 1, out[v], g[v], v == 0 ? dqkv_abs : NULL);
        }
        cr_assert(memcmp(out[0], out[1], B * N * C * sizeof(float)) == 0, "%s: attention output differs",
                  ag_precision_name(precision));
        for (int i = 0; i < 4; i++)
            cr_assert(memcmp(g[0][i], g[1][i], numel[i] * sizeof(float)) == 0, "%s: gradient of input %d differs",
                      ag_precision_name(precision), i);
        double max_diff = 0;
        for (size_t c = 0; c < C3; c++) {
            const double diff = fabs((double)g[1][4][c] - g[0][4][c]);
            cr_assert(diff <= U_BF16 * dqkv_abs[c] + ldexp(fabs(g[0][4][c]), -22), "%s: qkv bias gradient [%zu] %.8g vs "
                      "%.8g", ag_precision_name(precision), c, g[1][4][c], g[0][4][c]);
            max_diff = fmax(max_diff, diff);
        }
        if (precision == AG_FP32) cr_assert_eq(max_diff, 0.0, "fp32: the bias gradient differs");
        for (int i = 0; i < 5; i++) free(g[0][i]), free(g[1][i]);
        free(out[0]), free(out[1]);
    }
}

/* ag_attention_bf16 keeps the attention's output as bf16 only, rounded as each head is stored,
 * and proj (ag_linear_residual) takes it as its operand; its gradient is kept as bf16 only
 * too, rounded as proj's backward stores it, and the attention's backward takes it as it is.
 * Both are the roundings the float path makes (proj rounds its float input, the attention
 * rounds dO by heads), so proj's output and every gradient agree bit for bit. */
static void attention_proj(bool keep_bf16, float *out, float *grads[4]) {
    const size_t B = 2, N = 19, C = 24, H = 3, C3 = 3 * C;
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK, "%s", tpsc_last_error());
    ag_tensor *in[4] = {ag_new3(ctx, B, N, C3), ag_new2(ctx, C, C), ag_new1(ctx, C), ag_new3(ctx, B, N, C)};
    for (int i = 0; i < 4; i++) {
        cr_assert_not_null(in[i]);
        fill(in[i]->data, ag_numel(in[i]), 80 + (uint64_t)i, i == 1 ? 0.2f : 1.0f);
        in[i]->requires_grad = in[i]->retain_grad = true;
    }
    ag_tensor *a = (keep_bf16 ? ag_attention_bf16 : ag_attention)(ctx, in[0], H, NULL, NULL);
    cr_assert_not_null(a, "%s", tpsc_last_error());
    cr_assert(keep_bf16 ? !a->data && a->bf16 : a->data && !a->bf16, "attention output kept as %s",
              a->data ? "floats" : "bf16");
    ag_tensor *y = ag_linear_residual(ctx, a, in[1], in[2], in[3]);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    backward_and_keep(ctx, y, 87, out, in, 0, 4, grads);
    ag_ctx_free(ctx);
}

Test(bf16_train, attention_output_kept_as_bf16_matches_floats_bit_for_bit) {
    need_bf16();
    const size_t B = 2, N = 19, C = 24;
    const size_t numel[4] = {B * N * 3 * C, C * C, C, B * N * C};
    float *out[2], *g[2][4];
    for (int v = 0; v < 2; v++) {
        out[v] = malloc(B * N * C * sizeof(float));
        for (int i = 0; i < 4; i++) g[v][i] = malloc(numel[i] * sizeof(float));
        attention_proj(v == 1, out[v], g[v]);
    }
    cr_assert(memcmp(out[0], out[1], B * N * C * sizeof(float)) == 0, "proj output differs");
    for (int i = 0; i < 4; i++) {
        cr_assert(memcmp(g[0][i], g[1][i], numel[i] * sizeof(float)) == 0, "gradient of input %d differs", i);
        free(g[0][i]), free(g[1][i]);
    }
    free(out[0]), free(out[1]);
}

/* ag_gelu_linear_residual on an x kept as bf16 only (fc1's output) reads and widens it: the
 * same output and w, b, r gradients, bit for bit, as on the widened floats. (What keeping x in
 * bf16 changes is x's own rounding, an input perturbation the op's bound test above covers.)
 * x's gradient is then kept as bf16 only, with its column sums: dy w rounded to bf16, times gelu'(x), rounded again,
 * where the float path rounds neither: within two roundings, |dx' - dx| <= 2u |dx| + 2^-22 |dx|
 * element by element, u = 2^-8 (U_BF16). */
static void gelu_linear_on(bool keep_bf16, const float *xv, float *out, float *grads[4]) {
    const size_t M = 33, Cin = 40, Cout = 24;
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK, "%s", tpsc_last_error());
    ag_tensor *x = keep_bf16 ? ag_new_bf16(ctx, 2, (size_t[]){M, Cin}) : ag_new2(ctx, M, Cin);
    ag_tensor *in[4] = {x, ag_new2(ctx, Cout, Cin), ag_new1(ctx, Cout), ag_new2(ctx, M, Cout)};
    for (int i = 0; i < 4; i++) cr_assert_not_null(in[i]);
    for (size_t j = 0; j < M * Cin; j++) {
        const uint16_t h = bf16_from_float(xv[j]);
        if (keep_bf16) x->bf16[j] = h;
        else x->data[j] = bf16_to_float(h);
    }
    for (int i = 1; i < 4; i++) fill(in[i]->data, ag_numel(in[i]), 60 + (uint64_t)i, i == 1 ? 0.2f : 1.0f);
    for (int i = 0; i < 4; i++) in[i]->requires_grad = in[i]->retain_grad = true;
    ag_tensor *y = ag_gelu_linear_residual(ctx, in[0], in[1], in[2], in[3]);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    backward_and_keep(ctx, y, 66, out, in, keep_bf16 ? 1 : 0, 4, grads);
    if (keep_bf16) {
        cr_assert(!x->grad && x->grad_bf16, "x's gradient is not kept as bf16 only");
        for (size_t j = 0; j < M * Cin; j++) grads[0][j] = bf16_to_float(x->grad_bf16[j]);
        /* the column sums made while writing it, for x's producer's bias: sums of the same
         * values in double, so equal to a double reference within its last bits */
        cr_assert_not_null(x->grad_bf16_sums, "x's gradient came without its column sums");
        for (size_t c = 0; c < Cin; c++) {
            double want = 0, mag = 0;
            for (size_t r = 0; r < M; r++) want += grads[0][r * Cin + c], mag += fabs(grads[0][r * Cin + c]);
            cr_assert(fabs(x->grad_bf16_sums[c] - want) <= ldexp(mag, -50), "column sum %zu: %.17g, want %.17g", c,
                      x->grad_bf16_sums[c], want);
        }
    }
    ag_ctx_free(ctx);
}

Test(bf16_train, gelu_linear_on_bf16_x_matches_widened_floats) {
    need_bf16();
    const size_t M = 33, Cin = 40, Cout = 24;
    const size_t numel[4] = {M * Cin, Cout * Cin, Cout, M * Cout};
    float *xv = malloc(M * Cin * sizeof *xv), *out[2], *g[2][4];
    fill(xv, M * Cin, 59, 2.0f);
    for (int v = 0; v < 2; v++) {
        out[v] = malloc(M * Cout * sizeof(float));
        for (int i = 0; i < 4; i++) g[v][i] = malloc(numel[i] * sizeof(float));
        gelu_linear_on(v == 1, xv, out[v], g[v]);
    }
    cr_assert(memcmp(out[0], out[1], M * Cout * sizeof(float)) == 0, "output differs");
    double max_diff = 0;
    for (size_t j = 0; j < numel[0]; j++) {
        const double diff = fabs((double)g[1][0][j] - g[0][0][j]), tol = (2 * U_BF16 + ldexp(1.0, -22)) * fabs(g[0][0][j]);
        cr_assert(diff <= tol, "dx[%zu]: bf16 %.8g vs float path %.8g, diff %.3g > %.3g", j, g[1][0][j], g[0][0][j],
                  diff, tol);
        max_diff = fmax(max_diff, diff);
    }
    cr_assert(max_diff > 0, "dx equals the float path's everywhere: it was not kept as bf16");
    for (int i = 0; i < 4; i++) {
        if (i > 0)
            cr_assert(memcmp(g[0][i], g[1][i], numel[i] * sizeof(float)) == 0, "gradient of input %d differs", i);
        free(g[0][i]), free(g[1][i]);
    }
    free(out[0]), free(out[1]), free(xv);
}

/* A linear's bias gradient from an incoming gradient kept as bf16 takes the column sums its
 * writer made (the writers' sums are checked against a double reference in
 * gelu_linear_on_bf16_x_matches_widened_floats and through the qkv bias in
 * qkv_kept_as_bf16_matches_floats); the operand is the bf16 gradient itself. A bf16 gradient
 * that arrives without its sums is an error that says so, and db is left as it was. */
Test(bf16_train, bias_of_a_bf16_gradient_takes_its_writers_sums) {
    need_bf16();
    const int N = 5;
    const uint16_t dy[5] = {0};
    const double sums[5] = {1.0, -2.0, 0.5, 3.0, 0.25};
    float db[5] = {1, 1, 1, 1, 1};
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK, "%s", tpsc_last_error());
    ag_operand o = ag_operand_grad_bf16_sums(ctx, dy, sums, N, db);
    cr_assert_eq(ag_ctx_status(ctx), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(o.h, dy, "the operand is not the gradient itself");
    for (int c = 0; c < N; c++) cr_assert_eq(db[c], 1.0f + (float)sums[c], "db[%d] = %g", c, (double)db[c]);
    ag_operand_grad_bf16_sums(ctx, dy, NULL, N, db);
    cr_assert_neq(ag_ctx_status(ctx), TPSC_OK, "a bf16 gradient without its sums was accepted");
    cr_assert(strstr(tpsc_last_error(), "column sums") != NULL, "message: %s", tpsc_last_error());
    for (int c = 0; c < N; c++) cr_assert_eq(db[c], 1.0f + (float)sums[c], "db[%d] changed", c);
    ag_ctx_free(ctx);
}

/* An op that reads FP32 values refuses a tensor kept as bf16 only, with a message, not a crash. */
Test(bf16_train, bf16_only_tensor_is_refused_by_fp32_ops) {
    need_bf16();
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK, "%s", tpsc_last_error());
    ag_tensor *x = ag_new_bf16(ctx, 2, (size_t[]){3, 4});
    cr_assert_not_null(x);
    cr_assert_null(ag_gelu(ctx, x));
    cr_assert_neq(ag_ctx_status(ctx), TPSC_OK);
    cr_assert(strstr(tpsc_last_error(), "bf16 only") != NULL, "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}

/* ---- parameter copies ------------------------------------------------------------------- */

/* The bf16 copy of a parameter is taken once per step: an update after ag_ctx_reset is seen,
 * one without a reset is not (the contract gemm.h states). */
Test(bf16_train, parameter_copy_is_refreshed_each_step) {
    need_bf16();
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK);
    float w[4] = {1, 2, 3, 4};
    ag_operand o = ag_operand_param(ctx, w, 4);
    cr_assert_eq(o.h[1], bf16_from_float(2.0f));
    w[1] = 5;
    o = ag_operand_param(ctx, w, 4);
    cr_assert_eq(o.h[1], bf16_from_float(2.0f), "refreshed within a step");
    ag_ctx_reset(ctx);
    o = ag_operand_param(ctx, w, 4);
    cr_assert_eq(o.h[1], bf16_from_float(5.0f), "not refreshed after the reset");
    ag_ctx_free(ctx);
}

/* A linear reads its weight packed in the kernel's layouts (one for y = x w^T, one for
 * dx = dy w), each packed at its first product of a step: after an update and a reset both
 * must multiply by the new weight, within a step by the step's (here weights and inputs are small integers, exact in bf16, so products are exact). */
Test(bf16_train, packed_weight_is_refreshed_each_step) {
    need_bf16();
    ag_ctx *ctx = ag_ctx_create(0);
    cr_assert_eq(ag_set_precision(ctx, AG_BF16), TPSC_OK);
    enum { M = 5, K = 32, N = 48 };
    float *w = malloc(N * K * sizeof *w);
    for (int i = 0; i < N * K; i++) w[i] = (float)(i % 7 - 3);
    for (int step = 0; step < 3; step++) {
        ag_tensor *x = ag_new2(ctx, M, K), *wt = ag_wrap(ctx, w, NULL, 2, (size_t[]){N, K}, false);
        cr_assert(x && wt);
        for (int i = 0; i < M * K; i++) x->data[i] = (float)(i % 5 - 2);
        x->requires_grad = x->retain_grad = true;
        ag_tensor *y = ag_linear(ctx, x, wt, NULL);
        cr_assert_not_null(y, "%s", tpsc_last_error());
        for (int m = 0; m < M; m++)
            for (int n = 0; n < N; n++) {
                float want = 0;
                for (int k = 0; k < K; k++) want += x->data[m * K + k] * w[n * K + k];
                cr_assert_eq(y->data[m * N + n], want, "step %d: y[%d,%d] = %g, want %g", step, m, n,
                             (double)y->data[m * N + n], (double)want);
            }
        /* and the input gradient dx = dy w, which reads the weight packed in its own layout */
        float dy[M * N];
        for (int i = 0; i < M * N; i++) dy[i] = (float)(i % 3 - 1);
        cr_assert_eq(ag_backward_from(ctx, y, dy), TPSC_OK, "%s", tpsc_last_error());
        for (int m = 0; m < M; m++)
            for (int k = 0; k < K; k++) {
                float want = 0;
                for (int n = 0; n < N; n++) want += dy[m * N + n] * w[n * K + k];
                cr_assert_eq(x->grad[m * K + k], want, "step %d: dx[%d,%d] = %g, want %g", step, m, k,
                             (double)x->grad[m * K + k], (double)want);
            }
        w[7] += 1.0f, w[N * K - 1] -= 2.0f; /* an update, seen from the next reset */
        ag_ctx_reset(ctx);
    }
    free(w);
    ag_ctx_free(ctx);
}

/* ---- 20 training steps of a tiny model --------------------------------------------------
 * Same weights, data and AdamW in both precisions. Step 0's loss differs only by the forward's
 * roundings: its logits move by a few u relative (each of the 3 depth + 2 products perturbs
 * its output by at most bf_c(K) of the absolute sums, and LayerNorm re-normalises in between),
 * so |dL| <= 0.02 L at step 0 (two products' worth, 2 x 4u, of the loss, with margin for the
 * absolute sums exceeding the values). Later steps add the updates' differences, which AdamW
 * normalises to lr-sized steps whatever their size: the trajectories may drift apart by a few
 * lr per step, so allow 0.05 L along the way. The loss must also fall in BF16 (it learns) and
 * differ from FP32 somewhere (BF16 ran). */
Test(bf16_train, tiny_model_20_steps_tracks_fp32) {
    need_bf16();
    vit_config c = {.img_size = 16, .patch_size = 4, .in_chans = 1, .embed_dim = 32, .depth = 3,
                    .num_heads = 2, .num_classes = 5, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    const size_t B = 8, steps = 20;
    float losses[2][20];
    for (int p = 0; p < 2; p++) {
        vit_model m;
        tok_config none = {.method = TOK_NONE};
        cr_assert_eq(vit_model_create(&m, &c, &none), TPSC_OK, "%s", tpsc_last_error());
        tpsc_rng rng;
        tpsc_rng_seed(&rng, 3);
        vit_model_init(&m, &rng);
        tpsc_param_groups_assign(&m.params);
        tpsc_adamw opt = {0};
        tpsc_adamw_config oc = tpsc_adamw_defaults();
        cr_assert_eq(tpsc_adamw_init(&opt, &m.params, &oc), TPSC_OK);
        ag_ctx *ctx = ag_ctx_create(0);
        cr_assert_eq(ag_set_precision(ctx, p ? AG_BF16 : AG_FP32), TPSC_OK);
        float *img = malloc(B * 16 * 16 * sizeof(float));
        int32_t labels[8];
        fill(img, B * 16 * 16, 11, 1.0f);
        for (size_t b = 0; b < B; b++) labels[b] = (int32_t)(b % 5);
        for (size_t s = 0; s < steps; s++) {
            ag_ctx_reset(ctx);
            ag_tensor *x = ag_wrap(ctx, img, NULL, 4, (size_t[]){B, 1, 16, 16}, false);
            vit_forward_opts fo = {.mode = VIT_TRAIN};
            vit_output out;
            ag_tensor *loss = ag_cross_entropy(ctx, vit_forward(ctx, &m, x, &fo, &out), labels, 0.0f);
            cr_assert_not_null(loss, "%s", tpsc_last_error());
            losses[p][s] = loss->data[0];
            ag_params_zero_grad(&m.params);
            cr_assert_eq(ag_backward(ctx, loss), TPSC_OK, "%s", tpsc_last_error());
            cr_assert_eq(tpsc_adamw_step(&opt, &m.params, 1e-3f), TPSC_OK);
        }
        free(img);
        ag_ctx_free(ctx);
        tpsc_adamw_free(&opt);
        vit_model_free(&m);
    }
    double max_rel = 0;
    for (size_t s = 0; s < steps; s++) {
        const double rel = fabs((double)losses[1][s] - losses[0][s]) / losses[0][s];
        cr_assert(rel <= (s == 0 ? 0.02 : 0.05), "step %zu: bf16 loss %.6f vs fp32 %.6f (%.3g relative)", s, losses[1][s],
                  losses[0][s], rel);
        max_rel = fmax(max_rel, rel);
    }
    cr_assert(losses[1][steps - 1] < 0.8f * losses[1][0], "bf16 did not learn: loss %.4f -> %.4f", losses[1][0],
              losses[1][steps - 1]);
    cr_assert(max_rel > 0, "bf16 and fp32 trajectories are identical: bf16 did not run");
    cr_log_info("20 steps: fp32 %.4f -> %.4f, bf16 %.4f -> %.4f, max relative loss difference %.3g", losses[0][0],
                losses[0][steps - 1], losses[1][0], losses[1][steps - 1], max_rel);
}

/* ---- where BF16 cannot run ------------------------------------------------------------- */

Test(bf16_train, precision_names_parse_and_reject) {
    ag_precision p;
    cr_assert_eq(ag_precision_parse("bf16", &p), TPSC_OK);
    cr_assert_eq(p, AG_BF16);
    cr_assert_eq(ag_precision_parse("fp32", &p), TPSC_OK);
    cr_assert_eq(p, AG_FP32);
    cr_assert_eq(ag_precision_parse("fp16", &p), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "fp16"), "%s", tpsc_last_error());
}

/* oneDNN limited to AVX-512 without BF16 (as on a CPU that lacks it): a clear error naming the
 * CPU feature, and the context stays FP32. Criterion runs each test in its own process, so the
 * limit applies before oneDNN's first use. */
Test(bf16_train, cpu_without_avx512_bf16_is_an_error_naming_it) {
    setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE", 1);
    ag_ctx *ctx = ag_ctx_create(0);
    const tpsc_status st = ag_set_precision(ctx, AG_BF16);
    cr_assert_neq(st, TPSC_OK, "bf16 accepted without AVX512-BF16");
    cr_assert(strstr(tpsc_last_error(), "AVX512-BF16"), "message: %s", tpsc_last_error());
    cr_assert_eq(ctx->precision, AG_FP32);
    ag_ctx_free(ctx);
}
