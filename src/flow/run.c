/* The run: load the workflow, read the schema, plan the shards, run each
 * level of stages as one pass over the data, reduce, and write the outputs.
 *
 * Every phase ends in sf_comm_agree, so a failure on any rank stops every
 * rank at the same point with the same status and one message. Stages of the
 * same dependency level share one pass over the input. */
#define _POSIX_C_SOURCE 200809L
#include "shardflow/run.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "core/fs.h"
#include "shardflow/agent.h"
#include "shardflow/checkpoint.h"
#include "shardflow/comm.h"
#include "shardflow/fault.h"
#include "shardflow/config.h"
#include "shardflow/dist.h"
#include "shardflow/exec.h"
#include "shardflow/io.h"
#include "shardflow/json.h"
#include "shardflow/plugin.h"
#include "shardflow/shard.h"
#include "shardflow/synth.h"

#ifndef SF_VERSION
#define SF_VERSION "0.0.0"
#endif

#define MAX_EXTRA_COLS 32

/* A resolved agent instance. */
typedef struct agent_inst {
    const sf_agent_ops *ops;
    sf_agent_config cfg;
    const sf_agent_spec *sp;
    int col_in;          /* column index in the input schema, -1 */
    int *by_in;          /* by columns in the input schema */
    int *by_pass;        /* by columns in the pass schema */
    int stage;
    int level, index;    /* its pass and its index among the pass's agents */
    int group;           /* aspect group within the pass */
    sf_filter *where;    /* bound to the pass schema */
    int nextra;
    int extra_in[MAX_EXTRA_COLS]; /* other columns it reads (input indices) */
    sf_agent_prior *priors;       /* cfg.baseline */
    int *prior_of;       /* agent index (into run.agents) of each prior */
    void *final;         /* decoded reduced state, where needed */
    bool needed_later;   /* an agent of a later pass uses it as a baseline */
} agent_inst;

typedef struct level_pass {
    int level;
    int nagents;
    agent_inst *agents;   /* borrowed from run.agents */
    int ncols;
    int *cols;            /* pass columns (input indices, ascending) */
    sf_schema schema;
    sf_exec *x;
    sf_exec_agent *xa;
    sf_buf result;        /* reduced encoded states (rank 0) */
    double seconds, reduce_seconds;
    sf_dist_stats st;
    sf_comm_reduce_stats red; /* this rank's messages of the reduction */
    uint64_t rows_processed;  /* all ranks (after the pass) */
    /* Totals over all ranks after the pass (rank 0 after a restore): per
     * shard rows included, rows excluded, retries, pieces excluded (4 x k),
     * then rows per agent (nagents). */
    uint64_t *tot;
} level_pass;

typedef struct run {
    sf_workflow *w;
    sf_schema schema;
    sf_reader *reader;        /* rank 0; every rank in parallel-read mode */
    sf_shard_plan *plan;      /* rank 0; every rank in parallel-read mode */
    bool pread;               /* distribute.mode: parallel-read */
    uint64_t bad_rows;        /* bad rows skipped in the last pass, all ranks */
    int nagents;
    agent_inst *agents;
    int nlevels;
    level_pass *levels;
    int threads;
    double t_load, t_schema, t_plan, t_write;
    size_t batch_rows;        /* rank 0: rows per round after clamping */
    sf_json plan_json;        /* rank 0: plan description */
    sf_buf rank_stats;        /* rank 0: gathered per-rank figures (JSON fragments) */
    /* Checkpoints. */
    bool ck_on;
    char ckdir[4200];
    char input_id[256];
    uint64_t ck_seq;          /* last sequence written or loaded */
    int ck_written;
    int ck_failed;            /* writes that failed (warned, the run went on) */
    double ck_seconds;        /* writing them, rank 0 */
    uint64_t ck_bytes;        /* size of the last one */
    sf_ckpt ck;               /* rank 0: the loaded checkpoint */
    bool resumed;
    int resume_level;         /* passes before it are restored */
    uint64_t resume_rows;     /* rows of pass resume_level already done */
    char ck_notes[2048];
    int stop_signal;          /* the signal that stopped the run, 0 */
    /* The stage result cache (rank 0). */
    bool cache_on;
    char cache_root[4200];
    uint64_t code_id;         /* xxh64 of the executable and the plugins */
    int cache_hits;           /* passes reused */
    int cache_written;
    int cache_failed;
} run;


static sf_status encode_schema(const sf_schema *s, sf_buf *out)
{
    SF_CALL(sf_buf_put_u32(out, (uint32_t)s->ncols));
    for (int i = 0; i < s->ncols; i++) {
        SF_CALL(sf_buf_put_u8(out, (uint8_t)s->fields[i].type));
        SF_CALL(sf_buf_put_str(out, s->fields[i].name, strlen(s->fields[i].name)));
    }
    return SF_OK;
}

static sf_status decode_schema(const sf_buf *in, sf_schema *s)
{
    sf_rd rd;
    sf_rd_init(&rd, in->data, in->len);
    uint32_t n;
    SF_CALL(sf_rd_u32(&rd, &n));
    for (uint32_t i = 0; i < n; i++) {
        uint8_t t;
        const char *name;
        size_t len;
        SF_CALL(sf_rd_u8(&rd, &t));
        SF_CALL(sf_rd_str(&rd, &name, &len));
        char tmp[1024];
        SF_CHECK(len < sizeof tmp, SF_ERR_INTERNAL, "column name too long");
        memcpy(tmp, name, len);
        tmp[len] = '\0';
        SF_CALL(sf_schema_add(s, tmp, (sf_type)t));
    }
    return SF_OK;
}


static sf_status resolve_column(const run *R, const char *name, int si, int ai, const char *key,
                                int line, int *out)
{
    *out = sf_schema_find(&R->schema, name);
    if (*out >= 0) return SF_OK;
    char cols[1024];
    sf_schema_format_columns(&R->schema, cols, sizeof cols);
    return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                        "%s:%d: stages[%d].agents[%d].%s: no column '%s' in the input (columns: %s)",
                        R->w->file, line, si, ai, key, name, cols);
}

static sf_status resolve_agents(run *R)
{
    const sf_workflow *w = R->w;
    int n = 0;
    for (int s = 0; s < w->nstages; s++) n += w->stages[s].nagents;
    R->agents = calloc((size_t)(n ? n : 1), sizeof *R->agents);
    SF_CHECK(R->agents != NULL, SF_ERR_NOMEM, "out of memory (agents)");
    R->nagents = n;
    int k = 0;
    for (int s = 0; s < w->nstages; s++) {
        const sf_stage_config *st = &w->stages[s];
        for (int a = 0; a < st->nagents; a++, k++) {
            const sf_agent_spec *sp = &st->agents[a];
            agent_inst *ai = &R->agents[k];
            ai->stage = s;
            ai->ops = sf_agent_find(sp->agent);
            SF_CHECK(ai->ops != NULL, SF_ERR_CONFIG, "%s:%d: stages[%d].agents[%d].agent: unknown agent '%s'",
                     w->file, sp->line, s, a, sp->agent);
            ai->col_in = -1;
            if (sp->column) SF_CALL(resolve_column(R, sp->column, s, a, "column", sp->line, &ai->col_in));
            ai->by_in = calloc((size_t)(sp->nby + 1), sizeof(int));
            ai->by_pass = calloc((size_t)(sp->nby + 1), sizeof(int));
            SF_CHECK(ai->by_in && ai->by_pass, SF_ERR_NOMEM, "out of memory (agents)");
            for (int b = 0; b < sp->nby; b++) SF_CALL(resolve_column(R, sp->by[b], s, a, "by", sp->line, &ai->by_in[b]));
            sf_agent_config *c = &ai->cfg;
            ai->sp = sp;
            c->agent = sp->agent;
            c->id = sp->id ? sp->id : sp->agent;
            c->column = sp->column;
            c->nby = sp->nby;
            c->by = (const char *const *)sp->by;
            c->by_col = ai->by_pass;
            c->node = sp->node;
            c->file = w->file;
            c->line = sp->line;
            c->stage = st->name;
            c->aspect = sp->aspect >= 0 ? st->aspects[sp->aspect].name : ai->ops->aspect;
            static const char *const strategies[] = {"", "size", "hash", "range", "semantic"};
            c->shard_strategy = strategies[w->shard.strategy];
            c->shard_key = w->shard.key;
            c->where = sp->where;
            c->seed = w->seed;
            c->col = -1;
            c->schema = &R->schema;
            if (sp->where) {
                char key[160];
                (void)snprintf(key, sizeof key, "agent '%s': where", c->id);
                SF_CALL(sf_filter_parse(sp->where, w->file, sp->line, key, &ai->where));
                for (int fc = 0; fc < sf_filter_ncolumns(ai->where); fc++) {
                    SF_CHECK(ai->nextra < MAX_EXTRA_COLS, SF_ERR_CONFIG,
                             "%s:%d: agent '%s': where: reads more than %d columns", w->file, sp->line, c->id,
                             MAX_EXTRA_COLS);
                    SF_CALL(resolve_column(R, sf_filter_column(ai->where, fc), s, a, "where", sp->line,
                                           &ai->extra_in[ai->nextra++]));
                }
            }
            if (ai->ops->columns) {
                const char *names[MAX_EXTRA_COLS];
                int nn = 0;
                SF_CALL(ai->ops->columns(c, names, MAX_EXTRA_COLS - ai->nextra, &nn));
                SF_CHECK(nn >= 0 && nn <= MAX_EXTRA_COLS - ai->nextra, SF_ERR_CONFIG,
                         "%s:%d: agent '%s': reads %d more columns; an agent reads at most %d besides column: and by:",
                         w->file, sp->line, c->id, nn, MAX_EXTRA_COLS);
                for (int e = 0; e < nn; e++) {
                    int col = sf_schema_find(&R->schema, names[e]);
                    if (col < 0) {
                        char cols[1024];
                        sf_schema_format_columns(&R->schema, cols, sizeof cols);
                        return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                                            "%s:%d: agent '%s': no column '%s' in the input (columns: %s)",
                                            w->file, sp->line, c->id, names[e], cols);
                    }
                    ai->extra_in[ai->nextra++] = col;
                }
            }
        }
    }
    return SF_OK;
}

/* Whether stage a is stage b or one of its ancestors (through after:). */
static bool is_ancestor(const sf_workflow *w, int a, int b)
{
    if (a == b) return true;
    const sf_stage_config *st = &w->stages[b];
    for (int k = 0; k < st->nafter; k++)
        if (is_ancestor(w, a, st->after_idx[k])) return true;
    return false;
}

/* Resolves the baseline: references of every agent to agents of earlier
 * stages (ancestors of its stage, so of an earlier pass). */
