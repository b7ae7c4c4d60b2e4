/* Data-parallel helpers over MPI (see dist.h); single-rank fallbacks. */
#include "train/dist.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "util/error.h"

#ifdef BEE_HAVE_MPI
#include <mpi.h>
#endif

void bee_dist_slice(const bee_dist *d, int r, size_t n, size_t *lo, size_t *hi) {
    size_t s = (size_t)d->size, q = n / s, m = n % s, ur = (size_t)r;
    *lo = ur * q + (ur < m ? ur : m);
    *hi = *lo + q + (ur < m);
}

#ifdef BEE_HAVE_MPI

int bee_dist_available(void) { return 1; }

static int launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

int bee_dist_init(bee_dist *d, int *argc, char ***argv) {
    memset(d, 0, sizeof *d);
    d->size = 1;
    if (!launched_by_mpirun()) return 0;
    if (MPI_Init(argc, argv) != MPI_SUCCESS) return bee_fail("MPI_Init failed");
    d->mpi = 1;
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    return 0;
}

void bee_dist_finalize(bee_dist *d) {
    if (d->mpi) MPI_Finalize();
    d->mpi = 0;
}

/* MPI counts are ints: large buffers go in chunks. */
#define CHUNK ((size_t)1 << 28)

int bee_dist_sum_f32(const bee_dist *d, float *x, size_t n) {
    for (size_t i = 0; d->size > 1 && i < n; i += CHUNK) {
        int c = (int)(n - i < CHUNK ? n - i : CHUNK);
        if (MPI_Allreduce(MPI_IN_PLACE, x + i, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
            return bee_fail("MPI_Allreduce of %zu floats failed", n);
    }
    return 0;
}

int bee_dist_sum_f64(const bee_dist *d, double *x, size_t n) {
    if (d->size > 1 && MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) != MPI_SUCCESS)
        return bee_fail("MPI_Allreduce failed");
    return 0;
}

static int counts(const bee_dist *d, size_t n, int **cnt, int **disp) {
    *cnt = malloc((size_t)d->size * sizeof **cnt), *disp = malloc((size_t)d->size * sizeof **disp);
    if (!*cnt || !*disp) return bee_fail("out of memory");
    if (n > INT_MAX) return bee_fail("%zu parameters: too many for one MPI gather (limit %d)", n, INT_MAX);
    for (int r = 0; r < d->size; r++) {
        size_t lo, hi;
        bee_dist_slice(d, r, n, &lo, &hi);
        (*cnt)[r] = (int)(hi - lo), (*disp)[r] = (int)lo;
    }
    return 0;
}

int bee_dist_allgather(const bee_dist *d, float *x, size_t n) {
    if (d->size == 1) return 0;
    int *cnt = NULL, *disp = NULL;
    int rc = counts(d, n, &cnt, &disp);
    if (rc == 0 && MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, cnt, disp, MPI_FLOAT, MPI_COMM_WORLD) !=
                       MPI_SUCCESS)
        rc = bee_fail("MPI_Allgatherv of %zu floats failed", n);
    free(cnt), free(disp);
    return rc;
}

int bee_dist_gather(const bee_dist *d, const float *part, float *full, size_t n) {
    int *cnt = NULL, *disp = NULL;
    int rc = counts(d, n, &cnt, &disp);
    if (rc == 0 && MPI_Gatherv(part, cnt[d->rank], MPI_FLOAT, full, cnt, disp, MPI_FLOAT, 0, MPI_COMM_WORLD) !=
                       MPI_SUCCESS)
        rc = bee_fail("MPI_Gatherv of %zu floats failed", n);
    free(cnt), free(disp);
    return rc;
}

void bee_dist_abort(const bee_dist *d, int code) {
    if (d->size > 1) MPI_Abort(MPI_COMM_WORLD, code);
}

int bee_dist_any(const bee_dist *d, int rc) {
    if (d->size == 1) return rc;
    int v = rc != 0, any = v;
    MPI_Allreduce(&v, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return any;
}

#else /* one process */

int bee_dist_available(void) { return 0; }

int bee_dist_init(bee_dist *d, int *argc, char ***argv) {
    (void)argc, (void)argv;
    memset(d, 0, sizeof *d);
    d->size = 1;
    return 0;
}

void bee_dist_finalize(bee_dist *d) { d->mpi = 0; }
int bee_dist_sum_f32(const bee_dist *d, float *x, size_t n) { return (void)d, (void)x, (void)n, 0; }
int bee_dist_sum_f64(const bee_dist *d, double *x, size_t n) { return (void)d, (void)x, (void)n, 0; }
int bee_dist_allgather(const bee_dist *d, float *x, size_t n) { return (void)d, (void)x, (void)n, 0; }

int bee_dist_gather(const bee_dist *d, const float *part, float *full, size_t n) {
    (void)d;
    if (part != full) memcpy(full, part, n * sizeof *full);
    return 0;
}

int bee_dist_any(const bee_dist *d, int rc) { return (void)d, rc; }
void bee_dist_abort(const bee_dist *d, int code) { (void)d, (void)code; }

#endif
