/* The training loop. See trainer.h for the shape of a run. */
#include "src/train/trainer.h"

#include <errno.h>
#include <math.h>
#include <stdio_ext.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "autograd/gemm.h"
#include "autograd/ops.h"
#include "autograd/threads.h"
#include "src/build_info.h"
#include "src/dist/dist.h"
#include "src/io/atomic.h"
#include "src/io/checkpoint.h"
#include "src/io/fault.h"
#include "src/objective/objective.h"
#include "src/optim/adamw.h"
#include "src/optim/clip.h"
#include "src/optim/ema.h"
#include "src/optim/param_groups.h"
#include "src/optim/schedule.h"
#include "src/optim/sgd.h"
#include "src/train/progress.h"
#include "src/train/setup.h"
#include "src/train/stop.h"
#include "src/util/alloc.h"
#include "src/util/log.h"

/* Everything one run owns; freed in one place. */
typedef struct run_state {
    const tpsc_recipe *r;
    vit_model model, teacher;
    bool has_teacher;
    tpsc_loader *train, *val;
    ag_ctx *ctx;
    tpsc_adamw adamw;
    tpsc_sgd sgd;
    tpsc_ema ema;
    bool use_ema;
    tpsc_lr_schedule sched;
    objective_config loss;
    char *recipe_text;
    const char **class_names;
    int n_classes;
    char dir[TPSC_RECIPE_PATH_MAX * 2];
    FILE *metrics;
    char metrics_path[TPSC_RECIPE_PATH_MAX * 2 + 32];
    long metrics_good;           /* metrics.jsonl's length up to its last line known written */
    int64_t epoch, step;         /* next epoch / global step to run */
    float best_top1;
    int accum;                   /* micro-batches per optimiser step */
    dist_grad_sync sync;         /* gradient averaging over MPI ranks */
} run_state;

static void run_free(run_state *s) {
    if (s->metrics) fclose(s->metrics);
    dist_grad_sync_free(&s->sync);
    tpsc_loader_close(s->train);
    tpsc_loader_close(s->val);
    ag_ctx_free(s->ctx);
    tpsc_adamw_free(&s->adamw);
    tpsc_sgd_free(&s->sgd);
    if (s->use_ema) tpsc_ema_free(&s->ema);
    vit_model_free(&s->model);
    if (s->has_teacher) vit_model_free(&s->teacher);
    tpsc_free(s->recipe_text);
    tpsc_free(s->class_names);
}

static tpsc_status save_checkpoint(run_state *s, const char *file) {
    char path[sizeof s->dir + 32];
    snprintf(path, sizeof path, "%s/%s", s->dir, file);
    tpsc_data_position pos = tpsc_loader_position(s->train);
    int64_t loader_pos[2] = {pos.epoch, pos.batch};
    bool sgd = s->r->optim.name == TPSC_OPTIM_SGD;
    tpsc_checkpoint ck = {
        .vit = &s->model.cfg,
        .tps = &s->model.tps,
        .params = &s->model.params,
        .opt_m = sgd ? s->sgd.buf : s->adamw.m,
        .opt_v = sgd ? NULL : s->adamw.v,
        .opt_step = sgd ? s->sgd.step : s->adamw.step,
        .opt_name = sgd ? "sgd" : "adamw",
        .opt_param_step = sgd ? s->sgd.param_step : s->adamw.param_step,
        .ema = s->use_ema ? s->ema.data : NULL,
        .loader_pos = loader_pos,
        .n_loader_pos = 2,
        .epoch = s->epoch,
        .step = s->step,
        .best_top1 = s->best_top1,
        .recipe_text = s->recipe_text,
        .precision = ag_precision_name(s->ctx->precision),
        .class_names = s->class_names,
        .n_class_names = s->n_classes,
    };
    tpsc_status st = tpsc_checkpoint_save(path, &ck);
    if (st != TPSC_OK) tpsc_error_context("saving %s: ", path);
    return st;
}