static sf_status resolve_priors(run *R)
{
    const sf_workflow *w = R->w;
    for (int i = 0; i < R->nagents; i++) {
        agent_inst *ai = &R->agents[i];
        const sf_agent_spec *sp = ai->sp;
        if (sp->nbaseline == 0) continue;
        ai->priors = calloc((size_t)sp->nbaseline, sizeof *ai->priors);
        ai->prior_of = calloc((size_t)sp->nbaseline, sizeof *ai->prior_of);
        SF_CHECK(ai->priors && ai->prior_of, SF_ERR_NOMEM, "out of memory (baselines)");
        for (int k = 0; k < sp->nbaseline; k++) {
            const char *ref = sp->baseline[k];
            const char *dot = strchr(ref, '.');
            size_t slen = (size_t)(dot - ref);
            /* Compare "STAGE.ID" whole, so that dots in stage names or ids are fine. */
            int found = -1;
            size_t rlen = strlen(ref);
            for (int j = 0; j < R->nagents && found < 0; j++) {
                const agent_inst *bj = &R->agents[j];
                const char *sname = w->stages[bj->stage].name;
                size_t nl = strlen(sname);
                if (nl + 1 + strlen(bj->cfg.id) == rlen && strncmp(sname, ref, nl) == 0 && ref[nl] == '.' &&
                    strcmp(bj->cfg.id, ref + nl + 1) == 0)
                    found = j;
            }
            SF_CHECK(found >= 0, SF_ERR_CONFIG, "%s:%d: agent '%s': baseline '%s': no agent '%s' in a stage '%.*s'",
                     w->file, sp->line, ai->cfg.id, ref, dot + 1, (int)slen, ref);
            agent_inst *b = &R->agents[found];
            SF_CHECK(b->stage != ai->stage && is_ancestor(w, b->stage, ai->stage), SF_ERR_CONFIG,
                     "%s:%d: agent '%s': baseline '%s' must be an agent of an earlier stage this stage depends on "
                     "(add '%s' to stage '%s''s after:)",
                     w->file, sp->line, ai->cfg.id, ref, w->stages[b->stage].name, w->stages[ai->stage].name);
            ai->priors[k].ref = ref;
            ai->priors[k].ops = b->ops;
            ai->priors[k].cfg = &b->cfg;
            ai->priors[k].state = NULL;
            ai->prior_of[k] = found;
            b->needed_later = true;
        }
        ai->cfg.nbaseline = sp->nbaseline;
        ai->cfg.baseline = ai->priors;
    }
    return SF_OK;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* Groups agents by their stage's level; each level becomes one pass. */
static sf_status build_levels(run *R)
{
    const sf_workflow *w = R->w;
    int maxl = 0;
    for (int s = 0; s < w->nstages; s++)
        if (w->level[s] > maxl) maxl = w->level[s];
    R->levels = calloc((size_t)maxl + 1, sizeof *R->levels);
    SF_CHECK(R->levels != NULL, SF_ERR_NOMEM, "out of memory (levels)");
    R->nlevels = maxl + 1;
    /* Agents of one level must be contiguous and in stage order: the
     * agents array is in stage declaration order, so sort a copy by level. */
    agent_inst *sorted = calloc((size_t)(R->nagents ? R->nagents : 1), sizeof *sorted);
    SF_CHECK(sorted != NULL, SF_ERR_NOMEM, "out of memory (levels)");
    int k = 0;
    for (int l = 0; l <= maxl; l++) {
        level_pass *L = &R->levels[l];
        L->level = l;
        L->agents = sorted + k;
        for (int i = 0; i < R->nagents; i++)
            if (w->level[R->agents[i].stage] == l) sorted[k++] = R->agents[i];
        L->nagents = (int)(sorted + k - L->agents);
    }
    free(R->agents);
    R->agents = sorted;
    for (int l = 0; l <= maxl; l++) {
        level_pass *L = &R->levels[l];
        int ncols = R->schema.ncols;
        uint8_t *need = calloc((size_t)(ncols ? ncols : 1), 1);
        SF_CHECK(need != NULL, SF_ERR_NOMEM, "out of memory (levels)");
        for (int a = 0; a < L->nagents; a++) {
            if (L->agents[a].col_in >= 0) need[L->agents[a].col_in] = 1;
            for (int b = 0; b < L->agents[a].cfg.nby; b++) need[L->agents[a].by_in[b]] = 1;
            for (int b = 0; b < L->agents[a].nextra; b++) need[L->agents[a].extra_in[b]] = 1;
        }
        L->cols = calloc((size_t)(ncols ? ncols : 1), sizeof(int));
        SF_CHECK(L->cols != NULL, SF_ERR_NOMEM, "out of memory (levels)");
        sf_schema_init(&L->schema);
        for (int c = 0; c < ncols; c++)
            if (need[c]) {
                L->cols[L->ncols++] = c;
                SF_CALL(sf_schema_add(&L->schema, R->schema.fields[c].name, R->schema.fields[c].type));
            }
        free(need);
        L->xa = calloc((size_t)(L->nagents ? L->nagents : 1), sizeof *L->xa);
        SF_CHECK(L->xa != NULL, SF_ERR_NOMEM, "out of memory (levels)");
        int group = -1, gstage = -1, gaspect = -2;
        for (int a = 0; a < L->nagents; a++) {
            agent_inst *ai = &L->agents[a];
            ai->level = l;
            ai->index = a;
            /* One group per (stage, aspect); a stage's plain agents form one. */
            if (ai->stage != gstage || ai->sp->aspect != gaspect) {
                group++;
                gstage = ai->stage;
                gaspect = ai->sp->aspect;
            }
            ai->group = group;
            int *pos;
            ai->cfg.schema = &L->schema;
            ai->cfg.col = -1;
            if (ai->col_in >= 0) {
                pos = bsearch(&ai->col_in, L->cols, (size_t)L->ncols, sizeof(int), cmp_int);
                ai->cfg.col = (int)(pos - L->cols);
            }
            for (int b = 0; b < ai->cfg.nby; b++) {
                pos = bsearch(&ai->by_in[b], L->cols, (size_t)L->ncols, sizeof(int), cmp_int);
                ai->by_pass[b] = (int)(pos - L->cols);
            }
            ai->cfg.by_col = ai->by_pass;
            if (ai->where) SF_CALL(sf_filter_bind(ai->where, &L->schema));
            L->xa[a].ops = ai->ops;
            L->xa[a].cfg = &ai->cfg;
            L->xa[a].where = ai->where;
            L->xa[a].group = ai->group;
            /* Agents of one group with the same where: text share the
             * first one's filter: the executor evaluates a filter once per
             * morsel for consecutive agents that have the same one (the
             * security aspect's three agents on status == 401). */
            for (int p = 0; ai->where != NULL && p < a; p++) {
                const agent_inst *ap = &L->agents[p];
                if (ap->where != NULL && ap->group == ai->group && strcmp(ap->sp->where, ai->sp->where) == 0) {
                    L->xa[a].where = L->xa[p].where;
                    break;
                }
            }
        }
        sf_buf_init(&L->result);
    }
    SF_CALL(resolve_priors(R));
    for (int i = 0; i < R->nagents; i++)
        if (R->agents[i].ops->check) SF_CALL(R->agents[i].ops->check(&R->agents[i].cfg));
    return SF_OK;
}

/* The synthesis view of every agent, in stage then declaration order. */
static sf_status synth_input(const run *R, sf_synth_agent **out, sf_synth_input *in)
{
    const sf_workflow *w = R->w;
    sf_synth_agent *sa = calloc((size_t)(R->nagents ? R->nagents : 1), sizeof *sa);
    SF_CHECK(sa != NULL, SF_ERR_NOMEM, "out of memory (synthesis)");
    int k = 0;
    for (int s = 0; s < w->nstages; s++)
        for (int d = 0; d < w->stages[s].nagents; d++)
            for (int i = 0; i < R->nagents; i++) {
                const agent_inst *ai = &R->agents[i];
                if (ai->stage != s || ai->sp != &w->stages[s].agents[d]) continue;
                sf_synth_agent *x = &sa[k++];
                x->stage = w->stages[s].name;
                x->aspect = ai->sp->aspect >= 0 ? w->stages[s].aspects[ai->sp->aspect].name : NULL;
                x->id = ai->cfg.id;
                x->agent = ai->cfg.agent;
                x->column = ai->cfg.column;
                x->where = ai->cfg.where;
                x->nby = ai->cfg.nby;
                x->by = ai->cfg.by;
                x->line = ai->cfg.line;
                x->ops = ai->ops;
                x->cfg = &ai->cfg;
                x->state = ai->final;
            }
    memset(in, 0, sizeof *in);
    in->w = w;
    in->nagents = k;
    in->agents = sa;
    *out = sa;
    return SF_OK;
}

/* A round (one batch) must fit in a quarter of distribute.memory_budget
 * once packed, so that the budget really bounds what rank 0 holds in flight:
 * estimate the packed bytes of a row and lower input.batch_rows if needed.
 * Returns the most rows a round may hold. */
static uint64_t clamp_batch_rows(run *R)
{
    uint8_t seen[4096] = {0};
    uint64_t width = 16;
    for (int l = 0; l < R->nlevels; l++)
        for (int c = 0; c < R->levels[l].ncols; c++) {
            int col = R->levels[l].cols[c];
            if (col < (int)sizeof seen && seen[col]) continue;
            if (col < (int)sizeof seen) seen[col] = 1;
            width += R->schema.fields[col].type == SF_STRING ? 4 + 24 : 8;
            width += 1;
        }
    uint64_t cap = R->w->distribute.memory_budget / 4 / width;
    if (cap < 256) cap = 256;
    if (sf_reader_batch_rows(R->reader) > cap) sf_reader_set_batch_rows(R->reader, (size_t)cap);
    R->batch_rows = sf_reader_batch_rows(R->reader);
    return cap;
}

static sf_status merge_cb(sf_buf *into, const uint8_t *from, size_t n, void *ctx)
{
    return sf_exec_merge_encoded((sf_exec *)ctx, into, from, n);
}

static sf_status open_input(run *R, sf_buf *schema_bytes)
{
    SF_CALL(sf_reader_open(&R->w->input, &R->reader));
    const sf_schema *s = sf_reader_schema(R->reader);
    SF_CALL(encode_schema(s, schema_bytes));
    SF_CALL(sf_shard_plan_create(&R->w->shard, s, R->w->file, &R->plan));
    return SF_OK;
}

static sf_status plan_shards(run *R)
{
    sf_reader *rd = R->reader;
    if (sf_shard_plan_needs_prepass(R->plan)) {
        int ncols = sf_reader_schema(rd)->ncols;
        uint8_t *want = calloc((size_t)(ncols ? ncols : 1), 1);
        SF_CHECK(want != NULL, SF_ERR_NOMEM, "out of memory (projection)");
        want[sf_shard_plan_key_column(R->plan)] = 1;
        /* With on_bad_row: skip, a row is skipped for a bad value in any
         * column that is read: read the same columns as the passes, so the
         * pre-pass sees exactly the rows they will see. */
        if (R->w->input.on_bad_row == SF_BAD_ROW_SKIP)
            for (int l = 0; l < R->nlevels; l++)
                for (int c = 0; c < R->levels[l].ncols; c++) want[R->levels[l].cols[c]] = 1;
        sf_status rc = sf_reader_set_projection(rd, want);
        free(want);
        SF_CALL(rc);
        sf_batch b;
        SF_CALL(sf_reader_batch_init(rd, &b));
        bool eof = false;
        while (rc == SF_OK) {
            rc = sf_reader_next(rd, &b, &eof);
            if (rc != SF_OK || eof) break;
            rc = sf_shard_plan_observe(R->plan, &b);
        }
        sf_batch_fini(&b);
        SF_CALL(rc);
        SF_CALL(sf_reader_rewind(rd));
    }
    return sf_shard_plan_finish(R->plan, sf_reader_total_rows(rd), sf_reader_data_start(rd),
                                sf_reader_data_bytes(rd));
}

/* Counting the quotes and line feeds of a rank's sub-parts, one thread
 * each (sf_reader_part_count changes nothing in the reader). */
typedef struct count_ctx {
    sf_reader *reader;
    const uint64_t *cuts;
    uint64_t (*counts)[2];
} count_ctx;

static sf_status count_sub(void *ctx, int t)
{
    count_ctx *c = ctx;
    return sf_reader_part_count(c->reader, c->cuts[t], c->cuts[t + 1], c->counts[t]);
}

/* parallel-read: every rank gets rank 0's plan and opens the input
 * itself, restricted to its part, which its threads read as one sub-part
 * each (src/dist/parallel_read.c). Collective. */
static sf_status share_plan_and_parts(run *R)
{
    int rank = sf_comm_rank(), P = sf_comm_size();
    sf_buf b;
    sf_buf_init(&b);
    sf_status rc = rank == 0 ? sf_shard_plan_encode(R->plan, &b) : SF_OK;
    rc = sf_comm_agree(rc);
    if (rc == SF_OK) rc = sf_comm_agree(sf_comm_bcast(&b, 0));
    if (rc == SF_OK) {
        rc = SF_OK;
        if (rank != 0) {
            rc = sf_reader_open(&R->w->input, &R->reader);
            if (rc == SF_OK) {
                /* Same file, same inference: a different schema means the
                 * file changed under the run. */
                sf_buf mine, theirs;
                sf_buf_init(&mine);
                sf_buf_init(&theirs);
                rc = encode_schema(sf_reader_schema(R->reader), &mine);
                if (rc == SF_OK) rc = encode_schema(&R->schema, &theirs);
                if (rc == SF_OK && (mine.len != theirs.len || memcmp(mine.data, theirs.data, mine.len) != 0))
                    rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__,
                                      "%s: rank %d read another header or column types than rank 0 (did the "
                                      "input change during the run?)",
                                      R->w->input.path ? R->w->input.path : "input", rank);
                sf_buf_fini(&mine);
                sf_buf_fini(&theirs);
            }
            if (rc == SF_OK) rc = sf_shard_plan_create(&R->w->shard, sf_reader_schema(R->reader), R->w->file, &R->plan);
            if (rc == SF_OK) rc = sf_shard_plan_decode(R->plan, b.data, b.len);
        }
        rc = sf_comm_agree(rc);
    }
    sf_buf_fini(&b);
    SF_CALL(rc);
    const uint64_t round_cap = clamp_batch_rows(R);
    /* The parts: nominal even splits; the record boundaries need the quotes
     * and line feeds before each (CSV), summed over the parts before. A
     * rank's part is cut again into one sub-part per thread in the same
     * way; the threads count their own sub-parts, whose counts give the
     * rank's. */
    const int T = R->threads > 1 ? R->threads : 1;
    uint64_t *cuts = calloc((size_t)T + 1, sizeof *cuts);
    uint64_t(*at)[2] = calloc((size_t)T + 1, sizeof *at);
    uint64_t(*counts)[2] = calloc((size_t)T, sizeof *counts);
    rc = cuts && at && counts ? SF_OK : sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (parts)");
    uint64_t mine[2] = {0, 0}, at_begin[2] = {0, 0};
    if (rc == SF_OK) {
        uint64_t begin = 0, end = 0;
        sf_reader_part_bounds(R->reader, rank, P, &begin, &end);
        for (int t = 0; t < T; t++) sf_reader_sub_bounds(begin, end, t, T, &cuts[t], &cuts[t + 1]);
        count_ctx cc = {R->reader, cuts, counts};
        rc = sf_exec_parallel(T, count_sub, &cc);
        for (int t = 0; t < T; t++) {
            mine[0] += counts[t][0];
            mine[1] += counts[t][1];
        }
    }
    rc = sf_comm_agree(rc);
    if (rc == SF_OK) rc = sf_comm_agree(sf_comm_exscan_sum_u64(mine, at_begin, 2));
    if (rc == SF_OK) {
        at[0][0] = at_begin[0];
        at[0][1] = at_begin[1];
        for (int t = 0; t < T; t++) {
            at[t + 1][0] = at[t][0] + counts[t][0];
            at[t + 1][1] = at[t][1] + counts[t][1];
        }
        rc = sf_reader_split(R->reader, T, cuts, at[0]);
        /* A round is now one batch of every sub-part: together they stay
         * within the rows a round may hold. */
        if (rc == SF_OK && T > 1 && (uint64_t)R->batch_rows * (uint64_t)T > round_cap) {
            uint64_t per = round_cap / (uint64_t)T;
            sf_reader_set_batch_rows(R->reader, (size_t)(per > 0 ? per : 1));
            R->batch_rows = sf_reader_batch_rows(R->reader);
        }
        rc = sf_comm_agree(rc);
    }
    free(cuts);
    free(at);
    free(counts);
    return rc;
}

