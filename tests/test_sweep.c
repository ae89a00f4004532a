/* Sweeps (src/sweep/): grid parsing and its errors, run-folder names, and a tiny real sweep of
 * two one-step trainings on a Fashion-MNIST slice: the CSV rows against what the trainer itself
 * logged, a second pass that skips finished runs, an interrupted run that resumes, and a folder
 * from another recipe that is refused. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "src/sweep/lock.h"
#include "src/sweep/sweep.h"
#include "src/util/log.h"
#include "support/files.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"

/* ---- grid parsing ------------------------------------------------------------------------- */

Test(sweep_grid, parses_axes_values_and_points) {
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.keep_ratio= 0.5, 0.7 ,0.9"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=dynamicvit,dtps"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_grid_add(&g, "tps.prune_loc=2,3,5;1,3,5"), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(g.n_axes, 3);
    cr_assert_str_eq(g.axes[0].key, "tps.keep_ratio");
    cr_assert_eq(g.axes[0].n_values, 3);
    cr_assert_str_eq(g.axes[0].values[1], "0.7"); /* spaces trimmed */
    cr_assert_eq(g.axes[2].n_values, 2);           /* ';' separates when present */
    cr_assert_str_eq(g.axes[2].values[0], "2,3,5");
    cr_assert_eq(tpsc_grid_size(&g), 12u);
    /* first axis slowest: point 7 = (7 / 4, (7 / 2) % 2, 7 % 2) = (1, 1, 1) */
    int idx[TPSC_SWEEP_MAX_AXES];
    tpsc_grid_point(&g, 7, idx);
    cr_assert(idx[0] == 1 && idx[1] == 1 && idx[2] == 1, "point 7 -> %d %d %d", idx[0], idx[1], idx[2]);
    tpsc_grid_point(&g, 11, idx);
    cr_assert(idx[0] == 2 && idx[1] == 1 && idx[2] == 1, "point 11 -> %d %d %d", idx[0], idx[1], idx[2]);
    cr_assert_eq(tpsc_grid_find(&g, "tps.method"), 1);
    cr_assert_eq(tpsc_grid_find(&g, "run.seed"), -1);
}

static void expect_add_error(const char *spec, const char *needle) {
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=dtps"), TPSC_OK);
    tpsc_status st = tpsc_grid_add(&g, spec);
    cr_assert_neq(st, TPSC_OK, "'%s' accepted", spec);
    cr_assert(strstr(tpsc_last_error(), needle), "'%s': message '%s' lacks '%s'", spec, tpsc_last_error(), needle);
    cr_assert_eq(g.n_axes, 1, "a rejected axis must not be added");
}

Test(sweep_grid, malformed_specs_are_refused_with_the_spec_named) {
    expect_add_error("tps.keep_ratio", "tps.keep_ratio");               /* no '=' */
    expect_add_error("keep_ratio=0.5", "section.key");                  /* no section */
    expect_add_error("tps.keep_ratio=0.5,,0.7", "empty value");
    expect_add_error("tps.keep_ratio=0.5,0.5", "given twice");
    expect_add_error("tps.method=evit", "already a grid axis");
    expect_add_error("run.out_dir=a,b", "set by the sweep");
    expect_add_error("run.name=a,b", "set by the sweep");
    expect_add_error("tps.keep_ratio=\"0.5\"", "quote");
}

static void tiny_base(tpsc_recipe *r) {
    cr_assert_eq(tpsc_recipe_load(r, TPSC_SOURCE_DIR "/recipes/fmnist_vit.ini"), TPSC_OK, "%s", tpsc_last_error());
    const char *sets[] = {"model.embed_dim=16", "model.depth=3", "model.num_heads=2", "model.patch_size=7",
                          "data.limit_train=64", "data.limit_val=64", "data.batch_size=32", "data.eval_batch_size=64",
                          "data.workers=1", "schedule.epochs=1", "schedule.warmup_epochs=0", "schedule.max_steps=1",
                          "loss.distill_weight=0", "tps.method=dynamicvit", "tps.prune_loc=1,2", "run.threads=1", "run.log_every=1000"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        cr_assert_eq(tpsc_recipe_set(r, sets[i]), TPSC_OK, "%s: %s", sets[i], tpsc_last_error());
}

static void expect_check_error(const char *spec, const char *const *allowed, const char *needle1, const char *needle2) {
    static tpsc_recipe base;
    tiny_base(&base);
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, spec), TPSC_OK, "%s: %s", spec, tpsc_last_error());
    tpsc_status st = tpsc_grid_check(&g, &base, allowed);
    cr_assert_eq(st, TPSC_ERR_CONFIG, "'%s' passed the check", spec);
    cr_assert(strstr(tpsc_last_error(), needle1) && strstr(tpsc_last_error(), needle2),
              "'%s': message '%s' should name '%s' and '%s'", spec, tpsc_last_error(), needle1, needle2);
}

