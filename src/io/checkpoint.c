/* The tpsc checkpoint format (layout in checkpoint.h and docs/checkpoints.md). */
#include "src/io/checkpoint.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/build_info.h"
#include "src/io/atomic.h"
#include "src/io/h5util.h"
#include "src/util/alloc.h"

#define PATH_MAX_H5 256

static tpsc_status join(char *buf, const char *group, const char *name, const char *file) {
    if (snprintf(buf, PATH_MAX_H5, "%s/%s", group, name) >= PATH_MAX_H5)
        return tpsc_fail(TPSC_ERR_ARG, "%s: object path %s/%s too long", file, group, name);
    return TPSC_OK;
}

/* ---- save ----------------------------------------------------------------------------- */


/* Channel gates. A training checkpoint stores the targets (cdcp_keep_qk, cdcp_keep_v,
 * cdcp_keep_mlp: one per block; cdcp_gate_init, cdcp_gate_temp), from which the gate
 * parameters are declared; an inference file whose channels were removed stores the widths
 * that remain per block (head_dim_qk, head_dim_v, mlp_hidden), which libtpsinfer checks the
 * tensors against. Dense models write neither. */
static tpsc_status write_channels(tpsc_h5 *f, const tpsc_checkpoint *ck, const tok_config *t, int depth) {
    if (ck->chan_width[0]) {
        static const char *const names[CHAN_KINDS] = {"head_dim_qk", "head_dim_v", "mlp_hidden"};
        for (int k = 0; k < CHAN_KINDS; k++) {
            if (!ck->chan_width[k]) return tpsc_fail(TPSC_ERR_ARG, "%s: channel widths of kind %d missing", f->name, k);
            TPSC_TRY(tpsc_h5_write_attr_i32s(f, "/", names[k], ck->chan_width[k], depth));
        }
        return TPSC_OK;
    }
    if (!chan_enabled(&t->chan)) return TPSC_OK;
    if (t->chan.n_blocks != depth)
        return tpsc_fail(TPSC_ERR_ARG, "%s: channel gate table of %d blocks for depth %d", f->name, t->chan.n_blocks, depth);
    for (int k = 0; k < CHAN_KINDS; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s", chan_key_name((chan_gate_kind)k)); /* "cdcp.keep_qk" -> "cdcp_keep_qk" */
        name[4] = '_';
        TPSC_TRY(tpsc_h5_write_attr_f32s(f, "/", name, t->chan.keep[k], depth));
    }
    TPSC_TRY(tpsc_h5_write_attr_f64(f, "/", "cdcp_gate_init", t->chan.gate_init));
    return tpsc_h5_write_attr_f64(f, "/", "cdcp_gate_temp", t->chan.gate_temp);
}

