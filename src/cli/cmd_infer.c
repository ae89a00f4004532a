/* tpsc infer MODEL.h5 IMG...                      top-5 classes per image
 * tpsc infer MODEL.h5 --tensor IN.h5 --out OUT.h5 float32 /input [B,C,H,W] -> /logits, /kept_s{k}
 * Both run libtpsinfer (src/infer/tps_infer.h) on an inference file written by `tpsc export`, or
 * on a training checkpoint, exported in memory first (its EMA weights when it has them). */
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/export/export.h"
#include "src/infer/tps_infer.h"
#include "src/io/h5util.h"
#include "src/util/alloc.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc infer MODEL.h5 IMAGE... [options]\n"
            "       tpsc infer MODEL.h5 --tensor IN.h5 --out OUT.h5 [options]\n"
            "\n"
            "Runs a model with libtpsinfer: an exported one (tpsc export) or a training checkpoint (exported\n"
            "in memory, EMA weights when present). With images (PNG/JPEG/BMP), prints the\n"
            "top classes and probabilities of each. With --tensor, reads float32 /input [B,C,H,W] (already\n"
            "normalised) and writes /logits [B,K] and, for pruned models, /kept_s{k} int64 [B,n_k]: the\n"
            "original patch indices (0..N-1, cls excluded) that survive stage k, in the order kept (-1: an\n"
            "EViT fused token). In threshold mode images keep different counts: rows are padded with -1 and\n"
            "/kept_count_s{k} int64 [B] gives each image's count.\n"
            "\n"
            "options:\n"
            "  --keep-ratio R    keep ratio rho instead of the exported one (stage s keeps rho^(s+1))\n"
            "  --threshold T     adaptive budgets (dynamicvit/dtps): keep tokens with keep-probability > T\n"
            "  --min-keep F      threshold mode: keep at least ceil(F n) of the n current tokens (0)\n"
            "  --max-keep F      threshold mode: keep at most floor(F n) (1)\n"
            "  --top K           classes printed per image (5)\n"
            "  --batch N         images per run (32)\n"
            "  --threads N       OpenMP threads (default: all)\n"
            "  --precision P     fp32 (default) or bf16: linear layers in bfloat16 through oneDNN, on CPUs\n"
            "                    with AVX512-BF16 (logits move by about 1e-2 relative; docs/inference.md)\n"
            "  --gemm G          openblas, onednn or panel: the FP32 linears' back-end (default: the faster one on\n"
            "                    this CPU; onednn and panel run on weights packed once at open)\n"
            "  --tome-r R        ToMe off the shelf on a dense (or tome) model, no training: R >= 1 tokens merged\n"
            "                    per block, proportional attention (docs/merging.md)\n"
            "  --tome-inflect I  ToMe's schedule with --tome-r: 0 constant (default), -1 decreasing 2R .. 0\n");
}

typedef struct infer_opts {
    const char *model, *tensor, *out;
    const char **images;
    int n_images;
    tps_budget budget;
    int top, batch, threads;
    tps_precision precision;
    tps_gemm gemm;
    int tome_r;
    float tome_inflect;
} infer_opts;

static int fail(const char *what) {
    fprintf(stderr, "tpsc infer: %s%s%s\n", what, tps_last_error()[0] ? ": " : "", tps_last_error());
    return 1;
}

static void print_stages(const tps_workspace *ws, const double *sum, size_t images) {
    for (int s = 0; s < tps_num_stages(ws); s++)
        printf("%sstage %d: %.1f", s ? ", " : "mean tokens kept: ", s, sum[s] / (double)images);
    if (tps_num_stages(ws) > 0) printf("\n");
}

