#include "autograd/ag.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "autograd/gemm.h"
#include "src/util/alloc.h"

ag_ctx *ag_ctx_create(size_t arena_bytes) {
    ag_ctx *ctx = tpsc_calloc(1, sizeof *ctx, "autograd context");
    if (!ctx) return NULL;
    if (ag_arena_init(&ctx->act, arena_bytes, "activation arena") != 0 ||
        ag_arena_init(&ctx->grads, 0, "gradient arena") != 0) {
        ag_ctx_free(ctx);
        return NULL;
    }
    ctx->grad_enabled = true;
    ctx->training = true;
    return ctx;
}

void ag_ctx_free(ag_ctx *ctx) {
    if (!ctx) return;
    ag_arena_free(&ctx->act);
    ag_arena_free(&ctx->grads);
    ag_gemm_free_params(ctx);
    tpsc_free(ctx->buckets);
    tpsc_free(ctx->tape);
    tpsc_free(ctx);
}

void ag_ctx_reset(ag_ctx *ctx) {
    ag_arena_reset(&ctx->act);
    ag_arena_reset(&ctx->grads);
    for (int i = 0; i < ctx->n_buckets; i++) ctx->buckets[i].free_list = NULL;
    ctx->n_nodes = 0;
    ctx->status = TPSC_OK;
    ctx->step++;
}

tpsc_status ag_ctx_status(const ag_ctx *ctx) { return ctx->status; }
void ag_set_grad_enabled(ag_ctx *ctx, bool enabled) { ctx->grad_enabled = enabled; }

