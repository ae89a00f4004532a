/* The sweep runner: train or evaluate each grid point, skip finished ones, resume interrupted
 * ones. See sweep.h. */
#include "src/sweep/sweep.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "autograd/threads.h"
#include "src/common/merge_rules.h"
#include "src/io/checkpoint.h"
#include "src/sweep/lock.h"
#include "src/train/stop.h"
#include "src/train/setup.h"
#include "src/train/trainer.h"
#include "src/util/alloc.h"

const char *const tpsc_sweep_eval_keys[] = {"tps.", "data.", NULL};

static bool file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* The recipe with what may change between invocations of the same sweep (where it resumes
 * from, threads, log cadence) set aside, so that a finished or interrupted folder can be
 * matched with the point that made it. */
static void normalise(tpsc_recipe *r) {
    r->run.resume[0] = '\0';
    r->run.threads = 0;
    r->run.log_every = 1; /* any valid value: it is never run, only compared */
}

/* FNV-1a 64 of the normalised recipe's INI text: kept in done.json as the fallback identity
 * of a folder that has neither recipe.ini nor a checkpoint. It changes whenever the schema
 * gains a key, so the recipe itself is compared whenever it is there. */
static tpsc_status recipe_hash(const tpsc_recipe *r, uint64_t *hash) {
    tpsc_recipe *c = tpsc_malloc(sizeof *c, "recipe copy");
    if (!c) return TPSC_ERR_NOMEM;
    *c = *r;
    normalise(c);
    char *ini = tpsc_recipe_to_ini(c);
    tpsc_free(c);
    if (!ini) return tpsc_fail(TPSC_ERR_NOMEM, "sweep: out of memory writing a recipe");
    uint64_t h = 1469598103934665603ull;
    for (const unsigned char *p = (const unsigned char *)ini; *p; p++) h = (h ^ *p) * 1099511628211ull;
    tpsc_free(ini);
    *hash = h;
    return TPSC_OK;
}

static void describe_point(const tpsc_recipe *r, tpsc_sweep_row *row) {
    const tpsc_recipe_tps *t = &r->tps;
    snprintf(row->method, sizeof row->method, "%s", tok_method_name(t->cfg.method));
    size_t n = 0;
    row->keep_ratio[0] = row->keep_frac[0] = '\0';
    if (t->cfg.method == TOK_NONE) {
        snprintf(row->keep_ratio, sizeof row->keep_ratio, "1");
        snprintf(row->keep_frac, sizeof row->keep_frac, "1");
    } else if (t->cfg.method == TOK_TOME) {
        /* ToMe has no keep ratio: its r (and schedule), and the fraction of the patch tokens
         * left after the last block */
        if (t->cfg.tome_inflect != 0.0f)
            snprintf(row->keep_ratio, sizeof row->keep_ratio, "r=%d/%g", t->cfg.tome_r, (double)t->cfg.tome_inflect);
        else
            snprintf(row->keep_ratio, sizeof row->keep_ratio, "r=%d", t->cfg.tome_r);
        const size_t N = vit_num_patches(&r->model.vit), depth = r->model.vit.depth;
        int rs[1024];
        size_t tokens = 1 + N;
        if (depth <= 1024) {
            tok_tome_r_list(&t->cfg, (int)depth, rs);
            for (size_t i = 0; i < depth; i++) tokens -= tok_tome_block_r(rs[i], tokens);
        }
        snprintf(row->keep_frac, sizeof row->keep_frac, "%.4g", (double)(tokens - 1) / (double)N);
    } else {
        for (int i = 0; i < t->n_keep_ratio && n < sizeof row->keep_ratio; i++)
            n += (size_t)snprintf(row->keep_ratio + n, sizeof row->keep_ratio - n, "%s%g", i ? ";" : "",
                                  (double)t->keep_ratio[i]);
        n = 0;
        for (int s = 0; s < t->cfg.n_stages && n < sizeof row->keep_frac; s++)
            n += (size_t)snprintf(row->keep_frac + n, sizeof row->keep_frac - n, "%s%.4g", s ? ";" : "",
                                  (double)t->cfg.keep_frac[s]);
    }
    row->seed = r->run.seed;
}

