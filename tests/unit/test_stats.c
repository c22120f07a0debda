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
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/xsum.h"

#include "agents/builtin.h"
#include "agents/order_key.h"
#include "agents/stats_kernels.h"

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
            sf_rows all = {0, n, sel, SF_ROWS_NO_SHARD};
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

/* ---- vector block kernels ------------------------------------------------------ */

/* The kernels of agents/stats_simd.c take a block of up to 256 values when
 * its values allow exact split sums (stats_kernels.h): doubles that are
 * finite and normal, whose nonzero magnitudes span at most 17 binades, with
 * exponents from -400 to 500; integers below 2^53 in magnitude. Either way
 * a block goes, the state must be the per-value path's, byte for byte.
 * These tests feed the same rows with the kernels forced on, forced off,
 * and as one selection (the per-value path of selections), check each state
 * against a reference accumulated here value by value (count, nulls,
 * extremes in the order -0 < +0, the exact sums of x and of x^2 as
 * superaccumulators, the rounded sum), and compare the encodings. They also
 * call the kernels on each block directly: a kernel must take exactly the
 * blocks the header's conditions allow, and give their exact sums. Where
 * the CPU has no AVX-512, forcing the kernels on leaves them off: the
 * kernels then take nothing, and the references are still checked. */

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

static bool simd_available(void)
{
    sf__stats_simd_force(1);
    bool on = sf__stats_simd_enabled();
    sf__stats_simd_force(-1);
    return on;
}

/* What a state of the non-null values must hold. */
typedef struct vref {
    uint64_t count, nulls;
    bool ordered;    /* a value other than NaN was counted */
    double min, max; /* in the order -inf < ... < -0 < +0 < ... < +inf */
    sf_xsum sum, sq;
} vref;

static void vref_init(vref *r)
{
    memset(r, 0, sizeof *r);
    sf_xsum_init(&r->sum);
    sf_xsum_init(&r->sq);
}

/* a comes before b in the order of the extremes (neither is NaN). */
static bool before(double a, double b)
{
    if (a != b) return a < b;
    return signbit(a) && !signbit(b);
}

/* x^2 as x*x plus its exact tail fma(x, x, -x*x), as test_squares_exact. */
static void vref_add(vref *r, double x)
{
    r->count++;
    sf_xsum_add(&r->sum, x);
    double p = x * x;
    sf_xsum_add(&r->sq, p);
    if (isfinite(p)) sf_xsum_add(&r->sq, fma(x, x, -p));
    if (isnan(x)) return;
    if (!r->ordered || before(x, r->min)) r->min = x;
    if (!r->ordered || before(r->max, x)) r->max = x;
    r->ordered = true;
}

/* The reference of rows [0, n) of x (doubles) or iv (integers, converted). */
static void vref_rows(vref *r, const double *x, const int64_t *iv, const uint8_t *valid, size_t n)
{
    vref_init(r);
    for (size_t i = 0; i < n; i++) {
        if (valid != NULL && valid[i] == 0)
            r->nulls++;
        else
            vref_add(r, x != NULL ? x[i] : (double)iv[i]);
    }
}

/* Equal bits (so -0 differs from +0), or both NaN. */
static void assert_same_double(double got, double want, const char *what)
{
    if (isnan(got) && isnan(want)) return;
    if (memcmp(&got, &want, sizeof got) != 0) fail_msg("%s: %a, expected %a", what, got, want);
}

static void check_ref(const void *s, const vref *r)
{
    assert_true(stat_of(ops, s, "count") == (double)r->count);
    assert_true(stat_of(ops, s, "rows") == (double)(r->count + r->nulls));
    if (r->ordered) {
        assert_same_double(stat_of(ops, s, "min"), r->min, "min");
        assert_same_double(stat_of(ops, s, "max"), r->max, "max");
    } else {
        assert_true(isnan(stat_of(ops, s, "min")));
        assert_true(isnan(stat_of(ops, s, "max")));
    }
    sf_xsum sum, sq;
    decode_sums(s, &sum, &sq);
    assert_same_xsum(&sum, &r->sum);
    assert_same_xsum(&sq, &r->sq);
    assert_same_double(stat_of(ops, s, "sum"), sf_xsum_round(&r->sum), "sum");
}

/* A batch of n rows whose column col holds x[0..n) or iv[0..n), with the
 * rows where valid[r] == 0 null (valid NULL: no validity array). Under a
 * null the value stays what x or iv holds there, which the agent must not
 * read. */
