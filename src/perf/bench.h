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
    /* training under MPI (more than one rank), medians per step, seconds: */
    double allreduce_exposed_s;  /* gradient averaging not hidden behind the backward */
    double allreduce_inflight_s; /* from the first bucket's start to the last one's end */
} tpsc_bench_result;

/* repeats timed runs after `warmup` untimed ones; training GEMMs in `precision` (autograd/gemm.h).
 * Training under MPI: batch is the global batch, each rank steps on batch / ranks images and the
 * gradients are averaged (with or without overlap, in buckets of bucket_mb), as `tpsc train`
 * does; images_per_s is the global rate. */
/* The median of v[0, n), n >= 1 (the mean of the middle two for even n); sorts v in place. */
double tpsc_median(double *v, int n);

tpsc_status tpsc_bench_train(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                             ag_precision precision, bool overlap, double bucket_mb, tpsc_bench_result *res);
tpsc_status tpsc_bench_infer(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                             tpsc_bench_result *res);
/* The same through libtpsinfer (src/infer/tps_infer.h), the inference engine applications link,
 * opened with `oo` (precision FP32 or the opt-in BF16, the FP32 GEMM back-end). */
tpsc_status tpsc_bench_infer_lib(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                                 const tps_open_options *oo, tpsc_bench_result *res);
long tpsc_peak_rss_mb(void);

/* Models a and b through libtpsinfer in alternation (bench_interleave.c), opened with oo[0] and
 * oo[1]: medians of each one's wall and process-CPU time per batch, and the medians of the
 * per-pair ratios a / b. */
typedef struct tpsc_bench_pair {
    double wall_s[2], cpu_s[2], gmacs[2];
    double ratio_wall, ratio_cpu;
} tpsc_bench_pair;
tpsc_status tpsc_bench_interleaved(const vit_config *vc, const tok_config *a, const tok_config *b, size_t batch,
                                   int warmup, int repeats, const tps_open_options oo[2], tpsc_bench_pair *res);
/* The alternation itself (bench_interleave.c): warmup + repeats rounds of step(user, 0) then
 * step(user, 1); fills res's wall_s, cpu_s and ratio_wall, ratio_cpu (gmacs untouched). Stops
 * at the first step that fails and returns its status. */
tpsc_status tpsc_bench_alternate(int warmup, int repeats, tpsc_status (*step)(void *user, int k), void *user,
                                 tpsc_bench_pair *res);

/* Predictor methods with topk masks: one model's training step with the masked formulation and
 * with real removal (tps.train_removal) in alternation, as `a` = masked and `b` = removed of a
 * tpsc_bench_pair; the ratios are masked / removed (the speed-up). gmacs: the masked step's
 * forward (every token, the dense count) and the removed one's (inference's counts): their
 * ratio is what shrinking the GEMMs gives. */
tpsc_status tpsc_bench_train_removal(const vit_config *vc, const tok_config *tc, size_t batch, int warmup, int repeats,
                                     ag_precision precision, tpsc_bench_pair *res);

#endif
