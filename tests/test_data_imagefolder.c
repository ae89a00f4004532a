/* Image folders: class order (sorted folder names, as torchvision), file order (recursive,
 * by folder path then name), extensions (case-insensitive; other files ignored), decoded
 * pixels of PNG/BMP (exact) and JPEG (close), grey decoding, and the eval crop on a real
 * decoded image. Images are written at test time (tests/data/data_fixtures.h formulas). */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_fixtures.h"
#include "data/dataset.h"
#include "data/loader.h"

#define W 12
#define H 10

static char root[64];

static void make_folder(void) {
    strcpy(root, "/tmp/tpsc_folder_XXXXXX");
    cr_assert(fx_mkdtemp(root));
    cr_assert_eq(fx_mkdir(root, "dog"), 0);
    cr_assert_eq(fx_mkdir(root, "bird"), 0);
    cr_assert_eq(fx_mkdir(root, "cat"), 0);
    cr_assert_eq(fx_mkdir(root, "bird/sub"), 0);
    struct { const char *name, *kind; int i; } files[] = {
        {"bird/b1.BMP", "bmp", 1}, {"bird/b0.png", "png", 0}, {"bird/sub/b2.png", "png", 2},
        {"cat/c0.jpg", "jpg", 3},  {"dog/d1.jpeg", "jpg", 5}, {"dog/d0.png", "png", 4},
    };
    char path[256];
    for (size_t k = 0; k < sizeof files / sizeof *files; k++) {
        snprintf(path, sizeof path, "%s/%s", root, files[k].name);
        cr_assert_eq(fx_write_image(path, files[k].kind, files[k].i, W, H), 0, "%s", path);
    }
    snprintf(path, sizeof path, "%s/cat/notes.txt", root);
    cr_assert_eq(fx_write_bytes(path, "not an image", 12), 0);
}

static void remove_folder(void) { fx_rm_rf(root); }

TestSuite(data_imagefolder, .init = make_folder, .fini = remove_folder);

/* A progressive JPEG (smooth7p.jpg: its first DC scan names an AC table that only a later
 * segment defines, which the loader's table check must accept) decodes like the baseline ones:
 * quality 100, no chroma subsampling, a smooth ramp, so within 3 levels of the formula. */
Test(data_imagefolder, progressive_jpeg_decodes) {
    char dir[64] = "/tmp/tpsc_progressive_XXXXXX", path[256];
    cr_assert(fx_mkdtemp(dir));
    cr_assert_eq(fx_mkdir(dir, "a"), 0);
    snprintf(path, sizeof path, "%s/a/p.jpg", dir);
    cr_assert_eq(fx_write_image(path, "jpg", 7, W, H), 0, "%s", path);
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_imagefolder(&ds, dir, 3), TPSC_OK, "%s", tpsc_last_error());
    tpsc_decode_scratch s = {0};
    tpsc_image_view v;
    cr_assert_eq(tpsc_dataset_get(ds, 0, &s, &v), TPSC_OK, "%s", tpsc_last_error());
    cr_assert(v.width == W && v.height == H && v.channels == 3, "%dx%dx%d", v.width, v.height, v.channels);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++)
            for (int c = 0; c < 3; c++) {
                const int got = v.u8[(y * W + x) * 3 + c], want = fx_smooth(7, y, x, c);
                cr_assert(abs(got - want) <= 3, "(%d,%d,%d): %d vs %d", y, x, c, got, want);
            }
    tpsc_decode_scratch_free(&s);
    tpsc_dataset_close(ds);
    fx_rm_rf(dir);
}