static sf_status prepare_pass(run *R, level_pass *L)
{
    SF_CALL(sf_exec_create(L->xa, L->nagents, R->threads, R->w->distribute.morsel_rows, &L->x));
    sf_exec_set_schedule(L->x, R->w->distribute.aspects == SF_ASPECTS_SEQUENTIAL ? SF_EXEC_SEQUENTIAL
                                                                               : SF_EXEC_CONCURRENT);
    SF_CALL(sf_dist_stats_init(&L->st, R->w->shard.shards));
    if (sf_comm_rank() != 0 && !R->pread) return SF_OK;
    int ncols = R->schema.ncols;
    uint8_t *want = calloc((size_t)(ncols ? ncols : 1), 1);
    SF_CHECK(want != NULL, SF_ERR_NOMEM, "out of memory (projection)");
    /* Every pass loads the columns of all passes, so that a row skipped for a
     * bad value (on_bad_row: skip) is skipped by every stage alike. */
    for (int l = 0; l < R->nlevels; l++)
        for (int c = 0; c < R->levels[l].ncols; c++) want[R->levels[l].cols[c]] = 1;
    int key = sf_shard_plan_key_column(R->plan);
    if (key >= 0) want[key] = 1;
    sf_status rc = sf_reader_rewind(R->reader);
    if (rc == SF_OK) rc = sf_reader_set_projection(R->reader, want);
    free(want);
    return rc;
}

typedef struct gather_ctx {
    sf_json *j;
} gather_ctx;

static sf_status encode_rank_stats(const run *R, sf_buf *out)
{
    uint64_t units = 0, rows = 0;
    double tp = 0, tw = 0, trd = 0, trt = 0;
    for (int l = 0; l < R->nlevels; l++) {
        units += R->levels[l].st.units_done;
        rows += R->levels[l].st.rows_done;
        tp += R->levels[l].st.t_process;
        tw += R->levels[l].st.t_wait;
        trd += R->levels[l].st.t_read;
        trt += R->levels[l].st.t_route;
    }
    SF_CALL(sf_buf_put_u64(out, units));
    SF_CALL(sf_buf_put_u64(out, rows));
    SF_CALL(sf_buf_put_f64(out, tp));
    SF_CALL(sf_buf_put_f64(out, tw));
    SF_CALL(sf_buf_put_f64(out, trd));
    SF_CALL(sf_buf_put_f64(out, trt));
    struct rusage ru;
    uint64_t rss = 0;
    if (getrusage(RUSAGE_SELF, &ru) == 0) rss = (uint64_t)ru.ru_maxrss * 1024; /* Linux: KiB */
    SF_CALL(sf_buf_put_u64(out, rss));
    /* The sub-parts this rank read its input as (parallel-read: one per
     * thread), 0 where it read none. */
    uint64_t parts = R->pread && R->reader ? (uint64_t)sf_reader_split_count(R->reader) : 0;
    return sf_buf_put_u64(out, parts);
}

static sf_status gather_cb(int rank, const uint8_t *bytes, size_t n, void *ctx)
{
    gather_ctx *g = ctx;
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);
    uint64_t units, rows;
    double tp, tw;
    SF_CALL(sf_rd_u64(&rd, &units));
    SF_CALL(sf_rd_u64(&rd, &rows));
    SF_CALL(sf_rd_f64(&rd, &tp));
    SF_CALL(sf_rd_f64(&rd, &tw));
    double trd, trt;
    SF_CALL(sf_rd_f64(&rd, &trd));
    SF_CALL(sf_rd_f64(&rd, &trt));
    uint64_t rss, parts;
    SF_CALL(sf_rd_u64(&rd, &rss));
    SF_CALL(sf_rd_u64(&rd, &parts));
    sf_json_obj_begin(g->j);
    sf_json_key(g->j, "rank");
    sf_json_int(g->j, rank);
    sf_json_key(g->j, "units");
    sf_json_uint(g->j, units);
    sf_json_key(g->j, "rows");
    sf_json_uint(g->j, rows);
    sf_json_key(g->j, "process_seconds");
    sf_json_num(g->j, tp);
    sf_json_key(g->j, "wait_seconds");
    sf_json_num(g->j, tw);
    sf_json_key(g->j, "read_seconds");
    sf_json_num(g->j, trd);
    sf_json_key(g->j, "route_seconds");
    sf_json_num(g->j, trt);
    sf_json_key(g->j, "peak_rss_bytes");
    sf_json_uint(g->j, rss);
    if (parts > 0) {
        sf_json_key(g->j, "read_parts");
        sf_json_uint(g->j, parts);
    }
    sf_json_obj_end(g->j);
    return g->j->rc;
}

/* Decodes the reduced state of every agent of pass L not decoded yet (rank
 * 0, which holds L->result). */
static sf_status decode_finals(run *R, level_pass *L)
{
    (void)R;
    for (int a = 0; a < L->nagents; a++) {
        agent_inst *ai = &L->agents[a];
        if (ai->final != NULL) continue;
        SF_CALL(sf_exec_decode_agent(L->x, L->result.data, L->result.len, a, &ai->final));
    }
    return SF_OK;
}

/* Points every baseline at the decoded state of the agent it names. */
static void bind_priors(run *R)
{
    for (int i = 0; i < R->nagents; i++) {
        agent_inst *ai = &R->agents[i];
        for (int k = 0; k < ai->cfg.nbaseline; k++) ai->priors[k].state = R->agents[ai->prior_of[k]].final;
    }
}

/* Fails every rank alike when the rows included fall below
 * fault.min_coverage, with the first excluded piece's failure. Collective. */
