/* The recipe key table and the code that reads and writes one key's value (inside src/recipe/
 * and tests only; users of recipes need recipe.h alone).
 *
 * A row says everything about a key: section, name, type, default (as written in a recipe),
 * range, one-line doc and where the value lives in tpsc_recipe. Parsing a file, --set,
 * defaults, logging, to_ini, equality and the key listing are all loops over this table, so a
 * key added here is everywhere at once. */
#ifndef TPSC_RECIPE_SCHEMA_H
#define TPSC_RECIPE_SCHEMA_H

#include <stddef.h>

#include "src/recipe/recipe.h"

/* Longest recipe line: Debian's inih reads lines into a 200-byte buffer and needs "\r\n\0"
 * after the text. String values are limited so that to_ini can always write them back. */
#define RECIPE_LINE_MAX 197

typedef enum recipe_type {
    RT_INT,        /* int */
    RT_SIZE,       /* size_t (the vit_config sizes) */
    RT_FLOAT,      /* float; written in decimal or exponent form */
    RT_BOOL,       /* bool; true/false, yes/no, on/off, 1/0 */
    RT_STRING,     /* char[size]; with `choices`, one of them (model.arch) */
    RT_ENUM,       /* int-sized C enum; the value is the index of the name in `choices` */
    RT_INT_LIST,   /* int[], comma-separated, count in the int at count_offset */
    RT_FLOAT_LIST, /* float[], the same */
} recipe_type;

typedef struct recipe_key {
    const char *section, *name;
    recipe_type type;
    const char *def;      /* default, exactly as it would be written in a recipe */
    double lo, hi;        /* range of the value, or of each list item */
    bool lo_open;         /* lo itself is excluded: (lo, hi] */
    int list_min, list_max; /* lists: how many items */
    const char *choices;  /* RT_ENUM / RT_STRING: "a|b|c" (RT_STRING: NULL = free text) */
    size_t offset, size;  /* the value in tpsc_recipe, and its size in bytes */
    size_t count_offset;  /* lists: the int holding the item count */
    const char *doc;
} recipe_key;

extern const recipe_key recipe_keys[];
extern const int recipe_key_count;
#define RECIPE_MAX_SECTIONS 16
extern const char *const recipe_sections[]; /* in the order to_ini writes them */
extern const int recipe_section_count;

/* Index of section.name in recipe_keys, or -1. */
int recipe_key_find(const char *section, const char *name);
bool recipe_section_known(const char *section);

/* Parses `text` as key k's value into r. All or nothing: on error r is unchanged and the
 * message is the reason alone ("expected a number, got 'abc'"); the caller adds the place. */
tpsc_status recipe_value_parse(const recipe_key *k, const char *text, tpsc_recipe *r);
/* Writes key k's value as a recipe would spell it; floats in the shortest decimal that reads
 * back to the same float. Always terminates; returns the length it needed. */
size_t recipe_value_format(const recipe_key *k, const tpsc_recipe *r, char *buf, size_t n);

/* Fills the resolved parts (model.vit sizes of a named arch, tps.cfg) from the keys. Never
 * fails: contradictions are left for tpsc_recipe_validate to report. */
void recipe_resolve(tpsc_recipe *r);
/* True for the [model] keys a named arch fixes (patch_size, embed_dim, depth, ...). */
bool recipe_key_is_arch_fixed(const char *name);

/* "recipes/x.ini:12: " / "--set tps.depth: " / "recipes/x.ini (default): " for key index i. */
void recipe_key_place(const tpsc_recipe *r, int i, char *buf, size_t n);

/* Checks the table itself: sizes match types, defaults parse and lie in range, no key twice,
 * at most TPSC_RECIPE_MAX_KEYS keys. For the tests. */
tpsc_status recipe_schema_check(void);

#endif
