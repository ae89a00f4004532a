/* libtpsinfer (src/infer/tps_infer.h) against the training framework's inference path
 * (vit_forward in VIT_INFER mode) and against PyTorch (tests/fixtures/vit_dtps.h5).
 *
 * Models are written with the framework's own checkpoint writer (format "tpsc-inference",
 * what `tpsc export` writes) and opened by the library, so both engines see the same weights.
 *
 * Tolerances:
 *   library vs framework logits: max|lib - framework| <= 1e-5 * max|framework| (the same
 *     operations in the same order; only BLAS blocking over different row counts may differ);
 *   library vs PyTorch logits: 1e-4 * max|torch|, as tests/test_parity_tps.c;
 *   kept token indices: identical, in order. */
#include <criterion/criterion.h>
#include <hdf5.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"
#include "support/fixture.h"
#include "support/small_model.h"

/* One OpenMP thread unless a test is about threads: the models are tiny, and on a shared
 * machine busy-waiting thread teams made this file many times slower. The tests that need two
 * threads (the split batch, the intra-op loops) set them. */
static void one_thread(void) { omp_set_num_threads(1); }
TestSuite(infer, .init = one_thread);

#define LIB_RTOL 1e-5
#define TORCH_RTOL 1e-4

/* Saves m as the inference file <name> (its path goes to path) and opens it with the library,
 * with a workspace for B images: both engines then hold the same weights. */
static void export_and_open(vit_model *m, const char *name, char *path, size_t B, tps_model **lib, tps_workspace **ws) {
    sm_tmp_path(path, 512, "test_infer", name);
    sm_save_inference(path, m);
    cr_assert_eq(tps_model_open(path, lib), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_workspace_create(*lib, B, ws), TPS_OK, "%s", tps_last_error());
}

/* The framework's inference: logits [B,K] and kept indices copied out of the arena. */
typedef struct reference {
    float *logits;
    int n_stages;
    size_t kept_count[TOK_MAX_STAGES];
    int32_t *kept[TOK_MAX_STAGES];
} reference;

static void framework_infer(vit_model *m, float *images, size_t B, const size_t *keep_override, reference *ref) {
    memset(ref, 0, sizeof *ref);
    ag_ctx *ctx = ag_ctx_create(0);
    ag_set_grad_enabled(ctx, false);
    const vit_config *c = &m->cfg;
    ag_tensor *x = ag_wrap(ctx, images, NULL, 4, (size_t[]){B, c->in_chans, c->img_size, c->img_size}, false);
    vit_forward_opts opts = {.mode = VIT_INFER, .keep_override = keep_override};
    vit_output out;
    ag_tensor *logits = vit_forward(ctx, m, x, &opts, &out);
    cr_assert_not_null(logits, "framework forward: %s", tpsc_last_error());
    const size_t K = c->num_classes;
    ref->logits = malloc(B * K * sizeof(float));
    memcpy(ref->logits, logits->data, B * K * sizeof(float));
    ref->n_stages = out.n_stages;
    for (int s = 0; s < out.n_stages; s++) {
        ref->kept_count[s] = out.kept_count[s];
        ref->kept[s] = malloc(B * out.kept_count[s] * sizeof(int32_t));
        memcpy(ref->kept[s], out.kept_orig[s], B * out.kept_count[s] * sizeof(int32_t));
    }
    ag_ctx_free(ctx);
}

static void reference_free(reference *r) {
    free(r->logits);
    for (int s = 0; s < TOK_MAX_STAGES; s++) free(r->kept[s]);
}

/* Image b of the library's last run against image bb of the reference. */
static void expect_same_kept(const tps_workspace *ws, size_t b, const reference *ref, size_t bb, const char *what) {
    cr_assert_eq(tps_num_stages(ws), ref->n_stages, "%s: %d stages, framework %d", what, tps_num_stages(ws), ref->n_stages);
    for (int s = 0; s < ref->n_stages; s++) {
        const int32_t *idx;
        size_t n;
        cr_assert_eq(tps_kept_tokens(ws, s, b, &idx, &n), TPS_OK, "%s", tps_last_error());
        cr_assert_eq(n, ref->kept_count[s], "%s: image %zu stage %d keeps %zu, framework %zu", what, b, s, n,
                     ref->kept_count[s]);
        const int32_t *want = ref->kept[s] + bb * n;
        for (size_t j = 0; j < n; j++)
            cr_assert_eq(idx[j], want[j], "%s: image %zu stage %d position %zu: token %d, framework %d", what, b, s, j,
                         idx[j], want[j]);
    }
}

