/* Unit tests of the injected incidents of the `requests` generator
 * (io/gen_requests.c) and of its ground truth file (io/gen_truth.c).
 *
 * Expectations come from a second path: the same rows generated with
 * incidents off (the same random stream), from which the test works out by
 * itself which rows each incident must change and how; digests of rows taken
 * from the generator before incidents existed; windows computed by hand;
 * binomial shares within 5 standard errors. */
#define _XOPEN_SOURCE 700 /* mkstemp, P_tmpdir */
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
#include <unistd.h>

#include "io/gen_requests.h"
#include "shardflow/io.h"

#define ROWS_20MIN UINT64_C(1200000)
#define CHUNK 65536

/* A new empty file in the temporary directory ($TMPDIR, else the system's);
 * path receives its name. */
static void temp_file(char *path, size_t n)
{
    const char *dir = getenv("TMPDIR");
    snprintf(path, n, "%s/sf_truth_XXXXXX", dir && *dir ? dir : P_tmpdir);
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
}

static void config(sf_input_config *cfg, uint64_t rows, uint64_t seed, bool incidents)
{
    sf_input_config_defaults(cfg);
    cfg->format = SF_INPUT_SYNTHETIC;
    cfg->generator = strdup("requests");
    cfg->rows = rows;
    cfg->seed = seed;
    cfg->incidents = incidents;
}

/* ---- rows ------------------------------------------------------------------ */

typedef struct str {
    const char *p;
    size_t n;
} str;

typedef struct row {
    int64_t ts;
    str service, endpoint, region, ip;
    int64_t user, status, bytes;
    double latency, revenue;
    bool bytes_null, revenue_null;
    int64_t incident;
} row;

static str col_str(const sf_column *c, size_t r)
{
    str s;
    s.p = sf_dict_str(&c->dict, c->code[r], &s.n);
    return s;
}

static bool str_is(str s, const char *z) { return s.n == strlen(z) && memcmp(s.p, z, s.n) == 0; }
static bool str_eq(str a, str b) { return a.n == b.n && memcmp(a.p, b.p, a.n) == 0; }

/* Row r of b; strings point into the batch's dictionaries. */
static void get_row(const sf_batch *b, size_t r, row *o)
{
    const sf_column *c = b->cols;
    o->ts = c[SF__GEN_TIMESTAMP].i64[r];
    o->service = col_str(&c[SF__GEN_SERVICE], r);
    o->endpoint = col_str(&c[SF__GEN_ENDPOINT], r);
    o->region = col_str(&c[SF__GEN_REGION], r);
    o->ip = col_str(&c[SF__GEN_CLIENT_IP], r);
    o->user = c[SF__GEN_USER_ID].i64[r];
    o->status = c[SF__GEN_STATUS].i64[r];
    o->latency = c[SF__GEN_LATENCY_MS].f64[r];
    o->bytes_null = sf_col_is_null(&c[SF__GEN_BYTES], r);
    o->bytes = o->bytes_null ? 0 : c[SF__GEN_BYTES].i64[r];
    o->revenue_null = sf_col_is_null(&c[SF__GEN_REVENUE], r);
    o->revenue = o->revenue_null ? 0 : c[SF__GEN_REVENUE].f64[r];
    o->incident = b->ncols > SF__GEN_INCIDENT ? c[SF__GEN_INCIDENT].i64[r] : 0;
}

/* Equal in every column but the incident. */
static bool same_row(const row *a, const row *b)
{
    return a->ts == b->ts && str_eq(a->service, b->service) && str_eq(a->endpoint, b->endpoint) &&
           str_eq(a->region, b->region) && str_eq(a->ip, b->ip) && a->user == b->user &&
           a->status == b->status && a->latency == b->latency && a->bytes_null == b->bytes_null &&
           a->bytes == b->bytes && a->revenue_null == b->revenue_null && a->revenue == b->revenue;
}

/* FNV-1a over every column of every row (strings by content), so that the
 * digest does not depend on dictionary codes. */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++) {
        h ^= c[i];
        h *= UINT64_C(0x100000001b3);
    }
    return h;
}

