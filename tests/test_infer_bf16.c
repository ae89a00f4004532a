/* libtpsinfer's opt-in BF16 precision (tps_model_open_ex, TPS_PRECISION_BF16) against its
 * FP32 path on the same files: the committed fixture model (tests/fixtures/infer_tiny.h5,
 * PyTorch weights) and small random models of every method written by the framework.
 *
 * Tolerance, derived from bf16's format before any run: bf16 keeps 8 significant bits, unit
 * roundoff u = 2^-8. A linear rounds its input row and its weight once each, so every
 * product x_i w_i carries a relative error of up to 2u; rounding errors are roughly uniform
 * (std u/sqrt(3) per operand, sqrt(2/3) u per product) and independent, so the output's error
 * has std about sqrt(2/3) u |y| (f32 accumulation adds nothing at this scale). D linears
 * feed a logit in sequence (patch embedding, 4 per block, head; the residual stream carries
 * their errors additively), giving a relative std of sqrt(2/3) u sqrt(D). Over the B K logits
 * of a batch, the largest deviation stays within 4 standard deviations:
 *     max|bf16 - fp32| <= 4 sqrt(2/3) u sqrt(D) max|fp32|       (D = 2 + 4 depth)
 * i.e. 0.048 for depth 3 and 0.054 for depth 4.
 * That model is continuous: it holds for every image of a dense model. Pruned models also
 * take discrete decisions (top-k of the scores, and in dtps/etps each dropped token's most
 * similar host), and BF16 may flip those whose scores are closer than the rounding error;
 * a flipped decision moves an image's logits by more than rounding does. So for them
 * "most inputs" is required, not all: >= 90% of the images within the bound above, the same
 * top-1 class on >= 90% of the images (every model), and at every pruning stage on average
 * >= 90% of the kept tokens the same (as a set).
 * Where both runs are BF16 (threads, split batches), only f32 accumulation order can differ:
 * 1e-5 relative, as tests/test_infer.c's library-vs-framework tolerance. */
#include <criterion/criterion.h>
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

static void one_thread(void) { omp_set_num_threads(1); }
TestSuite(infer_bf16, .init = one_thread);

#define BF16_U (1.0 / 256.0) /* 2^-8 */
#define SAME_ORDER_RTOL 1e-5
#define MOST 0.9

static double bf16_rtol(int depth) { return 4.0 * sqrt(2.0 / 3.0) * BF16_U * sqrt(2.0 + 4.0 * depth); }

/* Whether this build and CPU can run BF16; false (and the test skips) only when the build
 * has no oneDNN, /proc/cpuinfo lists no avx512_bf16 or ONEDNN_MAX_CPU_ISA hides it: anything
 * else failing is a bug. */
static bool cpu_has_avx512_bf16(void) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[8192];
    bool yes = false;
    while (!yes && fgets(line, sizeof line, f)) yes = strncmp(line, "flags", 5) == 0 && strstr(line, " avx512_bf16");
    fclose(f);
    return yes;
}

static void need_bf16(void) {
    if (tps_precision_supported(TPS_PRECISION_BF16) == TPS_OK) return;
    const char *why = tps_last_error();
    if (strstr(why, "built without") || strstr(why, "limited by") || !cpu_has_avx512_bf16())
        cr_skip_test("BF16 unavailable here: %s", why);
    cr_assert_fail("BF16 unsupported on a CPU with avx512_bf16 in a oneDNN build: %s", why);
}

/* ---- models ------------------------------------------------------------------------------- */

static sm_run *run_model(const char *path, tps_precision p, const float *images, size_t B) {
    return sm_run_model(path, &(tps_open_options){.precision = p}, images, B, 1);
}

static size_t argmax(const float *v, size_t n) {
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best]) best = i;
    return best;
}

/* |a ∩ b| / |a| for token lists (order ignored) */
static double overlap(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
    size_t same = 0;
    for (size_t i = 0; i < na; i++)
        for (size_t j = 0; j < nb; j++)
            if (a[i] == b[j]) {
                same++;
                break;
            }
    return na ? (double)same / (double)na : 1.0;
}

