/* The `window` agent: rows per time bucket, optionally with the count, exact
 * sum, mean, min and max of a numeric column and the share of rows that a
 * flag: expression selects, optionally grouped by key columns.
 *
 * A row's bucket is floor(t / bucket_us) of its timestamp t (floor for
 * negative times too, so every bucket is bucket_us wide); rows with a null
 * time are counted as "untimed" and otherwise ignored. Each (group, bucket)
 * cell holds integer counters, order keys of the extremes (as in stats.c)
 * and, with column:, a superaccumulator for the sum, so merge is exactly
 * associative and commutative and equal states encode to equal bytes.
 *
 * Two group tables: one maps the by: key of a row to a dense group index,
 * the other maps (group index, bucket index) to a dense cell index. Each
 * group remembers its last cell, so time-ordered rows mostly skip the second
 * lookup, and links its cells in a list, so that one group's series is read
 * without scanning every cell. Encodings list groups in byte order of their
 * keys and each group's cells in bucket order. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/filter.h"
#include "shardflow/xsum.h"

#include "agents/builtin.h"
#include "agents/groups.h"
#include "agents/order_key.h"
#include "agents/window.h"

#define WINDOW_FORMAT 1
#define BUCKET_DEFAULT_US 60000000 /* 1m */
#define MIN_NONE UINT64_MAX        /* never the order key of a non-NaN double */
#define MAX_NONE 0
#define CELL_NONE 0 /* cell 0 is the cell table's empty key, which no cell has */
#define CELL_KEY_LEN 12
#define HAS_VALUE 1 /* flags of the encoding */
#define HAS_FLAG 2
#define MAX_COLUMNS 64

extern const sf_agent_ops sf__agent_window;

typedef struct cell {
    int64_t bucket;   /* floor(t / bucket_us) */
    uint32_t grp;
    uint32_t next;    /* next cell of the same group, CELL_NONE at the end */
    uint64_t rows;
    uint64_t count;   /* non-null column values (rows without column:) */
    uint64_t flagged;
    uint64_t min_key; /* order keys of the extremes (column: only) */
    uint64_t max_key;
} cell;

typedef struct wgroup {
    uint32_t head;    /* first cell of the group's list, CELL_NONE if none */
    uint32_t ncells;
    uint32_t last;    /* the cell of the group's last row, CELL_NONE if none */
    int64_t last_bucket;
} wgroup;

typedef struct window_state {
    const sf_agent_config *cfg;
    int64_t bucket_us;
    int time_col;
    int value_col;      /* column:, -1 if none */
    sf_filter *flag;    /* NULL if no flag: */
    sf__groups groups;  /* by: key -> group */
    wgroup *g;
    uint32_t gcap;
    sf__groups cells;   /* CELL_KEY_LEN bytes: u32 group, u64 bucket, little-endian */
    cell *c;
    sf_xsum *sum;       /* per cell, column: only */
    uint32_t ccap;
    uint64_t untimed;
    uint32_t *sel;      /* flagged rows of the current morsel */
    size_t sel_cap;
} window_state;

/* ---- values ------------------------------------------------------------------ */


static inline int64_t floor_div(int64_t t, int64_t d)
{
    int64_t q = t / d;
    return (t % d < 0) ? q - 1 : q;
}

/* The start of bucket q, clamped for the one bucket that reaches below
 * INT64_MIN. */
static inline int64_t bucket_start(int64_t q, int64_t d)
{
    return q < INT64_MIN / d ? INT64_MIN : q * d;
}

/* Double-double division (Dekker), for a mean of the exact sum with one
 * rounding, as stats.c computes it. */
static double exact_mean(const sf_xsum *sum, uint64_t count)
{
    if (count == 0) return NAN;
    double hi, lo;
    sf_xsum_round2(sum, &hi, &lo);
    if (!isfinite(hi)) return hi;
    double b = (double)count;
    double q1 = hi / b;
    double p = q1 * b;
    double pe = fma(q1, b, -p);
    double s = hi - p;
    double bb = s - hi;
    double e = (hi - (s - bb)) + (-p - bb);
    e -= pe;
    e += lo;
    double q2 = (s + e) / b;
    return q1 + q2;
}

/* ---- configuration ------------------------------------------------------------------ */

static const char *file_of(const sf_agent_config *cfg)
{
    return cfg->file ? cfg->file : "<workflow>";
}

static const char *id_of(const sf_agent_config *cfg)
{
    return cfg->id ? cfg->id : (cfg->agent ? cfg->agent : "?");
}

static int option_line(const sf_agent_config *cfg, const char *key)
{
    const sf_cfg_node *m = cfg->node;
    if (m != NULL && m->kind == SF_NODE_MAP)
        for (size_t i = 0; i < m->n; i++)
            if (strcmp(m->keys[i], key) == 0) {
                if (m->items[i] != NULL && m->items[i]->line > 0) return m->items[i]->line;
                if (m->key_lines != NULL && m->key_lines[i] > 0) return m->key_lines[i];
            }
    return cfg->line;
}

/* Parses the flag: expression (NULL in *out when there is none) and, when
 * bind, binds it to cfg->schema. Messages name the option's line, and the
 * agent is added to them. */