static sf_status check_coverage(run *R)
{
    /* Every row read is either included or excluded: a row that is neither
     * would be a silent loss. */
    sf_status inv = SF_OK;
    for (int l = 0; l < R->nlevels && sf_comm_rank() == 0 && inv == SF_OK; l++) {
        const level_pass *L = &R->levels[l];
        uint64_t seen = 0;
        for (int s = 0; L->tot && s < L->st.k; s++) seen += L->tot[s] + L->tot[L->st.k + s];
        if (L->tot && seen != L->st.rows_read)
            inv = sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__,
                               "pass %d read %" PRIu64 " rows but accounted for %" PRIu64 " (included or excluded)",
                               l, L->st.rows_read, seen);
    }
    SF_CALL(sf_comm_agree(inv));
    uint64_t incl = 0, excl = 0, pieces = 0;
    const char *why = "";
    for (int l = 0; l < R->nlevels; l++) {
        const level_pass *L = &R->levels[l];
        int k = L->st.k;
        for (int s = 0; L->tot && s < k; s++) {
            incl += L->tot[s];
            excl += L->tot[k + s];
            pieces += L->tot[3 * k + s];
        }
    }
    double share = incl + excl > 0 ? (double)incl / (double)(incl + excl) : 1.0;
    if (share >= R->w->fault.min_coverage) return SF_OK;
    /* The first exclusion in input order (first pass, round, shard), on
     * whichever rank it happened: the same message for any layout. */
    bool found = false;
    for (int l = 0; l < R->nlevels && !found; l++) {
        const level_pass *L = &R->levels[l];
        double mine = L->st.fault_key == UINT64_MAX ? -1e300 : -(double)L->st.fault_key;
        double key = mine;
        SF_CALL(sf_comm_agree(sf_comm_allreduce_max_f64(&key, 1)));
        if (key > -1e300) {
            found = true;
            if (mine == key) why = L->st.fault;
        }
    }
    char msg[1024];
    snprintf(msg, sizeof msg,
             "only %" PRIu64 " of %" PRIu64 " rows (%.4g) were processed, below fault.min_coverage %g (%" PRIu64
             " shard pieces excluded after fault.max_attempts %d attempts%s)%s%s",
             incl, incl + excl, share, R->w->fault.min_coverage, pieces, R->w->fault.max_attempts,
             R->w->distribute.mode == SF_DIST_DYNAMIC && R->w->fault.redistribute && sf_comm_size() > 1
                 ? " on each of two ranks"
                 : "",
             why[0] ? "; first failure: " : "", why);
    /* The rank that saw the first failure gives the message. */
    sf_status rc = sf_comm_agree(why[0] ? sf_error_set(SF_ERR_COVERAGE, __FILE__, __LINE__, "%s", msg) : SF_OK);
    if (rc == SF_OK) rc = sf_error_set(SF_ERR_COVERAGE, __FILE__, __LINE__, "%s", msg);
    return rc;
}

static sf_status write_result(run *R, const char *dir)
{
    sf_json j;
    sf_json_init(&j, true);
    sf_synth_agent *sa = NULL;
    sf_synth_input in;
    sf_buf texts;
    sf_buf_init(&texts);
    size_t *toff = NULL, *tlen = NULL;
    sf_status rc = SF_OK;
    for (int l = 0; l < R->nlevels && rc == SF_OK; l++) rc = decode_finals(R, &R->levels[l]);
    SF_CALL_GOTO(rc, done);
    SF_CALL_GOTO(synth_input(R, &sa, &in), done);
    /* Each result rendered once, where result.json holds it (after its key
     * at depth 3: document, results, stage), and read by the synthesis. */
    toff = calloc((size_t)in.nagents + 1, sizeof *toff);
    tlen = calloc((size_t)in.nagents + 1, sizeof *tlen);
    SF_CHECK_GOTO(toff && tlen, SF_ERR_NOMEM, done, "out of memory (results)");
    for (int i = 0; i < in.nagents; i++) {
        sf_json one;
        sf_json_init_value_at(&one, true, 3);
        rc = sa[i].ops->report(sa[i].state, &one);
        if (rc == SF_OK) rc = one.rc;
        toff[i] = texts.len;
        if (rc == SF_OK) rc = sf_buf_append(&texts, one.out.data, one.out.len);
        tlen[i] = one.out.len;
        sf_json_fini(&one);
        SF_CALL_GOTO(rc, done);
    }
    for (int i = 0; i < in.nagents; i++) {
        sa[i].json = (const char *)texts.data + toff[i];
        sa[i].json_len = tlen[i];
    }
    for (int l = 0; l < R->nlevels; l++) {
        const level_pass *L = &R->levels[l];
        in.coverage.rows_done += L->rows_processed;
        in.coverage.rows_total += L->st.rows_read;
        in.coverage.shards_total += (uint64_t)L->st.k;
        /* A shard is done when none of its rows was left out. */
        for (int s = 0; s < L->st.k; s++) in.coverage.shards_done += L->tot == NULL || L->tot[L->st.k + s] == 0;
    }

    sf_json_obj_begin(&j);
    sf_json_key(&j, "workflow");
    sf_json_str(&j, R->w->name);
    /* Rows left out by the fault tolerance (quality.coverage says how many). */
    sf_json_key(&j, "partial");
    sf_json_bool(&j, in.coverage.rows_done < in.coverage.rows_total ||
                         in.coverage.shards_done < in.coverage.shards_total);
    sf_json_key(&j, "results");
    sf_json_obj_begin(&j);
    for (int s = 0, i = 0; s < R->w->nstages; s++) {
        sf_json_key(&j, R->w->stages[s].name);
        sf_json_obj_begin(&j);
        for (; i < in.nagents && strcmp(sa[i].stage, R->w->stages[s].name) == 0; i++) {
            sf_json_key(&j, sa[i].id);
            sf_json_raw(&j, sa[i].json, sa[i].json_len);
        }
        sf_json_obj_end(&j);
    }
    sf_json_obj_end(&j);
    SF_CALL_GOTO(sf_synth_write(&in, &j), done);
    sf_json_obj_end(&j);
    char path[4200];
    snprintf(path, sizeof path, "%s/result.json", dir);
    rc = j.rc;
    if (rc == SF_OK) rc = sf_json_write_file(&j, path);
done:
    free(sa);
    free(toff);
    free(tlen);
    sf_buf_fini(&texts);
    sf_json_fini(&j);
    return rc;
}

static void json_u64_array(sf_json *j, const uint64_t *v, int n)
{
    sf_json_arr_begin(j);
    for (int i = 0; i < n; i++) sf_json_uint(j, v[i]);
    sf_json_arr_end(j);
}

static sf_status write_runinfo(run *R, const char *dir, double t_total, const sf_buf *rank_json)
{
    const sf_workflow *w = R->w;
    sf_json j;
    sf_json_init(&j, true);
    sf_json_obj_begin(&j);
    sf_json_key(&j, "workflow");
    sf_json_str(&j, w->name);
    sf_json_key(&j, "file");
    sf_json_str(&j, w->file);
    sf_json_key(&j, "version");
    sf_json_str(&j, SF_VERSION);
    sf_json_key(&j, "config_hash");
    sf_json_str(&j, w->config_hash);
    sf_json_key(&j, "ranks");
    sf_json_int(&j, sf_comm_size());
    sf_json_key(&j, "ranks_per_node");
    sf_json_int(&j, sf_comm_local_size());
    sf_json_key(&j, "threads");
    sf_json_int(&j, R->threads);
    sf_json_key(&j, "thread_binding");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "proc_bind");
    sf_json_str(&j, sf_exec_proc_bind());
    sf_json_key(&j, "places");
    sf_json_int(&j, sf_exec_num_places());
    sf_json_obj_end(&j);
    sf_json_key(&j, "distribute");
    sf_json_str(&j, w->distribute.mode == SF_DIST_DYNAMIC         ? "dynamic"
                    : w->distribute.mode == SF_DIST_PARALLEL_READ ? "parallel-read"
                                                                  : "static");
    sf_json_key(&j, "optimizations");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "overlap");
    sf_json_bool(&j, w->distribute.overlap);
    sf_json_key(&j, "batch_pieces");
    sf_json_bool(&j, w->distribute.batch_pieces);
    sf_json_key(&j, "in_place");
    sf_json_bool(&j, w->distribute.in_place);
    sf_json_key(&j, "pools");
    sf_json_bool(&j, w->distribute.pools);
    sf_json_key(&j, "fadvise");
    sf_json_bool(&j, w->input.fadvise);
    sf_json_key(&j, "mmap");
    sf_json_bool(&j, w->input.format == SF_INPUT_HDF5 && w->input.mmap);
    sf_json_key(&j, "exchange");
    sf_json_bool(&j, R->pread && sf_comm_size() > 1 &&
                         (w->distribute.exchange == SF_EXCHANGE_ALWAYS ||
                          (w->distribute.exchange == SF_EXCHANGE_AUTO && w->shard.strategy != SF_SHARD_SIZE)));
    sf_json_obj_end(&j);
    sf_json_key(&j, "cache");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "enabled");
    sf_json_bool(&j, R->cache_on);
    if (R->cache_on) {
        sf_json_key(&j, "dir");
        sf_json_str(&j, R->cache_root);
        sf_json_key(&j, "passes_reused");
        sf_json_int(&j, R->cache_hits);
        sf_json_key(&j, "entries_written");
        sf_json_int(&j, R->cache_written);
        sf_json_key(&j, "entries_failed");
        sf_json_int(&j, R->cache_failed);
    }
    sf_json_obj_end(&j);
    sf_json_key(&j, "restart");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "resumed");
    sf_json_bool(&j, R->resumed && R->cache_hits == 0);
    sf_json_key(&j, "from_sequence");
    sf_json_uint(&j, R->resumed ? R->ck.sequence : 0);
    sf_json_key(&j, "passes_restored");
    sf_json_int(&j, R->resumed && R->cache_hits == 0 ? R->resume_level : 0);
    sf_json_key(&j, "rows_restored");
    sf_json_uint(&j, R->resumed ? R->resume_rows : 0);
    sf_json_key(&j, "notes");
    sf_json_str(&j, R->ck_notes);
    sf_json_obj_end(&j);
    sf_json_key(&j, "checkpoint");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "enabled");
    sf_json_bool(&j, R->ck_on);
    sf_json_key(&j, "dir");
    sf_json_str(&j, R->ckdir);
    sf_json_key(&j, "written");
    sf_json_int(&j, R->ck_written);
    sf_json_key(&j, "failed");
    sf_json_int(&j, R->ck_failed);
    sf_json_key(&j, "last_sequence");
    sf_json_uint(&j, R->ck_seq);
    sf_json_key(&j, "write_seconds");
    sf_json_num(&j, R->ck_seconds);
    sf_json_key(&j, "state_bytes");
    sf_json_uint(&j, R->ck_bytes);
    sf_json_obj_end(&j);
    sf_json_key(&j, "faults");
    sf_json_obj_begin(&j);
    {
        uint64_t retries = 0, pieces = 0, rows = 0;
        for (int l = 0; l < R->nlevels; l++) {
            const level_pass *L = &R->levels[l];
            for (int s = 0; L->tot && s < L->st.k; s++) {
                rows += L->tot[L->st.k + s];
                retries += L->tot[2 * L->st.k + s];
                pieces += L->tot[3 * L->st.k + s];
            }
        }
        sf_json_key(&j, "injected");
        sf_json_int(&j, w->fault.ninject);
        sf_json_key(&j, "retries");
        sf_json_uint(&j, retries);
        sf_json_key(&j, "pieces_excluded");
        sf_json_uint(&j, pieces);
        sf_json_key(&j, "rows_excluded");
        sf_json_uint(&j, rows);
        uint64_t moved = 0, spec = 0, won = 0;
        for (int l = 0; l < R->nlevels; l++) {
            moved += R->levels[l].st.moved;
            spec += R->levels[l].st.speculated;
            won += R->levels[l].st.speculation_won;
        }
        sf_json_key(&j, "pieces_moved");
        sf_json_uint(&j, moved);
        sf_json_key(&j, "speculated_units");
        sf_json_uint(&j, spec);
        sf_json_key(&j, "speculation_won");
        sf_json_uint(&j, won);
    }
    sf_json_obj_end(&j);
    sf_json_key(&j, "input");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "rows");
    sf_json_uint(&j, R->levels[0].st.rows_read);
    sf_json_key(&j, "batch_rows");
    sf_json_uint(&j, R->batch_rows);
    sf_json_key(&j, "bad_rows");
    sf_json_uint(&j, R->bad_rows);
    sf_json_key(&j, "bad_row_samples");
    sf_json_arr_begin(&j);
    const sf_bad_row *bad;
    size_t nbad = sf_reader_bad_row_samples(R->reader, &bad);
    for (size_t i = 0; i < nbad; i++) {
        sf_json_obj_begin(&j);
        sf_json_key(&j, "line");
        sf_json_uint(&j, bad[i].line);
        sf_json_key(&j, "message");
        sf_json_str(&j, bad[i].message);
        sf_json_obj_end(&j);
    }
    sf_json_arr_end(&j);
    sf_json_obj_end(&j);
    sf_json_key(&j, "plan");
    sf_json_raw(&j, (const char *)R->plan_json.out.data, R->plan_json.out.len);
    const sf_dist_stats *st = &R->levels[0].st;
    sf_json_key(&j, "shards");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "count");
    sf_json_int(&j, st->k);
    sf_json_key(&j, "rows");
    json_u64_array(&j, st->shard_rows, st->k);
    sf_json_key(&j, "bytes");
    json_u64_array(&j, st->shard_bytes, st->k);
    sf_json_key(&j, "imbalance_rows");
    sf_json_num(&j, sf_shard_imbalance(st->shard_rows, st->k));
    sf_json_key(&j, "imbalance_bytes");
    sf_json_num(&j, sf_shard_imbalance(st->shard_bytes, st->k));
    sf_json_obj_end(&j);
    sf_json_key(&j, "timings");
    sf_json_obj_begin(&j);
    sf_json_key(&j, "load_seconds");
    sf_json_num(&j, R->t_load);
    sf_json_key(&j, "schema_seconds");
    sf_json_num(&j, R->t_schema);
    sf_json_key(&j, "plan_seconds");
    sf_json_num(&j, R->t_plan);
    sf_json_key(&j, "write_result_seconds");
    sf_json_num(&j, R->t_write);
    sf_json_key(&j, "passes");
    sf_json_arr_begin(&j);
    for (int l = 0; l < R->nlevels; l++) {
        const level_pass *L = &R->levels[l];
        sf_json_obj_begin(&j);
        sf_json_key(&j, "stages");
        sf_json_arr_begin(&j);
        for (int s = 0; s < w->nstages; s++)
            if (w->level[s] == l) sf_json_str(&j, w->stages[s].name);
        sf_json_arr_end(&j);
        sf_json_key(&j, "seconds");
        sf_json_num(&j, L->seconds);
        sf_json_key(&j, "reduce_seconds");
        sf_json_num(&j, L->reduce_seconds);
        sf_json_key(&j, "read_seconds");
        sf_json_num(&j, L->st.t_read);
        sf_json_key(&j, "route_seconds");
        sf_json_num(&j, L->st.t_route);
        sf_json_key(&j, "rank0_process_seconds");
        sf_json_num(&j, L->st.t_process);
        sf_json_key(&j, "units_sent");
        sf_json_uint(&j, L->st.units_sent);
        sf_json_key(&j, "pieces_in_place");
        sf_json_uint(&j, L->st.pieces_in_place);
        sf_json_key(&j, "bytes_sent");
        sf_json_uint(&j, L->st.bytes_sent);
        sf_json_key(&j, "peak_inflight_bytes");
        sf_json_uint(&j, L->st.peak_inflight);
        sf_json_key(&j, "rows_processed");
        sf_json_uint(&j, L->rows_processed);
        sf_json_key(&j, "reduce");
        sf_json_obj_begin(&j);
        sf_json_key(&j, "mode");
        sf_json_str(&j, w->distribute.reduce == SF_REDUCE_FLAT ? "flat" : "hierarchical");
        sf_json_key(&j, "messages");
        sf_json_uint(&j, L->red.messages);
        sf_json_key(&j, "internode_messages");
        sf_json_uint(&j, L->red.internode_messages);
        sf_json_key(&j, "bytes");
        sf_json_uint(&j, L->red.bytes);
        sf_json_obj_end(&j);
        sf_json_key(&j, "aspects");
        sf_json_str(&j, w->distribute.aspects == SF_ASPECTS_SEQUENTIAL ? "sequential" : "concurrent");
        sf_json_key(&j, "agent_rows_rank0");
        sf_json_obj_begin(&j);
        for (int a = 0; a < L->nagents; a++) {
            char key[512];
            snprintf(key, sizeof key, "%s.%s", w->stages[L->agents[a].stage].name, L->agents[a].cfg.id);
            sf_json_key(&j, key);
            sf_json_uint(&j, sf_exec_agent_rows(L->x, a));
        }
        sf_json_obj_end(&j);
        sf_json_key(&j, "agent_seconds_rank0");
        sf_json_obj_begin(&j);
        for (int a = 0; a < L->nagents; a++) {
            char key[512];
            snprintf(key, sizeof key, "%s.%s", w->stages[L->agents[a].stage].name, L->agents[a].cfg.id);
            sf_json_key(&j, key);
            sf_json_num(&j, sf_exec_agent_seconds(L->x, a));
        }
        sf_json_obj_end(&j);
        sf_json_obj_end(&j);
    }
    sf_json_arr_end(&j);
    sf_json_key(&j, "total_seconds");
    sf_json_num(&j, t_total);
    sf_json_obj_end(&j);
    sf_json_key(&j, "per_rank");
    sf_json_raw(&j, (const char *)rank_json->data, rank_json->len);
    sf_json_key(&j, "config");
    sf_workflow_write_json(w, &j);
    sf_json_obj_end(&j);
    char path[4200];
    snprintf(path, sizeof path, "%s/run.json", dir);
    sf_status rc = sf_json_write_file(&j, path);
    sf_json_fini(&j);
    return rc;
}

