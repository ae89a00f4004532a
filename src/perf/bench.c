#include "src/perf/bench.h"

#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "src/dist/dist.h"
#include "src/infer/tps_infer.h"
#include "src/export/export.h"
#include "src/optim/adamw.h"
#include "src/optim/param_groups.h"
#include "src/train/evaluate.h"
#include "src/train/progress.h"
#include "src/util/alloc.h"

long tpsc_peak_rss_mb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss / 1024;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double tpsc_median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void summarise(double *t, int n, size_t batch, tpsc_bench_result *res) {
    qsort(t, (size_t)n, sizeof *t, cmp_double);
    res->median_s = t[n / 2];
    res->p90_s = t[(int)((n - 1) * 0.9 + 0.5)];
    res->images_per_s = (double)batch / res->median_s;
    res->peak_rss_mb = tpsc_peak_rss_mb();
}

typedef struct bench_setup {
    vit_model m;
    ag_ctx *ctx;
    float *images, *targets;
    size_t ishape[4], tshape[2];
} bench_setup;

static tpsc_status setup(bench_setup *b, const vit_config *vc, const tok_config *tc, size_t batch) {
    memset(b, 0, sizeof *b);
    TPSC_TRY(vit_model_create(&b->m, vc, tc));
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 1);
    vit_model_init(&b->m, &rng);
    b->ctx = ag_ctx_create(0);
    size_t n = batch * vc->in_chans * vc->img_size * vc->img_size;
    b->images = tpsc_malloc(n * sizeof(float), "bench images");
    b->targets = tpsc_calloc(batch * vc->num_classes, sizeof(float), "bench targets");
    if (!b->ctx || !b->images || !b->targets) return TPSC_ERR_NOMEM;
    for (size_t i = 0; i < n; i++) b->images[i] = tpsc_rng_normal(&rng);
    for (size_t i = 0; i < batch; i++) b->targets[i * vc->num_classes + i % vc->num_classes] = 1.0f;
    size_t is[4] = {batch, vc->in_chans, vc->img_size, vc->img_size}, ts[2] = {batch, vc->num_classes};
    memcpy(b->ishape, is, sizeof is);
    memcpy(b->tshape, ts, sizeof ts);
    return TPSC_OK;
}

static void teardown(bench_setup *b) {
    ag_ctx_free(b->ctx);
    vit_model_free(&b->m);
    tpsc_free(b->images);
    tpsc_free(b->targets);
}

