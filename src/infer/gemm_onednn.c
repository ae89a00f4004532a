/* Linears through oneDNN's matmul on weights packed once (see gemm.h for what runs here).
 *
 * Load: each weight [N,K] is reordered once (FP32: as it is; BF16: rounded) into the blocked
 * layout oneDNN's matmul prefers. Run: one matmul primitive per (M, N, K, row strides,
 * epilogue, calling context) computes y = epi(x w^T + b), the residual through a sum post-op
 * and GELU through an eltwise one. M varies with the batch and with pruning; oneDNN 2.6 picks
 * its slower gemm:jit kernel for a runtime M, so primitives are cached per M instead (a FIXED
 * budget gives a handful of Ms; a THRESHOLD budget more). The calling context (inside a
 * parallel region or not, OpenMP's max threads) is part of the key because the kernel oneDNN
 * picks, and the weight layout it wants, depend on the threads it expects: a whole-weight
 * primitive is made with the layout it prefers (forcing the load-time layout on it made oneDNN
 * fall back to its reference kernel for some BF16 shapes; docs/inference.md, "Figures behind the
 * code"), and a weight gets a second packed copy in that layout the first time one is needed
 * (warm-up; at most MAX_COPIES).
 *
 * How a team shares a linear: by rows, each member running the whole packed weight on its
 * own rows (oneDNN 2.6's f32 brgemm kernel writes dense output rows only, so a member cannot
 * write its own columns of a shared output without a copy). A pruned stage changes only M.
 *
 * Threads: a tps_model is shared read-only between threads, so the primitive cache is
 * append-only (readers take no lock, writers a mutex), and everything a call writes lives in
 * per-thread state: a stream, the bf16 input buffer, a scratchpad (user mode: oneDNN
 * allocates nothing during execution) and one set of memory objects per primitive, repointed
 * at each call. Debian's libdnnl uses the OpenMP runtime (libgomp, the same pool as the rest
 * of the library): called from the main thread it uses omp_get_max_threads() threads; inside
 * a parallel region (the forward pass's team) it runs on the calling thread alone. */
#include <omp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/bf16_round.h"
#include "src/infer/gemm.h"

/* The training kernels' rounding (bf16_round.h): both engines round a value alike. */
void ti_bf16_round(const float *x, size_t n, uint16_t *out) { bf16_round_row(x, n, out); }

#ifndef TPSINFER_HAVE_ONEDNN

tps_status ti_onednn_available(ti_dtype dt) {
    return ti_fail(TPS_ERR_UNSUPPORTED,
                   "%s needs oneDNN: this libtpsinfer was built without it (install libdnnl-dev and configure with "
                   "-DTPSC_WITH_ONEDNN=ON or AUTO)",
                   dt == TI_DT_BF16 ? "BF16 inference" : "the oneDNN GEMM back-end");
}
bool ti_onednn_f32_prepacked(void) { return false; }
tps_status ti_onednn_create(ti_dtype dt, ti_onednn **out) {
    *out = NULL;
    return ti_onednn_available(dt);
}
tps_status ti_onednn_pack(ti_onednn *be, ti_weight *w, size_t N, size_t K) {
    (void)be, (void)w, (void)N, (void)K;
    return ti_onednn_available(TI_DT_F32);
}
void ti_onednn_panels(ti_weight *w) { w->panels = NULL, w->panel_k = 0; }
size_t ti_onednn_packed_count(const ti_onednn *be) { return (void)be, 0; }
void ti_onednn_free(ti_onednn *be) { (void)be; }
bool ti_onednn_linear(const float *x, size_t M, size_t K, size_t ldx, const ti_weight *w, const float *b, size_t N,
                      float *y, size_t ldy, lin_epilogue epi) {
    (void)x, (void)M, (void)K, (void)ldx, (void)w, (void)b, (void)N, (void)y, (void)ldy, (void)epi;
    return false;
}

#else

#include <oneapi/dnnl/dnnl.h>