static void column_batch(sf_batch *b, int col, const double *x, const int64_t *iv, const uint8_t *valid,
                         size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    if (valid != NULL) assert_int_equal(sf_batch_enable_valid(b, col), SF_OK);
    for (size_t r = 0; r < n; r++) {
        if (valid != NULL && valid[r] == 0) assert_int_equal(sf_batch_set_null(b, col, r), SF_OK);
        if (x != NULL)
            b->cols[col].f64[r] = x[r];
        else
            b->cols[col].i64[r] = iv[r];
    }
    b->nrows = n;
}

/* The rows of b fed in morsels with the kernels on, with them off, and as
 * one selection of every row: each state matches the reference, and all
 * encode alike (on and off compared only where the kernels run). */
static void check_on_off(int col, const sf_batch *b, size_t morsel, const vref *want, bool simd)
{
    sf_agent_config cfg = make_cfg(col, 0, NULL);
    void *on = new_state(ops, &cfg), *off = new_state(ops, &cfg), *each = new_state(ops, &cfg);
    sf__stats_simd_force(1);
    assert_true(sf__stats_simd_enabled() == simd);
    feed_morsels(ops, on, b, morsel);
    sf__stats_simd_force(0);
    assert_false(sf__stats_simd_enabled());
    feed_morsels(ops, off, b, morsel);
    sf__stats_simd_force(-1);
    uint32_t *sel = malloc((b->nrows ? b->nrows : 1) * sizeof *sel);
    assert_non_null(sel);
    for (size_t r = 0; r < b->nrows; r++) sel[r] = (uint32_t)r;
    sf_rows all = {0, b->nrows, sel, SF_ROWS_NO_SHARD};
    assert_int_equal(ops->process(each, b, &all), SF_OK);
    free(sel);
    check_ref(on, want);
    check_ref(off, want);
    check_ref(each, want);
    if (simd) assert_same_state(ops, on, off);
    assert_same_state(ops, off, each);
    free_state(ops, on);
    free_state(ops, off);
    free_state(ops, each);
}

/* Whether stats_kernels.h lets the double kernel take x[0..n) (nulls
 * aside): no NaN or infinity, no subnormal, and the nonzero magnitudes in
 * [2^emin, 2^(emax + 1)) with emax - emin <= 17, emin >= -400, emax <= 500. */
static bool f64_block_allowed(const double *x, const uint8_t *valid, size_t n)
{
    int lo = INT_MAX, hi = INT_MIN;
    for (size_t i = 0; i < n; i++) {
        if (valid != NULL && valid[i] == 0) continue;
        if (!isfinite(x[i])) return false;
        if (x[i] == 0) continue;
        if (fpclassify(x[i]) == FP_SUBNORMAL) return false;
        int e = ilogb(x[i]);
        lo = e < lo ? e : lo;
        hi = e > hi ? e : hi;
    }
    return hi == INT_MIN || (lo >= -400 && hi <= 500 && hi - lo <= 17);
}

/* The double kernel on each block of 256 rows of x[0..n) (the last one
 * shorter): it takes exactly the allowed blocks, and gives their count,
 * nulls, extremes and exact sums. */
static void check_f64_kernel(const double *x, const uint8_t *valid, size_t n, bool simd)
{
    sf__stats_simd_force(1);
    for (size_t at = 0; at < n; at += SF__STATS_BLOCK) {
        size_t m = n - at < SF__STATS_BLOCK ? n - at : SF__STATS_BLOCK;
        const uint8_t *v = valid ? valid + at : NULL;
        sf__stats_fblock k;
        bool took = sf__stats_block_f64(x + at, v, m, &k);
        bool want = simd && f64_block_allowed(x + at, v, m);
        if (took != want)
            fail_msg("rows %zu..%zu: the kernel took the block: %d, expected %d", at, at + m, took, want);
        if (!took) continue;
        vref r;
        vref_rows(&r, x + at, NULL, v, m);
        assert_int_equal(k.count, r.count);
        assert_int_equal(k.nulls, r.nulls);
        if (r.ordered) {
            assert_same_double(sf__from_order_key(k.min_key), r.min, "block min");
            assert_same_double(sf__from_order_key(k.max_key), r.max, "block max");
        } else {
            assert_true(k.min_key == UINT64_MAX);
            assert_true(k.max_key == 0);
        }
        sf_xsum sum, sq;
        sf_xsum_init(&sum);
        sf_xsum_init(&sq);
        for (int i = 0; i < 2; i++) sf_xsum_add(&sum, k.sum[i]);
        for (int i = 0; i < 4; i++) sf_xsum_add(&sq, k.sq[i]);
        assert_same_xsum(&sum, &r.sum);
        assert_same_xsum(&sq, &r.sq);
    }
    sf__stats_simd_force(-1);
}

