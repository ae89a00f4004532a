/* The two tiles of the fused attention kernel (attention.c), written once and compiled once per
 * instruction set: attention.c includes this file after defining
 *   AT_SUFFIX  the suffix of the functions (_avx512, _avx2)
 *   AT_TARGET  their __attribute__((target(...)))
 *   AT_VEC, AT_W  the vector type and its float lanes
 *   AT_R       query rows per tile (AT_R x 2 accumulators stay in registers)
 *   AT_ZERO() AT_LOAD(p) AT_STORE(p, v) AT_SET1(x) AT_FMA(a, b, c) = a b + c, AT_MUL, AT_ADD
 * Both tiles take rows = AT_R or 1 (a compile-time constant once inlined into the wrappers).
 * The file undefines these at its end, so the next instruction set can define them afresh. */

#define AT_CAT_(a, b) a##b
#define AT_CAT(a, b) AT_CAT_(a, b)
#define AT_FN(name) AT_CAT(name, AT_SUFFIX)

/* S [rows, np] = scale (q kt) (+ kb): q [rows, dq] at row stride ldq, kt [dq, np] the head's keys
 * transposed, kb [np] the key bias (NULL: none); np a multiple of 2 AT_W. The scale multiplies
 * the finished dot product and the bias is added after, as sgemm's alpha and the GEMM path's
 * bias pass do. */
AT_TARGET static inline __attribute__((always_inline)) void AT_FN(at_scores_body)(const size_t rows, const float *q,
                                                                                 size_t ldq, const float *kt, size_t dq,
                                                                                 size_t np, float scale,
                                                                                 const float *kb, float *S) {
    const AT_VEC vs = AT_SET1(scale);
    for (size_t j = 0; j < np; j += 2 * AT_W) {
        AT_VEC acc[AT_R][2];
        #pragma GCC unroll 8
        for (size_t r = 0; r < rows; r++) acc[r][0] = acc[r][1] = AT_ZERO();
        for (size_t d = 0; d < dq; d++) {
            const AT_VEC k0 = AT_LOAD(kt + d * np + j), k1 = AT_LOAD(kt + d * np + j + AT_W);
            #pragma GCC unroll 8
            for (size_t r = 0; r < rows; r++) {
                const AT_VEC qr = AT_SET1(q[r * ldq + d]);
                acc[r][0] = AT_FMA(qr, k0, acc[r][0]);
                acc[r][1] = AT_FMA(qr, k1, acc[r][1]);
            }
        }
        #pragma GCC unroll 8
        for (size_t r = 0; r < rows; r++) {
            AT_VEC s0 = AT_MUL(acc[r][0], vs), s1 = AT_MUL(acc[r][1], vs);
            if (kb) s0 = AT_ADD(s0, AT_LOAD(kb + j)), s1 = AT_ADD(s1, AT_LOAD(kb + j + AT_W));
            AT_STORE(S + r * np + j, s0);
            AT_STORE(S + r * np + j + AT_W, s1);
        }
    }
}

/* out [rows, dv] (row stride ldo) = P [rows, n] (row stride ldp) vp [n, dvp]: vp the head's
 * values, each row zero-padded to dvp, a multiple of 2 AT_W. Columns past dv are computed in
 * registers and not stored. */
AT_TARGET static inline __attribute__((always_inline)) void AT_FN(at_values_body)(const size_t rows, const float *P,
                                                                                 size_t ldp, size_t n, const float *vp,
                                                                                 size_t dvp, float *out, size_t ldo,
                                                                                 size_t dv) {
    for (size_t c = 0; c < dvp; c += 2 * AT_W) {
        AT_VEC acc[AT_R][2];
        #pragma GCC unroll 8
        for (size_t r = 0; r < rows; r++) acc[r][0] = acc[r][1] = AT_ZERO();
        for (size_t j = 0; j < n; j++) {
            const AT_VEC v0 = AT_LOAD(vp + j * dvp + c), v1 = AT_LOAD(vp + j * dvp + c + AT_W);
            #pragma GCC unroll 8
            for (size_t r = 0; r < rows; r++) {
                const AT_VEC pr = AT_SET1(P[r * ldp + j]);
                acc[r][0] = AT_FMA(pr, v0, acc[r][0]);
                acc[r][1] = AT_FMA(pr, v1, acc[r][1]);
            }
        }
        if (c + 2 * AT_W <= dv) {
            #pragma GCC unroll 8
            for (size_t r = 0; r < rows; r++) {
                AT_STORE(out + r * ldo + c, acc[r][0]);
                AT_STORE(out + r * ldo + c + AT_W, acc[r][1]);
            }
        } else { /* the last, partial column block */
            float tmp[2 * AT_W];
            for (size_t r = 0; r < rows; r++) {
                AT_STORE(tmp, acc[r][0]);
                AT_STORE(tmp + AT_W, acc[r][1]);
                for (size_t k = 0; c + k < dv; k++) out[r * ldo + c + k] = tmp[k];
            }
        }
    }
}

/* the wrappers attention.c calls: a full tile of AT_R rows, and one row */
enum { AT_FN(at_rows) = AT_R };
AT_TARGET static void AT_FN(at_scores_tile)(const float *q, size_t ldq, const float *kt, size_t dq, size_t np,
                                            float scale, const float *kb, float *S) {
    AT_FN(at_scores_body)(AT_R, q, ldq, kt, dq, np, scale, kb, S);
}
AT_TARGET static void AT_FN(at_scores_row)(const float *q, size_t ldq, const float *kt, size_t dq, size_t np,
                                           float scale, const float *kb, float *S) {
    AT_FN(at_scores_body)(1, q, ldq, kt, dq, np, scale, kb, S);
}
AT_TARGET static void AT_FN(at_values_tile)(const float *P, size_t ldp, size_t n, const float *vp, size_t dvp,
                                            float *out, size_t ldo, size_t dv) {
    AT_FN(at_values_body)(AT_R, P, ldp, n, vp, dvp, out, ldo, dv);
}
AT_TARGET static void AT_FN(at_values_row)(const float *P, size_t ldp, size_t n, const float *vp, size_t dvp,
                                           float *out, size_t ldo, size_t dv) {
    AT_FN(at_values_body)(1, P, ldp, n, vp, dvp, out, ldo, dv);
}

#undef AT_FN
#undef AT_CAT
#undef AT_CAT_
#undef AT_SUFFIX
#undef AT_TARGET
#undef AT_VEC
#undef AT_W
#undef AT_R
#undef AT_ZERO
#undef AT_LOAD
#undef AT_STORE
#undef AT_SET1
#undef AT_FMA
#undef AT_MUL
#undef AT_ADD
