/* The `stats` agent: count, nulls, exact sum, mean, sample variance, standard
 * deviation, min and max of a numeric column, optionally grouped by one or
 * more key columns.
 *
 * Every partial result is exactly order-independent: sums of x and of x^2
 * live in superaccumulators (x^2 as the pair p = x*x, e = fma(x, x, -p),
 * which is exact unless x*x underflows or overflows); min and max use a
 * total order on doubles in which -0.0 < +0.0, and NaN is ignored. So merge
 * is exactly associative and commutative, and equal states encode to equal
 * bytes. Integer and timestamp values are converted to double first (exact
 * below 2^53).
 *
 * Grouping: the key of a row is a canonical byte string (per key column a
 * tag byte, 0 = null, 1 = value, then the value: u32 length and bytes for a
 * string, 8 little-endian bytes for a number). An open-addressing table maps
 * key bytes to a group slot; groups live in arrays grown geometrically. With
 * a single string key column, a cache from the batch's dictionary code to the
 * group makes most rows cost one array lookup; the cache is invalidated at
 * every process() call by bumping a generation number (codes are only
 * meaningful inside one batch). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/xsum.h"

#include "agents/builtin.h"
#include "agents/groups.h"
#include "agents/order_key.h"
#include "agents/stats_kernels.h"

#define STATS_FORMAT 1
#define MIN_NONE UINT64_MAX /* never the order key of a non-NaN double */
#define MAX_NONE 0

typedef struct group {
    uint64_t count;   /* non-null values, NaN and infinities included */
    uint64_t nulls;
    uint64_t min_key; /* order keys (see order_key) of the extremes */
    uint64_t max_key;
    sf_xsum sum;      /* exact sum of x */
    sf_xsum sq;       /* exact sum of x^2 */
} group;

typedef struct stats_state {
    const sf_agent_config *cfg;
    int nby;
    sf__groups grp;      /* key -> group index */
    group *g;            /* per group, indexed like grp */
    uint32_t gcap;
    /* Scratch of one process() call (block path): rows per group, and the
     * values sorted by group. */
    uint32_t *cnt;
    size_t cnt_cap;
    void *vals;
    size_t vals_cap;     /* values */
} stats_state;

/* ---- values ---------------------------------------------------------- */


static void group_init(group *g)
{
    g->count = 0;
    g->nulls = 0;
    g->min_key = MIN_NONE;
    g->max_key = MAX_NONE;
    sf_xsum_init(&g->sum);
    sf_xsum_init(&g->sq);
}

/* The exact tail e = x*x - p of p = x*x, as fma(x, x, -p) computes it.
 * Inside [2^-480, 2^500] Dekker's product on a Veltkamp split is exact and so
 * equal to the fma, without a library call where the compiler may not emit
 * the instruction; outside it (where x*x may underflow or the split may
 * overflow) the fma itself is used. Both paths give the same bits. */
static inline double square_tail(double x, double p)
{
    double ax = fabs(x);
    if (ax >= 0x1p-480 && ax <= 0x1p500) {
        double c = 134217729.0 * x; /* 2^27 + 1 */
        double xh = c - (c - x);
        double xl = x - xh;
        return ((xh * xh - p) + 2.0 * xh * xl) + xl * xl;
    }
    return fma(x, x, -p);
}

/* Adds x^2 exactly as p + e (when x*x overflows, p is inf and so is the
 * sum; below 2^-1022 the tail e is itself rounded). Room for two adds must
 * have been reserved. */
static inline void add_square_reserved(sf_xsum *sq, double x)
{
    if (sf_xsum_add_square_reserved(sq, x)) return; /* the same value, as one integer */
    double p = x * x;
    sf_xsum_add_reserved(sq, p);
    if (isfinite(p)) sf_xsum_add_reserved(sq, square_tail(x, p));
}

static inline void add_square(sf_xsum *sq, double x)
{
    sf_xsum_reserve(sq, 2);
    add_square_reserved(sq, x);
}

