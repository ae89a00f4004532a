/* How many tokens each pruning stage keeps: the counts must equal the official Python's bit
 * for bit, or the C engines and the PyTorch reference prune different numbers of tokens.
 *
 * Python computes them in double from the decimal the user wrote:
 * DynamicVit.keep_ratio_list = [rho ** (s+1)] and num_keep_node = int(N * ratio)
 * (TPS-CVPR2023 torch_codebase/models/dynamic_vit.py); EViT left_tokens =
 * math.ceil(keep_rate * n) (youweiliang/evit evit.py, Attention.forward). keep_frac is stored
 * as float, and float rounding moves these results by one: 0.7f * 10 is 6.9999999 (Python:
 * 7.0), powf(0.7f, 2) * 100 is 49.000001 (Python: 48.99999999999999). So the counts go back to
 * the double Python would have: the float's shortest decimal ("0.7"), and, when the fractions
 * are that decimal compounded (exactly as keep_fill_rho writes them), pow(rho, s + 1) in double
 * as Python's float ** does (it calls the C library's pow).
 *
 * keep_frac[s]: the cumulative fraction of the N patch tokens kept after stage s. */
#ifndef TPSC_COMMON_KEEP_H
#define TPSC_COMMON_KEEP_H

#include <stddef.h>

/* keep_frac[s] = rho^(s+1), s < n_stages, compounded in double from rho's decimal. Every
 * path that turns one keep ratio into stage fractions calls this. */
void keep_fill_rho(float *keep_frac, int n_stages, float rho);
/* Predictor methods (scores before block prune_loc[s]): patch tokens kept after stage s,
 * int(N * ratio_s), at least 1. A stage outside [0, n_stages) keeps all n_patches. */
size_t keep_count_predictor(const float *keep_frac, int n_stages, int stage, size_t n_patches);
/* cls-attention methods (EViT, eTPS): spatial tokens kept at stage s out of the current n,
 * ceil(rho_s * n), rho_s = keep_frac[s] / keep_frac[s-1], at least 1. */
size_t keep_count_evit(const float *keep_frac, int n_stages, int stage, size_t n);

#endif
