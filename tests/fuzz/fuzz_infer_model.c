/* libtpsinfer's model loader (tps_model_open) on the bytes written to a file. A model that
 * opens is also run once on a blank image when it is small, so a config that passes the
 * loader's checks but breaks the forward is found too. */
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_h5.h"

#include "src/infer/tps_infer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write("model.h5", data, size, path, sizeof path);
    tps_model *m = NULL;
    tps_status st = tps_model_open(path, &m);
    fuzz_h5_no_nomem(st == TPS_ERR_NOMEM, "tps_model_open", tps_last_error());
    if (st != TPS_OK) {
        fuzz_h5_check_closed("tps_model_open");
        return 0;
    }
    fuzz_h5_check_closed("tps_model_open");
    tps_model_info info;
    if (tps_model_get_info(m, &info) != TPS_OK) abort();
    size_t S = (size_t)info.img_size, C = (size_t)info.in_chans, K = (size_t)info.num_classes;
    /* the forward's cost grows with tokens x width x depth: keep each run well under a second */
    if (S * S * C <= (1u << 16) && (size_t)info.num_patches * info.embed_dim * info.depth <= (1u << 20)) {
        tps_workspace *ws = NULL;
        if (tps_workspace_create(m, 1, &ws) == TPS_OK) {
            float *img = calloc(S * S * C, sizeof(float)), *logits = calloc(K, sizeof(float));
            if (!img || !logits) abort();
            tps_run(ws, img, 1, logits);
            free(img);
            free(logits);
            tps_workspace_free(ws);
        }
    }
    tps_model_close(m);
    return 0;
}