static tpsc_status write_root_attrs(tpsc_h5 *f, const tpsc_checkpoint *ck, const char *format) {
    const vit_config *v = ck->vit;
    TPSC_TRY(tpsc_h5_write_attr_str(f, "/", "format", format));
    TPSC_TRY(tpsc_h5_write_attr_i64(f, "/", "format_version", TPSC_CHECKPOINT_VERSION));
    TPSC_TRY(tpsc_h5_write_attr_str(f, "/", "arch", v->arch));
    const struct { const char *name; size_t value; } sizes[] = {
        {"img_size", v->img_size},   {"patch_size", v->patch_size}, {"in_chans", v->in_chans},
        {"embed_dim", v->embed_dim}, {"depth", v->depth},           {"num_heads", v->num_heads},
        {"num_classes", v->num_classes},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        TPSC_TRY(tpsc_h5_write_attr_i64(f, "/", sizes[i].name, (int64_t)sizes[i].value));
    /* float -> double is exact, so these read back bit-identical. */
    TPSC_TRY(tpsc_h5_write_attr_f64(f, "/", "mlp_ratio", v->mlp_ratio));
    TPSC_TRY(tpsc_h5_write_attr_f64(f, "/", "ln_eps", v->ln_eps));

    tok_config dense = {.method = TOK_NONE, .n_stages = 0, .squeeze_temp = 1.0f};
    const tok_config *t = ck->tps ? ck->tps : &dense;
    const method_row *row = tok_method_row(t->method);
    if (!row) return tpsc_fail(TPSC_ERR_ARG, "%s: unknown TPS method %d", f->name, (int)t->method);
    if (t->n_stages < 0 || t->n_stages > TOK_MAX_STAGES)
        return tpsc_fail(TPSC_ERR_ARG, "%s: %d TPS stages (at most %d)", f->name, t->n_stages, TOK_MAX_STAGES);
    int32_t loc[TOK_MAX_STAGES];
    for (int s = 0; s < t->n_stages; s++) loc[s] = t->prune_loc[s];
    TPSC_TRY(tpsc_h5_write_attr_str(f, "/", "method", row->name));
    TPSC_TRY(tpsc_h5_write_attr_i32s(f, "/", "prune_loc", loc, t->n_stages));
    TPSC_TRY(tpsc_h5_write_attr_f32s(f, "/", "keep_frac", t->keep_frac, t->n_stages));
    TPSC_TRY(tpsc_h5_write_attr_f64(f, "/", "squeeze_temp", t->squeeze_temp));
    TPSC_TRY(tpsc_h5_write_attr_i64(f, "/", "fuse_token", t->evit_drop_pruned ? 0 : 1));
    TPSC_TRY(write_channels(f, ck, t, (int)v->depth));

    TPSC_TRY(tpsc_h5_write_attr_str(f, "/", "git_describe", tpsc_git_describe()));
    TPSC_TRY(tpsc_h5_write_attr_strs(f, "/", "class_names", ck->class_names, ck->n_class_names));
    TPSC_TRY(tpsc_h5_write_attr_str(f, "/", "recipe", ck->recipe_text ? ck->recipe_text : ""));
    if (ck->precision) TPSC_TRY(tpsc_h5_write_attr_str(f, "/", "precision", ck->precision));
    return TPSC_OK;
}

/* One dataset per parameter, in the parameter's own (PyTorch) shape; `steps` (may be NULL)
 * become a "step" attribute on each. */
static tpsc_status write_tensors(tpsc_h5 *f, const char *group, const ag_params *p, const float *block,
                                 const int64_t *steps) {
    TPSC_TRY(tpsc_h5_make_group(f, group));
    char path[PATH_MAX_H5];
    for (int i = 0; i < p->count; i++) {
        const ag_param *it = &p->items[i];
        TPSC_TRY(join(path, group, it->name, f->name));
        TPSC_TRY(tpsc_h5_write_f32(f, path, it->t.ndim, it->t.shape, block + it->offset));
        if (steps) TPSC_TRY(tpsc_h5_write_attr_i64(f, path, "step", steps[i]));
    }
    return TPSC_OK;
}

static tpsc_status write_state(tpsc_h5 *f, const tpsc_checkpoint *ck) {
    TPSC_TRY(tpsc_h5_write_u64(f, "/state/rng", 2, (size_t[]){(size_t)ck->n_rng, 4}, ck->rng_states));
    TPSC_TRY(tpsc_h5_write_i64(f, "/state/loader", 1, (size_t[]){(size_t)ck->n_loader_pos}, ck->loader_pos));
    TPSC_TRY(tpsc_h5_write_i64(f, "/state/epoch", 0, NULL, &ck->epoch));
    TPSC_TRY(tpsc_h5_write_i64(f, "/state/step", 0, NULL, &ck->step));
    TPSC_TRY(tpsc_h5_write_f32(f, "/state/best_top1", 0, NULL, &ck->best_top1));
    return TPSC_OK;
}

static tpsc_status write_preprocessing(tpsc_h5 *f, const tpsc_preprocessing *p) {
    TPSC_TRY(tpsc_h5_write_attr_i64(f, "/", "input_size", p->input_size));
    TPSC_TRY(tpsc_h5_write_attr_f64(f, "/", "crop_pct", p->crop_pct));
    TPSC_TRY(tpsc_h5_write_attr_f32s(f, "/", "mean", p->mean, 3));
    TPSC_TRY(tpsc_h5_write_attr_f32s(f, "/", "std", p->std, 3));
    return tpsc_h5_write_attr_str(f, "/", "interpolation", p->interpolation ? p->interpolation : "bicubic");
}

/* Everything into f, which the caller closes. */
static tpsc_status write_contents(tpsc_h5 *f, const tpsc_checkpoint *ck) {
    const char *format = ck->format ? ck->format : TPSC_FORMAT_CHECKPOINT;
    TPSC_TRY(write_root_attrs(f, ck, format));
    if (ck->preprocessing) TPSC_TRY(write_preprocessing(f, ck->preprocessing));
    TPSC_TRY(write_tensors(f, "/model", ck->params, ck->params->data, NULL));
    if (ck->opt_name) {
        /* SGD without momentum has no buffer but still a step count worth keeping. */
        TPSC_TRY(tpsc_h5_make_group(f, "/optimizer"));
        TPSC_TRY(tpsc_h5_write_attr_str(f, "/optimizer", "name", ck->opt_name));
        TPSC_TRY(tpsc_h5_write_attr_i64(f, "/optimizer", "step", ck->opt_step));
        if (ck->opt_m) TPSC_TRY(write_tensors(f, "/optimizer/m", ck->params, ck->opt_m, ck->opt_param_step));
        if (ck->opt_v) TPSC_TRY(write_tensors(f, "/optimizer/v", ck->params, ck->opt_v, NULL));
    }
    if (ck->ema) TPSC_TRY(write_tensors(f, "/ema", ck->params, ck->ema, NULL));
    if (strcmp(format, TPSC_FORMAT_CHECKPOINT) == 0) TPSC_TRY(write_state(f, ck));
    return TPSC_OK;
}

static tpsc_status write_checkpoint(const char *tmp_path, const char *final_path, void *user) {
    tpsc_h5 f;
    TPSC_TRY(tpsc_h5_create(&f, tmp_path, final_path));
    tpsc_status st = write_contents(&f, user);
    tpsc_status cst = tpsc_h5_close(&f);
    return st != TPSC_OK ? st : cst;
}

/* What every save checks first; name is the file's in messages. */
static tpsc_status check_checkpoint(const char *name, const tpsc_checkpoint *ck) {
    if (!ck || !ck->vit || !ck->params || !ck->params->finalised)
        return tpsc_fail(TPSC_ERR_ARG, "%s: checkpoint without a model config or finalised parameters", name);
    const char *format = ck->format ? ck->format : TPSC_FORMAT_CHECKPOINT;
    if (strcmp(format, TPSC_FORMAT_CHECKPOINT) != 0 && strcmp(format, TPSC_FORMAT_INFERENCE) != 0)
        return tpsc_fail(TPSC_ERR_ARG, "%s: unknown checkpoint format '%s'", name, format);
    if (ck->opt_m && (!ck->opt_name || !*ck->opt_name))
        return tpsc_fail(TPSC_ERR_ARG, "%s: optimizer state without an optimizer name", name);
    if ((ck->opt_v && !ck->opt_m) || (ck->opt_param_step && !ck->opt_m))
        return tpsc_fail(TPSC_ERR_ARG, "%s: optimizer v or per-parameter steps without m", name);
    if (ck->n_rng < 0 || (ck->n_rng > 0 && !ck->rng_states) || ck->n_loader_pos < 0 ||
        (ck->n_loader_pos > 0 && !ck->loader_pos) || ck->n_class_names < 0 ||
        (ck->n_class_names > 0 && !ck->class_names))
        return tpsc_fail(TPSC_ERR_ARG, "%s: a count is negative or its array is NULL", name);
    return TPSC_OK;
}

tpsc_status tpsc_checkpoint_save(const char *path, const tpsc_checkpoint *ck) {
    TPSC_TRY(check_checkpoint(path, ck));
    tpsc_status st = tpsc_atomic_write(path, write_checkpoint, (void *)ck);
    if (st != TPSC_OK) tpsc_error_context("saving checkpoint: ");
    return st;
}

tpsc_status tpsc_checkpoint_save_image(const tpsc_checkpoint *ck, const char *name, void **image, size_t *bytes) {
    *image = NULL, *bytes = 0;
    TPSC_TRY(check_checkpoint(name, ck));
    tpsc_h5 f;
    TPSC_TRY(tpsc_h5_create_image(&f, name));
    tpsc_status st = write_contents(&f, ck);
    if (st != TPSC_OK) {
        tpsc_h5_close(&f);
        return st;
    }
    return tpsc_h5_close_image(&f, image, bytes);
}

/* ---- opening for reading -------------------------------------------------------------- */

/* Opens and checks the format name and version, which every reader needs first. */
static tpsc_status open_checkpoint(tpsc_h5 *f, const char *path, char format[32], int *version) {
    TPSC_TRY(tpsc_h5_open_read(f, path));
    tpsc_status st = TPSC_OK;
    char fmt[32];
    int64_t ver = 0;
    if (!tpsc_h5_attr_exists(f, "/", "format"))
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: not a tpsc checkpoint (no 'format' attribute on /)", path);
    else if ((st = tpsc_h5_read_attr_strbuf(f, "/", "format", fmt, sizeof fmt)) != TPSC_OK)
        ;
    else if (strcmp(fmt, TPSC_FORMAT_CHECKPOINT) != 0 && strcmp(fmt, TPSC_FORMAT_INFERENCE) != 0)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: format is '%s', expected '%s' or '%s'", path, fmt,
                       TPSC_FORMAT_CHECKPOINT, TPSC_FORMAT_INFERENCE);
    else if ((st = tpsc_h5_read_attr_i64(f, "/", "format_version", &ver)) != TPSC_OK)
        ;
    else if (ver > TPSC_CHECKPOINT_VERSION)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: format_version %lld is newer than this build of tpsc supports (%d); "
                       "update tpsc", path, (long long)ver, TPSC_CHECKPOINT_VERSION);
    else if (ver < 1)
        st = tpsc_fail(TPSC_ERR_FORMAT, "%s: invalid format_version %lld", path, (long long)ver);
    if (st != TPSC_OK) {
        tpsc_h5_close(f);
        return st;
    }
    if (format) memcpy(format, fmt, sizeof fmt);
    if (version) *version = (int)ver;
    return TPSC_OK;
}

