/* An example agent plugin: `range_count` counts the values of a numeric
 * column that fall below, inside and above the half-open range [lo, hi),
 * optionally grouped by key columns.
 *
 *   plugins: [path/to/sf_example_agent.so]
 *   stages:
 *     - name: profile
 *       agents:
 *         - {agent: range_count, id: fast, column: latency_ms, lo: 0, hi: 100, by: [service]}
 *
 * Its result is {"in_range": N, "below": N, "above": N, "missing": N}
 * (missing: null or NaN), or {"groups": {KEY: {...}}} with by:, the keys
 * printed as the built-in agents print them and in the same order.
 *
 * It is written against the public headers only (agent.h, batch.h, buf.h,
 * json.h, config.h for the option nodes) and resolves every shardflow
 * function against the executable that loads it. The state is a table from
 * a group's canonical key (sf_agent_row_key) to four counters; counts add
 * exactly, so merge is associative and commutative, and the encoding lists
 * groups in byte order of their keys, so equal states encode to equal
 * bytes whatever the order rows and states met in. Integer and timestamp
 * values are compared with lo and hi as doubles (exact below 2^53). */
#define _POSIX_C_SOURCE 200809L
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/plugin.h"

#define RANGE_COUNT_FORMAT 1

enum { IN_RANGE, BELOW, ABOVE, MISSING, NCOUNTS };
static const char *const count_names[NCOUNTS] = {"in_range", "below", "above", "missing"};

typedef struct counts {
    uint64_t n[NCOUNTS];
} counts;

typedef struct rc_state {
    const sf_agent_config *cfg;
    int col;              /* the value column in the pass schema */
    int nby;
    double lo, hi;
    /* Groups 0 .. ngroups - 1 in order of first appearance. */
    uint32_t ngroups, cap;
    size_t *off;          /* key of group i: keys.data + off[i], len[i] bytes */
    uint32_t *len;
    uint64_t *hash;
    counts *cnt;
    sf_buf keys;
    uint32_t *slots;      /* open addressing: group + 1, 0 = empty */
    uint32_t nslots;      /* power of two, at least twice ngroups */
    uint8_t *scratch;     /* key of the current row */
    size_t scratch_cap;
} rc_state;

/* ---- the group table ----------------------------------------------------- */

/* FNV-1a with a final mix: the keys are short and the table is private. */
static uint64_t key_hash(const uint8_t *k, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ k[i]) * 0x100000001b3ull;
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    return h ^ (h >> 33);
}

static bool key_eq(const rc_state *s, uint32_t g, const uint8_t *k, size_t n, uint64_t h)
{
    return s->hash[g] == h && s->len[g] == n && (n == 0 || memcmp(s->keys.data + s->off[g], k, n) == 0);
}

static sf_status rehash(rc_state *s, uint32_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    SF_CHECK(slots != NULL, SF_ERR_NOMEM, "range_count: out of memory for %u slots", nslots);
    for (uint32_t g = 0; g < s->ngroups; g++) {
        uint32_t i = (uint32_t)s->hash[g] & (nslots - 1);
        while (slots[i] != 0) i = (i + 1) & (nslots - 1);
        slots[i] = g + 1;
    }
    free(s->slots);
    s->slots = slots;
    s->nslots = nslots;
    return SF_OK;
}

static sf_status grow(rc_state *s)
{
    uint32_t cap = s->cap ? 2 * s->cap : 16;
    SF_CHECK(cap > s->cap && cap <= UINT32_MAX / 4, SF_ERR_NOMEM, "range_count: too many groups");
    size_t *off = realloc(s->off, cap * sizeof *off);
    if (off) s->off = off;
    uint32_t *len = realloc(s->len, cap * sizeof *len);
    if (len) s->len = len;
    uint64_t *hash = realloc(s->hash, cap * sizeof *hash);
    if (hash) s->hash = hash;
    counts *cnt = realloc(s->cnt, cap * sizeof *cnt);
    if (cnt) s->cnt = cnt;
    SF_CHECK(off && len && hash && cnt, SF_ERR_NOMEM, "range_count: out of memory for %u groups", cap);
    s->cap = cap;
    return rehash(s, 2 * cap);
}

