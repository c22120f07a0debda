/* Findings: the rules of an aspect turn agent results into findings with a
 * severity, a confidence and evidence.
 *
 *   stages:
 *     - name: ...
 *       aspects:
 *         - name: performance
 *           agents: [...]
 *           findings:
 *             - id: NAME              required, unique in the aspect.
 *               agent: ID             required, an agent of the same stage.
 *               metric: FIELD         required: a field of the leaf objects
 *                                     ("mean", "rate", ...); a path a.b reaches
 *                                     into a nested object (quantiles.0.99).
 *               above: NUMBER         one of above and below is required:
 *               below: NUMBER         the threshold.
 *               relative_to: none|median   default none (absolute threshold);
 *                                     median: the threshold is a ratio to the
 *                                     median of the metric over the leaf's
 *                                     siblings.
 *               min_count: INT        skip leaves whose count (else rows, else
 *                                     sessions, else records) is below; default 0.
 *               min_value: NUMBER     relative rules only: the larger side of
 *                                     the comparison (the value for above, the
 *                                     median for below) must reach it.
 *               severity: info|low|medium|high|critical   default medium.
 *               title: TEXT           default the id.
 *               evidence:             optional list of:
 *                 - agent: ID         an agent of the same stage whose by:
 *                                     columns are among the rule agent's;
 *                   metric: FIELD     looked up for the finding's group.
 *
 * Leaves. A result with by: columns has "groups": {KEY: object}; without,
 * the result object is the one group (key ""). A group with "buckets":
 * {ISO: object} is a time series whose leaves are the buckets (the result's
 * "bucket_us" is their width); otherwise the group is a leaf itself. The
 * siblings of a leaf (for the median) are the other buckets of its group,
 * or for groups that are leaves the other groups. Leaves whose metric is
 * null or absent, or whose count is below min_count, are skipped and never
 * enter the median. A rule whose metric is missing from every leaf of its
 * agent (a misspelt field) is a configuration error, not an empty result.
 *
 * A leaf fires when value > threshold (above) or value < threshold
 * (below), the threshold being the number given or, relative to the median
 * m, ratio * m. Firing buckets of one group whose starts are exactly
 * bucket_us apart coalesce into one finding with the window [first start,
 * last start + bucket_us), the extreme value (max for above, min for below)
 * and the number of buckets.
 *
 * Confidence of a finding with value v, threshold t and b buckets (for
 * above with min_value, t is the larger of the threshold and min_value:
 * both gate the value):
 *   excess = |v / t - 1| * sqrt(b)     (+inf when t == 0 and v != 0)
 *   confidence = (1 - 1 / (1 + excess)) * coverage
 * where coverage is the share of the input rows (else shards) the run
 * processed. It grows with the distance from the threshold and with the
 * duration of the evidence, and is 0 at the threshold or with no input.
 *
 * Findings are sorted by (stage, aspect, rule) in workflow order, then by
 * printed key (bytes) and window start (none first). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/batch.h"
#include "synth/synth_impl.h"

static const char *const rule_keys[] = {"id",      "agent",     "metric",   "above", "below",    "relative_to",
                                        "min_count", "min_value", "severity", "title", "evidence", NULL};
static const char *const count_fields[] = {"count", "rows", "sessions", "records"};

/* ---- keys ----------------------------------------------------------------------- */

bool sf__synth_key_split(const char *key, size_t len, int nby, size_t *off, size_t *plen)
{
    if (nby <= 0) return len == 0;
    int part = 0;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (key[i] == '\\') {
            if (i + 1 >= len) return false;
            char e = key[i + 1];
            /* \N is a whole part (null); otherwise only the separator and the
             * escape character are escaped. */
            bool null_part = e == 'N' && i == start && (i + 2 == len || key[i + 2] == '|');
            if (e != '|' && e != '\\' && !null_part) return false;
            i++;
            continue;
        }
        if (key[i] == '|') {
            if (part + 1 >= nby) return false;
            off[part] = start;
            plen[part] = i - start;
            part++;
            start = i + 1;
        }
    }
    if (part != nby - 1) return false;
    off[part] = start;
    plen[part] = len - start;
    return true;
}

sf_status sf__synth_key_part(const char *raw, size_t len, sf_buf *out, bool *is_null)
{
    *is_null = len == 2 && raw[0] == '\\' && raw[1] == 'N';
    if (*is_null) return SF_OK;
    for (size_t i = 0; i < len; i++) {
        if (raw[i] == '\\' && i + 1 < len) i++;
        SF_CALL(sf_buf_put_u8(out, (uint8_t)raw[i]));
    }
    return SF_OK;
}

/* ---- rules ----------------------------------------------------------------------- */

