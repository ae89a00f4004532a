/* TPS squeeze in training (masks, nothing removed): official TPSModule.forward with
 * self.training (TPS-CVPR2023 torch_codebase/models/dynamic_vit.py), per image, on the N
 * spatial tokens:
 *   xh = x / (||x|| + 1e-6);  S = xh xh^T;  S_ii = -100;  S /= T;  S_ij = -100 where keep_j = 0
 *   E_ij = [S_ij == max_k S_ik]           (every tied maximum, as torch's `==` does)
 *   P_i  = (1 - keep_i) prev_i            (newly pruned)
 *   m_ij = E_ij P_i;  W_ji = exp(m_ij S_ij) m_ij;  den_j = e + sum_i W_ji
 *   out_j = x_j e / den_j + sum_i (W_ji / den_j) x_i
 * Rows that are not hosts come out unchanged (den = e). Gradients, as torch's autograd gives
 * them: through x (directly and through S; the argmax E and the -100 fills are constants)
 * and through P into keep and prev (m is a product with the mask, so a row with P_i = 0
 * still has dL/dP_i = sum_j E_ij dL/dW_ji). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "src/tokens/tokens_internal.h"

typedef struct squeeze_saved {
    float *xh, *norm, *S, *rowmax, *den; /* [B,N,C], [B,N], [B,N,N], [B,N], [B,N] */
    float temp;
} squeeze_saved;

static bool is_filled(const float *keep, size_t i, size_t j) { return keep[j] == 0.0f || i == j; }

static void squeeze_train_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *x = n->in[0], *keep = n->in[1], *prev = n->in[2];
    const squeeze_saved *sv = n->saved;
    const size_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    const float e = SQUEEZE_HOST_WEIGHT, *dy = n->out->grad, *y = n->out->data;
    float *dx = ag_grad(ctx, x), *dkeep = ag_grad(ctx, keep), *dprev = ag_grad(ctx, prev);
    /* scratch per image, so images run in parallel: dL/dxh [B,N,C] and dL/dP [B,N] */
    float *dxh_all = dx ? ag_alloc(ctx, B * N * C * sizeof(float)) : NULL;
    float *dP_all = ag_alloc(ctx, B * N * sizeof(float));
    if ((dx && !dxh_all) || !dP_all) return;
    /* One image per thread; the OpenMP OpenBLAS runs single-threaded inside the region. */
    #pragma omp parallel for schedule(static) if (B > 1)
    for (size_t b = 0; b < B; b++) {
        float *dxh = dxh_all ? dxh_all + b * N * C : NULL, *dP = dP_all + b * N;
        const float *xb = x->data + b * N * C, *yb = y + b * N * C, *gb = dy + b * N * C;
        const float *xhb = sv->xh + b * N * C, *Sb = sv->S + b * N * N, *mx = sv->rowmax + b * N;
        const float *den = sv->den + b * N, *kb = keep->data + b * N, *pb = prev->data + b * N;
        float *dxb = dx ? dx + b * N * C : NULL;
        if (dxh) memset(dxh, 0, N * C * sizeof(float));
        if (dxb)
            for (size_t j = 0; j < N; j++)
                for (size_t c = 0; c < C; c++) dxb[j * C + c] += gb[j * C + c] * (e / den[j]);
        for (size_t i = 0; i < N; i++) {
            const float P = (1.0f - kb[i]) * pb[i];
            float dPi = 0.0f;
            for (size_t j = 0; j < N; j++) {
                const float s = Sb[i * N + j];
                if (s != mx[i]) continue;
                const float ex = expf(P * s), w = ex * P;
                /* dL/dW_ji = g_j . (x_i - out_j) / den_j */
                float dW = 0.0f;
                for (size_t c = 0; c < C; c++) dW += gb[j * C + c] * (xb[i * C + c] - yb[j * C + c]);
                dW /= den[j];
                dPi += dW * ex * (P * s + 1.0f);
                if (!dxb || w == 0.0f) continue;
                const float a = w / den[j];
                for (size_t c = 0; c < C; c++) dxb[i * C + c] += a * gb[j * C + c];
                if (is_filled(kb, i, j)) continue;
                /* dL/dcos_ij = dW * w * m / T, and cos_ij = xh_i . xh_j */
                const float dcos = dW * w * P / sv->temp;
                for (size_t c = 0; c < C; c++) {
                    dxh[i * C + c] += dcos * xhb[j * C + c];
                    dxh[j * C + c] += dcos * xhb[i * C + c];
                }
            }
            dP[i] = dPi;
        }
        if (dxb) tok_rows_normalise_backward(xb, sv->norm + b * N, dxh, N, C, dxb);
        for (size_t i = 0; i < N; i++) {
            if (dkeep) dkeep[b * N + i] -= pb[i] * dP[i];
            if (dprev) dprev[b * N + i] += (1.0f - kb[i]) * dP[i];
        }
    }
}

