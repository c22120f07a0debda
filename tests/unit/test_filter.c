/* Row filters (shardflow/filter.h): the selection of every expression is
 * compared, row by row, with the same predicate written directly in C over
 * the test's own copy of the rows (not over the batch), on random batches
 * with nulls, NaN, -0, infinities, extreme integers, several dictionaries
 * and timestamps. Canonical texts are compared between differently written
 * equal filters, and every error message is compared with the text the
 * header documents ("FILE:LINE: KEY: ..."), positions counted by the test. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardflow/batch.h"
#include "shardflow/filter.h"
#include "shardflow/status.h"

/* ---------------------------------------------------------------------------
 * Schema and rows */

enum { C_I, C_F, C_S, C_T, C_LAT, C_SVC, C_BIG, NCOLS };
static const char *const col_names[NCOLS] = {"i", "f", "s", "t", "lat ms", "svc.name", "big"};
static const sf_type col_types[NCOLS] = {SF_INT64,   SF_FLOAT64, SF_STRING, SF_TIMESTAMP,
                                         SF_FLOAT64, SF_STRING,  SF_INT64};
static sf_schema schema;

/* 2024-03-01T00:00:00Z: 2024-01-01 is 1704067200 s, plus 31 + 29 days. */
#define T0_S INT64_C(1709251200)
#define T0_US (T0_S * INT64_C(1000000))
#define HOUR_US (INT64_C(3600) * INT64_C(1000000))
#define P53 INT64_C(9007199254740992) /* 2^53 */

typedef struct row {
    int64_t i;
    double f;
    const char *s; /* NULL: null */
    int64_t t;
    double lat;
    const char *svc; /* NULL: null */
    int64_t big;
    bool i_null, f_null, t_null, lat_null, big_null;
} row;

static const char *const pool[] = {"a", "b", "ab", "", "B", "zeta", "\xC3\xA9", "a\"q", "x|y", "aa"};
#define NPOOL (sizeof pool / sizeof pool[0])

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double special_double(void)
{
    static const double sp[] = {0.0, 0.5, -0.5, 1.0, 2.5, 0.1, 1e300, -1e300};
    switch (rnd() % 12) {
    case 0: return NAN;
    case 1: return -NAN;
    case 2: return INFINITY;
    case 3: return -INFINITY;
    case 4: return -0.0;
    case 5:
    case 6: return sp[rnd() % (sizeof sp / sizeof sp[0])];
    default: return (double)((int64_t)(rnd() % 13) - 6) * 0.5; /* -3 .. 3 in halves */
    }
}

static int64_t special_int(void)
{
    if (rnd() % 20 == 0) return rnd() % 2 ? INT64_MAX : INT64_MIN;
    return (int64_t)(rnd() % 10) - 4; /* -4 .. 5 */
}

static int64_t special_time(void)
{
    static const int64_t sp[] = {T0_US - 1,
                                 T0_US,
                                 T0_US + 1,
                                 T0_US + 500000,
                                 T0_US + 12 * HOUR_US,
                                 T0_US + 12 * HOUR_US + 500000,
                                 T0_US + 12 * HOUR_US + 500001,
                                 T0_US + 24 * HOUR_US};
    if (rnd() % 3 == 0) return T0_US - 24 * HOUR_US + (int64_t)(rnd() % (uint64_t)(72 * HOUR_US));
    return sp[rnd() % (sizeof sp / sizeof sp[0])];
}

static int64_t special_big(void)
{
    static const int64_t sp[] = {P53,       P53 + 1,       P53 + 2,   -P53,          -P53 - 1, INT64_MAX,
                                 INT64_MAX - 1, INT64_MIN, INT64_MIN + 1, 0, -1};
    return sp[rnd() % (sizeof sp / sizeof sp[0])];
}

/* n random rows; each value is null with probability pnull/100. */
static row *make_rows(size_t n, unsigned pnull)
{
    row *rows = calloc(n ? n : 1, sizeof *rows);
    assert_non_null(rows);
    for (size_t r = 0; r < n; r++) {
        row *w = &rows[r];
        w->i = special_int();
        w->f = special_double();
        w->s = pool[rnd() % NPOOL];
        w->t = special_time();
        w->lat = special_double();
        w->svc = pool[rnd() % NPOOL];
        w->big = special_big();
        w->i_null = rnd() % 100 < pnull;
        w->f_null = rnd() % 100 < pnull;
        if (rnd() % 100 < pnull) w->s = NULL;
        w->t_null = rnd() % 100 < pnull;
        w->lat_null = rnd() % 100 < pnull;
        if (rnd() % 100 < pnull) w->svc = NULL;
        w->big_null = rnd() % 100 < pnull;
    }
    return rows;
}

/* Interns every pool string (plus strings no row uses) in a random order,
 * so that each batch has its own dictionary codes. */
static void seed_dict(sf_dict *d)
{
    size_t order[NPOOL];
    for (size_t k = 0; k < NPOOL; k++) order[k] = k;
    for (size_t k = NPOOL; k > 1; k--) {
        size_t j = rnd() % k, tmp = order[k - 1];
        order[k - 1] = order[j];
        order[j] = tmp;
    }
    uint32_t code;
    assert_int_equal(sf_dict_intern(d, "unused", 6, &code), SF_OK);
    for (size_t k = 0; k < NPOOL; k++) {
        if (rnd() % 4 == 0) continue; /* some strings only arrive with the rows */
        assert_int_equal(sf_dict_intern(d, pool[order[k]], strlen(pool[order[k]]), &code), SF_OK);
    }
}

static void put_str(sf_batch *b, int c, size_t r, const char *s)
{
    if (s == NULL) {
        assert_int_equal(sf_batch_set_null(b, c, r), SF_OK);
        return;
    }
    uint32_t code;
    assert_int_equal(sf_dict_intern(&b->cols[c].dict, s, strlen(s), &code), SF_OK);
    b->cols[c].code[r] = code;
}

