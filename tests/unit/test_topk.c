/* Unit tests of the `topk` and `countmin` agents (agents/topk.c).
 * Expectations come from a reference counter (the values printed, sorted
 * and run-length counted), from integer arithmetic on the thresholds, from
 * the sketch's own estimates read through stat(), or from a second path
 * through the agent (one state against split and merged states). */
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

#include "agent_testkit.h"

extern const sf_agent_ops sf__agent_topk;
extern const sf_agent_ops sf__agent_countmin;

enum { COL_K, COL_N, COL_F, NCOLS };

static const sf_agent_ops *topk = &sf__agent_topk;
static const sf_agent_ops *cmin = &sf__agent_countmin;
static sf_schema schema;

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "k", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "f", SF_FLOAT64) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* ---- options written by hand ------------------------------------------------- */

static sf_agent_config make_cfg(const char *agent, const char *id, int col, const opts *o)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = agent;
    c.id = id;
    c.column = col >= 0 ? schema.fields[col].name : NULL;
    c.col = col;
    c.schema = &schema;
    c.node = o ? &o->map : NULL;
    c.file = "test.yaml";
    c.line = 1;
    c.stage = "s2";
    c.seed = 1;
    return c;
}

/* ---- rows and states ----------------------------------------------------------- */

/* One row: k is the string (NULL: null), n the integer (n_null: null). */
typedef struct row {
    const char *k;
    int64_t n;
    bool n_null;
    double f;
} row;

static void fill_batch(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        b->cols[COL_N].i64[r] = rows[r].n;
        b->cols[COL_F].f64[r] = rows[r].f;
        if (rows[r].k) {
            uint32_t code;
            assert_int_equal(sf_dict_intern(&b->cols[COL_K].dict, rows[r].k, strlen(rows[r].k), &code),
                             SF_OK);
            b->cols[COL_K].code[r] = code;
        } else {
            assert_int_equal(sf_batch_set_null(b, COL_K, r), SF_OK);
        }
        if (rows[r].n_null) assert_int_equal(sf_batch_set_null(b, COL_N, r), SF_OK);
    }
    b->nrows = n;
}

/* Processes rows in morsels of `morsel` rows. */
static sf_status feed_rc(const sf_agent_ops *ops, void *s, const row *rows, size_t n, size_t morsel)
{
    sf_batch b;
    fill_batch(&b, rows, n);
    sf_status rc = process_morsels(ops, s, &b, morsel);
    sf_batch_fini(&b);
    return rc;
}

static void feed(const sf_agent_ops *ops, void *s, const row *rows, size_t n, size_t morsel)
{
    assert_int_equal(feed_rc(ops, s, rows, n, morsel), SF_OK);
}

/* Canonical key of a string value / an int64 value (agent.h). */
static size_t str_key(const char *v, uint8_t *out)
{
    size_t n = strlen(v);
    out[0] = 1;
    for (int i = 0; i < 4; i++) out[1 + i] = (uint8_t)(n >> (8 * i));
    memcpy(out + 5, v, n);
    return 5 + n;
}

static size_t int_key(int64_t v, uint8_t *out)
{
    out[0] = 1;
    sf_store_u64(out + 1, (uint64_t)v);
    return 9;
}

/* ---- the reference counter ------------------------------------------------------ */

typedef struct ref_item {
    char text[64];
    uint64_t count;
} ref_item;

static int text_cmp(const void *x, const void *y)
{
    return strcmp(((const ref_item *)x)->text, ((const ref_item *)y)->text);
}

static int rank_cmp(const void *x, const void *y)
{
    const ref_item *a = x, *b = y;
    if (a->count != b->count) return a->count < b->count ? 1 : -1;
    return strcmp(a->text, b->text);
}

/* The distinct printed values of column col of rows with their counts, in
 * rank order (count descending, text ascending); *nulls gets the nulls. */
static ref_item *reference(const row *rows, size_t n, int col, size_t *nitems, uint64_t *nulls)
{
    ref_item *all = calloc(n ? n : 1, sizeof *all);
    assert_non_null(all);
    size_t m = 0;
    *nulls = 0;
    for (size_t i = 0; i < n; i++) {
        if (col == COL_K ? rows[i].k == NULL : rows[i].n_null) {
            ++*nulls;
            continue;
        }
        if (col == COL_K)
            snprintf(all[m].text, sizeof all[m].text, "%s", rows[i].k);
        else
            snprintf(all[m].text, sizeof all[m].text, "%" PRId64, rows[i].n);
        all[m++].count = 1;
    }
    qsort(all, m, sizeof *all, text_cmp);
    size_t d = 0;
    for (size_t i = 0; i < m; i++) {
        if (d > 0 && strcmp(all[d - 1].text, all[i].text) == 0)
            all[d - 1].count++;
        else
            all[d++] = all[i];
    }
    qsort(all, d, sizeof *all, rank_cmp);
    *nitems = d;
    return all;
}

/* The JSON text of a result: items[0..nlisted), then the summary fields;
 * threshold < 0 leaves out the two-stage fields. */
static char *expected_json(const ref_item *items, size_t nlisted, size_t distinct, uint64_t nulls,
                           bool complete, uint64_t unlisted, int64_t threshold, uint64_t uncounted)
{
    sf_buf b;
    sf_buf_init(&b);
    assert_int_equal(sf_buf_printf(&b, "{\"items\":["), SF_OK);
    for (size_t i = 0; i < nlisted; i++)
        assert_int_equal(sf_buf_printf(&b, "%s{\"key\":\"%s\",\"count\":%" PRIu64 ",\"error\":0}",
                                        i ? "," : "", items[i].text, items[i].count),
                         SF_OK);
    assert_int_equal(sf_buf_printf(&b,
                                   "],\"distinct_counted\":%zu,\"nulls\":%" PRIu64
                                   ",\"complete\":%s,\"unlisted_max\":%" PRIu64,
                                   distinct, nulls, complete ? "true" : "false", unlisted),
                     SF_OK);
    if (threshold >= 0)
        assert_int_equal(sf_buf_printf(&b, ",\"threshold\":%" PRId64 ",\"uncounted\":%" PRIu64,
                                       threshold, uncounted),
                         SF_OK);
    assert_int_equal(sf_buf_put_u8(&b, '}'), SF_OK);
    assert_int_equal(sf_buf_put_u8(&b, 0), SF_OK);
    return (char *)b.data;
}

