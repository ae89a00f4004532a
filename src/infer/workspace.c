/* The per-thread workspace (every buffer a run needs, sized once for the largest batch),
 * budgets, the run entry points and what a run reports (kept tokens, top-k). */
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/keep.h"
#include "src/common/macs.h"
#include "src/infer/internal.h"

static void *aligned(size_t bytes, bool *ok) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) {
        *ok = false;
        return NULL;
    }
    return p;
}

void tps_workspace_free(tps_workspace *ws) {
    if (!ws) return;
    void *bufs[] = {ws->x, ws->x_next, ws->h, ws->qkv, ws->attn_out, ws->hidden, ws->cls_rows, ws->score,
                    ws->thread_scratch, ws->lay.off, ws->lay.len, ws->lay_next.off, ws->lay_next.len, ws->orig,
                    ws->orig_next, ws->order, ws->pre, ws->size, ws->size_next, ws->log_size, ws->patch_tok,
                    (void *)ws->final_rows};
    for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) free(bufs[i]);
    free(ws->resized.p);
    free(ws->resize_work.p);
    for (int s = 0; s < TI_MAX_STAGES; s++) {
        free(ws->kept[s]);
        free(ws->kept_n[s]);
    }
    free(ws);
}

tps_status tps_workspace_create(const tps_model *m, size_t max_batch, tps_workspace **out) {
    if (out) *out = NULL;
    if (!m || !out) return ti_fail(TPS_ERR_ARG, "tps_workspace_create: NULL argument");
    if (max_batch < 1 || max_batch > (1u << 16))
        return ti_fail(TPS_ERR_ARG, "tps_workspace_create: max_batch %zu is outside 1..65536", max_batch);
    tps_workspace *ws = calloc(1, sizeof *ws);
    if (!ws) return ti_fail(TPS_ERR_NOMEM, "no memory for a workspace");
    const size_t C = m->C, N = m->N, N1 = N + 1, B = max_batch, M = B * N1;
    size_t wide = m->F > C ? m->F : C;
    if (m->P > wide) wide = m->P;
    ws->m = m;
    ws->max_batch = B;
    ws->max_rows = M;
    ws->nthreads = omp_get_max_threads();
    const char *split = getenv("TPSINFER_SPLIT");
    ws->split = !(split && split[0] == '0');
    const char *spin = getenv("TPSINFER_SPIN");
    ws->barrier_spin = spin ? (unsigned)strtoul(spin, NULL, 10) : TI_BARRIER_SPIN;
    /* attention scores [N1,N1], or: sort room, the cls attention and flags (4 N1), dropped rows
     * [N,C], squeeze scratch (<= 2 N C + N^2 + 3 N); rounded to whole cache lines */
    ws->per_thread = N1 * N1 + 3 * N1 * C + 8 * N1 + C + 64;
    /* merging: the plan's metric, map and sort room, then ATME's importance [N] */
    const bool merges = tok_method_merges(m->method);
    const size_t merge_room = merges ? ti_merge_scratch_floats(N1, m->D) + N : 0;
    if (merge_room > ws->per_thread) ws->per_thread = merge_room;
    /* the fused attention kernel's packed keys, values and tile (channel pruning keeps dq, dv <= D) */
    const size_t attn_room = ti_attention_scratch_floats(N1, m->D, m->D);
    if (attn_room > ws->per_thread) ws->per_thread = attn_room;
    ws->per_thread = (ws->per_thread + 15) & ~(size_t)15;
    bool ok = true;
    const size_t f = sizeof(float), i32 = sizeof(int32_t), sz = sizeof(size_t);
    ws->x = aligned(M * C * f, &ok);
    ws->x_next = aligned(M * C * f, &ok);
    ws->h = aligned(M * C * f, &ok);
    ws->attn_out = aligned(M * C * f, &ok);
    ws->qkv = aligned(M * 3 * C * f, &ok);
    ws->hidden = aligned(M * wide * f, &ok);
    ws->cls_rows = aligned(B * m->H * N1 * f, &ok);
    ws->score = aligned(M * f, &ok);
    ws->thread_scratch = aligned((size_t)ws->nthreads * ws->per_thread * f, &ok);
    ws->lay.off = aligned(B * sz, &ok);
    ws->lay.len = aligned(B * sz, &ok);
    ws->lay_next.off = aligned(B * sz, &ok);
    ws->lay_next.len = aligned(B * sz, &ok);
    ws->orig = aligned(B * N * i32, &ok);
    ws->orig_next = aligned(B * N * i32, &ok);
    ws->order = aligned(B * N * i32, &ok);
    ws->pre = aligned(B * m->in_chans * m->img * m->img * f, &ok);
    ws->final_rows = aligned(B * sizeof(float *), &ok);
    if (merges) {
        ws->size = aligned(M * f, &ok);
        ws->size_next = aligned(M * f, &ok);
        ws->log_size = aligned(M * f, &ok);
        ws->patch_tok = aligned(B * N * i32, &ok);
    }
    for (int s = 0; s < m->info.n_stages; s++) {
        ws->kept[s] = aligned(B * N * i32, &ok);
        ws->kept_n[s] = aligned(B * sz, &ok);
    }
    if (!ok) {
        tps_workspace_free(ws);
        return ti_fail(TPS_ERR_NOMEM, "no memory for a workspace of batch %zu (%zu tokens of width %zu)", B, M, C);
    }
    memcpy(ws->keep_frac, m->info.keep_frac, sizeof ws->keep_frac);
    ws->budget = (tps_budget){.mode = TPS_BUDGET_FIXED, .min_frac = 0.0f, .max_frac = 1.0f};
    *out = ws;
    return TPS_OK;
}