static sf_status grow_rules(sf__synth_ctx *c)
{
    sf__synth_rule *r = realloc(c->rules, (size_t)(c->nrules + 1) * sizeof *r);
    SF_CHECK(r != NULL, SF_ERR_NOMEM, "synthesis: out of memory for rules");
    c->rules = r;
    memset(&c->rules[c->nrules], 0, sizeof *c->rules);
    return SF_OK;
}

static bool has_by(const sf_synth_agent *a, const char *col)
{
    for (int i = 0; i < a->nby; i++)
        if (a->by[i] && strcmp(a->by[i], col) == 0) return true;
    return false;
}

static sf_status load_evidence(sf__synth_ctx *c, sf__synth_rule *r, const sf_cfg_node *node, int line,
                               const char *stage)
{
    char path[SF__SYNTH_PATH + 64];
    (void)snprintf(path, sizeof path, "%s.evidence", r->path);
    if (sf__synth_is_null(node)) return SF_OK;
    if (node->kind != SF_NODE_SEQ)
        return sf__synth_fail(c, line, path, "expected a list of {agent: ID, metric: FIELD}");
    if (node->n == 0) return SF_OK;
    r->evidence = calloc(node->n, sizeof *r->evidence);
    SF_CHECK(r->evidence != NULL, SF_ERR_NOMEM, "synthesis: out of memory for evidence");
    static const char *const keys[] = {"agent", "metric", NULL};
    const sf_synth_agent *ra = &c->in->agents[r->agent];
    for (size_t i = 0; i < node->n; i++) {
        const sf_cfg_node *it = node->items[i];
        char ipath[SF__SYNTH_PATH + 96], kpath[SF__SYNTH_PATH + 128];
        (void)snprintf(ipath, sizeof ipath, "%s[%zu]", path, i);
        int iline = it && it->line > 0 ? it->line : line;
        if (it == NULL || it->kind != SF_NODE_MAP)
            return sf__synth_fail(c, iline, ipath, "expected a mapping {agent: ID, metric: FIELD}");
        SF_CALL(sf__synth_check_keys(c, it, ipath, keys));
        sf__synth_evidence *e = &r->evidence[i];
        int kl;
        const char *id = NULL;
        const sf_cfg_node *v = sf__synth_get(it, "agent", &kl);
        (void)snprintf(kpath, sizeof kpath, "%s.agent", ipath);
        if (v == NULL) return sf__synth_fail(c, iline, ipath, "missing required key 'agent'");
        SF_CALL(sf__synth_str(c, v, kl, kpath, &id));
        e->agent = sf__synth_agent(c, stage, id);
        if (e->agent < 0)
            return sf__synth_fail(c, kl, kpath, "no agent '%s' in stage '%s'", id, stage);
        const sf_synth_agent *ea = &c->in->agents[e->agent];
        for (int b = 0; b < ea->nby; b++)
            if (!has_by(ra, ea->by[b]))
                return sf__synth_fail(c, kl, kpath,
                                      "agent '%s' groups by '%s', which agent '%s' of the rule does not: "
                                      "evidence is looked up by the rule agent's group key, so its by: "
                                      "columns must be among the rule agent's",
                                      id, ea->by[b], ra->id);
        v = sf__synth_get(it, "metric", &kl);
        (void)snprintf(kpath, sizeof kpath, "%s.metric", ipath);
        if (v == NULL) return sf__synth_fail(c, iline, ipath, "missing required key 'metric'");
        SF_CALL(sf__synth_str(c, v, kl, kpath, &e->metric));
        e->line = kl;
        for (size_t k = 0; k < i; k++)
            if (r->evidence[k].agent == e->agent && strcmp(r->evidence[k].metric, e->metric) == 0)
                return sf__synth_fail(c, kl, kpath, "evidence %s of agent '%s' is listed twice", e->metric, id);
        r->nevidence++;
    }
    return SF_OK;
}

