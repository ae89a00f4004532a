/* oneDNN matmul for ag_gemm's BF16 precision (see gemm_bf16.h).
 *
 * Threads: the primitive cache is shared by all threads (a mutex around lookups and inserts;
 * the calls it guards are few and short next to a product), everything a call writes is its
 * own: memory objects made per call around the caller's pointers, one stream per thread, and
 * one scratchpad per thread. The scratchpad is the one that matters: by default a primitive
 * owns its scratchpad (where the brgemm kernels copy a transposed or strided operand), so two
 * threads running the same primitive at once (one shape, inside a parallel region) overwrite
 * each other's copies and get wrong products now and then. Primitives are therefore made with
 * the user scratchpad mode and every call hands in its thread's buffer.
 * Debian's libdnnl runs on the OpenMP runtime (libgomp), the pool OpenBLAS and our loops use,
 * so the cores are never oversubscribed. */
#include "autograd/gemm_bf16.h"

#ifndef TPSC_HAVE_ONEDNN

tpsc_status ag_bf16_kernel_available(void) {
    return tpsc_fail(TPSC_ERR_CONFIG,
                     "precision bf16 needs oneDNN: this tpsc was built without it (install libdnnl-dev and configure "
                     "with -DTPSC_WITH_ONEDNN=ON or AUTO)");
}

bool ag_bf16_kernel_uses_amx(void) {
    return false;
}

void ag_bf16_packed_free(ag_bf16_packed *pk) { (void)pk; }

bool ag_bf16_gemm_to_bf16(bool trans_a, bool trans_b, int M, int N, int K, const uint16_t *a, int lda,
                          const uint16_t *b, int ldb, uint16_t *y, int ldy) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)a, (void)lda, (void)b, (void)ldb, (void)y, (void)ldy;
    ag_bf16_kernel_available();
    return false;
}

bool ag_bf16_gemm_packed(int M, int N, int K, float alpha, const uint16_t *a, const uint16_t *b, ag_bf16_packed **pk,
                         bool stale, float beta, void *y, bool y_bf16) {
    (void)M, (void)N, (void)K, (void)alpha, (void)a, (void)b, (void)pk, (void)stale, (void)beta, (void)y, (void)y_bf16;
    ag_bf16_kernel_available();
    return false;
}

bool ag_bf16_linear(int M, int N, int K, const uint16_t *a, const uint16_t *b, ag_bf16_packed **pk, bool stale,
                    const float *bias, const float *r, void *y, bool y_bf16) {
    (void)M, (void)N, (void)K, (void)a, (void)b, (void)pk, (void)stale, (void)bias, (void)r, (void)y, (void)y_bf16;
    ag_bf16_kernel_available();
    return false;
}

bool ag_bf16_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                  const uint16_t *b, int ldb, float beta, float *y, int ldy) {
    (void)trans_a, (void)trans_b, (void)M, (void)N, (void)K, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)y, (void)ldy;
    ag_bf16_kernel_available();
    return false;
}

#else

#include <oneapi/dnnl/dnnl.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PRIMS 4096 /* shapes kept; a shape beyond them gets a primitive made and dropped per call */

typedef struct key {
    int M, N, K, lda, ldb, ldy, ldr;
    bool ta, tb, in_parallel, bias, resid, y_bf16;
    bool packed_b; /* b in the layout the kernel picks (ag_bf16_packed), not row-major */
    int max_threads;
    float alpha, beta;
} key;

typedef struct prim {
    key k;
    dnnl_primitive_t p;
    dnnl_memory_desc_t a, b, y, bias, resid, scratch;
    size_t scratch_bytes;
} prim;

/* A call's memory arguments, in this order. */
enum { ARG_A, ARG_B, ARG_Y, ARG_BIAS, ARG_R, ARG_SCRATCH, N_ARGS };

/* What a thread owns: its stream, its scratchpad buffer (grown to the largest need), and its
 * memory objects for each cached primitive (mem[i] for prims[i]), made at the primitive's
 * first call on the thread and pointed at the call's operands each time after. */
