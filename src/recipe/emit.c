/* A recipe going out: INI text for checkpoints, the defaults log, equality, the key listing. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "src/recipe/schema.h"
#include "src/util/alloc.h"
#include "src/util/log.h"

/* ---- to_ini -------------------------------------------------------------------------------- */

typedef struct text_buf {
    char *data;
    size_t len, cap;
    bool failed;
} text_buf;

static void put(text_buf *b, const char *s) {
    if (b->failed) return;
    size_t n = strlen(s);
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (b->len + n + 1 > cap) cap *= 2;
        char *grown = tpsc_realloc(b->data, cap, "recipe INI text");
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n + 1);
    b->len += n;
}

char *tpsc_recipe_to_ini(const tpsc_recipe *r) {
    text_buf b = {0};
    put(&b, "; tpsc recipe, resolved: every key, defaults included (docs/recipes.md)\n");
    char value[1024], line[1200];
    for (int s = 0; s < recipe_section_count; s++) {
        snprintf(line, sizeof line, "%s[%s]\n", s ? "\n" : "", recipe_sections[s]);
        put(&b, line);
        for (int i = 0; i < recipe_key_count; i++) {
            const recipe_key *k = &recipe_keys[i];
            if (strcmp(k->section, recipe_sections[s]) != 0) continue;
            recipe_value_format(k, r, value, sizeof value);
            snprintf(line, sizeof line, value[0] ? "%s = %s\n" : "%s =%s\n", k->name, value);
            put(&b, line);
        }
    }
    if (b.failed) {
        tpsc_free(b.data);
        return NULL;
    }
    return b.data;
}

/* ---- equality ------------------------------------------------------------------------------ */

static bool key_equal(const recipe_key *k, const tpsc_recipe *a, const tpsc_recipe *b) {
    const char *pa = (const char *)a + k->offset, *pb = (const char *)b + k->offset;
    switch (k->type) {
    case RT_STRING: return !strcmp(pa, pb);
    case RT_INT_LIST:
    case RT_FLOAT_LIST: {
        int na = *(const int *)((const char *)a + k->count_offset), nb = *(const int *)((const char *)b + k->count_offset);
        size_t item = k->type == RT_INT_LIST ? sizeof(int) : sizeof(float);
        return na == nb && !memcmp(pa, pb, (size_t)na * item);
    }
    default: return !memcmp(pa, pb, k->size); /* bit-exact: no NaN can get past parsing */
    }
}

bool tpsc_recipe_equal(const tpsc_recipe *a, const tpsc_recipe *b) {
    for (int i = 0; i < recipe_key_count; i++)
        if (!key_equal(&recipe_keys[i], a, b)) return false;
    /* The resolved configs follow from the keys, but the model reads them: compare them too. */
    const vit_config *va = &a->model.vit, *vb = &b->model.vit;
    if (va->ln_eps != vb->ln_eps) return false;
    const tok_config *ta = &a->tps.cfg, *tb = &b->tps.cfg;
    if (ta->method != tb->method || ta->n_stages != tb->n_stages || ta->squeeze_temp != tb->squeeze_temp ||
        ta->train_mask != tb->train_mask || ta->train_removal != tb->train_removal)
        return false;
    for (int s = 0; s < ta->n_stages; s++)
        if (ta->prune_loc[s] != tb->prune_loc[s] || ta->keep_frac[s] != tb->keep_frac[s]) return false;
    if (ta->chan.n_blocks != tb->chan.n_blocks || memcmp(ta->chan.keep, tb->chan.keep, sizeof ta->chan.keep) != 0)
        return false;
    return true;
}

/* ---- freeze prefixes ----------------------------------------------------------------------- */

bool tpsc_recipe_param_frozen(const tpsc_recipe *r, const char *param_name) {
    for (const char *p = r->optim.freeze; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        const char *start = p;
        while (len && (*start == ' ' || *start == '\t')) start++, len--;
        while (len && (start[len - 1] == ' ' || start[len - 1] == '\t')) len--;
        if (len && !strncmp(param_name, start, len)) return true;
        if (!comma) break;
        p = comma + 1;
    }
    return false;
}

