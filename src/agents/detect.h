/* Anomaly detectors over a baseline from an earlier stage (two-pass
 * workflows): the agents zscore, mad, iqr and ewma, and the vote agent that
 * runs several detectors on every record (agents/detect.c,
 * agents/vote_agent.c). Private to src/agents/.
 *
 * The scoring of one record is a reusable API here: read a detector's
 * options from a mapping (sf__detect_opts_read), check a baseline against
 * them (sf__detect_check_baseline), then per state init an sf__detector and
 * score rows with it (sf__detector_score). A detector keeps a per-group
 * cache of what it needs from the baseline (looked up on a group's first
 * row), so the baseline is read once per group and state, not per row. A
 * detector is owned by one state and so by one thread at a time; the
 * baseline state it reads is shared read-only. */
#ifndef SF_AGENTS_DETECT_H
#define SF_AGENTS_DETECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/agent.h"
#include "shardflow/buf.h"
#include "shardflow/json.h"

#include "agents/groups.h"

extern const sf_agent_ops sf__agent_zscore, sf__agent_mad, sf__agent_iqr, sf__agent_ewma,
    sf__agent_vote;

typedef enum sf__detect_kind {
    SF__DETECT_ZSCORE = 0,
    SF__DETECT_MAD = 1,
    SF__DETECT_IQR = 2,
    SF__DETECT_EWMA = 3
} sf__detect_kind;

#define SF__DETECT_NKINDS 4

typedef enum sf__detect_dir {
    SF__DETECT_UP = 0,   /* only values above the expectation are anomalous */
    SF__DETECT_DOWN = 1, /* only values below it */
    SF__DETECT_BOTH = 2
} sf__detect_dir;

/* "zscore", "mad", "iqr", "ewma". */
const char *sf__detect_kind_name(sf__detect_kind kind);
/* Parses a detector name; false if unknown. */
bool sf__detect_kind_parse(const char *name, sf__detect_kind *out);

/* The options of one detector, defaults filled in. */
typedef struct sf__detect_opts {
    sf__detect_kind kind;
    double threshold;         /* zscore 3, mad 3.5, iqr k 3, ewma k 4 */
    sf__detect_dir direction; /* both, ewma: up */
    double alpha;             /* ewma smoothing factor, default 0.3 */
    int64_t warmup;           /* ewma: earlier buckets a bucket needs, default 3 */
    const char *time;         /* ewma: time column, default "timestamp" (borrowed) */
} sf__detect_opts;

/* Reads the detector options of kind from opt->node (the agent's mapping,
 * or one item of a vote agent's detectors: list with opt->line set to the
 * item's line), with the sf_agent_opt_* messages. Does not check unknown
 * keys. Not collective. */
sf_status sf__detect_opts_read(const sf_agent_config *opt, sf__detect_kind kind,
                               sf__detect_opts *out);

/* Checks that prior is a suitable baseline for a detector with options o
 * scoring column cfg->column grouped by cfg->by: the right agent (stats for
 * zscore, quantiles for mad and iqr, window for ewma), the same by columns
 * in the same order and the same column (for ewma also the same time
 * column). cfg->node is the detector's mapping (as for
 * sf__detect_opts_read): messages name file:line of its baseline: (or
 * time:) key, else cfg->line, the agent id and what differs. Not
 * collective. */
sf_status sf__detect_check_baseline(const sf_agent_config *cfg, const sf__detect_opts *o,
                                    const sf_agent_prior *prior);

/* Checks the value column (numeric), the by: columns and, for ewma, the
 * time column (timestamp) of cfg->schema; messages as above. Not
 * collective. */
sf_status sf__detect_check_columns(const sf_agent_config *cfg, const sf__detect_opts *o);

/* What a detector says about one record. */
typedef struct sf__detect_score {
    bool scored;       /* false: the record could not be judged (see detect.c) */
    bool vote;         /* anomalous */
    double score;      /* the signed score in units of the threshold's scale */
    double confidence; /* confidence in the vote, in [0, 1] */
} sf__detect_score;

