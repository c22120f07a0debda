/* synthesis.combine: weighted combination of estimates of one quantity by
 * several agents (e.g. the mean latency per service from a first pass and
 * from a filtered second pass).
 *
 * For every group key present in all estimates (agents without by: have
 * the one key ""), with per estimate i the value x_i, count n_i, variance
 * v_i (of the values; the estimate's own variance is v_i / n_i, its
 * standard error se_i = sqrt(v_i / n_i)) and confidence field c_i:
 *
 *   sample_size:      w_i = n_i; value = sum w_i x_i / sum w_i;
 *                     se = sqrt(pooled / N), N = sum n_i, pooled = sum
 *                     (n_i - 1) v_i / (N - k) over the k estimates (null
 *                     when N <= k or a variance is missing where n_i > 1).
 *   inverse_variance: w_i = 1 / se_i^2 = n_i / v_i; value = sum w_i x_i /
 *                     sum w_i; se = sqrt(1 / sum w_i). Estimates with
 *                     se_i == 0 are exact: the value is their plain mean and
 *                     se is 0.
 *   confidence:       w_i = c_i; value = sum w_i x_i / sum w_i; se = sqrt(sum
 *                     w_i^2 se_i^2) / sum w_i (null when an se_i is unknown).
 *
 * A group whose needed fields are missing, null or out of range (n_i <= 0,
 * v_i < 0, all weights 0) is skipped and counted in "skipped"; keys present
 * in some estimates but not all are counted in "partial".
 *
 * Two estimates conflict when |x_a - x_b| > z * sqrt(se_a^2 + se_b^2)
 * (both se known; with both 0, any difference conflicts).
 *
 * Combined confidence:
 *   confidence = coverage * sum_i (w_i / sum w) * q_i * (1 - conflicts / pairs)
 * where q_i is the estimate's confidence field when it has one (clamped to
 * [0, 1]), else 1 - 1 / sqrt(1 + n_i); pairs = k (k - 1) / 2 and conflicts
 * the pairs that conflict in this group; coverage as for findings. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth/synth_impl.h"

static const char *const weights[] = {"sample_size", "inverse_variance", "confidence", NULL};

/* ---- configuration ----------------------------------------------------------------------- */

static bool same_by(const sf_synth_agent *a, const sf_synth_agent *b)
{
    if (a->nby != b->nby) return false;
    for (int i = 0; i < a->nby; i++)
        if (strcmp(a->by[i], b->by[i]) != 0) return false;
    return true;
}

static void by_text(const sf_synth_agent *a, char *buf, size_t cap)
{
    size_t at = 0;
    buf[0] = '\0';
    if (a->nby == 0) (void)snprintf(buf, cap, "none");
    for (int i = 0; i < a->nby && at + 1 < cap; i++) {
        int w = snprintf(buf + at, cap - at, "%s%s", i ? ", " : "", a->by[i]);
        if (w < 0) break;
        at += (size_t)w;
    }
}

static sf_status opt_field(sf__synth_ctx *c, const sf_cfg_node *map, const char *key, const char *path,
                           const char *dflt, const char **out, int *line)
{
    char kpath[SF__SYNTH_PATH + 128];
    (void)snprintf(kpath, sizeof kpath, "%s.%s", path, key);
    const sf_cfg_node *v = sf__synth_get(map, key, line);
    *out = dflt;
    if (v == NULL) {
        *line = map->line;
        return SF_OK;
    }
    return sf__synth_str(c, v, *line, kpath, out);
}

