/* Channel gates (src/channels/): the straight-through Gumbel-sigmoid against a double-precision
 * reference, gradchecks of the masking, the masks' meaning in the model (a gated model equals a
 * dense one whose dropped channels are zeroed), the recipe's errors, checkpoints, and the
 * removal of the channels at export. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "autograd/ops.h"
#include "src/channels/prune.h"
#include "src/io/checkpoint.h"
#include "src/objective/objective.h"
#include "src/model/vit.h"
#include "src/recipe/recipe.h"
#include "support/fixture.h"
#include "support/gradcheck.h"

/* ---- the gate op --------------------------------------------------------------------------- */

/* Reference in double: z = l + log u - log(1-u); mask = [z >= 0]; the backward of
 * sigmoid(z / tau) times the upstream gradient. Tolerance: the float op rounds log, log1p,
 * exp and the products once each (a few ulp), so 1e-5 of the largest gradient. */
Test(channels, gumbel_gate_matches_double_reference) {
    enum { L = 13 };
    const float tau = 0.7f;
    float logits[L], u[L], up[L];
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 5);
    for (int c = 0; c < L; c++) {
        logits[c] = 3.0f * tpsc_rng_normal(&rng);
        u[c] = tpsc_rng_uniform_open(&rng);
        up[c] = tpsc_rng_normal(&rng);
    }
    ag_ctx *ctx = ag_ctx_create(0);
    float grad[L] = {0};
    ag_tensor *l = ag_wrap(ctx, logits, grad, 1, (size_t[]){L}, true);
    ag_tensor *mask = chan_gumbel_gate(ctx, l, u, tau);
    cr_assert_not_null(mask, "%s", tpsc_last_error());
    cr_assert_eq(ag_backward_from(ctx, mask, up), TPSC_OK, "%s", tpsc_last_error());
    double want_grad[L], scale = 0;
    int kept = 0;
    for (int c = 0; c < L; c++) {
        const double z = (double)logits[c] + log((double)u[c]) - log1p(-(double)u[c]);
        const double y = 1.0 / (1.0 + exp(-z / tau));
        cr_expect_eq(mask->data[c], z >= 0 ? 1.0f : 0.0f, "channel %d: mask %g, z %g", c, (double)mask->data[c], z);
        kept += z >= 0;
        want_grad[c] = (double)up[c] * y * (1.0 - y) / tau;
        scale = fmax(scale, fabs(want_grad[c]));
    }
    cr_assert(kept > 0 && kept < L, "the draw should keep some channels and drop others (kept %d)", kept);
    for (int c = 0; c < L; c++)
        cr_expect(fabs(grad[c] - want_grad[c]) <= 1e-5 * scale, "channel %d: grad %g, reference %g", c, (double)grad[c],
                  want_grad[c]);
    ag_ctx_free(ctx);
}

/* The backward is the derivative of the soft sample sigmoid((l + g) / tau): checked against
 * its central difference in double, h = 1e-4 (truncation error ~h^2 |y'''| < 1e-8). */
Test(channels, gumbel_gate_backward_is_the_soft_sample_derivative) {
    enum { L = 7 };
    const float tau = 1.3f;
    float logits[L] = {-2.1f, -0.4f, 0.0f, 0.3f, 1.7f, 4.0f, -5.0f}, u[L] = {0.1f, 0.5f, 0.93f, 0.2f, 0.6f, 0.01f, 0.99f};
    ag_ctx *ctx = ag_ctx_create(0);
    float grad[L] = {0}, ones[L];
    for (int c = 0; c < L; c++) ones[c] = 1.0f;
    ag_tensor *mask = chan_gumbel_gate(ctx, ag_wrap(ctx, logits, grad, 1, (size_t[]){L}, true), u, tau);
    cr_assert_eq(ag_backward_from(ctx, mask, ones), TPSC_OK, "%s", tpsc_last_error());
    for (int c = 0; c < L; c++) {
        const double g = log((double)u[c]) - log1p(-(double)u[c]), h = 1e-4;
        const double yp = 1.0 / (1.0 + exp(-((double)logits[c] + h + g) / tau));
        const double ym = 1.0 / (1.0 + exp(-((double)logits[c] - h + g) / tau));
        const double numeric = (yp - ym) / (2 * h);
        cr_expect(fabs(grad[c] - numeric) <= 1e-6 + 1e-4 * fabs(numeric), "channel %d: grad %g, numeric %g", c,
                  (double)grad[c], numeric);
    }
    ag_ctx_free(ctx);
}

