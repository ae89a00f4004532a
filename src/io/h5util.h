/* Checked helpers over the HDF5 C API.
 *
 * Every call returns a tpsc_status with a message naming the file and the dataset, group or
 * attribute at fault; HDF5's own error-stack printing is switched off so a bad file gives our
 * one-line message instead of a dump. Object paths are absolute ("/model/blocks.0.attn.qkv.weight");
 * a dot is an ordinary character in an HDF5 name, so parameter names are plain dataset names
 * inside their group and h5py's f["model"]["blocks.0.attn.qkv.weight"] finds them.
 *
 * Datasets are written contiguous and uncompressed, so other tools (h5py, numpy) read them
 * as they are. */
#ifndef TPSC_IO_H5UTIL_H
#define TPSC_IO_H5UTIL_H

#include <hdf5.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/util/status.h"

#define TPSC_H5_MAX_DIMS 8

typedef struct tpsc_h5 {
    hid_t id;
    char name[512];   /* the path messages show (for an atomic write: the final path, not the tmp) */
} tpsc_h5;

/* Opens for reading. Missing file -> TPSC_ERR_IO; no HDF5 signature -> TPSC_ERR_FORMAT
 * "x.h5: not an HDF5 file"; metadata libhdf5 crashes or hangs on, found by a child process
 * reading it first (src/common/h5_probe.h) -> TPSC_ERR_FORMAT "x.h5: corrupt HDF5 metadata: ...";
 * HDF5 refuses it (truncated, corrupt) -> TPSC_ERR_FORMAT. */
tpsc_status tpsc_h5_open_read(tpsc_h5 *f, const char *path);
/* Creates (truncating) `path`; `display_name` (NULL = path) is what messages show. */
tpsc_status tpsc_h5_create(tpsc_h5 *f, const char *path, const char *display_name);
/* Closes; a failure to flush a file being written is TPSC_ERR_IO. Safe on a closed handle. */
tpsc_status tpsc_h5_close(tpsc_h5 *f);
/* A file that lives in memory only (HDF5's core driver, no backing file), named display_name
 * in messages; tpsc_h5_close_image closes it and hands over its bytes (*image, free with
 * tpsc_free), which any HDF5 reader opens as a file image (tps_model_open_memory). */
tpsc_status tpsc_h5_create_image(tpsc_h5 *f, const char *display_name);
tpsc_status tpsc_h5_close_image(tpsc_h5 *f, void **image, size_t *bytes);

/* Whether every link along `path` exists ("/optimizer/v"). */
bool tpsc_h5_exists(const tpsc_h5 *f, const char *path);

/* ---- datasets ------------------------------------------------------------------------- */
/* Shape of a dataset (ndim 0 for a scalar). */
tpsc_status tpsc_h5_shape(const tpsc_h5 *f, const char *path, int *ndim, size_t shape[TPSC_H5_MAX_DIMS]);
/* TPSC_ERR_SHAPE (the message below) unless the dataset's shape is exactly `shape`. */
tpsc_status tpsc_h5_check_shape(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape);
/* Reads a floating-point dataset as float32 after checking its shape is exactly `shape`
 * (ndim 0 = scalar). Mismatch -> TPSC_ERR_SHAPE "f.h5: /model/x has shape [96, 32], expected [96, 33]". */
tpsc_status tpsc_h5_read_f32(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, float *out);
/* Integer datasets, same shape rule (HDF5 converts between integer widths; a value that does
 * not fit is an error, not a silent wrap). */
tpsc_status tpsc_h5_read_i64(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, int64_t *out);
tpsc_status tpsc_h5_read_i32(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, int32_t *out);
tpsc_status tpsc_h5_read_u64(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, uint64_t *out);

/* Writes a new dataset (ndim 0 = scalar), creating missing parent groups. */
tpsc_status tpsc_h5_write_f32(tpsc_h5 *f, const char *path, int ndim, const size_t *shape, const float *data);
tpsc_status tpsc_h5_write_i64(tpsc_h5 *f, const char *path, int ndim, const size_t *shape, const int64_t *data);
tpsc_status tpsc_h5_write_u64(tpsc_h5 *f, const char *path, int ndim, const size_t *shape, const uint64_t *data);
/* Creates a group and its missing parents (no-op if it exists). */
tpsc_status tpsc_h5_make_group(tpsc_h5 *f, const char *path);

/* Names of the datasets directly inside `group`, sorted by name. Free with tpsc_h5_free_names. */
tpsc_status tpsc_h5_list_datasets(const tpsc_h5 *f, const char *group, char ***names, int *n);
void tpsc_h5_free_names(char **names, int n);

/* ---- attributes (on the object at `obj`, e.g. "/" or "/optimizer") ------------------- */
bool tpsc_h5_attr_exists(const tpsc_h5 *f, const char *obj, const char *name);
tpsc_status tpsc_h5_write_attr_str(tpsc_h5 *f, const char *obj, const char *name, const char *value);
tpsc_status tpsc_h5_write_attr_i64(tpsc_h5 *f, const char *obj, const char *name, int64_t value);
tpsc_status tpsc_h5_write_attr_f64(tpsc_h5 *f, const char *obj, const char *name, double value);
/* 1-D arrays (n may be 0). Strings are variable-length UTF-8, as h5py writes lists of str. */
tpsc_status tpsc_h5_write_attr_i32s(tpsc_h5 *f, const char *obj, const char *name, const int32_t *v, int n);
tpsc_status tpsc_h5_write_attr_f32s(tpsc_h5 *f, const char *obj, const char *name, const float *v, int n);
tpsc_status tpsc_h5_write_attr_strs(tpsc_h5 *f, const char *obj, const char *name, const char *const *v, int n);

/* Reads a string attribute (fixed or variable length) into a new buffer (tpsc_free it). */
tpsc_status tpsc_h5_read_attr_str(const tpsc_h5 *f, const char *obj, const char *name, char **value);
/* The same into a caller buffer; too long -> TPSC_ERR_FORMAT. */
tpsc_status tpsc_h5_read_attr_strbuf(const tpsc_h5 *f, const char *obj, const char *name, char *buf, size_t len);
/* Scalar (or one-element) numeric attributes, converted from any integer/float type. */
tpsc_status tpsc_h5_read_attr_i64(const tpsc_h5 *f, const char *obj, const char *name, int64_t *value);
tpsc_status tpsc_h5_read_attr_f64(const tpsc_h5 *f, const char *obj, const char *name, double *value);
/* 1-D arrays into caller buffers of `cap` elements; *n receives the count (more than cap ->
 * TPSC_ERR_FORMAT naming the attribute). */
tpsc_status tpsc_h5_read_attr_i32s(const tpsc_h5 *f, const char *obj, const char *name, int32_t *v, int cap, int *n);
tpsc_status tpsc_h5_read_attr_f32s(const tpsc_h5 *f, const char *obj, const char *name, float *v, int cap, int *n);
/* A string array into new strings (free with tpsc_h5_free_names). */
tpsc_status tpsc_h5_read_attr_strs(const tpsc_h5 *f, const char *obj, const char *name, char ***v, int *n);

#endif
