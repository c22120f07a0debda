/* Unit tests of the `stats` agent (agents/stats.c) and the agent registry.
 * Expectations come from hand-computed reports, exact integer arithmetic,
 * a two-pass long double reference, or a second path through the agent
 * (ungrouped states over the rows of one key). */
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
#include "shardflow/xsum.h"

#include "agents/builtin.h"

#include "agent_testkit.h"

enum { COL_V, COL_SERVICE, COL_N, COL_TS, COL_W, NCOLS };

static const sf_agent_ops *ops = &sf__agent_stats;
static sf_schema schema;

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "service", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "ts", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "w", SF_FLOAT64) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* An agent configuration; by_col must outlive it. */
static sf_agent_config make_cfg(int col, int nby, const int *by_col)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = "stats";
    c.id = "lat";
    c.column = col >= 0 ? schema.fields[col].name : NULL;
    c.col = col;
    c.nby = nby;
    c.by_col = by_col;
    c.schema = &schema;
    c.node = NULL;
    c.file = "wf.yaml";
    c.line = 7;
    return c;
}

/* One row of test data. NULL service = null key; v_null = null value. */
typedef struct row {
    double v;
    const char *service;
    int64_t n;
    int64_t ts;
    double w;
    bool v_null;
} row;

static void fill_batch(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        b->cols[COL_V].f64[r] = rows[r].v;
        b->cols[COL_N].i64[r] = rows[r].n;
        b->cols[COL_TS].i64[r] = rows[r].ts;
        b->cols[COL_W].f64[r] = rows[r].w;
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

/* Processes rows in morsels of `morsel` rows. */
static void feed(void *s, const row *rows, size_t n, size_t morsel)
{
    sf_batch b;
    fill_batch(&b, rows, n);
    feed_morsels_or_empty(ops, s, &b, morsel);
    sf_batch_fini(&b);
}

/* ---- reports written by hand ---------------------------------------------- */

static void test_report_tiny(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.v = 1.0}, {.v = 2.0}};
    feed(s, rows, 2, 16);
    /* mean 1.5, variance ((1-1.5)^2 + (2-1.5)^2) / 1 = 0.5, stddev sqrt(0.5). */
    assert_report(ops, s, "{\"count\":2,\"nulls\":0,\"sum\":3,\"mean\":1.5,\"variance\":0.5,"
                     "\"stddev\":0.70710678118654757,\"min\":1,\"max\":2}");
    free_state(ops, s);
}

static void test_report_empty_and_single(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
    void *s = new_state(ops, &cfg);
    assert_report(ops, s, "{\"count\":0,\"nulls\":0,\"sum\":0,\"mean\":null,\"variance\":null,"
                     "\"stddev\":null,\"min\":null,\"max\":null}");
    row one[] = {{.v = -4.25}};
    feed(s, one, 1, 16);
    assert_report(ops, s, "{\"count\":1,\"nulls\":0,\"sum\":-4.25,\"mean\":-4.25,\"variance\":null,"
                     "\"stddev\":null,\"min\":-4.25,\"max\":-4.25}");
    free_state(ops, s);
}

static void test_nulls_skipped(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.v = 3.0}, {.v = 100.0, .v_null = true}, {.v = 5.0},
                  {.v_null = true}, {.v = 7.0}};
    feed(s, rows, 5, 2);
    /* 3, 5, 7: mean 5, variance (4 + 0 + 4) / 2 = 4, stddev 2. */
    assert_report(ops, s, "{\"count\":3,\"nulls\":2,\"sum\":15,\"mean\":5,\"variance\":4,"
                     "\"stddev\":2,\"min\":3,\"max\":7}");
    free_state(ops, s);
}

static void test_int_and_timestamp_columns(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_N, 0, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.n = 10}, {.n = -2}, {.n = 4}};
    feed(s, rows, 3, 2);
    /* mean 4, variance (36 + 36 + 0) / 2 = 36. */
    assert_report(ops, s, "{\"count\":3,\"nulls\":0,\"sum\":12,\"mean\":4,\"variance\":36,"
                     "\"stddev\":6,\"min\":-2,\"max\":10}");
    free_state(ops, s);

    cfg = make_cfg(COL_TS, 0, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
    s = new_state(ops, &cfg);
    row ts[] = {{.ts = 1000000}, {.ts = 3000000}};
    feed(s, ts, 2, 2);
    assert_report(ops, s, "{\"count\":2,\"nulls\":0,\"sum\":4000000,\"mean\":2000000,"
                     "\"variance\":2000000000000,\"stddev\":1414213.562373095,"
                     "\"min\":1000000,\"max\":3000000}");
    free_state(ops, s);
}

