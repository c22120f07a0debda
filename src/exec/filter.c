/* Row filters (shardflow/filter.h): a recursive-descent parser into a small
 * expression tree, bound to a schema, evaluated row by row with
 * short-circuit and/or. String equality compares dictionary codes: each
 * string literal is looked up once per call in the batch's dictionary. */
#define _POSIX_C_SOURCE 200809L
#include "shardflow/filter.h"

#include "shardflow/buf.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_NODES 256
#define MAX_STR_LITERALS 64

typedef enum { N_OR, N_AND, N_NOT, N_CMP, N_ISNULL } node_kind;
typedef enum { OP_EQ, OP_NE, OP_LT, OP_LE, OP_GT, OP_GE } cmp_op;
typedef enum { L_NUM, L_STR } lit_kind;

typedef struct node {
    node_kind kind;
    int a, b;            /* children (N_OR, N_AND: a, b; N_NOT: a) */
    int colname;         /* index into names */
    int col;             /* bound column index */
    cmp_op op;
    lit_kind lit;
    double num;          /* L_NUM (and timestamps after binding, as int64 in inum) */
    int64_t inum;
    bool int_exact;      /* num is an integer that fits int64 exactly */
    char *str;           /* L_STR */
    size_t len;
    int str_slot;        /* index among string literals compared by equality */
    bool negate;         /* N_ISNULL: is not null */
    char itext[24];      /* L_NUM with int_exact: inum as "%lld" prints it */
} node;

struct sf_filter {
    node nodes[MAX_NODES];
    int nnodes, root;
    char *names[MAX_NODES];
    int nnames;
    int nstr;            /* string literals compared with == / != on string columns */
    const sf_schema *schema;
    char *file;
    int line;
    char key[160];      /* the option as messages name it ("agent 'x': where") */
    char *text;
};

/* ---- parsing ------------------------------------------------------------- */

typedef struct parser {
    sf_filter *f;
    const char *s, *p;
    sf_status rc;
    int depth;
} parser;

static sf_status perr(parser *ps, const char *what)
{
    if (ps->rc != SF_OK) return ps->rc;
    ps->rc = sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s:%d: %s: %s at column %d of \"%s\"",
                          ps->f->file, ps->f->line, ps->f->key, what, (int)(ps->p - ps->s) + 1, ps->s);
    return ps->rc;
}

