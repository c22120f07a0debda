/* Unit tests of the `window` agent (agents/window.c) and its series
 * accessor (agents/window.h). Expectations come from hand-computed
 * reports, from a reference that buckets rows with long double floor and
 * sums dyadic values exactly in double, from the flag predicate evaluated
 * in C, or from a second path through the agent (one state against split
 * and merged states, a selection against a compacted batch). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/builtin.h"
#include "agents/window.h"

#include "agent_testkit.h"

extern const sf_agent_ops sf__agent_window;

enum { COL_T, COL_V, COL_HOST, COL_N, COL_T2, NCOLS };

static const sf_agent_ops *ops = &sf__agent_window;
static sf_schema schema;

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "timestamp", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "host", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "t2", SF_TIMESTAMP) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* ---- options written by hand ------------------------------------------------- */

static const int by_host[] = {COL_HOST};
static const char *const by_host_name[] = {"host"};

/* col < 0: no column:; grouped: by host. */
static sf_agent_config make_cfg(int col, bool grouped, const opts *o)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = "window";
    c.id = "w";
    c.column = col >= 0 ? schema.fields[col].name : NULL;
    c.col = col;
    if (grouped) {
        c.nby = 1;
        c.by = by_host_name;
        c.by_col = by_host;
    }
    c.schema = &schema;
    c.node = o ? &o->map : NULL;
    c.file = "test.yaml";
    c.line = 1;
    c.seed = 1;
    return c;
}

/* ---- rows and states ----------------------------------------------------------- */

typedef struct row {
    int64_t t;
    bool t_null;
    double v;
    bool v_null;
    const char *host; /* NULL: null */
    int64_t n;
} row;

#define SEC 1000000LL

static void fill_batch(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        b->cols[COL_T].i64[r] = rows[r].t;
        b->cols[COL_T2].i64[r] = rows[r].t;
        b->cols[COL_V].f64[r] = rows[r].v;
        b->cols[COL_N].i64[r] = rows[r].n;
        if (rows[r].host) {
            uint32_t code;
            assert_int_equal(sf_dict_intern(&b->cols[COL_HOST].dict, rows[r].host,
                                            strlen(rows[r].host), &code),
                             SF_OK);
            b->cols[COL_HOST].code[r] = code;
        } else {
            assert_int_equal(sf_batch_set_null(b, COL_HOST, r), SF_OK);
        }
        if (rows[r].t_null) assert_int_equal(sf_batch_set_null(b, COL_T, r), SF_OK);
        if (rows[r].v_null) assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
    }
    b->nrows = n;
}

static void feed(void *s, const row *rows, size_t n, size_t morsel)
{
    sf_batch b;
    fill_batch(&b, rows, n);
    feed_morsels(ops, s, &b, morsel);
    sf_batch_fini(&b);
}

/* The canonical key of a host value (agent.h): tag 1, u32 length, bytes;
 * a null is the tag 0 alone. */
static size_t host_key(const char *h, uint8_t *out)
{
    if (h == NULL) {
        out[0] = 0;
        return 1;
    }
    size_t n = strlen(h);
    out[0] = 1;
    for (int i = 0; i < 4; i++) out[1 + i] = (uint8_t)(n >> (8 * i));
    memcpy(out + 5, h, n);
    return 5 + n;
}

/* ---- hand-computed results ---------------------------------------------------------- */

/* Buckets of 10 s around the epoch: -15 s is in [-20 s, -10 s), -10 s and
 * -1 us in [-10 s, 0), 0 and 9.999999 s in [0, 10 s). */
static const row hand[] = {
    {.t = -15 * SEC, .v = 1},
    {.t = -10 * SEC, .v = 2},
    {.t = -1, .v = 4},
    {.t = 0, .v = 8},
    {.t = 10 * SEC - 1, .v_null = true},
    {.t = 10 * SEC, .v = -3},
    {.t_null = true, .v = 100},
    {.t = 25 * SEC, .v_null = true},
};
enum { NHAND = sizeof hand / sizeof hand[0] };

