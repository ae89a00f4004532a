/* Opening an inference file (written by `tpsc export`, layout in docs/inference.md):
 * root attributes for the architecture, pruning and preprocessing, /model/<timm name> for
 * every tensor. Every failure names the file and the attribute or tensor at fault; the file
 * is checked completely (every tensor present with the shape the architecture implies)
 * before the model is handed out.
 *
 * HDF5 (the serial Debian build) is not thread-safe, so every use of it here is under one
 * mutex: opening models from several threads at once is safe. */
#include <errno.h>
#include <hdf5.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/common/h5_probe.h"
#include "src/common/keep.h"
#include "src/common/merge_rules.h"
#include "src/infer/gemm.h"
#include "src/infer/internal.h"

#define FORMAT_NAME "tpsc-inference"

/* The model and what its precision and back-end add. The oneDNN state lives beside the model
 * rather than in it, so the shared structure (internal.h) stays that of the OpenBLAS path; a
 * tps_model pointer is the address of `m`, the first member. */
typedef struct model_box {
    tps_model m;
    tps_precision precision;
    tps_gemm gemm;      /* resolved: OPENBLAS or ONEDNN */
    ti_onednn *onednn;  /* ONEDNN: the packed weights and their matmul primitives */
} model_box;

static model_box *box_of(const tps_model *m) { return (model_box *)m; }

static pthread_mutex_t hdf5_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct reader {
    hid_t id;
    const char *path;
    uint64_t file_bytes; /* the file's size: bounds what its attributes may make us allocate */
} reader;

/* ---- attributes ---------------------------------------------------------------------- */

static bool attr_exists(const reader *r, const char *name) { return H5Aexists_by_name(r->id, "/", name, H5P_DEFAULT) > 0; }

/* Reads a numeric attribute of up to cap values into out (converted by HDF5); *n gets the count. */
static tps_status read_numbers(const reader *r, const char *name, hid_t memtype, bool integer, void *out, int cap,
                               int *n) {
    if (!attr_exists(r, name)) return ti_fail(TPS_ERR_MISSING, "%s: attribute '%s' is missing", r->path, name);
    hid_t a = H5Aopen_by_name(r->id, "/", name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    hid_t type = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    tps_status st = TPS_OK;
    H5T_class_t cls = type >= 0 ? H5Tget_class(type) : H5T_NO_CLASS;
    hssize_t np = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    if (a < 0 || space < 0 || type < 0 || np < 0)
        st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' cannot be read (damaged file?)", r->path, name);
    else if (cls != H5T_INTEGER && (integer || cls != H5T_FLOAT))
        st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' is not %s", r->path, name, integer ? "an integer" : "a number");
    else if (np > cap)
        st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' has %lld values, at most %d expected", r->path, name,
                     (long long)np, cap);
    else if (np > 0 && H5Aread(a, memtype, out) < 0)
        st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' cannot be read (damaged file?)", r->path, name);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (a >= 0) H5Aclose(a);
    if (st == TPS_OK) *n = (int)np;
    return st;
}

static tps_status read_i64(const reader *r, const char *name, int64_t *v) {
    int n;
    tps_status st = read_numbers(r, name, H5T_NATIVE_INT64, true, v, 1, &n);
    if (st == TPS_OK && n != 1) return ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' must be one integer", r->path, name);
    return st;
}

static tps_status read_f64(const reader *r, const char *name, double *v) {
    int n;
    tps_status st = read_numbers(r, name, H5T_NATIVE_DOUBLE, false, v, 1, &n);
    if (st == TPS_OK && n != 1) return ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' must be one number", r->path, name);
    return st;
}

/* A positive size attribute no larger than `max` (rejects absurd values before they size buffers). */
static tps_status read_size(const reader *r, const char *name, int64_t max, size_t *out) {
    int64_t v;
    tps_status st = read_i64(r, name, &v);
    if (st != TPS_OK) return st;
    if (v < 1 || v > max)
        return ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' = %lld is outside 1..%lld", r->path, name, (long long)v,
                       (long long)max);
    *out = (size_t)v;
    return TPS_OK;
}

/* String attributes, scalar or 1-D, variable or fixed length: calls `take` for each. */
static tps_status read_strings(const reader *r, const char *name, int cap, int *n_out,
                               tps_status (*take)(void *user, int i, const char *s), void *user) {
    if (!attr_exists(r, name)) return ti_fail(TPS_ERR_MISSING, "%s: attribute '%s' is missing", r->path, name);
    hid_t a = H5Aopen_by_name(r->id, "/", name, H5P_DEFAULT, H5P_DEFAULT);
    hid_t space = a >= 0 ? H5Aget_space(a) : H5I_INVALID_HID;
    hid_t type = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    hssize_t np = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
    tps_status st = TPS_OK;
    char **vl = NULL, *raw = NULL;
    if (a < 0 || space < 0 || type < 0 || np < 0) {
        st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' cannot be read (damaged file?)", r->path, name);
    } else if (H5Tget_class(type) != H5T_STRING) {
        st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' is not a string", r->path, name);
    } else if (np > cap) {
        st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' has %lld strings, at most %d expected", r->path, name,
                     (long long)np, cap);
    } else if (np > 0 && H5Tis_variable_str(type) > 0) {
        vl = calloc((size_t)np, sizeof *vl);
        hid_t mt = H5Tcopy(type);
        if (!vl) st = ti_fail(TPS_ERR_NOMEM, "%s: no memory for attribute '%s'", r->path, name);
        else if (H5Aread(a, mt, vl) < 0)
            st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' cannot be read (damaged file?)", r->path, name);
        else {
            for (hssize_t i = 0; i < np && st == TPS_OK; i++) st = take(user, (int)i, vl[i] ? vl[i] : "");
            H5Dvlen_reclaim(mt, space, H5P_DEFAULT, vl);
        }
        H5Tclose(mt);
    } else if (np > 0) {
        size_t w = H5Tget_size(type);
        raw = calloc((size_t)np * w + 1, 1);
        hid_t mt = H5Tcopy(type);
        if (!raw) st = ti_fail(TPS_ERR_NOMEM, "%s: no memory for attribute '%s'", r->path, name);
        else if (H5Aread(a, mt, raw) < 0)
            st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' cannot be read (damaged file?)", r->path, name);
        for (hssize_t i = 0; i < np && st == TPS_OK; i++) {
            char buf[TI_MAX_CLASS_NAME];
            size_t len = strnlen(raw + (size_t)i * w, w);
            while (len > 0 && raw[(size_t)i * w + len - 1] == ' ') len--;
            if (len >= sizeof buf) len = sizeof buf - 1;
            memcpy(buf, raw + (size_t)i * w, len);
            buf[len] = '\0';
            st = take(user, (int)i, buf);
        }
        H5Tclose(mt);
    }
    free(vl);
    free(raw);
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (a >= 0) H5Aclose(a);
    if (st == TPS_OK) *n_out = (int)np;
    return st;
}

