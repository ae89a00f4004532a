/* A dataset: N labelled images, K class names, and a way to get image i.
 *
 * Three implementations: ds_idx.c (MNIST/Fashion-MNIST IDX), ds_h5.c (HDF5 images+labels),
 * both decoded wholly into memory at open so a sample is a pointer into one block, and
 * ds_imagefolder.c (root/<class>/<img>, decoded from disk per sample with stb_image).
 * Labels are known at open for all three, and checked against K there. */
#ifndef TPSC_DATA_DATASET_H
#define TPSC_DATA_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "data/loader.h"
#include "src/util/status.h"

/* One image as the dataset holds it. Exactly one of u8/f32 is set. */
typedef struct tpsc_image_view {
    const uint8_t *u8; /* [H, W, C], 0..255 */
    const float *f32;  /* [C, H, W], 0..1 (h5 float32) */
    int width, height, channels;
} tpsc_image_view;

/* Per-thread buffers a dataset may decode into; a view stays valid until the next get with
 * the same scratch. Zero-initialise; free with tpsc_decode_scratch_free. */
typedef struct tpsc_decode_scratch {
    uint8_t *file;      /* the encoded file's bytes */
    size_t file_cap;
    uint8_t *pixels;    /* stb_image's decoded pixels (its own allocation) */
} tpsc_decode_scratch;
void tpsc_decode_scratch_free(tpsc_decode_scratch *s);

/* One encoded image file (JPEG, PNG, BMP, binary PGM/PPM) decoded to `channels` (1 or 3) into
 * s, with every check the image-folder loader runs first (a file cut short, and what
 * data/image_check.h refuses before stb_image would overrun on it): a bad file is an error that
 * names it, never a crash. The image-folder loader and `tpsc visualize` decode through it. */
tpsc_status tpsc_image_decode_file(const char *path, int channels, tpsc_decode_scratch *s, tpsc_image_view *out);

typedef struct tpsc_dataset tpsc_dataset;

typedef struct tpsc_dataset_ops {
    tpsc_status (*get)(const tpsc_dataset *ds, size_t i, tpsc_decode_scratch *s, tpsc_image_view *out);
    /* The file (or file:index) sample i comes from, for messages and skip reports. */
    void (*sample_name)(const tpsc_dataset *ds, size_t i, char *buf, size_t n);
    void (*close)(tpsc_dataset *ds);
} tpsc_dataset_ops;

struct tpsc_dataset {
    const tpsc_dataset_ops *ops;
    char source[TPSC_DATA_PATH_MAX]; /* folder or file it was opened from */
    size_t count;                    /* N */
    size_t num_classes;              /* K */
    char **class_names;              /* [K] */
    int32_t *labels;                 /* [N], each in [0, K) */
    void *impl;
};

/* `channels` is what imagefolder decodes to (1 or 3); in-memory sets keep their own. */
tpsc_status tpsc_dataset_open_imagefolder(tpsc_dataset **out, const char *root, int channels);
tpsc_status tpsc_dataset_open_idx(tpsc_dataset **out, const char *images_path, const char *labels_path);
/* Fashion-MNIST's idx pair with its ten class names. */
tpsc_status tpsc_dataset_open_fashion_mnist(tpsc_dataset **out, const char *images_path,
                                            const char *labels_path);
tpsc_status tpsc_dataset_open_h5(tpsc_dataset **out, const char *path);
/* Opens the dataset a config names for a split (paths derived as documented in loader.h),
 * with cfg->limit applied. */
tpsc_status tpsc_dataset_open_config(tpsc_dataset **out, const tpsc_data_config *cfg, tpsc_split split);
void tpsc_dataset_close(tpsc_dataset *ds);

static inline tpsc_status tpsc_dataset_get(const tpsc_dataset *ds, size_t i, tpsc_decode_scratch *s,
                                           tpsc_image_view *out) {
    return ds->ops->get(ds, i, s, out);
}

/* Helpers shared by the implementations (dataset.c). */
/* A data set with ops and source, and its implementation's state (impl_bytes, zeroed; `what`
 * names it in an out-of-memory error) in ds->impl. */
tpsc_status tpsc_dataset_alloc(tpsc_dataset **out, const tpsc_dataset_ops *ops, const char *source, size_t impl_bytes,
                               const char *what);
/* The most classes a data set may have. Labels without names (idx, HDF5 without
 * "class_names") make K = max label + 1, so one corrupt label of 2^31 would otherwise allocate
 * gigabytes of names for a file of a few bytes. */
#define TPSC_DATASET_MAX_CLASSES ((size_t)1 << 20)

/* Sets K and names; names == NULL gives "0".."K-1". K past TPSC_DATASET_MAX_CLASSES is a
 * format error naming the source, before anything is allocated. */
tpsc_status tpsc_dataset_set_classes(tpsc_dataset *ds, size_t k, const char *const *names);
/* Checks every label is in [0, K); the message names the source and the first bad index. */
tpsc_status tpsc_dataset_check_labels(const tpsc_dataset *ds);
void tpsc_dataset_free_common(tpsc_dataset *ds);

#endif
