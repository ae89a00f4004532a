/* The autograd context: arenas, the tape, and the error state of one step.
 *
 * A step looks like
 *     ag_ctx_reset(ctx);                          // forget last step's activations
 *     ag_tensor *loss = model_forward(ctx, ...);  // ops record nodes on the tape
 *     if (!loss) return ag_ctx_status(ctx);       // an op failed: message in tpsc_last_error()
 *     ag_backward(ctx, loss);                     // nodes run in reverse, grads accumulate
 *
 * Ops are functions `ag_tensor *ag_xxx(ag_ctx *, inputs..., params)` (see ops.h). Each one
 * checks shapes, allocates its output in the activation arena, computes the forward, and, when
 * gradients are wanted, records a node holding its backward function. An op that receives a
 * NULL input returns NULL, so a forward pass can be written straight through and checked once
 * at the end; the first failure is kept in the context.
 *
 * Gradients of activations come from a pool of recycled buffers: when a node's backward has
 * run, its output gradient is dead and goes back to the pool, so backward needs about as much
 * gradient memory as the widest layer, not the whole network. Parameter gradients are leaves
 * pointing into ag_params' single gradient block and accumulate across backward calls until
 * zeroed. */
#ifndef TPSC_AUTOGRAD_AG_H
#define TPSC_AUTOGRAD_AG_H

#include "autograd/arena.h"
#include "autograd/tensor.h"
#include "src/util/status.h"

#define AG_MAX_INPUTS 6

typedef struct ag_ctx ag_ctx;
typedef struct ag_node ag_node;

/* Adds dL/d(inputs) into the inputs' grads, given dL/d(out) in node->out->grad. */
typedef void (*ag_backward_fn)(ag_ctx *ctx, ag_node *node);

struct ag_node {
    const char *name;                  /* op name, for debugging and error messages */
    ag_backward_fn backward;
    ag_tensor *out;
    ag_tensor *in[AG_MAX_INPUTS];
    int n_in;
    void *saved;                       /* op-specific state, in the activation arena */
    float f[4];                        /* small scalar parameters */
    int64_t i[4];
};

/* The number format of the GEMM kernels (autograd/gemm.h): a property of the ops' kernels,
 * set per context; every other op, the parameters and their gradients stay FP32. */
typedef enum ag_precision { AG_FP32 = 0, AG_BF16 = 1 } ag_precision;

typedef struct ag_bf16_params ag_bf16_params;

typedef struct ag_grad_bucket {
    size_t numel;
    void *free_list;
} ag_grad_bucket;

struct ag_ctx {
    ag_arena act;          /* activations, tensor structs, saved state */
    ag_arena grads;        /* backing store of the gradient pool */
    ag_grad_bucket *buckets;
    int n_buckets, cap_buckets;
    ag_node *tape;
    int n_nodes, cap_nodes;
    bool grad_enabled;     /* false: inference, ops record nothing */
    bool training;         /* model-level flag for ops whose behaviour differs */
    tpsc_status status;    /* first failure since the last reset */
    ag_precision precision;      /* GEMM kernels (ag_set_precision) */
    ag_bf16_params *bf16_params; /* BF16: the step's bf16 copies of parameters (gemm.c) */
    uint64_t step;               /* counts resets: a cached copy older than the step is stale */
    /* Called after each node's backward with the node's index (nodes run from the last to 0),
     * so a caller can act on gradients that are final, e.g. start reducing them over MPI. */
    void (*after_node)(void *arg, int node);
    void *after_node_arg;
};

ag_ctx *ag_ctx_create(size_t arena_bytes);
void ag_ctx_free(ag_ctx *ctx);
/* Starts a new step: drops all activations, grads and tape nodes (params are untouched). */
void ag_ctx_reset(ag_ctx *ctx);
tpsc_status ag_ctx_status(const ag_ctx *ctx);
void ag_set_grad_enabled(ag_ctx *ctx, bool enabled);

/* Runs the tape backward from a scalar `loss` (seeded with dL/dL = 1). */
tpsc_status ag_backward(ag_ctx *ctx, ag_tensor *loss);
/* Runs the tape backward from any tensor `out`, seeded with dL/d(out) = seed (numel(out)
 * floats): a vector-Jacobian product, used by the gradient checker. */
tpsc_status ag_backward_from(ag_ctx *ctx, ag_tensor *out, const float *seed);

/* ---- for op implementations ------------------------------------------------------------ */

