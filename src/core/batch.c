#define _POSIX_C_SOURCE 200809L
#include "shardflow/batch.h"

#include "core/batch_lend.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *sf_type_name(sf_type t)
{
    switch (t) {
    case SF_INT64: return "int64";
    case SF_FLOAT64: return "float64";
    case SF_STRING: return "string";
    case SF_TIMESTAMP: return "timestamp";
    case SF_TYPE_NONE: break;
    }
    return "none";
}

sf_type sf_type_parse(const char *name)
{
    if (strcmp(name, "int64") == 0) return SF_INT64;
    if (strcmp(name, "float64") == 0) return SF_FLOAT64;
    if (strcmp(name, "string") == 0) return SF_STRING;
    if (strcmp(name, "timestamp") == 0) return SF_TIMESTAMP;
    return SF_TYPE_NONE;
}

void sf_schema_init(sf_schema *s)
{
    s->ncols = 0;
    s->fields = NULL;
}

void sf_schema_fini(sf_schema *s)
{
    for (int i = 0; i < s->ncols; i++) free(s->fields[i].name);
    free(s->fields);
    sf_schema_init(s);
}

sf_status sf_schema_add(sf_schema *s, const char *name, sf_type type)
{
    sf_field *f = realloc(s->fields, sizeof *f * (size_t)(s->ncols + 1));
    SF_CHECK(f != NULL, SF_ERR_NOMEM, "out of memory (schema)");
    s->fields = f;
    char *n = strdup(name);
    SF_CHECK(n != NULL, SF_ERR_NOMEM, "out of memory (schema)");
    f[s->ncols].name = n;
    f[s->ncols].type = type;
    s->ncols++;
    return SF_OK;
}

int sf_schema_find(const sf_schema *s, const char *name)
{
    for (int i = 0; i < s->ncols; i++)
        if (strcmp(s->fields[i].name, name) == 0) return i;
    return -1;
}

sf_status sf_schema_copy(sf_schema *dst, const sf_schema *src)
{
    sf_schema_init(dst);
    for (int i = 0; i < src->ncols; i++) {
        sf_status rc = sf_schema_add(dst, src->fields[i].name, src->fields[i].type);
        if (rc != SF_OK) {
            sf_schema_fini(dst);
            return rc;
        }
    }
    return SF_OK;
}

void sf_schema_format_columns(const sf_schema *s, char *buf, size_t n)
{
    if (n == 0) return;
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->ncols && used + 1 < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", s->fields[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    if (used >= n && n > 4) memcpy(buf + n - 4, "...", 4);
}

static sf_status grow(void **p, size_t elem, size_t cap)
{
    void *q = realloc(*p, elem * (cap ? cap : 1));
    SF_CHECK(q != NULL, SF_ERR_NOMEM, "out of memory (batch of %zu rows)", cap);
    *p = q;
    return SF_OK;
}

static sf_status column_reserve(sf_column *c, size_t old_cap, size_t cap)
{
    if (!c->loaded) return SF_OK;
    switch (c->type) {
    case SF_INT64:
    case SF_TIMESTAMP: SF_CALL(grow((void **)&c->i64, sizeof(int64_t), cap)); break;
    case SF_FLOAT64: SF_CALL(grow((void **)&c->f64, sizeof(double), cap)); break;
    case SF_STRING: SF_CALL(grow((void **)&c->code, sizeof(uint32_t), cap)); break;
    case SF_TYPE_NONE: break;
    }
    if (c->valid) {
        SF_CALL(grow((void **)&c->valid, 1, cap));
        if (cap > old_cap) memset(c->valid + old_cap, 1, cap - old_cap);
    }
    return SF_OK;
}

/* Per column, the batch's own pointers while lent memory replaces them. */
struct sf__batch_lent {
    int ncols;
    struct lent_col {
        bool values, valid;  /* which of the column's arrays are lent */
        void *own_values;
        uint8_t *own_valid;
    } *c;
};