#define MAX_ENTRIES 1024  /* primitives per model; a shape beyond them runs on OpenBLAS */
#define MAX_SLOTS 1024    /* memory-object sets per thread; beyond, the thread's sets are rebuilt */
#define PACK_PROBE_M 256  /* the M whose primitive chooses a weight's layout and kernel */
#define CONVERT_PAR (1 << 18) /* elements below which the input rounding stays on one thread */

#define MAX_COPIES 4      /* packed layouts per weight; a primitive wanting a fifth runs on OpenBLAS */

typedef struct packed { /* one weight */
    size_t N, K;
    const float *f; /* the FP32 weight [N,K], source of every copy */
    ti_onednn *be;
    dnnl_memory_desc_t md[MAX_COPIES]; /* oneDNN's blocked layouts of w^T [K,N] */
    void *data[MAX_COPIES];
    _Atomic int n_copies; /* published like the entries (entry_for) */
} packed;

typedef struct key {
    size_t M, N, K, ldx, ldy;
    lin_epilogue epi;
    bool in_parallel;
    int max_threads;
} key;

typedef struct entry { /* one matmul primitive, or NULL prim: this shape runs on OpenBLAS */
    key k;
    uint64_t id; /* process-unique: threads' memory objects name their primitive by it */
    dnnl_primitive_t prim;
    dnnl_memory_desc_t src, wei, bias, dst, pad;
    size_t pad_bytes;
} entry;

struct ti_onednn {
    ti_dtype dt;
    pthread_mutex_t lock; /* taken to add an entry; lookups read without it */
    entry *entries[MAX_ENTRIES];
    _Atomic size_t n_entries;
    packed **weights;
    size_t n_weights, cap_weights;
};

typedef struct slot { /* one thread's memory objects for one entry */
    uint64_t id;
    dnnl_memory_t src, wei, bias, dst, pad;
} slot;

typedef struct thread_state {
    dnnl_stream_t stream;
    uint16_t *a; /* [M,K] bf16 input rows */
    size_t a_bytes;
    void *pad;
    size_t pad_bytes;
    slot *slots;
    size_t n_slots, hint; /* hint: where the next lookup starts (calls repeat in order) */
} thread_state;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static dnnl_engine_t engine; /* one CPU engine for the process, never destroyed */
static dnnl_status_t engine_status = dnnl_runtime_error;
static pthread_key_t state_key;
static _Atomic uint64_t next_id = 1;

static void free_slots(thread_state *t) {
    for (size_t i = 0; i < t->n_slots; i++) {
        slot *s = &t->slots[i];
        dnnl_memory_destroy(s->src), dnnl_memory_destroy(s->wei), dnnl_memory_destroy(s->bias);
        dnnl_memory_destroy(s->dst), dnnl_memory_destroy(s->pad);
    }
    t->n_slots = t->hint = 0;
}

static void free_state(void *p) {
    thread_state *t = p;
    if (!t) return;
    free_slots(t);
    free(t->slots);
    free(t->a);
    free(t->pad);
    if (t->stream) dnnl_stream_destroy(t->stream);
    free(t);
}

static void init_once(void) {
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success && pthread_key_create(&state_key, free_state) != 0)
        engine_status = dnnl_out_of_memory;
}

static thread_state *this_thread(void) {
    thread_state *t = pthread_getspecific(state_key);
    if (t) return t;
    t = calloc(1, sizeof *t);
    if (!t) return NULL;
    t->slots = calloc(MAX_SLOTS, sizeof *t->slots);
    if (!t->slots || dnnl_stream_create(&t->stream, engine, dnnl_stream_default_flags) != dnnl_success ||
        pthread_setspecific(state_key, t) != 0) {
        free_state(t);
        return NULL;
    }
    return t;
}

/* A 64-byte aligned buffer of at least `bytes` (old contents are not kept). */
static bool grow(void **buf, size_t *cap, size_t bytes) {
    if (bytes <= *cap) return true;
    void *p;
    if (posix_memalign(&p, 64, bytes) != 0) return false;
    free(*buf);
    *buf = p;
    *cap = bytes;
    return true;
}