static sf_status load_rule(sf__synth_ctx *c, int s, int a, size_t k, const sf_cfg_node *item, int first)
{
    const sf_stage_config *st = &c->w->stages[s];
    SF_CALL(grow_rules(c));
    sf__synth_rule *r = &c->rules[c->nrules];
    c->nrules++; /* counted now so that ctx_fini frees its evidence on failure */
    r->stage = s;
    r->aspect = a;
    r->order = (int)k;
    r->severity = 2;
    (void)snprintf(r->path, sizeof r->path, "stages[%d].aspects[%d].findings[%zu]", s, a, k);
    r->line = item && item->line > 0 ? item->line : st->aspects[a].line;
    if (item == NULL || item->kind != SF_NODE_MAP)
        return sf__synth_fail(c, r->line, r->path, "expected a mapping (a finding rule)");
    SF_CALL(sf__synth_check_keys(c, item, r->path, rule_keys));

    char kpath[SF__SYNTH_PATH + 32];
#define KPATH(key) ((void)snprintf(kpath, sizeof kpath, "%s.%s", r->path, key), kpath)
    int line;
    const sf_cfg_node *v;

    v = sf__synth_get(item, "id", &line);
    if (v == NULL) return sf__synth_fail(c, r->line, r->path, "missing required key 'id'");
    SF_CALL(sf__synth_str(c, v, line, KPATH("id"), &r->id));
    for (int i = first; i < c->nrules - 1; i++)
        if (strcmp(c->rules[i].id, r->id) == 0)
            return sf__synth_fail(c, line, kpath, "rule id '%s' is used twice in aspect '%s' (line %d)", r->id,
                                  st->aspects[a].name, c->rules[i].line);

    const char *agent;
    v = sf__synth_get(item, "agent", &line);
    if (v == NULL) return sf__synth_fail(c, r->line, r->path, "missing required key 'agent'");
    SF_CALL(sf__synth_str(c, v, line, KPATH("agent"), &agent));
    r->agent = sf__synth_agent(c, st->name, agent);
    if (r->agent < 0) return sf__synth_fail(c, line, kpath, "no agent '%s' in stage '%s'", agent, st->name);

    v = sf__synth_get(item, "metric", &r->metric_line);
    if (v == NULL) return sf__synth_fail(c, r->line, r->path, "missing required key 'metric'");
    SF_CALL(sf__synth_str(c, v, r->metric_line, KPATH("metric"), &r->metric));

    int la, lb;
    const sf_cfg_node *above = sf__synth_get(item, "above", &la), *below = sf__synth_get(item, "below", &lb);
    if (above == NULL && below == NULL)
        return sf__synth_fail(c, r->line, r->path, "one of 'above' and 'below' is required (the threshold)");
    if (above != NULL && below != NULL)
        return sf__synth_fail(c, lb, KPATH("below"),
                              "give one of 'above' and 'below', not both (one rule per direction)");
    r->dir = above ? SF__SYNTH_ABOVE : SF__SYNTH_BELOW;
    SF_CALL(sf__synth_num(c, above ? above : below, above ? la : lb, KPATH(above ? "above" : "below"),
                          &r->threshold));

    static const char *const rel[] = {"none", "median", NULL};
    int relative = 0;
    v = sf__synth_get(item, "relative_to", &line);
    if (v != NULL) SF_CALL(sf__synth_enum(c, v, line, KPATH("relative_to"), rel, &relative));
    r->relative = relative == 1;
    if (r->relative && r->threshold < 0)
        return sf__synth_fail(c, above ? la : lb, KPATH(above ? "above" : "below"),
                              "a ratio to the median must not be negative, found %g", r->threshold);

    v = sf__synth_get(item, "min_count", &r->min_count_line);
    if (v != NULL) SF_CALL(sf__synth_uint(c, v, r->min_count_line, KPATH("min_count"), &r->min_count));

    v = sf__synth_get(item, "min_value", &line);
    if (v != NULL) {
        SF_CALL(sf__synth_num(c, v, line, KPATH("min_value"), &r->min_value));
        if (!r->relative)
            return sf__synth_fail(c, line, kpath,
                                  "applies only to relative_to: median (an absolute threshold is already a floor)");
        r->has_min_value = true;
    }

    v = sf__synth_get(item, "severity", &line);
    if (v != NULL) SF_CALL(sf__synth_enum(c, v, line, KPATH("severity"), sf__synth_severities, &r->severity));

    r->title = r->id;
    v = sf__synth_get(item, "title", &line);
    if (v != NULL) SF_CALL(sf__synth_str(c, v, line, KPATH("title"), &r->title));

    v = sf__synth_get(item, "evidence", &line);
    if (v != NULL) SF_CALL(load_evidence(c, r, v, line, st->name));
#undef KPATH
    return SF_OK;
}

sf_status sf__synth_rules_load(sf__synth_ctx *c)
{
    for (int s = 0; s < c->w->nstages; s++) {
        const sf_stage_config *st = &c->w->stages[s];
        for (int a = 0; a < st->naspects; a++) {
            const sf_cfg_node *f = st->aspects[a].findings;
            if (f == NULL || sf__synth_is_null(f)) continue;
            if (f->kind != SF_NODE_SEQ) {
                char path[SF__SYNTH_PATH];
                (void)snprintf(path, sizeof path, "stages[%d].aspects[%d].findings", s, a);
                return sf__synth_fail(c, f->line > 0 ? f->line : st->aspects[a].line, path,
                                      "expected a list of finding rules");
            }
            int first = c->nrules;
            for (size_t k = 0; k < f->n; k++) SF_CALL(load_rule(c, s, a, k, f->items[k], first));
        }
    }
    return SF_OK;
}

