/* Data-parallel training across processes (OpenMPI when built with it):
 * gradient allreduce, ZeRO-1 sharding of the optimizer state (each rank
 * updates one slice of the flat parameter buffer, then all slices are
 * gathered) and the gathers a checkpoint needs. Without MPI, or when the
 * program was not started by mpirun, there is one rank and every call is a
 * no-op, so callers need no #ifdef. */
#ifndef BEE_TRAIN_DIST_H
#define BEE_TRAIN_DIST_H

#include <stddef.h>

typedef struct {
    int rank, size;
    int mpi; /* 1 = MPI was initialised here (finalize it) */
} bee_dist;

/* 1 when this build has MPI. */
int bee_dist_available(void);
/* Joins the job when launched by mpirun (OMPI_COMM_WORLD_SIZE / PMI_SIZE set),
 * else one rank. */
int bee_dist_init(bee_dist *d, int *argc, char ***argv);
void bee_dist_finalize(bee_dist *d);
/* [lo, hi) of n elements owned by rank r (contiguous, sizes differ by <= 1). */
void bee_dist_slice(const bee_dist *d, int r, size_t n, size_t *lo, size_t *hi);
/* In-place sums over ranks. */
int bee_dist_sum_f32(const bee_dist *d, float *x, size_t n);
int bee_dist_sum_f64(const bee_dist *d, double *x, size_t n);
/* Every rank contributes x[its slice]; afterwards all ranks hold all of x. */
int bee_dist_allgather(const bee_dist *d, float *x, size_t n);
/* Rank 0 receives each rank's slice (of length hi - lo, in `part`) into full
 * (n floats, rank 0 only). */
int bee_dist_gather(const bee_dist *d, const float *part, float *full, size_t n);
/* After an error on this rank: ends the whole job (other ranks may be
 * waiting in a collective and would hang). No-op with one rank. */
void bee_dist_abort(const bee_dist *d, int code);
/* Returns nonzero on any rank if rc is nonzero on some rank (so all ranks stop together). */
int bee_dist_any(const bee_dist *d, int rc);

#endif
