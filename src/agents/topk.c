/* The `topk` agent (the most frequent values of one column, with exact
 * counts) and the `countmin` agent (a Count-Min sketch of the frequencies of
 * one column, the first stage of a top-k over an unbounded key space).
 *
 * topk counts every distinct value exactly in a group table (canonical key
 * of the one column -> uint64 count). Counts add on merge, so the result is
 * exactly order-independent; a state that would hold more than max_keys
 * distinct values fails with SF_ERR_NOMEM rather than grow without bound.
 *
 * With baseline: STAGE.CM (a countmin agent of an earlier stage over the
 * same column), topk counts only the candidates: the values whose Count-Min
 * estimate is at least the threshold T = ceil(min_share * N), N being the
 * values the sketch counted. Count-Min never underestimates, so every value
 * whose true count reaches T is a candidate and is counted exactly; a value
 * that is not a candidate has a count below T. The listing is therefore the
 * exact top-k whenever the k-th listed count is at least T (the result says
 * "complete"), and "unlisted_max" bounds the count of any value not listed.
 * That reasoning needs the sketch to have seen every row the topk sees, so
 * check() refuses a sketch with a different where: and the report falls back
 * to the weaker bounds if topk saw more values than the sketch.
 *
 * The sketch hashes the same canonical key bytes (sf_agent_row_key of the
 * column) with XXH3-128 seeded by the workflow's seed, and derives its depth
 * row indices by double hashing (Kirsch and Mitzenmacher). Its counters add
 * on merge; every row of counters sums to the number of values counted, an
 * invariant that decode checks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/builtin.h"
#include "agents/groups.h"

#define TOPK_FORMAT 1
#define CM_FORMAT 1

#define TOPK_K_DEFAULT 10
#define TOPK_K_MAX 100000
#define TOPK_MAX_KEYS_DEFAULT 4000000
/* The group table indexes groups with uint32; stay well inside it. */
#define TOPK_MAX_KEYS_LIMIT 2000000000
#define TOPK_MIN_SHARE_DEFAULT 0.0001

#define CM_DEPTH_DEFAULT 4
#define CM_DEPTH_MAX 16
#define CM_WIDTH_DEFAULT 65536
#define CM_WIDTH_MIN 16
#define CM_WIDTH_MAX (1 << 22) /* 16 rows of 2^22 counters are 512 MiB per state */

/* ---- configuration shared by both agents ------------------------------------ */

static const char *file_of(const sf_agent_config *cfg)
{
    return cfg->file ? cfg->file : "<workflow>";
}

static const char *id_of(const sf_agent_config *cfg)
{
    return cfg->id ? cfg->id : (cfg->agent ? cfg->agent : "?");
}

/* The line of an engine key (by:, baseline:) of the agent's mapping, else
 * the agent's line. */
static int key_line(const sf_agent_config *cfg, const char *key)
{
    const sf_cfg_node *m = cfg->node;
    if (m != NULL && m->kind == SF_NODE_MAP)
        for (size_t i = 0; i < m->n; i++)
            if (strcmp(m->keys[i], key) == 0 && m->key_lines != NULL && m->key_lines[i] > 0)
                return m->key_lines[i];
    return cfg->line;
}

/* The checks both agents make on column: and by:. */
static sf_status check_column(const sf_agent_config *cfg, const char *name)
{
    SF_CHECK(cfg->column != NULL, SF_ERR_CONFIG,
             "%s:%d: agent '%s': %s needs a column (column: NAME)", file_of(cfg), cfg->line,
             id_of(cfg), name);
    SF_CHECK(cfg->schema != NULL && cfg->col >= 0 && cfg->col < cfg->schema->ncols, SF_ERR_CONFIG,
             "%s:%d: agent '%s': column '%s' is not in the input", file_of(cfg), cfg->line,
             id_of(cfg), cfg->column);
    SF_CHECK(cfg->nby == 0, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'by': %s counts the values of one column and takes no "
             "by: (make the column the counted key, or use stats with by:)",
             file_of(cfg), key_line(cfg, "by"), id_of(cfg), name);
    return SF_OK;
}

/* A cache from a string column's dictionary code to a per-agent value, valid
 * for one batch (codes mean nothing across batches): entries of an older
 * generation are stale. */
typedef struct code_entry {
    uint32_t gen;
    uint32_t grp;     /* topk: group, SF__NO_GROUP for a value below the threshold */
    uint64_t h1, h2;  /* countmin: the value's two hashes */
} code_entry;

typedef struct code_cache {
    code_entry *e;
    size_t cap;
    uint32_t gen;
    bool on;          /* the current batch uses the cache */
} code_cache;

/* Starts a batch: the cache serves column c when it is a string column and
 * room for its dictionary could be had (else every row takes the hashed
 * path, which gives the same result). */
