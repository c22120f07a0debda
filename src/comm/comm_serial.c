/* The serial build of the communication layer: one rank, no MPI. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdlib.h>
#include <time.h>

#include "comm/chunks.h"
#include "shardflow/comm.h"

static size_t chunk_limit = INT_MAX;

sf_status sf_comm_init(int *argc, char ***argv) { return SF_OK; }
void sf_comm_finalize(void) {}
void sf_comm_abort(int code) { exit(code); }
int sf_comm_rank(void) { return 0; }
int sf_comm_size(void) { return 1; }
int sf_comm_local_size(void) { return 1; }
int sf_comm_local_rank(void) { return 0; }

double sf_comm_wtime(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void sf_comm_set_chunk_limit(size_t bytes) { chunk_limit = bytes ? bytes : 1; }
size_t sf_comm_chunk_limit(void) { return chunk_limit; }
sf_status sf_comm_agree(sf_status local) { return local; }
sf_status sf_comm_barrier(void) { return SF_OK; }
sf_status sf_comm_bcast(sf_buf *buf, int root) { return SF_OK; }
sf_status sf_comm_allreduce_sum_u64(uint64_t *v, int n) { return SF_OK; }
sf_status sf_comm_allreduce_max_f64(double *v, int n) { return SF_OK; }

sf_status sf_comm_exscan_sum_u64(const uint64_t *in, uint64_t *out, int n)
{
    (void)in;
    for (int i = 0; i < n; i++) out[i] = 0;
    return SF_OK;
}

sf_status sf_comm_alltoallv(const uint8_t *send, const uint64_t *sendcounts, sf_buf *recv, uint64_t *recvcounts)
{
    sf_buf_clear(recv);
    recvcounts[0] = sendcounts[0];
    return sf_buf_append(recv, send, (size_t)sendcounts[0]);
}

sf_status sf_comm_send(int dest, int tag, const void *data, size_t n)
{
    return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "sf_comm_send to rank %d in a serial build", dest);
}

sf_status sf_comm_isend(int dest, int tag, const void *data, size_t n, sf_comm_req **out)
{
    *out = NULL;
    return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "sf_comm_isend to rank %d in a serial build", dest);
}

sf_status sf_comm_wait(sf_comm_req **req) { return SF_OK; }

sf_status sf_comm_test(sf_comm_req **req, bool *done)
{
    *done = true;
    return SF_OK;
}

sf_status sf_comm_recv(int src, int tag, sf_buf *out, int *from)
{
    return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "sf_comm_recv in a serial build");
}

sf_status sf_comm_iprobe(int tag, bool *flag, int *from)
{
    *flag = false;
    *from = -1;
    return SF_OK;
}

sf_status sf_comm_reduce(sf_buf *buf, sf_comm_merge_fn merge, void *ctx) { return SF_OK; }

/* One rank: both reductions are the identity and send nothing. */
sf_status sf_comm_reduce_hier(sf_buf *buf, sf_comm_merge_fn merge, void *ctx, sf_comm_reduce_stats *st)
{
    if (st != NULL) *st = (sf_comm_reduce_stats){0, 0, 0};
    return SF_OK;
}

void sf_comm_reduce_last_stats(sf_comm_reduce_stats *st) { *st = (sf_comm_reduce_stats){0, 0, 0}; }

sf_status sf_comm_gather(const sf_buf *mine, sf_comm_gather_fn on_rank, void *ctx)
{
    return on_rank(0, mine->data, mine->len, ctx);
}

size_t sf_comm_chunk_count(size_t n, size_t limit) { return sf__comm_chunk_count(n, limit); }
size_t sf_comm_chunk_size(size_t n, size_t limit, size_t i) { return sf__comm_chunk_size(n, limit, i); }
