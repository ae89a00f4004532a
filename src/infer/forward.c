/* The forward pass on packed, ragged token sequences.
 *
 * All images' tokens live in one matrix x [M,C], image b in rows off[b] .. off[b]+len[b]-1 with
 * its cls token first (M = sum_b len[b]). Everything row-wise (LayerNorm, the linears, GELU,
 * the residuals, the score predictor's layers) runs over all M rows, one sgemm per linear and
 * team member; attention runs per (image, head) over query rows, so images of different
 * lengths never pad. Pruning stages run per image (sort, gather, squeeze).
 *
 * One pass is ONE OpenMP parallel region, run by a team of T members with single-threaded
 * BLAS (OpenBLAS runs single-threaded inside a parallel region). Each FP32 linear is shared
 * by output columns (team_linear); attention and the other row-wise steps by rows (at batch
 * 1, attention by heads). A block has seven barriers: after each LayerNorm and each linear
 * (the next step reads whole rows or every row) and after attention (proj reads every row);
 * GELU runs on each member's own fc1 columns and needs none. The barrier is the team's own
 * (team_barrier.c: adaptive spin, then futex). Pruning stages add a few. This replaces a thread team per sgemm and per
 * element-wise pass (~100 fork/joins a pass), which dominated batch-1 latency.
 *
 * The order of operations is that of the training framework's VIT_INFER path
 * (src/model/vit_forward.c, src/tokens/stage_infer.c), which follows the official TPS-CVPR2023 eval
 * code (predictor methods) and EViT's (evit/etps). */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "src/common/keep.h"
#include "src/common/merge_rules.h"
#include "src/common/rows.h"
#include "src/common/vecmath.h"
#include "src/infer/gemm.h" /* the panel back-end's kernel */
#include "src/infer/internal.h"

#define PREDICTOR_LN_EPS 1e-5f /* torch's LayerNorm default inside PredictorLG */

/* This member's scratch block. In a split batch each chunk runs a team of one (thread number
 * 0), and its view starts at its own block. */
static float *thread_scratch(ti_view *ws) { return ws->scratch + (size_t)omp_get_thread_num() * ws->per_thread; }

/* This member's share [*r0, *r1) of n rows. */
static void my_rows(size_t n, size_t *r0, size_t *r1) {
    const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
    *r0 = n * t / T;
    *r1 = n * (t + 1) / T;
}

/* True when the team shares this weight by output columns (OpenBLAS weights or the panel
 * back-end's, more than one member): then every member reads every row of the input. */
static bool by_columns(const ti_weight *w) { return omp_get_num_threads() > 1 && (!w->packed || w->panels); }

/* y [M,Cout] = x w^T + b over all M rows (LIN_RESIDUAL: y += x w^T + b; LIN_GELU: y =
 * gelu(x w^T + b)), shared by the team. The caller makes the input ready: a by_columns weight
 * reads every row of x, so x must be complete (a barrier, or a copy of x the member made
 * itself); otherwise rows are split and each member reads only its own rows. The team is
 * synchronised after (consumers read whole rows).
 * OpenBLAS weights are split by output columns: each member packs only its slice of the
 * weight (OpenBLAS packs it on every call; with rows split, every member packed all of it,
 * which at the few dozen rows per member of a pruned batch-1 pass cost more than the
 * products). GELU runs on the member's own columns while they are in cache, and needs no
 * barrier of its own. Per element the operations are those of ti_linear (bias first, then
 * sgemm accumulates over the same k blocks) and ti_gelu. Weights packed once at load for
 * oneDNN (FP32 or BF16, gemm.h) keep the row split, with bias, residual and GELU fused into
 * the product. The panel back-end's weights (gemm_panel.c) are split by 64-column panels, each
 * member running every row on its own panels with the epilogue in the kernel: it reads only
 * its share of the weight. */
