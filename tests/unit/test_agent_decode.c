/* The decode contract of every built-in agent and of the example plugin:
 * decode "replaces the contents of an init'ed state with decoded bytes"
 * (shardflow/agent.h), whatever the state held before, so a state object
 * can be reused for one decode after another (plugins and tests call decode
 * directly; a reduction may decode into a scratch state).
 *
 * For random states A, B, C (each built by processing random batches) and
 * E (freshly initialised), and a state S that first holds A (decoded from
 * enc(A), built by processing A's rows into it, or merged from A):
 *   - decode enc(E) into S: S is E (also when merged into a fresh state,
 *     so the merge's source side is checked too); merging B into it gives the
 *     state that merging B into a fresh state gives; processing rows D into
 *     it gives what processing D into a fresh state gives;
 *   - decode enc(C) into S, twice: S is C (as above); merging B, or processing
 *     D, gives what the same does to a copy of C (a fresh state into which
 *     C is merged).
 * States are compared by their canonical encodings, their reports and
 * their whole-state "rows" statistic, each against the second path. Stale
 * per-group payload that a decode leaves behind shows up as soon as a
 * later merge or row reuses the group's index, which is how the checks
 * above catch it.
 *
 * The example plugin is a shared object loaded at run time; its source is
 * compiled into this test (it must come first: it defines
 * _POSIX_C_SOURCE), so that its ops are at hand without a loader. */
#include "../plugins/example_agent.c"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/batch.h"
#include "shardflow/buf.h"

#include "agents/builtin.h"
#include "agents/detect.h"
#include "agents/sessions.h"
#include "agents/sketch_agents.h"

#include "agent_testkit.h"

enum { COL_V, COL_SERVICE, COL_REGION, COL_TS, COL_USER, COL_N, COL_TRUTH, NCOLS };

#define T0 INT64_C(1767225600000000) /* 2026-01-01T00:00:00 */
#define MINUTE_US INT64_C(60000000)
#define ROUNDS 20

static sf_schema schema;

/* ---- random rows ------------------------------------------------------------ */

static const char *const services[] = {"api", "web", "db", "auth", "cache",
                                       "queue", "search", "mail", "pay", "cdn"};
static const char *const regions[] = {"eu", "us", "ap"};

static double gauss(void)
{
    return sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * rnd01());
}

static void set_str(sf_batch *b, int c, size_t r, const char *s)
{
    if (s == NULL) {
        assert_int_equal(sf_batch_set_null(b, c, r), SF_OK);
        return;
    }
    uint32_t code;
    assert_int_equal(sf_dict_intern(&b->cols[c].dict, s, strlen(s), &code), SF_OK);
    b->cols[c].code[r] = code;
}

/* n random rows into a new batch. Each batch draws its services, key
 * numbers and times from a window of its own, so that states built from
 * different batches have different groups, met in different orders. */
static void random_batch(sf_batch *b, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    uint64_t svc_lo = rnd() % 7, svc_span = 1 + rnd() % 4;
    int64_t n_lo = (int64_t)(rnd() % 6), n_span = 1 + (int64_t)(rnd() % 4);
    int64_t t_lo = T0 + (int64_t)(rnd() % (uint64_t)(30 * MINUTE_US));
    uint64_t t_span = 1 + rnd() % (uint64_t)(15 * MINUTE_US);
    for (size_t r = 0; r < n; r++) {
        uint64_t u = rnd() % 100;
        double v = 50.0 + 15.0 * gauss();
        if (u == 0) v = NAN;
        else if (u == 1) v = -v;
        else if (u == 2) v = 0.0;
        b->cols[COL_V].f64[r] = v;
        b->cols[COL_TS].i64[r] = t_lo + (int64_t)(rnd() % t_span);
        b->cols[COL_USER].i64[r] = 1 + (int64_t)(rnd() % 12);
        b->cols[COL_N].i64[r] = n_lo + (int64_t)(rnd() % (uint64_t)n_span);
        b->cols[COL_TRUTH].i64[r] = rnd() % 10 == 0;
        set_str(b, COL_SERVICE, r, rnd() % 20 == 0 ? NULL : services[svc_lo + rnd() % svc_span]);
        set_str(b, COL_REGION, r, rnd() % 25 == 0 ? NULL : regions[rnd() % 3]);
        if (rnd() % 30 == 0) assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
        if (rnd() % 30 == 0) assert_int_equal(sf_batch_set_null(b, COL_TS, r), SF_OK);
        if (rnd() % 30 == 0) assert_int_equal(sf_batch_set_null(b, COL_USER, r), SF_OK);
        if (rnd() % 20 == 0) assert_int_equal(sf_batch_set_null(b, COL_N, r), SF_OK);
        if (rnd() % 50 == 0) assert_int_equal(sf_batch_set_null(b, COL_TRUTH, r), SF_OK);
    }
    b->nrows = n;
}

