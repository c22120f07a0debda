/* The CSV reader's fast paths (chunks of records split on SSE2 stop masks
 * and converted a column at a time, the record-at-a-time path, the number
 * conversions, the string cache in front of the dictionaries and the date
 * cache of timestamp columns) through the public reader API.
 *
 * Every expectation comes from somewhere else than the code under test:
 * from the generator that wrote the field (strings and nulls), from strtoll
 * and strtod on the field's text (numbers), from sf_timestamp_parse on it
 * (timestamps), from a dictionary rebuilt in the test in order of first
 * appearance (string codes), or from reading a second copy of the file in
 * which every field is quoted: quoted numbers are never taken by a fast
 * path, so that copy is read by the general path alone. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "shardflow/buf.h"
#include "shardflow/io.h"

static char g_dir[256];
static char *g_files[64];
static int g_nfiles;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Writes len bytes into the temporary directory; returns the path (kept
 * until the group teardown). */
static const char *write_file(const char *name, const void *data, size_t len)
{
    char *path = malloc(strlen(g_dir) + strlen(name) + 2);
    assert_non_null(path);
    sprintf(path, "%s/%s", g_dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    for (int i = 0; i < g_nfiles; i++) {
        if (strcmp(g_files[i], path) == 0) {
            free(path);
            return g_files[i];
        }
    }
    assert_true(g_nfiles < 64);
    g_files[g_nfiles++] = path;
    return path;
}

static sf_input_config csv_cfg(const char *path)
{
    sf_input_config c;
    sf_input_config_defaults(&c);
    c.format = SF_INPUT_CSV;
    c.path = (char *)path; /* borrowed: never passed to sf_input_config_fini */
    return c;
}

/* ------------------------------------------------------------------ */
/* Tables: rows of field texts, written plain or with every non-empty field
 * quoted (quotes doubled). */

typedef struct table {
    int ncols;
    size_t nrows, cap;
    char **cell;      /* nrows * ncols field texts, NUL-terminated */
    size_t *cell_len; /* their lengths (a text may hold NUL bytes) */
    int *nfields;     /* fields actually written for the row (bad rows differ) */
    bool *crlf;
} table;

static void table_init(table *t, int ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
}

static void table_fini(table *t)
{
    for (size_t i = 0; i < t->nrows * (size_t)t->ncols; i++) free(t->cell[i]);
    free(t->cell);
    free(t->cell_len);
    free(t->nfields);
    free(t->crlf);
    memset(t, 0, sizeof *t);
}

/* Appends a row; the cells are copied (lens[k] bytes, or strlen when lens is
 * NULL). */
static void table_add(table *t, const char *const *cells, const size_t *lens, int nfields, bool crlf)
{
    if (t->nrows == t->cap) {
        t->cap = t->cap ? 2 * t->cap : 256;
        t->cell = realloc(t->cell, sizeof *t->cell * t->cap * (size_t)t->ncols);
        t->cell_len = realloc(t->cell_len, sizeof *t->cell_len * t->cap * (size_t)t->ncols);
        t->nfields = realloc(t->nfields, sizeof *t->nfields * t->cap);
        t->crlf = realloc(t->crlf, sizeof *t->crlf * t->cap);
        assert_true(t->cell && t->cell_len && t->nfields && t->crlf);
    }
    for (int k = 0; k < t->ncols; k++) {
        size_t n = lens ? lens[k] : strlen(cells[k]);
        char *c = malloc(n + 1);
        assert_non_null(c);
        memcpy(c, cells[k], n);
        c[n] = '\0';
        t->cell[t->nrows * (size_t)t->ncols + (size_t)k] = c;
        t->cell_len[t->nrows * (size_t)t->ncols + (size_t)k] = n;
    }
    t->nfields[t->nrows] = nfields;
    t->crlf[t->nrows] = crlf;
    t->nrows++;
}

static const char *cell(const table *t, size_t r, int k, size_t *len)
{
    if (len) *len = t->cell_len[r * (size_t)t->ncols + (size_t)k];
    return t->cell[r * (size_t)t->ncols + (size_t)k];
}

/* Writes the header and rows; quoted: every non-empty field in quotes (an
 * empty one stays empty: quoted it would be a string, not a null); else
 * only the non-empty fields of the columns in quote_cols (a bit mask), in
 * every quote_every-th row (0: none). Fields past ncols (rows written with
 * too many fields) repeat the last one. */
static const char *table_write_some(const table *t, const char *name, const char *const *names, char delim,
                                    bool quoted, unsigned quote_cols, size_t quote_every)
{
    sf_buf out;
    sf_buf_init(&out);
    for (int k = 0; k < t->ncols; k++) {
        if (k) assert_int_equal(sf_buf_append(&out, &delim, 1), SF_OK);
        assert_int_equal(sf_buf_printf(&out, "%s", names[k]), SF_OK);
    }
    assert_int_equal(sf_buf_append(&out, "\n", 1), SF_OK);
    for (size_t r = 0; r < t->nrows; r++) {
        for (int k = 0; k < t->nfields[r]; k++) {
            size_t n;
            const char *s = cell(t, r, k < t->ncols ? k : t->ncols - 1, &n);
            if (k) assert_int_equal(sf_buf_append(&out, &delim, 1), SF_OK);
            const bool some = quote_every && r % quote_every == 0 && k < t->ncols && (quote_cols >> k & 1);
            const bool q = quoted || some;
            if (!q || n == 0) {
                assert_int_equal(sf_buf_append(&out, s, n), SF_OK);
                continue;
            }
            assert_int_equal(sf_buf_append(&out, "\"", 1), SF_OK);
            for (size_t i = 0; i < n; i++) {
                assert_int_equal(sf_buf_append(&out, s + i, 1), SF_OK);
                if (s[i] == '"') assert_int_equal(sf_buf_append(&out, "\"", 1), SF_OK);
            }
            assert_int_equal(sf_buf_append(&out, "\"", 1), SF_OK);
        }
        assert_int_equal(sf_buf_append(&out, t->crlf[r] ? "\r\n" : "\n", t->crlf[r] ? 2 : 1), SF_OK);
    }
    const char *path = write_file(name, out.data, out.len);
    sf_buf_fini(&out);
    return path;
}

static const char *table_write(const table *t, const char *name, const char *const *names, char delim,
                               bool quoted)
{
    return table_write_some(t, name, names, delim, quoted, 0, 0);
}

/* ------------------------------------------------------------------ */
/* Reading everything into text: one line per row, fields joined by '|':
 * NULL, int64 in decimal, float64 in hex (%a, exact), timestamps as '@'
 * and microseconds, strings as their bytes (escaped) and '#' and their code;
 * then the count of bad rows and each sampled bad row's line and message
 * without the path. */

static void render_string(sf_buf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch >= 0x7f || ch == '|' || ch == '\\')
            assert_int_equal(sf_buf_printf(out, "\\x%02x", ch), SF_OK);
        else
            assert_int_equal(sf_buf_append(out, &s[i], 1), SF_OK);
    }
}