static void expect_close(const float *got, const float *want, size_t n, double rtol, const char *what) {
    const double scale = fx_max_abs(want, n), d = fx_max_diff(got, want, n);
    cr_expect(d <= rtol * scale, "%s: logits differ by %g (scale %g, tolerance %g)", what, d, scale, rtol * scale);
}

/* Builds the model, saves it, opens it with the library; both engines on the same batch. */
/* unfused: evit dropping its pruned tokens (tps.fuse_token = false) */
static void check_parity_batch(tok_method method, float rho, float override, size_t B, bool unfused) {
    vit_config cfg = sm_config();
    tok_config tps = sm_tokens(method, rho);
    tps.evit_drop_pruned = unfused;
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    sm_random_weights(&m, 7 + (uint64_t)method);
    char path[512];
    tps_model *lib;
    tps_workspace *ws;
    export_and_open(&m, "parity.h5", path, B, &lib, &ws);
    float *images = sm_random_images(B, &cfg, 99);
    size_t counts[TOK_MAX_STAGES], *keep_override = NULL;
    if (override > 0.0f) {
        tps_budget bu = {.mode = TPS_BUDGET_FIXED, .keep_ratio = override};
        cr_assert_eq(tps_workspace_set_budget(ws, &bu), TPS_OK, "%s", tps_last_error());
        /* the framework's counts for a model trained with that ratio */
        tok_config o = sm_tokens(method, override);
        size_t n = vit_num_patches(&cfg);
        for (int s = 0; s < o.n_stages; s++) {
            if (tok_method_has_predictor(method)) {
                counts[s] = tok_keep_count(&o, s, n);
            } else {
                counts[s] = tok_evit_keep_count(&o, s, n);
                n = counts[s] < n && method == TOK_EVIT && !unfused ? counts[s] + 1 : counts[s];
            }
        }
        keep_override = counts;
    }
    float *logits = malloc(B * cfg.num_classes * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, logits), TPS_OK, "%s", tps_last_error());
    reference ref;
    framework_infer(&m, images, B, keep_override, &ref);
    expect_close(logits, ref.logits, B * cfg.num_classes, LIB_RTOL, tok_method_name(method));
    for (size_t b = 0; b < B; b++) expect_same_kept(ws, b, &ref, b, tok_method_name(method));
    for (int s = 0; s < ref.n_stages; s++)
        cr_expect_float_eq(tps_mean_kept(ws, s), (double)ref.kept_count[s], 1e-12, "stage %d mean", s);
    /* the cost model agrees with the framework's (src/tokens/flops.c), exactly: integer counts */
    tok_config costed = override > 0.0f ? sm_tokens(method, override) : tps;
    costed.evit_drop_pruned = unfused;
    tps_model_info info;
    cr_assert_eq(tps_model_get_info(lib, &info), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(info.fuse_token, method != TOK_EVIT || !unfused, "fuse_token read back from the file");
    if (unfused && override == 0.0f) /* ceil(0.7 n) of the n current tokens, no fused token added */
        for (int s = 0; s < 3; s++)
            cr_expect_eq(ref.kept_count[s], ((size_t[]){45, 32, 23})[s], "stage %d keeps %zu", s, ref.kept_count[s]);
    const double want_macs = tok_macs_per_image(&costed, cfg.img_size, cfg.patch_size, cfg.in_chans, cfg.embed_dim,
                                                cfg.depth, (size_t)(cfg.embed_dim * cfg.mlp_ratio), cfg.num_classes);
    cr_expect_float_eq(tps_model_macs(lib, override), want_macs, 0.5, "%s: MACs %.0f, framework %.0f",
                       tok_method_name(method), tps_model_macs(lib, override), want_macs);

    reference_free(&ref);
    free(logits);
    free(images);
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
}

static void check_parity(tok_method method, float rho, float override) {
    check_parity_batch(method, rho, override, 3, false);
}

