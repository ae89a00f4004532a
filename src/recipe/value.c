/* Reading and writing one recipe value: text <-> the typed field the schema row points at.
 *
 * Parsing is strict because a recipe typo should stop a run before it costs hours: the whole
 * text must be the value ("5e-4x" is an error, not 5e-4), numbers must lie in the key's
 * range, and a failed parse leaves the recipe untouched. Writing uses the shortest decimal
 * that reads back to the same float, so to_ini output re-parses bit for bit and still reads
 * like a hand-written recipe (0.7, not 0.699999988). */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "src/common/decimal.h"
#include "src/recipe/schema.h"

#define LIST_TEXT_MAX 1024

static void *field(tpsc_recipe *r, size_t offset) { return (char *)r + offset; }
static const void *cfield(const tpsc_recipe *r, size_t offset) { return (const char *)r + offset; }

/* Copies text without leading/trailing blanks into buf (inih already trims file values; --set
 * values and list items are trimmed here). */
static bool trimmed(const char *text, size_t len, char *buf, size_t n) {
    while (len > 0 && isspace((unsigned char)*text)) text++, len--;
    while (len > 0 && isspace((unsigned char)text[len - 1])) len--;
    if (len >= n) return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    return true;
}

static bool parse_whole_number(const char *s, long long *out) {
    if (!*s) return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return false;
    *out = v;
    return true;
}

static bool parse_number(const char *s, double *out) {
    if (!*s) return false;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v)) return false; /* ERANGE underflow is fine: the range check decides */
    *out = v;
    return true;
}

static void format_bound(double v, char *buf, size_t n) {
    if (isinf(v)) snprintf(buf, n, "%s", v < 0 ? "-inf" : "inf");
    else snprintf(buf, n, "%.9g", v);
}

static tpsc_status check_range(const recipe_key *k, double v, const char *text) {
    bool ok = (k->lo_open ? v > k->lo : v >= k->lo) && v <= k->hi;
    if (ok) return TPSC_OK;
    char lo[32], hi[32];
    format_bound(k->lo, lo, sizeof lo);
    format_bound(k->hi, hi, sizeof hi);
    return tpsc_fail(TPSC_ERR_CONFIG, "%s is outside the allowed range %s%s, %s%s", text, k->lo_open ? "(" : "[", lo, hi,
                     isinf(k->hi) ? ")" : "]");
}

/* One number of an int-like or float-like key, type-checked and range-checked. */
static tpsc_status parse_int_item(const recipe_key *k, const char *text, long long *out) {
    if (!parse_whole_number(text, out)) return tpsc_fail(TPSC_ERR_CONFIG, "expected a whole number, got '%s'", text);
    return check_range(k, (double)*out, text);
}

static tpsc_status parse_float_item(const recipe_key *k, const char *text, float *out) {
    double v;
    if (!parse_number(text, &v)) return tpsc_fail(TPSC_ERR_CONFIG, "expected a number, got '%s'", text);
    /* Range-check what will be stored: 1e-50 passes "> 0" as a double but is 0 as a float. */
    float f = (float)v;
    if (!isfinite(f)) return tpsc_fail(TPSC_ERR_CONFIG, "%s does not fit a 32-bit float", text);
    TPSC_TRY(check_range(k, (double)f, text));
    *out = f;
    return TPSC_OK;
}

/* Index of `text` among "a|b|c" (case-insensitive), or -1. */
static int choice_index(const char *choices, const char *text) {
    int index = 0;
    for (const char *c = choices;; index++) {
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        if (strlen(text) == len && !strncasecmp(c, text, len)) return index;
        if (!bar) return -1;
        c = bar + 1;
    }
}

static tpsc_status parse_bool(const char *text, bool *out) {
    static const char *const yes[] = {"true", "yes", "on", "1"}, *const no[] = {"false", "no", "off", "0"};
    for (int i = 0; i < 4; i++) {
        if (!strcasecmp(text, yes[i])) return *out = true, TPSC_OK;
        if (!strcasecmp(text, no[i])) return *out = false, TPSC_OK;
    }
    return tpsc_fail(TPSC_ERR_CONFIG, "expected true or false, got '%s'", text);
}

static tpsc_status parse_list(const recipe_key *k, const char *text, tpsc_recipe *r) {
    const bool ints = k->type == RT_INT_LIST;
    int ivals[64];
    float fvals[64];
    int n = 0;
    char item[LIST_TEXT_MAX];
    const char *p = text;
    if (!*p) return tpsc_fail(TPSC_ERR_CONFIG, "expected %d to %d comma-separated values, got none", k->list_min, k->list_max);
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!trimmed(p, len, item, sizeof item)) return tpsc_fail(TPSC_ERR_CONFIG, "list item %d is too long", n + 1);
        if (!*item) return tpsc_fail(TPSC_ERR_CONFIG, "list item %d of '%s' is empty", n + 1, text);
        if (n == k->list_max || n == 64)
            return tpsc_fail(TPSC_ERR_CONFIG, "expected at most %d values, got more in '%s'", k->list_max, text);
        if (ints) {
            long long v;
            if (parse_int_item(k, item, &v) != TPSC_OK) {
                tpsc_error_context("list item %d: ", n + 1);
                return TPSC_ERR_CONFIG;
            }
            ivals[n] = (int)v;
        } else if (parse_float_item(k, item, &fvals[n]) != TPSC_OK) {
            tpsc_error_context("list item %d: ", n + 1);
            return TPSC_ERR_CONFIG;
        }
        n++;
        if (!comma) break;
        p = comma + 1;
    }
    if (n < k->list_min)
        return tpsc_fail(TPSC_ERR_CONFIG, "expected %s%d comma-separated values, got %d in '%s'",
                         k->list_min == k->list_max ? "exactly " : "at least ", k->list_min, n, text);
    memcpy(field(r, k->offset), ints ? (const void *)ivals : (const void *)fvals, (size_t)n * (ints ? sizeof(int) : sizeof(float)));
    *(int *)field(r, k->count_offset) = n;
    return TPSC_OK;
}

