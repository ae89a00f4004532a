/* ag_layernorm_linear against the chain it replaces, ag_layernorm then ag_linear, in a given
 * precision (test_ops_fused.c: FP32, test_bf16_train.c: BF16): Criterion assertions. */
#ifndef TPSC_TESTS_LAYERNORM_CHAIN_H
#define TPSC_TESTS_LAYERNORM_CHAIN_H

#include "autograd/ops.h"

void layernorm_linear_matches_chain(ag_precision precision);

#endif
