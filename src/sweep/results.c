/* Rows of a sweep on disk: done.json markers, results.csv, summary.csv, results.md. */
#include "src/sweep/results.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/io/atomic.h"
#include "src/io/fault.h"
#include "src/util/alloc.h"

/* Every file here is small text written in one go into the atomic temporary. */
typedef void (*emit_fn)(FILE *f, const void *what);
typedef struct text_job {
    emit_fn emit;
    const void *what;
} text_job;

static tpsc_status write_text(const char *tmp_path, const char *final_path, void *user) {
    const text_job *job = user;
    FILE *f = fopen(tmp_path, "w");
    if (!f) return tpsc_fail(TPSC_ERR_IO, "cannot write %s: %s", final_path, strerror(errno));
    job->emit(f, job->what);
    long bytes = ftell(f);
    int err = tpsc_io_fault_write(final_path, bytes > 0 ? (size_t)bytes : 0);
    errno = 0;
    if (!err && (fflush(f) != 0 || ferror(f))) err = errno ? errno : EIO;
    if (fclose(f) != 0 && !err) err = errno ? errno : EIO;
    /* tpsc_atomic_write removes the partial temporary; final_path keeps its old content */
    if (err) return tpsc_fail(TPSC_ERR_IO, "writing %s failed: %s", final_path, strerror(err));
    return TPSC_OK;
}

static tpsc_status write_file(const char *path, emit_fn emit, const void *what) {
    text_job job = {emit, what};
    return tpsc_atomic_write(path, write_text, &job);
}

static void emit_text(FILE *f, const void *what) { fputs((const char *)what, f); }

tpsc_status tpsc_sweep_write_text(const char *path, const char *text) { return write_file(path, emit_text, text); }

/* ---- done.json ------------------------------------------------------------------------------ */

typedef struct done_job {
    const tpsc_sweep_row *row;
    const tpsc_sweep_grid *g;
} done_job;

static void emit_done(FILE *f, const void *what) {
    const done_job *d = what;
    const tpsc_sweep_row *r = d->row;
    fprintf(f,
            "{\"run\": \"%s\", \"method\": \"%s\", \"keep_ratio\": \"%s\", \"keep_frac\": \"%s\", \"seed\": %d, "
            "\"gmacs\": %.9g, \"top1\": %.6f, \"top5\": %.6f, \"images_per_s\": %.3f, \"train_seconds\": %.3f, "
            "\"steps\": %lld, \"resumed\": %s, \"recipe_hash\": \"%016llx\", \"grid\": {",
            r->run, r->method, r->keep_ratio, r->keep_frac, r->seed, r->gmacs, r->top1, r->top5, r->images_per_s,
            r->train_seconds, (long long)r->steps, r->resumed ? "true" : "false", (unsigned long long)r->recipe_hash);
    for (int a = 0; a < d->g->n_axes; a++) fprintf(f, "%s\"%s\": \"%s\"", a ? ", " : "", d->g->axes[a].key, r->values[a]);
    fprintf(f, "}}\n");
}

tpsc_status tpsc_sweep_write_done(const char *dir, const tpsc_sweep_row *row, const tpsc_sweep_grid *g) {
    char path[TPSC_RECIPE_PATH_MAX * 2 + 16];
    snprintf(path, sizeof path, "%s/done.json", dir);
    done_job d = {row, g};
    return write_file(path, emit_done, &d);
}

/* The text right after "\"key\": " in a one-line JSON object we wrote ourselves. */
static const char *field(const char *json, const char *key) {
    char pat[96];
    snprintf(pat, sizeof pat, "\"%s\": ", key);
    const char *p = strstr(json, pat);
    return p ? p + strlen(pat) : NULL;
}

static bool read_string(const char *json, const char *key, char *out, size_t cap) {
    const char *p = field(json, key);
    if (!p || *p != '"') return false;
    const char *end = strchr(p + 1, '"');
    if (!end || (size_t)(end - p - 1) >= cap) return false;
    snprintf(out, cap, "%.*s", (int)(end - p - 1), p + 1);
    return true;
}

static bool read_number(const char *json, const char *key, double *out) {
    const char *p = field(json, key);
    if (!p) return false;
    char *end;
    errno = 0;
    *out = strtod(p, &end);
    return end != p && errno == 0;
}