static char *read_rendered(const sf_input_config *cfg)
{
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(cfg, &r), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    sf_buf out;
    sf_buf_init(&out);
    for (;;) {
        bool eof;
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        for (size_t i = 0; i < b.nrows; i++) {
            for (int c = 0; c < b.ncols; c++) {
                const sf_column *col = &b.cols[c];
                if (c) assert_int_equal(sf_buf_append(&out, "|", 1), SF_OK);
                if (!col->loaded) {
                    assert_int_equal(sf_buf_append(&out, "-", 1), SF_OK);
                } else if (sf_col_is_null(col, i)) {
                    assert_int_equal(sf_buf_append(&out, "NULL", 4), SF_OK);
                } else if (col->type == SF_INT64) {
                    assert_int_equal(sf_buf_printf(&out, "%" PRId64, col->i64[i]), SF_OK);
                } else if (col->type == SF_FLOAT64) {
                    assert_int_equal(sf_buf_printf(&out, "%a", col->f64[i]), SF_OK);
                } else if (col->type == SF_TIMESTAMP) {
                    assert_int_equal(sf_buf_printf(&out, "@%" PRId64, col->i64[i]), SF_OK);
                } else {
                    size_t n;
                    const char *s = sf_dict_str(&col->dict, col->code[i], &n);
                    render_string(&out, s, n);
                    assert_int_equal(sf_buf_printf(&out, "#%" PRIu32, col->code[i]), SF_OK);
                }
            }
            assert_int_equal(sf_buf_append(&out, "\n", 1), SF_OK);
        }
    }
    assert_int_equal(sf_buf_printf(&out, "bad=%" PRIu64 "\n", sf_reader_bad_rows(r)), SF_OK);
    const sf_bad_row *bad;
    size_t ns = sf_reader_bad_row_samples(r, &bad);
    size_t plen = strlen(cfg->path);
    for (size_t k = 0; k < ns; k++) {
        const char *m = bad[k].message;
        if (strncmp(m, cfg->path, plen) == 0) m += plen;
        assert_int_equal(sf_buf_printf(&out, "%" PRIu64 ": %s\n", bad[k].line, m), SF_OK);
    }
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    assert_int_equal(sf_buf_append(&out, "", 1), SF_OK);
    return (char *)out.data;
}

/* The two renderings are equal; on a difference, names the first line. */
static void assert_same_text(const char *got, const char *want, const char *what)
{
    if (strcmp(got, want) == 0) return;
    size_t line = 1, i = 0;
    while (got[i] && got[i] == want[i]) {
        if (got[i] == '\n') line++;
        i++;
    }
    const char *g = got + i, *w = want + i;
    while (g > got && g[-1] != '\n') g--;
    while (w > want && w[-1] != '\n') w--;
    fail_msg("%s: line %zu differs:\n  fast:    %.200s\n  general: %.200s", what, line, g, w);
}

/* ------------------------------------------------------------------ */
/* References for single values. */

/* [+-]?digits within int64: what the reader accepts as int64. */
static bool ref_int(const char *s, int64_t *v)
{
    const char *p = s + (*s == '-' || *s == '+');
    if (*p == '\0') return false;
    for (const char *q = p; *q; q++)
        if (*q < '0' || *q > '9') return false;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (errno == ERANGE || *end != '\0') return false;
    *v = x;
    return true;
}

/* [+-]?digits[.digits][(e|E)[+-]digits] with a digit in the mantissa, or
 * [+-]?(nan|inf): the reader's float grammar; the value is strtod's. */
static bool ref_float(const char *s, double *v)
{
    const char *p = s + (*s == '-' || *s == '+');
    if (strcmp(p, "nan") == 0 || strcmp(p, "inf") == 0) {
        *v = strtod(s, NULL);
        return true;
    }
    size_t nd = 0;
    while (*p >= '0' && *p <= '9') p++, nd++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') p++, nd++;
    }
    if (nd == 0) return false;
    if (*p == 'e' || *p == 'E') {
        p++;
        if (*p == '-' || *p == '+') p++;
        if (*p < '0' || *p > '9') return false;
        while (*p >= '0' && *p <= '9') p++;
    }
    if (*p != '\0') return false;
    *v = strtod(s, NULL);
    return true;
}

static bool same_double(double a, double b)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, sizeof a) == 0;
}

/* ------------------------------------------------------------------ */
/* Field ends at every offset: strings of every length from 0 to 150 (the
 * stop masks cover 64 bytes, the scans 16), after a first field whose
 * length shifts everything after it through all positions relative to the
 * 16- and 64-byte loads, with several delimiters, LF and CRLF, and blocks
 * that end records at every offset. Expected: the generated strings, and
 * strtoll for the numbers. */