Test(channels, gumbel_gate_rejects_noise_outside_the_open_interval) {
    ag_ctx *ctx = ag_ctx_create(0);
    float logits[3] = {0}, u[3] = {0.5f, 1.0f, 0.5f};
    cr_assert_null(chan_gumbel_gate(ctx, ag_wrap(ctx, logits, NULL, 1, (size_t[]){3}, false), u, 1.0f));
    cr_expect(strstr(tpsc_last_error(), "u[1] = 1"), "message: %s", tpsc_last_error());
    ag_ctx_free(ctx);
}

Test(channels, topk_keeps_the_largest_in_index_order_ties_low_first) {
    const float l[6] = {0.5f, 2.0f, 0.5f, -1.0f, 2.0f, 0.5f};
    int32_t kept[6];
    cr_assert(chan_topk_indices(l, 6, 3, kept));
    cr_expect(kept[0] == 0 && kept[1] == 1 && kept[2] == 4, "kept %d %d %d", kept[0], kept[1], kept[2]);
    cr_assert(chan_topk_indices(l, 6, 4, kept));
    cr_expect(kept[0] == 0 && kept[1] == 1 && kept[2] == 2 && kept[3] == 4, "kept %d %d %d %d", kept[0], kept[1], kept[2],
              kept[3]);
    cr_expect(!chan_topk_indices(l, 6, 0, kept));
    cr_expect(!chan_topk_indices(l, 6, 7, kept));
}

/* chan_mask_qkv is bilinear in qkv and the masks: central differences are exact up to float
 * rounding of the forward (h = 1e-2, atol 1e-3, rtol 1e-3 as the other op checks). */
static ag_tensor *mask_both(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return chan_mask_qkv(ctx, in[0], in[1], in[2], 2);
}
static ag_tensor *mask_qk_only(ag_ctx *ctx, ag_tensor **in, void *user) {
    (void)user;
    return chan_mask_qkv(ctx, in[0], in[1], NULL, 3);
}
Test(channels, mask_qkv_gradcheck) {
    gc_input both[3] = {{.ndim = 3, .shape = {2, 5, 18}, .requires_grad = true},
                        {.ndim = 1, .shape = {3}, .requires_grad = true},
                        {.ndim = 1, .shape = {3}, .requires_grad = true}};
    GRADCHECK(mask_both, 3, both, NULL, 1e-2, 1e-3, 1e-3);
    gc_input qk[2] = {{.ndim = 2, .shape = {3, 18}, .requires_grad = true}, {.ndim = 1, .shape = {2}, .requires_grad = true}};
    GRADCHECK(mask_qk_only, 2, qk, NULL, 1e-2, 1e-3, 1e-3);
}

/* ---- the gates in the model ---------------------------------------------------------------- */

