/* The `distinct` agent: the approximate number of distinct values of a
 * column of any type, optionally grouped by key columns, as a HyperLogLog.
 *
 * A value is hashed with XXH3_64bits_withSeed(bytes, seed 0) of its
 * canonical bytes: a string's bytes; a number's 8 little-endian bytes
 * (int64 and timestamps as two's complement, float64 as IEEE bits with -0
 * as +0 and one NaN). The seed is fixed rather than the workflow's seed:,
 * so that sketches of different runs stay comparable. With m = 2^p
 * registers, the top p bits of the hash choose the register and the rank
 * is the number of leading zeros of the remaining 64 - p bits plus one
 * (65 - p when they are all zero); a register keeps the largest rank it has
 * seen, so merging takes the maximum: exactly associative and commutative.
 *
 * Small groups (grouping by a key with many values, such as a client
 * address, gives many) keep their nonzero registers as (index, rank)
 * entries of a small hash table while fewer than m/8 registers are
 * nonzero, and switch to m dense bytes when the m/8-th becomes nonzero.
 * Registers never decrease, so the form is a function of the register
 * contents alone, and the encoding (sorted entries while sparse, the m
 * bytes once dense) is too: equal registers encode to equal bytes whatever
 * the history of the state.
 *
 * Estimate: the classic one of Flajolet et al. With Z = sum over registers
 * of 2^-M[j] and alpha_m = 0.673, 0.697, 0.709 for m = 16, 32, 64 and
 * 0.7213 / (1 + 1.079 / m) above, E = alpha_m m^2 / Z; when E <= 2.5 m and
 * V > 0 registers are zero, linear counting E = m ln(m / V) replaces it.
 * No large-range correction: a 64-bit hash does not saturate. The relative
 * standard error reported is 1.04 / sqrt(m). Z is summed from a histogram
 * of the ranks in a fixed order, so the estimate does not depend on the
 * order of the entries. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/groups.h"
#include "agents/sketch_agents.h"

#define DISTINCT_FORMAT 1
#define RANK_BITS 6 /* ranks are at most 65 - 4 = 61 */
#define RANK_MASK ((1u << RANK_BITS) - 1)
#define CANONICAL_NAN 0x7FF8000000000000ull

typedef struct hgroup {
    uint64_t count;   /* non-null values */
    uint64_t nulls;
    uint32_t nz;      /* nonzero registers */
    uint32_t scap;    /* slots of sparse (a power of two), 0 if none */
    uint32_t *sparse; /* entries index << RANK_BITS | rank, 0 = empty slot */
    uint8_t *dense;   /* m registers once nz >= m / 8, else NULL */
} hgroup;

typedef struct distinct_state {
    const sf_agent_config *cfg;
    int col;
    int p;
    uint32_t m;
    uint32_t sparse_max; /* m / 8: the form is sparse while nz < sparse_max */
    uint8_t max_rank;    /* 65 - p */
    sf__groups groups;
    hgroup *g;
    uint32_t ng, gcap;
} distinct_state;

/* ---- registers ----------------------------------------------------------- */

static void group_init(hgroup *g)
{
    memset(g, 0, sizeof *g);
}

static void group_fini(hgroup *g)
{
    free(g->sparse);
    free(g->dense);
    memset(g, 0, sizeof *g);
}

static sf_status to_dense(const distinct_state *s, hgroup *g)
{
    uint8_t *d = calloc(s->m, 1);
    SF_CHECK(d != NULL, SF_ERR_NOMEM, "distinct: out of memory for %u registers", s->m);
    for (uint32_t h = 0; h < g->scap; h++)
        if (g->sparse[h] != 0) d[g->sparse[h] >> RANK_BITS] = (uint8_t)(g->sparse[h] & RANK_MASK);
    free(g->sparse);
    g->sparse = NULL;
    g->scap = 0;
    g->dense = d;
    return SF_OK;
}

static sf_status sparse_grow(hgroup *g, uint32_t scap)
{
    uint32_t *t = calloc(scap, sizeof *t);
    SF_CHECK(t != NULL, SF_ERR_NOMEM, "distinct: out of memory for %u sparse registers", scap);
    uint32_t mask = scap - 1;
    for (uint32_t h = 0; h < g->scap; h++) {
        uint32_t e = g->sparse[h];
        if (e == 0) continue;
        uint32_t k = (e >> RANK_BITS) & mask;
        while (t[k] != 0) k = (k + 1) & mask;
        t[k] = e;
    }
    free(g->sparse);
    g->sparse = t;
    g->scap = scap;
    return SF_OK;
}

