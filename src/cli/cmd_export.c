/* tpsc export CKPT OUT.h5: a training checkpoint -> an inference file for libtpsinfer
 * (src/infer/tps_infer.h; layout in docs/inference.md).
 *
 * The inference file is the checkpoint layout with format "tpsc-inference": the root
 * attributes (architecture, pruning settings, class names, the recipe for provenance) and
 * /model with the weights to serve: the EMA weights when the checkpoint has them, as the
 * trainer evaluates. Nothing of the optimiser or the training state. Preprocessing
 * attributes are added from the stored recipe: input_size, crop_pct, mean[], std[],
 * interpolation. The file is checked by opening it with libtpsinfer before the command
 * reports success. */
#include <hdf5.h>
#include <stdio.h>
#include <string.h>

#include "src/channels/prune.h"
#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/io/h5util.h"
#include "src/recipe/recipe.h"
#include "src/util/alloc.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc export CKPT.h5 OUT.h5 [--weights ema|model]\n"
            "\n"
            "Writes an inference file for libtpsinfer and `tpsc infer`: the weights (EMA weights when the\n"
            "checkpoint has them, unless --weights model), the architecture, the pruning settings, the class\n"
            "names and the preprocessing (input size, crop_pct, mean, std, interpolation); no optimiser state.\n");
}

/* The preprocessing the checkpoint was trained with: its recipe, or the defaults when it has
 * none (a converted timm checkpoint). */
static tpsc_status read_preprocessing(const char *ckpt, tpsc_recipe *r) {
    char *text = NULL;
    TPSC_TRY(tpsc_checkpoint_read_recipe(ckpt, &text));
    tpsc_status st = TPSC_OK;
    if (text[0])
        st = tpsc_recipe_load_string(r, text, ckpt);
    else
        tpsc_recipe_defaults(r);
    tpsc_free(text);
    if (st != TPSC_OK) tpsc_error_context("%s: the stored recipe: ", ckpt);
    return st;
}

static tpsc_status add_preprocessing(const char *out, const vit_config *vc, const tpsc_recipe *r) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    tpsc_h5 f = {.id = H5Fopen(out, H5F_ACC_RDWR, H5P_DEFAULT)};
    snprintf(f.name, sizeof f.name, "%s", out);
    if (f.id < 0) return tpsc_fail(TPSC_ERR_IO, "%s: cannot reopen to add the preprocessing", out);
    float mean[3], std[3];
    const tpsc_recipe_augment *a = &r->augment;
    for (int c = 0; c < 3; c++) {
        /* one value per input channel; a one-channel model repeats its value (RGB -> grey happens first) */
        mean[c] = a->mean[c < a->n_mean ? c : 0];
        std[c] = a->std[c < a->n_std ? c : 0];
    }
    tpsc_status st = tpsc_h5_write_attr_i64(&f, "/", "input_size", (int64_t)vc->img_size);
    if (st == TPSC_OK) st = tpsc_h5_write_attr_f64(&f, "/", "crop_pct", a->crop_pct);
    if (st == TPSC_OK) st = tpsc_h5_write_attr_f32s(&f, "/", "mean", mean, 3);
    if (st == TPSC_OK) st = tpsc_h5_write_attr_f32s(&f, "/", "std", std, 3);
    if (st == TPSC_OK) st = tpsc_h5_write_attr_str(&f, "/", "interpolation", "bicubic");
    tpsc_status cst = tpsc_h5_close(&f);
    return st != TPSC_OK ? st : cst;
}

static tpsc_status export_model(const char *ckpt, const char *out, const char *weights, const char **used) {
    vit_config vc;
    tok_config tc;
    tpsc_checkpoint_info info;
    TPSC_TRY(tpsc_checkpoint_read_config(ckpt, &vc, &tc, &info));
    if (strcmp(info.format, TPSC_FORMAT_CHECKPOINT) != 0)
        return tpsc_fail(TPSC_ERR_ARG, "%s is already an inference file (format '%s')", ckpt, info.format);
    const bool ema = strcmp(weights, "model") != 0 && info.has_ema;
    if (!strcmp(weights, "ema") && !info.has_ema) *used = "model (the checkpoint has no EMA weights)";
    else *used = ema ? "ema" : "model";
    static tpsc_recipe recipe;
    TPSC_TRY(read_preprocessing(ckpt, &recipe));
    vit_model m;
    TPSC_TRY(vit_model_create(&m, &vc, &tc));
    char **names = NULL;
    int n_names = 0;
    tpsc_status st = tpsc_checkpoint_load_params(ckpt, ema ? "/ema" : "/model", &m.params, NULL, NULL);
    if (st == TPSC_OK) st = tpsc_checkpoint_read_class_names(ckpt, &names, &n_names);
    char *recipe_text = NULL;
    if (st == TPSC_OK) st = tpsc_checkpoint_read_recipe(ckpt, &recipe_text);
    if (st == TPSC_OK) {
        tpsc_checkpoint ck = {.format = TPSC_FORMAT_INFERENCE, .vit = &vc, .tps = &tc, .params = &m.params,
                              .recipe_text = recipe_text, .class_names = (const char *const *)names,
                              .n_class_names = n_names};
        st = chan_save_inference(out, &m, &ck); /* channel gates: the dropped channels removed */
    }
    if (st == TPSC_OK) st = add_preprocessing(out, &vc, &recipe);
    tpsc_free(recipe_text);
    tpsc_checkpoint_free_names(names, n_names);
    vit_model_free(&m);
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