/* ---- evaluation ---------------------------------------------------------------------- */

/* A leaf under evaluation. */
typedef struct leaf {
    const char *key;      /* group key text */
    size_t keylen;
    const sf_jv *obj;
    int64_t start;        /* bucket start (series) */
    double value;
    bool usable;          /* numeric metric and enough count */
    bool fires;
} leaf;

typedef struct rule_eval {
    sf__synth_ctx *c;
    const sf__synth_rule *r;
    size_t leaves, with_metric, with_count;
    leaf *set;            /* the current sibling set */
    size_t nset, capset;
    double *scratch;      /* for medians */
    size_t capscratch;
    sf_buf key;           /* evidence key */
} rule_eval;

static sf_status set_push(rule_eval *e, const char *key, size_t keylen, const sf_jv *obj, int64_t start)
{
    if (e->nset == e->capset) {
        size_t cap = e->capset ? 2 * e->capset : 64;
        leaf *p = realloc(e->set, cap * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "synthesis: out of memory for %zu leaves", cap);
        e->set = p;
        e->capset = cap;
    }
    leaf *l = &e->set[e->nset++];
    memset(l, 0, sizeof *l);
    l->key = key;
    l->keylen = keylen;
    l->obj = obj;
    l->start = start;
    return SF_OK;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b ? 1 : 0;
}

static int cmp_leaf_start(const void *x, const void *y)
{
    const leaf *a = x, *b = y;
    return a->start < b->start ? -1 : a->start > b->start ? 1 : 0;
}

/* The median of the usable values of the set (mean of the two middle ones
 * for an even number). */
static sf_status set_median(rule_eval *e, double *out, size_t *n)
{
    if (e->capscratch < e->nset) {
        double *p = realloc(e->scratch, e->nset * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "synthesis: out of memory for a median of %zu values", e->nset);
        e->scratch = p;
        e->capscratch = e->nset;
    }
    size_t m = 0;
    for (size_t i = 0; i < e->nset; i++)
        if (e->set[i].usable) e->scratch[m++] = e->set[i].value;
    *n = m;
    *out = NAN;
    if (m == 0) return SF_OK;
    qsort(e->scratch, m, sizeof *e->scratch, cmp_double);
    *out = m % 2 ? e->scratch[m / 2] : (e->scratch[m / 2 - 1] + e->scratch[m / 2]) / 2;
    return SF_OK;
}

static double confidence(double value, double threshold, int buckets, double coverage)
{
    double excess;
    if (threshold != 0) excess = fabs(value / threshold - 1.0) * sqrt((double)buckets);
    else excess = value != 0 ? INFINITY : 0.0;
    double conf = isinf(excess) ? 1.0 : 1.0 - 1.0 / (1.0 + excess);
    conf *= coverage;
    return conf < 0 ? 0 : conf > 1 ? 1 : conf;
}

static sf_status grow_findings(sf__synth_ctx *c)
{
    if (c->nfindings < c->capfindings) return SF_OK;
    size_t cap = c->capfindings ? 2 * c->capfindings : 32;
    sf__synth_finding *f = realloc(c->findings, cap * sizeof *f);
    SF_CHECK(f != NULL, SF_ERR_NOMEM, "synthesis: out of memory for %zu findings", cap);
    c->findings = f;
    c->capfindings = cap;
    return SF_OK;
}

/* The group object of agent b for the finding's key (built from the
 * finding's parts for b's by: columns), NULL if b has no such group. */
static sf_status evidence_lookup(rule_eval *e, const sf__synth_finding *f, int b, const sf_jv **out)
{
    *out = NULL;
    const sf_jv *root, *groups, *single;
    SF_CALL(sf__synth_result(e->c, b, &root));
    SF_CALL(sf__synth_groups(e->c, b, root, &groups, &single));
    if (single != NULL) {
        *out = single;
        return SF_OK;
    }
    const sf_synth_agent *ra = &e->c->in->agents[e->r->agent], *ba = &e->c->in->agents[b];
    sf_buf_clear(&e->key);
    for (int i = 0; i < ba->nby; i++) {
        int p = -1;
        for (int k = 0; k < ra->nby && p < 0; k++)
            if (strcmp(ra->by[k], ba->by[i]) == 0) p = k;
        SF_CHECK(p >= 0, SF_ERR_INTERNAL, "synthesis: evidence column '%s' not in the rule's agent", ba->by[i]);
        if (i > 0) SF_CALL(sf_buf_put_u8(&e->key, '|'));
        SF_CALL(sf_buf_append(&e->key, f->key + f->part_off[p], f->part_len[p]));
    }
    *out = sf_jv_getn(groups, e->key.len ? (const char *)e->key.data : "", e->key.len);
    return SF_OK;
}

