/* Speed measurements on random weights and inputs, so they need no trained checkpoint:
 * training steps (forward + backward + AdamW) and inference batches, timed with a warm-up and
 * reported as medians (the machine is shared and noisy). */
#ifndef TPSC_PERF_BENCH_H
#define TPSC_PERF_BENCH_H

#include "autograd/ag.h"
#include "src/infer/tps_infer.h"
#include "src/model/vit.h"

typedef struct tpsc_bench_result {
    double median_s, p90_s;      /* per batch (or per step) */
    double images_per_s;         /* batch / median */
    double gmacs_per_image;      /* inference-mode MACs (training: the forward of the train path) */
    double gflops;               /* achieved: 2 * MACs * (3 for training) * images / s */
    long peak_rss_mb;            /* process high-water mark after the run */
} tpsc_bench_result;

/* repeats timed runs after `warmup` untimed ones; training GEMMs in `precision` (autograd/gemm.h). */
tpsc_status tpsc_bench_train(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                             ag_precision precision, tpsc_bench_result *res);
tpsc_status tpsc_bench_infer(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                             tpsc_bench_result *res);
/* The same through libtpsinfer (src/infer/tps_infer.h), the inference engine applications link,
 * with its linears in `precision` (FP32, or the opt-in BF16). */
tpsc_status tpsc_bench_infer_lib(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                                 tps_precision precision, tpsc_bench_result *res);
long tpsc_peak_rss_mb(void);

#endif
