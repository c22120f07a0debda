/* Unit tests of the anomaly detectors zscore, mad, iqr and ewma
 * (agents/detect.c). Expectations come from the scoring formulas written out
 * directly in the tests (against baselines whose statistics are set by
 * hand), from exact references over the data (long double moments, sorted
 * values), from a closed form of the EWMA forecast, and from second paths
 * through the agents (one state against split and merged states). */
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
#include "shardflow/config.h"

#include "agents/builtin.h"
#include "agents/detect.h"
#include "agents/sketch_agents.h"
#include "agents/window.h"
#include "flow/yaml_tree.h"

#include "agent_testkit.h"

/* The window agent's ops (agents/window.c). */
extern const sf_agent_ops sf__agent_window;

enum { COL_V, COL_SERVICE, COL_TS, COL_TRUTH, COL_REGION, COL_LABEL, COL_TS2, NCOLS };

/* |a - b| <= eps, with both values in the message when not. */
#define assert_close(a, b, eps)                                                              \
    do {                                                                                     \
        double a_ = (a), b_ = (b);                                                           \
        if (!(fabs(a_ - b_) <= (eps))) {                                                     \
            print_error("%s = %.17g, %s = %.17g\n", #a, a_, #b, b_);                          \
            fail();                                                                          \
        }                                                                                    \
    } while (0)

static sf_schema schema;

static double gauss(void)
{
    double u = rnd01(), v = rnd01();
    return sqrt(-2.0 * log(u + 1e-300)) * cos(6.283185307179586 * v);
}

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "service", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "timestamp", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "truth", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "region", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "label", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "ts2", SF_TIMESTAMP) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* ---- rows and batches ------------------------------------------------------ */

typedef struct row {
    double v;
    const char *service; /* NULL: null key */
    int64_t ts;
    int64_t truth;
    const char *region;
    bool v_null, ts_null, truth_null;
} row;

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

static void fill_batch(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        b->cols[COL_V].f64[r] = rows[r].v;
        b->cols[COL_TS].i64[r] = rows[r].ts;
        b->cols[COL_TRUTH].i64[r] = rows[r].truth;
        b->cols[COL_TS2].i64[r] = rows[r].ts;
        set_str(b, COL_SERVICE, r, rows[r].service);
        set_str(b, COL_REGION, r, rows[r].region ? rows[r].region : "eu");
        set_str(b, COL_LABEL, r, "x");
        if (rows[r].v_null) assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
        if (rows[r].ts_null) assert_int_equal(sf_batch_set_null(b, COL_TS, r), SF_OK);
        if (rows[r].truth_null) assert_int_equal(sf_batch_set_null(b, COL_TRUTH, r), SF_OK);
    }
    b->nrows = n;
}

/* ---- configurations ---------------------------------------------------------- */

static const char *const by_service[] = {"service"};
static const int by_service_col[] = {COL_SERVICE};
static const char *const by_region[] = {"region"};
static const int by_region_col[] = {COL_REGION};

/* An agent configuration whose options are the YAML mapping text (line 1 is
 * the agent: key). nby 0 or 1 (by service). */
typedef struct tcfg {
    sf_agent_config c;
    sf_cfg_node *node;
} tcfg;

static void make_cfg(tcfg *t, const char *agent, const char *id, const char *yaml, int nby,
                     const sf_agent_prior *priors, int nprior)
{
    memset(t, 0, sizeof *t);
    if (yaml != NULL) {
        assert_int_equal(sf__cfg_parse("test.yaml", yaml, strlen(yaml), &t->node), SF_OK);
        assert_non_null(t->node);
    }
    t->c.agent = agent;
    t->c.id = id;
    t->c.column = "v";
    t->c.col = COL_V;
    t->c.nby = nby;
    t->c.by = nby ? by_service : NULL;
    t->c.by_col = nby ? by_service_col : NULL;
    t->c.schema = &schema;
    t->c.node = t->node;
    t->c.file = "test.yaml";
    t->c.line = 1;
    t->c.stage = "detect";
    t->c.nbaseline = nprior;
    t->c.baseline = priors;
    t->c.seed = 1;
}

static void free_cfg(tcfg *t)
{
    sf__cfg_node_free(t->node);
    t->node = NULL;
}

/* ---- fake baselines: statistics set by hand ----------------------------------- */

typedef struct fake_group {
    const char *service; /* NULL: the empty key (ungrouped) */
    double mean, sd, median, mad, q1, q3;
} fake_group;

typedef struct fake_base {
    int n;
    const fake_group *g;
    int calls; /* stat() calls, to see the per-group cache at work */
} fake_base;

/* The canonical key of one string value (see agent.h). */
static size_t key_of(const char *s, uint8_t *out)
{
    size_t n = strlen(s);
    out[0] = 1;
    for (int i = 0; i < 4; i++) out[1 + i] = (uint8_t)(n >> (8 * i));
    memcpy(out + 5, s, n);
    return 5 + n;
}

static sf_status fake_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                           double *out)
{
    fake_base *f = (fake_base *)state; /* test bookkeeping only */
    f->calls++;
    for (int i = 0; i < f->n; i++) {
        uint8_t k[64];
        size_t len = f->g[i].service ? key_of(f->g[i].service, k) : 0;
        if (len != keylen || (len && memcmp(k, key, len) != 0)) continue;
        if ((len == 0) != (key == NULL)) continue;
        const fake_group *g = &f->g[i];
        if (strcmp(name, "mean") == 0) *out = g->mean;
        else if (strcmp(name, "sd") == 0) *out = g->sd;
        else if (strcmp(name, "q:0.5") == 0) *out = g->median;
        else if (strcmp(name, "mad") == 0) *out = g->mad;
        else if (strcmp(name, "q:0.25") == 0) *out = g->q1;
        else if (strcmp(name, "q:0.75") == 0) *out = g->q3;
        else return sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "fake: no statistic %s", name);
        return SF_OK;
    }
    return sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "fake: no such group");
}

static const sf_agent_ops fake_stats_ops = {.abi_version = SF_AGENT_ABI_VERSION, .name = "stats",
                                            .stat = fake_stat};
static const sf_agent_ops fake_quantiles_ops = {.abi_version = SF_AGENT_ABI_VERSION,
                                                .name = "quantiles", .stat = fake_stat};

/* A baseline agent's configuration (of the earlier stage). */
static sf_agent_config base_cfg(const char *agent, const char *id, int nby, const char *column)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = agent;
    c.id = id;
    c.column = column;
    c.col = column ? sf_schema_find(&schema, column) : -1;
    c.nby = nby;
    c.by = nby ? by_service : NULL;
    c.by_col = nby ? by_service_col : NULL;
    c.schema = &schema;
    c.file = "test.yaml";
    c.line = 1;
    c.stage = "profile";
    return c;
}

/* ---- agent helpers -------------------------------------------------------------- */