typedef struct strbuf {
    char *buf;
    size_t cap;
} strbuf;

static tps_status take_one(void *user, int i, const char *s) {
    strbuf *b = user;
    if (i == 0) snprintf(b->buf, b->cap, "%s", s);
    return TPS_OK;
}

static tps_status read_str(const reader *r, const char *name, char *buf, size_t cap) {
    int n;
    strbuf b = {buf, cap};
    buf[0] = '\0';
    tps_status st = read_strings(r, name, 1, &n, take_one, &b);
    if (st == TPS_OK && n != 1) return ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' must be one string", r->path, name);
    return st;
}

static tps_status take_class(void *user, int i, const char *s) {
    char **names = user;
    names[i] = strdup(s);
    return names[i] ? TPS_OK : ti_fail(TPS_ERR_NOMEM, "no memory for class names");
}

/* ---- tensors ------------------------------------------------------------------------- */

static const char *shape_str(int ndim, const hsize_t *s, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "[");
    for (int i = 0; i < ndim && used < len; i++) used += (size_t)snprintf(buf + used, len - used, i ? ",%llu" : "%llu", (unsigned long long)s[i]);
    if (used < len) snprintf(buf + used, len - used, "]");
    return buf;
}

/* Reads /model/<name>, which must be float with exactly this shape, into dst. */
static tps_status read_tensor(const reader *r, const char *name, int ndim, const size_t *shape, float *dst) {
    char path[256];
    snprintf(path, sizeof path, "/model/%s", name);
    hsize_t want[4], got[8];
    for (int i = 0; i < ndim; i++) want[i] = shape[i];
    char sw[64], sg[64];
    if (H5Lexists(r->id, "/model", H5P_DEFAULT) <= 0 || H5Lexists(r->id, path, H5P_DEFAULT) <= 0)
        return ti_fail(TPS_ERR_MISSING, "%s: tensor %s is missing (the architecture needs it with shape %s)", r->path,
                       path, shape_str(ndim, want, sw, sizeof sw));
    hid_t d = H5Dopen2(r->id, path, H5P_DEFAULT);
    hid_t space = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
    hid_t type = d >= 0 ? H5Dget_type(d) : H5I_INVALID_HID;
    tps_status st = TPS_OK;
    int nd = space >= 0 ? H5Sget_simple_extent_ndims(space) : -1;
    if (d < 0 || space < 0 || type < 0 || nd < 0 || nd > 8) {
        st = ti_fail(TPS_ERR_FORMAT, "%s: tensor %s cannot be opened (damaged file?)", r->path, path);
    } else if (H5Tget_class(type) != H5T_FLOAT) {
        st = ti_fail(TPS_ERR_FORMAT, "%s: tensor %s is not floating point", r->path, path);
    } else {
        H5Sget_simple_extent_dims(space, got, NULL);
        bool same = nd == ndim;
        for (int i = 0; same && i < ndim; i++) same = got[i] == want[i];
        if (!same)
            st = ti_fail(TPS_ERR_SHAPE, "%s: tensor %s has shape %s, the architecture needs %s", r->path, path,
                         shape_str(nd, got, sg, sizeof sg), shape_str(ndim, want, sw, sizeof sw));
        else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0)
            st = ti_fail(TPS_ERR_FORMAT, "%s: tensor %s cannot be read (truncated or damaged file?)", r->path, path);
    }
    if (type >= 0) H5Tclose(type);
    if (space >= 0) H5Sclose(space);
    if (d >= 0) H5Dclose(d);
    return st;
}

/* ---- the model ----------------------------------------------------------------------- */

/* A weight slot: name, shape, and where its pointer goes. */
typedef struct slot {
    char name[96];
    int ndim;
    size_t shape[4];
    const float **dst;
} slot;

typedef struct slots {
    slot *v;
    size_t n, cap;
} slots;

__attribute__((format(printf, 8, 9))) static void add(slots *s, const float **dst, int ndim, size_t a, size_t b, size_t c, size_t d, const char *fmt, ...) {
    if (s->n >= s->cap) return; /* sized exactly by the caller */
    slot *t = &s->v[s->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->name, sizeof t->name, fmt, ap);
    va_end(ap);
    t->ndim = ndim;
    t->shape[0] = a, t->shape[1] = b, t->shape[2] = c, t->shape[3] = d;
    t->dst = dst;
}

