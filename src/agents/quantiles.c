/* The `quantiles` agent: quantiles of a numeric column with a relative value
 * accuracy alpha, optionally grouped by key columns, as a DDSketch.
 *
 * A finite value x with |x| >= 1e-300 falls in bin i = ceil(log_gamma |x|),
 * gamma = (1 + alpha) / (1 - alpha), of the store of its sign (negative
 * values in a mirrored store); smaller magnitudes (zero included) are counted
 * in a zero counter, and NaN and the infinities in "nonfinite" (they have no
 * place in the order the quantiles are taken over). Bins hold counts, so
 * merging adds counts: exactly associative and commutative.
 *
 * There is no collapsing of the lowest bins when a store grows, unlike the
 * original DDSketch: which bins a bounded store collapses depends on the
 * order in which values arrive and states meet, and the result would then
 * depend on the split of rows into shards. The price is memory: a store
 * spans the bins between its smallest and largest magnitude, at most
 * ln(max/min) / ln(gamma) + 1 of them (690 bins for values 1 to 1e6 at the
 * default accuracy 0.01); the encoding lists only the bins in use.
 *
 * Quantile definition: for the n finite values sorted x_(0) <= ... <=
 * x_(n-1), the q-quantile is x_(k) with k = floor(q * (n - 1)) (computed in
 * double precision). The estimate is the representative 2 gamma^i / (gamma
 * + 1) of the bin i that holds the element of rank k (its sign mirrored for
 * the negative store, 0 for the zero counter), clamped into the exact
 * [min, max] of the finite values. Every x in bin i lies in (gamma^(i-1),
 * gamma^i], so |estimate - x_(k)| <= alpha |x_(k)| up to the rounding of
 * the logarithm (below 1e-12 relative); values of the zero counter are
 * estimated as 0, an absolute error below 1e-300.
 *
 * Bin indices come from the C library's log(): every rank of a run must use
 * the same math library (one build of shardflow on one kind of machine) for
 * the states to be bit-identical. To spare a library call per value, the
 * index is first computed from a table of ln(1 + i/128) and a short series
 * (error below 1e-9 bins); only when that lands within 1e-6 of a bin edge
 * is log() itself called, so the index is always the one log() gives. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/groups.h"
#include "agents/order_key.h"
#include "agents/sketch_agents.h"

#define QUANTILES_FORMAT 1
#define MAX_Q 32
#define ZERO_LIMIT 1e-300
#define LN_TABLE 128 /* entries of the logarithm table (a power of two) */
#define MIN_NONE UINT64_MAX /* never the order key of a finite double */
#define MAX_NONE 0

/* The counts of bins lo .. lo + len - 1 of one sign; len == 0 when empty.
 * The window only grows, by doubling, so that a row costs an increment. */
typedef struct store {
    int32_t lo;
    uint32_t len;
    uint64_t *c;
} store;

typedef struct qgroup {
    uint64_t n;         /* finite values: zero + the counts of both stores */
    uint64_t nulls;
    uint64_t nonfinite; /* NaN, +inf, -inf */
    uint64_t zero;      /* |x| < ZERO_LIMIT */
    uint64_t min_key;   /* order keys (see order_key) of the finite extremes */
    uint64_t max_key;
    store pos, neg;     /* neg holds the bins of |x| for x < 0 */
} qgroup;

typedef struct quantiles_state {
    const sf_agent_config *cfg;
    int col;
    int nq;
    double q[MAX_Q];    /* ascending, distinct as printed with %g */
    double alpha;
    double gamma;
    double inv_ln_gamma;
    double rep_factor;  /* 2 / (gamma + 1) */
    int32_t idx_min, idx_max; /* the bins a finite |x| >= ZERO_LIMIT can fall in */
    double ln_c[LN_TABLE + 1];  /* ln(1 + i / LN_TABLE) */
    double inv_c[LN_TABLE + 1]; /* 1 / (1 + i / LN_TABLE) */
    sf__groups groups;
    qgroup *g;          /* payload of group i, for i < ng */
    uint32_t ng, gcap;
    /* g[ng..nkept) are empty groups that keep their stores' windows from
     * before a decode (a transaction's reset): the next unit's groups
     * reuse them instead of growing new stores from 8 bins. */
    uint32_t nkept;
} quantiles_state;

/* ---- values and bins -------------------------------------------------- */