/* Processes rows[0..n) in morsels of `morsel` rows. */
static void feed(const sf_agent_ops *ops, void *s, const row *rows, size_t n, size_t morsel)
{
    sf_batch b;
    fill_batch(&b, rows, n);
    feed_morsels(ops, s, &b, morsel);
    sf_batch_fini(&b);
}

/* ---- the scoring formulas, written out ------------------------------------------ */

typedef struct expect {
    bool scored, vote;
    double score;
} expect;

static double dir_score(double s, sf__detect_dir dir)
{
    if (dir == SF__DETECT_UP) return s;
    if (dir == SF__DETECT_DOWN) return -s;
    return s < 0 ? -s : s;
}

/* What a detector must say about value x against fake group g (NULL: the
 * baseline lacks the group). */
static expect direct(sf__detect_kind kind, const fake_group *g, double x, bool null, double t,
                     sf__detect_dir dir)
{
    expect e = {false, false, NAN};
    if (g == NULL || null || isnan(x)) return e;
    switch (kind) {
    case SF__DETECT_ZSCORE:
        if (!isfinite(g->mean) || !isfinite(g->sd)) return e;
        if (g->sd == 0)
            e.score = x == g->mean ? 0 : (x > g->mean ? INFINITY : -INFINITY);
        else
            e.score = (x - g->mean) / g->sd;
        e.vote = dir_score(e.score, dir) > t;
        break;
    case SF__DETECT_MAD:
        if (!(g->mad > 0)) return e;
        e.score = 0.6745 * (x - g->median) / g->mad;
        e.vote = dir_score(e.score, dir) > t;
        break;
    case SF__DETECT_IQR: {
        double iqr = g->q3 - g->q1;
        if (!(iqr > 0)) return e;
        double lo = g->q1 - t * iqr, hi = g->q3 + t * iqr;
        bool up = x > hi, down = x < lo;
        e.vote = dir == SF__DETECT_UP ? up : dir == SF__DETECT_DOWN ? down : (up || down);
        e.score = x > g->q3 ? (x - g->q3) / iqr : x < g->q1 ? (x - g->q1) / iqr : 0;
        break;
    }
    default:
        fail();
    }
    e.scored = true;
    return e;
}

/* The confidence a detector gives a vote: min(1, s_d / (2t)) for yes, one
 * minus that for no. */
static double direct_conf(double score, sf__detect_dir dir, double t, bool vote)
{
    double sd = dir_score(score, dir);
    double a = sd <= 0 ? 0 : t == 0 ? 1 : fmin(1.0, sd / (2 * t));
    return vote ? a : 1 - a;
}

static const fake_group fake_groups[] = {
    {"api", 100, 10, 100, 8, 90, 110},
    {"web", 50, 0, 50, 0, 50, 50},          /* no spread */
    {"odd", NAN, NAN, NAN, NAN, NAN, NAN},  /* statistics undefined */
    {"neg", -20, 4, -20, 2, -24, -16},
};

static const fake_group *fake_find(const char *service)
{
    if (service == NULL) return NULL;
    for (size_t i = 0; i < sizeof fake_groups / sizeof fake_groups[0]; i++)
        if (strcmp(fake_groups[i].service, service) == 0) return &fake_groups[i];
    return NULL;
}

/* Rows against fake_groups: values on both sides of every threshold, nulls,
 * NaN, infinities and a group the baseline does not have ("db"). */
static size_t fake_rows(row *rows, size_t max)
{
    static const double api[] = {100, 131, 69, 129.5, 71, 200, -500, 100.5, 135, 60,
                                 145, 55,  168, 32,   INFINITY, -INFINITY, NAN};
    static const double web[] = {50, 51, 49, 50};
    static const double neg[] = {-20, -5, -35, -33, -7, -19.5, 0, -40};
    size_t n = 0;
    for (size_t i = 0; i < sizeof api / sizeof api[0]; i++)
        rows[n++] = (row){.v = api[i], .service = "api", .truth = i % 3 == 1};
    for (size_t i = 0; i < sizeof web / sizeof web[0]; i++)
        rows[n++] = (row){.v = web[i], .service = "web", .truth = i == 1 ? 7 : 0};
    for (size_t i = 0; i < sizeof neg / sizeof neg[0]; i++)
        rows[n++] = (row){.v = neg[i], .service = "neg", .truth = i % 2};
    rows[n++] = (row){.v = 1000, .service = "db", .truth = 1};
    rows[n++] = (row){.v = 5, .service = "odd", .truth = 1};
    rows[n++] = (row){.v = 5, .service = "api", .v_null = true, .truth = 1};
    rows[n++] = (row){.v = 5, .service = NULL};
    assert_true(n <= max);
    return n;
}

/* Every record through sf__detector_score, against the direct formulas, for
 * every kind, direction and a few thresholds; then the cache: one stat()
 * pair per group. */
static void test_scores_vs_direct(void **st)
{
    (void)st;
    row rows[64];
    size_t n = fake_rows(rows, 64);
    sf_batch b;
    fill_batch(&b, rows, n);
    static const double thresholds[] = {0, 1, 2.5, 3, 3.5};
    for (int kind = SF__DETECT_ZSCORE; kind <= SF__DETECT_IQR; kind++) {
        for (int dir = 0; dir < 3; dir++) {
            for (size_t ti = 0; ti < sizeof thresholds / sizeof thresholds[0]; ti++) {
                fake_base fb = {4, fake_groups, 0};
                sf_agent_config bc = base_cfg(kind == SF__DETECT_ZSCORE ? "stats" : "quantiles", "b",
                                              1, "v");
                sf_agent_prior prior = {"profile.b",
                                        kind == SF__DETECT_ZSCORE ? &fake_stats_ops : &fake_quantiles_ops,
                                        &bc, &fb};
                tcfg t;
                make_cfg(&t, sf__detect_kind_name(kind), "d", NULL, 1, &prior, 1);
                sf__detect_opts o;
                assert_int_equal(sf__detect_opts_read(&t.c, kind, &o), SF_OK);
                o.threshold = thresholds[ti];
                o.direction = (sf__detect_dir)dir;
                sf__detector d;
                assert_int_equal(sf__detector_init(&d, &t.c, &o, &prior), SF_OK);
                assert_int_equal(sf__detector_batch(&d, &b), SF_OK);
                for (size_t r = 0; r < n; r++) {
                    sf__detect_score sc;
                    assert_int_equal(sf__detector_score(&d, &b, r, &sc), SF_OK);
                    expect e = direct((sf__detect_kind)kind, fake_find(rows[r].service), rows[r].v,
                                      rows[r].v_null, o.threshold, o.direction);
                    assert_int_equal(sc.scored, e.scored);
                    assert_int_equal(sc.vote, e.vote);
                    if (!e.scored) continue;
                    if (isinf(e.score))
                        assert_true(sc.score == e.score);
                    else
                        assert_close(sc.score, e.score, 1e-12 * (1 + fabs(e.score)));
                    double c = direct_conf(e.score, o.direction, o.threshold, e.vote);
                    assert_close(sc.confidence, c, 1e-12);
                    assert_true(sc.confidence >= 0.5 && sc.confidence <= 1.0);
                }
                /* Six groups were seen (api, web, neg, db, odd, null):
                 * at most two statistics each, looked up once. */
                assert_true(fb.calls <= 2 * 6);
                assert_true(fb.calls >= 6);
                sf__detector_fini(&d);
                free_cfg(&t);
            }
        }
    }
    sf_batch_fini(&b);
}