static size_t numel(const slot *t) {
    size_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

/* Every tensor the architecture needs, with timm / official-TPS names. */
static void list_tensors(tps_model *m, slots *s) {
    const size_t C = m->C, K = m->K, p = m->patch;
    add(s, &m->cls_token, 3, 1, 1, C, 0, "cls_token");
    add(s, &m->pos_embed, 3, 1, m->N + 1, C, 0, "pos_embed");
    add(s, &m->patch_w.f, 4, C, m->in_chans, p, p, "patch_embed.proj.weight");
    add(s, &m->patch_b, 1, C, 0, 0, 0, "patch_embed.proj.bias");
    for (size_t i = 0; i < m->depth; i++) {
        ti_block *b = &m->blocks[i];
        add(s, &b->norm1_w, 1, C, 0, 0, 0, "blocks.%zu.norm1.weight", i);
        add(s, &b->norm1_b, 1, C, 0, 0, 0, "blocks.%zu.norm1.bias", i);
        const size_t W = m->H * (2 * b->w.dq + b->w.dv), V = m->H * b->w.dv, Fb = b->w.f; /* ti_widths */
        add(s, &b->qkv_w.f, 2, W, C, 0, 0, "blocks.%zu.attn.qkv.weight", i);
        add(s, &b->qkv_b, 1, W, 0, 0, 0, "blocks.%zu.attn.qkv.bias", i);
        add(s, &b->proj_w.f, 2, C, V, 0, 0, "blocks.%zu.attn.proj.weight", i);
        add(s, &b->proj_b, 1, C, 0, 0, 0, "blocks.%zu.attn.proj.bias", i);
        add(s, &b->norm2_w, 1, C, 0, 0, 0, "blocks.%zu.norm2.weight", i);
        add(s, &b->norm2_b, 1, C, 0, 0, 0, "blocks.%zu.norm2.bias", i);
        add(s, &b->fc1_w.f, 2, Fb, C, 0, 0, "blocks.%zu.mlp.fc1.weight", i);
        add(s, &b->fc1_b, 1, Fb, 0, 0, 0, "blocks.%zu.mlp.fc1.bias", i);
        add(s, &b->fc2_w.f, 2, C, Fb, 0, 0, "blocks.%zu.mlp.fc2.weight", i);
        add(s, &b->fc2_b, 1, C, 0, 0, 0, "blocks.%zu.mlp.fc2.bias", i);
    }
    add(s, &m->norm_w, 1, C, 0, 0, 0, "norm.weight");
    add(s, &m->norm_b, 1, C, 0, 0, 0, "norm.bias");
    add(s, &m->head_w.f, 2, K, C, 0, 0, "head.weight");
    add(s, &m->head_b, 1, K, 0, 0, 0, "head.bias");
    if (tok_method_has_predictor(m->method))
        for (int st = 0; st < m->info.n_stages; st++) {
            ti_predictor *q = &m->pred[st];
            add(s, &q->in_norm_w, 1, C, 0, 0, 0, "score_predictor.%d.in_conv.0.weight", st);
            add(s, &q->in_norm_b, 1, C, 0, 0, 0, "score_predictor.%d.in_conv.0.bias", st);
            add(s, &q->in_fc_w.f, 2, C, C, 0, 0, "score_predictor.%d.in_conv.1.weight", st);
            add(s, &q->in_fc_b, 1, C, 0, 0, 0, "score_predictor.%d.in_conv.1.bias", st);
            add(s, &q->out0_w.f, 2, C / 2, C, 0, 0, "score_predictor.%d.out_conv.0.weight", st);
            add(s, &q->out0_b, 1, C / 2, 0, 0, 0, "score_predictor.%d.out_conv.0.bias", st);
            add(s, &q->out2_w.f, 2, C / 4, C / 2, 0, 0, "score_predictor.%d.out_conv.2.weight", st);
            add(s, &q->out2_b, 1, C / 4, 0, 0, 0, "score_predictor.%d.out_conv.2.bias", st);
            add(s, &q->out4_w.f, 2, 2, C / 4, 0, 0, "score_predictor.%d.out_conv.4.weight", st);
            add(s, &q->out4_b, 1, 2, 0, 0, 0, "score_predictor.%d.out_conv.4.bias", st);
        }
}

/* ToMe's r per block (merge_rules.h' parse_r) for tome_r and inflect, checked as the framework
 * checks a recipe (src/tokens/merge.c): no block's r negative, and the blocks together merge no
 * more tokens than the N patches. Failures are `status`, naming `where`. */
static tps_status tome_schedule(tps_model *m, int64_t tome_r, float inflect, const char *where, tps_status status) {
    if (tome_r < 0 || tome_r > (int64_t)m->N || !(inflect >= -1.0f && inflect <= 1.0f))
        return ti_fail(status, "%s: tome_r %lld with tome_inflect %g (need 0 <= tome_r <= %zu, inflect in [-1, 1])",
                       where, (long long)tome_r, (double)inflect, m->N);
    free(m->merge_r);
    m->merge_r = malloc(m->depth * sizeof *m->merge_r);
    if (!m->merge_r) return ti_fail(TPS_ERR_NOMEM, "no memory for the merge schedule");
    tok_tome_schedule((int)m->depth, (int)tome_r, (double)inflect, m->merge_r);
    long total = 0;
    for (size_t i = 0; i < m->depth; i++) {
        if (m->merge_r[i] < 0)
            return ti_fail(status, "%s: tome_r %lld with tome_inflect %g gives r = %d in block %zu", where,
                           (long long)tome_r, (double)inflect, m->merge_r[i], i);
        total += m->merge_r[i];
    }
    if (total > (long)m->N)
        return ti_fail(status, "%s: tome_r %lld (tome_inflect %g) merges %ld tokens over %zu blocks, but the model has "
                       "only %zu patch tokens (at most r = %zu per block)", where, (long long)tome_r, (double)inflect,
                       total, m->depth, m->N, m->N / m->depth);
    return TPS_OK;
}

/* tps_open_options.tome_r: ToMe off the shelf on a dense model, or a tome model at another r. */
static tps_status tome_override(tps_model *m, const tps_open_options *opt, const char *name) {
    if (m->method != TOK_NONE && m->method != TOK_TOME)
        return ti_fail(TPS_ERR_ARG, "%s: tome_r %d asks for ToMe, which runs on a dense or tome model; this one is %s",
                       name, opt->tome_r, m->info.method);
    tps_status st = tome_schedule(m, opt->tome_r, opt->tome_inflect, name, TPS_ERR_ARG);
    if (st != TPS_OK) return st;
    if (m->method == TOK_NONE) m->prop_attn = true; /* ToMe's default off the shelf */
    m->method = TOK_TOME;
    snprintf(m->info.method, sizeof m->info.method, "tome");
    m->info.n_stages = 0;
    return TPS_OK;
}

/* tome and atme: tome_r, tome_inflect and prop_attn (written for both), checked as the
 * framework's recipe checks them (src/tokens/merge.c): ToMe's schedule (merge_rules.h) must not
 * merge more tokens than the N patches hold; ATME needs a square grid and at least one token
 * per location. Called once N, depth and the stages are known. */
static tps_status read_merging(const reader *r, tps_model *m) {
    int64_t tome_r, prop;
    double inflect;
    tps_status st;
    if ((st = read_i64(r, "tome_r", &tome_r)) || (st = read_f64(r, "tome_inflect", &inflect)) ||
        (st = read_i64(r, "prop_attn", &prop)))
        return st;
    if (prop != 0 && prop != 1) return ti_fail(TPS_ERR_FORMAT, "%s: prop_attn is %lld (need 0 or 1)", r->path, (long long)prop);
    m->prop_attn = prop == 1;
    if (tok_method_merges_on_grid(m->method)) {
        m->grid = (size_t)llround(sqrt((double)m->N));
        if (m->grid * m->grid != m->N)
            return ti_fail(TPS_ERR_FORMAT, "%s: method atme merges grid neighbours and needs a square grid of patch "
                           "tokens; the model has %zu", r->path, m->N);
        for (int s = 0; s < m->info.n_stages; s++)
            if (keep_count_predictor(m->info.keep_frac, m->info.n_stages, s, m->N) < 1)
                return ti_fail(TPS_ERR_FORMAT, "%s: keep_frac[%d] = %g keeps no token of %zu (atme)", r->path, s,
                               (double)m->info.keep_frac[s], m->N);
        return TPS_OK;
    }
    return tome_schedule(m, tome_r, (float)inflect, r->path, TPS_ERR_FORMAT);
}

static tps_status read_architecture(const reader *r, tps_model *m) {
    tps_model_info *in = &m->info;
    tps_status st;
    char fmt[64];
    int64_t ver;
    if ((st = read_str(r, "format", fmt, sizeof fmt)) != TPS_OK) {
        if (st == TPS_ERR_MISSING) return ti_fail(TPS_ERR_FORMAT, "%s: not a tpsc inference file (no 'format' attribute)", r->path);
        return st;
    }
    if (strcmp(fmt, FORMAT_NAME) != 0)
        return ti_fail(TPS_ERR_FORMAT, "%s: format is '%s', expected '%s'%s", r->path, fmt, FORMAT_NAME,
                       strcmp(fmt, "tpsc-checkpoint") == 0 ? " (a training checkpoint: run `tpsc export` on it)" : "");
    if ((st = read_i64(r, "format_version", &ver)) != TPS_OK) return st;
    if (ver < 1 || ver > TPS_INFER_FORMAT_VERSION)
        return ti_fail(TPS_ERR_FORMAT, "%s: format_version %lld is not supported (this library reads 1..%d)", r->path,
                       (long long)ver, TPS_INFER_FORMAT_VERSION);
    if ((st = read_str(r, "arch", in->arch, sizeof in->arch)) != TPS_OK) return st;
    if ((st = read_size(r, "img_size", 4096, &m->img)) || (st = read_size(r, "patch_size", 4096, &m->patch)) ||
        (st = read_size(r, "in_chans", 64, &m->in_chans)) || (st = read_size(r, "embed_dim", 1 << 16, &m->C)) ||
        (st = read_size(r, "depth", 1024, &m->depth)) || (st = read_size(r, "num_heads", 1024, &m->H)) ||
        (st = read_size(r, "num_classes", 1 << 20, &m->K)))
        return st;
    double mlp_ratio, ln_eps, temp = 1.0;
    if ((st = read_f64(r, "mlp_ratio", &mlp_ratio)) || (st = read_f64(r, "ln_eps", &ln_eps))) return st;
    if (m->img % m->patch != 0)
        return ti_fail(TPS_ERR_FORMAT, "%s: img_size %zu is not a multiple of patch_size %zu", r->path, m->img, m->patch);
    if (m->C % m->H != 0)
        return ti_fail(TPS_ERR_FORMAT, "%s: embed_dim %zu is not divisible by num_heads %zu", r->path, m->C, m->H);
    /* as the training framework: hidden = lroundf(C * mlp_ratio) in float */
    if (!(mlp_ratio > 0.0 && mlp_ratio < 1024.0) || lroundf((float)m->C * (float)mlp_ratio) < 1)
        return ti_fail(TPS_ERR_FORMAT, "%s: mlp_ratio %g is out of range", r->path, mlp_ratio);
    if (!(ln_eps >= 0.0 && ln_eps < 1.0)) return ti_fail(TPS_ERR_FORMAT, "%s: ln_eps %g is out of range", r->path, ln_eps);
    m->F = (size_t)lroundf((float)m->C * (float)mlp_ratio);
    m->ln_eps = (float)ln_eps;
    m->N = (m->img / m->patch) * (m->img / m->patch);
    m->P = m->in_chans * m->patch * m->patch;

    char method[16];
    if ((st = read_str(r, "method", method, sizeof method)) != TPS_OK) return st;
    const int mi = tok_method_from_name(method);
    if (mi < 0) return ti_fail(TPS_ERR_FORMAT, "%s: unknown method '%s'", r->path, method);
    m->method = (tok_method)mi;
    memcpy(in->method, method, sizeof in->method);
    int nloc = 0, nfrac = 0;
    int32_t loc[TI_MAX_STAGES];
    /* ToMe merges in every block: a tome file's prune_loc and keep_frac do not apply */
    if (m->method != TOK_NONE && m->method != TOK_TOME) {
        if ((st = read_numbers(r, "prune_loc", H5T_NATIVE_INT32, true, loc, TI_MAX_STAGES, &nloc)) ||
            (st = read_numbers(r, "keep_frac", H5T_NATIVE_FLOAT, false, in->keep_frac, TI_MAX_STAGES, &nfrac)))
            return st;
        if (nloc != nfrac || nloc < 1)
            return ti_fail(TPS_ERR_FORMAT, "%s: %d prune_loc values and %d keep_frac values (need the same number, >= 1)",
                           r->path, nloc, nfrac);
        for (int s = 0; s < nloc; s++) {
            if (loc[s] < 1 || (size_t)loc[s] >= m->depth || (s > 0 && loc[s] <= loc[s - 1]))
                return ti_fail(TPS_ERR_FORMAT, "%s: prune_loc[%d] = %d (need increasing values in 1..%zu)", r->path, s,
                               (int)loc[s], m->depth - 1);
            float f = in->keep_frac[s];
            if (!(f > 0.0f && f <= 1.0f) || (s > 0 && f > in->keep_frac[s - 1]))
                return ti_fail(TPS_ERR_FORMAT, "%s: keep_frac[%d] = %g (need non-increasing values in (0, 1])", r->path,
                               s, (double)f);
            in->prune_loc[s] = loc[s];
        }
        if (attr_exists(r, "squeeze_temp") && (st = read_f64(r, "squeeze_temp", &temp))) return st;
        if (!(temp > 0.0 && isfinite(temp))) return ti_fail(TPS_ERR_FORMAT, "%s: squeeze_temp %g must be > 0", r->path, temp);
        if ((tok_method_has_predictor(m->method)) && m->C < 4)
            return ti_fail(TPS_ERR_FORMAT, "%s: embed_dim %zu is too small for a score predictor", r->path, m->C);
    }
    /* fuse_token (evit): files written before the attribute existed fused */
    int64_t fuse = 1;
    if (attr_exists(r, "fuse_token") && (st = read_i64(r, "fuse_token", &fuse))) return st;
    if (fuse != 0 && fuse != 1) return ti_fail(TPS_ERR_FORMAT, "%s: fuse_token is %lld (need 0 or 1)", r->path, (long long)fuse);
    in->fuse_token = tok_method_row(m->method)->dropped == DROPPED_FUSE ? (int)fuse : 1;
    in->n_stages = nloc;
    if (tok_method_merges(m->method) && (st = read_merging(r, m)) != TPS_OK) return st;
    m->squeeze_temp = (float)temp;
    m->D = m->C / m->H;
    in->img_size = (int)m->img, in->patch_size = (int)m->patch, in->in_chans = (int)m->in_chans;
    in->embed_dim = (int)m->C, in->depth = (int)m->depth, in->num_heads = (int)m->H, in->num_classes = (int)m->K;
    in->mlp_hidden = (int)m->F, in->num_patches = (int)m->N;
    return TPS_OK;
}

/* Optional preprocessing attributes (defaults: DeiT's ImageNet eval). */
static tps_status read_preprocessing(const reader *r, tps_model *m) {
    tps_model_info *in = &m->info;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(in->mean, mean, sizeof mean);
    memcpy(in->std, std, sizeof std);
    in->input_size = (int)m->img;
    in->crop_pct = 0.875f;
    snprintf(in->interpolation, sizeof in->interpolation, "bicubic");
    tps_status st;
    int n;
    if (attr_exists(r, "input_size")) {
        int64_t v;
        if ((st = read_i64(r, "input_size", &v))) return st;
        if (v != (int64_t)m->img)
            return ti_fail(TPS_ERR_FORMAT, "%s: input_size %lld differs from img_size %zu", r->path, (long long)v, m->img);
    }
    if (attr_exists(r, "crop_pct")) {
        double v;
        if ((st = read_f64(r, "crop_pct", &v))) return st;
        if (!(v > 0.0 && v <= 1.0)) return ti_fail(TPS_ERR_FORMAT, "%s: crop_pct %g is outside (0, 1]", r->path, v);
        in->crop_pct = (float)v;
    }
    const char *names[2] = {"mean", "std"};
    float *dst[2] = {in->mean, in->std};
    for (int i = 0; i < 2; i++) {
        if (!attr_exists(r, names[i])) continue;
        float v[3];
        if ((st = read_numbers(r, names[i], H5T_NATIVE_FLOAT, false, v, 3, &n))) return st;
        if (n != 3) return ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' needs 3 values, has %d", r->path, names[i], n);
        for (int c = 0; c < 3; c++)
            if (!isfinite(v[c]) || (i == 1 && !(v[c] > 0.0f)))
                return ti_fail(TPS_ERR_FORMAT, "%s: %s[%d] = %g is invalid", r->path, names[i], c, (double)v[c]);
        memcpy(dst[i], v, sizeof v);
    }
    if (attr_exists(r, "interpolation")) {
        if ((st = read_str(r, "interpolation", in->interpolation, sizeof in->interpolation))) return st;
        if (strcmp(in->interpolation, "bicubic") && strcmp(in->interpolation, "bilinear"))
            return ti_fail(TPS_ERR_FORMAT, "%s: interpolation '%s' (bicubic or bilinear)", r->path, in->interpolation);
    }
    if (attr_exists(r, "class_names")) {
        m->class_names = calloc(m->K, sizeof *m->class_names);
        if (!m->class_names) return ti_fail(TPS_ERR_NOMEM, "no memory for class names");
        if ((st = read_strings(r, "class_names", (int)m->K, &n, take_class, m->class_names))) return st;
        if (n != 0 && n != (int)m->K)
            return ti_fail(TPS_ERR_FORMAT, "%s: %d class names for %zu classes", r->path, n, m->K);
        in->n_class_names = n;
    }
    return TPS_OK;
}

/* Channel pruning: a file exported from a gated model gives every block's kept widths
 * (head_dim_qk, head_dim_v, mlp_hidden: int32[depth], 1..D and 1..F); the tensors must then
 * have exactly those shapes. Without them every block is dense. */
static tps_status read_block_widths(const reader *r, tps_model *m) {
    for (size_t i = 0; i < m->depth; i++) m->blocks[i].w = (ti_widths){m->D, m->D, m->F};
    static const char *const names[3] = {"head_dim_qk", "head_dim_v", "mlp_hidden"};
    const bool any = attr_exists(r, names[0]) || attr_exists(r, names[1]) || attr_exists(r, names[2]);
    if (!any) return TPS_OK;
    int32_t *v = malloc(m->depth * sizeof *v);
    if (!v) return ti_fail(TPS_ERR_NOMEM, "no memory for the block widths");
    tps_status st = TPS_OK;
    for (int k = 0; k < 3 && st == TPS_OK; k++) {
        int n = 0;
        const size_t hi = k == 2 ? m->F : m->D;
        st = read_numbers(r, names[k], H5T_NATIVE_INT32, true, v, (int)m->depth, &n);
        if (st == TPS_OK && n != (int)m->depth)
            st = ti_fail(TPS_ERR_FORMAT, "%s: attribute '%s' has %d values for depth %zu", r->path, names[k], n, m->depth);
        for (size_t i = 0; i < m->depth && st == TPS_OK; i++) {
            if (v[i] < 1 || (size_t)v[i] > hi)
                st = ti_fail(TPS_ERR_FORMAT, "%s: %s[%zu] = %d is outside 1..%zu (%s)", r->path, names[k], i, (int)v[i], hi,
                             k == 2 ? "the MLP hidden width" : "the head size embed_dim / num_heads");
            else if (k == 0) m->blocks[i].w.dq = (size_t)v[i];
            else if (k == 1) m->blocks[i].w.dv = (size_t)v[i];
            else m->blocks[i].w.f = (size_t)v[i];
        }
    }
    free(v);
    m->channels_pruned = st == TPS_OK;
    return st;
}

/* A shape error of a pruned block's tensor names the widths it was checked against. */
static tps_status width_context(const tps_model *m, const char *tensor, tps_status st) {
    size_t i;
    if (st != TPS_ERR_SHAPE || !m->channels_pruned || sscanf(tensor, "blocks.%zu.", &i) != 1 || i >= m->depth) return st;
    char msg[768];
    snprintf(msg, sizeof msg, "%s", tps_last_error());
    const ti_widths *w = &m->blocks[i].w;
    return ti_fail(st, "%s (this file's block widths: head_dim_qk[%zu] = %zu, head_dim_v[%zu] = %zu, mlp_hidden[%zu] = %zu, "
                   "%zu heads)", msg, i, w->dq, i, w->dv, i, w->f, m->H);
}

static tps_status load_weights(const reader *r, tps_model *m) {
    m->blocks = calloc(m->depth, sizeof *m->blocks);
    const size_t cap = 8 + 12 * m->depth + 10 * TI_MAX_STAGES;
    slots s = {calloc(cap, sizeof(slot)), 0, cap};
    if (!m->blocks || !s.v) {
        free(s.v);
        return ti_fail(TPS_ERR_NOMEM, "no memory for the model's tensor table");
    }
    tps_status wst = read_block_widths(r, m);
    if (wst != TPS_OK) {
        free(s.v);
        return wst;
    }
    list_tensors(m, &s);
    size_t total = 0;
    for (size_t i = 0; i < s.n; i++) total += (numel(&s.v[i]) + 15) & ~(size_t)15; /* 64-byte aligned starts */
    tps_status st = TPS_OK;
    /* The attributes alone decide the size; the tensors they imply must be in the file (stored
     * as float32, at worst deflated 1032:1), so a damaged or hostile header is refused here
     * instead of allocating what it claims. */
    if ((uint64_t)total > (r->file_bytes * 1032u + (1u << 20)) / sizeof(float)) {
        free(s.v);
        return ti_fail(TPS_ERR_FORMAT, "%s: the architecture needs %zu weights (%.1f MB), more than the %llu-byte file holds",
                       r->path, total, total * 4.0 / 1e6, (unsigned long long)r->file_bytes);
    }
    if (posix_memalign((void **)&m->weights, 64, total * sizeof(float) + 64) != 0) {
        m->weights = NULL;
        st = ti_fail(TPS_ERR_NOMEM, "%s: no memory for %zu weights", r->path, total);
    }
    size_t at = 0;
    for (size_t i = 0; i < s.n && st == TPS_OK; i++) {
        float *dst = m->weights + at;
        st = width_context(m, s.v[i].name, read_tensor(r, s.v[i].name, s.v[i].ndim, s.v[i].shape, dst));
        *s.v[i].dst = dst;
        at += (numel(&s.v[i]) + 15) & ~(size_t)15;
    }
    free(s.v);
    return st;
}

/* Reads the model from an open file; name (a path, or what stands for it) goes in messages. */
static tps_status read_model(hid_t id, const char *name, uint64_t bytes, tps_model *m) {
    reader r = {id, name, bytes};
    tps_status st = read_architecture(&r, m);
    if (st == TPS_OK) st = read_preprocessing(&r, m);
    if (st == TPS_OK) st = load_weights(&r, m);
    if (H5Fclose(id) < 0 && st == TPS_OK) st = ti_fail(TPS_ERR_IO, "%s: closing failed", name);
    return st;
}

/* probe: libhdf5's first read in a child (src/common/h5_probe.h), under hdf5_lock so that no
 * other thread of ours is inside HDF5 at the fork. */
static tps_status open_locked(const char *path, bool probe, tps_model *m) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL); /* we report failures ourselves */
    h5_file_facts facts;
    const h5_file_check check = h5_file_vet(path, probe, &facts);
    if (check != H5_FILE_OK)
        return ti_fail(check == H5_FILE_BAD_SETTING     ? TPS_ERR_ARG
                       : h5_file_check_is_format(check) ? TPS_ERR_FORMAT
                                                        : TPS_ERR_IO,
                       "%s: %s", path, facts.problem);
    /* the default access properties: a file the application holds open opens again */
    hid_t id = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (id < 0) return ti_fail(TPS_ERR_FORMAT, "%s: HDF5 cannot open it (truncated or damaged file?)", path);
    return read_model(id, path, facts.bytes, m);
}

