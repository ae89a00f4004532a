/* matmul: finite-difference checks for every trans combination, 2-D, batched and shared-b,
 * a forward against a naive triple loop in double, and shape errors. */
#include <criterion/criterion.h>
#include <math.h>

#include "src/util/rng.h"
#include "support/gradcheck.h"

typedef struct mm_flags {
    bool ta, tb;
} mm_flags;

static ag_tensor *f_matmul(ag_ctx *ctx, ag_tensor **in, void *user) {
    const mm_flags *f = user;
    return ag_matmul(ctx, in[0], in[1], f->ta, f->tb);
}

/* Stored shapes for op(a) [M,K] and op(b) [K,N] under the flags, with G > 0 adding a batch dim
 * (b_batched false: b stays 2-D and is shared). */
static void shapes(gc_input in[2], size_t G, bool b_batched, size_t M, size_t K, size_t N, mm_flags f) {
    size_t a0 = f.ta ? K : M, a1 = f.ta ? M : K, b0 = f.tb ? N : K, b1 = f.tb ? K : N;
    in[0] = G ? (gc_input){3, {G, a0, a1}, true, NULL} : (gc_input){2, {a0, a1}, true, NULL};
    in[1] = G && b_batched ? (gc_input){3, {G, b0, b1}, true, NULL} : (gc_input){2, {b0, b1}, true, NULL};
}

static const mm_flags ALL_FLAGS[4] = {{false, false}, {true, false}, {false, true}, {true, true}};

Test(ops_matmul, gradcheck_2d_all_trans_flags) {
    for (int i = 0; i < 4; i++) {
        mm_flags f = ALL_FLAGS[i];
        gc_input in[2];
        shapes(in, 0, false, 3, 5, 7, f);
        GRADCHECK(f_matmul, 2, in, &f, 1e-2, 1e-3, 1e-2);
    }
}

Test(ops_matmul, gradcheck_batched_g3_all_trans_flags) {
    for (int i = 0; i < 4; i++) {
        mm_flags f = ALL_FLAGS[i];
        gc_input in[2];
        shapes(in, 3, true, 7, 5, 3, f);
        GRADCHECK(f_matmul, 2, in, &f, 1e-2, 1e-3, 1e-2);
    }
}

Test(ops_matmul, gradcheck_batched_shared_b_all_trans_flags) {
    /* The shared b collects the gradient of all G products. */
    for (int i = 0; i < 4; i++) {
        mm_flags f = ALL_FLAGS[i];
        gc_input in[2];
        shapes(in, 3, false, 7, 5, 3, f);
        GRADCHECK(f_matmul, 2, in, &f, 1e-2, 1e-3, 1e-2);
    }
}

Test(ops_matmul, gradcheck_only_one_side_requires_grad) {
    mm_flags f = {false, true};
    gc_input in[2];
    shapes(in, 3, true, 4, 5, 3, f);
    in[0].requires_grad = false;
    GRADCHECK(f_matmul, 2, in, &f, 1e-2, 1e-3, 1e-2);
    shapes(in, 3, true, 4, 5, 3, f);
    in[1].requires_grad = false;
    GRADCHECK(f_matmul, 2, in, &f, 1e-2, 1e-3, 1e-2);
}

/* Reference: y[g,m,n] = sum_k op(a)[g,m,k] op(b)[g,k,n], a naive loop in double reading the
 * stored layouts through the flags. Tolerance 1e-5 absolute: K = 5 float products. */
