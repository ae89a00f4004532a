/* libhdf5's first read of a file in a child process (src/common/h5_probe.h): the inputs on
 * which libhdf5 1.10 itself crashes or hangs are refused by every loader with a message naming
 * the file, never a signal; the probe alone (without the string-heap check) sees the crashes
 * and the hang; a valid file passes and loads bit-identically with the probe on and off. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "src/common/h5_probe.h"
#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"
#include "support/files.h"

#define CORPUS TPSC_SOURCE_DIR "/tests/fuzz/corpus/"
#define MODEL CORPUS "infer_model/dtps_infer.h5"
#define CHECKPOINT CORPUS "checkpoint/dtps_train.h5"

/* Every input on which libhdf5 crashed or hung, kept where the fuzz replay runs them. */
static const char *const libhdf5_inputs[] = {
    "checkpoint/regress-libhdf5-overflow-H5MM_strdup-attribute-name",
    "h5_dataset/regress-libhdf5-hang-H5T__conv_vlen-huge-length",
    "h5_dataset/regress-libhdf5-overlap-H5HG_read-vlen-class-names",
    "h5_dataset/regress-libhdf5-segv-H5F__accum_read-local-heap",
    "h5_dataset/regress-libhdf5-segv-H5VM_memcpyvv",
    "infer_model/regress-libhdf5-hang-H5HG__protect-vlen-attribute",
    "infer_model/regress-libhdf5-negative-size-H5HG_read-vlen-attribute",
    "infer_model/regress-libhdf5-overflow-H5HG_read-vlen-attribute",
};
#define N_INPUTS (sizeof libhdf5_inputs / sizeof libhdf5_inputs[0])

static void corpus_path(char *buf, size_t cap, const char *name) { snprintf(buf, cap, "%s%s", CORPUS, name); }

/* The framework's checkpoint loader as `tpsc eval` and an init run it: the config, the model it
 * describes, its weights; the first failure. */
static tpsc_status framework_load(const char *path) {
    vit_config vit;
    tok_config tps;
    tpsc_checkpoint_info info;
    tpsc_status st = tpsc_checkpoint_read_config(path, &vit, &tps, &info);
    if (st != TPSC_OK) return st;
    vit_model m;
    if ((st = vit_model_create(&m, &vit, &tps)) != TPSC_OK) return st;
    st = tpsc_checkpoint_load_params(path, "/model", &m.params, NULL, NULL);
    vit_model_free(&m);
    return st;
}

/* Each loader refuses each input with a message naming the file; a crash of libhdf5 in the
 * loader would end this test with the signal. */
Test(h5_probe, every_loader_refuses_every_libhdf5_input, .timeout = 300) {
    for (size_t i = 0; i < N_INPUTS; i++) {
        char path[1024];
        corpus_path(path, sizeof path, libhdf5_inputs[i]);
        const bool segv = strstr(path, "segv-") != NULL;

        tps_model *m = NULL;
        cr_assert_neq(tps_model_open(path, &m), TPS_OK, "%s", path);
        cr_assert(strstr(tps_last_error(), path), "libtpsinfer: %s", tps_last_error());
        if (segv) cr_assert(strstr(tps_last_error(), "libhdf5 crashed reading it"), "%s", tps_last_error());

        cr_assert_neq(framework_load(path), TPSC_OK, "%s", path);
        cr_assert(strstr(tpsc_last_error(), path), "checkpoint: %s", tpsc_last_error());
        if (segv) cr_assert(strstr(tpsc_last_error(), "libhdf5 crashed reading it"), "%s", tpsc_last_error());

        tpsc_dataset *ds = NULL;
        cr_assert_neq(tpsc_dataset_open_h5(&ds, path), TPSC_OK, "%s", path);
        cr_assert(strstr(tpsc_last_error(), path), "data set: %s", tpsc_last_error());
        if (segv) cr_assert(strstr(tpsc_last_error(), "libhdf5 crashed reading it"), "%s", tpsc_last_error());
        tpsc_clear_error();
    }
}

/* The probe by itself, before any check of ours: libhdf5 crashes on the two local-heap and
 * layout inputs (SIGSEGV in this build), and loops forever on the empty free-space object,
 * which the bound ends. */
