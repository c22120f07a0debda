/* Checkpoint files: the progress of a run in one self-describing HDF5 file.
 *
 * A checkpoint records, for a run whose passes (dependency levels of
 * stages) are 0 .. nlevels-1, that passes 0 .. level-1 are complete and
 * that pass `level` has consumed `rows_read` input rows, up to the reader
 * position `pos`. It holds the encoded state of every agent of those
 * passes: for a complete pass the reduced state of all its rows, for the
 * pass in progress the reduced state of the rows read so far. Because
 * agent merges are exactly associative and commutative, a restart that
 * starts from these states and reads on from `pos` ends with the same
 * bytes as an uninterrupted run, for any rank and thread count.
 *
 * Layout (h5dump shows it):
 *   /                      attributes format_version, config_hash, input_id,
 *                          sequence, created_unix, created, shardflow_version,
 *                          ranks, threads, level, nlevels, rows_read,
 *                          pieces_done, rounds_done, reader_pos (4 x u64),
 *                          checksum
 *   /stages/STAGE          attributes level, status ("done" or "running")
 *   /stages/STAGE/AGENT_ID dataset of u8: the agent's encoded state;
 *                          attributes agent (the agent's kind, e.g. "stats"),
 *                          level, index (its place among the states), rows,
 *                          checksum
 *   /shards                datasets rows_done, rows_excluded (u64 x k),
 *                          attempts, pieces_excluded (u32 x k); a run stores
 *                          every (pass, shard) pair, pass-major, so k is
 *                          passes x shards
 * Names are percent-encoded ('%' -> %25, '/' -> %2F, a leading '.' -> %2E).
 *
 * Files are DIR/checkpoint.h5 (newest) and DIR/checkpoint.prev.h5 (the one
 * before). A write goes to DIR/checkpoint.h5.tmp, which is closed,
 * fsync'ed, the current file renamed to .prev.h5, the new one renamed into
 * place, and the directory fsync'ed: at every instant the directory holds
 * a complete newest or previous checkpoint (DESIGN invariant 7).
 *
 * The checksum attribute is xxh64 over a canonical encoding of every other
 * attribute and every dataset's bytes; HDF5's own metadata checksums
 * (latest file format) cover the structure. Both are verified on load.
 *
 * Only this module (src/fault/checkpoint.c) includes hdf5.h for checkpoints.
 * Every function here is Not collective: rank 0 writes and reads. */
#ifndef SF_CHECKPOINT_H
#define SF_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/status.h"

#define SF_CKPT_FORMAT_VERSION 1u

/* One agent's encoded state. */
typedef struct sf_ckpt_state {
    char *stage;         /* stage name (owned) */
    char *agent;         /* agent id within the stage (owned) */
    char *kind;          /* agent name, e.g. "stats" (owned) */
    int level;           /* the pass it belongs to */
    uint64_t rows;       /* rows given to the agent so far (after where:) */
    uint8_t *data;       /* encoded state (owned) */
    size_t len;
} sf_ckpt_state;

/* A stage and whether its pass is complete. */
typedef struct sf_ckpt_stage {
    char *name;          /* owned */
    int level;
    bool done;
} sf_ckpt_stage;

typedef struct sf_ckpt {
    uint32_t format_version;   /* SF_CKPT_FORMAT_VERSION when written by this build */
    char config_hash[17];      /* hex: the result-relevant workflow hash */
    char input_id[256];        /* sf_ckpt_input_identity of the input */
    uint64_t sequence;         /* 1, 2, ... within one run (and across restarts) */
    double created_unix;       /* seconds since the epoch when written */
    int ranks, threads;        /* of the run that wrote it (informative) */
    int nlevels;               /* passes of the run */
    int level;                 /* pass in progress; nlevels when all are done */
    uint64_t rows_read;        /* rows of pass `level` consumed */
    uint64_t pieces_done;      /* shard pieces of pass `level` processed */
    uint64_t rounds_done;      /* input rounds of pass `level` done (root attribute rounds_done) */
    uint64_t reader_pos[4];    /* opaque reader position (sf_reader_pos) */
    int nstages;
    sf_ckpt_stage *stages;     /* owned */
    int nstates;
    sf_ckpt_state *states;     /* owned: agents of passes 0 .. level (those of level only if rows_read > 0) */
    int k;                     /* logical shards (pass `level`) */
    uint64_t *shard_rows_done;      /* owned, k entries */
    uint64_t *shard_rows_excluded;  /* owned, k entries */
    uint32_t *shard_attempts;       /* owned, k entries: attempts beyond the first */
    uint32_t *shard_pieces_excluded;/* owned, k entries */
} sf_ckpt;

