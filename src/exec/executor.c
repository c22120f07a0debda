#define _GNU_SOURCE
#include "shardflow/exec.h"

#include <inttypes.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shardflow/fault.h"

#include "agents/txn.h"

struct sf_exec {
    int nagents;
    int nthreads;
    size_t morsel_rows;
    sf_exec_agent *agents;
    void **states;          /* nthreads * nagents, thread-major */
    bool merged;
    void **scratch;         /* two states per agent for merging encodings */
    uint64_t rows;
    int ngroups;
    sf_exec_schedule schedule;
    uint32_t **sel;         /* per thread: selection of a where: filter, morsel_rows entries */
    uint64_t *agent_rows;   /* nthreads * nagents rows given to each agent */
    double *agent_secs;     /* nthreads * nagents seconds in each agent's filter and process() */
    /* Morsel list reused across calls. */
    size_t nmorsels, morsel_cap;
    struct morsel { int batch; size_t begin, end; } *morsels;
    /* Fault tolerance (sf_exec_set_faults): units go into txn states and
     * are merged into states on success. */
    bool ft, in_txn;
    sf_exec_faults faults;
    void **txn;             /* nthreads * nagents */
    uint64_t *txn_rows;     /* nthreads * nagents */
    uint64_t txn_xrows;
    /* Hold mode (speculative units): committed pieces go to held states,
     * merged into states or dropped once the arbiter decides. */
    bool hold;
    int attempt_base;
    void **held;            /* nthreads * nagents, allocated on first use */
    uint64_t *held_rows;
    uint64_t held_xrows;
    /* The unit being processed. */
    const uint32_t *cur_shards;
    uint64_t cur_round;
    const int *cur_attempt;  /* per batch */
    uint8_t *cur_failed;     /* per batch: a morsel of it failed */
    uint64_t *cur_bad;       /* per batch: rows left out as corrupt */
    char last_fault[1024];
    sf_status side_rc;       /* the last side work's status */
    char side_msg[2048];
    /* Per agent: its in-place transaction functions (agents/txn.h) or
     * NULL; in_place: the open transaction uses them (not in hold mode),
     * so those agents process into their states. */
    const sf__agent_txn **inplace;
    bool in_place;
    /* Per agent: the encoding of a fresh state. Decoding it empties a
     * transaction state while keeping its allocations and caches (a
     * detector's baseline lookups), which destroy + init would lose. */
    sf_buf *empty;
};

static void *state_at(sf_exec *x, int t, int a) { return x->states[(size_t)t * (size_t)x->nagents + (size_t)a]; }
static bool in_place(const sf_exec *x, int a) { return x->in_place && x->inplace[a] != NULL; }
static void *work_state(sf_exec *x, int t, int a)
{
    void **s = x->in_txn && !in_place(x, a) ? x->txn : x->states;
    return s[(size_t)t * (size_t)x->nagents + (size_t)a];
}

void sf_exec_destroy(sf_exec **px)
{
    if (px == NULL || *px == NULL) return;
    sf_exec *x = *px;
    if (x->states) {
        for (int t = 0; t < x->nthreads; t++)
            for (int a = 0; a < x->nagents; a++) {
                void *s = state_at(x, t, a);
                if (s) {
                    x->agents[a].ops->destroy(s);
                    free(s);
                }
            }
    }
    if (x->scratch) {
        for (int i = 0; i < 2 * x->nagents; i++) {
            if (x->scratch[i]) {
                x->agents[i / 2].ops->destroy(x->scratch[i]);
                free(x->scratch[i]);
            }
        }
    }
    if (x->txn) {
        for (size_t i = 0; i < (size_t)x->nthreads * (size_t)x->nagents; i++)
            if (x->txn[i]) {
                x->agents[i % (size_t)x->nagents].ops->destroy(x->txn[i]);
                free(x->txn[i]);
            }
    }
    free(x->txn);
    free(x->txn_rows);
    free(x->inplace);
    for (int a = 0; x->empty && a < x->nagents; a++) sf_buf_fini(&x->empty[a]);
    free(x->empty);
    if (x->held) {
        for (size_t i = 0; i < (size_t)x->nthreads * (size_t)x->nagents; i++)
            if (x->held[i]) {
                x->agents[i % (size_t)x->nagents].ops->destroy(x->held[i]);
                free(x->held[i]);
            }
    }
    free(x->held);
    free(x->held_rows);
    if (x->sel)
        for (int t = 0; t < x->nthreads; t++) free(x->sel[t]);
    free(x->sel);
    free(x->agent_rows);
    free(x->agent_secs);
    free(x->scratch);
    free(x->states);
    free(x->agents);
    free(x->morsels);
    free(x);
    *px = NULL;
}

static sf_status new_state(const sf_exec_agent *a, void **out)
{
    *out = NULL;
    void *s = calloc(1, a->ops->state_size ? a->ops->state_size : 1);
    SF_CHECK(s != NULL, SF_ERR_NOMEM, "out of memory (agent state)");
    sf_status rc = a->ops->init(s, a->cfg);
    if (rc != SF_OK) {
        free(s);
        return rc;
    }
    *out = s;
    return SF_OK;
}

