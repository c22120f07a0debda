/* Unit tests of the `histogram` agent (agents/histogram.c). Expectations come
 * from a reference binning by linear scan over edges computed here from the
 * documented formulas (exact comparisons only), exact counts, and a second
 * path through the agent (ungrouped states over the rows of one key). */
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

static const sf_agent_ops *ops = &sf__agent_histogram;
static sf_schema schema;

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

static sf_agent_config make_cfg(int col, int nby, const int *by_col, const char *yaml)
{
    return yaml_cfg(&schema, "histogram", "lat_h", col, nby, by_col, yaml);
}

typedef struct data {
    size_t n;
    double *v;
    uint8_t *vnull;
    const char **key;
} data;

static data data_new(size_t n)
{
    size_t c = n ? n : 1;
    data d = {n, calloc(c, sizeof(double)), calloc(c, 1), calloc(c, sizeof(char *))};
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

static void fill(sf_batch *b, const data *d, size_t from, size_t to)
{
    size_t n = to - from;
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    uint32_t code;
    assert_int_equal(sf_dict_intern(&b->cols[COL_S].dict, "x", 1, &code), SF_OK);
    for (size_t r = 0; r < n; r++) {
        size_t i = from + r;
        b->cols[COL_V].f64[r] = d->v[i];
        b->cols[COL_N].i64[r] = isfinite(d->v[i]) && fabs(d->v[i]) < 9e18 ? (int64_t)d->v[i] : 0;
        b->cols[COL_S].code[r] = code;
        if (d->key[i] != NULL) {
            uint32_t kc;
            assert_int_equal(sf_dict_intern(&b->cols[COL_K].dict, d->key[i], strlen(d->key[i]), &kc), SF_OK);
            b->cols[COL_K].code[r] = kc;
        } else {
            assert_int_equal(sf_batch_set_null(b, COL_K, r), SF_OK);
        }
        if (d->vnull[i]) {
            assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
            assert_int_equal(sf_batch_set_null(b, COL_N, r), SF_OK);
        }
    }
    b->nrows = n;
}

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

/* ---- the reference -------------------------------------------------------------- */

/* A layout as computed here from the documented formulas. */
typedef struct ref {
    bool log;
    size_t k;
    double *e; /* k + 1 edges */
} ref;

static ref ref_fixed(double lo, double hi, size_t k)
{
    ref r = {false, k, malloc((k + 1) * sizeof(double))};
    assert_non_null(r.e);
    double w = (hi - lo) / (double)k;
    for (size_t j = 0; j < k; j++) r.e[j] = lo + (double)j * w;
    r.e[k] = hi;
    return r;
}

static ref ref_log(double base, double lo, double hi)
{
    size_t k = 1;
    while (lo * pow(base, (double)k) < hi) k++;
    ref r = {true, k, malloc((k + 1) * sizeof(double))};
    assert_non_null(r.e);
    r.e[0] = lo;
    for (size_t j = 1; j <= k; j++) r.e[j] = lo * pow(base, (double)j);
    return r;
}

static ref ref_edges(const double *e, size_t n)
{
    ref r = {false, n - 1, malloc(n * sizeof(double))};
    assert_non_null(r.e);
    memcpy(r.e, e, n * sizeof(double));
    return r;
}

/* Counters as the reference computes them: with comparisons against the
 * edges only (a linear scan, or bisection for many bins). */
typedef struct counts {
    uint64_t nulls, nan, under, over, nonpos;
    uint64_t *bin;
} counts;

static counts counts_new(const ref *r)
{
    counts c;
    memset(&c, 0, sizeof c);
    c.bin = calloc(r->k, sizeof *c.bin);
    assert_non_null(c.bin);
    return c;
}

static void ref_add(const ref *r, counts *c, double x, bool null)
{
    if (null) {
        c->nulls++;
        return;
    }
    if (isnan(x)) {
        c->nan++;
        return;
    }
    if (r->log && x <= 0) {
        c->nonpos++;
        return;
    }
    if (x < r->e[0]) {
        c->under++;
        return;
    }
    if (x >= r->e[r->k]) {
        c->over++;
        return;
    }
    if (r->k <= 1000) {
        for (size_t j = 0; j < r->k; j++)
            if (r->e[j] <= x && x < r->e[j + 1]) {
                c->bin[j]++;
                return;
            }
        fail_msg("no bin for %.17g", x);
    }
        /* Many bins: bisect on the invariant e[a] <= x < e[b]. */
    size_t a = 0, b = r->k;
    while (b - a > 1) {
        size_t mid = (a + b) / 2;
        if (x < r->e[mid])
            b = mid;
        else
            a = mid;
    }
    assert_true(r->e[a] <= x && x < r->e[a + 1]);
    c->bin[a]++;
}

/* The report the agent must give for these counters. */
static char *ref_report(const ref *r, const counts *c)
{
    sf_buf b;
    sf_buf_init(&b);
    uint64_t n = c->nan + c->under + c->over + c->nonpos;
    for (size_t j = 0; j < r->k; j++) n += c->bin[j];
    assert_int_equal(sf_buf_printf(&b, "{\"count\":%llu,\"nulls\":%llu,\"edges\":[", (unsigned long long)n,
                                   (unsigned long long)c->nulls),
                     SF_OK);
    for (size_t j = 0; j <= r->k; j++) assert_int_equal(sf_buf_printf(&b, "%s%.17g", j ? "," : "", r->e[j]), SF_OK);
    assert_int_equal(sf_buf_printf(&b, "],\"counts\":["), SF_OK);
    for (size_t j = 0; j < r->k; j++)
        assert_int_equal(sf_buf_printf(&b, "%s%llu", j ? "," : "", (unsigned long long)c->bin[j]), SF_OK);
    assert_int_equal(sf_buf_printf(&b, "],\"underflow\":%llu,\"overflow\":%llu,\"nan\":%llu",
                                   (unsigned long long)c->under, (unsigned long long)c->over,
                                   (unsigned long long)c->nan),
                     SF_OK);
    if (r->log) assert_int_equal(sf_buf_printf(&b, ",\"nonpositive\":%llu", (unsigned long long)c->nonpos), SF_OK);
    assert_int_equal(sf_buf_printf(&b, "}"), SF_OK);
    assert_int_equal(sf_buf_put_u8(&b, 0), SF_OK);
    return (char *)b.data;
}

/* Probe values: random doubles over and beyond the edges, every edge and
 * its neighbours on both sides, zeros, infinities, NaN and nulls. */
static data probes(const ref *r, size_t nrandom)
{
    size_t n = nrandom + 5 * (r->k + 1) + 8;
    data d = data_new(n);
    size_t m = 0;
    double lo = r->e[0], hi = r->e[r->k], span = hi - lo;
    for (size_t i = 0; i < nrandom; i++) {
        double u = unif();
        if (r->log)
            d.v[m++] = lo * pow(hi / lo, 1.2 * u - 0.1) * (rnd() % 10 == 0 ? -1 : 1);
        else
            d.v[m++] = lo + span * (1.2 * u - 0.1);
    }
    for (size_t j = 0; j <= r->k; j++) {
        d.v[m++] = r->e[j];
        d.v[m++] = nextafter(r->e[j], -INFINITY);
        d.v[m++] = nextafter(r->e[j], INFINITY);
        d.v[m++] = j < r->k ? r->e[j] + (r->e[j + 1] - r->e[j]) / 2 : r->e[j] * 2 + 1;
        d.v[m++] = r->e[j];
    }
    double special[] = {0.0, -0.0, INFINITY, -INFINITY, NAN, 1e-300, -1e300, 0.0};
    for (int i = 0; i < 8; i++) d.v[m++] = special[i];
    d.vnull[m - 1] = 1;
    assert_int_equal(m, n);
    return d;
}

static void check_layout(const char *yaml, const ref *r, size_t nrandom)
{
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL, yaml);
    assert_int_equal(ops->check(&cfg), SF_OK);
    data d = probes(r, nrandom);
    void *s = new_state(ops, &cfg);
    feed(s, &d, 333);
    counts c = counts_new(r);
    for (size_t i = 0; i < d.n; i++) ref_add(r, &c, d.v[i], d.vnull[i]);
    char *want = ref_report(r, &c), *got = report_text(ops, s);
    assert_string_equal(got, want);
    /* count == the non-null rows == the sum of every counter. */
    size_t nonnull = 0;
    for (size_t i = 0; i < d.n; i++) nonnull += !d.vnull[i];
    assert_true(stat_of(ops, s, "count") == (double)nonnull);
    assert_true(stat_of(ops, s, "rows") == (double)d.n);
    free(want);
    free(got);
    /* Each edge value alone: its bin is the one that starts at it. */
    for (size_t j = 0; j <= r->k; j += r->k > 200 ? r->k / 20 : 1) {
        void *one = new_state(ops, &cfg);
        data e = data_new(1);
        e.v[0] = r->e[j];
        feed(one, &e, 1);
        counts ce = counts_new(r);
        ref_add(r, &ce, e.v[0], false);
        if (j < r->k) assert_int_equal(ce.bin[j], 1);
        char *w1 = ref_report(r, &ce), *g1 = report_text(ops, one);
        assert_string_equal(g1, w1);
        free(w1);
        free(g1);
        free(ce.bin);
        data_free(&e);
        free_state(ops, one);
    }
    free(c.bin);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

static void test_fixed_bins(void **st)
{
    (void)st;
    rng_state = 1;
    ref r = ref_fixed(0.0, 1.0, 10);
    check_layout("min: 0\nmax: 1\n", &r, 5000);
    free(r.e);
    /* Edges that decimal fractions do not hit exactly. */
    r = ref_fixed(-0.3, 0.7, 7);
    check_layout("buckets: fixed\nmin: -0.3\nmax: 0.7\nbins: 7\n", &r, 5000);
    free(r.e);
    r = ref_fixed(1e-3, 123456.789, 99991);
    check_layout("min: 0.001\nmax: 123456.789\nbins: 99991\n", &r, 20000);
    free(r.e);
    r = ref_fixed(-1e300, 1e300, 3);
    check_layout("min: -1e300\nmax: 1e300\nbins: 3\n", &r, 1000);
    free(r.e);
    r = ref_fixed(5.0, 6.0, 1);
    check_layout("min: 5\nmax: 6\nbins: 1\n", &r, 100);
    free(r.e);
}

static void test_log_bins(void **st)
{
    (void)st;
    rng_state = 2;
    ref r = ref_log(10.0, 1.0, 1e9);
    assert_int_equal(r.k, 9);
    check_layout("buckets: log\n", &r, 5000);
    free(r.e);
    r = ref_log(2.0, 0.001, 1000.0);
    check_layout("buckets: log\nbase: 2\nmin: 0.001\nmax: 1000\n", &r, 5000);
    free(r.e);
    r = ref_log(1.1, 0.5, 3e7);
    check_layout("buckets: log\nbase: 1.1\nmin: 0.5\nmax: 3e7\n", &r, 20000);
    free(r.e);
    /* max on an edge: the last edge is max itself. */
    r = ref_log(10.0, 1.0, 1000.0);
    assert_int_equal(r.k, 3);
    check_layout("buckets: log\nmax: 1000\n", &r, 500);
    free(r.e);
}

static void test_explicit_edges(void **st)
{
    (void)st;
    rng_state = 3;
    double e[] = {-5.0, -1.0, 0.0, 0.1, 0.2, 3.0, 1e10};
    ref r = ref_edges(e, 7);
    check_layout("edges: [-5, -1, 0, 0.1, 0.2, 3, 1e10]\n", &r, 5000);
    free(r.e);
    double two[] = {1.0, 2.0};
    r = ref_edges(two, 2);
    check_layout("edges: [1, 2]\n", &r, 100);
    free(r.e);
    /* -0 as an edge equals 0: a zero of either sign lands in the bin that starts there. */
    double z[] = {-1.0, -0.0, 1.0};
    r = ref_edges(z, 3);
    check_layout("edges: [-1, -0, 1]\n", &r, 100);
    free(r.e);
}

static void test_int_column(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_N, 0, NULL, "edges: [0, 10, 100]\n");
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    data d = data_new(7);
    double v[] = {-1, 0, 9, 10, 99, 100, 5};
    memcpy(d.v, v, sizeof v);
    d.vnull[6] = 1;
    feed(s, &d, 3);
    char *t = report_text(ops, s);
    assert_string_equal(t, "{\"count\":6,\"nulls\":1,\"edges\":[0,10,100],\"counts\":[2,2],"
                           "\"underflow\":1,\"overflow\":1,\"nan\":0}");
    free(t);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

/* ---- merge laws, round trip, truncations ---------------------------------------------- */

static void random_data(data *d, int nkeys)
{
    static const char *const keys[] = {"api", "db", "web|x", "cache\\1", "", "auth"};
    for (size_t i = 0; i < d->n; i++) {
        double u = unif();
        d->v[i] = u < 0.02 ? NAN : u < 0.03 ? -INFINITY : u < 0.1 ? 0.0 : 200.0 * unif() - 50.0;
        d->vnull[i] = rnd() % 17 == 0;
        d->key[i] = rnd() % 13 == 0 ? NULL : keys[rnd() % (uint64_t)nkeys];
    }
}

static void check_laws(int nby, const int *by, const char *yaml, size_t nrows)
{
    sf_agent_config cfg = make_cfg(COL_V, nby, by, yaml);
    assert_int_equal(ops->check(&cfg), SF_OK);
    data d = data_new(nrows);
    random_data(&d, 5);
    void *whole = new_state(ops, &cfg);
    feed(whole, &d, 128);

    void *e = new_state(ops, &cfg), *copy = new_state(ops, &cfg), *e2 = new_state(ops, &cfg);
    assert_int_equal(ops->merge(e, whole), SF_OK);
    assert_same_state(ops, e, whole);
    assert_int_equal(ops->merge(copy, whole), SF_OK);
    assert_int_equal(ops->merge(copy, e2), SF_OK);
    assert_same_state(ops, copy, whole);

    enum { PARTS = 5 };
    size_t cut[PARTS + 1];
    cut[0] = 0;
    cut[PARTS] = d.n;
    for (int i = 1; i < PARTS; i++) cut[i] = rnd() % (d.n + 1);
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
        feed_range(part[i], &d, cut[i], cut[i + 1], 1 + rnd() % 100);
    }
    int perm[PARTS] = {3, 0, 4, 2, 1};
    void *acc = new_state(ops, &cfg);
    for (int i = 0; i < PARTS; i++) assert_int_equal(ops->merge(acc, part[perm[i]]), SF_OK);
    assert_same_state(ops, acc, whole);

    assert_merge_associative(ops, &cfg, part[0], part[1], part[2]);
    assert_merge_commutative(ops, &cfg, part[3], part[4]);

    char *r1 = report_text(ops, whole), *r2 = report_text(ops, acc);
    assert_string_equal(r1, r2);
    sf_buf enc = encoded(ops, whole);
    void *back = new_state(ops, &cfg);
    assert_int_equal(ops->decode(back, enc.data, enc.len), SF_OK);
    assert_same_state(ops, back, whole);
    char *r3 = report_text(ops, back);
    assert_string_equal(r1, r3);
    assert_int_equal(ops->decode(part[1], enc.data, enc.len), SF_OK);
    assert_same_state(ops, part[1], whole);

    void *t = new_state(ops, &cfg);
    assert_decode_strict(ops, t, &enc);
    assert_same_state(ops, t, whole);

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
    rng_state = 5;
    int by[] = {COL_K};
    int by2[] = {COL_S, COL_K};
    check_laws(0, NULL, "min: -10\nmax: 100\nbins: 11\n", 3000);
    check_laws(1, by, "buckets: log\nbase: 3\nmin: 0.5\nmax: 200\n", 3000);
    check_laws(2, by2, "edges: [-40, 0, 0.5, 7, 149.5]\n", 2000);
}