Test(sweep_grid, bad_keys_and_values_get_the_recipe_error_naming_the_key) {
    tpsc_log_set_level(TPSC_LOG_WARN);
    expect_check_error("tps.keep_rato=0.5,0.7", NULL, "keep_rato", "unknown key");
    expect_check_error("tsp.keep_ratio=0.5", NULL, "tsp", "unknown section");
    expect_check_error("tps.keep_ratio=0.5,abc", NULL, "keep_ratio", "abc");
    expect_check_error("tps.method=dtps,squeezy", NULL, "method", "squeezy");
    /* a value fine alone but not with the rest: prune_loc 5 is outside the 3-block model */
    expect_check_error("tps.prune_loc=1,2;1,5", NULL, "prune_loc", "5");
    /* an evaluation sweep cannot retrain */
    expect_check_error("optim.lr=1e-3", tpsc_sweep_eval_keys, "optim.lr", "tps.");
}

Test(sweep_grid, a_good_grid_passes_the_check) {
    static tpsc_recipe base;
    tiny_base(&base);
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=dynamicvit,dtps,evit,etps"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "tps.keep_ratio=0.3,0.9"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "run.seed=0,1"), TPSC_OK);
    cr_assert_eq(tpsc_grid_check(&g, &base, NULL), TPSC_OK, "%s", tpsc_last_error());
}

/* ---- run-folder names --------------------------------------------------------------------- */

static void name_of(const tpsc_sweep_grid *g, size_t point, char *out) {
    int idx[TPSC_SWEEP_MAX_AXES];
    tpsc_grid_point(g, point, idx);
    cr_assert_eq(tpsc_grid_run_name(g, idx, out, TPSC_RECIPE_NAME_MAX), TPSC_OK, "%s", tpsc_last_error());
}

Test(sweep_names, key_value_pairs_in_axis_order) {
    tpsc_sweep_grid g = {0};
    char name[TPSC_RECIPE_NAME_MAX];
    name_of(&g, 0, name);
    cr_assert_str_eq(name, "base");
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=dynamicvit,dtps"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "tps.keep_ratio=0.5,0.7"), TPSC_OK);
    name_of(&g, 0, name);
    cr_assert_str_eq(name, "method-dynamicvit_keep_ratio-0.5");
    name_of(&g, 3, name);
    cr_assert_str_eq(name, "method-dtps_keep_ratio-0.7");
}

Test(sweep_names, unsafe_characters_and_shared_key_names) {
    tpsc_sweep_grid g = {0};
    char name[TPSC_RECIPE_NAME_MAX];
    cr_assert_eq(tpsc_grid_add(&g, "tps.prune_loc=2,3,5;1, 4"), TPSC_OK);
    name_of(&g, 0, name);
    cr_assert_str_eq(name, "prune_loc-2+3+5");
    name_of(&g, 1, name);
    cr_assert_str_eq(name, "prune_loc-1++4"); /* ',' and ' ' both become '+' */
    /* two axes whose keys end alike keep their sections, so the names stay distinct */
    tpsc_sweep_grid h = {0};
    cr_assert_eq(tpsc_grid_add(&h, "a.x=1"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&h, "b.x=2/3"), TPSC_OK);
    name_of(&h, 0, name);
    cr_assert_str_eq(name, "a.x-1_b.x-2+3");
}

