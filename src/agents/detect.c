/* Anomaly detectors over a baseline from an earlier stage: zscore (a stats
 * baseline), mad and iqr (a quantiles baseline) and ewma (a window
 * baseline), and the per-record scoring they share with the vote agent
 * (see agents/detect.h).
 *
 * Scores and votes, for a record with value x in a group whose baseline
 * statistics are given:
 *   zscore  s = (x - mean) / sd; anomalous when s_d > threshold.
 *   mad     s = 0.6745 * (x - median) / mad; anomalous when s_d > threshold
 *           (0.6745 makes the MAD of a normal distribution equal to sigma).
 *   iqr     anomalous outside [Q1 - k*IQR, Q3 + k*IQR] (by direction: above
 *           the upper fence, below the lower, either); s = (x - Q3) / IQR
 *           above Q3, (x - Q1) / IQR below Q1, 0 inside the box.
 *   ewma    per group, the buckets of the window baseline in time order:
 *           the forecast of a bucket is the EWMA (alpha) of the bucket means
 *           strictly before it, the spread the square root of the EW
 *           variance of the residuals (v <- (1 - alpha) (v + alpha e^2));
 *           the bucket is anomalous when its residual r = mean - forecast has
 *           r_d > k * spread, and a record is anomalous when its bucket is;
 *           s = r / spread.
 * s_d is the score in the chosen direction: s (up), -s (down), |s| (both).
 * A zero spread gives s = 0 for a zero deviation and +-inf otherwise (zscore
 * and ewma, whose baselines are exact).
 *
 * Confidence: a = min(1, max(0, s_d) / (2 * threshold)) (a = 1 for s_d > 0
 * and threshold 0, else 0) is the strength of the case for an anomaly; it
 * equals min(1, |s| / (2 * threshold)) for a score in the flagged direction.
 * The confidence of a yes vote is a, of a no vote 1 - a: both are in
 * [0.5, 1] and 0.5 exactly at the threshold, so that a detector sure of
 * "no" weighs as much as one sure of "yes" in the weighted vote.
 *
 * Unscored records (counted, never anomalous): a null or NaN value (zscore,
 * mad, iqr) or a null time (ewma); a group that the baseline does not have;
 * a group whose statistics cannot scale a score (sd undefined because of
 * fewer than two values or non-finite; a zero MAD or IQR, since quantile
 * estimates are approximate and a zero spread would flag every value not
 * equal to the estimate); for ewma a bucket the window did not see, a
 * bucket with no mean, and the buckets of the warm-up (fewer than warmup
 * earlier buckets with a mean, so no forecast to judge by).
 *
 * The result counts are integer sums over records, so merge is exactly
 * associative and commutative and the encoding canonical (groups in
 * ascending key byte order). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/detect.h"
#include "agents/groups.h"
#include "agents/window.h"

#define DETECT_FORMAT 1

static const char *const kind_names[SF__DETECT_NKINDS] = {"zscore", "mad", "iqr", "ewma"};
static const char *const dir_names[] = {"up", "down", "both"};

const char *sf__detect_kind_name(sf__detect_kind kind)
{
    return (int)kind >= 0 && (int)kind < SF__DETECT_NKINDS ? kind_names[kind] : "?";
}

bool sf__detect_kind_parse(const char *name, sf__detect_kind *out)
{
    for (int i = 0; name != NULL && i < SF__DETECT_NKINDS; i++)
        if (strcmp(name, kind_names[i]) == 0) {
            *out = (sf__detect_kind)i;
            return true;
        }
    return false;
}

static const char *file_of(const sf_agent_config *cfg)
{
    return cfg->file ? cfg->file : "<workflow>";
}

static const char *id_of(const sf_agent_config *cfg)
{
    return cfg->id ? cfg->id : (cfg->agent ? cfg->agent : "?");
}

/* The line of option key in the agent's mapping, else the agent's line. */
static int key_line(const sf_agent_config *cfg, const char *key)
{
    const sf_cfg_node *m = cfg->node;
    if (m != NULL && m->kind == SF_NODE_MAP && m->key_lines != NULL)
        for (size_t i = 0; i < m->n; i++)
            if (strcmp(m->keys[i], key) == 0 && m->key_lines[i] > 0) return m->key_lines[i];
    return cfg->line;
}

/* ---- options --------------------------------------------------------------- */

sf_status sf__detect_opts_read(const sf_agent_config *opt, sf__detect_kind kind,
                               sf__detect_opts *out)
{
    static const double default_threshold[SF__DETECT_NKINDS] = {3.0, 3.5, 3.0, 4.0};
    memset(out, 0, sizeof *out);
    out->kind = kind;
    /* iqr and ewma call their threshold k (Tukey's fences, k spreads) and
     * take either name, but not both. */
    const char *tkey = "threshold";
    if ((kind == SF__DETECT_IQR || kind == SF__DETECT_EWMA) && sf_agent_option(opt, "k") != NULL) {
        SF_CHECK(sf_agent_option(opt, "threshold") == NULL, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': options 'k' and 'threshold' are the same for %s: give one",
                 file_of(opt), key_line(opt, "k"), id_of(opt), sf__detect_kind_name(kind));
        tkey = "k";
    }
    SF_CALL(sf_agent_opt_double(opt, tkey, default_threshold[kind], 0.0, 1e9, &out->threshold));
    int dir;
    SF_CALL(sf_agent_opt_choice(opt, "direction", dir_names, 3,
                                kind == SF__DETECT_EWMA ? SF__DETECT_UP : SF__DETECT_BOTH, &dir));
    out->direction = (sf__detect_dir)dir;
    out->alpha = 0.3;
    out->warmup = 3;
    out->time = "timestamp";
    if (kind == SF__DETECT_EWMA) {
        SF_CALL(sf_agent_opt_double(opt, "alpha", 0.3, 1e-9, 1.0, &out->alpha));
        SF_CALL(sf_agent_opt_int(opt, "warmup", 3, 1, 1000000000, &out->warmup));
        SF_CALL(sf_agent_opt_str(opt, "time", "timestamp", &out->time));
    }
    return SF_OK;
}