Test(h5_probe, the_child_sees_crashes_and_hangs, .timeout = 120) {
    char path[1024], problem[192];
    corpus_path(path, sizeof path, "h5_dataset/regress-libhdf5-segv-H5F__accum_read-local-heap");
    cr_assert_eq(h5_probe(path, NULL, 6410, problem, sizeof problem), H5_PROBE_CRASHED, "%s", path);
    cr_assert(strstr(problem, "corrupt HDF5 metadata: libhdf5 crashed reading it"), "%s", problem);
    corpus_path(path, sizeof path, "h5_dataset/regress-libhdf5-segv-H5VM_memcpyvv");
    cr_assert_eq(h5_probe(path, NULL, 8072, problem, sizeof problem), H5_PROBE_CRASHED, "%s", path);

    cr_assert_eq(setenv("TPSC_HDF5_PROBE_SECONDS", "1", 1), 0);
    corpus_path(path, sizeof path, "infer_model/regress-libhdf5-hang-H5HG__protect-vlen-attribute");
    cr_assert_eq(h5_probe(path, NULL, 37688, problem, sizeof problem), H5_PROBE_HUNG, "%s", path);
    cr_assert(strstr(problem, "libhdf5 did not finish reading it in 1 s"), "%s", problem);
    unsetenv("TPSC_HDF5_PROBE_SECONDS");
}

/* A file image goes through the child too (tps_model_open_memory). */
Test(h5_probe, a_file_image_is_probed) {
    char path[1024];
    corpus_path(path, sizeof path, "h5_dataset/regress-libhdf5-segv-H5VM_memcpyvv");
    size_t n;
    void *image = tfile_read(path, &n);
    tps_model *m = NULL;
    cr_assert_eq(tps_model_open_memory(image, n, "segv.h5", NULL, &m), TPS_ERR_FORMAT);
    cr_assert(strstr(tps_last_error(), "segv.h5: corrupt HDF5 metadata: libhdf5 crashed"), "%s", tps_last_error());
    free(image);
}

/* Valid files pass, and what the loaders read is the same bit for bit with the probe on and
 * off (the parent reads the file as before; the child only reads it first). */
Test(h5_probe, valid_files_load_bit_identically) {
    char problem[192];
    cr_assert_eq(h5_probe(MODEL, NULL, 0, problem, sizeof problem), H5_PROBE_CLEAN, "%s", problem);
    cr_assert_eq(h5_probe(CHECKPOINT, NULL, 0, problem, sizeof problem), H5_PROBE_CLEAN, "%s", problem);

    tps_model *probed = NULL, *unprobed = NULL;
    cr_assert_eq(tps_model_open(MODEL, &probed), TPS_OK, "%s", tps_last_error());
    const tps_open_options no_probe = {.unprobed = 1};
    cr_assert_eq(tps_model_open_ex(MODEL, &no_probe, &unprobed), TPS_OK, "%s", tps_last_error());
    tps_model_info info;
    cr_assert_eq(tps_model_get_info(probed, &info), TPS_OK);
    const size_t S = (size_t)info.img_size, K = (size_t)info.num_classes;
    float *img = malloc(3 * S * S * sizeof(float)), *a = calloc(K, sizeof(float)), *b = calloc(K, sizeof(float));
    cr_assert(img && a && b);
    for (size_t i = 0; i < 3 * S * S; i++) img[i] = (float)((i * 37) % 101) / 101.0f - 0.5f;
    tps_workspace *wa = NULL, *wb = NULL;
    cr_assert_eq(tps_workspace_create(probed, 1, &wa), TPS_OK);
    cr_assert_eq(tps_workspace_create(unprobed, 1, &wb), TPS_OK);
    cr_assert_eq(tps_run(wa, img, 1, a), TPS_OK);
    cr_assert_eq(tps_run(wb, img, 1, b), TPS_OK);
    cr_assert_eq(memcmp(a, b, K * sizeof(float)), 0, "logits differ with the probe on and off");
    tps_workspace_free(wa), tps_workspace_free(wb);
    tps_model_close(probed), tps_model_close(unprobed);
    free(img), free(a), free(b);

    float *w[2] = {NULL, NULL};
    size_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
        cr_assert_eq(setenv("TPSC_HDF5_PROBE", pass ? "off" : "on", 1), 0);
        vit_config vit;
        tok_config tps;
        cr_assert_eq(tpsc_checkpoint_read_config(CHECKPOINT, &vit, &tps, NULL), TPSC_OK, "%s", tpsc_last_error());
        vit_model vm;
        cr_assert_eq(vit_model_create(&vm, &vit, &tps), TPSC_OK, "%s", tpsc_last_error());
        cr_assert_eq(tpsc_checkpoint_load_params(CHECKPOINT, "/model", &vm.params, NULL, NULL), TPSC_OK, "%s",
                     tpsc_last_error());
        total = vm.params.total;
        w[pass] = malloc(total * sizeof(float));
        cr_assert(w[pass]);
        memcpy(w[pass], vm.params.data, total * sizeof(float));
        vit_model_free(&vm);
    }
    unsetenv("TPSC_HDF5_PROBE");
    cr_assert_eq(memcmp(w[0], w[1], total * sizeof(float)), 0, "weights differ with the probe on and off");
    free(w[0]), free(w[1]);
}

