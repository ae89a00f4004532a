/* Token-merging rules shared by the training framework and libtpsinfer, header-only like
 * rows.h, so that both engines take the same discrete decisions with the same
 * arithmetic (docs/merging.md explains both methods).
 *
 * Letters: t tokens with the cls token (row 0), n spatial tokens (t = 1 + n), N patches of the
 * full grid (g x g), D width of the matching metric (keys averaged over heads).
 *
 * A merge is a map: map[i] = output position of input token i, outputs 0 .. m-1, every output
 * hit at least once. The merged token is the size-weighted average of its inputs
 * (x_o = sum s_i x_i / sum s_i, s_o = sum s_i; ag_merge_tokens and ti_merge_rows apply it).
 * Composing maps gives each patch's token at any depth (the source map; unmerge gathers it).
 *
 * ToMe (Bolya et al., facebookresearch/ToMe tome/merge.py bipartite_soft_matching):
 *   tokens alternate into A (even positions, cls is A's first) and B (odd); every A token's
 *   best cosine match in B; the r A tokens with the best matches fold into them; output order
 *   = unmerged A tokens by position (cls first), then every B token in order. At most
 *   (t - 1) / 2 tokens per block (ToMe's own limit). r per block: tok_tome_schedule.
 * ATME (our CAIT-style design, docs/merging.md): the k least important spatial tokens (cls
 * attention) fold, in ascending importance, into their most similar 8-neighbour region still
 * present, preferring regions that stay; the survivors keep their order. */
#ifndef TPSC_COMMON_MERGE_RULES_H
#define TPSC_COMMON_MERGE_RULES_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "src/common/rows.h"

/* ToMe's parse_r for an int r and an inflection (0 constant, -1 the paper's decreasing
 * schedule 2r .. 0, +1 increasing): r_out[i] = int(min + (max - min) / (depth - 1) * i),
 * min = int(r (1 - inflect)), max = 2r - min, in double with Python's truncation. */
static inline void tok_tome_schedule(int depth, int r, double inflect, int *r_out) {
    const int min_val = (int)(r * (1.0 - inflect));
    const int max_val = 2 * r - min_val;
    const double step = depth > 1 ? (double)(max_val - min_val) / (double)(depth - 1) : 0.0;
    for (int i = 0; i < depth; i++) r_out[i] = (int)(min_val + step * i);
}

/* Tokens merged in a block with t tokens (cls included and protected): min(r, (t - 1) / 2). */
static inline size_t tok_tome_block_r(int r, size_t t) {
    if (r <= 0 || t < 3) return 0;
    const size_t cap = (t - 1) / 2;
    return (size_t)r < cap ? (size_t)r : cap;
}

/* The matching metric of one image: keys averaged over the H heads. qkv: t rows of ld floats,
 * the keys from column koff on, H heads of D each -> metric [t, D]. */
static inline void tok_key_mean_ld(const float *qkv, size_t t, size_t ld, size_t koff, size_t H, size_t D,
                                   float *metric) {
    for (size_t i = 0; i < t; i++) {
        const float *k = qkv + i * ld + koff;
        float *out = metric + i * D;
        for (size_t d = 0; d < D; d++) {
            float s = 0.0f;
            for (size_t h = 0; h < H; h++) s += k[h * D + d];
            out[d] = s / (float)H;
        }
    }
}

/* The same for qkv [t, 3C] in timm's layout (q, k, v blocks of C, each H heads of D = C / H).
 * A channel-pruned block of libtpsinfer (rows of 2Q + V, Q = H dq) calls tok_key_mean_ld with
 * ld 2Q + V, koff Q, D dq: the framework's masked key channels are zeros, which change no
 * cosine, so both engines match on the same numbers. */
static inline void tok_key_mean(const float *qkv, size_t t, size_t C, size_t H, float *metric) {
    tok_key_mean_ld(qkv, t, 3 * C, C, H, C / H, metric);
}

/* Cosine similarity of two metric rows (ToMe normalises by the plain norm; a zero row
 * matches nothing better than 0). */