static tpsc_status resume(run_state *s, const char *path) {
    TPSC_TRY(tpsc_checkpoint_load_params(path, "/model", &s->model.params, NULL, NULL));
    bool sgd = s->r->optim.name == TPSC_OPTIM_SGD;
    int64_t loader_pos[2] = {0, 0};
    tpsc_checkpoint_state st = {
        .opt_m = sgd ? s->sgd.buf : s->adamw.m,
        .opt_v = sgd ? NULL : s->adamw.v,
        .ema = s->use_ema ? s->ema.data : NULL,
        .loader_pos = loader_pos,
        .loader_cap = 2,
        .opt_param_step = sgd ? s->sgd.param_step : s->adamw.param_step,
    };
    TPSC_TRY(tpsc_checkpoint_load_state(path, &s->model.params, &st));
    if (st.has_opt_param_step) {
        /* Per-parameter update counts came back as saved: exact even after (un)freezing. */
        if (sgd) s->sgd.step = st.opt_step;
        else s->adamw.step = st.opt_step;
    } else if (sgd) {
        TPSC_TRY(tpsc_sgd_restore_step(&s->sgd, &s->model.params, st.opt_step));
    } else {
        TPSC_TRY(tpsc_adamw_restore_step(&s->adamw, &s->model.params, st.opt_step));
    }
    s->epoch = st.epoch;
    s->step = st.step;
    s->best_top1 = st.best_top1;
    TPSC_TRY(tpsc_loader_seek(s->train, (tpsc_data_position){loader_pos[0], loader_pos[1]}));
    TPSC_INFO("resumed from %s at epoch %lld, step %lld", path, (long long)s->epoch + 1, (long long)s->step);
    return TPSC_OK;
}

/* Every rank must hold the same weights and optimiser state: rank 0's weights are sent to all
 * (at the start and after a resume), then checksums of everything are compared, so a rank that
 * read a different init or checkpoint is an error rather than a silently wrong model. */
static uint64_t state_checksum(const run_state *s) {
    const ag_params *p = &s->model.params;
    bool sgd = s->r->optim.name == TPSC_OPTIM_SGD;
    uint64_t h = dist_checksum(p->data, p->total * sizeof(float), 0);
    const float *m = sgd ? s->sgd.buf : s->adamw.m, *v = sgd ? NULL : s->adamw.v;
    if (m) h = dist_checksum(m, p->total * sizeof(float), h);
    if (v) h = dist_checksum(v, p->total * sizeof(float), h);
    if (s->use_ema) h = dist_checksum(s->ema.data, p->total * sizeof(float), h);
    int64_t counters[2] = {s->step, s->epoch};
    return dist_checksum(counters, sizeof counters, h);
}

static tpsc_status sync_ranks(run_state *s) {
    if (!dist_active()) return TPSC_OK;
    TPSC_TRY(dist_broadcast_floats(s->model.params.data, s->model.params.total));
    return dist_check_same(state_checksum(s), "weights, optimiser state or step at the start");
}

