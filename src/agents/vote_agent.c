/* The `vote` agent: an ensemble of anomaly detectors that score every
 * record against their baselines (agents/detect.h) and combine their votes
 * with a rule of shardflow/vote.h.
 *
 *   - agent: vote
 *     column: latency_ms
 *     by: [service]
 *     baseline: [profile.lat_stats, profile.lat_q]
 *     detectors:
 *       - {detector: zscore, baseline: profile.lat_stats, threshold: 3}
 *       - {detector: mad, baseline: profile.lat_q, weight: 2}
 *       - {detector: iqr, baseline: profile.lat_q}
 *     rule: quorum        # majority|plurality|weighted|quorum|unanimity
 *     k: 2
 *     truth: is_incident  # optional int64 ground truth (nonzero = positive)
 *
 * Only the detectors that could score a record take part in its vote (see
 * detect.c for what leaves a record unscored); a record no detector scored
 * is not an anomaly. A record counts towards "agreement" when every
 * detector scored it and all gave the same vote. Per-detector confusion
 * counts treat an unscored record as a "no". All results are integer
 * counts: merge is exactly associative and commutative. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/vote.h"
#include "shardflow/xsum.h"

#include "agents/detect.h"

#define VOTE_FORMAT 2 /* 2: the confidence sums */
#define VOTE_MAX_DETECTORS 16

typedef struct vote_item {
    sf__detect_opts o;
    int baseline;     /* index into cfg->baseline, -1 until resolved */
    double weight;
    const sf_cfg_node *node; /* the item's mapping (borrowed from cfg->node) */
    int line;                /* the item's line, for messages */
} vote_item;

typedef struct detector_counts {
    uint64_t anomalies, unscored;
    sf__confusion conf;
    sf_xsum yes_conf;  /* exact sum of the confidences of its yes votes */
} detector_counts;

typedef struct vote_state {
    const sf_agent_config *cfg;
    sf_vote_rule rule;
    int k;
    int ndet;
    vote_item item[VOTE_MAX_DETECTORS];
    sf__detector det[VOTE_MAX_DETECTORS]; /* scoring caches; not part of the encoding */
    sf__detect_truth truth;
    uint64_t records, anomalies;
    uint64_t agreed;   /* every detector scored the record and they agreed */
    uint64_t unscored; /* at least one detector could not score the record */
    sf__confusion conf;
    /* Exact sums (order-independent) of the decisions' confidences: over
     * the records some detector scored, and over the anomalous ones. */
    uint64_t decided;  /* records some detector scored */
    sf_xsum dec_conf, yes_conf;
    detector_counts dc[VOTE_MAX_DETECTORS];
} vote_state;

static const char *file_of(const sf_agent_config *cfg)
{
    return cfg->file ? cfg->file : "<workflow>";
}

static const char *id_of(const sf_agent_config *cfg)
{
    return cfg->id ? cfg->id : "vote";
}

static int node_line(const sf_agent_config *cfg, const sf_cfg_node *n)
{
    return n != NULL && n->line > 0 ? n->line : cfg->line;
}

/* Reads the detectors: list into item[0..*n). With resolve, every item's
 * baseline is matched against cfg->baseline (check and init); without (the
 * columns() call, before baselines are known) only the options are read. */