tpsc_status recipe_value_parse(const recipe_key *k, const char *text_in, tpsc_recipe *r) {
    char text[LIST_TEXT_MAX];
    if (!trimmed(text_in, strlen(text_in), text, sizeof text))
        return tpsc_fail(TPSC_ERR_CONFIG, "value is longer than %d characters", LIST_TEXT_MAX - 1);
    switch (k->type) {
    case RT_INT: {
        long long v;
        TPSC_TRY(parse_int_item(k, text, &v));
        *(int *)field(r, k->offset) = (int)v;
        return TPSC_OK;
    }
    case RT_SIZE: {
        long long v;
        TPSC_TRY(parse_int_item(k, text, &v));
        *(size_t *)field(r, k->offset) = (size_t)v;
        return TPSC_OK;
    }
    case RT_FLOAT: return parse_float_item(k, text, (float *)field(r, k->offset));
    case RT_BOOL: return parse_bool(text, (bool *)field(r, k->offset));
    case RT_ENUM: {
        int index = choice_index(k->choices, text);
        if (index < 0) return tpsc_fail(TPSC_ERR_CONFIG, "expected one of %s, got '%s'", k->choices, text);
        *(int *)field(r, k->offset) = index;
        return TPSC_OK;
    }
    case RT_STRING: {
        /* `key = ""` reads as the empty string, as the key listing writes it. */
        if (!strcmp(text, "\"\"")) text[0] = '\0';
        if (k->choices && choice_index(k->choices, text) < 0)
            return tpsc_fail(TPSC_ERR_CONFIG, "expected one of %s, got '%s'", k->choices, text);
        /* "name = value" must fit one recipe line, or to_ini could not write it back. */
        size_t fit = RECIPE_LINE_MAX - strlen(k->name) - 3;
        if (fit > k->size - 1) fit = k->size - 1;
        if (strlen(text) > fit)
            return tpsc_fail(TPSC_ERR_CONFIG, "'%.40s...' is %zu characters; at most %zu fit", text, strlen(text), fit);
        /* Lists of strings (optim.freeze) and paths are free text, but an INI line cannot
         * carry a ';' comment marker or a leading blank back, so refuse what to_ini could not
         * write back unchanged. */
        for (const char *c = text; *c; c++)
            if ((unsigned char)*c < 0x20)
                return tpsc_fail(TPSC_ERR_CONFIG, "'%s' contains a control character (byte %d)", text, *c);
        if (strstr(text, " ;") || strstr(text, "\t;"))
            return tpsc_fail(TPSC_ERR_CONFIG, "'%s' contains ' ;', which starts a comment in a recipe file", text);
        memcpy(field(r, k->offset), text, strlen(text) + 1);
        return TPSC_OK;
    }
    case RT_INT_LIST:
    case RT_FLOAT_LIST: return parse_list(k, text, r);
    }
    return tpsc_fail(TPSC_ERR_INTERNAL, "recipe key %s.%s has an unknown type", k->section, k->name);
}

/* Appends to buf without overflowing; returns the length the full text would have. */
static size_t append(char *buf, size_t n, size_t used, const char *s) {
    size_t len = strlen(s);
    if (used < n) {
        size_t room = n - used - 1;
        memcpy(buf + used, s, len < room ? len : room);
        buf[used + (len < room ? len : room)] = '\0';
    }
    return used + len;
}

size_t recipe_value_format(const recipe_key *k, const tpsc_recipe *r, char *buf, size_t n) {
    char item[64];
    if (n) buf[0] = '\0';
    const void *p = cfield(r, k->offset);
    switch (k->type) {
    case RT_INT: snprintf(item, sizeof item, "%d", *(const int *)p); return append(buf, n, 0, item);
    case RT_SIZE: snprintf(item, sizeof item, "%zu", *(const size_t *)p); return append(buf, n, 0, item);
    case RT_FLOAT: decimal_shortest(*(const float *)p, item, sizeof item); return append(buf, n, 0, item);
    case RT_BOOL: return append(buf, n, 0, *(const bool *)p ? "true" : "false");
    case RT_STRING: return append(buf, n, 0, (const char *)p);
    case RT_ENUM: {
        int index = *(const int *)p;
        const char *c = k->choices;
        for (int i = 0; i < index && c; i++) {
            c = strchr(c, '|');
            if (c) c++;
        }
        if (!c) return append(buf, n, 0, "?");
        const char *bar = strchr(c, '|');
        size_t len = bar ? (size_t)(bar - c) : strlen(c);
        snprintf(item, sizeof item, "%.*s", (int)len, c);
        return append(buf, n, 0, item);
    }
    case RT_INT_LIST:
    case RT_FLOAT_LIST: {
        int count = *(const int *)cfield(r, k->count_offset);
        size_t used = 0;
        for (int i = 0; i < count; i++) {
            if (k->type == RT_INT_LIST) snprintf(item, sizeof item, "%d", ((const int *)p)[i]);
            else decimal_shortest(((const float *)p)[i], item, sizeof item);
            if (i) used = append(buf, n, used, ", ");
            used = append(buf, n, used, item);
        }
        return used;
    }
    }
    return 0;
}