/* The baseline agent each detector needs. */
static const char *needed_agent(sf__detect_kind kind)
{
    return kind == SF__DETECT_ZSCORE ? "stats" : kind == SF__DETECT_EWMA ? "window" : "quantiles";
}

static void format_by(const sf_agent_config *c, char *buf, size_t n)
{
    size_t len = (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < c->nby && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%s", i ? ", " : "",
                                c->by && c->by[i] ? c->by[i] : "?");
    if (len < n) snprintf(buf + len, n - len, "]");
}

sf_status sf__detect_check_baseline(const sf_agent_config *cfg, const sf__detect_opts *o,
                                    const sf_agent_prior *prior)
{
    int line = key_line(cfg, "baseline");
    const char *kname = sf__detect_kind_name(o->kind);
    const char *ref = prior->ref ? prior->ref : "?";
    SF_CHECK(prior->ops != NULL && prior->cfg != NULL, SF_ERR_INTERNAL,
             "%s:%d: agent '%s': baseline '%s' is not resolved", file_of(cfg), line, id_of(cfg), ref);
    const char *name = prior->ops->name ? prior->ops->name : "?";
    bool kind_ok = o->kind == SF__DETECT_EWMA ? sf__window_is(prior->ops)
                                              : strcmp(name, needed_agent(o->kind)) == 0;
    SF_CHECK(kind_ok, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'baseline': '%s' is a %s agent; %s needs a %s agent",
             file_of(cfg), line, id_of(cfg), ref, name, kname, needed_agent(o->kind));
    const sf_agent_config *pc = prior->cfg;
    bool by_ok = pc->nby == cfg->nby;
    for (int i = 0; by_ok && i < cfg->nby; i++)
        by_ok = cfg->by != NULL && pc->by != NULL && cfg->by[i] != NULL && pc->by[i] != NULL &&
                strcmp(cfg->by[i], pc->by[i]) == 0;
    if (!by_ok) {
        char mine[512], theirs[512];
        format_by(cfg, mine, sizeof mine);
        format_by(pc, theirs, sizeof theirs);
        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                            "%s:%d: agent '%s': option 'baseline': '%s' is grouped by %s but %s is "
                            "grouped by %s (the by: columns must be the same, in the same order)",
                            file_of(cfg), line, id_of(cfg), ref, theirs, kname, mine);
    }
    SF_CHECK(pc->column != NULL && cfg->column != NULL && strcmp(pc->column, cfg->column) == 0,
             SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'baseline': '%s' reads column '%s' but %s scores column '%s'",
             file_of(cfg), line, id_of(cfg), ref, pc->column ? pc->column : "(none)", kname,
             cfg->column ? cfg->column : "(none)");
    if (o->kind == SF__DETECT_EWMA) {
        const char *wt;
        SF_CALL(sf_agent_opt_str(pc, "time", "timestamp", &wt));
        SF_CHECK(strcmp(wt, o->time) == 0, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': option 'time': '%s' buckets by time column '%s' but ewma reads "
                 "'%s'",
                 file_of(cfg), key_line(cfg, "time"), id_of(cfg), ref, wt, o->time);
    }
    return SF_OK;
}

sf_status sf__detect_check_columns(const sf_agent_config *cfg, const sf__detect_opts *o)
{
    int line = cfg->line;
    const char *kname = sf__detect_kind_name(o->kind);
    SF_CHECK(cfg->column != NULL, SF_ERR_CONFIG,
             "%s:%d: agent '%s': %s needs a column (column: NAME)", file_of(cfg), line, id_of(cfg),
             kname);
    SF_CHECK(cfg->schema != NULL && cfg->col >= 0 && cfg->col < cfg->schema->ncols, SF_ERR_CONFIG,
             "%s:%d: agent '%s': column '%s' is not in the input", file_of(cfg), line, id_of(cfg),
             cfg->column);
    sf_type t = cfg->schema->fields[cfg->col].type;
    SF_CHECK(t == SF_INT64 || t == SF_FLOAT64 || t == SF_TIMESTAMP, SF_ERR_CONFIG,
             "%s:%d: agent '%s': %s needs a numeric column, '%s' is %s", file_of(cfg), line,
             id_of(cfg), kname, cfg->column, sf_type_name(t));
    SF_CHECK(cfg->nby >= 0 && cfg->nby <= 255 && (cfg->nby == 0 || cfg->by_col != NULL),
             SF_ERR_CONFIG, "%s:%d: agent '%s': by: takes 1 to 255 columns", file_of(cfg), line,
             id_of(cfg));
    for (int i = 0; i < cfg->nby; i++)
        SF_CHECK(cfg->by_col[i] >= 0 && cfg->by_col[i] < cfg->schema->ncols, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': by column '%s' is not in the input", file_of(cfg), line,
                 id_of(cfg), cfg->by && cfg->by[i] ? cfg->by[i] : "?");
    if (o->kind == SF__DETECT_EWMA) {
        static const sf_type ts[] = {SF_TIMESTAMP};
        int c;
        SF_CALL(sf_agent_need_col(cfg, "time", o->time, ts, 1, &c));
    }
    return SF_OK;
}

