/* Internal to src/synth/: the parsed findings rules and synthesis section,
 * the findings of a run, and the helpers the parts share (messages with
 * file and line, scalar parsing, agent lookup, result access). Not
 * thread-safe: one context per call of sf_synth_check or sf_synth_write. */
#ifndef SF_SYNTH_SYNTH_IMPL_H
#define SF_SYNTH_SYNTH_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/config.h"
#include "shardflow/json.h"
#include "shardflow/jsonv.h"
#include "shardflow/status.h"
#include "shardflow/synth.h"

#define SF__SYNTH_PATH 256

typedef enum sf__synth_dir { SF__SYNTH_ABOVE = 0, SF__SYNTH_BELOW = 1 } sf__synth_dir;

extern const char *const sf__synth_severities[]; /* "info" .. "critical", NULL-terminated */

/* evidence: {agent: ID, metric: M} of a rule. */
typedef struct sf__synth_evidence {
    int agent;          /* index into in->agents */
    const char *metric;
    int line;
} sf__synth_evidence;

/* One findings: rule of an aspect. Strings are borrowed from the workflow. */
typedef struct sf__synth_rule {
    int stage, aspect, order;  /* indices: stage in w->stages, aspect in it, rule in the aspect */
    const char *id;
    int agent;                 /* index into in->agents */
    const char *metric;
    sf__synth_dir dir;
    double threshold;          /* above:/below: (a ratio when relative) */
    bool relative;             /* relative_to: median */
    uint64_t min_count;
    bool has_min_value;
    double min_value;
    int severity;              /* index into sf__synth_severities */
    const char *title;
    int nevidence;
    sf__synth_evidence *evidence;
    int line, metric_line, min_count_line;
    char path[SF__SYNTH_PATH]; /* "stages[i].aspects[j].findings[k]" */
} sf__synth_rule;

/* A finding: one leaf, or one run of consecutive buckets, that fired. */
typedef struct sf__synth_finding {
    const sf__synth_rule *rule;
    char *key;                 /* printed group key (owned), "" without by: */
    size_t keylen;
    int nparts;                /* the agent's by: columns */
    size_t *part_off, *part_len; /* raw (escaped) parts of key, owned */
    bool has_window;
    int64_t start_us, end_us;
    double value, baseline, threshold;
    int buckets;
    double confidence;
    const sf_jv **evidence;    /* per evidence item: the leaf or group looked up, NULL if absent (owned array) */
    int aspect_rank;           /* sf__synth_aspect_rank of its aspect (set by the consensus) */
    size_t nagree, nconflict;  /* pairs with findings of other aspects (set by the consensus) */
    bool escalated, overruled;
} sf__synth_finding;

typedef enum sf__synth_weight {
    SF__SYNTH_W_SAMPLE = 0,
    SF__SYNTH_W_INVVAR = 1,
    SF__SYNTH_W_CONF = 2
} sf__synth_weight;

typedef struct sf__synth_estimate {
    int agent;                 /* index into in->agents */
    const char *ref;           /* STAGE.ID as written */
    const char *value, *count, *variance, *confidence; /* confidence may be NULL */
    int line, value_line, count_line, variance_line, confidence_line;
} sf__synth_estimate;

typedef struct sf__synth_combine {
    const char *id;
    sf__synth_weight weight;
    double z;
    int nest;
    sf__synth_estimate *est;
    int line;
    char path[SF__SYNTH_PATH];
} sf__synth_combine;

typedef enum sf__synth_resolve {
    SF__SYNTH_R_PRIORITY = 0,
    SF__SYNTH_R_CONFIDENCE = 1,
    SF__SYNTH_R_ESCALATE = 2
} sf__synth_resolve;

/* A conflict between two findings (indices into the sorted findings). */
typedef struct sf__synth_conflict {
    size_t a, b;
    bool severity, direction;  /* what they disagree on */
    sf__synth_resolve by;      /* the rule that settled it (escalate when priority cannot) */
    long winner;               /* a or b; -1 when escalated */
} sf__synth_conflict;

typedef struct sf__synth_ctx {
    const sf_synth_input *in;
    const sf_workflow *w;
    const char *file;
    double coverage;           /* share of the input the results saw, for confidences */

    sf__synth_rule *rules;     /* in stage, aspect, rule order */
    int nrules;
    sf__synth_combine *combines;
    int ncombines;
    sf__synth_resolve resolve;
    int npriority;
    const char **priority;     /* aspect names, borrowed */

    sf_jv_doc **docs;          /* per agent, parsed on first use */

    sf__synth_finding *findings;
    size_t nfindings, capfindings;
    sf__synth_conflict *conflicts;
    size_t nconflicts, capconflicts;
    size_t (*agree)[2];        /* agreeing pairs (a < b) in finding order */
    size_t nagree, capagree;
} sf__synth_ctx;

/* ---- synth.c: shared helpers ------------------------------------------------ */

