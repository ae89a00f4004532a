/* Bad input: every failure names the file at fault; on_bad_image = skip replaces, counts and
 * names bad files without giving any sample a wrong label. Broken files are made at test
 * time: a JPEG cut in half, a text file named .png, a dangling link (unreadable), IDX files
 * with a wrong magic, mismatched counts, truncation and corrupt gzip, an HDF5 file with
 * mismatched labels. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/data_fixtures.h"
#include "data/dataset.h"
#include "data/image_check.h"
#include "data/loader.h"

static char root[64];
static char trunc_jpg[256], text_png[256], ghost_png[256];

/* a: g0.png g1.png trunc.jpg | b: g2.png g3.png ghost.png text.png (dataset order) */
static void make_folder(void) {
    strcpy(root, "/tmp/tpsc_bad_XXXXXX");
    cr_assert(fx_mkdtemp(root));
    cr_assert_eq(fx_mkdir(root, "a"), 0);
    cr_assert_eq(fx_mkdir(root, "b"), 0);
    const char *good[4] = {"a/g0.png", "a/g1.png", "b/g2.png", "b/g3.png"};
    char path[256];
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", root, good[i]);
        cr_assert_eq(fx_write_image(path, "png", i, 9, 7), 0);
    }
    snprintf(trunc_jpg, sizeof trunc_jpg, "%s/a/trunc.jpg", root);
    cr_assert_eq(fx_write_image(trunc_jpg, "jpg", 0, 64, 48), 0);
    cr_assert_eq(fx_truncate(trunc_jpg, fx_file_size(trunc_jpg) / 2), 0);
    snprintf(text_png, sizeof text_png, "%s/b/text.png", root);
    cr_assert_eq(fx_write_bytes(text_png, "this is text, not a PNG\n", 24), 0);
    snprintf(ghost_png, sizeof ghost_png, "%s/b/ghost.png", root);
    cr_assert_eq(symlink("/nonexistent/tpsc/ghost", ghost_png), 0);
}

static void remove_folder(void) { fx_rm_rf(root); }

TestSuite(data_errors, .init = make_folder, .fini = remove_folder);

static void assert_names(const char *path) {
    cr_assert(strstr(tpsc_last_error(), path) != NULL, "message \"%s\" should name %s", tpsc_last_error(), path);
}

Test(data_errors, each_bad_image_is_named) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_imagefolder(&ds, root, 3), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ds->count, 7);
    tpsc_decode_scratch s = {0};
    tpsc_image_view v;
    struct { size_t index; const char *path; tpsc_status st; const char *why; } bad[3] = {
        {2, trunc_jpg, TPSC_ERR_FORMAT, "truncated"},
        {5, ghost_png, TPSC_ERR_IO, "cannot open"},
        {6, text_png, TPSC_ERR_FORMAT, "not a JPEG"},
    };
    for (int k = 0; k < 3; k++) {
        cr_assert_eq(tpsc_dataset_get(ds, bad[k].index, &s, &v), bad[k].st, "%s", tpsc_last_error());
        assert_names(bad[k].path);
        cr_assert(strstr(tpsc_last_error(), bad[k].why), "%s", tpsc_last_error());
    }
    cr_assert_eq(tpsc_dataset_get(ds, 0, &s, &v), TPSC_OK, "a good file after bad ones still decodes");
    tpsc_decode_scratch_free(&s);
    tpsc_dataset_close(ds);
}

/* on_bad_image = error: the batches before the bad file arrive, then next() fails naming it
 * (the earliest bad batch, whatever the worker count: 0, 1, 2). */
Test(data_errors, error_policy_stops_at_the_bad_batch) {
    tpsc_data_config cfg = fx_data_config(TPSC_DATA_IMAGEFOLDER, TPSC_SPLIT_VAL, root, 8, 1);
    for (int workers = 0; workers <= 2; workers++) {
        cfg.workers = workers;
        tpsc_loader *l;
        cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_VAL), TPSC_OK, "%s", tpsc_last_error());
        tpsc_batch b;
        for (int i = 0; i < 2; i++) {
            cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "batch %d: %s", i, tpsc_last_error());
            cr_assert_eq(b.indices[0], i);
        }
        cr_assert_eq(tpsc_loader_next(l, &b), TPSC_ERR_FORMAT, "workers = %d", workers);
        assert_names(trunc_jpg);
        tpsc_loader_close(l);
    }
}

/* on_bad_image = skip: 3 of 7 files are bad; every sample's label is its file's label.
 * With 0 (no threads) and 2 workers. */
