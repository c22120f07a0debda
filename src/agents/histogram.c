/* The `histogram` agent: counts of a numeric column in bins, optionally
 * grouped by key columns. Counts are integers, so merging adds them: exactly
 * associative and commutative.
 *
 * Bins are given one of three ways (edges e_0 < e_1 < ... < e_K, bin j is
 * [e_j, e_{j+1})):
 * - buckets: fixed (the default): min and max (required, min < max) and
 *   bins K (default 10, 1 to 100000); e_j = min + j * (max - min) / K for
 *   j < K and e_K = max exactly.
 * - buckets: log: base (default 10, > 1), min (> 0, default 1) and max
 *   (default 1e9); e_k = min * base^k for k = 0, 1, ... up to the first edge
 *   >= max. Values <= 0 are counted in "nonpositive".
 * - edges: [e_0, e_1, ...] explicit, strictly increasing (at least two);
 *   they replace buckets:, min, max, bins and base, which must then be
 *   absent.
 * Values below e_0 (-inf included) are counted in "underflow", values at or
 * above e_K (+inf included) in "overflow", NaN in "nan", nulls in "nulls".
 *
 * The bin of a value comes from the closed form (a division for fixed bins,
 * a logarithm for log bins, a binary search for explicit edges) and is then
 * fixed up with exact comparisons against the edges, so that a value equal
 * to an edge always lands in the bin that starts at it, whatever the
 * rounding of the formula. The edges themselves are computed once from the
 * options (pow() for log bins) and are what the report prints. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/groups.h"
#include "agents/sketch_agents.h"

#define HISTOGRAM_FORMAT 1
#define MAX_BINS 100000

/* The counters of a group, then its K bins. */
enum { C_NULLS, C_NAN, C_UNDER, C_OVER, C_NONPOS, C_BINS };

typedef enum layout_kind { LAYOUT_FIXED = 0, LAYOUT_LOG = 1, LAYOUT_EDGES = 2 } layout_kind;

typedef struct layout {
    layout_kind kind;
    uint32_t nbins;   /* K */
    double *edges;    /* K + 1, malloc'ed */
} layout;

typedef struct histogram_state {
    const sf_agent_config *cfg;
    int col;
    layout lay;
    double lo, inv_w;              /* fixed: e_0 and K / (max - min) */
    double ln_min, inv_ln_base;    /* log */
    uint64_t edges_hash;           /* of the kind and the edges' bits, checked by decode */
    size_t stride;                 /* C_BINS + K counters per group */
    sf__groups groups;
    uint64_t *c;                   /* group i's counters at c + i * stride, i < ng */
    uint32_t ng, gcap;
} histogram_state;

/* ---- options ------------------------------------------------------------- */

static sf_status no_option(const sf_agent_config *cfg, const char *key, const char *why)
{
    if (sf_agent_option(cfg, key) == NULL) return SF_OK;
    char where[1100];
    sf__sketch_where(cfg, key, where, sizeof where);
    return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s: %s", where, why);
}

static sf_status check_edges(const sf_agent_config *cfg, const char *key, const layout *l)
{
    char where[1100];
    sf__sketch_where(cfg, key, where, sizeof where);
    for (uint32_t j = 0; j <= l->nbins; j++) {
        SF_CHECK(isfinite(l->edges[j]), SF_ERR_CONFIG, "%s: edge %u is not finite (%g)", where, j,
                 l->edges[j]);
        SF_CHECK(j == 0 || l->edges[j - 1] < l->edges[j], SF_ERR_CONFIG,
                 "%s: edges must increase strictly, but edge %u (%.17g) follows %.17g%s", where, j,
                 l->edges[j], l->edges[j - 1],
                 l->kind == LAYOUT_EDGES ? "" : " (the bins are narrower than double precision allows)");
    }
    return SF_OK;
}

/* Reads the bin layout from the options (see the top comment). On success
 * l->edges is malloc'ed; the caller frees it. */
