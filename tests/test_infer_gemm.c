/* libtpsinfer's FP32 GEMM back-ends (tps_open_options.gemm): OpenBLAS (cblas_sgemm on the
 * FP32 weights), oneDNN (matmul on weights packed at open, bias/residual/GELU fused) and panel
 * (libtpsinfer's AVX-512 kernel on oneDNN's packed weights, a team split by 64-column panels;
 * of the small model's widths 48, 144 and 192 only fc1's 192 is whole panels, so fc1 runs on
 * the kernel and the rest on oneDNN, as a model of mixed widths does).
 *
 * Tolerances:
 *   oneDNN or panel against OpenBLAS logits: max|other - openblas| <= 1e-5 * max|openblas|, the
 *     library-vs-framework tolerance of tests/test_infer.c: both are FP32 with the same
 *     operations; they differ in summation order (blocking), in where the bias is added
 *     (before or after the products) and in GELU's Phi (vecmath's rational erf, error < 1.8e-7;
 *     oneDNN's gelu_erf, a few ulp), each a relative 1e-7-scale change per operation;
 *   kept token indices: identical (no score of these models lies that close to a tie).
 * The suite also runs with oneDNN's ISA capped (ctest's *_avx2 entries, ONEDNN_MAX_CPU_ISA=
 * AVX2): there the default must be OpenBLAS and an explicit oneDNN must still run. */
#include <criterion/criterion.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"
#include "support/fixture.h"
#include "support/small_model.h"

static void one_thread(void) { omp_set_num_threads(1); }
TestSuite(infer_gemm, .init = one_thread);

#define RTOL 1e-5

/* oneDNN or panel (other) against OpenBLAS on one method, batch and team size. */
static void check_agree(tok_method method, size_t B, int threads, tps_gemm other) {
    if (tps_gemm_supported(other) != TPS_OK) cr_skip_test("no %s here: %s", tps_gemm_name(other), tps_last_error());
    const char *name = tps_gemm_name(other);
    omp_set_num_threads(threads);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_gemm", "agree.h5");
    sm_write_random_model(path, method, 11 + (uint64_t)method);
    const vit_config small = sm_config();
    float *images = sm_random_images(B, &small, 5);
    /* twice each: the second run reuses the primitives the first made */
    sm_run *blas = sm_run_model(path, &(tps_open_options){.gemm = TPS_GEMM_OPENBLAS}, images, B, 2);
    sm_run *dnnl = sm_run_model(path, &(tps_open_options){.gemm = other}, images, B, 2);
    const double scale = fx_max_abs(blas->logits, B * 10), d = fx_max_diff(dnnl->logits, blas->logits, B * 10);
    cr_expect(d <= RTOL * scale, "%s, batch %zu, %d threads: %s logits differ from OpenBLAS' by %g (scale %g)",
              tok_method_name(method), B, threads, name, d, scale);
    /* the other back-end really ran: its GELU and summation order change the last bits somewhere */
    cr_expect(d > 0.0, "%s: %s logits equal OpenBLAS' bit for bit: were the weights packed?", tok_method_name(method),
              name);
    if (other == TPS_GEMM_PANEL) { /* and the panel kernel ran: its summation order is not oneDNN's either */
        sm_run *ref = sm_run_model(path, &(tps_open_options){.gemm = TPS_GEMM_ONEDNN}, images, B, 1);
        cr_expect(fx_max_diff(dnnl->logits, ref->logits, B * 10) > 0.0,
                  "%s: panel logits equal oneDNN's bit for bit: did the panel kernel run?", tok_method_name(method));
        sm_run_free(ref);
    }
    cr_assert_eq(dnnl->n_stages, blas->n_stages);
    for (int s = 0; s < blas->n_stages; s++)
        for (size_t b = 0; b < B; b++) {
            cr_assert_eq(dnnl->k[s][b], blas->k[s][b], "stage %d image %zu", s, b);
            cr_expect_eq(memcmp(dnnl->kept[s][b], blas->kept[s][b], blas->k[s][b] * sizeof(int32_t)), 0,
                         "%s: stage %d image %zu keeps other tokens", tok_method_name(method), s, b);
        }
    cr_log_info("%s, batch %zu, %d threads: max|%s - openblas| / max|openblas| = %.3g", tok_method_name(method), B,
                threads, name, d / scale);
    sm_run_free(blas);
    sm_run_free(dnnl);
    free(images);
    unlink(path);
}