/* Ungrouped integer and timestamp columns over contiguous rows take a
 * block path (integer sums folded into the superaccumulators per block);
 * a selection of the same rows takes the per-value path (each value
 * converted to double and added with its square). Both must give the same
 * state bytes, for values near and beyond +-2^53 (exact and rounded
 * conversions), the int64 extremes, zeros and nulls, over several blocks
 * and morsel sizes. */
static void test_int_blocks_match_per_value(void **st)
{
    (void)st;
    const int64_t b53 = INT64_C(1) << 53;
    const int64_t edge[] = {0, 1, -1, b53 - 1, -b53 + 1, -b53, b53, b53 + 1, -b53 - 1, INT64_C(1) << 62,
                            -(INT64_C(1) << 62), INT64_MAX, INT64_MIN, 1709251200000000, -1709251200000000};
    uint64_t seed = 77;
    for (int col = COL_N; col <= COL_TS; col++) {
        for (int mix = 0; mix < 3; mix++) {
            const size_t n = 3000;
            sf_batch b;
            assert_int_equal(sf_batch_init(&b, &schema, NULL, n), SF_OK);
            for (size_t r = 0; r < n; r++) {
                seed = seed * 6364136223846793005ull + 1442695040888963407ull;
                uint64_t u = seed >> 11;
                int64_t v;
                if (mix == 0)
                    v = (int64_t)(u % 2001) - 1000;                           /* small only */
                else if (mix == 1)
                    v = u % 5 == 0 ? edge[u % (sizeof edge / sizeof edge[0])] : (int64_t)(u % 2001) - 1000;
                else
                    v = (int64_t)(u % (uint64_t)b53) * (u & 1 ? 1 : -1);     /* large, all below 2^53 */
                b.cols[col].i64[r] = v;
                b.cols[COL_V].f64[r] = 0;
            }
            b.nrows = n;
            for (size_t r = 5; r < n; r += 7) assert_int_equal(sf_batch_set_null(&b, col, r), SF_OK);
            sf_agent_config cfg = make_cfg(col, 0, NULL);
            assert_int_equal(ops->check(&cfg), SF_OK);
            void *blocks = new_state(ops, &cfg), *each = new_state(ops, &cfg);
            feed_morsels(ops, blocks, &b, mix == 1 ? 1000 : 700);
            uint32_t *sel = malloc(n * sizeof *sel);
            assert_non_null(sel);
            for (size_t r = 0; r < n; r++) sel[r] = (uint32_t)r;
            sf_rows all = {0, n, sel};
            assert_int_equal(ops->process(each, &b, &all), SF_OK);
            assert_same_state(ops, blocks, each);
            free(sel);
            free_state(ops, blocks);
            free_state(ops, each);
            sf_batch_fini(&b);
        }
    }
}

static void test_signed_zero_extremes(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
    const char *want = "{\"count\":2,\"nulls\":0,\"sum\":0,\"mean\":0,\"variance\":0,"
                       "\"stddev\":0,\"min\":-0,\"max\":0}";
    row a[] = {{.v = 0.0}, {.v = -0.0}};
    row b[] = {{.v = -0.0}, {.v = 0.0}};
    void *sa = new_state(ops, &cfg), *sb = new_state(ops, &cfg);
    feed(sa, a, 2, 1);
    feed(sb, b, 2, 1);
    assert_report(ops, sa, want);
    assert_report(ops, sb, want);
    assert_same_state(ops, sa, sb);
    /* Split across states and merged either way. */
    void *x = new_state(ops, &cfg), *y = new_state(ops, &cfg);
    feed(x, a, 1, 1);
    feed(y, a + 1, 1, 1);
    assert_int_equal(ops->merge(x, y), SF_OK);
    assert_report(ops, x, want);
    free_state(ops, x);
    x = new_state(ops, &cfg);
    feed(x, a, 1, 1);
    assert_int_equal(ops->merge(y, x), SF_OK);
    assert_report(ops, y, want);
    free_state(ops, x);
    free_state(ops, y);
    free_state(ops, sa);
    free_state(ops, sb);
}

static void test_non_finite_values(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.v = 1.0}, {.v = NAN}, {.v = 3.0}};
    feed(s, rows, 3, 8);
    /* NaN makes the sums undefined but is ignored by min and max. */
    assert_report(ops, s, "{\"count\":3,\"nulls\":0,\"sum\":null,\"mean\":null,\"variance\":null,"
                     "\"stddev\":null,\"min\":1,\"max\":3}");
    free_state(ops, s);
    s = new_state(ops, &cfg);
    row inf[] = {{.v = 1.0}, {.v = -INFINITY}};
    feed(s, inf, 2, 8);
    assert_report(ops, s, "{\"count\":2,\"nulls\":0,\"sum\":null,\"mean\":null,\"variance\":null,"
                     "\"stddev\":null,\"min\":null,\"max\":1}");
    free_state(ops, s);
}

