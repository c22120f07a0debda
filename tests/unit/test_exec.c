/* Unit tests of the per-rank executor (exec/executor.c).
 *
 * Two kinds of agents run in it: the built-in `stats` agent, whose results
 * are compared with the same agent driven by hand (one state, one process()
 * call per batch) and across thread counts and morsel sizes; and a counting
 * agent defined here, whose state (rows, morsels, a hash of the global index
 * of every row seen) is compared with closed forms computed from the batch
 * sizes. The counting agent can also fail on a chosen row, to check that an
 * agent's error reaches the caller with its message. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/exec.h"

enum { COL_V, COL_N, COL_KEY, COL_TS, COL_REGION, NCOLS };

static sf_schema schema;

/* ---- random data ----------------------------------------------------------- */

static uint64_t rng_state;

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd(void) { return mix64(rng_state += 0x9E3779B97F4A7C15ull); }

static const char *const keys[] = {"search", "auth", "checkout", "", "catalog", "payments", "a/b"};
static const char *const regions[] = {"eu", "us", "ap"};

/* A batch of n random rows whose global indices start at first_row. */
static void make_batch(sf_batch *b, size_t n, uint64_t first_row)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        uint64_t u = rnd();
        /* Values with few significant bits and a wide exponent range, some
         * negative, some -0.0. */
        double v = (double)(int64_t)(u % 20001 - 10000) * ldexp(1.0, (int)(rnd() % 60) - 30);
        if (u % 97 == 0) v = -0.0;
        b->cols[COL_V].f64[r] = v;
        b->cols[COL_N].i64[r] = (int64_t)(rnd() % 2000001) - 1000000;
        b->cols[COL_TS].i64[r] = INT64_C(1767225600000000) + (int64_t)(rnd() % 86400000000ull);
        uint32_t code;
        const char *k = keys[rnd() % (sizeof keys / sizeof keys[0])];
        assert_int_equal(sf_dict_intern(&b->cols[COL_KEY].dict, k, strlen(k), &code), SF_OK);
        b->cols[COL_KEY].code[r] = code;
        const char *g = regions[rnd() % 3];
        assert_int_equal(sf_dict_intern(&b->cols[COL_REGION].dict, g, strlen(g), &code), SF_OK);
        b->cols[COL_REGION].code[r] = code;
        if (rnd() % 9 == 0) assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
        if (rnd() % 13 == 0) assert_int_equal(sf_batch_set_null(b, COL_KEY, r), SF_OK);
        if (rnd() % 17 == 0) assert_int_equal(sf_batch_set_null(b, COL_N, r), SF_OK);
    }
    b->nrows = n;
    b->first_row = first_row;
}

/* ---- a counting agent ------------------------------------------------------ */

typedef struct count_state {
    uint64_t rows, morsels, hash; /* hash: sum of mix64(global row) mod 2^64 */
    uint64_t max_morsel;
} count_state;

/* Global row at which process() fails (UINT64_MAX: never). Read by every
 * thread, written only between calls. */
static uint64_t fail_row = UINT64_MAX;

static sf_status count_init(void *s, const sf_agent_config *cfg)
{
    (void)cfg;
    memset(s, 0, sizeof(count_state));
    return SF_OK;
}

static sf_status count_process(void *st, const sf_batch *b, const sf_rows *rows)
{
    count_state *s = st;
    if (rows->sel != NULL)
        return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "count: unexpected selection");
    size_t begin = rows->begin, end = rows->begin + rows->n;
    if (end < begin || end > b->nrows)
        return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "count: bad morsel [%zu, %zu) of %zu",
                            begin, end, b->nrows);
    for (size_t r = begin; r < end; r++) {
        uint64_t g = b->first_row + r;
        if (g == fail_row)
            return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, "count: planted failure at row %llu",
                                (unsigned long long)g);
        s->hash += mix64(g);
    }
    s->rows += end - begin;
    s->morsels++;
    if (end - begin > s->max_morsel) s->max_morsel = end - begin;
    return SF_OK;
}

static sf_status count_merge(void *into, const void *from)
{
    count_state *a = into;
    const count_state *b = from;
    a->rows += b->rows;
    a->morsels += b->morsels;
    a->hash += b->hash;
    if (b->max_morsel > a->max_morsel) a->max_morsel = b->max_morsel;
    return SF_OK;
}

