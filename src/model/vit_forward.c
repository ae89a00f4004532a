/* The ViT/DeiT forward pass, dense or with token pruning (see vit.h and src/tokens/tokens.h).
 * Backward needs no code here: every step is an autograd op. */
#include <string.h>

#include "autograd/ops.h"
#include "src/model/vit.h"

static ag_tensor *param(vit_model *m, int idx) { return ag_param_tensor(&m->params, idx); }

/* Block i's channel mask of kind k, or NULL when ungated: a straight-through Gumbel-sigmoid
 * sample in training, the top-k channels otherwise (src/channels/channels.h). */
static ag_tensor *channel_mask(ag_ctx *ctx, vit_model *m, size_t i, chan_gate_kind k, const vit_forward_opts *opts,
                               vit_output *out) {
    const int g = m->gates[i].gate[k];
    if (g < 0) return NULL;
    ag_tensor *logits = param(m, g);
    const size_t L = ag_numel(logits);
    ag_tensor *mask;
    if (opts->mode == VIT_TRAIN && !opts->chan_hard) {
        if (!opts->rng) return ag_error(ctx, TPSC_ERR_ARG, "vit_forward: channel gates in training need an rng for the noise");
        float *u = ag_alloc(ctx, L * sizeof *u);
        if (!u) return NULL;
        for (size_t c = 0; c < L; c++) u[c] = tpsc_rng_uniform_open(opts->rng);
        mask = chan_gumbel_gate(ctx, logits, u, m->tps.chan.gate_temp);
    } else {
        mask = chan_topk_gate(ctx, logits, chan_keep_count(&m->tps.chan, (int)i, k, L));
    }
    out->chan_mask[i][k] = mask;
    return mask;
}

/* x [B,n,C] -> x + proj(attention(qkv(norm1(x)))), norm1 and qkv as one op (ag_layernorm_linear). policy [B,n] or NULL; cls_attn: see ops.h.
 * Channel gates mask qkv's Q/K and V channels (every head alike); a masked V channel is a zero
 * column of proj's input, so proj needs no mask of its own. Merging methods: log_size [B,n]
 * (or NULL) turns on proportional attention, and *qkv_out (may be NULL) receives the block's
 * qkv [B,n,3C], the source of the merging metric. */
static ag_tensor *block_attention_ex(ag_ctx *ctx, vit_model *m, size_t i, ag_tensor *x, ag_tensor *policy,
                                     ag_tensor **cls_attn, const vit_forward_opts *opts, vit_output *out,
                                     const float *log_size, ag_tensor **qkv_out) {
    const vit_block *b = &m->blocks[i];
    ag_tensor *qk_mask = channel_mask(ctx, m, i, CHAN_QK, opts, out), *v_mask = channel_mask(ctx, m, i, CHAN_V, opts, out);
    /* qkv feeds only the attention's products unless masked or handed out; then BF16 keeps it
     * as bf16 alone, which is all those products read. */
    const bool only_attention = !qk_mask && !v_mask && !qkv_out;
    ag_tensor *qkv = (only_attention ? ag_layernorm_linear_bf16 : ag_layernorm_linear)(
        ctx, x, param(m, b->norm1_w), param(m, b->norm1_b), m->cfg.ln_eps, param(m, b->qkv_w), param(m, b->qkv_b)); /* [B,n,3C] */
    if (qk_mask || v_mask) qkv = chan_mask_qkv(ctx, qkv, qk_mask, v_mask, m->cfg.num_heads);
    if (qkv_out) *qkv_out = qkv;
    ag_tensor *a = log_size ? ag_attention_sized(ctx, qkv, m->cfg.num_heads, log_size, cls_attn)
                            : ag_attention_bf16(ctx, qkv, m->cfg.num_heads, policy, cls_attn); /* [B,n,C] */
    /* proj and the residual add in one op: proj's own output is never stored. */
    return ag_linear_residual(ctx, a, param(m, b->proj_w), param(m, b->proj_b), x);
}