/* ---- checkpoints ---------------------------------------------------- */

/* Entries of a pass's totals vector: 4 per shard, one per agent, then the
 * pieces done. */
static size_t tot_len(const level_pass *L) { return 4 * (size_t)L->st.k + (size_t)L->nagents + 1; }

/* Sums this rank's fault statistics of pass L over all ranks into a new
 * vector (every rank gets it). Collective. */
static sf_status pass_totals(level_pass *L, uint64_t **out)
{
    *out = NULL;
    int k = L->st.k;
    size_t n = tot_len(L);
    uint64_t *v = calloc(n, sizeof *v);
    sf_status rc = v ? SF_OK : sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (totals)");
    if (v) {
        for (int s = 0; s < k; s++) {
            v[s] = L->st.rows_included[s];
            v[k + s] = L->st.rows_excluded[s];
            v[2 * k + s] = L->st.retries[s];
            v[3 * k + s] = L->st.pieces_excluded[s];
        }
        for (int a = 0; a < L->nagents; a++) v[4 * (size_t)k + (size_t)a] = sf_exec_agent_rows(L->x, a);
        v[n - 1] = L->st.pieces_done;
    }
    rc = sf_comm_agree(rc);
    if (rc == SF_OK) rc = sf_comm_agree(sf_comm_allreduce_sum_u64(v, (int)n));
    if (rc != SF_OK) {
        free(v);
        return rc;
    }
    *out = v;
    return SF_OK;
}

/* Crash points inside the checkpoint write (fault injection). */
static void ckpt_point(const char *point, void *ctx)
{
    (void)ctx;
    sf_fault_point(point);
}

/* Rank 0: writes a checkpoint holding passes [0, level) complete and, when
 * cur != NULL, pass `level` in progress with the reduced states cur_bytes
 * and totals cur_tot, at boundary st. */
/* Writes the passes before `level` (and, with cur_bytes, the one in
 * progress) to dir under the identity hash; cache entries (cache) are
 * counted apart from checkpoints. */
static sf_status write_ckpt_file(run *R, const char *dir, const char *hash, bool cache, int level,
                                 const uint8_t *cur_bytes, size_t cur_len, const uint64_t *cur_tot,
                                 const sf_dist_stats *st)
{
    const sf_workflow *w = R->w;
    sf_ckpt c;
    sf_ckpt_init(&c);
    sf_status rc = SF_OK;
    double t0 = sf_comm_wtime();
    c.format_version = SF_CKPT_FORMAT_VERSION;
    snprintf(c.config_hash, sizeof c.config_hash, "%s", hash);
    snprintf(c.input_id, sizeof c.input_id, "%s", R->input_id);
    c.sequence = cache ? 1 : ++R->ck_seq;
    c.ranks = sf_comm_size();
    c.threads = R->threads;
    c.nlevels = R->nlevels;
    c.level = level;
    /* Stopped before the first round boundary of the pass: nothing of it
     * is done, so it is recorded as not started. */
    if (cur_bytes != NULL && st->pos_rows == 0) cur_bytes = NULL;
    if (cur_bytes != NULL) {
        c.rows_read = st->pos_rows;
        c.rounds_done = st->rounds;
        memcpy(c.reader_pos, st->pos.v, sizeof c.reader_pos);
        c.pieces_done = cur_tot[tot_len(&R->levels[level]) - 1];
    }
    for (int s = 0; s < w->nstages && rc == SF_OK; s++)
        rc = sf_ckpt_add_stage(&c, w->stages[s].name, w->level[s], w->level[s] < level);
    /* Shards of every pass, pass-major: k x nlevels entries. */
    int k = R->w->shard.shards;
    if (rc == SF_OK) rc = sf_ckpt_set_shards(&c, k * R->nlevels);
    for (int l = 0; l <= level && l < R->nlevels && rc == SF_OK; l++) {
        level_pass *L = &R->levels[l];
        const uint8_t *bytes = l < level ? L->result.data : cur_bytes;
        size_t len = l < level ? L->result.len : cur_len;
        const uint64_t *tot = l < level ? L->tot : cur_tot;
        if (bytes == NULL || tot == NULL) break; /* pass `level` not started */
        for (int s = 0; s < k; s++) {
            c.shard_rows_done[(size_t)l * (size_t)k + (size_t)s] = tot[s];
            c.shard_rows_excluded[(size_t)l * (size_t)k + (size_t)s] = tot[k + s];
            c.shard_attempts[(size_t)l * (size_t)k + (size_t)s] = (uint32_t)tot[2 * k + s];
            c.shard_pieces_excluded[(size_t)l * (size_t)k + (size_t)s] = (uint32_t)tot[3 * k + s];
        }
        sf_rd rd;
        sf_rd_init(&rd, bytes, len);
        for (int a = 0; a < L->nagents && rc == SF_OK; a++) {
            uint64_t n;
            const uint8_t *p;
            rc = sf_rd_u64(&rd, &n);
            if (rc == SF_OK) rc = sf_rd_bytes(&rd, (size_t)n, &p);
            const agent_inst *ai = &L->agents[a];
            if (rc == SF_OK)
                rc = sf_ckpt_add_state(&c, w->stages[ai->stage].name, ai->cfg.id, ai->cfg.agent, l,
                                       tot[4 * (size_t)k + (size_t)a], p, (size_t)n);
        }
    }
    if (rc == SF_OK && cache) {
        rc = sf__mkdir_p(dir);
        if (rc == SF_OK) rc = sf_ckpt_write(dir, &c, NULL, NULL);
        if (rc != SF_OK) {
            fprintf(stderr, "shardflow: warning: cache entry %s not written: %s; the run goes on\n", dir,
                    sf_error_message());
            R->cache_failed++;
            rc = SF_OK;
        } else {
            R->cache_written++;
        }
        sf_ckpt_fini(&c);
        return rc;
    }
    if (rc == SF_OK) {
        rc = sf_ckpt_write(dir, &c, ckpt_point, NULL);
        if (rc != SF_OK) {
            /* The previous checkpoint stands; the run goes on (a full
             * disk should not end a run that is otherwise fine). */
            fprintf(stderr, "shardflow: warning: checkpoint %" PRIu64 " not written: %s; the run goes on, the "
                            "previous checkpoint stands\n",
                    c.sequence, sf_error_message());
            R->ck_seq--;
            R->ck_failed++;
            rc = SF_OK;
            R->ck_seconds += sf_comm_wtime() - t0;
            sf_ckpt_fini(&c);
            return SF_OK;
        }
    }
    if (rc == SF_OK) {
        R->ck_written++;
        size_t bytes = 0;
        for (int i = 0; i < c.nstates; i++) bytes += c.states[i].len;
        R->ck_bytes = bytes;
    }
    R->ck_seconds += sf_comm_wtime() - t0;
    sf_ckpt_fini(&c);
    return rc;
}

