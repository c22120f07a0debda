/* Synthesis entry points and the helpers its parts share.
 *
 * sf_synth_check parses every findings: rule and the synthesis: section
 * against the agents of the run before any data moves; sf_synth_write
 * parses them again (the same checks, so a result is never written from a
 * configuration that check would refuse), evaluates them on the agents'
 * reports and writes "findings", "synthesis" and "quality". Everything is a
 * function of the reports, the final states and the workflow: rules are
 * evaluated in workflow order, findings sorted, pairs visited in index
 * order, so the output is byte-identical from run to run.
 *
 * The synthesis: section (every key is checked; unknown keys are errors):
 *
 *   synthesis:
 *     combine:                        optional list of:
 *       - id: NAME                    required, unique.
 *         weight: sample_size|inverse_variance|confidence   required.
 *         z: NUMBER                   conflict threshold, > 0, default 3.
 *         estimates:                  two or more of:
 *           - agent: STAGE.ID         required; every estimate's agent
 *                                     groups by the same columns.
 *             value: FIELD            required (e.g. mean).
 *             count: FIELD            default count.
 *             variance: FIELD         default variance.
 *             confidence: FIELD       required for weight: confidence.
 *     conflicts:                      optional mapping.
 *       resolve: priority|confidence|escalate   default escalate.
 *       priority: [ASPECT, ...]       required for (and only for)
 *                                     resolve: priority.
 *
 * See findings.c for the findings: rules of an aspect, combine.c,
 * consensus.c and quality.c for what each part computes. */
#define _POSIX_C_SOURCE 200809L
#include "synth/synth_impl.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sf__synth_severities[] = {"info", "low", "medium", "high", "critical", NULL};

/* ---- messages and scalars ------------------------------------------------------ */

sf_status sf__synth_fail(const sf__synth_ctx *c, int line, const char *path, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const char *file = c->file ? c->file : "<workflow>";
    if (line > 0) return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s:%d: %s: %s", file, line, path, msg);
    return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s: %s: %s", file, path, msg);
}

bool sf__synth_is_null(const sf_cfg_node *n)
{
    if (n == NULL || n->kind != SF_NODE_SCALAR || n->quoted) return false;
    const char *s = n->scalar ? n->scalar : "";
    return s[0] == '\0' || strcmp(s, "~") == 0 || strcmp(s, "null") == 0 || strcmp(s, "Null") == 0 ||
           strcmp(s, "NULL") == 0;
}

int sf__synth_key_line(const sf_cfg_node *map, size_t i)
{
    if (map->key_lines != NULL && map->key_lines[i] > 0) return map->key_lines[i];
    return map->items[i] ? map->items[i]->line : map->line;
}

const sf_cfg_node *sf__synth_get(const sf_cfg_node *map, const char *key, int *line)
{
    *line = 0;
    if (map == NULL || map->kind != SF_NODE_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            *line = sf__synth_key_line(map, i);
            return map->items[i];
        }
    }
    return NULL;
}

/* Edit distance for "did you mean" hints (short words only). */
static size_t edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 31 || nb > 31) return SIZE_MAX;
    size_t prev[32], cur[32];
    for (size_t k = 0; k <= nb; k++) prev[k] = k;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        for (size_t k = 1; k <= nb; k++) {
            size_t sub = prev[k - 1] + (a[i - 1] != b[k - 1]);
            size_t del = prev[k] + 1, ins = cur[k - 1] + 1;
            cur[k] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (nb + 1) * sizeof *prev);
    }
    return prev[nb];
}

static void join_names(const char *const *names, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] != NULL && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", names[i]);
        if (w < 0) break;
        len += (size_t)w;
    }
}

static const char *nearest(const char *const *names, const char *s)
{
    const char *best = NULL;
    size_t bestd = 3; /* at most two edits */
    for (int i = 0; names[i] != NULL; i++) {
        size_t d = edit_distance(names[i], s);
        if (d < bestd) {
            bestd = d;
            best = names[i];
        }
    }
    return best;
}