static inline double tok_metric_cosine(const float *a, const float *b, size_t D) {
    double ab = 0.0, aa = 0.0, bb = 0.0;
    for (size_t d = 0; d < D; d++) {
        ab += (double)a[d] * b[d];
        aa += (double)a[d] * a[d];
        bb += (double)b[d] * b[d];
    }
    return aa > 0.0 && bb > 0.0 ? ab / sqrt(aa * bb) : 0.0;
}

/* Scratch bytes of tok_tome_match for t tokens of metric width D (8-byte aligned scratch). */
static inline size_t tok_tome_scratch_bytes(size_t t, size_t D) {
    const size_t nA = (t + 1) / 2, nB = t / 2;
    return (t + D * nB + nB) * sizeof(double) + nA * (sizeof(float) + 2 * sizeof(int32_t) + sizeof(row_scored)) +
           t * sizeof(int32_t);
}

/* ToMe's bipartite soft matching on one image: metric [t, D] (row 0 the cls token), r merges
 * with 1 <= r <= (t - 1) / 2 -> map [t]; returns m = t - r. Ties: the lower B index wins a
 * row, and the lower A index an edge (torch leaves both unspecified).
 * Each cosine is tok_metric_cosine's number: the squared norms are taken once per row, and the
 * dot products of one A row with every B row run over d in the same order, B held transposed
 * so that the loop over B vectorises without changing any sum. */
static inline size_t tok_tome_match(const float *metric, size_t t, size_t D, size_t r, int32_t *map, void *scratch) {
    const size_t nA = (t + 1) / 2, nB = t / 2, nU = nA - r;
    double *norm2 = scratch;         /* [t] */
    double *bt = norm2 + t;          /* [D, nB] the B rows transposed */
    double *dot = bt + D * nB;       /* [nB] */
    float *node_max = (float *)(dot + nB);
    int32_t *node_idx = (int32_t *)(node_max + nA);
    int32_t *order = node_idx + nA;
    row_scored *tmp = (row_scored *)(order + nA);
    int32_t *unm_rank = (int32_t *)(tmp + nA);
    for (size_t i = 0; i < t; i++) {
        const float *x = metric + i * D;
        double aa = 0.0;
        for (size_t d = 0; d < D; d++) aa += (double)x[d] * x[d];
        norm2[i] = aa;
    }
    for (size_t b = 0; b < nB; b++)
        for (size_t d = 0; d < D; d++) bt[d * nB + b] = (double)metric[(2 * b + 1) * D + d];
    node_max[0] = -INFINITY; /* the cls token never merges */
    node_idx[0] = 0;
    for (size_t a = 1; a < nA; a++) {
        const float *xa = metric + 2 * a * D;
        for (size_t b = 0; b < nB; b++) dot[b] = 0.0;
        for (size_t d = 0; d < D; d++) {
            const double ad = (double)xa[d];
            const double *col = bt + d * nB;
            _Pragma("omp simd")
            for (size_t b = 0; b < nB; b++) dot[b] += ad * col[b];
        }
        const double aa = norm2[2 * a];
        double best = -INFINITY;
        size_t bi = 0;
        for (size_t b = 0; b < nB; b++) {
            const double bb = norm2[2 * b + 1];
            const double s = aa > 0.0 && bb > 0.0 ? dot[b] / sqrt(aa * bb) : 0.0;
            if (s > best) best = s, bi = b;
        }
        node_max[a] = (float)best;
        node_idx[a] = (int32_t)bi;
    }
    row_sort_desc(node_max, nA, order, tmp);
    /* unm_rank[a] = rank of A token a among the unmerged ones by position, -1 if merged */
    for (size_t a = 0; a < nA; a++) unm_rank[a] = 0;
    for (size_t e = 0; e < r; e++) unm_rank[order[e]] = -1;
    int32_t rank = 0;
    for (size_t a = 0; a < nA; a++)
        if (unm_rank[a] == 0) unm_rank[a] = rank++;
    for (size_t a = 0; a < nA; a++)
        map[2 * a] = unm_rank[a] >= 0 ? unm_rank[a] : (int32_t)(nU + (size_t)node_idx[a]);
    for (size_t b = 0; b < nB; b++) map[2 * b + 1] = (int32_t)(nU + b);
    return t - r;
}