static void cache_batch(code_cache *cc, const sf_column *c)
{
    cc->on = false;
    if (c->type != SF_STRING) return;
    size_t ncodes = c->dict.n;
    if (cc->cap < ncodes) {
        size_t cap = cc->cap ? cc->cap : 64;
        while (cap < ncodes) cap *= 2;
        code_entry *e = realloc(cc->e, cap * sizeof *e);
        if (e == NULL) return;
        memset(e + cc->cap, 0, (cap - cc->cap) * sizeof *e);
        cc->e = e;
        cc->cap = cap;
    }
    if (++cc->gen == 0) {
        memset(cc->e, 0, cc->cap * sizeof *cc->e);
        cc->gen = 1;
    }
    cc->on = true;
}

/* ---- countmin ------------------------------------------------------------------- */

typedef struct cm_state {
    const sf_agent_config *cfg;
    int depth;
    unsigned log2w;
    uint32_t width;
    uint64_t seed;
    uint64_t rows;      /* rows seen, nulls included */
    uint64_t count;     /* non-null values added (each row of counters sums to it) */
    uint64_t *counters; /* depth rows of width counters */
    uint8_t *scratch;   /* key of the current row */
    size_t scratch_cap;
    code_cache cache;
} cm_state;

static inline void cm_hash(uint64_t seed, const uint8_t *key, size_t len, uint64_t *h1, uint64_t *h2)
{
    XXH128_hash_t h = XXH3_128bits_withSeed(key, len, seed);
    *h1 = h.low64;
    *h2 = h.high64 | 1; /* odd, so that the depth indices differ */
}

/* Index in row i: the top log2w bits of h1 + i h2. */
static inline size_t cm_index(const cm_state *s, int i, uint64_t h1, uint64_t h2)
{
    uint64_t h = h1 + (uint64_t)i * h2;
    return (size_t)i * s->width + (size_t)(h >> (64 - s->log2w));
}

static inline void cm_add(cm_state *s, uint64_t h1, uint64_t h2)
{
    for (int i = 0; i < s->depth; i++) s->counters[cm_index(s, i, h1, h2)]++;
}

/* The Count-Min estimate of a value (canonical key bytes): never below its
 * true count among the values the sketch counted. Safe for concurrent
 * callers. */
static uint64_t cm_estimate(const cm_state *s, const uint8_t *key, size_t len)
{
    uint64_t h1, h2;
    cm_hash(s->seed, key, len, &h1, &h2);
    uint64_t est = UINT64_MAX;
    for (int i = 0; i < s->depth; i++) {
        uint64_t c = s->counters[cm_index(s, i, h1, h2)];
        est = c < est ? c : est;
    }
    return est;
}

/* Reads depth and width; *log2w receives log2(width). */
static sf_status cm_options(const sf_agent_config *cfg, int *depth, uint32_t *width, unsigned *log2w)
{
    int64_t d, w;
    SF_CALL(sf_agent_opt_int(cfg, "depth", CM_DEPTH_DEFAULT, 1, CM_DEPTH_MAX, &d));
    SF_CALL(sf_agent_opt_int(cfg, "width", CM_WIDTH_DEFAULT, CM_WIDTH_MIN, CM_WIDTH_MAX, &w));
    if ((w & (w - 1)) != 0) {
        const sf_cfg_node *v = sf_agent_option(cfg, "width");
        int line = v != NULL && v->line > 0 ? v->line : key_line(cfg, "width");
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                            "%s:%d: agent '%s': option 'width': %lld is not a power of two "
                            "(e.g. 65536)",
                            file_of(cfg), line, id_of(cfg), (long long)w);
    }
    unsigned lg = 0;
    while (((int64_t)1 << lg) < w) lg++;
    *depth = (int)d;
    *width = (uint32_t)w;
    *log2w = lg;
    return SF_OK;
}

static sf_status cm_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"depth", "width"};
    SF_CALL(sf_agent_check_options(cfg, allowed, 2));
    SF_CALL(check_column(cfg, "countmin"));
    SF_CHECK(cfg->nbaseline == 0, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'baseline': countmin takes no baseline", file_of(cfg),
             key_line(cfg, "baseline"), id_of(cfg));
    int depth;
    uint32_t width;
    unsigned lg;
    return cm_options(cfg, &depth, &width, &lg);
}

static void cm_destroy(void *state)
{
    cm_state *s = state;
    free(s->counters);
    free(s->scratch);
    free(s->cache.e);
    memset(s, 0, sizeof *s);
}

static sf_status cm_init(void *state, const sf_agent_config *cfg)
{
    cm_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->schema != NULL && cfg->col >= 0 && cfg->col < cfg->schema->ncols &&
                 cfg->nby == 0,
             SF_ERR_ARG, "countmin: configuration was not checked");
    SF_CALL(cm_options(cfg, &s->depth, &s->width, &s->log2w));
    s->cfg = cfg;
    s->seed = cfg->seed;
    s->counters = calloc((size_t)s->depth * s->width, sizeof *s->counters);
    SF_CHECK(s->counters != NULL, SF_ERR_NOMEM, "agent '%s': out of memory for %d x %u counters",
             id_of(cfg), s->depth, s->width);
    return SF_OK;
}