static tpsc_status setup(run_state *s, const tpsc_recipe *r) {
    s->r = r;
    ag_set_threads(r->run.threads);
    snprintf(s->dir, sizeof s->dir, "%s/%s", r->run.out_dir, r->run.name);
    TPSC_TRY(tpsc_mkdirs(s->dir));
    if (dist_rank() == 0) TPSC_TRY(tpsc_check_writable_dir(s->dir)); /* now, not at the first checkpoint */

    /* data.batch_size is the global batch: each rank takes its slice of every global batch. */
    const int world = dist_size();
    if (r->data.batch_size % world != 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "[data] batch_size = %d is not divisible by the %d MPI ranks", r->data.batch_size,
                         world);
    s->accum = r->optim.accum_steps > 0 ? r->optim.accum_steps : 1;
    tpsc_data_config dc;
    tpsc_data_config_from_recipe(r, TPSC_SPLIT_TRAIN, &dc);
    dc.rank = dist_rank();
    dc.world_size = world;
    dc.batch_size = r->data.batch_size / world;
    TPSC_TRY(tpsc_loader_open(&s->train, &dc, TPSC_SPLIT_TRAIN));
    tpsc_data_config_from_recipe(r, TPSC_SPLIT_VAL, &dc);
    dc.rank = dist_rank();
    dc.world_size = world;
    if (dc.eval_batch_size > 0) dc.eval_batch_size = (dc.eval_batch_size + world - 1) / world;
    TPSC_TRY(tpsc_loader_open(&s->val, &dc, TPSC_SPLIT_VAL));
    size_t K = tpsc_loader_num_classes(s->train);
    if (K != r->model.vit.num_classes)
        return tpsc_fail(TPSC_ERR_CONFIG, "[model] num_classes = %zu, but the training data has %zu classes",
                         r->model.vit.num_classes, K);
    if (tpsc_loader_batches_per_epoch(s->train) == 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "[data] batch_size = %d is larger than the %zu training samples (drop_last)",
                         r->data.batch_size, tpsc_loader_samples_per_epoch(s->train));
    if (tpsc_loader_batches_per_epoch(s->train) < (size_t)s->accum)
        return tpsc_fail(TPSC_ERR_CONFIG, "[optim] accum_steps = %d exceeds the %zu batches of an epoch", s->accum,
                         tpsc_loader_batches_per_epoch(s->train));
    s->n_classes = (int)K;
    s->class_names = tpsc_calloc(K, sizeof *s->class_names, "class names");
    if (!s->class_names) return TPSC_ERR_NOMEM;
    for (size_t k = 0; k < K; k++) s->class_names[k] = tpsc_loader_class_name(s->train, k);

    TPSC_TRY(tpsc_build_model(r, &s->model));
    s->loss = tpsc_loss_config_from_recipe(r);
    if ((r->loss.distill_weight > 0 || r->loss.guide_weight > 0) && r->teacher.checkpoint[0]) {
        TPSC_TRY(tpsc_build_teacher(r->teacher.checkpoint, &s->teacher));
        s->has_teacher = true;
        if (s->teacher.cfg.num_classes != K)
            return tpsc_fail(TPSC_ERR_CONFIG, "teacher %s has %zu classes, the data %zu", r->teacher.checkpoint,
                             s->teacher.cfg.num_classes, K);
    }

    ag_params *p = &s->model.params;
    tpsc_param_groups_assign(p);
    if (r->optim.freeze[0]) {
        char list[TPSC_RECIPE_PATH_MAX];
        snprintf(list, sizeof list, "%s", r->optim.freeze);
        const char *prefixes[32];
        int n = 0;
        for (char *tok = strtok(list, ", "); tok && n < 32; tok = strtok(NULL, ", ")) prefixes[n++] = tok;
        tpsc_status st = tpsc_param_groups_freeze(p, prefixes, n, true, NULL);
        if (st != TPSC_OK) {
            tpsc_error_context("[optim] freeze: ");
            return st;
        }
    }
    if (r->optim.name == TPSC_OPTIM_SGD) {
        tpsc_sgd_config oc = tpsc_sgd_defaults();
        oc.momentum = r->optim.momentum;
        oc.weight_decay = r->optim.weight_decay;
        oc.group_lr_scale[TPSC_GROUP_BACKBONE] = r->optim.backbone_lr_scale;
        TPSC_TRY(tpsc_sgd_init(&s->sgd, p, &oc));
    } else {
        tpsc_adamw_config oc = tpsc_adamw_defaults();
        oc.beta1 = r->optim.beta1;
        oc.beta2 = r->optim.beta2;
        oc.eps = r->optim.eps;
        oc.weight_decay = r->optim.weight_decay;
        oc.group_lr_scale[TPSC_GROUP_BACKBONE] = r->optim.backbone_lr_scale;
        TPSC_TRY(tpsc_adamw_init(&s->adamw, p, &oc));
    }
    /* The schedule counts optimiser steps. */
    int64_t spe = (int64_t)tpsc_loader_batches_per_epoch(s->train) / s->accum;
    int64_t total = spe * r->schedule.epochs;
    if (r->schedule.sched == TPSC_SCHED_CONSTANT)
        s->sched = tpsc_lr_constant(r->optim.lr);
    else
        s->sched = tpsc_lr_cosine(r->optim.lr, r->schedule.warmup_lr, r->schedule.min_lr,
                                  (int64_t)((double)spe * r->schedule.warmup_epochs + 0.5), total);
    TPSC_TRY(tpsc_lr_check(&s->sched));
    if (r->optim.ema) {
        TPSC_TRY(tpsc_ema_init(&s->ema, p, r->optim.ema_decay));
        s->use_ema = true;
    }
    s->ctx = ag_ctx_create(0);
    if (!s->ctx) return TPSC_ERR_NOMEM;
    _Static_assert(AG_FP32 == 0 && AG_BF16 == 1, "run.precision's choices follow ag_precision");
    tpsc_status pst = ag_set_precision(s->ctx, (ag_precision)r->run.precision);
    if (pst != TPSC_OK) {
        tpsc_error_context("[run] precision = %s: ", ag_precision_name((ag_precision)r->run.precision));
        return pst;
    }
    s->recipe_text = tpsc_recipe_to_ini(r);
    if (!s->recipe_text) return TPSC_ERR_NOMEM;
    s->best_top1 = -1.0f;
    if (r->run.resume[0]) TPSC_TRY(resume(s, r->run.resume));
    TPSC_TRY(sync_ranks(s));
    TPSC_TRY(dist_grad_sync_init(&s->sync, p, (size_t)((double)r->run.bucket_mb * 1048576.0), r->run.overlap_allreduce));
    if (dist_rank() != 0) return TPSC_OK; /* rank 0 alone writes metrics.jsonl and checkpoints */

    char mpath[sizeof s->dir + 32];
    snprintf(mpath, sizeof mpath, "%s/metrics.jsonl", s->dir);
    /* A resumed run appends: its lines continue the earlier ones. */
    s->metrics = fopen(mpath, r->run.resume[0] ? "a" : "w");
    if (!s->metrics) return tpsc_fail(TPSC_ERR_IO, "cannot write %s: %s", mpath, strerror(errno));
    snprintf(s->metrics_path, sizeof s->metrics_path, "%s", mpath);
    if (fseek(s->metrics, 0, SEEK_END) != 0 || (s->metrics_good = ftell(s->metrics)) < 0)
        return tpsc_fail(TPSC_ERR_IO, "%s: cannot find its end: %s", mpath, strerror(errno));
    return TPSC_OK;
}

