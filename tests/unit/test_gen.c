/* Unit tests of the synthetic `requests` generator (io/gen_requests.c).
 *
 * Expectations come from a second path: the same rows generated another way
 * (other batch sizes, independent ranges, projections), closed-form
 * probabilities (Zipf, the status mix worked out by hand from the documented
 * weights, a lognormal's median and sigma) with tolerances of several standard
 * errors for the sample size, and domain rules written down in the test. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/gen_requests.h"
#include "shardflow/io.h"

typedef struct row {
    int64_t ts;
    char service[32];
    char endpoint[64];
    char region[16];
    int64_t user;
    char ip[20];
    int64_t status;
    double latency;
    bool bytes_null;
    int64_t bytes;
    bool revenue_null;
    double revenue;
} row;

static const char *const services[] = {"search",   "catalog",   "auth",     "cart",
                                       "recommendations", "profile", "checkout", "inventory",
                                       "payments", "shipping",  "reviews",  "notifications"};
static const char *const regions[] = {"us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast"};

static void config(sf_input_config *cfg, uint64_t rows, uint64_t seed)
{
    sf_input_config_defaults(cfg);
    cfg->format = SF_INPUT_SYNTHETIC;
    cfg->generator = strdup("requests");
    cfg->rows = rows;
    cfg->seed = seed;
}

static void copy_str(const sf_column *c, size_t r, char *out, size_t n)
{
    size_t len;
    const char *s = sf_dict_str(&c->dict, c->code[r], &len);
    assert_true(len < n);
    memcpy(out, s, len);
    out[len] = '\0';
}

/* Row r of batch b as a record (only loaded columns are filled). */
static void extract(const sf_batch *b, size_t r, row *o)
{
    memset(o, 0, sizeof *o);
    const sf_column *c = b->cols;
    if (c[SF__GEN_TIMESTAMP].loaded) o->ts = c[SF__GEN_TIMESTAMP].i64[r];
    if (c[SF__GEN_SERVICE].loaded) copy_str(&c[SF__GEN_SERVICE], r, o->service, sizeof o->service);
    if (c[SF__GEN_ENDPOINT].loaded) copy_str(&c[SF__GEN_ENDPOINT], r, o->endpoint, sizeof o->endpoint);
    if (c[SF__GEN_REGION].loaded) copy_str(&c[SF__GEN_REGION], r, o->region, sizeof o->region);
    if (c[SF__GEN_USER_ID].loaded) o->user = c[SF__GEN_USER_ID].i64[r];
    if (c[SF__GEN_CLIENT_IP].loaded) copy_str(&c[SF__GEN_CLIENT_IP], r, o->ip, sizeof o->ip);
    if (c[SF__GEN_STATUS].loaded) o->status = c[SF__GEN_STATUS].i64[r];
    if (c[SF__GEN_LATENCY_MS].loaded) o->latency = c[SF__GEN_LATENCY_MS].f64[r];
    if (c[SF__GEN_BYTES].loaded) {
        o->bytes_null = sf_col_is_null(&c[SF__GEN_BYTES], r);
        if (!o->bytes_null) o->bytes = c[SF__GEN_BYTES].i64[r];
    }
    if (c[SF__GEN_REVENUE].loaded) {
        o->revenue_null = sf_col_is_null(&c[SF__GEN_REVENUE], r);
        if (!o->revenue_null) o->revenue = c[SF__GEN_REVENUE].f64[r];
    }
}

static bool row_equal(const row *a, const row *b)
{
    return a->ts == b->ts && strcmp(a->service, b->service) == 0 && strcmp(a->endpoint, b->endpoint) == 0 &&
           strcmp(a->region, b->region) == 0 && a->user == b->user && strcmp(a->ip, b->ip) == 0 &&
           a->status == b->status && a->latency == b->latency && a->bytes_null == b->bytes_null &&
           a->bytes == b->bytes && a->revenue_null == b->revenue_null && a->revenue == b->revenue;
}

