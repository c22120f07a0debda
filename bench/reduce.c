/* Benchmark of the rank reduction: the flat binomial tree against the
 * hierarchical one (inside each node, then over the node leaders).
 *
 *   mpirun -np P bench_reduce [--groups G] [--reps R] [--header]
 *                                   (defaults: G = 2000, R = 15)
 *
 * Every rank builds the encoded state of a real `stats` agent grouped by a
 * string key: G groups (the same G keys on every rank, as when every rank
 * sees every service), 4 rows per group with rank-dependent values. The
 * merge callback is the engine's: decode both states, merge, encode. Each
 * repetition starts from a fresh copy of the rank's state after a barrier;
 * its time is the slowest rank's, and the table shows the median of R
 * repetitions of each tree (after one untimed call of each, which also
 * builds the communicators). Rank 0 checks that both trees give the same
 * bytes.
 *
 * Nodes are blocks of SF_RANKS_PER_NODE consecutive ranks when it is set
 * (to simulate several nodes on one machine), else the machine's ranks.
 * The message counts come from sf_comm_reduce_last_stats and the stats of
 * sf_comm_reduce_hier, summed over ranks; a rank sends at most one message
 * per reduction, so its bytes are inter-node exactly when its message is. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/batch.h"
#include "shardflow/comm.h"
#include "shardflow/status.h"

#define ROWS_PER_GROUP 4

typedef struct bench {
    const sf_agent_ops *ops;
    sf_agent_config cfg;
    void *a, *b;     /* scratch states for the merge */
} bench;

/* into := into (+) from, through decoded states, as the engine merges. */
static sf_status merge_cb(sf_buf *into, const uint8_t *from, size_t n, void *ctx)
{
    bench *B = ctx;
    SF_CALL(B->ops->decode(B->a, into->data, into->len));
    SF_CALL(B->ops->decode(B->b, from, n));
    SF_CALL(B->ops->merge(B->a, B->b));
    sf_buf_clear(into);
    return B->ops->encode(B->a, into);
}

/* The rank's state: G groups "svc-000000".., values from a per-rank stream. */
static sf_status build_state(bench *B, const sf_schema *s, int groups, int rank, sf_buf *out)
{
    sf_status rc = SF_OK;
    sf_batch batch;
    size_t nrows = (size_t)groups * ROWS_PER_GROUP;
    SF_CALL(sf_batch_init(&batch, s, NULL, nrows));
    uint64_t x = 0x9E3779B97F4A7C15ull * (uint64_t)(rank + 1);
    for (size_t r = 0; r < nrows; r++) {
        char key[32];
        int len = snprintf(key, sizeof key, "svc-%06d", (int)(r % (size_t)groups));
        SF_CALL_GOTO(sf_dict_intern(&batch.cols[0].dict, key, (size_t)len, &batch.cols[0].code[r]), done);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        batch.cols[1].f64[r] = (double)(x >> 11) * 0x1p-53 * 1000.0;
    }
    batch.nrows = nrows;
    sf_rows rows = {0, nrows, NULL, SF_ROWS_NO_SHARD};
    SF_CALL_GOTO(B->ops->init(B->a, &B->cfg), done);
    rc = B->ops->process(B->a, &batch, &rows);
    if (rc == SF_OK) rc = B->ops->encode(B->a, out);
    B->ops->destroy(B->a);
done:
    sf_batch_fini(&batch);
    return rc;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Median over reps of the slowest rank's time of one reduction. */
static sf_status time_reduce(bench *B, const sf_buf *state, bool hier, int reps, sf_buf *result,
                             double *median, sf_comm_reduce_stats *st)
{
    double *t = malloc(sizeof *t * (size_t)reps);
    SF_CHECK(t != NULL, SF_ERR_NOMEM, "out of memory");
    sf_status rc = SF_OK;
    for (int i = 0; i <= reps && rc == SF_OK; i++) {
        sf_buf_clear(result);
        /* Agreed before the barrier, so a rank short of memory stops every
         * rank instead of leaving them in the reduction. */
        rc = sf_comm_agree(sf_buf_append(result, state->data, state->len));
        if (rc != SF_OK) break;
        rc = sf_comm_barrier();
        if (rc != SF_OK) break;
        double t0 = sf_comm_wtime();
        rc = hier ? sf_comm_reduce_hier(result, merge_cb, B, st) : sf_comm_reduce(result, merge_cb, B);
        double dt = sf_comm_wtime() - t0;
        rc = sf_comm_agree(rc);
        if (rc == SF_OK) rc = sf_comm_allreduce_max_f64(&dt, 1);
        /* The first call is a warm-up (it builds the communicators). */
        if (i > 0) t[i - 1] = dt;
    }
    if (!hier) sf_comm_reduce_last_stats(st);
    if (rc == SF_OK) {
        qsort(t, (size_t)reps, sizeof *t, cmp_double);
        *median = reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]);
    }
    free(t);
    return rc;
}

/* Totals over ranks: messages, inter-node messages, inter-node bytes. */
static sf_status totals(const sf_comm_reduce_stats *st, uint64_t v[3])
{
    v[0] = st->messages;
    v[1] = st->internode_messages;
    v[2] = st->internode_messages > 0 ? st->bytes : 0;
    return sf_comm_allreduce_sum_u64(v, 3);
}

