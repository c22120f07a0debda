/* Unit tests of the shard planners (size, hash, range, semantic).
 *
 * Every expectation is computed another way than the planner does it: closed
 * forms for the size blocks, hash values from an independent xxHash tool,
 * hand-computed LPT packings, and shard sizes counted by routing every row
 * and comparing with exact key counts made here. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "shardflow/batch.h"
#include "shardflow/config.h"
#include "shardflow/io.h"
#include "shardflow/json.h"
#include "shardflow/shard.h"
#include "shardflow/status.h"

#define OK(expr)                                                                \
    do {                                                                        \
        sf_status rc_ = (expr);                                                 \
        if (rc_ != SF_OK) fail_msg("%s -> %s: %s", #expr, sf_status_name(rc_),  \
                                   sf_error_message());                         \
    } while (0)

#define WF "flow.yaml"

/* ---- helpers ------------------------------------------------------------ */

static sf_shard_config shard_cfg(sf_shard_strategy s, const char *key, int k)
{
    sf_shard_config c;
    memset(&c, 0, sizeof c);
    c.strategy = s;
    c.key = (char *)key;
    c.key_line = key ? 7 : 0;
    c.shards = k;
    c.sample = 100000;
    c.seed = 1;
    return c;
}

static void schema1(sf_schema *s, const char *name, sf_type t)
{
    sf_schema_init(s);
    OK(sf_schema_add(s, name, t));
}

/* A batch of one int64/timestamp column holding v[0..n). */
static void batch_i64(sf_batch *b, const sf_schema *s, const int64_t *v, size_t n,
                      uint64_t first)
{
    OK(sf_batch_init(b, s, NULL, n ? n : 1));
    for (size_t i = 0; i < n; i++) b->cols[0].i64[i] = v[i];
    b->nrows = n;
    b->first_row = first;
}

static void batch_f64(sf_batch *b, const sf_schema *s, const double *v, size_t n, uint64_t first)
{
    OK(sf_batch_init(b, s, NULL, n ? n : 1));
    for (size_t i = 0; i < n; i++) b->cols[0].f64[i] = v[i];
    b->nrows = n;
    b->first_row = first;
}

/* A batch of one string column; each batch has its own dictionary. */
static void batch_str(sf_batch *b, const sf_schema *s, const char *const *v, size_t n,
                      uint64_t first)
{
    OK(sf_batch_init(b, s, NULL, n ? n : 1));
    for (size_t i = 0; i < n; i++) {
        uint32_t code;
        OK(sf_dict_intern(&b->cols[0].dict, v[i], strlen(v[i]), &code));
        b->cols[0].code[i] = code;
    }
    b->nrows = n;
    b->first_row = first;
}

/* The plan's description as a NUL-terminated string (caller frees). */
static char *describe(const sf_shard_plan *p)
{
    sf_json j;
    sf_json_init(&j, false);
    sf_shard_plan_describe(p, &j);
    assert_int_equal(j.rc, SF_OK);
    char *s = malloc(j.out.len + 1);
    assert_non_null(s);
    memcpy(s, j.out.data, j.out.len);
    s[j.out.len] = '\0';
    sf_json_fini(&j);
    return s;
}

/* Parses the numbers of the JSON array that follows "name": in s. */
static size_t json_numbers(const char *s, const char *name, double *out, size_t max)
{
    char pat[64];
    snprintf(pat, sizeof pat, "\"%s\":[", name);
    const char *p = strstr(s, pat);
    assert_non_null(p);
    p += strlen(pat);
    size_t n = 0;
    while (*p != ']') {
        char *end;
        double v = strtod(p, &end);
        assert_true(end != p);
        if (n < max) out[n] = v;
        n++;
        p = end;
        if (*p == ',') p++;
    }
    return n;
}

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double rng_u01(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1p-53; }

/* Zipf(s) ranks 0..n-1 by inverse CDF; rank r is stored as key
 * (r * 7919) % n + base, so heavy keys sit in the middle of the key order. */
static void zipf_keys(int64_t *out, size_t rows, size_t n, double s, uint64_t seed, int64_t base)
{
    double *cdf = malloc(n * sizeof *cdf);
    assert_non_null(cdf);
    double sum = 0;
    for (size_t r = 0; r < n; r++) cdf[r] = (sum += pow((double)(r + 1), -s));
    for (size_t r = 0; r < n; r++) cdf[r] /= sum;
    uint64_t st = seed;
    for (size_t i = 0; i < rows; i++) {
        double u = rng_u01(&st);
        size_t lo = 0, hi = n - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cdf[mid] < u)
                lo = mid + 1;
            else
                hi = mid;
        }
        out[i] = (int64_t)((lo * 7919) % n) + base;
    }
    free(cdf);
}

typedef struct key_shard {
    int64_t key;
    uint32_t shard;
} key_shard;

static int cmp_key_shard(const void *a, const void *b)
{
    const key_shard *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return (x->shard > y->shard) - (x->shard < y->shard);
}

/* Checks that equal keys share a shard; if ordered, that the shard never
 * decreases as the key grows. Returns the row count of the most frequent key. */
static uint64_t check_keys(const int64_t *keys, const uint32_t *shard, size_t n, bool ordered)
{
    key_shard *ks = malloc(n * sizeof *ks);
    assert_non_null(ks);
    for (size_t i = 0; i < n; i++) ks[i] = (key_shard){keys[i], shard[i]};
    qsort(ks, n, sizeof *ks, cmp_key_shard);
    uint64_t best = 0, run = 0;
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && ks[i].key == ks[i - 1].key) {
            assert_int_equal(ks[i].shard, ks[i - 1].shard);
            run++;
        } else {
            if (i > 0 && ordered) assert_true(ks[i].shard >= ks[i - 1].shard);
            run = 1;
        }
        if (run > best) best = run;
    }
    free(ks);
    return best;
}

/* Runs a full plan over int64 keys cut into batches of `step` rows: pre-pass
 * (if needed), finish, route. shard[] receives every row's shard. */
static sf_shard_plan *plan_i64(const sf_shard_config *cfg, sf_type t, const int64_t *keys,
                               size_t n, size_t step, uint32_t *shard)
{
    sf_schema s;
    schema1(&s, "k", t);
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(cfg, &s, WF, &p));
    for (int pass = 0; pass < 2; pass++) {
        if (pass == 0 && !sf_shard_plan_needs_prepass(p)) continue;
        if (pass == 1) OK(sf_shard_plan_finish(p, n, 0, 0));
        for (size_t a = 0; a < n; a += step) {
            size_t m = n - a < step ? n - a : step;
            sf_batch b;
            batch_i64(&b, &s, keys + a, m, a);
            if (pass == 0)
                OK(sf_shard_plan_observe(p, &b));
            else
                OK(sf_shard_route(p, &b, shard + a));
            sf_batch_fini(&b);
        }
    }
    sf_schema_fini(&s);
    return p;
}

/* ---- imbalance ---------------------------------------------------------- */

static void test_imbalance(void **state)
{
    uint64_t a[3] = {10, 20, 30};   /* max 30, mean 20 */
    assert_float_equal(sf_shard_imbalance(a, 3), 1.5, 1e-12);
    uint64_t z[2] = {0, 0};
    assert_float_equal(sf_shard_imbalance(z, 2), 0.0, 0);
    uint64_t one[1] = {5};
    assert_float_equal(sf_shard_imbalance(one, 1), 1.0, 1e-12);
    uint64_t b[4] = {1, 0, 0, 0};   /* max 1, mean 0.25 */
    assert_float_equal(sf_shard_imbalance(b, 4), 4.0, 1e-12);
}

/* ---- size --------------------------------------------------------------- */

/* Row g of N belongs to shard s iff ceil(s*N/K) <= g < ceil((s+1)*N/K). */
static uint64_t block_start(uint64_t s, uint64_t n, uint64_t k) { return (s * n + k - 1) / k; }

