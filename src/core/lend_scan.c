/* The scans of lent columns (core/batch_lend.h): mask bytes counted and
 * checked, value slots under nulls checked for zero bits. AVX-512 (F, BW, VL)
 * where the CPU has it, chosen at run time; a portable loop elsewhere. */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>

#include "core/batch_lend.h"

static bool mask_scan_portable(const uint8_t *v, size_t n, size_t *nulls)
{
    const uint64_t ones = 0x0101010101010101ull;
    uint64_t bad = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, v + i, 8);
        bad |= w & ~ones;
    }
    for (; i < n; i++) bad |= v[i] & ~1u;
    /* Bytes 0 or 1 only: the zeros are the nulls. */
    *nulls = sf_valid_nulls(v, n);
    return bad == 0;
}

static bool zero_under_nulls_portable(const uint8_t *values, const uint8_t *valid, size_t n)
{
    uint64_t any = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        /* The values 1 KiB ahead: this is where a lent column first comes
         * from memory, and the hardware prefetchers stop at every page. */
        if (i + 136 <= n) __builtin_prefetch(values + 8 * (i + 128), 0, 3);
        for (size_t j = i; j < i + 8; j++) {
            uint64_t x;
            memcpy(&x, values + 8 * j, 8);
            any |= x & -(uint64_t)(valid[j] == 0);
        }
    }
    for (; i < n; i++) {
        uint64_t x;
        memcpy(&x, values + 8 * i, 8);
        any |= x & -(uint64_t)(valid[i] == 0);
    }
    return any == 0;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
#define SF_LEND_HAVE_AVX512 1
#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,popcnt")))

/* 64 mask bytes a step: the zero bytes by a test, the bad ones (above 1)
 * by an unsigned compare. */
TGT static bool mask_scan_avx512(const uint8_t *v, size_t n, size_t *nulls)
{
    const __m512i one = _mm512_set1_epi8(1);
    uint64_t zeros = 0;
    __mmask64 bad = 0;
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i b = _mm512_loadu_si512((const void *)(v + i));
        bad |= _mm512_cmpgt_epu8_mask(b, one);
        zeros += (uint64_t)__builtin_popcountll(_mm512_testn_epi8_mask(b, b));
    }
    if (i < n) {
        __mmask64 m = (__mmask64)((1ull << (n - i)) - 1ull); /* n - i < 64 */
        __m512i b = _mm512_maskz_loadu_epi8(m, v + i);
        bad |= _mm512_mask_cmpgt_epu8_mask(m, b, one);
        zeros += (uint64_t)__builtin_popcountll(_mm512_mask_testn_epi8_mask(m, b, b));
    }
    *nulls = (size_t)zeros;
    return bad == 0;
}

/* For every 64 rows, the value slots under their nulls only, by masked
 * loads: a group of 8 rows without a null reads nothing at all. */
TGT static bool zero_under_nulls_avx512(const uint8_t *values, const uint8_t *valid, size_t n)
{
    __m512i acc = _mm512_setzero_si512();
    size_t i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512i b = _mm512_loadu_si512((const void *)(valid + i));
        __mmask64 z = _mm512_testn_epi8_mask(b, b);
        if (z == 0) continue;
        for (int j = 0; j < 8; j++)
            acc = _mm512_or_si512(acc, _mm512_maskz_loadu_epi64((__mmask8)(z >> (8 * j)), values + 8 * (i + 8 * (size_t)j)));
    }
    for (; i < n; i += 8) {
        size_t m = n - i < 8 ? n - i : 8;
        __mmask16 lanes = (__mmask16)((1u << m) - 1u);
        __m128i b = _mm_maskz_loadu_epi8(lanes, valid + i);
        __mmask8 z = (__mmask8)(_mm_mask_testn_epi8_mask(lanes, b, b));
        acc = _mm512_or_si512(acc, _mm512_maskz_loadu_epi64(z, values + 8 * i));
    }
    return _mm512_test_epi64_mask(acc, acc) == 0;
}

/* __builtin_cpu_supports reads what libgcc's constructor filled in. */
static bool cpu_has(void)
{
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("popcnt");
}
#else
static bool cpu_has(void) { return false; }
#endif

/* -1 undecided, else 0/1; racing first calls agree. */
static _Atomic int has = -1;

static bool vector_on(void)
{
    int h = atomic_load_explicit(&has, memory_order_relaxed);
    if (h < 0) {
        h = cpu_has();
        atomic_store_explicit(&has, h, memory_order_relaxed);
    }
    return h == 1;
}

bool sf__lend_mask_scan(const uint8_t *valid, size_t n, size_t *nulls)
{
#ifdef SF_LEND_HAVE_AVX512
    if (vector_on()) return mask_scan_avx512(valid, n, nulls);
#endif
    return mask_scan_portable(valid, n, nulls);
}

bool sf__lend_zero_under_nulls(const void *values, const uint8_t *valid, size_t n)
{
#ifdef SF_LEND_HAVE_AVX512
    if (vector_on()) return zero_under_nulls_avx512(values, valid, n);
#endif
    return zero_under_nulls_portable(values, valid, n);
}

bool sf__lend_mask_scan_portable(const uint8_t *valid, size_t n, size_t *nulls)
{
    return mask_scan_portable(valid, n, nulls);
}

bool sf__lend_zero_under_nulls_portable(const void *values, const uint8_t *valid, size_t n)
{
    return zero_under_nulls_portable(values, valid, n);
}
