/* ag_tensor: a float32 array with shape and strides (both size_t, in elements).
 *
 * Dimension letters used in every shape comment across tpsc:
 *   B batch, N tokens (cls + patches), C channels (embedding width), H heads,
 *   D head size (C / H), K classes, P pixels in one patch (in_chans * patch * patch),
 *   M rows when leading dims are flattened (M = B * N).
 *
 * Tensors are row-major. Ops produce contiguous tensors; reshape returns a view that
 * shares data. Activation tensors and their gradients live in the context's arenas and die
 * at ag_ctx_reset(); parameter tensors point into one allocation owned by ag_params. */
#ifndef TPSC_AUTOGRAD_TENSOR_H
#define TPSC_AUTOGRAD_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define AG_MAX_DIMS 4

typedef struct ag_tensor {
    float *data;                   /* NULL when the values are kept as bf16 only (below) */
    uint16_t *bf16;                /* BF16 precision: the values as bf16, for a tensor an op kept
                                    * only for BF16 products (ag_new_bf16); only the ops that
                                    * say so accept one, the others fail in ag_ok */
    float *grad;                   /* NULL until backward first writes it (activations) */
    uint16_t *grad_bf16;           /* BF16: the gradient as bf16 only, instead of grad, for a tensor
                                    * kept as bf16 only whose one consumer writes it so
                                    * (ag_grad_bf16_take); its producer reads it */
    double *grad_bf16_sums;        /* [last dim]: grad_bf16's column sums, when its writer summed
                                    * them as it wrote (ag_grad_bf16_sums_new), for a producer's
                                    * bias gradient; NULL: the producer sums them itself */
    size_t shape[AG_MAX_DIMS];
    size_t stride[AG_MAX_DIMS];    /* elements; stride[ndim-1] == 1 when contiguous */
    int ndim;
    bool requires_grad;
    bool retain_grad;              /* keep an activation's gradient after backward (tests) */
    int32_t node;                  /* index of the tape node that produced it; -1 for a leaf */
} ag_tensor;

size_t ag_numel(const ag_tensor *t);
bool ag_is_contiguous(const ag_tensor *t);
bool ag_same_shape(const ag_tensor *a, const ag_tensor *b);
/* Product of all dims but the last: the number of rows an op over the last dim sees. */
size_t ag_rows(const ag_tensor *t);
/* Size of the last dim. */
size_t ag_cols(const ag_tensor *t);
/* Writes "[2, 197, 384]" into buf. */
const char *ag_shape_str(const ag_tensor *t, char *buf, size_t len);
/* Fills shape/stride for a contiguous layout. */
void ag_set_contiguous(ag_tensor *t, int ndim, const size_t *shape);

#endif
