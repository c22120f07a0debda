/* Internal to src/dist: what the distribution modes share (unit buffer
 * pools, routing of a round, processing of one work unit). */
#ifndef SF_DIST_IMPL_H
#define SF_DIST_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/dist.h"

enum { UNIT_DATA = 0, UNIT_END = 1, UNIT_ABORT = 2, UNIT_CKPT = 3, UNIT_STOP = 4 };

/* A pool of unit buffers so that no round allocates once the pool is warm. */
typedef struct pool {
    sf_buf *free_bufs;
    size_t nfree, cap;
    bool off;          /* distribute.pools: false */
} pool;

/* Takes a buffer from the pool (or a new one); with pools off
 * (distribute.pools: false) every unit is a fresh allocation. */
sf_buf sf__dist_pool_get(pool *p);
/* Returns a buffer to the pool (with pools off: frees it). */
void sf__dist_pool_put(pool *p, sf_buf b);
void sf__dist_pool_fini(pool *p);

/* State of rank 0's routing of one round. */
typedef struct router {
    int k;
    uint32_t *shard;       /* shard of each row */
    uint32_t *order;       /* rows sorted by shard (stable) */
    size_t *start;         /* k + 1 offsets into order */
    size_t cap;
} router;

/* Routes the rows of b to shards and sorts them by shard (stable);
 * count_stats adds the rows and bytes per shard to st. */
sf_status sf__dist_route_round(router *rt, const sf_shard_plan *plan, const sf_batch *b, sf_dist_stats *st,
                               int count_stats);

/* Processes one encoded unit on this rank. */
typedef struct worker {
    const sf_schema *schema;
    sf_exec *x;
    sf_piece_view *views;
    size_t cap;
    const sf_batch **list;
    uint32_t *shards;
    sf_exec_piece_result *res;
    uint8_t *moved;
    size_t list_cap;
    sf_exec_piece_result *pending;  /* a held unit's outcome */
    uint8_t *pending_moved;
    size_t npending, pending_cap;
    uint64_t pending_round;
    sf_dist_stats *st;
    const sf_dist_hooks *hk;
    /* The pass columns' stable dictionaries (sf_reader_stable_dict), NULL
     * or one entry per pass column (NULL: none): rank 0's reader's, or on
     * the other ranks the copies it broadcast at the pass start (owned). */
    const sf_dict **stable;
    sf_dict *owned;        /* nowned entries, NULL on rank 0 */
    int nowned;
} worker;

/* Dynamic mode's handling of one unit: pieces that failed every attempt
 * here go into *ret to be tried on another rank (once: not for pieces
 * that already moved); a speculative unit's result is held (*held) until
 * rank 0 says whether it counts. */
typedef struct unit_opts {
    bool allow_move;
    sf_buf *ret;
    bool *held;
} unit_opts;

/* Processes one encoded unit on this rank (its kind in *kind; only data
 * units are processed); side(ctx), if given, runs on the master thread
 * while the other threads work; o may be NULL. */
sf_status sf__dist_work_on_opts(worker *w, const uint8_t *bytes, size_t n, uint32_t *kind,
                                sf_status (*side)(void *), void *ctx, const unit_opts *o);
/* Processes the pieces already in w->views[0..nv) (sf_unit_views_of_runs:
 * views of a batch, no unit) as the data unit of input round `round`. */
sf_status sf__dist_work_on_views(worker *w, size_t nv, uint32_t round, sf_status (*side)(void *), void *ctx);
sf_status sf__dist_work_on_side(worker *w, const uint8_t *bytes, size_t n, uint32_t *kind,
                                sf_status (*side)(void *), void *ctx);
void sf__dist_worker_fini(worker *w);

/* One pass of distribute.mode: parallel-read (src/dist/parallel_read.c):
 * every rank reads its part of the input (reader already restricted with
 * sf_reader_split, rewound and projected; with more than one sub-part the
 * rank's threads read them at once) and routes it with plan; pieces are
 * processed where they were read, or exchanged with MPI_Alltoallv so that
 * shard s is processed on rank s mod P. Collective. */
sf_status sf__dist_parallel_read(sf_reader *reader, const sf_shard_plan *plan, const sf_distribute_config *cfg,
                                 const int *pass_cols, int npass, const sf_schema *pass_schema, sf_exec *x,
                                 sf_dist_stats *stats, const sf_dist_hooks *hooks);

#endif
