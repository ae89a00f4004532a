/* Reading a recipe: defaults, then an INI file (or text) through inih, then --set overrides.
 *
 * Debian's inih is built without line numbers in the handler (INI_HANDLER_LINENO 0) and with a
 * 200-byte line buffer that silently splits longer lines into two "lines". So we feed inih
 * through our own reader: it is called once per line, which gives us the line number for
 * every message, and it refuses an over-long line instead of letting inih cut it (the tail
 * would come back as a bogus key). The reader also checks section headers, because inih only
 * calls the handler for keys and an empty misspelt section would pass unnoticed. */
#include <errno.h>
#include <ini.h>
#include <stdio.h>
#include <string.h>

#include "src/recipe/schema.h"

typedef struct recipe_parse {
    tpsc_recipe *r;
    const char *name;     /* file name in messages */
    FILE *file;           /* the source: a file, or */
    const char *text;     /* text in memory */
    size_t pos;
    int line;             /* lines handed to inih so far = the current line */
    int section_line[RECIPE_MAX_SECTIONS]; /* per recipe_sections entry: header line, 0 = not seen */
    char section[64];     /* the current section, for messages from the reader */
    tpsc_status status;   /* first failure found by the reader or the handler */
    int error_line;
} recipe_parse;

static int next_char(recipe_parse *p) {
    if (p->file) return fgetc(p->file);
    return p->text[p->pos] ? (unsigned char)p->text[p->pos++] : EOF;
}

static tpsc_status parse_fail_line(recipe_parse *p, tpsc_status st) {
    p->status = st;
    p->error_line = p->line;
    return st;
}

static void section_list(char *buf, size_t n) {
    size_t used = 0;
    buf[0] = '\0';
    for (int s = 0; s < recipe_section_count && used < n; s++)
        used += (size_t)snprintf(buf + used, n - used, "%s%s", s ? ", " : "", recipe_sections[s]);
}

/* A section header line: known, and only once (a second [optim] far down a file would
 * quietly split a section; keeping each in one place is what makes a recipe readable). */
static void check_section_header(recipe_parse *p, const char *start) {
    const char *close = strchr(start, ']');
    if (!close) return; /* inih reports the syntax error with its line */
    char section[64];
    int len = (int)(close - start - 1);
    snprintf(section, sizeof section, "%.*s", len, start + 1);
    snprintf(p->section, sizeof p->section, "%s", section);
    for (int s = 0; s < recipe_section_count; s++) {
        if (strcmp(recipe_sections[s], section) != 0) continue;
        if (p->section_line[s]) {
            parse_fail_line(p, tpsc_fail(TPSC_ERR_CONFIG, "%s:%d: [%s]: section appears twice (first at line %d); keep each section in one place",
                                         p->name, p->line, section, p->section_line[s]));
        } else {
            p->section_line[s] = p->line;
        }
        return;
    }
    char known[160];
    section_list(known, sizeof known);
    parse_fail_line(p, tpsc_fail(TPSC_ERR_CONFIG, "%s:%d: [%s]: unknown section (sections: %s)", p->name, p->line, section, known));
}

/* "[optim] lr: " for a line "lr = ..." of `len` characters, or "" when it has no key. */
static void line_key(const recipe_parse *p, const char *line, size_t len, char *buf, size_t n) {
    size_t key_len = 0;
    while (key_len < len && line[key_len] != '=' && line[key_len] != ':') key_len++;
    const bool has_key = key_len < len;
    while (key_len && (line[key_len - 1] == ' ' || line[key_len - 1] == '\t')) key_len--;
    if (has_key && key_len && key_len <= 40) snprintf(buf, n, "[%s] %.*s: ", p->section, (int)key_len, line);
    else buf[0] = '\0';
}