static inline void group_add(group *g, double x)
{
    g->count++;
    sf_xsum_add(&g->sum, x);
    add_square(&g->sq, x);
    if (!isnan(x)) {
        uint64_t k = sf__order_key(x);
        g->min_key = k < g->min_key ? k : g->min_key;
        g->max_key = k > g->max_key ? k : g->max_key;
    }
}

static void group_merge(group *into, const group *from)
{
    into->count += from->count;
    into->nulls += from->nulls;
    if (from->min_key < into->min_key) into->min_key = from->min_key;
    if (from->max_key > into->max_key) into->max_key = from->max_key;
    sf_xsum_merge(&into->sum, &from->sum);
    sf_xsum_merge(&into->sq, &from->sq);
}

static inline double value_at(const sf_column *c, size_t r)
{
    return c->type == SF_FLOAT64 ? c->f64[r] : (double)c->i64[r];
}

/* ---- groups ---------------------------------------------------------- */

/* Room for every group of the table (new ones start empty). */
static sf_status grow_groups(stats_state *s)
{
    if (s->grp.n <= s->gcap) return SF_OK;
    uint32_t cap = s->gcap ? s->gcap : 16;
    while (cap < s->grp.n) cap *= 2;
    group *g = realloc(s->g, (size_t)cap * sizeof *g);
    SF_CHECK(g != NULL, SF_ERR_NOMEM, "stats: out of memory for %u groups", cap);
    for (uint32_t i = s->gcap; i < cap; i++) group_init(&g[i]);
    s->g = g;
    s->gcap = cap;
    return SF_OK;
}

/* ---- agent functions --------------------------------------------------- */

static const char *cfg_file(const sf_agent_config *cfg)
{
    return cfg->file ? cfg->file : "<workflow>";
}

static const char *cfg_id(const sf_agent_config *cfg)
{
    return cfg->id ? cfg->id : "stats";
}

static bool is_numeric(sf_type t)
{
    return t == SF_INT64 || t == SF_FLOAT64 || t == SF_TIMESTAMP;
}

static sf_status stats_check(const sf_agent_config *cfg)
{
    SF_CALL(sf_agent_check_options(cfg, NULL, 0));
    SF_CHECK(cfg->column != NULL, SF_ERR_CONFIG, "%s:%d: agent '%s': stats needs a column (column: NAME)",
             cfg_file(cfg), cfg->line, cfg_id(cfg));
    SF_CHECK(cfg->schema != NULL && cfg->col >= 0 && cfg->col < cfg->schema->ncols, SF_ERR_CONFIG,
             "%s:%d: agent '%s': column '%s' is not in the input", cfg_file(cfg), cfg->line,
             cfg_id(cfg), cfg->column);
    sf_type t = cfg->schema->fields[cfg->col].type;
    SF_CHECK(is_numeric(t), SF_ERR_CONFIG, "%s:%d: agent '%s': stats needs a numeric column, '%s' is %s",
             cfg_file(cfg), cfg->line, cfg_id(cfg), cfg->column, sf_type_name(t));
    SF_CHECK(cfg->nby >= 0 && cfg->nby <= 255 && (cfg->nby == 0 || cfg->by_col != NULL),
             SF_ERR_CONFIG, "%s:%d: agent '%s': by: takes 1 to 255 columns", cfg_file(cfg),
             cfg->line, cfg_id(cfg));
    for (int i = 0; i < cfg->nby; i++)
        SF_CHECK(cfg->by_col[i] >= 0 && cfg->by_col[i] < cfg->schema->ncols, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': by column '%s' is not in the input", cfg_file(cfg), cfg->line,
                 cfg_id(cfg), cfg->by && cfg->by[i] ? cfg->by[i] : "?");
    return SF_OK;
}

static void stats_destroy(void *state)
{
    stats_state *s = state;
    sf__groups_fini(&s->grp);
    free(s->g);
    free(s->cnt);
    free(s->vals);
    memset(s, 0, sizeof *s);
}