/* BF16 against FP32 on one file and batch, with the tolerances of the header. */
static void check_against_fp32(const char *path, const float *images, size_t B, const char *what) {
    sm_run *f = run_model(path, TPS_PRECISION_FP32, images, B);
    sm_run *h = run_model(path, TPS_PRECISION_BF16, images, B);
    const int depth = f->depth;
    const size_t K = f->K;
    const double scale = fx_max_abs(f->logits, B * K), d = fx_max_diff(h->logits, f->logits, B * K);
    const double tol = bf16_rtol(depth) * scale;
    size_t within = 0;
    for (size_t b = 0; b < B; b++) within += fx_max_diff(h->logits + b * K, f->logits + b * K, K) <= tol;
    if (f->n_stages == 0)
        cr_expect(d <= tol, "%s: BF16 logits differ from FP32 by %g (max|fp32| %g, tolerance %g)", what, d, scale, tol);
    else
        cr_expect(within >= MOST * (double)B, "%s: %zu of %zu images within %g of FP32's logits (max|fp32| %g)", what,
                  within, B, tol, scale);
    /* the BF16 path really ran: rounding 8 bits off every operand moves the logits */
    cr_expect(d > 1e-4 * scale, "%s: BF16 logits equal FP32 (%g): were the linears packed?", what, d);
    size_t same_top1 = 0;
    for (size_t b = 0; b < B; b++) same_top1 += argmax(h->logits + b * K, K) == argmax(f->logits + b * K, K);
    cr_expect(same_top1 >= MOST * (double)B, "%s: top-1 equal on %zu of %zu images", what, same_top1, B);
    cr_assert_eq(h->n_stages, f->n_stages);
    char shared[128] = "";
    for (int s = 0; s < f->n_stages; s++) {
        double sum = 0;
        for (size_t b = 0; b < B; b++) {
            cr_expect_eq(h->k[s][b], f->k[s][b], "%s: stage %d image %zu keeps %zu tokens, FP32 %zu", what, s, b,
                         h->k[s][b], f->k[s][b]);
            sum += overlap(f->kept[s][b], f->k[s][b], h->kept[s][b], h->k[s][b]);
        }
        cr_expect(sum / (double)B >= MOST, "%s: stage %d keeps %.1f%% of FP32's tokens on average", what, s,
                  100.0 * sum / (double)B);
        const size_t used = strlen(shared);
        snprintf(shared + used, sizeof shared - used, "%s%.1f%%", s ? " / " : ", kept tokens shared ", 100.0 * sum / (double)B);
    }
    cr_log_info("%s: max|bf16-fp32| / max|fp32| = %.3g (tolerance %.3g, %zu/%zu images within), top-1 equal %zu/%zu%s",
                what, d / scale, bf16_rtol(depth), within, B, same_top1, B, shared);
    sm_run_free(f);
    sm_run_free(h);
}

/* ---- accuracy ----------------------------------------------------------------------------- */

/* The committed fixture (PyTorch weights, dtps, depth 3): its 3 reference inputs and 32
 * random ones. */
Test(infer_bf16, fixture_model_vs_fp32) {
    need_bf16();
    fixture fx;
    fx_open(&fx, "infer_tiny.h5");
    size_t n, shape[4];
    int nd;
    float *x = fx_read_f32(&fx, "/check/input", &n, shape, &nd);
    check_against_fp32(fx.path, x, shape[0], "infer_tiny.h5 /check/input");
    float *y = fx_random_normal(32 * n / shape[0], 5);
    check_against_fp32(fx.path, y, 32, "infer_tiny.h5 random inputs");
    free(x), free(y);
    fx_close(&fx);
}

static void check_method(tok_method method) {
    need_bf16();
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_bf16", "model.h5");
    sm_write_random_model(path, method, 7 + (uint64_t)method);
    float *x = fx_random_normal(32 * 3 * 32 * 32, 99);
    check_against_fp32(path, x, 32, tok_method_name(method));
    free(x);
    unlink(path);
}