static sf_status parse_flag(const sf_agent_config *cfg, bool bind, sf_filter **out)
{
    *out = NULL;
    const char *expr;
    SF_CALL(sf_agent_opt_str(cfg, "flag", NULL, &expr));
    if (expr == NULL) return SF_OK;
    sf_filter *f = NULL;
    sf_status rc = sf_filter_parse(expr, file_of(cfg), option_line(cfg, "flag"), "flag", &f);
    if (rc == SF_OK && bind) rc = sf_filter_bind(f, cfg->schema);
    if (rc != SF_OK) {
        char msg[2048];
        snprintf(msg, sizeof msg, "%s (agent '%s')", sf_error_message(), id_of(cfg));
        sf_error_set_message(msg);
        sf_filter_destroy(&f);
        return rc;
    }
    *out = f;
    return SF_OK;
}

static sf_status time_name(const sf_agent_config *cfg, const char **name)
{
    return sf_agent_opt_str(cfg, "time", "timestamp", name);
}

static sf_status window_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"time", "bucket", "flag"};
    static const sf_type ts[] = {SF_TIMESTAMP};
    static const sf_type num[] = {SF_INT64, SF_FLOAT64, SF_TIMESTAMP};
    SF_CALL(sf_agent_check_options(cfg, allowed, 3));
    SF_CHECK(cfg->schema != NULL, SF_ERR_CONFIG, "%s:%d: agent '%s': no input schema", file_of(cfg),
             cfg->line, id_of(cfg));
    if (cfg->column != NULL) {
        int c;
        SF_CALL(sf_agent_need_col(cfg, "column", cfg->column, num, 3, &c));
    }
    SF_CHECK(cfg->nby >= 0 && cfg->nby <= 255 && (cfg->nby == 0 || cfg->by_col != NULL),
             SF_ERR_CONFIG, "%s:%d: agent '%s': by: takes 1 to 255 columns", file_of(cfg),
             option_line(cfg, "by"), id_of(cfg));
    for (int i = 0; i < cfg->nby; i++)
        SF_CHECK(cfg->by_col[i] >= 0 && cfg->by_col[i] < cfg->schema->ncols, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': option 'by': column '%s' is not in the input", file_of(cfg),
                 option_line(cfg, "by"), id_of(cfg), cfg->by && cfg->by[i] ? cfg->by[i] : "?");
    const char *tname;
    int tc;
    SF_CALL(time_name(cfg, &tname));
    SF_CALL(sf_agent_need_col(cfg, "time", tname, ts, 1, &tc));
    int64_t bucket;
    SF_CALL(sf_agent_opt_duration_us(cfg, "bucket", BUCKET_DEFAULT_US, &bucket));
    sf_filter *f;
    SF_CALL(parse_flag(cfg, true, &f));
    sf_filter_destroy(&f);
    return SF_OK;
}

/* Column names inside a flag: expression are not strings of the workflow
 * tree, so columns() hands out copies kept for the life of the process (one
 * per distinct name, a handful in any workflow). */
static pthread_mutex_t names_lock = PTHREAD_MUTEX_INITIALIZER;
static char **names_kept;
static size_t names_n, names_cap;

static const char *kept_name(const char *name)
{
    const char *out = NULL;
    pthread_mutex_lock(&names_lock);
    for (size_t i = 0; i < names_n && out == NULL; i++)
        if (strcmp(names_kept[i], name) == 0) out = names_kept[i];
    if (out == NULL && names_n == names_cap) {
        size_t cap = names_cap ? names_cap * 2 : 16;
        char **p = realloc(names_kept, cap * sizeof *p);
        if (p != NULL) {
            names_kept = p;
            names_cap = cap;
        }
    }
    if (out == NULL && names_n < names_cap) {
        char *copy = strdup(name);
        if (copy != NULL) {
            names_kept[names_n++] = copy;
            out = copy;
        }
    }
    pthread_mutex_unlock(&names_lock);
    return out;
}

static sf_status window_columns(const sf_agent_config *cfg, const char **names, int max, int *n)
{
    *n = 0;
    const char *tname;
    SF_CALL(time_name(cfg, &tname));
    SF_CHECK(max >= 1, SF_ERR_CONFIG, "%s:%d: agent '%s': too many columns (where: and time: together read at most 32)",
             cfg->file ? cfg->file : "<workflow>", cfg->line, cfg->id ? cfg->id : "window");
    names[(*n)++] = tname;
    sf_filter *f;
    SF_CALL(parse_flag(cfg, false, &f));
    sf_status rc = SF_OK;
    for (int i = 0; f != NULL && i < sf_filter_ncolumns(f); i++) {
        const char *c = sf_filter_column(f, i);
        bool dup = false;
        for (int k = 0; k < *n; k++) dup = dup || strcmp(names[k], c) == 0;
        if (dup) continue;
        SF_CHECK_GOTO(*n < max, SF_ERR_CONFIG, done,
                      "%s:%d: agent '%s': option 'flag': reads more than %d columns", file_of(cfg),
                      option_line(cfg, "flag"), id_of(cfg), max - 1);
        const char *kept = kept_name(c);
        SF_CHECK_GOTO(kept != NULL, SF_ERR_NOMEM, done, "window: out of memory for a column name");
        names[(*n)++] = kept;
    }
done:
    sf_filter_destroy(&f);
    return rc;
}

