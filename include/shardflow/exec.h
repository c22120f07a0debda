/* The per-rank executor: runs every agent of a pass over batches, cut into
 * morsels, with OpenMP threads and thread-local agent states. */
#ifndef SF_EXEC_H
#define SF_EXEC_H

#include <stddef.h>
#include <stdint.h>

#include "shardflow/agent.h"
#include "shardflow/batch.h"
#include "shardflow/buf.h"
#include "shardflow/filter.h"
#include "shardflow/status.h"

typedef struct sf_exec sf_exec;

/* One agent instance of a pass. cfg, ops and where must outlive the
 * executor. */
typedef struct sf_exec_agent {
    const sf_agent_ops *ops;
    const sf_agent_config *cfg;
    const sf_filter *where;   /* bound to the pass schema, or NULL */
    int group;                /* aspect group, 0 .. ngroups - 1 (agents of a group are adjacent) */
} sf_exec_agent;

/* How the groups (aspects) of a pass share the threads: as tasks over
 * groups x morsels (concurrent), or one group after the other, each over
 * all morsels (sequential). Both give identical states. */
typedef enum sf_exec_schedule { SF_EXEC_CONCURRENT = 0, SF_EXEC_SEQUENTIAL = 1 } sf_exec_schedule;

/* Creates states for n agents on nthreads threads. Not collective. */
sf_status sf_exec_create(const sf_exec_agent *agents, int n, int nthreads, size_t morsel_rows,
                         sf_exec **out);
/* Sets the schedule of the groups (default concurrent). */
void sf_exec_set_schedule(sf_exec *x, sf_exec_schedule s);
/* The threads the executor processes with. */
int sf_exec_threads(const sf_exec *x);
/* Decodes agent a's state from an sf_exec_encode output into a new state
 * (init'ed with the agent's cfg) that the caller owns: free it with
 * sf_exec_state_destroy. */
sf_status sf_exec_decode_agent(sf_exec *x, const uint8_t *bytes, size_t n, int a, void **state);
void sf_exec_state_destroy(sf_exec *x, int a, void **state);
/* Copies an sf_exec_encode output keeping only the agents with want[a]
 * set; the others' sections become empty (decode only the kept ones).
 * out is cleared first. */
sf_status sf_exec_select(const sf_exec *x, const uint8_t *bytes, size_t n, const uint8_t *want, sf_buf *out);
/* Rows agent a was given (after its where: filter) by this executor. */
uint64_t sf_exec_agent_rows(const sf_exec *x, int a);
/* Seconds agent a spent in process() and in evaluating its where: filter
 * (a filter shared with the agent before it counts there), summed over
 * threads and attempts. */
double sf_exec_agent_seconds(const sf_exec *x, int a);
void sf_exec_destroy(sf_exec **x);

/* Processes every row of nb batches: all their morsels are shared among the
 * threads (static schedule, so thread t always takes the same morsels of the
 * same work), each thread into its own states. Not collective; call from the
 * master thread. */
sf_status sf_exec_process(sf_exec *x, const sf_batch *const *batches, int nb);

/* The same, while the master thread also runs side(ctx) (not MPI: the
 * next round's reading) concurrently with the other threads' morsels; it
 * joins the morsels when side returns. Returns the first failure of either. */
sf_status sf_exec_process_overlap(sf_exec *x, const sf_batch *const *batches, int nb,
                                  sf_status (*side)(void *ctx), void *ctx);

/* Fault tolerance of a pass (see include/shardflow/fault.h). */
typedef struct sf_exec_faults {
    int level;              /* the pass, for injection decisions */
    int max_attempts;       /* attempts per piece, >= 1 */
    double backoff;         /* seconds before the first retry, doubled after each */
    double task_timeout;    /* seconds per morsel (checked when its agents return), 0 = none */
} sf_exec_faults;
/* Turns on transactional processing for sf_exec_process_unit: a unit is
 * processed into scratch states that are merged into the rank's states
 * only when every piece succeeded, so a failed attempt leaves no trace
 * and a retry or an exclusion is exact. Not collective. */
sf_status sf_exec_set_faults(sf_exec *x, const sf_exec_faults *f);

