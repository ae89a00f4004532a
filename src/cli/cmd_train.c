/* tpsc train RECIPE [--set section.key=value]... [--resume CKPT] */
#include <stdio.h>
#include <string.h>

#include "src/cli/cli_signals.h"
#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/dist/dist.h"
#include "src/train/trainer.h"
#include "src/util/log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc train RECIPE.ini [--set section.key=value]... [--resume CKPT] [--precision fp32|bf16] [--quiet]\n"
            "\n"
            "Trains or fine-tunes a model as the recipe says (see docs/recipes.md, `tpsc recipe --keys`).\n"
            "Writes <run.out_dir>/<run.name>/{last.h5,best.h5,metrics.jsonl}. SIGTERM or SIGINT (Ctrl-C) stops it at\n"
            "the next step with a resumable last.h5 and exit code 143 or 130; a second signal quits at once.\n"
            "  --set k=v     override any recipe key, e.g. --set schedule.epochs=20 --set tps.keep_ratio=0.5\n"
            "  --resume CKPT continue a run exactly where its checkpoint left off (same as --set run.resume=CKPT)\n"
            "  --precision P GEMMs in fp32 or bf16 with fp32 accumulation (same as --set run.precision=P)\n"
            "  --quiet       no defaults log\n");
}

int cmd_train(int argc, char **argv) {
    const char *recipe_path = NULL, *resume = NULL, *value;
    const char *sets[128];
    int n_sets = 0;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (cli_opt(argc, argv, &i, "--set", &value)) {
            if (!value || n_sets == 128) {
                usage(stderr);
                return 2;
            }
            sets[n_sets++] = value;
        } else if (cli_opt(argc, argv, &i, "--precision", &value)) {
            static char set[64];
            if (!value || n_sets == 128) {
                usage(stderr);
                return 2;
            }
            snprintf(set, sizeof set, "run.precision=%s", value);
            sets[n_sets++] = set;
        } else if (cli_opt(argc, argv, &i, "--resume", &value)) {
            if (!value) {
                usage(stderr);
                return 2;
            }
            resume = value;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = true;
        } else if (argv[i][0] == '-' || recipe_path) {
            fprintf(stderr, "tpsc train: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            recipe_path = argv[i];
        }
    }
    if (!recipe_path) {
        usage(stderr);
        return 2;
    }
    static tpsc_recipe r;
    tpsc_status st = tpsc_recipe_load(&r, recipe_path);
    for (int i = 0; st == TPSC_OK && i < n_sets; i++) st = tpsc_recipe_set(&r, sets[i]);
    if (st == TPSC_OK && resume) {
        char set[600];
        snprintf(set, sizeof set, "run.resume=%s", resume);
        st = tpsc_recipe_set(&r, set);
    }
    if (st == TPSC_OK) st = tpsc_recipe_validate(&r);
    if (st != TPSC_OK) return cli_fail("train", st);
    /* Under MPI, rank 0 speaks for the job; the others report only warnings and errors. */
    if (dist_rank() != 0) {
        quiet = true;
        if (tpsc_log_get_level() > TPSC_LOG_WARN) tpsc_log_set_level(TPSC_LOG_WARN);
    }
    if (!quiet) tpsc_recipe_log_defaults(&r);
    tpsc_train_result res;
    cli_stop_on_signals();
    st = tpsc_train_run(&r, &res);
    if (st == TPSC_ERR_INTERRUPTED) {
        cli_fail("train", st);
        return cli_interrupted_exit_code();
    }
    if (st != TPSC_OK) return cli_fail("train", st);
    if (dist_rank() != 0) return 0;
    printf("%s: top-1 %.2f%% (best %.2f%%), top-5 %.2f%%, %.4f GMACs/img, %.0f img/s inference, %lld steps in %.1f s\n",
           res.run_dir, res.last_eval.top1, res.best_top1, res.last_eval.top5, res.last_eval.gmacs,
           res.last_eval.images_per_s, (long long)res.steps, res.train_seconds);
    return 0;
}
