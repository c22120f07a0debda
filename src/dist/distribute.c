/* One pass of the data path: rank 0 reads and routes, every rank processes.
 *
 * Rank 0 reads the input a batch (a "round") at a time, routes each row to
 * its logical shard, and packs the pass's columns of each shard into pieces.
 * Static mode sends the pieces of shard s to rank s mod P, one unit per rank
 * per round, with non-blocking sends so that rank 0 reads round r+1 while
 * round r is in flight. Dynamic mode packs the pieces of a round into units
 * of about 1/(2P) of the round and hands them out on request (rank 0 works
 * on a unit itself when nobody is asking). Bytes in flight (static) or
 * queued (dynamic) are bounded by distribute.memory_budget plus one round. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <time.h>

#include "shardflow/comm.h"
#include "shardflow/dist.h"
#include "shardflow/fault.h"

#include "dist/dist_impl.h"


sf_status sf_dist_stats_init(sf_dist_stats *s, int k)
{
    memset(s, 0, sizeof *s);
    s->k = k;
    s->shard_rows = calloc((size_t)(k ? k : 1), sizeof(uint64_t));
    s->shard_bytes = calloc((size_t)(k ? k : 1), sizeof(uint64_t));
    s->rows_included = calloc((size_t)(k ? k : 1), sizeof(uint64_t));
    s->rows_excluded = calloc((size_t)(k ? k : 1), sizeof(uint64_t));
    s->retries = calloc((size_t)(k ? k : 1), sizeof(uint64_t));
    s->pieces_excluded = calloc((size_t)(k ? k : 1), sizeof(uint64_t));
    s->fault_key = UINT64_MAX;
    SF_CHECK(s->shard_rows && s->shard_bytes && s->rows_included && s->rows_excluded && s->retries &&
                 s->pieces_excluded,
             SF_ERR_NOMEM, "out of memory (shard statistics)");
    return SF_OK;
}

void sf_dist_stats_fini(sf_dist_stats *s)
{
    free(s->shard_rows);
    free(s->shard_bytes);
    free(s->rows_included);
    free(s->rows_excluded);
    free(s->retries);
    free(s->pieces_excluded);
    memset(s, 0, sizeof *s);
}

sf_buf sf__dist_pool_get(pool *p)
{
    if (p->nfree) return p->free_bufs[--p->nfree];
    sf_buf b;
    sf_buf_init(&b);
    return b;
}

void sf__dist_pool_put(pool *p, sf_buf b)
{
    if (p->off) {
        sf_buf_fini(&b);
        return;
    }
    if (p->nfree == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        sf_buf *nb = realloc(p->free_bufs, cap * sizeof *nb);
        if (nb == NULL) {
            sf_buf_fini(&b);
            return;
        }
        p->free_bufs = nb;
        p->cap = cap;
    }
    p->free_bufs[p->nfree++] = b;
}

void sf__dist_pool_fini(pool *p)
{
    for (size_t i = 0; i < p->nfree; i++) sf_buf_fini(&p->free_bufs[i]);
    free(p->free_bufs);
}

sf_status sf__dist_route_round(router *rt, const sf_shard_plan *plan, const sf_batch *b,
                             sf_dist_stats *st, int count_stats)
{
    if (b->nrows > rt->cap) {
        free(rt->shard);
        free(rt->order);
        rt->shard = malloc(b->nrows * sizeof *rt->shard);
        rt->order = malloc(b->nrows * sizeof *rt->order);
        SF_CHECK(rt->shard && rt->order, SF_ERR_NOMEM, "out of memory (routing %zu rows)", b->nrows);
        rt->cap = b->nrows;
    }
    SF_CALL(sf_shard_route(plan, b, rt->shard));
    memset(rt->start, 0, sizeof(size_t) * (size_t)(rt->k + 1));
    for (size_t i = 0; i < b->nrows; i++) {
        SF_CHECK(rt->shard[i] < (uint32_t)rt->k, SF_ERR_INTERNAL, "row routed to shard %u of %d",
                 rt->shard[i], rt->k);
        rt->start[rt->shard[i] + 1]++;
    }
    for (int s = 0; s < rt->k; s++) rt->start[s + 1] += rt->start[s];
    if (count_stats) {
        for (int s = 0; s < rt->k; s++) st->shard_rows[s] += rt->start[s + 1] - rt->start[s];
        if (b->row_bytes) {
            for (size_t i = 0; i < b->nrows; i++) st->shard_bytes[rt->shard[i]] += b->row_bytes[i];
        } else {
            /* Columnar size: 8 bytes per number, the text of strings. The
             * numbers are the same for every row: count them once. */
            uint64_t fixed = 0;
            for (int c = 0; c < b->ncols; c++)
                if (b->cols[c].loaded && b->cols[c].type != SF_STRING) fixed += 8;
            for (size_t i = 0; i < b->nrows; i++) st->shard_bytes[rt->shard[i]] += fixed;
            for (int c = 0; c < b->ncols; c++) {
                const sf_column *col = &b->cols[c];
                if (!col->loaded || col->type != SF_STRING) continue;
                for (size_t i = 0; i < b->nrows; i++)
                    st->shard_bytes[rt->shard[i]] += col->dict.off[col->code[i] + 1] - col->dict.off[col->code[i]];
            }
        }
    }
    /* Counting sort: stable, so rows keep input order within a shard. */
    size_t *fill = malloc(sizeof(size_t) * (size_t)rt->k);
    SF_CHECK(fill != NULL, SF_ERR_NOMEM, "out of memory (routing)");
    memcpy(fill, rt->start, sizeof(size_t) * (size_t)rt->k);
    for (size_t i = 0; i < b->nrows; i++) rt->order[fill[rt->shard[i]]++] = (uint32_t)i;
    free(fill);
    return SF_OK;
}


