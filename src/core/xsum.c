/* Exact superaccumulator for sums of doubles (see shardflow/xsum.h). */
#include "shardflow/xsum.h"

#include <math.h>
#include <string.h>

#define DIGIT_MASK 0xFFFFFFFFull
#define TOP (SF_XSUM_LIMBS - 1)

void sf_xsum_init(sf_xsum *x)
{
    memset(x, 0, sizeof *x);
}

/* The inline add splits signed values with >>, which C leaves to the
 * implementation for negative operands: insist on the arithmetic shift. */
_Static_assert((-(int64_t)5 >> 1) == -3, "shardflow needs an arithmetic right shift");

void sf_xsum_normalize(sf_xsum *x)
{
    int64_t carry = 0;
    for (int i = 0; i < TOP; i++) {
        int64_t v = x->limb[i] + carry;
        x->limb[i] = (int64_t)((uint64_t)v & DIGIT_MASK);
        carry = v >> 32; /* floor(v / 2^32) */
    }
    x->limb[TOP] += carry;
    x->pending = 0;
}

void sf__xsum_add_rare(sf_xsum *x, uint64_t bits)
{
    uint64_t frac = bits & 0x000FFFFFFFFFFFFFull;
    if (((bits >> 52) & 0x7FFu) == 0x7FFu) {
        if (frac != 0)
            x->n_nan++;
        else if (bits >> 63)
            x->n_ninf++;
        else
            x->n_pinf++;
        return;
    }
    /* Zero or subnormal: frac * 2^-1074, the bottom limbs. */
    int64_t m = (int64_t)frac;
    if (bits >> 63) m = -m;
    x->limb[0] += (int64_t)((uint64_t)m & DIGIT_MASK);
    x->limb[1] += m >> 32;
}

void sf_xsum_add_many(sf_xsum *x, const double *v, size_t n)
{
    while (n > 0) {
        size_t block = n < SF_XSUM_PENDING_MAX ? n : SF_XSUM_PENDING_MAX;
        sf_xsum_reserve(x, (int64_t)block);
        for (size_t i = 0; i < block; i++) sf_xsum_add_reserved(x, v[i]);
        v += block;
        n -= block;
    }
}

void sf_xsum_merge(sf_xsum *into, const sf_xsum *from)
{
    /* A limb of either side is below 2^32 + pending * 2^52 in magnitude, so
     * the sum behaves like pending_into + pending_from + 1 adds. */
    if (into->pending + from->pending + 1 > SF_XSUM_PENDING_MAX) sf_xsum_normalize(into);
    for (int i = 0; i < SF_XSUM_LIMBS; i++) into->limb[i] += from->limb[i];
    into->pending += from->pending + 1;
    into->n_pinf += from->n_pinf;
    into->n_ninf += from->n_ninf;
    into->n_nan += from->n_nan;
    if (into->pending > SF_XSUM_PENDING_MAX) sf_xsum_normalize(into);
}

/* Normalized magnitude of the finite part: digits all in [0, 2^32) except
 * possibly the top one (only beyond 2^1102, far more than 2^63 adds of
 * DBL_MAX). Returns true if the value is negative. */
static bool magnitude(const sf_xsum *x, sf_xsum *m /* out */)
{
    *m = *x;
    sf_xsum_normalize(m);
    bool neg = m->limb[TOP] < 0;
    if (neg) {
        for (int i = 0; i < SF_XSUM_LIMBS; i++) m->limb[i] = -m->limb[i];
        sf_xsum_normalize(m);
    }
    return neg;
}

static int clz32(uint32_t v)
{
    int n = 0;
    while (!(v & 0x80000000u)) {
        v <<= 1;
        n++;
    }
    return n;
}

static double special_value(const sf_xsum *x, bool *special)
{
    *special = true;
    if (x->n_nan != 0 || (x->n_pinf != 0 && x->n_ninf != 0)) return NAN;
    if (x->n_pinf != 0) return INFINITY;
    if (x->n_ninf != 0) return -INFINITY;
    *special = false;
    return 0.0;
}

