/* Unit tests of the exact superaccumulator (core/xsum.c). Every expectation
 * comes from a second path: integer arithmetic, IEEE operations that are
 * themselves correctly rounded (a + b, fma), or a value worked out by hand. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/xsum.h"

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* splitmix64 */
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t rnd_below(uint64_t n) { return rnd() % n; }

static uint64_t bits_of(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

static double of_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* A finite double with random sign, exponent field and fraction. */
static double rnd_any_finite(void)
{
    for (;;) {
        uint64_t b = rnd();
        if (((b >> 52) & 0x7FF) != 0x7FF) return of_bits(b);
    }
}

/* sign * [1, 2) * 2^e with e uniform in [elo, ehi]. */
static double rnd_exp(int elo, int ehi)
{
    double m = 1.0 + (double)(rnd() >> 11) * 0x1p-53;
    int e = elo + (int)rnd_below((uint64_t)(ehi - elo + 1));
    double v = ldexp(m, e);
    return (rnd() & 1) ? -v : v;
}

static double sum_of(const double *v, size_t n)
{
    sf_xsum x;
    sf_xsum_init(&x);
    for (size_t i = 0; i < n; i++) sf_xsum_add(&x, v[i]);
    return sf_xsum_round(&x);
}

#define assert_same_double(a, b) assert_int_equal(bits_of(a), bits_of(b))

static void encode(const sf_xsum *x, sf_buf *b)
{
    sf_buf_clear(b);
    assert_int_equal(sf_xsum_encode(x, b), SF_OK);
}

static void assert_same_encoding(const sf_xsum *a, const sf_xsum *b)
{
    sf_buf ea, eb;
    sf_buf_init(&ea);
    sf_buf_init(&eb);
    encode(a, &ea);
    encode(b, &eb);
    assert_int_equal(ea.len, eb.len);
    assert_memory_equal(ea.data, eb.data, ea.len);
    sf_buf_fini(&ea);
    sf_buf_fini(&eb);
}

static void shuffle(double *v, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)rnd_below(i);
        double t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* ---- closed forms ------------------------------------------------------ */

static void test_cancellation(void **st)
{
    (void)st;
    double v[] = {1e16, 1.0, -1e16};
    /* Plain double addition loses the 1 (the spacing at 1e16 is 2). */
    volatile double naive = (v[0] + v[1]) + v[2];
    assert_true(naive == 0.0);
    assert_same_double(sum_of(v, 3), 1.0);

    double w[] = {0x1p1000, 0x1p-1000, -0x1p1000, 0x1p-1000, 0x1p1000, -0x1p1000, 0x1p-1000};
    assert_same_double(sum_of(w, 7), 3 * 0x1p-1000);

    /* The smallest subnormal survives next to the largest powers of two. */
    double z[] = {0x1p1023, 0x1p-1074, -0x1p1023};
    assert_same_double(sum_of(z, 3), 0x1p-1074);
}

static void test_scaled_integers(void **st)
{
    (void)st;
    rng_state = 1;
    enum { N = 200000 };
    double *v = malloc(N * sizeof *v);
    assert_non_null(v);
    int64_t exact = 0;
    for (int i = 0; i < N; i++) {
        int32_t m = (int32_t)(uint32_t)rnd();
        exact += m;
        v[i] = ldexp((double)m, -20);
    }
    /* |exact| < 2^49, so the scaled integer is the exact double. */
    assert_same_double(sum_of(v, N), ldexp((double)exact, -20));

    /* Alternating huge and tiny terms of such integers. */
    sf_xsum x;
    sf_xsum_init(&x);
    int64_t tiny = 0;
    for (int i = 0; i < 1000; i++) {
        int32_t m = (int32_t)(uint32_t)rnd();
        tiny += m;
        sf_xsum_add(&x, 0x1p900);
        sf_xsum_add(&x, ldexp((double)m, -1000));
        sf_xsum_add(&x, -0x1p900);
    }
    assert_same_double(sf_xsum_round(&x), ldexp((double)tiny, -1000));
    free(v);
}

/* Sums of values m * 2^-20 whose exact integer total N exceeds 2^53: int64
 * to double conversion rounds N to nearest even, which is the reference. */
static void test_rounding_against_integers(void **st)
{
    (void)st;
    rng_state = 2;
    for (int trial = 0; trial < 2000; trial++) {
        int n = 1 + (int)rnd_below(60);
        int64_t total = 0;
        double v[64];
        for (int i = 0; i < n; i++) {
            int64_t m = (int64_t)(rnd() >> 11) - ((int64_t)1 << 52); /* |m| < 2^53 */
            if (trial % 3 == 0) m &= ~(int64_t)0xFF; /* low bits zero: more ties */
            total += m;
            v[i] = ldexp((double)m, -20);
        }
        assert_same_double(sum_of(v, (size_t)n), ldexp((double)total, -20));
    }
}

static void test_ties_to_even(void **st)
{
    (void)st;
    /* 1 + 2^-53 is halfway between 1 and 1 + 2^-52: even is 1. */
    double a[] = {1.0, 0x1p-53};
    assert_same_double(sum_of(a, 2), 1.0);
    double an[] = {-1.0, -0x1p-53};
    assert_same_double(sum_of(an, 2), -1.0);
    /* Anything above the tie rounds up. */
    double b[] = {1.0, 0x1p-53, 0x1p-400};
    assert_same_double(sum_of(b, 3), 1.0 + 0x1p-52);
    /* Even when the excess is the lowest bit of all. */
    double b2[] = {1.0, 0x1p-53, 0x1p-1074};
    assert_same_double(sum_of(b2, 3), 1.0 + 0x1p-52);
    double b3[] = {-0x1p-1074, -1.0, -0x1p-53};
    assert_same_double(sum_of(b3, 3), -1.0 - 0x1p-52);
    /* And anything below it rounds down. */
    double c[] = {1.0, 0x1p-53, -0x1p-1074};
    assert_same_double(sum_of(c, 3), 1.0);
    /* 1 + 3 * 2^-53 is halfway between 1 + 2^-52 (odd) and 1 + 2^-51. */
    double d[] = {1.0, 0x1p-52, 0x1p-53};
    assert_same_double(sum_of(d, 3), 1.0 + 0x1p-51);
    /* A tie whose lower neighbour is even, far from 1. */
    double e[] = {0x1p100, 0x1p47};
    assert_same_double(sum_of(e, 2), 0x1p100);
    double f[] = {0x1p100, 0x1p48, 0x1p47};
    assert_same_double(sum_of(f, 3), 0x1p100 + 0x1p49);
}

/* IEEE a + b is correctly rounded, so it is a reference for two terms. */
static void test_pairs_match_ieee(void **st)
{
    (void)st;
    rng_state = 3;
    for (int trial = 0; trial < 200000; trial++) {
        double a, b;
        switch (trial % 4) {
        case 0:
            a = rnd_any_finite();
            b = rnd_any_finite();
            break;
        case 1: {
            int e = -1000 + (int)rnd_below(2000);
            a = rnd_exp(e, e);
            b = rnd_exp(e - 60, e);
            break;
        }
        case 2: /* around the subnormal range */
            a = rnd_exp(-1074, -1010);
            b = rnd_exp(-1074, -1010);
            break;
        default: /* around overflow */
            a = rnd_exp(1015, 1023);
            b = rnd_exp(960, 1023);
            break;
        }
        if (a == 0.0 || b == 0.0) continue;
        double v[2] = {a, b};
        double want = a + b;
        assert_same_double(sum_of(v, 2), want);
    }
}

/* fma(a, b, c) is correctly rounded and a*b == p + e exactly, so the exact
 * sum of {p, e, c} must round to fma(a, b, c). */
static void test_triples_match_fma(void **st)
{
    (void)st;
    rng_state = 4;
    for (int trial = 0; trial < 200000; trial++) {
        double a = rnd_exp(-200, 200), b = rnd_exp(-200, 200);
        double p = a * b;
        double e = fma(a, b, -p);
        int pe = ilogb(p);
        double c = rnd_exp(pe - 110, pe + 2);
        double v[3] = {p, e, c};
        shuffle(v, 3);
        assert_same_double(sum_of(v, 3), fma(a, b, c));
    }
}

/* sf_xsum_add_square_reserved adds v*v as one integer; the pair p = v*v,
 * e = fma(v, v, -p) is the same value computed in floating point. Both
 * accumulators must encode alike after every add, over the whole range
 * (and outside it the function must decline and add nothing). */
static void test_square_matches_fma_pair(void **st)
{
    (void)st;
    rng_state = 11;
    sf_xsum a, b, empty;
    sf_xsum_init(&a);
    sf_xsum_init(&b);
    sf_xsum_init(&empty);
    int taken = 0, declined = 0;
    for (int trial = 0; trial < 200000; trial++) {
        double v = rnd_exp(-530, 530);
        if (trial % 7 == 0) v = ldexp(1.0, (int)(trial % 1060) - 530); /* exact powers, range edges */
        if (trial & 1) v = -v;
        sf_xsum_reserve(&a, 2);
        bool ok = sf_xsum_add_square_reserved(&a, v);
        double av = fabs(v);
        assert_int_equal(ok, av >= 0x1p-480 && av < 0x1p499);
        if (!ok) {
            declined++;
            sf_xsum one;
            sf_xsum_init(&one);
            sf_xsum_reserve(&one, 1);
            assert_false(sf_xsum_add_square_reserved(&one, v));
            assert_same_encoding(&one, &empty);
            continue;
        }
        taken++;
        double p = v * v, e = fma(v, v, -p);
        sf_xsum_add(&b, p);
        sf_xsum_add(&b, e);
        if (trial % 997 == 0) assert_same_encoding(&a, &b);
    }
    assert_same_encoding(&a, &b);
    assert_true(taken > 100000 && declined > 1000);
    /* A square alone rounds to the correctly rounded v*v. */
    for (int trial = 0; trial < 20000; trial++) {
        double v = rnd_exp(-479, 498);
        sf_xsum x;
        sf_xsum_init(&x);
        sf_xsum_reserve(&x, 1);
        assert_true(sf_xsum_add_square_reserved(&x, v));
        assert_same_double(sf_xsum_round(&x), v * v);
    }
}

static void test_subnormals(void **st)
{
    (void)st;
    double tiny = 0x1p-1074;
    double v[] = {tiny, tiny, tiny};
    assert_same_double(sum_of(v, 3), 3 * tiny);
    /* The largest subnormal plus the smallest is the smallest normal. */
    double w[] = {DBL_MIN - tiny, tiny};
    assert_same_double(sum_of(w, 2), DBL_MIN);
    /* A subnormal difference of two normals is exact. */
    double x[] = {DBL_MIN * 1.5, -DBL_MIN};
    assert_same_double(sum_of(x, 2), DBL_MIN * 0.5);
    /* Negative subnormal results keep their sign. */
    double y[] = {-3 * tiny, tiny};
    assert_same_double(sum_of(y, 2), -2 * tiny);
    /* Subnormal inputs in bulk: k * 2^-1074 for an integer k. */
    rng_state = 5;
    sf_xsum s;
    sf_xsum_init(&s);
    int64_t k = 0;
    for (int i = 0; i < 1000; i++) { /* |k| < 2^60: no int64 overflow */
        int64_t m = (int64_t)(rnd() >> 13) - ((int64_t)1 << 50); /* |m| < 2^50: subnormal */
        k += m;
        sf_xsum_add(&s, ldexp((double)m, -1074));
    }
    assert_same_double(sf_xsum_round(&s), ldexp((double)k, -1074));
}

static void test_overflow(void **st)
{
    (void)st;
    double ulp = 0x1p971; /* spacing of doubles just below 2^1024 */
    double a[] = {DBL_MAX, DBL_MAX};
    assert_true(isinf(sum_of(a, 2)) && sum_of(a, 2) > 0);
    double b[] = {DBL_MAX, DBL_MAX, -DBL_MAX};
    assert_same_double(sum_of(b, 3), DBL_MAX);
    /* DBL_MAX + half an ulp is a tie; DBL_MAX is odd, so it rounds to 2^1024. */
    double c[] = {DBL_MAX, ulp / 2};
    assert_same_double(sum_of(c, 2), INFINITY);
    double d[] = {DBL_MAX, ulp / 4};
    assert_same_double(sum_of(d, 2), DBL_MAX);
    double e[] = {-DBL_MAX, -ulp / 2};
    assert_same_double(sum_of(e, 2), -INFINITY);
    /* Large intermediate sums come back down exactly. */
    enum { N = 100000 };
    double *v = malloc(2 * N * sizeof *v);
    assert_non_null(v);
    for (int i = 0; i < N; i++) v[i] = DBL_MAX;
    for (int i = 0; i < N - 1; i++) v[N + i] = -DBL_MAX;
    v[2 * N - 1] = 0x1p-1074;
    rng_state = 6;
    shuffle(v, 2 * N);
    assert_same_double(sum_of(v, 2 * N), DBL_MAX);
    free(v);
}

static void test_non_finite(void **st)
{
    (void)st;
    double a[] = {1.0, INFINITY, -5.0};
    assert_same_double(sum_of(a, 3), INFINITY);
    double b[] = {-INFINITY, 1e300};
    assert_same_double(sum_of(b, 2), -INFINITY);
    double c[] = {INFINITY, 1.0, -INFINITY};
    assert_true(isnan(sum_of(c, 3)));
    double d[] = {1.0, NAN};
    assert_true(isnan(sum_of(d, 2)));
    double e[] = {INFINITY, -NAN};
    assert_true(isnan(sum_of(e, 2)));

    sf_xsum x;
    sf_xsum_init(&x);
    sf_xsum_add(&x, INFINITY);
    sf_xsum_add(&x, 2.0);
    double hi, lo;
    sf_xsum_round2(&x, &hi, &lo);
    assert_same_double(hi, INFINITY);
    assert_same_double(lo, 0.0);
    assert_false(sf_xsum_is_zero(&x));
}

static void test_round2(void **st)
{
    (void)st;
    sf_xsum x;
    double hi, lo;
    sf_xsum_init(&x);
    sf_xsum_add(&x, 1.0);
    sf_xsum_add(&x, 0x1p-80);
    sf_xsum_round2(&x, &hi, &lo);
    assert_same_double(hi, 1.0);
    assert_same_double(lo, 0x1p-80);

    /* 1e16 + 1.25: the neighbours are 1e16 and 1e16 + 2; hi is the nearer. */
    sf_xsum_init(&x);
    sf_xsum_add(&x, 1e16);
    sf_xsum_add(&x, 1.0);
    sf_xsum_add(&x, 0.25);
    sf_xsum_round2(&x, &hi, &lo);
    assert_same_double(hi, 1e16 + 2);
    assert_same_double(lo, -0.75);

    /* Random triples: hi + lo holds p + e + c to double-double accuracy, and
     * hi is the fma result. */
    rng_state = 7;
    for (int i = 0; i < 10000; i++) {
        double a = rnd_exp(-30, 30), b = rnd_exp(-30, 30);
        double p = a * b, e = fma(a, b, -p);
        sf_xsum_init(&x);
        sf_xsum_add(&x, p);
        sf_xsum_add(&x, e);
        sf_xsum_round2(&x, &hi, &lo);
        assert_same_double(hi, p);
        assert_same_double(lo, e);
    }
}

/* ---- order independence ------------------------------------------------- */

/* Sums v[0..n) through a random tree of splits and merges. */
static void tree_sum(const double *v, size_t n, sf_xsum *out, int depth)
{
    if (n < 8 || depth > 12 || rnd_below(4) == 0) {
        sf_xsum_init(out);
        if (rnd() & 1) {
            for (size_t i = 0; i < n; i++) sf_xsum_add(out, v[i]);
        } else {
            sf_xsum_add_many(out, v, n);
        }
        return;
    }
    size_t cut = (size_t)rnd_below(n + 1);
    sf_xsum *other = malloc(sizeof *other);
    assert_non_null(other);
    tree_sum(v, cut, out, depth + 1);
    tree_sum(v + cut, n - cut, other, depth + 1);
    if (rnd() & 1) {
        sf_xsum_merge(out, other);
    } else {
        sf_xsum_merge(other, out);
        *out = *other;
    }
    free(other);
}

static void check_order_independence(double (*gen)(void), int rounds, size_t n)
{
    double *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++) v[i] = gen();
    sf_xsum ref, x;
    sf_xsum_init(&ref);
    for (size_t i = 0; i < n; i++) sf_xsum_add(&ref, v[i]);
    double want = sf_xsum_round(&ref);
    for (int r = 0; r < rounds; r++) {
        shuffle(v, n);
        tree_sum(v, n, &x, 0);
        assert_same_encoding(&ref, &x);
        assert_same_double(sf_xsum_round(&x), want);
        double h1, l1, h2, l2;
        sf_xsum_round2(&ref, &h1, &l1);
        sf_xsum_round2(&x, &h2, &l2);
        assert_same_double(h1, h2);
        assert_same_double(l1, l2);
    }
    free(v);
}