tps_status tps_workspace_set_budget(tps_workspace *ws, const tps_budget *b) {
    if (!ws || !b) return ti_fail(TPS_ERR_ARG, "tps_workspace_set_budget: NULL argument");
    const tps_model *m = ws->m;
    if (b->mode == TPS_BUDGET_FIXED) {
        if (!(b->keep_ratio == 0.0f || (b->keep_ratio > 0.0f && b->keep_ratio <= 1.0f)))
            return ti_fail(TPS_ERR_ARG, "keep ratio %g is outside (0, 1] (0: the model's own)", (double)b->keep_ratio);
        if (b->keep_ratio > 0.0f && (m->method == TOK_NONE || m->method == TOK_TOME))
            return ti_fail(TPS_ERR_ARG, "keep ratio %g given for a model of method %s, which has no keep ratio%s",
                           (double)b->keep_ratio, m->info.method,
                           m->method == TOK_TOME ? " (ToMe merges r tokens per block: export at another tome_r)" : "");
        if (b->keep_ratio > 0.0f)
            keep_fill_rho(ws->keep_frac, m->info.n_stages, b->keep_ratio);
        else
            memcpy(ws->keep_frac, m->info.keep_frac, sizeof ws->keep_frac);
    } else if (b->mode == TPS_BUDGET_THRESHOLD) {
        if (!tok_method_has_predictor(m->method))
            return ti_fail(TPS_ERR_ARG, "threshold budgets need a score predictor (dynamicvit or dtps), the model is %s",
                           m->info.method);
        if (!(b->threshold >= 0.0f && b->threshold < 1.0f))
            return ti_fail(TPS_ERR_ARG, "threshold %g is outside [0, 1)", (double)b->threshold);
        if (!(b->min_frac >= 0.0f && b->min_frac <= 1.0f && b->max_frac > 0.0f && b->max_frac <= 1.0f &&
              b->min_frac <= b->max_frac))
            return ti_fail(TPS_ERR_ARG, "threshold budget floor %g and cap %g must satisfy 0 <= floor <= cap <= 1, cap > 0",
                           (double)b->min_frac, (double)b->max_frac);
    } else {
        return ti_fail(TPS_ERR_ARG, "unknown budget mode %d", (int)b->mode);
    }
    ws->budget = *b;
    return TPS_OK;
}

