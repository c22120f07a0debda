/* Unit tests of the `quantiles` agent (agents/quantiles.c). Expectations come
 * from exact sorted references (every estimate within alpha relative of the
 * true order statistic), exact counts and extremes, closed-form bin
 * representatives, and a second path through the agent (ungrouped states
 * over the rows of one key against the grouped state). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/sketch_agents.h"
#include "flow/yaml_tree.h"

#include "agent_testkit.h"

enum { COL_V, COL_K, COL_N, COL_S, NCOLS };

static const sf_agent_ops *ops = &sf__agent_quantiles;
static sf_schema schema;

static double normal(void)
{
    return sqrt(-2.0 * log(unif())) * cos(6.283185307179586 * unif());
}

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "k", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "s", SF_STRING) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* An agent configuration with options from YAML text (NULL: none); the
 * node is freed by yaml_cfg_free. by_col must outlive it. */
static sf_agent_config make_cfg(int col, int nby, const int *by_col, const char *yaml)
{
    return yaml_cfg(&schema, "quantiles", "lat_q", col, nby, by_col, yaml);
}

/* Test rows: values (NAN where vnull is set means a null, see fill), keys
 * (NULL = null key). */
typedef struct data {
    size_t n;
    double *v;
    uint8_t *vnull;
    const char **key;
} data;

static data data_new(size_t n)
{
    data d = {n, calloc(n ? n : 1, sizeof(double)), calloc(n ? n : 1, 1), calloc(n ? n : 1, sizeof(char *))};
    assert_non_null(d.v);
    assert_non_null(d.vnull);
    assert_non_null(d.key);
    return d;
}

static void data_free(data *d)
{
    free(d->v);
    free(d->vnull);
    free(d->key);
}

/* The rows [from, to) of d as a batch: v as float64, n as int64 (rounded). */
static void fill(sf_batch *b, const data *d, size_t from, size_t to)
{
    size_t n = to - from;
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        const size_t i = from + r;
        b->cols[COL_V].f64[r] = d->v[i];
        b->cols[COL_N].i64[r] = isfinite(d->v[i]) ? (int64_t)llround(d->v[i]) : 0;
        b->cols[COL_S].code[r] = 0;
        if (d->key[i] != NULL) {
            uint32_t code;
            assert_int_equal(sf_dict_intern(&b->cols[COL_K].dict, d->key[i], strlen(d->key[i]), &code), SF_OK);
            b->cols[COL_K].code[r] = code;
        } else {
            assert_int_equal(sf_batch_set_null(b, COL_K, r), SF_OK);
        }
        if (d->vnull[i]) {
            assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
            assert_int_equal(sf_batch_set_null(b, COL_N, r), SF_OK);
        }
    }
    uint32_t code;
    assert_int_equal(sf_dict_intern(&b->cols[COL_S].dict, "x", 1, &code), SF_OK);
    b->nrows = n;
}

/* Processes rows [from, to) of d in morsels of `morsel` rows. */
static void feed_range(void *s, const data *d, size_t from, size_t to, size_t morsel)
{
    sf_batch b;
    fill(&b, d, from, to);
    feed_morsels_or_empty(ops, s, &b, morsel);
    sf_batch_fini(&b);
}

static void feed(void *s, const data *d, size_t morsel)
{
    feed_range(s, d, 0, d->n, morsel);
}