static void team_linear(ti_view *ws, const float *x, size_t M, size_t Cin, size_t ldx, const ti_weight *w,
                        const float *b, size_t Cout, float *y, size_t ldy, lin_epilogue epi) {
    const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
    if (w->panels) {
        const size_t P = (Cout + PANEL_COLS - 1) / PANEL_COLS;
        if (M > 0) ti_panel_linear(x, M, Cin, ldx, w, b, Cout, P * t / T, P * (t + 1) / T, y, ldy, epi);
        ti_barrier_wait(ws->bar);
        return;
    }
    if (!by_columns(w)) {
        size_t r0, r1;
        my_rows(M, &r0, &r1);
        ti_linear_epi(x + r0 * ldx, r1 - r0, Cin, ldx, w, b, Cout, y + r0 * ldy, ldy, epi);
        ti_barrier_wait(ws->bar);
        return;
    }
    const size_t c0 = t == 0 ? 0 : (Cout * t / T) & ~(size_t)15, c1 = t + 1 == T ? Cout : (Cout * (t + 1) / T) & ~(size_t)15;
    if (M > 0 && c1 > c0) {
        const size_t nc = c1 - c0;
        for (size_t r = 0; r < M; r++) {
            float *yr = y + r * ldy + c0;
            const float *br = b + c0;
            if (epi == LIN_RESIDUAL) {
                #pragma omp simd
                for (size_t o = 0; o < nc; o++) yr[o] = yr[o] + br[o];
            } else {
                memcpy(yr, br, nc * sizeof(float));
            }
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)M, (int)nc, (int)Cin, 1.0f, x, (int)ldx,
                    w->f + c0 * Cin, (int)Cin, 1.0f, y + c0, (int)ldy);
        if (epi == LIN_GELU)
            for (size_t r = 0; r < M; r++) ti_gelu(y + r * ldy + c0, nc);
    }
    ti_barrier_wait(ws->bar);
}

/* LayerNorm of x [M,C] for a team linear with weight w: returns its input (ws->h). Each
 * member normalises its own rows; a weight shared by columns reads every row, hence the
 * barrier. (Each member normalising every row into its own buffer saves that barrier but
 * measured no faster: docs/inference.md, "Figures behind the code".) */
static const float *norm_for(ti_view *ws, const ti_weight *w, const float *nw, const float *nb, float eps) {
    const size_t C = ws->m->C;
    size_t r0, r1;
    my_rows(ws->lay.rows, &r0, &r1);
    ti_layernorm(ws->x + r0 * C, r1 - r0, C, nw, nb, eps, ws->h + r0 * C);
    if (by_columns(w)) ti_barrier_wait(ws->bar);
    return ws->h;
}

/* The packed layout of B whole images (before the team starts); merging methods: every token
 * of size 1, every patch its own token. */
static void init_layout(ti_view *ws, size_t B) {
    const size_t N = ws->m->N;
    const bool merges = tok_method_merges(ws->m->method);
    ws->lay.rows = 0;
    for (size_t b = 0; b < B; b++) {
        ws->lay.off[b] = ws->lay.rows;
        ws->lay.len[b] = 1 + N;
        ws->lay.rows += 1 + N;
        for (size_t j = 0; j < N; j++) ws->orig[b * N + j] = (int32_t)j;
        if (merges)
            for (size_t j = 0; j < N; j++) ws->patch_tok[b * N + j] = (int32_t)j;
    }
    if (merges)
        for (size_t r = 0; r < ws->lay.rows; r++) ws->size[r] = 1.0f, ws->log_size[r] = 0.0f;
    ws->sized = false;
    ws->merge_failed = false;
}

/* images [B,Cin,S,S] -> x: rows cls + pos[0], then patch_embed(patch j) + pos[1+j]. Each
 * member takes a share of the B*N patches (and of the cls rows); the caller's barrier follows. */
static void embed(ti_view *ws, const float *images, size_t B) {
    const tps_model *m = ws->m;
    const size_t C = m->C, N = m->N, N1 = N + 1, P = m->P, p = m->patch, S = m->img, G = S / p, Cin = m->in_chans;
    float *patches = ws->hidden, *tok = ws->attn_out; /* [B*N,P], [B*N,C] */
    size_t t0, t1;
    my_rows(B * N, &t0, &t1);
    for (size_t t = t0; t < t1; t++) {
        const size_t b = t / N, py = (t % N) / G, px = t % G;
        float *row = patches + t * P;
        for (size_t c = 0; c < Cin; c++)
            for (size_t ky = 0; ky < p; ky++) { /* p floats: an inline copy (memcpy calls were 0.7% of a pass) */
                const float *src = images + ((b * Cin + c) * S + py * p + ky) * S + px * p;
                float *dst = row + (c * p + ky) * p;
                #pragma omp simd
                for (size_t k = 0; k < p; k++) dst[k] = src[k];
            }
    }
    ti_linear(patches + t0 * P, t1 - t0, P, P, &m->patch_w, m->patch_b, C, tok + t0 * C, C);
    for (size_t t = t0; t < t1; t++) {
        const size_t b = t / N, j = t % N;
        float *xr = ws->x + (b * N1 + 1 + j) * C;
        #pragma omp simd
        for (size_t c = 0; c < C; c++) xr[c] = tok[t * C + c] + m->pos_embed[(1 + j) * C + c];
    }
    size_t b0, b1;
    my_rows(B, &b0, &b1);
    for (size_t b = b0; b < b1; b++) {
        #pragma omp simd
        for (size_t c = 0; c < C; c++) ws->x[b * N1 * C + c] = m->cls_token[c] + m->pos_embed[c];
    }
}

