/* HDF5 helpers: shape checks with the exact message, nested paths with dotted names, listing,
 * attributes of every kind (including fixed-length strings other tools write), and values
 * that do not fit the requested type. Exact comparisons: no arithmetic is involved. */
#include <criterion/criterion.h>

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "src/io/h5util.h"
#include "src/util/alloc.h"

static char file[64];
static tpsc_h5 h;

static void create_file(void) {
    snprintf(file, sizeof file, "/tmp/tpsc-h5util-%ld.h5", (long)getpid());
    cr_assert_eq(tpsc_h5_create(&h, file, NULL), TPSC_OK, "%s", tpsc_last_error());
}

static void remove_file(void) {
    tpsc_h5_close(&h);
    unlink(file);
}

TestSuite(h5util, .init = create_file, .fini = remove_file);

static void assert_message_has(const char *needle) {
    cr_assert(strstr(tpsc_last_error(), needle) != NULL, "message '%s' lacks '%s'", tpsc_last_error(), needle);
}

Test(h5util, shape_mismatch_names_file_dataset_and_both_shapes) {
    float w[96 * 32] = {0};
    cr_assert_eq(tpsc_h5_write_f32(&h, "/model/blocks.0.attn.qkv.weight", 2, (size_t[]){96, 32}, w), TPSC_OK);
    float *out = tpsc_malloc(96 * 33 * sizeof(float), "out");
    cr_assert_eq(tpsc_h5_read_f32(&h, "/model/blocks.0.attn.qkv.weight", 2, (size_t[]){96, 33}, out), TPSC_ERR_SHAPE);
    char want[160];
    snprintf(want, sizeof want, "%s: /model/blocks.0.attn.qkv.weight has shape [96, 32], expected [96, 33]", file);
    cr_assert_str_eq(tpsc_last_error(), want);
    cr_assert_eq(tpsc_h5_read_f32(&h, "/model/blocks.0.attn.qkv.weight", 1, (size_t[]){96 * 32}, out), TPSC_ERR_SHAPE);
    tpsc_free(out);
}

