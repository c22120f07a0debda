/* Size sharding: K contiguous blocks of the input, balanced by bytes when the
 * batches carry CSV row offsets and by rows otherwise. No pre-pass and no
 * key: a row's shard is a closed-form function of its position. */
#include <stdlib.h>

#include "shard/plan_impl.h"

typedef struct size_plan {
    uint64_t total_rows;   /* UINT64_MAX if unknown */
    uint64_t data_start;
    uint64_t data_bytes;   /* 0 if unknown */
} size_plan;

/* floor(a * b / d) for a < d, exact for all 64-bit inputs. The common case
 * fits in 64 bits; the rest (inputs past 2^64 / K bytes or rows) does a
 * 128-bit multiply and a bitwise long division. */
static uint64_t muldiv_floor(uint64_t a, uint64_t b, uint64_t d)
{
    if (b == 0 || a <= UINT64_MAX / b) return a * b / d;
    uint64_t al = a & 0xffffffffu, ah = a >> 32, bl = b & 0xffffffffu, bh = b >> 32;
    uint64_t p0 = al * bl, p1 = al * bh, p2 = ah * bl, p3 = ah * bh;
    uint64_t mid = (p0 >> 32) + (p1 & 0xffffffffu) + (p2 & 0xffffffffu);
    uint64_t lo = (p0 & 0xffffffffu) | (mid << 32);
    uint64_t hi = p3 + (p1 >> 32) + (p2 >> 32) + (mid >> 32);
    /* hi < d because a < d, so the quotient fits in 64 bits. */
    uint64_t rem = hi, q = 0;
    for (int i = 63; i >= 0; i--) {
        uint64_t carry = rem >> 63;
        rem = (rem << 1) | ((lo >> i) & 1u);
        q <<= 1;
        if (carry || rem >= d) {
            rem -= d;
            q |= 1u;
        }
    }
    return q;
}

/* Shard of position x in [0, n): floor(x * K / n), clamped to K - 1. */
static uint32_t block_of(uint64_t x, uint64_t n, uint32_t k)
{
    if (n == 0 || x >= n) return k - 1;
    uint64_t s = muldiv_floor(x, k, n);
    return s >= k ? k - 1 : (uint32_t)s;
}

/* First position of shard s (s <= K): ceil(s * n / K), as s * q + ceil(s * r
 * / K) with n = q * K + r, which cannot overflow since r < K < 2^32. */
static uint64_t block_start(uint64_t s, uint64_t n, uint32_t k)
{
    uint64_t q = n / k, r = n % k;
    return s * q + (s * r + k - 1) / k;
}

/* Positions usually grow row by row, so the current shard's bounds answer
 * most rows without a division; any other position recomputes them. */
typedef struct block_walk {
    uint64_t n;
    uint32_t k;
    uint32_t s;
    uint64_t lo, hi;   /* shard s holds [lo, hi) */
} block_walk;

static void walk_init(block_walk *w, uint64_t n, uint32_t k)
{
    w->n = n;
    w->k = k;
    w->s = 0;
    w->lo = 1;
    w->hi = 0;   /* empty: the first position recomputes */
}

static inline uint32_t walk(block_walk *w, uint64_t x)
{
    if (x < w->lo || x >= w->hi) {
        w->s = block_of(x, w->n, w->k);
        w->lo = block_start(w->s, w->n, w->k);
        w->hi = w->s + 1 == w->k ? UINT64_MAX : block_start(w->s + 1, w->n, w->k);
    }
    return w->s;
}

static sf_status size_init(sf_shard_plan *p, const sf_shard_config *cfg)
{
    size_plan *s = calloc(1, sizeof *s);
    SF_CHECK(s != NULL, SF_ERR_NOMEM, "out of memory creating the shard plan");
    s->total_rows = UINT64_MAX;
    p->impl = s;
    return SF_OK;
}

static sf_status size_finish(sf_shard_plan *p, uint64_t total_rows, uint64_t data_start,
                             uint64_t data_bytes)
{
    size_plan *s = p->impl;
    SF_CHECK(total_rows != UINT64_MAX || data_bytes > 0, SF_ERR_ARG,
             "%s: size sharding needs the row count or the byte size of the input, and "
             "neither is known", p->file);
    s->total_rows = total_rows;
    s->data_start = data_start;
    s->data_bytes = data_bytes;
    return SF_OK;
}