static void skip_ws(parser *ps)
{
    while (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r') ps->p++;
}

static bool word_is(parser *ps, const char *w)
{
    skip_ws(ps);
    size_t n = strlen(w);
    if (strncmp(ps->p, w, n) != 0) return false;
    char c = ps->p[n];
    return !(isalnum((unsigned char)c) || c == '_' || c == '.');
}

static int new_node(parser *ps)
{
    if (ps->f->nnodes >= MAX_NODES) {
        perr(ps, "expression too long");
        return -1;
    }
    node *n = &ps->f->nodes[ps->f->nnodes];
    memset(n, 0, sizeof *n);
    n->col = -1;
    n->str_slot = -1;
    return ps->f->nnodes++;
}

static int add_name(parser *ps, const char *s, size_t n)
{
    sf_filter *f = ps->f;
    for (int i = 0; i < f->nnames; i++)
        if (strlen(f->names[i]) == n && memcmp(f->names[i], s, n) == 0) return i;
    if (f->nnames >= MAX_NODES) return -1;
    char *c = malloc(n + 1);
    if (c == NULL) {
        ps->rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (filter)");
        return -1;
    }
    memcpy(c, s, n);
    c[n] = '\0';
    f->names[f->nnames] = c;
    return f->nnames++;
}

static int parse_or(parser *ps);

static int parse_compare(parser *ps)
{
    skip_ws(ps);
    const char *start = ps->p;
    size_t len;
    if (*ps->p == '`') {
        const char *e = strchr(ps->p + 1, '`');
        if (e == NULL) return perr(ps, "unterminated `column`"), -1;
        start = ps->p + 1;
        len = (size_t)(e - start);
        ps->p = e + 1;
    } else {
        if (!(isalpha((unsigned char)*ps->p) || *ps->p == '_')) return perr(ps, "expected a column name"), -1;
        while (isalnum((unsigned char)*ps->p) || *ps->p == '_' || *ps->p == '.') ps->p++;
        len = (size_t)(ps->p - start);
    }
    if (len == 0) return perr(ps, "empty column name"), -1;
    int k = new_node(ps);
    if (k < 0) return -1;
    int name = add_name(ps, start, len);
    if (name < 0) return perr(ps, "too many columns"), -1;
    node *n = &ps->f->nodes[k];
    n->colname = name;
    if (word_is(ps, "is")) {
        ps->p += 2;
        n->kind = N_ISNULL;
        if (word_is(ps, "not")) {
            ps->p += 3;
            n->negate = true;
        }
        if (!word_is(ps, "null")) return perr(ps, "expected null after 'is'"), -1;
        ps->p += 4;
        return k;
    }
    n->kind = N_CMP;
    skip_ws(ps);
    const char *o = ps->p;
    if (strncmp(o, "==", 2) == 0) n->op = OP_EQ, ps->p += 2;
    else if (strncmp(o, "!=", 2) == 0) n->op = OP_NE, ps->p += 2;
    else if (strncmp(o, "<=", 2) == 0) n->op = OP_LE, ps->p += 2;
    else if (strncmp(o, ">=", 2) == 0) n->op = OP_GE, ps->p += 2;
    else if (*o == '<') n->op = OP_LT, ps->p += 1;
    else if (*o == '>') n->op = OP_GT, ps->p += 1;
    else if (*o == '=') return perr(ps, "use == for equality"), -1;
    else return perr(ps, "expected a comparison (== != < <= > >=) or 'is null'"), -1;
    skip_ws(ps);
    if (*ps->p == '"' || *ps->p == '\'') {
        char q = *ps->p++;
        size_t cap = strlen(ps->p) + 1, m = 0;
        char *buf = malloc(cap);
        if (buf == NULL) return perr(ps, "out of memory"), -1;
        while (*ps->p && *ps->p != q) {
            if (*ps->p == '\\' && (ps->p[1] == q || ps->p[1] == '\\')) ps->p++;
            buf[m++] = *ps->p++;
        }
        if (*ps->p != q) {
            free(buf);
            return perr(ps, "unterminated string"), -1;
        }
        ps->p++;
        buf[m] = '\0';
        n = &ps->f->nodes[k];
        n->lit = L_STR;
        n->str = buf;
        n->len = m;
        return k;
    }
    char *end;
    errno = 0;
    double v = strtod(ps->p, &end);
    if (end == ps->p || errno == ERANGE || !isfinite(v)) return perr(ps, "expected a number or a quoted string"), -1;
    /* An integer literal is read exactly: int64 columns hold values (IDs,
     * hashes) that a double cannot. */
    bool digits_only = true;
    for (const char *q = ps->p + (*ps->p == '-' || *ps->p == '+'); q < end; q++)
        if (!isdigit((unsigned char)*q)) digits_only = false;
    n = &ps->f->nodes[k];
    n->lit = L_NUM;
    n->num = v;
    if (digits_only) {
        errno = 0;
        long long iv = strtoll(ps->p, NULL, 10);
        n->int_exact = errno != ERANGE;
        n->inum = n->int_exact ? (int64_t)iv : 0;
    } else {
        n->int_exact = v == floor(v) && fabs(v) < 9.2e18;
        n->inum = n->int_exact ? (int64_t)v : 0;
    }
    if (n->int_exact) (void)snprintf(n->itext, sizeof n->itext, "%lld", (long long)n->inum);
    ps->p = end;
    return k;
}

static int parse_unary_nested(parser *ps);

/* Bounds the recursion: nesting comes from the user's text. */
static int parse_unary(parser *ps)
{
    if (ps->depth >= 100) return perr(ps, "expression nested too deeply"), -1;
    ps->depth++;
    int k = parse_unary_nested(ps);
    ps->depth--;
    return k;
}

static int parse_unary_nested(parser *ps)
{
    if (word_is(ps, "not")) {
        ps->p += 3;
        int a = parse_unary(ps);
        if (a < 0) return -1;
        int k = new_node(ps);
        if (k < 0) return -1;
        ps->f->nodes[k].kind = N_NOT;
        ps->f->nodes[k].a = a;
        return k;
    }
    skip_ws(ps);
    if (*ps->p == '(') {
        ps->p++;
        int e = parse_or(ps);
        if (e < 0) return -1;
        skip_ws(ps);
        if (*ps->p != ')') return perr(ps, "expected ')'"), -1;
        ps->p++;
        return e;
    }
    return parse_compare(ps);
}

static int parse_and(parser *ps)
{
    int a = parse_unary(ps);
    while (a >= 0 && word_is(ps, "and")) {
        ps->p += 3;
        int b = parse_unary(ps);
        if (b < 0) return -1;
        int k = new_node(ps);
        if (k < 0) return -1;
        ps->f->nodes[k].kind = N_AND;
        ps->f->nodes[k].a = a;
        ps->f->nodes[k].b = b;
        a = k;
    }
    return a;
}

static int parse_or(parser *ps)
{
    int a = parse_and(ps);
    while (a >= 0 && word_is(ps, "or")) {
        ps->p += 2;
        int b = parse_and(ps);
        if (b < 0) return -1;
        int k = new_node(ps);
        if (k < 0) return -1;
        ps->f->nodes[k].kind = N_OR;
        ps->f->nodes[k].a = a;
        ps->f->nodes[k].b = b;
        a = k;
    }
    return a;
}

static const char *op_text(cmp_op op)
{
    static const char *const t[] = {"==", "!=", "<", "<=", ">", ">="};
    return t[op];
}

/* Canonical text: fully parenthesised, literals normalised. */
/* A column name as the parser reads it back: bare when it is an identifier
 * and not a keyword, else in backquotes (a name cannot hold a backquote). */
static sf_status name_text(const char *name, sf_buf *out)
{
    static const char *const kw[] = {"and", "or", "not", "is", "null"};
    bool bare = isalpha((unsigned char)name[0]) || name[0] == '_';
    for (const char *q = name; *q && bare; q++)
        if (!(isalnum((unsigned char)*q) || *q == '_' || *q == '.')) bare = false;
    for (size_t i = 0; i < sizeof kw / sizeof kw[0] && bare; i++)
        if (strcmp(name, kw[i]) == 0) bare = false;
    if (!bare) SF_CALL(sf_buf_append(out, "`", 1));
    SF_CALL(sf_buf_append(out, name, strlen(name)));
    return bare ? SF_OK : sf_buf_append(out, "`", 1);
}

static sf_status to_text(const sf_filter *f, int k, sf_buf *out)
{
    const node *n = &f->nodes[k];
    char tmp[64];
    switch (n->kind) {
    case N_OR:
    case N_AND:
        SF_CALL(sf_buf_append(out, "(", 1));
        SF_CALL(to_text(f, n->a, out));
        SF_CALL(sf_buf_append(out, n->kind == N_OR ? " or " : " and ", n->kind == N_OR ? 4 : 5));
        SF_CALL(to_text(f, n->b, out));
        return sf_buf_append(out, ")", 1);
    case N_NOT:
        SF_CALL(sf_buf_append(out, "(not ", 5));
        SF_CALL(to_text(f, n->a, out));
        return sf_buf_append(out, ")", 1);
    case N_ISNULL:
        SF_CALL(sf_buf_append(out, "(", 1));
        SF_CALL(name_text(f->names[n->colname], out));
        SF_CALL(sf_buf_append(out, n->negate ? " is not null)" : " is null)", n->negate ? 13 : 9));
        return SF_OK;
    case N_CMP:
        SF_CALL(sf_buf_append(out, "(", 1));
        SF_CALL(name_text(f->names[n->colname], out));
        SF_CALL(sf_buf_append(out, " ", 1));
        SF_CALL(sf_buf_append(out, op_text(n->op), strlen(op_text(n->op))));
        SF_CALL(sf_buf_append(out, " ", 1));
        if (n->lit == L_NUM) {
            /* Integers exactly (and -0 as 0), other numbers as %.17g. */
            int len = n->int_exact ? snprintf(tmp, sizeof tmp, "%lld", (long long)n->inum)
                                   : snprintf(tmp, sizeof tmp, "%.17g", n->num);
            SF_CALL(sf_buf_append(out, tmp, (size_t)len));
        } else {
            SF_CALL(sf_buf_append(out, "\"", 1));
            for (size_t i = 0; i < n->len; i++) {
                if (n->str[i] == '"' || n->str[i] == '\\') SF_CALL(sf_buf_append(out, "\\", 1));
                SF_CALL(sf_buf_append(out, &n->str[i], 1));
            }
            SF_CALL(sf_buf_append(out, "\"", 1));
        }
        return sf_buf_append(out, ")", 1);
    }
    return SF_OK;
}

sf_status sf_filter_parse(const char *expr, const char *file, int line, const char *key,
                          sf_filter **out)
{
    *out = NULL;
    sf_filter *f = calloc(1, sizeof *f);
    SF_CHECK(f != NULL, SF_ERR_NOMEM, "out of memory (filter)");
    f->file = strdup(file ? file : "<workflow>");
    f->line = line;
    snprintf(f->key, sizeof f->key, "%s", key ? key : "where");
    parser ps = {f, expr ? expr : "", expr ? expr : "", SF_OK, 0};
    sf_status rc = SF_OK;
    if (f->file == NULL) {
        rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (filter)");
        goto fail;
    }
    skip_ws(&ps);
    if (*ps.p == '\0') {
        rc = perr(&ps, "empty expression");
        goto fail;
    }
    f->root = parse_or(&ps);
    if (f->root < 0) {
        rc = ps.rc != SF_OK ? ps.rc : perr(&ps, "syntax error");
        goto fail;
    }
    skip_ws(&ps);
    if (*ps.p != '\0') {
        rc = perr(&ps, "unexpected text (combine comparisons with and / or)");
        goto fail;
    }
    sf_buf t;
    sf_buf_init(&t);
    rc = to_text(f, f->root, &t);
    if (rc == SF_OK) rc = sf_buf_append(&t, "", 1);
    if (rc != SF_OK) {
        sf_buf_fini(&t);
        goto fail;
    }
    f->text = (char *)t.data;
    *out = f;
    return SF_OK;
fail:
    sf_filter_destroy(&f);
    return rc;
}

void sf_filter_destroy(sf_filter **pf)
{
    if (pf == NULL || *pf == NULL) return;
    sf_filter *f = *pf;
    for (int i = 0; i < f->nnodes; i++) free(f->nodes[i].str);
    for (int i = 0; i < f->nnames; i++) free(f->names[i]);
    free(f->file);
    free(f->text);
    free(f);
    *pf = NULL;
}

int sf_filter_ncolumns(const sf_filter *f) { return f->nnames; }
const char *sf_filter_column(const sf_filter *f, int i) { return f->names[i]; }
const char *sf_filter_text(const sf_filter *f) { return f->text; }

/* The equalities of the and-tree under node k (see the header). */
static void equalities_at(const sf_filter *f, int k, const char **cols, const char **vals, size_t *lens, int max,
                          int *n)
{
    const node *nd = &f->nodes[k];
    if (nd->kind == N_AND) {
        equalities_at(f, nd->a, cols, vals, lens, max, n);
        equalities_at(f, nd->b, cols, vals, lens, max, n);
        return;
    }
    if (nd->kind != N_CMP || nd->op != OP_EQ) return;
    const char *text;
    size_t len;
    if (nd->lit == L_STR) {
        /* Bound to a timestamp column the text is a time, not a key. */
        if (f->schema != NULL && nd->col >= 0 && f->schema->fields[nd->col].type != SF_STRING) return;
        text = nd->str;
        len = nd->len;
    } else {
        if (!nd->int_exact) return;
        if (f->schema != NULL && nd->col >= 0 && f->schema->fields[nd->col].type != SF_INT64) return;
        text = nd->itext;
        len = strlen(nd->itext);
    }
    if (*n < max) {
        cols[*n] = f->names[nd->colname];
        vals[*n] = text;
        lens[*n] = len;
    }
    (*n)++;
}

int sf_filter_equalities(const sf_filter *f, const char **cols, const char **vals, size_t *lens, int max)
{
    int n = 0;
    if (f != NULL && f->nnodes > 0) equalities_at(f, f->root, cols, vals, lens, max, &n);
    return n;
}

sf_status sf_filter_bind(sf_filter *f, const sf_schema *s)
{
    f->schema = s;
    f->nstr = 0;
    for (int k = 0; k < f->nnodes; k++) {
        node *n = &f->nodes[k];
        if (n->kind != N_CMP && n->kind != N_ISNULL) continue;
        const char *name = f->names[n->colname];
        n->col = sf_schema_find(s, name);
        if (n->col < 0) {
            char cols[1024];
            sf_schema_format_columns(s, cols, sizeof cols);
            return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "%s:%d: %s: no column '%s' (columns: %s)",
                                f->file, f->line, f->key, name, cols);
        }
        if (n->kind == N_ISNULL) continue;
        sf_type t = s->fields[n->col].type;
        if (t == SF_STRING) {
            SF_CHECK(n->lit == L_STR, SF_ERR_CONFIG, "%s:%d: %s: column '%s' is a string: compare it with a quoted string",
                     f->file, f->line, f->key, name);
            if (n->op == OP_EQ || n->op == OP_NE) {
                SF_CHECK(f->nstr < MAX_STR_LITERALS, SF_ERR_CONFIG, "%s:%d: %s: too many string comparisons",
                         f->file, f->line, f->key);
                n->str_slot = f->nstr++;
            }
        } else if (t == SF_TIMESTAMP) {
            if (n->lit == L_STR) {
                int64_t us;
                SF_CHECK(sf_timestamp_parse(n->str, n->len, &us), SF_ERR_CONFIG,
                         "%s:%d: %s: '%s' is not a timestamp (YYYY-MM-DD HH:MM:SS[.ffffff]) for column '%s'",
                         f->file, f->line, f->key, n->str, name);
                n->inum = us;
                n->num = (double)us;
                n->int_exact = true;
            } else {
                SF_CHECK(n->int_exact, SF_ERR_CONFIG,
                         "%s:%d: %s: compare timestamp column '%s' with an integer (microseconds) or a quoted timestamp",
                         f->file, f->line, f->key, name);
            }
        } else {
            SF_CHECK(n->lit == L_NUM, SF_ERR_CONFIG, "%s:%d: %s: column '%s' is %s: compare it with a number",
                     f->file, f->line, f->key, name, sf_type_name(t));
        }
    }
    return SF_OK;
}