tps_status ti_onednn_available(ti_dtype dt) {
    pthread_once(&once, init_once);
    if (engine_status != dnnl_success)
        return ti_fail(TPS_ERR_UNSUPPORTED, "oneDNN's CPU engine cannot be created (status %d)", (int)engine_status);
    if (dt == TI_DT_F32) return TPS_OK;
    const dnnl_cpu_isa_t isa = dnnl_get_effective_cpu_isa();
    if (((unsigned)isa & (unsigned)dnnl_cpu_isa_avx512_core_bf16) != (unsigned)dnnl_cpu_isa_avx512_core_bf16)
        return ti_fail(TPS_ERR_UNSUPPORTED,
                       "BF16 inference needs a CPU with AVX512-BF16 (avx512_bf16 in /proc/cpuinfo); oneDNN reports "
                       "ISA 0x%x%s",
                       (unsigned)isa,
                       getenv("ONEDNN_MAX_CPU_ISA") || getenv("DNNL_MAX_CPU_ISA") ? " (limited by ONEDNN_MAX_CPU_ISA)"
                                                                                   : "");
    return TPS_OK;
}

tps_status ti_onednn_create(ti_dtype dt, ti_onednn **out) {
    *out = NULL;
    tps_status st = ti_onednn_available(dt);
    if (st != TPS_OK) return st;
    ti_onednn *be = calloc(1, sizeof *be);
    if (!be || pthread_mutex_init(&be->lock, NULL) != 0) {
        free(be);
        return ti_fail(TPS_ERR_NOMEM, "oneDNN back-end: no memory for its state");
    }
    be->dt = dt;
    *out = be;
    return TPS_OK;
}

/* The matmul of one shape: src [M,K] with row stride ldx (bf16: dense), weights [K,N] in
 * the layout oneDNN prefers ("any"), bias f32 [1,N], dst f32 [M,N] with row stride ldy; the
 * epilogue as post-ops. */
static dnnl_status_t make_pd(ti_dtype dt, const key *k, dnnl_primitive_desc_t *pd) {
    const dnnl_data_type_t in = dt == TI_DT_BF16 ? dnnl_bf16 : dnnl_f32;
    dnnl_memory_desc_t src, wei, bias, dst;
    dnnl_dims_t sd = {(dnnl_dim_t)k->M, (dnnl_dim_t)k->K}, ss = {(dnnl_dim_t)k->ldx, 1};
    dnnl_dims_t wd = {(dnnl_dim_t)k->K, (dnnl_dim_t)k->N}, bd = {1, (dnnl_dim_t)k->N};
    dnnl_dims_t dd = {(dnnl_dim_t)k->M, (dnnl_dim_t)k->N}, ds = {(dnnl_dim_t)k->ldy, 1};
    dnnl_status_t s = dnnl_memory_desc_init_by_strides(&src, 2, sd, in, ss);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&wei, 2, wd, in, dnnl_format_tag_any);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_tag(&bias, 2, bd, dnnl_f32, dnnl_ab);
    if (s == dnnl_success) s = dnnl_memory_desc_init_by_strides(&dst, 2, dd, dnnl_f32, ds);
    dnnl_matmul_desc_t desc;
    if (s == dnnl_success) s = dnnl_matmul_desc_init(&desc, &src, &wei, &bias, &dst);
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t ops = NULL;
    if (s == dnnl_success) s = dnnl_primitive_attr_create(&attr);
    if (s == dnnl_success) s = dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user);
    if (s == dnnl_success && k->epi != LIN_PLAIN) {
        s = dnnl_post_ops_create(&ops);
        if (s == dnnl_success)
            s = k->epi == LIN_RESIDUAL ? dnnl_post_ops_append_sum(ops, 1.0f)
                                       : dnnl_post_ops_append_eltwise(ops, 1.0f, dnnl_eltwise_gelu_erf, 0.0f, 0.0f);
        if (s == dnnl_success) s = dnnl_primitive_attr_set_post_ops(attr, ops);
    }
    if (s == dnnl_success) s = dnnl_primitive_desc_create(pd, &desc, attr, engine, NULL);
    if (ops) dnnl_post_ops_destroy(ops);
    if (attr) dnnl_primitive_attr_destroy(attr);
    return s;
}

