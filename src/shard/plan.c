/* The shard plan object: argument checks, key resolution, and dispatch to
 * the strategy implementations. */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Inlined, so the 8-byte keys of int64, float64 and timestamp columns hash
 * through a constant-length XXH64 without a library call. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shard/plan_impl.h"

uint64_t sf__shard_hash_bytes(const void *p, size_t n)
{
    static const char empty[1] = {0};
    return (uint64_t)XXH64(n ? p : empty, n, 0);
}

static inline uint64_t hash8(uint64_t v)
{
    uint8_t bytes[8];
    sf_store_u64(bytes, v);
    return (uint64_t)XXH64(bytes, 8, 0);
}

uint64_t sf_shard_key_hash(const sf_column *c, size_t r)
{
    if (sf_col_is_null(c, r)) return sf__shard_hash_bytes(NULL, 0);
    switch (c->type) {
    case SF_INT64:
    case SF_TIMESTAMP:
        return hash8((uint64_t)c->i64[r]);
    case SF_FLOAT64: {
        double v = c->f64[r];
        uint64_t bits;
        if (v == 0.0) v = 0.0;               /* fold -0 to +0 */
        memcpy(&bits, &v, 8);
        /* Every NaN hashes as the canonical quiet NaN, so equal keys (all
         * NaNs compare as one key for sharding) land on one shard whatever
         * payload the producer left in them. */
        if (v != v) bits = UINT64_C(0x7ff8000000000000);
        return hash8(bits);
    }
    case SF_STRING: {
        size_t len;
        const char *s = sf_dict_str(&c->dict, c->code[r], &len);
        return sf__shard_hash_bytes(s, len);
    }
    default:
        return sf__shard_hash_bytes(NULL, 0);
    }
}

double sf_shard_imbalance(const uint64_t *sizes, int k)
{
    if (sizes == NULL || k <= 0) return 0.0;
    long double sum = 0;
    uint64_t max = 0;
    for (int i = 0; i < k; i++) {
        sum += (long double)sizes[i];
        if (sizes[i] > max) max = sizes[i];
    }
    if (sum == 0) return 0.0;
    return (double)((long double)max * (long double)k / sum);
}

static const char *strategy_key_types(sf_shard_strategy s)
{
    switch (s) {
    case SF_SHARD_RANGE: return "an int64, float64 or timestamp";
    case SF_SHARD_SEMANTIC: return "a string or int64";
    default: return "any";
    }
}

static bool type_allowed(sf_shard_strategy s, sf_type t)
{
    switch (s) {
    case SF_SHARD_HASH:
        return t == SF_INT64 || t == SF_FLOAT64 || t == SF_STRING || t == SF_TIMESTAMP;
    case SF_SHARD_RANGE: return t == SF_INT64 || t == SF_FLOAT64 || t == SF_TIMESTAMP;
    case SF_SHARD_SEMANTIC: return t == SF_STRING || t == SF_INT64;
    default: return false;
    }
}

/* "file:line: " (or "file: " when the line is unknown) for messages about
 * the workflow's shard section. */
static void where(const char *file, int line, char *buf, size_t n)
{
    if (line > 0)
        snprintf(buf, n, "%s:%d: ", file, line);
    else
        snprintf(buf, n, "%s: ", file);
}