static sf_status read_items(const sf_agent_config *cfg, bool resolve, vote_item *item, int *n)
{
    static const char *const item_keys[] = {"detector", "baseline", "threshold", "direction", "weight",
                                            "k",        "alpha",    "warmup",    "time"};
    *n = 0;
    const sf_cfg_node *list = sf_agent_option(cfg, "detectors");
    int line = node_line(cfg, list);
    SF_CHECK(list != NULL && list->kind == SF_NODE_SEQ && list->n >= 1, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'detectors': expected a list of 1 to %d detectors "
             "({detector: zscore|mad|iqr|ewma, baseline: STAGE.AGENT_ID, ...})",
             file_of(cfg), line, id_of(cfg), VOTE_MAX_DETECTORS);
    SF_CHECK(list->n <= VOTE_MAX_DETECTORS, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'detectors': at most %d detectors, found %zu", file_of(cfg),
             line, id_of(cfg), VOTE_MAX_DETECTORS, list->n);
    for (size_t i = 0; i < list->n; i++) {
        const sf_cfg_node *it = list->items[i];
        int il = node_line(cfg, it);
        SF_CHECK(it->kind == SF_NODE_MAP, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': detectors item %zu: expected a mapping such as {detector: "
                 "zscore, baseline: STAGE.AGENT_ID}",
                 file_of(cfg), il, id_of(cfg), i);
        /* The option helpers read the item as if it were an agent's
         * mapping, so their messages name the item's lines. */
        sf_agent_config sub = *cfg;
        sub.node = it;
        sub.line = il;
        const char *dname, *ref;
        SF_CALL(sf_agent_opt_str(&sub, "detector", NULL, &dname));
        sf__detect_kind kind;
        SF_CHECK(dname != NULL, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': detectors item %zu: 'detector' is required (zscore, mad, iqr or "
                 "ewma)",
                 file_of(cfg), il, id_of(cfg), i);
        SF_CHECK(sf__detect_kind_parse(dname, &kind), SF_ERR_CONFIG,
                 "%s:%d: agent '%s': detectors item %zu: unknown detector '%s' (zscore, mad, iqr or "
                 "ewma)",
                 file_of(cfg), il, id_of(cfg), i, dname);
        size_t nkeys = kind == SF__DETECT_EWMA ? 9 : kind == SF__DETECT_IQR ? 6 : 5;
        for (size_t k = 0; k < it->n; k++) {
            bool ok = false;
            for (size_t a = 0; a < nkeys && !ok; a++) ok = strcmp(it->keys[k], item_keys[a]) == 0;
            int kl = it->key_lines && it->key_lines[k] > 0 ? it->key_lines[k] : il;
            SF_CHECK(ok, SF_ERR_CONFIG,
                     "%s:%d: agent '%s': detectors item %zu: unknown key '%s' (%s accepts detector, "
                     "baseline, threshold, direction, weight%s)",
                     file_of(cfg), kl, id_of(cfg), i, it->keys[k], dname,
                     kind == SF__DETECT_EWMA ? ", k, alpha, warmup, time"
                                             : kind == SF__DETECT_IQR ? ", k" : "");
        }
        vote_item *v = &item[i];
        memset(v, 0, sizeof *v);
        v->node = it;
        v->line = il;
        v->baseline = -1;
        SF_CALL(sf__detect_opts_read(&sub, kind, &v->o));
        SF_CALL(sf_agent_opt_double(&sub, "weight", 1.0, 0.0, 1e9, &v->weight));
        SF_CALL(sf_agent_opt_str(&sub, "baseline", NULL, &ref));
        if (resolve) {
            if (ref == NULL) {
                SF_CHECK(cfg->nbaseline == 1, SF_ERR_CONFIG,
                         "%s:%d: agent '%s': detectors item %zu: 'baseline' is required when the "
                         "agent lists %d baselines",
                         file_of(cfg), il, id_of(cfg), i, cfg->nbaseline);
                v->baseline = 0;
            } else {
                for (int b = 0; b < cfg->nbaseline && v->baseline < 0; b++)
                    if (cfg->baseline[b].ref != NULL && strcmp(cfg->baseline[b].ref, ref) == 0)
                        v->baseline = b;
                if (v->baseline < 0) {
                    char refs[512] = "";
                    size_t len = 0;
                    for (int b = 0; b < cfg->nbaseline; b++)
                        len += (size_t)snprintf(refs + len, len < sizeof refs ? sizeof refs - len : 0,
                                                "%s%s", b ? ", " : "",
                                                cfg->baseline[b].ref ? cfg->baseline[b].ref : "?");
                    return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                                        "%s:%d: agent '%s': detectors item %zu: baseline '%s' is not "
                                        "one of the agent's baselines (%s)",
                                        file_of(cfg), il, id_of(cfg), i, ref,
                                        cfg->nbaseline ? refs : "none: add baseline: [STAGE.AGENT_ID, ...]");
                }
            }
            for (size_t j = 0; j < i; j++)
                SF_CHECK(item[j].o.kind != kind || item[j].baseline != v->baseline, SF_ERR_CONFIG,
                         "%s:%d: agent '%s': detectors item %zu: %s@%s is already item %zu", file_of(cfg),
                         il, id_of(cfg), i, dname, cfg->baseline[v->baseline].ref, j);
        }
    }
    *n = (int)list->n;
    return SF_OK;
}