static sf_status cm_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    cm_state *s = state;
    const int col = s->cfg->col;
    SF_CHECK(col < b->ncols && b->cols[col].loaded, SF_ERR_INTERNAL,
             "countmin: column '%s' is not loaded", s->cfg->column);
    const sf_column *c = &b->cols[col];
    cache_batch(&s->cache, c);
    s->rows += rows->n;
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        if (sf_col_is_null(c, r)) continue;
        s->count++;
        uint64_t h1, h2;
        code_entry *e = NULL;
        if (s->cache.on) {
            uint32_t code = c->code[r];
            SF_CHECK(code < c->dict.n, SF_ERR_INTERNAL, "countmin: dictionary code %u of %u", code,
                     c->dict.n);
            e = &s->cache.e[code];
            if (e->gen == s->cache.gen) {
                cm_add(s, e->h1, e->h2);
                continue;
            }
        }
        size_t len;
        SF_CALL(sf_agent_row_key(b, &s->cfg->col, 1, r, &s->scratch, &s->scratch_cap, &len));
        cm_hash(s->seed, s->scratch, len, &h1, &h2);
        if (e != NULL) {
            e->gen = s->cache.gen;
            e->h1 = h1;
            e->h2 = h2;
        }
        cm_add(s, h1, h2);
    }
    return SF_OK;
}

static sf_status cm_merge(void *into, const void *from)
{
    cm_state *a = into;
    const cm_state *f = from;
    SF_CHECK(a->depth == f->depth && a->width == f->width && a->seed == f->seed, SF_ERR_INTERNAL,
             "countmin: merging sketches of different shapes");
    size_t n = (size_t)a->depth * a->width;
    for (size_t i = 0; i < n; i++) a->counters[i] += f->counters[i];
    a->rows += f->rows;
    a->count += f->count;
    return SF_OK;
}

/* Format: u8 version, u8 depth, u8 log2(width), u64 seed, u64 rows, u64
 * count, then depth * width u64 counters, row after row. */
static sf_status cm_encode(const void *state, sf_buf *out)
{
    const cm_state *s = state;
    size_t n = (size_t)s->depth * s->width;
    SF_CALL(sf_buf_reserve(out, 27 + 8 * n));
    SF_CALL(sf_buf_put_u8(out, CM_FORMAT));
    SF_CALL(sf_buf_put_u8(out, (uint8_t)s->depth));
    SF_CALL(sf_buf_put_u8(out, (uint8_t)s->log2w));
    SF_CALL(sf_buf_put_u64(out, s->seed));
    SF_CALL(sf_buf_put_u64(out, s->rows));
    SF_CALL(sf_buf_put_u64(out, s->count));
    uint8_t *p = out->data + out->len;
    for (size_t i = 0; i < n; i++) sf_store_u64(p + 8 * i, s->counters[i]);
    out->len += 8 * n;
    return SF_OK;
}

static sf_status cm_decode(void *state, const void *bytes, size_t n)
{
    cm_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, depth, lg;
    uint64_t seed, rows, count;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == CM_FORMAT, SF_ERR_PARSE, "countmin state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &depth));
    SF_CALL(sf_rd_u8(&r, &lg));
    SF_CHECK(depth == s->depth && lg == s->log2w, SF_ERR_PARSE,
             "countmin state: a %u x 2^%u sketch, expected %d x %u", depth, lg, s->depth, s->width);
    SF_CALL(sf_rd_u64(&r, &seed));
    SF_CHECK(seed == s->seed, SF_ERR_PARSE, "countmin state: hashed with seed %llu, expected %llu",
             (unsigned long long)seed, (unsigned long long)s->seed);
    SF_CALL(sf_rd_u64(&r, &rows));
    SF_CALL(sf_rd_u64(&r, &count));
    SF_CHECK(count <= rows, SF_ERR_PARSE, "countmin state: %llu values in %llu rows",
             (unsigned long long)count, (unsigned long long)rows);
    size_t ncnt = (size_t)s->depth * s->width;
    const uint8_t *p;
    SF_CALL(sf_rd_bytes(&r, 8 * ncnt, &p));
    SF_CHECK(r.off == n, SF_ERR_PARSE, "countmin state: %zu trailing bytes", n - r.off);
    /* Every value adds one to one counter of each row, so each row sums to
     * count; a sketch that does not is corrupt (and no counter exceeds
     * count, so the sums cannot wrap). */
    for (int i = 0; i < s->depth; i++) {
        uint64_t sum = 0;
        for (uint32_t j = 0; j < s->width; j++) {
            uint64_t v = sf_load_u64(p + 8 * ((size_t)i * s->width + j));
            SF_CHECK(v <= count - sum, SF_ERR_PARSE,
                     "countmin state: row %d of counters exceeds %llu values", i,
                     (unsigned long long)count);
            sum += v;
        }
        SF_CHECK(sum == count, SF_ERR_PARSE, "countmin state: row %d of counters sums to %llu, not %llu",
                 i, (unsigned long long)sum, (unsigned long long)count);
    }
    for (size_t i = 0; i < ncnt; i++) s->counters[i] = sf_load_u64(p + 8 * i);
    s->rows = rows;
    s->count = count;
    return SF_OK;
}

