/* Unit tests of the synthesis section (synth/combine.c, synth/consensus.c)
 * and the quality checks (synth/quality.c) through sf_synth_check and
 * sf_synth_write. Combined values are compared with the closed-form
 * weighted means and standard errors computed here; conflicts and
 * consistency checks with outcomes worked out by hand from the data. The
 * agents of the consistency checks answer stat() from tables of canonical
 * key bytes built byte by byte from the layout agent.h specifies. */
#define _POSIX_C_SOURCE 200809L
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
#include "shardflow/config.h"
#include "shardflow/json.h"
#include "shardflow/jsonv.h"
#include "shardflow/synth.h"

#include "flow/yaml_tree.h"

#include "synth_testkit.h"

/* ---- fixture ------------------------------------------------------------------------- */

/* What the consistency checks read besides the report. */
typedef struct textra {
    const char *column, *where;
    const sf_agent_ops *ops;
    const sf_agent_config *cfg;
    const void *state;
} textra;

static void fx_extra(fixture *f, const textra *ex, int n)
{
    for (int i = 0; i < n; i++) {
        f->agents[i].column = ex[i].column;
        f->agents[i].where = ex[i].where;
        f->agents[i].ops = ex[i].ops;
        f->agents[i].cfg = ex[i].cfg;
        f->agents[i].state = ex[i].state;
    }
}

static double num_at(const sf_jv *arr, size_t i)
{
    double d;
    if (!sf_jv_num(sf_jv_at(arr, i), &d)) fail_msg("no number at %zu", i);
    return d;
}

static bool flag(const sf_jv *v, const char *key)
{
    bool b = false;
    return sf_jv_bool(sf_jv_get(v, key), &b) && b;
}

static const sf_jv *synthesis(sf_jv_doc *d) { return sf_jv_get(sf_jv_root(d), "synthesis"); }

/* Array of strings equal to want[0..n). */
static void assert_strs(const sf_jv *arr, const char *const *want, size_t n)
{
    assert_int_equal(sf_jv_len(arr), n);
    for (size_t i = 0; i < n; i++) assert_string_equal(sf_jv_str(sf_jv_at(arr, i), NULL), want[i]);
}

/* ---- combine ------------------------------------------------------------------------------- */

static const char *const m1_json =
    "{\"groups\":{\"a\":{\"count\":100,\"mean\":10,\"variance\":4,\"conf\":0.9},"
    "\"b\":{\"count\":50,\"mean\":20,\"variance\":9,\"conf\":0.5},"
    "\"c\":{\"count\":10,\"mean\":null,\"variance\":null,\"conf\":0.1},"
    "\"only1\":{\"count\":1,\"mean\":1,\"variance\":null,\"conf\":1}}}";
static const char *const m2_json =
    "{\"groups\":{\"a\":{\"count\":400,\"mean\":12,\"variance\":16,\"conf\":0.3},"
    "\"b\":{\"count\":50,\"mean\":20.1,\"variance\":9,\"conf\":0.5},"
    "\"c\":{\"count\":10,\"mean\":3,\"variance\":1,\"conf\":0.1}}}";
static const char *const m3_json =
    "{\"groups\":{\"a\":{\"count\":400,\"mean\":10.1,\"variance\":16,\"conf\":0.6},"
    "\"b\":{\"count\":50,\"mean\":19.9,\"variance\":9,\"conf\":0.5},"
    "\"c\":{\"count\":10,\"mean\":3,\"variance\":1,\"conf\":0.1}}}";
static const char *const m4_json = "{\"groups\":{\"a\":{\"count\":5,\"mean\":7,\"variance\":0}}}";

static const char *const combine_yaml =
    "synthesis:\n"
    "  combine:\n"
    "    - id: inv\n"
    "      weight: inverse_variance\n"
    "      estimates:\n"
    "        - {agent: s1.m1, value: mean}\n"
    "        - {agent: s1.m2, value: mean}\n"
    "        - {agent: s2.m3, value: mean}\n"
    "    - id: ss\n"
    "      weight: sample_size\n"
    "      estimates: [{agent: s1.m1, value: mean}, {agent: s1.m2, value: mean, count: count}]\n"
    "    - id: cw\n"
    "      weight: confidence\n"
    "      z: 2\n"
    "      estimates:\n"
    "        - {agent: s1.m2, value: mean, confidence: conf, variance: variance}\n"
    "        - {agent: s2.m3, value: mean, confidence: conf}\n"
    "    - id: exact\n"
    "      weight: inverse_variance\n"
    "      estimates: [{agent: s1.m4, value: mean}, {agent: s1.m2, value: mean}]\n";

static double q(double n) { return 1.0 - 1.0 / sqrt(1.0 + n); }