/* ---- scoring ------------------------------------------------------------- */

void sf__detect_ewma(size_t n, const double *mean, double alpha, int64_t warmup, double *res,
                     double *spread)
{
    double f = 0, v = 0;
    int64_t seen = 0; /* earlier buckets with a mean */
    for (size_t i = 0; i < n; i++) {
        double m = mean[i];
        res[i] = NAN;
        spread[i] = NAN;
        /* An empty bucket (or one whose mean is not finite) has nothing to
         * say about the level and would poison every later forecast. */
        if (!isfinite(m)) continue;
        if (seen == 0) {
            f = m;
            v = 0;
            seen = 1;
            continue;
        }
        double e = m - f;
        if (seen >= warmup) {
            res[i] = e;
            spread[i] = sqrt(v);
        }
        v = (1.0 - alpha) * (v + alpha * e * e);
        f += alpha * e;
        seen++;
    }
}

static inline double directed(double s, sf__detect_dir dir)
{
    return dir == SF__DETECT_UP ? s : dir == SF__DETECT_DOWN ? -s : fabs(s);
}

double sf__detect_confidence(double s, sf__detect_dir dir, double t, bool vote)
{
    double sd = directed(s, dir);
    double a;
    if (!(sd > 0))
        a = 0;
    else if (t > 0)
        a = sd / (2.0 * t) < 1.0 ? sd / (2.0 * t) : 1.0;
    else
        a = 1;
    return vote ? a : 1.0 - a;
}

/* A deviation over a spread, with a zero spread meaning "infinitely far"
 * unless the deviation is zero too. */
static inline double ratio(double dev, double spread)
{
    if (spread > 0) return dev / spread;
    return dev == 0 ? 0.0 : copysign(INFINITY, dev);
}

static sf_status grow_entries(sf__detector *d)
{
    if (d->groups.n <= d->gcap) return SF_OK;
    uint32_t cap = d->gcap ? d->gcap : 16;
    while (cap < d->groups.n) cap *= 2;
    sf__detect_group *g = realloc(d->g, (size_t)cap * sizeof *g);
    SF_CHECK(g != NULL, SF_ERR_NOMEM, "%s: out of memory for %u groups",
             sf__detect_kind_name(d->o.kind), cap);
    memset(g + d->gcap, 0, (size_t)(cap - d->gcap) * sizeof *g);
    d->g = g;
    d->gcap = cap;
    return SF_OK;
}

sf_status sf__detector_init(sf__detector *d, const sf_agent_config *cfg, const sf__detect_opts *o,
                            const sf_agent_prior *prior)
{
    memset(d, 0, sizeof *d);
    SF_CHECK(cfg != NULL && cfg->schema != NULL && cfg->col >= 0 && cfg->col < cfg->schema->ncols &&
                 prior != NULL && prior->ops != NULL,
             SF_ERR_ARG, "%s: configuration was not checked", o ? sf__detect_kind_name(o->kind) : "?");
    d->o = *o;
    d->prior = prior;
    d->col = cfg->col;
    d->time_col = -1;
    if (o->kind == SF__DETECT_EWMA) {
        d->time_col = sf_agent_col(cfg, o->time);
        SF_CHECK(d->time_col >= 0, SF_ERR_ARG, "ewma: time column '%s' is not in the pass", o->time);
    }
    SF_CALL(sf__groups_init(&d->groups, cfg->schema, cfg->by_col, cfg->nby));
    sf_status rc = grow_entries(d);
    if (rc != SF_OK) sf__detector_fini(d);
    return rc;
}

void sf__detector_fini(sf__detector *d)
{
    if (d == NULL) return;
    sf__groups_fini(&d->groups);
    free(d->g);
    free(d->bstart);
    free(d->bres);
    free(d->bspread);
    memset(d, 0, sizeof *d);
}

sf_status sf__detector_batch(sf__detector *d, const sf_batch *b)
{
    return sf__groups_batch(&d->groups, b);
}

/* One statistic of a baseline group; *have is false (and the message
 * cleared) when the baseline does not know the group. */
static sf_status baseline_stat(const sf__detector *d, const uint8_t *key, size_t len,
                               const char *name, double *out, bool *have)
{
    const sf_agent_prior *p = d->prior;
    SF_CHECK(p->ops->stat != NULL, SF_ERR_INTERNAL, "%s: baseline '%s' has no statistics",
             sf__detect_kind_name(d->o.kind), p->ref ? p->ref : "?");
    sf_status rc = p->ops->stat(p->state, len ? key : NULL, len, name, out);
    if (rc == SF_ERR_ARG) {
        /* The kind of the baseline was checked, so the statistic exists and
         * the group is what is missing. */
        sf_error_clear();
        *have = false;
        return SF_OK;
    }
    *have = rc == SF_OK;
    return rc;
}