/* The agent's result for the fake rows: counts built from the direct
 * formulas, with truth: and truth_ids:. */
static void test_agent_report_vs_direct(void **st)
{
    (void)st;
    row rows[64];
    size_t n = fake_rows(rows, 64);
    static const char *const yaml[] = {
        "agent: zscore\nthreshold: 3\ntruth: truth\n",
        "agent: mad\ndirection: up\ntruth: truth\ntruth_ids: [1]\n",
        "agent: iqr\nk: 1.5\ndirection: down\ntruth: truth\n",
    };
    const sf_agent_ops *ops[] = {&sf__agent_zscore, &sf__agent_mad, &sf__agent_iqr};
    double thr[] = {3, 3.5, 1.5};
    sf__detect_dir dirs[] = {SF__DETECT_BOTH, SF__DETECT_UP, SF__DETECT_DOWN};
    for (int kind = 0; kind < 3; kind++) {
        fake_base fb = {4, fake_groups, 0};
        sf_agent_config bc = base_cfg(kind == 0 ? "stats" : "quantiles", "b", 1, "v");
        sf_agent_prior prior = {"profile.b", kind == 0 ? &fake_stats_ops : &fake_quantiles_ops, &bc, &fb};
        for (int grouped = 0; grouped < 2; grouped++) {
            tcfg t;
            make_cfg(&t, ops[kind]->name, "d", yaml[kind], 1, &prior, 1);
            if (!grouped) {
                /* Report groups only with by:; the baseline must then be
                 * ungrouped too, so use the same rows of group api only. */
                t.c.nby = 0;
                bc.nby = 0;
            }
            assert_int_equal(ops[kind]->check(&t.c), SF_OK);
            void *s = new_state(ops[kind], &t.c);
            /* Ungrouped: one fake group with the empty key. */
            fake_group whole = fake_groups[0];
            whole.service = NULL;
            fake_base fw = {1, &whole, 0};
            if (!grouped) prior.state = &fw;
            feed(ops[kind], s, rows, n, 5);
            uint64_t rec = 0, an = 0, un = 0, tp = 0, fp = 0, fn = 0, tn = 0;
            const char *names[] = {"\\\\N", "api", "db", "neg", "odd", "web"};
            uint64_t grec[6] = {0}, gan[6] = {0};
            for (size_t r = 0; r < n; r++) {
                const fake_group *g = grouped ? fake_find(rows[r].service) : &whole;
                expect e = direct((sf__detect_kind)kind, g, rows[r].v, rows[r].v_null, thr[kind],
                                  dirs[kind]);
                bool actual = kind == 1 ? rows[r].truth == 1 : rows[r].truth != 0;
                rec++;
                an += e.vote;
                un += !e.scored;
                if (e.vote) actual ? tp++ : fp++;
                else actual ? fn++ : tn++;
                int gi = 0;
                for (int k = 1; k < 6; k++)
                    if (rows[r].service && strcmp(rows[r].service, names[k]) == 0) gi = k;
                grec[gi]++;
                gan[gi] += e.vote;
            }
            char want[4096];
            size_t len = (size_t)snprintf(want, sizeof want,
                                          "{\"records\":%llu,\"anomalies\":%llu,\"rate\":%.17g,"
                                          "\"unscored\":%llu",
                                          (unsigned long long)rec, (unsigned long long)an,
                                          (double)an / (double)rec, (unsigned long long)un);
            if (grouped) {
                len += (size_t)snprintf(want + len, sizeof want - len, ",\"groups\":{");
                for (int k = 0; k < 6; k++)
                    len += (size_t)snprintf(want + len, sizeof want - len,
                                            "%s\"%s\":{\"records\":%llu,\"anomalies\":%llu}",
                                            k ? "," : "", names[k], (unsigned long long)grec[k],
                                            (unsigned long long)gan[k]);
                len += (size_t)snprintf(want + len, sizeof want - len, "}");
            }
            double P = tp + fp ? (double)tp / (double)(tp + fp) : 0;
            double R = tp + fn ? (double)tp / (double)(tp + fn) : 0;
            double F = tp + fp + fn ? 2.0 * (double)tp / (double)(2 * tp + fp + fn) : 0;
            snprintf(want + len, sizeof want - len,
                     ",\"confusion\":{\"tp\":%llu,\"fp\":%llu,\"fn\":%llu,\"tn\":%llu},"
                     "\"precision\":%.17g,\"recall\":%.17g,\"f1\":%.17g}",
                     (unsigned long long)tp, (unsigned long long)fp, (unsigned long long)fn,
                     (unsigned long long)tn, P, R, F);
            /* %.17g of an integer-valued double prints as sf_json_num does. */
            char *got = report_text(ops[kind], s);
            assert_string_equal(got, want);
            assert_true(an > 0 && un > 0 && tp > 0);
            free(got);
            free_state(ops[kind], s);
            free_cfg(&t);
            bc.nby = 1;
            prior.state = &fb;
        }
    }
}

/* ---- real baselines -------------------------------------------------------------- */

/* Random rows in three services: normal noise around a level per service,
 * with 2% spikes (truth 1) and a heavy-tailed service. */
static row *random_rows(size_t n, uint64_t seed)
{
    static const char *const svc[] = {"api", "web", "db"};
    rng_state = seed;
    row *rows = calloc(n, sizeof *rows);
    assert_non_null(rows);
    for (size_t i = 0; i < n; i++) {
        int s = (int)(rnd() % 3);
        double x = s == 0 ? 100 + 10 * gauss() : s == 1 ? 50 + 2 * gauss() : exp(3 + gauss());
        bool spike = rnd() % 50 == 0;
        if (spike) x += (rnd() % 2 ? 1 : -0.5) * (s == 2 ? 500 : 80);
        rows[i] = (row){.v = x, .service = svc[s], .truth = spike, .ts = (int64_t)i * 1000000};
        if (rnd() % 97 == 0) rows[i].v_null = true;
    }
    return rows;
}

/* zscore against a real stats baseline: the detector's votes equal votes
 * from a long double two-pass mean and sd of each group's values. */
