/* The loader's ordering contract: same seed -> same batches byte for byte with 1 or 2
 * workers; a resumed run (seek, or reopen + seek) continues with exactly the batches of an
 * uninterrupted run; sharding partitions an epoch; drop_last and end-of-epoch counts.
 * Data: the committed tiny_u8.h5 (N = 20, 6x5x3, 3 classes), full DeiT train augmentation
 * (RandAugment, colour, erasing, Mixup/CutMix) so every random draw is exercised. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_fixtures.h"
#include "data/loader.h"

typedef struct recorded {
    size_t n_batches;
    size_t count[64];
    float *images[64];
    float *targets[64];
    int32_t labels[64][16];
    int64_t indices[64][16];
    float lam[64];
} recorded;

static void base_config(tpsc_data_config *cfg) {
    tpsc_data_config_default(cfg);
    cfg->format = TPSC_DATA_H5;
    strcpy(cfg->train_path, DATA_FIXTURES "/tiny_u8.h5");
    strcpy(cfg->val_path, DATA_FIXTURES "/tiny_u8.h5");
    cfg->image_size = 8;
    cfg->batch_size = 6;
    cfg->seed = 1234;
    cfg->prefetch = 2;
}

/* Takes `n` batches (end-of-epoch markers not counted) and keeps copies. */
static void take(tpsc_loader *l, size_t n, recorded *r) {
    tpsc_batch b;
    while (r->n_batches < n) {
        cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
        if (b.count == 0) continue;
        size_t i = r->n_batches++;
        size_t img = b.count * b.channels * b.height * b.width * sizeof(float);
        size_t tgt = b.count * b.num_classes * sizeof(float);
        r->count[i] = b.count;
        r->images[i] = malloc(img);
        r->targets[i] = malloc(tgt);
        memcpy(r->images[i], b.images, img);
        memcpy(r->targets[i], b.targets, tgt);
        memcpy(r->labels[i], b.labels, b.count * sizeof(int32_t));
        memcpy(r->indices[i], b.indices, b.count * sizeof(int64_t));
        r->lam[i] = b.lam;
        tpsc_loader_release(l, &b);
    }
}

static void free_recorded(recorded *r) {
    for (size_t i = 0; i < r->n_batches; i++) free(r->images[i]), free(r->targets[i]);
}

static void assert_same(const recorded *a, size_t a_from, const recorded *b, size_t n, size_t image_floats,
                        size_t classes) {
    for (size_t i = 0; i < n; i++) {
        size_t j = a_from + i;
        cr_assert_eq(a->count[j], b->count[i], "batch %zu count", i);
        cr_assert_eq(memcmp(a->indices[j], b->indices[i], a->count[j] * sizeof(int64_t)), 0, "batch %zu indices", i);
        cr_assert_eq(memcmp(a->labels[j], b->labels[i], a->count[j] * sizeof(int32_t)), 0, "batch %zu labels", i);
        cr_assert_eq(memcmp(a->images[j], b->images[i], a->count[j] * image_floats * sizeof(float)), 0,
                     "batch %zu images differ", i);
        cr_assert_eq(memcmp(a->targets[j], b->targets[i], a->count[j] * classes * sizeof(float)), 0,
                     "batch %zu targets differ", i);
    }
}

static void record_run(tpsc_data_config *cfg, size_t n, recorded *r) {
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    memset(r, 0, sizeof *r);
    take(l, n, r);
    tpsc_loader_close(l);
}

Test(data_loader, same_seed_same_batches_across_workers) { /* 1, 2 and 0 (no threads) workers */
    tpsc_data_config cfg;
    base_config(&cfg);
    /* 20 samples, B 6, drop_last: 3 batches per epoch; 9 batches = 3 epochs. */
    static recorded one, two, other_seed;
    cfg.workers = 1;
    record_run(&cfg, 9, &one);
    cfg.workers = 2;
    cfg.prefetch = 4;
    record_run(&cfg, 9, &two);
    assert_same(&one, 0, &two, 9, 3 * 8 * 8, 3);
    static recorded none;
    cfg.workers = 0; /* in the caller's thread */
    record_run(&cfg, 9, &none);
    assert_same(&one, 0, &none, 9, 3 * 8 * 8, 3);
    free_recorded(&none);
    bool mixed = false;
    for (size_t i = 0; i < 9; i++) mixed |= one.lam[i] != 1.0f;
    cr_assert(mixed, "Mixup/CutMix (prob 1) must have mixed some batch");
    cfg.seed = 1235;
    record_run(&cfg, 3, &other_seed);
    cr_assert_neq(memcmp(one.images[0], other_seed.images[0], 6 * 3 * 64 * sizeof(float)), 0,
                  "another seed gives other batches");
    free_recorded(&one);
    free_recorded(&two);
    free_recorded(&other_seed);
}

