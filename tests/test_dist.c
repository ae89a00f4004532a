/* Data-parallel training and gradient accumulation, end to end on a slice of Fashion-MNIST:
 *   - optim.accum_steps = 2 at batch B ends with the weights of accum_steps = 1 at batch 2B;
 *   - `mpirun -np 2 tpsc train` at global batch 2B ends with the weights of one process at 2B;
 *   - a checkpoint of a 2-rank run resumes as a 1-rank run, and the reverse, on the same path;
 *   - a rank killed with SIGKILL ends the job, non-zero and with a message, in bounded time.
 * The MPI tests run the built `tpsc` under the mpiexec CMake found (Open MPI), passing
 * --allow-run-as-root --oversubscribe themselves, and are skipped in a build without MPI.
 *
 * Tolerance of the weight comparisons. The runs see the same images in the same steps and
 * differ only in the order of float32 sums: a batch mean over 2B images against the mean of two
 * means over B (the average of the ranks, or of the micro-batches). That perturbs each gradient
 * by a few float32 ulps (relative ~1e-7 to 1e-6). The model is a small dense ViT, trained with
 * SGD (momentum 0.9, lr 0.05, no clipping, no noise, no augmentation), whose update is linear in
 * the gradient, so the weights drift apart by about that relative error times how far they move
 * (~0.1 in these K = 16 steps): ~1e-7. We allow 1e-6 (max abs over every weight; measured
 * 4.5e-8) and require the weights to have moved from their initial values by over 100x that, so
 * the comparison is not vacuous: a sum instead of a mean, a rank's gradient left out, or a wrong
 * shard each change the weights by about the update itself (~1e-2). */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "src/io/checkpoint.h"
#include "src/recipe/recipe.h"
#include "src/train/setup.h"
#include "src/train/trainer.h"
#include "src/util/log.h"
#include "support/files.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"
#define TOL 1e-6

static const char *recipe_text =
    "[model]\narch = custom\nimg_size = 28\npatch_size = 7\nin_chans = 1\nembed_dim = 24\ndepth = 3\n"
    "num_heads = 2\nnum_classes = 10\n"
    "[tps]\nmethod = none\n"
    "[data]\nformat = fashion_mnist\nbatch_size = 32\neval_batch_size = 100\nworkers = 1\nlimit_train = 256\n"
    "limit_val = 250\n"
    "[augment]\nrrc = false\nhflip = 0\ncolor_jitter = 0\nmean = 0.286\nstd = 0.353\ncrop_pct = 1.0\nmixup = 0\n"
    "cutmix = 0\nrandom_erase = 0\nrandaug =\nsmoothing = 0\n"
    "[optim]\nname = sgd\nlr = 0.05\nmomentum = 0.9\nclip_grad = 0\n"
    "[schedule]\nepochs = 2\nwarmup_epochs = 0\n"
    "[loss]\ndistill_weight = 0\n"
    "[run]\nseed = 7\nthreads = 1\nlog_every = 1000\n";

static char dir[64];