static void check_against_naive(size_t G, bool b_batched, size_t M, size_t K, size_t N, mm_flags f) {
    ag_ctx *ctx = ag_ctx_create(0);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 7);
    float ad[3 * 7 * 5], bd[3 * 7 * 5];
    for (size_t i = 0; i < sizeof ad / sizeof *ad; i++) ad[i] = tpsc_rng_normal(&rng);
    for (size_t i = 0; i < sizeof bd / sizeof *bd; i++) bd[i] = tpsc_rng_normal(&rng);
    gc_input in[2];
    shapes(in, G, b_batched, M, K, N, f);
    ag_tensor *a = ag_wrap(ctx, ad, NULL, in[0].ndim, in[0].shape, false);
    ag_tensor *b = ag_wrap(ctx, bd, NULL, in[1].ndim, in[1].shape, false);
    ag_tensor *y = ag_matmul(ctx, a, b, f.ta, f.tb);
    cr_assert_not_null(y, "%s", tpsc_last_error());
    const size_t Gn = G ? G : 1;
    cr_assert_eq(ag_numel(y), Gn * M * N);
    for (size_t g = 0; g < Gn; g++) {
        const float *A = ad + g * M * K, *Bm = bd + (b_batched ? g * K * N : 0);
        for (size_t m = 0; m < M; m++)
            for (size_t n = 0; n < N; n++) {
                double s = 0.0;
                for (size_t k = 0; k < K; k++) {
                    double av = f.ta ? A[k * M + m] : A[m * K + k];
                    double bv = f.tb ? Bm[n * K + k] : Bm[k * N + n];
                    s += av * bv;
                }
                cr_assert(fabs(y->data[(g * M + m) * N + n] - s) < 1e-5, "g %zu m %zu n %zu: %g vs %g", g, m, n,
                          (double)y->data[(g * M + m) * N + n], s);
            }
    }
    ag_ctx_free(ctx);
}

Test(ops_matmul, forward_matches_naive_loop) {
    for (int i = 0; i < 4; i++) {
        check_against_naive(0, false, 7, 5, 3, ALL_FLAGS[i]);
        check_against_naive(3, true, 7, 5, 3, ALL_FLAGS[i]);
        check_against_naive(3, false, 7, 5, 3, ALL_FLAGS[i]);
    }
}

Test(ops_matmul, forward_by_hand) {
    /* [[1,2],[3,4]] @ [[5,6],[7,8]] = [[19,22],[43,50]]; with trans_a: [[26,30],[38,44]].
     * Small integers: exact in float (checked to 1e-6). */
    ag_ctx *ctx = ag_ctx_create(0);
    float ad[] = {1, 2, 3, 4}, bd[] = {5, 6, 7, 8};
    ag_tensor *a = ag_wrap(ctx, ad, NULL, 2, (size_t[]){2, 2}, false);
    ag_tensor *b = ag_wrap(ctx, bd, NULL, 2, (size_t[]){2, 2}, false);
    ag_tensor *y = ag_matmul(ctx, a, b, false, false);
    cr_assert_not_null(y);
    const float want[] = {19, 22, 43, 50};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(y->data[i], want[i], 1e-6);
    y = ag_matmul(ctx, a, b, true, false);
    cr_assert_not_null(y);
    const float want_t[] = {26, 30, 38, 44};
    for (int i = 0; i < 4; i++) cr_assert_float_eq(y->data[i], want_t[i], 1e-6);
    ag_ctx_free(ctx);
}

Test(ops_matmul, shape_errors) {
    float buf[64] = {0};
    struct {
        int na;
        size_t sa[3];
        int nb;
        size_t sb[3];
        bool ta, tb;
    } bad[] = {
        {2, {3, 4}, 2, {5, 2}, false, false},       /* inner 4 vs 5 */
        {2, {3, 4}, 2, {4, 2}, true, false},        /* a^T is [4,3]: inner 3 vs 4 */
        {3, {2, 3, 4}, 3, {3, 4, 2}, false, false}, /* G 2 vs 3 */
        {2, {3, 4}, 3, {1, 4, 2}, false, false},    /* 2-D a with 3-D b is not in the contract */
        {1, {4}, 2, {4, 2}, false, false},          /* 1-D */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ag_ctx *ctx = ag_ctx_create(0);
        ag_tensor *a = ag_wrap(ctx, buf, NULL, bad[i].na, bad[i].sa, false);
        ag_tensor *b = ag_wrap(ctx, buf, NULL, bad[i].nb, bad[i].sb, false);
        cr_assert_null(ag_matmul(ctx, a, b, bad[i].ta, bad[i].tb), "case %zu", i);
        cr_assert_eq(ag_ctx_status(ctx), TPSC_ERR_SHAPE, "case %zu", i);
        cr_assert(strstr(tpsc_last_error(), "matmul") != NULL, "message: %s", tpsc_last_error());
        ag_ctx_free(ctx);
    }
}
