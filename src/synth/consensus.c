/* Consensus between aspects: conflicts, corroboration and agreement.
 *
 * Two findings of different aspects (aspects are told apart by name, so a
 * second pass's "performance" is the same aspect as the first's) are about
 * the same subject when
 *   - their keys overlap: every by: column both agents name has the same
 *     value in both keys, and they share at least one column unless one of
 *     them has no by: columns (a finding about the whole input is about
 *     every group; findings grouped by unrelated columns are not compared);
 *   - their windows overlap ([start, end) intervals intersect), or one of
 *     them has no window (it covers the whole run).
 * Such a pair agrees when severity and direction (above/below) are equal,
 * and conflicts otherwise. A conflict is resolved by synthesis.conflicts:
 *   priority:   the aspect listed first wins; aspects not listed rank after
 *               those listed, and two unlisted ones are escalated;
 *   confidence: the higher confidence wins, ties by aspect order (stage,
 *               then aspect, in the workflow);
 *   escalate:   (the default) both are kept and flagged "escalated".
 * The loser of a resolved conflict is flagged "overruled" in "findings"
 * (never dropped: the report shows what was decided and why).
 *
 * A finding with an agreeing finding of another aspect is "corroborated";
 * the report lists it with the aspects that agree (its own included) and
 * their number. agreement = agreeing pairs / (agreeing + conflicting
 * pairs), 1 when no subject is seen by two aspects; each finding carries
 * the same ratio over its own pairs ("agreement", with "pairs"), and each
 * agent in "quality" over the pairs of its findings. Pairs are visited in
 * finding order, so the output is deterministic. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "synth/synth_impl.h"

static const char *const resolves[] = {"priority", "confidence", "escalate", NULL};

/* ---- configuration ------------------------------------------------------------------------ */

sf_status sf__synth_conflicts_load(sf__synth_ctx *c, const sf_cfg_node *node, int line)
{
    c->resolve = SF__SYNTH_R_ESCALATE;
    if (node == NULL || sf__synth_is_null(node)) return SF_OK;
    const char *path = "synthesis.conflicts";
    if (node->kind != SF_NODE_MAP)
        return sf__synth_fail(c, line, path, "expected a mapping {resolve: ..., priority: [...]}");
    static const char *const keys[] = {"resolve", "priority", NULL};
    SF_CALL(sf__synth_check_keys(c, node, path, keys));
    int kl, r = SF__SYNTH_R_ESCALATE;
    const sf_cfg_node *v = sf__synth_get(node, "resolve", &kl);
    if (v != NULL) SF_CALL(sf__synth_enum(c, v, kl, "synthesis.conflicts.resolve", resolves, &r));
    c->resolve = (sf__synth_resolve)r;
    int pl;
    const sf_cfg_node *p = sf__synth_get(node, "priority", &pl);
    const char *ppath = "synthesis.conflicts.priority";
    if (p != NULL && sf__synth_is_null(p)) p = NULL;
    if (c->resolve != SF__SYNTH_R_PRIORITY) {
        if (p != NULL)
            return sf__synth_fail(c, pl, ppath, "applies only to resolve: priority (resolve is %s)", resolves[r]);
        return SF_OK;
    }
    if (p == NULL)
        return sf__synth_fail(c, kl > 0 ? kl : line, "synthesis.conflicts.resolve",
                              "resolve: priority needs priority: [ASPECT, ...] (the first listed wins)");
    /* One name reads as a one-element list. */
    size_t n = p->kind == SF_NODE_SEQ ? p->n : 1;
    if (p->kind == SF_NODE_MAP || n == 0)
        return sf__synth_fail(c, pl, ppath, "expected a non-empty list of aspect names");
    c->priority = calloc(n, sizeof *c->priority);
    SF_CHECK(c->priority != NULL, SF_ERR_NOMEM, "synthesis: out of memory");
    for (size_t i = 0; i < n; i++) {
        const sf_cfg_node *it = p->kind == SF_NODE_SEQ ? p->items[i] : p;
        char ipath[96];
        (void)snprintf(ipath, sizeof ipath, "%s[%zu]", ppath, i);
        int il = it && it->line > 0 ? it->line : pl;
        const char *name;
        SF_CALL(sf__synth_str(c, it, il, ipath, &name));
        if (sf__synth_aspect_rank(c->w, name) < 0)
            return sf__synth_fail(c, il, ipath, "no aspect '%s' in any stage", name);
        for (int k = 0; k < c->npriority; k++)
            if (strcmp(c->priority[k], name) == 0)
                return sf__synth_fail(c, il, ipath, "aspect '%s' is listed twice", name);
        c->priority[c->npriority++] = name;
    }
    return SF_OK;
}

