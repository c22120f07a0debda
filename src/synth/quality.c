/* Quality: how much of the input fed the results, a score per agent, and
 * consistency checks between agents that must agree.
 *
 * coverage: shards and rows done / total (null when a total is unknown,
 * i.e. 0), the raw counts, and "share", the fraction the confidences use
 * (rows, else shards, else 1).
 *
 * Per agent: coverage = share, and
 *   confidence = share * (1 - 1 / sqrt(1 + n))
 * with n the agent's whole-state "count" statistic (else "rows"): the
 * relative standard error of a mean of n values falls as 1 / sqrt(n), so
 * this is 0 without data and tends to the coverage with many values. null
 * when the agent answers neither statistic.
 *
 * Checks (run on every result; a failed check is reported, never dropped,
 * and counted in checks_failed):
 *   count, scope agents: agents of one stage with the same column: and the
 *     same where: (none counts as one filter) that answer stat "count" for
 *     the whole state see the same values, so their counts must be equal;
 *   rows, scope agents: likewise "rows" for agents of one stage and where:,
 *     whatever their column;
 *   count / rows, scope groups: for an agent with by: columns, the sum of
 *     the statistic over its groups (the keys its report lists, turned back
 *     into canonical key bytes) equals the whole-state value. Skipped when
 *     the agent does not answer the statistic for groups or the whole. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/batch.h"
#include "synth/synth_impl.h"

typedef struct agent_stats {
    bool has_count, has_rows;
    double count, rows;
} agent_stats;

/* A statistic of agent a: true with *out set when answered; false when the
 * agent has no such statistic (SF_ERR_ARG) or no state. */
static sf_status stat_of(const sf_synth_agent *a, const uint8_t *key, size_t keylen, const char *name, bool *ok,
                         double *out)
{
    *ok = false;
    if (a->ops == NULL || a->ops->stat == NULL || a->state == NULL) return SF_OK;
    sf_status rc = a->ops->stat(a->state, key, keylen, name, out);
    if (rc == SF_ERR_ARG) {
        sf_error_clear();
        return SF_OK;
    }
    SF_CALL(rc);
    *ok = true;
    return SF_OK;
}

static bool same_str(const char *a, const char *b)
{
    if (a == NULL || b == NULL) return a == b;
    return strcmp(a, b) == 0;
}

static void write_names(const sf__synth_ctx *c, const int *idx, int n, sf_json *j)
{
    char name[256];
    sf_json_arr_begin(j);
    for (int i = 0; i < n; i++) {
        sf__synth_agent_name(c, idx[i], name, sizeof name);
        sf_json_str(j, name);
    }
    sf_json_arr_end(j);
}

/* ---- checks across agents ------------------------------------------------------------------- */

/* One check per set of agents that must agree on stat (count: same stage,
 * column and where; rows: same stage and where). */
static void across_agents(const sf__synth_ctx *c, const agent_stats *st, bool rows, int *idx, sf_json *j,
                          size_t *failed)
{
    const int n = c->in->nagents;
    const sf_synth_agent *ag = c->in->agents;
    bool *done = calloc((size_t)n + 1, 1);
    if (done == NULL) {
        if (j->rc == SF_OK) j->rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "synthesis: out of memory");
        return;
    }
    for (int i = 0; i < n; i++) {
        bool has = rows ? st[i].has_rows : st[i].has_count;
        if (done[i] || !has || (!rows && ag[i].column == NULL)) continue;
        int m = 0;
        for (int k = i; k < n; k++) {
            bool hk = rows ? st[k].has_rows : st[k].has_count;
            if (!hk || done[k] || !same_str(ag[k].stage, ag[i].stage) || !same_str(ag[k].where, ag[i].where))
                continue;
            if (!rows && !same_str(ag[k].column, ag[i].column)) continue;
            done[k] = true;
            idx[m++] = k;
        }
        if (m < 2) continue;
        bool ok = true;
        for (int k = 1; k < m; k++)
            ok = ok && (rows ? st[idx[k]].rows == st[idx[0]].rows : st[idx[k]].count == st[idx[0]].count);
        sf_json_obj_begin(j);
        sf_json_key(j, "check");
        sf_json_str(j, rows ? "rows" : "count");
        sf_json_key(j, "scope");
        sf_json_str(j, "agents");
        sf_json_key(j, "stage");
        sf_json_str(j, ag[i].stage);
        if (!rows) {
            sf_json_key(j, "column");
            sf_json_str(j, ag[i].column);
        }
        sf_json_key(j, "where");
        sf_json_str(j, ag[i].where); /* null when none */
        sf_json_key(j, "agents");
        write_names(c, idx, m, j);
        sf_json_key(j, "values");
        sf_json_arr_begin(j);
        for (int k = 0; k < m; k++) sf_json_num(j, rows ? st[idx[k]].rows : st[idx[k]].count);
        sf_json_arr_end(j);
        sf_json_key(j, "ok");
        sf_json_bool(j, ok);
        sf_json_obj_end(j);
        if (!ok) (*failed)++;
    }
    free(done);
}

/* ---- group sums ---------------------------------------------------------------------------------- */

