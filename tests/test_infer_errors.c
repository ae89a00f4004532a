/* libtpsinfer on bad input: every case is a status code and a message naming the file and the
 * attribute or tensor at fault, never a crash (run under ASan/UBSan with -DTPSC_SANITIZE=ON).
 * Each test damages a copy of a valid inference file in one way. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "src/infer/tps_infer.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"
#include "support/small_model.h"

static char good[512];

/* A valid dtps inference file (img 16, patch 4, C 16, depth 3, K 5); weights are zeros. */
static void make_good(void) {
    vit_config c = {.img_size = 16, .patch_size = 4, .in_chans = 3, .embed_dim = 16, .depth = 3, .num_heads = 2,
                    .num_classes = 5, .mlp_ratio = 4.0f, .ln_eps = 1e-6f};
    snprintf(c.arch, sizeof c.arch, "custom");
    tok_config t = {.method = TOK_DTPS, .n_stages = 2, .prune_loc = {1, 2}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&t, 0.7f);
    vit_model m;
    cr_assert_eq(vit_model_create(&m, &c, &t), TPSC_OK, "%s", tpsc_last_error());
    sm_tmp_path(good, sizeof good, "test_infer_errors", "good.h5");
    tpsc_checkpoint ck = {.format = TPSC_FORMAT_INFERENCE, .vit = &c, .tps = &t, .params = &m.params};
    cr_assert_eq(tpsc_checkpoint_save(good, &ck), TPSC_OK, "%s", tpsc_last_error());
    vit_model_free(&m);
}

static void remove_good(void) { unlink(good); }

TestSuite(infer_errors, .init = make_good, .fini = remove_good);

static void copy_file(const char *from, const char *to, long keep_bytes) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    cr_assert(in && out, "copying %s to %s", from, to);
    char buf[4096];
    long done = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) {
        if (keep_bytes >= 0 && done + (long)n > keep_bytes) n = (size_t)(keep_bytes - done);
        fwrite(buf, 1, n, out);
        done += (long)n;
        if (keep_bytes >= 0 && done >= keep_bytes) break;
    }
    fclose(in);
    fclose(out);
}

static long file_size(const char *path) {
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    return (long)sb.st_size;
}

/* Opens `path`, expects `want` and a message containing both the path and `needle`. Every
 * message names `path`, which names the case. */
static void expect_open_fails(const char *path, tps_status want, const char *needle) {
    tps_model *m = (tps_model *)0x1;
    tps_status st = tps_model_open(path, &m);
    cr_expect_eq(st, want, "%s: status %s (%s), want %s", path, tps_status_str(st), tps_last_error(), tps_status_str(want));
    cr_expect_null(m, "%s: no model on failure", path);
    cr_expect(strstr(tps_last_error(), path) != NULL, "message does not name the file: %s", tps_last_error());
    if (needle) cr_expect(strstr(tps_last_error(), needle) != NULL, "message lacks '%s': %s", needle, tps_last_error());
}

/* A copy of the good file, opened read-write for damage. */
static hid_t damaged_copy(char *path, size_t len, const char *name) {
    sm_tmp_path(path, len, "test_infer_errors", name);
    copy_file(good, path, -1);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0, "reopening %s", path);
    return f;
}

static void set_attr_i64(hid_t f, const char *name, int64_t v) {
    cr_assert(H5Adelete(f, name) >= 0, "deleting attribute %s", name);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
}

static void set_attr_str(hid_t f, const char *name, const char *v) {
    cr_assert(H5Adelete(f, name) >= 0, "deleting attribute %s", name);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, t, &v) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
}

Test(infer_errors, the_good_file_opens) {
    tps_model *m;
    cr_assert_eq(tps_model_open(good, &m), TPS_OK, "%s", tps_last_error());
    tps_model_info info;
    cr_assert_eq(tps_model_get_info(m, &info), TPS_OK);
    cr_expect_str_eq(info.method, "dtps");
    cr_expect_eq(info.num_patches, 16);
    cr_expect_eq(info.n_stages, 2);
    tps_model_close(m);
}

Test(infer_errors, missing_file) {
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_errors", "does_not_exist.h5");
    expect_open_fails(path, TPS_ERR_IO, "cannot open");
}

Test(infer_errors, a_directory) { expect_open_fails(TPSC_BINARY_DIR, TPS_ERR_IO, "directory"); }

