/* tpsc bench train|infer: speed on random weights, side by side with the dense model and the
 * machine's sgemm peak measured in the same run. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/gemm.h"
#include "autograd/gemm_bf16.h"
#include "autograd/threads.h"
#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/dist/dist.h"
#include "src/perf/amx_peak.h"
#include "src/perf/bench.h"
#include "src/perf/fma_peak.h"
#include "src/perf/sgemm_peak.h"
#include "src/recipe/recipe.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc bench train [--arch NAME | --recipe R.ini] [--method M] [--keep-ratio R] [--batch 64] [--steps 5]\n"
            "                        [--precision fp32|bf16] [--no-overlap] [--bucket-mb 25] [--removal]\n"
            "       tpsc bench infer [--arch NAME | --recipe R.ini] [--method M] [--keep-ratio R] [--channels QK,V,MLP] [--batch 1,32] [--iters 20]\n"
            "                        [--tome-r R [--tome-inflect I]]\n"
            "                        [--engine lib|autograd] [--precision fp32|bf16] [--gemm openblas|onednn|panel] [--interleave]\n"
            "                        [--attention gemm|fused | --interleave-attention]\n"
            "       common: [--threads N] [--classes K]\n"
            "\n"
            "Random weights and inputs; no checkpoint needed. Prints images/s (median), latency (median, p90),\n"
            "GMACs/image (multiply-accumulates), achieved GFLOP/s, the fraction of a square sgemm's GFLOP/s\n"
            "measured in this run, peak RSS, the OpenBLAS core type and threads. `infer` also runs the dense\n"
            "model and prints the speed-up; --engine lib (default) times libtpsinfer, the library applications\n"
            "link, --engine autograd the training framework's inference path. Set OPENBLAS_CORETYPE (e.g. unset it, or SkylakeX) to choose\n"
            "OpenBLAS' kernels; the environment here forces Haswell (AVX2). --precision bf16 (engine lib) runs\n"
            "the linear layers in bfloat16 through oneDNN (CPUs with AVX512-BF16; docs/inference.md, BF16).\n"
            "--gemm (engine lib, FP32) chooses the linears' back-end: OpenBLAS, oneDNN on weights packed once, or panel\n"
            "(libtpsinfer's own AVX-512 kernel on those packed weights, a team split by columns);\n"
            "the default is the faster one on this CPU, and the header names the one that ran. The last column is\n"
            "the fraction of the FMA peak (register-only FMA loops on the same threads, measured in this run);\n"
            "with --precision bf16, of the BF16 peak (register-only vdpbf16ps loops, the same way), or where\n"
            "the CPU, Linux and oneDNN's ISA (ONEDNN_MAX_CPU_ISA) allow AMX, of the AMX peak (tdpbf16ps on tiles).\n"
            "--interleave (infer, libtpsinfer) runs dense and the method in alternation and prints the median\n"
            "of the per-pair ratios in wall and process-CPU time, robust to a changing machine load.\n"
            "--attention (engine lib) chooses how attention's per-head products run: two sgemm calls, or one\n"
            "fused kernel per tile of query rows (default: the faster one, named in the header).\n"
            "--interleave-attention runs the method with both in alternation, as --interleave does.\n"
            "`train --precision bf16` is run.precision = bf16: the GEMMs of linears and attention in bfloat16\n"
            "with FP32 accumulation, forward and backward (docs/performance.md, BF16 training).\n"
            "Under MPI (mpirun -np N tpsc bench train ...) --batch is the global batch: each rank steps on\n"
            "batch/N images and the gradients are averaged as in `tpsc train`; rank 0 prints the global\n"
            "images/s and the allreduce time per step, exposed (not hidden behind the backward) and in flight.\n"
            "`train --removal` (dynamicvit, dtps): topk masks, the masked step and the step with real removal\n"
            "(tps.train_removal) in alternation on one model; prints both medians, the median of the per-pair\n"
            "speed-ups (wall and process CPU) and the MAC ratio of the two forwards.\n"
            "--tome-r R (--method tome; default 13) merges R tokens per block with ToMe (docs/merging.md).\n"
            "defaults: --arch deit_small_patch16_224 --method dtps --keep-ratio 0.7\n");
}

/* "dtps", "tome r=13", "tome r=12/-1", with "+cdcp" for channel gates */
int cmd_bench(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1]) || (strcmp(argv[1], "train") && strcmp(argv[1], "infer"))) {
        usage(argc < 2 ? stderr : stdout);
        return argc >= 2 && cli_is_help(argv[1]) ? 0 : 2;
    }
    bool train = !strcmp(argv[1], "train");
    const char *arch = "deit_small_patch16_224", *recipe = NULL, *method = "dtps", *batches = train ? "64" : "1,32", *value;
    float keep = 0.7f, tome_inflect = 0.0f;
    int tome_r = -1;
    const char *engine = "lib", *channels = NULL;
    bool interleave = false, interleave_attention = false;
    tps_attention attention = TPS_ATTENTION_AUTO;
    tps_precision precision = TPS_PRECISION_FP32;
    tps_gemm gemm = TPS_GEMM_AUTO;
    int iters = train ? 5 : 20, threads = 0, classes = 1000;
    bool overlap = true, removal = false;
    double bucket_mb = 25;
    for (int i = 2; i < argc; i++) {
        if (cli_opt(argc, argv, &i, "--arch", &value) && value) arch = value;
        else if (cli_opt(argc, argv, &i, "--recipe", &value) && value) recipe = value;
        else if (cli_opt(argc, argv, &i, "--method", &value) && value) method = value;
        else if (cli_opt(argc, argv, &i, "--keep-ratio", &value)) {
            if (!cli_float("bench", "--keep-ratio", value, 0.0f, true, 1.0f, &keep)) return 2;
        }
        else if (cli_opt(argc, argv, &i, "--channels", &value) && value) channels = value;
        else if (cli_opt(argc, argv, &i, "--tome-r", &value)) {
            if (!cli_int("bench", "--tome-r", value, 0, 1000000, &tome_r)) return 2;
            method = "tome";
        }
        else if (cli_opt(argc, argv, &i, "--tome-inflect", &value)) {
            if (!cli_float("bench", "--tome-inflect", value, -1.0f, false, 1.0f, &tome_inflect)) return 2;
        }
        else if (!train && !strcmp(argv[i], "--interleave")) interleave = true;
        else if (!train && !strcmp(argv[i], "--interleave-attention")) interleave_attention = true;
        else if (!train && cli_opt(argc, argv, &i, "--attention", &value) && value &&
                 (!strcmp(value, "gemm") || !strcmp(value, "fused")))
            attention = !strcmp(value, "gemm") ? TPS_ATTENTION_GEMM : TPS_ATTENTION_FUSED;
        else if (cli_opt(argc, argv, &i, "--batch", &value) && value) batches = value;
        else if (cli_opt(argc, argv, &i, "--steps", &value) || cli_opt(argc, argv, &i, "--iters", &value)) {
            if (!cli_int("bench", train ? "--steps" : "--iters", value, 1, 1000000, &iters)) return 2;
        } else if (cli_opt(argc, argv, &i, "--threads", &value)) {
            if (!cli_int("bench", "--threads", value, 0, 1024, &threads)) return 2;
        } else if (cli_opt(argc, argv, &i, "--classes", &value)) {
            if (!cli_int("bench", "--classes", value, 1, 1000000, &classes)) return 2;
        }
        else if (train && !strcmp(argv[i], "--no-overlap")) overlap = false;
        else if (train && !strcmp(argv[i], "--removal")) removal = true;
        else if (train && cli_opt(argc, argv, &i, "--bucket-mb", &value)) {
            float mb;
            if (!cli_float("bench", "--bucket-mb", value, 0.0f, true, 65536.0f, &mb)) return 2;
            bucket_mb = mb;
        }
        else if (!train && cli_opt(argc, argv, &i, "--engine", &value) && value &&
                 (!strcmp(value, "lib") || !strcmp(value, "autograd")))
            engine = value;
        else if (cli_opt(argc, argv, &i, "--precision", &value) && value &&
                 (!strcmp(value, "fp32") || !strcmp(value, "bf16")))
            precision = !strcmp(value, "bf16") ? TPS_PRECISION_BF16 : TPS_PRECISION_FP32;
        else if (!train && cli_opt(argc, argv, &i, "--gemm", &value)) {
            if (tps_gemm_from_name(value, &gemm) != TPS_OK) {
                fprintf(stderr, "tpsc bench: --gemm: %s\n", tps_last_error());
                return 2;
            }
        }
        else {
            fprintf(stderr, "tpsc bench: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    /* --batch once, checked: a list such as "1,32" of positive sizes */
    size_t batch_list[16];
    int n_batches = 0;
    for (const char *b = batches; *b;) {
        char *end;
        errno = 0;
        const unsigned long v = strtoul(b, &end, 10);
        if (end == b || v == 0 || errno || (*end && *end != ',') || n_batches == 16 || *b == '-')
            return fprintf(stderr, "tpsc bench: --batch '%s': give up to 16 positive batch sizes, separated by commas\n",
                           batches), 2;
        batch_list[n_batches++] = (size_t)v;
        b = *end ? end + 1 : end;
    }
    if (precision != TPS_PRECISION_FP32 && strcmp(engine, "lib") != 0) {
        fprintf(stderr, "tpsc bench: --precision bf16 needs --engine lib (the framework's path is FP32)\n");
        return 2;
    }
    if ((attention != TPS_ATTENTION_AUTO || interleave_attention) && strcmp(engine, "lib") != 0) {
        fprintf(stderr, "tpsc bench: --attention and --interleave-attention need infer --engine lib\n");
        return 2;
    }
    if (gemm != TPS_GEMM_AUTO && (train || strcmp(engine, "lib") != 0)) {
        fprintf(stderr, "tpsc bench: --gemm needs infer --engine lib (the framework's path runs on OpenBLAS)\n");
        return 2;
    }
    const ag_precision train_precision = precision == TPS_PRECISION_BF16 ? AG_BF16 : AG_FP32;
    if (train && ag_bf16_available() != TPSC_OK && train_precision == AG_BF16) {
        fprintf(stderr, "tpsc bench: %s\n", tpsc_last_error());
        return 1;
    }
    if (!train && (tps_precision_supported(precision) != TPS_OK || tps_gemm_supported(gemm) != TPS_OK)) {
        fprintf(stderr, "tpsc bench: %s\n", tps_last_error());
        return 1;
    }
    const tps_open_options oo = {.precision = precision, .gemm = gemm, .attention = attention};
    ag_set_threads(threads);
    /* Under MPI every rank measures, rank 0 reports. */
    if (dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 1;
    vit_config vc;
    tok_config tc = {0};
    if (recipe) {
        static tpsc_recipe r;
        tpsc_status st = tpsc_recipe_load(&r, recipe);
        if (st != TPSC_OK) return cli_fail("bench", st);
        vc = r.model.vit;
        tc = r.tps.cfg;
    } else {
        tpsc_status st = vit_config_named(&vc, arch);
        if (st != TPSC_OK) return cli_fail("bench", st);
        vc.num_classes = (size_t)classes;
        int m = tok_method_from_name(method);
        if (m < 0) return fprintf(stderr, "tpsc bench: unknown method '%s'\n", method), 2;
        tc.method = (tok_method)m;
        tc.squeeze_temp = 1.0f;
        if (tc.method == TOK_TOME) { /* ToMe off the shelf: r per block, proportional attention */
            tc.tome_r = tome_r >= 0 ? tome_r : 13;
            tc.tome_inflect = tome_inflect;
            tc.prop_attn = true;
        } else if (tc.method != TOK_NONE) {
            tc.n_stages = 3;
            for (int s = 0; s < 3; s++) tc.prune_loc[s] = (int)(vc.depth * (size_t)(s + 1) / 4);
            tok_config_fill_rho(&tc, keep);
        }
    }
    if (channels) {
        /* "QK,V,MLP": the kept fractions of every block's channel gates (docs/cait.md) */
        float f[CHAN_KINDS] = {1.0f, 1.0f, 1.0f};
        if (sscanf(channels, "%f,%f,%f", &f[0], &f[1], &f[2]) < 1)
            return fprintf(stderr, "tpsc bench: --channels takes QK[,V[,MLP]] kept fractions, got '%s'\n", channels), 2;
        tc.chan.n_blocks = (int)vc.depth;
        tc.chan.gate_init = 3.0f;
        tc.chan.gate_temp = 1.0f;
        for (size_t i = 0; i < vc.depth && i < CHAN_MAX_BLOCKS; i++)
            for (int k = 0; k < CHAN_KINDS; k++) tc.chan.keep[k][i] = f[k];
        if (!chan_enabled(&tc.chan)) tc.chan.n_blocks = 0;
    }
    double peak = tpsc_sgemm_peak_gflops(1536, 3), fma = tpsc_fma_peak_gflops(ag_get_threads(), 5);
    /* BF16 work is measured against the peak of the units oneDNN may run it on: AMX tiles where
     * the CPU, Linux and oneDNN's ISA (ONEDNN_MAX_CPU_ISA) all allow them, else the AVX512-BF16
     * dot products; FP32 work against the FMA peak. The header and the last column name which. */
    const bool bf16 = precision == TPS_PRECISION_BF16;
    const bool amx = bf16 && tpsc_amx_peak_supported() && ag_bf16_kernel_uses_amx();
    const double bf16_peak = bf16 ? tpsc_bf16_peak_gflops(ag_get_threads(), 5) : 0.0;
    const double amx_peak = amx ? tpsc_amx_peak_gflops(ag_get_threads(), 5) : 0.0;
    const double work_peak = amx ? amx_peak : bf16 ? bf16_peak : fma;
    const char *wait = getenv("OMP_WAIT_POLICY");
    printf("OpenBLAS core %s, %d threads, OMP_WAIT_POLICY %s, square sgemm 1536: %.0f GFLOP/s, FMA peak (%s): %.0f GFLOP/s",
           ag_blas_corename(), ag_get_threads(), wait ? wait : "(libgomp default)", peak, tpsc_fma_peak_isa(), fma);
    if (amx)
        printf(", BF16 peak (AMX tiles, oneDNN's ISA has AMX): %.0f GFLOP/s (avx512bf16 dot products: %.0f GFLOP/s)",
               amx_peak, bf16_peak);
    else if (bf16) printf(", BF16 peak (avx512bf16 dot products): %.0f GFLOP/s", bf16_peak);
    printf("\n");
    if (!train && !strcmp(engine, "lib")) {
        const tps_gemm ran = precision == TPS_PRECISION_BF16 ? TPS_GEMM_ONEDNN : gemm == TPS_GEMM_AUTO ? tps_gemm_default() : gemm;
        printf("GEMM back-end %s (%s)\n", tps_gemm_name(ran),
               gemm != TPS_GEMM_AUTO ? "--gemm" : precision == TPS_PRECISION_BF16 ? "BF16 runs on oneDNN"
               : getenv("TPSINFER_GEMM") ? "TPSINFER_GEMM" : "the default on this CPU");
        printf("attention %s (%s)\n", interleave_attention ? "gemm and fused" : tps_attention_name(attention),
               interleave_attention ? "--interleave-attention" : attention != TPS_ATTENTION_AUTO ? "--attention"
               : getenv("TPSINFER_ATTENTION") ? "TPSINFER_ATTENTION" : "the default on this CPU");
    }
    char label[64];
    printf("model %s (%zu px, patch %zu, dim %zu, depth %zu, heads %zu), method %s%s%s%s\n", vc.arch, vc.img_size,
           vc.patch_size, vc.embed_dim, vc.depth, vc.num_heads, tok_config_label(&tc, label, sizeof label), train ? "" : ", engine ",
           train ? "" : engine, precision == TPS_PRECISION_BF16 ? ", precision bf16" : ", precision fp32");
    if (removal) {
        if (dist_active()) return fprintf(stderr, "tpsc bench: --removal runs on one process (no mpirun)\n"), 2;
        printf("| mode | method | batch | masked ms (wall / cpu) | removed ms (wall / cpu) | speed-up wall | speed-up cpu | MACs ratio |\n");
        printf("|---|---|---|---|---|---|---|---|\n");
        for (int bi = 0; bi < n_batches; bi++) {
            const size_t batch = batch_list[bi];
            tpsc_bench_pair p;
            tpsc_status st = tpsc_bench_train_removal(&vc, &tc, batch, 1, iters, train_precision, &p);
            if (st != TPSC_OK) return cli_fail("bench", st);
            printf("| train topk | %s | %zu | %.0f / %.0f | %.0f / %.0f | %.2fx | %.2fx | %.2fx |\n", tok_method_name(tc.method),
                   batch, p.wall_s[0] * 1e3, p.cpu_s[0] * 1e3, p.wall_s[1] * 1e3, p.cpu_s[1] * 1e3, p.ratio_wall,
                   p.ratio_cpu, p.gmacs[0] / p.gmacs[1]);
            fflush(stdout);
        }
        return 0;
    }
    if (interleave_attention) {
        /* the method with attention through sgemm and through the fused kernel, in alternation */
        tps_open_options ab[2] = {oo, oo};
        ab[0].attention = TPS_ATTENTION_GEMM;
        ab[1].attention = TPS_ATTENTION_FUSED;
        printf("| method | batch | gemm ms (wall / cpu) | %s ms (wall / cpu) | speed-up wall | speed-up cpu |\n",
               tps_attention_name(TPS_ATTENTION_FUSED));
        printf("|---|---|---|---|---|---|\n");
        for (int bi = 0; bi < n_batches; bi++) {
            const size_t batch = batch_list[bi];
            tpsc_bench_pair p;
            tpsc_status st = tpsc_bench_interleaved(&vc, &tc, &tc, batch, 2, iters, ab, &p);
            if (st != TPSC_OK) return cli_fail("bench", st);
            printf("| %s | %zu | %.1f / %.1f | %.1f / %.1f | %.2fx | %.2fx |\n", tok_config_label(&tc, label, sizeof label),
                   batch, p.wall_s[0] * 1e3, p.cpu_s[0] * 1e3, p.wall_s[1] * 1e3, p.cpu_s[1] * 1e3, p.ratio_wall,
                   p.ratio_cpu);
            fflush(stdout);
        }
        return 0;
    }
    if (interleave) {
        /* dense and the method in alternation: the ratio survives a changing machine load */
        tok_config dense = {.method = TOK_NONE, .squeeze_temp = 1.0f};
        printf("| method | batch | dense ms (wall / cpu) | method ms (wall / cpu) | speed-up wall | speed-up cpu | MACs ratio |"
               " GMACs/img dense / method |\n");
        printf("|---|---|---|---|---|---|---|---|\n");
        for (int bi = 0; bi < n_batches; bi++) {
            const size_t batch = batch_list[bi];
            tpsc_bench_pair p;
            const tps_open_options both[2] = {oo, oo};
            tpsc_status st = tpsc_bench_interleaved(&vc, &dense, &tc, batch, 2, iters, both, &p);
            if (st != TPSC_OK) return cli_fail("bench", st);
            printf("| %s | %zu | %.1f / %.1f | %.1f / %.1f | %.2fx | %.2fx | %.2fx | %.3f / %.3f |\n", tok_config_label(&tc, label, sizeof label),
                   batch, p.wall_s[0] * 1e3, p.cpu_s[0] * 1e3, p.wall_s[1] * 1e3,
                   p.cpu_s[1] * 1e3, p.ratio_wall, p.ratio_cpu, p.gmacs[0] / p.gmacs[1], p.gmacs[0], p.gmacs[1]);
            fflush(stdout);
        }
        return 0;
    }
    printf("| mode | method | batch | images/s | median ms | p90 ms | GMACs/img | GFLOP/s | of sgemm peak | peak RSS MB | speed-up | of %s peak |\n",
           amx ? "AMX BF16" : bf16 ? "BF16" : "FMA");
    printf("|---|---|---|---|---|---|---|---|---|---|---|---|\n");
    for (int bi = 0; bi < n_batches; bi++) {
        const size_t batch = batch_list[bi];
        tok_config dense = {.method = TOK_NONE, .squeeze_temp = 1.0f};
        tpsc_bench_result rd = {0}, rm;
        const tok_config *runs[2] = {&dense, &tc};
        int n_runs = (!train && (tc.method != TOK_NONE || chan_enabled(&tc.chan))) ? 2 : 1;
        if (n_runs == 1) runs[0] = &tc;
        for (int k = 0; k < n_runs; k++) {
            tpsc_status st = train ? tpsc_bench_train(&vc, runs[k], batch, 1, iters, train_precision, overlap, bucket_mb, &rm)
                         : !strcmp(engine, "lib") ? tpsc_bench_infer_lib(&vc, runs[k], batch, 2, iters, &oo, &rm)
                                                  : tpsc_bench_infer(&vc, runs[k], batch, 2, iters, &rm);
            if (st != TPSC_OK) return cli_fail("bench", st);
            if (k == 0 && n_runs == 2) rd = rm;
            printf("| %s | %s | %zu | %.2f | %.1f | %.1f | %.3f | %.0f | %.0f%% | %ld | ", train ? "train" : "infer",
                   tok_config_label(runs[k], label, sizeof label), batch, rm.images_per_s, rm.median_s * 1e3, rm.p90_s * 1e3,
                   rm.gmacs_per_image, rm.gflops, peak > 0 ? 100.0 * rm.gflops / peak : 0, rm.peak_rss_mb);
            if (k == 1) printf("%.2fx (MACs ratio %.2fx) | ", rm.images_per_s / rd.images_per_s, rd.gmacs_per_image / rm.gmacs_per_image);
            else printf("- | ");
            printf("%.0f%% |\n", work_peak > 0 ? 100.0 * rm.gflops / work_peak : 0);
            if (train && dist_active())
                printf("%d MPI ranks x %d threads: allreduce per step (median) %.1f ms exposed, %.1f ms in flight, "
                       "overlap %s, buckets of %g MB\n",
                       dist_size(), ag_get_threads(), rm.allreduce_exposed_s * 1e3, rm.allreduce_inflight_s * 1e3,
                       overlap ? "on" : "off", bucket_mb);
            fflush(stdout);
        }
    }
    return 0;
}