/* Writes out what metrics.jsonl holds buffered and checks it reached the file. When the write
 * fails (a full disk, an I/O error) the file is cut back to its last complete line and closed,
 * so it never ends in half a line, and the run stops with a message naming it. */
static tpsc_status flush_metrics(run_state *s) {
    long end = ftell(s->metrics);
    int err = end < 0 ? errno : tpsc_io_fault_write(s->metrics_path, (size_t)(end - s->metrics_good));
    errno = 0;
    if (!err && (fflush(s->metrics) != 0 || ferror(s->metrics))) err = errno ? errno : EIO;
    if (!err) {
        s->metrics_good = end;
        return TPSC_OK;
    }
    __fpurge(s->metrics); /* drop the unwritten rest, or fclose would try it again */
    bool cut = ftruncate(fileno(s->metrics), s->metrics_good) == 0;
    fclose(s->metrics);
    s->metrics = NULL;
    return tpsc_fail(TPSC_ERR_IO, "%s: writing failed at step %lld: %s%s", s->metrics_path, (long long)s->step,
                     strerror(err), cut ? " (cut back to its last whole line)" : "");
}

/* The loss parts and kept-token fractions of an optimiser step, averaged over its micro-batches
 * and (for the log) over the ranks. */
enum { V_LOSS, V_CE, V_RATIO, V_CLS_KL, V_TOKEN_KL, V_GUIDE, V_CHAN_RATIO, V_KEPT, V_COUNT = V_KEPT + TOK_MAX_STAGES };
typedef struct step_values {
    double v[V_COUNT];
    bool has_ratio, has_kd, has_guide, has_chan_ratio;
} step_values;

static double value(const ag_tensor *t) { return t ? (double)t->data[0] : 0.0; }

/* Forward and backward of micro-batch a (0 <= a < accum) of the optimiser step: the loss is
 * scaled by 1/accum so the gradients add up to those of one batch accum times larger. The last
 * micro-batch's gradients are averaged over the ranks, overlapped with its backward. */