/* The group of key k[0..n) without creating it: UINT32_MAX if absent. */
static uint32_t lookup(const rc_state *s, const uint8_t *k, size_t n, uint64_t h)
{
    if (s->nslots == 0) return UINT32_MAX;
    for (uint32_t i = (uint32_t)h & (s->nslots - 1);; i = (i + 1) & (s->nslots - 1)) {
        uint32_t g = s->slots[i];
        if (g == 0) return UINT32_MAX;
        if (key_eq(s, g - 1, k, n, h)) return g - 1;
    }
}

/* The group of key k[0..n), created with zero counts if new. */
static sf_status find_or_add(rc_state *s, const uint8_t *k, size_t n, uint32_t *out)
{
    uint64_t h = key_hash(k, n);
    uint32_t g = lookup(s, k, n, h);
    if (g != UINT32_MAX) {
        *out = g;
        return SF_OK;
    }
    SF_CHECK(n <= UINT32_MAX, SF_ERR_ARG, "range_count: a key of %zu bytes", n);
    if (s->ngroups == s->cap) SF_CALL(grow(s));
    g = s->ngroups;
    s->off[g] = s->keys.len;
    SF_CALL(sf_buf_append(&s->keys, k, n));
    s->len[g] = (uint32_t)n;
    s->hash[g] = h;
    memset(&s->cnt[g], 0, sizeof s->cnt[g]);
    uint32_t i = (uint32_t)h & (s->nslots - 1);
    while (s->slots[i] != 0) i = (i + 1) & (s->nslots - 1);
    s->slots[i] = g + 1;
    s->ngroups++;
    *out = g;
    return SF_OK;
}

/* Forgets every group; an ungrouped state keeps its one group (the empty key). */
static sf_status clear_groups(rc_state *s)
{
    s->ngroups = 0;
    sf_buf_clear(&s->keys);
    if (s->slots) memset(s->slots, 0, s->nslots * sizeof *s->slots);
    uint32_t g;
    return s->nby == 0 ? find_or_add(s, NULL, 0, &g) : SF_OK;
}

/* ---- ordering -------------------------------------------------------------- */

typedef struct keyref {
    const uint8_t *p;
    size_t n;
    uint32_t g;
} keyref;

/* Byte order, a prefix before its extensions. */
static int bytes_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return na < nb ? -1 : na > nb;
}

static int keyref_cmp(const void *x, const void *y)
{
    const keyref *a = x, *b = y;
    return bytes_cmp(a->p, a->n, b->p, b->n);
}

/* The groups in byte order of their keys: a malloc'ed array. */
static sf_status sorted_groups(const rc_state *s, keyref **out)
{
    keyref *r = malloc(sizeof *r * (s->ngroups ? s->ngroups : 1));
    SF_CHECK(r != NULL, SF_ERR_NOMEM, "range_count: out of memory");
    for (uint32_t g = 0; g < s->ngroups; g++) r[g] = (keyref){s->keys.data + s->off[g], s->len[g], g};
    qsort(r, s->ngroups, sizeof *r, keyref_cmp);
    *out = r;
    return SF_OK;
}

/* ---- options --------------------------------------------------------------- */

static const char *file_of(const sf_agent_config *cfg) { return cfg->file ? cfg->file : "<workflow>"; }
static const char *id_of(const sf_agent_config *cfg) { return cfg->id ? cfg->id : "range_count"; }

/* The line of option key (the agent's line when it is absent). */
static int line_of(const sf_agent_config *cfg, const char *key)
{
    const sf_cfg_node *v = sf_agent_option(cfg, key);
    return v != NULL && v->line > 0 ? v->line : cfg->line;
}

static sf_status read_bounds(const sf_agent_config *cfg, double *lo, double *hi)
{
    SF_CALL(sf_agent_opt_double(cfg, "lo", NAN, -DBL_MAX, DBL_MAX, lo));
    SF_CALL(sf_agent_opt_double(cfg, "hi", NAN, -DBL_MAX, DBL_MAX, hi));
    SF_CHECK(!isnan(*lo), SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'lo' is required (range_count counts the values in [lo, hi))",
             file_of(cfg), cfg->line, id_of(cfg));
    SF_CHECK(!isnan(*hi), SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'hi' is required (range_count counts the values in [lo, hi))",
             file_of(cfg), cfg->line, id_of(cfg));
    SF_CHECK(*lo < *hi, SF_ERR_CONFIG, "%s:%d: agent '%s': option 'hi': %.17g must be greater than lo (%.17g)",
             file_of(cfg), line_of(cfg, "hi"), id_of(cfg), *hi, *lo);
    return SF_OK;
}