/* The integer kernel the same way: it takes a block exactly when every
 * non-null value is below 2^53 in magnitude, and gives its exact sums
 * (computed here in 128 bits) and integer extremes. */
static void check_i64_kernel(const int64_t *x, const uint8_t *valid, size_t n, bool simd)
{
    const int64_t b53 = INT64_C(1) << 53;
    sf__stats_simd_force(1);
    for (size_t at = 0; at < n; at += SF__STATS_BLOCK) {
        size_t m = n - at < SF__STATS_BLOCK ? n - at : SF__STATS_BLOCK;
        const uint8_t *v = valid ? valid + at : NULL;
        bool allowed = true;
        uint64_t count = 0;
        i128 sum = 0;
        u128 sq = 0;
        int64_t lo = INT64_MAX, hi = INT64_MIN;
        for (size_t i = 0; i < m; i++) {
            if (v != NULL && v[i] == 0) continue;
            int64_t y = x[at + i];
            allowed = allowed && y > -b53 && y < b53;
            count++;
            sum += y;
            sq += (u128)((i128)y * y);
            lo = y < lo ? y : lo;
            hi = y > hi ? y : hi;
        }
        sf__stats_iblock k;
        bool took = sf__stats_block_i64(x + at, v, m, &k);
        if (took != (simd && allowed))
            fail_msg("rows %zu..%zu: the kernel took the block: %d, expected %d", at, at + m, took,
                     simd && allowed);
        if (!took) continue;
        assert_int_equal(k.count, count);
        assert_int_equal(k.nulls, m - count);
        assert_true((i128)k.sum == sum);
        assert_true(((u128)k.sq_hi << 52) + ((u128)k.sq_mid << 27) + (u128)k.sq_lo == sq);
        if (count > 0) {
            assert_true(k.min == lo);
            assert_true(k.max == hi);
        }
    }
    sf__stats_simd_force(-1);
}

/* A block of doubles: nonzero exponents e0 .. e0 + spread (the two ends at
 * fixed rows of every 32, so that every block spans the window), random
 * significands with the extreme ones (1 and 2 - 2^-52) mixed in; a zero
 * every `zeros` rows (of either sign); each row null with probability
 * nulls / 256; `special` values (special_value) at a few rows, under nulls
 * if `hide`. */
typedef struct fchunk {
    int e0, spread;
    int sign;   /* 0: random signs, 1: all positive, -1: all negative */
    int zeros;  /* 0: none, 1: all */
    int nulls;  /* 0 .. 256 */
    int special;
    bool hide;
} fchunk;

static double special_value(int which)
{
    switch (which) {
    case 1: return NAN;
    case 2: return INFINITY;
    case 3: return -INFINITY;
    case 4: return ldexp((double)(rnd() % 4096 + 1), -1074); /* subnormal */
    case 5: return 0x1p600;
    case 6: return -0x1p-480;
    case 7: return DBL_MAX;
    case 8: return -DBL_MIN; /* 2^-1022, normal */
    default: return 0.0;
    }
}

static void fill_chunk(double *x, uint8_t *valid, size_t n, const fchunk *c)
{
    for (size_t r = 0; r < n; r++) {
        uint64_t u = rnd();
        int e = r % 32 == 0 ? c->e0 : r % 32 == 16 ? c->e0 + c->spread
                                                   : c->e0 + (int)(u % (uint64_t)(c->spread + 1));
        uint64_t mant = r % 7 == 3 ? (UINT64_C(1) << 52) - 1 : r % 11 == 5 ? 0 : rnd() >> 12;
        bool neg = c->sign < 0 || (c->sign == 0 && (u >> 63));
        uint64_t bits = (neg ? UINT64_C(1) << 63 : 0) | (uint64_t)(e + 1023) << 52 | mant;
        memcpy(&x[r], &bits, sizeof bits);
        if (c->zeros == 1 || (c->zeros > 1 && r % (size_t)c->zeros == 1)) x[r] = (u >> 62) & 1 ? -0.0 : 0.0;
        valid[r] = c->nulls >= 256 || (int)((u >> 20) % 256) < c->nulls ? 0 : 1;
    }
    if (c->special != 0) {
        for (int i = 0; i < 3 && n > 0; i++) {
            size_t r = (size_t)(rnd() % n);
            x[r] = special_value(c->special);
            valid[r] = c->hide ? 0 : 1;
        }
    }
}