/* ---- evaluation ------------------------------------------------------------ */

typedef struct eval_ctx {
    const sf_filter *f;
    const sf_batch *b;
    int64_t code[MAX_STR_LITERALS]; /* -1: the literal is not in this batch's dictionary */
} eval_ctx;

static inline bool cmp3(int c, cmp_op op)
{
    switch (op) {
    case OP_EQ: return c == 0;
    case OP_NE: return c != 0;
    case OP_LT: return c < 0;
    case OP_LE: return c <= 0;
    case OP_GT: return c > 0;
    case OP_GE: return c >= 0;
    }
    return false;
}

static bool eval_cmp(const eval_ctx *e, const node *n, size_t r)
{
    const sf_column *c = &e->b->cols[n->col];
    if (sf_col_is_null(c, r)) return false;
    switch (c->type) {
    case SF_STRING: {
        if (n->str_slot >= 0) {
            bool eq = e->code[n->str_slot] >= 0 && (int64_t)c->code[r] == e->code[n->str_slot];
            return n->op == OP_EQ ? eq : !eq;
        }
        size_t len;
        const char *s = sf_dict_str(&c->dict, c->code[r], &len);
        size_t m = len < n->len ? len : n->len;
        int cm = m ? memcmp(s, n->str, m) : 0;
        if (cm == 0) cm = len < n->len ? -1 : len > n->len ? 1 : 0;
        return cmp3(cm, n->op);
    }
    case SF_FLOAT64: {
        double v = c->f64[r], x = n->num;
        switch (n->op) {
        case OP_EQ: return v == x;
        case OP_NE: return v != x;
        case OP_LT: return v < x;
        case OP_LE: return v <= x;
        case OP_GT: return v > x;
        case OP_GE: return v >= x;
        }
        return false;
    }
    default: {
        int64_t v = c->i64[r];
        if (n->int_exact) return cmp3(v < n->inum ? -1 : v > n->inum, n->op);
        /* A fractional literal against an integer: compare as doubles, exact
         * for |v| < 2^53 and consistent beyond. */
        double dv = (double)v;
        return cmp3(dv < n->num ? -1 : dv > n->num, n->op);
    }
    }
}

