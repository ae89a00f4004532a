/* Checked HDF5 helpers: each wraps one HDF5 job and turns its failure into a tpsc_status whose
 * message names the file and the object. HDF5 reports failures as negative ids/herr_t. */
#include "src/io/h5util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/h5_probe.h"
#include "src/io/fault.h"
#include "src/util/alloc.h"

/* HDF5 prints its whole error stack to stderr by default; we report failures ourselves. The
 * setting is per thread in thread-safe builds, so it is repeated at every open. */
static void silence_hdf5(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static const char *shape_str(int ndim, const size_t *shape, char *buf, size_t len) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, len - used, "[");
    for (int i = 0; i < ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %zu" : "%zu", shape[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

/* ---- files ---------------------------------------------------------------------------- */

/* Closing the file closes every object still open in it, so an early return on an error
 * path never leaves the file half-open. */
static hid_t strong_close_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0) H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    return fapl;
}

tpsc_status tpsc_h5_open_read(tpsc_h5 *f, const char *path) {
    silence_hdf5();
    f->id = H5I_INVALID_HID;
    snprintf(f->name, sizeof f->name, "%s", path);
    h5_file_facts facts;
    const h5_file_check check = h5_file_vet(path, true, &facts);
    if (check != H5_FILE_OK)
        return tpsc_fail(check == H5_FILE_BAD_SETTING     ? TPSC_ERR_CONFIG
                         : h5_file_check_is_format(check) ? TPSC_ERR_FORMAT
                                                          : TPSC_ERR_IO,
                         "%s: %s", path, facts.problem);
    hid_t fapl = strong_close_fapl();
    f->id = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f->id < 0)
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: HDF5 cannot open it (truncated or corrupt file)", path);
    return TPSC_OK;
}

tpsc_status tpsc_h5_create(tpsc_h5 *f, const char *path, const char *display_name) {
    silence_hdf5();
    snprintf(f->name, sizeof f->name, "%s", display_name ? display_name : path);
    hid_t fapl = strong_close_fapl();
    f->id = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f->id < 0) return tpsc_fail(TPSC_ERR_IO, "%s: cannot create %s", f->name, path);
    return TPSC_OK;
}

tpsc_status tpsc_h5_create_image(tpsc_h5 *f, const char *display_name) {
    silence_hdf5();
    snprintf(f->name, sizeof f->name, "%s", display_name);
    /* the core driver keeps files by name: each image gets its own */
    static _Atomic unsigned long serial;
    char unique[64];
    snprintf(unique, sizeof unique, "tpsc-image-%lu", ++serial);
    hid_t fapl = strong_close_fapl();
    f->id = H5I_INVALID_HID;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0) f->id = H5Fcreate(unique, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (f->id < 0) return tpsc_fail(TPSC_ERR_IO, "%s: cannot create an HDF5 file in memory", f->name);
    return TPSC_OK;
}

tpsc_status tpsc_h5_close_image(tpsc_h5 *f, void **image, size_t *bytes) {
    *image = NULL, *bytes = 0;
    tpsc_status st = TPSC_OK;
    if (H5Fflush(f->id, H5F_SCOPE_LOCAL) < 0) st = tpsc_fail(TPSC_ERR_IO, "%s: flushing the in-memory file failed", f->name);
    const ssize_t n = st == TPSC_OK ? H5Fget_file_image(f->id, NULL, 0) : -1;
    if (st == TPSC_OK && n <= 0) st = tpsc_fail(TPSC_ERR_IO, "%s: the in-memory file has no image", f->name);
    void *buf = st == TPSC_OK ? tpsc_malloc((size_t)n, "HDF5 file image") : NULL;
    if (st == TPSC_OK && !buf) st = TPSC_ERR_NOMEM;
    if (st == TPSC_OK && H5Fget_file_image(f->id, buf, (size_t)n) != n)
        st = tpsc_fail(TPSC_ERR_IO, "%s: copying the in-memory file failed", f->name);
    const tpsc_status cst = tpsc_h5_close(f);
    if (st == TPSC_OK) st = cst;
    if (st != TPSC_OK) {
        tpsc_free(buf);
        return st;
    }
    *image = buf, *bytes = (size_t)n;
    return TPSC_OK;
}

