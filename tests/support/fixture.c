#include "support/fixture.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/util/rng.h"

void fx_open(fixture *fx, const char *name) {
    snprintf(fx->path, sizeof fx->path, "%s/%s", TPSC_FIXTURE_DIR, name);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    fx->file = H5Fopen(fx->path, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(fx->file >= 0, "cannot open fixture %s (regenerate with tests/reference/make_fixtures.py)", fx->path);
}

void fx_close(fixture *fx) {
    if (fx->file >= 0) H5Fclose(fx->file);
    fx->file = -1;
}

int fx_exists(const fixture *fx, const char *dataset) {
    return H5Lexists(fx->file, dataset, H5P_DEFAULT) > 0;
}

static hid_t open_dataset(const fixture *fx, const char *dataset, size_t *n, size_t *shape, int *ndim) {
    cr_assert(H5Lexists(fx->file, dataset, H5P_DEFAULT) > 0 || dataset[0] != '/', "%s: no dataset %s", fx->path, dataset);
    hid_t d = H5Dopen2(fx->file, dataset, H5P_DEFAULT);
    cr_assert(d >= 0, "%s: no dataset %s", fx->path, dataset);
    hid_t sp = H5Dget_space(d);
    int nd = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[8] = {0};
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5Sclose(sp);
    size_t count = 1;
    for (int i = 0; i < nd; i++) {
        count *= dims[i];
        if (shape) shape[i] = dims[i];
    }
    if (ndim) *ndim = nd;
    if (n) *n = count;
    return d;
}

/* The whole dataset converted to the memory type `type` of `size`-byte elements (malloc'd). */
static void *read_all(const fixture *fx, const char *dataset, hid_t type, size_t size, size_t *n, size_t *shape,
                      int *ndim) {
    size_t count;
    hid_t d = open_dataset(fx, dataset, &count, shape, ndim);
    void *buf = malloc((count ? count : 1) * size);
    cr_assert_not_null(buf);
    cr_assert(H5Dread(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, "%s: reading %s", fx->path, dataset);
    H5Dclose(d);
    if (n) *n = count;
    return buf;
}

float *fx_read_f32(const fixture *fx, const char *dataset, size_t *n, size_t *shape, int *ndim) {
    return read_all(fx, dataset, H5T_NATIVE_FLOAT, sizeof(float), n, shape, ndim);
}

int64_t *fx_read_i64(const fixture *fx, const char *dataset, size_t *n) {
    return read_all(fx, dataset, H5T_NATIVE_INT64, sizeof(int64_t), n, NULL, NULL);
}

static hid_t open_attr(const fixture *fx, const char *name) {
    hid_t a = H5Aopen(fx->file, name, H5P_DEFAULT);
    cr_assert(a >= 0, "%s: no root attribute %s", fx->path, name);
    return a;
}

long fx_attr_int(const fixture *fx, const char *name) {
    hid_t a = open_attr(fx, name);
    long long v = 0;
    H5Aread(a, H5T_NATIVE_LLONG, &v);
    H5Aclose(a);
    return (long)v;
}

double fx_attr_double(const fixture *fx, const char *name) {
    hid_t a = open_attr(fx, name);
    double v = 0;
    H5Aread(a, H5T_NATIVE_DOUBLE, &v);
    H5Aclose(a);
    return v;
}

static hid_t open_attr_of(const fixture *fx, const char *obj, const char *name) {
    cr_assert(H5Aexists_by_name(fx->file, obj, name, H5P_DEFAULT) > 0, "%s: no attribute %s on %s", fx->path, name, obj);
    hid_t a = H5Aopen_by_name(fx->file, obj, name, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0, "%s: cannot open attribute %s on %s", fx->path, name, obj);
    return a;
}

size_t fx_attr_ints(const fixture *fx, const char *obj, const char *name, long *out, size_t cap) {
    hid_t a = open_attr_of(fx, obj, name);
    hid_t sp = H5Aget_space(a);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    cr_assert(n > 0 && (size_t)n <= cap, "%s: attribute %s of %s has %lld values (at most %zu)", fx->path, name, obj,
              (long long)n, cap);
    long long *v = malloc((size_t)n * sizeof *v);
    cr_assert_not_null(v);
    cr_assert(H5Aread(a, H5T_NATIVE_LLONG, v) >= 0, "%s: reading attribute %s", fx->path, name);
    for (hssize_t i = 0; i < n; i++) out[i] = (long)v[i];
    free(v);
    H5Sclose(sp);
    H5Aclose(a);
    return (size_t)n;
}

double fx_attr_double_of(const fixture *fx, const char *obj, const char *name) {
    hid_t a = open_attr_of(fx, obj, name);
    double v = 0;
    cr_assert(H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0, "%s: reading attribute %s", fx->path, name);
    H5Aclose(a);
    return v;
}

void fx_expect_close(const fixture *fx, const char *dataset, const float *got, size_t n, double rtol) {
    size_t n_ref;
    float *ref = fx_read_f32(fx, dataset, &n_ref, NULL, NULL);
    cr_assert_eq(n_ref, n, "%s: %zu values in the fixture, %zu computed", dataset, n_ref, n);
    double scale = fx_max_abs(ref, n), d = fx_max_diff(got, ref, n);
    cr_expect(d <= rtol * scale, "%s differs by %g (scale %g, tolerance %g)", dataset, d, scale, rtol * scale);
    free(ref);
}

void fx_expect_scalar(const fixture *fx, const char *dataset, const ag_tensor *got, double rtol) {
    cr_assert_not_null(got, "%s: not computed (%s)", dataset, tpsc_last_error());
    float *ref = fx_read_f32(fx, dataset, NULL, NULL, NULL);
    cr_expect(fabs((double)got->data[0] - ref[0]) <= rtol * fabs(ref[0]), "%s: %.8g, torch %.8g", dataset,
              (double)got->data[0], (double)ref[0]);
    free(ref);
}

void fx_expect_grads(const fixture *fx, const char *group, const ag_params *params, double rtol) {
    char path[256];
    for (int i = 0; i < params->count; i++) {
        const ag_param *p = &params->items[i];
        snprintf(path, sizeof path, "%s/grad/%s", group, p->name);
        cr_assert(fx_exists(fx, path), "%s: the reference run has no gradient for %s", fx->path, p->name);
        fx_expect_close(fx, path, p->t.grad, p->numel, rtol);
    }
}

void fx_load_params(const fixture *fx, const char *group, ag_params *p) {
    char path[256];
    for (int i = 0; i < p->count; i++) {
        ag_param *it = &p->items[i];
        snprintf(path, sizeof path, "%s/%s", group, it->name);
        size_t n, shape[8];
        int nd;
        float *v = fx_read_f32(fx, path, &n, shape, &nd);
        cr_assert_eq(nd, it->t.ndim, "%s: %s has %d dims, model %d", fx->path, path, nd, it->t.ndim);
        for (int d = 0; d < nd; d++)
            cr_assert_eq(shape[d], it->t.shape[d], "%s: %s dim %d is %zu, model %zu", fx->path, path, d, shape[d], it->t.shape[d]);
        for (size_t k = 0; k < n; k++) it->t.data[k] = v[k];
        free(v);
    }
}

double fx_max_ratio(const float *a, const float *b, size_t n, double atol, double rtol, size_t *worst) {
    double m = 0;
    size_t w = 0;
    for (size_t i = 0; i < n; i++) {
        double r = fabs((double)a[i] - b[i]) / (atol + rtol * fabs((double)b[i]));
        if (!(r <= m)) {
            m = isnan(r) ? INFINITY : r;
            w = i;
        }
    }
    if (worst) *worst = w;
    return m;
}

void fx_vit_config(const fixture *fx, vit_config *c) {
    *c = (vit_config){0};
    snprintf(c->arch, sizeof c->arch, "custom");
    c->img_size = (size_t)fx_attr_int(fx, "img_size");
    c->patch_size = (size_t)fx_attr_int(fx, "patch_size");
    c->in_chans = (size_t)fx_attr_int(fx, "in_chans");
    c->embed_dim = (size_t)fx_attr_int(fx, "embed_dim");
    c->depth = (size_t)fx_attr_int(fx, "depth");
    c->num_heads = (size_t)fx_attr_int(fx, "num_heads");
    c->num_classes = (size_t)fx_attr_int(fx, "num_classes");
    c->mlp_ratio = (float)fx_attr_double(fx, "mlp_ratio");
    c->ln_eps = 1e-6f;
}

double fx_max_abs(const float *v, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(v[i]));
    return m;
}

double fx_max_diff(const float *a, const float *b, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

float *fx_random_normal(size_t n, uint64_t seed) {
    float *x = malloc(n * sizeof *x);
    cr_assert_not_null(x);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    for (size_t i = 0; i < n; i++) x[i] = tpsc_rng_normal(&rng);
    return x;
}

double fx_cosine(const float *a, const float *b, int c) {
    double na = 0, nb = 0, d = 0;
    for (int i = 0; i < c; i++) na += (double)a[i] * a[i], nb += (double)b[i] * b[i], d += (double)a[i] * b[i];
    return d / ((sqrt(na) + 1e-6) * (sqrt(nb) + 1e-6));
}

void fx_random_predictor(ag_params *params, tok_predictor *pred, int stage, size_t C, tpsc_rng *rng) {
    ag_params_init(params);
    cr_assert_eq(tok_predictor_declare(pred, params, stage, C), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(ag_params_finalise(params), TPSC_OK, "%s", tpsc_last_error());
    for (size_t i = 0; i < params->total; i++) params->data[i] = 0.6f * tpsc_rng_normal(rng);
}