static const sf_type numeric[] = {SF_INT64, SF_FLOAT64, SF_TIMESTAMP};

static sf_status rc_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"lo", "hi"};
    SF_CALL(sf_agent_check_options(cfg, allowed, 2));
    int col;
    SF_CALL(sf_agent_need_col(cfg, "column", cfg->column, numeric, 3, &col));
    double lo, hi;
    SF_CALL(read_bounds(cfg, &lo, &hi));
    SF_CHECK(cfg->nby >= 0 && cfg->nby <= 255 && (cfg->nby == 0 || cfg->by_col != NULL), SF_ERR_CONFIG,
             "%s:%d: agent '%s': by: takes 1 to 255 columns", file_of(cfg), cfg->line, id_of(cfg));
    for (int i = 0; i < cfg->nby; i++)
        SF_CHECK(cfg->schema != NULL && cfg->by_col[i] >= 0 && cfg->by_col[i] < cfg->schema->ncols,
                 SF_ERR_CONFIG, "%s:%d: agent '%s': by column '%s' is not in the input", file_of(cfg),
                 cfg->line, id_of(cfg), cfg->by && cfg->by[i] ? cfg->by[i] : "?");
    return SF_OK;
}

/* ---- agent functions ------------------------------------------------------- */

static void rc_destroy(void *state)
{
    rc_state *s = state;
    free(s->off);
    free(s->len);
    free(s->hash);
    free(s->cnt);
    free(s->slots);
    free(s->scratch);
    sf_buf_fini(&s->keys);
    memset(s, 0, sizeof *s);
}

static sf_status rc_init(void *state, const sf_agent_config *cfg)
{
    rc_state *s = state;
    memset(s, 0, sizeof *s);
    sf_buf_init(&s->keys);
    SF_CHECK(cfg != NULL && cfg->schema != NULL && cfg->nby >= 0 && cfg->nby <= 255 &&
                 (cfg->nby == 0 || cfg->by_col != NULL),
             SF_ERR_ARG, "range_count: configuration was not checked");
    s->cfg = cfg;
    s->nby = cfg->nby;
    s->col = sf_agent_col(cfg, cfg->column);
    SF_CHECK(s->col >= 0, SF_ERR_ARG, "range_count: configuration was not checked");
    SF_CALL(read_bounds(cfg, &s->lo, &s->hi));
    /* Key bytes always have storage, so the empty key has an address. */
    sf_status rc = sf_buf_reserve(&s->keys, 64);
    if (rc == SF_OK) rc = grow(s);
    if (rc == SF_OK) rc = clear_groups(s);
    if (rc != SF_OK) rc_destroy(s);
    return rc;
}

static inline int classify(const rc_state *s, const sf_column *c, size_t r)
{
    if (sf_col_is_null(c, r)) return MISSING;
    double x = sf_col_as_double(c, r);
    if (isnan(x)) return MISSING;
    return x < s->lo ? BELOW : x >= s->hi ? ABOVE : IN_RANGE;
}

static sf_status rc_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    rc_state *s = state;
    SF_CHECK(s->col < b->ncols && b->cols[s->col].loaded, SF_ERR_INTERNAL,
             "range_count: column '%s' is not loaded", s->cfg->column);
    const sf_column *c = &b->cols[s->col];
    if (s->nby == 0) {
        counts *k = &s->cnt[0];
        for (size_t i = 0; i < rows->n; i++) k->n[classify(s, c, sf_rows_at(rows, i))]++;
        return SF_OK;
    }
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i), len;
        SF_CALL(sf_agent_row_key(b, s->cfg->by_col, s->nby, r, &s->scratch, &s->scratch_cap, &len));
        uint32_t g;
        SF_CALL(find_or_add(s, s->scratch, len, &g));
        s->cnt[g].n[classify(s, c, r)]++;
    }
    return SF_OK;
}