tpsc_status tpsc_h5_close(tpsc_h5 *f) {
    if (f->id < 0) return TPSC_OK;
    errno = 0;
    herr_t rc = H5Fclose(f->id);
    f->id = H5I_INVALID_HID;
    /* A full disk often shows only here, when HDF5 flushes what it cached. */
    if (rc < 0)
        return tpsc_fail(TPSC_ERR_IO, "%s: closing the HDF5 file failed%s%s", f->name, errno ? ": " : "",
                         errno ? strerror(errno) : "");
    return TPSC_OK;
}

bool tpsc_h5_exists(const tpsc_h5 *f, const char *path) {
    /* H5Lexists fails (rather than saying no) when an intermediate group is missing, so each
     * prefix is checked in turn. */
    char buf[1024];
    size_t len = strlen(path);
    if (len >= sizeof buf) return false;
    memcpy(buf, path, len + 1);
    if (strcmp(buf, "/") == 0) return true;
    for (size_t i = 1; i <= len; i++) {
        if (buf[i] != '/' && buf[i] != '\0') continue;
        char saved = buf[i];
        buf[i] = '\0';
        htri_t ok = H5Lexists(f->id, buf, H5P_DEFAULT);
        buf[i] = saved;
        if (ok <= 0) return false;
    }
    return true;
}

/* ---- datasets ------------------------------------------------------------------------- */

static tpsc_status open_dataset(const tpsc_h5 *f, const char *path, hid_t *ds) {
    if (!tpsc_h5_exists(f, path)) return tpsc_fail(TPSC_ERR_MISSING, "%s: %s is missing", f->name, path);
    *ds = H5Dopen2(f->id, path, H5P_DEFAULT);
    if (*ds < 0) return tpsc_fail(TPSC_ERR_FORMAT, "%s: %s is not a readable dataset", f->name, path);
    return TPSC_OK;
}

static tpsc_status space_shape(const tpsc_h5 *f, const char *path, hid_t space, int *ndim, size_t *shape) {
    int nd = H5Sget_simple_extent_ndims(space);
    if (nd < 0 || nd > TPSC_H5_MAX_DIMS)
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: %s has an unsupported dataspace", f->name, path);
    hsize_t dims[TPSC_H5_MAX_DIMS];
    H5Sget_simple_extent_dims(space, dims, NULL);
    for (int i = 0; i < nd; i++) shape[i] = (size_t)dims[i];
    *ndim = nd;
    return TPSC_OK;
}

tpsc_status tpsc_h5_shape(const tpsc_h5 *f, const char *path, int *ndim, size_t shape[TPSC_H5_MAX_DIMS]) {
    hid_t ds;
    TPSC_TRY(open_dataset(f, path, &ds));
    hid_t space = H5Dget_space(ds);
    tpsc_status st = space < 0 ? tpsc_fail(TPSC_ERR_FORMAT, "%s: %s has no dataspace", f->name, path)
                               : space_shape(f, path, space, ndim, shape);
    if (space >= 0) H5Sclose(space);
    H5Dclose(ds);
    return st;
}

static tpsc_status compare_shape(const tpsc_h5 *f, const char *path, int file_nd, const size_t *file_shape, int ndim,
                                 const size_t *shape) {
    bool same = file_nd == ndim;
    for (int i = 0; same && i < ndim; i++) same = file_shape[i] == shape[i];
    if (same) return TPSC_OK;
    char got[128], exp[128];
    return tpsc_fail(TPSC_ERR_SHAPE, "%s: %s has shape %s, expected %s", f->name, path,
                     shape_str(file_nd, file_shape, got, sizeof got), shape_str(ndim, shape, exp, sizeof exp));
}

