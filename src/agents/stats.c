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

#define STATS_FORMAT 1
#define MIN_NONE UINT64_MAX /* never the order key of a non-NaN double */
#define MAX_NONE 0
#define NO_GROUP UINT32_MAX

typedef struct group {
    uint64_t count;   /* non-null values, NaN and infinities included */
    uint64_t nulls;
    uint64_t min_key; /* order keys (see order_key) of the extremes */
    uint64_t max_key;
    sf_xsum sum;      /* exact sum of x */
    sf_xsum sq;       /* exact sum of x^2 */
} group;

typedef struct group_key {
    size_t off;       /* into keys */
    uint32_t len;
    uint64_t hash;
} group_key;

typedef struct code_cache {
    uint32_t gen;
    uint32_t grp;
} code_cache;

typedef struct stats_state {
    const sf_agent_config *cfg;
    int nby;
    group *g;
    group_key *gk;
    uint32_t ng, gcap;
    uint8_t *keys;       /* key bytes of every group */
    size_t keys_len, keys_cap;
    uint32_t *slots;     /* group + 1, 0 = empty */
    uint32_t nslots;     /* power of two */
    uint8_t *scratch;    /* key of the current row */
    size_t scratch_cap;
    code_cache *cache;   /* by dictionary code, single string key only */
    size_t cache_cap;
    uint32_t gen;
} stats_state;

/* ---- values ---------------------------------------------------------- */

/* Maps a double to an unsigned key whose order is the numeric order, with
 * -0.0 < +0.0 (the IEEE sign-magnitude trick). */
static inline uint64_t order_key(double x)
{
    uint64_t b;
    memcpy(&b, &x, sizeof b);
    return (b >> 63) ? ~b : b | 0x8000000000000000ull;
}

static inline double from_order_key(uint64_t k)
{
    uint64_t b = (k >> 63) ? k & 0x7FFFFFFFFFFFFFFFull : ~k;
    double x;
    memcpy(&x, &b, sizeof x);
    return x;
}

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
        uint64_t k = order_key(x);
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

static uint64_t key_hash(const uint8_t *k, size_t n)
{
    return XXH3_64bits(k, n);
}

static sf_status rehash(stats_state *s, uint32_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    SF_CHECK(slots != NULL, SF_ERR_NOMEM, "stats: out of memory for %u hash slots", nslots);
    uint32_t mask = nslots - 1;
    for (uint32_t i = 0; i < s->ng; i++) {
        uint32_t h = (uint32_t)s->gk[i].hash & mask;
        while (slots[h] != 0) h = (h + 1) & mask;
        slots[h] = i + 1;
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = nslots;
    return SF_OK;
}

static sf_status new_group(stats_state *s, const uint8_t *key, size_t len, uint64_t hash,
                           uint32_t *out)
{
    SF_CHECK(s->ng < NO_GROUP - 1 && len <= UINT32_MAX, SF_ERR_NOMEM, "stats: too many groups");
    if (s->ng == s->gcap) {
        uint32_t cap = s->gcap ? s->gcap * 2 : 16;
        group *g = realloc(s->g, (size_t)cap * sizeof *g);
        SF_CHECK(g != NULL, SF_ERR_NOMEM, "stats: out of memory for %u groups", cap);
        s->g = g;
        group_key *gk = realloc(s->gk, (size_t)cap * sizeof *gk);
        SF_CHECK(gk != NULL, SF_ERR_NOMEM, "stats: out of memory for %u groups", cap);
        s->gk = gk;
        s->gcap = cap;
    }
    if (s->keys == NULL || s->keys_cap - s->keys_len < len) {
        size_t cap = s->keys_cap ? s->keys_cap : 256;
        while (cap - s->keys_len < len) cap *= 2;
        uint8_t *k = realloc(s->keys, cap);
        SF_CHECK(k != NULL, SF_ERR_NOMEM, "stats: out of memory for %zu bytes of keys", cap);
        s->keys = k;
        s->keys_cap = cap;
    }
    if ((size_t)(s->ng + 1) * 2 > s->nslots) SF_CALL(rehash(s, s->nslots ? s->nslots * 2 : 32));
    uint32_t i = s->ng++;
    if (len != 0) memcpy(s->keys + s->keys_len, key, len);
    s->gk[i].off = s->keys_len;
    s->gk[i].len = (uint32_t)len;
    s->gk[i].hash = hash;
    s->keys_len += len;
    group_init(&s->g[i]);
    uint32_t mask = s->nslots - 1;
    uint32_t h = (uint32_t)hash & mask;
    while (s->slots[h] != 0) h = (h + 1) & mask;
    s->slots[h] = i + 1;
    *out = i;
    return SF_OK;
}

/* Slot of the group with this key; created (empty) if new. *created may be
 * NULL. */
static sf_status find_group(stats_state *s, const uint8_t *key, size_t len, uint32_t *out,
                            bool *created)
{
    uint64_t hash = key_hash(key, len);
    if (created) *created = false;
    if (s->nslots != 0) {
        uint32_t mask = s->nslots - 1;
        for (uint32_t h = (uint32_t)hash & mask; s->slots[h] != 0; h = (h + 1) & mask) {
            const group_key *k = &s->gk[s->slots[h] - 1];
            if (k->hash == hash && k->len == len &&
                (len == 0 || memcmp(s->keys + k->off, key, len) == 0)) {
                *out = s->slots[h] - 1;
                return SF_OK;
            }
        }
    }
    if (created) *created = true;
    return new_group(s, key, len, hash, out);
}

static sf_status reserve_scratch(stats_state *s, size_t need)
{
    if (need <= s->scratch_cap) return SF_OK;
    size_t cap = s->scratch_cap ? s->scratch_cap : 64;
    while (cap < need) cap *= 2;
    uint8_t *p = realloc(s->scratch, cap);
    SF_CHECK(p != NULL, SF_ERR_NOMEM, "stats: out of memory for a %zu-byte key", cap);
    s->scratch = p;
    s->scratch_cap = cap;
    return SF_OK;
}

static inline uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    sf_store_u64(p, v);
    return p + 8;
}