/* ---- groups and cells ------------------------------------------------------------------ */

static sf_status new_group(window_state *s, uint32_t gi)
{
    if (gi >= s->gcap) {
        uint32_t cap = s->gcap ? s->gcap : 16;
        while (cap <= gi) cap *= 2;
        wgroup *g = realloc(s->g, (size_t)cap * sizeof *g);
        SF_CHECK(g != NULL, SF_ERR_NOMEM, "agent '%s': out of memory for %u groups", id_of(s->cfg), cap);
        s->g = g;
        s->gcap = cap;
    }
    s->g[gi] = (wgroup){CELL_NONE, 0, CELL_NONE, 0};
    return SF_OK;
}

static sf_status new_cell(window_state *s, uint32_t ci, uint32_t gi, int64_t bucket)
{
    if (ci >= s->ccap) {
        uint32_t cap = s->ccap ? s->ccap : 64;
        while (cap <= ci) cap *= 2;
        cell *c = realloc(s->c, (size_t)cap * sizeof *c);
        SF_CHECK(c != NULL, SF_ERR_NOMEM, "agent '%s': out of memory for %u buckets", id_of(s->cfg), cap);
        s->c = c;
        if (s->value_col >= 0) {
            sf_xsum *x = realloc(s->sum, (size_t)cap * sizeof *x);
            SF_CHECK(x != NULL, SF_ERR_NOMEM, "agent '%s': out of memory for %u bucket sums",
                     id_of(s->cfg), cap);
            s->sum = x;
        }
        s->ccap = cap;
    }
    wgroup *g = &s->g[gi];
    s->c[ci] = (cell){bucket, gi, g->head, 0, 0, 0, MIN_NONE, MAX_NONE};
    if (s->value_col >= 0) sf_xsum_init(&s->sum[ci]);
    g->head = ci;
    g->ncells++;
    return SF_OK;
}

/* The cell of (group gi, bucket), created if new (*created may be NULL). */
static sf_status cell_of(window_state *s, uint32_t gi, int64_t bucket, uint32_t *ci, bool *created)
{
    wgroup *g = &s->g[gi];
    if (created) *created = false;
    if (g->last != CELL_NONE && g->last_bucket == bucket) {
        *ci = g->last;
        return SF_OK;
    }
    uint8_t key[CELL_KEY_LEN];
    for (int i = 0; i < 4; i++) key[i] = (uint8_t)(gi >> (8 * i));
    sf_store_u64(key + 4, (uint64_t)bucket);
    bool fresh;
    SF_CALL(sf__groups_find(&s->cells, key, sizeof key, ci, &fresh));
    if (fresh) SF_CALL(new_cell(s, *ci, gi, bucket));
    g = &s->g[gi];
    g->last = *ci;
    g->last_bucket = bucket;
    if (created) *created = fresh;
    return SF_OK;
}

/* ---- agent functions ------------------------------------------------------------------ */

static void window_destroy(void *state)
{
    window_state *s = state;
    sf_filter_destroy(&s->flag);
    sf__groups_fini(&s->groups);
    sf__groups_fini(&s->cells);
    free(s->g);
    free(s->c);
    free(s->sum);
    free(s->sel);
    memset(s, 0, sizeof *s);
}

/* Forgets every group and cell (with nby == 0, the one group is recreated). */
static sf_status window_clear(window_state *s)
{
    SF_CALL(sf__groups_clear(&s->groups));
    SF_CALL(sf__groups_clear(&s->cells));
    if (s->cfg->nby == 0) SF_CALL(new_group(s, 0));
    s->untimed = 0;
    return SF_OK;
}

static sf_status window_init(void *state, const sf_agent_config *cfg)
{
    window_state *s = state;
    memset(s, 0, sizeof *s);
    SF_CHECK(cfg != NULL && cfg->schema != NULL && cfg->nby >= 0 && cfg->nby <= 255 &&
                 (cfg->nby == 0 || cfg->by_col != NULL) &&
                 (cfg->column == NULL || (cfg->col >= 0 && cfg->col < cfg->schema->ncols)),
             SF_ERR_ARG, "window: configuration was not checked");
    s->cfg = cfg;
    s->value_col = cfg->column != NULL ? cfg->col : -1;
    const char *tname;
    SF_CALL(time_name(cfg, &tname));
    s->time_col = sf_agent_col(cfg, tname);
    SF_CHECK(s->time_col >= 0 && cfg->schema->fields[s->time_col].type == SF_TIMESTAMP, SF_ERR_ARG,
             "window: configuration was not checked");
    SF_CALL(sf_agent_opt_duration_us(cfg, "bucket", BUCKET_DEFAULT_US, &s->bucket_us));
    SF_CALL(parse_flag(cfg, true, &s->flag));
    sf_status rc = SF_OK;
    SF_CALL_GOTO(sf__groups_init(&s->groups, cfg->schema, cfg->by_col, cfg->nby), fail);
    /* Cell keys are bytes of our own, not column keys; with no key columns
     * the table makes the empty key its index 0 (CELL_NONE). */
    SF_CALL_GOTO(sf__groups_init(&s->cells, cfg->schema, NULL, 0), fail);
    if (cfg->nby == 0) SF_CALL_GOTO(new_group(s, 0), fail);
    return SF_OK;
fail:
    window_destroy(s);
    return rc;
}