/* Per-group cache entry: what the baseline says about one group. */
typedef struct sf__detect_group {
    uint8_t status;   /* 0 not looked up, 1 usable, 2 not scorable (unscored) */
    double a, b;      /* zscore: mean, sd; mad: median, mad; iqr: Q1, Q3 */
    size_t off, n;    /* ewma: the group's buckets in the detector's bucket arrays */
} sf__detect_group;

typedef struct sf__detector {
    sf__detect_opts o;
    const sf_agent_prior *prior; /* borrowed; its state is read lazily */
    int col;                     /* value column in the pass schema */
    int time_col;                /* ewma: time column, else -1 */
    sf__groups groups;           /* group key -> cache entry */
    sf__detect_group *g;
    uint32_t gcap;
    int64_t bucket_us;           /* ewma: the window's bucket width (0 until read) */
    int64_t *bstart;             /* ewma: bucket starts, per group ascending */
    double *bres;                /* ewma: mean - forecast */
    double *bspread;             /* ewma: spread estimate; NaN while warming up */
    size_t nb, bcap;
} sf__detector;

/* Makes a detector for records of cfg (column, by columns, schema) with
 * options o and baseline prior (both borrowed; they must outlive it). The
 * baseline's state is not read here, so init works before the baseline
 * exists. On failure there is nothing to free. Not collective. */
sf_status sf__detector_init(sf__detector *d, const sf_agent_config *cfg, const sf__detect_opts *o,
                            const sf_agent_prior *prior);
/* Frees a detector (NULL-safe, idempotent). */
void sf__detector_fini(sf__detector *d);
/* Starts a batch: call before scoring rows of b (the group cache keys on
 * its dictionaries). Fails if a key column is not loaded. */
sf_status sf__detector_batch(sf__detector *d, const sf_batch *b);
/* Scores row r of b. Fails only on a broken baseline or out of memory. */
sf_status sf__detector_score(sf__detector *d, const sf_batch *b, size_t r, sf__detect_score *out);

/* The confidence of a vote given the score s, direction dir and threshold
 * t (see detect.c). */
double sf__detect_confidence(double s, sf__detect_dir dir, double t, bool vote);

/* EWMA forecasts over a series of n bucket means in time order (NaN means
 * an empty bucket, skipped): res[i] = mean[i] - forecast, spread[i] the
 * spread estimate before bucket i, NaN in both while fewer than warmup
 * earlier buckets exist (or for an empty bucket). */
void sf__detect_ewma(size_t n, const double *mean, double alpha, int64_t warmup, double *res,
                     double *spread);

/* ---- ground truth and confusion counts (shared by both agents) ---------- */

#define SF__TRUTH_MAX_IDS 64

typedef struct sf__detect_truth {
    const char *column; /* NULL: no truth: option */
    int col;            /* its index in the pass schema (-1 until resolved) */
    int nids;           /* truth_ids: 0 = every nonzero value is positive */
    int64_t ids[SF__TRUTH_MAX_IDS];
} sf__detect_truth;

/* Reads truth: and truth_ids: from cfg; resolves truth against cfg->schema
 * when resolve is set (check/init; not from columns()). */
sf_status sf__detect_truth_read(const sf_agent_config *cfg, bool resolve, sf__detect_truth *t);
/* Whether row r of b is a positive (a null truth is negative). */
bool sf__detect_truth_positive(const sf__detect_truth *t, const sf_batch *b, size_t r);

typedef struct sf__confusion {
    uint64_t tp, fp, fn, tn;
} sf__confusion;

static inline void sf__confusion_add(sf__confusion *c, bool predicted, bool actual)
{
    if (predicted)
        actual ? c->tp++ : c->fp++;
    else
        actual ? c->fn++ : c->tn++;
}

static inline void sf__confusion_merge(sf__confusion *into, const sf__confusion *from)
{
    into->tp += from->tp;
    into->fp += from->fp;
    into->fn += from->fn;
    into->tn += from->tn;
}

sf_status sf__confusion_encode(const sf__confusion *c, sf_buf *out);
sf_status sf__confusion_decode(sf__confusion *c, sf_rd *rd);
/* Writes the members "confusion", "precision", "recall", "f1" into an open
 * object. */
void sf__confusion_report(const sf__confusion *c, sf_json *j);

#endif