/* Scratch bytes of tok_atme_plan for n spatial tokens. */
static inline size_t tok_atme_scratch_bytes(size_t n) {
    return n * (sizeof(float) + 4 * sizeof(int32_t) + sizeof(row_scored));
}

static inline int32_t tok_atme_root(int32_t *parent, int32_t i) {
    while (parent[i] != i) {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    return i;
}

/* ATME on one image. n spatial tokens; patch_tok [N = g*g] the spatial token holding each
 * patch of the g x g grid (every token holds at least one patch); importance [n] (cls
 * attention); metric [n, D]; k tokens to remove, 0 <= k < n.
 * -> map [n] (output spatial position of each token), and patch_tok rewritten to the output
 * positions. Returns m = n - k, or 0 if some source had no neighbour (a patch_tok that does
 * not cover the grid with connected regions). */
static inline size_t tok_atme_plan(size_t n, int32_t *patch_tok, size_t g, const float *importance,
                                   const float *metric, size_t D, size_t k, int32_t *map, void *scratch) {
    float *neg = scratch;
    int32_t *order = (int32_t *)(neg + n);
    int32_t *parent = order + n;
    int32_t *is_src = parent + n;
    int32_t *rank = is_src + n;
    row_scored *tmp = (row_scored *)(rank + n);
    const size_t N = g * g;
    /* ascending importance, ties to the lower position */
    for (size_t i = 0; i < n; i++) neg[i] = -importance[i];
    row_sort_desc(neg, n, order, tmp);
    for (size_t i = 0; i < n; i++) parent[i] = (int32_t)i, is_src[i] = 0;
    for (size_t e = 0; e < k; e++) is_src[order[e]] = 1;
    for (size_t e = 0; e < k; e++) {
        const int32_t s = order[e];
        double best[2] = {-INFINITY, -INFINITY}; /* [0] a region that stays, [1] a source */
        int32_t dst[2] = {-1, -1};
        for (size_t p = 0; p < N; p++) {
            if (tok_atme_root(parent, patch_tok[p]) != s) continue;
            const long py = (long)(p / g), px = (long)(p % g);
            for (long dy = -1; dy <= 1; dy++)
                for (long dx = -1; dx <= 1; dx++) {
                    const long qy = py + dy, qx = px + dx;
                    if ((dy == 0 && dx == 0) || qy < 0 || qx < 0 || qy >= (long)g || qx >= (long)g) continue;
                    const int32_t d = tok_atme_root(parent, patch_tok[(size_t)qy * g + (size_t)qx]);
                    if (d == s) continue;
                    const int c = is_src[d] ? 1 : 0;
                    const double sim = tok_metric_cosine(metric + (size_t)s * D, metric + (size_t)d * D, D);
                    if (sim > best[c] || (sim == best[c] && d < dst[c])) best[c] = sim, dst[c] = d;
                }
        }
        const int32_t d = dst[0] >= 0 ? dst[0] : dst[1];
        if (d < 0) return 0;
        parent[s] = d;
    }
    int32_t m = 0;
    for (size_t i = 0; i < n; i++) rank[i] = parent[i] == (int32_t)i ? m++ : -1;
    for (size_t i = 0; i < n; i++) map[i] = rank[tok_atme_root(parent, (int32_t)i)];
    for (size_t p = 0; p < N; p++) patch_tok[p] = map[patch_tok[p]];
    return (size_t)m;
}

/* ATME's tokens removed at a location with n spatial tokens, keeping the cumulative budget
 * `keep` of the N patches (tok_keep_count): n - keep, or 0 when the budget is already met. */
static inline size_t tok_atme_remove_count(size_t n, size_t keep) { return keep < n ? n - keep : 0; }

#endif