Test(h5util, dotted_names_live_in_one_group_and_list_sorted) {
    float x[2] = {1.5f, -2.0f}, y[2];
    cr_assert_eq(tpsc_h5_write_f32(&h, "/model/norm.weight", 1, (size_t[]){2}, x), TPSC_OK);
    cr_assert_eq(tpsc_h5_write_f32(&h, "/model/blocks.0.norm1.bias", 1, (size_t[]){2}, x), TPSC_OK);
    cr_assert_eq(tpsc_h5_write_f32(&h, "/model/cls_token", 3, (size_t[]){1, 1, 2}, x), TPSC_OK);
    cr_assert_eq(tpsc_h5_make_group(&h, "/model/subgroup"), TPSC_OK);
    cr_assert(tpsc_h5_exists(&h, "/model/norm.weight"));
    cr_assert(!tpsc_h5_exists(&h, "/model/norm"));
    cr_assert(!tpsc_h5_exists(&h, "/nope/deeper/x"));
    char **names;
    int n;
    cr_assert_eq(tpsc_h5_list_datasets(&h, "/model", &names, &n), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(n, 3, "groups are not datasets");
    cr_assert_str_eq(names[0], "blocks.0.norm1.bias");
    cr_assert_str_eq(names[1], "cls_token");
    cr_assert_str_eq(names[2], "norm.weight");
    tpsc_h5_free_names(names, n);
    cr_assert_eq(tpsc_h5_read_f32(&h, "/model/norm.weight", 1, (size_t[]){2}, y), TPSC_OK);
    cr_assert_eq(memcmp(x, y, sizeof x), 0);
    cr_assert_eq(tpsc_h5_read_f32(&h, "/model/head.weight", 1, (size_t[]){2}, y), TPSC_ERR_MISSING);
    assert_message_has("/model/head.weight");
    cr_assert_eq(tpsc_h5_list_datasets(&h, "/ema", &names, &n), TPSC_ERR_MISSING);
    assert_message_has("/ema");
}

Test(h5util, integers_are_range_checked_and_typed) {
    int64_t big = (int64_t)1 << 40, back;
    int32_t small;
    cr_assert_eq(tpsc_h5_write_i64(&h, "/state/step", 0, NULL, &big), TPSC_OK);
    cr_assert_eq(tpsc_h5_read_i64(&h, "/state/step", 0, NULL, &back), TPSC_OK);
    cr_assert_eq(back, big);
    cr_assert_eq(tpsc_h5_read_i32(&h, "/state/step", 0, NULL, &small), TPSC_ERR_FORMAT, "2^40 must not wrap into int32");
    assert_message_has("/state/step");
    float f;
    cr_assert_eq(tpsc_h5_read_f32(&h, "/state/step", 0, NULL, &f), TPSC_ERR_FORMAT, "integers are not float data");
    uint64_t u[2] = {UINT64_MAX, 1}, u2[2];
    cr_assert_eq(tpsc_h5_write_u64(&h, "/state/rng", 1, (size_t[]){2}, u), TPSC_OK);
    cr_assert_eq(tpsc_h5_read_u64(&h, "/state/rng", 1, (size_t[]){2}, u2), TPSC_OK);
    cr_assert_eq(u2[0], UINT64_MAX);
    cr_assert_eq(u2[1], 1);
}

Test(h5util, attributes_round_trip) {
    cr_assert_eq(tpsc_h5_write_attr_str(&h, "/", "arch", "deit_small_patch16_224"), TPSC_OK);
    cr_assert_eq(tpsc_h5_write_attr_str(&h, "/", "arch", "deit_tiny_patch16_224"), TPSC_OK, "rewriting replaces");
    cr_assert_eq(tpsc_h5_write_attr_i64(&h, "/", "depth", 12), TPSC_OK);
    cr_assert_eq(tpsc_h5_write_attr_f64(&h, "/", "ln_eps", 1e-6), TPSC_OK);
    int32_t loc[3] = {3, 6, 9}, loc2[8];
    float frac[3] = {0.7f, 0.49f, 0.343f}, frac2[8];
    const char *names[2] = {"cat", "dog"};
    cr_assert_eq(tpsc_h5_write_attr_i32s(&h, "/", "prune_loc", loc, 3), TPSC_OK);
    cr_assert_eq(tpsc_h5_write_attr_f32s(&h, "/", "keep_frac", frac, 3), TPSC_OK);
    cr_assert_eq(tpsc_h5_write_attr_strs(&h, "/", "class_names", names, 2), TPSC_OK);
    cr_assert_eq(tpsc_h5_write_attr_strs(&h, "/", "none", NULL, 0), TPSC_OK);

    char buf[32];
    cr_assert_eq(tpsc_h5_read_attr_strbuf(&h, "/", "arch", buf, sizeof buf), TPSC_OK);
    cr_assert_str_eq(buf, "deit_tiny_patch16_224");
    cr_assert_eq(tpsc_h5_read_attr_strbuf(&h, "/", "arch", buf, 8), TPSC_ERR_FORMAT, "too long for the buffer");
    int64_t depth;
    double eps;
    cr_assert_eq(tpsc_h5_read_attr_i64(&h, "/", "depth", &depth), TPSC_OK);
    cr_assert_eq(depth, 12);
    cr_assert_eq(tpsc_h5_read_attr_f64(&h, "/", "ln_eps", &eps), TPSC_OK);
    cr_assert_eq(eps, 1e-6);
    cr_assert_eq(tpsc_h5_read_attr_i64(&h, "/", "ln_eps", &depth), TPSC_ERR_FORMAT, "a float is not an integer");
    int n;
    cr_assert_eq(tpsc_h5_read_attr_i32s(&h, "/", "prune_loc", loc2, 8, &n), TPSC_OK);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(loc, loc2, sizeof loc), 0);
    cr_assert_eq(tpsc_h5_read_attr_i32s(&h, "/", "prune_loc", loc2, 2, &n), TPSC_ERR_FORMAT, "more than cap");
    cr_assert_eq(tpsc_h5_read_attr_f32s(&h, "/", "keep_frac", frac2, 8, &n), TPSC_OK);
    cr_assert_eq(memcmp(frac, frac2, sizeof frac), 0);
    char **got;
    cr_assert_eq(tpsc_h5_read_attr_strs(&h, "/", "class_names", &got, &n), TPSC_OK);
    cr_assert_eq(n, 2);
    cr_assert_str_eq(got[0], "cat");
    cr_assert_str_eq(got[1], "dog");
    tpsc_h5_free_names(got, n);
    cr_assert_eq(tpsc_h5_read_attr_strs(&h, "/", "none", &got, &n), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(n, 0);
    tpsc_h5_free_names(got, n);
    cr_assert_eq(tpsc_h5_read_attr_i64(&h, "/", "absent", &depth), TPSC_ERR_MISSING);
    assert_message_has("absent");
}

Test(h5util, fixed_length_strings_from_other_tools) {
    /* numpy 'S' arrays and some writers use fixed-length, NUL-padded strings. */
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 6);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t space = H5Screate_simple(1, (hsize_t[]){2}, NULL);
    hid_t a = H5Acreate2(h.id, "labels", t, space, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(a, 0);
    cr_assert_geq(H5Awrite(a, t, "ox\0\0\0\0zebra!"), 0);
    H5Aclose(a), H5Sclose(space), H5Tclose(t);
    char **got;
    int n;
    cr_assert_eq(tpsc_h5_read_attr_strs(&h, "/", "labels", &got, &n), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(n, 2);
    cr_assert_str_eq(got[0], "ox");
    cr_assert_str_eq(got[1], "zebra!");
    tpsc_h5_free_names(got, n);
}

Test(h5util, reads_what_h5py_writes) {
    /* tests/fixtures/vit_dense.h5 is written by h5py (tests/reference/make_fixtures.py): str
     * attributes as h5py stores them, Python ints and floats, float32 tensors in PyTorch shapes.
     * Reference values: the model configuration that script uses (C=32, depth 4, 4 heads). */
    tpsc_h5 fx;
    cr_assert_eq(tpsc_h5_open_read(&fx, TPSC_FIXTURE_DIR "/vit_dense.h5"), TPSC_OK, "%s", tpsc_last_error());
    char fmt[32];
    cr_assert_eq(tpsc_h5_read_attr_strbuf(&fx, "/", "format", fmt, sizeof fmt), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(fmt, "tpsc-fixture");
    int64_t depth, dim;
    double ratio;
    cr_assert_eq(tpsc_h5_read_attr_i64(&fx, "/", "depth", &depth), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_h5_read_attr_i64(&fx, "/", "embed_dim", &dim), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_h5_read_attr_f64(&fx, "/", "mlp_ratio", &ratio), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(depth, 4);
    cr_assert_eq(dim, 32);
    cr_assert_eq(ratio, 4.0);
    char **names;
    int n;
    cr_assert_eq(tpsc_h5_list_datasets(&fx, "/model", &names, &n), TPSC_OK, "%s", tpsc_last_error());
    /* 12 tensors per block, plus patch_embed (2), cls_token, pos_embed, norm (2), head (2). */
    cr_assert_eq(n, 12 * 4 + 8);
    tpsc_h5_free_names(names, n);
    int nd;
    size_t shape[TPSC_H5_MAX_DIMS];
    cr_assert_eq(tpsc_h5_shape(&fx, "/model/blocks.0.attn.qkv.weight", &nd, shape), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(nd, 2);
    cr_assert_eq(shape[0], 3 * 32);
    cr_assert_eq(shape[1], 32);
    cr_assert_eq(tpsc_h5_close(&fx), TPSC_OK);
}

/* Context is prepended once: a reader's message that already names the file (h5util's errors
 * start with the file's name) is not prefixed with the same path again, while other context
 * still is. */
Test(h5util, error_context_does_not_repeat_the_file_name) {
    tpsc_fail(TPSC_ERR_FORMAT, "a.h5: cannot list group /model");
    tpsc_error_context("%s: ", "a.h5");
    cr_assert_str_eq(tpsc_last_error(), "a.h5: cannot list group /model");
    tpsc_error_context("%s: ", "export");
    cr_assert_str_eq(tpsc_last_error(), "export: a.h5: cannot list group /model");
}
