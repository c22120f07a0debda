/* The workflow file: YAML loaded into a node tree (kept for line numbers and
 * agent options), --set overrides applied, then validated into structs. */
#ifndef SF_CONFIG_H
#define SF_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/io.h"
#include "shardflow/json.h"
#include "shardflow/fault.h"
#include "shardflow/status.h"

typedef enum sf_node_kind { SF_NODE_SCALAR = 1, SF_NODE_MAP = 2, SF_NODE_SEQ = 3 } sf_node_kind;

/* A YAML node. Maps keep their keys in file order. */
typedef struct sf_cfg_node {
    sf_node_kind kind;
    char *scalar;                 /* SF_NODE_SCALAR */
    bool quoted;                  /* scalar was quoted in the file */
    int line, col;                /* 1-based position in the file (0 for --set) */
    size_t n;
    char **keys;                  /* SF_NODE_MAP: n keys */
    int *key_lines;               /* SF_NODE_MAP: line of each key */
    struct sf_cfg_node **items;   /* map values or sequence items */
} sf_cfg_node;

/* Child of a map by key, NULL if absent or node is not a map. */
const sf_cfg_node *sf_cfg_get(const sf_cfg_node *map, const char *key);

typedef enum sf_shard_strategy {
    SF_SHARD_SIZE = 1,
    SF_SHARD_HASH = 2,
    SF_SHARD_RANGE = 3,
    SF_SHARD_SEMANTIC = 4
} sf_shard_strategy;

typedef struct sf_shard_config {
    sf_shard_strategy strategy;   /* default size */
    char *key;                    /* required for hash, range, semantic */
    int key_line;                 /* line of shard.key (for messages) */
    int shards;                   /* K logical shards, default 16 */
    char *map;                    /* semantic: key->group CSV, optional */
    uint64_t sample;              /* range: sample size, default 100000 */
    uint64_t seed;                /* range: sample seed, default 1 */
} sf_shard_config;

typedef enum sf_dist_mode { SF_DIST_STATIC = 1, SF_DIST_DYNAMIC = 2, SF_DIST_PARALLEL_READ = 3 } sf_dist_mode;

/* parallel-read: whether records move to the rank that owns their shard. */
typedef enum sf_exchange_mode { SF_EXCHANGE_AUTO = 0, SF_EXCHANGE_ALWAYS = 1, SF_EXCHANGE_NEVER = 2 } sf_exchange_mode;

typedef enum sf_reduce_mode { SF_REDUCE_HIERARCHICAL = 1, SF_REDUCE_FLAT = 2 } sf_reduce_mode;

typedef enum sf_aspect_schedule { SF_ASPECTS_CONCURRENT = 1, SF_ASPECTS_SEQUENTIAL = 2 } sf_aspect_schedule;

typedef struct sf_distribute_config {
    sf_dist_mode mode;            /* default static */
    sf_reduce_mode reduce;        /* default hierarchical (node, then cluster) */
    sf_aspect_schedule aspects;   /* default concurrent (aspects x morsels as tasks) */
    uint64_t memory_budget;       /* bytes; default 256 MiB; "256MiB", "1GiB", "4096" */
    size_t morsel_rows;           /* rows per morsel, default 16384 */
    uint64_t chunk_bytes;         /* largest single MPI message, default INT_MAX */
    sf_exchange_mode exchange;    /* parallel-read: auto (key-based strategies), always, never */
    /* Optimizations with a switch each (bench/optimize measures them; all
     * default on): */
    bool overlap;                 /* read round r+1 while round r is processed; non-blocking sends */
    bool batch_pieces;            /* one message per rank and round, not one per shard piece */
    bool in_place;                /* parallel-read, size sharding, numeric pass columns: pieces are
                                     views of the batch read, not packed copies */
    bool pools;                   /* reuse unit buffers instead of allocating per unit */
} sf_distribute_config;