/* The canonical key bytes (see agent.h) of a printed group key of agent a,
 * checked by printing them again: false when the text does not map back. */
static sf_status key_bytes(const sf_synth_agent *a, const char *text, size_t len, sf_buf *out, sf_buf *tmp,
                           bool *ok)
{
    *ok = false;
    const sf_agent_config *cfg = a->cfg;
    if (cfg == NULL || cfg->schema == NULL || cfg->by_col == NULL || cfg->nby != a->nby || a->nby <= 0 ||
        a->nby > 255)
        return SF_OK;
    size_t off[255], plen[255];
    if (!sf__synth_key_split(text, len, a->nby, off, plen)) return SF_OK;
    sf_buf_clear(out);
    for (int i = 0; i < a->nby; i++) {
        int col = cfg->by_col[i];
        if (col < 0 || col >= cfg->schema->ncols) return SF_OK;
        sf_type t = cfg->schema->fields[col].type;
        bool null;
        sf_buf_clear(tmp);
        SF_CALL(sf__synth_key_part(text + off[i], plen[i], tmp, &null));
        if (null) {
            SF_CALL(sf_buf_put_u8(out, 0));
            continue;
        }
        SF_CALL(sf_buf_put_u8(out, 1));
        if (t == SF_STRING) {
            SF_CALL(sf_buf_put_str(out, tmp->len ? (const char *)tmp->data : "", tmp->len));
            continue;
        }
        char part[96];
        if (tmp->len == 0 || tmp->len >= sizeof part) return SF_OK;
        memcpy(part, tmp->data, tmp->len);
        part[tmp->len] = '\0';
        char *end = NULL;
        errno = 0;
        if (t == SF_INT64) {
            long long v = strtoll(part, &end, 10);
            if (*end != '\0' || errno != 0) return SF_OK;
            SF_CALL(sf_buf_put_i64(out, (int64_t)v));
        } else if (t == SF_FLOAT64) {
            double v = strtod(part, &end);
            if (*end != '\0') return SF_OK;
            if (isnan(v)) v = NAN; /* one key for every NaN, as sf_agent_row_key */
            if (v == 0.0) v = 0.0;
            SF_CALL(sf_buf_put_f64(out, v));
        } else if (t == SF_TIMESTAMP) {
            int64_t us;
            if (!sf_timestamp_parse(part, tmp->len, &us)) return SF_OK;
            SF_CALL(sf_buf_put_i64(out, us));
        } else {
            return SF_OK;
        }
    }
    /* The bytes must print as the text they came from. */
    sf_buf_clear(tmp);
    if (!sf_agent_key_valid(cfg->schema, cfg->by_col, cfg->nby, out->data, out->len)) return SF_OK;
    SF_CALL(sf_agent_key_text(cfg->schema, cfg->by_col, cfg->nby, out->data, out->len, tmp));
    *ok = tmp->len == len && (len == 0 || memcmp(tmp->data, text, len) == 0);
    return SF_OK;
}

static sf_status group_sums(sf__synth_ctx *c, int i, const agent_stats *st, sf_json *j, size_t *failed)
{
    const sf_synth_agent *a = &c->in->agents[i];
    if (a->nby == 0 || a->json == NULL || a->state == NULL || a->ops == NULL || a->ops->stat == NULL) return SF_OK;
    if (!st->has_count && !st->has_rows) return SF_OK;
    const sf_jv *root, *groups, *single;
    SF_CALL(sf__synth_result(c, i, &root));
    /* A grouped agent may report totals only (vote): nothing to add up. */
    if (sf_jv_type_of(sf_jv_get(root, "groups")) != SF_JV_OBJ) return SF_OK;
    SF_CALL(sf__synth_groups(c, i, root, &groups, &single));
    sf_status rc = SF_OK;
    sf_buf key, tmp;
    sf_buf_init(&key);
    sf_buf_init(&tmp);
    for (int which = 0; which < 2; which++) {
        const char *name = which == 0 ? "count" : "rows";
        if (which == 0 ? !st->has_count : !st->has_rows) continue;
        double whole = which == 0 ? st->count : st->rows, sum = 0;
        size_t answered = 0, unmapped = 0, unknown = 0, ng = sf_jv_len(groups);
        char error[256] = "";
        for (size_t g = 0; g < ng; g++) {
            size_t klen;
            const char *k = sf_jv_key_at(groups, g, &klen);
            bool mapped, ok;
            double v;
            SF_CALL_GOTO(key_bytes(a, k, klen, &key, &tmp, &mapped), done);
            if (!mapped) {
                if (unmapped++ == 0)
                    (void)snprintf(error, sizeof error, "group key \"%.*s\" does not map back to key bytes",
                                   (int)(klen > 80 ? 80 : klen), k);
                continue;
            }
            SF_CALL_GOTO(stat_of(a, key.data, key.len, name, &ok, &v), done);
            if (!ok) {
                if (unknown++ == 0 && unmapped == 0)
                    (void)snprintf(error, sizeof error, "the state does not know group \"%.*s\"",
                                   (int)(klen > 80 ? 80 : klen), k);
                continue;
            }
            answered++;
            sum += v;
        }
        /* An agent that answers for no group does not have per-group
         * statistics: nothing to check. */
        if (answered == 0 && unknown > 0 && unmapped == 0) continue;
        bool ok = error[0] == '\0' && sum == whole;
        int idx[1] = {i};
        sf_json_obj_begin(j);
        sf_json_key(j, "check");
        sf_json_str(j, name);
        sf_json_key(j, "scope");
        sf_json_str(j, "groups");
        sf_json_key(j, "agents");
        write_names(c, idx, 1, j);
        sf_json_key(j, "groups");
        sf_json_uint(j, ng);
        sf_json_key(j, "values");
        sf_json_arr_begin(j);
        sf_json_num(j, sum);
        sf_json_num(j, whole);
        sf_json_arr_end(j);
        sf_json_key(j, "ok");
        sf_json_bool(j, ok);
        if (error[0] != '\0') {
            sf_json_key(j, "error");
            sf_json_str(j, error);
        }
        sf_json_obj_end(j);
        if (!ok) (*failed)++;
    }
done:
    sf_buf_fini(&key);
    sf_buf_fini(&tmp);
    return rc;
}

