/* infer_threads MODEL.h5 [THREADS] [RUNS]: one libtpsinfer model shared by THREADS threads
 * (default 4), each with its own workspace, running RUNS batches (default 3) at once; every
 * thread's logits must equal, bit for bit, those of the same batch run alone first (same
 * operations, same data, one OpenMP thread each). A plain program rather than a Criterion test
 * so that the ThreadSanitizer pass can run it (Criterion does not start under TSan); exit 1 on
 * a mismatch or an error. */
#include <omp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "src/infer/tps_infer.h"

enum { BATCH = 2 };

typedef struct job {
    const tps_model *model;
    const float *images;
    float *logits; /* [BATCH, K] */
    int runs;
    tps_status st;
    char error[256];
} job;

static void *run(void *arg) {
    job *j = arg;
    omp_set_num_threads(1);
    tps_workspace *ws = NULL;
    j->st = tps_workspace_create(j->model, BATCH, &ws);
    for (int r = 0; r < j->runs && j->st == TPS_OK; r++) j->st = tps_run(ws, j->images, BATCH, j->logits);
    if (j->st != TPS_OK) snprintf(j->error, sizeof j->error, "%s", tps_last_error());
    tps_workspace_free(ws);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: infer_threads MODEL.h5 [THREADS] [RUNS]\n");
        return 2;
    }
    int threads = argc > 2 ? atoi(argv[2]) : 4, runs = argc > 3 ? atoi(argv[3]) : 3;
    if (threads < 1 || threads > 64 || runs < 1) return 2;
    tps_model *m = NULL;
    if (tps_model_open(argv[1], &m) != TPS_OK) {
        fprintf(stderr, "infer_threads: %s\n", tps_last_error());
        return 1;
    }
    tps_model_info info;
    if (tps_model_get_info(m, &info) != TPS_OK) return 1;
    size_t S = (size_t)info.img_size, C = (size_t)info.in_chans, K = (size_t)info.num_classes;
    float *images = malloc(BATCH * C * S * S * sizeof(float));
    float *logits = calloc((size_t)(threads + 1) * BATCH * K, sizeof(float));
    job *jobs = calloc((size_t)threads + 1, sizeof *jobs);
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    if (!images || !logits || !jobs || !tid) return 1;
    /* a smooth, image-like pattern, different per sample */
    for (size_t i = 0; i < BATCH * C * S * S; i++) images[i] = (float)((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    for (int t = 0; t <= threads; t++)
        jobs[t] = (job){.model = m, .images = images, .logits = logits + (size_t)t * BATCH * K, .runs = runs};
    run(&jobs[threads]); /* alone first: the reference */
    if (jobs[threads].st != TPS_OK) {
        fprintf(stderr, "infer_threads: the single run failed: %s\n", jobs[threads].error);
        return 1;
    }
    for (int t = 0; t < threads; t++)
        if (pthread_create(&tid[t], NULL, run, &jobs[t]) != 0) return 1;
    for (int t = 0; t < threads; t++) pthread_join(tid[t], NULL);
    int bad = 0;
    for (int t = 0; t < threads; t++) {
        if (jobs[t].st != TPS_OK) {
            fprintf(stderr, "infer_threads: thread %d failed: %s\n", t, jobs[t].error);
            bad = 1;
        } else if (memcmp(jobs[t].logits, jobs[threads].logits, BATCH * K * sizeof(float)) != 0) {
            fprintf(stderr, "infer_threads: thread %d's logits differ from the single run's\n", t);
            bad = 1;
        }
    }
    if (!bad) printf("infer_threads: %d threads x %d runs on %s (%s): logits identical to one thread's\n", threads, runs,
                     argv[1], info.method);
    free(images), free(logits), free(jobs), free(tid);
    tps_model_close(m);
    return bad;
}