Test(data_loader, resume_mid_epoch_equals_uninterrupted) {
    tpsc_data_config cfg;
    base_config(&cfg);
    cfg.workers = 2;
    static recorded full, resumed, reopened;
    record_run(&cfg, 9, &full);

    /* Seek on an open loader that has prefetched from the start. */
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    memset(&resumed, 0, sizeof resumed);
    take(l, 1, &resumed);
    free_recorded(&resumed);
    memset(&resumed, 0, sizeof resumed);
    cr_assert_eq(tpsc_loader_seek(l, (tpsc_data_position){1, 1}), TPSC_OK);
    take(l, 5, &resumed); /* epoch 1 batches 1, 2, epoch 2 batches 0, 1, 2 */
    assert_same(&full, 4, &resumed, 5, 3 * 8 * 8, 3);
    tpsc_loader_close(l);

    /* Stop after 5 batches, save the position, reopen, seek: the next batches continue. */
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    static recorded first;
    memset(&first, 0, sizeof first);
    take(l, 5, &first);
    tpsc_data_position pos = tpsc_loader_position(l);
    cr_assert_eq(pos.epoch, 1);
    cr_assert_eq(pos.batch, 2);
    tpsc_loader_close(l);
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_loader_seek(l, pos), TPSC_OK);
    memset(&reopened, 0, sizeof reopened);
    take(l, 4, &reopened);
    assert_same(&full, 5, &reopened, 4, 3 * 8 * 8, 3);
    tpsc_loader_close(l);
    free_recorded(&full);
    free_recorded(&first);
    free_recorded(&resumed);
    free_recorded(&reopened);
}

/* One epoch's dataset indices of a loader, counted per index. */
static void epoch_indices(tpsc_data_config *cfg, tpsc_split split, int64_t epoch, size_t counts[20], size_t *batches,
                          size_t *samples) {
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, cfg, split), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_loader_seek(l, (tpsc_data_position){epoch, 0}), TPSC_OK);
    tpsc_batch b;
    *batches = *samples = 0;
    for (;;) {
        cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
        if (b.count == 0) break;
        cr_assert_eq(b.epoch, epoch);
        cr_assert_eq(b.batch_index, (int64_t)*batches);
        for (size_t k = 0; k < b.count; k++) counts[b.indices[k]]++;
        (*batches)++;
        *samples += b.count;
    }
    tpsc_loader_close(l);
}

Test(data_loader, sharding_partitions_the_epoch) {
    tpsc_data_config cfg;
    base_config(&cfg);
    cfg.drop_last = false;
    cfg.world_size = 2;
    size_t counts[20] = {0}, batches, samples;
    for (int rank = 0; rank < 2; rank++) {
        cfg.rank = rank;
        epoch_indices(&cfg, TPSC_SPLIT_TRAIN, 3, counts, &batches, &samples);
        cr_assert_eq(samples, 10, "each rank sees N / world = 10");
        cr_assert_eq(batches, 2, "ceil(10 / 6)");
    }
    for (int i = 0; i < 20; i++) cr_assert_eq(counts[i], 1, "sample %d seen once across ranks", i);

    /* Odd split: 20 samples on 3 ranks pad to 21 (DistributedSampler), each sample at least once. */
    memset(counts, 0, sizeof counts);
    cfg.world_size = 3;
    size_t total = 0;
    for (int rank = 0; rank < 3; rank++) {
        cfg.rank = rank;
        epoch_indices(&cfg, TPSC_SPLIT_TRAIN, 0, counts, &batches, &samples);
        cr_assert_eq(samples, 7);
        total += samples;
    }
    cr_assert_eq(total, 21);
    for (int i = 0; i < 20; i++) cr_assert_geq(counts[i], 1, "sample %d", i);
}