/* An HDF5 file image in memory, through the core driver (no backing file); HDF5 copies the
 * bytes. Each image gets its own file name, so that two open at once are two files. */
static tps_status open_memory_locked(const void *image, size_t bytes, const char *name, bool probe, tps_model *m) {
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    static const unsigned char sig[8] = {0x89, 'H', 'D', 'F', '\r', '\n', 0x1a, '\n'};
    if (bytes < sizeof sig || memcmp(image, sig, sizeof sig) != 0)
        return ti_fail(TPS_ERR_FORMAT, "%s: %zu bytes that are not an HDF5 file image", name, bytes);
    h5_file_facts facts;
    if (probe && h5_probe_enabled()) {
        const h5_probe_verdict v = h5_probe(NULL, image, bytes, facts.problem, sizeof facts.problem);
        if (v != H5_PROBE_CLEAN && v != H5_PROBE_SKIPPED)
            return ti_fail(v == H5_PROBE_BAD_SETTING ? TPS_ERR_ARG : TPS_ERR_FORMAT, "%s: %s", name, facts.problem);
    }
    static unsigned long serial; /* under hdf5_lock */
    char unique[64];
    snprintf(unique, sizeof unique, "tpsinfer-memory-%lu", ++serial);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    hid_t id = H5I_INVALID_HID;
    if (fapl >= 0 && H5Pset_fapl_core(fapl, 1 << 20, 0) >= 0 && H5Pset_file_image(fapl, (void *)image, bytes) >= 0)
        id = H5Fopen(unique, H5F_ACC_RDONLY, fapl);
    if (fapl >= 0) H5Pclose(fapl);
    if (id < 0) return ti_fail(TPS_ERR_FORMAT, "%s: HDF5 cannot open the %zu-byte image (truncated or damaged?)", name, bytes);
    return read_model(id, name, (uint64_t)bytes, m);
}