/* inih's fgets-style reader: one whole line per call, or NULL to stop. */
static char *read_line(char *str, int num, void *stream) {
    recipe_parse *p = stream;
    if (p->status != TPSC_OK) return NULL;
    /* inih needs room for "\r\n\0" after the longest line it can take whole. */
    const size_t limit = num > 3 ? (size_t)num - 3 : 0;
    size_t len = 0;
    int c = EOF;
    bool any = false;
    while ((c = next_char(p)) != EOF) {
        any = true;
        if (c == '\n') break;
        if (len < limit) str[len] = (char)c;
        len++;
    }
    if (!any) return NULL;
    p->line++;
    if (len > limit) {
        char what[128];
        line_key(p, str, limit, what, sizeof what);
        parse_fail_line(p, tpsc_fail(TPSC_ERR_CONFIG,
                                     "%s:%d: %sline is %zu characters long; recipe lines hold at most %zu (the INI parser would "
                                     "cut it in two): shorten it",
                                     p->name, p->line, what, len, limit));
        return NULL;
    }
    str[len] = '\n';
    str[len + 1] = '\0';

    const char *start = str;
    if (p->line == 1 && !strncmp(start, "\xEF\xBB\xBF", 3)) start += 3; /* UTF-8 BOM, which inih skips */
    const char *first = start;
    while (*start == ' ' || *start == '\t') start++;
    const bool content = *start && *start != '\n' && *start != '\r' && *start != ';' && *start != '#';
    if (content && start > first) {
        /* inih would glue an indented line onto the previous key's value (multi-line values). */
        char what[128];
        line_key(p, start, len - (size_t)(start - str), what, sizeof what);
        parse_fail_line(p, tpsc_fail(TPSC_ERR_CONFIG,
                                     "%s:%d: %sline starts with a blank, which the INI parser reads as a continuation of the "
                                     "previous value; start keys and sections at column 1",
                                     p->name, p->line, what));
        return NULL;
    }
    if (*start == '[') check_section_header(p, start);
    return p->status == TPSC_OK ? str : NULL;
}

/* "(keys of [optim]: name, lr, ...)" plus a hint when the key lives in another section. */
static void unknown_key_hint(const char *section, const char *name, char *buf, size_t n) {
    size_t used = (size_t)snprintf(buf, n, "keys of [%s]:", section);
    bool first = true;
    for (int i = 0; i < recipe_key_count && used < n; i++) {
        if (strcmp(recipe_keys[i].section, section) != 0) continue;
        used += (size_t)snprintf(buf + used, n - used, "%s %s", first ? "" : ",", recipe_keys[i].name);
        first = false;
    }
    for (int i = 0; i < recipe_key_count && used < n; i++)
        if (!strcmp(recipe_keys[i].name, name) && strcmp(recipe_keys[i].section, section) != 0) {
            snprintf(buf + used, n - used, "; '%s' belongs to [%s]", name, recipe_keys[i].section);
            break;
        }
}

static int on_key(void *user, const char *section, const char *name, const char *value) {
    recipe_parse *p = user;
    if (p->status != TPSC_OK) return 0;
    if (!*section) {
        parse_fail_line(p, tpsc_fail(TPSC_ERR_CONFIG, "%s:%d: %s: key comes before any [section]", p->name, p->line, name));
        return 0;
    }
    const int i = recipe_key_find(section, name);
    if (i < 0) {
        char hint[640];
        unknown_key_hint(section, name, hint, sizeof hint);
        parse_fail_line(p, tpsc_fail(TPSC_ERR_CONFIG, "%s:%d: [%s] %s: unknown key (%s)", p->name, p->line, section, name, hint));
        return 0;
    }
    int *origin = &p->r->origin.line[i];
    if (*origin > 0) {
        parse_fail_line(p, tpsc_fail(TPSC_ERR_CONFIG,
                                     "%s:%d: [%s] %s: duplicate key, first set at line %d (the last would silently win, "
                                     "which hides typos: keep one)",
                                     p->name, p->line, section, name, *origin));
        return 0;
    }
    if (recipe_value_parse(&recipe_keys[i], value, p->r) != TPSC_OK) {
        tpsc_error_context("%s:%d: [%s] %s: ", p->name, p->line, section, name);
        parse_fail_line(p, TPSC_ERR_CONFIG);
        return 0;
    }
    *origin = p->line;
    return 1;
}

static tpsc_status parse_source(recipe_parse *p) {
    const int ret = ini_parse_stream(read_line, p, on_key, p);
    if (ret == -2) return tpsc_fail(TPSC_ERR_NOMEM, "%s: the INI parser ran out of memory", p->name);
    /* inih returns the first line it could not parse, whether the syntax or our handler failed. */
    if (ret > 0 && (p->status == TPSC_OK || ret < p->error_line))
        return tpsc_fail(TPSC_ERR_CONFIG, "%s:%d: expected 'key = value', '[section]' or a comment", p->name, ret);
    return p->status;
}

