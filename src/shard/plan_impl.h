/* Internal: the shard plan object and the table of functions each strategy
 * (size.c, hash.c, range.c, semantic.c) implements. plan.c validates the
 * arguments and dispatches; a strategy only sees well-formed calls. */
#ifndef SF_SHARD_PLAN_IMPL_H
#define SF_SHARD_PLAN_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/shard.h"

typedef struct sf__shard_ops {
    const char *name;        /* "size", "hash", "range", "semantic" */
    bool needs_prepass;
    /* Allocates p->impl from the validated config (key column resolved). */
    sf_status (*init)(sf_shard_plan *p, const sf_shard_config *cfg);
    /* Pre-pass over one batch; key is the key column of b (type checked). */
    sf_status (*observe)(sf_shard_plan *p, const sf_batch *b, const sf_column *key);
    sf_status (*finish)(sf_shard_plan *p, uint64_t total_rows, uint64_t data_start,
                        uint64_t data_bytes);
    /* key is NULL for size sharding. Must be thread-safe on a finished plan. */
    sf_status (*route)(const sf_shard_plan *p, const sf_batch *b, const sf_column *key,
                       uint32_t *shard);
    /* Optional (NULL: none): where every shard's rows of b form one
     * contiguous run, writes start[0..k] (shard s holds rows start[s] ..
     * start[s + 1] of b, the same rows route() gives it) and returns true;
     * else false. Thread-safe on a finished plan. */
    bool (*route_runs)(const sf_shard_plan *p, const sf_batch *b, size_t *start);
    /* Writes the strategy's own members into the open plan object. */
    void (*describe)(const sf_shard_plan *p, sf_json *j);
    /* Appends the state finish() computed, as fixed-width little-endian
     * bytes, after the header plan.c writes (magic, version, strategy, K,
     * key type, key column). Only called on a finished plan. */
    sf_status (*encode)(const sf_shard_plan *p, sf_buf *out);
    /* Restores what encode wrote, from exactly bytes[0..n) (the header is
     * already checked), so that route() and describe() behave as after
     * finish(); plan.c then marks the plan finished. The bytes are
     * untrusted: every count is bounded by the bytes left before anything
     * is allocated from it, and a malformed encoding fails with a message
     * and leaves p->impl as it was. */
    sf_status (*decode)(sf_shard_plan *p, const uint8_t *bytes, size_t n);
    void (*destroy)(sf_shard_plan *p);   /* frees p->impl only */
} sf__shard_ops;

struct sf_shard_plan {
    const sf__shard_ops *ops;
    sf_shard_strategy strategy;
    int k;                   /* logical shards */
    int key_col;             /* -1 for size */
    sf_type key_type;        /* SF_TYPE_NONE for size */
    char *key;               /* key column name (owned), NULL for size */
    char *file;              /* workflow path for messages (owned) */
    int key_line;            /* line of shard.key in the workflow, 0 if unknown */
    bool finished;
    void *impl;              /* strategy-private state */
};

extern const sf__shard_ops sf__shard_size_ops;
extern const sf__shard_ops sf__shard_hash_ops;
extern const sf__shard_ops sf__shard_range_ops;
extern const sf__shard_ops sf__shard_semantic_ops;

/* XXH64 (seed 0) of raw bytes: the hash behind sf_shard_key_hash. */
uint64_t sf__shard_hash_bytes(const void *p, size_t n);

/* The splitmix64 output function: a bijection on 64-bit words with good
 * avalanche, used for counter-based random numbers and hash-table slots. */
static inline uint64_t sf__shard_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Cap on the per-batch dictionary-code caches: a batch whose dictionary is
 * much larger than its row count (a dictionary shared across batches) is
 * routed row by row instead, so a cache never costs more than the batch. */
static inline bool sf__shard_use_code_cache(const sf_column *c, size_t nrows)
{
    return c->dict.n <= 4 * (uint64_t)nrows + 1024;
}

#endif