typedef struct sf_agent_spec {
    char *agent;
    char *id;                     /* id:, else the agent name */
    char *column;                 /* NULL if absent */
    int nby;
    char **by;
    char *where;                  /* where: filter expression, NULL if absent */
    int nbaseline;
    char **baseline;              /* baseline: STAGE.AGENT_ID, or a list of them */
    int aspect;                   /* index into the stage's aspects, -1 for plain agents: */
    const sf_cfg_node *node;      /* the agent's map, for agent options */
    int line;
} sf_agent_spec;

/* An aspect: a group of agents of one stage (run concurrently with the
 * stage's other aspects) and the finding rules over their results. */
typedef struct sf_aspect_config {
    char *name;                   /* unique within the stage */
    int agent0, nagents;          /* its agents: stage->agents[agent0 .. agent0 + nagents) */
    const sf_cfg_node *findings;  /* the findings: sequence, NULL if absent (checked by src/synth) */
    int line;
} sf_aspect_config;

typedef struct sf_stage_config {
    char *name;
    int nafter;
    char **after;
    int *after_idx;               /* indices into stages */
    int nagents;
    sf_agent_spec *agents;        /* plain agents: first, then each aspect's in order */
    int naspects;
    sf_aspect_config *aspects;
    int line;
} sf_stage_config;

typedef struct sf_workflow {
    char *file;                   /* path as given */
    char *name;
    sf_input_config input;
    sf_shard_config shard;
    sf_distribute_config distribute;
    int nstages;
    sf_stage_config *stages;
    int *order;                   /* stages in dependency order (stable) */
    int *level;                   /* level[i]: longest path from a root to stage i */
    char *out_dir;                /* output.dir, default NULL */
    int threads;                  /* threads:, 0 = automatic */
    uint64_t seed;                /* seed:, default 1 (agents that hash or sample) */
    const sf_cfg_node *synthesis; /* the synthesis: mapping, NULL if absent (checked by src/synth) */
    int nplugins;
    char **plugins;               /* plugins: shared objects to load (paths resolved like input.path) */
    sf_checkpoint_config checkpoint; /* checkpoint: (src/fault) */
    sf_fault_config fault;        /* fault: (src/fault) */
    bool cache_enabled;           /* cache.enabled: reuse stored stage results (default false) */
    char *cache_dir;              /* cache.dir, default NULL (OUTDIR/cache) */
    sf_cfg_node *root;            /* the resolved tree */
    char config_hash[17];         /* xxh64 of the canonical resolved tree, hex */
    char result_hash[17];         /* the same over the keys that can change result.json: everything
                                   * but threads, output, distribute, checkpoint and fault (those may
                                   * change between a run and its restart) */
} sf_workflow;

/* The result-relevant configuration of pass `level` and the passes before
 * it, as 16 hex digits: xxh64 over the tree without the run-only keys
 * (threads, output, distribute, checkpoint, fault, cache), the workflow's
 * name and the stages and synthesis, followed by every stage whose level is
 * at most `level` (in file order). A later stage or the synthesis can
 * change without changing it (the stage result cache's key). Empty if out
 * of memory. Not collective. */
void sf_workflow_level_hash(const sf_workflow *w, int level, char out[17]);

/* Loads path, applies sets ("key.path=value", sequences indexed by number:
 * "stages.0.agents.1.column=bytes"), validates. Errors name file, line and
 * key. Not collective (every rank loads the file itself). */
sf_status sf_workflow_load(const char *path, int nsets, const char *const *sets,
                           sf_workflow **out);
void sf_workflow_destroy(sf_workflow **w);
/* The resolved configuration as JSON (for run.json). */
void sf_workflow_write_json(const sf_workflow *w, sf_json *j);
/* Parses "256MiB", "1GiB", "512KiB", "4096", "2GB"... */
bool sf_parse_bytes(const char *s, uint64_t *out);

#endif
