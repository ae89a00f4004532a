/* ag_gemm's operands and kernel switch (see gemm.h). */
#include "autograd/gemm.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

#include "autograd/gemm_bf16.h"
#include "src/common/bf16_round.h"
#include "src/util/alloc.h"

#define ROUND_PAR (1 << 16) /* values below which rounding stays on one thread */
#define ROUND_CHUNK 4096

/* The step's bf16 copies of parameters, found by their FP32 address. */
typedef struct param_copy {
    const float *f;
    size_t n;
    uint16_t *h;
    uint64_t step; /* ctx->step when h was last rounded from f */
    ag_bf16_packed *packed; /* h in the linear kernel's layout (y = x h^T), NULL until first used so */
    uint64_t packed_step;   /* ctx->step when packed was last made from h */
    ag_bf16_packed *packed_nt; /* the same for the input-gradient product (y = dy h) */
    uint64_t packed_nt_step;
} param_copy;

struct ag_bf16_params {
    param_copy *v;
    size_t n, cap, hint;
};

tpsc_status ag_bf16_available(void) { return ag_bf16_kernel_available(); }

tpsc_status ag_set_precision(ag_ctx *ctx, ag_precision p) {
    if (p != AG_FP32 && p != AG_BF16) return tpsc_fail(TPSC_ERR_ARG, "precision %d is neither fp32 nor bf16", (int)p);
    if (p == AG_BF16) TPSC_TRY(ag_bf16_available());
    ctx->precision = p;
    return TPSC_OK;
}

const char *ag_precision_name(ag_precision p) { return p == AG_BF16 ? "bf16" : "fp32"; }

tpsc_status ag_precision_parse(const char *s, ag_precision *p) {
    if (s && strcmp(s, "fp32") == 0) *p = AG_FP32;
    else if (s && strcmp(s, "bf16") == 0) *p = AG_BF16;
    else return tpsc_fail(TPSC_ERR_CONFIG, "precision '%s': expected fp32 or bf16", s ? s : "");
    return TPSC_OK;
}

/* h [n] = bf16(f [n]); threaded for large n unless already inside a parallel region. */
static void round_into(uint16_t *h, const float *f, size_t n) {
    const size_t chunks = (n + ROUND_CHUNK - 1) / ROUND_CHUNK;
    #pragma omp parallel for schedule(static) if (n > ROUND_PAR)
    for (size_t c = 0; c < chunks; c++) {
        const size_t lo = c * ROUND_CHUNK, len = n - lo < ROUND_CHUNK ? n - lo : ROUND_CHUNK;
        bf16_round_row(f + lo, len, h + lo);
    }
}

ag_operand ag_operand_act(ag_ctx *ctx, const float *f, size_t n) {
    ag_operand o = {f, NULL, 0, 0};
    if (ctx->precision != AG_BF16 || ctx->status != TPSC_OK) return o;
    const size_t words = (n + 1) / 2; /* two bf16 values per float of pool scratch */
    uint16_t *h = (uint16_t *)ag_scratch_get(ctx, words);
    if (!h) return o;
    round_into(h, f, n);
    o.h = h;
    o.pool_numel = words;
    return o;
}

/* db [N] += column sums of dy [M,N], as sgemv dy^T 1 (OpenBLAS streams the rows and threads
 * it). */
static void column_sums_sgemv(ag_ctx *ctx, const float *dy, int M, int N, float *db) {
    float *ones = ag_alloc(ctx, (size_t)M * sizeof(float));
    if (!ones) return;
    for (int m = 0; m < M; m++) ones[m] = 1.0f;
    cblas_sgemv(CblasRowMajor, CblasTrans, M, N, 1.0f, dy, N, ones, 1, 1.0f, db, 1);
}

