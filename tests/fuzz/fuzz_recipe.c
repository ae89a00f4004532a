/* The recipe parser and --set overrides. Input: recipe INI text, optionally followed by a line
 * "--set" and one override per line. A recipe that loads and validates must survive the round
 * trip the checkpoint relies on: tpsc_recipe_to_ini, then loading that text, gives an equal
 * recipe (a failure there aborts, which libFuzzer reports). */
#include "tests/fuzz/fuzz_common.h"

#include "src/recipe/recipe.h"
#include "src/util/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_tmpdir();
    size_t text_len, sets_len;
    const uint8_t *sets;
    fuzz_split(data, size, "\n--set\n", &text_len, &sets, &sets_len);
    char *text = fuzz_cstr(data, text_len);
    char *over = fuzz_cstr(sets, sets_len);
    static tpsc_recipe r, back;
    tpsc_status st = tpsc_recipe_load_string(&r, text, "fuzz.ini");
    if (st != TPSC_OK) tpsc_recipe_defaults(&r);
    bool sets_ok = true;
    for (char *line = strtok(over, "\n"); line; line = strtok(NULL, "\n"))
        if (tpsc_recipe_set(&r, line) != TPSC_OK) sets_ok = false;
    if (sets_ok && tpsc_recipe_validate(&r) == TPSC_OK) {
        char *ini = tpsc_recipe_to_ini(&r);
        if (!ini) abort();
        if (tpsc_recipe_load_string(&back, ini, "round-trip") != TPSC_OK) {
            fprintf(stderr, "round trip: a valid recipe's own INI text does not load: %s\n%s\n", tpsc_last_error(), ini);
            abort();
        }
        if (!tpsc_recipe_equal(&r, &back)) {
            fprintf(stderr, "round trip: the reloaded recipe differs\n%s\n", ini);
            abort();
        }
        tpsc_free(ini);
    }
    tpsc_clear_error();
    free(text);
    free(over);
    return 0;
}
