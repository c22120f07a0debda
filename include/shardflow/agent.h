/* The agent interface: a specialist analysis with a mergeable partial state.
 *
 * Laws every agent keeps (tests check them): merge(init, x) == x, merge is
 * associative and, for the built-in agents, exactly commutative, so a result
 * never depends on how rows were split into shards or in which order partial
 * states meet. encode() is versioned and portable (fixed-width little-endian),
 * because the same bytes travel over MPI and into checkpoints.
 *
 * Adding an agent in C: fill an sf_agent_ops with abi_version =
 * SF_AGENT_ABI_VERSION and call sf_agent_register() before the workflow is
 * loaded. */
#ifndef SF_AGENT_H
#define SF_AGENT_H

#include <stddef.h>

#include "shardflow/batch.h"
#include "shardflow/buf.h"
#include "shardflow/json.h"
#include "shardflow/status.h"

#define SF_AGENT_ABI_VERSION 1

struct sf_cfg_node;

/* One agent instance as the workflow declares it, resolved against the
 * schema of the pass (the columns that travel with the shards). */
typedef struct sf_agent_config {
    const char *agent;        /* registered name, "stats" */
    const char *id;           /* result key: the id: key, else the name */
    const char *column;       /* column: key, or NULL */
    int col;                  /* index of column in schema, -1 if none */
    int nby;                  /* by: keys */
    const char *const *by;
    const int *by_col;        /* indices of the by columns in schema */
    const sf_schema *schema;  /* schema of the batches process() sees */
    const struct sf_cfg_node *node; /* the agent's mapping in the workflow */
    const char *file;         /* workflow file and line, for messages */
    int line;
} sf_agent_config;

typedef struct sf_agent_ops {
    int abi_version;
    const char *name;
    const char *aspect;       /* default aspect it serves */
    size_t state_size;        /* bytes the engine allocates per state */
    /* Validates the configuration (column types, options) before any work;
     * messages name cfg->file and cfg->line. May be NULL. */
    sf_status (*check)(const sf_agent_config *cfg);
    /* Makes an empty state in caller storage of state_size bytes. cfg
     * outlives the state. */
    sf_status (*init)(void *state, const sf_agent_config *cfg);
    /* Adds rows [begin, end) of batch (one morsel). Called concurrently on
     * different states. */
    sf_status (*process)(void *state, const sf_batch *batch, size_t begin, size_t end);
    /* into = into (+) from; from is unchanged. */
    sf_status (*merge)(void *into, const void *from);
    /* Appends a portable encoding of state to out. */
    sf_status (*encode)(const void *state, sf_buf *out);
    /* Replaces the contents of an init'ed state with decoded bytes. */
    sf_status (*decode)(void *state, const void *bytes, size_t n);
    /* Writes the result value (a JSON object) of the final state. */
    sf_status (*report)(const void *state, sf_json *out);
    void (*destroy)(void *state);
} sf_agent_ops;

/* Registers an agent; the ops must outlive the process. Fails if the name is
 * taken or the ABI version differs. Not thread-safe; not collective (every
 * rank must register the same agents). */
sf_status sf_agent_register(const sf_agent_ops *ops);
/* Looks up a registered agent (built-ins are always registered). */
const sf_agent_ops *sf_agent_find(const char *name);
/* Registers the built-in agents (idempotent). */
void sf_agents_register_builtin(void);

#endif