/* Writes the canonical key of row r into s->scratch. */
static sf_status row_key(stats_state *s, const sf_batch *b, size_t r, size_t *len)
{
    size_t need = 0;
    for (int i = 0; i < s->nby; i++) {
        const sf_column *c = &b->cols[s->cfg->by_col[i]];
        need += 9;
        if (c->type == SF_STRING && !sf_col_is_null(c, r))
            need += (size_t)(c->dict.off[c->code[r] + 1] - c->dict.off[c->code[r]]);
    }
    SF_CALL(reserve_scratch(s, need));
    uint8_t *p = s->scratch;
    for (int i = 0; i < s->nby; i++) {
        const sf_column *c = &b->cols[s->cfg->by_col[i]];
        if (sf_col_is_null(c, r)) {
            *p++ = 0;
            continue;
        }
        *p++ = 1;
        if (c->type == SF_STRING) {
            size_t n;
            const char *str = sf_dict_str(&c->dict, c->code[r], &n);
            uint32_t n32 = (uint32_t)n;
            for (int k = 0; k < 4; k++) *p++ = (uint8_t)(n32 >> (8 * k));
            if (n != 0) memcpy(p, str, n); /* an empty dictionary may have no bytes */
            p += n;
        } else if (c->type == SF_FLOAT64) {
            double v = c->f64[r];
            uint64_t bits;
            if (isnan(v)) v = NAN; /* one key for every NaN payload */
            if (v == 0.0) v = 0.0; /* -0 and +0 are one key, as in sharding */
            memcpy(&bits, &v, sizeof bits);
            p = put_u64(p, bits);
        } else {
            p = put_u64(p, (uint64_t)c->i64[r]);
        }
    }
    *len = (size_t)(p - s->scratch);
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
    static const char *const allowed[] = {"agent", "id", "column", "by"};
    const sf_cfg_node *node = cfg->node;
    if (node != NULL && node->kind == SF_NODE_MAP) {
        for (size_t i = 0; i < node->n; i++) {
            bool ok = false;
            for (size_t a = 0; a < sizeof allowed / sizeof allowed[0]; a++)
                if (strcmp(node->keys[i], allowed[a]) == 0) ok = true;
            int line = node->key_lines ? node->key_lines[i] : cfg->line;
            /* A key added with --set has no line in the file. */
            SF_CHECK(ok || line > 0, SF_ERR_CONFIG,
                     "--set %s: agent '%s': unknown option '%s' (stats accepts agent, id, column, by)",
                     node->keys[i], cfg_id(cfg), node->keys[i]);
            SF_CHECK(ok, SF_ERR_CONFIG,
                     "%s:%d: agent '%s': unknown option '%s' (stats accepts agent, id, column, by)",
                     cfg_file(cfg), line, cfg_id(cfg), node->keys[i]);
        }
    }
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
    free(s->g);
    free(s->gk);
    free(s->keys);
    free(s->slots);
    free(s->scratch);
    free(s->cache);
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
    if (s->nby == 0) {
        /* Ungrouped: one group with the empty key, always present. */
        static const uint8_t empty_key[1] = {0};
        uint32_t g;
        sf_status rc = find_group(s, empty_key, 0, &g, NULL);
        if (rc != SF_OK) {
            stats_destroy(s);
            return rc;
        }
    }
    return SF_OK;
}

