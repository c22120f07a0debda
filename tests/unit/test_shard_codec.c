/* Unit tests of the portable shard plan (sf_shard_plan_encode/decode).
 *
 * For every strategy a plan is built and finished the ordinary way, encoded,
 * and decoded into a fresh plan made from the same config. The original plan
 * is the reference the decoded one is compared with: both route every row
 * of several batches (rows of the pre-pass and rows it never saw: unseen
 * keys, nulls, NaN, keys outside the sampled range, positions past the
 * input), and both describe themselves, byte for byte. Re-encoding the
 * decoded plan must give the same bytes. Every truncation of an encoding,
 * a wrong header (magic, version, strategy, K, key type, key column), a plan
 * of another config, and every single-byte corruption must be refused with
 * SF_ERR_ARG (or, for a corruption that still reads as a valid plan,
 * accepted and usable), never crash or allocate from a forged count, and a
 * refused decode must leave the plan exactly as it was. */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cmocka.h>

#include "shardflow/batch.h"
#include "shardflow/buf.h"
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

/* Layout of the header, as the contract of the format fixes it: magic u32,
 * format u8, strategy u8, key type u8, K u32, key column + 1 u32. */
#define HDR_FORMAT 4
#define HDR_STRATEGY 5
#define HDR_KEY_TYPE 6
#define HDR_K 7
#define HDR_KEY_COL 11
#define HDR_BYTES 15

static char tmpdir[256];

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