static sf_status stats_init(void *state, const sf_agent_config *cfg)
{
    stats_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->schema != NULL && cfg->col >= 0 && cfg->col < cfg->schema->ncols &&
                 cfg->nby >= 0 && cfg->nby <= 255 && (cfg->nby == 0 || cfg->by_col != NULL),
             SF_ERR_ARG, "stats: configuration was not checked");
    s->cfg = cfg;
    s->nby = cfg->nby;
    /* Ungrouped: one group with the empty key, always present. */
    SF_CALL(sf__groups_init(&s->grp, cfg->schema, cfg->by_col, cfg->nby));
    sf_status rc = grow_groups(s);
    if (rc != SF_OK) stats_destroy(s);
    return rc;
}

/* Ungrouped float rows [begin, end), in blocks whose adds are reserved up front
 * so that the per-value path has no carry check. The count and extremes stay
 * in locals. Inlined with constant arguments, so each column layout gets its
 * own loop. */
#define ROW_BLOCK 512 /* 2 * ROW_BLOCK <= SF_XSUM_PENDING_MAX */

static inline void process_range_each(group *g, const double *f64, const uint8_t *valid, size_t begin, size_t end)
{
    uint64_t count = g->count, nulls = g->nulls, lo = g->min_key, hi = g->max_key;
    for (size_t at = begin; at < end;) {
        size_t stop = end - at > ROW_BLOCK ? at + ROW_BLOCK : end;
        sf_xsum_reserve(&g->sum, (int64_t)(stop - at));
        sf_xsum_reserve(&g->sq, 2 * (int64_t)(stop - at));
        for (size_t r = at; r < stop; r++) {
            if (valid != NULL && valid[r] == 0) {
                nulls++;
                continue;
            }
            double x = f64[r];
            count++;
            sf_xsum_add_reserved(&g->sum, x);
            add_square_reserved(&g->sq, x);
            if (!isnan(x)) {
                uint64_t k = sf__order_key(x);
                lo = k < lo ? k : lo;
                hi = k > hi ? k : hi;
            }
        }
        at = stop;
    }
    g->count = count;
    g->nulls = nulls;
    g->min_key = lo;
    g->max_key = hi;
}

/* Adds the exact integer sign * m (m < 2^128) to an accumulator as three
 * exact doubles of at most 50 bits each (scaled by 2^0, 2^50, 2^100). */
__extension__ typedef unsigned __int128 u128;
__extension__ typedef __int128 i128;
static void add_u128(sf_xsum *x, u128 m, bool negative)
{
    const u128 mask = ((u128)1 << 50) - 1;
    double d0 = (double)(uint64_t)(m & mask), d1 = (double)(uint64_t)((m >> 50) & mask),
           d2 = (double)(uint64_t)(m >> 100);
    if (negative) {
        d0 = -d0;
        d1 = -d1;
        d2 = -d2;
    }
    sf_xsum_reserve(x, 3);
    sf_xsum_add_reserved(x, d0);
    sf_xsum_add_reserved(x, ldexp(d1, 50));
    sf_xsum_add_reserved(x, ldexp(d2, 100));
}

/* Ungrouped integer (or timestamp) rows [begin, end): values below 2^53 in
 * magnitude, whose conversion to double is exact, are summed as integers
 * (x in 128 bits, x^2 < 2^106 in 128 unsigned bits, ROW_BLOCK of them at
 * most) and their extremes kept as integers; each block's sums then go into
 * the superaccumulators as three exact doubles each. The exact sums, and so
 * the state and its encoding, are those of adding every (double)x and its
 * square one by one; a value of 2^53 or more takes that path itself. */
