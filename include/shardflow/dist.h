/* Moving shards from rank 0 to the ranks and running the executor on them. */
#ifndef SF_DIST_H
#define SF_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/batch.h"
#include "shardflow/buf.h"
#include "shardflow/config.h"
#include "shardflow/exec.h"
#include "shardflow/io.h"
#include "shardflow/shard.h"
#include "shardflow/status.h"

/* What one pass measured on this rank. */
typedef struct sf_dist_stats {
    int k;                    /* shards */
    uint64_t *shard_rows;     /* rank 0: rows routed to each shard (k entries) */
    uint64_t *shard_bytes;    /* rank 0: input bytes routed to each shard */
    uint64_t rows_read;       /* rank 0 */
    uint64_t units_sent;      /* rank 0: messages of work sent */
    uint64_t bytes_sent;      /* rank 0 */
    uint64_t peak_inflight;   /* rank 0: largest bytes in flight or queued */
    uint64_t units_done;      /* work units this rank processed */
    uint64_t rows_done;       /* rows this rank processed */
    double t_read, t_route, t_process, t_wait;  /* seconds on this rank */
    /* Fault tolerance, per shard on this rank (summed over ranks by the run). */
    uint64_t *rows_included;  /* rows of the shard processed into the result */
    uint64_t *rows_excluded;  /* rows left out (excluded pieces, corrupt rows) */
    uint64_t *retries;        /* attempts beyond the first */
    uint64_t *pieces_excluded;
    uint64_t pieces_done;     /* pieces processed (included or not) */
    uint64_t rounds;          /* rank 0: rounds done at the last boundary (counting from the pass's start) */
    sf_reader_pos pos;        /* rank 0: reader position at that boundary */
    uint64_t pos_rows;        /* rank 0: rows read up to that boundary */
    char fault[512];          /* the first excluded piece's failure (in input order), "" if none */
    uint64_t fault_key;       /* its (round << 20 | shard), UINT64_MAX if none */
    uint64_t moved;           /* rank 0: pieces moved to another rank */
    uint64_t speculated;      /* rank 0: units it re-ran for a straggler */
    uint64_t speculation_won; /* rank 0: ... whose copy counted */
    uint64_t pieces_in_place; /* parallel-read: pieces taken as views of the batch (all ranks) */
} sf_dist_stats;

/* The run's side of one pass: checkpoints at round boundaries and stops. */
typedef struct sf_dist_hooks {
    /* Collective: every rank calls it at the same round boundary, after
     * processing every unit of the rounds before it and before any unit
     * after it. local is this rank's status so far (a failed rank still
     * takes part, so that nobody waits). It ends in an agreement; a
     * failure ends the pass on every rank. */
    sf_status (*checkpoint)(void *ctx, sf_dist_stats *st, sf_status local);
    void *ctx;
    uint64_t every_pieces;   /* rank 0: checkpoint after this many pieces (0 = never) */
    double every_seconds;    /* rank 0: ... or at the first boundary this long after the last (0 = never) */
    uint64_t first_round;    /* rank 0: index of the first round read (rounds done before a restart) */
    bool stop_on_signal;     /* end the pass at a round boundary on SIGTERM/SIGUSR1: SF_ERR_INTERRUPTED */
    /* Dynamic mode's recovery (rank 0 decides; see the README). */
    bool redistribute;       /* a piece that failed max_attempts on a rank is tried once on another */
    uint32_t moved_attempt_base; /* its attempts there are numbered from this + 1 (max_attempts) */
    bool speculate;          /* re-run a straggler's last units on rank 0 when the queue is empty */
    double watchdog;         /* a worker with work and no message for this long ends the job (0 = off) */
} sf_dist_hooks;

sf_status sf_dist_stats_init(sf_dist_stats *s, int k);
void sf_dist_stats_fini(sf_dist_stats *s);

/* Runs one pass. Rank 0 reads every batch from reader (already rewound and
 * projected), routes rows to shards with plan, packs the columns pass_cols
 * (indices in the reader's schema, giving the pass schema in this order) into
 * work units and sends them (static: shard s to rank s mod P; dynamic: on
 * request); every rank, rank 0 included, runs x on the units it gets. Other
 * ranks pass reader = NULL, plan = NULL. In-flight bytes on rank 0 are bounded
 * by cfg->memory_budget (plus one round). Every rank returns the same status
 * only after sf_comm_agree; this function itself only guarantees that no rank
 * is left waiting. Collective. */
sf_status sf_dist_run_pass(sf_reader *reader, const sf_shard_plan *plan,
                           const sf_distribute_config *cfg, const int *pass_cols, int npass,
                           const sf_schema *pass_schema, sf_exec *x, sf_dist_stats *stats);
