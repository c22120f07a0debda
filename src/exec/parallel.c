/* sf_exec_parallel: one call of a function per thread index, for the work
 * of a rank that is not morsels of batches (parallel-read's sub-parts:
 * counting their bytes, reading, routing and packing them). */
#define _POSIX_C_SOURCE 200809L
#include <omp.h>
#include <stdio.h>

#include "shardflow/exec.h"

sf_status sf_exec_parallel(int nthreads, sf_status (*fn)(void *ctx, int t), void *ctx)
{
    if (nthreads <= 1) return nthreads == 1 ? fn(ctx, 0) : SF_OK;
    /* Sticky error (SQLite's p->rc): every index runs, nobody leaves the
     * region early; the lowest failing index wins, so the message does not
     * depend on which thread finished first. */
    sf_status first = SF_OK;
    int first_t = nthreads;
    char msg[2048] = "";
#pragma omp parallel num_threads(nthreads)
    {
        /* OpenMP may give fewer threads than asked for (a thread limit):
         * the indices are then shared out among those there are. */
        const int nth = omp_get_num_threads();
        for (int t = omp_get_thread_num(); t < nthreads; t += nth) {
            sf_status rc = fn(ctx, t);
            if (rc == SF_OK) continue;
#pragma omp critical(sf_exec_parallel_error)
            {
                if (t < first_t) {
                    first_t = t;
                    first = rc;
                    snprintf(msg, sizeof msg, "%s", sf_error_message());
                }
            }
        }
    }
    if (first != SF_OK) sf_error_set_message(msg);
    return first;
}