/* Every linear weight with its shape [N = Cout, K = Cin]. */
static size_t list_linears(tps_model *m, ti_weight **w, size_t *N, size_t *K) {
    size_t n = 0;
#define LINEAR(weight, rows, cols) (w[n] = &(weight), N[n] = (rows), K[n] = (cols), n++)
    LINEAR(m->patch_w, m->C, m->P);
    for (size_t i = 0; i < m->depth; i++) {
        ti_block *b = &m->blocks[i];
        LINEAR(b->qkv_w, m->H * (2 * b->w.dq + b->w.dv), m->C);
        LINEAR(b->proj_w, m->C, m->H * b->w.dv);
        LINEAR(b->fc1_w, b->w.f, m->C);
        LINEAR(b->fc2_w, m->C, b->w.f);
    }
    LINEAR(m->head_w, m->K, m->C);
    if (tok_method_has_predictor(m->method))
        for (int st = 0; st < m->info.n_stages; st++) {
            ti_predictor *q = &m->pred[st];
            LINEAR(q->in_fc_w, m->C, m->C);
            LINEAR(q->out0_w, m->C / 2, m->C);
            LINEAR(q->out2_w, m->C / 4, m->C / 2);
            LINEAR(q->out4_w, 2, m->C / 4);
        }
#undef LINEAR
    return n;
}