/* x += proj(attention(qkv(norm1(x)))), shared by the team; attention by query rows.
 * with_cls: keep each head's cls row for EViT and ATME (written by the member owning the cls
 * row). After a merge, proportional attention (prop_attn) adds each key's log size.
 * The block's own widths (channel pruning, ti_widths) give qkv's and attention's row widths. */
static void block_attention(ti_view *ws, const ti_block *blk, size_t B, bool with_cls) {
    const tps_model *m = ws->m;
    const ti_heads g = ti_block_heads(m, blk);
    const size_t C = m->C, H = m->H, M = ws->lay.rows, N1 = m->N + 1;
    const size_t V = H * g.dv, W = 2 * H * g.dq + V; /* attention's output and qkv's row widths */
    float *qkv = ws->qkv;
    const float *hn = norm_for(ws, &blk->qkv_w, blk->norm1_w, blk->norm1_b, m->ln_eps);
    team_linear(ws, hn, M, C, C, &blk->qkv_w, blk->qkv_b, W, qkv, W, LIN_PLAIN);
    float *scores = thread_scratch(ws);
    const float *log_size = ws->sized && m->prop_attn ? ws->log_size : NULL; /* [M] */
    const size_t t = (size_t)omp_get_thread_num(), T = (size_t)omp_get_num_threads();
    if (B == 1 && H % T == 0 && by_columns(&blk->proj_w)) {
        /* one image: each member takes whole heads (all query rows), so its two products per
         * head have all n rows (BLAS runs those faster than half the rows: docs/inference.md)
         * and the keys and values are packed once per head, not once per
         * member; proj, which reads every head, comes after a barrier anyway */
        const size_t n = ws->lay.len[0];
        for (size_t h = H * t / T; h < H * (t + 1) / T; h++)
            ti_attention_rows(qkv, &g, n, 0, n, h, scores, ws->attn_out, with_cls ? ws->cls_rows + h * N1 : NULL,
                              log_size);
    } else {
        size_t r0, r1;
        my_rows(M, &r0, &r1);
        /* the images whose rows overlap [r0, r1): this member's queries of each, every head */
        for (size_t b = 0; b < B; b++) {
            const size_t off = ws->lay.off[b], n = ws->lay.len[b];
            if (off + n <= r0) continue;
            if (off >= r1) break;
            const size_t i0 = r0 > off ? r0 - off : 0, i1 = r1 < off + n ? r1 - off : n;
            for (size_t h = 0; h < H; h++)
                ti_attention_rows(qkv + off * W, &g, n, i0, i1, h, scores, ws->attn_out + off * V,
                                  with_cls && i0 == 0 ? ws->cls_rows + (b * H + h) * N1 : NULL,
                                  log_size ? log_size + off : NULL);
        }
    }
    if (by_columns(&blk->proj_w)) ti_barrier_wait(ws->bar); /* every member reads every attention row */
    team_linear(ws, ws->attn_out, M, V, V, &blk->proj_w, blk->proj_b, C, ws->x, C, LIN_RESIDUAL);
}

/* x += fc2(gelu(fc1(norm2(x)))), shared by the team; F = the block's kept hidden width. */
static void block_mlp(ti_view *ws, const ti_block *blk) {
    const tps_model *m = ws->m;
    const size_t C = m->C, F = blk->w.f;
    const float *h = norm_for(ws, &blk->fc1_w, blk->norm2_w, blk->norm2_b, m->ln_eps);
    team_linear(ws, h, ws->lay.rows, C, C, &blk->fc1_w, blk->fc1_b, F, ws->hidden, F, LIN_GELU);
    team_linear(ws, ws->hidden, ws->lay.rows, F, F, &blk->fc2_w, blk->fc2_b, C, ws->x, C, LIN_RESIDUAL);
}

/* PredictorLG over every row (cls rows too: they are ignored, and cheaper to carry than to
 * skip) -> ws->score [M] = log P(keep) for each spatial row. prev is all ones at inference,
 * so the global feature is the plain mean over the image's spatial tokens. Every
 * intermediate stays inside the member's own rows of the [M,C] buffers, so one member's rows
 * never overlap another's. */