static inline int32_t bin_index(const quantiles_state *s, double ax)
{
    /* ax = 2^e m with m in [1, 2) (ax is normal: ax >= ZERO_LIMIT), and
     * m = c (1 + u) with c = 1 + i/128 the table entry at or below m, so
     * ln ax = e ln 2 + ln c + ln(1 + u) with 0 <= u < 1/128; the series
     * to u^4 leaves an error below u^5 / 5 < 6e-12. m - c is exact (c is
     * m with its low bits cleared). */
    uint64_t bits;
    memcpy(&bits, &ax, sizeof bits);
    int e = (int)((bits >> 52) & 0x7FF) - 1023;
    uint64_t frac = bits & 0x000FFFFFFFFFFFFFull;
    unsigned i = (unsigned)(frac >> 45); /* top 7 bits: LN_TABLE == 128 */
    double m, c;
    uint64_t mb = frac | 0x3FF0000000000000ull, cb = (frac & ~((UINT64_C(1) << 45) - 1)) | 0x3FF0000000000000ull;
    memcpy(&m, &mb, sizeof m);
    memcpy(&c, &cb, sizeof c);
    double u = (m - c) * s->inv_c[i];
    double l1 = u * (1.0 - u * (0.5 - u * (1.0 / 3.0 - u * 0.25)));
    double f = ((double)e * 0.6931471805599453 + s->ln_c[i] + l1) * s->inv_ln_gamma;
    /* log() and this estimate differ by far less than 1e-6 bins; if no bin
     * edge lies within that distance, both give the same ceiling. */
    /* |f| < 2^31 (ln of a double is within +-745, 1/ln gamma <= 5001),
     * so the ceilings are taken in integers, without a call to ceil(). */
    double fl = f - 1e-6, fh = f + 1e-6;
    int64_t lo = (int64_t)fl, hi = (int64_t)fh; /* truncations */
    lo += (double)lo < fl;
    hi += (double)hi < fh;
    if (lo == hi) return (int32_t)lo;
    return (int32_t)ceil(log(ax) * s->inv_ln_gamma);
}

/* The tables of bin_index for s->alpha (with gamma and inv_ln_gamma). */
static void init_bins(quantiles_state *s)
{
    s->gamma = (1.0 + s->alpha) / (1.0 - s->alpha);
    s->inv_ln_gamma = 1.0 / log(s->gamma);
    for (int i = 0; i <= LN_TABLE; i++) {
        double c = 1.0 + (double)i / LN_TABLE;
        s->ln_c[i] = log(c);
        s->inv_c[i] = 1.0 / c;
    }
}

void sf__quantiles_bins(double alpha, const double *ax, size_t n, int32_t *out)
{
    quantiles_state *s = calloc(1, sizeof *s);
    if (s == NULL) {
        for (size_t i = 0; i < n; i++) out[i] = INT32_MIN;
        return;
    }
    s->alpha = alpha;
    init_bins(s);
    for (size_t i = 0; i < n; i++) out[i] = bin_index(s, ax[i]);
    free(s);
}

/* The representative of bin i of the positive store; pow() of the double
 * gamma keeps it consistent with the bins that log() of the same gamma
 * assigns. May be +inf for the topmost bins (the clamp to max fixes it). */
static inline double bin_rep(const quantiles_state *s, int32_t i)
{
    return pow(s->gamma, (double)i) * s->rep_factor;
}

static void store_fini(store *st)
{
    free(st->c);
    memset(st, 0, sizeof *st);
}

/* Grows the window to cover bins lo..hi (lo <= hi), keeping its counts.
 * The slack goes on the side that grew, so that a drift in one direction
 * costs O(log) reallocations. */