Test(data_errors, skip_policy_counts_and_names) {
    tpsc_data_config cfg = fx_data_config(TPSC_DATA_IMAGEFOLDER, TPSC_SPLIT_TRAIN, root, 8, 2);
    cfg.drop_last = false;
    cfg.on_bad_image = TPSC_BAD_IMAGE_SKIP;
    for (int workers = 0; workers <= 2; workers += 2) {
        cfg.workers = workers;
        tpsc_loader *l;
        cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
        const int32_t label_of[7] = {0, 0, 0, 1, 1, 1, 1};
        const bool is_bad[7] = {false, false, true, false, false, true, true};
        tpsc_batch b;
        for (int epoch = 0; epoch < 2; epoch++) {
            size_t seen = 0;
            for (;;) {
                cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
                if (b.count == 0) break;
                for (size_t k = 0; k < b.count; k++) {
                    cr_assert(!is_bad[b.indices[k]], "a bad file reached a batch");
                    cr_assert_eq(b.labels[k], label_of[b.indices[k]], "label of the file actually used");
                }
                seen += b.count;
            }
            cr_assert_eq(seen, 7, "the batch keeps its size: replacements fill the holes");
            tpsc_skip_report rep;
            tpsc_loader_skip_report(l, &rep);
            cr_assert_eq(rep.last_epoch_skipped, 3, "epoch %d", epoch);
            cr_assert_eq(rep.total_skipped, 3 * (size_t)(epoch + 1));
            cr_assert_eq(rep.n_names, 3);
            const char *want[3] = {trunc_jpg, ghost_png, text_png};
            for (int w = 0; w < 3; w++) {
                bool found = false;
                for (size_t n = 0; n < rep.n_names; n++) found |= strcmp(rep.names[n], want[w]) == 0;
                cr_assert(found, "%s in the skip report", want[w]);
            }
        }
        tpsc_loader_close(l);
    }
}

static char idx_dir[64];

static void make_idx_dir(void) {
    strcpy(idx_dir, "/tmp/tpsc_idx_XXXXXX");
    cr_assert(fx_mkdtemp(idx_dir));
}

static void remove_idx_dir(void) { fx_rm_rf(idx_dir); }

static void idx_path(char *out, const char *name) { snprintf(out, 256, "%s/%s", idx_dir, name); }

TestSuite(data_idx_errors, .init = make_idx_dir, .fini = remove_idx_dir);

/* Opening the idx pair (images, labels) fails with `want`, names `bad`, and says `needle`
 * (NULL: the name is enough). */
static void expect_idx_refused(const char *images, const char *labels, const char *bad, tpsc_status want,
                               const char *needle) {
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_idx(&ds, images, labels), want, "%s: %s", bad, tpsc_last_error());
    assert_names(bad);
    if (needle) cr_assert(strstr(tpsc_last_error(), needle), "message lacks '%s': %s", needle, tpsc_last_error());
}

