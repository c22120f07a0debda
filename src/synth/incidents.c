/* Cross-aspect incidents: findings of different aspects about one subject
 * in one time window, joined into one incident with a combined severity.
 *
 * A finding's subject is its key (the agent's by: columns and their values)
 * together with the equalities of its agent's where: filter (the top-level
 * and-terms COLUMN == "text" or COLUMN == integer, sf_filter_equalities): a
 * checkout revenue agent with where: service == "checkout" and by: [region]
 * reports about service checkout in some region. Two findings are linked
 * when
 *   - they come from different aspects (told apart by name, as in the
 *     consensus);
 *   - both have a window and the windows overlap (a finding without one is
 *     about the whole run, not a time: it joins no incident);
 *   - their subjects are compatible: every column both name has the same
 *     value in both, and they share at least one column unless one of the
 *     subjects is empty (a finding about all the input in that window).
 * An incident is a connected component of the links (findings of one
 * aspect join through findings of others) that holds findings of at least
 * two aspects: what no single aspect reports.
 *
 * Per incident: its findings (indices into "findings"), aspects (workflow
 * order), rules, subject (each column's value, or the sorted list of its
 * values where the findings name several), window (the union), the
 * evidence of each (aspect, rule): how many findings, and the value,
 * baseline and key of its most confident one, a title made of these, and
 *   severity:   the highest of its findings', one level higher (up to
 *               critical): at least two aspects confirm it independently;
 *   confidence: 1 - prod over its aspects (1 - c_a), c_a the highest
 *               confidence of the aspect's findings (independent evidence);
 *   coverage:   the input share behind the results;
 *   agreement:  agreeing / all consensus pairs among its findings (1 with
 *               none: findings joined by an equality of a where: filter are
 *               not a consensus pair).
 * Incidents are ordered by their first finding; everything is a function of
 * the sorted findings, so the output is deterministic. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/batch.h"
#include "shardflow/buf.h"
#include "shardflow/filter.h"

#include "synth/synth_impl.h"

#define MAX_EQ 16

/* One column of a subject: its unescaped value, or null. */
typedef struct part {
    const char *col;
    char *val;
    size_t len;
    bool null;
} part;

typedef struct subject {
    int n;
    part *p;
} subject;

static void subjects_free(subject *s, size_t n)
{
    if (s == NULL) return;
    for (size_t i = 0; i < n; i++) {
        for (int k = 0; k < s[i].n; k++) free(s[i].p[k].val);
        free(s[i].p);
    }
    free(s);
}

static sf_status add_part(subject *s, const char *col, const char *val, size_t len, bool null)
{
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->p[k].col, col) == 0) return SF_OK; /* the key's value is kept */
    part *p = realloc(s->p, (size_t)(s->n + 1) * sizeof *p);
    SF_CHECK(p != NULL, SF_ERR_NOMEM, "synthesis: out of memory (incident subjects)");
    s->p = p;
    char *v = malloc(len + 1);
    SF_CHECK(v != NULL, SF_ERR_NOMEM, "synthesis: out of memory (incident subjects)");
    if (len) memcpy(v, val, len);
    v[len] = '\0';
    s->p[s->n++] = (part){col, v, len, null};
    return SF_OK;
}

/* The subject of finding f: its key parts, then its agent's equalities. */
static sf_status subject_of(const sf__synth_ctx *c, const sf__synth_finding *f, sf_filter *const *filters,
                            subject *s, sf_buf *tmp)
{
    const sf_synth_agent *A = &c->in->agents[f->rule->agent];
    for (int p = 0; p < f->nparts && p < A->nby; p++) {
        bool null;
        sf_buf_clear(tmp);
        SF_CALL(sf__synth_key_part(f->key + f->part_off[p], f->part_len[p], tmp, &null));
        SF_CALL(add_part(s, A->by[p], tmp->len ? (const char *)tmp->data : "", tmp->len, null));
    }
    const sf_filter *flt = filters[f->rule->agent];
    if (flt == NULL) return SF_OK;
    const char *cols[MAX_EQ], *vals[MAX_EQ];
    size_t lens[MAX_EQ];
    int ne = sf_filter_equalities(flt, cols, vals, lens, MAX_EQ);
    for (int k = 0; k < ne && k < MAX_EQ; k++) SF_CALL(add_part(s, cols[k], vals[k], lens[k], false));
    return SF_OK;
}

static bool parts_equal(const part *a, const part *b)
{
    if (a->null || b->null) return a->null && b->null;
    return a->len == b->len && (a->len == 0 || memcmp(a->val, b->val, a->len) == 0);
}

