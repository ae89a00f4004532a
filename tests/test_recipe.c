/* Recipes: the shipped ones load, bad ones fail with file:line and key, overrides, round trip.
 *
 * Reference values are the ones the task and docs state (the defaults docs/recipes.md lists, the official
 * dTPS script's numbers, tps-method.md's token counts); none is copied from our own output.
 * Every numeric comparison is exact (tolerance 0): a recipe value is the float nearest to the
 * decimal written, the same float the C literal in the assertion gives. */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <criterion/redirect.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/recipe/recipe.h"
#include "src/recipe/schema.h"
#include "src/util/alloc.h"
#include "src/util/log.h"

#define FIXTURE(name) TPSC_FIXTURE_DIR "/recipes/" name
#define SHIPPED(name) TPSC_SOURCE_DIR "/recipes/" name

static tpsc_recipe *new_recipe(void) {
    tpsc_recipe *r = tpsc_calloc(1, sizeof *r, "test recipe");
    cr_assert_not_null(r);
    return r;
}

static void load_ok(tpsc_recipe *r, const char *path) {
    tpsc_status st = tpsc_recipe_load(r, path);
    cr_assert_eq(st, TPSC_OK, "%s: %s", path, tpsc_last_error());
}

/* The message must say where (file:line), which key, and optionally why. */
Test(recipe, schema_table_is_consistent) {
    cr_assert_eq(recipe_schema_check(), TPSC_OK, "%s", tpsc_last_error());
}

/* Reference: the defaults listed in docs/recipes.md (and recipe.h). */
Test(recipe, defaults_are_filled) {
    tpsc_recipe *r = new_recipe();
    tpsc_recipe_defaults(r);
    cr_assert_str_eq(r->model.vit.arch, "custom");
    cr_assert_eq(r->model.vit.img_size, 224);
    cr_assert_eq(r->model.vit.patch_size, 16);
    cr_assert_eq(r->model.vit.embed_dim, 384);
    cr_assert_eq(r->model.vit.depth, 12);
    cr_assert_eq(r->model.vit.num_heads, 6);
    cr_assert_eq(r->model.vit.num_classes, 1000);
    cr_assert_eq(r->model.vit.mlp_ratio, 4.0f);
    cr_assert_eq(r->model.vit.ln_eps, 1e-6f);
    cr_assert_eq(r->model.init_strict, false);
    cr_assert_eq(r->tps.cfg.method, TOK_NONE);
    cr_assert_eq(r->tps.cfg.n_stages, 0, "method none: no stages for the model");
    cr_assert_eq(r->tps.n_prune_loc, 3);
    cr_assert_eq(r->tps.prune_loc[0], 3);
    cr_assert_eq(r->tps.prune_loc[2], 9);
    cr_assert_eq(r->tps.n_keep_ratio, 1);
    cr_assert_eq(r->tps.keep_ratio[0], 0.7f);
    cr_assert_eq(r->tps.cfg.squeeze_temp, 1.0f);
    cr_assert_eq(r->data.format, TPSC_DATA_FASHION_MNIST);
    cr_assert_eq(r->data.batch_size, 128);
    cr_assert_eq(r->data.eval_batch_size, 256);
    cr_assert_eq(r->data.drop_last, true);
    cr_assert_eq(r->data.on_bad_image, TPSC_BAD_IMAGE_ERROR);
    cr_assert_eq(r->augment.n_scale, 2);
    cr_assert_eq(r->augment.scale[0], 0.08f);
    cr_assert_eq(r->augment.n_mean, 3);
    cr_assert_eq(r->augment.mean[2], 0.406f);
    cr_assert_eq(r->augment.std[0], 0.229f);
    cr_assert_eq(r->augment.mixup, 0.8f);
    cr_assert_eq(r->augment.random_erase, 0.25f);
    cr_assert_eq(r->optim.name, TPSC_OPTIM_ADAMW);
    cr_assert_eq(r->optim.lr, 5e-4f);
    cr_assert_eq(r->optim.weight_decay, 0.05f);
    cr_assert_eq(r->optim.eps, 1e-8f);
    cr_assert_eq(r->optim.ema_decay, 0.99996f);
    cr_assert_eq(r->schedule.epochs, 30);
    cr_assert_eq(r->schedule.warmup_epochs, 5);
    cr_assert_eq(r->schedule.warmup_lr, 1e-6f);
    cr_assert_eq(r->schedule.min_lr, 1e-5f);
    cr_assert_eq(r->schedule.sched, TPSC_SCHED_COSINE);
    cr_assert_eq(r->loss.ratio_weight, 2.0f);
    cr_assert_eq(r->loss.distill_weight, 0.5f);
    cr_assert_eq(r->loss.distill_token, TPSC_DISTILL_TOKEN_KL);
    cr_assert_str_eq(r->run.out_dir, "checkpoints");
    cr_assert_eq(r->run.log_every, 10);
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_OK, "defaults must be valid: %s", tpsc_last_error());
    tpsc_free(r);
}