Test(infer, parity_dense) { check_parity(TOK_NONE, 1.0f, 0.0f); }
Test(infer, parity_dynamicvit) { check_parity(TOK_DYNAMICVIT, 0.7f, 0.0f); }
Test(infer, parity_dtps) { check_parity(TOK_DTPS, 0.7f, 0.0f); }
Test(infer, parity_evit) { check_parity(TOK_EVIT, 0.7f, 0.0f); }
Test(infer, parity_etps) { check_parity(TOK_ETPS, 0.7f, 0.0f); }
/* keep_ratio overrides the exported 0.7: the counts of a model trained at 0.5 / 0.9 */
Test(infer, keep_ratio_override_dtps) { check_parity(TOK_DTPS, 0.7f, 0.5f); }
Test(infer, keep_ratio_override_evit) { check_parity(TOK_EVIT, 0.7f, 0.9f); }
Test(infer, keep_ratio_override_etps) { check_parity(TOK_ETPS, 0.7f, 0.5f); }
/* EViT without fusion: the file's fuse_token = 0 reaches libtpsinfer (counts 45, 32, 23 here
 * against 45, 33, 24 fused) */
Test(infer, parity_evit_unfused) { check_parity_batch(TOK_EVIT, 0.7f, 0.0f, 3, true); }
Test(infer, keep_ratio_override_evit_unfused) { check_parity_batch(TOK_EVIT, 0.7f, 0.5f, 3, true); }

/* Batches of at least 4 images per thread are split into one chunk per thread (forward.c);
 * 2 threads here so that 9 images take that path (chunks of 4 and 5). */
static void check_split(tok_method method) {
    omp_set_num_threads(2);
    check_parity_batch(method, 0.7f, 0.0f, 9, false);
}
Test(infer, split_batch_dtps) { check_split(TOK_DTPS); }
Test(infer, split_batch_evit) { check_split(TOK_EVIT); }
Test(infer, split_batch_dense) { check_split(TOK_NONE); }
Test(infer, split_batch_evit_unfused) {
    omp_set_num_threads(2);
    check_parity_batch(TOK_EVIT, 0.7f, 0.0f, 9, true);
}
/* 3 images on 2 threads: every step's loops shared by the threads (no split) */
Test(infer, two_thread_loops_dtps) {
    omp_set_num_threads(2);
    check_parity_batch(TOK_DTPS, 0.7f, 0.0f, 3, false);
}
Test(infer, two_thread_loops_etps) {
    omp_set_num_threads(2);
    check_parity_batch(TOK_ETPS, 0.7f, 0.0f, 3, false);
}
/* 1 image on 2 threads: the latency path, where the team splits attention by heads (not by
 * query rows) and the linears by output columns; every method, since each prunes in its own
 * stage code between those steps */
static void check_two_thread_single_image(tok_method method) {
    omp_set_num_threads(2);
    check_parity_batch(method, method == TOK_NONE ? 1.0f : 0.7f, 0.0f, 1, false);
}
Test(infer, single_image_two_threads_dense) { check_two_thread_single_image(TOK_NONE); }
Test(infer, single_image_two_threads_dynamicvit) { check_two_thread_single_image(TOK_DYNAMICVIT); }
Test(infer, single_image_two_threads_dtps) { check_two_thread_single_image(TOK_DTPS); }
Test(infer, single_image_two_threads_evit) { check_two_thread_single_image(TOK_EVIT); }
Test(infer, single_image_two_threads_etps) { check_two_thread_single_image(TOK_ETPS); }

/* ---- PyTorch parity through an exported file ------------------------------------------------ */

static void check_torch(tok_method method, const char *group) {
    fixture fx;
    fx_open(&fx, "vit_dtps.h5");
    vit_config cfg;
    fx_vit_config(&fx, &cfg);
    float rho = (float)fx_attr_double(&fx, "keep_ratio"); /* evit/etps use 0.7 too (group attr keep_rate) */
    tok_config tps = sm_tokens(method, rho);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    if (tok_method_has_predictor(method)) {
        fx_load_params(&fx, "/model", &m.params);
    } else { /* the fixture's /model has predictors; evit/etps use the backbone only */
        for (int i = 0; i < m.params.count; i++) {
            char ds[256];
            snprintf(ds, sizeof ds, "/model/%s", m.params.items[i].name);
            size_t n;
            float *v = fx_read_f32(&fx, ds, &n, NULL, NULL);
            cr_assert_eq(n, m.params.items[i].numel, "%s", ds);
            memcpy(m.params.items[i].t.data, v, n * sizeof(float));
            free(v);
        }
    }
    size_t n_img, shape[4];
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n_img, shape, &nd);
    const size_t B = shape[0], K = cfg.num_classes;
    char path[512];
    tps_model *lib;
    tps_workspace *ws;
    export_and_open(&m, "torch.h5", path, B, &lib, &ws);
    float *logits = malloc(B * K * sizeof(float));
    cr_assert_eq(tps_run(ws, images, B, logits), TPS_OK, "%s", tps_last_error());
    char ds[128];
    snprintf(ds, sizeof ds, "/%s/infer/logits", group);
    size_t n;
    float *want = fx_read_f32(&fx, ds, &n, NULL, NULL);
    cr_assert_eq(n, B * K);
    expect_close(logits, want, n, TORCH_RTOL, ds);
    for (int s = 0; s < tps.n_stages; s++) {
        snprintf(ds, sizeof ds, "/%s/infer/kept_s%d", group, s);
        int64_t *kept = fx_read_i64(&fx, ds, &n);
        const size_t k = n / B;
        for (size_t b = 0; b < B; b++) {
            const int32_t *idx;
            size_t got_n;
            cr_assert_eq(tps_kept_tokens(ws, s, b, &idx, &got_n), TPS_OK, "%s", tps_last_error());
            cr_assert_eq(got_n, k, "%s image %zu: %zu kept, torch %zu", ds, b, got_n, k);
            for (size_t j = 0; j < k; j++)
                cr_assert_eq((int64_t)idx[j], kept[b * k + j], "%s image %zu position %zu: %d, torch %lld", ds, b, j,
                             idx[j], (long long)kept[b * k + j]);
        }
        free(kept);
    }
    free(want);
    free(logits);
    free(images);
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    fx_close(&fx);
    unlink(path);
}