static void check_size_rows(uint64_t n, int k, const size_t *cuts, size_t ncuts)
{
    sf_schema s;
    schema1(&s, "x", SF_INT64);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SIZE, NULL, k);
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    assert_false(sf_shard_plan_needs_prepass(p));
    assert_int_equal(sf_shard_plan_key_column(p), -1);
    assert_int_equal(sf_shard_plan_count(p), k);
    OK(sf_shard_plan_finish(p, n, 0, 0));

    uint64_t *sizes = calloc((size_t)k, sizeof *sizes);
    uint64_t row = 0;
    for (size_t c = 0; c < ncuts; c++) {
        sf_batch b;
        OK(sf_batch_init(&b, &s, NULL, cuts[c] ? cuts[c] : 1));
        b.nrows = cuts[c];
        b.first_row = row;
        uint32_t *sh = malloc((cuts[c] ? cuts[c] : 1) * sizeof *sh);
        OK(sf_shard_route(p, &b, sh));
        for (size_t i = 0; i < cuts[c]; i++) {
            uint64_t g = row + i;
            assert_true(sh[i] < (uint32_t)k);
            assert_true(block_start(sh[i], n, (uint64_t)k) <= g);
            assert_true(g < block_start(sh[i] + 1, n, (uint64_t)k));
            sizes[sh[i]]++;
        }
        row += cuts[c];
        free(sh);
        sf_batch_fini(&b);
    }
    assert_int_equal(row, n);
    uint64_t mn = UINT64_MAX, mx = 0, sum = 0;
    for (int i = 0; i < k; i++) {
        if (sizes[i] < mn) mn = sizes[i];
        if (sizes[i] > mx) mx = sizes[i];
        sum += sizes[i];
    }
    assert_int_equal(sum, n);
    assert_true(mx - mn <= 1);
    assert_int_equal(mx, (n + (uint64_t)k - 1) / (uint64_t)k);
    free(sizes);
    sf_shard_plan_destroy(&p);
    assert_null(p);
    sf_schema_fini(&s);
}

static void test_size_rows(void **state)
{
    size_t cuts[] = {1, 500, 2, 500};
    check_size_rows(1003, 7, cuts, 4);
    size_t few[] = {3};
    check_size_rows(3, 5, few, 1);   /* K > N: sizes 1,1,0,1,0 */
    size_t one[] = {64};
    check_size_rows(64, 1, one, 1);
}

static void test_size_bytes(void **state)
{
    sf_schema s;
    schema1(&s, "x", SF_INT64);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SIZE, NULL, 4);
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));

    /* A 100-byte header, then rows of 10, 30, 20 and 40 bytes: offsets
     * 100, 110, 140, 160 over 100 data bytes. By hand, (off - 100) * 4 / 100
     * gives 0, 0.4, 1.6, 2.4 -> shards 0, 0, 1, 2. The row count (unknown
     * here) must not be needed. */
    OK(sf_shard_plan_finish(p, UINT64_MAX, 100, 100));
    sf_batch b;
    OK(sf_batch_init(&b, &s, NULL, 4));
    OK(sf_batch_enable_offsets(&b));
    int64_t off[4] = {100, 110, 140, 160};
    for (int i = 0; i < 4; i++) b.row_offset[i] = off[i];
    b.nrows = 4;
    uint32_t sh[4];
    OK(sf_shard_route(p, &b, sh));
    uint32_t want[4] = {0, 0, 1, 2};
    for (int i = 0; i < 4; i++) assert_int_equal(sh[i], want[i]);
    sf_batch_fini(&b);

    /* Without offsets and without a row count, routing must refuse. */
    OK(sf_batch_init(&b, &s, NULL, 4));
    b.nrows = 4;
    assert_int_equal(sf_shard_route(p, &b, sh), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), "row count"));
    sf_batch_fini(&b);
    sf_shard_plan_destroy(&p);

    /* Neither the size nor the row count: finish() says so. */
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    assert_int_equal(sf_shard_plan_finish(p, UINT64_MAX, 0, 0), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), WF));
    sf_shard_plan_destroy(&p);

    /* Random row lengths: shard s holds the rows whose first byte x lies in
     * [ceil(s*D/K), ceil((s+1)*D/K)). */
    const int k = 9;
    const size_t n = 5000;
    cfg.shards = k;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    OK(sf_batch_init(&b, &s, NULL, n));
    OK(sf_batch_enable_offsets(&b));
    uint64_t st = 7, pos = 37;
    for (size_t i = 0; i < n; i++) {
        b.row_offset[i] = (int64_t)pos;
        pos += 1 + rng_next(&st) % 200;
    }
    b.nrows = n;
    uint64_t d = pos - 37;
    OK(sf_shard_plan_finish(p, n, 37, d));
    uint32_t *shv = malloc(n * sizeof *shv);
    OK(sf_shard_route(p, &b, shv));
    for (size_t i = 0; i < n; i++) {
        uint64_t x = (uint64_t)b.row_offset[i] - 37;
        assert_true(block_start(shv[i], d, k) <= x);
        assert_true(x < block_start(shv[i] + 1, d, k));
    }
    sf_batch_fini(&b);
    sf_shard_plan_destroy(&p);

    /* Offsets past 2^64 / K (x * K overflows 64 bits): compared with a
     * 128-bit reference. */
    cfg.shards = 1000;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    const uint64_t start = 4096, big = (UINT64_C(1) << 62) + 12345;
    OK(sf_shard_plan_finish(p, UINT64_MAX, start, big));
    OK(sf_batch_init(&b, &s, NULL, 1000));
    OK(sf_batch_enable_offsets(&b));
    for (size_t i = 0; i < 1000; i++) {
        uint64_t x = i == 999 ? big - 1 : (rng_next(&st) % big);
        b.row_offset[i] = (int64_t)(start + x);
    }
    b.nrows = 1000;
    OK(sf_shard_route(p, &b, shv));
    for (size_t i = 0; i < 1000; i++) {
        __extension__ unsigned __int128 x = (uint64_t)b.row_offset[i] - start;
        uint64_t ref = (uint64_t)(x * 1000u / big);
        assert_int_equal(shv[i], ref);
    }
    assert_int_equal(shv[999], 999);
    free(shv);
    sf_batch_fini(&b);
    sf_shard_plan_destroy(&p);
    sf_schema_fini(&s);
}

/* sf_shard_route_runs against sf_shard_route row by row, and against the
 * closed form of the size blocks (shard s of N rows begins at row
 * ceil(s N / K), computed here in 128 bits): the runs start[0..K] of a
 * batch must hold exactly the rows routed to each shard. */
__extension__ typedef unsigned __int128 u128;

static uint64_t block_start128(uint64_t s, uint64_t n, uint64_t k)
{
    return (uint64_t)(((u128)s * n + k - 1) / k);
}

/* Checks one batch of nrows rows from row `first` of a size plan of N rows
 * in K shards; shard[] and start[] are scratch of nrows and K + 1. */
static void check_runs(const sf_shard_plan *p, sf_batch *b, uint64_t n, uint32_t k, uint64_t first,
                       size_t nrows, uint32_t *shard, size_t *start)
{
    b->first_row = first;
    b->nrows = nrows;
    for (uint32_t s = 0; s <= k; s++) start[s] = (size_t)-1;
    if (!sf_shard_route_runs(p, b, start))
        fail_msg("N=%llu K=%u first=%llu rows=%zu: no runs", (unsigned long long)n, k,
                 (unsigned long long)first, nrows);
    OK(sf_shard_route(p, b, shard));
    assert_int_equal(start[0], 0);
    assert_int_equal(start[k], nrows);
    for (uint32_t s = 0; s < k; s++) {
        if (start[s] > start[s + 1])
            fail_msg("N=%llu K=%u first=%llu rows=%zu: start[%u]=%zu > start[%u]=%zu",
                     (unsigned long long)n, k, (unsigned long long)first, nrows, s, start[s], s + 1,
                     start[s + 1]);
        for (size_t i = start[s]; i < start[s + 1]; i++)
            if (shard[i] != s)
                fail_msg("N=%llu K=%u first=%llu rows=%zu: row %zu routed to %u, run of %u",
                         (unsigned long long)n, k, (unsigned long long)first, nrows, i, shard[i], s);
    }
    /* The closed form: rows of the batch before shard s's first row (all
     * rows from N on belong to shard K - 1). */
    const uint64_t end = first + nrows;
    for (uint32_t s = 1; s < k; s++) {
        uint64_t at = block_start128(s, n, k);
        uint64_t want = at < first ? 0 : at > end ? nrows : at - first;
        if (start[s] != want)
            fail_msg("N=%llu K=%u first=%llu rows=%zu: start[%u]=%zu, closed form %llu",
                     (unsigned long long)n, k, (unsigned long long)first, nrows, s, start[s],
                     (unsigned long long)want);
    }
}

