#include "autograd/params.h"

#include <stdio.h>
#include <string.h>

#include "src/util/alloc.h"

void ag_params_init(ag_params *p) { memset(p, 0, sizeof *p); }

void ag_params_free(ag_params *p) {
    tpsc_free(p->items);
    tpsc_free(p->data);
    tpsc_free(p->grad);
    memset(p, 0, sizeof *p);
}

int ag_params_add(ag_params *p, const char *name, int ndim, const size_t *shape) {
    if (p->finalised) {
        tpsc_fail(TPSC_ERR_INTERNAL, "parameter %s declared after the store was finalised", name);
        return -1;
    }
    if (strlen(name) >= AG_PARAM_NAME_MAX || ndim < 1 || ndim > AG_MAX_DIMS) {
        tpsc_fail(TPSC_ERR_ARG, "parameter %s: bad name length or %d dims", name, ndim);
        return -1;
    }
    if (ag_params_find(p, name) >= 0) {
        tpsc_fail(TPSC_ERR_INTERNAL, "parameter %s declared twice", name);
        return -1;
    }
    if (p->count == p->cap) {
        int cap = p->cap ? p->cap * 2 : 64;
        ag_param *items = tpsc_realloc(p->items, (size_t)cap * sizeof *items, "parameter list");
        if (!items) return -1;
        p->items = items;
        p->cap = cap;
    }
    ag_param *it = &p->items[p->count];
    memset(it, 0, sizeof *it);
    snprintf(it->name, sizeof it->name, "%s", name);
    ag_set_contiguous(&it->t, ndim, shape);
    it->t.node = -1;
    it->t.requires_grad = true;
    it->numel = ag_numel(&it->t);
    /* Align every parameter to 16 floats so vector loads never straddle two tensors. */
    it->offset = (p->total + 15) & ~(size_t)15;
    p->total = it->offset + it->numel;
    return p->count++;
}

tpsc_status ag_params_finalise(ag_params *p) {
    size_t bytes = (p->total ? p->total : 1) * sizeof(float);
    p->data = tpsc_aligned_alloc(bytes, "parameters");
    p->grad = tpsc_aligned_alloc(bytes, "parameter gradients");
    if (!p->data || !p->grad) return TPSC_ERR_NOMEM;
    memset(p->data, 0, bytes);
    memset(p->grad, 0, bytes);
    for (int i = 0; i < p->count; i++) {
        p->items[i].t.data = p->data + p->items[i].offset;
        p->items[i].t.grad = p->grad + p->items[i].offset;
    }
    p->finalised = true;
    return TPSC_OK;
}

int ag_params_find(const ag_params *p, const char *name) {
    for (int i = 0; i < p->count; i++)
        if (strcmp(p->items[i].name, name) == 0) return i;
    return -1;
}

ag_tensor *ag_param_tensor(ag_params *p, int index) { return &p->items[index].t; }

void ag_params_zero_grad(ag_params *p) {
    if (p->grad) memset(p->grad, 0, p->total * sizeof(float));
}

void ag_param_set_frozen(ag_params *p, int index, bool frozen) {
    p->items[index].frozen = frozen;
    p->items[index].t.requires_grad = !frozen;
}