sf_status sf_shard_plan_create(const sf_shard_config *cfg, const sf_schema *schema,
                               const char *file, sf_shard_plan **out)
{
    sf_status rc = SF_OK;
    sf_shard_plan *p = NULL;
    char loc[512];
    const char *wf = file ? file : "workflow";

    SF_CHECK(out != NULL && cfg != NULL && schema != NULL, SF_ERR_ARG,
             "sf_shard_plan_create: NULL argument");
    *out = NULL;
    where(wf, cfg->key_line, loc, sizeof loc);

    const sf__shard_ops *ops = NULL;
    switch (cfg->strategy) {
    case SF_SHARD_SIZE: ops = &sf__shard_size_ops; break;
    case SF_SHARD_HASH: ops = &sf__shard_hash_ops; break;
    case SF_SHARD_RANGE: ops = &sf__shard_range_ops; break;
    case SF_SHARD_SEMANTIC: ops = &sf__shard_semantic_ops; break;
    default:
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                            "%s: shard.strategy: unknown strategy %d (expected size, hash, "
                            "range or semantic)", wf, (int)cfg->strategy);
    }
    SF_CHECK(cfg->shards >= 1, SF_ERR_CONFIG, "%s: shard.shards must be at least 1, got %d", wf,
             cfg->shards);

    p = calloc(1, sizeof *p);
    SF_CHECK(p != NULL, SF_ERR_NOMEM, "out of memory creating the shard plan");
    p->ops = ops;
    p->strategy = cfg->strategy;
    p->k = cfg->shards;
    p->key_col = -1;
    p->key_type = SF_TYPE_NONE;
    p->key_line = cfg->key_line;
    p->file = strdup(wf);
    SF_CHECK_GOTO(p->file != NULL, SF_ERR_NOMEM, done, "out of memory creating the shard plan");

    if (cfg->strategy != SF_SHARD_SIZE) {
        SF_CHECK_GOTO(cfg->key != NULL && cfg->key[0] != '\0', SF_ERR_CONFIG, done,
                      "%sshard.key is required for strategy '%s'", loc, ops->name);
        int c = sf_schema_find(schema, cfg->key);
        if (c < 0) {
            char cols[400];
            sf_schema_format_columns(schema, cols, sizeof cols);
            SF_CHECK_GOTO(false, SF_ERR_CONFIG, done,
                          "%sshard.key: column '%s' is not in the input (columns: %s)", loc,
                          cfg->key, cols);
        }
        sf_type t = schema->fields[c].type;
        SF_CHECK_GOTO(type_allowed(cfg->strategy, t), SF_ERR_CONFIG, done,
                      "%sshard.key: column '%s' is %s; %s sharding needs %s key", loc, cfg->key,
                      sf_type_name(t), ops->name, strategy_key_types(cfg->strategy));
        p->key_col = c;
        p->key_type = t;
        p->key = strdup(cfg->key);
        SF_CHECK_GOTO(p->key != NULL, SF_ERR_NOMEM, done, "out of memory creating the shard plan");
    }
    SF_CALL_GOTO(ops->init(p, cfg), done);
    *out = p;
    p = NULL;
done:
    sf_shard_plan_destroy(&p);
    return rc;
}

void sf_shard_plan_destroy(sf_shard_plan **pp)
{
    if (pp == NULL || *pp == NULL) return;
    sf_shard_plan *p = *pp;
    if (p->impl != NULL) p->ops->destroy(p);
    free(p->key);
    free(p->file);
    free(p);
    *pp = NULL;
}

int sf_shard_plan_key_column(const sf_shard_plan *p) { return p->key_col; }

int sf_shard_plan_count(const sf_shard_plan *p) { return p->k; }

bool sf_shard_plan_needs_prepass(const sf_shard_plan *p) { return p->ops->needs_prepass; }

/* The key column of b, checked against the plan's schema. */
static sf_status batch_key(const sf_shard_plan *p, const sf_batch *b, const sf_column **out)
{
    *out = NULL;
    if (p->key_col < 0) return SF_OK;
    SF_CHECK(b->ncols > p->key_col, SF_ERR_ARG,
             "shard plan: batch has %d columns, key column '%s' is number %d", b->ncols, p->key,
             p->key_col + 1);
    const sf_column *c = &b->cols[p->key_col];
    SF_CHECK(c->loaded, SF_ERR_ARG, "shard plan: key column '%s' was not loaded in the batch",
             p->key);
    SF_CHECK(c->type == p->key_type, SF_ERR_ARG,
             "shard plan: key column '%s' is %s in the batch, %s in the plan", p->key,
             sf_type_name(c->type), sf_type_name(p->key_type));
    *out = c;
    return SF_OK;
}

sf_status sf_shard_plan_observe(sf_shard_plan *p, const sf_batch *b)
{
    SF_CHECK(p != NULL && b != NULL, SF_ERR_ARG, "sf_shard_plan_observe: NULL argument");
    SF_CHECK(!p->finished, SF_ERR_ARG, "shard plan: observe() after finish()");
    if (!p->ops->needs_prepass || b->nrows == 0) return SF_OK;
    const sf_column *key;
    SF_CALL(batch_key(p, b, &key));
    return p->ops->observe(p, b, key);
}