/* What happened to one piece of a unit. */
typedef struct sf_exec_piece_result {
    uint32_t shard;
    uint64_t rows;           /* rows of the piece */
    uint64_t rows_excluded;  /* rows left out (the whole piece if excluded, else bad rows) */
    int attempts;            /* attempts made (1 = first try succeeded) */
    bool excluded;           /* failed max_attempts times: left out of the result */
    char why[256];           /* excluded: its last failure */
} sf_exec_piece_result;

/* Processes one unit: nb pieces (batches[i] of shard shards[i], all from
 * input round `round`), with side work as in sf_exec_process_overlap.
 * Without sf_exec_set_faults it is sf_exec_process_overlap. With it, a
 * failing unit is rolled back and its pieces retried one by one (with
 * backoff) up to max_attempts each; a piece that still fails is excluded
 * (res[i].excluded, its last failure in res[i].why). Returns a failure
 * only for what retrying cannot help (the side work, out of memory in the
 * executor itself). res has nb entries. Not collective. */
sf_status sf_exec_process_unit(sf_exec *x, const sf_batch *const *batches, const uint32_t *shards, int nb,
                               uint64_t round, sf_status (*side)(void *ctx), void *ctx,
                               sf_exec_piece_result *res /* out */);
/* Settings of the next sf_exec_process_unit: attempts are numbered from
 * attempt_base + 1 (a piece that another rank already tried), and with
 * hold the unit's result is kept aside until sf_exec_hold_end decides
 * (speculative execution: only one copy of a unit may count). Not
 * collective. */
sf_status sf_exec_set_unit(sf_exec *x, int attempt_base, bool hold);
/* Merges the held result into the states (commit) or drops it. */
sf_status sf_exec_hold_end(sf_exec *x, bool commit);

/* Merges an sf_exec_encode output (of the same agents: a checkpoint) into
 * this executor's states, and adds agent_rows[a] (may be NULL) to the rows
 * given to each agent and rows to the executor's rows. Not collective. */
sf_status sf_exec_absorb(sf_exec *x, const uint8_t *bytes, size_t n, const uint64_t *agent_rows, uint64_t rows);

/* Merges the thread states (in thread order) and appends the encoded state of
 * every agent to out. */
sf_status sf_exec_encode(sf_exec *x, sf_buf *out);

/* into := into (+) from, both being sf_exec_encode outputs of executors with
 * the same agents (used by the rank reduction). */
sf_status sf_exec_merge_encoded(sf_exec *x, sf_buf *into, const uint8_t *from, size_t n);

/* Decodes an sf_exec_encode output and calls the report of agents [a0, a1)
 * into j as j[agent id] = result, in agent order (the caller opens the
 * object). */
sf_status sf_exec_report(sf_exec *x, const uint8_t *bytes, size_t n, int a0, int a1, sf_json *j);

/* Rows processed by this executor so far. */
uint64_t sf_exec_rows(const sf_exec *x);

/* Threads to use when the workflow does not say: OMP_NUM_THREADS if set, else
 * SLURM_CPUS_PER_TASK, else the CPUs this process may run on divided among
 * the ranks of this node that share them. */
int sf_exec_default_threads(int local_ranks);
/* Sets the OpenMP thread count for later regions. */
void sf_exec_set_threads(int n);
/* How OpenMP binds this rank's threads, as OMP_PROC_BIND and OMP_PLACES
 * set it (shardflow never overrides them): "false", "true", "master",
 * "close" or "spread", and the number of places (0 if none). Not
 * collective. */
const char *sf_exec_proc_bind(void);
int sf_exec_num_places(void);
/* Creates the OpenMP threads now (an empty parallel region), so that they
 * inherit the caller's signal mask. */
void sf_exec_start_threads(int n);

/* Runs fn(ctx, t) once for every t in [0, nthreads), on up to nthreads
 * OpenMP threads at once (t = 0 on the calling thread), and returns when
 * all are done: for work that is not morsels of batches (parallel-read's
 * sub-parts). fn must be safe to run for different t at once. Returns the
 * failure of the lowest t that failed, with its message, whatever the
 * threads' timing. Not collective; call from the master thread, outside
 * any parallel region. */
sf_status sf_exec_parallel(int nthreads, sf_status (*fn)(void *ctx, int t), void *ctx);

#endif