static bool is_reference(dnnl_primitive_desc_t pd) {
    const char *impl = NULL;
    return dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) != dnnl_success || !impl ||
           strncmp(impl, "ref", 3) == 0;
}

/* Packs p->f into a new copy in layout md (the caller holds be->lock or owns p alone). */
static dnnl_status_t add_copy(packed *p, const dnnl_memory_desc_t *md, dnnl_stream_t stream) {
    const int n = atomic_load_explicit(&p->n_copies, memory_order_relaxed);
    if (n == MAX_COPIES) return dnnl_out_of_memory;
    const size_t bytes = dnnl_memory_desc_get_size(md);
    void *data;
    if (posix_memalign(&data, 64, bytes ? bytes : 64) != 0) return dnnl_out_of_memory;
    /* p->f is [N,K] row-major: w^T [K,N] with strides (1, K), format tag "ba" */
    dnnl_memory_desc_t user;
    dnnl_dims_t wd = {(dnnl_dim_t)p->K, (dnnl_dim_t)p->N};
    dnnl_memory_t from = NULL, to = NULL;
    dnnl_primitive_desc_t rpd = NULL;
    dnnl_primitive_t reorder = NULL;
    dnnl_status_t s = dnnl_memory_desc_init_by_tag(&user, 2, wd, dnnl_f32, dnnl_ba);
    if (s == dnnl_success) s = dnnl_memory_create(&from, &user, engine, (void *)p->f);
    if (s == dnnl_success) s = dnnl_memory_create(&to, md, engine, data);
    if (s == dnnl_success) s = dnnl_reorder_primitive_desc_create(&rpd, &user, engine, md, engine, NULL);
    if (s == dnnl_success) s = dnnl_primitive_create(&reorder, rpd);
    dnnl_exec_arg_t args[2] = {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}};
    if (s == dnnl_success) s = dnnl_primitive_execute(reorder, stream, 2, args);
    if (s == dnnl_success) s = dnnl_stream_wait(stream);
    if (reorder) dnnl_primitive_destroy(reorder);
    if (rpd) dnnl_primitive_desc_destroy(rpd);
    if (from) dnnl_memory_destroy(from);
    if (to) dnnl_memory_destroy(to);
    if (s != dnnl_success) {
        free(data);
        return s;
    }
    p->md[n] = *md;
    p->data[n] = data;
    atomic_store_explicit(&p->n_copies, n + 1, memory_order_release);
    return dnnl_success;
}

