/* Matrix products through ag_gemm (FP32 sgemm or BF16, by the context's precision): 2-D, a batch of G independent products (3-D a and b),
 * or a batch against one shared 2-D b. op(a) is a or a^T (trans_a), op(b) likewise:
 *     y [G,M,N] = op(a) [G,M,K] @ op(b) [G,K,N]. */
#include "autograd/gemm.h"
#include "autograd/ops.h"

/* Per-product FLOPs under which a batch is spread over threads, one sgemm each; above it,
 * OpenBLAS threads the single product better. */
#define MM_SMALL (1 << 21)

typedef struct mm_dims {
    int G, M, N, K;
    bool ta, tb, shared_b;
} mm_dims;

static void mm_read(const ag_node *n, mm_dims *d) {
    d->G = (int)n->i[0];
    d->M = (int)n->i[1];
    d->N = (int)n->i[2];
    d->K = (int)n->i[3];
    d->ta = n->f[0] != 0.0f;
    d->tb = n->f[1] != 0.0f;
    d->shared_b = n->in[1]->ndim == 2 && n->in[0]->ndim == 3;
}

/* One product of the batch: y [M,N] (+)= op(a) @ op(b), leading dims from the stored layouts. */
static void gemm(ag_ctx *ctx, bool ta, bool tb, int M, int N, int K, ag_operand a, ag_operand b, float beta, float *y) {
    ag_gemm(ctx, ta, tb, M, N, K, 1.0f, a, ta ? M : K, b, tb ? K : N, beta, y, N);
}

/* With y = op(a) op(b) and dy [M,N]:
 *   d op(a) = dy op(b)^T, so da [M,K] += dy op(b)^T, or da [K,M] += op(b) dy^T when trans_a;
 *   d op(b) = op(a)^T dy, so db [K,N] += op(a)^T dy, or db [N,K] += dy^T op(a) when trans_b. */
static void da_one(ag_ctx *ctx, const mm_dims *d, ag_operand dy, ag_operand b, float *da) {
    const int M = d->M, N = d->N, K = d->K;
    if (!d->ta)
        ag_gemm(ctx, false, !d->tb, M, K, N, 1.0f, dy, N, b, d->tb ? K : N, 1.0f, da, K);
    else
        ag_gemm(ctx, d->tb, true, K, M, N, 1.0f, b, d->tb ? K : N, dy, N, 1.0f, da, M);
}

static void db_one(ag_ctx *ctx, const mm_dims *d, ag_operand dy, ag_operand a, float *db) {
    const int M = d->M, N = d->N, K = d->K;
    if (!d->tb)
        ag_gemm(ctx, !d->ta, false, K, N, M, 1.0f, a, d->ta ? M : K, dy, N, 1.0f, db, N);
    else
        ag_gemm(ctx, true, d->ta, N, K, M, 1.0f, dy, N, a, d->ta ? M : K, 1.0f, db, K);
}

static void matmul_backward(ag_ctx *ctx, ag_node *n) {
    mm_dims d;
    mm_read(n, &d);
    ag_tensor *a = n->in[0], *b = n->in[1];
    const float *dy = n->out->grad;
    float *da = ag_grad(ctx, a), *db = ag_grad(ctx, b);
    const size_t sa = (size_t)d.M * d.K, sb = d.shared_b ? 0 : (size_t)d.K * d.N, sy = (size_t)d.M * d.N;
    const bool small = (double)d.M * d.N * d.K < MM_SMALL && d.G > 1;
    ag_operand dyo = ag_operand_act(ctx, dy, (size_t)d.G * sy);
    ag_operand ao = ag_operand_act(ctx, a->data, ag_numel(a)), bo = ag_operand_act(ctx, b->data, ag_numel(b));
    if (da) {
        if (d.shared_b && !d.ta) {
            /* All G*M rows of a meet the same b: one tall product. */
            mm_dims all = d;
            all.M = d.G * d.M;
            da_one(ctx, &all, dyo, bo, da);
        } else {
            #pragma omp parallel for if (small)
            for (int g = 0; g < d.G; g++)
                da_one(ctx, &d, ag_operand_at(dyo, g * sy), ag_operand_at(bo, g * sb), da + g * sa);
        }
    }
    if (db) {
        if (d.shared_b && !d.ta) {
            mm_dims all = d;
            all.M = d.G * d.M;
            db_one(ctx, &all, dyo, ao, db);
        } else if (d.shared_b) {
            /* Every product adds into the one db: in sequence, no race. */
            for (int g = 0; g < d.G; g++) db_one(ctx, &d, ag_operand_at(dyo, g * sy), ag_operand_at(ao, g * sa), db);
        } else {
            #pragma omp parallel for if (small)
            for (int g = 0; g < d.G; g++)
                db_one(ctx, &d, ag_operand_at(dyo, g * sy), ag_operand_at(ao, g * sa), db + g * sb);
        }
    }
    ag_operand_done(ctx, &bo);
    ag_operand_done(ctx, &ao);
    ag_operand_done(ctx, &dyo);
}