static sf_status rc_merge(void *into, const void *from)
{
    rc_state *a = into;
    const rc_state *f = from;
    SF_CHECK(a->nby == f->nby && memcmp(&a->lo, &f->lo, sizeof a->lo) == 0 &&
                 memcmp(&a->hi, &f->hi, sizeof a->hi) == 0,
             SF_ERR_INTERNAL, "range_count: merging states of different configurations");
    for (uint32_t g = 0; g < f->ngroups; g++) {
        uint32_t t;
        SF_CALL(find_or_add(a, f->keys.data + f->off[g], f->len[g], &t));
        for (int k = 0; k < NCOUNTS; k++) a->cnt[t].n[k] += f->cnt[g].n[k];
    }
    return SF_OK;
}

/* Format 1: u8 version, u8 key columns, f64 lo, f64 hi, u64 groups, then per
 * group in byte order of the keys: the key (u32 length, bytes) and the four
 * counts (u64 each). */
static sf_status rc_encode(const void *state, sf_buf *out)
{
    const rc_state *s = state;
    keyref *order = NULL;
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sorted_groups(s, &order), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, RANGE_COUNT_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->nby), done);
    SF_CALL_GOTO(sf_buf_put_f64(out, s->lo), done);
    SF_CALL_GOTO(sf_buf_put_f64(out, s->hi), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->ngroups), done);
    for (uint32_t i = 0; i < s->ngroups; i++) {
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)order[i].p, order[i].n), done);
        for (int k = 0; k < NCOUNTS; k++) SF_CALL_GOTO(sf_buf_put_u64(out, s->cnt[order[i].g].n[k]), done);
    }
done:
    free(order);
    return rc;
}

static sf_status rc_decode(void *state, const void *bytes, size_t n)
{
    rc_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, nby;
    double lo, hi;
    uint64_t ng;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == RANGE_COUNT_FORMAT, SF_ERR_PARSE, "range_count state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &nby));
    SF_CHECK(nby == s->nby, SF_ERR_PARSE, "range_count state: %u key columns, expected %d", nby, s->nby);
    SF_CALL(sf_rd_f64(&r, &lo));
    SF_CALL(sf_rd_f64(&r, &hi));
    SF_CHECK(memcmp(&lo, &s->lo, sizeof lo) == 0 && memcmp(&hi, &s->hi, sizeof hi) == 0, SF_ERR_PARSE,
             "range_count state: range [%.17g, %.17g), expected [%.17g, %.17g)", lo, hi, s->lo, s->hi);
    SF_CALL(sf_rd_u64(&r, &ng));
    SF_CHECK(s->nby != 0 || ng == 1, SF_ERR_PARSE, "range_count state: %llu groups without by:",
             (unsigned long long)ng);
    /* Every group takes at least 4 + 8 * NCOUNTS bytes. */
    SF_CHECK(ng <= (n - r.off) / (4 + 8 * NCOUNTS), SF_ERR_PARSE, "range_count state: %llu groups in %zu bytes",
             (unsigned long long)ng, n);
    s->ngroups = 0;
    sf_buf_clear(&s->keys);
    if (s->slots) memset(s->slots, 0, s->nslots * sizeof *s->slots);
    const char *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < ng; i++) {
        const char *k;
        size_t klen;
        SF_CALL(sf_rd_str(&r, &k, &klen));
        SF_CHECK(sf_agent_key_valid(s->cfg->schema, s->cfg->by_col, s->nby, (const uint8_t *)k, klen),
                 SF_ERR_PARSE, "range_count state: malformed key of group %llu", (unsigned long long)i);
        SF_CHECK(prev == NULL || bytes_cmp((const uint8_t *)prev, prev_len, (const uint8_t *)k, klen) < 0,
                 SF_ERR_PARSE, "range_count state: keys out of order at group %llu", (unsigned long long)i);
        prev = k;
        prev_len = klen;
        uint32_t g;
        SF_CALL(find_or_add(s, (const uint8_t *)k, klen, &g));
        for (int c = 0; c < NCOUNTS; c++) SF_CALL(sf_rd_u64(&r, &s->cnt[g].n[c]));
    }
    SF_CHECK(r.off == n, SF_ERR_PARSE, "range_count state: %zu trailing bytes", n - r.off);
    return SF_OK;
}