sf_status sf_exec_create(const sf_exec_agent *agents, int n, int nthreads, size_t morsel_rows,
                         sf_exec **out)
{
    *out = NULL;
    sf_status rc = SF_OK;
    sf_exec *x = calloc(1, sizeof *x);
    SF_CHECK(x != NULL, SF_ERR_NOMEM, "out of memory (executor)");
    x->nagents = n;
    x->nthreads = nthreads > 0 ? nthreads : 1;
    x->morsel_rows = morsel_rows ? morsel_rows : 16384;
    x->agents = calloc((size_t)(n ? n : 1), sizeof *x->agents);
    x->states = calloc((size_t)x->nthreads * (size_t)(n ? n : 1), sizeof(void *));
    x->scratch = calloc((size_t)(2 * n + 1), sizeof(void *));
    SF_CHECK_GOTO(x->agents && x->states && x->scratch, SF_ERR_NOMEM, fail, "out of memory (executor)");
    memcpy(x->agents, agents, sizeof *agents * (size_t)n);
    x->ngroups = 1;
    for (int a = 0; a < n; a++) {
        SF_CHECK_GOTO(agents[a].group >= 0 && (a == 0 || agents[a].group >= agents[a - 1].group), SF_ERR_INTERNAL,
                      fail, "executor: agents of a group must be adjacent");
        if (agents[a].group + 1 > x->ngroups) x->ngroups = agents[a].group + 1;
    }
    x->sel = calloc((size_t)x->nthreads, sizeof *x->sel);
    x->agent_rows = calloc((size_t)x->nthreads * (size_t)(n ? n : 1), sizeof *x->agent_rows);
    x->agent_secs = calloc((size_t)x->nthreads * (size_t)(n ? n : 1), sizeof *x->agent_secs);
    SF_CHECK_GOTO(x->sel && x->agent_rows && x->agent_secs, SF_ERR_NOMEM, fail, "out of memory (executor)");
    for (int t = 0; t < x->nthreads; t++) {
        x->sel[t] = malloc(x->morsel_rows * sizeof(uint32_t));
        SF_CHECK_GOTO(x->sel[t] != NULL, SF_ERR_NOMEM, fail, "out of memory (executor selection)");
    }
    for (int t = 0; t < x->nthreads; t++)
        for (int a = 0; a < n; a++)
            SF_CALL_GOTO(new_state(&x->agents[a], &x->states[(size_t)t * (size_t)n + (size_t)a]), fail);
    for (int i = 0; i < 2 * n; i++) SF_CALL_GOTO(new_state(&x->agents[i / 2], &x->scratch[i]), fail);
    *out = x;
    return SF_OK;
fail:
    sf_exec_destroy(&x);
    return rc;
}

int sf_exec_threads(const sf_exec *x) { return x->nthreads; }

void sf_exec_set_schedule(sf_exec *x, sf_exec_schedule sch) { x->schedule = sch; }

sf_status sf_exec_process(sf_exec *x, const sf_batch *const *batches, int nb)
{
    return sf_exec_process_overlap(x, batches, nb, NULL, NULL);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s)
{
    if (s <= 0) return;
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    nanosleep(&ts, NULL);
}

/* The injected fault of one morsel, if any: an error return, a hang until
 * the task timeout, or rows left out as corrupt (*skip). */
static sf_status inject(sf_exec *x, int g, int bi, size_t begin, size_t *skip, double t0)
{
    *skip = 0;
    uint32_t shard = x->cur_shards[bi];
    uint64_t morsel = begin / x->morsel_rows;
    int attempt = x->cur_attempt[bi];
    const sf_fault_spec *spec = NULL;
    sf_fault_kind k = sf_fault_morsel(x->faults.level, shard, x->cur_round, morsel, attempt, &spec);
    /* Groups running as separate tasks see the same morsel: one of them
     * (group 0) carries an error or a hang; all skip corrupt rows. */
    if (g > 0 && k != SF_FAULT_CORRUPT) return SF_OK;
    switch (k) {
    case SF_FAULT_ERROR:
        return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__,
                            "injected agent error in pass %d, shard %" PRIu32 ", round %" PRIu64 ", morsel %" PRIu64
                            ", attempt %d",
                            x->faults.level, shard, x->cur_round, morsel, attempt);
    case SF_FAULT_OOM:
        return sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__,
                            "agent state over distribute.memory_budget (injected) in pass %d, shard %" PRIu32
                            ", round %" PRIu64 ", attempt %d",
                            x->faults.level, shard, x->cur_round, attempt);
    case SF_FAULT_HANG: {
        /* A hang that only a timeout ends (or that ends by itself after
         * seconds=). Sleeps in small steps so the timeout is honoured. */
        double until = spec->seconds > 0 ? t0 + spec->seconds : 1e300;
        double deadline = x->faults.task_timeout > 0 ? t0 + x->faults.task_timeout : 1e300;
        for (;;) {
            double now = now_s();
            if (now >= deadline)
                return sf_error_set(SF_ERR_TIMEOUT, __FILE__, __LINE__,
                                    "shard %" PRIu32 " (pass %d, round %" PRIu64 ", attempt %d) ran past "
                                    "fault.task_timeout (%gs): injected hang",
                                    shard, x->faults.level, x->cur_round, attempt, x->faults.task_timeout);
            if (now >= until) return SF_OK;
            double step = (deadline < until ? deadline : until) - now;
            sleep_s(step < 0.01 ? step : 0.01);
        }
    }
    case SF_FAULT_CORRUPT:
        *skip = (size_t)spec->rows;
        return SF_OK;
    default:
        return SF_OK;
    }
}