static void predictor_scores(ti_view *ws, const ti_predictor *q, size_t B) {
    const tps_model *m = ws->m;
    const size_t C = m->C, C2 = C / 2, C4 = C / 4, M = ws->lay.rows;
    float *z = ws->hidden, *h = ws->h; /* [M,C] each */
    size_t r0, r1;
    my_rows(M, &r0, &r1);
    const size_t R = r1 - r0;
    /* LayerNorm, Linear C->C, GELU shared as a block's fc1 (the C x C weight is the
     * predictor's largest); the smaller layers after the global mean run on own rows */
    const float *hn = norm_for(ws, &q->in_fc_w, q->in_norm_w, q->in_norm_b, PREDICTOR_LN_EPS);
    team_linear(ws, hn, M, C, C, &q->in_fc_w, q->in_fc_b, C, z, C, LIN_GELU);
    #pragma omp for schedule(static) nowait
    for (size_t b = 0; b < B; b++) {
        const size_t off = ws->lay.off[b], n = ws->lay.len[b] - 1, G = C - C2;
        float *g = thread_scratch(ws);
        memset(g, 0, G * sizeof(float));
        float d = 0.0f;
        for (size_t i = 0; i < n; i++) {
            d += 1.0f;
            #pragma omp simd
            for (size_t c = 0; c < G; c++) g[c] += 1.0f * z[(off + 1 + i) * C + C2 + c];
        }
        #pragma omp simd
        for (size_t c = 0; c < G; c++) g[c] = g[c] / d;
        for (size_t i = 0; i < n; i++) memcpy(z + (off + 1 + i) * C + C2, g, G * sizeof(float));
    }
    ti_barrier_wait(ws->bar); /* the global features are in place */
    /* the narrow layers write dense rows ([R,C2], [R,C4], [R,2]) inside the member's own rows,
     * so that oneDNN, whose f32 kernel writes dense rows only, runs them with GELU fused (with
     * a row stride of C they fell back to OpenBLAS, packing the weight on every call, with
     * kernels that follow OPENBLAS_CORETYPE: docs/inference.md, "Figures behind the code") */
    float *h0 = h + r0 * C, *z0 = z + r0 * C;
    ti_linear_epi(z0, R, C, C, &q->out0_w, q->out0_b, C2, h0, C2, LIN_GELU);
    ti_linear_epi(h0, R, C2, C2, &q->out2_w, q->out2_b, C4, z0, C4, LIN_GELU);
    ti_linear(z0, R, C4, C4, &q->out4_w, q->out4_b, 2, h0, 2);
    /* log_softmax over the 2 logits, column 0: (x0 - max) - log(sum exp(x - max)) */
    for (size_t r = r0; r < r1; r++) {
        const float *xr = h0 + (r - r0) * 2;
        const float mx = xr[1] > xr[0] ? xr[1] : xr[0];
        const double sum = (double)vm_expf(xr[0] - mx) + (double)vm_expf(xr[1] - mx);
        ws->score[r] = (xr[0] - mx) - (float)log(sum);
    }
}

/* How many of image b's n tokens stage s keeps. */
static size_t predictor_keep(const ti_view *ws, int s, const float *score, size_t n) {
    const tps_budget *bu = ws->budget;
    if (bu->mode == TPS_BUDGET_FIXED) return keep_count_predictor(ws->keep_frac, ws->m->info.n_stages, s, ws->m->N);
    size_t above = 0;
    for (size_t i = 0; i < n; i++) above += expf(score[i]) > bu->threshold;
    size_t lo = (size_t)ceil((double)bu->min_frac * (double)n), hi = (size_t)floor((double)bu->max_frac * (double)n);
    if (lo < 1) lo = 1;
    if (hi > n) hi = n;
    if (hi < lo) hi = lo;
    return above < lo ? lo : above > hi ? hi : above;
}

static void swap_layouts(ti_view *ws) {
    float *x = ws->x;
    ws->x = ws->x_next, ws->x_next = x;
    ti_layout l = ws->lay;
    ws->lay = ws->lay_next, ws->lay_next = l;
    int32_t *o = ws->orig;
    ws->orig = ws->orig_next, ws->orig_next = o;
    float *sz = ws->size;
    ws->size = ws->size_next, ws->size_next = sz;
}

/* The end of pruning stage s, called by every member once its images' new rows are written:
 * when all are, one member makes the new layout current, and all wait until it has. */
static void finish_stage(ti_view *ws, int s) {
    ti_barrier_wait(ws->bar);
    #pragma omp single nowait
    {
        swap_layouts(ws);
        ws->n_stages_run = s + 1;
    }
    ti_barrier_wait(ws->bar);
}

/* Rows of x for the new layout: [cls; kept rows in order] per image; dtps squeezes the dropped
 * ones (in score order) into their hosts. Called by every member; false (for all of them)
 * when the budget asks for more tokens than are left. */
