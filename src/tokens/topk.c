/* Descending order of token scores for the inference top-k. The official code calls
 * torch.argsort(descending=True) (dtps) and torch.topk(sorted=True) (EViT), whose order among
 * equal scores is unspecified; here it is fixed: equal scores keep their original order. */
#include <math.h>
#include <stdlib.h>

#include "src/common/rows.h"
#include "src/tokens/tokens_internal.h"

bool tok_sort_desc(ag_ctx *ctx, const float *score, size_t B, size_t n, int32_t *order) {
    row_scored *tmp = ag_alloc(ctx, n * sizeof *tmp + 1);
    if (!tmp) return false;
    for (size_t b = 0; b < B; b++) row_sort_desc(score + b * n, n, order + b * n, tmp);
    return true;
}
