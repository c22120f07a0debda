/* Unit tests of the `distinct` agent (agents/distinct.c). Expectations come
 * from exact distinct counts (sorting the values), registers computed here
 * from the documented hash, and a second path through the agent (ungrouped
 * states over the rows of one key, or the same values through other splits
 * and merges). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/sketch_agents.h"
#include "flow/yaml_tree.h"

#include "agent_testkit.h"

enum { COL_V, COL_K, COL_N, COL_S, COL_TS, NCOLS };

static const sf_agent_ops *ops = &sf__agent_distinct;
static sf_schema schema;

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "k", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "s", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "ts", SF_TIMESTAMP) != SF_OK) return -1;
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
    return yaml_cfg(&schema, "distinct", "users", col, nby, by_col, yaml);
}

/* Test rows: one id per row gives every value column (v, n, s, ts) a value
 * that is distinct exactly when the ids are; null[i] makes them all null;
 * key[i] is the k column (NULL = null key). */
typedef struct data {
    size_t n;
    uint64_t *id;
    uint8_t *null;
    const char **key;
} data;

static data data_new(size_t n)
{
    size_t c = n ? n : 1;
    data d = {n, calloc(c, sizeof(uint64_t)), calloc(c, 1), calloc(c, sizeof(char *))};
    assert_non_null(d.id);
    assert_non_null(d.null);
    assert_non_null(d.key);
    return d;
}

static void data_free(data *d)
{
    free(d->id);
    free(d->null);
    free(d->key);
}

static double id_double(uint64_t id)
{
    return (double)(id & 0xFFFFFFFFFFFFull) * 0.5 - 1e9;
}

static int64_t id_int(uint64_t id)
{
    return (int64_t)(id * 0x9E3779B97F4A7C15ull);
}

/* Cleared by tests that do not read the string column s, which is the
 * costly one to build. */
static bool fill_strings = true;

static void fill(sf_batch *b, const data *d, size_t from, size_t to)
{
    size_t n = to - from;
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        size_t i = from + r;
        uint64_t id = d->id[i];
        uint32_t code;
        b->cols[COL_V].f64[r] = id_double(id);
        b->cols[COL_N].i64[r] = id_int(id);
        b->cols[COL_TS].i64[r] = (int64_t)(id % 4000000000000000ull);
        if (fill_strings) {
            char text[32];
            int len = snprintf(text, sizeof text, "u%llu", (unsigned long long)id);
            assert_int_equal(sf_dict_intern(&b->cols[COL_S].dict, text, (size_t)len, &code), SF_OK);
            b->cols[COL_S].code[r] = code;
        }
        if (d->key[i] != NULL) {
            assert_int_equal(sf_dict_intern(&b->cols[COL_K].dict, d->key[i], strlen(d->key[i]), &code), SF_OK);
            b->cols[COL_K].code[r] = code;
        } else {
            assert_int_equal(sf_batch_set_null(b, COL_K, r), SF_OK);
        }
        if (d->null[i]) {
            int cols[] = {COL_V, COL_N, COL_S, COL_TS};
            for (int c = 0; c < 4; c++) assert_int_equal(sf_batch_set_null(b, cols[c], r), SF_OK);
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

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The exact number of distinct non-null ids of d (sort and count). */
static size_t exact_distinct(const data *d)
{
    uint64_t *x = malloc((d->n ? d->n : 1) * sizeof *x);
    assert_non_null(x);
    size_t m = 0, u = 0;
    for (size_t i = 0; i < d->n; i++)
        if (!d->null[i]) x[m++] = d->id[i];
    qsort(x, m, sizeof *x, cmp_u64);
    for (size_t i = 0; i < m; i++) u += i == 0 || x[i] != x[i - 1];
    free(x);
    return u;
}

/* The register and rank of a hash, as the agent documents them. */
static void reg_of(uint64_t h, int p, uint32_t *idx, uint32_t *rank)
{
    *idx = (uint32_t)(h >> (64 - p));
    uint64_t rest = h << p;
    uint32_t r = 1;
    while (r <= (uint32_t)(64 - p) && !(rest & 0x8000000000000000ull)) {
        rest <<= 1;
        r++;
    }
    *rank = r;
}

static uint64_t hash_le(uint64_t bits)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++) b[i] = (uint8_t)(bits >> (8 * i));
    return XXH3_64bits_withSeed(b, 8, 0);
}