static int classify_images(const infer_opts *o, tps_model *m, tps_workspace *ws) {
    tps_model_info info;
    tps_model_get_info(m, &info);
    const size_t K = (size_t)info.num_classes, per = (size_t)info.in_chans * info.img_size * info.img_size;
    const size_t top = (size_t)o->top < K ? (size_t)o->top : K, batch = (size_t)o->batch;
    float *x = tpsc_malloc(batch * per * sizeof(float), "input batch");
    float *logits = tpsc_malloc(batch * K * sizeof(float), "logits"), *prob = tpsc_malloc(batch * top * sizeof(float), "probabilities");
    int32_t *idx = tpsc_malloc(batch * top * sizeof(int32_t), "classes");
    if (!x || !logits || !prob || !idx) {
        tpsc_free(x), tpsc_free(logits), tpsc_free(prob), tpsc_free(idx);
        fprintf(stderr, "tpsc infer: %s\n", tpsc_last_error());
        return 1;
    }
    double kept_sum[TPS_INFER_MAX_STAGES] = {0};
    int rc = 0;
    for (int first = 0; first < o->n_images && rc == 0; first += (int)batch) {
        const int n = o->n_images - first < (int)batch ? o->n_images - first : (int)batch;
        for (int i = 0; i < n && rc == 0; i++) {
            uint8_t *px;
            int w, h;
            if (tps_image_load(o->images[first + i], &px, &w, &h) != TPS_OK) {
                rc = fail("reading an image");
                break;
            }
            if (tps_preprocess(m, px, w, h, x + (size_t)i * per) != TPS_OK) rc = fail(o->images[first + i]);
            tps_image_free(px);
        }
        if (rc) break;
        if (tps_run(ws, x, (size_t)n, logits) != TPS_OK || tps_topk(logits, (size_t)n, K, top, idx, prob) != TPS_OK) {
            rc = fail("running the model");
            break;
        }
        for (int s = 0; s < tps_num_stages(ws); s++) kept_sum[s] += tps_mean_kept(ws, s) * n;
        for (int i = 0; i < n; i++) {
            printf("%s\n", o->images[first + i]);
            for (size_t j = 0; j < top; j++) {
                const char *name = tps_model_class_name(m, idx[i * top + j]);
                char fallback[32];
                if (!name) snprintf(fallback, sizeof fallback, "class %d", idx[i * top + j]), name = fallback;
                printf("  %6.2f%%  %s\n", 100.0 * prob[i * top + j], name);
            }
        }
    }
    if (rc == 0) print_stages(ws, kept_sum, (size_t)o->n_images);
    tpsc_free(x), tpsc_free(logits), tpsc_free(prob), tpsc_free(idx);
    return rc;
}