static sf_status window_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    window_state *s = state;
    const sf_agent_config *cfg = s->cfg;
    SF_CHECK(s->time_col < b->ncols && b->cols[s->time_col].loaded, SF_ERR_INTERNAL,
             "window: the time column is not loaded");
    SF_CHECK(s->value_col < b->ncols && (s->value_col < 0 || b->cols[s->value_col].loaded),
             SF_ERR_INTERNAL, "window: column '%s' is not loaded", cfg->column ? cfg->column : "?");
    if (rows->n == 0) return SF_OK;
    const sf_column *tc = &b->cols[s->time_col];
    const sf_column *vc = s->value_col >= 0 ? &b->cols[s->value_col] : NULL;

    /* The flagged rows of the morsel's span, merged below with its rows
     * (both ascending). */
    size_t nflag = 0, fi = 0;
    if (s->flag != NULL) {
        size_t lo = sf_rows_at(rows, 0), hi = sf_rows_at(rows, rows->n - 1) + 1;
        if (s->sel_cap < hi - lo) {
            size_t cap = s->sel_cap ? s->sel_cap : 1024;
            while (cap < hi - lo) cap *= 2;
            uint32_t *sel = realloc(s->sel, cap * sizeof *sel);
            SF_CHECK(sel != NULL, SF_ERR_NOMEM, "agent '%s': out of memory for %zu flags",
                     id_of(cfg), cap);
            s->sel = sel;
            s->sel_cap = cap;
        }
        SF_CALL(sf_filter_eval(s->flag, b, lo, hi, s->sel, &nflag));
    }
    SF_CALL(sf__groups_batch(&s->groups, b));
    /* Groups are looked up for the whole call at once unless some times
     * are null: an untimed row must not create a group. */
    const uint32_t *gidx = NULL;
    if (tc->valid == NULL) {
        bool created;
        uint32_t before = s->groups.n;
        SF_CALL(sf__groups_rows(&s->groups, b, rows, &gidx, &created));
        for (uint32_t gi = before; gi < s->groups.n; gi++) SF_CALL(new_group(s, gi));
    }
    /* Rows come mostly in time order: the bucket of the previous row's
     * time range [blo, bhi) is reused without a division (only where
     * neither end can overflow). */
    const int64_t d = s->bucket_us;
    const bool range_ok = d > 0 && d < (INT64_C(1) << 61);
    int64_t blo = 1, bhi = 0, bq = 0;
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        bool flagged = false;
        if (s->flag != NULL) {
            while (fi < nflag && s->sel[fi] < r) fi++;
            flagged = fi < nflag && s->sel[fi] == r;
        }
        if (sf_col_is_null(tc, r)) {
            s->untimed++;
            continue;
        }
        int64_t t = tc->i64[r];
        if (t < blo || t >= bhi) {
            bq = floor_div(t, d);
            if (range_ok && t > -(INT64_C(1) << 62) && t < (INT64_C(1) << 62)) {
                blo = bq * d;
                bhi = blo + d;
            } else {
                blo = 1;
                bhi = 0;
            }
        }
        const int64_t bucket = bq;
        uint32_t gi, ci;
        if (gidx != NULL) {
            gi = gidx[i];
        } else {
            bool created;
            SF_CALL(sf__groups_row(&s->groups, b, r, &gi, &created));
            if (created) SF_CALL(new_group(s, gi));
        }
        const wgroup *wg = &s->g[gi];
        if (wg->last != CELL_NONE && wg->last_bucket == bucket)
            ci = wg->last;
        else
            SF_CALL(cell_of(s, gi, bucket, &ci, NULL));
        cell *c = &s->c[ci];
        c->rows++;
        c->flagged += flagged;
        if (vc == NULL) {
            c->count++;
        } else if (!sf_col_is_null(vc, r)) {
            double x = sf_col_as_double(vc, r);
            c->count++;
            sf_xsum_add(&s->sum[ci], x);
            if (!isnan(x)) {
                uint64_t k = sf__order_key(x);
                c->min_key = k < c->min_key ? k : c->min_key;
                c->max_key = k > c->max_key ? k : c->max_key;
            }
        }
    }
    return SF_OK;
}

static void cell_add(window_state *s, uint32_t ci, const cell *f, const sf_xsum *fsum)
{
    cell *c = &s->c[ci];
    c->rows += f->rows;
    c->count += f->count;
    c->flagged += f->flagged;
    if (f->min_key < c->min_key) c->min_key = f->min_key;
    if (f->max_key > c->max_key) c->max_key = f->max_key;
    if (s->value_col >= 0) sf_xsum_merge(&s->sum[ci], fsum);
}

