/* Every autograd op, one line each. Each op lives in autograd/ops/<file>.c with its forward
 * and backward side by side, and is checked against central finite differences in
 * tests/test_ops_*.c. All inputs must be contiguous unless stated; outputs are contiguous.
 * Any op returns NULL if an input is NULL or the context has failed (see ag.h).
 *
 * Shapes use the letters of tensor.h; "...": any leading dims, flattened to rows. */
#ifndef TPSC_AUTOGRAD_OPS_H
#define TPSC_AUTOGRAD_OPS_H

#include "autograd/ag.h"

/* ---- linear algebra (ops/matmul.c) ------------------------------------------------------------
 * These, the fused linears and attention run their products through ag_gemm (gemm.h): OpenBLAS
 * sgemm, or BF16 with FP32 accumulation when the context's precision is AG_BF16. */
/* a [M,K] (or [K,M] if trans_a) @ b [K,N] (or [N,K] if trans_b) -> [M,N].
 * 3-D a [G,M,K], b [G,K,N]: a batch of G independent products (b may be 2-D: shared). */
ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b, bool trans_a, bool trans_b);
/* x [..., Cin] @ w[Cout, Cin]^T + bias[Cout] -> [..., Cout]; bias may be NULL. One sgemm over
 * all rows (ops/linear.c). */
ag_tensor *ag_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *bias);
/* LayerNorm(x; ln_w, ln_b, eps) w^T + bias as one op (ops/layernorm_linear.c): the same values as
 * ag_layernorm then ag_linear; the LN output is kept only as the linear needs it (bf16 in BF16). */
ag_tensor *ag_layernorm_linear(ag_ctx *ctx, ag_tensor *x, ag_tensor *ln_w, ag_tensor *ln_b, float eps, ag_tensor *w,
                               ag_tensor *bias);
/* The same op with its output kept as bf16 only in BF16 precision (y->bf16, y->data NULL; the
 * values ag_layernorm_linear's output rounds to, bit for bit), for a consumer that reads nothing
 * else: ag_attention's qkv, ag_gelu_linear_residual's x (fc1's output). Half the bytes written,
 * stored and read. In FP32: ag_layernorm_linear. */
ag_tensor *ag_layernorm_linear_bf16(ag_ctx *ctx, ag_tensor *x, ag_tensor *ln_w, ag_tensor *ln_b, float eps,
                                    ag_tensor *w, ag_tensor *bias);
/* Fused (ops/fused_linear.c): r + x w^T + bias, and r + gelu(x) w^T + bias (GELU recomputed in
 * backward, not stored; in BF16 its x may be kept as bf16 only); bias and the residual
 * r [..., Cout] may be NULL. */
ag_tensor *ag_linear_residual(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *bias, ag_tensor *r);
ag_tensor *ag_gelu_linear_residual(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *bias, ag_tensor *r);

/* ---- element-wise (ops/elementwise.c) ----------------------------------------------------- */
/* a + b. b has a's shape, or broadcasts over a's leading dims: b's dims equal a's trailing
 * dims once b's leading 1s are dropped (pos_embed [1,N,C] + x [B,N,C]; bias [C] + x [...,C]). */
ag_tensor *ag_add(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_sub(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
/* a * b, with add's broadcasting rule, or b [...,1] per row: b's shape is a's with last dim 1
 * (a token mask [B,N,1] times tokens [B,N,C]). */
ag_tensor *ag_mul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);
ag_tensor *ag_scale(ag_ctx *ctx, ag_tensor *a, float s);
/* a + s (a scalar constant). */
ag_tensor *ag_add_scalar(ag_ctx *ctx, ag_tensor *a, float s);

/* ---- activations and normalisation --------------------------------------------------------- */
/* GELU with the exact erf, as nn.GELU() (ops/gelu.c). */
ag_tensor *ag_gelu(ag_ctx *ctx, ag_tensor *x);
/* LayerNorm over the last dim C: x [..., C], w [C], b [C] (ops/layernorm.c). */
ag_tensor *ag_layernorm(ag_ctx *ctx, ag_tensor *x, ag_tensor *w, ag_tensor *b, float eps);
/* Softmax / log-softmax over the last dim (ops/softmax.c). */
ag_tensor *ag_softmax(ag_ctx *ctx, ag_tensor *x);
ag_tensor *ag_log_softmax(ag_ctx *ctx, ag_tensor *x);

/* ---- shape (ops/shape.c) ------------------------------------------------------------------ */
/* Same data, new shape (numel must match). */
ag_tensor *ag_reshape(ag_ctx *ctx, ag_tensor *x, int ndim, const size_t *shape);
/* Output dim i is input dim perm[i]; copies. */
ag_tensor *ag_permute(ag_ctx *ctx, ag_tensor *x, const int *perm);
ag_tensor *ag_transpose(ag_ctx *ctx, ag_tensor *x, int d0, int d1);
/* Concatenates n tensors along dim; all other dims equal. */
ag_tensor *ag_concat(ag_ctx *ctx, int n, ag_tensor **xs, int dim);
/* x[..., start:start+len, ...] along dim; copies. */
ag_tensor *ag_slice(ag_ctx *ctx, ag_tensor *x, int dim, size_t start, size_t len);
/* Expands x [1, ...] to [n, ...] (cls_token [1,1,C] -> [B,1,C]); backward sums. */
ag_tensor *ag_expand0(ag_ctx *ctx, ag_tensor *x, size_t n);

/* ---- token rows (ops/gather.c) ------------------------------------------------------------ */
/* out[b, j, :] = x[b, idx[b*n + j], :]. x [B,N,C], idx B*n indices in [0,N) -> [B,n,C].
 * (torch.gather / index_select of token rows; the pruning step at inference.) */
ag_tensor *ag_gather_rows(ag_ctx *ctx, ag_tensor *x, const int32_t *idx, size_t n);
/* out [B,N,C] = zeros, then out[b, idx[b*n + j], :] += src[b, j, :]. src [B,n,C]. */
ag_tensor *ag_scatter_rows(ag_ctx *ctx, ag_tensor *src, const int32_t *idx, size_t N);

/* ---- reductions (ops/reduce.c) ------------------------------------------------------------ */
ag_tensor *ag_sum(ag_ctx *ctx, ag_tensor *x);   /* -> scalar [1] */
ag_tensor *ag_mean(ag_ctx *ctx, ag_tensor *x);  /* -> scalar [1] */
/* Sum / mean over one dim, which is removed: [B,N,C] over dim 1 -> [B,C]. */
ag_tensor *ag_sum_dim(ag_ctx *ctx, ag_tensor *x, int dim);
ag_tensor *ag_mean_dim(ag_ctx *ctx, ag_tensor *x, int dim);

/* ---- losses (ops/loss.c): each returns a scalar [1] -------------------------------------- */
/* Soft-target cross-entropy: mean_b sum_k -target[b,k] log_softmax(logits)[b,k].
 * logits [B,K], target [B,K] (rows sum to 1; mixup/cutmix/smoothing already applied). */
ag_tensor *ag_cross_entropy_soft(ag_ctx *ctx, ag_tensor *logits, ag_tensor *target);
/* Hard labels with label smoothing eps: target = (1-eps) onehot + eps/K (timm's
 * LabelSmoothingCrossEntropy). labels: B ints in [0,K). */
ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, const int32_t *labels, float smoothing);
/* KL(q || p) with both given as log-probabilities [R, K]:
 * sum_{r,k} exp(logq) (logq - logp) / divisor. PyTorch's kl_div(logp, logq, log_target=True,
 * reduction="batchmean") is divisor = R's batch size. Gradient flows to logp (and to logq if
 * it requires grad). */