/* Adds the finding for the leaves run[0..n) (one leaf, or consecutive
 * firing buckets). */
static sf_status add_finding(rule_eval *e, const leaf *run, size_t n, bool series, int64_t bucket_us,
                             double baseline, double threshold)
{
    sf__synth_ctx *c = e->c;
    const sf__synth_rule *r = e->r;
    const sf_synth_agent *ag = &c->in->agents[r->agent];
    SF_CALL(grow_findings(c));
    sf__synth_finding *f = &c->findings[c->nfindings];
    memset(f, 0, sizeof *f);
    f->rule = r;
    f->nparts = ag->nby;
    f->key = malloc(run[0].keylen + 1);
    if (ag->nby > 0) {
        f->part_off = malloc((size_t)ag->nby * sizeof *f->part_off);
        f->part_len = malloc((size_t)ag->nby * sizeof *f->part_len);
    }
    if (r->nevidence > 0) f->evidence = calloc((size_t)r->nevidence, sizeof *f->evidence);
    c->nfindings++; /* owned by the context from here on, even on failure */
    SF_CHECK(f->key != NULL && (ag->nby == 0 || (f->part_off && f->part_len)) &&
                 (r->nevidence == 0 || f->evidence != NULL),
             SF_ERR_NOMEM, "synthesis: out of memory for a finding");
    memcpy(f->key, run[0].key, run[0].keylen);
    f->key[run[0].keylen] = '\0';
    f->keylen = run[0].keylen;
    if (!sf__synth_key_split(f->key, f->keylen, ag->nby, f->part_off, f->part_len)) {
        char name[256];
        sf__synth_agent_name(c, r->agent, name, sizeof name);
        return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                            "result of agent '%s': group key \"%.*s\" does not have %d parts (by: columns)", name,
                            (int)(f->keylen > 80 ? 80 : f->keylen), f->key, ag->nby);
    }
    double v = run[0].value;
    for (size_t i = 1; i < n; i++)
        v = r->dir == SF__SYNTH_ABOVE ? fmax(v, run[i].value) : fmin(v, run[i].value);
    f->value = v;
    f->baseline = baseline;
    f->threshold = threshold;
    f->buckets = (int)n;
    f->has_window = series;
    if (series) {
        f->start_us = run[0].start;
        f->end_us = run[n - 1].start + bucket_us;
    }
    /* Above, min_value is a second gate on the value: confidence counts
     * the distance from the higher of the two (a median of 0 makes the
     * relative threshold 0, which any value exceeds infinitely). */
    double gate = threshold;
    if (r->dir == SF__SYNTH_ABOVE && r->has_min_value && r->min_value > gate) gate = r->min_value;
    f->confidence = confidence(v, gate, (int)n, c->coverage);
    for (int i = 0; i < r->nevidence; i++) SF_CALL(evidence_lookup(e, f, r->evidence[i].agent, &f->evidence[i]));
    return SF_OK;
}

static bool count_of(const sf_jv *obj, double *out)
{
    for (size_t i = 0; i < sizeof count_fields / sizeof count_fields[0]; i++) {
        const sf_jv *v = sf_jv_get(obj, count_fields[i]);
        if (v != NULL) return sf_jv_num(v, out);
    }
    return false;
}

/* Evaluates the sibling set in e->set: a time series of one group (series)
 * or the groups that are leaves. */
