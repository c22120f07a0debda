/* Hash sharding: shard = sf_shard_key_hash(key) % K. Stateless, no pre-pass;
 * string keys are hashed once per dictionary code of a batch. */
#include <stdlib.h>

#include "shard/plan_impl.h"

static sf_status hash_init(sf_shard_plan *p, const sf_shard_config *cfg)
{
    /* Nothing to keep; impl only marks the plan as initialised. */
    p->impl = calloc(1, 1);
    SF_CHECK(p->impl != NULL, SF_ERR_NOMEM, "out of memory creating the shard plan");
    return SF_OK;
}

static sf_status hash_finish(sf_shard_plan *p, uint64_t total_rows, uint64_t data_start,
                             uint64_t data_bytes)
{
    return SF_OK;
}

static sf_status hash_route(const sf_shard_plan *p, const sf_batch *b, const sf_column *key,
                            uint32_t *shard)
{
    uint64_t k = (uint64_t)p->k;
    size_t n = b->nrows;
    if (key->type == SF_STRING && n > 0 && key->dict.n > 0 && sf__shard_use_code_cache(key, n)) {
        /* Per-batch cache: shard of each dictionary code, filled on first
         * use, so routing a row is an array lookup. */
        uint32_t *cache = malloc((size_t)key->dict.n * sizeof *cache);
        SF_CHECK(cache != NULL, SF_ERR_NOMEM, "out of memory routing a batch (%u codes)",
                 key->dict.n);
        for (uint32_t c = 0; c < key->dict.n; c++) cache[c] = UINT32_MAX;
        for (size_t i = 0; i < n; i++) {
            if (sf_col_is_null(key, i)) {
                shard[i] = 0;
                continue;
            }
            uint32_t code = key->code[i];
            if (code >= key->dict.n) {
                free(cache);
                return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__,
                                    "shard plan: row %zu of column '%s' has dictionary code %u "
                                    "of %u", i, p->key, code, key->dict.n);
            }
            if (cache[code] == UINT32_MAX) cache[code] = (uint32_t)(sf_shard_key_hash(key, i) % k);
            shard[i] = cache[code];
        }
        free(cache);
        return SF_OK;
    }
    for (size_t i = 0; i < n; i++)
        shard[i] = sf_col_is_null(key, i) ? 0 : (uint32_t)(sf_shard_key_hash(key, i) % k);
    return SF_OK;
}

static void hash_describe(const sf_shard_plan *p, sf_json *j)
{
    sf_json_key(j, "hash");
    sf_json_str(j, "xxh64, seed 0, little-endian key bytes");
}

/* The shard of a key is hash % K and K is in the header, so a hash plan
 * has no state of its own to carry: the body is empty. */
static sf_status hash_encode(const sf_shard_plan *p, sf_buf *out) { return SF_OK; }

static sf_status hash_decode(sf_shard_plan *p, const uint8_t *bytes, size_t n)
{
    SF_CHECK(n == 0, SF_ERR_ARG, "%zu trailing bytes (a hash plan has no state)", n);
    return SF_OK;
}

static void hash_destroy(sf_shard_plan *p)
{
    free(p->impl);
    p->impl = NULL;
}

const sf__shard_ops sf__shard_hash_ops = {
    .name = "hash",
    .needs_prepass = false,
    .init = hash_init,
    .observe = NULL,
    .finish = hash_finish,
    .route = hash_route,
    .describe = hash_describe,
    .encode = hash_encode,
    .decode = hash_decode,
    .destroy = hash_destroy,
};
