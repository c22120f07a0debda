/* The agent interface: a specialist analysis with a mergeable partial state.
 *
 * Laws every agent must keep (the built-ins' tests check them): merge(init,
 * x) == x, and merge is exactly associative and commutative (equal states
 * encode to equal bytes), so a result never depends on how rows were split
 * into shards, which thread took which morsel, or in which order partial
 * states meet (the hierarchical reduction groups ranks by node). encode() is versioned and portable (fixed-width little-endian),
 * because the same bytes travel over MPI and into checkpoints.
 *
 * Adding an agent in C: fill an sf_agent_ops with abi_version =
 * SF_AGENT_ABI_VERSION and call sf_agent_register() before the workflow is
 * loaded (a plugin does it from its sf_plugin_init(), see plugin.h). The
 * option helpers below give the same error messages (file:line, agent id,
 * option) as the built-ins. */
#ifndef SF_AGENT_H
#define SF_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/batch.h"
#include "shardflow/buf.h"
#include "shardflow/json.h"
#include "shardflow/status.h"

#define SF_AGENT_ABI_VERSION 2

struct sf_cfg_node;
struct sf_agent_ops;
struct sf_agent_config;

/* The rows of one morsel an agent is given: sel[0..n) when sel != NULL (a
 * where: filter selected them; ascending row indices into the batch), else
 * the contiguous rows begin .. begin + n - 1. shard (added within ABI 2, so
 * older agents never read it) is the logical shard all of them belong to,
 * SF_ROWS_NO_SHARD where the engine does not know one: an agent may use it
 * to lay out its memory (the keys of one shard together), never for what it
 * reports, which must not depend on the sharding. */
#define SF_ROWS_NO_SHARD UINT32_MAX
typedef struct sf_rows {
    size_t begin;
    size_t n;
    const uint32_t *sel;
    uint32_t shard;
} sf_rows;

/* Row index of the i-th row of rows. */
static inline size_t sf_rows_at(const sf_rows *rows, size_t i)
{
    return rows->sel != NULL ? (size_t)rows->sel[i] : rows->begin + i;
}

/* The final (globally reduced) state of an agent of an earlier stage, named
 * by the baseline: STAGE.AGENT_ID option (or one item of a list of them). ops, cfg and state are read-only and
 * outlive every state of the agent that refers to them. state is NULL while
 * the workflow is only being checked (check() runs before any data moves). */
typedef struct sf_agent_prior {
    const char *ref;                        /* "STAGE.AGENT_ID" as written */
    const struct sf_agent_ops *ops;
    const struct sf_agent_config *cfg;
    const void *state;
} sf_agent_prior;

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
    /* Added in ABI 2. */
    const char *stage;        /* stage name */
    const char *aspect;       /* aspect the agent is declared in, else ops->aspect */
    const char *shard_strategy; /* "size", "hash", "range", "semantic" */
    const char *shard_key;    /* shard.key, NULL for size */
    const char *where;        /* the where: expression (applied by the engine), or NULL */
    int nbaseline;            /* baseline: STAGE.AGENT_ID or a list of them */
    const sf_agent_prior *baseline; /* nbaseline priors in the order written, or NULL */
    uint64_t seed;            /* the workflow's seed: (default 1), for agents that hash or sample */
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
    /* Adds the given rows of batch (one morsel, after the where: filter).
     * Called concurrently on different states. */
    sf_status (*process)(void *state, const sf_batch *batch, const sf_rows *rows);
    /* into = into (+) from; from is unchanged. */
    sf_status (*merge)(void *into, const void *from);
    /* Appends a portable encoding of state to out. */
    sf_status (*encode)(const void *state, sf_buf *out);
    /* Replaces the contents of an init'ed state with decoded bytes: no
     * trace of earlier contents may remain, including spare per-group
     * storage that a later merge or process reuses by index. After a
     * failed decode the contents are unspecified (decode again or destroy). */
    sf_status (*decode)(void *state, const void *bytes, size_t n);
    /* Writes the result value (a JSON object) of the final state. */
    sf_status (*report)(const void *state, sf_json *out);
    void (*destroy)(void *state);
    /* Added in ABI 2; each may be NULL. */
    /* Names of the columns the agent reads besides column: and by: (a time:
     * column, the columns of a flag: expression...), so that the engine
     * loads them: at most max names into names (borrowed from cfg->node),
     * their number in *n. Called before the pass schema exists: cfg->schema
     * is the input schema here and cfg->col is -1. */
    sf_status (*columns)(const sf_agent_config *cfg, const char **names, int max, int *n);
    /* A named statistic of a final state, for agents of later stages
     * (baseline:) and for the engine's consistency checks. key/keylen is a
     * group's canonical key (sf_agent_row_key), NULL/0 for the whole state
     * (every group together). Names: "count" (non-null values seen), "rows"
     * (rows seen, nulls included), "mean", "sd", "variance", "min", "max",
     * "q:P" (quantile P in [0, 1]), "mad" (median absolute deviation),
     * "distinct". Returns SF_OK with *out set, SF_ERR_ARG (with a message)
     * when the agent does not have that statistic, or when key is unknown.
     * Must be safe for concurrent callers on one const state. */
    sf_status (*stat)(const void *state, const uint8_t *key, size_t keylen, const char *name,
                      double *out);
} sf_agent_ops;