tps_status tps_run(tps_workspace *ws, const float *images, size_t B, float *logits) {
    if (!ws || !images || !logits) return ti_fail(TPS_ERR_ARG, "tps_run: NULL argument");
    if (B < 1 || B > ws->max_batch)
        return ti_fail(TPS_ERR_ARG, "tps_run: batch %zu is outside 1..%zu (the workspace's max_batch)", B, ws->max_batch);
    return ti_forward(ws, images, B, logits);
}

tps_status tps_run_rgb8(tps_workspace *ws, const uint8_t *pixels, size_t B, int width, int height, float *logits) {
    if (!ws || !pixels || !logits) return ti_fail(TPS_ERR_ARG, "tps_run_rgb8: NULL argument");
    if (B < 1 || B > ws->max_batch)
        return ti_fail(TPS_ERR_ARG, "tps_run_rgb8: batch %zu is outside 1..%zu", B, ws->max_batch);
    const tps_model *m = ws->m;
    const size_t per_in = (size_t)width * (size_t)height * 3, per_out = m->in_chans * m->img * m->img;
    for (size_t b = 0; b < B; b++) {
        tps_status st = ti_preprocess(m, pixels + b * per_in, width, height, ws->pre + b * per_out, &ws->resized,
                                      &ws->resize_work);
        if (st != TPS_OK) return st;
    }
    return ti_forward(ws, ws->pre, B, logits);
}

int tps_num_stages(const tps_workspace *ws) { return ws ? ws->n_stages_run : 0; }

tps_status tps_kept_tokens(const tps_workspace *ws, int stage, size_t b, const int32_t **idx, size_t *n) {
    if (!ws || !idx || !n) return ti_fail(TPS_ERR_ARG, "tps_kept_tokens: NULL argument");
    if (stage < 0 || stage >= ws->n_stages_run)
        return ti_fail(TPS_ERR_ARG, "tps_kept_tokens: stage %d, the last run had %d stages", stage, ws->n_stages_run);
    if (b >= ws->last_batch)
        return ti_fail(TPS_ERR_ARG, "tps_kept_tokens: image %zu, the last run had %zu", b, ws->last_batch);
    *idx = ws->kept[stage] + b * ws->m->N;
    *n = ws->kept_n[stage][b];
    return TPS_OK;
}

tps_status tps_token_map(const tps_workspace *ws, size_t b, const int32_t **patch_token, size_t *n_tokens) {
    if (!ws || !patch_token || !n_tokens) return ti_fail(TPS_ERR_ARG, "tps_token_map: NULL argument");
    if (!ws->patch_tok)
        return ti_fail(TPS_ERR_ARG, "tps_token_map: the model's method %s does not merge tokens (tome, atme do)",
                       ws->m->info.method);
    if (b >= ws->last_batch)
        return ti_fail(TPS_ERR_ARG, "tps_token_map: image %zu, the last run had %zu", b, ws->last_batch);
    *patch_token = ws->patch_tok + b * ws->m->N;
    *n_tokens = ws->last_tokens;
    return TPS_OK;
}

tps_status tps_patch_grid(const tps_workspace *ws, size_t b, float *grid) {
    if (!ws || !grid) return ti_fail(TPS_ERR_ARG, "tps_patch_grid: NULL argument");
    const tps_model *m = ws->m;
    if (m->method != TOK_NONE && !ws->patch_tok)
        return ti_fail(TPS_ERR_ARG,
                       "tps_patch_grid: the model's method %s removes tokens, so some patches have none (dense and the "
                       "merging methods tome, atme, cait keep a token for every patch)",
                       m->info.method);
    if (b >= ws->last_batch)
        return ti_fail(TPS_ERR_ARG, "tps_patch_grid: image %zu, the last run had %zu", b, ws->last_batch);
    const size_t C = m->C, N = m->N;
    const float *cls = ws->final_rows[b];
    const int32_t *map = ws->patch_tok ? ws->patch_tok + b * N : NULL;
    /* each cell: the final LayerNorm of its token's row (row 0 is cls; token t is row 1 + t) */
    for (size_t p = 0; p < N; p++)
        ti_layernorm(cls + (1 + (map ? (size_t)map[p] : p)) * C, 1, C, m->norm_w, m->norm_b, m->ln_eps, grid + p * C);
    return TPS_OK;
}