Test(infer, torch_parity_dtps) { check_torch(TOK_DTPS, "dtps"); }
Test(infer, torch_parity_dynamicvit) { check_torch(TOK_DYNAMICVIT, "dynamicvit"); }
Test(infer, torch_parity_evit) { check_torch(TOK_EVIT, "evit"); }
Test(infer, torch_parity_etps) { check_torch(TOK_ETPS, "etps"); }

/* ---- adaptive budgets ------------------------------------------------------------------------ */

/* A dtps model in threshold mode: each image keeps its own count. The batch must equal every
 * image run alone through the framework with that image's counts (packing without padding
 * changes nothing), and the counts must respect the floor and the cap. */
static void check_threshold(float threshold, float lo, float hi, int expect) {
    const size_t B = 4;
    vit_config cfg = sm_config();
    tok_config tps = sm_tokens(TOK_DTPS, 0.7f);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    sm_random_weights(&m, 21);
    char path[512];
    tps_model *lib;
    tps_workspace *ws;
    export_and_open(&m, "threshold.h5", path, B, &lib, &ws);
    tps_budget bu = {.mode = TPS_BUDGET_THRESHOLD, .threshold = threshold, .min_frac = lo, .max_frac = hi};
    cr_assert_eq(tps_workspace_set_budget(ws, &bu), TPS_OK, "%s", tps_last_error());
    float *images = sm_random_images(B, &cfg, 5);
    float logits[4 * 10];
    cr_assert_eq(tps_run(ws, images, B, logits), TPS_OK, "%s", tps_last_error());
    const size_t per_image = cfg.in_chans * cfg.img_size * cfg.img_size, K = cfg.num_classes;
    bool differ = false;
    for (int s = 0; s < tps.n_stages; s++) {
        double sum = 0;
        for (size_t b = 0; b < B; b++) {
            const int32_t *idx;
            size_t n, n0, n_prev = vit_num_patches(&cfg);
            cr_assert_eq(tps_kept_tokens(ws, s, b, &idx, &n), TPS_OK);
            if (s > 0) cr_assert_eq(tps_kept_tokens(ws, s - 1, b, &idx, &n_prev), TPS_OK);
            const size_t floor_n = (size_t)fmax(1.0, ceil((double)lo * (double)n_prev));
            const size_t cap_n = (size_t)floor((double)hi * (double)n_prev);
            cr_expect(n >= floor_n && n <= cap_n, "stage %d image %zu keeps %zu of %zu (floor %zu, cap %zu)", s, b, n,
                      n_prev, floor_n, cap_n);
            if (expect < 0) cr_expect_eq(n, floor_n, "nothing passes the threshold: the floor");
            if (expect > 0) cr_expect_eq(n, cap_n, "everything passes the threshold: the cap");
            cr_assert_eq(tps_kept_tokens(ws, s, 0, &idx, &n0), TPS_OK);
            differ |= n != n0;
            sum += (double)n;
        }
        cr_expect_float_eq(tps_mean_kept(ws, s), sum / (double)B, 1e-12);
    }
    if (expect == 0) cr_expect(differ, "threshold %g: every image kept the same count", (double)threshold);
    for (size_t b = 0; b < B; b++) {
        size_t counts[TOK_MAX_STAGES];
        for (int s = 0; s < tps.n_stages; s++) {
            const int32_t *idx;
            cr_assert_eq(tps_kept_tokens(ws, s, b, &idx, &counts[s]), TPS_OK);
        }
        reference ref;
        framework_infer(&m, images + b * per_image, 1, counts, &ref);
        expect_close(logits + b * K, ref.logits, K, LIB_RTOL, "threshold image");
        expect_same_kept(ws, b, &ref, 0, "threshold image");
        reference_free(&ref);
    }
    free(images);
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
}