static void sleep_for(double s)
{
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* A stop signal this rank should act on. */
static bool stop_signalled(const worker *w) { return w->hk && w->hk->stop_on_signal && sf_signal_pending() != 0; }



sf_status sf__dist_work_on_side(worker *w, const uint8_t *bytes, size_t n, uint32_t *kind,
                              sf_status (*side)(void *), void *ctx)
{
    return sf__dist_work_on_opts(w, bytes, n, kind, side, ctx, NULL);
}

static sf_status work_on(worker *w, const uint8_t *bytes, size_t n, uint32_t *kind)
{
    return sf__dist_work_on_opts(w, bytes, n, kind, NULL, NULL, NULL);
}

/* Counts the outcome of a unit's pieces; moved[i]: piece i went to
 * another rank (its attempts here count as retries). */
static void apply_results(worker *w, const sf_exec_piece_result *res, const uint8_t *moved, size_t nv,
                          uint64_t round)
{
    for (size_t i = 0; i < nv; i++) {
        const sf_exec_piece_result *pr = &res[i];
        if (moved && moved[i]) {
            w->st->retries[pr->shard] += (uint64_t)pr->attempts;
            continue;
        }
        w->st->rows_included[pr->shard] += pr->rows - pr->rows_excluded;
        w->st->rows_excluded[pr->shard] += pr->rows_excluded;
        w->st->retries[pr->shard] += (uint64_t)(pr->attempts - 1);
        w->st->pieces_done++;
        if (pr->excluded) {
            w->st->pieces_excluded[pr->shard]++;
            /* Keep the first exclusion in input order (round, shard), so
             * that every layout names the same one. */
            uint64_t key = (round << 20) | pr->shard;
            if (key < w->st->fault_key) {
                w->st->fault_key = key;
                snprintf(w->st->fault, sizeof w->st->fault, "shard %u of round %llu excluded: %s", pr->shard,
                         (unsigned long long)round, pr->why);
            }
        }
    }
}

/* The pieces in w->views[0..nv) of a unit of input round `round`; base:
 * the attempts other ranks made; hold: a speculative unit kept apart until
 * rank 0's verdict. */
static sf_status work_parsed(worker *w, size_t nv, uint32_t round, uint32_t base, bool hold,
                             sf_status (*side)(void *), void *ctx, const unit_opts *o)
{
    if (nv > w->list_cap) {
        const sf_batch **l = realloc(w->list, nv * sizeof *l);
        if (l) w->list = l;
        uint32_t *sh = realloc(w->shards, nv * sizeof *sh);
        if (sh) w->shards = sh;
        sf_exec_piece_result *res = realloc(w->res, nv * sizeof *res);
        if (res) w->res = res;
        uint8_t *mv = realloc(w->moved, nv);
        if (mv) w->moved = mv;
        SF_CHECK(l && sh && res && mv, SF_ERR_NOMEM, "out of memory (work list)");
        w->list_cap = nv;
    }
    for (size_t i = 0; i < nv; i++) {
        w->list[i] = &w->views[i].batch;
        w->shards[i] = w->views[i].shard;
        SF_CHECK(w->shards[i] < (uint32_t)w->st->k, SF_ERR_INTERNAL, "work unit names shard %u of %d",
                 w->shards[i], w->st->k);
        w->st->rows_done += w->views[i].batch.nrows;
    }
    SF_CALL(sf_exec_set_unit(w->x, (int)base, hold));
    /* A crash test's point: the n-th unit this rank takes on. */
    sf_fault_point("round");
    double t0 = sf_comm_wtime();
    sf_status rc = sf_exec_process_unit(w->x, w->list, w->shards, (int)nv, round, side, ctx,
                                        w->res);
    double dt = sf_comm_wtime() - t0;
    /* An injected straggler: this rank takes factor times as long. */
    double slow = sf_fault_slow_factor();
    if (slow > 1.0) sleep_for((slow - 1.0) * dt);
    w->st->t_process += sf_comm_wtime() - t0;
    w->st->units_done++;
    if (rc != SF_OK) {
        if (hold) sf_exec_hold_end(w->x, false);
        return rc;
    }
    memset(w->moved, 0, nv);
    if (o && o->allow_move && base == 0) {
        /* Pieces this rank could not do go back to rank 0 for another. */
        for (size_t i = 0; i < nv && rc == SF_OK; i++) {
            if (!w->res[i].excluded) continue;
            const sf_batch *b = &w->views[i].batch;
            uint32_t *all = malloc((b->nrows ? b->nrows : 1) * sizeof *all);
            int *cols = malloc((size_t)(b->ncols ? b->ncols : 1) * sizeof *cols);
            if (all == NULL || cols == NULL) rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (moving a piece)");
            for (size_t r = 0; all && r < b->nrows; r++) all[r] = (uint32_t)r;
            for (int c = 0; cols && c < b->ncols; c++) cols[c] = c;
            if (rc == SF_OK && o->ret->len == 0) {
                rc = sf_unit_begin(o->ret, UNIT_DATA);
                sf_unit_set_round(o->ret, round);
            }
            if (rc == SF_OK) rc = sf_piece_append(o->ret, b, cols, b->ncols, w->shards[i], all, b->nrows);
            free(all);
            free(cols);
            w->moved[i] = 1;
        }
        if (rc != SF_OK) {
            if (hold) sf_exec_hold_end(w->x, false);
            return rc;
        }
    }
    if (hold) {
        /* Counted when rank 0 grants the claim (pending_*). */
        if (nv > w->pending_cap) {
            sf_exec_piece_result *pr = realloc(w->pending, nv * sizeof *pr);
            uint8_t *pm = pr ? realloc(w->pending_moved, nv) : NULL;
            if (pr) w->pending = pr;
            if (pm) w->pending_moved = pm;
            SF_CHECK(pr && pm, SF_ERR_NOMEM, "out of memory (held unit)");
            w->pending_cap = nv;
        }
        memcpy(w->pending, w->res, nv * sizeof *w->res);
        memcpy(w->pending_moved, w->moved, nv);
        w->npending = nv;
        w->pending_round = round;
        *o->held = true;
        return SF_OK;
    }
    apply_results(w, w->res, w->moved, nv, round);
    return SF_OK;
}

sf_status sf__dist_work_on_opts(worker *w, const uint8_t *bytes, size_t n, uint32_t *kind,
                              sf_status (*side)(void *), void *ctx, const unit_opts *o)
{
    size_t nv = 0;
    SF_CALL(sf_unit_parse_ex(bytes, n, w->schema, w->stable, kind, &w->views, &nv, &w->cap));
    if (*kind != UNIT_DATA) return SF_OK;
    uint32_t id, base;
    bool spec;
    sf_unit_meta(bytes, n, &id, &spec, &base);
    return work_parsed(w, nv, sf_unit_round(bytes, n), base, o && o->held && spec, side, ctx, o);
}

sf_status sf__dist_work_on_views(worker *w, size_t nv, uint32_t round, sf_status (*side)(void *), void *ctx)
{
    return work_parsed(w, nv, round, 0, false, side, ctx, NULL);
}

/* The verdict on a held unit: counts it or drops it. */
static sf_status end_hold(worker *w, bool commit, sf_buf *ret)
{
    sf_status rc = sf_exec_hold_end(w->x, commit);
    if (commit) apply_results(w, w->pending, w->pending_moved, w->npending, w->pending_round);
    else if (ret) sf_buf_clear(ret);
    w->npending = 0;
    return rc;
}

void sf__dist_worker_fini(worker *w)
{
    sf_unit_views_free(w->views, w->cap);
    free(w->list);
    free(w->shards);
    free(w->res);
    free(w->moved);
    free(w->pending);
    free(w->pending_moved);
    for (int c = 0; w->owned && c < w->nowned; c++) sf_dict_fini(&w->owned[c]);
    free(w->owned);
    free(w->stable);
    w->owned = NULL;
    w->stable = NULL;
    w->nowned = 0;
}

static sf_status send_control(int dest, uint32_t kind)
{
    sf_buf b;
    sf_buf_init(&b);
    sf_status rc = sf_unit_begin(&b, kind);
    if (rc == SF_OK) rc = sf_comm_send(dest, SF_TAG_PIECE, b.data, b.len);
    sf_buf_fini(&b);
    return rc;
}

/* ---- workers (rank > 0) ---- */

static uint32_t unit_kind(const sf_buf *msg)
{
    uint32_t kind = UNIT_ABORT;
    if (msg->len >= 16) memcpy(&kind, msg->data + 4, 4);
    return kind & 0xFu;
}

/* Static mode: every worker sends rank 0 exactly one status message per
 * pass on SF_TAG_REQUEST: at its first failure (so rank 0 stops the pass
 * early) or, if it never failed, after END. */
static sf_status worker_static(worker *w)
{
    sf_buf msg;
    sf_buf_init(&msg);
    sf_status rc = SF_OK, comm = SF_OK;
    bool told = false, stopped = false;
    for (;;) {
        double t0 = sf_comm_wtime();
        comm = sf_comm_recv(0, SF_TAG_PIECE, &msg, NULL);
        w->st->t_wait += sf_comm_wtime() - t0;
        if (comm == SF_ERR_NOMEM) {
            /* The unit was consumed and dropped: a local failure. */
            if (rc == SF_OK) rc = comm;
            comm = SF_OK;
        } else if (comm != SF_OK) {
            break;
        } else {
            uint32_t kind = unit_kind(&msg);
            if (kind == UNIT_CKPT) {
                /* Every unit before it is done: take part in the checkpoint.
                 * Its agreement fails every rank alike; then all leave. */
                sf_status e = w->hk && w->hk->checkpoint ? w->hk->checkpoint(w->hk->ctx, w->st, rc) : rc;
                if (e != SF_OK) {
                    sf_buf_fini(&msg);
                    return e;
                }
                continue;
            }
            if (kind == UNIT_STOP) stopped = true;
            if (kind != UNIT_DATA) break;
            if (rc == SF_OK) rc = work_on(w, msg.data, msg.len, &kind);
        }
        if (rc != SF_OK && !told) {
            uint32_t code = (uint32_t)rc;
            comm = sf_comm_send(0, SF_TAG_REQUEST, &code, sizeof code);
            told = true;
            if (comm != SF_OK) break;
        } else if (!told && stop_signalled(w)) {
            /* Ask rank 0 to stop at the next round boundary. */
            uint32_t code = (uint32_t)SF_ERR_INTERRUPTED;
            comm = sf_comm_send(0, SF_TAG_REQUEST, &code, sizeof code);
            told = true;
            if (comm != SF_OK) break;
        }
    }
    if (comm == SF_OK && !told) {
        uint32_t code = (uint32_t)rc;
        comm = sf_comm_send(0, SF_TAG_REQUEST, &code, sizeof code);
    }
    sf_buf_fini(&msg);
    if (comm != SF_OK) return comm;
    if (rc == SF_OK && stopped) return SF_ERR_INTERRUPTED;
    return rc;
}

/* Requests each worker keeps outstanding in dynamic mode. Rank 0 answers
 * every request; once it answers END (or STOP, ABORT) it answers every
 * later one the same way, so each worker receives exactly PREFETCH final
 * replies.
 *
 * A worker sends a request after finishing each data unit (plus PREFETCH
 * at the start and one after each checkpoint): so a request also
 * acknowledges the unit before it, and carries the pieces that failed
 * here to be tried elsewhere. Header: {code, flags, unit id, 0} (u32). */
#define PREFETCH 4
enum { REQ_ACK = 1u, REQ_MOVED = 2u, REQ_CLAIM = 4u };

static sf_status send_request(uint32_t code, uint32_t flags, uint32_t id, const sf_buf *moved)
{
    uint32_t hdr[4] = {code, flags, id, 0};
    if (moved == NULL || moved->len == 0) return sf_comm_send(0, SF_TAG_REQUEST, hdr, sizeof hdr);
    sf_buf b;
    sf_buf_init(&b);
    sf_status rc = sf_buf_append(&b, hdr, sizeof hdr);
    if (rc == SF_OK) rc = sf_buf_append(&b, moved->data, moved->len);
    if (rc == SF_OK) rc = sf_comm_send(0, SF_TAG_REQUEST, b.data, b.len);
    sf_buf_fini(&b);
    return rc;
}

static sf_status worker_dynamic(worker *w)
{
    sf_buf msg, moved, verdict;
    sf_buf_init(&msg);
    sf_buf_init(&moved);
    sf_buf_init(&verdict);
    sf_status rc = SF_OK, comm = SF_OK;
    int outstanding = 0;
    for (int i = 0; i < PREFETCH && comm == SF_OK; i++, outstanding++) comm = send_request(0, 0, 0, NULL);
    bool done = false, stopped = false, asked_stop = false;
    unit_opts opts = {.allow_move = w->hk && w->hk->redistribute, .ret = &moved, .held = NULL};
    while (comm == SF_OK && outstanding > 0) {
        double t0 = sf_comm_wtime();
        comm = sf_comm_recv(0, SF_TAG_PIECE, &msg, NULL);
        w->st->t_wait += sf_comm_wtime() - t0;
        outstanding--;
        uint32_t kind = UNIT_DATA;
        if (comm == SF_ERR_NOMEM) {
            /* A data unit we could not hold: fail locally, keep the protocol. */
            if (rc == SF_OK) rc = comm;
            comm = SF_OK;
            msg.len = 0;
        } else if (comm != SF_OK) {
            break;
        } else {
            kind = unit_kind(&msg);
        }
        if (kind == UNIT_CKPT) {
            /* Rank 0 sends it once every unit handed out is acknowledged:
             * ask again, then checkpoint. */
            comm = send_request((uint32_t)rc, 0, 0, NULL);
            if (comm != SF_OK) break;
            outstanding++;
            sf_status e = w->hk && w->hk->checkpoint ? w->hk->checkpoint(w->hk->ctx, w->st, rc) : rc;
            if (e != SF_OK) {
                rc = e;
                goto out;
            }
            continue;
        }
        if (kind != UNIT_DATA) {
            if (kind == UNIT_STOP) stopped = true;
            done = true; /* drain the remaining final replies */
            continue;
        }
        if (done) continue;
        uint32_t id = 0, base;
        bool spec = false, held = false;
        if (msg.len >= 16) sf_unit_meta(msg.data, msg.len, &id, &spec, &base);
        sf_buf_clear(&moved);
        opts.held = &held;
        if (rc == SF_OK) rc = sf__dist_work_on_opts(w, msg.data, msg.len, &kind, NULL, NULL, &opts);
        if (rc == SF_OK && held) {
            /* A speculative unit: only the copy rank 0 grants counts. */
            uint32_t hdr[4] = {0, REQ_CLAIM, id, 0};
            comm = sf_comm_send(0, SF_TAG_REQUEST, hdr, sizeof hdr);
            if (comm == SF_OK) comm = sf_comm_recv(0, SF_TAG_VERDICT, &verdict, NULL);
            if (comm != SF_OK) break;
            bool grant = verdict.len >= 1 && verdict.data[0] == 1;
            rc = end_hold(w, grant, &moved);
        }
        /* The request acknowledges the unit; a failure or a stop signal
         * rides along (rank 0 then stops). */
        uint32_t code = (uint32_t)rc;
        if (rc == SF_OK && !asked_stop && stop_signalled(w)) {
            code = (uint32_t)SF_ERR_INTERRUPTED;
            asked_stop = true;
        }
        comm = send_request(code, REQ_ACK | (moved.len ? REQ_MOVED : 0u), id, &moved);
        if (comm != SF_OK) break;
        outstanding++;
    }
out:
    sf_buf_fini(&msg);
    sf_buf_fini(&moved);
    sf_buf_fini(&verdict);
    if (comm != SF_OK) return comm;
    if (rc == SF_OK && stopped) return SF_ERR_INTERRUPTED;
    return rc;
}

/* ---- rank 0 ---- */

typedef struct inflight {
    sf_comm_req *req;
    sf_buf buf;
} inflight;

/* Rank 0's non-blocking sends, oldest first; their buffers go back to the
 * pool when they complete. */
typedef struct sender {
    inflight *fl;
    size_t head, n, cap;
    uint64_t bytes;
} sender;

typedef struct root {
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
    int count_stats;
    sender snd;
    int *waiting;          /* dynamic: requests not yet answered */
    const sf_dist_hooks *hk;
    sf_reader_pos before_pos;  /* reader position before the round last read */
    uint64_t before_rows;
    uint32_t round;        /* index of the round in r->batch */
    uint64_t pieces_since; /* pieces sent since the last checkpoint */
    double last_ckpt;      /* time of the last checkpoint (or the start) */
} root;

/* Whether a checkpoint is due at this round boundary. */
static bool ckpt_due(const root *r)
{
    const sf_dist_hooks *h = r->hk;
    if (h == NULL || h->checkpoint == NULL) return false;
    if (h->every_pieces > 0 && r->pieces_since >= h->every_pieces) return true;
    return h->every_seconds > 0 && sf_comm_wtime() - r->last_ckpt >= h->every_seconds;
}

/* Records the boundary: rounds done and where the reader was before the
 * next one (what a checkpoint resumes from). */
static void note_boundary(root *r, const sf_reader_pos *pos, uint64_t rows_before)
{
    r->st->rounds = r->round;
    r->st->pos = *pos;
    r->st->pos_rows = rows_before;
}

static sf_status root_checkpoint(root *r, sf_status local)
{
    r->pieces_since = 0;
    sf_status rc = r->hk->checkpoint(r->hk->ctx, r->st, local);
    r->last_ckpt = sf_comm_wtime();
    return rc;
}

static void note_peak(root *r, uint64_t bytes)
{
    if (bytes > r->st->peak_inflight) r->st->peak_inflight = bytes;
}

/* Completes finished sends; with block, waits for the oldest one first. */
static sf_status sender_retire(root *r, bool block)
{
    sender *s = &r->snd;
    sf_status rc = SF_OK;
    while (s->head < s->n) {
        inflight *f = &s->fl[s->head];
        if (block) {
            rc = sf_comm_wait(&f->req);
            block = false;
        } else {
            bool fin = false;
            rc = sf_comm_test(&f->req, &fin);
            if (rc == SF_OK && !fin) break;
        }
        s->bytes -= f->buf.len;
        sf__dist_pool_put(&r->pl, f->buf);
        s->head++;
        if (rc != SF_OK) return rc;
    }
    if (s->head == s->n) s->head = s->n = 0;
    return SF_OK;
}

/* Sends a unit without blocking; the sender owns the buffer from here on. */
/* Sends in flight at most: Open MPI tracks a bounded number of pending
 * messages per peer, and tens of thousands of small ones (one per piece,
 * batch_pieces: false) overflowed it (truncated or lost messages). */
#define MAX_SENDS_IN_FLIGHT 256

static sf_status sender_post(root *r, int dest, sf_buf unit)
{
    sender *s = &r->snd;
    while (s->n - s->head >= MAX_SENDS_IN_FLIGHT) {
        sf_status e = sender_retire(r, true);
        if (e != SF_OK) {
            sf__dist_pool_put(&r->pl, unit);
            return e;
        }
    }
    if (s->n == s->cap) {
        if (s->head > 0) {
            memmove(s->fl, s->fl + s->head, (s->n - s->head) * sizeof *s->fl);
            s->n -= s->head;
            s->head = 0;
        }
        if (s->n == s->cap) {
            size_t cap = s->cap ? s->cap * 2 : 16;
            inflight *nf = realloc(s->fl, cap * sizeof *nf);
            if (nf == NULL) {
                sf__dist_pool_put(&r->pl, unit);
                return sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (in-flight list)");
            }
            s->fl = nf;
            s->cap = cap;
        }
    }
    sf_status rc = sf_comm_isend(dest, SF_TAG_PIECE, unit.data, unit.len, &s->fl[s->n].req);
    if (rc != SF_OK) {
        sf__dist_pool_put(&r->pl, unit);
        return rc;
    }
    s->fl[s->n++].buf = unit;
    s->bytes += unit.len;
    r->st->units_sent++;
    r->st->bytes_sent += unit.len;
    return SF_OK;
}

/* Waits for every send; returns the first failure. */
static sf_status sender_drain(root *r)
{
    sf_status rc = SF_OK;
    while (r->snd.head < r->snd.n) {
        sf_status e = sender_retire(r, true);
        if (rc == SF_OK) rc = e;
    }
    free(r->snd.fl);
    memset(&r->snd, 0, sizeof r->snd);
    return rc;
}

/* Reads and routes the next round; *eof at the end. The reader position
 * and rows read before it are kept in r->before_pos / before_rows. */
static sf_status next_round(root *r, bool *eof)
{
    sf_reader_tell(r->reader, &r->before_pos);
    r->before_rows = r->st->rows_read;
    double t0 = sf_comm_wtime();
    SF_CALL(sf_reader_next(r->reader, &r->batch, eof));
    double t1 = sf_comm_wtime();
    r->st->t_read += t1 - t0;
    if (*eof) return SF_OK;
    r->st->rows_read += r->batch.nrows;
    SF_CALL(sf__dist_route_round(&r->rt, r->plan, &r->batch, r->st, r->count_stats));
    r->st->t_route += sf_comm_wtime() - t1;
    return SF_OK;
}

static sf_status append_shard(root *r, sf_buf *unit, int s)
{
    size_t n = r->rt.start[s + 1] - r->rt.start[s];
    if (n == 0) return SF_OK;
    return sf_piece_append_ex(unit, &r->batch, r->cols, r->ncols, (uint32_t)s, r->rt.order + r->rt.start[s], n,
                              r->w.stable);
}

/* The next round, read while this rank's threads work on the current one;
 * with spare set, its pieces for this rank are packed into spare too
 * (packed), so that packing overlaps the processing as well. */
typedef struct ahead {
    root *r;
    bool eof;
    sf_buf *spare;
    bool packed;
} ahead;

/* Packs this rank's pieces of the routed round (shards 0, P, 2P, ...). */
static sf_status pack_local(root *r, sf_buf *unit, uint32_t round)
{
    SF_CALL(sf_unit_begin(unit, UNIT_DATA));
    sf_unit_set_round(unit, round);
    for (int s = 0; s < r->rt.k; s += r->P) SF_CALL(append_shard(r, unit, s));
    return SF_OK;
}

static sf_status read_ahead(void *ctx)
{
    ahead *a = ctx;
    a->packed = false;
    SF_CALL(next_round(a->r, &a->eof));
    if (a->eof || a->spare == NULL) return SF_OK;
    double t0 = sf_comm_wtime();
    SF_CALL(pack_local(a->r, a->spare, a->r->round + 1));
    a->r->st->t_route += sf_comm_wtime() - t0;
    a->packed = true;
    return SF_OK;
}

/* Receives one status message from worker src (static mode): a failure,
 * or a request to stop (SF_ERR_INTERRUPTED). */
static sf_status take_status(sf_buf *tmp, int src, bool *failed, bool *stop)
{
    sf_status comm = sf_comm_recv(src, SF_TAG_REQUEST, tmp, NULL);
    uint32_t code = 0;
    if (comm == SF_OK && tmp->len >= 4) memcpy(&code, tmp->data, 4);
    if (code == (uint32_t)SF_ERR_INTERRUPTED) *stop = true;
    else if (code != 0) *failed = true;
    return comm;
}

static sf_status root_static(root *r)
{
    sf_status rc = SF_OK;
    int P = r->P;
    sf_buf local = sf__dist_pool_get(&r->pl), spare = sf__dist_pool_get(&r->pl), tmp;
    sf_buf_init(&tmp);
    bool remote_failed = false, stop = false, skip_end = false;
    uint8_t *reported = calloc((size_t)P, 1);
    ahead next = {r, false, r->cfg->overlap ? &spare : NULL, false};
    SF_CHECK_GOTO(reported != NULL, SF_ERR_NOMEM, done, "out of memory (distribution)");
    SF_CALL_GOTO(next_round(r, &next.eof), done);
    note_boundary(r, &r->before_pos, r->before_rows);
    while (!next.eof) {
        /* A worker that failed says so at once: stop reading. A worker
         * that got a stop signal asks to stop at this boundary. */
        bool flag = true;
        while (flag && !remote_failed) {
            int src = -1;
            SF_CALL_GOTO(sf_comm_iprobe(SF_TAG_REQUEST, &flag, &src), done);
            if (flag) {
                bool asked_stop = false;
                SF_CALL_GOTO(take_status(&tmp, src, &remote_failed, &asked_stop), done);
                stop = stop || asked_stop;
                reported[src] = 1;
            }
        }
        if (r->hk && r->hk->stop_on_signal && sf_signal_pending()) stop = true;
        if (remote_failed || stop) break;
        double t0 = sf_comm_wtime();
        for (int dest = 1; dest < P; dest++) {
            /* One unit per rank and round (batch_pieces), or one per piece. */
            int per = r->cfg->batch_pieces ? r->rt.k : 1;
            for (int first = dest; first < r->rt.k; first += per * P) {
                size_t rows = 0;
                int last = first + per * P;
                for (int s = first; s < r->rt.k && s < last; s += P) rows += r->rt.start[s + 1] - r->rt.start[s];
                if (rows == 0) continue; /* no empty messages */
                sf_buf unit = sf__dist_pool_get(&r->pl);
                rc = sf_unit_begin(&unit, UNIT_DATA);
                sf_unit_set_round(&unit, r->round);
                for (int s = first; s < r->rt.k && s < last && rc == SF_OK; s += P) rc = append_shard(r, &unit, s);
                /* Keep the bytes in flight under the budget: wait for the oldest. */
                while (rc == SF_OK && r->snd.head < r->snd.n && r->snd.bytes + unit.len > r->cfg->memory_budget)
                    rc = sender_retire(r, true);
                if (rc != SF_OK) {
                    sf__dist_pool_put(&r->pl, unit);
                    goto done;
                }
                SF_CALL_GOTO(sender_post(r, dest, unit), done);
                note_peak(r, r->snd.bytes);
                /* Without overlap every send completes before anything else. */
                while (!r->cfg->overlap && r->snd.head < r->snd.n) SF_CALL_GOTO(sender_retire(r, true), done);
            }
        }
        for (int s = 0; s < r->rt.k; s++) r->pieces_since += r->rt.start[s + 1] > r->rt.start[s];
        if (next.packed) {
            /* Packed by the read ahead, while the last round was processed. */
            sf_buf t = local;
            local = spare;
            spare = t;
            next.packed = false;
        } else {
            SF_CALL_GOTO(pack_local(r, &local, r->round), done);
        }
        r->st->t_route += sf_comm_wtime() - t0;
        /* The round is packed: its batch may be overwritten by the next read,
         * which the master thread does while the other threads process. */
        uint32_t kind;
        if (r->cfg->overlap) {
            SF_CALL_GOTO(sf__dist_work_on_side(&r->w, local.data, local.len, &kind, read_ahead, &next), done);
        } else {
            SF_CALL_GOTO(sf__dist_work_on_side(&r->w, local.data, local.len, &kind, NULL, NULL), done);
            SF_CALL_GOTO(read_ahead(&next), done);
        }
        SF_CALL_GOTO(sender_retire(r, false), done);
        r->round++;
        note_boundary(r, &r->before_pos, r->before_rows);
        if (!next.eof && ckpt_due(r)) {
            /* Every worker takes its units in order: the checkpoint unit
             * reaches it after all of this round's. */
            for (int dest = 1; dest < P; dest++) SF_CALL_GOTO(send_control(dest, UNIT_CKPT), done);
            rc = root_checkpoint(r, SF_OK);
            if (rc != SF_OK) {
                /* Every rank left the pass in the checkpoint's agreement. */
                skip_end = true;
                goto done;
            }
        }
    }
done:;
    /* Whatever happened, every worker gets exactly one END, STOP or ABORT
     * and rank 0 takes exactly one status message from each. */
    sf_status end = sender_drain(r);
    if (!skip_end) {
        bool abort_all = rc != SF_OK || remote_failed;
        uint32_t fin = abort_all ? UNIT_ABORT : stop ? UNIT_STOP : UNIT_END;
        for (int dest = 1; dest < P; dest++) {
            sf_status e = send_control(dest, fin);
            if (end == SF_OK) end = e;
        }
        bool ignored = false;
        for (int src = 1; src < P && end == SF_OK; src++)
            if (!reported || !reported[src]) end = take_status(&tmp, src, &remote_failed, &ignored);
    }
    free(reported);
    sf_buf_fini(&tmp);
    sf__dist_pool_put(&r->pl, local);
    sf__dist_pool_put(&r->pl, spare);
    if (rc == SF_OK && end == SF_OK && stop && !remote_failed) return SF_ERR_INTERRUPTED;
    return rc != SF_OK ? rc : end;
}

typedef struct queue {
    sf_buf *items;
    size_t head, n, cap;
    uint64_t bytes;
} queue;

static sf_status queue_push(queue *q, sf_buf b)
{
    if (q->head + q->n == q->cap) {
        if (q->head > 0) {
            memmove(q->items, q->items + q->head, q->n * sizeof *q->items);
            q->head = 0;
        }
        if (q->n == q->cap) {
            size_t cap = q->cap ? q->cap * 2 : 32;
            sf_buf *ni = realloc(q->items, cap * sizeof *ni);
            SF_CHECK(ni != NULL, SF_ERR_NOMEM, "out of memory (work queue)");
            q->items = ni;
            q->cap = cap;
        }
    }
    q->items[q->head + q->n++] = b;
    q->bytes += b.len;
    return SF_OK;
}

static sf_buf queue_pop(queue *q)
{
    sf_buf b = q->items[q->head++];
    q->n--;
    q->bytes -= b.len;
    return b;
}

/* Packs the round into units of about round/(2P) rows, shards in order. */
static sf_status enqueue_round(root *r, queue *q)
{
    size_t target = r->batch.nrows / (size_t)(2 * r->P);
    if (target < r->cfg->morsel_rows) target = r->cfg->morsel_rows;
    if (!r->cfg->batch_pieces) target = 1; /* one unit per piece */
    sf_buf unit = sf__dist_pool_get(&r->pl);
    sf_status rc = sf_unit_begin(&unit, UNIT_DATA);
    sf_unit_set_round(&unit, r->round);
    size_t rows = 0;
    for (int s = 0; s < r->rt.k && rc == SF_OK; s++) {
        size_t n = r->rt.start[s + 1] - r->rt.start[s];
        if (n == 0) continue;
        rc = append_shard(r, &unit, s);
        rows += n;
        r->pieces_since++;
        if (rc == SF_OK && rows >= target) {
            rc = queue_push(q, unit);
            if (rc != SF_OK) return rc;
            unit = sf__dist_pool_get(&r->pl);
            rc = sf_unit_begin(&unit, UNIT_DATA);
            sf_unit_set_round(&unit, r->round);
            rows = 0;
        }
    }
    if (rc == SF_OK && rows > 0) return queue_push(q, unit);
    sf__dist_pool_put(&r->pl, unit);
    return rc;
}

/* A worker's request code: a failure, or a request to stop. */
static void request_code(uint32_t code, bool *failed, bool *stop)
{
    if (code == (uint32_t)SF_ERR_INTERRUPTED) *stop = true;
    else if (code != 0) *failed = true;
}

/* A unit handed to a worker and not yet acknowledged. */
typedef struct sent_unit {
    uint32_t id;
    double at;
    bool spec;          /* the worker claims it before it counts */
    uint8_t claim;      /* 0 open, 1 the worker's copy counts, 2 rank 0's copy counts */
    bool tried;         /* rank 0 ran a copy */
    sf_buf copy;        /* spec units: the bytes, for rank 0's copy */
} sent_unit;

#define MAX_SENT (PREFETCH + 1)
/* Once the whole input is read, or while a checkpoint waits for every
 * unit handed out to be done, a worker gets a unit only while it holds
 * fewer than this many: one to work on and one waiting, so that the last
 * units are shared out (rank 0 does the rest) instead of queued behind a
 * busy worker. */
#define TAIL_SENT 2

typedef struct dyn {
    root *r;
    int P;
    sent_unit (*sent)[MAX_SENT];   /* per worker, oldest first */
    int *nsent;
    double *heard;                 /* last message from each worker */
    queue moved;                   /* pieces to try on another rank */
    int *moved_from;               /* their origin, parallel to moved.items */
    size_t moved_cap;
    uint32_t next_id;
    double *unit_time;             /* per worker: mean send-to-acknowledge time */
    uint64_t *acks;
} dyn;

static int unacked(const dyn *d)
{
    int n = 0;
    for (int p = 1; p < d->P; p++) n += d->nsent[p];
    return n;
}

static sent_unit *find_sent(dyn *d, int src, uint32_t id)
{
    for (int i = 0; i < d->nsent[src]; i++)
        if (d->sent[src][i].id == id) return &d->sent[src][i];
    return NULL;
}

static sf_status moved_push(dyn *d, const uint8_t *bytes, size_t n, int origin)
{
    sf_buf b = sf__dist_pool_get(&d->r->pl);
    sf_buf_clear(&b);
    SF_CALL(sf_buf_append(&b, bytes, n));
    if (d->moved.head + d->moved.n + 1 > d->moved_cap) {
        size_t cap = d->moved_cap ? d->moved_cap * 2 : 16;
        int *m = realloc(d->moved_from, cap * sizeof *m);
        SF_CHECK(m != NULL, SF_ERR_NOMEM, "out of memory (moved pieces)");
        d->moved_from = m;
        d->moved_cap = cap;
    }
    /* Only moved_take removes items, so head stays 0 and queue_push never
     * compacts: moved_from stays parallel to the items. */
    SF_CALL(queue_push(&d->moved, b));
    d->moved_from[d->moved.n - 1] = origin;
    return SF_OK;
}

/* Index in d->moved of the first moved unit whose origin is not dest, -1. */
static int moved_for(const dyn *d, int dest)
{
    for (size_t i = 0; i < d->moved.n; i++)
        if (d->moved_from[d->moved.head + i] != dest) return (int)i;
    return -1;
}

static sf_buf moved_take(dyn *d, int i)
{
    size_t at = d->moved.head + (size_t)i;
    sf_buf b = d->moved.items[at];
    d->moved.bytes -= b.len;
    memmove(d->moved.items + at, d->moved.items + at + 1, (d->moved.n - (size_t)i - 1) * sizeof *d->moved.items);
    memmove(d->moved_from + at, d->moved_from + at + 1, (d->moved.n - (size_t)i - 1) * sizeof *d->moved_from);
    d->moved.n--;
    return b;
}

/* Hands a data unit to dest; a unit near the end of the input is
 * speculative and its bytes are kept for a copy on rank 0. */
static sf_status dyn_send(dyn *d, int dest, sf_buf unit, uint32_t base, bool spec)
{
    root *r = d->r;
    SF_CHECK(d->nsent[dest] < MAX_SENT, SF_ERR_INTERNAL, "worker %d has %d units in flight", dest, d->nsent[dest]);
    uint32_t id = d->next_id++ & 0xFFFFFu;
    sf_unit_set_meta(&unit, id, spec, base);
    sent_unit *su = &d->sent[dest][d->nsent[dest]];
    su->id = id;
    su->at = sf_comm_wtime();
    d->heard[dest] = su->at; /* the watchdog counts from the hand-out */
    su->spec = spec;
    su->claim = 0;
    su->tried = false;
    sf_buf_clear(&su->copy);
    if (spec) SF_CALL(sf_buf_append(&su->copy, unit.data, unit.len));
    d->nsent[dest]++;
    return sender_post(r, dest, unit);
}

/* Takes one message from src: a request (acknowledging a unit, maybe with
 * pieces to move) or a claim on a speculative unit (answered at once).
 * *is_request tells which. */
static sf_status dyn_take(dyn *d, int src, sf_buf *msg, bool *failed, bool *stop, bool *is_request)
{
    *is_request = false;
    d->heard[src] = sf_comm_wtime();
    uint32_t hdr[4] = {0, 0, 0, 0};
    if (msg->len >= 16) memcpy(hdr, msg->data, 16);
    else if (msg->len >= 4) memcpy(hdr, msg->data, 4);
    if (hdr[1] & REQ_CLAIM) {
        sent_unit *su = find_sent(d, src, hdr[2]);
        uint8_t v = 1;
        if (su == NULL || su->claim == 2) v = 0;
        else su->claim = 1;
        return sf_comm_send(src, SF_TAG_VERDICT, &v, 1);
    }
    *is_request = true;
    request_code(hdr[0], failed, stop);
    if (hdr[1] & REQ_ACK) {
        if (d->nsent[src] > 0) {
            sent_unit *su = &d->sent[src][0];
            double t = sf_comm_wtime() - su->at;
            d->unit_time[src] = (d->unit_time[src] * (double)d->acks[src] + t) / (double)(d->acks[src] + 1);
            d->acks[src]++;
            sf_buf keep = su->copy;
            memmove(&d->sent[src][0], &d->sent[src][1], sizeof(sent_unit) * (size_t)(d->nsent[src] - 1));
            d->nsent[src]--;
            d->sent[src][d->nsent[src]].copy = keep; /* reuse the buffer */
        }
    }
    if ((hdr[1] & REQ_MOVED) && msg->len > 16) {
        SF_CALL(moved_push(d, msg->data + 16, msg->len - 16, src));
        d->r->st->moved++;
    }
    return SF_OK;
}

/* Dynamic root: an MPI failure leaves the protocol (the job then ends in
 * comm_broken); any other failure of rank 0 (out of memory) becomes rc and
 * the workers are answered ABORT as usual. Returns whether to leave. */
static bool split_status(sf_status e, sf_status *comm, sf_status *rc)
{
    if (e == SF_OK) return false;
    if (e == SF_ERR_MPI) {
        *comm = e;
        return true;
    }
    if (*rc == SF_OK) *rc = e;
    return false;
}

static sf_status root_dynamic(root *r)
{
    sf_status rc = SF_OK, comm = SF_OK;
    queue q = {0};
    int P = r->P;
    const sf_dist_hooks *hk = r->hk;
    /* Every worker gets exactly PREFETCH final (END/STOP/ABORT) replies. */
    int finals = 0, want_finals = PREFETCH * (P - 1);
    int *waiting = r->waiting; /* room for want_finals entries */
    int nwaiting = 0;
    bool eof = false, failed = false, stop = false, ckpt_wanted = false;
    int ckpt_sent_n = 0;
    uint8_t *ckpt_sent = calloc((size_t)P, 1);
    dyn d = {.r = r, .P = P};
    d.sent = calloc((size_t)P, sizeof *d.sent);
    d.nsent = calloc((size_t)P, sizeof *d.nsent);
    d.heard = calloc((size_t)P, sizeof *d.heard);
    d.unit_time = calloc((size_t)P, sizeof *d.unit_time);
    d.acks = calloc((size_t)P, sizeof *d.acks);
    sf_buf req;
    sf_buf_init(&req);
    worker *w = &r->w;
    if (!(ckpt_sent && d.sent && d.nsent && d.heard && d.unit_time && d.acks)) {
        /* The workers are already asking: nobody could answer them. */
        fprintf(stderr, "shardflow: error: rank 0: out of memory (distribution)\n");
        sf_comm_abort(1);
    }
    for (int p = 0; p < P; p++) {
        d.heard[p] = sf_comm_wtime();
        for (int i = 0; i < MAX_SENT; i++) sf_buf_init(&d.sent[p][i].copy);
    }
    {
        sf_reader_pos p0;
        sf_reader_tell(r->reader, &p0);
        note_boundary(r, &p0, r->st->rows_read);
    }

    for (;;) {
        comm = sender_retire(r, false);
        if (comm != SF_OK) goto done;
        if (!stop && hk && hk->stop_on_signal && sf_signal_pending()) stop = true;
        if (stop && !eof && ckpt_sent_n == 0) {
            /* No more reading: what is queued is handed out, then STOP. (A
             * checkpoint whose units went out completes first: those
             * workers are in its collective.) */
            eof = true;
            ckpt_wanted = false;
            sf_reader_pos p;
            sf_reader_tell(r->reader, &p);
            note_boundary(r, &p, r->st->rows_read);
        }
        bool broken = failed || rc != SF_OK;
        /* Everything handed out is acknowledged and nothing waits to move:
         * a boundary (for a checkpoint or the end). */
        bool quiet = q.n == 0 && d.moved.n == 0 && unacked(&d) == 0;
        /* Take every message that has arrived, answer what can be answered. */
        for (;;) {
            bool flag = false;
            int src = -1;
            comm = sf_comm_iprobe(SF_TAG_REQUEST, &flag, &src);
            if (comm != SF_OK) goto done;
            if (flag) {
                comm = sf_comm_recv(src, SF_TAG_REQUEST, &req, NULL);
                if (comm != SF_OK) goto done;
                bool is_req = false;
                if (split_status(dyn_take(&d, src, &req, &failed, &stop, &is_req), &comm, &rc)) goto done;
                if (is_req) waiting[nwaiting++] = src;
                broken = failed || rc != SF_OK;
                quiet = q.n == 0 && d.moved.n == 0 && unacked(&d) == 0;
            }
            if (nwaiting == 0) {
                if (flag) continue;
                break;
            }
            /* Once one worker has its CKPT the checkpoint happens (its
             * agreement carries any failure); before that a failure
             * cancels it. */
            bool ckpt_phase = ckpt_wanted && (ckpt_sent_n > 0 || (quiet && !broken));
            int i = 0;
            if (ckpt_phase) {
                /* Each worker gets one CKPT; its later requests wait. */
                while (i < nwaiting && ckpt_sent[waiting[i]]) i++;
                if (i == nwaiting) {
                    if (flag) continue;
                    break;
                }
            }
            int dest = waiting[i];
            int mv = broken || ckpt_phase ? -1 : moved_for(&d, dest);
            if (ckpt_phase) {
                comm = send_control(dest, UNIT_CKPT);
                ckpt_sent[dest] = 1;
                ckpt_sent_n++;
            } else if (broken) {
                comm = send_control(dest, UNIT_ABORT);
                finals++;
            } else if (mv >= 0 || (q.n > 0 && d.nsent[dest] < (eof || ckpt_wanted ? TAIL_SENT : MAX_SENT))) {
                /* Units handed out once the whole input is read are
                 * speculative: a straggler's share of the tail can be
                 * re-run on rank 0. */
                /* Pieces moved away from rank 0 are never speculative:
                 * rank 0's copy would run them where they already failed
                 * (and, claiming first, exclude them). */
                bool from0 = mv >= 0 && d.moved_from[d.moved.head + (size_t)mv] == 0;
                sf_status e = mv >= 0 ? dyn_send(&d, dest, moved_take(&d, mv), hk->moved_attempt_base,
                                                 hk->speculate && !from0)
                                      : dyn_send(&d, dest, queue_pop(&q), 0, hk && hk->speculate && eof);
                if (split_status(e, &comm, &rc)) goto done;
                if (e != SF_OK) {
                    /* Not sent: the request stays and gets ABORT. */
                    broken = true;
                    continue;
                }
            } else if (eof && quiet) {
                comm = send_control(dest, stop ? UNIT_STOP : UNIT_END);
                finals++;
            } else {
                if (flag) continue;
                break; /* nothing to give yet: produce below */
            }
            if (comm != SF_OK) goto done;
            memmove(waiting + i, waiting + i + 1, sizeof *waiting * (size_t)(nwaiting - i - 1));
            nwaiting--;
            quiet = q.n == 0 && d.moved.n == 0 && unacked(&d) == 0;
        }
        if (broken && ckpt_sent_n == 0) {
            while (q.n > 0) sf__dist_pool_put(&r->pl, queue_pop(&q));
            while (d.moved.n > 0) sf__dist_pool_put(&r->pl, moved_take(&d, 0));
            eof = true;
            ckpt_wanted = false;
        }
        if (ckpt_wanted && ckpt_sent_n == P - 1) {
            /* Every unit before the boundary is done and acknowledged. */
            sf_reader_pos p;
            sf_reader_tell(r->reader, &p);
            note_boundary(r, &p, r->st->rows_read);
            rc = root_checkpoint(r, rc);
            if (rc != SF_OK) goto fail_all; /* every rank left in the agreement */
            memset(ckpt_sent, 0, (size_t)P);
            ckpt_sent_n = 0;
            ckpt_wanted = false;
            continue;
        }
        if (finals == want_finals && eof) break;
        uint64_t held = q.bytes + r->snd.bytes;
        note_peak(r, held);
        if (!eof && !ckpt_wanted && ckpt_due(r) && r->round > 0) ckpt_wanted = true;
        int mine = broken ? -1 : moved_for(&d, 0);
        /* Read ahead while less than half the budget and less than two
         * rounds (about 2P units each) are queued: enough to keep every
         * worker busy, and rank 0's memory does not grow with the input. */
        if (!eof && !ckpt_wanted && ((held < r->cfg->memory_budget / 2 && q.n < (size_t)(4 * P)) || q.n == 0)) {
            rc = next_round(r, &eof);
            if (rc == SF_OK && !eof) {
                rc = enqueue_round(r, &q);
                r->round++;
            }
            if (rc == SF_OK && eof) {
                sf_reader_pos p;
                sf_reader_tell(r->reader, &p);
                note_boundary(r, &p, r->st->rows_read);
            }
        } else if (mine >= 0 && (nwaiting == 0 || eof)) {
            /* A piece another rank could not do: rank 0 tries it. */
            sf_buf unit = moved_take(&d, mine);
            sf_unit_set_meta(&unit, 0, false, hk->moved_attempt_base);
            uint32_t kind;
            rc = work_on(w, unit.data, unit.len, &kind);
            sf__dist_pool_put(&r->pl, unit);
        } else if (q.n > 0 && (nwaiting == 0 || eof || ckpt_wanted)) {
            /* Nobody is asking: rank 0 works on a unit itself, moving
             * pieces it cannot do to a worker. */
            sf_buf unit = queue_pop(&q);
            uint32_t kind;
            sf_buf mv;
            sf_buf_init(&mv);
            unit_opts o = {.allow_move = hk && hk->redistribute && P > 1, .ret = &mv, .held = NULL};
            rc = sf__dist_work_on_opts(w, unit.data, unit.len, &kind, NULL, NULL, &o);
            if (rc == SF_OK && mv.len > 0) {
                rc = moved_push(&d, mv.data, mv.len, 0);
                r->st->moved++;
            }
            sf_buf_fini(&mv);
            sf__dist_pool_put(&r->pl, unit);
        } else {
            /* Wait for the next message; meanwhile re-run a straggler's
             * speculative unit, and watch for workers that stopped
             * making progress. */
            double now = sf_comm_wtime();
            sent_unit *slow = NULL;
            int slow_rank = -1;
            if (hk && hk->speculate && eof && q.n == 0 && d.moved.n == 0 && !broken && !ckpt_wanted) {
                /* A straggler: its unit is out for twice as long as the
                 * fastest rank takes for one (rank 0 counts with its own
                 * processing time). */
                double fast = w->st->units_done > 0 ? w->st->t_process / (double)w->st->units_done : 0.0;
                for (int p = 1; p < P; p++)
                    if (d.acks[p] > 0 && (fast == 0.0 || d.unit_time[p] < fast)) fast = d.unit_time[p];
                double after = fast * 2.0 > 0.02 ? fast * 2.0 : 0.02;
                for (int p = 1; p < P; p++)
                    for (int k = 0; k < d.nsent[p]; k++) {
                        sent_unit *su = &d.sent[p][k];
                        if (su->spec && !su->tried && su->claim == 0 && now - su->at > after &&
                            (slow == NULL || su->at < slow->at)) {
                            slow = su;
                            slow_rank = p;
                        }
                    }
            }
            if (slow != NULL) {
                /* The copy's result is held; whichever claim rank 0 sees
                 * first counts: the worker's (already granted) or this. */
                slow->tried = true;
                uint32_t id = slow->id;
                r->st->speculated++;
                uint32_t kind;
                bool copy_held = false;
                sf_buf mv;
                sf_buf_init(&mv);
                unit_opts o = {.allow_move = hk->redistribute, .ret = &mv, .held = &copy_held};
                sf_buf copy = slow->copy; /* stays owned by the record */
                rc = sf__dist_work_on_opts(w, copy.data, copy.len, &kind, NULL, NULL, &o);
                if (rc == SF_OK) {
                    /* Claims that arrived meanwhile come first. */
                    for (;;) {
                        bool flag = false;
                        int src = -1;
                        comm = sf_comm_iprobe(SF_TAG_REQUEST, &flag, &src);
                        if (comm != SF_OK || !flag) break;
                        comm = sf_comm_recv(src, SF_TAG_REQUEST, &req, NULL);
                        if (comm != SF_OK) break;
                        bool is_req = false;
                        if (split_status(dyn_take(&d, src, &req, &failed, &stop, &is_req), &comm, &rc)) break;
                        if (is_req) waiting[nwaiting++] = src;
                    }
                    if (comm != SF_OK) goto done;
                    sent_unit *su = find_sent(&d, slow_rank, id);
                    bool win = copy_held && su != NULL && su->claim == 0;
                    if (win) {
                        su->claim = 2;
                        r->st->speculation_won++;
                    }
                    if (copy_held) rc = end_hold(w, win, &mv);
                    /* The copy's pieces to move, as the worker's would have been. */
                    if (rc == SF_OK && win && mv.len > 0) {
                        rc = moved_push(&d, mv.data, mv.len, 0);
                        r->st->moved++;
                    }
                }
                sf_buf_fini(&mv);
                continue;
            }
            if (hk && hk->watchdog > 0) {
                for (int p = 1; p < P; p++)
                    if (d.nsent[p] > 0 && now - d.heard[p] > hk->watchdog) {
                        fprintf(stderr,
                                "shardflow: error: rank %d made no progress for %.0f s (fault.watchdog %g s) with "
                                "%d units in hand; ending the job (run again with --restart to resume from the "
                                "last checkpoint)\n",
                                p, now - d.heard[p], hk->watchdog, d.nsent[p]);
                        sf_comm_abort(SF_EXIT_WATCHDOG);
                    }
            }
            bool flag = false;
            int src = -1;
            comm = sf_comm_iprobe(SF_TAG_REQUEST, &flag, &src);
            if (comm != SF_OK) goto done;
            if (!flag) {
                sleep_for(100e-6);
                continue;
            }
            comm = sf_comm_recv(src, SF_TAG_REQUEST, &req, NULL);
            if (comm != SF_OK) goto done;
            bool is_req = false;
            if (split_status(dyn_take(&d, src, &req, &failed, &stop, &is_req), &comm, &rc)) goto done;
            if (is_req) waiting[nwaiting++] = src;
        }
    }
done:
    while (q.n > 0) sf__dist_pool_put(&r->pl, queue_pop(&q));
    {
        sf_status e = sender_drain(r);
        if (comm == SF_OK) comm = e;
    }
fail_all:
    while (q.n > 0) sf__dist_pool_put(&r->pl, queue_pop(&q));
    while (d.moved.n > 0) sf__dist_pool_put(&r->pl, moved_take(&d, 0));
    if (rc != SF_OK && comm == SF_OK) sender_drain(r);
    free(q.items);
    free(d.moved.items);
    free(d.moved_from);
    for (int p = 0; d.sent && p < P; p++)
        for (int i = 0; i < MAX_SENT; i++) sf_buf_fini(&d.sent[p][i].copy);
    free(d.sent);
    free(d.nsent);
    free(d.heard);
    free(d.unit_time);
    free(d.acks);
    free(ckpt_sent);
    sf_buf_fini(&req);
    if (comm == SF_OK && rc == SF_OK && stop && !failed) return SF_ERR_INTERRUPTED;
    return comm != SF_OK ? comm : rc;
}

/* An MPI failure mid-protocol leaves peers waiting for messages that will
 * never come; no agreement can be reached, so the job ends here (the one
 * place where shardflow aborts). */
static sf_status comm_broken(sf_status rc)
{
    if (rc == SF_ERR_MPI) {
        fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
        sf_comm_abort(1);
    }
    return rc;
}

sf_status sf_dist_run_pass(sf_reader *reader, const sf_shard_plan *plan,
                           const sf_distribute_config *cfg, const int *pass_cols, int npass,
                           const sf_schema *pass_schema, sf_exec *x, sf_dist_stats *stats)
{
    return sf_dist_run_pass_ex(reader, plan, cfg, pass_cols, npass, pass_schema, x, stats, NULL);
}

/* Rank 0's message of the stable dictionaries in w->stable (npass
 * entries): {count u32} then per dictionary {pass column u32, n u32, bytes
 * u64, n + 1 offsets u32, the bytes}. */
static sf_status encode_stable_dicts(const worker *w, int npass, sf_buf *b)
{
    uint32_t count = 0;
    for (int k = 0; w->stable && k < npass; k++) count += w->stable[k] != NULL;
    SF_CALL(sf_buf_put_u32(b, count));
    for (int k = 0; count > 0 && k < npass; k++) {
        const sf_dict *d = w->stable[k];
        if (d == NULL) continue;
        uint64_t blen = d->off[d->n];
        SF_CALL(sf_buf_put_u32(b, (uint32_t)k));
        SF_CALL(sf_buf_put_u32(b, d->n));
        SF_CALL(sf_buf_put_u64(b, blen));
        SF_CALL(sf_buf_append(b, d->off, ((size_t)d->n + 1) * sizeof *d->off));
        if (blen) SF_CALL(sf_buf_append(b, d->bytes, (size_t)blen));
    }
    return SF_OK;
}

/* A worker's copies of the dictionaries in rank 0's message, every length
 * and offset checked: a broken message is an error, never a bad
 * dictionary. What is allocated is freed by sf__dist_worker_fini. */
static sf_status decode_stable_dicts(const sf_buf *b, int npass, worker *w)
{
    sf_rd r;
    sf_rd_init(&r, b->data, b->len);
    uint32_t count;
    SF_CALL(sf_rd_u32(&r, &count));
    if (count == 0) return SF_OK;
    w->stable = calloc((size_t)npass, sizeof *w->stable);
    w->owned = calloc((size_t)npass, sizeof *w->owned);
    SF_CHECK(w->stable != NULL && w->owned != NULL, SF_ERR_NOMEM, "out of memory (distribution)");
    w->nowned = npass;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t k, n;
        uint64_t blen;
        const uint8_t *off, *bytes;
        SF_CALL(sf_rd_u32(&r, &k));
        SF_CALL(sf_rd_u32(&r, &n));
        SF_CALL(sf_rd_u64(&r, &blen));
        SF_CHECK(k < (uint32_t)npass && w->stable[k] == NULL && blen <= b->len, SF_ERR_INTERNAL,
                 "stable dictionaries: malformed message (column %u of %d)", k, npass);
        SF_CALL(sf_rd_bytes(&r, ((size_t)n + 1) * 4, &off));
        SF_CALL(sf_rd_bytes(&r, (size_t)blen, &bytes));
        sf_dict *d = &w->owned[k];
        d->off = malloc(((size_t)n + 1) * sizeof *d->off);
        d->bytes = malloc(blen ? (size_t)blen : 1);
        SF_CHECK(d->off != NULL && d->bytes != NULL, SF_ERR_NOMEM,
                 "out of memory (stable dictionary of %u strings)", n);
        memcpy(d->off, off, ((size_t)n + 1) * sizeof *d->off);
        if (blen) memcpy(d->bytes, bytes, (size_t)blen);
        bool ok = d->off[0] == 0 && d->off[n] == blen;
        for (uint32_t j = 0; ok && j < n; j++) ok = d->off[j] <= d->off[j + 1];
        SF_CHECK(ok, SF_ERR_INTERNAL, "stable dictionaries: bad offsets (column %u)", k);
        d->n = n;
        d->off_cap = n;
        d->bytes_len = d->bytes_cap = (size_t)blen;
        d->stable_id = sf_dict_stable_id();
        w->stable[k] = d;
    }
    SF_CHECK(r.off == r.n, SF_ERR_INTERNAL, "stable dictionaries: %zu trailing bytes", r.n - r.off);
    return SF_OK;
}