ag_tensor *ag_matmul(ag_ctx *ctx, ag_tensor *a, ag_tensor *b, bool trans_a, bool trans_b) {
    if (!ag_ok(ctx, 2, a, b)) return NULL;
    char sa_s[64], sb_s[64];
    const bool batched = a->ndim == 3;
    const bool ok_rank = (a->ndim == 2 && b->ndim == 2) || (batched && (b->ndim == 3 || b->ndim == 2));
    if (!ok_rank)
        return ag_error(ctx, TPSC_ERR_SHAPE, "matmul: a %s and b %s: need 2-D @ 2-D, 3-D @ 3-D or 3-D @ 2-D",
                        ag_shape_str(a, sa_s, sizeof sa_s), ag_shape_str(b, sb_s, sizeof sb_s));
    const int ad = a->ndim - 2, bd = b->ndim - 2; /* index of the matrix dims */
    const size_t G = batched ? a->shape[0] : 1;
    const size_t M = trans_a ? a->shape[ad + 1] : a->shape[ad], K = trans_a ? a->shape[ad] : a->shape[ad + 1];
    const size_t Kb = trans_b ? b->shape[bd + 1] : b->shape[bd], N = trans_b ? b->shape[bd] : b->shape[bd + 1];
    if (K != Kb || (b->ndim == 3 && b->shape[0] != G))
        return ag_error(ctx, TPSC_ERR_SHAPE, "matmul: a %s%s and b %s%s do not chain (inner %zu vs %zu)",
                        ag_shape_str(a, sa_s, sizeof sa_s), trans_a ? "^T" : "", ag_shape_str(b, sb_s, sizeof sb_s),
                        trans_b ? "^T" : "", K, Kb);
    if (!ag_is_contiguous(a) || !ag_is_contiguous(b))
        return ag_error(ctx, TPSC_ERR_SHAPE, "matmul: inputs must be contiguous (a %s, b %s)",
                        ag_shape_str(a, sa_s, sizeof sa_s), ag_shape_str(b, sb_s, sizeof sb_s));
    ag_tensor *y = batched ? ag_new3(ctx, G, M, N) : ag_new2(ctx, M, N);
    if (!y) return NULL;
    const bool shared_b = batched && b->ndim == 2;
    const size_t sa = M * K, sb = shared_b ? 0 : K * N, sy = M * N;
    ag_operand ao = ag_operand_act(ctx, a->data, ag_numel(a)), bo = ag_operand_act(ctx, b->data, ag_numel(b));
    if (shared_b && !trans_a) {
        gemm(ctx, false, trans_b, (int)(G * M), (int)N, (int)K, ao, bo, 0.0f, y->data);
    } else {
        const bool small = (double)M * N * K < MM_SMALL && G > 1;
        #pragma omp parallel for if (small)
        for (size_t g = 0; g < G; g++)
            gemm(ctx, trans_a, trans_b, (int)M, (int)N, (int)K, ag_operand_at(ao, g * sa), ag_operand_at(bo, g * sb),
                 0.0f, y->data + g * sy);
    }
    ag_operand_done(ctx, &bo);
    ag_operand_done(ctx, &ao);
    ag_node *n = ag_record(ctx, "matmul", matmul_backward, y, 2, (ag_tensor *[]){a, b});
    if (n) {
        n->i[0] = (int64_t)G;
        n->i[1] = (int64_t)M;
        n->i[2] = (int64_t)N;
        n->i[3] = (int64_t)K;
        n->f[0] = trans_a ? 1.0f : 0.0f;
        n->f[1] = trans_b ? 1.0f : 0.0f;
    }
    return ctx->status == TPSC_OK ? y : NULL;
}