/* ---- hand-computed encodings and reports --------------------------------------- */

/* The bytes of an ungrouped state of one value with register idx, rank. */
static sf_buf one_value_bytes(int p, uint32_t idx, uint32_t rank, uint64_t count, uint64_t nulls)
{
    sf_buf b;
    sf_buf_init(&b);
    assert_int_equal(sf_buf_put_u8(&b, 1), SF_OK);       /* format */
    assert_int_equal(sf_buf_put_u8(&b, 0), SF_OK);       /* key columns */
    assert_int_equal(sf_buf_put_u8(&b, (uint8_t)p), SF_OK);
    assert_int_equal(sf_buf_put_u64(&b, 1), SF_OK);      /* groups */
    assert_int_equal(sf_buf_put_u32(&b, 0), SF_OK);      /* the empty key */
    assert_int_equal(sf_buf_put_u64(&b, count), SF_OK);
    assert_int_equal(sf_buf_put_u64(&b, nulls), SF_OK);
    assert_int_equal(sf_buf_put_u32(&b, 1), SF_OK);      /* one nonzero register */
    assert_int_equal(sf_buf_put_u32(&b, idx), SF_OK);
    assert_int_equal(sf_buf_put_u8(&b, (uint8_t)rank), SF_OK);
    return b;
}

static void assert_bytes(const void *s, const sf_buf *want)
{
    sf_buf got = encoded(ops, s);
    assert_int_equal(got.len, want->len);
    assert_memory_equal(got.data, want->data, got.len);
    sf_buf_fini(&got);
}

static void test_hash_definition(void **st)
{
    (void)st;
    uint32_t idx, rank;
    /* int64: 8 little-endian bytes of the two's complement value. */
    sf_agent_config cfg = make_cfg(COL_N, 0, NULL, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    data d = data_new(3);
    d.id[0] = d.id[1] = 7;
    d.null[2] = 1;
    feed(s, &d, 2);
    reg_of(hash_le((uint64_t)id_int(7)), 14, &idx, &rank);
    sf_buf want = one_value_bytes(14, idx, rank, 2, 1);
    assert_bytes(s, &want);
    sf_buf_fini(&want);
    free_state(ops, s);

    /* string: its bytes. */
    sf_agent_config scfg = make_cfg(COL_S, 0, NULL, "precision: 9\n");
    s = new_state(ops, &scfg);
    feed(s, &d, 3);
    reg_of(XXH3_64bits_withSeed("u7", 2, 0), 9, &idx, &rank);
    want = one_value_bytes(9, idx, rank, 2, 1);
    assert_bytes(s, &want);
    sf_buf_fini(&want);
    free_state(ops, s);
    data_free(&d);

    /* float64: -0 is +0 (all zero bytes), every NaN is one. */
    sf_agent_config fcfg = make_cfg(COL_V, 0, NULL, NULL);
    s = new_state(ops, &fcfg);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &schema, NULL, 6), SF_OK);
    uint64_t nan_bits[] = {0x7FF8000000000000ull, 0xFFF8000000000000ull, 0x7FF0000000000001ull, 0x7FFFFFFFFFFFFFFFull};
    for (int i = 0; i < 4; i++) memcpy(&b.cols[COL_V].f64[i], &nan_bits[i], 8);
    b.cols[COL_V].f64[4] = 0.0;
    b.cols[COL_V].f64[5] = -0.0;
    b.nrows = 6;
    sf_rows nans = {0, 4, NULL, SF_ROWS_NO_SHARD}, zeros = {4, 2, NULL, SF_ROWS_NO_SHARD};
    assert_int_equal(ops->process(s, &b, &nans), SF_OK);
    reg_of(hash_le(0x7FF8000000000000ull), 14, &idx, &rank);
    want = one_value_bytes(14, idx, rank, 4, 0);
    assert_bytes(s, &want);
    sf_buf_fini(&want);
    assert_true(stat_of(ops, s, "distinct") == 1.0);
    assert_int_equal(ops->process(s, &b, &zeros), SF_OK);
    assert_true(stat_of(ops, s, "distinct") == 2.0);
    void *z = new_state(ops, &fcfg);
    sf_rows pz = {4, 1, NULL, SF_ROWS_NO_SHARD};
    assert_int_equal(ops->process(z, &b, &pz), SF_OK);
    reg_of(hash_le(0), 14, &idx, &rank);
    want = one_value_bytes(14, idx, rank, 1, 0);
    assert_bytes(z, &want);
    sf_buf_fini(&want);
    sf_batch_fini(&b);
    free_state(ops, s);
    free_state(ops, z);
    yaml_cfg_free(&cfg);
    yaml_cfg_free(&scfg);
    yaml_cfg_free(&fcfg);
}

