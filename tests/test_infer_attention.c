/* libtpsinfer's attention kernels (src/infer/attention.c, compiled into this test): the GEMM
 * way (two cblas_sgemm calls around the softmax) and the fused kernel in its AVX2 and AVX-512
 * forms (those the CPU has), on one (image, head) pair of a packed qkv matrix.
 *
 * Reference: the same attention in double (scores, exp, sums, weighted sum), on the same float
 * inputs. Inputs are uniform in [-1, 1], so with scale D^-0.5 the scores stay below sqrt(dq)
 * and every output is a convex combination of values of magnitude <= 1.
 * Tolerance: max |kernel - reference| <= 5e-7 over every written output and cls row. A score
 * sums dq <= 64 float products of magnitude <= 1 (relative rounding 6e-8 each) and is scaled by
 * 1/8: off by well under 5e-7 absolute, which moves each softmax weight by that much relatively;
 * vm_expf adds 2.5e-7 relative, and the weighted sum of values of magnitude <= 1 keeps the
 * error at that scale (the kernels reach 1e-7). The fused kernel and the GEMM way differ only in
 * summation order and are held to the same bound against each other. Dropping one key, a scale
 * off by a factor 1 + 1e-4, a missing key bias or a cls row taken from the wrong tile row each
 * fail it.
 * Through the library: logits with the fused kernel against those with GEMM on the small test
 * model, max|fused - gemm| <= 1e-5 * max|gemm| (tests/test_infer.c's library-vs-framework
 * tolerance; the kernels differ by float rounding only), and identical kept tokens. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <omp.h>
#include <unistd.h>

#include "src/infer/internal.h"
#include "support/fixture.h"
#include "support/small_model.h"

#define TOL 5e-7

typedef struct shape {
    size_t n, H, dq, dv, i0, i1, h;
    bool bias, cls;
} shape;

static float uniform(unsigned *s) {
    *s = *s * 1103515245u + 12345u;
    return (float)((*s >> 8) & 0xFFFF) / 32768.0f - 1.0f;
}

/* out rows i0 .. i1-1 of head h in double; cls [n] the first row's weights (i0 = 0) */
static void reference(const float *qkv, const shape *s, float scale, const float *kb, double *out, double *cls) {
    const size_t Q = s->H * s->dq, V = s->H * s->dv, W = 2 * Q + V;
    double *a = malloc(s->n * sizeof *a);
    for (size_t i = s->i0; i < s->i1; i++) {
        double mx = -INFINITY, sum = 0.0;
        for (size_t j = 0; j < s->n; j++) {
            double d = 0.0;
            for (size_t c = 0; c < s->dq; c++)
                d += (double)qkv[i * W + s->h * s->dq + c] * (double)qkv[j * W + Q + s->h * s->dq + c];
            a[j] = (double)scale * d + (kb ? (double)kb[j] : 0.0);
            mx = a[j] > mx ? a[j] : mx;
        }
        for (size_t j = 0; j < s->n; j++) sum += a[j] = exp(a[j] - mx);
        for (size_t j = 0; j < s->n; j++) a[j] /= sum;
        if (i == 0 && cls) memcpy(cls, a, s->n * sizeof *a);
        for (size_t c = 0; c < s->dv; c++) {
            double o = 0.0;
            for (size_t j = 0; j < s->n; j++) o += a[j] * (double)qkv[j * W + 2 * Q + s->h * s->dv + c];
            out[(i - s->i0) * s->dv + c] = o;
        }
    }
    free(a);
}

/* max |kernel - reference| over the rows and head written (and the cls row); also checks that
 * nothing outside them was touched */
