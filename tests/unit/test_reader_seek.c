/* Reader positions: sf_reader_tell and sf_reader_seek on CSV, HDF5 and the
 * synthetic `requests` generator.
 *
 * Each case reads its input once without interruption, recording the
 * position after every batch and every row, rendered into bytes (per column
 * a tag and the value: '-' not loaded, 'N' null, 'V' plus the int64, the
 * float64's bits or the string; CSV rows also their byte offset and length).
 * Then, for recorded positions, a reader moved there (a fresh one, one that
 * had read other batches first, one after a rewind) must give exactly the
 * rest of that stream: the same rows in the same batches (or the same rows
 * in other batches when batch_rows differs), the same position after each
 * batch, the same bad-row count and the same error. The uninterrupted
 * stream itself is checked against values computed here from how the input
 * was made (CSV and HDF5), and bad rows against the lines where this file
 * put them, so the comparison is never between two wrong answers. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/gen_requests.h" /* the incident limits */
#include "io/reader_impl.h"  /* SF__BAD_ROW_SAMPLES only; everything else is public API */
#include "shardflow/buf.h"
#include "shardflow/io.h"

static char g_dir[64];

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/shardflow_test_seek_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static void *grow(void *p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) return p;
    size_t n = *cap ? *cap : 64;
    while (n < need) n *= 2;
    void *q = realloc(p, n * elem);
    assert_non_null(q);
    *cap = n;
    return q;
}

/* ------------------------------------------------------------------ */
/* Row encoding, shared by what the readers return and what is expected */

static void enc_skip(sf_buf *o) { assert_int_equal(sf_buf_put_u8(o, '-'), SF_OK); }
static void enc_null(sf_buf *o) { assert_int_equal(sf_buf_put_u8(o, 'N'), SF_OK); }

static void enc_i64(sf_buf *o, int64_t v)
{
    assert_int_equal(sf_buf_put_u8(o, 'V'), SF_OK);
    assert_int_equal(sf_buf_put_i64(o, v), SF_OK);
}

static void enc_f64(sf_buf *o, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    assert_int_equal(sf_buf_put_u8(o, 'V'), SF_OK);
    assert_int_equal(sf_buf_put_u64(o, bits), SF_OK);
}

static void enc_str(sf_buf *o, const char *s, size_t n)
{
    assert_int_equal(sf_buf_put_u8(o, 'V'), SF_OK);
    assert_int_equal(sf_buf_put_str(o, s, n), SF_OK);
}

static void enc_offset(sf_buf *o, int64_t off, uint32_t bytes)
{
    assert_int_equal(sf_buf_put_u8(o, '@'), SF_OK);
    assert_int_equal(sf_buf_put_i64(o, off), SF_OK);
    assert_int_equal(sf_buf_put_u32(o, bytes), SF_OK);
}

static void put_row(sf_buf *o, const sf_batch *b, size_t r)
{
    for (int c = 0; c < b->ncols; c++) {
        const sf_column *col = &b->cols[c];
        if (!col->loaded) {
            enc_skip(o);
            continue;
        }
        if (sf_col_is_null(col, r)) {
            enc_null(o);
            continue;
        }
        switch (col->type) {
        case SF_INT64:
        case SF_TIMESTAMP: enc_i64(o, col->i64[r]); break;
        case SF_FLOAT64: enc_f64(o, col->f64[r]); break;
        case SF_STRING: {
            size_t len;
            const char *s = sf_dict_str(&col->dict, col->code[r], &len);
            enc_str(o, s, len);
            break;
        }
        default: fail_msg("column %d has type %d", c, (int)col->type);
        }
    }
    if (b->row_offset != NULL) enc_offset(o, b->row_offset[r], b->row_bytes[r]);
}

/* ------------------------------------------------------------------ */
/* The uninterrupted stream and the comparison of a resumed one with it */

typedef struct stream {
    sf_buf rows;            /* every row rendered, concatenated */
    size_t nrows, rcap;
    size_t *row_end;        /* rows.len after row i */
    size_t nbatches, bcap, pcap;
    size_t *batch_end;      /* rows after batch k */
    sf_reader_pos *pos;     /* pos[0] before the first batch, pos[k + 1] after batch k */
    sf_reader_pos end_pos;  /* after the call that returned eof */
    uint64_t bad_rows;      /* at the end */
    sf_status rc;           /* SF_OK: ended at eof; else the error that ended it */
    char message[1024];
} stream;

static void stream_fini(stream *s)
{
    sf_buf_fini(&s->rows);
    free(s->row_end);
    free(s->batch_end);
    free(s->pos);
    memset(s, 0, sizeof *s);
}

static size_t row_start(const stream *s, size_t row) { return row == 0 ? 0 : s->row_end[row - 1]; }

static void assert_pos(const sf_reader_pos *got, const sf_reader_pos *want, const char *what, size_t k)
{
    if (memcmp(got, want, sizeof *got) == 0) return;
    fail_msg("%s (%zu): position {%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "}, expected {%" PRIu64
             ", %" PRIu64 ", %" PRIu64 ", %" PRIu64 "}",
             what, k, got->v[0], got->v[1], got->v[2], got->v[3], want->v[0], want->v[1], want->v[2],
             want->v[3]);
}

static sf_reader *open_reader(const sf_input_config *cfg, const uint8_t *want)
{
    sf_reader *r = NULL;
    sf_status rc = sf_reader_open(cfg, &r);
    if (rc != SF_OK) fail_msg("open: %s", sf_error_message());
    if (want) assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    return r;
}