/* An SF_ERR_CONFIG message "FILE:LINE: PATH: ..." (no LINE when line <= 0). */
sf_status sf__synth_fail(const sf__synth_ctx *c, int line, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* A plain "", "~" or "null" scalar (an empty YAML value). */
bool sf__synth_is_null(const sf_cfg_node *n);
/* Line of the value of key i of map (the key's line, else the value's). */
int sf__synth_key_line(const sf_cfg_node *map, size_t i);
/* The child of map under key and its line (0 and NULL when absent). */
const sf_cfg_node *sf__synth_get(const sf_cfg_node *map, const char *key, int *line);
/* Fails unless every key of map is in allowed (NULL-terminated). */
sf_status sf__synth_check_keys(const sf__synth_ctx *c, const sf_cfg_node *map, const char *path,
                               const char *const *allowed);
/* A non-empty string scalar. */
sf_status sf__synth_str(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                        const char **out);
/* A number in JSON syntax (plain decimal), finite. */
sf_status sf__synth_num(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                        double *out);
/* A plain non-negative decimal integer. */
sf_status sf__synth_uint(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                         uint64_t *out);
/* One of names (NULL-terminated): its index. */
sf_status sf__synth_enum(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                         const char *const *names, int *out);
/* Index of agent id of stage in in->agents, -1 if none. */
int sf__synth_agent(const sf__synth_ctx *c, const char *stage, const char *id);
/* Resolves "STAGE.ID" (a dot inside names is allowed when only one split
 * matches an agent): the index in *out, or a message. */
sf_status sf__synth_agent_ref(const sf__synth_ctx *c, const char *ref, int line, const char *path, int *out);
/* "STAGE.ID" of agent i, into buf. */
void sf__synth_agent_name(const sf__synth_ctx *c, int i, char *buf, size_t cap);
/* The parsed report of agent i (parsed on first use). */
sf_status sf__synth_result(sf__synth_ctx *c, int i, const sf_jv **out);
/* A field of an object; a path "a.b" reaches into nested objects when no
 * member is called "a.b" (so "quantiles.0.99" finds {"quantiles": {"0.99": x}}). */
const sf_jv *sf__synth_field(const sf_jv *obj, const char *path);
/* The groups of a result as an object KEY -> value (*single = NULL), or for
 * an agent without by: the result itself as the one group of the empty key
 * (*groups = NULL, *single = the result). */
sf_status sf__synth_groups(const sf__synth_ctx *c, int agent, const sf_jv *result, const sf_jv **groups,
                           const sf_jv **single);
/* The share of the input that fed the results: rows done/total when the
 * total is known, else shards, else 1; in [0, 1]. */
double sf__synth_coverage_share(const sf_synth_coverage *cov);
/* Position of the aspect called name in workflow order (stage, then aspect)
 * of its first occurrence, -1 if no stage has one. */
int sf__synth_aspect_rank(const sf_workflow *w, const char *name);

/* ---- findings.c ----------------------------------------------------------- */

/* A time (microseconds since the epoch) as its ISO string. */
void sf__synth_write_time(sf_json *j, int64_t us);

/* Parses and checks every aspect's findings: rules into c->rules. */
sf_status sf__synth_rules_load(sf__synth_ctx *c);
/* Evaluates the rules on the results into c->findings, sorted. */
sf_status sf__synth_findings_eval(sf__synth_ctx *c);
/* Writes the "findings" member. */
sf_status sf__synth_findings_write(const sf__synth_ctx *c, sf_json *j);
void sf__synth_findings_free(sf__synth_ctx *c);
/* Splits a printed key into nby raw parts on unescaped '|' (off/len per
 * part); false when it does not have nby well-formed parts. */
bool sf__synth_key_split(const char *key, size_t len, int nby, size_t *off, size_t *plen);
/* Appends the unescaped text of a raw key part to out; *is_null for the
 * null part (\N), which appends nothing. */
sf_status sf__synth_key_part(const char *raw, size_t len, sf_buf *out, bool *is_null);

/* ---- combine.c ------------------------------------------------------------ */

/* Parses synthesis.combine. */
sf_status sf__synth_combine_load(sf__synth_ctx *c, const sf_cfg_node *node, int line);
/* Evaluates and writes the "combine" member. */
sf_status sf__synth_combine_write(sf__synth_ctx *c, sf_json *j);

/* ---- consensus.c ---------------------------------------------------------- */

/* Parses synthesis.conflicts (node may be NULL: the defaults). */
sf_status sf__synth_conflicts_load(sf__synth_ctx *c, const sf_cfg_node *node, int line);
/* Finds conflicts and corroborations between the findings of different
 * aspects, resolves them (marking the findings) and counts agreement. */
sf_status sf__synth_consensus_eval(sf__synth_ctx *c);
/* The name of finding f's aspect. */
const char *sf__synth_aspect_of(const sf__synth_ctx *c, const sf__synth_finding *f);
/* Writes "conflicts", "corroborated" and "agreement" (inside "synthesis"). */
sf_status sf__synth_consensus_write(const sf__synth_ctx *c, sf_json *j);

/* ---- incidents.c ---------------------------------------------------------- */

/* Joins findings of different aspects about one subject in one window into
 * incidents and writes the "incidents" member (inside "synthesis"); needs
 * the consensus's aspect ranks. */
sf_status sf__synth_incidents_write(const sf__synth_ctx *c, sf_json *j);

/* ---- quality.c ------------------------------------------------------------ */

/* Writes the "quality" member: coverage, per-agent scores, consistency checks. */
sf_status sf__synth_quality_write(sf__synth_ctx *c, sf_json *j);

#endif