/* ---- config --------------------------------------------------------------------------- */

static tpsc_status read_size(const tpsc_h5 *f, const char *name, size_t *out) {
    int64_t v;
    TPSC_TRY(tpsc_h5_read_attr_i64(f, "/", name, &v));
    if (v < 0) return tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute %s is negative (%lld)", f->name, name, (long long)v);
    *out = (size_t)v;
    return TPSC_OK;
}

static tpsc_status read_float(const tpsc_h5 *f, const char *name, float *out) {
    double v;
    TPSC_TRY(tpsc_h5_read_attr_f64(f, "/", name, &v));
    *out = (float)v;
    return TPSC_OK;
}

static tpsc_status read_vit(const tpsc_h5 *f, vit_config *v) {
    memset(v, 0, sizeof *v);
    TPSC_TRY(tpsc_h5_read_attr_strbuf(f, "/", "arch", v->arch, sizeof v->arch));
    TPSC_TRY(read_size(f, "img_size", &v->img_size));
    TPSC_TRY(read_size(f, "patch_size", &v->patch_size));
    TPSC_TRY(read_size(f, "in_chans", &v->in_chans));
    TPSC_TRY(read_size(f, "embed_dim", &v->embed_dim));
    TPSC_TRY(read_size(f, "depth", &v->depth));
    TPSC_TRY(read_size(f, "num_heads", &v->num_heads));
    TPSC_TRY(read_size(f, "num_classes", &v->num_classes));
    TPSC_TRY(read_float(f, "mlp_ratio", &v->mlp_ratio));
    TPSC_TRY(read_float(f, "ln_eps", &v->ln_eps));
    return TPSC_OK;
}