static ag_tensor *block_attention(ag_ctx *ctx, vit_model *m, size_t i, ag_tensor *x, ag_tensor *policy,
                                  ag_tensor **cls_attn, const vit_forward_opts *opts, vit_output *out) {
    return block_attention_ex(ctx, m, i, x, policy, cls_attn, opts, out, NULL, NULL);
}

/* x [B,n,C] -> x + fc2(gelu(fc1(norm2(x)))). The MLP gate masks fc1's outputs before the GELU
 * (gelu(0) = 0, so the kept product is the same as masking after it). */
static ag_tensor *block_mlp(ag_ctx *ctx, vit_model *m, size_t i, ag_tensor *x, const vit_forward_opts *opts,
                            vit_output *out) {
    const vit_block *b = &m->blocks[i];
    ag_tensor *mask = channel_mask(ctx, m, i, CHAN_MLP, opts, out);
    /* Unmasked, fc1's output feeds only the GELU before fc2's product: BF16 keeps it as bf16
     * alone, as PyTorch's autocast does. */
    ag_tensor *h = (mask ? ag_layernorm_linear : ag_layernorm_linear_bf16)(
        ctx, x, param(m, b->norm2_w), param(m, b->norm2_b), m->cfg.ln_eps, param(m, b->fc1_w), param(m, b->fc1_b)); /* [B,n,4C] */
    if (mask) h = ag_mul(ctx, h, mask);
    /* GELU, fc2 and the residual in one op: of the [B,n,4C] tensors only fc1's output is kept
     * (the GELU is recomputed in backward), and fc2's output is never stored. */
    return ag_gelu_linear_residual(ctx, h, param(m, b->fc2_w), param(m, b->fc2_b), x);
}

/* images [B,Cin,H,W] -> [B,1+N,C]: patch embedding, cls token, position embedding. */
static ag_tensor *embed(ag_ctx *ctx, vit_model *m, ag_tensor *images) {
    const vit_config *c = &m->cfg;
    const size_t B = images->shape[0], C = c->embed_dim;
    ag_tensor *patches = ag_patchify(ctx, images, c->patch_size);                    /* [B,N,P] */
    size_t w_shape[2] = {C, c->in_chans * c->patch_size * c->patch_size};
    ag_tensor *w = ag_reshape(ctx, param(m, m->patch_w), 2, w_shape);                /* [C,P] */
    ag_tensor *x = ag_linear(ctx, patches, w, param(m, m->patch_b));                 /* [B,N,C] */
    ag_tensor *cls = ag_expand0(ctx, param(m, m->cls_token), B);                     /* [B,1,C] */
    ag_tensor *parts[2] = {cls, x};
    x = ag_concat(ctx, 2, parts, 1);                                                 /* [B,1+N,C] */
    return ag_add(ctx, x, param(m, m->pos_embed));
}

static ag_tensor *ones(ag_ctx *ctx, size_t rows, size_t cols) {
    ag_tensor *t = ag_new2(ctx, rows, cols);
    if (t)
        for (size_t i = 0; i < rows * cols; i++) t->data[i] = 1.0f;
    return t;
}

/* Index bookkeeping for inference: orig[b, j] is the original patch index of spatial token j. */
static int32_t *compose_kept(ag_ctx *ctx, const int32_t *orig, size_t n_in, const int32_t *kept_pos, size_t B, size_t k) {
    int32_t *out = ag_alloc(ctx, B * k * sizeof *out);
    if (!out) return NULL;
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < k; j++) {
            int32_t p = kept_pos[b * k + j];
            out[b * k + j] = (p >= 0 && (size_t)p < n_in) ? orig[b * n_in + (size_t)p] : -1;
        }
    return out;
}

/* A stage's squeezed_into [B,n] (incoming positions, tok_infer_stage) -> [B,N] in original
 * patch indices, through orig [B,n] of the incoming tokens. */