static void write_counts(sf_json *j, const counts *c)
{
    sf_json_obj_begin(j);
    for (int k = 0; k < NCOUNTS; k++) {
        sf_json_key(j, count_names[k]);
        sf_json_uint(j, c->n[k]);
    }
    sf_json_obj_end(j);
}

static sf_status rc_report(const void *state, sf_json *j)
{
    const rc_state *s = state;
    if (s->nby == 0) {
        write_counts(j, &s->cnt[0]);
        return j->rc;
    }
    /* Groups in byte order of their printed keys, as the built-ins list them. */
    sf_status rc = SF_OK;
    sf_buf text;
    sf_buf_init(&text);
    size_t *toff = malloc(sizeof *toff * (s->ngroups + 1u));
    keyref *order = malloc(sizeof *order * (s->ngroups + 1u));
    SF_CHECK_GOTO(toff != NULL && order != NULL, SF_ERR_NOMEM, done, "range_count: out of memory");
    for (uint32_t g = 0; g < s->ngroups; g++) {
        toff[g] = text.len;
        SF_CALL_GOTO(sf_agent_key_text(s->cfg->schema, s->cfg->by_col, s->nby, s->keys.data + s->off[g],
                                       s->len[g], &text),
                     done);
    }
    toff[s->ngroups] = text.len;
    for (uint32_t g = 0; g < s->ngroups; g++) order[g] = (keyref){text.data + toff[g], toff[g + 1] - toff[g], g};
    qsort(order, s->ngroups, sizeof *order, keyref_cmp);
    sf_json_obj_begin(j);
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    for (uint32_t i = 0; i < s->ngroups;) {
        /* Printed keys are unique; should two ever print alike they are
         * reported as one. */
        counts c = s->cnt[order[i].g];
        uint32_t e = i + 1;
        for (; e < s->ngroups && keyref_cmp(&order[i], &order[e]) == 0; e++)
            for (int k = 0; k < NCOUNTS; k++) c.n[k] += s->cnt[order[e].g].n[k];
        sf_json_keyn(j, (const char *)order[i].p, order[i].n);
        write_counts(j, &c);
        i = e;
    }
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(toff);
    free(order);
    sf_buf_fini(&text);
    return rc;
}

/* "count" (values that are neither null nor NaN), "rows", and the four
 * counts by name, of one group or of all groups together. */
static sf_status rc_stat(const void *state, const uint8_t *key, size_t keylen, const char *name, double *out)
{
    const rc_state *s = state;
    counts c = {{0, 0, 0, 0}};
    if (key == NULL) {
        for (uint32_t g = 0; g < s->ngroups; g++)
            for (int k = 0; k < NCOUNTS; k++) c.n[k] += s->cnt[g].n[k];
    } else {
        uint32_t g = lookup(s, key, keylen, key_hash(key, keylen));
        SF_CHECK(g != UINT32_MAX, SF_ERR_ARG, "range_count '%s': no such group", id_of(s->cfg));
        c = s->cnt[g];
    }
    if (strcmp(name, "count") == 0) {
        *out = (double)(c.n[IN_RANGE] + c.n[BELOW] + c.n[ABOVE]);
        return SF_OK;
    }
    if (strcmp(name, "rows") == 0) {
        *out = (double)(c.n[IN_RANGE] + c.n[BELOW] + c.n[ABOVE] + c.n[MISSING]);
        return SF_OK;
    }
    for (int k = 0; k < NCOUNTS; k++)
        if (strcmp(name, count_names[k]) == 0) {
            *out = (double)c.n[k];
            return SF_OK;
        }
    return sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "range_count '%s' has no statistic '%s'", id_of(s->cfg),
                        name);
}

static const sf_agent_ops range_count_ops = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "range_count",
    .aspect = "performance",
    .state_size = sizeof(rc_state),
    .check = rc_check,
    .init = rc_init,
    .process = rc_process,
    .merge = rc_merge,
    .encode = rc_encode,
    .decode = rc_decode,
    .report = rc_report,
    .destroy = rc_destroy,
    .stat = rc_stat,
};

SF_PLUGIN_EXPORT const char *sf_plugin_name(void) { return "example agents"; }

SF_PLUGIN_EXPORT sf_status sf_plugin_init(void) { return sf_agent_register(&range_count_ops); }