sf_status sf_shard_plan_finish(sf_shard_plan *p, uint64_t total_rows, uint64_t data_start,
                               uint64_t data_bytes)
{
    SF_CHECK(p != NULL, SF_ERR_ARG, "sf_shard_plan_finish: NULL plan");
    SF_CHECK(!p->finished, SF_ERR_ARG, "shard plan: finish() called twice");
    SF_CALL(p->ops->finish(p, total_rows, data_start, data_bytes));
    p->finished = true;
    return SF_OK;
}

sf_status sf_shard_route(const sf_shard_plan *p, const sf_batch *b, uint32_t *shard)
{
    SF_CHECK(p != NULL && b != NULL, SF_ERR_ARG, "sf_shard_route: NULL argument");
    SF_CHECK(p->finished, SF_ERR_ARG, "shard plan: route() before finish()");
    if (b->nrows == 0) return SF_OK;
    SF_CHECK(shard != NULL, SF_ERR_ARG, "sf_shard_route: NULL output");
    const sf_column *key;
    SF_CALL(batch_key(p, b, &key));
    return p->ops->route(p, b, key, shard);
}

bool sf_shard_route_runs(const sf_shard_plan *p, const sf_batch *b, size_t *start)
{
    if (p == NULL || b == NULL || start == NULL || !p->finished || p->ops->route_runs == NULL) return false;
    return p->ops->route_runs(p, b, start);
}

void sf_shard_plan_describe(const sf_shard_plan *p, sf_json *j)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "strategy");
    sf_json_str(j, p->ops->name);
    sf_json_key(j, "shards");
    sf_json_int(j, p->k);
    sf_json_key(j, "key");
    if (p->key != NULL)
        sf_json_str(j, p->key);
    else
        sf_json_null(j);
    sf_json_key(j, "key_type");
    if (p->key != NULL)
        sf_json_str(j, sf_type_name(p->key_type));
    else
        sf_json_null(j);
    sf_json_key(j, "finished");
    sf_json_bool(j, p->finished);
    p->ops->describe(p, j);
    sf_json_obj_end(j);
}

/* ---- portable plan bytes ------------------------------------------------ */

/* "SFSP" read as a little-endian u32: a cheap guard against handing the
 * decoder bytes that are not a shard plan at all. */
#define PLAN_MAGIC UINT32_C(0x50534653)
/* Bumped whenever the layout of the header or of any strategy's body
 * changes, so that a mismatch fails loudly instead of misrouting rows. */
#define PLAN_FORMAT 1
/* magic u32, format u8, strategy u8, key type u8, K u32, key column + 1 u32 */
#define PLAN_HEADER_BYTES 15

static const char *strategy_name(unsigned s)
{
    switch (s) {
    case SF_SHARD_SIZE: return "size";
    case SF_SHARD_HASH: return "hash";
    case SF_SHARD_RANGE: return "range";
    case SF_SHARD_SEMANTIC: return "semantic";
    default: return "unknown";
    }
}

sf_status sf_shard_plan_encode(const sf_shard_plan *p, sf_buf *out)
{
    sf_status rc = SF_OK;
    SF_CHECK(p != NULL && out != NULL, SF_ERR_ARG, "sf_shard_plan_encode: NULL argument");
    SF_CHECK(p->finished, SF_ERR_ARG,
             "%s: shard plan: encode() before finish() (a %s plan is only portable once it is "
             "finished)", p->file, p->ops->name);
    size_t start = out->len;
    SF_CALL_GOTO(sf_buf_reserve(out, PLAN_HEADER_BYTES), done);
    SF_CALL_GOTO(sf_buf_put_u32(out, PLAN_MAGIC), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, PLAN_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)p->strategy), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)p->key_type), done);
    SF_CALL_GOTO(sf_buf_put_u32(out, (uint32_t)p->k), done);
    /* key_col is -1 for size sharding: stored shifted so it stays unsigned. */
    SF_CALL_GOTO(sf_buf_put_u32(out, (uint32_t)(p->key_col + 1)), done);
    SF_CALL_GOTO(p->ops->encode(p, out), done);
