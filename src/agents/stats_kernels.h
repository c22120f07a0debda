/* Block kernels of the `stats` agent (ungrouped ranges and selections, and
 * grouped rows sorted by group): exact sums of a block of at most
 * SF__STATS_BLOCK values in a few vector instructions per value.
 * Private to src/agents/.
 *
 * A kernel returns false, having changed nothing, for a block it does not
 * take (no vector unit, a value outside its range, a non-finite value);
 * the caller then adds that block's values one by one. A kernel that takes
 * a block gives its exact sums as a few doubles whose exact sum they are,
 * so the accumulators end in the same state, bit for bit, either way.
 *
 * Double columns (f64): for a block whose nonzero magnitudes lie within
 * [2^Emin, 2^(Emax+1)), every value x is split on the grid of
 * sigma = 2^(Emax + L + 2) (L = log2 of the block size) into q = (sigma + x)
 * - sigma and r = x - q, both exact (Rump, Ogita and Oishi's extraction): the
 * q are multiples of ulp(sigma)/2 whose sums stay below sigma, the r are
 * multiples of ulp(2^Emin) whose sums stay below 2^53 of those, so plain
 * vector sums of q and of r are exact when Emax - Emin <= 36. The square is
 * x^2 = p + e with p = x*x and e = fma(x, x, -p), and p and e are split the
 * same way; their bounds need Emax - Emin <= 17 (spread over more than 17
 * binades in one block of 256 takes the per-value path). The extremes are
 * order keys (-0.0 < +0.0) kept with vector unsigned min and max.
 *
 * Integer columns (i64): values below 2^53 in magnitude are summed in
 * 64-bit lanes; |x| = h 2^26 + l gives x^2 = h^2 2^52 + h l 2^27 + l^2 as
 * three 32 x 32-bit products summed in 64-bit lanes (below 2^62 for a block
 * of 256). */
#ifndef SF_AGENTS_STATS_KERNELS_H
#define SF_AGENTS_STATS_KERNELS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SF__STATS_BLOCK 256

/* What a double block adds: count and nulls, the order keys of its
 * extremes (UINT64_MAX / 0 when no value was counted), and the exact sums
 * as sum[0] + sum[1] and sq[0] + sq[1] + sq[2] + sq[3]. */
typedef struct sf__stats_fblock {
    uint64_t count, nulls;
    uint64_t min_key, max_key;
    double sum[2];
    double sq[4];
} sf__stats_fblock;

/* What an integer block adds: the exact sum of x (|sum| < 2^62), of x^2 as
 * sq_hi 2^52 + sq_mid 2^27 + sq_lo, and the integer extremes (valid when
 * count > 0). */
typedef struct sf__stats_iblock {
    uint64_t count, nulls;
    int64_t sum;
    uint64_t sq_hi, sq_mid, sq_lo;
    int64_t min, max;
} sf__stats_iblock;

/* Whether the vector kernels run here: the CPU has them, and the
 * environment does not turn them off (SF_STATS_SIMD=0, for the
 * comparisons in bench/optimize and the tests). Decided once. */
bool sf__stats_simd_enabled(void);
/* Whether the block loops ask for the next block ahead (software
 * prefetch): on unless SF_STATS_PREFETCH=0 (bench/optimize). Decided once.
 * It changes no result, only when the bytes arrive. */
bool sf__stats_prefetch_enabled(void);
/* Overrides the decision (tests): 1 on where the CPU has them, 0 off,
 * -1 back to the environment's choice. */
void sf__stats_simd_force(int on);

/* x[0..n), n <= SF__STATS_BLOCK, with valid[i] == 0 marking nulls (valid may
 * be NULL). */
bool sf__stats_block_f64(const double *x, const uint8_t *valid, size_t n, sf__stats_fblock *out);
bool sf__stats_block_i64(const int64_t *x, const uint8_t *valid, size_t n, sf__stats_iblock *out);

#endif
