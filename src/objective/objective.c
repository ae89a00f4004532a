#include "src/objective/objective.h"

#include <string.h>

#include "autograd/ops.h"

/* mean_s mean_b (mean_i keep[b,i] - frac_s)^2 over the stages that carry masks. */
static ag_tensor *ratio_loss(ag_ctx *ctx, const tok_config *tps, const vit_output *st) {
    ag_tensor *sum = NULL;
    int stages = 0;
    for (int s = 0; s < st->n_stages; s++) {
        if (!st->keep[s]) continue;
        ag_tensor *kept_frac = ag_mean_dim(ctx, st->keep[s], 1);                 /* [B] */
        ag_tensor *d = ag_add_scalar(ctx, kept_frac, -tps->keep_frac[s]);
        ag_tensor *term = ag_mean(ctx, ag_mul(ctx, d, d));
        sum = sum ? ag_add(ctx, sum, term) : term;
        stages++;
    }
    return stages ? ag_scale(ctx, sum, 1.0f / (float)stages) : NULL;
}

/* mean over the gates present of (kept fraction - target)^2. The gates' hard masks carry the
 * straight-through gradient, as the token masks of ratio_loss do. */
static ag_tensor *channel_ratio_loss(ag_ctx *ctx, const tok_config *tps, const vit_output *st) {
    ag_tensor *sum = NULL;
    int gates = 0;
    for (int i = 0; i < tps->chan.n_blocks && i < CHAN_MAX_BLOCKS; i++)
        for (int k = 0; k < CHAN_KINDS; k++) {
            ag_tensor *mask = st->chan_mask[i][k];
            if (!mask) continue;
            ag_tensor *d = ag_add_scalar(ctx, ag_mean(ctx, mask), -tps->chan.keep[k][i]);
            ag_tensor *term = ag_mul(ctx, d, d);
            sum = sum ? ag_add(ctx, sum, term) : term;
            gates++;
        }
    return gates ? ag_scale(ctx, sum, 1.0f / (float)gates) : NULL;
}

/* Token distillation over the final kept tokens (mask of the last stage > 0.5), as the
 * official DistillDiffPruningLoss: rows selected from [B*N, C], batchmean over those rows. */
static ag_tensor *token_loss(ag_ctx *ctx, const objective_config *cfg, const vit_output *st, const vit_output *te) {
    ag_tensor *mask = st->keep[st->n_stages - 1];
    if (!mask)
        return ag_error(ctx, TPSC_ERR_ARG,
                        "token distillation: the student has no last-stage keep mask (needs a VIT_TRAIN output)");
    if (!st->tokens || !te->tokens)
        return ag_error(ctx, TPSC_ERR_ARG, "token distillation: the %s output has no final tokens",
                        st->tokens ? "teacher" : "student");
    /* rows are picked by position in [B*N]: student, teacher and mask cover the same tokens */
    char ss[64], ts[64], ms[64];
    if (st->tokens->ndim != 3 || te->tokens->ndim != 3 || mask->ndim != 2 ||
        memcmp(st->tokens->shape, te->tokens->shape, 3 * sizeof(size_t)) != 0 ||
        mask->shape[0] != st->tokens->shape[0] || mask->shape[1] != st->tokens->shape[1])
        return ag_error(ctx, TPSC_ERR_SHAPE,
                        "token distillation: student tokens %s, teacher tokens %s and keep mask %s must be [B,N,C], "
                        "[B,N,C] and [B,N]", ag_shape_str(st->tokens, ss, sizeof ss),
                        ag_shape_str(te->tokens, ts, sizeof ts), ag_shape_str(mask, ms, sizeof ms));
    const size_t B = st->tokens->shape[0], N = st->tokens->shape[1], C = st->tokens->shape[2];
    int32_t *rows = ag_alloc(ctx, B * N * sizeof *rows);
    if (!rows) return NULL;
    size_t n_rows = 0;
    for (size_t i = 0; i < B * N; i++)
        if (mask->data[i] > 0.5f) rows[n_rows++] = (int32_t)i;
    if (n_rows == 0) return NULL; /* official: a zero loss when nothing is kept */
    size_t flat[3] = {1, B * N, C};
    ag_tensor *sp = ag_gather_rows(ctx, ag_reshape(ctx, st->tokens, 3, flat), rows, n_rows); /* [1,T,C] */
    ag_tensor *tp = ag_gather_rows(ctx, ag_reshape(ctx, te->tokens, 3, flat), rows, n_rows);
    if (cfg->distill_token == OBJ_DISTILL_TOKEN_MSE) return ag_mse(ctx, sp, tp);
    return ag_kl_div(ctx, ag_log_softmax(ctx, sp), ag_log_softmax(ctx, tp), (float)n_rows);
}

/* Per stage: targets [B*N,2] = (1,0) for the teacher's top-k_s tokens by cls attention, (0,1)
 * for the rest; CE against the predictor's log-probs (log_softmax of log-probs is the identity,
 * so ag_cross_entropy_soft sees them as logits and its gradient is p - target). */