static uint64_t row_digest(const sf_batch *b, size_t r, uint64_t h)
{
    for (int c = 0; c < b->ncols; c++) {
        const sf_column *col = &b->cols[c];
        uint8_t null = sf_col_is_null(col, r);
        h = fnv(h, &null, 1);
        if (null) continue;
        if (col->type == SF_STRING) {
            str s = col_str(col, r);
            uint32_t l = (uint32_t)s.n;
            h = fnv(h, &l, 4);
            h = fnv(h, s.p, s.n);
        } else if (col->type == SF_FLOAT64) {
            h = fnv(h, &col->f64[r], 8);
        } else {
            h = fnv(h, &col->i64[r], 8);
        }
    }
    return h;
}

/* The documented status factor of the latency median (gen_requests.c). */
static double status_factor(int64_t st)
{
    switch (st) {
    case 301:
    case 304: return 0.4;
    case 401:
    case 403:
    case 429: return 0.3;
    case 400:
    case 404: return 0.5;
    case 500: return 2.0;
    case 502: return 3.0;
    case 503: return 0.2;
    default: return 1.0;
    }
}

/* |observed - p| within 5 standard errors of a binomial proportion. */
static void assert_share(uint64_t count, uint64_t n, double p)
{
    assert_true(n > 0);
    double obs = (double)count / (double)n;
    double se = sqrt(p * (1 - p) / (double)n);
    if (fabs(obs - p) > 5 * se) fail_msg("share %.5f of %llu, expected %.5f +- %.5f", obs, (unsigned long long)n, p, 5 * se);
}

/* ---- incidents off: the data of before ------------------------------------ */

static void test_off_unchanged(void **state)
{
    (void)state;
    /* Digests of these ranges taken with the generator as it was before
     * incidents were added: with incidents off, not one bit may change. */
    static const struct {
        uint64_t seed, users;
        double zipf;
        uint64_t first, n;
        uint64_t digest;
    } cases[] = {
        {42, 100000, 1.1, 0, 200000, UINT64_C(0x68e5776adba14dab)},
        {7, 50, 0.0, 1000000000, 50000, UINT64_C(0x76e360284a5be326)},
        {3, 2000000, 1.1, 123456, 50000, UINT64_C(0x0e7214a0a1a889a9)},
        {2026, 100000, 1.1, 5999000, 20000, UINT64_C(0xc8970768daf8a6a5)},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        sf_input_config cfg;
        config(&cfg, 10000000, cases[k].seed, false);
        cfg.users = cases[k].users;
        cfg.zipf = cases[k].zipf;
        sf_schema s;
        sf_schema_init(&s);
        assert_int_equal(sf__gen_requests_schema_of(&cfg, &s), SF_OK);
        assert_int_equal(s.ncols, SF__GEN_NCOLS);
        sf_batch b;
        assert_int_equal(sf_batch_init(&b, &s, NULL, 4096), SF_OK);
        sf__gen_model *m = NULL;
        assert_int_equal(sf__gen_requests_model_create(&cfg, &m), SF_OK);
        assert_false(sf__gen_requests_model_incidents(m)->on);
        uint64_t h = UINT64_C(0xcbf29ce484222325);
        for (uint64_t at = 0; at < cases[k].n; at += 4096) {
            uint64_t n = cases[k].n - at < 4096 ? cases[k].n - at : 4096;
            assert_int_equal(sf__gen_requests_fill(m, cases[k].first + at, n, NULL, &b), SF_OK);
            for (size_t r = 0; r < b.nrows; r++) h = row_digest(&b, r, h);
        }
        if (h != cases[k].digest)
            fail_msg("case %zu: digest 0x%016llx, expected 0x%016llx", k, (unsigned long long)h,
                     (unsigned long long)cases[k].digest);
        sf__gen_requests_model_destroy(&m);
        sf_batch_fini(&b);
        sf_schema_fini(&s);
        sf_input_config_fini(&cfg);
    }
}

/* ---- configuration ---------------------------------------------------------- */