Test(data_imagefolder, classes_files_and_pixels) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_imagefolder(&ds, root, 3), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->num_classes, 3);
    cr_assert_str_eq(ds->class_names[0], "bird");
    cr_assert_str_eq(ds->class_names[1], "cat");
    cr_assert_str_eq(ds->class_names[2], "dog");
    cr_assert_eq(ds->count, 6, "notes.txt is not an image");
    /* torchvision order: bird/b0.png, bird/b1.BMP, bird/sub/b2.png, cat/c0.jpg, dog/d0.png, dog/d1.jpeg */
    const int32_t want_label[6] = {0, 0, 0, 1, 2, 2};
    const char *want_tail[6] = {"bird/b0.png", "bird/b1.BMP", "bird/sub/b2.png", "cat/c0.jpg", "dog/d0.png", "dog/d1.jpeg"};
    const bool lossy[6] = {false, false, false, true, false, true};
    tpsc_decode_scratch s = {0};
    for (size_t i = 0; i < 6; i++) {
        cr_assert_eq(ds->labels[i], want_label[i], "sample %zu", i);
        char name[512];
        ds->ops->sample_name(ds, i, name, sizeof name);
        size_t n = strlen(name), t = strlen(want_tail[i]);
        cr_assert(n >= t && strcmp(name + n - t, want_tail[i]) == 0, "sample %zu is %s", i, name);
        tpsc_image_view v;
        cr_assert_eq(tpsc_dataset_get(ds, i, &s, &v), TPSC_OK, "%s", tpsc_last_error());
        cr_assert_eq(v.width, W);
        cr_assert_eq(v.height, H);
        cr_assert_eq(v.channels, 3);
        /* Lossless files: exact. JPEG at quality 100 (stb writes no chroma subsampling
         * there) of a smooth ramp: only DCT rounding, within 3 levels. */
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++)
                for (int c = 0; c < 3; c++) {
                    int got = v.u8[(y * W + x) * 3 + c];
                    int want = lossy[i] ? fx_smooth((int)i, y, x, c) : fx_pixel((int)i, y, x, c);
                    cr_assert(abs(got - want) <= (lossy[i] ? 3 : 0), "sample %zu (%d,%d,%d): %d vs %d", i, y, x, c, got,
                              want);
                }
    }
    tpsc_decode_scratch_free(&s);
    tpsc_dataset_close(ds);
}

/* channels = 1 decodes to grey with stb_image's integer luminance (77 R + 150 G + 29 B) >> 8. */
Test(data_imagefolder, grey_decoding) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_imagefolder(&ds, root, 1), TPSC_OK, "%s", tpsc_last_error());
    tpsc_decode_scratch s = {0};
    tpsc_image_view v;
    cr_assert_eq(tpsc_dataset_get(ds, 0, &s, &v), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(v.channels, 1);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int want = (77 * fx_pixel(0, y, x, 0) + 150 * fx_pixel(0, y, x, 1) + 29 * fx_pixel(0, y, x, 2)) >> 8;
            cr_assert_eq(v.u8[y * W + x], want);
        }
    tpsc_decode_scratch_free(&s);
    tpsc_dataset_close(ds);
}

/* Eval at size 10 with crop_pct 1 on a 12x10 image: torchvision resizes the short side to
 * 10 (unchanged) and centre-crops 10x10 from left = round((12 - 10) / 2) = 1, so output
 * (y, x) is source (y, x + 1). mean 0, std 1: values are pixel / 255 (tolerance 1e-6). */
Test(data_imagefolder, eval_centre_crop_of_decoded_png) {
    tpsc_data_config cfg = fx_data_config(TPSC_DATA_IMAGEFOLDER, TPSC_SPLIT_VAL, root, 10, 6);
    fx_identity_eval(&cfg);
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_VAL), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(tpsc_loader_class_name(l, 1), "cat");
    tpsc_batch b;
    cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(b.count, 6);
    const int source_i[2] = {0, 4}; /* the PNGs at batch positions 0 and 4 */
    for (int k = 0; k < 2; k++) {
        size_t pos = k == 0 ? 0 : 4;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 10; y++)
                for (int x = 0; x < 10; x++)
                    cr_assert_float_eq(b.images[((pos * 3 + c) * 10 + y) * 10 + x], fx_pixel(source_i[k], y, x + 1, c) / 255.0f,
                                       1e-6f, "pos %zu c%d (%d,%d)", pos, c, y, x);
    }
    tpsc_loader_close(l);
}

/* The train path runs over decoded files (crop, flip, RandAugment, erasing, mixup) and keeps
 * labels with their files. */
Test(data_imagefolder, train_epoch) {
    tpsc_data_config cfg = fx_data_config(TPSC_DATA_IMAGEFOLDER, TPSC_SPLIT_TRAIN, root, 16, 3);
    cfg.workers = 2;
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    const int32_t label_of[6] = {0, 0, 0, 1, 2, 2};
    size_t seen = 0;
    tpsc_batch b;
    for (;;) {
        cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
        if (b.count == 0) break;
        for (size_t k = 0; k < b.count; k++) cr_assert_eq(b.labels[k], label_of[b.indices[k]]);
        seen += b.count;
    }
    cr_assert_eq(seen, 6);
    tpsc_loader_close(l);
}