/* ---- the member ------------------------------------------------------------------------------- */

static void ratio(sf_json *j, uint64_t done, uint64_t total)
{
    if (total == 0) sf_json_null(j);
    else sf_json_num(j, (double)done / (double)total);
}

sf_status sf__synth_quality_write(sf__synth_ctx *c, sf_json *j)
{
    const int n = c->in->nagents;
    const sf_synth_coverage *cov = &c->in->coverage;
    sf_status rc = SF_OK;
    agent_stats *st = calloc((size_t)n + 1, sizeof *st);
    int *idx = calloc((size_t)n + 1, sizeof *idx);
    SF_CHECK_GOTO(st != NULL && idx != NULL, SF_ERR_NOMEM, done, "synthesis: out of memory");
    for (int i = 0; i < n; i++) {
        const sf_synth_agent *a = &c->in->agents[i];
        SF_CALL_GOTO(stat_of(a, NULL, 0, "count", &st[i].has_count, &st[i].count), done);
        SF_CALL_GOTO(stat_of(a, NULL, 0, "rows", &st[i].has_rows, &st[i].rows), done);
    }

    sf_json_key(j, "quality");
    sf_json_obj_begin(j);
    sf_json_key(j, "coverage");
    sf_json_obj_begin(j);
    sf_json_key(j, "shards");
    ratio(j, cov->shards_done, cov->shards_total);
    sf_json_key(j, "rows");
    ratio(j, cov->rows_done, cov->rows_total);
    sf_json_key(j, "share");
    sf_json_num(j, c->coverage);
    sf_json_key(j, "shards_done");
    sf_json_uint(j, cov->shards_done);
    sf_json_key(j, "shards_total");
    sf_json_uint(j, cov->shards_total);
    sf_json_key(j, "rows_done");
    sf_json_uint(j, cov->rows_done);
    sf_json_key(j, "rows_total");
    sf_json_uint(j, cov->rows_total);
    sf_json_obj_end(j);

    sf_json_key(j, "agents");
    sf_json_obj_begin(j);
    for (int i = 0; i < n; i++) {
        char name[256];
        sf__synth_agent_name(c, i, name, sizeof name);
        sf_json_key(j, name);
        sf_json_obj_begin(j);
        sf_json_key(j, "coverage");
        sf_json_num(j, c->coverage);
        bool has = st[i].has_count || st[i].has_rows;
        double m = st[i].has_count ? st[i].count : st[i].rows;
        sf_json_key(j, "sample");
        if (has) sf_json_num(j, m);
        else sf_json_null(j);
        sf_json_key(j, "confidence");
        if (has && m >= 0) sf_json_num(j, c->coverage * (1.0 - 1.0 / sqrt(1.0 + m)));
        else sf_json_null(j);
        /* Agreement over the consensus pairs of the agent's findings (1
         * when no other aspect reports about their subjects). */
        size_t nf = 0, agree = 0, pairs = 0;
        for (size_t k = 0; k < c->nfindings; k++) {
            if (c->findings[k].rule->agent != i) continue;
            nf++;
            agree += c->findings[k].nagree;
            pairs += c->findings[k].nagree + c->findings[k].nconflict;
        }
        sf_json_key(j, "findings");
        sf_json_uint(j, nf);
        sf_json_key(j, "agreement");
        sf_json_num(j, pairs ? (double)agree / (double)pairs : 1.0);
        sf_json_obj_end(j);
    }
    sf_json_obj_end(j);

    size_t failed = 0;
    sf_json_key(j, "checks");
    sf_json_arr_begin(j);
    across_agents(c, st, false, idx, j, &failed);
    across_agents(c, st, true, idx, j, &failed);
    for (int i = 0; i < n; i++) SF_CALL_GOTO(group_sums(c, i, &st[i], j, &failed), done);
    sf_json_arr_end(j);
    sf_json_key(j, "checks_failed");
    sf_json_uint(j, failed);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(st);
    free(idx);
    return rc;
}