static void process_range_int_each(group *g, const int64_t *i64, const uint8_t *valid, size_t begin, size_t end)
{
    const int64_t big = INT64_C(1) << 53;
    uint64_t count = g->count, nulls = g->nulls, lo = g->min_key, hi = g->max_key;
    for (size_t at = begin; at < end;) {
        size_t stop = end - at > ROW_BLOCK ? at + ROW_BLOCK : end;
        i128 sum = 0;
        u128 sq = 0;
        int64_t ilo = INT64_MAX, ihi = INT64_MIN;
        bool any = false;
        for (size_t r = at; r < stop; r++) {
            if (valid != NULL && valid[r] == 0) {
                nulls++;
                continue;
            }
            int64_t v = i64[r];
            count++;
            if ((uint64_t)v + (uint64_t)big < 2 * (uint64_t)big) { /* -2^53 <= v < 2^53 */
                sum += v;
                uint64_t a = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
                sq += (u128)a * a;
                ilo = v < ilo ? v : ilo;
                ihi = v > ihi ? v : ihi;
                any = true;
            } else {
                double x = (double)v;
                sf_xsum_add(&g->sum, x);
                add_square(&g->sq, x);
                uint64_t k = sf__order_key(x);
                lo = k < lo ? k : lo;
                hi = k > hi ? k : hi;
            }
        }
        if (any) {
            add_u128(&g->sum, sum < 0 ? (u128)0 - (u128)sum : (u128)sum, sum < 0);
            add_u128(&g->sq, sq, false);
            uint64_t klo = sf__order_key((double)ilo), khi = sf__order_key((double)ihi);
            lo = klo < lo ? klo : lo;
            hi = khi > hi ? khi : hi;
        }
        at = stop;
    }
    g->count = count;
    g->nulls = nulls;
    g->min_key = lo;
    g->max_key = hi;
}

static inline void keep_keys(group *g, uint64_t lo, uint64_t hi)
{
    g->min_key = lo < g->min_key ? lo : g->min_key;
    g->max_key = hi > g->max_key ? hi : g->max_key;
}

/* Asks for the next block's rows [at, at + SF__STATS_BLOCK) (inside
 * [.., end)) of values (elem bytes each) and mask to be fetched while this
 * block is summed: the kernels take 0.35-0.7 ns a value from the L2 cache
 * but wait for memory block by block otherwise, since the hardware
 * prefetchers stop at every 4 KiB page (bench/optimize: prefetch-h5-2x1). */
static inline void prefetch_next(const void *values, size_t elem, const uint8_t *valid, size_t at, size_t end)
{
    if (at >= end || !sf__stats_prefetch_enabled()) return;
    size_t n = end - at < SF__STATS_BLOCK ? end - at : SF__STATS_BLOCK;
    const char *v = (const char *)values + at * elem;
    for (size_t o = 0; o < n * elem; o += 64) __builtin_prefetch(v + o, 0, 3);
    if (valid != NULL)
        for (size_t o = 0; o < n; o += 64) __builtin_prefetch(valid + at + o, 0, 3);
}

/* Ungrouped float rows [begin, end): blocks the vector kernel takes add its
 * exact split sums (stats_kernels.h); the others take the per-value path.
 * Same state either way. */
static void process_range(group *g, const double *f64, const uint8_t *valid, size_t begin, size_t end)
{
    if (!sf__stats_simd_enabled()) {
        if (valid == NULL)
            process_range_each(g, f64, NULL, begin, end);
        else
            process_range_each(g, f64, valid, begin, end);
        return;
    }
    for (size_t at = begin; at < end;) {
        size_t n = end - at < SF__STATS_BLOCK ? end - at : SF__STATS_BLOCK;
        prefetch_next(f64, sizeof *f64, valid, at + n, end);
        sf__stats_fblock k;
        if (sf__stats_block_f64(f64 + at, valid ? valid + at : NULL, n, &k)) {
            g->count += k.count;
            g->nulls += k.nulls;
            keep_keys(g, k.min_key, k.max_key);
            sf_xsum_reserve(&g->sum, 2);
            sf_xsum_add_reserved(&g->sum, k.sum[0]);
            sf_xsum_add_reserved(&g->sum, k.sum[1]);
            sf_xsum_reserve(&g->sq, 4);
            for (int i = 0; i < 4; i++) sf_xsum_add_reserved(&g->sq, k.sq[i]);
        } else {
            process_range_each(g, f64, valid, at, at + n);
        }
        at += n;
    }
}