static sf_status eval_set(rule_eval *e, bool series, int64_t bucket_us)
{
    const sf__synth_rule *r = e->r;
    if (e->nset == 0) return SF_OK;
    for (size_t i = 0; i < e->nset; i++) {
        leaf *l = &e->set[i];
        e->leaves++;
        const sf_jv *mv = sf__synth_field(l->obj, r->metric);
        double cnt;
        bool has_count = count_of(l->obj, &cnt);
        if (mv != NULL) e->with_metric++;
        if (has_count) e->with_count++;
        l->usable = sf_jv_num(mv, &l->value) && (r->min_count == 0 || (has_count && cnt >= (double)r->min_count));
    }
    double baseline = NAN, threshold = r->threshold;
    if (r->relative) {
        size_t m;
        SF_CALL(set_median(e, &baseline, &m));
        if (m == 0) return SF_OK;
        threshold = r->threshold * baseline;
    }
    for (size_t i = 0; i < e->nset; i++) {
        leaf *l = &e->set[i];
        if (!l->usable) continue;
        l->fires = r->dir == SF__SYNTH_ABOVE ? l->value > threshold : l->value < threshold;
        if (l->fires && r->has_min_value)
            l->fires = (r->dir == SF__SYNTH_ABOVE ? l->value : baseline) >= r->min_value;
    }
    if (!series) {
        for (size_t i = 0; i < e->nset; i++)
            if (e->set[i].fires) SF_CALL(add_finding(e, &e->set[i], 1, false, 0, baseline, threshold));
        return SF_OK;
    }
    qsort(e->set, e->nset, sizeof *e->set, cmp_leaf_start);
    for (size_t i = 1; i < e->nset; i++)
        SF_CHECK(e->set[i].start != e->set[i - 1].start, SF_ERR_PARSE,
                 "synthesis: two buckets of group \"%.*s\" start at the same time",
                 (int)(e->set[i].keylen > 80 ? 80 : e->set[i].keylen), e->set[i].key);
    for (size_t i = 0; i < e->nset;) {
        if (!e->set[i].fires) {
            i++;
            continue;
        }
        size_t k = i + 1;
        while (k < e->nset && e->set[k].fires && e->set[k].start - e->set[k - 1].start == bucket_us) k++;
        SF_CALL(add_finding(e, &e->set[i], k - i, true, bucket_us, baseline, threshold));
        i = k;
    }
    return SF_OK;
}

/* Adds the buckets of series object b (of group key) to e->set. */
static sf_status push_buckets(rule_eval *e, const char *key, size_t keylen, const sf_jv *b)
{
    char name[256];
    for (size_t i = 0; i < sf_jv_len(b); i++) {
        size_t len;
        const char *iso = sf_jv_key_at(b, i, &len);
        int64_t start;
        if (!sf_timestamp_parse(iso, len, &start)) {
            sf__synth_agent_name(e->c, e->r->agent, name, sizeof name);
            return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                                "result of agent '%s': bucket \"%.*s\" is not a timestamp", name,
                                (int)(len > 40 ? 40 : len), iso);
        }
        SF_CALL(set_push(e, key, keylen, sf_jv_at(b, i), start));
    }
    return SF_OK;
}

static sf_status bucket_width(rule_eval *e, const sf_jv *root, int64_t *out)
{
    double b;
    if (!sf_jv_num(sf_jv_get(root, "bucket_us"), &b) || !(b >= 1) || b > 9.2e18 || b != floor(b)) {
        char name[256];
        sf__synth_agent_name(e->c, e->r->agent, name, sizeof name);
        return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                            "result of agent '%s' has buckets but no positive integer \"bucket_us\"", name);
    }
    *out = (int64_t)b;
    return SF_OK;
}

static sf_status eval_rule(rule_eval *e)
{
    sf__synth_ctx *c = e->c;
    const sf__synth_rule *r = e->r;
    const sf_jv *root, *groups, *single;
    SF_CALL(sf__synth_result(c, r->agent, &root));
    SF_CALL(sf__synth_groups(c, r->agent, root, &groups, &single));
    int64_t bucket_us = 0;
    e->nset = 0;
    if (single != NULL) {
        const sf_jv *b = sf_jv_get(single, "buckets");
        if (sf_jv_type_of(b) == SF_JV_OBJ) {
            SF_CALL(bucket_width(e, root, &bucket_us));
            SF_CALL(push_buckets(e, "", 0, b));
            SF_CALL(eval_set(e, true, bucket_us));
        } else {
            SF_CALL(set_push(e, "", 0, single, 0));
            SF_CALL(eval_set(e, false, 0));
        }
    } else {
        /* Groups that are time series are evaluated one by one (their
         * buckets are siblings); groups that are leaves together. */
        leaf *flat = NULL;
        size_t nflat = 0;
        sf_status rc = SF_OK;
        if (sf_jv_len(groups) > 0) {
            flat = malloc(sf_jv_len(groups) * sizeof *flat);
            SF_CHECK(flat != NULL, SF_ERR_NOMEM, "synthesis: out of memory for %zu groups", sf_jv_len(groups));
        }
        for (size_t g = 0; g < sf_jv_len(groups); g++) {
            size_t klen;
            const char *key = sf_jv_key_at(groups, g, &klen);
            const sf_jv *obj = sf_jv_at(groups, g);
            const sf_jv *b = sf_jv_get(obj, "buckets");
            if (sf_jv_type_of(b) == SF_JV_OBJ) {
                if (bucket_us == 0) SF_CALL_GOTO(bucket_width(e, root, &bucket_us), flat_done);
                e->nset = 0;
                SF_CALL_GOTO(push_buckets(e, key, klen, b), flat_done);
                SF_CALL_GOTO(eval_set(e, true, bucket_us), flat_done);
            } else {
                memset(&flat[nflat], 0, sizeof flat[nflat]);
                flat[nflat].key = key;
                flat[nflat].keylen = klen;
                flat[nflat].obj = obj;
                nflat++;
            }
        }
        e->nset = 0;
        for (size_t i = 0; i < nflat; i++)
            SF_CALL_GOTO(set_push(e, flat[i].key, flat[i].keylen, flat[i].obj, 0), flat_done);
        SF_CALL_GOTO(eval_set(e, false, 0), flat_done);
    flat_done:
        free(flat);
        SF_CALL(rc);
    }
    char name[256];
    sf__synth_agent_name(c, r->agent, name, sizeof name);
    if (e->leaves > 0 && e->with_metric == 0) {
        char path[SF__SYNTH_PATH + 16];
        (void)snprintf(path, sizeof path, "%s.metric", r->path);
        /* Name what the leaves do have, so that a misspelling is obvious. */
        const sf_jv *first = e->set ? e->set[0].obj : NULL;
        char have[512] = "";
        size_t at = 0;
        for (size_t i = 0; i < sf_jv_len(first) && at + 1 < sizeof have; i++) {
            int w = snprintf(have + at, sizeof have - at, "%s%s", i ? ", " : "", sf_jv_key_at(first, i, NULL));
            if (w < 0) break;
            at += (size_t)w;
        }
        return sf__synth_fail(c, r->metric_line, path, "no result of agent '%s' has a field '%s' (fields: %s)",
                              name, r->metric, have);
    }
    if (e->leaves > 0 && r->min_count > 0 && e->with_count == 0) {
        char path[SF__SYNTH_PATH + 16];
        (void)snprintf(path, sizeof path, "%s.min_count", r->path);
        return sf__synth_fail(c, r->min_count_line, path,
                              "the results of agent '%s' have no count, rows, sessions or records field", name);
    }
    return SF_OK;
}

