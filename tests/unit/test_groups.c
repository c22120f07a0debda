/* Group tables (agents/groups.h) and canonical row keys (sf_agent_row_key,
 * sf_agent_key_text, sf_agent_key_valid). Keys are rebuilt in the test from
 * the documented layout, group indices come from a naive linear search over
 * those keys, orders from qsort over them, printed keys from the test's own
 * formatting (gmtime_r for timestamps); the dictionary-code cache is
 * checked against the generic hashed path over batches whose dictionaries
 * hold the same strings under different codes. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shardflow/agent.h"
#include "shardflow/batch.h"
#include "shardflow/buf.h"

#include "agents/groups.h"

/* ---------------------------------------------------------------------------
 * Schema, rows, batches */

enum { C_S, C_I, C_F, C_T, C_S2, NCOLS };
static const char *const col_names[NCOLS] = {"s", "i", "f", "t", "s2"};
static const sf_type col_types[NCOLS] = {SF_STRING, SF_INT64, SF_FLOAT64, SF_TIMESTAMP, SF_STRING};
static sf_schema schema;

#define T0_US (INT64_C(1709251200) * INT64_C(1000000)) /* 2024-03-01T00:00:00Z */

typedef struct str {
    const char *p; /* NULL: null */
    size_t n;
} str;

typedef struct row {
    str s, s2;
    int64_t i;
    double f;
    int64_t t;
    bool i_null, f_null, t_null;
} row;

#define S(lit) {lit, sizeof(lit) - 1}
static const str spool[] = {S("a"),  S("b"),  S(""),   S("a|"), S("|b"),     S("\\"), S("\\N"),
                            S("N"),  S("x\0y"), S("\xff"), S("ab"), S("|"), S("a\\|b")};
#define NSPOOL (sizeof spool / sizeof spool[0])

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

static uint64_t to_bits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

#define CANON_NAN UINT64_C(0x7FF8000000000000)

static double pick_double(void)
{
    static const uint64_t nans[] = {UINT64_C(0x7FF8000000000000), UINT64_C(0xFFF8000000000000),
                                    UINT64_C(0x7FF0000000000001), UINT64_C(0x7FF4000000000000),
                                    UINT64_C(0xFFF0000000000ABC)};
    static const double vals[] = {0.0, 1.5, -1.5, 1e-310, DBL_MAX, -DBL_MAX, 0.1, 2.0};
    switch (rnd() % 8) {
    case 0: return from_bits(nans[rnd() % 5]);
    case 1: return -0.0;
    case 2: return rnd() % 2 ? INFINITY : -INFINITY;
    default: return vals[rnd() % (sizeof vals / sizeof vals[0])];
    }
}

static int64_t pick_int(void)
{
    static const int64_t v[] = {-1, 0, 1, INT64_MIN, INT64_MAX, 255, 256, 65536};
    return v[rnd() % (sizeof v / sizeof v[0])];
}

static int64_t pick_time(void)
{
    static const int64_t v[] = {-500000, 0, T0_US, T0_US + 1, T0_US + 500000, T0_US + 86399 * INT64_C(1000000)};
    return v[rnd() % (sizeof v / sizeof v[0])];
}

static row *make_rows(size_t n, unsigned pnull)
{
    row *rows = calloc(n ? n : 1, sizeof *rows);
    assert_non_null(rows);
    for (size_t r = 0; r < n; r++) {
        row *w = &rows[r];
        w->s = spool[rnd() % NSPOOL];
        w->s2 = spool[rnd() % NSPOOL];
        w->i = pick_int();
        w->f = pick_double();
        w->t = pick_time();
        if (rnd() % 100 < pnull) w->s.p = NULL;
        if (rnd() % 100 < pnull) w->s2.p = NULL;
        w->i_null = rnd() % 100 < pnull;
        w->f_null = rnd() % 100 < pnull;
        w->t_null = rnd() % 100 < pnull;
    }
    return rows;
}

/* Interns the pool (and strings no row uses) in a random order, so each
 * batch gives the same strings different codes. */
static void seed_dict(sf_dict *d)
{
    size_t order[NSPOOL];
    for (size_t k = 0; k < NSPOOL; k++) order[k] = k;
    for (size_t k = NSPOOL; k > 1; k--) {
        size_t j = rnd() % k, tmp = order[k - 1];
        order[k - 1] = order[j];
        order[j] = tmp;
    }
    uint32_t code;
    for (unsigned u = 0; u < rnd() % 4; u++) {
        char junk[16];
        int len = snprintf(junk, sizeof junk, "unused%u", u);
        assert_int_equal(sf_dict_intern(d, junk, (size_t)len, &code), SF_OK);
    }
    for (size_t k = 0; k < NSPOOL; k++)
        if (rnd() % 3 != 0) assert_int_equal(sf_dict_intern(d, spool[order[k]].p, spool[order[k]].n, &code), SF_OK);
}

static void put_str(sf_batch *b, int c, size_t r, str s)
{
    if (s.p == NULL) {
        assert_int_equal(sf_batch_set_null(b, c, r), SF_OK);
        return;
    }
    uint32_t code;
    assert_int_equal(sf_dict_intern(&b->cols[c].dict, s.p, s.n, &code), SF_OK);
    b->cols[c].code[r] = code;
}

/* Fills an initialised (or cleared) batch with rows. */
static void fill(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_reserve(b, n ? n : 1), SF_OK);
    seed_dict(&b->cols[C_S].dict);
    seed_dict(&b->cols[C_S2].dict);
    for (size_t r = 0; r < n; r++) {
        const row *w = &rows[r];
        b->cols[C_I].i64[r] = w->i;
        b->cols[C_F].f64[r] = w->f;
        b->cols[C_T].i64[r] = w->t;
        put_str(b, C_S, r, w->s);
        put_str(b, C_S2, r, w->s2);
        if (w->i_null) assert_int_equal(sf_batch_set_null(b, C_I, r), SF_OK);
        if (w->f_null) assert_int_equal(sf_batch_set_null(b, C_F, r), SF_OK);
        if (w->t_null) assert_int_equal(sf_batch_set_null(b, C_T, r), SF_OK);
    }
    b->nrows = n;
}

