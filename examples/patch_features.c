/* patch_features MODEL.h5 IMAGE OUT.f32: a compressed backbone's features on the full patch
 * grid, for a dense head (segmentation, detection), with libtpsinfer.
 *
 * A model that merges tokens (tome, atme, cait: `tpsc export` of such a checkpoint) runs on
 * fewer tokens than there are patches; tps_patch_grid scatters the last block's tokens back
 * to the G x G patch grid through the merge's source map, so the head sees the layout of a
 * dense ViT. OUT.f32 receives the grid as raw little-endian float32 [G, G, C] (row-major over
 * the patches); the program prints which token each patch took. Build against the installed
 * library: see CMakeLists.txt here, or
 *   cc patch_features.c $(pkg-config --cflags --libs tpsinfer) -o patch_features */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include <tps_infer.h>

static int fail(const char *what, tps_status st) {
    fprintf(stderr, "patch_features: %s: %s: %s\n", what, tps_status_str(st), tps_last_error());
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: patch_features MODEL.h5 IMAGE OUT.f32\n");
        return 2;
    }
    tps_model *model;
    tps_status st = tps_model_open(argv[1], &model);
    if (st != TPS_OK) return fail("opening the model", st);
    tps_model_info info;
    tps_model_get_info(model, &info);
    const size_t G = (size_t)(info.img_size / info.patch_size), C = (size_t)info.embed_dim, N = G * G;
    tps_workspace *ws = NULL;
    uint8_t *pixels = NULL;
    int w, h, rc = 0;
    float *input = malloc(sizeof(float) * (size_t)info.in_chans * info.img_size * info.img_size);
    float *logits = malloc(sizeof(float) * (size_t)info.num_classes), *grid = malloc(sizeof(float) * N * C);
    if (!input || !logits || !grid) {
        fprintf(stderr, "patch_features: out of memory\n");
        rc = 1;
    }
    if (!rc && (st = tps_workspace_create(model, 1, &ws)) != TPS_OK) rc = fail("creating a workspace", st);
    if (!rc && (st = tps_image_load(argv[2], &pixels, &w, &h)) != TPS_OK) rc = fail(argv[2], st);
    if (!rc && (st = tps_preprocess(model, pixels, w, h, input)) != TPS_OK) rc = fail(argv[2], st);
    if (!rc && (st = tps_run(ws, input, 1, logits)) != TPS_OK) rc = fail("running", st);
    if (!rc && (st = tps_patch_grid(ws, 0, grid)) != TPS_OK) rc = fail("the patch grid", st);
    if (!rc) {
        FILE *f = fopen(argv[3], "wb");
        const bool ok = f && fwrite(grid, sizeof(float), N * C, f) == N * C;
        if (f && fclose(f) != 0) rc = 1;
        if (!ok || rc) {
            perror(argv[3]);
            rc = 1;
        }
    }
    if (!rc) {
        printf("%s: method %s, %zu x %zu patches x %zu channels written to %s\n", argv[1], info.method, G, G, C, argv[3]);
        const int32_t *map;
        size_t tokens;
        if (tps_token_map(ws, 0, &map, &tokens) == TPS_OK) { /* merging models: the regions */
            printf("the last block ran on %zu tokens; the token of each patch:\n", tokens);
            for (size_t y = 0; y < G; y++) {
                for (size_t x = 0; x < G; x++) printf("%4d", map[y * G + x]);
                printf("\n");
            }
        }
    }
    tps_image_free(pixels);
    free(input);
    free(logits);
    free(grid);
    tps_workspace_free(ws);
    tps_model_close(model);
    return rc;
}