/* The gate targets of a training checkpoint (see write_channels); absent: no gates. */
static tpsc_status read_channels(const tpsc_h5 *f, tok_config *t) {
    if (!tpsc_h5_attr_exists(f, "/", "cdcp_keep_qk")) return TPSC_OK;
    int n[CHAN_KINDS];
    for (int k = 0; k < CHAN_KINDS; k++) {
        char name[32];
        snprintf(name, sizeof name, "%s", chan_key_name((chan_gate_kind)k));
        name[4] = '_';
        TPSC_TRY(tpsc_h5_read_attr_f32s(f, "/", name, t->chan.keep[k], CHAN_MAX_BLOCKS, &n[k]));
        if (n[k] != n[0] || n[k] < 1)
            return tpsc_fail(TPSC_ERR_FORMAT, "%s: %s has %d entries, cdcp_keep_qk %d", f->name, name, n[k], n[0]);
    }
    t->chan.n_blocks = n[0];
    TPSC_TRY(read_float(f, "cdcp_gate_init", &t->chan.gate_init));
    return read_float(f, "cdcp_gate_temp", &t->chan.gate_temp);
}

static tpsc_status read_tps(const tpsc_h5 *f, tok_config *t) {
    memset(t, 0, sizeof *t);
    char method[32];
    TPSC_TRY(tpsc_h5_read_attr_strbuf(f, "/", "method", method, sizeof method));
    int m = tok_method_from_name(method);
    if (m < 0) return tpsc_fail(TPSC_ERR_FORMAT, "%s: unknown TPS method '%s' in attribute method", f->name, method);
    t->method = (tok_method)m;
    int32_t loc[TOK_MAX_STAGES];
    int n_loc = 0, n_frac = 0;
    TPSC_TRY(tpsc_h5_read_attr_i32s(f, "/", "prune_loc", loc, TOK_MAX_STAGES, &n_loc));
    TPSC_TRY(tpsc_h5_read_attr_f32s(f, "/", "keep_frac", t->keep_frac, TOK_MAX_STAGES, &n_frac));
    if (n_loc != n_frac)
        return tpsc_fail(TPSC_ERR_FORMAT, "%s: prune_loc has %d entries but keep_frac has %d", f->name, n_loc, n_frac);
    t->n_stages = n_loc;
    for (int s = 0; s < n_loc; s++) t->prune_loc[s] = loc[s];
    TPSC_TRY(read_float(f, "squeeze_temp", &t->squeeze_temp));
    /* fuse_token (evit): files written before it existed fused, as they still do by default */
    if (tpsc_h5_attr_exists(f, "/", "fuse_token")) {
        int64_t fuse = 1;
        TPSC_TRY(tpsc_h5_read_attr_i64(f, "/", "fuse_token", &fuse));
        if (fuse != 0 && fuse != 1)
            return tpsc_fail(TPSC_ERR_FORMAT, "%s: attribute fuse_token is %lld (need 0 or 1)", f->name, (long long)fuse);
        t->evit_drop_pruned = fuse == 0;
    }
    return read_channels(f, t);
}