static sf_status write_checkpoint(run *R, int level, const uint8_t *cur_bytes, size_t cur_len,
                                  const uint64_t *cur_tot, const sf_dist_stats *st)
{
    return write_ckpt_file(R, R->ckdir, R->w->result_hash, false, level, cur_bytes, cur_len, cur_tot, st);
}

/* ---- the stage result cache ---- */

/* Adds the bytes of a file to the hash; a file that cannot be read adds
 * its name and errno instead (it then never matches a readable one). */
static void hash_file(XXH64_state_t *h, const char *path)
{
    int fd = open(path, O_RDONLY);
    char buf[1 << 16];
    ssize_t n = -1;
    if (fd >= 0) {
        while ((n = read(fd, buf, sizeof buf)) > 0) XXH64_update(h, buf, (size_t)n);
        close(fd);
    }
    if (fd < 0 || n < 0) {
        XXH64_update(h, path, strlen(path));
        int e = errno;
        XXH64_update(h, &e, sizeof e);
    }
}

/* The code's identity: the executable itself and every plugin, so that a
 * rebuilt binary or plugin never reuses results of another build. */
static uint64_t code_identity(const sf_run_options *o, const sf_workflow *w)
{
    XXH64_state_t *h = XXH64_createState();
    if (h == NULL) return 0;
    XXH64_reset(h, 0);
    hash_file(h, "/proc/self/exe");
    for (int i = 0; i < o->nplugins; i++) hash_file(h, o->plugins[i]);
    for (int i = 0; i < w->nplugins; i++) hash_file(h, w->plugins[i]);
    uint64_t v = XXH64_digest(h);
    XXH64_freeState(h);
    return v;
}

/* The key of pass l: the result-relevant configuration of the passes up to
 * it, the code, the input's identity and, with on_bad_row: skip, the
 * columns every pass loads (they decide which rows are skipped). Empty if
 * none can be made. */
static void cache_key(const run *R, int l, char out[17])
{
    char cfg[17];
    sf_workflow_level_hash(R->w, l, cfg);
    out[0] = '\0';
    if (cfg[0] == '\0' || R->code_id == 0) return;
    XXH64_state_t *h = XXH64_createState();
    if (h == NULL) return;
    XXH64_reset(h, 0);
    const char tag[] = "shardflow stage cache 1";
    XXH64_update(h, tag, sizeof tag);
    XXH64_update(h, cfg, 16);
    XXH64_update(h, &R->code_id, sizeof R->code_id);
    XXH64_update(h, R->input_id, strlen(R->input_id) + 1);
    /* Under on_bad_row: fail a column's values only decide whether the run
     * fails, never which rows count. */
    for (int k = 0; k < R->nlevels && R->w->input.on_bad_row == SF_BAD_ROW_SKIP; k++)
        for (int c = 0; c < R->levels[k].ncols; c++) {
            const char *name = R->schema.fields[R->levels[k].cols[c]].name;
            XXH64_update(h, name, strlen(name) + 1);
        }
    (void)snprintf(out, 17, "%016" PRIx64, (uint64_t)XXH64_digest(h));
    XXH64_freeState(h);
}

/* Rank 0: the longest run of passes stored under their keys becomes a
 * restart from pass n (as from a checkpoint); a damaged entry is a miss. */
static sf_status find_cached(run *R)
{
    for (int l = R->nlevels - 1; l >= 0; l--) {
        char key[17], dir[4300];
        cache_key(R, l, key);
        if (key[0] == '\0') continue;
        snprintf(dir, sizeof dir, "%s/%s", R->cache_root, key);
        sf_ckpt c;
        sf_ckpt_init(&c);
        sf_ckpt_found found = SF_CKPT_NONE;
        char notes[1024] = "";
        sf_status rc = sf_ckpt_load(dir, key, R->input_id, &c, &found, notes, sizeof notes);
        if (rc != SF_OK || found == SF_CKPT_NONE || c.level != l + 1 || c.nlevels != R->nlevels) {
            if (rc != SF_OK)
                fprintf(stderr, "shardflow: cache entry %s not used: %s\n", dir, sf_error_message());
            sf_ckpt_fini(&c);
            sf_error_clear();
            continue;
        }
        sf_ckpt_fini(&R->ck);
        R->ck = c;
        R->resumed = true;
        R->resume_level = l + 1;
        R->resume_rows = 0;
        R->cache_hits = l + 1;
        fprintf(stderr, "shardflow: reusing the cached results of %d of %d passes (%s)\n", l + 1, R->nlevels, dir);
        return SF_OK;
    }
    return SF_OK;
}

/* Rank 0: stores the passes up to l under pass l's key. */
static sf_status cache_store(run *R, int l)
{
    char key[17], dir[4300];
    cache_key(R, l, key);
    if (key[0] == '\0') return SF_OK;
    snprintf(dir, sizeof dir, "%s/%s", R->cache_root, key);
    return write_ckpt_file(R, dir, key, true, l + 1, NULL, 0, NULL, NULL);
}

typedef struct ckpt_ctx {
    run *R;
    level_pass *L;
} ckpt_ctx;

/* The checkpoint of a pass in progress (sf_dist_hooks.checkpoint): the
 * reduced states of the rounds done, the totals, rank 0 writes, and the
 * file counts only when every rank agrees (SCR's complete flag). */
static sf_status pass_checkpoint(run *R, level_pass *L, const sf_dist_stats *st, sf_status local)
{
    sf_status rc = sf_comm_agree(local);
    if (rc != SF_OK) return rc;
    sf_buf b;
    sf_buf_init(&b);
    uint64_t *tot = NULL;
    rc = sf_comm_agree(sf_exec_encode(L->x, &b));
    if (rc == SF_OK) rc = sf_comm_agree(sf_comm_reduce(&b, merge_cb, L->x));
    if (rc == SF_OK) rc = pass_totals(L, &tot);
    if (rc == SF_OK) {
        sf_status wr = sf_comm_rank() == 0 ? write_checkpoint(R, L->level, b.data, b.len, tot, st) : SF_OK;
        rc = sf_comm_agree(wr);
    }
    free(tot);
    sf_buf_fini(&b);
    return rc;
}

static sf_status ckpt_hook(void *ctx, sf_dist_stats *st, sf_status local)
{
    ckpt_ctx *c = ctx;
    if (!c->R->ck_on) return sf_comm_agree(local);
    return pass_checkpoint(c->R, c->L, st, local);
}

/* Rank 0: finds the checkpoint to resume from, if any, and checks that it
 * belongs to this run's passes. Sets R->resumed, resume_level, resume_rows. */
static sf_status find_checkpoint(run *R, bool asked)
{
    sf_ckpt_found found = SF_CKPT_NONE;
    char notes[1024] = "";
    sf_status rc = sf_ckpt_load(R->ckdir, R->w->result_hash, R->input_id, &R->ck, &found, notes, sizeof notes);
    if (notes[0]) {
        snprintf(R->ck_notes, sizeof R->ck_notes, "%s", notes);
        size_t n = strlen(R->ck_notes);
        while (n > 0 && (R->ck_notes[n - 1] == '\n' || R->ck_notes[n - 1] == ' ')) R->ck_notes[--n] = '\0';
    }
    size_t used = strlen(R->ck_notes);
    if (rc == SF_ERR_CONFIG) {
        /* Another workflow's or input's checkpoint: refused when asked
         * for, else left alone and overwritten by this run. */
        if (asked) {
            char msg[8192];
            snprintf(msg, sizeof msg, "%s: refusing it (remove %s or run without --restart to start afresh)",
                     sf_error_message(), R->ckdir);
            return sf_error_set(rc, __FILE__, __LINE__, "%s", msg);
        }
        snprintf(R->ck_notes + used, sizeof R->ck_notes - used, "%s%s; starting from the beginning",
                 used ? "; " : "", sf_error_message());
        sf_ckpt_fini(&R->ck);
        return SF_OK;
    }
    if (rc == SF_ERR_IO && strstr(R->ck_notes, "lock") != NULL && strstr(R->ck_notes, "HDF5_USE_FILE_LOCKING") != NULL)
        /* Not corruption: the files could not be locked. Starting afresh
         * would overwrite good checkpoints. */
        return rc;
    if (rc == SF_ERR_IO) {
        /* No usable file (the notes say why): the input is intact, so
         * start afresh. */
        snprintf(R->ck_notes + used, sizeof R->ck_notes - used, "%sno usable checkpoint in %s; starting from the beginning",
                 used ? "; " : "", R->ckdir);
        sf_ckpt_fini(&R->ck);
        return SF_OK;
    }
    SF_CALL(rc);
    if (found == SF_CKPT_NONE) return SF_OK;
    if (found == SF_CKPT_PREVIOUS) {
        /* The newest file is unusable: set it aside, or the next write
         * would rotate it over the good previous one. */
        char bad[4300], keep[4300];
        snprintf(bad, sizeof bad, "%s/checkpoint.h5", R->ckdir);
        snprintf(keep, sizeof keep, "%s/checkpoint.corrupt.h5", R->ckdir);
        struct stat stb;
        if (stat(bad, &stb) == 0) {
            SF_CHECK(rename(bad, keep) == 0, SF_ERR_IO, "%s: cannot rename to %s: %s", bad, keep, strerror(errno));
            int dfd = open(R->ckdir, O_RDONLY | O_DIRECTORY);
            if (dfd >= 0) {
                (void)fsync(dfd); /* the rename is durable before the next write rotates */
                close(dfd);
            }
            snprintf(R->ck_notes + strlen(R->ck_notes), sizeof R->ck_notes - strlen(R->ck_notes),
                     " (the unusable file is kept as checkpoint.corrupt.h5)");
        }
    }
    R->ck_seq = R->ck.sequence;
    const sf_ckpt *c = &R->ck;
    /* The same workflow hash means the same passes; check anyway. */
    int k = R->w->shard.shards;
    bool ok = c->nlevels == R->nlevels && c->level >= 0 && c->level <= R->nlevels &&
              c->k == k * R->nlevels;
    int want_states = 0;
    for (int l = 0; l < R->nlevels && ok; l++)
        if (l < c->level || (l == c->level && c->rows_read > 0)) want_states += R->levels[l].nagents;
    ok = ok && c->nstates == want_states;
    for (int i = 0, l = 0, a = 0; ok && i < c->nstates; i++, a++) {
        while (l < R->nlevels && a >= R->levels[l].nagents) {
            l++;
            a = 0;
        }
        const agent_inst *ai = &R->levels[l].agents[a];
        ok = c->states[i].level == l && strcmp(c->states[i].agent, ai->cfg.id) == 0 &&
             strcmp(c->states[i].stage, R->w->stages[ai->stage].name) == 0;
    }
    SF_CHECK(ok, SF_ERR_CONFIG,
             "checkpoint %s/checkpoint.h5 does not match this workflow's passes and agents; remove it, or run "
             "without --restart with checkpoint.restart: never",
             R->ckdir);
    if (c->level == R->nlevels && !asked) {
        /* The run it belongs to finished: a new run starts afresh. */
        sf_ckpt_fini(&R->ck);
        return SF_OK;
    }
    R->resumed = true;
    R->resume_level = c->level;
    R->resume_rows = c->rows_read;
    return SF_OK;
}