ag_operand ag_operand_grad_sums(ag_ctx *ctx, const float *dy, int M, int N, float *db) {
    if (!db) return ag_operand_act(ctx, dy, (size_t)M * (size_t)N);
    if (ctx->precision != AG_BF16 || ctx->status != TPSC_OK) {
        if (ctx->status == TPSC_OK) column_sums_sgemv(ctx, dy, M, N, db);
        return (ag_operand){dy, NULL, 0, 0};
    }
    const size_t n = (size_t)M * (size_t)N, words = (n + 1) / 2;
    const int threads = omp_get_max_threads();
    uint16_t *h = (uint16_t *)ag_scratch_get(ctx, words);
    double *part = ag_alloc(ctx, (size_t)threads * (size_t)N * sizeof(double));
    if (!h || !part) {
        if (h) ag_scratch_put(ctx, (float *)(void *)h, words);
        return (ag_operand){dy, NULL, 0, 0};
    }
    memset(part, 0, (size_t)threads * (size_t)N * sizeof(double));
    /* rows split evenly between the threads; each sums its rows into its own part[t] */
    #pragma omp parallel if (n > ROUND_PAR)
    {
        const int t = omp_get_thread_num(), nt = omp_get_num_threads();
        const size_t lo = (size_t)M * (size_t)t / (size_t)nt, hi = (size_t)M * (size_t)(t + 1) / (size_t)nt;
        double *acc = part + (size_t)t * (size_t)N;
        for (size_t r = lo; r < hi; r++) {
            const float *row = dy + r * (size_t)N;
            bf16_round_row(row, (size_t)N, h + r * (size_t)N);
            #pragma omp simd
            for (int c = 0; c < N; c++) acc[c] += row[c];
        }
    }
    for (int c = 0; c < N; c++) {
        double sum = 0.0;
        for (int t = 0; t < threads; t++) sum += part[(size_t)t * (size_t)N + (size_t)c];
        db[c] += (float)sum;
    }
    return (ag_operand){dy, h, words, 0};
}

ag_operand ag_operand_grad_bf16_sums(ag_ctx *ctx, const uint16_t *dy, const double *sums, int N, float *db) {
    const ag_operand o = {.h = dy};
    if (!db || ctx->status != TPSC_OK) return o;
    if (!sums) {
        ag_error(ctx, TPSC_ERR_INTERNAL, "a bf16 gradient reached a linear's bias without its column sums");
        return o;
    }
    for (int c = 0; c < N; c++) db[c] += (float)sums[c];
    return o;
}

ag_operand ag_operand_bf16_scratch(ag_ctx *ctx, size_t n) {
    ag_operand o = {NULL, NULL, 0, 0};
    if (ctx->precision != AG_BF16 || ctx->status != TPSC_OK) return o;
    const size_t words = (n + 1) / 2;
    o.h = (uint16_t *)ag_scratch_get(ctx, words);
    if (o.h) o.pool_numel = words;
    return o;
}

size_t ag_operand_bytes(const ag_ctx *ctx, size_t n) { return ctx->precision == AG_BF16 ? n * sizeof(uint16_t) : 0; }

ag_operand ag_operand_into(const ag_ctx *ctx, const float *f, size_t n, uint16_t *buf) {
    ag_operand o = {f, NULL, 0, 0};
    if (ctx->precision != AG_BF16 || !buf) return o;
    round_into(buf, f, n);
    o.h = buf;
    return o;
}

ag_operand ag_operand_param(ag_ctx *ctx, const float *f, size_t n) {
    ag_operand o = {f, NULL, 0, 0};
    if (ctx->precision != AG_BF16 || ctx->status != TPSC_OK) return o;
    ag_bf16_params *c = ctx->bf16_params;
    if (!c) {
        c = tpsc_calloc(1, sizeof *c, "bf16 parameter copies");
        if (!c) {
            ag_error(ctx, TPSC_ERR_NOMEM, "no memory for the bf16 parameter copies");
            return o;
        }
        ctx->bf16_params = c;
    }
    /* Parameters are used in the same order every step: search from the last hit. */
    param_copy *pc = NULL;
    for (size_t j = 0; j < c->n && !pc; j++) {
        const size_t i = (c->hint + j) % c->n;
        if (c->v[i].f == f && c->v[i].n == n) pc = &c->v[i], c->hint = i + 1;
    }
    if (!pc) {
        if (c->n == c->cap) {
            const size_t cap = c->cap ? 2 * c->cap : 64;
            param_copy *v = tpsc_realloc(c->v, cap * sizeof *v, "bf16 parameter copies");
            if (!v) {
                ag_error(ctx, TPSC_ERR_NOMEM, "no memory for the bf16 parameter copies");
                return o;
            }
            c->v = v, c->cap = cap;
        }
        uint16_t *h = tpsc_malloc(n * sizeof *h, "bf16 parameter copy");
        if (!h) {
            ag_error(ctx, TPSC_ERR_NOMEM, "no memory for a bf16 parameter copy of %zu values", n);
            return o;
        }
        pc = &c->v[c->n++];
        *pc = (param_copy){f, n, h, ctx->step - 1, NULL, ctx->step - 1, NULL, ctx->step - 1};
    }
    if (pc->step != ctx->step) {
        round_into(pc->h, f, n);
        pc->step = ctx->step;
    }
    o.h = pc->h;
    o.param = (size_t)(pc - c->v) + 1;
    return o;
}

