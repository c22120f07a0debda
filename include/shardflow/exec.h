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

#endif