static void test_grouped_by_hand(void **st)
{
    (void)st;
    int by[] = {COL_SERVICE};
    sf_agent_config cfg = make_cfg(COL_V, 1, by);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.v = 1.0, .service = "b"}, {.v = 4.0, .service = NULL},
                  {.v = 10.0, .service = "a"}, {.v = 3.0, .service = "b"},
                  {.v = 0.0, .service = "a", .v_null = true}};
    feed(s, rows, 5, 2);
    /* Keys in byte order: "\N" (the null key) < "a" < "b". */
    assert_report(ops, s, "{\"groups\":{"
                     "\"\\\\N\":{\"count\":1,\"nulls\":0,\"sum\":4,\"mean\":4,\"variance\":null,"
                     "\"stddev\":null,\"min\":4,\"max\":4},"
                     "\"a\":{\"count\":1,\"nulls\":1,\"sum\":10,\"mean\":10,\"variance\":null,"
                     "\"stddev\":null,\"min\":10,\"max\":10},"
                     "\"b\":{\"count\":2,\"nulls\":0,\"sum\":4,\"mean\":2,\"variance\":2,"
                     "\"stddev\":1.4142135623730951,\"min\":1,\"max\":3}}}");
    free_state(ops, s);

    /* No rows at all: no groups. */
    s = new_state(ops, &cfg);
    assert_report(ops, s, "{\"groups\":{}}");
    free_state(ops, s);
}

static void test_grouped_composite_keys(void **st)
{
    (void)st;
    int by[] = {COL_SERVICE, COL_N, COL_TS};
    sf_agent_config cfg = make_cfg(COL_V, 3, by);
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    /* 86400000000 us = 1970-01-02T00:00:00. */
    row rows[] = {{.v = 2.0, .service = "web", .n = 12, .ts = 86400000000},
                  {.v = 6.0, .service = "web", .n = 12, .ts = 86400000000},
                  {.v = 5.0, .service = "web", .n = -3, .ts = 0},
                  {.v = 7.0, .service = NULL, .n = 12, .ts = 0}};
    feed(s, rows, 4, 3);
    /* A null part prints as \N (JSON "\\N"), which sorts before letters. */
    assert_report(ops, s, "{\"groups\":{"
                     "\"\\\\N|12|1970-01-01T00:00:00\":{\"count\":1,\"nulls\":0,\"sum\":7,"
                     "\"mean\":7,\"variance\":null,\"stddev\":null,\"min\":7,\"max\":7},"
                     "\"web|-3|1970-01-01T00:00:00\":{\"count\":1,\"nulls\":0,\"sum\":5,"
                     "\"mean\":5,\"variance\":null,\"stddev\":null,\"min\":5,\"max\":5},"
                     "\"web|12|1970-01-02T00:00:00\":{\"count\":2,\"nulls\":0,\"sum\":8,"
                     "\"mean\":4,\"variance\":8,\"stddev\":2.8284271247461903,\"min\":2,\"max\":6}}}");
    free_state(ops, s);
}

static void test_grouped_by_float_key(void **st)
{
    (void)st;
    int by[] = {COL_W};
    sf_agent_config cfg = make_cfg(COL_V, 1, by);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.v = 1.0, .w = 0.5}, {.v = 2.0, .w = 0.5}, {.v = 3.0, .w = 0.25}};
    feed(s, rows, 3, 2);
    assert_report(ops, s, "{\"groups\":{"
                     "\"0.25\":{\"count\":1,\"nulls\":0,\"sum\":3,\"mean\":3,\"variance\":null,"
                     "\"stddev\":null,\"min\":3,\"max\":3},"
                     "\"0.5\":{\"count\":2,\"nulls\":0,\"sum\":3,\"mean\":1.5,\"variance\":0.5,"
                     "\"stddev\":0.70710678118654757,\"min\":1,\"max\":2}}}");
    free_state(ops, s);
}

/* Distinct keys never print alike: a null is \N, an empty string is "",
 * and '|' or '\' inside a string is escaped with '\'. */