static sf_status window_merge(void *into, const void *from)
{
    window_state *a = into;
    const window_state *f = from;
    SF_CHECK(a->bucket_us == f->bucket_us && a->cfg->nby == f->cfg->nby &&
                 (a->value_col >= 0) == (f->value_col >= 0) && (a->flag != NULL) == (f->flag != NULL),
             SF_ERR_INTERNAL, "window: merging states of different shapes");
    sf_status rc = SF_OK;
    uint32_t *map = NULL, *cmap = NULL;
    uint8_t *ckeys = NULL;
    uint32_t before = a->groups.n;
    SF_CALL(sf__groups_map(&a->groups, &f->groups, f->groups.n, &map, NULL));
    /* The new groups, in the order they were created. */
    for (uint32_t gi = before; gi < a->groups.n; gi++) SF_CALL_GOTO(new_group(a, gi), done);
    if (f->cells.n > 1) {
        /* Cells 1.. of f, as our cells' keys, looked up in one pass. */
        size_t nc = f->cells.n - 1;
        ckeys = malloc(nc * CELL_KEY_LEN);
        cmap = malloc(nc * sizeof *cmap);
        SF_CHECK_GOTO(ckeys != NULL && cmap != NULL, SF_ERR_NOMEM, done, "agent '%s': out of memory merging %zu buckets",
                      id_of(a->cfg), nc);
        for (size_t i = 0; i < nc; i++) {
            const cell *fc = &f->c[i + 1];
            uint8_t *key = ckeys + i * CELL_KEY_LEN;
            uint32_t gi = map[fc->grp];
            for (int b = 0; b < 4; b++) key[b] = (uint8_t)(gi >> (8 * b));
            sf_store_u64(key + 4, (uint64_t)fc->bucket);
        }
        uint32_t cbefore = a->cells.n;
        SF_CALL_GOTO(sf__groups_find_fixed(&a->cells, ckeys, CELL_KEY_LEN, nc, cmap, NULL), done);
        /* New cells in creation order: cell k was created by the first key that maps to it. */
        uint32_t next = cbefore;
        for (size_t i = 0; i < nc; i++)
            if (cmap[i] == next) {
                const cell *fc = &f->c[i + 1];
                SF_CALL_GOTO(new_cell(a, next, map[fc->grp], fc->bucket), done);
                next++;
            }
        SF_CHECK_GOTO(next == a->cells.n, SF_ERR_INTERNAL, done, "window: merged %u new buckets, expected %u",
                      next - cbefore, a->cells.n - cbefore);
        for (size_t i = 0; i < nc; i++) {
            uint32_t ci = (uint32_t)i + 1;
            cell_add(a, cmap[i], &f->c[ci], f->value_col >= 0 ? &f->sum[ci] : NULL);
        }
    }
    a->untimed += f->untimed;
done:
    free(map);
    free(ckeys);
    free(cmap);
    return rc;
}

typedef struct bref {
    int64_t bucket;
    uint32_t ci;
} bref;

static int bref_cmp(const void *x, const void *y)
{
    const bref *a = x, *b = y;
    return a->bucket < b->bucket ? -1 : a->bucket > b->bucket;
}

/* The cells of group gi in bucket order into refs (room for its ncells). */
static void group_cells(const window_state *s, uint32_t gi, bref *refs)
{
    uint32_t n = 0;
    for (uint32_t ci = s->g[gi].head; ci != CELL_NONE; ci = s->c[ci].next)
        refs[n++] = (bref){s->c[ci].bucket, ci};
    qsort(refs, n, sizeof *refs, bref_cmp);
}

static sf_status cell_refs(const window_state *s, bref **refs)
{
    uint32_t most = 1;
    for (uint32_t gi = 0; gi < s->groups.n; gi++)
        if (s->g[gi].ncells > most) most = s->g[gi].ncells;
    *refs = malloc((size_t)most * sizeof **refs);
    SF_CHECK(*refs != NULL, SF_ERR_NOMEM, "agent '%s': out of memory sorting %u buckets",
             id_of(s->cfg), most);
    return SF_OK;
}

static uint8_t shape_flags(const window_state *s)
{
    return (uint8_t)((s->value_col >= 0 ? HAS_VALUE : 0) | (s->flag != NULL ? HAS_FLAG : 0));
}

/* Format: u8 version, u8 nby, u8 flags (1: column:, 2: flag:), u64
 * bucket_us, u64 untimed, u64 number of groups, then per group in byte order
 * of the keys: the key (u32 length and bytes), u64 number of cells and per
 * cell in bucket order: i64 bucket index, u64 rows, with flag: u64 flagged,
 * with column: u64 count, u64 min and max order keys and the sum (xsum
 * encoding). */