/* Processes one to three random batches, drawn from seed, in random morsel
 * sizes: the same seed processes the same rows the same way, so two states
 * can be given the same rows. */
static void feed_random(const sf_agent_ops *ops, void *s, uint64_t seed)
{
    uint64_t saved = rng_state;
    rng_state = seed;
    int nb = 1 + (int)(rnd() % 3);
    for (int k = 0; k < nb; k++) {
        size_t n = rnd() % 8 == 0 ? 0 : 1 + rnd() % 160;
        sf_batch b;
        random_batch(&b, n);
        feed_morsels_or_empty(ops, s, &b, 1 + rnd() % 64);
        sf_batch_fini(&b);
    }
    rng_state = saved;
}

/* ---- configurations --------------------------------------------------------------- */

typedef struct byspec {
    int nby;
    const char *const *names;
    const int *cols;
} byspec;

static const char *const svc_names[] = {"service"};
static const int svc_cols[] = {COL_SERVICE};
static const char *const n_names[] = {"n"};
static const int n_cols[] = {COL_N};
static const char *const two_names[] = {"service", "region"};
static const int two_cols[] = {COL_SERVICE, COL_REGION};
static const char *const region_names[] = {"region"};
static const int region_cols[] = {COL_REGION};

static const byspec BY_NONE = {0, NULL, NULL};
static const byspec BY_SERVICE = {1, svc_names, svc_cols};
static const byspec BY_N = {1, n_names, n_cols};
static const byspec BY_TWO = {2, two_names, two_cols};
static const byspec BY_REGION = {1, region_names, region_cols};

/* A configuration of agent over column col (-1: none) grouped by `by`,
 * with the options of the YAML mapping text yaml (NULL: none). The fields a
 * workflow gives every agent are filled in as a hash-sharded run by user
 * would give them. */
static sf_agent_config cfg_of(const char *agent, const char *id, int col, byspec by, const char *yaml)
{
    sf_agent_config c = yaml_cfg(&schema, agent, id, col, by.nby, by.cols, yaml);
    c.by = by.names;
    c.stage = "s2";
    c.shard_strategy = "hash";
    c.shard_key = "user";
    c.seed = 7;
    return c;
}

/* Baselines: states of an earlier stage that detectors and the two-stage
 * topk read. Built once, before any state that refers to them. */
typedef struct baseline {
    const sf_agent_ops *ops;
    sf_agent_config cfg;
    void *state;
    sf_agent_prior prior;
} baseline;

enum { BASE_STATS, BASE_QUANTILES, BASE_WINDOW, NBASE_KINDS };
enum { BY_KIND_NONE, BY_KIND_SERVICE, BY_KIND_N, NBY_KINDS };

static baseline bases[NBASE_KINDS][NBY_KINDS];
static baseline cm_base;

static void baseline_make(baseline *b, const sf_agent_ops *ops, const char *ref, sf_agent_config cfg)
{
    b->ops = ops;
    b->cfg = cfg;
    b->cfg.stage = "s1";
    assert_int_equal(ops->check(&b->cfg), SF_OK);
    b->state = new_state(ops, &b->cfg);
    /* Several seeds, so that the baseline knows most groups and some are
     * missing (records of those are unscored). */
    for (uint64_t k = 0; k < 6; k++) feed_random(ops, b->state, 1000 + k);
    b->prior = (sf_agent_prior){ref, ops, &b->cfg, b->state};
}

static void baseline_free(baseline *b)
{
    if (b->state != NULL) free_state(b->ops, b->state);
    yaml_cfg_free(&b->cfg);
    memset(b, 0, sizeof *b);
}