void tpsc_recipe_defaults(tpsc_recipe *r) {
    memset(r, 0, sizeof *r);
    /* The defaults are recipe text parsed like a file's; the tests run recipe_schema_check,
     * which fails if any of them does not parse, so the status is not needed here. */
    for (int i = 0; i < recipe_key_count; i++) (void)recipe_value_parse(&recipe_keys[i], recipe_keys[i].def, r);
    r->model.vit.ln_eps = 1e-6f;
    recipe_resolve(r);
}

/* recipes/deit_s_dtps.ini -> deit_s_dtps */
static void file_stem(const char *path, char *buf, size_t n) {
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    const char *dot = strrchr(base, '.');
    size_t len = dot && dot > base ? (size_t)(dot - base) : strlen(base);
    if (len >= n) len = n - 1;
    memcpy(buf, base, len);
    buf[len] = '\0';
}

static tpsc_status finish_load(tpsc_recipe *r) {
    recipe_resolve(r);
    return tpsc_recipe_validate(r);
}

tpsc_status tpsc_recipe_load(tpsc_recipe *r, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return tpsc_fail(TPSC_ERR_IO, "%s: cannot open recipe: %s", path, strerror(errno));
    tpsc_recipe_defaults(r);
    snprintf(r->origin.source, sizeof r->origin.source, "%s", path);
    recipe_parse p = {.r = r, .name = path, .file = f};
    tpsc_status st = parse_source(&p);
    if (st == TPSC_OK && ferror(f)) st = tpsc_fail(TPSC_ERR_IO, "%s: cannot read recipe: %s", path, strerror(errno));
    fclose(f);
    TPSC_TRY(st);
    if (!r->run.name[0]) file_stem(path, r->run.name, sizeof r->run.name);
    return finish_load(r);
}

tpsc_status tpsc_recipe_load_string(tpsc_recipe *r, const char *text, const char *name) {
    tpsc_recipe_defaults(r);
    snprintf(r->origin.source, sizeof r->origin.source, "%s", name);
    recipe_parse p = {.r = r, .name = name, .text = text};
    TPSC_TRY(parse_source(&p));
    return finish_load(r);
}

tpsc_status tpsc_recipe_set(tpsc_recipe *r, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    const char *dot = strchr(assignment, '.');
    if (!eq || !dot || dot > eq)
        return tpsc_fail(TPSC_ERR_CONFIG, "--set %s: expected section.key=value, e.g. optim.lr=1e-4", assignment);
    char section[64], name[64];
    const char *s = assignment, *k = dot + 1;
    while (*s == ' ') s++;
    size_t slen = (size_t)(dot - s), klen = (size_t)(eq - k);
    while (klen && k[klen - 1] == ' ') klen--;
    if (slen >= sizeof section || klen >= sizeof name)
        return tpsc_fail(TPSC_ERR_CONFIG, "--set %s: section or key name too long", assignment);
    snprintf(section, sizeof section, "%.*s", (int)slen, s);
    snprintf(name, sizeof name, "%.*s", (int)klen, k);
    if (!recipe_section_known(section)) {
        char known[160];
        section_list(known, sizeof known);
        return tpsc_fail(TPSC_ERR_CONFIG, "--set %s: unknown section [%s] (sections: %s)", assignment, section, known);
    }
    const int i = recipe_key_find(section, name);
    if (i < 0) {
        char hint[640];
        unknown_key_hint(section, name, hint, sizeof hint);
        return tpsc_fail(TPSC_ERR_CONFIG, "--set %s: [%s] %s: unknown key (%s)", assignment, section, name, hint);
    }
    if (recipe_value_parse(&recipe_keys[i], eq + 1, r) != TPSC_OK) {
        tpsc_error_context("--set %s: [%s] %s: ", assignment, section, name);
        return TPSC_ERR_CONFIG;
    }
    r->origin.line[i] = -1;
    recipe_resolve(r);
    return TPSC_OK;
}
