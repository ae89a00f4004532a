#include "autograd/tensor.h"

#include <stdio.h>

size_t ag_numel(const ag_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

bool ag_is_contiguous(const ag_tensor *t) {
    size_t expect = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        if (t->shape[i] != 1 && t->stride[i] != expect) return false;
        expect *= t->shape[i];
    }
    return true;
}

bool ag_same_shape(const ag_tensor *a, const ag_tensor *b) {
    if (a->ndim != b->ndim) return false;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return false;
    return true;
}

size_t ag_rows(const ag_tensor *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim - 1; i++) n *= t->shape[i];
    return n;
}

size_t ag_cols(const ag_tensor *t) { return t->ndim ? t->shape[t->ndim - 1] : 1; }

const char *ag_shape_str(const ag_tensor *t, char *buf, size_t len) {
    size_t used = 0;
    used += (size_t)snprintf(buf + used, len - used, "[");
    for (int i = 0; i < t->ndim && used < len; i++)
        used += (size_t)snprintf(buf + used, len - used, i ? ", %zu" : "%zu", t->shape[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

void ag_set_contiguous(ag_tensor *t, int ndim, const size_t *shape) {
    t->ndim = ndim;
    size_t s = 1;
    for (int i = ndim - 1; i >= 0; i--) {
        t->shape[i] = shape[i];
        t->stride[i] = s;
        s *= shape[i];
    }
    for (int i = ndim; i < AG_MAX_DIMS; i++) {
        t->shape[i] = 1;
        t->stride[i] = 1;
    }
}