Test(data_idx_errors, wrong_magic_count_truncation_corruption) {
    uint8_t pixels[3 * 2 * 2] = {0}, labels[3] = {0, 1, 2};
    uint32_t idims[3] = {3, 2, 2}, ldims[1] = {3}, ldims2[1] = {2}, big[3] = {5, 2, 2};
    char img[256], lbl[256], bad[256];
    idx_path(img, "img");
    idx_path(lbl, "lbl");
    cr_assert_eq(fx_write_idx(img, 0x803, 3, idims, pixels, sizeof pixels), 0);
    cr_assert_eq(fx_write_idx(lbl, 0x801, 1, ldims, labels, 3), 0);
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_idx(&ds, img, lbl), TPSC_OK, "%s", tpsc_last_error());
    tpsc_dataset_close(ds);

    idx_path(bad, "magic");
    cr_assert_eq(fx_write_idx(bad, 0x801, 3, idims, pixels, sizeof pixels), 0);
    expect_idx_refused(bad, lbl, bad, TPSC_ERR_FORMAT, "magic");

    idx_path(bad, "count");
    cr_assert_eq(fx_write_idx(bad, 0x801, 1, ldims2, labels, 2), 0);
    expect_idx_refused(img, bad, bad, TPSC_ERR_FORMAT, "2 labels but");

    idx_path(bad, "short");
    cr_assert_eq(fx_write_idx(bad, 0x803, 3, big, pixels, sizeof pixels), 0);
    expect_idx_refused(bad, lbl, bad, TPSC_ERR_FORMAT, "truncated");

    /* A header claiming 60000 images of 60000 x 60000 pixels: refused without allocating its
     * claim (2^40 bytes cap), and a claim of 4 GB in a small file reads what is there and
     * reports the truncation (the buffer grows with the data, never to the claim). */
    const uint32_t absurd[3] = {60000, 60000, 60000}, large[3] = {1, 65536, 65536};
    idx_path(bad, "absurd");
    cr_assert_eq(fx_write_idx(bad, 0x803, 3, absurd, pixels, sizeof pixels), 0);
    expect_idx_refused(bad, lbl, bad, TPSC_ERR_FORMAT, "2^40");
    idx_path(bad, "large");
    cr_assert_eq(fx_write_idx(bad, 0x803, 3, large, pixels, sizeof pixels), 0);
    expect_idx_refused(bad, lbl, bad, TPSC_ERR_FORMAT, "truncated");

    /* A gzip stream cut in half, and one with its deflate data overwritten. */
    char cmd[700];
    idx_path(bad, "half.gz");
    snprintf(cmd, sizeof cmd, "head -c 300 '%s/tiny-images-idx3-ubyte.gz' > '%s'", DATA_FIXTURES, bad);
    cr_assert_eq(system(cmd), 0);
    expect_idx_refused(bad, lbl, bad, TPSC_ERR_FORMAT, NULL);
    idx_path(bad, "corrupt.gz");
    snprintf(cmd, sizeof cmd, "cp '%s/tiny-images-idx3-ubyte.gz' '%s' && printf 'garbagegarbagegarbage' | dd of='%s' bs=1 seek=40 conv=notrunc status=none",
             DATA_FIXTURES, bad, bad);
    cr_assert_eq(system(cmd), 0);
    expect_idx_refused(bad, lbl, bad, TPSC_ERR_FORMAT, NULL);

    idx_path(bad, "absent");
    expect_idx_refused(bad, lbl, bad, TPSC_ERR_IO, NULL);
}

/* An HDF5 dataset file: `images` [4,2,2,1] of zeros, `labels` the first n_labels of labels. */
static void write_h5(const char *path, const int32_t *labels, hsize_t n_labels) {
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(f >= 0, "creating %s", path);
    hsize_t idims[4] = {4, 2, 2, 1};
    uint8_t pixels[16] = {0};
    hid_t s = H5Screate_simple(4, idims, NULL);
    hid_t d = H5Dcreate2(f, "images", H5T_NATIVE_UINT8, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, pixels);
    H5Dclose(d), H5Sclose(s);
    s = H5Screate_simple(1, &n_labels, NULL);
    d = H5Dcreate2(f, "labels", H5T_NATIVE_INT32, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, labels);
    H5Dclose(d), H5Sclose(s), H5Fclose(f);
}

Test(data_idx_errors, h5_label_count_and_range) {
    char path[256];
    const int32_t labels[4] = {0, 1, 2, -1};
    idx_path(path, "bad.h5");
    write_h5(path, labels, 3);
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_h5(&ds, path), TPSC_ERR_FORMAT);
    assert_names(path);
    cr_assert(strstr(tpsc_last_error(), "3 labels but 4 images"), "%s", tpsc_last_error());

    /* Right count, a negative label: refused, never wrapped into a class. */
    idx_path(path, "neg.h5");
    write_h5(path, labels, 4);
    cr_assert_eq(tpsc_dataset_open_h5(&ds, path), TPSC_ERR_FORMAT);
    assert_names(path);
    cr_assert(strstr(tpsc_last_error(), "label -1 of sample 3"), "%s", tpsc_last_error());
}

Test(data_idx_errors, config_values_are_checked) {
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    cfg.format = TPSC_DATA_H5;
    strcpy(cfg.train_path, DATA_FIXTURES "/tiny_u8.h5");
    cfg.channels = 2;
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_ERR_CONFIG);
    cfg.channels = 3;
    strcpy(cfg.aug.auto_augment, "rand-m9-q3");
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "rand-m9-q3"), "%s", tpsc_last_error());
    strcpy(cfg.aug.auto_augment, "rand-m9-mstd0.5-inc1");
    cfg.batch_size = 64; /* 20 samples: no full batch with drop_last */
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_ERR_CONFIG);
    assert_names(DATA_FIXTURES "/tiny_u8.h5");
}

/* A valid PNG header claiming 16000 x 16000 pixels (768 MB of RGB, under stb_image's own 1 GB
 * limit) in a 67-byte file, and a zero-height PGM: clear errors naming the file, before
 * stb_image allocates anything (data/image_check.h). */