/* TPSC_HDF5_PROBE=off leaves only the checks of ours: the gate then says nothing of a file
 * that would crash libhdf5 (it is not opened here). */
Test(h5_probe, the_environment_turns_it_off) {
    char path[1024];
    corpus_path(path, sizeof path, "h5_dataset/regress-libhdf5-segv-H5VM_memcpyvv");
    h5_file_facts facts;
    cr_assert_eq(h5_file_vet(path, true, &facts), H5_FILE_BAD_METADATA);
    cr_assert(h5_file_check_is_format(H5_FILE_BAD_METADATA));
    cr_assert_eq(h5_file_vet(path, false, &facts), H5_FILE_OK);
    cr_assert_eq(setenv("TPSC_HDF5_PROBE", "off", 1), 0);
    cr_assert(!h5_probe_enabled());
    cr_assert_eq(h5_file_vet(path, true, &facts), H5_FILE_OK);
    unsetenv("TPSC_HDF5_PROBE");
    cr_assert(h5_probe_enabled());
}

/* A TPSC_HDF5_PROBE_SECONDS that is not a whole number of seconds from 1 to 3600 is an error
 * naming the variable and its value, from the probe and from every loader, before any child
 * runs; never a silent 30 s. With the probe off the bound is not read. */
Test(h5_probe, a_bad_bound_is_an_error) {
    static const char *const bad[] = {"", "abc", "30s", "1.5", " 5", "+5", "0", "-5", "3601", "99999999999999999999999"};
    char problem[192];
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_assert_eq(setenv("TPSC_HDF5_PROBE_SECONDS", bad[i], 1), 0);
        cr_assert_eq(h5_probe(MODEL, NULL, 0, problem, sizeof problem), H5_PROBE_BAD_SETTING, "'%s'", bad[i]);
        char want[96];
        snprintf(want, sizeof want, "TPSC_HDF5_PROBE_SECONDS is '%s'", bad[i]);
        cr_assert(strstr(problem, want), "'%s': %s", bad[i], problem);

        h5_file_facts facts;
        cr_assert_eq(h5_file_vet(MODEL, true, &facts), H5_FILE_BAD_SETTING, "'%s'", bad[i]);
        cr_assert(!h5_file_check_is_format(H5_FILE_BAD_SETTING));
        tps_model *m = NULL;
        cr_assert_eq(tps_model_open(MODEL, &m), TPS_ERR_ARG, "'%s'", bad[i]);
        cr_assert(strstr(tps_last_error(), "TPSC_HDF5_PROBE_SECONDS"), "%s", tps_last_error());
        cr_assert_eq(framework_load(CHECKPOINT), TPSC_ERR_CONFIG, "'%s'", bad[i]);
        cr_assert(strstr(tpsc_last_error(), "TPSC_HDF5_PROBE_SECONDS"), "%s", tpsc_last_error());
        tpsc_clear_error();
    }
    cr_assert_eq(setenv("TPSC_HDF5_PROBE", "off", 1), 0);
    tps_model *m = NULL;
    cr_assert_eq(tps_model_open(MODEL, &m), TPS_OK, "%s", tps_last_error());
    tps_model_close(m);
    unsetenv("TPSC_HDF5_PROBE");
    cr_assert_eq(setenv("TPSC_HDF5_PROBE_SECONDS", "3600", 1), 0);
    cr_assert_eq(h5_probe(MODEL, NULL, 0, problem, sizeof problem), H5_PROBE_CLEAN, "%s", problem);
    unsetenv("TPSC_HDF5_PROBE_SECONDS");
}
