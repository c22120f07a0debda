/* Exact, order-independent sums of doubles (a "superaccumulator").
 *
 * An sf_xsum holds the exact sum of every finite double added to it as a
 * fixed-point integer in units of 2^-1074 (the smallest subnormal), split into
 * SF_XSUM_LIMBS signed 64-bit limbs of 32-bit digits (radix 2^32). Limb i
 * weighs 2^(32 i - 1074), so the limbs cover 2^-1074 up to 2^1102: room for
 * more than 2^63 additions of DBL_MAX. An add touches two adjacent limbs;
 * carries are propagated every SF_XSUM_PENDING_MAX adds. Adding is exact, so
 * the state after a set of additions is the same whatever their order and
 * however they were split between accumulators and merged; the rounded result
 * and the encoding are therefore bit-for-bit reproducible.
 *
 * Non-finite inputs are counted apart (+inf, -inf, NaN): the result is NaN if
 * a NaN or both infinities were added, else the infinity, else the exact sum
 * (an exact zero rounds to +0.0).
 *
 * The struct lives in caller storage and never allocates. Nothing here is
 * collective. Not thread-safe: one accumulator per thread, merged afterwards. */
#ifndef SF_XSUM_H
#define SF_XSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shardflow/buf.h"
#include "shardflow/status.h"

#define SF_XSUM_LIMBS 68
/* An add changes one limb by less than 2^32 and the next by at most 2^52,
 * and a normalized limb is below 2^32, so up to 2047 adds between carry
 * passes keep every limb below 2^63. */
#define SF_XSUM_PENDING_MAX 2047

typedef struct sf_xsum {
    int64_t limb[SF_XSUM_LIMBS]; /* digit i weighs 2^(32 i - 1074) */
    int64_t pending;             /* adds (or merges) since the last carry pass */
    uint64_t n_pinf, n_ninf, n_nan;
} sf_xsum;

/* Makes an empty accumulator (exact sum 0). Not collective. */
void sf_xsum_init(sf_xsum *x);

/* Propagates carries so that limbs 0..66 hold digits in [0, 2^32) and the
 * top limb carries the sign. The value is unchanged. The add functions call
 * it when needed; callers never have to. Not collective. */
void sf_xsum_normalize(sf_xsum *x);

/* Adds a zero, a subnormal or a non-finite value (internal to the inline
 * add: these take the out-of-line path). */
void sf__xsum_add_rare(sf_xsum *x, uint64_t bits);

/* Adds v exactly, provided room was reserved (see sf_xsum_reserve). */
static inline void sf_xsum_add_reserved(sf_xsum *x, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    unsigned ef = (unsigned)(bits >> 52) & 0x7FFu;
    if (ef - 1u >= 0x7FEu) { /* ef == 0 or ef == 0x7FF */
        /* Zeros (common: the low part of an exact square of an integer)
         * add nothing; subnormals and non-finite values are rare. */
        if ((bits << 1) != 0) sf__xsum_add_rare(x, bits);
        return;
    }
    /* v = m * 2^(pos - 1074) with the signed 54-bit integer m; m * 2^sh is
     * split into a low digit in [0, 2^32) and a signed high part
     * floor(m * 2^sh / 2^32) (>> of a negative value is arithmetic on
     * every compiler we build with; xsum.c checks it). */
    int64_t neg = -(int64_t)(bits >> 63);
    int64_t m = (int64_t)((bits & 0x000FFFFFFFFFFFFFull) | 0x0010000000000000ull);
    m = (m ^ neg) - neg;
    unsigned pos = ef - 1u;
    unsigned k = pos >> 5, sh = pos & 31u;
    x->limb[k] += (int64_t)(((uint64_t)m << sh) & 0xFFFFFFFFu);
    x->limb[k + 1] += m >> (32u - sh);
}

/* Makes room for n (1..SF_XSUM_PENDING_MAX) calls of sf_xsum_add_reserved,
 * so that hot loops keep the carry check out of the per-value path. */
static inline void sf_xsum_reserve(sf_xsum *x, int64_t n)
{
    if (x->pending + n > SF_XSUM_PENDING_MAX) sf_xsum_normalize(x);
    x->pending += n;
}

/* Adds v exactly. Inline because it is the hot path of every sum. */
static inline void sf_xsum_add(sf_xsum *x, double v)
{
    sf_xsum_reserve(x, 1);
    sf_xsum_add_reserved(x, v);
}