/* one thread, 3 images; one image on a team of 2 (rows or panels shared); 9 images on 2
 * threads (split) */
#define AGREE(name, method)                                                                          \
    Test(infer_gemm, name##_one_thread) { check_agree(method, 3, 1, TPS_GEMM_ONEDNN); }               \
    Test(infer_gemm, name##_team_of_two) { check_agree(method, 1, 2, TPS_GEMM_ONEDNN); }              \
    Test(infer_gemm, name##_split_batch) { check_agree(method, 9, 2, TPS_GEMM_ONEDNN); }              \
    Test(infer_gemm, name##_panel_one_thread) { check_agree(method, 3, 1, TPS_GEMM_PANEL); }          \
    Test(infer_gemm, name##_panel_team_of_two) { check_agree(method, 1, 2, TPS_GEMM_PANEL); }         \
    Test(infer_gemm, name##_panel_split_batch) { check_agree(method, 9, 2, TPS_GEMM_PANEL); }
AGREE(dense, TOK_NONE)
AGREE(dynamicvit, TOK_DYNAMICVIT)
AGREE(dtps, TOK_DTPS)
AGREE(evit, TOK_EVIT)
AGREE(etps, TOK_ETPS)

static bool cpu_flag(const char *flag) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return false;
    char line[8192], pat[64];
    snprintf(pat, sizeof pat, " %s ", flag);
    bool yes = false;
    while (!yes && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = ' ';
        yes = strncmp(line, "flags", 5) == 0 && strstr(line, pat);
    }
    fclose(f);
    return yes;
}

/* The default is the faster back-end for this CPU: panel where oneDNN's f32 kernel runs on
 * packed weights (AVX-512: avx512f, bw, vl, dq) and TPSINFER_MAX_ISA does not cap the panel
 * kernel, OpenBLAS on an AVX2-only CPU or with the ISA capped below AVX-512 (as in the *_avx2
 * ctest entries). */
Test(infer_gemm, default_is_the_faster_backend) {
    const char *cap = getenv("ONEDNN_MAX_CPU_ISA");
    const bool capped = cap && strncmp(cap, "AVX512", 6) != 0 && strncmp(cap, "ALL", 3) != 0;
    const bool avx512 = cpu_flag("avx512f") && cpu_flag("avx512bw") && cpu_flag("avx512vl") && cpu_flag("avx512dq");
    const bool have = tps_gemm_supported(TPS_GEMM_ONEDNN) == TPS_OK;
    unsetenv("TPSINFER_GEMM");
    const char *own_cap = getenv("TPSINFER_MAX_ISA");
    const bool own_capped = own_cap && !strcmp(own_cap, "avx2");
    const tps_gemm want = !have || !avx512 || capped ? TPS_GEMM_OPENBLAS : own_capped ? TPS_GEMM_ONEDNN : TPS_GEMM_PANEL;
    cr_expect_eq(tps_gemm_default(), want, "default %s, expected %s (oneDNN %s, AVX-512 %d, ONEDNN_MAX_CPU_ISA %s)",
                 tps_gemm_name(tps_gemm_default()), tps_gemm_name(want), have ? "built" : "absent", avx512,
                 cap ? cap : "unset");
    /* a model opened with AUTO runs on it */
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_gemm", "default.h5");
    sm_write_random_model(path, TOK_DTPS, 3);
    tps_model *m;
    cr_assert_eq(tps_model_open(path, &m), TPS_OK, "%s", tps_last_error());
    cr_expect_eq(tps_model_gemm(m), want);
    tps_model_close(m);
    unlink(path);
}

/* With the ISA capped at AVX2 inside this process (oneDNN reads it at first use; Criterion
 * runs each test in its own process) the default is OpenBLAS, and an explicit oneDNN runs
 * (its gemm:jit kernel) and agrees with it. */
Test(infer_gemm, avx2_cap_defaults_to_openblas) {
    setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
    unsetenv("TPSINFER_GEMM");
    cr_expect_eq(tps_gemm_default(), TPS_GEMM_OPENBLAS, "default %s", tps_gemm_name(tps_gemm_default()));
    check_agree(TOK_DTPS, 1, 2, TPS_GEMM_ONEDNN);
    cr_expect_eq(tps_gemm_supported(TPS_GEMM_PANEL), TPS_ERR_UNSUPPORTED, "panel without AVX-512");
    cr_expect(strstr(tps_last_error(), "AVX-512"), "message: %s", tps_last_error());
}

/* TPSINFER_GEMM overrides the automatic choice, not an explicit one. */
Test(infer_gemm, environment_overrides_auto) {
    setenv("TPSINFER_GEMM", "openblas", 1);
    cr_expect_eq(tps_gemm_default(), TPS_GEMM_OPENBLAS);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_gemm", "env.h5");
    sm_write_random_model(path, TOK_NONE, 4);
    tps_model *m;
    cr_assert_eq(tps_model_open(path, &m), TPS_OK, "%s", tps_last_error());
    cr_expect_eq(tps_model_gemm(m), TPS_GEMM_OPENBLAS);
    tps_model_close(m);
    if (tps_gemm_supported(TPS_GEMM_ONEDNN) == TPS_OK) {
        tps_open_options o = {.gemm = TPS_GEMM_ONEDNN};
        cr_assert_eq(tps_model_open_ex(path, &o, &m), TPS_OK, "%s", tps_last_error());
        cr_expect_eq(tps_model_gemm(m), TPS_GEMM_ONEDNN);
        tps_model_close(m);
        setenv("TPSINFER_GEMM", "onednn", 1);
        cr_expect_eq(tps_gemm_default(), TPS_GEMM_ONEDNN);
    }
    if (tps_gemm_supported(TPS_GEMM_PANEL) == TPS_OK) {
        setenv("TPSINFER_GEMM", "panel", 1);
        cr_expect_eq(tps_gemm_default(), TPS_GEMM_PANEL);
    }
    unlink(path);
}

Test(infer_gemm, unknown_backend_is_refused) {
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_gemm", "bad.h5");
    sm_write_random_model(path, TOK_NONE, 5);
    tps_open_options o = {.gemm = (tps_gemm)7};
    tps_model *m = (tps_model *)1;
    cr_expect_eq(tps_model_open_ex(path, &o, &m), TPS_ERR_ARG);
    cr_expect_null(m);
    cr_expect(strstr(tps_last_error(), "GEMM back-end 7"), "message: %s", tps_last_error());
    cr_expect_eq(tps_gemm_supported((tps_gemm)7), TPS_ERR_ARG);
    cr_expect_str_eq(tps_gemm_name(TPS_GEMM_ONEDNN), "onednn");
    cr_expect_str_eq(tps_gemm_name(TPS_GEMM_OPENBLAS), "openblas");
    cr_expect_str_eq(tps_gemm_name(TPS_GEMM_AUTO), "auto");
    cr_expect_str_eq(tps_gemm_name(TPS_GEMM_PANEL), "panel");
    /* names and values, one table both ways */
    for (tps_gemm g = TPS_GEMM_AUTO; g <= TPS_GEMM_PANEL; g++) {
        tps_gemm back = (tps_gemm)-1;
        cr_expect_eq(tps_gemm_from_name(tps_gemm_name(g), &back), TPS_OK);
        cr_expect_eq(back, g);
    }
    cr_expect_eq(tps_gemm_from_name("mkl", NULL), TPS_ERR_ARG);
    cr_expect(strstr(tps_last_error(), "'mkl'") && strstr(tps_last_error(), "panel"), "message: %s", tps_last_error());
    unlink(path);
}