/* Reads r to its end (or its first error) into s. */
static void read_stream(sf_reader *r, stream *s)
{
    memset(s, 0, sizeof *s);
    sf_buf_init(&s->rows);
    s->pos = grow(s->pos, &s->pcap, 1, sizeof *s->pos);
    sf_reader_tell(r, &s->pos[0]);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (;;) {
        bool eof = false;
        sf_status rc = sf_reader_next(r, &b, &eof);
        if (rc != SF_OK) {
            s->rc = rc;
            snprintf(s->message, sizeof s->message, "%s", sf_error_message());
            break;
        }
        assert_int_equal(eof, b.nrows == 0);
        if (eof) {
            sf_reader_tell(r, &s->end_pos);
            break;
        }
        assert_int_equal(b.first_row, s->nrows);
        s->row_end = grow(s->row_end, &s->rcap, s->nrows + b.nrows, sizeof *s->row_end);
        for (size_t i = 0; i < b.nrows; i++) {
            put_row(&s->rows, &b, i);
            s->row_end[s->nrows++] = s->rows.len;
        }
        s->batch_end = grow(s->batch_end, &s->bcap, s->nbatches + 1, sizeof *s->batch_end);
        s->batch_end[s->nbatches++] = s->nrows;
        s->pos = grow(s->pos, &s->pcap, s->nbatches + 1, sizeof *s->pos);
        sf_reader_tell(r, &s->pos[s->nbatches]);
    }
    s->bad_rows = sf_reader_bad_rows(r);
    sf_batch_fini(&b);
}

static void read_full(const sf_input_config *cfg, const uint8_t *want, stream *s)
{
    sf_reader *r = open_reader(cfg, want);
    read_stream(r, s);
    sf_reader_destroy(&r);
}

/* Reads r, which was just moved to `at` (the position full had before its
 * batch k, or its end), to its end and compares everything with full. With
 * same_batches the batches must be full's; otherwise only the rows. */
static void check_resume(sf_reader *r, const stream *full, size_t k, const sf_reader_pos *at, bool same_batches)
{
    sf_reader_pos p;
    sf_reader_tell(r, &p);
    assert_pos(&p, at, "tell right after the seek", k);
    size_t row = k == 0 ? 0 : full->batch_end[k - 1];
    size_t j = k;
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    sf_buf got;
    sf_buf_init(&got);
    for (;;) {
        bool eof = false;
        sf_status rc = sf_reader_next(r, &b, &eof);
        if (rc != SF_OK) {
            if (rc != full->rc)
                fail_msg("resumed at %zu: batch %zu failed (%s), the uninterrupted run %s", k, j,
                         sf_error_message(), full->rc == SF_OK ? "did not" : full->message);
            assert_string_equal(sf_error_message(), full->message);
            assert_int_equal(row, full->nrows);
            if (same_batches) assert_int_equal(j, full->nbatches);
            break;
        }
        if (eof) {
            assert_int_equal(b.nrows, 0);
            if (full->rc != SF_OK) fail_msg("resumed at %zu: eof where the run failed with %s", k, full->message);
            assert_int_equal(row, full->nrows);
            if (same_batches) assert_int_equal(j, full->nbatches);
            sf_reader_tell(r, &p);
            assert_pos(&p, &full->end_pos, "tell at the end", k);
            break;
        }
        assert_int_equal(b.first_row, row);
        if (same_batches) {
            assert_true(j < full->nbatches);
            assert_int_equal(row + b.nrows, full->batch_end[j]);
        } else {
            assert_true(row + b.nrows <= full->nrows);
        }
        sf_buf_clear(&got);
        for (size_t i = 0; i < b.nrows; i++) put_row(&got, &b, i);
        size_t a = row_start(full, row), e = row_start(full, row + b.nrows);
        if (got.len != e - a || memcmp(got.data, full->rows.data + a, got.len) != 0) {
            sf_buf one;
            sf_buf_init(&one);
            for (size_t i = 0; i < b.nrows; i++) {
                sf_buf_clear(&one);
                put_row(&one, &b, i);
                size_t ra = row_start(full, row + i), re = full->row_end[row + i];
                if (one.len != re - ra || memcmp(one.data, full->rows.data + ra, one.len) != 0)
                    fail_msg("resumed at %zu: row %zu (batch %zu) differs from the uninterrupted run", k, row + i, j);
            }
            fail_msg("resumed at %zu: batch %zu differs", k, j);
        }
        row += b.nrows;
        j++;
        if (same_batches) {
            sf_reader_tell(r, &p);
            assert_pos(&p, &full->pos[j], "tell after batch", j);
        }
    }
    assert_int_equal(sf_reader_bad_rows(r), full->bad_rows);
    sf_buf_fini(&got);
    sf_batch_fini(&b);
}

typedef enum resume_mode {
    FRESH = 0,         /* a new reader, seek before any next */
    AFTER_READING = 1, /* a reader that has read some batches already */
    AFTER_REWIND = 2   /* a reader that read everything and was rewound */
} resume_mode;

/* Opens a reader like full's, prepares it as mode says, moves it to `at`
 * (full's position before batch k) and checks the rest. batch_rows != 0
 * reads on with other batches. Returns the reader, for more checks. */
static sf_reader *resume(const sf_input_config *cfg, const uint8_t *want, const stream *full, size_t k,
                         const sf_reader_pos *at, resume_mode mode, size_t batch_rows)
{
    sf_reader *r = open_reader(cfg, want);
    if (batch_rows) sf_reader_set_batch_rows(r, batch_rows);
    if (mode != FRESH) {
        sf_batch b;
        assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
        /* Some batches before or after k, so that seeks go both ways. */
        size_t m = mode == AFTER_REWIND ? SIZE_MAX : (k * 5 + 3) % (full->nbatches + 2);
        for (size_t i = 0; i < m; i++) {
            bool eof = false;
            if (sf_reader_next(r, &b, &eof) != SF_OK || eof) break; /* an error ends a pass too */
        }
        sf_batch_fini(&b);
        if (mode == AFTER_REWIND) assert_int_equal(sf_reader_rewind(r), SF_OK);
    }
    sf_status rc = sf_reader_seek(r, at);
    if (rc != SF_OK) fail_msg("seek to position %zu (mode %d): %s", k, (int)mode, sf_error_message());
    check_resume(r, full, k, at, batch_rows == 0);
    return r;
}

/* ------------------------------------------------------------------ */
/* CSV files made here, with what the reader must find in them */

#define CSV_NCOLS 5
#define CSV_MAXLEN 200
enum { C_ID = 0, C_NAME, C_VALUE, C_TS, C_TAG };