static bool predictor_stage(ti_view *ws, int s, size_t B) {
    const tps_model *m = ws->m;
    const size_t C = m->C, N = m->N;
    /* the predictor's buffers overlap other members' MLP rows (other row strides): the
     * previous step (embed, or a block's fc2) ended with a barrier */
    predictor_scores(ws, &m->pred[s], B);
    size_t *kn = ws->kept_n[s];
    ti_barrier_wait(ws->bar);
    #pragma omp for schedule(static) nowait
    for (size_t b = 0; b < B; b++) {
        const size_t n = ws->lay.len[b] - 1;
        const float *score = ws->score + ws->lay.off[b] + 1;
        row_sort_desc(score, n, ws->order + b * N, (row_scored *)thread_scratch(ws));
        kn[b] = predictor_keep(ws, s, score, n);
    }
    ti_barrier_wait(ws->bar);
    for (size_t b = 0; b < B; b++)
        if (kn[b] < 1 || kn[b] > ws->lay.len[b] - 1) return false; /* every member sees the same */
    #pragma omp single nowait
    {
        ws->lay_next.rows = 0;
        for (size_t b = 0; b < B; b++) {
            ws->lay_next.off[b] = ws->lay_next.rows;
            ws->lay_next.len[b] = 1 + kn[b];
            ws->lay_next.rows += 1 + kn[b];
        }
    }
    ti_barrier_wait(ws->bar);
    const bool squeeze = tok_method_squeezes(m->method);
    #pragma omp for schedule(dynamic) nowait
    for (size_t b = 0; b < B; b++) {
        const size_t n = ws->lay.len[b] - 1, k = kn[b], p = n - k;
        const float *src = ws->x + ws->lay.off[b] * C;
        float *dst = ws->x_next + ws->lay_next.off[b] * C;
        const int32_t *order = ws->order + b * N;
        memcpy(dst, src, C * sizeof(float));
        for (size_t j = 0; j < k; j++) {
            memcpy(dst + (1 + j) * C, src + (1 + (size_t)order[j]) * C, C * sizeof(float));
            ws->orig_next[b * N + j] = ws->orig[b * N + (size_t)order[j]];
        }
        memcpy(ws->kept[s] + b * N, ws->orig_next + b * N, k * sizeof(int32_t));
        if (squeeze && p > 0) {
            float *dropped = thread_scratch(ws), *scratch = dropped + p * C;
            for (size_t j = 0; j < p; j++) memcpy(dropped + j * C, src + (1 + (size_t)order[k + j]) * C, C * sizeof(float));
            ti_squeeze_image(dst + C, k, dropped, p, C, m->squeeze_temp, scratch);
        }
    }
    finish_stage(ws, s);
    return true;
}

/* EViT / eTPS inside the block, after the attention residual: top k by cls attention (mean
 * over heads); evit appends sum_{dropped} a_i x_i (or drops them without fuse_token), etps squeezes the dropped tokens (in
 * position order, as EViT's complement_idx) into their hosts. k = n changes nothing. Called
 * by every member, false for all of them on a bad budget. */