sf_status sf__synth_check_keys(const sf__synth_ctx *c, const sf_cfg_node *map, const char *path,
                               const char *const *allowed)
{
    for (size_t i = 0; i < map->n; i++) {
        bool ok = false;
        for (int a = 0; allowed[a] != NULL && !ok; a++) ok = strcmp(allowed[a], map->keys[i]) == 0;
        if (ok) continue;
        char list[512], sub[SF__SYNTH_PATH + 64];
        join_names(allowed, list, sizeof list);
        (void)snprintf(sub, sizeof sub, "%s.%s", path, map->keys[i]);
        const char *near = nearest(allowed, map->keys[i]);
        return sf__synth_fail(c, sf__synth_key_line(map, i), sub, "unknown key '%s'%s%s%s (allowed: %s)",
                              map->keys[i], near ? "; did you mean '" : "", near ? near : "",
                              near ? "'?" : "", list);
    }
    return SF_OK;
}

static const char *kind_name(const sf_cfg_node *n)
{
    if (n == NULL || sf__synth_is_null(n)) return "an empty value";
    if (n->kind == SF_NODE_MAP) return "a mapping";
    if (n->kind == SF_NODE_SEQ) return "a sequence";
    return "a scalar";
}

sf_status sf__synth_str(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                        const char **out)
{
    if (n == NULL || n->kind != SF_NODE_SCALAR || sf__synth_is_null(n) || n->scalar == NULL)
        return sf__synth_fail(c, line, path, "expected a string, found %s", kind_name(n));
    if (n->scalar[0] == '\0') return sf__synth_fail(c, line, path, "must not be empty");
    *out = n->scalar;
    return SF_OK;
}


sf_status sf__synth_num(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                        double *out)
{
    if (n == NULL || n->kind != SF_NODE_SCALAR || sf__synth_is_null(n) || n->scalar == NULL)
        return sf__synth_fail(c, line, path, "expected a number, found %s", kind_name(n));
    double v = sf_json_is_number(n->scalar) ? strtod(n->scalar, NULL) : NAN;
    if (!isfinite(v)) return sf__synth_fail(c, line, path, "expected a number, found '%s'", n->scalar);
    *out = v;
    return SF_OK;
}

sf_status sf__synth_uint(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                         uint64_t *out)
{
    if (n == NULL || n->kind != SF_NODE_SCALAR || sf__synth_is_null(n) || n->scalar == NULL)
        return sf__synth_fail(c, line, path, "expected a non-negative integer, found %s", kind_name(n));
    const char *s = n->scalar;
    uint64_t v = 0;
    bool ok = s[0] != '\0';
    for (const char *p = s; *p && ok; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - (uint64_t)(*p - '0')) / 10) ok = false;
        else v = v * 10 + (uint64_t)(*p - '0');
    }
    if (!ok) return sf__synth_fail(c, line, path, "expected a non-negative integer, found '%s'", s);
    *out = v;
    return SF_OK;
}

sf_status sf__synth_enum(const sf__synth_ctx *c, const sf_cfg_node *n, int line, const char *path,
                         const char *const *names, int *out)
{
    char list[256];
    join_names(names, list, sizeof list);
    if (n == NULL || n->kind != SF_NODE_SCALAR || sf__synth_is_null(n) || n->scalar == NULL)
        return sf__synth_fail(c, line, path, "expected one of %s, found %s", list, kind_name(n));
    for (int i = 0; names[i] != NULL; i++) {
        if (strcmp(names[i], n->scalar) == 0) {
            *out = i;
            return SF_OK;
        }
    }
    const char *near = nearest(names, n->scalar);
    return sf__synth_fail(c, line, path, "unknown value '%s'%s%s%s (allowed: %s)", n->scalar,
                          near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "", list);
}

/* ---- agents and results ---------------------------------------------------------- */

int sf__synth_agent(const sf__synth_ctx *c, const char *stage, const char *id)
{
    for (int i = 0; i < c->in->nagents; i++) {
        const sf_synth_agent *a = &c->in->agents[i];
        if (a->stage && a->id && strcmp(a->stage, stage) == 0 && strcmp(a->id, id) == 0) return i;
    }
    return -1;
}