/* Writes n bytes to the temporary file `name`; its path goes to path. */
static void write_tmp(char *path, size_t len, const char *name, const void *bytes, size_t n) {
    sm_tmp_path(path, len, "test_infer_errors", name);
    FILE *fp = fopen(path, "wb");
    cr_assert(fp && fwrite(bytes, 1, n, fp) == n && fclose(fp) == 0, "writing %s", path);
}

Test(infer_errors, not_hdf5) {
    char path[512];
    const char text[] = "this is not an HDF5 file\n";
    write_tmp(path, sizeof path, "text.h5", text, strlen(text));
    expect_open_fails(path, TPS_ERR_FORMAT, "not an HDF5 file");
    unlink(path);
}

Test(infer_errors, empty_file) {
    char path[512];
    write_tmp(path, sizeof path, "empty.h5", "", 0);
    expect_open_fails(path, TPS_ERR_FORMAT, "not an HDF5 file");
    unlink(path);
}

/* Cut at several lengths: the superblock's end-of-file no longer matches, or the data is gone. */
Test(infer_errors, truncated) {
    char path[512];
    sm_tmp_path(path, sizeof path, "test_infer_errors", "truncated.h5");
    const long size = file_size(good);
    const long cuts[] = {100, size / 3, size / 2, size - 64};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        copy_file(good, path, cuts[i]);
        tps_model *m = NULL;
        tps_status st = tps_model_open(path, &m);
        cr_expect(st == TPS_ERR_FORMAT, "cut at %ld of %ld: status %s (%s)", cuts[i], size, tps_status_str(st),
                  tps_last_error());
        cr_expect(strstr(tps_last_error(), path) != NULL, "message does not name the file: %s", tps_last_error());
        tps_model_close(m);
    }
    unlink(path);
}

/* One way to damage the good file: an attribute rewritten or deleted, or a tensor deleted. */
typedef enum { SET_I64, SET_STR, DELETE_ATTR, DELETE_TENSOR } damage_kind;

/* Arrays, not pointers: Criterion hands each parameter to a test process of its own, where a
 * pointer into this one's memory would be garbage. */
typedef struct {
    char name[40]; /* the copy is <name>.h5, so every failure message names the case */
    damage_kind kind;
    char target[48]; /* the attribute or tensor */
    int64_t i64;     /* SET_I64's value */
    char str[24];    /* SET_STR's value */
    tps_status want;
    char needle[48]; /* what the message must say besides the path */
} damage_case;

static damage_case damage_cases[] = {
    {"newer_format_version", SET_I64, "format_version", 99, "", TPS_ERR_FORMAT, "format_version 99"},
    {"a_training_checkpoint", SET_STR, "format", 0, "tpsc-checkpoint", TPS_ERR_FORMAT, "tpsc export"},
    {"missing_attribute", DELETE_ATTR, "depth", 0, "", TPS_ERR_MISSING, "'depth'"},
    {"attribute_of_the_wrong_type", SET_STR, "embed_dim", 0, "sixteen", TPS_ERR_FORMAT, "'embed_dim'"},
    {"heads_do_not_divide_the_width", SET_I64, "num_heads", 3, "", TPS_ERR_FORMAT, "num_heads"},
    {"unknown_method", SET_STR, "method", 0, "magic", TPS_ERR_FORMAT, "magic"},
    {"missing_tensor", DELETE_TENSOR, "/model/blocks.1.attn.qkv.weight", 0, "", TPS_ERR_MISSING,
     "blocks.1.attn.qkv.weight"},
    {"missing_predictor", DELETE_TENSOR, "/model/score_predictor.1.out_conv.4.bias", 0, "", TPS_ERR_MISSING,
     "score_predictor.1.out_conv.4.bias"},
    /* the architecture says a width the tensors do not have */
    {"architecture_disagrees_with_tensors", SET_I64, "embed_dim", 32, "", TPS_ERR_SHAPE, "cls_token"},
};

ParameterizedTestParameters(infer_errors, damaged_file) {
    return cr_make_param_array(damage_case, damage_cases, sizeof damage_cases / sizeof damage_cases[0]);
}

ParameterizedTest(damage_case *c, infer_errors, damaged_file) {
    char path[512], file[128];
    snprintf(file, sizeof file, "%s.h5", c->name);
    hid_t f = damaged_copy(path, sizeof path, file);
    switch (c->kind) {
    case SET_I64: set_attr_i64(f, c->target, c->i64); break;
    case SET_STR: set_attr_str(f, c->target, c->str); break;
    case DELETE_ATTR: cr_assert(H5Adelete(f, c->target) >= 0, "%s: deleting attribute %s", c->name, c->target); break;
    case DELETE_TENSOR:
        cr_assert(H5Ldelete(f, c->target, H5P_DEFAULT) >= 0, "%s: deleting %s", c->name, c->target);
        break;
    }
    H5Fclose(f);
    expect_open_fails(path, c->want, c->needle);
    unlink(path);
}