/* Zipf-distributed ranks 0..m-1 with exponent s, by inversion of the CDF. */
typedef struct zipf {
    double *cdf;
    size_t m;
} zipf;

static zipf zipf_make(size_t m, double s)
{
    zipf z = {calloc(m, sizeof(double)), m};
    assert_non_null(z.cdf);
    double acc = 0;
    for (size_t i = 0; i < m; i++) z.cdf[i] = acc += 1.0 / pow((double)(i + 1), s);
    for (size_t i = 0; i < m; i++) z.cdf[i] /= acc;
    return z;
}

static size_t zipf_draw(const zipf *z)
{
    double u = rnd01();
    size_t lo = 0, hi = z->m - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (z->cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Key names "key<rank>" interned in a table that outlives the rows. */
static char key_names[20000][16];

static const char *key_name(size_t i)
{
    if (key_names[i][0] == '\0') snprintf(key_names[i], sizeof key_names[i], "key%zu", i);
    return key_names[i];
}

/* ---- hand-computed results ---------------------------------------------------------- */

static void test_report_by_hand(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    opts_add(&o, "k", "3", 2);
    sf_agent_config cfg = make_cfg("topk", "top", COL_K, &o);
    assert_int_equal(topk->check(&cfg), SF_OK);
    void *s = new_state(topk, &cfg);
    row rows[] = {{.k = "c"}, {.k = "a"}, {.k = NULL}, {.k = "b"}, {.k = "a"},
                  {.k = "d"}, {.k = "c"}, {.k = "a"}, {.k = "b"}};
    feed(topk, s, rows, 9, 4);
    /* a 3, then b and c 2 (b first), d 1 is not listed: unlisted_max 1. */
    assert_report(topk, s,
                  "{\"items\":[{\"key\":\"a\",\"count\":3,\"error\":0},"
                  "{\"key\":\"b\",\"count\":2,\"error\":0},{\"key\":\"c\",\"count\":2,\"error\":0}],"
                  "\"distinct_counted\":4,\"nulls\":1,\"complete\":true,\"unlisted_max\":1}");
    assert_true(stat_of(topk, s, "rows") == 9);
    assert_true(stat_of(topk, s, "count") == 8);
    assert_true(stat_of(topk, s, "distinct") == 4);
    uint8_t key[16];
    double v;
    assert_int_equal(topk->stat(s, key, str_key("c", key), "count", &v), SF_OK);
    assert_true(v == 2);
    assert_int_equal(topk->stat(s, key, str_key("zz", key), "count", &v), SF_ERR_ARG);
    assert_int_equal(topk->stat(s, NULL, 0, "mean", &v), SF_ERR_ARG);
    free_state(topk, s);

    /* Nothing counted. */
    s = new_state(topk, &cfg);
    assert_report(topk, s,
                  "{\"items\":[],\"distinct_counted\":0,\"nulls\":0,\"complete\":true,"
                  "\"unlisted_max\":0}");
    free_state(topk, s);
}

/* Ties are broken by the printed key, byte-wise: "-1" < "10" < "100" < "9";
 * escaped strings print with their escapes. */
static void test_ties_by_printed_key(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg("topk", "top", COL_N, NULL);
    assert_int_equal(topk->check(&cfg), SF_OK);
    void *s = new_state(topk, &cfg);
    row rows[] = {{.n = 9}, {.n = 100}, {.n = 10}, {.n = -1}, {.n = 9}, {.n = 100},
                  {.n = 10}, {.n = -1}, {.n = 5}, {.n_null = true}};
    feed(topk, s, rows, 10, 3);
    assert_report(topk, s,
                  "{\"items\":[{\"key\":\"-1\",\"count\":2,\"error\":0},"
                  "{\"key\":\"10\",\"count\":2,\"error\":0},{\"key\":\"100\",\"count\":2,\"error\":0},"
                  "{\"key\":\"9\",\"count\":2,\"error\":0},{\"key\":\"5\",\"count\":1,\"error\":0}],"
                  "\"distinct_counted\":5,\"nulls\":1,\"complete\":true,\"unlisted_max\":0}");
    free_state(topk, s);

    cfg = make_cfg("topk", "top", COL_K, NULL);
    s = new_state(topk, &cfg);
    row str[] = {{.k = "a|b"}, {.k = "a\\"}, {.k = ""}, {.k = "a|b"}};
    feed(topk, s, str, 4, 4);
    /* Printed: "a\|b" (2), then "" < "a\\" (JSON doubles each backslash). */
    assert_report(topk, s,
                  "{\"items\":[{\"key\":\"a\\\\|b\",\"count\":2,\"error\":0},"
                  "{\"key\":\"\",\"count\":1,\"error\":0},{\"key\":\"a\\\\\\\\\",\"count\":1,\"error\":0}],"
                  "\"distinct_counted\":3,\"nulls\":0,\"complete\":true,\"unlisted_max\":0}");
    free_state(topk, s);
}

/* ---- references ---------------------------------------------------------------- */

static void check_against_reference(const row *rows, size_t n, int col, int k)
{
    char kbuf[16];
    snprintf(kbuf, sizeof kbuf, "%d", k);
    opts o;
    opts_init(&o);
    opts_add(&o, "k", kbuf, 2);
    sf_agent_config cfg = make_cfg("topk", "top", col, &o);
    assert_int_equal(topk->check(&cfg), SF_OK);
    void *s = new_state(topk, &cfg);
    feed(topk, s, rows, n, 1000);
    size_t d;
    uint64_t nulls;
    ref_item *ref = reference(rows, n, col, &d, &nulls);
    size_t listed = d < (size_t)k ? d : (size_t)k;
    uint64_t unlisted = d > (size_t)k ? ref[k].count : 0;
    char *want = expected_json(ref, listed, d, nulls, true, unlisted, -1, 0);
    assert_report(topk, s, want);
    assert_true(stat_of(topk, s, "distinct") == (double)d);
    free(want);
    free(ref);
    free_state(topk, s);
}

static void test_uniform_vs_reference(void **st)
{
    (void)st;
    enum { N = 20000 };
    row *rows = calloc(N, sizeof *rows);
    assert_non_null(rows);
    rng_state = 11;
    for (size_t i = 0; i < N; i++) {
        rows[i].n = (int64_t)(rnd() % 3000) - 1500;
        rows[i].n_null = rnd() % 20 == 0;
        rows[i].k = rnd() % 25 == 0 ? NULL : key_name(rnd() % 500);
    }
    check_against_reference(rows, N, COL_N, 10);
    check_against_reference(rows, N, COL_N, 1);
    check_against_reference(rows, N, COL_K, 25);
    /* More slots than values: everything is listed. */
    check_against_reference(rows, N, COL_K, 1000);
    free(rows);
}

static void test_zipf_vs_reference(void **st)
{
    (void)st;
    enum { N = 50000 };
    row *rows = calloc(N, sizeof *rows);
    assert_non_null(rows);
    rng_state = 12;
    zipf z = zipf_make(10000, 1.1);
    for (size_t i = 0; i < N; i++) {
        size_t r = zipf_draw(&z);
        rows[i].k = key_name(r);
        rows[i].n = (int64_t)(r * 7919 % 10007);
        rows[i].n_null = i % 97 == 0;
    }
    check_against_reference(rows, N, COL_K, 10);
    check_against_reference(rows, N, COL_N, 100);
    free(z.cdf);
    free(rows);
}

/* ---- merge laws ---------------------------------------------------------------------- */

static void check_merge_laws(const sf_agent_ops *ops, const sf_agent_config *cfg, const row *rows,
                             size_t n)
{
    void *whole = new_state(ops, cfg);
    feed(ops, whole, rows, n, 333);

    /* merge(init, x) == x and merge(x, init) == x. */
    void *e = new_state(ops, cfg);
    assert_int_equal(ops->merge(e, whole), SF_OK);
    assert_same_state(ops, e, whole);
    void *w2 = new_state(ops, cfg);
    feed(ops, w2, rows, n, 4096);
    void *empty = new_state(ops, cfg);
    assert_int_equal(ops->merge(w2, empty), SF_OK);
    assert_same_state(ops, w2, whole);

    /* Split into 7 uneven pieces, merged in a shuffled order. */
    enum { P = 7 };
    void *part[P];
    size_t cut[P + 1] = {0};
    for (int p = 1; p < P; p++) cut[p] = (size_t)(rnd() % (n + 1));
    cut[P] = n;
    for (int p = 1; p < P; p++)
        for (int q = p + 1; q < P; q++)
            if (cut[q] < cut[p]) {
                size_t t = cut[p];
                cut[p] = cut[q];
                cut[q] = t;
            }
    for (int p = 0; p < P; p++) {
        part[p] = new_state(ops, cfg);
        feed(ops, part[p], rows + cut[p], cut[p + 1] - cut[p], 97);
    }
    int order[P];
    for (int p = 0; p < P; p++) order[p] = p;
    for (int p = P - 1; p > 0; p--) {
        int q = (int)(rnd() % (uint64_t)(p + 1));
        int t = order[p];
        order[p] = order[q];
        order[q] = t;
    }
    void *acc = new_state(ops, cfg);
    for (int p = 0; p < P; p++) assert_int_equal(ops->merge(acc, part[order[p]]), SF_OK);
    assert_same_state(ops, acc, whole);

    /* Associativity: (p0 + p1) + p2 == p0 + (p1 + p2); commutativity. */
    void *l = new_state(ops, cfg), *r = new_state(ops, cfg);
    assert_int_equal(ops->merge(l, part[0]), SF_OK);
    assert_int_equal(ops->merge(l, part[1]), SF_OK);
    assert_int_equal(ops->merge(l, part[2]), SF_OK);
    void *t12 = new_state(ops, cfg);
    assert_int_equal(ops->merge(t12, part[1]), SF_OK);
    assert_int_equal(ops->merge(t12, part[2]), SF_OK);
    assert_int_equal(ops->merge(r, part[0]), SF_OK);
    assert_int_equal(ops->merge(r, t12), SF_OK);
    assert_same_state(ops, l, r);
    void *ab = new_state(ops, cfg), *ba = new_state(ops, cfg);
    assert_int_equal(ops->merge(ab, part[3]), SF_OK);
    assert_int_equal(ops->merge(ab, part[4]), SF_OK);
    assert_int_equal(ops->merge(ba, part[4]), SF_OK);
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

static row *zipf_rows(size_t n, size_t m, double s, uint64_t seed)
{
    row *rows = calloc(n, sizeof *rows);
    assert_non_null(rows);
    rng_state = seed;
    zipf z = zipf_make(m, s);
    for (size_t i = 0; i < n; i++) {
        size_t r = zipf_draw(&z);
        rows[i].k = rnd() % 50 == 0 ? NULL : key_name(r);
        rows[i].n = (int64_t)r - 100;
        rows[i].n_null = rnd() % 50 == 0;
    }
    free(z.cdf);
    return rows;
}

static void test_merge_laws(void **st)
{
    (void)st;
    enum { N = 12000 };
    row *rows = zipf_rows(N, 3000, 1.0, 21);
    sf_agent_config cfg = make_cfg("topk", "top", COL_K, NULL);
    check_merge_laws(topk, &cfg, rows, N);
    cfg = make_cfg("topk", "top", COL_N, NULL);
    check_merge_laws(topk, &cfg, rows, N);
    opts o;
    opts_init(&o);
    opts_add(&o, "width", "256", 3);
    opts_add(&o, "depth", "3", 4);
    sf_agent_config cm = make_cfg("countmin", "cm", COL_K, &o);
    assert_int_equal(cmin->check(&cm), SF_OK);
    check_merge_laws(cmin, &cm, rows, N);
    free(rows);
}

/* ---- max_keys ------------------------------------------------------------------------ */

static void test_max_keys(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    opts_add(&o, "k", "2", 2);
    opts_add(&o, "max_keys", "5", 3);
    sf_agent_config cfg = make_cfg("topk", "top", COL_N, &o);
    assert_int_equal(topk->check(&cfg), SF_OK);
    row five[] = {{.n = 1}, {.n = 2}, {.n = 3}, {.n = 4}, {.n = 5}, {.n = 1}, {.n_null = true}};
    row six[] = {{.n = 6}};
    void *s = new_state(topk, &cfg);
    feed(topk, s, five, 7, 3);
    assert_true(stat_of(topk, s, "distinct") == 5);
    assert_int_equal(feed_rc(topk, s, six, 1, 1), SF_ERR_NOMEM);
    const char *msg = sf_error_message();
    assert_non_null(strstr(msg, "agent 'top'"));
    assert_non_null(strstr(msg, "max_keys: 5"));
    assert_non_null(strstr(msg, "countmin"));
    assert_non_null(strstr(msg, "baseline:"));
    free_state(topk, s);

    /* Two states within the limit whose union is not: merge fails the same way. */
    row a[] = {{.n = 1}, {.n = 2}, {.n = 3}};
    row b[] = {{.n = 3}, {.n = 4}, {.n = 5}, {.n = 6}};
    void *x = new_state(topk, &cfg), *y = new_state(topk, &cfg);
    feed(topk, x, a, 3, 3);
    feed(topk, y, b, 4, 4);
    sf_error_clear();
    assert_int_equal(topk->merge(x, y), SF_ERR_NOMEM);
    assert_non_null(strstr(sf_error_message(), "max_keys: 5"));
    free_state(topk, x);
    free_state(topk, y);
}

/* ---- encodings ------------------------------------------------------------------------ */

static void check_round_trip(const sf_agent_ops *ops, const sf_agent_config *cfg, const void *s)
{
    sf_buf e = encoded(ops, s);
    void *d = new_state(ops, cfg);
    assert_int_equal(ops->decode(d, e.data, e.len), SF_OK);
    assert_same_state(ops, d, s);
    char *a = report_text(ops, d), *b = report_text(ops, s);
    assert_string_equal(a, b);
    free(a);
    free(b);
    free_state(ops, d);
    /* Every strict prefix, and one trailing byte, are rejected (of a long
     * encoding: every 61st prefix and the last 64, to keep the test fast). */
    size_t stride = e.len > 8192 ? 61 : 1;
    for (size_t len = 0; len < e.len; len += (len + 64 >= e.len ? 1 : stride)) {
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

/* Replaces the u64 at byte offset off of a copy of e and checks that decode
 * rejects it. */
static void assert_rejects_u64(const sf_agent_ops *ops, const sf_agent_config *cfg, const sf_buf *e,
                               size_t off, uint64_t v)
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
    sf_agent_config cfg = make_cfg("topk", "top", COL_K, NULL);
    void *s = new_state(topk, &cfg);
    check_round_trip(topk, &cfg, s);
    row rows[] = {{.k = "x"}, {.k = "y"}, {.k = NULL}, {.k = "x"}, {.k = "zz"}};
    feed(topk, s, rows, 5, 2);
    check_round_trip(topk, &cfg, s);

    /* Header: u8 version, u8 form, u64 threshold, rows, nulls, skipped, nkeys. */
    sf_buf e = encoded(topk, s);
    assert_rejects_u64(topk, &cfg, &e, 10, 6);  /* rows no longer add up */
    assert_rejects_u64(topk, &cfg, &e, 18, 2);  /* nulls */
    assert_rejects_u64(topk, &cfg, &e, 26, 1);  /* skipped values without a baseline */
    assert_rejects_u64(topk, &cfg, &e, 2, 7);   /* a threshold without a baseline */
    e.data[0] = 9;                              /* unknown version */
    void *t = new_state(topk, &cfg);
    assert_int_equal(topk->decode(t, e.data, e.len), SF_ERR_PARSE);
    free_state(topk, t);
    sf_buf_fini(&e);
    free_state(topk, s);

    /* Hand-made encodings of an int64 topk: keys out of order, a duplicate
     * key, a zero count and the null key are each rejected. */
    cfg = make_cfg("topk", "top", COL_N, NULL);
    int64_t keys[4][2] = {{5, 3}, {3, 3}, {3, 5}, {3, 5}};
    uint64_t counts[4][2] = {{1, 1}, {1, 1}, {0, 2}, {1, 1}};
    for (int v = 0; v < 4; v++) {
        sf_buf b;
        sf_buf_init(&b);
        assert_int_equal(sf_buf_put_u8(&b, 1), SF_OK);
        assert_int_equal(sf_buf_put_u8(&b, 0), SF_OK);
        assert_int_equal(sf_buf_put_u64(&b, 0), SF_OK);
        assert_int_equal(sf_buf_put_u64(&b, 2), SF_OK);
        assert_int_equal(sf_buf_put_u64(&b, 0), SF_OK);
        assert_int_equal(sf_buf_put_u64(&b, 0), SF_OK);
        assert_int_equal(sf_buf_put_u64(&b, 2), SF_OK);
        for (int i = 0; i < 2; i++) {
            uint8_t k[9];
            size_t len = int_key(keys[v][i], k);
            if (v == 3 && i == 0) {
                /* The null key is one tag byte. */
                len = 1;
                k[0] = 0;
            }
            assert_int_equal(sf_buf_put_str(&b, (const char *)k, len), SF_OK);
            assert_int_equal(sf_buf_put_u64(&b, counts[v][i]), SF_OK);
        }
        t = new_state(topk, &cfg);
        assert_int_equal(topk->decode(t, b.data, b.len), SF_ERR_PARSE);
        free_state(topk, t);
        /* The same bytes with keys 3 < 5 and counts 1 + 1 decode. */
        sf_buf_fini(&b);
    }
    sf_buf ok;
    sf_buf_init(&ok);
    assert_int_equal(sf_buf_put_u8(&ok, 1), SF_OK);
    assert_int_equal(sf_buf_put_u8(&ok, 0), SF_OK);
    uint64_t head[] = {0, 2, 0, 0, 2};
    for (int i = 0; i < 5; i++) assert_int_equal(sf_buf_put_u64(&ok, head[i]), SF_OK);
    for (int i = 0; i < 2; i++) {
        uint8_t k[9];
        size_t len = int_key(i == 0 ? 3 : 5, k);
        assert_int_equal(sf_buf_put_str(&ok, (const char *)k, len), SF_OK);
        assert_int_equal(sf_buf_put_u64(&ok, 1), SF_OK);
    }
    t = new_state(topk, &cfg);
    assert_int_equal(topk->decode(t, ok.data, ok.len), SF_OK);
    assert_report(topk, t,
                  "{\"items\":[{\"key\":\"3\",\"count\":1,\"error\":0},{\"key\":\"5\",\"count\":1,"
                  "\"error\":0}],\"distinct_counted\":2,\"nulls\":0,\"complete\":true,\"unlisted_max\":0}");
    free_state(topk, t);
    sf_buf_fini(&ok);
}

/* ---- countmin ------------------------------------------------------------------------ */

static void test_countmin_never_underestimates(void **st)
{
    (void)st;
    enum { N = 30000 };
    row *rows = zipf_rows(N, 8000, 0.9, 31);
    opts o;
    opts_init(&o);
    opts_add(&o, "depth", "3", 2);
    opts_add(&o, "width", "1024", 3);
    sf_agent_config cfg = make_cfg("countmin", "cm", COL_K, &o);
    assert_int_equal(cmin->check(&cfg), SF_OK);
    void *s = new_state(cmin, &cfg);
    feed(cmin, s, rows, N, 1000);
    size_t d;
    uint64_t nulls;
    ref_item *ref = reference(rows, N, COL_K, &d, &nulls);
    assert_true(stat_of(cmin, s, "rows") == N);
    assert_true(stat_of(cmin, s, "count") == (double)(N - nulls));
    /* Count-Min's one-sided error: est >= true, and est - true <= N_count
     * (each counter holds at most every value). Some estimates are exact. */
    size_t exact = 0;
    for (size_t i = 0; i < d; i++) {
        uint8_t key[32];
        double est;
        assert_int_equal(cmin->stat(s, key, str_key(ref[i].text, key), "estimate", &est), SF_OK);
        assert_true(est >= (double)ref[i].count);
        assert_true(est <= (double)(N - nulls));
        exact += est == (double)ref[i].count;
    }
    assert_true(exact > 0);
    /* A value never seen may still collide, but is bounded the same way. */
    uint8_t key[32];
    double est;
    assert_int_equal(cmin->stat(s, key, str_key("never", key), "estimate", &est), SF_OK);
    assert_true(est >= 0 && est <= (double)(N - nulls));
    assert_int_equal(cmin->stat(s, key, 3, "estimate", &est), SF_ERR_ARG); /* malformed key */
    assert_int_equal(cmin->stat(s, NULL, 0, "distinct", &est), SF_ERR_ARG);

    char want[512];
    snprintf(want, sizeof want,
             "{\"rows\":%d,\"count\":%" PRIu64 ",\"nulls\":%" PRIu64
             ",\"depth\":3,\"width\":1024,\"epsilon\":%.17g,\"delta\":%.17g}",
             N, N - nulls, nulls, 2.718281828459045 / 1024, exp(-3.0));
    assert_report(cmin, s, want);
    free(ref);
    free_state(cmin, s);
    free(rows);
}

static void test_countmin_encoding(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    opts_add(&o, "depth", "2", 2);
    opts_add(&o, "width", "16", 3);
    sf_agent_config cfg = make_cfg("countmin", "cm", COL_N, &o);
    assert_int_equal(cmin->check(&cfg), SF_OK);
    void *s = new_state(cmin, &cfg);
    check_round_trip(cmin, &cfg, s);
    row rows[] = {{.n = 1}, {.n = 2}, {.n_null = true}, {.n = 1}, {.n = 99}};
    feed(cmin, s, rows, 5, 2);
    check_round_trip(cmin, &cfg, s);
    /* Header: u8 version, depth, log2 width, u64 seed, rows, count; then
     * the counters. A count that the rows of counters do not sum to, a
     * counter moved by one, a count above the rows, and another seed are
     * rejected. */
    sf_buf e = encoded(cmin, s);
    assert_int_equal(e.len, 27 + 8 * 2 * 16);
    assert_rejects_u64(cmin, &cfg, &e, 19, 5);
    assert_rejects_u64(cmin, &cfg, &e, 11, 3);
    assert_rejects_u64(cmin, &cfg, &e, 3, 2);
    size_t first_nonzero = 27;
    while (sf_load_u64(e.data + first_nonzero) == 0) first_nonzero += 8;
    assert_rejects_u64(cmin, &cfg, &e, first_nonzero, sf_load_u64(e.data + first_nonzero) + 1);
    sf_buf_fini(&e);

    /* A sketch of another shape does not decode. */
    opts o2;
    opts_init(&o2);
    opts_add(&o2, "depth", "2", 2);
    opts_add(&o2, "width", "32", 3);
    sf_agent_config cfg2 = make_cfg("countmin", "cm", COL_N, &o2);
    void *other = new_state(cmin, &cfg2);
    e = encoded(cmin, s);
    assert_int_equal(cmin->decode(other, e.data, e.len), SF_ERR_PARSE);
    sf_buf_fini(&e);
    free_state(cmin, other);
    free_state(cmin, s);
}

/* ---- two stages ----------------------------------------------------------------------- */

typedef struct two_stage {
    opts cm_opts, tk_opts;
    sf_agent_config cm_cfg, tk_cfg;
    sf_agent_prior prior;
    void *cm;
} two_stage;

/* A countmin (depth, width) over rows, split in three states and merged,
 * and a topk config (k, min_share) with it as baseline. */
static void two_stage_make(two_stage *t, const row *rows, size_t n, const char *depth,
                           const char *width, const char *k, const char *min_share)
{
    memset(t, 0, sizeof *t);
    opts_init(&t->cm_opts);
    opts_add(&t->cm_opts, "depth", depth, 2);
    opts_add(&t->cm_opts, "width", width, 3);
    t->cm_cfg = make_cfg("countmin", "cm", COL_K, &t->cm_opts);
    t->cm_cfg.stage = "s1";
    assert_int_equal(cmin->check(&t->cm_cfg), SF_OK);
    t->cm = new_state(cmin, &t->cm_cfg);
    size_t third = n / 3;
    void *b = new_state(cmin, &t->cm_cfg), *c = new_state(cmin, &t->cm_cfg);
    feed(cmin, t->cm, rows, third, 500);
    feed(cmin, b, rows + third, third, 500);
    feed(cmin, c, rows + 2 * third, n - 2 * third, 500);
    assert_int_equal(cmin->merge(t->cm, c), SF_OK);
    assert_int_equal(cmin->merge(t->cm, b), SF_OK);
    free_state(cmin, b);
    free_state(cmin, c);

    opts_init(&t->tk_opts);
    opts_add(&t->tk_opts, "k", k, 5);
    opts_add(&t->tk_opts, "min_share", min_share, 6);
    t->tk_cfg = make_cfg("topk", "top", COL_K, &t->tk_opts);
    t->prior = (sf_agent_prior){"s1.cm", cmin, &t->cm_cfg, NULL};
    t->tk_cfg.nbaseline = 1;
    t->tk_cfg.baseline = &t->prior;
    /* check() runs before the sketch exists. */
    assert_int_equal(topk->check(&t->tk_cfg), SF_OK);
    t->prior.state = t->cm;
}

static void two_stage_free(two_stage *t)
{
    free_state(cmin, t->cm);
}

/* Runs the topk of t over rows and compares its result with the one the
 * reference and the sketch's estimates give; returns whether it said
 * complete, and the reference's full ranking in *all (caller frees). */
static bool check_two_stage(two_stage *t, const row *rows, size_t n, uint64_t threshold, int k,
                            ref_item **all, size_t *nall)
{
    void *s = new_state(topk, &t->tk_cfg);
    feed(topk, s, rows, n, 700);
    uint64_t nulls;
    ref_item *ref = reference(rows, n, COL_K, nall, &nulls);
    /* Candidates: the values whose estimate reaches the threshold, in rank
     * order; every value whose true count reaches it is one. */
    ref_item *cand = calloc(*nall ? *nall : 1, sizeof *cand);
    assert_non_null(cand);
    size_t nc = 0;
    uint64_t uncounted = 0;
    for (size_t i = 0; i < *nall; i++) {
        uint8_t key[32];
        double est;
        assert_int_equal(cmin->stat(t->cm, key, str_key(ref[i].text, key), "estimate", &est), SF_OK);
        if (ref[i].count >= threshold) assert_true(est >= (double)threshold);
        if (est >= (double)threshold) {
            cand[nc++] = ref[i];
            /* Counted exactly. */
            double c;
            assert_int_equal(topk->stat(s, key, str_key(ref[i].text, key), "count", &c), SF_OK);
            assert_true(c == (double)ref[i].count);
        } else {
            uncounted += ref[i].count;
            double c;
            assert_int_equal(topk->stat(s, key, str_key(ref[i].text, key), "count", &c), SF_ERR_ARG);
        }
    }
    size_t listed = nc < (size_t)k ? nc : (size_t)k;
    bool complete = uncounted == 0 || (listed == (size_t)k && cand[k - 1].count >= threshold);
    uint64_t unlisted = nc > (size_t)k ? cand[k].count : 0;
    if (uncounted > 0) {
        uint64_t bound = threshold - 1 < uncounted ? threshold - 1 : uncounted;
        if (bound > unlisted) unlisted = bound;
    }
    char *want = expected_json(cand, listed, nc, nulls, complete, unlisted, (int64_t)threshold,
                               uncounted);
    assert_report(topk, s, want);
    free(want);
    check_round_trip(topk, &t->tk_cfg, s);
    free_state(topk, s);
    free(cand);
    *all = ref;
    return complete;
}

static void test_two_stage_zipf_complete(void **st)
{
    (void)st;
    enum { N = 60000 };
    row *rows = zipf_rows(N, 15000, 1.1, 41);
    two_stage t;
    two_stage_make(&t, rows, N, "4", "2048", "10", "0.001");
    uint64_t count = (uint64_t)stat_of(cmin, t.cm, "count");
    /* ceil(count * 1 / 1000) in integers: the decimal 0.001, not its
     * binary neighbour. */
    uint64_t threshold = (count + 999) / 1000;
    ref_item *all;
    size_t nall;
    bool complete = check_two_stage(&t, rows, N, threshold, 10, &all, &nall);
    assert_true(complete);
    /* Complete means the exact top 10 of all values. */
    void *s = new_state(topk, &t.tk_cfg);
    feed(topk, s, rows, N, 4096);
    char *text = report_text(topk, s);
    for (int i = 0; i < 10; i++) {
        char item[128];
        snprintf(item, sizeof item, "{\"key\":\"%s\",\"count\":%" PRIu64 ",\"error\":0}%s", all[i].text,
                 all[i].count, i < 9 ? "," : "]");
        char *at = strstr(text, item);
        assert_non_null(at);
    }
    assert_true(stat_of(topk, s, "distinct") < (double)nall); /* the tail was not counted */
    free(text);
    free(all);

    /* Split and merged topk states give the same bytes. */
    check_merge_laws(topk, &t.tk_cfg, rows, N);
    free_state(topk, s);
    two_stage_free(&t);
    free(rows);
}

/* Rows: `heavy` values of count hc each, then `light` values of count lc. */
static row *heavy_light(size_t heavy, size_t hc, size_t light, size_t lc, size_t *n)
{
    *n = heavy * hc + light * lc;
    row *rows = calloc(*n, sizeof *rows);
    assert_non_null(rows);
    size_t at = 0;
    for (size_t i = 0; i < heavy; i++)
        for (size_t c = 0; c < hc; c++) rows[at++].k = key_name(i);
    for (size_t i = 0; i < light; i++)
        for (size_t c = 0; c < lc; c++) rows[at++].k = key_name(heavy + i);
    rng_state = 51;
    for (size_t i = *n - 1; i > 0; i--) {
        size_t j = (size_t)(rnd() % (i + 1));
        row r = rows[i];
        rows[i] = rows[j];
        rows[j] = r;
    }
    return rows;
}

static void test_two_stage_incomplete(void **st)
{
    (void)st;
    size_t n;
    /* 3 values of 400 and 2000 of 5: N = 11200, threshold 112 at 1%. With
     * 4 x 4096 counters no light value gets near 112, so only 3 values are
     * counted and k = 5 cannot be filled: not complete, and an unlisted
     * value may have up to 111. */
    row *rows = heavy_light(3, 400, 2000, 5, &n);
    two_stage t;
    two_stage_make(&t, rows, n, "4", "4096", "5", "0.01");
    ref_item *all;
    size_t nall;
    bool complete = check_two_stage(&t, rows, n, 112, 5, &all, &nall);
    assert_false(complete);
    void *s = new_state(topk, &t.tk_cfg);
    feed(topk, s, rows, n, 1000);
    assert_true(stat_of(topk, s, "distinct") == 3);
    char *text = report_text(topk, s);
    assert_non_null(strstr(text, "\"complete\":false,\"unlisted_max\":111,\"threshold\":112,"
                                 "\"uncounted\":10000}"));
    free(text);
    free_state(topk, s);
    free(all);
    two_stage_free(&t);

    /* k = 3: the three heavy values are the exact top 3 (400 >= 112). */
    two_stage_make(&t, rows, n, "4", "4096", "3", "0.01");
    assert_true(check_two_stage(&t, rows, n, 112, 3, &all, &nall));
    free(all);
    two_stage_free(&t);

    /* One row of 16 counters (about 700 values each) at 5.6%: threshold
     * 628, which some counters of light values pass, so k = 5 is filled
     * with counts far below the threshold: still not complete. */
    two_stage_make(&t, rows, n, "1", "16", "5", "0.056");
    complete = check_two_stage(&t, rows, n, 628, 5, &all, &nall);
    assert_false(complete);
    s = new_state(topk, &t.tk_cfg);
    feed(topk, s, rows, n, 1000);
    assert_true(stat_of(topk, s, "distinct") > 5); /* precondition: listed == k */
    assert_true(stat_of(topk, s, "distinct") < (double)nall); /* and some values skipped */
    free_state(topk, s);
    free(all);
    two_stage_free(&t);

    /* min_share 0: every value is a candidate, counted exactly: complete. */
    two_stage_make(&t, rows, n, "1", "16", "5", "0");
    assert_true(check_two_stage(&t, rows, n, 0, 5, &all, &nall));
    free(all);
    two_stage_free(&t);
    free(rows);
}

/* A topk that sees more values than its sketch cannot trust the threshold
 * bound: not complete, and the bound falls back to the uncounted values. */
static void test_two_stage_sketch_saw_less(void **st)
{
    (void)st;
    size_t n;
    /* 2 values of 300 and 100 of 3, shuffled; the sketch sees the first
     * half: 450 values, threshold 5 at 1%, which the heavy values pass
     * (about 150 each) and the light ones mostly do not. */
    row *rows = heavy_light(2, 300, 100, 3, &n);
    two_stage t;
    two_stage_make(&t, rows, n / 2, "4", "4096", "2", "0.01");
    void *s = new_state(topk, &t.tk_cfg);
    feed(topk, s, rows, n, 1000);
    /* The values counted, read back one by one through stat(). */
    uint64_t counted = 0;
    uint8_t key[32];
    for (size_t i = 0; i < 102; i++) {
        double c;
        if (topk->stat(s, key, str_key(key_name(i), key), "count", &c) == SF_OK) {
            counted += (uint64_t)c;
            if (i < 2) assert_true(c == 300);
        } else {
            assert_true(i >= 2);
        }
    }
    uint64_t uncounted = n - counted;
    assert_true(uncounted > 3);
    char want[160];
    snprintf(want, sizeof want, "\"complete\":false,\"unlisted_max\":%" PRIu64 ",\"threshold\":5,"
             "\"uncounted\":%" PRIu64 "}", uncounted, uncounted);
    char *text = report_text(topk, s);
    assert_non_null(strstr(text, want));
    free(text);
    free_state(topk, s);
    two_stage_free(&t);
    free(rows);
}

/* ---- configuration errors ------------------------------------------------------------- */

static void assert_config_error(const sf_agent_ops *ops, const sf_agent_config *cfg,
                                const char *part1, const char *part2)
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
    opts_add(&o, "k", "0", 4);
    sf_agent_config cfg = make_cfg("topk", "top", COL_K, &o);
    assert_config_error(topk, &cfg, "test.yaml:4: agent 'top': option 'k'", "outside");

    opts_init(&o);
    opts_add(&o, "k", "20", 4);
    opts_add(&o, "max_keys", "10", 5);
    cfg = make_cfg("topk", "top", COL_K, &o);
    assert_config_error(topk, &cfg, "test.yaml:5: agent 'top': option 'max_keys'", "below k");

    opts_init(&o);
    opts_add(&o, "kk", "20", 6);
    cfg = make_cfg("topk", "top", COL_K, &o);
    assert_config_error(topk, &cfg, "test.yaml:6: agent 'top': unknown option 'kk'", "min_share");

    opts_init(&o);
    opts_add(&o, "min_share", "0.01", 7);
    cfg = make_cfg("topk", "top", COL_K, &o);
    assert_config_error(topk, &cfg, "test.yaml:7: agent 'top': option 'min_share'", "countmin");

    opts_init(&o);
    opts_add(&o, "by", "n", 8);
    int by[] = {COL_N};
    const char *by_names[] = {"n"};
    cfg = make_cfg("topk", "top", COL_K, &o);
    cfg.nby = 1;
    cfg.by = by_names;
    cfg.by_col = by;
    assert_config_error(topk, &cfg, "test.yaml:8: agent 'top': option 'by'", "no by:");

    cfg = make_cfg("topk", "top", -1, NULL);
    assert_config_error(topk, &cfg, "test.yaml:1: agent 'top'", "needs a column");

    /* Baselines: not a countmin, another column, another where:. */
    sf_agent_config other = make_cfg("stats", "st", COL_N, NULL);
    sf_agent_prior prior = {"s1.st", &sf__agent_stats, &other, NULL};
    opts_init(&o);
    opts_add(&o, "baseline", "s1.st", 9);
    cfg = make_cfg("topk", "top", COL_N, &o);
    cfg.nbaseline = 1;
    cfg.baseline = &prior;
    assert_config_error(topk, &cfg, "test.yaml:9: agent 'top': option 'baseline'", "countmin");
    sf_agent_config cm = make_cfg("countmin", "cm", COL_K, NULL);
    prior = (sf_agent_prior){"s1.cm", cmin, &cm, NULL};
    assert_config_error(topk, &cfg, "test.yaml:9: agent 'top': option 'baseline'", "sketches column 'k'");
    cm = make_cfg("countmin", "cm", COL_N, NULL);
    cm.where = "f > 1";
    assert_config_error(topk, &cfg, "test.yaml:9", "where f > 1");
    cfg.where = "f > 1";
    assert_int_equal(topk->check(&cfg), SF_OK);

    /* countmin: width not a power of two, depth out of range, by:. */
    opts_init(&o);
    opts_add(&o, "width", "1000", 10);
    cfg = make_cfg("countmin", "cm", COL_K, &o);
    assert_config_error(cmin, &cfg, "test.yaml:10: agent 'cm': option 'width'", "power of two");
    opts_init(&o);
    opts_add(&o, "depth", "0", 11);
    cfg = make_cfg("countmin", "cm", COL_K, &o);
    assert_config_error(cmin, &cfg, "test.yaml:11: agent 'cm': option 'depth'", NULL);
    opts_init(&o);
    opts_add(&o, "width", "8", 12);
    cfg = make_cfg("countmin", "cm", COL_K, &o);
    assert_config_error(cmin, &cfg, "test.yaml:12: agent 'cm': option 'width'", NULL);
    cfg = make_cfg("countmin", "cm", COL_K, NULL);
    cfg.nby = 1;
    cfg.by = by_names;
    cfg.by_col = by;
    assert_config_error(cmin, &cfg, "agent 'cm': option 'by'", NULL);
    cfg = make_cfg("countmin", "cm", COL_F, NULL);
    assert_int_equal(cmin->check(&cfg), SF_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_report_by_hand),
        cmocka_unit_test(test_ties_by_printed_key),
        cmocka_unit_test(test_uniform_vs_reference),
        cmocka_unit_test(test_zipf_vs_reference),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_max_keys),
        cmocka_unit_test(test_round_trip_and_truncation),
        cmocka_unit_test(test_countmin_never_underestimates),
        cmocka_unit_test(test_countmin_encoding),
        cmocka_unit_test(test_two_stage_zipf_complete),
        cmocka_unit_test(test_two_stage_incomplete),
        cmocka_unit_test(test_two_stage_sketch_saw_less),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