/* The rows of chunks c[0..nc), 256 rows each but the last (`tail` rows), as
 * a float column (with a validity array if with_valid), through every
 * path and morsel size and the kernel itself. */
static void check_float_chunks(const fchunk *c, size_t nc, size_t tail, bool with_valid, bool simd)
{
    const size_t n = (nc - 1) * SF__STATS_BLOCK + tail;
    double *x = malloc(n * sizeof *x);
    uint8_t *valid = malloc(n);
    assert_non_null(x);
    assert_non_null(valid);
    for (size_t i = 0; i < nc; i++)
        fill_chunk(x + i * SF__STATS_BLOCK, valid + i * SF__STATS_BLOCK, i + 1 < nc ? SF__STATS_BLOCK : tail,
                   &c[i]);
    const uint8_t *v = with_valid ? valid : NULL;
    if (!with_valid) memset(valid, 1, n); /* no nulls: the values at "null" rows count */
    vref want;
    vref_rows(&want, x, NULL, v, n);
    sf_batch b;
    column_batch(&b, COL_V, x, NULL, v, n);
    const size_t morsels[] = {SF__STATS_BLOCK, 1000, 77, 1, n};
    for (size_t i = 0; i < sizeof morsels / sizeof morsels[0]; i++)
        check_on_off(COL_V, &b, morsels[i], &want, simd);
    check_f64_kernel(x, v, n, simd);
    sf_batch_fini(&b);
    free(x);
    free(valid);
}

/* Exponent windows within a block: spreads of 0 and 17 binades inside
 * [-400, 500] are taken, 18 and more, or any exponent outside, are not;
 * signs mixed, all positive, all negative. */
static void test_simd_float_spreads(void **st)
{
    (void)st;
    rng_state = 41;
    const bool simd = simd_available();
    static const int win[][2] = {{0, 0},     {-3, 1},    {-10, 17}, {-400, 17}, {483, 17}, {-400, 0},
                                 {500, 0},   {-10, 18},  {-20, 40}, {-30, 36},  {-401, 0}, {501, 0},
                                 {-401, 17}, {484, 17},  {-480, 3}, {600, 2},   {-1022, 5}, {1000, 23}};
    for (size_t w = 0; w < sizeof win / sizeof win[0]; w++) {
        for (int sign = -1; sign <= 1; sign++) {
            fchunk c[8];
            for (size_t i = 0; i < 8; i++)
                c[i] = (fchunk){.e0 = win[w][0], .spread = win[w][1], .sign = sign};
            check_float_chunks(c, 8, 77, false, simd);
        }
    }
    /* Windows changing from block to block: one block's spread stays 17
     * however the blocks fall on the rows. */
    fchunk mix[] = {{.e0 = -10, .spread = 17}, {.e0 = 200, .spread = 17}, {.e0 = -300, .spread = 30},
                    {.e0 = 7, .spread = 0},    {.e0 = -400, .spread = 18}, {.e0 = 1, .spread = 17}};
    check_float_chunks(mix, 6, 255, false, simd);
    check_float_chunks(mix, 6, 1, false, simd);
    sf__stats_simd_force(-1);
}

/* Zeros of both signs (the minimum -0, the maximum +0), alone and among
 * other values, and nulls at every density, whole null blocks included,
 * with NaN, infinities, subnormals and huge values hidden under nulls. */