ag_operand ag_operand_at(ag_operand o, size_t offset) {
    o.f += offset;
    if (o.h) o.h += offset;
    o.pool_numel = 0;
    o.param = 0;
    return o;
}

void ag_operand_done(ag_ctx *ctx, ag_operand *o) {
    if (o->pool_numel) ag_scratch_put(ctx, (float *)(void *)o->h, o->pool_numel);
    o->h = NULL;
    o->pool_numel = 0;
}

void ag_gemm_free_params(ag_ctx *ctx) {
    ag_bf16_params *c = ctx->bf16_params;
    if (!c) return;
    for (size_t i = 0; i < c->n; i++) {
        tpsc_free(c->v[i].h);
        ag_bf16_packed_free(c->v[i].packed);
        ag_bf16_packed_free(c->v[i].packed_nt);
    }
    tpsc_free(c->v);
    tpsc_free(c);
    ctx->bf16_params = NULL;
}

/* The packed form of parameter operand b for the linear's forward (y = x b^T) or its dx product
 * (y = dy b); *stale says it must be packed again: its copy was rounded anew this step. NULL
 * for an operand that is not a parameter. */
static ag_bf16_packed **packed_slot(ag_ctx *ctx, ag_operand b, bool for_dx, bool *stale) {
    *stale = false;
    if (!b.param) return NULL;
    param_copy *pc = &ctx->bf16_params->v[b.param - 1];
    uint64_t *step = for_dx ? &pc->packed_nt_step : &pc->packed_step;
    *stale = *step != ctx->step;
    *step = ctx->step;
    return for_dx ? &pc->packed_nt : &pc->packed;
}

/* BF16: y = alpha a b + beta y with b a parameter's copy (a linear's dx = dy w), dense, outside
 * a parallel region: b is read packed in the kernel's layout, packed again at its first such
 * product of a step. False (nothing done) for any other product. */
static bool packed_product(ag_ctx *ctx, bool trans_a, bool trans_b, int M, int N, int K, float alpha, ag_operand a,
                           int lda, ag_operand b, int ldb, float beta, void *y, bool y_bf16, int ldy) {
    if (!b.param || trans_a || trans_b || lda != K || ldb != N || ldy != N || omp_in_parallel()) return false;
    bool stale;
    ag_bf16_packed **pk = packed_slot(ctx, b, true, &stale);
    if (!ag_bf16_gemm_packed(M, N, K, alpha, a.h, b.h, pk, stale, beta, y, y_bf16)) {
        #pragma omp critical(ag_gemm_error)
        if (ctx->status == TPSC_OK) ctx->status = TPSC_ERR_INTERNAL;
    }
    return true;
}

void ag_gemm(ag_ctx *ctx, bool trans_a, bool trans_b, int M, int N, int K, float alpha, ag_operand a, int lda,
             ag_operand b, int ldb, float beta, float *y, int ldy) {
    if (ctx->precision != AG_BF16) {
        cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans, trans_b ? CblasTrans : CblasNoTrans, M, N, K,
                    alpha, a.f, lda, b.f, ldb, beta, y, ldy);
        return;
    }
    if (!a.h || !b.h) { /* an operand could not be rounded: its op already set ctx's error */
        if (ctx->status == TPSC_OK) {
            #pragma omp critical(ag_gemm_error)
            ctx->status = TPSC_ERR_INTERNAL;
        }
        return;
    }
    if (packed_product(ctx, trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, y, false, ldy)) return;
    if (!ag_bf16_gemm(trans_a, trans_b, M, N, K, alpha, a.h, lda, b.h, ldb, beta, y, ldy)) {
        #pragma omp critical(ag_gemm_error)
        if (ctx->status == TPSC_OK) ctx->status = TPSC_ERR_INTERNAL;
    }
}

#define FILL_PAR 32768 /* output elements above which the FP32 fill is worth threads */

/* The BF16 form of the linears' forward: y [M,N] = a [M,K] b^T (b [N,K]) + bias [N] + r [M,N],
 * bias and r (contiguous floats) optional, added in the kernel as it stores y. False in FP32:
 * the caller runs its own FP32 form. True in BF16, the product done or ctx's error set (an
 * operand that could not be made, its op having already said why, or a kernel that failed). */
