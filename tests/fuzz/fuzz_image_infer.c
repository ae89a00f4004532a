/* libtpsinfer's image path: decode a file (tps_image_load), then the eval preprocessing
 * (resize the short side, centre crop, normalise) into the tiny test model's input. */
#include "tests/fuzz/fuzz_common.h"

#include "src/infer/tps_infer.h"

static tps_model *model;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!model && tps_model_open(TPSC_FIXTURE_DIR "/infer_tiny.h5", &model) != TPS_OK) {
        fprintf(stderr, "fuzz: %s\n", tps_last_error());
        abort();
    }
    char path[512];
    fuzz_write("image", data, size, path, sizeof path);
    uint8_t *px = NULL;
    int w = 0, h = 0;
    if (tps_image_load(path, &px, &w, &h) != TPS_OK) return 0;
    tps_model_info info;
    tps_model_get_info(model, &info);
    float *out = malloc((size_t)info.img_size * info.img_size * info.in_chans * sizeof(float));
    if (!out) abort();
    tps_preprocess(model, px, w, h, out);
    free(out);
    tps_image_free(px);
    return 0;
}