/* Ungrouped integer rows [begin, end), the same way. */
static void process_range_int(group *g, const int64_t *i64, const uint8_t *valid, size_t begin, size_t end)
{
    if (!sf__stats_simd_enabled()) {
        process_range_int_each(g, i64, valid, begin, end);
        return;
    }
    for (size_t at = begin; at < end;) {
        size_t n = end - at < SF__STATS_BLOCK ? end - at : SF__STATS_BLOCK;
        prefetch_next(i64, sizeof *i64, valid, at + n, end);
        sf__stats_iblock k;
        if (sf__stats_block_i64(i64 + at, valid ? valid + at : NULL, n, &k)) {
            g->count += k.count;
            g->nulls += k.nulls;
            if (k.count > 0) {
                keep_keys(g, sf__order_key((double)k.min), sf__order_key((double)k.max));
                add_u128(&g->sum, k.sum < 0 ? (u128)0 - (u128)k.sum : (u128)k.sum, k.sum < 0);
                add_u128(&g->sq, ((u128)k.sq_hi << 52) + ((u128)k.sq_mid << 27) + (u128)k.sq_lo, false);
            }
        } else {
            process_range_int_each(g, i64, valid, at, at + n);
        }
        at += n;
    }
}

static void process_all(group *g, const sf_column *c, size_t begin, size_t end)
{
    if (c->type == SF_FLOAT64) {
        process_range(g, c->f64, c->valid, begin, end);
    } else {
        process_range_int(g, c->i64, c->valid, begin, end);
    }
}

static inline void add_row(group *g, const sf_column *c, size_t r)
{
    if (sf_col_is_null(c, r))
        g->nulls++;
    else
        group_add(g, value_at(c, r));
}

static sf_status reserve_scratch(stats_state *s, size_t ngroups, size_t nvals)
{
    if (ngroups > s->cnt_cap) {
        size_t cap = ngroups < 64 ? 64 : ngroups * 2;
        uint32_t *c = realloc(s->cnt, cap * sizeof *c);
        SF_CHECK(c != NULL, SF_ERR_NOMEM, "stats: out of memory (%zu group counters)", cap);
        s->cnt = c;
        s->cnt_cap = cap;
    }
    if (nvals > s->vals_cap) {
        size_t cap = nvals < 1024 ? 1024 : nvals;
        void *v = realloc(s->vals, cap * 8);
        SF_CHECK(v != NULL, SF_ERR_NOMEM, "stats: out of memory (%zu values)", cap);
        s->vals = v;
        s->vals_cap = cap;
    }
    return SF_OK;
}

/* Below this many rows per group on average a process() call adds value by
 * value; from it on, the rows are first sorted by group (a counting sort)
 * and each group's values go through the block kernels. */
#define BLOCK_ROWS_PER_GROUP 16

/* Grouped rows by blocks (gi NULL: every row in group 0, as ungrouped
 * selections are): nulls counted, the other values sorted by group
 * into s->vals, then each group's run added as ungrouped rows are (the
 * kernels where they take a block, value by value where not). The sums are
 * exact, so the order of a group's values does not matter: the same state
 * as value by value. */
static inline uint32_t group_at(const uint32_t *gi, size_t i) { return gi ? gi[i] : 0; }

static sf_status process_grouped_blocks(stats_state *s, const sf_column *c, const sf_rows *rows,
                                       const uint32_t *gi)
{
    const uint32_t ng = s->grp.n;
    SF_CALL(reserve_scratch(s, (size_t)ng + 1, rows->n));
    uint32_t *cnt = s->cnt;
    memset(cnt, 0, ((size_t)ng + 1) * sizeof *cnt);
    group *g = s->g;
    const uint32_t *sel = rows->sel;
    const size_t begin = rows->begin, n = rows->n;
    const uint8_t *valid = c->valid;
    for (size_t i = 0; i < n; i++) {
        size_t r = sel ? sel[i] : begin + i;
        if (valid != NULL && valid[r] == 0)
            g[group_at(gi, i)].nulls++;
        else
            cnt[group_at(gi, i) + 1]++;
    }
    for (uint32_t k = 0; k < ng; k++) cnt[k + 1] += cnt[k];
    /* cnt[k]: where group k's values start; after the scatter, where they end. */
    if (c->type == SF_FLOAT64) {
        double *v = s->vals;
        for (size_t i = 0; i < n; i++) {
            size_t r = sel ? sel[i] : begin + i;
            if (valid == NULL || valid[r] != 0) v[cnt[group_at(gi, i)]++] = c->f64[r];
        }
        for (uint32_t k = 0, at = 0; k < ng; at = cnt[k++])
            if (cnt[k] > at) process_range(&g[k], v, NULL, at, cnt[k]);
    } else {
        int64_t *v = s->vals;
        for (size_t i = 0; i < n; i++) {
            size_t r = sel ? sel[i] : begin + i;
            if (valid == NULL || valid[r] != 0) v[cnt[group_at(gi, i)]++] = c->i64[r];
        }
        for (uint32_t k = 0, at = 0; k < ng; at = cnt[k++])
            if (cnt[k] > at) process_range_int(&g[k], v, NULL, at, cnt[k]);
    }
    return SF_OK;
}