static sf_status store_cover(store *st, int32_t lo, int32_t hi)
{
    int64_t cur_lo = st->lo, cur_hi = (int64_t)st->lo + st->len - 1;
    if (st->len != 0 && lo >= cur_lo && hi <= cur_hi) return SF_OK;
    if (st->len == 0) {
        cur_lo = lo;
        cur_hi = hi;
    }
    int64_t nlo = lo < cur_lo ? lo : cur_lo, nhi = hi > cur_hi ? hi : cur_hi;
    int64_t need = nhi - nlo + 1;
    int64_t cap = st->len ? 2 * (int64_t)st->len : 8;
    while (cap < need) cap *= 2;
    int64_t base = (st->len != 0 && lo < st->lo) ? nhi - cap + 1 : nlo;
    SF_CHECK(cap <= INT32_MAX && base >= INT32_MIN, SF_ERR_INTERNAL,
             "quantiles: bin window %lld..%lld", (long long)base, (long long)(base + cap - 1));
    uint64_t *c = calloc((size_t)cap, sizeof *c);
    SF_CHECK(c != NULL, SF_ERR_NOMEM, "quantiles: out of memory for %lld bins", (long long)cap);
    if (st->len != 0) memcpy(c + ((int64_t)st->lo - base), st->c, (size_t)st->len * sizeof *c);
    free(st->c);
    st->c = c;
    st->lo = (int32_t)base;
    st->len = (uint32_t)cap;
    return SF_OK;
}

static inline sf_status store_add(store *st, int32_t i)
{
    /* Below the window the difference wraps to a large unsigned value. */
    uint32_t off = (uint32_t)((int64_t)i - st->lo);
    if (st->len != 0 && off < st->len) {
        st->c[off]++;
        return SF_OK;
    }
    SF_CALL(store_cover(st, i, i));
    st->c[(int64_t)i - st->lo]++;
    return SF_OK;
}

/* The first and last bins in use; false when none is. */
static bool store_used(const store *st, uint32_t *first, uint32_t *last)
{
    uint32_t a = 0, b = st->len;
    while (a < b && st->c[a] == 0) a++;
    if (a == b) return false;
    while (st->c[b - 1] == 0) b--;
    *first = a;
    *last = b - 1;
    return true;
}

static sf_status store_merge(store *into, const store *from)
{
    uint32_t a, b;
    if (!store_used(from, &a, &b)) return SF_OK;
    SF_CALL(store_cover(into, (int32_t)(from->lo + (int64_t)a), (int32_t)(from->lo + (int64_t)b)));
    uint64_t *dst = into->c + ((int64_t)from->lo - into->lo);
    for (uint32_t j = a; j <= b; j++) dst[j] += from->c[j];
    return SF_OK;
}

static void group_init(qgroup *g)
{
    memset(g, 0, sizeof *g);
    g->min_key = MIN_NONE;
    g->max_key = MAX_NONE;
}

/* Empties g, keeping its stores' windows (all bins zero). */
static void group_empty(qgroup *g)
{
    store pos = g->pos, neg = g->neg;
    if (pos.len) memset(pos.c, 0, (size_t)pos.len * sizeof *pos.c);
    if (neg.len) memset(neg.c, 0, (size_t)neg.len * sizeof *neg.c);
    group_init(g);
    g->pos = pos;
    g->neg = neg;
}

static void group_fini(qgroup *g)
{
    store_fini(&g->pos);
    store_fini(&g->neg);
}

static inline sf_status group_add(const quantiles_state *s, qgroup *g, double x)
{
    if (!isfinite(x)) {
        g->nonfinite++;
        return SF_OK;
    }
    uint64_t k = sf__order_key(x);
    g->min_key = k < g->min_key ? k : g->min_key;
    g->max_key = k > g->max_key ? k : g->max_key;
    g->n++;
    double ax = fabs(x);
    if (ax < ZERO_LIMIT) {
        g->zero++;
        return SF_OK;
    }
    return store_add(x > 0 ? &g->pos : &g->neg, bin_index(s, ax));
}

static sf_status group_merge(qgroup *into, const qgroup *from)
{
    SF_CALL(store_merge(&into->pos, &from->pos));
    SF_CALL(store_merge(&into->neg, &from->neg));
    into->n += from->n;
    into->nulls += from->nulls;
    into->nonfinite += from->nonfinite;
    into->zero += from->zero;
    if (from->min_key < into->min_key) into->min_key = from->min_key;
    if (from->max_key > into->max_key) into->max_key = from->max_key;
    return SF_OK;
}

static inline double clamp_value(const qgroup *g, double v)
{
    double lo = sf__from_order_key(g->min_key), hi = sf__from_order_key(g->max_key);
    return v < lo ? lo : v > hi ? hi : v;
}

/* The estimate of the element of rank k (0-based, k < n) in ascending
 * order: walks the negative store from its largest magnitude down, the
 * zero counter, then the positive store up. */