static void test_selection(void **st)
{
    (void)st;
    rng_state = 6;
    int by[] = {COL_K};
    sf_agent_config cfg = make_cfg(COL_V, 1, by, "min: -50\nmax: 150\nbins: 20\n");
    data d = data_new(3000);
    random_data(&d, 4);
    data half = data_new(d.n / 2);
    uint32_t *sel = malloc(half.n * sizeof *sel);
    assert_non_null(sel);
    for (size_t i = 0; i < half.n; i++) {
        sel[i] = (uint32_t)(2 * i);
        half.v[i] = d.v[2 * i];
        half.vnull[i] = d.vnull[2 * i];
        half.key[i] = d.key[2 * i];
    }
    void *a = new_state(ops, &cfg), *b = new_state(ops, &cfg);
    sf_batch batch;
    fill(&batch, &d, 0, d.n);
    for (size_t at = 0; at < half.n; at += 64) {
        sf_rows rows = {0, half.n - at < 64 ? half.n - at : 64, sel + at, SF_ROWS_NO_SHARD};
        assert_int_equal(ops->process(a, &batch, &rows), SF_OK);
    }
    sf_batch_fini(&batch);
    feed(b, &half, 101);
    assert_same_state(ops, a, b);
    free(sel);
    free_state(ops, a);
    free_state(ops, b);
    data_free(&d);
    data_free(&half);
    yaml_cfg_free(&cfg);
}