static sf_status process_grouped(stats_state *s, const sf_batch *b, const sf_column *c,
                                const sf_rows *rows)
{
    SF_CALL(sf__groups_batch(&s->grp, b));
    const uint32_t *gi;
    bool created;
    SF_CALL(sf__groups_rows(&s->grp, b, rows, &gi, &created));
    if (created) SF_CALL(grow_groups(s));
    if (sf__stats_simd_enabled() && rows->n >= (size_t)BLOCK_ROWS_PER_GROUP * s->grp.n)
        return process_grouped_blocks(s, c, rows, gi);
    group *g = s->g;
    const uint32_t *sel = rows->sel;
    const size_t begin = rows->begin;
    const uint8_t *valid = c->valid;
    if (c->type == SF_FLOAT64) {
        const double *f64 = c->f64;
        for (size_t i = 0; i < rows->n; i++) {
            size_t r = sel ? sel[i] : begin + i;
            if (valid != NULL && valid[r] == 0)
                g[gi[i]].nulls++;
            else
                group_add(&g[gi[i]], f64[r]);
        }
    } else {
        const int64_t *i64 = c->i64;
        for (size_t i = 0; i < rows->n; i++) {
            size_t r = sel ? sel[i] : begin + i;
            if (valid != NULL && valid[r] == 0)
                g[gi[i]].nulls++;
            else
                group_add(&g[gi[i]], (double)i64[r]);
        }
    }
    return SF_OK;
}

static sf_status stats_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    stats_state *s = state;
    const sf_agent_config *cfg = s->cfg;
    SF_CHECK(rows->sel != NULL || rows->begin + rows->n <= b->nrows, SF_ERR_INTERNAL,
             "stats: rows %zu..%zu of a %zu-row batch", rows->begin, rows->begin + rows->n, b->nrows);
    SF_CHECK(cfg->col < b->ncols && b->cols[cfg->col].loaded && is_numeric(b->cols[cfg->col].type),
             SF_ERR_INTERNAL, "stats: column '%s' is not loaded as a number", cfg->column);
    const sf_column *c = &b->cols[cfg->col];
    if (s->nby == 0 && rows->sel == NULL) {
        process_all(&s->g[0], c, rows->begin, rows->begin + rows->n);
        return SF_OK;
    }
    if (s->nby == 0) {
        /* The selected values gathered (one group), then by blocks. */
        if (sf__stats_simd_enabled() && rows->n >= 64) return process_grouped_blocks(s, c, rows, NULL);
        for (size_t i = 0; i < rows->n; i++) add_row(&s->g[0], c, rows->sel[i]);
        return SF_OK;
    }
    return process_grouped(s, b, c, rows);
}

static sf_status stats_merge(void *into, const void *from)
{
    stats_state *a = into;
    const stats_state *f = from;
    SF_CHECK(a->nby == f->nby, SF_ERR_INTERNAL, "stats: merging states of different shapes");
    uint32_t *map;
    bool created;
    SF_CALL(sf__groups_map(&a->grp, &f->grp, f->grp.n, &map, &created));
    sf_status rc = created ? grow_groups(a) : SF_OK;
    for (uint32_t i = 0; rc == SF_OK && i < f->grp.n; i++) group_merge(&a->g[map[i]], &f->g[i]);
    free(map);
    return rc;
}

