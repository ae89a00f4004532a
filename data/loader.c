/* The threaded loader: workers claim whole batches in order and fill them into a ring of
 * slots; the consumer takes them in order. Slot states: FREE -> FILLING (a worker) -> READY
 * -> HELD (the trainer) -> FREE. Batch j lives in slot j % n_slots, so a worker may start
 * batch j only when the trainer has given back batch j - n_slots.
 *
 * What a batch holds depends only on (seed, epoch, batch index, rank), never on which
 * worker filled it or when: the epoch order is fixed before any worker starts on it, and
 * every random draw is keyed (see loader.h). */
#include "data/loader.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "data/dataset.h"
#include "data/transforms.h"
#include "src/util/alloc.h"

typedef enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD } slot_state;

typedef struct slot {
    tpsc_batch batch; /* buffers sized for the full B */
    slot_state state;
    size_t batch_index;
    size_t skipped;   /* bad files replaced while filling; counted when the batch is delivered */
} slot;

typedef struct worker {
    tpsc_loader *loader;
    pthread_t thread;
    bool started;
    tpsc_decode_scratch decode;
    tpsc_transform_scratch transform;
} worker;

struct tpsc_loader {
    tpsc_data_config cfg;
    bool train;
    tpsc_dataset *ds;
    tpsc_transform transform;
    size_t n;           /* samples in the dataset (after limit) */
    size_t repeats;     /* R: repeated augmentation count (1 = off; val always 1) */
    size_t per_rank;    /* samples this rank sees per epoch */
    size_t batch_size;  /* B */
    size_t n_batches;   /* per epoch */
    size_t classes;     /* K */
    uint32_t *perm;     /* [n] the epoch's permutation of all samples */
    uint32_t *order;    /* [per_rank] this rank's share, in batch order, as sample * R + repeat */

    slot *slots;
    size_t n_slots;
    worker *workers;
    int n_workers;

    pthread_mutex_t mu;
    pthread_cond_t work_cv;  /* workers: a slot became free, or the position moved */
    pthread_cond_t ready_cv; /* consumer and seek: a slot became ready, or a fill ended */
    bool mu_ready;
    int64_t epoch;
    size_t next_produce, next_consume;
    int held; /* slot the trainer holds, -1 if none */
    int filling;
    bool pausing, stopping;
    tpsc_status error;
    size_t error_batch; /* the earliest failed batch; batches before it are still delivered */
    char error_msg[1536];

    size_t skip_epoch, skip_last, skip_total, n_skip_names;
    char skip_names[TPSC_SKIP_NAMES_MAX][TPSC_DATA_PATH_MAX];
};

/* The epoch's order: a keyed Fisher-Yates shuffle of all samples (or identity), each
 * repeated R times in a row (DeiT's RASampler), then this rank's share: positions rank,
 * rank + W, ... of that list, wrapping to the start to pad (torch's DistributedSampler).
 * An entry is sample * R + repeat, so the R copies of a sample get their own augmentation. */