static uint64_t rng_next(uint64_t *state)
{
    uint64_t z = (*state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static double rng_u01(uint64_t *state) { return (double)(rng_next(state) >> 11) * 0x1p-53; }

/* Zipf(s) ranks 0..n-1 by inverse CDF, scattered over the key order as
 * (r * 7919) % n so that heavy keys sit in the middle of the range. */
static void zipf_ranks(size_t *out, size_t rows, size_t n, double s, uint64_t seed)
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
        out[i] = (lo * 7919) % n;
    }
    free(cdf);
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

/* ---- data sets ---------------------------------------------------------- */

/* Batches of one table: the first nseen go through the pre-pass, the rest
 * hold rows the planner never saw. All are routed. */
typedef struct dataset {
    sf_schema schema;
    sf_batch *b;
    size_t nb, nseen;
    uint64_t total_rows, data_start, data_bytes;   /* finish() arguments */
} dataset;

static void ds_init(dataset *ds, const char *col, sf_type t)
{
    memset(ds, 0, sizeof *ds);
    sf_schema_init(&ds->schema);
    OK(sf_schema_add(&ds->schema, col, t));
    ds->total_rows = UINT64_MAX;
}

static void ds_fini(dataset *ds)
{
    for (size_t i = 0; i < ds->nb; i++) sf_batch_fini(&ds->b[i]);
    free(ds->b);
    sf_schema_fini(&ds->schema);
}

/* A new batch of n rows starting at global row `first`; seen: part of the
 * pre-pass (batches of the pre-pass must come first). */
static sf_batch *ds_batch(dataset *ds, size_t n, uint64_t first, bool seen)
{
    assert_true(!seen || ds->nseen == ds->nb);
    sf_batch *nb = realloc(ds->b, (ds->nb + 1) * sizeof *nb);
    assert_non_null(nb);
    ds->b = nb;
    sf_batch *b = &ds->b[ds->nb++];
    OK(sf_batch_init(b, &ds->schema, NULL, n ? n : 1));
    b->nrows = n;
    b->first_row = first;
    if (seen) ds->nseen++;
    return b;
}

/* Cuts v[0..n) into batches of irregular sizes (1, then growing). */
static void ds_i64(dataset *ds, const int64_t *v, const uint8_t *null, size_t n, uint64_t first,
                   bool seen)
{
    size_t step = 1;
    for (size_t a = 0; a < n; a += step, step = step * 3 + 1) {
        size_t m = n - a < step ? n - a : step;
        sf_batch *b = ds_batch(ds, m, first + a, seen);
        for (size_t i = 0; i < m; i++) {
            b->cols[0].i64[i] = v[a + i];
            if (null && null[a + i]) OK(sf_batch_set_null(b, 0, i));
        }
    }
}

static void ds_f64(dataset *ds, const double *v, const uint8_t *null, size_t n, uint64_t first,
                   bool seen)
{
    size_t step = 2;
    for (size_t a = 0; a < n; a += step, step = step * 2 + 3) {
        size_t m = n - a < step ? n - a : step;
        sf_batch *b = ds_batch(ds, m, first + a, seen);
        for (size_t i = 0; i < m; i++) {
            b->cols[0].f64[i] = v[a + i];
            if (null && null[a + i]) OK(sf_batch_set_null(b, 0, i));
        }
    }
}

/* String rows; NULL entries are null. Each batch has its own dictionary. */
static void ds_str(dataset *ds, const char *const *v, size_t n, uint64_t first, bool seen)
{
    size_t step = 3;
    for (size_t a = 0; a < n; a += step, step = step * 2 + 1) {
        size_t m = n - a < step ? n - a : step;
        sf_batch *b = ds_batch(ds, m, first + a, seen);
        for (size_t i = 0; i < m; i++) {
            if (v[a + i] == NULL) {
                OK(sf_batch_set_null(b, 0, i));
                continue;
            }
            uint32_t code;
            OK(sf_dict_intern(&b->cols[0].dict, v[a + i], strlen(v[a + i]), &code));
            b->cols[0].code[i] = code;
        }
    }
}

static size_t ds_rows(const dataset *ds)
{
    size_t n = 0;
    for (size_t i = 0; i < ds->nb; i++) n += ds->b[i].nrows;
    return n;
}

/* Routes every batch of ds; out must hold ds_rows() entries. */
static void route_all(const sf_shard_plan *p, const dataset *ds, uint32_t *out)
{
    size_t at = 0;
    for (size_t i = 0; i < ds->nb; i++) {
        OK(sf_shard_route(p, &ds->b[i], out + at));
        at += ds->b[i].nrows;
    }
}

/* Routes the first batch and the batches the pre-pass never saw, checking
 * only that every shard is in range (for plans decoded from altered bytes,
 * which have no reference to agree with). */
static void route_some(const sf_shard_plan *p, const dataset *ds, int k)
{
    for (size_t i = 0; i < ds->nb; i++) {
        if (i != 0 && i < ds->nseen) continue;
        const sf_batch *b = &ds->b[i];
        uint32_t *sh = malloc((b->nrows ? b->nrows : 1) * sizeof *sh);
        assert_non_null(sh);
        OK(sf_shard_route(p, b, sh));
        for (size_t j = 0; j < b->nrows; j++) assert_true(sh[j] < (uint32_t)k);
        free(sh);
    }
}

/* ---- the round trip ----------------------------------------------------- */

static sf_shard_plan *make_plan(const sf_shard_config *cfg, const dataset *ds)
{
    sf_shard_plan *p = NULL;
    OK(sf_shard_plan_create(cfg, &ds->schema, WF, &p));
    return p;
}

/* Expects a refused decode: SF_ERR_ARG with a message. */
static void expect_refused(sf_shard_plan *p, const uint8_t *bytes, size_t n, const char *needle)
{
    sf_error_clear();
    sf_status rc = sf_shard_plan_decode(p, bytes, n);
    if (rc != SF_ERR_ARG)
        fail_msg("decode of %zu bytes: %s (%s), expected SF_ERR_ARG", n, sf_status_name(rc),
                 sf_error_message());
    assert_true(sf_error_message()[0] != '\0');
    if (needle != NULL && strstr(sf_error_message(), needle) == NULL)
        fail_msg("'%s' not in '%s'", needle, sf_error_message());
}

/* A plan that a refused decode left alone: still unfinished (route refuses)
 * and describing itself as a fresh plan does. */
static void expect_untouched(const sf_shard_plan *p, const char *fresh, const dataset *ds)
{
    char *d = describe(p);
    assert_string_equal(d, fresh);
    free(d);
    uint32_t *sh = malloc((ds->b[0].nrows ? ds->b[0].nrows : 1) * sizeof *sh);
    assert_non_null(sh);
    if (ds->b[0].nrows > 0) assert_int_equal(sf_shard_route(p, &ds->b[0], sh), SF_ERR_ARG);
    free(sh);
}

static void patch_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* Builds and finishes a plan for cfg over ds, then checks everything the
 * file header promises about its encoding. min_shards: how many distinct
 * shards the routing must use, so that agreement is not trivial. */
static void check_roundtrip(const sf_shard_config *cfg, dataset *ds, int min_shards)
{
    const size_t rows = ds_rows(ds);
    sf_shard_plan *p = make_plan(cfg, ds);
    char *fresh = describe(p);
    sf_buf buf;
    sf_buf_init(&buf);

    /* (d) An unfinished plan has nothing portable, observed or not; the
     * output is left as it was. */
    OK(sf_buf_append(&buf, "xyz", 3));
    assert_int_equal(sf_shard_plan_encode(p, &buf), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), "finish"));
    assert_int_equal(buf.len, 3);
    if (sf_shard_plan_needs_prepass(p)) {
        for (size_t i = 0; i < ds->nseen; i++) OK(sf_shard_plan_observe(p, &ds->b[i]));
        assert_int_equal(sf_shard_plan_encode(p, &buf), SF_ERR_ARG);
        assert_int_equal(buf.len, 3);
    }
    OK(sf_shard_plan_finish(p, ds->total_rows, ds->data_start, ds->data_bytes));

    /* Encoding appends after what the buffer holds. */
    OK(sf_shard_plan_encode(p, &buf));
    assert_memory_equal(buf.data, "xyz", 3);
    const uint8_t *bytes = buf.data + 3;
    const size_t n = buf.len - 3;
    assert_true(n >= HDR_BYTES);
    char *want = describe(p);
    assert_non_null(strstr(want, "\"finished\":true"));

    /* Decoded into a fresh plan of the same config: same description, same
     * bytes again, same shard for every row. */
    sf_shard_plan *q = make_plan(cfg, ds);
    OK(sf_shard_plan_decode(q, bytes, n));
    char *got = describe(q);
    assert_string_equal(got, want);
    free(got);
    sf_buf again;
    sf_buf_init(&again);
    OK(sf_shard_plan_encode(q, &again));
    assert_int_equal(again.len, n);
    assert_memory_equal(again.data, bytes, n);
    sf_buf_fini(&again);

    uint32_t *a = malloc((rows ? rows : 1) * sizeof *a), *b = malloc((rows ? rows : 1) * sizeof *b);
    assert_non_null(a);
    assert_non_null(b);
    route_all(p, ds, a);
    route_all(q, ds, b);
    uint8_t *used = calloc((size_t)cfg->shards, 1);
    int distinct = 0;
    for (size_t i = 0; i < rows; i++) {
        assert_true(a[i] < (uint32_t)cfg->shards);
        if (a[i] != b[i]) fail_msg("row %zu: shard %u before encoding, %u after", i, a[i], b[i]);
        if (!used[a[i]]++) distinct++;
    }
    assert_true(distinct >= min_shards);
    free(used);

    /* A finished plan takes no second plan. */
    expect_refused(q, bytes, n, "already finished");
    sf_shard_plan_destroy(&q);

    /* (c) Every truncation is refused and leaves the plan as it was; the
     * same plan then takes the whole encoding. */
    sf_shard_plan *r = make_plan(cfg, ds);
    for (size_t len = 0; len < n; len++) {
        expect_refused(r, bytes, len, NULL);
        expect_untouched(r, fresh, ds);
    }
    uint8_t *longer = malloc(n + 1);
    assert_non_null(longer);
    memcpy(longer, bytes, n);
    longer[n] = 0;
    expect_refused(r, longer, n + 1, "trailing");
    expect_untouched(r, fresh, ds);
    free(longer);
    OK(sf_shard_plan_decode(r, bytes, n));
    got = describe(r);
    assert_string_equal(got, want);
    free(got);
    route_all(r, ds, b);
    assert_memory_equal(a, b, rows * sizeof *a);
    sf_shard_plan_destroy(&r);

    /* A wrong header: each field in turn. */
    uint8_t *bad = malloc(n);
    assert_non_null(bad);
    r = make_plan(cfg, ds);
    struct {
        size_t at;
        uint8_t xor_with;
        const char *needle;
    } fields[] = {{0, 0x01, "magic"},          {HDR_FORMAT, 0x01, "version"},
                  {HDR_FORMAT, 0xff, "version"}, {HDR_STRATEGY, 0x03, "strategy"},
                  {HDR_KEY_TYPE, 0x07, "key"},   {HDR_KEY_COL, 0x01, "column"},
                  {HDR_K + 3, 0x80, "K ="}};
    for (size_t f = 0; f < sizeof fields / sizeof fields[0]; f++) {
        memcpy(bad, bytes, n);
        bad[fields[f].at] ^= fields[f].xor_with;
        expect_refused(r, bad, n, fields[f].needle);
        expect_untouched(r, fresh, ds);
    }
    memcpy(bad, bytes, n);
    patch_u32(bad + HDR_K, (uint32_t)cfg->shards + 1);
    expect_refused(r, bad, n, "K =");
    expect_untouched(r, fresh, ds);
    sf_shard_plan_destroy(&r);

    /* A plan of another config: K + 1 shards, or another strategy (size
     * takes any schema; hash takes any key type). */
    sf_shard_config other = *cfg;
    other.shards = cfg->shards + 1;
    r = make_plan(&other, ds);
    expect_refused(r, bytes, n, "K =");
    sf_shard_plan_destroy(&r);
    other = *cfg;
    if (cfg->strategy == SF_SHARD_SIZE) {
        other.strategy = SF_SHARD_HASH;
        other.key = ds->schema.fields[0].name;
    } else {
        other.strategy = SF_SHARD_SIZE;
        other.key = NULL;
    }
    r = make_plan(&other, ds);
    expect_refused(r, bytes, n, "strategy");
    sf_shard_plan_destroy(&r);

    /* Every single-byte corruption (all bits, then the lowest bit) either
     * reads as some valid plan, which must then route and describe, or is
     * refused with SF_ERR_ARG leaving the plan as it was; never another
     * code (SF_ERR_NOMEM would mean a count was trusted). */
    r = make_plan(cfg, ds);
    for (int pass = 0; pass < 2; pass++) {
        for (size_t i = 0; i < n; i++) {
            memcpy(bad, bytes, n);
            bad[i] ^= pass == 0 ? 0xff : 0x01;
            sf_error_clear();
            sf_status rc = sf_shard_plan_decode(r, bad, n);
            if (rc == SF_ERR_ARG) {
                assert_true(sf_error_message()[0] != '\0');
                continue;
            }
            if (rc != SF_OK)
                fail_msg("byte %zu ^ %s: %s (%s)", i, pass == 0 ? "0xff" : "0x01",
                         sf_status_name(rc), sf_error_message());
            if (i < HDR_BYTES) fail_msg("header byte %zu altered and accepted", i);
            route_some(r, ds, cfg->shards);
            free(describe(r));
            sf_shard_plan_destroy(&r);
            r = make_plan(cfg, ds);
        }
    }
    expect_untouched(r, fresh, ds);
    sf_shard_plan_destroy(&r);

    free(bad);
    free(a);
    free(b);
    free(want);
    free(fresh);
    sf_buf_fini(&buf);
    sf_shard_plan_destroy(&p);
}