static sf_status window_encode(const void *state, sf_buf *out)
{
    const window_state *s = state;
    sf_status rc = SF_OK;
    uint32_t *order = NULL;
    bref *refs = NULL;
    SF_CALL_GOTO(sf__groups_sorted(&s->groups, &order), done);
    SF_CALL_GOTO(cell_refs(s, &refs), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, WINDOW_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->cfg->nby), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, shape_flags(s)), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, (uint64_t)s->bucket_us), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->untimed), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->groups.n), done);
    for (uint32_t i = 0; i < s->groups.n; i++) {
        uint32_t gi = order[i];
        size_t len;
        const uint8_t *k = sf__groups_key(&s->groups, gi, &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, s->g[gi].ncells), done);
        group_cells(s, gi, refs);
        for (uint32_t j = 0; j < s->g[gi].ncells; j++) {
            const cell *c = &s->c[refs[j].ci];
            SF_CALL_GOTO(sf_buf_put_i64(out, c->bucket), done);
            SF_CALL_GOTO(sf_buf_put_u64(out, c->rows), done);
            if (s->flag != NULL) SF_CALL_GOTO(sf_buf_put_u64(out, c->flagged), done);
            if (s->value_col >= 0) {
                SF_CALL_GOTO(sf_buf_put_u64(out, c->count), done);
                SF_CALL_GOTO(sf_buf_put_u64(out, c->min_key), done);
                SF_CALL_GOTO(sf_buf_put_u64(out, c->max_key), done);
                SF_CALL_GOTO(sf_xsum_encode(&s->sum[refs[j].ci], out), done);
            }
        }
    }
done:
    free(order);
    free(refs);
    return rc;
}

/* Checks the extremes of a decoded cell: none without values, else both
 * non-NaN doubles in order, or none at all when every value was NaN. */
static bool extremes_valid(const cell *c)
{
    if (c->min_key == MIN_NONE || c->max_key == MAX_NONE)
        return c->min_key == MIN_NONE && c->max_key == MAX_NONE;
    return c->count > 0 && c->min_key <= c->max_key && !isnan(sf__from_order_key(c->min_key)) &&
           !isnan(sf__from_order_key(c->max_key));
}

static sf_status window_decode(void *state, const void *bytes, size_t n)
{
    window_state *s = state;
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, nby, flags;
    uint64_t bucket_us, untimed, ngroups;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == WINDOW_FORMAT, SF_ERR_PARSE, "window state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &nby));
    SF_CHECK(nby == s->cfg->nby, SF_ERR_PARSE, "window state: %u key columns, expected %d", nby,
             s->cfg->nby);
    SF_CALL(sf_rd_u8(&r, &flags));
    SF_CHECK(flags == shape_flags(s), SF_ERR_PARSE, "window state: flags %u, expected %u", flags,
             shape_flags(s));
    SF_CALL(sf_rd_u64(&r, &bucket_us));
    SF_CHECK(bucket_us == (uint64_t)s->bucket_us, SF_ERR_PARSE,
             "window state: buckets of %llu us, expected %lld", (unsigned long long)bucket_us,
             (long long)s->bucket_us);
    SF_CALL(sf_rd_u64(&r, &untimed));
    SF_CALL(sf_rd_u64(&r, &ngroups));
    SF_CHECK(nby != 0 || ngroups == 1, SF_ERR_PARSE, "window state: %llu groups without by:",
             (unsigned long long)ngroups);
    /* A group takes at least 4 + 8 bytes. */
    SF_CHECK(ngroups <= (n - r.off) / 12, SF_ERR_PARSE, "window state: %llu groups in %zu bytes",
             (unsigned long long)ngroups, n);
    SF_CALL(window_clear(s));
    const bool has_value = s->value_col >= 0, has_flag = s->flag != NULL;
    const size_t cell_min = 16 + (has_flag ? 8 : 0) + (has_value ? 24 + 3 : 0);
    const int64_t lowest = floor_div(INT64_MIN, s->bucket_us), highest = INT64_MAX / s->bucket_us;
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < ngroups; i++) {
        uint32_t gi;
        SF_CALL(sf__groups_decode_key(&s->groups, &r, &prev, &prev_len, &gi));
        if (nby != 0) SF_CALL(new_group(s, gi));
        uint64_t ncells;
        SF_CALL(sf_rd_u64(&r, &ncells));
        SF_CHECK(nby == 0 || ncells >= 1, SF_ERR_PARSE, "window state: group %llu has no buckets",
                 (unsigned long long)i);
        SF_CHECK(ncells <= (n - r.off) / cell_min, SF_ERR_PARSE,
                 "window state: %llu buckets in %zu bytes", (unsigned long long)ncells, n);
        int64_t last = 0;
        for (uint64_t j = 0; j < ncells; j++) {
            cell f = {0, gi, CELL_NONE, 0, 0, 0, MIN_NONE, MAX_NONE};
            sf_xsum sum;
            sf_xsum_init(&sum);
            SF_CALL(sf_rd_i64(&r, &f.bucket));
            SF_CHECK(f.bucket >= lowest && f.bucket <= highest, SF_ERR_PARSE,
                     "window state: bucket %lld is out of range", (long long)f.bucket);
            SF_CHECK(j == 0 || f.bucket > last, SF_ERR_PARSE, "window state: buckets out of order");
            last = f.bucket;
            SF_CALL(sf_rd_u64(&r, &f.rows));
            SF_CHECK(f.rows >= 1, SF_ERR_PARSE, "window state: an empty bucket");
            f.count = f.rows;
            if (has_flag) {
                SF_CALL(sf_rd_u64(&r, &f.flagged));
                SF_CHECK(f.flagged <= f.rows, SF_ERR_PARSE, "window state: more flagged rows than rows");
            }
            if (has_value) {
                SF_CALL(sf_rd_u64(&r, &f.count));
                SF_CALL(sf_rd_u64(&r, &f.min_key));
                SF_CALL(sf_rd_u64(&r, &f.max_key));
                SF_CALL(sf_xsum_decode(&sum, &r));
                SF_CHECK(f.count <= f.rows, SF_ERR_PARSE, "window state: more values than rows");
                SF_CHECK(extremes_valid(&f) && (f.count > 0 || sf_xsum_is_zero(&sum)), SF_ERR_PARSE,
                         "window state: inconsistent values of bucket %lld", (long long)f.bucket);
            }
            uint32_t ci;
            bool created;
            SF_CALL(cell_of(s, gi, f.bucket, &ci, &created));
            SF_CHECK(created, SF_ERR_PARSE, "window state: duplicate bucket");
            cell_add(s, ci, &f, &sum);
        }
    }
    SF_CHECK(r.off == n, SF_ERR_PARSE, "window state: %zu trailing bytes", n - r.off);
    s->untimed = untimed;
    return SF_OK;
}