static void test_simd_float_zeros_and_nulls(void **st)
{
    (void)st;
    rng_state = 42;
    const bool simd = simd_available();
    fchunk zeros[] = {{.zeros = 1, .sign = 1},  {.zeros = 1, .sign = -1},
                      {.zeros = 1},             {.zeros = 3, .e0 = -5, .spread = 17},
                      {.zeros = 2, .e0 = 100, .spread = 2}, {.zeros = 1}};
    check_float_chunks(zeros, 6, 200, false, simd);
    /* Only zeros, +0 and -0 both present: the signs of the extremes. */
    fchunk pm0[] = {{.zeros = 1}, {.zeros = 1}};
    check_float_chunks(pm0, 2, 13, false, simd);
    {
        double x[300];
        for (size_t r = 0; r < 300; r++) x[r] = r % 3 == 1 ? -0.0 : 0.0;
        sf_batch b;
        column_batch(&b, COL_V, x, NULL, NULL, 300);
        sf_agent_config cfg = make_cfg(COL_V, 0, NULL);
        for (int on = 0; on <= 1; on++) {
            sf__stats_simd_force(on);
            void *s = new_state(ops, &cfg);
            feed_morsels(ops, s, &b, 100);
            double mn = stat_of(ops, s, "min"), mx = stat_of(ops, s, "max");
            assert_true(mn == 0 && signbit(mn));
            assert_true(mx == 0 && !signbit(mx));
            free_state(ops, s);
        }
        sf__stats_simd_force(-1);
        sf_batch_fini(&b);
    }
    static const int density[] = {0, 1, 32, 128, 255, 256};
    for (size_t d = 0; d < sizeof density / sizeof density[0]; d++) {
        fchunk c[5];
        for (size_t i = 0; i < 5; i++)
            c[i] = (fchunk){.e0 = -20, .spread = 17, .nulls = density[d], .special = 1 + (int)(i + d) % 8,
                            .hide = true};
        check_float_chunks(c, 5, 99, true, simd);
    }
    /* All-null blocks between taken and refused ones, and a validity array
     * without a null. */
    fchunk gaps[] = {{.e0 = 3, .spread = 4},  {.nulls = 256, .special = 1, .hide = true},
                     {.e0 = 3, .spread = 30}, {.nulls = 256},
                     {.e0 = -50, .spread = 17, .nulls = 16}, {.nulls = 256, .zeros = 1},
                     {.e0 = 400, .spread = 1}, {.nulls = 256}};
    check_float_chunks(gaps, 8, 256, true, simd);
    check_float_chunks(gaps, 8, 5, true, simd);
    fchunk none[] = {{.e0 = 9, .spread = 9}, {.e0 = 9, .spread = 9}};
    check_float_chunks(none, 2, 100, true, simd);
    sf__stats_simd_force(-1);
}

/* NaN, infinities and subnormals in one block, finite values in the next:
 * the first is refused, the next taken. */
static void test_simd_float_non_finite(void **st)
{
    (void)st;
    rng_state = 43;
    const bool simd = simd_available();
    for (int sp = 1; sp <= 8; sp++) {
        fchunk c[] = {{.e0 = 0, .spread = 3, .special = sp},
                      {.e0 = 0, .spread = 3},
                      {.e0 = -2, .spread = 17, .special = sp, .nulls = 40},
                      {.e0 = -2, .spread = 17, .nulls = 40},
                      {.e0 = 0, .spread = 3, .special = sp}};
        check_float_chunks(c, 5, 256, true, simd);
        check_float_chunks(c, 5, 31, false, simd);
    }
    /* Both infinities (a NaN sum), NaN and an infinity in different blocks. */
    fchunk c[] = {{.e0 = 1, .spread = 2, .special = 2}, {.e0 = 1, .spread = 2},
                  {.e0 = 1, .spread = 2, .special = 3}, {.e0 = 1, .spread = 2, .special = 1},
                  {.e0 = 1, .spread = 2}};
    check_float_chunks(c, 5, 256, false, simd);
    /* Subnormals only, and the smallest normals. */
    double x[600];
    for (size_t r = 0; r < 600; r++)
        x[r] = r < 300 ? ldexp((double)(r + 1), -1074) * (r % 2 ? -1 : 1)
                       : ldexp(1.0 + (double)r * 0x1p-20, -1022);
    vref want;
    vref_rows(&want, x, NULL, NULL, 600);
    sf_batch b;
    column_batch(&b, COL_V, x, NULL, NULL, 600);
    check_on_off(COL_V, &b, 256, &want, simd);
    check_on_off(COL_V, &b, 100, &want, simd);
    check_f64_kernel(x, NULL, 600, simd);
    sf_batch_fini(&b);
    sf__stats_simd_force(-1);
}

/* Integer blocks: magnitudes below 2^bits (the largest ones at fixed rows),
 * each row null with probability nulls / 256, a few `special` values
 * (under nulls if `hide`). */
typedef struct ichunk {
    int bits;
    int sign; /* 0: random signs, 1: all positive, -1: all negative */
    int nulls;
    int64_t special;
    bool hide;
} ichunk;