static vit_config small_config(void) {
    vit_config c = {.img_size = 12, .patch_size = 4, .in_chans = 1, .embed_dim = 16, .depth = 3, .num_heads = 2,
                    .num_classes = 5, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    return c;
}

/* Gates on Q/K (keep 5 of 8) and V (6 of 8) in every block, MLP (20 of 32) in block 1 only. */
static tok_config gated_tps(void) {
    tok_config t = {.method = TOK_NONE, .squeeze_temp = 1.0f};
    t.chan.n_blocks = 3;
    t.chan.gate_init = 3.0f;
    t.chan.gate_temp = 1.0f;
    for (int i = 0; i < 3; i++) {
        t.chan.keep[CHAN_QK][i] = 0.625f;
        t.chan.keep[CHAN_V][i] = 0.75f;
        t.chan.keep[CHAN_MLP][i] = i == 1 ? 0.625f : 1.0f;
    }
    return t;
}

/* random weights (x10 as test_tps_model.c, so attention is far from uniform) and distinct
 * random gate logits */
static void gated_model(vit_model *m, uint64_t seed) {
    vit_config c = small_config();
    tok_config t = gated_tps();
    cr_assert_eq(vit_model_create(m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    vit_model_init(m, &rng);
    for (int i = 0; i < m->params.count; i++) {
        ag_param *p = &m->params.items[i];
        const bool gate = strstr(p->name, "_gate") != NULL;
        if (p->t.ndim < 2 && !gate) continue;
        for (size_t j = 0; j < p->numel; j++) p->t.data[j] = gate ? tpsc_rng_normal(&rng) : p->t.data[j] * 10.0f;
    }
}

static ag_tensor *images(ag_ctx *ctx, size_t B, uint64_t seed) {
    ag_tensor *x = ag_new4(ctx, B, 1, 12, 12);
    tpsc_rng rng = tpsc_rng_keyed(seed, 1, 2, 3);
    for (size_t i = 0; i < ag_numel(x); i++) x->data[i] = tpsc_rng_normal(&rng);
    return x;
}

Test(channels, gate_parameters_have_official_style_names_and_widths) {
    vit_model m;
    gated_model(&m, 1);
    const struct { const char *name; size_t n; } want[] = {
        {"blocks.0.attn.qk_gate", 8}, {"blocks.2.attn.v_gate", 8}, {"blocks.1.mlp.fc1_gate", 32}};
    for (size_t i = 0; i < 3; i++) {
        const int p = ag_params_find(&m.params, want[i].name);
        cr_assert(p >= 0, "%s missing", want[i].name);
        cr_expect_eq(m.params.items[p].numel, want[i].n, "%s", want[i].name);
    }
    cr_expect_eq(ag_params_find(&m.params, "blocks.0.mlp.fc1_gate"), -1, "keep_mlp = 1 in block 0: no gate");
    vit_model_free(&m);
}

/* Inference keeps the top-k channels of each gate; the result must equal the same model without
 * gates whose dropped channels are zeroed in the weights (q/k/v rows and biases of qkv, fc1 rows
 * and biases): a dropped q and k channel adds 0 to q.k, a dropped v channel gives a zero column
 * into proj, and gelu(0) = 0. The masked product is bit-identical in exact arithmetic; the only
 * difference is the order of sgemm's zero additions, so 1e-6 of the largest logit. */
Test(channels, inference_masks_equal_zeroed_channels) {
    vit_model g, d;
    gated_model(&g, 3);
    vit_config c = small_config();
    tok_config dense = {.method = TOK_NONE, .squeeze_temp = 1.0f};
    cr_assert_eq(vit_model_create(&d, &c, &dense), TPSC_OK);
    for (int p = 0; p < d.params.count; p++) {
        const int q = ag_params_find(&g.params, d.params.items[p].name);
        memcpy(d.params.items[p].t.data, g.params.items[q].t.data, d.params.items[p].numel * sizeof(float));
    }
    const size_t C = 16, D = 8, H = 2, F = 32;
    for (size_t i = 0; i < 3; i++) {
        int32_t kept[32];
        float *w = d.params.items[d.blocks[i].qkv_w].t.data, *b = d.params.items[d.blocks[i].qkv_b].t.data;
        for (int k = 0; k < CHAN_KINDS; k++) {
            const int gi = g.gates[i].gate[k];
            if (gi < 0) continue;
            const size_t L = k == CHAN_MLP ? F : D, n = chan_keep_count(&g.tps.chan, (int)i, (chan_gate_kind)k, L);
            cr_assert(chan_topk_indices(g.params.items[gi].t.data, L, n, kept));
            char drop[32] = {0};
            for (size_t c2 = 0; c2 < L; c2++) drop[c2] = 1;
            for (size_t j = 0; j < n; j++) drop[kept[j]] = 0;
            for (size_t ch = 0; ch < L; ch++) {
                if (!drop[ch]) continue;
                if (k == CHAN_MLP) {
                    memset(d.params.items[d.blocks[i].fc1_w].t.data + ch * C, 0, C * sizeof(float));
                    d.params.items[d.blocks[i].fc1_b].t.data[ch] = 0;
                    continue;
                }
                for (size_t h = 0; h < H; h++)
                    for (size_t part = (k == CHAN_QK ? 0 : 2); part < (k == CHAN_QK ? 2u : 3u); part++) {
                        const size_t row = part * C + h * D + ch;
                        memset(w + row * C, 0, C * sizeof(float));
                        b[row] = 0;
                    }
            }
        }
    }
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    ag_tensor *x = images(ctx, 2, 9);
    vit_forward_opts io = {.mode = VIT_INFER};
    vit_output go, dout;
    ag_tensor *lg = vit_forward(ctx, &g, x, &io, &go), *ld = vit_forward(ctx, &d, x, &io, &dout);
    cr_assert(lg && ld, "%s", tpsc_last_error());
    const double scale = fx_max_abs(ld->data, 10);
    cr_expect(fx_max_diff(lg->data, ld->data, 10) <= 1e-6 * scale, "gated %g vs zeroed dense: differ by %g", scale,
              fx_max_diff(lg->data, ld->data, 10));
    /* and the gates matter: the ungated model differs */
    cr_assert(go.chan_mask[0][CHAN_QK] && go.chan_mask[1][CHAN_MLP] && !go.chan_mask[0][CHAN_MLP]);
    ag_ctx_free(ctx);
    vit_model_free(&g);
    vit_model_free(&d);
}

/* Training: 0/1 masks from the noise, gradients reach every gate logit, and the channel ratio
 * term is mean_g (mean mask - target)^2, computed here by hand from the masks. */
Test(channels, training_masks_ratio_loss_and_gate_gradients) {
    vit_model m;
    gated_model(&m, 4);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_tensor *x = images(ctx, 3, 2);
    tpsc_rng noise;
    tpsc_rng_seed(&noise, 77);
    vit_forward_opts fo = {.mode = VIT_TRAIN, .rng = &noise};
    vit_output out;
    cr_assert_not_null(vit_forward(ctx, &m, x, &fo, &out), "%s", tpsc_last_error());
    ag_tensor *t = ag_zeros(ctx, 2, (size_t[]){3, 5});
    for (size_t b = 0; b < 3; b++) t->data[b * 5 + b] = 1.0f;
    objective_config oc = {.clf_weight = 1.0f, .channel_ratio_weight = 2.0f};
    objective_parts parts;
    cr_assert_eq(objective_compute(ctx, &m.tps, &oc, &out, t, NULL, &parts), TPSC_OK, "%s", tpsc_last_error());
    double sum = 0;
    int gates = 0;
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < CHAN_KINDS; k++) {
            ag_tensor *mk = out.chan_mask[i][k];
            cr_assert_eq(mk != NULL, m.gates[i].gate[k] >= 0, "block %d kind %d", i, k);
            if (!mk) continue;
            double mean = 0;
            for (size_t c = 0; c < ag_numel(mk); c++) {
                cr_assert(mk->data[c] == 0.0f || mk->data[c] == 1.0f);
                mean += mk->data[c];
            }
            mean /= (double)ag_numel(mk);
            sum += (mean - m.tps.chan.keep[k][i]) * (mean - m.tps.chan.keep[k][i]);
            gates++;
        }
    cr_assert_eq(gates, 7);
    cr_expect(fabs(parts.chan_ratio->data[0] - sum / gates) <= 1e-6, "ratio %g, by hand %g", (double)parts.chan_ratio->data[0],
              sum / gates);
    ag_params_zero_grad(&m.params);
    cr_assert_eq(ag_backward(ctx, parts.total), TPSC_OK, "%s", tpsc_last_error());
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < CHAN_KINDS; k++) {
            const int gi = m.gates[i].gate[k];
            if (gi < 0) continue;
            const ag_param *p = &m.params.items[gi];
            double norm = 0;
            for (size_t c = 0; c < p->numel; c++) norm += fabs(p->t.grad[c]);
            cr_expect(norm > 0, "%s: no gradient", p->name);
        }
    ag_ctx_free(ctx);
    vit_model_free(&m);
}

/* ---- recipe, checkpoint, export -------------------------------------------------------------- */

static tpsc_status recipe_with(tpsc_recipe *r, const char *cdcp) {
    char text[512];
    snprintf(text, sizeof text, "[model]\narch = deit_small_patch16_224\n[cdcp]\n%s\n", cdcp);
    return tpsc_recipe_load_string(r, text, "cdcp.ini");
}

Test(channels, recipe_resolves_per_block_targets) {
    static tpsc_recipe r;
    cr_assert_eq(recipe_with(&r, "keep_qk = 0.5\nkeep_v = 1, 1, 0.75, 1, 1, 1, 1, 1, 1, 1, 1, 1"), TPSC_OK, "%s",
                 tpsc_last_error());
    const chan_config *c = &r.tps.cfg.chan;
    cr_expect_eq(c->n_blocks, 12);
    cr_expect(chan_gated(c, 0, CHAN_QK) && chan_gated(c, 11, CHAN_QK) && chan_gated(c, 2, CHAN_V) && !chan_gated(c, 3, CHAN_V));
    cr_expect_eq(chan_keep_count(c, 5, CHAN_QK, 64), 32);
    cr_expect_eq(chan_keep_count(c, 2, CHAN_V, 64), 48);
    cr_assert_eq(recipe_with(&r, "keep_qk = 1.0"), TPSC_OK);
    cr_expect_eq(r.tps.cfg.chan.n_blocks, 0, "no gate below 1: a dense model");
}

Test(channels, recipe_ratio_leaving_zero_channels_is_an_error_naming_key_and_numbers) {
    static tpsc_recipe r;
    cr_assert_eq(recipe_with(&r, "keep_v = 0.01"), TPSC_ERR_CONFIG);
    const char *e = tpsc_last_error();
    cr_expect(strstr(e, "[cdcp] keep_v") && strstr(e, "0.01") && strstr(e, "0 of the 64") && strstr(e, "0.015625"),
              "message: %s", e);
    cr_assert_eq(recipe_with(&r, "keep_mlp = 0.0005"), TPSC_ERR_CONFIG);
    cr_expect(strstr(tpsc_last_error(), "keep_mlp") && strstr(tpsc_last_error(), "of the 1536"), "message: %s", tpsc_last_error());
    cr_assert_eq(recipe_with(&r, "keep_qk = 0.5, 0.5"), TPSC_ERR_CONFIG);
    cr_expect(strstr(tpsc_last_error(), "keep_qk") && strstr(tpsc_last_error(), "2 values for model.depth = 12"), "message: %s",
              tpsc_last_error());
}

Test(channels, checkpoint_round_trip_and_wrong_mask_length) {
    vit_model m;
    gated_model(&m, 5);
    char path[] = "/tmp/tpsc_chan_ckpt_XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    close(fd);
    tpsc_checkpoint ck = {.vit = &m.cfg, .tps = &m.tps, .params = &m.params};
    cr_assert_eq(tpsc_checkpoint_save(path, &ck), TPSC_OK, "%s", tpsc_last_error());
    vit_config vc;
    tok_config tc;
    cr_assert_eq(tpsc_checkpoint_read_config(path, &vc, &tc, NULL), TPSC_OK, "%s", tpsc_last_error());
    cr_expect_eq(tc.chan.n_blocks, 3);
    cr_expect(!memcmp(tc.chan.keep, m.tps.chan.keep, sizeof tc.chan.keep));
    cr_expect_eq(tc.chan.gate_init, m.tps.chan.gate_init);
    vit_model back;
    cr_assert_eq(vit_model_create(&back, &vc, &tc), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &back.params, NULL, NULL), TPSC_OK, "%s", tpsc_last_error());
    const int g = ag_params_find(&back.params, "blocks.1.mlp.fc1_gate");
    cr_expect(!memcmp(back.params.items[g].t.data, m.params.items[g].t.data, 32 * sizeof(float)));
    vit_model_free(&back);

    /* the same file with block 2's qk_gate 5 long instead of 8 */
    ag_params bad;
    ag_params_init(&bad);
    for (int p = 0; p < m.params.count; p++) {
        const ag_param *it = &m.params.items[p];
        size_t shape[AG_MAX_DIMS];
        memcpy(shape, it->t.shape, sizeof shape);
        if (!strcmp(it->name, "blocks.2.attn.qk_gate")) shape[0] = 5;
        cr_assert(ag_params_add(&bad, it->name, it->t.ndim, shape) >= 0);
    }
    cr_assert_eq(ag_params_finalise(&bad), TPSC_OK);
    ck.params = &bad;
    cr_assert_eq(tpsc_checkpoint_save(path, &ck), TPSC_OK, "%s", tpsc_last_error());
    cr_expect_neq(tpsc_checkpoint_load_params(path, "/model", &m.params, NULL, NULL), TPSC_OK);
    const char *e = tpsc_last_error();
    cr_expect(strstr(e, "blocks.2.attn.qk_gate") && strstr(e, "5") && strstr(e, "8"), "message: %s", e);
    ag_params_free(&bad);
    vit_model_free(&m);
    unlink(path);
}

