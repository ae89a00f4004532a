/* Reading the PyTorch reference fixtures (tests/fixtures/NAME.h5, made by tests/reference/).
 * Test-only helpers: any failure is a Criterion assertion naming the file and dataset. */
#ifndef TPSC_TESTS_FIXTURE_H
#define TPSC_TESTS_FIXTURE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/params.h"
#include "src/model/vit.h"
#include "src/util/rng.h"

typedef struct fixture {
    hid_t file;
    char path[512];
} fixture;

/* Opens tests/fixtures/<name>; asserts it exists. */
void fx_open(fixture *fx, const char *name);
void fx_close(fixture *fx);
int fx_exists(const fixture *fx, const char *dataset);
/* Reads a dataset as float32 (malloc'd); *n receives the element count; shape/ndim optional. */
float *fx_read_f32(const fixture *fx, const char *dataset, size_t *n, size_t *shape, int *ndim);
int64_t *fx_read_i64(const fixture *fx, const char *dataset, size_t *n);
long fx_attr_int(const fixture *fx, const char *name);
double fx_attr_double(const fixture *fx, const char *name);
/* An integer array attribute of object obj ("/" or a group) into out (at most cap values);
 * returns its length. */
size_t fx_attr_ints(const fixture *fx, const char *obj, const char *name, long *out, size_t cap);
/* A double attribute of object obj ("/" or a group). */
double fx_attr_double_of(const fixture *fx, const char *obj, const char *name);
/* Loads every parameter of p from group (e.g. "/model"), asserting names and shapes match. */
void fx_load_params(const fixture *fx, const char *group, ag_params *p);
/* The model config of a fixture's root attributes (img_size, patch_size, ... mlp_ratio). */
void fx_vit_config(const fixture *fx, vit_config *c);
/* n standard-normal floats from tpsc_rng seeded with seed (malloc'd; the caller frees). */
float *fx_random_normal(size_t n, uint64_t seed);
/* A fresh params block holding only the score predictor of `stage` at width C, every value
 * 0.6 N(0,1) drawn from rng: O(1) weights, since the official init (std 0.02) makes every
 * output nearly constant and the checks weak. */
void fx_random_predictor(ag_params *params, tok_predictor *pred, int stage, size_t C, tpsc_rng *rng);
/* Compares got [n] with dataset: max |got - ref| <= rtol * max |ref| (a Criterion expectation,
 * so every differing dataset is reported; the element counts must agree). */
void fx_expect_close(const fixture *fx, const char *dataset, const float *got, size_t n, double rtol);
/* A scalar tensor against dataset[0]: |got - ref| <= rtol * |ref|. */
void fx_expect_scalar(const fixture *fx, const char *dataset, const ag_tensor *got, double rtol);
/* Every parameter's gradient against <group>/grad/<name> (group "" for the root) with
 * fx_expect_close; every parameter must have one in the fixture. */
void fx_expect_grads(const fixture *fx, const char *group, const ag_params *params, double rtol);
/* max |v| and max |a - b| over n elements, in double. */
double fx_max_abs(const float *v, size_t n);
double fx_max_diff(const float *a, const float *b, size_t n);
/* The official TPSModule's cosine similarity of two c-vectors, in double: a.b / ((|a| + 1e-6)(|b| + 1e-6)). */
double fx_cosine(const float *a, const float *b, int c);
/* max |a-b| / (atol + rtol*|b|) over n elements; also the worst index. */
double fx_max_ratio(const float *a, const float *b, size_t n, double atol, double rtol, size_t *worst);

#endif
