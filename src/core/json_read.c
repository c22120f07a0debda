/* The strict JSON reader of shardflow/jsonv.h.
 *
 * The document text is copied once and parsed in place: strings are
 * unescaped into their own bytes (an escape is never shorter than what it
 * stands for, so the write position never passes the read position) and
 * NUL-terminated over their closing quote; numbers point at their text.
 * Values live in an arena of large blocks, so a result with millions of
 * buckets costs a few allocations, not one per value. While a container is
 * open, its finished children wait on a stack shared by every level (a
 * nested container is complete before its parent continues) and move into
 * the arena, contiguous, when it closes.
 *
 * Objects with more than LINEAR_MAX keys get a sorted index of their
 * members (byte order of the keys): it finds duplicate keys at parse time
 * and makes sf_jv_get a binary search, which matters for results with many
 * groups looked up one key at a time. */
#include "shardflow/jsonv.h"

#include <math.h>
#include <stdalign.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LINEAR_MAX 8
#define BLOCK_MIN (64 * 1024)

typedef struct jv_member jv_member;

struct sf_jv {
    uint8_t type;
    uint8_t b;      /* SF_JV_BOOL */
    uint32_t n;     /* string bytes, number text bytes, items or members */
    union {
        const char *str;
        struct {
            const char *text;
            double v;
        } num;
        sf_jv *items;
        struct {
            jv_member *m;
            uint32_t *index; /* sorted member order when n > LINEAR_MAX, else NULL */
        } obj;
    } u;
};

struct jv_member {
    const char *key;
    uint32_t klen;
    sf_jv value;
};

typedef struct block {
    struct block *next;
    size_t used, cap;
    alignas(max_align_t) unsigned char data[];
} block;

struct sf_jv_doc {
    char *text;   /* the copy parsed in place */
    block *blocks;
    sf_jv root;
};

typedef struct parser {
    sf_jv_doc *doc;
    char *p;
    size_t len, pos;
    size_t line, line_start; /* for messages: newlines are only legal between tokens */
    sf_jv *vals;             /* finished items of the open arrays */
    size_t nvals, capvals;
    jv_member *mems;         /* finished members of the open objects */
    size_t nmems, capmems;
    const jv_member **sort;  /* scratch for the key index */
    size_t capsort;
} parser;

/* ---- arena ---------------------------------------------------------------- */

static void *arena_alloc(sf_jv_doc *d, size_t n)
{
    const size_t align = alignof(max_align_t);
    n = (n + align - 1) / align * align;
    block *b = d->blocks;
    if (b == NULL || b->cap - b->used < n) {
        size_t cap = n > BLOCK_MIN ? n : BLOCK_MIN;
        b = malloc(sizeof *b + cap);
        if (b == NULL) return NULL;
        b->used = 0;
        b->cap = cap;
        b->next = d->blocks;
        d->blocks = b;
    }
    void *p = b->data + b->used;
    b->used += n;
    return p;
}

/* ---- messages --------------------------------------------------------------- */

static sf_status fail(const parser *ps, const char *what)
{
    size_t col = ps->pos - ps->line_start + 1;
    return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, "JSON line %zu, column %zu: %s", ps->line, col,
                        what);
}

/* ---- lexical ---------------------------------------------------------------- */

static void skip_ws(parser *ps)
{
    while (ps->pos < ps->len) {
        char c = ps->p[ps->pos];
        if (c == '\n') {
            ps->pos++;
            ps->line++;
            ps->line_start = ps->pos;
        } else if (c == ' ' || c == '\t' || c == '\r') {
            ps->pos++;
        } else {
            break;
        }
    }
}

/* Length of the valid UTF-8 sequence at s (2..4), 0 if invalid (the same
 * rules as the writer: no overlong forms, no surrogates, <= U+10FFFF). */
static size_t utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t cp;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        cp = c & 0x0F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len > n) return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)))
        return 0;
    return len;
}