static void test_keys_never_alike(void **st)
{
    (void)st;
    int by[] = {COL_SERVICE};
    sf_agent_config cfg = make_cfg(COL_V, 1, by);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.v = 1.0, .service = ""}, {.v = 3.0, .service = NULL}, {.v = 5.0, .service = "a|b"},
                  {.v = 7.0, .service = "a\\"}};
    feed(s, rows, 4, 2);
    /* JSON text: "" < "\\N" < "a\\\\" < "a\\|b" (bytes: '"' then '\\' ...). */
    assert_report(ops, s, "{\"groups\":{"
                     "\"\":{\"count\":1,\"nulls\":0,\"sum\":1,\"mean\":1,\"variance\":null,"
                     "\"stddev\":null,\"min\":1,\"max\":1},"
                     "\"\\\\N\":{\"count\":1,\"nulls\":0,\"sum\":3,\"mean\":3,\"variance\":null,"
                     "\"stddev\":null,\"min\":3,\"max\":3},"
                     "\"a\\\\\\\\\":{\"count\":1,\"nulls\":0,\"sum\":7,\"mean\":7,\"variance\":null,"
                     "\"stddev\":null,\"min\":7,\"max\":7},"
                     "\"a\\\\|b\":{\"count\":1,\"nulls\":0,\"sum\":5,\"mean\":5,\"variance\":null,"
                     "\"stddev\":null,\"min\":5,\"max\":5}}}");
    free_state(ops, s);

    /* Composite keys: ("x|y", "z") and ("x", "y|z") stay two groups. */
    int by2[] = {COL_SERVICE, COL_SERVICE};
    sf_agent_config cfg2 = make_cfg(COL_V, 2, by2);
    void *s2 = new_state(ops, &cfg2);
    row r2[] = {{.v = 1.0, .service = "x|y"}, {.v = 2.0, .service = "x"}};
    feed(s2, r2, 2, 2);
    char *text = report_text(ops, s2);
    assert_non_null(strstr(text, "\"x\\\\|y|x\\\\|y\""));
    assert_non_null(strstr(text, "\"x|x\""));
    free(text);
    free_state(ops, s2);
}

/* ---- references ------------------------------------------------------------ */

/* The variance is exact even where a double-double would cancel or
 * overflow: x = 2^52 + k and x = k * 2^500 (k = i mod 7) have the variance
 * of k (times 2^1000 for the second), whose exact value is a ratio of two
 * integers below 2^53, so one double division gives the correctly rounded
 * reference. */
static void test_variance_offset_and_scale(void **st)
{
    (void)st;
    enum { N = 1000 };
    int64_t sk = 0, sk2 = 0;
    for (int i = 0; i < N; i++) {
        sk += i % 7;
        sk2 += (int64_t)(i % 7) * (i % 7);
    }
    double want = (double)((int64_t)N * sk2 - sk * sk) / (double)((int64_t)N * (N - 1));
    for (int variant = 0; variant < 2; variant++) {
        sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
        void *s = new_state(ops, &cfg);
        row *rows = calloc(N, sizeof *rows);
        assert_non_null(rows);
        for (int i = 0; i < N; i++)
            rows[i].v = variant == 0 ? 4503599627370496.0 + (double)(i % 7) : ldexp((double)(i % 7), 500);
        feed(s, rows, N, 128);
        char *text = report_text(ops, s);
        const char *p = strstr(text, "\"variance\":");
        assert_non_null(p);
        double got = strtod(p + 11, NULL);
        double expect = variant == 0 ? want : ldexp(want, 1000);
        if (got != expect) fail_msg("variant %d: variance %.17g, exact %.17g", variant, got, expect);
        free(text);
        free(rows);
        free_state(ops, s);
    }
}

/* Values m * 2^-10 with |m| < 2^16, n = 4096: the sums are exact in double
 * and n * sum(m^2) - (sum m)^2 is exact in int64, so the variance has an
 * exact rational reference. */
static void test_against_exact_and_two_pass(void **st)
{
    (void)st;
    enum { N = 4096 };
    rng_state = 21;
    row *rows = calloc(N, sizeof *rows);
    assert_non_null(rows);
    int64_t sm = 0, smm = 0;
    long double lsum = 0;
    for (int i = 0; i < N; i++) {
        int64_t m = (int64_t)(rnd() % 65535) - 32767 + 20000; /* a mean far from 0 */
        sm += m;
        smm += m * m;
        rows[i].v = ldexp((double)m, -10);
        lsum += rows[i].v;
    }
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
    void *s = new_state(ops, &cfg);
    feed(s, rows, N, 1000);

    double sum = ldexp((double)sm, -10); /* exact: |sm| < 2^29 */
    double mean = sum / N;               /* correctly rounded by IEEE division */
    int64_t num = (int64_t)N * smm - sm * sm; /* < 2^57 */
    long double var_exact = ldexpl((long double)num / ((long double)N * (N - 1)), -20);
    long double lmean = lsum / N, ss = 0;
    for (int i = 0; i < N; i++) ss += (rows[i].v - lmean) * (rows[i].v - lmean);
    long double var_two_pass = ss / (N - 1);

    char *text = report_text(ops, s);
    double got_sum, got_mean, got_var, got_sd;
    const char *p = strstr(text, "\"sum\":");
    assert_non_null(p);
    assert_int_equal(sscanf(p, "\"sum\":%lf,\"mean\":%lf,\"variance\":%lf,\"stddev\":%lf", &got_sum,
                            &got_mean, &got_var, &got_sd),
                     4);
    assert_true(got_sum == sum);
    assert_true((long double)sum == lsum);
    assert_true(got_mean == mean);
    double ulp = nextafter((double)var_exact, INFINITY) - (double)var_exact;
    assert_true(fabsl((long double)got_var - var_exact) <= 2 * ulp);
    assert_true(fabsl((long double)got_var - var_two_pass) <= 4 * ulp);
    assert_true(got_sd == sqrt(got_var));
    free(text);
    free_state(ops, s);
    free(rows);
}

