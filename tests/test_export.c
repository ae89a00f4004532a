/* The framework hands models to libtpsinfer in memory (src/export/export.h, the library's
 * tps_model_open_memory): no temporary file, and the very same model as a file on disk.
 * References: the exported file opened with tps_model_open (the path `tpsc export` users take);
 * logits must be equal bit for bit (the same bytes of weights, the same library). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/export/export.h"
#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/util/rng.h"
#include "support/files.h"
#include "support/small_model.h"

#define B 3

/* The small model (support/small_model.h) with dtps at 1, 2, 3, rho 0.7: pruned and squeezed;
 * timm's init with noise on top */
static void small_model(vit_model *m, uint64_t seed) {
    const vit_config c = sm_config();
    const tok_config t = sm_tokens(TOK_DTPS, 0.7f);
    cr_assert_eq(vit_model_create(m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    vit_model_init(m, &rng);
    /* timm's init leaves the scores flat; spread the weights so pruning decides something */
    for (size_t i = 0; i < m->params.total; i++) m->params.data[i] += 0.2f * tpsc_rng_normal(&rng);
}

static float *run(tps_model *lib, const float *images) {
    tps_workspace *ws;
    cr_assert_eq(tps_workspace_create(lib, B, &ws), TPS_OK, "%s", tps_last_error());
    tps_model_info info;
    tps_model_get_info(lib, &info);
    float *logits = malloc(B * (size_t)info.num_classes * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, logits), TPS_OK, "%s", tps_last_error());
    tps_workspace_free(ws);
    return logits;
}

static float *random_images(void) {
    float *x = malloc(B * 3 * 32 * 32 * sizeof(float));
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 7);
    for (size_t i = 0; i < B * 3 * 32 * 32; i++) x[i] = tpsc_rng_normal(&rng);
    return x;
}

/* A training checkpoint (/model zeros, /ema the weights) opens for inference as its export does:
 * the EMA weights, the class names, the same logits to the bit. */
Test(export, training_checkpoint_opens_as_its_export) {
    vit_model m;
    small_model(&m, 3);
    float *ema = malloc(m.params.total * sizeof(float));
    memcpy(ema, m.params.data, m.params.total * sizeof(float));
    memset(m.params.data, 0, m.params.total * sizeof(float));
    static const char *const names[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    char ckpt[512], file[512];
    sm_tmp_path(ckpt, sizeof ckpt, "test_export", "ckpt.h5");
    sm_tmp_path(file, sizeof file, "test_export", "model.h5");
    tpsc_checkpoint ck = {.vit = &m.cfg, .tps = &m.tps, .params = &m.params, .ema = ema,
                          .recipe_text = "[augment]\ncrop_pct = 0.9\n", .class_names = names, .n_class_names = 10};
    cr_assert_eq(tpsc_checkpoint_save(ckpt, &ck), TPSC_OK, "%s", tpsc_last_error());
    tpsc_export x;
    cr_assert_eq(tpsc_export_load(&x, ckpt, true), TPSC_OK, "%s", tpsc_last_error());
    cr_expect_str_eq(x.weights, "ema");
    cr_assert_eq(tpsc_export_write(&x, file), TPSC_OK, "%s", tpsc_last_error());
    tpsc_export_free(&x);

    tps_model *from_file, *from_ckpt;
    cr_assert_eq(tps_model_open(file, &from_file), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tpsc_open_for_inference(ckpt, NULL, &from_ckpt), TPSC_OK, "%s", tpsc_last_error());
    cr_expect_str_eq(tps_model_class_name(from_ckpt, 9), "j");
    tps_model_info info;
    tps_model_get_info(from_ckpt, &info);
    cr_expect_float_eq(info.crop_pct, 0.9f, 1e-7, "crop_pct %g from the stored recipe", (double)info.crop_pct);
    float *images = random_images();
    float *want = run(from_file, images), *got = run(from_ckpt, images);
    cr_expect_eq(memcmp(got, want, B * 10 * sizeof(float)), 0, "the checkpoint's logits differ from its export's");
    bool nonzero = false;
    for (int i = 0; i < B * 10; i++) nonzero |= want[i] != 0.0f;
    cr_expect(nonzero, "the EMA weights were not served (all-zero logits)");

    /* an exported file goes through tpsc_open_for_inference unchanged */
    tps_model *again;
    cr_assert_eq(tpsc_open_for_inference(file, NULL, &again), TPSC_OK, "%s", tpsc_last_error());
    float *again_logits = run(again, images);
    cr_expect_eq(memcmp(again_logits, want, B * 10 * sizeof(float)), 0);

    tps_model_close(from_file), tps_model_close(from_ckpt), tps_model_close(again);
    free(images), free(want), free(got), free(again_logits), free(ema);
    vit_model_free(&m);
    unlink(ckpt), unlink(file);
}

/* The bytes of an exported file open from memory as the file does; the model keeps nothing of
 * the caller's buffer. */
Test(export, open_memory_equals_open_file) {
    vit_model m;
    small_model(&m, 5);
    char file[512];
    sm_tmp_path(file, sizeof file, "test_export", "mem.h5");
    sm_save_inference(file, &m);
    size_t bytes;
    void *image = tfile_read(file, &bytes);
    tps_model *a, *b;
    cr_assert_eq(tps_model_open(file, &a), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_model_open_memory(image, bytes, "mem.h5", NULL, &b), TPS_OK, "%s", tps_last_error());
    memset(image, 0xA5, bytes);
    free(image);
    /* a second model from memory while the first is open */
    tps_model *c;
    cr_assert_eq(tpsc_export_open_model(&m, NULL, &c), TPSC_OK, "%s", tpsc_last_error());
    float *images = random_images();
    float *la = run(a, images), *lb = run(b, images), *lc = run(c, images);
    cr_expect_eq(memcmp(la, lb, B * 10 * sizeof(float)), 0, "memory and file logits differ");
    cr_expect_eq(memcmp(la, lc, B * 10 * sizeof(float)), 0, "tpsc_export_open_model's logits differ");
    cr_expect_float_eq(tps_model_macs(a, 0.0f), tps_model_macs(b, 0.0f), 0.0);
    tps_model_close(a), tps_model_close(b), tps_model_close(c);
    free(images), free(la), free(lb), free(lc);
    vit_model_free(&m);
    unlink(file);
}

/* Bytes that are not an HDF5 file image, and a truncated one: errors that say so. */
Test(export, open_memory_rejects_bad_images) {
    tps_model *m = (tps_model *)1;
    const char junk[64] = "not an hdf5 file at all";
    cr_expect_eq(tps_model_open_memory(junk, sizeof junk, "junk", NULL, &m), TPS_ERR_FORMAT);
    cr_expect_null(m);
    cr_expect(strstr(tps_last_error(), "junk") && strstr(tps_last_error(), "not an HDF5"), "%s", tps_last_error());
    vit_model v;
    small_model(&v, 9);
    char file[512];
    sm_tmp_path(file, sizeof file, "test_export", "trunc.h5");
    sm_save_inference(file, &v);
    size_t bytes;
    void *image = tfile_read(file, &bytes);
    cr_expect_neq(tps_model_open_memory(image, bytes / 2, "half", NULL, &m), TPS_OK, "half a file opened");
    cr_expect(strstr(tps_last_error(), "half"), "%s", tps_last_error());
    cr_expect_eq(tps_model_open_memory(NULL, 10, "x", NULL, &m), TPS_ERR_ARG);
    free(image);
    vit_model_free(&v);
    unlink(file);
}
