/* Descending order of token scores for the inference top-k. The official code calls
 * torch.argsort(descending=True) (dtps) and torch.topk(sorted=True) (EViT), whose order among
 * equal scores is unspecified; here it is fixed: equal scores keep their original order. */
#include <math.h>
#include <stdlib.h>

#include "src/tps/tps_internal.h"

typedef struct scored {
    float s;
    int32_t i;
} scored;

static int by_score_desc(const void *pa, const void *pb) {
    const scored *a = pa, *b = pb;
    const bool na = isnan(a->s), nb = isnan(b->s);
    if (na != nb) return na ? 1 : -1;
    if (!na && a->s != b->s) return a->s > b->s ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

bool tps_sort_desc(ag_ctx *ctx, const float *score, size_t B, size_t n, int32_t *order) {
    scored *tmp = ag_alloc(ctx, n * sizeof *tmp + 1);
    if (!tmp) return false;
    for (size_t b = 0; b < B; b++) {
        for (size_t i = 0; i < n; i++) tmp[i] = (scored){score[b * n + i], (int32_t)i};
        qsort(tmp, n, sizeof *tmp, by_score_desc);
        for (size_t i = 0; i < n; i++) order[b * n + i] = tmp[i].i;
    }
    return true;
}
