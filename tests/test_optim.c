/* Optimisers, schedules, clipping, EMA and parameter groups against PyTorch 1.13.
 *
 * Reference: tests/fixtures/optim_ref.h5, made by tests/reference/make_optim_fixture.py from
 * torch.optim.AdamW / torch.optim.SGD / torch.nn.utils.clip_grad_norm_ / timm's ModelEmaV2
 * update and timm's CosineLRScheduler formula, on six tiny named tensors fed fixed gradients.
 *
 * Tolerance for float32 state (parameters, moments, buffers, clipped gradients): 1e-6 relative
 * per element; entries that cancel toward zero are held to 1e-6 times the largest magnitude
 * in the same tensor instead (a relative bound is meaningless at 0). Both sides run the same
 * float32 arithmetic; the slack covers FMA contraction and division-vs-reciprocal differences
 * in PyTorch's vectorised kernels over five steps. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autograd/params.h"
#include "src/optim/adamw.h"
#include "src/optim/clip.h"
#include "src/optim/ema.h"
#include "src/optim/param_groups.h"
#include "src/optim/schedule.h"
#include "src/optim/sgd.h"
#include "support/fixture.h"

#define FIXTURE "optim_ref.h5"
#define RTOL 1e-6

/* The fixture's tensors, with the flags timm's rules must give them. */
static const struct {
    const char *name;
    int ndim;
    size_t shape[3];
    bool no_decay;
    int group;
} PARAMS[] = {
    {"cls_token", 3, {1, 1, 4}, true, 0},
    {"pos_embed", 3, {1, 3, 4}, true, 0},
    {"blocks.0.norm1.weight", 1, {4}, true, 0},
    {"blocks.0.attn.qkv.weight", 2, {6, 4}, false, 0},
    {"score_predictor.0.in_conv.1.weight", 2, {4, 4}, false, 1},
    {"score_predictor.0.in_conv.1.bias", 1, {4}, true, 1},
};
#define N_PARAMS ((int)(sizeof PARAMS / sizeof PARAMS[0]))
#define FROZEN_NAME "pos_embed"

typedef struct setup {
    fixture fx;
    ag_params p;
    float *grads[N_PARAMS]; /* [steps, numel] per parameter */
    long steps;
} setup;

static void setup_open(setup *s) {
    fx_open(&s->fx, FIXTURE);
    ag_params_init(&s->p);
    for (int i = 0; i < N_PARAMS; i++)
        cr_assert_eq(ag_params_add(&s->p, PARAMS[i].name, PARAMS[i].ndim, PARAMS[i].shape), i, "%s",
                     tpsc_last_error());
    cr_assert_eq(ag_params_finalise(&s->p), TPSC_OK);
    tpsc_param_groups_assign(&s->p);
    const char *frozen[] = {FROZEN_NAME};
    cr_assert_eq(tpsc_param_groups_freeze(&s->p, frozen, 1, true, NULL), TPSC_OK, "%s", tpsc_last_error());
    fx_load_params(&s->fx, "/init", &s->p);
    s->steps = fx_attr_int(&s->fx, "steps");
    for (int i = 0; i < N_PARAMS; i++) {
        char path[160];
        snprintf(path, sizeof path, "/grads/%s", PARAMS[i].name);
        size_t n;
        s->grads[i] = fx_read_f32(&s->fx, path, &n, NULL, NULL);
        cr_assert_eq(n, (size_t)s->steps * s->p.items[i].numel, "%s: %zu values", path, n);
    }
}

static void setup_close(setup *s) {
    for (int i = 0; i < N_PARAMS; i++) free(s->grads[i]);
    ag_params_free(&s->p);
    fx_close(&s->fx);
}

/* Step `step`'s gradients into the grad block, frozen parameter included (it must be ignored). */
static void feed(setup *s, long step) {
    for (int i = 0; i < N_PARAMS; i++) {
        ag_param *it = &s->p.items[i];
        memcpy(it->t.grad, s->grads[i] + (size_t)step * it->numel, it->numel * sizeof(float));
    }
}