static sf_status read_layout(const sf_agent_config *cfg, layout *l)
{
    static const char *const kinds[] = {"fixed", "log"};
    memset(l, 0, sizeof *l);
    sf_status rc = SF_OK;
    char where[1100];
    const sf_cfg_node *en = sf_agent_option(cfg, "edges");
    if (en != NULL) {
        static const char *const replaced[] = {"buckets", "min", "max", "bins", "base"};
        for (int i = 0; i < 5; i++)
            SF_CALL(no_option(cfg, replaced[i], "not used together with edges: (the edges define the bins)"));
        l->kind = LAYOUT_EDGES;
        l->edges = malloc((MAX_BINS + 1) * sizeof *l->edges);
        SF_CHECK(l->edges != NULL, SF_ERR_NOMEM, "histogram: out of memory for edges");
        int n;
        SF_CALL_GOTO(sf_agent_opt_doubles(cfg, "edges", -DBL_MAX, DBL_MAX, l->edges, MAX_BINS + 1, &n),
                     fail);
        sf__sketch_where(cfg, "edges", where, sizeof where);
        SF_CHECK_GOTO(n >= 2, SF_ERR_CONFIG, fail, "%s: give at least two edges (one bin)", where);
        l->nbins = (uint32_t)n - 1;
        SF_CALL_GOTO(check_edges(cfg, "edges", l), fail);
        return SF_OK;
    }
    int kind;
    SF_CALL(sf_agent_opt_choice(cfg, "buckets", kinds, 2, LAYOUT_FIXED, &kind));
    l->kind = (layout_kind)kind;
    if (l->kind == LAYOUT_FIXED) {
        SF_CALL(no_option(cfg, "base", "only used with buckets: log"));
        double lo, hi;
        int64_t bins;
        SF_CALL(sf_agent_opt_double(cfg, "min", NAN, -DBL_MAX, DBL_MAX, &lo));
        SF_CALL(sf_agent_opt_double(cfg, "max", NAN, -DBL_MAX, DBL_MAX, &hi));
        SF_CALL(sf_agent_opt_int(cfg, "bins", 10, 1, MAX_BINS, &bins));
        sf__sketch_where(cfg, "min", where, sizeof where);
        SF_CHECK(!isnan(lo), SF_ERR_CONFIG, "%s: required for buckets: fixed (the lower edge)", where);
        sf__sketch_where(cfg, "max", where, sizeof where);
        SF_CHECK(!isnan(hi), SF_ERR_CONFIG, "%s: required for buckets: fixed (the upper edge)", where);
        SF_CHECK(lo < hi, SF_ERR_CONFIG, "%s: %.17g is not above min (%.17g)", where, hi, lo);
        double w = (hi - lo) / (double)bins;
        SF_CHECK(isfinite(w) && w > 0, SF_ERR_CONFIG, "%s: max - min (%.17g - %.17g) is not finite", where,
                 hi, lo);
        l->nbins = (uint32_t)bins;
        l->edges = malloc(((size_t)bins + 1) * sizeof *l->edges);
        SF_CHECK(l->edges != NULL, SF_ERR_NOMEM, "histogram: out of memory for edges");
        for (uint32_t j = 0; j < l->nbins; j++) l->edges[j] = lo + (double)j * w;
        l->edges[l->nbins] = hi;
        SF_CALL_GOTO(check_edges(cfg, "bins", l), fail);
        return SF_OK;
    }
    SF_CALL(no_option(cfg, "bins", "only used with buckets: fixed (log bins follow from min, max and base)"));
    double base, lo, hi;
    SF_CALL(sf_agent_opt_double(cfg, "base", 10.0, 1.0, DBL_MAX, &base));
    SF_CALL(sf_agent_opt_double(cfg, "min", 1.0, 0.0, DBL_MAX, &lo));
    SF_CALL(sf_agent_opt_double(cfg, "max", 1e9, 0.0, DBL_MAX, &hi));
    sf__sketch_where(cfg, "base", where, sizeof where);
    SF_CHECK(base > 1.0, SF_ERR_CONFIG, "%s: must be above 1", where);
    sf__sketch_where(cfg, "min", where, sizeof where);
    SF_CHECK(lo > 0.0, SF_ERR_CONFIG, "%s: must be above 0 for buckets: log", where);
    sf__sketch_where(cfg, "max", where, sizeof where);
    SF_CHECK(lo < hi, SF_ERR_CONFIG, "%s: %.17g is not above min (%.17g)", where, hi, lo);
    /* K: the first k with min * base^k >= max. */
    uint32_t k = 1;
    while (lo * pow(base, (double)k) < hi) {
        SF_CHECK(k < MAX_BINS, SF_ERR_CONFIG,
                 "%s: log bins from %g to %g with base %g would be more than %d", where, lo, hi, base,
                 MAX_BINS);
        k++;
    }
    l->nbins = k;
    l->edges = malloc(((size_t)k + 1) * sizeof *l->edges);
    SF_CHECK(l->edges != NULL, SF_ERR_NOMEM, "histogram: out of memory for edges");
    l->edges[0] = lo;
    for (uint32_t j = 1; j <= k; j++) l->edges[j] = lo * pow(base, (double)j);
    SF_CALL_GOTO(check_edges(cfg, "base", l), fail);
    return SF_OK;
fail:
    free(l->edges);
    l->edges = NULL;
    return rc;
}