static bool eval_node(const eval_ctx *e, int k, size_t r)
{
    const node *n = &e->f->nodes[k];
    switch (n->kind) {
    case N_OR: return eval_node(e, n->a, r) || eval_node(e, n->b, r);
    case N_AND: return eval_node(e, n->a, r) && eval_node(e, n->b, r);
    case N_NOT: return !eval_node(e, n->a, r);
    case N_ISNULL: {
        bool isnull = sf_col_is_null(&e->b->cols[n->col], r);
        return n->negate ? !isnull : isnull;
    }
    case N_CMP: return eval_cmp(e, n, r);
    }
    return false;
}

/* A conjunction of integer comparisons (e.g. status >= 400 and status <
 * 500), each an inclusive range [lo, hi] of one non-null integer column:
 * evaluated per row as one unsigned compare per term, without the tree. */
#define MAX_RANGES 4
typedef struct int_range {
    const int64_t *v;
    uint64_t lo, span; /* v - lo <= span, in unsigned (wrapping) arithmetic */
} int_range;

/* Adds node k to the conjunction; false if it is not one (then the caller
 * uses the general evaluator). Same truth value as eval_node on every row:
 * the column has no nulls and the literal is an exact integer. */
static bool collect_ranges(const sf_filter *f, const sf_batch *b, int k, int_range *t, int *nt)
{
    const node *nd = &f->nodes[k];
    if (nd->kind == N_AND)
        return collect_ranges(f, b, nd->a, t, nt) && collect_ranges(f, b, nd->b, t, nt);
    if (nd->kind != N_CMP || !nd->int_exact || nd->op == OP_NE || *nt == MAX_RANGES) return false;
    const sf_column *c = &b->cols[nd->col];
    if (c->valid != NULL || c->type == SF_STRING || c->type == SF_FLOAT64) return false;
    int64_t lo = INT64_MIN, hi = INT64_MAX, x = nd->inum;
    switch (nd->op) {
    case OP_EQ: lo = hi = x; break;
    case OP_LT: if (x == INT64_MIN) return false; hi = x - 1; break;
    case OP_LE: hi = x; break;
    case OP_GT: if (x == INT64_MAX) return false; lo = x + 1; break;
    case OP_GE: lo = x; break;
    default: return false;
    }
    /* Terms on the same column intersect. */
    for (int i = 0; i < *nt; i++)
        if (t[i].v == c->i64) {
            int64_t plo = (int64_t)t[i].lo, phi = (int64_t)(t[i].lo + t[i].span);
            if (lo < plo) lo = plo;
            if (hi > phi) hi = phi;
            if (lo > hi) return false; /* empty: rare, leave it to the tree */
            t[i].lo = (uint64_t)lo;
            t[i].span = (uint64_t)hi - (uint64_t)lo;
            return true;
        }
    t[*nt] = (int_range){c->i64, (uint64_t)lo, (uint64_t)hi - (uint64_t)lo};
    (*nt)++;
    return true;
}

