/* libtpsinfer on models exported with channel gates (src/channels/): the exported file really
 * holds the smaller tensors and per-block widths, the library runs heads of those widths, and
 * its logits match the training framework's inference mode (gates as top-k masks on the full
 * weights) within 1e-5 relative; a file whose widths disagree with its tensors is an error
 * naming both. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/channels/prune.h"
#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"
#include "support/fixture.h"
#include "support/small_model.h"

static void one_thread(void) { omp_set_num_threads(1); }
TestSuite(infer_channels, .init = one_thread);

/* The framework masks channels of the full weights, the library multiplies the smaller ones:
 * the same sums in other sgemm blockings, float32 throughout (as test_infer.c's LIB_RTOL). */
#define LIB_RTOL 1e-5

/* C 48, 4 heads of D 12, MLP 96, depth 4. Gates: Q/K keep 0.75 (9 of 12) everywhere but
 * block 2 (0.5: 6); V 0.5 (6) in blocks 0 and 3; MLP 0.25 (24 of 96) in blocks 1 and 3. */
static void gated_model(vit_model *m, tok_method method, uint64_t seed) {
    vit_config c = {.img_size = 32, .patch_size = 4, .in_chans = 3, .embed_dim = 48, .depth = 4, .num_heads = 4,
                    .num_classes = 10, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    tok_config t = {.method = method, .n_stages = method == TOK_NONE ? 0 : 2, .prune_loc = {1, 3}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&t, 0.7f);
    t.prop_attn = tok_method_merges(method); /* the recipe default of the merging methods */
    t.chan.n_blocks = 4;
    t.chan.gate_init = 3.0f;
    t.chan.gate_temp = 1.0f;
    const float qk[4] = {0.75f, 0.75f, 0.5f, 0.75f}, v[4] = {0.5f, 1.0f, 1.0f, 0.5f}, mlp[4] = {1.0f, 0.25f, 1.0f, 0.25f};
    for (int i = 0; i < 4; i++) t.chan.keep[CHAN_QK][i] = qk[i], t.chan.keep[CHAN_V][i] = v[i], t.chan.keep[CHAN_MLP][i] = mlp[i];
    cr_assert_eq(vit_model_create(m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (int i = 0; i < m->params.count; i++) {
        ag_param *p = &m->params.items[i];
        const bool norm = strstr(p->name, "norm") && strstr(p->name, ".weight") && p->t.ndim == 1;
        const size_t fan_in = p->t.ndim >= 2 ? p->numel / p->t.shape[0] : 1;
        for (size_t j = 0; j < p->numel; j++) {
            const float z = tpsc_rng_normal(&rng);
            if (strstr(p->name, "_gate")) p->t.data[j] = z; /* distinct logits: a definite top-k */
            else if (norm || strstr(p->name, "in_conv.0.weight")) p->t.data[j] = 1.0f + 0.1f * z;
            else if (!strcmp(p->name, "cls_token") || !strcmp(p->name, "pos_embed")) p->t.data[j] = 0.5f * z;
            else if (p->t.ndim == 1) p->t.data[j] = 0.05f * z;
            else p->t.data[j] = z / sqrtf((float)fan_in);
        }
    }
}

static void export_model(const vit_model *m, const char *path) {
    tpsc_checkpoint ck = {.vit = &m->cfg, .tps = &m->tps, .params = &m->params};
    cr_assert_eq(chan_save_inference(path, m, &ck), TPSC_OK, "%s", tpsc_last_error());
}

static float *framework_logits(vit_model *m, float *images, size_t B) {
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    const vit_config *c = &m->cfg;
    ag_tensor *x = ag_wrap(ctx, images, NULL, 4, (size_t[]){B, c->in_chans, c->img_size, c->img_size}, false);
    vit_forward_opts o = {.mode = VIT_INFER};
    vit_output out;
    ag_tensor *l = vit_forward(ctx, m, x, &o, &out);
    cr_assert_not_null(l, "%s", tpsc_last_error());
    cr_assert(out.chan_mask[0][CHAN_QK] && out.chan_mask[3][CHAN_MLP], "the gates ran");
    float *r = malloc(B * c->num_classes * sizeof(float));
    memcpy(r, l->data, B * c->num_classes * sizeof(float));
    ag_ctx_free(ctx);
    return r;
}

static float *library_logits(const char *path, tps_precision precision, float *images, size_t B, size_t K) {
    tps_model *lib;
    tps_workspace *ws;
    const tps_open_options oo = {.precision = precision};
    cr_assert_eq(tps_model_open_ex(path, &oo, &lib), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_workspace_create(lib, B, &ws), TPS_OK, "%s", tps_last_error());
    float *l = malloc(B * K * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, l), TPS_OK, "%s", tps_last_error());
    tps_workspace_free(ws);
    tps_model_close(lib);
    return l;
}

static void check_parity(tok_method method, size_t B, int threads) {
    omp_set_num_threads(threads);
    vit_model m;
    gated_model(&m, method, 11 + (uint64_t)method);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_channels", "parity.h5");
    export_model(&m, path);
    float *images = fx_random_normal(B * 3 * 32 * 32, 5);
    float *want = framework_logits(&m, images, B), *got = library_logits(path, TPS_PRECISION_FP32, images, B, 10);
    const double scale = fx_max_abs(want, B * 10), d = fx_max_diff(got, want, B * 10);
    cr_expect(d <= LIB_RTOL * scale, "%s, batch %zu, %d threads: logits differ by %g (scale %g)", tok_method_name(method), B,
              threads, d, scale);
    free(images), free(want), free(got);
    vit_model_free(&m);
    unlink(path);
}

Test(infer_channels, parity_dense_gated) { check_parity(TOK_NONE, 3, 1); }
Test(infer_channels, parity_dense_gated_batch1_team) { check_parity(TOK_NONE, 1, 2); }
/* 9 images on 2 threads: the split path (one chunk per thread, forward.c) */
Test(infer_channels, parity_dense_gated_split) { check_parity(TOK_NONE, 9, 2); }
/* channels and tokens together: dTPS stages over gated blocks, and EViT (it scores by the
 * cls attention of a pruned block) */
Test(infer_channels, parity_dtps_gated) { check_parity(TOK_DTPS, 3, 1); }
Test(infer_channels, parity_evit_gated) { check_parity(TOK_EVIT, 3, 2); }
/* cait (CAIT-style: ATME merging at blocks 1 and 3 over gated blocks, proportional attention
 * with the merged sizes): one team, a team of 2 on one image, and the split batch */
Test(infer_channels, parity_cait) { check_parity(TOK_CAIT, 3, 1); }
Test(infer_channels, parity_cait_batch1_team) { check_parity(TOK_CAIT, 1, 2); }
Test(infer_channels, parity_cait_split) { check_parity(TOK_CAIT, 9, 2); }

/* cait without any gated channel is atme under another name: refused, naming [cdcp]. */
Test(infer_channels, cait_without_gates_is_an_error) {
    vit_config c = {.img_size = 32, .patch_size = 4, .in_chans = 3, .embed_dim = 48, .depth = 4, .num_heads = 4,
                    .num_classes = 10, .mlp_ratio = 2.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    tok_config t = {.method = TOK_CAIT, .n_stages = 2, .prune_loc = {1, 3}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&t, 0.7f);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &c, &t), TPSC_ERR_CONFIG);
    cr_expect(strstr(tpsc_last_error(), "tps.method = cait") && strstr(tpsc_last_error(), "[cdcp]"), "%s",
              tpsc_last_error());
}

/* The model file, read with HDF5 alone: the GEMM shapes are the kept widths', the widths are
 * in the root attributes, the gates are gone. */
Test(infer_channels, exported_file_holds_smaller_gemms) {
    vit_model m;
    gated_model(&m, TOK_NONE, 3);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_channels", "shapes.h5");
    export_model(&m, path);
    const struct { const char *name; size_t d0, d1; } want[] = {
        {"/model/blocks.0.attn.qkv.weight", 4 * (9 + 9 + 6), 48}, {"/model/blocks.2.attn.qkv.weight", 4 * (6 + 6 + 12), 48},
        {"/model/blocks.0.attn.proj.weight", 48, 4 * 6},          {"/model/blocks.1.attn.proj.weight", 48, 48},
        {"/model/blocks.1.mlp.fc1.weight", 24, 48},               {"/model/blocks.1.mlp.fc2.weight", 48, 24},
        {"/model/blocks.2.mlp.fc1.weight", 96, 48}};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(f >= 0);
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        hid_t d = H5Dopen2(f, want[i].name, H5P_DEFAULT);
        cr_assert(d >= 0, "%s missing", want[i].name);
        hid_t sp = H5Dget_space(d);
        hsize_t shape[8] = {0};
        const int nd = H5Sget_simple_extent_dims(sp, shape, NULL);
        cr_expect(nd == 2 && shape[0] == want[i].d0 && shape[1] == want[i].d1, "%s: [%llu, %llu], expected [%zu, %zu]",
                  want[i].name, (unsigned long long)shape[0], (unsigned long long)shape[1], want[i].d0, want[i].d1);
        H5Sclose(sp);
        H5Dclose(d);
    }
    cr_expect(H5Lexists(f, "/model/blocks.0.attn.qk_gate", H5P_DEFAULT) == 0, "gates are not exported");
    int32_t dq[4], dv[4], mh[4];
    hid_t a = H5Aopen(f, "head_dim_qk", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT32, dq), H5Aclose(a);
    a = H5Aopen(f, "head_dim_v", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT32, dv), H5Aclose(a);
    a = H5Aopen(f, "mlp_hidden", H5P_DEFAULT);
    H5Aread(a, H5T_NATIVE_INT32, mh), H5Aclose(a);
    H5Fclose(f);
    const int32_t wq[4] = {9, 9, 6, 9}, wv[4] = {6, 12, 12, 6}, wm[4] = {96, 24, 96, 24};
    for (int i = 0; i < 4; i++)
        cr_expect(dq[i] == wq[i] && dv[i] == wv[i] && mh[i] == wm[i], "block %d: widths %d %d %d", i, dq[i], dv[i], mh[i]);
    /* the library's cost model counts the kept widths: by hand, per block with t = 1 + 64
     * tokens, C = 48, Q = 4 dq, V = 4 dv: t C (2Q + V) + t V C + t^2 (Q + V) + 2 t C f */
    tps_model *lib;
    cr_assert_eq(tps_model_open(path, &lib), TPS_OK, "%s", tps_last_error());
    double macs = 64.0 * 48 * 48 + 48.0 * 10;
    for (int i = 0; i < 4; i++) {
        const double t = 65, C = 48, Q = 4.0 * wq[i], V = 4.0 * wv[i];
        macs += t * C * (2 * Q + V) + t * V * C + t * t * (Q + V) + 2 * t * C * wm[i];
    }
    cr_expect_float_eq(tps_model_macs(lib, 0.0f), macs, 0.5, "MACs %.0f, by hand %.0f", tps_model_macs(lib, 0.0f), macs);
    /* and the framework's counter, from the gate targets alone */
    cr_expect_float_eq(vit_macs_per_image(&m.cfg, &m.tps), macs, 0.5, "framework MACs %.0f, by hand %.0f",
                       vit_macs_per_image(&m.cfg, &m.tps), macs);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
}