tps_status ti_onednn_pack(ti_onednn *be, ti_weight *w, size_t N, size_t K) {
    w->packed = NULL;
    thread_state *t = this_thread();
    if (!t) return ti_fail(TPS_ERR_NOMEM, "oneDNN back-end: no memory for a thread's state");
    if (be->n_weights == be->cap_weights) {
        size_t cap = be->cap_weights ? 2 * be->cap_weights : 64;
        packed **v = realloc(be->weights, cap * sizeof *v);
        if (!v) return ti_fail(TPS_ERR_NOMEM, "oneDNN back-end: no memory for the weight table");
        be->weights = v, be->cap_weights = cap;
    }
    dnnl_primitive_desc_t pd = NULL;
    const key probe = {.M = PACK_PROBE_M, .N = N, .K = K, .ldx = K, .ldy = N, .epi = LIN_PLAIN};
    if (make_pd(be->dt, &probe, &pd) != dnnl_success) return TPS_OK; /* no matmul here: OpenBLAS */
    if (is_reference(pd)) { /* the reference kernel is far slower than sgemm */
        dnnl_primitive_desc_destroy(pd);
        return TPS_OK;
    }
    packed *p = calloc(1, sizeof *p);
    if (!p) {
        dnnl_primitive_desc_destroy(pd);
        return ti_fail(TPS_ERR_NOMEM, "oneDNN back-end: no memory for a packed weight");
    }
    p->N = N, p->K = K, p->f = w->f, p->be = be;
    const dnnl_memory_desc_t md = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_desc_destroy(pd);
    dnnl_status_t s = add_copy(p, &md, t->stream);
    if (s != dnnl_success) {
        free(p);
        return s == dnnl_out_of_memory
                   ? ti_fail(TPS_ERR_NOMEM, "oneDNN back-end: no memory for a packed [%zu,%zu] weight", N, K)
                   : ti_fail(TPS_ERR_INTERNAL, "oneDNN back-end: reordering a [%zu,%zu] weight failed (status %d)", N,
                             K, (int)s);
    }
    be->weights[be->n_weights++] = p;
    w->packed = p;
    return TPS_OK;
}

/* BA16a64b for w^T [K,N]: N in blocks of 64 outermost, then K in blocks of 16, each block
 * [16,64] row-major; so a 64-column block is [Kp,64] row-major, Kp = K padded to 16.
 * Only whole panels: a last partial one computes 64 lanes for fewer columns, and on the
 * Fashion-MNIST ViT (width 96: proj and fc2 have 1.5 panels, qkv 4.5) panels everywhere ran
 * that model's evaluation 3-5% slower than oneDNN, whole panels only (fc1) level or faster
 * (docs/inference.md, "The panel back-end"). DeiT's widths are all whole panels. */
void ti_onednn_panels(ti_weight *w) {
    w->panels = NULL, w->panel_k = 0;
    const packed *p = w->packed;
    if (!p || p->be->dt != TI_DT_F32 || p->N % PANEL_COLS != 0 ||
        atomic_load_explicit(&p->n_copies, memory_order_acquire) < 1)
        return;
    const dnnl_memory_desc_t *md = &p->md[0];
    const dnnl_blocking_desc_t *bl = &md->format_desc.blocking;
    const dnnl_dim_t kp = md->padded_dims[0];
    if (md->ndims != 2 || md->data_type != dnnl_f32 || md->format_kind != dnnl_blocked || md->offset0 != 0 ||
        md->dims[0] != (dnnl_dim_t)p->K || md->dims[1] != (dnnl_dim_t)p->N || kp % 16 != 0 ||
        md->padded_dims[1] % PANEL_COLS != 0 || bl->inner_nblks != 2 || bl->inner_blks[0] != 16 ||
        bl->inner_idxs[0] != 0 || bl->inner_blks[1] != PANEL_COLS || bl->inner_idxs[1] != 1 ||
        bl->strides[0] != 16 * PANEL_COLS || bl->strides[1] != kp * PANEL_COLS)
        return;
    w->panels = p->data[0];
    w->panel_k = (size_t)kp;
}

size_t ti_onednn_packed_count(const ti_onednn *be) { return be ? be->n_weights : 0; }

static entry *find(ti_onednn *be, size_t from, size_t to, const key *k) {
    for (size_t i = from; i < to; i++) {
        const key *e = &be->entries[i]->k;
        if (e->M == k->M && e->N == k->N && e->K == k->K && e->ldx == k->ldx && e->ldy == k->ldy &&
            e->epi == k->epi && e->in_parallel == k->in_parallel &&
            e->max_threads == k->max_threads)
            return be->entries[i];
    }
    return NULL;
}

/* The primitive of this shape and context, made on first use (under the lock; lookups take
 * none: an entry is complete before the release store that publishes it). NULL: cannot be
 * made now; an entry without a primitive: oneDNN has only its reference kernel here. */