static void test_field_ends_every_offset(void **state)
{
    (void)state;
    static const char delims[] = {',', ';', '\t', '|'};
    static const char *names[] = {"pad", "s", "n", "t"};
    static const char alphabet[] = "abcdefghijklmnopqrstuvwxyz0123456789 -.:\"";
    uint64_t rng = 0x9E3779B97F4A7C15u;
    for (size_t di = 0; di < sizeof delims; di++) {
        table t;
        table_init(&t, 4);
        char buf[4][200];
        for (size_t r = 0; r < 2400; r++) {
            size_t lens[4];
            size_t pad = r % 23, slen = (r / 23 + r) % 151, tlen = (r * 7) % 70;
            for (size_t i = 0; i < pad; i++) buf[0][i] = 'p';
            lens[0] = pad;
            for (size_t i = 0; i < slen; i++) buf[1][i] = alphabet[rnd(&rng) % (sizeof alphabet - 1)];
            if (slen) buf[1][0] = 'x'; /* a field that starts with a quote is a quoted field */
            lens[1] = slen;
            const int64_t num = (int64_t)(rnd(&rng) % 2000001) - 1000000;
            lens[2] = (size_t)snprintf(buf[2], sizeof buf[2], "%" PRId64, num);
            for (size_t i = 0; i < tlen; i++) buf[3][i] = alphabet[rnd(&rng) % 26];
            lens[3] = tlen;
            const char *cells[4] = {buf[0], buf[1], buf[2], buf[3]};
            table_add(&t, cells, lens, 4, r % 3 == 1);
        }
        char name[32];
        snprintf(name, sizeof name, "offsets_%zu.csv", di);
        const char *path = table_write(&t, name, names, delims[di], false);
        static const size_t blocks[] = {0, 7, 31, 64, 65, 100, 333};
        for (size_t bi = 0; bi < sizeof blocks / sizeof blocks[0]; bi++) {
            sf_input_config cfg = csv_cfg(path);
            cfg.delimiter = delims[di];
            cfg.block_size = blocks[bi];
            if (blocks[bi]) cfg.max_line_length = 400;
            sf_type_hint h[] = {{(char *)"pad", SF_STRING},
                                {(char *)"s", SF_STRING},
                                {(char *)"n", SF_INT64},
                                {(char *)"t", SF_STRING}};
            cfg.hints = h;
            cfg.nhints = 4;
            cfg.batch_rows = 700;
            sf_reader *rd = NULL;
            assert_int_equal(sf_reader_open(&cfg, &rd), SF_OK);
            sf_batch b;
            assert_int_equal(sf_reader_batch_init(rd, &b), SF_OK);
            size_t src = 0;
            for (;;) {
                bool eof;
                assert_int_equal(sf_reader_next(rd, &b, &eof), SF_OK);
                if (eof) break;
                for (size_t i = 0; i < b.nrows; i++, src++) {
                    assert_true(src < t.nrows);
                    for (int k = 0; k < 4; k++) {
                        size_t n;
                        const char *want = cell(&t, src, k, &n);
                        const sf_column *col = &b.cols[k];
                        if (n == 0) {
                            if (!sf_col_is_null(col, i))
                                fail_msg("delim %zu block %zu row %zu col %d: not null", di, blocks[bi], src,
                                         k);
                            continue;
                        }
                        assert_false(sf_col_is_null(col, i));
                        if (k == 2) {
                            int64_t v;
                            assert_true(ref_int(want, &v));
                            assert_int_equal(col->i64[i], v);
                            continue;
                        }
                        size_t gn;
                        const char *got = sf_dict_str(&col->dict, col->code[i], &gn);
                        if (gn != n || memcmp(got, want, n) != 0)
                            fail_msg("delim %zu block %zu row %zu col %d: '%.*s' != '%s'", di, blocks[bi], src, k,
                                     (int)gn, got, want);
                    }
                }
            }
            assert_int_equal(src, t.nrows);
            assert_int_equal(sf_reader_bad_rows(rd), 0);
            sf_batch_fini(&b);
            sf_reader_destroy(&rd);
        }
        table_fini(&t);
    }
}

/* ------------------------------------------------------------------ */
/* Numbers of every shape the fast paths take or turn down: integers of 1 to
 * 21 digits with and without a sign or leading zeros, decimals with 0 to 17
 * digits on either side of the point, exponents, words and malformed ones,
 * each compared with strtoll/strtod; malformed ones must be the bad rows. */

static void int_text(uint64_t *rng, char *t, size_t cap, bool *ok)
{
    static const char *odd[] = {"-0", "+0", "0", "+7", "-", "+", "--1", "1-", " 1", "1 ", "0x1f", "1.5", "1e3",
                                "9223372036854775807", "-9223372036854775808", "9223372036854775808",
                                "-9223372036854775809", "000000000000000000000000042", "12a", "\xc3\xa9",
                                /* At the fast path's limit of 15 bytes after the sign, and past it. */
                                "123456789012345", "-123456789012345", "1234567890123456", "-1234567890123456",
                                "12345678901234x", "-12345678901234x", "123456789012345x", "-123456789012345x"};
    uint64_t u = rnd(rng);
    if (u % 9 == 0) {
        snprintf(t, cap, "%s", odd[rnd(rng) % (sizeof odd / sizeof odd[0])]);
    } else {
        size_t k = 0, nd = 1 + rnd(rng) % 21;
        if (u % 3 == 0) t[k++] = '-';
        if (u % 31 == 0) t[k++] = '+';
        for (size_t d = 0; d < nd; d++) t[k++] = (char)('0' + rnd(rng) % 10);
        t[k] = '\0';
    }
    int64_t v;
    *ok = ref_int(t, &v);
}