static void test_config_errors(void **state)
{
    (void)state;
    sf_input_config cfg;
    config(&cfg, 599999, 1, true);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_ERR_CONFIG);
    assert_null(r);
    assert_non_null(strstr(sf_error_message(), "input.incidents"));
    assert_non_null(strstr(sf_error_message(), "600000"));
    assert_non_null(strstr(sf_error_message(), "599999"));
    sf__gen_incidents p;
    assert_int_equal(sf__gen_requests_incidents(&cfg, &p), SF_ERR_CONFIG);
    char path[4096];
    temp_file(path, sizeof path);
    assert_int_equal(sf_gen_truth_write(&cfg, path), SF_ERR_CONFIG);

    /* Ten minutes exactly is enough; too few users is not. */
    cfg.rows = 600000;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_schema(r)->ncols, SF__GEN_NCOLS_INCIDENTS);
    assert_string_equal(sf_reader_schema(r)->fields[SF__GEN_INCIDENT].name, "incident");
    assert_int_equal(sf_reader_schema(r)->fields[SF__GEN_INCIDENT].type, SF_INT64);
    sf_reader_destroy(&r);
    cfg.users = 999;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "input.users"));

    /* Without incidents the same small inputs are fine. */
    cfg.incidents = false;
    cfg.rows = 10;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_schema(r)->ncols, SF__GEN_NCOLS);
    sf_reader_destroy(&r);

    /* A batch of the wrong width is refused. */
    cfg.incidents = true;
    cfg.rows = 600000;
    cfg.users = 100000;
    sf_schema s;
    sf_schema_init(&s);
    assert_int_equal(sf__gen_requests_schema(&s), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 10), SF_OK);
    assert_int_equal(sf__gen_requests_range(&cfg, 0, 10, NULL, &b), SF_ERR_ARG);
    sf_batch_fini(&b);
    sf_schema_fini(&s);

    /* Ground truth exists for synthetic inputs only. */
    cfg.format = SF_INPUT_CSV;
    assert_int_equal(sf_gen_truth_write(&cfg, path), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), "synthetic"));
    remove(path);
    sf_input_config_fini(&cfg);
}

/* ---- parameters and the truth file -------------------------------------------- */

static const char *const services[] = {"search",   "catalog",   "auth",     "cart",
                                       "recommendations", "profile", "checkout", "inventory",
                                       "payments", "shipping",  "reviews",  "notifications"};
static const char *const regions[] = {"us-east", "us-west", "eu-west", "eu-central", "ap-south", "ap-northeast"};

static int index_of(const char *const *list, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(list[i], s) == 0) return i;
    return -1;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long n = ftell(f);
    assert_true(n >= 0);
    rewind(f);
    char *t = malloc((size_t)n + 1);
    assert_non_null(t);
    assert_int_equal(fread(t, 1, (size_t)n, f), (size_t)n);
    t[n] = '\0';
    fclose(f);
    return t;
}

/* "2026-01-01T00:MM:SS" for a whole number of seconds after the start, as
 * the test writes it (at most a day). */
static void iso(uint64_t ms, char *buf, size_t n)
{
    uint64_t s = ms / 1000;
    snprintf(buf, n, "2026-01-01T%02u:%02u:%02u", (unsigned)(s / 3600), (unsigned)(s / 60 % 60), (unsigned)(s % 60));
}