static const sf_type numeric_types[] = {SF_INT64, SF_FLOAT64, SF_TIMESTAMP};

static sf_status histogram_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"buckets", "min", "max", "bins", "base", "edges"};
    SF_CALL(sf_agent_check_options(cfg, allowed, 6));
    int col;
    SF_CALL(sf__sketch_check_columns(cfg, numeric_types, 3, &col));
    layout l;
    SF_CALL(read_layout(cfg, &l));
    free(l.edges);
    return SF_OK;
}

/* ---- bins ----------------------------------------------------------------- */

/* ln x for a positive x, to within 0.01 or so: only a first guess of
 * the bin, which the comparisons with the exact edges below then correct
 * (so the bin never depends on it; with more than 64 bins per unit of
 * ln the guess could be several bins off, and log() is used). Exponent plus a quadratic in the
 * mantissa; a library log() per value would cost more than the rest. */
static inline double rough_ln(double x)
{
    uint64_t bits;
    memcpy(&bits, &x, sizeof bits);
    int e = (int)((bits >> 52) & 0x7FF);
    if (e == 0 || e == 0x7FF) return log(x); /* subnormal or infinite */
    uint64_t mb = (bits & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull;
    double m;
    memcpy(&m, &mb, sizeof m);
    double t = m - 1.0; /* log2(1 + t) ~ t + 0.3466 t (1 - t), within 0.01 */
    return ((double)(e - 1023) + t + 0.3466 * t * (1.0 - t)) * 0.6931471805599453;
}

/* The counter (C_NAN .. C_BINS + K - 1) that value x goes to. */
static inline size_t slot_of(const histogram_state *s, double x)
{
    const double *e = s->lay.edges;
    uint32_t k = s->lay.nbins;
    if (isnan(x)) return C_NAN;
    if (s->lay.kind == LAYOUT_LOG && x <= 0.0) return C_NONPOS;
    if (x < e[0]) return C_UNDER;
    if (x >= e[k]) return C_OVER;
    /* Here e[0] <= x < e[k]. */
    int64_t j;
    if (s->lay.kind == LAYOUT_EDGES) {
        /* The last edge <= x. */
        uint32_t a = 0, b = k;
        while (b - a > 1) {
            uint32_t mid = a + (b - a) / 2;
            if (e[mid] <= x)
                a = mid;
            else
                b = mid;
        }
        return C_BINS + a;
    }
    double f = s->lay.kind == LAYOUT_FIXED ? (x - s->lo) * s->inv_w
                                           : ((s->inv_ln_base <= 64.0 ? rough_ln(x) : log(x)) - s->ln_min) *
                                                 s->inv_ln_base;
    j = f < 0.0 ? 0 : f >= (double)k ? (int64_t)k - 1 : (int64_t)f;
    while (x < e[j]) j--;
    while (x >= e[j + 1]) j++;
    return C_BINS + (size_t)j;
}

/* ---- groups ---------------------------------------------------------------- */

static sf_status sync_groups(histogram_state *s)
{
    uint32_t n = s->groups.n;
    if (n <= s->ng) return SF_OK;
    if (n > s->gcap) {
        uint32_t cap = s->gcap ? s->gcap : 4;
        while (cap < n) cap *= 2;
        uint64_t *c = realloc(s->c, (size_t)cap * s->stride * sizeof *c);
        SF_CHECK(c != NULL, SF_ERR_NOMEM, "histogram: out of memory for %u groups of %u bins", cap,
                 s->lay.nbins);
        s->c = c;
        s->gcap = cap;
    }
    memset(s->c + (size_t)s->ng * s->stride, 0, (size_t)(n - s->ng) * s->stride * sizeof *s->c);
    s->ng = n;
    return SF_OK;
}

/* ---- agent functions ----------------------------------------------------------- */

static void histogram_destroy(void *state)
{
    histogram_state *s = state;
    free(s->lay.edges);
    free(s->c);
    sf__groups_fini(&s->groups);
    memset(s, 0, sizeof *s);
}

static sf_status histogram_init(void *state, const sf_agent_config *cfg)
{
    histogram_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->schema != NULL, SF_ERR_ARG, "histogram: configuration was not checked");
    int col;
    SF_CALL(sf__sketch_check_columns(cfg, numeric_types, 3, &col));
    SF_CALL(read_layout(cfg, &s->lay));
    s->cfg = cfg;
    s->col = col;
    uint32_t k = s->lay.nbins;
    const double *e = s->lay.edges;
    s->lo = e[0];
    s->inv_w = (double)k / (e[k] - e[0]);
    if (s->lay.kind == LAYOUT_LOG) {
        s->ln_min = log(e[0]);
        s->inv_ln_base = (double)k / (log(e[k]) - s->ln_min);
    }
    s->stride = C_BINS + (size_t)k;
    /* The decoder's check that a state was made with the same bins. */
    XXH3_state_t *h = XXH3_createState();
    sf_status rc = SF_OK;
    SF_CHECK_GOTO(h != NULL, SF_ERR_NOMEM, fail, "histogram: out of memory");
    XXH3_64bits_reset(h);
    uint8_t b[8] = {(uint8_t)s->lay.kind};
    XXH3_64bits_update(h, b, 1);
    for (uint32_t j = 0; j <= k; j++) {
        uint64_t bits;
        memcpy(&bits, &e[j], sizeof bits);
        sf_store_u64(b, bits);
        XXH3_64bits_update(h, b, 8);
    }
    s->edges_hash = XXH3_64bits_digest(h);
    XXH3_freeState(h);
    SF_CALL_GOTO(sf__groups_init(&s->groups, cfg->schema, cfg->by_col, cfg->nby), fail);
    SF_CALL_GOTO(sync_groups(s), fail);
    return SF_OK;
fail:
    histogram_destroy(s);
    return rc;
}