static double run_one(ti_attn kernel, const shape *s) {
    const size_t Q = s->H * s->dq, V = s->H * s->dv, W = 2 * Q + V, n = s->n;
    float *qkv = malloc(n * W * sizeof(float)), *out = malloc(n * V * sizeof(float)), *kb = malloc(n * sizeof(float));
    float *cls = malloc(n * sizeof(float));
    const size_t room = ti_attention_scratch_floats(n, s->dq, s->dv) > n * n ? ti_attention_scratch_floats(n, s->dq, s->dv)
                                                                              : n * n;
    float *scratch = aligned_alloc(64, (room * sizeof(float) + 63) / 64 * 64);
    double *ref = malloc((s->i1 - s->i0) * s->dv * sizeof(double)), *rcls = malloc(n * sizeof(double));
    cr_assert(qkv && out && kb && cls && scratch && ref && rcls);
    unsigned seed = 7;
    for (size_t i = 0; i < n * W; i++) qkv[i] = uniform(&seed);
    for (size_t j = 0; j < n; j++) kb[j] = logf(1.0f + (float)(j % 5)); /* log token sizes 1..5 */
    for (size_t i = 0; i < n * V; i++) out[i] = 1234.0f;
    const ti_heads g = {.H = s->H, .dq = s->dq, .dv = s->dv, .scale = (float)(1.0 / sqrt(64.0)), .kernel = kernel};
    ti_attention_rows(qkv, &g, n, s->i0, s->i1, s->h, scratch, out, s->cls ? cls : NULL, s->bias ? kb : NULL);
    reference(qkv, s, g.scale, s->bias ? kb : NULL, ref, rcls);
    double err = 0.0;
    for (size_t i = 0; i < n; i++)
        for (size_t c = 0; c < V; c++) {
            const bool mine = i >= s->i0 && i < s->i1 && c >= s->h * s->dv && c < (s->h + 1) * s->dv;
            const float o = out[i * V + c];
            if (!mine) {
                cr_assert_eq(o, 1234.0f, "row %zu column %zu outside the head's rows was written", i, c);
                continue;
            }
            const double e = fabs((double)o - ref[(i - s->i0) * s->dv + c - s->h * s->dv]);
            err = e > err || isnan(e) ? e : err;
        }
    for (size_t j = 0; s->cls && j < n; j++) {
        const double e = fabs((double)cls[j] - rcls[j]);
        err = e > err || isnan(e) ? e : err;
    }
    free(qkv), free(out), free(kb), free(cls), free(scratch), free(ref), free(rcls);
    return err;
}

static const shape shapes[] = {
    {197, 6, 64, 64, 0, 197, 2, false, true},  /* DeiT-S dense, whole image, cls row */
    {138, 6, 64, 64, 0, 69, 5, false, true},   /* a pruned stage, a team member's first half */
    {138, 6, 64, 64, 69, 138, 0, false, false}, /* the second half */
    {60, 4, 24, 40, 3, 58, 3, true, false},    /* channel-pruned widths dq != dv, ToMe's key bias */
    {17, 3, 48, 16, 0, 17, 1, true, true},     /* a tiny model: n below one tile of keys */
    {5, 2, 64, 64, 0, 1, 1, false, true},      /* one query row (the one-row tiles) */
};

static bool have(ti_attn k) {
    __builtin_cpu_init();
    if (k == TI_ATTN_AVX512) return __builtin_cpu_supports("avx512f");
    if (k == TI_ATTN_AVX2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    return true;
}

static void check_kernel(ti_attn k, const char *name) {
    if (!have(k)) {
        cr_log_warn("%s: this CPU cannot run it; skipped", name);
        return;
    }
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const double err = run_one(k, &shapes[i]);
        cr_expect(err <= TOL, "%s, shape %zu (n %zu, dq %zu, dv %zu, rows %zu..%zu): max error %.3g > %.1g", name, i,
                  shapes[i].n, shapes[i].dq, shapes[i].dv, shapes[i].i0, shapes[i].i1, err, TOL);
    }
}

Test(infer_attention, gemm_matches_double_reference) { check_kernel(TI_ATTN_GEMM, "gemm"); }
Test(infer_attention, fused_avx2_matches_double_reference) { check_kernel(TI_ATTN_AVX2, "fused avx2"); }
Test(infer_attention, fused_avx512_matches_double_reference) { check_kernel(TI_ATTN_AVX512, "fused avx512"); }