/* The encoding of a finished plan for cfg over ds (caller frees buf). */
static void encode_plan(const sf_shard_config *cfg, const dataset *ds, sf_buf *buf)
{
    sf_shard_plan *p = make_plan(cfg, ds);
    for (size_t i = 0; i < ds->nseen && sf_shard_plan_needs_prepass(p); i++)
        OK(sf_shard_plan_observe(p, &ds->b[i]));
    OK(sf_shard_plan_finish(p, ds->total_rows, ds->data_start, ds->data_bytes));
    sf_buf_init(buf);
    OK(sf_shard_plan_encode(p, buf));
    sf_shard_plan_destroy(&p);
}

/* ---- size --------------------------------------------------------------- */

/* A CSV file read by the real reader: its batches carry row_offset and
 * row_bytes, and the plan is balanced by bytes. Extra rows at offsets in
 * the header and past the end of the data go to the first and last shard. */
static void test_size_csv(void **state)
{
    sf_buf text;
    sf_buf_init(&text);
    OK(sf_buf_printf(&text, "id,name\n"));
    uint64_t st = 3;
    for (int i = 0; i < 3000; i++) {
        int len = 1 + (int)(rng_next(&st) % 60);
        OK(sf_buf_printf(&text, "%d,", i));
        for (int c = 0; c < len; c++) OK(sf_buf_put_u8(&text, (uint8_t)('a' + c % 26)));
        OK(sf_buf_put_u8(&text, '\n'));
    }
    OK(sf_buf_put_u8(&text, '\0'));
    const char *path = write_file("size.csv", (const char *)text.data);
    sf_buf_fini(&text);

    sf_input_config ic;
    sf_input_config_defaults(&ic);
    ic.format = SF_INPUT_CSV;
    ic.path = strdup(path);
    ic.batch_rows = 97;
    sf_reader *rd = NULL;
    OK(sf_reader_open(&ic, &rd));
    dataset ds;
    memset(&ds, 0, sizeof ds);
    OK(sf_schema_copy(&ds.schema, sf_reader_schema(rd)));
    for (;;) {
        sf_batch b;
        bool eof = false;
        OK(sf_reader_batch_init(rd, &b));
        OK(sf_reader_next(rd, &b, &eof));
        if (eof || b.nrows == 0) {
            sf_batch_fini(&b);
            break;
        }
        assert_non_null(b.row_offset);
        assert_non_null(b.row_bytes);
        sf_batch *nb = realloc(ds.b, (ds.nb + 1) * sizeof *nb);
        assert_non_null(nb);
        ds.b = nb;
        ds.b[ds.nb++] = b;
    }
    ds.nseen = ds.nb;
    assert_true(ds.nb > 20);
    ds.total_rows = sf_reader_total_rows(rd);
    ds.data_start = sf_reader_data_start(rd);
    ds.data_bytes = sf_reader_data_bytes(rd);
    assert_int_equal(ds.data_start, strlen("id,name\n"));
    assert_true(ds.data_bytes > 3000);
    sf_reader_destroy(&rd);
    sf_input_config_fini(&ic);

    sf_batch *x = ds_batch(&ds, 3, 5000, false);
    OK(sf_batch_enable_offsets(x));
    int64_t off[3] = {0, (int64_t)(ds.data_start + ds.data_bytes),
                      (int64_t)(ds.data_start + 2 * ds.data_bytes)};
    for (int i = 0; i < 3; i++) {
        x->row_offset[i] = off[i];
        x->row_bytes[i] = 10;
    }

    sf_shard_config cfg = shard_cfg(SF_SHARD_SIZE, NULL, 7);
    check_roundtrip(&cfg, &ds, 7);
    cfg.shards = 1;
    check_roundtrip(&cfg, &ds, 1);
    ds_fini(&ds);
    char p2[512];
    snprintf(p2, sizeof p2, "%s/size.csv", tmpdir);
    unlink(p2);
}

