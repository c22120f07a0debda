/* Shard plans: rank 0 decides which of K logical shards every row belongs to.
 * K comes from the workflow, never from the rank count. */
#ifndef SF_SHARD_H
#define SF_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/batch.h"
#include "shardflow/buf.h"
#include "shardflow/config.h"
#include "shardflow/json.h"
#include "shardflow/status.h"

typedef struct sf_shard_plan sf_shard_plan;

/* Creates a plan for cfg over a table with the given schema: resolves the key
 * column and checks its type (hash: any; range: int64, float64 or timestamp;
 * semantic: string or int64; size: no key). file is the workflow path used in
 * messages. For semantic with cfg->map, reads the key->group CSV (header
 * "key,group"). Not collective. */
sf_status sf_shard_plan_create(const sf_shard_config *cfg, const sf_schema *schema,
                               const char *file, sf_shard_plan **out);
void sf_shard_plan_destroy(sf_shard_plan **p);

/* Index of the key column in the schema, -1 for size sharding. */
int sf_shard_plan_key_column(const sf_shard_plan *p);
int sf_shard_plan_count(const sf_shard_plan *p);

/* Whether the plan needs a pre-pass over the data (range: a seeded sample of
 * the key; semantic: the row count of every key). If so, feed every batch of
 * one full pass to observe() (only the key column needs to be loaded), then
 * call finish(). */
bool sf_shard_plan_needs_prepass(const sf_shard_plan *p);
sf_status sf_shard_plan_observe(sf_shard_plan *p, const sf_batch *b);

/* Completes the plan. total_rows: rows in the input if known (else
 * UINT64_MAX); data_start/data_bytes: byte range of the data rows (CSV),
 * used by size sharding when batches carry row offsets. Size sharding without
 * offsets needs total_rows. */
sf_status sf_shard_plan_finish(sf_shard_plan *p, uint64_t total_rows, uint64_t data_start,
                               uint64_t data_bytes);

/* Writes the shard of each row of b into shard[0..b->nrows). Thread-safe for
 * concurrent calls on a finished plan. Null keys go to shard 0. */
sf_status sf_shard_route(const sf_shard_plan *p, const sf_batch *b, uint32_t *shard /* out */);

/* Where the plan puts the rows of b shard by shard in contiguous runs
 * (size sharding by rows: a shard is a block of row numbers), writes
 * start[0..k] (shard s gets rows start[s] .. start[s + 1] of b, exactly
 * as sf_shard_route routes them) and returns true, in time independent of
 * the row count; else returns false and leaves start alone. Thread-safe on
 * a finished plan. */
bool sf_shard_route_runs(const sf_shard_plan *p, const sf_batch *b, size_t *start /* out, k + 1 */);

/* Describes the plan for run.json: strategy, K, key, splitters (range),
 * groups per shard (semantic), and notes such as a single key that alone is
 * larger than the mean shard. */
void sf_shard_plan_describe(const sf_shard_plan *p, sf_json *j);

/* A finished plan as portable bytes (fixed-width little-endian, versioned),
 * so that rank 0 plans once and every rank routes with the same plan
 * (distribute.mode: parallel-read). Appends to out. Fails on a plan that is
 * not finished. Not collective. */
sf_status sf_shard_plan_encode(const sf_shard_plan *p, sf_buf *out);
/* Restores what sf_shard_plan_encode wrote into a plan created with the
 * same config and schema (sf_shard_plan_create, not yet observed or
 * finished): afterwards it is finished and routes every row exactly as
 * the encoded plan does, and describes itself the same way. Malformed or
 * truncated bytes, or bytes of another strategy or K, are SF_ERR_ARG with
 * a message; the plan is then left unfinished. Not collective. */
sf_status sf_shard_plan_decode(sf_shard_plan *p, const uint8_t *bytes, size_t n);

/* Balance of a shard size vector: max / mean (1.0 is perfect; 0 if all empty). */
double sf_shard_imbalance(const uint64_t *sizes, int k);

/* The stable 64-bit hash of row r's key (xxHash64, seed 0, over a canonical
 * little-endian encoding: int64/timestamp as 8 bytes, float64 as its bits with
 * -0 folded to +0, strings as their bytes). Same on every machine. */
uint64_t sf_shard_key_hash(const sf_column *c, size_t r);

#endif