/* ---- results ------------------------------------------------------------------ */

static void write_cell(const window_state *s, uint32_t ci, sf_json *j)
{
    const cell *c = &s->c[ci];
    sf_json_obj_begin(j);
    sf_json_key(j, "rows");
    sf_json_uint(j, c->rows);
    sf_json_key(j, "count");
    sf_json_uint(j, c->count);
    if (s->value_col >= 0) {
        sf_json_key(j, "sum");
        sf_json_num(j, sf_xsum_round(&s->sum[ci]));
        sf_json_key(j, "mean");
        sf_json_num(j, exact_mean(&s->sum[ci], c->count));
        sf_json_key(j, "min");
        sf_json_num(j, c->min_key == MIN_NONE ? NAN : sf__from_order_key(c->min_key));
        sf_json_key(j, "max");
        sf_json_num(j, c->max_key == MAX_NONE ? NAN : sf__from_order_key(c->max_key));
    }
    if (s->flag != NULL) {
        sf_json_key(j, "flagged");
        sf_json_uint(j, c->flagged);
        sf_json_key(j, "rate");
        sf_json_num(j, (double)c->flagged / (double)c->rows);
    }
    sf_json_obj_end(j);
}

static void write_buckets(const window_state *s, uint32_t gi, bref *refs, sf_json *j)
{
    group_cells(s, gi, refs);
    sf_json_key(j, "buckets");
    sf_json_obj_begin(j);
    for (uint32_t k = 0; k < s->g[gi].ncells; k++) {
        char iso[64];
        size_t len = sf_timestamp_format(bucket_start(refs[k].bucket, s->bucket_us), iso, sizeof iso);
        sf_json_keyn(j, iso, len);
        write_cell(s, refs[k].ci, j);
    }
    sf_json_obj_end(j);
}

static sf_status window_report(const void *state, sf_json *j)
{
    const window_state *s = state;
    sf_status rc = SF_OK;
    bref *refs = NULL;
    uint32_t *order = NULL;
    size_t *toff = NULL, *tlen = NULL;
    sf_buf text;
    sf_buf_init(&text);
    SF_CALL_GOTO(cell_refs(s, &refs), done);
    sf_json_obj_begin(j);
    sf_json_key(j, "bucket_us");
    sf_json_int(j, s->bucket_us);
    sf_json_key(j, "untimed");
    sf_json_uint(j, s->untimed);
    if (s->cfg->nby == 0) {
        write_buckets(s, 0, refs, j);
    } else {
        SF_CALL_GOTO(sf__groups_text_order(&s->groups, &text, &order, &toff, &tlen), done);
        sf_json_key(j, "groups");
        sf_json_obj_begin(j);
        for (uint32_t i = 0; i < s->groups.n; i++) {
            uint32_t gi = order[i];
            /* Printed keys are unique (see agent.h); two alike would make
             * a JSON object with a repeated key. */
            SF_CHECK_GOTO(i == 0 || tlen[gi] != tlen[order[i - 1]] ||
                              memcmp(text.data + toff[gi], text.data + toff[order[i - 1]], tlen[gi]) != 0,
                          SF_ERR_INTERNAL, done, "window: two group keys print alike");
            sf_json_keyn(j, (const char *)text.data + toff[gi], tlen[gi]);
            sf_json_obj_begin(j);
            write_buckets(s, gi, refs, j);
            sf_json_obj_end(j);
        }
        sf_json_obj_end(j);
    }
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(refs);
    free(order);
    free(toff);
    free(tlen);
    sf_buf_fini(&text);
    return rc;
}

/* Totals of a set of cells, for stat(). */
typedef struct totals {
    uint64_t rows, count, flagged, min_key, max_key;
    sf_xsum sum;
} totals;

static void totals_add(const window_state *s, totals *t, uint32_t ci)
{
    const cell *c = &s->c[ci];
    t->rows += c->rows;
    t->count += c->count;
    t->flagged += c->flagged;
    if (c->min_key < t->min_key) t->min_key = c->min_key;
    if (c->max_key > t->max_key) t->max_key = c->max_key;
    if (s->value_col >= 0) sf_xsum_merge(&t->sum, &s->sum[ci]);
}

