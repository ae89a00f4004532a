/* The data loader: what the trainer uses.
 *
 * Worker threads (pthreads) read samples from a dataset (data/dataset.h), augment them
 * (data/transforms.h) and fill whole batches into a ring of `prefetch` preallocated slots.
 * The trainer takes batches in order with tpsc_loader_next and gives them back with
 * tpsc_loader_release (or by calling tpsc_loader_next again). No allocation per batch.
 *
 * Determinism: every random draw for sample i of epoch e comes from
 * tpsc_rng_keyed(seed, e, i, purpose); the shuffle of epoch e from tpsc_rng_keyed(seed, e,
 * 0, SHUFFLE); Mixup/CutMix of batch b from tpsc_rng_keyed(seed, e, b, MIXUP + rank). So the
 * batches are the same byte for byte whatever the number of worker threads, and a run
 * resumed at (epoch, batch) sees exactly the batches an uninterrupted run would have.
 *
 * Letters: B batch, C channels, H/W image height/width, K classes. */
#ifndef TPSC_DATA_LOADER_H
#define TPSC_DATA_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/util/status.h"

#define TPSC_DATA_PATH_MAX 1024

typedef enum tpsc_data_format {
    TPSC_DATA_FASHION_MNIST = 0, /* idx files of Debian's dataset-fashion-mnist package */
    TPSC_DATA_IMAGEFOLDER,       /* root/<class>/<img>, JPEG/PNG/BMP (+PPM/PGM) */
    TPSC_DATA_IDX,               /* MNIST-style IDX pair, gzip or plain */
    TPSC_DATA_H5,                /* HDF5: images uint8 [N,H,W,C] or float32 [N,C,H,W], labels */
} tpsc_data_format;

typedef enum tpsc_bad_image_policy {
    TPSC_BAD_IMAGE_ERROR = 0, /* stop: tpsc_loader_next returns the error naming the file */
    TPSC_BAD_IMAGE_SKIP,      /* use the next good sample instead; count and name the bad file */
} tpsc_bad_image_policy;

typedef enum tpsc_interpolation {
    TPSC_INTERP_BICUBIC = 0, /* DeiT's train and eval interpolation */
    TPSC_INTERP_BILINEAR,
} tpsc_interpolation;

typedef enum tpsc_erase_mode {
    TPSC_ERASE_PIXEL = 0, /* timm 'pixel': per-pixel N(0,1) values (in normalised space) */
    TPSC_ERASE_RAND,      /* timm 'rand': one N(0,1) value per channel */
    TPSC_ERASE_CONST,     /* timm 'const': zeros */
} tpsc_erase_mode;

typedef enum tpsc_split {
    TPSC_SPLIT_TRAIN = 0, /* shuffle (if set), train transform, mixup, drop_last (if set) */
    TPSC_SPLIT_VAL,       /* no shuffle, eval transform, no mixup, never drop_last */
} tpsc_split;

/* Augmentation knobs, recipe section [augment]. Defaults (tpsc_data_config_default) are
 * DeiT's ImageNet recipe; each line says default and the recipe key. */
typedef struct tpsc_augment_config {
    bool no_aug;             /* no_aug = false: true makes train use the eval transform */
    float scale_min;         /* scale = 0.08, 1.0: RandomResizedCrop area fraction range */
    float scale_max;
    float ratio_min;         /* ratio = 0.75, 1.3333333: RandomResizedCrop aspect (w/h) range */
    float ratio_max;
    float hflip;             /* hflip = 0.5: horizontal flip probability */
    float color_jitter;      /* color_jitter = 0.3: brightness=contrast=saturation strength;
                              * timm applies it only when auto_augment is empty; 0 = off */
    char auto_augment[64];   /* auto_augment = "rand-m9-mstd0.5-inc1": timm RandAugment
                              * grammar (rand-m<M>-n<N>-mstd<S>-inc<0|1>-p<P>); "" = off */
    tpsc_interpolation interpolation; /* interpolation = bicubic (bicubic|bilinear) */
    float reprob;            /* reprob = 0.25: random erasing probability; 0 = off */
    tpsc_erase_mode remode;  /* remode = pixel (pixel|rand|const) */
    int recount;             /* recount = 1: erased boxes per image */
    float mixup_alpha;       /* mixup = 0.8: Beta(a,a) for Mixup; 0 = off */
    float cutmix_alpha;      /* cutmix = 1.0: Beta(a,a) for CutMix; 0 = off */
    float mixup_prob;        /* mixup_prob = 1.0: probability a batch is mixed at all */
    float mixup_switch_prob; /* mixup_switch_prob = 0.5: CutMix instead of Mixup when both on */
    float smoothing;         /* smoothing = 0.1: label smoothing of the soft targets */
    float crop_pct;          /* crop_pct = 0.875: eval resizes the short side to
                              * floor(image_size / crop_pct), then centre-crops image_size */
    float mean[3];           /* mean = 0.485, 0.456, 0.406 (ImageNet); channel 0 used if C=1 */
    float std[3];            /* std = 0.229, 0.224, 0.225 */
} tpsc_augment_config;

