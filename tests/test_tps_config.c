/* TPS configuration: method names, validation messages, and per-stage token counts that must
 * equal the official Python's (references: values printed by python3 for the expressions in
 * each comment; integers, so exact). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "src/tokens/tokens.h"

static tok_config three_stages(tok_method m, float rho) {
    tok_config cfg = {.method = m, .n_stages = 3, .prune_loc = {3, 6, 9}, .squeeze_temp = 1.0f};
    tok_config_fill_rho(&cfg, rho);
    return cfg;
}

Test(tok_config, method_names_round_trip) {
    /* the names stored in files: never renamed */
    const char *names[] = {"none", "dynamicvit", "dtps", "evit", "etps", "tome", "atme", "cait"};
    cr_assert_eq(TOK_METHOD_COUNT, 8, "a new method: add its stored name here");
    for (int m = 0; m < 8; m++) {
        cr_assert_eq(tok_method_from_name(names[m]), m, "%s", names[m]);
        cr_assert_str_eq(tok_method_name((tok_method)m), names[m]);
    }
    cr_assert_eq(tok_method_from_name("dTPS"), TOK_DTPS);
    cr_assert_eq(tok_method_from_name("tps"), -1);
    cr_assert_eq(tok_method_from_name("dtpsx"), -1);
    cr_assert_eq(tok_method_from_name(""), -1);
    cr_assert_eq(tok_method_from_name(NULL), -1);
}

Test(tok_config, method_properties) {
    cr_assert(tok_method_has_predictor(TOK_DYNAMICVIT) && tok_method_has_predictor(TOK_DTPS));
    cr_assert(!tok_method_has_predictor(TOK_EVIT) && !tok_method_has_predictor(TOK_ETPS) &&
              !tok_method_has_predictor(TOK_NONE));
    cr_assert(tok_method_squeezes(TOK_DTPS) && tok_method_squeezes(TOK_ETPS));
    cr_assert(!tok_method_squeezes(TOK_DYNAMICVIT) && !tok_method_squeezes(TOK_EVIT) && !tok_method_squeezes(TOK_NONE));
}

/* One token count: stage `stage` of `n` tokens must keep `want`, the value python3 prints for
 * `python` (integers, so exact). */
typedef struct {
    int stage;
    size_t n, want;
    const char *python;
} keep_case;

#define N_CASES(a) (sizeof(a) / sizeof((a)[0]))

static void expect_counts(size_t (*count)(const tok_config *, int, size_t), const tok_config *cfg,
                          const keep_case *cases, size_t n_cases) {
    for (size_t i = 0; i < n_cases; i++) {
        const keep_case *k = &cases[i];
        size_t got = count(cfg, k->stage, k->n);
        cr_expect_eq(got, k->want, "stage %d of %zu tokens keeps %zu; %s == %zu", k->stage, k->n, got, k->python,
                     k->want);
    }
}

Test(tok_config, keep_counts_match_python) {
    tok_config cfg = three_stages(TOK_DTPS, 0.7f);
    cr_assert_eq(tok_config_validate(&cfg, 12), TPSC_OK, "%s", tpsc_last_error());
    const keep_case rho07[] = {
        {0, 196, 137, "int(196 * 0.7 ** 1)"},
        {1, 196, 96, "int(196 * 0.7 ** 2)"},
        {2, 196, 67, "int(196 * 0.7 ** 3)"},
        /* the reference fixture's 64 patches */
        {0, 64, 44, "int(64 * 0.7)"},
        {2, 64, 21, "int(64 * 0.7 ** 3)"},
        {1, 64, 31, "int(64 * 0.7 ** 2)"},
        {1, 100, 48, "int(100 * 0.7 ** 2) (0.7**2 is 0.48999999999999994)"},
        {0, 10, 7, "int(10 * 0.7) (10 * 0.7f in float is 6.9999999)"},
    };
    expect_counts(tok_keep_count, &cfg, rho07, N_CASES(rho07));
    tok_config half = three_stages(TOK_DTPS, 0.5f), nine = three_stages(TOK_DTPS, 0.9f);
    expect_counts(tok_keep_count, &half, (keep_case[]){{2, 1000, 125, "int(1000 * 0.5 ** 3)"}}, 1);
    expect_counts(tok_keep_count, &nine, (keep_case[]){{1, 30, 24, "int(30 * 0.9 ** 2)"}}, 1);
    tok_config tiny = three_stages(TOK_DTPS, 0.1f);
    expect_counts(tok_keep_count, &tiny, (keep_case[]){{2, 3, 1, "at least one token survives: int(3 * 0.1 ** 3)"}}, 1);
}