/* The value of statistic `what` over totals t; SF_ERR_ARG if the agent does
 * not have it. */
static sf_status totals_value(const window_state *s, const totals *t, const char *what, double *out)
{
    const char *id = id_of(s->cfg);
    bool value = s->value_col >= 0, flag = s->flag != NULL;
    if (strcmp(what, "rows") == 0) {
        *out = (double)t->rows;
    } else if (strcmp(what, "count") == 0) {
        *out = (double)t->count;
    } else if (strcmp(what, "mean") == 0 || strcmp(what, "sum") == 0 || strcmp(what, "min") == 0 ||
               strcmp(what, "max") == 0) {
        SF_CHECK(value, SF_ERR_ARG, "agent '%s': window has '%s' only with column:", id, what);
        if (what[0] == 's')
            *out = sf_xsum_round(&t->sum);
        else if (what[1] == 'e')
            *out = exact_mean(&t->sum, t->count);
        else if (what[1] == 'i')
            *out = t->min_key == MIN_NONE ? NAN : sf__from_order_key(t->min_key);
        else
            *out = t->max_key == MAX_NONE ? NAN : sf__from_order_key(t->max_key);
    } else if (strcmp(what, "flagged") == 0 || strcmp(what, "rate") == 0) {
        SF_CHECK(flag, SF_ERR_ARG, "agent '%s': window has '%s' only with flag:", id, what);
        *out = what[0] == 'f' ? (double)t->flagged
                              : t->rows ? (double)t->flagged / (double)t->rows : NAN;
    } else {
        SF_CHECK(false, SF_ERR_ARG,
                 "agent '%s': window has no statistic '%s' (rows, count, mean, sum, min, max, "
                 "flagged, rate)",
                 id, what);
    }
    return SF_OK;
}

static void totals_init(totals *t)
{
    t->rows = t->count = t->flagged = 0;
    t->min_key = MIN_NONE;
    t->max_key = MAX_NONE;
    sf_xsum_init(&t->sum);
}

static sf_status window_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                             double *out)
{
    const window_state *s = state;
    totals t;
    totals_init(&t);
    if (key == NULL) {
        for (uint32_t ci = 1; ci < s->cells.n; ci++) totals_add(s, &t, ci);
        /* Rows seen include those without a time; they are in no group. */
        t.rows += s->untimed;
    } else {
        uint32_t gi = sf__groups_lookup(&s->groups, key, keylen);
        SF_CHECK(gi != SF__NO_GROUP, SF_ERR_ARG, "agent '%s': no such group", id_of(s->cfg));
        for (uint32_t ci = s->g[gi].head; ci != CELL_NONE; ci = s->c[ci].next) totals_add(s, &t, ci);
    }
    return totals_value(s, &t, name, out);
}

bool sf__window_is(const sf_agent_ops *ops)
{
    return ops == &sf__agent_window;
}

int64_t sf__window_bucket_us(const void *state)
{
    return ((const window_state *)state)->bucket_us;
}

sf_status sf__window_series(const void *state, const uint8_t *key, size_t keylen, const char *what,
                            size_t *n, int64_t **start_us, double **values)
{
    const window_state *s = state;
    *n = 0;
    *start_us = NULL;
    *values = NULL;
    /* Check the name once, on empty totals, so that an absent group and an
     * unknown statistic are told apart. */
    totals t;
    totals_init(&t);
    double v;
    SF_CALL(totals_value(s, &t, what, &v));
    uint32_t gi = sf__groups_lookup(&s->groups, key != NULL ? key : (const uint8_t *)"", keylen);
    if (gi == SF__NO_GROUP || s->g[gi].ncells == 0) return SF_OK;
    uint32_t m = s->g[gi].ncells;
    sf_status rc = SF_OK;
    bref *refs = malloc((size_t)m * sizeof *refs);
    int64_t *st = malloc((size_t)m * sizeof *st);
    double *val = malloc((size_t)m * sizeof *val);
    SF_CHECK_GOTO(refs && st && val, SF_ERR_NOMEM, fail, "agent '%s': out of memory for %u buckets",
                  id_of(s->cfg), m);
    group_cells(s, gi, refs);
    for (uint32_t i = 0; i < m; i++) {
        totals_init(&t);
        totals_add(s, &t, refs[i].ci);
        st[i] = bucket_start(refs[i].bucket, s->bucket_us);
        SF_CALL_GOTO(totals_value(s, &t, what, &val[i]), fail);
    }
    free(refs);
    *n = m;
    *start_us = st;
    *values = val;
    return SF_OK;
fail:
    free(refs);
    free(st);
    free(val);
    return rc;
}

const sf_agent_ops sf__agent_window = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "window",
    .aspect = "performance",
    .state_size = sizeof(window_state),
    .check = window_check,
    .init = window_init,
    .process = window_process,
    .merge = window_merge,
    .encode = window_encode,
    .decode = window_decode,
    .report = window_report,
    .destroy = window_destroy,
    .columns = window_columns,
    .stat = window_stat,
};
