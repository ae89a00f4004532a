/* TPS configuration: method names, validation, and the per-stage token counts.
 *
 * Token counts must equal the official Python ones bit for bit, or the C model and the
 * PyTorch reference prune different numbers of tokens. Python computes them in double from
 * the decimal the user wrote: DynamicVit.keep_ratio_list = [rho ** (s+1)] and
 * num_keep_node = int(N * ratio) (TPS-CVPR2023 torch_codebase/models/dynamic_vit.py), EViT
 * left_tokens = math.ceil(keep_rate * n) (youweiliang/evit evit.py, Attention.forward).
 * keep_frac is stored as float, and float rounding moves these results by one: 0.7f * 10 is
 * 6.9999999 (Python: 7.0), powf(0.7f, 2) * 100 is 49.000001 (Python: 48.99999999999999).
 * So the counts go back to the double Python would have: the float's shortest decimal
 * ("0.7"), and, when the fractions are that decimal compounded, pow(rho, s + 1) in double
 * exactly as Python's float ** does (it calls the C library's pow). */
#include <ctype.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/tokens/tokens.h"

static const char *const method_names[] = {"none", "dynamicvit", "dtps", "evit", "etps", "tome", "atme"};
#define N_METHODS ((int)(sizeof method_names / sizeof method_names[0]))

int tok_method_from_name(const char *name) {
    if (!name) return -1;
    for (int m = 0; m < N_METHODS; m++) {
        const char *a = name, *b = method_names[m];
        while (*a && *b && tolower((unsigned char)*a) == *b) a++, b++;
        if (!*a && !*b) return m;
    }
    return -1;
}

const char *tok_method_name(tok_method m) {
    return (m >= 0 && (int)m < N_METHODS) ? method_names[m] : "unknown";
}

bool tok_method_has_predictor(tok_method m) { return m == TOK_DYNAMICVIT || m == TOK_DTPS; }
bool tok_method_squeezes(tok_method m) { return m == TOK_DTPS || m == TOK_ETPS; }
bool tok_method_merges(tok_method m) { return m == TOK_TOME || m == TOK_ATME; }

/* The double a decimal literal of up to 9 significant digits would give, for the float that
 * literal was parsed into: the shortest "%.*g" that reads back as f. */
static double decimal_of_float(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

/* True when keep_frac[s] is rho^(s+1) for rho = keep_frac[0] at every stage, up to the
 * float rounding of whoever compounded it (powf, repeated float products or a double pow). */
static bool fractions_compound(const tok_config *cfg, double rho) {
    for (int s = 0; s < cfg->n_stages; s++) {
        double want = pow(rho, s + 1), got = (double)cfg->keep_frac[s];
        if (fabs(got - want) > 4.0 * (double)FLT_EPSILON * want) return false;
    }
    return true;
}

/* The cumulative keep fraction of stage s as the double Python uses. */
static double stage_fraction(const tok_config *cfg, int s) {
    double rho = decimal_of_float(cfg->keep_frac[0]);
    if (fractions_compound(cfg, rho)) return pow(rho, s + 1);
    return decimal_of_float(cfg->keep_frac[s]);
}

/* EViT's per-stage rate: what fraction of the current tokens stage s keeps. */
static double stage_rate(const tok_config *cfg, int s) {
    double rho = decimal_of_float(cfg->keep_frac[0]);
    if (s == 0 || fractions_compound(cfg, rho)) return rho;
    return decimal_of_float(cfg->keep_frac[s]) / decimal_of_float(cfg->keep_frac[s - 1]);
}

void tok_config_fill_rho(tok_config *cfg, float rho) {
    double r = decimal_of_float(rho);
    for (int s = 0; s < cfg->n_stages && s < TOK_MAX_STAGES; s++) cfg->keep_frac[s] = (float)pow(r, s + 1);
}

tpsc_status tok_config_validate(const tok_config *cfg, int depth) {
    if (!cfg) return tpsc_fail(TPSC_ERR_ARG, "tps config: NULL");
    if ((int)cfg->method < 0 || (int)cfg->method >= N_METHODS)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.method: %d is not a method (none, dynamicvit, dtps, evit, etps, tome, atme)",
                         (int)cfg->method);
    if (cfg->n_stages < 0 || cfg->n_stages > TOK_MAX_STAGES)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: %d stages, at most %d are supported", cfg->n_stages,
                         TOK_MAX_STAGES);
    if (cfg->method == TOK_NONE) return TPSC_OK;
    if (cfg->method == TOK_TOME) {
        if (cfg->tome_r < 0) return tpsc_fail(TPSC_ERR_CONFIG, "tps.tome_r: %d must be >= 0", cfg->tome_r);
        if (!(cfg->tome_inflect >= -1.0f && cfg->tome_inflect <= 1.0f))
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.tome_inflect: %g is outside [-1, 1]", (double)cfg->tome_inflect);
        return TPSC_OK; /* ToMe merges in every block; prune_loc and keep_ratio do not apply */
    }
    if (cfg->n_stages == 0)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: method %s needs at least one pruning location",
                         tok_method_name(cfg->method));
    if (depth < 2)
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: depth %d leaves no block to prune at (need depth >= 2)",
                         depth);
    for (int s = 0; s < cfg->n_stages; s++) {
        int loc = cfg->prune_loc[s];
        if (loc < 1 || loc >= depth)
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: %d is out of range for depth %d (valid 1..%d)", loc,
                             depth, depth - 1);
        if (s > 0 && loc <= cfg->prune_loc[s - 1])
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.prune_loc: %d follows %d; locations must strictly increase", loc,
                             cfg->prune_loc[s - 1]);
        float f = cfg->keep_frac[s];
        if (!(f > 0.0f && f <= 1.0f))
            return tpsc_fail(TPSC_ERR_CONFIG, "tps.keep_ratio: %g is outside (0, 1] (stage %d)", (double)f, s + 1);
        if (s > 0 && f > cfg->keep_frac[s - 1])
            return tpsc_fail(TPSC_ERR_CONFIG,
                             "tps.keep_ratio: stage %d keeps %g of the tokens, more than stage %d (%g); the "
                             "cumulative fractions must not increase",
                             s + 1, (double)f, s, (double)cfg->keep_frac[s - 1]);
    }
    if (tok_method_squeezes(cfg->method) && !(cfg->squeeze_temp > 0.0f && isfinite(cfg->squeeze_temp)))
        return tpsc_fail(TPSC_ERR_CONFIG, "tps.squeeze_temp: %g must be a finite number > 0",
                         (double)cfg->squeeze_temp);
    return TPSC_OK;
}

size_t tok_keep_count(const tok_config *cfg, int stage, size_t n_patches) {
    if (!cfg || stage < 0 || stage >= cfg->n_stages) return n_patches;
    /* Python: int(init_n * ratio), a truncation of a positive double. */
    size_t k = (size_t)floor((double)n_patches * stage_fraction(cfg, stage));
    if (k < 1) k = 1;
    return k > n_patches ? n_patches : k;
}

size_t tok_evit_keep_count(const tok_config *cfg, int stage, size_t n) {
    if (!cfg || stage < 0 || stage >= cfg->n_stages || n == 0) return n;
    /* Python: math.ceil(keep_rate * (N - 1)), N - 1 the current spatial tokens. */
    size_t k = (size_t)ceil((double)n * stage_rate(cfg, stage));
    if (k < 1) k = 1;
    return k > n ? n : k;
}