/* Widths that disagree with the tensors: the error names the tensor, both shapes and the
 * widths; widths out of range name the attribute. */
static void rewrite_widths(const char *path, const char *attr, const int32_t *v) {
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0);
    hid_t a = H5Aopen(f, attr, H5P_DEFAULT);
    cr_assert(a >= 0);
    cr_assert(H5Awrite(a, H5T_NATIVE_INT32, v) >= 0);
    H5Aclose(a);
    H5Fclose(f);
}

Test(infer_channels, widths_disagreeing_with_tensors_are_an_error) {
    vit_model m;
    gated_model(&m, TOK_NONE, 4);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_channels", "bad.h5");
    export_model(&m, path);
    const int32_t qk[4] = {9, 9, 7, 9};
    rewrite_widths(path, "head_dim_qk", qk);
    tps_model *lib = NULL;
    cr_assert_eq(tps_model_open(path, &lib), TPS_ERR_SHAPE);
    const char *e = tps_last_error();
    cr_expect(strstr(e, "blocks.2.attn.qkv.weight") && strstr(e, "[96,48]") && strstr(e, "[104,48]") &&
                  strstr(e, "head_dim_qk[2] = 7"),
              "message: %s", e);
    const int32_t zero[4] = {9, 0, 6, 9};
    rewrite_widths(path, "head_dim_qk", zero);
    cr_assert_eq(tps_model_open(path, &lib), TPS_ERR_FORMAT);
    cr_expect(strstr(tps_last_error(), "head_dim_qk[1] = 0 is outside 1..12"), "message: %s", tps_last_error());
    vit_model_free(&m);
    unlink(path);
}