static sf_status load_estimate(sf__synth_ctx *c, sf__synth_combine *cb, size_t i, const sf_cfg_node *it,
                               int line)
{
    static const char *const keys[] = {"agent", "value", "count", "variance", "confidence", NULL};
    char path[SF__SYNTH_PATH + 48], kpath[SF__SYNTH_PATH + 64];
    (void)snprintf(path, sizeof path, "%s.estimates[%zu]", cb->path, i);
    sf__synth_estimate *e = &cb->est[i];
    e->line = it && it->line > 0 ? it->line : line;
    if (it == NULL || it->kind != SF_NODE_MAP)
        return sf__synth_fail(c, e->line, path, "expected a mapping {agent: STAGE.ID, value: FIELD, ...}");
    SF_CALL(sf__synth_check_keys(c, it, path, keys));
    int kl;
    const sf_cfg_node *v = sf__synth_get(it, "agent", &kl);
    (void)snprintf(kpath, sizeof kpath, "%s.agent", path);
    if (v == NULL) return sf__synth_fail(c, e->line, path, "missing required key 'agent' (STAGE.ID)");
    SF_CALL(sf__synth_str(c, v, kl, kpath, &e->ref));
    SF_CALL(sf__synth_agent_ref(c, e->ref, kl, kpath, &e->agent));
    if (i > 0 && !same_by(&c->in->agents[cb->est[0].agent], &c->in->agents[e->agent])) {
        char b0[256], bi[256];
        by_text(&c->in->agents[cb->est[0].agent], b0, sizeof b0);
        by_text(&c->in->agents[e->agent], bi, sizeof bi);
        return sf__synth_fail(c, kl, kpath,
                              "agent '%s' groups by [%s] but '%s' by [%s]: the estimates of a combination must "
                              "group by the same columns in the same order",
                              e->ref, bi, cb->est[0].ref, b0);
    }
    v = sf__synth_get(it, "value", &e->value_line);
    (void)snprintf(kpath, sizeof kpath, "%s.value", path);
    if (v == NULL) return sf__synth_fail(c, e->line, path, "missing required key 'value' (a field, e.g. mean)");
    SF_CALL(sf__synth_str(c, v, e->value_line, kpath, &e->value));
    SF_CALL(opt_field(c, it, "count", path, "count", &e->count, &e->count_line));
    SF_CALL(opt_field(c, it, "variance", path, "variance", &e->variance, &e->variance_line));
    SF_CALL(opt_field(c, it, "confidence", path, NULL, &e->confidence, &e->confidence_line));
    if (cb->weight == SF__SYNTH_W_CONF && e->confidence == NULL)
        return sf__synth_fail(c, e->line, path, "weight: confidence needs the key 'confidence' (a field)");
    return SF_OK;
}

static sf_status load_combine(sf__synth_ctx *c, size_t i, const sf_cfg_node *it, int line)
{
    static const char *const keys[] = {"id", "weight", "z", "estimates", NULL};
    sf__synth_combine *cb = &c->combines[c->ncombines];
    memset(cb, 0, sizeof *cb);
    c->ncombines++; /* counted now so that ctx_fini frees it on failure */
    (void)snprintf(cb->path, sizeof cb->path, "synthesis.combine[%zu]", i);
    cb->line = it && it->line > 0 ? it->line : line;
    cb->z = 3.0;
    if (it == NULL || it->kind != SF_NODE_MAP)
        return sf__synth_fail(c, cb->line, cb->path, "expected a mapping {id, weight, estimates, z}");
    SF_CALL(sf__synth_check_keys(c, it, cb->path, keys));
    char kpath[SF__SYNTH_PATH + 32];
    int kl;
    const sf_cfg_node *v = sf__synth_get(it, "id", &kl);
    (void)snprintf(kpath, sizeof kpath, "%s.id", cb->path);
    if (v == NULL) return sf__synth_fail(c, cb->line, cb->path, "missing required key 'id'");
    SF_CALL(sf__synth_str(c, v, kl, kpath, &cb->id));
    for (int k = 0; k < c->ncombines - 1; k++)
        if (strcmp(c->combines[k].id, cb->id) == 0)
            return sf__synth_fail(c, kl, kpath, "combine id '%s' is used twice (line %d)", cb->id,
                                  c->combines[k].line);
    v = sf__synth_get(it, "weight", &kl);
    (void)snprintf(kpath, sizeof kpath, "%s.weight", cb->path);
    if (v == NULL)
        return sf__synth_fail(c, cb->line, cb->path,
                              "missing required key 'weight' (sample_size, inverse_variance or confidence)");
    int w;
    SF_CALL(sf__synth_enum(c, v, kl, kpath, weights, &w));
    cb->weight = (sf__synth_weight)w;
    v = sf__synth_get(it, "z", &kl);
    (void)snprintf(kpath, sizeof kpath, "%s.z", cb->path);
    if (v != NULL) {
        SF_CALL(sf__synth_num(c, v, kl, kpath, &cb->z));
        if (!(cb->z > 0)) return sf__synth_fail(c, kl, kpath, "must be greater than 0, found %g", cb->z);
    }
    v = sf__synth_get(it, "estimates", &kl);
    (void)snprintf(kpath, sizeof kpath, "%s.estimates", cb->path);
    if (v == NULL) return sf__synth_fail(c, cb->line, cb->path, "missing required key 'estimates'");
    if (v->kind != SF_NODE_SEQ || v->n < 2)
        return sf__synth_fail(c, kl, kpath, "expected a list of two or more estimates");
    cb->est = calloc(v->n, sizeof *cb->est);
    SF_CHECK(cb->est != NULL, SF_ERR_NOMEM, "synthesis: out of memory for estimates");
    for (size_t k = 0; k < v->n; k++) {
        SF_CALL(load_estimate(c, cb, k, v->items[k], kl));
        cb->nest++;
    }
    return SF_OK;
}