/* Records a failure (first one wins) and returns NULL, for `return ag_error(...)` in ops. */
ag_tensor *ag_error(ag_ctx *ctx, tpsc_status s, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* true when ctx is healthy and none of the n tensors is NULL or kept as bf16 only. */
bool ag_ok(ag_ctx *ctx, int n, ...);
/* Scratch memory in the activation arena (lives until reset); NULL + ctx error on failure. */
void *ag_alloc(ag_ctx *ctx, size_t bytes);
/* A new contiguous, uninitialised tensor in the arena. */
ag_tensor *ag_new(ag_ctx *ctx, int ndim, const size_t *shape);
/* A tensor whose values are bf16 only (t->bf16; t->data NULL), for an op's output that feeds
 * nothing but BF16 products. */
ag_tensor *ag_new_bf16(ag_ctx *ctx, int ndim, const size_t *shape);
ag_tensor *ag_new1(ag_ctx *ctx, size_t a);
ag_tensor *ag_new2(ag_ctx *ctx, size_t a, size_t b);
ag_tensor *ag_new3(ag_ctx *ctx, size_t a, size_t b, size_t c);
ag_tensor *ag_new4(ag_ctx *ctx, size_t a, size_t b, size_t c, size_t d);
ag_tensor *ag_zeros(ag_ctx *ctx, int ndim, const size_t *shape);
/* A leaf tensor around memory the caller owns (a batch, a parameter). grad may be NULL. */
ag_tensor *ag_wrap(ag_ctx *ctx, float *data, float *grad, int ndim, const size_t *shape, bool requires_grad);
/* A view of x with a new shape and the same data (x must be contiguous). No node of its own
 * is needed by callers: ag_reshape in ops.h records one so gradients flow. */
ag_tensor *ag_view(ag_ctx *ctx, ag_tensor *x, int ndim, const size_t *shape);

/* True when an op with these inputs must record a node. */
bool ag_needs_grad(ag_ctx *ctx, int n, ag_tensor **in);
/* Records a node for `out` if any input requires grad and grad mode is on; returns the node
 * (to fill `saved`, f[], i[]) or NULL when nothing was recorded (or on failure: check ctx). */
ag_node *ag_record(ag_ctx *ctx, const char *name, ag_backward_fn backward, ag_tensor *out, int n_in,
                   ag_tensor **in);
/* The gradient buffer of t, allocated zeroed on first use; NULL when t needs no gradient. */
float *ag_grad(ag_ctx *ctx, ag_tensor *t);
/* For a backward that writes every element of t's gradient: as ag_grad, but a buffer new to
 * this backward is not zeroed and *fresh is set, so the op stores (=, sgemm beta 0) instead of
 * adding; when *fresh is false the buffer already holds another consumer's gradient (or is a
 * parameter's) and the op must add. Saves a memset of the widest buffers of the step. */
float *ag_grad_write(ag_ctx *ctx, ag_tensor *t, bool *fresh);
/* For the one consumer of a tensor t kept as bf16 only (ag_new_bf16) that writes all of t's
 * gradient as bf16: its buffer (t->grad_bf16, from the gradient pool, returned after t's
 * producer ran backward); NULL when t needs no gradient, or, with ctx's error set, when t is
 * not kept as bf16 only or already has a gradient. */
uint16_t *ag_grad_bf16_take(ag_ctx *ctx, ag_tensor *t);
/* For that consumer, which sums t's gradient by columns as it writes it (what t's producer, a
 * linear, needs for its bias): `parts` zeroed rows of [last dim] doubles, one per thread,
 * t->grad_bf16_sums; NULL when out of memory (ctx's error set). The writer fills row k from
 * thread k, then ag_grad_bf16_sums_fold adds the rows into row 0, the sums. */
double *ag_grad_bf16_sums_new(ag_ctx *ctx, ag_tensor *t, int parts);
void ag_grad_bf16_sums_fold(ag_tensor *t, int parts);
/* For a backward whose dL/dt is its incoming gradient itself (a residual input t of node n):
 * when t has no gradient yet, t takes n's output gradient buffer instead of a copy of it (that
 * buffer is dead once n's backward has run) and true is returned; false, with nothing done,
 * when t already has a gradient, n's output keeps its gradient (retain_grad), or the sizes
 * differ. After a true, n->out->grad is NULL and t->grad is the old buffer: the backward may
 * go on reading it, but must not write t's gradient again, nor any tensor whose gradient could
 * be t's (the caller checks that no other input of n is t). */
bool ag_grad_pass(ag_ctx *ctx, ag_node *n, ag_tensor *t);
/* numel floats of uninitialised scratch from the gradient pool, for use inside one op (forward
 * or backward); hand it back with ag_scratch_put before the op returns. The same buffers serve
 * as gradients later, so a wide temporary costs no activation memory. */
float *ag_scratch_get(ag_ctx *ctx, size_t numel);
void ag_scratch_put(ag_ctx *ctx, float *p, size_t numel);

#endif