static void test_parameters_and_truth(void **state)
{
    (void)state;
    /* Windows by hand: T = 20 minutes gives whole minutes for every
     * fraction (0.25 T = 5 min, 0.88 T = 17.6 -> 17 min); T = 10 minutes
     * rounds 0.50 T and 0.55 T both to 5 min, so error_burst is stretched to
     * one minute, as slow_abandonment is (0.80 T = 8, 0.88 T = 8.8 -> 8). */
    static const uint64_t win20[5][2] = {
        {300000, 420000}, {600000, 660000}, {120000, 360000}, {780000, 900000}, {960000, 1020000}};
    static const uint64_t win10[5][2] = {
        {120000, 180000}, {300000, 360000}, {60000, 180000}, {360000, 420000}, {480000, 540000}};
    static const char *const kinds[] = {"latency_regression", "error_burst", "credential_stuffing",
                                        "checkout_failure", "slow_abandonment"};
    static const char *const aspects[] = {"performance", "technical", "security", "business",
                                          "user_experience"};
    int differ_s1 = 0, differ_r5 = 0, differ_ip = 0;
    char first_s1[32] = "", first_r5[32] = "", first_ip[16] = "";
    for (uint64_t seed = 1; seed <= 12; seed++) {
        sf_input_config cfg;
        uint64_t rows = seed % 2 ? ROWS_20MIN : 600000;
        config(&cfg, rows, seed, true);
        sf__gen_incidents p;
        assert_int_equal(sf__gen_requests_incidents(&cfg, &p), SF_OK);
        assert_true(p.on);
        const uint64_t(*win)[2] = rows == ROWS_20MIN ? win20 : win10;
        for (int k = 0; k < 5; k++) {
            assert_int_equal(p.inc[k].id, k + 1);
            assert_string_equal(p.inc[k].kind, kinds[k]);
            assert_string_equal(p.inc[k].aspect, aspects[k]);
            assert_int_equal(p.inc[k].first_row, win[k][0]);
            assert_int_equal(p.inc[k].end_row, win[k][1]);
        }
        assert_int_equal(p.silence_first, win[4][1]);
        assert_int_equal(p.silence_end, win[4][1] + 600000);
        /* The documented constraints on the keys. */
        int s1 = index_of(services, 12, p.s1_name), s2 = index_of(services, 12, p.s2_name);
        int r1 = index_of(regions, 6, p.r1_name), r4 = index_of(regions, 6, p.r4_name),
            r5 = index_of(regions, 6, p.r5_name);
        assert_true(s1 == 3 || s1 == 4 || s1 == 5 || s1 == 7 || s1 == 8);
        assert_true(r1 >= 0 && r1 < 3);
        assert_true(s2 >= 0 && s2 != s1 && s2 != 6 && s2 != 2);
        assert_true(r4 >= 0 && r4 != r1);
        assert_true(r5 >= 0 && r5 != r1 && r5 != r4);
        assert_string_equal(p.login_service_name, "auth");
        assert_string_equal(p.login_endpoint_name, "/api/auth/login");
        for (int j = 0; j < 3; j++) {
            unsigned a, b, c, d;
            char tail;
            assert_int_equal(sscanf(p.ip[j], "%u.%u.%u.%u%c", &a, &b, &c, &d, &tail), 4);
            assert_true(a == 203 && b == 0 && c == 113 && d >= 1 && d <= 254);
            for (int i = 0; i < j; i++) assert_string_not_equal(p.ip[i], p.ip[j]);
        }
        if (seed == 1) {
            snprintf(first_s1, sizeof first_s1, "%s", p.s1_name);
            snprintf(first_r5, sizeof first_r5, "%s", p.r5_name);
            snprintf(first_ip, sizeof first_ip, "%s", p.ip[0]);
        }
        differ_s1 += strcmp(first_s1, p.s1_name) != 0;
        differ_r5 += strcmp(first_r5, p.r5_name) != 0;
        differ_ip += strcmp(first_ip, p.ip[0]) != 0;

        /* The truth file, written out by the test from the parameters. */
        char path[4096];
        temp_file(path, sizeof path);
        assert_int_equal(sf_gen_truth_write(&cfg, path), SF_OK);
        char *got = read_file(path);
        char t[5][2][32], end[32];
        for (int k = 0; k < 5; k++) {
            iso(win[k][0], t[k][0], sizeof t[k][0]);
            iso(win[k][1], t[k][1], sizeof t[k][1]);
        }
        iso(rows, end, sizeof end);
        char *want = malloc(8192);
        assert_non_null(want);
        snprintf(want, 8192,
                 "{\n  \"generator\": \"requests\",\n  \"seed\": %llu,\n  \"rows\": %llu,\n"
                 "  \"start\": \"2026-01-01T00:00:00\",\n  \"end\": \"%s\",\n  \"incidents\": [\n"
                 "    {\n      \"id\": 1,\n      \"kind\": \"latency_regression\",\n      \"aspect\": \"performance\",\n"
                 "      \"keys\": {\n        \"service\": \"%s\",\n        \"region\": \"%s\"\n      },\n"
                 "      \"start\": \"%s\",\n      \"end\": \"%s\",\n      \"effect\": \"%s\"\n    },\n"
                 "    {\n      \"id\": 2,\n      \"kind\": \"error_burst\",\n      \"aspect\": \"technical\",\n"
                 "      \"keys\": {\n        \"service\": \"%s\"\n      },\n"
                 "      \"start\": \"%s\",\n      \"end\": \"%s\",\n      \"effect\": \"%s\"\n    },\n"
                 "    {\n      \"id\": 3,\n      \"kind\": \"credential_stuffing\",\n      \"aspect\": \"security\",\n"
                 "      \"keys\": {\n        \"client_ip\": [\n          \"%s\",\n          \"%s\",\n          \"%s\"\n        ]\n      },\n"
                 "      \"start\": \"%s\",\n      \"end\": \"%s\",\n      \"effect\": \"%s\"\n    },\n"
                 "    {\n      \"id\": 4,\n      \"kind\": \"checkout_failure\",\n      \"aspect\": \"business\",\n"
                 "      \"keys\": {\n        \"service\": \"checkout\",\n        \"region\": \"%s\"\n      },\n"
                 "      \"start\": \"%s\",\n      \"end\": \"%s\",\n      \"effect\": \"%s\"\n    },\n"
                 "    {\n      \"id\": 5,\n      \"kind\": \"slow_abandonment\",\n      \"aspect\": \"user_experience\",\n"
                 "      \"keys\": {\n        \"region\": \"%s\"\n      },\n"
                 "      \"start\": \"%s\",\n      \"end\": \"%s\",\n      \"effect\": \"%s\"\n    }\n"
                 "  ]\n}\n",
                 (unsigned long long)seed, (unsigned long long)rows, end, p.s1_name, p.r1_name, t[0][0], t[0][1],
                 p.inc[0].effect, p.s2_name, t[1][0], t[1][1], p.inc[1].effect, p.ip[0], p.ip[1], p.ip[2], t[2][0],
                 t[2][1], p.inc[2].effect, p.r4_name, t[3][0], t[3][1], p.inc[3].effect, p.r5_name, t[4][0],
                 t[4][1], p.inc[4].effect);
        assert_string_equal(got, want);
        free(got);
        free(want);

        /* With incidents off: no incidents, the same header. */
        cfg.incidents = false;
        assert_int_equal(sf_gen_truth_write(&cfg, path), SF_OK);
        got = read_file(path);
        char off[512];
        snprintf(off, sizeof off,
                 "{\n  \"generator\": \"requests\",\n  \"seed\": %llu,\n  \"rows\": %llu,\n"
                 "  \"start\": \"2026-01-01T00:00:00\",\n  \"end\": \"%s\",\n  \"incidents\": []\n}\n",
                 (unsigned long long)seed, (unsigned long long)rows, end);
        assert_string_equal(got, off);
        free(got);
        remove(path);
        sf_input_config_fini(&cfg);
    }
    /* Keys are picked by the seed: twelve seeds do not all agree. */
    assert_true(differ_s1 > 0);
    assert_true(differ_r5 > 0);
    assert_true(differ_ip > 0);
}