Test(data_errors, image_header_out_of_proportion_is_refused) {
    static const unsigned char png[] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0x3e, 0x80, 0, 0, 0x3e,
        0x80, 8, 2, 0, 0, 0, 0x6a, 0x4e, 0x1a, 0x0d, 0, 0, 0, 10, 'I', 'D', 'A', 'T', 0x78, 0x9c, 0x63, 0, 0, 0,
        0, 1, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    static const char pgm[] = "P5\n3 0\n255\n";
    char dir[64] = "/tmp/tpsc_huge_XXXXXX", path[2][256];
    cr_assert(fx_mkdtemp(dir));
    cr_assert_eq(fx_mkdir(dir, "a"), 0);
    snprintf(path[0], sizeof path[0], "%s/a/huge.png", dir);
    snprintf(path[1], sizeof path[1], "%s/a/zero.pgm", dir);
    cr_assert_eq(fx_write_bytes(path[0], png, sizeof png), 0);
    cr_assert_eq(fx_write_bytes(path[1], pgm, sizeof pgm - 1), 0);
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_imagefolder(&ds, dir, 3), TPSC_OK, "%s", tpsc_last_error());
    tpsc_decode_scratch s = {0};
    tpsc_image_view v;
    const char *why[2] = {"16000x16000", "3x0"};
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(tpsc_dataset_get(ds, (size_t)i, &s, &v), TPSC_ERR_FORMAT, "%s", tpsc_last_error());
        assert_names(path[i]);
        cr_assert(strstr(tpsc_last_error(), why[i]), "%s", tpsc_last_error());
    }
    tpsc_decode_scratch_free(&s);
    tpsc_dataset_close(ds);
    fx_rm_rf(dir);
}

/* 16-bit PGMs (maxval 256) decoded to 3 channels: stb_image 2.27 overflows its buffer on these
 * (data/image_check.h), so the loader refuses them naming the file and the reason; the same
 * file decoded to its own single channel is a valid image and loads. */
Test(data_errors, sixteen_bit_pnm_with_other_channels_is_refused) {
    static const unsigned char pgm[] = {'P', '5', '\n', '3', ' ', '1', '\n', '2', '5', '6', '\n', 0, 10, 20, 30, 40, 50};
    char dir[64] = "/tmp/tpsc_pnm16_XXXXXX", path[256];
    cr_assert(fx_mkdtemp(dir));
    cr_assert_eq(fx_mkdir(dir, "a"), 0);
    snprintf(path, sizeof path, "%s/a/deep.pgm", dir);
    cr_assert_eq(fx_write_bytes(path, pgm, sizeof pgm), 0);
    tpsc_decode_scratch s = {0};
    tpsc_image_view v;
    tpsc_dataset *ds;
    cr_assert_eq(tpsc_dataset_open_imagefolder(&ds, dir, 3), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_dataset_get(ds, 0, &s, &v), TPSC_ERR_FORMAT, "%s", tpsc_last_error());
    assert_names(path);
    cr_expect(strstr(tpsc_last_error(), "16-bit PNM (maxval 256) with 1 channel(s) cannot become 3"), "%s",
              tpsc_last_error());
    tpsc_dataset_close(ds);
    cr_assert_eq(tpsc_dataset_open_imagefolder(&ds, dir, 1), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_dataset_get(ds, 0, &s, &v), TPSC_OK, "%s", tpsc_last_error());
    cr_expect(v.width == 3 && v.height == 1 && v.channels == 1, "%dx%dx%d", v.width, v.height, v.channels);
    tpsc_dataset_close(ds);
    tpsc_decode_scratch_free(&s);
    fx_rm_rf(dir);
}

/* stb_image takes ff ff d8 (a fill byte before the start-of-image marker) for a JPEG, so the
 * Huffman-table check must read such a file too: a table of more than 256 codes behind it
 * overran stb 2.27's size table (found by fuzzing; regress-jpeg-fill-before-soi in both image corpora). */
Test(data_errors, jpeg_tables_are_checked_after_fill_bytes_before_the_start) {
    /* SOI, then a DHT segment of 19 bytes whose 16 counts add up to 16 x 17 = 272 codes */
    unsigned char jpeg[64] = {0xff, 0xff, 0xd8, 0xff, 0xc4, 0x00, 19, 0x00};
    for (int i = 0; i < 16; i++) jpeg[8 + i] = 17;
    char msg[160];
    cr_assert(tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg), "the table behind ff ff d8 passed");
    cr_expect(strstr(msg, "declares 272 codes") || strstr(msg, "runs past"), "%s", msg);
    cr_assert(tpsc_image_check_jpeg_tables(jpeg + 1, sizeof jpeg - 1, msg, sizeof msg), "the table behind ff d8 passed");
    const unsigned char not_jpeg[8] = {0x00, 0xff, 0xd8, 0xff, 0xc4, 0x00, 19, 0x00};
    cr_assert_null(tpsc_image_check_jpeg_tables(not_jpeg, sizeof not_jpeg, msg, sizeof msg));
}

