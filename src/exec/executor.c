#define _GNU_SOURCE
#include "shardflow/exec.h"

#include <omp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
    /* Morsel list reused across calls. */
    size_t nmorsels, morsel_cap;
    struct morsel { int batch; size_t begin, end; } *morsels;
};

static void *state_at(sf_exec *x, int t, int a) { return x->states[(size_t)t * (size_t)x->nagents + (size_t)a]; }

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
    if (x->sel)
        for (int t = 0; t < x->nthreads; t++) free(x->sel[t]);
    free(x->sel);
    free(x->agent_rows);
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
    SF_CHECK_GOTO(x->sel && x->agent_rows, SF_ERR_NOMEM, fail, "out of memory (executor)");
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

void sf_exec_set_schedule(sf_exec *x, sf_exec_schedule sch) { x->schedule = sch; }

sf_status sf_exec_process(sf_exec *x, const sf_batch *const *batches, int nb)
{
    return sf_exec_process_overlap(x, batches, nb, NULL, NULL);
}

/* Runs the agents of group g (all agents when g < 0) of thread t over one
 * morsel. A where: filter is evaluated once per morsel and reused by the
 * following agents with the same filter. */
static sf_status run_morsel(sf_exec *x, int t, int g, const sf_batch *b, size_t begin, size_t end)
{
    const sf_filter *last = NULL;
    sf_rows all = {begin, end - begin, NULL}, picked = {begin, 0, NULL};
    for (int a = 0; a < x->nagents; a++) {
        const sf_exec_agent *ag = &x->agents[a];
        if (g >= 0 && ag->group != g) continue;
        const sf_rows *rows = &all;
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
        x->agent_rows[(size_t)t * (size_t)x->nagents + (size_t)a] += rows->n;
        if (rows->n == 0) continue;
        SF_CALL(ag->ops->process(state_at(x, t, a), b, rows));
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
        x->rows += batches[i]->nrows;
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
                mine = run_morsel(x, t, g, batches[mo->batch], mo->begin, mo->end);
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
    if (first != SF_OK) {
        sf_error_set_message(msg);
        return first;
    }
    if (side_rc != SF_OK) sf_error_set_message(side_msg);
    return side_rc;
}

static sf_status merge_threads(sf_exec *x)
{
    if (x->merged) return SF_OK;
    for (int a = 0; a < x->nagents; a++) {
        for (int t = 1; t < x->nthreads; t++) {
            void *from = state_at(x, t, a);
            SF_CALL(x->agents[a].ops->merge(state_at(x, 0, a), from));
            /* Reset the thread state so that later merges do not count it twice. */
            x->agents[a].ops->destroy(from);
            memset(from, 0, x->agents[a].ops->state_size);
            SF_CALL(x->agents[a].ops->init(from, x->agents[a].cfg));
        }
    }
    x->merged = true;
    return SF_OK;
}

/* Encoding: for each agent, u64 length then the agent's bytes. */
sf_status sf_exec_encode(sf_exec *x, sf_buf *out)
{
    SF_CALL(merge_threads(x));
    for (int a = 0; a < x->nagents; a++) {
        size_t at = out->len;
        SF_CALL(sf_buf_put_u64(out, 0));
        SF_CALL(x->agents[a].ops->encode(state_at(x, 0, a), out));
        sf_store_u64(out->data + at, (uint64_t)(out->len - at - 8));
    }
    return SF_OK;
}

static sf_status decode_into(sf_exec *x, int a, void *state, sf_rd *rd)
{
    uint64_t len;
    const uint8_t *p;
    SF_CALL(sf_rd_u64(rd, &len));
    SF_CALL(sf_rd_bytes(rd, (size_t)len, &p));
    return x->agents[a].ops->decode(state, p, (size_t)len);
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
        SF_CALL_GOTO(decode_into(x, a, sa, &ra), done);
        SF_CALL_GOTO(decode_into(x, a, sb, &rb), done);
        SF_CALL_GOTO(x->agents[a].ops->merge(sa, sb), done);
        size_t at = out.len;
        SF_CALL_GOTO(sf_buf_put_u64(&out, 0), done);
        SF_CALL_GOTO(x->agents[a].ops->encode(sa, &out), done);
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

uint64_t sf_exec_rows(const sf_exec *x) { return x->rows; }

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