/* The same with checkpoints and stops (hooks may be NULL). When a stop
 * signal ends the pass early, every rank returns SF_ERR_INTERRUPTED after
 * processing exactly the rounds read so far (st->rounds on rank 0). */
sf_status sf_dist_run_pass_ex(sf_reader *reader, const sf_shard_plan *plan, const sf_distribute_config *cfg,
                              const int *pass_cols, int npass, const sf_schema *pass_schema, sf_exec *x,
                              sf_dist_stats *stats, const sf_dist_hooks *hooks);

/* Work-unit encoding, exposed for tests: the rows `rows[0..n)` of src (only
 * columns cols[0..ncols)) as one piece of shard `shard` appended to out. */
sf_status sf_piece_append(sf_buf *out, const sf_batch *src, const int *cols, int ncols,
                          uint32_t shard, const uint32_t *rows, size_t n);
/* The same where piece column k (src's column cols[k]) may have a stable
 * dictionary stable[k] (sf_reader_stable_dict; stable or stable[k] NULL:
 * none): its codes index stable[k], and the piece carries them alone,
 * without a dictionary, for a receiver that holds the same dictionary
 * (sf_unit_parse_ex). A code outside stable[k] is an error. */
sf_status sf_piece_append_ex(sf_buf *out, const sf_batch *src, const int *cols, int ncols, uint32_t shard,
                             const uint32_t *rows, size_t n, const sf_dict *const *stable);
/* Begins a work unit message (kind 0 = data, 1 = end, 2 = abort, 3 =
 * checkpoint, 4 = stop). */
sf_status sf_unit_begin(sf_buf *out, uint32_t kind);
/* Appends the pieces of the data unit bytes[0..n) to the data unit that
 * starts at byte `at` of buf and runs to its end (its header and round
 * kept, its piece count summed); with buf->len == at there is no unit yet
 * and this one is copied whole. Not collective. */
sf_status sf_unit_append_pieces(sf_buf *buf, size_t at, const uint8_t *bytes, size_t n);
/* The input round of a data unit (header word 3). */
void sf_unit_set_round(sf_buf *unit, uint32_t round);
uint32_t sf_unit_round(const uint8_t *bytes, size_t n);
/* Dynamic mode's bookkeeping in the kind word: the unit's id (20 bits,
 * unique among the units in flight), whether it is speculative (the
 * worker asks rank 0 before its result counts) and the attempts other
 * ranks already made on its pieces (7 bits). */
void sf_unit_set_meta(sf_buf *unit, uint32_t id, bool speculative, uint32_t attempt_base);
void sf_unit_meta(const uint8_t *bytes, size_t n, uint32_t *id, bool *speculative, uint32_t *attempt_base);
/* Reads a work unit: its kind and its pieces as batches that borrow from the
 * bytes (valid while the bytes live). *views / *cap are a reusable array
 * (start with NULL / 0); it grows as needed, for any pass schema; *nviews
 * gets the number of pieces. Malformed units are rejected. ncols is the pass
 * schema's width. */
typedef struct sf_piece_view {
    sf_batch batch;
    uint32_t shard;
    int cols_cap;      /* columns allocated in batch.cols */
} sf_piece_view;
sf_status sf_unit_parse(const uint8_t *bytes, size_t n, const sf_schema *pass_schema,
                        uint32_t *kind, sf_piece_view **views, size_t *nviews, size_t *cap);
/* The same for units whose pieces may carry codes of stable dictionaries
 * (sf_piece_append_ex): stable[c] (c < pass_schema->ncols; stable or
 * stable[c] NULL: none) is pass column c's, the same dictionary the sender
 * packed with (same strings and codes); such a column's view has a shallow
 * copy of it as its dictionary (valid while stable[c] lives). A piece that
 * refers to a dictionary this rank lacks, or of another size, is rejected. */
sf_status sf_unit_parse_ex(const uint8_t *bytes, size_t n, const sf_schema *pass_schema,
                           const sf_dict *const *stable, uint32_t *kind, sf_piece_view **views,
                           size_t *nviews, size_t *cap);
/* The pieces of batch b that the runs start[0..k] (sf_shard_route_runs)
 * give to the shards, as views of b's own arrays (no copy; valid while b
 * is unchanged), shard by shard in order, empty shards left out: each view
 * holds the pass columns cols[0..ncols) of b, as sf_unit_parse would read
 * them back from the unit sf_piece_append packs of the same rows. Only for
 * numeric columns (strings need their dictionary packed): fails with
 * SF_ERR_ARG on a string column. Not collective. */
sf_status sf_unit_views_of_runs(const sf_batch *b, const int *cols, int ncols, const size_t *start, int k,
                                sf_piece_view **views, size_t *nviews, size_t *cap);
/* Frees what sf_unit_parse allocated for cap views. */
void sf_unit_views_free(sf_piece_view *views, size_t cap);

#endif