/* Adds v * v exactly as an integer when 2^-480 <= |v| < 2^499 (the
 * square of the 53-bit significand, 106 bits, shifted into five limbs, each
 * changed by less than 2^32: one add's worth of room) and returns true;
 * otherwise adds nothing and returns false, and the caller adds the square
 * its own way (e.g. as p = v*v plus its fma tail, which is the same value
 * wherever that pair is exact). Needs one reserved add. */
__extension__ typedef unsigned __int128 sf__xsum_u128;
static inline bool sf_xsum_add_square_reserved(sf_xsum *x, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    unsigned ef = (unsigned)(bits >> 52) & 0x7FFu;
    /* 2^-480 <= |v| < 2^499: biased exponents 543 .. 1521. */
    if (ef - 543u > 1521u - 543u) return false;
    uint64_t m = (bits & 0x000FFFFFFFFFFFFFull) | 0x0010000000000000ull;
    /* v = m 2^(ef - 1075), so v^2 = m^2 2^(2 ef - 2150): in units of
     * 2^-1074, m^2 shifted left by 2 ef - 1076 >= 10. */
    sf__xsum_u128 q = (sf__xsum_u128)m * m; /* < 2^106 */
    unsigned pos = 2u * ef - 1076u;
    unsigned k = pos >> 5, sh = pos & 31u;
    sf__xsum_u128 low = q << sh;                              /* bits 0..127 of q 2^sh */
    uint64_t top = (uint64_t)(q >> 64) >> (63u - sh) >> 1u;  /* bits 128..136 */
    uint64_t w0 = (uint64_t)low, w1 = (uint64_t)(low >> 64);
    x->limb[k] += (int64_t)(w0 & 0xFFFFFFFFu);
    x->limb[k + 1] += (int64_t)(w0 >> 32);
    x->limb[k + 2] += (int64_t)(w1 & 0xFFFFFFFFu);
    x->limb[k + 3] += (int64_t)(w1 >> 32);
    x->limb[k + 4] += (int64_t)top;
    return true;
}

/* Adds v[0..n) exactly; same result as n calls of sf_xsum_add. */
void sf_xsum_add_many(sf_xsum *x, const double *v, size_t n);

/* into = into + from (exact); from is unchanged. Not collective. */
void sf_xsum_merge(sf_xsum *into, const sf_xsum *from);

/* The exact sum rounded to the nearest double, ties to even (subnormal
 * results and overflow to +/-inf included), or the non-finite result. */
double sf_xsum_round(const sf_xsum *x);

/* A double-double view of the sum: *hi = round(S), *lo = round(S - *hi).
 * When the result is not finite, *hi is it and *lo is 0. */
void sf_xsum_round2(const sf_xsum *x, double *hi /* out */, double *lo /* out */);

/* The sample variance (n - 1 in the denominator) of n values whose exact
 * sum and exact sum of squares are given: (n Q - S^2) / (n (n - 1)), with
 * the numerator computed exactly in integer arithmetic and one final
 * double-double division (so the result is correctly rounded in all but
 * rare near-ties). NaN if n < 2 or either sum holds a non-finite value;
 * clamped at 0. Not collective. */
double sf_xsum_variance(const sf_xsum *sum, const sf_xsum *sumsq, uint64_t n);

/* True if the exact sum is zero and no non-finite value was added. */
bool sf_xsum_is_zero(const sf_xsum *x);

/* Appends a canonical, portable encoding: equal sums (and equal non-finite
 * counts) give equal bytes whatever the history. Only the non-zero digit
 * range is written. Format: u8 flags (bit 0: negative, bit 1: non-finite
 * counters follow), u8 first digit index, u8 digit count, the digits of the
 * magnitude as little-endian u32, then if bit 1: u64 +inf, -inf, NaN counts.
 * Fails (SF_ERR_INTERNAL) only beyond 2^1102, i.e. after some 2^78 adds of
 * DBL_MAX. */
sf_status sf_xsum_encode(const sf_xsum *x, sf_buf *out);

/* Reads what sf_xsum_encode wrote from r into x (replacing x). Fails with
 * SF_ERR_PARSE on malformed or non-canonical bytes. */
sf_status sf_xsum_decode(sf_xsum *x, sf_rd *r);

#endif