sf_status sf__synth_agent_ref(const sf__synth_ctx *c, const char *ref, int line, const char *path, int *out)
{
    int found = -1, matches = 0;
    size_t n = strlen(ref);
    for (size_t i = 1; i + 1 < n; i++) {
        if (ref[i] != '.') continue;
        for (int a = 0; a < c->in->nagents; a++) {
            const sf_synth_agent *ag = &c->in->agents[a];
            if (ag->stage == NULL || ag->id == NULL) continue;
            if (strlen(ag->stage) == i && memcmp(ag->stage, ref, i) == 0 && strcmp(ag->id, ref + i + 1) == 0) {
                found = a;
                matches++;
            }
        }
    }
    if (matches == 1) {
        *out = found;
        return SF_OK;
    }
    if (matches > 1)
        return sf__synth_fail(c, line, path, "'%s' names more than one agent (stage and agent names with dots)",
                              ref);
    if (strchr(ref, '.') == NULL)
        return sf__synth_fail(c, line, path, "expected STAGE.AGENT_ID, found '%s'", ref);
    return sf__synth_fail(c, line, path, "no agent '%s' (STAGE.AGENT_ID) in the workflow", ref);
}

void sf__synth_agent_name(const sf__synth_ctx *c, int i, char *buf, size_t cap)
{
    const sf_synth_agent *a = &c->in->agents[i];
    (void)snprintf(buf, cap, "%s.%s", a->stage ? a->stage : "?", a->id ? a->id : "?");
}

sf_status sf__synth_result(sf__synth_ctx *c, int i, const sf_jv **out)
{
    *out = NULL;
    char name[256];
    sf__synth_agent_name(c, i, name, sizeof name);
    const sf_synth_agent *a = &c->in->agents[i];
    if (c->docs[i] == NULL) {
        SF_CHECK(a->json != NULL, SF_ERR_ARG, "synthesis: agent '%s' has no result", name);
        sf_status rc = sf_jv_parse(a->json, a->json_len, &c->docs[i]);
        if (rc != SF_OK) {
            char msg[768];
            (void)snprintf(msg, sizeof msg, "%s", sf_error_message());
            return sf_error_set(rc, __FILE__, __LINE__, "result of agent '%s': %s", name, msg);
        }
    }
    const sf_jv *root = sf_jv_root(c->docs[i]);
    SF_CHECK(sf_jv_type_of(root) == SF_JV_OBJ, SF_ERR_PARSE, "result of agent '%s' is %s, not an object", name,
             sf_jv_type_name(sf_jv_type_of(root)));
    *out = root;
    return SF_OK;
}

const sf_jv *sf__synth_field(const sf_jv *obj, const char *path)
{
    if (sf_jv_type_of(obj) != SF_JV_OBJ || path == NULL) return NULL;
    const sf_jv *v = sf_jv_get(obj, path);
    if (v != NULL) return v;
    for (const char *dot = strchr(path, '.'); dot != NULL; dot = strchr(dot + 1, '.')) {
        const sf_jv *sub = sf_jv_getn(obj, path, (size_t)(dot - path));
        if (sf_jv_type_of(sub) != SF_JV_OBJ) continue;
        v = sf__synth_field(sub, dot + 1);
        if (v != NULL) return v;
    }
    return NULL;
}

sf_status sf__synth_groups(const sf__synth_ctx *c, int agent, const sf_jv *result, const sf_jv **groups,
                           const sf_jv **single)
{
    *groups = NULL;
    *single = NULL;
    if (c->in->agents[agent].nby == 0) {
        *single = result;
        return SF_OK;
    }
    const sf_jv *g = sf_jv_get(result, "groups");
    if (sf_jv_type_of(g) != SF_JV_OBJ) {
        char name[256];
        sf__synth_agent_name(c, agent, name, sizeof name);
        return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                            "result of agent '%s' (grouped by: columns) has no \"groups\" object", name);
    }
    *groups = g;
    return SF_OK;
}

double sf__synth_coverage_share(const sf_synth_coverage *cov)
{
    double s = 1.0;
    if (cov->rows_total > 0) s = (double)cov->rows_done / (double)cov->rows_total;
    else if (cov->shards_total > 0) s = (double)cov->shards_done / (double)cov->shards_total;
    return s < 0 ? 0 : s > 1 ? 1 : s;
}