typedef struct thread_state {
    dnnl_stream_t stream;
    void *scratch;
    size_t scratch_cap;
    float *flip; /* a product computed as its transpose (wide_weight_grad) */
    size_t flip_cap;
    dnnl_memory_t (*mem)[N_ARGS];
    int mem_cap;
} thread_state;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine; /* one CPU engine for the process, never destroyed */
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_key_t state_key;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static prim prims[MAX_PRIMS];
static int n_prims, hint;

static void free_state(void *p) {
    thread_state *t = p;
    if (!t) return;
    if (t->stream) dnnl_stream_destroy(t->stream);
    for (int i = 0; i < t->mem_cap; i++)
        for (int j = 0; j < N_ARGS; j++)
            if (t->mem[i][j]) dnnl_memory_destroy(t->mem[i][j]);
    free(t->mem);
    free(t->scratch);
    free(t->flip);
    free(t);
}

static void init_once(void) {
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success && pthread_key_create(&state_key, free_state) != 0)
        engine_status = dnnl_out_of_memory;
}

tpsc_status ag_bf16_kernel_available(void) {
    pthread_once(&once, init_once);
    if (engine_status != dnnl_success)
        return tpsc_fail(TPSC_ERR_CONFIG, "precision bf16: oneDNN's CPU engine cannot be created (status %d)",
                         (int)engine_status);
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) != (unsigned)dnnl_cpu_isa_avx512_core_bf16)
        return tpsc_fail(TPSC_ERR_CONFIG,
                         "precision bf16 needs a CPU with AVX512-BF16 (avx512_bf16 in /proc/cpuinfo), which this one "
                         "lacks (oneDNN reports ISA 0x%x%s); use precision fp32",
                         (unsigned)isa, getenv("DNNL_MAX_CPU_ISA") ? ", limited by DNNL_MAX_CPU_ISA" : "");
    return TPSC_OK;
}

bool ag_bf16_kernel_uses_amx(void) {
    const unsigned amx = (unsigned)dnnl_cpu_isa_avx512_core_amx;
    return ((unsigned)dnnl_get_effective_cpu_isa() & amx) == amx;
}

/* The calling thread's state with a scratchpad of at least `bytes`; NULL when out of memory. */
static thread_state *this_thread(size_t bytes) {
    thread_state *t = pthread_getspecific(state_key);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t) return NULL;
        if (dnnl_stream_create(&t->stream, engine, dnnl_stream_default_flags) != dnnl_success ||
            pthread_setspecific(state_key, t) != 0) {
            free_state(t);
            return NULL;
        }
    }
    if (bytes > t->scratch_cap) {
        const size_t cap = (bytes + 4095) / 4096 * 4096;
        void *p = aligned_alloc(64, cap);
        if (!p) return NULL;
        free(t->scratch);
        t->scratch = p, t->scratch_cap = cap;
    }
    return t;
}

/* The thread's memory objects for prims[i] (all NULL until first made); NULL when out of
 * memory. */
static dnnl_memory_t *thread_mems(thread_state *t, int i) {
    if (i >= t->mem_cap) {
        int cap = t->mem_cap ? t->mem_cap : 64;
        while (cap <= i) cap *= 2;
        dnnl_memory_t(*m)[N_ARGS] = realloc(t->mem, (size_t)cap * sizeof *m);
        if (!m) return NULL;
        memset(m + t->mem_cap, 0, (size_t)(cap - t->mem_cap) * sizeof *m);
        t->mem = m, t->mem_cap = cap;
    }
    return t->mem[i];
}