/* Does the recipe stored in `file` (recipe.ini text, or a checkpoint's) equal r, threads, log
 * cadence and resume path aside? Loading the text with this build's schema fills keys added
 * since it was written with their defaults, so an upgrade of tpsc does not orphan a sweep. */
static tpsc_status stored_recipe_matches(const char *file, bool checkpoint, const tpsc_recipe *r, bool *same) {
    tpsc_recipe *stored = tpsc_malloc(sizeof *stored, "stored recipe");
    tpsc_recipe *want = tpsc_malloc(sizeof *want, "point recipe");
    char *text = NULL;
    tpsc_status st = stored && want ? TPSC_OK : TPSC_ERR_NOMEM;
    if (st == TPSC_OK && checkpoint) st = tpsc_checkpoint_read_recipe(file, &text);
    if (st == TPSC_OK && !checkpoint) {
        FILE *f = fopen(file, "rb");
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0) len = ftell(f);
        if (f && len >= 0 && fseek(f, 0, SEEK_SET) == 0 && (text = tpsc_malloc((size_t)len + 1, "recipe text"))) {
            if (fread(text, 1, (size_t)len, f) != (size_t)len) len = -1;
            text[len < 0 ? 0 : len] = '\0';
        }
        if (f) fclose(f);
        if (!text || len < 0) st = tpsc_fail(TPSC_ERR_IO, "cannot read %s", file);
    }
    if (st == TPSC_OK) st = tpsc_recipe_load_string(stored, text, file);
    if (st == TPSC_OK) {
        *want = *r;
        normalise(stored);
        normalise(want);
        *same = tpsc_recipe_equal(stored, want);
    }
    tpsc_free(text);
    tpsc_free(stored);
    tpsc_free(want);
    return st;
}

/* The recipe a point's folder was made with must be the point's: recipe.ini (written with
 * done.json), else the run's checkpoint, else (neither there) the hash in done.json. */
static tpsc_status check_folder_recipe(const char *dir, const tpsc_recipe *r, const uint64_t *done_hash,
                                       uint64_t want_hash, const char *what) {
    char path[TPSC_RECIPE_PATH_MAX * 2 + 16];
    bool same = true;
    snprintf(path, sizeof path, "%s/recipe.ini", dir);
    if (file_exists(path)) {
        TPSC_TRY(stored_recipe_matches(path, false, r, &same));
    } else {
        snprintf(path, sizeof path, "%s/last.h5", dir);
        if (file_exists(path)) TPSC_TRY(stored_recipe_matches(path, true, r, &same));
        else if (done_hash) same = *done_hash == want_hash;
    }
    if (!same)
        return tpsc_fail(TPSC_ERR_CONFIG, "%s/%s was written by another recipe than this sweep point's (another base "
                         "recipe or --set under the same --out?); remove the folder or use another --out", dir, what);
    return TPSC_OK;
}