static void fill_ichunk(int64_t *x, uint8_t *valid, size_t n, const ichunk *c)
{
    for (size_t r = 0; r < n; r++) {
        uint64_t u = rnd();
        uint64_t top = c->bits >= 64 ? UINT64_MAX : (UINT64_C(1) << c->bits) - 1;
        uint64_t a = c->bits == 0 ? 0 : r % 16 == 0 ? top : rnd() & top;
        bool neg = c->sign < 0 || (c->sign == 0 && (u >> 63));
        if (c->bits >= 64) {
            x[r] = (int64_t)a; /* any bits */
        } else {
            if (a > (uint64_t)INT64_MAX) a = (uint64_t)INT64_MAX;
            x[r] = neg ? -(int64_t)a : (int64_t)a;
        }
        valid[r] = c->nulls >= 256 || (int)((u >> 20) % 256) < c->nulls ? 0 : 1;
    }
    if (c->special != 0) {
        for (int i = 0; i < 3 && n > 0; i++) {
            size_t r = (size_t)(rnd() % n);
            x[r] = c->special;
            valid[r] = c->hide ? 0 : 1;
        }
    }
}

/* The integer reference, exact in 128 bits: the sum of the values as the
 * agent converts them (to double, exact below 2^53), and the extremes. */
static void check_int_sum(int col, const sf_batch *b, size_t morsel, const int64_t *x, const uint8_t *valid,
                          size_t n)
{
    i128 sum = 0;
    for (size_t r = 0; r < n; r++)
        if (valid == NULL || valid[r] != 0) sum += (i128)(double)x[r];
    sf_agent_config cfg = make_cfg(col, 0, NULL);
    for (int on = 0; on <= 1; on++) {
        sf__stats_simd_force(on);
        void *s = new_state(ops, &cfg);
        feed_morsels(ops, s, b, morsel);
        assert_same_double(stat_of(ops, s, "sum"), (double)sum, "integer sum");
        free_state(ops, s);
    }
    sf__stats_simd_force(-1);
}

static void check_int_chunks(int col, const ichunk *c, size_t nc, size_t tail, bool with_valid, bool simd)
{
    const size_t n = (nc - 1) * SF__STATS_BLOCK + tail;
    int64_t *x = malloc(n * sizeof *x);
    uint8_t *valid = malloc(n);
    assert_non_null(x);
    assert_non_null(valid);
    for (size_t i = 0; i < nc; i++)
        fill_ichunk(x + i * SF__STATS_BLOCK, valid + i * SF__STATS_BLOCK, i + 1 < nc ? SF__STATS_BLOCK : tail,
                    &c[i]);
    const uint8_t *v = with_valid ? valid : NULL;
    vref want;
    vref_rows(&want, NULL, x, v, n);
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    for (size_t r = 0; r < n; r++) {
        if (v != NULL && v[r] == 0) continue;
        lo = x[r] < lo ? x[r] : lo;
        hi = x[r] > hi ? x[r] : hi;
    }
    if (want.count > 0) {
        assert_same_double(want.min, (double)lo, "reference min");
        assert_same_double(want.max, (double)hi, "reference max");
    }
    sf_batch b;
    column_batch(&b, col, NULL, x, v, n);
    const size_t morsels[] = {SF__STATS_BLOCK, 1000, 77, n};
    for (size_t i = 0; i < sizeof morsels / sizeof morsels[0]; i++)
        check_on_off(col, &b, morsels[i], &want, simd);
    check_int_sum(col, &b, 300, x, v, n);
    check_i64_kernel(x, v, n, simd);
    sf_batch_fini(&b);
    free(x);
    free(valid);
}

/* Integer and timestamp columns: values near +-2^53 (the kernel's bound),
 * the int64 extremes, all negative, zeros, nulls (whole null blocks, and
 * values the kernel would refuse hidden under nulls). */
static void test_simd_int_blocks(void **st)
{
    (void)st;
    rng_state = 44;
    const bool simd = simd_available();
    const int64_t b53 = INT64_C(1) << 53;
    for (int col = COL_N; col <= COL_TS; col++) {
        ichunk c[] = {
            {.bits = 10},
            {.bits = 53},                                 /* up to 2^53 - 1: taken */
            {.bits = 53, .sign = -1},
            {.bits = 53, .special = b53},                 /* 2^53: refused */
            {.bits = 53, .special = -b53},
            {.bits = 20, .special = b53 - 1},
            {.bits = 20, .special = -b53 + 1},
            {.bits = 20, .special = INT64_MIN},
            {.bits = 20, .special = INT64_MAX},
            {.bits = 62, .sign = -1},
            {.bits = 64},
            {.bits = 0},                                  /* zeros */
            {.bits = 53, .nulls = 100, .special = INT64_MIN, .hide = true},
            {.bits = 30, .nulls = 256},
            {.bits = 40, .sign = -1, .nulls = 1},
            {.bits = 27, .nulls = 255},
            /* The one-product path (every |x| < 2^28) and its edge: up to
             * 2^28 - 1 in every lane of a whole block (the squares' lane
             * sums near 2^64), 2^28 itself (the three-product path), a
             * large value under a null. */
            {.bits = 28},
            {.bits = 28, .sign = -1},
            {.bits = 28, .special = INT64_C(1) << 28},
            {.bits = 28, .special = -(INT64_C(1) << 28)},
            {.bits = 28, .special = (INT64_C(1) << 28) - 1},
            {.bits = 28, .nulls = 40, .special = b53 - 1, .hide = true},
            {.bits = 29, .sign = 1},
        };
        const size_t nc = sizeof c / sizeof c[0];
        check_int_chunks(col, c, nc, 77, true, simd);
        check_int_chunks(col, c, nc, 256, false, simd);
        /* All negative, all near -2^53, with nulls. */
        ichunk neg[] = {{.bits = 53, .sign = -1, .nulls = 30}, {.bits = 53, .sign = -1, .nulls = 30},
                        {.bits = 53, .sign = -1, .nulls = 30}};
        check_int_chunks(col, neg, 3, 9, true, simd);
    }
    sf__stats_simd_force(-1);
}