static sf_status reserve_buckets(sf__detector *d, size_t extra)
{
    if (d->bcap - d->nb >= extra && d->bstart != NULL) return SF_OK;
    size_t cap = d->bcap ? d->bcap : 64;
    while (cap - d->nb < extra) cap *= 2;
    int64_t *s = realloc(d->bstart, cap * sizeof *s);
    if (s) d->bstart = s;
    double *r = realloc(d->bres, cap * sizeof *r);
    if (r) d->bres = r;
    double *p = realloc(d->bspread, cap * sizeof *p);
    if (p) d->bspread = p;
    SF_CHECK(s && r && p, SF_ERR_NOMEM, "ewma: out of memory for %zu buckets", cap);
    d->bcap = cap;
    return SF_OK;
}

/* Fills the cache entry of group gi from the baseline. */
static sf_status resolve(sf__detector *d, uint32_t gi)
{
    sf__detect_group *e = &d->g[gi];
    size_t len;
    const uint8_t *key = sf__groups_key(&d->groups, gi, &len);
    SF_CHECK(d->prior->state != NULL, SF_ERR_INTERNAL, "%s: the baseline '%s' has no state yet",
             sf__detect_kind_name(d->o.kind), d->prior->ref ? d->prior->ref : "?");
    e->status = 2;
    bool h1 = false, h2 = false;
    double a = NAN, b = NAN;
    switch (d->o.kind) {
    case SF__DETECT_ZSCORE:
        SF_CALL(baseline_stat(d, key, len, "mean", &a, &h1));
        if (h1) SF_CALL(baseline_stat(d, key, len, "sd", &b, &h2));
        if (h1 && h2 && isfinite(a) && isfinite(b) && b >= 0) e->status = 1;
        break;
    case SF__DETECT_MAD:
        SF_CALL(baseline_stat(d, key, len, "q:0.5", &a, &h1));
        if (h1) SF_CALL(baseline_stat(d, key, len, "mad", &b, &h2));
        if (h1 && h2 && isfinite(a) && isfinite(b) && b > 0) e->status = 1;
        break;
    case SF__DETECT_IQR:
        SF_CALL(baseline_stat(d, key, len, "q:0.25", &a, &h1));
        if (h1) SF_CALL(baseline_stat(d, key, len, "q:0.75", &b, &h2));
        if (h1 && h2 && isfinite(a) && isfinite(b) && b - a > 0 && isfinite(b - a)) e->status = 1;
        break;
    case SF__DETECT_EWMA: {
        if (d->bucket_us == 0) {
            d->bucket_us = sf__window_bucket_us(d->prior->state);
            SF_CHECK(d->bucket_us > 0, SF_ERR_INTERNAL, "ewma: baseline '%s' has bucket width %lld",
                     d->prior->ref ? d->prior->ref : "?", (long long)d->bucket_us);
        }
        size_t n = 0;
        int64_t *start = NULL;
        double *mean = NULL;
        sf_status rc = sf__window_series(d->prior->state, len ? key : NULL, len, "mean", &n, &start,
                                         &mean);
        if (rc == SF_OK && n > 0) rc = reserve_buckets(d, n);
        if (rc == SF_OK && n > 0) {
            e->off = d->nb;
            e->n = n;
            memcpy(d->bstart + d->nb, start, n * sizeof *start);
            sf__detect_ewma(n, mean, d->o.alpha, d->o.warmup, d->bres + d->nb, d->bspread + d->nb);
            d->nb += n;
            e->status = 1;
        }
        free(start);
        free(mean);
        SF_CALL(rc);
        break;
    }
    }
    e->a = a;
    e->b = b;
    return SF_OK;
}

/* The start of the bucket of t (floor division, also for negative t);
 * false when it is not representable. */
static inline bool bucket_start(int64_t t, int64_t width, int64_t *start)
{
    int64_t m = t % width;
    if (m < 0) m += width;
    if (t < INT64_MIN + m) return false;
    *start = t - m;
    return true;
}

sf_status sf__detector_score(sf__detector *d, const sf_batch *b, size_t r, sf__detect_score *out)
{
    out->scored = false;
    out->vote = false;
    out->score = NAN;
    out->confidence = 0;
    uint32_t gi;
    bool created;
    SF_CALL(sf__groups_row(&d->groups, b, r, &gi, &created));
    if (created) SF_CALL(grow_entries(d));
    if (d->g[gi].status == 0) SF_CALL(resolve(d, gi));
    const sf__detect_group *e = &d->g[gi];
    if (e->status != 1) return SF_OK;
    const double t = d->o.threshold;
    const sf__detect_dir dir = d->o.direction;
    double s;
    bool vote;
    if (d->o.kind == SF__DETECT_EWMA) {
        const sf_column *tc = &b->cols[d->time_col];
        int64_t start;
        if (sf_col_is_null(tc, r) || !bucket_start(tc->i64[r], d->bucket_us, &start)) return SF_OK;
        /* Binary search of the group's buckets (ascending starts). */
        const int64_t *bs = d->bstart + e->off;
        size_t lo = 0, hi = e->n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (bs[mid] < start)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == e->n || bs[lo] != start) return SF_OK;
        double res = d->bres[e->off + lo], spread = d->bspread[e->off + lo];
        if (isnan(spread)) return SF_OK;
        s = ratio(res, spread);
        vote = directed(res, dir) > t * spread;
    } else {
        const sf_column *c = &b->cols[d->col];
        if (sf_col_is_null(c, r)) return SF_OK;
        double x = sf_col_as_double(c, r);
        if (isnan(x)) return SF_OK;
        switch (d->o.kind) {
        case SF__DETECT_ZSCORE:
            s = ratio(x - e->a, e->b);
            vote = directed(s, dir) > t;
            break;
        case SF__DETECT_MAD:
            s = 0.6745 * (x - e->a) / e->b;
            vote = directed(s, dir) > t;
            break;
        default: { /* SF__DETECT_IQR */
            double q1 = e->a, q3 = e->b, iqr = q3 - q1;
            s = x > q3 ? (x - q3) / iqr : x < q1 ? (x - q1) / iqr : 0.0;
            bool above = x > q3 + t * iqr, below = x < q1 - t * iqr;
            vote = dir == SF__DETECT_UP ? above : dir == SF__DETECT_DOWN ? below : above || below;
            break;
        }
        }
    }
    out->scored = true;
    out->vote = vote;
    out->score = s;
    out->confidence = sf__detect_confidence(s, dir, t, vote);
    return SF_OK;
}

