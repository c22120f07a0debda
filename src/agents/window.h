/* Access to the final state of the `window` agent (agents/window.c) for the
 * agents of later stages that read its per-bucket series (the anomaly
 * detectors). Private to src/agents/. Nothing here is collective. */
#ifndef SF_AGENTS_WINDOW_H
#define SF_AGENTS_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/agent.h"
#include "shardflow/status.h"

/* True if ops is the window agent. */
bool sf__window_is(const sf_agent_ops *ops);
/* Bucket width of a window state, in microseconds. */
int64_t sf__window_bucket_us(const void *state);
/* The buckets of one group (key/keylen: canonical group key, as sf_agent_row_key builds it for the
 * window's by columns) of a final window state, in time order: their number in *n, bucket start
 * times (us) in *start_us and the value of `what` ("mean", "sum", "rows", "count", "rate") in
 * *values; both arrays malloc'ed, the caller frees them (NULL when n == 0). A group that is absent
 * gives n = 0. Safe for concurrent callers on one const state. */
sf_status sf__window_series(const void *state, const uint8_t *key, size_t keylen, const char *what,
                            size_t *n, int64_t **start_us, double **values);

#endif