/* ---- pairs ------------------------------------------------------------------------------------ */

const char *sf__synth_aspect_of(const sf__synth_ctx *c, const sf__synth_finding *f)
{
    return c->w->stages[f->rule->stage].aspects[f->rule->aspect].name;
}

static bool same_subject(const sf__synth_ctx *c, const sf__synth_finding *a, const sf__synth_finding *b)
{
    const sf_synth_agent *A = &c->in->agents[a->rule->agent], *B = &c->in->agents[b->rule->agent];
    int shared = 0;
    for (int p = 0; p < A->nby; p++)
        for (int q = 0; q < B->nby; q++) {
            if (strcmp(A->by[p], B->by[q]) != 0) continue;
            shared++;
            /* Raw parts compare like values: the escaping is one to one. */
            if (a->part_len[p] != b->part_len[q] ||
                (a->part_len[p] > 0 && memcmp(a->key + a->part_off[p], b->key + b->part_off[q], a->part_len[p]) != 0))
                return false;
        }
    if (shared == 0 && A->nby > 0 && B->nby > 0) return false;
    if (a->has_window && b->has_window) return a->start_us < b->end_us && b->start_us < a->end_us;
    return true;
}

/* Different aspects on the same subject: 0 = not a pair, 1 = they agree,
 * 2 = they conflict. */
static int relation(const sf__synth_ctx *c, const sf__synth_finding *a, const sf__synth_finding *b)
{
    if (a->aspect_rank == b->aspect_rank) return 0;
    if (!same_subject(c, a, b)) return 0;
    return a->rule->severity == b->rule->severity && a->rule->dir == b->rule->dir ? 1 : 2;
}

static int priority_rank(const sf__synth_ctx *c, const char *aspect)
{
    for (int i = 0; i < c->npriority; i++)
        if (strcmp(c->priority[i], aspect) == 0) return i;
    return INT_MAX;
}

/* Workflow order of the aspects of a and b: < 0 when a's comes first. */
static int aspect_order(const sf__synth_finding *a, const sf__synth_finding *b)
{
    if (a->rule->stage != b->rule->stage) return a->rule->stage < b->rule->stage ? -1 : 1;
    return a->rule->aspect < b->rule->aspect ? -1 : a->rule->aspect > b->rule->aspect ? 1 : 0;
}

static sf_status add_conflict(sf__synth_ctx *c, size_t ia, size_t ib)
{
    if (c->nconflicts == c->capconflicts) {
        size_t cap = c->capconflicts ? 2 * c->capconflicts : 16;
        sf__synth_conflict *p = realloc(c->conflicts, cap * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "synthesis: out of memory for %zu conflicts", cap);
        c->conflicts = p;
        c->capconflicts = cap;
    }
    sf__synth_finding *a = &c->findings[ia], *b = &c->findings[ib];
    sf__synth_conflict *x = &c->conflicts[c->nconflicts++];
    a->nconflict++;
    b->nconflict++;
    x->a = ia;
    x->b = ib;
    x->severity = a->rule->severity != b->rule->severity;
    x->direction = a->rule->dir != b->rule->dir;
    x->by = c->resolve;
    x->winner = -1;
    switch (c->resolve) {
    case SF__SYNTH_R_PRIORITY: {
        int ra = priority_rank(c, sf__synth_aspect_of(c, a)), rb = priority_rank(c, sf__synth_aspect_of(c, b));
        if (ra != rb) x->winner = ra < rb ? (long)ia : (long)ib;
        else x->by = SF__SYNTH_R_ESCALATE; /* neither aspect is listed */
        break;
    }
    case SF__SYNTH_R_CONFIDENCE:
        if (a->confidence != b->confidence) x->winner = a->confidence > b->confidence ? (long)ia : (long)ib;
        else x->winner = aspect_order(a, b) <= 0 ? (long)ia : (long)ib;
        break;
    case SF__SYNTH_R_ESCALATE: break;
    }
    if (x->winner < 0) {
        a->escalated = true;
        b->escalated = true;
    } else {
        c->findings[(size_t)x->winner == ia ? ib : ia].overruled = true;
    }
    return SF_OK;
}