static void test_size_route_runs(void **state)
{
    enum { MAXROWS = 3000 };
    sf_schema s;
    schema1(&s, "x", SF_INT64);
    uint32_t *shard = malloc(MAXROWS * sizeof *shard);
    size_t *start = malloc(1001 * sizeof *start);
    assert_non_null(shard);
    assert_non_null(start);
    sf_batch b;
    OK(sf_batch_init(&b, &s, NULL, MAXROWS));
    const uint64_t totals[] = {0, 1, 2, 3, 5, 7, 64, 100, 1003, 4096, 99991, (UINT64_C(1) << 40) + 3,
                               (UINT64_C(1) << 62) + 12345};
    const uint32_t ks[] = {1, 2, 3, 5, 7, 16, 100, 1000};
    const size_t lens[] = {0, 1, 2, 7, 255, 256, 1000, MAXROWS};
    uint64_t st = 11;
    for (size_t ti = 0; ti < sizeof totals / sizeof totals[0]; ti++) {
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            const uint64_t n = totals[ti];
            const uint32_t k = ks[ki];
            sf_shard_config cfg = shard_cfg(SF_SHARD_SIZE, NULL, (int)k);
            sf_shard_plan *p = NULL;
            OK(sf_shard_plan_create(&cfg, &s, WF, &p));
            /* Not finished: no runs, start untouched. */
            start[0] = 12345;
            assert_false(sf_shard_route_runs(p, &b, start));
            assert_int_equal(start[0], 12345);
            OK(sf_shard_plan_finish(p, n, 0, 0));
            /* First rows: 0, around every shard boundary (one shard's
             * first row, the row before, the row after), and around and
             * past the end of the input. */
            uint32_t step = k > 40 ? k / 17 : 1;
            for (uint32_t sb = 0; sb <= k; sb += step) {
                uint64_t at = block_start128(sb, n, k);
                for (int d = -1; d <= 1; d++) {
                    if (d < 0 && at == 0) continue;
                    uint64_t first = at + (uint64_t)(int64_t)d;
                    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++)
                        check_runs(p, &b, n, k, first, lens[li], shard, start);
                    /* A batch that ends exactly at the next boundary. */
                    uint64_t next = block_start128(sb + 1 > k ? k : sb + 1, n, k);
                    if (next > first && next - first <= MAXROWS)
                        check_runs(p, &b, n, k, first, (size_t)(next - first), shard, start);
                }
            }
            for (int r = 0; r < 40; r++) {
                uint64_t span = n < UINT64_MAX / 2 ? n + n / 8 + 3 : n;
                uint64_t first = rng_next(&st) % span;
                size_t len = (size_t)(rng_next(&st) % (MAXROWS + 1));
                check_runs(p, &b, n, k, first, len, shard, start);
            }
            if (n > 0) check_runs(p, &b, n, k, n - 1, MAXROWS, shard, start);
            check_runs(p, &b, n, k, n, 17, shard, start);
            check_runs(p, &b, n, k, n + 1000, MAXROWS, shard, start);
            sf_shard_plan_destroy(&p);
        }
    }

    /* Batches that carry byte offsets of a plan finished by rows
     * (data_bytes 0) are routed by rows: runs as before. */
    sf_shard_config cfg = shard_cfg(SF_SHARD_SIZE, NULL, 7);
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    OK(sf_shard_plan_finish(p, 5000, 0, 0));
    OK(sf_batch_enable_offsets(&b));
    for (size_t i = 0; i < MAXROWS; i++) b.row_offset[i] = (int64_t)(100 + 10 * i);
    check_runs(p, &b, 5000, 7, 1400, MAXROWS, shard, start);
    sf_shard_plan_destroy(&p);

    /* A plan finished with the byte size routes such batches by bytes:
     * no runs, start untouched; the same plan without offsets on the batch
     * routes by rows again. */
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    OK(sf_shard_plan_finish(p, 5000, 100, 50000));
    b.first_row = 0;
    b.nrows = 100;
    for (uint32_t i = 0; i <= 7; i++) start[i] = 777;
    assert_false(sf_shard_route_runs(p, &b, start));
    for (uint32_t i = 0; i <= 7; i++) assert_int_equal(start[i], 777);
    sf_batch_fini(&b);
    OK(sf_batch_init(&b, &s, NULL, MAXROWS));
    check_runs(p, &b, 5000, 7, 2100, 1000, shard, start);
    sf_shard_plan_destroy(&p);
    /* Bytes only (the row count unknown): no runs either way. */
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    OK(sf_shard_plan_finish(p, UINT64_MAX, 100, 50000));
    b.nrows = 10;
    start[0] = 777;
    assert_false(sf_shard_route_runs(p, &b, start));
    assert_int_equal(start[0], 777);
    sf_shard_plan_destroy(&p);
    sf_batch_fini(&b);

    /* Hash, range and semantic plans have no runs. */
    int64_t keys[500];
    for (size_t i = 0; i < 500; i++) keys[i] = (int64_t)(rng_next(&st) % 50);
    const sf_shard_strategy keyed[] = {SF_SHARD_HASH, SF_SHARD_RANGE, SF_SHARD_SEMANTIC};
    for (size_t i = 0; i < sizeof keyed / sizeof keyed[0]; i++) {
        cfg = shard_cfg(keyed[i], "k", 4);
        p = plan_i64(&cfg, SF_INT64, keys, 500, 128, shard);
        sf_schema ks1;
        schema1(&ks1, "k", SF_INT64);
        batch_i64(&b, &ks1, keys, 500, 0);
        for (uint32_t j = 0; j <= 4; j++) start[j] = 777;
        assert_false(sf_shard_route_runs(p, &b, start));
        for (uint32_t j = 0; j <= 4; j++) assert_int_equal(start[j], 777);
        sf_batch_fini(&b);
        sf_schema_fini(&ks1);
        sf_shard_plan_destroy(&p);
    }
    free(start);
    free(shard);
    sf_schema_fini(&s);
}

/* ---- hash --------------------------------------------------------------- */

/* Expected values from the xxHash project's own command-line tool, not from
 * this code: the canonical bytes of each key were written to a file with
 * Python's struct.pack('<q', v) (int64, timestamp) or struct.pack('<d', v)
 * (float64), or the raw string bytes, and hashed with `xxhsum -H64 FILE`
 * (xxhsum 0.8.1, Debian package xxhash). XXH64("") = ef46db3751d8e999 and
 * XXH64("abc") = 44bc2cf5ad770999 are also the reference values published
 * with xxHash. */