tpsc_status tpsc_bench_train(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                             ag_precision precision, bool overlap, double bucket_mb, tpsc_bench_result *res) {
    memset(res, 0, sizeof *res);
    const size_t ranks = (size_t)dist_size();
    if (batch % ranks != 0)
        return tpsc_fail(TPSC_ERR_ARG, "bench: batch %zu is not divisible by the %zu MPI ranks", batch, ranks);
    bench_setup b;
    tpsc_status st = setup(&b, vc, tc, batch / ranks);
    if (st == TPSC_OK) st = ag_set_precision(b.ctx, precision);
    tpsc_adamw opt = {0};
    dist_grad_sync sync = {0};
    double *times = tpsc_calloc((size_t)repeats * 3, sizeof *times, "bench times");
    if (st == TPSC_OK && !times) st = TPSC_ERR_NOMEM;
    if (st == TPSC_OK) {
        tpsc_param_groups_assign(&b.m.params);
        tpsc_adamw_config oc = tpsc_adamw_defaults();
        st = tpsc_adamw_init(&opt, &b.m.params, &oc);
    }
    if (st == TPSC_OK) st = dist_grad_sync_init(&sync, &b.m.params, (size_t)(bucket_mb * 1048576.0), overlap);
    tpsc_rng noise;
    tpsc_rng_seed(&noise, 2);
    for (int i = 0; st == TPSC_OK && i < warmup + repeats; i++) {
        double t0 = tpsc_now();
        ag_ctx_reset(b.ctx);
        ag_tensor *x = ag_wrap(b.ctx, b.images, NULL, 4, b.ishape, false);
        ag_tensor *t = ag_wrap(b.ctx, b.targets, NULL, 2, b.tshape, false);
        vit_forward_opts fo = {.mode = VIT_TRAIN, .rng = &noise};
        vit_output out;
        ag_tensor *loss = ag_cross_entropy_soft(b.ctx, vit_forward(b.ctx, &b.m, x, &fo, &out), t);
        if (!loss) {
            st = ag_ctx_status(b.ctx);
            break;
        }
        ag_params_zero_grad(&b.m.params);
        dist_grad_sync_arm(&sync, b.ctx);
        st = ag_backward(b.ctx, loss);
        if (st == TPSC_OK) st = dist_grad_sync_finish(&sync, b.ctx);
        if (st == TPSC_OK) st = tpsc_adamw_step(&opt, &b.m.params, 1e-5f);
        if (i >= warmup) {
            times[i - warmup] = tpsc_now() - t0;
            times[repeats + i - warmup] = sync.exposed_s;
            times[2 * repeats + i - warmup] = sync.inflight_s;
        }
    }
    if (st == TPSC_OK) {
        tpsc_bench_result ar;
        summarise(times + repeats, repeats, batch, &ar);
        res->allreduce_exposed_s = ar.median_s;
        summarise(times + 2 * repeats, repeats, batch, &ar);
        res->allreduce_inflight_s = ar.median_s;
        summarise(times, repeats, batch, res);
        /* The training forward keeps every token for predictor methods: count the dense cost. */
        tok_config dense = {.method = TOK_NONE};
        vit_model tmp = b.m;
        if (tok_method_has_predictor(tc->method)) tmp.tps = dense;
        res->gmacs_per_image = tpsc_model_gmacs(&tmp);
        res->gflops = 2.0 * 3.0 * res->gmacs_per_image * res->images_per_s;
    }
    tpsc_adamw_free(&opt);
    dist_grad_sync_free(&sync);
    tpsc_free(times);
    teardown(&b);
    return st;
}

/* One training step (forward, soft cross-entropy, backward, AdamW) of b's model. */
static tpsc_status train_step(bench_setup *b, tpsc_adamw *opt, tpsc_rng *noise) {
    ag_ctx_reset(b->ctx);
    ag_tensor *x = ag_wrap(b->ctx, b->images, NULL, 4, b->ishape, false);
    ag_tensor *t = ag_wrap(b->ctx, b->targets, NULL, 2, b->tshape, false);
    vit_forward_opts fo = {.mode = VIT_TRAIN, .rng = noise};
    vit_output out;
    ag_tensor *loss = ag_cross_entropy_soft(b->ctx, vit_forward(b->ctx, &b->m, x, &fo, &out), t);
    if (!loss) return ag_ctx_status(b->ctx);
    ag_params_zero_grad(&b->m.params);
    TPSC_TRY(ag_backward(b->ctx, loss));
    return tpsc_adamw_step(opt, &b->m.params, 1e-5f);
}

/* One training step of the same model and weights: k = 0 masked, k = 1 with real removal. */
typedef struct removal_ctx {
    bench_setup *b;
    tpsc_adamw *opt;
    tpsc_rng *noise;
} removal_ctx;

static tpsc_status removal_step(void *user, int k) {
    removal_ctx *r = user;
    r->b->m.tps.train_removal = k == 1;
    return train_step(r->b, r->opt, r->noise);
}

tpsc_status tpsc_bench_train_removal(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                                     ag_precision precision, tpsc_bench_pair *res) {
    memset(res, 0, sizeof *res);
    if (!tok_method_has_predictor(tc->method))
        return tpsc_fail(TPSC_ERR_ARG, "bench train --removal: method %s has no masked training path (predictor methods "
                         "only; evit and etps always remove)", tok_method_name(tc->method));
    tok_config masked = *tc;
    masked.train_mask = TOK_MASK_TOPK;
    masked.train_removal = false;
    bench_setup b;
    tpsc_status st = setup(&b, vc, &masked, batch);
    if (st == TPSC_OK) st = ag_set_precision(b.ctx, precision);
    tpsc_adamw opt = {0};
    if (st == TPSC_OK) {
        tpsc_param_groups_assign(&b.m.params);
        tpsc_adamw_config oc = tpsc_adamw_defaults();
        st = tpsc_adamw_init(&opt, &b.m.params, &oc);
    }
    tpsc_rng noise;
    tpsc_rng_seed(&noise, 2);
    removal_ctx rc = {.b = &b, .opt = &opt, .noise = &noise};
    if (st == TPSC_OK) st = tpsc_bench_alternate(warmup, repeats, removal_step, &rc, res);
    if (st == TPSC_OK) {
        /* masked: every block on all tokens (the dense cost); removed: inference's token counts */
        vit_model tmp = b.m;
        tmp.tps = (tok_config){.method = TOK_NONE};
        res->gmacs[0] = tpsc_model_gmacs(&tmp);
        res->gmacs[1] = tpsc_model_gmacs(&b.m);
    }
    tpsc_adamw_free(&opt);
    teardown(&b);
    return st;
}

