/* The framework's checkpoint loader: every reader a resume, an init or an export goes through,
 * on the bytes written to a file. The model is built from the file's config (as `tpsc train`
 * with run.resume does) only after the config passed its checks. */
#include "tests/fuzz/fuzz_common.h"
#include "tests/fuzz/fuzz_h5.h"

#include "src/io/checkpoint.h"
#include "src/util/alloc.h"

/* Every reader's status: NOMEM means the file made us allocate past the cap (fuzz_h5.h). */
static tpsc_status ck(tpsc_status st) {
    fuzz_h5_no_nomem(st == TPSC_ERR_NOMEM, "checkpoint reader", tpsc_last_error());
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[512];
    fuzz_write("ck.h5", data, size, path, sizeof path);
    vit_config vit;
    tok_config tps;
    tpsc_checkpoint_info info;
    if (ck(tpsc_checkpoint_read_config(path, &vit, &tps, &info)) == TPSC_OK) {
        vit_model m;
        if (ck(vit_model_create(&m, &vit, &tps)) == TPSC_OK) {
            ag_params *p = &m.params;
            tpsc_load_opts opts = {.ignore_extra = true};
            tpsc_load_report rep;
            tpsc_load_report_init(&rep);
            ck(tpsc_checkpoint_load_params(path, "/model", p, &opts, &rep));
            tpsc_load_report_free(&rep);
            float *buf[3] = {tpsc_calloc(p->total, sizeof(float), "m"), tpsc_calloc(p->total, sizeof(float), "v"),
                             tpsc_calloc(p->total, sizeof(float), "ema")};
            uint64_t rng[8 * 4];
            int64_t pos[16];
            int64_t *counts = tpsc_calloc((size_t)p->count, sizeof(int64_t), "counts");
            tpsc_checkpoint_state cs = {.opt_m = buf[0], .opt_v = buf[1], .ema = buf[2], .rng_states = rng,
                                        .rng_cap = 8, .loader_pos = pos, .loader_cap = 16, .opt_param_step = counts};
            ck(tpsc_checkpoint_load_state(path, p, &cs));
            ck(tpsc_checkpoint_load_tensors(path, "/ema", p, buf[2], NULL, NULL));
            for (int i = 0; i < 3; i++) tpsc_free(buf[i]);
            tpsc_free(counts);
            vit_model_free(&m);
        }
    }
    char *text = NULL;
    if (ck(tpsc_checkpoint_read_recipe(path, &text)) == TPSC_OK) tpsc_free(text);
    char **names = NULL;
    int n = 0;
    if (ck(tpsc_checkpoint_read_class_names(path, &names, &n)) == TPSC_OK) tpsc_checkpoint_free_names(names, n);
    tpsc_clear_error();
    fuzz_h5_check_closed("the checkpoint readers");
    return 0;
}