Test(data_loader, drop_last_and_epoch_counts) {
    tpsc_data_config cfg;
    base_config(&cfg);
    size_t counts[20] = {0}, batches, samples;
    epoch_indices(&cfg, TPSC_SPLIT_TRAIN, 0, counts, &batches, &samples);
    cr_assert_eq(batches, 3, "20 / 6 = 3 full batches with drop_last");
    cr_assert_eq(samples, 18);
    for (int i = 0; i < 20; i++) cr_assert_leq(counts[i], 1, "no repeats within an epoch");

    memset(counts, 0, sizeof counts);
    cfg.drop_last = false;
    epoch_indices(&cfg, TPSC_SPLIT_TRAIN, 0, counts, &batches, &samples);
    cr_assert_eq(batches, 4);
    cr_assert_eq(samples, 20);
    for (int i = 0; i < 20; i++) cr_assert_eq(counts[i], 1, "the shuffle is a permutation");

    /* Eval ignores drop_last and shuffle. */
    memset(counts, 0, sizeof counts);
    cfg.drop_last = true;
    cfg.eval_batch_size = 8;
    epoch_indices(&cfg, TPSC_SPLIT_VAL, 0, counts, &batches, &samples);
    cr_assert_eq(batches, 3);
    cr_assert_eq(samples, 20);
}

Test(data_loader, epochs_reshuffle_and_names) {
    tpsc_data_config cfg;
    base_config(&cfg);
    cfg.drop_last = false;
    tpsc_loader *l;
    cr_assert_eq(tpsc_loader_open(&l, &cfg, TPSC_SPLIT_TRAIN), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_loader_num_classes(l), 3);
    cr_assert_str_eq(tpsc_loader_class_name(l, 2), "gamma");
    int64_t order[2][20];
    tpsc_batch b;
    for (int e = 0; e < 2; e++) {
        size_t n = 0;
        for (;;) {
            cr_assert_eq(tpsc_loader_next(l, &b), TPSC_OK, "%s", tpsc_last_error());
            if (b.count == 0) break;
            for (size_t k = 0; k < b.count; k++) order[e][n++] = b.indices[k];
            /* Soft targets are distributions: each row sums to 1 (float rounding, 1e-5). */
            for (size_t k = 0; k < b.count; k++) {
                float sum = 0;
                for (size_t c = 0; c < 3; c++) sum += b.targets[k * 3 + c];
                cr_assert_float_eq(sum, 1.0f, 1e-5f);
            }
        }
        cr_assert_eq(n, 20);
        cr_assert_eq(tpsc_loader_position(l).epoch, e + 1);
    }
    cr_assert_neq(memcmp(order[0], order[1], sizeof order[0]), 0, "epoch 1 is shuffled differently from epoch 0");
    tpsc_loader_close(l);
}

/* Repeated augmentation (DeiT's RASampler, R = 3): the shuffled list holds each sample three
 * times in a row, each copy augmented differently; an epoch keeps N samples (sets under 256
 * samples: N / W), i.e. ceil(20 / 3) = 7 distinct images; still identical across workers. */
Test(data_loader, repeated_augmentation) {
    tpsc_data_config cfg;
    base_config(&cfg);
    cfg.repeated_aug = 3;
    cfg.drop_last = false;
    cfg.batch_size = 6;
    cfg.aug.mixup_alpha = cfg.aug.cutmix_alpha = 0.0f; /* compare the copies before mixing */
    static recorded one, two;
    cfg.workers = 1;
    record_run(&cfg, 4, &one);
    cfg.workers = 2;
    record_run(&cfg, 4, &two);
    assert_same(&one, 0, &two, 4, 3 * 8 * 8, 3);
    int64_t idx[20];
    const float *img[20];
    size_t n = 0;
    for (size_t b = 0; b < 4; b++)
        for (size_t k = 0; k < one.count[b]; k++) idx[n] = one.indices[b][k], img[n++] = one.images[b] + k * 3 * 64;
    cr_assert_eq(n, 20, "an epoch keeps N = 20 samples");
    for (size_t t = 0; t + 1 < 20; t++) {
        if (t % 3 == 2) {
            cr_assert_neq(idx[t], idx[t + 1], "a new sample after each triple");
            continue;
        }
        cr_assert_eq(idx[t], idx[t + 1], "copies are consecutive");
        cr_assert_neq(memcmp(img[t], img[t + 1], 3 * 64 * sizeof(float)), 0, "copies are augmented differently");
    }
    for (size_t a = 0; a < 20; a += 3)
        for (size_t b = a + 3; b < 20; b += 3) cr_assert_neq(idx[a], idx[b], "7 distinct samples");
    free_recorded(&one);
    free_recorded(&two);
}