tpsc_status tpsc_bench_infer(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                             tpsc_bench_result *res) {
    memset(res, 0, sizeof *res);
    bench_setup b;
    tpsc_status st = setup(&b, vc, tc, batch);
    double *times = tpsc_calloc((size_t)repeats, sizeof *times, "bench times");
    if (st == TPSC_OK && !times) st = TPSC_ERR_NOMEM;
    if (st == TPSC_OK) ag_set_grad_enabled(b.ctx, false);
    for (int i = 0; st == TPSC_OK && i < warmup + repeats; i++) {
        double t0 = tpsc_now();
        ag_ctx_reset(b.ctx);
        ag_tensor *x = ag_wrap(b.ctx, b.images, NULL, 4, b.ishape, false);
        vit_forward_opts fo = {.mode = VIT_INFER};
        vit_output out;
        if (!vit_forward(b.ctx, &b.m, x, &fo, &out)) {
            st = ag_ctx_status(b.ctx);
            break;
        }
        if (i >= warmup) times[i - warmup] = tpsc_now() - t0;
    }
    if (st == TPSC_OK) {
        summarise(times, repeats, batch, res);
        res->gmacs_per_image = tpsc_model_gmacs(&b.m);
        res->gflops = 2.0 * res->gmacs_per_image * res->images_per_s;
    }
    tpsc_free(times);
    teardown(&b);
    return st;
}

/* The same measurement through libtpsinfer: the random-weight model is handed to the library
 * as an inference file made in memory (src/export/export.h). */
tpsc_status tpsc_bench_infer_lib(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                                 const tps_open_options *oo, tpsc_bench_result *res) {
    memset(res, 0, sizeof *res);
    bench_setup b;
    tpsc_status st = setup(&b, vc, tc, batch);
    double *times = tpsc_calloc((size_t)repeats, sizeof *times, "bench times");
    float *logits = tpsc_malloc(batch * vc->num_classes * sizeof(float), "bench logits");
    if (st == TPSC_OK && (!times || !logits)) st = TPSC_ERR_NOMEM;
    tps_model *m = NULL;
    tps_workspace *ws = NULL;
    if (st == TPSC_OK) st = tpsc_export_open_model(&b.m, oo, &m);
    if (st == TPSC_OK && tps_workspace_create(m, batch, &ws) != TPS_OK)
        st = tpsc_fail(TPSC_ERR_INTERNAL, "libtpsinfer: %s", tps_last_error());
    for (int i = 0; st == TPSC_OK && i < warmup + repeats; i++) {
        double t0 = tpsc_now();
        if (tps_run(ws, b.images, batch, logits) != TPS_OK) {
            st = tpsc_fail(TPSC_ERR_INTERNAL, "libtpsinfer: %s", tps_last_error());
            break;
        }
        if (i >= warmup) times[i - warmup] = tpsc_now() - t0;
    }
    if (st == TPSC_OK) {
        summarise(times, repeats, batch, res);
        res->gmacs_per_image = tps_model_macs(m, 0.0f) * 1e-9;
        res->gflops = 2.0 * res->gmacs_per_image * res->images_per_s;
    }
    tps_workspace_free(ws);
    tps_model_close(m);
    tpsc_free(logits);
    tpsc_free(times);
    teardown(&b);
    return st;
}