/* Ungrouped rows [begin, end), in blocks whose adds are reserved up front
 * so that the per-value path has no carry check. The count and extremes stay
 * in locals. Inlined with constant arguments, so each column layout gets its
 * own loop. */
#define ROW_BLOCK 512 /* 2 * ROW_BLOCK <= SF_XSUM_PENDING_MAX */

static inline void process_range(group *g, const double *f64, const int64_t *i64,
                                 const uint8_t *valid, size_t begin, size_t end)
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
            double x = f64 != NULL ? f64[r] : (double)i64[r];
            count++;
            sf_xsum_add_reserved(&g->sum, x);
            add_square_reserved(&g->sq, x);
            if (!isnan(x)) {
                uint64_t k = order_key(x);
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

static void process_all(group *g, const sf_column *c, size_t begin, size_t end)
{
    if (c->type == SF_FLOAT64) {
        if (c->valid == NULL)
            process_range(g, c->f64, NULL, NULL, begin, end);
        else
            process_range(g, c->f64, NULL, c->valid, begin, end);
    } else {
        process_range(g, NULL, c->i64, c->valid, begin, end);
    }
}

static inline void add_row(group *g, const sf_column *c, size_t r)
{
    if (sf_col_is_null(c, r))
        g->nulls++;
    else
        group_add(g, value_at(c, r));
}

/* Grouped by one string column: dictionary code -> group cache. */
static sf_status process_by_code(stats_state *s, const sf_batch *b, const sf_column *c,
                                 const sf_column *kc, size_t begin, size_t end)
{
    uint32_t ncodes = kc->dict.n;
    if (s->cache_cap < ncodes) {
        size_t cap = s->cache_cap ? s->cache_cap : 64;
        while (cap < ncodes) cap *= 2;
        code_cache *cc = realloc(s->cache, cap * sizeof *cc);
        SF_CHECK(cc != NULL, SF_ERR_NOMEM, "stats: out of memory for a %zu-entry key cache", cap);
        memset(cc + s->cache_cap, 0, (cap - s->cache_cap) * sizeof *cc);
        s->cache = cc;
        s->cache_cap = cap;
    }
    if (++s->gen == 0) {
        memset(s->cache, 0, s->cache_cap * sizeof *s->cache);
        s->gen = 1;
    }
    uint32_t gen = s->gen;
    uint32_t null_grp = NO_GROUP;
    for (size_t r = begin; r < end; r++) {
        uint32_t gi;
        if (sf_col_is_null(kc, r)) {
            if (null_grp == NO_GROUP) {
                size_t len;
                SF_CALL(row_key(s, b, r, &len));
                SF_CALL(find_group(s, s->scratch, len, &null_grp, NULL));
            }
            gi = null_grp;
        } else {
            uint32_t code = kc->code[r];
            SF_CHECK(code < ncodes, SF_ERR_INTERNAL, "stats: dictionary code %u of %u", code, ncodes);
            code_cache *e = &s->cache[code];
            if (e->gen == gen) {
                gi = e->grp;
            } else {
                size_t len;
                SF_CALL(row_key(s, b, r, &len));
                SF_CALL(find_group(s, s->scratch, len, &gi, NULL));
                e->gen = gen;
                e->grp = gi;
            }
        }
        add_row(&s->g[gi], c, r);
    }
    return SF_OK;
}

static sf_status process_by_key(stats_state *s, const sf_batch *b, const sf_column *c,
                                size_t begin, size_t end)
{
    for (size_t r = begin; r < end; r++) {
        size_t len;
        uint32_t gi;
        SF_CALL(row_key(s, b, r, &len));
        SF_CALL(find_group(s, s->scratch, len, &gi, NULL));
        add_row(&s->g[gi], c, r);
    }
    return SF_OK;
}

static sf_status stats_process(void *state, const sf_batch *b, size_t begin, size_t end)
{
    stats_state *s = state;
    const sf_agent_config *cfg = s->cfg;
    SF_CHECK(begin <= end && end <= b->nrows, SF_ERR_INTERNAL, "stats: rows %zu..%zu of a %zu-row batch",
             begin, end, b->nrows);
    SF_CHECK(cfg->col < b->ncols && b->cols[cfg->col].loaded && is_numeric(b->cols[cfg->col].type),
             SF_ERR_INTERNAL, "stats: column '%s' is not loaded as a number", cfg->column);
    const sf_column *c = &b->cols[cfg->col];
    if (s->nby == 0) {
        process_all(&s->g[0], c, begin, end);
        return SF_OK;
    }
    for (int i = 0; i < s->nby; i++)
        SF_CHECK(cfg->by_col[i] < b->ncols && b->cols[cfg->by_col[i]].loaded, SF_ERR_INTERNAL,
                 "stats: key column %d is not loaded", cfg->by_col[i]);
    const sf_column *k0 = &b->cols[cfg->by_col[0]];
    if (s->nby == 1 && k0->type == SF_STRING) return process_by_code(s, b, c, k0, begin, end);
    return process_by_key(s, b, c, begin, end);
}

static sf_status stats_merge(void *into, const void *from)
{
    stats_state *a = into;
    const stats_state *f = from;
    SF_CHECK(a->nby == f->nby, SF_ERR_INTERNAL, "stats: merging states of different shapes");
    for (uint32_t i = 0; i < f->ng; i++) {
        uint32_t gi;
        SF_CALL(find_group(a, f->keys + f->gk[i].off, f->gk[i].len, &gi, NULL));
        group_merge(&a->g[gi], &f->g[i]);
    }
    return SF_OK;
}

/* Groups in byte-wise ascending order of some bytes (keys or texts). */
typedef struct sorted_ref {
    const uint8_t *p;
    size_t len;
    uint32_t idx;
} sorted_ref;

static int bytes_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

static int ref_cmp(const void *x, const void *y)
{
    const sorted_ref *a = x, *b = y;
    return bytes_cmp(a->p, a->len, b->p, b->len);
}

static sf_status sorted_by_key(const stats_state *s, sorted_ref **out)
{
    *out = NULL;
    if (s->ng == 0) return SF_OK;
    sorted_ref *refs = malloc((size_t)s->ng * sizeof *refs);
    SF_CHECK(refs != NULL, SF_ERR_NOMEM, "stats: out of memory sorting %u groups", s->ng);
    for (uint32_t i = 0; i < s->ng; i++) {
        refs[i].p = s->keys + s->gk[i].off;
        refs[i].len = s->gk[i].len;
        refs[i].idx = i;
    }
    qsort(refs, s->ng, sizeof *refs, ref_cmp);
    *out = refs;
    return SF_OK;
}

static sf_status stats_encode(const void *state, sf_buf *out)
{
    const stats_state *s = state;
    sorted_ref *refs = NULL;
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sorted_by_key(s, &refs), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, STATS_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->nby), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->ng), done);
    for (uint32_t i = 0; i < s->ng; i++) {
        const group *g = &s->g[refs[i].idx];
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)refs[i].p, refs[i].len), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->count), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->nulls), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->min_key), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->max_key), done);
        SF_CALL_GOTO(sf_xsum_encode(&g->sum, out), done);
        SF_CALL_GOTO(sf_xsum_encode(&g->sq, out), done);
    }