static void test_hash_known_values(void **state)
{
    sf_schema s;
    sf_batch b;

    schema1(&s, "k", SF_INT64);
    int64_t iv[5] = {0, 1, -1, 42, INT64_C(1234567890123)};
    uint64_t ih[5] = {UINT64_C(0x34c96acdcadb1bbb), UINT64_C(0x9f29cb17a2a49995),
                      UINT64_C(0x85d136adb773c6c9), UINT64_C(0xb556806fb6d14353),
                      UINT64_C(0xd9d5580c14aa025d)};
    batch_i64(&b, &s, iv, 5, 0);
    for (int i = 0; i < 5; i++) assert_int_equal(sf_shard_key_hash(&b.cols[0], i), ih[i]);

    /* Routing is hash % K. */
    sf_shard_config cfg = shard_cfg(SF_SHARD_HASH, "k", 7);
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    assert_false(sf_shard_plan_needs_prepass(p));
    assert_int_equal(sf_shard_plan_key_column(p), 0);
    OK(sf_shard_plan_finish(p, UINT64_MAX, 0, 0));
    uint32_t sh[5];
    OK(sf_shard_route(p, &b, sh));
    for (int i = 0; i < 5; i++) assert_int_equal(sh[i], ih[i] % 7);
    sf_shard_plan_destroy(&p);
    sf_batch_fini(&b);
    sf_schema_fini(&s);

    /* Timestamps hash as their int64 microseconds. */
    schema1(&s, "t", SF_TIMESTAMP);
    int64_t tv[1] = {INT64_C(1767225600000000)};   /* 2026-01-01T00:00:00 */
    batch_i64(&b, &s, tv, 1, 0);
    assert_int_equal(sf_shard_key_hash(&b.cols[0], 0), UINT64_C(0x1e4ec9226925e109));
    sf_batch_fini(&b);
    sf_schema_fini(&s);

    /* Floats: -0 folds to +0 (the all-zero bytes, like int64 0); every NaN
     * hashes as the quiet NaN 0x7ff8000000000000. */
    schema1(&s, "f", SF_FLOAT64);
    double nan_payload;
    uint64_t nan_bits = UINT64_C(0x7ff8000000000abc);
    memcpy(&nan_payload, &nan_bits, 8);
    double fv[6] = {1.5, -3.141592653589793, -0.0, 0.0, NAN, nan_payload};
    uint64_t fh[6] = {UINT64_C(0x49f7b96b6b5ccaf9), UINT64_C(0x073bc5af5e034048),
                      UINT64_C(0x34c96acdcadb1bbb), UINT64_C(0x34c96acdcadb1bbb),
                      UINT64_C(0xe9adb09fee122aac), UINT64_C(0xe9adb09fee122aac)};
    batch_f64(&b, &s, fv, 6, 0);
    for (int i = 0; i < 6; i++) assert_int_equal(sf_shard_key_hash(&b.cols[0], i), fh[i]);
    sf_batch_fini(&b);
    sf_schema_fini(&s);

    /* Strings: their bytes. */
    schema1(&s, "s", SF_STRING);
    const char *sv[3] = {"", "abc", "/api/search/query"};
    uint64_t sh64[3] = {UINT64_C(0xef46db3751d8e999), UINT64_C(0x44bc2cf5ad770999),
                        UINT64_C(0xea0fb4c1f27a96fd)};
    batch_str(&b, &s, sv, 3, 0);
    for (int i = 0; i < 3; i++) assert_int_equal(sf_shard_key_hash(&b.cols[0], i), sh64[i]);
    cfg = shard_cfg(SF_SHARD_HASH, "s", 5);
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    OK(sf_shard_plan_finish(p, UINT64_MAX, 0, 0));
    OK(sf_shard_route(p, &b, sh));
    for (int i = 0; i < 3; i++) assert_int_equal(sh[i], sh64[i] % 5);
    sf_shard_plan_destroy(&p);
    sf_batch_fini(&b);
    sf_schema_fini(&s);
}

static const char *const names[] = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta",
                                    "eta", "theta", "iota", "kappa", "lambda", "mu"};
#define NNAMES (sizeof names / sizeof names[0])

/* Routes string rows cut into batches of `step` (each batch with its own
 * dictionary, so codes differ between cuttings). */
static void route_strings(const sf_shard_plan *p, const sf_schema *s, const char **rows, size_t n,
                          size_t step, uint32_t *shard)
{
    for (size_t a = 0; a < n; a += step) {
        size_t m = n - a < step ? n - a : step;
        sf_batch b;
        batch_str(&b, s, rows + a, m, a);
        OK(sf_shard_route(p, &b, shard + a));
        sf_batch_fini(&b);
    }
}

static void test_hash_deterministic(void **state)
{
    const size_t n = 3000;
    const char **rows = malloc(n * sizeof *rows);
    uint64_t st = 99;
    for (size_t i = 0; i < n; i++) rows[i] = names[rng_next(&st) % NNAMES];
    sf_schema s;
    schema1(&s, "name", SF_STRING);
    sf_shard_config cfg = shard_cfg(SF_SHARD_HASH, "name", 4);
    sf_shard_plan *p1 = NULL, *p2 = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p1));
    OK(sf_shard_plan_create(&cfg, &s, WF, &p2));
    OK(sf_shard_plan_finish(p1, n, 0, 0));
    OK(sf_shard_plan_finish(p2, UINT64_MAX, 0, 0));
    uint32_t *a = malloc(n * sizeof *a), *b = malloc(n * sizeof *b), *c = malloc(n * sizeof *c);
    route_strings(p1, &s, rows, n, n, a);
    route_strings(p2, &s, rows, n, 7, b);
    route_strings(p1, &s, rows, n, 1, c);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(a[i], b[i]);
        assert_int_equal(a[i], c[i]);
    }
    /* Equal keys share a shard: the first row of each name fixes it. */
    uint32_t first[NNAMES];
    for (size_t k = 0; k < NNAMES; k++) first[k] = UINT32_MAX;
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (strcmp(names[k], rows[i]) != 0) k++;
        if (first[k] == UINT32_MAX) first[k] = a[i];
        assert_int_equal(a[i], first[k]);
    }
    /* A null key goes to shard 0. */
    sf_batch nb;
    const char *one[2] = {"x", "theta"};
    batch_str(&nb, &s, one, 2, 0);
    OK(sf_batch_set_null(&nb, 0, 0));
    uint32_t sh2[2];
    OK(sf_shard_route(p1, &nb, sh2));
    assert_int_equal(sh2[0], 0);
    sf_batch_fini(&nb);

    char *d1 = describe(p1), *d2 = describe(p2);
    assert_string_equal(d1, d2);
    assert_non_null(strstr(d1, "\"strategy\":\"hash\""));
    assert_non_null(strstr(d1, "\"key\":\"name\""));
    free(d1);
    free(d2);
    free(a);
    free(b);
    free(c);
    free(rows);
    sf_shard_plan_destroy(&p1);
    sf_shard_plan_destroy(&p2);
    sf_schema_fini(&s);
}

/* ---- range -------------------------------------------------------------- */

/* Shard sizes of routed rows. */
static void count_sizes(const uint32_t *shard, size_t n, int k, uint64_t *sizes)
{
    memset(sizes, 0, (size_t)k * sizeof *sizes);
    for (size_t i = 0; i < n; i++) {
        assert_true(shard[i] < (uint32_t)k);
        sizes[shard[i]]++;
    }
}

static uint64_t max_of(const uint64_t *v, int k)
{
    uint64_t m = 0;
    for (int i = 0; i < k; i++)
        if (v[i] > m) m = v[i];
    return m;
}

/* The 1.25x rule on Zipf keys, with the heavy-key exception checked against
 * exact key counts made here. */
static void check_range_zipf(size_t n, size_t nkeys, double zs, int k, uint64_t sample,
                             bool expect_heavy)
{
    int64_t *keys = malloc(n * sizeof *keys);
    uint32_t *shard = malloc(n * sizeof *shard);
    uint64_t *sizes = malloc((size_t)k * sizeof *sizes);
    zipf_keys(keys, n, nkeys, zs, 12345, -5000);
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "k", k);
    cfg.sample = sample;
    sf_shard_plan *p = plan_i64(&cfg, SF_INT64, keys, n, 4096, shard);
    uint64_t heaviest = check_keys(keys, shard, n, true);
    count_sizes(shard, n, k, sizes);
    double mean = (double)n / k;
    char *d = describe(p);
    bool noted = strstr(d, "\"heavy_keys\":[]") == NULL;
    assert_int_equal(noted, expect_heavy);
    assert_int_equal((double)heaviest > mean, expect_heavy);
    double mx = (double)max_of(sizes, k);
    if (!expect_heavy) {
        assert_true(mx <= 1.25 * mean);
    } else {
        /* The heavy key's shard holds little but that key. */
        assert_true(mx <= fmax(1.25 * mean, 1.05 * (double)heaviest));
    }
    double sp[1024];
    size_t ns = json_numbers(d, "splitters", sp, 1024);
    assert_true(ns <= (size_t)k - 1);
    for (size_t i = 1; i < ns; i++) assert_true(sp[i - 1] < sp[i]);
    free(d);
    sf_shard_plan_destroy(&p);
    free(keys);
    free(shard);
    free(sizes);
}