static ag_tensor *guide_loss(ag_ctx *ctx, const tok_config *tps, const vit_output *st, const vit_output *te) {
    ag_tensor *sum = NULL;
    for (int s = 0; s < st->n_stages; s++) {
        ag_tensor *logp = st->score[s], *attn = te->cls_attn[s];
        if (!logp || !attn)
            return ag_error(ctx, TPSC_ERR_ARG, "guide loss, stage %d: needs the student's predictor scores and the teacher's "
                            "cls attention at block %d", s, tps->prune_loc[s]);
        const size_t B = logp->shape[0], N = logp->shape[1];
        char sl[64], sa[64];
        if (logp->ndim != 3 || logp->shape[2] != 2 || attn->ndim != 2 || attn->shape[0] != B || attn->shape[1] != N)
            return ag_error(ctx, TPSC_ERR_SHAPE, "guide loss, stage %d: scores %s must be [B,N,2] and teacher attention %s [B,N]",
                            s, ag_shape_str(logp, sl, sizeof sl), ag_shape_str(attn, sa, sizeof sa));
        const size_t k = tok_keep_count(tps, s, N);
        int32_t *order = ag_alloc(ctx, B * N * sizeof *order);
        ag_tensor *target = ag_new2(ctx, B * N, 2);
        if (!order || !target || !tok_sort_desc(ctx, attn->data, B, N, order)) return NULL;
        for (size_t i = 0; i < B * N; i++) {
            target->data[2 * i] = 0.0f;
            target->data[2 * i + 1] = 1.0f;
        }
        for (size_t b = 0; b < B; b++)
            for (size_t j = 0; j < k; j++) {
                const size_t row = b * N + (size_t)order[b * N + j];
                target->data[2 * row] = 1.0f;
                target->data[2 * row + 1] = 0.0f;
            }
        ag_tensor *pred = ag_reshape(ctx, logp, 2, (size_t[]){B * N, 2});
        if (st->removed && s > 0) {
            /* Real removal: the predictor scored only the tokens still present (prev = keep of
             * the stage before); the rows of absent tokens are zeros, not predictions. */
            const float *present = st->keep[s - 1]->data;
            int32_t *rows = ag_alloc(ctx, B * N * sizeof *rows);
            if (!rows) return NULL;
            size_t R = 0;
            for (size_t i = 0; i < B * N; i++)
                if (present[i] > 0.5f) rows[R++] = (int32_t)i;
            if (R == 0) return ag_error(ctx, TPSC_ERR_INTERNAL, "guide loss, stage %d: no token present", s);
            ag_tensor *t = ag_new2(ctx, R, 2);
            if (!t) return NULL;
            for (size_t r = 0; r < R; r++) memcpy(t->data + 2 * r, target->data + 2 * (size_t)rows[r], 2 * sizeof(float));
            pred = ag_reshape(ctx, ag_gather_rows(ctx, ag_reshape(ctx, pred, 3, (size_t[]){1, B * N, 2}), rows, R), 2,
                              (size_t[]){R, 2});
            target = t;
        }
        ag_tensor *term = ag_cross_entropy_soft(ctx, pred, target);
        sum = sum ? ag_add(ctx, sum, term) : term;
    }
    return sum ? ag_scale(ctx, sum, 1.0f / (float)st->n_stages) : NULL;
}

tpsc_status objective_compute(ag_ctx *ctx, const tok_config *tps, const objective_config *cfg, const vit_output *student,
                             ag_tensor *targets, const vit_output *teacher, objective_parts *out) {
    *out = (objective_parts){0};
    out->ce = ag_cross_entropy_soft(ctx, student->logits, targets);
    ag_tensor *total = ag_scale(ctx, out->ce, cfg->clf_weight);
    if (cfg->ratio_weight != 0.0f && tok_method_has_predictor(tps->method)) {
        out->ratio = ratio_loss(ctx, tps, student);
        if (out->ratio) total = ag_add(ctx, total, ag_scale(ctx, out->ratio, cfg->ratio_weight));
    }
    if (cfg->channel_ratio_weight != 0.0f && chan_enabled(&tps->chan)) {
        out->chan_ratio = channel_ratio_loss(ctx, tps, student);
        if (out->chan_ratio) total = ag_add(ctx, total, ag_scale(ctx, out->chan_ratio, cfg->channel_ratio_weight));
    }
    if (teacher && cfg->distill_weight != 0.0f) {
        if (cfg->distill_cls) {
            const float B = (float)student->logits->shape[0];
            out->cls_kl = ag_kl_div(ctx, ag_log_softmax(ctx, student->logits), ag_log_softmax(ctx, teacher->logits), B);
            total = ag_add(ctx, total, ag_scale(ctx, out->cls_kl, cfg->distill_weight));
        }
        if (cfg->distill_token != OBJ_DISTILL_TOKEN_NONE && tok_method_has_predictor(tps->method) && student->n_stages > 0) {
            out->token_kl = token_loss(ctx, cfg, student, teacher);
            if (out->token_kl) total = ag_add(ctx, total, ag_scale(ctx, out->token_kl, cfg->distill_weight));
        }
    }
    if (cfg->guide_weight != 0.0f && tok_method_has_predictor(tps->method) && student->n_stages > 0) {
        if (!teacher) return tpsc_fail(TPSC_ERR_ARG, "tps loss: the guide term (weight %g) needs a teacher", (double)cfg->guide_weight);
        out->guide = guide_loss(ctx, tps, student, teacher);
        if (out->guide) total = ag_add(ctx, total, ag_scale(ctx, out->guide, cfg->guide_weight));
    }
    /* a term that failed (NULL, error kept in ctx) must not leave a total without it */
    tpsc_status st = ag_ctx_status(ctx);
    out->total = st == TPSC_OK ? total : NULL;
    return st != TPSC_OK ? st : total ? TPSC_OK : tpsc_fail(TPSC_ERR_ARG, "tps loss: no total computed");
}