static void setup_dir(void) {
    snprintf(dir, sizeof dir, "/tmp/tpsc_dist_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    tpsc_log_set_level(TPSC_LOG_WARN);
    char path[128];
    snprintf(path, sizeof path, "%s/tiny.ini", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs(recipe_text, f);
    fclose(f);
    /* Open MPI refuses root unless told; CI runs as root. LeakSanitizer (ASan builds) would
     * report Open MPI's own allocations kept until exit. */
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
}

static bool have_fmnist(void) { return access(FMNIST, R_OK) == 0; }

static void need_mpi(void) {
#ifndef TPSC_MPIEXEC
    cr_skip_test("built without MPI");
#endif
    if (!have_fmnist()) cr_skip_test("dataset-fashion-mnist not installed");
}

/* Runs `tpsc train tiny.ini --set run.name=NAME EXTRA` under `np` ranks (0: no launcher). */
static int train(int np, const char *name, const char *extra) {
    char cmd[2048];
    const char *launcher = "";
    char lbuf[512] = "";
#ifdef TPSC_MPIEXEC
    if (np > 0) {
        snprintf(lbuf, sizeof lbuf, "%s --allow-run-as-root --oversubscribe -np %d ", TPSC_MPIEXEC, np);
        launcher = lbuf;
    }
#else
    (void)np;
#endif
    snprintf(cmd, sizeof cmd,
             "%s%s/tpsc train %s/tiny.ini --quiet --set run.out_dir=%s --set run.name=%s %s > %s/%s.log 2>&1", launcher,
             TPSC_BINARY_DIR, dir, dir, name, extra, dir, name);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128 + (WIFSIGNALED(rc) ? WTERMSIG(rc) : 0);
}

static void show_log(const char *name) {
    char path[256], line[512];
    snprintf(path, sizeof path, "%s/%s.log", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) fputs(line, stderr);
    fclose(f);
}

static void train_ok(int np, const char *name, const char *extra) {
    int rc = train(np, name, extra);
    if (rc != 0) show_log(name);
    cr_assert_eq(rc, 0, "%s (np %d, %s) exited with %d", name, np, extra, rc);
}

/* The model of the recipe (with `method`, NULL: the recipe's) with a checkpoint's weights (or the
 * initial ones for file = NULL). */
static void load_model(const char *name, const char *file, const char *method, vit_model *m) {
    static tpsc_recipe r;
    cr_assert_eq(tpsc_recipe_load_string(&r, recipe_text, "tiny.ini"), TPSC_OK, "%s", tpsc_last_error());
    if (method) {
        char set[64];
        snprintf(set, sizeof set, "tps.method=%s", method);
        cr_assert_eq(tpsc_recipe_set(&r, set), TPSC_OK, "%s", tpsc_last_error());
        cr_assert_eq(tpsc_recipe_set(&r, "tps.prune_loc=1, 2"), TPSC_OK, "%s", tpsc_last_error());
    }
    cr_assert_eq(tpsc_build_model(&r, m), TPSC_OK, "%s", tpsc_last_error());
    if (!file) return;
    char path[256];
    snprintf(path, sizeof path, "%s/%s/%s", dir, name, file);
    cr_assert_eq(tpsc_checkpoint_load_params(path, "/model", &m->params, NULL, NULL), TPSC_OK, "%s", tpsc_last_error());
}

static void load_weights(const char *name, const char *file, vit_model *m) { load_model(name, file, NULL, m); }

static double max_diff(const vit_model *a, const vit_model *b) {
    double d = 0;
    for (size_t i = 0; i < a->params.total; i++) {
        double e = fabs((double)a->params.data[i] - (double)b->params.data[i]);
        if (e > d) d = e;
    }
    return d;
}

/* Compares run `name`'s last.h5 with run `ref`'s. */
static void assert_same_weights(const char *name, const char *ref) {
    vit_model a, b, init;
    load_weights(name, "last.h5", &a);
    load_weights(ref, "last.h5", &b);
    load_weights(NULL, NULL, &init);
    double d = max_diff(&a, &b), moved = max_diff(&b, &init);
    cr_log_info("%s vs %s: max |dw| = %.3g; moved from init by %.3g", name, ref, d, moved);
    cr_expect(moved > 100 * TOL, "the weights hardly moved (%.3g): the comparison would prove nothing", moved);
    cr_expect(d <= TOL, "%s and %s differ by %.3g > %.1g", name, ref, d, TOL);
    vit_model_free(&a);
    vit_model_free(&b);
    vit_model_free(&init);
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

TestSuite(dist, .init = setup_dir, .fini = remove_dir, .timeout = 120);

Test(dist, accum_2_at_batch_b_matches_accum_1_at_2b) {
    if (!have_fmnist()) cr_skip_test("dataset-fashion-mnist not installed");
    train_ok(0, "b32", "");
    train_ok(0, "b16x2", "--set data.batch_size=16 --set optim.accum_steps=2");
    assert_same_weights("b16x2", "b32");
}

Test(dist, two_ranks_match_one_process) {
    need_mpi();
    train_ok(0, "one", "");
    train_ok(2, "two", "");
    assert_same_weights("two", "one");
    /* Without overlap, and with accumulation on top: the same weights again. */
    train_ok(2, "two_noov", "--set run.overlap_allreduce=false");
    assert_same_weights("two_noov", "one");
    train_ok(2, "two_accum", "--set data.batch_size=16 --set optim.accum_steps=2");
    assert_same_weights("two_accum", "one");
}

/* dTPS (Gumbel noise, predictors, squeeze, ratio loss) on 2 ranks, reducing during the backward
 * or after it: the same buckets go through the same MPI_Iallreduce in the same order either way,
 * so the weights must agree exactly (tolerance 0). A bucket started before its last gradient was
 * added would change them. */
Test(dist, overlap_changes_nothing_on_dtps) {
    need_mpi();
    const char *dtps = "--set tps.method=dtps --set 'tps.prune_loc=1, 2' --set tps.keep_ratio=0.7 --set schedule.epochs=1";
    char extra[512];
    snprintf(extra, sizeof extra, "%s --set run.overlap_allreduce=true", dtps);
    train_ok(2, "dtps_overlap", extra);
    snprintf(extra, sizeof extra, "%s --set run.overlap_allreduce=false", dtps);
    train_ok(2, "dtps_after", extra);
    vit_model a, b, init;
    load_model("dtps_overlap", "last.h5", "dtps", &a);
    load_model("dtps_after", "last.h5", "dtps", &b);
    load_model(NULL, NULL, "dtps", &init);
    double d = max_diff(&a, &b), moved = max_diff(&a, &init);
    cr_expect(moved > 1e-3, "the weights hardly moved (%.3g)", moved);
    cr_expect(d == 0, "overlapped and non-overlapped reductions differ by %.3g", d);
    vit_model_free(&a);
    vit_model_free(&b);
    vit_model_free(&init);
}

/* Stops at step 6 of 16 (inside epoch 1 of 2, so the loader position is mid-epoch), then
 * resumes under the other number of ranks to the end. */
Test(dist, resume_across_rank_counts) {
    need_mpi();
    train_ok(0, "ref", "");
    train_ok(2, "two_half", "--set schedule.max_steps=6");
    char extra[512];
    snprintf(extra, sizeof extra, "--resume %s/two_half/last.h5", dir);
    train_ok(0, "two_then_one", extra);
    assert_same_weights("two_then_one", "ref");
    train_ok(0, "one_half", "--set schedule.max_steps=6");
    snprintf(extra, sizeof extra, "--resume %s/one_half/last.h5", dir);
    train_ok(2, "one_then_two", extra);
    assert_same_weights("one_then_two", "ref");
}

Test(dist, batch_not_divisible_by_ranks_is_an_error) {
    need_mpi();
    int rc = train(2, "odd", "--set data.batch_size=33");
    cr_assert_neq(rc, 0);
    char path[256];
    snprintf(path, sizeof path, "%s/odd.log", dir);
    char *text = tfile_read(path, NULL);
    cr_expect(strstr(text, "batch_size = 33 is not divisible by the 2 MPI ranks"), "log: %s", text);
    free(text);
}

/* The children of `parent`: mpirun forks the local ranks itself. (Their comm is "exe", as
 * tpsc re-executes /proc/self/exe at start.) */
static int tpsc_children(pid_t parent, pid_t *out, int cap) {
    DIR *d = opendir("/proc");
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < cap) {
        char path[300], buf[512];
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = '\0';
        /* pid (comm) state ppid ... */
        char *close = strrchr(buf, ')');
        if (!close) continue;
        int ppid = 0;
        if (sscanf(close + 2, "%*c %d", &ppid) == 1 && ppid == parent) out[n++] = (pid_t)atoi(e->d_name);
    }
    closedir(d);
    return n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

Test(dist, a_killed_rank_ends_the_job) {
    need_mpi();
#ifdef TPSC_MPIEXEC
    char log[128], ini[128], outdir[128];
    snprintf(log, sizeof log, "%s/kill.log", dir);
    snprintf(ini, sizeof ini, "%s/tiny.ini", dir);
    snprintf(outdir, sizeof outdir, "run.out_dir=%s", dir);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        dup2(fd, 1);
        dup2(fd, 2);
        setpgid(0, 0);
        execl(TPSC_MPIEXEC, TPSC_MPIEXEC, "--allow-run-as-root", "--oversubscribe", "-np", "2", TPSC_BINARY_DIR "/tpsc",
              "train", ini, "--quiet", "--set", outdir, "--set", "run.name=kill", "--set", "schedule.epochs=100000",
              (char *)NULL);
        _exit(127);
    }
    /* Wait until both ranks train (the metrics file has steps), then kill one. */
    char metrics[160];
    snprintf(metrics, sizeof metrics, "%s/kill/metrics.jsonl", dir);
    pid_t ranks[4];
    int n = 0;
    double t0 = now_s();
    while (now_s() - t0 < 60) {
        FILE *f = fopen(metrics, "r");
        long size = 0;
        if (f) {
            fseek(f, 0, SEEK_END);
            size = ftell(f);
            fclose(f);
        }
        n = tpsc_children(pid, ranks, 4);
        if (size > 0 && n == 2) break;
        usleep(100000);
    }
    if (n != 2) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_fail("the 2-rank job did not start training within 60 s");
    }
    kill(ranks[1], SIGKILL);
    /* The limit: mpirun notices a child's death at once; 30 s leaves room for a loaded machine. */
    int status = 0;
    double t_kill = now_s();
    pid_t done = 0;
    while ((done = waitpid(pid, &status, WNOHANG)) == 0 && now_s() - t_kill < 30) usleep(50000);
    if (done == 0) {
        kill(-pid, SIGKILL);
        waitpid(pid, NULL, 0);
        cr_assert_fail("the job was still running 30 s after a rank was killed");
    }
    cr_log_info("the job ended %.2f s after the kill", now_s() - t_kill);
    cr_expect(WIFEXITED(status) && WEXITSTATUS(status) != 0, "mpirun exited with status %d", status);
    char *text = tfile_read(log, NULL);
    cr_expect(strstr(text, "process rank") && strstr(text, "signal 9"), "no message naming the rank and the signal: %s",
              text);
    free(text);
#endif
}

/* `tpsc sweep --launcher` trains each point under the launcher and reads its results back. */
Test(dist, sweep_runs_points_under_mpi) {
    need_mpi();
#ifdef TPSC_MPIEXEC
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             "%s/tpsc sweep %s/tiny.ini --grid optim.lr=0.05,0.02 --set schedule.epochs=1 --out %s/sweep --no-plot "
             "--quiet --launcher '%s --allow-run-as-root --oversubscribe -np 2' > %s/sweep.log 2>&1",
             TPSC_BINARY_DIR, dir, dir, TPSC_MPIEXEC, dir);
    int rc = system(cmd);
    if (rc != 0) show_log("sweep");
    cr_assert_eq(rc, 0, "the sweep failed");
    const char *points[] = {"lr-0.05", "lr-0.02"};
    for (int k = 0; k < 2; k++) {
        char path[256], line[2048];
        snprintf(path, sizeof path, "%s/sweep/%s/metrics.jsonl", dir, points[k]);
        FILE *f = fopen(path, "r");
        cr_assert_not_null(f, "no %s", path);
        bool two_ranks = false;
        while (fgets(line, sizeof line, f)) two_ranks |= strstr(line, "\"ranks\": 2") != NULL;
        fclose(f);
        cr_expect(two_ranks, "%s was not trained on 2 ranks", points[k]);
        snprintf(path, sizeof path, "%s/sweep/%s/done.json", dir, points[k]);
        cr_expect(access(path, R_OK) == 0, "no %s", path);
    }
    char path[256];
    snprintf(path, sizeof path, "%s/sweep/results.md", dir);
    char *text = tfile_read(path, NULL);
    cr_expect(strstr(text, "| lr-0.05 |") && strstr(text, "| lr-0.02 |") && strstr(text, "8 steps"), "%s", text);
    free(text);
#endif
}