/* The exact sums inside an ungrouped state's encoding (format 1: version,
 * key count, group count, then key, count, nulls, min, max, sum, squares). */
static void decode_sums(const void *s, sf_xsum *sum, sf_xsum *sq)
{
    sf_buf b = encoded(ops, s);
    sf_rd r;
    sf_rd_init(&r, b.data, b.len);
    uint8_t version, nby;
    uint64_t ng, u;
    const char *key;
    size_t klen;
    assert_int_equal(sf_rd_u8(&r, &version), SF_OK);
    assert_int_equal(version, 1);
    assert_int_equal(sf_rd_u8(&r, &nby), SF_OK);
    assert_int_equal(sf_rd_u64(&r, &ng), SF_OK);
    assert_int_equal(ng, 1);
    assert_int_equal(sf_rd_str(&r, &key, &klen), SF_OK);
    for (int i = 0; i < 4; i++) assert_int_equal(sf_rd_u64(&r, &u), SF_OK);
    assert_int_equal(sf_xsum_decode(sum, &r), SF_OK);
    assert_int_equal(sf_xsum_decode(sq, &r), SF_OK);
    assert_int_equal(r.off, b.len);
    sf_buf_fini(&b);
}

static void assert_same_xsum(const sf_xsum *a, const sf_xsum *b)
{
    sf_buf ea, eb;
    sf_buf_init(&ea);
    sf_buf_init(&eb);
    assert_int_equal(sf_xsum_encode(a, &ea), SF_OK);
    assert_int_equal(sf_xsum_encode(b, &eb), SF_OK);
    assert_int_equal(ea.len, eb.len);
    assert_memory_equal(ea.data, eb.data, ea.len);
    sf_buf_fini(&ea);
    sf_buf_fini(&eb);
}

/* The sum of squares is x*x + fma(x, x, -x*x) per value, over the whole
 * exponent range (tiny values whose square underflows, huge ones whose
 * square overflows), against a reference accumulated here. */
static void test_squares_exact(void **st)
{
    (void)st;
    static const int ranges[][2] = {{-20, 20}, {-600, -400}, {-1074, -500}, {400, 520}, {-1, 1}};
    rng_state = 24;
    for (size_t k = 0; k < sizeof ranges / sizeof ranges[0]; k++) {
        enum { N = 3000 };
        row *rows = calloc(N, sizeof *rows);
        assert_non_null(rows);
        sf_xsum want_sum, want_sq, got_sum, got_sq;
        sf_xsum_init(&want_sum);
        sf_xsum_init(&want_sq);
        for (int i = 0; i < N; i++) {
            int e = ranges[k][0] + (int)(rnd() % (uint64_t)(ranges[k][1] - ranges[k][0] + 1));
            double x = ldexp(1.0 + (double)(rnd() >> 11) * 0x1p-53, e);
            if (rnd() & 1) x = -x;
            rows[i].v = x;
            sf_xsum_add(&want_sum, x);
            double p = x * x;
            sf_xsum_add(&want_sq, p);
            if (isfinite(p)) sf_xsum_add(&want_sq, fma(x, x, -p));
        }
        sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
        void *s = new_state(ops, &cfg);
        feed(s, rows, N, 777);
        decode_sums(s, &got_sum, &got_sq);
        assert_same_xsum(&got_sum, &want_sum);
        assert_same_xsum(&got_sq, &want_sq);
        free_state(ops, s);
        free(rows);
    }
}

static const char *const services[] = {"auth", "search", "cart", "", "pay", "img", "api"};
enum { NSERVICES = sizeof services / sizeof services[0] };

static void random_rows(row *rows, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t r = rnd();
        rows[i].v = ldexp((double)(int64_t)(r >> 20), -(int)(r % 60)) * ((r & 1) ? -1 : 1);
        rows[i].service = (r >> 8) % 11 == 0 ? NULL : services[(r >> 12) % NSERVICES];
        rows[i].n = (int64_t)((r >> 16) % 5) - 2;
        rows[i].ts = (int64_t)((r >> 24) % 3) * 1000000;
        rows[i].w = 0.0;
        rows[i].v_null = (r >> 4) % 13 == 0;
    }
}