tpsc_status tpsc_checkpoint_read_config(const char *path, vit_config *vit, tok_config *tps,
                                        tpsc_checkpoint_info *info) {
    tpsc_h5 f;
    char format[32];
    int version;
    TPSC_TRY(open_checkpoint(&f, path, format, &version));
    tpsc_status st = TPSC_OK;
    if (vit) st = read_vit(&f, vit);
    if (st == TPSC_OK && tps) st = read_tps(&f, tps);
    if (st == TPSC_OK && info) {
        memset(info, 0, sizeof *info);
        memcpy(info->format, format, sizeof info->format);
        info->format_version = version;
        /* Provenance only: a file converted by another tool may lack it. */
        if (!tpsc_h5_attr_exists(&f, "/", "git_describe") ||
            tpsc_h5_read_attr_strbuf(&f, "/", "git_describe", info->git_describe, sizeof info->git_describe) != TPSC_OK)
            snprintf(info->git_describe, sizeof info->git_describe, "unknown");
        info->has_optimizer = tpsc_h5_exists(&f, "/optimizer");
        info->has_ema = tpsc_h5_exists(&f, "/ema");
        info->has_state = tpsc_h5_exists(&f, "/state");
    }
    tpsc_h5_close(&f);
    return st;
}

/* ---- tensors -------------------------------------------------------------------------- */

void tpsc_load_report_init(tpsc_load_report *r) { memset(r, 0, sizeof *r); }

void tpsc_load_report_free(tpsc_load_report *r) {
    tpsc_h5_free_names(r->missing, r->n_missing);
    tpsc_h5_free_names(r->ignored, r->n_ignored);
    memset(r, 0, sizeof *r);
}

static void append(char *buf, size_t len, size_t *used, const char *s) {
    if (*used >= len) return;
    int n = snprintf(buf + *used, len - *used, "%s", s);
    *used += n > 0 ? (size_t)n : 0;
}

/* Length of the stem before the first all-digit component of a dotted name
 * ("score_predictor.2.in_conv.0.weight" -> 16, "score_predictor."), or 0 if there is none. */
static size_t numbered_stem(const char *name, long *index) {
    for (const char *c = name; *c; c++) {
        if (c != name && c[-1] != '.') continue;
        const char *e = c;
        while (*e >= '0' && *e <= '9') e++;
        if (e > c && *e == '.') {
            *index = strtol(c, NULL, 10);
            return (size_t)(c - name);
        }
    }
    return 0;
}

/* Names with a numbered component are summarised per stem, so that loading dense weights into
 * a 3-stage dTPS model reports "score_predictor.{0,1,2}.* (30 tensors)" rather than 30 names:
 * the user needs to see which modules are new, not every tensor of them. */