/* The pass columns' stable dictionaries (sf_reader_stable_dict) in
 * w->stable: on rank 0 its reader's; rank 0 broadcasts them and the other
 * ranks keep copies, so that pieces carry only the codes of such a column
 * (a round of client addresses packed per shard costs a dictionary per
 * piece otherwise). w->stable stays NULL where no column has one. Every
 * rank returns the same status. Collective. */
static sf_status share_stable_dicts(sf_reader *reader, const int *pass_cols, int npass, worker *w)
{
    const int rank = sf_comm_rank(), P = sf_comm_size();
    sf_status rc = SF_OK;
    if (rank == 0) {
        for (int k = 0; rc == SF_OK && k < npass; k++) {
            const sf_dict *d = sf_reader_stable_dict(reader, pass_cols[k]);
            if (d == NULL) continue;
            if (w->stable == NULL) w->stable = calloc((size_t)npass, sizeof *w->stable);
            if (w->stable == NULL) rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (distribution)");
            else w->stable[k] = d;
        }
    }
    if (P == 1) return rc;
    sf_buf b;
    sf_buf_init(&b);
    if (rank == 0 && rc == SF_OK) rc = encode_stable_dicts(w, npass, &b);
    rc = sf_comm_agree(rc);
    if (rc == SF_OK) rc = sf_comm_agree(sf_comm_bcast(&b, 0));
    if (rc == SF_OK) rc = sf_comm_agree(rank == 0 ? SF_OK : decode_stable_dicts(&b, npass, w));
    sf_buf_fini(&b);
    return rc;
}

