/* Finite-difference gradient checking for autograd ops.
 *
 * f builds a tensor from leaf inputs. The checker projects it to a scalar with fixed random
 * weights R (L = sum(out * R), accumulated in double), gets dL/dinput by backward, and
 * compares every element with the central difference (L(x+h) - L(x-h)) / 2h, computed in
 * double from the float32 forward. An element passes when
 *     |analytic - numeric| <= atol + rtol * |numeric|.
 * Use odd shapes (N=7, C=5) so that no stride or remainder bug hides. */
#ifndef TPSC_TESTS_GRADCHECK_H
#define TPSC_TESTS_GRADCHECK_H

#include <stdbool.h>

#include "autograd/ops.h"

typedef struct gc_input {
    int ndim;
    size_t shape[AG_MAX_DIMS];
    bool requires_grad;
    const float *data; /* NULL: filled with N(0,1) from the checker's seed */
} gc_input;

typedef ag_tensor *(*gc_fn)(ag_ctx *ctx, ag_tensor **in, void *user);

typedef struct gc_report {
    double worst_ratio;     /* max over elements of |a - n| / (atol + rtol |n|); pass if <= 1 */
    double analytic, numeric;
    int input;              /* where the worst element is */
    size_t index;
    size_t checked;         /* elements compared */
} gc_report;

/* Returns true if every element passes. `h` is the finite-difference step (1e-2 suits float32
 * forwards of smooth ops). */
bool gradcheck(gc_fn f, int n_in, const gc_input *inputs, void *user, double h, double atol, double rtol,
               unsigned seed, gc_report *rep);

/* Criterion-friendly wrapper: asserts the check passes and prints the worst element. */
#define GRADCHECK(f, n, inputs, user, h, atol, rtol)                                                         \
    do {                                                                                                     \
        gc_report _r;                                                                                        \
        bool _ok = gradcheck(f, n, inputs, user, h, atol, rtol, 1234u, &_r);                                 \
        cr_assert(_ok && _r.checked > 0,                                                                     \
                  "gradcheck %s failed: input %d element %zu analytic %.6g numeric %.6g (ratio %.3g, %zu checked): %s", \
                  #f, _r.input, _r.index, _r.analytic, _r.numeric, _r.worst_ratio, _r.checked, tpsc_last_error()); \
    } while (0)

#endif