static void test_range_zipf_balance(void **state)
{
    /* 10000 keys, s = 1.1: the top key holds about 15 % of the rows. With
     * K = 4 (mean 25 %) no key is heavy; with K = 16 (mean 6.25 %) the top
     * two keys are. */
    check_range_zipf(200000, 10000, 1.1, 4, 20000, false);
    check_range_zipf(200000, 10000, 1.1, 16, 100000, true);
    /* Milder skew over many keys, many shards. */
    check_range_zipf(200000, 100000, 0.8, 32, 50000, false);
}

static void test_range_heavy_key(void **state)
{
    /* Half the rows carry key 777, the rest are spread over [0, 10^6). */
    const size_t n = 100000;
    const int k = 8;
    int64_t *keys = malloc(n * sizeof *keys);
    uint32_t *shard = malloc(n * sizeof *shard);
    uint64_t sizes[8], st = 3, heavy = 0;
    for (size_t i = 0; i < n; i++) {
        keys[i] = (i % 2 == 0) ? 777 : (int64_t)(rng_next(&st) % 1000000);
        if (keys[i] == 777) heavy++;
    }
    /* With a sample of every row the weights are exact: the minimal
     * capacity is the heavy key's count and its shard holds nothing else. */
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "k", k);
    cfg.sample = n;
    sf_shard_plan *p = plan_i64(&cfg, SF_INT64, keys, n, 1000, shard);
    check_keys(keys, shard, n, true);
    count_sizes(shard, n, k, sizes);
    assert_int_equal(max_of(sizes, k), heavy);
    char *d = describe(p);
    char want[256];
    snprintf(want, sizeof want,
             "\"heavy_keys\":[{\"key\":777,\"estimated_rows\":%llu,\"mean_shard_rows\":12500,",
             (unsigned long long)heavy);
    if (strstr(d, want) == NULL) fail_msg("%s not in %s", want, d);
    free(d);
    sf_shard_plan_destroy(&p);

    /* A 10 % sample estimates the heavy key within a few percent. */
    cfg.sample = 10000;
    p = plan_i64(&cfg, SF_INT64, keys, n, 999, shard);
    d = describe(p);
    const char *at = strstr(d, "\"heavy_keys\":[{\"key\":777,\"estimated_rows\":");
    assert_non_null(at);
    double est = strtod(at + strlen("\"heavy_keys\":[{\"key\":777,\"estimated_rows\":"), NULL);
    assert_true(fabs(est - (double)heavy) < 0.03 * (double)heavy);
    /* Only one heavy key. */
    assert_null(strstr(strstr(d, "\"heavy_keys\""), "},{"));
    free(d);
    sf_shard_plan_destroy(&p);
    free(keys);
    free(shard);
}

static void test_range_sample_independent_of_batches(void **state)
{
    const size_t n = 60000;
    int64_t *keys = malloc(n * sizeof *keys);
    uint32_t *s1 = malloc(n * sizeof *s1), *s2 = malloc(n * sizeof *s2);
    zipf_keys(keys, n, 5000, 0.9, 77, 0);
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "k", 6);
    cfg.sample = 3000;
    sf_shard_plan *a = plan_i64(&cfg, SF_INT64, keys, n, 1000, s1);
    sf_shard_plan *b = plan_i64(&cfg, SF_INT64, keys, n, 77, s2);
    char *da = describe(a), *db = describe(b);
    assert_string_equal(da, db);
    for (size_t i = 0; i < n; i++) assert_int_equal(s1[i], s2[i]);

    /* Batches observed in reverse order give the same sample too. */
    sf_schema s;
    schema1(&s, "k", SF_INT64);
    sf_shard_plan *c = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &c));
    for (size_t a0 = n; a0 > 0;) {
        size_t m = a0 >= 500 ? 500 : a0;
        a0 -= m;
        sf_batch bt;
        batch_i64(&bt, &s, keys + a0, m, a0);
        OK(sf_shard_plan_observe(c, &bt));
        sf_batch_fini(&bt);
    }
    OK(sf_shard_plan_finish(c, n, 0, 0));
    char *dc = describe(c);
    assert_string_equal(da, dc);

    /* Another seed draws another sample. */
    cfg.seed = 2;
    sf_shard_plan *e = plan_i64(&cfg, SF_INT64, keys, n, 1000, s2);
    char *de = describe(e);
    assert_string_not_equal(da, de);
    free(da);
    free(db);
    free(dc);
    free(de);
    sf_shard_plan_destroy(&a);
    sf_shard_plan_destroy(&b);
    sf_shard_plan_destroy(&c);
    sf_shard_plan_destroy(&e);
    sf_schema_fini(&s);
    free(keys);
    free(s1);
    free(s2);
}

static void test_range_float_nan_null(void **state)
{
    const size_t n = 4000;
    const int k = 4;
    double *v = malloc(n * sizeof *v);
    uint64_t st = 5;
    for (size_t i = 0; i < n; i++) v[i] = rng_u01(&st) * 2.0 - 1.0;
    v[10] = NAN;
    v[11] = -0.0;
    v[12] = 0.0;
    v[13] = -INFINITY;
    v[14] = INFINITY;
    sf_schema s;
    schema1(&s, "f", SF_FLOAT64);
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "f", k);
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    sf_batch b;
    batch_f64(&b, &s, v, n, 0);
    OK(sf_batch_set_null(&b, 0, 20));
    OK(sf_shard_plan_observe(p, &b));
    OK(sf_shard_plan_finish(p, n, 0, 0));
    uint32_t *sh = malloc(n * sizeof *sh);
    OK(sf_shard_route(p, &b, sh));
    assert_int_equal(sh[10], k - 1);     /* NaN: last shard */
    assert_int_equal(sh[20], 0);         /* null: shard 0 */
    assert_int_equal(sh[11], sh[12]);    /* -0 and +0 are one key */
    assert_int_equal(sh[13], 0);
    assert_int_equal(sh[14], k - 1);
    /* Ordered: shard never decreases with the key. */
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < n; j += 97)
            if (i != 10 && j != 10 && i != 20 && j != 20 && v[i] < v[j])
                assert_true(sh[i] <= sh[j]);
    char *d = describe(p);
    assert_non_null(strstr(d, "\"nan_rows\":1"));
    assert_non_null(strstr(d, "\"null_rows\":1"));
    uint64_t sizes[4];
    count_sizes(sh, n, k, sizes);
    assert_true((double)max_of(sizes, k) <= 1.25 * n / k);
    free(d);
    free(sh);
    free(v);
    sf_batch_fini(&b);
    sf_shard_plan_destroy(&p);
    sf_schema_fini(&s);
}

static void test_range_timestamp_splitters(void **state)
{
    /* One row per second over a day from 2026-01-01T00:00:00: with every
     * row sampled, K = 4 cuts at 06:00, 12:00 and 18:00 exactly. */
    const size_t n = 86400;
    int64_t *t = malloc(n * sizeof *t);
    uint32_t *sh = malloc(n * sizeof *sh);
    for (size_t i = 0; i < n; i++) t[i] = INT64_C(1767225600000000) + (int64_t)i * 1000000;
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "k", 4);
    cfg.sample = n;
    sf_shard_plan *p = plan_i64(&cfg, SF_TIMESTAMP, t, n, 10000, sh);
    char *d = describe(p);
    const char *want = "\"splitters\":[\"2026-01-01T06:00:00\",\"2026-01-01T12:00:00\","
                       "\"2026-01-01T18:00:00\"]";
    if (strstr(d, want) == NULL) fail_msg("%s not in %s", want, d);
    for (size_t i = 0; i < n; i++) assert_int_equal(sh[i], i / 21600);
    free(d);
    free(t);
    free(sh);
    sf_shard_plan_destroy(&p);
}