/* Batches without offsets: blocks of rows of a known row count, and rows
 * past the count (routed to the last shard). */
static void test_size_rows(void **state)
{
    dataset ds;
    ds_init(&ds, "x", SF_INT64);
    const size_t n = 10007;
    int64_t *v = calloc(n, sizeof *v);
    assert_non_null(v);
    ds_i64(&ds, v, NULL, n, 0, true);
    ds_i64(&ds, v, NULL, 50, n, false);
    ds_i64(&ds, v, NULL, 5, UINT64_C(1) << 40, false);
    ds.total_rows = n;
    sf_shard_config cfg = shard_cfg(SF_SHARD_SIZE, NULL, 13);
    check_roundtrip(&cfg, &ds, 13);
    /* K larger than the rows. */
    cfg.shards = 20000;
    check_roundtrip(&cfg, &ds, 10007);
    free(v);
    ds_fini(&ds);

    /* A plan that knows both the row count and the bytes, routing batches
     * without offsets by rows. */
    ds_init(&ds, "x", SF_INT64);
    int64_t w[300] = {0};
    ds_i64(&ds, w, NULL, 300, 0, true);
    ds.total_rows = 300;
    ds.data_start = 11;
    ds.data_bytes = 9000;
    cfg = shard_cfg(SF_SHARD_SIZE, NULL, 4);
    check_roundtrip(&cfg, &ds, 4);
    ds_fini(&ds);
}

/* ---- hash --------------------------------------------------------------- */

static void test_hash(void **state)
{
    uint64_t st = 11;
    const size_t n = 2000;

    /* int64 with nulls; the unseen batch has extreme keys. */
    dataset ds;
    ds_init(&ds, "k", SF_INT64);
    int64_t *iv = malloc(n * sizeof *iv);
    uint8_t *null = calloc(n, 1);
    assert_non_null(iv);
    assert_non_null(null);
    for (size_t i = 0; i < n; i++) {
        iv[i] = (int64_t)(rng_next(&st) % 500) - 250;
        null[i] = rng_next(&st) % 17 == 0;
    }
    ds_i64(&ds, iv, null, n, 0, true);
    int64_t extreme[4] = {INT64_MIN, INT64_MAX, 0, 123456789};
    ds_i64(&ds, extreme, NULL, 4, n, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_HASH, "k", 13);
    check_roundtrip(&cfg, &ds, 13);
    ds_fini(&ds);

    /* float64: NaN, -0, infinities and nulls. */
    ds_init(&ds, "f", SF_FLOAT64);
    double *fv = malloc(n * sizeof *fv);
    assert_non_null(fv);
    for (size_t i = 0; i < n; i++) {
        uint64_t c = rng_next(&st) % 20;
        fv[i] = c == 0 ? NAN : c == 1 ? -0.0 : c == 2 ? INFINITY : rng_u01(&st) * 100 - 50;
    }
    ds_f64(&ds, fv, null, n, 0, true);
    double fx[4] = {-INFINITY, 1e300, -1e-300, 0.0};
    ds_f64(&ds, fx, NULL, 4, n, false);
    cfg = shard_cfg(SF_SHARD_HASH, "f", 8);
    check_roundtrip(&cfg, &ds, 8);
    ds_fini(&ds);

    /* Strings, each batch with its own dictionary; unseen names after. */
    ds_init(&ds, "s", SF_STRING);
    char (*names)[16] = malloc(n * sizeof *names);
    const char **sv = malloc(n * sizeof *sv);
    assert_non_null(names);
    assert_non_null(sv);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "user-%u", (unsigned)(rng_next(&st) % 300));
        sv[i] = null[i] ? NULL : names[i];
    }
    ds_str(&ds, sv, n, 0, true);
    const char *fresh[3] = {"never-seen", "", "user-99999"};
    ds_str(&ds, fresh, 3, n, false);
    cfg = shard_cfg(SF_SHARD_HASH, "s", 5);
    check_roundtrip(&cfg, &ds, 5);
    ds_fini(&ds);
    free(names);
    free(sv);
    free(fv);
    free(iv);
    free(null);
}

/* ---- range -------------------------------------------------------------- */

/* Zipf keys (heavy keys in the middle of the key order), sampled with a
 * sample smaller than the rows; unseen keys below, above and between. */