enum {
    REC_GOOD,
    REC_BLANK,      /* skipped silently (five columns) */
    REC_BAD_FIELDS, /* bad whatever the projection */
    REC_BAD_QUOTE,
    REC_OVERLONG,
    REC_BAD_ID,     /* bad only when id is loaded */
    REC_BAD_VALUE   /* bad only when value is loaded */
};

typedef struct exp_rec {
    int kind;
    uint64_t line;     /* physical line it starts on */
    uint64_t off;      /* byte offset in the file */
    uint32_t bytes;    /* with its line end */
    size_t enc_off[CSV_NCOLS], enc_len[CSV_NCOLS];
} exp_rec;

typedef struct csv_file {
    char path[128];
    sf_buf text;
    sf_buf enc;        /* expected column encodings of the records */
    exp_rec *rec;
    size_t nrec, cap;
    uint64_t line;     /* next physical line */
    uint64_t data_start;
    const char *eol;
} csv_file;

typedef struct csv_spec {
    const char *name;
    bool crlf;
    bool final_eol;
    size_t ngood;       /* records good with every column */
    size_t first_bad;   /* good records before the first bad one; SIZE_MAX: none */
    size_t batch;       /* good records at these boundaries span several lines */
} csv_spec;

static void bput(sf_buf *b, const char *s) { assert_int_equal(sf_buf_append(b, s, strlen(s)), SF_OK); }

/* Days since 1970-01-01 to the civil date (H. Hinnant's algorithm). */
static void civil_from_days(int64_t z, int *y, unsigned *m, unsigned *d)
{
    z += 719468;
    const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    const unsigned doe = (unsigned)(z - era * 146097);
    const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    const unsigned mp = (5 * doy + 2) / 153;
    *d = doy - (153 * mp + 2) / 5 + 1;
    *m = mp < 10 ? mp + 3 : mp - 9;
    *y = (int)((int64_t)yoe + era * 400 + (*m <= 2));
}

static void format_ts(int64_t us, char *out, size_t n)
{
    int64_t secs = us / 1000000, frac = us % 1000000;
    int64_t days = secs / 86400, sod = secs % 86400;
    int y;
    unsigned mo, d;
    civil_from_days(days, &y, &mo, &d);
    snprintf(out, n, "%04d-%02u-%02uT%02d:%02d:%02d.%06d", y, mo, d, (int)(sod / 3600), (int)(sod / 60 % 60),
             (int)(sod % 60), (int)frac);
}

static exp_rec *rec_begin(csv_file *f)
{
    f->rec = grow(f->rec, &f->cap, f->nrec + 1, sizeof *f->rec);
    exp_rec *e = &f->rec[f->nrec];
    memset(e, 0, sizeof *e);
    return e;
}

static void col_begin(csv_file *f, exp_rec *e, int c) { e->enc_off[c] = f->enc.len; }
static void col_end(csv_file *f, exp_rec *e, int c) { e->enc_len[c] = f->enc.len - e->enc_off[c]; }

/* Appends the record's text (without its line end) and the line end. */
static void rec_end(csv_file *f, exp_rec *e, int kind, const sf_buf *text, bool eol)
{
    e->kind = kind;
    e->off = f->text.len;
    e->line = f->line;
    assert_int_equal(sf_buf_append(&f->text, text->data, text->len), SF_OK);
    if (eol) bput(&f->text, f->eol);
    e->bytes = (uint32_t)(f->text.len - e->off);
    f->line++;
    for (size_t i = 0; i < text->len; i++) f->line += text->data[i] == '\n';
    f->nrec++;
}

/* A record with five fields; bad_col (C_ID or C_VALUE, or -1) holds text
 * that does not parse. multiline forces a name with two line breaks. */
static void make_row(csv_file *f, uint64_t *rng, uint64_t i, int bad_col, bool multiline, bool eol)
{
    const char *el = f->eol;
    exp_rec *e = rec_begin(f);
    sf_buf t;
    sf_buf_init(&t);
    char tmp[160];

    int64_t id = (int64_t)i * 7919 - 50000;
    col_begin(f, e, C_ID);
    enc_i64(&f->enc, id);
    col_end(f, e, C_ID);
    assert_int_equal(sf_buf_printf(&t, "%s%" PRId64 ",", bad_col == C_ID ? "x" : "", id), SF_OK);

    col_begin(f, e, C_NAME);
    int v = multiline ? 8 : (int)(rng_next(rng) % 8);
    int n = 0;
    switch (v) {
    case 3: n = snprintf(tmp, sizeof tmp, "a,b %" PRIu64, i); break;
    case 4: n = snprintf(tmp, sizeof tmp, "say \"hi\" %" PRIu64, i); break;
    case 5: n = snprintf(tmp, sizeof tmp, "first%ssecond %" PRIu64, el, i); break;
    case 6: n = 0; tmp[0] = '\0'; break;
    case 7: break;
    case 8: n = snprintf(tmp, sizeof tmp, "a%sb%sc %" PRIu64, el, el, i); break;
    default: n = snprintf(tmp, sizeof tmp, "n%" PRIu64, i); break;
    }
    if (v == 7) {
        enc_null(&f->enc); /* an unquoted empty field */
    } else {
        enc_str(&f->enc, tmp, (size_t)n);
        if (v < 3) {
            bput(&t, tmp);
        } else {
            bput(&t, "\"");
            for (int k = 0; k < n; k++) {
                if (tmp[k] == '"') bput(&t, "\"");
                assert_int_equal(sf_buf_append(&t, &tmp[k], 1), SF_OK);
            }
            bput(&t, "\"");
        }
    }
    col_end(f, e, C_NAME);
    bput(&t, ",");

    col_begin(f, e, C_VALUE);
    if (bad_col == C_VALUE) {
        bput(&t, "1.2.3");
        enc_null(&f->enc); /* never compared: the row is bad or the column unloaded */
    } else if (rng_next(rng) % 10 == 0) {
        enc_null(&f->enc);
    } else {
        int64_t m = (int64_t)(rng_next(rng) % 2000001) - 1000000;
        int64_t a = m < 0 ? -m : m;
        snprintf(tmp, sizeof tmp, "%s%" PRId64 ".%03" PRId64, m < 0 ? "-" : "", a / 1000, a % 1000);
        bput(&t, tmp);
        enc_f64(&f->enc, strtod(tmp, NULL));
    }
    col_end(f, e, C_VALUE);
    bput(&t, ",");

    col_begin(f, e, C_TS);
    if (rng_next(rng) % 13 == 0) {
        enc_null(&f->enc);
    } else {
        int64_t us = INT64_C(1700000000000000) + (int64_t)i * 987654321 + (int64_t)(rng_next(rng) % 1000000);
        format_ts(us, tmp, sizeof tmp);
        bput(&t, tmp);
        enc_i64(&f->enc, us);
    }
    col_end(f, e, C_TS);
    bput(&t, ",");

    col_begin(f, e, C_TAG);
    unsigned g = (unsigned)(rng_next(rng) % 12);
    if (g < 2) {
        enc_null(&f->enc);
    } else if (g == 2) {
        bput(&t, "\"t,x\"");
        enc_str(&f->enc, "t,x", 3);
    } else {
        n = snprintf(tmp, sizeof tmp, "t%u", g % 5);
        bput(&t, tmp);
        enc_str(&f->enc, tmp, (size_t)n);
    }
    col_end(f, e, C_TAG);

    rec_end(f, e, bad_col == C_ID ? REC_BAD_ID : bad_col == C_VALUE ? REC_BAD_VALUE : REC_GOOD, &t, eol);
    sf_buf_fini(&t);
}