/* ---- the rows each incident changes ------------------------------------------ */

static bool in_win(const sf__gen_incidents *p, int id, uint64_t i)
{
    return i >= p->inc[id - 1].first_row && i < p->inc[id - 1].end_row;
}

static int ip_index(const sf__gen_incidents *p, str ip)
{
    for (int j = 0; j < 3; j++)
        if (str_is(ip, p->ip[j])) return j;
    return -1;
}

/* The documented substitute of a slow-set user during the silence: the
 * next id (cyclically) outside the set. */
static int64_t substitute(const sf__gen_incidents *p, int64_t u, uint64_t users)
{
    for (uint64_t k = 1;; k++) {
        int64_t v = (int64_t)(((uint64_t)u - 1 + k) % users) + 1;
        if (!sf__gen_requests_slow_user(p, (uint64_t)v)) return v;
    }
}

/* Latency of a row whose status changed from `from` to `to` with the same
 * draw: the median scales by the status factors; both values are rounded to
 * 3 decimals (and at least 0.001). */
static void assert_rescaled_latency(double on, double off, int64_t from, int64_t to)
{
    double r = status_factor(to) / status_factor(from);
    if (fabs(on - off * r) > 0.0011 * (1 + r)) fail_msg("latency %.3f, expected %.3f x %.3f", on, off, r);
}

typedef struct tally {
    uint64_t marked[6];
    uint64_t w3_rows, w3_401, user3_sum;
    uint64_t cand4, cand2;
    uint64_t slow_n;
    double slow_log, slow_log2;
    uint64_t silenced;
    uint64_t login_over_1; /* incident-3 rows whose natural row incident 1 would have changed */
} tally;