Test(sweep_names, too_long_for_run_name_is_an_error) {
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.keep_ratio=0.1234567890123456789012345678901234567890123456789"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=dtps"), TPSC_OK);
    int idx[TPSC_SWEEP_MAX_AXES] = {0};
    char name[TPSC_RECIPE_NAME_MAX];
    cr_assert_eq(tpsc_grid_run_name(&g, idx, name, sizeof name), TPSC_ERR_ARG);
    cr_assert(strstr(tpsc_last_error(), "run.name"), "%s", tpsc_last_error());
}

Test(sweep_names, colliding_names_are_refused_by_the_check) {
    static tpsc_recipe base;
    tiny_base(&base);
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.prune_loc=1,2;1 2"), TPSC_OK); /* both "1+2" */
    cr_assert_eq(tpsc_grid_check(&g, &base, NULL), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "prune_loc-1+2"), "%s", tpsc_last_error());
}

/* ---- a real tiny sweep -------------------------------------------------------------------- */

/* The top-1 of the last evaluation the trainer wrote to the run's metrics.jsonl. */
static double logged_top1(const char *run_dir, int *n_evals) {
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.jsonl", run_dir);
    char *text = tfile_read(path, NULL);
    const char *p = text, *hit = NULL;
    *n_evals = 0;
    while ((p = strstr(p, "\"top1\": "))) {
        hit = p;
        ++*n_evals;
        p++;
    }
    cr_assert_not_null(hit, "%s has no evaluation line", path);
    double top1 = strtod(hit + 8, NULL);
    free(text);
    return top1;
}

static time_t mtime(const char *path) {
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0, "%s missing", path);
    return sb.st_mtime;
}

typedef struct tiny_sweep {
    char dir[64];
    tpsc_recipe base;
    tpsc_sweep_grid grid;
    tpsc_sweep_row rows[2];
    tpsc_sweep_counts counts;
} tiny_sweep;

static tiny_sweep *run_tiny(tiny_sweep *t, bool fresh) {
    if (fresh) {
        memset(t, 0, sizeof *t);
        snprintf(t->dir, sizeof t->dir, "/tmp/tpsc_sweep_XXXXXX");
        cr_assert_not_null(mkdtemp(t->dir));
        tiny_base(&t->base);
        cr_assert_eq(tpsc_grid_add(&t->grid, "tps.method=dynamicvit,etps"), TPSC_OK);
        cr_assert_eq(tpsc_grid_add(&t->grid, "tps.keep_ratio=0.5"), TPSC_OK);
    }
    tpsc_sweep_opts o = {.out_dir = t->dir, .checkpoint = NULL, .threads = 1};
    cr_assert_eq(tpsc_sweep_run(&t->base, &t->grid, &o, t->rows, &t->counts), TPSC_OK, "%s", tpsc_last_error());
    return t;
}

