/* tpsc: the command-line front end. The only place in tpsc that prints errors and exits. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "src/cli/commands.h"
#include "src/dist/dist.h"

static const tpsc_command commands[] = {
    {"train", "train or fine-tune a model from a recipe: dense, DynamicViT, dTPS, eTPS, EViT, ToMe, ATME or cait", cmd_train},
    {"eval", "evaluate checkpoints in inference mode: top-1/5, GMACs, images/s side by side", cmd_eval},
    {"recipe", "list every recipe key, or print a recipe resolved with overrides", cmd_recipe},
    {"sweep", "run a grid of trainings (or evaluations) resumably; tables and a top-1 vs GMACs plot", cmd_sweep},
    {"visualize", "draw an image with each stage's pruned patches greyed and squeezed tokens' hosts", cmd_visualize},
    {"export", "write an inference file (weights, architecture, pruning, classes, preprocessing) for libtpsinfer", cmd_export},
    {"infer", "classify images, or run a tensor file, with an exported model through libtpsinfer", cmd_infer},
    {"bench", "speed of training steps or inference on random weights, vs dense and the sgemm peak", cmd_bench},
    {"version", "print the version, the build and the BLAS in use", cmd_version},
};

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc <command> [args]\n"
            "\n"
            "Vision Transformer training with Token Pruning & Squeezing (TPS, CVPR 2023).\n"
            "\n"
            "commands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].help);
    fprintf(f, "\n'tpsc <command> --help' describes one command.\n");
}

/* libgomp reads OMP_WAIT_POLICY once, when it loads. Its default spin-waiting makes idle
 * OpenMP threads burn the cores that OpenBLAS and the data workers need (docs/inference.md,
 * "Figures behind the code"), so unless the user chose a policy, restart once with
 * PASSIVE. If the re-exec fails we simply run with the default. */
static void prefer_passive_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    if (setenv("OMP_WAIT_POLICY", "PASSIVE", 1) != 0) return;
    execv("/proc/self/exe", argv);
}

int main(int argc, char **argv) {
    prefer_passive_openmp(argv);
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    /* Under an MPI launcher (mpirun, srun) join the job; otherwise this does nothing. */
    if (dist_init(&argc, &argv) != TPSC_OK) {
        fprintf(stderr, "tpsc: %s\n", tpsc_last_error());
        return 1;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (!strcmp(argv[1], commands[i].name)) {
            int rc = commands[i].run(argc - 1, argv + 1);
            /* A rank that failed alone would leave the others waiting in a collective. */
            if (rc != 0 && rc != 128 + SIGTERM && rc != 128 + SIGINT) dist_abort(rc);
            dist_finalize();
            return rc;
        }
    }
    dist_finalize();
    fprintf(stderr, "tpsc: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
