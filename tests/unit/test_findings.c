/* Unit tests of the findings rules (synth/findings.c) through
 * sf_synth_check and sf_synth_write, on hand-written agent results.
 * Expected findings are worked out by hand from the data (which leaves
 * fire, medians, windows) and confidences from the closed form
 * (1 - 1 / (1 + |v / t - 1| sqrt(b))) * coverage. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/batch.h"
#include "shardflow/json.h"
#include "shardflow/jsonv.h"
#include "shardflow/synth.h"

#include "flow/yaml_tree.h"

#include "synth_testkit.h"

/* ---- reading the output ---------------------------------------------------- */

static const sf_jv *findings_of(sf_jv_doc *d) { return sf_jv_get(sf_jv_root(d), "findings"); }

static double expect_conf(double v, double t, int b, double cov)
{
    double excess = t != 0 ? fabs(v / t - 1) * sqrt((double)b) : INFINITY;
    return (isinf(excess) ? 1.0 : 1.0 - 1.0 / (1.0 + excess)) * cov;
}

static void iso(int64_t us, char *buf)
{
    size_t n = sf_timestamp_format(us, buf, 64);
    buf[n] = '\0';
}

static void assert_window(const sf_jv *f, int64_t start, int64_t end)
{
    char a[64], b[64];
    iso(start, a);
    iso(end, b);
    const sf_jv *w = sf_jv_get(f, "window");
    assert_non_null(w);
    assert_string_equal(str(w, "start"), a);
    assert_string_equal(str(w, "end"), b);
}

/* A window-style result: groups (or the top level with key NULL) of
 * buckets at T0 + idx[i] minutes with value vals[i] of field `field` and
 * count cnt[i]. */
typedef struct series {
    const char *key;
    int n;
    int idx[12];
    double vals[12];
    double cnt[12];
} series;

static char *series_json(const char *field, const series *s, int ns)
{
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    sf_json_key(&j, "bucket_us");
    sf_json_int(&j, MIN);
    bool grouped = s[0].key != NULL;
    if (grouped) {
        sf_json_key(&j, "groups");
        sf_json_obj_begin(&j);
    }
    for (int g = 0; g < ns; g++) {
        if (grouped) {
            sf_json_key(&j, s[g].key);
            sf_json_obj_begin(&j);
        }
        sf_json_key(&j, "buckets");
        sf_json_obj_begin(&j);
        for (int i = 0; i < s[g].n; i++) {
            char t[64];
            iso(T0 + s[g].idx[i] * MIN, t);
            sf_json_key(&j, t);
            sf_json_obj_begin(&j);
            sf_json_key(&j, "count");
            sf_json_num(&j, s[g].cnt[i]);
            sf_json_key(&j, field);
            sf_json_num(&j, s[g].vals[i]);
            sf_json_obj_end(&j);
        }
        sf_json_obj_end(&j);
        if (grouped) sf_json_obj_end(&j);
    }
    if (grouped) sf_json_obj_end(&j);
    sf_json_obj_end(&j);
    assert_int_equal(j.rc, SF_OK);
    char *out = malloc(j.out.len + 1);
    memcpy(out, j.out.data, j.out.len);
    out[j.out.len] = '\0';
    sf_json_fini(&j);
    return out;
}

/* ---- tests ---------------------------------------------------------------------- */

