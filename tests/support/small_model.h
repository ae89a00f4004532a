/* The small random ViT that the libtpsinfer tests run through both engines: img 32, patch 4
 * (N = 64), C 48, H 4, depth 4, K 10, mlp_ratio 4 (F 192); token stages before/inside blocks
 * 1, 2, 3. Weights are not timm's init (std 0.02 gives near-uniform attention and flat keep
 * scores, which hides bugs): linears N(0, 1/fan_in), biases N(0, 0.05), LayerNorm weights
 * 1 + N(0, 0.1), cls token and position embedding N(0, 0.25). Test-only: any failure is a
 * Criterion assertion. */
#ifndef TPSC_TESTS_SMALL_MODEL_H
#define TPSC_TESTS_SMALL_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "src/infer/tps_infer.h"
#include "src/model/vit.h"

vit_config sm_config(void);
/* method with 3 stages at blocks 1, 2, 3 and keep ratio rho (none: no stages) */
tok_config sm_tokens(tok_method method, float rho);
/* Every parameter of m drawn as above from one stream seeded with seed. */
void sm_random_weights(vit_model *m, uint64_t seed);
/* m as an inference file (class names "zero" .. "nine" for up to 10 classes), the format
 * libtpsinfer opens. */
void sm_save_inference(const char *path, vit_model *m);
/* The small model with `method` at rho 0.7 and random weights (seed), saved to path. */
void sm_write_random_model(const char *path, tok_method method, uint64_t seed);
/* B images [B,3,32,32] of N(0,1) (malloc'd; the caller frees). */
float *sm_random_images(size_t B, const vit_config *c, uint64_t seed);
/* One libtpsinfer run of B images (at most SM_RUN_MAX_B, files of at most SM_RUN_MAX_N
 * patches): logits [B,K] and each stage's kept tokens per image. */
#define SM_RUN_MAX_B 64
#define SM_RUN_MAX_N 1024
typedef struct sm_run {
    float *logits; /* [B,K] */
    size_t K;
    int depth, n_stages;
    size_t k[TPS_INFER_MAX_STAGES][SM_RUN_MAX_B];
    int32_t kept[TPS_INFER_MAX_STAGES][SM_RUN_MAX_B][SM_RUN_MAX_N];
} sm_run;
/* Opens path with o, runs the images `reps` times on one workspace (the runs after the first
 * reuse what it made) and records the last. Asserts the model runs with the precision, and
 * the GEMM back-end and attention o asks for (where not AUTO). Free with sm_run_free. */
sm_run *sm_run_model(const char *path, const tps_open_options *o, const float *images, size_t B, int reps);
void sm_run_free(sm_run *r);
/* buf = <build dir>/<test>_<pid>_<name>: a scratch file of this test process. */
void sm_tmp_path(char *buf, size_t len, const char *test, const char *name);

#endif