/* ---- ground truth and confusion counts ------------------------------------- */

sf_status sf__detect_truth_read(const sf_agent_config *cfg, bool resolve_col, sf__detect_truth *t)
{
    memset(t, 0, sizeof *t);
    t->col = -1;
    SF_CALL(sf_agent_opt_str(cfg, "truth", NULL, &t->column));
    const char *ids[SF__TRUTH_MAX_IDS];
    int n;
    SF_CALL(sf_agent_opt_strs(cfg, "truth_ids", ids, SF__TRUTH_MAX_IDS, &n));
    SF_CHECK(n == 0 || t->column != NULL, SF_ERR_CONFIG,
             "%s:%d: agent '%s': option 'truth_ids' needs truth: (the ground-truth column)",
             file_of(cfg), key_line(cfg, "truth_ids"), id_of(cfg));
    for (int i = 0; i < n; i++) {
        char *end;
        errno = 0;
        long long v = strtoll(ids[i], &end, 10);
        SF_CHECK(ids[i][0] != '\0' && *end == '\0' && errno != ERANGE, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': option 'truth_ids': item %d: expected an integer id, found '%s'",
                 file_of(cfg), key_line(cfg, "truth_ids"), id_of(cfg), i, ids[i]);
        t->ids[i] = (int64_t)v;
    }
    t->nids = n;
    if (resolve_col && t->column != NULL) {
        static const sf_type types[] = {SF_INT64};
        SF_CALL(sf_agent_need_col(cfg, "truth", t->column, types, 1, &t->col));
    }
    return SF_OK;
}

bool sf__detect_truth_positive(const sf__detect_truth *t, const sf_batch *b, size_t r)
{
    const sf_column *c = &b->cols[t->col];
    if (sf_col_is_null(c, r)) return false;
    int64_t v = c->i64[r];
    if (t->nids == 0) return v != 0;
    for (int i = 0; i < t->nids; i++)
        if (t->ids[i] == v) return true;
    return false;
}

sf_status sf__confusion_encode(const sf__confusion *c, sf_buf *out)
{
    SF_CALL(sf_buf_put_u64(out, c->tp));
    SF_CALL(sf_buf_put_u64(out, c->fp));
    SF_CALL(sf_buf_put_u64(out, c->fn));
    return sf_buf_put_u64(out, c->tn);
}

sf_status sf__confusion_decode(sf__confusion *c, sf_rd *rd)
{
    SF_CALL(sf_rd_u64(rd, &c->tp));
    SF_CALL(sf_rd_u64(rd, &c->fp));
    SF_CALL(sf_rd_u64(rd, &c->fn));
    return sf_rd_u64(rd, &c->tn);
}

void sf__confusion_report(const sf__confusion *c, sf_json *j)
{
    /* Each ratio is 0 where its denominator is 0 (no predicted positives,
     * no actual positives); F1 = 2tp / (2tp + fp + fn), 0 when all three
     * are 0. The counts are exact integers, so these are the correctly
     * rounded quotients of exact values. */
    double tp = (double)c->tp, fp = (double)c->fp, fn = (double)c->fn;
    sf_json_key(j, "confusion");
    sf_json_obj_begin(j);
    sf_json_key(j, "tp");
    sf_json_uint(j, c->tp);
    sf_json_key(j, "fp");
    sf_json_uint(j, c->fp);
    sf_json_key(j, "fn");
    sf_json_uint(j, c->fn);
    sf_json_key(j, "tn");
    sf_json_uint(j, c->tn);
    sf_json_obj_end(j);
    sf_json_key(j, "precision");
    sf_json_num(j, c->tp + c->fp ? tp / (tp + fp) : 0.0);
    sf_json_key(j, "recall");
    sf_json_num(j, c->tp + c->fn ? tp / (tp + fn) : 0.0);
    sf_json_key(j, "f1");
    sf_json_num(j, c->tp + c->fp + c->fn ? 2 * tp / (2 * tp + fp + fn) : 0.0);
}

/* ---- the detector agents ---------------------------------------------------- */

typedef struct group_counts {
    uint64_t records, anomalies;
} group_counts;

typedef struct detect_state {
    const sf_agent_config *cfg;
    sf__detect_opts opts;
    sf__detect_truth truth;
    sf__detector det;        /* scoring caches; not part of the encoding */
    uint64_t records, anomalies, unscored;
    sf__confusion conf;      /* all zero without truth: */
    sf__groups grp;          /* with by: only: per-group counts */
    group_counts *gc;
    uint32_t gcap;
} detect_state;

static const char *const detect_allowed[] = {"threshold", "direction", "truth", "truth_ids",
                                             "k",         "alpha",     "warmup", "time"};