/* a [M,K] is stored [M,K] with row stride lda, or [K,M] when transposed; b [K,N] likewise. */
static dnnl_status_t make(const key *k, prim *out) {
    const dnnl_dims_t ad = {k->M, k->K}, bd = {k->K, k->N}, yd = {k->M, k->N};
    const dnnl_dims_t as = {k->ta ? 1 : k->lda, k->ta ? k->lda : 1};
    const dnnl_dims_t bs = {k->tb ? 1 : k->ldb, k->tb ? k->ldb : 1};
    const dnnl_dims_t ys = {k->ldy, 1};
    const dnnl_dims_t biasd = {1, k->N}, biass = {k->N, 1}, rs = {k->ldr, 1};
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&out->a, 2, ad, dnnl_bf16, as);
    if (s == dnnl_success)
        s = k->packed_b ? dnnl_memory_desc_init_by_tag(&out->b, 2, bd, dnnl_bf16, dnnl_format_tag_any)
                        : dnnl_memory_desc_init_by_strides(&out->b, 2, bd, dnnl_bf16, bs);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&out->y, 2, yd, k->y_bf16 ? dnnl_bf16 : dnnl_f32, ys);
    if (s == dnnl_success && k->bias) s = dnnl_memory_desc_init_by_strides(&out->bias, 2, biasd, dnnl_f32, biass);
    if (s == dnnl_success && k->resid)
        s = dnnl_memory_desc_init_by_strides(&out->resid, 2, yd, dnnl_f32, rs);
    dnnl_matmul_desc_t desc;
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&desc, &out->a, &out->b, k->bias ? &out->bias : NULL, &out->y);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && k->alpha != 1.0f) s = dnnl_primitive_attr_set_output_scales(attr, 1, 0, &k->alpha);
    if (s == dnnl_success && (k->beta != 0.0f || k->resid)) {
        s = dnnl_post_ops_create(&ops);
        if (s == dnnl_success && k->beta != 0.0f) s = dnnl_post_ops_append_sum(ops, k->beta);
        if (s == dnnl_success && k->resid)
            s = dnnl_post_ops_append_binary(ops, dnnl_binary_add, &out->resid);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL);
    if (s == dnnl_success && k->packed_b) out->b = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    if (s == dnnl_success) {
        const dnnl_memory_desc_t *sm = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
        out->scratch = *sm;
        out->scratch_bytes = dnnl_memory_desc_get_size(sm);
    }
    if (s == dnnl_success) s = dnnl_primitive_create(&out->p, pd);
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    out->k = *k;
    return s;
}

static bool same(const key *x, const key *y) {
    return x->M == y->M && x->N == y->N && x->K == y->K && x->lda == y->lda && x->ldb == y->ldb && x->ldy == y->ldy &&
           x->ldr == y->ldr && x->ta == y->ta && x->tb == y->tb && x->in_parallel == y->in_parallel &&
           x->bias == y->bias && x->resid == y->resid && x->y_bf16 == y->y_bf16 && x->packed_b == y->packed_b && x->max_threads == y->max_threads && x->alpha == y->alpha &&
           x->beta == y->beta;
}

/* The cached primitive of k (made on first use), or a made one the caller must destroy
 * (*owned) when the cache is full; NULL on failure. */
static const prim *lookup(const key *k, prim *tmp, bool *owned) {
    *owned = false;
    pthread_mutex_lock(&lock);
    /* Calls repeat in the same order every step: start where the last hit was. */
    for (int j = 0; j < n_prims; j++) {
        const int i = (hint + j) % n_prims;
        if (same(&prims[i].k, k)) {
            hint = i + 1;
            pthread_mutex_unlock(&lock);
            return &prims[i];
        }
    }
    const prim *r = NULL;
    if (n_prims < MAX_PRIMS) {
        if (make(k, &prims[n_prims]) == dnnl_success) r = &prims[n_prims++];
    } else if (make(k, tmp) == dnnl_success) {
        r = tmp;
        *owned = true;
    }
    pthread_mutex_unlock(&lock);
    return r;
}

/* A weight in the kernel's layout: buf holds b^T [K,N] laid out as md, made by `reorder`
 * (kept while the kernel asks for the same layout). */
struct ag_bf16_packed {
    dnnl_memory_desc_t md;
    void *buf;
    size_t cap;
    dnnl_primitive_t reorder;
};