/* Runs the agents of group g (all agents when g < 0) of thread t over one
 * morsel of batch bi. A where: filter is evaluated once per morsel and
 * reused by the following agents with the same filter. */
static sf_status run_morsel(sf_exec *x, int t, int g, int bi, const sf_batch *b, size_t begin, size_t end)
{
    double t0 = 0;
    if (x->in_txn) {
        t0 = now_s();
        size_t skip = 0;
        sf_status rc = inject(x, g, bi, begin, &skip, t0);
        if (rc != SF_OK) {
#pragma omp atomic write
            x->cur_failed[bi] = 1;
            return rc;
        }
        if (skip > 0) {
            /* Corrupt rows are left out and counted, once per morsel (by
             * the group-0 task when groups run as separate tasks). */
            if (skip > end - begin) skip = end - begin;
            if (g <= 0) {
#pragma omp atomic
                x->cur_bad[bi] += skip;
            }
            begin += skip;
            if (begin == end) return SF_OK;
        }
    }
    const sf_filter *last = NULL;
    const uint32_t shard = x->cur_shards != NULL ? x->cur_shards[bi] : SF_ROWS_NO_SHARD;
    sf_rows all = {begin, end - begin, NULL, shard}, picked = {begin, 0, NULL, shard};
    uint64_t *rows_of = x->in_txn ? x->txn_rows : x->agent_rows;
    for (int a = 0; a < x->nagents; a++) {
        const sf_exec_agent *ag = &x->agents[a];
        if (g >= 0 && ag->group != g) continue;
        const sf_rows *rows = &all;
        const double ta = now_s();
        if (ag->where != NULL) {
            if (ag->where != last) {
                size_t n = 0;
                SF_CALL(sf_filter_eval(ag->where, b, begin, end, x->sel[t], &n));
                picked.n = n;
                picked.sel = x->sel[t];
                last = ag->where;
            }
            rows = &picked;
        }
        rows_of[(size_t)t * (size_t)x->nagents + (size_t)a] += rows->n;
        sf_status rc = rows->n == 0 ? SF_OK : ag->ops->process(work_state(x, t, a), b, rows);
        x->agent_secs[(size_t)t * (size_t)x->nagents + (size_t)a] += now_s() - ta;
        if (rc != SF_OK) {
            if (x->in_txn) {
#pragma omp atomic write
                x->cur_failed[bi] = 1;
            }
            return rc;
        }
    }
    if (x->in_txn && x->faults.task_timeout > 0 && now_s() - t0 > x->faults.task_timeout) {
#pragma omp atomic write
        x->cur_failed[bi] = 1;
        return sf_error_set(SF_ERR_TIMEOUT, __FILE__, __LINE__,
                            "shard %" PRIu32 " (pass %d, round %" PRIu64 "): a morsel ran %.3gs, past "
                            "fault.task_timeout (%gs)",
                            x->cur_shards[bi], x->faults.level, x->cur_round, now_s() - t0, x->faults.task_timeout);
    }
    return SF_OK;
}

sf_status sf_exec_process_overlap(sf_exec *x, const sf_batch *const *batches, int nb,
                                  sf_status (*side)(void *ctx), void *side_ctx)
{
    x->nmorsels = 0;
    for (int i = 0; i < nb; i++) {
        for (size_t b = 0; b < batches[i]->nrows; b += x->morsel_rows) {
            if (x->nmorsels == x->morsel_cap) {
                size_t cap = x->morsel_cap ? x->morsel_cap * 2 : 64;
                struct morsel *m = realloc(x->morsels, sizeof *m * cap);
                SF_CHECK(m != NULL, SF_ERR_NOMEM, "out of memory (morsels)");
                x->morsels = m;
                x->morsel_cap = cap;
            }
            size_t e = b + x->morsel_rows < batches[i]->nrows ? b + x->morsel_rows : batches[i]->nrows;
            x->morsels[x->nmorsels++] = (struct morsel){i, b, e};
        }
        if (x->in_txn) x->txn_xrows += batches[i]->nrows;
        else x->rows += batches[i]->nrows;
    }
    if (x->nmorsels == 0 && side == NULL) return SF_OK;
    x->merged = false;

    /* Sticky first error (SQLite's p->rc): no thread leaves the region early. */
    sf_status first = SF_OK, side_rc = SF_OK;
    char msg[2048] = "", side_msg[2048] = "";
    /* Tasks: one per morsel, or one per (morsel, group) when the groups run
     * concurrently; the sequential schedule runs a task loop per group. */
    int ng = x->ngroups;
    bool concurrent = x->schedule == SF_EXEC_CONCURRENT && ng > 1;
    long ntasks = (long)x->nmorsels * (concurrent ? ng : 1);
    int rounds = x->schedule == SF_EXEC_SEQUENTIAL && ng > 1 ? ng : 1;
    int nthreads = x->nthreads;
    if (side == NULL && (long)nthreads > ntasks) nthreads = (int)ntasks;
    if (nthreads < 1) nthreads = 1;
#pragma omp parallel num_threads(nthreads)
    {
        int t = omp_get_thread_num();
        sf_status mine = SF_OK;
        /* The master thread does the side work (reading the next round)
         * first, then joins the others; tasks go to whoever is free. Which
         * thread takes which task does not change any result: every agent
         * merges exactly order-independently. */
        if (side != NULL && t == 0) {
            side_rc = side(side_ctx);
            if (side_rc != SF_OK) strncpy(side_msg, sf_error_message(), sizeof side_msg - 1);
        }
        for (int round = 0; round < rounds; round++) {
#pragma omp for schedule(dynamic, 1)
            for (long k = 0; k < ntasks; k++) {
                if (mine != SF_OK) continue;
                long m = concurrent ? k / ng : k;
                int g = concurrent ? (int)(k % ng) : rounds > 1 ? round : -1;
                const struct morsel *mo = &x->morsels[m];
                mine = run_morsel(x, t, g, mo->batch, batches[mo->batch], mo->begin, mo->end);
            }
        }
        if (mine != SF_OK) {
#pragma omp critical(sf_exec_error)
            {
                if (first == SF_OK) {
                    first = mine;
                    strncpy(msg, sf_error_message(), sizeof msg - 1);
                }
            }
        }
    }
    /* The side work's own status, for sf_exec_process_unit: an agent's
     * failure (retried) must not hide it. */
    x->side_rc = side_rc;
    if (side_rc != SF_OK) snprintf(x->side_msg, sizeof x->side_msg, "%s", side_msg);
    if (first != SF_OK) {
        sf_error_set_message(msg);
        return first;
    }
    if (side_rc != SF_OK) sf_error_set_message(side_msg);
    return side_rc;
}