static double *read_f64(const fixture *fx, const char *dataset, size_t *n) {
    hid_t d = H5Dopen2(fx->file, dataset, H5P_DEFAULT);
    cr_assert(d >= 0, "%s: no dataset %s", fx->path, dataset);
    hid_t sp = H5Dget_space(d);
    hssize_t count = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    double *buf = malloc((size_t)(count > 0 ? count : 1) * sizeof *buf);
    cr_assert(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, "reading %s", dataset);
    H5Dclose(d);
    *n = (size_t)count;
    return buf;
}

/* Compares n floats at `got` with fixture dataset `group/name` under the file's tolerance. */
static void expect_close(setup *s, const char *group, const char *name, const float *got, size_t n) {
    char path[200];
    snprintf(path, sizeof path, "/%s/%s", group, name);
    size_t m;
    float *ref = fx_read_f32(&s->fx, path, &m, NULL, NULL);
    cr_assert_eq(m, n, "%s: %zu values, expected %zu", path, m, n);
    double biggest = 0.0;
    for (size_t k = 0; k < n; k++) biggest = fmax(biggest, fabs((double)ref[k]));
    size_t worst;
    double r = fx_max_ratio(got, ref, n, RTOL * biggest, RTOL, &worst);
    cr_expect(r <= 1.0, "%s[%zu]: got %.9g, PyTorch %.9g (%.2f x tolerance)", path, worst,
              (double)got[worst], (double)ref[worst], r);
    free(ref);
}

static bool is_frozen_name(const char *name) { return strcmp(name, FROZEN_NAME) == 0; }

static void expect_frozen_untouched(setup *s) {
    int i = ag_params_find(&s->p, FROZEN_NAME);
    size_t n;
    float *init = fx_read_f32(&s->fx, "/init/" FROZEN_NAME, &n, NULL, NULL);
    cr_expect(memcmp(init, s->p.items[i].t.data, n * sizeof(float)) == 0,
              "frozen %s moved although it had a gradient", FROZEN_NAME);
    free(init);
}

/* Steps t in [from, to) of the fixture's run with AdamW: step t's gradients and lr[t], then
 * an EMA update when ema is not NULL. */
static void adamw_steps(setup *s, tpsc_adamw *opt, tpsc_ema *ema, const double *lr, long from, long to) {
    for (long t = from; t < to; t++) {
        feed(s, t);
        cr_assert_eq(tpsc_adamw_step(opt, &s->p, lr[t]), TPSC_OK, "step %ld: %s", t, tpsc_last_error());
        if (ema) cr_assert_eq(tpsc_ema_update(ema, &s->p), TPSC_OK, "step %ld: %s", t, tpsc_last_error());
    }
}

/* One parameter "w" of n elements, for the hand-computed cases. */
static void one_weight(ag_params *p, size_t n) {
    ag_params_init(p);
    cr_assert_geq(ag_params_add(p, "w", 1, (size_t[]){n}), 0);
    cr_assert_eq(ag_params_finalise(p), TPSC_OK);
}

/* One SGD step at lr 0.1 with gradient g on the single weight of p; then the momentum buffer
 * and the weight must be buf_want and w_want (1e-6 absolute). */
static void expect_sgd_step(tpsc_sgd *opt, ag_params *p, float g, float buf_want, float w_want) {
    p->grad[0] = g;
    cr_assert_eq(tpsc_sgd_step(opt, p, 0.1), TPSC_OK);
    cr_expect_float_eq(opt->buf[0], buf_want, 1e-6, "buffer %.9g, want %.9g", (double)opt->buf[0], (double)buf_want);
    cr_expect_float_eq(p->data[0], w_want, 1e-6, "weight %.9g, want %.9g", (double)p->data[0], (double)w_want);
}

static tpsc_adamw_config fixture_adamw_config(setup *s) {
    tpsc_adamw_config c = tpsc_adamw_defaults();
    c.beta1 = fx_attr_double(&s->fx, "beta1");
    c.beta2 = fx_attr_double(&s->fx, "beta2");
    c.eps = fx_attr_double(&s->fx, "eps");
    c.weight_decay = fx_attr_double(&s->fx, "weight_decay");
    c.group_lr_scale[TPSC_GROUP_BACKBONE] = fx_attr_double(&s->fx, "scale_backbone");
    c.group_lr_scale[TPSC_GROUP_PREDICTOR] = fx_attr_double(&s->fx, "scale_predictor");
    return c;
}