Test(infer, threshold_per_image_counts) { check_threshold(0.5f, 0.1f, 0.95f, 0); }
Test(infer, threshold_floor) { check_threshold(0.999999f, 0.3f, 0.9f, -1); }
Test(infer, threshold_cap) { check_threshold(0.0f, 0.1f, 0.6f, 1); }

Test(infer, threshold_needs_a_predictor) {
    vit_config cfg = sm_config();
    tok_config tps = sm_tokens(TOK_EVIT, 0.7f);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK);
    char path[512];
    tps_model *lib;
    tps_workspace *ws;
    export_and_open(&m, "evit_threshold.h5", path, 1, &lib, &ws);
    tps_budget bu = {.mode = TPS_BUDGET_THRESHOLD, .threshold = 0.5f, .max_frac = 1.0f};
    cr_expect_eq(tps_workspace_set_budget(ws, &bu), TPS_ERR_ARG);
    cr_expect(strstr(tps_last_error(), "predictor"), "message: %s", tps_last_error());
    tps_budget bad = {.mode = TPS_BUDGET_FIXED, .keep_ratio = 1.5f};
    cr_expect_eq(tps_workspace_set_budget(ws, &bad), TPS_ERR_ARG);
    float x[3 * 32 * 32] = {0}, logits[10];
    cr_expect_eq(tps_run(ws, x, 2, logits), TPS_ERR_ARG, "batch 2 in a workspace for 1");
    tps_workspace_free(ws);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
}

/* ---- threads ----------------------------------------------------------------------------------- */

typedef struct thread_job {
    const tps_model *model;
    const float *images;
    size_t B;
    float logits[3 * 10];
    int32_t kept[3][3 * 64];
    tps_status st;
} thread_job;

static void *run_job(void *arg) {
    thread_job *j = arg;
    omp_set_num_threads(1); /* BLAS may block differently with another thread count */
    tps_workspace *ws;
    j->st = tps_workspace_create(j->model, j->B, &ws);
    for (int rep = 0; rep < 3 && j->st == TPS_OK; rep++) j->st = tps_run(ws, j->images, j->B, j->logits);
    for (int s = 0; s < 3 && j->st == TPS_OK; s++)
        for (size_t b = 0; b < j->B; b++) {
            const int32_t *idx;
            size_t n;
            j->st = tps_kept_tokens(ws, s, b, &idx, &n);
            if (j->st == TPS_OK) memcpy(j->kept[s] + b * 64, idx, n * sizeof(int32_t));
        }
    tps_workspace_free(ws);
    return NULL;
}

/* Four threads sharing one model, each with its own workspace, run at once and get what one
 * thread gets: the same operations on the same data (same batch and OpenMP team size), so
 * bit-identical logits and kept tokens. The ThreadSanitizer pass runs this test
 * (docs/reliability.md): the model must be read-only after tps_model_open. */
#define SHARING_THREADS 4
Test(infer, threads_share_a_model) {
    vit_config cfg = sm_config();
    tok_config tps = sm_tokens(TOK_DTPS, 0.7f);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK);
    sm_random_weights(&m, 3);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer", "threads.h5");
    sm_save_inference(path, &m);
    tps_model *lib;
    cr_assert_eq(tps_model_open(path, &lib), TPS_OK, "%s", tps_last_error());
    float *images = sm_random_images(3, &cfg, 11);
    thread_job *single = calloc(1, sizeof *single), *jobs = calloc(SHARING_THREADS, sizeof *jobs);
    *single = (thread_job){.model = lib, .images = images, .B = 3};
    run_job(single);
    cr_assert_eq(single->st, TPS_OK, "%s", tps_last_error());
    pthread_t t[SHARING_THREADS];
    for (int i = 0; i < SHARING_THREADS; i++) {
        jobs[i] = (thread_job){.model = lib, .images = images, .B = 3};
        cr_assert_eq(pthread_create(&t[i], NULL, run_job, &jobs[i]), 0);
    }
    for (int i = 0; i < SHARING_THREADS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < SHARING_THREADS; i++) {
        cr_assert_eq(jobs[i].st, TPS_OK);
        cr_expect_eq(memcmp(jobs[i].logits, single->logits, sizeof single->logits), 0, "thread %d logits differ", i);
        cr_expect_eq(memcmp(jobs[i].kept, single->kept, sizeof single->kept), 0, "thread %d kept tokens differ", i);
    }
    free(single);
    free(jobs);
    free(images);
    tps_model_close(lib);
    vit_model_free(&m);
    unlink(path);
}

