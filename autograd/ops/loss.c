/* Losses, each a scalar [1]. The cross-entropies take logits and fuse their log-softmax:
 * per row r of logits [R,K], lse_r = m_r + log sum_k exp(z_rk - m_r) (m_r the row max), and
 * log p_rk = z_rk - lse_r. Only lse [R] is saved; backward rebuilds p from the logits. */
#include <math.h>
#include <string.h>

#include "autograd/ops.h"
#include "src/common/vecmath.h"

#define LS_PAR 16384

/* One row's max m and log sum_k exp(z_k - m): log p_k = (z_k - m) - log_sum, computed in that
 * order so large logits do not round at |m|'s scale. */
static float row_max_logsum(const float *z, size_t K, float *log_sum) {
    float mx = z[0];
    for (size_t k = 1; k < K; k++) mx = z[k] > mx ? z[k] : mx;
    double s = 0.0;
    #pragma omp simd reduction(+ : s)
    for (size_t k = 0; k < K; k++) s += vm_expf(z[k] - mx);
    *log_sum = (float)log(s);
    return mx;
}

static bool check_logits(ag_ctx *ctx, const char *op, ag_tensor *z) {
    char s[64];
    if (z->ndim < 1 || ag_cols(z) == 0 || ag_rows(z) == 0 || !ag_is_contiguous(z)) {
        ag_error(ctx, TPSC_ERR_SHAPE, "%s: logits %s must be contiguous [B,K] with K > 0", op, ag_shape_str(z, s, sizeof s));
        return false;
    }
    return true;
}

static float *alloc_lse(ag_ctx *ctx, size_t R, bool need) { return need ? ag_alloc(ctx, R * sizeof(float)) : NULL; }

/* ---- soft-target cross-entropy -------------------------------------------------------------- */

/* L = (1/R) sum_r sum_k -t_rk log p_rk.
 * dz_rk += g/R (p_rk sum_k' t_rk' - t_rk)   (p sum t: the targets need not sum to exactly 1);
 * dt_rk += g/R (-log p_rk). */
static void ce_soft_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *z = n->in[0], *t = n->in[1];
    const size_t R = ag_rows(z), K = ag_cols(z);
    const float *lse = n->saved, g = n->out->grad[0] / (float)R;
    float *dz = ag_grad(ctx, z), *dt = ag_grad(ctx, t);
    #pragma omp parallel for if (R * K > LS_PAR)
    for (size_t r = 0; r < R; r++) {
        const float *zr = z->data + r * K, *tr = t->data + r * K;
        if (dz) {
            float tsum = 0.0f;
            for (size_t k = 0; k < K; k++) tsum += tr[k];
            float *dr = dz + r * K;
            const float l = lse[r];
            #pragma omp simd
            for (size_t k = 0; k < K; k++) dr[k] += g * (vm_expf(zr[k] - l) * tsum - tr[k]);
        }
        if (dt)
            for (size_t k = 0; k < K; k++) dt[r * K + k] -= g * (zr[k] - lse[r]);
    }
}