/* The fused kernel against the GEMM way on the same inputs (same bound: summation order only). */
Test(infer_attention, fused_matches_gemm) {
    const shape s = {197, 6, 64, 64, 0, 197, 4, true, true};
    const size_t Q = s.H * s.dq, V = s.H * s.dv, W = 2 * Q + V, n = s.n;
    float *qkv = malloc(n * W * sizeof(float)), *kb = malloc(n * sizeof(float));
    float *out[2] = {calloc(n * V, sizeof(float)), calloc(n * V, sizeof(float))};
    float *cls[2] = {malloc(n * sizeof(float)), malloc(n * sizeof(float))};
    float *scratch = aligned_alloc(64, 4 << 20);
    cr_assert(qkv && kb && out[0] && out[1] && cls[0] && cls[1] && scratch);
    unsigned seed = 11;
    for (size_t i = 0; i < n * W; i++) qkv[i] = uniform(&seed);
    for (size_t j = 0; j < n; j++) kb[j] = logf(1.0f + (float)(j % 3));
    const ti_attn fused = ti_attention_best();
    const ti_attn kinds[2] = {TI_ATTN_GEMM, fused};
    for (int k = 0; k < 2; k++) {
        const ti_heads g = {.H = s.H, .dq = s.dq, .dv = s.dv, .scale = 0.125f, .kernel = kinds[k]};
        for (size_t h = 0; h < s.H; h++) ti_attention_rows(qkv, &g, n, 0, n, h, scratch, out[k], h == s.h ? cls[k] : NULL, kb);
    }
    double err = 0.0;
    for (size_t i = 0; i < n * V; i++) err = fmax(err, fabs((double)out[0][i] - (double)out[1][i]));
    for (size_t j = 0; j < n; j++) err = fmax(err, fabs((double)cls[0][j] - (double)cls[1][j]));
    cr_expect(err <= TOL, "fused (%d) against gemm: max difference %.3g > %.1g", (int)fused, err, TOL);
    free(qkv), free(kb), free(out[0]), free(out[1]), free(cls[0]), free(cls[1]), free(scratch);
}

static void check_lib(tok_method method, int tome_r, size_t B, int threads) {
    omp_set_num_threads(threads);
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_attention", "agree.h5");
    sm_write_random_model(path, method, 21 + (uint64_t)method);
    const vit_config small = sm_config();
    float *images = sm_random_images(B, &small, 3);
    cr_assert_not_null(images);
    sm_run *gemm = sm_run_model(path, &(tps_open_options){.attention = TPS_ATTENTION_GEMM, .tome_r = tome_r}, images, B, 1);
    sm_run *fused = sm_run_model(path, &(tps_open_options){.attention = TPS_ATTENTION_FUSED, .tome_r = tome_r}, images, B, 1);
    const double scale = fx_max_abs(gemm->logits, B * 10), d = fx_max_diff(fused->logits, gemm->logits, B * 10);
    cr_expect(d <= 1e-5 * scale, "%s (tome_r %d), batch %zu, %d threads: fused logits differ from gemm's by %g (scale %g)",
              tok_method_name(method), tome_r, B, threads, d, scale);
    /* That the fused kernel ran is sm_run_model's check (tps_model_attention); the logits may
     * agree to the bit: where the sgemm kernel also adds its products in key order, the two ways
     * differ in no rounding at all. */
    cr_assert_eq(fused->n_stages, gemm->n_stages);
    for (int s = 0; s < gemm->n_stages; s++)
        for (size_t b = 0; b < B; b++) {
            cr_assert_eq(fused->k[s][b], gemm->k[s][b], "stage %d image %zu", s, b);
            cr_expect_eq(memcmp(fused->kept[s][b], gemm->kept[s][b], gemm->k[s][b] * sizeof(int32_t)), 0,
                         "%s: stage %d image %zu keeps other tokens", tok_method_name(method), s, b);
        }
    sm_run_free(gemm), sm_run_free(fused);
    free(images);
    unlink(path);
}