static int cmp_finding(const void *x, const void *y)
{
    const sf__synth_finding *a = x, *b = y;
    /* Rules are stored in stage, aspect, rule order. */
    if (a->rule != b->rule) return a->rule < b->rule ? -1 : 1;
    size_t n = a->keylen < b->keylen ? a->keylen : b->keylen;
    int k = n ? memcmp(a->key, b->key, n) : 0;
    if (k != 0) return k;
    if (a->keylen != b->keylen) return a->keylen < b->keylen ? -1 : 1;
    if (a->has_window != b->has_window) return a->has_window ? 1 : -1;
    return a->start_us < b->start_us ? -1 : a->start_us > b->start_us ? 1 : 0;
}

sf_status sf__synth_findings_eval(sf__synth_ctx *c)
{
    rule_eval e;
    memset(&e, 0, sizeof e);
    e.c = c;
    sf_buf_init(&e.key);
    sf_status rc = SF_OK;
    for (int i = 0; i < c->nrules; i++) {
        e.r = &c->rules[i];
        e.leaves = e.with_metric = e.with_count = 0;
        SF_CALL_GOTO(eval_rule(&e), done);
    }
    if (c->nfindings > 1) qsort(c->findings, c->nfindings, sizeof *c->findings, cmp_finding);
done:
    free(e.set);
    free(e.scratch);
    sf_buf_fini(&e.key);
    return rc;
}

void sf__synth_findings_free(sf__synth_ctx *c)
{
    for (size_t i = 0; i < c->nfindings; i++) {
        free(c->findings[i].key);
        free(c->findings[i].part_off);
        free(c->findings[i].part_len);
        free(c->findings[i].evidence);
    }
    free(c->findings);
    c->findings = NULL;
    c->nfindings = c->capfindings = 0;
}

/* ---- output ------------------------------------------------------------------------- */

void sf__synth_write_time(sf_json *j, int64_t us)
{
    char buf[64];
    size_t n = sf_timestamp_format(us, buf, sizeof buf);
    sf_json_strn(j, buf, n);
}

/* The evidence value: the metric of the group, or for a time series and a
 * finding with a window, the metric of each bucket inside the window. */
static void write_evidence_value(const sf__synth_finding *f, const sf_jv *obj, const char *metric, sf_json *j)
{
    const sf_jv *b = sf_jv_get(obj, "buckets");
    if (f->has_window && sf_jv_type_of(b) == SF_JV_OBJ) {
        sf_json_obj_begin(j);
        for (size_t i = 0; i < sf_jv_len(b); i++) {
            size_t len;
            const char *iso = sf_jv_key_at(b, i, &len);
            int64_t t;
            if (!sf_timestamp_parse(iso, len, &t) || t < f->start_us || t >= f->end_us) continue;
            sf_json_keyn(j, iso, len);
            sf_jv_write(sf__synth_field(sf_jv_at(b, i), metric), j);
        }
        sf_json_obj_end(j);
        return;
    }
    sf_jv_write(sf__synth_field(obj, metric), j);
}