/* Merges every other thread's state of agent a into thread 0's. */
static sf_status merge_agent_threads(sf_exec *x, int a)
{
    for (int t = 1; t < x->nthreads; t++) {
        void *from = state_at(x, t, a);
        SF_CALL(x->agents[a].ops->merge(state_at(x, 0, a), from));
        /* Reset the thread state so that later merges do not count it twice. */
        x->agents[a].ops->destroy(from);
        memset(from, 0, x->agents[a].ops->state_size);
        SF_CALL(x->agents[a].ops->init(from, x->agents[a].cfg));
    }
    return SF_OK;
}

/* Part k = a * nthreads + t of an encoding (sf_exec_encode): an agent that
 * merges encodings directly (agents/txn.h) encodes each thread's state (its
 * thread states stay as they are); any other agent merges its thread
 * states into thread 0's (once: x->merged) and encodes that, as part t = 0. */
static sf_status encode_part(sf_exec *x, long k, sf_buf *part)
{
    const int a = (int)(k / x->nthreads), t = (int)(k % x->nthreads);
    const bool direct = sf__agent_merge_encoded_of(x->agents[a].ops) != NULL && x->nthreads > 1;
    if (!direct && t > 0) return SF_OK;
    if (!direct && !x->merged) SF_CALL(merge_agent_threads(x, a));
    return x->agents[a].ops->encode(state_at(x, t, a), part);
}

/* Encoding: for each agent, u64 length then the agent's bytes. The agents'
 * merges of thread states and their encodes are independent: with several
 * threads they run in parallel; the direct merges of encodings follow. */
sf_status sf_exec_encode(sf_exec *x, sf_buf *out)
{
    const long nparts = (long)x->nagents * (long)x->nthreads;
    sf_buf *parts = calloc((size_t)(nparts ? nparts : 1), sizeof *parts);
    SF_CHECK(parts != NULL, SF_ERR_NOMEM, "out of memory (encoding)");
    for (long k = 0; k < nparts; k++) sf_buf_init(&parts[k]);
    sf_status first = SF_OK;
    char msg[2048] = "";
#pragma omp parallel for schedule(dynamic, 1) num_threads(x->nthreads) if (x->nthreads > 1 && nparts > 1)
    for (long k = 0; k < nparts; k++) {
        sf_status rc = encode_part(x, k, &parts[k]);
        if (rc != SF_OK) {
#pragma omp critical(sf_exec_encode_error)
            {
                if (first == SF_OK) {
                    first = rc;
                    strncpy(msg, sf_error_message(), sizeof msg - 1);
                }
            }
        }
    }
    sf_status rc = first;
    if (rc != SF_OK) sf_error_set_message(msg);
    else x->merged = true;
    sf_buf acc, next;
    sf_buf_init(&acc);
    sf_buf_init(&next);
    for (int a = 0; rc == SF_OK && a < x->nagents; a++) {
        size_t at = out->len;
        rc = sf_buf_put_u64(out, 0);
        sf__merge_encoded_fn direct = sf__agent_merge_encoded_of(x->agents[a].ops);
        sf_buf *p0 = &parts[(long)a * x->nthreads];
        if (rc == SF_OK && (direct == NULL || x->nthreads == 1)) {
            rc = sf_buf_append(out, p0->data, p0->len);
        } else if (rc == SF_OK) {
            /* Thread 0's encoding (taken over), then each other thread's
             * merged in. */
            sf_buf_fini(&acc);
            acc = *p0;
            sf_buf_init(p0);
            for (int t = 1; rc == SF_OK && t < x->nthreads; t++) {
                const sf_buf *pt = &parts[(long)a * x->nthreads + t];
                sf_buf_clear(&next);
                rc = direct(x->scratch[2 * a], acc.data, acc.len, pt->data, pt->len, &next);
                if (rc == SF_OK) {
                    sf_buf tmp = acc;
                    acc = next;
                    next = tmp;
                }
            }
            if (rc == SF_OK) rc = sf_buf_append(out, acc.data, acc.len);
        }
        if (rc == SF_OK) sf_store_u64(out->data + at, (uint64_t)(out->len - at - 8));
    }
    sf_buf_fini(&acc);
    sf_buf_fini(&next);
    for (long k = 0; k < nparts; k++) sf_buf_fini(&parts[k]);
    free(parts);
    return rc;
}

