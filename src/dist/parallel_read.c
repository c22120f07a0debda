/* distribute.mode: parallel-read. Every rank reads its own part of the
 * input (a byte range of a CSV aligned to record boundaries, a row range of
 * an HDF5 table or of the generator), routes its rows with the plan rank 0
 * made, and packs the pass's columns into pieces as the root does in the
 * other modes.
 *
 * Without exchange (size sharding, or exchange: never) a rank processes
 * what it read: no message moves during the pass, so there is no per-round
 * synchronisation at all, and each rank reads round r+1 on its master
 * thread while its other threads process round r. Agents merge exactly in
 * any order, so the result is the same as when rank 0 reads everything.
 *
 * With exchange (hash, range, semantic: key locality, so that the rows of
 * one key meet on one rank, e.g. a user's sessions) every round ends in an
 * all-to-all: shard s goes to rank s mod P, as in static mode. Each round
 * is one MPI_Allreduce of three counters (ranks with data, failures, stop
 * requests: everyone leaves at the same round) and one sf_comm_alltoallv.
 *
 * Checkpoints: this mode writes them at the end of each pass only (the
 * readers of the ranks are at different places inside a pass); a stop
 * signal ends the pass on every rank and the run resumes from the last
 * completed pass. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/comm.h"
#include "shardflow/dist.h"
#include "shardflow/fault.h"

#include "dist/dist_impl.h"

typedef struct preader {
    sf_reader *reader;
    const sf_shard_plan *plan;
    const sf_distribute_config *cfg;
    const int *cols;
    int ncols;
    int P;
    sf_batch batch;
    router rt;
    pool pl;
    worker w;
    sf_dist_stats *st;
    bool eof;
    uint32_t round;   /* this rank's rounds read */
} preader;

static sf_status read_round(preader *r)
{
    double t0 = sf_comm_wtime();
    SF_CALL(sf_reader_next(r->reader, &r->batch, &r->eof));
    double t1 = sf_comm_wtime();
    r->st->t_read += t1 - t0;
    if (r->eof) return SF_OK;
    r->st->rows_read += r->batch.nrows;
    SF_CALL(sf__dist_route_round(&r->rt, r->plan, &r->batch, r->st, 1));
    r->st->t_route += sf_comm_wtime() - t1;
    return SF_OK;
}

static sf_status read_ahead(void *ctx) { return read_round(ctx); }

/* Packs the pieces of shards first, first + step, ... of the round in
 * r->batch into unit (cleared first); *rows gets their rows (0: unit is
 * left empty). */
static sf_status pack_unit(preader *r, sf_buf *unit, int first, int step, size_t *rows)
{
    sf_buf_clear(unit);
    *rows = 0;
    for (int s = first; s < r->rt.k; s += step) *rows += r->rt.start[s + 1] - r->rt.start[s];
    if (*rows == 0) return SF_OK;
    SF_CALL(sf_unit_begin(unit, UNIT_DATA));
    sf_unit_set_round(unit, r->round);
    for (int s = first; s < r->rt.k; s += step) {
        size_t n = r->rt.start[s + 1] - r->rt.start[s];
        if (n == 0) continue;
        SF_CALL(sf_piece_append(unit, &r->batch, r->cols, r->ncols, (uint32_t)s, r->rt.order + r->rt.start[s], n));
    }
    return SF_OK;
}

/* The pass without exchange: read, pack, process; no messages. */
static sf_status run_local(preader *r, const sf_dist_hooks *hk, bool *stopped)
{
    sf_buf unit = sf__dist_pool_get(&r->pl);
    sf_status rc = read_round(r);
    while (rc == SF_OK && !r->eof) {
        if (hk && hk->stop_on_signal && sf_signal_pending()) {
            *stopped = true;
            break;
        }
        size_t rows;
        rc = pack_unit(r, &unit, 0, 1, &rows);
        if (rc != SF_OK) break;
        r->round++;
        uint32_t kind;
        if (r->cfg->overlap) {
            /* The round is packed: the master thread reads the next one
             * into the batch while the other threads process this one. */
            rc = sf__dist_work_on_side(&r->w, unit.data, unit.len, &kind, read_ahead, r);
        } else {
            rc = sf__dist_work_on_side(&r->w, unit.data, unit.len, &kind, NULL, NULL);
            if (rc == SF_OK) rc = read_round(r);
        }
    }
    sf__dist_pool_put(&r->pl, unit);
    return rc;
}

/* The pass with exchange: one all-to-all per round. A rank that failed
 * or was asked to stop says so in the round's counters, and every rank
 * leaves at that round; a rank whose part is done takes part with
 * nothing to send until all are done. */