static void fill_batch(sf_batch *b, const row *rows, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    seed_dict(&b->cols[C_S].dict);
    seed_dict(&b->cols[C_SVC].dict);
    for (size_t r = 0; r < n; r++) {
        const row *w = &rows[r];
        b->cols[C_I].i64[r] = w->i;
        b->cols[C_F].f64[r] = w->f;
        b->cols[C_T].i64[r] = w->t;
        b->cols[C_LAT].f64[r] = w->lat;
        b->cols[C_BIG].i64[r] = w->big;
        put_str(b, C_S, r, w->s);
        put_str(b, C_SVC, r, w->svc);
        if (w->i_null) assert_int_equal(sf_batch_set_null(b, C_I, r), SF_OK);
        if (w->f_null) assert_int_equal(sf_batch_set_null(b, C_F, r), SF_OK);
        if (w->t_null) assert_int_equal(sf_batch_set_null(b, C_T, r), SF_OK);
        if (w->lat_null) assert_int_equal(sf_batch_set_null(b, C_LAT, r), SF_OK);
        if (w->big_null) assert_int_equal(sf_batch_set_null(b, C_BIG, r), SF_OK);
    }
    b->nrows = n;
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
 * Expressions and their predicates written in C */

#define HI(r) (!(r)->i_null)
#define HF(r) (!(r)->f_null)
#define HT(r) (!(r)->t_null)
#define HL(r) (!(r)->lat_null)
#define HB(r) (!(r)->big_null)

static bool seq(const char *a, const char *b) { return a != NULL && strcmp(a, b) == 0; }
/* strcmp compares as unsigned char, which is the byte order the header promises. */
static int scmp(const char *a, const char *b) { return strcmp(a, b); }

typedef struct fcase {
    const char *expr;
    bool (*pred)(const row *r);
} fcase;

#define P(name, e) \
    static bool name(const row *r) { return (e); }

/* int64 against integer, fractional and exponent literals */
P(p_i_eq, HI(r) && r->i == 2)
P(p_i_ne, HI(r) && r->i != 2)
P(p_i_lt, HI(r) && r->i < 2)
P(p_i_le, HI(r) && r->i <= 2)
P(p_i_gt, HI(r) && r->i > 2)
P(p_i_ge, HI(r) && r->i >= 2)
P(p_i_gt_neg, HI(r) && r->i > -3)
P(p_i_lt_frac, HI(r) && r->i <= 2)
P(p_i_ge_frac, HI(r) && r->i >= 3)
P(p_false, ((void)r, false))
P(p_i_present, HI(r))
P(p_i_gt_negfrac, HI(r) && r->i >= 0)
P(p_i_le_negfrac, HI(r) && r->i <= -1)
P(p_i_lt_10, HI(r) && r->i < 10)
P(p_i_eq0, HI(r) && r->i == 0)
P(p_i_min, HI(r) && r->i == INT64_MIN)
/* float64: IEEE comparisons (NaN unordered, -0 == 0) */
P(p_f_eq, HF(r) && r->f == 0.5)
P(p_f_ne, HF(r) && r->f != 0.5)
P(p_f_lt, HF(r) && r->f < 0.5)
P(p_f_le, HF(r) && r->f <= 0.5)
P(p_f_gt, HF(r) && r->f > 0.5)
P(p_f_ge, HF(r) && r->f >= 0.5)
P(p_f_eq0, HF(r) && r->f == 0.0)
P(p_f_lt0, HF(r) && r->f < 0.0)
P(p_f_gt_huge, HF(r) && r->f > -1e308)
P(p_f_ge_1e300, HF(r) && r->f >= 1e300)
P(p_f_gt_1e308, HF(r) && r->f > 1e308)
P(p_f_eq1, HF(r) && r->f == 1.0)
P(p_f_ne1, HF(r) && r->f != 1.0)
P(p_f_le_m05, HF(r) && r->f <= -0.5)
P(p_f_eq01, HF(r) && r->f == 0.1)
P(p_f_not_eq, !(HF(r) && r->f == 0.5))
/* strings: equality by dictionary, order byte-wise */
P(p_s_eq_a, seq(r->s, "a"))
P(p_s_ne_a, r->s != NULL && !seq(r->s, "a"))
P(p_s_eq_ab, seq(r->s, "ab"))
P(p_s_present, r->s != NULL)
P(p_s_eq_empty, seq(r->s, ""))
P(p_s_ne_empty, r->s != NULL && r->s[0] != '\0')
P(p_s_lt_b, r->s != NULL && scmp(r->s, "b") < 0)
P(p_s_le_ab, r->s != NULL && scmp(r->s, "ab") <= 0)
P(p_s_gt_a, r->s != NULL && scmp(r->s, "a") > 0)
P(p_s_ge_B, r->s != NULL && scmp(r->s, "B") >= 0)
P(p_s_lt_e, r->s != NULL && scmp(r->s, "\xC3\xA9") < 0)
P(p_s_gt_e, r->s != NULL && scmp(r->s, "\xC3\xA9") > 0)
P(p_s_eq_quote, seq(r->s, "a\"q"))
P(p_s_eq_bar, seq(r->s, "x|y"))
P(p_s_lt_aa, r->s != NULL && scmp(r->s, "aa") < 0)
/* timestamps: quoted literals are instants, numbers are microseconds */
P(p_t_ge_t0, HT(r) && r->t >= T0_US)
P(p_t_lt_noon5, HT(r) && r->t < T0_US + 12 * HOUR_US + 500000)
P(p_t_eq_noon5, HT(r) && r->t == T0_US + 12 * HOUR_US + 500000)
P(p_t_gt_us, HT(r) && r->t > T0_US)
P(p_t_ne_t0, HT(r) && r->t != T0_US)
P(p_t_le_before, HT(r) && r->t <= T0_US - 1)
P(p_t_eq_us, HT(r) && r->t == T0_US)
/* nulls */
P(p_i_null, !HI(r))
P(p_s_null, r->s == NULL)
P(p_t_or_f_null, !HT(r) || !HF(r))
P(p_lat_null, !HL(r))
/* precedence: not > and > or */
P(p_prec1, (HI(r) && r->i == 1) || ((HI(r) && r->i == 2) && seq(r->s, "a")))
P(p_prec2, ((HI(r) && r->i == 1) || (HI(r) && r->i == 2)) && seq(r->s, "a"))
P(p_prec3, !(HI(r) && r->i == 1) && seq(r->s, "a"))
P(p_prec4, !((HI(r) && r->i == 1) && seq(r->s, "a")))
P(p_notnot, HI(r) && r->i > 0)
P(p_not_ne, !(HI(r) && r->i != 1))
P(p_mix1, ((HI(r) && r->i > 0) && (HF(r) && r->f > 0)) || (seq(r->s, "b") && !HT(r)))
P(p_mix2, (HI(r) && r->i > 0) && ((HF(r) && r->f > 0) || seq(r->s, "b")) && HT(r))
P(p_i12, HI(r) && (r->i == 1 || r->i == 2))
P(p_i1_and_a, HI(r) && r->i == 1 && seq(r->s, "a"))
P(p_i_ne1_plain, !(HI(r) && r->i == 1))
P(p_i_1234, HI(r) && r->i >= 1 && r->i <= 4)
/* backquoted and dotted column names */
P(p_lat_gt1, HL(r) && r->lat > 1)
P(p_lat_svc, (HL(r) && r->lat <= 0.5) && seq(r->svc, "a"))
P(p_svc_a, seq(r->svc, "a"))
P(p_svc_or, (r->svc != NULL && !seq(r->svc, "b")) || (HI(r) && r->i == 2))
/* conjunctions of integer comparisons (evaluated as ranges when no value is null) */
P(p_i_range, HI(r) && r->i >= -1 && r->i < 3)
P(p_i_big, HI(r) && HB(r) && r->i > 0 && r->big <= 5)
P(p_i_empty, HI(r) && r->i >= 3 && r->i < 1)
P(p_i_point, HI(r) && r->i <= 2 && r->i >= 2 && r->i == 2)
P(p_big_full, HB(r) && r->big <= INT64_MAX && r->big >= INT64_MIN)
P(p_big_edges, HB(r) && r->big > INT64_MIN && r->big < INT64_MAX)
P(p_i_big_t, HI(r) && HB(r) && r->i != 0 && r->big > -10 && r->i < 5)
P(p_big_p53, HB(r) && r->big == P53)
P(p_big_neg, HB(r) && r->big < 0)

static const fcase cases[] = {
    {"i == 2", p_i_eq},
    {"i != 2", p_i_ne},
    {"i < 2", p_i_lt},
    {"i <= 2", p_i_le},
    {"i > 2", p_i_gt},
    {"i >= 2", p_i_ge},
    {"i > -3", p_i_gt_neg},
    {"i < 2.5", p_i_lt_frac},
    {"i >= 2.5", p_i_ge_frac},
    {"i == 2.5", p_false},
    {"i != 2.5", p_i_present},
    {"i > -0.5", p_i_gt_negfrac},
    {"i <= -0.5", p_i_le_negfrac},
    {"i == 2e0", p_i_eq},
    {"i < 1e1", p_i_lt_10},
    {"i == -0", p_i_eq0},
    {"i == +2", p_i_eq},
    {"i == -9223372036854775808", p_i_min},
    {"f == 0.5", p_f_eq},
    {"f != 0.5", p_f_ne},
    {"f < 0.5", p_f_lt},
    {"f <= 0.5", p_f_le},
    {"f > 0.5", p_f_gt},
    {"f >= 0.5", p_f_ge},
    {"f == .5", p_f_eq},
    {"f == 0", p_f_eq0},
    {"f == -0", p_f_eq0},
    {"f < 0", p_f_lt0},
    {"f < -0.0", p_f_lt0},
    {"f > -1e308", p_f_gt_huge},
    {"f >= 1e300", p_f_ge_1e300},
    {"f > 1e308", p_f_gt_1e308},
    {"f == 1", p_f_eq1},
    {"f != 1", p_f_ne1},
    {"f <= -0.5", p_f_le_m05},
    {"f == 0.1", p_f_eq01},
    {"not f == 0.5", p_f_not_eq},
    {"s == \"a\"", p_s_eq_a},
    {"s != \"a\"", p_s_ne_a},
    {"s == 'ab'", p_s_eq_ab},
    {"s == \"nope\"", p_false},
    {"s != \"nope\"", p_s_present},
    {"s == \"A\"", p_false},
    {"s == \"\"", p_s_eq_empty},
    {"s != ''", p_s_ne_empty},
    {"s < \"b\"", p_s_lt_b},
    {"s <= \"ab\"", p_s_le_ab},
    {"s > 'a'", p_s_gt_a},
    {"s >= \"B\"", p_s_ge_B},
    {"s < \"\xC3\xA9\"", p_s_lt_e},
    {"s > \"\xC3\xA9\"", p_s_gt_e},
    {"s == \"a\\\"q\"", p_s_eq_quote},
    {"s == 'a\"q'", p_s_eq_quote},
    {"s == 'x|y'", p_s_eq_bar},
    {"s < \"\"", p_false},
    {"s >= ''", p_s_present},
    {"s < \"aa\"", p_s_lt_aa},
    {"t >= \"2024-03-01 00:00:00\"", p_t_ge_t0},
    {"t < \"2024-03-01T12:00:00.5\"", p_t_lt_noon5},
    {"t == \"2024-03-01T12:00:00.500000\"", p_t_eq_noon5},
    {"t > 1709251200000000", p_t_gt_us},
    {"t != \"2024-03-01 00:00:00Z\"", p_t_ne_t0},
    {"t <= \"2024-02-29 23:59:59.999999\"", p_t_le_before},
    {"t == 1709251200000000", p_t_eq_us},
    {"t == 1.70925120e15", p_t_eq_us},
    {"i is null", p_i_null},
    {"i is not null", p_i_present},
    {"s is null", p_s_null},
    {"s is not null", p_s_present},
    {"not s is null", p_s_present},
    {"t is null or f is null", p_t_or_f_null},
    {"`lat ms` is null", p_lat_null},
    {"i == 1 or i == 2 and s == \"a\"", p_prec1},
    {"(i == 1 or i == 2) and s == \"a\"", p_prec2},
    {"not i == 1 and s == \"a\"", p_prec3},
    {"not (i == 1 and s == \"a\")", p_prec4},
    {"not not i > 0", p_notnot},
    {"not i != 1", p_not_ne},
    {"i > 0 and f > 0 or s == \"b\" and t is null", p_mix1},
    {"i > 0 and (f > 0 or s == \"b\") and not t is null", p_mix2},
    {"(i==1)or(i==2)", p_i12},
    {"\ti == 1\n and\r\ns == 'a' ", p_i1_and_a},
    {"not(i == 1)", p_i_ne1_plain},
    {"((((i >= 1)))) and ((i <= 4))", p_i_1234},
    {"i == 1 or i == 2 or i == 1 or i == 2", p_i12},
    {"`lat ms` > 1", p_lat_gt1},
    {"`lat ms` <= 0.5 and `svc.name` == \"a\"", p_lat_svc},
    {"svc.name == \"a\"", p_svc_a},
    {"svc.name != 'b' or `i` == 2", p_svc_or},
    {"big == 9007199254740992", p_big_p53},
    {"i >= -1 and i < 3", p_i_range},
    {"i > 0 and big <= 5", p_i_big},
    {"i >= 3 and i < 1", p_i_empty},
    {"i <= 2 and (i >= 2 and i == 2)", p_i_point},
    {"big <= 9223372036854775807 and big >= -9223372036854775808", p_big_full},
    {"big > -9223372036854775808 and big < 9223372036854775807", p_big_edges},
    {"i != 0 and big > -10 and i < 5", p_i_big_t},
    {"big < 0", p_big_neg},
};
#define NCASES (sizeof cases / sizeof cases[0])

static sf_filter *parse_bind(const char *expr)
{
    sf_filter *f = NULL;
    sf_status rc = sf_filter_parse(expr, "wf.yaml", 3, "where", &f);
    if (rc != SF_OK) fail_msg("parse of '%s' failed: %s", expr, sf_error_message());
    rc = sf_filter_bind(f, &schema);
    if (rc != SF_OK) fail_msg("bind of '%s' failed: %s", expr, sf_error_message());
    return f;
}

/* Checks the selection of f over [begin, end) of b against pred over rows. */
static void check_range(const fcase *c, const sf_filter *f, const sf_batch *b, const row *rows,
                        size_t begin, size_t end)
{
    size_t cap = end > begin ? end - begin : 1;
    uint32_t *sel = malloc(cap * sizeof *sel); /* exactly the documented room */
    assert_non_null(sel);
    size_t n = 12345;
    assert_int_equal(sf_filter_eval(f, b, begin, end, sel, &n), SF_OK);
    size_t k = 0;
    for (size_t r = begin; r < end; r++) {
        if (!c->pred(&rows[r])) continue;
        if (k >= n) fail_msg("'%s': row %zu selected by C but not by the filter", c->expr, r);
        if (sel[k] != r)
            fail_msg("'%s': selection[%zu] is row %u, expected row %zu", c->expr, k, sel[k], r);
        k++;
    }
    if (k != n) fail_msg("'%s': filter selected %zu rows over [%zu, %zu), C selected %zu", c->expr, n, begin, end, k);
    free(sel);
}

static void run_cases(size_t nrows, unsigned pnull, uint64_t seed)
{
    rng_state = seed;
    row *rows = make_rows(nrows, pnull);
    sf_batch b;
    fill_batch(&b, rows, nrows);
    for (size_t i = 0; i < NCASES; i++) {
        sf_filter *f = parse_bind(cases[i].expr);
        check_range(&cases[i], f, &b, rows, 0, nrows);
        /* Random sub-ranges, including empty ones and ones at the ends. */
        for (int k = 0; k < 4; k++) {
            size_t a = nrows ? (size_t)(rnd() % (nrows + 1)) : 0;
            size_t z = nrows ? (size_t)(rnd() % (nrows + 1)) : 0;
            if (a > z) {
                size_t tmp = a;
                a = z;
                z = tmp;
            }
            check_range(&cases[i], f, &b, rows, a, z);
        }
        check_range(&cases[i], f, &b, rows, nrows, nrows);
        if (nrows > 1) check_range(&cases[i], f, &b, rows, nrows - 1, nrows);
        sf_filter_destroy(&f);
        assert_null(f);
    }
    sf_batch_fini(&b);
    free(rows);
}

/* No nulls at all: every validity array stays NULL. */
static void test_eval_dense(void **st)
{
    (void)st;
    run_cases(700, 0, 11);
}

static void test_eval_with_nulls(void **st)
{
    (void)st;
    for (uint64_t seed = 1; seed <= 4; seed++) run_cases(600, 10, 100 + seed);
}

static void test_eval_mostly_nulls(void **st)
{
    (void)st;
    run_cases(400, 60, 7);
}

/* The same filter evaluated over batches whose dictionaries differ: the
 * literal's code is looked up per batch, not cached at bind time. */
static void test_eval_across_dictionaries(void **st)
{
    (void)st;
    static const fcase eq = {"s == \"ab\" or svc.name != \"zeta\"", NULL};
    sf_filter *f = parse_bind(eq.expr);
    for (uint64_t seed = 1; seed <= 6; seed++) {
        rng_state = 900 + seed;
        row *rows = make_rows(300, 15);
        sf_batch b;
        fill_batch(&b, rows, 300);
        size_t cap = 300, n;
        uint32_t *sel = malloc(cap * sizeof *sel);
        assert_non_null(sel);
        assert_int_equal(sf_filter_eval(f, &b, 0, 300, sel, &n), SF_OK);
        size_t k = 0;
        for (size_t r = 0; r < 300; r++) {
            bool want = seq(rows[r].s, "ab") || (rows[r].svc != NULL && !seq(rows[r].svc, "zeta"));
            if (!want) continue;
            assert_true(k < n);
            assert_int_equal(sel[k], r);
            k++;
        }
        assert_int_equal(k, n);
        free(sel);
        sf_batch_fini(&b);
        free(rows);
    }
    sf_filter_destroy(&f);
}

/* A string column whose every row is null: the nulls point at the empty
 * string's code, which `s == ""` must still not select. */
static void test_null_strings_are_not_empty(void **st)
{
    (void)st;
    rng_state = 5;
    row *rows = make_rows(50, 0);
    for (size_t r = 0; r < 50; r++) rows[r].s = r % 2 ? NULL : "";
    sf_batch b;
    fill_batch(&b, rows, 50);
    static const fcase cs[] = {{"s == \"\"", p_s_eq_empty}, {"s <= \"\"", p_s_eq_empty}, {"s is null", p_s_null},
                               {"s != \"\"", p_s_ne_empty}};
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        sf_filter *f = parse_bind(cs[i].expr);
        check_range(&cs[i], f, &b, rows, 0, 50);
        sf_filter_destroy(&f);
    }
    sf_batch_fini(&b);
    free(rows);
}