static sf_status add_agree(sf__synth_ctx *c, size_t a, size_t b)
{
    if (c->nagree == c->capagree) {
        size_t cap = c->capagree ? 2 * c->capagree : 16;
        size_t(*p)[2] = realloc(c->agree, cap * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "synthesis: out of memory for %zu agreeing pairs", cap);
        c->agree = p;
        c->capagree = cap;
    }
    c->agree[c->nagree][0] = a;
    c->agree[c->nagree][1] = b;
    c->findings[a].nagree++;
    c->findings[b].nagree++;
    c->nagree++;
    return SF_OK;
}

sf_status sf__synth_consensus_eval(sf__synth_ctx *c)
{
    c->nconflicts = 0;
    c->nagree = 0;
    for (size_t i = 0; i < c->nfindings; i++) {
        c->findings[i].aspect_rank = sf__synth_aspect_rank(c->w, sf__synth_aspect_of(c, &c->findings[i]));
        c->findings[i].nagree = c->findings[i].nconflict = 0;
    }
    /* Findings are sorted by stage and aspect, so each aspect of a stage is
     * one block whose members are never a pair: start after it. */
    size_t block_end = 0;
    for (size_t i = 0; i < c->nfindings; i++) {
        const sf__synth_rule *r = c->findings[i].rule;
        if (block_end <= i) {
            block_end = i + 1;
            while (block_end < c->nfindings && c->findings[block_end].rule->stage == r->stage &&
                   c->findings[block_end].rule->aspect == r->aspect)
                block_end++;
        }
        for (size_t k = block_end; k < c->nfindings; k++) {
            int rel = relation(c, &c->findings[i], &c->findings[k]);
            if (rel == 1) SF_CALL(add_agree(c, i, k));
            else if (rel == 2) SF_CALL(add_conflict(c, i, k));
        }
    }
    return SF_OK;
}

/* ---- output ---------------------------------------------------------------------------------- */

static void write_ref(const sf__synth_ctx *c, const sf__synth_finding *f, sf_json *j)
{
    sf_json_key(j, "stage");
    sf_json_str(j, c->w->stages[f->rule->stage].name);
    sf_json_key(j, "aspect");
    sf_json_str(j, sf__synth_aspect_of(c, f));
    sf_json_key(j, "rule");
    sf_json_str(j, f->rule->id);
    sf_json_key(j, "key");
    sf_json_strn(j, f->key, f->keylen);
}

static int cmp_pair(const void *x, const void *y)
{
    const size_t *a = x, *b = y;
    if (a[0] != b[0]) return a[0] < b[0] ? -1 : 1;
    return a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0;
}

