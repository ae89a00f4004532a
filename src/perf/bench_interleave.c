/* Two models timed in alternation through libtpsinfer: on a shared machine the load changes
 * from second to second, and timing all runs of one model before the other turns that change
 * into a false speed-up. Here run i of model A and run i of model B follow each other, and the
 * ratio is the median of the per-pair ratios, in wall-clock time and in process CPU time (the
 * second counts only cycles this process got, so it moves less when other jobs take the cores). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "src/channels/prune.h"
#include "src/io/checkpoint.h"
#include "src/perf/bench.h"
#include "src/util/alloc.h"

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* One model with random weights (timm's init; gates random so the kept channels vary), written
 * as an inference file and opened by the library. */
static tpsc_status open_model(const vit_config *vc, const tok_config *tc, size_t batch, const tps_open_options *oo,
                              tps_model **m, tps_workspace **ws) {
    vit_model vm;
    TPSC_TRY(vit_model_create(&vm, vc, tc));
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 1);
    vit_model_init(&vm, &rng);
    for (int i = 0; i < vm.params.count; i++)
        if (strstr(vm.params.items[i].name, "_gate"))
            for (size_t j = 0; j < vm.params.items[i].numel; j++) vm.params.items[i].t.data[j] = tpsc_rng_normal(&rng);
    const char *dir = getenv("TMPDIR");
    char path[512];
    snprintf(path, sizeof path, "%s/tpsc_bench_XXXXXX", dir && *dir ? dir : "/tmp");
    const int fd = mkstemp(path);
    tpsc_status st = fd < 0 ? tpsc_fail(TPSC_ERR_IO, "%s: cannot create a temporary model file", path) : TPSC_OK;
    if (fd >= 0) close(fd);
    tpsc_checkpoint ck = {.format = TPSC_FORMAT_INFERENCE, .vit = vc, .tps = tc, .params = &vm.params};
    if (st == TPSC_OK) st = chan_save_inference(path, &vm, &ck);
    if (st == TPSC_OK && (tps_model_open_ex(path, oo, m) != TPS_OK || tps_workspace_create(*m, batch, ws) != TPS_OK))
        st = tpsc_fail(TPSC_ERR_INTERNAL, "libtpsinfer: %s", tps_last_error());
    if (fd >= 0) unlink(path);
    vit_model_free(&vm);
    return st;
}

tpsc_status tpsc_bench_alternate(int warmup, int repeats, tpsc_status (*step)(void *user, int k), void *user,
                                 tpsc_bench_pair *res) {
    double *t = tpsc_calloc(6 * (size_t)repeats, sizeof *t, "bench times");
    if (!t) return TPSC_ERR_NOMEM;
    double *wall[2] = {t, t + repeats}, *cpu[2] = {t + 2 * repeats, t + 3 * repeats};
    double *rw = t + 4 * repeats, *rc = t + 5 * repeats;
    tpsc_status st = TPSC_OK;
    for (int i = 0; st == TPSC_OK && i < warmup + repeats; i++) {
        for (int k = 0; k < 2 && st == TPSC_OK; k++) {
            const double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
            st = step(user, k);
            if (i >= warmup) {
                wall[k][i - warmup] = clock_s(CLOCK_MONOTONIC) - w0;
                cpu[k][i - warmup] = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
            }
        }
        if (st == TPSC_OK && i >= warmup) {
            rw[i - warmup] = wall[0][i - warmup] / wall[1][i - warmup];
            rc[i - warmup] = cpu[0][i - warmup] / cpu[1][i - warmup];
        }
    }
    if (st == TPSC_OK) {
        for (int k = 0; k < 2; k++) {
            res->wall_s[k] = tpsc_median(wall[k], repeats);
            res->cpu_s[k] = tpsc_median(cpu[k], repeats);
        }
        res->ratio_wall = tpsc_median(rw, repeats);
        res->ratio_cpu = tpsc_median(rc, repeats);
    }
    tpsc_free(t);
    return st;
}

/* One library run of model k on the shared images. */
typedef struct run_ctx {
    tps_workspace *ws[2];
    const float *images;
    size_t batch;
    float *logits;
} run_ctx;

static tpsc_status run_one(void *user, int k) {
    run_ctx *r = user;
    if (tps_run(r->ws[k], r->images, r->batch, r->logits) != TPS_OK)
        return tpsc_fail(TPSC_ERR_INTERNAL, "libtpsinfer: %s", tps_last_error());
    return TPSC_OK;
}

tpsc_status tpsc_bench_interleaved(const vit_config *vc, const tok_config *a, const tok_config *b, size_t batch,
                                   int warmup, int repeats, const tps_open_options oo[2], tpsc_bench_pair *res) {
    memset(res, 0, sizeof *res);
    tps_model *m[2] = {NULL, NULL};
    tps_workspace *ws[2] = {NULL, NULL};
    const size_t n_img = batch * vc->in_chans * vc->img_size * vc->img_size;
    float *images = tpsc_malloc(n_img * sizeof(float), "bench images");
    float *logits = tpsc_malloc(batch * vc->num_classes * sizeof(float), "bench logits");
    tpsc_status st = images && logits ? TPSC_OK : TPSC_ERR_NOMEM;
    if (st == TPSC_OK) st = open_model(vc, a, batch, &oo[0], &m[0], &ws[0]);
    if (st == TPSC_OK) st = open_model(vc, b, batch, &oo[1], &m[1], &ws[1]);
    tpsc_rng rng;
    tpsc_rng_seed(&rng, 2);
    for (size_t i = 0; st == TPSC_OK && i < n_img; i++) images[i] = tpsc_rng_normal(&rng);
    run_ctx rc = {.ws = {ws[0], ws[1]}, .images = images, .batch = batch, .logits = logits};
    if (st == TPSC_OK) st = tpsc_bench_alternate(warmup, repeats, run_one, &rc, res);
    if (st == TPSC_OK)
        for (int k = 0; k < 2; k++) res->gmacs[k] = tps_model_macs(m[k], 0.0f) * 1e-9;
    for (int k = 0; k < 2; k++) {
        tps_workspace_free(ws[k]);
        tps_model_close(m[k]);
    }
    tpsc_free(images);
    tpsc_free(logits);
    return st;
}
