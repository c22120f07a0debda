/* The communication layer: the only code that talks to MPI (src/comm/).
 * A serial build of the same functions (one rank, no MPI) links unit tests.
 *
 * Messages are byte strings of any length: a small header carries the total
 * size, then the payload follows in chunks of at most the chunk limit
 * (INT_MAX by default), so no MPI count ever overflows. */
#ifndef SF_COMM_H
#define SF_COMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/buf.h"
#include "shardflow/status.h"

enum {
    SF_TAG_PIECE = 1,    /* rank 0 -> worker: a shard piece or a control word */
    SF_TAG_REQUEST = 2,  /* worker -> rank 0: "give me work" (dynamic mode) */
    SF_TAG_REDUCE = 3,   /* tree reduction of encoded states */
    SF_TAG_GATHER = 4,   /* gathers to rank 0 */
    SF_TAG_BCAST = 5,
    SF_TAG_TEST = 6,
    SF_TAG_VERDICT = 7   /* rank 0 -> worker: may a speculative unit be committed (dynamic mode) */
};

/* Initialises MPI (MPI_THREAD_FUNNELED: only the master thread calls MPI) with
 * errors returned, not fatal. Collective. */
sf_status sf_comm_init(int *argc, char ***argv);
/* Finalizes MPI. Collective. */
void sf_comm_finalize(void);
/* Ends every rank at once; for a rank that cannot reach the next agreement. */
void sf_comm_abort(int code);
int sf_comm_rank(void);
int sf_comm_size(void);
/* Ranks on this node (MPI_COMM_TYPE_SHARED) and this rank's index among them.
 * Collective on first call (it is made inside sf_comm_init). */
int sf_comm_local_size(void);
int sf_comm_local_rank(void);
double sf_comm_wtime(void);
/* Largest payload of one MPI message (bytes, >= 1). Not collective: set the
 * same value on every rank. */
void sf_comm_set_chunk_limit(size_t bytes);
size_t sf_comm_chunk_limit(void);

/* All ranks agree on a status: the result is the largest failing code (by
 * rank order on ties: the lowest rank) and every rank gets that rank's
 * message. Returns the agreed status. Collective. */
sf_status sf_comm_agree(sf_status local);
sf_status sf_comm_barrier(void);
/* Broadcasts a byte string from root (buf is replaced on the others).
 * Collective. */
sf_status sf_comm_bcast(sf_buf *buf, int root);
/* Element-wise sum or max of n uint64 over all ranks, result on all. Collective. */
sf_status sf_comm_allreduce_sum_u64(uint64_t *v, int n);
sf_status sf_comm_allreduce_max_f64(double *v, int n);
/* Exclusive prefix sum of n uint64 over the ranks: rank r gets the sum of
 * ranks 0..r-1 (zeros on rank 0). O(log P). Collective. */
sf_status sf_comm_exscan_sum_u64(const uint64_t *in, uint64_t *out, int n);

/* All-to-all exchange of byte strings: this rank's send bytes hold, one
 * after the other, sendcounts[d] bytes for every rank d (P entries); on
 * return recv (cleared first) holds the bytes from every rank s, in rank
 * order, and recvcounts[s] their lengths. The sizes go first
 * (MPI_Alltoall), then the bytes (MPI_Alltoallv) in as many steps as the
 * largest pair needs with at most chunk_limit / P bytes per pair and step,
 * so no count or displacement exceeds INT_MAX (steps beyond the first go
 * through a staging buffer). Collective. */
sf_status sf_comm_alltoallv(const uint8_t *send, const uint64_t *sendcounts, sf_buf *recv,
                            uint64_t *recvcounts /* out */);

/* Blocking send of n bytes to dest with tag. Not collective. */
sf_status sf_comm_send(int dest, int tag, const void *data, size_t n);

/* A pending non-blocking send; data must stay valid until it completes. */
typedef struct sf_comm_req sf_comm_req;
sf_status sf_comm_isend(int dest, int tag, const void *data, size_t n, sf_comm_req **out);
/* Completes and frees the request (NULL is a no-op). */
sf_status sf_comm_wait(sf_comm_req **req);
/* Whether a request has completed (frees it if so and sets *req NULL). */
sf_status sf_comm_test(sf_comm_req **req, bool *done);

/* Blocking receive of the next message with tag from src (or any source when
 * src < 0) into out (replaced); *from gets the sender. */
sf_status sf_comm_recv(int src, int tag, sf_buf *out, int *from);
/* Whether a message with tag is waiting (from any source); *from its sender. */
sf_status sf_comm_iprobe(int tag, bool *flag, int *from);

/* Reduces every rank's bytes to rank 0 over a binomial tree: each rank merges
 * its children's bytes into its own, in increasing child-rank order, with
 * merge(into, from_bytes, n, ctx). On return, rank 0's buf holds the result.
 * Collective; O(log P) steps. */
typedef sf_status (*sf_comm_merge_fn)(sf_buf *into, const uint8_t *from, size_t n, void *ctx);
sf_status sf_comm_reduce(sf_buf *buf, sf_comm_merge_fn merge, void *ctx);
/* Messages of the last reduction on this rank: sent (all) and sent to a
 * rank of another node (inter-node). */
typedef struct sf_comm_reduce_stats {
    uint64_t messages;
    uint64_t internode_messages;
    uint64_t bytes;
} sf_comm_reduce_stats;
/* The same result as sf_comm_reduce, reduced in two levels: a binomial tree
 * inside each node (MPI_COMM_TYPE_SHARED; the node's lowest rank leads),
 * then a binomial tree over the node leaders (rank 0 leads the cluster).
 * Every merge is order-independent, so the bytes equal the flat result.
 * The environment variable SF_RANKS_PER_NODE=N (N >= 1) pretends that nodes
 * hold N consecutive ranks each (for tests and bench/reduce on one
 * machine). st may be NULL. Collective. */
sf_status sf_comm_reduce_hier(sf_buf *buf, sf_comm_merge_fn merge, void *ctx,
                              sf_comm_reduce_stats *st);
/* Counts of the last sf_comm_reduce on this rank (flat tree). */
void sf_comm_reduce_last_stats(sf_comm_reduce_stats *st);
/* Gathers every rank's bytes to rank 0, calling on_rank(rank, bytes, n, ctx)
 * there in rank order (rank 0 included). Collective. */
typedef sf_status (*sf_comm_gather_fn)(int rank, const uint8_t *bytes, size_t n, void *ctx);
sf_status sf_comm_gather(const sf_buf *mine, sf_comm_gather_fn on_rank, void *ctx);

/* Splits [0, n) into chunks of at most limit bytes: count and the size of
 * chunk i (pure; used by the transfer code and its unit test). */
size_t sf_comm_chunk_count(size_t n, size_t limit);
size_t sf_comm_chunk_size(size_t n, size_t limit, size_t i);

#endif