static entry *entry_for(ti_onednn *be, const key *k) {
    size_t n = atomic_load_explicit(&be->n_entries, memory_order_acquire);
    entry *e = find(be, 0, n, k);
    if (e) return e;
    pthread_mutex_lock(&be->lock);
    size_t n2 = atomic_load_explicit(&be->n_entries, memory_order_relaxed);
    e = find(be, n, n2, k);
    if (!e && n2 < MAX_ENTRIES && (e = calloc(1, sizeof *e))) {
        dnnl_primitive_desc_t pd = NULL;
        bool ok = make_pd(be->dt, k, &pd) == dnnl_success;
        if (ok && !is_reference(pd)) ok = dnnl_primitive_create(&e->prim, pd) == dnnl_success;
        if (ok) {
            e->k = *k;
            e->id = atomic_fetch_add(&next_id, 1);
            e->src = *dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
            e->wei = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
            e->bias = *dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 1);
            e->dst = *dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
            e->pad = *dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
            e->pad_bytes = dnnl_memory_desc_get_size(&e->pad);
            be->entries[n2] = e;
            atomic_store_explicit(&be->n_entries, n2 + 1, memory_order_release);
        } else {
            if (e->prim) dnnl_primitive_destroy(e->prim);
            free(e);
            e = NULL;
        }
        if (pd) dnnl_primitive_desc_destroy(pd);
    }
    pthread_mutex_unlock(&be->lock);
    return e;
}

/* Weight p in entry e's layout: a copy made at load, or one made now (warm-up, under the
 * lock). NULL: no room for another copy, or no memory. */