int sf__synth_aspect_rank(const sf_workflow *w, const char *name)
{
    int rank = 0;
    for (int s = 0; s < w->nstages; s++) {
        const sf_stage_config *st = &w->stages[s];
        for (int a = 0; a < st->naspects; a++) {
            const char *nm = st->aspects[a].name;
            if (nm == NULL) continue;
            /* Count each name once, at its first occurrence. */
            bool earlier = false;
            for (int s2 = 0; s2 <= s && !earlier; s2++)
                for (int a2 = 0; a2 < (s2 == s ? a : w->stages[s2].naspects) && !earlier; a2++)
                    earlier = w->stages[s2].aspects[a2].name && strcmp(w->stages[s2].aspects[a2].name, nm) == 0;
            if (earlier) continue;
            if (strcmp(nm, name) == 0) return rank;
            rank++;
        }
    }
    return -1;
}

/* ---- the context and the entry points ----------------------------------------------- */

static sf_status ctx_init(sf__synth_ctx *c, const sf_synth_input *in)
{
    memset(c, 0, sizeof *c);
    SF_CHECK(in != NULL && in->w != NULL && (in->nagents == 0 || in->agents != NULL) && in->nagents >= 0,
             SF_ERR_ARG, "synthesis: no workflow or agents");
    c->in = in;
    c->w = in->w;
    c->file = in->w->file;
    c->coverage = sf__synth_coverage_share(&in->coverage);
    c->resolve = SF__SYNTH_R_ESCALATE;
    if (in->nagents > 0) {
        c->docs = calloc((size_t)in->nagents, sizeof *c->docs);
        SF_CHECK(c->docs != NULL, SF_ERR_NOMEM, "synthesis: out of memory");
    }
    return SF_OK;
}

static void ctx_fini(sf__synth_ctx *c)
{
    sf__synth_findings_free(c);
    for (int i = 0; i < c->nrules; i++) free(c->rules[i].evidence);
    free(c->rules);
    for (int i = 0; i < c->ncombines; i++) free(c->combines[i].est);
    free(c->combines);
    free(c->priority);
    free(c->conflicts);
    free(c->agree);
    for (int i = 0; c->docs != NULL && i < c->in->nagents; i++) sf_jv_destroy(&c->docs[i]);
    free(c->docs);
    memset(c, 0, sizeof *c);
}

static sf_status load_all(sf__synth_ctx *c)
{
    SF_CALL(sf__synth_rules_load(c));
    const sf_cfg_node *syn = c->w->synthesis;
    if (syn == NULL || sf__synth_is_null(syn)) return sf__synth_conflicts_load(c, NULL, 0);
    if (syn->kind != SF_NODE_MAP)
        return sf__synth_fail(c, syn->line, "synthesis", "expected a mapping, found %s", kind_name(syn));
    static const char *const keys[] = {"combine", "conflicts", NULL};
    SF_CALL(sf__synth_check_keys(c, syn, "synthesis", keys));
    int line;
    const sf_cfg_node *comb = sf__synth_get(syn, "combine", &line);
    if (comb != NULL) SF_CALL(sf__synth_combine_load(c, comb, line));
    const sf_cfg_node *conf = sf__synth_get(syn, "conflicts", &line);
    return sf__synth_conflicts_load(c, conf, line);
}

sf_status sf_synth_check(const sf_synth_input *in)
{
    sf__synth_ctx c;
    sf_status rc = ctx_init(&c, in);
    if (rc == SF_OK) rc = load_all(&c);
    ctx_fini(&c);
    return rc;
}

sf_status sf_synth_write(const sf_synth_input *in, sf_json *j)
{
    sf__synth_ctx c;
    sf_status rc;
    SF_CALL_GOTO(ctx_init(&c, in), done);
    SF_CALL_GOTO(load_all(&c), done);
    SF_CALL_GOTO(sf__synth_findings_eval(&c), done);
    SF_CALL_GOTO(sf__synth_consensus_eval(&c), done);
    SF_CALL_GOTO(sf__synth_findings_write(&c, j), done);
    sf_json_key(j, "synthesis");
    sf_json_obj_begin(j);
    SF_CALL_GOTO(sf__synth_combine_write(&c, j), done);
    SF_CALL_GOTO(sf__synth_consensus_write(&c, j), done);
    SF_CALL_GOTO(sf__synth_incidents_write(&c, j), done);
    sf_json_obj_end(j);
    SF_CALL_GOTO(sf__synth_quality_write(&c, j), done);
    rc = j->rc;
done:
    ctx_fini(&c);
    return rc;
}