static void report(const tpsc_sweep_opts *o, size_t i, const tpsc_sweep_counts *c, const char *run, const char *what,
                   bool done) {
    if (o->progress) o->progress(o->progress_user, i, c->points, run, what, done);
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A number after "key": in a JSON line, or NAN. */
static double json_number(const char *line, const char *key) {
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(line, pat);
    return p ? strtod(p + strlen(pat), NULL) : NAN;
}

/* Trains the point in other processes under o->launcher (see sweep.h): the recipe goes to
 * <dir>/launch.ini, the results come from the last evaluation in <dir>/metrics.jsonl. */
static tpsc_status launch_point(const tpsc_recipe *r, const char *dir, const tpsc_sweep_opts *o, tpsc_train_result *res) {
    memset(res, 0, sizeof *res);
    char *ini = tpsc_recipe_to_ini(r);
    if (!ini) return tpsc_fail(TPSC_ERR_NOMEM, "sweep: out of memory writing a recipe");
    char path[TPSC_RECIPE_PATH_MAX * 2 + 32];
    snprintf(path, sizeof path, "%s/launch.ini", dir);
    tpsc_status st = tpsc_sweep_write_text(path, ini);
    tpsc_free(ini);
    TPSC_TRY(st);
    char cmd[TPSC_RECIPE_PATH_MAX * 4 + 512];
    int len = snprintf(cmd, sizeof cmd, "%s '%s' train '%s' --quiet", o->launcher, o->exe, path);
    if (len < 0 || (size_t)len >= sizeof cmd) return tpsc_fail(TPSC_ERR_ARG, "sweep: the launch command is too long");
    double t0 = wall_s();
    int rc = system(cmd);
    res->train_seconds = wall_s() - t0;
    if (rc == -1 || !WIFEXITED(rc) || WEXITSTATUS(rc) != 0)
        return tpsc_fail(TPSC_ERR_INTERNAL, "sweep: `%s` failed (%s %d); its messages are above", cmd,
                         rc != -1 && WIFEXITED(rc) ? "exit status" : "wait status", rc != -1 && WIFEXITED(rc) ? WEXITSTATUS(rc) : rc);
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) return tpsc_fail(TPSC_ERR_MISSING, "sweep: %s: cannot open: %s", path, strerror(errno));
    char line[4096];
    bool found = false;
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, "\"eval\": true")) continue;
        found = true;
        res->steps = (int64_t)json_number(line, "step");
        res->last_eval.top1 = json_number(line, "top1");
        res->last_eval.top5 = json_number(line, "top5");
        res->last_eval.gmacs = json_number(line, "gmacs");
        res->last_eval.images_per_s = json_number(line, "images_per_s");
    }
    fclose(f);
    if (!found) return tpsc_fail(TPSC_ERR_FORMAT, "sweep: %s has no evaluation line", path);
    return TPSC_OK;
}

static tpsc_status train_point(tpsc_recipe *r, const char *dir, tpsc_sweep_row *row, tpsc_sweep_counts *counts,
                               const tpsc_sweep_opts *o, size_t i) {
    char last[sizeof r->run.resume + 16];
    int len = snprintf(last, sizeof last, "%s/last.h5", dir);
    row->resumed = file_exists(last);
    if (row->resumed) {
        if ((size_t)len >= sizeof r->run.resume)
            return tpsc_fail(TPSC_ERR_ARG, "sweep: %s is longer than run.resume holds (a shorter --out)", last);
        TPSC_TRY(check_folder_recipe(dir, r, NULL, 0, "last.h5"));
        memcpy(r->run.resume, last, (size_t)len + 1);
    }
    report(o, i, counts, row->run, row->resumed ? "interrupted earlier: resuming from its last.h5" : "training", false);
    tpsc_train_result res;
    if (o->launcher && o->launcher[0]) TPSC_TRY(launch_point(r, dir, o, &res));
    else TPSC_TRY(tpsc_train_run(r, &res));
    row->gmacs = res.last_eval.gmacs;
    row->top1 = res.last_eval.top1;
    row->top5 = res.last_eval.top5;
    row->images_per_s = res.last_eval.images_per_s;
    row->train_seconds = res.train_seconds;
    row->steps = res.steps;
    if (row->resumed) counts->resumed++;
    else counts->trained++;
    return TPSC_OK;
}

tpsc_status tpsc_sweep_checkpoint_recipe(const char *checkpoint, tpsc_recipe *r) {
    char *text = NULL;
    TPSC_TRY(tpsc_checkpoint_read_recipe(checkpoint, &text));
    tpsc_status st = tpsc_recipe_load_string(r, text, checkpoint);
    tpsc_free(text);
    return st;
}

