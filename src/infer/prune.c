/* Token counts, the top-k order and the squeeze of TPS inference, per image.
 * Semantics (tests/reference/README.md, docs/tps.md): the official TPS-CVPR2023 eval path and
 * EViT's; the same arithmetic as the training framework's src/tokens/{config,topk,
 * squeeze_hosts}.c, so both engines keep exactly the same tokens. */
#include <cblas.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/ops/rows.h"
#include "src/infer/internal.h"

#define HOST_WEIGHT 2.718281828459045f /* the host's own weight in the squeeze: e */

/* ---- counts ------------------------------------------------------------------------------
 * Python computes int(N * rho ** (s+1)) and ceil(rate * n) in double from the decimal the
 * user wrote; keep_frac is float. So go back to that double: the shortest decimal that reads
 * back as the float, compounded with pow when the fractions are rho^(s+1). */

static double decimal_of_float(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

static bool fractions_compound(const float *keep_frac, int n_stages, double rho) {
    for (int s = 0; s < n_stages; s++) {
        double want = pow(rho, s + 1), got = (double)keep_frac[s];
        if (fabs(got - want) > 4.0 * (double)FLT_EPSILON * want) return false;
    }
    return true;
}

size_t ti_keep_count(const float *keep_frac, int n_stages, int stage, size_t n_patches) {
    if (stage < 0 || stage >= n_stages) return n_patches;
    double rho = decimal_of_float(keep_frac[0]);
    double frac = fractions_compound(keep_frac, n_stages, rho) ? pow(rho, stage + 1) : decimal_of_float(keep_frac[stage]);
    size_t k = (size_t)floor((double)n_patches * frac);
    if (k < 1) k = 1;
    return k > n_patches ? n_patches : k;
}

size_t ti_evit_keep_count(const float *keep_frac, int n_stages, int stage, size_t n) {
    if (stage < 0 || stage >= n_stages || n == 0) return n;
    double rho = decimal_of_float(keep_frac[0]), rate = rho;
    if (stage > 0 && !fractions_compound(keep_frac, n_stages, rho))
        rate = decimal_of_float(keep_frac[stage]) / decimal_of_float(keep_frac[stage - 1]);
    size_t k = (size_t)ceil((double)n * rate);
    if (k < 1) k = 1;
    return k > n ? n : k;
}

void ti_fill_rho(float *keep_frac, int n_stages, float rho) {
    double r = decimal_of_float(rho);
    for (int s = 0; s < n_stages && s < TI_MAX_STAGES; s++) keep_frac[s] = (float)pow(r, s + 1);
}

/* ---- order ------------------------------------------------------------------------------- */

/* the training side's order (rows.h): ties to the lower position, NaN last */
void ti_sort_desc(const float *score, size_t n, int32_t *order, void *tmp) { ag_sort_desc_row(score, n, order, tmp); }

/* ---- squeeze ------------------------------------------------------------------------------
 * Official TPSModule (eval) for one image: S = cos(X_p, X_r) / T [p,k]; every dropped token i
 * goes to its most similar hosts (all exact ties), weight exp(S_ij); host j keeps weight e:
 *   out_j = x_j e / den_j + sum_i (W_ji / den_j) y_i,   den_j = e + sum_i W_ji. */
void ti_squeeze(const float *kept, size_t k, const float *dropped, size_t p, size_t C, float temp, float *out,
                float *scratch) {
    float *rh = scratch, *ph = rh + k * C, *rnorm = ph + p * C, *pnorm = rnorm + k, *S = pnorm + p, *den = S + p * k;
    float *acc = den + k;
    ti_rows_normalise(kept, k, C, rh, rnorm);
    ti_rows_normalise(dropped, p, C, ph, pnorm);
    if (p > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)p, (int)k, (int)C, 1.0f, ph, (int)C, rh, (int)C, 0.0f,
                    S, (int)k);
    for (size_t j = 0; j < k; j++) den[j] = HOST_WEIGHT;
    memset(acc, 0, k * C * sizeof(float));
    /* the element loops carry `omp simd`: acc never overlaps dropped, and out is kept or
     * apart from it (same element read, then written); without it they stayed scalar */
    for (size_t i = 0; i < p; i++) {
        float *Si = S + i * k;
        #pragma omp simd
        for (size_t j = 0; j < k; j++) Si[j] /= temp;
        float m = -INFINITY;
        for (size_t j = 0; j < k; j++)
            if (Si[j] > m) m = Si[j];
        for (size_t j = 0; j < k; j++) {
            if (Si[j] != m) continue;
            const float w = expf(m);
            den[j] += w;
            float *aj = acc + j * C;
            const float *di = dropped + i * C;
            #pragma omp simd
            for (size_t c = 0; c < C; c++) aj[c] += w * di[c];
        }
    }
    for (size_t j = 0; j < k; j++) {
        const float self = HOST_WEIGHT / den[j], inv = 1.0f / den[j];
        const float *kj = kept + j * C, *aj = acc + j * C;
        float *oj = out + j * C;
        #pragma omp simd
        for (size_t c = 0; c < C; c++) oj[c] = kj[c] * self + aj[c] * inv;
    }
}
