/* The built-in agents, registered by sf_agents_register_builtin(). Private
 * to src/agents/. */
#ifndef SF_AGENTS_BUILTIN_H
#define SF_AGENTS_BUILTIN_H

#include "shardflow/agent.h"

/* Exact count, sum, mean, variance, min and max of a numeric column,
 * optionally grouped by key columns (agents/stats.c). */
extern const sf_agent_ops sf__agent_stats;

/* Heavy hitters, exact or from Count-Min candidates (agents/topk.c). */
extern const sf_agent_ops sf__agent_topk;
extern const sf_agent_ops sf__agent_countmin;

/* Counts, sums and means per time bucket (agents/window.c). */
extern const sf_agent_ops sf__agent_window;

#endif