static sf_status write_finding(const sf__synth_ctx *c, const sf__synth_finding *f, sf_json *j, sf_buf *tmp)
{
    const sf__synth_rule *r = f->rule;
    const sf_stage_config *st = &c->w->stages[r->stage];
    const sf_synth_agent *ag = &c->in->agents[r->agent];
    sf_json_obj_begin(j);
    sf_json_key(j, "stage");
    sf_json_str(j, st->name);
    sf_json_key(j, "aspect");
    sf_json_str(j, st->aspects[r->aspect].name);
    sf_json_key(j, "rule");
    sf_json_str(j, r->id);
    sf_json_key(j, "agent");
    sf_json_str(j, ag->id);
    sf_json_key(j, "title");
    sf_json_str(j, r->title);
    sf_json_key(j, "severity");
    sf_json_str(j, sf__synth_severities[r->severity]);
    sf_json_key(j, "direction");
    sf_json_str(j, r->dir == SF__SYNTH_ABOVE ? "above" : "below");
    sf_json_key(j, "confidence");
    sf_json_num(j, f->confidence);
    /* Quality: the share of the input behind it, and how the findings of
     * other aspects about the same subject side with it (1 without any). */
    sf_json_key(j, "coverage");
    sf_json_num(j, c->coverage);
    const size_t pairs = f->nagree + f->nconflict;
    sf_json_key(j, "agreement");
    sf_json_num(j, pairs ? (double)f->nagree / (double)pairs : 1.0);
    sf_json_key(j, "pairs");
    sf_json_uint(j, pairs);
    sf_json_key(j, "key");
    sf_json_strn(j, f->key, f->keylen);
    sf_json_key(j, "key_parts");
    sf_json_obj_begin(j);
    for (int p = 0; p < f->nparts; p++) {
        bool null;
        sf_buf_clear(tmp);
        SF_CALL(sf__synth_key_part(f->key + f->part_off[p], f->part_len[p], tmp, &null));
        sf_json_key(j, ag->by[p]);
        if (null) sf_json_null(j);
        else sf_json_strn(j, tmp->len ? (const char *)tmp->data : "", tmp->len);
    }
    sf_json_obj_end(j);
    if (f->has_window) {
        sf_json_key(j, "window");
        sf_json_obj_begin(j);
        sf_json_key(j, "start");
        sf__synth_write_time(j, f->start_us);
        sf_json_key(j, "end");
        sf__synth_write_time(j, f->end_us);
        sf_json_obj_end(j);
    }
    sf_json_key(j, "value");
    sf_json_num(j, f->value);
    if (r->relative) {
        sf_json_key(j, "baseline");
        sf_json_num(j, f->baseline);
    }
    sf_json_key(j, "threshold");
    sf_json_num(j, f->threshold);
    sf_json_key(j, "buckets");
    sf_json_int(j, f->buckets);
    if (r->nevidence > 0) {
        sf_json_key(j, "evidence");
        sf_json_obj_begin(j);
        /* One object per agent (in the order first listed) with its metrics. */
        for (int i = 0; i < r->nevidence; i++) {
            bool seen = false;
            for (int k = 0; k < i && !seen; k++) seen = r->evidence[k].agent == r->evidence[i].agent;
            if (seen) continue;
            sf_json_key(j, c->in->agents[r->evidence[i].agent].id);
            sf_json_obj_begin(j);
            for (int k = i; k < r->nevidence; k++) {
                if (r->evidence[k].agent != r->evidence[i].agent) continue;
                sf_json_key(j, r->evidence[k].metric);
                if (f->evidence[k] == NULL) sf_json_null(j);
                else write_evidence_value(f, f->evidence[k], r->evidence[k].metric, j);
            }
            sf_json_obj_end(j);
        }
        sf_json_obj_end(j);
    }
    if (f->escalated) {
        sf_json_key(j, "escalated");
        sf_json_bool(j, true);
    }
    if (f->overruled) {
        sf_json_key(j, "overruled");
        sf_json_bool(j, true);
    }
    sf_json_obj_end(j);
    return j->rc;
}

sf_status sf__synth_findings_write(const sf__synth_ctx *c, sf_json *j)
{
    sf_buf tmp;
    sf_buf_init(&tmp);
    sf_status rc = SF_OK;
    sf_json_key(j, "findings");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < c->nfindings; i++) SF_CALL_GOTO(write_finding(c, &c->findings[i], j, &tmp), done);
    sf_json_arr_end(j);
    rc = j->rc;
done:
    sf_buf_fini(&tmp);
    return rc;
}