static sf_status detect_check(const sf_agent_config *cfg, sf__detect_kind kind)
{
    /* iqr also takes k, ewma k and three options more. */
    int nallowed = kind == SF__DETECT_EWMA ? 8 : kind == SF__DETECT_IQR ? 5 : 4;
    SF_CALL(sf_agent_check_options(cfg, detect_allowed, nallowed));
    sf__detect_opts o;
    SF_CALL(sf__detect_opts_read(cfg, kind, &o));
    SF_CALL(sf__detect_check_columns(cfg, &o));
    SF_CHECK(cfg->nbaseline == 1 && cfg->baseline != NULL, SF_ERR_CONFIG,
             "%s:%d: agent '%s': %s needs one baseline: STAGE.AGENT_ID (a %s agent of an earlier "
             "stage), found %d",
             file_of(cfg), key_line(cfg, "baseline"), id_of(cfg), sf__detect_kind_name(kind),
             needed_agent(kind), cfg->nbaseline);
    SF_CALL(sf__detect_check_baseline(cfg, &o, &cfg->baseline[0]));
    sf__detect_truth t;
    return sf__detect_truth_read(cfg, true, &t);
}

static void detect_destroy(void *state)
{
    detect_state *s = state;
    sf__detector_fini(&s->det);
    sf__groups_fini(&s->grp);
    free(s->gc);
    memset(s, 0, sizeof *s);
}

static sf_status detect_init(void *state, const sf_agent_config *cfg, sf__detect_kind kind)
{
    detect_state *s = state;
    memset(s, 0, sizeof *s);
    sf_status rc = SF_OK;
    SF_CHECK(cfg != NULL && cfg->nbaseline == 1 && cfg->baseline != NULL, SF_ERR_ARG,
             "%s: configuration was not checked", sf__detect_kind_name(kind));
    s->cfg = cfg;
    SF_CALL(sf__detect_opts_read(cfg, kind, &s->opts));
    SF_CALL(sf__detect_truth_read(cfg, true, &s->truth));
    SF_CALL(sf__detector_init(&s->det, cfg, &s->opts, &cfg->baseline[0]));
    if (cfg->nby > 0) SF_CALL_GOTO(sf__groups_init(&s->grp, cfg->schema, cfg->by_col, cfg->nby), fail);
    return SF_OK;
fail:
    detect_destroy(s);
    return rc;
}

static sf_status grow_counts(detect_state *s)
{
    if (s->grp.n <= s->gcap) return SF_OK;
    uint32_t cap = s->gcap ? s->gcap : 16;
    while (cap < s->grp.n) cap *= 2;
    group_counts *g = realloc(s->gc, (size_t)cap * sizeof *g);
    SF_CHECK(g != NULL, SF_ERR_NOMEM, "%s: out of memory for %u groups",
             sf__detect_kind_name(s->opts.kind), cap);
    memset(g + s->gcap, 0, (size_t)(cap - s->gcap) * sizeof *g);
    s->gc = g;
    s->gcap = cap;
    return SF_OK;
}

static bool loaded(const sf_batch *b, int c)
{
    return c >= 0 && c < b->ncols && b->cols[c].loaded;
}

/* The engine's contract on rows, checked once per call rather than per row:
 * the last selected row is inside the batch (selections are ascending). */
static sf_status check_rows(const sf_batch *b, const sf_rows *rows)
{
    if (rows->n == 0) return SF_OK;
    size_t last = sf_rows_at(rows, rows->n - 1);
    SF_CHECK(last < b->nrows && (rows->sel != NULL || rows->begin + rows->n - 1 == last),
             SF_ERR_INTERNAL, "rows up to %zu of a %zu-row batch", last, b->nrows);
    return SF_OK;
}

static sf_status detect_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    detect_state *s = state;
    const sf_agent_config *cfg = s->cfg;
    const char *name = sf__detect_kind_name(s->opts.kind);
    SF_CALL(check_rows(b, rows));
    SF_CHECK(loaded(b, cfg->col) && (s->det.time_col < 0 || loaded(b, s->det.time_col)) &&
                 (s->truth.col < 0 || loaded(b, s->truth.col)),
             SF_ERR_INTERNAL, "%s: a column of agent '%s' is not loaded", name, id_of(cfg));
    SF_CALL(sf__detector_batch(&s->det, b));
    if (cfg->nby > 0) SF_CALL(sf__groups_batch(&s->grp, b));
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        sf__detect_score sc;
        SF_CALL(sf__detector_score(&s->det, b, r, &sc));
        s->records++;
        s->unscored += !sc.scored;
        s->anomalies += sc.vote;
        if (s->truth.col >= 0)
            sf__confusion_add(&s->conf, sc.vote, sf__detect_truth_positive(&s->truth, b, r));
        if (cfg->nby > 0) {
            uint32_t gi;
            bool created;
            SF_CALL(sf__groups_row(&s->grp, b, r, &gi, &created));
            if (created) SF_CALL(grow_counts(s));
            s->gc[gi].records++;
            s->gc[gi].anomalies += sc.vote;
        }
    }
    return SF_OK;
}

static sf_status detect_merge(void *into, const void *from)
{
    detect_state *a = into;
    const detect_state *f = from;
    SF_CHECK(a->opts.kind == f->opts.kind && a->cfg->nby == f->cfg->nby, SF_ERR_INTERNAL,
             "%s: merging states of different shapes", sf__detect_kind_name(a->opts.kind));
    a->records += f->records;
    a->anomalies += f->anomalies;
    a->unscored += f->unscored;
    sf__confusion_merge(&a->conf, &f->conf);
    if (a->cfg->nby == 0) return SF_OK;
    for (uint32_t i = 0; i < f->grp.n; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&f->grp, i, &len);
        uint32_t gi;
        SF_CALL(sf__groups_find(&a->grp, k, len, &gi, NULL));
        SF_CALL(grow_counts(a));
        a->gc[gi].records += f->gc[i].records;
        a->gc[gi].anomalies += f->gc[i].anomalies;
    }
    return SF_OK;
}