static sf_status cm_report(const void *state, sf_json *j)
{
    const cm_state *s = state;
    sf_json_obj_begin(j);
    sf_json_key(j, "rows");
    sf_json_uint(j, s->rows);
    sf_json_key(j, "count");
    sf_json_uint(j, s->count);
    sf_json_key(j, "nulls");
    sf_json_uint(j, s->rows - s->count);
    sf_json_key(j, "depth");
    sf_json_int(j, s->depth);
    sf_json_key(j, "width");
    sf_json_uint(j, s->width);
    /* The classic guarantee: an estimate exceeds the true count by more than
     * epsilon * count with probability at most delta. */
    sf_json_key(j, "epsilon");
    sf_json_num(j, 2.718281828459045 / (double)s->width);
    sf_json_key(j, "delta");
    sf_json_num(j, exp(-(double)s->depth));
    sf_json_obj_end(j);
    return j->rc;
}

static sf_status cm_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                         double *out)
{
    const cm_state *s = state;
    if (key == NULL) {
        if (strcmp(name, "rows") == 0) {
            *out = (double)s->rows;
            return SF_OK;
        }
        if (strcmp(name, "count") == 0) {
            *out = (double)s->count;
            return SF_OK;
        }
        SF_CHECK(false, SF_ERR_ARG, "agent '%s': countmin has no statistic '%s' (rows, count, "
                 "estimate with a value's key)", id_of(s->cfg), name);
    }
    SF_CHECK(strcmp(name, "estimate") == 0, SF_ERR_ARG,
             "agent '%s': countmin has only the statistic 'estimate' for one value", id_of(s->cfg));
    SF_CHECK(sf_agent_key_valid(s->cfg->schema, &s->cfg->col, 1, key, keylen), SF_ERR_ARG,
             "agent '%s': not a key of column '%s'", id_of(s->cfg), s->cfg->column);
    *out = (double)cm_estimate(s, key, keylen);
    return SF_OK;
}

const sf_agent_ops sf__agent_countmin = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "countmin",
    .aspect = "business",
    .state_size = sizeof(cm_state),
    .check = cm_check,
    .init = cm_init,
    .process = cm_process,
    .merge = cm_merge,
    .encode = cm_encode,
    .decode = cm_decode,
    .report = cm_report,
    .destroy = cm_destroy,
    .stat = cm_stat,
};

/* ---- topk ------------------------------------------------------------------------- */

typedef struct topk_state {
    const sf_agent_config *cfg;
    int64_t k;
    int64_t max_keys;
    sf__groups keys;      /* value key -> index */
    uint64_t *count;      /* per key, indexed like keys */
    uint32_t cap;
    uint64_t rows;        /* rows seen, nulls included */
    uint64_t nulls;
    uint64_t skipped;     /* values below the threshold (two-stage form only) */
    const cm_state *cm;   /* the baseline sketch, NULL when every value is counted */
    uint64_t threshold;   /* candidates have an estimate >= threshold */
    uint8_t *scratch;
    size_t scratch_cap;
    code_cache cache;
} topk_state;

/* The candidate threshold ceil(min_share * N). The product is rounded, so a
 * threshold that misses an integer by a relative 1e-12 or less is taken as
 * that integer: a value whose count equals min_share * N as written in the
 * workflow (0.0001 has no exact binary form) is always a candidate. Any
 * threshold is sound as long as the report uses the same one. */
static uint64_t candidate_threshold(double min_share, uint64_t n)
{
    double p = min_share * (double)n;
    double c = ceil(p);
    if (c >= 1 && c - 1 >= p * (1 - 1e-12)) c -= 1;
    return (uint64_t)c;
}