static void test_range_few_keys(void **state)
{
    /* Three distinct keys, eight shards: three shards used, each key whole. */
    int64_t keys[300];
    uint32_t sh[300];
    for (int i = 0; i < 300; i++) keys[i] = (i % 3) * 10;
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "k", 8);
    sf_shard_plan *p = plan_i64(&cfg, SF_INT64, keys, 300, 64, sh);
    for (int i = 0; i < 300; i++) assert_int_equal(sh[i], keys[i] / 10);
    char *d = describe(p);
    assert_non_null(strstr(d, "\"splitters\":[10,20]"));
    free(d);
    sf_shard_plan_destroy(&p);

    /* No rows at all: one (empty) range. */
    sf_schema s;
    schema1(&s, "k", SF_INT64);
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    OK(sf_shard_plan_finish(p, 0, 0, 0));
    sf_batch b;
    int64_t one = 5;
    batch_i64(&b, &s, &one, 1, 0);
    OK(sf_shard_route(p, &b, sh));
    assert_int_equal(sh[0], 0);
    sf_batch_fini(&b);
    sf_shard_plan_destroy(&p);
    sf_schema_fini(&s);
}

/* ---- configuration errors ----------------------------------------------- */

static void test_config_errors(void **state)
{
    sf_schema s;
    sf_schema_init(&s);
    OK(sf_schema_add(&s, "endpoint", SF_STRING));
    OK(sf_schema_add(&s, "latency_ms", SF_FLOAT64));
    OK(sf_schema_add(&s, "user_id", SF_INT64));
    sf_shard_plan *p = NULL;

    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "endpoint", 4);
    cfg.key_line = 12;
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_CONFIG);
    assert_null(p);
    const char *m = sf_error_message();
    assert_non_null(strstr(m, "flow.yaml:12:"));
    assert_non_null(strstr(m, "'endpoint'"));
    assert_non_null(strstr(m, "string"));
    assert_non_null(strstr(m, "range"));

    cfg = shard_cfg(SF_SHARD_SEMANTIC, "latency_ms", 4);
    cfg.key_line = 3;
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_CONFIG);
    m = sf_error_message();
    assert_non_null(strstr(m, "flow.yaml:3:"));
    assert_non_null(strstr(m, "float64"));
    assert_non_null(strstr(m, "semantic"));

    cfg = shard_cfg(SF_SHARD_HASH, "usr_id", 4);
    cfg.key_line = 5;
    assert_int_equal(sf_shard_plan_create(&cfg, &s, "jobs/nightly.yaml", &p), SF_ERR_CONFIG);
    m = sf_error_message();
    assert_non_null(strstr(m, "jobs/nightly.yaml:5:"));
    assert_non_null(strstr(m, "'usr_id'"));
    assert_non_null(strstr(m, "user_id"));   /* the columns that exist are listed */

    cfg = shard_cfg(SF_SHARD_HASH, NULL, 4);
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "shard.key is required"));

    cfg = shard_cfg(SF_SHARD_HASH, "user_id", 0);
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "shard.shards"));

    cfg = shard_cfg(SF_SHARD_RANGE, "user_id", 4);
    cfg.sample = 0;
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "shard.sample"));

    /* Range and semantic accept what the contract lists. */
    cfg = shard_cfg(SF_SHARD_RANGE, "latency_ms", 4);
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    assert_int_equal(sf_shard_plan_key_column(p), 1);
    assert_true(sf_shard_plan_needs_prepass(p));
    /* Routing before finish() is refused. */
    sf_batch b;
    OK(sf_batch_init(&b, &s, NULL, 1));
    b.nrows = 1;
    uint32_t sh;
    assert_int_equal(sf_shard_route(p, &b, &sh), SF_ERR_ARG);
    sf_batch_fini(&b);
    sf_shard_plan_destroy(&p);
    cfg = shard_cfg(SF_SHARD_SEMANTIC, "user_id", 4);
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    sf_shard_plan_destroy(&p);
    sf_shard_plan_destroy(&p);   /* NULL is fine */
    sf_schema_fini(&s);
}

/* ---- semantic ----------------------------------------------------------- */

/* Builds rows holding each key of keys[] counts[] times, shuffled. */
static const char **key_rows(const char *const *keys, const int *counts, size_t nk, size_t *n,
                             uint64_t seed)
{
    size_t total = 0;
    for (size_t i = 0; i < nk; i++) total += (size_t)counts[i];
    const char **rows = malloc(total * sizeof *rows);
    size_t r = 0;
    for (size_t i = 0; i < nk; i++)
        for (int c = 0; c < counts[i]; c++) rows[r++] = keys[i];
    uint64_t st = seed;
    for (size_t i = total; i > 1; i--) {
        size_t j = rng_next(&st) % i;
        const char *t = rows[i - 1];
        rows[i - 1] = rows[j];
        rows[j] = t;
    }
    *n = total;
    return rows;
}

static void observe_strings(sf_shard_plan *p, const sf_schema *s, const char **rows, size_t n,
                            size_t step)
{
    for (size_t a = 0; a < n; a += step) {
        size_t m = n - a < step ? n - a : step;
        sf_batch b;
        batch_str(&b, s, rows + a, m, a);
        OK(sf_shard_plan_observe(p, &b));
        sf_batch_fini(&b);
    }
}

static void test_semantic_lpt(void **state)
{
    /* Keys (each its own group, no map) with counts 50, 40, 30, 20, 20, 10,
     * 5 on K = 3. LPT by hand, loads after each step:
     *   a50 -> s0 (50,0,0)    b40 -> s1 (50,40,0)   c30 -> s2 (50,40,30)
     *   d20 -> s2 (50,40,50)  e20 -> s1 (50,60,50)  (d before e: name order)
     *   f10 -> s0 (60,60,50)  (tie of s0 and s2: lowest index)
     *   g5  -> s2 (60,60,55) */
    static const char *const keys[] = {"e", "a", "g", "c", "d", "b", "f"};
    static const int counts[] = {20, 50, 5, 30, 20, 40, 10};
    static const uint32_t want[] = {1, 0, 2, 2, 2, 1, 0};
    size_t n;
    const char **rows = key_rows(keys, counts, 7, &n, 11);
    sf_schema s;
    schema1(&s, "svc", SF_STRING);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "svc", 3);
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    observe_strings(p, &s, rows, n, 13);
    OK(sf_shard_plan_finish(p, n, 0, 0));
    uint32_t *sh = malloc(n * sizeof *sh);
    route_strings(p, &s, rows, n, 17, sh);
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (strcmp(keys[k], rows[i]) != 0) k++;
        assert_int_equal(sh[i], want[k]);
    }
    char *d = describe(p);
    const char *groups =
        "\"groups\":[{\"shard\":0,\"rows\":60,\"groups\":[{\"group\":\"a\",\"rows\":50},"
        "{\"group\":\"f\",\"rows\":10}]},{\"shard\":1,\"rows\":60,\"groups\":[{\"group\":\"b\","
        "\"rows\":40},{\"group\":\"e\",\"rows\":20}]},{\"shard\":2,\"rows\":55,\"groups\":[{"
        "\"group\":\"c\",\"rows\":30},{\"group\":\"d\",\"rows\":20},{\"group\":\"g\",\"rows\":5}]}]";
    if (strstr(d, groups) == NULL) fail_msg("%s not in %s", groups, d);
    /* Mean 175 / 3 = 58.3: no group alone is larger. */
    assert_non_null(strstr(d, "\"heavy_groups\":[]"));
    assert_non_null(strstr(d, "\"unmapped_keys\":7"));

    /* A key the pre-pass never saw goes to its hash modulo K. */
    sf_batch b;
    const char *fresh[1] = {"never-seen"};
    batch_str(&b, &s, fresh, 1, 0);
    uint32_t one;
    OK(sf_shard_route(p, &b, &one));
    assert_int_equal(one, sf_shard_key_hash(&b.cols[0], 0) % 3);
    sf_batch_fini(&b);

    /* The same rows in other batch sizes give the same plan. */
    sf_shard_plan *q = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &q));
    observe_strings(q, &s, rows, n, 1);
    OK(sf_shard_plan_finish(q, UINT64_MAX, 0, 0));
    char *dq = describe(q);
    assert_string_equal(d, dq);
    free(dq);
    free(d);
    free(sh);
    free((void *)rows);
    sf_shard_plan_destroy(&p);
    sf_shard_plan_destroy(&q);
    sf_schema_fini(&s);
}

