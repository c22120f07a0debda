/* Unit tests of the voting rules (shardflow/vote.h, synth/vote.c) and of
 * the vote agent (agents/vote_agent.c). The rules are checked on every vote
 * pattern of up to five detectors against formulas written out here, with
 * dyadic confidences and integer weights so that every sum is exact and
 * ties really are ties. The agent is checked against per-record votes
 * computed from the detectors' formulas and combined by those reference
 * rules, with the confusion counts, precision, recall and F1 recomputed. */
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
#include "shardflow/vote.h"
#include "shardflow/xsum.h"

#include "agents/detect.h"
#include "flow/yaml_tree.h"

#include "agent_testkit.h"

/* ---- the rules ---------------------------------------------------------------- */

typedef struct ref_out {
    bool decision;
    double confidence;
} ref_out;

/* The rules as vote.h states them, over a bit mask of yes votes. */
static ref_out ref_combine(sf_vote_rule rule, int k, int n, unsigned mask, const double *c,
                           const double *w)
{
    int yes = __builtin_popcount(mask);
    double cy = 0, cn = 0, wcy = 0, wcn = 0;
    for (int i = n - 1; i >= 0; i--) { /* reverse order: the sums are exact anyway */
        if (mask >> i & 1) {
            cy += c[i];
            wcy += w[i] * c[i];
        } else {
            cn += c[i];
            wcn += w[i] * c[i];
        }
    }
    bool d;
    if (n == 0)
        d = false;
    else if (rule == SF_VOTE_MAJORITY)
        d = yes > n - yes; /* strictly more than half */
    else if (rule == SF_VOTE_PLURALITY)
        d = yes > n - yes || (yes == n - yes && cy > cn);
    else if (rule == SF_VOTE_WEIGHTED)
        d = wcy > wcn;
    else if (rule == SF_VOTE_QUORUM)
        d = yes >= k;
    else
        d = yes == n;
    double num = 0, den = 0;
    for (int i = 0; i < n; i++)
        if ((bool)(mask >> i & 1) == d) {
            num += w[i] * c[i];
            den += w[i];
        }
    return (ref_out){d, den > 0 ? num / den : 0};
}

static void test_rules_exhaustive(void **st)
{
    (void)st;
    rng_state = 3;
    int ties = 0, seen_yes[SF_VOTE_NRULES] = {0}, seen_no[SF_VOTE_NRULES] = {0};
    for (int n = 0; n <= 5; n++) {
        for (int trial = 0; trial < 40; trial++) {
            double c[5], w[5];
            for (int i = 0; i < n; i++) {
                /* Dyadic confidences in [0.5, 1] and small integer weights
                 * (zero included); every fourth trial all equal, so that
                 * ties of counts are also ties of confidence. */
                c[i] = trial % 4 == 0 ? 0.75 : 0.5 + (double)(rnd() % 9) / 16.0;
                w[i] = trial % 4 == 0 ? 1.0 : (double)(rnd() % 4);
            }
            for (unsigned mask = 0; mask < (1u << n); mask++) {
                uint8_t votes[5];
                for (int i = 0; i < n; i++) votes[i] = (uint8_t)(mask >> i & 1 ? 1 + i : 0);
                for (int rule = 0; rule < SF_VOTE_NRULES; rule++) {
                    for (int k = 0; k <= (rule == SF_VOTE_QUORUM ? n + 1 : 0); k++) {
                        ref_out want = ref_combine((sf_vote_rule)rule, k, n, mask, c, w);
                        double conf = -1;
                        bool got = sf_vote_combine((sf_vote_rule)rule, k, n, votes, c, w, &conf);
                        assert_int_equal(got, want.decision);
                        assert_true(conf == want.confidence);
                        assert_int_equal(sf_vote_combine((sf_vote_rule)rule, k, n, votes, c, w, NULL),
                                         want.decision);
                        (want.decision ? seen_yes : seen_no)[rule]++;
                        if (rule == SF_VOTE_PLURALITY && n > 0 && 2 * __builtin_popcount(mask) == n)
                            ties++;
                    }
                }
            }
        }
    }
    assert_true(ties > 100);
    for (int r = 0; r < SF_VOTE_NRULES; r++) assert_true(seen_yes[r] > 0 && seen_no[r] > 0);
}

