/* The method table's rows as data (methods.h has the table and how to add a row). */
#include "src/common/methods.h"

#include <ctype.h>
#include <stddef.h>
#include <stdio.h>

#define ROW_(e, name, scores, dropped, channels) [e] = {name, scores, dropped, channels},
static const method_row method_rows[] = {TOK_METHOD_TABLE(ROW_)};
#undef ROW_
_Static_assert(sizeof method_rows / sizeof method_rows[0] == TOK_METHOD_COUNT, "one row per tok_method");

const method_row *tok_method_row(tok_method m) {
    return (int)m >= 0 && (int)m < TOK_METHOD_COUNT ? &method_rows[m] : NULL;
}

int tok_method_from_name(const char *name) {
    if (!name) return -1;
    for (int m = 0; m < TOK_METHOD_COUNT; m++) {
        const char *a = name, *b = method_rows[m].name;
        while (*a && *b && tolower((unsigned char)*a) == *b) a++, b++;
        if (!*a && !*b) return m;
    }
    return -1;
}

const char *tok_method_name(tok_method m) {
    const method_row *r = tok_method_row(m);
    return r ? r->name : "unknown";
}

void tok_method_list(char *buf, size_t n) {
    if (n == 0) return;
    size_t used = 0;
    buf[0] = '\0';
    for (int m = 0; m < TOK_METHOD_COUNT; m++) {
        int w = snprintf(buf + used, n - used, "%s%s", m ? ", " : "", method_rows[m].name);
        if (w < 0 || (size_t)w >= n - used) return; /* cut short, still terminated */
        used += (size_t)w;
    }
}

bool tok_method_has_predictor(tok_method m) {
    const method_row *r = tok_method_row(m);
    return r && r->scores == SCORES_PREDICTOR;
}

bool tok_method_squeezes(tok_method m) {
    const method_row *r = tok_method_row(m);
    return r && r->dropped == DROPPED_SQUEEZE;
}

bool tok_method_merges(tok_method m) {
    const method_row *r = tok_method_row(m);
    return r && r->dropped == DROPPED_MERGE;
}

bool tok_method_merges_on_grid(tok_method m) {
    const method_row *r = tok_method_row(m);
    return r && r->scores == SCORES_CLS_ATTENTION_BUDGET;
}

bool tok_method_needs_channels(tok_method m) {
    const method_row *r = tok_method_row(m);
    return r && r->channels == CHANNELS_REQUIRED;
}