static void float_text(uint64_t *rng, char *t, size_t cap, bool *ok)
{
    static const char *odd[] = {"nan", "-nan", "inf", "-inf", "+inf", ".", "-.", "-", "+", "1.2.3", "1e",
                                "e1", "1e+", ".e1", "1..2", " 1.5", "1.5 ", "0x1p3", "-0", "-0.0",
                                "0.000", ".5", "-.5", "5.", "+.5", "00000000000000000001.25", "1.5x",
                                "1234567890123.5", "-1234567890123.5", "12345678901234.5", "-12345678901234.5",
                                "1234567890.1234x", "-1234567890.1234x", "123456789012345.", "-.12345678901234"};
    uint64_t u = rnd(rng);
    if (u % 11 == 0) {
        snprintf(t, cap, "%s", odd[rnd(rng) % (sizeof odd / sizeof odd[0])]);
    } else {
        size_t k = 0, ni = rnd(rng) % 18, nf = rnd(rng) % 18;
        if (u % 3 == 0) t[k++] = '-';
        for (size_t d = 0; d < ni; d++) t[k++] = (char)('0' + rnd(rng) % 10);
        if (nf || u % 5 == 0) t[k++] = '.';
        for (size_t d = 0; d < nf; d++) t[k++] = (char)('0' + rnd(rng) % 10);
        if (ni + nf == 0) t[k++] = '7';
        t[k] = '\0';
        if (u % 13 == 0) snprintf(t + k, cap - k, "e%d", (int)(rnd(rng) % 61) - 30);
    }
    double v;
    *ok = ref_float(t, &v);
}

static void test_numbers_match_strtod(void **state)
{
    (void)state;
    static const char *names[] = {"i", "f", "g"};
    uint64_t rng = 0xD1B54A32D192ED03u;
    table t;
    table_init(&t, 3);
    bool *good = calloc(30000, sizeof *good);
    assert_non_null(good);
    for (size_t r = 0; r < 30000; r++) {
        char a[64], f[64], g[64];
        bool oka, okf, okg;
        int_text(&rng, a, sizeof a, &oka);
        float_text(&rng, f, sizeof f, &okf);
        float_text(&rng, g, sizeof g, &okg);
        if (r % 17 == 0) g[0] = '\0', okg = true; /* a null */
        const char *cells[3] = {a, f, g};
        table_add(&t, cells, NULL, 3, false);
        good[r] = oka && okf && okg;
    }
    const char *path = table_write(&t, "numbers.csv", names, ',', false);
    sf_type_hint h[] = {{(char *)"i", SF_INT64}, {(char *)"f", SF_FLOAT64}, {(char *)"g", SF_FLOAT64}};
    sf_input_config cfg = csv_cfg(path);
    cfg.hints = h;
    cfg.nhints = 3;
    cfg.on_bad_row = SF_BAD_ROW_SKIP;
    cfg.batch_rows = 4000;
    sf_reader *rd = NULL;
    assert_int_equal(sf_reader_open(&cfg, &rd), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(rd, &b), SF_OK);
    size_t src = 0, nbad = 0;
    for (size_t r = 0; r < t.nrows; r++) nbad += !good[r];
    for (;;) {
        bool eof;
        assert_int_equal(sf_reader_next(rd, &b, &eof), SF_OK);
        if (eof) break;
        for (size_t i = 0; i < b.nrows; i++, src++) {
            while (src < t.nrows && !good[src]) src++;
            assert_true(src < t.nrows);
            int64_t iv = 0;
            assert_true(ref_int(cell(&t, src, 0, NULL), &iv));
            if (b.cols[0].i64[i] != iv)
                fail_msg("row %zu: '%s' read as %" PRId64, src, cell(&t, src, 0, NULL), b.cols[0].i64[i]);
            for (int k = 1; k < 3; k++) {
                const char *txt = cell(&t, src, k, NULL);
                if (txt[0] == '\0') {
                    assert_true(sf_col_is_null(&b.cols[k], i));
                    continue;
                }
                double fv;
                assert_true(ref_float(txt, &fv));
                if (!same_double(b.cols[k].f64[i], fv))
                    fail_msg("row %zu: '%s' read as %a, strtod %a", src, txt, b.cols[k].f64[i], fv);
            }
        }
    }
    while (src < t.nrows && !good[src]) src++;
    assert_int_equal(src, t.nrows);
    assert_int_equal(sf_reader_bad_rows(rd), nbad);
    assert_true(nbad > 1000);
    sf_batch_fini(&b);
    sf_reader_destroy(&rd);
    free(good);
    table_fini(&t);
}

/* ------------------------------------------------------------------ */
/* Mixed tables read plain (fast paths) and fully quoted (general path
 * only) must render the same: values, nulls, string codes, bad rows with
 * their lines and messages, for many batch lengths and block sizes. The
 * rows mix what the fast paths take with what stops a chunk (a quoted
 * string, a '+', an exponent, a 17-digit integer), bad values, rows with
 * the wrong number of fields, CRLF line ends and empty fields; in the plain
 * copy some strings are quoted (record at a time, not the general path). */