/* A scan that decodes with a Huffman table no DHT segment defined: stb_image 2.27 decodes with
 * the table's uninitialised memory and reads far outside its symbol table (found by fuzzing;
 * regress-jpeg-scan-undefined-huffman-table in both image corpora). The check knows which tables
 * a scan really decodes with: a progressive first DC scan no AC table, a DC refinement none. */
Test(data_errors, jpeg_scan_with_an_undefined_huffman_table_is_refused) {
    /* SOI; DHT: DC table 0 and AC table 0, one code of length 1 each; SOF (1x1, one
     * component); SOS of component 1 with DC table 0 and AC table 2; a byte of data; EOI */
    unsigned char jpeg[] = {0xff, 0xd8,                                                  /* SOI */
                            0xff, 0xc4, 0x00, 38,                                        /* DHT */
                            0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* DC 0 */
                            0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,     /* AC 0 */
                            0xff, 0xc0, 0x00, 11, 8, 0, 1, 0, 1, 1, 1, 0x11, 0,          /* SOF0 */
                            0xff, 0xda, 0x00, 8, 1, 1, 0x02, 0, 63, 0x00,                /* SOS */
                            0x00, 0xff, 0xd9};
    const size_t sof = 43, sos = 55; /* the SOF marker's second byte, the SOS marker's first */
    const size_t sos_tables = sos + 6, sos_ss = sos + 7, sos_ahal = sos + 9;
    cr_assert(jpeg[sof] == 0xc0 && jpeg[sos + 1] == 0xda && jpeg[sos_tables] == 0x02, "the offsets above");
    char msg[200];
    const char *why = tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg);
    cr_assert(why, "a scan decoding with AC table 2, never defined, passed");
    cr_expect(strstr(msg, "JPEG scan at byte 55 decodes with AC Huffman table 2"), "%s", msg);
    jpeg[sos_tables] = 0x00; /* AC table 0: defined */
    cr_expect_null(tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg), "%s", msg);
    jpeg[sos_tables] = 0x30; /* DC table 3: never defined */
    cr_assert(tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg));
    cr_expect(strstr(msg, "decodes with DC Huffman table 3"), "%s", msg);

    jpeg[sof] = 0xc2; /* progressive */
    jpeg[sos_tables] = 0x02;
    cr_expect_null(tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg),
                   "a first DC scan decodes with no AC table: %s", msg);
    jpeg[sos_tables] = 0x30, jpeg[sos_ahal] = 0x10;
    cr_expect_null(tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg),
                   "a DC refinement decodes with no table: %s", msg);
    jpeg[sos_ahal] = 0x00;
    cr_expect(tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg), "a first DC scan needs its DC table");
    jpeg[sos_tables] = 0x02, jpeg[sos_ss] = 1;
    cr_expect(tpsc_image_check_jpeg_tables(jpeg, sizeof jpeg, msg, sizeof msg), "an AC scan needs its AC table");
    cr_expect(strstr(msg, "AC Huffman table 2"), "%s", msg);
}

/* stb_image reads a binary PNM's width, height and maxval into ints with no overflow check
 * (undefined behaviour), all three before it judges any: a number of 10 digits or more in any
 * of them is refused, even after a zero height (found by fuzzing: regress-pnm-maxval-overflows-
 * int-after-zero-height in both image corpora); 9 digits are not this error. */
Test(data_errors, pnm_header_numbers_past_an_int_are_refused) {
    static const struct {
        const char *file;
        int refused;
    } cases[] = {
        {"P5 1234567890 1 255\n", 1},    {"P5 1 1234567890 255\n", 1}, {"P6 1 1 1234567890\n", 1},
        {"P61 0\n0300000000009", 1},     {"P5 1 0 2147483648\n", 1},   {"P5 2 1 255\n\x01\x02", 0},
        {"P5 999999999 1 255\n", 0},     {"P5 1 1 #c\n 255\n\x07", 0},
    };
    char msg[200];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const uint8_t *b = (const uint8_t *)cases[i].file;
        const char *why = tpsc_image_check_pnm_length(b, strlen(cases[i].file), msg, sizeof msg);
        const int said = why && strstr(why, "10 digits or more");
        cr_expect_eq(said, cases[i].refused, "case %zu: %s", i, why ? why : "passed");
    }
}