/* ------------------------------------------------------------------------- parameter groups */

Test(optim_groups, flags_follow_timm_and_deit) {
    setup s;
    setup_open(&s);
    for (int i = 0; i < N_PARAMS; i++) {
        const ag_param *it = &s.p.items[i];
        cr_expect_eq(it->no_decay, PARAMS[i].no_decay, "%s: no_decay %d", it->name, it->no_decay);
        cr_expect_eq(it->group, PARAMS[i].group, "%s: group %d", it->name, it->group);
        bool frozen = is_frozen_name(it->name);
        cr_expect_eq(it->frozen, frozen, "%s: frozen %d", it->name, it->frozen);
        cr_expect_eq(it->t.requires_grad, !frozen, "%s: requires_grad %d", it->name, it->t.requires_grad);
    }
    /* 4 + 12 (frozen) + 4 + 24 + 16 + 4 floats, of which pos_embed's 12 are frozen. */
    cr_expect_eq(tpsc_param_groups_trainable(&s.p), 52u);
    setup_close(&s);
}

Test(optim_groups, decay_all_clears_no_decay_only) {
    setup s;
    setup_open(&s);
    tpsc_param_groups_decay_all(&s.p);
    for (int i = 0; i < N_PARAMS; i++) {
        cr_expect(!s.p.items[i].no_decay, "%s still skips decay", s.p.items[i].name);
        cr_expect_eq(s.p.items[i].group, PARAMS[i].group, "%s: group changed", s.p.items[i].name);
    }
    cr_expect(s.p.items[ag_params_find(&s.p, FROZEN_NAME)].frozen, "freezing is a separate flag");
    setup_close(&s);
}

Test(optim_groups, freeze_by_prefix_and_unfreeze) {
    setup s;
    setup_open(&s);
    const char *backbone[] = {"blocks.", "cls_token"};
    int n = 0;
    cr_assert_eq(tpsc_param_groups_freeze(&s.p, backbone, 2, true, &n), TPSC_OK);
    cr_expect_eq(n, 3, "blocks.0.norm1.weight, blocks.0.attn.qkv.weight, cls_token: got %d", n);
    cr_expect(s.p.items[ag_params_find(&s.p, "blocks.0.attn.qkv.weight")].frozen);
    cr_expect(!s.p.items[ag_params_find(&s.p, "score_predictor.0.in_conv.1.weight")].frozen);
    cr_expect_eq(tpsc_param_groups_freeze(&s.p, backbone, 2, false, &n), TPSC_OK);
    cr_expect(!s.p.items[ag_params_find(&s.p, "cls_token")].frozen);
    cr_expect(s.p.items[ag_params_find(&s.p, "cls_token")].t.requires_grad);
    setup_close(&s);
}

Test(optim_groups, unknown_prefix_is_an_error_and_changes_nothing) {
    setup s;
    setup_open(&s);
    const char *prefixes[] = {"blocks.", "blokcs.9."};
    int n = -1;
    cr_assert_eq(tpsc_param_groups_freeze(&s.p, prefixes, 2, true, &n), TPSC_ERR_MISSING);
    cr_expect(strstr(tpsc_last_error(), "blokcs.9.") != NULL, "message: %s", tpsc_last_error());
    cr_expect_eq(n, 0);
    cr_expect(!s.p.items[ag_params_find(&s.p, "blocks.0.attn.qkv.weight")].frozen);
    setup_close(&s);
}

/* ------------------------------------------------------------------------------------ AdamW */