/* Compares the rows of one configuration with and without incidents. */
static void check_marks(uint64_t rows, uint64_t seed, uint64_t users, tally *t)
{
    sf_input_config on, off;
    config(&on, rows, seed, true);
    config(&off, rows, seed, false);
    on.users = off.users = users;
    sf__gen_incidents p;
    assert_int_equal(sf__gen_requests_incidents(&on, &p), SF_OK);
    sf_schema s_on, s_off;
    sf_schema_init(&s_on);
    sf_schema_init(&s_off);
    assert_int_equal(sf__gen_requests_schema_of(&on, &s_on), SF_OK);
    assert_int_equal(sf__gen_requests_schema_of(&off, &s_off), SF_OK);
    sf_batch b_on, b_off;
    assert_int_equal(sf_batch_init(&b_on, &s_on, NULL, CHUNK), SF_OK);
    assert_int_equal(sf_batch_init(&b_off, &s_off, NULL, CHUNK), SF_OK);
    sf__gen_model *m_on = NULL, *m_off = NULL;
    assert_int_equal(sf__gen_requests_model_create(&on, &m_on), SF_OK);
    assert_int_equal(sf__gen_requests_model_create(&off, &m_off), SF_OK);
    memset(t, 0, sizeof *t);

    /* Past the silence as well, to see that it ends. */
    uint64_t total = p.silence_end + 60000 > rows ? p.silence_end + 60000 : rows;
    for (uint64_t at = 0; at < total; at += CHUNK) {
        uint64_t n = total - at < CHUNK ? total - at : CHUNK;
        assert_int_equal(sf__gen_requests_fill(m_on, at, n, NULL, &b_on), SF_OK);
        assert_int_equal(sf__gen_requests_fill(m_off, at, n, NULL, &b_off), SF_OK);
        for (size_t r = 0; r < n; r++) {
            uint64_t i = at + r;
            row y, x;
            get_row(&b_on, r, &y);
            get_row(&b_off, r, &x);
            assert_true(y.incident >= 0 && y.incident <= 5);
            t->marked[y.incident]++;
            assert_int_equal(y.ts, x.ts);
            /* The 3 addresses are in incident-3 rows only, natural ones never in 203.0.113.0/24. */
            assert_int_equal(ip_index(&p, y.ip) >= 0, y.incident == 3);
            assert_true(x.ip.n > 3 && memcmp(x.ip.p, "10.", 3) == 0);

            if (in_win(&p, 3, i)) t->w3_rows++;
            if (y.incident == 3) {
                assert_true(in_win(&p, 3, i));
                assert_true(str_is(y.service, "auth"));
                assert_true(str_is(y.endpoint, "/api/auth/login"));
                assert_true(y.status == 401 || y.status == 200);
                t->w3_401 += y.status == 401;
                assert_true(y.user >= 1 && (uint64_t)y.user <= users);
                t->user3_sum += (uint64_t)y.user;
                t->login_over_1 += in_win(&p, 1, i) && str_is(x.service, p.s1_name) && str_is(x.region, p.r1_name);
                assert_true(str_eq(y.region, x.region));
                assert_true(y.latency > 0);
                continue;
            }
            /* Not a login attempt: the natural row decides the rest. */
            bool e5 = in_win(&p, 5, i) && sf__gen_requests_slow_user(&p, (uint64_t)x.user);
            assert_int_equal(y.incident == 5, e5);
            if (e5) {
                assert_true(str_is(y.region, p.r5_name));
                assert_true(str_eq(y.service, x.service) && str_eq(y.endpoint, x.endpoint) &&
                            y.user == x.user && y.status == x.status && str_eq(y.ip, x.ip));
                double l = log(y.latency / 3000.0);
                t->slow_n++;
                t->slow_log += l;
                t->slow_log2 += l * l;
                continue;
            }
            bool e1 = in_win(&p, 1, i) && str_is(x.service, p.s1_name) && str_is(x.region, p.r1_name);
            assert_int_equal(y.incident == 1, e1);
            if (e1) {
                /* Five times the latency of the same row without incidents. */
                assert_int_equal(llround(y.latency * 1000), 5 * llround(x.latency * 1000));
                row z = y;
                z.latency = x.latency;
                assert_true(same_row(&z, &x));
                continue;
            }
            bool c4 = in_win(&p, 4, i) && str_is(x.service, "checkout") && str_is(x.region, p.r4_name);
            if (c4) t->cand4++;
            if (y.incident == 4) {
                assert_true(c4);
                assert_int_equal(y.status, 500);
                assert_true(y.revenue_null);
                assert_false(y.bytes_null);
                assert_rescaled_latency(y.latency, x.latency, x.status, 500);
                assert_true(str_eq(y.service, x.service) && str_eq(y.endpoint, x.endpoint) &&
                            str_eq(y.region, x.region) && y.user == x.user && str_eq(y.ip, x.ip));
                continue;
            }
            bool c2 = !c4 && in_win(&p, 2, i) && str_is(x.service, p.s2_name);
            if (c2) t->cand2++;
            if (y.incident == 2) {
                assert_true(c2);
                assert_int_equal(y.status, 503);
                assert_true(y.revenue_null);
                assert_false(y.bytes_null);
                assert_rescaled_latency(y.latency, x.latency, x.status, 503);
                assert_true(str_eq(y.service, x.service) && str_eq(y.endpoint, x.endpoint) &&
                            str_eq(y.region, x.region) && y.user == x.user && str_eq(y.ip, x.ip));
                continue;
            }
            assert_int_equal(y.incident, 0);
            bool silent = i >= p.silence_first && i < p.silence_end;
            /* The slow set is silent in the silence window. */
            if (silent) assert_false(sf__gen_requests_slow_user(&p, (uint64_t)y.user));
            if (silent && sf__gen_requests_slow_user(&p, (uint64_t)x.user)) {
                assert_int_equal(y.user, substitute(&p, x.user, users));
                row z = y;
                z.user = x.user;
                assert_true(same_row(&z, &x));
                t->silenced++;
                continue;
            }
            if (!same_row(&y, &x)) fail_msg("row %llu changed without an incident", (unsigned long long)i);
        }
    }
    sf__gen_requests_model_destroy(&m_on);
    sf__gen_requests_model_destroy(&m_off);
    sf_batch_fini(&b_on);
    sf_batch_fini(&b_off);
    sf_schema_fini(&s_on);
    sf_schema_fini(&s_off);
    sf_input_config_fini(&on);
    sf_input_config_fini(&off);
}

