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

sf_status sf_exec_process(sf_exec *x, const sf_batch *const *batches, int nb)
{
    return sf_exec_process_overlap(x, batches, nb, NULL, NULL);
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
    int nthreads = x->nthreads;
    if (side == NULL && (size_t)nthreads > x->nmorsels) nthreads = (int)x->nmorsels;
    if (nthreads < 1) nthreads = 1;
    long nm = (long)x->nmorsels;
#pragma omp parallel num_threads(nthreads)
    {
        int t = omp_get_thread_num();
        sf_status mine = SF_OK;
        if (side != NULL) {
            /* The master thread does the side work (reading the next round)
             * first, then joins the others; morsels go to whoever is free.
             * Which thread takes which morsel does not change any result:
             * every agent merges exactly order-independently. */
            if (t == 0) {
                side_rc = side(side_ctx);
                if (side_rc != SF_OK) strncpy(side_msg, sf_error_message(), sizeof side_msg - 1);
            }
#pragma omp for schedule(dynamic, 1)
            for (long m = 0; m < nm; m++) {
                if (mine != SF_OK) continue;
                const struct morsel *mo = &x->morsels[m];
                for (int a = 0; a < x->nagents && mine == SF_OK; a++)
                    mine = x->agents[a].ops->process(state_at(x, t, a), batches[mo->batch], mo->begin, mo->end);
            }
        } else {
#pragma omp for schedule(static)
            for (long m = 0; m < nm; m++) {
                if (mine != SF_OK) continue;
                const struct morsel *mo = &x->morsels[m];
                for (int a = 0; a < x->nagents && mine == SF_OK; a++)
                    mine = x->agents[a].ops->process(state_at(x, t, a), batches[mo->batch], mo->begin, mo->end);
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