sf_status sf__synth_combine_load(sf__synth_ctx *c, const sf_cfg_node *node, int line)
{
    if (node == NULL || sf__synth_is_null(node)) return SF_OK;
    if (node->kind != SF_NODE_SEQ)
        return sf__synth_fail(c, line, "synthesis.combine", "expected a list of combinations");
    if (node->n == 0) return SF_OK;
    c->combines = calloc(node->n, sizeof *c->combines);
    SF_CHECK(c->combines != NULL, SF_ERR_NOMEM, "synthesis: out of memory for combinations");
    for (size_t i = 0; i < node->n; i++) SF_CALL(load_combine(c, i, node->items[i], line));
    return SF_OK;
}

/* ---- evaluation ----------------------------------------------------------------------------- */

typedef struct key_ref {
    const char *key;
    size_t len;
    int est;
    const sf_jv *obj;
} key_ref;

static int cmp_key_ref(const void *x, const void *y)
{
    const key_ref *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int k = n ? memcmp(a->key, b->key, n) : 0;
    if (k != 0) return k;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->est - b->est;
}

typedef struct est_vals {
    double x, n, v, cf, se, q, w;
} est_vals;

static double num_or_nan(const sf_jv *obj, const char *field)
{
    double d;
    return field != NULL && sf_jv_num(sf__synth_field(obj, field), &d) ? d : NAN;
}

static double clamp01(double x) { return x < 0 ? 0 : x > 1 ? 1 : x; }

/* Fails with a configuration message when no group of estimate e has the
 * field (a misspelt field name would otherwise only skip every group). */
static sf_status need_field(sf__synth_ctx *c, const sf__synth_combine *cb, int e, const sf_jv *groups,
                            const sf_jv *single, const char *field, const char *key, int line)
{
    size_t n = single ? 1 : sf_jv_len(groups);
    if (n == 0) return SF_OK;
    for (size_t i = 0; i < n; i++)
        if (sf__synth_field(single ? single : sf_jv_at(groups, i), field) != NULL) return SF_OK;
    char path[SF__SYNTH_PATH + 64];
    (void)snprintf(path, sizeof path, "%s.estimates[%d].%s", cb->path, e, key);
    return sf__synth_fail(c, line, path, "no group in the result of agent '%s' has a field '%s'", cb->est[e].ref,
                          field);
}

/* Combines one group: vals[0..k) from the estimates. false when the group
 * cannot be combined. */
static bool combine_group(const sf__synth_combine *cb, est_vals *vals, int k, double *value, double *se)
{
    double sw = 0, swx = 0;
    for (int i = 0; i < k; i++) {
        est_vals *e = &vals[i];
        if (!isfinite(e->x)) return false;
        e->se = (e->n > 0 && e->v >= 0) ? sqrt(e->v / e->n) : NAN;
        e->q = isfinite(e->cf) ? clamp01(e->cf) : (e->n >= 0 ? 1.0 - 1.0 / sqrt(1.0 + e->n) : 0.0);
    }
    switch (cb->weight) {
    case SF__SYNTH_W_SAMPLE: {
        double num = 0;
        bool have_var = true;
        for (int i = 0; i < k; i++) {
            if (!(vals[i].n > 0) || !isfinite(vals[i].n)) return false;
            vals[i].w = vals[i].n;
            if (vals[i].n > 1) {
                if (isfinite(vals[i].v) && vals[i].v >= 0) num += (vals[i].n - 1) * vals[i].v;
                else have_var = false;
            }
        }
        for (int i = 0; i < k; i++) {
            sw += vals[i].w;
            swx += vals[i].w * vals[i].x;
        }
        *value = swx / sw;
        *se = have_var && sw > k ? sqrt(num / (sw - k) / sw) : NAN;
        break;
    }
    case SF__SYNTH_W_INVVAR: {
        int exact = 0;
        for (int i = 0; i < k; i++) {
            if (!isfinite(vals[i].se)) return false;
            if (vals[i].se == 0) exact++;
        }
        for (int i = 0; i < k; i++) {
            if (exact > 0) vals[i].w = vals[i].se == 0 ? 1.0 : 0.0;
            else vals[i].w = 1.0 / (vals[i].se * vals[i].se);
            sw += vals[i].w;
            swx += vals[i].w * vals[i].x;
        }
        if (!(sw > 0) || !isfinite(sw)) return false;
        *value = swx / sw;
        *se = exact > 0 ? 0.0 : sqrt(1.0 / sw);
        break;
    }
    case SF__SYNTH_W_CONF: {
        double s2 = 0;
        bool have_se = true;
        for (int i = 0; i < k; i++) {
            if (!isfinite(vals[i].cf) || vals[i].cf < 0) return false;
            vals[i].w = vals[i].cf;
            sw += vals[i].w;
            swx += vals[i].w * vals[i].x;
            if (isfinite(vals[i].se)) s2 += vals[i].w * vals[i].w * vals[i].se * vals[i].se;
            else have_se = false;
        }
        if (!(sw > 0)) return false;
        *value = swx / sw;
        *se = have_se ? sqrt(s2) / sw : NAN;
        break;
    }
    }
    return isfinite(*value);
}