/* ---- the CLI: tpsc export, then tpsc infer --tensor, against PyTorch ---------------------------
 * A training checkpoint whose /model is zeros and whose /ema holds the fixture's dtps weights:
 * the export must serve the EMA weights, keep no optimiser state, and `tpsc infer --tensor`
 * must reproduce torch's logits (1e-4 relative) and kept indices (exactly). */
Test(infer, cli_export_and_tensor_parity) {
    char tpsc[512];
    snprintf(tpsc, sizeof tpsc, "%s/tpsc", TPSC_BINARY_DIR);
    if (access(tpsc, X_OK) != 0) cr_skip_test("%s is not built", tpsc);
    fixture fx;
    fx_open(&fx, "vit_dtps.h5");
    vit_config cfg;
    fx_vit_config(&fx, &cfg);
    tok_config tps = sm_tokens(TOK_DTPS, (float)fx_attr_double(&fx, "keep_ratio"));
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &cfg, &tps), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&fx, "/model", &m.params);
    float *ema = malloc(m.params.total * sizeof(float)), *zeros = calloc(m.params.total, sizeof(float));
    memcpy(ema, m.params.data, m.params.total * sizeof(float));
    memcpy(m.params.data, zeros, m.params.total * sizeof(float));
    float *opt = calloc(m.params.total, sizeof(float));
    char ckpt[512], model[512], in[512], out[512], cmd[2400];
    sm_tmp_path(ckpt, sizeof ckpt, "test_infer", "cli_ckpt.h5");
    sm_tmp_path(model, sizeof model, "test_infer", "cli_model.h5");
    sm_tmp_path(in, sizeof in, "test_infer", "cli_in.h5");
    sm_tmp_path(out, sizeof out, "test_infer", "cli_out.h5");
    /* the preprocessing comes from the stored recipe, the class names from the checkpoint */
    static const char *const names[10] = {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"};
    const char *recipe = "[augment]\nmean = 0.5, 0.25, 0.125\nstd = 0.2, 0.3, 0.4\ncrop_pct = 0.9\n";
    tpsc_checkpoint ck = {.vit = &cfg, .tps = &tps, .params = &m.params, .ema = ema, .opt_m = opt, .opt_v = opt,
                          .opt_name = "adamw", .opt_step = 5, .recipe_text = recipe, .class_names = names,
                          .n_class_names = 10};
    cr_assert_eq(tpsc_checkpoint_save(ckpt, &ck), TPSC_OK, "%s", tpsc_last_error());
    snprintf(cmd, sizeof cmd, "%s export %s %s > /dev/null", tpsc, ckpt, model);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    tpsc_checkpoint_info info;
    cr_assert_eq(tpsc_checkpoint_read_config(model, NULL, NULL, &info), TPSC_OK, "%s", tpsc_last_error());
    cr_expect_str_eq(info.format, TPSC_FORMAT_INFERENCE);
    cr_expect(!info.has_optimizer && !info.has_ema && !info.has_state, "the export carries training state");
    tps_model *lib;
    cr_assert_eq(tps_model_open(model, &lib), TPS_OK, "%s", tps_last_error());
    tps_model_info mi;
    tps_model_get_info(lib, &mi);
    cr_expect(mi.mean[0] == 0.5f && mi.mean[1] == 0.25f && mi.mean[2] == 0.125f, "mean %g %g %g", (double)mi.mean[0],
              (double)mi.mean[1], (double)mi.mean[2]);
    cr_expect(mi.std[0] == 0.2f && mi.std[1] == 0.3f && mi.std[2] == 0.4f, "std %g %g %g", (double)mi.std[0],
              (double)mi.std[1], (double)mi.std[2]);
    cr_expect_float_eq(mi.crop_pct, 0.9f, 1e-7);
    cr_expect_eq(mi.input_size, 32);
    cr_expect_str_eq(mi.interpolation, "bicubic");
    cr_expect_str_eq(tps_model_class_name(lib, 9), "j");
    tps_model_close(lib);

    size_t n_img, shape[4];
    int nd;
    float *images = fx_read_f32(&fx, "/input/images", &n_img, shape, &nd);
    hid_t f = H5Fcreate(in, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[4] = {shape[0], shape[1], shape[2], shape[3]};
    hid_t sp = H5Screate_simple(4, dims, NULL);
    hid_t d = H5Dcreate2(f, "/input", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, images) >= 0);
    H5Dclose(d), H5Sclose(sp), H5Fclose(f);
    snprintf(cmd, sizeof cmd, "%s infer %s --tensor %s --out %s > /dev/null", tpsc, model, in, out);
    cr_assert_eq(system(cmd), 0, "%s", cmd);

    fixture res = {.file = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT)};
    snprintf(res.path, sizeof res.path, "%s", out);
    cr_assert(res.file >= 0, "%s not written", out);
    size_t n;
    float *logits = fx_read_f32(&res, "/logits", &n, NULL, NULL);
    float *want = fx_read_f32(&fx, "/dtps/infer/logits", &n, NULL, NULL);
    expect_close(logits, want, n, TORCH_RTOL, "tpsc infer --tensor");
    for (int s = 0; s < tps.n_stages; s++) {
        char ds[64];
        snprintf(ds, sizeof ds, "/kept_s%d", s);
        size_t n_got, n_want;
        int64_t *got = fx_read_i64(&res, ds, &n_got);
        snprintf(ds, sizeof ds, "/dtps/infer/kept_s%d", s);
        int64_t *ref = fx_read_i64(&fx, ds, &n_want);
        cr_assert_eq(n_got, n_want, "stage %d: %zu indices, torch %zu", s, n_got, n_want);
        cr_expect_eq(memcmp(got, ref, n_got * sizeof(int64_t)), 0, "stage %d kept indices differ from torch", s);
        free(got), free(ref);
    }
    H5Fclose(res.file);
    free(logits), free(want), free(images), free(ema), free(zeros), free(opt);
    vit_model_free(&m);
    fx_close(&fx);
    unlink(ckpt), unlink(model), unlink(in), unlink(out);
}