done:
    free(refs);
    return rc;
}

static sf_type by_type(const stats_state *s, int i)
{
    return s->cfg->schema->fields[s->cfg->by_col[i]].type;
}

/* Checks that key bytes are a well-formed key for the by columns. */
static bool key_valid(const stats_state *s, const uint8_t *k, size_t n)
{
    size_t off = 0;
    for (int i = 0; i < s->nby; i++) {
        if (off >= n) return false;
        uint8_t tag = k[off++];
        if (tag == 0) continue;
        if (tag != 1) return false;
        if (by_type(s, i) == SF_STRING) {
            if (n - off < 4) return false;
            uint32_t len = (uint32_t)k[off] | (uint32_t)k[off + 1] << 8 |
                           (uint32_t)k[off + 2] << 16 | (uint32_t)k[off + 3] << 24;
            off += 4;
            if (n - off < len) return false;
            off += len;
        } else {
            if (n - off < 8) return false;
            off += 8;
        }
    }
    return off == n;
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

    s->ng = 0;
    s->keys_len = 0;
    if (s->slots) memset(s->slots, 0, (size_t)s->nslots * sizeof *s->slots);
    const char *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < ng; i++) {
        const char *key;
        size_t klen;
        SF_CALL(sf_rd_str(&r, &key, &klen));
        SF_CHECK(key_valid(s, (const uint8_t *)key, klen), SF_ERR_PARSE,
                 "stats state: malformed key of group %llu", (unsigned long long)i);
        SF_CHECK(prev == NULL || bytes_cmp((const uint8_t *)prev, prev_len, (const uint8_t *)key,
                                           klen) < 0,
                 SF_ERR_PARSE, "stats state: groups out of order");
        prev = key;
        prev_len = klen;
        uint32_t gi;
        SF_CALL(find_group(s, (const uint8_t *)key, klen, &gi, NULL));
        group *g = &s->g[gi];
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
    if (g->min_key != MIN_NONE) m.min = from_order_key(g->min_key);
    if (g->max_key != MAX_NONE) m.max = from_order_key(g->max_key);
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

/* The text of a key: its parts as sf_col_format writes them, nulls empty,
 * joined with '|'. */
static sf_status key_text(const stats_state *s, const uint8_t *k, size_t n, sf_buf *out)
{
    size_t off = 0;
    for (int i = 0; i < s->nby; i++) {
        if (i > 0) SF_CALL(sf_buf_put_u8(out, '|'));
        if (off >= n || k[off++] == 0) {
            /* A null key part is \N, which no value prints as (see below). */
            SF_CALL(sf_buf_append(out, "\\N", 2));
            continue;
        }
        sf_type t = by_type(s, i);
        if (t == SF_STRING) {
            uint32_t len = (uint32_t)k[off] | (uint32_t)k[off + 1] << 8 |
                           (uint32_t)k[off + 2] << 16 | (uint32_t)k[off + 3] << 24;
            off += 4;
            /* Escape the separator and the escape character, so that
             * different keys never print alike. */
            for (uint32_t b = 0; b < len; b++) {
                uint8_t ch = k[off + b];
                if (ch == '|' || ch == '\\') SF_CALL(sf_buf_put_u8(out, '\\'));
                SF_CALL(sf_buf_put_u8(out, ch));
            }
            off += len;
            continue;
        }
        /* A one-row column, so that numbers print exactly as elsewhere. */
        uint64_t bits = sf_load_u64(k + off);
        off += 8;
        int64_t iv = (int64_t)bits;
        double dv;
        memcpy(&dv, &bits, sizeof dv);
        sf_column c;
        memset(&c, 0, sizeof c);
        c.type = t;
        c.loaded = true;
        c.i64 = &iv;
        c.f64 = &dv;
        char text[64];
        size_t len = sf_col_format(&c, 0, text, sizeof text);
        SF_CALL(sf_buf_append(out, text, len));
    }
    return SF_OK;
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
    size_t *off = NULL;
    sorted_ref *refs = NULL;
    /* Never a NULL base, even when every key prints empty. */
    SF_CALL_GOTO(sf_buf_reserve(&text, 1), done);
    if (s->ng != 0) {
        off = malloc((size_t)s->ng * sizeof *off);
        refs = malloc((size_t)s->ng * sizeof *refs);
        SF_CHECK_GOTO(off != NULL && refs != NULL, SF_ERR_NOMEM, done,
                      "stats: out of memory reporting %u groups", s->ng);
    }
    for (uint32_t i = 0; i < s->ng; i++) {
        off[i] = text.len;
        SF_CALL_GOTO(key_text(s, s->keys + s->gk[i].off, s->gk[i].len, &text), done);
    }
    for (uint32_t i = 0; i < s->ng; i++) {
        refs[i].p = text.data + off[i];
        refs[i].len = (i + 1 < s->ng ? off[i + 1] : text.len) - off[i];
        refs[i].idx = i;
    }
    if (s->ng != 0) qsort(refs, s->ng, sizeof *refs, ref_cmp);

    sf_json_obj_begin(j);
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    for (uint32_t i = 0; i < s->ng;) {
        /* Keys print uniquely (escaped strings, \N for null, round-trip
         * numbers); should two ever print alike they are reported as one. */
        uint32_t e = i + 1;
        while (e < s->ng && ref_cmp(&refs[i], &refs[e]) == 0) e++;
        group g = s->g[refs[i].idx];
        for (uint32_t k = i + 1; k < e; k++) group_merge(&g, &s->g[refs[k].idx]);
        sf_json_keyn(j, (const char *)refs[i].p, refs[i].len);
        write_group(j, &g);
        i = e;
    }
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(off);
    free(refs);
    sf_buf_fini(&text);
    return rc;
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
};