tpsc_status tpsc_h5_check_shape(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape) {
    int file_nd;
    size_t file_shape[TPSC_H5_MAX_DIMS];
    TPSC_TRY(tpsc_h5_shape(f, path, &file_nd, file_shape));
    return compare_shape(f, path, file_nd, file_shape, ndim, shape);
}

/* HDF5 saturates out-of-range values when converting between types; we would rather fail. */
static H5T_conv_ret_t refuse_overflow(H5T_conv_except_t except, hid_t src, hid_t dst, void *s, void *d, void *user) {
    (void)src, (void)dst, (void)s, (void)d, (void)user;
    if (except == H5T_CONV_EXCEPT_RANGE_HI || except == H5T_CONV_EXCEPT_RANGE_LOW) return H5T_CONV_ABORT;
    return H5T_CONV_UNHANDLED;
}

static tpsc_status read_checked(const tpsc_h5 *f, const char *path, hid_t memtype, H5T_class_t want,
                                const char *want_name, int ndim, const size_t *shape, void *out) {
    hid_t ds;
    TPSC_TRY(open_dataset(f, path, &ds));
    tpsc_status st = TPSC_OK;
    hid_t space = H5I_INVALID_HID, xfer = H5I_INVALID_HID;
    hid_t ftype = H5Dget_type(ds);
    if (ftype < 0 || H5Tget_class(ftype) != want) {
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: %s is not %s data", f->name, path, want_name);
        goto done;
    }
    space = H5Dget_space(ds);
    int file_nd;
    size_t file_shape[TPSC_H5_MAX_DIMS];
    if (space < 0) {
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: %s has no dataspace", f->name, path);
        goto done;
    }
    if ((st = space_shape(f, path, space, &file_nd, file_shape)) != TPSC_OK) goto done;
    if ((st = compare_shape(f, path, file_nd, file_shape, ndim, shape)) != TPSC_OK) goto done;
    if (H5Sget_simple_extent_npoints(space) == 0) goto done;
    xfer = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_type_conv_cb(xfer, refuse_overflow, NULL);
    if (H5Dread(ds, memtype, H5S_ALL, H5S_ALL, xfer, out) < 0)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read %s (truncated or corrupt file, or values out of range)",
                       f->name, path);
done:
    if (xfer >= 0) H5Pclose(xfer);
    if (space >= 0) H5Sclose(space);
    if (ftype >= 0) H5Tclose(ftype);
    H5Dclose(ds);
    return st;
}

tpsc_status tpsc_h5_read_f32(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, float *out) {
    return read_checked(f, path, H5T_NATIVE_FLOAT, H5T_FLOAT, "floating-point", ndim, shape, out);
}
tpsc_status tpsc_h5_read_i64(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, int64_t *out) {
    return read_checked(f, path, H5T_NATIVE_INT64, H5T_INTEGER, "integer", ndim, shape, out);
}
tpsc_status tpsc_h5_read_i32(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, int32_t *out) {
    return read_checked(f, path, H5T_NATIVE_INT32, H5T_INTEGER, "integer", ndim, shape, out);
}
tpsc_status tpsc_h5_read_u64(const tpsc_h5 *f, const char *path, int ndim, const size_t *shape, uint64_t *out) {
    return read_checked(f, path, H5T_NATIVE_UINT64, H5T_INTEGER, "integer", ndim, shape, out);
}

static hid_t make_space(int ndim, const size_t *shape) {
    if (ndim == 0) return H5Screate(H5S_SCALAR);
    hsize_t dims[TPSC_H5_MAX_DIMS];
    for (int i = 0; i < ndim; i++) dims[i] = (hsize_t)shape[i];
    return H5Screate_simple(ndim, dims, NULL);
}

static hid_t intermediate_groups_lcpl(void) {
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0) H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