static int usage(void)
{
    if (sf_comm_rank() == 0) fputs("usage: bench_reduce [--groups G] [--reps R] [--header]\n", stderr);
    sf_comm_finalize();
    return 2;
}

int main(int argc, char **argv)
{
    if (sf_comm_init(&argc, &argv) != SF_OK) {
        fprintf(stderr, "bench_reduce: %s\n", sf_error_message());
        return 1;
    }
    int groups = 2000, reps = 15;
    bool header = false;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--groups") == 0 && i + 1 < argc)
            groups = atoi(argv[++i]);
        else if (strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (strcmp(argv[i], "--header") == 0)
            header = true;
        else
            return usage();
    }
    if (groups < 1 || groups > 10000000 || reps < 1 || reps > 100000) return usage();
    int rank = sf_comm_rank(), size = sf_comm_size();
    const char *env = getenv("SF_RANKS_PER_NODE");
    int per_node = env != NULL && env[0] != '\0' ? atoi(env) : sf_comm_local_size();
    if (per_node < 1) per_node = 1;
    int nodes = (size + per_node - 1) / per_node;

    sf_status rc = SF_OK;
    sf_schema schema;
    sf_schema_init(&schema);
    bench B;
    memset(&B, 0, sizeof B);
    sf_buf state, flat, hier;
    sf_buf_init(&state);
    sf_buf_init(&flat);
    sf_buf_init(&hier);
    static const char *const by[1] = {"service"};
    static const int by_col[1] = {0};

    sf_agents_register_builtin();
    B.ops = sf_agent_find("stats");
    SF_CHECK_GOTO(B.ops != NULL, SF_ERR_INTERNAL, done, "no stats agent");
    SF_CALL_GOTO(sf_schema_add(&schema, "service", SF_STRING), done);
    SF_CALL_GOTO(sf_schema_add(&schema, "latency_ms", SF_FLOAT64), done);
    B.cfg.agent = "stats";
    B.cfg.id = "latency";
    B.cfg.column = "latency_ms";
    B.cfg.col = 1;
    B.cfg.nby = 1;
    B.cfg.by = by;
    B.cfg.by_col = by_col;
    B.cfg.schema = &schema;
    B.cfg.file = "bench.yaml";
    B.cfg.line = 1;
    B.cfg.seed = 1;
    B.a = calloc(1, B.ops->state_size);
    B.b = calloc(1, B.ops->state_size);
    SF_CHECK_GOTO(B.a != NULL && B.b != NULL, SF_ERR_NOMEM, done, "out of memory");
    rc = build_state(&B, &schema, groups, rank, &state);
    /* The scratch states stay init'ed for the merges (decode replaces them). */
    if (rc == SF_OK) rc = B.ops->init(B.a, &B.cfg);
    if (rc == SF_OK) {
        rc = B.ops->init(B.b, &B.cfg);
        if (rc != SF_OK) B.ops->destroy(B.a);
    }
    SF_CALL_GOTO(sf_comm_agree(rc), done);

    double t_flat = 0, t_hier = 0;
    sf_comm_reduce_stats sf = {0, 0, 0}, sh = {0, 0, 0};
    rc = time_reduce(&B, &state, false, reps, &flat, &t_flat, &sf);
    if (rc == SF_OK) rc = time_reduce(&B, &state, true, reps, &hier, &t_hier, &sh);
    B.ops->destroy(B.a);
    B.ops->destroy(B.b);
    SF_CALL_GOTO(rc, done);
    uint64_t vf[3], vh[3];
    SF_CALL_GOTO(totals(&sf, vf), done);
    SF_CALL_GOTO(totals(&sh, vh), done);
    if (rank == 0) {
        SF_CHECK_GOTO(flat.len == hier.len && memcmp(flat.data, hier.data, flat.len) == 0, SF_ERR_INTERNAL,
                      done, "flat and hierarchical results differ (%zu and %zu bytes)", flat.len, hier.len);
        if (header) {
            printf("# stats states of %d groups (%zu bytes per rank), median of %d repetitions, "
                   "slowest rank\n", groups, state.len, reps);
            printf("%5s %9s %5s %9s %9s %10s %10s %13s %13s %10s %10s\n", "ranks", "rank/node", "nodes",
                   "msgs_flat", "msgs_hier", "inter_flat", "inter_hier", "interB_flat", "interB_hier",
                   "flat_ms", "hier_ms");
        }
        printf("%5d %9d %5d %9llu %9llu %10llu %10llu %13llu %13llu %10.3f %10.3f\n", size, per_node, nodes,
               (unsigned long long)vf[0], (unsigned long long)vh[0], (unsigned long long)vf[1],
               (unsigned long long)vh[1], (unsigned long long)vf[2], (unsigned long long)vh[2], 1e3 * t_flat,
               1e3 * t_hier);
        fflush(stdout);
    }
done:
    free(B.a);
    free(B.b);
    sf_buf_fini(&state);
    sf_buf_fini(&flat);
    sf_buf_fini(&hier);
    sf_schema_fini(&schema);
    rc = sf_comm_agree(rc);
    if (rc != SF_OK && rank == 0) fprintf(stderr, "bench_reduce: %s\n", sf_error_message());
    sf_comm_finalize();
    return rc == SF_OK ? 0 : 1;
}