Test(optim_adamw, matches_torch_adamw_five_steps) {
    setup s;
    setup_open(&s);
    tpsc_adamw_config c = fixture_adamw_config(&s);
    tpsc_adamw opt;
    cr_assert_eq(tpsc_adamw_init(&opt, &s.p, &c), TPSC_OK, "%s", tpsc_last_error());
    size_t n_lr;
    double *lr = read_f64(&s.fx, "/adamw/lr", &n_lr);
    cr_assert_eq(n_lr, (size_t)s.steps);
    adamw_steps(&s, &opt, NULL, lr, 0, s.steps);
    cr_expect_eq(opt.step, s.steps);
    for (int i = 0; i < N_PARAMS; i++) {
        const ag_param *it = &s.p.items[i];
        expect_close(&s, "adamw/final", it->name, it->t.data, it->numel);
        if (is_frozen_name(it->name)) {
            cr_expect_eq(opt.param_step[i], 0, "frozen %s was counted as updated", it->name);
            for (size_t k = 0; k < it->numel; k++)
                cr_expect(opt.m[it->offset + k] == 0.0f && opt.v[it->offset + k] == 0.0f,
                          "frozen %s has moments", it->name);
            continue;
        }
        cr_expect_eq(opt.param_step[i], s.steps, "%s: step %lld", it->name, (long long)opt.param_step[i]);
        expect_close(&s, "adamw/exp_avg", it->name, opt.m + it->offset, it->numel);
        expect_close(&s, "adamw/exp_avg_sq", it->name, opt.v + it->offset, it->numel);
    }
    expect_frozen_untouched(&s);
    free(lr);
    tpsc_adamw_free(&opt);
    setup_close(&s);
}

Test(optim_adamw, no_decay_params_do_not_decay) {
    /* With zero gradients the Adam term is 0 / (0 + eps) = 0, so only the decoupled decay
     * acts: p * (1 - lr_g * wd) for decaying items (lr_g = lr * group scale), exactly p for
     * no_decay and frozen items. Reference: the formula, in float as PyTorch's mul_. */
    setup s;
    setup_open(&s);
    tpsc_adamw_config c = tpsc_adamw_defaults();
    c.weight_decay = 0.5;
    c.group_lr_scale[TPSC_GROUP_BACKBONE] = 0.25;
    tpsc_adamw opt;
    cr_assert_eq(tpsc_adamw_init(&opt, &s.p, &c), TPSC_OK);
    float *before = malloc(s.p.total * sizeof(float));
    memcpy(before, s.p.data, s.p.total * sizeof(float));
    ag_params_zero_grad(&s.p);
    const double lr = 0.1;
    cr_assert_eq(tpsc_adamw_step(&opt, &s.p, lr), TPSC_OK);
    for (int i = 0; i < N_PARAMS; i++) {
        const ag_param *it = &s.p.items[i];
        bool decays = !PARAMS[i].no_decay;
        float keep = (float)(1.0 - lr * c.group_lr_scale[PARAMS[i].group] * c.weight_decay);
        for (size_t k = 0; k < it->numel; k++) {
            float want = decays ? before[it->offset + k] * keep : before[it->offset + k];
            cr_expect(it->t.data[k] == want, "%s[%zu]: %.9g, want %.9g (decays %d)", it->name, k,
                      (double)it->t.data[k], (double)want, decays);
        }
    }
    free(before);
    tpsc_adamw_free(&opt);
    setup_close(&s);
}

Test(optim_adamw, bad_group_and_changed_store_are_errors) {
    setup s;
    setup_open(&s);
    tpsc_adamw_config c = tpsc_adamw_defaults();
    tpsc_adamw opt;
    cr_assert_eq(tpsc_adamw_init(&opt, &s.p, &c), TPSC_OK);
    int q = ag_params_find(&s.p, "blocks.0.attn.qkv.weight");
    s.p.items[q].group = TPSC_OPTIM_MAX_GROUPS;
    cr_expect_eq(tpsc_adamw_step(&opt, &s.p, 1e-3), TPSC_ERR_ARG);
    cr_expect(strstr(tpsc_last_error(), "blocks.0.attn.qkv.weight") != NULL, "message: %s", tpsc_last_error());
    cr_expect_eq(opt.step, 0, "a failed step must not count");
    s.p.items[q].group = 0;
    opt.total += 16; /* as if the state had been made for another model */
    cr_expect_eq(tpsc_adamw_step(&opt, &s.p, 1e-3), TPSC_ERR_ARG);
    opt.total -= 16;
    c.beta2 = 1.0;
    tpsc_adamw other;
    cr_expect_eq(tpsc_adamw_init(&other, &s.p, &c), TPSC_ERR_ARG);
    cr_expect(strstr(tpsc_last_error(), "beta2") != NULL, "message: %s", tpsc_last_error());
    tpsc_adamw_free(&opt);
    setup_close(&s);
}