typedef struct tcase {
    const sf_agent_ops *ops;
    sf_agent_config cfg;
} tcase;

enum { MAX_CASES = 64 };
static tcase cases[MAX_CASES];
static int ncases;

static void add_case(const sf_agent_ops *ops, sf_agent_config cfg)
{
    assert_true(ncases < MAX_CASES);
    tcase *t = &cases[ncases++];
    t->ops = ops;
    t->cfg = cfg;
    assert_int_equal(ops->check(&t->cfg), SF_OK);
}

/* A detector of kind over column v grouped by `by`, against the baseline of
 * the matching kind and grouping. */
static void add_detector(const sf_agent_ops *ops, int base_kind, int by_kind, byspec by, const char *yaml)
{
    sf_agent_config c = cfg_of(ops->name, "det", COL_V, by, yaml);
    c.nbaseline = 1;
    c.baseline = &bases[base_kind][by_kind].prior;
    add_case(ops, c);
}

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "service", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "region", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "timestamp", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "user", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "truth", SF_INT64) != SF_OK) return -1;
    return 0;
}

/* Builds the baselines and the cases (assertions need a running test, so
 * this is the first test rather than the group setup). */
static void test_build_cases(void **st)
{
    (void)st;
    const byspec bys[NBY_KINDS] = {BY_NONE, BY_SERVICE, BY_N};
    static const char *const stats_ref[NBY_KINDS] = {"s1.st0", "s1.st1", "s1.st2"};
    static const char *const q_ref[NBY_KINDS] = {"s1.q0", "s1.q1", "s1.q2"};
    static const char *const w_ref[NBY_KINDS] = {"s1.w0", "s1.w1", "s1.w2"};
    for (int k = 0; k < NBY_KINDS; k++) {
        baseline_make(&bases[BASE_STATS][k], &sf__agent_stats, stats_ref[k],
                      cfg_of("stats", "st", COL_V, bys[k], NULL));
        baseline_make(&bases[BASE_QUANTILES][k], &sf__agent_quantiles, q_ref[k],
                      cfg_of("quantiles", "q", COL_V, bys[k], NULL));
        baseline_make(&bases[BASE_WINDOW][k], &sf__agent_window, w_ref[k],
                      cfg_of("window", "w", COL_V, bys[k], "agent: window\nbucket: 1m\n"));
    }
    baseline_make(&cm_base, &sf__agent_countmin, "s1.cm",
                  cfg_of("countmin", "cm", COL_SERVICE, BY_NONE, "agent: countmin\ndepth: 4\nwidth: 64\n"));

    add_case(&sf__agent_stats, cfg_of("stats", "st", COL_V, BY_NONE, NULL));
    add_case(&sf__agent_stats, cfg_of("stats", "st", COL_V, BY_SERVICE, NULL));
    add_case(&sf__agent_stats, cfg_of("stats", "st", COL_N, BY_N, NULL));
    add_case(&sf__agent_stats, cfg_of("stats", "st", COL_TS, BY_TWO, NULL));

    add_case(&sf__agent_quantiles, cfg_of("quantiles", "q", COL_V, BY_NONE, NULL));
    add_case(&sf__agent_quantiles,
             cfg_of("quantiles", "q", COL_V, BY_SERVICE, "agent: quantiles\naccuracy: 0.02\n"));
    add_case(&sf__agent_quantiles, cfg_of("quantiles", "q", COL_V, BY_TWO, NULL));

    /* Precisions whose sparse form turns dense after 2, 8 and 32 registers. */
    add_case(&sf__agent_distinct, cfg_of("distinct", "d", COL_USER, BY_NONE, "agent: distinct\nprecision: 4\n"));
    add_case(&sf__agent_distinct,
             cfg_of("distinct", "d", COL_SERVICE, BY_REGION, "agent: distinct\nprecision: 6\n"));
    add_case(&sf__agent_distinct, cfg_of("distinct", "d", COL_V, BY_N, "agent: distinct\nprecision: 8\n"));

    add_case(&sf__agent_histogram,
             cfg_of("histogram", "h", COL_V, BY_NONE, "agent: histogram\nmin: 0\nmax: 100\nbins: 10\n"));
    add_case(&sf__agent_histogram, cfg_of("histogram", "h", COL_V, BY_SERVICE,
                                          "agent: histogram\nbuckets: log\nmin: 1\nmax: 1000\n"));
    add_case(&sf__agent_histogram,
             cfg_of("histogram", "h", COL_V, BY_N, "agent: histogram\nedges: [0, 25, 50, 75, 100]\n"));

    add_case(&sf__agent_window, cfg_of("window", "w", -1, BY_NONE, "agent: window\nbucket: 5m\n"));
    add_case(&sf__agent_window, cfg_of("window", "w", COL_V, BY_SERVICE, "agent: window\nbucket: 1m\n"));
    add_case(&sf__agent_window,
             cfg_of("window", "w", COL_V, BY_N, "agent: window\nbucket: 2m\nflag: v > 60\n"));
    add_case(&sf__agent_window,
             cfg_of("window", "w", -1, BY_TWO, "agent: window\nbucket: 1m\nflag: n >= 3\n"));

    add_case(&sf__agent_topk, cfg_of("topk", "top", COL_SERVICE, BY_NONE, "agent: topk\nk: 3\n"));
    add_case(&sf__agent_topk, cfg_of("topk", "top", COL_N, BY_NONE, "agent: topk\nk: 2\n"));
    {
        sf_agent_config c =
            cfg_of("topk", "top", COL_SERVICE, BY_NONE, "agent: topk\nk: 3\nmin_share: 0.05\n");
        c.nbaseline = 1;
        c.baseline = &cm_base.prior;
        add_case(&sf__agent_topk, c);
    }

    add_case(&sf__agent_countmin,
             cfg_of("countmin", "cm", COL_SERVICE, BY_NONE, "agent: countmin\ndepth: 4\nwidth: 64\n"));
    add_case(&sf__agent_countmin, cfg_of("countmin", "cm", COL_N, BY_NONE, "agent: countmin\ndepth: 3\nwidth: 16\n"));

    add_case(&sf__agent_sessions,
             cfg_of("sessions", "sess", -1, BY_NONE,
                    "agent: sessions\nuser: user\ngap: 2m\nbucket: 1m\nlatency: v\nslow_ms: 60\n"));
    add_case(&sf__agent_sessions,
             cfg_of("sessions", "sess", -1, BY_REGION,
                    "agent: sessions\nuser: user\ngap: 5m\nlatency: v\nslow_ms: 55\n"));

    add_detector(&sf__agent_zscore, BASE_STATS, BY_KIND_NONE, BY_NONE, "agent: zscore\nthreshold: 1.5\n");
    add_detector(&sf__agent_zscore, BASE_STATS, BY_KIND_SERVICE, BY_SERVICE,
                 "agent: zscore\nthreshold: 1\ntruth: truth\n");
    add_detector(&sf__agent_zscore, BASE_STATS, BY_KIND_N, BY_N, "agent: zscore\ndirection: up\n");
    add_detector(&sf__agent_mad, BASE_QUANTILES, BY_KIND_NONE, BY_NONE, "agent: mad\nthreshold: 1\n");
    add_detector(&sf__agent_mad, BASE_QUANTILES, BY_KIND_SERVICE, BY_SERVICE,
                 "agent: mad\nthreshold: 1.5\ntruth: truth\n");
    add_detector(&sf__agent_iqr, BASE_QUANTILES, BY_KIND_NONE, BY_NONE, "agent: iqr\nk: 0.5\n");
    add_detector(&sf__agent_iqr, BASE_QUANTILES, BY_KIND_N, BY_N, "agent: iqr\nk: 1\ntruth: truth\n");
    add_detector(&sf__agent_ewma, BASE_WINDOW, BY_KIND_NONE, BY_NONE, "agent: ewma\nk: 1\nwarmup: 2\n");
    add_detector(&sf__agent_ewma, BASE_WINDOW, BY_KIND_SERVICE, BY_SERVICE,
                 "agent: ewma\nk: 0.5\nwarmup: 1\ndirection: both\ntruth: truth\n");

    {
        sf_agent_config c = cfg_of("vote", "vote", COL_V, BY_SERVICE,
                                   "agent: vote\n"
                                   "detectors:\n"
                                   "  - {detector: zscore, baseline: s1.st1, threshold: 1}\n"
                                   "  - {detector: mad, baseline: s1.q1, threshold: 1.5}\n"
                                   "  - {detector: iqr, baseline: s1.q1, k: 0.5}\n"
                                   "  - {detector: ewma, baseline: s1.w1, k: 0.5, warmup: 1}\n"
                                   "rule: majority\n"
                                   "truth: truth\n");
        static sf_agent_prior vote_priors[3];
        vote_priors[0] = bases[BASE_STATS][BY_KIND_SERVICE].prior;
        vote_priors[1] = bases[BASE_QUANTILES][BY_KIND_SERVICE].prior;
        vote_priors[2] = bases[BASE_WINDOW][BY_KIND_SERVICE].prior;
        c.nbaseline = 3;
        c.baseline = vote_priors;
        add_case(&sf__agent_vote, c);
    }
    {
        sf_agent_config c = cfg_of("vote", "vote", COL_V, BY_NONE,
                                   "agent: vote\n"
                                   "detectors:\n"
                                   "  - {detector: zscore, threshold: 1}\n"
                                   "rule: quorum\n"
                                   "k: 1\n");
        c.nbaseline = 1;
        c.baseline = &bases[BASE_STATS][BY_KIND_NONE].prior;
        add_case(&sf__agent_vote, c);
    }

    add_case(&range_count_ops, cfg_of("range_count", "rc", COL_V, BY_NONE, "agent: range_count\nlo: 40\nhi: 60\n"));
    add_case(&range_count_ops,
             cfg_of("range_count", "rc", COL_V, BY_SERVICE, "agent: range_count\nlo: 30\nhi: 55\n"));
}