/* A grouped result equals, key by key, the ungrouped result over the rows of
 * that key alone. */
static void check_grouped_against_filtered(const int *by, int nby, const row *rows, size_t n)
{
    sf_agent_config gcfg = make_cfg(COL_V, nby, by);
    void *g = new_state(ops, &gcfg);
    feed(g, rows, n, 97);
    char *text = report_text(ops, g);

    sf_agent_config ucfg = make_cfg(COL_V, 0, NULL);
    row *sel = malloc(n * sizeof *sel);
    assert_non_null(sel);
    bool *done = calloc(n, sizeof *done);
    assert_non_null(done);
    size_t found = 0;
    for (size_t i = 0; i < n; i++) {
        if (done[i]) continue;
        /* The key text of row i, as the report prints it. */
        char key[128] = "";
        for (int k = 0; k < nby; k++) {
            char part[64] = "";
            /* A null key part prints as \N, in JSON "\\N". */
            if (by[k] == COL_SERVICE)
                snprintf(part, sizeof part, "%s", rows[i].service ? rows[i].service : "\\\\N");
            if (by[k] == COL_N) snprintf(part, sizeof part, "%lld", (long long)rows[i].n);
            if (by[k] == COL_TS) snprintf(part, sizeof part, "1970-01-01T00:00:%02lld",
                                          (long long)(rows[i].ts / 1000000));
            if (k > 0) strcat(key, "|");
            strcat(key, part);
        }
        size_t m = 0;
        for (size_t j = i; j < n; j++) {
            bool same = true;
            for (int k = 0; k < nby; k++) {
                if (by[k] == COL_SERVICE) {
                    /* A null and an empty string are different keys. */
                    const char *a = rows[i].service, *b = rows[j].service;
                    same = same && (a && b ? strcmp(a, b) == 0 : a == b);
                }
                if (by[k] == COL_N) same = same && rows[i].n == rows[j].n;
                if (by[k] == COL_TS) same = same && rows[i].ts == rows[j].ts;
            }
            if (same) {
                sel[m++] = rows[j];
                done[j] = true;
            }
        }
        void *u = new_state(ops, &ucfg);
        feed(u, sel, m, 50);
        char *want = report_text(ops, u);
        char *entry = malloc(strlen(key) + strlen(want) + 8);
        assert_non_null(entry);
        sprintf(entry, "\"%s\":%s", key, want);
        if (strstr(text, entry) == NULL) fail_msg("group %s: %s not in %s", key, entry, text);
        found++;
        free(entry);
        free(want);
        free_state(ops, u);
    }
    /* No other groups: count the objects inside "groups". */
    size_t objects = 0;
    for (const char *p = text; (p = strstr(p, "\"count\":")) != NULL; p++) objects++;
    assert_int_equal(objects, found);
    free(done);
    free(sel);
    free(text);
    free_state(ops, g);
}

static void test_grouped_against_filtered(void **st)
{
    (void)st;
    enum { N = 3000 };
    rng_state = 22;
    row *rows = malloc(N * sizeof *rows);
    assert_non_null(rows);
    random_rows(rows, N);
    int by1[] = {COL_SERVICE};
    check_grouped_against_filtered(by1, 1, rows, N);
    int by2[] = {COL_N};
    check_grouped_against_filtered(by2, 1, rows, N);
    int by3[] = {COL_SERVICE, COL_N, COL_TS};
    check_grouped_against_filtered(by3, 3, rows, N);
    free(rows);
}

/* One state fed two batches whose dictionaries give the same codes to
 * different strings: the code cache must not leak across batches. */
static void test_code_cache_across_batches(void **st)
{
    (void)st;
    int by[] = {COL_SERVICE};
    sf_agent_config cfg = make_cfg(COL_V, 1, by);
    void *s = new_state(ops, &cfg);
    row first[] = {{.v = 1.0, .service = "x"}, {.v = 2.0, .service = "y"}};
    row second[] = {{.v = 10.0, .service = "y"}, {.v = 20.0, .service = "x"}};
    feed(s, first, 2, 2);
    feed(s, second, 2, 2);
    assert_report(ops, s, "{\"groups\":{"
                     "\"x\":{\"count\":2,\"nulls\":0,\"sum\":21,\"mean\":10.5,\"variance\":180.5,"
                     "\"stddev\":13.435028842544403,\"min\":1,\"max\":20},"
                     "\"y\":{\"count\":2,\"nulls\":0,\"sum\":12,\"mean\":6,\"variance\":32,"
                     "\"stddev\":5.6568542494923806,\"min\":2,\"max\":10}}}");
    free_state(ops, s);
}

/* ---- merge laws and encoding -------------------------------------------------- */