static double gen_any(void) { return rnd_any_finite(); }
static double gen_moderate(void) { return rnd_exp(-60, 60); }
static double gen_cancelling(void)
{
    /* Mostly large values that nearly cancel, plus small ones. */
    return (rnd() & 3) ? rnd_exp(40, 45) : rnd_exp(-40, 0);
}

static void test_order_independence(void **st)
{
    (void)st;
    rng_state = 8;
    check_order_independence(gen_any, 20, 5000);
    check_order_independence(gen_moderate, 20, 5000);
    check_order_independence(gen_cancelling, 20, 5000);
}

static void test_merge_identity(void **st)
{
    (void)st;
    rng_state = 9;
    sf_xsum x, empty, y;
    sf_xsum_init(&x);
    for (int i = 0; i < 1000; i++) sf_xsum_add(&x, gen_moderate());
    sf_xsum_add(&x, -INFINITY);
    sf_xsum_init(&empty);
    y = empty;
    sf_xsum_merge(&y, &x);
    assert_same_encoding(&y, &x);
    y = x;
    sf_xsum_merge(&y, &empty);
    assert_same_encoding(&y, &x);
}

/* Normalization is triggered by the pending counter and never changes the
 * value; driving the counter near its limit must keep the sum exact. */
static void test_normalization_threshold(void **st)
{
    (void)st;
    rng_state = 10;
    double v[200];
    for (int i = 0; i < 200; i++) v[i] = gen_any();
    sf_xsum a, b, c;
    sf_xsum_init(&a);
    for (int i = 0; i < 200; i++) sf_xsum_add(&a, v[i]);

    sf_xsum_init(&b);
    b.pending = SF_XSUM_PENDING_MAX - 50;
    for (int i = 0; i < 200; i++) sf_xsum_add(&b, v[i]);
    assert_true(b.pending < 200); /* a carry pass happened */
    assert_same_encoding(&a, &b);

    /* A merge of two nearly full accumulators. */
    sf_xsum_init(&b);
    sf_xsum_init(&c);
    b.pending = SF_XSUM_PENDING_MAX - 100;
    c.pending = SF_XSUM_PENDING_MAX - 100;
    for (int i = 0; i < 100; i++) sf_xsum_add(&b, v[i]);
    for (int i = 100; i < 200; i++) sf_xsum_add(&c, v[i]);
    sf_xsum_merge(&b, &c);
    assert_true(b.pending < SF_XSUM_PENDING_MAX);
    assert_same_encoding(&a, &b);
    assert_same_double(sf_xsum_round(&a), sf_xsum_round(&b));

    c = a;
    sf_xsum_normalize(&c);
    assert_same_encoding(&a, &c);
}