static tpsc_status micro_step(run_state *s, const tpsc_batch *b, int a, step_values *sv) {
    ag_ctx *ctx = s->ctx;
    ag_ctx_reset(ctx);
    ag_set_grad_enabled(ctx, true);
    size_t ishape[4] = {b->count, b->channels, b->height, b->width};
    size_t tshape[2] = {b->count, b->num_classes};
    ag_tensor *x = ag_wrap(ctx, b->images, NULL, 4, ishape, false);
    ag_tensor *t = ag_wrap(ctx, b->targets, NULL, 2, tshape, false);
    /* Gumbel noise keyed by (seed, micro-batch, rank): a resumed run draws exactly what it would
     * have, and each rank its own noise. */
    tpsc_rng noise = tpsc_rng_keyed((uint64_t)s->r->run.seed, 0x67756d62 /* "gumb" */,
                                    (uint64_t)(s->step * s->accum + a), (uint64_t)dist_rank());
    vit_forward_opts fo = {.mode = VIT_TRAIN, .rng = &noise};
    vit_output out, tout;
    if (!vit_forward(ctx, &s->model, x, &fo, &out)) return ag_ctx_status(ctx);
    const vit_output *teacher = NULL;
    if (s->has_teacher) {
        ag_set_grad_enabled(ctx, false);
        vit_forward_opts to = {.mode = VIT_TRAIN};
        if (s->loss.guide_weight > 0 && tok_method_has_predictor(s->model.tps.method)) {
            /* the guide ranks tokens by the teacher's attention in the block each stage precedes */
            to.n_probe = s->model.tps.n_stages;
            for (int i = 0; i < to.n_probe; i++) to.probe_blocks[i] = s->model.tps.prune_loc[i];
        }
        if (!vit_forward(ctx, &s->teacher, x, &to, &tout)) return ag_ctx_status(ctx);
        ag_set_grad_enabled(ctx, true);
        teacher = &tout;
    }
    objective_parts parts;
    TPSC_TRY(objective_compute(ctx, &s->model.tps, &s->loss, &out, t, teacher, &parts));
    if (!isfinite(parts.total->data[0]))
        return tpsc_fail(TPSC_ERR_NUMERIC, "step %lld: the loss is %g (ce %g)", (long long)s->step, parts.total->data[0],
                         parts.ce ? parts.ce->data[0] : NAN);
    const double w = 1.0 / s->accum;
    const ag_tensor *pv[V_KEPT] = {parts.total,    parts.ce,    parts.ratio,     parts.cls_kl,
                                   parts.token_kl, parts.guide, parts.chan_ratio};
    for (int i = 0; i < V_KEPT; i++) sv->v[i] += w * value(pv[i]);
    sv->has_ratio = parts.ratio != NULL;
    sv->has_kd = parts.cls_kl || parts.token_kl;
    sv->has_guide = parts.guide != NULL;
    sv->has_chan_ratio = parts.chan_ratio != NULL;
    for (int st = 0; st < out.n_stages; st++) {
        if (!out.keep[st]) continue;
        size_t n = ag_numel(out.keep[st]);
        double sum = 0;
        for (size_t i = 0; i < n; i++) sum += out.keep[st]->data[i];
        sv->v[V_KEPT + st] += w * sum / (double)n;
    }
    ag_params *p = &s->model.params;
    if (a == 0) ag_params_zero_grad(p);
    const bool last = a == s->accum - 1;
    if (last) dist_grad_sync_arm(&s->sync, ctx);
    const float seed = 1.0f / (float)s->accum;
    TPSC_TRY(ag_backward_from(ctx, parts.total, &seed));
    if (last) TPSC_TRY(dist_grad_sync_finish(&s->sync, ctx));
    return TPSC_OK;
}

/* Clip, update, EMA: the optimiser step once the gradients of all micro-batches (and ranks)
 * are in. */