static void check_merge_laws(const sf_agent_config *cfg)
{
    enum { N = 2400 };
    row *rows = malloc(N * sizeof *rows);
    assert_non_null(rows);
    random_rows(rows, N);
    void *whole = new_state(ops, cfg);
    feed(whole, rows, N, 256);
    void *a = new_state(ops, cfg), *b = new_state(ops, cfg), *c = new_state(ops, cfg);
    feed(a, rows, 700, 64);
    feed(b, rows + 700, 1000, 333);
    feed(c, rows + 1700, N - 1700, 1);

    /* merge(empty, x) == x and merge(x, empty) == x */
    void *e = new_state(ops, cfg);
    void *ea = copy_state(ops, cfg, a);
    assert_same_state(ops, ea, a);
    assert_int_equal(ops->merge(ea, e), SF_OK);
    assert_same_state(ops, ea, a);

    /* (a + b) + c == a + (b + c) == whole, and a + b == b + a */
    void *ab = copy_state(ops, cfg, a);
    assert_int_equal(ops->merge(ab, b), SF_OK);
    void *ab_c = copy_state(ops, cfg, ab);
    assert_int_equal(ops->merge(ab_c, c), SF_OK);
    void *bc = copy_state(ops, cfg, b);
    assert_int_equal(ops->merge(bc, c), SF_OK);
    void *a_bc = copy_state(ops, cfg, a);
    assert_int_equal(ops->merge(a_bc, bc), SF_OK);
    void *ba = copy_state(ops, cfg, b);
    assert_int_equal(ops->merge(ba, a), SF_OK);
    assert_same_state(ops, ab_c, a_bc);
    assert_same_state(ops, ab_c, whole);
    assert_same_state(ops, ab, ba);
    char *r1 = report_text(ops, ab_c), *r2 = report_text(ops, whole);
    assert_string_equal(r1, r2);
    free(r1);
    free(r2);

    /* Rows in another order give the same state. */
    for (size_t i = N - 1; i > 0; i--) {
        size_t j = (size_t)(rnd() % (i + 1));
        row t = rows[i];
        rows[i] = rows[j];
        rows[j] = t;
    }
    void *shuffled = new_state(ops, cfg);
    feed(shuffled, rows, N, 129);
    assert_same_state(ops, shuffled, whole);

    /* decode(encode(x)) == x, into a state that already held data */
    sf_buf enc = encoded(ops, whole);
    assert_int_equal(ops->decode(a, enc.data, enc.len), SF_OK);
    assert_same_state(ops, a, whole);
    r1 = report_text(ops, a);
    r2 = report_text(ops, whole);
    assert_string_equal(r1, r2);
    free(r1);
    free(r2);
    /* and a decoded state keeps accepting rows */
    feed(a, rows, 10, 10);
    feed(whole, rows, 10, 10);
    assert_same_state(ops, a, whole);
    sf_buf_fini(&enc);

    void *all[] = {whole, a, b, c, e, ea, ab, ab_c, bc, a_bc, ba, shuffled};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_state(ops, all[i]);
    free(rows);
}

static void test_merge_laws(void **st)
{
    (void)st;
    rng_state = 23;
    sf_agent_config plain = make_cfg(COL_V, 0, NULL);
    check_merge_laws(&plain);
    int by1[] = {COL_SERVICE};
    sf_agent_config by_service = make_cfg(COL_V, 1, by1);
    check_merge_laws(&by_service);
    int by3[] = {COL_TS, COL_SERVICE, COL_N};
    sf_agent_config by_three = make_cfg(COL_V, 3, by3);
    check_merge_laws(&by_three);
    sf_agent_config ints = make_cfg(COL_N, 1, by1);
    check_merge_laws(&ints);
}

static void test_decode_rejects(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.v = 1.0}, {.v = 2.0}};
    feed(s, rows, 2, 2);
    sf_buf enc = encoded(ops, s);
    void *d = new_state(ops, &cfg);
    /* Every truncation fails. */
    for (size_t n = 0; n < enc.len; n++) assert_int_not_equal(ops->decode(d, enc.data, n), SF_OK);
    /* An unknown format version fails. */
    enc.data[0] = 99;
    assert_int_equal(ops->decode(d, enc.data, enc.len), SF_ERR_PARSE);
    enc.data[0] = 1;
    /* Trailing bytes fail. */
    assert_int_equal(sf_buf_put_u8(&enc, 0), SF_OK);
    assert_int_equal(ops->decode(d, enc.data, enc.len), SF_ERR_PARSE);
    /* A grouped state does not decode into an ungrouped one. */
    int by[] = {COL_SERVICE};
    sf_agent_config gcfg = make_cfg(COL_V, 1, by);
    void *g = new_state(ops, &gcfg);
    row grows[] = {{.v = 1.0, .service = "a"}};
    feed(g, grows, 1, 1);
    sf_buf genc = encoded(ops, g);
    assert_int_equal(ops->decode(d, genc.data, genc.len), SF_ERR_PARSE);
    sf_buf_fini(&genc);
    sf_buf_fini(&enc);
    free_state(ops, g);
    free_state(ops, d);
    free_state(ops, s);
}