/* ---- the defaults log ---------------------------------------------------------------------- */

/* Why a key the user set has no effect in this recipe, or NULL. Darknet's parser warned about
 * unused keys and users valued it: a setting that silently does nothing is a lost experiment. */
static const char *unused_reason(const tpsc_recipe *r, const recipe_key *k) {
    const tok_method m = r->tps.cfg.method;
    const char *sec = k->section, *name = k->name;
    if (!strcmp(sec, "tps") && strcmp(name, "method") != 0 && m == TOK_NONE) return "tps.method = none";
    if (!strcmp(sec, "tps") && !strcmp(name, "squeeze_temp") && !tok_method_squeezes(m)) return "this tps.method does not squeeze";
    if (!strcmp(sec, "tps") && !strcmp(name, "train_mask") && !tok_method_has_predictor(m))
        return "train_mask applies to predictor methods (dynamicvit, dtps)";
    if (!strcmp(sec, "tps") && !strcmp(name, "train_removal") && !tok_method_has_predictor(m))
        return "train_removal applies to predictor methods (dynamicvit, dtps); evit and etps always train with real removal";
    const bool gates = chan_enabled(&r->tps.cfg.chan);
    if (!strcmp(sec, "cdcp") && strncmp(name, "keep_", 5) != 0 && !gates) return "every cdcp.keep_* is 1: no channel gates";
    if (!strcmp(sec, "loss") && !strcmp(name, "channel_ratio_weight") && !gates) return "every cdcp.keep_* is 1: no channel gates";
    if (!strcmp(sec, "loss") && !strcmp(name, "channel_ratio_weight")) return NULL;
    if ((!strcmp(sec, "teacher") || (!strcmp(sec, "loss") && strcmp(name, "clf_weight") != 0)) && !tok_method_has_predictor(m) &&
        !(gates && (!strcmp(sec, "teacher") || !strcmp(name, "distill_weight") || !strcmp(name, "distill_cls"))))
        return "ratio and distillation losses apply to predictor methods (dynamicvit, dtps)";
    if (!strcmp(sec, "optim")) {
        const bool adamw = r->optim.name == TPSC_OPTIM_ADAMW;
        if (!strcmp(name, "momentum") && adamw) return "optim.name = adamw";
        if ((!strcmp(name, "beta1") || !strcmp(name, "beta2") || !strcmp(name, "eps")) && !adamw) return "optim.name = sgd";
        if (!strcmp(name, "ema_decay") && !r->optim.ema) return "optim.ema = false";
    }
    if (!strcmp(sec, "augment") && (!strcmp(name, "scale") || !strcmp(name, "ratio")) && !r->augment.rrc) return "augment.rrc = false";
    if (!strcmp(sec, "schedule") && !strcmp(name, "min_lr") && r->schedule.sched == TPSC_SCHED_CONSTANT)
        return "schedule.sched = constant";
    return NULL;
}

void tpsc_recipe_log_defaults(const tpsc_recipe *r) {
    char value[1024];
    const bool named = strcmp(r->model.vit.arch, "custom") != 0;
    for (int i = 0; i < recipe_key_count; i++) {
        const recipe_key *k = &recipe_keys[i];
        if (!recipe_value_format(k, r, value, sizeof value)) snprintf(value, sizeof value, "\"\"");
        if (r->origin.line[i] != 0) {
            const char *why = unused_reason(r, k);
            if (why) TPSC_WARN("recipe: [%s] %s = %s is set but unused (%s)", k->section, k->name, value, why);
            continue;
        }
        if (named && !strcmp(k->section, "model") && recipe_key_is_arch_fixed(k->name))
            TPSC_INFO("recipe: [%s] %s = %s (from arch %s)", k->section, k->name, value, r->model.vit.arch);
        else if (!strcmp(k->section, "run") && !strcmp(k->name, "name") && value[0])
            TPSC_INFO("recipe: [%s] %s = %s (default: the recipe file's name)", k->section, k->name, value);
        else
            TPSC_INFO("recipe: [%s] %s = %s (default)", k->section, k->name, value);
    }
}