static int hex4(const char *s)
{
    int v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d;
        if (c >= '0' && c <= '9') d = c - '0';
        else if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
        else return -1;
        v = v * 16 + d;
    }
    return v;
}

static size_t put_utf8(char *w, uint32_t cp)
{
    if (cp < 0x80) {
        w[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        w[0] = (char)(0xC0 | (cp >> 6));
        w[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        w[0] = (char)(0xE0 | (cp >> 12));
        w[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        w[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    w[0] = (char)(0xF0 | (cp >> 18));
    w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    w[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    w[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The string at ps->pos (an opening quote), unescaped in place. */
static sf_status parse_string(parser *ps, const char **out, uint32_t *outlen)
{
    char *buf = ps->p;
    size_t r = ps->pos + 1, w = r;
    const size_t start = w;
    for (;;) {
        if (r >= ps->len) {
            ps->pos = r;
            return fail(ps, "unterminated string");
        }
        unsigned char c = (unsigned char)buf[r];
        if (c == '"') break;
        if (c < 0x20) {
            ps->pos = r;
            return fail(ps, "control character in a string (escape it)");
        }
        if (c == '\\') {
            if (r + 1 >= ps->len) {
                ps->pos = r;
                return fail(ps, "unterminated string");
            }
            char e = buf[r + 1];
            char lit = 0;
            switch (e) {
            case '"': lit = '"'; break;
            case '\\': lit = '\\'; break;
            case '/': lit = '/'; break;
            case 'b': lit = '\b'; break;
            case 'f': lit = '\f'; break;
            case 'n': lit = '\n'; break;
            case 'r': lit = '\r'; break;
            case 't': lit = '\t'; break;
            case 'u': break;
            default:
                ps->pos = r;
                return fail(ps, "invalid escape in a string");
            }
            if (e != 'u') {
                buf[w++] = lit;
                r += 2;
                continue;
            }
            int hi = r + 6 <= ps->len ? hex4(buf + r + 2) : -1;
            if (hi < 0) {
                ps->pos = r;
                return fail(ps, "invalid \\u escape (four hex digits expected)");
            }
            uint32_t cp = (uint32_t)hi;
            size_t used = 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF) {
                ps->pos = r;
                return fail(ps, "lone low surrogate in a \\u escape");
            }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                int lo = (r + 12 <= ps->len && buf[r + 6] == '\\' && buf[r + 7] == 'u') ? hex4(buf + r + 8) : -1;
                if (lo < 0xDC00 || lo > 0xDFFF) {
                    ps->pos = r;
                    return fail(ps, "high surrogate without a low surrogate in a \\u escape");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + ((uint32_t)lo - 0xDC00);
                used = 12;
            }
            /* The escape is at least as long as its UTF-8 bytes, so w stays
             * behind r. */
            w += put_utf8(buf + w, cp);
            r += used;
            continue;
        }
        if (c >= 0x80) {
            size_t n = utf8_len((const unsigned char *)buf + r, ps->len - r);
            if (n == 0) {
                ps->pos = r;
                return fail(ps, "invalid UTF-8 in a string");
            }
            memmove(buf + w, buf + r, n);
            w += n;
            r += n;
            continue;
        }
        buf[w++] = (char)c;
        r++;
    }
    if (w - start > UINT32_MAX) {
        ps->pos = start;
        return fail(ps, "string longer than 4 GiB");
    }
    buf[w] = '\0'; /* at most the closing quote, already consumed */
    ps->pos = r + 1;
    *out = buf + start;
    *outlen = (uint32_t)(w - start);
    return SF_OK;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static sf_status parse_number(parser *ps, sf_jv *v)
{
    char *buf = ps->p;
    size_t i = ps->pos, n = ps->len;
    if (i < n && buf[i] == '-') i++;
    if (i < n && buf[i] == '0') {
        i++;
        if (i < n && is_digit(buf[i])) {
            ps->pos = i;
            return fail(ps, "leading zero in a number");
        }
    } else if (i < n && is_digit(buf[i])) {
        while (i < n && is_digit(buf[i])) i++;
    } else {
        ps->pos = i;
        return fail(ps, "invalid number");
    }
    if (i < n && buf[i] == '.') {
        i++;
        if (i >= n || !is_digit(buf[i])) {
            ps->pos = i;
            return fail(ps, "digit expected after the decimal point");
        }
        while (i < n && is_digit(buf[i])) i++;
    }
    if (i < n && (buf[i] == 'e' || buf[i] == 'E')) {
        i++;
        if (i < n && (buf[i] == '+' || buf[i] == '-')) i++;
        if (i >= n || !is_digit(buf[i])) {
            ps->pos = i;
            return fail(ps, "digit expected in the exponent");
        }
        while (i < n && is_digit(buf[i])) i++;
    }
    if (i - ps->pos > UINT32_MAX) return fail(ps, "number text too long");
    /* strtod needs a terminated string: the buffer is ours (with one spare
     * byte at the end), so terminate it for a moment. */
    char saved = buf[i];
    buf[i] = '\0';
    double d = strtod(buf + ps->pos, NULL);
    buf[i] = saved;
    if (!isfinite(d)) return fail(ps, "number out of the range of a double");
    v->type = SF_JV_NUM;
    v->n = (uint32_t)(i - ps->pos);
    v->u.num.text = buf + ps->pos;
    v->u.num.v = d;
    ps->pos = i;
    return SF_OK;
}

static sf_status literal(parser *ps, const char *word, size_t n)
{
    if (ps->len - ps->pos < n || memcmp(ps->p + ps->pos, word, n) != 0) return fail(ps, "invalid literal");
    ps->pos += n;
    return SF_OK;
}

/* ---- containers --------------------------------------------------------------- */

static sf_status push_val(parser *ps, const sf_jv *v)
{
    if (ps->nvals == ps->capvals) {
        size_t cap = ps->capvals ? 2 * ps->capvals : 256;
        sf_jv *p = realloc(ps->vals, cap * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "JSON: out of memory for %zu array items", cap);
        ps->vals = p;
        ps->capvals = cap;
    }
    ps->vals[ps->nvals++] = *v;
    return SF_OK;
}

static sf_status push_mem(parser *ps, const jv_member *m)
{
    if (ps->nmems == ps->capmems) {
        size_t cap = ps->capmems ? 2 * ps->capmems : 256;
        jv_member *p = realloc(ps->mems, cap * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "JSON: out of memory for %zu object members", cap);
        ps->mems = p;
        ps->capmems = cap;
    }
    ps->mems[ps->nmems++] = *m;
    return SF_OK;
}

static int key_cmp(const char *a, size_t na, const char *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

static int member_ptr_cmp(const void *x, const void *y)
{
    const jv_member *a = *(const jv_member *const *)x, *b = *(const jv_member *const *)y;
    int c = key_cmp(a->key, a->klen, b->key, b->klen);
    /* Equal keys are duplicates and fail; order them by position so the
     * message names the later one whatever qsort does. */
    if (c == 0) c = a < b ? -1 : a > b ? 1 : 0;
    return c;
}

static sf_status duplicate(parser *ps, const jv_member *m)
{
    char what[160];
    (void)snprintf(what, sizeof what, "duplicate key \"%.*s\" in an object", m->klen > 64 ? 64 : (int)m->klen,
                   m->key);
    return fail(ps, what);
}

/* Moves the members [start, nmems) of the object being closed into the
 * arena, checks their keys for duplicates and indexes large objects. */
static sf_status close_object(parser *ps, size_t start, sf_jv *v)
{
    size_t n = ps->nmems - start;
    v->type = SF_JV_OBJ;
    v->u.obj.m = NULL;
    v->u.obj.index = NULL;
    if (n > UINT32_MAX) return fail(ps, "object with more than 2^32 members");
    v->n = (uint32_t)n;
    if (n == 0) return SF_OK;
    jv_member *m = arena_alloc(ps->doc, n * sizeof *m);
    SF_CHECK(m != NULL, SF_ERR_NOMEM, "JSON: out of memory for an object of %zu members", n);
    memcpy(m, ps->mems + start, n * sizeof *m);
    ps->nmems = start;
    v->u.obj.m = m;
    if (n <= LINEAR_MAX) {
        for (size_t i = 1; i < n; i++)
            for (size_t k = 0; k < i; k++)
                if (key_cmp(m[i].key, m[i].klen, m[k].key, m[k].klen) == 0) return duplicate(ps, &m[i]);
        return SF_OK;
    }
    if (ps->capsort < n) {
        const jv_member **s = realloc(ps->sort, n * sizeof *s);
        SF_CHECK(s != NULL, SF_ERR_NOMEM, "JSON: out of memory indexing an object of %zu members", n);
        ps->sort = s;
        ps->capsort = n;
    }
    for (size_t i = 0; i < n; i++) ps->sort[i] = &m[i];
    qsort(ps->sort, n, sizeof *ps->sort, member_ptr_cmp);
    for (size_t i = 1; i < n; i++)
        if (key_cmp(ps->sort[i]->key, ps->sort[i]->klen, ps->sort[i - 1]->key, ps->sort[i - 1]->klen) == 0)
            return duplicate(ps, ps->sort[i]);
    uint32_t *index = arena_alloc(ps->doc, n * sizeof *index);
    SF_CHECK(index != NULL, SF_ERR_NOMEM, "JSON: out of memory indexing an object of %zu members", n);
    for (size_t i = 0; i < n; i++) index[i] = (uint32_t)(ps->sort[i] - m);
    v->u.obj.index = index;
    return SF_OK;
}

static sf_status parse_value(parser *ps, int depth, sf_jv *v);

static sf_status parse_array(parser *ps, int depth, sf_jv *v)
{
    size_t start = ps->nvals;
    ps->pos++; /* [ */
    skip_ws(ps);
    if (ps->pos < ps->len && ps->p[ps->pos] == ']') {
        ps->pos++;
    } else {
        for (;;) {
            sf_jv item;
            SF_CALL(parse_value(ps, depth, &item));
            SF_CALL(push_val(ps, &item));
            skip_ws(ps);
            if (ps->pos < ps->len && ps->p[ps->pos] == ',') {
                ps->pos++;
                continue;
            }
            if (ps->pos < ps->len && ps->p[ps->pos] == ']') {
                ps->pos++;
                break;
            }
            return fail(ps, ps->pos < ps->len ? "expected ',' or ']' in an array" : "unterminated array");
        }
    }
    size_t n = ps->nvals - start;
    if (n > UINT32_MAX) return fail(ps, "array with more than 2^32 items");
    v->type = SF_JV_ARR;
    v->n = (uint32_t)n;
    v->u.items = NULL;
    if (n > 0) {
        v->u.items = arena_alloc(ps->doc, n * sizeof *v->u.items);
        SF_CHECK(v->u.items != NULL, SF_ERR_NOMEM, "JSON: out of memory for an array of %zu items", n);
        memcpy(v->u.items, ps->vals + start, n * sizeof *v->u.items);
    }
    ps->nvals = start;
    return SF_OK;
}

static sf_status parse_object(parser *ps, int depth, sf_jv *v)
{
    size_t start = ps->nmems;
    ps->pos++; /* { */
    skip_ws(ps);
    if (ps->pos < ps->len && ps->p[ps->pos] == '}') {
        ps->pos++;
        return close_object(ps, start, v);
    }
    for (;;) {
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->p[ps->pos] != '"')
            return fail(ps, ps->pos < ps->len ? "expected a string key in an object" : "unterminated object");
        jv_member m;
        SF_CALL(parse_string(ps, &m.key, &m.klen));
        skip_ws(ps);
        if (ps->pos >= ps->len || ps->p[ps->pos] != ':') return fail(ps, "expected ':' after an object key");
        ps->pos++;
        SF_CALL(parse_value(ps, depth, &m.value));
        SF_CALL(push_mem(ps, &m));
        skip_ws(ps);
        if (ps->pos < ps->len && ps->p[ps->pos] == ',') {
            ps->pos++;
            continue;
        }
        if (ps->pos < ps->len && ps->p[ps->pos] == '}') {
            ps->pos++;
            break;
        }
        return fail(ps, ps->pos < ps->len ? "expected ',' or '}' in an object" : "unterminated object");
    }
    return close_object(ps, start, v);
}

/* depth: containers open around this value. */
static sf_status parse_value(parser *ps, int depth, sf_jv *v)
{
    memset(v, 0, sizeof *v);
    skip_ws(ps);
    if (ps->pos >= ps->len) return fail(ps, "value expected, found the end of the text");
    char c = ps->p[ps->pos];
    switch (c) {
    case '{':
    case '[':
        if (depth >= SF_JV_MAX_DEPTH) return fail(ps, "nested deeper than 64 arrays and objects");
        return c == '{' ? parse_object(ps, depth + 1, v) : parse_array(ps, depth + 1, v);
    case '"': {
        const char *s;
        uint32_t n;
        SF_CALL(parse_string(ps, &s, &n));
        v->type = SF_JV_STR;
        v->n = n;
        v->u.str = s;
        return SF_OK;
    }
    case 't':
        v->type = SF_JV_BOOL;
        v->b = 1;
        return literal(ps, "true", 4);
    case 'f':
        v->type = SF_JV_BOOL;
        return literal(ps, "false", 5);
    case 'n':
        v->type = SF_JV_NULL;
        return literal(ps, "null", 4);
    default:
        if (c == '-' || is_digit(c)) return parse_number(ps, v);
        return fail(ps, "unexpected character (a value was expected)");
    }
}

/* ---- public ------------------------------------------------------------------- */

void sf_jv_destroy(sf_jv_doc **doc)
{
    if (doc == NULL || *doc == NULL) return;
    sf_jv_doc *d = *doc;
    for (block *b = d->blocks; b != NULL;) {
        block *next = b->next;
        free(b);
        b = next;
    }
    free(d->text);
    free(d);
    *doc = NULL;
}

sf_status sf_jv_parse(const char *text, size_t len, sf_jv_doc **out)
{
    *out = NULL;
    SF_CHECK(text != NULL || len == 0, SF_ERR_ARG, "JSON: no text");
    SF_CHECK(len < SIZE_MAX, SF_ERR_ARG, "JSON: text too long");
    sf_status rc = SF_OK;
    parser ps;
    memset(&ps, 0, sizeof ps);
    sf_jv_doc *d = calloc(1, sizeof *d);
    SF_CHECK_GOTO(d != NULL, SF_ERR_NOMEM, done, "JSON: out of memory");
    d->text = malloc(len + 1);
    SF_CHECK_GOTO(d->text != NULL, SF_ERR_NOMEM, done, "JSON: out of memory for a %zu-byte text", len);
    if (len > 0) memcpy(d->text, text, len);
    d->text[len] = '\0';
    ps.doc = d;
    ps.p = d->text;
    ps.len = len;
    ps.line = 1;
    skip_ws(&ps);
    if (ps.pos >= ps.len) {
        rc = fail(&ps, "empty document");
        goto done;
    }
    SF_CALL_GOTO(parse_value(&ps, 0, &d->root), done);
    skip_ws(&ps);
    if (ps.pos < ps.len) {
        rc = fail(&ps, "unexpected text after the value");
        goto done;
    }
    *out = d;
    d = NULL;
done:
    free(ps.vals);
    free(ps.mems);
    free(ps.sort);
    sf_jv_destroy(&d);
    return rc;
}

const sf_jv *sf_jv_root(const sf_jv_doc *doc) { return doc ? &doc->root : NULL; }

sf_jv_type sf_jv_type_of(const sf_jv *v) { return v ? (sf_jv_type)v->type : SF_JV_NONE; }

const char *sf_jv_type_name(sf_jv_type t)
{
    switch (t) {
    case SF_JV_NULL: return "null";
    case SF_JV_BOOL: return "boolean";
    case SF_JV_NUM: return "number";
    case SF_JV_STR: return "string";
    case SF_JV_ARR: return "array";
    case SF_JV_OBJ: return "object";
    case SF_JV_NONE: break;
    }
    return "nothing";
}

const sf_jv *sf_jv_getn(const sf_jv *obj, const char *key, size_t keylen)
{
    if (obj == NULL || obj->type != SF_JV_OBJ || (key == NULL && keylen > 0)) return NULL;
    const jv_member *m = obj->u.obj.m;
    if (obj->u.obj.index == NULL) {
        for (uint32_t i = 0; i < obj->n; i++)
            if (key_cmp(m[i].key, m[i].klen, key, keylen) == 0) return &m[i].value;
        return NULL;
    }
    const uint32_t *index = obj->u.obj.index;
    size_t lo = 0, hi = obj->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const jv_member *x = &m[index[mid]];
        int c = key_cmp(x->key, x->klen, key, keylen);
        if (c == 0) return &x->value;
        if (c < 0) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

const sf_jv *sf_jv_get(const sf_jv *obj, const char *key)
{
    return key ? sf_jv_getn(obj, key, strlen(key)) : NULL;
}

size_t sf_jv_len(const sf_jv *v)
{
    return v != NULL && (v->type == SF_JV_ARR || v->type == SF_JV_OBJ) ? v->n : 0;
}

const sf_jv *sf_jv_at(const sf_jv *v, size_t i)
{
    if (v == NULL || i >= v->n) return NULL;
    if (v->type == SF_JV_ARR) return &v->u.items[i];
    if (v->type == SF_JV_OBJ) return &v->u.obj.m[i].value;
    return NULL;
}

const char *sf_jv_key_at(const sf_jv *obj, size_t i, size_t *len)
{
    if (obj == NULL || obj->type != SF_JV_OBJ || i >= obj->n) return NULL;
    if (len) *len = obj->u.obj.m[i].klen;
    return obj->u.obj.m[i].key;
}

bool sf_jv_num(const sf_jv *v, double *out)
{
    if (v == NULL || v->type != SF_JV_NUM) return false;
    *out = v->u.num.v;
    return true;
}

const char *sf_jv_num_text(const sf_jv *v, size_t *len)
{
    if (v == NULL || v->type != SF_JV_NUM) return NULL;
    if (len) *len = v->n;
    return v->u.num.text;
}

const char *sf_jv_str(const sf_jv *v, size_t *len)
{
    if (v == NULL || v->type != SF_JV_STR) return NULL;
    if (len) *len = v->n;
    return v->u.str;
}

bool sf_jv_bool(const sf_jv *v, bool *out)
{
    if (v == NULL || v->type != SF_JV_BOOL) return false;
    *out = v->b != 0;
    return true;
}

void sf_jv_write(const sf_jv *v, sf_json *j)
{
    switch (sf_jv_type_of(v)) {
    case SF_JV_NONE:
    case SF_JV_NULL: sf_json_null(j); return;
    case SF_JV_BOOL: sf_json_bool(j, v->b != 0); return;
    case SF_JV_NUM: sf_json_raw(j, v->u.num.text, v->n); return;
    case SF_JV_STR: sf_json_strn(j, v->u.str, v->n); return;
    case SF_JV_ARR:
        sf_json_arr_begin(j);
        for (uint32_t i = 0; i < v->n; i++) sf_jv_write(&v->u.items[i], j);
        sf_json_arr_end(j);
        return;
    case SF_JV_OBJ:
        sf_json_obj_begin(j);
        for (uint32_t i = 0; i < v->n; i++) {
            sf_json_keyn(j, v->u.obj.m[i].key, v->u.obj.m[i].klen);
            sf_jv_write(&v->u.obj.m[i].value, j);
        }
        sf_json_obj_end(j);
        return;
    }
}