static sf_status count_encode(const void *st, sf_buf *out)
{
    const count_state *s = st;
    SF_CALL(sf_buf_put_u64(out, s->rows));
    SF_CALL(sf_buf_put_u64(out, s->morsels));
    SF_CALL(sf_buf_put_u64(out, s->hash));
    return sf_buf_put_u64(out, s->max_morsel);
}

static sf_status count_decode(void *st, const void *bytes, size_t n)
{
    count_state *s = st;
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    SF_CALL(sf_rd_u64(&rd, &s->rows));
    SF_CALL(sf_rd_u64(&rd, &s->morsels));
    SF_CALL(sf_rd_u64(&rd, &s->hash));
    SF_CALL(sf_rd_u64(&rd, &s->max_morsel));
    SF_CHECK(rd.off == n, SF_ERR_PARSE, "count: %zu trailing bytes", n - rd.off);
    return SF_OK;
}

static sf_status count_report(const void *st, sf_json *j)
{
    const count_state *s = st;
    sf_json_obj_begin(j);
    sf_json_key(j, "rows");
    sf_json_uint(j, s->rows);
    sf_json_key(j, "morsels");
    sf_json_uint(j, s->morsels);
    sf_json_key(j, "hash");
    sf_json_uint(j, s->hash);
    sf_json_key(j, "max_morsel");
    sf_json_uint(j, s->max_morsel);
    sf_json_obj_end(j);
    return j->rc;
}

static void count_destroy(void *s) { (void)s; }

static const sf_agent_ops count_ops = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "test_count",
    .aspect = "testing",
    .state_size = sizeof(count_state),
    .check = NULL,
    .init = count_init,
    .process = count_process,
    .merge = count_merge,
    .encode = count_encode,
    .decode = count_decode,
    .report = count_report,
    .destroy = count_destroy,
};

/* ---- agent configurations ---------------------------------------------------- */

static const sf_agent_ops *stats_ops;
static const int by_key[] = {COL_KEY};
static const int by_key_region[] = {COL_REGION, COL_KEY};
static sf_agent_config cfg_v_by_key, cfg_n, cfg_ts_by2, cfg_v_plain, cfg_count;