static bool compatible(const subject *a, const subject *b)
{
    int shared = 0;
    for (int i = 0; i < a->n; i++)
        for (int k = 0; k < b->n; k++) {
            if (strcmp(a->p[i].col, b->p[k].col) != 0) continue;
            if (!parts_equal(&a->p[i], &b->p[k])) return false;
            shared++;
        }
    return shared > 0 || a->n == 0 || b->n == 0;
}

static size_t find_root(size_t *up, size_t i)
{
    while (up[i] != i) {
        up[i] = up[up[i]];
        i = up[i];
    }
    return i;
}

static void unite(size_t *up, size_t a, size_t b)
{
    a = find_root(up, a);
    b = find_root(up, b);
    /* The smaller index is the root: a component is named by its first finding. */
    if (a < b) up[b] = a;
    else if (b < a) up[a] = b;
}

/* A windowed finding in start order (ties by index). */
typedef struct by_time {
    int64_t start;
    size_t i;
} by_time;

static int by_start(const void *x, const void *y)
{
    const by_time *a = x, *b = y;
    if (a->start != b->start) return a->start < b->start ? -1 : 1;
    return a->i < b->i ? -1 : a->i > b->i;
}

static int part_cmp(const void *x, const void *y)
{
    const part *a = *(const part *const *)x, *b = *(const part *const *)y;
    if (a->null || b->null) return (int)b->null - (int)a->null; /* null first */
    size_t n = a->len < b->len ? a->len : b->len;
    int r = n ? memcmp(a->val, b->val, n) : 0;
    if (r != 0) return r;
    return a->len < b->len ? -1 : a->len > b->len;
}

/* Appends to the title, leaving on a failure. */
#define TITLE(...) SF_CALL_GOTO(sf_buf_printf(&title, __VA_ARGS__), done)