static void check_tally(const tally *t, uint64_t users)
{
    for (int k = 1; k <= 5; k++)
        if (t->marked[k] < 100) fail_msg("incident %d marks %llu rows", k, (unsigned long long)t->marked[k]);
    assert_true(t->silenced > 0);
    /* The documented probabilities. */
    assert_share(t->marked[3], t->w3_rows, 0.03);
    assert_share(t->w3_401, t->marked[3], 0.95);
    assert_share(t->marked[4], t->cand4, 0.9);
    assert_share(t->marked[2], t->cand2, 0.5);
    /* Login users are uniform over 1..users: mean (users + 1) / 2, sd users / sqrt(12). */
    double n3 = (double)t->marked[3];
    double mean3 = (double)t->user3_sum / n3;
    assert_true(fabs(mean3 - (users + 1) / 2.0) < 5 * (double)users / sqrt(12 * n3));
    /* Slow latencies: log(latency / 3000) has mean 0 and sd 0.3. */
    double mean = t->slow_log / (double)t->slow_n;
    double sd = sqrt(t->slow_log2 / (double)t->slow_n - mean * mean);
    assert_true(fabs(mean) < 5 * 0.3 / sqrt((double)t->slow_n));
    assert_true(fabs(sd - 0.3) < 5 * 0.3 / sqrt(2.0 * (double)t->slow_n) + 1e-3);
}

static void test_marks(void **state)
{
    (void)state;
    static const struct {
        uint64_t rows, seed, users;
    } cases[] = {{ROWS_20MIN, 42, 100000}, {ROWS_20MIN, 2026, 5000}, {600000, 7, 100000}};
    uint64_t login_over_1 = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        tally t;
        check_marks(cases[k].rows, cases[k].seed, cases[k].users, &t);
        check_tally(&t, cases[k].users);
        login_over_1 += t.login_over_1;
    }
    /* Incident 3 wins over 1 where their windows overlap (a sixth of a
     * window here): some tens of login attempts replace rows of (S1, R1),
     * about 3% of the few thousand such rows in the overlaps. */
    assert_true(login_over_1 > 0);
}

/* ---- random access -------------------------------------------------------------- */

