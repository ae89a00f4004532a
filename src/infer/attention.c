/* One (image, head) pair's attention over a range of its query rows, two ways:
 *   GEMM:  two cblas_sgemm calls with the [rows, n] scores matrix between them;
 *   fused: per tile of query rows, the scores, the softmax and the weighted sum of the values
 *          while the tile's scores are in L1; the head's keys (transposed) and values are
 *          packed once per call into the caller's scratch and stay in L2.
 * Both compute S = scale q k^T (+ key_bias), A = softmax(S) with the shared row rule
 * (src/common/rows.h, as the training op), out = A v; they differ in the summation order of
 * the two products only. tps_open_options.attention chooses (tps_infer.h). */
#include <cblas.h>
#include <immintrin.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/rows.h"
#include "src/infer/internal.h"

/* ---- the fused kernel's tiles, once per instruction set (attention_tile.h) ---------------- */

#define AT_SUFFIX _avx512
#define AT_TARGET __attribute__((target("avx512f")))
#define AT_VEC __m512
#define AT_W 16
#define AT_R 8
#define AT_ZERO() _mm512_setzero_ps()
#define AT_LOAD(p) _mm512_loadu_ps(p)
#define AT_STORE(p, v) _mm512_storeu_ps(p, v)
#define AT_SET1(x) _mm512_set1_ps(x)
#define AT_FMA(a, b, c) _mm512_fmadd_ps(a, b, c)
#define AT_MUL(a, b) _mm512_mul_ps(a, b)
#define AT_ADD(a, b) _mm512_add_ps(a, b)
#include "src/infer/attention_tile.h"

#define AT_SUFFIX _avx2
#define AT_TARGET __attribute__((target("avx2,fma")))
#define AT_VEC __m256
#define AT_W 8
#define AT_R 6
#define AT_ZERO() _mm256_setzero_ps()
#define AT_LOAD(p) _mm256_loadu_ps(p)
#define AT_STORE(p, v) _mm256_storeu_ps(p, v)
#define AT_SET1(x) _mm256_set1_ps(x)
#define AT_FMA(a, b, c) _mm256_fmadd_ps(a, b, c)
#define AT_MUL(a, b) _mm256_mul_ps(a, b)
#define AT_ADD(a, b) _mm256_add_ps(a, b)
#include "src/infer/attention_tile.h"

#define TILE_MAX_ROWS 8 /* the largest AT_R above */
#define PAD 32          /* keys and value columns are padded to a multiple of both ISAs' 2 AT_W */

typedef void (*scores_fn)(const float *q, size_t ldq, const float *kt, size_t dq, size_t np, float scale,
                          const float *kb, float *S);
typedef void (*values_fn)(const float *P, size_t ldp, size_t n, const float *vp, size_t dvp, float *out, size_t ldo,
                          size_t dv);

/* kt [dq, np] = k [n, dq] (row stride W) transposed, in blocks of 16 x 16 keys and channels
 * so that both sides stay in a few cache lines (element by element, the strided stores were
 * most of the driver's time at batch 32). */
static void transpose_keys(const float *k, size_t W, size_t n, size_t dq, float *kt, size_t np) {
    enum { BLK = 16 };
    for (size_t j0 = 0; j0 < n; j0 += BLK) {
        const size_t j1 = j0 + BLK < n ? j0 + BLK : n;
        for (size_t d0 = 0; d0 < dq; d0 += BLK) {
            const size_t d1 = d0 + BLK < dq ? d0 + BLK : dq;
            for (size_t d = d0; d < d1; d++)
                for (size_t j = j0; j < j1; j++) kt[d * np + j] = k[j * W + d];
        }
    }
}

/* transpose_keys with each whole 16 x 16 block in registers (unpack by 32 and 64 bits, then
 * two rounds of 128-bit lane shuffles); keys past n read as zero, which lands in kt's zero
 * padding (j0 + 16 <= np). Channels past the last whole 16 go element by element. The same
 * copy, bit for bit. */