sf_status sf_dist_run_pass_ex(sf_reader *reader, const sf_shard_plan *plan, const sf_distribute_config *cfg,
                              const int *pass_cols, int npass, const sf_schema *pass_schema, sf_exec *x,
                              sf_dist_stats *stats, const sf_dist_hooks *hooks)
{
    if (cfg->mode == SF_DIST_PARALLEL_READ)
        return sf__dist_parallel_read(reader, plan, cfg, pass_cols, npass, pass_schema, x, stats, hooks);
    worker w = {.schema = pass_schema, .x = x, .st = stats, .hk = hooks};
    int rank = sf_comm_rank();
    sf_status shared = share_stable_dicts(reader, pass_cols, npass, &w);
    if (shared != SF_OK) {
        sf__dist_worker_fini(&w);
        return comm_broken(shared);
    }
    if (rank != 0) {
        sf_status rc = cfg->mode == SF_DIST_DYNAMIC ? worker_dynamic(&w) : worker_static(&w);
        sf__dist_worker_fini(&w);
        return comm_broken(rc);
    }
    root r = {.reader = reader, .plan = plan, .cfg = cfg, .cols = pass_cols, .ncols = npass,
              .P = sf_comm_size(), .w = w, .st = stats, .count_stats = 1, .hk = hooks,
              .round = hooks ? (uint32_t)hooks->first_round : 0, .last_ckpt = sf_comm_wtime()};
    r.pl.off = !cfg->pools;
    r.rt.k = sf_shard_plan_count(plan);
    r.rt.start = calloc((size_t)r.rt.k + 1, sizeof(size_t));
    r.waiting = calloc((size_t)(PREFETCH * r.P + 1), sizeof(int));
    sf_status rc = SF_OK;
    if (r.rt.start == NULL || r.waiting == NULL)
        rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (distribution)");
    if (rc == SF_OK) rc = sf_reader_batch_init(reader, &r.batch);
    if (rc == SF_OK) {
        /* On one rank a work queue has nobody to serve: both modes read ahead. */
        rc = cfg->mode == SF_DIST_DYNAMIC && r.P > 1 ? root_dynamic(&r) : root_static(&r);
        sf_batch_fini(&r.batch);
    } else if (cfg->mode == SF_DIST_STATIC) {
        /* Workers wait for their first unit: release them, take their status. */
        sf_buf tmp;
        sf_buf_init(&tmp);
        bool ignored = false, ignored_stop = false;
        for (int d = 1; d < r.P; d++) send_control(d, UNIT_ABORT);
        for (int d = 1; d < r.P; d++) take_status(&tmp, d, &ignored, &ignored_stop);
        sf_buf_fini(&tmp);
    } else {
        /* Answer each worker's PREFETCH requests with ABORT. */
        sf_buf req;
        sf_buf_init(&req);
        for (int i = 0; i < PREFETCH * (r.P - 1); i++) {
            int src;
            if (sf_comm_recv(-1, SF_TAG_REQUEST, &req, &src) == SF_OK) send_control(src, UNIT_ABORT);
        }
        sf_buf_fini(&req);
    }
    free(r.waiting);
    sf__dist_worker_fini(&r.w);
    sf__dist_pool_fini(&r.pl);
    free(r.rt.start);
    free(r.rt.shard);
    free(r.rt.order);
    return comm_broken(rc);
}