static sf_status stats_encode(const void *state, sf_buf *out)
{
    const stats_state *s = state;
    uint32_t *order = NULL;
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sf__groups_sorted(&s->grp, &order), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, STATS_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->nby), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->grp.n), done);
    for (uint32_t i = 0; i < s->grp.n; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&s->grp, order[i], &len);
        const group *g = &s->g[order[i]];
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->count), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->nulls), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->min_key), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->max_key), done);
        SF_CALL_GOTO(sf_xsum_encode(&g->sum, out), done);
        SF_CALL_GOTO(sf_xsum_encode(&g->sq, out), done);
    }
done:
    free(order);
    return rc;
}

static sf_status stats_decode(void *state, const void *bytes, size_t n)
{
    stats_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, nby;
    uint64_t ng;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == STATS_FORMAT, SF_ERR_PARSE, "stats state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &nby));
    SF_CHECK(nby == s->nby, SF_ERR_PARSE, "stats state: %u key columns, expected %d", nby, s->nby);
    SF_CALL(sf_rd_u64(&r, &ng));
    SF_CHECK(s->nby != 0 || ng == 1, SF_ERR_PARSE, "stats state: %llu groups without by:",
             (unsigned long long)ng);
    /* Every group takes at least 4 + 32 + 2 * 3 bytes. */
    SF_CHECK(ng <= (n - r.off) / 42, SF_ERR_PARSE, "stats state: %llu groups in %zu bytes",
             (unsigned long long)ng, n);
    SF_CALL(sf__groups_clear(&s->grp));
    /* Group slots are reused by index after the clear: empty them all, or
     * a later merge would add into what an earlier decode left there. */
    for (uint32_t i = 0; i < s->gcap; i++) group_init(&s->g[i]);
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < ng; i++) {
        uint32_t gi;
        SF_CALL(sf__groups_decode_key(&s->grp, &r, &prev, &prev_len, &gi));
        SF_CALL(grow_groups(s));
        group *g = &s->g[gi];
        group_init(g);
        SF_CALL(sf_rd_u64(&r, &g->count));
        SF_CALL(sf_rd_u64(&r, &g->nulls));
        SF_CALL(sf_rd_u64(&r, &g->min_key));
        SF_CALL(sf_rd_u64(&r, &g->max_key));
        SF_CALL(sf_xsum_decode(&g->sum, &r));
        SF_CALL(sf_xsum_decode(&g->sq, &r));
    }
    SF_CHECK(r.off == n, SF_ERR_PARSE, "stats state: %zu trailing bytes", n - r.off);
    return SF_OK;
}

/* ---- report ---------------------------------------------------------- */

/* Double-double arithmetic (Dekker, Knuth; fma-based two-product). */
typedef struct dd {
    double hi, lo;
} dd;

static inline dd quick_two_sum(double a, double b)
{
    double s = a + b;
    return (dd){s, b - (s - a)};
}

static inline dd two_sum(double a, double b)
{
    double s = a + b;
    double bb = s - a;
    return (dd){s, (a - (s - bb)) + (b - bb)};
}

static dd dd_div(dd a, double b)
{
    double q1 = a.hi / b;
    double p = q1 * b;
    double pe = fma(q1, b, -p);
    dd r = two_sum(a.hi, -p);
    r.lo -= pe;
    r.lo += a.lo;
    double q2 = (r.hi + r.lo) / b;
    return quick_two_sum(q1, q2);
}

typedef struct moments {
    double sum, mean, variance, stddev, min, max;
} moments;

static moments compute(const group *g)
{
    moments m;
    dd S;
    sf_xsum_round2(&g->sum, &S.hi, &S.lo);
    double n = (double)g->count;
    m.sum = S.hi;
    m.mean = m.variance = m.stddev = m.min = m.max = NAN;
    if (g->count == 0) return m;
    m.mean = isfinite(S.hi) ? dd_div(S, n).hi : S.hi;
    if (g->min_key != MIN_NONE) m.min = sf__from_order_key(g->min_key);
    if (g->max_key != MAX_NONE) m.max = sf__from_order_key(g->max_key);
    if (g->count >= 2 && isfinite(S.hi)) {
        /* Exact numerator n Q - S^2 in integers: no cancellation, no overflow of S^2. */
        double var = sf_xsum_variance(&g->sum, &g->sq, g->count);
        m.variance = var;
        m.stddev = sqrt(var);
    }
    return m;
}