static double stat_q(const void *s, double q)
{
    char name[64];
    snprintf(name, sizeof name, "q:%.17g", q);
    return stat_of(ops, s, name);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The finite non-null values of d, sorted. */
static double *sorted_finite(const data *d, size_t *n)
{
    double *x = malloc((d->n ? d->n : 1) * sizeof *x);
    assert_non_null(x);
    size_t m = 0;
    for (size_t i = 0; i < d->n; i++)
        if (!d->vnull[i] && isfinite(d->v[i])) x[m++] = d->v[i];
    qsort(x, m, sizeof *x, cmp_double);
    *n = m;
    return x;
}

/* The definition the agent documents: x_(floor(q (n - 1))). */
static double exact_quantile(const double *x, size_t n, double q)
{
    return x[(size_t)floor(q * (double)(n - 1))];
}

/* |estimate - true| <= alpha |true|, with room for the rounding of the
 * logarithm only (1e-12 relative). */
static void assert_within(double est, double truth, double alpha)
{
    double err = fabs(est - truth), bound = alpha * fabs(truth) + 1e-12 * fabs(truth);
    if (!(err <= bound)) fail_msg("estimate %.17g, true %.17g: error %.3g > %.3g", est, truth, err, bound);
}

/* ---- hand-computed reports ----------------------------------------------------- */

static void test_report_tiny(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL, "q: [0, 0.5, 1]\naccuracy: 0.01\n");
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    char *t = report_text(ops, s);
    assert_string_equal(t, "{\"count\":0,\"nulls\":0,\"nonfinite\":0,\"min\":null,\"max\":null,"
                           "\"relative_error\":0.01,\"quantiles\":{\"0\":null,\"0.5\":null,\"1\":null}}");
    free(t);
    /* 1, 2, 4 and a null: the median is x_(1) = 2. gamma = 1.01 / 0.99; 2
     * falls in bin ceil(ln 2 / ln gamma), whose representative is
     * 2 gamma^i / (gamma + 1). Rank 0 and rank 2 are clamped to the exact
     * extremes only when the representative lies beyond them. */
    data d = data_new(4);
    d.v[0] = 4.0;
    d.v[1] = 1.0;
    d.vnull[2] = 1;
    d.v[3] = 2.0;
    feed(s, &d, 3);
    double gamma = 1.01 / 0.99;
    double rep2 = pow(gamma, ceil(log(2.0) / log(gamma))) * (2.0 / (gamma + 1.0));
    double rep1 = pow(gamma, ceil(log(1.0) / log(gamma))) * (2.0 / (gamma + 1.0));
    double rep4 = pow(gamma, ceil(log(4.0) / log(gamma))) * (2.0 / (gamma + 1.0));
    assert_true(rep1 < 1.0); /* bin 0 is (1/gamma, 1]: its representative is below 1 */
    char want[512];
    snprintf(want, sizeof want,
             "{\"count\":3,\"nulls\":1,\"nonfinite\":0,\"min\":1,\"max\":4,"
             "\"relative_error\":0.01,\"quantiles\":{\"0\":1,\"0.5\":%.17g,\"1\":%.17g}}",
             rep2, rep4 > 4.0 ? 4.0 : rep4);
    t = report_text(ops, s);
    assert_string_equal(t, want);
    free(t);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

static void test_defaults_nonfinite_and_zero(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    /* -3, 0, -0, 1e-310 (counted as zero), 5, NaN, +inf, -inf, null. */
    data d = data_new(9);
    double v[] = {-3.0, 0.0, -0.0, 1e-310, 5.0, NAN, INFINITY, -INFINITY, 0.0};
    memcpy(d.v, v, sizeof v);
    d.vnull[8] = 1;
    feed(s, &d, 4);
    /* Finite values sorted: -3, -0, 0, 1e-310, 5 (n = 5). q = 0.5: x_(2) = 0
     * (zero counter, estimated 0); 0.95 and 0.99: x_(3) (zero counter). */
    char *t = report_text(ops, s);
    assert_string_equal(t, "{\"count\":8,\"nulls\":1,\"nonfinite\":3,\"min\":-3,\"max\":5,"
                           "\"relative_error\":0.01,\"quantiles\":{\"0.5\":0,\"0.95\":0,\"0.99\":0}}");
    free(t);
    assert_true(stat_of(ops, s, "count") == 8.0);
    assert_true(stat_of(ops, s, "rows") == 9.0);
    assert_true(stat_of(ops, s, "min") == -3.0);
    assert_true(stat_of(ops, s, "max") == 5.0);
    assert_within(stat_q(s, 0.0), -3.0, 0.01);
    assert_within(stat_q(s, 1.0), 5.0, 0.01);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

/* ---- accuracy against exact references ------------------------------------------- */

typedef enum dist { UNIFORM, LOGNORMAL, ZIPF, NEGATIVE, MIXED, EQUAL, WIDE, NDIST } dist;

static double draw(dist k)
{
    switch (k) {
    case UNIFORM: return 1000.0 * unif();
    case LOGNORMAL: return exp(2.0 * normal());
    case ZIPF: {
        /* Heavy ties: P(x >= t) ~ 1 / t^1.2 over the integers, capped. */
        double x = floor(pow(unif(), -1.0 / 1.2));
        return x > 1e6 ? 1e6 : x;
    }
    case NEGATIVE: return -exp(1.5 * normal());
    case MIXED: return unif() < 0.1 ? 0.0 : 100.0 * normal();
    case EQUAL: return 42.0;
    case WIDE: return (unif() < 0.5 ? -1.0 : 1.0) * pow(10.0, 600.0 * unif() - 300.0);
    default: return 0.0;
    }
}

static const double qs[] = {0.0, 0.001, 0.01, 0.1, 0.25, 0.333, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1.0};

static void check_accuracy(dist k, double alpha, size_t n)
{
    char yaml[128];
    snprintf(yaml, sizeof yaml, "accuracy: %.17g\n", alpha);
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL, yaml);
    assert_int_equal(ops->check(&cfg), SF_OK);
    data d = data_new(n);
    for (size_t i = 0; i < n; i++) {
        d.v[i] = draw(k);
        d.vnull[i] = (rnd() % 50) == 0;
    }
    void *s = new_state(ops, &cfg);
    feed(s, &d, 1000);
    size_t m;
    double *x = sorted_finite(&d, &m);
    assert_true(stat_of(ops, s, "min") == x[0]);
    assert_true(stat_of(ops, s, "max") == x[m - 1]);
    for (size_t i = 0; i < sizeof qs / sizeof qs[0]; i++)
        assert_within(stat_q(s, qs[i]), exact_quantile(x, m, qs[i]), alpha);
    for (int i = 0; i < 50; i++) {
        double q = unif();
        assert_within(stat_q(s, q), exact_quantile(x, m, q), alpha);
    }
    free(x);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

static void test_accuracy(void **st)
{
    (void)st;
    rng_state = 11;
    const double alphas[] = {0.01, 0.001, 0.0001, 0.1};
    for (int a = 0; a < 4; a++)
        for (int k = 0; k < NDIST; k++) {
            /* Magnitudes over 600 decades at alpha 1e-4 would take 7 million bins. */
            if (k == WIDE && alphas[a] < 0.001) continue;
            check_accuracy((dist)k, alphas[a], 20000);
        }
    /* Small counts, where every rank matters. */
    for (size_t n = 1; n <= 12; n++)
        for (int k = 0; k < NDIST; k++) check_accuracy((dist)k, 0.01, n);
}

static void test_int_column(void **st)
{
    (void)st;
    rng_state = 5;
    sf_agent_config cfg = make_cfg(COL_N, 0, NULL, "q: 0.5\n");
    assert_int_equal(ops->check(&cfg), SF_OK);
    data d = data_new(5000);
    for (size_t i = 0; i < d.n; i++) d.v[i] = (double)(int64_t)(unif() * 1e9) - 5e8;
    void *s = new_state(ops, &cfg);
    feed(s, &d, 777);
    size_t m;
    double *x = sorted_finite(&d, &m);
    assert_within(stat_q(s, 0.5), exact_quantile(x, m, 0.5), 0.01);
    assert_true(stat_of(ops, s, "min") == x[0]);
    assert_true(stat_of(ops, s, "max") == x[m - 1]);
    free(x);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

/* The median absolute deviation: exact for a hand case, and within the
 * documented bound (alpha of the values involved plus the median's error)
 * of the exact one on random data. */
static void test_mad(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL, NULL);
    void *s = new_state(ops, &cfg);
    data d = data_new(5);
    double v[] = {1.0, 1.0, 100.0, 1.0, 1.0};
    memcpy(d.v, v, sizeof v);
    feed(s, &d, 2);
    /* Median 1 (its bin's representative 0.99 is clamped to min = 1);
     * deviations 0, 0, 0, 0, ~99: the floor(4 / 2)-th is 0. */
    assert_true(stat_of(ops, s, "q:0.5") == 1.0);
    assert_true(stat_of(ops, s, "mad") == 0.0);
    free_state(ops, s);
    data_free(&d);

    rng_state = 21;
    for (int k = 0; k < NDIST; k++) {
        size_t n = 3001;
        d = data_new(n);
        for (size_t i = 0; i < n; i++) d.v[i] = draw((dist)k);
        s = new_state(ops, &cfg);
        feed(s, &d, 500);
        size_t m;
        double *x = sorted_finite(&d, &m);
        double med = exact_quantile(x, m, 0.5), maxabs = 0.0;
        double *dev = malloc(m * sizeof *dev);
        assert_non_null(dev);
        for (size_t i = 0; i < m; i++) {
            dev[i] = fabs(x[i] - med);
            if (fabs(x[i]) > maxabs) maxabs = fabs(x[i]);
        }
        qsort(dev, m, sizeof *dev, cmp_double);
        double mad = dev[(m - 1) / 2];
        double est = stat_of(ops, s, "mad");
        double bound = 0.01 * (maxabs + fabs(med)) * (1 + 1e-12);
        if (!(fabs(est - mad) <= bound)) fail_msg("dist %d: mad %.17g, exact %.17g", k, est, mad);
        free(dev);
        free(x);
        free_state(ops, s);
        data_free(&d);
    }
    yaml_cfg_free(&cfg);
}

/* ---- merge laws, round trip, truncations ------------------------------------------- */

static void random_data(data *d, int nkeys)
{
    static const char *const keys[] = {"api", "db", "web|x", "cache\\1", "", "auth", "edge", "q"};
    for (size_t i = 0; i < d->n; i++) {
        double u = unif();
        d->v[i] = u < 0.02 ? NAN : u < 0.04 ? INFINITY : u < 0.1 ? 0.0 : u < 0.4 ? -exp(normal()) : exp(3 * normal());
        d->vnull[i] = rnd() % 17 == 0;
        d->key[i] = rnd() % 13 == 0 ? NULL : keys[rnd() % (uint64_t)nkeys];
    }
}

static void check_laws(int nby, const int *by)
{
    sf_agent_config cfg = make_cfg(COL_V, nby, by, "q: [0.1, 0.5, 0.9]\naccuracy: 0.02\n");
    assert_int_equal(ops->check(&cfg), SF_OK);
    data d = data_new(6000);
    random_data(&d, 8);

    /* One state, all rows. */
    void *whole = new_state(ops, &cfg);
    feed(whole, &d, 512);

    /* merge(init, x) == x and merge(x, init) == x. */
    void *e = new_state(ops, &cfg);
    assert_int_equal(ops->merge(e, whole), SF_OK);
    assert_same_state(ops, e, whole);
    void *e2 = new_state(ops, &cfg);
    void *copy = new_state(ops, &cfg);
    assert_int_equal(ops->merge(copy, whole), SF_OK);
    assert_int_equal(ops->merge(copy, e2), SF_OK);
    assert_same_state(ops, copy, whole);

    /* Split invariance: random cuts into 7 states merged in a shuffled order. */
    enum { PARTS = 7 };
    size_t cut[PARTS + 1] = {0};
    for (int i = 1; i < PARTS; i++) cut[i] = rnd() % d.n;
    cut[PARTS] = d.n;
    for (int i = 1; i < PARTS; i++)
        for (int j = i + 1; j < PARTS; j++)
            if (cut[j] < cut[i]) {
                size_t t = cut[i];
                cut[i] = cut[j];
                cut[j] = t;
            }
    void *part[PARTS];
    for (int i = 0; i < PARTS; i++) {
        part[i] = new_state(ops, &cfg);
        feed_range(part[i], &d, cut[i], cut[i + 1], 1 + rnd() % 300);
    }
    int perm[PARTS];
    for (int i = 0; i < PARTS; i++) perm[i] = i;
    for (int i = PARTS - 1; i > 0; i--) {
        int j = (int)(rnd() % (uint64_t)(i + 1)), t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
    void *acc = new_state(ops, &cfg);
    for (int i = 0; i < PARTS; i++) assert_int_equal(ops->merge(acc, part[perm[i]]), SF_OK);
    assert_same_state(ops, acc, whole);

    /* Associativity and commutativity on three parts. */
    assert_merge_associative(ops, &cfg, part[0], part[1], part[2]);
    assert_merge_commutative(ops, &cfg, part[0], part[1]);

    /* Reports agree too. */
    char *r1 = report_text(ops, whole), *r2 = report_text(ops, acc);
    assert_string_equal(r1, r2);

    /* Round trip: decode(encode(x)) encodes and reports alike. */
    sf_buf enc = encoded(ops, whole);
    void *back = new_state(ops, &cfg);
    assert_int_equal(ops->decode(back, enc.data, enc.len), SF_OK);
    assert_same_state(ops, back, whole);
    char *r3 = report_text(ops, back);
    assert_string_equal(r1, r3);
    /* Decoding replaces what a state held. */
    assert_int_equal(ops->decode(part[3], enc.data, enc.len), SF_OK);
    assert_same_state(ops, part[3], whole);

    /* Every truncated prefix and a trailing byte are rejected (on a state
     * of the first 400 rows: every part of the format, fewer bytes). */
    void *t = new_state(ops, &cfg), *small = new_state(ops, &cfg);
    feed_range(small, &d, 0, 400, 64);
    sf_buf senc = encoded(ops, small);
    assert_decode_strict(ops, t, &senc);
    assert_same_state(ops, t, small);
    sf_buf_fini(&senc);
    free_state(ops, small);

    free(r1);
    free(r2);
    free(r3);
    sf_buf_fini(&enc);
    void *all[] = {whole, e, e2, copy, acc, back, t};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_state(ops, all[i]);
    for (int i = 0; i < PARTS; i++) free_state(ops, part[i]);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

static void test_merge_laws(void **st)
{
    (void)st;
    rng_state = 3;
    check_laws(0, NULL);
    int by[] = {COL_K};
    check_laws(1, by);
    int by2[] = {COL_K, COL_S};
    check_laws(2, by2);
}

/* A where: selection gives what a batch of only the selected rows gives. */
static void test_selection(void **st)
{
    (void)st;
    rng_state = 8;
    int by[] = {COL_K};
    sf_agent_config cfg = make_cfg(COL_V, 1, by, NULL);
    data d = data_new(3000);
    random_data(&d, 5);
    data odd = data_new(d.n / 2);
    uint32_t *sel = malloc(d.n / 2 * sizeof *sel);
    assert_non_null(sel);
    for (size_t i = 0; i < d.n / 2; i++) {
        sel[i] = (uint32_t)(2 * i + 1);
        odd.v[i] = d.v[2 * i + 1];
        odd.vnull[i] = d.vnull[2 * i + 1];
        odd.key[i] = d.key[2 * i + 1];
    }
    void *a = new_state(ops, &cfg), *b = new_state(ops, &cfg);
    sf_batch batch;
    fill(&batch, &d, 0, d.n);
    for (size_t at = 0; at < d.n / 2; at += 100) {
        sf_rows rows = {0, d.n / 2 - at < 100 ? d.n / 2 - at : 100, sel + at, SF_ROWS_NO_SHARD};
        assert_int_equal(ops->process(a, &batch, &rows), SF_OK);
    }
    sf_batch_fini(&batch);
    feed(b, &odd, 333);
    assert_same_state(ops, a, b);
    free(sel);
    free_state(ops, a);
    free_state(ops, b);
    data_free(&d);
    data_free(&odd);
    yaml_cfg_free(&cfg);
}

/* Malformed encodings a truncation cannot produce. */
static void test_decode_strict(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL, NULL);
    void *s = new_state(ops, &cfg);
    data d = data_new(3);
    d.v[0] = 2.0;
    d.v[1] = 3.0;
    d.v[2] = 1000.0;
    feed(s, &d, 3);
    sf_buf enc = encoded(ops, s);
    void *t = new_state(ops, &cfg);
    /* Layout: u8 format, u8 nby, f64 alpha, u64 ngroups, key (u32 len 0), 5 u64
     * counters, u32 nneg = 0, u32 npos = 3, then (u32 index, u64 count). */
    size_t pos_bins = 1 + 1 + 8 + 8 + 4 + 40 + 4 + 4;
    assert_int_equal(enc.len, pos_bins + 3 * 12);
    sf_buf bad;
    sf_buf_init(&bad);
#define MUTATE(off, val, want)                                             \
    do {                                                                   \
        sf_buf_clear(&bad);                                                \
        assert_int_equal(sf_buf_append(&bad, enc.data, enc.len), SF_OK);  \
        bad.data[off] = (uint8_t)(val);                                    \
        assert_int_equal(ops->decode(t, bad.data, bad.len), want);         \
    } while (0)
    MUTATE(0, 9, SF_ERR_PARSE);                       /* unknown format */
    MUTATE(1, 1, SF_ERR_PARSE);                       /* key columns */
    MUTATE(2, enc.data[2] ^ 1, SF_ERR_PARSE);         /* another accuracy */
    MUTATE(10, 2, SF_ERR_PARSE);                      /* two groups without by: */
    MUTATE(pos_bins + 4, 0, SF_ERR_PARSE);            /* a bin with count 0 */
    /* Bins out of order: the second bin's index below the first's. */
    {
        sf_buf_clear(&bad);
        assert_int_equal(sf_buf_append(&bad, enc.data, enc.len), SF_OK);
        memcpy(bad.data + pos_bins + 12, bad.data + pos_bins, 4);
        assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    }
    /* Extremes: min above max. */
    {
        sf_buf_clear(&bad);
        assert_int_equal(sf_buf_append(&bad, enc.data, enc.len), SF_OK);
        size_t kmin = 1 + 1 + 8 + 8 + 4 + 24;
        uint8_t tmp[8];
        memcpy(tmp, bad.data + kmin, 8);
        memcpy(bad.data + kmin, bad.data + kmin + 8, 8);
        memcpy(bad.data + kmin + 8, tmp, 8);
        assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    }
    MUTATE(0, 1, SF_OK); /* the unchanged bytes still decode */
#undef MUTATE
    sf_buf_fini(&bad);
    sf_buf_fini(&enc);
    free_state(ops, s);
    free_state(ops, t);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

/* ---- grouped results against per-group references --------------------------------- */

static void test_grouped_vs_ungrouped(void **st)
{
    (void)st;
    rng_state = 13;
    int by[] = {COL_K};
    sf_agent_config gcfg = make_cfg(COL_V, 1, by, "q: [0.25, 0.5, 0.999]\n");
    sf_agent_config ucfg = make_cfg(COL_V, 0, NULL, "q: [0.25, 0.5, 0.999]\n");
    data d = data_new(8000);
    random_data(&d, 5);
    void *g = new_state(ops, &gcfg);
    feed(g, &d, 640);

    /* Keys in ascending byte order of their printed form: "" < "\N" <
     * "api" < "cache\\1" < "db" < "web\|x" (a backslash or '|' in a key
     * is escaped with a backslash). JSON escapes the backslashes again. */
    const char *keys[] = {"", NULL, "api", "cache\\1", "db", "web|x"};
    const char *json_keys[] = {"", "\\\\N", "api", "cache\\\\\\\\1", "db", "web\\\\|x"};
    sf_buf want;
    sf_buf_init(&want);
    assert_int_equal(sf_buf_printf(&want, "{\"groups\":{"), SF_OK);
    int listed = 0;
    for (int k = 0; k < 6; k++) {
        data sub = data_new(d.n);
        size_t m = 0;
        for (size_t i = 0; i < d.n; i++) {
            bool same = keys[k] == NULL ? d.key[i] == NULL : d.key[i] != NULL && strcmp(d.key[i], keys[k]) == 0;
            if (!same) continue;
            sub.v[m] = d.v[i];
            sub.vnull[m] = d.vnull[i];
            sub.key[m] = d.key[i];
            m++;
        }
        sub.n = m;
        if (m == 0) {
            data_free(&sub);
            continue;
        }
        void *u = new_state(ops, &ucfg);
        feed(u, &sub, 100);
        char *r = report_text(ops, u);
        assert_int_equal(sf_buf_printf(&want, "%s\"%s\":%s", listed++ ? "," : "", json_keys[k], r), SF_OK);
        free(r);
        /* stat() of the group's key against the ungrouped state. */
        sf_batch b;
        fill(&b, &sub, 0, 1);
        uint8_t *key = NULL;
        size_t cap = 0, len;
        assert_int_equal(sf_agent_row_key(&b, by, 1, 0, &key, &cap, &len), SF_OK);
        const char *names[] = {"count", "rows", "min", "max", "q:0.5", "q:0.9", "mad"};
        for (int i = 0; i < 7; i++) {
            double a, w;
            assert_int_equal(ops->stat(g, key, len, names[i], &a), SF_OK);
            assert_int_equal(ops->stat(u, NULL, 0, names[i], &w), SF_OK);
            assert_memory_equal(&a, &w, sizeof a);
        }
        free(key);
        sf_batch_fini(&b);
        free_state(ops, u);
        data_free(&sub);
    }
    assert_int_equal(sf_buf_printf(&want, "}}"), SF_OK);
    assert_int_equal(sf_buf_put_u8(&want, 0), SF_OK);
    char *got = report_text(ops, g);
    assert_string_equal(got, (const char *)want.data);
    free(got);

    /* The whole state (key NULL) is every row together. */
    void *u = new_state(ops, &ucfg);
    feed(u, &d, 1000);
    const char *names[] = {"count", "rows", "min", "max", "q:0.5", "q:0.01", "mad"};
    for (int i = 0; i < 7; i++) {
        double a, w;
        assert_int_equal(ops->stat(g, NULL, 0, names[i], &a), SF_OK);
        assert_int_equal(ops->stat(u, NULL, 0, names[i], &w), SF_OK);
        assert_memory_equal(&a, &w, sizeof a);
    }
    /* Unknown key and unknown statistic. */
    double x;
    uint8_t nokey[] = {1, 3, 0, 0, 0, 'z', 'z', 'z'};
    assert_int_equal(ops->stat(g, nokey, sizeof nokey, "count", &x), SF_ERR_ARG);
    assert_int_equal(ops->stat(g, NULL, 0, "mean", &x), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), "mean"));
    assert_int_equal(ops->stat(g, NULL, 0, "q:1.5", &x), SF_ERR_ARG);
    assert_int_equal(ops->stat(g, NULL, 0, "q:", &x), SF_ERR_ARG);
    assert_int_equal(ops->stat(g, NULL, 0, "q:0.5x", &x), SF_ERR_ARG);
    free_state(ops, u);
    sf_buf_fini(&want);
    free_state(ops, g);
    data_free(&d);
    yaml_cfg_free(&gcfg);
    yaml_cfg_free(&ucfg);
}

/* ---- configuration errors ----------------------------------------------------------- */

static void expect_config_error(int col, const char *yaml, const char *want1, const char *want2)
{
    sf_agent_config cfg = make_cfg(col, 0, NULL, yaml);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    const char *msg = sf_error_message();
    if (strstr(msg, want1) == NULL || (want2 && strstr(msg, want2) == NULL))
        fail_msg("message \"%s\" lacks \"%s\" / \"%s\"", msg, want1, want2 ? want2 : "");
    yaml_cfg_free(&cfg);
}

static void test_config_errors(void **st)
{
    (void)st;
    expect_config_error(COL_V, "accuracy: 0.01\nq: [0.5, 1.5]\n", "test.yaml:2: agent 'lat_q': option 'q'",
                        "1.5");
    expect_config_error(COL_V, "q: [0.5]\naccuracy: 0.5\n", "test.yaml:2: agent 'lat_q': option 'accuracy'",
                        "0.5");
    expect_config_error(COL_V, "accuracy: 0.00001\n", "test.yaml:1: agent 'lat_q': option 'accuracy'", NULL);
    expect_config_error(COL_V, "accuracy: fine\n", "option 'accuracy'", "fine");
    expect_config_error(COL_V, "q: []\n", "test.yaml:1: agent 'lat_q': option 'q'", "at least one");
    expect_config_error(COL_V, "q: [0.1234567, 0.1234568]\n", "option 'q'", "0.123457");
    expect_config_error(COL_V, "q: [0.5, 0.5]\n", "option 'q'", "\"0.5\"");
    expect_config_error(COL_V, "\n\nbins: 3\n", "test.yaml:3: agent 'lat_q': unknown option 'bins'", NULL);
    expect_config_error(COL_K, NULL, "option 'column'", "string");
    expect_config_error(-1, NULL, "column", "required");
    char many[512] = "q: [";
    for (int i = 0; i < 33; i++) snprintf(many + strlen(many), sizeof many - strlen(many), "%s0.%02d", i ? ", " : "", i);
    strcat(many, "]\n");
    expect_config_error(COL_V, many, "option 'q'", "at most 32");

    /* A baseline: is refused. */
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL, NULL);
    sf_agent_prior prior = {"s1.lat", ops, &cfg, NULL};
    cfg.nbaseline = 1;
    cfg.baseline = &prior;
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "baseline"));

    /* Quantiles are reported in ascending order whatever the order written. */
    sf_agent_config ok = make_cfg(COL_V, 0, NULL, "q: [0.9, 0.1]\n");
    assert_int_equal(ops->check(&ok), SF_OK);
    void *s = new_state(ops, &ok);
    char *t = report_text(ops, s);
    assert_non_null(strstr(t, "{\"0.1\":null,\"0.9\":null}"));
    free(t);
    free_state(ops, s);
    yaml_cfg_free(&ok);
}