static sf_agent_config stats_cfg(const char *id, int col, int nby, const int *by)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = "stats";
    c.id = id;
    c.column = schema.fields[col].name;
    c.col = col;
    c.nby = nby;
    c.by_col = by;
    c.schema = &schema;
    c.file = "wf.yaml";
    c.line = 3;
    return c;
}

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "key", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "ts", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "region", SF_STRING) != SF_OK) return -1;
    sf_agents_register_builtin();
    stats_ops = sf_agent_find("stats");
    if (stats_ops == NULL) return -1;
    if (sf_agent_register(&count_ops) != SF_OK) return -1;
    if (sf_agent_find("test_count") != &count_ops) return -1;
    cfg_v_by_key = stats_cfg("v_by_key", COL_V, 1, by_key);
    cfg_n = stats_cfg("n", COL_N, 0, NULL);
    cfg_ts_by2 = stats_cfg("ts_by2", COL_TS, 2, by_key_region);
    cfg_v_plain = stats_cfg("v", COL_V, 0, NULL);
    memset(&cfg_count, 0, sizeof cfg_count);
    cfg_count.agent = "test_count";
    cfg_count.id = "count";
    cfg_count.col = -1;
    cfg_count.schema = &schema;
    const sf_agent_config *all[] = {&cfg_v_by_key, &cfg_n, &cfg_ts_by2, &cfg_v_plain};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        if (stats_ops->check(all[i]) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* ---- building blocks --------------------------------------------------------- */

/* A set of batches with distinct global row ranges. */
typedef struct batches {
    int nb;
    sf_batch b[8];
    const sf_batch *p[8];
    size_t total;
} batches;

static void make_batches(batches *bs, const size_t *sizes, int nb, uint64_t seed, uint64_t first)
{
    rng_state = seed;
    bs->nb = nb;
    bs->total = 0;
    for (int i = 0; i < nb; i++) {
        make_batch(&bs->b[i], sizes[i], first + bs->total);
        bs->p[i] = &bs->b[i];
        bs->total += sizes[i];
    }
}

static void free_batches(batches *bs)
{
    for (int i = 0; i < bs->nb; i++) sf_batch_fini(&bs->b[i]);
}

/* Closed forms for the counting agent over bs with morsels of m rows. */
static uint64_t want_morsels(const batches *bs, size_t m)
{
    uint64_t k = 0;
    for (int i = 0; i < bs->nb; i++) k += (bs->b[i].nrows + m - 1) / m;
    return k;
}

static uint64_t want_hash(const batches *bs)
{
    uint64_t h = 0;
    for (int i = 0; i < bs->nb; i++)
        for (size_t r = 0; r < bs->b[i].nrows; r++) h += mix64(bs->b[i].first_row + r);
    return h;
}

static uint64_t want_max_morsel(const batches *bs, size_t m)
{
    uint64_t mx = 0;
    for (int i = 0; i < bs->nb; i++) {
        uint64_t x = bs->b[i].nrows < m ? bs->b[i].nrows : m;
        if (x > mx) mx = x;
    }
    return mx;
}

static sf_exec *new_exec(const sf_agent_config *const *cfgs, int n, int threads, size_t morsel)
{
    sf_exec_agent a[8];
    memset(a, 0, sizeof a);
    assert_true(n <= 8);
    for (int i = 0; i < n; i++) {
        a[i].cfg = cfgs[i];
        a[i].ops = strcmp(cfgs[i]->agent, "stats") == 0 ? stats_ops : &count_ops;
    }
    sf_exec *x = NULL;
    assert_int_equal(sf_exec_create(a, n, threads, morsel, &x), SF_OK);
    assert_non_null(x);
    return x;
}

static sf_buf encode(sf_exec *x)
{
    sf_buf b;
    sf_buf_init(&b);
    assert_int_equal(sf_exec_encode(x, &b), SF_OK);
    return b;
}

/* The report of agents [a0, a1) as a JSON object text (caller frees). */
static char *report(sf_exec *x, const sf_buf *enc, int a0, int a1)
{
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    assert_int_equal(sf_exec_report(x, enc->data, enc->len, a0, a1, &j), SF_OK);
    sf_json_obj_end(&j);
    assert_int_equal(j.rc, SF_OK);
    char *t = malloc(j.out.len + 1);
    assert_non_null(t);
    memcpy(t, j.out.data, j.out.len);
    t[j.out.len] = '\0';
    sf_json_fini(&j);
    return t;
}

/* The second path: each agent driven by hand, one state, one process() call
 * per whole batch, reports of agents [a0, a1) written under their ids. */
static char *report_by_hand(const sf_agent_config *const *cfgs, int n, const batches *bs, int a0,
                            int a1)
{
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    for (int a = 0; a < n; a++) {
        const sf_agent_ops *ops = strcmp(cfgs[a]->agent, "stats") == 0 ? stats_ops : &count_ops;
        void *s = calloc(1, ops->state_size);
        assert_non_null(s);
        assert_int_equal(ops->init(s, cfgs[a]), SF_OK);
        /* The executor makes no morsel of an empty batch; neither do we. */
        for (int i = 0; i < bs->nb; i++)
            if (bs->b[i].nrows > 0)
                assert_int_equal(ops->process(s, &bs->b[i], &(sf_rows){0, bs->b[i].nrows, NULL, SF_ROWS_NO_SHARD}), SF_OK);
        if (a >= a0 && a < a1) {
            sf_json_key(&j, cfgs[a]->id);
            assert_int_equal(ops->report(s, &j), SF_OK);
        }
        ops->destroy(s);
        free(s);
    }
    sf_json_obj_end(&j);
    assert_int_equal(j.rc, SF_OK);
    char *t = malloc(j.out.len + 1);
    assert_non_null(t);
    memcpy(t, j.out.data, j.out.len);
    t[j.out.len] = '\0';
    sf_json_fini(&j);
    return t;
}

static count_state decode_count(const uint8_t *seg, size_t n)
{
    count_state c;
    assert_int_equal(count_decode(&c, seg, n), SF_OK);
    return c;
}

/* The encoding of agent a inside an executor encoding (for each agent: u64
 * length, then the agent's bytes; exec/executor.c). */
static void agent_bytes(const sf_buf *enc, int a, const uint8_t **p, size_t *n)
{
    sf_rd rd;
    sf_rd_init(&rd, enc->data, enc->len);
    for (int i = 0;; i++) {
        uint64_t len;
        assert_int_equal(sf_rd_u64(&rd, &len), SF_OK);
        assert_int_equal(sf_rd_bytes(&rd, (size_t)len, p), SF_OK);
        *n = (size_t)len;
        if (i == a) return;
    }
}

static const size_t sizes_a[] = {1000, 1, 0, 4099, 257, 3000};
static const int nsizes_a = 6;

static const sf_agent_config *const stats_set[] = {&cfg_v_by_key, &cfg_n, &cfg_ts_by2, &cfg_v_plain};

/* ---- tests ------------------------------------------------------------------ */

/* Encodings and reports do not depend on threads or morsels, and equal the
 * agents driven by hand. */
static void test_threads_and_morsels(void **st)
{
    (void)st;
    batches bs;
    make_batches(&bs, sizes_a, nsizes_a, 11, 0);
    char *want = report_by_hand(stats_set, 4, &bs, 0, 4);
    sf_buf ref = {0};
    const int threads[] = {1, 2, 4};
    const size_t morsels[] = {1, 7, 64, 1000, 4099, 100000};
    for (size_t t = 0; t < 3; t++)
        for (size_t m = 0; m < sizeof morsels / sizeof morsels[0]; m++) {
            sf_exec *x = new_exec(stats_set, 4, threads[t], morsels[m]);
            /* Several calls, as a pass makes them. */
            assert_int_equal(sf_exec_process(x, bs.p, 2), SF_OK);
            assert_int_equal(sf_exec_process(x, bs.p + 2, bs.nb - 2), SF_OK);
            assert_int_equal(sf_exec_rows(x), bs.total);
            sf_buf enc = encode(x);
            if (ref.data == NULL) {
                ref = enc;
            } else {
                if (enc.len != ref.len || memcmp(enc.data, ref.data, ref.len) != 0)
                    fail_msg("threads %d, morsel %zu: encoding differs from threads 1, morsel 1",
                             threads[t], morsels[m]);
                sf_buf_fini(&enc);
            }
            char *got = report(x, &ref, 0, 4);
            assert_string_equal(got, want);
            free(got);
            sf_exec_destroy(&x);
            assert_null(x);
        }
    sf_buf_fini(&ref);
    free(want);
    free_batches(&bs);
}

/* Every row goes to exactly one morsel, morsels never span batches and hold
 * at most morsel_rows rows. */
static void test_every_row_once(void **st)
{
    (void)st;
    batches bs;
    make_batches(&bs, sizes_a, nsizes_a, 12, 1000000);
    const sf_agent_config *cs[] = {&cfg_count};
    const int threads[] = {1, 2, 4};
    const size_t morsels[] = {1, 3, 256, 1000, 1001, 5000};
    for (size_t t = 0; t < 3; t++)
        for (size_t m = 0; m < sizeof morsels / sizeof morsels[0]; m++) {
            sf_exec *x = new_exec(cs, 1, threads[t], morsels[m]);
            assert_int_equal(sf_exec_process(x, bs.p, bs.nb), SF_OK);
            sf_buf enc = encode(x);
            const uint8_t *p;
            size_t n;
            agent_bytes(&enc, 0, &p, &n);
            count_state c = decode_count(p, n);
            assert_int_equal(c.rows, bs.total);
            assert_int_equal(c.hash, want_hash(&bs));
            assert_int_equal(c.morsels, want_morsels(&bs, morsels[m]));
            assert_int_equal(c.max_morsel, want_max_morsel(&bs, morsels[m]));
            /* Encoding twice does not count the thread states twice. */
            sf_buf again = encode(x);
            assert_int_equal(again.len, enc.len);
            assert_memory_equal(again.data, enc.data, enc.len);
            sf_buf_fini(&again);
            sf_buf_fini(&enc);
            sf_exec_destroy(&x);
        }
    /* No batches at all, and only empty ones: nothing processed. */
    sf_exec *x = new_exec(cs, 1, 2, 100);
    assert_int_equal(sf_exec_process(x, NULL, 0), SF_OK);
    assert_int_equal(sf_exec_process(x, bs.p + 2, 1), SF_OK); /* the batch of 0 rows */
    sf_buf enc = encode(x);
    const uint8_t *p;
    size_t n;
    agent_bytes(&enc, 0, &p, &n);
    count_state c = decode_count(p, n);
    assert_int_equal(c.rows, 0);
    assert_int_equal(c.morsels, 0);
    assert_int_equal(sf_exec_rows(x), 0);
    sf_buf_fini(&enc);
    sf_exec_destroy(&x);
    sf_exec_destroy(&x); /* NULL is fine */
    free_batches(&bs);
}

typedef struct side_ctx {
    atomic_int calls;
    sf_status ret;
    /* Real work the side function does: fills a batch while morsels run. */
    sf_batch *fill;
} side_ctx;

static sf_status side_fn(void *p)
{
    side_ctx *s = p;
    atomic_fetch_add(&s->calls, 1);
    if (s->fill != NULL) {
        for (size_t r = 0; r < s->fill->nrows; r++) s->fill->cols[COL_N].i64[r] = (int64_t)r * 3;
    }
    if (s->ret != SF_OK) return sf_error_set(s->ret, __FILE__, __LINE__, "side: planted failure 17");
    return SF_OK;
}

/* The side function runs exactly once per call, every row is still
 * processed, and the results equal sf_exec_process's. */
static void test_overlap(void **st)
{
    (void)st;
    batches bs;
    make_batches(&bs, sizes_a, nsizes_a, 13, 77);
    sf_batch other;
    make_batch(&other, 500, 0);
    const sf_agent_config *cs[] = {&cfg_v_by_key, &cfg_n, &cfg_count};
    char *want = report_by_hand(cs, 2, &bs, 0, 2);

    const int threads[] = {1, 2, 4};
    const size_t morsels[] = {1, 100, 1000, 100000};
    for (size_t t = 0; t < 3; t++)
        for (size_t m = 0; m < sizeof morsels / sizeof morsels[0]; m++) {
            sf_exec *x = new_exec(cs, 3, threads[t], morsels[m]);
            side_ctx sc = {.ret = SF_OK, .fill = &other};
            atomic_init(&sc.calls, 0);
            assert_int_equal(sf_exec_process_overlap(x, bs.p, 3, side_fn, &sc), SF_OK);
            assert_int_equal(atomic_load(&sc.calls), 1);
            assert_int_equal(sf_exec_process_overlap(x, bs.p + 3, bs.nb - 3, side_fn, &sc), SF_OK);
            assert_int_equal(atomic_load(&sc.calls), 2);
            /* With nothing to process the side work still happens once. */
            assert_int_equal(sf_exec_process_overlap(x, NULL, 0, side_fn, &sc), SF_OK);
            assert_int_equal(atomic_load(&sc.calls), 3);
            assert_int_equal(other.cols[COL_N].i64[499], 499 * 3);
            other.cols[COL_N].i64[499] = 0;
            assert_int_equal(sf_exec_rows(x), bs.total);

            sf_buf enc = encode(x);
            const uint8_t *p;
            size_t n;
            agent_bytes(&enc, 2, &p, &n);
            count_state c = decode_count(p, n);
            assert_int_equal(c.rows, bs.total);
            assert_int_equal(c.hash, want_hash(&bs));
            assert_int_equal(c.morsels, want_morsels(&bs, morsels[m]));
            char *got = report(x, &enc, 0, 2);
            assert_string_equal(got, want);
            free(got);
            sf_buf_fini(&enc);
            sf_exec_destroy(&x);
        }
    free(want);
    sf_batch_fini(&other);
    free_batches(&bs);
}

/* A failing side function: its status and message come back. */
static void test_side_failure(void **st)
{
    (void)st;
    batches bs;
    make_batches(&bs, sizes_a, nsizes_a, 14, 0);
    const sf_agent_config *cs[] = {&cfg_count};
    const int threads[] = {1, 2, 4};
    for (size_t t = 0; t < 3; t++) {
        sf_exec *x = new_exec(cs, 1, threads[t], 500);
        side_ctx sc = {.ret = SF_ERR_IO};
        atomic_init(&sc.calls, 0);
        sf_error_clear();
        assert_int_equal(sf_exec_process_overlap(x, bs.p, bs.nb, side_fn, &sc), SF_ERR_IO);
        assert_int_equal(atomic_load(&sc.calls), 1);
        assert_non_null(strstr(sf_error_message(), "side: planted failure 17"));
        /* Also with no morsels at all. */
        sf_error_clear();
        assert_int_equal(sf_exec_process_overlap(x, NULL, 0, side_fn, &sc), SF_ERR_IO);
        assert_int_equal(atomic_load(&sc.calls), 2);
        assert_non_null(strstr(sf_error_message(), "side: planted failure 17"));
        /* The executor stays usable: a later call succeeds and encodes. */
        sc.ret = SF_OK;
        assert_int_equal(sf_exec_process_overlap(x, bs.p, 1, side_fn, &sc), SF_OK);
        sf_buf enc = encode(x);
        assert_true(enc.len > 0);
        sf_buf_fini(&enc);
        sf_exec_destroy(&x);
    }
    free_batches(&bs);
    sf_error_clear();
}

/* An agent failing on one morsel: the first failure and its message come
 * back, from whichever thread ran that morsel, and nothing crashes. */
static void test_agent_failure(void **st)
{
    (void)st;
    batches bs;
    make_batches(&bs, sizes_a, nsizes_a, 15, 5000);
    const sf_agent_config *cs[] = {&cfg_v_by_key, &cfg_count, &cfg_n};
    const int threads[] = {1, 2, 4};
    /* The first row, one in the middle, and the very last row (with a
     * static schedule the last morsel belongs to the last thread). */
    const uint64_t fails[] = {5000, 5000 + 1000 + 1 + 2000, 5000 + bs.total - 1};
    char want[128];
    for (size_t t = 0; t < 3; t++)
        for (size_t f = 0; f < 3; f++) {
            for (int overlap = 0; overlap < 2; overlap++) {
                sf_exec *x = new_exec(cs, 3, threads[t], 300);
                fail_row = fails[f];
                snprintf(want, sizeof want, "count: planted failure at row %llu",
                         (unsigned long long)fails[f]);
                sf_error_clear();
                side_ctx sc = {.ret = SF_OK};
                atomic_init(&sc.calls, 0);
                sf_status rc = overlap ? sf_exec_process_overlap(x, bs.p, bs.nb, side_fn, &sc)
                                       : sf_exec_process(x, bs.p, bs.nb);
                fail_row = UINT64_MAX;
                assert_int_equal(rc, SF_ERR_PARSE);
                assert_string_equal(sf_error_message(), want);
                if (overlap) assert_int_equal(atomic_load(&sc.calls), 1);
                sf_exec_destroy(&x);
            }
        }
    free_batches(&bs);
    sf_error_clear();
}

/* merge_encoded(A's encoding, B's encoding) equals one executor fed A and B;
 * merging an empty executor's encoding changes nothing. */
static void test_merge_encoded(void **st)
{
    (void)st;
    batches a, b;
    const size_t sa[] = {700, 33, 2048};
    const size_t sb[] = {1500, 9};
    make_batches(&a, sa, 3, 21, 0);
    make_batches(&b, sb, 2, 22, 1000000);
    const sf_agent_config *cs[] = {&cfg_v_by_key, &cfg_count, &cfg_ts_by2, &cfg_n};
    sf_exec *xa = new_exec(cs, 4, 2, 256);
    sf_exec *xb = new_exec(cs, 4, 4, 100);
    sf_exec *xab = new_exec(cs, 4, 1, 256);
    sf_exec *xe = new_exec(cs, 4, 3, 64);
    assert_int_equal(sf_exec_process(xa, a.p, a.nb), SF_OK);
    assert_int_equal(sf_exec_process(xb, b.p, b.nb), SF_OK);
    assert_int_equal(sf_exec_process(xab, a.p, a.nb), SF_OK);
    assert_int_equal(sf_exec_process(xab, b.p, b.nb), SF_OK);
    sf_buf ea = encode(xa), eb = encode(xb), eab = encode(xab), ee = encode(xe);

    /* The counting agent's morsels differ (256 vs 100 rows): compare the
     * stats agents byte for byte and the count by its closed form. */
    sf_buf m = {0};
    assert_int_equal(sf_buf_append(&m, ea.data, ea.len), SF_OK);
    assert_int_equal(sf_exec_merge_encoded(xe, &m, eb.data, eb.len), SF_OK);
    const int stats_agents[] = {0, 2, 3};
    for (int k = 0; k < 3; k++) {
        const uint8_t *p1, *p2;
        size_t n1, n2;
        agent_bytes(&m, stats_agents[k], &p1, &n1);
        agent_bytes(&eab, stats_agents[k], &p2, &n2);
        assert_int_equal(n1, n2);
        assert_memory_equal(p1, p2, n1);
    }
    const uint8_t *p;
    size_t n;
    agent_bytes(&m, 1, &p, &n);
    count_state c = decode_count(p, n);
    assert_int_equal(c.rows, a.total + b.total);
    assert_int_equal(c.hash, want_hash(&a) + want_hash(&b));
    assert_int_equal(c.morsels, want_morsels(&a, 256) + want_morsels(&b, 100));

    /* With equal morsel sizes the whole encodings are equal. */
    sf_exec *xb2 = new_exec(cs, 4, 4, 256);
    assert_int_equal(sf_exec_process(xb2, b.p, b.nb), SF_OK);
    sf_buf eb2 = encode(xb2);
    sf_buf_clear(&m);
    assert_int_equal(sf_buf_append(&m, ea.data, ea.len), SF_OK);
    assert_int_equal(sf_exec_merge_encoded(xe, &m, eb2.data, eb2.len), SF_OK);
    assert_int_equal(m.len, eab.len);
    assert_memory_equal(m.data, eab.data, eab.len);

    /* The other order gives the same bytes (the agents merge exactly). */
    sf_buf m2 = {0};
    assert_int_equal(sf_buf_append(&m2, eb2.data, eb2.len), SF_OK);
    assert_int_equal(sf_exec_merge_encoded(xe, &m2, ea.data, ea.len), SF_OK);
    assert_int_equal(m2.len, eab.len);
    assert_memory_equal(m2.data, eab.data, eab.len);

    /* Identity: empty (+) x == x, and x (+) empty == x. */
    sf_buf_clear(&m);
    assert_int_equal(sf_buf_append(&m, ee.data, ee.len), SF_OK);
    assert_int_equal(sf_exec_merge_encoded(xa, &m, eab.data, eab.len), SF_OK);
    assert_int_equal(m.len, eab.len);
    assert_memory_equal(m.data, eab.data, eab.len);
    assert_int_equal(sf_exec_merge_encoded(xa, &m, ee.data, ee.len), SF_OK);
    assert_int_equal(m.len, eab.len);
    assert_memory_equal(m.data, eab.data, eab.len);

    /* Malformed input is refused and leaves `into` as it was. */
    sf_buf bad = {0};
    assert_int_equal(sf_buf_append(&bad, eb2.data, eb2.len), SF_OK);
    assert_int_equal(sf_buf_put_u8(&bad, 0), SF_OK);
    sf_error_clear();
    assert_int_not_equal(sf_exec_merge_encoded(xa, &m, bad.data, bad.len), SF_OK);
    assert_true(sf_error_message()[0] != '\0');
    assert_int_equal(m.len, eab.len);
    assert_memory_equal(m.data, eab.data, eab.len);
    for (size_t cut = 0; cut < eb2.len; cut += 1 + cut / 3) {
        uint8_t *t = malloc(cut ? cut : 1);
        assert_non_null(t);
        memcpy(t, eb2.data, cut);
        sf_error_clear();
        if (sf_exec_merge_encoded(xa, &m, t, cut) == SF_OK)
            fail_msg("a %zu-byte prefix of a %zu-byte encoding was merged", cut, eb2.len);
        free(t);
        assert_int_equal(m.len, eab.len);
        assert_memory_equal(m.data, eab.data, eab.len);
    }

    sf_buf_fini(&bad);
    sf_buf_fini(&m);
    sf_buf_fini(&m2);
    sf_buf_fini(&ea);
    sf_buf_fini(&eb);
    sf_buf_fini(&eb2);
    sf_buf_fini(&eab);
    sf_buf_fini(&ee);
    sf_exec_destroy(&xa);
    sf_exec_destroy(&xb);
    sf_exec_destroy(&xb2);
    sf_exec_destroy(&xab);
    sf_exec_destroy(&xe);
    free_batches(&a);
    free_batches(&b);
    sf_error_clear();
}

/* Reports of agent ranges [a0, a1) hold exactly those agents, in order,
 * under their ids, with the values the agents give by hand. */
static void test_report_ranges(void **st)
{
    (void)st;
    batches bs;
    make_batches(&bs, sizes_a, nsizes_a, 31, 0);
    const sf_agent_config *cs[] = {&cfg_v_by_key, &cfg_n, &cfg_count, &cfg_v_plain};
    /* The count agent's report depends on morsels: one morsel per batch. */
    sf_exec *x = new_exec(cs, 4, 3, 1u << 20);
    assert_int_equal(sf_exec_process(x, bs.p, bs.nb), SF_OK);
    sf_buf enc = encode(x);
    for (int a0 = 0; a0 <= 4; a0++)
        for (int a1 = a0; a1 <= 4; a1++) {
            char *got = report(x, &enc, a0, a1);
            char *want = report_by_hand(cs, 4, &bs, a0, a1);
            if (strcmp(got, want) != 0)
                fail_msg("report [%d, %d):\n got  %.300s\n want %.300s", a0, a1, got, want);
            free(got);
            free(want);
        }
    /* By hand, for the two smallest: no agent, and the count agent alone. */
    char *none = report(x, &enc, 2, 2);
    assert_string_equal(none, "{}");
    free(none);
    char *cnt = report(x, &enc, 2, 3);
    char want[256];
    snprintf(want, sizeof want, "{\"count\":{\"rows\":%zu,\"morsels\":%d,\"hash\":%llu,\"max_morsel\":%zu}}",
             bs.total, nsizes_a - 1, (unsigned long long)want_hash(&bs), (size_t)4099);
    assert_string_equal(cnt, want);
    free(cnt);

    /* A truncated encoding is refused, never read past. */
    for (size_t cut = 0; cut < enc.len; cut += 1 + cut / 5) {
        uint8_t *t = malloc(cut ? cut : 1);
        assert_non_null(t);
        memcpy(t, enc.data, cut);
        sf_json j;
        sf_json_init(&j, false);
        sf_json_obj_begin(&j);
        if (sf_exec_report(x, t, cut, 0, 4, &j) == SF_OK)
            fail_msg("a %zu-byte prefix of a %zu-byte encoding was reported", cut, enc.len);
        sf_json_fini(&j);
        free(t);
    }
    sf_buf_fini(&enc);
    sf_exec_destroy(&x);
    free_batches(&bs);
}

/* Thread defaults: OMP_NUM_THREADS, then SLURM_CPUS_PER_TASK. */
static void test_default_threads(void **st)
{
    (void)st;
    char *omp = getenv("OMP_NUM_THREADS") ? strdup(getenv("OMP_NUM_THREADS")) : NULL;
    char *slurm = getenv("SLURM_CPUS_PER_TASK") ? strdup(getenv("SLURM_CPUS_PER_TASK")) : NULL;
    setenv("OMP_NUM_THREADS", "3", 1);
    setenv("SLURM_CPUS_PER_TASK", "5", 1);
    assert_int_equal(sf_exec_default_threads(4), 3);
    unsetenv("OMP_NUM_THREADS");
    assert_int_equal(sf_exec_default_threads(4), 5);
    unsetenv("SLURM_CPUS_PER_TASK");
    assert_true(sf_exec_default_threads(1) >= 1);
    assert_true(sf_exec_default_threads(1000000) >= 1);
    if (omp) setenv("OMP_NUM_THREADS", omp, 1);
    if (slurm) setenv("SLURM_CPUS_PER_TASK", slurm, 1);
    free(omp);
    free(slurm);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_and_morsels),
        cmocka_unit_test(test_every_row_once),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_side_failure),
        cmocka_unit_test(test_agent_failure),
        cmocka_unit_test(test_merge_encoded),
        cmocka_unit_test(test_report_ranges),
        cmocka_unit_test(test_default_threads),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