static sf_status read_rule(const sf_agent_config *cfg, int ndet, sf_vote_rule *rule, int *k)
{
    const char *names[SF_VOTE_NRULES];
    for (int i = 0; i < SF_VOTE_NRULES; i++) names[i] = sf_vote_rule_name((sf_vote_rule)i);
    int r;
    SF_CALL(sf_agent_opt_choice(cfg, "rule", names, SF_VOTE_NRULES, SF_VOTE_QUORUM, &r));
    *rule = (sf_vote_rule)r;
    int64_t kk;
    SF_CALL(sf_agent_opt_int(cfg, "k", 2, 1, VOTE_MAX_DETECTORS, &kk));
    const sf_cfg_node *kn = sf_agent_option(cfg, "k");
    SF_CHECK(*rule != SF_VOTE_QUORUM || kk <= ndet, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'k': a quorum of %lld needs at least %lld detectors, found %d "
             "(lower k)",
             file_of(cfg), node_line(cfg, kn), id_of(cfg), (long long)kk, (long long)kk, ndet);
    *k = (int)kk;
    return SF_OK;
}

static sf_status vote_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"detectors", "rule", "k", "truth", "truth_ids"};
    SF_CALL(sf_agent_check_options(cfg, allowed, 5));
    SF_CHECK(cfg->nbaseline >= 1 && cfg->baseline != NULL, SF_ERR_CONFIG,
             "%s:%d: agent '%s': vote needs baseline: [STAGE.AGENT_ID, ...] (the agents of earlier "
             "stages its detectors score against)",
             file_of(cfg), node_line(cfg, sf_agent_option(cfg, "baseline")), id_of(cfg));
    vote_item item[VOTE_MAX_DETECTORS];
    int n;
    SF_CALL(read_items(cfg, true, item, &n));
    for (int i = 0; i < n; i++) {
        /* Messages name the item's lines. */
        sf_agent_config sub = *cfg;
        sub.node = item[i].node;
        sub.line = item[i].line;
        SF_CALL(sf__detect_check_columns(&sub, &item[i].o));
        SF_CALL(sf__detect_check_baseline(&sub, &item[i].o, &cfg->baseline[item[i].baseline]));
    }
    sf_vote_rule rule;
    int k;
    SF_CALL(read_rule(cfg, n, &rule, &k));
    sf__detect_truth t;
    return sf__detect_truth_read(cfg, true, &t);
}

static void vote_destroy(void *state)
{
    vote_state *s = state;
    for (int i = 0; i < VOTE_MAX_DETECTORS; i++) sf__detector_fini(&s->det[i]);
    memset(s, 0, sizeof *s);
}

static sf_status vote_init(void *state, const sf_agent_config *cfg)
{
    vote_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->baseline != NULL, SF_ERR_ARG, "vote: configuration was not checked");
    s->cfg = cfg;
    SF_CALL(read_items(cfg, true, s->item, &s->ndet));
    SF_CALL(read_rule(cfg, s->ndet, &s->rule, &s->k));
    SF_CALL(sf__detect_truth_read(cfg, true, &s->truth));
    for (int i = 0; i < s->ndet; i++) {
        sf_status rc = sf__detector_init(&s->det[i], cfg, &s->item[i].o,
                                         &cfg->baseline[s->item[i].baseline]);
        if (rc != SF_OK) {
            vote_destroy(s);
            return rc;
        }
    }
    return SF_OK;
}

static bool loaded(const sf_batch *b, int c)
{
    return c >= 0 && c < b->ncols && b->cols[c].loaded;
}

/* The engine's contract on rows, checked once per call rather than per row. */
static sf_status check_rows(const sf_batch *b, const sf_rows *rows)
{
    if (rows->n == 0) return SF_OK;
    size_t last = sf_rows_at(rows, rows->n - 1);
    SF_CHECK(last < b->nrows && (rows->sel != NULL || rows->begin + rows->n - 1 == last),
             SF_ERR_INTERNAL, "vote: rows up to %zu of a %zu-row batch", last, b->nrows);
    return SF_OK;
}

