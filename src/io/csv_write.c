/* CSV writer: a header line, then one line per row, LF line ends.
 *
 * The output reads back through the CSV reader to the same values; the same
 * types too, except where inference cannot know them: a string column whose
 * values all look like numbers or timestamps, or a column that is entirely
 * null, is inferred differently (give input.schema to read such a file):
 * - int64 in decimal; timestamps in ISO-8601 (sf_timestamp_format);
 * - float64 in the shortest of %.15g, %.16g and %.17g that converts back to
 *   the same double, with ".0" appended when the text would otherwise look
 *   like an integer (so a float column is not inferred as int64); NaN and
 *   infinities as nan, inf, -inf;
 * - strings quoted only when they contain the delimiter, a quote, CR or LF,
 *   quotes doubled; the empty string is written as "" because an empty
 *   unquoted field is a null;
 * - nulls (and columns a batch did not load) as empty fields.
 * Rows are assembled in a large buffer that is written with fwrite on an
 * unbuffered stream, so a write error (a full disk) is seen where it happens.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/reader_impl.h"

#define CSV_WRITE_BUF ((size_t)1 << 20)

typedef struct csv_writer {
    FILE *fp;
    char *path;
    char *buf;
    size_t len;
} csv_writer;

static sf_status flush_buf(csv_writer *cw)
{
    if (cw->len == 0) return SF_OK;
    errno = 0;
    size_t n = fwrite(cw->buf, 1, cw->len, cw->fp);
    if (n != cw->len) {
        int e = errno ? errno : EIO;
        cw->len = 0;
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: write failed: %s", cw->path,
                            strerror(e));
    }
    cw->len = 0;
    return SF_OK;
}

static sf_status put(csv_writer *cw, const char *p, size_t n)
{
    while (n > 0) {
        if (cw->len == CSV_WRITE_BUF) SF_CALL(flush_buf(cw));
        size_t k = CSV_WRITE_BUF - cw->len;
        if (k > n) k = n;
        memcpy(cw->buf + cw->len, p, k);
        cw->len += k;
        p += k;
        n -= k;
    }
    return SF_OK;
}

static inline sf_status put_char(csv_writer *cw, char ch)
{
    if (cw->len == CSV_WRITE_BUF) SF_CALL(flush_buf(cw));
    cw->buf[cw->len++] = ch;
    return SF_OK;
}

/* Writes a string field, quoting it only when it has to be. */
static sf_status put_string(csv_writer *cw, const char *s, size_t n)
{
    if (n == 0) return put(cw, "\"\"", 2);
    bool quote = false;
    for (size_t i = 0; i < n && !quote; i++) {
        char ch = s[i];
        quote = ch == ',' || ch == '"' || ch == '\r' || ch == '\n';
    }
    if (!quote) return put(cw, s, n);
    SF_CALL(put_char(cw, '"'));
    const char *e = s + n;
    while (s < e) {
        const char *q = memchr(s, '"', (size_t)(e - s));
        if (q == NULL) {
            SF_CALL(put(cw, s, (size_t)(e - s)));
            break;
        }
        SF_CALL(put(cw, s, (size_t)(q + 1 - s)));
        SF_CALL(put_char(cw, '"'));
        s = q + 1;
    }
    return put_char(cw, '"');
}

