/* IDX datasets: the committed tiny pair (gzip and plain), prefix derivation, pixel values
 * through the eval path, and the real Fashion-MNIST from Debian's package when installed.
 * References: the fixture formulas in tests/data/make_data_fixtures.py (pixel =
 * (37 i + 11 y + 5 x) % 256, label = i % 4, N = 20, 6x5); Fashion-MNIST's published split
 * (60000 train / 10000 test, 6000 / 1000 per class). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>
#include <unistd.h>

#include "data/data_fixtures.h"
#include "data/dataset.h"
#include "data/loader.h"

#define FMNIST "/usr/share/datasets/fashion-mnist"

static void check_tiny(tpsc_dataset *ds) {
    cr_assert_eq(ds->count, 20);
    cr_assert_eq(ds->num_classes, 4, "K = max label + 1");
    tpsc_decode_scratch s = {0};
    for (size_t i = 0; i < ds->count; i++) {
        cr_assert_eq(ds->labels[i], (int32_t)(i % 4), "label of sample %zu", i);
        tpsc_image_view v;
        cr_assert_eq(tpsc_dataset_get(ds, i, &s, &v), TPSC_OK);
        cr_assert_eq(v.width, 5);
        cr_assert_eq(v.height, 6);
        cr_assert_eq(v.channels, 1);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 5; x++)
                cr_assert_eq(v.u8[y * 5 + x], (37 * i + 11 * y + 5 * x) % 256, "pixel %zu (%d,%d)", i, y, x);
    }
    tpsc_decode_scratch_free(&s);
}

Test(data_idx, gzip_pair) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_idx(&ds, DATA_FIXTURES "/tiny-images-idx3-ubyte.gz",
                                       DATA_FIXTURES "/tiny-labels-idx1-ubyte.gz"),
                 TPSC_OK, "%s", tpsc_last_error());
    check_tiny(ds);
    cr_assert_str_eq(ds->class_names[3], "3");
    tpsc_dataset_close(ds);
}

Test(data_idx, plain_pair) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_idx(&ds, DATA_FIXTURES "/plain-images-idx3-ubyte", DATA_FIXTURES "/plain-labels-idx1-ubyte"),
                 TPSC_OK, "%s", tpsc_last_error());
    check_tiny(ds);
    tpsc_dataset_close(ds);
}

Test(data_idx, prefix_and_limit) {
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    cfg.format = TPSC_DATA_IDX;
    strcpy(cfg.train_path, DATA_FIXTURES "/tiny");  /* -> tiny-images-idx3-ubyte.gz */
    strcpy(cfg.val_path, DATA_FIXTURES "/plain");   /* -> plain-images-idx3-ubyte (no .gz) */
    cfg.limit = 7;
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_config(&ds, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->count, 7);
    tpsc_dataset_close(ds);
    cr_assert_eq(tpsc_dataset_open_config(&ds, &cfg, TPSC_SPLIT_VAL), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->count, 7);
    tpsc_dataset_close(ds);
    strcpy(cfg.train_path, DATA_FIXTURES "/nothing");
    cr_assert_eq(tpsc_dataset_open_config(&ds, &cfg, TPSC_SPLIT_TRAIN), TPSC_ERR_MISSING);
    cr_assert(strstr(tpsc_last_error(), DATA_FIXTURES "/nothing-images-idx3-ubyte") != NULL, "%s", tpsc_last_error());
}

/* The eval path at the native size with crop_pct 1 is an identity resize, so with mean 0
 * and std 1 the batch holds pixel / 255 (float32 rounding, tolerance 1e-6), grey repeated
 * into 3 channels, in dataset order. */
Test(data_idx, eval_batches_hold_pixels) {
    /* images are 6 high, 5 wide: the centre 5x5 crop starts at row 0 */
    tpsc_data_config cfg = fx_data_config(TPSC_DATA_IDX, TPSC_SPLIT_VAL, DATA_FIXTURES "/tiny", 5, 8);
    fx_identity_eval(&cfg);
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_VAL), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_loader_batches_per_epoch(l), 3, "20 samples, B = 8, eval keeps the last partial batch");
    size_t seen = 0;
    tpsc_batch b;
    for (;;) {
        cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
        if (b.count == 0) break;
        for (size_t k = 0; k < b.count; k++) {
            size_t i = seen + k;
            cr_assert_eq(b.indices[k], (int64_t)i, "eval keeps dataset order");
            cr_assert_eq(b.labels[k], (int32_t)(i % 4));
            for (size_t kk = 0; kk < 4; kk++)
                cr_assert_float_eq(b.targets[k * 4 + kk], kk == i % 4 ? 1.0f : 0.0f, 0.0f, "eval targets are one-hot");
            /* torchvision: resize short side 5 -> 5x6 unchanged, centre crop top = round(0.5) = 0. */
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < 5; y++)
                    for (int x = 0; x < 5; x++) {
                        float want = (float)((37 * i + 11 * y + 5 * x) % 256) / 255.0f;
                        float got = b.images[((k * 3 + c) * 5 + y) * 5 + x];
                        cr_assert_float_eq(got, want, 1e-6f, "sample %zu c%d (%d,%d): %g vs %g", i, c, y, x, got, want);
                    }
        }
        seen += b.count;
        tpsc_loader_release(l, &b);
    }
    cr_assert_eq(seen, 20);
    tpsc_loader_close(l);
}

static void count_classes(tpsc_dataset *ds, size_t per_class) {
    size_t counts[10] = {0};
    for (size_t i = 0; i < ds->count; i++) {
        cr_assert(ds->labels[i] >= 0 && ds->labels[i] < 10);
        counts[ds->labels[i]]++;
    }
    for (int k = 0; k < 10; k++) cr_assert_eq(counts[k], per_class, "class %d", k);
}

Test(data_idx, real_fashion_mnist) {
    if (access(FMNIST "/train-images-idx3-ubyte.gz", R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_config(&ds, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->count, 60000);
    cr_assert_eq(ds->num_classes, 10);
    cr_assert_str_eq(ds->class_names[0], "T-shirt/top");
    cr_assert_str_eq(ds->class_names[9], "Ankle boot");
    tpsc_image_view v;
    tpsc_decode_scratch s = {0};
    cr_assert_eq(tpsc_dataset_get(ds, 59999, &s, &v), TPSC_OK);
    cr_assert_eq(v.width, 28);
    cr_assert_eq(v.height, 28);
    count_classes(ds, 6000);
    tpsc_dataset_close(ds);
    cr_assert_eq(tpsc_dataset_open_config(&ds, &cfg, TPSC_SPLIT_VAL), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->count, 10000);
    count_classes(ds, 1000);
    tpsc_dataset_close(ds);
}