static void mixed_row(uint64_t *rng, table *t)
{
    /* No delimiter or line feed inside: the plain copy must have the
     * same fields as the quoted one. */
    static const char *words[] = {"search", "cart", "auth", "us-east", "eu-west", "a", "", "x y", "q\"uote",
                                  "tab\there", "long string value number one", "long string value number two",
                                  "sev\"eral\"quotes", "\xe2\x82\xac", "cr\rinside"};
    static const char *tss[] = {"2024-02-29T23:59:59.999999", "2023-02-29T00:00:00", "2024-01-01 00:00:00",
                                "2024-01-01T00:00:00Z", "2024-12-31T12:34:56.5", "2024-13-01T00:00:00",
                                "2024-01-01T24:00:00", "", "1970-01-01T00:00:00", "2024-06-15T08:00:00.1234567",
                                "2024-06-15T08:00:00."};
    char i[64], f[64], ts[64], s1[64], s2[64];
    bool ok;
    uint64_t u = rnd(rng);
    if (u % 5 == 0) int_text(rng, i, sizeof i, &ok);
    else snprintf(i, sizeof i, "%" PRId64, (int64_t)(rnd(rng) % 200001) - 100000);
    if (u % 7 == 0) float_text(rng, f, sizeof f, &ok);
    else snprintf(f, sizeof f, "%.3f", (double)(rnd(rng) % 20000001) / 1000.0 - 10000.0);
    if (u % 4 == 0) snprintf(ts, sizeof ts, "%s", tss[rnd(rng) % (sizeof tss / sizeof tss[0])]);
    else snprintf(ts, sizeof ts, "2024-03-%02d %02d:%02d:%02d.%03d", 1 + (int)(u >> 8) % 3,
                  (int)(u >> 16) % 24, (int)(u >> 24) % 60, (int)(u >> 32) % 60, (int)(u >> 40) % 1000);
    snprintf(s1, sizeof s1, "%s", words[rnd(rng) % 6]);
    if (u % 9 == 0) snprintf(s2, sizeof s2, "%s", words[rnd(rng) % (sizeof words / sizeof words[0])]);
    else snprintf(s2, sizeof s2, "user%" PRIu64, rnd(rng) % 300);
    if (u % 23 == 0) i[0] = '\0';
    if (u % 29 == 0) f[0] = '\0';
    const char *cells[5] = {i, f, ts, s1, s2};
    uint64_t v = rnd(rng);
    int nfields = v % 97 == 0 ? 4 : v % 97 == 1 ? 6 : 5;
    table_add(t, cells, NULL, nfields, v % 5 == 0);
}

static void test_general_path_agrees(void **state)
{
    (void)state;
    static const char *names[] = {"i", "f", "t", "s1", "s2"};
    uint64_t rng = 0xA0761D6478BD642Fu;
    table t;
    table_init(&t, 5);
    for (size_t r = 0; r < 6000; r++) mixed_row(&rng, &t);
    /* A run of rows that chunks take whole, then ones that stop them at
     * every position of a chunk. */
    for (size_t r = 0; r < 300; r++) {
        char i[32], f[32];
        snprintf(i, sizeof i, "%zu", r);
        snprintf(f, sizeof f, r % 67 == 5 ? "%zu.5e1" : "%zu.25", r);
        const char *cells[5] = {i, f, "2024-05-05T05:05:05", "a", "b"};
        table_add(&t, cells, NULL, 5, false);
    }
    /* In the plain copy the strings of every third row are quoted too:
     * such records go record at a time, between chunks. */
    const char *plain = table_write_some(&t, "mixed_plain.csv", names, ',', false, 3u << 3, 3);
    const char *quoted = table_write(&t, "mixed_quoted.csv", names, ',', true);
    sf_type_hint h[] = {{(char *)"i", SF_INT64},
                        {(char *)"f", SF_FLOAT64},
                        {(char *)"t", SF_TIMESTAMP},
                        {(char *)"s1", SF_STRING},
                        {(char *)"s2", SF_STRING}};
    static const size_t batch_rows[] = {1, 3, 64, 65, 1000};
    static const size_t blocks[] = {0, 13, 64, 4096};
    for (size_t bi = 0; bi < sizeof batch_rows / sizeof batch_rows[0]; bi++) {
        for (size_t ki = 0; ki < sizeof blocks / sizeof blocks[0]; ki++) {
            char *render[2];
            for (int v = 0; v < 2; v++) {
                sf_input_config cfg = csv_cfg(v == 0 ? plain : quoted);
                cfg.hints = h;
                cfg.nhints = 5;
                cfg.on_bad_row = SF_BAD_ROW_SKIP;
                cfg.batch_rows = batch_rows[bi];
                cfg.block_size = blocks[ki];
                if (blocks[ki]) cfg.max_line_length = 300;
                render[v] = read_rendered(&cfg);
            }
            char what[64];
            snprintf(what, sizeof what, "batch_rows %zu, block %zu", batch_rows[bi], blocks[ki]);
            assert_same_text(render[0], render[1], what);
            free(render[0]);
            free(render[1]);
        }
    }
    table_fini(&t);
}

/* ------------------------------------------------------------------ */
/* String codes against a dictionary rebuilt here, batch by batch, in order
 * of first appearance (a null interns the empty string where it occurs):
 * a column of few values (cache hits), one of 400 values in a random walk
 * (slots collide and are overwritten), long strings that share their first
 * 16 bytes and differ only after them or only in length, strings that are
 * prefixes of each other or differ only by trailing NUL bytes (the cache
 * pads with zeros), strings that differ only in their length past the
 * first 16 bytes, and unique values (the cache turns itself off). The
 * same strings come back in every batch, whose dictionary starts empty. */

typedef struct ref_dict {
    size_t n;
    char *s[1024];
    size_t len[1024];
} ref_dict;

static uint32_t ref_code(ref_dict *d, const char *s, size_t n)
{
    for (size_t i = 0; i < d->n; i++)
        if (d->len[i] == n && memcmp(d->s[i], s, n) == 0) return (uint32_t)i;
    assert_true(d->n < 1024);
    d->s[d->n] = malloc(n + 1);
    assert_non_null(d->s[d->n]);
    memcpy(d->s[d->n], s, n);
    d->len[d->n] = n;
    return (uint32_t)d->n++;
}

static void ref_clear(ref_dict *d)
{
    for (size_t i = 0; i < d->n; i++) free(d->s[i]);
    d->n = 0;
}