/* one thread, 3 images; one image on a team of 2 (query rows shared); 9 images on 2 threads */
#define AGREE(name, method, r)                                                       \
    Test(infer_attention, name##_one_thread) { check_lib(method, r, 3, 1); }        \
    Test(infer_attention, name##_team_of_two) { check_lib(method, r, 1, 2); }       \
    Test(infer_attention, name##_split_batch) { check_lib(method, r, 9, 2); }
AGREE(dense, TOK_NONE, 0)
AGREE(dtps, TOK_DTPS, 0)
AGREE(evit, TOK_EVIT, 0)
AGREE(atme, TOK_ATME, 0)
AGREE(tome_r8, TOK_NONE, 8)

Test(infer_attention, unknown_kernel_is_refused_and_names_resolve) {
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_attention", "bad.h5");
    sm_write_random_model(path, TOK_NONE, 5);
    tps_open_options o = {.attention = (tps_attention)9};
    tps_model *m = (tps_model *)1;
    cr_expect_eq(tps_model_open_ex(path, &o, &m), TPS_ERR_ARG);
    cr_expect_null(m);
    cr_expect(strstr(tps_last_error(), "attention kernel 9"), "message: %s", tps_last_error());
    cr_expect_str_eq(tps_attention_name(TPS_ATTENTION_GEMM), "gemm");
    const ti_attn best = ti_attention_best();
    cr_expect_str_eq(tps_attention_name(TPS_ATTENTION_FUSED),
                     best == TI_ATTN_AVX512 ? "fused avx512" : best == TI_ATTN_AVX2 ? "fused avx2" : "gemm");
    unlink(path);
}

/* The fused kernel's AVX-512 and AVX2 forms compute every score and every weighted sum with
 * the same operations in the same order (one FMA per key or channel, in order), and their
 * softmaxes are row_softmax's rule (AVX2 calls it; AVX-512 runs it on vector lanes, the last
 * partial vector masked). So their outputs must agree to the bit: any n from 1 to 70 (every
 * tail length, none and whole vectors among them) and 197, with and without a key bias. */
Test(infer_attention, fused_avx512_equals_avx2_to_the_bit) {
    if (!have(TI_ATTN_AVX512) || !have(TI_ATTN_AVX2)) {
        cr_log_warn("this CPU lacks AVX-512F or AVX2; skipped");
        return;
    }
    const size_t H = 2, dq = 24, dv = 40, Q = H * dq, V = H * dv, W = 2 * Q + V, nmax = 197;
    float *qkv = malloc(nmax * W * sizeof(float)), *kb = malloc(nmax * sizeof(float));
    float *out[2] = {malloc(nmax * V * sizeof(float)), malloc(nmax * V * sizeof(float))};
    float *cls[2] = {malloc(nmax * sizeof(float)), malloc(nmax * sizeof(float))};
    float *scratch = aligned_alloc(64, 4 << 20);
    cr_assert(qkv && kb && out[0] && out[1] && cls[0] && cls[1] && scratch);
    unsigned seed = 23;
    for (size_t i = 0; i < nmax * W; i++) qkv[i] = 4.0f * uniform(&seed); /* scores up to ~20: a wide softmax */
    for (size_t j = 0; j < nmax; j++) kb[j] = logf(1.0f + (float)(j % 7));
    size_t checked = 0;
    for (size_t n = 1; n <= nmax; n = n < 70 ? n + 1 : nmax + (n == nmax))
        for (int bias = 0; bias < 2; bias++) {
            const ti_attn kinds[2] = {TI_ATTN_AVX2, TI_ATTN_AVX512};
            for (int k = 0; k < 2; k++) {
                memset(out[k], 0, nmax * V * sizeof(float));
                const ti_heads g = {.H = H, .dq = dq, .dv = dv, .scale = 0.2f, .kernel = kinds[k]};
                for (size_t h = 0; h < H; h++)
                    ti_attention_rows(qkv, &g, n, 0, n, h, scratch, out[k], h == 1 ? cls[k] : NULL, bias ? kb : NULL);
            }
            cr_assert_eq(memcmp(out[0], out[1], n * V * sizeof(float)), 0, "n %zu, bias %d: outputs differ", n, bias);
            cr_assert_eq(memcmp(cls[0], cls[1], n * sizeof(float)), 0, "n %zu, bias %d: cls rows differ", n, bias);
            checked++;
        }
    cr_assert_eq(checked, 2 * 71);
    free(qkv), free(kb), free(out[0]), free(out[1]), free(cls[0]), free(cls[1]), free(scratch);
}
