/* classify MODEL.h5 IMAGE...: the top-5 classes of each image with libtpsinfer.
 *
 * The whole public API a classifier needs: open the exported model (tpsc export), make a
 * workspace, decode and preprocess images, run, take the top-k. Build against the installed
 * library: see CMakeLists.txt here, or
 *   cc classify.c $(pkg-config --cflags --libs tpsinfer) -o classify */
#include <stdio.h>
#include <stdlib.h>

#include <tps_infer.h>

static int fail(const char *what, tps_status st) {
    fprintf(stderr, "classify: %s: %s: %s\n", what, tps_status_str(st), tps_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: classify MODEL.h5 IMAGE...\n");
        return 2;
    }
    tps_model *model;
    tps_status st = tps_model_open(argv[1], &model);
    if (st != TPS_OK) return fail("opening the model", st);
    tps_model_info info;
    tps_model_get_info(model, &info);
    printf("%s: %s, method %s, %d classes, %.2f GMACs per image\n", argv[1], info.arch, info.method, info.num_classes,
           tps_model_macs(model, 0.0f) * 1e-9);

    tps_workspace *ws;
    if ((st = tps_workspace_create(model, 1, &ws)) != TPS_OK) {
        tps_model_close(model);
        return fail("creating a workspace", st);
    }
    const size_t K = (size_t)info.num_classes, top = K < 5 ? K : 5;
    float *input = malloc(sizeof(float) * (size_t)info.in_chans * info.img_size * info.img_size);
    float *logits = malloc(sizeof(float) * K), prob[5];
    int32_t idx[5];
    int rc = input && logits ? 0 : 1;
    for (int i = 2; i < argc && rc == 0; i++) {
        uint8_t *pixels;
        int w, h;
        if ((st = tps_image_load(argv[i], &pixels, &w, &h)) != TPS_OK) {
            rc = fail("reading an image", st);
            break;
        }
        st = tps_preprocess(model, pixels, w, h, input);
        tps_image_free(pixels);
        if (st == TPS_OK) st = tps_run(ws, input, 1, logits);
        if (st == TPS_OK) st = tps_topk(logits, 1, K, top, idx, prob);
        if (st != TPS_OK) {
            rc = fail(argv[i], st);
            break;
        }
        printf("%s\n", argv[i]);
        for (size_t j = 0; j < top; j++) {
            const char *name = tps_model_class_name(model, idx[j]);
            printf("  %6.2f%%  %s (%d)\n", 100.0 * prob[j], name ? name : "?", idx[j]);
        }
        for (int s = 0; s < tps_num_stages(ws); s++) printf("  stage %d kept %.0f tokens\n", s, tps_mean_kept(ws, s));
    }
    free(input);
    free(logits);
    tps_workspace_free(ws);
    tps_model_close(model);
    return rc;
}