static tpsc_status optimiser_step(run_state *s, double lr, double *grad_norm) {
    ag_params *p = &s->model.params;
    tpsc_status st = tpsc_clip_grad_norm(p, s->r->optim.clip_grad, grad_norm);
    if (st != TPSC_OK) {
        tpsc_error_context("step %lld: ", (long long)s->step);
        return st;
    }
    if (s->r->optim.name == TPSC_OPTIM_SGD)
        TPSC_TRY(tpsc_sgd_step(&s->sgd, p, lr));
    else
        TPSC_TRY(tpsc_adamw_step(&s->adamw, p, lr));
    if (s->use_ema) TPSC_TRY(tpsc_ema_update(&s->ema, p));
    return TPSC_OK;
}

static tpsc_status log_step(run_state *s, int64_t epoch, const step_values *sv, double lr, double gnorm, double img_s,
                            int n_stages) {
    if (!s->metrics) return TPSC_OK;
    const double *v = sv->v;
    fprintf(s->metrics,
            "{\"step\": %lld, \"epoch\": %lld, \"loss\": %.6g, \"ce\": %.6g, \"ratio\": %.6g, \"cls_kl\": %.6g, "
            "\"token_kl\": %.6g, \"guide\": %.6g, \"chan_ratio\": %.6g, \"lr\": %.6g, \"grad_norm\": %.6g, "
            "\"images_per_s\": %.1f, ",
            (long long)s->step, (long long)epoch, v[V_LOSS], v[V_CE], v[V_RATIO], v[V_CLS_KL], v[V_TOKEN_KL], v[V_GUIDE],
            v[V_CHAN_RATIO], lr, gnorm, img_s);
    if (dist_active())
        fprintf(s->metrics, "\"ranks\": %d, \"allreduce_exposed_ms\": %.3f, \"allreduce_inflight_ms\": %.3f, ",
                dist_size(), 1e3 * s->sync.exposed_s, 1e3 * s->sync.inflight_s);
    fprintf(s->metrics, "\"kept\": [");
    for (int i = 0; i < n_stages; i++) fprintf(s->metrics, "%s%.4f", i ? ", " : "", v[V_KEPT + i]);
    fprintf(s->metrics, "]}\n");
    /* Flush with the progress line, so a killed run's metrics.jsonl is complete to there. */
    if (s->r->run.log_every > 0 && s->step % s->r->run.log_every == 0) return flush_metrics(s);
    return TPSC_OK;
}

static tpsc_status evaluate_and_save(run_state *s, tpsc_eval_result *ev, bool save) {
    /* Evaluate the EMA weights when EMA is on: they are what gets exported. */
    if (s->use_ema) TPSC_TRY(tpsc_ema_swap(&s->ema, &s->model.params));
    tpsc_status st = tpsc_evaluate_pass(&s->model, s->val, s->ctx, NULL, ev);
    if (s->use_ema) {
        tpsc_status st2 = tpsc_ema_swap(&s->ema, &s->model.params);
        if (st == TPSC_OK) st = st2;
    }
    TPSC_TRY(st);
    TPSC_TRY(tpsc_eval_reduce_ranks(ev));
    TPSC_TRY(tpsc_eval_finish(ev, &s->model));
    /* A rank whose weights drifted (a bug, a flipped bit) is caught here, not after the run. */
    if (dist_active()) {
        char what[96];
        snprintf(what, sizeof what, "weights or optimiser state after step %lld", (long long)s->step);
        TPSC_TRY(dist_check_same(state_checksum(s), what));
    }
    bool best = ev->top1 > s->best_top1;
    if (best) s->best_top1 = (float)ev->top1;
    if (!s->metrics) return TPSC_OK; /* not rank 0 */
    fprintf(s->metrics,
            "{\"eval\": true, \"step\": %lld, \"epoch\": %lld, \"top1\": %.4f, \"top5\": %.4f, \"gmacs\": %.6f, "
            "\"images_per_s\": %.1f}\n",
            (long long)s->step, (long long)s->epoch, ev->top1, ev->top5, ev->gmacs, ev->images_per_s);
    TPSC_TRY(flush_metrics(s));
    if (save) {
        TPSC_TRY(save_checkpoint(s, "last.h5"));
        if (best) TPSC_TRY(save_checkpoint(s, "best.h5"));
    }
    return TPSC_OK;
}

/* At a step boundary: when a stop was requested (on any rank), rank 0 writes last.h5 (unless
 * this step just did) and the run returns TPSC_ERR_INTERRUPTED; it resumes from there
 * bit-exactly, as from any checkpoint. */