static double group_rank_value(const quantiles_state *s, const qgroup *g, uint64_t k)
{
    uint64_t acc = 0;
    for (uint32_t j = g->neg.len; j-- > 0;) {
        acc += g->neg.c[j];
        if (acc > k) return clamp_value(g, -bin_rep(s, (int32_t)(g->neg.lo + (int64_t)j)));
    }
    acc += g->zero;
    if (acc > k) return clamp_value(g, 0.0);
    for (uint32_t j = 0; j < g->pos.len; j++) {
        acc += g->pos.c[j];
        if (acc > k) return clamp_value(g, bin_rep(s, (int32_t)(g->pos.lo + (int64_t)j)));
    }
    return NAN; /* k >= n: not reached for a consistent group */
}

static double group_quantile(const quantiles_state *s, const qgroup *g, double q)
{
    if (g->n == 0) return NAN;
    uint64_t k = (uint64_t)floor(q * (double)(g->n - 1));
    if (k > g->n - 1) k = g->n - 1;
    return group_rank_value(s, g, k);
}

typedef struct wbin {
    double v;
    uint64_t c;
} wbin;

/* The median absolute deviation, estimated from the bins: the
 * floor((n - 1) / 2)-th smallest of |rep(bin) - median| weighted by the bin
 * counts (representatives clamped into [min, max], like every estimate).
 * Each |rep - median| is within alpha relative of the values involved, so
 * the estimate's error is within alpha relative of them plus the error of
 * the estimated median. The deviations of bins in ascending value order
 * ascend away from the median on both sides, so two cursors moving outwards
 * visit them in ascending order without a sort. */
static sf_status group_mad(const quantiles_state *s, const qgroup *g, double *out)
{
    *out = NAN;
    if (g->n == 0) return SF_OK;
    size_t nb = (size_t)g->neg.len + g->pos.len + 1;
    wbin *b = malloc(nb * sizeof *b);
    SF_CHECK(b != NULL, SF_ERR_NOMEM, "quantiles: out of memory for %zu bins", nb);
    size_t m = 0;
    for (uint32_t j = g->neg.len; j-- > 0;)
        if (g->neg.c[j] != 0)
            b[m++] = (wbin){clamp_value(g, -bin_rep(s, (int32_t)(g->neg.lo + (int64_t)j))), g->neg.c[j]};
    if (g->zero != 0) b[m++] = (wbin){clamp_value(g, 0.0), g->zero};
    for (uint32_t j = 0; j < g->pos.len; j++)
        if (g->pos.c[j] != 0)
            b[m++] = (wbin){clamp_value(g, bin_rep(s, (int32_t)(g->pos.lo + (int64_t)j))), g->pos.c[j]};
    double med = group_quantile(s, g, 0.5);
    uint64_t target = (g->n - 1) / 2, acc = 0;
    size_t right = 0;
    while (right < m && b[right].v < med) right++;
    size_t left = right; /* b[0..left) lie below the median, b[right..m) at or above */
    double dev = NAN;
    while (left > 0 || right < m) {
        double dl = left > 0 ? med - b[left - 1].v : INFINITY;
        double dr = right < m ? b[right].v - med : INFINITY;
        uint64_t c;
        if (dl < dr) {
            dev = dl;
            c = b[--left].c;
        } else {
            dev = dr;
            c = b[right++].c;
        }
        acc += c;
        if (acc > target) break;
    }
    free(b);
    *out = dev;
    return SF_OK;
}

/* ---- groups ------------------------------------------------------------ */

/* Gives every group of the table a payload (new ones empty). */
static sf_status sync_groups(quantiles_state *s)
{
    uint32_t n = s->groups.n;
    if (n <= s->ng) return SF_OK;
    if (n > s->gcap) {
        uint32_t cap = s->gcap ? s->gcap : 16;
        while (cap < n) cap *= 2;
        qgroup *g = realloc(s->g, (size_t)cap * sizeof *g);
        SF_CHECK(g != NULL, SF_ERR_NOMEM, "quantiles: out of memory for %u groups", cap);
        s->g = g;
        s->gcap = cap;
    }
    for (uint32_t i = s->ng; i < n; i++)
        if (i >= s->nkept) group_init(&s->g[i]); /* else already emptied, windows kept */
    s->ng = n;
    return SF_OK;
}

/* ---- options ----------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Reads q: and accuracy:, sorts q ascending and rejects quantiles that
 * would print alike as result keys. */
