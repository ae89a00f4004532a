/* tpsc recipe --keys | --markdown | RECIPE [--set k=v]...: the key table, or a recipe resolved. */
#include <stdio.h>
#include <string.h>

#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/recipe/recipe.h"
#include "src/util/alloc.h"

int cmd_recipe(int argc, char **argv) {
    if (argc < 2 || cli_is_help(argv[1])) {
        fprintf(argc < 2 ? stderr : stdout,
                "usage: tpsc recipe --keys            every recipe key: type, default, range, meaning\n"
                "       tpsc recipe --markdown        the same as a Markdown table\n"
                "       tpsc recipe RECIPE.ini [--set section.key=value]...   print the resolved recipe\n");
        return argc < 2 ? 2 : 0;
    }
    if (!strcmp(argv[1], "--keys")) {
        tpsc_recipe_print_keys(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--markdown")) {
        tpsc_recipe_print_keys_markdown(stdout);
        return 0;
    }
    static tpsc_recipe r;
    tpsc_status st = tpsc_recipe_load(&r, argv[1]);
    const char *value;
    for (int i = 2; st == TPSC_OK && i < argc; i++) {
        if (cli_opt(argc, argv, &i, "--set", &value) && value)
            st = tpsc_recipe_set(&r, value);
        else
            return fprintf(stderr, "tpsc recipe: unexpected argument '%s'\n", argv[i]), 2;
    }
    if (st == TPSC_OK) st = tpsc_recipe_validate(&r);
    if (st != TPSC_OK) return cli_fail("recipe", st);
    char *ini = tpsc_recipe_to_ini(&r);
    if (!ini) return cli_fail("recipe", TPSC_ERR_NOMEM);
    fputs(ini, stdout);
    tpsc_free(ini);
    return 0;
}