/* Zeroes c. */
void sf_ckpt_init(sf_ckpt *c);
/* Frees everything c owns and zeroes it. */
void sf_ckpt_fini(sf_ckpt *c);
/* Appends a copy of a state / stage (copies the strings and bytes). */
sf_status sf_ckpt_add_state(sf_ckpt *c, const char *stage, const char *agent, const char *kind, int level,
                            uint64_t rows, const uint8_t *data, size_t len);
sf_status sf_ckpt_add_stage(sf_ckpt *c, const char *name, int level, bool done);
/* Allocates the four shard arrays for k shards (zeroed). */
sf_status sf_ckpt_set_shards(sf_ckpt *c, int k);

/* Points inside a write at which a fault can be injected (a crash test
 * kills the process there); hook is called with the point's name:
 * "ckpt.begin" (nothing written), "ckpt.partial" (temporary file half
 * written, still open), "ckpt.closed" (temporary file complete and
 * fsync'ed, not renamed), "ckpt.rotated" (old newest renamed to .prev, new
 * not yet renamed), "ckpt.renamed" (new in place, directory not yet
 * fsync'ed), "ckpt.done". NULL hook: none. */
typedef void (*sf_ckpt_hook)(const char *point, void *ctx);

/* Writes c as the newest checkpoint of dir (created if missing), keeping
 * the one it replaces as .prev. The file gets c->format_version (use
 * SF_CKPT_FORMAT_VERSION; tests write older ones) and a checksum. */
sf_status sf_ckpt_write(const char *dir, const sf_ckpt *c, sf_ckpt_hook hook, void *hook_ctx);

/* What sf_ckpt_load found. */
typedef enum sf_ckpt_found {
    SF_CKPT_NONE = 0,      /* no checkpoint file in dir */
    SF_CKPT_NEWEST = 1,    /* checkpoint.h5 was valid */
    SF_CKPT_PREVIOUS = 2   /* checkpoint.h5 missing or invalid, checkpoint.prev.h5 valid */
} sf_ckpt_found;

/* Loads the newest valid checkpoint of dir into out (init'ed by the call).
 * A file is valid when HDF5 opens it, its format version is
 * SF_CKPT_FORMAT_VERSION, and its checksum matches. An invalid newest file
 * falls back to the previous one; notes (may be NULL, size notes_cap) gets
 * one line per file that was passed over and why ("checkpoint.h5: checksum
 * mismatch (file corrupt or truncated); using checkpoint.prev.h5").
 * A valid file whose config_hash or input_id differs from the expected ones
 * (NULL: not checked) is refused: SF_ERR_CONFIG with a message naming both
 * values, and no fallback (the previous one was written by the same run).
 * Neither file present: SF_OK with *found = SF_CKPT_NONE. Both present and
 * invalid: SF_ERR_IO naming both reasons. */
sf_status sf_ckpt_load(const char *dir, const char *config_hash, const char *input_id, sf_ckpt *out,
                       sf_ckpt_found *found /* out */, char *notes, size_t notes_cap);

/* Removes dir's checkpoint files (newest, previous, temporary). */
sf_status sf_ckpt_remove(const char *dir);

/* The identity of an input file for checkpoints: "size=N mtime=S.NS
 * sample=HEX" where sample is xxh64 of up to 16 blocks of 64 KiB spread
 * evenly over the file (first and last included). Not collective. */
sf_status sf_ckpt_input_identity(const char *path, char *out, size_t cap);

#endif