/* The scratch states are reused from one merge to the next: this relies on
 * decode replacing every trace of earlier contents (agent.h; tested for
 * every built-in agent by test_agent_decode). */
/* One agent's bytes of an executor encoding (u64 length, then bytes). */
static sf_status agent_bytes(sf_rd *rd, const uint8_t **p, size_t *n)
{
    uint64_t len;
    SF_CALL(sf_rd_u64(rd, &len));
    SF_CALL(sf_rd_bytes(rd, (size_t)len, p));
    *n = (size_t)len;
    return SF_OK;
}

static sf_status decode_into(sf_exec *x, int a, void *state, sf_rd *rd)
{
    const uint8_t *p;
    size_t n;
    SF_CALL(agent_bytes(rd, &p, &n));
    return x->agents[a].ops->decode(state, p, n);
}

sf_status sf_exec_merge_encoded(sf_exec *x, sf_buf *into, const uint8_t *from, size_t n)
{
    sf_rd ra, rb;
    sf_rd_init(&ra, into->data, into->len);
    sf_rd_init(&rb, from, n);
    sf_buf out;
    sf_buf_init(&out);
    sf_status rc = SF_OK;
    for (int a = 0; a < x->nagents; a++) {
        void *sa = x->scratch[2 * a], *sb = x->scratch[2 * a + 1];
        sf__merge_encoded_fn direct = sf__agent_merge_encoded_of(x->agents[a].ops);
        size_t at = out.len;
        if (direct != NULL) {
            /* The two encodings merged as they are (agents/txn.h). */
            const uint8_t *pa, *pb;
            size_t la, lb;
            SF_CALL_GOTO(agent_bytes(&ra, &pa, &la), done);
            SF_CALL_GOTO(agent_bytes(&rb, &pb, &lb), done);
            SF_CALL_GOTO(sf_buf_put_u64(&out, 0), done);
            SF_CALL_GOTO(direct(sa, pa, la, pb, lb, &out), done);
        } else {
            SF_CALL_GOTO(decode_into(x, a, sa, &ra), done);
            SF_CALL_GOTO(decode_into(x, a, sb, &rb), done);
            SF_CALL_GOTO(x->agents[a].ops->merge(sa, sb), done);
            SF_CALL_GOTO(sf_buf_put_u64(&out, 0), done);
            SF_CALL_GOTO(x->agents[a].ops->encode(sa, &out), done);
        }
        sf_store_u64(out.data + at, (uint64_t)(out.len - at - 8));
    }
    SF_CHECK_GOTO(ra.off == ra.n && rb.off == rb.n, SF_ERR_INTERNAL, done,
                  "encoded executor states have trailing bytes");
    sf_buf_fini(into);
    *into = out;
    return SF_OK;
done:
    sf_buf_fini(&out);
    return rc;
}

sf_status sf_exec_report(sf_exec *x, const uint8_t *bytes, size_t n, int a0, int a1, sf_json *j)
{
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    for (int a = 0; a < x->nagents && a < a1; a++) {
        void *s = x->scratch[2 * a];
        SF_CALL(decode_into(x, a, s, &rd));
        if (a < a0) continue;
        sf_json_key(j, x->agents[a].cfg->id);
        SF_CALL(x->agents[a].ops->report(s, j));
    }
    return j->rc;
}

sf_status sf_exec_set_faults(sf_exec *x, const sf_exec_faults *f)
{
    x->faults = *f;
    if (x->faults.max_attempts < 1) x->faults.max_attempts = 1;
    if (x->txn == NULL) {
        size_t n = (size_t)x->nthreads * (size_t)x->nagents;
        x->txn = calloc(n ? n : 1, sizeof *x->txn);
        x->txn_rows = calloc(n ? n : 1, sizeof *x->txn_rows);
        SF_CHECK(x->txn && x->txn_rows, SF_ERR_NOMEM, "out of memory (executor transactions)");
        for (size_t i = 0; i < n; i++)
            SF_CALL(new_state(&x->agents[i % (size_t)x->nagents], &x->txn[i]));
        x->empty = calloc((size_t)(x->nagents ? x->nagents : 1), sizeof *x->empty);
        x->inplace = calloc((size_t)(x->nagents ? x->nagents : 1), sizeof *x->inplace);
        SF_CHECK(x->empty != NULL && x->inplace != NULL, SF_ERR_NOMEM, "out of memory (executor transactions)");
        for (int a = 0; a < x->nagents; a++) x->inplace[a] = sf__agent_txn_of(x->agents[a].ops);
        for (int a = 0; a < x->nagents; a++) {
            sf_buf_init(&x->empty[a]);
            /* txn[a] (thread 0's) is still fresh here. */
            SF_CALL(x->agents[a].ops->encode(x->txn[a], &x->empty[a]));
        }
    }
    x->ft = true;
    return SF_OK;
}