static int run_tensor(const infer_opts *o, tps_model *m, tps_workspace *ws) {
    tps_model_info info;
    tps_model_get_info(m, &info);
    tpsc_h5 in = {.id = -1}, out = {.id = -1};
    int nd;
    size_t shape[TPSC_H5_MAX_DIMS];
    tpsc_status st = tpsc_h5_open_read(&in, o->tensor);
    if (st == TPSC_OK) st = tpsc_h5_shape(&in, "/input", &nd, shape);
    if (st == TPSC_OK && (nd != 4 || shape[1] != (size_t)info.in_chans || shape[2] != (size_t)info.img_size ||
                          shape[3] != (size_t)info.img_size || shape[0] == 0))
        st = tpsc_fail(TPSC_ERR_SHAPE, "%s: /input must be [B, %d, %d, %d] for this model", o->tensor, info.in_chans,
                       info.img_size, info.img_size);
    if (st != TPSC_OK) {
        tpsc_h5_close(&in);
        return cli_fail("infer", st);
    }
    const size_t B = shape[0], K = (size_t)info.num_classes, N = (size_t)info.num_patches;
    const size_t per = (size_t)info.in_chans * info.img_size * info.img_size, batch = (size_t)o->batch;
    float *x = tpsc_malloc(B * per * sizeof(float), "/input"), *logits = tpsc_malloc(B * K * sizeof(float), "/logits");
    int64_t *kept = tpsc_malloc((size_t)TPS_INFER_MAX_STAGES * B * N * sizeof(int64_t), "kept indices");
    int64_t *counts = tpsc_malloc((size_t)TPS_INFER_MAX_STAGES * B * sizeof(int64_t), "kept counts");
    size_t width[TPS_INFER_MAX_STAGES] = {0};
    if (!x || !logits || !kept || !counts) st = TPSC_ERR_NOMEM;
    if (st == TPSC_OK) st = tpsc_h5_read_f32(&in, "/input", 4, shape, x);
    tpsc_h5_close(&in);
    int stages = 0;
    double kept_sum[TPS_INFER_MAX_STAGES] = {0};
    for (size_t first = 0; st == TPSC_OK && first < B; first += batch) {
        const size_t n = B - first < batch ? B - first : batch;
        if (tps_run(ws, x + first * per, n, logits + first * K) != TPS_OK) {
            tpsc_free(x), tpsc_free(logits), tpsc_free(kept), tpsc_free(counts);
            return fail(o->tensor);
        }
        stages = tps_num_stages(ws);
        for (int s = 0; s < stages; s++) {
            kept_sum[s] += tps_mean_kept(ws, s) * (double)n;
            for (size_t b = 0; b < n; b++) {
                const int32_t *idx;
                size_t k;
                tps_kept_tokens(ws, s, b, &idx, &k);
                int64_t *row = kept + ((size_t)s * B + first + b) * N;
                for (size_t j = 0; j < N; j++) row[j] = j < k ? idx[j] : -1;
                counts[(size_t)s * B + first + b] = (int64_t)k;
                if (k > width[s]) width[s] = k;
            }
        }
    }
    if (st == TPSC_OK) st = tpsc_h5_create(&out, o->out, NULL);
    if (st == TPSC_OK) st = tpsc_h5_write_f32(&out, "/logits", 2, (size_t[]){B, K}, logits);
    bool ragged = o->budget.mode == TPS_BUDGET_THRESHOLD;
    for (int s = 0; st == TPSC_OK && s < stages; s++) {
        char name[32];
        /* compact the rows to the widest count */
        int64_t *rows = kept + (size_t)s * B * N;
        for (size_t b = 0; b < B; b++) memmove(rows + b * width[s], rows + b * N, width[s] * sizeof(int64_t));
        snprintf(name, sizeof name, "/kept_s%d", s);
        st = tpsc_h5_write_i64(&out, name, 2, (size_t[]){B, width[s]}, rows);
        snprintf(name, sizeof name, "/kept_count_s%d", s);
        if (st == TPSC_OK && ragged) st = tpsc_h5_write_i64(&out, name, 1, (size_t[]){B}, counts + (size_t)s * B);
    }
    tpsc_status cst = tpsc_h5_close(&out);
    if (st == TPSC_OK) st = cst;
    tpsc_free(x), tpsc_free(logits), tpsc_free(kept), tpsc_free(counts);
    if (st != TPSC_OK) return cli_fail("infer", st);
    printf("%s: %zu images -> %s\n", o->tensor, B, o->out);
    print_stages(ws, kept_sum, B);
    return 0;
}

static bool parse_float(const char *v, float *out) {
    char *end;
    if (!v) return false;
    *out = strtof(v, &end);
    return end != v && *end == '\0';
}

