/* tpsc visualize MODEL.h5 IMG --out map.png | --batch DIR: which patches each TPS stage
 * prunes, and where squeezed tokens go. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/threads.h"
#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/io/checkpoint.h"
#include "src/train/setup.h"
#include "src/util/alloc.h"
#include "src/viz/image.h"
#include "src/viz/render.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc visualize MODEL.h5 IMAGE --out map.png [options]\n"
            "       tpsc visualize MODEL.h5 --batch DIR --out sheet.png [--max N] [options]\n"
            "\n"
            "Draws the image as the model sees it (the recipe's eval resize, crop and normalisation),\n"
            "then one panel per pruning stage with the patches pruned so far greyed out. For squeezing\n"
            "methods (dtps, etps) each patch squeezed at a stage is joined by a red line to the patch of\n"
            "the kept token it merged into, and those hosts are outlined in orange. --batch draws one row\n"
            "per image of a folder (sorted by name): a contact sheet. For merging methods (tome, atme) a panel\n"
            "shows the groups of patches each token holds after a block (atme: its merge locations; tome: 4\n"
            "blocks spread over the depth, the last one last), each region in its mean colour with borders, as\n"
            "ToMe's figures.\n"
            "  --keep-ratio R  prune at another keep ratio (rho) than the model's\n"
            "  --tome-r R      ToMe off the shelf on a dense (or tome) model: R tokens merged per block\n"
            "  --scale S       screen pixels per image pixel (default: panels of at least 224 px)\n"
            "  --max N         images in a contact sheet (default 16)\n"
            "  --no-lines      no squeezed -> host lines;  --no-outlines: no host outlines\n"
            "  --threads N     threads for the forward pass\n");
}

typedef struct viz_model {
    vit_model m;
    tpsc_augment_config aug;
    char **class_names;
    int n_class_names;
} viz_model;

static tpsc_status load_model(const char *path, float keep_ratio, int tome_r, viz_model *vm) {
    char *text = NULL;
    TPSC_TRY(tpsc_checkpoint_read_recipe(path, &text));
    static tpsc_recipe r;
    tpsc_status st = tpsc_recipe_load_string(&r, text, path);
    tpsc_free(text);
    TPSC_TRY(st);
    tpsc_data_config dc;
    tpsc_data_config_from_recipe(&r, TPSC_SPLIT_VAL, &dc);
    vm->aug = dc.aug;
    vit_config vc;
    tok_config tc;
    tpsc_checkpoint_info info;
    TPSC_TRY(tpsc_checkpoint_read_config(path, &vc, &tc, &info));
    if (keep_ratio > 0 && tc.method != TOK_NONE) tok_config_fill_rho(&tc, keep_ratio);
    if (tome_r >= 0) { /* ToMe off the shelf, as tpsc eval --tome-r */
        if (tc.method != TOK_NONE && tc.method != TOK_TOME)
            return tpsc_fail(TPSC_ERR_ARG, "%s: --tome-r needs a dense or tome checkpoint, this one is %s", path,
                             tok_method_name(tc.method));
        if (tc.method == TOK_NONE) tc.prop_attn = true;
        tc.method = TOK_TOME, tc.n_stages = 0, tc.tome_r = tome_r;
    }
    tpsc_status cst = vit_model_create(&vm->m, &vc, &tc);
    if (cst != TPSC_OK && tome_r >= 0) tpsc_error_context("%s: --tome-r %d: ", path, tome_r);
    TPSC_TRY(cst);
    st = tpsc_checkpoint_load_params(path, info.has_ema ? "/ema" : "/model", &vm->m.params, NULL, NULL);
    if (st == TPSC_OK) st = tpsc_checkpoint_read_class_names(path, &vm->class_names, &vm->n_class_names);
    return st;
}

static const char *class_name(const viz_model *vm, int k, char *buf, size_t cap) {
    if (k < vm->n_class_names && vm->class_names[k]) return vm->class_names[k];
    snprintf(buf, cap, "class %d", k);
    return buf;
}