/* The states of pass l from the loaded checkpoint, as an sf_exec_encode
 * output, and its totals. */
static sf_status restored_pass(run *R, int l, sf_buf *bytes, uint64_t **tot)
{
    level_pass *L = &R->levels[l];
    const sf_ckpt *c = &R->ck;
    int k = L->st.k;
    sf_buf_clear(bytes);
    *tot = calloc(tot_len(L), sizeof **tot);
    SF_CHECK(*tot != NULL, SF_ERR_NOMEM, "out of memory (restart)");
    for (int s = 0; s < k; s++) {
        size_t at = (size_t)l * (size_t)k + (size_t)s;
        (*tot)[s] = c->shard_rows_done[at];
        (*tot)[k + s] = c->shard_rows_excluded[at];
        (*tot)[2 * k + s] = c->shard_attempts[at];
        (*tot)[3 * k + s] = c->shard_pieces_excluded[at];
    }
    (*tot)[tot_len(L) - 1] = l == c->level ? c->pieces_done : 0;
    int a = 0;
    for (int i = 0; i < c->nstates; i++) {
        if (c->states[i].level != l) continue;
        SF_CALL(sf_buf_put_u64(bytes, (uint64_t)c->states[i].len));
        SF_CALL(sf_buf_append(bytes, c->states[i].data, c->states[i].len));
        (*tot)[4 * (size_t)k + (size_t)a] = c->states[i].rows;
        a++;
    }
    SF_CHECK(a == L->nagents, SF_ERR_INTERNAL, "checkpoint: pass %d has %d states, expected %d", l, a, L->nagents);
    return SF_OK;
}

/* Rank 0: puts a restored pass's figures where a run would have left them. */
static void apply_totals(level_pass *L, const uint64_t *tot)
{
    int k = L->st.k;
    uint64_t done = 0, total = 0;
    for (int s = 0; s < k; s++) {
        done += tot[s];
        total += tot[s] + tot[k + s];
    }
    L->rows_processed = done;
    L->st.rows_read = total;
}

static void run_fini(run *R)
{
    /* Decoded states first: the executors know how to destroy them. */
    for (int a = 0; a < R->nagents; a++) {
        agent_inst *ai = &R->agents[a];
        if (ai->final && R->nlevels > ai->level && R->levels[ai->level].x)
            sf_exec_state_destroy(R->levels[ai->level].x, ai->index, &ai->final);
    }
    for (int l = 0; l < R->nlevels; l++) {
        level_pass *L = &R->levels[l];
        sf_exec_destroy(&L->x);
        free(L->xa);
        free(L->cols);
        sf_schema_fini(&L->schema);
        sf_buf_fini(&L->result);
        sf_dist_stats_fini(&L->st);
        free(L->tot);
    }
    free(R->levels);
    sf_ckpt_fini(&R->ck);
    for (int a = 0; a < R->nagents; a++) {
        agent_inst *ai = &R->agents[a];
        /* by arrays are shared between the sorted copy and nothing else. */
        free(ai->by_in);
        free(ai->by_pass);
        sf_filter_destroy(&ai->where);
        free(ai->priors);
        free(ai->prior_of);
    }
    free(R->agents);
    sf_shard_plan_destroy(&R->plan);
    sf_reader_destroy(&R->reader);
    sf_schema_fini(&R->schema);
    sf_json_fini(&R->plan_json);
    sf_workflow_destroy(&R->w);
}