static tpsc_status eval_point(const char *checkpoint, const tpsc_recipe *r, tpsc_sweep_row *row) {
    vit_config vc;
    tpsc_checkpoint_info info;
    TPSC_TRY(tpsc_checkpoint_read_config(checkpoint, &vc, NULL, &info));
    ag_set_threads(r->run.threads);
    vit_model m;
    TPSC_TRY(vit_model_create(&m, &vc, &r->tps.cfg));
    /* what training exports: the EMA weights when present */
    tpsc_status st = tpsc_checkpoint_load_params(checkpoint, info.has_ema ? "/ema" : "/model", &m.params, NULL, NULL);
    tpsc_data_config dc;
    tpsc_data_config_from_recipe(r, TPSC_SPLIT_VAL, &dc);
    tpsc_loader *val = NULL;
    if (st == TPSC_OK) st = tpsc_loader_open(&val, &dc, TPSC_SPLIT_VAL);
    ag_ctx *ctx = st == TPSC_OK ? ag_ctx_create(0) : NULL;
    if (st == TPSC_OK && !ctx) st = TPSC_ERR_NOMEM;
    tpsc_eval_result ev;
    if (st == TPSC_OK) st = tpsc_evaluate(&m, val, ctx, NULL, &ev);
    if (st == TPSC_OK) {
        row->gmacs = ev.gmacs;
        row->top1 = ev.top1;
        row->top5 = ev.top5;
        row->images_per_s = ev.images_per_s;
    }
    ag_ctx_free(ctx);
    tpsc_loader_close(val);
    vit_model_free(&m);
    return st;
}

tpsc_status tpsc_sweep_write_tables(const char *out_dir, const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n) {
    char path[TPSC_RECIPE_PATH_MAX + 32];
    tpsc_sweep_group *groups = tpsc_calloc(n ? n : 1, sizeof *groups, "sweep groups");
    if (!groups) return TPSC_ERR_NOMEM;
    size_t n_groups = 0;
    tpsc_sweep_group_rows(g, rows, n, groups, &n_groups);
    snprintf(path, sizeof path, "%s/results.csv", out_dir);
    tpsc_status st = tpsc_sweep_write_csv(path, g, rows, n);
    snprintf(path, sizeof path, "%s/summary.csv", out_dir);
    if (st == TPSC_OK) st = tpsc_sweep_write_summary_csv(path, groups, n_groups);
    snprintf(path, sizeof path, "%s/results.md", out_dir);
    if (st == TPSC_OK) st = tpsc_sweep_write_markdown(path, g, rows, n, groups, n_groups);
    tpsc_free(groups);
    return st;
}

/* done.json of the point: *found, and the row when the recipe matches. */
static tpsc_status check_done(const char *dir, const tpsc_sweep_grid *g, const tpsc_recipe *r, tpsc_sweep_row *row,
                              bool *found) {
    tpsc_sweep_row done;
    tpsc_status st = tpsc_sweep_read_done(dir, g, &done);
    *found = st == TPSC_OK;
    if (st == TPSC_ERR_MISSING) {
        tpsc_clear_error();
        return TPSC_OK;
    }
    TPSC_TRY(st);
    TPSC_TRY(check_folder_recipe(dir, r, &done.recipe_hash, row->recipe_hash, "done.json"));
    *row = done;
    return TPSC_OK;
}

/* dir/recipe.ini: the point's recipe as run, for the record and for the check above. */
static tpsc_status write_point_recipe(const char *dir, const tpsc_recipe *r) {
    tpsc_recipe *c = tpsc_malloc(sizeof *c, "recipe copy");
    if (!c) return TPSC_ERR_NOMEM;
    *c = *r;
    c->run.resume[0] = '\0'; /* how it got here is not part of what it is */
    char *ini = tpsc_recipe_to_ini(c);
    tpsc_free(c);
    if (!ini) return tpsc_fail(TPSC_ERR_NOMEM, "sweep: out of memory writing a recipe");
    char path[TPSC_RECIPE_PATH_MAX * 2 + 16];
    snprintf(path, sizeof path, "%s/recipe.ini", dir);
    tpsc_status st = tpsc_sweep_write_text(path, ini);
    tpsc_free(ini);
    return st;
}