static void test_report_by_hand(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    opts_add(&o, "bucket", "10s", 2);
    sf_agent_config cfg = make_cfg(COL_V, false, &o);
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    feed(s, hand, NHAND, 3);
    assert_report(ops, s, "{\"bucket_us\":10000000,\"untimed\":1,\"buckets\":{"
                     "\"1969-12-31T23:59:40\":{\"rows\":1,\"count\":1,\"sum\":1,\"mean\":1,\"min\":1,\"max\":1},"
                     "\"1969-12-31T23:59:50\":{\"rows\":2,\"count\":2,\"sum\":6,\"mean\":3,\"min\":2,\"max\":4},"
                     "\"1970-01-01T00:00:00\":{\"rows\":2,\"count\":1,\"sum\":8,\"mean\":8,\"min\":8,\"max\":8},"
                     "\"1970-01-01T00:00:10\":{\"rows\":1,\"count\":1,\"sum\":-3,\"mean\":-3,\"min\":-3,\"max\":-3},"
                     "\"1970-01-01T00:00:20\":{\"rows\":1,\"count\":0,\"sum\":0,\"mean\":null,\"min\":null,"
                     "\"max\":null}}}");
    free_state(ops, s);

    /* No column: rows only (count is the rows); default bucket 1m. */
    cfg = make_cfg(-1, false, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
    s = new_state(ops, &cfg);
    feed(s, hand, NHAND, 8);
    assert_report(ops, s, "{\"bucket_us\":60000000,\"untimed\":1,\"buckets\":{"
                     "\"1969-12-31T23:59:00\":{\"rows\":3,\"count\":3},"
                     "\"1970-01-01T00:00:00\":{\"rows\":4,\"count\":4}}}");
    free_state(ops, s);

    /* Nothing seen. */
    s = new_state(ops, &cfg);
    assert_report(ops, s, "{\"bucket_us\":60000000,\"untimed\":0,\"buckets\":{}}");
    free_state(ops, s);
}

static void test_flag_and_groups_by_hand(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    opts_add(&o, "bucket", "10s", 2);
    opts_add(&o, "flag", "v > 2", 3);
    sf_agent_config cfg = make_cfg(-1, true, &o);
    assert_int_equal(ops->check(&cfg), SF_OK);
    row rows[NHAND];
    memcpy(rows, hand, sizeof rows);
    const char *hosts[NHAND] = {"b", "a", "b", "a", NULL, "a", "c", "b"};
    for (int i = 0; i < NHAND; i++) rows[i].host = hosts[i];
    void *s = new_state(ops, &cfg);
    feed(s, rows, NHAND, 2);
    /* Flagged (v > 2, a null v is not): rows 2 (v 4) and 3 (v 8). Host c
     * only has an untimed row, so it is no group; \N sorts before a. */
    assert_report(ops, s, "{\"bucket_us\":10000000,\"untimed\":1,\"groups\":{"
                     "\"\\\\N\":{\"buckets\":{\"1970-01-01T00:00:00\":{\"rows\":1,\"count\":1,\"flagged\":0,\"rate\":0}}},"
                     "\"a\":{\"buckets\":{"
                     "\"1969-12-31T23:59:50\":{\"rows\":1,\"count\":1,\"flagged\":0,\"rate\":0},"
                     "\"1970-01-01T00:00:00\":{\"rows\":1,\"count\":1,\"flagged\":1,\"rate\":1},"
                     "\"1970-01-01T00:00:10\":{\"rows\":1,\"count\":1,\"flagged\":0,\"rate\":0}}},"
                     "\"b\":{\"buckets\":{"
                     "\"1969-12-31T23:59:40\":{\"rows\":1,\"count\":1,\"flagged\":0,\"rate\":0},"
                     "\"1969-12-31T23:59:50\":{\"rows\":1,\"count\":1,\"flagged\":1,\"rate\":1},"
                     "\"1970-01-01T00:00:20\":{\"rows\":1,\"count\":1,\"flagged\":0,\"rate\":0}}}}}");
    uint8_t key[16];
    size_t n = 99;
    int64_t *start;
    double *vals;
    assert_int_equal(sf__window_series(s, key, host_key("c", key), "rows", &n, &start, &vals), SF_OK);
    assert_int_equal(n, 0);
    assert_null(start);
    assert_null(vals);
    free_state(ops, s);

    /* A bucket where half the rows are flagged. */
    opts_init(&o);
    opts_add(&o, "flag", "n >= 10", 3);
    cfg = make_cfg(COL_N, false, &o);
    assert_int_equal(ops->check(&cfg), SF_OK);
    s = new_state(ops, &cfg);
    row r4[] = {{.t = 1, .n = 10}, {.t = 2, .n = 3}, {.t = 3, .n = 12}, {.t = 4, .n = 1}};
    feed(s, r4, 4, 3);
    assert_report(ops, s, "{\"bucket_us\":60000000,\"untimed\":0,\"buckets\":{\"1970-01-01T00:00:00\":"
                     "{\"rows\":4,\"count\":4,\"sum\":26,\"mean\":6.5,\"min\":1,\"max\":12,"
                     "\"flagged\":2,\"rate\":0.5}}}");
    free_state(ops, s);
}

/* ---- the reference ------------------------------------------------------------------ */

static const char *const host_names[] = {"alpha", "beta", "gamma", "delta", "eps", "zeta", "eta"};
enum { NHOSTS = 7 };

/* Group index of a host: its position, NHOSTS for null. */
static int host_index(const char *h)
{
    for (int i = 0; i < NHOSTS; i++)
        if (h == host_names[i]) return i;
    return NHOSTS;
}

typedef struct ref_cell {
    int g;
    int64_t bucket;
    uint64_t rows, count, flagged;
    double sum, min, max;
} ref_cell;

static int64_t ref_bucket(int64_t t, int64_t width)
{
    return (int64_t)floorl((long double)t / (long double)width);
}

static bool ref_flag(const row *r)
{
    return !r->v_null && r->v >= 100;
}

static int cell_cmp(const void *x, const void *y)
{
    const ref_cell *a = x, *b = y;
    if (a->g != b->g) return a->g < b->g ? -1 : 1;
    return a->bucket < b->bucket ? -1 : a->bucket > b->bucket;
}

/* The cells of rows (grouped by host when grouped), sorted by group index
 * then bucket. *untimed gets the rows without a time. */
static ref_cell *reference(const row *rows, size_t n, int64_t width, bool grouped, size_t *ncells,
                           uint64_t *untimed)
{
    ref_cell *one = calloc(n ? n : 1, sizeof *one);
    assert_non_null(one);
    size_t m = 0;
    *untimed = 0;
    for (size_t i = 0; i < n; i++) {
        if (rows[i].t_null) {
            ++*untimed;
            continue;
        }
        ref_cell *c = &one[m++];
        c->g = grouped ? host_index(rows[i].host) : 0;
        c->bucket = ref_bucket(rows[i].t, width);
        c->rows = 1;
        c->count = !rows[i].v_null;
        c->flagged = ref_flag(&rows[i]);
        c->sum = rows[i].v_null ? 0 : rows[i].v;
        c->min = rows[i].v_null ? INFINITY : rows[i].v;
        c->max = rows[i].v_null ? -INFINITY : rows[i].v;
    }
    qsort(one, m, sizeof *one, cell_cmp);
    size_t d = 0;
    for (size_t i = 0; i < m; i++) {
        if (d > 0 && one[d - 1].g == one[i].g && one[d - 1].bucket == one[i].bucket) {
            ref_cell *c = &one[d - 1];
            c->rows += one[i].rows;
            c->count += one[i].count;
            c->flagged += one[i].flagged;
            c->sum += one[i].sum; /* multiples of 1/8 below 2^40: exact */
            c->min = fmin(c->min, one[i].min);
            c->max = fmax(c->max, one[i].max);
        } else {
            one[d++] = one[i];
        }
    }
    *ncells = d;
    return one;
}

/* Rows with times in [-span, span] us, a tenth of them on a bucket edge
 * (q * width or q * width - 1), 5% null times and values, values k / 8. */
static row *random_rows(size_t n, int64_t span, int64_t width, uint64_t seed)
{
    row *rows = calloc(n, sizeof *rows);
    assert_non_null(rows);
    rng_state = seed;
    for (size_t i = 0; i < n; i++) {
        row *r = &rows[i];
        r->t = (int64_t)(rnd() % (uint64_t)(2 * span + 1)) - span;
        if (rnd() % 10 == 0) r->t = (r->t / width) * width - (int64_t)(rnd() % 2);
        r->t_null = rnd() % 20 == 0;
        r->v = (double)((int64_t)(rnd() % 8001) - 4000) / 8;
        r->v_null = rnd() % 20 == 0;
        uint64_t h = rnd() % (NHOSTS + 1);
        r->host = h < NHOSTS ? host_names[h] : NULL;
        r->n = (int64_t)(rnd() % 1000);
    }
    return rows;
}

static void series(const void *s, const uint8_t *key, size_t len, const char *what, size_t *n,
                   int64_t **start, double **vals)
{
    assert_int_equal(sf__window_series(s, key, len, what, n, start, vals), SF_OK);
}

/* Compares every group's series with the reference cells. */
static void check_series(const void *s, const ref_cell *cells, size_t ncells, int64_t width,
                         bool grouped)
{
    static const char *const what[] = {"rows", "count", "sum", "mean", "min", "max", "flagged", "rate"};
    size_t at = 0;
    for (int g = 0; g <= (grouped ? NHOSTS : 0); g++) {
        size_t end = at;
        while (end < ncells && cells[end].g == g) end++;
        uint8_t key[16];
        size_t len = grouped ? host_key(g < NHOSTS ? host_names[g] : NULL, key) : 0;
        for (size_t w = 0; w < sizeof what / sizeof what[0]; w++) {
            size_t n;
            int64_t *start;
            double *v;
            series(s, len ? key : NULL, len, what[w], &n, &start, &v);
            assert_int_equal(n, end - at);
            for (size_t i = 0; i < n; i++) {
                const ref_cell *c = &cells[at + i];
                assert_int_equal(start[i], c->bucket * width);
                double want;
                switch (w) {
                case 0: want = (double)c->rows; break;
                case 1: want = (double)c->count; break;
                case 2: want = c->sum; break;
                case 3: want = c->count ? c->sum / (double)c->count : NAN; break;
                case 4: want = c->count ? c->min : NAN; break;
                case 5: want = c->count ? c->max : NAN; break;
                case 6: want = (double)c->flagged; break;
                default: want = (double)c->flagged / (double)c->rows; break;
                }
                if (isnan(want))
                    assert_true(isnan(v[i]));
                else if (v[i] != want)
                    fail_msg("group %d bucket %zu %s: %.17g, expected %.17g", g, i, what[w], v[i], want);
            }
            free(start);
            free(v);
        }
        at = end;
    }
    assert_int_equal(at, ncells);
}

static sf_agent_config full_cfg(opts *o, const char *bucket, bool grouped)
{
    opts_init(o);
    opts_add(o, "bucket", bucket, 2);
    opts_add(o, "flag", "v >= 100", 3);
    sf_agent_config cfg = make_cfg(COL_V, grouped, o);
    assert_int_equal(ops->check(&cfg), SF_OK);
    return cfg;
}

static void test_vs_reference(void **st)
{
    (void)st;
    enum { N = 20000 };
    /* 7 s buckets (times not aligned to them) over +-300 s, and 1 h buckets
     * over +-1 day. */
    const char *bucket[] = {"7s", "1h"};
    const int64_t width[] = {7 * SEC, 3600 * SEC};
    const int64_t span[] = {300 * SEC, 86400 * SEC};
    for (int b = 0; b < 2; b++) {
        row *rows = random_rows(N, span[b], width[b], 61 + (uint64_t)b);
        for (int grouped = 0; grouped < 2; grouped++) {
            opts o;
            sf_agent_config cfg = full_cfg(&o, bucket[b], grouped);
            void *s = new_state(ops, &cfg);
            feed(s, rows, N, 1024);
            size_t nc;
            uint64_t untimed;
            ref_cell *cells = reference(rows, N, width[b], grouped, &nc, &untimed);
            check_series(s, cells, nc, width[b], grouped);
            assert_int_equal(sf__window_bucket_us(s), width[b]);

            /* Whole-state statistics: rows include the untimed ones. */
            uint64_t rws = untimed, cnt = 0;
            double sum = 0;
            for (size_t i = 0; i < nc; i++) {
                rws += cells[i].rows;
                cnt += cells[i].count;
                sum += cells[i].sum;
            }
            double v;
            assert_int_equal(ops->stat(s, NULL, 0, "rows", &v), SF_OK);
            assert_true(v == (double)rws);
            assert_int_equal(ops->stat(s, NULL, 0, "count", &v), SF_OK);
            assert_true(v == (double)cnt);
            assert_int_equal(ops->stat(s, NULL, 0, "mean", &v), SF_OK);
            assert_true(v == sum / (double)cnt);
            if (grouped) {
                /* One group: the cells of "beta". */
                uint64_t grows = 0, gcount = 0;
                double gsum = 0;
                for (size_t i = 0; i < nc; i++)
                    if (cells[i].g == 1) {
                        grows += cells[i].rows;
                        gcount += cells[i].count;
                        gsum += cells[i].sum;
                    }
                uint8_t key[16];
                size_t len = host_key("beta", key);
                assert_int_equal(ops->stat(s, key, len, "rows", &v), SF_OK);
                assert_true(v == (double)grows);
                assert_int_equal(ops->stat(s, key, len, "count", &v), SF_OK);
                assert_true(v == (double)gcount);
                assert_int_equal(ops->stat(s, key, len, "mean", &v), SF_OK);
                assert_true(v == gsum / (double)gcount);
                assert_int_equal(ops->stat(s, key, host_key("nope", key), "rows", &v), SF_ERR_ARG);
            }
            free(cells);
            free_state(ops, s);
        }
        free(rows);
    }
}

/* Times at the ends of the int64 range bucket without overflow. */
static void test_extreme_times(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    opts_add(&o, "bucket", "7s", 2);
    sf_agent_config cfg = make_cfg(COL_V, false, &o);
    void *s = new_state(ops, &cfg);
    row rows[] = {{.t = INT64_MIN, .v = 1}, {.t = INT64_MIN + 1, .v = 2}, {.t = INT64_MAX, .v = 4}};
    feed(s, rows, 3, 3);
    size_t n;
    int64_t *start;
    double *v;
    series(s, NULL, 0, "sum", &n, &start, &v);
    assert_int_equal(n, 2);
    /* floor(INT64_MIN / 7e6) * 7e6 is below INT64_MIN: clamped. */
    assert_true(start[0] == INT64_MIN);
    assert_true(v[0] == 3);
    assert_true(start[1] == INT64_MAX / (7 * SEC) * (7 * SEC));
    assert_true(v[1] == 4);
    free(start);
    free(v);
    sf_buf e = encoded(ops, s);
    void *d = new_state(ops, &cfg);
    assert_int_equal(ops->decode(d, e.data, e.len), SF_OK);
    assert_same_state(ops, s, d);
    sf_buf_fini(&e);
    free_state(ops, d);
    free_state(ops, s);
}

/* ---- merge laws and selections ----------------------------------------------------------- */

static void test_merge_laws(void **st)
{
    (void)st;
    enum { N = 6000, P = 6 };
    row *rows = random_rows(N, 120 * SEC, 7 * SEC, 71);
    for (int grouped = 0; grouped < 2; grouped++) {
        opts o;
        sf_agent_config cfg = full_cfg(&o, "7s", grouped);
        void *whole = new_state(ops, &cfg);
        feed(whole, rows, N, 500);

        void *e = new_state(ops, &cfg);
        assert_int_equal(ops->merge(e, whole), SF_OK);
        assert_same_state(ops, e, whole);
        void *w2 = new_state(ops, &cfg), *empty = new_state(ops, &cfg);
        feed(w2, rows, N, 4096);
        assert_int_equal(ops->merge(w2, empty), SF_OK);
        assert_same_state(ops, w2, whole);

        size_t cut[P + 1] = {0, N / 9, N / 4, N / 2, N / 2 + 1, 5 * N / 6, N};
        void *part[P];
        for (int p = 0; p < P; p++) {
            part[p] = new_state(ops, &cfg);
            feed(part[p], rows + cut[p], cut[p + 1] - cut[p], 77);
        }
        int order[P] = {4, 1, 5, 0, 3, 2};
        void *acc = new_state(ops, &cfg);
        for (int p = 0; p < P; p++) assert_int_equal(ops->merge(acc, part[order[p]]), SF_OK);
        assert_same_state(ops, acc, whole);

        void *l = new_state(ops, &cfg), *r = new_state(ops, &cfg), *t12 = new_state(ops, &cfg);
        assert_int_equal(ops->merge(l, part[0]), SF_OK);
        assert_int_equal(ops->merge(l, part[1]), SF_OK);
        assert_int_equal(ops->merge(l, part[2]), SF_OK);
        assert_int_equal(ops->merge(t12, part[1]), SF_OK);
        assert_int_equal(ops->merge(t12, part[2]), SF_OK);
        assert_int_equal(ops->merge(r, part[0]), SF_OK);
        assert_int_equal(ops->merge(r, t12), SF_OK);
        assert_same_state(ops, l, r);
        void *ab = new_state(ops, &cfg), *ba = new_state(ops, &cfg);
        assert_int_equal(ops->merge(ab, part[3]), SF_OK);
        assert_int_equal(ops->merge(ab, part[5]), SF_OK);
        assert_int_equal(ops->merge(ba, part[5]), SF_OK);
        assert_int_equal(ops->merge(ba, part[3]), SF_OK);
        assert_same_state(ops, ab, ba);
        char *a = report_text(ops, acc), *b = report_text(ops, whole);
        assert_string_equal(a, b);
        free(a);
        free(b);

        void *all[] = {whole, e, w2, empty, acc, l, r, t12, ab, ba};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_state(ops, all[i]);
        for (int p = 0; p < P; p++) free_state(ops, part[p]);
    }
    free(rows);
}

/* A selection of rows (sf_rows.sel) gives the state of a batch of just
 * those rows, flags included. */
static void test_selection(void **st)
{
    (void)st;
    enum { N = 3000 };
    row *rows = random_rows(N, 60 * SEC, 7 * SEC, 81);
    opts o;
    sf_agent_config cfg = full_cfg(&o, "7s", true);
    uint32_t *sel = malloc(N * sizeof *sel);
    row *kept = malloc(N * sizeof *kept);
    assert_non_null(sel);
    assert_non_null(kept);
    size_t m = 0;
    for (size_t i = 0; i < N; i++)
        if (rnd() % 3 != 0) {
            sel[m] = (uint32_t)i;
            kept[m++] = rows[i];
        }
    void *a = new_state(ops, &cfg), *b = new_state(ops, &cfg);
    sf_batch batch;
    fill_batch(&batch, rows, N);
    for (size_t at = 0; at < m; at += 250) {
        sf_rows r = {0, at + 250 < m ? 250 : m - at, sel + at, SF_ROWS_NO_SHARD};
        assert_int_equal(ops->process(a, &batch, &r), SF_OK);
    }
    sf_batch_fini(&batch);
    feed(b, kept, m, 1000);
    assert_same_state(ops, a, b);
    free_state(ops, a);
    free_state(ops, b);
    free(sel);
    free(kept);
    free(rows);
}

/* ---- encodings ---------------------------------------------------------------------------- */

static void check_round_trip(const sf_agent_config *cfg, const void *s)
{
    sf_buf e = encoded(ops, s);
    void *d = new_state(ops, cfg);
    assert_int_equal(ops->decode(d, e.data, e.len), SF_OK);
    assert_same_state(ops, d, s);
    char *a = report_text(ops, d), *b = report_text(ops, s);
    assert_string_equal(a, b);
    free(a);
    free(b);
    /* The decoded state keeps working: merging it doubles every count. */
    assert_int_equal(ops->merge(d, s), SF_OK);
    free_state(ops, d);
    for (size_t len = 0; len < e.len; len++) {
        void *t = new_state(ops, cfg);
        assert_int_equal(ops->decode(t, e.data, len), SF_ERR_PARSE);
        free_state(ops, t);
    }
    assert_int_equal(sf_buf_put_u8(&e, 0), SF_OK);
    void *t = new_state(ops, cfg);
    assert_int_equal(ops->decode(t, e.data, e.len), SF_ERR_PARSE);
    free_state(ops, t);
    sf_buf_fini(&e);
}

static void assert_rejects_u64(const sf_agent_config *cfg, const sf_buf *e, size_t off, uint64_t v)
{
    uint8_t *copy = malloc(e->len);
    assert_non_null(copy);
    memcpy(copy, e->data, e->len);
    sf_store_u64(copy + off, v);
    void *t = new_state(ops, cfg);
    assert_int_equal(ops->decode(t, copy, e->len), SF_ERR_PARSE);
    free_state(ops, t);
    free(copy);
}

static void test_round_trip_and_truncation(void **st)
{
    (void)st;
    row *rows = random_rows(300, 30 * SEC, 7 * SEC, 91);
    for (int grouped = 0; grouped < 2; grouped++) {
        opts o;
        sf_agent_config cfg = full_cfg(&o, "7s", grouped);
        void *s = new_state(ops, &cfg);
        check_round_trip(&cfg, s);
        feed(s, rows, 300, 64);
        check_round_trip(&cfg, s);
        free_state(ops, s);
    }
    /* Ungrouped with column: and flag:, one bucket. Header: u8 version,
     * nby, flags, u64 bucket_us, untimed, groups (at 19); the empty key (u32
     * 0 at 27), u64 cells (31); the cell: i64 bucket (39), u64 rows (47),
     * flagged (55), count (63), min (71), max (79), then the sum. */
    opts o;
    sf_agent_config cfg = full_cfg(&o, "7s", false);
    void *s = new_state(ops, &cfg);
    row three[] = {{.t = 1, .v = 200}, {.t = 2, .v = 3}, {.t = 3, .v_null = true}};
    feed(s, three, 3, 3);
    sf_buf e = encoded(ops, s);
    assert_int_equal(sf_load_u64(e.data + 47), 3);
    assert_rejects_u64(&cfg, &e, 3, 8 * SEC);  /* another bucket width */
    assert_rejects_u64(&cfg, &e, 19, 2);       /* two groups without by: */
    assert_rejects_u64(&cfg, &e, 31, 2);       /* a cell that is not there */
    assert_rejects_u64(&cfg, &e, 47, 0);       /* an empty bucket */
    assert_rejects_u64(&cfg, &e, 55, 4);       /* more flagged rows than rows */
    assert_rejects_u64(&cfg, &e, 63, 4);       /* more values than rows */
    assert_rejects_u64(&cfg, &e, 63, 0);       /* no values but extremes and a sum */
    assert_rejects_u64(&cfg, &e, 71, sf_load_u64(e.data + 79) + 1); /* min above max */
    sf_buf_fini(&e);
    free_state(ops, s);

    /* Without column: and flag:, a cell is (bucket, rows): swap two cells
     * to put them out of order, repeat one to duplicate it. */
    cfg = make_cfg(-1, false, NULL);
    s = new_state(ops, &cfg);
    row two[] = {{.t = 0}, {.t = 120 * SEC}};
    feed(s, two, 2, 2);
    e = encoded(ops, s);
    assert_int_equal(e.len, 39 + 2 * 16);
    uint8_t *copy = malloc(e.len);
    assert_non_null(copy);
    for (int variant = 0; variant < 2; variant++) {
        memcpy(copy, e.data, e.len);
        if (variant == 0) {
            memcpy(copy + 39, e.data + 55, 16);
            memcpy(copy + 55, e.data + 39, 16);
        } else {
            memcpy(copy + 55, e.data + 39, 16);
        }
        void *t = new_state(ops, &cfg);
        assert_int_equal(ops->decode(t, copy, e.len), SF_ERR_PARSE);
        free_state(ops, t);
    }
    free(copy);
    sf_buf_fini(&e);
    free_state(ops, s);
    free(rows);
}

/* ---- series, statistics, columns ------------------------------------------------------------ */

static void test_series_and_stats(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(-1, false, NULL);
    void *s = new_state(ops, &cfg);
    feed(s, hand, NHAND, 4);
    assert_true(sf__window_is(ops));
    assert_false(sf__window_is(&sf__agent_stats));
    assert_int_equal(sf__window_bucket_us(s), 60 * SEC);
    size_t n;
    int64_t *start;
    double *v;
    series(s, NULL, 0, "rows", &n, &start, &v);
    assert_int_equal(n, 2);
    assert_true(start[0] == -60 * SEC && v[0] == 3);
    assert_true(start[1] == 0 && v[1] == 4);
    free(start);
    free(v);
    /* Without column: and flag: there is no mean or rate. */
    assert_int_equal(sf__window_series(s, NULL, 0, "mean", &n, &start, &v), SF_ERR_ARG);
    assert_int_equal(sf__window_series(s, NULL, 0, "rate", &n, &start, &v), SF_ERR_ARG);
    assert_int_equal(sf__window_series(s, NULL, 0, "p99", &n, &start, &v), SF_ERR_ARG);
    double x;
    assert_int_equal(ops->stat(s, NULL, 0, "rows", &x), SF_OK);
    assert_true(x == NHAND);
    assert_int_equal(ops->stat(s, NULL, 0, "count", &x), SF_OK);
    assert_true(x == NHAND - 1);
    assert_int_equal(ops->stat(s, NULL, 0, "mean", &x), SF_ERR_ARG);
    free_state(ops, s);
}

static void test_columns(void **st)
{
    (void)st;
    const char *names[8];
    int n;
    sf_agent_config cfg = make_cfg(COL_V, false, NULL);
    assert_int_equal(ops->columns(&cfg, names, 8, &n), SF_OK);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "timestamp");

    opts o;
    opts_init(&o);
    opts_add(&o, "time", "t2", 2);
    opts_add(&o, "flag", "n > 3 and (host == \"a\" or t2 > \"2024-01-01 00:00:00\")", 3);
    cfg = make_cfg(COL_V, false, &o);
    cfg.col = -1; /* as before the pass schema exists */
    assert_int_equal(ops->columns(&cfg, names, 8, &n), SF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "t2");
    assert_string_equal(names[1], "n");
    assert_string_equal(names[2], "host");
    /* The time column's name is the option's own string. */
    assert_ptr_equal(names[0], o.vals[0].scalar);
    /* Too little room is an error, not a silent cut. */
    assert_int_equal(ops->columns(&cfg, names, 2, &n), SF_ERR_CONFIG);

    /* The time: option and its bucketing work on another column. */
    cfg.col = COL_V;
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    feed(s, hand, NHAND, 8);
    double x;
    assert_int_equal(ops->stat(s, NULL, 0, "rows", &x), SF_OK);
    assert_true(x == NHAND); /* t2 has no nulls: nothing untimed */
    free_state(ops, s);
}