ag_tensor *ag_cross_entropy_soft(ag_ctx *ctx, ag_tensor *logits, ag_tensor *target) {
    if (!ag_ok(ctx, 2, logits, target)) return NULL;
    if (!check_logits(ctx, "cross_entropy_soft", logits)) return NULL;
    char sz[64], st[64];
    if (!ag_same_shape(logits, target) || !ag_is_contiguous(target))
        return ag_error(ctx, TPSC_ERR_SHAPE, "cross_entropy_soft: logits %s and target %s must have the same shape",
                        ag_shape_str(logits, sz, sizeof sz), ag_shape_str(target, st, sizeof st));
    const size_t R = ag_rows(logits), K = ag_cols(logits);
    ag_tensor *in[2] = {logits, target};
    float *lse = alloc_lse(ctx, R, ag_needs_grad(ctx, 2, in));
    ag_tensor *y = ag_new1(ctx, 1);
    if (!y || ctx->status != TPSC_OK) return NULL;
    double total = 0.0;
    #pragma omp parallel for reduction(+ : total) if (R * K > LS_PAR)
    for (size_t r = 0; r < R; r++) {
        const float *zr = logits->data + r * K, *tr = target->data + r * K;
        float ls;
        const float mx = row_max_logsum(zr, K, &ls);
        if (lse) lse[r] = mx + ls;
        double row = 0.0;
        for (size_t k = 0; k < K; k++) row -= (double)tr[k] * (double)((zr[k] - mx) - ls);
        total += row;
    }
    y->data[0] = (float)(total / (double)R);
    ag_node *n = ag_record(ctx, "cross_entropy_soft", ce_soft_backward, y, 2, in);
    if (n) n->saved = lse;
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- hard labels with label smoothing --------------------------------------------------------- */

typedef struct ce_saved {
    float *lse;      /* [R] */
    int32_t *labels; /* [R], the caller's buffer copied */
} ce_saved;

/* Target q_k = (1-eps)[k == y] + eps/K:  dz_rk += g/R (p_rk - q_rk). */
static void ce_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *z = n->in[0];
    float *dz = ag_grad(ctx, z);
    if (!dz) return;
    const ce_saved *s = n->saved;
    const size_t R = ag_rows(z), K = ag_cols(z);
    const float g = n->out->grad[0] / (float)R, eps = n->f[0], off = eps / (float)K;
    #pragma omp parallel for if (R * K > LS_PAR)
    for (size_t r = 0; r < R; r++) {
        const float *zr = z->data + r * K;
        float *dr = dz + r * K;
        const float l = s->lse[r];
        #pragma omp simd
        for (size_t k = 0; k < K; k++) dr[k] += g * (vm_expf(zr[k] - l) - off);
        dr[s->labels[r]] -= g * (1.0f - eps);
    }
}

ag_tensor *ag_cross_entropy(ag_ctx *ctx, ag_tensor *logits, const int32_t *labels, float smoothing) {
    if (!ag_ok(ctx, 1, logits)) return NULL;
    if (!check_logits(ctx, "cross_entropy", logits)) return NULL;
    const size_t R = ag_rows(logits), K = ag_cols(logits);
    if (!labels) return ag_error(ctx, TPSC_ERR_ARG, "cross_entropy: labels are NULL");
    if (!(smoothing >= 0.0f && smoothing <= 1.0f))
        return ag_error(ctx, TPSC_ERR_ARG, "cross_entropy: label smoothing %g outside [0, 1]", (double)smoothing);
    for (size_t r = 0; r < R; r++)
        if (labels[r] < 0 || (size_t)labels[r] >= K)
            return ag_error(ctx, TPSC_ERR_ARG, "cross_entropy: label %d of sample %zu outside [0, %zu)", labels[r], r, K);
    ce_saved *s = NULL;
    if (ag_needs_grad(ctx, 1, &logits)) {
        s = ag_alloc(ctx, sizeof *s);
        if (!s) return NULL;
        s->lse = ag_alloc(ctx, R * sizeof(float));
        s->labels = ag_alloc(ctx, R * sizeof(int32_t));
        if (!s->lse || !s->labels) return NULL;
        memcpy(s->labels, labels, R * sizeof(int32_t));
    }
    ag_tensor *y = ag_new1(ctx, 1);
    if (!y) return NULL;
    const double eps = smoothing;
    double total = 0.0;
    /* Per row: (1-eps) (-log p_y) + eps mean_k(-log p_k). */
    #pragma omp parallel for reduction(+ : total) if (R * K > LS_PAR)
    for (size_t r = 0; r < R; r++) {
        const float *zr = logits->data + r * K;
        float ls;
        const float mx = row_max_logsum(zr, K, &ls);
        if (s) s->lse[r] = mx + ls;
        double sum_neg = 0.0;
        for (size_t k = 0; k < K; k++) sum_neg -= (double)((zr[k] - mx) - ls);
        total += (1.0 - eps) * -(double)((zr[labels[r]] - mx) - ls) + eps * sum_neg / (double)K;
    }
    y->data[0] = (float)(total / (double)R);
    ag_node *n = ag_record(ctx, "cross_entropy", ce_backward, y, 1, &logits);
    if (n) {
        n->saved = s;
        n->f[0] = smoothing;
    }
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- KL divergence in log space --------------------------------------------------------------- */

/* L = sum q (log q - log p) / divisor, q = exp(logq); terms with q = 0 (logq = -inf) are 0.
 * dlogp += -q g / divisor;  dlogq += q (log q - log p + 1) g / divisor. */
static void kl_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *lp = n->in[0], *lq = n->in[1];
    float *dp = ag_grad(ctx, lp), *dq = ag_grad(ctx, lq);
    const float g = n->out->grad[0] / n->f[0];
    const size_t total = ag_numel(lp);
    const float *p = lp->data, *q = lq->data;
    #pragma omp parallel for simd if (parallel: total > LS_PAR)
    for (size_t i = 0; i < total; i++) {
        if (isinf(q[i]) && q[i] < 0) continue;
        const float e = vm_expf(q[i]);
        if (dp) dp[i] -= g * e;
        if (dq) dq[i] += g * e * (q[i] - p[i] + 1.0f);
    }
}