static int teardown(void **st)
{
    (void)st;
    for (int i = 0; i < ncases; i++) yaml_cfg_free(&cases[i].cfg);
    ncases = 0;
    for (int b = 0; b < NBASE_KINDS; b++)
        for (int k = 0; k < NBY_KINDS; k++) baseline_free(&bases[b][k]);
    baseline_free(&cm_base);
    sf_schema_fini(&schema);
    return 0;
}

/* ---- comparisons ---------------------------------------------------------------- */

/* got and want are the same state: equal encodings, equal reports and the
 * same whole-state "rows" statistic (or the same refusal of it). */
static void assert_same(const tcase *t, const void *got, const void *want)
{
    const sf_agent_ops *ops = t->ops;
    assert_same_state(ops, got, want);
    char *rg = report_text(ops, got), *rw = report_text(ops, want);
    assert_string_equal(rg, rw);
    free(rg);
    free(rw);
    if (ops->stat != NULL) {
        double vg = -1, vw = -2;
        sf_status cg = ops->stat(got, NULL, 0, "rows", &vg), cw = ops->stat(want, NULL, 0, "rows", &vw);
        assert_int_equal(cg, cw);
        if (cg == SF_OK) assert_true(vg == vw);
        sf_error_clear();
    }
}

static void assert_encodes_as(const tcase *t, const void *s, const sf_buf *want)
{
    sf_buf got = encoded(t->ops, s);
    assert_same_bytes(&got, want);
    sf_buf_fini(&got);
}

