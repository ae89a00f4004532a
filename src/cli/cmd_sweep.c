/* tpsc sweep RECIPE --grid k=v1,v2 ... [--out DIR]: a grid of training runs, resumable, with
 * results.csv / results.md and a top-1 vs GMACs plot; or --eval CKPT: one checkpoint at
 * several inference settings. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "src/cli/cli_signals.h"
#include "src/cli/cli_util.h"
#include "src/cli/commands.h"
#include "src/sweep/sweep.h"
#include "src/util/alloc.h"
#include "src/util/log.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: tpsc sweep RECIPE.ini --grid section.key=v1,v2,... [--grid ...] [--set k=v]... [--out DIR]\n"
            "       tpsc sweep --eval CKPT.h5 --grid tps.keep_ratio=0.5,0.7,... [--set k=v]... [--out DIR]\n"
            "\n"
            "Runs the cartesian product of the grid, each point in DIR/<key-value_key-value>/ (e.g.\n"
            "keep_ratio-0.5_method-dtps), then writes DIR/results.csv, DIR/summary.csv (mean and spread over\n"
            "run.seed), DIR/results.md and DIR/results.png (top-1 vs GMACs/image, one line per method, drawn\n"
            "with gnuplot). Run it again to continue: finished points (done.json) are skipped, interrupted\n"
            "ones resume from their last.h5. The same command started twice shares the work (a point being\n"
            "run is locked by its process).\n"
            "  --grid k=v,...  one axis; values are recipe values (list values: separate with ';', e.g.\n"
            "                  --grid 'tps.prune_loc=2,3,5;1,3,5'); add run.seed=0,1 for seeds\n"
            "  --set k=v       override a recipe key for every point\n"
            "  --eval CKPT     no training: evaluate CKPT at each point (tps.* and data.* keys only)\n"
            "  --out DIR       default <run.out_dir>/sweep-<run.name> (--eval: next to CKPT)\n"
            "  --threads N     run.threads for every point\n"
            "  --precision P   run.precision (fp32 or bf16) for every point\n"
            "  --mpi N         train each point data-parallel on N MPI ranks (mpirun -np N tpsc train ...)\n"
            "  --launcher CMD  train each point as `CMD tpsc train ...`, e.g. 'srun -n 16' or\n"
            "                  'mpirun -np 8 --hostfile hosts' (docs/distributed.md)\n"
            "  --plot-script F gnuplot script (default scripts/plot_sweep.gp of the source tree);\n"
            "                  --no-plot skips the plot\n"
            "  --title T       the plot's title\n"
            "  --quiet         no per-run defaults log\n"
            "Columns and naming: docs/sweeps.md.\n");
}

/* Unique methods of summary rows, space separated, in order of first appearance. */
static void method_list(const tpsc_sweep_row *rows, size_t n, char *out, size_t cap) {
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        bool seen = false;
        for (size_t j = 0; j < i && !seen; j++) seen = !strcmp(rows[j].method, rows[i].method);
        if (!seen && len < cap) len += (size_t)snprintf(out + len, cap - len, "%s%s", len ? " " : "", rows[i].method);
    }
}

/* The default script relative to the source tree: from the working directory, else from the
 * executable's (build/tpsc -> build/../scripts/plot_sweep.gp). */
static const char *default_script(char *buf, size_t cap) {
    struct stat sb;
    if (stat("scripts/plot_sweep.gp", &sb) == 0) return "scripts/plot_sweep.gp";
    char exe[1024];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0) return "scripts/plot_sweep.gp";
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash) *slash = '\0';
    snprintf(buf, cap, "%s/../scripts/plot_sweep.gp", exe);
    return stat(buf, &sb) == 0 ? buf : "scripts/plot_sweep.gp";
}

/* gnuplot on summary.csv; a missing gnuplot or script only skips the plot. Returns 0 or 1. */
static int plot(const char *dir, const char *script, const tpsc_sweep_row *rows, size_t n, const char *title) {
    struct stat sb;
    if (stat(script, &sb) != 0) {
        fprintf(stderr, "tpsc sweep: plot skipped: %s not found (run from the tpsc source tree or pass --plot-script)\n",
                script);
        return 0;
    }
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "tpsc sweep: plot skipped: gnuplot is not installed (Debian: apt-get install gnuplot-nox); "
                        "the tables are written\n");
        return 0;
    }
    if (strchr(dir, '\'') || strchr(title, '\'')) {
        fprintf(stderr, "tpsc sweep: plot skipped: the folder name holds a quote, which gnuplot's -e cannot take\n");
        return 0;
    }
    char methods[256], defs[4096];
    method_list(rows, n, methods, sizeof methods);
    snprintf(defs, sizeof defs, "csv='%s/summary.csv'; png='%s/results.png'; ttl='%s'; methods='%s'", dir, dir, title,
             methods);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "tpsc sweep: plot skipped: fork failed: %s\n", strerror(errno));
        return 0;
    }
    if (pid == 0) {
        execlp("gnuplot", "gnuplot", "-e", defs, script, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "tpsc sweep: gnuplot failed on %s/summary.csv (script %s)\n", dir, script);
        return 1;
    }
    printf("plot: %s/results.png\n", dir);
    return 0;
}

static void show_progress(void *user, size_t index, size_t points, const char *run, const char *what, bool done) {
    (void)user;
    if (done && strcmp(what, "done") == 0) return; /* the trainer's own last line says it */
    fprintf(stderr, "== sweep [%zu/%zu] %s: %s\n", index + 1, points, run, what);
}