static sf_status read_options(const sf_agent_config *cfg, double *q, int *nq, double *alpha)
{
    static const double dflt[] = {0.5, 0.95, 0.99};
    SF_CALL(sf_agent_opt_doubles(cfg, "q", 0.0, 1.0, q, MAX_Q, nq));
    if (sf_agent_option(cfg, "q") == NULL) {
        *nq = 3;
        memcpy(q, dflt, sizeof dflt);
    }
    char where[1100];
    sf__sketch_where(cfg, "q", where, sizeof where);
    SF_CHECK(*nq > 0, SF_ERR_CONFIG, "%s: give at least one quantile in [0, 1]", where);
    qsort(q, (size_t)*nq, sizeof *q, cmp_double);
    for (int i = 1; i < *nq; i++) {
        char a[32], b[32];
        snprintf(a, sizeof a, "%g", q[i - 1]);
        snprintf(b, sizeof b, "%g", q[i]);
        SF_CHECK(strcmp(a, b) != 0, SF_ERR_CONFIG,
                 "%s: %.17g and %.17g are both reported as \"%s\"; give each quantile once, "
                 "differing within 6 significant digits",
                 where, q[i - 1], q[i], a);
    }
    SF_CALL(sf_agent_opt_double(cfg, "accuracy", 0.01, 0.0001, 0.1, alpha));
    return SF_OK;
}

static const sf_type numeric_types[] = {SF_INT64, SF_FLOAT64, SF_TIMESTAMP};

static sf_status quantiles_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"q", "accuracy"};
    SF_CALL(sf_agent_check_options(cfg, allowed, 2));
    int col;
    SF_CALL(sf__sketch_check_columns(cfg, numeric_types, 3, &col));
    double q[MAX_Q], alpha;
    int nq;
    return read_options(cfg, q, &nq, &alpha);
}

/* ---- agent functions ---------------------------------------------------- */

static void quantiles_destroy(void *state)
{
    quantiles_state *s = state;
    for (uint32_t i = 0; i < s->ng || i < s->nkept; i++) group_fini(&s->g[i]);
    free(s->g);
    sf__groups_fini(&s->groups);
    memset(s, 0, sizeof *s);
}

static sf_status quantiles_init(void *state, const sf_agent_config *cfg)
{
    quantiles_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->schema != NULL, SF_ERR_ARG, "quantiles: configuration was not checked");
    int col;
    SF_CALL(sf__sketch_check_columns(cfg, numeric_types, 3, &col));
    SF_CALL(read_options(cfg, s->q, &s->nq, &s->alpha));
    s->cfg = cfg;
    s->col = col;
    init_bins(s);
    s->rep_factor = 2.0 / (s->gamma + 1.0);
    /* Two bins of margin on each side of what log() can give. */
    s->idx_min = (int32_t)floor(log(ZERO_LIMIT) * s->inv_ln_gamma) - 2;
    s->idx_max = (int32_t)ceil(log(DBL_MAX) * s->inv_ln_gamma) + 2;
    SF_CALL(sf__groups_init(&s->groups, cfg->schema, cfg->by_col, cfg->nby));
    sf_status rc = sync_groups(s);
    if (rc != SF_OK) quantiles_destroy(s);
    return rc;
}

static sf_status quantiles_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    quantiles_state *s = state;
    SF_CALL(sf__sketch_check_rows(b, rows));
    SF_CHECK(s->col < b->ncols && b->cols[s->col].loaded, SF_ERR_INTERNAL,
             "quantiles: column '%s' is not loaded", s->cfg->column);
    const sf_column *c = &b->cols[s->col];
    if (s->groups.nby == 0) {
        qgroup *g = &s->g[0];
        for (size_t i = 0; i < rows->n; i++) {
            size_t r = sf_rows_at(rows, i);
            if (sf_col_is_null(c, r))
                g->nulls++;
            else
                SF_CALL(group_add(s, g, sf_col_as_double(c, r)));
        }
        return SF_OK;
    }
    SF_CALL(sf__groups_batch(&s->groups, b));
    const uint32_t *gi;
    bool created;
    SF_CALL(sf__groups_rows(&s->groups, b, rows, &gi, &created));
    if (created) SF_CALL(sync_groups(s));
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        qgroup *g = &s->g[gi[i]];
        if (sf_col_is_null(c, r))
            g->nulls++;
        else
            SF_CALL(group_add(s, g, sf_col_as_double(c, r)));
    }
    return SF_OK;
}