static sf_status topk_options(const sf_agent_config *cfg, int64_t *k, int64_t *max_keys,
                              double *min_share)
{
    SF_CALL(sf_agent_opt_int(cfg, "k", TOPK_K_DEFAULT, 1, TOPK_K_MAX, k));
    SF_CALL(sf_agent_opt_int(cfg, "max_keys", TOPK_MAX_KEYS_DEFAULT, 1, TOPK_MAX_KEYS_LIMIT, max_keys));
    if (*max_keys < *k) {
        const sf_cfg_node *v = sf_agent_option(cfg, "max_keys");
        int line = v != NULL && v->line > 0 ? v->line : key_line(cfg, "max_keys");
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                            "%s:%d: agent '%s': option 'max_keys': %lld is below k (%lld)",
                            file_of(cfg), line, id_of(cfg), (long long)*max_keys, (long long)*k);
    }
    SF_CALL(sf_agent_opt_double(cfg, "min_share", TOPK_MIN_SHARE_DEFAULT, 0, 1, min_share));
    return SF_OK;
}

static bool same_text(const char *a, const char *b)
{
    return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

static sf_status topk_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"k", "max_keys", "min_share"};
    SF_CALL(sf_agent_check_options(cfg, allowed, 3));
    SF_CALL(check_column(cfg, "topk"));
    int64_t k, max_keys;
    double min_share;
    SF_CALL(topk_options(cfg, &k, &max_keys, &min_share));
    int bline = key_line(cfg, "baseline");
    if (cfg->nbaseline == 0) {
        SF_CHECK(sf_agent_option(cfg, "min_share") == NULL, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': option 'min_share': only used with baseline: STAGE.ID of a "
                 "countmin agent",
                 file_of(cfg), key_line(cfg, "min_share"), id_of(cfg));
        return SF_OK;
    }
    SF_CHECK(cfg->nbaseline == 1 && cfg->baseline != NULL, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'baseline': topk takes one baseline (a countmin agent), "
             "found %d",
             file_of(cfg), bline, id_of(cfg), cfg->nbaseline);
    const sf_agent_prior *p = &cfg->baseline[0];
    const char *ref = p->ref ? p->ref : "?";
    SF_CHECK(p->ops != NULL && p->ops->name != NULL && strcmp(p->ops->name, "countmin") == 0,
             SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'baseline': '%s' is a %s agent, topk takes a countmin agent",
             file_of(cfg), bline, id_of(cfg), ref, p->ops && p->ops->name ? p->ops->name : "unknown");
    const sf_agent_config *pc = p->cfg;
    SF_CHECK(pc != NULL && pc->column != NULL && strcmp(pc->column, cfg->column) == 0, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'baseline': '%s' sketches column '%s', this topk counts '%s'",
             file_of(cfg), bline, id_of(cfg), ref, pc && pc->column ? pc->column : "?", cfg->column);
    if (pc->schema != NULL && pc->col >= 0 && pc->col < pc->schema->ncols) {
        sf_type a = pc->schema->fields[pc->col].type, b = cfg->schema->fields[cfg->col].type;
        SF_CHECK(a == b, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': option 'baseline': column '%s' is %s in '%s' and %s here",
                 file_of(cfg), bline, id_of(cfg), cfg->column, sf_type_name(a), ref, sf_type_name(b));
    }
    /* The candidate rule needs the sketch to have seen every row counted
     * here: a sketch over all rows, or over the same where:. */
    SF_CHECK(pc->where == NULL || same_text(pc->where, cfg->where), SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'baseline': '%s' sketches the rows where %s, so it does not "
             "see every row of this topk (give both the same where:, or none to the countmin)",
             file_of(cfg), bline, id_of(cfg), ref, pc->where);
    return SF_OK;
}

static void topk_destroy(void *state)
{
    topk_state *s = state;
    sf__groups_fini(&s->keys);
    free(s->count);
    free(s->scratch);
    free(s->cache.e);
    memset(s, 0, sizeof *s);
}

static sf_status topk_init(void *state, const sf_agent_config *cfg)
{
    topk_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->schema != NULL && cfg->col >= 0 && cfg->col < cfg->schema->ncols &&
                 cfg->nby == 0 && cfg->nbaseline <= 1,
             SF_ERR_ARG, "topk: configuration was not checked");
    double min_share;
    SF_CALL(topk_options(cfg, &s->k, &s->max_keys, &min_share));
    if (cfg->nbaseline == 1) {
        const sf_agent_prior *p = &cfg->baseline[0];
        SF_CHECK(p->ops == &sf__agent_countmin && p->state != NULL, SF_ERR_INTERNAL,
                 "agent '%s': the countmin baseline '%s' has no final state", id_of(cfg),
                 p->ref ? p->ref : "?");
        s->cm = p->state;
        s->threshold = candidate_threshold(min_share, s->cm->count);
    }
    s->cfg = cfg;
    return sf__groups_init(&s->keys, cfg->schema, &cfg->col, 1);
}

/* Makes room for the count of new key i, or fails when the state would hold
 * more than max_keys values. */