static bool evit_stage(ti_view *ws, int s, size_t B) {
    const tps_model *m = ws->m;
    const size_t C = m->C, N = m->N, H = m->H, N1 = N + 1;
    size_t *kn = ws->kept_n[s];
    bool bad = false;
    for (size_t b = 0; b < B; b++) { /* every member computes the same counts */
        const size_t n = ws->lay.len[b] - 1;
        const size_t k = keep_count_evit(ws->keep_frac, m->info.n_stages, s, n);
        bad |= k < 1 || k > n;
    }
    if (bad) return false;
    const method_dropped rule = tok_method_row(m->method)->dropped;
    const bool fuse = rule == DROPPED_FUSE && m->info.fuse_token; /* else EViT drops them */
    #pragma omp single nowait
    {
        ws->lay_next.rows = 0;
        for (size_t b = 0; b < B; b++) {
            const size_t n = ws->lay.len[b] - 1;
            kn[b] = keep_count_evit(ws->keep_frac, m->info.n_stages, s, n);
            const size_t extra = fuse && kn[b] < n ? 1 : 0;
            ws->lay_next.off[b] = ws->lay_next.rows;
            ws->lay_next.len[b] = kn[b] < n ? 1 + kn[b] + extra : 1 + n;
            ws->lay_next.rows += ws->lay_next.len[b];
        }
    }
    ti_barrier_wait(ws->bar); /* also every member's attention residual is in x */
    #pragma omp for schedule(dynamic) nowait
    for (size_t b = 0; b < B; b++) {
        const size_t n = ws->lay.len[b] - 1, k = kn[b], p = n - k;
        float *tmp = thread_scratch(ws), *a = tmp + 2 * N1; /* sort room, then [n] attention */
        for (size_t j = 0; j < n; j++) {
            float sum = 0.0f;
            for (size_t h = 0; h < H; h++) sum += ws->cls_rows[(b * H + h) * N1 + 1 + j];
            a[j] = sum / (float)H;
        }
        int32_t *order = ws->order + b * N;
        row_sort_desc(a, n, order, (row_scored *)tmp);
        const float *src = ws->x + ws->lay.off[b] * C;
        float *dst = ws->x_next + ws->lay_next.off[b] * C;
        int32_t *orig = ws->orig + b * N, *orig_next = ws->orig_next + b * N;
        if (p == 0) { /* EViT returns the block's x untouched: no reordering, no fused token */
            memcpy(dst, src, (1 + n) * C * sizeof(float));
            memcpy(orig_next, orig, n * sizeof(int32_t));
            memcpy(ws->kept[s] + b * N, orig, n * sizeof(int32_t));
            continue;
        }
        memcpy(dst, src, C * sizeof(float));
        for (size_t j = 0; j < k; j++) {
            memcpy(dst + (1 + j) * C, src + (1 + (size_t)order[j]) * C, C * sizeof(float));
            orig_next[j] = orig[order[j]];
        }
        memcpy(ws->kept[s] + b * N, orig_next, k * sizeof(int32_t));
        /* the dropped positions, ascending */
        char *is_kept = (char *)(a + N1);
        memset(is_kept, 0, n);
        for (size_t j = 0; j < k; j++) is_kept[order[j]] = 1;
        float *dropped = a + 2 * N1, *scratch = dropped + p * C;
        size_t q = 0;
        if (fuse) {
            double *acc = (double *)dropped; /* an even float offset: 8-byte aligned */
            #pragma omp simd
            for (size_t c = 0; c < C; c++) acc[c] = 0.0;
            for (size_t i = 0; i < n; i++)
                if (!is_kept[i]) {
                    #pragma omp simd
                    for (size_t c = 0; c < C; c++) acc[c] += (double)(src[(1 + i) * C + c] * a[i]);
                    q++;
                }
            #pragma omp simd
            for (size_t c = 0; c < C; c++) dst[(1 + k) * C + c] = (float)acc[c];
            orig_next[k] = -1; /* the fused token has no patch */
        } else if (rule == DROPPED_SQUEEZE) {
            for (size_t i = 0; i < n; i++)
                if (!is_kept[i]) memcpy(dropped + (q++) * C, src + (1 + i) * C, C * sizeof(float));
            ti_squeeze_image(dst + C, k, dropped, p, C, m->squeeze_temp, scratch);
        }
    }
    finish_stage(ws, s);
    return true;
}

/* ToMe (every block) or ATME (stage s, at prune_loc[s]) inside block i, after the attention
 * residual: each image's plan (src/common/merge_rules.h) and its size-weighted merge into
 * x_next (merge.c), then the layouts swap. Every image keeps the same count, so the batch stays
 * packed. ATME lists each region's lowest patch as stage s's kept tokens. Called by every
 * member; false (for all of them) when an ATME budget leaves no token or a plan fails. */
