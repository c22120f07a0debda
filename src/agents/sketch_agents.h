/* The sketch agents: mergeable summaries of a column whose size does not
 * grow with the number of rows. Private to src/agents/ (registry.c
 * registers them). Each keeps the laws of shardflow/agent.h exactly: merge
 * is associative and commutative bit for bit, and equal contents encode to
 * equal bytes whatever the split of rows and the order of merges. */
#ifndef SF_AGENTS_SKETCH_AGENTS_H
#define SF_AGENTS_SKETCH_AGENTS_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

/* Quantiles of a numeric column with relative value accuracy (a DDSketch
 * without collapsing), optionally grouped (agents/quantiles.c). */
extern const sf_agent_ops sf__agent_quantiles;
/* The bins that a quantiles sketch of accuracy alpha gives the magnitudes
 * ax[0..n) (finite, >= 1e-300) into out[0..n): the agent's own path, for
 * tests comparing it with ceil(log(ax) / log(gamma)). Not collective. */
void sf__quantiles_bins(double alpha, const double *ax, size_t n, int32_t *out /* out */);
/* Approximate number of distinct values of a column of any type (a
 * HyperLogLog with a sparse form for small groups), optionally grouped
 * (agents/distinct.c). */
extern const sf_agent_ops sf__agent_distinct;
/* Counts of a numeric column in fixed-width, logarithmic or explicit bins,
 * optionally grouped (agents/histogram.c). */
extern const sf_agent_ops sf__agent_histogram;

/* Writes "FILE:LINE: agent 'ID': option 'KEY'" into buf (or "--set KEY:
 * agent 'ID': option 'KEY'" for an option given on the command line), the
 * prefix of the messages the sketch agents give for option values that the
 * sf_agent_opt_* helpers cannot judge alone (duplicates, order, option
 * combinations). The line is the option's when present, else the agent's. */
static inline void sf__sketch_where(const sf_agent_config *cfg, const char *key, char *buf,
                                    size_t n)
{
    const char *file = cfg->file ? cfg->file : "<workflow>";
    const char *id = cfg->id ? cfg->id : (cfg->agent ? cfg->agent : "?");
    int line = cfg->line;
    bool present = false;
    const sf_cfg_node *m = cfg->node;
    if (m != NULL && m->kind == SF_NODE_MAP) {
        for (size_t i = 0; i < m->n; i++) {
            if (strcmp(m->keys[i], key) != 0) continue;
            present = true;
            line = m->key_lines ? m->key_lines[i] : cfg->line;
            if (m->items[i] != NULL && m->items[i]->line > 0) line = m->items[i]->line;
            break;
        }
    }
    if (present && line <= 0)
        snprintf(buf, n, "--set %s: agent '%s': option '%s'", key, id, key);
    else
        snprintf(buf, n, "%s:%d: agent '%s': option '%s'", file, line, id, key);
}

/* The checks every sketch agent makes on the engine keys: the column: (one
 * of types[0..ntypes)), the by: columns and the absence of a baseline:.
 * *col receives the column's index in the pass schema. */
static inline sf_status sf__sketch_check_columns(const sf_agent_config *cfg, const sf_type *types,
                                                 int ntypes, int *col)
{
    const char *file = cfg->file ? cfg->file : "<workflow>";
    const char *id = cfg->id ? cfg->id : (cfg->agent ? cfg->agent : "?");
    SF_CHECK(cfg->schema != NULL, SF_ERR_INTERNAL, "agent '%s': no schema to check against", id);
    SF_CALL(sf_agent_need_col(cfg, "column", cfg->column, types, ntypes, col));
    SF_CHECK(cfg->nby >= 0 && cfg->nby <= 255 && (cfg->nby == 0 || cfg->by_col != NULL),
             SF_ERR_CONFIG, "%s:%d: agent '%s': by: takes 1 to 255 columns", file, cfg->line, id);
    for (int i = 0; i < cfg->nby; i++)
        SF_CHECK(cfg->by_col[i] >= 0 && cfg->by_col[i] < cfg->schema->ncols, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': by column '%s' is not in the input", file, cfg->line, id,
                 cfg->by && cfg->by[i] ? cfg->by[i] : "?");
    SF_CHECK(cfg->nbaseline == 0, SF_ERR_CONFIG,
             "%s:%d: agent '%s': %s does not take a baseline: (it summarises its own rows)", file,
             cfg->line, id, cfg->agent ? cfg->agent : "this agent");
    return SF_OK;
}

/* Checks that rows select rows of b (the engine's contract, checked once
 * per call rather than per row). */
static inline sf_status sf__sketch_check_rows(const sf_batch *b, const sf_rows *rows)
{
    if (rows->n == 0) return SF_OK;
    size_t last = sf_rows_at(rows, rows->n - 1);
    SF_CHECK(last < b->nrows && (rows->sel != NULL || rows->begin + rows->n - 1 == last),
             SF_ERR_INTERNAL, "rows up to %zu of a %zu-row batch", last, b->nrows);
    return SF_OK;
}

#endif
