/* Block kernels of the ungrouped `stats` agent (see stats_kernels.h for
 * what they compute and why the sums are exact). AVX-512 (F, BW, DQ, VL),
 * chosen at run time; elsewhere every block takes the per-value path. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "agents/stats_kernels.h"

static _Atomic int forced = -1;
static _Atomic int has_cpu = -1;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SF_STATS_HAVE_AVX512 1
#define TGT __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,popcnt")))

/* __builtin_cpu_supports reads what libgcc's constructor filled in (no
 * __builtin_cpu_init here: it writes, and several threads may ask). */
static bool cpu_has(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("popcnt");
}

/* Lanes of the 8 rows at x[i..]: those inside the block (rem left) and not
 * null. */
TGT static inline __mmask8 lane_mask(size_t rem, const uint8_t *valid)
{
    __mmask8 m = rem >= 8 ? (__mmask8)0xFF : (__mmask8)((1u << rem) - 1u);
    if (valid != NULL) {
        __m128i v = _mm_maskz_loadu_epi8((__mmask16)m, valid);
        m &= (__mmask8)_mm_test_epi8_mask(v, v);
    }
    return m;
}

TGT static inline __m512d split_add(__m512d v, __m512d sigma, __m512d *sq, __m512d *sr)
{
    __m512d q = _mm512_sub_pd(_mm512_add_pd(sigma, v), sigma);
    *sq = _mm512_add_pd(*sq, q);
    *sr = _mm512_add_pd(*sr, _mm512_sub_pd(v, q));
    return q;
}

static inline double pow2(int biased)
{
    uint64_t b = (uint64_t)biased << 52;
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

TGT static bool f64_avx512(const double *x, const uint8_t *valid, size_t n, sf__stats_fblock *o)
{
    const __m512i absmask = _mm512_set1_epi64(INT64_MAX);
    const __m512i signbit = _mm512_set1_epi64(INT64_MIN);
    __m512i amax = _mm512_setzero_si512(), amin = _mm512_set1_epi64(-1);
    __m512i kmin = _mm512_set1_epi64(-1), kmax = _mm512_setzero_si512();
    uint64_t count = 0;
    /* Pass 1: extremes, magnitudes, count. */
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = lane_mask(n - i, valid ? valid + i : NULL);
        __m512i b = _mm512_maskz_loadu_epi64(m, x + i);
        __m512i a = _mm512_and_si512(b, absmask);
        amax = _mm512_max_epu64(amax, a);
        amin = _mm512_mask_min_epu64(amin, _mm512_test_epi64_mask(a, a), amin, a);
        __m512i key = _mm512_xor_si512(b, _mm512_or_si512(_mm512_srai_epi64(b, 63), signbit));
        kmin = _mm512_mask_min_epu64(kmin, m, kmin, key);
        kmax = _mm512_mask_max_epu64(kmax, m, kmax, key);
        count += (uint64_t)__builtin_popcount((unsigned)m);
    }
    const uint64_t hi = _mm512_reduce_max_epu64(amax), lo = _mm512_reduce_min_epu64(amin);
    if (hi >= UINT64_C(0x7FF0000000000000)) return false; /* an infinity or a NaN */
    const int emax = (int)(hi >> 52) - 1023, emin = (int)(lo >> 52) - 1023;
    /* Subnormals (emin = -1023), squares near underflow or overflow, or a
     * spread the bounds do not cover: the per-value path. hi == 0: zeros
     * (or nothing) only. */
    if (hi != 0 && (emin < -400 || emax > 500 || emax - emin > 17)) return false;
    o->count = count;
    o->nulls = n - count;
    o->min_key = count ? _mm512_reduce_min_epu64(kmin) : UINT64_MAX;
    o->max_key = count ? _mm512_reduce_max_epu64(kmax) : 0;
    memset(o->sum, 0, sizeof o->sum);
    memset(o->sq, 0, sizeof o->sq);
    if (hi == 0) return true;
    const __m512d sx = _mm512_set1_pd(pow2(emax + 10 + 1023));
    const __m512d sp = _mm512_set1_pd(pow2(2 * emax + 11 + 1023));
    const __m512d se = _mm512_set1_pd(pow2(2 * emax - 42 + 1023));
    __m512d qx = _mm512_setzero_pd(), rx = qx, qp = qx, rp = qx, qe = qx, re = qx;
    /* Pass 2: the exact split sums of x, p = x*x and e = x*x - p. */
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = lane_mask(n - i, valid ? valid + i : NULL);
        __m512d v = _mm512_maskz_loadu_pd(m, x + i);
        __m512d p = _mm512_mul_pd(v, v);
        __m512d e = _mm512_fmsub_pd(v, v, p);
        split_add(v, sx, &qx, &rx);
        split_add(p, sp, &qp, &rp);
        split_add(e, se, &qe, &re);
    }
    o->sum[0] = _mm512_reduce_add_pd(qx);
    o->sum[1] = _mm512_reduce_add_pd(rx);
    o->sq[0] = _mm512_reduce_add_pd(qp);
    o->sq[1] = _mm512_reduce_add_pd(rp);
    o->sq[2] = _mm512_reduce_add_pd(qe);
    o->sq[3] = _mm512_reduce_add_pd(re);
    return true;
}