ag_tensor *ag_error(ag_ctx *ctx, tpsc_status s, const char *fmt, ...) {
    if (ctx->status == TPSC_OK) {
        char msg[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        ctx->status = tpsc_fail(s, "%s", msg);
    }
    return NULL;
}

bool ag_ok(ag_ctx *ctx, int n, ...) {
    if (ctx->status != TPSC_OK) return false;
    va_list ap;
    va_start(ap, n);
    bool ok = true, fp32 = true;
    for (int i = 0; i < n; i++) {
        const ag_tensor *t = va_arg(ap, ag_tensor *);
        if (!t) ok = false;
        else if (!t->data) fp32 = false;
    }
    va_end(ap);
    if (!ok) ag_error(ctx, TPSC_ERR_INTERNAL, "an op received a NULL tensor");
    else if (!fp32) ag_error(ctx, TPSC_ERR_INTERNAL, "an op that needs FP32 values received a tensor kept as bf16 only");
    return ok && fp32;
}

void *ag_alloc(ag_ctx *ctx, size_t bytes) {
    void *p = ag_arena_alloc(&ctx->act, bytes);
    if (!p && ctx->status == TPSC_OK) ctx->status = TPSC_ERR_NOMEM;
    return p;
}

/* A leaf tensor whose values are floats (data) or, with bf16, bf16 only */
static ag_tensor *new_tensor(ag_ctx *ctx, int ndim, const size_t *shape, bool bf16) {
    if (ndim < 0 || ndim > AG_MAX_DIMS) return ag_error(ctx, TPSC_ERR_SHAPE, "tensor with %d dims (max %d)", ndim, AG_MAX_DIMS);
    ag_tensor *t = ag_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    ag_set_contiguous(t, ndim, shape);
    t->node = -1;
    if (bf16) t->bf16 = ag_alloc(ctx, ag_numel(t) * sizeof(uint16_t));
    else t->data = ag_alloc(ctx, ag_numel(t) * sizeof(float));
    return t->data || t->bf16 ? t : NULL;
}

ag_tensor *ag_new(ag_ctx *ctx, int ndim, const size_t *shape) { return new_tensor(ctx, ndim, shape, false); }
ag_tensor *ag_new_bf16(ag_ctx *ctx, int ndim, const size_t *shape) { return new_tensor(ctx, ndim, shape, true); }

ag_tensor *ag_new1(ag_ctx *ctx, size_t a) { return ag_new(ctx, 1, (size_t[]){a}); }
ag_tensor *ag_new2(ag_ctx *ctx, size_t a, size_t b) { return ag_new(ctx, 2, (size_t[]){a, b}); }
ag_tensor *ag_new3(ag_ctx *ctx, size_t a, size_t b, size_t c) { return ag_new(ctx, 3, (size_t[]){a, b, c}); }
ag_tensor *ag_new4(ag_ctx *ctx, size_t a, size_t b, size_t c, size_t d) {
    return ag_new(ctx, 4, (size_t[]){a, b, c, d});
}

ag_tensor *ag_zeros(ag_ctx *ctx, int ndim, const size_t *shape) {
    ag_tensor *t = ag_new(ctx, ndim, shape);
    if (t) memset(t->data, 0, ag_numel(t) * sizeof(float));
    return t;
}

ag_tensor *ag_wrap(ag_ctx *ctx, float *data, float *grad, int ndim, const size_t *shape, bool requires_grad) {
    ag_tensor *t = ag_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    ag_set_contiguous(t, ndim, shape);
    t->data = data;
    t->grad = grad;
    t->requires_grad = requires_grad;
    t->node = -1;
    return t;
}

ag_tensor *ag_view(ag_ctx *ctx, ag_tensor *x, int ndim, const size_t *shape) {
    if (!ag_ok(ctx, 1, x)) return NULL;
    size_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    if (n != ag_numel(x) || !ag_is_contiguous(x)) {
        char b[64];
        return ag_error(ctx, TPSC_ERR_SHAPE, "view: cannot view %s as %d dims of %zu elements", ag_shape_str(x, b, sizeof b), ndim, n);
    }
    ag_tensor *t = ag_alloc(ctx, sizeof *t);
    if (!t) return NULL;
    memset(t, 0, sizeof *t);
    ag_set_contiguous(t, ndim, shape);
    t->data = x->data;
    t->node = -1;
    return t;
}

bool ag_needs_grad(ag_ctx *ctx, int n, ag_tensor **in) {
    if (!ctx->grad_enabled) return false;
    for (int i = 0; i < n; i++)
        if (in[i] && in[i]->requires_grad) return true;
    return false;
}

ag_node *ag_record(ag_ctx *ctx, const char *name, ag_backward_fn backward, ag_tensor *out, int n_in, ag_tensor **in) {
    if (!out || !ag_needs_grad(ctx, n_in, in)) return NULL;
    if (n_in > AG_MAX_INPUTS) {
        ag_error(ctx, TPSC_ERR_INTERNAL, "%s: %d inputs (max %d)", name, n_in, AG_MAX_INPUTS);
        return NULL;
    }
    if (ctx->n_nodes == ctx->cap_nodes) {
        /* Grows only while the first steps discover the graph's size. */
        int cap = ctx->cap_nodes ? ctx->cap_nodes * 2 : 1024;
        ag_node *t = tpsc_realloc(ctx->tape, (size_t)cap * sizeof *t, "autograd tape");
        if (!t) {
            ag_error(ctx, TPSC_ERR_NOMEM, "%s", tpsc_last_error());
            return NULL;
        }
        ctx->tape = t;
        ctx->cap_nodes = cap;
    }
    ag_node *node = &ctx->tape[ctx->n_nodes];
    memset(node, 0, sizeof *node);
    node->name = name;
    node->backward = backward;
    node->out = out;
    node->n_in = n_in;
    for (int i = 0; i < n_in; i++) node->in[i] = in[i];
    out->requires_grad = true;
    out->node = ctx->n_nodes++;
    return node;
}

/* ---- gradient pool ----------------------------------------------------------------------- */

static ag_grad_bucket *bucket_for(ag_ctx *ctx, size_t numel) {
    for (int i = 0; i < ctx->n_buckets; i++)
        if (ctx->buckets[i].numel == numel) return &ctx->buckets[i];
    if (ctx->n_buckets == ctx->cap_buckets) {
        int cap = ctx->cap_buckets ? ctx->cap_buckets * 2 : 32;
        ag_grad_bucket *b = tpsc_realloc(ctx->buckets, (size_t)cap * sizeof *b, "gradient pool");
        if (!b) return NULL;
        ctx->buckets = b;
        ctx->cap_buckets = cap;
    }
    ag_grad_bucket *b = &ctx->buckets[ctx->n_buckets++];
    b->numel = numel;
    b->free_list = NULL;
    return b;
}

static float *pool_take(ag_ctx *ctx, size_t numel) {
    ag_grad_bucket *b = bucket_for(ctx, numel);
    if (!b) {
        ag_error(ctx, TPSC_ERR_NOMEM, "%s", tpsc_last_error());
        return NULL;
    }
    if (b->free_list) {
        float *g = b->free_list;
        b->free_list = *(void **)b->free_list;
        return g;
    }
    size_t bytes = numel * sizeof(float);
    if (bytes < sizeof(void *)) bytes = sizeof(void *);
    float *g = ag_arena_alloc(&ctx->grads, bytes);
    if (!g) ag_error(ctx, TPSC_ERR_NOMEM, "%s", tpsc_last_error());
    return g;
}

static void pool_give(ag_ctx *ctx, float *p, size_t numel) {
    ag_grad_bucket *b = bucket_for(ctx, numel);
    if (!b) return; /* leak into the arena until reset: harmless */
    *(void **)p = b->free_list;
    b->free_list = p;
}

float *ag_grad_write(ag_ctx *ctx, ag_tensor *t, bool *fresh) {
    *fresh = false;
    if (!t || !t->requires_grad) return NULL;
    if (t->grad) return t->grad;
    float *g = pool_take(ctx, ag_numel(t));
    if (!g) return NULL;
    t->grad = g;
    *fresh = true;
    return g;
}

float *ag_grad(ag_ctx *ctx, ag_tensor *t) {
    bool fresh;
    float *g = ag_grad_write(ctx, t, &fresh);
    if (g && fresh) memset(g, 0, ag_numel(t) * sizeof(float));
    return g;
}

bool ag_grad_pass(ag_ctx *ctx, ag_node *n, ag_tensor *t) {
    (void)ctx;
    ag_tensor *out = n->out;
    if (!t || !t->requires_grad || t->grad || !out->grad || out->retain_grad || ag_numel(t) != ag_numel(out))
        return false;
    t->grad = out->grad;
    out->grad = NULL;
    return true;
}

float *ag_scratch_get(ag_ctx *ctx, size_t numel) { return pool_take(ctx, numel ? numel : 1); }

void ag_scratch_put(ag_ctx *ctx, float *p, size_t numel) {
    if (p) pool_give(ctx, p, numel ? numel : 1);
}

uint16_t *ag_grad_bf16_take(ag_ctx *ctx, ag_tensor *t) {
    if (!t || !t->requires_grad) return NULL;
    if (t->grad || t->grad_bf16 || !t->bf16) {
        ag_error(ctx, TPSC_ERR_INTERNAL, "a bf16 gradient is only for a tensor kept as bf16 only, written once");
        return NULL;
    }
    const size_t words = (ag_numel(t) + 1) / 2; /* two bf16 values per float of the pool */
    t->grad_bf16 = (uint16_t *)(void *)pool_take(ctx, words ? words : 1);
    return t->grad_bf16;
}

double *ag_grad_bf16_sums_new(ag_ctx *ctx, ag_tensor *t, int parts) {
    const size_t n = (size_t)parts * ag_cols(t);
    double *p = ag_alloc(ctx, n * sizeof(double));
    if (!p) return NULL;
    memset(p, 0, n * sizeof(double));
    t->grad_bf16_sums = p;
    return p;
}

void ag_grad_bf16_sums_fold(ag_tensor *t, int parts) {
    double *p = t->grad_bf16_sums;
    const size_t C = ag_cols(t);
    if (!p) return;
    for (int k = 1; k < parts; k++)
        for (size_t c = 0; c < C; c++) p[c] += p[(size_t)k * C + c];
}

static void release_grad(ag_ctx *ctx, ag_tensor *t) {
    if (t->node < 0 || t->retain_grad) return;
    t->grad_bf16_sums = NULL;
    if (t->grad_bf16) {
        const size_t words = (ag_numel(t) + 1) / 2;
        pool_give(ctx, (float *)(void *)t->grad_bf16, words ? words : 1);
        t->grad_bf16 = NULL;
    }
    if (!t->grad) return;
    pool_give(ctx, t->grad, ag_numel(t));
    t->grad = NULL;
}

tpsc_status ag_backward(ag_ctx *ctx, ag_tensor *loss) {
    if (loss && ag_numel(loss) != 1) {
        char b[64];
        return tpsc_fail(TPSC_ERR_SHAPE, "backward: loss must be a scalar, got %s", ag_shape_str(loss, b, sizeof b));
    }
    const float one = 1.0f;
    return ag_backward_from(ctx, loss, &one);
}

tpsc_status ag_backward_from(ag_ctx *ctx, ag_tensor *out, const float *seed) {
    if (ctx->status != TPSC_OK) return ctx->status;
    if (!out) return tpsc_fail(TPSC_ERR_INTERNAL, "backward: output is NULL");
    if (!out->requires_grad) return tpsc_fail(TPSC_ERR_ARG, "backward: the output does not depend on anything that requires grad");
    float *g = ag_grad(ctx, out);
    if (!g) return ctx->status;
    size_t numel = ag_numel(out);
    for (size_t i = 0; i < numel; i++) g[i] += seed[i];
    for (int i = out->node; i >= 0; i--) {
        ag_node *n = &ctx->tape[i];
        if (!n->out->grad && !n->out->grad_bf16) continue; /* nothing downstream used this output */
        n->backward(ctx, n);
        if (ctx->status != TPSC_OK) {
            tpsc_error_context("backward of %s: ", n->name);
            return ctx->status;
        }
        release_grad(ctx, n->out);
        if (ctx->after_node) ctx->after_node(ctx->after_node_arg, i);
    }
    return TPSC_OK;
}