static void *copy_for(packed *p, const entry *e, thread_state *t) {
    int n = atomic_load_explicit(&p->n_copies, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (dnnl_memory_desc_equal(&p->md[i], &e->wei)) return p->data[i];
    pthread_mutex_lock(&p->be->lock);
    void *data = NULL;
    const int n2 = atomic_load_explicit(&p->n_copies, memory_order_relaxed);
    for (int i = n; i < n2 && !data; i++)
        if (dnnl_memory_desc_equal(&p->md[i], &e->wei)) data = p->data[i];
    if (!data && add_copy(p, &e->wei, t->stream) == dnnl_success) data = p->data[n2];
    pthread_mutex_unlock(&p->be->lock);
    return data;
}

/* This thread's memory objects for entry e (made on first use). */
static slot *slot_for(thread_state *t, const entry *e) {
    for (size_t k = 0; k < t->n_slots; k++) {
        size_t i = (t->hint + k) % t->n_slots;
        if (t->slots[i].id == e->id) {
            t->hint = i + 1 < t->n_slots ? i + 1 : 0;
            return &t->slots[i];
        }
    }
    if (t->n_slots == MAX_SLOTS) free_slots(t); /* entries of closed models linger otherwise */
    slot *s = &t->slots[t->n_slots];
    memset(s, 0, sizeof *s);
    /* DNNL_MEMORY_NONE: the handles are set at every call */
    if (dnnl_memory_create(&s->src, &e->src, engine, DNNL_MEMORY_NONE) != dnnl_success ||
        dnnl_memory_create(&s->wei, &e->wei, engine, DNNL_MEMORY_NONE) != dnnl_success ||
        dnnl_memory_create(&s->bias, &e->bias, engine, DNNL_MEMORY_NONE) != dnnl_success ||
        dnnl_memory_create(&s->dst, &e->dst, engine, DNNL_MEMORY_NONE) != dnnl_success ||
        dnnl_memory_create(&s->pad, &e->pad, engine, DNNL_MEMORY_NONE) != dnnl_success) {
        dnnl_memory_destroy(s->src), dnnl_memory_destroy(s->wei), dnnl_memory_destroy(s->bias);
        dnnl_memory_destroy(s->dst), dnnl_memory_destroy(s->pad);
        return NULL;
    }
    s->id = e->id;
    t->hint = 0;
    return &t->slots[t->n_slots++];
}

bool ti_onednn_linear(const float *x, size_t M, size_t K, size_t ldx, const ti_weight *w, const float *b, size_t N,
                      float *y, size_t ldy, lin_epilogue epi) {
    packed *p = w->packed;
    if (!p || p->K != K || p->N != N || M == 0) return false;
    ti_onednn *be = p->be;
    const bool bf16 = be->dt == TI_DT_BF16;
    /* oneDNN 2.6's f32 brgemm kernel writes dense rows only; for a strided output it takes
     * gemm:jit, which packs the weight per call (the score predictors' narrow layers) */
    if (!bf16 && ldy != N) return false;
    thread_state *t = this_thread();
    if (!t) return false;
    const key k = {.M = M, .N = N, .K = K, .ldx = bf16 ? K : ldx, .ldy = ldy, .epi = epi,
                   .in_parallel = omp_in_parallel() != 0, .max_threads = omp_get_max_threads()};
    entry *e = entry_for(be, &k);
    if (!e || !e->prim) return false;
    void *wdata = copy_for(p, e, t);
    slot *s = wdata ? slot_for(t, e) : NULL;
    if (!s || !grow(&t->pad, &t->pad_bytes, e->pad_bytes)) return false;
    const void *src = x;
    if (bf16) {
        if (!grow((void **)&t->a, &t->a_bytes, M * K * sizeof(uint16_t))) return false;
        uint16_t *a = t->a;
        #pragma omp parallel for if (M * K > CONVERT_PAR)
        for (size_t r = 0; r < M; r++) ti_bf16_round(x + r * ldx, K, a + r * K);
        src = a;
    }
    /* oneDNN takes non-const handles; it only reads src, weights and bias */
    if (dnnl_memory_set_data_handle(s->src, (void *)src) != dnnl_success ||
        dnnl_memory_set_data_handle(s->wei, wdata) != dnnl_success ||
        dnnl_memory_set_data_handle(s->bias, (void *)b) != dnnl_success ||
        dnnl_memory_set_data_handle(s->dst, y) != dnnl_success ||
        dnnl_memory_set_data_handle(s->pad, t->pad) != dnnl_success)
        return false;
    dnnl_exec_arg_t args[5] = {{DNNL_ARG_SRC, s->src}, {DNNL_ARG_WEIGHTS, s->wei}, {DNNL_ARG_BIAS, s->bias},
                               {DNNL_ARG_DST, s->dst}, {DNNL_ARG_SCRATCHPAD, s->pad}};
    /* on the CPU engine execution is synchronous and, once the primitive exists, does not fail
     * for valid memory; a failure would leave y partly written, so it is not retried */
    dnnl_primitive_execute(e->prim, t->stream, 5, args);
    return true;
}

bool ti_onednn_f32_prepacked(void) {
    if (ti_onednn_available(TI_DT_F32) != TPS_OK) return false;
    /* a DeiT-S qkv product: the kernel oneDNN picks for it */
    const key k = {.M = 197, .N = 1152, .K = 384, .ldx = 384, .ldy = 1152, .epi = LIN_PLAIN};
    dnnl_primitive_desc_t pd = NULL;
    if (make_pd(TI_DT_F32, &k, &pd) != dnnl_success) return false;
    const char *impl = NULL;
    const bool brg = dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl) == dnnl_success && impl &&
                     strncmp(impl, "brg", 3) == 0;
    dnnl_primitive_desc_destroy(pd);
    return brg;
}

void ti_onednn_free(ti_onednn *be) {
    if (!be) return;
    size_t n = atomic_load(&be->n_entries);
    for (size_t i = 0; i < n; i++) {
        if (be->entries[i]->prim) dnnl_primitive_destroy(be->entries[i]->prim);
        free(be->entries[i]);
    }
    for (size_t i = 0; i < be->n_weights; i++) {
        for (int c = 0; c < be->weights[i]->n_copies; c++) free(be->weights[i]->data[c]);
        free(be->weights[i]);
    }
    free(be->weights);
    pthread_mutex_destroy(&be->lock);
    free(be);
}

#endif
