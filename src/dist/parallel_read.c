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
 * When a rank fails, the ranks before it first read the rest of their
 * parts (without processing them): the failure that the ranks agree on is
 * then the first in file order (a bad record under on_bad_row: fail is
 * reported with the line a single reader stops at), as without exchange,
 * where every rank reads its part to its end or its first failure anyway.
 *
 * Several threads per rank (T > 1): parsing a CSV costs more than most
 * passes' agents, so one reading thread per rank would leave a rank with
 * T threads about as slow as one with a single thread. The run splits the
 * rank's part into T sub-parts the way the input is split among ranks
 * (sf_reader_split: nominal bounds, record boundaries from the quote and
 * line-feed counts before each), each with its own reader, and a round is
 * then one batch of every sub-part: the T threads read, route and pack
 * their own sub-part's batch at once (sf_exec_parallel), and then all T
 * threads process the round's units as with one thread. Reading and
 * processing alternate instead of overlapping: both phases already use
 * every thread, so the read-ahead of T == 1 (distribute.overlap) would
 * only take a thread away from one of them. With exchange, the pieces of
 * all sub-parts for one rank travel as one unit in the round's
 * all-to-all. The run lowers input.batch_rows so that the T batches of a
 * round stay within the budget that bounds one batch (src/flow/run.c).
 * HDF5 sub-parts are read one after the other on the master thread where
 * the HDF5 library is not thread-safe (the Debian build is not); routing
 * and packing stay parallel. A sub-part that fails (on_bad_row: fail)
 * does not end the pass at once: the sub-parts before it are first read
 * on to their ends, so that the reported bad record is the first in file
 * order, the one a single reader stops at. Results do not depend on T:
 * every record is read once, and agents merge exactly in any order.
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
#include "shardflow/exec.h"
#include "shardflow/fault.h"

#include "dist/dist_impl.h"

/* One sub-part of a rank's part (T > 1): its batch of the round, routed
 * and packed by the thread that read it. */
typedef struct sub_round {
    sf_batch batch;
    bool batch_ok;
    router rt;
    sf_buf *units;          /* one per destination rank (exchange), else one */
    uint64_t *shard_rows;   /* k each: this sub-part's rows and bytes per shard */
    uint64_t *shard_bytes;
    sf_dist_stats st;       /* only shard_rows/shard_bytes, for sf__dist_route_round */
    bool eof;
    bool fresh;             /* batch holds this round's rows */
    sf_status rc;           /* this round's outcome */
    double t_read, t_route;
} sub_round;