static void test_zscore_real_stats(void **st)
{
    (void)st;
    const sf_agent_ops *bops = &sf__agent_stats;
    assert_non_null(bops->stat); /* zscore reads mean and sd through it */
    enum { N = 6000 };
    row *rows = random_rows(N, 11);
    sf_agent_config bc = base_cfg("stats", "lat", 1, "v");
    void *base = new_state(bops, &bc);
    feed(bops, base, rows, N, 700);
    sf_agent_prior prior = {"profile.lat", bops, &bc, base};
    tcfg t;
    make_cfg(&t, "zscore", "z", "agent: zscore\nthreshold: 2.5\ntruth: truth\n", 1, &prior, 1);
    assert_int_equal(sf__agent_zscore.check(&t.c), SF_OK);
    void *s = new_state(&sf__agent_zscore, &t.c);
    feed(&sf__agent_zscore, s, rows, N, 333);

    static const char *const svc[] = {"api", "web", "db"};
    long double mean[3], sd[3];
    for (int g = 0; g < 3; g++) {
        long double sum = 0, sq = 0;
        size_t c = 0;
        for (size_t i = 0; i < N; i++)
            if (!rows[i].v_null && strcmp(rows[i].service, svc[g]) == 0) {
                sum += rows[i].v;
                c++;
            }
        mean[g] = sum / c;
        for (size_t i = 0; i < N; i++)
            if (!rows[i].v_null && strcmp(rows[i].service, svc[g]) == 0)
                sq += (rows[i].v - mean[g]) * (rows[i].v - mean[g]);
        sd[g] = sqrtl(sq / (c - 1));
        /* The baseline agrees with the reference. */
        uint8_t k[16];
        size_t kl = key_of(svc[g], k);
        double m, d;
        assert_int_equal(bops->stat(base, k, kl, "mean", &m), SF_OK);
        assert_int_equal(bops->stat(base, k, kl, "sd", &d), SF_OK);
        assert_close(m, (double)mean[g], 1e-12 * fabs(m));
        assert_close(d, (double)sd[g], 1e-12 * d);
    }
    uint64_t an = 0, un = 0, tp = 0;
    for (size_t i = 0; i < N; i++) {
        if (rows[i].v_null) {
            un++;
            continue;
        }
        int g = strcmp(rows[i].service, "api") == 0 ? 0 : strcmp(rows[i].service, "web") == 0 ? 1 : 2;
        long double z = (rows[i].v - mean[g]) / sd[g];
        /* No value sits on the threshold, so rounding cannot flip a vote. */
        assert_true(fabsl(fabsl(z) - 2.5L) > 1e-9L);
        bool v = fabsl(z) > 2.5L;
        an += v;
        tp += v && rows[i].truth;
    }
    char *got = report_text(&sf__agent_zscore, s);
    char want[256];
    snprintf(want, sizeof want, "{\"records\":%d,\"anomalies\":%llu,\"rate\":%.17g,\"unscored\":%llu,",
             N, (unsigned long long)an, (double)an / N, (unsigned long long)un);
    assert_memory_equal(got, want, strlen(want));
    snprintf(want, sizeof want, "\"confusion\":{\"tp\":%llu,", (unsigned long long)tp);
    assert_non_null(strstr(got, want));
    free(got);
    free_state(&sf__agent_zscore, s);
    free_state(bops, base);
    free_cfg(&t);
    free(rows);
}

/* mad and iqr against a real quantiles baseline: votes computed from the
 * baseline's published statistics, which are themselves within the
 * sketch's accuracy of the exact sorted values. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void test_mad_iqr_real_quantiles(void **st)
{
    (void)st;
    enum { N = 6000 };
    const sf_agent_ops *bops = &sf__agent_quantiles;
    row *rows = random_rows(N, 23);
    sf_agent_config bc = base_cfg("quantiles", "q", 1, "v");
    assert_int_equal(bops->check(&bc), SF_OK);
    void *base = new_state(bops, &bc);
    feed(bops, base, rows, N, 1000);
    sf_agent_prior prior = {"profile.q", bops, &bc, base};
    static const char *const svc[] = {"api", "web", "db"};
    double med[3], mad[3], q1[3], q3[3];
    double *vals = malloc(N * sizeof *vals);
    assert_non_null(vals);
    for (int g = 0; g < 3; g++) {
        uint8_t k[16];
        size_t kl = key_of(svc[g], k);
        assert_int_equal(bops->stat(base, k, kl, "q:0.5", &med[g]), SF_OK);
        assert_int_equal(bops->stat(base, k, kl, "mad", &mad[g]), SF_OK);
        assert_int_equal(bops->stat(base, k, kl, "q:0.25", &q1[g]), SF_OK);
        assert_int_equal(bops->stat(base, k, kl, "q:0.75", &q3[g]), SF_OK);
        size_t c = 0;
        for (size_t i = 0; i < N; i++)
            if (!rows[i].v_null && strcmp(rows[i].service, svc[g]) == 0) vals[c++] = rows[i].v;
        qsort(vals, c, sizeof *vals, cmp_double);
        double exact = vals[(size_t)floor(0.5 * (double)(c - 1))];
        assert_true(fabs(med[g] - exact) <= 0.0101 * fabs(exact));
    }
    free(vals);
    for (int kind = SF__DETECT_MAD; kind <= SF__DETECT_IQR; kind++) {
        const sf_agent_ops *ops = kind == SF__DETECT_MAD ? &sf__agent_mad : &sf__agent_iqr;
        tcfg t;
        make_cfg(&t, ops->name, "d", kind == SF__DETECT_MAD ? "agent: mad\n" : "agent: iqr\nthreshold: 1.5\n",
                 1, &prior, 1);
        assert_int_equal(ops->check(&t.c), SF_OK);
        void *s = new_state(ops, &t.c);
        feed(ops, s, rows, N, 512);
        uint64_t an = 0, un = 0;
        uint64_t gan[3] = {0};
        for (size_t i = 0; i < N; i++) {
            int g = strcmp(rows[i].service, "api") == 0 ? 0 : strcmp(rows[i].service, "web") == 0 ? 1 : 2;
            if (rows[i].v_null) {
                un++;
                continue;
            }
            double x = rows[i].v;
            bool v;
            if (kind == SF__DETECT_MAD) {
                v = fabs(0.6745 * (x - med[g]) / mad[g]) > 3.5;
            } else {
                double iqr = q3[g] - q1[g];
                v = x > q3[g] + 1.5 * iqr || x < q1[g] - 1.5 * iqr;
            }
            an += v;
            gan[g] += v;
        }
        char *got = report_text(ops, s);
        char want[512];
        snprintf(want, sizeof want,
                 "{\"records\":%d,\"anomalies\":%llu,\"rate\":%.17g,\"unscored\":%llu,\"groups\":{",
                 N, (unsigned long long)an, (double)an / N, (unsigned long long)un);
        assert_memory_equal(got, want, strlen(want));
        for (int g = 0; g < 3; g++) {
            snprintf(want, sizeof want, "\"%s\":{\"records\":", svc[g]);
            char *at = strstr(got, want);
            assert_non_null(at);
            unsigned long long r, a;
            assert_int_equal(sscanf(at + strlen(want), "%llu,\"anomalies\":%llu", &r, &a), 2);
            assert_int_equal(a, gan[g]);
        }
        assert_true(an > 10);
        free(got);
        free_state(ops, s);
        free_cfg(&t);
    }
    free_state(bops, base);
    free(rows);
}

/* ---- ewma --------------------------------------------------------------------------- */