__attribute__((target("avx512f"))) static void transpose_keys_avx512(const float *k, size_t W, size_t n, size_t dq,
                                                                     float *kt, size_t np) {
    const size_t dw = dq / 16 * 16;
    for (size_t j0 = 0; j0 < n; j0 += 16) {
        for (size_t d0 = 0; d0 < dw; d0 += 16) {
            __m512 r[16], t[16], u[16];
            for (size_t i = 0; i < 16; i++)
                r[i] = j0 + i < n ? _mm512_loadu_ps(k + (j0 + i) * W + d0) : _mm512_setzero_ps();
            for (size_t m = 0; m < 16; m += 2) { /* t[m]: channels 4L, 4L+1 of rows m, m+1; t[m+1]: 4L+2, 4L+3 */
                t[m] = _mm512_unpacklo_ps(r[m], r[m + 1]);
                t[m + 1] = _mm512_unpackhi_ps(r[m], r[m + 1]);
            }
            for (size_t g = 0; g < 16; g += 4) { /* u[g + c]: channel 4L + c of rows g .. g+3 */
                u[g] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
                u[g + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g]), _mm512_castps_pd(t[g + 2])));
                u[g + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
                u[g + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t[g + 1]), _mm512_castps_pd(t[g + 3])));
            }
            for (size_t c = 0; c < 4; c++) { /* channel 4L + c: lane L of u[c], u[4+c], u[8+c], u[12+c] */
                const __m512 x0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x44), x1 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xEE);
                const __m512 y0 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x44);
                const __m512 y1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xEE);
                float *o = kt + (d0 + c) * np + j0;
                _mm512_storeu_ps(o, _mm512_shuffle_f32x4(x0, y0, 0x88));           /* L = 0 */
                _mm512_storeu_ps(o + 4 * np, _mm512_shuffle_f32x4(x0, y0, 0xDD));  /* L = 1 */
                _mm512_storeu_ps(o + 8 * np, _mm512_shuffle_f32x4(x1, y1, 0x88));  /* L = 2 */
                _mm512_storeu_ps(o + 12 * np, _mm512_shuffle_f32x4(x1, y1, 0xDD)); /* L = 3 */
            }
        }
        const size_t j1 = j0 + 16 < n ? j0 + 16 : n;
        for (size_t d = dw; d < dq; d++)
            for (size_t j = j0; j < j1; j++) kt[d * np + j] = k[j * W + d];
    }
}

/* softmax of the first n values of each of rows rows of S (row stride np) */
typedef void (*softmax_fn)(float *S, size_t rows, size_t np, size_t n);
/* kt [dq, np] = k [n, dq] (row stride W) transposed */
typedef void (*transpose_fn)(const float *k, size_t W, size_t n, size_t dq, float *kt, size_t np);

/* row_softmax (src/common/rows.h) with its lanes as a vector's: the same exponentials and sums
 * in the same order, so the same bits (tests/test_infer_attention.c), the last partial vector
 * under a mask where row_softmax runs a scalar loop (most of its time at n = 197), and the
 * max, exact in any order, in two chains of vectors so that it waits on fewer maxima. */