static void make_batch(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    fill(b, rows, n);
}

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    for (int c = 0; c < NCOLS; c++)
        if (sf_schema_add(&schema, col_names[c], col_types[c]) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* ---------------------------------------------------------------------------
 * Reference keys, written from the layout in shardflow/agent.h */

#define MAXKEY 256

typedef struct rkey {
    uint8_t b[MAXKEY];
    size_t n;
} rkey;

static void put_le64(rkey *k, uint64_t v)
{
    for (int i = 0; i < 8; i++) k->b[k->n++] = (uint8_t)(v >> (8 * i));
}

static void ref_key(const row *w, const int *by, int nby, rkey *k)
{
    k->n = 0;
    for (int j = 0; j < nby; j++) {
        int c = by[j];
        bool null = c == C_S ? w->s.p == NULL : c == C_S2 ? w->s2.p == NULL : c == C_I ? w->i_null
                                                             : c == C_F ? w->f_null : w->t_null;
        if (null) {
            k->b[k->n++] = 0;
            continue;
        }
        k->b[k->n++] = 1;
        if (c == C_S || c == C_S2) {
            str s = c == C_S ? w->s : w->s2;
            for (int i = 0; i < 4; i++) k->b[k->n++] = (uint8_t)((uint32_t)s.n >> (8 * i));
            memcpy(k->b + k->n, s.p, s.n);
            k->n += s.n;
        } else if (c == C_F) {
            uint64_t bits = to_bits(w->f);
            if (w->f != w->f) bits = CANON_NAN;
            else if (w->f == 0.0) bits = 0;
            put_le64(k, bits);
        } else {
            put_le64(k, (uint64_t)(c == C_I ? w->i : w->t));
        }
    }
    assert_true(k->n <= MAXKEY);
}

/* Naive group list: index of k by linear search, appended if new. */
typedef struct naive {
    rkey *keys;
    size_t n, cap;
} naive;

static uint32_t naive_index(naive *nv, const rkey *k, bool *created)
{
    for (size_t i = 0; i < nv->n; i++)
        if (nv->keys[i].n == k->n && memcmp(nv->keys[i].b, k->b, k->n) == 0) {
            *created = false;
            return (uint32_t)i;
        }
    if (nv->n == nv->cap) {
        nv->cap = nv->cap ? 2 * nv->cap : 64;
        nv->keys = realloc(nv->keys, nv->cap * sizeof *nv->keys);
        assert_non_null(nv->keys);
    }
    nv->keys[nv->n] = *k;
    *created = true;
    return (uint32_t)nv->n++;
}

static void expect_same_table(const sf__groups *g, const naive *nv)
{
    assert_int_equal(g->n, nv->n);
    for (uint32_t i = 0; i < g->n; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(g, i, &len);
        assert_int_equal(len, nv->keys[i].n);
        if (len) assert_memory_equal(k, nv->keys[i].b, len);
        assert_int_equal(sf__groups_lookup(g, nv->keys[i].b, nv->keys[i].n), i);
    }
}

static const int by_sets[][3] = {{C_S}, {C_I}, {C_F}, {C_T}, {C_S, C_I}, {C_I, C_S, C_F}, {C_S, C_S2}, {C_T, C_F, C_S2}};
static const int by_n[] = {1, 1, 1, 1, 2, 3, 2, 3};
#define NBYSETS (sizeof by_n / sizeof by_n[0])

/* ---------------------------------------------------------------------------
 * Keys */

static void test_row_key_bytes(void **st)
{
    (void)st;
    rng_state = 1;
    row *rows = make_rows(400, 15);
    sf_batch b;
    make_batch(&b, rows, 400);
    uint8_t *key = NULL;
    size_t cap = 0;
    for (size_t s = 0; s < NBYSETS; s++)
        for (size_t r = 0; r < 400; r++) {
            rkey want;
            ref_key(&rows[r], by_sets[s], by_n[s], &want);
            size_t len = 999;
            assert_int_equal(sf_agent_row_key(&b, by_sets[s], by_n[s], r, &key, &cap, &len), SF_OK);
            assert_int_equal(len, want.n);
            assert_memory_equal(key, want.b, len);
            assert_true(cap >= len);
            assert_true(sf_agent_key_valid(&schema, by_sets[s], by_n[s], key, len));
        }
    /* No key columns: the empty key. */
    size_t len = 999;
    assert_int_equal(sf_agent_row_key(&b, NULL, 0, 0, &key, &cap, &len), SF_OK);
    assert_int_equal(len, 0);
    free(key);
    sf_batch_fini(&b);
    free(rows);
}

/* ---------------------------------------------------------------------------
 * First-appearance order, cache path and generic path */

/* Feeds batches of rows into g (through sf__groups_batch/row, so the code
 * cache is used for a single string key) and checks every index against
 * the naive list. The batch is reused and cleared between morsels, as a
 * reader reuses it, so stale dictionary codes would show. */
static void feed_and_check(sf__groups *g, naive *nv, sf_batch *b, const int *by, int nby, uint64_t seed,
                           int nbatches, size_t nrows, unsigned pnull, bool call_batch)
{
    rng_state = seed;
    for (int k = 0; k < nbatches; k++) {
        row *rows = make_rows(nrows, k % 3 == 0 ? 0 : pnull); /* some batches have no nulls */
        sf_batch_clear(b);
        fill(b, rows, nrows);
        if (call_batch) assert_int_equal(sf__groups_batch(g, b), SF_OK);
        for (size_t r = 0; r < nrows; r++) {
            rkey want;
            ref_key(&rows[r], by, nby, &want);
            bool want_created = false;
            uint32_t want_idx = naive_index(nv, &want, &want_created);
            uint32_t idx = SF__NO_GROUP;
            bool created = !want_created;
            assert_int_equal(sf__groups_row(g, b, r, &idx, &created), SF_OK);
            if (idx != want_idx)
                fail_msg("batch %d row %zu: group %u, expected %u (nby %d)", k, r, idx, want_idx, nby);
            assert_true(created == want_created);
        }
        free(rows);
    }
}

static void test_first_appearance_order(void **st)
{
    (void)st;
    for (size_t s = 0; s < NBYSETS; s++) {
        sf__groups g;
        assert_int_equal(sf__groups_init(&g, &schema, by_sets[s], by_n[s]), SF_OK);
        naive nv = {0};
        sf_batch b;
        assert_int_equal(sf_batch_init(&b, &schema, NULL, 64), SF_OK);
        feed_and_check(&g, &nv, &b, by_sets[s], by_n[s], 10 + s, 6, 300, 20, true);
        expect_same_table(&g, &nv);
        /* Absent keys are not found, and lookups do not create groups. */
        rkey absent;
        row w = {.s = S("never"), .s2 = S("never"), .i = 12345, .f = 3.25, .t = 42};
        ref_key(&w, by_sets[s], by_n[s], &absent);
        uint32_t n = g.n;
        assert_int_equal(sf__groups_lookup(&g, absent.b, absent.n), SF__NO_GROUP);
        assert_int_equal(g.n, n);
        /* find() of an existing key returns it; of a new key creates the next index. */
        uint32_t idx;
        bool created = true;
        assert_int_equal(sf__groups_find(&g, nv.keys[0].b, nv.keys[0].n, &idx, &created), SF_OK);
        assert_int_equal(idx, 0);
        assert_false(created);
        assert_int_equal(sf__groups_find(&g, absent.b, absent.n, &idx, &created), SF_OK);
        assert_int_equal(idx, n);
        assert_true(created);
        assert_int_equal(sf__groups_find(&g, absent.b, absent.n, &idx, NULL), SF_OK);
        assert_int_equal(idx, n);
        /* clear forgets every group and keeps working. */
        assert_int_equal(sf__groups_clear(&g), SF_OK);
        assert_int_equal(g.n, 0);
        assert_int_equal(sf__groups_lookup(&g, nv.keys[0].b, nv.keys[0].n), SF__NO_GROUP);
        naive nv2 = {0};
        feed_and_check(&g, &nv2, &b, by_sets[s], by_n[s], 50 + s, 2, 200, 20, true);
        expect_same_table(&g, &nv2);
        free(nv.keys);
        free(nv2.keys);
        sf_batch_fini(&b);
        sf__groups_fini(&g);
    }
}

/* Enough groups to grow the key store and rehash the slots many times. */
static void test_many_groups(void **st)
{
    (void)st;
    static const int by[] = {C_I, C_S};
    sf__groups g;
    assert_int_equal(sf__groups_init(&g, &schema, by, 2), SF_OK);
    naive nv = {0};
    rng_state = 99;
    size_t n = 6000;
    row *rows = make_rows(n, 5);
    for (size_t r = 0; r < n; r++) rows[r].i = (int64_t)(rnd() % 2500) - 1000; /* repeats and new ones */
    sf_batch b;
    make_batch(&b, rows, n);
    assert_int_equal(sf__groups_batch(&g, &b), SF_OK);
    for (size_t r = 0; r < n; r++) {
        rkey want;
        ref_key(&rows[r], by, 2, &want);
        bool want_created, created;
        uint32_t want_idx = naive_index(&nv, &want, &want_created), idx;
        assert_int_equal(sf__groups_row(&g, &b, r, &idx, &created), SF_OK);
        assert_int_equal(idx, want_idx);
        assert_true(created == want_created);
    }
    assert_true(g.n > 1000);
    expect_same_table(&g, &nv);
    free(nv.keys);
    free(rows);
    sf_batch_fini(&b);
    sf__groups_fini(&g);
}

/* A single string key: the code cache (sf__groups_batch + row) gives the
 * same groups as the hashed path over the row's key bytes, batch after
 * batch, on one reused batch whose dictionary codes change each time. */
static void test_cache_matches_generic(void **st)
{
    (void)st;
    static const int by[] = {C_S};
    sf__groups cached, plain, nobatch;
    assert_int_equal(sf__groups_init(&cached, &schema, by, 1), SF_OK);
    assert_int_equal(sf__groups_init(&plain, &schema, by, 1), SF_OK);
    assert_int_equal(sf__groups_init(&nobatch, &schema, by, 1), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &schema, NULL, 16), SF_OK);
    uint8_t *key = NULL;
    size_t cap = 0;
    rng_state = 321;
    for (int k = 0; k < 12; k++) {
        size_t n = 50 + (size_t)(rnd() % 200);
        row *rows = make_rows(n, k % 2 ? 25 : 0);
        sf_batch_clear(&b);
        fill(&b, rows, n);
        assert_int_equal(sf__groups_batch(&cached, &b), SF_OK);
        for (size_t r = 0; r < n; r++) {
            uint32_t a, p, q;
            bool ca, cp;
            assert_int_equal(sf__groups_row(&cached, &b, r, &a, &ca), SF_OK);
            size_t len;
            assert_int_equal(sf_agent_row_key(&b, by, 1, r, &key, &cap, &len), SF_OK);
            assert_int_equal(sf__groups_find(&plain, key, len, &p, &cp), SF_OK);
            /* Without sf__groups_batch the table takes the hashed path. */
            assert_int_equal(sf__groups_row(&nobatch, &b, r, &q, NULL), SF_OK);
            if (a != p) fail_msg("batch %d row %zu: cached group %u, hashed group %u", k, r, a, p);
            assert_true(ca == cp);
            assert_int_equal(q, p);
        }
        free(rows);
    }
    assert_int_equal(cached.n, plain.n);
    for (uint32_t i = 0; i < cached.n; i++) {
        size_t la, lp;
        const uint8_t *ka = sf__groups_key(&cached, i, &la), *kp = sf__groups_key(&plain, i, &lp);
        assert_int_equal(la, lp);
        if (la) assert_memory_equal(ka, kp, la);
    }
    free(key);
    sf_batch_fini(&b);
    sf__groups_fini(&cached);
    sf__groups_fini(&plain);
    sf__groups_fini(&nobatch);
}