static sf_status size_route(const sf_shard_plan *p, const sf_batch *b, const sf_column *key,
                            uint32_t *shard)
{
    const size_plan *s = p->impl;
    uint32_t k = (uint32_t)p->k;
    block_walk w;
    if (b->row_offset != NULL && s->data_bytes > 0) {
        walk_init(&w, s->data_bytes, k);
        for (size_t i = 0; i < b->nrows; i++) {
            int64_t off = b->row_offset[i];
            uint64_t x = off <= 0 || (uint64_t)off <= s->data_start
                             ? 0
                             : (uint64_t)off - s->data_start;
            shard[i] = walk(&w, x);
        }
        return SF_OK;
    }
    SF_CHECK(s->total_rows != UINT64_MAX, SF_ERR_ARG,
             "%s: size sharding by rows needs the row count of the input, which is not known "
             "(and the batches carry no byte offsets)", p->file);
    walk_init(&w, s->total_rows, k);
    for (size_t i = 0; i < b->nrows; i++) shard[i] = walk(&w, b->first_row + i);
    return SF_OK;
}

/* By rows (no byte offsets to route by): shard s is the block of row
 * numbers [block_start(s), block_start(s + 1)), so the runs of a batch are
 * its first row's shard on to its last row's. */
static bool size_route_runs(const sf_shard_plan *p, const sf_batch *b, size_t *start)
{
    const size_plan *s = p->impl;
    const uint32_t k = (uint32_t)p->k;
    if ((b->row_offset != NULL && s->data_bytes > 0) || s->total_rows == UINT64_MAX) return false;
    const uint64_t first = b->first_row, end = b->first_row + b->nrows;
    for (uint32_t i = 0; i <= k; i++) start[i] = 0;
    if (b->nrows == 0) return true;
    const uint32_t s0 = block_of(first, s->total_rows, k), s1 = block_of(end - 1, s->total_rows, k);
    for (uint32_t i = s0 + 1; i <= k; i++) {
        /* Rows before shard i's block (rows past total_rows stay in K - 1). */
        uint64_t at = i <= s1 ? block_start(i, s->total_rows, k) : end;
        start[i] = (size_t)((at < first ? first : at > end ? end : at) - first);
    }
    return true;
}

static void size_describe(const sf_shard_plan *p, sf_json *j)
{
    const size_plan *s = p->impl;
    sf_json_key(j, "basis");
    if (!p->finished)
        sf_json_null(j);
    else
        sf_json_str(j, s->data_bytes > 0 ? "bytes" : "rows");
    sf_json_key(j, "total_rows");
    if (s->total_rows == UINT64_MAX)
        sf_json_null(j);
    else
        sf_json_uint(j, s->total_rows);
    sf_json_key(j, "data_start");
    sf_json_uint(j, s->data_start);
    sf_json_key(j, "data_bytes");
    sf_json_uint(j, s->data_bytes);
}

/* Body: total_rows, data_start, data_bytes (u64 each), as finish() kept
 * them; routing is a closed form of these three. */
static sf_status size_encode(const sf_shard_plan *p, sf_buf *out)
{
    const size_plan *s = p->impl;
    SF_CALL(sf_buf_put_u64(out, s->total_rows));
    SF_CALL(sf_buf_put_u64(out, s->data_start));
    return sf_buf_put_u64(out, s->data_bytes);
}

static sf_status size_decode(sf_shard_plan *p, const uint8_t *bytes, size_t n)
{
    size_plan *s = p->impl;
    uint64_t total_rows, data_start, data_bytes;
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    SF_CALL(sf_rd_u64(&rd, &total_rows));
    SF_CALL(sf_rd_u64(&rd, &data_start));
    SF_CALL(sf_rd_u64(&rd, &data_bytes));
    SF_CHECK(rd.off == n, SF_ERR_ARG, "%zu trailing bytes", n - rd.off);
    /* The same condition finish() enforces: a plan that knows neither the
     * row count nor the byte size could not have been finished. */
    SF_CHECK(total_rows != UINT64_MAX || data_bytes > 0, SF_ERR_ARG,
             "size-sharding state knows neither the row count nor the byte size of the input");
    s->total_rows = total_rows;
    s->data_start = data_start;
    s->data_bytes = data_bytes;
    return SF_OK;
}

static void size_destroy(sf_shard_plan *p)
{
    free(p->impl);
    p->impl = NULL;
}

const sf__shard_ops sf__shard_size_ops = {
    .name = "size",
    .needs_prepass = false,
    .init = size_init,
    .observe = NULL,
    .finish = size_finish,
    .route = size_route,
    .route_runs = size_route_runs,
    .describe = size_describe,
    .encode = size_encode,
    .decode = size_decode,
    .destroy = size_destroy,
};
