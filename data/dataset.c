/* What all datasets share: allocation, class names, label checks, and opening the dataset
 * a config names (deriving idx file pairs from a prefix). */
#include "data/dataset.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "src/util/alloc.h"

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

static const char *const fashion_mnist_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot",
};

tpsc_status tpsc_dataset_alloc(tpsc_dataset **out, const tpsc_dataset_ops *ops, const char *source, size_t impl_bytes,
                               const char *what) {
    *out = NULL;
    tpsc_dataset *ds = tpsc_calloc(1, sizeof *ds, "dataset");
    if (!ds) return TPSC_ERR_NOMEM;
    ds->ops = ops;
    snprintf(ds->source, sizeof ds->source, "%s", source);
    ds->impl = tpsc_calloc(1, impl_bytes, what);
    if (!ds->impl) {
        tpsc_free(ds);
        return TPSC_ERR_NOMEM;
    }
    *out = ds;
    return TPSC_OK;
}

static void free_names(char **names, size_t k) {
    if (!names) return;
    for (size_t i = 0; i < k; i++) tpsc_free(names[i]);
    tpsc_free(names);
}

tpsc_status tpsc_dataset_set_classes(tpsc_dataset *ds, size_t k, const char *const *names) {
    if (k > TPSC_DATASET_MAX_CLASSES)
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: %zu classes (labels up to %zu), more than the %zu allowed", ds->source,
                         k, k - 1, TPSC_DATASET_MAX_CLASSES);
    char **copy = tpsc_calloc(k ? k : 1, sizeof *copy, "class names");
    if (!copy) return TPSC_ERR_NOMEM;
    for (size_t i = 0; i < k; i++) {
        char number[32];
        snprintf(number, sizeof number, "%zu", i);
        copy[i] = tpsc_strdup(names && names[i] ? names[i] : number);
        if (!copy[i]) {
            free_names(copy, k);
            return TPSC_ERR_NOMEM;
        }
    }
    free_names(ds->class_names, ds->num_classes);
    ds->class_names = copy;
    ds->num_classes = k;
    return TPSC_OK;
}

tpsc_status tpsc_dataset_check_labels(const tpsc_dataset *ds) {
    for (size_t i = 0; i < ds->count; i++) {
        if (ds->labels[i] < 0 || (size_t)ds->labels[i] >= ds->num_classes)
            return tpsc_fail(TPSC_ERR_FORMAT, "%s: label %d of sample %zu is outside [0, %zu)", ds->source,
                             (int)ds->labels[i], i, ds->num_classes);
    }
    return TPSC_OK;
}

void tpsc_dataset_free_common(tpsc_dataset *ds) {
    if (!ds) return;
    free_names(ds->class_names, ds->num_classes);
    tpsc_free(ds->labels);
    tpsc_free(ds);
}

