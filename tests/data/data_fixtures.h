/* Helpers for the data tests: temp folders of images written at test time with
 * stb_image_write (so no image files are committed), broken files, raw IDX files.
 * Header-only, included by one test file per executable. */
#ifndef TPSC_TESTS_DATA_FIXTURES_H
#define TPSC_TESTS_DATA_FIXTURES_H

#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define STB_IMAGE_WRITE_STATIC
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include "data/stb_quiet_begin.h"
#include <stb/stb_image_write.h>
#include "data/stb_quiet_end.h"

#include "data/loader.h"

#define DATA_FIXTURES TPSC_FIXTURE_DIR "/data"

/* Where the loader tests start: the defaults, reading `path` as `format` for `split`, images
 * image_size square, batch_size per batch. */
static inline tpsc_data_config fx_data_config(tpsc_data_format format, tpsc_split split, const char *path,
                                              int image_size, int batch_size) {
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    cfg.format = format;
    snprintf(split == TPSC_SPLIT_TRAIN ? cfg.train_path : cfg.val_path, TPSC_DATA_PATH_MAX, "%s", path);
    cfg.image_size = image_size;
    cfg.batch_size = batch_size;
    return cfg;
}

/* Mean 0 and std 1 in every channel: the transform's output is then pixel / 255. */
static inline void fx_unit_normalize(tpsc_augment_config *aug) {
    for (int c = 0; c < 3; c++) aug->mean[c] = 0.0f, aug->std[c] = 1.0f;
}

/* The eval transform as an identity at the native size: crop_pct 1 (no resize margin) and unit
 * normalisation, so a batch holds pixel / 255. */
static inline void fx_identity_eval(tpsc_data_config *cfg) {
    cfg->aug.crop_pct = 1.0f;
    fx_unit_normalize(&cfg->aug);
}

/* The closed formula of the lossless (PNG/BMP) test images. */
static inline uint8_t fx_pixel(int i, int y, int x, int c) { return (uint8_t)((29 * i + 7 * y + 3 * x + 80 * c) % 256); }
/* The smooth image of the committed JPEGs (lossy): small errors only. */
static inline uint8_t fx_smooth(int i, int y, int x, int c) { return (uint8_t)(60 + 10 * i + 2 * x + y + 20 * c); }

static inline int fx_copy(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    int rc = in && out ? 0 : -1;
    char buf[4096];
    size_t n;
    while (rc == 0 && (n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) rc = -1;
    if (in) fclose(in);
    if (out && fclose(out) != 0) rc = -1;
    return rc;
}

/* Writes image i (w x h, 3 channels) as `kind` ("png", "bmp", "jpg"). JPEGs are copies of the
 * committed smooth<i>.jpg (i = 0: 64x48; 3, 5: 12x10; 7: 12x10, progressive, smooth7p.jpg),
 * made by PIL in make_data_fixtures.py, because stb_image_write's JPEG encoder trips UBSan.
 * Returns 0 on success. */
static inline int fx_write_image(const char *path, const char *kind, int i, int w, int h) {
    if (strcmp(kind, "jpg") == 0) {
        char from[512];
        bool known = (i == 0 && w == 64 && h == 48) || ((i == 3 || i == 5 || i == 7) && w == 12 && h == 10);
        if (!known) return -1;
        snprintf(from, sizeof from, "%s/smooth%d%s.jpg", DATA_FIXTURES, i, i == 7 ? "p" : "");
        return fx_copy(from, path);
    }
    uint8_t *px = malloc((size_t)w * h * 3);
    if (!px) return -1;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) px[((size_t)y * w + x) * 3 + c] = fx_pixel(i, y, x, c);
    int ok = strcmp(kind, "bmp") == 0 ? stbi_write_bmp(path, w, h, 3, px) : stbi_write_png(path, w, h, 3, px, w * 3);
    free(px);
    return ok ? 0 : -1;
}

static inline int fx_write_bytes(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t wrote = fwrite(data, 1, n, f);
    return fclose(f) == 0 && wrote == n ? 0 : -1;
}

/* Cuts a file to `keep` bytes. */
static inline int fx_truncate(const char *path, long keep) { return truncate(path, keep); }

static inline long fx_file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

static inline char *fx_mkdtemp(char *templ) { return mkdtemp(templ); }

static inline int fx_mkdir(const char *root, const char *sub) {
    char p[4096];
    if (snprintf(p, sizeof p, "%s/%s", root, sub) >= (int)sizeof p) return -1;
    return mkdir(p, 0755);
}

/* rm -rf of a test's temp folder (no symlink following: lstat). */
static inline void fx_rm_rf(const char *root) {
    struct stat st;
    if (lstat(root, &st) != 0) return;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(root);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
            char p[4096];
            if (snprintf(p, sizeof p, "%s/%s", root, e->d_name) < (int)sizeof p) fx_rm_rf(p);
        }
        if (d) closedir(d);
        rmdir(root);
    } else {
        unlink(root);
    }
}

/* A raw IDX file: magic, dims, then bytes. */
static inline int fx_write_idx(const char *path, uint32_t magic, int ndims, const uint32_t *dims, const uint8_t *data,
                               size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    uint8_t be[4];
    uint32_t words[4] = {magic, 0, 0, 0};
    for (int d = 0; d < ndims; d++) words[d + 1] = dims[d];
    for (int k = 0; k <= ndims; k++) {
        be[0] = (uint8_t)(words[k] >> 24), be[1] = (uint8_t)(words[k] >> 16), be[2] = (uint8_t)(words[k] >> 8);
        be[3] = (uint8_t)words[k];
        fwrite(be, 1, 4, f);
    }
    size_t wrote = n ? fwrite(data, 1, n, f) : 0;
    return fclose(f) == 0 && wrote == n ? 0 : -1;
}

#endif