static sf_status reset_state(const sf_exec_agent *ag, void *s)
{
    ag->ops->destroy(s);
    memset(s, 0, ag->ops->state_size ? ag->ops->state_size : 1);
    return ag->ops->init(s, ag->cfg);
}

/* Empties transaction state i (decode of a fresh state's encoding: the
 * ABI's decode replaces every trace of earlier contents); destroy + init
 * if that fails. */
static sf_status txn_reset(sf_exec *x, size_t i)
{
    int a = (int)(i % (size_t)x->nagents);
    const sf_exec_agent *ag = &x->agents[a];
    if (x->empty && ag->ops->decode(x->txn[i], x->empty[a].data, x->empty[a].len) == SF_OK) return SF_OK;
    return reset_state(ag, x->txn[i]);
}

/* Opens a transaction: agents with in-place transactions start recording
 * (except in hold mode, whose pieces go to held states through
 * transaction states like every other agent's). */
static sf_status txn_begin(sf_exec *x)
{
    x->in_place = !x->hold;
    if (!x->in_place) return SF_OK;
    for (int a = 0; a < x->nagents; a++)
        if (x->inplace[a] != NULL)
            for (int t = 0; t < x->nthreads; t++) SF_CALL(x->inplace[a]->begin(state_at(x, t, a)));
    return SF_OK;
}

/* Drops what the current transaction processed. */
static sf_status txn_rollback(sf_exec *x)
{
    size_t n = (size_t)x->nthreads * (size_t)x->nagents;
    for (size_t i = 0; i < n; i++) {
        int a = (int)(i % (size_t)x->nagents);
        if (in_place(x, a))
            x->inplace[a]->rollback(x->states[i]);
        else if (x->txn_rows[i] > 0)
            SF_CALL(txn_reset(x, i));
        x->txn_rows[i] = 0;
    }
    x->txn_xrows = 0;
    x->in_place = false;
    return SF_OK;
}

/* Commits state i's part of the transaction (see txn_commit). */
static sf_status commit_one(sf_exec *x, size_t i, void **into, uint64_t *rows)
{
    const int a = (int)(i % (size_t)x->nagents);
    const sf_exec_agent *ag = &x->agents[a];
    if (in_place(x, a)) {
        /* Already in the state (never in hold mode: into is states). */
        x->inplace[a]->commit(x->states[i]);
        rows[i] += x->txn_rows[i];
        x->txn_rows[i] = 0;
        return SF_OK;
    }
    if (x->txn_rows[i] == 0) return SF_OK; /* untouched: still the initial state */
    SF_CALL(ag->ops->merge(into[i], x->txn[i]));
    SF_CALL(txn_reset(x, i));
    rows[i] += x->txn_rows[i];
    x->txn_rows[i] = 0;
    return SF_OK;
}

/* Merges the transaction into the states, or into the held states in
 * hold mode (thread t's into thread t's: every merge is exact, so which
 * pairs are merged does not matter). The merges of different states are
 * independent: with several threads they run in parallel. */
static sf_status txn_commit(sf_exec *x, uint64_t bad_rows)
{
    const long n = (long)x->nthreads * (long)x->nagents;
    void **into = x->hold ? x->held : x->states;
    uint64_t *rows = x->hold ? x->held_rows : x->agent_rows;
    sf_status first = SF_OK;
    char msg[2048] = "";
#pragma omp parallel for schedule(dynamic, 1) num_threads(x->nthreads) if (x->nthreads > 1 && n > 1)
    for (long i = 0; i < n; i++) {
        sf_status rc = commit_one(x, (size_t)i, into, rows);
        if (rc != SF_OK) {
#pragma omp critical(sf_exec_commit_error)
            {
                if (first == SF_OK) {
                    first = rc;
                    strncpy(msg, sf_error_message(), sizeof msg - 1);
                }
            }
        }
    }
    if (first != SF_OK) {
        sf_error_set_message(msg);
        return first;
    }
    if (x->hold) x->held_xrows += x->txn_xrows - bad_rows;
    else x->rows += x->txn_xrows - bad_rows;
    x->txn_xrows = 0;
    x->merged = false;
    x->in_place = false;
    return SF_OK;
}

sf_status sf_exec_set_unit(sf_exec *x, int attempt_base, bool hold)
{
    SF_CHECK(!hold || x->ft, SF_ERR_INTERNAL, "executor: a held unit needs sf_exec_set_faults");
    x->attempt_base = attempt_base;
    x->hold = hold;
    if (x->hold && x->held == NULL) {
        size_t n = (size_t)x->nthreads * (size_t)x->nagents;
        x->held = calloc(n ? n : 1, sizeof *x->held);
        x->held_rows = calloc(n ? n : 1, sizeof *x->held_rows);
        SF_CHECK(x->held && x->held_rows, SF_ERR_NOMEM, "out of memory (executor held states)");
        for (size_t i = 0; i < n; i++) SF_CALL(new_state(&x->agents[i % (size_t)x->nagents], &x->held[i]));
    }
    return SF_OK;
}