/* One int64 key column takes a dense map from small non-negative values to
 * groups (agents/groups.c) besides the hash table. Values it cannot cover
 * yet (above its bound while the table is small), negative and huge ones,
 * nulls, values that get covered only later (and must then be found,
 * not created again), and a clear in between: every row's group must be
 * the one sf__groups_find gives its key in a table fed the same rows, and
 * sf__groups_row (which does not use the map) must agree. */
static void test_dense_int_keys(void **st)
{
    (void)st;
    static const int by[] = {C_I};
    uint8_t *key = NULL;
    size_t cap = 0;
    rng_state = 9090;
    sf__groups fast, plain;
    assert_int_equal(sf__groups_init(&fast, &schema, by, 1), SF_OK);
    assert_int_equal(sf__groups_init(&plain, &schema, by, 1), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &schema, NULL, 16), SF_OK);
    for (int k = 0; k < 14; k++) {
        if (k == 9) {
            /* By now the map covers the values above its first bound. */
            assert_true(fast.dense_cap > 100049);
            assert_int_equal(sf__groups_clear(&fast), SF_OK);
            assert_int_equal(sf__groups_clear(&plain), SF_OK);
        }
        size_t n = 500 + (size_t)(rnd() % 4000);
        row *rows = make_rows(n, k % 3 == 1 ? 10 : 0);
        for (size_t r = 0; r < n; r++) {
            uint64_t u = rnd() % 100;
            if (k == 0 || k == 9) rows[r].i = 100000 + (int64_t)(rnd() % 50); /* above the bound at first */
            else if (u < 60) rows[r].i = (int64_t)(rnd() % 60000);
            else if (u < 75) rows[r].i = 100000 + (int64_t)(rnd() % 50);      /* covered once the table grew */
            else if (u < 85) rows[r].i = -(int64_t)(rnd() % 1000) - 1;
            else if (u < 92) rows[r].i = INT64_MAX - (int64_t)(rnd() % 10);
            else rows[r].i = (int64_t)(rnd() % 16);
        }
        sf_batch_clear(&b);
        fill(&b, rows, n);
        assert_int_equal(sf__groups_batch(&fast, &b), SF_OK);
        const uint32_t *idx;
        bool created;
        sf_rows all = {0, n, NULL, SF_ROWS_NO_SHARD};
        assert_int_equal(sf__groups_rows(&fast, &b, &all, &idx, &created), SF_OK);
        for (size_t r = 0; r < n; r++) {
            size_t len;
            uint32_t p, q;
            assert_int_equal(sf_agent_row_key(&b, by, 1, r, &key, &cap, &len), SF_OK);
            assert_int_equal(sf__groups_find(&plain, key, len, &p, NULL), SF_OK);
            if (idx[r] != p) fail_msg("batch %d row %zu (value %" PRId64 "): group %u, find gives %u", k, r, rows[r].i, idx[r], p);
            assert_int_equal(sf__groups_row(&fast, &b, r, &q, NULL), SF_OK);
            assert_int_equal(q, p);
        }
        assert_int_equal(fast.n, plain.n);
        free(rows);
    }
    sf_batch_fini(&b);
    sf__groups_fini(&fast);
    sf__groups_fini(&plain);
    free(key);
}

/* The code cache is kept from one batch to the next when the key columns'
 * dictionaries are equal (same strings under the same codes), and started
 * afresh otherwise: a batch with the same strings in another order, one
 * with a string changed in place (same lengths, other bytes), one with a
 * string more, and batches after sf__groups_clear (which re-creates the
 * groups in another order, so that a stale cache would name the wrong
 * ones). Every row's group must be the one sf__groups_find gives its key
 * in a table fed the same rows, for one and for two string key columns,
 * through sf__groups_rows and sf__groups_row. */
static void kept_fill(sf_batch *b, const char *const *dict, size_t nd, const char *const *dict2, size_t nd2,
                      size_t n)
{
    sf_batch_clear(b);
    assert_int_equal(sf_batch_reserve(b, n), SF_OK);
    uint32_t code;
    for (size_t k = 0; k < nd; k++) {
        assert_int_equal(sf_dict_intern(&b->cols[C_S].dict, dict[k], strlen(dict[k]), &code), SF_OK);
        assert_int_equal(code, k);
    }
    for (size_t k = 0; k < nd2; k++) {
        assert_int_equal(sf_dict_intern(&b->cols[C_S2].dict, dict2[k], strlen(dict2[k]), &code), SF_OK);
        assert_int_equal(code, k);
    }
    for (size_t r = 0; r < n; r++) {
        b->cols[C_S].code[r] = (uint32_t)(rnd() % nd);
        b->cols[C_S2].code[r] = (uint32_t)(rnd() % nd2);
        b->cols[C_I].i64[r] = 0;
        b->cols[C_F].f64[r] = 0;
        b->cols[C_T].i64[r] = 0;
    }
    b->nrows = n;
}

static void test_cache_kept_across_equal_dicts(void **st)
{
    (void)st;
    static const char *const d_a[] = {"eu", "us", "ap", "sa"};
    static const char *const d_perm[] = {"us", "eu", "sa", "ap"};     /* same strings, other codes */
    static const char *const d_changed[] = {"eu", "su", "ap", "sa"};  /* "us" -> "su" in place */
    static const char *const d_more[] = {"eu", "us", "ap", "sa", "af"};
    static const char *const d_x[] = {"x", "y"};
    static const char *const d_y[] = {"y", "x"};
    struct step { const char *const *d; size_t nd; const char *const *d2; size_t nd2; bool clear; } steps[] = {
        {d_a, 4, d_x, 2, false},     {d_a, 4, d_x, 2, false},    {d_perm, 4, d_x, 2, false},
        {d_perm, 4, d_x, 2, false},  {d_changed, 4, d_x, 2, false}, {d_a, 4, d_y, 2, false},
        {d_a, 4, d_y, 2, false},     {d_more, 5, d_y, 2, false}, {d_a, 4, d_x, 2, false},
        {d_perm, 4, d_y, 2, true},   {d_a, 4, d_x, 2, false},    {d_a, 4, d_x, 2, true},
        {d_a, 4, d_x, 2, false},
    };
    static const int one[] = {C_S}, two[] = {C_S, C_S2};
    uint8_t *key = NULL;
    size_t cap = 0;
    rng_state = 77;
    for (int shape = 0; shape < 2; shape++) {
        const int *by = shape ? two : one;
        int nby = shape ? 2 : 1;
        sf__groups fast, plain;
        assert_int_equal(sf__groups_init(&fast, &schema, by, nby), SF_OK);
        assert_int_equal(sf__groups_init(&plain, &schema, by, nby), SF_OK);
        sf_batch b;
        assert_int_equal(sf_batch_init(&b, &schema, NULL, 16), SF_OK);
        for (size_t k = 0; k < sizeof steps / sizeof steps[0]; k++) {
            if (steps[k].clear) {
                assert_int_equal(sf__groups_clear(&fast), SF_OK);
                assert_int_equal(sf__groups_clear(&plain), SF_OK);
            }
            size_t n = 40 + (size_t)(rnd() % 60);
            kept_fill(&b, steps[k].d, steps[k].nd, steps[k].d2, steps[k].nd2, n);
            assert_int_equal(sf__groups_batch(&fast, &b), SF_OK);
            const uint32_t *idx;
            bool created;
            sf_rows all = {0, n, NULL, SF_ROWS_NO_SHARD};
            /* After a clear the first row of the batch comes first, so
             * groups are numbered in another order than before. */
            if (steps[k].clear) {
                uint32_t g0;
                assert_int_equal(sf__groups_row(&fast, &b, n - 1, &g0, NULL), SF_OK);
                size_t len;
                uint32_t p;
                assert_int_equal(sf_agent_row_key(&b, by, nby, n - 1, &key, &cap, &len), SF_OK);
                assert_int_equal(sf__groups_find(&plain, key, len, &p, NULL), SF_OK);
                assert_int_equal(g0, p);
            }
            assert_int_equal(sf__groups_rows(&fast, &b, &all, &idx, &created), SF_OK);
            for (size_t r = 0; r < n; r++) {
                size_t len;
                uint32_t p, q;
                assert_int_equal(sf_agent_row_key(&b, by, nby, r, &key, &cap, &len), SF_OK);
                assert_int_equal(sf__groups_find(&plain, key, len, &p, NULL), SF_OK);
                if (idx[r] != p) fail_msg("shape %d step %zu row %zu: group %u, find gives %u", shape, k, r, idx[r], p);
                assert_int_equal(sf__groups_row(&fast, &b, r, &q, NULL), SF_OK);
                assert_int_equal(q, p);
            }
        }
        assert_int_equal(fast.n, plain.n);
        sf_batch_fini(&b);
        sf__groups_fini(&fast);
        sf__groups_fini(&plain);
    }
    free(key);
}