/* y = a b^T + bias + r on bf16 operands (y floats, or bf16 when y_bf16); a parameter b is read
 * packed, packed again at its first product of a step (its copy was refreshed then). */
static void linear_bf16(ag_ctx *ctx, int M, int N, int K, ag_operand a, ag_operand b, const float *bias, const float *r,
                        void *y, bool y_bf16) {
    bool stale;
    ag_bf16_packed **pk = packed_slot(ctx, b, false, &stale);
    if (!ag_bf16_linear(M, N, K, a.h, b.h, pk, stale, bias, r, y, y_bf16) &&
        ctx->status == TPSC_OK)
        ctx->status = TPSC_ERR_INTERNAL;
}

static bool gemm_linear_bf16(ag_ctx *ctx, int M, int N, int K, ag_operand a, ag_operand b, const float *bias,
                             const float *r, float *y) {
    if (ctx->precision != AG_BF16) return false;
    if (!a.h || !b.h) {
        if (ctx->status == TPSC_OK) ctx->status = TPSC_ERR_INTERNAL;
        return true;
    }
    linear_bf16(ctx, M, N, K, a, b, bias, r, y, false);
    return true;
}

void ag_gemm_linear(ag_ctx *ctx, int M, int N, int K, ag_operand x, ag_operand w, const float *bias, const float *r,
                    float *y) {
    if (gemm_linear_bf16(ctx, M, N, K, x, w, bias, r, y)) return;
    /* y [M,N] = r + bias, then sgemm accumulates x w^T onto it (beta 1) */
    float beta = 0.0f;
    if (r || bias) {
        #pragma omp parallel for if (M * N > FILL_PAR)
        for (int m = 0; m < M; m++) {
            float *yr = y + (size_t)m * N;
            const float *rr = r ? r + (size_t)m * N : NULL;
            if (rr && bias) {
                #pragma omp simd
                for (int o = 0; o < N; o++) yr[o] = rr[o] + bias[o];
            } else {
                memcpy(yr, rr ? rr : bias, (size_t)N * sizeof(float));
            }
        }
        beta = 1.0f;
    }
    ag_gemm(ctx, false, true, M, N, K, 1.0f, x, K, w, K, beta, y, N);
}

void ag_gemm_linear_to_bf16(ag_ctx *ctx, int M, int N, int K, ag_operand x, ag_operand w, const float *bias,
                            uint16_t *y) {
    if (ctx->precision != AG_BF16 || !x.h || !w.h) {
        if (ctx->status == TPSC_OK) ctx->status = TPSC_ERR_INTERNAL;
        return;
    }
    linear_bf16(ctx, M, N, K, x, w, bias, NULL, y, true);
}

void ag_gemm_to_bf16(ag_ctx *ctx, bool trans_a, bool trans_b, int M, int N, int K, ag_operand a, int lda,
                     ag_operand b, int ldb, uint16_t *y, int ldy) {
    if (ctx->precision != AG_BF16 || !a.h || !b.h) {
        if (ctx->status == TPSC_OK) ctx->status = TPSC_ERR_INTERNAL;
        return;
    }
    if (packed_product(ctx, trans_a, trans_b, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, y, true, ldy)) return;
    if (!ag_bf16_gemm_to_bf16(trans_a, trans_b, M, N, K, a.h, lda, b.h, ldb, y, ldy) && ctx->status == TPSC_OK)
        ctx->status = TPSC_ERR_INTERNAL;
}

void ag_gemm_mul(ag_ctx *ctx, int M, int N, int K, ag_operand a, ag_operand b, ag_operand m, float *y) {
    ag_gemm(ctx, false, false, M, N, K, 1.0f, a, K, b, N, 0.0f, y, N);
    if (ctx->status != TPSC_OK) return;
    const size_t n = (size_t)M * (size_t)N;
    if (ctx->precision == AG_BF16 && m.h) {
        #pragma omp parallel for simd if (parallel: n > FILL_PAR)
        for (size_t i = 0; i < n; i++) y[i] *= bf16_to_float(m.h[i]);
        return;
    }
    #pragma omp parallel for simd if (parallel: n > FILL_PAR)
    for (size_t i = 0; i < n; i++) y[i] *= m.f[i];
}