static tpsc_status write_dataset(tpsc_h5 *f, const char *path, hid_t filetype, hid_t memtype, int ndim,
                                 const size_t *shape, const void *data) {
    if (ndim < 0 || ndim > TPSC_H5_MAX_DIMS)
        return tpsc_fail(TPSC_ERR_ARG, "%s: %s: %d dims", f->name, path, ndim);
    tpsc_status st = TPSC_OK;
    hid_t space = make_space(ndim, shape);
    hid_t lcpl = intermediate_groups_lcpl();
    /* Default creation properties: contiguous, no filters, so any reader maps it directly. */
    hid_t ds = (space >= 0 && lcpl >= 0) ? H5Dcreate2(f->id, path, filetype, space, lcpl, H5P_DEFAULT, H5P_DEFAULT)
                                         : H5I_INVALID_HID;
    static const char empty;
    size_t bytes = H5Tget_size(memtype);
    for (int i = 0; i < ndim; i++) bytes *= shape[i];
    int err = 0;
    errno = 0;
    if (ds < 0)
        st = tpsc_fail(TPSC_ERR_IO, "%s: cannot create dataset %s%s%s", f->name, path, errno ? ": " : "",
                       errno ? strerror(errno) : "");
    else if ((err = tpsc_io_fault_write(f->name, bytes)) != 0 ||
             H5Dwrite(ds, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data ? data : (const void *)&empty) < 0) {
        if (!err) err = errno;
        st = tpsc_fail(TPSC_ERR_IO, "%s: cannot write dataset %s%s%s", f->name, path, err ? ": " : "",
                       err ? strerror(err) : "");
    }
    if (ds >= 0) H5Dclose(ds);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (space >= 0) H5Sclose(space);
    return st;
}

tpsc_status tpsc_h5_write_f32(tpsc_h5 *f, const char *path, int ndim, const size_t *shape, const float *data) {
    return write_dataset(f, path, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, ndim, shape, data);
}
tpsc_status tpsc_h5_write_i64(tpsc_h5 *f, const char *path, int ndim, const size_t *shape, const int64_t *data) {
    return write_dataset(f, path, H5T_STD_I64LE, H5T_NATIVE_INT64, ndim, shape, data);
}
tpsc_status tpsc_h5_write_u64(tpsc_h5 *f, const char *path, int ndim, const size_t *shape, const uint64_t *data) {
    return write_dataset(f, path, H5T_STD_U64LE, H5T_NATIVE_UINT64, ndim, shape, data);
}

tpsc_status tpsc_h5_make_group(tpsc_h5 *f, const char *path) {
    if (tpsc_h5_exists(f, path)) return TPSC_OK;
    hid_t lcpl = intermediate_groups_lcpl();
    hid_t g = lcpl >= 0 ? H5Gcreate2(f->id, path, lcpl, H5P_DEFAULT, H5P_DEFAULT) : H5I_INVALID_HID;
    if (lcpl >= 0) H5Pclose(lcpl);
    if (g < 0) return tpsc_fail(TPSC_ERR_IO, "%s: cannot create group %s", f->name, path);
    H5Gclose(g);
    return TPSC_OK;
}

/* ---- listing -------------------------------------------------------------------------- */

typedef struct name_list {
    char **names;
    int n, cap;
    bool nomem;
} name_list;

static herr_t collect_dataset(hid_t group, const char *name, const H5L_info_t *info, void *user) {
    (void)info;
    name_list *l = user;
    /* H5Oget_info's signature differs between HDF5 1.10 and 1.12; opening the object and asking
     * its id type works on both. */
    hid_t obj = H5Oopen(group, name, H5P_DEFAULT);
    if (obj < 0) return -1;
    bool is_dataset = H5Iget_type(obj) == H5I_DATASET;
    H5Oclose(obj);
    if (!is_dataset) return 0;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        char **grown = tpsc_realloc(l->names, (size_t)cap * sizeof *grown, "dataset name list");
        if (!grown) return l->nomem = true, -1;
        l->names = grown;
        l->cap = cap;
    }
    if (!(l->names[l->n] = tpsc_strdup(name))) return l->nomem = true, -1;
    l->n++;
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