static void test_string_cache_codes(void **state)
{
    (void)state;
    static const char *names[] = {"n", "low", "walk", "long", "pre", "uniq", "nul", "rep"};
    enum { NCOL = 8, ROWS = 5000, BATCH = 500 };
    uint64_t rng = 0x2545F4914F6CDD1Du;
    table t;
    table_init(&t, NCOL);
    int walk = 0;
    uint64_t reps[6] = {0};
    for (size_t r = 0; r < ROWS; r++) {
        char c[NCOL][96];
        size_t lens[NCOL];
        uint64_t u = rnd(&rng);
        lens[0] = (size_t)snprintf(c[0], 96, "%zu", r);
        static const char *low[] = {"search", "catalog", "auth", "cart", "us-east", "eu-west", "ap-south"};
        lens[1] = (size_t)snprintf(c[1], 96, "%s", u % 41 == 0 ? "" : low[u % 7]);
        walk = (walk + (int)(rnd(&rng) % 7) - 3 + 400) % 400;
        lens[2] = (size_t)snprintf(c[2], 96, "w%d", walk * 7919 % 400);
        /* 16 shared bytes, then a tail that differs at various places, or
         * only in length. */
        uint64_t k = rnd(&rng) % 12;
        static const char *tails[] = {"",         "x",        "y",        "xx",       "xy",
                                      "yx",       "tail-one", "tail-two", "tail-one-longer",
                                      "TAIL-ONE", "tail-onE", "tail-one "};
        lens[3] = (size_t)snprintf(c[3], 96, "0123456789abcdef%s", tails[k]);
        /* Prefixes and NUL padding: "ab", "ab\0", "ab\0\0", "a", "abc"... */
        uint64_t q = rnd(&rng) % 8;
        static const char pre[8][4] = {"a", "ab", "abc", "ab\0", "ab\0\0", "a\0b", "\0", "b"};
        static const size_t pre_len[8] = {1, 2, 3, 3, 4, 3, 1, 1};
        memcpy(c[4], pre[q], pre_len[q]);
        lens[4] = pre_len[q];
        lens[5] = (size_t)snprintf(c[5], 96, "u%zu-%" PRIu64, r, rnd(&rng) % 1000);
        /* Eight letters, each followed by 0 to 11 NUL bytes: 96 values
         * whose zero-padded first 16 bytes are the same in groups of 12,
         * so that some of a group share a slot. */
        const uint64_t z = rnd(&rng) % 96;
        memset(c[6], 0, 12);
        c[6][0] = (char)('a' + z / 12);
        lens[6] = 1 + (size_t)(z % 12);
        /* The same 16 bytes and then runs of 'x' of 1 to 60 bytes: each
         * a prefix of the longer ones, the length the only difference the
         * slot sees. A few lengths at a time (in windows of 40 rows), so
         * that the cache stays on while they meet in its slots. */
        if (r % 40 == 0)
            for (int j = 0; j < 6; j++) reps[j] = 1 + rnd(&rng) % 60;
        memcpy(c[7], "0123456789abcdef", 16);
        lens[7] = 16 + (size_t)reps[rnd(&rng) % 6];
        memset(c[7] + 16, 'x', lens[7] - 16);
        const char *cells[NCOL] = {c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]};
        table_add(&t, cells, lens, NCOL, r % 4 == 0);
    }
    const char *path = table_write(&t, "strings.csv", names, ',', false);
    sf_type_hint h[] = {{(char *)"n", SF_INT64},      {(char *)"low", SF_STRING}, {(char *)"walk", SF_STRING},
                        {(char *)"long", SF_STRING},  {(char *)"pre", SF_STRING}, {(char *)"uniq", SF_STRING},
                        {(char *)"nul", SF_STRING}, {(char *)"rep", SF_STRING}};
    sf_input_config cfg = csv_cfg(path);
    cfg.hints = h;
    cfg.nhints = NCOL;
    cfg.batch_rows = BATCH;
    sf_reader *rd = NULL;
    assert_int_equal(sf_reader_open(&cfg, &rd), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(rd, &b), SF_OK);
    static ref_dict ref[NCOL];
    size_t src = 0;
    for (;;) {
        bool eof;
        assert_int_equal(sf_reader_next(rd, &b, &eof), SF_OK);
        if (eof) break;
        for (int k = 1; k < NCOL; k++) ref_clear(&ref[k]);
        for (size_t i = 0; i < b.nrows; i++, src++) {
            assert_int_equal(b.cols[0].i64[i], (int64_t)src);
            for (int k = 1; k < NCOL; k++) {
                size_t n;
                const char *want = cell(&t, src, k, &n);
                /* An empty unquoted field is null, which interns "". */
                uint32_t code = ref_code(&ref[k], want, n);
                assert_int_equal(sf_col_is_null(&b.cols[k], i), n == 0);
                if (b.cols[k].code[i] != code)
                    fail_msg("row %zu col %d: code %" PRIu32 ", first appearance says %" PRIu32, src, k,
                             b.cols[k].code[i], code);
                size_t gn;
                const char *got = sf_dict_str(&b.cols[k].dict, code, &gn);
                assert_int_equal(gn, n);
                assert_memory_equal(got, want, n);
            }
        }
        for (int k = 1; k < NCOL; k++) assert_int_equal(b.cols[k].dict.n, ref[k].n);
    }
    assert_int_equal(src, ROWS);
    for (int k = 1; k < NCOL; k++) ref_clear(&ref[k]);
    sf_batch_fini(&b);
    sf_reader_destroy(&rd);
    table_fini(&t);
}

/* ------------------------------------------------------------------ */
/* Timestamps: runs of rows on one date and then another (the date cache
 * keeps the last one), dates that do not exist, times out of range,
 * fractions of 0 to 7 digits, 'T' or ' ', a trailing 'Z', garbage after
 * the value. Each field's expectation is sf_timestamp_parse on its text; a
 * field it refuses makes a bad row. */