static void test_range_int64_zipf(void **state)
{
    const size_t n = 30000, nkeys = 2000;
    size_t *rank = malloc(n * sizeof *rank);
    int64_t *v = malloc(n * sizeof *v);
    uint8_t *null = calloc(n, 1);
    assert_non_null(rank);
    assert_non_null(v);
    assert_non_null(null);
    zipf_ranks(rank, n, nkeys, 1.1, 5);
    for (size_t i = 0; i < n; i++) {
        v[i] = (int64_t)rank[i] * 1000 - 700000;
        null[i] = i % 97 == 3;
    }
    dataset ds;
    ds_init(&ds, "user", SF_INT64);
    ds_i64(&ds, v, null, n, 0, true);
    int64_t unseen[6] = {INT64_MIN, INT64_MAX, -700001, 1, 1299000 + 1, 500};
    ds_i64(&ds, unseen, NULL, 6, n, false);

    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "user", 16);
    cfg.sample = 4000;
    cfg.seed = 77;
    /* The premise: this data has heavy keys. */
    sf_shard_plan *p = make_plan(&cfg, &ds);
    for (size_t i = 0; i < ds.nseen; i++) OK(sf_shard_plan_observe(p, &ds.b[i]));
    OK(sf_shard_plan_finish(p, UINT64_MAX, 0, 0));
    char *d = describe(p);
    assert_null(strstr(d, "\"heavy_keys\":[]"));
    free(d);
    sf_shard_plan_destroy(&p);
    check_roundtrip(&cfg, &ds, 8);

    /* A plan sampled with another seed or sample size is another plan. */
    sf_buf enc;
    encode_plan(&cfg, &ds, &enc);
    sf_shard_config other = cfg;
    other.seed = 78;
    p = make_plan(&other, &ds);
    expect_refused(p, enc.data, enc.len, "shard.seed");
    sf_shard_plan_destroy(&p);
    other = cfg;
    other.sample = 4001;
    p = make_plan(&other, &ds);
    expect_refused(p, enc.data, enc.len, "shard.sample");
    sf_shard_plan_destroy(&p);

    /* A forged splitter count far beyond the bytes (the count follows the
     * header, sample, seed and five counts) is refused before any
     * allocation is sized from it. */
    uint8_t *forged = malloc(enc.len);
    assert_non_null(forged);
    memcpy(forged, enc.data, enc.len);
    sf_store_u64(forged + HDR_BYTES + 7 * 8, UINT64_C(1) << 61);
    p = make_plan(&cfg, &ds);
    expect_refused(p, forged, enc.len, "splitters");
    sf_shard_plan_destroy(&p);
    free(forged);
    sf_buf_fini(&enc);

    /* Every key sampled (sample larger than the rows). */
    cfg.sample = 100000;
    check_roundtrip(&cfg, &ds, 8);
    ds_fini(&ds);
    free(rank);
    free(v);
    free(null);
}

static void test_range_timestamp(void **state)
{
    const size_t n = 8000;
    const int64_t t0 = INT64_C(1767225600000000);   /* 2026-01-01T00:00:00 */
    int64_t *v = malloc(n * sizeof *v);
    size_t *rank = malloc(n * sizeof *rank);
    assert_non_null(v);
    assert_non_null(rank);
    zipf_ranks(rank, n, 500, 1.2, 9);
    /* Half spread over a day, half on 500 Zipf instants: heavy stamps. */
    uint64_t st = 21;
    for (size_t i = 0; i < n; i++)
        v[i] = t0 + (i % 2 ? (int64_t)(rng_next(&st) % UINT64_C(86400000000))
                           : (int64_t)rank[i] * 1000000);
    dataset ds;
    ds_init(&ds, "ts", SF_TIMESTAMP);
    ds_i64(&ds, v, NULL, n, 0, true);
    int64_t unseen[3] = {t0 - 1, t0 + INT64_C(86400000000) * 2, 0};
    ds_i64(&ds, unseen, NULL, 3, n, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "ts", 8);
    cfg.sample = 3000;
    check_roundtrip(&cfg, &ds, 4);
    ds_fini(&ds);
    free(v);
    free(rank);
}

static void test_range_float(void **state)
{
    const size_t n = 6000;
    double *v = malloc(n * sizeof *v);
    uint8_t *null = calloc(n, 1);
    size_t *rank = malloc(n * sizeof *rank);
    assert_non_null(v);
    assert_non_null(null);
    assert_non_null(rank);
    zipf_ranks(rank, n, 300, 1.3, 4);
    uint64_t st = 8;
    for (size_t i = 0; i < n; i++) {
        uint64_t c = rng_next(&st) % 50;
        if (c == 0)
            v[i] = NAN;
        else if (c == 1)
            v[i] = -0.0;
        else if (c == 2)
            v[i] = -INFINITY;
        else if (c == 3)
            null[i] = 1;
        else
            v[i] = (double)rank[i] / 7.0 - 20.0;
    }
    dataset ds;
    ds_init(&ds, "lat", SF_FLOAT64);
    ds_f64(&ds, v, null, n, 0, true);
    double unseen[6] = {NAN, INFINITY, -INFINITY, -1e308, 0.5 / 7.0, 1e308};
    ds_f64(&ds, unseen, NULL, 6, n, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "lat", 12);
    cfg.sample = 2500;
    check_roundtrip(&cfg, &ds, 6);
    ds_fini(&ds);
    free(v);
    free(null);
    free(rank);
}

/* Edge cases: nothing but nulls (an empty sample, no splitters), one key,
 * and K = 1. */
static void test_range_degenerate(void **state)
{
    uint8_t null[40];
    int64_t v[40];
    memset(null, 1, sizeof null);
    for (int i = 0; i < 40; i++) v[i] = i;
    dataset ds;
    ds_init(&ds, "k", SF_INT64);
    ds_i64(&ds, v, null, 40, 0, true);
    ds_i64(&ds, v, NULL, 40, 40, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "k", 4);
    check_roundtrip(&cfg, &ds, 1);
    ds_fini(&ds);

    for (int i = 0; i < 40; i++) v[i] = 5;
    ds_init(&ds, "k", SF_INT64);
    ds_i64(&ds, v, NULL, 40, 0, true);
    int64_t other[2] = {4, 6};
    ds_i64(&ds, other, NULL, 2, 40, false);
    check_roundtrip(&cfg, &ds, 1);
    cfg.shards = 1;
    check_roundtrip(&cfg, &ds, 1);
    ds_fini(&ds);
}