/* Reads the whole input through the public reader API into a row array. */
static row *collect(const sf_input_config *cfg, const uint8_t *want, size_t *nrows)
{
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(cfg, &r), SF_OK);
    if (want) assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    row *rows = malloc(sizeof *rows * (cfg->rows ? cfg->rows : 1));
    assert_non_null(rows);
    size_t n = 0;
    bool eof = false;
    while (!eof) {
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) {
            assert_int_equal(b.nrows, 0);
            break;
        }
        assert_true(b.nrows > 0 && b.nrows <= cfg->batch_rows);
        assert_int_equal(b.first_row, n);
        for (size_t i = 0; i < b.nrows; i++) extract(&b, i, &rows[n + i]);
        n += b.nrows;
    }
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    *nrows = n;
    return rows;
}

static double harmonic(uint64_t n, double s)
{
    double h = 0;
    for (uint64_t k = n; k >= 1; k--) h += pow((double)k, -s);   /* small terms first */
    return h;
}

static void test_schema(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 10, 1);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    const sf_schema *s = sf_reader_schema(r);
    static const char *names[] = {"timestamp", "service", "endpoint", "region", "user_id",
                                  "client_ip", "status", "latency_ms", "bytes", "revenue"};
    static const sf_type types[] = {SF_TIMESTAMP, SF_STRING, SF_STRING, SF_STRING, SF_INT64,
                                    SF_STRING, SF_INT64, SF_FLOAT64, SF_INT64, SF_FLOAT64};
    assert_int_equal(s->ncols, 10);
    for (int i = 0; i < 10; i++) {
        assert_string_equal(s->fields[i].name, names[i]);
        assert_int_equal(s->fields[i].type, types[i]);
    }
    assert_int_equal(sf_reader_total_rows(r), 10);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

static void test_errors(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 10, 1);
    free(cfg.generator);
    cfg.generator = strdup("clicks");
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_ERR_CONFIG);
    assert_null(r);
    assert_non_null(strstr(sf_error_message(), "'clicks'"));
    assert_non_null(strstr(sf_error_message(), "known generators: requests"));

    free(cfg.generator);
    cfg.generator = strdup("requests");
    cfg.users = 0;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "input.users"));
    cfg.users = 10;
    cfg.zipf = -1;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "input.zipf"));
    sf_input_config_fini(&cfg);
}

/* sf_reader_stable_dict: the client addresses have one (with and without
 * incidents), with an id, and every batch's client_ip column holds exactly
 * its strings under its codes; the other string columns and the numbers
 * have none. */
static void test_stable_dict(void **state)
{
    (void)state;
    for (int inc = 0; inc < 2; inc++) {
        sf_input_config cfg;
        /* Incidents need ten minutes of requests. */
        config(&cfg, inc ? 600000 : 20000, 9);
        cfg.batch_rows = inc ? 100000 : 3000;
        cfg.incidents = inc == 1;
        sf_reader *r = NULL;
        if (sf_reader_open(&cfg, &r) != SF_OK) fail_msg("open: %s", sf_error_message());
        const sf_schema *s = sf_reader_schema(r);
        int ip = -1;
        for (int c = 0; c < s->ncols; c++)
            if (strcmp(s->fields[c].name, "client_ip") == 0) ip = c;
            else assert_null(sf_reader_stable_dict(r, c));
        assert_true(ip >= 0);
        assert_null(sf_reader_stable_dict(r, -1));
        assert_null(sf_reader_stable_dict(r, s->ncols));
        const sf_dict *sd = sf_reader_stable_dict(r, ip);
        assert_non_null(sd);
        assert_true(sd->stable_id != 0);
        assert_true(sd->n >= 50000);
        sf_batch b;
        assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
        bool eof = false;
        size_t batches = 0;
        for (;;) {
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            if (eof) break;
            batches++;
            const sf_column *c = &b.cols[ip];
            assert_int_equal(c->dict.n, sd->n);
            assert_memory_equal(c->dict.off, sd->off, ((size_t)sd->n + 1) * sizeof *sd->off);
            assert_memory_equal(c->dict.bytes, sd->bytes, sd->off[sd->n]);
            for (size_t i = 0; i < b.nrows; i++) assert_true(c->code[i] < sd->n);
            /* A batch's dictionary is a copy, not the stable one itself. */
            assert_true(c->dict.stable_id == 0);
        }
        assert_int_equal(batches, inc ? 6 : 7);
        sf_batch_fini(&b);
        sf_reader_destroy(&r);
        sf_input_config_fini(&cfg);
    }
}

