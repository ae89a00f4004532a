/* See layernorm_chain.h. */
#include "support/layernorm_chain.h"

#include <criterion/criterion.h>
#include <string.h>

#include "autograd/gemm.h"
#include "src/util/rng.h"

/* ag_layernorm_linear against ag_layernorm then ag_linear, in `precision`: the same kernels on the
 * same values, so the output and all five gradients must be equal bit for bit. x also feeds a
 * second consumer (a linear of its own added to the output), so its gradient takes the accumulate
 * path. */
void layernorm_linear_matches_chain(ag_precision precision) {
    enum { M = 9, C = 11, CO = 6 };
    float xd[M * C], lwd[C], lbd[C], wd[CO * C], bd[CO], seed[M * CO];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 8);
    for (int i = 0; i < M * C; i++) xd[i] = 2.0f * tpsc_rng_normal(&rng) + 0.5f;
    for (int i = 0; i < C; i++) lwd[i] = 1.0f + 0.3f * tpsc_rng_normal(&rng), lbd[i] = 0.2f * tpsc_rng_normal(&rng);
    for (int i = 0; i < CO * C; i++) wd[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < CO; i++) bd[i] = tpsc_rng_normal(&rng);
    for (int i = 0; i < M * CO; i++) seed[i] = tpsc_rng_normal(&rng);
    static float g[2][5][M * C], y[2][M * CO];
    memset(g, 0, sizeof g);
    for (int pass = 0; pass < 2; pass++) {
        ag_ctx *ctx = ag_ctx_create(0);
        cr_assert_eq(ag_set_precision(ctx, precision), TPSC_OK, "%s", tpsc_last_error());
        ag_tensor *x = ag_wrap(ctx, xd, g[pass][0], 2, (size_t[]){M, C}, true);
        ag_tensor *lw = ag_wrap(ctx, lwd, g[pass][1], 1, (size_t[]){C}, true);
        ag_tensor *lb = ag_wrap(ctx, lbd, g[pass][2], 1, (size_t[]){C}, true);
        ag_tensor *w = ag_wrap(ctx, wd, g[pass][3], 2, (size_t[]){CO, C}, true);
        ag_tensor *b = ag_wrap(ctx, bd, g[pass][4], 1, (size_t[]){CO}, true);
        ag_tensor *out = pass == 0 ? ag_linear(ctx, ag_layernorm(ctx, x, lw, lb, 1e-5f), w, b)
                                   : ag_layernorm_linear(ctx, x, lw, lb, 1e-5f, w, b);
        ag_tensor *side = ag_linear(ctx, x, w, NULL); /* x's second consumer */
        out = ag_add(ctx, out, side);
        cr_assert_not_null(out, "%s", tpsc_last_error());
        memcpy(y[pass], out->data, sizeof y[pass]);
        cr_assert_eq(ag_backward_from(ctx, out, seed), TPSC_OK, "%s", tpsc_last_error());
        ag_ctx_free(ctx);
    }
    cr_assert(memcmp(y[0], y[1], sizeof y[0]) == 0, "%s: the outputs differ", ag_precision_name(precision));
    const int sizes[5] = {M * C, C, C, CO * C, CO};
    const char *names[5] = {"dx", "d ln_w", "d ln_b", "dw", "db"};
    for (int t = 0; t < 5; t++)
        cr_assert(memcmp(g[0][t], g[1][t], sizeof(float) * (size_t)sizes[t]) == 0, "%s: %s differs",
                  ag_precision_name(precision), names[t]);
}