static void test_combine(void **st)
{
    (void)st;
    tagent ag[] = {{"s1", NULL, "m1", 1, {"service"}, m1_json},
                   {"s1", NULL, "m2", 1, {"service"}, m2_json},
                   {"s1", NULL, "m4", 1, {"service"}, m4_json},
                   {"s2", NULL, "m3", 1, {"service"}, m3_json}};
    fixture f;
    fx_build(&f, combine_yaml, ag, 4);
    f.in.coverage.rows_done = 80; /* coverage 0.8 */
    const double cov = 0.8;
    assert_int_equal(sf_synth_check(&f.in), SF_OK);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *comb = sf_jv_get(synthesis(d), "combine");
    assert_int_equal(sf_jv_len(comb), 4);

    /* inverse_variance over m1, m2, m3: every se^2 of a is 0.04, of b 0.18. */
    const sf_jv *inv = sf_jv_get(comb, "inv");
    assert_string_equal(str(inv, "weight"), "inverse_variance");
    const sf_jv *g = sf_jv_get(inv, "groups");
    assert_int_equal(sf_jv_len(g), 2); /* c is skipped (a null mean), only1 is partial */
    const sf_jv *a = sf_jv_get(g, "a");
    double w1 = 100 / 4.0, w2 = 400 / 16.0, w3 = 400 / 16.0;
    assert_close(num(a, "value"), (w1 * 10 + w2 * 12 + w3 * 10.1) / (w1 + w2 + w3));
    assert_close(num(a, "se"), sqrt(1 / (w1 + w2 + w3)));
    assert_true(num(a, "n_estimates") == 3);
    /* Two of the three pairs conflict: (10, 12) and (12, 10.1), at z > 3. */
    assert_close(num(a, "confidence"), cov * (q(100) + q(400) + q(400)) / 3 * (1 - 2.0 / 3));
    const sf_jv *b = sf_jv_get(g, "b");
    assert_close(num(b, "value"), (20 + 20.1 + 19.9) / 3);
    assert_close(num(b, "se"), sqrt(1 / (3 / 0.18)));
    assert_close(num(b, "confidence"), cov * q(50));
    assert_true(num(inv, "skipped") == 1);
    assert_true(num(inv, "partial") == 1);
    const sf_jv *cf = sf_jv_get(inv, "conflicts");
    assert_int_equal(sf_jv_len(cf), 2);
    const char *p1[] = {"s1.m1", "s1.m2"}, *p2[] = {"s1.m2", "s2.m3"};
    assert_string_equal(str(sf_jv_at(cf, 0), "key"), "a");
    assert_strs(sf_jv_get(sf_jv_at(cf, 0), "estimates"), p1, 2);
    assert_strs(sf_jv_get(sf_jv_at(cf, 1), "estimates"), p2, 2);
    assert_true(num_at(sf_jv_get(sf_jv_at(cf, 0), "values"), 0) == 10);
    assert_true(num_at(sf_jv_get(sf_jv_at(cf, 0), "values"), 1) == 12);
    assert_close(num_at(sf_jv_get(sf_jv_at(cf, 0), "se"), 0), 0.2);
    assert_close(num(sf_jv_at(cf, 0), "z"), 2 / sqrt(0.08));
    assert_close(num(sf_jv_at(cf, 1), "z"), fabs(12 - 10.1) / sqrt(0.08));

    /* sample_size over m1, m2: pooled variance of the values. */
    const sf_jv *ss = sf_jv_get(comb, "ss");
    a = sf_jv_get(sf_jv_get(ss, "groups"), "a");
    assert_close(num(a, "value"), (100 * 10 + 400 * 12) / 500.0);
    assert_close(num(a, "se"), sqrt((99 * 4 + 399 * 16) / (500.0 - 2) / 500));
    assert_true(num(a, "confidence") == 0); /* its one pair conflicts */
    b = sf_jv_get(sf_jv_get(ss, "groups"), "b");
    assert_close(num(b, "value"), (50 * 20 + 50 * 20.1) / 100);
    assert_close(num(b, "se"), sqrt((49 * 9 + 49 * 9) / 98.0 / 100));
    assert_close(num(b, "confidence"), cov * q(50));
    assert_true(num(ss, "skipped") == 1);
    assert_true(num(ss, "partial") == 1);

    /* confidence weights over m2, m3. */
    const sf_jv *cw = sf_jv_get(comb, "cw");
    g = sf_jv_get(cw, "groups");
    a = sf_jv_get(g, "a");
    assert_close(num(a, "value"), (0.3 * 12 + 0.6 * 10.1) / 0.9);
    assert_close(num(a, "se"), sqrt(0.09 * 0.04 + 0.36 * 0.04) / 0.9);
    b = sf_jv_get(g, "b");
    assert_close(num(b, "value"), (0.5 * 20.1 + 0.5 * 19.9) / 1.0);
    assert_close(num(b, "se"), sqrt(0.25 * 0.18 + 0.25 * 0.18));
    assert_close(num(b, "confidence"), cov * 0.5);
    const sf_jv *c = sf_jv_get(g, "c");
    assert_close(num(c, "value"), 3);
    assert_close(num(c, "confidence"), cov * 0.1);
    /* With z = 2, b's pair (0.2 apart, 0.6 combined se) does not conflict; a's does. */
    assert_int_equal(sf_jv_len(sf_jv_get(cw, "conflicts")), 1);
    assert_true(num(cw, "partial") == 0);

    /* An exact estimate (variance 0) decides the value. */
    const sf_jv *ex = sf_jv_get(comb, "exact");
    a = sf_jv_get(sf_jv_get(ex, "groups"), "a");
    assert_true(num(a, "value") == 7);
    assert_true(num(a, "se") == 0);
    assert_true(num(ex, "partial") == 2);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

/* ---- conflicts ------------------------------------------------------------------------------ */

static const char *const lat_json =
    "{\"groups\":{\"a\":{\"count\":9,\"mean\":200},\"b\":{\"count\":9,\"mean\":300},\"c\":{\"count\":9,\"mean\":50}}}";
static const char *const auth_json =
    "{\"groups\":{\"a\":{\"count\":9,\"rate\":0.5},\"b\":{\"count\":9,\"rate\":0.01},"
    "\"c\":{\"count\":9,\"rate\":0.01}}}";

static char *conflict_yaml(const char *conflicts)
{
    static char buf[2048];
    snprintf(buf, sizeof buf,
             "findings:\n"
             "  s1:\n"
             "    perf:\n"
             "      - {id: slow, agent: lat, metric: mean, above: 100, severity: high}\n"
             "    sec:\n"
             "      - {id: brute, agent: auth, metric: rate, above: 0.1, severity: high}\n"
             "      - {id: quiet, agent: auth, metric: rate, below: 0.05, severity: high}\n"
             "%s",
             conflicts);
    return buf;
}

static void run_conflicts(const char *conflicts, sf_jv_doc **d)
{
    /* biz has no rules: it can be named in priority: but makes no findings. */
    tagent ag[] = {{"s1", "perf", "lat", 1, {"service"}, lat_json},
                   {"s1", "sec", "auth", 1, {"service"}, auth_json},
                   {"s1", "biz", "rev", 0, {NULL}, "{\"total\":1}"}};
    fixture f;
    fx_build(&f, conflict_yaml(conflicts), ag, 3);
    if (sf_synth_check(&f.in) != SF_OK) fail_msg("%s", sf_error_message());
    assert_int_equal(fx_write(&f, d), SF_OK);
    fx_fini(&f);
}

/* Findings: 0 perf/slow a, 1 perf/slow b, 2 sec/brute a, 3 sec/quiet b,
 * 4 sec/quiet c. 0 and 2 agree; 1 and 3 disagree on the direction. */
static void check_common(sf_jv_doc *d, const sf_jv **conflict)
{
    const sf_jv *fs = sf_jv_get(sf_jv_root(d), "findings");
    assert_int_equal(sf_jv_len(fs), 5);
    const sf_jv *syn = synthesis(d);
    const sf_jv *cs = sf_jv_get(syn, "conflicts");
    assert_int_equal(sf_jv_len(cs), 1);
    const sf_jv *x = sf_jv_at(cs, 0);
    assert_true(num_at(sf_jv_get(x, "findings"), 0) == 1);
    assert_true(num_at(sf_jv_get(x, "findings"), 1) == 3);
    const char *aspects[] = {"perf", "sec"}, *rules[] = {"slow", "quiet"}, *keys[] = {"b", "b"};
    const char *dis[] = {"direction"};
    assert_strs(sf_jv_get(x, "aspects"), aspects, 2);
    assert_strs(sf_jv_get(x, "rules"), rules, 2);
    assert_strs(sf_jv_get(x, "keys"), keys, 2);
    assert_strs(sf_jv_get(x, "disagree"), dis, 1);
    const sf_jv *co = sf_jv_get(syn, "corroborated");
    assert_int_equal(sf_jv_len(co), 2);
    for (size_t i = 0; i < 2; i++) {
        assert_true(num(sf_jv_at(co, i), "finding") == (double)(2 * i));
        assert_strs(sf_jv_get(sf_jv_at(co, i), "aspects"), aspects, 2);
        assert_true(num(sf_jv_at(co, i), "count") == 2);
        assert_string_equal(str(sf_jv_at(co, i), "key"), "a");
    }
    assert_true(num(syn, "agreement") == 0.5);
    *conflict = x;
}

static void test_conflict_resolution(void **st)
{
    (void)st;
    sf_jv_doc *d;
    const sf_jv *x, *fs;

    /* Default: escalate. */
    run_conflicts("", &d);
    check_common(d, &x);
    assert_string_equal(str(x, "resolved_by"), "escalate");
    assert_int_equal(sf_jv_type_of(sf_jv_get(x, "winner")), SF_JV_NULL);
    assert_true(flag(x, "escalated"));
    fs = sf_jv_get(sf_jv_root(d), "findings");
    assert_true(flag(sf_jv_at(fs, 1), "escalated") && flag(sf_jv_at(fs, 3), "escalated"));
    assert_false(flag(sf_jv_at(fs, 0), "escalated") || flag(sf_jv_at(fs, 1), "overruled") ||
                 flag(sf_jv_at(fs, 3), "overruled"));
    sf_jv_destroy(&d);

    /* priority: sec first. */
    run_conflicts("synthesis:\n  conflicts: {resolve: priority, priority: [sec, perf]}\n", &d);
    check_common(d, &x);
    assert_string_equal(str(x, "resolved_by"), "priority");
    assert_true(num(x, "winner") == 3);
    assert_false(flag(x, "escalated"));
    fs = sf_jv_get(sf_jv_root(d), "findings");
    assert_true(flag(sf_jv_at(fs, 1), "overruled"));
    assert_false(flag(sf_jv_at(fs, 3), "overruled") || flag(sf_jv_at(fs, 3), "escalated"));
    sf_jv_destroy(&d);

    /* priority naming neither aspect of the pair: escalated. */
    run_conflicts("synthesis:\n  conflicts:\n    resolve: priority\n    priority: biz\n", &d);
    check_common(d, &x);
    assert_string_equal(str(x, "resolved_by"), "escalate");
    assert_true(flag(x, "escalated"));
    sf_jv_destroy(&d);

    /* confidence: perf's b is 3x its threshold (excess 2, confidence 2/3),
     * sec's b 0.2x (excess 0.8, confidence 4/9): perf wins. */
    run_conflicts("synthesis:\n  conflicts: {resolve: confidence}\n", &d);
    check_common(d, &x);
    fs = sf_jv_get(sf_jv_root(d), "findings");
    assert_close(num(sf_jv_at(fs, 1), "confidence"), 2.0 / 3);
    assert_close(num(sf_jv_at(fs, 3), "confidence"), 0.8 / 1.8);
    assert_string_equal(str(x, "resolved_by"), "confidence");
    assert_true(num(x, "winner") == 1);
    assert_true(flag(sf_jv_at(fs, 3), "overruled"));
    assert_false(flag(sf_jv_at(fs, 1), "overruled"));
    sf_jv_destroy(&d);
}

/* Equal confidences: the aspect first in the workflow wins. */
static void test_confidence_tie(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    sec:\n"
                       "      - {id: hi, agent: auth, metric: rate, above: 0.25, severity: low}\n"
                       "    perf:\n"
                       "      - {id: slow, agent: lat, metric: mean, above: 100, severity: high}\n"
                       "synthesis:\n"
                       "  conflicts: {resolve: confidence}\n";
    /* Both values are twice their threshold: confidence 1/2 each. */
    tagent ag[] = {{"s1", "sec", "auth", 1, {"service"}, "{\"groups\":{\"a\":{\"rate\":0.5}}}"},
                   {"s1", "perf", "lat", 1, {"service"}, "{\"groups\":{\"a\":{\"mean\":200}}}"}};
    fixture f;
    fx_build(&f, yaml, ag, 2);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = sf_jv_get(sf_jv_root(d), "findings");
    assert_true(num(sf_jv_at(fs, 0), "confidence") == num(sf_jv_at(fs, 1), "confidence"));
    const sf_jv *x = sf_jv_at(sf_jv_get(synthesis(d), "conflicts"), 0);
    const char *dis[] = {"severity"};
    assert_strs(sf_jv_get(x, "disagree"), dis, 1);
    assert_string_equal(str(sf_jv_at(fs, 0), "aspect"), "sec");
    assert_true(num(x, "winner") == 0);
    assert_true(flag(sf_jv_at(fs, 1), "overruled"));
    assert_true(num(synthesis(d), "agreement") == 0);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

/* Subjects: an ungrouped finding meets every group; unrelated columns never
 * meet; windows must overlap. */
static void test_subjects(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    perf:\n"
                       "      - {id: slow, agent: lat, metric: mean, above: 100, severity: high}\n"
                       "    biz:\n"
                       "      - {id: total, agent: rev, metric: total, above: 100, severity: high}\n"
                       "    ux:\n"
                       "      - {id: geo, agent: geo, metric: mean, above: 1, severity: low}\n";
    tagent ag[] = {{"s1", "perf", "lat", 1, {"service"}, lat_json},
                   {"s1", "biz", "rev", 0, {NULL}, "{\"total\":500}"},
                   {"s1", "ux", "geo", 1, {"region"}, "{\"groups\":{\"eu\":{\"mean\":5}}}"}};
    fixture f;
    fx_build(&f, yaml, ag, 3);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    /* Findings: 0 perf a, 1 perf b, 2 biz, 3 ux eu. Pairs: (0,2) and (1,2)
     * agree, (2,3) conflict on severity, (0,3) and (1,3) never meet. */
    const sf_jv *syn = synthesis(d);
    assert_int_equal(sf_jv_len(sf_jv_get(sf_jv_root(d), "findings")), 4);
    const sf_jv *cs = sf_jv_get(syn, "conflicts");
    assert_int_equal(sf_jv_len(cs), 1);
    assert_true(num_at(sf_jv_get(sf_jv_at(cs, 0), "findings"), 0) == 2);
    assert_true(num_at(sf_jv_get(sf_jv_at(cs, 0), "findings"), 1) == 3);
    assert_close(num(syn, "agreement"), 2.0 / 3);
    const sf_jv *co = sf_jv_get(syn, "corroborated");
    assert_int_equal(sf_jv_len(co), 3);
    const char *pb[] = {"perf", "biz"};
    for (size_t i = 0; i < 3; i++) {
        assert_true(num(sf_jv_at(co, i), "finding") == (double)i);
        assert_strs(sf_jv_get(sf_jv_at(co, i), "aspects"), pb, 2);
        /* Two findings of perf agree with biz: biz counts two aspects. */
        assert_true(num(sf_jv_at(co, i), "count") == 2);
    }
    /* Per finding: agreeing over all pairs of its own; per agent: over the
     * pairs of its findings. biz's one finding agrees twice, conflicts once. */
    const sf_jv *fs = sf_jv_get(sf_jv_root(d), "findings");
    const double fagree[] = {1, 1, 2.0 / 3, 0}, fpairs[] = {1, 1, 3, 1};
    for (size_t i = 0; i < 4; i++) {
        assert_close(num(sf_jv_at(fs, i), "agreement"), fagree[i]);
        assert_true(num(sf_jv_at(fs, i), "pairs") == fpairs[i]);
        assert_true(num(sf_jv_at(fs, i), "coverage") == 1);
    }
    const sf_jv *qa = sf_jv_get(sf_jv_get(sf_jv_root(d), "quality"), "agents");
    assert_close(num(sf_jv_get(qa, "s1.lat"), "agreement"), 1);
    assert_true(num(sf_jv_get(qa, "s1.lat"), "findings") == 2);
    assert_close(num(sf_jv_get(qa, "s1.rev"), "agreement"), 2.0 / 3);
    assert_close(num(sf_jv_get(qa, "s1.geo"), "agreement"), 0);
    sf_jv_destroy(&d);
    fx_fini(&f);

    /* Windows: perf fires at minutes 0-1 of x; tech at 1-2 (overlap) and at
     * 5 (apart); sec at 0-1 of y (another key). */
    char series[2048];
    char t[8][64];
    for (int i = 0; i < 8; i++) {
        size_t n = sf_timestamp_format(T0 + i * MIN, t[i], 64);
        t[i][n] = '\0';
    }
    snprintf(series, sizeof series,
             "{\"bucket_us\":60000000,\"groups\":{\"x\":{\"buckets\":"
             "{\"%s\":{\"v\":1},\"%s\":{\"v\":1},\"%s\":{\"v\":0}}},"
             "\"y\":{\"buckets\":{\"%s\":{\"v\":0}}}}}",
             t[0], t[1], t[2], t[0]);
    char series2[2048];
    snprintf(series2, sizeof series2,
             "{\"bucket_us\":60000000,\"groups\":{\"x\":{\"buckets\":"
             "{\"%s\":{\"v\":0},\"%s\":{\"v\":1},\"%s\":{\"v\":1},"
             "\"%s\":{\"v\":0},\"%s\":{\"v\":1}}},\"y\":{\"buckets\":{\"%s\":{\"v\":1}}}}}",
             t[0], t[1], t[2], t[3], t[5], t[0]);
    const char *wyaml = "findings:\n"
                        "  s1:\n"
                        "    perf:\n"
                        "      - {id: p, agent: pw, metric: v, above: 0.5}\n"
                        "    tech:\n"
                        "      - {id: t, agent: tw, metric: v, above: 0.5, severity: low}\n";
    tagent wag[] = {{"s1", "perf", "pw", 1, {"service"}, series}, {"s1", "tech", "tw", 1, {"service"}, series2}};
    fx_build(&f, wyaml, wag, 2);
    assert_int_equal(fx_write(&f, &d), SF_OK);
    /* Findings: 0 perf x [0,2); 1 tech x [1,3); 2 tech x [5,6); 3 tech y [0,1). */
    assert_int_equal(sf_jv_len(sf_jv_get(sf_jv_root(d), "findings")), 4);
    cs = sf_jv_get(synthesis(d), "conflicts");
    assert_int_equal(sf_jv_len(cs), 1);
    assert_true(num_at(sf_jv_get(sf_jv_at(cs, 0), "findings"), 0) == 0);
    assert_true(num_at(sf_jv_get(sf_jv_at(cs, 0), "findings"), 1) == 1);
    assert_int_equal(sf_jv_len(sf_jv_get(synthesis(d), "corroborated")), 0);
    assert_true(num(synthesis(d), "agreement") == 0);
    sf_jv_destroy(&d);
    fx_fini(&f);

    /* No pairs at all: agreement 1. */
    tagent one[] = {{"s1", "perf", "lat", 1, {"service"}, lat_json}};
    fx_build(&f, "findings:\n  s1:\n    perf:\n      - {id: slow, agent: lat, metric: mean, above: 100}\n", one, 1);
    assert_int_equal(fx_write(&f, &d), SF_OK);
    assert_true(num(synthesis(d), "agreement") == 1);
    assert_int_equal(sf_jv_len(sf_jv_get(synthesis(d), "conflicts")), 0);
    assert_int_equal(sf_jv_len(sf_jv_get(synthesis(d), "combine")), 0);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

/* ---- configuration errors --------------------------------------------------------------------- */

static void test_synthesis_config_errors(void **st)
{
    (void)st;
    static const struct {
        const char *yaml, *msg;
    } cases[] = {
        {"synthesis:\n  combin: []\n",
         "test.yaml:2: synthesis.combin: unknown key 'combin'; did you mean 'combine'? (allowed: combine, conflicts)"},
        {"synthesis: [1]\n", "test.yaml:1: synthesis: expected a mapping, found a sequence"},
        {"synthesis:\n  combine: {id: x}\n", "test.yaml:2: synthesis.combine: expected a list of combinations"},
        {"synthesis:\n  combine:\n    - id: x\n"
         "      estimates: [{agent: s1.m1, value: mean}, {agent: s1.m2, value: mean}]\n",
         "test.yaml:3: synthesis.combine[0]: missing required key 'weight' (sample_size, inverse_variance or "
         "confidence)"},
        {"synthesis:\n  combine:\n    - {id: x, weight: inverse, estimates: []}\n",
         "test.yaml:3: synthesis.combine[0].weight: unknown value 'inverse' (allowed: sample_size, "
         "inverse_variance, confidence)"},
        {"synthesis:\n  combine:\n    - {id: x, weight: sample_size, z: 0, estimates: []}\n",
         "test.yaml:3: synthesis.combine[0].z: must be greater than 0, found 0"},
        {"synthesis:\n  combine:\n    - {id: x, weight: sample_size, estimates: [{agent: s1.m1, value: mean}]}\n",
         "test.yaml:3: synthesis.combine[0].estimates: expected a list of two or more estimates"},
        {"synthesis:\n  combine:\n    - id: x\n      weight: sample_size\n      estimates:\n"
         "        - {agent: s1.m1, value: mean}\n        - {agent: s1.nope, value: mean}\n",
         "test.yaml:7: synthesis.combine[0].estimates[1].agent: no agent 's1.nope' (STAGE.AGENT_ID) in the "
         "workflow"},
        {"synthesis:\n  combine:\n    - id: x\n      weight: sample_size\n      estimates:\n"
         "        - {agent: m1, value: mean}\n        - {agent: s1.m2, value: mean}\n",
         "test.yaml:6: synthesis.combine[0].estimates[0].agent: expected STAGE.AGENT_ID, found 'm1'"},
        {"synthesis:\n  combine:\n    - id: x\n      weight: sample_size\n      estimates:\n"
         "        - {agent: s1.m1, value: mean}\n        - {agent: s1.tot, value: mean}\n",
         "test.yaml:7: synthesis.combine[0].estimates[1].agent: agent 's1.tot' groups by [none] but 's1.m1' by "
         "[service]: the estimates of a combination must group by the same columns in the same order"},
        {"synthesis:\n  combine:\n    - id: x\n      weight: confidence\n      estimates:\n"
         "        - {agent: s1.m1, value: mean, confidence: conf}\n        - {agent: s1.m2, value: mean}\n",
         "test.yaml:7: synthesis.combine[0].estimates[1]: weight: confidence needs the key 'confidence' (a field)"},
        {"synthesis:\n  combine:\n    - id: x\n      weight: sample_size\n      estimates:\n"
         "        - {agent: s1.m1, value: mean, weight: 2}\n        - {agent: s1.m2, value: mean}\n",
         "test.yaml:6: synthesis.combine[0].estimates[0].weight: unknown key 'weight' (allowed: agent, value, count, "
         "variance, confidence)"},
        {"synthesis:\n  combine:\n    - id: x\n      weight: sample_size\n      estimates: [{agent: s1.m1, value: "
         "mean}, {agent: s1.m2, value: mean}]\n    - id: x\n      weight: sample_size\n      estimates: [{agent: "
         "s1.m1, value: mean}, {agent: s1.m2, value: mean}]\n",
         "test.yaml:6: synthesis.combine[1].id: combine id 'x' is used twice (line 3)"},
        {"synthesis:\n  conflicts: {resolve: vote}\n",
         "test.yaml:2: synthesis.conflicts.resolve: unknown value 'vote' (allowed: priority, confidence, escalate)"},
        {"synthesis:\n  conflicts: {resolve: confidence, priority: [perf]}\n",
         "test.yaml:2: synthesis.conflicts.priority: applies only to resolve: priority (resolve is confidence)"},
        {"synthesis:\n  conflicts:\n    resolve: priority\n",
         "test.yaml:3: synthesis.conflicts.resolve: resolve: priority needs priority: [ASPECT, ...] (the first "
         "listed wins)"},
        {"synthesis:\n  conflicts:\n    resolve: priority\n    priority:\n      - perf\n      - secu\n",
         "test.yaml:6: synthesis.conflicts.priority[1]: no aspect 'secu' in any stage"},
        {"synthesis:\n  conflicts:\n    resolve: priority\n    priority: [perf, perf]\n",
         "test.yaml:4: synthesis.conflicts.priority[1]: aspect 'perf' is listed twice"},
        {"synthesis:\n  conflicts: {resolve: priority, priority: []}\n",
         "test.yaml:2: synthesis.conflicts.priority: expected a non-empty list of aspect names"},
        {"synthesis:\n  conflicts: {resolv: priority}\n",
         "test.yaml:2: synthesis.conflicts.resolv: unknown key 'resolv'; did you mean 'resolve'? (allowed: resolve, "
         "priority)"},
    };
    tagent ag[] = {{"s1", "perf", "m1", 1, {"service"}, m1_json},
                   {"s1", "sec", "m2", 1, {"service"}, m2_json},
                   {"s1", NULL, "tot", 0, {NULL}, "{\"mean\":1}"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        fixture f;
        fx_build(&f, cases[i].yaml, ag, 3);
        sf_error_clear();
        assert_int_equal(sf_synth_check(&f.in), SF_ERR_CONFIG);
        if (strcmp(sf_error_message(), cases[i].msg) != 0)
            fail_msg("case %zu:\n got  %s\n want %s", i, sf_error_message(), cases[i].msg);
        fx_fini(&f);
    }

    /* A field no group has: found when the results are read. */
    fixture f;
    fx_build(&f,
             "synthesis:\n  combine:\n    - id: x\n      weight: inverse_variance\n      estimates:\n"
             "        - {agent: s1.m1, value: mean}\n        - {agent: s1.m2, value: mean, variance: var}\n",
             ag, 3);
    assert_int_equal(sf_synth_check(&f.in), SF_OK);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "test.yaml:7: synthesis.combine[0].estimates[1].variance: no group in "
                                            "the result of agent 's1.m2' has a field 'var'");
    fx_fini(&f);
}

/* ---- quality and consistency checks ---------------------------------------------------------------- */

typedef struct fake_group {
    const uint8_t *key;
    size_t len;
    double count, rows;
} fake_group;

typedef struct fake_state {
    bool has_count, has_rows;
    double count, rows;
    int ngroups;
    const fake_group *groups;
} fake_state;

static sf_status fake_stat(const void *state, const uint8_t *key, size_t keylen, const char *name, double *out)
{
    const fake_state *s = state;
    bool count = strcmp(name, "count") == 0, rows = strcmp(name, "rows") == 0;
    if (!(count && s->has_count) && !(rows && s->has_rows))
        return sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "fake: no statistic '%s'", name);
    if (key == NULL) {
        *out = count ? s->count : s->rows;
        return SF_OK;
    }
    for (int i = 0; i < s->ngroups; i++) {
        if (s->groups[i].len == keylen && memcmp(s->groups[i].key, key, keylen) == 0) {
            *out = count ? s->groups[i].count : s->groups[i].rows;
            return SF_OK;
        }
    }
    return sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "fake: unknown group");
}

static const sf_agent_ops fake_ops = {.abi_version = SF_AGENT_ABI_VERSION, .name = "fake", .stat = fake_stat};
static const sf_agent_ops nostat_ops = {.abi_version = SF_AGENT_ABI_VERSION, .name = "nostat"};

/* {"groups": {KEY: {"count": 1}}} for printed keys. */
static char *groups_json(const char *const *keys, int n)
{
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    sf_json_key(&j, "groups");
    sf_json_obj_begin(&j);
    for (int i = 0; i < n; i++) {
        sf_json_key(&j, keys[i]);
        sf_json_obj_begin(&j);
        sf_json_key(&j, "count");
        sf_json_int(&j, 1);
        sf_json_obj_end(&j);
    }
    sf_json_obj_end(&j);
    sf_json_obj_end(&j);
    char *s = malloc(j.out.len + 1);
    memcpy(s, j.out.data, j.out.len);
    s[j.out.len] = '\0';
    sf_json_fini(&j);
    return s;
}

static const sf_jv *check_at(const sf_jv *checks, size_t i, const char *check, const char *scope)
{
    const sf_jv *x = sf_jv_at(checks, i);
    assert_non_null(x);
    assert_string_equal(str(x, "check"), check);
    assert_string_equal(str(x, "scope"), scope);
    return x;
}

static void test_consistency_checks(void **st)
{
    (void)st;
    sf_schema schema;
    sf_schema_init(&schema);
    assert_int_equal(sf_schema_add(&schema, "name", SF_STRING), SF_OK);
    assert_int_equal(sf_schema_add(&schema, "n", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(&schema, "t", SF_TIMESTAMP), SF_OK);
    static const int by_g[] = {0, 1}, by_h[] = {0}, by_t[] = {2};

    /* Canonical keys, byte by byte: tag 1, u32 length, bytes for a string;
     * tag 1 and 8 little-endian bytes for a number; tag 0 for a null. */
    static const uint8_t kg1[] = {1, 3, 0, 0, 0, 'a', '|', 'x', 1, 1, 0, 0, 0, 0, 0, 0, 0};
    static const uint8_t kg2[] = {0, 1, 0xFB, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}; /* null, -5 */
    static const uint8_t kh1[] = {1, 1, 0, 0, 0, 'p'};
    static const uint8_t kh2[] = {1, 2, 0, 0, 0, '\\', 'q'};
    /* 2026-01-01T00:00:01 = 1767225601000000 us = 0x00064748462F8240. */
    static const uint8_t kt1[] = {1, 0x40, 0x82, 0x2F, 0x46, 0x48, 0x47, 0x06, 0x00};
    const fake_group gg[] = {{kg1, sizeof kg1, 3, 4}, {kg2, sizeof kg2, 4, 5}};
    const fake_group gh[] = {{kh1, sizeof kh1, 3, 0}, {kh2, sizeof kh2, 4, 0}};
    const fake_group gt[] = {{kt1, sizeof kt1, 6, 6}};
    const fake_state sa = {true, true, 100, 120, 0, NULL}, sb = {true, true, 100, 120, 0, NULL},
                     sc = {true, true, 7, 9, 0, NULL}, sd = {true, true, 90, 119, 0, NULL},
                     sg = {true, true, 7, 9, 2, gg}, sh = {true, false, 10, 0, 2, gh},
                     sx = {true, true, 55, 60, 0, NULL}, st_ = {true, true, 6, 6, 1, gt};
    sf_agent_config cg, ch, ct;
    memset(&cg, 0, sizeof cg);
    cg.schema = &schema;
    cg.nby = 2;
    cg.by_col = by_g;
    ch = cg;
    ch.nby = 1;
    ch.by_col = by_h;
    ct = cg;
    ct.nby = 1;
    ct.by_col = by_t;
    const char *gkeys[] = {"\\N|-5", "a\\|x|1"}, *hkeys[] = {"\\\\q", "p"}, *tkeys[] = {"2026-01-01T00:00:01"};
    char *gj = groups_json(gkeys, 2), *hj = groups_json(hkeys, 2), *tj = groups_json(tkeys, 1);
    const char *lat = "latency", *err = "status >= 500";
    tagent ag[] = {
        {"s1", NULL, "A", 0, {NULL}, "{}"},       {"s1", NULL, "B", 0, {NULL}, "{}"},
        {"s1", NULL, "C", 0, {NULL}, "{}"},       {"s1", NULL, "D", 0, {NULL}, "{}"},
        {"s1", NULL, "E", 0, {NULL}, "{}"},       {"s1", NULL, "G", 2, {"name", "n"}, gj},
        {"s1", NULL, "H", 1, {"name"}, hj},       {"s1", NULL, "T", 1, {"t"}, tj},
        {"s2", NULL, "X", 0, {NULL}, "{}"},
    };
    const textra ex[] = {
        {lat, NULL, &fake_ops, NULL, &sa},      {lat, NULL, &fake_ops, NULL, &sb},
        {lat, err, &fake_ops, NULL, &sc},       {"bytes", NULL, &fake_ops, NULL, &sd},
        {lat, NULL, &nostat_ops, NULL, &sa},    {lat, err, &fake_ops, &cg, &sg},
        {"other", "x > 1", &fake_ops, &ch, &sh}, {"other", "t > 0", &fake_ops, &ct, &st_},
        {lat, NULL, &fake_ops, NULL, &sx},
    };
    fixture f;
    fx_build(&f, "name: q\n", ag, 9);
    fx_extra(&f, ex, 9);
    f.in.coverage = (sf_synth_coverage){.shards_done = 3, .shards_total = 4, .rows_done = 0, .rows_total = 0};
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *qual = sf_jv_get(sf_jv_root(d), "quality");

    /* Coverage: rows unknown (null), so the share is the shards'. */
    const sf_jv *cov = sf_jv_get(qual, "coverage");
    assert_true(num(cov, "shards") == 0.75);
    assert_int_equal(sf_jv_type_of(sf_jv_get(cov, "rows")), SF_JV_NULL);
    assert_true(num(cov, "share") == 0.75);
    assert_true(num(cov, "shards_done") == 3 && num(cov, "shards_total") == 4);

    const sf_jv *agents = sf_jv_get(qual, "agents");
    assert_int_equal(sf_jv_len(agents), 9);
    assert_close(num(sf_jv_get(agents, "s1.A"), "confidence"), 0.75 * (1 - 1 / sqrt(101.0)));
    assert_true(num(sf_jv_get(agents, "s1.A"), "coverage") == 0.75);
    assert_int_equal(sf_jv_type_of(sf_jv_get(sf_jv_get(agents, "s1.E"), "confidence")), SF_JV_NULL);

    const sf_jv *checks = sf_jv_get(qual, "checks");
    assert_int_equal(sf_jv_len(checks), 9);
    const sf_jv *x = check_at(checks, 0, "count", "agents");
    const char *ab[] = {"s1.A", "s1.B"}, *cg_[] = {"s1.C", "s1.G"}, *abd[] = {"s1.A", "s1.B", "s1.D"};
    assert_strs(sf_jv_get(x, "agents"), ab, 2);
    assert_true(flag(x, "ok"));
    assert_int_equal(sf_jv_type_of(sf_jv_get(x, "where")), SF_JV_NULL);
    assert_string_equal(str(x, "column"), "latency");
    x = check_at(checks, 1, "count", "agents");
    assert_strs(sf_jv_get(x, "agents"), cg_, 2);
    assert_string_equal(str(x, "where"), err);
    assert_true(flag(x, "ok"));
    x = check_at(checks, 2, "rows", "agents");
    assert_strs(sf_jv_get(x, "agents"), abd, 3);
    assert_false(flag(x, "ok"));
    assert_true(num_at(sf_jv_get(x, "values"), 2) == 119);
    x = check_at(checks, 3, "rows", "agents");
    assert_strs(sf_jv_get(x, "agents"), cg_, 2);
    assert_true(flag(x, "ok"));
    /* G: 3 + 4 == 7 and 4 + 5 == 9; H: 3 + 4 != 10; T: one timestamp key. */
    x = check_at(checks, 4, "count", "groups");
    assert_string_equal(sf_jv_str(sf_jv_at(sf_jv_get(x, "agents"), 0), NULL), "s1.G");
    assert_true(flag(x, "ok"));
    assert_true(num_at(sf_jv_get(x, "values"), 0) == 7 && num_at(sf_jv_get(x, "values"), 1) == 7);
    x = check_at(checks, 5, "rows", "groups");
    assert_true(flag(x, "ok"));
    assert_true(num_at(sf_jv_get(x, "values"), 0) == 9);
    x = check_at(checks, 6, "count", "groups");
    assert_string_equal(sf_jv_str(sf_jv_at(sf_jv_get(x, "agents"), 0), NULL), "s1.H");
    assert_false(flag(x, "ok"));
    assert_true(num_at(sf_jv_get(x, "values"), 0) == 7 && num_at(sf_jv_get(x, "values"), 1) == 10);
    assert_null(sf_jv_get(x, "error"));
    x = check_at(checks, 7, "count", "groups");
    assert_string_equal(sf_jv_str(sf_jv_at(sf_jv_get(x, "agents"), 0), NULL), "s1.T");
    assert_true(flag(x, "ok"));
    x = check_at(checks, 8, "rows", "groups");
    assert_true(flag(x, "ok"));
    assert_true(num_at(sf_jv_get(x, "values"), 0) == 6);
    assert_true(num(qual, "checks_failed") == 2);
    sf_jv_destroy(&d);
    fx_fini(&f);

    /* A printed key the state does not know fails its check with a reason;
     * one that does not parse back for the column types as well. */
    const char *bad[] = {"a\\|x|1", "zz|1"};
    char *bj = groups_json(bad, 2);
    const char *badint[] = {"p|1.5"};
    char *bij = groups_json(badint, 1);
    tagent ag2[] = {{"s1", NULL, "G", 2, {"name", "n"}, bj}, {"s1", NULL, "I", 2, {"name", "n"}, bij}};
    const textra ex2[] = {{lat, NULL, &fake_ops, &cg, &sg}, {"x", NULL, &fake_ops, &cg, &sg}};
    fx_build(&f, "name: q\n", ag2, 2);
    fx_extra(&f, ex2, 2);
    assert_int_equal(fx_write(&f, &d), SF_OK);
    checks = sf_jv_get(sf_jv_get(sf_jv_root(d), "quality"), "checks");
    /* G and I have the same where: (none): their rows agree. */
    x = check_at(checks, 0, "rows", "agents");
    assert_true(flag(x, "ok"));
    x = check_at(checks, 1, "count", "groups");
    assert_false(flag(x, "ok"));
    assert_string_equal(str(x, "error"), "the state does not know group \"zz|1\"");
    assert_true(num_at(sf_jv_get(x, "values"), 0) == 3);
    x = check_at(checks, 3, "count", "groups");
    assert_false(flag(x, "ok"));
    assert_string_equal(str(x, "error"), "group key \"p|1.5\" does not map back to key bytes");
    assert_true(num(sf_jv_get(sf_jv_root(d), "quality"), "checks_failed") == 4);
    sf_jv_destroy(&d);
    fx_fini(&f);
    free(bj);
    free(bij);
    free(gj);
    free(hj);
    free(tj);
    sf_schema_fini(&schema);
}


/* ---- a workflow file through the loader ------------------------------------------------------------ */

static const char *const wf_text =
    "name: wf\n"
    "input: {format: synthetic, rows: 1000}\n"
    "stages:\n"
    "  - name: scan\n"
    "    agents:\n"
    "      - {agent: stats, id: all, column: latency_ms}\n"
    "    aspects:\n"
    "      - name: performance\n"
    "        agents:\n"
    "          - {agent: stats, id: lat, column: latency_ms, by: [service]}\n"
    "        findings:\n"
    "          - id: slow\n"
    "            agent: lat\n"
    "            metric: mean\n"
    "            above: 2\n"
    "            relative_to: median\n"
    "            severity: %s\n"
    "            evidence: [{agent: all, metric: mean}]\n"
    "      - name: technical\n"
    "        agents:\n"
    "          - {agent: stats, id: bytes, column: bytes, by: [service]}\n"
    "        findings:\n"
    "          - {id: big, agent: bytes, metric: mean, above: 1000, severity: high}\n"
    "synthesis:\n"
    "  conflicts:\n"
    "    resolve: priority\n"
    "    priority: [technical, performance]\n";

/* The agents of a loaded workflow with their results (by id). */
static int wf_agents(const sf_workflow *w, sf_synth_agent *out, const char *const *ids, const char *const *json,
                     int njson)
{
    int n = 0;
    for (int s = 0; s < w->nstages; s++) {
        const sf_stage_config *st = &w->stages[s];
        for (int a = 0; a < st->nagents; a++) {
            const sf_agent_spec *sp = &st->agents[a];
            sf_synth_agent *x = &out[n++];
            memset(x, 0, sizeof *x);
            x->stage = st->name;
            x->aspect = sp->aspect >= 0 ? st->aspects[sp->aspect].name : NULL;
            x->id = sp->id;
            x->agent = sp->agent;
            x->column = sp->column;
            x->where = sp->where;
            x->nby = sp->nby;
            x->by = (const char *const *)sp->by;
            x->line = sp->line;
            for (int k = 0; k < njson; k++)
                if (strcmp(ids[k], sp->id) == 0) {
                    x->json = json[k];
                    x->json_len = strlen(json[k]);
                }
        }
    }
    return n;
}

/* Writes text to a temporary file (in TMPDIR, else the working directory),
 * loads it and removes it; path receives the name messages use. */
static sf_status wf_load(const char *text, char *path, size_t cap, sf_workflow **w)
{
    const char *base = getenv("TMPDIR");
    snprintf(path, cap, "%s/sf_test_synth_XXXXXX", base && base[0] ? base : ".");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    FILE *f = fdopen(fd, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    sf_status rc = sf_workflow_load(path, 0, NULL, w);
    remove(path);
    return rc;
}

static void test_workflow_file(void **st)
{
    (void)st;
    char text[4096], path[512];
    snprintf(text, sizeof text, wf_text, "critical");
    sf_workflow *w = NULL;
    sf_status rc = wf_load(text, path, sizeof path, &w);
    if (rc != SF_OK) fail_msg("load: %s", sf_error_message());
    const char *ids[] = {"all", "lat", "bytes"};
    const char *json[] = {"{\"count\":40,\"mean\":30}",
                          "{\"groups\":{\"api\":{\"count\":10,\"mean\":10},\"auth\":{\"count\":10,\"mean\":20},"
                          "\"cart\":{\"count\":10,\"mean\":90}}}",
                          "{\"groups\":{\"api\":{\"count\":10,\"mean\":10},\"cart\":{\"count\":10,\"mean\":5000}}}"};
    sf_synth_agent agents[8];
    sf_synth_input in = {.w = w, .agents = agents};
    in.nagents = wf_agents(w, agents, ids, json, 3);
    assert_int_equal(in.nagents, 3);
    in.coverage = (sf_synth_coverage){1, 1, 40, 40};
    if (sf_synth_check(&in) != SF_OK) fail_msg("check: %s", sf_error_message());
    sf_json j;
    sf_json_init(&j, true);
    sf_json_obj_begin(&j);
    assert_int_equal(sf_synth_write(&in, &j), SF_OK);
    sf_json_obj_end(&j);
    sf_jv_doc *d;
    assert_int_equal(sf_jv_parse((const char *)j.out.data, j.out.len, &d), SF_OK);
    sf_json_fini(&j);
    /* slow: median 20, threshold 40: cart (90). big: cart (5000). Same
     * service, severities critical and high: technical wins by priority. */
    const sf_jv *fs = sf_jv_get(sf_jv_root(d), "findings");
    assert_int_equal(sf_jv_len(fs), 2);
    assert_string_equal(str(sf_jv_at(fs, 0), "aspect"), "performance");
    assert_string_equal(str(sf_jv_get(sf_jv_at(fs, 0), "key_parts"), "service"), "cart");
    assert_true(num(sf_jv_at(fs, 0), "baseline") == 20);
    assert_true(num(sf_jv_get(sf_jv_get(sf_jv_at(fs, 0), "evidence"), "all"), "mean") == 30);
    assert_string_equal(str(sf_jv_at(fs, 1), "aspect"), "technical");
    const sf_jv *x = sf_jv_at(sf_jv_get(synthesis(d), "conflicts"), 0);
    assert_string_equal(str(x, "resolved_by"), "priority");
    assert_true(num(x, "winner") == 1);
    assert_true(flag(sf_jv_at(fs, 0), "overruled"));
    sf_jv_destroy(&d);
    sf_workflow_destroy(&w);

    /* A bad value names the line in the file the loader read. */
    snprintf(text, sizeof text, wf_text, "severe");
    rc = wf_load(text, path, sizeof path, &w);
    if (rc != SF_OK) fail_msg("load: %s", sf_error_message());
    in.w = w;
    in.nagents = wf_agents(w, agents, ids, json, 3);
    assert_int_equal(sf_synth_check(&in), SF_ERR_CONFIG);
    char want[768];
    snprintf(want, sizeof want,
             "%s:17: stages[0].aspects[0].findings[0].severity: unknown value 'severe' (allowed: info, low, medium, "
             "high, critical)",
             path);
    assert_string_equal(sf_error_message(), want);
    sf_workflow_destroy(&w);
}

/* ---- cross-aspect incidents ------------------------------------------------------------------ */

/* Index of the finding of aspect with printed key, -1 if none. */
static int finding_of(sf_jv_doc *d, const char *aspect, const char *key)
{
    const sf_jv *fs = sf_jv_get(sf_jv_root(d), "findings");
    for (size_t i = 0; i < sf_jv_len(fs); i++)
        if (strcmp(str(sf_jv_at(fs, i), "aspect"), aspect) == 0 && strcmp(str(sf_jv_at(fs, i), "key"), key) == 0)
            return (int)i;
    return -1;
}

static double confidence_of(sf_jv_doc *d, int i)
{
    return num(sf_jv_at(sf_jv_get(sf_jv_root(d), "findings"), (size_t)i), "confidence");
}

/* A window result: groups[k] fires (v = vals[k][m]) in minute m; -1 = no bucket. */
static void series_json(char *out, size_t cap, const char *const *keys, const double (*vals)[8], int ng)
{
    size_t at = (size_t)snprintf(out, cap, "{\"bucket_us\":60000000,\"groups\":{");
    for (int g = 0; g < ng; g++) {
        at += (size_t)snprintf(out + at, cap - at, "%s\"%s\":{\"buckets\":{", g ? "," : "", keys[g]);
        bool first = true;
        for (int m = 0; m < 8; m++) {
            if (vals[g][m] < 0) continue;
            char t[64];
            size_t n = sf_timestamp_format(T0 + m * MIN, t, sizeof t);
            t[n] = '\0';
            at += (size_t)snprintf(out + at, cap - at, "%s\"%s\":{\"v\":%g}", first ? "" : ",", t, vals[g][m]);
            first = false;
        }
        at += (size_t)snprintf(out + at, cap - at, "}}");
    }
    snprintf(out + at, cap - at, "}}");
}

static void test_incidents(void **st)
{
    (void)st;
    static char lat[2048], ses[1024], rev[1024], ip[1024];
    const char *lk[] = {"a|eu", "b|eu", "c|us"};
    const double lv[][8] = {
        {3, 3, 0, -1, -1, -1, -1, -1}, {0, 2, 0, -1, -1, -1, -1, -1}, {3, 3, 0, -1, -1, -1, -1, -1}};
    series_json(lat, sizeof lat, lk, lv, 3);
    const char *sk[] = {"eu"};
    const double sv[][8] = {{0, 5, 5, 0, -1, -1, -1, -1}};
    series_json(ses, sizeof ses, sk, sv, 1);
    /* rev (where service == "a"): eu fires in minute 5 only (apart in
     * time), us in minute 0 (about service a in us: c|us is service c). */
    const char *rk[] = {"eu", "us"};
    const double rv[][8] = {{0, 0, 0, 0, 0, 2, 0, -1}, {2, 0, 0, 0, 0, 0, 0, -1}};
    series_json(rev, sizeof rev, rk, rv, 2);
    const char *ik[] = {"10.0.0.1"};
    const double iv[][8] = {{4, 0, -1, -1, -1, -1, -1, -1}};
    series_json(ip, sizeof ip, ik, iv, 1);
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    perf:\n"
                       "      - {id: slow, agent: lat, metric: v, above: 1, severity: high}\n"
                       "    ux:\n"
                       "      - {id: gone, agent: ses, metric: v, above: 1, severity: low}\n"
                       "    biz:\n"
                       "      - {id: rev, agent: rev, metric: v, above: 1, severity: medium}\n"
                       "    sec:\n"
                       "      - {id: ip, agent: ip, metric: v, above: 1, severity: critical}\n";
    tagent ag[] = {{"s1", "perf", "lat", 2, {"service", "region"}, lat},
                   {"s1", "ux", "ses", 1, {"region"}, ses},
                   {"s1", "biz", "rev", 1, {"region"}, rev},
                   {"s1", "sec", "ip", 1, {"client_ip"}, ip}};
    fixture f;
    fx_build(&f, yaml, ag, 4);
    f.agents[2].where = "service == \"a\"";
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    int pa = finding_of(d, "perf", "a|eu"), pb = finding_of(d, "perf", "b|eu"), pc = finding_of(d, "perf", "c|us");
    int ue = finding_of(d, "ux", "eu"), re = finding_of(d, "biz", "eu"), ru = finding_of(d, "biz", "us");
    int si = finding_of(d, "sec", "10.0.0.1");
    assert_true(pa >= 0 && pb >= 0 && pc >= 0 && ue >= 0 && re >= 0 && ru >= 0 && si >= 0);
    /* One incident: a|eu and b|eu meet eu of ux in minute 1 (b|eu joins
     * only through ux). rev's eu is minutes apart, rev's us is about
     * service a where c|us is service c, and the address shares no column. */
    const sf_jv *inc = sf_jv_get(synthesis(d), "incidents");
    assert_int_equal(sf_jv_len(inc), 1);
    const sf_jv *x = sf_jv_at(inc, 0);
    assert_true(num(x, "incident") == 0);
    int want[3] = {pa, pb, ue};
    for (int i = 0; i < 3; i++) /* ascending */
        for (int k = i + 1; k < 3; k++)
            if (want[k] < want[i]) {
                int t = want[i];
                want[i] = want[k];
                want[k] = t;
            }
    const sf_jv *fi = sf_jv_get(x, "findings");
    assert_int_equal(sf_jv_len(fi), 3);
    for (size_t i = 0; i < 3; i++) assert_true(num_at(fi, i) == want[i]);
    const char *asp[] = {"perf", "ux"};
    assert_strs(sf_jv_get(x, "aspects"), asp, 2);
    /* high (perf) and low (ux): the highest, one level up. */
    assert_string_equal(str(x, "severity"), "critical");
    double cp = fmax(confidence_of(d, pa), confidence_of(d, pb)), cu = confidence_of(d, ue);
    assert_close(num(x, "confidence"), 1 - (1 - cp) * (1 - cu));
    /* The consensus pairs among its findings (a|eu, b|eu each with eu of
     * ux: same region, overlapping windows) differ in severity: both
     * conflicts, agreement 0 of 2; the fixture's coverage is 100/100. (The
     * third conflict, rev's us against c|us by region alone, is outside.) */
    assert_int_equal(sf_jv_len(sf_jv_get(synthesis(d), "conflicts")), 3);
    assert_true(num(x, "agreement") == 0);
    assert_true(num(x, "coverage") == 1);
    const sf_jv *subj = sf_jv_get(x, "subject");
    const char *svc[] = {"a", "b"};
    assert_strs(sf_jv_get(subj, "service"), svc, 2);
    assert_string_equal(str(subj, "region"), "eu");
    /* Windows: a|eu [0, 2), b|eu [1, 2), ux [1, 3) minutes. */
    char t0[64], t3[64];
    t0[sf_timestamp_format(T0, t0, sizeof t0)] = '\0';
    t3[sf_timestamp_format(T0 + 3 * MIN, t3, sizeof t3)] = '\0';
    assert_string_equal(str(sf_jv_get(x, "window"), "start"), t0);
    assert_string_equal(str(sf_jv_get(x, "window"), "end"), t3);
    const sf_jv *ev = sf_jv_get(x, "evidence");
    assert_int_equal(sf_jv_len(ev), 2);
    assert_string_equal(str(sf_jv_at(ev, 0), "rule"), "slow");
    assert_true(num(sf_jv_at(ev, 0), "findings") == 2);
    /* The strongest of perf's two: a|eu (3 against 2, same threshold). */
    assert_true(num(sf_jv_at(ev, 0), "strongest") == pa);
    assert_true(num(sf_jv_at(ev, 0), "value") == 3);
    assert_string_equal(str(sf_jv_at(ev, 1), "rule"), "gone");
    assert_non_null(strstr(str(x, "title"), "2 values of service, region eu"));
    sf_jv_destroy(&d);
    fx_fini(&f);

    /* A where: equality makes the subject: err (by service) and loss (by
     * region, where service == "a" and status == 500) meet in minute 0;
     * under "or" nothing is certain, and odd (where service == "b") names
     * another service. Two findings of one aspect never make an incident. */
    static char err[1024], loss[1024], other[1024], odd[1024];
    const char *ek[] = {"a"};
    const double ev1[][8] = {{2, 0, -1, -1, -1, -1, -1, -1}};
    series_json(err, sizeof err, ek, ev1, 1);
    const char *xk[] = {"us"};
    const double xv[][8] = {{2, 0, -1, -1, -1, -1, -1, -1}};
    series_json(loss, sizeof loss, xk, xv, 1);
    series_json(other, sizeof other, xk, xv, 1);
    series_json(odd, sizeof odd, xk, xv, 1);
    const char *yaml2 = "findings:\n"
                        "  s1:\n"
                        "    tech:\n"
                        "      - {id: err, agent: err, metric: v, above: 1, severity: critical}\n"
                        "    biz:\n"
                        "      - {id: loss, agent: loss, metric: v, above: 1, severity: critical}\n"
                        "    ux:\n"
                        "      - {id: other, agent: other, metric: v, above: 1}\n"
                        "    sec:\n"
                        "      - {id: odd, agent: odd, metric: v, above: 1}\n";
    tagent ag2[] = {{"s1", "tech", "err", 1, {"service"}, err},
                    {"s1", "biz", "loss", 1, {"region"}, loss},
                    {"s1", "ux", "other", 1, {"region"}, other},
                    {"s1", "sec", "odd", 1, {"region"}, odd}};
    const char *loss_where = "service == \"a\" and (status == 500)", *odd_where = "service == 'b' and status >= 500";
    fx_build(&f, yaml2, ag2, 4);
    f.agents[1].where = loss_where;
    f.agents[2].where = "service == \"a\" or region == \"x\"";
    f.agents[3].where = odd_where;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    inc = sf_jv_get(synthesis(d), "incidents");
    int te = finding_of(d, "tech", "a"), bl = finding_of(d, "biz", "us"), uo = finding_of(d, "ux", "us"),
        so = finding_of(d, "sec", "us");
    assert_true(te >= 0 && bl >= 0 && uo >= 0 && so >= 0);
    assert_int_equal(sf_jv_len(inc), 1);
    x = sf_jv_at(inc, 0);
    /* other (ux, region us, no equality: every service) joins loss by
     * region; odd (sec) is about service b, which contradicts loss and
     * tech, but it shares the region with other: links are pairwise, so
     * odd joins through other, and the subject names both services. Only
     * loss's filter has an equality on status (odd's >= is none). */
    subj = sf_jv_get(x, "subject");
    const char *ab[] = {"a", "b"};
    assert_strs(sf_jv_get(subj, "service"), ab, 2);
    assert_string_equal(str(subj, "region"), "us");
    assert_string_equal(str(subj, "status"), "500");
    fi = sf_jv_get(x, "findings");
    assert_int_equal(sf_jv_len(fi), 4);
    /* Both critical: stays critical. */
    assert_string_equal(str(x, "severity"), "critical");
    sf_jv_destroy(&d);
    fx_fini(&f);

    /* Without the ux finding odd stays out: tech and biz only. */
    const char *yaml3 = "findings:\n"
                        "  s1:\n"
                        "    tech:\n"
                        "      - {id: err, agent: err, metric: v, above: 1, severity: high}\n"
                        "    biz:\n"
                        "      - {id: loss, agent: loss, metric: v, above: 1, severity: high}\n"
                        "    sec:\n"
                        "      - {id: odd, agent: odd, metric: v, above: 1}\n";
    tagent ag3[] = {ag2[0], ag2[1], ag2[3]};
    fx_build(&f, yaml3, ag3, 3);
    f.agents[1].where = loss_where;
    f.agents[2].where = odd_where;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    inc = sf_jv_get(synthesis(d), "incidents");
    assert_int_equal(sf_jv_len(inc), 1);
    fi = sf_jv_get(sf_jv_at(inc, 0), "findings");
    assert_int_equal(sf_jv_len(fi), 2);
    te = finding_of(d, "tech", "a");
    bl = finding_of(d, "biz", "us");
    assert_true(num_at(fi, 0) == (te < bl ? te : bl) && num_at(fi, 1) == (te < bl ? bl : te));
    assert_string_equal(str(sf_jv_at(inc, 0), "severity"), "critical");
    /* Joined through a where: equality, not a consensus pair: agreement 1
     * (the one conflict, loss against odd by region, is not inside). */
    assert_int_equal(sf_jv_len(sf_jv_get(synthesis(d), "conflicts")), 1);
    assert_true(num(sf_jv_at(inc, 0), "agreement") == 1);
    sf_jv_destroy(&d);
    fx_fini(&f);

    /* Findings of one aspect only: no incident. */
    const char *yaml4 = "findings:\n  s1:\n    perf:\n      - {id: slow, agent: lat, metric: v, above: 1}\n";
    tagent one[] = {ag[0]};
    fx_build(&f, yaml4, one, 1);
    assert_int_equal(fx_write(&f, &d), SF_OK);
    assert_int_equal(sf_jv_len(sf_jv_get(synthesis(d), "incidents")), 0);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_combine),
        cmocka_unit_test(test_conflict_resolution),
        cmocka_unit_test(test_confidence_tie),
        cmocka_unit_test(test_subjects),
        cmocka_unit_test(test_incidents),
        cmocka_unit_test(test_synthesis_config_errors),
        cmocka_unit_test(test_consistency_checks),
        cmocka_unit_test(test_workflow_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