static bool same_key(const key_ref *a, const key_ref *b)
{
    return a->len == b->len && (a->len == 0 || memcmp(a->key, b->key, a->len) == 0);
}

/* The fields of the estimates of the key run at[0..k) (one entry per
 * estimate, in estimate order). */
static void load_vals(const sf__synth_combine *cb, const key_ref *at, est_vals *vals)
{
    for (int x = 0; x < cb->nest; x++) {
        const sf__synth_estimate *es = &cb->est[x];
        const sf_jv *o = at[x].obj;
        memset(&vals[x], 0, sizeof vals[x]);
        vals[x].x = num_or_nan(o, es->value);
        vals[x].n = num_or_nan(o, es->count);
        vals[x].v = num_or_nan(o, es->variance);
        vals[x].cf = num_or_nan(o, es->confidence);
    }
}

/* Whether estimates a and b conflict; *z is their distance in combined
 * standard errors (+inf when both are exact and differ). */
static bool conflict(const sf__synth_combine *cb, const est_vals *a, const est_vals *b, double *z)
{
    if (!isfinite(a->se) || !isfinite(b->se)) return false;
    double s = sqrt(a->se * a->se + b->se * b->se), d = fabs(a->x - b->x);
    *z = s > 0 ? d / s : (d > 0 ? INFINITY : 0.0);
    return s > 0 ? d > cb->z * s : d > 0;
}

static void write_pair(sf_json *j, const char *key, size_t len, const char *ra, const char *rb,
                       const est_vals *a, const est_vals *b, double z)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "key");
    sf_json_strn(j, key, len);
    sf_json_key(j, "estimates");
    sf_json_arr_begin(j);
    sf_json_str(j, ra);
    sf_json_str(j, rb);
    sf_json_arr_end(j);
    sf_json_key(j, "values");
    sf_json_arr_begin(j);
    sf_json_num(j, a->x);
    sf_json_num(j, b->x);
    sf_json_arr_end(j);
    sf_json_key(j, "se");
    sf_json_arr_begin(j);
    sf_json_num(j, a->se);
    sf_json_num(j, b->se);
    sf_json_arr_end(j);
    sf_json_key(j, "z");
    sf_json_num(j, z); /* an infinite z (exact estimates that differ) is written as null */
    sf_json_obj_end(j);
}