/* An int64 literal is an exact integer: int64 columns hold values that a
 * double cannot (IDs, hashes), so 2^53 + 1 must not be read as 2^53. */
P(p_big_eq_p53p1, HB(r) && r->big == P53 + 1)
P(p_big_ge_p53p1, HB(r) && r->big >= P53 + 1)
P(p_big_ne_p53p1, HB(r) && r->big != P53 + 1)
P(p_big_max, HB(r) && r->big == INT64_MAX)
P(p_big_lt_negp53m1, HB(r) && r->big < -P53 - 1)

static void test_eval_int64_literals_are_exact(void **st)
{
    (void)st;
    static const fcase cs[] = {{"big == 9007199254740993", p_big_eq_p53p1},
                               {"big >= 9007199254740993", p_big_ge_p53p1},
                               {"big != 9007199254740993", p_big_ne_p53p1},
                               {"big == 9223372036854775807", p_big_max},
                               {"big < -9007199254740993", p_big_lt_negp53m1}};
    rng_state = 77;
    row *rows = make_rows(400, 5);
    sf_batch b;
    fill_batch(&b, rows, 400);
    for (size_t i = 0; i < sizeof cs / sizeof cs[0]; i++) {
        sf_filter *f = parse_bind(cs[i].expr);
        check_range(&cs[i], f, &b, rows, 0, 400);
        sf_filter_destroy(&f);
    }
    sf_batch_fini(&b);
    free(rows);
}