/* An optional argument runs only the tests whose names match it. */
/* The agent's bin of a value must be exactly ceil(log(|x|) / ln gamma) as
 * the C library computes it, for every accuracy, over the whole range and
 * right at the bin edges (where its fast path hands over to log()). */
static void test_bins_equal_library_log(void **st)
{
    (void)st;
    rng_state = 77;
    const double alphas[] = {0.01, 0.0001, 0.05, 0.1, 0.003};
    enum { N = 200000 };
    double *ax = malloc(N * sizeof *ax);
    int32_t *got = malloc(N * sizeof *got);
    assert_non_null(ax);
    assert_non_null(got);
    for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++) {
        double gamma = (1.0 + alphas[a]) / (1.0 - alphas[a]);
        double inv = 1.0 / log(gamma);
        for (int i = 0; i < N; i++) {
            int kind = i % 4;
            if (kind == 0) {
                ax[i] = ldexp(1.0 + unif(), (int)(unif() * 2018.0) - 996); /* 1e-300 .. 2^1023 */
            } else if (kind == 1) {
                ax[i] = 1.0 + unif() * 1e5; /* latencies */
            } else {
                /* At and next to a bin edge gamma^j. */
                int j = (int)(unif() * 2000.0) - 1000;
                double e = exp((double)j / inv);
                int steps = (int)(unif() * 5.0) - 2;
                for (; steps > 0; steps--) e = nextafter(e, INFINITY);
                for (; steps < 0; steps++) e = nextafter(e, 0.0);
                ax[i] = e;
            }
            if (ax[i] < 1e-300) ax[i] = 1e-300;
        }
        sf__quantiles_bins(alphas[a], ax, N, got);
        int edges_near = 0;
        for (int i = 0; i < N; i++) {
            double f = log(ax[i]) * inv;
            int32_t want = (int32_t)ceil(f);
            if (got[i] != want) fail_msg("alpha %g: x = %a: bin %d, log() gives %d", alphas[a], ax[i], got[i], want);
            edges_near += fabs(f - nearbyint(f)) < 1e-6;
        }
        assert_true(edges_near > 100); /* the slow path was exercised */
    }
    free(ax);
    free(got);
}

int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bins_equal_library_log),
        cmocka_unit_test(test_report_tiny),
        cmocka_unit_test(test_defaults_nonfinite_and_zero),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_int_column),
        cmocka_unit_test(test_mad),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_decode_strict),
        cmocka_unit_test(test_grouped_vs_ungrouped),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