/* sf__groups_rows (the whole call at once, with its cached and direct
 * paths) must give every row the group that sf__groups_find gives the
 * row's canonical key in a table fed the same rows in the same order:
 * for every key shape (one string, two and three strings, one integer,
 * one double, a string and a number), with and without nulls, with a
 * selection, with few and with many groups (the numeric path drops its
 * value cache past 4096 groups), batch after batch on one reused batch. */
static void test_rows_match_find(void **st)
{
    (void)st;
    static const int shapes[][3] = {{C_S, -1, -1}, {C_S, C_S2, -1}, {C_S, C_S2, C_S}, {C_I, -1, -1},
                                    {C_F, -1, -1}, {C_S, C_I, -1}, {C_T, -1, -1}};
    static const int nshape[] = {1, 2, 3, 1, 1, 2, 1};
    uint8_t *key = NULL;
    size_t cap = 0;
    uint32_t *sel = NULL;
    rng_state = 4242;
    for (size_t sh = 0; sh < sizeof nshape / sizeof nshape[0]; sh++) {
        for (int many = 0; many < 2; many++) {
            sf__groups fast, plain;
            assert_int_equal(sf__groups_init(&fast, &schema, shapes[sh], nshape[sh]), SF_OK);
            assert_int_equal(sf__groups_init(&plain, &schema, shapes[sh], nshape[sh]), SF_OK);
            sf_batch b;
            assert_int_equal(sf_batch_init(&b, &schema, NULL, 16), SF_OK);
            for (int k = 0; k < 10; k++) {
                size_t n = 300 + (size_t)(rnd() % 3000);
                row *rows = make_rows(n, k % 3 == 0 ? 20 : 0);
                if (many)
                    for (size_t r = 0; r < n; r++) {
                        rows[r].i = (int64_t)(rnd() % 20000);
                        rows[r].f = (double)(rnd() % 20000) * 0.25;
                        rows[r].t = (int64_t)(rnd() % 20000) * 1000;
                    }
                sf_batch_clear(&b);
                fill(&b, rows, n);
                sel = realloc(sel, n * sizeof *sel);
                size_t nsel = 0;
                for (size_t r = 0; r < n; r++)
                    if (rnd() % 3 != 0) sel[nsel++] = (uint32_t)r;
                sf_rows all = {k % 2 ? 0 : 7, n - (k % 2 ? 0 : 7), NULL, SF_ROWS_NO_SHARD}, some = {0, nsel, sel, SF_ROWS_NO_SHARD};
                const sf_rows *rs = k % 4 == 3 ? &some : &all;
                assert_int_equal(sf__groups_batch(&fast, &b), SF_OK);
                const uint32_t *idx;
                bool created;
                uint32_t before = fast.n;
                assert_int_equal(sf__groups_rows(&fast, &b, rs, &idx, &created), SF_OK);
                assert_true(created == (fast.n > before));
                for (size_t i = 0; i < rs->n; i++) {
                    size_t r = sf_rows_at(rs, i), len;
                    uint32_t p;
                    assert_int_equal(sf_agent_row_key(&b, shapes[sh], nshape[sh], r, &key, &cap, &len), SF_OK);
                    assert_int_equal(sf__groups_find(&plain, key, len, &p, NULL), SF_OK);
                    if (idx[i] != p) fail_msg("shape %zu batch %d row %zu: group %u, find gives %u", sh, k, r, idx[i], p);
                    /* The fast table finds its own groups by key bytes, too. */
                    assert_int_equal(sf__groups_lookup(&fast, key, len), p);
                }
                free(rows);
            }
            assert_int_equal(fast.n, plain.n);
            if (many && shapes[sh][0] != C_S) assert_true(fast.n > 4096);
            sf_batch_fini(&b);
            sf__groups_fini(&fast);
            sf__groups_fini(&plain);
        }
    }
    free(sel);
    free(key);
}

/* sf__groups_find_all (merges) against sf__groups_find of each key in
 * turn: the same groups for every key, created in the same order, for
 * numeric (null key included), string and composite keys, all of a
 * table's groups or a subset, into empty tables and into tables that
 * already hold part of the keys, small and past several rehashes. */
static void test_find_all_matches_find(void **st)
{
    (void)st;
    static const int shapes[][2] = {{C_I, -1}, {C_F, -1}, {C_S, -1}, {C_S, C_I}, {C_T, -1}};
    static const int nshape[] = {1, 1, 1, 2, 1};
    uint8_t *key = NULL;
    size_t cap = 0;
    rng_state = 777;
    for (size_t sh = 0; sh < sizeof nshape / sizeof nshape[0]; sh++) {
        for (int trial = 0; trial < 6; trial++) {
            sf__groups src, fast, plain;
            assert_int_equal(sf__groups_init(&src, &schema, shapes[sh], nshape[sh]), SF_OK);
            assert_int_equal(sf__groups_init(&fast, &schema, shapes[sh], nshape[sh]), SF_OK);
            assert_int_equal(sf__groups_init(&plain, &schema, shapes[sh], nshape[sh]), SF_OK);
            sf_batch b;
            assert_int_equal(sf_batch_init(&b, &schema, NULL, 16), SF_OK);
            /* Prior contents of the target (trials 2..5), then the source. */
            for (int part = trial < 2 ? 1 : 0; part < 2; part++) {
                size_t n = trial % 2 ? 20000 : 200;
                row *rows = make_rows(n, 10);
                for (size_t r = 0; r < n; r++) {
                    rows[r].i = (int64_t)(rnd() % (3 * n));
                    rows[r].f = (double)(rnd() % (3 * n)) * 0.5;
                    rows[r].t = (int64_t)(rnd() % (3 * n)) * 1000;
                }
                sf_batch_clear(&b);
                fill(&b, rows, n);
                for (size_t r = 0; r < n; r++) {
                    size_t len;
                    uint32_t g;
                    assert_int_equal(sf_agent_row_key(&b, shapes[sh], nshape[sh], r, &key, &cap, &len), SF_OK);
                    if (part == 0) {
                        assert_int_equal(sf__groups_find(&fast, key, len, &g, NULL), SF_OK);
                        assert_int_equal(sf__groups_find(&plain, key, len, &g, NULL), SF_OK);
                    } else {
                        assert_int_equal(sf__groups_find(&src, key, len, &g, NULL), SF_OK);
                    }
                }
                free(rows);
            }
            /* Every group, or every third (in order), of the source. */
            uint32_t *which = malloc((size_t)src.n * sizeof *which), *out = malloc((size_t)src.n * sizeof *out);
            assert_non_null(which);
            assert_non_null(out);
            size_t nw = 0;
            for (uint32_t j = 0; j < src.n; j++)
                if (trial % 3 != 2 || j % 3 == 0) which[nw++] = j;
            uint32_t before = fast.n;
            bool created = false;
            assert_int_equal(sf__groups_find_all(&fast, &src, trial % 3 == 2 ? which : NULL,
                                                 trial % 3 == 2 ? nw : src.n, out, &created), SF_OK);
            bool any = false;
            for (size_t i = 0; i < nw; i++) {
                size_t len;
                const uint8_t *k = sf__groups_key(&src, which[i], &len);
                uint32_t p;
                bool c;
                assert_int_equal(sf__groups_find(&plain, k, len, &p, &c), SF_OK);
                any = any || c;
                if (out[i] != p) fail_msg("shape %zu trial %d key %zu: group %u, find gives %u", sh, trial, i, out[i], p);
            }
            assert_true(created == any);
            assert_true(created == (fast.n > before));
            /* The two tables are the same: same keys under the same indices. */
            assert_int_equal(fast.n, plain.n);
            for (uint32_t g = 0; g < plain.n; g++) {
                size_t la, lb;
                const uint8_t *ka = sf__groups_key(&fast, g, &la), *kb = sf__groups_key(&plain, g, &lb);
                assert_int_equal(la, lb);
                assert_memory_equal(ka, kb, la);
                assert_int_equal(sf__groups_lookup(&fast, kb, lb), g);
            }
            free(which);
            free(out);
            sf_batch_fini(&b);
            sf__groups_fini(&src);
            sf__groups_fini(&fast);
            sf__groups_fini(&plain);
        }
    }
    free(key);
}

