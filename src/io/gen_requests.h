/* Internal: the synthetic `requests` generator (a web-service request log).
 *
 * Row i is a pure function of (seed, i, zipf, users): every row draws its
 * random numbers from a counter-based stream keyed by (seed, i), and every
 * field uses fixed positions in that stream. So any row range can be generated
 * on its own (on any rank, in any batch size) and gives the same values as a
 * single pass, and a projection never changes the values of the columns that
 * are loaded. */
#ifndef SF_IO_GEN_REQUESTS_H
#define SF_IO_GEN_REQUESTS_H

#include <stdint.h>

#include "shardflow/batch.h"
#include "shardflow/io.h"

/* Column indices of the schema, in order. */
enum {
    SF__GEN_TIMESTAMP = 0,
    SF__GEN_SERVICE,
    SF__GEN_ENDPOINT,
    SF__GEN_REGION,
    SF__GEN_USER_ID,
    SF__GEN_CLIENT_IP,
    SF__GEN_STATUS,
    SF__GEN_LATENCY_MS,
    SF__GEN_BYTES,
    SF__GEN_REVENUE,
    SF__GEN_NCOLS
};

/* 2026-01-01T00:00:00Z in microseconds since the epoch: the first row's time. */
#define SF__GEN_EPOCH_US INT64_C(1767225600000000)

/* Fills s (initialised by the caller, empty) with the requests schema. */
sf_status sf__gen_requests_schema(sf_schema *s);

/* The sampling tables of one configuration (Zipf tables of services,
 * endpoints, regions, users and client addresses, status mixes) plus a small
 * cache of dictionary codes. Building it costs about a millisecond at the
 * defaults (users = 100000); reuse it for many ranges. A model may be used by
 * one thread at a time (the code cache is mutable); make one per thread. */
typedef struct sf__gen_model sf__gen_model;

/* Validates cfg (generator name, users >= 1, zipf finite and >= 0) and builds
 * the model. On failure *out is NULL and nothing needs freeing. */
sf_status sf__gen_requests_model_create(const sf_input_config *cfg, sf__gen_model **out);
void sf__gen_requests_model_destroy(sf__gen_model **m);

/* Clears b and fills it with rows [first_row, first_row + nrows); nrows must
 * not exceed b->cap. b must have the requests schema. Columns with
 * want[c] == 0 (or not loaded in b) are neither generated nor written; want
 * may be NULL (all). Strings are interned into the columns' dictionaries;
 * revenue and bytes carry nulls (validity arrays). Sets b->first_row. */
sf_status sf__gen_requests_fill(sf__gen_model *m, uint64_t first_row, uint64_t nrows,
                                const uint8_t *want, sf_batch *b);

/* The same as a model_create + fill + destroy: convenient for one range; a
 * caller that generates many ranges should keep a model. */
sf_status sf__gen_requests_range(const sf_input_config *cfg, uint64_t first_row, uint64_t nrows,
                                 const uint8_t *want, sf_batch *b);

#endif