static void write_group(sf_json *j, const group *g)
{
    moments m = compute(g);
    sf_json_obj_begin(j);
    sf_json_key(j, "count");
    sf_json_uint(j, g->count);
    sf_json_key(j, "nulls");
    sf_json_uint(j, g->nulls);
    sf_json_key(j, "sum");
    sf_json_num(j, m.sum);
    sf_json_key(j, "mean");
    sf_json_num(j, m.mean);
    sf_json_key(j, "variance");
    sf_json_num(j, m.variance);
    sf_json_key(j, "stddev");
    sf_json_num(j, m.stddev);
    sf_json_key(j, "min");
    sf_json_num(j, m.min);
    sf_json_key(j, "max");
    sf_json_num(j, m.max);
    sf_json_obj_end(j);
}

static int text_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

static sf_status stats_report(const void *state, sf_json *j)
{
    const stats_state *s = state;
    if (s->nby == 0) {
        write_group(j, &s->g[0]);
        return j->rc;
    }
    sf_status rc = SF_OK;
    sf_buf text;
    sf_buf_init(&text);
    uint32_t *order = NULL;
    size_t *toff = NULL, *tlen = NULL;
    SF_CALL_GOTO(sf__groups_text_order(&s->grp, &text, &order, &toff, &tlen), done);
    sf_json_obj_begin(j);
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    uint32_t ng = s->grp.n;
    for (uint32_t i = 0; i < ng;) {
        /* Keys print uniquely (escaped strings, \N for null, round-trip
         * numbers); should two ever print alike they are reported as one. */
        const uint8_t *ti = text.data + toff[order[i]];
        size_t li = tlen[order[i]];
        uint32_t e = i + 1;
        while (e < ng && text_cmp(ti, li, text.data + toff[order[e]], tlen[order[e]]) == 0) e++;
        group g = s->g[order[i]];
        for (uint32_t k = i + 1; k < e; k++) group_merge(&g, &s->g[order[k]]);
        sf_json_keyn(j, (const char *)ti, li);
        write_group(j, &g);
        i = e;
    }
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(order);
    free(toff);
    free(tlen);
    sf_buf_fini(&text);
    return rc;
}

/* Statistics of the whole state (key NULL: all groups pooled) or of one group. */
static sf_status stats_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                            double *out)
{
    const stats_state *s = state;
    group g;
    if (key == NULL) {
        group_init(&g);
        for (uint32_t i = 0; i < s->grp.n; i++) group_merge(&g, &s->g[i]);
    } else {
        uint32_t gi = sf__groups_lookup(&s->grp, key, keylen);
        SF_CHECK(gi != SF__NO_GROUP, SF_ERR_ARG, "stats '%s': no such group", cfg_id(s->cfg));
        g = s->g[gi];
    }
    moments m = compute(&g);
    if (strcmp(name, "count") == 0) *out = (double)g.count;
    else if (strcmp(name, "rows") == 0) *out = (double)(g.count + g.nulls);
    else if (strcmp(name, "mean") == 0) *out = m.mean;
    else if (strcmp(name, "sd") == 0) *out = m.stddev;
    else if (strcmp(name, "variance") == 0) *out = m.variance;
    else if (strcmp(name, "min") == 0) *out = m.min;
    else if (strcmp(name, "max") == 0) *out = m.max;
    else if (strcmp(name, "sum") == 0) *out = m.sum;
    else
        return sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "stats '%s' has no statistic '%s'",
                            cfg_id(s->cfg), name);
    return SF_OK;
}

const sf_agent_ops sf__agent_stats = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "stats",
    .aspect = "performance",
    .state_size = sizeof(stats_state),
    .check = stats_check,
    .init = stats_init,
    .process = stats_process,
    .merge = stats_merge,
    .encode = stats_encode,
    .decode = stats_decode,
    .report = stats_report,
    .destroy = stats_destroy,
    .stat = stats_stat,
};