static sf_status histogram_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    histogram_state *s = state;
    SF_CALL(sf__sketch_check_rows(b, rows));
    SF_CHECK(s->col < b->ncols && b->cols[s->col].loaded, SF_ERR_INTERNAL,
             "histogram: column '%s' is not loaded", s->cfg->column);
    const sf_column *c = &b->cols[s->col];
    if (s->groups.nby == 0) {
        uint64_t *g = s->c;
        for (size_t i = 0; i < rows->n; i++) {
            size_t r = sf_rows_at(rows, i);
            g[sf_col_is_null(c, r) ? C_NULLS : slot_of(s, sf_col_as_double(c, r))]++;
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
        uint64_t *g = s->c + (size_t)gi[i] * s->stride;
        g[sf_col_is_null(c, r) ? C_NULLS : slot_of(s, sf_col_as_double(c, r))]++;
    }
    return SF_OK;
}

static sf_status histogram_merge(void *into, const void *from)
{
    histogram_state *a = into;
    const histogram_state *f = from;
    SF_CHECK(a->groups.nby == f->groups.nby && a->edges_hash == f->edges_hash && a->stride == f->stride,
             SF_ERR_INTERNAL, "histogram: merging states of different shapes");
    uint32_t *map;
    bool created;
    SF_CALL(sf__groups_map(&a->groups, &f->groups, f->ng, &map, &created));
    sf_status rc = created ? sync_groups(a) : SF_OK;
    for (uint32_t i = 0; rc == SF_OK && i < f->ng; i++) {
        uint64_t *dst = a->c + (size_t)map[i] * a->stride;
        const uint64_t *src = f->c + (size_t)i * f->stride;
        for (size_t j = 0; j < a->stride; j++) dst[j] += src[j];
    }
    free(map);
    return rc;
}