/* ---- a file written by h5py (tests/reference/make_infer_fixture.py) ----------------------------
 * Variable-length strings, h5py's attribute types, and PyTorch's outputs of that model under
 * /check: logits within 1e-4 * max|torch|, kept indices exact. */
Test(infer, h5py_written_file_matches_torch) {
    fixture fx;
    fx_open(&fx, "infer_tiny.h5");
    tps_model *lib;
    tps_workspace *ws;
    cr_assert_eq(tps_model_open(fx.path, &lib), TPS_OK, "%s", tps_last_error());
    tps_model_info info;
    tps_model_get_info(lib, &info);
    cr_expect_str_eq(info.method, "dtps");
    cr_expect_eq(info.n_class_names, 4);
    cr_expect_str_eq(tps_model_class_name(lib, 2), "class_cat");
    cr_expect_float_eq(info.crop_pct, 0.875f, 1e-7);
    size_t n, shape[4];
    int nd;
    float *x = fx_read_f32(&fx, "/check/input", &n, shape, &nd);
    const size_t B = shape[0], K = (size_t)info.num_classes;
    cr_assert_eq(tps_workspace_create(lib, B, &ws), TPS_OK, "%s", tps_last_error());
    float *logits = malloc(B * K * sizeof(float));
    cr_assert_eq(tps_run(ws, x, B, logits), TPS_OK, "%s", tps_last_error());
    float *want = fx_read_f32(&fx, "/check/logits", &n, NULL, NULL);
    expect_close(logits, want, B * K, TORCH_RTOL, "infer_tiny.h5");
    for (int s = 0; s < info.n_stages; s++) {
        char ds[64];
        snprintf(ds, sizeof ds, "/check/kept_s%d", s);
        int64_t *kept = fx_read_i64(&fx, ds, &n);
        for (size_t b = 0; b < B; b++) {
            const int32_t *idx;
            size_t k;
            cr_assert_eq(tps_kept_tokens(ws, s, b, &idx, &k), TPS_OK);
            cr_assert_eq(k * B, n, "%s: %zu kept, torch %zu", ds, k, n / B);
            for (size_t j = 0; j < k; j++) cr_expect_eq((int64_t)idx[j], kept[b * k + j], "%s image %zu pos %zu", ds, b, j);
        }
        free(kept);
    }
    free(want), free(logits), free(x);
    tps_workspace_free(ws);
    tps_model_close(lib);
    fx_close(&fx);
}