static void append_list(char *buf, size_t len, size_t *used, const char *title, char **names, int n) {
    if (n == 0) return;
    append(buf, len, used, title);
    bool first = true;
    for (int i = 0; i < n; i++) {
        long idx;
        const size_t stem = numbered_stem(names[i], &idx);
        bool seen = false; /* an earlier name of this stem printed the group */
        for (int j = 0; stem && j < i && !seen; j++) {
            long other;
            seen = numbered_stem(names[j], &other) == stem && strncmp(names[j], names[i], stem) == 0;
        }
        if (seen) continue;
        if (!first) append(buf, len, used, ", ");
        first = false;
        int count = 0;
        long indices[64];
        int n_indices = 0;
        for (int j = i; stem && j < n; j++) {
            long other;
            if (numbered_stem(names[j], &other) != stem || strncmp(names[j], names[i], stem) != 0) continue;
            count++;
            bool dup = false;
            for (int k = 0; k < n_indices; k++) dup |= indices[k] == other;
            if (!dup && n_indices < 64) indices[n_indices++] = other;
        }
        if (count <= 1) {
            append(buf, len, used, names[i]);
            continue;
        }
        if (*used < len) {
            const int w = snprintf(buf + *used, len - *used, "%.*s", (int)stem, names[i]);
            *used += w > 0 ? (size_t)w : 0;
        }
        char num[48];
        if (n_indices > 1) append(buf, len, used, "{");
        for (int k = 0; k < n_indices; k++) {
            snprintf(num, sizeof num, "%s%ld", k ? "," : "", indices[k]);
            append(buf, len, used, num);
        }
        snprintf(num, sizeof num, "%s.* (%d tensors)", n_indices > 1 ? "}" : "", count);
        append(buf, len, used, num);
    }
}

const char *tpsc_load_report_str(const tpsc_load_report *r, char *buf, size_t len) {
    if (len == 0) return buf;
    size_t used = 0;
    int n = snprintf(buf, len, "loaded %d tensors", r->n_loaded);
    used = n > 0 ? (size_t)n : 0;
    append_list(buf, len, &used, "; newly initialised: ", r->missing, r->n_missing);
    append_list(buf, len, &used, "; ignored: ", r->ignored, r->n_ignored);
    if (used >= len && len > 4) memcpy(buf + len - 4, "...", 4);
    return buf;
}

static tpsc_status push_name(char ***list, int *n, const char *name) {
    char **grown = tpsc_realloc(*list, (size_t)(*n + 1) * sizeof *grown, "load report");
    if (!grown) return TPSC_ERR_NOMEM;
    *list = grown;
    if (!(grown[*n] = tpsc_strdup(name))) return TPSC_ERR_NOMEM;
    (*n)++;
    return TPSC_OK;
}

