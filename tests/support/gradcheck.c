#include "support/gradcheck.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "src/util/rng.h"

typedef struct gc_state {
    gc_fn f;
    int n_in;
    const gc_input *inputs;
    void *user;
    float *data[8];
    float *grad[8];
    float *weights; /* R, sized on the first forward */
    size_t out_numel;
} gc_state;

static ag_tensor *run_forward(ag_ctx *ctx, gc_state *st, bool with_grad) {
    ag_ctx_reset(ctx);
    ag_set_grad_enabled(ctx, with_grad);
    ag_tensor *in[8];
    for (int i = 0; i < st->n_in; i++) {
        const gc_input *gi = &st->inputs[i];
        in[i] = ag_wrap(ctx, st->data[i], with_grad && gi->requires_grad ? st->grad[i] : NULL, gi->ndim, gi->shape,
                        with_grad && gi->requires_grad);
    }
    return st->f(ctx, in, st->user);
}

static double project(const gc_state *st, const ag_tensor *out) {
    double s = 0.0;
    for (size_t i = 0; i < st->out_numel; i++) s += (double)out->data[i] * (double)st->weights[i];
    return s;
}

bool gradcheck(gc_fn f, int n_in, const gc_input *inputs, void *user, double h, double atol, double rtol, unsigned seed,
               gc_report *rep) {
    memset(rep, 0, sizeof *rep);
    if (n_in > 8) return false;
    gc_state st = {.f = f, .n_in = n_in, .inputs = inputs, .user = user};
    tpsc_rng rng;
    tpsc_rng_seed(&rng, seed);
    bool ok = true;
    ag_ctx *ctx = ag_ctx_create(0);
    if (!ctx) return false;
    for (int i = 0; i < n_in; i++) {
        size_t n = 1;
        for (int d = 0; d < inputs[i].ndim; d++) n *= inputs[i].shape[d];
        st.data[i] = malloc(n * sizeof(float));
        st.grad[i] = calloc(n, sizeof(float));
        for (size_t k = 0; k < n; k++) st.data[i][k] = inputs[i].data ? inputs[i].data[k] : tpsc_rng_normal(&rng);
    }
    ag_tensor *out = run_forward(ctx, &st, true);
    if (!out) {
        ok = false;
        goto done;
    }
    st.out_numel = ag_numel(out);
    st.weights = malloc(st.out_numel * sizeof(float));
    for (size_t k = 0; k < st.out_numel; k++) st.weights[k] = tpsc_rng_normal(&rng);
    if (ag_backward_from(ctx, out, st.weights) != TPSC_OK) {
        ok = false;
        goto done;
    }
    for (int i = 0; i < n_in; i++) {
        if (!inputs[i].requires_grad) continue;
        size_t n = 1;
        for (int d = 0; d < inputs[i].ndim; d++) n *= inputs[i].shape[d];
        for (size_t k = 0; k < n; k++) {
            float saved = st.data[i][k];
            st.data[i][k] = (float)(saved + h);
            /* The float32 rounding of x+h is the step actually taken. */
            double step_up = (double)st.data[i][k] - saved;
            ag_tensor *o1 = run_forward(ctx, &st, false);
            double l1 = o1 ? project(&st, o1) : NAN;
            st.data[i][k] = (float)(saved - h);
            double step_down = saved - (double)st.data[i][k];
            ag_tensor *o2 = run_forward(ctx, &st, false);
            double l2 = o2 ? project(&st, o2) : NAN;
            st.data[i][k] = saved;
            double numeric = (l1 - l2) / (step_up + step_down);
            double analytic = st.grad[i][k];
            double ratio = fabs(analytic - numeric) / (atol + rtol * fabs(numeric));
            if (!(ratio <= 1.0)) ok = false;
            if (isnan(ratio) || ratio > rep->worst_ratio || rep->checked == 0) {
                rep->worst_ratio = isnan(ratio) ? INFINITY : ratio;
                rep->analytic = analytic;
                rep->numeric = numeric;
                rep->input = i;
                rep->index = k;
            }
            rep->checked++;
        }
    }
done:
    for (int i = 0; i < n_in; i++) {
        free(st.data[i]);
        free(st.grad[i]);
    }
    free(st.weights);
    ag_ctx_free(ctx);
    return ok;
}
