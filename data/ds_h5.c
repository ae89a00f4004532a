/* HDF5 data sets: `images` uint8 [N, H, W, C] (or [N, H, W]) or float32 [N, C, H, W] in
 * 0..1, `labels` integers [N], optional `class_names` strings [K]. Read wholly into memory
 * at open. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <hdf5.h>

#include "data/dataset.h"
#include "src/common/h5_probe.h"
#include "src/util/alloc.h"

typedef struct h5_data {
    uint8_t *u8; /* [N, H, W, C] */
    float *f32;  /* [N, C, H, W] */
    int height, width, channels;
} h5_data;

static tpsc_status h5_get(const tpsc_dataset *ds, size_t i, tpsc_decode_scratch *s, tpsc_image_view *out) {
    const h5_data *d = ds->impl;
    size_t image = (size_t)d->height * d->width * d->channels;
    *out = (tpsc_image_view){.u8 = d->u8 ? d->u8 + i * image : NULL, .f32 = d->f32 ? d->f32 + i * image : NULL,
                             .width = d->width, .height = d->height, .channels = d->channels};
    return TPSC_OK;
}

static void h5_name(const tpsc_dataset *ds, size_t i, char *buf, size_t n) { snprintf(buf, n, "%s[%zu]", ds->source, i); }

static void h5_close(tpsc_dataset *ds) {
    h5_data *d = ds->impl;
    if (d) {
        tpsc_free(d->u8);
        tpsc_free(d->f32);
        tpsc_free(d);
    }
    tpsc_dataset_free_common(ds);
}

static const tpsc_dataset_ops h5_ops = {h5_get, h5_name, h5_close};

/* The most bytes a file of `file_bytes` may decode to: contiguous data is in the file itself,
 * and deflate (HDF5's gzip filter) cannot expand more than 1032:1. Sizes past this are
 * refused before anything is allocated for them. */
static uint64_t decoded_limit(uint64_t file_bytes) { return file_bytes * 1032u + ((uint64_t)1 << 20); }

static tpsc_status read_images(hid_t file, const char *path, uint64_t file_limit, h5_data *d, size_t *count) {
    tpsc_status st = TPSC_OK;
    hid_t set = -1, space = -1, type = -1;
    H5E_BEGIN_TRY { set = H5Dopen2(file, "images", H5P_DEFAULT); }
    H5E_END_TRY;
    if (set < 0) return tpsc_fail(TPSC_ERR_MISSING, "%s: no dataset \"images\"", path);
    space = H5Dget_space(set);
    type = H5Dget_type(set);
    hsize_t dims[4] = {0};
    int rank = H5Sget_simple_extent_ndims(space);
    H5T_class_t cls = H5Tget_class(type);
    bool is_u8 = cls == H5T_INTEGER && H5Tget_size(type) == 1;
    bool is_f32 = cls == H5T_FLOAT;
    if (rank < 3 || rank > 4) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"images\" has rank %d, expected 4", path, rank);
    else if (!is_u8 && !is_f32)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"images\" must be uint8 [N,H,W,C] or float32 [N,C,H,W]", path);
    else if (is_f32 && rank != 4) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: float \"images\" must be [N,C,H,W]", path);
    if (st == TPSC_OK) {
        H5Sget_simple_extent_dims(space, dims, NULL);
        for (int i = 1; i < rank; i++)
            if (dims[i] > 65536)
                st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"images\" dimension %d is %llu (at most 65536)", path, i,
                               (unsigned long long)dims[i]);
    }
    if (st == TPSC_OK) {
        *count = dims[0];
        if (is_u8) {
            d->height = (int)dims[1];
            d->width = (int)dims[2];
            d->channels = rank == 4 ? (int)dims[3] : 1;
        } else {
            d->channels = (int)dims[1];
            d->height = (int)dims[2];
            d->width = (int)dims[3];
        }
        if (d->channels != 1 && d->channels != 3)
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"images\" has %d channels, expected 1 or 3", path, d->channels);
        else if (*count == 0 || d->height == 0 || d->width == 0)
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"images\" is empty", path);
    }
    if (st == TPSC_OK) {
        uint64_t per_image = (uint64_t)d->height * d->width * d->channels * (is_u8 ? 1 : sizeof(float));
        if (*count > file_limit / per_image)
            st = tpsc_fail(TPSC_ERR_FORMAT,
                           "%s: \"images\" claims %llu images of %llu bytes, more than the file can hold", path,
                           (unsigned long long)*count, (unsigned long long)per_image);
    }
    if (st == TPSC_OK) {
        size_t n = *count * (size_t)d->height * d->width * d->channels;
        herr_t rc;
        if (is_u8) {
            d->u8 = tpsc_aligned_alloc(n, "h5 images");
            if (!d->u8) st = TPSC_ERR_NOMEM;
            else H5E_BEGIN_TRY { rc = H5Dread(set, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->u8); }
            H5E_END_TRY;
        } else {
            d->f32 = tpsc_aligned_alloc(n * sizeof(float), "h5 images");
            if (!d->f32) st = TPSC_ERR_NOMEM;
            else H5E_BEGIN_TRY { rc = H5Dread(set, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, d->f32); }
            H5E_END_TRY;
        }
        if (st == TPSC_OK && rc < 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read \"images\" (corrupt?)", path);
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(set);
    return st;
}