/* ---- semantic ----------------------------------------------------------- */

/* String keys without a map: 400 Zipf keys on K = 3, so a shard lists more
 * groups than describe() names (groups_omitted) and the heaviest key
 * alone outweighs the mean shard. */
static void test_semantic_strings(void **state)
{
    const size_t n = 20000, nk = 400;
    size_t *rank = malloc(n * sizeof *rank);
    char (*names)[24] = malloc(nk * sizeof *names);
    const char **rows = malloc(n * sizeof *rows);
    assert_non_null(rank);
    assert_non_null(names);
    assert_non_null(rows);
    zipf_ranks(rank, n, nk, 1.4, 2);
    for (size_t k = 0; k < nk; k++) snprintf(names[k], sizeof names[k], "/api/e%zu", k);
    for (size_t i = 0; i < n; i++) rows[i] = i % 101 == 7 ? NULL : names[rank[i]];
    dataset ds;
    ds_init(&ds, "endpoint", SF_STRING);
    ds_str(&ds, rows, n, 0, true);
    const char *unseen[4] = {"/api/never", "", NULL, "/api/e1x"};
    ds_str(&ds, unseen, 4, n, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "endpoint", 3);

    sf_shard_plan *p = make_plan(&cfg, &ds);
    for (size_t i = 0; i < ds.nseen; i++) OK(sf_shard_plan_observe(p, &ds.b[i]));
    OK(sf_shard_plan_finish(p, UINT64_MAX, 0, 0));
    char *d = describe(p);
    assert_non_null(strstr(d, "\"groups_omitted\":"));
    assert_null(strstr(d, "\"heavy_groups\":[]"));
    free(d);
    sf_shard_plan_destroy(&p);
    check_roundtrip(&cfg, &ds, 3);

    /* A forged group count (after the header, the map flag and two row
     * counts) far beyond the bytes. */
    sf_buf enc;
    encode_plan(&cfg, &ds, &enc);
    const size_t ngroups_at = HDR_BYTES + 1 + 16;
    uint8_t *forged = malloc(enc.len);
    assert_non_null(forged);
    /* 2^27 groups or keys: below the table limits, gigabytes if trusted. */
    uint64_t counts[2] = {UINT64_C(1) << 40, UINT64_C(1) << 27};
    for (int c = 0; c < 2; c++) {
        memcpy(forged, enc.data, enc.len);
        sf_store_u64(forged + ngroups_at, counts[c]);
        p = make_plan(&cfg, &ds);
        expect_refused(p, forged, enc.len, "groups");
        sf_shard_plan_destroy(&p);
    }
    /* The key count follows the groups: as many as the encoding has,
     * walked here (shard u32, unmapped u8, rows u64, no name without a
     * map). */
    uint64_t ng = sf_load_u64(enc.data + ngroups_at);
    size_t nkeys_at = ngroups_at + 8 + (size_t)ng * 13;
    assert_true(nkeys_at + 8 <= enc.len);
    /* The premise: that field is the count of distinct keys seen. */
    uint8_t *seen = calloc(nk, 1);
    assert_non_null(seen);
    uint64_t distinct = 0;
    for (size_t i = 0; i < n; i++)
        if (rows[i] != NULL && !seen[rank[i]]) {
            seen[rank[i]] = 1;
            distinct++;
        }
    free(seen);
    assert_int_equal(sf_load_u64(enc.data + nkeys_at), distinct);
    memcpy(forged, enc.data, enc.len);
    sf_store_u64(forged + nkeys_at, UINT64_C(1) << 27);
    p = make_plan(&cfg, &ds);
    expect_refused(p, forged, enc.len, "keys");
    sf_shard_plan_destroy(&p);
    free(forged);
    sf_buf_fini(&enc);

    ds_fini(&ds);
    free(rank);
    free(names);
    free(rows);
}

/* String keys with a map: mapped groups, keys the map does not name (their
 * own groups), a mapped key absent from the data, and a plan decoded
 * without the map (or with one where there was none) refused. */
static void test_semantic_map(void **state)
{
    char map[512];
    snprintf(map, sizeof map, "%s",
             write_file("map.csv", "key,group\n"
                                   "/api/search/query,search\n"
                                   "/api/search/suggest,search\n"
                                   "/api/cart/add,cart\n"
                                   "/api/cart/view,cart\n"
                                   "/api/user/login,user\n"
                                   "/api/user/logout,user\n"));
    static const char *const keys[] = {"/api/search/query", "/api/search/suggest",
                                       "/api/cart/add",     "/api/user/login",
                                       "/api/user/logout",  "/api/other/x",
                                       "/api/other/y",      "cart"};
    const size_t n = 5000;
    const char **rows = malloc(n * sizeof *rows);
    assert_non_null(rows);
    uint64_t st = 17;
    for (size_t i = 0; i < n; i++) {
        uint64_t c = rng_next(&st) % 100;
        /* Skewed: search is heavy. */
        rows[i] = c < 45 ? keys[0] : c < 60 ? keys[1] : keys[2 + c % 6];
        if (c == 99) rows[i] = NULL;
    }
    dataset ds;
    ds_init(&ds, "endpoint", SF_STRING);
    ds_str(&ds, rows, n, 0, true);
    const char *unseen[4] = {"/api/cart/view", "/api/never", NULL, "search"};
    ds_str(&ds, unseen, 4, n, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "endpoint", 3);
    cfg.map = map;
    check_roundtrip(&cfg, &ds, 3);

    sf_buf enc;
    encode_plan(&cfg, &ds, &enc);
    sf_shard_config nomap = cfg;
    nomap.map = NULL;
    sf_shard_plan *p = make_plan(&nomap, &ds);
    expect_refused(p, enc.data, enc.len, "shard.map");
    sf_shard_plan_destroy(&p);
    sf_buf_fini(&enc);
    encode_plan(&nomap, &ds, &enc);
    p = make_plan(&cfg, &ds);
    expect_refused(p, enc.data, enc.len, "shard.map");
    sf_shard_plan_destroy(&p);
    sf_buf_fini(&enc);

    ds_fini(&ds);
    free(rows);
    snprintf(map, sizeof map, "%s/map.csv", tmpdir);
    unlink(map);
}