/* ---------------------------------------------------------------------------
 * Columns, binding state, misuse */

static void test_columns(void **st)
{
    (void)st;
    sf_filter *f = NULL;
    assert_int_equal(sf_filter_parse("i == 1 or `lat ms` > 2 and i < 0 and not svc.name is null", "w", 1, "where", &f),
                     SF_OK);
    /* Distinct names in first-appearance order, without backquotes. */
    assert_int_equal(sf_filter_ncolumns(f), 3);
    assert_string_equal(sf_filter_column(f, 0), "i");
    assert_string_equal(sf_filter_column(f, 1), "lat ms");
    assert_string_equal(sf_filter_column(f, 2), "svc.name");
    sf_filter_destroy(&f);
    sf_filter_destroy(&f); /* NULL is fine */
    sf_filter_destroy(NULL);
}

static void test_eval_before_bind_and_unloaded(void **st)
{
    (void)st;
    rng_state = 3;
    row *rows = make_rows(10, 0);
    sf_batch b;
    fill_batch(&b, rows, 10);
    uint32_t sel[10];
    size_t n = 99;
    sf_filter *f = NULL;
    assert_int_equal(sf_filter_parse("i == 1", "w", 1, "where", &f), SF_OK);
    assert_int_equal(sf_filter_eval(f, &b, 0, 10, sel, &n), SF_ERR_INTERNAL);
    assert_int_equal(n, 0);
    assert_int_equal(sf_filter_bind(f, &schema), SF_OK);
    b.cols[C_I].loaded = false; /* as a reader that skipped the column leaves it */
    assert_int_equal(sf_filter_eval(f, &b, 0, 10, sel, &n), SF_ERR_INTERNAL);
    assert_non_null(strstr(sf_error_message(), "'i'"));
    b.cols[C_I].loaded = true;
    assert_int_equal(sf_filter_eval(f, &b, 0, 10, sel, &n), SF_OK);
    size_t want = 0;
    for (size_t r = 0; r < 10; r++) want += rows[r].i == 1;
    assert_int_equal(n, want);
    sf_filter_destroy(&f);
    sf_batch_fini(&b);
    free(rows);
}

