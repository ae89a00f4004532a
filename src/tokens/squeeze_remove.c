/* TPS squeeze with real removal, differentiable: the forward is libtpsinfer's squeeze_image
 * (src/common/squeeze.h has the formulas), run per image; the backward is here. Used by dtps
 * inference and by etps, which trains with real removal, so it is differentiable in both
 * inputs (through the similarities too); the host choice E is constant. */
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
    const float e = SQUEEZE_HOST_WEIGHT, *dy = n->out->grad, *y = n->out->data;
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

ag_tensor *tok_squeeze_hosts(ag_ctx *ctx, ag_tensor *kept, ag_tensor *dropped, float temp, int32_t *host) {
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
    /* One image per thread, libtpsinfer's squeeze on each, its buffers kept for the backward;
     * the OpenMP OpenBLAS runs single-threaded inside the region. */
    #pragma omp parallel for schedule(static) if (B > 1)
    for (size_t b = 0; b < B; b++) {
        const squeeze_buffers buf = {.kept_hat = sv->rh + b * k * C, .dropped_hat = sv->ph + b * p * C,
                                     .kept_norm = sv->rnorm + b * k, .dropped_norm = sv->pnorm + b * p,
                                     .sim = sv->S + b * p * k, .sim_max = sv->rowmax + b * p,
                                     .den = sv->den + b * k, .acc = acc_all + b * k * C};
        squeeze_image(kept->data + b * k * C, k, dropped->data + b * p * C, p, C, temp, y->data + b * k * C, &buf);
        if (host)
            for (size_t i = 0; i < p; i++) { /* the first of the tied maxima the squeeze used */
                const float *Si = buf.sim + i * k;
                size_t j = 0;
                while (j + 1 < k && Si[j] != buf.sim_max[i]) j++;
                host[b * p + i] = (int32_t)j;
            }
    }
    ag_node *n = ag_record(ctx, "tok_squeeze_hosts", squeeze_hosts_backward, y, 2, (ag_tensor *[]){kept, dropped});
    if (n) n->saved = sv;
    return y;
}