static bool pack(const prim *p, const uint16_t *b, bool stale, ag_bf16_packed **pk, thread_state *t);

/* y is floats, or bf16 when y_bf16. With pk (a linear's weight, trans_b), b is handed to the
 * kernel in its own layout, packed into *pk from the row-major b when stale or first seen. */
static bool product(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                    const uint16_t *b, int ldb, float beta, void *y, bool y_bf16, int ldy, const float *bias,
                    const float *r, int ldr, ag_bf16_packed **pk, bool stale) {
    const key k = {.M = M, .N = N, .K = K, .lda = lda, .ldb = ldb, .ldy = ldy, .ldr = r ? ldr : 0, .ta = trans_a,
                   .tb = trans_b, .in_parallel = omp_in_parallel() != 0, .bias = bias != NULL, .resid = r != NULL,
                   .y_bf16 = y_bf16, .packed_b = pk != NULL, .max_threads = omp_get_max_threads(), .alpha = alpha,
                   .beta = beta};
    prim tmp;
    bool owned;
    const prim *p = lookup(&k, &tmp, &owned);
    thread_state *t = p ? this_thread(p->scratch_bytes) : NULL;
    if (p && t && pk) {
        if (!pack(p, b, stale, pk, t)) {
            if (owned) dnnl_primitive_destroy(tmp.p);
            return false;
        }
        b = (*pk)->buf;
    }
    if (!p || !t) {
        tpsc_fail(TPSC_ERR_INTERNAL, "bf16 gemm: oneDNN has no matmul for y [%d,%d] = op(a) [%d,%d] op(b) (trans %d %d, "
                                     "ld %d %d %d%s%s)", M, N, M, K, trans_a, trans_b, lda, ldb, ldy,
                  bias ? ", bias" : "", r ? ", residual" : "");
        return false;
    }
    /* Memory objects: the thread's own for a cached primitive (made once, then pointed at this
     * call's operands), made and destroyed here for one beyond the cache. */
    dnnl_memory_t local[N_ARGS] = {NULL};
    dnnl_memory_t *mem = owned ? local : thread_mems(t, (int)(p - prims));
    const dnnl_memory_desc_t *md[N_ARGS] = {&p->a, &p->b, &p->y, &p->bias, &p->resid, &p->scratch};
    void *ptr[N_ARGS] = {(void *)a, (void *)b, y, (void *)bias, (void *)r, t->scratch};
    /* the binary post-op follows the sum, if there is one */
    const int arg_id[N_ARGS] = {DNNL_ARG_SRC, DNNL_ARG_WEIGHTS, DNNL_ARG_DST, DNNL_ARG_BIAS,
                                DNNL_ARG_ATTR_MULTIPLE_POST_OP(beta != 0.0f ? 1 : 0) | DNNL_ARG_SRC_1,
                                DNNL_ARG_SCRATCHPAD};
    const bool used[N_ARGS] = {true, true, true, bias != NULL, r != NULL, p->scratch_bytes > 0};
    dnnl_exec_arg_t args[N_ARGS];
    int n_args = 0;
    dnnl_status_t s = mem ? dnnl_success : dnnl_out_of_memory;
    for (int j = 0; j < N_ARGS && s == dnnl_success; j++) {
        if (!used[j]) continue;
        if (!mem[j]) s = dnnl_memory_create(&mem[j], md[j], engine, ptr[j]);
        else s = dnnl_memory_set_data_handle(mem[j], ptr[j]);
        args[n_args++] = (dnnl_exec_arg_t){arg_id[j], mem[j]};
    }
    if (s == dnnl_success) s = dnnl_primitive_execute(p->p, t->stream, n_args, args);
    if (s == dnnl_success) s = dnnl_stream_wait(t->stream);
    for (int j = 0; j < N_ARGS; j++)
        if (local[j]) dnnl_memory_destroy(local[j]);
    if (owned) dnnl_primitive_destroy(tmp.p);
    if (s != dnnl_success) {
        tpsc_fail(TPSC_ERR_INTERNAL, "bf16 gemm: oneDNN failed (status %d) on y [%d,%d], K %d", (int)s, M, N, K);
        return false;
    }
    return true;
}