static bool merge_stage(ti_view *ws, const ti_block *blk, size_t i, int s, size_t B) {
    const tps_model *m = ws->m;
    const ti_heads g = ti_block_heads(m, blk);
    const size_t C = m->C, N = m->N, H = m->H, N1 = N + 1, W = 2 * H * g.dq + H * g.dv;
    const size_t t = ws->lay.len[0]; /* every image has the same count */
    const bool tome = m->method == TOK_TOME;
    size_t r = 0, k = 0;
    if (tome) {
        r = tok_tome_block_r(m->merge_r[i], t);
        if (r == 0) return true;
    } else {
        const size_t keep = keep_count_predictor(ws->keep_frac, m->info.n_stages, s, N);
        if (keep < 1) return false;
        k = tok_atme_remove_count(t - 1, keep);
    }
    const size_t mt = t - r - k; /* tokens left, cls included */
    size_t *kn = tome ? NULL : ws->kept_n[s];
    #pragma omp single nowait
    {
        ws->lay_next.rows = B * mt;
        for (size_t b = 0; b < B; b++) ws->lay_next.off[b] = b * mt, ws->lay_next.len[b] = mt;
    }
    ti_barrier_wait(ws->bar); /* also every member's attention residual is in x */
    #pragma omp for schedule(dynamic) nowait
    for (size_t b = 0; b < B; b++) {
        const size_t off = ws->lay.off[b], off_next = ws->lay_next.off[b];
        const float *qkv = ws->qkv + off * W;
        float *scratch = thread_scratch(ws);
        int32_t *pt = ws->patch_tok + b * N, *map = NULL;
        size_t got = t;
        if (tome) {
            got = ti_tome_plan(qkv, t, &g, r, scratch, &map);
        } else if (k > 0) {
            float *a = scratch + ti_merge_scratch_floats(t, g.dq); /* [t-1] importance, as ag_attention's cls_attn */
            for (size_t j = 0; j + 1 < t; j++) {
                float sum = 0.0f;
                for (size_t h = 0; h < H; h++) sum += ws->cls_rows[(b * H + h) * N1 + 1 + j];
                a[j] = sum / (float)H;
            }
            got = ti_atme_plan(qkv, t, &g, a, pt, m->grid, k, scratch, &map);
        }
        if (map && got == mt) {
            ti_merge_rows(ws->x + off * C, ws->size + off, t, C, map, mt, ws->x_next + off_next * C,
                          ws->size_next + off_next, ws->log_size + off_next);
        } else if (!map) { /* ATME with nothing to remove: the rows as they are */
            memcpy(ws->x_next + off_next * C, ws->x + off * C, t * C * sizeof(float));
            memcpy(ws->size_next + off_next, ws->size + off, t * sizeof(float));
        }
        if (tome) {
            ti_tome_source_update(pt, N, map);
            continue;
        }
        kn[b] = got - 1;
        int32_t *kept = ws->kept[s] + b * N;
        for (size_t o = 0; o + 1 < mt; o++) kept[o] = -1;
        for (size_t p = 0; p < N; p++)
            if (kept[pt[p]] < 0) kept[pt[p]] = (int32_t)p;
    }
    ti_barrier_wait(ws->bar);
    bool failed = false; /* every member sees the same */
    for (size_t b = 0; !tome && b < B; b++) failed |= kn[b] + 1 != mt;
    if (failed) {
        #pragma omp single
        ws->merge_failed = true;
        return false;
    }
    #pragma omp single nowait
    {
        swap_layouts(ws);
        ws->sized = ws->sized || r + k > 0;
        if (!tome) ws->n_stages_run = s + 1;
    }
    ti_barrier_wait(ws->bar);
    return true;
}

/* The whole pass, run by every member of the view's team. Returns the failing stage, or -1. */
static int run_team(ti_view *ws, const float *images, size_t B, float *logits) {
    const tps_model *m = ws->m;
    const size_t C = m->C;
    const bool predictor = tok_method_has_predictor(m->method);
    const bool evit = tok_method_row(m->method)->scores == SCORES_CLS_ATTENTION;
    const bool atme = tok_method_merges_on_grid(m->method), tome = m->method == TOK_TOME;
    const int n_stages = m->method == TOK_NONE ? 0 : m->info.n_stages;
    embed(ws, images, B);
    ti_barrier_wait(ws->bar);
    int s = 0;
    for (size_t i = 0; i < m->depth; i++) {
        const ti_block *blk = &m->blocks[i];
        const bool stage_here = s < n_stages && m->info.prune_loc[s] == (int)i;
        if (stage_here && predictor) {
            if (!predictor_stage(ws, s, B)) return s;
            s++;
        }
        block_attention(ws, blk, B, stage_here && (evit || atme));
        if (stage_here && evit) {
            if (!evit_stage(ws, s, B)) return s;
            s++;
        }
        if (tome && !merge_stage(ws, blk, i, 0, B)) return 0;
        if (stage_here && atme) {
            if (!merge_stage(ws, blk, i, s, B)) return s;
            s++;
        }
        block_mlp(ws, blk);
    }
    /* final norm and head on the cls rows (fc2 ended with a barrier) */
    #pragma omp single
    {
        for (size_t b = 0; b < B; b++) memcpy(ws->attn_out + b * C, ws->x + ws->lay.off[b] * C, C * sizeof(float));
        ti_layernorm(ws->attn_out, B, C, m->norm_w, m->norm_b, m->ln_eps, ws->h);
        ti_linear(ws->h, B, C, C, &m->head_w, m->head_b, m->K, logits, m->K);
    }
    return -1;
}

/* The whole pass over the B images of one view, by a team of ws->nthreads. */
static tps_status run_view(ti_view *ws, const float *images, size_t B, float *logits) {
    ws->n_stages_run = 0;
    init_layout(ws, B);
    int failed = -1;
    ti_barrier bar;
    ws->bar = &bar;
    #pragma omp parallel num_threads(ws->nthreads)
    {
        #pragma omp single
        ti_barrier_init(&bar, (unsigned)omp_get_num_threads(), ws->spin);
        const int f = run_team(ws, images, B, logits);
        #pragma omp master
        failed = f;
    }
    ws->tokens_left = ws->lay.len[0] - 1;
    for (size_t b = 0; b < B; b++) ws->final_rows[b] = ws->x + ws->lay.off[b] * ws->m->C;
    if (failed >= 0 && ws->merge_failed)
        return ti_fail(TPS_ERR_INTERNAL, "atme stage %d: a token found no neighbour region to merge into", failed);
    if (failed >= 0 && tok_method_merges(ws->m->method))
        return ti_fail(TPS_ERR_ARG, "atme stage %d: the keep ratio leaves no token of %zu", failed, ws->m->N);
    if (failed >= 0) return ti_fail(TPS_ERR_ARG, "stage %d: the keep ratio asks for more tokens than are left", failed);
    return TPS_OK;
}