/* -------------------------------------------------------------------------------------- SGD */

static void run_sgd(bool nesterov, const char *group) {
    setup s;
    setup_open(&s);
    tpsc_sgd_config c = tpsc_sgd_defaults();
    c.momentum = fx_attr_double(&s.fx, "momentum");
    c.weight_decay = fx_attr_double(&s.fx, "sgd_weight_decay");
    c.nesterov = nesterov;
    c.group_lr_scale[TPSC_GROUP_BACKBONE] = fx_attr_double(&s.fx, "scale_backbone");
    c.group_lr_scale[TPSC_GROUP_PREDICTOR] = fx_attr_double(&s.fx, "scale_predictor");
    double lr = fx_attr_double(&s.fx, "lr");
    tpsc_sgd opt;
    cr_assert_eq(tpsc_sgd_init(&opt, &s.p, &c), TPSC_OK, "%s", tpsc_last_error());
    for (long t = 0; t < s.steps; t++) {
        feed(&s, t);
        cr_assert_eq(tpsc_sgd_step(&opt, &s.p, lr), TPSC_OK, "%s", tpsc_last_error());
    }
    char buf_group[64];
    snprintf(buf_group, sizeof buf_group, "%s/momentum_buffer", group);
    char final_group[64];
    snprintf(final_group, sizeof final_group, "%s/final", group);
    for (int i = 0; i < N_PARAMS; i++) {
        const ag_param *it = &s.p.items[i];
        expect_close(&s, final_group, it->name, it->t.data, it->numel);
        if (!nesterov && !is_frozen_name(it->name))
            expect_close(&s, buf_group, it->name, opt.buf + it->offset, it->numel);
    }
    expect_frozen_untouched(&s);
    tpsc_sgd_free(&opt);
    setup_close(&s);
}

Test(optim_sgd, matches_torch_sgd_momentum_five_steps) { run_sgd(false, "sgd"); }
Test(optim_sgd, matches_torch_sgd_nesterov_five_steps) { run_sgd(true, "sgd_nesterov"); }

/* ------------------------------------------------------------------------------------- clip */

Test(optim_clip, matches_clip_grad_norm) {
    setup s;
    setup_open(&s);
    feed(&s, 0);
    double norm = 0.0;
    cr_assert_eq(tpsc_clip_grad_norm(&s.p, fx_attr_double(&s.fx, "clip_max_norm"), &norm), TPSC_OK);
    size_t n;
    float *ref = fx_read_f32(&s.fx, "/clip/norm", &n, NULL, NULL);
    /* PyTorch's norm is float32; ours is double, rounded to float for the comparison. */
    float got = (float)norm;
    cr_expect(fx_max_ratio(&got, ref, 1, 0.0, RTOL, NULL) <= 1.0, "norm %.9g, PyTorch %.9g", norm, (double)ref[0]);
    free(ref);
    for (int i = 0; i < N_PARAMS; i++) {
        const ag_param *it = &s.p.items[i];
        if (is_frozen_name(it->name)) {
            /* excluded from the norm and left as it was */
            cr_expect(memcmp(it->t.grad, s.grads[i], it->numel * sizeof(float)) == 0);
            continue;
        }
        expect_close(&s, "clip/grad", it->name, it->t.grad, it->numel);
    }
    setup_close(&s);
}

Test(optim_clip, below_max_norm_or_measure_only_leaves_gradients) {
    setup s;
    setup_open(&s);
    feed(&s, 0);
    double norm = 0.0, norm2 = 0.0;
    cr_assert_eq(tpsc_grad_norm(&s.p, &norm), TPSC_OK);
    cr_assert_eq(tpsc_clip_grad_norm(&s.p, norm * 2.0, &norm2), TPSC_OK);
    cr_expect_eq(norm, norm2);
    cr_assert_eq(tpsc_clip_grad_norm(&s.p, 0.0, &norm2), TPSC_OK);
    for (int i = 0; i < N_PARAMS; i++)
        cr_expect(memcmp(s.p.items[i].t.grad, s.grads[i], s.p.items[i].numel * sizeof(float)) == 0,
                  "%s was scaled", s.p.items[i].name);
    setup_close(&s);
}

