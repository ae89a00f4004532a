/* The refused-input checks of the autograd op tests. */
#ifndef TPSC_TESTS_OP_ERROR_H
#define TPSC_TESTS_OP_ERROR_H

#include "autograd/ops.h"

/* An op call that must fail: its result y is NULL, ctx's status is `want` and the last error
 * names `op`. Then resets ctx for the next case (which frees every tensor in it). */
void op_expect_error(ag_ctx *ctx, ag_tensor *y, tpsc_status want, const char *op);

#endif