/* sf__groups_find_fixed against sf__groups_find of each key in turn, on
 * 12-byte keys with repeats, into empty and partly filled tables. */
static void test_find_fixed_matches_find(void **st)
{
    (void)st;
    rng_state = 99;
    for (int trial = 0; trial < 4; trial++) {
        sf__groups fast, plain;
        assert_int_equal(sf__groups_init(&fast, &schema, NULL, 0), SF_OK);
        assert_int_equal(sf__groups_init(&plain, &schema, NULL, 0), SF_OK);
        size_t n = trial % 2 ? 30000 : 100, range = trial < 2 ? n : n / 3;
        uint8_t *keys = malloc(n * 12);
        uint32_t *out = malloc(n * sizeof *out);
        assert_non_null(keys);
        assert_non_null(out);
        for (int part = 0; part < 2; part++) {
            for (size_t i = 0; i < n; i++) {
                uint64_t v = rnd() % (2 * range);
                memset(keys + i * 12, 0, 12);
                memcpy(keys + i * 12, &v, sizeof v);
                keys[i * 12 + 11] = (uint8_t)(v % 7);
            }
            if (part == 0 && trial % 2 == 0) {
                /* A first batch through find alone: the target is not empty. */
                for (size_t i = 0; i < n; i++) {
                    uint32_t g;
                    assert_int_equal(sf__groups_find(&fast, keys + i * 12, 12, &g, NULL), SF_OK);
                    assert_int_equal(sf__groups_find(&plain, keys + i * 12, 12, &g, NULL), SF_OK);
                }
                continue;
            }
            uint32_t before = fast.n;
            bool created = false, any = false;
            assert_int_equal(sf__groups_find_fixed(&fast, keys, 12, n, out, &created), SF_OK);
            for (size_t i = 0; i < n; i++) {
                uint32_t p;
                bool c;
                assert_int_equal(sf__groups_find(&plain, keys + i * 12, 12, &p, &c), SF_OK);
                any = any || c;
                if (out[i] != p) fail_msg("trial %d part %d key %zu: group %u, find gives %u", trial, part, i, out[i], p);
            }
            assert_true(created == any);
            assert_true(created == (fast.n > before));
        }
        assert_int_equal(fast.n, plain.n);
        free(keys);
        free(out);
        sf__groups_fini(&fast);
        sf__groups_fini(&plain);
    }
}

/* The cache generation wraps after 2^32 batches; entries of earlier
 * batches must not survive the wrap (white-box: the counter is set near
 * its end instead of running 2^32 batches). */
static void test_cache_generation_wrap(void **st)
{
    (void)st;
    static const int by[] = {C_S};
    sf__groups g;
    assert_int_equal(sf__groups_init(&g, &schema, by, 1), SF_OK);
    naive nv = {0};
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &schema, NULL, 16), SF_OK);
    /* Batch 1 caches every code at generation 1; batch 2 (generation
     * UINT32_MAX) only one code; batch 3 wraps to generation 1 again with a
     * different dictionary. */
    feed_and_check(&g, &nv, &b, by, 1, 1, 1, 200, 0, true);
    g.gen = UINT32_MAX - 1;
    feed_and_check(&g, &nv, &b, by, 1, 2, 1, 1, 0, true);
    assert_int_equal(g.gen, UINT32_MAX);
    feed_and_check(&g, &nv, &b, by, 1, 3, 1, 200, 10, true);
    assert_true(g.gen >= 1 && g.gen < 16);
    expect_same_table(&g, &nv);
    free(nv.keys);
    sf_batch_fini(&b);
    sf__groups_fini(&g);
}

/* ---------------------------------------------------------------------------
 * Nulls and float canonicalisation */

static void group_of_rows(const int *by, int nby, const row *rows, size_t n, uint32_t *idx, uint32_t *ngroups)
{
    sf__groups g;
    assert_int_equal(sf__groups_init(&g, &schema, by, nby), SF_OK);
    sf_batch b;
    make_batch(&b, rows, n);
    assert_int_equal(sf__groups_batch(&g, &b), SF_OK);
    for (size_t r = 0; r < n; r++) assert_int_equal(sf__groups_row(&g, &b, r, &idx[r], NULL), SF_OK);
    *ngroups = g.n;
    sf_batch_fini(&b);
    sf__groups_fini(&g);
}

static void test_null_keys(void **st)
{
    (void)st;
    /* A null is its own key: not the empty string, not 0. */
    row rows[6];
    memset(rows, 0, sizeof rows);
    rows[0].s = (str)S("");
    rows[1].s = (str){NULL, 0};
    rows[2].s = (str)S("");
    rows[3].s = (str){NULL, 0};
    rows[4].s = (str)S("\\N");
    rows[5].s = (str)S("N");
    rows[0].i = 0;
    rows[1].i_null = true;
    rows[2].i = 0;
    rows[3].i_null = true;
    rows[4].i = 0;
    rows[5].i_null = true;
    for (int k = 0; k < 6; k++) rows[k].s2 = rows[k].s;
    uint32_t idx[6], ng;
    static const int bs[] = {C_S}, bi[] = {C_I}, bsi[] = {C_S, C_I};
    group_of_rows(bs, 1, rows, 6, idx, &ng);
    assert_int_equal(ng, 4);
    assert_int_equal(idx[0], 0);
    assert_int_equal(idx[1], 1);
    assert_int_equal(idx[2], 0);
    assert_int_equal(idx[3], 1);
    assert_int_equal(idx[4], 2);
    assert_int_equal(idx[5], 3);
    group_of_rows(bi, 1, rows, 6, idx, &ng);
    assert_int_equal(ng, 2);
    assert_true(idx[0] == 0 && idx[1] == 1 && idx[2] == 0 && idx[3] == 1 && idx[4] == 0 && idx[5] == 1);
    group_of_rows(bsi, 2, rows, 6, idx, &ng);
    assert_int_equal(ng, 4); /* ("",0) (null,null) ("\N",0) ("N",null) */
    assert_true(idx[0] == 0 && idx[1] == 1 && idx[2] == 0 && idx[3] == 1 && idx[4] == 2 && idx[5] == 3);
    /* The null key is the single tag byte 0 per column. */
    sf_batch b;
    make_batch(&b, rows, 6);
    uint8_t *key = NULL;
    size_t cap = 0, len;
    assert_int_equal(sf_agent_row_key(&b, bsi, 2, 1, &key, &cap, &len), SF_OK);
    assert_int_equal(len, 2);
    assert_true(key[0] == 0 && key[1] == 0);
    free(key);
    sf_batch_fini(&b);
}

static void test_float_canonical(void **st)
{
    (void)st;
    static const uint64_t bits[] = {
        UINT64_C(0x0000000000000000), /* +0 */
        UINT64_C(0x8000000000000000), /* -0 */
        UINT64_C(0x7FF8000000000000), /* quiet NaN */
        UINT64_C(0xFFF8000000000000), /* negative NaN */
        UINT64_C(0x7FF0000000000001), /* signalling NaN */
        UINT64_C(0x7FFFFFFFFFFFFFFF), /* NaN, all payload bits */
        UINT64_C(0x7FF0000000000000), /* +inf */
        UINT64_C(0xFFF0000000000000), /* -inf */
        UINT64_C(0x0000000000000001), /* smallest subnormal */
        UINT64_C(0x8000000000000001), /* its negative */
    };
    enum { N = sizeof bits / sizeof bits[0] };
    row rows[N];
    memset(rows, 0, sizeof rows);
    for (int k = 0; k < N; k++) rows[k].f = from_bits(bits[k]);
    static const int bf[] = {C_F};
    uint32_t idx[N], ng;
    group_of_rows(bf, 1, rows, N, idx, &ng);
    static const uint32_t want[N] = {0, 0, 1, 1, 1, 1, 2, 3, 4, 5};
    assert_int_equal(ng, 6);
    for (int k = 0; k < N; k++) assert_int_equal(idx[k], want[k]);
    sf_batch b;
    make_batch(&b, rows, N);
    uint8_t *key = NULL;
    size_t cap = 0, len;
    for (int k = 0; k < N; k++) {
        assert_int_equal(sf_agent_row_key(&b, bf, 1, (size_t)k, &key, &cap, &len), SF_OK);
        assert_int_equal(len, 9);
        assert_int_equal(key[0], 1);
        uint64_t canon = k < 2 ? 0 : k < 6 ? CANON_NAN : bits[k];
        assert_true(sf_load_u64(key + 1) == canon);
    }
    free(key);
    sf_batch_fini(&b);
}

