/* tpsc eval CKPT... [--keep-ratio R] [--tome-r R] [--set k=v] [--precision P]: evaluate checkpoints on the
 * validation data their recipe names, side by side in one run, and print a Markdown table.
 * --precision runs libtpsinfer (the deployed engine) instead of the framework's path. Under an
 * MPI launcher (`mpirun -np N tpsc eval ...`) each rank evaluates its shard of the validation
 * set and rank 0 prints the whole set's table. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/threads.h"
#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/dist/dist.h"
#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/train/evaluate.h"
#include "src/train/progress.h"
#include "src/train/setup.h"
#include "src/util/alloc.h"
#include "src/util/log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc eval CKPT.h5... [--keep-ratio R] [--set section.key=value]... [--threads N]\n"
            "                 [--precision fp32|bf16] [--gemm openblas|onednn|panel] [--tome-r R [--tome-inflect I]]\n"
            "\n"
            "Evaluates each checkpoint in inference mode (tokens really removed) on the validation set its\n"
            "stored recipe names, and prints top-1, top-5, GMACs per image (multiply-accumulates) and images/s,\n"
            "measured in this one run. --keep-ratio evaluates a pruned model at another keep ratio (rho).\n"
            "--precision evaluates through libtpsinfer instead of the training framework's path: the model is\n"
            "handed to the library as `tpsc export` would write it and run in that precision (bf16: linear\n"
            "layers in bfloat16 through oneDNN, CPUs with AVX512-BF16; docs/inference.md). --gemm evaluates through\n"
            "libtpsinfer too, its FP32 linears on that back-end (default: the faster one on this CPU).\n"
            "Under `mpirun -np N` each rank evaluates a shard of the validation set; rank 0 prints the table\n"
            "(images/s: the whole set over the slowest rank's forward time).\n"
            "--tome-r runs ToMe off the shelf (r tokens merged per block, proportional attention, no training)\n"
            "on a dense or tome checkpoint; --tome-inflect -1 is ToMe's decreasing schedule (docs/merging.md).\n");
}

typedef struct row {
    const char *path;
    char method[48];
    tpsc_eval_result ev;
} row;

/* --tome-r and --tome-inflect; r < 0: not given */
typedef struct tome_opt {
    int r;
    float inflect;
} tome_opt;

/* ToMe off the shelf: a dense checkpoint (or a tome one at another r) evaluated with ToMe.
 * The model's parameters are the same; only the token configuration changes. */
static tpsc_status apply_tome(const char *path, const tome_opt *o, tok_config *tc) {
    if (o->r < 0) return TPSC_OK;
    if (tc->method != TOK_NONE && tc->method != TOK_TOME)
        return tpsc_fail(TPSC_ERR_ARG, "%s: --tome-r needs a dense or tome checkpoint, this one is %s", path,
                         tok_method_name(tc->method));
    if (tc->method == TOK_NONE) tc->prop_attn = true; /* ToMe's default off the shelf */
    tc->method = TOK_TOME;
    tc->n_stages = 0;
    tc->tome_r = o->r;
    tc->tome_inflect = o->inflect;
    return TPSC_OK;
}

/* lib NULL: the framework's path; else libtpsinfer opened with these options */
static tpsc_status eval_one(const char *path, const char **sets, int n_sets, float keep_ratio, const tome_opt *tome,
                            int threads, const tps_open_options *lib, row *out) {
    char *text = NULL;
    TPSC_TRY(tpsc_checkpoint_read_recipe(path, &text));
    static tpsc_recipe r;
    tpsc_status st = tpsc_recipe_load_string(&r, text, path);
    tpsc_free(text);
    for (int i = 0; st == TPSC_OK && i < n_sets; i++) st = tpsc_recipe_set(&r, sets[i]);
    TPSC_TRY(st);
    if (threads >= 0) r.run.threads = threads;
    ag_set_threads(r.run.threads);
    vit_config vc;
    tok_config tc;
    TPSC_TRY(tpsc_checkpoint_read_config(path, &vc, &tc, NULL));
    if (keep_ratio > 0 && tc.method != TOK_NONE) tok_config_fill_rho(&tc, keep_ratio);
    TPSC_TRY(apply_tome(path, tome, &tc));
    vit_model m;
    st = vit_model_create(&m, &vc, &tc);
    if (st != TPSC_OK && tome->r >= 0) tpsc_error_context("%s: --tome-r %d: ", path, tome->r);
    TPSC_TRY(st);
    tpsc_checkpoint_info info;
    st = tpsc_checkpoint_read_config(path, NULL, NULL, &info);
    /* Evaluate what training would export: the EMA weights when present. */
    if (st == TPSC_OK) st = tpsc_checkpoint_load_params(path, info.has_ema ? "/ema" : "/model", &m.params, NULL, NULL);
    tpsc_data_config dc;
    tpsc_data_config_from_recipe(&r, TPSC_SPLIT_VAL, &dc);
    /* Each rank its shard (positions rank, rank + N, ...), batches split as in training. */
    const int world = dist_size();
    dc.rank = dist_rank();
    dc.world_size = world;
    if (dc.eval_batch_size > 0) dc.eval_batch_size = (dc.eval_batch_size + world - 1) / world;
    tpsc_loader *val = NULL;
    if (st == TPSC_OK) st = tpsc_loader_open(&val, &dc, TPSC_SPLIT_VAL);
    ag_ctx *ctx = ag_ctx_create(0);
    if (st == TPSC_OK && !ctx) st = TPSC_ERR_NOMEM;
    if (st == TPSC_OK && lib)
        st = tpsc_evaluate_library(&m, val, (size_t)(dc.eval_batch_size > 0 ? dc.eval_batch_size : dc.batch_size), lib,
                                   &out->ev);
    else if (st == TPSC_OK)
        st = tpsc_evaluate(&m, val, ctx, NULL, &out->ev);
    out->path = path;
    tok_config_label(&tc, out->method, sizeof out->method);
    ag_ctx_free(ctx);
    tpsc_loader_close(val);
    vit_model_free(&m);
    if (st != TPSC_OK) tpsc_error_context("%s: ", path);
    return st;
}

