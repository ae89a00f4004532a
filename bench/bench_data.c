/* bench_data: decode + augment throughput of the loader, in images/s.
 *
 *   bench_data [seconds_per_case]   (default 3)
 *
 * Cases: 224x224 train transform (DeiT defaults) from JPEGs of ImageNet's typical size
 * (500x375, written to a temp folder first), with 1 and 2 worker threads; Fashion-MNIST idx
 * 28 -> 32 (train transform, DeiT defaults, and eval) with 1 and 2 threads, if the Debian
 * package is installed. Batches are taken as fast as the loader makes them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

#include "data/loader.h"

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

/* Smooth colour fields plus noise, so the JPEGs have natural-ish entropy. */
static int write_jpegs(const char *root, int n) {
    const int w = 500, h = 375;
    unsigned char *px = malloc((size_t)w * h * 3);
    if (!px) return -1;
    char path[512];
    for (int c = 0; c < 2; c++) {
        snprintf(path, sizeof path, "%s/class%d", root, c);
        mkdir(path, 0755);
    }
    unsigned s = 12345;
    for (int i = 0; i < n; i++) {
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++)
                for (int c = 0; c < 3; c++) {
                    s = s * 1103515245u + 12345u;
                    double v = 128 + 60 * sin(0.03 * x * (c + 1) + i) + 40 * cos(0.05 * y + c) + (int)(s >> 27) - 16;
                    px[((size_t)y * w + x) * 3 + c] = (unsigned char)(v < 0 ? 0 : v > 255 ? 255 : v);
                }
        snprintf(path, sizeof path, "%s/class%d/img%03d.jpg", root, i % 2, i);
        if (!stbi_write_jpg(path, w, h, 3, px, 90)) {
            free(px);
            return -1;
        }
    }
    free(px);
    return 0;
}

static int run_case(const char *label, const tpsc_data_config *cfg, tpsc_split split, double seconds) {
    tpsc_loader *l;
    if (tpsc_loader_open(&l, cfg, split) != TPSC_OK) {
        fprintf(stderr, "bench_data: %s: %s\n", label, tpsc_last_error());
        return 1;
    }
    tpsc_batch b;
    /* Warm-up: the first batches include thread start and scratch growth. */
    for (int i = 0; i < 2; i++)
        if (tpsc_loader_next(l, &b) != TPSC_OK) goto fail;
    size_t images = 0;
    double t0 = now(), t = t0;
    while (t - t0 < seconds) {
        if (tpsc_loader_next(l, &b) != TPSC_OK) goto fail;
        images += b.count;
        tpsc_loader_release(l, &b);
        t = now();
    }
    printf("%-48s workers=%d  %10.1f images/s\n", label, cfg->workers, images / (t - t0));
    fflush(stdout);
    tpsc_loader_close(l);
    return 0;
fail:
    fprintf(stderr, "bench_data: %s: %s\n", label, tpsc_last_error());
    tpsc_loader_close(l);
    return 1;
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 3.0;
    int rc = 0;
    char root[] = "/tmp/tpsc_bench_jpeg_XXXXXX";
    if (!mkdtemp(root) || write_jpegs(root, 32) != 0) {
        fprintf(stderr, "bench_data: cannot write JPEGs under /tmp\n");
        return 1;
    }
    tpsc_data_config cfg;
    tpsc_data_config_default(&cfg);
    cfg.format = TPSC_DATA_IMAGEFOLDER;
    snprintf(cfg.train_path, sizeof cfg.train_path, "%s", root);
    snprintf(cfg.val_path, sizeof cfg.val_path, "%s", root);
    cfg.batch_size = 16;
    for (int w = 1; w <= 2; w++) {
        cfg.workers = w;
        rc |= run_case("jpeg 500x375 -> 224 train (DeiT aug)", &cfg, TPSC_SPLIT_TRAIN, seconds);
    }
    for (int w = 1; w <= 2; w++) {
        cfg.workers = w;
        rc |= run_case("jpeg 500x375 -> 224 eval", &cfg, TPSC_SPLIT_VAL, seconds);
    }
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", root);
    if (system(cmd) != 0) fprintf(stderr, "bench_data: could not remove %s\n", root);

    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) == 0) {
        tpsc_data_config_default(&cfg);
        cfg.format = TPSC_DATA_FASHION_MNIST;
        cfg.image_size = 32;
        cfg.batch_size = 256;
        for (int w = 1; w <= 2; w++) {
            cfg.workers = w;
            rc |= run_case("fashion-mnist idx 28 -> 32x3 train (DeiT aug)", &cfg, TPSC_SPLIT_TRAIN, seconds);
        }
        cfg.aug.auto_augment[0] = '\0';
        cfg.aug.reprob = 0.0f;
        for (int w = 1; w <= 2; w++) {
            cfg.workers = w;
            rc |= run_case("fashion-mnist idx 28 -> 32x3 train (crop+flip+mix)", &cfg, TPSC_SPLIT_TRAIN, seconds);
        }
        for (int w = 1; w <= 2; w++) {
            cfg.workers = w;
            rc |= run_case("fashion-mnist idx 28 -> 32x3 eval", &cfg, TPSC_SPLIT_VAL, seconds);
        }
    } else {
        printf("fashion-mnist: not installed, skipped\n");
    }
    return rc;
}