static void test_absolute_rules(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    perf:\n"
                       "      - {id: slow, agent: lat, metric: mean, above: 100, severity: high, title: Slow service}\n"
                       "      - {id: fast, agent: lat, metric: mean, below: 20}\n";
    tagent ag[] = {{"s1", "perf", "lat", 1, {"service"},
                    "{\"groups\":{\"a\":{\"count\":10,\"mean\":10},\"b\":{\"count\":10,\"mean\":50},"
                    "\"c\":{\"count\":10,\"mean\":200},\"d\":{\"count\":0,\"mean\":null}}}"}};
    fixture f;
    fx_build(&f, yaml, ag, 1);
    assert_int_equal(sf_synth_check(&f.in), SF_OK);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    assert_int_equal(sf_jv_len(fs), 2);
    const sf_jv *x = sf_jv_at(fs, 0);
    assert_string_equal(str(x, "stage"), "s1");
    assert_string_equal(str(x, "aspect"), "perf");
    assert_string_equal(str(x, "rule"), "slow");
    assert_string_equal(str(x, "agent"), "lat");
    assert_string_equal(str(x, "title"), "Slow service");
    assert_string_equal(str(x, "severity"), "high");
    assert_string_equal(str(x, "direction"), "above");
    assert_string_equal(str(x, "key"), "c");
    assert_string_equal(str(sf_jv_get(x, "key_parts"), "service"), "c");
    assert_null(sf_jv_get(x, "window"));
    assert_null(sf_jv_get(x, "baseline"));
    assert_true(num(x, "value") == 200);
    assert_true(num(x, "threshold") == 100);
    assert_true(num(x, "buckets") == 1);
    assert_close(num(x, "confidence"), expect_conf(200, 100, 1, 1.0));
    x = sf_jv_at(fs, 1);
    assert_string_equal(str(x, "rule"), "fast");
    assert_string_equal(str(x, "title"), "fast"); /* default: the id */
    assert_string_equal(str(x, "severity"), "medium");
    assert_string_equal(str(x, "direction"), "below");
    assert_string_equal(str(x, "key"), "a");
    assert_true(num(x, "value") == 10);
    assert_close(num(x, "confidence"), expect_conf(10, 20, 1, 1.0));
    sf_jv_destroy(&d);

    /* Half the rows processed: every confidence halves. */
    f.in.coverage.rows_done = 50;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    assert_close(num(sf_jv_at(findings_of(d), 0), "confidence"), expect_conf(200, 100, 1, 0.5));
    assert_close(num(sf_jv_get(sf_jv_get(sf_jv_root(d), "quality"), "coverage"), "share"), 0.5);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

static void test_relative_rules(void **st)
{
    (void)st;
    const char *yaml =
        "findings:\n"
        "  s1:\n"
        "    perf:\n"
        "      - {id: counted, agent: lat, metric: mean, above: 3, relative_to: median, min_count: 5}\n"
        "      - {id: all, agent: lat, metric: mean, above: 3, relative_to: median}\n"
        "      - {id: floor, agent: lat, metric: mean, above: 1.5, relative_to: median, min_value: 500}\n"
        "      - {id: drop_hi_floor, agent: lat, metric: mean, below: 0.5, relative_to: median, min_value: 100}\n"
        "      - {id: drop, agent: lat, metric: mean, below: 0.5, relative_to: median, min_value: 20}\n";
    /* Means 10, 20, 30, 400 with enough count, and 1000 from 2 rows. */
    tagent ag[] = {{"s1", "perf", "lat", 1, {"service"},
                    "{\"groups\":{\"a\":{\"count\":9,\"mean\":10},\"b\":{\"count\":9,\"mean\":20},"
                    "\"c\":{\"count\":9,\"mean\":30},\"d\":{\"count\":9,\"mean\":400},"
                    "\"e\":{\"count\":2,\"mean\":1000}}}"}};
    fixture f;
    fx_build(&f, yaml, ag, 1);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    /* counted: median(10, 20, 30, 400) = 25, threshold 75: d.
     * all: median(10, 20, 30, 400, 1000) = 30, threshold 90: d, e.
     * floor: threshold 45 but the value must reach 500: e.
     * drop_hi_floor: 10 < 15 but the median 30 is below 100: nothing.
     * drop: 10 < 15 and the median 30 reaches 20: a. */
    const char *want[][2] = {{"counted", "d"}, {"all", "d"}, {"all", "e"}, {"floor", "e"}, {"drop", "a"}};
    const double base[] = {25, 30, 30, 30, 30}, thr[] = {75, 90, 90, 45, 15}, val[] = {400, 400, 1000, 1000, 10};
    /* Confidence is measured from the binding gate: floor's min_value 500
     * (above 45); below, min_value gates the median, not the value. */
    const double gate[] = {75, 90, 90, 500, 15};
    assert_int_equal(sf_jv_len(fs), 5);
    for (size_t i = 0; i < 5; i++) {
        const sf_jv *x = sf_jv_at(fs, i);
        assert_string_equal(str(x, "rule"), want[i][0]);
        assert_string_equal(str(x, "key"), want[i][1]);
        assert_true(num(x, "baseline") == base[i]);
        assert_true(num(x, "threshold") == thr[i]);
        assert_true(num(x, "value") == val[i]);
        assert_close(num(x, "confidence"), expect_conf(val[i], gate[i], 1, 1.0));
    }
    sf_jv_destroy(&d);
    fx_fini(&f);
}

static void test_series_coalescing(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    tech:\n"
                       "      - {id: errors, agent: rate, metric: rate, above: 0.1}\n"
                       "      - {id: spike, agent: rate, metric: rate, above: 5, relative_to: median}\n";
    series s[] = {
        /* x: runs at minutes 1-2, 4, 6 (last bucket). */
        {"x", 7, {0, 1, 2, 3, 4, 5, 6}, {0.01, 0.2, 0.3, 0.01, 0.5, 0.01, 0.25}, {9, 9, 9, 9, 9, 9, 9}},
        /* y: minute 2 has no bucket, so 0-1 and 3-4 are two windows. */
        {"y", 4, {0, 1, 3, 4}, {0.3, 0.3, 0.3, 0.3}, {9, 9, 9, 9}},
        /* z: median 0.02 over its own buckets; 0.15 and 0.2 pass 5 x median. */
        {"z", 7, {0, 1, 2, 3, 4, 5, 6}, {0.02, 0.02, 0.02, 0.02, 0.15, 0.2, 0.02}, {9, 9, 9, 9, 9, 9, 9}},
    };
    char *json = series_json("rate", s, 3);
    tagent ag[] = {{"s1", "tech", "rate", 1, {"service"}, json}};
    fixture f;
    fx_build(&f, yaml, ag, 1);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    struct {
        const char *rule, *key;
        int start, end, buckets;
        double value, threshold;
    } want[] = {
        {"errors", "x", 1, 3, 2, 0.3, 0.1},  {"errors", "x", 4, 5, 1, 0.5, 0.1}, {"errors", "x", 6, 7, 1, 0.25, 0.1},
        {"errors", "y", 0, 2, 2, 0.3, 0.1},  {"errors", "y", 3, 5, 2, 0.3, 0.1}, {"errors", "z", 4, 6, 2, 0.2, 0.1},
        {"spike", "z", 4, 6, 2, 0.2, 0.1},
    };
    assert_int_equal(sf_jv_len(fs), 7);
    for (size_t i = 0; i < 7; i++) {
        const sf_jv *x = sf_jv_at(fs, i);
        assert_string_equal(str(x, "rule"), want[i].rule);
        assert_string_equal(str(x, "key"), want[i].key);
        assert_window(x, T0 + want[i].start * MIN, T0 + want[i].end * MIN);
        assert_true(num(x, "buckets") == want[i].buckets);
        assert_true(num(x, "value") == want[i].value);
        assert_close(num(x, "threshold"), want[i].threshold);
        assert_close(num(x, "confidence"), expect_conf(want[i].value, num(x, "threshold"), want[i].buckets, 1.0));
    }
    /* The relative rule's baseline is z's own median, not the other groups'. */
    assert_true(num(sf_jv_at(fs, 6), "baseline") == 0.02);
    sf_jv_destroy(&d);
    fx_fini(&f);
    free(json);
}

static void test_series_min_count_and_ungrouped(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    tech:\n"
                       "      - {id: errors, agent: rate, metric: rate, above: 0.1, min_count: 10}\n";
    /* Minute 1 has too few rows: it neither fires nor joins its neighbours. */
    series s[] = {{NULL, 4, {0, 1, 2, 3}, {0.5, 0.9, 0.5, 0.05}, {10, 3, 10, 10}}};
    char *json = series_json("rate", s, 1);
    tagent ag[] = {{"s1", "tech", "rate", 0, {NULL}, json}};
    fixture f;
    fx_build(&f, yaml, ag, 1);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    assert_int_equal(sf_jv_len(fs), 2);
    assert_window(sf_jv_at(fs, 0), T0, T0 + MIN);
    assert_window(sf_jv_at(fs, 1), T0 + 2 * MIN, T0 + 3 * MIN);
    assert_string_equal(str(sf_jv_at(fs, 0), "key"), "");
    assert_int_equal(sf_jv_type_of(sf_jv_get(sf_jv_at(fs, 0), "key_parts")), SF_JV_OBJ);
    assert_int_equal(sf_jv_len(sf_jv_get(sf_jv_at(fs, 0), "key_parts")), 0);
    sf_jv_destroy(&d);
    fx_fini(&f);
    free(json);
}

static void test_evidence(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    tech:\n"
                       "      - id: errors\n"
                       "        agent: err\n"
                       "        metric: rate\n"
                       "        above: 0.2\n"
                       "        evidence:\n"
                       "          - {agent: lat, metric: mean}\n"
                       "          - {agent: tot, metric: count}\n"
                       "          - {agent: lat2, metric: p}\n"
                       "          - {agent: lat, metric: missing}\n"
                       "          - {agent: lat2, metric: nested.q}\n";
    tagent ag[] = {
        {"s1", "tech", "err", 2, {"service", "region"},
         "{\"groups\":{\"a|eu\":{\"count\":100,\"rate\":0.5},\"a|us\":{\"count\":100,\"rate\":0.01},"
         "\"b|eu\":{\"count\":100,\"rate\":0.3},\"c|eu\":{\"count\":100,\"rate\":0.4}}}"},
        {"s1", "tech", "lat", 1, {"service"}, "{\"groups\":{\"a\":{\"mean\":250},\"b\":{\"mean\":30}}}"},
        {"s1", NULL, "tot", 0, {NULL}, "{\"count\":300,\"mean\":99}"},
        {"s1", NULL, "lat2", 2, {"region", "service"},
         "{\"groups\":{\"eu|a\":{\"p\":1,\"nested\":{\"q\":7}},\"eu|b\":{\"p\":2}}}"},
    };
    fixture f;
    fx_build(&f, yaml, ag, 4);
    assert_int_equal(sf_synth_check(&f.in), SF_OK);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    assert_int_equal(sf_jv_len(fs), 3);
    const sf_jv *e = sf_jv_get(sf_jv_at(fs, 0), "evidence");
    assert_true(num(sf_jv_get(e, "lat"), "mean") == 250);
    assert_int_equal(sf_jv_type_of(sf_jv_get(sf_jv_get(e, "lat"), "missing")), SF_JV_NULL);
    assert_true(num(sf_jv_get(e, "tot"), "count") == 300);
    assert_true(num(sf_jv_get(e, "lat2"), "p") == 1);
    assert_true(num(sf_jv_get(e, "lat2"), "nested.q") == 7);
    /* Members in the order the evidence was listed, one object per agent. */
    assert_string_equal(sf_jv_key_at(e, 0, NULL), "lat");
    assert_string_equal(sf_jv_key_at(e, 2, NULL), "lat2");
    assert_string_equal(sf_jv_key_at(sf_jv_get(e, "lat"), 1, NULL), "missing");
    e = sf_jv_get(sf_jv_at(fs, 1), "evidence");
    assert_true(num(sf_jv_get(e, "lat"), "mean") == 30);
    assert_true(num(sf_jv_get(e, "lat2"), "p") == 2);
    assert_int_equal(sf_jv_type_of(sf_jv_get(sf_jv_get(e, "lat2"), "nested.q")), SF_JV_NULL);
    /* c has no group in lat or lat2. */
    e = sf_jv_get(sf_jv_at(fs, 2), "evidence");
    assert_int_equal(sf_jv_type_of(sf_jv_get(sf_jv_get(e, "lat"), "mean")), SF_JV_NULL);
    assert_true(num(sf_jv_get(e, "tot"), "count") == 300);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

static void test_evidence_series_window(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    tech:\n"
                       "      - {id: errors, agent: rate, metric: rate, above: 0.1,\n"
                       "         evidence: [{agent: lat, metric: mean}]}\n";
    series rs[] = {{"x", 5, {0, 1, 2, 3, 4}, {0.0, 0.5, 0.6, 0.0, 0.0}, {9, 9, 9, 9, 9}}};
    series ls[] = {{"x", 5, {0, 1, 2, 3, 4}, {10, 11, 12, 13, 14}, {9, 9, 9, 9, 9}}};
    char *rj = series_json("rate", rs, 1), *lj = series_json("mean", ls, 1);
    tagent ag[] = {{"s1", "tech", "rate", 1, {"service"}, rj}, {"s1", "tech", "lat", 1, {"service"}, lj}};
    fixture f;
    fx_build(&f, yaml, ag, 2);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    assert_int_equal(sf_jv_len(fs), 1);
    /* The evidence is the buckets inside the window [1, 3). */
    const sf_jv *m = sf_jv_get(sf_jv_get(sf_jv_get(sf_jv_at(fs, 0), "evidence"), "lat"), "mean");
    assert_int_equal(sf_jv_len(m), 2);
    char t1[64], t2[64];
    iso(T0 + MIN, t1);
    iso(T0 + 2 * MIN, t2);
    assert_true(num(m, t1) == 11);
    assert_true(num(m, t2) == 12);
    sf_jv_destroy(&d);
    fx_fini(&f);
    free(rj);
    free(lj);
}

static void test_key_parts(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    perf:\n"
                       "      - {id: big, agent: k, metric: v, above: 0}\n";
    /* Printed keys: parts joined with '|', '|' and '\' escaped, null as \N. */
    const char *keys[] = {"a\\|b|\\N|c\\\\d", "plain|x|", "\\\\N|\\N|\\|"};
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    sf_json_key(&j, "groups");
    sf_json_obj_begin(&j);
    for (int i = 0; i < 3; i++) {
        sf_json_key(&j, keys[i]);
        sf_json_obj_begin(&j);
        sf_json_key(&j, "v");
        sf_json_int(&j, 1);
        sf_json_obj_end(&j);
    }
    sf_json_obj_end(&j);
    sf_json_obj_end(&j);
    char *json = malloc(j.out.len + 1);
    memcpy(json, j.out.data, j.out.len);
    json[j.out.len] = '\0';
    sf_json_fini(&j);

    tagent ag[] = {{"s1", "perf", "k", 3, {"x", "y", "z"}, json}};
    fixture f;
    fx_build(&f, yaml, ag, 1);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    assert_int_equal(sf_jv_len(fs), 3);
    /* Sorted by printed key bytes: "\\N..." < "a\|..." < "plain...". */
    const char *want[3][3] = {{"\\N", NULL, "|"}, {"a|b", NULL, "c\\d"}, {"plain", "x", ""}};
    const char *wkey[3] = {keys[2], keys[0], keys[1]};
    for (int i = 0; i < 3; i++) {
        const sf_jv *x = sf_jv_at(fs, (size_t)i);
        assert_string_equal(str(x, "key"), wkey[i]);
        const sf_jv *kp = sf_jv_get(x, "key_parts");
        assert_int_equal(sf_jv_len(kp), 3);
        const char *cols[3] = {"x", "y", "z"};
        for (int c = 0; c < 3; c++) {
            assert_string_equal(sf_jv_key_at(kp, (size_t)c, NULL), cols[c]);
            if (want[i][c] == NULL) assert_int_equal(sf_jv_type_of(sf_jv_get(kp, cols[c])), SF_JV_NULL);
            else assert_string_equal(str(kp, cols[c]), want[i][c]);
        }
    }
    sf_jv_destroy(&d);
    fx_fini(&f);

    /* A key without the right number of parts is a malformed result. */
    tagent bad[] = {{"s1", "perf", "k", 2, {"x", "y"}, "{\"groups\":{\"a|b|c\":{\"v\":1}}}"}};
    fx_build(&f, yaml, bad, 1);
    assert_int_equal(fx_write(&f, &d), SF_ERR_PARSE);
    assert_non_null(strstr(sf_error_message(), "does not have 2 parts"));
    fx_fini(&f);
    free(json);
}

static void test_sorting(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    perf:\n"
                       "      - {id: r2, agent: a, metric: v, above: 0}\n"
                       "      - {id: r1, agent: a, metric: v, above: 1}\n"
                       "    sec:\n"
                       "      - {id: q, agent: b, metric: v, above: 0}\n"
                       "  s2:\n"
                       "    perf:\n"
                       "      - {id: p, agent: a, metric: v, above: 0}\n";
    const char *ja = "{\"groups\":{\"z\":{\"v\":5},\"a\":{\"v\":5},\"m\":{\"v\":0.5}}}";
    tagent ag[] = {{"s1", "perf", "a", 1, {"k"}, ja},
                   {"s1", "sec", "b", 1, {"k"}, "{\"groups\":{\"b\":{\"v\":1},\"a\":{\"v\":1}}}"},
                   {"s2", "perf", "a", 1, {"k"}, ja}};
    fixture f;
    fx_build(&f, yaml, ag, 3);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    const sf_jv *fs = findings_of(d);
    const char *want[][3] = {{"s1", "r2", "a"}, {"s1", "r2", "m"}, {"s1", "r2", "z"}, {"s1", "r1", "a"},
                             {"s1", "r1", "z"}, {"s1", "q", "a"},  {"s1", "q", "b"},  {"s2", "p", "a"},
                             {"s2", "p", "m"},  {"s2", "p", "z"}};
    assert_int_equal(sf_jv_len(fs), 10);
    for (size_t i = 0; i < 10; i++) {
        const sf_jv *x = sf_jv_at(fs, i);
        assert_string_equal(str(x, "stage"), want[i][0]);
        assert_string_equal(str(x, "rule"), want[i][1]);
        assert_string_equal(str(x, "key"), want[i][2]);
    }
    /* Deterministic: a second evaluation writes the same bytes. */
    sf_json j1, j2;
    sf_json_init(&j1, true);
    sf_json_init(&j2, true);
    sf_json_obj_begin(&j1);
    sf_json_obj_begin(&j2);
    assert_int_equal(sf_synth_write(&f.in, &j1), SF_OK);
    assert_int_equal(sf_synth_write(&f.in, &j2), SF_OK);
    sf_json_obj_end(&j1);
    sf_json_obj_end(&j2);
    assert_int_equal(j1.out.len, j2.out.len);
    assert_memory_equal(j1.out.data, j2.out.data, j1.out.len);
    sf_json_fini(&j1);
    sf_json_fini(&j2);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

static void test_nested_metric(void **st)
{
    (void)st;
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    perf:\n"
                       "      - {id: p99, agent: q, metric: quantiles.0.99, above: 1000}\n";
    tagent ag[] = {{"s1", "perf", "q", 1, {"service"},
                    "{\"groups\":{\"a\":{\"count\":5,\"quantiles\":{\"0.5\":10,\"0.99\":2000}},"
                    "\"b\":{\"count\":5,\"quantiles\":{\"0.5\":10,\"0.99\":900}}}}"}};
    fixture f;
    fx_build(&f, yaml, ag, 1);
    sf_jv_doc *d;
    assert_int_equal(fx_write(&f, &d), SF_OK);
    assert_int_equal(sf_jv_len(findings_of(d)), 1);
    assert_true(num(sf_jv_at(findings_of(d), 0), "value") == 2000);
    sf_jv_destroy(&d);
    fx_fini(&f);
}

/* Each bad rule fails sf_synth_check with the file, line, key path and problem. */
static void test_config_errors(void **st)
{
    (void)st;
    static const struct {
        const char *rule, *msg;
    } cases[] = {
        {"{agent: lat, metric: mean, above: 1}",
         "test.yaml:4: stages[0].aspects[0].findings[0]: missing required key 'id'"},
        {"{id: x, agent: lat, metric: mean, above: 1, sevrity: high}",
         "test.yaml:4: stages[0].aspects[0].findings[0].sevrity: unknown key 'sevrity'; did you mean 'severity'? "
         "(allowed: id, agent, metric, above, below, relative_to, min_count, min_value, severity, title, "
         "evidence)"},
        {"{id: x, agent: nope, metric: mean, above: 1}",
         "test.yaml:4: stages[0].aspects[0].findings[0].agent: no agent 'nope' in stage 's1'"},
        {"{id: x, agent: other, metric: mean, above: 1}",
         "test.yaml:4: stages[0].aspects[0].findings[0].agent: no agent 'other' in stage 's1'"},
        {"{id: x, agent: lat, above: 1}",
         "test.yaml:4: stages[0].aspects[0].findings[0]: missing required key 'metric'"},
        {"{id: x, agent: lat, metric: mean}",
         "test.yaml:4: stages[0].aspects[0].findings[0]: one of 'above' and 'below' is required (the threshold)"},
        {"{id: x, agent: lat, metric: mean, above: 1, below: 2}",
         "test.yaml:4: stages[0].aspects[0].findings[0].below: give one of 'above' and 'below', not both (one rule "
         "per direction)"},
        {"{id: x, agent: lat, metric: mean, above: 1e}",
         "test.yaml:4: stages[0].aspects[0].findings[0].above: expected a number, found '1e'"},
        {"{id: x, agent: lat, metric: mean, above: [1]}",
         "test.yaml:4: stages[0].aspects[0].findings[0].above: expected a number, found a sequence"},
        {"{id: x, agent: lat, metric: mean, above: 1, severity: hgh}",
         "test.yaml:4: stages[0].aspects[0].findings[0].severity: unknown value 'hgh'; did you mean 'high'? "
         "(allowed: info, low, medium, high, critical)"},
        {"{id: x, agent: lat, metric: mean, above: 1, relative_to: mean}",
         "test.yaml:4: stages[0].aspects[0].findings[0].relative_to: unknown value 'mean'; did you mean 'median'? "
         "(allowed: none, median)"},
        {"{id: x, agent: lat, metric: mean, above: 1, min_count: -3}",
         "test.yaml:4: stages[0].aspects[0].findings[0].min_count: expected a non-negative integer, found '-3'"},
        {"{id: x, agent: lat, metric: mean, above: 1, min_value: 5}",
         "test.yaml:4: stages[0].aspects[0].findings[0].min_value: applies only to relative_to: median (an "
         "absolute threshold is already a floor)"},
        {"{id: x, agent: lat, metric: mean, above: -2, relative_to: median}",
         "test.yaml:4: stages[0].aspects[0].findings[0].above: a ratio to the median must not be negative, found -2"},
        {"{id: x, agent: lat, metric: '', above: 1}",
         "test.yaml:4: stages[0].aspects[0].findings[0].metric: must not be empty"},
        {"{id: x, agent: lat, metric: mean, above: 1, evidence: {agent: tot}}",
         "test.yaml:4: stages[0].aspects[0].findings[0].evidence: expected a list of {agent: ID, metric: FIELD}"},
        {"{id: x, agent: lat, metric: mean, above: 1, evidence: [{agent: tot}]}",
         "test.yaml:4: stages[0].aspects[0].findings[0].evidence[0]: missing required key 'metric'"},
        {"{id: x, agent: lat, metric: mean, above: 1, evidence: [{agent: wide, metric: m}]}",
         "test.yaml:4: stages[0].aspects[0].findings[0].evidence[0].agent: agent 'wide' groups by 'region', which "
         "agent 'lat' of the rule does not: evidence is looked up by the rule agent's group key, so its by: "
         "columns must be among the rule agent's"},
        {"{id: x, agent: lat, metric: mean, above: 1, evidence: [{agent: tot, metric: m}, {agent: tot, metric: m}]}",
         "test.yaml:4: stages[0].aspects[0].findings[0].evidence[1].metric: evidence m of agent 'tot' is listed "
         "twice"},
        {"just a string", "test.yaml:4: stages[0].aspects[0].findings[0]: expected a mapping (a finding rule)"},
    };
    tagent ag[] = {{"s1", "perf", "lat", 1, {"service"}, "{}"},
                   {"s1", NULL, "tot", 0, {NULL}, "{}"},
                   {"s1", NULL, "wide", 2, {"service", "region"}, "{}"},
                   {"s2", "perf", "other", 0, {NULL}, "{}"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[1024];
        snprintf(yaml, sizeof yaml, "findings:\n  s1:\n    perf:\n      - %s\n", cases[i].rule);
        fixture f;
        fx_build(&f, yaml, ag, 4);
        sf_error_clear();
        assert_int_equal(sf_synth_check(&f.in), SF_ERR_CONFIG);
        if (strcmp(sf_error_message(), cases[i].msg) != 0)
            fail_msg("case %zu:\n got  %s\n want %s", i, sf_error_message(), cases[i].msg);
        /* sf_synth_write refuses the same configuration. */
        sf_json j;
        sf_json_init(&j, false);
        sf_json_obj_begin(&j);
        assert_int_equal(sf_synth_write(&f.in, &j), SF_ERR_CONFIG);
        sf_json_fini(&j);
        fx_fini(&f);
    }

    /* Lines come from the rule's own keys in block style. */
    const char *yaml = "findings:\n"
                       "  s1:\n"
                       "    perf:\n"
                       "      - id: a\n"
                       "        agent: lat\n"
                       "        metric: mean\n"
                       "        above: 1\n"
                       "      - id: a\n"
                       "        agent: lat\n"
                       "        metric: mean\n"
                       "        below: 1\n";
    fixture f;
    fx_build(&f, yaml, ag, 4);
    assert_int_equal(sf_synth_check(&f.in), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "test.yaml:8: stages[0].aspects[0].findings[1].id: rule id 'a' is used twice in aspect "
                        "'perf' (line 4)");
    fx_fini(&f);

    /* findings: that is not a list. */
    fx_build(&f, "findings:\n  s1:\n    perf: {id: a}\n", ag, 4);
    assert_int_equal(sf_synth_check(&f.in), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "test.yaml:3: stages[0].aspects[0].findings: expected a list of finding rules");
    fx_fini(&f);
}

/* Mistakes only the results reveal fail sf_synth_write with the rule's line. */
static void test_result_errors(void **st)
{
    (void)st;
    tagent ag[] = {{"s1", "perf", "lat", 1, {"service"}, "{\"groups\":{\"a\":{\"count\":3,\"mean\":1}}}"},
                   {"s1", "perf", "nocount", 0, {NULL}, "{\"mean\":3}"},
                   {"s1", "perf", "flat", 1, {"service"}, "{\"mean\":3}"},
                   {"s1", "perf", "nowidth", 0, {NULL}, "{\"buckets\":{\"2026-01-01T00:00:00\":{\"rate\":1}}}"},
                   {"s1", "perf", "badtime", 0, {NULL}, "{\"bucket_us\":60000000,\"buckets\":{\"noon\":{\"rate\":1}}}"},
                   {"s1", "perf", "broken", 0, {NULL}, "{\"mean\":"}};
    static const struct {
        const char *rule, *msg;
        sf_status rc;
    } cases[] = {
        {"{id: x, agent: lat,\n         metric: meen, above: 1}",
         "test.yaml:5: stages[0].aspects[0].findings[0].metric: no result of agent 's1.lat' has a field 'meen' "
         "(fields: count, mean)",
         SF_ERR_CONFIG},
        {"{id: x, agent: nocount, metric: mean, above: 1, min_count: 2}",
         "test.yaml:4: stages[0].aspects[0].findings[0].min_count: the results of agent 's1.nocount' have no count, "
         "rows, sessions or records field",
         SF_ERR_CONFIG},
        {"{id: x, agent: flat, metric: mean, above: 1}",
         "result of agent 's1.flat' (grouped by: columns) has no \"groups\" object", SF_ERR_PARSE},
        {"{id: x, agent: nowidth, metric: rate, above: 0}",
         "result of agent 's1.nowidth' has buckets but no positive integer \"bucket_us\"", SF_ERR_PARSE},
        {"{id: x, agent: badtime, metric: rate, above: 0}",
         "result of agent 's1.badtime': bucket \"noon\" is not a timestamp", SF_ERR_PARSE},
        {"{id: x, agent: broken, metric: rate, above: 0}",
         "result of agent 's1.broken': JSON line 1, column 9: value expected, found the end of the text",
         SF_ERR_PARSE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char yaml[512];
        snprintf(yaml, sizeof yaml, "findings:\n  s1:\n    perf:\n      - %s\n", cases[i].rule);
        fixture f;
        fx_build(&f, yaml, ag, 6);
        assert_int_equal(sf_synth_check(&f.in), SF_OK);
        sf_jv_doc *d;
        assert_int_equal(fx_write(&f, &d), cases[i].rc);
        if (strcmp(sf_error_message(), cases[i].msg) != 0)
            fail_msg("case %zu:\n got  %s\n want %s", i, sf_error_message(), cases[i].msg);
        fx_fini(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_absolute_rules),
        cmocka_unit_test(test_relative_rules),
        cmocka_unit_test(test_series_coalescing),
        cmocka_unit_test(test_series_min_count_and_ungrouped),
        cmocka_unit_test(test_evidence),
        cmocka_unit_test(test_evidence_series_window),
        cmocka_unit_test(test_key_parts),
        cmocka_unit_test(test_sorting),
        cmocka_unit_test(test_nested_metric),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_result_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