Test(infer_bf16, dense_vs_fp32) { check_method(TOK_NONE); }
Test(infer_bf16, dtps_vs_fp32) { check_method(TOK_DTPS); }
Test(infer_bf16, dynamicvit_vs_fp32) { check_method(TOK_DYNAMICVIT); }
Test(infer_bf16, evit_vs_fp32) { check_method(TOK_EVIT); }
Test(infer_bf16, etps_vs_fp32) { check_method(TOK_ETPS); }

/* ---- threads ------------------------------------------------------------------------------ */

/* 9 images on 2 threads take forward.c's split path (each chunk on one thread, oneDNN then
 * single-threaded inside the parallel region); 3 images share every step's loops. Both must
 * agree with one thread's BF16 run up to accumulation order. */
static void check_threads(size_t B) {
    need_bf16();
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_bf16", "threads.h5");
    sm_write_random_model(path, TOK_DTPS, 3);
    float *x = fx_random_normal(B * 3 * 32 * 32, 11);
    sm_run *one = run_model(path, TPS_PRECISION_BF16, x, B);
    omp_set_num_threads(2);
    sm_run *two = run_model(path, TPS_PRECISION_BF16, x, B);
    const size_t K = one->K;
    const double scale = fx_max_abs(one->logits, B * K), d = fx_max_diff(two->logits, one->logits, B * K);
    cr_expect(d <= SAME_ORDER_RTOL * scale, "B=%zu: 2 threads differ from 1 by %g (scale %g)", B, d, scale);
    for (int s = 0; s < one->n_stages; s++)
        for (size_t b = 0; b < B; b++)
            cr_expect_eq(memcmp(one->kept[s][b], two->kept[s][b], one->k[s][b] * sizeof(int32_t)), 0,
                         "B=%zu stage %d image %zu: kept tokens differ", B, s, b);
    sm_run_free(one), sm_run_free(two);
    free(x);
    unlink(path);
}

Test(infer_bf16, split_batch_two_threads) { check_threads(9); }
Test(infer_bf16, shared_loops_two_threads) { check_threads(3); }

typedef struct job {
    const tps_model *m;
    const float *x;
    size_t B, K;
    float logits[8 * 10];
    tps_status st;
} job;

static void *job_run(void *arg) {
    job *j = arg;
    tps_workspace *ws = NULL;
    j->st = tps_workspace_create(j->m, j->B, &ws);
    for (int rep = 0; rep < 3 && j->st == TPS_OK; rep++) j->st = tps_run(ws, j->x, j->B, j->logits);
    tps_workspace_free(ws);
    return NULL;
}

/* Application threads sharing one BF16 model (each with its workspace) see the primitive
 * cache grow concurrently and must get the one-thread logits: same primitives, same data. */
Test(infer_bf16, threads_share_a_model) {
    need_bf16();
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_bf16", "shared.h5");
    sm_write_random_model(path, TOK_DTPS, 4);
    tps_open_options o = {.precision = TPS_PRECISION_BF16};
    tps_model *m;
    cr_assert_eq(tps_model_open_ex(path, &o, &m), TPS_OK, "%s", tps_last_error());
    float *x = fx_random_normal(8 * 3 * 32 * 32, 12);
    job *jobs = calloc(4, sizeof *jobs);
    for (int i = 0; i < 4; i++) jobs[i] = (job){.m = m, .x = x, .B = (size_t)(i % 2 ? 8 : 5), .K = 10};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) cr_assert_eq(pthread_create(&t[i], NULL, job_run, &jobs[i]), 0);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    job *alone = calloc(2, sizeof *alone);
    for (int i = 0; i < 2; i++) {
        alone[i] = (job){.m = m, .x = x, .B = (size_t)(i ? 8 : 5), .K = 10};
        job_run(&alone[i]);
        cr_assert_eq(alone[i].st, TPS_OK, "%s", tps_last_error());
    }
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(jobs[i].st, TPS_OK, "thread %d failed", i);
        const job *ref = &alone[i % 2];
        const size_t n = ref->B * ref->K;
        const double d = fx_max_diff(jobs[i].logits, ref->logits, n), scale = fx_max_abs(ref->logits, n);
        cr_expect(d <= SAME_ORDER_RTOL * scale, "thread %d (B=%zu): logits differ by %g", i, ref->B, d);
    }
    free(jobs), free(alone), free(x);
    tps_model_close(m);
    unlink(path);
}