/* Registers an agent; the ops must outlive the process. Fails if the name is
 * taken or the ABI version differs. Not thread-safe; not collective (every
 * rank must register the same agents). */
sf_status sf_agent_register(const sf_agent_ops *ops);
/* Looks up a registered agent (built-ins are always registered). */
const sf_agent_ops *sf_agent_find(const char *name);
/* Registers the built-in agents (idempotent). */
void sf_agents_register_builtin(void);
/* The number of registered agents and the i-th one (for --help listings). */
int sf_agent_count(void);
const sf_agent_ops *sf_agent_at(int i);

/* ---- options ----------------------------------------------------------
 * Every helper reads cfg->node (the agent's mapping) and names the file, the
 * line of the option and the agent id in its messages. Not collective. */

/* Fails unless every key of the agent's mapping is an engine key (agent, id,
 * column, by, where, baseline) or one of allowed[0..n). */
sf_status sf_agent_check_options(const sf_agent_config *cfg, const char *const *allowed, int n);
/* The option node, NULL when absent. */
const struct sf_cfg_node *sf_agent_option(const sf_agent_config *cfg, const char *key);
/* A number in [lo, hi]; dflt when absent. */
sf_status sf_agent_opt_double(const sf_agent_config *cfg, const char *key, double dflt, double lo,
                              double hi, double *out);
/* An integer in [lo, hi]; dflt when absent. */
sf_status sf_agent_opt_int(const sf_agent_config *cfg, const char *key, int64_t dflt, int64_t lo,
                           int64_t hi, int64_t *out);
/* A scalar string (borrowed from the node); dflt (may be NULL) when absent. */
sf_status sf_agent_opt_str(const sf_agent_config *cfg, const char *key, const char *dflt,
                           const char **out);
/* One of choices[0..n): *out is its index; dflt (an index) when absent. */
sf_status sf_agent_opt_choice(const sf_agent_config *cfg, const char *key,
                              const char *const *choices, int n, int dflt, int *out);
/* true/false/yes/no; dflt when absent. */
sf_status sf_agent_opt_bool(const sf_agent_config *cfg, const char *key, bool dflt, bool *out);
/* A sequence of numbers (or one number) in [lo, hi], at most max of them. */
sf_status sf_agent_opt_doubles(const sf_agent_config *cfg, const char *key, double lo, double hi,
                               double *out, int max, int *n);
/* A sequence of strings (or one string), borrowed, at most max. */
sf_status sf_agent_opt_strs(const sf_agent_config *cfg, const char *key, const char **out, int max,
                            int *n);
/* A duration: "500ms", "30s", "1m", "2h", "1d", or a bare number of seconds;
 * > 0; in microseconds. dflt when absent. */
sf_status sf_agent_opt_duration_us(const sf_agent_config *cfg, const char *key, int64_t dflt,
                                   int64_t *out);
/* Index of a column of the pass schema by name, -1 if absent (check() and
 * init() use it for the columns their columns() function named). */
int sf_agent_col(const sf_agent_config *cfg, const char *name);
/* Fails with a clear message unless column name exists in cfg->schema and
 * has one of the given types; *col is its index. key is the option that
 * named it, for the message. */
sf_status sf_agent_need_col(const sf_agent_config *cfg, const char *key, const char *name,
                            const sf_type *types, int ntypes, int *col);

/* ---- group keys -------------------------------------------------------
 * The canonical key of a row for key columns by_col[0..nby): per column a
 * tag byte (0 = null, 1 = value), then for a string a u32 little-endian
 * length and the bytes, for a number 8 little-endian bytes (int64 and
 * timestamps as two's complement, float64 as IEEE bits with -0 as +0 and
 * one NaN). Agents grouped by the same columns have equal keys for equal
 * rows, so an agent can look up its row's group in a baseline agent. */

/* Writes the key of row r into *key (grown as needed; *cap is its size) and
 * its length into *len. */
sf_status sf_agent_row_key(const sf_batch *b, const int *by_col, int nby, size_t r, uint8_t **key,
                           size_t *cap, size_t *len);
/* Appends the printed key (parts as sf_col_format prints them, '|' and '\'
 * escaped with '\', null as \N, joined with '|') of key bytes k[0..n) of
 * columns by_col[0..nby) of schema s to out. Fails on malformed keys. */
sf_status sf_agent_key_text(const sf_schema *s, const int *by_col, int nby, const uint8_t *k,
                            size_t n, sf_buf *out);
/* true if k[0..n) is a well-formed key for those columns. */
bool sf_agent_key_valid(const sf_schema *s, const int *by_col, int nby, const uint8_t *k, size_t n);

#endif