tpsc_status tpsc_sweep_read_done(const char *dir, const tpsc_sweep_grid *g, tpsc_sweep_row *row) {
    char path[TPSC_RECIPE_PATH_MAX * 2 + 16];
    snprintf(path, sizeof path, "%s/done.json", dir);
    FILE *f = fopen(path, "r");
    if (!f) return errno == ENOENT ? TPSC_ERR_MISSING : tpsc_fail(TPSC_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    char json[4096];
    size_t len = fread(json, 1, sizeof json - 1, f);
    fclose(f);
    json[len] = '\0';
    memset(row, 0, sizeof *row);
    double seed = 0, steps = 0;
    const char *bad = NULL;
    if (!read_string(json, "run", row->run, sizeof row->run)) bad = "run";
    else if (!read_string(json, "method", row->method, sizeof row->method)) bad = "method";
    else if (!read_string(json, "keep_ratio", row->keep_ratio, sizeof row->keep_ratio)) bad = "keep_ratio";
    else if (!read_string(json, "keep_frac", row->keep_frac, sizeof row->keep_frac)) bad = "keep_frac";
    else if (!read_number(json, "seed", &seed)) bad = "seed";
    else if (!read_number(json, "gmacs", &row->gmacs)) bad = "gmacs";
    else if (!read_number(json, "top1", &row->top1)) bad = "top1";
    else if (!read_number(json, "top5", &row->top5)) bad = "top5";
    else if (!read_number(json, "images_per_s", &row->images_per_s)) bad = "images_per_s";
    else if (!read_number(json, "train_seconds", &row->train_seconds)) bad = "train_seconds";
    else if (!read_number(json, "steps", &steps)) bad = "steps";
    for (int a = 0; !bad && a < g->n_axes; a++)
        if (!read_string(json, g->axes[a].key, row->values[a], sizeof row->values[a])) bad = g->axes[a].key;
    if (bad)
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: field \"%s\" missing or malformed (delete the file to rerun the point)",
                         path, bad);
    const char *res = field(json, "resumed");
    row->resumed = res && !strncmp(res, "true", 4);
    char hash[24];
    if (!read_string(json, "recipe_hash", hash, sizeof hash))
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: field \"recipe_hash\" missing (delete the file to rerun the point)", path);
    row->recipe_hash = strtoull(hash, NULL, 16);
    row->seed = (int)seed;
    row->steps = (int64_t)steps;
    return TPSC_OK;
}

/* ---- results.csv ------------------------------------------------------------------------------ */

typedef struct table_job {
    const tpsc_sweep_grid *g;
    const tpsc_sweep_row *rows;
    size_t n;
    const tpsc_sweep_group *groups;
    size_t n_groups;
} table_job;

/* CSV field: quoted when it holds a comma or quote (RFC 4180). */
static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void emit_csv(FILE *f, const void *what) {
    const table_job *t = what;
    fprintf(f, "run,method,keep_ratio,keep_frac,seed,gmacs_per_image,top1,top5,images_per_s,train_seconds,steps,resumed");
    for (int a = 0; a < t->g->n_axes; a++) {
        fputc(',', f);
        csv_field(f, t->g->axes[a].key);
    }
    fputc('\n', f);
    for (size_t i = 0; i < t->n; i++) {
        const tpsc_sweep_row *r = &t->rows[i];
        if (r->busy) continue;
        csv_field(f, r->run);
        fprintf(f, ",%s,", r->method);
        csv_field(f, r->keep_ratio);
        fputc(',', f);
        csv_field(f, r->keep_frac);
        fprintf(f, ",%d,%.6f,%.2f,%.2f,%.1f,%.1f,%lld,%d", r->seed, r->gmacs, r->top1, r->top5, r->images_per_s,
                r->train_seconds, (long long)r->steps, r->resumed ? 1 : 0);
        for (int a = 0; a < t->g->n_axes; a++) {
            fputc(',', f);
            csv_field(f, r->values[a]);
        }
        fputc('\n', f);
    }
}

tpsc_status tpsc_sweep_write_csv(const char *path, const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n) {
    table_job t = {g, rows, n, NULL, 0};
    return write_file(path, emit_csv, &t);
}

/* ---- groups over seeds ------------------------------------------------------------------------ */

static void group_label(const tpsc_sweep_grid *g, const tpsc_sweep_row *r, int seed_axis, char *out, size_t cap) {
    size_t n = 0;
    out[0] = '\0';
    for (int a = 0; a < g->n_axes && n < cap; a++) {
        if (a == seed_axis) continue;
        n += (size_t)snprintf(out + n, cap - n, "%s%s=%s", n ? " " : "", strchr(g->axes[a].key, '.') + 1, r->values[a]);
    }
    if (!out[0]) snprintf(out, cap, "%s", r->method);
}

static int group_cmp(const void *pa, const void *pb) {
    const tpsc_sweep_group *a = pa, *b = pb;
    int c = strcmp(a->method, b->method);
    if (c) return c;
    if (a->gmacs != b->gmacs) return a->gmacs < b->gmacs ? -1 : 1;
    return strcmp(a->label, b->label);
}