/* Export's parameter set: no gates, and qkv/proj/fc1/fc2 of exactly the kept widths. */
Test(channels, pruned_parameters_have_the_kept_shapes) {
    vit_model m;
    gated_model(&m, 6);
    ag_params out;
    int32_t width[CHAN_KINDS][CHAN_MAX_BLOCKS];
    cr_assert_eq(chan_prune_params(&m, &out, width), TPSC_OK, "%s", tpsc_last_error());
    for (int i = 0; i < 3; i++) {
        cr_expect_eq(width[CHAN_QK][i], 5);
        cr_expect_eq(width[CHAN_V][i], 6);
        cr_expect_eq(width[CHAN_MLP][i], i == 1 ? 20 : 32);
    }
    const struct { const char *name; size_t d0, d1; } want[] = {
        {"blocks.0.attn.qkv.weight", 2 * (5 + 5 + 6), 16}, {"blocks.0.attn.qkv.bias", 32, 0},
        {"blocks.2.attn.proj.weight", 16, 12},             {"blocks.1.mlp.fc1.weight", 20, 16},
        {"blocks.1.mlp.fc2.weight", 16, 20},               {"blocks.0.mlp.fc2.weight", 16, 32}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        const int p = ag_params_find(&out, want[i].name);
        cr_assert(p >= 0, "%s", want[i].name);
        cr_expect_eq(out.items[p].t.shape[0], want[i].d0, "%s", want[i].name);
        if (want[i].d1) cr_expect_eq(out.items[p].t.shape[1], want[i].d1, "%s", want[i].name);
    }
    for (int p = 0; p < out.count; p++) cr_expect(!strstr(out.items[p].name, "_gate"), "%s exported", out.items[p].name);
    cr_expect_eq(out.count, m.params.count - 7);
    ag_params_free(&out);
    vit_model_free(&m);
}