void tpsc_dataset_close(tpsc_dataset *ds) {
    if (ds) ds->ops->close(ds);
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* prefix ".../train" + kind "images-idx3" -> ".../train-images-idx3-ubyte[.gz]", the
 * compressed one first as Debian ships it. */
static tpsc_status idx_path_from_prefix(char *out, size_t n, const char *prefix, const char *kind) {
    int len = snprintf(out, n, "%s-%s-ubyte.gz", prefix, kind);
    if (len < 0 || (size_t)len >= n) return tpsc_fail(TPSC_ERR_CONFIG, "%s: idx prefix too long", prefix);
    if (file_exists(out)) return TPSC_OK;
    out[len - 3] = '\0';
    if (file_exists(out)) return TPSC_OK;
    return tpsc_fail(TPSC_ERR_MISSING, "%s-%s-ubyte[.gz]: no such file (idx prefix %s)", prefix, kind, prefix);
}

tpsc_status tpsc_dataset_open_config(tpsc_dataset **out, const tpsc_data_config *cfg, tpsc_split split) {
    *out = NULL;
    bool train = split == TPSC_SPLIT_TRAIN;
    const char *path = train ? cfg->train_path : cfg->val_path;
    const char *images = train ? cfg->train_images : cfg->val_images;
    const char *labels = train ? cfg->train_labels : cfg->val_labels;
    const char *split_name = train ? "train" : "val";
    char prefix[TPSC_DATA_PATH_MAX], img_path[TPSC_DATA_PATH_MAX], lbl_path[TPSC_DATA_PATH_MAX];
    tpsc_dataset *ds = NULL;
    tpsc_status st;

    switch (cfg->format) {
    case TPSC_DATA_FASHION_MNIST:
    case TPSC_DATA_IDX:
        if (path[0])
            snprintf(prefix, sizeof prefix, "%s", path);
        else if (cfg->format == TPSC_DATA_FASHION_MNIST)
            snprintf(prefix, sizeof prefix, "%s/%s", FASHION_MNIST_DIR, train ? "train" : "t10k");
        else
            prefix[0] = '\0';
        if (images[0]) snprintf(img_path, sizeof img_path, "%s", images);
        else if (!prefix[0])
            return tpsc_fail(TPSC_ERR_CONFIG, "data: format idx needs %s (a prefix) or %s_images", split_name,
                             split_name);
        else TPSC_TRY(idx_path_from_prefix(img_path, sizeof img_path, prefix, "images-idx3"));
        if (labels[0]) snprintf(lbl_path, sizeof lbl_path, "%s", labels);
        else if (!prefix[0])
            return tpsc_fail(TPSC_ERR_CONFIG, "data: format idx needs %s (a prefix) or %s_labels", split_name,
                             split_name);
        else TPSC_TRY(idx_path_from_prefix(lbl_path, sizeof lbl_path, prefix, "labels-idx1"));
        st = cfg->format == TPSC_DATA_FASHION_MNIST ? tpsc_dataset_open_fashion_mnist(&ds, img_path, lbl_path)
                                                    : tpsc_dataset_open_idx(&ds, img_path, lbl_path);
        break;
    case TPSC_DATA_IMAGEFOLDER:
        if (!path[0]) return tpsc_fail(TPSC_ERR_CONFIG, "data: format imagefolder needs %s (a folder)", split_name);
        st = tpsc_dataset_open_imagefolder(&ds, path, cfg->channels);
        break;
    case TPSC_DATA_H5:
        if (!path[0]) return tpsc_fail(TPSC_ERR_CONFIG, "data: format h5 needs %s (a file)", split_name);
        st = tpsc_dataset_open_h5(&ds, path);
        break;
    default:
        return tpsc_fail(TPSC_ERR_CONFIG, "data: unknown format %d", (int)cfg->format);
    }
    if (st != TPSC_OK) return st;

    if (cfg->num_classes > 0 && (size_t)cfg->num_classes != ds->num_classes) {
        if ((size_t)cfg->num_classes < ds->num_classes) {
            st = tpsc_fail(TPSC_ERR_CONFIG, "data: num_classes = %d but %s has %zu classes", cfg->num_classes,
                           ds->source, ds->num_classes);
            tpsc_dataset_close(ds);
            return st;
        }
        /* More classes than this split shows (a val set missing some): keep names, number the rest. */
        size_t k = (size_t)cfg->num_classes;
        const char **names = tpsc_calloc(k, sizeof *names, "class names");
        if (!names) {
            tpsc_dataset_close(ds);
            return TPSC_ERR_NOMEM;
        }
        for (size_t i = 0; i < ds->num_classes; i++) names[i] = ds->class_names[i];
        char **old = ds->class_names;
        size_t old_k = ds->num_classes;
        ds->class_names = NULL;
        st = tpsc_dataset_set_classes(ds, k, names);
        tpsc_free(names);
        if (st != TPSC_OK) {
            ds->class_names = old;
            tpsc_dataset_close(ds);
            return st;
        }
        free_names(old, old_k);
    }
    if (cfg->limit > 0 && cfg->limit < ds->count) ds->count = cfg->limit;
    if (ds->count == 0) {
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: no samples", ds->source);
        tpsc_dataset_close(ds);
        return st;
    }
    *out = ds;
    return TPSC_OK;
}

tpsc_status tpsc_dataset_open_fashion_mnist(tpsc_dataset **out, const char *images_path, const char *labels_path) {
    TPSC_TRY(tpsc_dataset_open_idx(out, images_path, labels_path));
    tpsc_dataset *ds = *out;
    tpsc_status st = tpsc_dataset_set_classes(ds, 10, fashion_mnist_names);
    if (st == TPSC_OK) st = tpsc_dataset_check_labels(ds);
    if (st != TPSC_OK) {
        tpsc_dataset_close(ds);
        *out = NULL;
    }
    return st;
}