static tpsc_status read_labels(hid_t file, const char *path, size_t count, int32_t **labels) {
    tpsc_status st = TPSC_OK;
    hid_t set;
    H5E_BEGIN_TRY { set = H5Dopen2(file, "labels", H5P_DEFAULT); }
    H5E_END_TRY;
    if (set < 0) return tpsc_fail(TPSC_ERR_MISSING, "%s: no dataset \"labels\"", path);
    hid_t space = H5Dget_space(set), type = H5Dget_type(set);
    hssize_t np = H5Sget_simple_extent_npoints(space);
    hsize_t n = np > 0 ? (hsize_t)np : 0;
    if (np < 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read the shape of \"labels\"", path);
    else if (H5Tget_class(type) != H5T_INTEGER) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"labels\" must be integers", path);
    else if (n != count)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: %llu labels but %zu images", path, (unsigned long long)n, count);
    if (st == TPSC_OK) {
        *labels = tpsc_malloc(count * sizeof **labels, "h5 labels");
        if (!*labels) st = TPSC_ERR_NOMEM;
    }
    if (st == TPSC_OK) {
        herr_t rc;
        H5E_BEGIN_TRY { rc = H5Dread(set, H5T_NATIVE_INT32, H5S_ALL, H5S_ALL, H5P_DEFAULT, *labels); }
        H5E_END_TRY;
        if (rc < 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read \"labels\"", path);
    }
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(set);
    return st;
}