/* Random blocks: random windows and spreads (most near the bound of 17),
 * null densities, zeros and special values; the state bytes with the
 * kernels on and off, and the references, agree for every block. */
static void test_simd_random_blocks(void **st)
{
    (void)st;
    rng_state = 45;
    const bool simd = simd_available();
    static const int density[] = {0, 0, 0, 2, 64, 128, 250, 256};
    enum { MAXC = 80 };
    fchunk c[MAXC];
    for (int round = 0; round < 8; round++) {
        size_t nc = 20 + (size_t)(rnd() % (MAXC - 20));
        for (size_t i = 0; i < nc; i++) {
            uint64_t u = rnd();
            int spread = u % 2 ? 15 + (int)((u >> 1) % 5) : (int)((u >> 1) % 41);
            int e0 = u % 16 == 0 ? -1022 + (int)((u >> 8) % 1900) : -430 + (int)((u >> 8) % 950);
            if (e0 + spread > 1023) e0 = 1023 - spread;
            c[i] = (fchunk){.e0 = e0,
                            .spread = spread,
                            .sign = (int)((u >> 20) % 3) - 1,
                            .zeros = (u >> 24) % 8 == 0 ? (int)((u >> 27) % 5) : 0,
                            .nulls = density[(u >> 32) % 8],
                            .special = (u >> 36) % 8 == 0 ? 1 + (int)((u >> 40) % 8) : 0,
                            .hide = (u >> 44) & 1};
        }
        size_t tail = 1 + (size_t)(rnd() % SF__STATS_BLOCK);
        bool with_valid = round % 3 != 0;
        check_float_chunks(c, nc, tail, with_valid, simd);
    }
    ichunk ic[MAXC];
    for (int round = 0; round < 6; round++) {
        size_t nc = 20 + (size_t)(rnd() % (MAXC - 20));
        static const int64_t specials[] = {0,         0,         0, INT64_C(1) << 53, -(INT64_C(1) << 53),
                                           INT64_MIN, INT64_MAX, (INT64_C(1) << 53) - 1};
        for (size_t i = 0; i < nc; i++) {
            uint64_t u = rnd();
            ic[i] = (ichunk){.bits = u % 2 ? 50 + (int)((u >> 1) % 5) : (int)((u >> 1) % 65),
                             .sign = (int)((u >> 20) % 3) - 1,
                             .nulls = density[(u >> 32) % 8],
                             .special = specials[(u >> 36) % 8],
                             .hide = (u >> 44) & 1};
        }
        int col = round % 2 ? COL_TS : COL_N;
        check_int_chunks(col, ic, nc, 1 + (size_t)(rnd() % SF__STATS_BLOCK), true, simd);
    }
    sf__stats_simd_force(-1);
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

/* Grouped rows (and ungrouped selected rows) take the block path when a
 * process() call has at least 16 rows per group: sorted by group, then the
 * kernels. The reference is the value-by-value path (kernels off): the
 * state bytes must be the same, for float and integer columns, narrow
 * spreads (blocks taken) and wide ones (refused), nulls, selections and
 * morsels below and above the threshold. */
static void fill_grouped(sf_batch *b, size_t n, int wide_every)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n), SF_OK);
    for (size_t r = 0; r < n; r++) {
        uint64_t u = rnd();
        int e = wide_every && (u >> 40) % (uint64_t)wide_every == 0 ? (int)((u >> 8) % 80) - 40 : (int)((u >> 8) % 11);
        b->cols[COL_V].f64[r] = ldexp(1.0 + (double)(u >> 12) * 0x1p-52, e) * ((u & 1) ? -1.0 : 1.0);
        b->cols[COL_N].i64[r] = (int64_t)(u >> 20) % 100000 - 50000;
        b->cols[COL_TS].i64[r] = (int64_t)((u >> 30) % 5);
        b->cols[COL_W].f64[r] = 0.0;
        const char *sv = services[(u >> 50) % NSERVICES];
        uint32_t code;
        if ((u >> 45) % 17 == 0) {
            assert_int_equal(sf_batch_set_null(b, COL_SERVICE, r), SF_OK);
        } else {
            assert_int_equal(sf_dict_intern(&b->cols[COL_SERVICE].dict, sv, strlen(sv), &code), SF_OK);
            b->cols[COL_SERVICE].code[r] = code;
        }
    }
    b->nrows = n;
    for (size_t r = 3; r < n; r += 11) {
        assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
        assert_int_equal(sf_batch_set_null(b, COL_N, r + 1 < n ? r + 1 : r), SF_OK);
    }
}

