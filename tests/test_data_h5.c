/* HDF5 datasets: uint8 [N,H,W,C] and float32 [N,C,H,W] fixtures, class names, and pixel
 * values through the eval path. References: the formulas in tests/data/make_data_fixtures.py
 * (u8: (37 i + 11 y + 5 x + 50 c) % 256, label i % 3; f32: ((13 i + 4 y + x) % 17) / 16,
 * label i % 2). */
#include <criterion/criterion.h>
#include <string.h>

#include "data/data_fixtures.h"
#include "data/dataset.h"
#include "data/loader.h"

Test(data_h5, uint8_nhwc) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_h5(&ds, DATA_FIXTURES "/tiny_u8.h5"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->count, 20);
    cr_assert_eq(ds->num_classes, 3);
    cr_assert_str_eq(ds->class_names[0], "alpha");
    cr_assert_str_eq(ds->class_names[1], "beta");
    cr_assert_str_eq(ds->class_names[2], "gamma");
    tpsc_decode_scratch s = {0};
    for (size_t i = 0; i < 20; i++) {
        cr_assert_eq(ds->labels[i], (int32_t)(i % 3));
        tpsc_image_view v;
        cr_assert_eq(tpsc_dataset_get(ds, i, &s, &v), TPSC_OK);
        cr_assert(v.u8 && !v.f32);
        cr_assert_eq(v.width, 5);
        cr_assert_eq(v.height, 6);
        cr_assert_eq(v.channels, 3);
        for (int y = 0; y < 6; y++)
            for (int x = 0; x < 5; x++)
                for (int c = 0; c < 3; c++)
                    cr_assert_eq(v.u8[(y * 5 + x) * 3 + c], (37 * i + 11 * y + 5 * x + 50 * c) % 256);
    }
    tpsc_dataset_close(ds);
}

Test(data_h5, float32_nchw) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_h5(&ds, DATA_FIXTURES "/tiny_f32.h5"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->count, 10);
    cr_assert_eq(ds->num_classes, 2);
    cr_assert_str_eq(ds->class_names[0], "even", "fixed-length strings");
    cr_assert_str_eq(ds->class_names[1], "odd");
    tpsc_decode_scratch s = {0};
    for (size_t i = 0; i < 10; i++) {
        cr_assert_eq(ds->labels[i], (int32_t)(i % 2), "int64 labels read as int32");
        tpsc_image_view v;
        cr_assert_eq(tpsc_dataset_get(ds, i, &s, &v), TPSC_OK);
        cr_assert(v.f32 && !v.u8);
        cr_assert_eq(v.channels, 1);
        for (int p = 0; p < 16; p++) cr_assert_float_eq(v.f32[p], ((13 * i + p) % 17) / 16.0f, 0.0f);
    }
    tpsc_dataset_close(ds);
}

/* Eval at the native width with crop_pct 1: identity resize; mean 0, std 1 leave x / 255.
 * Tolerance 1e-6 (float32 division) for uint8; 1e-5 for the float path, which goes through
 * x * 255 and back. */
Test(data_h5, eval_pixels_through_loader) {
    tpsc_data_config cfg = fx_data_config(TPSC_DATA_H5, TPSC_SPLIT_VAL, DATA_FIXTURES "/tiny_u8.h5", 5, 20);
    fx_identity_eval(&cfg);
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_VAL), TPSC_OK, "%s", tpsc_last_error());
    tpsc_batch b;
    cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(b.count, 20);
    for (size_t i = 0; i < 20; i++)
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 5; y++)
                for (int x = 0; x < 5; x++)
                    cr_assert_float_eq(b.images[((i * 3 + c) * 5 + y) * 5 + x],
                                       ((37 * i + 11 * y + 5 * x + 50 * c) % 256) / 255.0f, 1e-6f);
    tpsc_loader_close(l);

    strcpy(cfg.val_path, DATA_FIXTURES "/tiny_f32.h5");
    cfg.image_size = 4;
    cfg.channels = 3; /* grey repeated */
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_VAL), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(b.count, 10);
    for (size_t i = 0; i < 10; i++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < 16; p++)
                cr_assert_float_eq(b.images[(i * 3 + c) * 16 + p], ((13 * i + p) % 17) / 16.0f, 1e-5f);
    tpsc_loader_close(l);
}

Test(data_h5, errors_name_the_file) {
    char dir[] = "/tmp/tpsc_h5_XXXXXX";
    cr_assert(fx_mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof path, "%s/not.h5", dir);
    cr_assert_eq(fx_write_bytes(path, "hello, not hdf5\n", 16), 0);
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_h5(&ds, path), TPSC_ERR_FORMAT);
    cr_assert(strstr(tpsc_last_error(), path), "%s", tpsc_last_error());
    snprintf(path, sizeof path, "%s/absent.h5", dir);
    cr_assert_eq(tpsc_dataset_open_h5(&ds, path), TPSC_ERR_IO);
    cr_assert(strstr(tpsc_last_error(), path), "%s", tpsc_last_error());
    fx_rm_rf(dir);
}