/* The view of images b0 .. b0+B-1 of the workspace, run by `nthreads` threads whose scratch
 * blocks start at block `first_scratch`. Row-indexed buffers start at image b0's rows; the
 * layouts are relative to them. */
static ti_view view_of(tps_workspace *ws, size_t b0, int nthreads, int first_scratch) {
    const tps_model *m = ws->m;
    const size_t C = m->C, N = m->N, N1 = N + 1, r0 = b0 * N1;
    size_t wide = m->F > C ? m->F : C;
    if (m->P > wide) wide = m->P;
    ti_view v = {.m = m, .budget = &ws->budget, .keep_frac = ws->keep_frac, .nthreads = nthreads, .spin = ws->barrier_spin,
                 .x = ws->x + r0 * C, .x_next = ws->x_next + r0 * C, .h = ws->h + r0 * C, .qkv = ws->qkv + r0 * 3 * C,
                 .attn_out = ws->attn_out + r0 * C, .hidden = ws->hidden + r0 * wide,
                 .cls_rows = ws->cls_rows + b0 * m->H * N1, .score = ws->score + r0,
                 .scratch = ws->thread_scratch + (size_t)first_scratch * ws->per_thread, .per_thread = ws->per_thread,
                 .lay = {ws->lay.off + b0, ws->lay.len + b0, 0}, .lay_next = {ws->lay_next.off + b0, ws->lay_next.len + b0, 0},
                 .orig = ws->orig + b0 * N, .orig_next = ws->orig_next + b0 * N, .order = ws->order + b0 * N};
    if (ws->size) { /* merging methods */
        v.size = ws->size + r0, v.size_next = ws->size_next + r0, v.log_size = ws->log_size + r0;
        v.patch_tok = ws->patch_tok + b0 * N;
    }
    v.final_rows = ws->final_rows + b0;
    for (int s = 0; s < m->info.n_stages; s++) {
        v.kept[s] = ws->kept[s] + b0 * N;
        v.kept_n[s] = ws->kept_n[s] + b0;
    }
    return v;
}

/* Two ways to use the cores. A large batch is split into one chunk per thread, each run
 * start to end by its thread (a team of one) with single-threaded BLAS: no barrier until
 * the end, so a thread the OS preempts (the machine is shared) delays only its own chunk,
 * and every sgemm still has thousands of rows. A small batch (latency) runs as one team
 * sharing the rows of every step instead. TPSINFER_SPLIT=0 forces the second way. */
tps_status ti_forward(tps_workspace *ws, const float *images, size_t B, float *logits) {
    const tps_model *m = ws->m;
    const int nt = ws->nthreads;
    ws->last_batch = B;
    if (!ws->split || nt < 2 || B < (size_t)(4 * nt)) {
        ti_view v = view_of(ws, 0, nt, 0);
        tps_status st = run_view(&v, images, B, logits);
        ws->n_stages_run = v.n_stages_run;
        ws->last_tokens = v.tokens_left;
        return st;
    }
    const size_t per_image = m->in_chans * m->img * m->img;
    tps_status status[64] = {TPS_OK};
    int stages[64] = {0};
    char message[512] = "";
    const int chunks = nt < 64 ? nt : 64;
    #pragma omp parallel num_threads(chunks)
    {
        const int c = omp_get_thread_num(), n = omp_get_num_threads();
        const size_t b0 = B * (size_t)c / (size_t)n, b1 = B * (size_t)(c + 1) / (size_t)n;
        ti_view v = view_of(ws, b0, 1, c);
        status[c] = run_view(&v, images + b0 * per_image, b1 - b0, logits + b0 * m->K);
        stages[c] = v.n_stages_run;
        if (c == 0) ws->last_tokens = v.tokens_left;
        if (status[c] != TPS_OK) {
            #pragma omp critical(tpsinfer_message)
            snprintf(message, sizeof message, "%s", tps_last_error()); /* the message is per thread */
        }
    }
    ws->n_stages_run = stages[0];
    for (int c = 0; c < chunks; c++)
        if (status[c] != TPS_OK) return ti_fail(status[c], "%s", message);
    return TPS_OK;
}