static size_t format_i64(int64_t v, char *out)
{
    char tmp[24];
    size_t k = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[k++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    size_t n = 0;
    if (v < 0) out[n++] = '-';
    while (k) out[n++] = tmp[--k];
    return n;
}

/* out must hold 40 bytes. */
static size_t format_f64(double v, char *out)
{
    if (isnan(v)) {
        memcpy(out, "nan", 3);
        return 3;
    }
    if (isinf(v)) {
        if (v < 0) {
            memcpy(out, "-inf", 4);
            return 4;
        }
        memcpy(out, "inf", 3);
        return 3;
    }
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(out, 40, "%.*g", prec, v);
        if (prec == 17 || strtod(out, NULL) == v) break;
    }
    if (n < 0) n = 0;
    if (strpbrk(out, ".e") == NULL) {
        memcpy(out + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

static sf_status csv_write(sf_table_writer *w, const sf_batch *b)
{
    csv_writer *cw = w->impl;
    const int ncols = w->schema.ncols;
    SF_CHECK(b->ncols == ncols, SF_ERR_ARG, "%s: batch has %d columns, writer has %d", cw->path,
             b->ncols, ncols);
    for (int i = 0; i < ncols; i++) {
        SF_CHECK(!b->cols[i].loaded || b->cols[i].type == w->schema.fields[i].type, SF_ERR_ARG,
                 "%s: column '%s': batch type %s, writer type %s", cw->path, w->schema.fields[i].name,
                 sf_type_name(b->cols[i].type), sf_type_name(w->schema.fields[i].type));
    }
    char num[48];
    for (size_t r = 0; r < b->nrows; r++) {
        for (int i = 0; i < ncols; i++) {
            const sf_column *c = &b->cols[i];
            if (i > 0) SF_CALL(put_char(cw, ','));
            if (!c->loaded || sf_col_is_null(c, r)) continue;
            size_t n;
            switch (c->type) {
            case SF_INT64:
                n = format_i64(c->i64[r], num);
                SF_CALL(put(cw, num, n));
                break;
            case SF_FLOAT64:
                n = format_f64(c->f64[r], num);
                SF_CALL(put(cw, num, n));
                break;
            case SF_TIMESTAMP:
                n = sf_timestamp_format(c->i64[r], num, sizeof num);
                SF_CALL(put(cw, num, n));
                break;
            case SF_STRING: {
                size_t len;
                const char *s = sf_dict_str(&c->dict, c->code[r], &len);
                SF_CALL(put_string(cw, s, len));
                break;
            }
            case SF_TYPE_NONE: break;
            }
        }
        SF_CALL(put_char(cw, '\n'));
    }
    return SF_OK;
}

static void writer_free(csv_writer *cw)
{
    if (cw == NULL) return;
    if (cw->fp) fclose(cw->fp);
    free(cw->buf);
    free(cw->path);
    free(cw);
}

static sf_status csv_close(sf_table_writer *w)
{
    csv_writer *cw = w->impl;
    if (cw == NULL) return SF_OK;
    sf_status rc = flush_buf(cw);
    errno = 0;
    if (fflush(cw->fp) != 0 && rc == SF_OK) {
        rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: write failed: %s", cw->path,
                          strerror(errno ? errno : EIO));
    }
    FILE *fp = cw->fp;
    cw->fp = NULL;
    errno = 0;
    if (fclose(fp) != 0 && rc == SF_OK) {
        rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: close failed: %s", cw->path,
                          strerror(errno ? errno : EIO));
    }
    writer_free(cw);
    w->impl = NULL;
    return rc;
}

static const sf__writer_ops csv_writer_ops = {csv_write, csv_close};

sf_status sf__csv_writer_create(sf_table_writer *w, const char *path)
{
    sf_status rc = SF_OK;
    csv_writer *cw = calloc(1, sizeof *cw);
    SF_CHECK(cw != NULL, SF_ERR_NOMEM, "out of memory (CSV writer)");
    cw->path = strdup(path);
    cw->buf = malloc(CSV_WRITE_BUF);
    SF_CHECK_GOTO(cw->path && cw->buf, SF_ERR_NOMEM, done, "out of memory (CSV writer)");
    cw->fp = fopen(path, "wb");
    SF_CHECK_GOTO(cw->fp != NULL, SF_ERR_IO, done, "%s: cannot create: %s", path, strerror(errno));
    setvbuf(cw->fp, NULL, _IONBF, 0);
    for (int i = 0; i < w->schema.ncols; i++) {
        if (i > 0) SF_CALL_GOTO(put_char(cw, ','), done);
        const char *name = w->schema.fields[i].name;
        SF_CALL_GOTO(put_string(cw, name, strlen(name)), done);
    }
    SF_CALL_GOTO(put_char(cw, '\n'), done);
    w->impl = cw;
    w->ops = &csv_writer_ops;
done:
    if (rc != SF_OK) writer_free(cw);
    return rc;
}