/* int64 keys, with a map (unmapped keys named by their decimal digits) and
 * without. */
static void test_semantic_int64(void **state)
{
    char map[512];
    snprintf(map, sizeof map, "%s",
             write_file("intmap.csv", "key,group\n1,odd\n3,odd\n007,odd\n2,even\n4,even\n"
                                      "-5,neg\n1000000,big\n"));
    const size_t n = 6000;
    int64_t *v = malloc(n * sizeof *v);
    uint8_t *null = calloc(n, 1);
    size_t *rank = malloc(n * sizeof *rank);
    assert_non_null(v);
    assert_non_null(null);
    assert_non_null(rank);
    zipf_ranks(rank, n, 80, 1.0, 13);
    for (size_t i = 0; i < n; i++) {
        v[i] = (int64_t)rank[i] - 10;
        null[i] = i % 53 == 0;
    }
    dataset ds;
    ds_init(&ds, "k", SF_INT64);
    ds_i64(&ds, v, null, n, 0, true);
    int64_t unseen[5] = {1000000, INT64_MIN, INT64_MAX, 99999, -5};
    ds_i64(&ds, unseen, NULL, 5, n, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "k", 5);
    cfg.map = map;
    check_roundtrip(&cfg, &ds, 5);
    cfg.map = NULL;
    check_roundtrip(&cfg, &ds, 5);
    ds_fini(&ds);
    free(v);
    free(null);
    free(rank);
    snprintf(map, sizeof map, "%s/intmap.csv", tmpdir);
    unlink(map);
}

/* Nothing observed at all (every key null): no keys, no groups. */
static void test_semantic_empty(void **state)
{
    const char *rows[5] = {NULL, NULL, NULL, NULL, NULL};
    dataset ds;
    ds_init(&ds, "s", SF_STRING);
    ds_str(&ds, rows, 5, 0, true);
    const char *unseen[2] = {"a", "b"};
    ds_str(&ds, unseen, 2, 5, false);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "s", 2);
    check_roundtrip(&cfg, &ds, 1);
    ds_fini(&ds);
}

/* ---- crafted encodings --------------------------------------------------- */

/* Bytes that read fine but break what finish() guarantees: each refused
 * with a message naming the fault. The offsets follow the body layouts
 * documented in range.c and semantic.c. */
static void refuse_patched(const sf_shard_config *cfg, const dataset *ds, const sf_buf *enc,
                           size_t at, const void *with, size_t len, const char *needle)
{
    uint8_t *bad = malloc(enc->len);
    assert_non_null(bad);
    memcpy(bad, enc->data, enc->len);
    memcpy(bad + at, with, len);
    sf_shard_plan *p = make_plan(cfg, ds);
    expect_refused(p, bad, enc->len, needle);
    sf_shard_plan_destroy(&p);
    free(bad);
}

static void test_crafted_range(void **state)
{
    /* Keys 0..99, ten rows each: K = 4 gives three splitters. */
    int64_t v[1000];
    for (int i = 0; i < 1000; i++) v[i] = i / 10;
    dataset ds;
    ds_init(&ds, "k", SF_INT64);
    ds_i64(&ds, v, NULL, 1000, 0, true);
    sf_shard_config cfg = shard_cfg(SF_SHARD_RANGE, "k", 4);
    sf_buf enc;
    encode_plan(&cfg, &ds, &enc);
    const size_t nsplit_at = HDR_BYTES + 7 * 8, split_at = nsplit_at + 8;
    assert_int_equal(sf_load_u64(enc.data + nsplit_at), 3);
    uint8_t w[16];
    /* Splitters out of order (the first two swapped), or equal. */
    memcpy(w, enc.data + split_at + 8, 8);
    memcpy(w + 8, enc.data + split_at, 8);
    refuse_patched(&cfg, &ds, &enc, split_at, w, 16, "not above");
    memcpy(w, enc.data + split_at, 8);
    refuse_patched(&cfg, &ds, &enc, split_at + 8, w, 8, "not above");
    /* More splitters than K - 1. */
    sf_store_u64(w, 4);
    refuse_patched(&cfg, &ds, &enc, nsplit_at, w, 8, "splitters");
    /* Shard weights that do not add up to the sample. */
    const size_t weight_at = split_at + 3 * 8;
    sf_store_u64(w, sf_load_u64(enc.data + weight_at) - 1);
    refuse_patched(&cfg, &ds, &enc, weight_at, w, 8, "sum");
    /* A sample larger than shard.sample. */
    sf_store_u64(w, cfg.sample + 1);
    refuse_patched(&cfg, &ds, &enc, HDR_BYTES + 16, w, 8, "sample");
    sf_buf_fini(&enc);
    ds_fini(&ds);

    /* float64: a NaN splitter. */
    double f[200];
    for (int i = 0; i < 200; i++) f[i] = i / 4;
    ds_init(&ds, "f", SF_FLOAT64);
    ds_f64(&ds, f, NULL, 200, 0, true);
    cfg = shard_cfg(SF_SHARD_RANGE, "f", 3);
    encode_plan(&cfg, &ds, &enc);
    assert_int_equal(sf_load_u64(enc.data + nsplit_at), 2);
    double nan = NAN;
    uint64_t bits;
    memcpy(&bits, &nan, 8);
    sf_store_u64(w, bits);
    refuse_patched(&cfg, &ds, &enc, split_at + 8, w, 8, "NaN");
    sf_buf_fini(&enc);
    ds_fini(&ds);
}