static sf_status new_key(topk_state *s, uint32_t i)
{
    const sf_agent_config *cfg = s->cfg;
    SF_CHECK((int64_t)s->keys.n <= s->max_keys, SF_ERR_NOMEM,
             "%s:%d: agent '%s': more than %lld distinct values of '%s' (max_keys: %lld); raise "
             "max_keys, or count in two stages: a countmin agent on '%s' in an earlier stage and "
             "baseline: STAGE.COUNTMIN_ID on this topk, which then counts only the frequent values",
             file_of(cfg), cfg->line, id_of(cfg), (long long)s->max_keys, cfg->column,
             (long long)s->max_keys, cfg->column);
    if (i >= s->cap) {
        uint32_t cap = s->cap ? s->cap : 64;
        while (cap <= i) cap *= 2;
        uint64_t *c = realloc(s->count, (size_t)cap * sizeof *c);
        SF_CHECK(c != NULL, SF_ERR_NOMEM, "agent '%s': out of memory for %u counts", id_of(cfg), cap);
        s->count = c;
        s->cap = cap;
    }
    s->count[i] = 0;
    return SF_OK;
}

/* The key of a value in the two-stage form: its index, or SF__NO_GROUP when
 * its estimate is below the threshold. */
static sf_status candidate(topk_state *s, const uint8_t *key, size_t len, uint32_t *idx)
{
    if (cm_estimate(s->cm, key, len) < s->threshold) {
        *idx = SF__NO_GROUP;
        return SF_OK;
    }
    bool created;
    SF_CALL(sf__groups_find(&s->keys, key, len, idx, &created));
    if (created) SF_CALL(new_key(s, *idx));
    return SF_OK;
}

static sf_status process_exact(topk_state *s, const sf_batch *b, const sf_column *c,
                               const sf_rows *rows)
{
    SF_CALL(sf__groups_batch(&s->keys, b));
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        if (sf_col_is_null(c, r)) {
            s->nulls++;
            continue;
        }
        uint32_t gi;
        bool created;
        SF_CALL(sf__groups_row(&s->keys, b, r, &gi, &created));
        if (created) SF_CALL(new_key(s, gi));
        s->count[gi]++;
    }
    return SF_OK;
}

static sf_status process_candidates(topk_state *s, const sf_batch *b, const sf_column *c,
                                    const sf_rows *rows)
{
    cache_batch(&s->cache, c);
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        if (sf_col_is_null(c, r)) {
            s->nulls++;
            continue;
        }
        uint32_t gi;
        code_entry *e = NULL;
        if (s->cache.on) {
            uint32_t code = c->code[r];
            SF_CHECK(code < c->dict.n, SF_ERR_INTERNAL, "topk: dictionary code %u of %u", code,
                     c->dict.n);
            e = &s->cache.e[code];
        }
        if (e != NULL && e->gen == s->cache.gen) {
            gi = e->grp;
        } else {
            size_t len;
            SF_CALL(sf_agent_row_key(b, &s->cfg->col, 1, r, &s->scratch, &s->scratch_cap, &len));
            SF_CALL(candidate(s, s->scratch, len, &gi));
            if (e != NULL) {
                e->gen = s->cache.gen;
                e->grp = gi;
            }
        }
        if (gi == SF__NO_GROUP)
            s->skipped++;
        else
            s->count[gi]++;
    }
    return SF_OK;
}

static sf_status topk_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    topk_state *s = state;
    const int col = s->cfg->col;
    SF_CHECK(col < b->ncols && b->cols[col].loaded, SF_ERR_INTERNAL, "topk: column '%s' is not loaded",
             s->cfg->column);
    const sf_column *c = &b->cols[col];
    s->rows += rows->n;
    return s->cm != NULL ? process_candidates(s, b, c, rows) : process_exact(s, b, c, rows);
}

static sf_status topk_merge(void *into, const void *from)
{
    topk_state *a = into;
    const topk_state *f = from;
    SF_CHECK(a->cm == f->cm && a->threshold == f->threshold, SF_ERR_INTERNAL,
             "topk: merging states of different baselines");
    if (f->keys.n != 0) {
        uint32_t *map;
        uint32_t before = a->keys.n;
        SF_CALL(sf__groups_map(&a->keys, &f->keys, f->keys.n, &map, NULL));
        sf_status rc = SF_OK;
        /* The new keys, in the order they were created. */
        for (uint32_t gi = before; rc == SF_OK && gi < a->keys.n; gi++) rc = new_key(a, gi);
        for (uint32_t i = 0; rc == SF_OK && i < f->keys.n; i++) a->count[map[i]] += f->count[i];
        free(map);
        SF_CALL(rc);
    }
    a->rows += f->rows;
    a->nulls += f->nulls;
    a->skipped += f->skipped;
    return SF_OK;
}

/* Format: u8 version, u8 form (0 exact, 1 two-stage), u64 threshold, u64
 * rows, u64 nulls, u64 skipped, u64 number of keys, then per key in byte
 * order of the keys: the key (u32 length and bytes) and its u64 count. */