Test(recipe, every_shipped_recipe_loads_and_validates) {
    DIR *dir = opendir(TPSC_SOURCE_DIR "/recipes");
    cr_assert_not_null(dir, "no recipes/ directory");
    int loaded = 0;
    struct dirent *e;
    tpsc_recipe *r = new_recipe();
    while ((e = readdir(dir))) {
        size_t len = strlen(e->d_name);
        if (len < 5 || strcmp(e->d_name + len - 4, ".ini") != 0) continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/recipes/%s", TPSC_SOURCE_DIR, e->d_name);
        load_ok(r, path);
        cr_assert_eq(tpsc_recipe_validate(r), TPSC_OK, "%s: %s", path, tpsc_last_error());
        loaded++;
    }
    closedir(dir);
    tpsc_free(r);
    cr_assert_geq(loaded, 5, "expected the five shipped recipes, found %d", loaded);
}

/* Reference: torch_codebase/scripts/deit/dtps_deit_s_30e.sh of megvii-research/TPS-CVPR2023. */
Test(recipe, official_dtps_deit_s_numbers) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, SHIPPED("deit_s_dtps.ini"));
    cr_assert_str_eq(r->model.vit.arch, "deit_small_patch16_224");
    cr_assert_eq(r->model.vit.embed_dim, 384, "from the named arch");
    cr_assert_eq(r->tps.cfg.method, TOK_DTPS);
    cr_assert_eq(r->tps.cfg.n_stages, 3);
    cr_assert_eq(r->optim.lr, 2.5e-4f);
    cr_assert_eq(r->optim.backbone_lr_scale, 0.01f);
    cr_assert_eq(r->data.batch_size, 1024 / 8, "per-process batch of the 8-process script");
    cr_assert_eq(r->schedule.epochs, 30);
    cr_assert_eq(r->loss.distill_weight, 0.5f);
    cr_assert_eq(r->loss.ratio_weight, 2.0f);
    cr_assert_neq(r->teacher.checkpoint[0], '\0');
    cr_assert_str_eq(r->augment.randaug, "rand-m9-mstd0.5-inc1");
    cr_assert_str_eq(r->run.name, "deit_s_dtps", "run.name defaults to the file stem");
    tpsc_free(r);
}

/* Reference: tps-method.md, rho = 0.7 over N = 196 patches keeps 137, 96, 67 tokens, i.e.
 * floor(196 * rho^(s+1)) with rho^(s+1) computed as Python does, in double. Exact integers. */
Test(recipe, single_keep_ratio_compounds) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, SHIPPED("deit_s_dtps.ini"));
    const size_t expected[3] = {137, 96, 67};
    for (int s = 0; s < 3; s++) {
        cr_assert_eq(r->tps.cfg.prune_loc[s], 3 * (s + 1));
        cr_assert_eq(r->tps.cfg.keep_frac[s], (float)pow(0.7, s + 1), "stage %d", s);
        cr_assert_eq((size_t)floor(196.0 * (double)r->tps.cfg.keep_frac[s]), expected[s], "stage %d", s);
    }
    tpsc_free(r);
}

