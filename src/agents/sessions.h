/* The `sessions` agent (agents/sessions.c): user sessions split at idle
 * gaps, with the share of sessions that end on a slow event (abandonment)
 * per time bucket of the session end. Private to src/agents/. */
#ifndef SF_AGENTS_SESSIONS_H
#define SF_AGENTS_SESSIONS_H

#include "shardflow/agent.h"

extern const sf_agent_ops sf__agent_sessions;

#endif