static sf_status topk_encode(const void *state, sf_buf *out)
{
    const topk_state *s = state;
    uint32_t *order = NULL;
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sf__groups_sorted(&s->keys, &order), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, TOPK_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, s->cm != NULL), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->threshold), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->rows), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->nulls), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->skipped), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->keys.n), done);
    for (uint32_t i = 0; i < s->keys.n; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&s->keys, order[i], &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, s->count[order[i]]), done);
    }
done:
    free(order);
    return rc;
}

static sf_status topk_decode(void *state, const void *bytes, size_t n)
{
    topk_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, form;
    uint64_t threshold, rows, nulls, skipped, nkeys;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == TOPK_FORMAT, SF_ERR_PARSE, "topk state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &form));
    SF_CHECK(form == (s->cm != NULL), SF_ERR_PARSE, "topk state: form %u, expected %d", form,
             s->cm != NULL);
    SF_CALL(sf_rd_u64(&r, &threshold));
    SF_CHECK(threshold == s->threshold, SF_ERR_PARSE, "topk state: threshold %llu, expected %llu",
             (unsigned long long)threshold, (unsigned long long)s->threshold);
    SF_CALL(sf_rd_u64(&r, &rows));
    SF_CALL(sf_rd_u64(&r, &nulls));
    SF_CALL(sf_rd_u64(&r, &skipped));
    SF_CHECK(s->cm != NULL || skipped == 0, SF_ERR_PARSE, "topk state: skipped values without a baseline");
    SF_CALL(sf_rd_u64(&r, &nkeys));
    /* A key takes at least 4 + 5 bytes and its count 8. */
    SF_CHECK(nkeys <= (n - r.off) / 17, SF_ERR_PARSE, "topk state: %llu keys in %zu bytes",
             (unsigned long long)nkeys, n);
    SF_CHECK(nkeys <= (uint64_t)s->max_keys, SF_ERR_PARSE, "topk state: %llu keys, max_keys is %lld",
             (unsigned long long)nkeys, (long long)s->max_keys);
    SF_CALL(sf__groups_clear(&s->keys));
    /* rows = nulls + skipped + the counts, without wrapping. */
    SF_CHECK(nulls <= rows && skipped <= rows - nulls, SF_ERR_PARSE,
             "topk state: more nulls and skipped values than rows");
    uint64_t left = rows - nulls - skipped;
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < nkeys; i++) {
        uint32_t gi;
        SF_CALL(sf__groups_decode_key(&s->keys, &r, &prev, &prev_len, &gi));
        SF_CHECK(prev[0] == 1, SF_ERR_PARSE, "topk state: a null key");
        SF_CALL(new_key(s, gi));
        uint64_t c;
        SF_CALL(sf_rd_u64(&r, &c));
        SF_CHECK(c >= 1 && c <= left, SF_ERR_PARSE, "topk state: count %llu of key %llu is out of range",
                 (unsigned long long)c, (unsigned long long)i);
        if (s->cm != NULL)
            SF_CHECK(cm_estimate(s->cm, prev, prev_len) >= s->threshold, SF_ERR_PARSE,
                     "topk state: key %llu is not a candidate", (unsigned long long)i);
        left -= c;
        s->count[gi] = c;
    }
    SF_CHECK(left == 0, SF_ERR_PARSE, "topk state: the counts miss %llu of the rows",
             (unsigned long long)left);
    SF_CHECK(r.off == n, SF_ERR_PARSE, "topk state: %zu trailing bytes", n - r.off);
    s->rows = rows;
    s->nulls = nulls;
    s->skipped = skipped;
    return SF_OK;
}

typedef struct item {
    uint64_t count;
    const char *text;
    size_t len;
} item;

static int count_desc(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

/* Count descending, then printed key ascending (byte-wise). Printed keys
 * are unique, so the order is total. */
static int item_cmp(const void *x, const void *y)
{
    const item *a = x, *b = y;
    if (a->count != b->count) return a->count < b->count ? 1 : -1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->text, b->text, n) : 0;
    if (c != 0) return c;
    return a->len < b->len ? -1 : a->len > b->len ? 1 : 0;
}