static void decode_ok(const tcase *t, void *s, const sf_buf *enc)
{
    sf_status rc = t->ops->decode(s, enc->data, enc->len);
    if (rc != SF_OK) print_error("decode: %s\n", sf_error_message());
    assert_int_equal(rc, SF_OK);
}

enum { NVIA = 3 };

/* A state holding A: decoded from enc(A) into a fresh state (via 0), built
 * by processing A's rows into it (via 1), or made by merging A into it (via
 * 2), so that whatever each path leaves in a state (caches, spare
 * capacity) meets the decode that follows. */
static void *holding_a(const tcase *t, int via, const sf_buf *ea, uint64_t seed_a, const void *a)
{
    void *s = new_state(t->ops, &t->cfg);
    if (via == 0)
        decode_ok(t, s, ea);
    else if (via == 1)
        feed_random(t->ops, s, seed_a);
    else
        assert_int_equal(t->ops->merge(s, a), SF_OK);
    return s;
}

/* s is the same state as want, and merging s into a fresh state (s as the
 * merge's source) copies it. */
static void assert_same_both_ways(const tcase *t, const void *s, const void *want)
{
    assert_same(t, s, want);
    void *m = copy_state(t->ops, &t->cfg, s);
    assert_same(t, m, want);
    free_state(t->ops, m);
}