static sf_status quantiles_merge(void *into, const void *from)
{
    quantiles_state *a = into;
    const quantiles_state *f = from;
    SF_CHECK(a->groups.nby == f->groups.nby && a->alpha == f->alpha, SF_ERR_INTERNAL,
             "quantiles: merging states of different shapes");
    uint32_t *map;
    bool created;
    SF_CALL(sf__groups_map(&a->groups, &f->groups, f->ng, &map, &created));
    sf_status rc = created ? sync_groups(a) : SF_OK;
    for (uint32_t i = 0; rc == SF_OK && i < f->ng; i++) rc = group_merge(&a->g[map[i]], &f->g[i]);
    free(map);
    return rc;
}

/* Bins in use as (u32 index, u64 count) pairs, ascending. */
static sf_status encode_store(const store *st, sf_buf *out)
{
    uint32_t nz = 0;
    for (uint32_t j = 0; j < st->len; j++) nz += st->c[j] != 0;
    SF_CALL(sf_buf_put_u32(out, nz));
    for (uint32_t j = 0; j < st->len; j++) {
        if (st->c[j] == 0) continue;
        SF_CALL(sf_buf_put_u32(out, (uint32_t)(int32_t)(st->lo + (int64_t)j)));
        SF_CALL(sf_buf_put_u64(out, st->c[j]));
    }
    return SF_OK;
}

static sf_status quantiles_encode(const void *state, sf_buf *out)
{
    const quantiles_state *s = state;
    uint32_t *order = NULL;
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sf__groups_sorted(&s->groups, &order), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, QUANTILES_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->groups.nby), done);
    SF_CALL_GOTO(sf_buf_put_f64(out, s->alpha), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->ng), done);
    for (uint32_t i = 0; i < s->ng; i++) {
        const qgroup *g = &s->g[order[i]];
        size_t len;
        const uint8_t *k = sf__groups_key(&s->groups, order[i], &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->nulls), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->nonfinite), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->zero), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->min_key), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->max_key), done);
        SF_CALL_GOTO(encode_store(&g->neg, out), done);
        SF_CALL_GOTO(encode_store(&g->pos, out), done);
    }
done:
    free(order);
    return rc;
}

static sf_status add_count(uint64_t *n, uint64_t c)
{
    SF_CHECK(*n + c >= *n, SF_ERR_PARSE, "quantiles state: counts overflow");
    *n += c;
    return SF_OK;
}

static sf_status decode_store(const quantiles_state *s, sf_rd *r, store *st, uint64_t *n)
{
    uint32_t nz;
    SF_CALL(sf_rd_u32(r, &nz));
    if (nz == 0) return SF_OK;
    SF_CHECK(nz <= (r->n - r->off) / 12, SF_ERR_PARSE, "quantiles state: %u bins in %zu bytes", nz,
             r->n - r->off);
    /* Two passes: the first validates and finds the window, the second fills it. */
    size_t start = r->off;
    int64_t prev = INT64_MIN, first = 0;
    for (uint32_t j = 0; j < nz; j++) {
        uint32_t u;
        uint64_t c;
        SF_CALL(sf_rd_u32(r, &u));
        SF_CALL(sf_rd_u64(r, &c));
        int64_t i = (int32_t)u;
        SF_CHECK(i > prev, SF_ERR_PARSE, "quantiles state: bins out of order");
        SF_CHECK(i >= s->idx_min && i <= s->idx_max, SF_ERR_PARSE,
                 "quantiles state: bin %lld outside %d..%d", (long long)i, s->idx_min, s->idx_max);
        SF_CHECK(c != 0, SF_ERR_PARSE, "quantiles state: an empty bin is listed");
        SF_CALL(add_count(n, c));
        if (j == 0) first = i;
        prev = i;
    }
    SF_CALL(store_cover(st, (int32_t)first, (int32_t)prev));
    r->off = start;
    for (uint32_t j = 0; j < nz; j++) {
        uint32_t u;
        uint64_t c;
        SF_CALL(sf_rd_u32(r, &u));
        SF_CALL(sf_rd_u64(r, &c));
        st->c[(int64_t)(int32_t)u - st->lo] = c;
    }
    return SF_OK;
}