/* oneDNN (FP32 or BF16): every linear's weight is reordered once, here (gemm_onednn.c). */
static tps_status pack_onednn(model_box *box) {
    tps_model *m = &box->m;
    tps_status st = ti_onednn_create(box->precision == TPS_PRECISION_BF16 ? TI_DT_BF16 : TI_DT_F32, &box->onednn);
    const size_t cap = 2 + 4 * m->depth + 4 * TI_MAX_STAGES;
    ti_weight **w = calloc(cap, sizeof *w);
    size_t *N = calloc(cap, sizeof *N), *K = calloc(cap, sizeof *K);
    if (st == TPS_OK && (!w || !N || !K)) st = ti_fail(TPS_ERR_NOMEM, "no memory for the packed weight table");
    const size_t n = st == TPS_OK ? list_linears(m, w, N, K) : 0;
    for (size_t i = 0; i < n && st == TPS_OK; i++) {
        st = ti_onednn_pack(box->onednn, w[i], N[i], K[i]);
        if (st == TPS_OK && box->gemm == TPS_GEMM_PANEL) ti_onednn_panels(w[i]); /* BF16 runs on ONEDNN */
    }
    free(w), free(N), free(K);
    return st;
}

/* The attention kernel of a tps_attention choice. AUTO: the fused kernel where the CPU has
 * AVX-512, GEMM elsewhere (its AVX2 form measured no faster than OpenBLAS' AVX2 sgemm;
 * docs/inference.md, "Attention"), unless TPSINFER_ATTENTION says gemm or fused. */