/* ---------------------------------------------------------------------------
 * Canonical text */

static char *text_of(const char *expr)
{
    sf_filter *f = NULL;
    sf_status rc = sf_filter_parse(expr, "w", 1, "where", &f);
    if (rc != SF_OK) fail_msg("parse of '%s' failed: %s", expr, sf_error_message());
    char *t = strdup(sf_filter_text(f));
    assert_non_null(t);
    sf_filter_destroy(&f);
    return t;
}

static void expect_text(const char *expr, const char *want)
{
    char *t = text_of(expr);
    if (strcmp(t, want) != 0) fail_msg("text of '%s' is '%s', expected '%s'", expr, t, want);
    free(t);
}

static void test_text_canonical(void **st)
{
    (void)st;
    /* Groups of equal filters written differently, with the documented
     * fully parenthesised form. */
    static const char *const g_int[] = {"i == 2",   "  i  ==  2 ", "(i == 2)", "((i == 2))", "`i` == 2",
                                        "i == 2.0", "i == 2e0",    "i == +2",  "i==2",       "\ti\n==\r2"};
    for (size_t k = 0; k < sizeof g_int / sizeof g_int[0]; k++) expect_text(g_int[k], "(i == 2)");
    static const char *const g_str[] = {"s == 'a'", "s == \"a\"", "(s=='a')"};
    for (size_t k = 0; k < sizeof g_str / sizeof g_str[0]; k++) expect_text(g_str[k], "(s == \"a\")");
    /* A quote and a backslash inside the literal are escaped the same way
     * whichever quotes the literal was written in. */
    expect_text("s == 'a\"b'", "(s == \"a\\\"b\")");
    expect_text("s == \"a\\\"b\"", "(s == \"a\\\"b\")");
    expect_text("s == 'it\\'s'", "(s == \"it's\")");
    expect_text("s == \"it's\"", "(s == \"it's\")");
    expect_text("s == 'back\\\\slash'", "(s == \"back\\\\slash\")");
    expect_text("s == \"back\\\\slash\"", "(s == \"back\\\\slash\")");
    /* Precedence made explicit. */
    static const char *const g_prec[] = {"a == 1 or b == 2 and c == 3", "a == 1 or (b == 2 and c == 3)",
                                         "(a == 1) or ((b == 2) and (c == 3))"};
    for (size_t k = 0; k < 3; k++) expect_text(g_prec[k], "((a == 1) or ((b == 2) and (c == 3)))");
    expect_text("(a == 1 or b == 2) and c == 3", "(((a == 1) or (b == 2)) and (c == 3))");
    expect_text("not a == 1", "(not (a == 1))");
    expect_text("not (a == 1)", "(not (a == 1))");
    expect_text("not not a < 1", "(not (not (a < 1)))");
    expect_text("not a == 1 and b != 2", "((not (a == 1)) and (b != 2))");
    expect_text("x is null", "(x is null)");
    expect_text("x   is   not   null", "(x is not null)");
    expect_text("a >= 1 and a <= 2 or x is null", "(((a >= 1) and (a <= 2)) or (x is null))");
    /* Numbers as %.17g of the parsed double, the same for 0.1 and 1e-1. */
    char want[128];
    snprintf(want, sizeof want, "(f == %.17g)", 0.1);
    expect_text("f == 0.1", want);
    expect_text("f == 1e-1", want);
    expect_text("f == 0.100000000000000000000", want);
    snprintf(want, sizeof want, "(f > %.17g)", -1.5e300);
    expect_text("f > -1.5e300", want);
    /* Different filters give different texts. */
    static const char *const distinct[] = {"i < 2",       "i <= 2",      "i > 2",         "i >= 2",
                                           "i == 2",      "i != 2",      "i == 3",        "s == \"2\"",
                                           "i is null",   "i is not null", "not i == 2",  "j == 2",
                                           "i == 2 or j == 2", "i == 2 and j == 2", "(a == 1 or b == 2) and c == 3"};
    size_t nd = sizeof distinct / sizeof distinct[0];
    char *texts[sizeof distinct / sizeof distinct[0]];
    for (size_t k = 0; k < nd; k++) texts[k] = text_of(distinct[k]);
    for (size_t a = 0; a < nd; a++)
        for (size_t b = a + 1; b < nd; b++)
            if (strcmp(texts[a], texts[b]) == 0)
                fail_msg("'%s' and '%s' share the text '%s'", distinct[a], distinct[b], texts[a]);
    for (size_t k = 0; k < nd; k++) free(texts[k]);
}