static void test_row_count_and_batches(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 100003, 5);
    cfg.batch_rows = 4096;
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_total_rows(r), 100003);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t total = 0, batches = 0;
        bool eof = false;
        for (;;) {
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            if (eof) break;
            assert_int_equal(b.first_row, total);
            total += b.nrows;
            batches++;
        }
        assert_int_equal(total, 100003);
        assert_int_equal(batches, (100003 + 4095) / 4096);   /* 24 full batches and one of 1699 rows */
        assert_int_equal(sf_reader_rewind(r), SF_OK);
    }
    sf_batch_fini(&b);
    sf_reader_destroy(&r);

    /* Zero rows: the first next() is the end. */
    cfg.rows = 0;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof = false;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_true(eof);
    assert_int_equal(b.nrows, 0);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

static void test_determinism(void **state)
{
    (void)state;
    sf_input_config a, b, c;
    config(&a, 20000, 7);
    config(&b, 20000, 7);
    config(&c, 20000, 8);
    b.batch_rows = 777;   /* a different batch size must not matter */
    size_t na, nb, nc;
    row *ra = collect(&a, NULL, &na);
    row *rb = collect(&b, NULL, &nb);
    row *rc = collect(&c, NULL, &nc);
    assert_int_equal(na, 20000);
    assert_int_equal(nb, 20000);
    assert_int_equal(nc, 20000);
    size_t same_user = 0, same_latency = 0;
    for (size_t i = 0; i < na; i++) {
        assert_true(row_equal(&ra[i], &rb[i]));
        same_user += ra[i].user == rc[i].user;
        same_latency += ra[i].latency == rc[i].latency;
        /* Timestamps depend on the row index and jitter only. */
    }
    /* Another seed: the most common user has p ~ 0.09 at the defaults, so two
     * independent streams agree on about 1-2% of rows; latencies (continuous)
     * almost never. Far below these bounds if the seed is used at all. */
    assert_true(same_user < na / 10);
    assert_true(same_latency < na / 100);
    free(ra);
    free(rb);
    free(rc);
    sf_input_config_fini(&a);
    sf_input_config_fini(&b);
    sf_input_config_fini(&c);
}

static void test_random_access(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 10000, 99);
    sf_schema s;
    sf_schema_init(&s);
    assert_int_equal(sf__gen_requests_schema(&s), SF_OK);
    sf_batch whole, part;
    assert_int_equal(sf_batch_init(&whole, &s, NULL, 10000), SF_OK);
    assert_int_equal(sf_batch_init(&part, &s, NULL, 5000), SF_OK);
    assert_int_equal(sf__gen_requests_range(&cfg, 0, 10000, NULL, &whole), SF_OK);
    assert_int_equal(whole.nrows, 10000);
    assert_int_equal(whole.first_row, 0);

    /* Uneven ranges, generated out of order with one model. */
    static const uint64_t cuts[] = {0, 1, 2, 700, 4097, 5000, 9999, 10000};
    const int ncuts = (int)(sizeof cuts / sizeof cuts[0]);
    sf__gen_model *m = NULL;
    assert_int_equal(sf__gen_requests_model_create(&cfg, &m), SF_OK);
    for (int k = ncuts - 2; k >= 0; k--) {
        uint64_t lo = cuts[k], hi = cuts[k + 1];
        assert_int_equal(sf__gen_requests_fill(m, lo, hi - lo, NULL, &part), SF_OK);
        assert_int_equal(part.nrows, hi - lo);
        assert_int_equal(part.first_row, lo);
        for (uint64_t i = lo; i < hi; i++) {
            row x, y;
            extract(&whole, i, &x);
            extract(&part, i - lo, &y);
            assert_true(row_equal(&x, &y));
        }
    }
    /* A range far beyond the rows asked for is still a pure function of i. */
    assert_int_equal(sf__gen_requests_fill(m, 1000000000000ull, 3, NULL, &part), SF_OK);
    assert_int_equal(part.cols[SF__GEN_TIMESTAMP].i64[0] / 1000 * 1000,
                     SF__GEN_EPOCH_US + 1000000000000ll * 1000);
    sf__gen_requests_model_destroy(&m);
    assert_null(m);

    /* Too many rows for the batch is an error, not an overflow. */
    assert_int_equal(sf__gen_requests_range(&cfg, 0, part.cap + 1, NULL, &part), SF_ERR_ARG);
    sf_batch_fini(&whole);
    sf_batch_fini(&part);
    sf_schema_fini(&s);
    sf_input_config_fini(&cfg);
}