int cmd_visualize(int argc, char **argv) {
    const char *model_path = NULL, *image_path = NULL, *batch_dir = NULL, *out = NULL, *value;
    float keep = 0;
    int scale = 0, max_images = 16, threads = -1, tome_r = -1;
    bool lines = true, outlines = true;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (cli_opt(argc, argv, &i, "--out", &value) && value) {
            out = value;
        } else if (cli_opt(argc, argv, &i, "--batch", &value) && value) {
            batch_dir = value;
        } else if (cli_opt(argc, argv, &i, "--keep-ratio", &value)) {
            if (!cli_float("visualize", "--keep-ratio", value, 0.0f, true, 1.0f, &keep)) return 2;
        } else if (cli_opt(argc, argv, &i, "--tome-r", &value)) {
            if (!cli_int("visualize", "--tome-r", value, 0, 1000000, &tome_r)) return 2;
        } else if (cli_opt(argc, argv, &i, "--scale", &value)) {
            if (!cli_int("visualize", "--scale", value, 1, 64, &scale)) return 2;
        } else if (cli_opt(argc, argv, &i, "--max", &value)) {
            if (!cli_int("visualize", "--max", value, 1, 1000000, &max_images)) return 2;
        } else if (cli_opt(argc, argv, &i, "--threads", &value)) {
            if (!cli_int("visualize", "--threads", value, 0, 1024, &threads)) return 2;
        } else if (!strcmp(argv[i], "--no-lines")) {
            lines = false;
        } else if (!strcmp(argv[i], "--no-outlines")) {
            outlines = false;
        } else if (argv[i][0] != '-' && !model_path) {
            model_path = argv[i];
        } else if (argv[i][0] != '-' && !image_path) {
            image_path = argv[i];
        } else {
            fprintf(stderr, "tpsc visualize: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!model_path || !out || !!image_path == !!batch_dir) {
        usage(stderr);
        return 2;
    }
    if (threads >= 0) ag_set_threads(threads);

    static viz_model vm;
    tpsc_status st = load_model(model_path, keep, tome_r, &vm);
    if (st != TPSC_OK) return cli_fail("visualize", st);
    char **paths = NULL;
    int n = 1;
    const char *single[1] = {image_path};
    if (batch_dir) {
        st = tpsc_viz_list_images(batch_dir, max_images, &paths, &n);
        if (st != TPSC_OK) return cli_fail("visualize", st);
    }
    const int S = (int)vm.m.cfg.img_size, C = (int)vm.m.cfg.in_chans;
    tpsc_viz_style style = tpsc_viz_default_style(S);
    if (scale) style.scale = scale;
    style.lines = lines, style.outlines = outlines;
    const int n_stages = tpsc_token_map_panels(&vm.m);
    int w, h;
    tpsc_viz_canvas_size(S, n_stages, n, &style, &w, &h);
    tpsc_rgb_image canvas = {0};
    float *chw = tpsc_malloc((size_t)C * S * S * sizeof(float), "image");
    uint8_t *display = tpsc_malloc((size_t)S * S * 3, "display image");
    static tpsc_token_map map;
    ag_ctx *ctx = ag_ctx_create(0);
    st = chw && display && ctx ? tpsc_rgb_image_alloc(&canvas, w, h) : TPSC_ERR_NOMEM;
    for (int i = 0; st == TPSC_OK && i < n; i++) {
        const char *path = batch_dir ? paths[i] : single[0];
        st = tpsc_viz_load_image(path, &vm.aug, C, S, chw, display);
        if (st == TPSC_OK) st = tpsc_token_map_compute(&vm.m, ctx, chw, NULL, &map);
        if (st == TPSC_OK) st = tpsc_viz_draw_row(&canvas, i, display, S, &map, &style);
        if (st != TPSC_OK) break;
        int best = 0;
        for (size_t k = 1; k < map.num_classes; k++)
            if (map.logits[k] > map.logits[best]) best = (int)k;
        char buf[32];
        printf("%s: %s; tokens", path, class_name(&vm, best, buf, sizeof buf));
        if (!map.n_stages) printf(" %zu (dense)", map.n_patches);
        for (int s = 0; s < map.n_stages; s++) printf("%s%zu", s ? "/" : " ", map.kept_count[s]);
        printf(" of %zu (%s)\n", map.n_patches, tok_method_name(map.method));
    }
    if (st == TPSC_OK) st = tpsc_rgb_image_write_png(&canvas, out);
    if (st == TPSC_OK) printf("wrote %s (%d x %d)\n", out, canvas.width, canvas.height);
    tpsc_rgb_image_free(&canvas);
    ag_ctx_free(ctx);
    tpsc_free(chw);
    tpsc_free(display);
    tpsc_viz_free_list(paths, batch_dir ? n : 0);
    tpsc_checkpoint_free_names(vm.class_names, vm.n_class_names);
    vit_model_free(&vm.m);
    return st == TPSC_OK ? 0 : cli_fail("visualize", st);
}