static sf_status write_corroborated(const sf__synth_ctx *c, sf_json *j)
{
    /* Both directions of every agreeing pair, by finding: each finding's
     * partners are then one run. */
    size_t n = 2 * c->nagree;
    size_t(*adj)[2] = NULL;
    int *ranks = NULL;
    sf_status rc = SF_OK;
    if (n > 0) {
        adj = malloc(n * sizeof *adj);
        ranks = malloc(n * sizeof *ranks);
        SF_CHECK_GOTO(adj != NULL && ranks != NULL, SF_ERR_NOMEM, done, "synthesis: out of memory");
        for (size_t i = 0; i < c->nagree; i++) {
            adj[2 * i][0] = adj[2 * i + 1][1] = c->agree[i][0];
            adj[2 * i][1] = adj[2 * i + 1][0] = c->agree[i][1];
        }
        qsort(adj, n, sizeof *adj, cmp_pair);
    }
    sf_json_key(j, "corroborated");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < n;) {
        size_t f = adj[i][0], e = i;
        /* The distinct aspects agreeing with f, its own included, in
         * workflow order (insertion into a small sorted list). */
        size_t m = 0;
        ranks[m++] = c->findings[f].aspect_rank;
        for (; e < n && adj[e][0] == f; e++) {
            int r = c->findings[adj[e][1]].aspect_rank;
            size_t at = 0;
            while (at < m && ranks[at] < r) at++;
            if (at < m && ranks[at] == r) continue;
            memmove(ranks + at + 1, ranks + at, (m - at) * sizeof *ranks);
            ranks[at] = r;
            m++;
        }
        const sf__synth_finding *fd = &c->findings[f];
        sf_json_obj_begin(j);
        sf_json_key(j, "finding");
        sf_json_uint(j, f);
        write_ref(c, fd, j);
        sf_json_key(j, "aspects");
        sf_json_arr_begin(j);
        for (size_t q = 0; q < m; q++) {
            /* The name of rank q: any finding of it in the run (or f). */
            const char *name = ranks[q] == fd->aspect_rank ? sf__synth_aspect_of(c, fd) : NULL;
            for (size_t x = i; x < e && name == NULL; x++)
                if (c->findings[adj[x][1]].aspect_rank == ranks[q])
                    name = sf__synth_aspect_of(c, &c->findings[adj[x][1]]);
            sf_json_str(j, name);
        }
        sf_json_arr_end(j);
        sf_json_key(j, "count");
        sf_json_uint(j, m);
        sf_json_obj_end(j);
        i = e;
    }
    sf_json_arr_end(j);
    rc = j->rc;
done:
    free(adj);
    free(ranks);
    return rc;
}

sf_status sf__synth_consensus_write(const sf__synth_ctx *c, sf_json *j)
{
    sf_json_key(j, "conflicts");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < c->nconflicts; i++) {
        const sf__synth_conflict *x = &c->conflicts[i];
        const sf__synth_finding *a = &c->findings[x->a], *b = &c->findings[x->b];
        sf_json_obj_begin(j);
        sf_json_key(j, "findings");
        sf_json_arr_begin(j);
        sf_json_uint(j, x->a);
        sf_json_uint(j, x->b);
        sf_json_arr_end(j);
        sf_json_key(j, "aspects");
        sf_json_arr_begin(j);
        sf_json_str(j, sf__synth_aspect_of(c, a));
        sf_json_str(j, sf__synth_aspect_of(c, b));
        sf_json_arr_end(j);
        sf_json_key(j, "rules");
        sf_json_arr_begin(j);
        sf_json_str(j, a->rule->id);
        sf_json_str(j, b->rule->id);
        sf_json_arr_end(j);
        sf_json_key(j, "keys");
        sf_json_arr_begin(j);
        sf_json_strn(j, a->key, a->keylen);
        sf_json_strn(j, b->key, b->keylen);
        sf_json_arr_end(j);
        sf_json_key(j, "disagree");
        sf_json_arr_begin(j);
        if (x->severity) sf_json_str(j, "severity");
        if (x->direction) sf_json_str(j, "direction");
        sf_json_arr_end(j);
        sf_json_key(j, "resolved_by");
        sf_json_str(j, resolves[x->by]);
        sf_json_key(j, "winner");
        if (x->winner < 0) sf_json_null(j);
        else sf_json_int(j, x->winner);
        sf_json_key(j, "escalated");
        sf_json_bool(j, x->winner < 0);
        sf_json_obj_end(j);
    }
    sf_json_arr_end(j);
    SF_CALL(write_corroborated(c, j));
    size_t pairs = c->nagree + c->nconflicts;
    sf_json_key(j, "agreement");
    sf_json_num(j, pairs ? (double)c->nagree / (double)pairs : 1.0);
    return j->rc;
}