/* BF16 (oneDNN, CPUs with avx512_bf16): the smaller linears are packed and run; the logits stay
 * within test_infer_bf16.c's bound for a depth-4 model (4 sqrt(2/3) 2^-8 sqrt(2 + 4 depth) of
 * the largest) of FP32's, and differ from them (the BF16 path really ran). */
Test(infer_channels, bf16_runs_pruned_widths) {
    if (tps_precision_supported(TPS_PRECISION_BF16) != TPS_OK) cr_skip_test("BF16 unavailable: %s", tps_last_error());
    vit_model m;
    gated_model(&m, TOK_NONE, 6);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_channels", "bf16.h5");
    export_model(&m, path);
    float *images = fx_random_normal(4 * 3 * 32 * 32, 8);
    float *f = library_logits(path, TPS_PRECISION_FP32, images, 4, 10), *h = library_logits(path, TPS_PRECISION_BF16, images, 4, 10);
    const double scale = fx_max_abs(f, 40), d = fx_max_diff(h, f, 40);
    const double tol = 4.0 * sqrt(2.0 / 3.0) / 256.0 * sqrt(2.0 + 4.0 * 4) * scale;
    cr_expect(d <= tol && d > 1e-4 * scale, "BF16 vs FP32: %g (scale %g, tolerance %g)", d, scale, tol);
    free(images), free(f), free(h);
    vit_model_free(&m);
    unlink(path);
}