/* x == -0 and x == 0 select the same rows for every column type (IEEE
 * -0 == 0; an integer column has no -0), so they must share a text. */
static void test_text_negative_zero(void **st)
{
    (void)st;
    expect_text("f == 0", "(f == 0)");
    expect_text("f == -0", "(f == 0)");
    expect_text("f == -0.0", "(f == 0)");
}

/* Integer literals beyond 2^53 are different filters on an int64 column
 * (see test_eval_int64_literals_are_exact), so their texts must differ. */
static void test_text_keeps_large_integers(void **st)
{
    (void)st;
    char *a = text_of("big == 9007199254740992");
    char *b = text_of("big == 9007199254740993");
    if (strcmp(a, b) == 0) fail_msg("different filters share the text '%s'", a);
    free(a);
    free(b);
}

/* A backquoted name may hold any text, including parentheses and
 * keywords; two different filters must still not print alike. Here the
 * first reads columns p and "q == 3) or (r", the second "p == 1) and (q"
 * and r. */
static void test_text_quotes_unusual_names(void **st)
{
    (void)st;
    char *a = text_of("p == 1 and `q == 3) or (r` == 2");
    char *b = text_of("`p == 1) and (q` == 3 or r == 2");
    if (strcmp(a, b) == 0) fail_msg("two filters over different columns share the text '%s'", a);
    free(a);
    free(b);
}

/* ---------------------------------------------------------------------------
 * Errors */

/* The message the header documents for parse errors, with the 1-based
 * column given by the test. */
static void expect_parse_error(const char *expr, const char *key, const char *what, int column)
{
    static char sentinel;
    sf_filter *f = (sf_filter *)(void *)&sentinel; /* must be reset to NULL */
    sf_error_clear();
    sf_status rc = sf_filter_parse(expr, "flows/wf.yaml", 42, key, &f);
    if (rc != SF_ERR_CONFIG) fail_msg("'%s': expected SF_ERR_CONFIG, got %s", expr, sf_status_name(rc));
    assert_null(f);
    char want[4096];
    snprintf(want, sizeof want, "flows/wf.yaml:42: %s: %s at column %d of \"%s\"", key, what, column,
             expr ? expr : "");
    if (strcmp(sf_error_message(), want) != 0)
        fail_msg("'%s':\n got      %s\n expected %s", expr ? expr : "(null)", sf_error_message(), want);
}

/* 1-based column of the first occurrence of needle in s. */
static int col_of(const char *s, const char *needle)
{
    const char *p = strstr(s, needle);
    if (p == NULL) fail_msg("'%s' not in '%s'", needle, s);
    return (int)(p - s) + 1;
}

static int end_col(const char *s) { return (int)strlen(s) + 1; }