static bool finite_key(uint64_t k)
{
    double x = sf__from_order_key(k);
    return isfinite(x) && sf__order_key(x) == k;
}

static sf_status quantiles_decode(void *state, const void *bytes, size_t n)
{
    quantiles_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, nby;
    double alpha;
    uint64_t ng;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == QUANTILES_FORMAT, SF_ERR_PARSE, "quantiles state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &nby));
    SF_CHECK(nby == s->groups.nby, SF_ERR_PARSE, "quantiles state: %u key columns, expected %d", nby,
             s->groups.nby);
    SF_CALL(sf_rd_f64(&r, &alpha));
    SF_CHECK(memcmp(&alpha, &s->alpha, sizeof alpha) == 0, SF_ERR_PARSE,
             "quantiles state: accuracy %g, expected %g", alpha, s->alpha);
    SF_CALL(sf_rd_u64(&r, &ng));
    SF_CHECK(s->groups.nby != 0 || ng == 1, SF_ERR_PARSE, "quantiles state: %llu groups without by:",
             (unsigned long long)ng);
    /* Every group takes at least 4 + 5 * 8 + 2 * 4 bytes. */
    SF_CHECK(ng <= (n - r.off) / 52, SF_ERR_PARSE, "quantiles state: %llu groups in %zu bytes",
             (unsigned long long)ng, n);

    for (uint32_t i = 0; i < s->ng; i++) group_empty(&s->g[i]);
    if (s->ng > s->nkept) s->nkept = s->ng;
    s->ng = 0;
    SF_CALL(sf__groups_clear(&s->groups));
    SF_CALL(sync_groups(s));
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < ng; i++) {
        uint32_t gi;
        SF_CALL(sf__groups_decode_key(&s->groups, &r, &prev, &prev_len, &gi));
        SF_CALL(sync_groups(s));
        qgroup *g = &s->g[gi];
        SF_CALL(sf_rd_u64(&r, &g->nulls));
        SF_CALL(sf_rd_u64(&r, &g->nonfinite));
        SF_CALL(sf_rd_u64(&r, &g->zero));
        SF_CALL(sf_rd_u64(&r, &g->min_key));
        SF_CALL(sf_rd_u64(&r, &g->max_key));
        g->n = g->zero;
        SF_CALL(decode_store(s, &r, &g->neg, &g->n));
        SF_CALL(decode_store(s, &r, &g->pos, &g->n));
        if (g->n == 0) {
            SF_CHECK(g->min_key == MIN_NONE && g->max_key == MAX_NONE, SF_ERR_PARSE,
                     "quantiles state: extremes without values");
        } else {
            SF_CHECK(finite_key(g->min_key) && finite_key(g->max_key) && g->min_key <= g->max_key,
                     SF_ERR_PARSE, "quantiles state: malformed extremes");
        }
    }
    SF_CHECK(r.off == n, SF_ERR_PARSE, "quantiles state: %zu trailing bytes", n - r.off);
    return SF_OK;
}

/* ---- report and statistics ------------------------------------------------ */

static void write_group(const quantiles_state *s, sf_json *j, const qgroup *g)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "count");
    sf_json_uint(j, g->n + g->nonfinite);
    sf_json_key(j, "nulls");
    sf_json_uint(j, g->nulls);
    sf_json_key(j, "nonfinite");
    sf_json_uint(j, g->nonfinite);
    sf_json_key(j, "min");
    sf_json_num(j, g->n ? sf__from_order_key(g->min_key) : NAN);
    sf_json_key(j, "max");
    sf_json_num(j, g->n ? sf__from_order_key(g->max_key) : NAN);
    /* The guarantee: every quantile within this relative error of a value
     * of rank q (n - 1) (accuracy:). */
    sf_json_key(j, "relative_error");
    sf_json_num(j, s->alpha);
    sf_json_key(j, "quantiles");
    sf_json_obj_begin(j);
    for (int i = 0; i < s->nq; i++) {
        char key[32];
        snprintf(key, sizeof key, "%g", s->q[i]);
        sf_json_key(j, key);
        sf_json_num(j, group_quantile(s, g, s->q[i]));
    }
    sf_json_obj_end(j);
    sf_json_obj_end(j);
}