/* States made with other bins are refused. */
static void test_decode_other_bins(void **st)
{
    (void)st;
    sf_agent_config a = make_cfg(COL_V, 0, NULL, "min: 0\nmax: 1\nbins: 4\n");
    sf_agent_config b = make_cfg(COL_V, 0, NULL, "min: 0\nmax: 2\nbins: 4\n");
    sf_agent_config c = make_cfg(COL_V, 0, NULL, "edges: [0, 0.25, 0.5, 0.75, 1]\n");
    void *sa = new_state(ops, &a), *sb = new_state(ops, &b), *sc = new_state(ops, &c);
    sf_buf e = encoded(ops, sa);
    assert_int_equal(ops->decode(sb, e.data, e.len), SF_ERR_PARSE);
    assert_int_equal(ops->decode(sc, e.data, e.len), SF_ERR_PARSE);
    assert_int_equal(ops->decode(sa, e.data, e.len), SF_OK);
    sf_buf_fini(&e);
    free_state(ops, sa);
    free_state(ops, sb);
    free_state(ops, sc);
    yaml_cfg_free(&a);
    yaml_cfg_free(&b);
    yaml_cfg_free(&c);
}

/* ---- grouped results against per-group references --------------------------------- */

static void test_grouped_vs_ungrouped(void **st)
{
    (void)st;
    rng_state = 7;
    int by[] = {COL_K};
    const char *yaml = "buckets: log\nbase: 2\nmin: 0.25\nmax: 128\n";
    sf_agent_config gcfg = make_cfg(COL_V, 1, by, yaml);
    sf_agent_config ucfg = make_cfg(COL_V, 0, NULL, yaml);
    data d = data_new(6000);
    random_data(&d, 5);
    void *g = new_state(ops, &gcfg);
    feed(g, &d, 500);
    const char *keys[] = {"", NULL, "api", "cache\\1", "db", "web|x"};
    const char *json_keys[] = {"", "\\\\N", "api", "cache\\\\\\\\1", "db", "web\\\\|x"};
    sf_buf want;
    sf_buf_init(&want);
    assert_int_equal(sf_buf_printf(&want, "{\"groups\":{"), SF_OK);
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
        assert_true(m > 0);
        void *u = new_state(ops, &ucfg);
        feed(u, &sub, 100);
        char *r = report_text(ops, u);
        assert_int_equal(sf_buf_printf(&want, "%s\"%s\":%s", k ? "," : "", json_keys[k], r), SF_OK);
        free(r);
        sf_batch b;
        fill(&b, &sub, 0, 1);
        uint8_t *key = NULL;
        size_t cap = 0, len;
        assert_int_equal(sf_agent_row_key(&b, by, 1, 0, &key, &cap, &len), SF_OK);
        double a, w;
        assert_int_equal(ops->stat(g, key, len, "count", &a), SF_OK);
        assert_int_equal(ops->stat(u, NULL, 0, "count", &w), SF_OK);
        assert_true(a == w);
        size_t nonnull = 0;
        for (size_t i = 0; i < m; i++) nonnull += !sub.vnull[i];
        assert_true(a == (double)nonnull);
        assert_int_equal(ops->stat(g, key, len, "rows", &a), SF_OK);
        assert_true(a == (double)m);
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
    assert_true(stat_of(ops, g, "rows") == (double)d.n);
    double x;
    assert_int_equal(ops->stat(g, NULL, 0, "mean", &x), SF_ERR_ARG);
    uint8_t nokey[] = {1, 1, 0, 0, 0, 'z'};
    assert_int_equal(ops->stat(g, nokey, sizeof nokey, "count", &x), SF_ERR_ARG);
    sf_buf_fini(&want);
    free_state(ops, g);
    data_free(&d);
    yaml_cfg_free(&gcfg);
    yaml_cfg_free(&ucfg);
}