sf_status sf_filter_eval(const sf_filter *f, const sf_batch *b, size_t begin, size_t end,
                         uint32_t *sel, size_t *n)
{
    *n = 0;
    SF_CHECK(f->schema != NULL, SF_ERR_INTERNAL, "filter used before it was bound");
    eval_ctx e;
    e.f = f;
    e.b = b;
    for (int k = 0; k < f->nnodes; k++) {
        const node *nd = &f->nodes[k];
        if (nd->kind != N_CMP && nd->kind != N_ISNULL) continue;
        SF_CHECK(nd->col < b->ncols && b->cols[nd->col].loaded, SF_ERR_INTERNAL,
                 "filter column '%s' is not loaded", f->names[nd->colname]);
        if (nd->str_slot >= 0) {
            uint32_t code;
            e.code[nd->str_slot] = sf_dict_find(&b->cols[nd->col].dict, nd->str, nd->len, &code) ? (int64_t)code : -1;
        }
    }
    size_t m = 0;
    const node *root = &f->nodes[f->root];
    const sf_column *rc = root->kind == N_CMP ? &b->cols[root->col] : NULL;
    int_range t[MAX_RANGES];
    int nt = 0;
    if (root->kind == N_AND && collect_ranges(f, b, f->root, t, &nt)) {
        if (nt == 1) {
            const int64_t *v = t[0].v;
            const uint64_t lo = t[0].lo, span = t[0].span;
            for (size_t r = begin; r < end; r++) {
                sel[m] = (uint32_t)r;
                m += (uint64_t)v[r] - lo <= span;
            }
        } else {
            for (size_t r = begin; r < end; r++) {
                bool ok = true;
                for (int i = 0; i < nt; i++) ok &= (uint64_t)t[i].v[r] - t[i].lo <= t[i].span;
                sel[m] = (uint32_t)r;
                m += ok;
            }
        }
    } else if (rc != NULL && rc->valid == NULL && rc->type != SF_STRING && rc->type != SF_FLOAT64 && root->int_exact) {
        /* One integer comparison without nulls: a branch-free loop per operator. */
        const int64_t *v = rc->i64, x = root->inum;
        switch (root->op) {
/* Writes every row and advances only past those that match, so the loop
 * has no branch on the data. */
#define SF_FILTER_LOOP(cond)                                 \
    for (size_t r = begin; r < end; r++) {                   \
        sel[m] = (uint32_t)r;                                \
        m += (cond);                                         \
    }
        case OP_EQ: SF_FILTER_LOOP(v[r] == x) break;
        case OP_NE: SF_FILTER_LOOP(v[r] != x) break;
        case OP_LT: SF_FILTER_LOOP(v[r] < x) break;
        case OP_LE: SF_FILTER_LOOP(v[r] <= x) break;
        case OP_GT: SF_FILTER_LOOP(v[r] > x) break;
        case OP_GE: SF_FILTER_LOOP(v[r] >= x) break;
        }
    } else if (rc != NULL && rc->valid == NULL && rc->type == SF_STRING && root->str_slot >= 0) {
        /* String equality: compare dictionary codes. */
        int64_t code = e.code[root->str_slot];
        const uint32_t *v = rc->code;
        if (root->op == OP_EQ) {
            if (code >= 0) {
                SF_FILTER_LOOP((int64_t)v[r] == code)
            }
        } else {
            SF_FILTER_LOOP((int64_t)v[r] != code)
        }
#undef SF_FILTER_LOOP
    } else {
        for (size_t r = begin; r < end; r++)
            if (eval_node(&e, f->root, r)) sel[m++] = (uint32_t)r;
    }
    *n = m;
    return SF_OK;
}