/* The EWMA recursion against its closed form: the forecast after the valid
 * means m_0..m_{p-1} is (1-a)^(p-1) m_0 + sum_{i>=1} a (1-a)^(p-1-i) m_i,
 * and the variance is rebuilt from the residuals of each earlier step. */
static void test_ewma_closed_form(void **st)
{
    (void)st;
    rng_state = 5;
    enum { N = 200 };
    double mean[N], res[N], spread[N], valid[N];
    static const double alphas[] = {0.05, 0.3, 0.9, 1.0};
    static const int64_t warmups[] = {1, 3, 10};
    for (size_t ai = 0; ai < 4; ai++)
        for (size_t wi = 0; wi < 3; wi++) {
            double a = alphas[ai];
            for (int i = 0; i < N; i++) mean[i] = rnd() % 9 == 0 ? NAN : 10 + gauss() + (i > 150 ? 5 : 0);
            sf__detect_ewma(N, mean, a, warmups[wi], res, spread);
            int p = 0;
            for (int i = 0; i < N; i++) {
                if (isnan(mean[i])) {
                    assert_true(isnan(res[i]) && isnan(spread[i]));
                    continue;
                }
                if (p < warmups[wi] || p == 0) {
                    assert_true(isnan(res[i]) && isnan(spread[i]));
                    valid[p++] = mean[i];
                    continue;
                }
                /* Forecasts f_1..f_p in closed form, the residuals and the
                 * variance recursion v_j = (1-a)(v_{j-1} + a e_j^2). */
                long double v = 0;
                for (int j = 1; j <= p; j++) {
                    long double f = powl(1 - a, j - 1) * valid[0];
                    for (int q = 1; q < j; q++) f += a * powl(1 - a, j - 1 - q) * valid[q];
                    long double e = (j < p ? valid[j] : mean[i]) - f;
                    if (j == p) {
                        assert_close(res[i], (double)e, 1e-9);
                        assert_close(spread[i], (double)sqrtl(v), 1e-9);
                    }
                    v = (1 - a) * (v + a * e * e);
                }
                valid[p++] = mean[i];
            }
        }
}

/* ---- laws of the detector state -------------------------------------------------- */

static void law_rows(row **rows, size_t *n)
{
    *n = 3000;
    *rows = random_rows(*n, 99);
    /* Groups the fake baseline does not know, and the null key. */
    for (size_t i = 0; i < *n; i += 37) (*rows)[i].service = i % 2 ? "zzz" : NULL;
}

static void check_laws(const sf_agent_ops *ops, const sf_agent_config *cfg, const row *rows, size_t n)
{
    /* One state over everything. */
    void *whole = new_state(ops, cfg);
    feed(ops, whole, rows, n, 256);
    /* merge(init, x) == x and merge(x, init) == x. */
    void *e = new_state(ops, cfg);
    assert_int_equal(ops->merge(e, whole), SF_OK);
    assert_same_state(ops, e, whole);
    void *e2 = new_state(ops, cfg);
    void *w2 = new_state(ops, cfg);
    assert_int_equal(ops->merge(w2, whole), SF_OK);
    assert_int_equal(ops->merge(w2, e2), SF_OK);
    assert_same_state(ops, w2, whole);
    free_state(ops, e);
    free_state(ops, e2);
    free_state(ops, w2);

    /* Split into K parts at random cuts, merged in a shuffled order. */
    enum { K = 5 };
    size_t cut[K + 1];
    cut[0] = 0;
    cut[K] = n;
    for (int k = 1; k < K; k++) cut[k] = (size_t)(rnd() % n);
    for (int a = 1; a < K; a++)
        for (int b = a + 1; b < K; b++)
            if (cut[b] < cut[a]) {
                size_t x = cut[a];
                cut[a] = cut[b];
                cut[b] = x;
            }
    void *part[K];
    for (int k = 0; k < K; k++) {
        part[k] = new_state(ops, cfg);
        if (cut[k + 1] > cut[k]) feed(ops, part[k], rows + cut[k], cut[k + 1] - cut[k], 97);
    }
    int order[K] = {3, 0, 4, 1, 2};
    void *acc = new_state(ops, cfg);
    for (int k = 0; k < K; k++) assert_int_equal(ops->merge(acc, part[order[k]]), SF_OK);
    assert_same_state(ops, acc, whole);
    /* Associativity and commutativity: ((p0 + p1) + p2) vs (p2 + (p1 + p0)). */
    void *l = new_state(ops, cfg), *r = new_state(ops, cfg), *t = new_state(ops, cfg);
    assert_int_equal(ops->merge(l, part[0]), SF_OK);
    assert_int_equal(ops->merge(l, part[1]), SF_OK);
    assert_int_equal(ops->merge(l, part[2]), SF_OK);
    assert_int_equal(ops->merge(t, part[1]), SF_OK);
    assert_int_equal(ops->merge(t, part[0]), SF_OK);
    assert_int_equal(ops->merge(r, part[2]), SF_OK);
    assert_int_equal(ops->merge(r, t), SF_OK);
    assert_same_state(ops, l, r);
    char *tl = report_text(ops, l), *tr = report_text(ops, r);
    assert_string_equal(tl, tr);
    free(tl);
    free(tr);
    free_state(ops, l);
    free_state(ops, r);
    free_state(ops, t);

    /* Round trip and strict decoding. */
    sf_buf enc = encoded(ops, whole);
    void *d = new_state(ops, cfg);
    assert_int_equal(ops->decode(d, enc.data, enc.len), SF_OK);
    assert_same_state(ops, d, whole);
    char *a = report_text(ops, d), *b = report_text(ops, whole);
    assert_string_equal(a, b);
    free(a);
    free(b);
    for (size_t len = 0; len < enc.len; len++)
        assert_int_equal(ops->decode(d, enc.data, len), SF_ERR_PARSE);
    uint8_t *longer = malloc(enc.len + 1);
    assert_non_null(longer);
    memcpy(longer, enc.data, enc.len);
    longer[enc.len] = 0;
    assert_int_equal(ops->decode(d, longer, enc.len + 1), SF_ERR_PARSE);
    /* A wrong version byte, and every single-byte corruption of the counts
     * section is either rejected or decodes to a different state. */
    longer[0] ^= 0xFF;
    assert_int_equal(ops->decode(d, longer, enc.len), SF_ERR_PARSE);
    longer[0] ^= 0xFF;
    for (size_t at = 1; at < enc.len && at < 96; at++) {
        longer[at] ^= 0x40;
        sf_status rc = ops->decode(d, longer, enc.len);
        if (rc == SF_OK) {
            sf_buf again = encoded(ops, d);
            assert_true(again.len != enc.len || memcmp(again.data, enc.data, enc.len) != 0);
            sf_buf_fini(&again);
        } else {
            assert_int_equal(rc, SF_ERR_PARSE);
        }
        longer[at] ^= 0x40;
    }
    free(longer);
    free_state(ops, d);
    sf_buf_fini(&enc);

    for (int k = 0; k < K; k++) free_state(ops, part[k]);
    free_state(ops, acc);
    free_state(ops, whole);
}