/* ---------------------------------------------------------------------------
 * Orders */

static int rkey_cmp(const void *x, const void *y)
{
    const rkey *a = *(const rkey *const *)x, *b = *(const rkey *const *)y;
    size_t n = a->n < b->n ? a->n : b->n;
    int c = n ? memcmp(a->b, b->b, n) : 0;
    if (c != 0) return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

static void test_sorted_order(void **st)
{
    (void)st;
    for (size_t s = 0; s < NBYSETS; s++) {
        sf__groups g;
        assert_int_equal(sf__groups_init(&g, &schema, by_sets[s], by_n[s]), SF_OK);
        uint32_t *order = (uint32_t *)&g;
        assert_int_equal(sf__groups_sorted(&g, &order), SF_OK);
        assert_null(order); /* no groups */
        naive nv = {0};
        sf_batch b;
        assert_int_equal(sf_batch_init(&b, &schema, NULL, 64), SF_OK);
        feed_and_check(&g, &nv, &b, by_sets[s], by_n[s], 200 + s, 3, 300, 15, true);
        const rkey **refs = malloc(nv.n * sizeof *refs);
        assert_non_null(refs);
        for (size_t i = 0; i < nv.n; i++) refs[i] = &nv.keys[i];
        qsort(refs, nv.n, sizeof *refs, rkey_cmp);
        assert_int_equal(sf__groups_sorted(&g, &order), SF_OK);
        for (size_t i = 0; i < nv.n; i++) assert_int_equal(order[i], (uint32_t)(refs[i] - nv.keys));
        free(order);
        free(refs);
        free(nv.keys);
        sf_batch_fini(&b);
        sf__groups_fini(&g);
    }
}

/* Many groups (the radix path of sf__groups_sorted, from 512 groups on):
 * the order of keys made to tie in their first 8 bytes, shorter and longer
 * than 8 bytes, with trailing zero bytes and differing only past byte 8,
 * and of the fed keys of every key set, against qsort by bytes. */
static void check_sorted_against_bytes(const sf__groups *g)
{
    rkey *keys = malloc(g->n * sizeof *keys);
    const rkey **refs = malloc(g->n * sizeof *refs);
    assert_non_null(keys);
    assert_non_null(refs);
    for (uint32_t i = 0; i < g->n; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(g, i, &len);
        assert_true(len <= MAXKEY);
        keys[i].n = len;
        if (len) memcpy(keys[i].b, k, len);
        refs[i] = &keys[i];
    }
    qsort(refs, g->n, sizeof *refs, rkey_cmp);
    uint32_t *order = NULL;
    assert_int_equal(sf__groups_sorted(g, &order), SF_OK);
    assert_non_null(order);
    for (uint32_t i = 0; i < g->n; i++)
        if (order[i] != (uint32_t)(refs[i] - keys))
            fail_msg("position %u of %u: group %u, expected %u", i, g->n, order[i], (uint32_t)(refs[i] - keys));
    free(order);
    free(refs);
    free(keys);
}

static void test_sorted_order_many(void **st)
{
    (void)st;
    sf__groups g;
    assert_int_equal(sf__groups_init(&g, &schema, by_sets[0], by_n[0]), SF_OK);
    rng_state = 77;
    uint8_t k[24];
    bool created;
    uint32_t idx;
    for (int i = 0; i < 3000; i++) {
        size_t len = (size_t)(rnd() % 17);
        /* Few distinct first bytes, so that 8-byte prefixes tie often. */
        for (size_t j = 0; j < len; j++) {
            uint64_t r = rnd();
            k[j] = j < 8 ? (uint8_t)(r % 3) : (uint8_t)(r % 256);
        }
        assert_int_equal(sf__groups_find(&g, k, len, &idx, &created), SF_OK);
    }
    /* Equal 8-byte prefixes at lengths 0..8 (trailing zeros) and beyond. */
    memset(k, 0, sizeof k);
    for (size_t len = 0; len <= 12; len++) assert_int_equal(sf__groups_find(&g, k, len, &idx, &created), SF_OK);
    assert_true(g.n >= 512);
    check_sorted_against_bytes(&g);
    sf__groups_fini(&g);

    /* The fed keys of every key set, past the radix threshold. */
    for (size_t s = 0; s < NBYSETS; s++) {
        assert_int_equal(sf__groups_init(&g, &schema, by_sets[s], by_n[s]), SF_OK);
        naive nv = {0};
        sf_batch b;
        assert_int_equal(sf_batch_init(&b, &schema, NULL, 1024), SF_OK);
        feed_and_check(&g, &nv, &b, by_sets[s], by_n[s], 900 + s, 4, 1000, 15, true);
        if (g.n >= 512) check_sorted_against_bytes(&g);
        free(nv.keys);
        sf_batch_fini(&b);
        sf__groups_fini(&g);
    }
}

/* The printed form of a key, written from the header's description:
 * strings raw with '|' and '\' escaped by '\', null as \N, int64 in
 * decimal, float64 as %.17g, timestamps as ISO-8601 with microseconds only
 * when not zero, parts joined with '|'. */
static size_t ref_text(const row *w, const int *by, int nby, char *out, size_t cap)
{
    size_t n = 0;
    for (int j = 0; j < nby; j++) {
        if (j) out[n++] = '|';
        int c = by[j];
        char tmp[64];
        int len = -1;
        if (c == C_S || c == C_S2) {
            str s = c == C_S ? w->s : w->s2;
            if (s.p == NULL) {
                len = snprintf(tmp, sizeof tmp, "\\N");
            } else {
                for (size_t i = 0; i < s.n; i++) {
                    if (s.p[i] == '|' || s.p[i] == '\\') out[n++] = '\\';
                    out[n++] = s.p[i];
                }
                continue;
            }
        } else if (c == C_I) {
            len = w->i_null ? snprintf(tmp, sizeof tmp, "\\N") : snprintf(tmp, sizeof tmp, "%" PRId64, w->i);
        } else if (c == C_F) {
            double f = w->f;
            if (f != f) f = from_bits(CANON_NAN);
            if (f == 0.0) f = 0.0;
            len = w->f_null ? snprintf(tmp, sizeof tmp, "\\N") : snprintf(tmp, sizeof tmp, "%.17g", f);
        } else {
            if (w->t_null) {
                len = snprintf(tmp, sizeof tmp, "\\N");
            } else {
                int64_t us = w->t, secs = us / 1000000, frac = us % 1000000;
                if (frac < 0) {
                    frac += 1000000;
                    secs -= 1;
                }
                time_t tt = (time_t)secs;
                struct tm tm;
                assert_non_null(gmtime_r(&tt, &tm));
                len = (int)strftime(tmp, sizeof tmp, "%Y-%m-%dT%H:%M:%S", &tm);
                if (frac) len += snprintf(tmp + len, sizeof tmp - (size_t)len, ".%06" PRId64, frac);
            }
        }
        memcpy(out + n, tmp, (size_t)len);
        n += (size_t)len;
    }
    assert_true(n < cap);
    return n;
}

typedef struct tref {
    char text[256];
    size_t len;
    uint32_t idx;
} tref;

static int tref_cmp(const void *x, const void *y)
{
    const tref *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->text, b->text, n) : 0;
    if (c != 0) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static void test_text_order(void **st)
{
    (void)st;
    for (size_t s = 0; s < NBYSETS; s++) {
        sf__groups g;
        assert_int_equal(sf__groups_init(&g, &schema, by_sets[s], by_n[s]), SF_OK);
        rng_state = 400 + s;
        size_t n = 500;
        row *rows = make_rows(n, 15);
        sf_batch b;
        make_batch(&b, rows, n);
        assert_int_equal(sf__groups_batch(&g, &b), SF_OK);
        /* The printed key of each group, from the first row that made it. */
        tref *want = calloc(n, sizeof *want);
        assert_non_null(want);
        for (size_t r = 0; r < n; r++) {
            uint32_t idx;
            bool created;
            assert_int_equal(sf__groups_row(&g, &b, r, &idx, &created), SF_OK);
            if (!created) continue;
            want[idx].len = ref_text(&rows[r], by_sets[s], by_n[s], want[idx].text, sizeof want[idx].text);
            want[idx].idx = idx;
        }
        uint32_t ng = g.n;
        sf_buf text;
        sf_buf_init(&text);
        uint32_t *order;
        size_t *toff, *tlen;
        assert_int_equal(sf__groups_text_order(&g, &text, &order, &toff, &tlen), SF_OK);
        for (uint32_t i = 0; i < ng; i++) {
            if (tlen[i] != want[i].len || memcmp(text.data + toff[i], want[i].text, tlen[i]) != 0)
                fail_msg("group %u prints as '%.*s', expected '%.*s'", i, (int)tlen[i], (const char *)text.data + toff[i],
                         (int)want[i].len, want[i].text);
        }
        /* Different keys never print alike (the escapes at work). */
        qsort(want, ng, sizeof *want, tref_cmp);
        for (uint32_t i = 0; i + 1 < ng; i++)
            if (want[i].len == want[i + 1].len && memcmp(want[i].text, want[i + 1].text, want[i].len) == 0)
                fail_msg("two groups print as '%.*s'", (int)want[i].len, want[i].text);
        for (uint32_t i = 0; i < ng; i++) assert_int_equal(order[i], want[i].idx);
        free(order);
        free(toff);
        free(tlen);
        sf_buf_fini(&text);
        free(want);
        free(rows);
        sf_batch_fini(&b);
        sf__groups_fini(&g);
    }
    /* No groups: NULL arrays, but a usable text buffer. */
    static const int by[] = {C_S};
    sf__groups g;
    assert_int_equal(sf__groups_init(&g, &schema, by, 1), SF_OK);
    sf_buf text;
    sf_buf_init(&text);
    uint32_t *order = (uint32_t *)&g;
    size_t *toff = (size_t *)&g, *tlen = (size_t *)&g;
    assert_int_equal(sf__groups_text_order(&g, &text, &order, &toff, &tlen), SF_OK);
    assert_null(order);
    assert_null(toff);
    assert_null(tlen);
    assert_non_null(text.data);
    sf_buf_fini(&text);
    sf__groups_fini(&g);
}

static void expect_key_text(const int *by, int nby, const row *w, const char *want, size_t want_len)
{
    rkey k;
    ref_key(w, by, nby, &k);
    sf_buf out;
    sf_buf_init(&out);
    assert_int_equal(sf_buf_append(&out, "prefix:", 7), SF_OK); /* appends */
    assert_int_equal(sf_agent_key_text(&schema, by, nby, k.b, k.n, &out), SF_OK);
    assert_int_equal(out.len, 7 + want_len);
    assert_memory_equal(out.data, "prefix:", 7);
    if (want_len) assert_memory_equal(out.data + 7, want, want_len);
    sf_buf_fini(&out);
}

static void test_key_text(void **st)
{
    (void)st;
    static const int si[] = {C_S, C_I}, s2[] = {C_S, C_S2}, ft[] = {C_F, C_T}, is[] = {C_I, C_S};
    row w;
    memset(&w, 0, sizeof w);
    w.s = (str)S("x|y");
    w.i = -42;
    expect_key_text(si, 2, &w, "x\\|y|-42", 8);
    w.s = (str)S("a\\");
    w.s2 = (str)S("|b");
    expect_key_text(s2, 2, &w, "a\\\\|\\|b", 7);
    w.s = (str)S("a\\|");
    w.s2 = (str)S("b");
    expect_key_text(s2, 2, &w, "a\\\\\\||b", 7);
    w.s = (str){NULL, 0};
    w.s2 = (str)S("\\N");
    expect_key_text(s2, 2, &w, "\\N|\\\\N", 6);
    w.s = (str)S("x\0y");
    w.s2 = (str)S("");
    expect_key_text(s2, 2, &w, "x\0y|", 4);
    w.f = -0.0;
    w.t = T0_US + 500000;
    expect_key_text(ft, 2, &w, "0|2024-03-01T00:00:00.500000", 28);
    w.f = from_bits(UINT64_C(0xFFF8000000000001));
    w.t = -1;
    expect_key_text(ft, 2, &w, "nan|1969-12-31T23:59:59.999999", 30);
    w.f = 0.1;
    w.t_null = true;
    char want[64];
    int len = snprintf(want, sizeof want, "%.17g|\\N", 0.1);
    expect_key_text(ft, 2, &w, want, (size_t)len);
    w.i = INT64_MIN;
    w.s = (str)S("");
    expect_key_text(is, 2, &w, "-9223372036854775808|", 21);
    /* No columns: the empty text. */
    expect_key_text(NULL, 0, &w, "", 0);
    /* A malformed key is an error, not garbage text. */
    sf_buf out;
    sf_buf_init(&out);
    static const uint8_t bad[] = {1, 5, 0, 0, 0, 'a'};
    assert_int_equal(sf_agent_key_text(&schema, si, 1, bad, sizeof bad, &out), SF_ERR_INTERNAL);
    assert_string_equal(sf_error_message(), "malformed group key");
    sf_buf_fini(&out);
}

/* ---------------------------------------------------------------------------
 * Validity and decoding */

static void test_key_valid(void **st)
{
    (void)st;
    rng_state = 7;
    row *rows = make_rows(200, 20);
    for (size_t s = 0; s < NBYSETS; s++)
        for (size_t r = 0; r < 200; r++) {
            rkey k;
            ref_key(&rows[r], by_sets[s], by_n[s], &k);
            assert_true(sf_agent_key_valid(&schema, by_sets[s], by_n[s], k.b, k.n));
            /* Every strict prefix is truncated. */
            for (size_t p = 0; p < k.n; p++)
                if (sf_agent_key_valid(&schema, by_sets[s], by_n[s], k.b, p))
                    fail_msg("prefix %zu of a %zu-byte key accepted (set %zu)", p, k.n, s);
            /* One trailing byte is garbage. */
            k.b[k.n] = 0;
            assert_false(sf_agent_key_valid(&schema, by_sets[s], by_n[s], k.b, k.n + 1));
        }
    free(rows);
    static const int bs[] = {C_S}, bi[] = {C_I}, bis[] = {C_I, C_S};
    /* Tags other than 0 and 1. */
    static const uint8_t tag2[] = {2, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_false(sf_agent_key_valid(&schema, bi, 1, tag2, sizeof tag2));
    static const uint8_t tagff[] = {0xff};
    assert_false(sf_agent_key_valid(&schema, bs, 1, tagff, 1));
    /* A string length larger than what is left, including one that would
     * wrap a 32-bit offset. */
    static const uint8_t longlen[] = {1, 4, 0, 0, 0, 'a', 'b', 'c'};
    assert_false(sf_agent_key_valid(&schema, bs, 1, longlen, sizeof longlen));
    static const uint8_t hugelen[] = {1, 0xff, 0xff, 0xff, 0xff, 'a'};
    assert_false(sf_agent_key_valid(&schema, bs, 1, hugelen, sizeof hugelen));
    /* A string where a number belongs and the other way round. */
    static const uint8_t str_in_int[] = {1, 1, 0, 0, 0, 'a'};
    assert_false(sf_agent_key_valid(&schema, bi, 1, str_in_int, sizeof str_in_int));
    static const uint8_t int_then_str[] = {1, 1, 2, 3, 4, 5, 6, 7, 8, 1, 0, 0, 0, 0};
    assert_true(sf_agent_key_valid(&schema, bis, 2, int_then_str, sizeof int_then_str));
    assert_false(sf_agent_key_valid(&schema, bis, 1, int_then_str, sizeof int_then_str));
    /* No columns: only the empty key. */
    assert_true(sf_agent_key_valid(&schema, NULL, 0, tagff, 0));
    assert_false(sf_agent_key_valid(&schema, NULL, 0, tagff, 1));
}

/* Encodes the keys of g in sorted order, as an agent's encode() does. */
static void encode_keys(const sf__groups *g, sf_buf *out)
{
    uint32_t *order;
    assert_int_equal(sf__groups_sorted(g, &order), SF_OK);
    for (uint32_t i = 0; i < g->n; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(g, order[i], &len);
        assert_int_equal(sf_buf_put_str(out, (const char *)k, len), SF_OK);
    }
    free(order);
}

/* Decodes n keys from bytes into a cleared d; returns the status of the
 * first failure (SF_OK if none). */
static sf_status decode_keys(sf__groups *d, const uint8_t *bytes, size_t len, uint32_t n)
{
    sf_rd rd;
    sf_rd_init(&rd, bytes, len);
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t idx;
        sf_status rc = sf__groups_decode_key(d, &rd, &prev, &prev_len, &idx);
        if (rc != SF_OK) return rc;
        assert_int_equal(idx, i);
    }
    return SF_OK;
}

static void test_decode_key(void **st)
{
    (void)st;
    static const int by[] = {C_S, C_F};
    sf__groups g, d;
    assert_int_equal(sf__groups_init(&g, &schema, by, 2), SF_OK);
    assert_int_equal(sf__groups_init(&d, &schema, by, 2), SF_OK);
    naive nv = {0};
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &schema, NULL, 64), SF_OK);
    feed_and_check(&g, &nv, &b, by, 2, 77, 2, 300, 10, true);
    sf_buf enc;
    sf_buf_init(&enc);
    encode_keys(&g, &enc);

    /* Round trip: the decoded table holds the keys in sorted order, and
     * encodes to the same bytes. */
    assert_int_equal(decode_keys(&d, enc.data, enc.len, g.n), SF_OK);
    assert_int_equal(d.n, g.n);
    uint32_t *order;
    assert_int_equal(sf__groups_sorted(&g, &order), SF_OK);
    for (uint32_t i = 0; i < g.n; i++) {
        size_t lg, ld;
        const uint8_t *kg = sf__groups_key(&g, order[i], &lg), *kd = sf__groups_key(&d, i, &ld);
        assert_int_equal(lg, ld);
        assert_memory_equal(kg, kd, lg);
    }
    free(order);
    sf_buf again;
    sf_buf_init(&again);
    encode_keys(&d, &again);
    assert_int_equal(again.len, enc.len);
    assert_memory_equal(again.data, enc.data, enc.len);
    sf_buf_fini(&again);

    /* Decoding into a table that already holds the keys: duplicates. */
    sf_status rc = decode_keys(&d, enc.data, enc.len, 1);
    assert_int_equal(rc, SF_ERR_PARSE);
    assert_string_equal(sf_error_message(), "agent state: duplicate group key");

    /* Two keys swapped: out of order. */
    sf_rd rd;
    sf_rd_init(&rd, enc.data, enc.len);
    const char *k0, *k1;
    size_t n0, n1;
    assert_int_equal(sf_rd_str(&rd, &k0, &n0), SF_OK);
    assert_int_equal(sf_rd_str(&rd, &k1, &n1), SF_OK);
    sf_buf bad;
    sf_buf_init(&bad);
    assert_int_equal(sf_buf_put_str(&bad, k1, n1), SF_OK);
    assert_int_equal(sf_buf_put_str(&bad, k0, n0), SF_OK);
    assert_int_equal(sf__groups_clear(&d), SF_OK);
    rc = decode_keys(&d, bad.data, bad.len, 2);
    assert_int_equal(rc, SF_ERR_PARSE);
    assert_string_equal(sf_error_message(), "agent state: groups out of order");

    /* The same key twice in a row is rejected too (not strictly greater). */
    sf_buf_clear(&bad);
    assert_int_equal(sf_buf_put_str(&bad, k0, n0), SF_OK);
    assert_int_equal(sf_buf_put_str(&bad, k0, n0), SF_OK);
    assert_int_equal(sf__groups_clear(&d), SF_OK);
    assert_int_equal(decode_keys(&d, bad.data, bad.len, 2), SF_ERR_PARSE);

    /* A malformed key (one byte short), and a truncated length prefix. */
    sf_buf_clear(&bad);
    assert_int_equal(sf_buf_put_str(&bad, k0, n0 - 1), SF_OK);
    assert_int_equal(sf__groups_clear(&d), SF_OK);
    assert_int_equal(decode_keys(&d, bad.data, bad.len, 1), SF_ERR_PARSE);
    assert_string_equal(sf_error_message(), "agent state: malformed group key");
    for (size_t cut = 0; cut < 4 + n0; cut++) {
        sf_buf_clear(&bad);
        assert_int_equal(sf_buf_put_str(&bad, k0, n0), SF_OK);
        assert_int_equal(sf__groups_clear(&d), SF_OK);
        assert_int_equal(decode_keys(&d, bad.data, cut, 1), SF_ERR_PARSE);
    }
    sf_buf_fini(&bad);
    sf_buf_fini(&enc);
    free(nv.keys);
    sf_batch_fini(&b);
    sf__groups_fini(&g);
    sf__groups_fini(&d);
}