/* ---- encoding ----------------------------------------------------------- */

static void test_encoding_by_hand(void **st)
{
    (void)st;
    sf_xsum x;
    sf_buf b;
    sf_buf_init(&b);

    sf_xsum_init(&x);
    encode(&x, &b);
    const uint8_t zero[] = {0, 0, 0};
    assert_int_equal(b.len, sizeof zero);
    assert_memory_equal(b.data, zero, sizeof zero);
    assert_true(sf_xsum_is_zero(&x));

    /* 1.0 is unit 2^1074: limb 33 (bit 1056), digit 2^18. */
    sf_xsum_add(&x, 1.0);
    encode(&x, &b);
    const uint8_t one[] = {0, 33, 1, 0x00, 0x00, 0x04, 0x00};
    assert_int_equal(b.len, sizeof one);
    assert_memory_equal(b.data, one, sizeof one);

    /* -1 reached as 1 - 2: same digits, negative flag. */
    sf_xsum_add(&x, -2.0);
    encode(&x, &b);
    const uint8_t minus_one[] = {1, 33, 1, 0x00, 0x00, 0x04, 0x00};
    assert_int_equal(b.len, sizeof minus_one);
    assert_memory_equal(b.data, minus_one, sizeof minus_one);

    /* x - x is zero whatever the history. */
    sf_xsum_add(&x, 1.0);
    sf_xsum_add(&x, 0x1p-1074);
    sf_xsum_add(&x, -0x1p-1074);
    encode(&x, &b);
    assert_int_equal(b.len, sizeof zero);
    assert_memory_equal(b.data, zero, sizeof zero);
    assert_true(sf_xsum_is_zero(&x));
    sf_xsum_add(&x, 0x1p-1074);
    assert_false(sf_xsum_is_zero(&x));

    /* Non-finite counters follow the digits. */
    sf_xsum_init(&x);
    sf_xsum_add(&x, INFINITY);
    sf_xsum_add(&x, NAN);
    sf_xsum_add(&x, NAN);
    encode(&x, &b);
    const uint8_t special[] = {2, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                               2, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(b.len, sizeof special);
    assert_memory_equal(b.data, special, sizeof special);
    sf_buf_fini(&b);
}

static void test_encoding_round_trip(void **st)
{
    (void)st;
    rng_state = 11;
    sf_buf b, b2;
    sf_buf_init(&b);
    sf_buf_init(&b2);
    for (int trial = 0; trial < 500; trial++) {
        sf_xsum x, y;
        sf_xsum_init(&x);
        int n = (int)rnd_below(100);
        for (int i = 0; i < n; i++) sf_xsum_add(&x, trial % 2 ? gen_any() : gen_moderate());
        if (trial % 7 == 0) sf_xsum_add(&x, NAN);
        if (trial % 11 == 0) sf_xsum_add(&x, -INFINITY);
        encode(&x, &b);
        /* Trailing bytes after the sum stay unread. */
        assert_int_equal(sf_buf_put_u8(&b, 0xAB), SF_OK);
        sf_rd r;
        sf_rd_init(&r, b.data, b.len);
        assert_int_equal(sf_xsum_decode(&y, &r), SF_OK);
        assert_int_equal(r.off, b.len - 1);
        encode(&y, &b2);
        assert_int_equal(b2.len, b.len - 1);
        assert_memory_equal(b.data, b2.data, b2.len);
        double hx = sf_xsum_round(&x), hy = sf_xsum_round(&y);
        if (isnan(hx))
            assert_true(isnan(hy));
        else
            assert_same_double(hx, hy);
    }
    sf_buf_fini(&b);
    sf_buf_fini(&b2);
}

static void test_decode_rejects(void **st)
{
    (void)st;
    sf_xsum x;
    sf_rd r;
    const uint8_t truncated[] = {0, 33, 1, 0x00, 0x00};
    sf_rd_init(&r, truncated, sizeof truncated);
    assert_int_equal(sf_xsum_decode(&x, &r), SF_ERR_PARSE);
    const uint8_t out_of_range[] = {0, 67, 2, 1, 0, 0, 0, 1, 0, 0, 0};
    sf_rd_init(&r, out_of_range, sizeof out_of_range);
    assert_int_equal(sf_xsum_decode(&x, &r), SF_ERR_PARSE);
    const uint8_t bad_flags[] = {4, 0, 0};
    sf_rd_init(&r, bad_flags, sizeof bad_flags);
    assert_int_equal(sf_xsum_decode(&x, &r), SF_ERR_PARSE);
    const uint8_t leading_zero[] = {0, 33, 2, 0, 0, 4, 0, 0, 0, 0, 0};
    sf_rd_init(&r, leading_zero, sizeof leading_zero);
    assert_int_equal(sf_xsum_decode(&x, &r), SF_ERR_PARSE);
    const uint8_t negative_zero[] = {1, 0, 0};
    sf_rd_init(&r, negative_zero, sizeof negative_zero);
    assert_int_equal(sf_xsum_decode(&x, &r), SF_ERR_PARSE);
    const uint8_t empty_special[] = {2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                     0, 0, 0, 0, 0, 0, 0, 0};
    sf_rd_init(&r, empty_special, sizeof empty_special);
    assert_int_equal(sf_xsum_decode(&x, &r), SF_ERR_PARSE);
    /* The hand-made encoding of 1.0 decodes to 1.0. */
    const uint8_t one[] = {0, 33, 1, 0x00, 0x00, 0x04, 0x00};
    sf_rd_init(&r, one, sizeof one);
    assert_int_equal(sf_xsum_decode(&x, &r), SF_OK);
    assert_same_double(sf_xsum_round(&x), 1.0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cancellation),
        cmocka_unit_test(test_scaled_integers),
        cmocka_unit_test(test_rounding_against_integers),
        cmocka_unit_test(test_ties_to_even),
        cmocka_unit_test(test_pairs_match_ieee),
        cmocka_unit_test(test_triples_match_fma),
        cmocka_unit_test(test_square_matches_fma_pair),
        cmocka_unit_test(test_subnormals),
        cmocka_unit_test(test_overflow),
        cmocka_unit_test(test_non_finite),
        cmocka_unit_test(test_round2),
        cmocka_unit_test(test_order_independence),
        cmocka_unit_test(test_merge_identity),
        cmocka_unit_test(test_normalization_threshold),
        cmocka_unit_test(test_encoding_by_hand),
        cmocka_unit_test(test_encoding_round_trip),
        cmocka_unit_test(test_decode_rejects),
    };
    return cmocka_run_group_tests(tests, 0, NULL);
}
