/* Bucketed gradient averaging over the parameter store's one gradient block (see dist.h). */
#include "src/dist/dist.h"

#include <string.h>
#include <time.h>

#ifdef TPSC_HAVE_MPI
#include <mpi.h>
#endif

#include "src/util/alloc.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

tpsc_status dist_grad_sync_init(dist_grad_sync *s, ag_params *p, size_t bucket_bytes, bool overlap) {
    memset(s, 0, sizeof *s);
    s->params = p;
    s->overlap = overlap;
    s->next = -1;
    if (!dist_active()) return TPSC_OK;
    size_t target = bucket_bytes / sizeof(float);
    if (target < 1) target = 1;
    /* Count first, then fill: a bucket closes at the first parameter boundary past the target. */
    int n = 0;
    size_t acc = 0;
    for (int i = 0; i < p->count; i++) {
        acc += p->items[i].numel;
        if (acc >= target || i == p->count - 1) n++, acc = 0;
    }
    s->n_buckets = n;
    s->start = tpsc_calloc((size_t)n, sizeof *s->start, "gradient buckets");
    s->count = tpsc_calloc((size_t)n, sizeof *s->count, "gradient buckets");
    s->first_use = tpsc_calloc((size_t)n, sizeof *s->first_use, "gradient buckets");
    s->param_bucket = tpsc_calloc((size_t)(p->count > 0 ? p->count : 1), sizeof *s->param_bucket, "gradient buckets");
#ifdef TPSC_HAVE_MPI
    s->requests = tpsc_calloc((size_t)n, sizeof(MPI_Request), "gradient buckets");
#else
    s->requests = tpsc_calloc((size_t)n, 1, "gradient buckets");
#endif
    if (!s->start || !s->count || !s->first_use || !s->param_bucket || !s->requests) {
        dist_grad_sync_free(s);
        return TPSC_ERR_NOMEM;
    }
    int b = 0;
    acc = 0;
    for (int i = 0; i < p->count; i++) {
        if (acc == 0) s->start[b] = p->items[i].offset;
        acc += p->items[i].numel;
        s->param_bucket[i] = b;
        if (acc >= target || i == p->count - 1) {
            s->count[b] = p->items[i].offset + p->items[i].numel - s->start[b];
            b++, acc = 0;
        }
    }
    return TPSC_OK;
}

void dist_grad_sync_free(dist_grad_sync *s) {
    tpsc_free(s->start);
    tpsc_free(s->count);
    tpsc_free(s->first_use);
    tpsc_free(s->param_bucket);
    tpsc_free(s->requests);
    memset(s, 0, sizeof *s);
}

#ifdef TPSC_HAVE_MPI
static void start_bucket(dist_grad_sync *s, int b) {
    MPI_Request *req = (MPI_Request *)s->requests + b;
    if (s->t_first_start == 0) s->t_first_start = now_s();
    MPI_Iallreduce(MPI_IN_PLACE, s->params->grad + s->start[b], (int)s->count[b], MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                   req);
}

/* Parameter index of a tape input, or -1: the store's tensors live inside its items array. */
static int param_of(const ag_params *p, const ag_tensor *t) {
    const char *base = (const char *)p->items, *at = (const char *)t;
    if (at < base || at >= base + (size_t)p->count * sizeof *p->items) return -1;
    size_t i = (size_t)(at - base) / sizeof *p->items;
    return &p->items[i].t == t ? (int)i : -1;
}

/* After node `node` ran backward: every node at or above it is done, so a bucket whose
 * parameters no lower node reads has its final gradient. Start buckets in the fixed order while
 * they are ready, and let MPI progress the ones in flight. */
static void after_node(void *arg, int node) {
    dist_grad_sync *s = arg;
    while (s->next >= 0 && s->first_use[s->next] >= node) {
        start_bucket(s, s->next);
        s->next--;
        s->started_early++;
    }
    if (s->next < s->n_buckets - 1) {
        int done = 0;
        MPI_Testall(s->n_buckets - 1 - s->next, (MPI_Request *)s->requests + s->next + 1, &done, MPI_STATUSES_IGNORE);
    }
}
#endif

void dist_grad_sync_arm(dist_grad_sync *s, ag_ctx *ctx) {
    s->next = s->n_buckets - 1;
    s->started_early = 0;
    s->t_first_start = 0;
    s->armed = dist_active();
    if (!s->armed) return;
#ifdef TPSC_HAVE_MPI
    for (int b = 0; b < s->n_buckets; b++) {
        s->first_use[b] = -1;
        ((MPI_Request *)s->requests)[b] = MPI_REQUEST_NULL;
    }
    if (!s->overlap) return;
    /* Lowest node reading each bucket; a bucket nothing on the tape reads waits for the end. */
    for (int i = ctx->n_nodes - 1; i >= 0; i--) {
        const ag_node *nd = &ctx->tape[i];
        for (int k = 0; k < nd->n_in; k++) {
            int pi = nd->in[k] ? param_of(s->params, nd->in[k]) : -1;
            if (pi >= 0) s->first_use[s->param_bucket[pi]] = i;
        }
    }
    for (int b = 0; b < s->n_buckets; b++)
        if (s->first_use[b] < 0) s->first_use[b] = 0;
    ctx->after_node = after_node;
    ctx->after_node_arg = s;
#else
    (void)ctx;
#endif
}

tpsc_status dist_grad_sync_finish(dist_grad_sync *s, ag_ctx *ctx) {
    s->exposed_s = s->inflight_s = 0;
    if (!s->armed) return TPSC_OK;
    s->armed = false;
    ctx->after_node = NULL;
    ctx->after_node_arg = NULL;
#ifdef TPSC_HAVE_MPI
    double t0 = now_s();
    for (; s->next >= 0; s->next--) start_bucket(s, s->next);
    if (MPI_Waitall(s->n_buckets, (MPI_Request *)s->requests, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
        return tpsc_fail(TPSC_ERR_INTERNAL, "MPI_Iallreduce of the gradients failed");
    double t1 = now_s();
    s->exposed_s = t1 - t0;
    s->inflight_s = t1 - s->t_first_start;
    const float inv = 1.0f / (float)dist_size();
    float *g = s->params->grad;
    for (size_t i = 0; i < s->params->total; i++) g[i] *= inv;
#else
    (void)ctx;
#endif
    return TPSC_OK;
}