static void test_timestamps_date_cache(void **state)
{
    (void)state;
    static const char *names[] = {"t", "n"};
    uint64_t rng = 0x8CB92BA72F3D8DD7u;
    table t;
    table_init(&t, 2);
    bool *good = calloc(20000, sizeof *good);
    int64_t *want = calloc(20000, sizeof *want);
    assert_true(good && want);
    int y = 2023, mo = 1, d = 1;
    for (size_t r = 0; r < 20000; r++) {
        uint64_t u = rnd(&rng);
        if (u % 50 == 0) { /* a new date, now and then one that does not exist */
            y = 1999 + (int)(rnd(&rng) % 4) + (u % 7 == 0 ? 100 : 0);
            mo = 1 + (int)(rnd(&rng) % 13);
            d = 1 + (int)(rnd(&rng) % 31);
        }
        char ts[64];
        int k = snprintf(ts, sizeof ts, "%04d-%02d-%02d%c%02d:%02d:%02d", y, mo, d, u % 3 ? 'T' : ' ',
                         (int)(rnd(&rng) % 25), (int)(rnd(&rng) % 61), (int)(rnd(&rng) % 61));
        int nf = (int)(rnd(&rng) % 9) - 1; /* -1: no point; 0: a point alone */
        if (nf >= 0) k += snprintf(ts + k, sizeof ts - (size_t)k, ".");
        for (int i = 0; i < nf; i++) ts[k++] = (char)('0' + rnd(&rng) % 10);
        ts[k] = '\0';
        if (u % 5 == 0) snprintf(ts + k, sizeof ts - (size_t)k, "Z");
        if (u % 97 == 0) snprintf(ts + k, sizeof ts - (size_t)k, "x");
        if (u % 89 == 0) ts[0] = '\0';
        if (u % 83 == 0) ts[13] = '-';
        char n[16];
        snprintf(n, sizeof n, "%zu", r);
        const char *cells[2] = {ts, n};
        table_add(&t, cells, NULL, 2, u % 11 == 0);
        good[r] = ts[0] == '\0' || sf_timestamp_parse(ts, strlen(ts), &want[r]);
    }
    const char *path = table_write(&t, "timestamps.csv", names, ',', false);
    sf_type_hint h[] = {{(char *)"t", SF_TIMESTAMP}, {(char *)"n", SF_INT64}};
    sf_input_config cfg = csv_cfg(path);
    cfg.hints = h;
    cfg.nhints = 2;
    cfg.on_bad_row = SF_BAD_ROW_SKIP;
    cfg.batch_rows = 3000;
    sf_reader *rd = NULL;
    assert_int_equal(sf_reader_open(&cfg, &rd), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(rd, &b), SF_OK);
    size_t src = 0, nbad = 0;
    for (size_t r = 0; r < t.nrows; r++) nbad += !good[r];
    for (;;) {
        bool eof;
        assert_int_equal(sf_reader_next(rd, &b, &eof), SF_OK);
        if (eof) break;
        for (size_t i = 0; i < b.nrows; i++, src++) {
            while (src < t.nrows && !good[src]) src++;
            assert_true(src < t.nrows);
            assert_int_equal(b.cols[1].i64[i], (int64_t)src);
            const char *txt = cell(&t, src, 0, NULL);
            assert_int_equal(sf_col_is_null(&b.cols[0], i), txt[0] == '\0');
            if (txt[0] != '\0' && b.cols[0].i64[i] != want[src])
                fail_msg("row %zu: '%s' read as %" PRId64 ", sf_timestamp_parse %" PRId64, src, txt,
                         b.cols[0].i64[i], want[src]);
        }
    }
    while (src < t.nrows && !good[src]) src++;
    assert_int_equal(src, t.nrows);
    assert_int_equal(sf_reader_bad_rows(rd), nbad);
    assert_true(nbad > 2000 && nbad < 15000);
    sf_batch_fini(&b);
    sf_reader_destroy(&rd);
    free(good);
    free(want);
    table_fini(&t);
}

/* A record of test_chunks_stopped is good when its integer is empty or
 * valid and its float valid. */
static bool stopped_good(const table *t, size_t r, int64_t *iv, double *fv)
{
    const char *i = cell(t, r, 0, NULL);
    *iv = 0;
    return (i[0] == '\0' || ref_int(i, iv)) && ref_float(cell(t, r, 1, NULL), fv);
}

/* ------------------------------------------------------------------ */
/* Chunks stopped by a value they do not take, every P records for P from 1
 * (every record: chunks back off) to past a chunk's 64, read with several
 * batch lengths; the stopping values are valid (an exponent, a '+', 17
 * digits) in one run and invalid in another. Expected: strtoll/strtod. */