/* The common case of i64_avx512: every |x| < 2^28, so that x^2 < 2^56 is
 * one 32 x 32-bit product and 256 of them sum below 2^64 in a lane. False,
 * having changed nothing, for a block with a larger value. */
TGT static bool i64_small_avx512(const int64_t *x, const uint8_t *valid, size_t n, sf__stats_iblock *o)
{
    __m512i amax = _mm512_setzero_si512(), s = amax, sq = amax;
    __m512i mn = _mm512_set1_epi64(INT64_MAX), mx = _mm512_set1_epi64(INT64_MIN);
    uint64_t count = 0;
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = lane_mask(n - i, valid ? valid + i : NULL);
        __m512i v = _mm512_maskz_loadu_epi64(m, x + i);
        __m512i a = _mm512_abs_epi64(v);
        amax = _mm512_max_epu64(amax, a);
        s = _mm512_add_epi64(s, v);
        mn = _mm512_mask_min_epi64(mn, m, mn, v);
        mx = _mm512_mask_max_epi64(mx, m, mx, v);
        sq = _mm512_add_epi64(sq, _mm512_mul_epu32(a, a));
        count += (uint64_t)__builtin_popcount((unsigned)m);
    }
    if (_mm512_reduce_max_epu64(amax) >= (UINT64_C(1) << 28)) return false;
    o->count = count;
    o->nulls = n - count;
    o->sum = _mm512_reduce_add_epi64(s);
    o->sq_hi = 0;
    o->sq_mid = 0;
    o->sq_lo = (uint64_t)_mm512_reduce_add_epi64(sq);
    o->min = _mm512_reduce_min_epi64(mn);
    o->max = _mm512_reduce_max_epi64(mx);
    return true;
}