ag_tensor *ag_kl_div(ag_ctx *ctx, ag_tensor *logp, ag_tensor *logq, float divisor) {
    if (!ag_ok(ctx, 2, logp, logq)) return NULL;
    char sp[64], sq[64];
    if (!ag_same_shape(logp, logq) || !ag_is_contiguous(logp) || !ag_is_contiguous(logq))
        return ag_error(ctx, TPSC_ERR_SHAPE, "kl_div: logp %s and logq %s must be contiguous with the same shape",
                        ag_shape_str(logp, sp, sizeof sp), ag_shape_str(logq, sq, sizeof sq));
    if (!(divisor > 0.0f)) return ag_error(ctx, TPSC_ERR_ARG, "kl_div: divisor %g must be > 0", (double)divisor);
    ag_tensor *y = ag_new1(ctx, 1);
    if (!y) return NULL;
    const size_t total = ag_numel(logp);
    const float *p = logp->data, *q = logq->data;
    double acc = 0.0;
    #pragma omp parallel for reduction(+ : acc) if (total > LS_PAR)
    for (size_t i = 0; i < total; i++) {
        if (isinf(q[i]) && q[i] < 0) continue;
        acc += exp((double)q[i]) * ((double)q[i] - (double)p[i]);
    }
    y->data[0] = (float)(acc / (double)divisor);
    ag_node *n = ag_record(ctx, "kl_div", kl_backward, y, 2, (ag_tensor *[]){logp, logq});
    if (n) n->f[0] = divisor;
    return ctx->status == TPSC_OK ? y : NULL;
}

/* ---- mean squared error --------------------------------------------------------------------- */

/* L = mean (a - b)^2:  da += 2 (a - b) g / n,  db -= the same. */
static void mse_backward(ag_ctx *ctx, ag_node *n) {
    ag_tensor *a = n->in[0], *b = n->in[1];
    float *da = ag_grad(ctx, a), *db = ag_grad(ctx, b);
    const size_t total = ag_numel(a);
    const float g = 2.0f * n->out->grad[0] / (float)total;
    const float *x = a->data, *y = b->data;
    #pragma omp parallel for simd if (parallel: total > LS_PAR)
    for (size_t i = 0; i < total; i++) {
        const float d = g * (x[i] - y[i]);
        if (da) da[i] += d;
        if (db) db[i] -= d;
    }
}

ag_tensor *ag_mse(ag_ctx *ctx, ag_tensor *a, ag_tensor *b) {
    if (!ag_ok(ctx, 2, a, b)) return NULL;
    char sa[64], sb[64];
    if (!ag_same_shape(a, b) || !ag_is_contiguous(a) || !ag_is_contiguous(b) || ag_numel(a) == 0)
        return ag_error(ctx, TPSC_ERR_SHAPE, "mse: a %s and b %s must be contiguous, non-empty, with the same shape",
                        ag_shape_str(a, sa, sizeof sa), ag_shape_str(b, sb, sizeof sb));
    ag_tensor *y = ag_new1(ctx, 1);
    if (!y) return NULL;
    const size_t total = ag_numel(a);
    const float *x = a->data, *v = b->data;
    double acc = 0.0;
    #pragma omp parallel for reduction(+ : acc) if (total > LS_PAR)
    for (size_t i = 0; i < total; i++) {
        const double d = (double)x[i] - (double)v[i];
        acc += d * d;
    }
    y->data[0] = (float)(acc / (double)total);
    ag_record(ctx, "mse", mse_backward, y, 2, (ag_tensor *[]){a, b});
    return ctx->status == TPSC_OK ? y : NULL;
}