ag_tensor *tok_squeeze_train(ag_ctx *ctx, ag_tensor *x, ag_tensor *keep, ag_tensor *prev, float temp) {
    if (!ag_ok(ctx, 3, x, keep, prev)) return NULL;
    char sx[64], sk[64], sp[64];
    if (x->ndim != 3 || keep->ndim != 2 || prev->ndim != 2 || keep->shape[0] != x->shape[0] ||
        keep->shape[1] != x->shape[1] || !ag_same_shape(keep, prev))
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_squeeze_train: x %s must be [B,N,C], keep %s and prev %s [B,N]",
                        ag_shape_str(x, sx, sizeof sx), ag_shape_str(keep, sk, sizeof sk),
                        ag_shape_str(prev, sp, sizeof sp));
    if (!ag_is_contiguous(x) || !ag_is_contiguous(keep) || !ag_is_contiguous(prev))
        return ag_error(ctx, TPSC_ERR_SHAPE, "tok_squeeze_train: inputs must be contiguous");
    if (!(temp > 0.0f)) return ag_error(ctx, TPSC_ERR_ARG, "tok_squeeze_train: temperature %g must be > 0", (double)temp);
    const size_t B = x->shape[0], N = x->shape[1], C = x->shape[2];
    const float e = SQUEEZE_HOST_WEIGHT;
    ag_tensor *y = ag_new3(ctx, B, N, C);
    squeeze_saved *sv = ag_alloc(ctx, sizeof *sv);
    if (!y || !sv) return NULL;
    sv->xh = ag_alloc(ctx, B * N * C * sizeof(float));
    sv->norm = ag_alloc(ctx, B * N * sizeof(float));
    sv->S = ag_alloc(ctx, B * N * N * sizeof(float));
    sv->rowmax = ag_alloc(ctx, B * N * sizeof(float));
    sv->den = ag_alloc(ctx, B * N * sizeof(float));
    float *acc_all = ag_alloc(ctx, B * N * C * sizeof(float)); /* per image: images run in parallel */
    if (!sv->xh || !sv->norm || !sv->S || !sv->rowmax || !sv->den || !acc_all) return NULL;
    sv->temp = temp;
    tok_rows_normalise(x->data, B * N, C, sv->xh, sv->norm);
    #pragma omp parallel for schedule(static) if (B > 1)
    for (size_t b = 0; b < B; b++) {
        float *acc = acc_all + b * N * C;
        const float *xb = x->data + b * N * C, *kb = keep->data + b * N, *pb = prev->data + b * N;
        float *Sb = sv->S + b * N * N, *mx = sv->rowmax + b * N, *den = sv->den + b * N;
        /* S [N,N] = xh xh^T, one sgemm per image (training keeps all N tokens anyway) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)N, (int)N, (int)C, 1.0f, sv->xh + b * N * C,
                    (int)C, sv->xh + b * N * C, (int)C, 0.0f, Sb, (int)N);
        for (size_t i = 0; i < N; i++) {
            float m = -INFINITY;
            for (size_t j = 0; j < N; j++) {
                float s = i == j ? TOK_SIM_MASKED : Sb[i * N + j];
                s = s / temp;
                if (kb[j] == 0.0f) s = TOK_SIM_MASKED;
                Sb[i * N + j] = s;
                if (s > m) m = s;
            }
            mx[i] = m;
        }
        for (size_t j = 0; j < N; j++) den[j] = e;
        memset(acc, 0, N * C * sizeof(float));
        for (size_t i = 0; i < N; i++) {
            const float P = (1.0f - kb[i]) * pb[i];
            if (P == 0.0f) continue; /* W_ji = 0 for every j */
            for (size_t j = 0; j < N; j++) {
                if (Sb[i * N + j] != mx[i]) continue;
                const float w = expf(P * Sb[i * N + j]) * P;
                den[j] += w;
                for (size_t c = 0; c < C; c++) acc[j * C + c] += w * xb[i * C + c];
            }
        }
        float *yb = y->data + b * N * C;
        for (size_t j = 0; j < N; j++) {
            const float self = e / den[j], inv = 1.0f / den[j];
            for (size_t c = 0; c < C; c++) yb[j * C + c] = xb[j * C + c] * self + acc[j * C + c] * inv;
        }
    }
    ag_node *n = ag_record(ctx, "tok_squeeze_train", squeeze_train_backward, y, 3, (ag_tensor *[]){x, keep, prev});
    if (n) n->saved = sv;
    return y;
}