Test(recipe, keep_ratio_list_is_cumulative_and_unset_keys_keep_defaults) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, FIXTURE("good_small.ini"));
    cr_assert_eq(r->tps.cfg.n_stages, 2);
    cr_assert_eq(r->tps.cfg.keep_frac[0], 0.8f);
    cr_assert_eq(r->tps.cfg.keep_frac[1], 0.5f);
    cr_assert_eq(r->model.vit.depth, 4);
    cr_assert_eq(r->optim.beta2, 0.999f, "not in the file: default");
    cr_assert_eq(r->data.batch_size, 128, "not in the file: default");
    cr_assert_eq(r->origin.line[recipe_key_find("optim", "lr")], 17, "lr is on line 17 of good_small.ini");
    cr_assert_eq(r->origin.line[recipe_key_find("optim", "beta2")], 0);
    tpsc_free(r);
}

Test(recipe, missing_file_is_an_io_error_naming_the_path) {
    tpsc_recipe *r = new_recipe();
    tpsc_status st = tpsc_recipe_load(r, FIXTURE("no_such_recipe.ini"));
    cr_assert_eq(st, TPSC_ERR_IO);
    cr_assert(strstr(tpsc_last_error(), "no_such_recipe.ini"), "%s", tpsc_last_error());
    tpsc_free(r);
}

Test(recipe, ini_details_comments_crlf_bom) {
    tpsc_recipe *r = new_recipe();
    const char *text = "\xEF\xBB\xBF; a BOM, then CRLF line ends\r\n"
                       "# hash comment\r\n"
                       "[optim]\r\n"
                       "lr = 1e-3 ; an inline comment\r\n"
                       "  ; an indented comment is still a comment\r\n"
                       "freeze = cls_token, pos_embed\r\n";
    cr_assert_eq(tpsc_recipe_load_string(r, text, "inline.ini"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(r->optim.lr, 1e-3f);
    cr_assert_str_eq(r->optim.freeze, "cls_token, pos_embed");
    cr_assert_eq(r->origin.line[recipe_key_find("optim", "freeze")], 6);
    /* '#' after a value is not a comment in inih: the value is then not a number. */
    cr_assert_eq(tpsc_recipe_load_string(r, "[optim]\nlr = 1e-3 # peak\n", "hash.ini"), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "hash.ini:2: [optim] lr: expected a number"), "%s", tpsc_last_error());
    /* A section header right after the BOM is still checked. */
    cr_assert_eq(tpsc_recipe_load_string(r, "\xEF\xBB\xBF[optimizer]\n", "bom.ini"), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "bom.ini:1: [optimizer]: unknown section"), "%s", tpsc_last_error());
    tpsc_free(r);
}

Test(recipe, directory_is_an_io_error) {
    tpsc_recipe *r = new_recipe();
    cr_assert_eq(tpsc_recipe_load(r, TPSC_FIXTURE_DIR "/recipes"), TPSC_ERR_IO, "%s", tpsc_last_error());
    cr_assert(strstr(tpsc_last_error(), "fixtures/recipes"), "%s", tpsc_last_error());
    tpsc_free(r);
}

/* A recipe file in tests/fixtures/recipes/ that must be refused: the status, and a message
 * "<file>:<line>: " naming the key and saying `detail` ("": the key is enough). Arrays, not
 * pointers: Criterion hands each case to a test process of its own. */
typedef struct bad_recipe {
    char name[40]; /* what the case checks, printed with every failure */
    char file[32];
    tpsc_status code;
    int line;
    char key[24];
    char detail[40];
} bad_recipe;

