/* ToMe off the shelf from the command line: `tpsc eval --tome-r` and `tpsc infer --tome-r` on a
 * dense checkpoint (random weights, no training), and the error when r is too large.
 *
 * The model: Fashion-MNIST's 28 x 28 images, patch 7 (N = 16), C 96, depth 3, H 4. r = 2 merges
 * 2 tokens in each block (17 -> 15 -> 13 -> 11 tokens); r = 6 would merge 18 > 16 tokens.
 * Checks:
 *   tpsc eval: the method column says "tome r=2" and GMACs are the cost model's for r = 2
 *     (vit_macs_per_image, to the 4 printed decimals; dense is 0.0059), on the framework and on libtpsinfer
 *     (--precision fp32); the two engines' top-1 within 1 point (100 images: at most one image
 *     may flip between engines whose logits differ by float rounding);
 *   tpsc infer --tensor: logits within 1e-5 * max|framework| of the framework's ToMe forward on
 *     the same weights (tests/test_infer_merge.c's library-vs-framework tolerance);
 *   r = 6: both commands fail, naming --tome-r and the numbers (18 tokens, 16 patch tokens). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/io/checkpoint.h"
#include "src/io/h5util.h"
#include "src/model/vit.h"
#include "support/command.h"
#include "support/fixture.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"

static const char *recipe_text =
    "[model]\narch = custom\nimg_size = 28\npatch_size = 7\nin_chans = 1\nembed_dim = 96\ndepth = 3\n"
    "num_heads = 4\nnum_classes = 10\n"
    "[tps]\nmethod = none\n"
    "[data]\nformat = fashion_mnist\nbatch_size = 32\neval_batch_size = 50\nworkers = 1\nlimit_val = 100\n"
    "[augment]\nmean = 0.286\nstd = 0.353\ncrop_pct = 1.0\n"
    "[run]\nthreads = 1\n";

static char dir[64], ckpt[128], tpsc[512];

static void setup(void) {
    snprintf(tpsc, sizeof tpsc, "%s/tpsc", TPSC_BINARY_DIR);
    snprintf(dir, sizeof dir, "/tmp/tpsc_cli_tome_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(ckpt, sizeof ckpt, "%s/dense.h5", dir);
}

static void teardown(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    (void)system(cmd);
}

TestSuite(cli_tome, .init = setup, .fini = teardown);

static vit_config config(void) {
    vit_config c = {.img_size = 28, .patch_size = 7, .in_chans = 1, .embed_dim = 96, .depth = 3, .num_heads = 4,
                    .num_classes = 10, .mlp_ratio = 4.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    return c;
}

/* A dense training checkpoint with random weights (linears N(0, 1/fan_in), the rest N(0, 0.5)). */
static void write_dense(vit_model *m) {
    vit_config c = config();
    tok_config t = {.method = TOK_NONE};
    cr_assert_eq(vit_model_create(m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 5);
    for (int i = 0; i < m->params.count; i++) {
        ag_param *p = &m->params.items[i];
        const size_t fan_in = p->t.ndim >= 2 ? p->numel / p->t.shape[0] : 1;
        const bool norm = strstr(p->name, "norm") && p->t.ndim == 1 && strstr(p->name, ".weight");
        for (size_t j = 0; j < p->numel; j++) {
            const float z = tpsc_rng_normal(&rng);
            p->t.data[j] = norm ? 1.0f + 0.1f * z : p->t.ndim >= 2 ? z / sqrtf((float)fan_in) : 0.5f * z;
        }
    }
    tpsc_checkpoint ck = {.vit = &m->cfg, .tps = &m->tps, .params = &m->params, .recipe_text = recipe_text};
    cr_assert_eq(tpsc_checkpoint_save(ckpt, &ck), TPSC_OK, "%s", tpsc_last_error());
}

/* The table row of ckpt: method, top-1 and GMACs columns (after the image count). */
static void parse_row(const char *out, char *method, double *top1, double *gmacs) {
    const char *row = strstr(out, "| /");
    cr_assert_not_null(row, "no table row in:\n%s", out);
    char path[256];
    cr_assert_eq(sscanf(row, "| %255s | %31[^|]| %*d | %lf%% | %*f%% | %lf |", path, method, top1, gmacs), 4, "row: %s", row);
    for (size_t n = strlen(method); n > 0 && method[n - 1] == ' ';) method[--n] = '\0';
}

Test(cli_tome, eval_off_the_shelf_both_engines) {
    if (access(tpsc, X_OK) != 0) cr_skip_test("%s is not built", tpsc);
    if (access(FMNIST, R_OK) != 0) cr_skip_test("%s missing (Debian's dataset-fashion-mnist)", FMNIST);
    vit_model m;
    write_dense(&m);
    vit_config c = config();
    tok_config t = {.method = TOK_TOME, .tome_r = 2, .prop_attn = true};
    const double want = vit_macs_per_image(&c, &t) / 1e9;
    char cmd[1024], out[8192], method[32];
    double top1[2], gmacs;
    const char *engines[2] = {"", "--precision fp32"};
    for (int e = 0; e < 2; e++) {
        snprintf(cmd, sizeof cmd, "eval %s --tome-r 2 --threads 1 %s", ckpt, engines[e]);
        cr_assert_eq(tcmd_tpsc(cmd, out, sizeof out), 0, "%s:\n%s", cmd, out);
        parse_row(out, method, &top1[e], &gmacs);
        cr_expect_str_eq(method, "tome r=2", "%s", out);
        cr_expect(fabs(gmacs - want) <= 0.5e-4 + 1e-9, "%s: GMACs %.4f, the cost model %.4f", cmd, gmacs, want);
    }
    cr_expect(fabs(top1[0] - top1[1]) <= 1.0, "top-1 %.2f (framework) vs %.2f (libtpsinfer)", top1[0], top1[1]);
    snprintf(cmd, sizeof cmd, "eval %s --tome-r 6 --threads 1", ckpt);
    cr_expect_neq(tcmd_tpsc(cmd, out, sizeof out), 0, "r = 6 must fail");
    cr_expect(strstr(out, "--tome-r 6") && strstr(out, "18 tokens") && strstr(out, "16 patch tokens"), "%s", out);
    vit_model_free(&m);
}

Test(cli_tome, infer_tensor_matches_the_framework) {
    if (access(tpsc, X_OK) != 0) cr_skip_test("%s is not built", tpsc);
    vit_model m;
    write_dense(&m);
    const size_t B = 4, K = 10;
    float *images = fx_random_normal(B * 28 * 28, 3);
    char in[160], outp[160], cmd[1024], out[8192];
    snprintf(in, sizeof in, "%s/in.h5", dir);
    snprintf(outp, sizeof outp, "%s/out.h5", dir);
    tpsc_h5 f = {.id = -1};
    cr_assert_eq(tpsc_h5_create(&f, in, NULL), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_h5_write_f32(&f, "/input", 4, (size_t[]){B, 1, 28, 28}, images), TPSC_OK);
    cr_assert_eq(tpsc_h5_close(&f), TPSC_OK);
    snprintf(cmd, sizeof cmd, "infer %s --tensor %s --out %s --tome-r 2 --threads 1", ckpt, in, outp);
    cr_assert_eq(tcmd_tpsc(cmd, out, sizeof out), 0, "%s:\n%s", cmd, out);
    size_t n;
    float *got = NULL;
    tpsc_h5 r = {.id = -1};
    cr_assert_eq(tpsc_h5_open_read(&r, outp), TPSC_OK);
    got = malloc(B * K * sizeof(float));
    cr_assert_eq(tpsc_h5_read_f32(&r, "/logits", 2, (size_t[]){B, K}, got), TPSC_OK, "%s", tpsc_last_error());
    tpsc_h5_close(&r);
    /* the framework's ToMe on the same weights */
    m.tps = (tok_config){.method = TOK_TOME, .tome_r = 2, .prop_attn = true};
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    vit_forward_opts opts = {.mode = VIT_INFER};
    vit_output vo;
    ag_tensor *logits = vit_forward(ctx, &m, ag_wrap(ctx, images, NULL, 4, (size_t[]){B, 1, 28, 28}, false), &opts, &vo);
    cr_assert_not_null(logits, "%s", tpsc_last_error());
    n = B * K;
    const double scale = fx_max_abs(logits->data, n), d = fx_max_diff(got, logits->data, n);
    cr_expect(d <= 1e-5 * scale, "tpsc infer --tome-r 2: logits differ from the framework's ToMe by %g (scale %g)", d, scale);
    /* and it is not the dense model */
    m.tps = (tok_config){.method = TOK_NONE};
    ag_tensor *dense = vit_forward(ctx, &m, ag_wrap(ctx, images, NULL, 4, (size_t[]){B, 1, 28, 28}, false), &opts, &vo);
    cr_expect(fx_max_diff(got, dense->data, n) > 1e-3 * scale, "ToMe's logits equal the dense model's");
    ag_ctx_free(ctx);
    snprintf(cmd, sizeof cmd, "infer %s --tensor %s --out %s --tome-r 6 --threads 1", ckpt, in, outp);
    cr_expect_neq(tcmd_tpsc(cmd, out, sizeof out), 0, "r = 6 must fail");
    cr_expect(strstr(out, "--tome-r") && strstr(out, "tome_r 6") && strstr(out, "18 tokens") &&
                  strstr(out, "16 patch tokens"),
              "%s", out);
    free(got), free(images);
    vit_model_free(&m);
}