static sf_status topk_report(const void *state, sf_json *j)
{
    const topk_state *s = state;
    const sf_agent_config *cfg = s->cfg;
    sf_status rc = SF_OK;
    uint64_t *sorted = NULL;
    item *items = NULL;
    size_t *off = NULL;
    sf_buf text;
    sf_buf_init(&text);
    uint32_t n = s->keys.n;
    uint64_t kth = 0, next = 0; /* the k-th and (k+1)-th largest counts, 0 if none */
    size_t nitems = 0;
    if (n != 0) {
        /* Only the keys that can make the list are printed: those with at
         * least the k-th largest count. */
        sorted = malloc((size_t)n * sizeof *sorted);
        SF_CHECK_GOTO(sorted != NULL, SF_ERR_NOMEM, done, "agent '%s': out of memory sorting %u counts",
                      id_of(cfg), n);
        memcpy(sorted, s->count, (size_t)n * sizeof *sorted);
        qsort(sorted, n, sizeof *sorted, count_desc);
        uint64_t cut = (uint64_t)s->k <= n ? sorted[s->k - 1] : 0;
        if ((uint64_t)s->k < n) next = sorted[s->k];
        size_t m = 0;
        for (uint32_t i = 0; i < n; i++) m += s->count[i] >= cut;
        items = malloc(m * sizeof *items);
        off = malloc(m * sizeof *off);
        SF_CHECK_GOTO(items != NULL && off != NULL, SF_ERR_NOMEM, done,
                      "agent '%s': out of memory listing %zu values", id_of(cfg), m);
        SF_CALL_GOTO(sf_buf_reserve(&text, 1), done);
        size_t at = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (s->count[i] < cut) continue;
            size_t len;
            const uint8_t *k = sf__groups_key(&s->keys, i, &len);
            off[at] = text.len;
            SF_CALL_GOTO(sf_agent_key_text(cfg->schema, &cfg->col, 1, k, len, &text), done);
            items[at].count = s->count[i];
            items[at].len = text.len - off[at];
            at++;
        }
        for (size_t i = 0; i < m; i++) items[i].text = (const char *)text.data + off[i];
        qsort(items, m, sizeof *items, item_cmp);
        nitems = m < (size_t)s->k ? m : (size_t)s->k;
        if (nitems == (size_t)s->k) kth = items[nitems - 1].count;
    }

    bool complete = true;
    uint64_t unlisted = next;
    if (s->cm != NULL && s->skipped > 0) {
        /* A value below the threshold was counted by the sketch fewer than
         * threshold times, so (if the sketch saw every row seen here) it
         * occurs at most threshold - 1 times; and never more often than the
         * values skipped in all. */
        bool covered = s->rows - s->nulls <= s->cm->count;
        uint64_t bound = s->skipped;
        if (covered && s->threshold - 1 < bound) bound = s->threshold - 1;
        if (bound > unlisted) unlisted = bound;
        complete = covered && nitems == (size_t)s->k && kth >= s->threshold;
    }

    sf_json_obj_begin(j);
    sf_json_key(j, "items");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < nitems; i++) {
        sf_json_obj_begin(j);
        sf_json_key(j, "key");
        sf_json_strn(j, items[i].text, items[i].len);
        sf_json_key(j, "count");
        sf_json_uint(j, items[i].count);
        /* Counts are exact in both forms; the field keeps the result shape
         * of approximate counters. */
        sf_json_key(j, "error");
        sf_json_uint(j, 0);
        sf_json_obj_end(j);
    }
    sf_json_arr_end(j);
    sf_json_key(j, "distinct_counted");
    sf_json_uint(j, n);
    sf_json_key(j, "nulls");
    sf_json_uint(j, s->nulls);
    sf_json_key(j, "complete");
    sf_json_bool(j, complete);
    sf_json_key(j, "unlisted_max");
    sf_json_uint(j, unlisted);
    if (s->cm != NULL) {
        sf_json_key(j, "threshold");
        sf_json_uint(j, s->threshold);
        sf_json_key(j, "uncounted");
        sf_json_uint(j, s->skipped);
    }
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(sorted);
    free(items);
    free(off);
    sf_buf_fini(&text);
    return rc;
}

static sf_status topk_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                           double *out)
{
    const topk_state *s = state;
    if (key != NULL) {
        SF_CHECK(strcmp(name, "count") == 0, SF_ERR_ARG,
                 "agent '%s': topk has only the statistic 'count' for one value", id_of(s->cfg));
        uint32_t i = sf__groups_lookup(&s->keys, key, keylen);
        SF_CHECK(i != SF__NO_GROUP, SF_ERR_ARG, "agent '%s': the value was not counted", id_of(s->cfg));
        *out = (double)s->count[i];
        return SF_OK;
    }
    if (strcmp(name, "rows") == 0)
        *out = (double)s->rows;
    else if (strcmp(name, "count") == 0)
        *out = (double)(s->rows - s->nulls);
    else if (strcmp(name, "distinct") == 0)
        *out = (double)s->keys.n;
    else
        SF_CHECK(false, SF_ERR_ARG, "agent '%s': topk has no statistic '%s' (rows, count, distinct)",
                 id_of(s->cfg), name);
    return SF_OK;
}

const sf_agent_ops sf__agent_topk = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "topk",
    .aspect = "business",
    .state_size = sizeof(topk_state),
    .check = topk_check,
    .init = topk_init,
    .process = topk_process,
    .merge = topk_merge,
    .encode = topk_encode,
    .decode = topk_decode,
    .report = topk_report,
    .destroy = topk_destroy,
    .stat = topk_stat,
};