__attribute__((target("avx512f"))) static void softmax_avx512(float *S, size_t rows, size_t np, size_t n) {
    const size_t full = n / ROW_LANES * ROW_LANES;
    const __mmask16 tail = (__mmask16)((1u << (n - full)) - 1u);
    for (size_t r = 0; r < rows; r++) {
        float *row = S + r * np;
        __m512 mx = _mm512_set1_ps(row[0]), mx2 = mx;
        size_t jm = 0;
        for (; jm + 2 * ROW_LANES <= full; jm += 2 * ROW_LANES) {
            mx = _mm512_max_ps(_mm512_loadu_ps(row + jm), mx); /* x > m ? x : m */
            mx2 = _mm512_max_ps(_mm512_loadu_ps(row + jm + ROW_LANES), mx2);
        }
        if (jm < full) mx = _mm512_max_ps(_mm512_loadu_ps(row + jm), mx);
        mx = _mm512_max_ps(mx2, mx);
        mx = _mm512_mask_max_ps(mx, tail, _mm512_maskz_loadu_ps(tail, row + full), mx);
        const __m512 vm = _mm512_set1_ps(_mm512_reduce_max_ps(mx));
        __m512 sum = _mm512_setzero_ps();
        for (size_t j = 0; j < full; j += ROW_LANES) {
            const __m512 e = vm_expf_nonpos_avx512(_mm512_sub_ps(_mm512_loadu_ps(row + j), vm));
            _mm512_storeu_ps(row + j, e);
            sum = _mm512_add_ps(sum, e);
        }
        if (tail) {
            const __m512 e = vm_expf_nonpos_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(tail, row + full), vm));
            _mm512_mask_storeu_ps(row + full, tail, e);
            sum = _mm512_mask_add_ps(sum, tail, sum, e);
        }
        /* row_lanes_sum's tree: lane k += lane k + 8, then + 4, + 2, + 1 */
        const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(sum),
                                        _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(sum), 1)));
        const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
        const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
        const __m128 s1 = _mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1));
        const __m512 inv = _mm512_set1_ps(1.0f / _mm_cvtss_f32(s1));
        for (size_t j = 0; j < full; j += ROW_LANES) _mm512_storeu_ps(row + j, _mm512_mul_ps(_mm512_loadu_ps(row + j), inv));
        if (tail) _mm512_mask_storeu_ps(row + full, tail, _mm512_mul_ps(_mm512_maskz_loadu_ps(tail, row + full), inv));
    }
}

static void softmax_rowwise(float *S, size_t rows, size_t np, size_t n) {
    for (size_t r = 0; r < rows; r++) row_softmax(S + r * np, n);
}

typedef struct tile_set {
    size_t rows;
    scores_fn scores_tile, scores_row;
    values_fn values_tile, values_row;
    softmax_fn softmax;
    transpose_fn transpose;
} tile_set;

static const tile_set tiles_avx512 = {at_rows_avx512,        at_scores_tile_avx512, at_scores_row_avx512,
                                      at_values_tile_avx512, at_values_row_avx512,  softmax_avx512, transpose_keys_avx512};
static const tile_set tiles_avx2 = {at_rows_avx2,        at_scores_tile_avx2, at_scores_row_avx2,
                                    at_values_tile_avx2, at_values_row_avx2,  softmax_rowwise, transpose_keys};

static size_t round_up(size_t x, size_t m) { return (x + m - 1) / m * m; }

size_t ti_attention_scratch_floats(size_t n, size_t dq, size_t dv) {
    const size_t np = round_up(n, PAD), dvp = round_up(dv, PAD);
    return dq * np + n * dvp + np + TILE_MAX_ROWS * np;
}

ti_attn ti_attention_best(void) {
    if (ti_avx512_allowed()) return TI_ATTN_AVX512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return TI_ATTN_AVX2;
    return TI_ATTN_GEMM;
}

/* The GEMM way (see ti_attention_rows): scores [i1-i0, n] in scratch. */
static void gemm_rows(const float *qkv, const ti_heads *g, size_t n, size_t i0, size_t i1, size_t h, float *scores,
                      float *out, float *cls_row, const float *key_bias) {
    const size_t Q = g->H * g->dq, V = g->H * g->dv, W = 2 * Q + V, nq = i1 - i0;
    const float *q = qkv + i0 * W + h * g->dq, *k = qkv + Q + h * g->dq, *v = qkv + 2 * Q + h * g->dv;
    const int in = (int)n, iq = (int)nq, idq = (int)g->dq, idv = (int)g->dv, iV = (int)V, iW = (int)W;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, iq, in, idq, g->scale, q, iW, k, iW, 0.0f, scores, in);
    if (key_bias)
        for (size_t i = 0; i < nq; i++) {
            float *row = scores + i * n;
            #pragma omp simd
            for (size_t j = 0; j < n; j++) row[j] += key_bias[j];
        }
    for (size_t i = 0; i < nq; i++) row_softmax(scores + i * n, n);
    if (cls_row)
        for (size_t j = 0; j < n; j++) cls_row[j] = scores[j];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, iq, idv, in, 1.0f, scores, in, v, iW, 0.0f,
                out + i0 * V + h * g->dv, iV);
}