static void test_report(void **st)
{
    (void)st;
    sf_agent_config cfg = make_cfg(COL_S, 0, NULL, "precision: 12\n");
    void *s = new_state(ops, &cfg);
    char want[256];
    /* 1.04 / sqrt(4096) = 1.04 / 64. */
    snprintf(want, sizeof want, "{\"count\":0,\"distinct\":0,\"nulls\":0,\"precision\":12,\"standard_error\":%.17g}", 1.04 / 64);
    char *t = report_text(ops, s);
    assert_string_equal(t, want);
    free(t);
    data d = data_new(6);
    uint64_t ids[] = {5, 9, 5, 5, 11, 0};
    memcpy(d.id, ids, sizeof ids);
    d.null[5] = 1;
    feed(s, &d, 4);
    /* Three values in 4096 registers: linear counting 4096 ln(4096 / (4096 -
     * V)) with V the registers they set (3 unless two share one). */
    uint32_t regs[3];
    const char *texts[] = {"u5", "u9", "u11"};
    for (int i = 0; i < 3; i++) {
        uint32_t rank;
        reg_of(XXH3_64bits_withSeed(texts[i], strlen(texts[i]), 0), 12, &regs[i], &rank);
    }
    int v = 1 + (regs[1] != regs[0]) + (regs[2] != regs[0] && regs[2] != regs[1]);
    snprintf(want, sizeof want, "{\"count\":5,\"distinct\":%.0f,\"nulls\":1,\"precision\":12,\"standard_error\":%.17g}",
             round(4096.0 * log(4096.0 / (4096.0 - v))), 1.04 / 64);
    t = report_text(ops, s);
    assert_string_equal(t, want);
    free(t);
    assert_true(stat_of(ops, s, "count") == 5.0);
    assert_true(stat_of(ops, s, "rows") == 6.0);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

/* ---- accuracy ------------------------------------------------------------------- */

/* Within 3 standard errors of the exact count (plus the rounding of the
 * reported estimate to an integer). */
static void check_accuracy(int col, int p, size_t card, bool skewed)
{
    char yaml[64];
    snprintf(yaml, sizeof yaml, "precision: %d\n", p);
    sf_agent_config cfg = make_cfg(col, 0, NULL, yaml);
    assert_int_equal(ops->check(&cfg), SF_OK);
    /* Random: card random ids. Skewed: each of card ids once, then as many
     * rows again drawn with a heavy bias to the smallest ids. */
    size_t rows = skewed ? 2 * card : card;
    data d = data_new(rows + card / 50);
    uint64_t salt = rnd();
    for (size_t i = 0; i < rows; i++) {
        uint64_t r = skewed ? (i < card ? i : (uint64_t)floor((double)card * pow(unif(), 4.0))) : rnd();
        d.id[i] = skewed ? r * 0xD6E8FEB86659FD93ull + salt : r & 0x7FFFFFFFFFFFFFFFull;
    }
    for (size_t i = rows; i < d.n; i++) d.null[i] = 1; /* nulls are not values */
    void *s = new_state(ops, &cfg);
    fill_strings = col == COL_S;
    feed(s, &d, 4096);
    fill_strings = true;
    double exact = (double)exact_distinct(&d);
    double est = stat_of(ops, s, "distinct");
    double se = 1.04 / sqrt((double)(1u << p));
    if (!(fabs(est - exact) <= 3.0 * se * exact + 0.5))
        fail_msg("column %d, p %d, %s: estimate %.0f, exact %.0f", col, p, skewed ? "skewed" : "random", est,
                 exact);
    assert_true(stat_of(ops, s, "count") == (double)rows);
    assert_true(stat_of(ops, s, "rows") == (double)d.n);
    free_state(ops, s);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

static void test_accuracy(void **st)
{
    (void)st;
    rng_state = 77;
    const size_t cards[] = {0, 1, 10, 1000, 100000, 1000000};
    const int ps[] = {10, 14};
    for (int a = 0; a < 2; a++)
        for (int c = 0; c < 6; c++) {
            check_accuracy(COL_N, ps[a], cards[c], false);
            check_accuracy(COL_N, ps[a], cards[c], true);
            /* Strings, floats and timestamps up to 100000 (a million strings
             * only repeats the integer case more slowly). */
            if (cards[c] <= 100000) {
                check_accuracy(COL_S, ps[a], cards[c], false);
                check_accuracy(COL_S, ps[a], cards[c], true);
                check_accuracy(COL_V, ps[a], cards[c], true);
                check_accuracy(COL_TS, ps[a], cards[c], false);
            }
        }
    /* Every precision on a moderate count. */
    for (int p = 4; p <= 18; p++) check_accuracy(COL_N, p, 20000, p % 2 == 0);
}

/* ---- sparse and dense forms ---------------------------------------------------------- */

/* Ids whose int64 values fall in k different registers at precision p. */
static void distinct_register_ids(int p, size_t k, uint64_t *ids)
{
    uint8_t *seen = calloc((size_t)1 << p, 1);
    assert_non_null(seen);
    size_t n = 0;
    for (uint64_t id = 1; n < k; id++) {
        uint32_t idx, rank;
        reg_of(hash_le((uint64_t)id_int(id)), p, &idx, &rank);
        if (seen[idx]) continue;
        seen[idx] = 1;
        ids[n++] = id;
    }
    free(seen);
}

static void test_sparse_threshold(void **st)
{
    (void)st;
    const int p = 10;
    const size_t m = 1024, limit = m / 8;
    sf_agent_config cfg = make_cfg(COL_N, 0, NULL, "precision: 10\n");
    data d = data_new(limit);
    distinct_register_ids(p, limit, d.id);
    const size_t head = 1 + 1 + 1 + 8 + 4 + 8 + 8 + 4;
    /* limit - 1 nonzero registers: sparse, 5 bytes each. */
    void *s = new_state(ops, &cfg);
    feed_range(s, &d, 0, limit - 1, 50);
    sf_buf e = encoded(ops, s);
    assert_int_equal(e.len, head + 5 * (limit - 1));
    sf_buf_fini(&e);
    /* The limit-th: dense, m bytes. */
    feed_range(s, &d, limit - 1, limit, 1);
    e = encoded(ops, s);
    assert_int_equal(e.len, head + m);
    /* The dense bytes are the registers computed here. */
    uint8_t regs[1024] = {0};
    for (size_t i = 0; i < limit; i++) {
        uint32_t idx, rank;
        reg_of(hash_le((uint64_t)id_int(d.id[i])), p, &idx, &rank);
        if (rank > regs[idx]) regs[idx] = (uint8_t)rank;
    }
    assert_memory_equal(e.data + head, regs, m);

    /* Non-canonical forms are rejected: these registers announced as fewer
     * (so read as sparse entries), and a sparse listing announced as dense. */
    void *t = new_state(ops, &cfg);
    sf_buf bad;
    sf_buf_init(&bad);
    assert_int_equal(sf_buf_append(&bad, e.data, e.len), SF_OK);
    bad.data[head - 4] = (uint8_t)(limit - 1);
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    void *sp = new_state(ops, &cfg);
    feed_range(sp, &d, 0, 3, 3);
    sf_buf_clear(&bad);
    sf_buf se = encoded(ops, sp);
    assert_int_equal(sf_buf_append(&bad, se.data, se.len), SF_OK);
    bad.data[head - 4] = (uint8_t)limit;
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    /* A sparse listing out of order, and a rank above 65 - p. */
    sf_buf_clear(&bad);
    assert_int_equal(sf_buf_append(&bad, se.data, se.len), SF_OK);
    uint8_t tmp[5];
    memcpy(tmp, bad.data + head, 5);
    memcpy(bad.data + head, bad.data + head + 5, 5);
    memcpy(bad.data + head + 5, tmp, 5);
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    sf_buf_clear(&bad);
    assert_int_equal(sf_buf_append(&bad, se.data, se.len), SF_OK);
    bad.data[head + 4] = 56;
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    bad.data[head + 4] = 0;
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    /* A dense register above the largest rank. */
    sf_buf_clear(&bad);
    assert_int_equal(sf_buf_append(&bad, e.data, e.len), SF_OK);
    for (size_t j = 0; j < m; j++)
        if (bad.data[head + j] != 0) {
            bad.data[head + j] = 56;
            break;
        }
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    /* The genuine ones decode to the same bytes. */
    assert_int_equal(ops->decode(t, e.data, e.len), SF_OK);
    assert_same_state(ops, t, s);
    assert_int_equal(ops->decode(t, se.data, se.len), SF_OK);
    assert_same_state(ops, t, sp);
    sf_buf_fini(&bad);
    sf_buf_fini(&e);
    sf_buf_fini(&se);
    free_state(ops, s);
    free_state(ops, t);
    free_state(ops, sp);
    data_free(&d);
    yaml_cfg_free(&cfg);
}

/* The same values through one state, through single-value states merged
 * pairwise in a shuffled tree, and through sparse states merged into a
 * dense one give identical bytes, on both sides of the threshold. */
static void test_sparse_dense_equivalence(void **st)
{
    (void)st;
    rng_state = 4;
    sf_agent_config cfg = make_cfg(COL_N, 0, NULL, "precision: 10\n");
    const size_t sizes[] = {5, 127, 128, 129, 400, 3000};
    for (size_t z = 0; z < sizeof sizes / sizeof sizes[0]; z++) {
        size_t n = sizes[z];
        data d = data_new(n);
        for (size_t i = 0; i < n; i++) d.id[i] = rnd() % (n + n / 3 + 1);
        void *whole = new_state(ops, &cfg);
        feed(whole, &d, 64);
        /* One state per row, merged in a random binary tree. */
        void **st1 = malloc(n * sizeof *st1);
        assert_non_null(st1);
        for (size_t i = 0; i < n; i++) {
            st1[i] = new_state(ops, &cfg);
            feed_range(st1[i], &d, i, i + 1, 1);
        }
        size_t live = n;
        while (live > 1) {
            size_t a = rnd() % live, b = rnd() % (live - 1);
            if (b >= a) b++;
            assert_int_equal(ops->merge(st1[a], st1[b]), SF_OK);
            free_state(ops, st1[b]);
            st1[b] = st1[--live];
        }
        assert_same_state(ops, st1[0], whole);
        /* A dense state of the second half absorbing small sparse ones. */
        void *big = new_state(ops, &cfg);
        feed_range(big, &d, n / 2, n, 100);
        for (size_t at = 0; at < n / 2; at += 7) {
            void *small = new_state(ops, &cfg);
            feed_range(small, &d, at, at + 7 < n / 2 ? at + 7 : n / 2, 3);
            assert_int_equal(ops->merge(small, big), SF_OK); /* dense into sparse */
            free_state(ops, big);
            big = small;
        }
        assert_same_state(ops, big, whole);
        /* Round trips keep the bytes. */
        sf_buf e = encoded(ops, whole);
        void *back = new_state(ops, &cfg);
        assert_int_equal(ops->decode(back, e.data, e.len), SF_OK);
        assert_same_state(ops, back, whole);
        sf_buf_fini(&e);
        free_state(ops, back);
        free_state(ops, big);
        free_state(ops, st1[0]);
        free(st1);
        free_state(ops, whole);
        data_free(&d);
    }
    yaml_cfg_free(&cfg);
}

/* ---- merge laws, round trip, truncations ------------------------------------------- */

static void random_data(data *d, int nkeys, uint64_t range)
{
    static const char *const keys[] = {"api", "db", "web|x", "cache\\1", "", "auth"};
    for (size_t i = 0; i < d->n; i++) {
        d->id[i] = rnd() % range;
        d->null[i] = rnd() % 19 == 0;
        d->key[i] = rnd() % 11 == 0 ? NULL : keys[rnd() % (uint64_t)nkeys];
    }
}

static void check_laws(int col, int nby, const int *by, const char *yaml, size_t nrows)
{
    sf_agent_config cfg = make_cfg(col, nby, by, yaml);
    assert_int_equal(ops->check(&cfg), SF_OK);
    data d = data_new(nrows);
    random_data(&d, 5, nrows);
    void *whole = new_state(ops, &cfg);
    feed(whole, &d, 256);

    void *e = new_state(ops, &cfg), *copy = new_state(ops, &cfg), *e2 = new_state(ops, &cfg);
    assert_int_equal(ops->merge(e, whole), SF_OK);
    assert_same_state(ops, e, whole);
    assert_int_equal(ops->merge(copy, whole), SF_OK);
    assert_int_equal(ops->merge(copy, e2), SF_OK);
    assert_same_state(ops, copy, whole);

    enum { PARTS = 6 };
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
        feed_range(part[i], &d, cut[i], cut[i + 1], 1 + rnd() % 200);
    }
    int perm[PARTS] = {4, 1, 5, 0, 3, 2};
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
    assert_int_equal(ops->decode(part[2], enc.data, enc.len), SF_OK);
    assert_same_state(ops, part[2], whole);

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
    rng_state = 9;
    int by[] = {COL_K};
    int by2[] = {COL_K, COL_N};
    /* Small precisions keep the every-prefix loop short while groups
     * still cross the sparse/dense threshold. */
    check_laws(COL_N, 0, NULL, "precision: 6\n", 2000);
    check_laws(COL_S, 0, NULL, "precision: 8\n", 100);
    check_laws(COL_S, 1, by, "precision: 7\n", 3000);
    check_laws(COL_V, 1, by, "precision: 5\n", 500);
    check_laws(COL_TS, 2, by2, "precision: 4\n", 300);
    check_laws(COL_N, 1, by, NULL, 400);
}

static void test_selection(void **st)
{
    (void)st;
    rng_state = 12;
    int by[] = {COL_K};
    sf_agent_config cfg = make_cfg(COL_S, 1, by, "precision: 8\n");
    data d = data_new(2000);
    random_data(&d, 4, 700);
    data third = data_new(d.n / 3);
    uint32_t *sel = malloc(third.n * sizeof *sel);
    assert_non_null(sel);
    for (size_t i = 0; i < third.n; i++) {
        sel[i] = (uint32_t)(3 * i + 2);
        third.id[i] = d.id[3 * i + 2];
        third.null[i] = d.null[3 * i + 2];
        third.key[i] = d.key[3 * i + 2];
    }
    void *a = new_state(ops, &cfg), *b = new_state(ops, &cfg);
    sf_batch batch;
    fill(&batch, &d, 0, d.n);
    for (size_t at = 0; at < third.n; at += 50) {
        sf_rows rows = {0, third.n - at < 50 ? third.n - at : 50, sel + at, SF_ROWS_NO_SHARD};
        assert_int_equal(ops->process(a, &batch, &rows), SF_OK);
    }
    sf_batch_fini(&batch);
    feed(b, &third, 97);
    assert_same_state(ops, a, b);
    free(sel);
    free_state(ops, a);
    free_state(ops, b);
    data_free(&d);
    data_free(&third);
    yaml_cfg_free(&cfg);
}

/* ---- grouped results against per-group references -------------------------------- */

static void test_grouped_vs_ungrouped(void **st)
{
    (void)st;
    rng_state = 31;
    int by[] = {COL_K};
    sf_agent_config gcfg = make_cfg(COL_S, 1, by, "precision: 11\n");
    sf_agent_config ucfg = make_cfg(COL_S, 0, NULL, "precision: 11\n");
    data d = data_new(20000);
    random_data(&d, 5, 5000);
    void *g = new_state(ops, &gcfg);
    feed(g, &d, 1000);
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
            sub.id[m] = d.id[i];
            sub.null[m] = d.null[i];
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
        const char *names[] = {"distinct", "rows", "count"};
        for (int i = 0; i < 3; i++) {
            double a, w;
            assert_int_equal(ops->stat(g, key, len, names[i], &a), SF_OK);
            assert_int_equal(ops->stat(u, NULL, 0, names[i], &w), SF_OK);
            assert_true(a == w);
        }
        /* And the group's estimate is near its exact count. */
        double a;
        assert_int_equal(ops->stat(g, key, len, "distinct", &a), SF_OK);
        double exact = (double)exact_distinct(&sub);
        assert_true(fabs(a - exact) <= 3.0 * 1.04 / sqrt(2048.0) * exact + 0.5);
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
    /* The whole state is the union of the groups: every row in one state. */
    void *u = new_state(ops, &ucfg);
    feed(u, &d, 999);
    const char *names[] = {"distinct", "rows", "count"};
    for (int i = 0; i < 3; i++) assert_true(stat_of(ops, g, names[i]) == stat_of(ops, u, names[i]));
    double x;
    assert_int_equal(ops->stat(g, NULL, 0, "q:0.5", &x), SF_ERR_ARG);
    uint8_t nokey[] = {1, 1, 0, 0, 0, 'z'};
    assert_int_equal(ops->stat(g, nokey, sizeof nokey, "distinct", &x), SF_ERR_ARG);
    free_state(ops, u);
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
    expect_config_error(COL_S, "precision: 3\n", "test.yaml:1: agent 'users': option 'precision'", "[4, 18]");
    expect_config_error(COL_S, "\nprecision: 19\n", "test.yaml:2: agent 'users': option 'precision'", "19");
    expect_config_error(COL_S, "precision: high\n", "option 'precision'", "high");
    expect_config_error(COL_S, "p: 12\n", "test.yaml:1: agent 'users': unknown option 'p'", NULL);
    expect_config_error(-1, NULL, "column", "required");
    sf_agent_config cfg = make_cfg(COL_N, 0, NULL, NULL);
    sf_agent_prior prior = {"s1.u", ops, &cfg, NULL};
    cfg.nbaseline = 1;
    cfg.baseline = &prior;
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "baseline"));
    /* Every column type is accepted. */
    for (int c = 0; c < NCOLS; c++) {
        sf_agent_config ok = make_cfg(c, 0, NULL, NULL);
        assert_int_equal(ops->check(&ok), SF_OK);
    }
}

/* An optional argument runs only the tests whose names match it. */
int main(int argc, char **argv)
{
    if (argc > 1) cmocka_set_test_filter(argv[1]);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hash_definition),
        cmocka_unit_test(test_report),
        cmocka_unit_test(test_accuracy),
        cmocka_unit_test(test_sparse_threshold),
        cmocka_unit_test(test_sparse_dense_equivalence),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_selection),
        cmocka_unit_test(test_grouped_vs_ungrouped),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