static void build_order(tpsc_loader *l, int64_t epoch) {
    for (size_t i = 0; i < l->n; i++) l->perm[i] = (uint32_t)i;
    if (l->train && l->cfg.shuffle) {
        tpsc_rng r = tpsc_rng_keyed(l->cfg.seed, (uint64_t)epoch, 0, TPSC_PURPOSE_SHUFFLE);
        for (size_t i = l->n - 1; i > 0; i--) {
            size_t j = (size_t)tpsc_rng_below(&r, i + 1);
            uint32_t t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    }
    size_t world = (size_t)l->cfg.world_size, rank = (size_t)l->cfg.rank;
    size_t R = l->repeats, list = l->n * R;
    for (size_t k = 0; k < l->per_rank; k++) {
        size_t p = (rank + k * world) % list;
        l->order[k] = (uint32_t)(l->perm[p / R] * R + p % R);
    }
}

/* Remembers a bad file's name. The counts are added when its batch is delivered (see
 * tpsc_loader_next): workers fill batches ahead, into the next epoch, and a count taken at fill
 * time would depend on how far they had got. */
static void record_skip(tpsc_loader *l, size_t index) {
    char name[TPSC_DATA_PATH_MAX];
    l->ds->ops->sample_name(l->ds, index, name, sizeof name);
    pthread_mutex_lock(&l->mu);
    bool known = false;
    for (size_t i = 0; i < l->n_skip_names; i++) known |= strcmp(l->skip_names[i], name) == 0;
    if (!known && l->n_skip_names < TPSC_SKIP_NAMES_MAX)
        snprintf(l->skip_names[l->n_skip_names++], TPSC_DATA_PATH_MAX, "%s", name);
    pthread_mutex_unlock(&l->mu);
}

static bool is_bad_input(tpsc_status st) {
    return st == TPSC_ERR_IO || st == TPSC_ERR_FORMAT || st == TPSC_ERR_MISSING;
}

/* Order entry `entry` (sample * R + repeat) into out_chw; its augmentation draws are keyed
 * by the entry. Under on_bad_image = skip a bad file is replaced by the next good one in
 * dataset order (its own label and index reported) with the same draws, so the batch keeps
 * its size and stays deterministic. */
static tpsc_status load_sample(tpsc_loader *l, worker *w, int64_t epoch, size_t entry, float *out_chw,
                               int32_t *label, int64_t *used_index, size_t *skipped) {
    bool skip = l->cfg.on_bad_image == TPSC_BAD_IMAGE_SKIP;
    size_t index = entry / l->repeats;
    for (size_t tries = 0; tries < l->n; tries++) {
        size_t cand = (index + tries) % l->n;
        tpsc_image_view view;
        tpsc_status st = tpsc_dataset_get(l->ds, cand, &w->decode, &view);
        if (st == TPSC_OK) st = tpsc_transform_apply(&l->transform, &view, (uint64_t)epoch, entry, &w->transform, out_chw);
        if (st == TPSC_OK) {
            *label = l->ds->labels[cand];
            *used_index = (int64_t)cand;
            return TPSC_OK;
        }
        if (!skip || !is_bad_input(st)) return st;
        if (tries == 0) {
            record_skip(l, cand);
            (*skipped)++;
        }
    }
    return tpsc_fail(TPSC_ERR_FORMAT, "%s: every sample is unreadable", l->ds->source);
}

static tpsc_status fill_batch(tpsc_loader *l, worker *w, slot *s, int64_t epoch, size_t j) {
    tpsc_batch *b = &s->batch;
    size_t start = j * l->batch_size;
    size_t count = l->per_rank - start < l->batch_size ? l->per_rank - start : l->batch_size;
    size_t image = b->channels * b->height * b->width;
    s->skipped = 0;
    for (size_t k = 0; k < count; k++)
        TPSC_TRY(load_sample(l, w, epoch, l->order[start + k], b->images + k * image, &b->labels[k], &b->indices[k],
                             &s->skipped));
    b->count = count;
    b->epoch = epoch;
    b->batch_index = (int64_t)j;
    tpsc_soft_targets(b->labels, count, l->classes, l->train ? l->cfg.aug.smoothing : 0.0f, b->targets);
    b->lam = 1.0f;
    b->cutmix = false;
    if (l->train && !l->cfg.aug.no_aug) {
        tpsc_rng r = tpsc_rng_keyed(l->cfg.seed, (uint64_t)epoch, j, TPSC_PURPOSE_MIXUP + (uint64_t)l->cfg.rank);
        tpsc_mixup(&l->cfg.aug, &r, b->images, b->targets, count, b->channels, b->height, b->width, l->classes,
                   &b->lam, &b->cutmix);
    }
    return TPSC_OK;
}

static void *worker_main(void *arg) {
    worker *w = arg;
    tpsc_loader *l = w->loader;
    pthread_mutex_lock(&l->mu);
    while (!l->stopping) {
        slot *s = &l->slots[l->next_produce % l->n_slots];
        if (l->error == TPSC_OK && !l->pausing && l->next_produce < l->n_batches && s->state == SLOT_FREE) {
            size_t j = l->next_produce++;
            int64_t epoch = l->epoch;
            s->state = SLOT_FILLING;
            l->filling++;
            pthread_mutex_unlock(&l->mu);
            tpsc_status st = fill_batch(l, w, s, epoch, j);
            pthread_mutex_lock(&l->mu);
            l->filling--;
            if (st == TPSC_OK) {
                s->state = SLOT_READY;
                s->batch_index = j;
            } else {
                s->state = SLOT_FREE;
                /* Keep the earliest failure, so the error the trainer sees does not depend
                 * on which worker was faster. */
                if (l->error == TPSC_OK || j < l->error_batch) {
                    l->error = st;
                    l->error_batch = j;
                    snprintf(l->error_msg, sizeof l->error_msg, "%s", tpsc_last_error());
                }
            }
            pthread_cond_broadcast(&l->ready_cv);
            continue;
        }
        pthread_cond_wait(&l->work_cv, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static tpsc_status alloc_slots(tpsc_loader *l) {
    size_t c = (size_t)l->cfg.channels, hw = (size_t)l->cfg.image_size * (size_t)l->cfg.image_size;
    l->slots = tpsc_calloc(l->n_slots, sizeof *l->slots, "loader slots");
    if (!l->slots) return TPSC_ERR_NOMEM;
    for (size_t i = 0; i < l->n_slots; i++) {
        tpsc_batch *b = &l->slots[i].batch;
        b->channels = c;
        b->height = b->width = (size_t)l->cfg.image_size;
        b->num_classes = l->classes;
        b->slot_ = (int)i;
        b->images = tpsc_aligned_alloc(l->batch_size * c * hw * sizeof(float), "batch images [B, C, H, W]");
        b->targets = tpsc_aligned_alloc(l->batch_size * l->classes * sizeof(float), "batch targets [B, K]");
        b->labels = tpsc_aligned_alloc(l->batch_size * sizeof(int32_t), "batch labels [B]");
        b->indices = tpsc_aligned_alloc(l->batch_size * sizeof(int64_t), "batch indices [B]");
        if (!b->images || !b->targets || !b->labels || !b->indices) return TPSC_ERR_NOMEM;
    }
    return TPSC_OK;
}

static tpsc_status check_config(const tpsc_data_config *cfg) {
    if (cfg->batch_size < 1) return tpsc_fail(TPSC_ERR_CONFIG, "data: batch_size = %d, expected >= 1", cfg->batch_size);
    if (cfg->eval_batch_size < 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "data: eval_batch_size = %d, expected >= 0", cfg->eval_batch_size);
    if (cfg->world_size < 1 || cfg->rank < 0 || cfg->rank >= cfg->world_size)
        return tpsc_fail(TPSC_ERR_CONFIG, "data: rank = %d, world_size = %d, expected 0 <= rank < world_size",
                         cfg->rank, cfg->world_size);
    if (cfg->workers < 0 || cfg->workers > 64)
        return tpsc_fail(TPSC_ERR_CONFIG, "data: workers = %d, expected 0..64 (0 = in the caller's thread)",
                         cfg->workers);
    if (cfg->repeated_aug < 0 || cfg->repeated_aug > 16)
        return tpsc_fail(TPSC_ERR_CONFIG, "data: repeated_aug = %d, expected 1..16 (0 or 1 = off)", cfg->repeated_aug);
    if (cfg->prefetch < 1 || cfg->prefetch > 64)
        return tpsc_fail(TPSC_ERR_CONFIG, "data: prefetch = %d, expected 1..64", cfg->prefetch);
    if (cfg->aug.smoothing < 0.0f || cfg->aug.smoothing >= 1.0f)
        return tpsc_fail(TPSC_ERR_CONFIG, "augment: smoothing = %g, expected in [0, 1)", cfg->aug.smoothing);
    return TPSC_OK;
}

tpsc_status tpsc_loader_open(tpsc_loader **out, const tpsc_data_config *cfg, tpsc_split split) {
    *out = NULL;
    TPSC_TRY(check_config(cfg));
    tpsc_loader *l = tpsc_calloc(1, sizeof *l, "loader");
    if (!l) return TPSC_ERR_NOMEM;
    l->cfg = *cfg;
    l->train = split == TPSC_SPLIT_TRAIN;
    l->held = -1;
    tpsc_status st = tpsc_dataset_open_config(&l->ds, cfg, split);
    if (st != TPSC_OK) goto fail;
    /* The transform points at our copy of the config, which lives as long as the loader. */
    st = tpsc_transform_init(&l->transform, &l->cfg.aug, l->train, cfg->channels, cfg->image_size, cfg->seed);
    if (st != TPSC_OK) goto fail;
    if (l->ds->count > UINT32_MAX) {
        st = tpsc_fail(TPSC_ERR_ARG, "%s: %zu samples, at most 2^32 supported", l->ds->source, l->ds->count);
        goto fail;
    }
    l->n = l->ds->count;
    l->classes = l->ds->num_classes;
    size_t world = (size_t)cfg->world_size;
    l->repeats = l->train && cfg->repeated_aug > 1 ? (size_t)cfg->repeated_aug : 1;
    if (l->n * l->repeats > UINT32_MAX) {
        st = tpsc_fail(TPSC_ERR_ARG, "%s: %zu samples x %zu repeats, at most 2^32 supported", l->ds->source, l->n,
                       l->repeats);
        goto fail;
    }
    l->per_rank = (l->n + world - 1) / world;
    /* RASampler keeps an epoch at N samples (rounded down to a multiple of 256) over all
     * ranks, so R repeats mean N / R distinct images an epoch. Sets under 256: N / W. */
    size_t epoch_len = l->n;
    if (l->repeats > 1 && l->n >= 256) epoch_len = l->n / 256 * 256, l->per_rank = epoch_len / world;
    /* Evaluation counts every image once: rank r takes positions r, r + W, ... below N, no
     * padding, so ranks may hold one image less (or none, when W > N). */
    if (!l->train) l->per_rank = (size_t)cfg->rank < l->n ? (l->n - (size_t)cfg->rank + world - 1) / world : 0;
    l->batch_size = (size_t)(l->train || cfg->eval_batch_size == 0 ? cfg->batch_size : cfg->eval_batch_size);
    bool drop_last = l->train && cfg->drop_last;
    /* Whole global batches of W x B (the same images whatever W), so that W ranks at B each
     * step through exactly the batches one process at W x B would. */
    l->n_batches = drop_last ? epoch_len / world / l->batch_size : (l->per_rank + l->batch_size - 1) / l->batch_size;
    if (l->n_batches == 0 && (l->train || world == 1)) {
        st = tpsc_fail(TPSC_ERR_CONFIG, "%s: %zu samples per rank make no full batch of %zu (drop_last)",
                       l->ds->source, l->per_rank, l->batch_size);
        goto fail;
    }
    l->perm = tpsc_malloc(l->n * sizeof *l->perm, "epoch permutation");
    l->order = tpsc_malloc((l->per_rank ? l->per_rank : 1) * sizeof *l->order, "epoch order");
    if (!l->perm || !l->order) {
        st = TPSC_ERR_NOMEM;
        goto fail;
    }
    /* One slot more than the prefetch depth: the one the trainer holds. */
    l->n_slots = (size_t)cfg->prefetch + 1;
    st = alloc_slots(l);
    if (st != TPSC_OK) goto fail;
    build_order(l, 0);

    if (pthread_mutex_init(&l->mu, NULL) != 0 || pthread_cond_init(&l->work_cv, NULL) != 0 ||
        pthread_cond_init(&l->ready_cv, NULL) != 0) {
        st = tpsc_fail(TPSC_ERR_INTERNAL, "loader: cannot create mutex/condition variables");
        goto fail;
    }
    l->mu_ready = true;
    l->n_workers = cfg->workers;
    /* workers = 0: no threads; tpsc_loader_next fills each batch itself, with workers[0]'s
     * scratch. */
    l->workers = tpsc_calloc((size_t)(l->n_workers > 0 ? l->n_workers : 1), sizeof *l->workers, "loader workers");
    if (!l->workers) {
        st = TPSC_ERR_NOMEM;
        goto fail;
    }
    for (int i = 0; i < l->n_workers; i++) {
        l->workers[i].loader = l;
        if (pthread_create(&l->workers[i].thread, NULL, worker_main, &l->workers[i]) != 0) {
            st = tpsc_fail(TPSC_ERR_INTERNAL, "loader: cannot start worker thread %d", i);
            goto fail;
        }
        l->workers[i].started = true;
    }
    *out = l;
    return TPSC_OK;
fail:
    tpsc_loader_close(l);
    return st;
}

void tpsc_loader_close(tpsc_loader *l) {
    if (!l) return;
    if (l->mu_ready) {
        pthread_mutex_lock(&l->mu);
        l->stopping = true;
        pthread_cond_broadcast(&l->work_cv);
        pthread_mutex_unlock(&l->mu);
    }
    for (int i = 0; l->workers && i < (l->n_workers > 0 ? l->n_workers : 1); i++) {
        if (l->workers[i].started) pthread_join(l->workers[i].thread, NULL);
        tpsc_decode_scratch_free(&l->workers[i].decode);
        tpsc_transform_scratch_free(&l->workers[i].transform);
    }
    if (l->mu_ready) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->work_cv);
        pthread_cond_destroy(&l->ready_cv);
    }
    for (size_t i = 0; l->slots && i < l->n_slots; i++) {
        tpsc_free(l->slots[i].batch.images);
        tpsc_free(l->slots[i].batch.targets);
        tpsc_free(l->slots[i].batch.labels);
        tpsc_free(l->slots[i].batch.indices);
    }
    tpsc_free(l->slots);
    tpsc_free(l->workers);
    tpsc_free(l->perm);
    tpsc_free(l->order);
    tpsc_dataset_close(l->ds);
    tpsc_free(l);
}

/* Caller holds the lock. */
static void release_held(tpsc_loader *l) {
    if (l->held < 0) return;
    l->slots[l->held].state = SLOT_FREE;
    l->held = -1;
    pthread_cond_broadcast(&l->work_cv);
}

tpsc_status tpsc_loader_next(tpsc_loader *l, tpsc_batch *batch) {
    pthread_mutex_lock(&l->mu);
    release_held(l);
    if (l->next_consume >= l->n_batches && l->error == TPSC_OK) {
        /* Every batch of the epoch was produced and consumed, so no worker is filling and
         * the order can change under the lock. */
        *batch = (tpsc_batch){.count = 0, .epoch = l->epoch, .batch_index = (int64_t)l->n_batches, .slot_ = -1};
        l->epoch++;
        build_order(l, l->epoch);
        l->next_produce = l->next_consume = 0;
        l->skip_last = l->skip_epoch;
        l->skip_epoch = 0;
        pthread_cond_broadcast(&l->work_cv);
        pthread_mutex_unlock(&l->mu);
        return TPSC_OK;
    }
    /* Batches before a failed one were all claimed (claims go in order), so they arrive. */
    slot *s = &l->slots[l->next_consume % l->n_slots];
    if (l->n_workers == 0 && l->error == TPSC_OK) {
        /* No threads: fill it here; the slot is free since the last one was released above.
         * The lock is dropped because skip reports take it. */
        pthread_mutex_unlock(&l->mu);
        tpsc_status st = fill_batch(l, &l->workers[0], s, l->epoch, l->next_consume);
        pthread_mutex_lock(&l->mu);
        if (st == TPSC_OK) {
            s->state = SLOT_READY;
            s->batch_index = l->next_consume;
            l->next_produce = l->next_consume + 1;
        } else {
            l->error = st;
            l->error_batch = l->next_consume;
            snprintf(l->error_msg, sizeof l->error_msg, "%s", tpsc_last_error());
        }
    }
    while (!(l->error != TPSC_OK && l->next_consume >= l->error_batch) &&
           !(s->state == SLOT_READY && s->batch_index == l->next_consume))
        pthread_cond_wait(&l->ready_cv, &l->mu);
    if (l->error != TPSC_OK && l->next_consume >= l->error_batch) {
        tpsc_status st = l->error;
        pthread_mutex_unlock(&l->mu);
        *batch = (tpsc_batch){.slot_ = -1};
        return tpsc_fail(st, "%s", l->error_msg);
    }
    s->state = SLOT_HELD;
    l->held = s->batch.slot_;
    l->next_consume++;
    l->skip_epoch += s->skipped;
    l->skip_total += s->skipped;
    *batch = s->batch;
    pthread_mutex_unlock(&l->mu);
    return TPSC_OK;
}

void tpsc_loader_release(tpsc_loader *l, tpsc_batch *batch) {
    pthread_mutex_lock(&l->mu);
    if (batch->slot_ >= 0 && batch->slot_ == l->held) release_held(l);
    pthread_mutex_unlock(&l->mu);
    *batch = (tpsc_batch){.slot_ = -1};
}

tpsc_status tpsc_loader_seek(tpsc_loader *l, tpsc_data_position pos) {
    if (pos.epoch < 0 || pos.batch < 0)
        return tpsc_fail(TPSC_ERR_ARG, "loader: cannot seek to epoch %lld batch %lld", (long long)pos.epoch,
                         (long long)pos.batch);
    if ((size_t)pos.batch >= l->n_batches) {
        pos.epoch++;
        pos.batch = 0;
    }
    pthread_mutex_lock(&l->mu);
    l->pausing = true;
    while (l->filling > 0) pthread_cond_wait(&l->ready_cv, &l->mu);
    l->held = -1;
    for (size_t i = 0; i < l->n_slots; i++) l->slots[i].state = SLOT_FREE;
    if (pos.epoch != l->epoch) {
        l->skip_epoch = 0;
        build_order(l, pos.epoch);
    }
    l->epoch = pos.epoch;
    l->next_produce = l->next_consume = (size_t)pos.batch;
    l->error = TPSC_OK;
    l->pausing = false;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    return TPSC_OK;
}

tpsc_data_position tpsc_loader_position(const tpsc_loader *l) {
    tpsc_loader *m = (tpsc_loader *)l; /* the lock is not part of the logical state */
    pthread_mutex_lock(&m->mu);
    tpsc_data_position p = {m->epoch, (int64_t)m->next_consume};
    pthread_mutex_unlock(&m->mu);
    if ((size_t)p.batch >= l->n_batches) {
        p.epoch++;
        p.batch = 0;
    }
    return p;
}

size_t tpsc_loader_batches_per_epoch(const tpsc_loader *l) { return l->n_batches; }
size_t tpsc_loader_samples_per_epoch(const tpsc_loader *l) { return l->per_rank; }
size_t tpsc_loader_dataset_size(const tpsc_loader *l) { return l->n; }
size_t tpsc_loader_num_classes(const tpsc_loader *l) { return l->classes; }

const char *tpsc_loader_class_name(const tpsc_loader *l, size_t k) {
    return k < l->classes ? l->ds->class_names[k] : NULL;
}

void tpsc_loader_skip_report(tpsc_loader *l, tpsc_skip_report *out) {
    pthread_mutex_lock(&l->mu);
    out->epoch_skipped = l->skip_epoch;
    out->last_epoch_skipped = l->skip_last;
    out->total_skipped = l->skip_total;
    out->n_names = l->n_skip_names;
    for (size_t i = 0; i < l->n_skip_names; i++) memcpy(out->names[i], l->skip_names[i], TPSC_DATA_PATH_MAX);
    pthread_mutex_unlock(&l->mu);
}