static tpsc_status stop_if_requested(run_state *s, tpsc_progress *prog, bool saved) {
    int sig = tpsc_train_stop_signal();
    if (dist_active()) {
        double v = sig;
        TPSC_TRY(dist_max_doubles(&v, 1));
        sig = (int)v;
    }
    if (sig == 0) return TPSC_OK;
    tpsc_progress_break(prog);
    if (s->metrics) TPSC_TRY(flush_metrics(s));
    if (!saved && dist_rank() == 0) TPSC_TRY(save_checkpoint(s, "last.h5"));
    return tpsc_fail(TPSC_ERR_INTERRUPTED, "signal %d: stopped after step %lld; %s/last.h5 resumes the run", sig,
                     (long long)s->step, s->dir);
}

static tpsc_status train_loop(run_state *s, tpsc_train_result *res) {
    const tpsc_recipe *r = s->r;
    const int A = s->accum;
    /* Micro-batches of an epoch past its last whole optimiser step are skipped, as drop_last
     * skips a last partial batch. */
    const int64_t mpe = (int64_t)tpsc_loader_batches_per_epoch(s->train);
    const int64_t spe = mpe / A;
    const int64_t total = spe * r->schedule.epochs;
    const int64_t limit = r->schedule.max_steps > 0 && r->schedule.max_steps < total ? r->schedule.max_steps : total;
    const bool rank0 = dist_rank() == 0;
    tpsc_progress prog;
    tpsc_progress_init(&prog, rank0 ? stderr : NULL, r->run.log_every, s->step, limit);
    prog.ranks = dist_size();
    double t_start = tpsc_now();
    tpsc_eval_result ev = {0};
    bool evaluated = false;
    while (s->step < limit) {
        double lr = tpsc_lr_at(&s->sched, s->step);
        step_values sv;
        memset(&sv, 0, sizeof sv);
        double gnorm = 0;
        size_t count = 0;
        int64_t in_epoch = 0;
        double t0 = tpsc_now();
        for (int a = 0; a < A;) {
            tpsc_batch b;
            TPSC_TRY(tpsc_loader_next(s->train, &b));
            if (b.count == 0) continue; /* end of an epoch: the loader has moved to the next one */
            if (a == 0) s->epoch = b.epoch;
            in_epoch = b.batch_index / A + 1;
            tpsc_status st = micro_step(s, &b, a, &sv);
            count += b.count;
            tpsc_loader_release(s->train, &b);
            if (st == TPSC_OK && a == A - 1) st = optimiser_step(s, lr, &gnorm);
            if (st != TPSC_OK) {
                tpsc_progress_break(&prog);
                tpsc_error_context("epoch %lld: ", (long long)s->epoch + 1);
                if (st == TPSC_ERR_NUMERIC)
                    tpsc_error_context("training stopped, %s/last.h5 keeps the last good state: ", s->dir);
                return st;
            }
            a++;
        }
        if (dist_active()) {
            TPSC_TRY(dist_sum_doubles(sv.v, V_COUNT));
            for (int i = 0; i < V_COUNT; i++) sv.v[i] /= dist_size();
        }
        double img_s = (double)count * dist_size() / (tpsc_now() - t0);
        s->step++;
        TPSC_TRY(log_step(s, s->epoch, &sv, lr, gnorm, img_s, s->model.tps.method == TOK_NONE ? 0 : s->model.tps.n_stages));
        char parts[160];
        const double *v = sv.v;
        int n = snprintf(parts, sizeof parts, "loss %.4f", v[V_LOSS]);
        if (sv.has_ratio) n += snprintf(parts + n, sizeof parts - (size_t)n, " (ce %.3f ratio %.4f", v[V_CE], v[V_RATIO]);
        if (sv.has_ratio && sv.has_kd)
            n += snprintf(parts + n, sizeof parts - (size_t)n, " kd %.3f", v[V_CLS_KL] + v[V_TOKEN_KL]);
        if (sv.has_ratio && sv.has_guide) n += snprintf(parts + n, sizeof parts - (size_t)n, " guide %.3f", v[V_GUIDE]);
        if (sv.has_ratio) n += snprintf(parts + n, sizeof parts - (size_t)n, ")");
        if (sv.has_chan_ratio) snprintf(parts + n, sizeof parts - (size_t)n, " (chan ratio %.4f)", v[V_CHAN_RATIO]);
        tpsc_progress_step(&prog, (int)s->epoch, r->schedule.epochs, in_epoch, spe, s->step, parts, lr, img_s);

        bool epoch_end = in_epoch == spe;
        bool last = s->step == limit;
        if (epoch_end) {
            tpsc_skip_report skip;
            tpsc_loader_skip_report(s->train, &skip);
            if (rank0 && (skip.epoch_skipped || skip.last_epoch_skipped))
                TPSC_WARN("epoch %lld: skipped %zu unreadable images (first: %s)", (long long)s->epoch + 1,
                          skip.epoch_skipped ? skip.epoch_skipped : skip.last_epoch_skipped, skip.n_names ? skip.names[0] : "?");
            if (mpe % A) TPSC_TRY(tpsc_loader_seek(s->train, (tpsc_data_position){s->epoch + 1, 0}));
        }
        bool eval_now = last || (epoch_end && r->run.eval_every > 0 && (s->epoch + 1) % r->run.eval_every == 0);
        bool save_now = last || (epoch_end && r->run.save_every > 0 && (s->epoch + 1) % r->run.save_every == 0);
        /* A checkpoint written now resumes at the next epoch. */
        if (epoch_end) s->epoch++;
        if (eval_now) {
            tpsc_progress_break(&prog);
            TPSC_TRY(evaluate_and_save(s, &ev, save_now));
            evaluated = true;
            char kept_s[128] = "";
            int m = 0;
            for (int k = 0; k < ev.n_stages; k++)
                m += snprintf(kept_s + m, sizeof kept_s - (size_t)m, "%s%.1f", k ? "/" : "  tokens ", ev.mean_kept[k]);
            if (rank0)
                fprintf(stderr, "eval after epoch %lld (step %lld): top-1 %.2f%%  top-5 %.2f%%  %.4f GMACs/img  %.0f img/s%s\n",
                        (long long)s->epoch, (long long)s->step, ev.top1, ev.top5, ev.gmacs, ev.images_per_s, kept_s);
        } else if (save_now && rank0) {
            TPSC_TRY(save_checkpoint(s, "last.h5"));
        }
        if (!last) TPSC_TRY(stop_if_requested(s, &prog, save_now));
    }
    if (!evaluated) TPSC_TRY(evaluate_and_save(s, &ev, true));
    if (s->metrics) TPSC_TRY(flush_metrics(s));
    res->last_eval = ev;
    res->best_top1 = s->best_top1;
    res->train_seconds = tpsc_now() - t_start;
    res->steps = s->step;
    snprintf(res->run_dir, sizeof res->run_dir, "%s", s->dir);
    return TPSC_OK;
}

tpsc_status tpsc_train_run(const tpsc_recipe *r, tpsc_train_result *res) {
    memset(res, 0, sizeof *res);
    run_state s;
    memset(&s, 0, sizeof s);
    tpsc_status st = setup(&s, r);
    if (st == TPSC_OK) {
        char ranks[48] = "";
        if (dist_active()) snprintf(ranks, sizeof ranks, " x %d MPI ranks", dist_size());
        TPSC_INFO("run %s: %s, %zu parameters (%zu in predictors), %zu train / %zu val images, %zu steps/epoch, %d "
                  "threads%s, OpenBLAS core %s, precision %s",
                  s.dir, tok_method_name(s.model.tps.method), vit_model_num_params(&s.model, false),
                  vit_model_num_params(&s.model, false) - vit_model_num_params(&s.model, true),
                  tpsc_loader_dataset_size(s.train), tpsc_loader_dataset_size(s.val),
                  tpsc_loader_batches_per_epoch(s.train) / (size_t)s.accum, ag_get_threads(), ranks,
                  ag_blas_corename(), ag_precision_name(s.ctx->precision));
        st = train_loop(&s, res);
    }
    run_free(&s);
    return st;
}