static void **values_slot(sf_column *c)
{
    return c->type == SF_FLOAT64 ? (void **)&c->f64 : (void **)&c->i64;
}

sf_status sf__batch_lend(sf_batch *b, int c, const void *values, const uint8_t *valid)
{
    SF_CHECK(c >= 0 && c < b->ncols && b->cols[c].loaded, SF_ERR_INTERNAL, "lending to column %d", c);
    sf_column *col = &b->cols[c];
    SF_CHECK(values == NULL || col->type == SF_INT64 || col->type == SF_TIMESTAMP || col->type == SF_FLOAT64,
             SF_ERR_INTERNAL, "lending values to a string column");
    if (b->lent == NULL) {
        struct sf__batch_lent *l = calloc(1, sizeof *l);
        SF_CHECK(l != NULL, SF_ERR_NOMEM, "out of memory (batch)");
        struct lent_col *lc = calloc((size_t)(b->ncols ? b->ncols : 1), sizeof *lc);
        if (lc == NULL) free(l);
        SF_CHECK(lc != NULL, SF_ERR_NOMEM, "out of memory (batch)");
        l->c = lc;
        l->ncols = b->ncols;
        b->lent = l;
    }
    struct lent_col *e = &b->lent->c[c];
    if (values != NULL) {
        void **slot = values_slot(col);
        if (!e->values) e->own_values = *slot;
        e->values = true;
        *slot = (void *)(uintptr_t)values;
    }
    if (valid != NULL) {
        if (!e->valid) e->own_valid = col->valid;
        e->valid = true;
        col->valid = (uint8_t *)(uintptr_t)valid;
    }
    return SF_OK;
}

bool sf__batch_is_lent(const sf_batch *b, int c)
{
    return b->lent != NULL && c >= 0 && c < b->lent->ncols && (b->lent->c[c].values || b->lent->c[c].valid);
}

void sf__batch_unlend(sf_batch *b, int c)
{
    if (b->lent == NULL || c < 0 || c >= b->lent->ncols || c >= b->ncols) return;
    struct lent_col *e = &b->lent->c[c];
    sf_column *col = &b->cols[c];
    if (e->values) *values_slot(col) = e->own_values;
    if (e->valid) col->valid = e->own_valid;
    *e = (struct lent_col){0};
}

/* Gives every lent column its own buffers back (their contents are what
 * they were before the lending: the validity bytes all 1). */
static void unlend(sf_batch *b)
{
    for (int i = 0; b->lent != NULL && i < b->lent->ncols; i++) sf__batch_unlend(b, i);
}

static bool any_lent(const sf_batch *b)
{
    for (int i = 0; b->lent != NULL && i < b->lent->ncols; i++)
        if (b->lent->c[i].values || b->lent->c[i].valid) return true;
    return false;
}

sf_status sf_batch_reserve(sf_batch *b, size_t cap)
{
    if (cap <= b->cap) return SF_OK;
    SF_CHECK(!any_lent(b), SF_ERR_INTERNAL, "growing a batch that holds lent memory");
    size_t ncap = b->cap ? b->cap : 1024;
    while (ncap < cap) ncap *= 2;
    for (int i = 0; i < b->ncols; i++) SF_CALL(column_reserve(&b->cols[i], b->cap, ncap));
    if (b->row_offset) {
        SF_CALL(grow((void **)&b->row_offset, sizeof(int64_t), ncap));
        SF_CALL(grow((void **)&b->row_bytes, sizeof(uint32_t), ncap));
    }
    b->cap = ncap;
    return SF_OK;
}

sf_status sf_batch_init(sf_batch *b, const sf_schema *s, const uint8_t *want, size_t cap)
{
    memset(b, 0, sizeof *b);
    b->ncols = s->ncols;
    b->cols = calloc((size_t)(s->ncols ? s->ncols : 1), sizeof *b->cols);
    SF_CHECK(b->cols != NULL, SF_ERR_NOMEM, "out of memory (batch)");
    for (int i = 0; i < s->ncols; i++) {
        b->cols[i].type = s->fields[i].type;
        b->cols[i].loaded = want == NULL || want[i] != 0;
        sf_dict_init(&b->cols[i].dict);
    }
    sf_status rc = sf_batch_reserve(b, cap ? cap : 1);
    if (rc != SF_OK) sf_batch_fini(b);
    return rc;
}