static sf_status detect_encode(const void *state, sf_buf *out)
{
    const detect_state *s = state;
    uint32_t *order = NULL;
    sf_status rc = SF_OK;
    uint32_t ng = s->cfg->nby > 0 ? s->grp.n : 0;
    if (ng > 0) SF_CALL(sf__groups_sorted(&s->grp, &order));
    SF_CALL_GOTO(sf_buf_put_u8(out, DETECT_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->opts.kind), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->cfg->nby), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, s->truth.col >= 0), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->records), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->anomalies), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->unscored), done);
    SF_CALL_GOTO(sf__confusion_encode(&s->conf, out), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, ng), done);
    for (uint32_t i = 0; i < ng; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&s->grp, order[i], &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, s->gc[order[i]].records), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, s->gc[order[i]].anomalies), done);
    }
done:
    free(order);
    return rc;
}

static sf_status detect_decode(void *state, const void *bytes, size_t n)
{
    detect_state *s = state;
    const char *name = sf__detect_kind_name(s->opts.kind);
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    uint8_t version, kind, nby, has_truth;
    SF_CALL(sf_rd_u8(&rd, &version));
    SF_CHECK(version == DETECT_FORMAT, SF_ERR_PARSE, "%s state: unknown format %u", name, version);
    SF_CALL(sf_rd_u8(&rd, &kind));
    SF_CHECK(kind == (uint8_t)s->opts.kind, SF_ERR_PARSE, "%s state: written by detector %u", name,
             kind);
    SF_CALL(sf_rd_u8(&rd, &nby));
    SF_CHECK(nby == s->cfg->nby, SF_ERR_PARSE, "%s state: %u key columns, expected %d", name, nby,
             s->cfg->nby);
    SF_CALL(sf_rd_u8(&rd, &has_truth));
    SF_CHECK(has_truth == (s->truth.col >= 0), SF_ERR_PARSE, "%s state: truth flag %u, expected %d",
             name, has_truth, s->truth.col >= 0);
    uint64_t records, anomalies, unscored, ng;
    sf__confusion conf;
    SF_CALL(sf_rd_u64(&rd, &records));
    SF_CALL(sf_rd_u64(&rd, &anomalies));
    SF_CALL(sf_rd_u64(&rd, &unscored));
    SF_CALL(sf__confusion_decode(&conf, &rd));
    SF_CALL(sf_rd_u64(&rd, &ng));
    /* An unscored record is never an anomaly; with truth: every record is
     * in the confusion matrix, and the predicted positives are the
     * anomalies. */
    SF_CHECK(anomalies <= records && unscored <= records - anomalies, SF_ERR_PARSE,
             "%s state: %llu anomalies and %llu unscored of %llu records", name,
             (unsigned long long)anomalies, (unsigned long long)unscored,
             (unsigned long long)records);
    bool conf_ok = has_truth ? conf.tp <= anomalies && conf.fp == anomalies - conf.tp &&
                                   conf.fn <= records - anomalies &&
                                   conf.tn == records - anomalies - conf.fn
                             : (conf.tp | conf.fp | conf.fn | conf.tn) == 0;
    SF_CHECK(conf_ok, SF_ERR_PARSE, "%s state: confusion counts do not add up", name);
    SF_CHECK(nby > 0 || ng == 0, SF_ERR_PARSE, "%s state: groups without by:", name);
    /* Every group takes at least 4 + 16 bytes. */
    SF_CHECK(ng <= (n - rd.off) / 20, SF_ERR_PARSE, "%s state: %llu groups in %zu bytes", name,
             (unsigned long long)ng, n);
    s->records = records;
    s->anomalies = anomalies;
    s->unscored = unscored;
    s->conf = conf;
    if (nby == 0) {
        SF_CHECK(rd.off == n, SF_ERR_PARSE, "%s state: %zu trailing bytes", name, n - rd.off);
        return SF_OK;
    }
    SF_CALL(sf__groups_clear(&s->grp));
    /* Group slots are reused by index after the clear and grow_counts only
     * zeroes new capacity: empty them all, or a later merge or row that
     * creates a group at a reused index would add into the counts an
     * earlier decode or process left there. */
    if (s->gcap > 0) memset(s->gc, 0, (size_t)s->gcap * sizeof *s->gc);
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    uint64_t left_r = records, left_a = anomalies;
    for (uint64_t i = 0; i < ng; i++) {
        uint32_t gi;
        SF_CALL(sf__groups_decode_key(&s->grp, &rd, &prev, &prev_len, &gi));
        SF_CALL(grow_counts(s));
        group_counts *g = &s->gc[gi];
        SF_CALL(sf_rd_u64(&rd, &g->records));
        SF_CALL(sf_rd_u64(&rd, &g->anomalies));
        SF_CHECK(g->records >= 1 && g->anomalies <= g->records && g->records <= left_r &&
                     g->anomalies <= left_a,
                 SF_ERR_PARSE, "%s state: group %llu has inconsistent counts", name,
                 (unsigned long long)i);
        left_r -= g->records;
        left_a -= g->anomalies;
    }
    SF_CHECK(left_r == 0 && left_a == 0, SF_ERR_PARSE,
             "%s state: the groups do not add up to the totals", name);
    SF_CHECK(rd.off == n, SF_ERR_PARSE, "%s state: %zu trailing bytes", name, n - rd.off);
    return SF_OK;
}