/* ---------------------------------------------------------------------------
 * No key columns, and bad arguments */

static void test_no_key_columns(void **st)
{
    (void)st;
    sf__groups g;
    assert_int_equal(sf__groups_init(&g, &schema, NULL, 0), SF_OK);
    assert_int_equal(g.n, 1); /* the one group of the empty key */
    size_t len = 99;
    (void)sf__groups_key(&g, 0, &len);
    assert_int_equal(len, 0);
    rng_state = 4;
    row *rows = make_rows(20, 30);
    sf_batch b;
    make_batch(&b, rows, 20);
    assert_int_equal(sf__groups_batch(&g, &b), SF_OK);
    for (size_t r = 0; r < 20; r++) {
        uint32_t idx = 7;
        bool created = true;
        assert_int_equal(sf__groups_row(&g, &b, r, &idx, &created), SF_OK);
        assert_int_equal(idx, 0);
        assert_false(created);
    }
    assert_int_equal(g.n, 1);
    assert_int_equal(sf__groups_lookup(&g, (const uint8_t *)"", 0), 0);
    uint32_t *order;
    assert_int_equal(sf__groups_sorted(&g, &order), SF_OK);
    assert_int_equal(order[0], 0);
    free(order);
    sf_buf text;
    sf_buf_init(&text);
    size_t *toff, *tlen;
    assert_int_equal(sf__groups_text_order(&g, &text, &order, &toff, &tlen), SF_OK);
    assert_int_equal(order[0], 0);
    assert_int_equal(tlen[0], 0);
    free(order);
    free(toff);
    free(tlen);
    sf_buf_fini(&text);
    /* clear recreates the group; decoding the empty key finds it. */
    assert_int_equal(sf__groups_clear(&g), SF_OK);
    assert_int_equal(g.n, 1);
    sf_buf enc;
    sf_buf_init(&enc);
    encode_keys(&g, &enc);
    assert_int_equal(enc.len, 4);
    sf_rd rd;
    sf_rd_init(&rd, enc.data, enc.len);
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    uint32_t idx = 9;
    assert_int_equal(sf__groups_decode_key(&g, &rd, &prev, &prev_len, &idx), SF_OK);
    assert_int_equal(idx, 0);
    assert_int_equal(g.n, 1);
    /* A second empty key is not greater than the first. */
    sf_rd_init(&rd, enc.data, enc.len);
    assert_int_equal(sf__groups_decode_key(&g, &rd, &prev, &prev_len, &idx), SF_ERR_PARSE);
    sf_buf_fini(&enc);
    free(rows);
    sf_batch_fini(&b);
    sf__groups_fini(&g);

    static const int many[256] = {0};
    assert_int_equal(sf__groups_init(&g, &schema, many, 256), SF_ERR_ARG);
    assert_int_equal(sf__groups_init(&g, &schema, NULL, 1), SF_ERR_ARG);
    assert_int_equal(sf__groups_init(&g, &schema, many, -1), SF_ERR_ARG);
    assert_int_equal(sf__groups_init(&g, &schema, many, 255), SF_OK);
    sf__groups_fini(&g);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_row_key_bytes),
        cmocka_unit_test(test_first_appearance_order),
        cmocka_unit_test(test_many_groups),
        cmocka_unit_test(test_cache_matches_generic),
        cmocka_unit_test(test_cache_kept_across_equal_dicts),
        cmocka_unit_test(test_dense_int_keys),
        cmocka_unit_test(test_cache_generation_wrap),
        cmocka_unit_test(test_rows_match_find),
        cmocka_unit_test(test_find_all_matches_find),
        cmocka_unit_test(test_find_fixed_matches_find),
        cmocka_unit_test(test_null_keys),
        cmocka_unit_test(test_float_canonical),
        cmocka_unit_test(test_sorted_order),
        cmocka_unit_test(test_sorted_order_many),
        cmocka_unit_test(test_text_order),
        cmocka_unit_test(test_key_text),
        cmocka_unit_test(test_key_valid),
        cmocka_unit_test(test_decode_key),
        cmocka_unit_test(test_no_key_columns),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