/* Raises register idx to rank if that is larger. */
static inline sf_status group_set(const distinct_state *s, hgroup *g, uint32_t idx, uint32_t rank)
{
    if (g->dense != NULL) {
        uint8_t old = g->dense[idx];
        if (rank > old) {
            g->nz += old == 0;
            g->dense[idx] = (uint8_t)rank;
        }
        return SF_OK;
    }
    /* Register indices are hash bits, uniform already: they index the
     * table directly. */
    uint32_t h = 0;
    if (g->scap != 0) {
        uint32_t mask = g->scap - 1;
        for (h = idx & mask; g->sparse[h] != 0; h = (h + 1) & mask) {
            uint32_t e = g->sparse[h];
            if ((e >> RANK_BITS) != idx) continue;
            if (rank > (e & RANK_MASK)) g->sparse[h] = idx << RANK_BITS | rank;
            return SF_OK;
        }
    }
    if (g->nz + 1 >= s->sparse_max) {
        SF_CALL(to_dense(s, g));
        g->dense[idx] = (uint8_t)rank;
        g->nz++;
        return SF_OK;
    }
    if ((g->nz + 1) * 2 > g->scap) {
        SF_CALL(sparse_grow(g, g->scap ? g->scap * 2 : 8));
        uint32_t mask = g->scap - 1;
        for (h = idx & mask; g->sparse[h] != 0; h = (h + 1) & mask) {
        }
    }
    g->sparse[h] = idx << RANK_BITS | rank;
    g->nz++;
    return SF_OK;
}

static inline sf_status group_add_hash(const distinct_state *s, hgroup *g, uint64_t h)
{
    uint32_t idx = (uint32_t)(h >> (64 - s->p));
    uint64_t rest = h << s->p;
    uint32_t rank = rest == 0 ? s->max_rank : (uint32_t)__builtin_clzll(rest) + 1;
    g->count++;
    return group_set(s, g, idx, rank);
}

static sf_status group_merge(const distinct_state *s, hgroup *into, const hgroup *from)
{
    into->count += from->count;
    into->nulls += from->nulls;
    if (from->dense != NULL) {
        if (into->dense == NULL) SF_CALL(to_dense(s, into));
        uint32_t nz = 0;
        for (uint32_t j = 0; j < s->m; j++) {
            uint8_t r = from->dense[j] > into->dense[j] ? from->dense[j] : into->dense[j];
            into->dense[j] = r;
            nz += r != 0;
        }
        into->nz = nz;
        return SF_OK;
    }
    for (uint32_t h = 0; h < from->scap; h++) {
        uint32_t e = from->sparse[h];
        if (e != 0) SF_CALL(group_set(s, into, e >> RANK_BITS, e & RANK_MASK));
    }
    return SF_OK;
}

/* The estimate of the number of distinct values (see the top comment). */
static double group_estimate(const distinct_state *s, const hgroup *g)
{
    uint64_t hist[64] = {0};
    hist[0] = s->m - g->nz;
    if (g->dense != NULL) {
        for (uint32_t j = 0; j < s->m; j++)
            if (g->dense[j] != 0) hist[g->dense[j]]++;
    } else {
        for (uint32_t h = 0; h < g->scap; h++)
            if (g->sparse[h] != 0) hist[g->sparse[h] & RANK_MASK]++;
    }
    double z = 0.0;
    for (int r = 63; r >= 0; r--) z += ldexp((double)hist[r], -r);
    double m = (double)s->m;
    double am = s->m == 16 ? 0.673 : s->m == 32 ? 0.697 : s->m == 64 ? 0.709 : 0.7213 / (1.0 + 1.079 / m);
    double e = am * m * m / z;
    if (e <= 2.5 * m && hist[0] > 0) e = m * log(m / (double)hist[0]);
    return e;
}

static double group_distinct(const distinct_state *s, const hgroup *g)
{
    return (double)llround(group_estimate(s, g));
}

/* ---- groups ---------------------------------------------------------------- */

static sf_status sync_groups(distinct_state *s)
{
    uint32_t n = s->groups.n;
    if (n <= s->ng) return SF_OK;
    if (n > s->gcap) {
        uint32_t cap = s->gcap ? s->gcap : 16;
        while (cap < n) cap *= 2;
        hgroup *g = realloc(s->g, (size_t)cap * sizeof *g);
        SF_CHECK(g != NULL, SF_ERR_NOMEM, "distinct: out of memory for %u groups", cap);
        s->g = g;
        s->gcap = cap;
    }
    for (uint32_t i = s->ng; i < n; i++) group_init(&s->g[i]);
    s->ng = n;
    return SF_OK;
}