typedef struct preader {
    sf_reader *reader;
    const sf_shard_plan *plan;
    const sf_distribute_config *cfg;
    const int *cols;
    int ncols;
    int P;
    sf_batch batch;   /* T == 1 */
    router rt;        /* T == 1 */
    pool pl;
    worker w;
    sf_dist_stats *st;
    bool eof;         /* every sub-part is at its end */
    uint32_t round;   /* this rank's rounds read */
    int nsub;         /* T: sub-parts read at once */
    bool concurrent;  /* sub-parts may be read on several threads at once */
    int ndest;        /* units packed per sub-part and round */
    sub_round *sub;
    bool subs_in_place; /* T > 1: sub-parts' pieces as views (see run_local) */
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

/* Packs the pieces of shards first, first + step, ... of batch b, routed
 * in rt, into unit (cleared first) marked with round; *rows gets their
 * rows (0: unit is left empty). */
static sf_status pack_from(const preader *r, const sf_batch *b, const router *rt, uint32_t round, sf_buf *unit,
                           int first, int step, size_t *rows)
{
    sf_buf_clear(unit);
    *rows = 0;
    for (int s = first; s < rt->k; s += step) *rows += rt->start[s + 1] - rt->start[s];
    if (*rows == 0) return SF_OK;
    SF_CALL(sf_unit_begin(unit, UNIT_DATA));
    sf_unit_set_round(unit, round);
    for (int s = first; s < rt->k; s += step) {
        size_t n = rt->start[s + 1] - rt->start[s];
        if (n == 0) continue;
        SF_CALL(sf_piece_append(unit, b, r->cols, r->ncols, (uint32_t)s, rt->order + rt->start[s], n));
    }
    return SF_OK;
}

/* T == 1: the round in r->batch. */
static sf_status pack_unit(preader *r, sf_buf *unit, int first, int step, size_t *rows)
{
    return pack_from(r, &r->batch, &r->rt, r->round, unit, first, step, rows);
}

/* ---- T > 1: a round is one batch of every sub-part ---- */

/* Reads sub-part t's next batch (nothing once it is at its end). */
static sf_status sub_read(preader *r, int t)
{
    sub_round *u = &r->sub[t];
    u->fresh = false;
    if (u->eof) return SF_OK;
    double t0 = sf_comm_wtime();
    sf_status rc = sf_reader_next_sub(r->reader, t, &u->batch, &u->eof);
    u->t_read += sf_comm_wtime() - t0;
    if (rc != SF_OK) return rc;
    u->fresh = !u->eof;
    return SF_OK;
}

/* Routes sub-part t's batch and packs a unit for every destination. The
 * units of sub-part t in round r are marked as round r * T + t: within a
 * rank no two units share a round, and units keep the order of their
 * sub-parts. */
static sf_status sub_route_pack(preader *r, int t)
{
    sub_round *u = &r->sub[t];
    if (!u->fresh || r->subs_in_place) return SF_OK;
    double t0 = sf_comm_wtime();
    SF_CALL(sf__dist_route_round(&u->rt, r->plan, &u->batch, &u->st, 1));
    const uint32_t round = r->round * (uint32_t)r->nsub + (uint32_t)t;
    for (int d = 0; d < r->ndest; d++) {
        size_t rows;
        SF_CALL(pack_from(r, &u->batch, &u->rt, round, &u->units[d], d, r->ndest, &rows));
    }
    u->t_route += sf_comm_wtime() - t0;
    return SF_OK;
}

/* One thread's share of a round: its sub-part's units of the last round
 * are dropped, then (where the reader allows it) it reads, and it routes
 * and packs. */
static sf_status sub_round_work(void *ctx, int t)
{
    preader *r = ctx;
    sub_round *u = &r->sub[t];
    for (int d = 0; d < r->ndest; d++) {
        if (r->pl.off) {
            /* distribute.pools: false, every unit a fresh allocation. */
            sf_buf_fini(&u->units[d]);
            sf_buf_init(&u->units[d]);
        }
        sf_buf_clear(&u->units[d]);
    }
    sf_status rc = r->concurrent ? sub_read(r, t) : SF_OK;
    if (rc == SF_OK) rc = sub_route_pack(r, t);
    u->rc = rc;
    return rc;
}

/* Reads sub-part t on to its end or first failure (the rows go nowhere:
 * the pass is failing). */
static sf_status sub_drain(void *ctx, int t)
{
    preader *r = ctx;
    sub_round *u = &r->sub[t];
    while (!u->eof) SF_CALL(sf_reader_next_sub(r->reader, t, &u->batch, &u->eof));
    return SF_OK;
}

/* The round failed in sub-part tmin (and maybe in later ones) with
 * rc: the sub-parts before it may hold an earlier failure that a single
 * reader would have met first. Returns the failure of the first sub-part
 * in file order, with its message. */
static sf_status first_failure(preader *r, int tmin, sf_status rc)
{
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", sf_error_message());
    sf_status early = SF_OK;
    if (r->concurrent) {
        early = sf_exec_parallel(tmin, sub_drain, r);
    } else {
        for (int t = 0; t < tmin && early == SF_OK; t++) early = sub_drain(r, t);
    }
    if (early != SF_OK) return early;
    sf_error_set_message(msg);
    return rc;
}

/* Reads, routes and packs the next round of every sub-part; r->eof when
 * all are at their ends. */
static sf_status read_round_subs(preader *r)
{
    sf_status rc = SF_OK;
    for (int t = 0; t < r->nsub; t++) r->sub[t].rc = SF_OK;
    if (!r->concurrent) {
        /* One reader at a time, in order, on this thread: a failure ends
         * the round here, with its message on this thread. */
        for (int t = 0; t < r->nsub && rc == SF_OK; t++) rc = r->sub[t].rc = sub_read(r, t);
    }
    if (rc == SF_OK) rc = sf_exec_parallel(r->nsub, sub_round_work, r);
    if (rc != SF_OK) {
        int tmin = 0;
        while (tmin < r->nsub && r->sub[tmin].rc == SF_OK) tmin++;
        return tmin > 0 && tmin < r->nsub ? first_failure(r, tmin, rc) : rc;
    }
    bool all_eof = true;
    for (int t = 0; t < r->nsub; t++) {
        all_eof = all_eof && r->sub[t].eof;
        r->st->rows_read += r->sub[t].fresh ? r->sub[t].batch.nrows : 0;
    }
    r->eof = all_eof;
    return SF_OK;
}

/* The next round, with one reader or with T. */
static sf_status next_round(preader *r) { return r->nsub > 1 ? read_round_subs(r) : read_round(r); }

/* Appends the pieces that all sub-parts packed for destination d to out
 * as one unit. */
static sf_status merge_units(preader *r, int d, sf_buf *out)
{
    const size_t at = out->len;
    for (int t = 0; t < r->nsub; t++) {
        const sf_buf *u = &r->sub[t].units[d];
        if (u->len > 0) SF_CALL(sf_unit_append_pieces(out, at, u->data, u->len));
    }
    return SF_OK;
}

/* ---- In place (T == 1): pieces as views of the batch read ---- */

/* The next batch, read into spare while the current one is processed. */
typedef struct ahead {
    preader *r;
    sf_batch *b;
    bool eof;
} ahead;

static sf_status read_into(preader *r, sf_batch *b, bool *eof)
{
    double t0 = sf_comm_wtime();
    SF_CALL(sf_reader_next(r->reader, b, eof));
    r->st->t_read += sf_comm_wtime() - t0;
    if (!*eof) r->st->rows_read += b->nrows;
    return SF_OK;
}

static sf_status read_ahead_into(void *ctx)
{
    ahead *a = ctx;
    return read_into(a->r, a->b, &a->eof);
}

/* Whether the pass can take its pieces as views: distribute.in_place and
 * only numbers in the pass (a string column's piece needs its own
 * dictionary, which packing builds); with one reader or several (T > 1). */
static bool in_place_possible(const preader *r)
{
    if (!r->cfg->in_place) return false;
    for (int c = 0; c < r->ncols; c++) {
        sf_type t = r->w.schema->fields[c].type;
        if (t != SF_INT64 && t != SF_FLOAT64 && t != SF_TIMESTAMP) return false;
    }
    return true;
}

/* Routes batch b by runs when the plan has them and counts its rows and
 * bytes per shard as sf__dist_route_round does (8 bytes per number); false
 * when b must be routed row by row. */
static bool route_runs(preader *r, const sf_batch *b)
{
    int fixed = 0;
    for (int c = 0; c < b->ncols; c++)
        if (b->cols[c].loaded && b->cols[c].type != SF_STRING) fixed += 8;
    if (b->row_bytes != NULL || !sf_shard_route_runs(r->plan, b, r->rt.start)) return false;
    for (int s = 0; s < r->rt.k; s++) {
        const size_t lo = r->rt.start[s], hi = r->rt.start[s + 1];
        uint64_t bytes = (hi - lo) * (uint64_t)fixed;
        /* String columns loaded for other passes: their text, as routing
         * row by row counts it. */
        for (int c = 0; c < b->ncols; c++) {
            const sf_column *col = &b->cols[c];
            if (!col->loaded || col->type != SF_STRING) continue;
            for (size_t i = lo; i < hi; i++) bytes += col->dict.off[col->code[i] + 1] - col->dict.off[col->code[i]];
        }
        r->st->shard_rows[s] += hi - lo;
        r->st->shard_bytes[s] += bytes;
    }
    return true;
}

/* Batch b of input round `round`, in place: its pieces as views where the
 * plan routes it by runs, else routed (into rt), packed into unit and
 * processed as in run_local. side(ctx) (NULL: none) runs while it is
 * processed. */
static sf_status process_in_place(preader *r, const sf_batch *b, router *rt, uint32_t round, sf_buf *unit,
                                  sf_status (*side)(void *), void *ctx)
{
    double t0 = sf_comm_wtime();
    if (!route_runs(r, b)) {
        size_t rows;
        SF_CALL(sf__dist_route_round(rt, r->plan, b, r->st, 1));
        SF_CALL(pack_from(r, b, rt, round, unit, 0, 1, &rows));
        r->st->t_route += sf_comm_wtime() - t0;
        if (unit->len == 0) return side ? side(ctx) : SF_OK;
        uint32_t kind;
        return sf__dist_work_on_side(&r->w, unit->data, unit->len, &kind, side, ctx);
    }
    size_t nv = 0;
    SF_CALL(sf_unit_views_of_runs(b, r->cols, r->ncols, r->rt.start, r->rt.k, &r->w.views, &nv, &r->w.cap));
    r->st->t_route += sf_comm_wtime() - t0;
    r->st->pieces_in_place += nv;
    return sf__dist_work_on_views(&r->w, nv, round, side, ctx);
}

/* The pass without exchange, each round's pieces taken as views of its
 * batch: no routing row by row, no packing. The next round is read into a
 * second batch while this one is processed (distribute.overlap, with two
 * or more threads: the views of this one stay valid meanwhile). With one
 * thread there is nothing to overlap with: the read-ahead would only put
 * the next round's reading between a round's read and its processing, and
 * so push that round's columns out of the cache (the HDF5 scan of
 * bench/peers was 4% slower with it at 2 x 1). */
static sf_status run_in_place(preader *r, const sf_dist_hooks *hk, bool *stopped)
{
    sf_batch spare;
    SF_CALL(sf_reader_batch_init(r->reader, &spare));
    sf_batch *cur = &r->batch, *next = &spare;
    sf_buf unit = sf__dist_pool_get(&r->pl);
    const bool ahead_on = r->cfg->overlap && sf_exec_threads(r->w.x) > 1;
    bool eof = false;
    sf_status rc = read_into(r, cur, &eof);
    while (rc == SF_OK && !eof) {
        if (hk && hk->stop_on_signal && sf_signal_pending()) {
            *stopped = true;
            break;
        }
        const uint32_t round = r->round++;
        ahead a = {r, next, false};
        if (ahead_on) {
            rc = process_in_place(r, cur, &r->rt, round, &unit, read_ahead_into, &a);
        } else {
            rc = process_in_place(r, cur, &r->rt, round, &unit, NULL, NULL);
            if (rc == SF_OK) rc = read_ahead_into(&a);
        }
        eof = a.eof;
        sf_batch *t = cur;
        cur = next;
        next = t;
    }
    sf__dist_pool_put(&r->pl, unit);
    sf_batch_fini(&spare);
    r->eof = true;
    return rc;
}

/* The pass without exchange: read, pack, process; no messages. With
 * several threads per rank in place, each sub-part's batch of a round goes
 * through process_in_place. */
static sf_status run_local(preader *r, const sf_dist_hooks *hk, bool *stopped)
{
    if (in_place_possible(r) && r->nsub == 1) return run_in_place(r, hk, stopped);
    r->subs_in_place = r->nsub > 1 && in_place_possible(r);
    sf_buf unit = sf__dist_pool_get(&r->pl);
    sf_status rc = next_round(r);
    while (rc == SF_OK && !r->eof) {
        if (hk && hk->stop_on_signal && sf_signal_pending()) {
            *stopped = true;
            break;
        }
        if (r->nsub > 1) {
            /* The sub-parts' units one after the other, each on all
             * threads; then the next round. */
            for (int t = 0; t < r->nsub && rc == SF_OK; t++) {
                if (r->subs_in_place) {
                    const uint32_t round = r->round * (uint32_t)r->nsub + (uint32_t)t;
                    if (r->sub[t].fresh)
                        rc = process_in_place(r, &r->sub[t].batch, &r->sub[t].rt, round, &unit, NULL, NULL);
                    continue;
                }
                const sf_buf *u = &r->sub[t].units[0];
                uint32_t kind;
                if (u->len > 0) rc = sf__dist_work_on_side(&r->w, u->data, u->len, &kind, NULL, NULL);
            }
            r->round++;
            if (rc == SF_OK) rc = next_round(r);
            continue;
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

/* A later rank failed: this rank reads the rest of its part without
 * processing it, to its end or its own first failure (in file order, as
 * a single reader meets them), which then is the one the ranks agree on
 * (the lowest rank among equal codes). */
static sf_status drain_part(preader *r)
{
    if (r->nsub == 1) {
        while (!r->eof) SF_CALL(sf_reader_next(r->reader, &r->batch, &r->eof));
        return SF_OK;
    }
    if (r->concurrent) return sf_exec_parallel(r->nsub, sub_drain, r);
    for (int t = 0; t < r->nsub; t++) SF_CALL(sub_drain(r, t));
    return SF_OK;
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
    if (rc == SF_OK) rc = next_round(r);
    uint64_t nunits = 0;
    for (;;) {
        /* Pack this rank's round for every destination, one after the
         * other in one buffer (units are multiples of 8 bytes, so each
         * stays aligned for reading in place). With T sub-parts they are
         * packed already, one unit per sub-part and destination. */
        sf_buf_clear(&send);
        nunits = 0;
        for (int d = 0; d < P && counts; d++) {
            size_t before = send.len, rows = 0;
            if (r->nsub > 1) {
                if (rc == SF_OK && !r->eof) rc = merge_units(r, d, &send);
            } else {
                if (rc == SF_OK && !r->eof) rc = pack_unit(r, &unit, d, P, &rows);
                if (rc == SF_OK && rows > 0) rc = sf_buf_append(&send, unit.data, unit.len);
            }
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
            /* The ranks before the first failing one read on, so that
             * the failure reported is the first in file order. */
            double first = rc != SF_OK ? -(double)sf_comm_rank() : -1e300;
            comm = sf_comm_allreduce_max_f64(&first, 1);
            if (comm != SF_OK) break;
            if (rc == SF_OK && (double)sf_comm_rank() < -first) rc = drain_part(r);
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
            if (read_next && r->cfg->overlap && r->nsub == 1) {
                rc = sf__dist_work_on_side(&r->w, recv.data + off, n, &kind, read_ahead, r);
                read_next = false;
            } else {
                rc = sf__dist_work_on_side(&r->w, recv.data + off, n, &kind, NULL, NULL);
            }
            off += n;
        }
        if (rc == SF_OK && read_next) rc = next_round(r);
    }
    free(counts);
    sf_buf_fini(&send);
    sf_buf_fini(&recv);
    sf_buf_fini(&unit);
    if (comm != SF_OK) return comm;
    return rc;
}

/* The T sub-parts' batches, routers and units (nothing for T == 1). */
static sf_status subs_create(preader *r)
{
    r->sub = calloc((size_t)r->nsub, sizeof *r->sub);
    SF_CHECK(r->sub != NULL, SF_ERR_NOMEM, "out of memory (%d sub-parts)", r->nsub);
    const int k = r->rt.k;
    for (int t = 0; t < r->nsub; t++) {
        sub_round *u = &r->sub[t];
        u->rt.k = k;
        u->rt.start = calloc((size_t)k + 1, sizeof *u->rt.start);
        u->units = calloc((size_t)r->ndest, sizeof *u->units);
        u->shard_rows = calloc((size_t)k, sizeof *u->shard_rows);
        u->shard_bytes = calloc((size_t)k, sizeof *u->shard_bytes);
        SF_CHECK(u->rt.start && u->units && u->shard_rows && u->shard_bytes, SF_ERR_NOMEM,
                 "out of memory (sub-part %d)", t);
        for (int d = 0; d < r->ndest; d++) sf_buf_init(&u->units[d]);
        /* sf__dist_route_round counts into shard_rows and shard_bytes only:
         * each thread counts into its own, summed at the end of the pass. */
        u->st.k = k;
        u->st.shard_rows = u->shard_rows;
        u->st.shard_bytes = u->shard_bytes;
        SF_CALL(sf_reader_batch_init(r->reader, &u->batch));
        u->batch_ok = true;
    }
    return SF_OK;
}

/* Adds the sub-parts' counts to the pass's (the slowest sub-part's read and
 * route seconds: the phases' length on this rank) and frees them. */
static void subs_destroy(preader *r)
{
    if (r->sub == NULL) return;
    double t_read = 0, t_route = 0;
    for (int t = 0; t < r->nsub; t++) {
        sub_round *u = &r->sub[t];
        for (int s = 0; u->shard_rows && u->shard_bytes && s < r->rt.k; s++) {
            r->st->shard_rows[s] += u->shard_rows[s];
            r->st->shard_bytes[s] += u->shard_bytes[s];
        }
        if (u->t_read > t_read) t_read = u->t_read;
        if (u->t_route > t_route) t_route = u->t_route;
        if (u->batch_ok) sf_batch_fini(&u->batch);
        for (int d = 0; u->units && d < r->ndest; d++) sf_buf_fini(&u->units[d]);
        free(u->units);
        free(u->shard_rows);
        free(u->shard_bytes);
        free(u->rt.start);
        free(u->rt.shard);
        free(u->rt.order);
    }
    r->st->t_read += t_read;
    r->st->t_route += t_route;
    free(r->sub);
    r->sub = NULL;
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
    bool exchange = r.P > 1 && (cfg->exchange == SF_EXCHANGE_ALWAYS ||
                                (cfg->exchange == SF_EXCHANGE_AUTO && sf_shard_plan_key_column(plan) >= 0));
    /* The run split the reader's part into one sub-part per thread. */
    r.nsub = sf_reader_split_count(reader);
    r.concurrent = sf_reader_sub_concurrent(reader);
    r.ndest = exchange ? r.P : 1;
    bool batch_ok = false;
    if (rc == SF_OK && r.nsub > 1) {
        rc = subs_create(&r);
    } else if (rc == SF_OK) {
        rc = sf_reader_batch_init(reader, &r.batch);
        batch_ok = rc == SF_OK;
    }
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
    subs_destroy(&r);
    /* Rank 0 reports the plan's balance and the totals of all ranks. */
    if (comm == SF_OK) {
        const size_t k = (size_t)r.rt.k;
        uint64_t *sum = calloc(2 * k + 5, sizeof *sum);
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
        sum[2 * k + 4] = stats->pieces_in_place;
        comm = sf_comm_allreduce_sum_u64(sum, (int)(2 * k + 5));
        if (comm == SF_OK) {
            memcpy(stats->shard_rows, sum, k * sizeof *sum);
            memcpy(stats->shard_bytes, sum + k, k * sizeof *sum);
            stats->rows_read = sum[2 * k];
            stats->units_sent = sum[2 * k + 1];
            stats->bytes_sent = sum[2 * k + 2];
            stats->rounds = sum[2 * k + 3];
            stats->pieces_in_place = sum[2 * k + 4];
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
