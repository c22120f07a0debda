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