void sf_batch_fini(sf_batch *b)
{
    unlend(b);
    if (b->lent) free(b->lent->c);
    free(b->lent);
    for (int i = 0; i < b->ncols; i++) {
        sf_column *c = &b->cols[i];
        free(c->i64);
        free(c->f64);
        free(c->code);
        free(c->valid);
        sf_dict_fini(&c->dict);
    }
    free(b->cols);
    free(b->row_offset);
    free(b->row_bytes);
    memset(b, 0, sizeof *b);
}

void sf_batch_clear(sf_batch *b)
{
    unlend(b);
    for (int i = 0; i < b->ncols; i++) {
        sf_column *c = &b->cols[i];
        if (c->valid && c->nulls) memset(c->valid, 1, b->nrows < b->cap ? b->nrows : b->cap);
        c->nulls = 0;
        if (c->type == SF_STRING) sf_dict_clear(&c->dict);
    }
    b->nrows = 0;
    b->first_row = 0;
}

sf_status sf_batch_enable_offsets(sf_batch *b)
{
    if (b->row_offset) return SF_OK;
    b->row_offset = malloc(sizeof(int64_t) * (b->cap ? b->cap : 1));
    b->row_bytes = malloc(sizeof(uint32_t) * (b->cap ? b->cap : 1));
    SF_CHECK(b->row_offset && b->row_bytes, SF_ERR_NOMEM, "out of memory (batch offsets)");
    return SF_OK;
}

sf_status sf_batch_enable_valid(sf_batch *b, int c)
{
    SF_CHECK(!sf__batch_is_lent(b, c), SF_ERR_INTERNAL, "writing to lent column %d", c);
    sf_column *col = &b->cols[c];
    if (col->valid) return SF_OK;
    col->valid = malloc(b->cap ? b->cap : 1);
    SF_CHECK(col->valid != NULL, SF_ERR_NOMEM, "out of memory (validity)");
    memset(col->valid, 1, b->cap ? b->cap : 1);
    return SF_OK;
}

size_t sf_valid_nulls(const uint8_t *valid, size_t n)
{
    const uint64_t low7 = 0x7F7F7F7F7F7F7F7Full, high = 0x8080808080808080ull;
    const uint64_t pairs = 0x00FF00FF00FF00FFull;
    size_t present = 0, i = 0;
    while (i + 8 <= n) {
        /* Up to 255 words: each byte lane of acc counts to at most 255. */
        size_t stop = n - i >= 8 * 255 ? i + 8 * 255 : i + (n - i) / 8 * 8;
        uint64_t acc = 0;
        for (; i < stop; i += 8) {
            uint64_t w;
            memcpy(&w, valid + i, 8);
            acc += ((((w & low7) + low7) | w) & high) >> 7; /* 1 per nonzero byte */
        }
        uint64_t s = (acc & pairs) + ((acc >> 8) & pairs); /* 4 lanes of 16 bits */
        present += (size_t)((s * 0x0001000100010001ull) >> 48);
    }
    for (; i < n; i++) present += valid[i] != 0;
    return n - present;
}