static void test_detector_laws(void **st)
{
    (void)st;
    row *rows;
    size_t n;
    law_rows(&rows, &n);
    /* Baseline statistics close to the data, so that there are anomalies. */
    static const fake_group g[] = {
        {"api", 100, 10, 100, 7, 93, 107},
        {"web", 50, 2, 50, 1.4, 48.6, 51.4},
        {"db", 25, 30, 20, 8, 12, 33},
    };
    fake_base fb = {3, g, 0};
    static const char *const yaml[] = {
        "agent: zscore\ntruth: truth\n",
        "agent: mad\ndirection: up\n",
        "agent: iqr\nthreshold: 1\ntruth: truth\ntruth_ids: [1, 5]\n",
    };
    const sf_agent_ops *ops[] = {&sf__agent_zscore, &sf__agent_mad, &sf__agent_iqr};
    for (int kind = 0; kind < 3; kind++)
        for (int grouped = 1; grouped >= 0; grouped--) {
            sf_agent_config bc = base_cfg(kind == 0 ? "stats" : "quantiles", "b", grouped, "v");
            fake_group whole = g[0];
            whole.service = NULL;
            fake_base fw = {1, &whole, 0};
            sf_agent_prior prior = {"profile.b", kind == 0 ? &fake_stats_ops : &fake_quantiles_ops, &bc,
                                    grouped ? &fb : &fw};
            tcfg t;
            make_cfg(&t, ops[kind]->name, "d", yaml[kind], grouped, &prior, 1);
            assert_int_equal(ops[kind]->check(&t.c), SF_OK);
            check_laws(ops[kind], &t.c, rows, n);
            free_cfg(&t);
        }
    free(rows);
}

/* A where: selection scores exactly the selected rows: the same as a
 * batch holding only them. */
static void test_selection(void **st)
{
    (void)st;
    row rows[64];
    size_t n = fake_rows(rows, 64);
    fake_base fb = {4, fake_groups, 0};
    sf_agent_config bc = base_cfg("stats", "b", 1, "v");
    sf_agent_prior prior = {"profile.b", &fake_stats_ops, &bc, &fb};
    tcfg t;
    make_cfg(&t, "zscore", "z", "agent: zscore\ntruth: truth\n", 1, &prior, 1);
    void *a = new_state(&sf__agent_zscore, &t.c), *b2 = new_state(&sf__agent_zscore, &t.c);
    uint32_t sel[64];
    row picked[64] = {{0}};
    size_t m = 0;
    for (size_t i = 0; i < n; i += 2) {
        sel[m] = (uint32_t)i;
        picked[m++] = rows[i];
    }
    sf_batch b;
    fill_batch(&b, rows, n);
    sf_rows r = {0, m, sel, SF_ROWS_NO_SHARD};
    assert_int_equal(sf__agent_zscore.process(a, &b, &r), SF_OK);
    sf_batch_fini(&b);
    feed(&sf__agent_zscore, b2, picked, m, 3);
    assert_same_state(&sf__agent_zscore, a, b2);
    free_state(&sf__agent_zscore, a);
    free_state(&sf__agent_zscore, b2);
    free_cfg(&t);
}

static void check_fails(const sf_agent_ops *ops, const sf_agent_config *cfg, const char *msg);

/* ---- ewma on a real window baseline ------------------------------------------------ */

/* Rows of two services over 40 one-minute buckets with a level shift in
 * service api at bucket 30, a gap (buckets 12-13 empty) and null times. */
static row *ewma_rows(size_t *n)
{
    rng_state = 77;
    row *rows = calloc(4000, sizeof *rows);
    assert_non_null(rows);
    size_t k = 0;
    for (int bkt = 0; bkt < 40; bkt++) {
        if (bkt == 12 || bkt == 13) continue;
        for (int s = 0; s < 2; s++)
            for (int i = 0; i < 20; i++) {
                double x = (s == 0 ? 100 : 20) + gauss() * (s == 0 ? 3 : 1);
                if (s == 0 && bkt >= 30 && bkt < 33) x += 40;
                rows[k++] = (row){.v = x, .service = s ? "web" : "api",
                                  .ts = (int64_t)bkt * 60000000 + (int64_t)(rnd() % 60000000) -
                                        1200000000, /* negative times too */
                                  .truth = s == 0 && bkt >= 30 && bkt < 33};
            }
    }
    rows[k++] = (row){.v = 1, .service = "api", .ts_null = true};
    *n = k;
    return rows;
}