Test(optim_clip, non_finite_gradient_is_named_and_nothing_is_scaled) {
    setup s;
    setup_open(&s);
    feed(&s, 0);
    int frozen = ag_params_find(&s.p, FROZEN_NAME);
    int qkv = ag_params_find(&s.p, "blocks.0.attn.qkv.weight");
    int pred = ag_params_find(&s.p, "score_predictor.0.in_conv.1.weight");
    s.p.items[frozen].t.grad[0] = NAN;    /* frozen: not part of the norm, must not be blamed */
    s.p.items[qkv].t.grad[5] = NAN;
    s.p.items[pred].t.grad[2] = INFINITY;
    double norm = 0.0;
    cr_assert_eq(tpsc_clip_grad_norm(&s.p, 1e-3, &norm), TPSC_ERR_NUMERIC);
    cr_expect(!isfinite(norm));
    cr_expect(strstr(tpsc_last_error(), "blocks.0.attn.qkv.weight") != NULL, "message: %s", tpsc_last_error());
    cr_expect(strstr(tpsc_last_error(), "element 5") != NULL, "message: %s", tpsc_last_error());
    int norm1 = ag_params_find(&s.p, "blocks.0.norm1.weight");
    cr_expect(memcmp(s.p.items[norm1].t.grad, s.grads[norm1], 4 * sizeof(float)) == 0,
              "gradients were scaled although the norm was not finite");
    setup_close(&s);
}

/* -------------------------------------------------------------------------------- schedules */

static tpsc_lr_schedule fixture_schedule(setup *s) {
    return tpsc_lr_cosine(fx_attr_double(&s->fx, "sched_base_lr"), fx_attr_double(&s->fx, "sched_warmup_lr"),
                          fx_attr_double(&s->fx, "sched_min_lr"), fx_attr_int(&s->fx, "sched_warmup"),
                          fx_attr_int(&s->fx, "sched_total"));
}

static void expect_schedule(setup *s, const tpsc_lr_schedule *sch, const char *dataset) {
    size_t n;
    double *ref = read_f64(&s->fx, dataset, &n);
    cr_assert_eq(n, (size_t)sch->total_steps);
    /* Reference: timm's formula in double in the script; same formula here, so only the
     * last bits of cos() may differ: 1e-12 relative. */
    for (size_t t = 0; t < n; t++)
        cr_expect(fabs(tpsc_lr_at(sch, (int64_t)t) - ref[t]) <= 1e-12 * fabs(ref[t]),
                  "%s[%zu]: %.17g, timm formula %.17g", dataset, t, tpsc_lr_at(sch, (int64_t)t), ref[t]);
    free(ref);
}

Test(optim_schedule, cosine_matches_timm_formula) {
    setup s;
    setup_open(&s);
    tpsc_lr_schedule sch = fixture_schedule(&s);
    cr_assert_eq(tpsc_lr_check(&sch), TPSC_OK, "%s", tpsc_last_error());
    expect_schedule(&s, &sch, "/schedule/cosine_prefix");
    sch.warmup_prefix = false;
    expect_schedule(&s, &sch, "/schedule/cosine_timm");
    setup_close(&s);
}

Test(optim_schedule, endpoints_and_shape) {
    /* Reference: the definition in schedule.h; endpoints are exact by construction. */
    tpsc_lr_schedule s = tpsc_lr_cosine(1e-3, 1e-6, 1e-5, 10, 100);
    cr_expect_eq(tpsc_lr_at(&s, 0), 1e-6);
    cr_expect_eq(tpsc_lr_at(&s, 10), 1e-3, "end of warm-up: %.17g", tpsc_lr_at(&s, 10));
    cr_expect_eq(tpsc_lr_at(&s, 99), 1e-5, "last step: %.17g", tpsc_lr_at(&s, 99));
    cr_expect_eq(tpsc_lr_at(&s, 500), 1e-5);
    /* half-way through the cosine: the mean of lr and min_lr (cos(pi/2) = 0), 1e-12 relative */
    tpsc_lr_schedule h = tpsc_lr_cosine(1e-3, 1e-6, 1e-5, 10, 111);
    cr_expect(fabs(tpsc_lr_at(&h, 60) - 0.5 * (1e-3 + 1e-5)) <= 1e-12 * 1e-3, "%.17g", tpsc_lr_at(&h, 60));
    for (int64_t t = 1; t < 10; t++) cr_expect(tpsc_lr_at(&s, t) > tpsc_lr_at(&s, t - 1), "warm-up rises at %lld", (long long)t);
    for (int64_t t = 11; t < 100; t++) cr_expect(tpsc_lr_at(&s, t) < tpsc_lr_at(&s, t - 1), "cosine falls at %lld", (long long)t);
    tpsc_lr_schedule c = tpsc_lr_constant(3e-4);
    cr_expect_eq(tpsc_lr_at(&c, 0), 3e-4);
    cr_expect_eq(tpsc_lr_at(&c, 123456), 3e-4);
}