/* The fused way. scratch (ti_attention_scratch_floats): kt [dq, np] the keys transposed, vp
 * [n, dvp] the values, kb [np] the key bias, S [tile rows, np] one tile's scores; np, dvp are
 * n and dv rounded up to PAD, the padding zero. */
static void fused_rows(const tile_set *ts, const float *qkv, const ti_heads *g, size_t n, size_t i0, size_t i1,
                       size_t h, float *scratch, float *out, float *cls_row, const float *key_bias) {
    const size_t dq = g->dq, dv = g->dv, Q = g->H * dq, V = g->H * dv, W = 2 * Q + V;
    const size_t np = round_up(n, PAD), dvp = round_up(dv, PAD);
    float *kt = scratch, *vp = kt + dq * np, *kb = vp + n * dvp, *S = kb + np;
    const float *k = qkv + Q + h * dq, *v = qkv + 2 * Q + h * dv;
    ts->transpose(k, W, n, dq, kt, np);
    for (size_t d = 0; d < dq; d++) memset(kt + d * np + n, 0, (np - n) * sizeof(float));
    for (size_t j = 0; j < n; j++) {
        memcpy(vp + j * dvp, v + j * W, dv * sizeof(float));
        memset(vp + j * dvp + dv, 0, (dvp - dv) * sizeof(float));
    }
    if (key_bias) {
        memcpy(kb, key_bias, n * sizeof(float));
        memset(kb + n, 0, (np - n) * sizeof(float));
    }
    for (size_t i = i0; i < i1;) {
        const bool full = i1 - i >= ts->rows;
        const size_t rows = full ? ts->rows : 1;
        const float *q = qkv + i * W + h * dq;
        (full ? ts->scores_tile : ts->scores_row)(q, W, kt, dq, np, g->scale, key_bias ? kb : NULL, S);
        ts->softmax(S, rows, np, n);
        if (cls_row && i == 0) memcpy(cls_row, S, n * sizeof(float));
        (full ? ts->values_tile : ts->values_row)(S, np, n, vp, dvp, out + i * V + h * dv, V, dv);
        i += rows;
    }
}

/* One (image, head) pair, query rows i0 .. i1-1 of the image's n. qkv: the image's n rows of
 * [n, 2Q+V] (Q = H dq, V = H dv); out: its n rows of [n, V], of which rows i0 .. i1-1 are
 * written:
 *   S = q k^T D^-0.5 (+ key_bias) [i1-i0,n];  A = softmax(S);  out[i0:i1, h*dv : h*dv+dv] = A v
 * key_bias [n] (may be NULL): ToMe's proportional attention, log size of each key token, added
 * to every row after the scaling, as ag_attention_sized.
 * (D the dense head size: for an unpruned block dq = dv = D and 2Q+V = 3C.)
 * cls_row (may be NULL; needs i0 = 0) receives A's first row (EViT's cls attention of this
 * head). The head slices are read in place (leading dimension 2Q+V); scratch holds the larger
 * of (i1-i0) n and ti_attention_scratch_floats(n, dq, dv) floats. A team splits an image's
 * queries among its members; each row's result does not depend on the split. g->kernel
 * chooses the way. */
void ti_attention_rows(const float *qkv, const ti_heads *g, size_t n, size_t i0, size_t i1, size_t h, float *scratch,
                       float *out, float *cls_row, const float *key_bias) {
    if (i1 <= i0) return;
    if (g->kernel == TI_ATTN_AVX512) fused_rows(&tiles_avx512, qkv, g, n, i0, i1, h, scratch, out, cls_row, key_bias);
    else if (g->kernel == TI_ATTN_AVX2) fused_rows(&tiles_avx2, qkv, g, n, i0, i1, h, scratch, out, cls_row, key_bias);
    else gemm_rows(qkv, g, n, i0, i1, h, scratch, out, cls_row, key_bias);
}