Test(infer_errors, tensor_shape_disagrees) {
    char path[512];
    hid_t f = damaged_copy(path, sizeof path, "shape.h5");
    cr_assert(H5Ldelete(f, "/model/head.weight", H5P_DEFAULT) >= 0);
    hsize_t dims[2] = {6, 16};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "/model/head.weight", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(d >= 0);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    expect_open_fails(path, TPS_ERR_SHAPE, "head.weight has shape [6,16], the architecture needs [5,16]");
    unlink(path);
}

Test(infer_errors, image_that_does_not_decode) {
    char path[512];
    const unsigned char png_start[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    write_tmp(path, sizeof path, "broken.png", png_start, sizeof png_start);
    uint8_t *px = (uint8_t *)0x1;
    int w, h;
    cr_expect_eq(tps_image_load(path, &px, &w, &h), TPS_ERR_DECODE, "%s", tps_last_error());
    cr_expect_null(px);
    cr_expect(strstr(tps_last_error(), path) != NULL, "message: %s", tps_last_error());
    unlink(path);
    cr_expect_eq(tps_image_load(path, &px, &w, &h), TPS_ERR_IO, "a missing image: %s", tps_last_error());
}

Test(infer_errors, null_arguments) {
    tps_model *m = NULL;
    cr_expect_eq(tps_model_open(NULL, &m), TPS_ERR_ARG);
    cr_expect_eq(tps_model_open(good, NULL), TPS_ERR_ARG);
    cr_expect_eq(tps_workspace_create(NULL, 1, NULL), TPS_ERR_ARG);
    cr_expect_eq(tps_run(NULL, NULL, 1, NULL), TPS_ERR_ARG);
    cr_expect_eq(tps_topk(NULL, 1, 1, 1, NULL, NULL), TPS_ERR_ARG);
    cr_expect_str_neq(tps_status_str(TPS_ERR_SHAPE), "");
    tps_model_close(NULL);
    tps_workspace_free(NULL);
}

/* top-k by hand: logits [0, 2, 1, 2] -> classes 1, 3 (tie: lower index first), 2;
 * probabilities e^x / sum e^x with sum = 1 + 2e^2 + e (reference computed here in double). */
Test(infer_errors, topk_by_hand) {
    const float logits[4] = {0, 2, 1, 2};
    int32_t idx[3];
    float prob[3];
    cr_assert_eq(tps_topk(logits, 1, 4, 3, idx, prob), TPS_OK);
    cr_expect_eq(idx[0], 1);
    cr_expect_eq(idx[1], 3);
    cr_expect_eq(idx[2], 2);
    const double z = 1 + 2 * exp(2.0) + exp(1.0);
    cr_expect_float_eq(prob[0], exp(2.0) / z, 1e-6);
    cr_expect_float_eq(prob[2], exp(1.0) / z, 1e-6);
    cr_expect_eq(tps_topk(logits, 1, 4, 5, idx, prob), TPS_ERR_ARG, "k > K");
}

/* A complete PNG whose header claims 16000 x 16000 pixels (768 MB of RGB, under stb_image's own
 * 1 GB limit) in a 67-byte file: refused before stb_image allocates what it claims
 * (data/image_check.h), naming the file. */
Test(infer_errors, image_header_larger_than_its_file) {
    static const unsigned char png[] = {
        0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 0x3e, 0x80, 0, 0, 0x3e,
        0x80, 8, 2, 0, 0, 0, 0x6a, 0x4e, 0x1a, 0x0d, 0, 0, 0, 10, 'I', 'D', 'A', 'T', 0x78, 0x9c, 0x63, 0, 0, 0,
        0, 1, 0, 1, 0x0d, 0x0a, 0x2d, 0xb4, 0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    char path[512];
    write_tmp(path, sizeof path, "huge.png", png, sizeof png);
    uint8_t *px = NULL;
    int w, h;
    cr_expect_eq(tps_image_load(path, &px, &w, &h), TPS_ERR_DECODE, "%s", tps_last_error());
    cr_expect(strstr(tps_last_error(), path) && strstr(tps_last_error(), "16000x16000"), "message: %s", tps_last_error());
    unlink(path);
}
