#include "support/fixture_run.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fx_run_open(fx_run *r, const char *file) {
    memset(r, 0, sizeof *r);
    fx_open(&r->fx, file);
    fx_vit_config(&r->fx, &r->cfg);
    size_t n;
    int nd;
    r->images = fx_read_f32(&r->fx, "/input/images", &n, r->img_shape, &nd);
    if (fx_exists(&r->fx, "/input/targets")) r->targets = fx_read_f32(&r->fx, "/input/targets", &n, r->t_shape, &nd);
    const size_t B = r->img_shape[0], N = vit_num_patches(&r->cfg);
    char path[64];
    for (int s = 0; s < TOK_MAX_STAGES; s++) {
        snprintf(path, sizeof path, "/input/gumbel_u_s%d", s);
        if (!fx_exists(&r->fx, path)) continue;
        r->u[s] = fx_read_f32(&r->fx, path, &n, NULL, NULL);
        cr_assert_eq(n, B * N * 2, "%s: %zu values, want [%zu,%zu,2]", path, n, B, N);
    }
    r->ctx = ag_ctx_create(0);
    cr_assert_not_null(r->ctx);
    r->x = ag_wrap(r->ctx, r->images, NULL, 4, r->img_shape, false);
    cr_assert_not_null(r->x);
    if (r->targets) {
        r->t = ag_wrap(r->ctx, r->targets, NULL, 2, r->t_shape, false);
        cr_assert_not_null(r->t);
    }
}

void fx_run_model(fx_run *r, const tok_config *tps) {
    cr_assert_eq(vit_model_create(&r->m, &r->cfg, tps), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&r->fx, "/model", &r->m.params);
}

void fx_run_close(fx_run *r) {
    ag_ctx_free(r->ctx);
    vit_model_free(&r->m);
    free(r->images), free(r->targets);
    for (int s = 0; s < TOK_MAX_STAGES; s++) free(r->u[s]);
    fx_close(&r->fx);
}

ag_tensor *fx_run_forward(fx_run *r, vit_mode mode, vit_output *out) {
    vit_forward_opts opts = {.mode = mode};
    for (int s = 0; s < TOK_MAX_STAGES; s++) opts.gumbel_u[s] = r->u[s];
    ag_tensor *logits = vit_forward(r->ctx, &r->m, r->x, &opts, out);
    cr_assert_not_null(logits, "%s: %s forward (%s) failed: %s", r->fx.path, tok_method_name(r->m.tps.method),
                       mode == VIT_TRAIN ? "train" : "infer", tpsc_last_error());
    return logits;
}