static int32_t *squeezed_patches(ag_ctx *ctx, const int32_t *orig, const int32_t *into, size_t B, size_t n, size_t N) {
    int32_t *out = ag_alloc(ctx, B * N * sizeof *out);
    if (!out) return NULL;
    for (size_t i = 0; i < B * N; i++) out[i] = -1;
    for (size_t b = 0; b < B; b++)
        for (size_t j = 0; j < n; j++) {
            const int32_t h = into[b * n + j], p = orig[b * n + j];
            if (h >= 0 && p >= 0) out[b * N + (size_t)p] = orig[b * n + (size_t)h];
        }
    return out;
}

/* x [B,1+n,C] -> logits [B,K] from the cls token; out->tokens = normed spatial tokens. */
static ag_tensor *head(ag_ctx *ctx, vit_model *m, ag_tensor *x, vit_output *out) {
    const size_t B = x->shape[0], n1 = x->shape[1], C = m->cfg.embed_dim;
    x = ag_layernorm(ctx, x, param(m, m->norm_w), param(m, m->norm_b), m->cfg.ln_eps);
    ag_tensor *cls = ag_slice(ctx, x, 1, 0, 1);                                      /* [B,1,C] */
    cls = ag_reshape(ctx, cls, 2, (size_t[]){B, C});
    out->tokens = n1 > 1 ? ag_slice(ctx, x, 1, 1, n1 - 1) : NULL;                    /* [B,n,C] */
    return ag_linear(ctx, cls, param(m, m->head_w), param(m, m->head_b));            /* [B,K] */
}

/* ToMe / ATME: merging between attention and MLP (tome in every block, atme at prune_loc),
 * proportional attention with the sizes so far, the source map after every merging block.
 * Train and inference are the same computation. x [B,1+N,C] -> final sequence. */
static ag_tensor *merging_blocks(ag_ctx *ctx, vit_model *m, ag_tensor *x, const vit_forward_opts *opts,
                                 vit_output *out) {
    const vit_config *c = &m->cfg;
    const tok_config *tps = &m->tps;
    const size_t B = x->shape[0], N = vit_num_patches(c), depth = c->depth;
    tok_merge_state st;
    if (tok_merge_state_init(ctx, &st, B, N) != TPSC_OK) return NULL;
    int *r = ag_alloc(ctx, depth * sizeof *r);
    out->patch_token_block = ag_alloc(ctx, depth * sizeof *out->patch_token_block);
    out->token_size_block = ag_alloc(ctx, depth * sizeof *out->token_size_block);
    if (!r || !out->patch_token_block || !out->token_size_block) return NULL;
    if (tps->method == TOK_TOME) tok_tome_r_list(tps, (int)depth, r);
    int s = 0;
    for (size_t i = 0; i < depth && x; i++) {
        const bool atme_here = tok_method_merges_on_grid(tps->method) && s < tps->n_stages && tps->prune_loc[s] == (int)i;
        ag_tensor *qkv = NULL, *cls_attn = NULL;
        x = block_attention_ex(ctx, m, i, x, NULL, atme_here ? &cls_attn : NULL, opts, out,
                               tps->prop_attn ? st.log_size : NULL, &qkv);
        if (tps->method == TOK_TOME) {
            x = tok_tome_merge(ctx, &st, x, qkv, c->num_heads, r[i]);
        } else if (atme_here) {
            size_t keep = opts->keep_override ? opts->keep_override[s] : tok_keep_count(tps, s, N);
            if (keep < 1 || keep > N)
                return ag_error(ctx, TPSC_ERR_ARG, "atme stage %d: cannot keep %zu of %zu tokens", s, keep, N);
            x = tok_atme_merge(ctx, &st, x, qkv, c->num_heads, cls_attn, keep);
            out->kept_count[s] = st.t - 1;
            s++;
        }
        out->patch_token_block[i] = st.patch_token;
        out->token_size_block[i] = st.size;
        x = block_mlp(ctx, m, i, x, opts, out);
    }
    out->patch_token = st.patch_token;
    out->token_size = st.size;
    return x;
}