static void test_projection(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 30000, 3);
    size_t n_all, n_proj;
    row *all = collect(&cfg, NULL, &n_all);
    /* Only the columns that depend on hidden ones (revenue needs service and
     * status, bytes needs status) plus user_id. */
    uint8_t want[SF__GEN_NCOLS] = {0};
    want[SF__GEN_USER_ID] = 1;
    want[SF__GEN_BYTES] = 1;
    want[SF__GEN_REVENUE] = 1;
    row *proj = collect(&cfg, want, &n_proj);
    assert_int_equal(n_all, n_proj);
    for (size_t i = 0; i < n_all; i++) {
        assert_int_equal(all[i].user, proj[i].user);
        assert_int_equal(all[i].bytes_null, proj[i].bytes_null);
        assert_int_equal(all[i].bytes, proj[i].bytes);
        assert_int_equal(all[i].revenue_null, proj[i].revenue_null);
        assert_true(all[i].revenue == proj[i].revenue);
        assert_int_equal(proj[i].ts, 0);             /* not loaded: left empty */
        assert_string_equal(proj[i].service, "");
    }

    /* Unloaded columns are not allocated, and nothing is written to them. */
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    for (int c = 0; c < SF__GEN_NCOLS; c++) assert_int_equal(b.cols[c].loaded, want[c] != 0);
    assert_null(b.cols[SF__GEN_TIMESTAMP].i64);
    assert_null(b.cols[SF__GEN_SERVICE].code);
    assert_int_equal(b.cols[SF__GEN_SERVICE].dict.n, 0);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    free(all);
    free(proj);
    sf_input_config_fini(&cfg);
}

static int status_allowed(int64_t s)
{
    static const int64_t ok[] = {200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503};
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
        if (ok[i] == s) return 1;
    return 0;
}

static int index_of(const char *const *list, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return i;
    return -1;
}

