/* The built-in agents, registered by sf_agents_register_builtin(). Private
 * to src/agents/. */
#ifndef SF_AGENTS_BUILTIN_H
#define SF_AGENTS_BUILTIN_H

#include "shardflow/agent.h"

/* Exact count, sum, mean, variance, min and max of a numeric column,
 * optionally grouped by key columns (agents/stats.c). */
extern const sf_agent_ops sf__agent_stats;

#endif