/* Writes incident members m[0..nm) (ascending finding indices). */
static sf_status write_incident(const sf__synth_ctx *c, const subject *subj, const size_t *m, size_t nm, size_t id,
                                size_t *up, sf_json *j)
{
    const sf__synth_finding *F = c->findings;
    sf_status rc = SF_OK;
    /* Aspects in workflow order, with their best confidence. */
    int *ranks = malloc(nm * sizeof *ranks);
    double *best = malloc(nm * sizeof *best);
    const char **names = malloc(nm * sizeof *names);
    /* (aspect, rule) groups: the member with the highest confidence of each. */
    size_t *lead = malloc(nm * sizeof *lead), *count = malloc(nm * sizeof *count);
    /* Subject columns in order of first appearance; values per column. */
    const char **cols = NULL;
    const part **vals = NULL;
    size_t ncols = 0;
    sf_buf title;
    sf_buf_init(&title);
    SF_CHECK_GOTO(ranks && best && names && lead && count, SF_ERR_NOMEM, done,
                  "synthesis: out of memory (incidents)");
    size_t na = 0, ng = 0;
    int sev = 0;
    int64_t lo = F[m[0]].start_us, hi = F[m[0]].end_us;
    for (size_t i = 0; i < nm; i++) {
        const sf__synth_finding *f = &F[m[i]];
        if (f->rule->severity > sev) sev = f->rule->severity;
        if (f->start_us < lo) lo = f->start_us;
        if (f->end_us > hi) hi = f->end_us;
        size_t at = 0;
        while (at < na && ranks[at] < f->aspect_rank) at++;
        if (at < na && ranks[at] == f->aspect_rank) {
            if (f->confidence > best[at]) best[at] = f->confidence;
        } else {
            memmove(ranks + at + 1, ranks + at, (na - at) * sizeof *ranks);
            memmove(best + at + 1, best + at, (na - at) * sizeof *best);
            memmove(names + at + 1, names + at, (na - at) * sizeof *names);
            ranks[at] = f->aspect_rank;
            best[at] = f->confidence;
            names[at] = sf__synth_aspect_of(c, f);
            na++;
        }
        size_t g = 0;
        while (g < ng && F[lead[g]].rule != f->rule) g++;
        if (g == ng) {
            lead[ng] = m[i];
            count[ng++] = 1;
        } else {
            count[g]++;
            if (f->confidence > F[lead[g]].confidence) lead[g] = m[i];
        }
    }
    /* Columns and their distinct values. */
    size_t nv = 0;
    size_t total_parts = 0;
    for (size_t i = 0; i < nm; i++) total_parts += (size_t)subj[m[i]].n;
    cols = malloc((total_parts + 1) * sizeof *cols);
    vals = malloc((total_parts + 1) * sizeof *vals);
    SF_CHECK_GOTO(cols != NULL && vals != NULL, SF_ERR_NOMEM, done, "synthesis: out of memory (incidents)");
    for (size_t i = 0; i < nm; i++)
        for (int k = 0; k < subj[m[i]].n; k++) {
            const char *col = subj[m[i]].p[k].col;
            size_t q = 0;
            while (q < ncols && strcmp(cols[q], col) != 0) q++;
            if (q == ncols) cols[ncols++] = col;
        }
    double miss = 1.0;
    for (size_t a = 0; a < na; a++) miss *= 1.0 - best[a];
    if (sf__synth_severities[sev + 1] != NULL) sev++;

    sf_json_obj_begin(j);
    sf_json_key(j, "incident");
    sf_json_uint(j, id);
    /* title: SUBJECT, START - END: ASPECT RULE METRIC VALUE (baseline B), ... */
    sf_json_key(j, "subject");
    sf_json_obj_begin(j);
    for (size_t q = 0; q < ncols; q++) {
        nv = 0;
        for (size_t i = 0; i < nm; i++)
            for (int k = 0; k < subj[m[i]].n; k++)
                if (strcmp(subj[m[i]].p[k].col, cols[q]) == 0) vals[nv++] = &subj[m[i]].p[k];
        qsort(vals, nv, sizeof *vals, part_cmp);
        size_t u = 0;
        for (size_t i = 0; i < nv; i++)
            if (u == 0 || part_cmp(&vals[u - 1], &vals[i]) != 0) vals[u++] = vals[i];
        sf_json_key(j, cols[q]);
        if (title.len) TITLE(", ");
        if (u == 1) {
            if (vals[0]->null) sf_json_null(j);
            else sf_json_strn(j, vals[0]->val, vals[0]->len);
            TITLE("%s %.*s", cols[q], vals[0]->null ? 4 : (int)vals[0]->len,
                       vals[0]->null ? "null" : vals[0]->val);
        } else {
            sf_json_arr_begin(j);
            for (size_t i = 0; i < u; i++) {
                if (vals[i]->null) sf_json_null(j);
                else sf_json_strn(j, vals[i]->val, vals[i]->len);
            }
            sf_json_arr_end(j);
            TITLE("%zu values of %s", u, cols[q]);
        }
    }
    sf_json_obj_end(j);
    char t0[64], t1[64];
    size_t l0 = sf_timestamp_format(lo, t0, sizeof t0), l1 = sf_timestamp_format(hi, t1, sizeof t1);
    TITLE("%s%.*s - %.*s:", title.len ? ", " : "", (int)l0, t0, (int)l1, t1);
    for (size_t g = 0; g < ng; g++) {
        const sf__synth_finding *f = &F[lead[g]];
        TITLE("%s %s %s", g ? ";" : "", sf__synth_aspect_of(c, f), f->rule->id);
        if (count[g] > 1) TITLE(" (%zu findings, strongest:", count[g]);
        TITLE(" %s %.4g", f->rule->metric, f->value);
        if (f->rule->relative) TITLE(" against %.4g", f->baseline);
        if (count[g] > 1) TITLE(")");
    }
    sf_json_key(j, "title");
    sf_json_strn(j, (const char *)title.data, title.len);
    sf_json_key(j, "severity");
    sf_json_str(j, sf__synth_severities[sev]);
    sf_json_key(j, "confidence");
    sf_json_num(j, 1.0 - miss);
    /* Quality: the input share behind it, and the consensus pairs among
     * its findings that agree (1 with none). */
    size_t agree = 0, pairs = 0;
    const size_t root = find_root(up, m[0]);
    for (size_t i = 0; i < c->nagree; i++)
        if (find_root(up, c->agree[i][0]) == root && find_root(up, c->agree[i][1]) == root) agree++;
    for (size_t i = 0; i < c->nconflicts; i++)
        if (find_root(up, c->conflicts[i].a) == root && find_root(up, c->conflicts[i].b) == root) pairs++;
    pairs += agree;
    sf_json_key(j, "coverage");
    sf_json_num(j, c->coverage);
    sf_json_key(j, "agreement");
    sf_json_num(j, pairs ? (double)agree / (double)pairs : 1.0);
    sf_json_key(j, "aspects");
    sf_json_arr_begin(j);
    for (size_t a = 0; a < na; a++) sf_json_str(j, names[a]);
    sf_json_arr_end(j);
    sf_json_key(j, "window");
    sf_json_obj_begin(j);
    sf_json_key(j, "start");
    sf__synth_write_time(j, lo);
    sf_json_key(j, "end");
    sf__synth_write_time(j, hi);
    sf_json_obj_end(j);
    sf_json_key(j, "findings");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < nm; i++) sf_json_uint(j, m[i]);
    sf_json_arr_end(j);
    sf_json_key(j, "evidence");
    sf_json_arr_begin(j);
    for (size_t g = 0; g < ng; g++) {
        const sf__synth_finding *f = &F[lead[g]];
        sf_json_obj_begin(j);
        sf_json_key(j, "aspect");
        sf_json_str(j, sf__synth_aspect_of(c, f));
        sf_json_key(j, "rule");
        sf_json_str(j, f->rule->id);
        sf_json_key(j, "findings");
        sf_json_uint(j, count[g]);
        sf_json_key(j, "strongest");
        sf_json_uint(j, lead[g]);
        sf_json_key(j, "key");
        sf_json_strn(j, f->key, f->keylen);
        sf_json_key(j, "metric");
        sf_json_str(j, f->rule->metric);
        sf_json_key(j, "value");
        sf_json_num(j, f->value);
        if (f->rule->relative) {
            sf_json_key(j, "baseline");
            sf_json_num(j, f->baseline);
        }
        sf_json_key(j, "severity");
        sf_json_str(j, sf__synth_severities[f->rule->severity]);
        sf_json_key(j, "confidence");
        sf_json_num(j, f->confidence);
        sf_json_obj_end(j);
    }
    sf_json_arr_end(j);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    sf_buf_fini(&title);
    free(ranks);
    free(best);
    free(names);
    free(lead);
    free(count);
    free(cols);
    free(vals);
    return rc;
}