static sf_status histogram_encode(const void *state, sf_buf *out)
{
    const histogram_state *s = state;
    uint32_t *order = NULL;
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sf__groups_sorted(&s->groups, &order), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, HISTOGRAM_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->groups.nby), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->lay.kind), done);
    SF_CALL_GOTO(sf_buf_put_u32(out, s->lay.nbins), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->edges_hash), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->ng), done);
    for (uint32_t i = 0; i < s->ng; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&s->groups, order[i], &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        const uint64_t *g = s->c + (size_t)order[i] * s->stride;
        for (size_t j = 0; j < s->stride; j++) SF_CALL_GOTO(sf_buf_put_u64(out, g[j]), done);
    }
done:
    free(order);
    return rc;
}

static sf_status histogram_decode(void *state, const void *bytes, size_t n)
{
    histogram_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, nby, kind;
    uint32_t nbins;
    uint64_t hash, ng;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == HISTOGRAM_FORMAT, SF_ERR_PARSE, "histogram state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &nby));
    SF_CHECK(nby == s->groups.nby, SF_ERR_PARSE, "histogram state: %u key columns, expected %d", nby,
             s->groups.nby);
    SF_CALL(sf_rd_u8(&r, &kind));
    SF_CALL(sf_rd_u32(&r, &nbins));
    SF_CALL(sf_rd_u64(&r, &hash));
    SF_CHECK(kind == s->lay.kind && nbins == s->lay.nbins && hash == s->edges_hash, SF_ERR_PARSE,
             "histogram state: made with other bins (%u of kind %u, expected %u of kind %u)", nbins, kind,
             s->lay.nbins, (unsigned)s->lay.kind);
    SF_CALL(sf_rd_u64(&r, &ng));
    SF_CHECK(s->groups.nby != 0 || ng == 1, SF_ERR_PARSE, "histogram state: %llu groups without by:",
             (unsigned long long)ng);
    SF_CHECK(ng <= (n - r.off) / (4 + 8 * s->stride), SF_ERR_PARSE,
             "histogram state: %llu groups in %zu bytes", (unsigned long long)ng, n);

    s->ng = 0;
    SF_CALL(sf__groups_clear(&s->groups));
    SF_CALL(sync_groups(s));
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < ng; i++) {
        uint32_t gi;
        SF_CALL(sf__groups_decode_key(&s->groups, &r, &prev, &prev_len, &gi));
        SF_CALL(sync_groups(s));
        uint64_t *g = s->c + (size_t)gi * s->stride;
        for (size_t j = 0; j < s->stride; j++) SF_CALL(sf_rd_u64(&r, &g[j]));
        SF_CHECK(s->lay.kind == LAYOUT_LOG || g[C_NONPOS] == 0, SF_ERR_PARSE,
                 "histogram state: nonpositive values counted without log bins");
    }
    SF_CHECK(r.off == n, SF_ERR_PARSE, "histogram state: %zu trailing bytes", n - r.off);
    return SF_OK;
}

/* ---- report and statistics ---------------------------------------------------- */

/* Non-null values: every counter but the nulls. */
static uint64_t group_count(const histogram_state *s, const uint64_t *g)
{
    uint64_t n = 0;
    for (size_t j = C_NAN; j < s->stride; j++) n += g[j];
    return n;
}