/* tps_run_rgb8 is tps_preprocess + tps_run: the same logits bit for bit at the same batch size
 * (across batch sizes BLAS may block the rows differently: 1e-5 relative there). */
Test(infer, rgb8_is_preprocess_then_run) {
    fixture fx;
    fx_open(&fx, "infer_tiny.h5");
    tps_model *lib;
    tps_workspace *ws;
    cr_assert_eq(tps_model_open(fx.path, &lib), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_workspace_create(lib, 2, &ws), TPS_OK);
    char img[600];
    snprintf(img, sizeof img, "%s/data/smooth0.jpg", TPSC_FIXTURE_DIR);
    uint8_t *px;
    int w, h;
    cr_assert_eq(tps_image_load(img, &px, &w, &h), TPS_OK, "%s", tps_last_error());
    uint8_t *two = malloc((size_t)w * h * 3 * 2);
    memcpy(two, px, (size_t)w * h * 3);
    memcpy(two + (size_t)w * h * 3, px, (size_t)w * h * 3);
    float a[2 * 4], b[2 * 4], one[4], x[2 * 3 * 32 * 32];
    cr_assert_eq(tps_run_rgb8(ws, two, 2, w, h, a), TPS_OK, "%s", tps_last_error());
    cr_assert_eq(tps_preprocess(lib, px, w, h, x), TPS_OK, "%s", tps_last_error());
    memcpy(x + 3 * 32 * 32, x, 3 * 32 * 32 * sizeof(float));
    cr_assert_eq(tps_run(ws, x, 2, b), TPS_OK);
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "tps_run_rgb8 differs from tps_preprocess + tps_run");
    cr_assert_eq(tps_run(ws, x, 1, one), TPS_OK);
    expect_close(a, one, 4, LIB_RTOL, "batch 2 vs batch 1");
    expect_close(a + 4, one, 4, LIB_RTOL, "batch 2 (second image) vs batch 1");
    tps_image_free(px);
    free(two);
    tps_workspace_free(ws);
    tps_model_close(lib);
    fx_close(&fx);
}

/* `tpsc infer MODEL IMAGE...` prints each image with its top classes by name, in descending
 * probability, and the mean tokens kept per stage; a file that is not an image is an error
 * naming it (exit status 1). */
Test(infer, cli_classifies_images) {
    char tpsc[512], cmd[2048], line[512];
    snprintf(tpsc, sizeof tpsc, "%s/tpsc", TPSC_BINARY_DIR);
    if (access(tpsc, X_OK) != 0) cr_skip_test("%s is not built", tpsc);
    snprintf(cmd, sizeof cmd, "%s infer %s/infer_tiny.h5 %s/data/smooth0.jpg --top 4 --threads 1 2>&1", tpsc,
             TPSC_FIXTURE_DIR, TPSC_FIXTURE_DIR);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    int classes = 0, images = 0, kept = 0;
    double last = 101.0;
    while (fgets(line, sizeof line, p)) {
        double pct;
        char name[128];
        if (strstr(line, "smooth0.jpg")) images++;
        if (strstr(line, "mean tokens kept: stage 0: 11.0, stage 1: 7.0")) kept++;
        if (sscanf(line, " %lf%% %127s", &pct, name) == 2) {
            cr_expect(strncmp(name, "class_", 6) == 0, "class name: %s", line);
            cr_expect(pct <= last, "probabilities not descending: %s", line);
            last = pct;
            classes++;
        }
    }
    cr_expect_eq(pclose(p), 0, "%s", cmd);
    cr_expect_eq(images, 1);
    cr_expect_eq(classes, 4);
    cr_expect_eq(kept, 1, "the mean tokens kept (11 and 7 of 16) are not reported");
    snprintf(cmd, sizeof cmd, "%s infer %s/infer_tiny.h5 %s/CMakeLists.txt 2>&1", tpsc, TPSC_FIXTURE_DIR, TPSC_SOURCE_DIR);
    p = popen(cmd, "r");
    bool named = false;
    while (fgets(line, sizeof line, p)) named |= strstr(line, "CMakeLists.txt: cannot decode") != NULL;
    int status = pclose(p);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) == 1, "exit status %d for an undecodable image", status);
    cr_expect(named, "the error does not name the file");
}