static tpsc_status run_point(const tpsc_recipe *base, const tpsc_sweep_grid *g, const tpsc_sweep_opts *o, size_t i,
                             tpsc_recipe *r, tpsc_sweep_row *row, tpsc_sweep_counts *counts) {
    int idx[TPSC_SWEEP_MAX_AXES];
    tpsc_grid_point(g, i, idx);
    memset(row, 0, sizeof *row);
    TPSC_TRY(tpsc_grid_run_name(g, idx, row->run, sizeof row->run));
    for (int a = 0; a < g->n_axes; a++) snprintf(row->values[a], sizeof row->values[a], "%s", g->axes[a].values[idx[a]]);
    *r = *base;
    TPSC_TRY(tpsc_grid_apply(g, idx, r));
    char set[TPSC_RECIPE_PATH_MAX + 32];
    snprintf(set, sizeof set, "run.out_dir=%s", o->out_dir);
    TPSC_TRY(tpsc_recipe_set(r, set));
    snprintf(set, sizeof set, "run.name=%s", row->run);
    TPSC_TRY(tpsc_recipe_set(r, set));
    r->run.resume[0] = '\0';
    if (o->threads >= 0) r->run.threads = o->threads;
    TPSC_TRY(tpsc_recipe_validate(r));
    describe_point(r, row);
    TPSC_TRY(recipe_hash(r, &row->recipe_hash));

    char dir[TPSC_RECIPE_PATH_MAX * 2];
    snprintf(dir, sizeof dir, "%s/%s", o->out_dir, row->run);
    bool found, taken;
    TPSC_TRY(check_done(dir, g, r, row, &found));
    if (!found) {
        TPSC_TRY(tpsc_mkdirs(dir));
        TPSC_TRY(tpsc_sweep_lock(dir, &taken));
        if (!taken) {
            row->busy = true;
            counts->busy++;
            report(o, i, counts, row->run, "being run by another sweep process: left to it", true);
            return TPSC_OK;
        }
        /* another process may have finished it between our first look and the lock */
        tpsc_status st = check_done(dir, g, r, row, &found);
        if (st != TPSC_OK || found) tpsc_sweep_unlock(dir);
        TPSC_TRY(st);
    }
    if (found) {
        counts->skipped++;
        report(o, i, counts, row->run, "finished earlier: skipped", true);
        return TPSC_OK;
    }
    tpsc_status st;
    if (o->checkpoint) {
        report(o, i, counts, row->run, "evaluating", false);
        st = eval_point(o->checkpoint, r, row);
        if (st == TPSC_OK) counts->evaluated++;
    } else {
        st = train_point(r, dir, row, counts, o, i);
    }
    if (st == TPSC_OK) st = write_point_recipe(dir, r);
    if (st == TPSC_OK) st = tpsc_sweep_write_done(dir, row, g);
    tpsc_sweep_unlock(dir);
    TPSC_TRY(st);
    report(o, i, counts, row->run, "done", true);
    return TPSC_OK;
}

tpsc_status tpsc_sweep_run(const tpsc_recipe *base, const tpsc_sweep_grid *g, const tpsc_sweep_opts *o,
                           tpsc_sweep_row *rows, tpsc_sweep_counts *counts) {
    memset(counts, 0, sizeof *counts);
    counts->points = tpsc_grid_size(g);
    TPSC_TRY(tpsc_grid_check(g, base, o->checkpoint ? tpsc_sweep_eval_keys : NULL));
    TPSC_TRY(tpsc_mkdirs(o->out_dir));
    tpsc_recipe *r = tpsc_malloc(sizeof *r, "sweep point recipe");
    if (!r) return TPSC_ERR_NOMEM;
    tpsc_status st = TPSC_OK;
    for (size_t i = 0; st == TPSC_OK && i < counts->points; i++) {
        /* a stop request (SIGTERM, Ctrl-C) that came after the last point's final step */
        if (tpsc_train_stop_signal() != 0) {
            st = tpsc_fail(TPSC_ERR_INTERRUPTED, "signal %d: stopped before point %zu of %zu; rerun to continue",
                           tpsc_train_stop_signal(), i + 1, counts->points);
            break;
        }
        st = run_point(base, g, o, i, r, &rows[i], counts);
        if (st != TPSC_OK) {
            /* the tables still show every point finished before this one; the point's own
             * failure is what the caller hears about */
            char msg[1024];
            snprintf(msg, sizeof msg, "%s", tpsc_last_error());
            (void)tpsc_sweep_write_tables(o->out_dir, g, rows, i);
            st = tpsc_fail(st, "sweep point %s: %s", rows[i].run[0] ? rows[i].run : "?", msg);
            break;
        }
        st = tpsc_sweep_write_tables(o->out_dir, g, rows, i + 1);
    }
    tpsc_free(r);
    return st;
}