/* ---- agent functions --------------------------------------------------------- */

static const sf_type any_types[] = {SF_INT64, SF_FLOAT64, SF_STRING, SF_TIMESTAMP};

static sf_status distinct_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"precision"};
    SF_CALL(sf_agent_check_options(cfg, allowed, 1));
    int col;
    SF_CALL(sf__sketch_check_columns(cfg, any_types, 4, &col));
    int64_t p;
    return sf_agent_opt_int(cfg, "precision", 14, 4, 18, &p);
}

static void distinct_destroy(void *state)
{
    distinct_state *s = state;
    for (uint32_t i = 0; i < s->ng; i++) group_fini(&s->g[i]);
    free(s->g);
    sf__groups_fini(&s->groups);
    memset(s, 0, sizeof *s);
}

static sf_status distinct_init(void *state, const sf_agent_config *cfg)
{
    distinct_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->schema != NULL, SF_ERR_ARG, "distinct: configuration was not checked");
    int col;
    int64_t p;
    SF_CALL(sf__sketch_check_columns(cfg, any_types, 4, &col));
    SF_CALL(sf_agent_opt_int(cfg, "precision", 14, 4, 18, &p));
    s->cfg = cfg;
    s->col = col;
    s->p = (int)p;
    s->m = 1u << s->p;
    s->sparse_max = s->m / 8;
    s->max_rank = (uint8_t)(65 - s->p);
    SF_CALL(sf__groups_init(&s->groups, cfg->schema, cfg->by_col, cfg->nby));
    sf_status rc = sync_groups(s);
    if (rc != SF_OK) distinct_destroy(s);
    return rc;
}

/* The hash of row r's value (see the top comment). */
static inline uint64_t value_hash(const sf_column *c, size_t r)
{
    uint8_t b[8];
    uint64_t bits;
    switch (c->type) {
    case SF_STRING: {
        size_t n;
        const char *str = sf_dict_str(&c->dict, c->code[r], &n);
        return XXH3_64bits_withSeed(str, n, 0);
    }
    case SF_FLOAT64: {
        double v = c->f64[r];
        if (v == 0.0) v = 0.0; /* -0 is +0 */
        memcpy(&bits, &v, sizeof bits);
        if (isnan(v)) bits = CANONICAL_NAN;
        break;
    }
    default:
        bits = (uint64_t)c->i64[r];
        break;
    }
    sf_store_u64(b, bits);
    return XXH3_64bits_withSeed(b, sizeof b, 0);
}

static sf_status distinct_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    distinct_state *s = state;
    SF_CALL(sf__sketch_check_rows(b, rows));
    SF_CHECK(s->col < b->ncols && b->cols[s->col].loaded, SF_ERR_INTERNAL,
             "distinct: column '%s' is not loaded", s->cfg->column);
    const sf_column *c = &b->cols[s->col];
    if (s->groups.nby == 0) {
        hgroup *g = &s->g[0];
        for (size_t i = 0; i < rows->n; i++) {
            size_t r = sf_rows_at(rows, i);
            if (sf_col_is_null(c, r))
                g->nulls++;
            else
                SF_CALL(group_add_hash(s, g, value_hash(c, r)));
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
        hgroup *g = &s->g[gi[i]];
        if (sf_col_is_null(c, r))
            g->nulls++;
        else
            SF_CALL(group_add_hash(s, g, value_hash(c, r)));
    }
    return SF_OK;
}

static sf_status distinct_merge(void *into, const void *from)
{
    distinct_state *a = into;
    const distinct_state *f = from;
    SF_CHECK(a->groups.nby == f->groups.nby && a->p == f->p, SF_ERR_INTERNAL,
             "distinct: merging states of different shapes");
    uint32_t *map;
    bool created;
    SF_CALL(sf__groups_map(&a->groups, &f->groups, f->ng, &map, &created));
    sf_status rc = created ? sync_groups(a) : SF_OK;
    for (uint32_t i = 0; rc == SF_OK && i < f->ng; i++) rc = group_merge(a, &a->g[map[i]], &f->g[i]);
    free(map);
    return rc;
}