static void test_domains(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 100000, 11);
    cfg.batch_rows = 8192;
    size_t n;
    row *rows = collect(&cfg, NULL, &n);
    assert_int_equal(n, 100000);
    /* 2026-01-01T00:00:00Z = 1767225600 s (20454 days of 86400 s). */
    assert_int_equal(SF__GEN_EPOCH_US, 20454ll * 86400 * 1000000);
    char first[40];
    sf_timestamp_format(rows[0].ts, first, sizeof first);
    assert_memory_equal(first, "2026-01-01T00:00:00", 19);

    char seen_ep[12][8][64];
    int nseen_ep[12] = {0};
    int status_seen[600] = {0};
    for (size_t i = 0; i < n; i++) {
        const row *x = &rows[i];
        int64_t base = SF__GEN_EPOCH_US + (int64_t)i * 1000;
        assert_true(x->ts >= base && x->ts < base + 1000);
        if (i > 0) assert_true(x->ts >= rows[i - 1].ts);

        int sv = index_of(services, 12, x->service);
        assert_true(sv >= 0);
        assert_true(index_of(regions, 6, x->region) >= 0);
        char prefix[64];
        snprintf(prefix, sizeof prefix, "/api/%s/", x->service);
        assert_memory_equal(x->endpoint, prefix, strlen(prefix));
        assert_true(strlen(x->endpoint) > strlen(prefix));
        int e = 0;
        while (e < nseen_ep[sv] && strcmp(seen_ep[sv][e], x->endpoint) != 0) e++;
        if (e == nseen_ep[sv]) {
            assert_true(nseen_ep[sv] < 8);   /* at most 8 endpoints per service */
            snprintf(seen_ep[sv][nseen_ep[sv]++], 64, "%s", x->endpoint);
        }

        assert_true(x->user >= 1 && x->user <= 100000);
        unsigned a, b, c, d;
        char tail;
        assert_int_equal(sscanf(x->ip, "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail), 4);
        assert_true(a == 10 && b < 256 && c < 256 && d < 256);

        assert_true(status_allowed(x->status));
        status_seen[x->status] = 1;

        assert_true(x->latency > 0);
        assert_true(round(x->latency * 1000) / 1000 == x->latency);   /* 3 decimals */

        assert_int_equal(x->bytes_null, x->status == 204 || x->status == 304);
        if (!x->bytes_null) assert_true(x->bytes >= 1);

        bool paid = (strcmp(x->service, "checkout") == 0 || strcmp(x->service, "payments") == 0) &&
                    x->status >= 200 && x->status < 300;
        assert_int_equal(x->revenue_null, !paid);
        if (paid) {
            assert_true(x->revenue >= 0.01);
            assert_true(round(x->revenue * 100) / 100 == x->revenue);   /* 2 decimals */
        }
    }
    for (int sv = 0; sv < 12; sv++) assert_true(nseen_ep[sv] >= 3);
    /* Every status of the mix shows up in 100000 rows (the rarest has p > 0.003). */
    static const int all[] = {200, 201, 204, 301, 304, 400, 401, 403, 404, 429, 500, 502, 503};
    for (int k = 0; k < 13; k++) assert_true(status_seen[all[k]]);
    free(rows);
    sf_input_config_fini(&cfg);
}

/* |observed - p| within 5 standard errors of a binomial proportion. */
static void assert_share(size_t count, size_t n, double p)
{
    double obs = (double)count / (double)n;
    double se = sqrt(p * (1 - p) / (double)n);
    if (fabs(obs - p) > 5 * se) fail_msg("share %.5f, expected %.5f +- %.5f", obs, p, 5 * se);
}

static void zipf_users(uint64_t users, double s, size_t n)
{
    sf_input_config cfg;
    config(&cfg, n, 1234);
    cfg.users = users;
    cfg.zipf = s;
    uint8_t want[SF__GEN_NCOLS] = {0};
    want[SF__GEN_USER_ID] = 1;
    size_t got;
    row *rows = collect(&cfg, want, &got);
    assert_int_equal(got, n);
    size_t c1 = 0, c2 = 0, c10 = 0;
    for (size_t i = 0; i < n; i++) {
        assert_true(rows[i].user >= 1 && (uint64_t)rows[i].user <= users);
        c1 += rows[i].user == 1;
        c2 += rows[i].user == 2;
        c10 += rows[i].user == 10;
    }
    double h = harmonic(users, s);
    assert_share(c1, n, 1 / h);
    assert_share(c2, n, pow(2, -s) / h);
    assert_share(c10, n, pow(10, -s) / h);
    free(rows);
    sf_input_config_fini(&cfg);
}

static void test_zipf_table(void **state)
{
    (void)state;
    zipf_users(100000, 1.1, 200000);   /* table sampler */
    zipf_users(1000, 0.7, 200000);
}

static void test_zipf_rejection_inversion(void **state)
{
    (void)state;
    zipf_users(2000000, 1.1, 200000);   /* more users than the table limit */
    zipf_users(2000000, 1.0, 200000);   /* the exponent-1 special case */
}

static void test_zipf_services_and_status_mix(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 200000, 77);
    size_t n;
    row *rows = collect(&cfg, NULL, &n);
    size_t svc[12] = {0}, search = 0, search200 = 0, profile200 = 0;
    double sum_log = 0, sum_log2 = 0;
    for (size_t i = 0; i < n; i++) {
        int sv = index_of(services, 12, rows[i].service);
        assert_in_range(sv, 0, 11);
        if (sv < 0) continue;
        svc[sv]++;
        if (sv == 0) {
            search++;
            search200 += rows[i].status == 200;
        }
        if (sv == 5 && rows[i].status == 200) {
            profile200++;
            double l = log(rows[i].latency);
            sum_log += l;
            sum_log2 += l * l;
        }
    }
    double h12 = harmonic(12, 1.1);
    for (int k = 0; k < 12; k++) assert_share(svc[k], n, pow(k + 1, -1.1) / h12);
    /* Status mix of "search": base weights sum to 9950 (parts per 10000:
     * 200: 8400, 201: 300, 204: 200, 301: 50, 304: 250, 400: 150, 401: 100,
     * 403: 50, 404: 200, 429: 80, 500: 80, 502: 40, 503: 50); search triples
     * 304 (+500) and multiplies 404 by 1.5 (+100): P(200) = 8400 / 10550. */
    assert_share(search200, search, 8400.0 / 10550.0);
    /* Latency of successful profile requests: lognormal, median 20 ms, sigma
     * 0.6, so log-latency has mean ln 20 and standard deviation 0.6. */
    double mean = sum_log / (double)profile200;
    double sd = sqrt(sum_log2 / (double)profile200 - mean * mean);
    assert_true(profile200 > 1000);
    assert_true(fabs(mean - log(20.0)) < 5 * 0.6 / sqrt((double)profile200));
    assert_true(fabs(sd - 0.6) < 5 * 0.6 / sqrt(2.0 * (double)profile200));
    free(rows);
    sf_input_config_fini(&cfg);
}