static void test_ewma_real_window(void **st)
{
    (void)st;
    const sf_agent_ops *wops = &sf__agent_window;
    assert_true(sf__window_is(wops));
    assert_false(sf__window_is(&fake_stats_ops));
    size_t n;
    row *rows = ewma_rows(&n);
    sf_cfg_node *wnode = NULL;
    const char *wy = "agent: window\ncolumn: v\nbucket: 1m\n";
    assert_int_equal(sf__cfg_parse("test.yaml", wy, strlen(wy), &wnode), SF_OK);
    sf_agent_config wc = base_cfg("window", "w", 1, "v");
    wc.node = wnode;
    assert_int_equal(wops->check(&wc), SF_OK);
    void *base = new_state(wops, &wc);
    feed(wops, base, rows, n, 300);
    sf_agent_prior prior = {"profile.w", wops, &wc, base};
    tcfg t;
    make_cfg(&t, "ewma", "e", "agent: ewma\nk: 4\nthreshold: 4\nalpha: 0.3\ntruth: truth\n", 1, &prior, 1);
    /* k and threshold name the same option of ewma: one of them. */
    check_fails(&sf__agent_ewma, &t.c,
                "test.yaml:2: agent 'e': options 'k' and 'threshold' are the same for ewma: give one");
    free_cfg(&t);
    make_cfg(&t, "ewma", "e", "agent: ewma\nk: 4\nalpha: 0.3\ntruth: truth\n", 1, &prior, 1);
    assert_int_equal(sf__agent_ewma.check(&t.c), SF_OK);
    const char *names[4];
    int nn;
    assert_int_equal(sf__agent_ewma.columns(&t.c, names, 4, &nn), SF_OK);
    assert_int_equal(nn, 2);
    assert_string_equal(names[0], "timestamp");
    assert_string_equal(names[1], "truth");
    void *s = new_state(&sf__agent_ewma, &t.c);
    feed(&sf__agent_ewma, s, rows, n, 128);

    /* Reference: per service, bucket means in time order from the rows, the
     * EWMA of each, and every record scored by its bucket. */
    uint64_t an = 0, un = 0, tp = 0;
    static const char *const svc[] = {"api", "web"};
    for (int g = 0; g < 2; g++) {
        double mean[40];
        for (int bkt = 0; bkt < 40; bkt++) {
            long double sum = 0;
            int c = 0;
            for (size_t i = 0; i < n; i++) {
                if (rows[i].ts_null || strcmp(rows[i].service, svc[g]) != 0) continue;
                int64_t bi = (rows[i].ts + 1200000000) / 60000000; /* shifted: non-negative */
                if (bi == bkt) {
                    sum += rows[i].v;
                    c++;
                }
            }
            mean[bkt] = c ? (double)(sum / c) : NAN;
        }
        double res[40], spread[40];
        sf__detect_ewma(40, mean, 0.3, 3, res, spread);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(rows[i].service, svc[g]) != 0) continue;
            if (rows[i].ts_null) {
                un++;
                continue;
            }
            int64_t bi = (rows[i].ts + 1200000000) / 60000000;
            if (isnan(spread[bi])) {
                un++;
                continue;
            }
            bool v = res[bi] > 4 * spread[bi];
            an += v;
            tp += v && rows[i].truth;
        }
    }
    char *got = report_text(&sf__agent_ewma, s);
    char want[256];
    snprintf(want, sizeof want, "{\"records\":%zu,\"anomalies\":%llu,\"rate\":%.17g,\"unscored\":%llu,",
             n, (unsigned long long)an, (double)an / (double)n, (unsigned long long)un);
    assert_memory_equal(got, want, strlen(want));
    snprintf(want, sizeof want, "\"confusion\":{\"tp\":%llu,", (unsigned long long)tp);
    assert_non_null(strstr(got, want));
    /* The level shift is found. */
    assert_true(tp >= 20);
    free(got);
    check_laws(&sf__agent_ewma, &t.c, rows, n);

    /* A time column other than the window's is refused. */
    free_cfg(&t);
    make_cfg(&t, "ewma", "e", "agent: ewma\ntime: ts2\n", 1, &prior, 1);
    check_fails(&sf__agent_ewma, &t.c,
                "test.yaml:2: agent 'e': option 'time': 'profile.w' buckets by time column 'timestamp' "
                "but ewma reads 'ts2'");
    free_cfg(&t);
    make_cfg(&t, "ewma", "e", "agent: ewma\ntime: v\n", 1, &prior, 1);
    check_fails(&sf__agent_ewma, &t.c,
                "test.yaml:2: agent 'e': option 'time': column 'v' is float64, expected timestamp");
    free_cfg(&t);
    make_cfg(&t, "ewma", "e", "agent: ewma\nwarmup: 0\n", 1, &prior, 1);
    check_fails(&sf__agent_ewma, &t.c, "test.yaml:2: agent 'e': option 'warmup': 0 is outside");

    free_state(&sf__agent_ewma, s);
    free_state(wops, base);
    free_cfg(&t);
    sf__cfg_node_free(wnode);
    free(rows);
}

/* ---- configuration errors --------------------------------------------------------- */

/* check() fails with SF_ERR_CONFIG and a message containing msg. */
static void check_fails(const sf_agent_ops *ops, const sf_agent_config *cfg, const char *msg)
{
    assert_int_equal(ops->check(cfg), SF_ERR_CONFIG);
    if (strstr(sf_error_message(), msg) == NULL) {
        print_error("message: %s\nexpected: %s\n", sf_error_message(), msg);
        fail();
    }
}