/* One round of the checks in the top comment, with A, B, C and D drawn
 * from seeds derived from `round`. */
static void check_round(const tcase *t, uint64_t round)
{
    const sf_agent_ops *ops = t->ops;
    const sf_agent_config *cfg = &t->cfg;
    const uint64_t seed_a = 4 * round + 1, seed_b = 4 * round + 2, seed_c = 4 * round + 3,
                   seed_d = 4 * round + 4;
    void *a = new_state(ops, cfg), *b = new_state(ops, cfg), *c = new_state(ops, cfg);
    void *e = new_state(ops, cfg);
    feed_random(ops, a, seed_a);
    feed_random(ops, b, seed_b);
    feed_random(ops, c, seed_c);
    sf_buf ea = encoded(ops, a), ec = encoded(ops, c), ee = encoded(ops, e);

    for (int via = 0; via < NVIA; via++) {
        /* A, then E: the empty state, and what merging B into it makes. */
        void *s = holding_a(t, via, &ea, seed_a, a);
        decode_ok(t, s, &ee);
        assert_encodes_as(t, s, &ee);
        assert_same_both_ways(t, s, e);
        assert_int_equal(ops->merge(s, b), SF_OK);
        void *ref = copy_state(ops, cfg, b);
        assert_same(t, s, ref);
        free_state(ops, s);
        free_state(ops, ref);

        /* A, then E, then rows D: as D processed into a fresh state. */
        s = holding_a(t, via, &ea, seed_a, a);
        decode_ok(t, s, &ee);
        feed_random(ops, s, seed_d);
        ref = new_state(ops, cfg);
        feed_random(ops, ref, seed_d);
        assert_same(t, s, ref);
        free_state(ops, s);
        free_state(ops, ref);

        /* A, then C (twice: a decode over the same contents changes
         * nothing): C, and C merged with B. */
        s = holding_a(t, via, &ea, seed_a, a);
        decode_ok(t, s, &ec);
        assert_encodes_as(t, s, &ec);
        decode_ok(t, s, &ec);
        assert_encodes_as(t, s, &ec);
        assert_same_both_ways(t, s, c);
        assert_int_equal(ops->merge(s, b), SF_OK);
        ref = copy_state(ops, cfg, c);
        assert_int_equal(ops->merge(ref, b), SF_OK);
        assert_same(t, s, ref);
        free_state(ops, s);
        free_state(ops, ref);

        /* A, then C, then rows D: as D processed into a copy of C. */
        s = holding_a(t, via, &ea, seed_a, a);
        decode_ok(t, s, &ec);
        feed_random(ops, s, seed_d);
        ref = copy_state(ops, cfg, c);
        feed_random(ops, ref, seed_d);
        assert_same(t, s, ref);
        free_state(ops, s);
        free_state(ops, ref);
    }

    sf_buf_fini(&ea);
    sf_buf_fini(&ec);
    sf_buf_fini(&ee);
    free_state(ops, a);
    free_state(ops, b);
    free_state(ops, c);
    free_state(ops, e);
}

/* Every configuration of the agent named by the test's state. */
static void test_agent(void **st)
{
    const char *name = *st;
    int n = 0;
    for (int i = 0; i < ncases; i++) {
        if (strcmp(cases[i].ops->name, name) != 0) continue;
        n++;
        for (uint64_t r = 0; r < ROUNDS; r++) check_round(&cases[i], 100 * (uint64_t)i + r);
    }
    assert_true(n > 0);
}

#define AGENT_TEST(nm) {nm, test_agent, NULL, NULL, (void *)nm}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_build_cases),
        AGENT_TEST("stats"),
        AGENT_TEST("quantiles"),
        AGENT_TEST("distinct"),
        AGENT_TEST("histogram"),
        AGENT_TEST("window"),
        AGENT_TEST("topk"),
        AGENT_TEST("countmin"),
        AGENT_TEST("sessions"),
        AGENT_TEST("zscore"),
        AGENT_TEST("mad"),
        AGENT_TEST("iqr"),
        AGENT_TEST("ewma"),
        AGENT_TEST("vote"),
        AGENT_TEST("range_count"),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
