/* The agent registry: a fixed table of name -> ops, built-ins first. */
#include <stdbool.h>
#include <string.h>

#include "shardflow/agent.h"

#include "agents/builtin.h"
#include "agents/txn.h"
#include "agents/detect.h"
#include "agents/sessions.h"
#include "agents/sketch_agents.h"

#define MAX_AGENTS 64

static const sf_agent_ops *registry[MAX_AGENTS];
static int nregistered;
static bool builtin_done;

/* The built-ins, in registration order. */
static const sf_agent_ops *const builtins[] = {
    &sf__agent_stats,
    &sf__agent_quantiles,
    &sf__agent_distinct,
    &sf__agent_histogram,
    &sf__agent_window,
    &sf__agent_topk,
    &sf__agent_countmin,
    &sf__agent_sessions,
    &sf__agent_zscore,
    &sf__agent_mad,
    &sf__agent_iqr,
    &sf__agent_ewma,
    &sf__agent_vote,
};

const sf__agent_txn *sf__agent_txn_of(const sf_agent_ops *ops)
{
    return ops == &sf__agent_sessions ? &sf__sessions_txn : NULL;
}

sf__merge_encoded_fn sf__agent_merge_encoded_of(const sf_agent_ops *ops)
{
    return ops == &sf__agent_sessions ? sf__sessions_merge_encoded : NULL;
}

static const sf_agent_ops *lookup(const char *name)
{
    for (int i = 0; i < nregistered; i++)
        if (strcmp(registry[i]->name, name) == 0) return registry[i];
    return NULL;
}

static sf_status add(const sf_agent_ops *ops)
{
    SF_CHECK(ops != NULL && ops->name != NULL && ops->name[0] != '\0', SF_ERR_ARG,
             "agent registration without a name");
    SF_CHECK(ops->abi_version == SF_AGENT_ABI_VERSION, SF_ERR_ARG,
             "agent '%s' was built for agent ABI %d, this shardflow has ABI %d", ops->name,
             ops->abi_version, SF_AGENT_ABI_VERSION);
    SF_CHECK(ops->init != NULL && ops->process != NULL && ops->merge != NULL &&
                 ops->encode != NULL && ops->decode != NULL && ops->report != NULL &&
                 ops->destroy != NULL,
             SF_ERR_ARG, "agent '%s' lacks a required function", ops->name);
    SF_CHECK(lookup(ops->name) == NULL, SF_ERR_ARG, "agent '%s' is already registered",
             ops->name);
    SF_CHECK(nregistered < MAX_AGENTS, SF_ERR_ARG,
             "cannot register agent '%s': the table holds %d agents", ops->name, MAX_AGENTS);
    registry[nregistered++] = ops;
    return SF_OK;
}

void sf_agents_register_builtin(void)
{
    if (builtin_done) return;
    builtin_done = true;
    for (size_t i = 0; i < sizeof builtins / sizeof builtins[0]; i++) {
        /* A built-in cannot fail to register: the table starts empty and the
         * names are distinct. */
        (void)add(builtins[i]);
    }
}

sf_status sf_agent_register(const sf_agent_ops *ops)
{
    /* Built-ins first, so that their names are always taken by them. */
    sf_agents_register_builtin();
    return add(ops);
}

int sf_agent_count(void)
{
    sf_agents_register_builtin();
    return nregistered;
}

const sf_agent_ops *sf_agent_at(int i)
{
    sf_agents_register_builtin();
    return i >= 0 && i < nregistered ? registry[i] : NULL;
}

const sf_agent_ops *sf_agent_find(const char *name)
{
    if (name == NULL) return NULL;
    sf_agents_register_builtin();
    return lookup(name);
}