static double chi_square(const size_t *counts, size_t bins, size_t n)
{
    double e = (double)n / (double)bins, x = 0;
    for (size_t k = 0; k < bins; k++) x += ((double)counts[k] - e) * ((double)counts[k] - e) / e;
    return x;
}

static void test_uniform(void **state)
{
    (void)state;
    /* zipf = 0: every key uniform. With df degrees of freedom chi-square has
     * mean df and sd sqrt(2 df); the bound is 6 sd above the mean, while a
     * Zipf-shaped sample gives values in the tens of thousands. */
    const size_t n = 100000;
    sf_input_config cfg;
    config(&cfg, n, 4242);
    cfg.zipf = 0;
    cfg.users = 50;
    size_t got;
    row *rows = collect(&cfg, NULL, &got);
    size_t users[50] = {0}, reg[6] = {0}, svc[12] = {0};
    for (size_t i = 0; i < n; i++) {
        users[rows[i].user - 1]++;
        reg[index_of(regions, 6, rows[i].region)]++;
        svc[index_of(services, 12, rows[i].service)]++;
    }
    assert_true(chi_square(users, 50, n) < 49 + 6 * sqrt(98.0));
    assert_true(chi_square(reg, 6, n) < 5 + 6 * sqrt(10.0));
    assert_true(chi_square(svc, 12, n) < 11 + 6 * sqrt(22.0));
    free(rows);
    sf_input_config_fini(&cfg);

    /* The same beyond the table limit: 2^21 users in 64 equal id ranges. */
    config(&cfg, n, 4243);
    cfg.zipf = 0;
    cfg.users = (uint64_t)1 << 21;
    uint8_t want[SF__GEN_NCOLS] = {0};
    want[SF__GEN_USER_ID] = 1;
    rows = collect(&cfg, want, &got);
    size_t bins[64] = {0};
    for (size_t i = 0; i < n; i++) {
        assert_true(rows[i].user >= 1 && rows[i].user <= (1 << 21));
        bins[(rows[i].user - 1) >> 15]++;
    }
    assert_true(chi_square(bins, 64, n) < 63 + 6 * sqrt(126.0));
    free(rows);
    sf_input_config_fini(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_row_count_and_batches),
        cmocka_unit_test(test_stable_dict),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_random_access),
        cmocka_unit_test(test_projection),
        cmocka_unit_test(test_domains),
        cmocka_unit_test(test_zipf_table),
        cmocka_unit_test(test_zipf_rejection_inversion),
        cmocka_unit_test(test_zipf_services_and_status_mix),
        cmocka_unit_test(test_uniform),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