static sf_status detect_report(const void *state, sf_json *j)
{
    const detect_state *s = state;
    sf_status rc = SF_OK;
    sf_buf text;
    sf_buf_init(&text);
    uint32_t *order = NULL;
    size_t *toff = NULL, *tlen = NULL;
    sf_json_obj_begin(j);
    sf_json_key(j, "records");
    sf_json_uint(j, s->records);
    sf_json_key(j, "anomalies");
    sf_json_uint(j, s->anomalies);
    sf_json_key(j, "rate");
    sf_json_num(j, s->records ? (double)s->anomalies / (double)s->records : 0.0);
    sf_json_key(j, "unscored");
    sf_json_uint(j, s->unscored);
    if (s->cfg->nby > 0) {
        SF_CALL_GOTO(sf__groups_text_order(&s->grp, &text, &order, &toff, &tlen), done);
        sf_json_key(j, "groups");
        sf_json_obj_begin(j);
        for (uint32_t i = 0; i < s->grp.n;) {
            /* Keys print uniquely; should two ever print alike they are
             * reported as one. */
            uint32_t gi = order[i];
            group_counts g = s->gc[gi];
            uint32_t e = i + 1;
            while (e < s->grp.n && tlen[order[e]] == tlen[gi] &&
                   memcmp(text.data + toff[order[e]], text.data + toff[gi], tlen[gi]) == 0) {
                g.records += s->gc[order[e]].records;
                g.anomalies += s->gc[order[e]].anomalies;
                e++;
            }
            sf_json_keyn(j, (const char *)text.data + toff[gi], tlen[gi]);
            sf_json_obj_begin(j);
            sf_json_key(j, "records");
            sf_json_uint(j, g.records);
            sf_json_key(j, "anomalies");
            sf_json_uint(j, g.anomalies);
            sf_json_obj_end(j);
            i = e;
        }
        sf_json_obj_end(j);
    }
    if (s->truth.col >= 0) sf__confusion_report(&s->conf, j);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(order);
    free(toff);
    free(tlen);
    sf_buf_fini(&text);
    return rc;
}

static sf_status detect_columns(const sf_agent_config *cfg, sf__detect_kind kind, const char **names,
                                int max, int *n)
{
    *n = 0;
    sf__detect_opts o;
    SF_CALL(sf__detect_opts_read(cfg, kind, &o));
    sf__detect_truth t;
    SF_CALL(sf__detect_truth_read(cfg, false, &t));
    if (kind == SF__DETECT_EWMA && *n < max) names[(*n)++] = o.time;
    if (t.column != NULL && *n < max) names[(*n)++] = t.column;
    return SF_OK;
}

static sf_status detect_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                             double *out)
{
    const detect_state *s = state;
    const char *kname = sf__detect_kind_name(s->opts.kind);
    SF_CHECK(strcmp(name, "rows") == 0, SF_ERR_ARG, "%s: no statistic '%s' (it has: rows)", kname,
             name);
    if (key == NULL && keylen == 0) {
        *out = (double)s->records;
        return SF_OK;
    }
    uint32_t gi = s->cfg->nby > 0 ? sf__groups_lookup(&s->grp, key, keylen) : SF__NO_GROUP;
    SF_CHECK(gi != SF__NO_GROUP, SF_ERR_ARG, "%s: no such group", kname);
    *out = (double)s->gc[gi].records;
    return SF_OK;
}

/* One set of entry points per detector, so that each knows its kind. */
#define DETECTOR_OPS(sym, KIND, nm)                                                             \
    static sf_status sym##_check(const sf_agent_config *cfg) { return detect_check(cfg, KIND); } \
    static sf_status sym##_init(void *state, const sf_agent_config *cfg)                        \
    {                                                                                           \
        return detect_init(state, cfg, KIND);                                                   \
    }                                                                                           \
    static sf_status sym##_columns(const sf_agent_config *cfg, const char **names, int max,     \
                                   int *n)                                                      \
    {                                                                                           \
        return detect_columns(cfg, KIND, names, max, n);                                        \
    }                                                                                           \
    const sf_agent_ops sf__agent_##sym = {                                                      \
        .abi_version = SF_AGENT_ABI_VERSION,                                                    \
        .name = nm,                                                                             \
        .aspect = "performance",                                                                  \
        .state_size = sizeof(detect_state),                                                     \
        .check = sym##_check,                                                                   \
        .init = sym##_init,                                                                     \
        .process = detect_process,                                                              \
        .merge = detect_merge,                                                                  \
        .encode = detect_encode,                                                                \
        .decode = detect_decode,                                                                \
        .report = detect_report,                                                                \
        .destroy = detect_destroy,                                                              \
        .columns = sym##_columns,                                                               \
        .stat = detect_stat,                                                                    \
    };

DETECTOR_OPS(zscore, SF__DETECT_ZSCORE, "zscore")
DETECTOR_OPS(mad, SF__DETECT_MAD, "mad")
DETECTOR_OPS(iqr, SF__DETECT_IQR, "iqr")
DETECTOR_OPS(ewma, SF__DETECT_EWMA, "ewma")