static sf_status vote_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    vote_state *s = state;
    const sf_agent_config *cfg = s->cfg;
    SF_CALL(check_rows(b, rows));
    SF_CHECK(loaded(b, cfg->col) && (s->truth.col < 0 || loaded(b, s->truth.col)), SF_ERR_INTERNAL,
             "vote: a column of agent '%s' is not loaded", id_of(cfg));
    for (int d = 0; d < s->ndet; d++) {
        SF_CHECK(s->det[d].time_col < 0 || loaded(b, s->det[d].time_col), SF_ERR_INTERNAL,
                 "vote: the time column of agent '%s' is not loaded", id_of(cfg));
        SF_CALL(sf__detector_batch(&s->det[d], b));
    }
    uint8_t votes[VOTE_MAX_DETECTORS];
    double conf[VOTE_MAX_DETECTORS], weight[VOTE_MAX_DETECTORS];
    const bool has_truth = s->truth.col >= 0;
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        bool actual = has_truth && sf__detect_truth_positive(&s->truth, b, r);
        int m = 0, yes = 0;
        for (int d = 0; d < s->ndet; d++) {
            sf__detect_score sc;
            SF_CALL(sf__detector_score(&s->det[d], b, r, &sc));
            detector_counts *dc = &s->dc[d];
            if (sc.scored) {
                if (sc.vote) sf_xsum_add(&dc->yes_conf, sc.confidence);
                votes[m] = sc.vote;
                conf[m] = sc.confidence;
                weight[m] = s->item[d].weight;
                m++;
                yes += sc.vote;
            } else {
                dc->unscored++;
            }
            dc->anomalies += sc.vote;
            if (has_truth) sf__confusion_add(&dc->conf, sc.vote, actual);
        }
        double dconf = 0;
        bool decision = sf_vote_combine(s->rule, s->k, m, votes, conf, weight, &dconf);
        if (m > 0) {
            s->decided++;
            sf_xsum_add(&s->dec_conf, dconf);
            if (decision) sf_xsum_add(&s->yes_conf, dconf);
        }
        s->records++;
        s->anomalies += decision;
        s->unscored += m < s->ndet;
        s->agreed += m == s->ndet && (yes == 0 || yes == m);
        if (has_truth) sf__confusion_add(&s->conf, decision, actual);
    }
    return SF_OK;
}

static sf_status vote_merge(void *into, const void *from)
{
    vote_state *a = into;
    const vote_state *f = from;
    SF_CHECK(a->ndet == f->ndet, SF_ERR_INTERNAL, "vote: merging states of different shapes");
    a->records += f->records;
    a->anomalies += f->anomalies;
    a->agreed += f->agreed;
    a->unscored += f->unscored;
    sf__confusion_merge(&a->conf, &f->conf);
    a->decided += f->decided;
    sf_xsum_merge(&a->dec_conf, &f->dec_conf);
    sf_xsum_merge(&a->yes_conf, &f->yes_conf);
    for (int d = 0; d < a->ndet; d++) {
        sf_xsum_merge(&a->dc[d].yes_conf, &f->dc[d].yes_conf);
        a->dc[d].anomalies += f->dc[d].anomalies;
        a->dc[d].unscored += f->dc[d].unscored;
        sf__confusion_merge(&a->dc[d].conf, &f->dc[d].conf);
    }
    return SF_OK;
}

static sf_status vote_encode(const void *state, sf_buf *out)
{
    const vote_state *s = state;
    SF_CALL(sf_buf_put_u8(out, VOTE_FORMAT));
    SF_CALL(sf_buf_put_u8(out, (uint8_t)s->rule));
    SF_CALL(sf_buf_put_u8(out, (uint8_t)s->k));
    SF_CALL(sf_buf_put_u8(out, (uint8_t)s->ndet));
    SF_CALL(sf_buf_put_u8(out, s->truth.col >= 0));
    for (int d = 0; d < s->ndet; d++) SF_CALL(sf_buf_put_u8(out, (uint8_t)s->item[d].o.kind));
    SF_CALL(sf_buf_put_u64(out, s->records));
    SF_CALL(sf_buf_put_u64(out, s->anomalies));
    SF_CALL(sf_buf_put_u64(out, s->agreed));
    SF_CALL(sf_buf_put_u64(out, s->unscored));
    SF_CALL(sf__confusion_encode(&s->conf, out));
    SF_CALL(sf_buf_put_u64(out, s->decided));
    SF_CALL(sf_xsum_encode(&s->dec_conf, out));
    SF_CALL(sf_xsum_encode(&s->yes_conf, out));
    for (int d = 0; d < s->ndet; d++) {
        SF_CALL(sf_buf_put_u64(out, s->dc[d].anomalies));
        SF_CALL(sf_buf_put_u64(out, s->dc[d].unscored));
        SF_CALL(sf__confusion_encode(&s->dc[d].conf, out));
        SF_CALL(sf_xsum_encode(&s->dc[d].yes_conf, out));
    }
    return SF_OK;
}