ag_tensor *ag_kl_div(ag_ctx *ctx, ag_tensor *logp, ag_tensor *logq, float divisor);
/* mean((a - b)^2) over all elements. */
ag_tensor *ag_mse(ag_ctx *ctx, ag_tensor *a, ag_tensor *b);

/* ---- vision transformer building blocks ---------------------------------------------------- */
/* img [B,Cin,H,W] -> patches [B, (H/p)*(W/p), Cin*p*p], each row ordered (cin, ky, kx) so that
 * a conv weight [C,Cin,p,p] viewed as [C, P] applies as a linear (ops/patchify.c). */
ag_tensor *ag_patchify(ag_ctx *ctx, ag_tensor *img, size_t patch);

/* Multi-head self-attention core (ops/attention.c), between the qkv and proj linears:
 *   qkv [B,N,3C] (timm layout: q, k, v blocks of C, each split into H heads of D)
 *   -> out [B,N,C], out = softmax(q k^T / sqrt(D)) v per head, heads concatenated.
 * policy [B,N] or NULL: DynamicViT's softmax_with_policy (training-time masking; see
 * docs/ops.md): attn_ij = (exp(S_ij - m_i) G_ij + eps/N) / (sum_k exp(S_ik - m_i) G_ik + eps),
 * G_ij = P_j + (1 - P_j) [i == j], eps = 1e-6. Gradient flows into policy as well.
 * cls_attn: if non-NULL, receives [B, N-1] = mean over heads of attn[b, h, 0, 1:], the cls
 * token's attention to each patch token (EViT's score); it is differentiable. */
ag_tensor *ag_attention(ag_ctx *ctx, ag_tensor *qkv, size_t heads, ag_tensor *policy, ag_tensor **cls_attn);
/* The same with out kept as bf16 only in BF16 precision (out->bf16; the values rounding the
 * float output gives, bit for bit), for a consumer that reads nothing else: the proj linear
 * (ag_linear_residual). In FP32: ag_attention. */
ag_tensor *ag_attention_bf16(ag_ctx *ctx, ag_tensor *qkv, size_t heads, ag_tensor *policy, ag_tensor **cls_attn);
/* The same without a policy but with ToMe's proportional attention: log_size [B,N] (constants,
 * or NULL for none) is added to every row of the scores before the softmax,
 * softmax(q k^T / sqrt(D) + log s). */
ag_tensor *ag_attention_sized(ag_ctx *ctx, ag_tensor *qkv, size_t heads, const float *log_size, ag_tensor **cls_attn);

/* ---- token merging (ops/merge.c) ----------------------------------------------------------- */
/* Size-weighted merge by a map: x [B,n,C], size [B,n] (NULL: all 1), map [B,n] in [0,m), every
 * output hit -> [B,m,C], y[b,o] = sum_{map[b,i]=o} s_bi x[b,i] / sum s_bi; size_out [B,m]
 * (may be NULL) receives the sums. Map and sizes are constants; the gradient flows through
 * the weighted averages (ToMe's merge_wavg). */
ag_tensor *ag_merge_tokens(ag_ctx *ctx, ag_tensor *x, const float *size, const int32_t *map, size_t m, float *size_out);

#endif