static void feed_with(void *s, const sf_batch *b, size_t morsel, const uint32_t *sel, size_t nsel)
{
    if (sel == NULL) {
        feed_morsels(ops, s, b, morsel);
        return;
    }
    for (size_t at = 0; at < nsel; at += morsel) {
        size_t m = nsel - at < morsel ? nsel - at : morsel;
        sf_rows rows = {0, m, sel + at, SF_ROWS_NO_SHARD};
        assert_int_equal(ops->process(s, b, &rows), SF_OK);
    }
}

static void test_grouped_blocks_match_per_value(void **st)
{
    (void)st;
    const bool simd = simd_available();
    enum { N = 6000 };
    rng_state = 91;
    int by_service[] = {COL_SERVICE}, by_two[] = {COL_SERVICE, COL_TS};
    struct {
        int col, nby;
        const int *by;
    } cfgs[] = {{COL_V, 1, by_service}, {COL_V, 2, by_two}, {COL_N, 1, by_service},
                {COL_N, 2, by_two},     {COL_V, 0, NULL},   {COL_N, 0, NULL}};
    uint32_t *sel = malloc(N * sizeof *sel);
    assert_non_null(sel);
    for (int wide = 0; wide < 3; wide++) {
        sf_batch b;
        fill_grouped(&b, N, wide == 0 ? 0 : wide == 1 ? 7 : 1);
        size_t nsel = 0;
        for (size_t r = 0; r < N; r++)
            if (rnd() % 3 != 0) sel[nsel++] = (uint32_t)r;
        for (size_t k = 0; k < sizeof cfgs / sizeof cfgs[0]; k++) {
            sf_agent_config cfg = make_cfg(cfgs[k].col, cfgs[k].nby, cfgs[k].by);
            assert_int_equal(ops->check(&cfg), SF_OK);
            const size_t morsels[] = {N, 1500, 200, 63};
            for (size_t m = 0; m < sizeof morsels / sizeof morsels[0]; m++) {
                for (int use_sel = 0; use_sel < 2; use_sel++) {
                    sf__stats_simd_force(1);
                    void *on = new_state(ops, &cfg);
                    feed_with(on, &b, morsels[m], use_sel ? sel : NULL, nsel);
                    sf__stats_simd_force(0);
                    void *off = new_state(ops, &cfg);
                    feed_with(off, &b, morsels[m], use_sel ? sel : NULL, nsel);
                    sf__stats_simd_force(-1);
                    assert_same_state(ops, on, off);
                    free_state(ops, on);
                    free_state(ops, off);
                }
            }
        }
        sf_batch_fini(&b);
    }
    free(sel);
    (void)simd;
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
        cmocka_unit_test(test_simd_float_spreads),
        cmocka_unit_test(test_simd_float_zeros_and_nulls),
        cmocka_unit_test(test_simd_float_non_finite),
        cmocka_unit_test(test_simd_int_blocks),
        cmocka_unit_test(test_simd_random_blocks),
        cmocka_unit_test(test_grouped_against_filtered),
        cmocka_unit_test(test_grouped_blocks_match_per_value),
        cmocka_unit_test(test_code_cache_across_batches),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_decode_rejects),
        cmocka_unit_test(test_check_rejects_string_column),
        cmocka_unit_test(test_check_rejects_unknown_option),
        cmocka_unit_test(test_registry),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