Test(sweep_run, csv_rows_match_what_each_run_logged) {
    if (access(FMNIST, R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_log_set_level(TPSC_LOG_WARN);
    static tiny_sweep t;
    run_tiny(&t, true);
    cr_assert_eq(t.counts.trained, 2u);
    char path[512];
    snprintf(path, sizeof path, "%s/results.csv", t.dir);
    char *csv = tfile_read(path, NULL);
    /* Reference: the header documented in results.h / docs/sweeps.md, then one line per run
     * whose top-1 is the trainer's own final evaluation in metrics.jsonl (printed at %.2f in the
     * CSV, so exact to that rounding) and whose GMACs is tok_macs_per_image for the point. */
    const char *header = "run,method,keep_ratio,keep_frac,seed,gmacs_per_image,top1,top5,images_per_s,train_seconds,"
                         "steps,resumed,tps.method,tps.keep_ratio\n";
    cr_assert(!strncmp(csv, header, strlen(header)), "header:\n%s", csv);
    const char *names[2] = {"method-dynamicvit_keep_ratio-0.5", "method-etps_keep_ratio-0.5"};
    const char *methods[2] = {"dynamicvit", "etps"};
    const char *line = csv + strlen(header);
    for (int i = 0; i < 2; i++) {
        char run[64], method[16], ratio[16], frac[32], gm[16], rm[16];
        int seed, resumed;
        double gmacs, top1, top5, ips, secs;
        long long steps;
        int got = sscanf(line, "%63[^,],%15[^,],%15[^,],%31[^,],%d,%lf,%lf,%lf,%lf,%lf,%lld,%d,%15[^,],%15[^\n]", run,
                         method, ratio, frac, &seed, &gmacs, &top1, &top5, &ips, &secs, &steps, &resumed, gm, rm);
        cr_assert_eq(got, 14, "row %d unparsed: %s", i, line);
        cr_assert_str_eq(run, names[i]);
        cr_assert_str_eq(method, methods[i]);
        cr_assert_str_eq(gm, methods[i]);
        cr_assert_str_eq(ratio, "0.5");
        cr_assert_str_eq(rm, "0.5");
        cr_assert_str_eq(frac, "0.5;0.25");
        cr_assert_eq(seed, 0);
        cr_assert_eq(steps, 1);
        cr_assert_eq(resumed, 0);
        char run_dir[256];
        snprintf(run_dir, sizeof run_dir, "%s/%s", t.dir, names[i]);
        int n_evals;
        double want = logged_top1(run_dir, &n_evals);
        cr_assert(fabs(top1 - want) <= 0.005 + 1e-9, "%s: csv top-1 %.2f, metrics.jsonl %.4f", names[i], top1, want);
        /* the same model as tpsc_model_gmacs builds it: dim 16, depth 3, 16 patches of 49 px */
        tok_config tc = {.method = (tok_method)tok_method_from_name(methods[i]), .n_stages = 2, .prune_loc = {1, 2},
                         .keep_frac = {0.5f, 0.25f}, .squeeze_temp = 1.0f};
        double ref = tok_macs_per_image(&tc, 28, 7, 1, 16, 3, 64, 10) * 1e-9;
        cr_assert(fabs(gmacs - ref) <= 5e-7, "%s: csv GMACs %.6f, tok_macs_per_image %.6f", names[i], gmacs, ref);
        line = strchr(line, '\n') + 1;
    }
    cr_assert_eq(*line, '\0', "extra rows: %s", line);
    free(csv);
    snprintf(path, sizeof path, "%s/results.md", t.dir);
    char *md = tfile_read(path, NULL);
    cr_assert(strstr(md, "| method-etps_keep_ratio-0.5 | etps | 0.5 |"), "results.md lacks the etps row");
    free(md);
}

Test(sweep_run, finished_runs_are_skipped_and_interrupted_ones_resume) {
    if (access(FMNIST, R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_log_set_level(TPSC_LOG_WARN);
    static tiny_sweep t;
    run_tiny(&t, true);
    char last0[512], last1[512], done1[512], run1[256];
    snprintf(last0, sizeof last0, "%s/method-dynamicvit_keep_ratio-0.5/last.h5", t.dir);
    snprintf(run1, sizeof run1, "%s/method-etps_keep_ratio-0.5", t.dir);
    snprintf(last1, sizeof last1, "%s/last.h5", run1);
    snprintf(done1, sizeof done1, "%s/done.json", run1);
    const double top1[2] = {t.rows[0].top1, t.rows[1].top1};
    sleep(1); /* so that a rewrite would show in the mtime */
    time_t m0 = mtime(last0), m1 = mtime(last1);

    /* second pass: nothing runs, the rows come back from done.json */
    run_tiny(&t, false);
    cr_assert_eq(t.counts.skipped, 2u);
    cr_assert_eq(t.counts.trained + t.counts.resumed, 0u);
    cr_assert_eq(mtime(last0), m0, "a finished run was trained again");
    cr_assert_eq(mtime(last1), m1, "a finished run was trained again");
    cr_assert(t.rows[0].top1 == top1[0] && t.rows[1].top1 == top1[1], "rows differ after the skip");
    int n_evals;
    logged_top1(run1, &n_evals);
    cr_assert_eq(n_evals, 1, "metrics.jsonl of a skipped run grew");

    /* killed after its checkpoint but before the marker: resumes from last.h5, trains no
     * further step (max_steps 1 reached) and evaluates again to the same top-1 */
    cr_assert_eq(unlink(done1), 0);
    run_tiny(&t, false);
    cr_assert_eq(t.counts.skipped, 1u);
    cr_assert_eq(t.counts.resumed, 1u);
    cr_assert(t.rows[1].resumed);
    cr_assert_eq(t.rows[1].steps, 1);
    cr_assert(fabs(t.rows[1].top1 - top1[1]) < 1e-9, "resumed top-1 %.4f vs %.4f", t.rows[1].top1, top1[1]);
    cr_assert_eq(access(done1, R_OK), 0, "done.json not written after the resume");
}

Test(sweep_run, a_folder_from_another_recipe_is_refused) {
    if (access(FMNIST, R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_log_set_level(TPSC_LOG_WARN);
    static tiny_sweep t;
    run_tiny(&t, true);
    cr_assert_eq(tpsc_recipe_set(&t.base, "optim.lr=3e-3"), TPSC_OK);
    tpsc_sweep_opts o = {.out_dir = t.dir, .checkpoint = NULL, .threads = 1};
    cr_assert_eq(tpsc_sweep_run(&t.base, &t.grid, &o, t.rows, &t.counts), TPSC_ERR_CONFIG);
    cr_assert(strstr(tpsc_last_error(), "done.json") && strstr(tpsc_last_error(), "another recipe"), "%s",
              tpsc_last_error());
}

Test(sweep_run, evaluation_sweep_of_one_checkpoint) {
    if (access(FMNIST, R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_log_set_level(TPSC_LOG_WARN);
    static tiny_sweep t;
    run_tiny(&t, true);
    char ckpt[512], out[512];
    snprintf(ckpt, sizeof ckpt, "%s/method-dynamicvit_keep_ratio-0.5/last.h5", t.dir);
    snprintf(out, sizeof out, "%s/eval", t.dir);
    static tpsc_recipe base;
    cr_assert_eq(tpsc_sweep_checkpoint_recipe(ckpt, &base), TPSC_OK, "%s", tpsc_last_error());
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.keep_ratio=0.5,1.0"), TPSC_OK);
    tpsc_sweep_row rows[2];
    tpsc_sweep_counts c;
    tpsc_sweep_opts o = {.out_dir = out, .checkpoint = ckpt, .threads = 1};
    cr_assert_eq(tpsc_sweep_run(&base, &g, &o, rows, &c), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(c.evaluated, 2u);
    /* Reference: at its own keep ratio the evaluation is the trainer's final one (same weights,
     * same validation slice), exactly; keep 1.0 removes nothing, so it costs more. */
    cr_assert(fabs(rows[0].top1 - t.rows[0].top1) < 1e-9, "eval sweep %.4f vs training's %.4f", rows[0].top1,
              t.rows[0].top1);
    cr_assert_gt(rows[1].gmacs, rows[0].gmacs);
    cr_assert_eq(rows[0].steps, 0);
    cr_assert_eq(rows[0].train_seconds, 0.0);
}

/* ToMe off the shelf over a grid of r: a dense checkpoint (one training step) evaluated with
 * tps.method = tome at r = 0, 2, 4. References: r = 0 merges nothing and is the dense
 * computation, so its top-1 is the trainer's final evaluation exactly; every GMACs is
 * tok_macs_per_image for its r (dim 16, depth 3, 16 patches); the keep-ratio column names r
 * and the kept fraction is the patch tokens left after the last block (r = 2: 17 -> 15 -> 13 -> 11
 * tokens, 10/16; r = 4: 17 -> 13 -> 9 -> 5, 4/16, the last block at ToMe's half limit). */
Test(sweep_run, evaluation_sweep_over_tome_r) {
    if (access(FMNIST, R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_log_set_level(TPSC_LOG_WARN);
    static tiny_sweep t;
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "/tmp/tpsc_sweep_XXXXXX");
    cr_assert_not_null(mkdtemp(t.dir));
    tiny_base(&t.base);
    cr_assert_eq(tpsc_grid_add(&t.grid, "tps.method=none"), TPSC_OK);
    tpsc_sweep_opts o = {.out_dir = t.dir, .checkpoint = NULL, .threads = 1};
    cr_assert_eq(tpsc_sweep_run(&t.base, &t.grid, &o, t.rows, &t.counts), TPSC_OK, "%s", tpsc_last_error());
    char ckpt[512], out[512];
    snprintf(ckpt, sizeof ckpt, "%s/method-none/last.h5", t.dir);
    snprintf(out, sizeof out, "%s/eval", t.dir);
    static tpsc_recipe base;
    cr_assert_eq(tpsc_sweep_checkpoint_recipe(ckpt, &base), TPSC_OK, "%s", tpsc_last_error());
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=tome"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "tps.tome_r=0,2,4"), TPSC_OK);
    tpsc_sweep_row rows[3];
    tpsc_sweep_counts c;
    tpsc_sweep_opts eo = {.out_dir = out, .checkpoint = ckpt, .threads = 1};
    cr_assert_eq(tpsc_sweep_run(&base, &g, &eo, rows, &c), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(c.evaluated, 3u);
    cr_assert(fabs(rows[0].top1 - t.rows[0].top1) < 1e-9, "tome r=0 %.4f vs the dense training's %.4f", rows[0].top1,
              t.rows[0].top1);
    const int r[3] = {0, 2, 4};
    const char *ratio[3] = {"r=0", "r=2", "r=4"}, *frac[3] = {"1", "0.625", "0.25"};
    for (int i = 0; i < 3; i++) {
        cr_expect_str_eq(rows[i].method, "tome");
        cr_expect_str_eq(rows[i].keep_ratio, ratio[i]);
        cr_expect_str_eq(rows[i].keep_frac, frac[i]);
        tok_config tc = {.method = TOK_TOME, .tome_r = r[i], .prop_attn = true};
        const double ref = tok_macs_per_image(&tc, 28, 7, 1, 16, 3, 64, 10) * 1e-9;
        cr_expect(fabs(rows[i].gmacs - ref) <= 1e-12, "r=%d: GMACs %.6f, tok_macs_per_image %.6f", r[i], rows[i].gmacs, ref);
    }
    cr_expect_gt(rows[0].gmacs, rows[1].gmacs);
    cr_expect_gt(rows[1].gmacs, rows[2].gmacs);
}

/* ---- tables without training ------------------------------------------------------------- */

static tpsc_sweep_row row_of(const char *method, const char *ratio, const char *seed, double top1, double gmacs) {
    tpsc_sweep_row r;
    memset(&r, 0, sizeof r);
    snprintf(r.run, sizeof r.run, "%s-%s-%s", method, ratio, seed);
    snprintf(r.method, sizeof r.method, "%s", method);
    snprintf(r.keep_ratio, sizeof r.keep_ratio, "%s", ratio);
    snprintf(r.values[0], sizeof r.values[0], "%s", method);
    snprintf(r.values[1], sizeof r.values[1], "%s", ratio);
    snprintf(r.values[2], sizeof r.values[2], "%s", seed);
    r.seed = atoi(seed);
    r.top1 = top1;
    r.top5 = 99;
    r.gmacs = gmacs;
    return r;
}

Test(sweep_tables, groups_over_seeds_mean_spread_and_order) {
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=evit,dtps"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "tps.keep_ratio=0.9,0.5"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "run.seed=0,1,2"), TPSC_OK);
    tpsc_sweep_row rows[] = {
        row_of("evit", "0.9", "0", 80, 0.03),  row_of("evit", "0.9", "1", 82, 0.03), row_of("evit", "0.9", "2", 84, 0.03),
        row_of("evit", "0.5", "0", 70, 0.02),  row_of("evit", "0.5", "1", 70, 0.02), row_of("evit", "0.5", "2", 70, 0.02),
        row_of("dtps", "0.9", "0", 81, 0.031), row_of("dtps", "0.9", "1", 83, 0.031),
    };
    tpsc_sweep_group groups[8];
    size_t n = 0;
    tpsc_sweep_group_rows(&g, rows, 8, groups, &n);
    /* Reference by hand: three groups, sorted by method then GMACs; evit 0.9: mean 82,
     * min 80, max 84, sample std sqrt(((-2)^2 + 0 + 2^2) / 2) = 2; evit 0.5: all 70, std 0;
     * dtps 0.9 (two seeds): mean 82, std sqrt(2) */
    cr_assert_eq(n, 3u);
    cr_assert_str_eq(groups[0].method, "dtps");
    cr_assert_str_eq(groups[1].keep_ratio, "0.5");
    cr_assert_str_eq(groups[2].keep_ratio, "0.9");
    cr_assert_eq(groups[2].n, 3);
    cr_assert_float_eq(groups[2].top1_mean, 82.0, 1e-12);
    cr_assert_float_eq(groups[2].top1_min, 80.0, 1e-12);
    cr_assert_float_eq(groups[2].top1_max, 84.0, 1e-12);
    cr_assert_float_eq(groups[2].top1_std, 2.0, 1e-9);
    cr_assert_float_eq(groups[1].top1_std, 0.0, 1e-9);
    cr_assert_float_eq(groups[0].top1_std, sqrt(2.0), 1e-9);
    cr_assert_str_eq(groups[2].label, "method=evit keep_ratio=0.9");
}

Test(sweep_tables, done_json_round_trip_and_damage) {
    char dir[] = "/tmp/tpsc_done_XXXXXX";
    cr_assert_not_null(mkdtemp(dir));
    tpsc_sweep_grid g = {0};
    cr_assert_eq(tpsc_grid_add(&g, "tps.method=dtps"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "tps.keep_ratio=0.5"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&g, "run.seed=3"), TPSC_OK);
    tpsc_sweep_row r = row_of("dtps", "0.5", "3", 77.125, 0.0123456);
    snprintf(r.keep_frac, sizeof r.keep_frac, "0.5;0.25");
    r.train_seconds = 12.5;
    r.steps = 42;
    r.resumed = true;
    r.recipe_hash = 0xfedcba9876543210ull;
    tpsc_sweep_row back;
    cr_assert_eq(tpsc_sweep_read_done(dir, &g, &back), TPSC_ERR_MISSING);
    cr_assert_eq(tpsc_sweep_write_done(dir, &r, &g), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_eq(tpsc_sweep_read_done(dir, &g, &back), TPSC_OK, "%s", tpsc_last_error());
    /* Reference: the row written, to the printed precision (top-1 6 decimals, GMACs 9 digits) */
    cr_assert_str_eq(back.run, r.run);
    cr_assert_str_eq(back.keep_frac, "0.5;0.25");
    cr_assert_str_eq(back.values[2], "3");
    cr_assert_eq(back.seed, 3);
    cr_assert_eq(back.steps, 42);
    cr_assert(back.resumed);
    cr_assert_eq(back.recipe_hash, r.recipe_hash);
    cr_assert_float_eq(back.top1, 77.125, 1e-9);
    cr_assert_float_eq(back.gmacs, 0.0123456, 1e-12);
    cr_assert_float_eq(back.train_seconds, 12.5, 1e-9);
    /* a damaged marker names the file and the field */
    char path[64];
    snprintf(path, sizeof path, "%s/done.json", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("{\"run\": \"x\", \"method\": \"dtps\"}", f);
    fclose(f);
    cr_assert_eq(tpsc_sweep_read_done(dir, &g, &back), TPSC_ERR_FORMAT);
    cr_assert(strstr(tpsc_last_error(), path) && strstr(tpsc_last_error(), "keep_ratio"), "%s", tpsc_last_error());
    unlink(path);
    rmdir(dir);
}

Test(sweep_run, a_point_locked_by_a_live_process_is_left_to_it_a_stale_lock_is_taken) {
    if (access(FMNIST, R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_log_set_level(TPSC_LOG_WARN);
    static tiny_sweep t;
    memset(&t, 0, sizeof t);
    snprintf(t.dir, sizeof t.dir, "/tmp/tpsc_sweep_XXXXXX");
    cr_assert_not_null(mkdtemp(t.dir));
    tiny_base(&t.base);
    cr_assert_eq(tpsc_grid_add(&t.grid, "tps.method=dynamicvit,etps"), TPSC_OK);
    cr_assert_eq(tpsc_grid_add(&t.grid, "tps.keep_ratio=0.5"), TPSC_OK);
    /* point 0 locked by a live process (our parent), point 1 by a process that has exited */
    pid_t child = fork();
    cr_assert_geq(child, 0);
    if (child == 0) _exit(0);
    cr_assert_eq(waitpid(child, NULL, 0), child);
    const char *names[2] = {"method-dynamicvit_keep_ratio-0.5", "method-etps_keep_ratio-0.5"};
    const long holders[2] = {(long)getppid(), (long)child};
    for (int i = 0; i < 2; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", t.dir, names[i]);
        cr_assert_eq(mkdir(path, 0755), 0);
        snprintf(path, sizeof path, "%s/%s/lock", t.dir, names[i]);
        FILE *f = fopen(path, "w");
        cr_assert_not_null(f);
        fprintf(f, "%ld\n", holders[i]);
        fclose(f);
    }
    run_tiny(&t, false);
    cr_assert_eq(t.counts.busy, 1u);
    cr_assert(t.rows[0].busy);
    cr_assert_eq(t.counts.trained, 1u);
    char path[256];
    snprintf(path, sizeof path, "%s/%s/done.json", t.dir, names[0]);
    cr_assert_neq(access(path, F_OK), 0, "the locked point was run");
    snprintf(path, sizeof path, "%s/%s/done.json", t.dir, names[1]);
    cr_assert_eq(access(path, F_OK), 0, "the stale lock was not taken over");
    snprintf(path, sizeof path, "%s/%s/lock", t.dir, names[1]);
    cr_assert_neq(access(path, F_OK), 0, "the lock outlived its run");
    /* the tables leave the busy point out */
    snprintf(path, sizeof path, "%s/results.csv", t.dir);
    char *csv = tfile_read(path, NULL);
    cr_assert_null(strstr(csv, names[0]), "%s", csv);
    cr_assert_not_null(strstr(csv, names[1]), "%s", csv);
    free(csv);
}

Test(sweep_run, a_folder_from_an_older_schema_still_counts_as_finished) {
    if (access(FMNIST, R_OK) != 0) cr_skip_test("dataset-fashion-mnist not installed");
    tpsc_log_set_level(TPSC_LOG_WARN);
    static tiny_sweep t;
    run_tiny(&t, true);
    /* a key added to the schema after the run was written: its recipe.ini lacks the line, and
     * loading it fills the default, which is what this point has */
    char path[256];
    snprintf(path, sizeof path, "%s/method-etps_keep_ratio-0.5/recipe.ini", t.dir);
    char *text = tfile_read(path, NULL);
    char *line = strstr(text, "on_bad_image = error\n");
    cr_assert_not_null(line, "recipe.ini:\n%s", text);
    memmove(line, line + strlen("on_bad_image = error\n"), strlen(line + strlen("on_bad_image = error\n")) + 1);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    free(text);
    run_tiny(&t, false);
    cr_assert_eq(t.counts.skipped, 2u, "%s", tpsc_last_error());
}

/* A lock file without a pid (a writer killed between creating and writing it, or damage): live
 * while fresh, since a writer may be between its two calls, and taken over once older than
 * TPSC_SWEEP_LOCK_GRACE_S, so such a file never blocks its point for ever. */
Test(sweep_lock, a_lock_without_a_pid_is_taken_once_old) {
    char dir[64] = "/tmp/tpsc_lock_XXXXXX", path[128];
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/lock", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("garbage\n", f);
    fclose(f);
    bool taken = true;
    cr_assert_eq(tpsc_sweep_lock(dir, &taken), TPSC_OK, "%s", tpsc_last_error());
    cr_assert_not(taken, "a fresh lock without a pid was taken");
    struct timespec old[2] = {{.tv_sec = time(NULL) - TPSC_SWEEP_LOCK_GRACE_S - 5}, {.tv_sec = time(NULL) - TPSC_SWEEP_LOCK_GRACE_S - 5}};
    cr_assert_eq(utimensat(AT_FDCWD, path, old, 0), 0);
    cr_assert_eq(tpsc_sweep_lock(dir, &taken), TPSC_OK, "%s", tpsc_last_error());
    cr_assert(taken, "an old lock without a pid was not taken over");
    f = fopen(path, "r");
    long pid = 0;
    cr_assert_eq(fscanf(f, "%ld", &pid), 1);
    fclose(f);
    cr_assert_eq(pid, (long)getpid());
    tpsc_sweep_unlock(dir);
    cr_assert_neq(access(path, F_OK), 0);
    rmdir(dir);
}