/* A record that is bad (or blank) whatever the projection. */
static void make_bad(csv_file *f, int kind, uint64_t i)
{
    exp_rec *e = rec_begin(f);
    sf_buf t;
    sf_buf_init(&t);
    switch (kind) {
    case REC_BLANK: break;
    case REC_BAD_FIELDS: assert_int_equal(sf_buf_printf(&t, "%" PRIu64 ",2,3", i), SF_OK); break;
    case REC_BAD_QUOTE:
        /* Every other one with a line break before the stray byte. */
        assert_int_equal(sf_buf_printf(&t, "%" PRIu64 ",\"ab%sc\"d,1.5,,t", i, i % 2 ? f->eol : ""), SF_OK);
        break;
    case REC_OVERLONG:
        assert_int_equal(sf_buf_printf(&t, "%" PRIu64 ",", i), SF_OK);
        for (int k = 0; k < CSV_MAXLEN + 50; k++) bput(&t, "z");
        bput(&t, ",1.5,,t");
        break;
    default: fail_msg("bad kind %d", kind);
    }
    rec_end(f, e, kind, &t, true);
    sf_buf_fini(&t);
}

static void make_bad_any(csv_file *f, uint64_t *rng, uint64_t i)
{
    static const int kinds[] = {REC_BLANK, REC_BAD_FIELDS, REC_BAD_QUOTE, REC_OVERLONG, REC_BAD_ID, REC_BAD_VALUE};
    int kind = kinds[rng_next(rng) % 6];
    if (kind == REC_BAD_ID) make_row(f, rng, 1000000 + i, C_ID, false, true);
    else if (kind == REC_BAD_VALUE) make_row(f, rng, 1000000 + i, C_VALUE, false, true);
    else make_bad(f, kind, i);
}

static void csv_make(csv_file *f, const csv_spec *sp, uint64_t seed)
{
    memset(f, 0, sizeof *f);
    sf_buf_init(&f->text);
    sf_buf_init(&f->enc);
    f->eol = sp->crlf ? "\r\n" : "\n";
    snprintf(f->path, sizeof f->path, "%s/%s", g_dir, sp->name);
    bput(&f->text, "id,name,value,ts,tag");
    bput(&f->text, f->eol);
    f->data_start = f->text.len;
    f->line = 2;
    uint64_t rng = seed;
    bool bad = sp->first_bad != SIZE_MAX;
    for (size_t i = 0; i < sp->ngood; i++) {
        if (bad && i >= sp->first_bad) {
            /* Bad records at the first place allowed, at a boundary and at
             * random (about one in twelve gaps). */
            if (i == sp->first_bad) make_bad(f, REC_BAD_FIELDS, i);
            if (i == 3 * sp->batch) make_bad(f, REC_OVERLONG, i);
            if (rng_next(&rng) % 12 == 0) make_bad_any(f, &rng, i);
        }
        bool last = i + 1 == sp->ngood;
        bool multi = sp->batch && (i % sp->batch == 0 || i % sp->batch == sp->batch - 1);
        make_row(f, &rng, i, -1, multi && !last, !last || sp->final_eol || bad);
    }
    if (bad) {
        /* Bad rows after the last good one, then a blank line. */
        make_bad(f, REC_BAD_QUOTE, 1);
        make_row(f, &rng, 2000000, C_ID, false, true);
        make_bad(f, REC_BAD_FIELDS, 2);
        make_bad(f, REC_BLANK, 3);
        if (!sp->final_eol) {
            /* The file ends in a bad record without a line end. */
            sf_buf t;
            sf_buf_init(&t);
            bput(&t, "1,2");
            rec_end(f, rec_begin(f), REC_BAD_FIELDS, &t, false);
            sf_buf_fini(&t);
        }
    }
    FILE *fp = fopen(f->path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(f->text.data, 1, f->text.len, fp), f->text.len);
    assert_int_equal(fclose(fp), 0);
}

static void csv_file_fini(csv_file *f)
{
    unlink(f->path);
    sf_buf_fini(&f->text);
    sf_buf_fini(&f->enc);
    free(f->rec);
    memset(f, 0, sizeof *f);
}

static bool loaded(const uint8_t *want, int c) { return want == NULL || want[c] != 0; }

static bool rec_delivered(const exp_rec *e, const uint8_t *want)
{
    return e->kind == REC_GOOD || (e->kind == REC_BAD_ID && !loaded(want, C_ID)) ||
           (e->kind == REC_BAD_VALUE && !loaded(want, C_VALUE));
}

static bool rec_bad(const exp_rec *e, const uint8_t *want)
{
    return e->kind != REC_BLANK && !rec_delivered(e, want);
}