ag_tensor *vit_forward(ag_ctx *ctx, vit_model *m, ag_tensor *images, const vit_forward_opts *opts, vit_output *out) {
    memset(out, 0, sizeof *out);
    if (!ag_ok(ctx, 1, images)) return NULL;
    const vit_config *c = &m->cfg;
    const tok_config *tps = &m->tps;
    if (images->ndim != 4 || images->shape[1] != c->in_chans || images->shape[2] != c->img_size ||
        images->shape[3] != c->img_size) {
        char s[64];
        return ag_error(ctx, TPSC_ERR_SHAPE, "model expects images [B, %zu, %zu, %zu], got %s", c->in_chans,
                        c->img_size, c->img_size, ag_shape_str(images, s, sizeof s));
    }
    const size_t B = images->shape[0], N = vit_num_patches(c);
    const bool predictor = tok_method_has_predictor(tps->method);
    const bool evit = tps->method == TOK_EVIT || tps->method == TOK_ETPS;
    const bool train = opts->mode == VIT_TRAIN;
    const bool squeezes = tok_method_squeezes(tps->method);
    out->n_stages = (tps->method == TOK_NONE || tps->method == TOK_TOME) ? 0 : tps->n_stages;

    ag_tensor *x = embed(ctx, m, images);
    if (tok_method_merges(tps->method)) {
        if (opts->n_probe > 0)
            return ag_error(ctx, TPSC_ERR_ARG, "vit_forward: attention probes need a dense model (method none), not %s",
                            tok_method_name(tps->method));
        x = x ? merging_blocks(ctx, m, x, opts, out) : NULL;
        if (!x) return NULL;
        out->logits = head(ctx, m, x, out);
        return out->logits;
    }
    ag_tensor *prev = NULL, *policy = NULL;
    if (train && predictor) {
        /* As DynamicViT: in training, every block runs the policy softmax (all ones before the
         * first stage), so the numerics match the official code from block 0. */
        prev = ones(ctx, B, N);
        policy = ones(ctx, B, 1 + N);
    }
    const bool removal = train && predictor && tps->train_removal;
    out->removed = removal;
    int32_t *orig = NULL; /* [B, n] original index of each current spatial token */
    size_t n = N;
    if (!train || evit || removal) {
        orig = ag_alloc(ctx, B * N * sizeof *orig);
        if (!orig) return NULL;
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < N; j++) orig[b * N + j] = (int32_t)j;
    }

    if (opts->n_probe > 0 && tps->method != TOK_NONE)
        return ag_error(ctx, TPSC_ERR_ARG, "vit_forward: attention probes need a dense model (method none), not %s",
                        tok_method_name(tps->method));
    int s = 0, probe = 0;
    for (size_t i = 0; i < c->depth && x; i++) {
        bool stage_here = s < out->n_stages && tps->prune_loc[s] == (int)i;
        if (stage_here && removal) {
            /* The blocks after this stage run on the kept tokens only (stage_removed.c). */
            tok_removed_stage rs;
            if (tok_train_stage_removed(ctx, tps, s, &m->pred[s], &m->params, x, prev, orig, N, opts->gumbel_u[s],
                                        opts->rng, &rs) != TPSC_OK)
                return NULL;
            x = rs.x;
            prev = rs.prev;
            orig = rs.orig;
            n = rs.k;
            out->keep[s] = rs.keep;
            out->score[s] = rs.score;
            out->kept_orig[s] = rs.orig;
            out->kept_count[s] = rs.k;
            ag_tensor *parts[2] = {ones(ctx, B, 1), prev};
            policy = ag_concat(ctx, 2, parts, 1);                                    /* [B,1+k] */
            s++;
        } else if (stage_here && predictor && train) {
            ag_tensor *keep = NULL;
            x = tok_train_stage(ctx, tps, s, &m->pred[s], &m->params, x, prev, opts->gumbel_u[s], opts->rng,
                                &keep, &out->score[s]);
            if (!keep) return NULL;
            out->keep[s] = keep;
            prev = keep;
            if (opts->stop_pruned_grad) {
                /* keep * constant(keep): the same 0/1 values, no gradient into a pruned entry */
                ag_tensor *frozen = ag_new2(ctx, B, N);
                if (!frozen) return NULL;
                memcpy(frozen->data, keep->data, B * N * sizeof *frozen->data);
                prev = ag_mul(ctx, keep, frozen);
            }
            ag_tensor *parts[2] = {ones(ctx, B, 1), prev};
            policy = ag_concat(ctx, 2, parts, 1);                                    /* [B,1+N] */
            s++;
        } else if (stage_here && predictor) {
            size_t k = opts->keep_override ? opts->keep_override[s] : tok_keep_count(tps, s, N);
            if (k < 1 || k > n) return ag_error(ctx, TPSC_ERR_ARG, "stage %d: cannot keep %zu of %zu tokens", s, k, n);
            int32_t *kept_pos = ag_alloc(ctx, B * k * sizeof *kept_pos);
            int32_t *into = squeezes ? ag_alloc(ctx, B * n * sizeof *into) : NULL;
            if (!kept_pos || (squeezes && !into)) return NULL;
            x = tok_infer_stage(ctx, tps, &m->pred[s], &m->params, x, k, kept_pos, into);
            if (x && into && !(out->squeezed_into[s] = squeezed_patches(ctx, orig, into, B, n, N))) return NULL;
            orig = compose_kept(ctx, orig, n, kept_pos, B, k);
            if (!orig) return NULL;
            out->kept_orig[s] = orig;
            out->kept_count[s] = k;
            n = k;
            s++;
        }
        if (stage_here && evit) {
            /* EViT prunes inside the block: after the attention residual, before the MLP. */
            ag_tensor *cls_attn = NULL;
            x = block_attention(ctx, m, i, x, NULL, &cls_attn, opts, out);
            size_t n_cur = x ? x->shape[1] - 1 : 0;
            size_t k = opts->keep_override ? opts->keep_override[s] : tok_evit_keep_count(tps, s, n_cur);
            if (k < 1 || k > n_cur) return ag_error(ctx, TPSC_ERR_ARG, "stage %d: cannot keep %zu of %zu tokens", s, k, n_cur);
            int32_t *kept_pos = ag_alloc(ctx, B * k * sizeof *kept_pos);
            int32_t *into = squeezes && !train ? ag_alloc(ctx, B * n_cur * sizeof *into) : NULL;
            if (!kept_pos || (squeezes && !train && !into)) return NULL;
            x = tok_evit_stage(ctx, tps, x, cls_attn, k, kept_pos, into);
            if (x && into && !(out->squeezed_into[s] = squeezed_patches(ctx, orig, into, B, n_cur, N))) return NULL;
            int32_t *kept = compose_kept(ctx, orig, n_cur, kept_pos, B, k);
            if (!kept || !x) return NULL;
            out->kept_orig[s] = kept;
            out->kept_count[s] = k;
            n = x->shape[1] - 1; /* evit: k kept + the fused token */
            if (n != k) {
                /* The fused token has no original index. */
                orig = ag_alloc(ctx, B * n * sizeof *orig);
                if (!orig) return NULL;
                for (size_t b = 0; b < B; b++) {
                    memcpy(orig + b * n, kept + b * k, k * sizeof *orig);
                    for (size_t j = k; j < n; j++) orig[b * n + j] = -1;
                }
            } else {
                orig = kept;
            }
            s++;
            x = block_mlp(ctx, m, i, x, opts, out);
            continue;
        }
        bool probe_here = probe < opts->n_probe && opts->probe_blocks[probe] == (int)i;
        x = block_attention(ctx, m, i, x, policy, probe_here ? &out->cls_attn[probe++] : NULL, opts, out);
        x = block_mlp(ctx, m, i, x, opts, out);
    }
    if (!x) return NULL;
    out->logits = head(ctx, m, x, out);
    if (removal && out->tokens) {
        /* [B,n,C] -> [B,N,C] at the tokens' original positions: the token distillation picks
         * rows by the last keep mask, as on the masked path */
        out->tokens = ag_scatter_rows(ctx, out->tokens, orig, N);
        if (!out->tokens) return NULL;
    }
    return out->logits;
}
