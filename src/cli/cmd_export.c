/* tpsc export CKPT OUT.h5: a training checkpoint -> an inference file for libtpsinfer
 * (src/infer/tps_infer.h; layout in docs/inference.md).
 *
 * The inference file is the checkpoint layout with format "tpsc-inference": the root
 * attributes (architecture, pruning settings, class names, the recipe for provenance) and
 * /model with the weights to serve: the EMA weights when the checkpoint has them, as the
 * trainer evaluates. Nothing of the optimiser or the training state. Preprocessing
 * attributes come from the stored recipe: input_size, crop_pct, mean[], std[],
 * interpolation (src/export/export.c). The file is checked by opening it with libtpsinfer before the command
 * reports success. */
#include <stdio.h>
#include <string.h>

#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/export/export.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc export CKPT.h5 OUT.h5 [--weights ema|model]\n"
            "\n"
            "Writes an inference file for libtpsinfer and `tpsc infer`: the weights (EMA weights when the\n"
            "checkpoint has them, unless --weights model), the architecture, the pruning settings, the class\n"
            "names and the preprocessing (input size, crop_pct, mean, std, interpolation); no optimiser state.\n");
}

static tpsc_status export_model(const char *ckpt, const char *out, const char *weights, const char **used) {
    tpsc_export x;
    TPSC_TRY(tpsc_export_load(&x, ckpt, strcmp(weights, "model") != 0));
    if (!strcmp(weights, "ema") && strcmp(x.weights, "ema") != 0) *used = "model (the checkpoint has no EMA weights)";
    else *used = x.weights;
    tpsc_status st = tpsc_export_write(&x, out);
    tpsc_export_free(&x);
    return st;
}

int cmd_export(int argc, char **argv) {
    const char *paths[2], *weights = "ema", *value;
    int n_paths = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (cli_opt(argc, argv, &i, "--weights", &value)) {
            if (!value || (strcmp(value, "ema") && strcmp(value, "model"))) {
                fprintf(stderr, "tpsc export: --weights takes ema or model\n");
                return 2;
            }
            weights = value;
        } else if (argv[i][0] == '-' || n_paths == 2) {
            fprintf(stderr, "tpsc export: unexpected argument '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            paths[n_paths++] = argv[i];
        }
    }
    if (n_paths != 2) {
        usage(stderr);
        return 2;
    }
    const char *used = "";
    tpsc_status st = export_model(paths[0], paths[1], weights, &used);
    if (st != TPSC_OK) return cli_fail("export", st);
    /* what a user will do next: the library must accept the file */
    tps_model *m;
    if (tps_model_open(paths[1], &m) != TPS_OK) {
        fprintf(stderr, "tpsc export: the written file does not open: %s\n", tps_last_error());
        return 1;
    }
    tps_model_info info;
    tps_model_get_info(m, &info);
    printf("%s: %s %s, %d stages, %d classes, weights: %s, %.3f GMACs per image\n", paths[1], info.arch, info.method,
           info.n_stages, info.num_classes, used, tps_model_macs(m, 0.0f) * 1e-9);
    tps_model_close(m);
    return 0;
}