sf_status sf_batch_set_null(sf_batch *b, int c, size_t r)
{
    SF_CHECK(!sf__batch_is_lent(b, c), SF_ERR_INTERNAL, "writing to lent column %d", c);
    sf_column *col = &b->cols[c];
    /* Readers call this for every empty field: the common case (validity
     * already there) without a call. */
    if (col->valid == NULL) SF_CALL(sf_batch_enable_valid(b, c));
    if (col->valid[r]) {
        col->valid[r] = 0;
        col->nulls++;
    }
    if (!col->loaded) return SF_OK;
    switch (col->type) {
    case SF_INT64:
    case SF_TIMESTAMP: col->i64[r] = 0; break;
    case SF_FLOAT64: col->f64[r] = 0.0; break;
    case SF_STRING: {
        /* Nulls point at the empty string so that a code is always valid. */
        uint32_t code;
        SF_CALL(sf_dict_intern(&col->dict, "", 0, &code));
        col->code[r] = code;
        break;
    }
    case SF_TYPE_NONE: break;
    }
    return SF_OK;
}

size_t sf_col_format(const sf_column *c, size_t r, char *buf, size_t n)
{
    if (n == 0) return 0;
    if (sf_col_is_null(c, r) || !c->loaded) {
        buf[0] = '\0';
        return 0;
    }
    int k = 0;
    switch (c->type) {
    case SF_INT64: k = snprintf(buf, n, "%" PRId64, c->i64[r]); break;
    case SF_FLOAT64: k = snprintf(buf, n, "%.17g", c->f64[r]); break;
    case SF_TIMESTAMP: return sf_timestamp_format(c->i64[r], buf, n);
    case SF_STRING: {
        size_t len;
        const char *s = sf_dict_str(&c->dict, c->code[r], &len);
        if (len >= n) len = n - 1;
        memcpy(buf, s, len);
        buf[len] = '\0';
        return len;
    }
    case SF_TYPE_NONE: buf[0] = '\0'; return 0;
    }
    if (k < 0) k = 0;
    return (size_t)k < n ? (size_t)k : n - 1;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int digits(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9') return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

bool sf_timestamp_parse(const char *s, size_t len, int64_t *us)
{
    if (len < 19 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != ' ') || s[13] != ':' ||
        s[16] != ':')
        return false;
    int y = digits(s, 4), mo = digits(s + 5, 2), d = digits(s + 8, 2);
    int h = digits(s + 11, 2), mi = digits(s + 14, 2), se = digits(s + 17, 2);
    if (y < 0 || mo < 1 || mo > 12 || d < 1 || h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 ||
        se > 59)
        return false;
    static const int mdays[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int dim = mdays[mo - 1] + (mo == 2 && ((y % 4 == 0 && y % 100 != 0) || y % 400 == 0));
    if (d > dim) return false;
    size_t i = 19;
    int64_t frac = 0;
    if (i < len && s[i] == '.') {
        i++;
        int nd = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && nd < 6) {
            frac = frac * 10 + (s[i] - '0');
            i++;
            nd++;
        }
        if (nd == 0) return false;
        for (; nd < 6; nd++) frac *= 10;
    }
    if (i < len && s[i] == 'Z') i++;
    if (i != len) return false;
    int64_t days = days_from_civil(y, mo, d);
    *us = ((days * 24 + h) * 60 + mi) * 60 * INT64_C(1000000) + (int64_t)se * 1000000 + frac;
    return true;
}

size_t sf_timestamp_format(int64_t us, char *buf, size_t n)
{
    /* Floor division without negation (which overflows at INT64_MIN). */
    int64_t secs = us / 1000000, frac = us % 1000000;
    if (frac < 0) {
        frac += 1000000;
        secs -= 1;
    }
    int64_t days = secs / 86400, rem = secs % 86400;
    if (rem < 0) {
        rem += 86400;
        days -= 1;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int k;
    if (frac)
        k = snprintf(buf, n, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d.%06" PRId64, y, m, d,
                     (int)(rem / 3600), (int)(rem / 60 % 60), (int)(rem % 60), frac);
    else
        k = snprintf(buf, n, "%04" PRId64 "-%02d-%02dT%02d:%02d:%02d", y, m, d, (int)(rem / 3600),
                     (int)(rem / 60 % 60), (int)(rem % 60));
    if (k < 0) return 0;
    return (size_t)k < n ? (size_t)k : n - 1;
}