static int cmp_u32(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* Sparse: nz entries (u32 index, u8 rank) by ascending index; dense: the m
 * registers. nz tells which. */
static sf_status encode_group(const distinct_state *s, const hgroup *g, uint32_t *scratch,
                              sf_buf *out)
{
    SF_CALL(sf_buf_put_u64(out, g->count));
    SF_CALL(sf_buf_put_u64(out, g->nulls));
    SF_CALL(sf_buf_put_u32(out, g->nz));
    if (g->dense != NULL) return sf_buf_append(out, g->dense, s->m);
    uint32_t n = 0;
    for (uint32_t h = 0; h < g->scap; h++)
        if (g->sparse[h] != 0) scratch[n++] = g->sparse[h];
    SF_CHECK(n == g->nz, SF_ERR_INTERNAL, "distinct: %u sparse entries, %u counted", n, g->nz);
    /* Indices are unique, so entries sort by index. */
    qsort(scratch, n, sizeof *scratch, cmp_u32);
    for (uint32_t i = 0; i < n; i++) {
        SF_CALL(sf_buf_put_u32(out, scratch[i] >> RANK_BITS));
        SF_CALL(sf_buf_put_u8(out, (uint8_t)(scratch[i] & RANK_MASK)));
    }
    return SF_OK;
}

static sf_status distinct_encode(const void *state, sf_buf *out)
{
    const distinct_state *s = state;
    uint32_t *order = NULL;
    uint32_t *scratch = NULL;
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sf__groups_sorted(&s->groups, &order), done);
    scratch = malloc((size_t)s->sparse_max * sizeof *scratch);
    SF_CHECK_GOTO(scratch != NULL, SF_ERR_NOMEM, done, "distinct: out of memory encoding");
    SF_CALL_GOTO(sf_buf_put_u8(out, DISTINCT_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->groups.nby), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->p), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->ng), done);
    for (uint32_t i = 0; i < s->ng; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&s->groups, order[i], &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        SF_CALL_GOTO(encode_group(s, &s->g[order[i]], scratch, out), done);
    }
done:
    free(order);
    free(scratch);
    return rc;
}

static sf_status decode_group(const distinct_state *s, sf_rd *r, hgroup *g)
{
    uint32_t nz;
    SF_CALL(sf_rd_u64(r, &g->count));
    SF_CALL(sf_rd_u64(r, &g->nulls));
    SF_CALL(sf_rd_u32(r, &nz));
    SF_CHECK(nz <= s->m, SF_ERR_PARSE, "distinct state: %u nonzero registers of %u", nz, s->m);
    if (nz >= s->sparse_max) {
        const uint8_t *d;
        SF_CALL(sf_rd_bytes(r, s->m, &d));
        uint32_t seen = 0;
        for (uint32_t j = 0; j < s->m; j++) {
            SF_CHECK(d[j] <= s->max_rank, SF_ERR_PARSE, "distinct state: rank %u above %u", d[j],
                     s->max_rank);
            seen += d[j] != 0;
        }
        SF_CHECK(seen == nz, SF_ERR_PARSE, "distinct state: %u nonzero registers, %u announced", seen, nz);
        g->dense = malloc(s->m);
        SF_CHECK(g->dense != NULL, SF_ERR_NOMEM, "distinct: out of memory for %u registers", s->m);
        memcpy(g->dense, d, s->m);
        g->nz = nz;
    } else {
        SF_CHECK(nz <= (r->n - r->off) / 5, SF_ERR_PARSE, "distinct state: %u entries in %zu bytes", nz,
                 r->n - r->off);
        int64_t prev = -1;
        for (uint32_t i = 0; i < nz; i++) {
            uint32_t idx;
            uint8_t rank;
            SF_CALL(sf_rd_u32(r, &idx));
            SF_CALL(sf_rd_u8(r, &rank));
            SF_CHECK((int64_t)idx > prev && idx < s->m, SF_ERR_PARSE,
                     "distinct state: register %u out of order or range", idx);
            SF_CHECK(rank >= 1 && rank <= s->max_rank, SF_ERR_PARSE, "distinct state: rank %u", rank);
            prev = idx;
            SF_CALL(group_set(s, g, idx, rank));
        }
    }
    SF_CHECK(g->count >= g->nz, SF_ERR_PARSE, "distinct state: %u registers set by %llu values", g->nz,
             (unsigned long long)g->count);
    return SF_OK;
}