/* y [M,N] = alpha a^T b + beta y with N > M, a [K,M] and b [K,N] (a weight gradient summed over
 * K token rows, dy^T x for a linear whose input is wider than its output): oneDNN 2.6's AMX
 * brgemm runs the product whose output has fewer columns about 1.4x faster (fc2's [384,1536]
 * gradient as the [1536,384] product at 12608 rows, timed alone), so the transpose
 * y^T = b^T a is computed into the thread's buffer and added into y transposed. */
static bool wide_weight_grad(int M, int N, int K, float alpha, const uint16_t *a, int lda, const uint16_t *b, int ldb,
                             float beta, float *y, int ldy) {
    thread_state *t = this_thread(0);
    const size_t bytes = (size_t)M * (size_t)N * sizeof(float), cap = (bytes + 4095) / 4096 * 4096;
    if (t && bytes > t->flip_cap) {
        float *p = aligned_alloc(64, cap);
        if (p) free(t->flip), t->flip = p, t->flip_cap = cap;
    }
    if (!t || bytes > t->flip_cap) {
        tpsc_fail(TPSC_ERR_NOMEM, "bf16 gemm: out of memory for a [%d,%d] transposed product", N, M);
        return false;
    }
    float *yt = t->flip; /* [N,M] */
    if (!product(true, false, N, M, K, alpha, b, ldb, a, lda, 0.0f, yt, false, M, NULL, NULL, 0, NULL, false))
        return false;
    enum { TILE = 32 }; /* a tile of y and of yt stays in L1 while it is transposed */
#pragma omp parallel for schedule(static)
    for (int m0 = 0; m0 < M; m0 += TILE)
        for (int n0 = 0; n0 < N; n0 += TILE)
            for (int m = m0; m < m0 + TILE && m < M; m++) {
                float *row = y + (size_t)m * (size_t)ldy;
                for (int n = n0; n < n0 + TILE && n < N; n++)
                    row[n] = (beta == 0.0f ? 0.0f : beta * row[n]) + yt[(size_t)n * (size_t)M + (size_t)m];
            }
    return true;
}

bool ag_bf16_gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const uint16_t *a, int lda,
                  const uint16_t *b, int ldb, float beta, float *y, int ldy) {
    if (M <= 0 || N <= 0) return true;
    pthread_once(&once, init_once);
    if (engine_status != dnnl_success) return ag_bf16_kernel_available() == TPSC_OK;
    if (trans_a && !trans_b && N > M && !omp_in_parallel())
        return wide_weight_grad(M, N, K, alpha, a, lda, b, ldb, beta, y, ldy);
    return product(trans_a, trans_b, M, N, K, alpha, a, lda, b, ldb, beta, y, false, ldy, NULL, NULL, 0, NULL, false);
}

void ag_bf16_packed_free(ag_bf16_packed *pk) {
    if (!pk) return;
    if (pk->reorder) dnnl_primitive_destroy(pk->reorder);
    free(pk->buf);
    free(pk);
}

/* Brings *pk up to date for p's weight layout: packs b (row-major, [N,K] when p's b is
 * transposed, else [K,N]) when stale, when *pk is new, or when p's kernel reads another layout
 * than the one packed. */