Test(optim_schedule, bad_knobs_are_config_errors) {
    tpsc_lr_schedule s = tpsc_lr_cosine(1e-3, 1e-6, 1e-5, 100, 100);
    cr_expect_eq(tpsc_lr_check(&s), TPSC_ERR_CONFIG);
    cr_expect(strstr(tpsc_last_error(), "warmup_steps") != NULL, "message: %s", tpsc_last_error());
    s = tpsc_lr_cosine(-1.0, 1e-6, 1e-5, 1, 100);
    cr_expect_eq(tpsc_lr_check(&s), TPSC_ERR_CONFIG);
    s = tpsc_lr_cosine(1e-3, 1e-6, NAN, 1, 100);
    cr_expect_eq(tpsc_lr_check(&s), TPSC_ERR_CONFIG);
    cr_expect(strstr(tpsc_last_error(), "min_lr") != NULL, "message: %s", tpsc_last_error());
}

/* -------------------------------------------------------------------------------------- EMA */

Test(optim_ema, matches_model_ema_v2_over_adamw_run) {
    setup s;
    setup_open(&s);
    tpsc_adamw_config c = fixture_adamw_config(&s);
    tpsc_adamw opt;
    tpsc_ema ema;
    cr_assert_eq(tpsc_adamw_init(&opt, &s.p, &c), TPSC_OK);
    cr_assert_eq(tpsc_ema_init(&ema, &s.p, fx_attr_double(&s.fx, "ema_decay")), TPSC_OK);
    size_t n_lr;
    double *lr = read_f64(&s.fx, "/adamw/lr", &n_lr);
    adamw_steps(&s, &opt, &ema, lr, 0, s.steps);
    cr_expect_eq(ema.updates, s.steps);
    for (int i = 0; i < N_PARAMS; i++)
        expect_close(&s, "ema/final", s.p.items[i].name, ema.data + s.p.items[i].offset, s.p.items[i].numel);
    /* swap puts the average into the model and back, bit for bit */
    float *live = malloc(s.p.total * sizeof(float)), *avg = malloc(s.p.total * sizeof(float));
    memcpy(live, s.p.data, s.p.total * sizeof(float));
    memcpy(avg, ema.data, s.p.total * sizeof(float));
    cr_assert_eq(tpsc_ema_swap(&ema, &s.p), TPSC_OK);
    cr_expect(memcmp(s.p.data, avg, s.p.total * sizeof(float)) == 0);
    cr_assert_eq(tpsc_ema_swap(&ema, &s.p), TPSC_OK);
    cr_expect(memcmp(s.p.data, live, s.p.total * sizeof(float)) == 0);
    cr_expect(memcmp(ema.data, avg, s.p.total * sizeof(float)) == 0);
    free(live);
    free(avg);
    free(lr);
    tpsc_ema_free(&ema);
    tpsc_adamw_free(&opt);
    setup_close(&s);
}

Test(optim_ema, bad_decay_is_an_error) {
    ag_params p;
    one_weight(&p, 3);
    tpsc_ema e;
    cr_expect_eq(tpsc_ema_init(&e, &p, 1.5), TPSC_ERR_ARG);
    cr_expect(strstr(tpsc_last_error(), "decay") != NULL, "message: %s", tpsc_last_error());
    ag_params_free(&p);
}