/* Confusion counts consistent with the record counts (see detect.c). */
static bool confusion_ok(const sf__confusion *c, bool has_truth, uint64_t records, uint64_t anomalies)
{
    if (!has_truth) return (c->tp | c->fp | c->fn | c->tn) == 0;
    return c->tp <= anomalies && c->fp == anomalies - c->tp && c->fn <= records - anomalies &&
           c->tn == records - anomalies - c->fn;
}

static sf_status vote_decode(void *state, const void *bytes, size_t n)
{
    vote_state *s = state;
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    uint8_t version, rule, k, ndet, has_truth;
    SF_CALL(sf_rd_u8(&rd, &version));
    SF_CHECK(version == VOTE_FORMAT, SF_ERR_PARSE, "vote state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&rd, &rule));
    SF_CALL(sf_rd_u8(&rd, &k));
    SF_CALL(sf_rd_u8(&rd, &ndet));
    SF_CHECK(rule == (uint8_t)s->rule && k == (uint8_t)s->k && ndet == (uint8_t)s->ndet,
             SF_ERR_PARSE, "vote state: rule %u, k %u, %u detectors; expected %d, %d, %d", rule, k,
             ndet, (int)s->rule, s->k, s->ndet);
    SF_CALL(sf_rd_u8(&rd, &has_truth));
    SF_CHECK(has_truth == (s->truth.col >= 0), SF_ERR_PARSE, "vote state: truth flag %u, expected %d",
             has_truth, s->truth.col >= 0);
    for (int d = 0; d < s->ndet; d++) {
        uint8_t kind;
        SF_CALL(sf_rd_u8(&rd, &kind));
        SF_CHECK(kind == (uint8_t)s->item[d].o.kind, SF_ERR_PARSE,
                 "vote state: detector %d is of kind %u, expected %d", d, kind, (int)s->item[d].o.kind);
    }
    uint64_t records, anomalies, agreed, unscored;
    sf__confusion conf;
    SF_CALL(sf_rd_u64(&rd, &records));
    SF_CALL(sf_rd_u64(&rd, &anomalies));
    SF_CALL(sf_rd_u64(&rd, &agreed));
    SF_CALL(sf_rd_u64(&rd, &unscored));
    SF_CALL(sf__confusion_decode(&conf, &rd));
    SF_CHECK(anomalies <= records && unscored <= records && agreed <= records - unscored,
             SF_ERR_PARSE, "vote state: inconsistent record counts");
    SF_CHECK(confusion_ok(&conf, has_truth, records, anomalies), SF_ERR_PARSE,
             "vote state: confusion counts do not add up");
    uint64_t decided;
    sf_xsum dec_conf, yes_conf;
    SF_CALL(sf_rd_u64(&rd, &decided));
    SF_CALL(sf_xsum_decode(&dec_conf, &rd));
    SF_CALL(sf_xsum_decode(&yes_conf, &rd));
    /* Every anomalous record was decided, and a record nobody scored is
     * unscored. */
    SF_CHECK(decided <= records && anomalies <= decided && records - decided <= unscored, SF_ERR_PARSE,
             "vote state: inconsistent counts of decided records");
    detector_counts dc[VOTE_MAX_DETECTORS];
    for (int d = 0; d < s->ndet; d++) {
        SF_CALL(sf_rd_u64(&rd, &dc[d].anomalies));
        SF_CALL(sf_rd_u64(&rd, &dc[d].unscored));
        SF_CALL(sf__confusion_decode(&dc[d].conf, &rd));
        SF_CALL(sf_xsum_decode(&dc[d].yes_conf, &rd));
        /* A detector that did not score a record did not flag it, and the
         * record counts as unscored for the ensemble too. */
        SF_CHECK(dc[d].unscored <= unscored && dc[d].anomalies <= records - dc[d].unscored,
                 SF_ERR_PARSE, "vote state: inconsistent counts of detector %d", d);
        SF_CHECK(confusion_ok(&dc[d].conf, has_truth, records, dc[d].anomalies), SF_ERR_PARSE,
                 "vote state: confusion counts of detector %d do not add up", d);
    }
    SF_CHECK(rd.off == n, SF_ERR_PARSE, "vote state: %zu trailing bytes", n - rd.off);
    s->records = records;
    s->anomalies = anomalies;
    s->agreed = agreed;
    s->unscored = unscored;
    s->conf = conf;
    s->decided = decided;
    s->dec_conf = dec_conf;
    s->yes_conf = yes_conf;
    memcpy(s->dc, dc, (size_t)s->ndet * sizeof *dc);
    return SF_OK;
}

/* Mean of an exact sum over n, or null for n == 0. */
static void mean_or_null(sf_json *j, const sf_xsum *sum, uint64_t n)
{
    if (n == 0) sf_json_null(j);
    else sf_json_num(j, sf_xsum_round(sum) / (double)n);
}

static sf_status vote_report(const void *state, sf_json *j)
{
    const vote_state *s = state;
    const bool has_truth = s->truth.col >= 0;
    sf_json_obj_begin(j);
    sf_json_key(j, "rule");
    sf_json_str(j, sf_vote_rule_name(s->rule));
    sf_json_key(j, "k");
    sf_json_int(j, s->k);
    sf_json_key(j, "records");
    sf_json_uint(j, s->records);
    sf_json_key(j, "anomalies");
    sf_json_uint(j, s->anomalies);
    sf_json_key(j, "agreement");
    sf_json_num(j, s->records ? (double)s->agreed / (double)s->records : 0.0);
    sf_json_key(j, "unscored");
    sf_json_uint(j, s->unscored);
    sf_json_key(j, "detectors");
    sf_json_obj_begin(j);
    for (int d = 0; d < s->ndet; d++) {
        char name[512];
        const char *ref = s->cfg->baseline[s->item[d].baseline].ref;
        snprintf(name, sizeof name, "%s@%s", sf__detect_kind_name(s->item[d].o.kind), ref ? ref : "?");
        sf_json_key(j, name);
        sf_json_obj_begin(j);
        sf_json_key(j, "anomalies");
        sf_json_uint(j, s->dc[d].anomalies);
        sf_json_key(j, "unscored");
        sf_json_uint(j, s->dc[d].unscored);
        sf_json_key(j, "anomaly_confidence");
        mean_or_null(j, &s->dc[d].yes_conf, s->dc[d].anomalies);
        if (has_truth) sf__confusion_report(&s->dc[d].conf, j);
        sf_json_obj_end(j);
    }
    sf_json_obj_end(j);
    sf_json_key(j, "ensemble");
    sf_json_obj_begin(j);
    sf_json_key(j, "anomalies");
    sf_json_uint(j, s->anomalies);
    sf_json_key(j, "confidence");
    mean_or_null(j, &s->dec_conf, s->decided);
    sf_json_key(j, "anomaly_confidence");
    mean_or_null(j, &s->yes_conf, s->anomalies);
    if (has_truth) sf__confusion_report(&s->conf, j);
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    return j->rc;
}

static sf_status vote_columns(const sf_agent_config *cfg, const char **names, int max, int *n)
{
    *n = 0;
    vote_item item[VOTE_MAX_DETECTORS];
    int nd;
    SF_CALL(read_items(cfg, false, item, &nd));
    for (int i = 0; i < nd; i++) {
        if (item[i].o.kind != SF__DETECT_EWMA) continue;
        bool seen = false;
        for (int k = 0; k < *n && !seen; k++) seen = strcmp(names[k], item[i].o.time) == 0;
        if (!seen && *n < max) names[(*n)++] = item[i].o.time;
    }
    sf__detect_truth t;
    SF_CALL(sf__detect_truth_read(cfg, false, &t));
    if (t.column != NULL && *n < max) names[(*n)++] = t.column;
    return SF_OK;
}

static sf_status vote_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                           double *out)
{
    const vote_state *s = state;
    SF_CHECK(strcmp(name, "rows") == 0 && key == NULL && keylen == 0, SF_ERR_ARG,
             "vote: no statistic '%s'%s (it has: rows, for the whole state)", name,
             key != NULL ? " for a group" : "");
    *out = (double)s->records;
    return SF_OK;
}

const sf_agent_ops sf__agent_vote = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "vote",
    .aspect = "performance",
    .state_size = sizeof(vote_state),
    .check = vote_check,
    .init = vote_init,
    .process = vote_process,
    .merge = vote_merge,
    .encode = vote_encode,
    .decode = vote_decode,
    .report = vote_report,
    .destroy = vote_destroy,
    .columns = vote_columns,
    .stat = vote_stat,
};