sf_status sf_exec_hold_end(sf_exec *x, bool commit)
{
    x->hold = false;
    if (x->held == NULL) return SF_OK;
    size_t n = (size_t)x->nthreads * (size_t)x->nagents;
    for (size_t i = 0; i < n; i++) {
        const sf_exec_agent *ag = &x->agents[i % (size_t)x->nagents];
        if (x->held_rows[i] == 0 && !commit) continue;
        if (commit && x->held_rows[i] > 0) {
            SF_CALL(ag->ops->merge(x->states[i], x->held[i]));
            x->agent_rows[i] += x->held_rows[i];
        }
        if (x->held_rows[i] > 0) SF_CALL(reset_state(ag, x->held[i]));
        x->held_rows[i] = 0;
    }
    if (commit) x->rows += x->held_xrows;
    x->held_xrows = 0;
    x->merged = false;
    return SF_OK;
}

sf_status sf_exec_process_unit(sf_exec *x, const sf_batch *const *batches, const uint32_t *shards, int nb,
                               uint64_t round, sf_status (*side)(void *ctx), void *ctx, sf_exec_piece_result *res)
{
    for (int i = 0; i < nb; i++)
        res[i] = (sf_exec_piece_result){.shard = shards[i], .rows = batches[i]->nrows, .attempts = 1};
    if (!x->ft) {
        x->cur_shards = shards; /* for the agents' sf_rows.shard */
        sf_status r0 = sf_exec_process_overlap(x, batches, nb, side, ctx);
        x->cur_shards = NULL;
        return r0;
    }
    sf_status rc = SF_OK;
    int *attempt = calloc((size_t)(nb ? nb : 1), sizeof *attempt);
    uint8_t *failed = calloc((size_t)(nb ? nb : 1), 1);
    uint64_t *bad = calloc((size_t)(nb ? nb : 1), sizeof *bad);
    SF_CHECK_GOTO(attempt && failed && bad, SF_ERR_NOMEM, done, "out of memory (unit)");
    for (int i = 0; i < nb; i++) attempt[i] = x->attempt_base + 1;
    x->cur_shards = shards;
    x->cur_round = round;
    x->cur_attempt = attempt;
    x->cur_failed = failed;
    x->cur_bad = bad;
    x->in_txn = true;
    SF_CALL_GOTO(txn_begin(x), done);
    /* Optimistically the whole unit at once: the common case. */
    sf_status first = sf_exec_process_overlap(x, batches, nb, side, ctx);
    if (first == SF_OK) {
        uint64_t nbad = 0;
        for (int i = 0; i < nb; i++) {
            nbad += bad[i];
            res[i].rows_excluded = bad[i];
        }
        rc = txn_commit(x, nbad);
        goto done;
    }
    bool side_failed = true;
    for (int i = 0; i < nb; i++) side_failed = side_failed && !failed[i];
    sf_status side_rc = side ? x->side_rc : SF_OK;
    char side_msg[2048];
    snprintf(side_msg, sizeof side_msg, "%s", x->side_msg);
    SF_CALL_GOTO(txn_rollback(x), done);
    if (side_failed) {
        /* Not an agent's failure (the side work, the executor): not retried. */
        rc = first;
        goto done;
    }
    snprintf(x->last_fault, sizeof x->last_fault, "%s", sf_error_message());
    /* Then piece by piece, each attempt its own transaction. A piece whose
     * first attempt failed above goes on with its second; the others redo
     * their first, which behaves exactly as it did inside the unit. */
    for (int i = 0; i < nb; i++) {
        int a = failed[i] ? 2 : 1;
        bool ok = false;
        for (; a <= x->faults.max_attempts && !ok; a++) {
            if (a > 1) {
                double wait = x->faults.backoff;
                for (int k = 2; k < a; k++) wait *= 2;
                sleep_s(wait);
            }
            attempt[i] = x->attempt_base + a;
            failed[i] = 0;
            bad[i] = 0;
            SF_CALL_GOTO(txn_begin(x), done);
            sf_status e = sf_exec_process_overlap(x, batches + i, 1, NULL, NULL);
            /* The batch index inside that call is 0: map the arrays to it. */
            (void)e;
            ok = e == SF_OK;
            if (ok) {
                res[i].rows_excluded = bad[i];
                SF_CALL_GOTO(txn_commit(x, bad[i]), done);
            } else {
                snprintf(x->last_fault, sizeof x->last_fault, "%s", sf_error_message());
                SF_CALL_GOTO(txn_rollback(x), done);
            }
            res[i].attempts = a;
            if (ok) break;
        }
        if (!ok) {
            res[i].excluded = true;
            res[i].rows_excluded = res[i].rows;
            /* Truncated to the result's room. */
            size_t n = strnlen(x->last_fault, sizeof res[i].why - 1);
            memcpy(res[i].why, x->last_fault, n);
            res[i].why[n] = '\0';
        }
        x->cur_shards++;
        x->cur_attempt++;
        x->cur_failed++;
        x->cur_bad++;
    }
    if (side_rc != SF_OK) {
        /* The pieces are done; the side work (the next round's read)
         * failed all the same. */
        sf_error_set_message(side_msg);
        rc = side_rc;
    }
done:
    /* A transaction left open by a failure of the executor itself: its
     * in-place changes are undone (the unit's result is the failure). */
    if (x->in_place) {
        sf_status e = txn_rollback(x);
        if (rc == SF_OK) rc = e;
    }
    x->in_txn = false;
    x->cur_shards = NULL;
    x->cur_attempt = NULL;
    x->cur_failed = NULL;
    x->cur_bad = NULL;
    free(attempt);
    free(failed);
    free(bad);
    return rc;
}