/* The rows the reader must deliver under projection want, encoded. */
static size_t csv_expected_rows(const csv_file *f, const uint8_t *want, sf_buf *out)
{
    size_t n = 0;
    for (size_t i = 0; i < f->nrec; i++) {
        const exp_rec *e = &f->rec[i];
        if (!rec_delivered(e, want)) continue;
        for (int c = 0; c < CSV_NCOLS; c++) {
            if (loaded(want, c))
                assert_int_equal(sf_buf_append(out, f->enc.data + e->enc_off[c], e->enc_len[c]), SF_OK);
            else
                enc_skip(out);
        }
        enc_offset(out, (int64_t)e->off, e->bytes);
        n++;
    }
    return n;
}

static sf_input_config csv_config(const csv_file *f, sf_type_hint *hints, size_t batch, size_t block,
                                  sf_bad_row_policy policy)
{
    sf_input_config cfg;
    sf_input_config_defaults(&cfg);
    cfg.format = SF_INPUT_CSV;
    cfg.path = (char *)f->path; /* borrowed: never passed to sf_input_config_fini */
    cfg.batch_rows = batch;
    if (block) cfg.block_size = block;
    cfg.max_line_length = CSV_MAXLEN;
    cfg.on_bad_row = policy;
    static const char *names[CSV_NCOLS] = {"id", "name", "value", "ts", "tag"};
    static const sf_type types[CSV_NCOLS] = {SF_INT64, SF_STRING, SF_FLOAT64, SF_TIMESTAMP, SF_STRING};
    for (int c = 0; c < CSV_NCOLS; c++) {
        hints[c].name = (char *)names[c];
        hints[c].type = types[c];
    }
    cfg.hints = hints;
    cfg.nhints = CSV_NCOLS;
    return cfg;
}

/* The bad rows a reader that started at byte `from` keeps as samples. */
static void check_bad_samples(sf_reader *r, const csv_file *f, const uint8_t *want, uint64_t from)
{
    const sf_bad_row *got;
    size_t n = sf_reader_bad_row_samples(r, &got);
    size_t m = 0;
    for (size_t i = 0; i < f->nrec; i++) {
        const exp_rec *e = &f->rec[i];
        if (!rec_bad(e, want) || e->off < from) continue;
        if (m < SF__BAD_ROW_SAMPLES) {
            assert_true(m < n);
            assert_int_equal(got[m].line, e->line);
            char prefix[200];
            snprintf(prefix, sizeof prefix, "%s:%" PRIu64 ":", f->path, e->line);
            if (strncmp(got[m].message, prefix, strlen(prefix)) != 0)
                fail_msg("bad row message '%s' does not start with '%s'", got[m].message, prefix);
        }
        m++;
    }
    assert_int_equal(n, m < SF__BAD_ROW_SAMPLES ? m : SF__BAD_ROW_SAMPLES);
}

/* What the positions of a case cover, so that the tests can insist on it. */
typedef struct csv_cover {
    size_t split_bad;   /* positions with bad rows both before and after them */
    size_t multiline;   /* positions before a record spanning several lines */
    size_t after_multi; /* positions right after such a record */
} csv_cover;

static void csv_coverage(const csv_file *f, const stream *full, csv_cover *cv)
{
    memset(cv, 0, sizeof *cv);
    for (size_t k = 1; k < full->nbatches; k++) {
        const sf_reader_pos *p = &full->pos[k];
        if (p->v[3] > 0 && p->v[3] < full->bad_rows) cv->split_bad++;
        for (size_t i = 0; i < f->nrec; i++) {
            uint64_t next_line = i + 1 < f->nrec ? f->rec[i + 1].line : f->line;
            bool multi = next_line - f->rec[i].line > 1;
            if (f->rec[i].off == p->v[0] && multi) cv->multiline++;
            if (f->rec[i].off + f->rec[i].bytes == p->v[0] && multi) cv->after_multi++;
        }
    }
}

/* Reads f once, checks the stream against the file's records, then resumes
 * at every position in every mode. */
static void csv_case(const csv_file *f, size_t batch, size_t block, const uint8_t *want, csv_cover *cv)
{
    sf_type_hint hints[CSV_NCOLS];
    sf_input_config cfg = csv_config(f, hints, batch, block, SF_BAD_ROW_SKIP);
    stream full;
    read_full(&cfg, want, &full);
    if (full.rc != SF_OK) fail_msg("%s", full.message);

    sf_buf exp;
    sf_buf_init(&exp);
    size_t nexp = csv_expected_rows(f, want, &exp);
    assert_int_equal(full.nrows, nexp);
    assert_int_equal(full.rows.len, exp.len);
    for (size_t i = 0; i < full.nrows; i++) {
        size_t a = row_start(&full, i);
        if (memcmp(full.rows.data + a, exp.data + a, full.row_end[i] - a) != 0)
            fail_msg("%s: row %zu is not what the file holds", f->path, i);
    }
    sf_buf_fini(&exp);
    uint64_t nbad = 0;
    for (size_t i = 0; i < f->nrec; i++) nbad += rec_bad(&f->rec[i], want);
    assert_int_equal(full.bad_rows, nbad);
    /* The start position is the first data record, on line 2; the end one
     * is the end of the file. */
    sf_reader_pos start = {{f->data_start, 2, 0, 0}};
    assert_pos(&full.pos[0], &start, "tell at open", 0);
    assert_int_equal(full.end_pos.v[0], f->text.len);
    assert_int_equal(full.end_pos.v[1], f->line);
    assert_int_equal(full.end_pos.v[2], nexp);
    assert_int_equal(full.end_pos.v[3], nbad);
    csv_coverage(f, &full, cv);

    for (size_t k = 0; k <= full.nbatches + 1; k++) {
        /* k == nbatches + 1: the end position, after the trailing bad rows. */
        size_t kb = k <= full.nbatches ? k : full.nbatches;
        const sf_reader_pos *at = k <= full.nbatches ? &full.pos[k] : &full.end_pos;
        for (int mode = FRESH; mode <= AFTER_REWIND; mode++) {
            sf_reader *r = resume(&cfg, want, &full, kb, at, (resume_mode)mode, 0);
            check_bad_samples(r, f, want, at->v[0]);
            sf_reader_destroy(&r);
        }
    }
    /* Other batch sizes after the seek: the same rows. */
    size_t kmid = full.nbatches / 2;
    sf_reader *r = resume(&cfg, want, &full, kmid, &full.pos[kmid], FRESH, batch * 2 + 1);
    sf_reader_destroy(&r);
    r = resume(&cfg, want, &full, kmid, &full.pos[kmid], AFTER_REWIND, 5);
    sf_reader_destroy(&r);
    stream_fini(&full);
}