Test(optim_sgd, dampening_spares_the_first_step) {
    /* PyTorch sets the buffer to the gradient on the first step and dampens only later.
     * Reference by hand, momentum 0.9, dampening 0.5, lr 0.1, p0 = 1, g = 2 then 4:
     * b1 = 2, p1 = 1 - 0.2 = 0.8; b2 = 0.9*2 + 0.5*4 = 3.8, p2 = 0.8 - 0.38 = 0.42.
     * Tolerance: a few float roundings of values near 1, 1e-6 absolute. */
    ag_params p;
    one_weight(&p, 1);
    tpsc_param_groups_assign(&p);
    tpsc_sgd_config c = tpsc_sgd_defaults();
    c.dampening = 0.5;
    tpsc_sgd opt;
    cr_assert_eq(tpsc_sgd_init(&opt, &p, &c), TPSC_OK);
    p.data[0] = 1.0f;
    expect_sgd_step(&opt, &p, 2.0f, 2.0f, 0.8f);
    expect_sgd_step(&opt, &p, 4.0f, 3.8f, 0.42f);
    tpsc_sgd_free(&opt);
    ag_params_free(&p);
}

/* ------------------------------------------------------------------------------ resume */

Test(optim_adamw, resume_from_m_v_step_continues_bit_for_bit) {
    /* Reference: the same five steps without interruption; a resumed optimiser that got only
     * m, v and step (what the checkpoint keeps) must produce identical bits. */
    setup s;
    setup_open(&s);
    tpsc_adamw_config c = fixture_adamw_config(&s);
    size_t n_lr;
    double *lr = read_f64(&s.fx, "/adamw/lr", &n_lr);
    float *init = malloc(s.p.total * sizeof(float));
    memcpy(init, s.p.data, s.p.total * sizeof(float));

    tpsc_adamw whole;
    cr_assert_eq(tpsc_adamw_init(&whole, &s.p, &c), TPSC_OK);
    adamw_steps(&s, &whole, NULL, lr, 0, s.steps);
    float *want = malloc(s.p.total * sizeof(float));
    memcpy(want, s.p.data, s.p.total * sizeof(float));

    memcpy(s.p.data, init, s.p.total * sizeof(float));
    tpsc_adamw first, second;
    cr_assert_eq(tpsc_adamw_init(&first, &s.p, &c), TPSC_OK);
    adamw_steps(&s, &first, NULL, lr, 0, 3);
    cr_assert_eq(tpsc_adamw_init(&second, &s.p, &c), TPSC_OK);
    memcpy(second.m, first.m, s.p.total * sizeof(float));
    memcpy(second.v, first.v, s.p.total * sizeof(float));
    cr_assert_eq(tpsc_adamw_restore_step(&second, &s.p, first.step), TPSC_OK);
    for (int i = 0; i < N_PARAMS; i++)
        cr_expect_eq(second.param_step[i], first.param_step[i], "%s", s.p.items[i].name);
    adamw_steps(&s, &second, NULL, lr, 3, s.steps);
    cr_expect(memcmp(s.p.data, want, s.p.total * sizeof(float)) == 0, "resumed run differs");
    cr_expect_eq(second.step, whole.step);
    free(init);
    free(want);
    free(lr);
    tpsc_adamw_free(&whole);
    tpsc_adamw_free(&first);
    tpsc_adamw_free(&second);
    setup_close(&s);
}

Test(optim_sgd, resume_restores_buffer_state) {
    /* After a restore at step > 0 the buffer must be blended, not reset to the gradient:
     * same reference and tolerance as dampening_spares_the_first_step (b2 = 3.8, p2 = 0.42). */
    ag_params p;
    one_weight(&p, 1);
    tpsc_sgd_config c = tpsc_sgd_defaults();
    c.dampening = 0.5;
    tpsc_sgd opt;
    cr_assert_eq(tpsc_sgd_init(&opt, &p, &c), TPSC_OK);
    opt.buf[0] = 2.0f; /* the state after step 1 */
    cr_assert_eq(tpsc_sgd_restore_step(&opt, &p, 1), TPSC_OK);
    p.data[0] = 0.8f;
    expect_sgd_step(&opt, &p, 4.0f, 3.8f, 0.42f);
    tpsc_sgd_free(&opt);
    ag_params_free(&p);
}
