/* One reference run of a PyTorch fixture (tests/fixtures/NAME.h5): the model built from the
 * fixture's config with /model loaded, and its inputs (/input/images [B,Cin,H,W],
 * /input/targets [B,K] where present, /input/gumbel_u_s<s> [B,N,2] where present) as tensors
 * of one context. Test-only: any failure is a Criterion assertion. */
#ifndef TPSC_TESTS_FIXTURE_RUN_H
#define TPSC_TESTS_FIXTURE_RUN_H

#include "support/fixture.h"

typedef struct fx_run {
    fixture fx;
    vit_config cfg;
    vit_model m;
    float *images, *targets, *u[TOK_MAX_STAGES];
    size_t img_shape[4], t_shape[2];
    ag_ctx *ctx;
    ag_tensor *x, *t; /* images; targets (NULL when the fixture has none) */
} fx_run;

/* Opens tests/fixtures/<file> and reads its config and inputs; then fx_run_model. */
void fx_run_open(fx_run *r, const char *file);
/* Creates r->m with the token config tps and loads /model into it. */
void fx_run_model(fx_run *r, const tok_config *tps);
void fx_run_close(fx_run *r);
/* vit_forward of r->x in mode with the fixture's Gumbel noise; asserts it succeeds. */
ag_tensor *fx_run_forward(fx_run *r, vit_mode mode, vit_output *out);

#endif