static void test_csv_skip_lf(void **state)
{
    (void)state;
    csv_spec sp = {"skip_lf.csv", false, true, 1500, 0, 37};
    csv_file f;
    csv_make(&f, &sp, 11);
    /* Small blocks: records straddle reads and seeks land outside the
     * buffer; then the default block, which holds the whole file, so seeks
     * land inside it. */
    csv_cover cv;
    csv_case(&f, 37, 997, NULL, &cv);
    assert_true(cv.split_bad > 10);
    assert_true(cv.multiline > 10 && cv.after_multi > 10);
    csv_case(&f, 37, 0, NULL, &cv);
    csv_file_fini(&f);
}

static void test_csv_crlf_projection(void **state)
{
    (void)state;
    csv_spec sp = {"crlf.csv", true, false, 1200, 0, 41};
    csv_file f;
    csv_make(&f, &sp, 12);
    /* value and name unloaded: a bad value is no bad row then. */
    const uint8_t want[CSV_NCOLS] = {1, 0, 0, 1, 1};
    csv_cover cv;
    csv_case(&f, 41, 1500, want, &cv);
    assert_true(cv.split_bad > 10);
    const uint8_t want2[CSV_NCOLS] = {0, 1, 1, 0, 0};
    csv_case(&f, 41, 0, want2, &cv);
    assert_true(cv.split_bad > 10);
    csv_case(&f, 41, 0, NULL, &cv);
    assert_true(cv.split_bad > 10);
    assert_true(cv.multiline > 10 && cv.after_multi > 10);
    csv_file_fini(&f);
}

static void test_csv_no_final_eol(void **state)
{
    (void)state;
    csv_spec sp = {"noeol.csv", false, false, 700, SIZE_MAX, 50};
    csv_file f;
    csv_make(&f, &sp, 13);
    assert_int_not_equal(f.text.data[f.text.len - 1], '\n');
    csv_cover cv;
    csv_case(&f, 50, 1024, NULL, &cv);
    assert_true(cv.multiline > 5 && cv.after_multi > 5);
    csv_case(&f, 64, 0, NULL, &cv);
    csv_file_fini(&f);
}

/* on_bad_row: fail. A reader resumed before the first bad record fails on
 * it with the uninterrupted run's message, which names its line. */
static void test_csv_fail_after_seek(void **state)
{
    (void)state;
    csv_spec sp = {"fail.csv", false, true, 900, 400, 37};
    csv_file f;
    csv_make(&f, &sp, 14);
    sf_type_hint hints[CSV_NCOLS];
    sf_input_config cfg = csv_config(&f, hints, 37, 1000, SF_BAD_ROW_FAIL);
    stream full;
    read_full(&cfg, NULL, &full);
    assert_int_equal(full.rc, SF_ERR_PARSE);
    uint64_t first_bad_line = 0;
    size_t good_before = 0;
    for (size_t i = 0; i < f.nrec && first_bad_line == 0; i++) {
        if (rec_bad(&f.rec[i], NULL)) first_bad_line = f.rec[i].line;
        else good_before += f.rec[i].kind == REC_GOOD;
    }
    assert_int_equal(good_before, 400);
    char prefix[200];
    snprintf(prefix, sizeof prefix, "%s:%" PRIu64 ": expected 5 fields, found 3", f.path, first_bad_line);
    assert_string_equal(full.message, prefix);
    /* The batch holding the bad record is not delivered. */
    assert_int_equal(full.nrows, good_before / 37 * 37);
    for (size_t k = 0; k <= full.nbatches; k++)
        for (int mode = FRESH; mode <= AFTER_REWIND; mode++) {
            sf_reader *r = resume(&cfg, NULL, &full, k, &full.pos[k], (resume_mode)mode, 0);
            sf_reader_destroy(&r);
        }
    stream_fini(&full);
    csv_file_fini(&f);
}

static void expect_seek_error(sf_reader *r, const sf_reader_pos *p, const char *needle)
{
    sf_error_clear();
    assert_int_equal(sf_reader_seek(r, p), SF_ERR_ARG);
    if (strstr(sf_error_message(), needle) == NULL)
        fail_msg("seek error '%s' does not say '%s'", sf_error_message(), needle);
}

/* After refused seeks the reader reads on from where it was. */
static void expect_next_batch(sf_reader *r, const stream *full, size_t k)
{
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof = false;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_false(eof);
    size_t first = k ? full->batch_end[k - 1] : 0;
    assert_int_equal(b.first_row, first);
    assert_int_equal(b.nrows, full->batch_end[k] - first);
    sf_buf got;
    sf_buf_init(&got);
    for (size_t i = 0; i < b.nrows; i++) put_row(&got, &b, i);
    size_t a = row_start(full, first);
    assert_int_equal(got.len, row_start(full, full->batch_end[k]) - a);
    assert_memory_equal(got.data, full->rows.data + a, got.len);
    sf_buf_fini(&got);
    sf_batch_fini(&b);
}