int cmd_eval(int argc, char **argv) {
    const char *paths[64], *sets[64], *value;
    int n_paths = 0, n_sets = 0, threads = -1, precision = -1;
    tps_gemm gemm = TPS_GEMM_AUTO;
    float keep = 0;
    tome_opt tome = {-1, 0.0f};
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (cli_opt(argc, argv, &i, "--set", &value) && value && n_sets < 64) {
            sets[n_sets++] = value;
        } else if (cli_opt(argc, argv, &i, "--keep-ratio", &value)) {
            if (!cli_float("eval", "--keep-ratio", value, 0.0f, true, 1.0f, &keep)) return 2;
        } else if (cli_opt(argc, argv, &i, "--tome-r", &value)) {
            if (!cli_int("eval", "--tome-r", value, 0, 1000000, &tome.r)) return 2;
        } else if (cli_opt(argc, argv, &i, "--tome-inflect", &value)) {
            if (!cli_float("eval", "--tome-inflect", value, -1.0f, false, 1.0f, &tome.inflect)) return 2;
        } else if (cli_opt(argc, argv, &i, "--threads", &value)) {
            if (!cli_int("eval", "--threads", value, 0, 1024, &threads)) return 2;
        } else if (cli_opt(argc, argv, &i, "--precision", &value)) {
            if (!value || (strcmp(value, "fp32") && strcmp(value, "bf16"))) {
                fprintf(stderr, "tpsc eval: --precision is fp32 or bf16, not '%s'\n", value ? value : "");
                return 2;
            }
            precision = !strcmp(value, "bf16") ? TPS_PRECISION_BF16 : TPS_PRECISION_FP32;
            if (tps_precision_supported((tps_precision)precision) != TPS_OK) {
                fprintf(stderr, "tpsc eval: %s\n", tps_last_error());
                return 1;
            }
        } else if (cli_opt(argc, argv, &i, "--gemm", &value)) {
            if (tps_gemm_from_name(value, &gemm) != TPS_OK) {
                fprintf(stderr, "tpsc eval: --gemm: %s\n", tps_last_error());
                return 2;
            }
            if (precision < 0) precision = TPS_PRECISION_FP32;
            if (tps_gemm_supported(gemm) != TPS_OK) {
                fprintf(stderr, "tpsc eval: %s\n", tps_last_error());
                return 1;
            }
        } else if (argv[i][0] != '-' && n_paths < 64) {
            paths[n_paths++] = argv[i];
        } else {
            usage(stderr);
            return 2;
        }
    }
    if (!n_paths) {
        usage(stderr);
        return 2;
    }
    row rows[64];
    const tps_open_options oo = {.precision = (tps_precision)(precision < 0 ? 0 : precision), .gemm = gemm};
    for (int i = 0; i < n_paths; i++) {
        tpsc_status st = eval_one(paths[i], sets, n_sets, keep, &tome, threads, precision >= 0 ? &oo : NULL, &rows[i]);
        if (st != TPSC_OK) return cli_fail("eval", st);
    }
    if (dist_rank() != 0) return 0; /* rank 0 speaks for the job */
    double dense_ips = 0;
    for (int i = 0; i < n_paths; i++)
        if (!strcmp(rows[i].method, "none")) dense_ips = rows[i].ev.images_per_s;
    if (precision >= 0)
        printf("engine libtpsinfer, precision %s, GEMM back-end %s\n", precision == TPS_PRECISION_BF16 ? "bf16" : "fp32",
               tps_gemm_name(precision == TPS_PRECISION_BF16 ? TPS_GEMM_ONEDNN
                             : gemm == TPS_GEMM_AUTO ? tps_gemm_default() : gemm));
    printf("| checkpoint | method | images | test top-1 | top-5 | GMACs/img | images/s | speed-up |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    for (int i = 0; i < n_paths; i++) {
        const tpsc_eval_result *e = &rows[i].ev;
        printf("| %s | %s | %zu | %.2f%% | %.2f%% | %.4f | %.0f | ", rows[i].path, rows[i].method, e->images, e->top1,
               e->top5, e->gmacs, e->images_per_s);
        if (dense_ips > 0)
            printf("%.2fx |\n", e->images_per_s / dense_ips);
        else
            printf("- |\n");
    }
    return 0;
}