static ti_attn resolve_attention(tps_attention a) {
    const ti_attn best = ti_attention_best();
    if (a == TPS_ATTENTION_AUTO) {
        const char *env = getenv("TPSINFER_ATTENTION");
        a = env && !strcmp(env, "gemm")    ? TPS_ATTENTION_GEMM
            : env && !strcmp(env, "fused") ? TPS_ATTENTION_FUSED
            : best == TI_ATTN_AVX512       ? TPS_ATTENTION_FUSED
                                           : TPS_ATTENTION_GEMM;
    }
    return a == TPS_ATTENTION_GEMM ? TI_ATTN_GEMM : best;
}

/* The model from a file (path) or a file image (image, bytes); name is what messages call it. */
static tps_status open_model(const char *path, const void *image, size_t bytes, const char *name,
                             const tps_open_options *opt, tps_model **out) {
    const tps_precision precision = opt ? opt->precision : TPS_PRECISION_FP32;
    if (precision != TPS_PRECISION_FP32 && precision != TPS_PRECISION_BF16)
        return ti_fail(TPS_ERR_ARG, "tps_model_open_ex: unknown precision %d", (int)precision);
    tps_gemm gemm = opt ? opt->gemm : TPS_GEMM_AUTO;
    if (gemm != TPS_GEMM_AUTO && gemm != TPS_GEMM_OPENBLAS && gemm != TPS_GEMM_ONEDNN && gemm != TPS_GEMM_PANEL)
        return ti_fail(TPS_ERR_ARG, "tps_model_open_ex: unknown GEMM back-end %d", (int)gemm);
    const tps_attention attention = opt ? opt->attention : TPS_ATTENTION_AUTO;
    if (attention != TPS_ATTENTION_AUTO && attention != TPS_ATTENTION_GEMM && attention != TPS_ATTENTION_FUSED)
        return ti_fail(TPS_ERR_ARG, "tps_model_open_ex: unknown attention kernel %d", (int)attention);
    if (opt && (opt->tome_r < 0 || !(opt->tome_inflect >= -1.0f && opt->tome_inflect <= 1.0f)))
        return ti_fail(TPS_ERR_ARG, "tps_model_open_ex: tome_r %d must be >= 0 and tome_inflect %g in [-1, 1]",
                       opt->tome_r, (double)opt->tome_inflect);
    if (gemm == TPS_GEMM_AUTO) gemm = tps_gemm_default();
    if (precision == TPS_PRECISION_BF16) gemm = TPS_GEMM_ONEDNN; /* BF16 linears exist only there */
    /* before reading the file: an unsupported precision or back-end fails fast, whatever the file */
    if (precision == TPS_PRECISION_BF16 || gemm == TPS_GEMM_ONEDNN) {
        tps_status st = ti_onednn_available(precision == TPS_PRECISION_BF16 ? TI_DT_BF16 : TI_DT_F32);
        if (st != TPS_OK) return st;
    }
    if (gemm == TPS_GEMM_PANEL) {
        tps_status st = tps_gemm_supported(gemm);
        if (st != TPS_OK) return st;
    }
    model_box *box = calloc(1, sizeof *box);
    if (!box) return ti_fail(TPS_ERR_NOMEM, "%s: no memory for the model", name);
    box->precision = precision;
    box->gemm = gemm;
    tps_model *m = &box->m;
    m->attn = resolve_attention(attention);
    pthread_mutex_lock(&hdf5_lock);
    const bool probe = !(opt && opt->unprobed);
    tps_status st = path ? open_locked(path, probe, m) : open_memory_locked(image, bytes, name, probe, m);
    pthread_mutex_unlock(&hdf5_lock);
    if (st == TPS_OK && opt && opt->tome_r > 0) st = tome_override(m, opt, name);
    if (st == TPS_OK && (gemm == TPS_GEMM_ONEDNN || gemm == TPS_GEMM_PANEL)) st = pack_onednn(box);
    if (st != TPS_OK) {
        tps_model_close(m);
        return st;
    }
    *out = m;
    return TPS_OK;
}

tps_status tps_model_open_ex(const char *path, const tps_open_options *opt, tps_model **out) {
    if (out) *out = NULL;
    if (!path || !out) return ti_fail(TPS_ERR_ARG, "tps_model_open: NULL %s", path ? "output pointer" : "path");
    return open_model(path, NULL, 0, path, opt, out);
}