/* ---- configuration checks ------------------------------------------------------ */

static void test_check_rejects_string_column(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_SERVICE, 0, NULL);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "wf.yaml:7: agent 'lat': stats needs a numeric column, 'service' is string");
    cfg = make_cfg(-1, 0, NULL);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "wf.yaml:7: agent 'lat'"));
    cfg = make_cfg(COL_V, 0, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
}

static void test_check_rejects_unknown_option(void **st)
{
    (void)st;
    char *keys[] = {"agent", "id", "column", "by", "bins"};
    int lines[] = {7, 8, 9, 10, 11};
    sf_cfg_node node;
    memset(&node, 0, sizeof node);
    node.kind = SF_NODE_MAP;
    node.line = 7;
    node.n = 5;
    node.keys = keys;
    node.key_lines = lines;
    int by[] = {COL_SERVICE};
    sf_agent_config cfg = make_cfg(COL_V, 1, by);
    cfg.node = &node;
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "wf.yaml:11: agent 'lat': unknown option 'bins' "
                                            "(stats accepts agent, id, column, by, where, baseline)");
    node.n = 4; /* without "bins" every key is known */
    assert_int_equal(ops->check(&cfg), SF_OK);
}

/* ---- registry ------------------------------------------------------------------ */

static sf_status noop_init(void *s, const sf_agent_config *c) { (void)s; (void)c; return SF_OK; }
static sf_status noop_process(void *s, const sf_batch *b, const sf_rows *r)
{
    (void)s; (void)b; (void)r;
    return SF_OK;
}
static sf_status noop_merge(void *a, const void *b) { (void)a; (void)b; return SF_OK; }
static sf_status noop_encode(const void *s, sf_buf *o) { (void)s; (void)o; return SF_OK; }
static sf_status noop_decode(void *s, const void *b, size_t n) { (void)s; (void)b; (void)n; return SF_OK; }
static sf_status noop_report(const void *s, sf_json *j) { (void)s; sf_json_null(j); return SF_OK; }
static void noop_destroy(void *s) { (void)s; }

static void test_registry(void **st)
{
    (void)st;
    sf_agents_register_builtin();
    sf_agents_register_builtin(); /* idempotent */
    assert_ptr_equal(sf_agent_find("stats"), &sf__agent_stats);
    assert_string_equal(sf_agent_find("stats")->aspect, "performance");
    assert_null(sf_agent_find("no-such-agent"));
    assert_int_equal(sf_agent_register(&sf__agent_stats), SF_ERR_ARG); /* name taken */

    static sf_agent_ops custom = {
        .abi_version = SF_AGENT_ABI_VERSION, .name = "custom", .aspect = "quality",
        .state_size = 8, .init = noop_init, .process = noop_process, .merge = noop_merge,
        .encode = noop_encode, .decode = noop_decode, .report = noop_report,
        .destroy = noop_destroy};
    static sf_agent_ops old_abi;
    old_abi = custom;
    old_abi.name = "old";
    old_abi.abi_version = SF_AGENT_ABI_VERSION + 1;
    assert_int_equal(sf_agent_register(&old_abi), SF_ERR_ARG);
    assert_null(sf_agent_find("old"));
    assert_int_equal(sf_agent_register(&custom), SF_OK);
    assert_ptr_equal(sf_agent_find("custom"), &custom);
    assert_int_equal(sf_agent_register(&custom), SF_ERR_ARG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_tiny),
        cmocka_unit_test(test_report_empty_and_single),
        cmocka_unit_test(test_nulls_skipped),
        cmocka_unit_test(test_int_and_timestamp_columns),
        cmocka_unit_test(test_int_blocks_match_per_value),
        cmocka_unit_test(test_signed_zero_extremes),
        cmocka_unit_test(test_non_finite_values),
        cmocka_unit_test(test_grouped_by_hand),
        cmocka_unit_test(test_grouped_composite_keys),
        cmocka_unit_test(test_grouped_by_float_key),
        cmocka_unit_test(test_keys_never_alike),
        cmocka_unit_test(test_variance_offset_and_scale),
        cmocka_unit_test(test_against_exact_and_two_pass),
        cmocka_unit_test(test_squares_exact),
        cmocka_unit_test(test_grouped_against_filtered),
        cmocka_unit_test(test_code_cache_across_batches),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_check_rejects_string_column),
        cmocka_unit_test(test_check_rejects_unknown_option),
        cmocka_unit_test(test_registry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
