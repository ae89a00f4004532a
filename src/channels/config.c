/* The channel-gate configuration: names, validation, kept counts, the gate parameters. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "src/channels/channels.h"

static const char *const suffixes[CHAN_KINDS] = {"attn.qk_gate", "attn.v_gate", "mlp.fc1_gate"};
static const char *const keys[CHAN_KINDS] = {"cdcp.keep_qk", "cdcp.keep_v", "cdcp.keep_mlp"};

const char *chan_key_name(chan_gate_kind k) { return (unsigned)k < CHAN_KINDS ? keys[k] : "?"; }

bool chan_enabled(const chan_config *cfg) {
    if (!cfg) return false;
    for (int i = 0; i < cfg->n_blocks; i++)
        for (int k = 0; k < CHAN_KINDS; k++)
            if (chan_gated(cfg, i, (chan_gate_kind)k)) return true;
    return false;
}

bool chan_gated(const chan_config *cfg, int block, chan_gate_kind k) {
    return cfg && block >= 0 && block < cfg->n_blocks && (unsigned)k < CHAN_KINDS && cfg->keep[k][block] < 1.0f;
}

/* The double a decimal literal of up to 9 significant digits gives, for the float parsed from it. */
static double decimal_of_float(float f) {
    char buf[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, (double)f);
        double d = strtod(buf, NULL);
        if ((float)d == f) return d;
    }
    return (double)f;
}

size_t chan_keep_count(const chan_config *cfg, int block, chan_gate_kind k, size_t width) {
    if (!chan_gated(cfg, block, k)) return width;
    const double f = decimal_of_float(cfg->keep[k][block]);
    if (!(f > 0.0)) return 0;
    size_t n = (size_t)floor((double)width * f);
    return n > width ? width : n;
}

tpsc_status chan_config_validate(const chan_config *cfg, int depth, size_t D, size_t F) {
    if (!cfg || cfg->n_blocks == 0) return TPSC_OK;
    if (cfg->n_blocks != depth)
        return tpsc_fail(TPSC_ERR_CONFIG, "cdcp: the gate table has %d blocks but the model has %d", cfg->n_blocks, depth);
    if (depth > CHAN_MAX_BLOCKS)
        return tpsc_fail(TPSC_ERR_CONFIG, "cdcp: at most %d blocks can be gated, the model has %d", CHAN_MAX_BLOCKS, depth);
    for (int k = 0; k < CHAN_KINDS; k++) {
        const size_t width = k == CHAN_MLP ? F : D;
        for (int i = 0; i < depth; i++) {
            const float f = cfg->keep[k][i];
            if (!(f > 0.0f && f <= 1.0f))
                return tpsc_fail(TPSC_ERR_CONFIG, "%s: %g (block %d) is outside (0, 1]", keys[k], (double)f, i);
            if (chan_keep_count(cfg, i, (chan_gate_kind)k, width) == 0)
                return tpsc_fail(TPSC_ERR_CONFIG,
                                 "%s: %g keeps floor(%zu * %g) = 0 of the %zu channels in block %d; the smallest "
                                 "ratio keeping one is %g",
                                 keys[k], (double)f, width, (double)f, width, i, 1.0 / (double)width);
        }
    }
    if (chan_enabled(cfg) && !(cfg->gate_temp > 0.0f && isfinite(cfg->gate_temp)))
        return tpsc_fail(TPSC_ERR_CONFIG, "cdcp.gate_temp: %g must be a finite number > 0", (double)cfg->gate_temp);
    if (chan_enabled(cfg) && !isfinite(cfg->gate_init))
        return tpsc_fail(TPSC_ERR_CONFIG, "cdcp.gate_init: %g must be finite", (double)cfg->gate_init);
    return TPSC_OK;
}

tpsc_status chan_gates_declare(chan_gates *g, ag_params *p, const chan_config *cfg, int block, size_t D, size_t F) {
    char name[AG_PARAM_NAME_MAX];
    for (int k = 0; k < CHAN_KINDS; k++) {
        g->gate[k] = -1;
        if (!chan_gated(cfg, block, (chan_gate_kind)k)) continue;
        snprintf(name, sizeof name, "blocks.%d.%s", block, suffixes[k]);
        size_t shape[1] = {k == CHAN_MLP ? F : D};
        g->gate[k] = ag_params_add(p, name, 1, shape);
        if (g->gate[k] < 0) return TPSC_ERR_ARG;
        p->items[g->gate[k]].no_decay = true;
    }
    return TPSC_OK;
}

void chan_gates_init(const chan_gates *g, ag_params *p, const chan_config *cfg) {
    for (int k = 0; k < CHAN_KINDS; k++) {
        if (g->gate[k] < 0) continue;
        ag_param *it = &p->items[g->gate[k]];
        for (size_t i = 0; i < it->numel; i++) it->t.data[i] = cfg->gate_init;
    }
}
