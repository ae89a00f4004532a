/* Data-parallel training over MPI (Open MPI): the process group and the few collectives the
 * trainer needs. Without MPI (built with TPSC_WITH_MPI=OFF, or a process not started by a
 * launcher such as mpirun or srun) there is one rank and every call is a no-op, so a single
 * process runs exactly as it always did.
 *
 * The job: `mpirun -np N tpsc train RECIPE`. Every rank builds the same model, rank 0's weights
 * are broadcast, each rank trains on its shard of the global batch, and gradients are averaged
 * (dist_grad_sync). Errors are MPI's default, fatal: a rank that dies makes mpirun stop the job
 * and name the rank. */
#ifndef TPSC_DIST_DIST_H
#define TPSC_DIST_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "autograd/ag.h"
#include "autograd/params.h"
#include "src/util/status.h"

/* Joins the MPI job if this process was started by an MPI launcher (MPI_Init_thread, funneled:
 * only the main thread calls MPI). Call once, from main, before anything else reads argv. */
tpsc_status dist_init(int *argc, char ***argv);
/* Leaves the job (MPI_Finalize); safe when dist_init did nothing. */
void dist_finalize(void);
/* Ends every rank of the job at once (MPI_Abort), for a failure on one rank that the others
 * would otherwise wait on forever in a collective. Returns only without MPI. */
void dist_abort(int code);

bool dist_active(void); /* joined a job of more than one rank */
int dist_rank(void);    /* 0 without MPI */
int dist_size(void);    /* 1 without MPI */

/* In-place sum over ranks of n doubles (MPI_Allreduce). */
tpsc_status dist_sum_doubles(double *v, int n);
/* In-place maximum over ranks. */
tpsc_status dist_max_doubles(double *v, int n);
/* rank 0's n floats to every rank (MPI_Bcast, in chunks under INT_MAX). */
tpsc_status dist_broadcast_floats(float *v, size_t n);

/* 64-bit FNV-1a of the bytes, for cheap comparisons across ranks. */
uint64_t dist_checksum(const void *data, size_t bytes, uint64_t h);
/* Compares a checksum over ranks: TPSC_ERR_INTERNAL naming `what`, the first rank that
 * differs from rank 0 and both values when they disagree. */
tpsc_status dist_check_same(uint64_t h, const char *what);

/* ---- gradient averaging ------------------------------------------------------------------ */

/* The store's one gradient block cut into a few large buckets at parameter boundaries (the
 * last parameters, the head and the last blocks, in the last bucket). Each bucket is averaged
 * with one MPI_Iallreduce. With overlap, the hook on the autograd context starts a bucket as
 * soon as the backward has run every node that reads one of its parameters, so the reduction of
 * the late layers runs while the early layers' backward is computed; buckets start in a fixed
 * order (last first), the same on every rank, as MPI requires of collectives. */
typedef struct dist_grad_sync {
    ag_params *params;
    int n_buckets;
    size_t *start, *count;   /* [n_buckets] float ranges in params->grad */
    int *param_bucket;       /* [params->count] */
    int *first_use;          /* [n_buckets] lowest tape node reading a parameter of the bucket */
    void *requests;          /* [n_buckets] MPI_Request */
    int next;                /* next bucket to start (counting down), -1 when all started */
    bool overlap, armed;
    double t_backward_end;
    /* timings of the last step, seconds */
    double exposed_s;        /* from the end of the backward to all buckets averaged */
    double inflight_s;       /* from the first bucket's start to the last one's completion */
    int started_early;       /* buckets started during the backward */
    double t_first_start;
} dist_grad_sync;

/* bucket_bytes: the target size of a bucket (parameters are never split). */
tpsc_status dist_grad_sync_init(dist_grad_sync *s, ag_params *p, size_t bucket_bytes, bool overlap);
void dist_grad_sync_free(dist_grad_sync *s);
/* Before the backward of a step whose gradients are to be averaged: with overlap, reads the
 * tape of ctx to find each bucket's last use and hooks the backward. */
void dist_grad_sync_arm(dist_grad_sync *s, ag_ctx *ctx);
/* After the backward: starts the buckets not started yet, waits for all, divides by N and
 * unhooks ctx. A no-op with one rank. */
tpsc_status dist_grad_sync_finish(dist_grad_sync *s, ag_ctx *ctx);

#endif
