/* In-place transactions of built-in agents (engine-private: the executor
 * and src/agents/).
 *
 * Under fault tolerance the executor processes a unit as a transaction: by
 * default into a fresh transaction state that is merged into the agent's
 * state on success and emptied on failure. For agents whose states hold
 * one small entry per key of a large key space (sessions: one per user),
 * that merge costs as much as the processing itself. An agent with these
 * functions instead processes the unit straight into its state: begin
 * starts recording what process() changes, commit forgets the record, and
 * rollback restores the state to what it was at begin, so that its
 * encoding is byte for byte the one it had. Between begin and commit or
 * rollback only process() is called on the state. None is collective;
 * each state is used by one thread. */
#ifndef SF_AGENTS_TXN_H
#define SF_AGENTS_TXN_H

#include "shardflow/agent.h"

typedef struct sf__agent_txn {
    sf_status (*begin)(void *state);
    void (*commit)(void *state);
    void (*rollback)(void *state);
} sf__agent_txn;

/* The in-place transaction functions of a registered agent, NULL if it has
 * none (then the executor uses transaction states). */
const sf__agent_txn *sf__agent_txn_of(const sf_agent_ops *ops);

/* The sessions agent's (agents/sessions.c). */
extern const sf__agent_txn sf__sessions_txn;

/* A merge of two encoded states straight into an encoding: appends to out
 * exactly encode(merge(decode(a), decode(b))), with every check of decode
 * made on a and b. scratch is an init'ed state of the agent (its
 * configuration is read, its contents neither read nor kept). For agents
 * whose states are large sorted tables (sessions: one entry per user),
 * where decoding both, merging and encoding again costs several times a
 * walk of the two encodings. */
typedef sf_status (*sf__merge_encoded_fn)(void *scratch, const uint8_t *a, size_t na, const uint8_t *b, size_t nb,
                                          sf_buf *out);

/* The registered agent's, NULL if it has none. */
sf__merge_encoded_fn sf__agent_merge_encoded_of(const sf_agent_ops *ops);

/* The sessions agent's. */
extern const sf__merge_encoded_fn sf__sessions_merge_encoded;

#endif