static void test_semantic_int64_heavy(void **state)
{
    /* int64 keys: 7 x 600 rows, 1..40 x 10 rows each; K = 4, mean 250. Key 7
     * alone outweighs the mean and gets a shard of its own. */
    int64_t keys[1000];
    uint32_t sh[1000];
    size_t n = 0;
    for (int i = 0; i < 600; i++) keys[n++] = 7;
    for (int k = 1; k <= 40; k++)
        for (int i = 0; i < 10; i++) keys[n++] = k == 7 ? 1000 : k;
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "k", 4);
    sf_shard_plan *p = plan_i64(&cfg, SF_INT64, keys, n, 33, sh);
    check_keys(keys, sh, n, false);
    uint64_t sizes[4];
    count_sizes(sh, n, 4, sizes);
    /* LPT by hand: 7 (600) on s0; the 40 groups of 10 then go to the least
     * loaded of s1..s3 in turn (lowest index on ties): s1, s2, s3, s1, ...,
     * 14 groups on s1 and 13 on s2 and s3; s0 never gets more. */
    assert_int_equal(sizes[0], 600);
    assert_int_equal(sizes[1], 140);
    assert_int_equal(sizes[2], 130);
    assert_int_equal(sizes[3], 130);
    char *d = describe(p);
    assert_non_null(strstr(d, "\"heavy_groups\":[{\"group\":\"7\",\"rows\":600,\"mean_shard_rows\":250,"));
    free(d);
    sf_shard_plan_destroy(&p);
}

static char tmpdir[256];

static const char *write_file(const char *name, const char *text)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int setup_tmp(void **state)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/sf_test_shard_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_tmp(void **state)
{
    static const char *files[] = {"map.csv", "bad_header.csv", "dup.csv", "nogroup.csv",
                                  "intmap.csv", "badint.csv"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return 0;
}

static void test_semantic_map(void **state)
{
    char map[512];
    snprintf(map, sizeof map, "%s",
             write_file("map.csv", "key,group\n"
                                   "/api/search/query,search\n"
                                   "/api/search/suggest,search\n"
                                   "/api/cart/add,cart\n"
                                   "/api/cart/view,cart\n"
                                   "/api/cart/add,cart\n"));   /* a repeat, same group: fine */
    /* search = 30 + 25 = 55 rows, cart = 40 (+0: /api/cart/view absent from
     * the data), and /api/other/x (10 rows) unmapped, its own group.
     * LPT on K = 2: search -> s0, cart -> s1, /api/other/x -> s1. */
    static const char *const keys[] = {"/api/search/query", "/api/search/suggest", "/api/cart/add",
                                       "/api/other/x"};
    static const int counts[] = {30, 25, 40, 10};
    static const uint32_t want[] = {0, 0, 1, 1};
    size_t n;
    const char **rows = key_rows(keys, counts, 4, &n, 5);
    sf_schema s;
    schema1(&s, "endpoint", SF_STRING);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "endpoint", 2);
    cfg.map = map;
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, &s, WF, &p));
    observe_strings(p, &s, rows, n, 8);
    OK(sf_shard_plan_finish(p, n, 0, 0));
    uint32_t *sh = malloc(n * sizeof *sh);
    route_strings(p, &s, rows, n, 9, sh);
    for (size_t i = 0; i < n; i++) {
        size_t k = 0;
        while (strcmp(keys[k], rows[i]) != 0) k++;
        assert_int_equal(sh[i], want[k]);
    }
    /* A mapped key absent from the pre-pass follows its group. */
    sf_batch b;
    const char *view[1] = {"/api/cart/view"};
    batch_str(&b, &s, view, 1, 0);
    uint32_t one;
    OK(sf_shard_route(p, &b, &one));
    assert_int_equal(one, 1);
    sf_batch_fini(&b);
    char *d = describe(p);
    assert_non_null(strstr(d, "\"unmapped_keys\":1"));
    assert_non_null(strstr(d, "\"map_keys\":4"));
    const char *g = "\"groups\":[{\"shard\":0,\"rows\":55,\"groups\":[{\"group\":\"search\","
                    "\"rows\":55}]},{\"shard\":1,\"rows\":50,\"groups\":[{\"group\":\"cart\","
                    "\"rows\":40},{\"group\":\"/api/other/x\",\"rows\":10,\"unmapped\":true}]}]";
    if (strstr(d, g) == NULL) fail_msg("%s not in %s", g, d);
    free(d);
    free(sh);
    free((void *)rows);
    sf_shard_plan_destroy(&p);
    sf_schema_fini(&s);

    /* int64 keys in a map: "007" names key 7. */
    snprintf(map, sizeof map, "%s", write_file("intmap.csv", "key,group\n1,odd\n3,odd\n007,odd\n2,even\n"));
    int64_t ik[8] = {1, 2, 3, 7, 1, 2, 9, 9};
    uint32_t ish[8];
    cfg = shard_cfg(SF_SHARD_SEMANTIC, "k", 2);
    cfg.map = map;
    /* odd = 4 rows, even = 2, "9" (unmapped) = 2: odd -> s0; "9" and even
     * tie at 2 rows, "9" < "even" by name -> s1; even -> s1. */
    p = plan_i64(&cfg, SF_INT64, ik, 8, 3, ish);
    uint32_t iw[8] = {0, 1, 0, 0, 0, 1, 1, 1};
    for (int i = 0; i < 8; i++) assert_int_equal(ish[i], iw[i]);
    sf_shard_plan_destroy(&p);
}

static void test_semantic_bad_map(void **state)
{
    sf_schema s;
    schema1(&s, "endpoint", SF_STRING);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "endpoint", 2);
    sf_shard_plan *p = NULL;
    char path[512];

    snprintf(path, sizeof path, "%s/missing.csv", tmpdir);
    cfg.map = path;
    assert_int_not_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_OK);
    assert_null(p);
    assert_non_null(strstr(sf_error_message(), "missing.csv"));
    assert_non_null(strstr(sf_error_message(), "shard.map"));

    snprintf(path, sizeof path, "%s", write_file("bad_header.csv", "endpoint,domain\n/a,x\n"));
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_PARSE);
    if (strstr(sf_error_message(), "bad_header.csv:1:") == NULL ||
        strstr(sf_error_message(), "'key,group'") == NULL ||
        strstr(sf_error_message(), "'endpoint,domain'") == NULL)
        fail_msg("unexpected message: %s", sf_error_message());

    snprintf(path, sizeof path, "%s", write_file("dup.csv", "key,group\n/a,x\n/b,y\n/a,z\n"));
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_PARSE);
    if (strstr(sf_error_message(), "dup.csv:4:") == NULL ||
        strstr(sf_error_message(), "'/a'") == NULL || strstr(sf_error_message(), "line 2") == NULL)
        fail_msg("unexpected message: %s", sf_error_message());

    snprintf(path, sizeof path, "%s", write_file("nogroup.csv", "key,group\n/a,x\n/b,\n"));
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_PARSE);
    if (strstr(sf_error_message(), "nogroup.csv:3:") == NULL ||
        strstr(sf_error_message(), "empty group") == NULL)
        fail_msg("unexpected message: %s", sf_error_message());
    sf_schema_fini(&s);

    schema1(&s, "user_id", SF_INT64);
    cfg = shard_cfg(SF_SHARD_SEMANTIC, "user_id", 2);
    snprintf(path, sizeof path, "%s", write_file("badint.csv", "key,group\n12,a\nbob,b\n"));
    cfg.map = path;
    assert_int_equal(sf_shard_plan_create(&cfg, &s, WF, &p), SF_ERR_PARSE);
    if (strstr(sf_error_message(), "badint.csv:3:") == NULL ||
        strstr(sf_error_message(), "'bob'") == NULL || strstr(sf_error_message(), "int64") == NULL)
        fail_msg("unexpected message: %s", sf_error_message());
    assert_null(p);
    sf_schema_fini(&s);
}

/* ---- on the synthetic request log ---------------------------------------- */

static sf_reader *open_requests(uint64_t rows, double zipf, uint64_t users)
{
    sf_input_config ic;
    sf_input_config_defaults(&ic);
    ic.format = SF_INPUT_SYNTHETIC;
    ic.generator = "requests";
    ic.rows = rows;
    ic.zipf = zipf;
    ic.users = users;
    ic.seed = 42;
    ic.batch_rows = 8192;
    sf_reader *r = NULL;
    OK(sf_reader_open(&ic, &r));   /* the reader borrows the strings */
    return r;
}