static bool allowed_missing(const tpsc_load_opts *opts, const char *name) {
    for (int i = 0; opts && i < opts->n_allow_missing_prefixes; i++) {
        const char *p = opts->allow_missing_prefixes[i];
        if (p && strncmp(name, p, strlen(p)) == 0) return true;
    }
    return false;
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static bool listed(char **names, int n, const char *name) {
    return n > 0 && bsearch(&name, names, (size_t)n, sizeof *names, cmp_str_ptr) != NULL;
}

/* Checks names and shapes both ways before reading anything, so a refused load leaves the
 * destination untouched, then reads. */
static tpsc_status load_group(const tpsc_h5 *f, const char *group, const ag_params *layout, float *dst,
                              const tpsc_load_opts *opts, tpsc_load_report *report) {
    tpsc_load_report local;
    tpsc_load_report *r = report ? report : &local;
    tpsc_load_report_init(r);
    char **names = NULL;
    int n = 0;
    tpsc_status st = tpsc_h5_list_datasets(f, group, &names, &n);
    if (st != TPSC_OK) goto done;
    char path[PATH_MAX_H5];
    for (int i = 0; i < layout->count && st == TPSC_OK; i++) {
        const ag_param *it = &layout->items[i];
        if ((st = join(path, group, it->name, f->name)) != TPSC_OK) break;
        if (!listed(names, n, it->name)) {
            if (allowed_missing(opts, it->name))
                st = push_name(&r->missing, &r->n_missing, it->name);
            else
                st = tpsc_fail(TPSC_ERR_MISSING, "%s: %s is missing (the model has parameter %s, the file does not)",
                               f->name, path, it->name);
            continue;
        }
        st = tpsc_h5_check_shape(f, path, it->t.ndim, it->t.shape);
    }
    for (int j = 0; j < n && st == TPSC_OK; j++) {
        if (ag_params_find(layout, names[j]) >= 0) continue;
        if (opts && opts->ignore_extra)
            st = push_name(&r->ignored, &r->n_ignored, names[j]);
        else
            st = tpsc_fail(TPSC_ERR_FORMAT, "%s: %s/%s is in the file but the model has no such parameter", f->name,
                           group, names[j]);
    }
    for (int i = 0; i < layout->count && st == TPSC_OK; i++) {
        const ag_param *it = &layout->items[i];
        if (!listed(names, n, it->name)) continue;
        join(path, group, it->name, f->name);
        if ((st = tpsc_h5_read_f32(f, path, it->t.ndim, it->t.shape, dst + it->offset)) == TPSC_OK) r->n_loaded++;
    }
done:
    tpsc_h5_free_names(names, n);
    if (!report) tpsc_load_report_free(&local);
    return st;
}

static tpsc_status check_group_name(const char *path, const char *group) {
    if (!group || group[0] != '/' || strlen(group) < 2)
        return tpsc_fail(TPSC_ERR_ARG, "%s: group '%s' must be an absolute path such as /model", path,
                         group ? group : "(null)");
    return TPSC_OK;
}

tpsc_status tpsc_checkpoint_load_tensors(const char *path, const char *group, const ag_params *layout,
                                         float *dst, const tpsc_load_opts *opts, tpsc_load_report *report) {
    if (report) tpsc_load_report_init(report);
    TPSC_TRY(check_group_name(path, group));
    if (!layout || !dst) return tpsc_fail(TPSC_ERR_ARG, "%s: loading %s into no buffer", path, group);
    tpsc_h5 f;
    TPSC_TRY(open_checkpoint(&f, path, NULL, NULL));
    tpsc_status st = load_group(&f, group, layout, dst, opts, report);
    tpsc_h5_close(&f);
    return st;
}

tpsc_status tpsc_checkpoint_load_params(const char *path, const char *group, ag_params *params,
                                        const tpsc_load_opts *opts, tpsc_load_report *report) {
    if (!params || !params->finalised) {
        if (report) tpsc_load_report_init(report);
        return tpsc_fail(TPSC_ERR_ARG, "%s: loading into parameters that are not finalised", path);
    }
    return tpsc_checkpoint_load_tensors(path, group, params, params->data, opts, report);
}

/* ---- resume state --------------------------------------------------------------------- */

/* Counts are all there or not at all (an older writer); a partial set is a damaged file. */
static tpsc_status read_param_steps(const tpsc_h5 *f, const ag_params *layout, tpsc_checkpoint_state *s) {
    char path[PATH_MAX_H5];
    int have = 0;
    for (int i = 0; i < layout->count; i++) {
        TPSC_TRY(join(path, "/optimizer/m", layout->items[i].name, f->name));
        have += tpsc_h5_attr_exists(f, path, "step");
    }
    if (have == 0) return TPSC_OK;
    for (int i = 0; i < layout->count; i++) {
        join(path, "/optimizer/m", layout->items[i].name, f->name);
        TPSC_TRY(tpsc_h5_read_attr_i64(f, path, "step", &s->opt_param_step[i]));
    }
    s->has_opt_param_step = true;
    return TPSC_OK;
}

static tpsc_status read_optimizer(const tpsc_h5 *f, const ag_params *layout, tpsc_checkpoint_state *s) {
    bool present = tpsc_h5_exists(f, "/optimizer");
    if (!present) {
        if (s->opt_m || s->opt_v)
            return tpsc_fail(TPSC_ERR_MISSING, "%s: /optimizer is missing (saved without optimizer state)", f->name);
        return TPSC_OK;
    }
    TPSC_TRY(tpsc_h5_read_attr_strbuf(f, "/optimizer", "name", s->opt_name, sizeof s->opt_name));
    TPSC_TRY(tpsc_h5_read_attr_i64(f, "/optimizer", "step", &s->opt_step));
    if (s->opt_m && !tpsc_h5_exists(f, "/optimizer/m"))
        return tpsc_fail(TPSC_ERR_MISSING, "%s: /optimizer/m is missing (optimizer '%s' was saved without a buffer)",
                         f->name, s->opt_name);
    if (s->opt_m) TPSC_TRY(load_group(f, "/optimizer/m", layout, s->opt_m, NULL, NULL));
    if (s->opt_param_step && tpsc_h5_exists(f, "/optimizer/m")) TPSC_TRY(read_param_steps(f, layout, s));
    s->has_opt_v = tpsc_h5_exists(f, "/optimizer/v");
    if (s->opt_v && s->has_opt_v) TPSC_TRY(load_group(f, "/optimizer/v", layout, s->opt_v, NULL, NULL));
    /* SGD keeps only a momentum buffer; any other optimizer needs its second moment. */
    if (s->opt_v && !s->has_opt_v && strcmp(s->opt_name, "sgd") != 0)
        return tpsc_fail(TPSC_ERR_MISSING, "%s: /optimizer/v is missing for optimizer '%s'", f->name, s->opt_name);
    return TPSC_OK;
}

static tpsc_status read_state_group(const tpsc_h5 *f, tpsc_checkpoint_state *s) {
    if (!tpsc_h5_exists(f, "/state"))
        return tpsc_fail(TPSC_ERR_MISSING,
                         "%s: /state is missing (an inference export or converted weights hold no training state)",
                         f->name);
    int nd;
    size_t shape[TPSC_H5_MAX_DIMS];
    TPSC_TRY(tpsc_h5_shape(f, "/state/rng", &nd, shape));
    if (nd != 2 || shape[1] != 4)
        return tpsc_fail(TPSC_ERR_SHAPE, "%s: /state/rng must have shape [n, 4]", f->name);
    s->n_rng = (int)shape[0];
    if (s->rng_states) {
        if (s->n_rng > s->rng_cap)
            return tpsc_fail(TPSC_ERR_SHAPE, "%s: /state/rng holds %d generator states, the caller has room for %d",
                             f->name, s->n_rng, s->rng_cap);
        TPSC_TRY(tpsc_h5_read_u64(f, "/state/rng", 2, shape, s->rng_states));
    }
    TPSC_TRY(tpsc_h5_shape(f, "/state/loader", &nd, shape));
    if (nd != 1) return tpsc_fail(TPSC_ERR_SHAPE, "%s: /state/loader must be one-dimensional", f->name);
    s->n_loader_pos = (int)shape[0];
    if (s->loader_pos) {
        if (s->n_loader_pos > s->loader_cap)
            return tpsc_fail(TPSC_ERR_SHAPE, "%s: /state/loader holds %d values, the caller has room for %d", f->name,
                             s->n_loader_pos, s->loader_cap);
        TPSC_TRY(tpsc_h5_read_i64(f, "/state/loader", 1, shape, s->loader_pos));
    }
    TPSC_TRY(tpsc_h5_read_i64(f, "/state/epoch", 0, NULL, &s->epoch));
    TPSC_TRY(tpsc_h5_read_i64(f, "/state/step", 0, NULL, &s->step));
    TPSC_TRY(tpsc_h5_read_f32(f, "/state/best_top1", 0, NULL, &s->best_top1));
    return TPSC_OK;
}

tpsc_status tpsc_checkpoint_load_state(const char *path, const ag_params *layout, tpsc_checkpoint_state *st) {
    if (!st || ((st->opt_m || st->opt_v || st->ema || st->opt_param_step) && !layout))
        return tpsc_fail(TPSC_ERR_ARG, "%s: load_state needs the state struct and, for tensors, a layout", path);
    st->opt_name[0] = '\0';
    st->opt_step = 0;
    st->has_opt_v = st->has_opt_param_step = false;
    st->n_rng = st->n_loader_pos = 0;
    tpsc_h5 f;
    TPSC_TRY(open_checkpoint(&f, path, NULL, NULL));
    tpsc_status s = read_optimizer(&f, layout, st);
    if (s == TPSC_OK && st->ema) s = load_group(&f, "/ema", layout, st->ema, NULL, NULL);
    if (s == TPSC_OK) s = read_state_group(&f, st);
    tpsc_h5_close(&f);
    return s;
}

/* ---- recipe and class names ------------------------------------------------------------ */

tpsc_status tpsc_checkpoint_read_recipe(const char *path, char **text) {
    *text = NULL;
    tpsc_h5 f;
    TPSC_TRY(open_checkpoint(&f, path, NULL, NULL));
    tpsc_status st = tpsc_h5_read_attr_str(&f, "/", "recipe", text);
    tpsc_h5_close(&f);
    return st;
}

tpsc_status tpsc_checkpoint_read_class_names(const char *path, char ***names, int *n) {
    *names = NULL;
    *n = 0;
    tpsc_h5 f;
    TPSC_TRY(open_checkpoint(&f, path, NULL, NULL));
    tpsc_status st = tpsc_h5_read_attr_strs(&f, "/", "class_names", names, n);
    tpsc_h5_close(&f);
    if (st == TPSC_OK && *n == 0) {
        tpsc_h5_free_names(*names, 0);
        *names = NULL;
    }
    return st;
}

void tpsc_checkpoint_free_names(char **names, int n) { tpsc_h5_free_names(names, n); }