TGT static bool i64_avx512(const int64_t *x, const uint8_t *valid, size_t n, sf__stats_iblock *o)
{
    const __m512i low26 = _mm512_set1_epi64((INT64_C(1) << 26) - 1);
    __m512i amax = _mm512_setzero_si512(), s = amax, hh = amax, hl = amax, ll = amax;
    __m512i mn = _mm512_set1_epi64(INT64_MAX), mx = _mm512_set1_epi64(INT64_MIN);
    uint64_t count = 0;
    for (size_t i = 0; i < n; i += 8) {
        __mmask8 m = lane_mask(n - i, valid ? valid + i : NULL);
        __m512i v = _mm512_maskz_loadu_epi64(m, x + i);
        __m512i a = _mm512_abs_epi64(v);
        amax = _mm512_max_epu64(amax, a);
        s = _mm512_add_epi64(s, v);
        mn = _mm512_mask_min_epi64(mn, m, mn, v);
        mx = _mm512_mask_max_epi64(mx, m, mx, v);
        __m512i h = _mm512_srli_epi64(a, 26), l = _mm512_and_si512(a, low26);
        hh = _mm512_add_epi64(hh, _mm512_mul_epu32(h, h));
        hl = _mm512_add_epi64(hl, _mm512_mul_epu32(h, l));
        ll = _mm512_add_epi64(ll, _mm512_mul_epu32(l, l));
        count += (uint64_t)__builtin_popcount((unsigned)m);
    }
    /* |x| >= 2^53 (INT64_MIN's absolute value reads as 2^63): per value. */
    if (_mm512_reduce_max_epu64(amax) >= (UINT64_C(1) << 53)) return false;
    o->count = count;
    o->nulls = n - count;
    o->sum = _mm512_reduce_add_epi64(s);
    o->sq_hi = (uint64_t)_mm512_reduce_add_epi64(hh);
    o->sq_mid = (uint64_t)_mm512_reduce_add_epi64(hl);
    o->sq_lo = (uint64_t)_mm512_reduce_add_epi64(ll);
    o->min = _mm512_reduce_min_epi64(mn);
    o->max = _mm512_reduce_max_epi64(mx);
    return true;
}
#else
static bool cpu_has(void) { return false; }
#endif

static bool cpu_has_cached(void)
{
    int h = atomic_load_explicit(&has_cpu, memory_order_relaxed);
    if (h < 0) {
        h = cpu_has();
        atomic_store_explicit(&has_cpu, h, memory_order_relaxed);
    }
    return h == 1;
}

/* -1 undecided, 0 off, 1 on; set once (racing first calls agree). */
static _Atomic int decided = -1;

static bool decide(void)
{
    int f = atomic_load_explicit(&forced, memory_order_relaxed);
    int d = atomic_load_explicit(&decided, memory_order_relaxed);
    if (d < 0) {
        const char *env = getenv("SF_STATS_SIMD");
        d = cpu_has_cached() && !(env != NULL && strcmp(env, "0") == 0);
        atomic_store_explicit(&decided, d, memory_order_relaxed);
    }
    if (f == 0) return false;
    if (f == 1) return cpu_has_cached();
    return d == 1;
}

bool sf__stats_simd_enabled(void) { return decide(); }

/* -1 undecided, 0 off, 1 on (SF_STATS_PREFETCH=0 turns it off). */
static _Atomic int prefetch_decided = -1;

bool sf__stats_prefetch_enabled(void)
{
    int d = atomic_load_explicit(&prefetch_decided, memory_order_relaxed);
    if (d < 0) {
        const char *env = getenv("SF_STATS_PREFETCH");
        d = !(env != NULL && strcmp(env, "0") == 0);
        atomic_store_explicit(&prefetch_decided, d, memory_order_relaxed);
    }
    return d == 1;
}

void sf__stats_simd_force(int on) { atomic_store(&forced, on < 0 ? -1 : on ? 1 : 0); }

bool sf__stats_block_f64(const double *x, const uint8_t *valid, size_t n, sf__stats_fblock *out)
{
#ifdef SF_STATS_HAVE_AVX512
    if (n == 0 || n > SF__STATS_BLOCK || !decide()) return false;
    return f64_avx512(x, valid, n, out);
#else
    (void)x, (void)valid, (void)n, (void)out;
    return false;
#endif
}

bool sf__stats_block_i64(const int64_t *x, const uint8_t *valid, size_t n, sf__stats_iblock *out)
{
#ifdef SF_STATS_HAVE_AVX512
    if (n == 0 || n > SF__STATS_BLOCK || !decide()) return false;
    /* Small values first (status codes, sizes, counts); a block with a
     * value of 2^28 or more goes through the three-product kernel. */
    return i64_small_avx512(x, valid, n, out) || i64_avx512(x, valid, n, out);
#else
    (void)x, (void)valid, (void)n, (void)out;
    return false;
#endif
}