double tps_mean_kept(const tps_workspace *ws, int stage) {
    if (!ws || stage < 0 || stage >= ws->n_stages_run || ws->last_batch == 0) return 0.0;
    double sum = 0.0;
    for (size_t b = 0; b < ws->last_batch; b++) sum += (double)ws->kept_n[stage][b];
    return sum / (double)ws->last_batch;
}

typedef struct prob_idx {
    float p;
    int32_t i;
} prob_idx;

static int by_prob_desc(const void *pa, const void *pb) {
    const prob_idx *a = pa, *b = pb;
    if (a->p != b->p) return a->p > b->p ? -1 : 1;
    return (a->i > b->i) - (a->i < b->i);
}

tps_status tps_topk(const float *logits, size_t B, size_t K, size_t k, int32_t *idx, float *prob) {
    if (!logits || !idx) return ti_fail(TPS_ERR_ARG, "tps_topk: NULL argument");
    if (K < 1 || k < 1 || k > K) return ti_fail(TPS_ERR_ARG, "tps_topk: top-%zu of %zu classes", k, K);
    prob_idx *t = malloc(K * sizeof *t);
    if (!t) return ti_fail(TPS_ERR_NOMEM, "tps_topk: no memory for %zu classes", K);
    for (size_t b = 0; b < B; b++) {
        const float *row = logits + b * K;
        float mx = row[0];
        for (size_t c = 1; c < K; c++) mx = row[c] > mx ? row[c] : mx;
        double sum = 0.0;
        for (size_t c = 0; c < K; c++) sum += exp((double)row[c] - mx);
        for (size_t c = 0; c < K; c++) t[c] = (prob_idx){(float)(exp((double)row[c] - mx) / sum), (int32_t)c};
        qsort(t, K, sizeof *t, by_prob_desc);
        for (size_t j = 0; j < k; j++) {
            idx[b * k + j] = t[j].i;
            if (prob) prob[b * k + j] = t[j].p;
        }
    }
    free(t);
    return TPS_OK;
}

/* ---- cost ---------------------------------------------------------------------------------
 * MACs of one image as the forward pass above runs it: every matrix product (linears,
 * attention QK^T and AV, predictors, the squeeze's similarities and sums, EViT's fusion). */
double tps_model_macs(const tps_model *m, float keep_ratio) {
    if (!m) return 0.0;
    float kf[TI_MAX_STAGES];
    const int ns = m->method == TOK_NONE ? 0 : m->info.n_stages;
    memcpy(kf, m->info.keep_frac, sizeof kf);
    if (keep_ratio > 0.0f && keep_ratio <= 1.0f) keep_fill_rho(kf, ns, keep_ratio);
    macs_vit vit = {m->img, m->patch, m->in_chans, m->C, m->depth, m->F, m->K, NULL};
    const macs_tokens tokens = {m->method, ns, m->info.prune_loc, kf, !m->info.fuse_token, m->merge_r};
    if (!m->channels_pruned) return macs_per_image(&vit, &tokens);
    /* the blocks' kept widths (channel pruning) */
    size_t *w = malloc(3 * m->depth * sizeof *w);
    if (!w) return 0.0;
    for (size_t i = 0; i < m->depth; i++)
        w[i] = m->blocks[i].w.dq, w[m->depth + i] = m->blocks[i].w.dv, w[2 * m->depth + i] = m->blocks[i].w.f;
    const macs_widths widths = {m->H, w, w + m->depth, w + 2 * m->depth};
    vit.widths = &widths;
    const double macs = macs_per_image(&vit, &tokens);
    free(w);
    return macs;
}