int cmd_sweep(int argc, char **argv) {
    const char *recipe_path = NULL, *checkpoint = NULL, *out = NULL, *script = NULL, *value;
    const char *title_arg = NULL;
    const char *sets[128];
    int n_sets = 0, threads = -1;
    bool do_plot = true, quiet = false;
    char launcher[512] = "";
    static tpsc_sweep_grid grid;
    static tpsc_recipe base;
    tpsc_status st = TPSC_OK;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return 0;
        } else if (cli_opt(argc, argv, &i, "--grid", &value) && value) {
            st = tpsc_grid_add(&grid, value);
            if (st != TPSC_OK) return cli_fail("sweep", st);
        } else if (cli_opt(argc, argv, &i, "--set", &value) && value && n_sets < 128) {
            sets[n_sets++] = value;
        } else if (cli_opt(argc, argv, &i, "--eval", &value) && value) {
            checkpoint = value;
        } else if (cli_opt(argc, argv, &i, "--out", &value) && value) {
            out = value;
        } else if (cli_opt(argc, argv, &i, "--precision", &value) && value && n_sets < 128) {
            static char set[64];
            snprintf(set, sizeof set, "run.precision=%s", value);
            sets[n_sets++] = set;
        } else if (cli_opt(argc, argv, &i, "--threads", &value)) {
            if (!cli_int("sweep", "--threads", value, 0, 1024, &threads)) return 2;
        } else if (cli_opt(argc, argv, &i, "--mpi", &value)) {
            int ranks;
            if (!cli_int("sweep", "--mpi", value, 1, 4096, &ranks)) return 2;
            snprintf(launcher, sizeof launcher, "mpirun -np %d", ranks);
        } else if (cli_opt(argc, argv, &i, "--launcher", &value) && value && value[0]) {
            snprintf(launcher, sizeof launcher, "%s", value);
        } else if (cli_opt(argc, argv, &i, "--title", &value) && value) {
            title_arg = value;
        } else if (cli_opt(argc, argv, &i, "--plot-script", &value) && value) {
            script = value;
        } else if (!strcmp(argv[i], "--no-plot")) {
            do_plot = false;
        } else if (!strcmp(argv[i], "--quiet")) {
            quiet = true;
        } else if (argv[i][0] != '-' && !recipe_path) {
            recipe_path = argv[i];
        } else {
            fprintf(stderr, "tpsc sweep: unexpected argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (!!recipe_path == !!checkpoint) {
        fprintf(stderr, "tpsc sweep: give either RECIPE.ini (train each point) or --eval CKPT.h5\n");
        usage(stderr);
        return 2;
    }
    if (launcher[0] && checkpoint) {
        fprintf(stderr, "tpsc sweep: --mpi / --launcher train points; an --eval sweep runs in this process\n");
        return 2;
    }
    char exe[1024] = "";
    if (launcher[0]) {
        ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (len <= 0) {
            fprintf(stderr, "tpsc sweep: cannot find the tpsc executable (/proc/self/exe) for --mpi\n");
            return 1;
        }
        exe[len] = '\0';
    }
    if (grid.n_axes == 0) {
        fprintf(stderr, "tpsc sweep: no --grid given\n");
        usage(stderr);
        return 2;
    }
    st = checkpoint ? tpsc_sweep_checkpoint_recipe(checkpoint, &base) : tpsc_recipe_load(&base, recipe_path);
    for (int i = 0; st == TPSC_OK && i < n_sets; i++) st = tpsc_recipe_set(&base, sets[i]);
    if (st != TPSC_OK) return cli_fail("sweep", st);

    char out_buf[TPSC_RECIPE_PATH_MAX * 2 + 16];
    if (!out) {
        if (checkpoint) {
            const char *slash = strrchr(checkpoint, '/');
            snprintf(out_buf, sizeof out_buf, "%.*s%seval-sweep", slash ? (int)(slash - checkpoint) : 0, checkpoint,
                     slash ? "/" : "");
        } else {
            snprintf(out_buf, sizeof out_buf, "%s/sweep-%s", base.run.out_dir, base.run.name);
        }
        out = out_buf;
    }
    if (quiet || checkpoint) tpsc_log_set_level(TPSC_LOG_WARN);
    size_t n = tpsc_grid_size(&grid);
    tpsc_sweep_row *rows = tpsc_calloc(n, sizeof *rows, "sweep rows");
    if (!rows) return cli_fail("sweep", TPSC_ERR_NOMEM);
    tpsc_sweep_opts opts = {.out_dir = out, .checkpoint = checkpoint, .threads = threads, .progress = show_progress,
                            .launcher = launcher, .exe = exe};
    tpsc_sweep_counts counts;
    fprintf(stderr, "sweep: %zu points into %s\n", n, out);
    cli_stop_on_signals();
    st = tpsc_sweep_run(&base, &grid, &opts, rows, &counts);
    if (st != TPSC_OK) {
        tpsc_free(rows);
        cli_fail("sweep", st);
        return st == TPSC_ERR_INTERRUPTED ? cli_interrupted_exit_code() : 1;
    }
    printf("sweep %s: %zu points (%zu skipped as finished, %zu resumed, %zu trained, %zu evaluated", out, counts.points,
           counts.skipped, counts.resumed, counts.trained, counts.evaluated);
    if (counts.busy) printf(", %zu left to other sweep processes: rerun when they end for the full tables", counts.busy);
    printf(")\n");
    printf("tables: %s/results.csv, %s/summary.csv, %s/results.md\n", out, out, out);
    int rc = 0;
    if (do_plot) {
        char title[256];
        if (title_arg) snprintf(title, sizeof title, "%s", title_arg);
        else snprintf(title, sizeof title, "%s: top-1 vs GMACs/image", checkpoint ? "evaluation sweep" : base.run.name);
        char script_buf[1200];
        rc = plot(out, script ? script : default_script(script_buf, sizeof script_buf), rows, n, title);
    }
    tpsc_free(rows);
    return rc;
}