static double from_bits(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

double sf_xsum_round(const sf_xsum *x)
{
    bool special;
    double sv = special_value(x, &special);
    if (special) return sv;

    sf_xsum m;
    bool neg = magnitude(x, &m);
    uint64_t sign = (uint64_t)neg << 63;
    if ((uint64_t)m.limb[TOP] > DIGIT_MASK) return from_bits(sign | 0x7FF0000000000000ull);

    int t = TOP;
    while (t >= 0 && m.limb[t] == 0) t--;
    if (t < 0) return 0.0;

    uint64_t dt = (uint64_t)m.limb[t];
    uint64_t d1 = t >= 1 ? (uint64_t)m.limb[t - 1] : 0;
    uint64_t d2 = t >= 2 ? (uint64_t)m.limb[t - 2] : 0;
    int lz = clz32((uint32_t)dt);
    int len = 32 * t + (32 - lz); /* bit length of the integer in units of 2^-1074 */

    if (len <= 53) {
        /* N * 2^-1074 with N < 2^53 is exactly the double whose bit pattern is
         * N: subnormal below 2^52, else exponent field 1 with the implicit bit. */
        uint64_t n = t == 1 ? (dt << 32) | d1 : dt;
        return from_bits(sign | n);
    }

    /* The top 64 bits, leading one at bit 63, and a sticky bit for the rest. */
    uint64_t w = ((dt << 32) | d1) << lz;
    uint64_t rest_mask = (((uint64_t)1) << (32 - lz)) - 1;
    if (lz != 0) w |= d2 >> (32 - lz);
    bool sticky = (d2 & rest_mask) != 0;
    for (int i = t - 3; i >= 0 && !sticky; i--) sticky = m.limb[i] != 0;

    uint64_t mant = w >> 11;
    bool round_bit = (w >> 10) & 1u;
    sticky = sticky || (w & 0x3FFu) != 0;
    if (round_bit && (sticky || (mant & 1u))) mant++;
    if (mant == ((uint64_t)1 << 53)) {
        mant >>= 1;
        len++;
    }
    /* value = mant * 2^(len - 53 - 1074); biased exponent = that + 52 + 1023. */
    int64_t biased = (int64_t)len - 53 - 1074 + 1075;
    if (biased >= 0x7FF) return from_bits(sign | 0x7FF0000000000000ull);
    return from_bits(sign | ((uint64_t)biased << 52) | (mant & 0x000FFFFFFFFFFFFFull));
}

void sf_xsum_round2(const sf_xsum *x, double *hi, double *lo)
{
    double h = sf_xsum_round(x);
    *hi = h;
    *lo = 0.0;
    if (!isfinite(h)) return;
    sf_xsum r = *x;
    sf_xsum_add(&r, -h);
    *lo = sf_xsum_round(&r);
}

bool sf_xsum_is_zero(const sf_xsum *x)
{
    if (x->n_pinf != 0 || x->n_ninf != 0 || x->n_nan != 0) return false;
    sf_xsum m = *x;
    sf_xsum_normalize(&m);
    for (int i = 0; i < SF_XSUM_LIMBS; i++)
        if (m.limb[i] != 0) return false;
    return true;
}

enum { FLAG_NEG = 1, FLAG_SPECIAL = 2 };

sf_status sf_xsum_encode(const sf_xsum *x, sf_buf *out)
{
    sf_xsum m;
    bool neg = magnitude(x, &m);
    SF_CHECK((uint64_t)m.limb[TOP] <= DIGIT_MASK, SF_ERR_INTERNAL,
             "exact sum beyond 2^1102 cannot be encoded");
    int lo = 0, hi = TOP;
    while (hi >= 0 && m.limb[hi] == 0) hi--;
    while (lo <= hi && m.limb[lo] == 0) lo++;
    bool special = x->n_pinf != 0 || x->n_ninf != 0 || x->n_nan != 0;
    int count = hi >= lo ? hi - lo + 1 : 0;
    if (count == 0) lo = 0;

    /* One reservation, then fixed-width little-endian stores. */
    size_t need = 3 + 4 * (size_t)count + (special ? 24 : 0);
    SF_CALL(sf_buf_reserve(out, need));
    uint8_t *p = out->data + out->len;
    p[0] = (uint8_t)((count != 0 && neg ? FLAG_NEG : 0) | (special ? FLAG_SPECIAL : 0));
    p[1] = (uint8_t)lo;
    p[2] = (uint8_t)count;
    p += 3;
    for (int i = 0; i < count; i++) {
        uint32_t d = (uint32_t)m.limb[lo + i];
        for (int b = 0; b < 4; b++) *p++ = (uint8_t)(d >> (8 * b));
    }
    if (special) {
        sf_store_u64(p, x->n_pinf);
        sf_store_u64(p + 8, x->n_ninf);
        sf_store_u64(p + 16, x->n_nan);
    }
    out->len += need;
    return SF_OK;
}

sf_status sf_xsum_decode(sf_xsum *x, sf_rd *r)
{
    uint8_t flags, lo, count;
    SF_CALL(sf_rd_u8(r, &flags));
    SF_CALL(sf_rd_u8(r, &lo));
    SF_CALL(sf_rd_u8(r, &count));
    SF_CHECK((flags & ~(FLAG_NEG | FLAG_SPECIAL)) == 0, SF_ERR_PARSE,
             "exact sum: unknown flags 0x%02x", flags);
    SF_CHECK((unsigned)lo + count <= SF_XSUM_LIMBS, SF_ERR_PARSE,
             "exact sum: digit range %u+%u out of bounds", lo, count);
    SF_CHECK(count != 0 || (lo == 0 && !(flags & FLAG_NEG)), SF_ERR_PARSE,
             "exact sum: non-canonical zero");
    sf_xsum_init(x);
    for (unsigned i = 0; i < count; i++) {
        uint32_t d;
        SF_CALL(sf_rd_u32(r, &d));
        SF_CHECK(d != 0 || (i != 0 && i + 1 != count), SF_ERR_PARSE,
                 "exact sum: non-canonical digit range");
        x->limb[lo + i] = (flags & FLAG_NEG) ? -(int64_t)d : (int64_t)d;
    }
    if (flags & FLAG_NEG) sf_xsum_normalize(x);
    if (flags & FLAG_SPECIAL) {
        SF_CALL(sf_rd_u64(r, &x->n_pinf));
        SF_CALL(sf_rd_u64(r, &x->n_ninf));
        SF_CALL(sf_rd_u64(r, &x->n_nan));
        SF_CHECK(x->n_pinf != 0 || x->n_ninf != 0 || x->n_nan != 0, SF_ERR_PARSE,
                 "exact sum: non-canonical non-finite counters");
    }
    return SF_OK;
}

/* ---- the exact variance numerator ------------------------------------
 * Big unsigned integers in 32-bit digits, least significant first. */
#define BIG_DIGITS 144

typedef struct big {
    uint32_t d[BIG_DIGITS];
    int n; /* digits in use (no leading zeros beyond n) */
} big;

static void big_trim(big *a)
{
    while (a->n > 0 && a->d[a->n - 1] == 0) a->n--;
}

/* The magnitude of an exact sum, in units of 2^-1074; false if beyond 2^1102. */
static bool big_from_xsum(const sf_xsum *x, big *b)
{
    sf_xsum m;
    (void)magnitude(x, &m);
    if ((uint64_t)m.limb[TOP] > DIGIT_MASK) return false;
    memset(b, 0, sizeof *b);
    for (int i = 0; i < SF_XSUM_LIMBS; i++) b->d[i] = (uint32_t)m.limb[i];
    b->n = SF_XSUM_LIMBS;
    big_trim(b);
    return true;
}

static void big_mul(const big *a, const big *b, big *out)
{
    memset(out, 0, sizeof *out);
    for (int i = 0; i < a->n; i++) {
        uint64_t carry = 0;
        for (int j = 0; j < b->n; j++) {
            uint64_t t = (uint64_t)a->d[i] * b->d[j] + out->d[i + j] + carry;
            out->d[i + j] = (uint32_t)t;
            carry = t >> 32;
        }
        for (int k = i + b->n; carry != 0; k++) {
            uint64_t t = (uint64_t)out->d[k] + carry;
            out->d[k] = (uint32_t)t;
            carry = t >> 32;
        }
    }
    out->n = a->n + b->n;
    big_trim(out);
}

static void big_mul_u32(big *a, uint32_t k)
{
    uint64_t carry = 0;
    for (int i = 0; i < a->n; i++) {
        uint64_t t = (uint64_t)a->d[i] * k + carry;
        a->d[i] = (uint32_t)t;
        carry = t >> 32;
    }
    if (carry) a->d[a->n++] = (uint32_t)carry;
}

static void big_shl(big *a, unsigned bits)
{
    unsigned dw = bits / 32, sh = bits % 32;
    int n = a->n + (int)dw + 1;
    for (int i = n - 1; i >= 0; i--) {
        int src = i - (int)dw;
        uint64_t hi = src >= 0 && src < a->n ? a->d[src] : 0;
        uint64_t lo = src - 1 >= 0 && src - 1 < a->n ? a->d[src - 1] : 0;
        a->d[i] = (uint32_t)(sh ? (hi << sh) | (lo >> (32 - sh)) : hi);
    }
    a->n = n;
    big_trim(a);
}

static int big_cmp(const big *a, const big *b)
{
    if (a->n != b->n) return a->n < b->n ? -1 : 1;
    for (int i = a->n - 1; i >= 0; i--)
        if (a->d[i] != b->d[i]) return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

/* a -= b, with a >= b. */
static void big_sub(big *a, const big *b)
{
    int64_t borrow = 0;
    for (int i = 0; i < a->n; i++) {
        int64_t t = (int64_t)a->d[i] - (i < b->n ? (int64_t)b->d[i] : 0) - borrow;
        borrow = t < 0;
        a->d[i] = (uint32_t)(t + (borrow ? ((int64_t)1 << 32) : 0));
    }
    big_trim(a);
}

/* a as a double-double times 2^*e2 (about 106 good bits; hi carries the
 * leading 53). */
static void big_to_dd(const big *a, double *hi, double *lo, int *e2)
{
    int t = a->n - 1;
    uint64_t d0 = a->d[t], d1 = t >= 1 ? a->d[t - 1] : 0, d2 = t >= 2 ? a->d[t - 2] : 0,
             d3 = t >= 3 ? a->d[t - 3] : 0, d4 = t >= 4 ? a->d[t - 4] : 0;
    int lz = clz32((uint32_t)d0);
    /* 128 bits with the leading one at the top: w1 (high) and w2 (low). */
    uint64_t w1 = (d0 << 32) | d1, w2 = (d2 << 32) | d3;
    if (lz) {
        w1 = (w1 << lz) | (w2 >> (64 - lz));
        w2 = (w2 << lz) | (d4 >> (32 - lz));
    }
    /* value ~ (w1 * 2^64 + w2) * 2^(32 (t - 3) - lz); split w1 so that hi is exact. */
    double h = (double)(w1 >> 11);            /* 53 bits, exact */
    double l = (double)(w1 & 0x7FFu) * 18446744073709551616.0 + (double)w2;
    *hi = h * 37778931862957161709568.0;       /* 2^75 */
    *lo = l;
    *e2 = 32 * (t - 3) - lz;
}

double sf_xsum_variance(const sf_xsum *sum, const sf_xsum *sumsq, uint64_t n)
{
    if (n < 2) return NAN;
    bool special;
    (void)special_value(sum, &special);
    if (special) return NAN;
    (void)special_value(sumsq, &special);
    if (special) return NAN;
    big s, q, s2, qs;
    if (!big_from_xsum(sum, &s) || !big_from_xsum(sumsq, &q)) return NAN;
    /* Numerator in units of 2^-2148: n * Q * 2^1074 - S^2, exact. */
    qs = q;
    big_mul_u32(&qs, (uint32_t)n);
    if (n >> 32) {
        big hi = q;
        big_mul_u32(&hi, (uint32_t)(n >> 32));
        big_shl(&hi, 32);
        /* qs = q * lo32 + q * hi32 * 2^32 */
        big sum_ = qs;
        uint64_t carry = 0;
        int m = sum_.n > hi.n ? sum_.n : hi.n;
        for (int i = 0; i < m; i++) {
            uint64_t t = (uint64_t)(i < sum_.n ? sum_.d[i] : 0) + (i < hi.n ? hi.d[i] : 0) + carry;
            sum_.d[i] = (uint32_t)t;
            carry = t >> 32;
        }
        sum_.n = m;
        if (carry) sum_.d[sum_.n++] = (uint32_t)carry;
        qs = sum_;
    }
    big_shl(&qs, 1074);
    big_mul(&s, &s, &s2);
    /* Cauchy-Schwarz makes it non-negative for exact sums; squares that lost
     * bits (|x| below 2^-511 or beyond 2^511) may tip it: clamp at 0. */
    if (big_cmp(&qs, &s2) <= 0) return 0.0;
    big_sub(&qs, &s2);
    double nh, nl;
    int e2;
    big_to_dd(&qs, &nh, &nl, &e2);
    /* Divide the double-double by d = n (n - 1), itself a double-double. */
    double dn = (double)n, dm = (double)(n - 1);
    double dh = dn * dm, dl = fma(dn, dm, -dh);
    double q1 = nh / dh;
    double p = q1 * dh, pe = fma(q1, dh, -p);
    double r = ((nh - p) - pe + nl) - q1 * dl;
    double q2 = r / dh;
    return ldexp(q1 + q2, e2 - 2148);
}