/* NULL confidences and weights mean 1; hand-checked cases of each rule. */
static void test_rules_by_hand(void **st)
{
    (void)st;
    const uint8_t v110[] = {1, 1, 0}, v10[] = {1, 0}, v1100[] = {1, 1, 0, 0};
    double conf;
    assert_true(sf_vote_combine(SF_VOTE_MAJORITY, 0, 3, v110, NULL, NULL, &conf));
    assert_true(conf == 1.0);
    assert_false(sf_vote_combine(SF_VOTE_MAJORITY, 0, 4, v1100, NULL, NULL, NULL)); /* 2 of 4 */
    assert_false(sf_vote_combine(SF_VOTE_UNANIMITY, 0, 3, v110, NULL, NULL, NULL));
    assert_true(sf_vote_combine(SF_VOTE_QUORUM, 2, 3, v110, NULL, NULL, NULL));
    assert_false(sf_vote_combine(SF_VOTE_QUORUM, 3, 3, v110, NULL, NULL, NULL));
    /* A 1-1 tie: plurality follows the summed confidence, else "no". */
    const double c_yes[] = {0.9, 0.6}, c_eq[] = {0.7, 0.7};
    assert_true(sf_vote_combine(SF_VOTE_PLURALITY, 0, 2, v10, c_yes, NULL, &conf));
    assert_true(conf == 0.9);
    assert_false(sf_vote_combine(SF_VOTE_PLURALITY, 0, 2, v10, c_eq, NULL, &conf));
    assert_true(conf == 0.7);
    /* Weighted: 1 * 0.9 vs 2 * 0.6 -> no, with confidence 0.6. */
    const double w12[] = {1, 2};
    assert_false(sf_vote_combine(SF_VOTE_WEIGHTED, 0, 2, v10, c_yes, w12, &conf));
    assert_true(conf == 0.6);
    /* An exact tie of weighted confidence is "no". */
    const double c_tie[] = {0.5, 1.0}, w21[] = {2, 1};
    assert_false(sf_vote_combine(SF_VOTE_WEIGHTED, 0, 2, v10, c_tie, w21, NULL));
    /* No voters: every rule says no, with confidence 0. */
    for (int r = 0; r < SF_VOTE_NRULES; r++) {
        conf = -1;
        assert_false(sf_vote_combine((sf_vote_rule)r, 0, 0, v10, NULL, NULL, &conf));
        assert_true(conf == 0.0);
    }
    /* Zero weights on the winning side: confidence 0. */
    const double w00[] = {0, 0};
    assert_false(sf_vote_combine(SF_VOTE_QUORUM, 2, 2, v10, c_yes, w00, &conf));
    assert_true(conf == 0.0);
}

static void test_rule_names(void **st)
{
    (void)st;
    const char *names[] = {"majority", "plurality", "weighted", "quorum", "unanimity"};
    for (int r = 0; r < SF_VOTE_NRULES; r++) {
        sf_vote_rule got = SF_VOTE_NRULES;
        assert_string_equal(sf_vote_rule_name((sf_vote_rule)r), names[r]);
        assert_true(sf_vote_rule_parse(names[r], &got));
        assert_int_equal(got, r);
    }
    sf_vote_rule keep = SF_VOTE_WEIGHTED;
    assert_false(sf_vote_rule_parse("Majority", &keep));
    assert_false(sf_vote_rule_parse("", &keep));
    assert_false(sf_vote_rule_parse(NULL, &keep));
    assert_int_equal(keep, SF_VOTE_WEIGHTED);
    assert_string_equal(sf_vote_rule_name((sf_vote_rule)99), "?");
}

/* ---- the agent ------------------------------------------------------------------ */

enum { COL_V, COL_SERVICE, COL_TS, COL_TRUTH, NCOLS };

static sf_schema schema;

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "service", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "timestamp", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "truth", SF_INT64) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

typedef struct row {
    double v;
    const char *service;
    int64_t truth;
    bool v_null;
} row;

static void fill_batch(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        b->cols[COL_V].f64[r] = rows[r].v;
        b->cols[COL_TS].i64[r] = (int64_t)r;
        b->cols[COL_TRUTH].i64[r] = rows[r].truth;
        if (rows[r].service) {
            uint32_t code;
            assert_int_equal(sf_dict_intern(&b->cols[COL_SERVICE].dict, rows[r].service,
                                            strlen(rows[r].service), &code),
                             SF_OK);
            b->cols[COL_SERVICE].code[r] = code;
        } else {
            assert_int_equal(sf_batch_set_null(b, COL_SERVICE, r), SF_OK);
        }
        if (rows[r].v_null) assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
    }
    b->nrows = n;
}