/* Optional `class_names`: variable- or fixed-length strings. */
static tpsc_status read_class_names(hid_t file, const char *path, uint64_t file_limit, tpsc_dataset *ds, bool *found) {
    *found = false;
    htri_t exists;
    H5E_BEGIN_TRY { exists = H5Lexists(file, "class_names", H5P_DEFAULT); }
    H5E_END_TRY;
    if (exists <= 0) return TPSC_OK;
    hid_t set;
    H5E_BEGIN_TRY { set = H5Dopen2(file, "class_names", H5P_DEFAULT); }
    H5E_END_TRY;
    hid_t space = H5Dget_space(set), type = H5Dget_type(set);
    hssize_t np = H5Sget_simple_extent_npoints(space);
    size_t k = np > 0 ? (size_t)np : 0;
    size_t width = H5Tis_variable_str(type) > 0 ? sizeof(char *) : H5Tget_size(type) + 1;
    tpsc_status st = TPSC_OK;
    if (set < 0 || np < 0 || type < 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read \"class_names\"", path);
    else if (H5Tget_class(type) != H5T_STRING) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"class_names\" must be strings", path);
    else if (k > TPSC_DATASET_MAX_CLASSES || width > 4096 || (uint64_t)k * width > file_limit)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: \"class_names\" holds %zu names of %zu bytes (too many or too long)",
                       path, k, width);
    char **names = NULL;
    char *fixed = NULL;
    if (st == TPSC_OK) {
        names = tpsc_calloc(k ? k : 1, sizeof *names, "class names");
        if (!names) st = TPSC_ERR_NOMEM;
    }
    if (st == TPSC_OK) {
        hid_t mem = H5Tcopy(H5T_C_S1);
        H5Tset_cset(mem, H5Tget_cset(type)); /* h5py writes UTF-8; HDF5 will not convert it to ASCII */
        herr_t rc = -1;
        if (H5Tis_variable_str(type) > 0) {
            H5Tset_size(mem, H5T_VARIABLE);
            H5E_BEGIN_TRY { rc = H5Dread(set, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, names); }
            H5E_END_TRY;
            if (rc >= 0) st = tpsc_dataset_set_classes(ds, k, (const char *const *)names);
            if (rc >= 0) H5Dvlen_reclaim(mem, space, H5P_DEFAULT, names);
        } else {
            size_t len = H5Tget_size(type) + 1;
            H5Tset_size(mem, len);
            fixed = tpsc_calloc(k ? k : 1, len, "class names");
            if (!fixed) st = TPSC_ERR_NOMEM;
            else {
                H5E_BEGIN_TRY { rc = H5Dread(set, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, fixed); }
                H5E_END_TRY;
                for (size_t i = 0; i < k; i++) names[i] = fixed + i * len;
                if (rc >= 0) st = tpsc_dataset_set_classes(ds, k, (const char *const *)names);
            }
        }
        H5Tclose(mem);
        if (st == TPSC_OK && rc < 0) st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read \"class_names\"", path);
        if (st == TPSC_OK) *found = true;
    }
    tpsc_free(fixed);
    tpsc_free(names);
    H5Tclose(type);
    H5Sclose(space);
    H5Dclose(set);
    return st;
}

tpsc_status tpsc_dataset_open_h5(tpsc_dataset **out, const char *path) {
    *out = NULL;
    /* what libhdf5 would crash or hang on is refused first (src/common/h5_probe.h) */
    h5_file_facts facts;
    const h5_file_check check = h5_file_vet(path, true, &facts);
    if (check != H5_FILE_OK)
        return tpsc_fail(check == H5_FILE_BAD_SETTING     ? TPSC_ERR_CONFIG
                         : h5_file_check_is_format(check) ? TPSC_ERR_FORMAT
                                                          : TPSC_ERR_IO,
                         "%s: %s", path, facts.problem);
    const uint64_t file_limit = decoded_limit(facts.bytes);
    hid_t file;
    H5E_BEGIN_TRY { file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT); }
    H5E_END_TRY;
    if (file < 0) return tpsc_fail(TPSC_ERR_FORMAT, "%s: not an HDF5 file (or corrupt)", path);
    tpsc_dataset *ds;
    tpsc_status st = tpsc_dataset_alloc(&ds, &h5_ops, path, sizeof(h5_data), "h5 dataset");
    if (st != TPSC_OK) {
        H5Fclose(file);
        return st;
    }
    h5_data *d = ds->impl;
    size_t count = 0;
    bool named = false;
    if (st == TPSC_OK) st = read_images(file, path, file_limit, d, &count);
    if (st == TPSC_OK) st = read_labels(file, path, count, &ds->labels);
    if (st == TPSC_OK) {
        ds->count = count;
        st = read_class_names(file, path, file_limit, ds, &named);
    }
    if (st == TPSC_OK && !named) {
        /* K = the largest label + 1; a label past the class limit is named before any
         * allocation for K names. */
        int32_t max_label = 0;
        size_t at = 0;
        for (size_t i = 0; i < count; i++)
            if (ds->labels[i] > max_label) max_label = ds->labels[i], at = i;
        if ((size_t)max_label >= TPSC_DATASET_MAX_CLASSES)
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: label %d of sample %zu is past the %zu classes allowed", path,
                           (int)max_label, at, TPSC_DATASET_MAX_CLASSES);
        else st = tpsc_dataset_set_classes(ds, (size_t)max_label + 1, NULL);
    }
    if (st == TPSC_OK) st = tpsc_dataset_check_labels(ds);
    H5Fclose(file);
    if (st != TPSC_OK) {
        h5_close(ds);
        return st;
    }
    *out = ds;
    return TPSC_OK;
}