static bad_recipe bad_recipes[] = {
    {"unknown_key", "bad_unknown_key.ini", TPSC_ERR_CONFIG, 4, "[optim] lrate", "unknown key"},
    {"unknown_section", "bad_unknown_section.ini", TPSC_ERR_CONFIG, 3, "[optimizer]", "unknown section"},
    {"wrong_type", "bad_type.ini", TPSC_ERR_CONFIG, 5, "[optim] lr", "expected a number, got 'abc'"},
    {"out_of_range", "bad_range.ini", TPSC_ERR_CONFIG, 4, "[tps] keep_ratio", "(0, 1]"},
    {"duplicate_key", "bad_duplicate.ini", TPSC_ERR_CONFIG, 5, "[optim] lr", "first set at line 3"},
    {"duplicate_section", "bad_duplicate_section.ini", TPSC_ERR_CONFIG, 6, "[optim]", "first at line 2"},
    {"keep_ratio_list_length", "bad_list_length.ini", TPSC_ERR_CONFIG, 5, "[tps] keep_ratio",
     "2 values for 3 prune locations"},
    {"unknown_method", "bad_method.ini", TPSC_ERR_CONFIG, 3, "[tps] method", "'dtsp'"},
    {"prune_loc_outside_depth", "bad_prune_loc.ini", TPSC_ERR_CONFIG, 9, "[tps] prune_loc",
     "location 6 is outside [1, 6)"},
    {"long_line_is_refused_not_split", "bad_long_line.ini", TPSC_ERR_CONFIG, 3, "[model] init", "at most 197"},
    {"indented_continuation_line", "bad_indent.ini", TPSC_ERR_CONFIG, 4, "weight_decay", "column 1"},
    {"syntax_error_line", "bad_syntax.ini", TPSC_ERR_CONFIG, 3, "key = value", ""},
    {"key_before_section", "bad_no_section.ini", TPSC_ERR_CONFIG, 2, "lr", "before any [section]"},
    {"named_arch_contradicted", "bad_arch_conflict.ini", TPSC_ERR_CONFIG, 4, "[model] embed_dim",
     "contradicts arch"},
    {"distillation_without_teacher", "bad_no_teacher.ini", TPSC_ERR_CONFIG, 6, "[loss] distill_weight",
     "[teacher] checkpoint"},
    {"guide_without_teacher", "bad_guide_no_teacher.ini", TPSC_ERR_CONFIG, 7, "[loss] guide_weight",
     "[teacher] checkpoint"},
    {"randaug_grammar", "bad_randaug.ini", TPSC_ERR_CONFIG, 3, "[augment] randaug", "mstdx"},
    {"patch_must_divide_image", "bad_patch.ini", TPSC_ERR_CONFIG, 4, "[model] patch_size",
     "does not divide img_size 28"},
    {"mean_one_per_channel", "bad_mean_channels.ini", TPSC_ERR_CONFIG, 5, "[augment] mean", "in_chans = 1"},
};

ParameterizedTestParameters(recipe, bad_file_is_refused) {
    return cr_make_param_array(bad_recipe, bad_recipes, sizeof bad_recipes / sizeof bad_recipes[0]);
}

ParameterizedTest(bad_recipe *c, recipe, bad_file_is_refused) {
    char path[512], where[256];
    snprintf(path, sizeof path, "%s/recipes/%s", TPSC_FIXTURE_DIR, c->file);
    tpsc_recipe *r = new_recipe();
    tpsc_status st = tpsc_recipe_load(r, path);
    const char *msg = tpsc_last_error();
    cr_assert_eq(st, c->code, "%s: %s: expected status %d, got %d: %s", c->name, c->file, c->code, st, msg);
    snprintf(where, sizeof where, "%s:%d: ", c->file, c->line);
    cr_assert(strstr(msg, where), "%s: message lacks '%s': %s", c->name, where, msg);
    cr_assert(strstr(msg, c->key), "%s: message lacks '%s': %s", c->name, c->key, msg);
    if (c->detail[0]) cr_assert(strstr(msg, c->detail), "%s: message lacks '%s': %s", c->name, c->detail, msg);
    tpsc_free(r);
}