static void test_csv_bad_positions(void **state)
{
    (void)state;
    csv_spec sp = {"badpos.csv", false, true, 300, 0, 37};
    csv_file f;
    csv_make(&f, &sp, 15);
    sf_type_hint hints[CSV_NCOLS];
    sf_input_config cfg = csv_config(&f, hints, 37, 0, SF_BAD_ROW_SKIP);
    stream full;
    read_full(&cfg, NULL, &full);
    assert_int_equal(full.rc, SF_OK);
    sf_reader *r = open_reader(&cfg, NULL);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    sf_batch_fini(&b);

    sf_reader_pos p = {{f.data_start - 1, 1, 0, 0}};
    expect_seek_error(r, &p, "inside the header");
    p = (sf_reader_pos){{0, 1, 0, 0}};
    expect_seek_error(r, &p, "inside the header");
    p = (sf_reader_pos){{f.text.len + 1, f.line, full.nrows, full.bad_rows}};
    expect_seek_error(r, &p, "past the end of the file");
    p = (sf_reader_pos){{f.data_start, 1, 0, 0}};
    expect_seek_error(r, &p, "not consistent");
    p = (sf_reader_pos){{f.data_start, 2, 5, 0}};
    expect_seek_error(r, &p, "not consistent");
    /* One byte into a record (not the first: its first byte follows the
     * header's line end). */
    const exp_rec *in = NULL;
    for (size_t i = 1; i < f.nrec && in == NULL; i++)
        if (f.rec[i].kind == REC_GOOD) in = &f.rec[i];
    assert_non_null(in);
    p = (sf_reader_pos){{in->off + 1, in->line, 0, 0}};
    expect_seek_error(r, &p, "not the start of a record");
    p = (sf_reader_pos){{in->off, in->line, in->line, 0}}; /* more rows than lines */
    expect_seek_error(r, &p, "not consistent");
    expect_next_batch(r, &full, 2);
    sf_reader_destroy(&r);
    stream_fini(&full);
    csv_file_fini(&f);
}

/* ------------------------------------------------------------------ */
/* HDF5 */

#define H5_ROWS 10007
#define H5_NCOLS 4

static bool h5_null(uint64_t i) { return i % 11 == 3; }
static int64_t h5_id(uint64_t i) { return (int64_t)(i * i % 100003) - 50000; }
static double h5_x(uint64_t i) { return (double)i * 0.25 - 1000.5; }
static size_t h5_s(uint64_t i, char *out) { return (size_t)sprintf(out, "s%" PRIu64 "-%" PRIu64, i % 997, i); }
static int64_t h5_t(uint64_t i) { return INT64_C(1767225600000000) + (int64_t)i * 1234567; }

static void h5_schema(sf_schema *s)
{
    sf_schema_init(s);
    assert_int_equal(sf_schema_add(s, "id", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "x", SF_FLOAT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "s", SF_STRING), SF_OK);
    assert_int_equal(sf_schema_add(s, "t", SF_TIMESTAMP), SF_OK);
}

static void h5_write(const char *path)
{
    sf_schema s;
    h5_schema(&s);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_HDF5, "/t", &s, false, &w), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 1500), SF_OK);
    char buf[64];
    for (uint64_t first = 0; first < H5_ROWS; first += 1500) {
        sf_batch_clear(&b);
        size_t n = H5_ROWS - first < 1500 ? (size_t)(H5_ROWS - first) : 1500;
        for (size_t r = 0; r < n; r++) {
            uint64_t i = first + r;
            b.cols[0].i64[r] = h5_null(i) ? 0 : h5_id(i);
            b.cols[1].f64[r] = h5_x(i);
            size_t len = h5_s(i, buf);
            assert_int_equal(sf_dict_intern(&b.cols[2].dict, buf, len, &b.cols[2].code[r]), SF_OK);
            b.cols[3].i64[r] = h5_t(i);
        }
        b.nrows = n;
        for (size_t r = 0; r < n; r++)
            if (h5_null(first + r)) assert_int_equal(sf_batch_set_null(&b, 0, r), SF_OK);
        b.first_row = first;
        if (sf_table_writer_write(w, &b) != SF_OK) fail_msg("%s", sf_error_message());
    }
    assert_int_equal(sf_table_writer_close(&w), SF_OK);
    sf_batch_fini(&b);
    sf_schema_fini(&s);
}

static sf_input_config h5_config(const char *path, size_t batch)
{
    sf_input_config cfg;
    sf_input_config_defaults(&cfg);
    cfg.format = SF_INPUT_HDF5;
    cfg.path = (char *)path; /* borrowed */
    cfg.group = (char *)"/t";
    cfg.batch_rows = batch;
    return cfg;
}

static void h5_case(const char *path, size_t batch, const uint8_t *want)
{
    sf_input_config cfg = h5_config(path, batch);
    stream full;
    read_full(&cfg, want, &full);
    if (full.rc != SF_OK) fail_msg("%s", full.message);
    /* The stream against the formulas the table was written from. */
    sf_buf exp;
    sf_buf_init(&exp);
    char buf[64];
    for (uint64_t i = 0; i < H5_ROWS; i++) {
        if (!loaded(want, 0)) enc_skip(&exp);
        else if (h5_null(i)) enc_null(&exp);
        else enc_i64(&exp, h5_id(i));
        if (!loaded(want, 1)) enc_skip(&exp);
        else enc_f64(&exp, h5_x(i));
        if (!loaded(want, 2)) {
            enc_skip(&exp);
        } else {
            size_t len = h5_s(i, buf);
            enc_str(&exp, buf, len);
        }
        if (!loaded(want, 3)) enc_skip(&exp);
        else enc_i64(&exp, h5_t(i));
    }
    assert_int_equal(full.nrows, H5_ROWS);
    assert_int_equal(full.rows.len, exp.len);
    assert_memory_equal(full.rows.data, exp.data, exp.len);
    sf_buf_fini(&exp);
    assert_int_equal(full.nbatches, (H5_ROWS + batch - 1) / batch);
    sf_reader_pos start = {{0, 0, H5_ROWS, 0}}, end = {{H5_ROWS, H5_ROWS, H5_ROWS, 0}};
    assert_pos(&full.pos[0], &start, "tell at open", 0);
    assert_pos(&full.end_pos, &end, "tell at the end", 0);

    for (size_t k = 0; k <= full.nbatches; k++)
        for (int mode = FRESH; mode <= AFTER_REWIND; mode++) {
            sf_reader *r = resume(&cfg, want, &full, k, &full.pos[k], (resume_mode)mode, 0);
            sf_reader_destroy(&r);
        }
    sf_reader *r = resume(&cfg, want, &full, full.nbatches / 3, &full.pos[full.nbatches / 3], FRESH, 1000);
    sf_reader_destroy(&r);
    stream_fini(&full);
}

