/* What libhdf5's first read in a child (src/common/h5_probe.h) costs a resume of a DeiT-S
 * checkpoint (docs/reliability.md, "libhdf5's own bugs"): the load a resume does (config,
 * /model, /optimizer, /state, /ema), timed with the probe off and on, alternating, medians.
 *
 *   build/bench/h5_probe_cost [ROUNDS] [DIR] [keep]   (default 11 rounds, DIR /tmp; keep: leave
 *                                                     the checkpoint there)
 *
 * Two cases: an older file, probed at the first of the readers' opens and then remembered
 * ("settled", what loading a checkpoint costs; the remembered files are forgotten before each
 * load); and a file changed just before the load, which the probe remembers only once it is
 * 100 ms old, so that the first two opens fork ("fresh"). And "held": the settled file loaded
 * into a model and buffers allocated before the rounds, as a process that already holds the
 * memory the load writes (each page of it then takes a copy-on-write fault after the fork).
 * The checkpoint holds random
 * weights, AdamW moments and an EMA (about 350 MB), written once to DIR and read from the page
 * cache. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "src/common/h5_probe.h"
#include "src/io/checkpoint.h"
#include "src/model/vit.h"
#include "src/perf/bench.h"
#include "src/util/alloc.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Sets the file's times to `age` seconds ago (0: now). */
static void set_age(const char *path, int age) {
    struct timespec t[2];
    clock_gettime(CLOCK_REALTIME, &t[0]);
    t[0].tv_sec -= age;
    t[1] = t[0];
    if (utimensat(0, path, t, 0) != 0) perror(path);
}

/* One resume as `tpsc train --resume` does it: the config, then the model and its buffers, then
 * the weights, moments, state and EMA; the seconds it took. The probe runs at the first open,
 * while the process is small: a fork's cost grows with the memory the parent writes afterwards
 * (each page written is a copy-on-write fault). */
static double load_once(const char *path, vit_model *held, float **held_bufs) {
    const double t0 = now_s();
    vit_config vit;
    tok_config tps;
    vit_model own, *mp = held ? held : &own;
    tpsc_status st = tpsc_checkpoint_read_config(path, &vit, &tps, NULL);
    if (st == TPSC_OK && !held) st = vit_model_create(&own, &vit, &tps);
    if (st != TPSC_OK) {
        fprintf(stderr, "h5_probe_cost: %s\n", tpsc_last_error());
        exit(1);
    }
    vit_model m = *mp;
    float *bufs[3];
    for (int i = 0; i < 3; i++)
        if (!(bufs[i] = held ? held_bufs[i] : tpsc_malloc(m.params.total * sizeof(float), "buffer"))) exit(1);
    st = tpsc_checkpoint_load_params(path, "/model", &m.params, NULL, NULL);
    uint64_t rng[4 * 8];
    int64_t pos[16];
    tpsc_checkpoint_state cs = {.opt_m = bufs[0], .opt_v = bufs[1], .rng_states = rng, .rng_cap = 8, .loader_pos = pos,
                                .loader_cap = 16};
    if (st == TPSC_OK) st = tpsc_checkpoint_load_state(path, &m.params, &cs);
    if (st == TPSC_OK) st = tpsc_checkpoint_load_tensors(path, "/ema", &m.params, bufs[2], NULL, NULL);
    if (st != TPSC_OK) {
        fprintf(stderr, "h5_probe_cost: %s\n", tpsc_last_error());
        exit(1);
    }
    const double t = now_s() - t0;
    if (held) return t;
    for (int i = 0; i < 3; i++) tpsc_free(bufs[i]);
    vit_model_free(&own);
    return t;
}

int main(int argc, char **argv) {
    const int rounds = argc > 1 ? atoi(argv[1]) : 11;
    const char *dir = argc > 2 ? argv[2] : "/tmp";
    if (rounds < 1 || rounds > 1000) return fprintf(stderr, "usage: h5_probe_cost [ROUNDS] [DIR]\n"), 2;
    char path[512];
    snprintf(path, sizeof path, "%s/h5_probe_cost_deit_s.h5", dir);

    vit_config vit;
    tok_config tps = {0};
    vit_model m;
    if (vit_config_named(&vit, "deit_small_patch16_224") != TPSC_OK || vit_model_create(&m, &vit, &tps) != TPSC_OK) {
        fprintf(stderr, "h5_probe_cost: %s\n", tpsc_last_error());
        return 1;
    }
    const size_t n = m.params.total;
    float *bufs[3];
    for (int i = 0; i < 3; i++) {
        bufs[i] = tpsc_malloc(n * sizeof(float), "buffer");
        if (!bufs[i]) return 1;
    }
    uint64_t s = 42;
    for (size_t i = 0; i < n; i++) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        m.params.data[i] = (float)((s >> 40) & 0xffff) / 65536.0f - 0.5f;
        bufs[0][i] = m.params.data[i] * 0.01f, bufs[1][i] = m.params.data[i] * m.params.data[i], bufs[2][i] = m.params.data[i];
    }
    uint64_t rng[4] = {1, 2, 3, 4};
    int64_t pos[2] = {0, 0};
    const tpsc_checkpoint ck = {.vit = &vit, .tps = &tps, .params = &m.params, .opt_m = bufs[0], .opt_v = bufs[1],
                                .opt_step = 10, .opt_name = "adamw", .ema = bufs[2], .rng_states = rng, .n_rng = 1,
                                .loader_pos = pos, .n_loader_pos = 2, .epoch = 1, .step = 10};
    if (tpsc_checkpoint_save(path, &ck) != TPSC_OK) {
        fprintf(stderr, "h5_probe_cost: %s\n", tpsc_last_error());
        return 1;
    }
    struct stat sb;
    stat(path, &sb);
    printf("DeiT-S checkpoint %s, %.1f MB, %d rounds, probe off / on alternating, medians\n", path, sb.st_size / 1e6,
           rounds);
    load_once(path, NULL, NULL); /* page cache */

    double *off = malloc(sizeof(double) * (size_t)rounds), *on = malloc(sizeof(double) * (size_t)rounds);
    for (int c = 0; c < 3; c++) {
        const bool fresh = c == 1, hold = c == 2;
        for (int r = 0; r < rounds; r++) {
            set_age(path, fresh ? 0 : 3600);
            if (!fresh) usleep(200000); /* setting the times sets the change time: let it age */
            setenv("TPSC_HDF5_PROBE", "off", 1);
            off[r] = load_once(path, hold ? &m : NULL, bufs);
            setenv("TPSC_HDF5_PROBE", "on", 1);
            h5_probe_forget();
            if (fresh) set_age(path, 0);
            on[r] = load_once(path, hold ? &m : NULL, bufs);
        }
        const double moff = tpsc_median(off, rounds), mon = tpsc_median(on, rounds);
        printf("%-8s off %7.1f ms  on %7.1f ms  ratio %.3f  (+%.1f ms)\n", fresh ? "fresh" : hold ? "held" : "settled", 1e3 * moff,
               1e3 * mon, mon / moff, 1e3 * (mon - moff));
    }
    if (!(argc > 3 && !strcmp(argv[3], "keep"))) remove(path);
    free(off), free(on);
    for (int i = 0; i < 3; i++) tpsc_free(bufs[i]);
    vit_model_free(&m);
    return 0;
}