Test(recipe, set_overrides) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, SHIPPED("deit_s_dtps.ini"));
    cr_assert_eq(tpsc_recipe_set(r, "optim.lr=1e-4"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(r->optim.lr, 1e-4f);
    cr_assert_eq(r->origin.line[recipe_key_find("optim", "lr")], -1);
    cr_assert_eq(tpsc_recipe_set(r, "tps.prune_loc = 2, 4"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_set(r, "tps.keep_ratio=0.5"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(r->tps.cfg.n_stages, 2);
    cr_assert_eq(r->tps.cfg.prune_loc[1], 4);
    cr_assert_eq(r->tps.cfg.keep_frac[1], 0.25f, "0.5^2 is exact");
    cr_assert_eq(tpsc_recipe_set(r, "data.on_bad_image=skip"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(r->data.on_bad_image, TPSC_BAD_IMAGE_SKIP);
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_OK, "%s", tpsc_last_error());
    /* A named arch fills the sizes nobody set. */
    cr_assert_eq(tpsc_recipe_set(r, "model.arch=deit_tiny_patch16_224"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(r->model.vit.embed_dim, 192);
    cr_assert_eq(r->model.vit.num_heads, 3);
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_OK, "%s", tpsc_last_error());
    tpsc_free(r);
}

static void expect_set_error(tpsc_recipe *r, const char *assignment, const char *detail) {
    float lr = r->optim.lr;
    tpsc_status st = tpsc_recipe_set(r, assignment);
    const char *msg = tpsc_last_error();
    cr_assert_eq(st, TPSC_ERR_CONFIG, "%s: %s", assignment, msg);
    cr_assert(strstr(msg, assignment), "message does not name the override '%s': %s", assignment, msg);
    cr_assert(strstr(msg, detail), "message lacks '%s': %s", detail, msg);
    cr_assert_eq(r->optim.lr, lr, "a failed override must change nothing");
}

Test(recipe, bad_overrides_name_the_override) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, SHIPPED("deit_s_dtps.ini"));
    expect_set_error(r, "optim.lr=abc", "expected a number");
    expect_set_error(r, "optim.lr=-1", "outside the allowed range");
    expect_set_error(r, "optim.lrate=1", "unknown key");
    expect_set_error(r, "optimizer.lr=1", "unknown section");
    expect_set_error(r, "lr=1", "expected section.key=value");
    expect_set_error(r, "tps.method=dtsp", "expected one of");
    expect_set_error(r, "data.format=imagenet", "fashion_mnist|imagefolder|idx|h5");
    expect_set_error(r, "data.on_bad_image=ignore", "expected one of");
    expect_set_error(r, "tps.prune_loc=3,,9", "empty");
    expect_set_error(r, "augment.scale=0.5", "exactly 2");
    cr_assert_eq(r->tps.n_prune_loc, 3, "the failed list override left the list alone");
    tpsc_free(r);
}

Test(recipe, validate_after_overrides_points_at_the_key) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, SHIPPED("deit_s_dtps.ini"));
    cr_assert_eq(tpsc_recipe_set(r, "model.arch=custom"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_set(r, "model.depth=6"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_ERR_CONFIG);
    const char *msg = tpsc_last_error();
    cr_assert(strstr(msg, "deit_s_dtps.ini:"), "%s", msg);
    cr_assert(strstr(msg, "[tps] prune_loc"), "%s", msg);
    cr_assert(strstr(msg, "--set"), "says depth came from an override: %s", msg);
    cr_assert_eq(tpsc_recipe_set(r, "model.embed_dim=100"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_set(r, "tps.prune_loc=1,2,3"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "--set model.embed_dim"), "%s", tpsc_last_error());
    tpsc_free(r);
}

static void expect_round_trip(const tpsc_recipe *r, const char *what) {
    char *ini = tpsc_recipe_to_ini(r);
    cr_assert_not_null(ini);
    tpsc_recipe *back = new_recipe();
    tpsc_status st = tpsc_recipe_load_string(back, ini, "round-trip");
    cr_assert_eq(st, TPSC_OK, "%s: re-parse failed: %s\n%s", what, tpsc_last_error(), ini);
    cr_assert(tpsc_recipe_equal(r, back), "%s: re-parsed recipe differs\n%s", what, ini);
    char *again = tpsc_recipe_to_ini(back);
    cr_assert_not_null(again);
    cr_assert_str_eq(again, ini, "%s: second serialisation differs", what);
    tpsc_free(again);
    tpsc_free(ini);
    tpsc_free(back);
}

Test(recipe, to_ini_round_trip_is_identical) {
    tpsc_recipe *r = new_recipe();
    const char *files[] = {SHIPPED("deit_s_dtps.ini"), SHIPPED("deit_s_etps.ini"), SHIPPED("deit_t_dtps.ini"),
                           SHIPPED("fmnist_vit.ini"),  SHIPPED("fmnist_dtps.ini"), FIXTURE("good_small.ini")};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        load_ok(r, files[i]);
        expect_round_trip(r, files[i]);
    }
    tpsc_recipe_defaults(r);
    expect_round_trip(r, "defaults");
    /* Values that are awkward as text: a float that is not a short decimal, a path with spaces. */
    load_ok(r, SHIPPED("fmnist_dtps.ini"));
    cr_assert_eq(tpsc_recipe_set(r, "optim.lr=0.000123456789"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_set(r, "run.resume=my runs/a b.h5"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_set(r, "tps.keep_ratio=0.9, 0.7, 0.3333333"), TPSC_OK, "%s", tpsc_last_error());
    expect_round_trip(r, "after overrides");
    tpsc_free(r);
}

/* The round-trip test is only as good as tpsc_recipe_equal: it must see a change in any key. */
Test(recipe, equal_sees_a_change_in_every_key) {
    tpsc_recipe *a = new_recipe(), *b = new_recipe();
    load_ok(a, FIXTURE("good_small.ini"));
    for (int i = 0; i < recipe_key_count; i++) {
        const recipe_key *k = &recipe_keys[i];
        *b = *a;
        char *p = (char *)b + k->offset;
        switch (k->type) {
        case RT_INT: case RT_ENUM: *(int *)p += 1; break;
        case RT_SIZE: *(size_t *)p += 1; break;
        case RT_FLOAT: *(float *)p += 1.0f; break;
        case RT_BOOL: *(bool *)p = !*(bool *)p; break;
        case RT_STRING: p[0] = p[0] == 'q' ? 'z' : 'q', p[1] = '\0'; break;
        case RT_INT_LIST: ((int *)p)[0] += 1; break;
        case RT_FLOAT_LIST: ((float *)p)[0] += 0.125f; break;
        }
        cr_assert_not(tpsc_recipe_equal(a, b), "a change of %s.%s went unnoticed", k->section, k->name);
    }
    tpsc_free(a);
    tpsc_free(b);
}

Test(recipe, freeze_prefixes) {
    tpsc_recipe *r = new_recipe();
    tpsc_recipe_defaults(r);
    cr_assert_not(tpsc_recipe_param_frozen(r, "cls_token"), "nothing frozen by default");
    cr_assert_eq(tpsc_recipe_set(r, "optim.freeze=cls_token, pos_embed,blocks.0."), TPSC_OK, "%s", tpsc_last_error());
    cr_assert(tpsc_recipe_param_frozen(r, "cls_token"));
    cr_assert(tpsc_recipe_param_frozen(r, "pos_embed"));
    cr_assert(tpsc_recipe_param_frozen(r, "blocks.0.attn.qkv.weight"));
    cr_assert_not(tpsc_recipe_param_frozen(r, "blocks.10.attn.qkv.weight"));
    cr_assert_not(tpsc_recipe_param_frozen(r, "head.weight"));
    cr_assert_eq(tpsc_recipe_set(r, "optim.freeze=cls_token,,head"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_ERR_CONFIG, "an empty prefix would freeze everything");
    cr_assert_eq(tpsc_recipe_set(r, "optim.freeze=\"\""), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_str_eq(r->optim.freeze, "", "\"\" is the empty string");
    tpsc_free(r);
}

Test(recipe, print_keys_lists_every_key) {
    FILE *f = tmpfile();
    cr_assert_not_null(f);
    tpsc_recipe_print_keys_markdown(f);
    tpsc_recipe_print_keys(f);
    long size = ftell(f);
    cr_assert_gt(size, 0);
    char *text = tpsc_malloc((size_t)size + 1, "key listing");
    cr_assert_not_null(text);
    rewind(f);
    cr_assert_eq(fread(text, 1, (size_t)size, f), (size_t)size);
    text[size] = '\0';
    fclose(f);
    for (int i = 0; i < recipe_key_count; i++) {
        char md[96], plain[96];
        snprintf(md, sizeof md, "| `%s` |", recipe_keys[i].name);
        snprintf(plain, sizeof plain, "  %s = ", recipe_keys[i].name);
        cr_assert(strstr(text, md) && strstr(text, plain), "key %s.%s missing from the listing", recipe_keys[i].section,
                  recipe_keys[i].name);
    }
    tpsc_free(text);
}

static void redirect_stderr(void) { cr_redirect_stderr(); }

Test(recipe, log_defaults_lists_only_defaults, .init = redirect_stderr) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, FIXTURE("good_small.ini"));
    cr_assert_eq(tpsc_recipe_set(r, "optim.momentum=0.8"), TPSC_OK, "%s", tpsc_last_error());
    tpsc_log_set_level(TPSC_LOG_INFO);
    tpsc_recipe_log_defaults(r);
    fflush(stderr);
    FILE *err = cr_get_redirected_stderr();
    char log[16384];
    size_t n = fread(log, 1, sizeof log - 1, err);
    log[n] = '\0';
    cr_assert(strstr(log, "recipe: [optim] beta2 = 0.999 (default)"), "%s", log);
    cr_assert(strstr(log, "recipe: [data] batch_size = 128 (default)"), "%s", log);
    cr_assert_null(strstr(log, "[optim] lr ="), "lr is set by the file, not a default:\n%s", log);
    cr_assert(strstr(log, "[optim] momentum = 0.8 is set but unused"), "%s", log);
    tpsc_free(r);
}

/* Reference: timm's deit_{tiny,small,base}_patch16_224 (tps-method.md: 192/12/3, 384/12/6,
 * 768/12/12; patch 16, 224 px, 1000 classes, mlp_ratio 4, LayerNorm eps 1e-6). Exact. */
Test(recipe, vit_config_named_sizes_and_checks) {
    const struct {
        const char *arch;
        size_t dim, depth, heads;
    } named[] = {{"deit_tiny_patch16_224", 192, 12, 3}, {"deit_small_patch16_224", 384, 12, 6}, {"deit_base_patch16_224", 768, 12, 12}};
    for (size_t i = 0; i < 3; i++) {
        vit_config c;
        cr_assert_eq(vit_config_named(&c, named[i].arch), TPSC_OK, "%s", tpsc_last_error());
        cr_assert_str_eq(c.arch, named[i].arch);
        cr_assert_eq(c.embed_dim, named[i].dim);
        cr_assert_eq(c.depth, named[i].depth);
        cr_assert_eq(c.num_heads, named[i].heads);
        cr_assert_eq(c.patch_size, 16);
        cr_assert_eq(c.img_size, 224);
        cr_assert_eq(c.num_classes, 1000);
        cr_assert_eq(c.mlp_ratio, 4.0f);
        cr_assert_eq(c.ln_eps, 1e-6f);
        cr_assert_eq(vit_num_patches(&c), 196);
        cr_assert_eq(vit_config_validate(&c), TPSC_OK, "%s", tpsc_last_error());
        c.patch_size = 15;
        cr_assert_eq(vit_config_validate(&c), TPSC_ERR_CONFIG);
        cr_assert(strstr(tpsc_last_error(), "patch_size 15"), "%s", tpsc_last_error());
    }
    vit_config c;
    cr_assert_eq(vit_config_named(&c, "deit_huge"), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "deit_huge"), "%s", tpsc_last_error());
}

Test(recipe, fuse_token_reaches_the_config_for_evit_only) {
    tpsc_recipe *r = new_recipe();
    load_ok(r, SHIPPED("deit_s_etps.ini"));
    cr_assert_eq(tpsc_recipe_set(r, "tps.method=evit"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert(!r->tps.cfg.evit_drop_pruned, "fused by default, as the published EViT runs");
    cr_assert_eq(tpsc_recipe_set(r, "tps.fuse_token=false"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_OK, "%s", tpsc_last_error());
    cr_assert(r->tps.cfg.evit_drop_pruned);
    cr_assert_eq(tpsc_recipe_set(r, "tps.method=etps"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert(!r->tps.cfg.evit_drop_pruned, "etps squeezes; fuse_token does not apply");
    cr_assert_eq(tpsc_recipe_validate(r), TPSC_ERR_CONFIG, "fuse_token = false with etps must be refused");
    cr_assert(strstr(tpsc_last_error(), "fuse_token") && strstr(tpsc_last_error(), "etps"), "%s", tpsc_last_error());
    tpsc_free(r);
}