static sf_status run_exchange(preader *r, const sf_dist_hooks *hk, bool *stopped, bool *remote_failed)
{
    const int P = r->P;
    sf_status rc = SF_OK, comm = SF_OK;
    sf_buf send, recv, unit;
    sf_buf_init(&send);
    sf_buf_init(&recv);
    sf_buf_init(&unit);
    uint64_t *counts = calloc(2 * (size_t)P, sizeof *counts);
    if (counts == NULL) rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (exchange)");
    if (rc == SF_OK) rc = read_round(r);
    uint64_t nunits = 0;
    for (;;) {
        /* Pack this rank's round for every destination, one after the
         * other in one buffer (units are multiples of 8 bytes, so each
         * stays aligned for reading in place). */
        sf_buf_clear(&send);
        nunits = 0;
        for (int d = 0; d < P && counts; d++) {
            size_t before = send.len, rows = 0;
            if (rc == SF_OK && !r->eof) rc = pack_unit(r, &unit, d, P, &rows);
            if (rc == SF_OK && rows > 0) rc = sf_buf_append(&send, unit.data, unit.len);
            counts[d] = send.len - before;
            nunits += counts[d] > 0;
        }
        bool stop_here = hk && hk->stop_on_signal && sf_signal_pending();
        uint64_t flags[3] = {rc == SF_OK && !r->eof, rc != SF_OK, stop_here};
        double t0 = sf_comm_wtime();
        comm = sf_comm_allreduce_sum_u64(flags, 3);
        r->st->t_wait += sf_comm_wtime() - t0;
        if (comm != SF_OK) break;
        if (flags[1] > 0) {
            if (rc == SF_OK) *remote_failed = true;
            break;
        }
        if (flags[2] > 0) {
            *stopped = true;
            break;
        }
        if (flags[0] == 0) break;
        if (!r->eof) {
            r->round++;
            r->st->units_sent += nunits;
            r->st->bytes_sent += send.len;
            if (send.len > r->st->peak_inflight) r->st->peak_inflight = send.len;
        }
        t0 = sf_comm_wtime();
        comm = sf_comm_alltoallv(send.data, counts, &recv, counts + P);
        r->st->t_wait += sf_comm_wtime() - t0;
        if (comm != SF_OK) break;
        /* Process what arrived, in source order; the first unit carries
         * the read of the next round (the send buffer holds this one). */
        bool read_next = !r->eof;
        size_t off = 0;
        for (int src = 0; src < P && rc == SF_OK; src++) {
            size_t n = (size_t)counts[P + src];
            if (n == 0) continue;
            uint32_t kind;
            if (read_next && r->cfg->overlap) {
                rc = sf__dist_work_on_side(&r->w, recv.data + off, n, &kind, read_ahead, r);
                read_next = false;
            } else {
                rc = sf__dist_work_on_side(&r->w, recv.data + off, n, &kind, NULL, NULL);
            }
            off += n;
        }
        if (rc == SF_OK && read_next) rc = read_round(r);
    }
    free(counts);
    sf_buf_fini(&send);
    sf_buf_fini(&recv);
    sf_buf_fini(&unit);
    if (comm != SF_OK) return comm;
    return rc;
}

sf_status sf__dist_parallel_read(sf_reader *reader, const sf_shard_plan *plan, const sf_distribute_config *cfg,
                                 const int *pass_cols, int npass, const sf_schema *pass_schema, sf_exec *x,
                                 sf_dist_stats *stats, const sf_dist_hooks *hooks)
{
    preader r = {.reader = reader, .plan = plan, .cfg = cfg, .cols = pass_cols, .ncols = npass,
                 .P = sf_comm_size(), .st = stats};
    r.w = (worker){.schema = pass_schema, .x = x, .st = stats, .hk = hooks};
    r.pl.off = !cfg->pools;
    r.rt.k = sf_shard_plan_count(plan);
    r.rt.start = calloc((size_t)r.rt.k + 1, sizeof(size_t));
    sf_status rc = r.rt.start != NULL ? SF_OK
                                      : sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (distribution)");
    bool batch_ok = false;
    if (rc == SF_OK) {
        rc = sf_reader_batch_init(reader, &r.batch);
        batch_ok = rc == SF_OK;
    }
    bool exchange = r.P > 1 && (cfg->exchange == SF_EXCHANGE_ALWAYS ||
                                (cfg->exchange == SF_EXCHANGE_AUTO && sf_shard_plan_key_column(plan) >= 0));
    bool stopped = false, remote_failed = false;
    sf_status comm = SF_OK;
    if (exchange) {
        /* Even a rank that could not start takes part in the rounds. */
        if (rc == SF_OK) {
            rc = run_exchange(&r, hooks, &stopped, &remote_failed);
        } else {
            uint64_t flags[3] = {0, 1, 0};
            comm = sf_comm_allreduce_sum_u64(flags, 3);
        }
        if (rc == SF_ERR_MPI) comm = rc;
    } else if (rc == SF_OK) {
        rc = run_local(&r, hooks, &stopped);
    }
    if (batch_ok) sf_batch_fini(&r.batch);
    /* Rank 0 reports the plan's balance and the totals of all ranks. */
    if (comm == SF_OK) {
        const size_t k = (size_t)r.rt.k;
        uint64_t *sum = calloc(2 * k + 4, sizeof *sum);
        if (sum == NULL) {
            /* Cannot take part in the sum: nothing else can be done safely. */
            fprintf(stderr, "shardflow: error: rank %d: out of memory (pass totals)\n", sf_comm_rank());
            sf_comm_abort(1);
        }
        memcpy(sum, stats->shard_rows, k * sizeof *sum);
        memcpy(sum + k, stats->shard_bytes, k * sizeof *sum);
        sum[2 * k] = stats->rows_read;
        sum[2 * k + 1] = stats->units_sent;
        sum[2 * k + 2] = stats->bytes_sent;
        sum[2 * k + 3] = r.round;
        comm = sf_comm_allreduce_sum_u64(sum, (int)(2 * k + 4));
        if (comm == SF_OK) {
            memcpy(stats->shard_rows, sum, k * sizeof *sum);
            memcpy(stats->shard_bytes, sum + k, k * sizeof *sum);
            stats->rows_read = sum[2 * k];
            stats->units_sent = sum[2 * k + 1];
            stats->bytes_sent = sum[2 * k + 2];
            stats->rounds = sum[2 * k + 3];
        }
        free(sum);
    }
    sf__dist_worker_fini(&r.w);
    sf__dist_pool_fini(&r.pl);
    free(r.rt.start);
    free(r.rt.shard);
    free(r.rt.order);
    if (comm != SF_OK) {
        fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
        sf_comm_abort(1);
    }
    (void)remote_failed;
    if (rc == SF_OK && stopped) return SF_ERR_INTERRUPTED;
    return rc;
}