static void test_parse_errors(void **st)
{
    (void)st;
    expect_parse_error("", "where", "empty expression", 1);
    expect_parse_error(NULL, "where", "empty expression", 1);
    expect_parse_error(" \t ", "flag", "empty expression", end_col(" \t "));
    const char *e;
    e = "i = 2";
    expect_parse_error(e, "where", "use == for equality", col_of(e, "="));
    e = "i == 2 and j = 3";
    expect_parse_error(e, "flag", "use == for equality", col_of(e, "= 3"));
    e = "i == 2 j == 3";
    expect_parse_error(e, "where", "unexpected text (combine comparisons with and / or)", col_of(e, "j"));
    e = "i == 2)";
    expect_parse_error(e, "where", "unexpected text (combine comparisons with and / or)", col_of(e, ")"));
    e = "i == 2 && j == 3";
    expect_parse_error(e, "where", "unexpected text (combine comparisons with and / or)", col_of(e, "&&"));
    e = "(i == 2";
    expect_parse_error(e, "where", "expected ')'", end_col(e));
    e = "(i == 2 or (j == 3)";
    expect_parse_error(e, "where", "expected ')'", end_col(e));
    e = "i ==";
    expect_parse_error(e, "where", "expected a number or a quoted string", end_col(e));
    e = "i == abc";
    expect_parse_error(e, "where", "expected a number or a quoted string", col_of(e, "abc"));
    e = "i == 1e999";
    expect_parse_error(e, "where", "expected a number or a quoted string", col_of(e, "1e999"));
    e = "f == nan";
    expect_parse_error(e, "where", "expected a number or a quoted string", col_of(e, "nan"));
    e = "f < inf";
    expect_parse_error(e, "where", "expected a number or a quoted string", col_of(e, "inf"));
    e = "s == 'abc";
    expect_parse_error(e, "where", "unterminated string", end_col(e));
    e = "s == \"abc\\\"";
    expect_parse_error(e, "where", "unterminated string", end_col(e));
    e = "== 2";
    expect_parse_error(e, "where", "expected a column name", 1);
    e = "i == 2 and";
    expect_parse_error(e, "where", "expected a column name", end_col(e));
    e = "i == 2 or 3 == i";
    expect_parse_error(e, "where", "expected a column name", col_of(e, "3"));
    e = "not";
    expect_parse_error(e, "where", "expected a column name", end_col(e));
    e = "()";
    expect_parse_error(e, "where", "expected a column name", 2);
    e = "i 2";
    expect_parse_error(e, "where", "expected a comparison (== != < <= > >=) or 'is null'", col_of(e, "2"));
    e = "i";
    expect_parse_error(e, "where", "expected a comparison (== != < <= > >=) or 'is null'", end_col(e));
    e = "i =< 2";
    expect_parse_error(e, "where", "use == for equality", col_of(e, "=<"));
    e = "i <> 2";
    expect_parse_error(e, "where", "expected a number or a quoted string", col_of(e, "> 2"));
    e = "i is nul";
    expect_parse_error(e, "where", "expected null after 'is'", col_of(e, "nul"));
    e = "i is not";
    expect_parse_error(e, "where", "expected null after 'is'", end_col(e));
    e = "i is nullx";
    expect_parse_error(e, "where", "expected null after 'is'", col_of(e, "nullx"));
    e = "`i == 2";
    expect_parse_error(e, "where", "unterminated `column`", 1);
    e = "`` == 2";
    expect_parse_error(e, "where", "empty column name", col_of(e, " =="));
}

static void test_parse_error_too_long(void **st)
{
    (void)st;
    /* k comparisons joined by `or` make 2k - 1 nodes: 128 fit in 256. */
    char expr[2048] = "";
    size_t len = 0;
    for (int k = 0; k < 128; k++) len += (size_t)snprintf(expr + len, sizeof expr - len, "%si==1", k ? " or " : "");
    sf_filter *f = NULL;
    assert_int_equal(sf_filter_parse(expr, "w", 1, "where", &f), SF_OK);
    sf_filter_destroy(&f);
    snprintf(expr + len, sizeof expr - len, " or i==1");
    expect_parse_error(expr, "where", "expression too long", end_col(expr));
}

/* Nesting is bounded by the input, not by the parser: a long run of '('
 * or 'not' must be an error message, not a stack overflow. Each case runs
 * in a child process so that a crash fails this test alone. */
