/* Exact, order-independent sums of doubles (a "superaccumulator").
 *
 * An sf_xsum holds the exact sum of every finite double added to it as a
 * fixed-point integer in units of 2^-1074 (the smallest subnormal), split into
 * SF_XSUM_LIMBS signed 64-bit limbs of 32-bit digits (radix 2^32). Limb i
 * weighs 2^(32 i - 1074), so the limbs cover 2^-1074 up to 2^1102: room for
 * more than 2^63 additions of DBL_MAX. Adding is exact, so the state after a
 * set of additions is the same whatever their order and however they were
 * split between accumulators and merged; the rounded result and the encoding
 * are therefore bit-for-bit reproducible.
 *
 * Non-finite inputs are counted apart (+inf, -inf, NaN): the result is NaN if
 * a NaN or both infinities were added, else the infinity, else the exact sum.
 *
 * The struct lives in caller storage and never allocates. Not thread-safe: one
 * accumulator per thread, merged afterwards. */
#ifndef SF_XSUM_H
#define SF_XSUM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "shardflow/buf.h"
#include "shardflow/status.h"

#define SF_XSUM_LIMBS 68
/* Each add changes a limb by less than 2^32 and a normalized limb is below
 * 2^32, so 2^30 pending adds keep every limb far from int64 overflow. */
#define SF_XSUM_PENDING_MAX ((int64_t)1 << 30)

typedef struct sf_xsum {
    int64_t limb[SF_XSUM_LIMBS]; /* digit i weighs 2^(32 i - 1074) */
    int64_t pending;             /* adds (or merges) since the last carry pass */
    uint64_t n_pinf, n_ninf, n_nan;
} sf_xsum;

/* Makes an empty accumulator (exact sum 0). Not collective. */
void sf_xsum_init(sf_xsum *x);

/* Propagates carries so that limbs 0..66 hold digits in [0, 2^32) and the
 * top limb carries the sign. The value is unchanged. sf_xsum_add calls it
 * when needed; callers never have to. Not collective. */
void sf_xsum_normalize(sf_xsum *x);

/* Adds a non-finite value to the counters (internal to the inline add). */
void sf__xsum_add_special(sf_xsum *x, uint64_t bits);

/* Adds v exactly. Inline because it is the hot path of every sum. */
static inline void sf_xsum_add(sf_xsum *x, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    unsigned ef = (unsigned)(bits >> 52) & 0x7FFu;
    if (ef == 0x7FFu) {
        sf__xsum_add_special(x, bits);
        return;
    }
    /* v = (-1)^s * m * 2^(pos - 1074): subnormals have ef == 0 and no
     * implicit bit, with the same scale as ef == 1. */
    uint64_t m = (bits & 0x000FFFFFFFFFFFFFull) | ((uint64_t)(ef != 0) << 52);
    unsigned pos = ef - (ef != 0);
    unsigned k = pos >> 5, sh = pos & 31u;
    uint64_t lo = m << sh;                             /* bits 0..63 of m*2^sh */
    uint64_t hi = (m >> 1) >> (63u - sh);              /* bits 64..83 (sh = 0 safe) */
    int64_t neg = -(int64_t)(bits >> 63);              /* 0 or -1 */
    int64_t d0 = (int64_t)(lo & 0xFFFFFFFFu);
    int64_t d1 = (int64_t)(lo >> 32);
    int64_t d2 = (int64_t)hi;
    x->limb[k] += (d0 ^ neg) - neg;
    x->limb[k + 1] += (d1 ^ neg) - neg;
    x->limb[k + 2] += (d2 ^ neg) - neg;
    if (++x->pending >= SF_XSUM_PENDING_MAX) sf_xsum_normalize(x);
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

/* True if the exact sum is zero and no non-finite value was added. */
bool sf_xsum_is_zero(const sf_xsum *x);

/* Appends a canonical, portable encoding: equal sums (and equal non-finite
 * counts) give equal bytes whatever the history. Only the non-zero digit
 * range is written. Format: u8 flags (bit 0: negative, bit 1: non-finite
 * counters follow), u8 first digit index, u8 digit count, the digits of the
 * magnitude as u32, then if bit 1: u64 +inf, -inf, NaN counts. */
sf_status sf_xsum_encode(const sf_xsum *x, sf_buf *out);

/* Reads what sf_xsum_encode wrote from r into x (replacing x). Fails with
 * SF_ERR_PARSE on malformed or non-canonical bytes. */
sf_status sf_xsum_decode(sf_xsum *x, sf_rd *r);

#endif