tpsc_status tpsc_h5_list_datasets(const tpsc_h5 *f, const char *group, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    if (!tpsc_h5_exists(f, group)) return tpsc_fail(TPSC_ERR_MISSING, "%s: group %s is missing", f->name, group);
    hid_t g = H5Gopen2(f->id, group, H5P_DEFAULT);
    if (g < 0) return tpsc_fail(TPSC_ERR_FORMAT, "%s: %s is not a group", f->name, group);
    name_list l = {0};
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, NULL, collect_dataset, &l);
    H5Gclose(g);
    if (rc < 0) {
        tpsc_h5_free_names(l.names, l.n);
        if (l.nomem) return TPSC_ERR_NOMEM;
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot list group %s (truncated or corrupt file)", f->name, group);
    }
    if (l.n > 1) qsort(l.names, (size_t)l.n, sizeof *l.names, cmp_names);
    *names = l.names;
    *n = l.n;
    return TPSC_OK;
}

void tpsc_h5_free_names(char **names, int n) {
    for (int i = 0; i < n; i++) tpsc_free(names[i]);
    tpsc_free(names);
}

/* ---- attributes ----------------------------------------------------------------------- */

bool tpsc_h5_attr_exists(const tpsc_h5 *f, const char *obj, const char *name) {
    return tpsc_h5_exists(f, obj) && H5Aexists_by_name(f->id, obj, name, H5P_DEFAULT) > 0;
}

static tpsc_status write_attr(tpsc_h5 *f, const char *obj, const char *name, hid_t filetype, hid_t memtype,
                              hid_t space, const void *data) {
    tpsc_status st = TPSC_OK;
    if (tpsc_h5_attr_exists(f, obj, name)) H5Adelete_by_name(f->id, obj, name, H5P_DEFAULT);
    hid_t a = space >= 0 ? H5Acreate_by_name(f->id, obj, name, filetype, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)
                         : H5I_INVALID_HID;
    static const char empty;
    int err = 0;
    errno = 0;
    if (a < 0 || (err = tpsc_io_fault_write(f->name, H5Tget_size(memtype))) != 0 ||
        H5Awrite(a, memtype, data ? data : (const void *)&empty) < 0) {
        if (!err) err = errno;
        st = tpsc_fail(TPSC_ERR_IO, "%s: cannot write attribute %s of %s%s%s", f->name, name, obj, err ? ": " : "",
                       err ? strerror(err) : "");
    }
    if (a >= 0) H5Aclose(a);
    if (space >= 0) H5Sclose(space);
    return st;
}