/* ---- errors ------------------------------------------------------------------------------- */

Test(infer_bf16, fp32_is_the_default) {
    fixture fx;
    fx_open(&fx, "infer_tiny.h5");
    tps_model *m;
    cr_assert_eq(tps_model_open(fx.path, &m), TPS_OK, "%s", tps_last_error());
    cr_expect_eq(tps_model_precision(m), TPS_PRECISION_FP32);
    tps_model_close(m);
    cr_assert_eq(tps_model_open_ex(fx.path, NULL, &m), TPS_OK, "%s", tps_last_error());
    cr_expect_eq(tps_model_precision(m), TPS_PRECISION_FP32);
    tps_model_close(m);
    tps_open_options bad = {.precision = (tps_precision)7};
    cr_expect_eq(tps_model_open_ex(fx.path, &bad, &m), TPS_ERR_ARG);
    cr_expect_null(m);
    cr_expect_eq(tps_precision_supported(TPS_PRECISION_FP32), TPS_OK);
    fx_close(&fx);
}

/* Without oneDNN, or on a CPU without AVX512-BF16, BF16 is refused with TPS_ERR_UNSUPPORTED
 * and a message naming the reason. DNNL_MAX_CPU_ISA=AVX512_CORE makes oneDNN see a CPU
 * without it (read once, at oneDNN's first use: Criterion runs each test in a new process). */
Test(infer_bf16, refused_without_avx512_bf16) {
    setenv("DNNL_MAX_CPU_ISA", "AVX512_CORE", 1);
    fixture fx;
    fx_open(&fx, "infer_tiny.h5");
    tps_open_options o = {.precision = TPS_PRECISION_BF16};
    tps_model *m = (tps_model *)1;
    cr_expect_eq(tps_model_open_ex(fx.path, &o, &m), TPS_ERR_UNSUPPORTED);
    cr_expect_null(m);
    const char *why = tps_last_error();
    cr_expect(strstr(why, "AVX512-BF16") || strstr(why, "built without"), "message: %s", why);
    cr_expect_eq(tps_precision_supported(TPS_PRECISION_BF16), TPS_ERR_UNSUPPORTED);
    cr_expect_str_eq(tps_status_str(TPS_ERR_UNSUPPORTED), "not supported by this build or CPU");
    fx_close(&fx);
}

/* ---- the CLI ------------------------------------------------------------------------------ */

/* The first class line (top-1 name and probability) `tpsc infer ... --precision P` prints,
 * and its exit status. */
static int cli_top1(const char *precision, char *name, double *pct) {
    char tpsc[512], cmd[2048], line[512];
    snprintf(tpsc, sizeof tpsc, "%s/tpsc", TPSC_BINARY_DIR);
    if (access(tpsc, X_OK) != 0) cr_skip_test("%s is not built", tpsc);
    snprintf(cmd, sizeof cmd, "%s infer %s/infer_tiny.h5 %s/data/smooth0.jpg --top 1 --threads 1 --precision %s 2>&1",
             tpsc, TPSC_FIXTURE_DIR, TPSC_FIXTURE_DIR, precision);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p);
    name[0] = '\0';
    while (fgets(line, sizeof line, p))
        if (!name[0] && sscanf(line, " %lf%% %127s", pct, name) != 2) name[0] = '\0';
    const int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The flag is wired: `tpsc infer --precision bf16` runs and names the FP32 run's top-1 class
 * (the accuracy itself is the tests above); an unknown precision is a usage error (status 2). */
Test(infer_bf16, cli_precision) {
    need_bf16();
    char f[128], h[128];
    double pf = 0, ph = 0;
    cr_assert_eq(cli_top1("fp32", f, &pf), 0);
    cr_assert_eq(cli_top1("bf16", h, &ph), 0);
    cr_expect_str_eq(h, f, "top-1 %s (bf16, %.2f%%) vs %s (fp32, %.2f%%)", h, ph, f, pf);
    cr_expect_eq(cli_top1("fp16", f, &pf), 2);
}
