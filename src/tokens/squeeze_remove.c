/* TPS squeeze with real removal: official TPSModule.forward in eval mode
 * (TPS-CVPR2023 torch_codebase/models/dynamic_vit.py), x = kept X_r [k,C], y = dropped X_p [p,C]
 * per image:
 *   S = cos(X_p, X_r) / T  [p,k]  (x / (||x|| + 1e-6) on both sides, no self mask)
 *   E_ij = [S_ij == max_k S_ik]    (all tied maxima)
 *   W_ji = exp(S_ij) E_ij;  den_j = e + sum_i W_ji;  out_j = x_j e / den_j + sum_i (W_ji / den_j) y_i
 * One sgemm per image for S (p x k x C); the rest is O(p C). Used by dtps inference and by
 * etps, which trains with real removal, so it is differentiable in both inputs; E is constant. */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "src/tokens/tokens_internal.h"

typedef struct hosts_saved {
    float *rh, *ph, *rnorm, *pnorm, *S, *rowmax, *den; /* [B,k,C] [B,p,C] [B,k] [B,p] [B,p,k] [B,p] [B,k] */
    float temp;
} hosts_saved;

static void squeeze_hosts_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *kept = n->in[0], *dropped = n->in[1];
    const hosts_saved *sv = n->saved;
    const size_t B = kept->shape[0], k = kept->shape[1], p = dropped->shape[1], C = kept->shape[2];
    const float e = TOK_HOST_WEIGHT, *dy = n->out->grad, *y = n->out->data;
    float *dr = ag_grad(ctx, kept), *dp = ag_grad(ctx, dropped);
    /* scratch per image, so images run in parallel */
    float *drh_all = ag_alloc(ctx, B * k * C * sizeof(float)), *dph_all = ag_alloc(ctx, B * p * C * sizeof(float) + 1);
    if (!drh_all || !dph_all) return;
    #pragma omp parallel for schedule(static) if (B > 1)
    for (size_t b = 0; b < B; b++) {
        float *drh = drh_all + b * k * C, *dph = dph_all + b * p * C;
        const float *xr = kept->data + b * k * C, *xp = dropped->data + b * p * C;
        const float *yb = y + b * k * C, *gb = dy + b * k * C, *Sb = sv->S + b * p * k, *mx = sv->rowmax + b * p;
        const float *den = sv->den + b * k, *rh = sv->rh + b * k * C, *ph = sv->ph + b * p * C;
        memset(drh, 0, k * C * sizeof(float));
        memset(dph, 0, p * C * sizeof(float));
        if (dr)
            for (size_t j = 0; j < k; j++)
                for (size_t c = 0; c < C; c++) dr[(b * k + j) * C + c] += gb[j * C + c] * (e / den[j]);
        for (size_t i = 0; i < p; i++)
            for (size_t j = 0; j < k; j++) {
                if (Sb[i * k + j] != mx[i]) continue;
                const float w = expf(Sb[i * k + j]);
                if (dp)
                    for (size_t c = 0; c < C; c++) dp[(b * p + i) * C + c] += (w / den[j]) * gb[j * C + c];
                /* dL/dW_ji = g_j . (y_i - out_j) / den_j;  dL/dS_ij = dL/dW_ji W_ji */
                float dW = 0.0f;
                for (size_t c = 0; c < C; c++) dW += gb[j * C + c] * (xp[i * C + c] - yb[j * C + c]);
                const float dcos = dW / den[j] * w / sv->temp;
                for (size_t c = 0; c < C; c++) {
                    dph[i * C + c] += dcos * rh[j * C + c];
                    drh[j * C + c] += dcos * ph[i * C + c];
                }
            }
        if (dr) tok_rows_normalise_backward(xr, sv->rnorm + b * k, drh, k, C, dr + b * k * C);
        if (dp) tok_rows_normalise_backward(xp, sv->pnorm + b * p, dph, p, C, dp + b * p * C);
    }
}