/* ---- the key listing ----------------------------------------------------------------------- */

static const char *type_name(recipe_type t) {
    switch (t) {
    case RT_INT: case RT_SIZE: return "int";
    case RT_FLOAT: return "float";
    case RT_BOOL: return "bool";
    case RT_STRING: return "string";
    case RT_ENUM: return "enum";
    case RT_INT_LIST: return "int list";
    case RT_FLOAT_LIST: return "float list";
    }
    return "?";
}

static void bound(double v, char *buf, size_t n) {
    if (isinf(v)) snprintf(buf, n, "%s", v < 0 ? "-inf" : "inf");
    else snprintf(buf, n, "%.9g", v);
}

/* "[1, 256]", "(0, 1]", "one of a|b", "1 to 8 values in (0, 1]"; `bar` replaces '|' (Markdown). */
static void allowed(const recipe_key *k, const char *bar, char *buf, size_t n) {
    char lo[32], hi[32], range[96];
    bound(k->lo, lo, sizeof lo);
    bound(k->hi, hi, sizeof hi);
    snprintf(range, sizeof range, "%s%s, %s%s", k->lo_open ? "(" : "[", lo, hi, isinf(k->hi) ? ")" : "]");
    switch (k->type) {
    case RT_BOOL: snprintf(buf, n, "true, false"); return;
    case RT_STRING:
    case RT_ENUM:
        if (!k->choices) {
            snprintf(buf, n, "text");
            return;
        }
        size_t used = (size_t)snprintf(buf, n, "one of ");
        for (const char *c = k->choices; *c && used + 8 < n; c++) {
            if (*c == '|') used += (size_t)snprintf(buf + used, n - used, "%s", bar);
            else buf[used++] = *c, buf[used] = '\0';
        }
        return;
    case RT_INT_LIST:
    case RT_FLOAT_LIST:
        if (k->list_min == k->list_max) snprintf(buf, n, "%d values in %s", k->list_min, range);
        else snprintf(buf, n, "%d to %d values in %s", k->list_min, k->list_max, range);
        return;
    default: snprintf(buf, n, "%s", range);
    }
}

void tpsc_recipe_print_keys(FILE *f) {
    char range[256];
    for (int s = 0; s < recipe_section_count; s++) {
        fprintf(f, "%s[%s]\n", s ? "\n" : "", recipe_sections[s]);
        for (int i = 0; i < recipe_key_count; i++) {
            const recipe_key *k = &recipe_keys[i];
            if (strcmp(k->section, recipe_sections[s]) != 0) continue;
            allowed(k, "|", range, sizeof range);
            fprintf(f, "  %s = %s\n      %s%s%s. %s\n", k->name, k->def[0] ? k->def : "\"\"", type_name(k->type),
                    strcmp(range, "text") ? ", " : "", strcmp(range, "text") ? range : "", k->doc);
        }
    }
}

void tpsc_recipe_print_keys_markdown(FILE *f) {
    char range[256];
    for (int s = 0; s < recipe_section_count; s++) {
        fprintf(f, "%s### [%s]\n\n| key | type | default | allowed | meaning |\n|---|---|---|---|---|\n", s ? "\n" : "",
                recipe_sections[s]);
        for (int i = 0; i < recipe_key_count; i++) {
            const recipe_key *k = &recipe_keys[i];
            if (strcmp(k->section, recipe_sections[s]) != 0) continue;
            allowed(k, " \\| ", range, sizeof range);
            fprintf(f, "| `%s` | %s | `%s` | %s | ", k->name, type_name(k->type), k->def[0] ? k->def : "\"\"", range);
            for (const char *c = k->doc; *c; c++) fputs(*c == '|' ? "\\|" : (char[2]){*c, 0}, f);
            fputs(" |\n", f);
        }
    }
}