sf_status sf__synth_incidents_write(const sf__synth_ctx *c, sf_json *j)
{
    const size_t n = c->nfindings;
    sf_status rc = SF_OK;
    subject *subj = calloc(n ? n : 1, sizeof *subj);
    size_t *up = malloc((n ? n : 1) * sizeof *up);
    by_time *order = malloc((n ? n : 1) * sizeof *order);
    size_t *members = malloc((n ? n : 1) * sizeof *members);
    sf_filter **filters = calloc((size_t)(c->in->nagents > 0 ? c->in->nagents : 1), sizeof *filters);
    sf_buf tmp;
    sf_buf_init(&tmp);
    SF_CHECK_GOTO(subj && up && order && members && filters, SF_ERR_NOMEM, done,
                  "synthesis: out of memory (incidents)");
    for (int a = 0; a < c->in->nagents; a++) {
        const sf_synth_agent *A = &c->in->agents[a];
        if (A->where == NULL) continue;
        /* The run has checked the expression; one that does not parse here
         * (never expected) only adds no equalities. */
        if (sf_filter_parse(A->where, c->file, A->line, "where", &filters[a]) != SF_OK) {
            filters[a] = NULL;
            continue;
        }
        if (A->cfg != NULL && A->cfg->schema != NULL && sf_filter_bind(filters[a], A->cfg->schema) != SF_OK) {
            sf_filter_destroy(&filters[a]);
            filters[a] = NULL;
        }
    }
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) {
        up[i] = i;
        SF_CALL_GOTO(subject_of(c, &c->findings[i], filters, &subj[i], &tmp), done);
        if (c->findings[i].has_window) order[nw++] = (by_time){c->findings[i].start_us, i};
    }
    /* Sweep in start order: the findings after x that start before x ends. */
    qsort(order, nw, sizeof *order, by_start);
    for (size_t x = 0; x < nw; x++) {
        const size_t ia = order[x].i;
        const sf__synth_finding *a = &c->findings[ia];
        for (size_t y = x + 1; y < nw; y++) {
            const size_t ib = order[y].i;
            const sf__synth_finding *b = &c->findings[ib];
            if (b->start_us >= a->end_us) break;
            if (a->aspect_rank == b->aspect_rank || b->end_us <= a->start_us) continue;
            if (compatible(&subj[ia], &subj[ib])) unite(up, ia, ib);
        }
    }
    sf_json_key(j, "incidents");
    sf_json_arr_begin(j);
    size_t id = 0;
    for (size_t r = 0; r < n; r++) {
        if (find_root(up, r) != r) continue;
        size_t nm = 0;
        bool several = false;
        for (size_t i = r; i < n; i++)
            if (find_root(up, i) == r) {
                members[nm++] = i;
                several = several || c->findings[i].aspect_rank != c->findings[r].aspect_rank;
            }
        if (!several) continue;
        SF_CALL_GOTO(write_incident(c, subj, members, nm, id++, up, j), done);
    }
    sf_json_arr_end(j);
    rc = j->rc;
done:
    sf_buf_fini(&tmp);
    if (filters != NULL)
        for (int a = 0; a < c->in->nagents; a++) sf_filter_destroy(&filters[a]);
    free(filters);
    subjects_free(subj, n);
    free(up);
    free(order);
    free(members);
    return rc;
}