static sf_status quantiles_report(const void *state, sf_json *j)
{
    const quantiles_state *s = state;
    if (s->groups.nby == 0) {
        write_group(s, j, &s->g[0]);
        return j->rc;
    }
    sf_status rc = SF_OK;
    sf_buf text;
    sf_buf_init(&text);
    uint32_t *order = NULL;
    size_t *toff = NULL, *tlen = NULL;
    qgroup tmp;
    group_init(&tmp);
    SF_CALL_GOTO(sf__groups_text_order(&s->groups, &text, &order, &toff, &tlen), done);
    sf_json_obj_begin(j);
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    for (uint32_t i = 0; i < s->groups.n;) {
        /* Printed keys are unique (escaped strings, \N for null, numbers
         * that round-trip); should two ever print alike they are one group. */
        uint32_t e = i + 1, a = order[i];
        while (e < s->groups.n && tlen[order[e]] == tlen[a] &&
               memcmp(text.data + toff[order[e]], text.data + toff[a], tlen[a]) == 0)
            e++;
        const qgroup *g = &s->g[a];
        if (e > i + 1) {
            group_fini(&tmp);
            group_init(&tmp);
            for (uint32_t k = i; k < e; k++) SF_CALL_GOTO(group_merge(&tmp, &s->g[order[k]]), done);
            g = &tmp;
        }
        sf_json_keyn(j, (const char *)text.data + toff[a], tlen[a]);
        write_group(s, j, g);
        i = e;
    }
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    group_fini(&tmp);
    free(order);
    free(toff);
    free(tlen);
    sf_buf_fini(&text);
    return rc;
}

static sf_status quantiles_stat(const void *state, const uint8_t *key, size_t keylen,
                                const char *name, double *out)
{
    const quantiles_state *s = state;
    const char *id = s->cfg->id ? s->cfg->id : "quantiles";
    double p = -1.0;
    bool is_q = strncmp(name, "q:", 2) == 0;
    if (is_q) {
        char *end;
        p = strtod(name + 2, &end);
        SF_CHECK(name[2] != '\0' && *end == '\0' && p >= 0.0 && p <= 1.0, SF_ERR_ARG,
                 "quantiles '%s': statistic '%s' needs a quantile in [0, 1] after q:", id, name);
    } else {
        SF_CHECK(strcmp(name, "count") == 0 || strcmp(name, "rows") == 0 || strcmp(name, "min") == 0 ||
                     strcmp(name, "max") == 0 || strcmp(name, "mad") == 0,
                 SF_ERR_ARG,
                 "quantiles '%s': no statistic '%s' (it has count, rows, min, max, q:P, mad)", id, name);
    }
    const qgroup *g;
    qgroup all;
    group_init(&all);
    sf_status rc = SF_OK;
    if (key == NULL) {
        /* The whole state: every group together. */
        for (uint32_t i = 0; i < s->ng; i++) SF_CALL_GOTO(group_merge(&all, &s->g[i]), done);
        g = &all;
    } else {
        uint32_t gi = sf__groups_lookup(&s->groups, key, keylen);
        SF_CHECK_GOTO(gi != SF__NO_GROUP && gi < s->ng, SF_ERR_ARG, done,
                      "quantiles '%s': no group with that key", id);
        g = &s->g[gi];
    }
    if (is_q)
        *out = group_quantile(s, g, p);
    else if (strcmp(name, "count") == 0)
        *out = (double)(g->n + g->nonfinite);
    else if (strcmp(name, "rows") == 0)
        *out = (double)(g->n + g->nonfinite + g->nulls);
    else if (strcmp(name, "min") == 0)
        *out = g->n ? sf__from_order_key(g->min_key) : NAN;
    else if (strcmp(name, "max") == 0)
        *out = g->n ? sf__from_order_key(g->max_key) : NAN;
    else
        SF_CALL_GOTO(group_mad(s, g, out), done);
done:
    group_fini(&all);
    return rc;
}

const sf_agent_ops sf__agent_quantiles = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "quantiles",
    .aspect = "performance",
    .state_size = sizeof(quantiles_state),
    .check = quantiles_check,
    .init = quantiles_init,
    .process = quantiles_process,
    .merge = quantiles_merge,
    .encode = quantiles_encode,
    .decode = quantiles_decode,
    .report = quantiles_report,
    .destroy = quantiles_destroy,
    .columns = NULL,
    .stat = quantiles_stat,
};
