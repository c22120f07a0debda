/* Synthesis: turns the final results of a run's agents into findings
 * (aspect rules), weighted combinations of estimates, conflicts between
 * agents and aspects with their resolution, and quality scores with
 * automatic consistency checks. Pure functions of the final states and the
 * workflow, so the output is deterministic. Runs on rank 0. */
#ifndef SF_SYNTH_H
#define SF_SYNTH_H

#include <stddef.h>
#include <stdint.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/json.h"
#include "shardflow/status.h"

/* One agent instance of the run with its final result. */
typedef struct sf_synth_agent {
    const char *stage;        /* stage name */
    const char *aspect;       /* aspect name, NULL for a plain agent */
    const char *id;           /* agent id (unique within the stage) */
    const char *agent;        /* registered agent name */
    const char *column;       /* column:, or NULL */
    const char *where;        /* where:, or NULL */
    int nby;
    const char *const *by;    /* by: column names */
    int line;                 /* line of the agent in the workflow */
    const sf_agent_ops *ops;
    const sf_agent_config *cfg;
    /* Set for sf_synth_write, NULL for sf_synth_check: */
    const void *state;        /* final (reduced) state; ops->stat() may be called on it */
    const char *json;         /* its report (the JSON object result.json holds) */
    size_t json_len;
} sf_synth_agent;

/* What fed the results: shards and rows processed against the totals. */
typedef struct sf_synth_coverage {
    uint64_t shards_done, shards_total;
    uint64_t rows_done, rows_total;
} sf_synth_coverage;

typedef struct sf_synth_input {
    const sf_workflow *w;             /* stages, aspects and their findings:, synthesis:, file */
    int nagents;
    const sf_synth_agent *agents;     /* every agent, in stage order then declaration order */
    sf_synth_coverage coverage;
} sf_synth_input;

/* Validates every findings: rule and the synthesis: section against the
 * agents (ids, metrics, options) before any data moves; messages name the
 * file, line and key. Not collective. */
sf_status sf_synth_check(const sf_synth_input *in);

/* Evaluates the rules and syntheses on the final results and writes the
 * members "findings", "synthesis" and "quality" into j, an object the
 * caller has opened (result.json's top level). Not collective. */
sf_status sf_synth_write(const sf_synth_input *in, sf_json *j);

#endif