static void expect_clean_parse_in_child(const char *prefix, const char *mid, const char *suffix, size_t depth)
{
    size_t lp = strlen(prefix), ls = strlen(suffix), lm = strlen(mid);
    char *e = malloc(depth * (lp + ls) + lm + 1);
    assert_non_null(e);
    size_t n = 0;
    for (size_t i = 0; i < depth; i++, n += lp) memcpy(e + n, prefix, lp);
    memcpy(e + n, mid, lm);
    n += lm;
    for (size_t i = 0; i < depth; i++, n += ls) memcpy(e + n, suffix, ls);
    e[n] = '\0';
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sf_filter *f = NULL;
        sf_status rc = sf_filter_parse(e, "w", 1, "where", &f);
        sf_filter_destroy(&f);
        _exit(rc == SF_OK || rc == SF_ERR_CONFIG ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    free(e);
    if (WIFSIGNALED(status))
        fail_msg("parsing %zu nested '%s' killed the process with signal %d", depth, prefix, WTERMSIG(status));
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void test_parse_deep_nesting(void **st)
{
    (void)st;
    expect_clean_parse_in_child("(", "i == 1", ")", 1000);
    expect_clean_parse_in_child("(", "i == 1", ")", 1000000);
    expect_clean_parse_in_child("not ", "i == 1", "", 1000000);
}

/* Bind errors: "FILE:LINE: KEY: " followed by the problem. */
static void expect_bind_error(const char *expr, const char *key, const char *what)
{
    sf_filter *f = NULL;
    assert_int_equal(sf_filter_parse(expr, "flows/wf.yaml", 17, key, &f), SF_OK);
    sf_error_clear();
    sf_status rc = sf_filter_bind(f, &schema);
    if (rc != SF_ERR_CONFIG) fail_msg("'%s': expected SF_ERR_CONFIG, got %s", expr, sf_status_name(rc));
    char want[2048];
    snprintf(want, sizeof want, "flows/wf.yaml:17: %s: %s", key, what);
    if (strcmp(sf_error_message(), want) != 0)
        fail_msg("'%s':\n got      %s\n expected %s", expr, sf_error_message(), want);
    sf_filter_destroy(&f);
}

static void test_bind_errors(void **st)
{
    (void)st;
    /* The column list, written from the test's own names. */
    char cols[512] = "";
    for (int c = 0; c < NCOLS; c++) {
        strcat(cols, c ? ", " : "");
        strcat(cols, col_names[c]);
    }
    char what[1024];
    snprintf(what, sizeof what, "no column 'nosuch' (columns: %s)", cols);
    expect_bind_error("nosuch == 1", "where", what);
    expect_bind_error("i == 1 and nosuch is null", "flag", what);
    snprintf(what, sizeof what, "no column 'lat' (columns: %s)", cols);
    expect_bind_error("lat > 1", "where", what);
    snprintf(what, sizeof what, "no column 'I' (columns: %s)", cols);
    expect_bind_error("I == 1", "where", what);

    expect_bind_error("s == 1", "where", "column 's' is a string: compare it with a quoted string");
    expect_bind_error("svc.name < 0.5", "flag", "column 'svc.name' is a string: compare it with a quoted string");
    expect_bind_error("i == \"1\"", "where", "column 'i' is int64: compare it with a number");
    expect_bind_error("f > 'x'", "where", "column 'f' is float64: compare it with a number");
    expect_bind_error("`lat ms` > 'x'", "where", "column 'lat ms' is float64: compare it with a number");
    expect_bind_error("t == 1.5", "where",
                      "compare timestamp column 't' with an integer (microseconds) or a quoted timestamp");
    expect_bind_error("t == \"yesterday\"", "where",
                      "'yesterday' is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff]) for column 't'");
    expect_bind_error("t >= '2024-03-01'", "flag",
                      "'2024-03-01' is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff]) for column 't'");
    expect_bind_error("t >= '2023-02-29 00:00:00'", "where",
                      "'2023-02-29 00:00:00' is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff]) for column 't'");
    expect_bind_error("t < '2024-03-01 24:00:00'", "where",
                      "'2024-03-01 24:00:00' is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff]) for column 't'");
    expect_bind_error("t < '2024-03-01 00:00:00.1234567'", "where",
                      "'2024-03-01 00:00:00.1234567' is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff]) for column 't'");

    /* 64 string equalities fit; the 65th does not. */
    char expr[4096] = "";
    size_t len = 0;
    for (int k = 0; k < 64; k++) len += (size_t)snprintf(expr + len, sizeof expr - len, "%ss == 'v%d'", k ? " or " : "", k);
    sf_filter *f = NULL;
    assert_int_equal(sf_filter_parse(expr, "w", 1, "where", &f), SF_OK);
    assert_int_equal(sf_filter_bind(f, &schema), SF_OK);
    sf_filter_destroy(&f);
    snprintf(expr + len, sizeof expr - len, " or svc.name != 'v64'");
    expect_bind_error(expr, "where", "too many string comparisons");
    /* Orderings do not use the per-batch dictionary lookup, so they do not count. */
    snprintf(expr + len, sizeof expr - len, " or s < 'v64'");
    assert_int_equal(sf_filter_parse(expr, "w", 1, "where", &f), SF_OK);
    assert_int_equal(sf_filter_bind(f, &schema), SF_OK);
    sf_filter_destroy(&f);
}

/* A filter parsed without file or key still says where it came from. */
static void test_error_defaults(void **st)
{
    (void)st;
    sf_filter *f = NULL;
    assert_int_equal(sf_filter_parse("i = 1", NULL, 5, NULL, &f), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "<workflow>:5: where: use == for equality at column 3 of \"i = 1\"");
    assert_null(f);
}

/* The top-level equalities: and-terms COLUMN == string or integer only. */
static void test_equalities(void **st)
{
    (void)st;
    struct {
        const char *expr;
        int n;
        const char *cols[3], *vals[3];
    } eqc[] = {
        {"svc == \"checkout\"", 1, {"svc"}, {"checkout"}},
        {"svc == 'a' and (i == 500 and lat > 2)", 2, {"svc", "i"}, {"a", "500"}},
        {"i == -7 and svc != \"x\"", 1, {"i"}, {"-7"}},
        {"svc == \"a\" or i == 1", 0, {NULL}, {NULL}},
        {"not (svc == \"a\")", 0, {NULL}, {NULL}},
        {"lat == 2.5 and i >= 3", 0, {NULL}, {NULL}},
        {"i == 4e2", 1, {"i"}, {"400"}},
    };
    for (size_t c = 0; c < sizeof eqc / sizeof eqc[0]; c++) {
        sf_filter *f = NULL;
        assert_int_equal(sf_filter_parse(eqc[c].expr, "w", 1, "where", &f), SF_OK);
        const char *cols[4], *vals[4];
        size_t lens[4];
        int n = sf_filter_equalities(f, cols, vals, lens, 4);
        if (n != eqc[c].n) fail_msg("%s: %d equalities, expected %d", eqc[c].expr, n, eqc[c].n);
        for (int k = 0; k < n; k++) {
            assert_string_equal(cols[k], eqc[c].cols[k]);
            assert_int_equal(lens[k], strlen(eqc[c].vals[k]));
            assert_memory_equal(vals[k], eqc[c].vals[k], lens[k]);
        }
        /* max bounds what is written, not the count. */
        assert_int_equal(sf_filter_equalities(f, cols, vals, lens, 0), eqc[c].n);
        sf_filter_destroy(&f);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_equalities),
        cmocka_unit_test(test_eval_dense),
        cmocka_unit_test(test_eval_with_nulls),
        cmocka_unit_test(test_eval_mostly_nulls),
        cmocka_unit_test(test_eval_across_dictionaries),
        cmocka_unit_test(test_null_strings_are_not_empty),
        cmocka_unit_test(test_eval_int64_literals_are_exact),
        cmocka_unit_test(test_columns),
        cmocka_unit_test(test_eval_before_bind_and_unloaded),
        cmocka_unit_test(test_text_canonical),
        cmocka_unit_test(test_text_negative_zero),
        cmocka_unit_test(test_text_keeps_large_integers),
        cmocka_unit_test(test_text_quotes_unusual_names),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_parse_error_too_long),
        cmocka_unit_test(test_parse_deep_nesting),
        cmocka_unit_test(test_bind_errors),
        cmocka_unit_test(test_error_defaults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