static void test_chunks_stopped(void **state)
{
    (void)state;
    static const char *names[] = {"i", "f", "s"};
    static const size_t periods[] = {1, 2, 5, 63, 64, 65, 130};
    static const size_t batch_rows[] = {1, 7, 64, 1000};
    for (int invalid = 0; invalid < 2; invalid++) {
        for (size_t pi = 0; pi < sizeof periods / sizeof periods[0]; pi++) {
            table t;
            table_init(&t, 3);
            uint64_t rng = 77 + pi;
            for (size_t r = 0; r < 1500; r++) {
                char i[32], f[32];
                snprintf(i, sizeof i, "%" PRId64, (int64_t)(rnd(&rng) % 100000) - 50000);
                snprintf(f, sizeof f, "%.2f", (double)(rnd(&rng) % 100000) / 100.0);
                if (r % periods[pi] == periods[pi] - 1) {
                    static const char *valid_i[] = {"+12", "12345678901234567", "-000000000000000009"};
                    static const char *valid_f[] = {"1.5e3", "+2.5", "1234567890.1234567"};
                    static const char *bad_i[] = {"1.0", "x", "12 "};
                    static const char *bad_f[] = {"1.2.3", "1e", "--1"};
                    if (r % 2) snprintf(i, sizeof i, "%s", (invalid ? bad_i : valid_i)[r % 3]);
                    else snprintf(f, sizeof f, "%s", (invalid ? bad_f : valid_f)[r % 3]);
                }
                /* Empty integers (nulls) after the stops in a chunk: a
                 * stop must not leave them marked in rows that other
                 * records then fill. */
                if (r % 7 == 3 && r % periods[pi] != periods[pi] - 1) i[0] = '\0';
                const char *cells[3] = {i, f, r % 3 ? "s" : "t"};
                table_add(&t, cells, NULL, 3, false);
            }
            const char *path = table_write(&t, "stopped.csv", names, ',', false);
            size_t nbad = 0;
            for (size_t r = 0; r < t.nrows; r++) {
                int64_t iv;
                double fv;
                nbad += !stopped_good(&t, r, &iv, &fv);
            }
            /* The generator's own count: every P-th record when invalid. */
            assert_int_equal(nbad, invalid ? t.nrows / periods[pi] : 0);
            for (size_t bi = 0; bi < sizeof batch_rows / sizeof batch_rows[0]; bi++) {
                sf_type_hint h[] = {
                    {(char *)"i", SF_INT64}, {(char *)"f", SF_FLOAT64}, {(char *)"s", SF_STRING}};
                sf_input_config cfg = csv_cfg(path);
                cfg.hints = h;
                cfg.nhints = 3;
                cfg.on_bad_row = SF_BAD_ROW_SKIP;
                cfg.batch_rows = batch_rows[bi];
                sf_reader *rd = NULL;
                assert_int_equal(sf_reader_open(&cfg, &rd), SF_OK);
                sf_batch b;
                assert_int_equal(sf_reader_batch_init(rd, &b), SF_OK);
                size_t src = 0;
                int64_t iv = 0;
                double fv = 0;
                for (;;) {
                    bool eof;
                    assert_int_equal(sf_reader_next(rd, &b, &eof), SF_OK);
                    if (eof) break;
                    for (size_t k = 0; k < b.nrows; k++, src++) {
                        while (src < t.nrows && !stopped_good(&t, src, &iv, &fv)) src++;
                        assert_true(src < t.nrows);
                        const bool inull = cell(&t, src, 0, NULL)[0] == '\0';
                        if (sf_col_is_null(&b.cols[0], k) != inull)
                            fail_msg("period %zu batch %zu row %zu: null %d, want %d", periods[pi], batch_rows[bi],
                                     src, (int)sf_col_is_null(&b.cols[0], k), (int)inull);
                        if ((!inull && b.cols[0].i64[k] != iv) || !same_double(b.cols[1].f64[k], fv))
                            fail_msg("period %zu batch %zu row %zu: '%s','%s' read as %" PRId64 ", %a",
                                     periods[pi], batch_rows[bi], src, cell(&t, src, 0, NULL),
                                     cell(&t, src, 1, NULL), b.cols[0].i64[k], b.cols[1].f64[k]);
                        size_t n;
                        const char *s = sf_dict_str(&b.cols[2].dict, b.cols[2].code[k], &n);
                        assert_int_equal(n, 1);
                        assert_int_equal(s[0], cell(&t, src, 2, NULL)[0]);
                        /* The record's bytes: two numbers, a letter, two
                         * delimiters and the line feed. */
                        assert_int_equal(b.row_bytes[k],
                                         strlen(cell(&t, src, 0, NULL)) + strlen(cell(&t, src, 1, NULL)) + 4);
                    }
                }
                while (src < t.nrows && !stopped_good(&t, src, &iv, &fv)) src++;
                assert_int_equal(src, t.nrows);
                assert_int_equal(sf_reader_bad_rows(rd), nbad);
                sf_batch_fini(&b);
                sf_reader_destroy(&rd);
            }
            table_fini(&t);
        }
    }
}

/* ------------------------------------------------------------------ */
/* Line ends and blank lines by the reader's rules (see csv.c): a CR before
 * the LF is not part of the last field, so a last field of just "\r" is
 * empty (null); a lone CR elsewhere is data; with one column a blank line
 * is a record of one null, with more it is skipped. Compared with the
 * quoted copy and with the rules written out. */
static void test_line_ends(void **state)
{
    (void)state;
    static const char one[] = "v\n1\n\n2\r\n\r\n-3\n";
    static const char two[] = "a,b\n1,x\r\n2,\r\n\n3,\r\r\n4,y\r\n5,\rz\n";
    const char *p1 = write_file("one.csv", one, sizeof one - 1);
    const char *p2 = write_file("two.csv", two, sizeof two - 1);
    sf_type_hint h1[] = {{(char *)"v", SF_INT64}};
    sf_input_config cfg = csv_cfg(p1);
    cfg.hints = h1;
    cfg.nhints = 1;
    char *got = read_rendered(&cfg);
    assert_same_text(got, "1\nNULL\n2\nNULL\n-3\nbad=0\n", "one column");
    free(got);
    sf_type_hint h2[] = {{(char *)"a", SF_INT64}, {(char *)"b", SF_STRING}};
    cfg = csv_cfg(p2);
    cfg.hints = h2;
    cfg.nhints = 2;
    got = read_rendered(&cfg);
    /* "3,\r\r\n": the last field is "\r" once the line end's CR is off. */
    assert_same_text(got, "1|x#0\n2|NULL\n3|\\x0d#2\n4|y#3\n5|\\x0dz#4\nbad=0\n", "two columns");
    free(got);
}

static int group_setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/sf_test_csv_fast_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    for (int i = 0; i < g_nfiles; i++) {
        unlink(g_files[i]);
        free(g_files[i]);
    }
    rmdir(g_dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_field_ends_every_offset),
        cmocka_unit_test(test_numbers_match_strtod),
        cmocka_unit_test(test_general_path_agrees),
        cmocka_unit_test(test_string_cache_codes),
        cmocka_unit_test(test_timestamps_date_cache),
        cmocka_unit_test(test_chunks_stopped),
        cmocka_unit_test(test_line_ends),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
