/* Cost of one image's forward pass in multiply-accumulates (MACs), inference mode.
 *
 * The papers (DeiT, DynamicViT, EViT, TPS) print "GFLOPs" that are really GMACs; this counts
 * MACs too. Counted: every matrix product. Not counted, as in those papers: LayerNorm, GELU,
 * softmax, residual adds, the predictor's masked mean and the top-k sort (all O(N C) or less
 * against the O(N C^2) linears).
 *
 * Per image, with C channels, F the MLP hidden width and n spatial tokens (1 + n with cls):
 *   patch embed    N_p * P * C                    (P = in_chans * patch^2, a conv as a linear)
 *   block          qkv 3(1+n)C^2, QK^T and AV (1+n)^2 C each (summed over heads: H * D = C),
 *                  proj (1+n)C^2, fc1 and fc2 (1+n)C F each
 *   predictor      n (C^2 + C C/2 + C/2 C/4 + C/4 * 2)   (in_conv linear, out_conv 0/2/4)
 *   squeeze        p k C for the cosine similarity of p pruned to k kept tokens, plus p C for
 *                  adding each pruned token into its host (one host per pruned token)
 *   evit fusion    p C for the attention-weighted sum of the p dropped tokens
 *   head           C K on the cls token
 * Token counts (tokens really removed, as at inference):
 *   dynamicvit/dtps: the predictor runs before block prune_loc[s] on the current n tokens and
 *     keeps floor(N_p keep_frac[s]); the blocks from there on run on 1 + that many.
 *   evit/etps: inside block prune_loc[s], after attention on 1 + n tokens, keep
 *     ceil(rho_s n), rho_s = keep_frac[s] / keep_frac[s-1]; that block's MLP already runs on the
 *     reduced sequence. EViT appends one fused token, which the next stage counts among its n
 *     spatial tokens (as EViT's code does with N - 1).
 * The keep counts follow tok_keep_count / tok_evit_keep_count (config.c), reimplemented here
 * so that the cost model does not depend on the model code: both go back to the double the
 * official Python would use (see keep_fraction below), or float rounding moves a count by one. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/tokens/tokens.h"

/* The double of the shortest decimal that reads back as f: 0.7f -> 0.7, the number the user
 * wrote and Python computes with. */
static double as_decimal(float f) {
    char text[32];
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(text, sizeof text, "%.*g", digits, (double)f);
        double d = strtod(text, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

/* Whether the fractions are one rho compounded (rho^(s+1)), up to float rounding. */
static bool compounded(const tok_config *cfg, double rho) {
    for (int s = 0; s < cfg->n_stages; s++) {
        double want = pow(rho, s + 1);
        if (fabs((double)cfg->keep_frac[s] - want) > 4.0 * (double)FLT_EPSILON * want) return false;
    }
    return true;
}

/* Cumulative fraction of stage s (predictor methods), as Python's rho ** (s + 1). */
static double keep_fraction(const tok_config *cfg, int s) {
    double rho = as_decimal(cfg->keep_frac[0]);
    return compounded(cfg, rho) ? pow(rho, s + 1) : as_decimal(cfg->keep_frac[s]);
}

/* Fraction of the current tokens stage s keeps (evit/etps). */
static double stage_rate(const tok_config *cfg, int s) {
    double rho = as_decimal(cfg->keep_frac[0]);
    if (s == 0 || compounded(cfg, rho)) return rho;
    return as_decimal(cfg->keep_frac[s]) / as_decimal(cfg->keep_frac[s - 1]);
}

static size_t clamp_count(double k, size_t n) {
    if (k < 1.0) return 1;
    return k > (double)n ? n : (size_t)k;
}

/* floor(N_p keep_frac[s]), at least 1 */
static size_t predictor_keep(const tok_config *cfg, int s, size_t n_patches) {
    return clamp_count(floor((double)n_patches * keep_fraction(cfg, s)), n_patches);
}

/* ceil(rho_s n), at least 1 */
static size_t evit_keep(const tok_config *cfg, int s, size_t n) {
    return clamp_count(ceil((double)n * stage_rate(cfg, s)), n);
}

/* qkv, QK^T, AV and proj for a sequence of t tokens. */
static double attention_macs(double t, double C) { return 4.0 * t * C * C + 2.0 * t * t * C; }
/* fc1 and fc2 */
static double mlp_macs(double t, double C, double F) { return 2.0 * t * C * F; }
/* PredictorLG on n tokens: C -> C, then C -> C/2 -> C/4 -> 2 (integer widths, as the code). */
static double predictor_macs(double n, size_t C) {
    double c = (double)C, c2 = (double)(C / 2), c4 = (double)(C / 4);
    return n * (c * c + c * c2 + c2 * c4 + c4 * 2.0);
}
/* p pruned tokens squeezed into k kept ones */
static double squeeze_macs(double p, double k, double C) { return p * k * C + p * C; }

double tok_macs_per_image(const tok_config *cfg, size_t img_size, size_t patch, size_t in_chans, size_t embed_dim,
                          size_t depth, size_t mlp_hidden, size_t num_classes) {
    if (patch == 0 || img_size < patch || embed_dim == 0) {
        tpsc_fail(TPSC_ERR_ARG, "macs: image %zu with patch %zu and width %zu has no tokens", img_size, patch,
                  embed_dim);
        return 0.0;
    }
    const size_t side = img_size / patch, n_patches = side * side;
    const double C = (double)embed_dim, F = (double)mlp_hidden;
    const tok_method method = cfg ? cfg->method : TOK_NONE;
    const int n_stages = method == TOK_NONE ? 0 : cfg->n_stages;
    const bool predictor = tok_method_has_predictor(method), squeezes = tok_method_squeezes(method);

    double macs = (double)n_patches * (double)(in_chans * patch * patch) * C;
    size_t n = n_patches; /* spatial tokens entering the current block */
    int s = 0;
    for (size_t i = 0; i < depth; i++) {
        const bool stage_here = s < n_stages && cfg->prune_loc[s] == (int)i;
        if (stage_here && predictor) {
            size_t k = predictor_keep(cfg, s, n_patches);
            if (k > n) k = n;
            macs += predictor_macs((double)n, embed_dim);
            if (squeezes) macs += squeeze_macs((double)(n - k), (double)k, C);
            n = k;
            s++;
        }
        macs += attention_macs((double)(1 + n), C);
        if (stage_here && !predictor) {
            const size_t k = evit_keep(cfg, s, n), dropped = n - k;
            if (squeezes) {
                macs += squeeze_macs((double)dropped, (double)k, C);
                n = k;
            } else if (dropped > 0 && cfg->evit_drop_pruned) {
                n = k;
            } else if (dropped > 0) { /* EViT fuses nothing when it keeps everything */
                macs += (double)dropped * C;
                n = k + 1; /* the fused token */
            }
            s++;
        }
        macs += mlp_macs((double)(1 + n), C, F);
    }
    return macs + C * (double)num_classes;
}