/* Variable-length UTF-8: what h5py writes for str, and reads back as str. */
static hid_t vlen_utf8(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

tpsc_status tpsc_h5_write_attr_str(tpsc_h5 *f, const char *obj, const char *name, const char *value) {
    hid_t t = vlen_utf8();
    const char *v = value ? value : "";
    tpsc_status st = write_attr(f, obj, name, t, t, H5Screate(H5S_SCALAR), &v);
    H5Tclose(t);
    return st;
}

tpsc_status tpsc_h5_write_attr_i64(tpsc_h5 *f, const char *obj, const char *name, int64_t value) {
    return write_attr(f, obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, H5Screate(H5S_SCALAR), &value);
}

tpsc_status tpsc_h5_write_attr_f64(tpsc_h5 *f, const char *obj, const char *name, double value) {
    return write_attr(f, obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, H5Screate(H5S_SCALAR), &value);
}

static hid_t vector_space(int n) {
    hsize_t dim = (hsize_t)(n > 0 ? n : 0);
    return H5Screate_simple(1, &dim, NULL);
}

tpsc_status tpsc_h5_write_attr_i32s(tpsc_h5 *f, const char *obj, const char *name, const int32_t *v, int n) {
    return write_attr(f, obj, name, H5T_STD_I32LE, H5T_NATIVE_INT32, vector_space(n), v);
}

tpsc_status tpsc_h5_write_attr_f32s(tpsc_h5 *f, const char *obj, const char *name, const float *v, int n) {
    return write_attr(f, obj, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, vector_space(n), v);
}

tpsc_status tpsc_h5_write_attr_strs(tpsc_h5 *f, const char *obj, const char *name, const char *const *v, int n) {
    hid_t t = vlen_utf8();
    tpsc_status st = write_attr(f, obj, name, t, t, vector_space(n), v);
    H5Tclose(t);
    return st;
}

static tpsc_status open_attr(const tpsc_h5 *f, const char *obj, const char *name, hid_t *a, hid_t *space,
                             hssize_t *npoints) {
    if (!tpsc_h5_attr_exists(f, obj, name))
        return tpsc_fail(TPSC_ERR_MISSING, "%s: attribute %s of %s is missing", f->name, name, obj);
    *a = H5Aopen_by_name(f->id, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    *space = *a >= 0 ? H5Aget_space(*a) : H5I_INVALID_HID;
    if (*space < 0 || H5Sget_simple_extent_ndims(*space) > 1) {
        if (*space >= 0) H5Sclose(*space);
        if (*a >= 0) H5Aclose(*a);
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s is unreadable or not a scalar/vector", f->name,
                         name, obj);
    }
    /* A null dataspace (h5py.Empty) holds no values. */
    *npoints = H5Sget_simple_extent_type(*space) == H5S_NULL ? 0 : H5Sget_simple_extent_npoints(*space);
    return TPSC_OK;
}

static void close_attr(hid_t a, hid_t space) {
    H5Sclose(space);
    H5Aclose(a);
}

/* Reads every element of a string attribute, fixed or variable length, into new strings. */
static tpsc_status read_strings(const tpsc_h5 *f, const char *obj, const char *name, char ***out, int *n_out) {
    hid_t a, space;
    hssize_t np;
    *out = NULL;
    *n_out = 0;
    TPSC_TRY(open_attr(f, obj, name, &a, &space, &np));
    tpsc_status st = TPSC_OK;
    hid_t ftype = H5Aget_type(a), mtype = H5I_INVALID_HID;
    char **strs = NULL, *raw = NULL;
    int n = (int)np;
    if (ftype < 0 || H5Tget_class(ftype) != H5T_STRING) {
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s is not a string", f->name, name, obj);
        goto done;
    }
    strs = tpsc_calloc((size_t)(n ? n : 1), sizeof *strs, "string attribute");
    if (!strs) { st = TPSC_ERR_NOMEM; goto done; }
    if (n == 0) goto done;
    mtype = H5Tcopy(ftype);
    if (H5Tis_variable_str(ftype) > 0) {
        char **vl = tpsc_calloc((size_t)n, sizeof *vl, "string attribute");
        if (!vl) { st = TPSC_ERR_NOMEM; goto done; }
        if (H5Aread(a, mtype, vl) < 0) {
            tpsc_free(vl);
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read attribute %s of %s", f->name, name, obj);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            if (st == TPSC_OK && !(strs[i] = tpsc_strdup(vl[i] ? vl[i] : ""))) st = TPSC_ERR_NOMEM;
            H5free_memory(vl[i]);
        }
        tpsc_free(vl);
    } else {
        size_t w = H5Tget_size(ftype);
        raw = tpsc_malloc((size_t)n * w + 1, "string attribute");
        if (!raw) { st = TPSC_ERR_NOMEM; goto done; }
        if (H5Aread(a, mtype, raw) < 0) {
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read attribute %s of %s", f->name, name, obj);
            goto done;
        }
        for (int i = 0; i < n; i++) {
            /* Fixed-length strings are NUL- or space-padded to the width. */
            size_t len = strnlen(raw + (size_t)i * w, w);
            if (H5Tget_strpad(ftype) == H5T_STR_SPACEPAD)
                while (len > 0 && raw[(size_t)i * w + len - 1] == ' ') len--;
            if (!(strs[i] = tpsc_malloc(len + 1, "string attribute"))) { st = TPSC_ERR_NOMEM; goto done; }
            memcpy(strs[i], raw + (size_t)i * w, len);
            strs[i][len] = '\0';
        }
    }
done:
    tpsc_free(raw);
    if (mtype >= 0) H5Tclose(mtype);
    if (ftype >= 0) H5Tclose(ftype);
    close_attr(a, space);
    if (st != TPSC_OK) {
        tpsc_h5_free_names(strs, strs ? n : 0);
        return st;
    }
    *out = strs;
    *n_out = n;
    return TPSC_OK;
}

tpsc_status tpsc_h5_read_attr_strs(const tpsc_h5 *f, const char *obj, const char *name, char ***v, int *n) {
    return read_strings(f, obj, name, v, n);
}

tpsc_status tpsc_h5_read_attr_str(const tpsc_h5 *f, const char *obj, const char *name, char **value) {
    char **strs;
    int n;
    *value = NULL;
    TPSC_TRY(read_strings(f, obj, name, &strs, &n));
    if (n != 1) {
        tpsc_h5_free_names(strs, n);
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s holds %d strings, expected one", f->name, name,
                         obj, n);
    }
    *value = strs[0];
    tpsc_free(strs);
    return TPSC_OK;
}