Test(tok_config, keep_counts_from_a_list) {
    /* a list that is not a compounded rho: [0.8, 0.5, 0.25] */
    tok_config cfg = {.method = TOK_DYNAMICVIT, .n_stages = 3, .prune_loc = {2, 4, 6}, .keep_frac = {0.8f, 0.5f, 0.25f}};
    cr_assert_eq(tok_config_validate(&cfg, 12), TPSC_OK, "%s", tpsc_last_error());
    const keep_case list[] = {
        {0, 196, 156, "int(196 * 0.8)"},
        {1, 196, 98, "int(196 * 0.5)"},
        {2, 196, 49, "int(196 * 0.25)"},
    };
    expect_counts(tok_keep_count, &cfg, list, N_CASES(list));
}

Test(tok_config, evit_keep_counts_match_python) {
    tok_config cfg = three_stages(TOK_EVIT, 0.7f);
    const keep_case evit[] = {
        {0, 196, 138, "math.ceil(0.7 * 196)"},
        {1, 138, 97, "math.ceil(0.7 * 138)"},
        {2, 10, 7, "math.ceil(0.7 * 10)"},
        {1, 20, 14, "math.ceil(0.7 * 20)"},
        /* the reference fixture's 64 patches (tests/reference/vit_ref.py EVitModel): evit counts
         * the fused token */
        {0, 64, 45, "evit: math.ceil(0.7 * 64)"},
        {1, 46, 33, "evit: math.ceil(0.7 * 46)"},
        {2, 34, 24, "evit: math.ceil(0.7 * 34)"},
        {1, 45, 32, "etps: math.ceil(0.7 * 45)"},
        {2, 32, 23, "etps: math.ceil(0.7 * 32)"},
    };
    expect_counts(tok_evit_keep_count, &cfg, evit, N_CASES(evit));
    tok_config one = three_stages(TOK_EVIT, 1.0f);
    expect_counts(tok_evit_keep_count, &one, (keep_case[]){{2, 37, 37, "math.ceil(1.0 * 37)"}}, 1);
}

static void expect_error(const tok_config *cfg, int depth, const char *needle) {
    cr_assert_eq(tok_config_validate(cfg, depth), TPSC_ERR_CONFIG, "expected a config error containing \"%s\"", needle);
    cr_assert(strstr(tpsc_last_error(), needle) != NULL, "message \"%s\" lacks \"%s\"", tpsc_last_error(), needle);
}

Test(tok_config, bad_configs_name_the_value) {
    tok_config cfg = three_stages(TOK_DTPS, 0.7f);
    cfg.prune_loc[2] = 12;
    expect_error(&cfg, 12, "tps.prune_loc: 12 is out of range for depth 12 (valid 1..11)");
    cfg.prune_loc[2] = 0;
    expect_error(&cfg, 12, "tps.prune_loc: 0 is out of range");
    cfg = three_stages(TOK_DTPS, 0.7f);
    cfg.prune_loc[1] = 3;
    expect_error(&cfg, 12, "tps.prune_loc: 3 follows 3");
    cfg = three_stages(TOK_DTPS, 0.7f);
    cfg.keep_frac[0] = 1.5f;
    expect_error(&cfg, 12, "tps.keep_ratio: 1.5 is outside (0, 1]");
    cfg.keep_frac[0] = 0.0f;
    expect_error(&cfg, 12, "tps.keep_ratio: 0 is outside (0, 1]");
    cfg = three_stages(TOK_DTPS, 0.7f);
    cfg.keep_frac[2] = 0.6f;
    expect_error(&cfg, 12, "stage 3 keeps 0.6");
    cfg = three_stages(TOK_DTPS, 0.7f);
    cfg.n_stages = TOK_MAX_STAGES + 1;
    expect_error(&cfg, 12, "tps.prune_loc: 9 stages");
    cfg.n_stages = 0;
    expect_error(&cfg, 12, "needs at least one pruning location");
    cfg = three_stages(TOK_ETPS, 0.7f);
    cfg.squeeze_temp = 0.0f;
    expect_error(&cfg, 12, "tps.squeeze_temp");
    cfg.method = (tok_method)TOK_METHOD_COUNT;
    char not_a_method[32];
    snprintf(not_a_method, sizeof not_a_method, "tps.method: %d", (int)TOK_METHOD_COUNT);
    expect_error(&cfg, 12, not_a_method);
}

Test(tok_config, dense_needs_no_stages) {
    tok_config cfg = {.method = TOK_NONE};
    cr_assert_eq(tok_config_validate(&cfg, 12), TPSC_OK, "%s", tpsc_last_error());
    /* the temperature only matters when squeezing */
    tok_config dyn = three_stages(TOK_DYNAMICVIT, 0.7f);
    dyn.squeeze_temp = 0.0f;
    cr_assert_eq(tok_config_validate(&dyn, 12), TPSC_OK, "%s", tpsc_last_error());
}