/* Baselines with statistics set by hand, per service. */
typedef struct fake_group {
    const char *service;
    double mean, sd, median, mad, q1, q3;
} fake_group;

static const fake_group groups[] = {
    {"api", 100, 10, 101, 6, 94, 108},
    {"web", 50, 2, 50, 1.5, 49, 51.5},
    {"db", 20, 8, 18, 0, 18, 18}, /* zero MAD and IQR: unscored by mad and iqr */
};
#define NGROUPS 3

static size_t key_of(const char *s, uint8_t *out)
{
    size_t n = strlen(s);
    out[0] = 1;
    for (int i = 0; i < 4; i++) out[1 + i] = (uint8_t)(n >> (8 * i));
    memcpy(out + 5, s, n);
    return 5 + n;
}

static const fake_group *find_group(const char *service)
{
    for (int i = 0; service != NULL && i < NGROUPS; i++)
        if (strcmp(groups[i].service, service) == 0) return &groups[i];
    return NULL;
}

static sf_status fake_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                           double *out)
{
    (void)state;
    for (int i = 0; i < NGROUPS; i++) {
        uint8_t k[64];
        size_t len = key_of(groups[i].service, k);
        if (key == NULL || len != keylen || memcmp(k, key, len) != 0) continue;
        const fake_group *g = &groups[i];
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

static const sf_agent_ops fake_stats = {.abi_version = SF_AGENT_ABI_VERSION, .name = "stats",
                                        .stat = fake_stat};
static const sf_agent_ops fake_quantiles = {.abi_version = SF_AGENT_ABI_VERSION,
                                            .name = "quantiles", .stat = fake_stat};

static const char *const by_service[] = {"service"};
static const int by_service_col[] = {COL_SERVICE};
static int dummy_state;

typedef struct env {
    sf_agent_config stats_cfg, q_cfg, flat_cfg;
    sf_agent_prior prior[3]; /* profile.lat, profile.q, profile.flat (ungrouped stats) */
    sf_agent_config cfg;
    sf_cfg_node *node;
} env;

static sf_agent_config base(const char *agent, const char *id, int nby)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = agent;
    c.id = id;
    c.column = "v";
    c.col = COL_V;
    c.nby = nby;
    c.by = nby ? by_service : NULL;
    c.by_col = nby ? by_service_col : NULL;
    c.schema = &schema;
    c.file = "test.yaml";
    c.line = 1;
    return c;
}

/* The vote agent's configuration from YAML (line 1: agent: vote); the
 * baselines are profile.lat, profile.q and profile.flat, of which the
 * first nprior are listed. */
static void make_env(env *e, const char *yaml, int nprior)
{
    memset(e, 0, sizeof *e);
    e->stats_cfg = base("stats", "lat", 1);
    e->q_cfg = base("quantiles", "q", 1);
    e->flat_cfg = base("stats", "flat", 0);
    e->prior[0] = (sf_agent_prior){"profile.lat", &fake_stats, &e->stats_cfg, &dummy_state};
    e->prior[1] = (sf_agent_prior){"profile.q", &fake_quantiles, &e->q_cfg, &dummy_state};
    e->prior[2] = (sf_agent_prior){"profile.flat", &fake_stats, &e->flat_cfg, &dummy_state};
    assert_int_equal(sf__cfg_parse("test.yaml", yaml, strlen(yaml), &e->node), SF_OK);
    e->cfg = base("vote", "v", 1);
    e->cfg.node = e->node;
    e->cfg.stage = "detect";
    e->cfg.nbaseline = nprior;
    e->cfg.baseline = nprior ? e->prior : NULL;
}

static void free_env(env *e)
{
    sf__cfg_node_free(e->node);
    e->node = NULL;
}

static const sf_agent_ops *ops = &sf__agent_vote;

static void feed(void *s, const row *rows, size_t n, size_t morsel)
{
    sf_batch b;
    fill_batch(&b, rows, n);
    feed_morsels(ops, s, &b, morsel);
    sf_batch_fini(&b);
}

/* Random rows around the baselines' levels with 5% spikes (truth 1), nulls
 * and a service the baselines do not know. */
static row *random_rows(size_t n, uint64_t seed)
{
    static const char *const svc[] = {"api", "web", "db", "new"};
    rng_state = seed;
    row *rows = calloc(n, sizeof *rows);
    assert_non_null(rows);
    for (size_t i = 0; i < n; i++) {
        int s = (int)(rnd() % 20 == 0 ? 3 : rnd() % 3);
        const fake_group *g = s < 3 ? &groups[s] : &groups[0];
        double u = (double)(rnd() % 2001) / 1000.0 - 1.0; /* [-1, 1] */
        double x = g->mean + 2.5 * g->sd * u;
        bool spike = rnd() % 20 == 0;
        if (spike) x += (rnd() % 2 ? 1.0 : -1.0) * g->sd * (double)(2 + rnd() % 6);
        rows[i] = (row){.v = x, .service = svc[s], .truth = spike ? 1 : (rnd() % 40 == 0 ? 2 : 0)};
        if (rnd() % 50 == 0) rows[i].v_null = true;
    }
    return rows;
}

/* One detector's vote and confidence, from its formula (detect.c). */
typedef struct dvote {
    bool scored, vote;
    double conf;
} dvote;

static dvote ref_detector(sf__detect_kind kind, double t, const row *r)
{
    dvote d = {false, false, 0};
    const fake_group *g = find_group(r->service);
    if (g == NULL || r->v_null || isnan(r->v)) return d;
    double x = r->v, s;
    bool vote;
    if (kind == SF__DETECT_ZSCORE) {
        s = (x - g->mean) / g->sd;
        vote = fabs(s) > t;
    } else if (kind == SF__DETECT_MAD) {
        if (g->mad <= 0) return d;
        s = 0.6745 * (x - g->median) / g->mad;
        vote = fabs(s) > t;
    } else {
        double iqr = g->q3 - g->q1;
        if (iqr <= 0) return d;
        s = x > g->q3 ? (x - g->q3) / iqr : x < g->q1 ? (x - g->q1) / iqr : 0;
        vote = x > g->q3 + t * iqr || x < g->q1 - t * iqr;
    }
    double a = fmin(1.0, fabs(s) / (2 * t));
    d.scored = true;
    d.vote = vote;
    d.conf = vote ? a : 1 - a;
    return d;
}

typedef struct counts {
    uint64_t anomalies, unscored, tp, fp, fn, tn;
    sf_xsum yes_conf; /* confidences of the yes votes (decisions) */
} counts;

/* "%.17g" of the mean sum / n, or null (as the report prints them). */
static const char *mean_text(const sf_xsum *sum, uint64_t n, char *buf)
{
    if (n == 0) return "null";
    snprintf(buf, 40, "%.17g", sf_xsum_round(sum) / (double)n);
    return buf;
}

static void add_conf(counts *c, bool pred, bool actual)
{
    if (pred && actual) c->tp++;
    if (pred && !actual) c->fp++;
    if (!pred && actual) c->fn++;
    if (!pred && !actual) c->tn++;
}

static size_t put_scores(char *out, size_t cap, const counts *c)
{
    double tp = (double)c->tp, fp = (double)c->fp, fn = (double)c->fn;
    double p = tp + fp > 0 ? tp / (tp + fp) : 0, r = tp + fn > 0 ? tp / (tp + fn) : 0;
    double f1 = tp + fp + fn > 0 ? 2 * tp / (2 * tp + fp + fn) : 0;
    return (size_t)snprintf(out, cap,
                            "\"confusion\":{\"tp\":%llu,\"fp\":%llu,\"fn\":%llu,\"tn\":%llu},"
                            "\"precision\":%.17g,\"recall\":%.17g,\"f1\":%.17g",
                            (unsigned long long)c->tp, (unsigned long long)c->fp,
                            (unsigned long long)c->fn, (unsigned long long)c->tn, p, r, f1);
}

/* The whole report of a vote over zscore@profile.lat (weight 1),
 * mad@profile.q (weight 2, threshold 3) and iqr@profile.q (weight 1,
 * threshold 1.5), against the reference, for every rule. */
static void test_agent_vs_reference(void **st)
{
    (void)st;
    enum { N = 5000 };
    row *rows = random_rows(N, 41);
    const sf__detect_kind kinds[3] = {SF__DETECT_ZSCORE, SF__DETECT_MAD, SF__DETECT_IQR};
    const double thr[3] = {3, 3, 1.5}, wts[3] = {1, 2, 1};
    const char *names[3] = {"zscore@profile.lat", "mad@profile.q", "iqr@profile.q"};
    for (int rule = 0; rule < SF_VOTE_NRULES; rule++) {
        for (int k = 1; k <= (rule == SF_VOTE_QUORUM ? 3 : 1); k++) {
            char yaml[1024];
            snprintf(yaml, sizeof yaml,
                     "agent: vote\n"
                     "baseline: [profile.lat, profile.q]\n"
                     "detectors:\n"
                     "  - detector: zscore\n"
                     "    baseline: profile.lat\n"
                     "  - {detector: mad, baseline: profile.q, weight: 2, threshold: 3}\n"
                     "  - {detector: iqr, baseline: profile.q, k: 1.5}\n"
                     "rule: %s\n"
                     "k: %d\n"
                     "truth: truth\n"
                     "truth_ids: [1]\n",
                     sf_vote_rule_name((sf_vote_rule)rule), k);
            env e;
            make_env(&e, yaml, 2);
            assert_int_equal(ops->check(&e.cfg), SF_OK);
            void *s = new_state(ops, &e.cfg);
            feed(s, rows, N, 321);

            counts dc[3] = {{0}}, ens = {0};
            uint64_t agreed = 0, unscored = 0, decided = 0;
            sf_xsum dec_conf;
            sf_xsum_init(&dec_conf);
            for (size_t i = 0; i < N; i++) {
                bool actual = rows[i].truth == 1;
                uint8_t votes[3];
                double conf[3], w[3];
                int m = 0, yes = 0;
                for (int d = 0; d < 3; d++) {
                    dvote v = ref_detector(kinds[d], thr[d], &rows[i]);
                    if (v.scored) {
                        if (v.vote) sf_xsum_add(&dc[d].yes_conf, v.conf);
                        votes[m] = v.vote;
                        conf[m] = v.conf;
                        w[m++] = wts[d];
                        yes += v.vote;
                    } else {
                        dc[d].unscored++;
                    }
                    dc[d].anomalies += v.vote;
                    add_conf(&dc[d], v.vote, actual);
                }
                unsigned mask = 0;
                for (int q = 0; q < m; q++) mask |= (unsigned)votes[q] << q;
                ref_out ro = ref_combine((sf_vote_rule)rule, k, m, mask, conf, w);
                bool dec = ro.decision;
                if (m > 0) {
                    decided++;
                    sf_xsum_add(&dec_conf, ro.confidence);
                    if (dec) sf_xsum_add(&ens.yes_conf, ro.confidence);
                }
                ens.anomalies += dec;
                add_conf(&ens, dec, actual);
                unscored += m < 3;
                agreed += m == 3 && (yes == 0 || yes == 3);
            }
            char want[4096], m1[40], m2[40];
            size_t len = (size_t)snprintf(
                want, sizeof want,
                "{\"rule\":\"%s\",\"k\":%d,\"records\":%d,\"anomalies\":%llu,\"agreement\":%.17g,"
                "\"unscored\":%llu,\"detectors\":{",
                sf_vote_rule_name((sf_vote_rule)rule), k, N, (unsigned long long)ens.anomalies,
                (double)agreed / N, (unsigned long long)unscored);
            for (int d = 0; d < 3; d++) {
                len += (size_t)snprintf(want + len, sizeof want - len,
                                        "%s\"%s\":{\"anomalies\":%llu,\"unscored\":%llu,\"anomaly_confidence\":%s,",
                                        d ? "," : "", names[d], (unsigned long long)dc[d].anomalies,
                                        (unsigned long long)dc[d].unscored,
                                        mean_text(&dc[d].yes_conf, dc[d].anomalies, m1));
                len += put_scores(want + len, sizeof want - len, &dc[d]);
                len += (size_t)snprintf(want + len, sizeof want - len, "}");
            }
            len += (size_t)snprintf(want + len, sizeof want - len,
                                    "},\"ensemble\":{\"anomalies\":%llu,\"confidence\":%s,\"anomaly_confidence\":%s,",
                                    (unsigned long long)ens.anomalies, mean_text(&dec_conf, decided, m1),
                                    mean_text(&ens.yes_conf, ens.anomalies, m2));
            len += put_scores(want + len, sizeof want - len, &ens);
            snprintf(want + len, sizeof want - len, "}}");
            char *got = report_text(ops, s);
            assert_string_equal(got, want);
            assert_true(ens.tp > 0 && ens.fp + ens.fn > 0 && agreed > 0 && agreed < N && decided > 0);
            free(got);
            free_state(ops, s);
            free_env(&e);
        }
    }
    free(rows);
}

/* Without truth: only counts; with one baseline the items may omit it. */
static void test_agent_without_truth(void **st)
{
    (void)st;
    env e;
    make_env(&e,
             "agent: vote\n"
             "baseline: profile.lat\n"
             "detectors:\n"
             "  - {detector: zscore, threshold: 2}\n"
             "  - {detector: zscore, baseline: profile.lat, threshold: 2}\n",
             1);
    /* The same detector twice on the same baseline is refused. */
    assert_int_equal(ops->check(&e.cfg), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "test.yaml:5: agent 'v': detectors item 1: zscore@profile.lat is already item 0");
    free_env(&e);
    make_env(&e,
             "agent: vote\n"
             "baseline: profile.lat\n"
             "detectors:\n"
             "  - {detector: zscore, threshold: 2, direction: up}\n"
             "rule: majority\n",
             1);
    assert_int_equal(ops->check(&e.cfg), SF_OK);
    void *s = new_state(ops, &e.cfg);
    /* api: mean 100, sd 10: 125 (z 2.5 yes), 75 (no: up only), 100 (no),
     * null value and unknown group (unscored). Confidences: 125's yes
     * 2.5 / (2 * 2) = 0.625; the no votes 1 - 0 = 1; the three decisions
     * (one detector: its own vote) average (0.625 + 1 + 1) / 3 = 0.875. */
    row rows[] = {{.v = 125, .service = "api"}, {.v = 75, .service = "api"}, {.v = 100, .service = "api"},
                  {.v_null = true, .service = "api"}, {.v = 1, .service = "zzz"}};
    feed(s, rows, 5, 2);
    char *got = report_text(ops, s);
    assert_string_equal(got, "{\"rule\":\"majority\",\"k\":2,\"records\":5,\"anomalies\":1,"
                             "\"agreement\":0.59999999999999998,\"unscored\":2,"
                             "\"detectors\":{\"zscore@profile.lat\":{\"anomalies\":1,\"unscored\":2,"
                             "\"anomaly_confidence\":0.625}},"
                             "\"ensemble\":{\"anomalies\":1,\"confidence\":0.875,\"anomaly_confidence\":0.625}}");
    free(got);
    double r;
    assert_int_equal(ops->stat(s, NULL, 0, "rows", &r), SF_OK);
    assert_true(r == 5);
    assert_int_equal(ops->stat(s, NULL, 0, "mean", &r), SF_ERR_ARG);
    free_state(ops, s);
    free_env(&e);
}

/* ---- laws ------------------------------------------------------------------------ */

static void test_laws(void **st)
{
    (void)st;
    enum { N = 3000, K = 4 };
    row *rows = random_rows(N, 7);
    env e;
    make_env(&e,
             "agent: vote\n"
             "baseline: [profile.lat, profile.q]\n"
             "detectors:\n"
             "  - {detector: zscore, baseline: profile.lat}\n"
             "  - {detector: iqr, baseline: profile.q, threshold: 1}\n"
             "  - {detector: mad, baseline: profile.q}\n"
             "rule: weighted\n"
             "truth: truth\n",
             2);
    assert_int_equal(ops->check(&e.cfg), SF_OK);
    void *whole = new_state(ops, &e.cfg);
    feed(whole, rows, N, 200);
    void *z = new_state(ops, &e.cfg);
    assert_int_equal(ops->merge(z, whole), SF_OK);
    assert_same_state(ops, z, whole);
    void *z2 = new_state(ops, &e.cfg);
    assert_int_equal(ops->merge(whole, z2), SF_OK);
    assert_same_state(ops, z, whole);
    free_state(ops, z);
    free_state(ops, z2);

    size_t cut[K + 1] = {0, 700, 701, 2500, N};
    void *part[K];
    for (int k = 0; k < K; k++) {
        part[k] = new_state(ops, &e.cfg);
        feed(part[k], rows + cut[k], cut[k + 1] - cut[k], 64);
    }
    static const int orders[3][K] = {{0, 1, 2, 3}, {3, 1, 0, 2}, {2, 3, 1, 0}};
    for (int o = 0; o < 3; o++) {
        void *acc = new_state(ops, &e.cfg);
        for (int k = 0; k < K; k++) assert_int_equal(ops->merge(acc, part[orders[o][k]]), SF_OK);
        assert_same_state(ops, acc, whole);
        free_state(ops, acc);
    }
    /* (p0 + p1) + p2 == p0 + (p1 + p2). */
    void *l = new_state(ops, &e.cfg), *r = new_state(ops, &e.cfg), *m = new_state(ops, &e.cfg);
    assert_int_equal(ops->merge(l, part[0]), SF_OK);
    assert_int_equal(ops->merge(l, part[1]), SF_OK);
    assert_int_equal(ops->merge(l, part[2]), SF_OK);
    assert_int_equal(ops->merge(m, part[1]), SF_OK);
    assert_int_equal(ops->merge(m, part[2]), SF_OK);
    assert_int_equal(ops->merge(r, part[0]), SF_OK);
    assert_int_equal(ops->merge(r, m), SF_OK);
    assert_same_state(ops, l, r);
    free_state(ops, l);
    free_state(ops, r);
    free_state(ops, m);

    /* Round trip, truncations, trailing bytes, corruptions. */
    sf_buf enc = encoded(ops, whole);
    void *d = new_state(ops, &e.cfg);
    assert_int_equal(ops->decode(d, enc.data, enc.len), SF_OK);
    assert_same_state(ops, d, whole);
    char *a = report_text(ops, d), *b = report_text(ops, whole);
    assert_string_equal(a, b);
    free(a);
    free(b);
    for (size_t len = 0; len < enc.len; len++) assert_int_equal(ops->decode(d, enc.data, len), SF_ERR_PARSE);
    uint8_t *buf = malloc(enc.len + 1);
    assert_non_null(buf);
    memcpy(buf, enc.data, enc.len);
    buf[enc.len] = 7;
    assert_int_equal(ops->decode(d, buf, enc.len + 1), SF_ERR_PARSE);
    for (size_t at = 0; at < enc.len; at++) {
        buf[at] ^= 0x80;
        sf_status rc = ops->decode(d, buf, enc.len);
        if (rc == SF_OK) {
            sf_buf again = encoded(ops, d);
            assert_true(again.len != enc.len || memcmp(again.data, enc.data, enc.len) != 0);
            sf_buf_fini(&again);
        } else {
            assert_int_equal(rc, SF_ERR_PARSE);
        }
        buf[at] ^= 0x80;
    }
    /* The header bytes (format, rule, k, count, truth flag, kinds) are all
     * checked: each corruption is rejected. */
    for (size_t at = 0; at < 8; at++) {
        buf[at] ^= 0x01;
        assert_int_equal(ops->decode(d, buf, enc.len), SF_ERR_PARSE);
        buf[at] ^= 0x01;
    }
    free(buf);
    sf_buf_fini(&enc);
    free_state(ops, d);
    for (int k = 0; k < K; k++) free_state(ops, part[k]);
    free_state(ops, whole);
    free_env(&e);
    free(rows);
}

/* ---- configuration errors ------------------------------------------------------- */

static void check_fails(const char *yaml, int nprior, const char *msg)
{
    env e;
    make_env(&e, yaml, nprior);
    assert_int_equal(ops->check(&e.cfg), SF_ERR_CONFIG);
    if (strstr(sf_error_message(), msg) == NULL) {
        print_error("message: %s\nexpected: %s\n", sf_error_message(), msg);
        fail();
    }
    free_env(&e);
}

static void test_config_errors(void **st)
{
    (void)st;
    /* Unknown baseline reference, named at the item's line. */
    check_fails("agent: vote\n"
                "baseline: [profile.lat, profile.q]\n"
                "detectors:\n"
                "  - detector: zscore\n"
                "    baseline: profile.lat\n"
                "  - detector: mad\n"
                "    baseline: profile.nope\n",
                2,
                "test.yaml:6: agent 'v': detectors item 1: baseline 'profile.nope' is not one of the "
                "agent's baselines (profile.lat, profile.q)");
    /* Wrong kind of baseline for the detector: named at its baseline: key. */
    check_fails("agent: vote\n"
                "baseline: [profile.lat, profile.q]\n"
                "detectors:\n"
                "  - detector: zscore\n"
                "    baseline: profile.q\n",
                2,
                "test.yaml:5: agent 'v': option 'baseline': 'profile.q' is a quantiles agent; zscore "
                "needs a stats agent");
    /* by: mismatch (profile.flat is ungrouped, the vote is by service). */
    check_fails("agent: vote\n"
                "baseline: [profile.lat, profile.q, profile.flat]\n"
                "detectors:\n"
                "  - {detector: zscore, baseline: profile.lat}\n"
                "  - {detector: zscore, baseline: profile.flat}\n"
                "rule: majority\n",
                3,
                "test.yaml:5: agent 'v': option 'baseline': 'profile.flat' is grouped by [] but zscore "
                "is grouped by [service]");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - {detector: median, baseline: profile.lat}\n",
                1,
                "test.yaml:4: agent 'v': detectors item 0: unknown detector 'median' (zscore, mad, iqr "
                "or ewma)");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - {baseline: profile.lat}\n",
                1, "test.yaml:4: agent 'v': detectors item 0: 'detector' is required");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: zscore\n"
                "    alpha: 0.2\n",
                1,
                "test.yaml:5: agent 'v': detectors item 0: unknown key 'alpha' (zscore accepts detector, "
                "baseline, threshold, direction, weight)");
    check_fails("agent: vote\n"
                "baseline: [profile.q]\n"
                "detectors:\n"
                "  - {detector: iqr, k: 1, threshold: 2}\n",
                1, "test.yaml:4: agent 'v': options 'k' and 'threshold' are the same for iqr: give one");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: zscore\n"
                "    weight: -1\n",
                1, "test.yaml:5: agent 'v': option 'weight': -1 is outside");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: zscore\n"
                "    threshold: lots\n",
                1, "test.yaml:5: agent 'v': option 'threshold': expected a number, found 'lots'");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - zscore\n",
                1, "test.yaml:4: agent 'v': detectors item 0: expected a mapping");
    check_fails("agent: vote\nbaseline: [profile.lat]\ndetectors: zscore\n", 1,
                "test.yaml:3: agent 'v': option 'detectors': expected a list of 1 to 16 detectors");
    check_fails("agent: vote\nbaseline: [profile.lat]\n", 1,
                "test.yaml:1: agent 'v': option 'detectors': expected a list");
    check_fails("agent: vote\n"
                "detectors:\n"
                "  - detector: zscore\n",
                0, "test.yaml:1: agent 'v': vote needs baseline: [STAGE.AGENT_ID, ...]");
    check_fails("agent: vote\n"
                "baseline: [profile.lat, profile.q]\n"
                "detectors:\n"
                "  - detector: zscore\n",
                2,
                "test.yaml:4: agent 'v': detectors item 0: 'baseline' is required when the agent lists "
                "2 baselines");
    /* The default quorum of 2 needs two detectors. */
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: zscore\n",
                1, "test.yaml:1: agent 'v': option 'k': a quorum of 2 needs at least 2 detectors, found 1");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: zscore\n"
                "rule: unanimous\n",
                1, "test.yaml:5: agent 'v': option 'rule': 'unanimous' is not one of majority, plurality, "
                   "weighted, quorum, unanimity");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: zscore\n"
                "rule: majority\n"
                "quorum: 2\n",
                1, "test.yaml:6: agent 'v': unknown option 'quorum'");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: ewma\n"
                "rule: majority\n",
                1, "'profile.lat' is a stats agent; ewma needs a window agent");
    check_fails("agent: vote\n"
                "baseline: [profile.lat]\n"
                "detectors:\n"
                "  - detector: ewma\n"
                "    time: v\n"
                "rule: majority\n",
                1, "test.yaml:5: agent 'v': option 'time': column 'v' is float64, expected timestamp");

    /* columns(): the ewma items' time columns (once each) and the truth. */
    env e;
    make_env(&e,
             "agent: vote\n"
             "baseline: [profile.lat]\n"
             "detectors:\n"
             "  - {detector: ewma, baseline: a.b}\n"
             "  - {detector: ewma, baseline: c.d, alpha: 0.5}\n"
             "  - {detector: zscore}\n"
             "truth: truth\n",
             0);
    const char *names[8];
    int n;
    assert_int_equal(ops->columns(&e.cfg, names, 8, &n), SF_OK);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "timestamp");
    assert_string_equal(names[1], "truth");
    free_env(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rules_exhaustive),
        cmocka_unit_test(test_rules_by_hand),
        cmocka_unit_test(test_rule_names),
        cmocka_unit_test(test_agent_vs_reference),
        cmocka_unit_test(test_agent_without_truth),
        cmocka_unit_test(test_laws),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