static sf_status write_one(sf__synth_ctx *c, const sf__synth_combine *cb, sf_json *j)
{
    const int k = cb->nest;
    sf_status rc = SF_OK;
    key_ref *refs = NULL;
    size_t *runs = NULL; /* starts of the runs that were combined */
    size_t nrefs = 0, nruns = 0, skipped = 0, partial = 0;
    est_vals *vals = calloc((size_t)k, sizeof *vals);
    SF_CHECK_GOTO(vals != NULL, SF_ERR_NOMEM, done, "synthesis: out of memory");

    /* Every key of every estimate, sorted by key then estimate: a key present
     * in all estimates is a run of k entries. */
    for (int e = 0; e < k; e++) {
        const sf_jv *root, *groups, *single;
        const sf__synth_estimate *es = &cb->est[e];
        SF_CALL_GOTO(sf__synth_result(c, es->agent, &root), done);
        SF_CALL_GOTO(sf__synth_groups(c, es->agent, root, &groups, &single), done);
        SF_CALL_GOTO(need_field(c, cb, e, groups, single, es->value, "value", es->value_line), done);
        if (cb->weight != SF__SYNTH_W_CONF)
            SF_CALL_GOTO(need_field(c, cb, e, groups, single, es->count, "count", es->count_line), done);
        if (cb->weight == SF__SYNTH_W_INVVAR)
            SF_CALL_GOTO(need_field(c, cb, e, groups, single, es->variance, "variance", es->variance_line), done);
        if (cb->weight == SF__SYNTH_W_CONF)
            SF_CALL_GOTO(need_field(c, cb, e, groups, single, es->confidence, "confidence", es->confidence_line),
                         done);
        size_t n = single ? 1 : sf_jv_len(groups);
        key_ref *p = realloc(refs, (nrefs + n + 1) * sizeof *p);
        SF_CHECK_GOTO(p != NULL, SF_ERR_NOMEM, done, "synthesis: out of memory for %zu keys", nrefs + n);
        refs = p;
        for (size_t g = 0; g < n; g++) {
            key_ref *r = &refs[nrefs++];
            r->est = e;
            if (single) {
                r->key = "";
                r->len = 0;
                r->obj = single;
            } else {
                r->key = sf_jv_key_at(groups, g, &r->len);
                r->obj = sf_jv_at(groups, g);
            }
        }
    }
    if (nrefs > 1) qsort(refs, nrefs, sizeof *refs, cmp_key_ref);
    if (nrefs > 0) {
        runs = malloc(nrefs * sizeof *runs);
        SF_CHECK_GOTO(runs != NULL, SF_ERR_NOMEM, done, "synthesis: out of memory for %zu keys", nrefs);
    }

    sf_json_key(j, cb->id);
    sf_json_obj_begin(j);
    sf_json_key(j, "weight");
    sf_json_str(j, weights[cb->weight]);
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    for (size_t i = 0; i < nrefs;) {
        size_t e = i + 1;
        while (e < nrefs && same_key(&refs[i], &refs[e])) e++;
        size_t at = i;
        i = e;
        if (e - at != (size_t)k) {
            partial++;
            continue;
        }
        load_vals(cb, &refs[at], vals);
        double value, se;
        if (!combine_group(cb, vals, k, &value, &se)) {
            skipped++;
            continue;
        }
        int pairs = k * (k - 1) / 2, nconf = 0;
        double z, sw = 0, sq = 0;
        for (int a = 0; a < k; a++)
            for (int b = a + 1; b < k; b++) nconf += conflict(cb, &vals[a], &vals[b], &z);
        for (int a = 0; a < k; a++) sw += vals[a].w;
        for (int a = 0; a < k; a++) sq += vals[a].w / sw * vals[a].q;
        double conf = c->coverage * sq * (1.0 - (double)nconf / pairs);
        sf_json_keyn(j, refs[at].key, refs[at].len);
        sf_json_obj_begin(j);
        sf_json_key(j, "value");
        sf_json_num(j, value);
        sf_json_key(j, "se");
        sf_json_num(j, se);
        sf_json_key(j, "confidence");
        sf_json_num(j, clamp01(conf));
        sf_json_key(j, "n_estimates");
        sf_json_int(j, k);
        sf_json_obj_end(j);
        runs[nruns++] = at;
    }
    sf_json_obj_end(j);

    sf_json_key(j, "conflicts");
    sf_json_arr_begin(j);
    for (size_t r = 0; r < nruns; r++) {
        const key_ref *at = &refs[runs[r]];
        double value, se, z;
        load_vals(cb, at, vals);
        (void)combine_group(cb, vals, k, &value, &se); /* for the estimates' se */
        for (int a = 0; a < k; a++)
            for (int b = a + 1; b < k; b++)
                if (conflict(cb, &vals[a], &vals[b], &z))
                    write_pair(j, at->key, at->len, cb->est[a].ref, cb->est[b].ref, &vals[a], &vals[b], z);
    }
    sf_json_arr_end(j);
    sf_json_key(j, "skipped");
    sf_json_uint(j, skipped);
    sf_json_key(j, "partial");
    sf_json_uint(j, partial);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(refs);
    free(runs);
    free(vals);
    return rc;
}

sf_status sf__synth_combine_write(sf__synth_ctx *c, sf_json *j)
{
    sf_json_key(j, "combine");
    sf_json_obj_begin(j);
    for (int i = 0; i < c->ncombines; i++) SF_CALL(write_one(c, &c->combines[i], j));
    sf_json_obj_end(j);
    return j->rc;
}