void tpsc_sweep_group_rows(const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n, tpsc_sweep_group *groups,
                           size_t *n_groups) {
    const int seed_axis = tpsc_grid_find(g, "run.seed");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].busy) continue;
        char label[sizeof groups->label];
        group_label(g, &rows[i], seed_axis, label, sizeof label);
        size_t j = 0;
        while (j < m && strcmp(groups[j].label, label)) j++;
        tpsc_sweep_group *gr = &groups[j];
        if (j == m) {
            memset(gr, 0, sizeof *gr);
            snprintf(gr->label, sizeof gr->label, "%s", label);
            snprintf(gr->method, sizeof gr->method, "%s", rows[i].method);
            snprintf(gr->keep_ratio, sizeof gr->keep_ratio, "%s", rows[i].keep_ratio);
            gr->top1_min = INFINITY;
            gr->top1_max = -INFINITY;
            m++;
        }
        const tpsc_sweep_row *r = &rows[i];
        gr->n++;
        gr->gmacs += r->gmacs;
        gr->top1_mean += r->top1;
        gr->top1_std += r->top1 * r->top1; /* sum of squares until the end */
        gr->top5_mean += r->top5;
        gr->images_per_s += r->images_per_s;
        gr->train_seconds += r->train_seconds;
        if (r->top1 < gr->top1_min) gr->top1_min = r->top1;
        if (r->top1 > gr->top1_max) gr->top1_max = r->top1;
    }
    for (size_t j = 0; j < m; j++) {
        tpsc_sweep_group *gr = &groups[j];
        const double k = gr->n;
        gr->gmacs /= k;
        gr->top1_mean /= k;
        gr->top5_mean /= k;
        gr->images_per_s /= k;
        gr->train_seconds /= k;
        /* sample standard deviation over seeds (n - 1); 0 for a single run */
        double var = gr->n > 1 ? (gr->top1_std - k * gr->top1_mean * gr->top1_mean) / (k - 1) : 0;
        gr->top1_std = var > 0 ? sqrt(var) : 0;
    }
    qsort(groups, m, sizeof *groups, group_cmp);
    *n_groups = m;
}

static void emit_summary(FILE *f, const void *what) {
    const table_job *t = what;
    fprintf(f, "method,keep_ratio,gmacs_per_image,top1_mean,top1_min,top1_max,top1_std,top5_mean,images_per_s,"
               "train_seconds,n_runs,group\n");
    for (size_t j = 0; j < t->n_groups; j++) {
        const tpsc_sweep_group *gr = &t->groups[j];
        fprintf(f, "%s,", gr->method);
        csv_field(f, gr->keep_ratio);
        fprintf(f, ",%.6f,%.3f,%.2f,%.2f,%.3f,%.3f,%.1f,%.1f,%d,", gr->gmacs, gr->top1_mean, gr->top1_min, gr->top1_max,
                gr->top1_std, gr->top5_mean, gr->images_per_s, gr->train_seconds, gr->n);
        csv_field(f, gr->label);
        fputc('\n', f);
    }
}

tpsc_status tpsc_sweep_write_summary_csv(const char *path, const tpsc_sweep_group *groups, size_t n) {
    table_job t = {NULL, NULL, 0, groups, n};
    return write_file(path, emit_summary, &t);
}

/* ---- results.md ---------------------------------------------------------------------------- */

static void emit_markdown(FILE *f, const void *what) {
    const table_job *t = what;
    const bool seeds = tpsc_grid_find(t->g, "run.seed") >= 0;
    fprintf(f, "# Sweep results\n\n");
    if (seeds) {
        fprintf(f, "Mean over seeds; spread = min..max top-1 (std = sample standard deviation).\n\n");
        fprintf(f, "| setting | method | keep ratio | GMACs/img | top-1 mean | top-1 min..max | std | top-5 mean | "
                   "images/s | train s | seeds |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
        for (size_t j = 0; j < t->n_groups; j++) {
            const tpsc_sweep_group *g = &t->groups[j];
            fprintf(f, "| %s | %s | %s | %.4f | %.2f%% | %.2f..%.2f | %.2f | %.2f%% | %.0f | %.0f | %d |\n", g->label,
                    g->method, g->keep_ratio, g->gmacs, g->top1_mean, g->top1_min, g->top1_max, g->top1_std,
                    g->top5_mean, g->images_per_s, g->train_seconds, g->n);
        }
        fprintf(f, "\n## Every run\n\n");
    }
    fprintf(f, "| run | method | keep ratio | kept fraction per stage | seed | GMACs/img | top-1 | top-5 | images/s | "
               "training time |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < t->n; i++) {
        const tpsc_sweep_row *r = &t->rows[i];
        if (r->busy) continue;
        fprintf(f, "| %s | %s | %s | %s | %d | %.4f | %.2f%% | %.2f%% | %.0f | ", r->run, r->method, r->keep_ratio,
                r->keep_frac, r->seed, r->gmacs, r->top1, r->top5, r->images_per_s);
        if (r->steps == 0 && r->train_seconds == 0)
            fprintf(f, "- (evaluation) |\n");
        else
            fprintf(f, "%.0f s, %lld steps%s |\n", r->train_seconds, (long long)r->steps, r->resumed ? " (resumed)" : "");
    }
}

tpsc_status tpsc_sweep_write_markdown(const char *path, const tpsc_sweep_grid *g, const tpsc_sweep_row *rows, size_t n,
                                      const tpsc_sweep_group *groups, size_t n_groups) {
    table_job t = {g, rows, n, groups, n_groups};
    return write_file(path, emit_markdown, &t);
}