ag_tensor *tok_squeeze_hosts(ag_ctx *ctx, ag_tensor *kept, ag_tensor *dropped, float temp) {
    if (!ag_ok(ctx, 2, kept, dropped)) return NULL;
    char sk[64], sd[64];
    if (kept->ndim != 3 || dropped->ndim != 3 || kept->shape[0] != dropped->shape[0] ||
        kept->shape[2] != dropped->shape[2] || kept->shape[1] == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_squeeze_hosts: kept %s must be [B,k,C] (k >= 1), dropped %s [B,p,C]",
                        ag_shape_str(kept, sk, sizeof sk), ag_shape_str(dropped, sd, sizeof sd));
    if (!ag_is_contiguous(kept) || !ag_is_contiguous(dropped))
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_squeeze_hosts: inputs must be contiguous");
    if (!(temp > 0.0f)) return ag_error(ctx, TPSC_ERR_ARG, "tok_squeeze_hosts: temperature %g must be > 0", (double)temp);
    const size_t B = kept->shape[0], k = kept->shape[1], p = dropped->shape[1], C = kept->shape[2];
    const float e = TOK_HOST_WEIGHT;
    ag_tensor *y = ag_new3(ctx, B, k, C);
    hosts_saved *sv = ag_alloc(ctx, sizeof *sv);
    if (!y || !sv) return NULL;
    /* +1: p may be 0 (nothing dropped), and a zero-byte request is not an error */
    sv->rh = ag_alloc(ctx, B * k * C * sizeof(float));
    sv->ph = ag_alloc(ctx, B * p * C * sizeof(float) + 1);
    sv->rnorm = ag_alloc(ctx, B * k * sizeof(float));
    sv->pnorm = ag_alloc(ctx, B * p * sizeof(float) + 1);
    sv->S = ag_alloc(ctx, B * p * k * sizeof(float) + 1);
    sv->rowmax = ag_alloc(ctx, B * p * sizeof(float) + 1);
    sv->den = ag_alloc(ctx, B * k * sizeof(float));
    float *acc_all = ag_alloc(ctx, B * k * C * sizeof(float)); /* per image: images run in parallel */
    if (!sv->rh || !sv->ph || !sv->rnorm || !sv->pnorm || !sv->S || !sv->rowmax || !sv->den || !acc_all) return NULL;
    sv->temp = temp;
    tok_rows_normalise(kept->data, B * k, C, sv->rh, sv->rnorm);
    tok_rows_normalise(dropped->data, B * p, C, sv->ph, sv->pnorm);
    /* One image per thread; the OpenMP OpenBLAS runs single-threaded inside the region. */
    #pragma omp parallel for schedule(static) if (B > 1)
    for (size_t b = 0; b < B; b++) {
        float *acc = acc_all + b * k * C;
        const float *xr = kept->data + b * k * C, *xp = dropped->data + b * p * C;
        float *Sb = sv->S + b * p * k, *mx = sv->rowmax + b * p, *den = sv->den + b * k;
        if (p > 0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p, (int)k, (int)C, 1.0f, sv->ph + b * p * C,
                        (int)C, sv->rh + b * k * C, (int)C, 0.0f, Sb, (int)k);
        for (size_t j = 0; j < k; j++) den[j] = e;
        memset(acc, 0, k * C * sizeof(float));
        for (size_t i = 0; i < p; i++) {
            float m = -INFINITY;
            for (size_t j = 0; j < k; j++) {
                Sb[i * k + j] /= temp;
                if (Sb[i * k + j] > m) m = Sb[i * k + j];
            }
            mx[i] = m;
            for (size_t j = 0; j < k; j++) {
                if (Sb[i * k + j] != m) continue;
                const float w = expf(m);
                den[j] += w;
                for (size_t c = 0; c < C; c++) acc[j * C + c] += w * xp[i * C + c];
            }
        }
        float *yb = y->data + b * k * C;
        for (size_t j = 0; j < k; j++) {
            const float self = e / den[j], inv = 1.0f / den[j];
            for (size_t c = 0; c < C; c++) yb[j * C + c] = xr[j * C + c] * self + acc[j * C + c] * inv;
        }
    }
    ag_node *n = ag_record(ctx, "tok_squeeze_hosts", squeeze_hosts_backward, y, 2, (ag_tensor *[]){kept, dropped});
    if (n) n->saved = sv;
    return y;
}