sf_status sf_exec_absorb(sf_exec *x, const uint8_t *bytes, size_t n, const uint64_t *agent_rows, uint64_t rows)
{
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    for (int a = 0; a < x->nagents; a++) {
        void *s = x->scratch[2 * a];
        SF_CALL(decode_into(x, a, s, &rd));
        SF_CALL(x->agents[a].ops->merge(state_at(x, 0, a), s));
        if (agent_rows) x->agent_rows[a] += agent_rows[a];
    }
    SF_CHECK(rd.off == rd.n, SF_ERR_INTERNAL, "checkpointed executor states have trailing bytes");
    x->rows += rows;
    x->merged = false;
    return SF_OK;
}

uint64_t sf_exec_rows(const sf_exec *x) { return x->rows; }

double sf_exec_agent_seconds(const sf_exec *x, int a)
{
    double s = 0;
    for (int t = 0; t < x->nthreads; t++) s += x->agent_secs[(size_t)t * (size_t)x->nagents + (size_t)a];
    return s;
}

uint64_t sf_exec_agent_rows(const sf_exec *x, int a)
{
    uint64_t n = 0;
    for (int t = 0; t < x->nthreads; t++) n += x->agent_rows[(size_t)t * (size_t)x->nagents + (size_t)a];
    return n;
}

sf_status sf_exec_decode_agent(sf_exec *x, const uint8_t *bytes, size_t n, int a, void **state)
{
    *state = NULL;
    SF_CHECK(a >= 0 && a < x->nagents, SF_ERR_INTERNAL, "executor: no agent %d", a);
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    for (int i = 0; i < a; i++) {
        uint64_t len;
        const uint8_t *p;
        SF_CALL(sf_rd_u64(&rd, &len));
        SF_CALL(sf_rd_bytes(&rd, (size_t)len, &p));
    }
    void *s;
    SF_CALL(new_state(&x->agents[a], &s));
    sf_status rc = decode_into(x, a, s, &rd);
    if (rc != SF_OK) {
        x->agents[a].ops->destroy(s);
        free(s);
        return rc;
    }
    *state = s;
    return SF_OK;
}

sf_status sf_exec_select(const sf_exec *x, const uint8_t *bytes, size_t n, const uint8_t *want, sf_buf *out)
{
    sf_buf_clear(out);
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    for (int a = 0; a < x->nagents; a++) {
        uint64_t len;
        const uint8_t *p;
        SF_CALL(sf_rd_u64(&rd, &len));
        SF_CALL(sf_rd_bytes(&rd, (size_t)len, &p));
        SF_CALL(sf_buf_put_u64(out, want[a] ? len : 0));
        if (want[a]) SF_CALL(sf_buf_append(out, p, (size_t)len));
    }
    SF_CHECK(rd.off == rd.n, SF_ERR_INTERNAL, "encoded executor states have trailing bytes");
    return SF_OK;
}

void sf_exec_state_destroy(sf_exec *x, int a, void **state)
{
    if (state == NULL || *state == NULL) return;
    x->agents[a].ops->destroy(*state);
    free(*state);
    *state = NULL;
}

int sf_exec_default_threads(int local_ranks)
{
    const char *e = getenv("OMP_NUM_THREADS");
    if (e && atoi(e) > 0) return atoi(e);
    e = getenv("SLURM_CPUS_PER_TASK");
    if (e && atoi(e) > 0) return atoi(e);
    cpu_set_t set;
    int mine = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0) mine = CPU_COUNT(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    /* Unbound ranks share the node's CPUs; bound ranks own their mask. */
    if (online > 0 && mine >= online && local_ranks > 1) mine = (int)(online / local_ranks);
    return mine > 0 ? mine : 1;
}

void sf_exec_set_threads(int n) { omp_set_num_threads(n > 0 ? n : 1); }

const char *sf_exec_proc_bind(void)
{
    switch (omp_get_proc_bind()) {
    case omp_proc_bind_false: return "false";
    case omp_proc_bind_true: return "true";
    case omp_proc_bind_master: return "master";
    case omp_proc_bind_close: return "close";
    case omp_proc_bind_spread: return "spread";
    default: return "unknown";
    }
}

int sf_exec_num_places(void) { return omp_get_num_places(); }

void sf_exec_start_threads(int n)
{
    int dummy = 0;
#pragma omp parallel num_threads(n > 0 ? n : 1) reduction(+ : dummy)
    dummy += 1;
    (void)dummy;
}