sf_status sf_run(const sf_run_options *o, char *out_dir_used)
{
    run R;
    memset(&R, 0, sizeof R);
    sf_schema_init(&R.schema);
    sf_json_init(&R.plan_json, false);
    int rank = sf_comm_rank();
    double t_start = sf_comm_wtime();
    sf_status rc;
    sf_buf buf;
    sf_buf_init(&buf);
    char dir[4096] = "";

    sf_agents_register_builtin();
    rc = SF_OK;
    for (int k = 0; k < o->nplugins && rc == SF_OK; k++) {
        rc = sf_plugin_load(o->plugins[k]);
        /* A plugin that cannot be loaded is a configuration problem. */
        if (rc != SF_OK) rc = SF_ERR_CONFIG;
    }
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    rc = sf_workflow_load(o->workflow, o->nsets, o->sets, &R.w);
    /* A workflow that cannot be read is the user's configuration problem. */
    if (rc == SF_ERR_IO) rc = SF_ERR_CONFIG;
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    if (o->threads > 0) R.w->threads = o->threads;
    R.pread = R.w->distribute.mode == SF_DIST_PARALLEL_READ;
    rc = SF_OK;
    if (o->ninject > 0) {
        /* --inject adds to fault.inject. */
        sf_fault_config *f = &R.w->fault;
        sf_fault_spec *more = realloc(f->inject, sizeof *more * (size_t)(f->ninject + o->ninject));
        if (more == NULL) rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (faults)");
        else f->inject = more;
        for (int i = 0; i < o->ninject && rc == SF_OK; i++) {
            rc = sf_fault_parse(o->inject[i], &f->inject[f->ninject]);
            if (rc == SF_OK) f->ninject++;
            else rc = sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "--inject %s: %s", o->inject[i],
                                   sf_error_message());
        }
    }
    if (rc == SF_OK) rc = sf_fault_activate(&R.w->fault, rank);
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    sf_comm_set_chunk_limit((size_t)R.w->distribute.chunk_bytes);
    R.threads = R.w->threads > 0 ? R.w->threads : sf_exec_default_threads(sf_comm_local_size());
    sf_exec_set_threads(R.threads);
    /* Stop signals only set a flag. The OpenMP threads are created with
     * them blocked, so only the master thread (or MPI's own threads) ever
     * runs the handler. */
    sf_signal_install(R.w->fault.grace);
    sf_signal_block();
    sf_exec_start_threads(R.threads);
    sf_signal_unblock();
    if (o->out_dir)
        snprintf(dir, sizeof dir, "%s", o->out_dir);
    else if (R.w->out_dir)
        snprintf(dir, sizeof dir, "%s", R.w->out_dir);
    else
        snprintf(dir, sizeof dir, "results/%s", R.w->name);
    if (out_dir_used) snprintf(out_dir_used, 4096, "%s", dir);
    R.t_load = sf_comm_wtime() - t_start;

    /* Rank 0 opens the input and plans; everyone learns the schema. */
    double t0 = sf_comm_wtime();
    rc = SF_OK;
    if (rank == 0) {
        rc = open_input(&R, &buf);
        if (rc == SF_OK && !o->validate_only) rc = sf__mkdir_p(dir);
    }
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    SF_CALL_GOTO(sf_comm_bcast(&buf, 0), done);
    rc = decode_schema(&buf, &R.schema);
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    R.t_schema = sf_comm_wtime() - t0;

    /* Agents and passes are checked before any data moves. */
    rc = resolve_agents(&R);
    if (rc == SF_OK) rc = build_levels(&R);
    if (rc == SF_OK) {
        sf_synth_agent *sa = NULL;
        sf_synth_input in;
        rc = synth_input(&R, &sa, &in);
        if (rc == SF_OK) rc = sf_synth_check(&in);
        free(sa);
    }
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    if (o->validate_only) goto done;

    if (rank == 0) clamp_batch_rows(&R);
    t0 = sf_comm_wtime();
    rc = rank == 0 ? plan_shards(&R) : SF_OK;
    if (rank == 0 && rc == SF_OK) {
        sf_shard_plan_describe(R.plan, &R.plan_json);
        rc = R.plan_json.rc;
    }
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    if (R.pread) SF_CALL_GOTO(share_plan_and_parts(&R), done);
    R.t_plan = sf_comm_wtime() - t0;

    /* Checkpoints: where, and whether this run resumes from one. */
    R.ck_on = R.w->checkpoint.enabled;
    /* Every rank knows whether the cache is on (its writes end in agreements). */
    R.cache_on = R.w->cache_enabled;
    if (R.w->cache_dir) snprintf(R.cache_root, sizeof R.cache_root, "%s", R.w->cache_dir);
    else snprintf(R.cache_root, sizeof R.cache_root, "%s/cache", dir);
    if (R.w->checkpoint.dir) snprintf(R.ckdir, sizeof R.ckdir, "%s", R.w->checkpoint.dir);
    else snprintf(R.ckdir, sizeof R.ckdir, "%s/checkpoint", dir);
    rc = SF_OK;
    if (rank == 0) {
        if (R.w->input.format == SF_INPUT_SYNTHETIC)
            snprintf(R.input_id, sizeof R.input_id, "synthetic (the generator's settings are in the workflow hash)");
        else
            rc = sf_ckpt_input_identity(R.w->input.path, R.input_id, sizeof R.input_id);
        bool want = o->restart || R.w->checkpoint.restart == SF_RESTART_AUTO;
        if (rc == SF_OK && want && (R.ck_on || o->restart)) rc = find_checkpoint(&R, o->restart);
        if (R.cache_on) R.code_id = code_identity(o, R.w);
        if (rc == SF_OK && R.cache_on && !R.resumed) rc = find_cached(&R);
        if (R.ck_notes[0]) fprintf(stderr, "shardflow: %s\n", R.ck_notes);
        if (rc == SF_OK && R.resumed && R.cache_hits == 0)
            fprintf(stderr, "shardflow: resuming from %s (checkpoint %" PRIu64 ": %d of %d passes done, %" PRIu64
                            " rows of the next)\n",
                    R.ckdir, R.ck.sequence, R.resume_level, R.nlevels, R.resume_rows);
    }
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    {
        /* Every rank learns which passes to skip. */
        uint64_t m[2] = {R.resumed ? (uint64_t)R.resume_level + 1 : 0, R.resume_rows};
        rc = sf_comm_allreduce_sum_u64(m, 2);
        R.resumed = m[0] > 0;
        R.resume_level = m[0] > 0 ? (int)(m[0] - 1) : 0;
        R.resume_rows = m[1];
        if (rc == SF_OK && R.pread && R.resumed && R.resume_rows > 0)
            rc = sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                              "%s: the checkpoint in %s stopped inside pass %d, which distribute.mode: "
                              "parallel-read cannot resume (its ranks read different parts); resume it with "
                              "--set distribute.mode=static or dynamic",
                              R.w->file, R.ckdir, R.resume_level + 1);
        SF_CALL_GOTO(sf_comm_agree(rc), done);
    }

    for (int l = 0; l < R.nlevels; l++) {
        level_pass *L = &R.levels[l];
        rc = prepare_pass(&R, L);
        SF_CALL_GOTO(sf_comm_agree(rc), done);
        sf_exec_faults xf = {.level = l,
                             .max_attempts = R.w->fault.max_attempts,
                             .backoff = R.w->fault.backoff,
                             .task_timeout = R.w->fault.task_timeout};
        /* Transactions only where something can be retried, moved or
         * injected: with max_attempts 1, no move and no injection a
         * failure ends the run, and the units go straight into the
         * states (measured in bench/checkpoint). */
        const sf_fault_config *fc = &R.w->fault;
        bool ft = fc->max_attempts > 1 || fc->redistribute || fc->speculate || fc->ninject > 0 ||
                  fc->task_timeout > 0;
        rc = ft ? sf_exec_set_faults(L->x, &xf) : SF_OK;
        SF_CALL_GOTO(sf_comm_agree(rc), done);
        if (R.resumed && l < R.resume_level) {
            /* Complete in the checkpoint: rank 0 takes its reduced states. */
            rc = rank == 0 ? restored_pass(&R, l, &L->result, &L->tot) : SF_OK;
            if (rc == SF_OK && rank == 0) apply_totals(L, L->tot);
            SF_CALL_GOTO(sf_comm_agree(rc), done);
            {
                /* Every rank needs the pass's totals (the coverage check
                 * decides the same way everywhere). */
                sf_buf tb;
                sf_buf_init(&tb);
                if (rank == 0) rc = sf_buf_append(&tb, L->tot, tot_len(L) * sizeof *L->tot);
                rc = sf_comm_agree(rc);
                if (rc == SF_OK) rc = sf_comm_agree(sf_comm_bcast(&tb, 0));
                if (rc == SF_OK && rank != 0) {
                    L->tot = malloc(tot_len(L) * sizeof *L->tot);
                    if (L->tot == NULL || tb.len != tot_len(L) * sizeof *L->tot)
                        rc = sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "restart: pass totals of %zu bytes",
                                          tb.len);
                    else
                        memcpy(L->tot, tb.data, tb.len);
                }
                sf_buf_fini(&tb);
                SF_CALL_GOTO(sf_comm_agree(rc), done);
            }
        } else {
            sf_dist_hooks hk = {.checkpoint = ckpt_hook,
                                .every_pieces = R.ck_on ? R.w->checkpoint.every_shards : 0,
                                .every_seconds = R.ck_on ? R.w->checkpoint.every_seconds : 0,
                                .stop_on_signal = true,
                                .redistribute = R.w->fault.redistribute,
                                .moved_attempt_base = (uint32_t)R.w->fault.max_attempts,
                                .speculate = R.w->fault.speculate,
                                .watchdog = R.w->fault.watchdog};
            ckpt_ctx cc = {&R, L};
            hk.ctx = &cc;
            if (R.resumed && l == R.resume_level && R.resume_rows > 0) {
                /* In progress in the checkpoint: rank 0 starts from its
                 * states and totals and reads on from its position. */
                sf_buf prior;
                sf_buf_init(&prior);
                uint64_t *tot = NULL;
                rc = SF_OK;
                if (rank == 0) {
                    rc = restored_pass(&R, l, &prior, &tot);
                    int k = L->st.k;
                    uint64_t rows = 0;
                    for (int s = 0; rc == SF_OK && s < k; s++) {
                        L->st.rows_included[s] = tot[s];
                        L->st.rows_excluded[s] = tot[k + s];
                        L->st.retries[s] = tot[2 * k + s];
                        L->st.pieces_excluded[s] = tot[3 * k + s];
                        rows += tot[s];
                    }
                    if (rc == SF_OK) {
                        L->st.pieces_done = tot[tot_len(L) - 1];
                        L->st.rows_read = R.ck.rows_read;
                        rc = sf_exec_absorb(L->x, prior.data, prior.len, tot + 4 * (size_t)k, rows);
                    }
                    sf_reader_pos pos;
                    memcpy(pos.v, R.ck.reader_pos, sizeof pos.v);
                    if (rc == SF_OK) rc = sf_reader_seek(R.reader, &pos);
                    hk.first_round = R.ck.rounds_done;
                }
                free(tot);
                sf_buf_fini(&prior);
                SF_CALL_GOTO(sf_comm_agree(rc), done);
            }
            t0 = sf_comm_wtime();
            rc = sf_dist_run_pass_ex(R.reader, R.plan, &R.w->distribute, L->cols, L->ncols, &L->schema, L->x,
                                     &L->st, &hk);
            {
                /* A real failure anywhere wins over a stop (the agreement
                 * takes the highest code, and SF_ERR_INTERRUPTED is the
                 * highest): first agree on failures, then on the stop. */
                bool stopped = rc == SF_ERR_INTERRUPTED;
                rc = sf_comm_agree(stopped ? SF_OK : rc);
                if (rc == SF_OK) rc = sf_comm_agree(stopped ? SF_ERR_INTERRUPTED : SF_OK);
            }
            if (rc == SF_ERR_INTERRUPTED) {
                /* Every rank stopped at the same round boundary: save it. */
                R.stop_signal = sf_signal_pending();
                /* parallel-read has no common position inside a pass: the
                 * last completed pass is what a restart resumes from. */
                sf_status e = R.ck_on && !R.pread ? pass_checkpoint(&R, L, &L->st, SF_OK) : SF_OK;
                rc = e != SF_OK ? e : SF_ERR_INTERRUPTED;
                if (rc == SF_ERR_INTERRUPTED)
                    sf_error_set(rc, __FILE__, __LINE__,
                                 "stopped by signal %d; %s%s%s", R.stop_signal ? R.stop_signal : 0,
                                 !R.ck_on ? "no checkpoint (checkpoint.enabled: false)"
                                 : R.pread ? "parallel-read resumes from the last completed pass in "
                                           : "checkpoint written to ",
                                 R.ck_on ? R.ckdir : "", R.ck_on ? "; run again with --restart to resume" : "");
                goto done;
            }
            SF_CALL_GOTO(rc, done);
            L->seconds = sf_comm_wtime() - t0;
            t0 = sf_comm_wtime();
            rc = sf_exec_encode(L->x, &L->result);
            SF_CALL_GOTO(sf_comm_agree(rc), done);
            if (R.w->distribute.reduce == SF_REDUCE_HIERARCHICAL) {
                rc = sf_comm_reduce_hier(&L->result, merge_cb, L->x, &L->red);
            } else {
                rc = sf_comm_reduce(&L->result, merge_cb, L->x);
                sf_comm_reduce_last_stats(&L->red);
            }
            SF_CALL_GOTO(sf_comm_agree(rc), done);
            L->reduce_seconds = sf_comm_wtime() - t0;
            {
                /* Totals over all ranks, for run.json and the coverage. */
                uint64_t m[5] = {sf_exec_rows(L->x), L->red.messages, L->red.internode_messages, L->red.bytes,
                                 R.reader ? sf_reader_bad_rows(R.reader) : 0};
                rc = sf_comm_allreduce_sum_u64(m, 5);
                L->rows_processed = m[0];
                R.bad_rows = m[4];
                L->red.messages = m[1];
                L->red.internode_messages = m[2];
                L->red.bytes = m[3];
            }
            SF_CALL_GOTO(sf_comm_agree(rc), done);
            SF_CALL_GOTO(pass_totals(L, &L->tot), done);
            /* The end of the pass is a checkpoint of its own. */
            if (R.ck_on) {
                rc = rank == 0 ? write_checkpoint(&R, l + 1, NULL, 0, NULL, NULL) : SF_OK;
                SF_CALL_GOTO(sf_comm_agree(rc), done);
            }
            /* ... and, with the cache on, an entry under its key. */
            if (R.cache_on) {
                rc = rank == 0 ? cache_store(&R, l) : SF_OK;
                SF_CALL_GOTO(sf_comm_agree(rc), done);
            }
            {
                /* A stop signal during the reduction: the pass is saved. */
                uint64_t sig = (uint64_t)sf_signal_pending();
                rc = sf_comm_allreduce_sum_u64(&sig, 1);
                SF_CALL_GOTO(sf_comm_agree(rc), done);
                if (sig != 0 && l + 1 < R.nlevels) {
                    rc = sf_error_set(SF_ERR_INTERRUPTED, __FILE__, __LINE__,
                                      "stopped by a signal after pass %d of %d; %s%s", l + 1, R.nlevels,
                                      R.ck_on ? "checkpoint written; run again with --restart to resume from "
                                              : "no checkpoint (checkpoint.enabled: false)",
                                      R.ck_on ? R.ckdir : "");
                    goto done;
                }
            }
        }
        /* States that later passes use as baselines go to every rank: only
         * those (rank 0 keeps the whole result for the report). */
        bool later = false;
        for (int a = 0; a < L->nagents; a++) later = later || L->agents[a].needed_later;
        if (later) {
            sf_buf sel;
            sf_buf_init(&sel);
            uint8_t *want = calloc((size_t)L->nagents, 1);
            rc = want != NULL ? SF_OK : sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (baselines)");
            for (int a = 0; a < L->nagents && want; a++) want[a] = L->agents[a].needed_later;
            if (rc == SF_OK && rank == 0) rc = sf_exec_select(L->x, L->result.data, L->result.len, want, &sel);
            sf_status ra = sf_comm_agree(rc);
            if (ra == SF_OK) ra = sf_comm_agree(sf_comm_bcast(&sel, 0));
            if (ra == SF_OK) {
                rc = SF_OK;
                for (int a = 0; a < L->nagents && rc == SF_OK; a++)
                    if (want[a] && L->agents[a].final == NULL)
                        rc = sf_exec_decode_agent(L->x, sel.data, sel.len, a, &L->agents[a].final);
                ra = sf_comm_agree(rc);
            }
            free(want);
            sf_buf_fini(&sel);
            SF_CALL_GOTO(ra, done);
            bind_priors(&R);
        }
    }

    /* Past the last pass a stop signal changes nothing: finish (the grace
     * alarm must not cut the writing of the results). */
    sf_signal_disarm();
    SF_CALL_GOTO(check_coverage(&R), done);
    t0 = sf_comm_wtime();
    rc = rank == 0 ? write_result(&R, dir) : SF_OK;
    if (rc == SF_OK && rank == 0 && R.w->input.format == SF_INPUT_SYNTHETIC && R.w->input.incidents) {
        char path[4200];
        snprintf(path, sizeof path, "%s/truth.json", dir);
        rc = sf_gen_truth_write(&R.w->input, path);
    }
    SF_CALL_GOTO(sf_comm_agree(rc), done);
    R.t_write = sf_comm_wtime() - t0;
    {
        sf_json rj;
        sf_json_init(&rj, true);
        sf_json_arr_begin(&rj);
        gather_ctx g = {&rj};
        sf_buf_clear(&buf);
        rc = encode_rank_stats(&R, &buf);
        /* Every rank takes part in the gather, even after a local failure. */
        if (rc != SF_OK) sf_buf_clear(&buf);
        sf_status rg = sf_comm_gather(&buf, gather_cb, &g);
        if (rc == SF_OK) rc = rg;
        sf_json_arr_end(&rj);
        SF_CALL_GOTO(sf_comm_agree(rc), done);
        sf_buf raw = {0};
        raw.data = rj.out.data;
        raw.len = rj.out.len;
        rc = rank == 0 ? write_runinfo(&R, dir, sf_comm_wtime() - t_start, &raw) : SF_OK;
        sf_json_fini(&rj);
        SF_CALL_GOTO(sf_comm_agree(rc), done);
    }
done:
    sf_fault_deactivate();
    sf_buf_fini(&buf);
    run_fini(&R);
    return rc;
}