static void test_crafted_semantic(void **state)
{
    /* int64 keys 0..5 without a map, key k on k + 1 rows: six lone groups
     * of 13 bytes, then six keys of 12 (int64 and group index). */
    int64_t v[21];
    size_t n = 0;
    for (int k = 0; k < 6; k++)
        for (int r = 0; r <= k; r++) v[n++] = k;
    dataset ds;
    ds_init(&ds, "k", SF_INT64);
    ds_i64(&ds, v, NULL, n, 0, true);
    sf_shard_config cfg = shard_cfg(SF_SHARD_SEMANTIC, "k", 3);
    sf_buf enc;
    encode_plan(&cfg, &ds, &enc);
    const size_t ngroups_at = HDR_BYTES + 1 + 16, groups_at = ngroups_at + 8;
    assert_int_equal(sf_load_u64(enc.data + ngroups_at), 6);
    const size_t nkeys_at = groups_at + 6 * 13, keys_at = nkeys_at + 8;
    assert_int_equal(sf_load_u64(enc.data + nkeys_at), 6);
    assert_int_equal(enc.len, keys_at + 6 * 12);
    uint8_t w[12];
    /* A key twice. */
    memcpy(w, enc.data + keys_at, 8);
    refuse_patched(&cfg, &ds, &enc, keys_at + 12, w, 8, "repeats");
    /* Two keys in the group of one unmapped key (and so one group with no
     * key). */
    memcpy(w, enc.data + keys_at + 8, 4);
    refuse_patched(&cfg, &ds, &enc, keys_at + 12 + 8, w, 4, "share");
    /* A group index past the groups. */
    patch_u32(w, 6);
    refuse_patched(&cfg, &ds, &enc, keys_at + 8, w, 4, "group");
    /* Group rows that do not add up to the rows of the pre-pass. */
    sf_store_u64(w, sf_load_u64(enc.data + groups_at + 5) + 1);
    refuse_patched(&cfg, &ds, &enc, groups_at + 5, w, 8, "sum");
    /* Groups out of shard order, a shard past K, an unknown flag, and a
     * group of the map in a plan without one. */
    patch_u32(w, 2);
    refuse_patched(&cfg, &ds, &enc, groups_at, w, 4, "shard");
    patch_u32(w, 3);
    refuse_patched(&cfg, &ds, &enc, groups_at + 5 * 13, w, 4, "K = 3");
    w[0] = 2;
    refuse_patched(&cfg, &ds, &enc, groups_at + 4, w, 1, "unmapped");
    w[0] = 0;
    refuse_patched(&cfg, &ds, &enc, groups_at + 4, w, 1, "without");
    sf_buf_fini(&enc);
    ds_fini(&ds);
}

/* ---- arguments ---------------------------------------------------------- */

static void test_arguments(void **state)
{
    dataset ds;
    ds_init(&ds, "k", SF_INT64);
    sf_shard_config cfg = shard_cfg(SF_SHARD_HASH, "k", 3);
    sf_shard_plan *p = make_plan(&cfg, &ds);
    sf_buf buf;
    sf_buf_init(&buf);
    assert_int_equal(sf_shard_plan_encode(NULL, &buf), SF_ERR_ARG);
    assert_int_equal(sf_shard_plan_encode(p, NULL), SF_ERR_ARG);
    assert_int_equal(sf_shard_plan_decode(NULL, (const uint8_t *)"", 0), SF_ERR_ARG);
    assert_int_equal(sf_shard_plan_decode(p, NULL, 5), SF_ERR_ARG);
    expect_refused(p, NULL, 0, "header");
    OK(sf_shard_plan_finish(p, UINT64_MAX, 0, 0));
    OK(sf_shard_plan_encode(p, &buf));
    /* A hash plan is its header alone. */
    assert_int_equal(buf.len, HDR_BYTES);
    sf_shard_plan_destroy(&p);
    sf_buf_fini(&buf);
    ds_fini(&ds);
}

/* ---- main --------------------------------------------------------------- */

static int setup_tmp(void **state)
{
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/sf_test_shard_codec_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int teardown_tmp(void **state)
{
    static const char *files[] = {"size.csv", "map.csv", "intmap.csv"};
    char path[512];
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", tmpdir, files[i]);
        unlink(path);
    }
    rmdir(tmpdir);
    return 0;
}

#if defined(__SANITIZE_ADDRESS__)
#define SF_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SF_TEST_ASAN 1
#endif
#endif

/* Caps the address space at what the process uses now plus 512 MiB, so that
 * a decoder that sized an allocation from a forged count (gigabytes for
 * the counts forged here) fails with SF_ERR_NOMEM, which the tests refuse,
 * instead of being saved by lazy overcommit. Not under AddressSanitizer,
 * which reserves terabytes of shadow memory up front. */
static void cap_address_space(void)
{
#ifndef SF_TEST_ASAN
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long pages = 0;
    if (f == NULL) return;
    int got = fscanf(f, "%lu", &pages);
    fclose(f);
    if (got != 1) return;
    struct rlimit lim;
    lim.rlim_cur = lim.rlim_max =
        (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + ((rlim_t)512 << 20);
    if (setrlimit(RLIMIT_AS, &lim) != 0) perror("setrlimit(RLIMIT_AS)");
#endif
}

int main(void)
{
    cap_address_space();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_csv),
        cmocka_unit_test(test_size_rows),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_range_int64_zipf),
        cmocka_unit_test(test_range_timestamp),
        cmocka_unit_test(test_range_float),
        cmocka_unit_test(test_range_degenerate),
        cmocka_unit_test(test_semantic_strings),
        cmocka_unit_test(test_semantic_map),
        cmocka_unit_test(test_semantic_int64),
        cmocka_unit_test(test_semantic_empty),
        cmocka_unit_test(test_crafted_range),
        cmocka_unit_test(test_crafted_semantic),
        cmocka_unit_test(test_arguments),
    };
    return cmocka_run_group_tests(tests, setup_tmp, teardown_tmp);
}