static sf_status distinct_decode(void *state, const void *bytes, size_t n)
{
    distinct_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, nby, p;
    uint64_t ng;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == DISTINCT_FORMAT, SF_ERR_PARSE, "distinct state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &nby));
    SF_CHECK(nby == s->groups.nby, SF_ERR_PARSE, "distinct state: %u key columns, expected %d", nby,
             s->groups.nby);
    SF_CALL(sf_rd_u8(&r, &p));
    SF_CHECK(p == s->p, SF_ERR_PARSE, "distinct state: precision %u, expected %d", p, s->p);
    SF_CALL(sf_rd_u64(&r, &ng));
    SF_CHECK(s->groups.nby != 0 || ng == 1, SF_ERR_PARSE, "distinct state: %llu groups without by:",
             (unsigned long long)ng);
    /* Every group takes at least 4 + 2 * 8 + 4 bytes. */
    SF_CHECK(ng <= (n - r.off) / 24, SF_ERR_PARSE, "distinct state: %llu groups in %zu bytes",
             (unsigned long long)ng, n);

    for (uint32_t i = 0; i < s->ng; i++) group_fini(&s->g[i]);
    s->ng = 0;
    SF_CALL(sf__groups_clear(&s->groups));
    SF_CALL(sync_groups(s));
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < ng; i++) {
        uint32_t gi;
        SF_CALL(sf__groups_decode_key(&s->groups, &r, &prev, &prev_len, &gi));
        SF_CALL(sync_groups(s));
        SF_CALL(decode_group(s, &r, &s->g[gi]));
    }
    SF_CHECK(r.off == n, SF_ERR_PARSE, "distinct state: %zu trailing bytes", n - r.off);
    return SF_OK;
}

/* ---- report and statistics --------------------------------------------------- */

static void write_group(const distinct_state *s, sf_json *j, const hgroup *g)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "count");
    sf_json_uint(j, g->count);
    sf_json_key(j, "distinct");
    sf_json_uint(j, (uint64_t)group_distinct(s, g));
    sf_json_key(j, "nulls");
    sf_json_uint(j, g->nulls);
    sf_json_key(j, "precision");
    sf_json_int(j, s->p);
    sf_json_key(j, "standard_error");
    sf_json_num(j, 1.04 / sqrt((double)s->m));
    sf_json_obj_end(j);
}

static sf_status distinct_report(const void *state, sf_json *j)
{
    const distinct_state *s = state;
    if (s->groups.nby == 0) {
        write_group(s, j, &s->g[0]);
        return j->rc;
    }
    sf_status rc = SF_OK;
    sf_buf text;
    sf_buf_init(&text);
    uint32_t *order = NULL;
    size_t *toff = NULL, *tlen = NULL;
    hgroup tmp;
    group_init(&tmp);
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
        const hgroup *g = &s->g[a];
        if (e > i + 1) {
            group_fini(&tmp);
            for (uint32_t k = i; k < e; k++) SF_CALL_GOTO(group_merge(s, &tmp, &s->g[order[k]]), done);
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

static sf_status distinct_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                               double *out)
{
    const distinct_state *s = state;
    const char *id = s->cfg->id ? s->cfg->id : "distinct";
    SF_CHECK(strcmp(name, "distinct") == 0 || strcmp(name, "rows") == 0 || strcmp(name, "count") == 0,
             SF_ERR_ARG, "distinct '%s': no statistic '%s' (it has distinct, rows, count)", id, name);
    const hgroup *g;
    hgroup all;
    group_init(&all);
    sf_status rc = SF_OK;
    if (key == NULL) {
        /* The whole state: the union of every group's registers. */
        for (uint32_t i = 0; i < s->ng; i++) SF_CALL_GOTO(group_merge(s, &all, &s->g[i]), done);
        g = &all;
    } else {
        uint32_t gi = sf__groups_lookup(&s->groups, key, keylen);
        SF_CHECK_GOTO(gi != SF__NO_GROUP && gi < s->ng, SF_ERR_ARG, done,
                      "distinct '%s': no group with that key", id);
        g = &s->g[gi];
    }
    if (strcmp(name, "distinct") == 0)
        *out = group_distinct(s, g);
    else if (strcmp(name, "rows") == 0)
        *out = (double)(g->count + g->nulls);
    else
        *out = (double)g->count;
done:
    group_fini(&all);
    return rc;
}

const sf_agent_ops sf__agent_distinct = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "distinct",
    .aspect = "business",
    .state_size = sizeof(distinct_state),
    .check = distinct_check,
    .init = distinct_init,
    .process = distinct_process,
    .merge = distinct_merge,
    .encode = distinct_encode,
    .decode = distinct_decode,
    .report = distinct_report,
    .destroy = distinct_destroy,
    .columns = NULL,
    .stat = distinct_stat,
};