/* Runs plan p over the reader: pre-pass if needed, finish, then routes every
 * row, writing user_id keys (if col >= 0) and shards. */
static void run_reader(sf_reader *r, sf_shard_plan *p, int col, int64_t *keys, uint32_t *shard)
{
    sf_batch b;
    bool eof = false;
    OK(sf_reader_batch_init(r, &b));
    if (sf_shard_plan_needs_prepass(p)) {
        for (;;) {
            OK(sf_reader_next(r, &b, &eof));
            if (eof) break;
            OK(sf_shard_plan_observe(p, &b));
        }
        OK(sf_reader_rewind(r));
    }
    OK(sf_shard_plan_finish(p, sf_reader_total_rows(r), 0, 0));
    for (;;) {
        OK(sf_reader_next(r, &b, &eof));
        if (eof) break;
        OK(sf_shard_route(p, &b, shard + b.first_row));
        if (col >= 0)
            for (size_t i = 0; i < b.nrows; i++) keys[b.first_row + i] = b.cols[col].i64[i];
    }
    sf_batch_fini(&b);
}

static void test_requests_range_and_hash(void **state)
{
    const uint64_t n = 200000;
    int64_t *keys = malloc(n * sizeof *keys);
    uint32_t *sh = malloc(n * sizeof *sh);
    uint64_t sizes[16];
    for (int skew = 0; skew < 2; skew++) {
        double z = skew ? 1.1 : 0.0;
        sf_reader *r = open_requests(n, z, 100000);
        const sf_schema *sch = sf_reader_schema(r);
        int uc = sf_schema_find(sch, "user_id"), tc = sf_schema_find(sch, "timestamp");
        assert_true(uc >= 0 && tc >= 0);

        /* Range on user_id, K = 16. */
        sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "user_id", 16);
        sf_shard_plan *p = NULL;
        OK(sf_shard_plan_create(&cfg, sch, WF, &p));
        run_reader(r, p, uc, keys, sh);
        uint64_t heaviest = check_keys(keys, sh, n, true);
        count_sizes(sh, n, 16, sizes);
        double mean = (double)n / 16, mx = (double)max_of(sizes, 16);
        char *d = describe(p);
        bool noted = strstr(d, "\"heavy_keys\":[]") == NULL;
        if ((double)heaviest > 1.1 * mean) assert_true(noted);
        if ((double)heaviest < 0.9 * mean) assert_false(noted);
        if (!noted)
            assert_true(mx <= 1.25 * mean);
        else
            assert_true(mx <= fmax(1.25 * mean, 1.05 * (double)heaviest));
        free(d);
        sf_shard_plan_destroy(&p);
        OK(sf_reader_rewind(r));

        /* Range on the timestamp: nearly uniform, no heavy key. */
        cfg = shard_cfg(SF_SHARD_RANGE, "timestamp", 16);
        OK(sf_shard_plan_create(&cfg, sch, WF, &p));
        run_reader(r, p, tc, keys, sh);
        check_keys(keys, sh, n, true);
        count_sizes(sh, n, 16, sizes);
        assert_true((double)max_of(sizes, 16) <= 1.25 * mean);
        d = describe(p);
        assert_non_null(strstr(d, "\"heavy_keys\":[]"));
        assert_non_null(strstr(d, "\"splitters\":[\"2026-01-01T"));
        free(d);
        sf_shard_plan_destroy(&p);
        OK(sf_reader_rewind(r));

        /* Hash on user_id: equal keys share a shard. */
        cfg = shard_cfg(SF_SHARD_HASH, "user_id", 16);
        OK(sf_shard_plan_create(&cfg, sch, WF, &p));
        run_reader(r, p, uc, keys, sh);
        check_keys(keys, sh, n, false);
        sf_shard_plan_destroy(&p);
        sf_reader_destroy(&r);
    }
    free(keys);
    free(sh);
}

static void test_requests_semantic(void **state)
{
    /* endpoint -> service, with the map made from the service column: every
     * endpoint of a service in one shard; compared with service groups
     * counted here. */
    const uint64_t n = 100000;
    sf_reader *r = open_requests(n, 1.1, 1000);
    const sf_schema *sch = sf_reader_schema(r);
    int ec = sf_schema_find(sch, "endpoint"), sc = sf_schema_find(sch, "service");
    assert_true(ec >= 0 && sc >= 0);
    char map[512];
    snprintf(map, sizeof map, "%s/map.csv", tmpdir);
    FILE *f = fopen(map, "w");
    assert_non_null(f);
    fputs("key,group\n", f);
    sf_batch b;
    bool eof = false;
    OK(sf_reader_batch_init(r, &b));
    /* Endpoints are "/api/<service>/<verb>": the map groups by service. */
    char seen[64][64];
    int nseen = 0;
    for (;;) {
        OK(sf_reader_next(r, &b, &eof));
        if (eof) break;
        for (uint32_t c = 0; c < b.cols[ec].dict.n; c++) {
            size_t len;
            const char *e = sf_dict_str(&b.cols[ec].dict, c, &len);
            char ep[64];
            snprintf(ep, sizeof ep, "%.*s", (int)len, e);
            int k = 0;
            while (k < nseen && strcmp(seen[k], ep) != 0) k++;
            if (k < nseen || nseen == 64) continue;
            snprintf(seen[nseen++], 64, "%s", ep);
            const char *svc = ep + 5, *slash = strchr(svc, '/');
            assert_non_null(slash);
            fprintf(f, "%s,%.*s\n", ep, (int)(slash - svc), svc);
        }
    }
    fclose(f);
    OK(sf_reader_rewind(r));

    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "endpoint", 4);
    cfg.map = map;
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(&cfg, sch, WF, &p));
    for (;;) {
        OK(sf_reader_next(r, &b, &eof));
        if (eof) break;
        OK(sf_shard_plan_observe(p, &b));
    }
    OK(sf_reader_rewind(r));
    OK(sf_shard_plan_finish(p, n, 0, 0));
    /* Service -> shard must be a function; endpoint groups are services. */
    char svc_name[32][32];
    uint32_t svc_shard[32];
    int nsvc = 0;
    uint32_t *sh = malloc(8192 * sizeof *sh);
    for (;;) {
        OK(sf_reader_next(r, &b, &eof));
        if (eof) break;
        OK(sf_shard_route(p, &b, sh));
        for (size_t i = 0; i < b.nrows; i++) {
            size_t len;
            const char *sv = sf_dict_str(&b.cols[sc].dict, b.cols[sc].code[i], &len);
            int k = 0;
            while (k < nsvc && (strlen(svc_name[k]) != len || memcmp(svc_name[k], sv, len) != 0)) k++;
            if (k == nsvc) {
                assert_true(nsvc < 32);
                snprintf(svc_name[nsvc], 32, "%.*s", (int)len, sv);
                svc_shard[nsvc++] = sh[i];
            }
            assert_int_equal(sh[i], svc_shard[k]);
        }
    }
    char *d = describe(p);
    assert_non_null(strstr(d, "\"unmapped_keys\":0"));
    free(d);
    free(sh);
    sf_batch_fini(&b);
    sf_shard_plan_destroy(&p);
    sf_reader_destroy(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_imbalance),
        cmocka_unit_test(test_size_rows),
        cmocka_unit_test(test_size_bytes),
        cmocka_unit_test(test_size_route_runs),
        cmocka_unit_test(test_hash_known_values),
        cmocka_unit_test(test_hash_deterministic),
        cmocka_unit_test(test_range_zipf_balance),
        cmocka_unit_test(test_range_heavy_key),
        cmocka_unit_test(test_range_sample_independent_of_batches),
        cmocka_unit_test(test_range_float_nan_null),
        cmocka_unit_test(test_range_timestamp_splitters),
        cmocka_unit_test(test_range_few_keys),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_semantic_lpt),
        cmocka_unit_test(test_semantic_int64_heavy),
        cmocka_unit_test(test_semantic_map),
        cmocka_unit_test(test_semantic_bad_map),
        cmocka_unit_test(test_requests_range_and_hash),
        cmocka_unit_test(test_requests_semantic),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