static void test_random_access(void **state)
{
    (void)state;
    const uint64_t rows = ROWS_20MIN;
    sf_input_config cfg;
    config(&cfg, rows, 99, true);
    cfg.batch_rows = 65536;
    /* Reference: one digest per row, read through the public reader. */
    uint64_t *ref = malloc(sizeof *ref * rows);
    assert_non_null(ref);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    uint64_t n = 0;
    bool eof = false;
    while (!eof) {
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        assert_int_equal(b.first_row, n);
        for (size_t k = 0; k < b.nrows; k++) ref[n + k] = row_digest(&b, k, 0);
        n += b.nrows;
    }
    assert_int_equal(n, rows);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);

    /* Another batch size through the reader. */
    cfg.batch_rows = 777;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    n = 0;
    eof = false;
    while (!eof) {
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        assert_int_equal(b.first_row, n);
        assert_true(n + b.nrows <= rows);
        for (size_t k = 0; k < b.nrows; k++) assert_true(row_digest(&b, k, 0) == ref[n + k]);
        n += b.nrows;
    }
    assert_int_equal(n, rows);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);

    /* Uneven ranges across window edges, out of order, with one model. */
    sf_schema s;
    sf_schema_init(&s);
    assert_int_equal(sf__gen_requests_schema_of(&cfg, &s), SF_OK);
    assert_int_equal(sf_batch_init(&b, &s, NULL, 70000), SF_OK);
    sf__gen_model *m = NULL;
    assert_int_equal(sf__gen_requests_model_create(&cfg, &m), SF_OK);
    static const uint64_t cuts[] = {0,      1,      119999, 120001, 299489, 300000, 359999, 360513,
                                    419999, 480000, 600000, 659999, 660001, 779000, 849000, 900001,
                                    959999, 960000, 1019999, 1020000, 1080000, 1150000, 1199999, 1200000};
    const int ncuts = (int)(sizeof cuts / sizeof cuts[0]);
    for (int k = ncuts - 2; k >= 0; k -= 2) {
        for (int j = k; j < ncuts - 1 && j <= k + 1; j++) {
            uint64_t lo = cuts[j], hi = cuts[j + 1];
            for (uint64_t at = lo; at < hi; at += 70000) {
                uint64_t cnt = hi - at < 70000 ? hi - at : 70000;
                assert_int_equal(sf__gen_requests_fill(m, at, cnt, NULL, &b), SF_OK);
                for (size_t q = 0; q < b.nrows; q++) assert_true(row_digest(&b, q, 0) == ref[at + q]);
            }
        }
    }
    sf__gen_requests_model_destroy(&m);
    sf_batch_fini(&b);

    /* A projection changes no loaded value: user_id and incident alone. */
    uint8_t want[SF__GEN_NCOLS_INCIDENTS] = {0};
    want[SF__GEN_USER_ID] = 1;
    want[SF__GEN_INCIDENT] = 1;
    sf_batch full, proj;
    assert_int_equal(sf_batch_init(&full, &s, NULL, CHUNK), SF_OK);
    assert_int_equal(sf_batch_init(&proj, &s, want, CHUNK), SF_OK);
    assert_int_equal(sf__gen_requests_model_create(&cfg, &m), SF_OK);
    uint64_t marked = 0;
    for (uint64_t at = 0; at < rows; at += CHUNK) {
        uint64_t cnt = rows - at < CHUNK ? rows - at : CHUNK;
        assert_int_equal(sf__gen_requests_fill(m, at, cnt, NULL, &full), SF_OK);
        assert_int_equal(sf__gen_requests_fill(m, at, cnt, want, &proj), SF_OK);
        for (size_t q = 0; q < cnt; q++) {
            assert_int_equal(proj.cols[SF__GEN_USER_ID].i64[q], full.cols[SF__GEN_USER_ID].i64[q]);
            assert_int_equal(proj.cols[SF__GEN_INCIDENT].i64[q], full.cols[SF__GEN_INCIDENT].i64[q]);
            marked += full.cols[SF__GEN_INCIDENT].i64[q] != 0;
        }
    }
    assert_true(marked > 1000);
    assert_null(proj.cols[SF__GEN_LATENCY_MS].f64);
    sf__gen_requests_model_destroy(&m);
    sf_batch_fini(&full);
    sf_batch_fini(&proj);
    sf_schema_fini(&s);
    free(ref);
    sf_input_config_fini(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_off_unchanged),
        cmocka_unit_test(test_config_errors),
        cmocka_unit_test(test_parameters_and_truth),
        cmocka_unit_test(test_marks),
        cmocka_unit_test(test_random_access),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