done:
    /* All or nothing: a failed encode leaves out as the caller gave it. */
    if (rc != SF_OK) out->len = start;
    return rc;
}

/* A failure while reading the strategy's bytes, re-recorded as SF_ERR_ARG
 * (the byte reader reports underflow as SF_ERR_PARSE, and the contract is
 * one code for every malformed encoding) with the plan it was meant for. */
static sf_status decode_failed(const sf_shard_plan *p, sf_status rc)
{
    if (rc == SF_ERR_NOMEM) return rc;
    char msg[768];
    snprintf(msg, sizeof msg, "%s", sf_error_message());
    return sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "%s: encoded %s shard plan (K = %d): %s",
                        p->file, p->ops->name, p->k, msg);
}

sf_status sf_shard_plan_decode(sf_shard_plan *p, const uint8_t *bytes, size_t n)
{
    SF_CHECK(p != NULL && (bytes != NULL || n == 0), SF_ERR_ARG,
             "sf_shard_plan_decode: NULL argument");
    SF_CHECK(!p->finished, SF_ERR_ARG,
             "%s: shard plan: decode() into a plan that is already finished", p->file);
    SF_CHECK(n >= PLAN_HEADER_BYTES, SF_ERR_ARG,
             "%s: encoded shard plan: %zu bytes, shorter than its %d-byte header", p->file, n,
             PLAN_HEADER_BYTES);
    sf_rd r;
    uint32_t magic, k, keycol1;
    uint8_t format, strategy, key_type;
    sf_rd_init(&r, bytes, n);
    /* The length was checked above, so none of these reads can fail. */
    if (sf_rd_u32(&r, &magic) != SF_OK || sf_rd_u8(&r, &format) != SF_OK ||
        sf_rd_u8(&r, &strategy) != SF_OK || sf_rd_u8(&r, &key_type) != SF_OK ||
        sf_rd_u32(&r, &k) != SF_OK || sf_rd_u32(&r, &keycol1) != SF_OK)
        return decode_failed(p, SF_ERR_PARSE);
    SF_CHECK(magic == PLAN_MAGIC, SF_ERR_ARG,
             "%s: encoded shard plan: bad magic 0x%08x (expected 0x%08x): not a shard plan",
             p->file, (unsigned)magic, (unsigned)PLAN_MAGIC);
    SF_CHECK(format == PLAN_FORMAT, SF_ERR_ARG,
             "%s: encoded shard plan: format version %u, this build reads version %d", p->file,
             (unsigned)format, PLAN_FORMAT);
    SF_CHECK(strategy == (uint8_t)p->strategy, SF_ERR_ARG,
             "%s: encoded shard plan is for strategy '%s' (%u), this plan is '%s'", p->file,
             strategy_name(strategy), (unsigned)strategy, p->ops->name);
    SF_CHECK(k == (uint32_t)p->k, SF_ERR_ARG,
             "%s: encoded %s shard plan has K = %u shards, this plan has K = %d", p->file,
             p->ops->name, (unsigned)k, p->k);
    SF_CHECK(key_type == (uint8_t)p->key_type, SF_ERR_ARG,
             "%s: encoded %s shard plan has a key of type %u (%s), this plan's key '%s' is %s",
             p->file, p->ops->name, (unsigned)key_type, sf_type_name((sf_type)key_type),
             p->key ? p->key : "(none)", sf_type_name(p->key_type));
    /* Column numbers are 1-based in messages, as in batch_key(); 0 is none. */
    SF_CHECK(keycol1 == (uint32_t)(p->key_col + 1), SF_ERR_ARG,
             "%s: encoded %s shard plan keys on column number %u, this plan on column number "
             "%d (the schemas differ)", p->file, p->ops->name, (unsigned)keycol1, p->key_col + 1);
    sf_status rc = p->ops->decode(p, bytes + r.off, n - r.off);
    if (rc != SF_OK) return decode_failed(p, rc);
    p->finished = true;
    return SF_OK;
}