/* Recipe section [data]. */
typedef struct tpsc_data_config {
    tpsc_data_format format;           /* format = fashion_mnist (imagefolder|idx|h5|fashion_mnist) */
    char train_path[TPSC_DATA_PATH_MAX]; /* train = "": imagefolder root, idx prefix (".../train"
                                        * -> train-images-idx3-ubyte[.gz] + train-labels-idx1-
                                        * ubyte[.gz]) or h5 file. fashion_mnist: Debian path */
    char val_path[TPSC_DATA_PATH_MAX];   /* val = "": same for the eval split (fashion_mnist: t10k) */
    char train_images[TPSC_DATA_PATH_MAX]; /* train_images = "": explicit idx images file */
    char train_labels[TPSC_DATA_PATH_MAX]; /* train_labels = "": explicit idx labels file */
    char val_images[TPSC_DATA_PATH_MAX];   /* val_images = "" */
    char val_labels[TPSC_DATA_PATH_MAX];   /* val_labels = "" */
    int image_size;         /* image_size = 224: output H = W */
    int channels;           /* channels = 3: output C; grayscale is repeated, RGB -> luminance if 1 */
    int num_classes;        /* num_classes = 0: K; 0 = from the dataset */
    int batch_size;         /* batch_size = 64: B for train */
    int eval_batch_size;    /* eval_batch_size = 0: B for val; 0 = batch_size */
    int workers;            /* workers = 2: decode/augment threads; 0 = none, tpsc_loader_next
                             * prepares each batch in the caller's thread (no prefetch) */
    int prefetch;           /* prefetch = 4: ready batches buffered ahead (>= 1) */
    bool drop_last;         /* drop_last = true: train drops the last partial batch */
    bool shuffle;           /* shuffle = true: train order reshuffled each epoch from seed */
    uint64_t seed;          /* seed = 0: the run's seed (normally copied from [run] seed) */
    int rank;               /* rank = 0 */
    int world_size;         /* world_size = 1: each rank sees ceil(N / world_size) samples */
    tpsc_bad_image_policy on_bad_image; /* on_bad_image = error (error|skip) */
    size_t limit;           /* limit = 0: use only the first `limit` samples; 0 = all */
    int repeated_aug;       /* repeated_aug = 1: DeiT's RASampler count (DeiT/TPS use 3): each train
                             * sample appears this many times in a row in the shuffled list, with
                             * its own augmentation, and an epoch keeps N samples; 1 = off */
    tpsc_augment_config aug;
} tpsc_data_config;

/* Fills DeiT's defaults (see the field comments). */
void tpsc_data_config_default(tpsc_data_config *cfg);


/* One batch. The buffers belong to the loader and stay valid until tpsc_loader_release or
 * the next tpsc_loader_next; the trainer copies or consumes them in between. */
typedef struct tpsc_batch {
    size_t count;          /* B of this batch; 0 = end of epoch (the next call starts the next) */
    size_t channels, height, width, num_classes; /* C, H, W, K */
    float *images;         /* [B, C, H, W] normalised */
    float *targets;        /* [B, K] soft targets: mixed and label-smoothed */
    int32_t *labels;       /* [B] the un-mixed labels, for accuracy */
    int64_t *indices;      /* [B] dataset indices of the samples */
    int64_t epoch;         /* this batch's position */
    int64_t batch_index;
    float lam;             /* Mixup/CutMix lambda (1 = not mixed) */
    bool cutmix;           /* whether the mix was CutMix */
    int slot_;             /* internal */
} tpsc_batch;

/* Where the loader is: the next batch tpsc_loader_next will return. Save it with a
 * checkpoint after the step on a batch; tpsc_loader_seek continues from there. */
typedef struct tpsc_data_position {
    int64_t epoch;
    int64_t batch; /* batch index within the epoch */
} tpsc_data_position;

/* Bad images met under on_bad_image = skip. */
#define TPSC_SKIP_NAMES_MAX 8
typedef struct tpsc_skip_report {
    size_t epoch_skipped;      /* in the epoch in progress */
    size_t last_epoch_skipped; /* in the last completed epoch */
    size_t total_skipped;      /* since open */
    size_t n_names;            /* first TPSC_SKIP_NAMES_MAX distinct names */
    char names[TPSC_SKIP_NAMES_MAX][TPSC_DATA_PATH_MAX];
} tpsc_skip_report;

typedef struct tpsc_loader tpsc_loader;

/* Opens the split's dataset (all of idx and h5 decoded into memory here), starts the
 * workers at position (epoch 0, batch 0). */
tpsc_status tpsc_loader_open(tpsc_loader **out, const tpsc_data_config *cfg, tpsc_split split);
void tpsc_loader_close(tpsc_loader *l);

/* The next batch in order. At the end of an epoch returns TPSC_OK with count = 0 and moves
 * to (epoch + 1, 0). A worker failure (bad file under on_bad_image = error) is returned here
 * with the worker's message, naming the file. */
tpsc_status tpsc_loader_next(tpsc_loader *l, tpsc_batch *batch);
void tpsc_loader_release(tpsc_loader *l, tpsc_batch *batch);

/* Jumps to a position (drops prefetched batches). batch >= batches_per_epoch means
 * (epoch + 1, 0). */
tpsc_status tpsc_loader_seek(tpsc_loader *l, tpsc_data_position pos);
tpsc_data_position tpsc_loader_position(const tpsc_loader *l);

size_t tpsc_loader_batches_per_epoch(const tpsc_loader *l);
size_t tpsc_loader_samples_per_epoch(const tpsc_loader *l); /* this rank's, before drop_last */
size_t tpsc_loader_dataset_size(const tpsc_loader *l);      /* after limit */
size_t tpsc_loader_num_classes(const tpsc_loader *l);
const char *tpsc_loader_class_name(const tpsc_loader *l, size_t k);
void tpsc_loader_skip_report(tpsc_loader *l, tpsc_skip_report *out);

#endif