/* ---- configuration errors ------------------------------------------------------------------- */

static void assert_config_error(const sf_agent_config *cfg, const char *part1, const char *part2)
{
    sf_error_clear();
    assert_int_equal(ops->check(cfg), SF_ERR_CONFIG);
    const char *msg = sf_error_message();
    if (strstr(msg, part1) == NULL || (part2 && strstr(msg, part2) == NULL))
        fail_msg("message '%s' lacks '%s' / '%s'", msg, part1, part2 ? part2 : "");
}

static void test_config_errors(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    opts_add(&o, "bucket", "5 parsecs", 4);
    sf_agent_config cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:4: agent 'w': option 'bucket'", "parsecs");
    opts_init(&o);
    opts_add(&o, "bucket", "0s", 5);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:5: agent 'w': option 'bucket'", NULL);
    opts_init(&o);
    opts_add(&o, "bucket", "1.5us", 5);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:5: agent 'w': option 'bucket'", "whole number");

    opts_init(&o);
    opts_add(&o, "time", "n", 6);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:6: agent 'w': option 'time'", "timestamp");
    opts_init(&o);
    opts_add(&o, "time", "when", 7);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:7: agent 'w': option 'time'", "no column 'when'");

    opts_init(&o);
    opts_add(&o, "flag", "v >", 8);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:8: flag:", "agent 'w'");
    opts_init(&o);
    opts_add(&o, "flag", "nosuch > 1", 9);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:9: flag:", "nosuch");
    opts_init(&o);
    opts_add(&o, "flag", "host > 1", 9);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:9: flag:", "agent 'w'");

    opts_init(&o);
    opts_add(&o, "column", "host", 10);
    cfg = make_cfg(COL_HOST, false, &o);
    assert_config_error(&cfg, "test.yaml:10: agent 'w': option 'column'", "string");

    opts_init(&o);
    opts_add(&o, "buckets", "1m", 11);
    cfg = make_cfg(COL_V, false, &o);
    assert_config_error(&cfg, "test.yaml:11: agent 'w': unknown option 'buckets'", "bucket");

    /* Integer and timestamp columns are numbers too. */
    cfg = make_cfg(COL_T2, true, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
    cfg = make_cfg(COL_N, true, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_by_hand),
        cmocka_unit_test(test_flag_and_groups_by_hand),
        cmocka_unit_test(test_vs_reference),
        cmocka_unit_test(test_extreme_times),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_round_trip_and_truncation),
        cmocka_unit_test(test_series_and_stats),
        cmocka_unit_test(test_columns),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