static void test_config_errors(void **st)
{
    (void)st;
    fake_base fb = {4, fake_groups, 0};
    sf_agent_config sc = base_cfg("stats", "lat", 1, "v");
    sf_agent_config qc = base_cfg("quantiles", "q", 1, "v");
    sf_agent_prior sp = {"profile.lat", &fake_stats_ops, &sc, NULL};
    sf_agent_prior qp = {"profile.q", &fake_quantiles_ops, &qc, NULL};
    tcfg t;

    /* A correct configuration passes; check() runs without baseline state. */
    make_cfg(&t, "zscore", "z", "agent: zscore\nbaseline: profile.lat\n", 1, &sp, 1);
    assert_int_equal(sf__agent_zscore.check(&t.c), SF_OK);
    free_cfg(&t);

    /* Wrong kind of baseline. */
    make_cfg(&t, "zscore", "z", "agent: zscore\nbaseline: profile.q\n", 1, &qp, 1);
    check_fails(&sf__agent_zscore, &t.c,
                 "test.yaml:2: agent 'z': option 'baseline': 'profile.q' is a quantiles agent; zscore "
                 "needs a stats agent");
    free_cfg(&t);
    make_cfg(&t, "mad", "m", "agent: mad\nbaseline: profile.lat\n", 1, &sp, 1);
    check_fails(&sf__agent_mad, &t.c, "'profile.lat' is a stats agent; mad needs a quantiles agent");
    free_cfg(&t);
    make_cfg(&t, "ewma", "e", "agent: ewma\nbaseline: profile.lat\n", 1, &sp, 1);
    check_fails(&sf__agent_ewma, &t.c, "'profile.lat' is a stats agent; ewma needs a window agent");
    free_cfg(&t);

    /* by: mismatch: grouped detector, ungrouped baseline, and other columns. */
    sf_agent_config sc0 = base_cfg("stats", "lat", 0, "v");
    sf_agent_prior sp0 = {"profile.lat", &fake_stats_ops, &sc0, &fb};
    make_cfg(&t, "zscore", "z", "agent: zscore\nby: service\nbaseline: profile.lat\n", 1, &sp0, 1);
    check_fails(&sf__agent_zscore, &t.c,
                 "test.yaml:3: agent 'z': option 'baseline': 'profile.lat' is grouped by [] but zscore "
                 "is grouped by [service]");
    free_cfg(&t);
    sf_agent_config scr = base_cfg("stats", "lat", 1, "v");
    scr.by = by_region;
    scr.by_col = by_region_col;
    sf_agent_prior spr = {"profile.lat", &fake_stats_ops, &scr, NULL};
    make_cfg(&t, "zscore", "z", "agent: zscore\n", 1, &spr, 1);
    check_fails(&sf__agent_zscore, &t.c, "grouped by [region] but zscore is grouped by [service]");
    free_cfg(&t);

    /* Column mismatch. */
    sf_agent_config sct = base_cfg("stats", "lat", 1, "timestamp");
    sf_agent_prior spt = {"profile.lat", &fake_stats_ops, &sct, NULL};
    make_cfg(&t, "zscore", "z", "agent: zscore\n", 1, &spt, 1);
    check_fails(&sf__agent_zscore, &t.c,
                 "'profile.lat' reads column 'timestamp' but zscore scores column 'v'");
    free_cfg(&t);

    /* No baseline, or two. */
    make_cfg(&t, "zscore", "z", "agent: zscore\n", 1, NULL, 0);
    check_fails(&sf__agent_zscore, &t.c,
                 "test.yaml:1: agent 'z': zscore needs one baseline: STAGE.AGENT_ID (a stats agent");
    free_cfg(&t);
    sf_agent_prior two[2] = {sp, sp};
    make_cfg(&t, "zscore", "z", "agent: zscore\n", 1, two, 2);
    check_fails(&sf__agent_zscore, &t.c, "found 2");
    free_cfg(&t);

    /* Options. */
    make_cfg(&t, "zscore", "z", "agent: zscore\nthreshold: -1\n", 1, &sp, 1);
    check_fails(&sf__agent_zscore, &t.c, "test.yaml:2: agent 'z': option 'threshold': -1 is outside");
    free_cfg(&t);
    make_cfg(&t, "iqr", "i", "agent: iqr\ndirection: sideways\n", 1, &qp, 1);
    check_fails(&sf__agent_iqr, &t.c,
                 "test.yaml:2: agent 'i': option 'direction': 'sideways' is not one of up, down, both");
    free_cfg(&t);
    make_cfg(&t, "mad", "m", "agent: mad\nalpha: 0.5\n", 1, &qp, 1);
    check_fails(&sf__agent_mad, &t.c, "test.yaml:2: agent 'm': unknown option 'alpha'");
    free_cfg(&t);
    make_cfg(&t, "mad", "m", "agent: mad\nk: 2\n", 1, &qp, 1);
    check_fails(&sf__agent_mad, &t.c, "test.yaml:2: agent 'm': unknown option 'k'");
    free_cfg(&t);
    make_cfg(&t, "iqr", "i", "agent: iqr\nk: -2\n", 1, &qp, 1);
    check_fails(&sf__agent_iqr, &t.c, "test.yaml:2: agent 'i': option 'k': -2 is outside");
    free_cfg(&t);
    make_cfg(&t, "zscore", "z", "agent: zscore\ntruth: label\n", 1, &sp, 1);
    check_fails(&sf__agent_zscore, &t.c,
                 "test.yaml:2: agent 'z': option 'truth': column 'label' is string, expected int64");
    free_cfg(&t);
    make_cfg(&t, "zscore", "z", "agent: zscore\ntruth: nope\n", 1, &sp, 1);
    check_fails(&sf__agent_zscore, &t.c, "option 'truth': no column 'nope'");
    free_cfg(&t);
    make_cfg(&t, "zscore", "z", "agent: zscore\n\ntruth_ids: [1]\n", 1, &sp, 1);
    check_fails(&sf__agent_zscore, &t.c,
                 "test.yaml:3: agent 'z': option 'truth_ids' needs truth: (the ground-truth column)");
    free_cfg(&t);
    make_cfg(&t, "zscore", "z", "agent: zscore\ntruth: truth\ntruth_ids: [1, x2]\n", 1, &sp, 1);
    check_fails(&sf__agent_zscore, &t.c,
                 "test.yaml:3: agent 'z': option 'truth_ids': item 1: expected an integer id, found 'x2'");
    free_cfg(&t);

    /* The scored column must be numeric. */
    sf_agent_config scl = base_cfg("stats", "lat", 1, "label");
    sf_agent_prior spl = {"profile.lat", &fake_stats_ops, &scl, NULL};
    make_cfg(&t, "zscore", "z", "agent: zscore\n", 1, &spl, 1);
    t.c.column = "label";
    t.c.col = COL_LABEL;
    check_fails(&sf__agent_zscore, &t.c, "test.yaml:1: agent 'z': zscore needs a numeric column, 'label' is string");
    t.c.column = NULL;
    t.c.col = -1;
    check_fails(&sf__agent_zscore, &t.c, "zscore needs a column (column: NAME)");
    free_cfg(&t);

    /* columns() names the truth column. */
    make_cfg(&t, "zscore", "z", "agent: zscore\ntruth: truth\n", 1, &sp, 1);
    const char *names[4];
    int nn;
    assert_int_equal(sf__agent_zscore.columns(&t.c, names, 4, &nn), SF_OK);
    assert_int_equal(nn, 1);
    assert_string_equal(names[0], "truth");
    free_cfg(&t);
}

/* A hand-made state: by-hand report, including an empty one. */
static void test_report_by_hand(void **st)
{
    (void)st;
    static const fake_group g[] = {{"api", 10, 2, 10, 1, 9, 11}};
    fake_base fb = {1, g, 0};
    sf_agent_config bc = base_cfg("stats", "b", 1, "v");
    sf_agent_prior prior = {"profile.b", &fake_stats_ops, &bc, &fb};
    tcfg t;
    make_cfg(&t, "zscore", "z", "agent: zscore\nthreshold: 2\ndirection: up\ntruth: truth\n", 1, &prior, 1);
    void *s = new_state(&sf__agent_zscore, &t.c);
    char *got = report_text(&sf__agent_zscore, s);
    assert_string_equal(got, "{\"records\":0,\"anomalies\":0,\"rate\":0,\"unscored\":0,\"groups\":{},"
                             "\"confusion\":{\"tp\":0,\"fp\":0,\"fn\":0,\"tn\":0},"
                             "\"precision\":0,\"recall\":0,\"f1\":0}");
    free(got);
    /* z = 0, 2.5 (yes), -3 (no: up only), 5 (yes), null value, unknown group. */
    row rows[] = {{.v = 10, .service = "api", .truth = 0}, {.v = 15, .service = "api", .truth = 1},
                  {.v = 4, .service = "api", .truth = 1},  {.v = 20, .service = "api", .truth = 0},
                  {.v_null = true, .service = "api"},       {.v = 99, .service = "x", .truth = 1}};
    feed(&sf__agent_zscore, s, rows, 6, 4);
    /* tp 1, fp 1, fn 2, tn 2: precision 1/2, recall 1/3, F1 2/(2+1+2) = 0.4. */
    got = report_text(&sf__agent_zscore, s);
    assert_string_equal(got, "{\"records\":6,\"anomalies\":2,\"rate\":0.33333333333333331,\"unscored\":2,"
                             "\"groups\":{\"api\":{\"records\":5,\"anomalies\":2},"
                             "\"x\":{\"records\":1,\"anomalies\":0}},"
                             "\"confusion\":{\"tp\":1,\"fp\":1,\"fn\":2,\"tn\":2},"
                             "\"precision\":0.5,\"recall\":0.33333333333333331,\"f1\":0.40000000000000002}");
    free(got);
    double rowsseen;
    assert_int_equal(sf__agent_zscore.stat(s, NULL, 0, "rows", &rowsseen), SF_OK);
    assert_true(rowsseen == 6);
    free_state(&sf__agent_zscore, s);
    free_cfg(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scores_vs_direct),
        cmocka_unit_test(test_agent_report_vs_direct),
        cmocka_unit_test(test_report_by_hand),
        cmocka_unit_test(test_zscore_real_stats),
        cmocka_unit_test(test_mad_iqr_real_quantiles),
        cmocka_unit_test(test_ewma_closed_form),
        cmocka_unit_test(test_detector_laws),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_ewma_real_window),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