static void test_hdf5(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof path, "%s/table.h5", g_dir);
    h5_write(path);
    h5_case(path, 333, NULL);
    const uint8_t want[H5_NCOLS] = {1, 0, 1, 0};
    h5_case(path, 333, want);
    const uint8_t want2[H5_NCOLS] = {0, 1, 0, 1};
    h5_case(path, 4096, want2);

    /* Positions that cannot belong to this table. */
    sf_input_config cfg = h5_config(path, 333);
    stream full;
    read_full(&cfg, NULL, &full);
    sf_reader *r = open_reader(&cfg, NULL);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    for (int i = 0; i < 3; i++) assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    sf_batch_fini(&b);
    sf_reader_pos p = {{H5_ROWS + 1, H5_ROWS + 1, H5_ROWS, 0}};
    expect_seek_error(r, &p, "past the end");
    p = (sf_reader_pos){{10, 10, H5_ROWS + 1, 0}};
    expect_seek_error(r, &p, "table of");
    p = (sf_reader_pos){{10, 9, H5_ROWS, 0}};
    expect_seek_error(r, &p, "not one of");
    expect_next_batch(r, &full, 3);
    sf_reader_destroy(&r);
    stream_fini(&full);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* Synthetic generator */

static sf_input_config gen_config(uint64_t rows, bool incidents)
{
    sf_input_config cfg;
    sf_input_config_defaults(&cfg);
    cfg.format = SF_INPUT_SYNTHETIC;
    cfg.generator = (char *)"requests"; /* borrowed */
    cfg.rows = rows;
    cfg.seed = 2027;
    cfg.incidents = incidents;
    cfg.users = 5000;
    cfg.batch_rows = 7000;
    return cfg;
}

/* Resumes at batch k (k == nbatches: the end) in the given mode. */
static void gen_resume(const sf_input_config *cfg, const stream *full, size_t k, resume_mode mode, size_t batch_rows)
{
    const sf_reader_pos *at = &full->pos[k];
    sf_reader *r = resume(cfg, NULL, full, k, at, mode, batch_rows);
    sf_reader_destroy(&r);
}

static void gen_case(const sf_input_config *cfg, const uint64_t *rows_at, size_t nrows_at, bool all_modes)
{
    stream full;
    read_full(cfg, NULL, &full);
    if (full.rc != SF_OK) fail_msg("%s", full.message);
    assert_int_equal(full.nrows, cfg->rows);
    assert_int_equal(full.nbatches, (cfg->rows + cfg->batch_rows - 1) / cfg->batch_rows);
    sf_reader_pos start = {{0, 0, cfg->rows, 0}}, end = {{cfg->rows, cfg->rows, cfg->rows, 0}};
    assert_pos(&full.pos[0], &start, "tell at open", 0);
    assert_pos(&full.end_pos, &end, "tell at the end", 0);
    assert_pos(&full.pos[full.nbatches], &end, "tell after the last batch", full.nbatches);
    /* The start, the second batch, the middle, the last batch and the end
     * from fresh readers; the batches holding rows_at too. */
    size_t nb = full.nbatches;
    size_t ks[] = {0, 1, nb / 2, nb - 1, nb};
    for (size_t i = 0; i < sizeof ks / sizeof ks[0]; i++) gen_resume(cfg, &full, ks[i], FRESH, 0);
    for (size_t i = 0; i < nrows_at; i++) gen_resume(cfg, &full, (size_t)(rows_at[i] / cfg->batch_rows), FRESH, 0);
    if (all_modes) {
        gen_resume(cfg, &full, nb / 3, AFTER_READING, 0);    /* a seek backwards or forwards */
        gen_resume(cfg, &full, 2 * nb / 3, AFTER_REWIND, 0);
        gen_resume(cfg, &full, nb / 4, FRESH, 5001);         /* other batches after the seek */
    }
    stream_fini(&full);
}

static void test_gen(void **state)
{
    (void)state;
    sf_input_config cfg = gen_config(200000, false);
    gen_case(&cfg, NULL, 0, true);

    /* Positions that cannot belong to this input. */
    stream full;
    read_full(&cfg, NULL, &full);
    sf_reader *r = open_reader(&cfg, NULL);
    sf_reader_pos p = {{200001, 200001, 200000, 0}};
    expect_seek_error(r, &p, "past the end");
    p = (sf_reader_pos){{7000, 7000, 300000, 0}};
    expect_seek_error(r, &p, "input.rows");
    p = (sf_reader_pos){{7000, 6999, 200000, 0}};
    expect_seek_error(r, &p, "not one of");
    expect_next_batch(r, &full, 0);
    sf_reader_destroy(&r);
    stream_fini(&full);
}

static void test_gen_incidents(void **state)
{
    (void)state;
    sf_input_config cfg = gen_config(SF__GEN_INCIDENT_MIN_ROWS, true);
    assert_true(cfg.users >= SF__GEN_INCIDENT_MIN_USERS);
    /* Seek into each incident's window (its last rows, so that reading on
     * to the end stays cheap) and into the silence after incident 5. The
     * modes other than a fresh reader do not depend on the rows and are
     * covered by test_gen. */
    sf__gen_incidents inc;
    assert_int_equal(sf__gen_requests_incidents(&cfg, &inc), SF_OK);
    assert_true(inc.on);
    uint64_t at[SF__GEN_NINCIDENTS + 1];
    for (int k = 0; k < SF__GEN_NINCIDENTS; k++) {
        assert_true(inc.inc[k].end_row > inc.inc[k].first_row && inc.inc[k].end_row <= cfg.rows);
        at[k] = inc.inc[k].end_row - 1;
    }
    at[SF__GEN_NINCIDENTS] = inc.silence_first + (cfg.rows - inc.silence_first) / 2;
    gen_case(&cfg, at, SF__GEN_NINCIDENTS + 1, false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_skip_lf),
        cmocka_unit_test(test_csv_crlf_projection),
        cmocka_unit_test(test_csv_no_final_eol),
        cmocka_unit_test(test_csv_fail_after_seek),
        cmocka_unit_test(test_csv_bad_positions),
        cmocka_unit_test(test_hdf5),
        cmocka_unit_test(test_gen),
        cmocka_unit_test(test_gen_incidents),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