/* `tpsc eval` under 2 ranks: each rank evaluates its shard of the 250 validation images and
 * rank 0 prints the whole set's table. The counts are integers summed over ranks, so the row
 * (images, top-1, top-5, GMACs) must equal one process's exactly; a rank left out, or every rank
 * evaluating the whole set, changes the image count. Both engines: the framework's forward and
 * libtpsinfer (--precision fp32). */
static void eval_row(int np, const char *ckpt, const char *extra, const char *name, char *row, size_t cap) {
    char cmd[2048], lbuf[512] = "";
#ifdef TPSC_MPIEXEC
    if (np > 0) snprintf(lbuf, sizeof lbuf, "%s --allow-run-as-root --oversubscribe -np %d ", TPSC_MPIEXEC, np);
#else
    (void)np;
#endif
    snprintf(cmd, sizeof cmd, "%s%s/tpsc eval %s --threads 1 %s > %s/%s.log 2>&1", lbuf, TPSC_BINARY_DIR, ckpt, extra,
             dir, name);
    int rc = system(cmd);
    if (rc != 0) show_log(name);
    cr_assert_eq(rc, 0, "%s failed", cmd);
    char path[256], line[1024];
    snprintf(path, sizeof path, "%s/%s.log", dir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f);
    row[0] = '\0';
    int rows = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "| ", 2) && strstr(line, ckpt)) {
            /* up to the images/s column, which is a timing */
            char *cut = line;
            for (int bars = 0; *cut && bars < 7; cut++) bars += *cut == '|';
            *cut = '\0';
            snprintf(row, cap, "%s", line);
            rows++;
        }
    fclose(f);
    cr_assert_eq(rows, 1, "%s printed %d rows for %s (rank 0 alone prints)", name, rows, ckpt);
}

Test(dist, eval_on_two_ranks_matches_one_process) {
    need_mpi();
    train_ok(0, "evalme", "--set schedule.epochs=1");
    char ckpt[256], one[1024], two[1024];
    snprintf(ckpt, sizeof ckpt, "%s/evalme/last.h5", dir);
    const char *engines[] = {"", "--precision fp32"};
    for (int k = 0; k < 2; k++) {
        eval_row(0, ckpt, engines[k], "eval_one", one, sizeof one);
        eval_row(2, ckpt, engines[k], "eval_two", two, sizeof two);
        cr_expect(strstr(one, "| 250 |"), "one process did not evaluate the 250 images: %s", one);
        cr_expect_str_eq(two, one, "engine '%s'", engines[k]);
    }
}
