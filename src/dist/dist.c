/* The process group: MPI when built with it and started by a launcher, one rank otherwise. */
#include "src/dist/dist.h"

#include <limits.h>
#include <stdlib.h>

#ifdef TPSC_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static bool g_mpi = false; /* MPI_Init was called */

/* Open MPI's mpirun sets OMPI_COMM_WORLD_SIZE, PMIx launchers (mpirun, srun --mpi=pmix) PMIX_RANK,
 * PMI-2 launchers (srun --mpi=pmi2, MPICH's) PMI_RANK. A plain `tpsc train` sets none of them and
 * never touches MPI. */
static bool launched_by_mpi(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK");
}

tpsc_status dist_init(int *argc, char ***argv) {
#ifdef TPSC_HAVE_MPI
    if (g_mpi || !launched_by_mpi()) return TPSC_OK;
    int provided = 0;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return tpsc_fail(TPSC_ERR_INTERNAL, "MPI_Init_thread failed");
    g_mpi = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    if (provided < MPI_THREAD_FUNNELED)
        return tpsc_fail(TPSC_ERR_INTERNAL, "MPI gives thread level %d, tpsc needs MPI_THREAD_FUNNELED", provided);
#else
    (void)argc, (void)argv;
#endif
    return TPSC_OK;
}

void dist_finalize(void) {
#ifdef TPSC_HAVE_MPI
    if (g_mpi) MPI_Finalize();
    g_mpi = false;
#endif
}

void dist_abort(int code) {
#ifdef TPSC_HAVE_MPI
    if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)code;
#endif
}

bool dist_active(void) { return g_size > 1; }
int dist_rank(void) { return g_rank; }
int dist_size(void) { return g_size; }

tpsc_status dist_sum_doubles(double *v, int n) {
#ifdef TPSC_HAVE_MPI
    if (g_size > 1 && MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return tpsc_fail(TPSC_ERR_INTERNAL, "MPI_Allreduce of %d doubles failed", n);
#else
    (void)v, (void)n;
#endif
    return TPSC_OK;
}

tpsc_status dist_max_doubles(double *v, int n) {
#ifdef TPSC_HAVE_MPI
    if (g_size > 1 && MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return tpsc_fail(TPSC_ERR_INTERNAL, "MPI_Allreduce (max) of %d doubles failed", n);
#else
    (void)v, (void)n;
#endif
    return TPSC_OK;
}

tpsc_status dist_broadcast_floats(float *v, size_t n) {
#ifdef TPSC_HAVE_MPI
    if (g_size <= 1) return TPSC_OK;
    for (size_t off = 0; off < n;) {
        size_t chunk = n - off < (size_t)INT_MAX / 2 ? n - off : (size_t)INT_MAX / 2;
        if (MPI_Bcast(v + off, (int)chunk, MPI_FLOAT, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            return tpsc_fail(TPSC_ERR_INTERNAL, "MPI_Bcast of %zu floats failed", chunk);
        off += chunk;
    }
#else
    (void)v, (void)n;
#endif
    return TPSC_OK;
}

uint64_t dist_checksum(const void *data, size_t bytes, uint64_t h) {
    const unsigned char *p = data;
    if (h == 0) h = 1469598103934665603ULL;
    for (size_t i = 0; i < bytes; i++) h = (h ^ p[i]) * 1099511628211ULL;
    return h;
}

tpsc_status dist_check_same(uint64_t h, const char *what) {
#ifdef TPSC_HAVE_MPI
    if (g_size <= 1) return TPSC_OK;
    uint64_t *all = malloc((size_t)g_size * sizeof *all);
    if (!all) return tpsc_fail(TPSC_ERR_NOMEM, "checksums of %d ranks", g_size);
    if (MPI_Allgather(&h, 1, MPI_UINT64_T, all, 1, MPI_UINT64_T, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(all);
        return tpsc_fail(TPSC_ERR_INTERNAL, "MPI_Allgather of checksums failed");
    }
    for (int r = 1; r < g_size; r++) {
        if (all[r] != all[0]) {
            tpsc_status st = tpsc_fail(TPSC_ERR_INTERNAL,
                                       "%s differ across ranks: rank %d has checksum %016llx, rank 0 %016llx", what, r,
                                       (unsigned long long)all[r], (unsigned long long)all[0]);
            free(all);
            return st;
        }
    }
    free(all);
#else
    (void)h, (void)what;
#endif
    return TPSC_OK;
}