/* ---- configuration errors ------------------------------------------------------------ */

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
    expect_config_error(COL_V, "min: 5\nmax: 5\n", "test.yaml:2: agent 'lat_h': option 'max'", "not above min");
    expect_config_error(COL_V, "min: 5\nmax: 1\n", "test.yaml:2: agent 'lat_h': option 'max'", "not above min");
    expect_config_error(COL_V, "min: 0\nmax: 1\nbins: 0\n", "test.yaml:3: agent 'lat_h': option 'bins'", "0");
    expect_config_error(COL_V, "min: 0\nmax: 1\nbins: 100001\n", "option 'bins'", "100000");
    expect_config_error(COL_V, "max: 1\n", "agent 'lat_h': option 'min'", "required");
    expect_config_error(COL_V, "min: 1\n", "agent 'lat_h': option 'max'", "required");
    expect_config_error(COL_V, "edges: [0, 2, 1]\n", "test.yaml:1: agent 'lat_h': option 'edges'", "increase");
    expect_config_error(COL_V, "edges: [0, 1, 1]\n", "option 'edges'", "increase");
    expect_config_error(COL_V, "edges: [3]\n", "option 'edges'", "two edges");
    expect_config_error(COL_V, "edges: [0, x]\n", "option 'edges'", "number");
    expect_config_error(COL_V, "edges: [0, 1]\nmin: 0\n", "test.yaml:2: agent 'lat_h': option 'min'", "edges");
    expect_config_error(COL_V, "buckets: log\nbase: 1\n", "test.yaml:2: agent 'lat_h': option 'base'", "above 1");
    expect_config_error(COL_V, "buckets: log\nmin: 0\n", "test.yaml:2: agent 'lat_h': option 'min'", "above 0");
    expect_config_error(COL_V, "buckets: log\nmin: 10\nmax: 10\n", "option 'max'", "not above min");
    expect_config_error(COL_V, "buckets: log\nbins: 5\n", "option 'bins'", "fixed");
    expect_config_error(COL_V, "buckets: log\nbase: 1.00001\nmax: 1e300\n", "option 'max'", "more than 100000");
    expect_config_error(COL_V, "min: 0\nmax: 1\nbase: 2\n", "option 'base'", "log");
    expect_config_error(COL_V, "buckets: linear\n", "test.yaml:1: agent 'lat_h': option 'buckets'", "fixed, log");
    expect_config_error(COL_V, "min: 1e16\nmax: 1.0000000000000002e16\nbins: 10\n", "option 'bins'", "increase");
    expect_config_error(COL_V, "min: -1.5e308\nmax: 1.5e308\n", "option 'max'", "not finite");
    expect_config_error(COL_V, "min: 0\nmax: 1\nwidth: 3\n", "test.yaml:3: agent 'lat_h': unknown option 'width'",
                        NULL);
    expect_config_error(COL_K, "min: 0\nmax: 1\n", "option 'column'", "string");
}

/* An optional argument runs only the tests whose names match it. */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fixed_bins),
        cmocka_unit_test(test_log_bins),
        cmocka_unit_test(test_explicit_edges),
        cmocka_unit_test(test_int_column),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_decode_other_bins),
        cmocka_unit_test(test_grouped_vs_ungrouped),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