tps_status tps_model_open_memory(const void *image, size_t bytes, const char *name, const tps_open_options *opt,
                                 tps_model **out) {
    if (out) *out = NULL;
    if (!image || !out) return ti_fail(TPS_ERR_ARG, "tps_model_open_memory: NULL %s", image ? "output pointer" : "image");
    return open_model(NULL, image, bytes, name ? name : "model image", opt, out);
}

tps_status tps_model_open(const char *path, tps_model **out) { return tps_model_open_ex(path, NULL, out); }

tps_precision tps_model_precision(const tps_model *m) { return m ? box_of(m)->precision : TPS_PRECISION_FP32; }

tps_status tps_precision_supported(tps_precision p) {
    if (p == TPS_PRECISION_FP32) return TPS_OK;
    if (p == TPS_PRECISION_BF16) return ti_onednn_available(TI_DT_BF16);
    return ti_fail(TPS_ERR_ARG, "unknown precision %d", (int)p);
}

tps_gemm tps_model_gemm(const tps_model *m) { return m ? box_of(m)->gemm : TPS_GEMM_AUTO; }

tps_attention tps_model_attention(const tps_model *m) {
    return !m ? TPS_ATTENTION_AUTO : m->attn == TI_ATTN_GEMM ? TPS_ATTENTION_GEMM : TPS_ATTENTION_FUSED;
}

const char *tps_attention_name(tps_attention a) {
    const ti_attn k = a == TPS_ATTENTION_GEMM || a == TPS_ATTENTION_FUSED || a == TPS_ATTENTION_AUTO ? resolve_attention(a)
                                                                                                    : TI_ATTN_GEMM;
    return k == TI_ATTN_AVX512 ? "fused avx512" : k == TI_ATTN_AVX2 ? "fused avx2" : "gemm";
}

/* The panel kernel may run, and oneDNN packs f32 weights for its brgemm (which implies oneDNN
 * is there): a question, with no error message left behind for AUTO's resolution. */
static bool panel_supported(void) { return ti_avx512_allowed() && ti_onednn_f32_prepacked(); }

tps_status tps_gemm_supported(tps_gemm g) {
    if (g == TPS_GEMM_AUTO || g == TPS_GEMM_OPENBLAS) return TPS_OK;
    if (g == TPS_GEMM_ONEDNN) return ti_onednn_available(TI_DT_F32);
    if (g == TPS_GEMM_PANEL) {
        const tps_status st = ti_onednn_available(TI_DT_F32);
        if (st != TPS_OK) return st;
        if (!panel_supported())
            return ti_fail(TPS_ERR_UNSUPPORTED, "the panel GEMM back-end needs AVX-512 (avx512f, and oneDNN's f32 "
                                                "kernel for packed weights; ONEDNN_MAX_CPU_ISA and TPSINFER_MAX_ISA "
                                                "must not cap it below)");
        return TPS_OK;
    }
    return ti_fail(TPS_ERR_ARG, "unknown GEMM back-end %d", (int)g);
}

static const char *const gemm_names[] = {[TPS_GEMM_AUTO] = "auto", [TPS_GEMM_OPENBLAS] = "openblas",
                                         [TPS_GEMM_ONEDNN] = "onednn", [TPS_GEMM_PANEL] = "panel"};
#define GEMM_COUNT (sizeof gemm_names / sizeof *gemm_names)

const char *tps_gemm_name(tps_gemm g) { return (unsigned)g < GEMM_COUNT ? gemm_names[g] : "auto"; }

/* name -> back-end through gemm_names, leaving no error message behind (TPSINFER_GEMM's lookup) */
static bool gemm_by_name(const char *name, tps_gemm *out) {
    for (size_t g = 0; name && g < GEMM_COUNT; g++)
        if (!strcmp(name, gemm_names[g])) {
            *out = (tps_gemm)g;
            return true;
        }
    return false;
}

tps_status tps_gemm_from_name(const char *name, tps_gemm *out) {
    tps_gemm g;
    if (gemm_by_name(name, &g)) {
        if (out) *out = g;
        return TPS_OK;
    }
    char known[64] = ""; /* "auto, openblas, onednn or panel", from the table */
    for (size_t i = 0; i < GEMM_COUNT; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                 i == 0 ? "" : i + 1 == GEMM_COUNT ? " or " : ", ", gemm_names[i]);
    return ti_fail(TPS_ERR_ARG, "unknown GEMM back-end '%s' (%s)", name ? name : "(null)", known);
}

/* The panel back-end where oneDNN's f32 matmul runs on weights packed at open (brgemm,
 * AVX-512) and the CPU has AVX-512: measured faster than oneDNN's own kernel, which was faster
 * than OpenBLAS whatever OPENBLAS_CORETYPE says. Elsewhere oneDNN's f32 matmul is gemm:jit,
 * which packs per call as OpenBLAS does and was not faster (docs/inference.md). */
static tps_gemm auto_gemm;
static void resolve_auto(void) {
    auto_gemm = panel_supported() ? TPS_GEMM_PANEL : ti_onednn_f32_prepacked() ? TPS_GEMM_ONEDNN : TPS_GEMM_OPENBLAS;
}

tps_gemm tps_gemm_default(void) {
    /* TPSINFER_GEMM names a back-end this CPU and build can run, or is ignored */
    tps_gemm env;
    if (gemm_by_name(getenv("TPSINFER_GEMM"), &env) &&
        (env == TPS_GEMM_OPENBLAS || (env == TPS_GEMM_ONEDNN && ti_onednn_available(TI_DT_F32) == TPS_OK) ||
         (env == TPS_GEMM_PANEL && panel_supported())))
        return env;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, resolve_auto);
    return auto_gemm;
}

void tps_model_close(tps_model *m) {
    if (!m) return;
    ti_onednn_free(box_of(m)->onednn);
    if (m->class_names)
        for (size_t k = 0; k < m->K; k++) free(m->class_names[k]);
    free(m->class_names);
    free(m->blocks);
    free(m->weights);
    free(m->merge_r);
    free(box_of(m));
}

tps_status tps_model_get_info(const tps_model *m, tps_model_info *info) {
    if (!m || !info) return ti_fail(TPS_ERR_ARG, "tps_model_get_info: NULL argument");
    *info = m->info;
    return TPS_OK;
}

const char *tps_model_class_name(const tps_model *m, int k) {
    if (!m || !m->class_names || k < 0 || k >= m->info.n_class_names) return NULL;
    return m->class_names[k];
}