static bool pack(const prim *p, const uint16_t *b, bool stale, ag_bf16_packed **pk, thread_state *t) {
    ag_bf16_packed *w = *pk;
    if (!w) {
        w = calloc(1, sizeof *w);
        if (!w) {
            tpsc_fail(TPSC_ERR_NOMEM, "bf16 gemm: out of memory for a packed weight");
            return false;
        }
        *pk = w;
        stale = true;
    }
    /* b as the [K,N] operand it is: row-major [K,N], or [N,K] read transposed, strides (1, K) */
    dnnl_memory_desc_t plain;
    const dnnl_dims_t dims = {p->k.K, p->k.N};
    const dnnl_dims_t strides = {p->k.tb ? 1 : p->k.N, p->k.tb ? p->k.K : 1};
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&plain, 2, dims, dnnl_bf16, strides);
    const bool relayout = !w->reorder || !dnnl_memory_desc_equal(&w->md, &p->b);
    if (s == dnnl_success && relayout) {
        if (w->reorder) dnnl_primitive_destroy(w->reorder), w->reorder = NULL;
        const size_t bytes = dnnl_memory_desc_get_size(&p->b);
        if (bytes > w->cap) {
            void *buf = aligned_alloc(64, (bytes + 4095) / 4096 * 4096);
            if (!buf) s = dnnl_out_of_memory;
            else free(w->buf), w->buf = buf, w->cap = (bytes + 4095) / 4096 * 4096;
        }
        dnnl_primitive_desc_t rpd = NULL;
        if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&rpd, &plain, engine, &p->b, engine, NULL);
        if (s == dnnl_success) s = dnnl_primitive_create(&w->reorder, rpd);
        if (rpd) dnnl_primitive_desc_destroy(rpd);
        if (s == dnnl_success) w->md = p->b;
        stale = true;
    }
    if (s == dnnl_success && stale) {
        dnnl_memory_t from = NULL, to = NULL;
        s = dnnl_memory_create(&from, &plain, engine, (void *)b);
        if (s == dnnl_success) s = dnnl_memory_create(&to, &w->md, engine, w->buf);
        if (s == dnnl_success) {
            dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
            s = dnnl_primitive_execute(w->reorder, t->stream, 2, args);
        }
        if (s == dnnl_success) s = dnnl_stream_wait(t->stream);
        if (from) dnnl_memory_destroy(from);
        if (to) dnnl_memory_destroy(to);
    }
    if (s != dnnl_success) {
        if (w->reorder) dnnl_primitive_destroy(w->reorder), w->reorder = NULL;
        tpsc_fail(TPSC_ERR_INTERNAL, "bf16 gemm: oneDNN could not pack a [%d,%d] weight (status %d)", p->k.N, p->k.K,
                  (int)s);
        return false;
    }
    return true;
}

bool ag_bf16_gemm_to_bf16(bool trans_a, bool trans_b, int M, int N, int K, const uint16_t *a, int lda,
                          const uint16_t *b, int ldb, uint16_t *y, int ldy) {
    if (M <= 0 || N <= 0) return true;
    pthread_once(&once, init_once);
    if (engine_status != dnnl_success) return ag_bf16_kernel_available() == TPSC_OK;
    return product(trans_a, trans_b, M, N, K, 1.0f, a, lda, b, ldb, 0.0f, y, true, ldy, NULL, NULL, 0, NULL, false);
}

bool ag_bf16_gemm_packed(int M, int N, int K, float alpha, const uint16_t *a, const uint16_t *b, ag_bf16_packed **pk,
                         bool stale, float beta, void *y, bool y_bf16) {
    if (M <= 0 || N <= 0) return true;
    pthread_once(&once, init_once);
    if (engine_status != dnnl_success) return ag_bf16_kernel_available() == TPSC_OK;
    return product(false, false, M, N, K, alpha, a, K, b, N, beta, y, y_bf16, N, NULL, NULL, 0, pk, stale);
}

bool ag_bf16_linear(int M, int N, int K, const uint16_t *a, const uint16_t *b, ag_bf16_packed **pk, bool stale,
                    const float *bias, const float *r, void *y, bool y_bf16) {
    if (M <= 0 || N <= 0) return true;
    pthread_once(&once, init_once);
    if (engine_status != dnnl_success) return ag_bf16_kernel_available() == TPSC_OK;
    return product(false, true, M, N, K, 1.0f, a, K, b, K, 0.0f, y, y_bf16, N, bias, r, N, pk, stale);
}

#endif