tpsc_status tpsc_h5_read_attr_strbuf(const tpsc_h5 *f, const char *obj, const char *name, char *buf, size_t len) {
    char *s;
    TPSC_TRY(tpsc_h5_read_attr_str(f, obj, name, &s));
    size_t n = strlen(s);
    tpsc_status st = TPSC_OK;
    if (n >= len)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s is %zu characters long, at most %zu allowed", f->name,
                       name, obj, n, len - 1);
    else
        memcpy(buf, s, n + 1);
    tpsc_free(s);
    return st;
}

/* Reads a numeric attribute of up to `cap` elements, converted to memtype. */
static tpsc_status read_numbers(const tpsc_h5 *f, const char *obj, const char *name, hid_t memtype, bool int_only,
                                void *out, int cap, int *n) {
    hid_t a, space;
    hssize_t np;
    TPSC_TRY(open_attr(f, obj, name, &a, &space, &np));
    tpsc_status st = TPSC_OK;
    hid_t ftype = H5Aget_type(a);
    H5T_class_t cls = ftype >= 0 ? H5Tget_class(ftype) : H5T_NO_CLASS;
    if (cls != H5T_INTEGER && (int_only || cls != H5T_FLOAT))
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s is not %s", f->name, name, obj,
                       int_only ? "an integer" : "a number");
    else if (np > cap)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s has %lld values, at most %d allowed", f->name, name,
                       obj, (long long)np, cap);
    else if (np > 0 && H5Aread(a, memtype, out) < 0)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: cannot read attribute %s of %s", f->name, name, obj);
    if (ftype >= 0) H5Tclose(ftype);
    close_attr(a, space);
    if (st == TPSC_OK) *n = (int)np;
    return st;
}

tpsc_status tpsc_h5_read_attr_i64(const tpsc_h5 *f, const char *obj, const char *name, int64_t *value) {
    int n = 0;
    TPSC_TRY(read_numbers(f, obj, name, H5T_NATIVE_INT64, true, value, 1, &n));
    if (n != 1) return tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s is empty", f->name, name, obj);
    return TPSC_OK;
}

tpsc_status tpsc_h5_read_attr_f64(const tpsc_h5 *f, const char *obj, const char *name, double *value) {
    int n = 0;
    TPSC_TRY(read_numbers(f, obj, name, H5T_NATIVE_DOUBLE, false, value, 1, &n));
    if (n != 1) return tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s of %s is empty", f->name, name, obj);
    return TPSC_OK;
}

tpsc_status tpsc_h5_read_attr_i32s(const tpsc_h5 *f, const char *obj, const char *name, int32_t *v, int cap, int *n) {
    return read_numbers(f, obj, name, H5T_NATIVE_INT32, true, v, cap, n);
}

tpsc_status tpsc_h5_read_attr_f32s(const tpsc_h5 *f, const char *obj, const char *name, float *v, int cap, int *n) {
    return read_numbers(f, obj, name, H5T_NATIVE_FLOAT, false, v, cap, n);
}
