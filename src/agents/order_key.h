/* Order keys of doubles, shared by the agents that keep minima and maxima.
 * Private to src/agents/. */
#ifndef SF_AGENTS_ORDER_KEY_H
#define SF_AGENTS_ORDER_KEY_H

#include <stdint.h>
#include <string.h>

/* Maps a double to an unsigned key whose order is the numeric order, with
 * -0.0 < +0.0 (the IEEE sign-magnitude trick), so that min and max do not
 * depend on arrival order. */
static inline uint64_t sf__order_key(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return (b >> 63) ? ~b : b | 0x8000000000000000ull;
}

/* The double of an order key. */
static inline double sf__from_order_key(uint64_t k)
{
    uint64_t b = (k >> 63) ? k & 0x7FFFFFFFFFFFFFFFull : ~k;
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}

#endif