int cmd_infer(int argc, char **argv) {
    infer_opts o = {.top = 5, .batch = 32, .threads = 0, .budget = {.mode = TPS_BUDGET_FIXED, .max_frac = 1.0f}};
    const char **images = calloc((size_t)argc, sizeof *images), *v;
    if (!images) return 1;
    o.images = images;
    bool bad = false, said = false; /* said: the bad value's own message is out */
    for (int i = 1; i < argc && !bad; i++) {
        const char *opt = argv[i];
        if (cli_is_help(opt)) {
            usage(stdout);
            free(images);
            return 0;
        } else if (cli_opt(argc, argv, &i, "--tensor", &v)) {
            bad = !(o.tensor = v);
        } else if (cli_opt(argc, argv, &i, "--out", &v)) {
            bad = !(o.out = v);
        } else if (cli_opt(argc, argv, &i, "--keep-ratio", &v)) {
            bad = !parse_float(v, &o.budget.keep_ratio);
        } else if (cli_opt(argc, argv, &i, "--threshold", &v)) {
            bad = !parse_float(v, &o.budget.threshold);
            o.budget.mode = TPS_BUDGET_THRESHOLD;
        } else if (cli_opt(argc, argv, &i, "--min-keep", &v)) {
            bad = !parse_float(v, &o.budget.min_frac);
        } else if (cli_opt(argc, argv, &i, "--max-keep", &v)) {
            bad = !parse_float(v, &o.budget.max_frac);
        } else if (cli_opt(argc, argv, &i, "--top", &v)) {
            said = bad = !cli_int("infer", "--top", v, 1, 1000000, &o.top);
        } else if (cli_opt(argc, argv, &i, "--batch", &v)) {
            said = bad = !cli_int("infer", "--batch", v, 1, 1000000, &o.batch);
        } else if (cli_opt(argc, argv, &i, "--threads", &v)) {
            said = bad = !cli_int("infer", "--threads", v, 0, 1024, &o.threads);
        } else if (cli_opt(argc, argv, &i, "--precision", &v)) {
            bad = !v || (strcmp(v, "fp32") && strcmp(v, "bf16"));
            o.precision = v && !strcmp(v, "bf16") ? TPS_PRECISION_BF16 : TPS_PRECISION_FP32;
        } else if (cli_opt(argc, argv, &i, "--gemm", &v)) {
            said = bad = tps_gemm_from_name(v, &o.gemm) != TPS_OK;
            if (bad) fprintf(stderr, "tpsc infer: %s\n", tps_last_error());
        } else if (cli_opt(argc, argv, &i, "--tome-r", &v)) {
            said = bad = !cli_int("infer", "--tome-r", v, 1, 1000000, &o.tome_r);
        } else if (cli_opt(argc, argv, &i, "--tome-inflect", &v)) {
            said = bad = !cli_float("infer", "--tome-inflect", v, -1.0f, false, 1.0f, &o.tome_inflect);
        } else if (opt[0] == '-' && opt[1]) {
            fprintf(stderr, "tpsc infer: unknown option '%s'\n\n", opt);
            said = bad = true;
        } else if (!o.model) {
            o.model = opt;
        } else {
            images[o.n_images++] = opt;
        }
        if (bad && !said) fprintf(stderr, "tpsc infer: %s needs a valid value\n", opt);
    }
    if (!bad && (!o.model || (!o.tensor && o.n_images == 0) || (o.tensor && (!o.out || o.n_images > 0)) ||
                 (o.out && !o.tensor))) {
        fprintf(stderr, "tpsc infer: give a model and images, or a model with --tensor IN.h5 --out OUT.h5\n\n");
        bad = true;
    }
    if (bad) {
        usage(stderr);
        free(images);
        return 2;
    }
    if (o.budget.mode == TPS_BUDGET_THRESHOLD && o.budget.keep_ratio > 0.0f) {
        fprintf(stderr, "tpsc infer: --keep-ratio and --threshold exclude each other\n");
        free(images);
        return 2;
    }
    if (o.threads > 0) omp_set_num_threads(o.threads);
    tps_model *m = NULL;
    tps_workspace *ws = NULL;
    int rc;
    const tps_open_options oo = {.precision = o.precision, .gemm = o.gemm, .tome_r = o.tome_r, .tome_inflect = o.tome_inflect};
    if (tpsc_open_for_inference(o.model, &oo, &m) != TPSC_OK)
        rc = (fprintf(stderr, "tpsc infer: opening the model%s: %s\n", o.tome_r > 0 ? " with --tome-r" : "",
                      tpsc_last_error()), 1);
    else if (tps_workspace_create(m, (size_t)o.batch, &ws) != TPS_OK)
        rc = fail("allocating the workspace");
    else if (tps_workspace_set_budget(ws, &o.budget) != TPS_OK)
        rc = fail("the token budget");
    else
        rc = o.tensor ? run_tensor(&o, m, ws) : classify_images(&o, m, ws);
    tps_workspace_free(ws);
    tps_model_close(m);
    free(images);
    return rc;
}