static void write_group(const histogram_state *s, sf_json *j, const uint64_t *g)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "count");
    sf_json_uint(j, group_count(s, g));
    sf_json_key(j, "nulls");
    sf_json_uint(j, g[C_NULLS]);
    sf_json_key(j, "edges");
    sf_json_arr_begin(j);
    for (uint32_t k = 0; k <= s->lay.nbins; k++) sf_json_num(j, s->lay.edges[k]);
    sf_json_arr_end(j);
    sf_json_key(j, "counts");
    sf_json_arr_begin(j);
    for (uint32_t k = 0; k < s->lay.nbins; k++) sf_json_uint(j, g[C_BINS + k]);
    sf_json_arr_end(j);
    sf_json_key(j, "underflow");
    sf_json_uint(j, g[C_UNDER]);
    sf_json_key(j, "overflow");
    sf_json_uint(j, g[C_OVER]);
    sf_json_key(j, "nan");
    sf_json_uint(j, g[C_NAN]);
    if (s->lay.kind == LAYOUT_LOG) {
        sf_json_key(j, "nonpositive");
        sf_json_uint(j, g[C_NONPOS]);
    }
    sf_json_obj_end(j);
}

static sf_status histogram_report(const void *state, sf_json *j)
{
    const histogram_state *s = state;
    if (s->groups.nby == 0) {
        write_group(s, j, s->c);
        return j->rc;
    }
    sf_status rc = SF_OK;
    sf_buf text;
    sf_buf_init(&text);
    uint32_t *order = NULL;
    size_t *toff = NULL, *tlen = NULL;
    uint64_t *tmp = NULL;
    SF_CALL_GOTO(sf__groups_text_order(&s->groups, &text, &order, &toff, &tlen), done);
    sf_json_obj_begin(j);
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    for (uint32_t i = 0; i < s->groups.n;) {
        /* Printed keys are unique; should two ever print alike they are one group. */
        uint32_t e = i + 1, a = order[i];
        while (e < s->groups.n && tlen[order[e]] == tlen[a] &&
               memcmp(text.data + toff[order[e]], text.data + toff[a], tlen[a]) == 0)
            e++;
        const uint64_t *g = s->c + (size_t)a * s->stride;
        if (e > i + 1) {
            if (tmp == NULL) tmp = malloc(s->stride * sizeof *tmp);
            SF_CHECK_GOTO(tmp != NULL, SF_ERR_NOMEM, done, "histogram: out of memory reporting");
            memset(tmp, 0, s->stride * sizeof *tmp);
            for (uint32_t k = i; k < e; k++)
                for (size_t x = 0; x < s->stride; x++) tmp[x] += s->c[(size_t)order[k] * s->stride + x];
            g = tmp;
        }
        sf_json_keyn(j, (const char *)text.data + toff[a], tlen[a]);
        write_group(s, j, g);
        i = e;
    }
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(tmp);
    free(order);
    free(toff);
    free(tlen);
    sf_buf_fini(&text);
    return rc;
}

static sf_status histogram_stat(const void *state, const uint8_t *key, size_t keylen,
                                const char *name, double *out)
{
    const histogram_state *s = state;
    const char *id = s->cfg->id ? s->cfg->id : "histogram";
    bool rows = strcmp(name, "rows") == 0;
    SF_CHECK(rows || strcmp(name, "count") == 0, SF_ERR_ARG,
             "histogram '%s': no statistic '%s' (it has count, rows)", id, name);
    uint64_t count = 0, nulls = 0;
    if (key == NULL) {
        for (uint32_t i = 0; i < s->ng; i++) {
            count += group_count(s, s->c + (size_t)i * s->stride);
            nulls += s->c[(size_t)i * s->stride + C_NULLS];
        }
    } else {
        uint32_t gi = sf__groups_lookup(&s->groups, key, keylen);
        SF_CHECK(gi != SF__NO_GROUP && gi < s->ng, SF_ERR_ARG, "histogram '%s': no group with that key", id);
        count = group_count(s, s->c + (size_t)gi * s->stride);
        nulls = s->c[(size_t)gi * s->stride + C_NULLS];
    }
    *out = (double)(rows ? count + nulls : count);
    return SF_OK;
}

const sf_agent_ops sf__agent_histogram = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "histogram",
    .aspect = "performance",
    .state_size = sizeof(histogram_state),
    .check = histogram_check,
    .init = histogram_init,
    .process = histogram_process,
    .merge = histogram_merge,
    .encode = histogram_encode,
    .decode = histogram_decode,
    .report = histogram_report,
    .destroy = histogram_destroy,
    .columns = NULL,
    .stat = histogram_stat,
};
