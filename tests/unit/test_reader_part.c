/* Reading an input in parts (distribute.mode: parallel-read):
 * sf_reader_part_bounds, sf_reader_part_count and sf_reader_set_part on CSV,
 * HDF5 and the synthetic `requests` generator.
 *
 * Every case reads its input once with a single reader (the reference),
 * whose rows are first checked against what this file put into the input,
 * then reads it again as n parts with one reader per part, the way ranks
 * do: each reader takes its nominal bounds, counts its own bytes, and gets
 * the counts of the parts before it as a prefix sum. The parts' rows, in
 * part order, must be the reference's rows value by value, with the same
 * file offsets. For CSV each part must moreover hold exactly the records
 * that start between the boundaries computed here from the contract's
 * definition (the first position after a line feed at which an even number
 * of quotes has been seen), so no comparison rests on the code under test
 * alone. Rows are rendered into bytes: per column 'N' for a null or 'V' and
 * the int64, the float64's bits or the string; CSV rows also carry their
 * byte offset and length.
 *
 * The layouts of parallel-read with several threads per rank (P ranks x T
 * threads, sf_reader_split) are read the same way: every rank's part as T
 * sub-parts, taken one batch of each in turn as the run's rounds take
 * them, or on T threads at once; the sub-parts' rows, in file order, must
 * be the whole input's, each sub-part holding exactly the records between
 * the boundaries computed here, with the file's line numbers in bad-row
 * samples and error messages. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "shardflow/buf.h"
#include "shardflow/exec.h"
#include "shardflow/io.h"

#define MAX_SAMPLES 64
#define SAMPLE_LIMIT 10 /* bad-row samples a reader keeps per pass */
#define MAXLEN 4096 /* input.max_line_length of the CSV cases (small buffers) */

static char g_dir[64];

static int group_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof g_dir, "/tmp/shardflow_test_part_XXXXXX");
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

static unsigned rng_below(uint64_t *s, unsigned n) { return (unsigned)(rng_next(s) % n); }

static void bput(sf_buf *b, const char *s) { assert_int_equal(sf_buf_append(b, s, strlen(s)), SF_OK); }

static void write_bytes(const char *path, const char *data, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

/* ------------------------------------------------------------------ */
/* Rendered rows */

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

/* Rows: their values rendered into enc, and where each lies in the file
 * (off -1 where that is not known or not a file). */
typedef struct rowset {
    sf_buf enc;
    size_t n, cap;
    size_t *end; /* enc.len after row i */
    int64_t *off;
    uint32_t *bytes;
} rowset;

static void rowset_init(rowset *s)
{
    memset(s, 0, sizeof *s);
    sf_buf_init(&s->enc);
}

static void rowset_fini(rowset *s)
{
    sf_buf_fini(&s->enc);
    free(s->end);
    free(s->off);
    free(s->bytes);
    memset(s, 0, sizeof *s);
}

static void rowset_clear(rowset *s)
{
    sf_buf_clear(&s->enc);
    s->n = 0;
}

/* Ends the row whose values were just appended to s->enc. */
static void rowset_close(rowset *s, int64_t off, uint32_t bytes)
{
    if (s->n == s->cap) {
        size_t c = s->cap ? 2 * s->cap : 64;
        size_t *e = realloc(s->end, c * sizeof *e);
        assert_non_null(e);
        s->end = e;
        int64_t *o = realloc(s->off, c * sizeof *o);
        assert_non_null(o);
        s->off = o;
        uint32_t *b = realloc(s->bytes, c * sizeof *b);
        assert_non_null(b);
        s->bytes = b;
        s->cap = c;
    }
    s->end[s->n] = s->enc.len;
    s->off[s->n] = off;
    s->bytes[s->n] = bytes;
    s->n++;
}

static size_t rs_start(const rowset *s, size_t i) { return i ? s->end[i - 1] : 0; }

static void put_row(rowset *s, const sf_batch *b, size_t r)
{
    for (int c = 0; c < b->ncols; c++) {
        const sf_column *col = &b->cols[c];
        assert_true(col->loaded);
        if (sf_col_is_null(col, r)) {
            enc_null(&s->enc);
            continue;
        }
        switch (col->type) {
        case SF_INT64:
        case SF_TIMESTAMP: enc_i64(&s->enc, col->i64[r]); break;
        case SF_FLOAT64: enc_f64(&s->enc, col->f64[r]); break;
        case SF_STRING: {
            size_t len;
            const char *str = sf_dict_str(&col->dict, col->code[r], &len);
            enc_str(&s->enc, str, len);
            break;
        }
        default: fail_msg("column %d has type %d", c, (int)col->type);
        }
    }
    if (b->row_offset != NULL) rowset_close(s, b->row_offset[r], b->row_bytes[r]);
    else rowset_close(s, -1, 0);
}

/* The first of got's rows [0, n) that differs from want's [a, a + n) (with
 * offsets: also where it lies); n when none does. */
static size_t first_diff(const rowset *got, const rowset *want, size_t a, size_t n, bool offsets)
{
    for (size_t i = 0; i < n; i++) {
        size_t gs = rs_start(got, i), ws = rs_start(want, a + i);
        size_t gl = got->end[i] - gs, wl = want->end[a + i] - ws;
        if (gl != wl || memcmp(got->enc.data + gs, want->enc.data + ws, gl) != 0) return i;
        if (offsets && (got->off[i] != want->off[a + i] || got->bytes[i] != want->bytes[a + i])) return i;
    }
    return n;
}

static bool rows_are(const rowset *got, const rowset *want, size_t a, size_t n)
{
    return got->n == n && first_diff(got, want, a, n, true) == n;
}

static void assert_rows_x(const rowset *got, const rowset *want, size_t a, size_t n, bool offsets, const char *what)
{
    size_t m = got->n < n ? got->n : n;
    size_t i = first_diff(got, want, a, m, offsets);
    if (i < m)
        fail_msg("%s: row %zu (at byte %" PRId64 ", %u bytes) differs from expected row %zu (at byte %" PRId64
                 ", %u bytes)",
                 what, i, got->off[i], got->bytes[i], a + i, want->off[a + i], want->bytes[a + i]);
    if (got->n != n) fail_msg("%s: %zu rows, expected %zu", what, got->n, n);
}

static void assert_rows(const rowset *got, const rowset *want, size_t a, size_t n, const char *what)
{
    assert_rows_x(got, want, a, n, true, what);
}

/* ------------------------------------------------------------------ */
/* Passes over a reader */

typedef struct pass {
    rowset rows;
    sf_status rc;    /* SF_OK: ended at eof (or after max_batches) */
    bool misordered; /* a batch's first_row was not the rows before it (sub-parts) */
    char msg[1024];
    uint64_t bad;
    size_t nsamples;
    sf_bad_row samples[MAX_SAMPLES];
} pass;

static void pass_init(pass *p)
{
    memset(p, 0, sizeof *p);
    rowset_init(&p->rows);
}

static void pass_fini(pass *p) { rowset_fini(&p->rows); }

/* Reads at most max_batches batches of r (to its end or first error). The
 * batches' first_row must count on from first0. */
static void read_pass(sf_reader *r, pass *ps, uint64_t first0, size_t max_batches)
{
    rowset_clear(&ps->rows);
    ps->rc = SF_OK;
    ps->msg[0] = '\0';
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (size_t k = 0; k < max_batches; k++) {
        bool eof = false;
        sf_status rc = sf_reader_next(r, &b, &eof);
        if (rc != SF_OK) {
            ps->rc = rc;
            snprintf(ps->msg, sizeof ps->msg, "%s", sf_error_message());
            break;
        }
        assert_int_equal(eof, b.nrows == 0);
        if (eof) {
            /* The end stays the end: nothing of what follows the part. */
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            assert_true(eof);
            assert_int_equal(b.nrows, 0);
            break;
        }
        if (b.first_row != first0 + ps->rows.n)
            fail_msg("batch first_row %" PRIu64 ", expected %" PRIu64, b.first_row, first0 + (uint64_t)ps->rows.n);
        for (size_t i = 0; i < b.nrows; i++) put_row(&ps->rows, &b, i);
    }
    sf_batch_fini(&b);
    ps->bad = sf_reader_bad_rows(r);
    const sf_bad_row *s;
    size_t n = sf_reader_bad_row_samples(r, &s);
    assert_true(n <= MAX_SAMPLES);
    memcpy(ps->samples, s, n * sizeof *s);
    ps->nsamples = n;
}

static sf_reader *open_reader(const sf_input_config *cfg)
{
    sf_reader *r = NULL;
    if (sf_reader_open(cfg, &r) != SF_OK) fail_msg("open: %s", sf_error_message());
    return r;
}

static void read_whole(const sf_input_config *cfg, pass *ps)
{
    sf_reader *r = open_reader(cfg);
    read_pass(r, ps, 0, SIZE_MAX);
    sf_reader_destroy(&r);
}

/* ------------------------------------------------------------------ */
/* Parts, one reader each */

typedef struct plan {
    int n;
    sf_reader **r;
    uint64_t *begin, *end;
    uint64_t (*at)[2]; /* at[p]: the counts of [base, begin[p]); at[n]: of all */
} plan;

static void count_text(const char *text, uint64_t a, uint64_t e, uint64_t out[2])
{
    out[0] = out[1] = 0;
    for (uint64_t i = a; i < e; i++) {
        out[0] += text[i] == '"';
        out[1] += text[i] == '\n';
    }
}

/* Opens n readers of cfg. cuts == NULL: part p gets its nominal bounds
 * from sf_reader_part_bounds, which are checked to be the even split of
 * the input's units; else part p is [cuts[p], cuts[p + 1]). Each counts its
 * own part (checked against text, the file's bytes, for CSV); the counts
 * before it are their prefix sum; then every reader is restricted to its
 * part. */
static void plan_open(plan *pl, const sf_input_config *cfg, int n, const uint64_t *cuts, const char *text)
{
    pl->n = n;
    pl->r = calloc((size_t)n, sizeof *pl->r);
    pl->begin = calloc((size_t)n, sizeof *pl->begin);
    pl->end = calloc((size_t)n, sizeof *pl->end);
    pl->at = calloc((size_t)n + 1, sizeof *pl->at);
    uint64_t(*cnt)[2] = calloc((size_t)n, sizeof *cnt);
    assert_true(pl->r && pl->begin && pl->end && pl->at && cnt);
    const bool csv = cfg->format == SF_INPUT_CSV;
    for (int p = 0; p < n; p++) {
        pl->r[p] = open_reader(cfg);
        if (cuts) {
            pl->begin[p] = cuts[p];
            pl->end[p] = cuts[p + 1];
        } else {
            sf_reader_part_bounds(pl->r[p], p, n, &pl->begin[p], &pl->end[p]);
        }
        if (sf_reader_part_count(pl->r[p], pl->begin[p], pl->end[p], cnt[p]) != SF_OK)
            fail_msg("part_count: %s", sf_error_message());
    }
    const uint64_t base = csv ? sf_reader_data_start(pl->r[0]) : 0;
    const uint64_t total = csv ? sf_reader_data_bytes(pl->r[0]) : sf_reader_total_rows(pl->r[0]);
    assert_true(total < UINT32_MAX);
    assert_int_equal(pl->begin[0], base);
    assert_int_equal(pl->end[n - 1], base + total);
    for (int p = 0; p < n; p++) {
        if (p > 0) assert_int_equal(pl->begin[p], pl->end[p - 1]);
        assert_true(pl->begin[p] <= pl->end[p]);
        if (!cuts) {
            /* floor(total * p / n): the even split, computed directly. */
            assert_int_equal(pl->begin[p], base + total * (uint64_t)p / (uint64_t)n);
            uint64_t size = pl->end[p] - pl->begin[p];
            assert_true(size == total / (uint64_t)n || size == total / (uint64_t)n + 1);
        }
        uint64_t want[2] = {0, 0};
        if (csv) count_text(text, pl->begin[p], pl->end[p], want);
        assert_int_equal(cnt[p][0], want[0]);
        assert_int_equal(cnt[p][1], want[1]);
        pl->at[p + 1][0] = pl->at[p][0] + cnt[p][0];
        pl->at[p + 1][1] = pl->at[p][1] + cnt[p][1];
    }
    for (int p = 0; p < n; p++)
        if (sf_reader_set_part(pl->r[p], pl->begin[p], pl->end[p], pl->at[p], pl->at[p + 1]) != SF_OK)
            fail_msg("set_part %d of %d: %s", p, n, sf_error_message());
    free(cnt);
}

static void plan_close(plan *pl)
{
    for (int p = 0; p < pl->n; p++) sf_reader_destroy(&pl->r[p]);
    free(pl->r);
    free(pl->begin);
    free(pl->end);
    free(pl->at);
    memset(pl, 0, sizeof *pl);
}

/* Reads every part into ps[p]. Some parts are first read for a batch or
 * two and rewound, some are read twice in full with a rewind in between:
 * a rewind must give the part's rows again, from the part's start. global:
 * first_row is the input's row index (HDF5, synthetic), else it counts from
 * the part's start. */
static void read_parts(const plan *pl, pass *ps, bool global, unsigned salt)
{
    for (int p = 0; p < pl->n; p++) {
        const uint64_t first0 = global ? pl->begin[p] : 0;
        const unsigned mode = ((unsigned)p + salt) % 3;
        pass_init(&ps[p]);
        pass other;
        pass_init(&other);
        if (mode == 1) {
            read_pass(pl->r[p], &other, first0, 1 + ((unsigned)p + salt) % 2);
            assert_int_equal(sf_reader_rewind(pl->r[p]), SF_OK);
            assert_int_equal(sf_reader_bad_rows(pl->r[p]), 0);
        }
        read_pass(pl->r[p], &ps[p], first0, SIZE_MAX);
        if (mode == 1) {
            /* The cut pass was a prefix of the full one, or failed alike. */
            assert_true(other.rows.n <= ps[p].rows.n);
            assert_rows(&other.rows, &ps[p].rows, 0, other.rows.n, "pass before rewind");
            if (other.rc != SF_OK) {
                assert_int_equal(ps[p].rc, other.rc);
                assert_string_equal(ps[p].msg, other.msg);
                assert_int_equal(other.rows.n, ps[p].rows.n);
            }
            assert_true(other.bad <= ps[p].bad);
        } else if (mode == 2) {
            assert_int_equal(sf_reader_rewind(pl->r[p]), SF_OK);
            read_pass(pl->r[p], &other, first0, SIZE_MAX);
            assert_int_equal(other.rc, ps[p].rc);
            assert_string_equal(other.msg, ps[p].msg);
            assert_rows(&other.rows, &ps[p].rows, 0, ps[p].rows.n, "second pass after rewind");
            assert_int_equal(other.bad, ps[p].bad);
        }
        pass_fini(&other);
    }
}

static void passes_fini(pass *ps, int n)
{
    for (int p = 0; p < n; p++) pass_fini(&ps[p]);
    free(ps);
}

/* B(x) of the contract, by a plain scan of the file's bytes: the first
 * position at or after x that follows a line feed and has an even number
 * of quotes in [ds, position); ds for x <= ds, the end for x >= the end. */
static uint64_t ref_boundary(const char *text, uint64_t size, uint64_t ds, uint64_t x)
{
    if (x <= ds) return ds;
    if (x >= size) return size;
    uint64_t q = 0;
    for (uint64_t i = ds; i < size; i++) {
        if (i >= x && text[i - 1] == '\n' && q % 2 == 0) return i;
        q += text[i] == '"';
    }
    return size;
}

/* Physical line (1-based) of byte off. */
static uint64_t line_of(const char *text, uint64_t off)
{
    uint64_t line = 1;
    for (uint64_t i = 0; i < off; i++) line += text[i] == '\n';
    return line;
}

/* Where the nominal split points fell, over all CSV cases (see the test
 * that insists on each kind). */
static struct {
    size_t in_quotes; /* inside a quoted field */
    size_t on_lf;     /* on a line feed */
    size_t after_lf;  /* right after one */
    size_t in_crlf;   /* between CR and LF */
} g_cover;

static void note_split(const char *text, uint64_t ds, uint64_t size, uint64_t x)
{
    if (x <= ds || x >= size) return;
    uint64_t q = 0;
    for (uint64_t i = ds; i < x; i++) q += text[i] == '"';
    g_cover.in_quotes += q % 2;
    g_cover.on_lf += text[x] == '\n';
    g_cover.after_lf += text[x - 1] == '\n';
    g_cover.in_crlf += text[x - 1] == '\r' && text[x] == '\n';
}

/* CSV without quotes inside unquoted fields: part p holds exactly the rows
 * of `want` (the whole file's, in order) that start in [B(begin), B(end)).
 * Returns the sum of the parts' bad rows. */
static uint64_t check_rfc_parts(const char *path, const char *text, uint64_t size, const plan *pl,
                                const pass *ps, const rowset *want)
{
    const uint64_t ds = sf_reader_data_start(pl->r[0]);
    size_t row = 0;
    uint64_t bad = 0;
    for (int p = 0; p < pl->n; p++) {
        const uint64_t lo = ref_boundary(text, size, ds, pl->begin[p]);
        const uint64_t hi = ref_boundary(text, size, ds, pl->end[p]);
        note_split(text, ds, size, pl->begin[p]);
        size_t k = row;
        while (k < want->n && (uint64_t)want->off[k] < hi) k++;
        if (k > row) assert_true((uint64_t)want->off[row] >= lo);
        char what[256];
        snprintf(what, sizeof what, "%s: part %d of %d, bytes [%" PRIu64 ", %" PRIu64 ") -> [%" PRIu64 ", %" PRIu64 ")",
                 path, p, pl->n, pl->begin[p], pl->end[p], lo, hi);
        if (ps[p].rc != SF_OK) fail_msg("%s: %s", what, ps[p].msg);
        assert_rows(&ps[p].rows, want, row, k - row, what);
        row = k;
        bad += ps[p].bad;
    }
    assert_int_equal(row, want->n);
    return bad;
}

/* ------------------------------------------------------------------ */
/* Hand-written CSV files, with what the reader must find in them */

enum { HK_GOOD, HK_BLANK, HK_BAD_ID, HK_BAD_V, HK_BAD_NF, HK_BAD_QUOTE };

typedef struct hrec {
    int kind;
    uint64_t line, off;
} hrec;

typedef struct hfile {
    char path[128];
    sf_buf text;
    uint64_t ds;
    int ncols;
    const char *eol;
    uint64_t line; /* physical line of the next record */
    rowset exp;    /* the rows the reader must deliver */
    hrec *rec;
    size_t nrec, rcap, nbad;
} hfile;

typedef struct hspec {
    int ncols;          /* 1 (string s) or 4 (id int64, name string, v float64, tag string) */
    size_t nrec;        /* records, blank lines and bad records included */
    bool crlf, final_eol;
    unsigned blank_pct; /* blank lines (four columns only), percent */
    unsigned bad_pct;   /* bad records, percent, at most max_bad of them */
    size_t max_bad;
    bool stray;         /* quotes inside unquoted fields */
} hspec;

static void put_quoted(sf_buf *t, const char *s, size_t n)
{
    bput(t, "\"");
    for (size_t k = 0; k < n; k++) {
        if (s[k] == '"') bput(t, "\"");
        assert_int_equal(sf_buf_append(t, &s[k], 1), SF_OK);
    }
    bput(t, "\"");
}

/* A string field: appends its text to t and its value to vals. */
static void string_field(const hfile *f, uint64_t *rng, uint64_t i, bool stray, sf_buf *t, sf_buf *vals)
{
    const char *el = f->eol;
    char v[128] = "";
    int n = 0;
    bool quote = true;
    switch (rng_below(rng, stray ? 12 : 10)) {
    case 0:
    case 1: n = snprintf(v, sizeof v, "n%" PRIu64, i); quote = false; break;
    case 2: n = snprintf(v, sizeof v, "a%sb %" PRIu64, el, i); break;                /* a line end inside */
    case 3: n = snprintf(v, sizeof v, "a,b,%" PRIu64, i); break;                     /* delimiters */
    case 4: n = snprintf(v, sizeof v, "say \"hi\" %" PRIu64 "\"", i); break;         /* doubled quotes */
    case 5: n = 0; break;                                                            /* "": the empty string */
    case 6: enc_null(vals); return;                                                  /* unquoted empty: null */
    case 7: n = snprintf(v, sizeof v, "%s%sx%" PRIu64 "%s", el, el, i, el); break;   /* line ends at both ends */
    case 8: n = snprintf(v, sizeof v, "\"%s\"", el); break;                          /* quotes around a line end */
    case 9: n = snprintf(v, sizeof v, "caf\xc3\xa9 \xa2\x8a%" PRIu64, i); quote = false; break; /* high bytes */
    default: n = snprintf(v, sizeof v, "ab\"c%" PRIu64, i); quote = false; break;   /* a quote inside */
    }
    enc_str(vals, v, (size_t)n);
    if (quote) put_quoted(t, v, (size_t)n);
    else assert_int_equal(sf_buf_append(t, v, (size_t)n), SF_OK);
}

static void hfile_add(hfile *f, int kind, const sf_buf *t, const sf_buf *vals, bool eol)
{
    if (f->nrec == f->rcap) {
        f->rcap = f->rcap ? 2 * f->rcap : 64;
        hrec *r = realloc(f->rec, f->rcap * sizeof *r);
        assert_non_null(r);
        f->rec = r;
    }
    hrec *e = &f->rec[f->nrec++];
    e->kind = kind;
    e->line = f->line;
    e->off = f->text.len;
    assert_int_equal(sf_buf_append(&f->text, t->data, t->len), SF_OK);
    if (eol) bput(&f->text, f->eol);
    f->line++;
    for (size_t k = 0; k < t->len; k++) f->line += t->data[k] == '\n';
    bool row = kind == HK_GOOD;
    if (kind != HK_GOOD && kind != HK_BLANK) f->nbad++;
    if (row) {
        assert_int_equal(sf_buf_append(&f->exp.enc, vals->data, vals->len), SF_OK);
        rowset_close(&f->exp, (int64_t)e->off, (uint32_t)(f->text.len - e->off));
    }
}

static void hfile_make(hfile *f, const hspec *sp, uint64_t seed, const char *name)
{
    memset(f, 0, sizeof *f);
    sf_buf_init(&f->text);
    rowset_init(&f->exp);
    f->ncols = sp->ncols;
    f->eol = sp->crlf ? "\r\n" : "\n";
    snprintf(f->path, sizeof f->path, "%s/%s", g_dir, name);
    bput(&f->text, sp->ncols == 4 ? "id,name,v,tag" : "s");
    bput(&f->text, f->eol);
    f->ds = f->text.len;
    f->line = 2;
    uint64_t rng = seed;
    sf_buf t, vals;
    sf_buf_init(&t);
    sf_buf_init(&vals);
    char tmp[64];
    for (size_t i = 0; i < sp->nrec; i++) {
        const bool last = i + 1 == sp->nrec;
        sf_buf_clear(&t);
        sf_buf_clear(&vals);
        int kind = HK_GOOD;
        unsigned roll = rng_below(&rng, 100);
        if (!last && sp->ncols == 4 && roll < sp->blank_pct) {
            kind = HK_BLANK;
        } else if (!last && roll >= 100 - sp->bad_pct && f->nbad < sp->max_bad) {
            static const int k4[] = {HK_BAD_ID, HK_BAD_V, HK_BAD_NF, HK_BAD_QUOTE};
            static const int k1[] = {HK_BAD_NF, HK_BAD_QUOTE};
            kind = sp->ncols == 4 ? k4[rng_below(&rng, 4)] : k1[rng_below(&rng, 2)];
        }
        if (kind == HK_BLANK) {
            /* nothing before the line end */
        } else if (kind == HK_BAD_NF) {
            assert_int_equal(sf_buf_printf(&t, "%" PRIu64 ",\"2%s\",3,4,5", i, f->eol), SF_OK);
            if (sp->ncols == 1) {
                sf_buf_clear(&t);
                assert_int_equal(sf_buf_printf(&t, "x%" PRIu64 ",\"%sy\"", i, f->eol), SF_OK);
            }
        } else if (kind == HK_BAD_QUOTE && sp->stray && rng_below(&rng, 2)) {
            /* After the closing quote, the rest of the field is unquoted, so
             * its quote is a quote inside an unquoted field; a quoted line
             * end follows, which a part's end may fall on. */
            assert_int_equal(sf_buf_printf(&t, "%" PRIu64 ",\"a\"b\"c,\"x%sy\",t", i, f->eol), SF_OK);
        } else if (kind == HK_BAD_QUOTE) {
            /* Every other one with a line end inside the quotes. */
            if (sp->ncols == 4)
                assert_int_equal(sf_buf_printf(&t, "%" PRIu64 ",\"a%sb\"c,1.5,t", i, i % 2 ? f->eol : ""), SF_OK);
            else
                assert_int_equal(sf_buf_printf(&t, "\"a%sb\"c%" PRIu64, i % 2 ? f->eol : "", i), SF_OK);
        } else if (sp->ncols == 1) {
            string_field(f, &rng, i, sp->stray, &t, &vals);
            /* A last record without a line end cannot be empty: it would
             * not be there at all. */
            if (last && !sp->final_eol && t.len == 0) {
                sf_buf_clear(&vals);
                bput(&t, "end");
                enc_str(&vals, "end", 3);
            }
        } else {
            int64_t id = (int64_t)i * 37 - 100;
            if (kind == HK_BAD_ID) assert_int_equal(sf_buf_printf(&t, "x%" PRId64 ",", id), SF_OK);
            else assert_int_equal(sf_buf_printf(&t, "%" PRId64 ",", id), SF_OK);
            enc_i64(&vals, id);
            string_field(f, &rng, i, sp->stray, &t, &vals);
            bput(&t, ",");
            if (kind == HK_BAD_V) {
                bput(&t, "1.2.3");
            } else if (rng_below(&rng, 10) == 0) {
                enc_null(&vals);
            } else {
                int64_t m = (int64_t)rng_below(&rng, 2000001) - 1000000;
                int64_t a = m < 0 ? -m : m;
                snprintf(tmp, sizeof tmp, "%s%" PRId64 ".%03" PRId64, m < 0 ? "-" : "", a / 1000, a % 1000);
                bput(&t, tmp);
                enc_f64(&vals, strtod(tmp, NULL));
            }
            bput(&t, ",");
            unsigned g = rng_below(&rng, sp->stray ? 7 : 6);
            int n = 0;
            switch (g) {
            case 0: enc_null(&vals); break;
            case 1: n = snprintf(tmp, sizeof tmp, "u%sv", f->eol); put_quoted(&t, tmp, (size_t)n); break;
            case 2: n = snprintf(tmp, sizeof tmp, "w%s", f->eol); put_quoted(&t, tmp, (size_t)n); break;
            case 3: n = snprintf(tmp, sizeof tmp, "a\"b"); put_quoted(&t, tmp, (size_t)n); break;
            case 6: n = snprintf(tmp, sizeof tmp, "q\""); bput(&t, tmp); break; /* a quote inside, at the end */
            default: n = snprintf(tmp, sizeof tmp, "t%u", g); bput(&t, tmp); break;
            }
            if (g != 0) enc_str(&vals, tmp, (size_t)n);
        }
        hfile_add(f, kind, &t, &vals, !last || sp->final_eol);
    }
    sf_buf_fini(&t);
    sf_buf_fini(&vals);
    write_bytes(f->path, (const char *)f->text.data, f->text.len);
}

static void hfile_fini(hfile *f)
{
    unlink(f->path);
    sf_buf_fini(&f->text);
    rowset_fini(&f->exp);
    free(f->rec);
    memset(f, 0, sizeof *f);
}

static sf_input_config hcfg(const hfile *f, sf_type_hint *hints, size_t batch, size_t block, sf_bad_row_policy pol)
{
    sf_input_config cfg;
    sf_input_config_defaults(&cfg);
    cfg.format = SF_INPUT_CSV;
    cfg.path = (char *)f->path; /* borrowed: never passed to sf_input_config_fini */
    cfg.batch_rows = batch;
    if (block) cfg.block_size = block;
    cfg.max_line_length = MAXLEN;
    cfg.on_bad_row = pol;
    static const char *names4[4] = {"id", "name", "v", "tag"};
    static const sf_type types4[4] = {SF_INT64, SF_STRING, SF_FLOAT64, SF_STRING};
    for (int c = 0; c < f->ncols; c++) {
        hints[c].name = f->ncols == 4 ? (char *)names4[c] : (char *)"s";
        hints[c].type = f->ncols == 4 ? types4[c] : SF_STRING;
    }
    cfg.hints = hints;
    cfg.nhints = f->ncols;
    return cfg;
}

static bool hk_bad(int kind) { return kind != HK_GOOD && kind != HK_BLANK; }

/* The whole file read at once (skip policy) is what the file holds. */
static void check_whole(const hfile *f, const pass *w)
{
    if (w->rc != SF_OK) fail_msg("%s: %s", f->path, w->msg);
    assert_rows(&w->rows, &f->exp, 0, f->exp.n, f->path);
    assert_int_equal(w->bad, f->nbad);
    size_t m = 0;
    for (size_t i = 0; i < f->nrec && m < w->nsamples; i++) {
        if (!hk_bad(f->rec[i].kind)) continue;
        assert_int_equal(w->samples[m].line, f->rec[i].line);
        char prefix[200];
        snprintf(prefix, sizeof prefix, "%s:%" PRIu64 ":", f->path, f->rec[i].line);
        if (strncmp(w->samples[m].message, prefix, strlen(prefix)) != 0)
            fail_msg("bad row message '%s' does not start with '%s'", w->samples[m].message, prefix);
        m++;
    }
    assert_int_equal(m, w->nsamples);
}

/* The bad rows each part kept: those of the file in its byte range. */
static void check_part_samples(const hfile *f, const plan *pl, const pass *ps)
{
    const uint64_t size = f->text.len;
    for (int p = 0; p < pl->n; p++) {
        uint64_t lo = ref_boundary((const char *)f->text.data, size, f->ds, pl->begin[p]);
        uint64_t hi = ref_boundary((const char *)f->text.data, size, f->ds, pl->end[p]);
        size_t m = 0;
        uint64_t nbad = 0;
        for (size_t i = 0; i < f->nrec; i++) {
            const hrec *e = &f->rec[i];
            if (!hk_bad(e->kind) || e->off < lo || e->off >= hi) continue;
            nbad++;
            if (m < ps[p].nsamples) {
                assert_int_equal(ps[p].samples[m].line, e->line);
                m++;
            }
        }
        assert_int_equal(ps[p].bad, nbad);
        assert_int_equal(m, ps[p].nsamples);
    }
}

/* Reads f as n parts (skip policy) and checks each part. Returns the number
 * of parts that skipped bad rows. */
static int hand_parts(const hfile *f, size_t batch, size_t block, int n, const uint64_t *cuts, unsigned salt)
{
    sf_type_hint hints[4];
    sf_input_config cfg = hcfg(f, hints, batch, block, SF_BAD_ROW_SKIP);
    plan pl;
    plan_open(&pl, &cfg, n, cuts, (const char *)f->text.data);
    assert_int_equal(sf_reader_data_start(pl.r[0]), f->ds);
    assert_int_equal(sf_reader_data_bytes(pl.r[0]), f->text.len - f->ds);
    pass *ps = calloc((size_t)n, sizeof *ps);
    assert_non_null(ps);
    read_parts(&pl, ps, false, salt);
    uint64_t bad = check_rfc_parts(f->path, (const char *)f->text.data, f->text.len, &pl, ps, &f->exp);
    assert_int_equal(bad, f->nbad);
    check_part_samples(f, &pl, ps);
    int with_bad = 0;
    for (int p = 0; p < n; p++) with_bad += ps[p].bad > 0;
    passes_fini(ps, n);
    plan_close(&pl);
    return with_bad;
}

static const size_t g_blocks[] = {7, 64, 0};
static const size_t g_batches[] = {1, 3, 64, 5};

/* n = 1..8, more parts than records, and (for small files) more parts than
 * bytes. */
static int hand_all_n(const hfile *f, unsigned salt)
{
    int most_with_bad = 0;
    int ns[11];
    int k = 0;
    for (int n = 1; n <= 8; n++) ns[k++] = n;
    ns[k++] = (int)f->nrec + 3;
    if (f->text.len - f->ds < 40) ns[k++] = (int)(f->text.len - f->ds) + 5;
    for (int i = 0; i < k; i++) {
        size_t block = g_blocks[(salt + (unsigned)i) % 3];
        size_t batch = g_batches[(salt + 2 * (unsigned)i) % 4];
        int w = hand_parts(f, batch, block, ns[i], NULL, salt + (unsigned)i);
        if (w > most_with_bad) most_with_bad = w;
    }
    return most_with_bad;
}

static void hand_case(const hspec *sp, uint64_t seed, const char *name, unsigned salt, int *most_with_bad)
{
    hfile f;
    hfile_make(&f, sp, seed, name);
    sf_type_hint hints[4];
    for (int b = 0; b < 3; b++) {
        sf_input_config cfg = hcfg(&f, hints, g_batches[b], g_blocks[b], SF_BAD_ROW_SKIP);
        pass w;
        pass_init(&w);
        read_whole(&cfg, &w);
        check_whole(&f, &w);
        pass_fini(&w);
    }
    int m = hand_all_n(&f, salt);
    if (m > *most_with_bad) *most_with_bad = m;
    hfile_fini(&f);
}

static void test_csv_hand(void **state)
{
    (void)state;
    const hspec specs[] = {
        {4, 60, false, true, 10, 0, 0, false},  {4, 60, true, false, 10, 0, 0, false},
        {4, 80, false, false, 5, 10, 30, false}, {4, 80, true, true, 5, 10, 30, false},
        {1, 60, false, true, 0, 0, 0, false},   {1, 60, true, false, 0, 8, 30, false},
        {1, 40, false, false, 0, 0, 0, false},  {4, 25, true, true, 30, 0, 0, false},
    };
    memset(&g_cover, 0, sizeof g_cover);
    int most_with_bad = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        for (uint64_t seed = 1; seed <= 6; seed++) {
            char name[64];
            snprintf(name, sizeof name, "hand_%zu_%" PRIu64 ".csv", s, seed);
            hand_case(&specs[s], seed * 1000 + s, name, (unsigned)(seed + s), &most_with_bad);
        }
    }
    /* The nominal split points fell inside quoted fields, on line feeds,
     * right after them and inside CRLF pairs; and bad rows were skipped in
     * several parts of one run. */
    assert_true(g_cover.in_quotes > 20);
    assert_true(g_cover.on_lf > 5);
    assert_true(g_cover.after_lf > 5);
    assert_true(g_cover.in_crlf > 2);
    assert_true(most_with_bad >= 3);
}

/* Every split point of a small file as two parts, and random pairs of
 * split points as three parts. */
static void test_csv_every_split(void **state)
{
    (void)state;
    const hspec specs[] = {
        {4, 12, false, true, 15, 15, 3, false},
        {4, 12, true, false, 15, 15, 3, false},
        {1, 14, true, true, 0, 10, 2, false},
    };
    memset(&g_cover, 0, sizeof g_cover);
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        hfile f;
        char name[64];
        snprintf(name, sizeof name, "split_%zu.csv", s);
        hfile_make(&f, &specs[s], 77 + s, name);
        sf_type_hint hints[4];
        sf_input_config cfg = hcfg(&f, hints, 2, 7, SF_BAD_ROW_SKIP);
        pass w;
        pass_init(&w);
        read_whole(&cfg, &w);
        check_whole(&f, &w);
        pass_fini(&w);
        const uint64_t size = f.text.len;
        for (uint64_t x = f.ds; x <= size; x++) {
            uint64_t cuts[3] = {f.ds, x, size};
            hand_parts(&f, 1 + x % 3, g_blocks[x % 3], 2, cuts, (unsigned)x);
        }
        uint64_t rng = 5 + s;
        for (int k = 0; k < 300; k++) {
            uint64_t a = f.ds + rng_next(&rng) % (size - f.ds + 1);
            uint64_t b = f.ds + rng_next(&rng) % (size - f.ds + 1);
            if (a > b) {
                uint64_t t = a;
                a = b;
                b = t;
            }
            uint64_t cuts[4] = {f.ds, a, b, size};
            hand_parts(&f, 1 + (unsigned)k % 4, g_blocks[k % 3], 3, cuts, (unsigned)k);
        }
        hfile_fini(&f);
    }
    assert_true(g_cover.in_quotes > 50 && g_cover.on_lf > 10 && g_cover.after_lf > 10 && g_cover.in_crlf > 5);
}

/* ------------------------------------------------------------------ */
/* P ranks x T threads: sub-parts (sf_reader_split) */

/* The layout the run makes (src/flow/run.c): rank p reads part p of P as T
 * sub-parts, the even split of its nominal range; g = p * T + t numbers
 * the sub-parts in file order. */
typedef struct layout {
    int P, T;
    sf_reader **r;  /* P: one reader per rank, split into T */
    uint64_t *cuts; /* P * T + 1 nominal bounds */
    uint64_t *at;   /* 2 (P * T + 1): quotes and line feeds of [base, cuts[g]) */
} layout;

/* Opens the P readers, cuts, counts (checked against text for CSV, prefix
 * sums included) and splits them. */
static void layout_open(layout *L, const sf_input_config *cfg, int P, int T, const char *text)
{
    const int n = P * T;
    L->P = P;
    L->T = T;
    L->r = calloc((size_t)P, sizeof *L->r);
    L->cuts = calloc((size_t)n + 1, sizeof *L->cuts);
    L->at = calloc(2 * ((size_t)n + 1), sizeof *L->at);
    uint64_t(*cnt)[2] = calloc((size_t)n, sizeof *cnt);
    assert_true(L->r && L->cuts && L->at && cnt);
    const bool csv = cfg->format == SF_INPUT_CSV;
    for (int p = 0; p < P; p++) {
        L->r[p] = open_reader(cfg);
        uint64_t b, e;
        sf_reader_part_bounds(L->r[p], p, P, &b, &e);
        if (p > 0) assert_int_equal(b, L->cuts[p * T]);
        for (int t = 0; t < T; t++) sf_reader_sub_bounds(b, e, t, T, &L->cuts[p * T + t], &L->cuts[p * T + t + 1]);
        for (int t = 0; t <= T; t++) {
            /* floor(size * t / T): the even split, computed directly. */
            assert_int_equal(L->cuts[p * T + t], b + (e - b) * (uint64_t)t / (uint64_t)T);
        }
        for (int t = 0; t < T; t++) {
            const int g = p * T + t;
            if (sf_reader_part_count(L->r[p], L->cuts[g], L->cuts[g + 1], cnt[g]) != SF_OK)
                fail_msg("part_count: %s", sf_error_message());
        }
    }
    const uint64_t base = csv ? sf_reader_data_start(L->r[0]) : 0;
    const uint64_t total = csv ? sf_reader_data_bytes(L->r[0]) : sf_reader_total_rows(L->r[0]);
    assert_int_equal(L->cuts[0], base);
    assert_int_equal(L->cuts[n], base + total);
    for (int g = 0; g < n; g++) {
        uint64_t want[2] = {0, 0}, before[2] = {0, 0};
        if (csv) {
            count_text(text, L->cuts[g], L->cuts[g + 1], want);
            count_text(text, base, L->cuts[g + 1], before);
        }
        assert_int_equal(cnt[g][0], want[0]);
        assert_int_equal(cnt[g][1], want[1]);
        L->at[2 * g + 2] = L->at[2 * g] + cnt[g][0];
        L->at[2 * g + 3] = L->at[2 * g + 1] + cnt[g][1];
        assert_int_equal(L->at[2 * g + 2], before[0]);
        assert_int_equal(L->at[2 * g + 3], before[1]);
    }
    for (int p = 0; p < P; p++) {
        if (sf_reader_split(L->r[p], T, &L->cuts[p * T], &L->at[2 * p * T]) != SF_OK)
            fail_msg("split %d of %d into %d: %s", p, P, T, sf_error_message());
        assert_int_equal(sf_reader_split_count(L->r[p]), T);
    }
    free(cnt);
}

static void layout_close(layout *L)
{
    for (int p = 0; p < L->P; p++) sf_reader_destroy(&L->r[p]);
    free(L->r);
    free(L->cuts);
    free(L->at);
    memset(L, 0, sizeof *L);
}

/* One batch of sub-part t of r into ps (its first_row must count on from
 * first0); true at the sub-part's end or first failure. Only running out
 * of memory fails a CMocka assertion here: this also runs on threads. */
static bool sub_step(sf_reader *r, int t, sf_batch *b, pass *ps, uint64_t first0)
{
    bool eof = false;
    sf_status rc = sf_reader_next_sub(r, t, b, &eof);
    if (rc != SF_OK) {
        ps->rc = rc;
        snprintf(ps->msg, sizeof ps->msg, "%s", sf_error_message());
        return true;
    }
    if (eof) {
        /* The end stays the end. */
        if (b->nrows != 0 || sf_reader_next_sub(r, t, b, &eof) != SF_OK || !eof || b->nrows != 0)
            ps->misordered = true;
        return true;
    }
    if (b->first_row != first0 + ps->rows.n) ps->misordered = true;
    for (size_t i = 0; i < b->nrows; i++) put_row(&ps->rows, b, i);
    return false;
}

/* What each thread reads in layout_read's threaded mode. */
typedef struct sub_job {
    const layout *L;
    int p;
    pass *ps;
    bool global;
    sf_status init_rc;
} sub_job;

static sf_status sub_job_run(void *ctx, int t)
{
    sub_job *j = ctx;
    const int g = j->p * j->L->T + t;
    sf_batch b;
    sf_status rc = sf_reader_batch_init(j->L->r[j->p], &b);
    if (rc != SF_OK) return rc;
    while (!sub_step(j->L->r[j->p], t, &b, &j->ps[g], j->global ? j->L->cuts[g] : 0)) {
    }
    sf_batch_fini(&b);
    return SF_OK;
}

/* Reads every sub-part of every rank into ps[g] (initialised here). In
 * turns, one batch of each sub-part of a rank after the other (the run's
 * rounds), or each sub-part on its own thread at once (sf_exec_parallel).
 * global: first_row is the input's row (HDF5, synthetic), else it counts
 * from the sub-part's start. */
static void layout_read(const layout *L, pass *ps, bool global, bool threads)
{
    const int T = L->T;
    for (int g = 0; g < L->P * T; g++) pass_init(&ps[g]);
    for (int p = 0; p < L->P; p++) {
        if (threads && sf_reader_sub_concurrent(L->r[p])) {
            sub_job j = {L, p, ps, global, SF_OK};
            if (sf_exec_parallel(T, sub_job_run, &j) != SF_OK) fail_msg("threads: %s", sf_error_message());
            continue;
        }
        sf_batch *b = calloc((size_t)T, sizeof *b);
        bool *done = calloc((size_t)T, sizeof *done);
        assert_true(b && done);
        for (int t = 0; t < T; t++) assert_int_equal(sf_reader_batch_init(L->r[p], &b[t]), SF_OK);
        for (int left = T; left > 0;) {
            for (int t = 0; t < T; t++) {
                const int g = p * T + t;
                if (done[t]) continue;
                if (sub_step(L->r[p], t, &b[t], &ps[g], global ? L->cuts[g] : 0)) {
                    done[t] = true;
                    left--;
                }
            }
        }
        for (int t = 0; t < T; t++) sf_batch_fini(&b[t]);
        free(b);
        free(done);
    }
    for (int g = 0; g < L->P * T; g++)
        if (ps[g].misordered) fail_msg("sub-part %d: first_row or the end out of order", g);
}

/* sf_reader_next over a split reader, after a rewind, reads its sub-parts
 * one after the other: the rows of ps[pT .. pT + T) in order (up to the
 * first failing sub-part, with its failure), first_row counting on across
 * them, with the same bad rows and samples as the first pass (first). */
static void layout_sequential(const layout *L, int p, const pass *ps, bool global, const pass *first)
{
    assert_int_equal(sf_reader_rewind(L->r[p]), SF_OK);
    assert_int_equal(sf_reader_bad_rows(L->r[p]), 0);
    pass seq;
    pass_init(&seq);
    read_pass(L->r[p], &seq, global ? L->cuts[p * L->T] : 0, SIZE_MAX);
    size_t at = 0;
    const pass *failed = NULL;
    for (int t = 0; t < L->T && failed == NULL; t++) {
        const pass *sp = &ps[p * L->T + t];
        if (at + sp->rows.n > seq.rows.n || first_diff(&sp->rows, &seq.rows, at, sp->rows.n, true) != sp->rows.n)
            fail_msg("rank %d: sub-part %d's rows are not those that a sequential read gives", p, t);
        at += sp->rows.n;
        if (sp->rc != SF_OK) failed = sp;
    }
    assert_int_equal(seq.rows.n, at);
    assert_int_equal(seq.rc, failed ? failed->rc : SF_OK);
    if (failed) assert_string_equal(seq.msg, failed->msg);
    assert_int_equal(seq.bad, first->bad);
    assert_int_equal(seq.nsamples, first->nsamples);
    for (size_t i = 0; i < seq.nsamples; i++) {
        assert_int_equal(seq.samples[i].line, first->samples[i].line);
        assert_string_equal(seq.samples[i].message, first->samples[i].message);
    }
    pass_fini(&seq);
}

/* A CSV read in the P x T layout (any policy; hf, when given, is the
 * hand-made file with its records, and whole_skip its whole-file pass
 * under skip): every sub-part holds exactly the rows of want (the whole
 * file's) that start in [B(cuts[g]), B(cuts[g + 1])); under skip every
 * rank counts the bad records of its range and samples its first ones,
 * with their lines, in file order; under fail every sub-part with a bad
 * record stops at its first one with the whole file's message for it. */
static void csv_layout_x(const sf_input_config *cfg, const char *text, uint64_t size, const rowset *want,
                         const hfile *hf, const pass *whole_skip, int P, int T, unsigned salt)
{
    layout L;
    layout_open(&L, cfg, P, T, text);
    const int n = P * T;
    pass *ps = calloc((size_t)n, sizeof *ps);
    assert_non_null(ps);
    layout_read(&L, ps, false, salt % 2 == 1);
    const uint64_t ds = sf_reader_data_start(L.r[0]);
    const bool fail = cfg->on_bad_row == SF_BAD_ROW_FAIL;
    size_t row = 0;
    for (int g = 0; g < n; g++) {
        const uint64_t lo = ref_boundary(text, size, ds, L.cuts[g]);
        const uint64_t hi = ref_boundary(text, size, ds, L.cuts[g + 1]);
        size_t k = row;
        while (k < want->n && (uint64_t)want->off[k] < hi) k++;
        if (k > row) assert_true((uint64_t)want->off[row] >= lo);
        char what[256];
        snprintf(what, sizeof what, "%s: %d x %d, sub-part %d, bytes [%" PRIu64 ", %" PRIu64 ") -> [%" PRIu64
                 ", %" PRIu64 ")", cfg->path, P, T, g, L.cuts[g], L.cuts[g + 1], lo, hi);
        const hrec *first_bad = NULL;
        for (size_t i = 0; hf && i < hf->nrec && first_bad == NULL; i++)
            if (hk_bad(hf->rec[i].kind) && hf->rec[i].off >= lo && hf->rec[i].off < hi) first_bad = &hf->rec[i];
        if (fail && first_bad) {
            if (ps[g].rc != SF_ERR_PARSE) fail_msg("%s: did not fail on line %" PRIu64, what, first_bad->line);
            const char *expect = NULL;
            for (size_t i = 0; i < whole_skip->nsamples; i++)
                if (whole_skip->samples[i].line == first_bad->line) expect = whole_skip->samples[i].message;
            assert_non_null(expect);
            assert_string_equal(ps[g].msg, expect);
            size_t before = row;
            while (before < k && (uint64_t)want->off[before] < first_bad->off) before++;
            assert_true(ps[g].rows.n <= before - row);
            assert_rows(&ps[g].rows, want, row, ps[g].rows.n, what);
        } else {
            if (ps[g].rc != SF_OK) fail_msg("%s: %s", what, ps[g].msg);
            assert_rows(&ps[g].rows, want, row, k - row, what);
        }
        row = k;
    }
    assert_int_equal(row, want->n);
    for (int p = 0; p < P; p++) {
        /* The rank's bad rows: those of its byte range, the first ones as
         * samples, in file order. */
        const uint64_t lo = ref_boundary(text, size, ds, L.cuts[p * T]);
        const uint64_t hi = ref_boundary(text, size, ds, L.cuts[p * T + T]);
        uint64_t nbad = 0;
        size_t m = 0;
        const sf_bad_row *smp;
        const size_t ns = sf_reader_bad_row_samples(L.r[p], &smp);
        assert_true(ns <= MAX_SAMPLES);
        pass first;
        pass_init(&first);
        first.bad = sf_reader_bad_rows(L.r[p]);
        first.nsamples = ns;
        memcpy(first.samples, smp, ns * sizeof *smp);
        for (size_t i = 0; hf && !fail && i < hf->nrec; i++) {
            const hrec *e = &hf->rec[i];
            if (!hk_bad(e->kind) || e->off < lo || e->off >= hi) continue;
            nbad++;
            if (m < ns) {
                if (smp[m].line != e->line)
                    fail_msg("%s: rank %d of %d x %d: bad-row sample %zu on line %" PRIu64 ", expected %" PRIu64,
                             cfg->path, p, P, T, m, smp[m].line, e->line);
                char prefix[200];
                snprintf(prefix, sizeof prefix, "%s:%" PRIu64 ":", hf->path, e->line);
                assert_int_equal(strncmp(smp[m].message, prefix, strlen(prefix)), 0);
                m++;
            }
        }
        if (!fail) {
            assert_int_equal(first.bad, nbad);
            assert_int_equal(m, ns);
            /* The reader keeps the first SAMPLE_LIMIT of a pass (run.json's
             * bad_row_samples), here of all its sub-parts together. */
            assert_int_equal(ns, nbad < SAMPLE_LIMIT ? nbad : SAMPLE_LIMIT);
        } else {
            assert_int_equal(first.bad, 0);
            assert_int_equal(ns, 0);
        }
        layout_sequential(&L, p, ps, false, &first);
        pass_fini(&first);
    }
    passes_fini(ps, n);
    layout_close(&L);
}

static void csv_layout(const sf_input_config *cfg, const char *text, uint64_t size, const rowset *want,
                       const hfile *hf, int P, int T, unsigned salt)
{
    csv_layout_x(cfg, text, size, want, hf, NULL, P, T, salt);
}

/* ------------------------------------------------------------------ */
/* Small files, by hand */

typedef struct small_row {
    const char *v[2]; /* NULL: null */
    int64_t off;
    uint32_t bytes;
} small_row;

static void small_case(const char *name, const char *text, int ncols, const small_row *rows, size_t nrows)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    const size_t size = strlen(text);
    write_bytes(path, text, size);
    rowset want;
    rowset_init(&want);
    for (size_t i = 0; i < nrows; i++) {
        for (int c = 0; c < ncols; c++) {
            if (rows[i].v[c] == NULL) enc_null(&want.enc);
            else enc_str(&want.enc, rows[i].v[c], strlen(rows[i].v[c]));
        }
        rowset_close(&want, rows[i].off, rows[i].bytes);
    }
    sf_type_hint hints[2] = {{(char *)"a", SF_STRING}, {(char *)"b", SF_STRING}};
    for (int b = 0; b < 3; b++) {
        sf_input_config cfg;
        sf_input_config_defaults(&cfg);
        cfg.format = SF_INPUT_CSV;
        cfg.path = path;
        cfg.batch_rows = g_batches[b];
        cfg.block_size = b == 0 ? 1 : b == 1 ? 7 : cfg.block_size;
        cfg.max_line_length = MAXLEN;
        cfg.hints = hints;
        cfg.nhints = ncols;
        pass w;
        pass_init(&w);
        read_whole(&cfg, &w);
        if (w.rc != SF_OK) fail_msg("%s: %s", name, w.msg);
        assert_rows(&w.rows, &want, 0, want.n, name);
        pass_fini(&w);
        for (int n = 1; n <= 12; n++) {
            plan pl;
            plan_open(&pl, &cfg, n, NULL, text);
            pass *ps = calloc((size_t)n, sizeof *ps);
            assert_non_null(ps);
            read_parts(&pl, ps, false, (unsigned)(n + b));
            check_rfc_parts(path, text, size, &pl, ps, &want);
            passes_fini(ps, n);
            plan_close(&pl);
        }
        for (int P = 1; P <= 3; P++)
            for (int T = 1; T <= 3; T++) csv_layout(&cfg, text, size, &want, NULL, P, T, (unsigned)(P + T + b));
    }
    rowset_fini(&want);
    unlink(path);
}

static void test_csv_small(void **state)
{
    (void)state;
    const small_row one[] = {{{"1", "x"}, 4, 4}};
    small_case("one.csv", "a,b\n1,x\n", 2, one, 1);
    const small_row one_noeol[] = {{{"1", "x"}, 4, 3}};
    small_case("one_noeol.csv", "a,b\n1,x", 2, one_noeol, 1);
    const small_row one_crlf[] = {{{"1", "x\r\ny"}, 5, 10}};
    small_case("one_crlf.csv", "a,b\r\n1,\"x\r\ny\"\r\n", 2, one_crlf, 1);
    const small_row one_col[] = {{{"v", NULL}, 2, 1}};
    small_case("one_col.csv", "a\nv", 1, one_col, 1);
    small_case("header.csv", "a,b\n", 2, NULL, 0);
    small_case("header_noeol.csv", "a,b", 2, NULL, 0);
    small_case("header_crlf.csv", "a,b\r\n", 2, NULL, 0);
    /* Blank lines: not records with two columns... */
    small_case("blanks.csv", "a,b\n\n\r\n\n", 2, NULL, 0);
    const small_row between[] = {{{"1", ""}, 5, 5}, {{NULL, "2"}, 12, 3}};
    small_case("between.csv", "a,b\n\n1,\"\"\n\n\n,2\n\n", 2, between, 2);
    /* ...null rows with one. */
    const small_row nulls[] = {{{NULL, NULL}, 2, 1}, {{NULL, NULL}, 3, 2}, {{"\"", NULL}, 5, 5}, {{NULL, NULL}, 10, 1}};
    small_case("nulls.csv", "a\n\n\r\n\"\"\"\"\n\n", 1, nulls, 4);
}

/* ------------------------------------------------------------------ */
/* Random CSV files made by the project's writer */

static void random_string(uint64_t *rng, char *out, size_t *len)
{
    static const char alpha[] = {'a', 'b', 'c', ',', '"', '\n', '\r', ' ', 'x', '\xc3', '\xa9', '\xa2', '\x8a', '"'};
    size_t n = rng_below(rng, 13);
    for (size_t i = 0; i < n; i++) out[i] = alpha[rng_below(rng, sizeof alpha)];
    *len = n;
}

static double random_double(uint64_t *rng)
{
    switch (rng_below(rng, 8)) {
    case 0: return (double)((int64_t)rng_below(rng, 2001) - 1000);
    case 1: return -0.0;
    case 2: return 1e300 * (double)(1 + rng_below(rng, 9));
    case 3: return 5e-324 * (double)(1 + rng_below(rng, 9));
    default: {
        uint64_t bits = rng_next(rng);
        double d = (double)(bits >> 11) / 9007199254740992.0 * 2e6 - 1e6;
        return d;
    }
    }
}

/* Writes a random table with the CSV writer into path; its rows, rendered,
 * go to want (no offsets: the writer decides the bytes). */
static size_t writer_file(const char *path, uint64_t seed, bool one_col, rowset *want)
{
    uint64_t rng = seed;
    sf_schema s;
    sf_schema_init(&s);
    if (one_col) {
        assert_int_equal(sf_schema_add(&s, "s", SF_STRING), SF_OK);
    } else {
        assert_int_equal(sf_schema_add(&s, "id", SF_INT64), SF_OK);
        assert_int_equal(sf_schema_add(&s, "x", SF_FLOAT64), SF_OK);
        assert_int_equal(sf_schema_add(&s, "s", SF_STRING), SF_OK);
        assert_int_equal(sf_schema_add(&s, "t", SF_TIMESTAMP), SF_OK);
        assert_int_equal(sf_schema_add(&s, "k", SF_STRING), SF_OK);
    }
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_CSV, NULL, &s, false, &w), SF_OK);
    const size_t nrows = rng_below(&rng, 4) == 0 ? rng_below(&rng, 4) : rng_below(&rng, 250);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 64), SF_OK);
    char str[32];
    size_t done = 0;
    while (done < nrows) {
        sf_batch_clear(&b);
        size_t n = 1 + rng_below(&rng, 50);
        if (n > nrows - done) n = nrows - done;
        b.nrows = n;
        for (size_t r = 0; r < n; r++) {
            for (int c = 0; c < s.ncols; c++) {
                const sf_type ty = s.fields[c].type;
                if (rng_below(&rng, 9) == 0) {
                    assert_int_equal(sf_batch_set_null(&b, c, r), SF_OK);
                    enc_null(&want->enc);
                    continue;
                }
                if (ty == SF_INT64) {
                    uint64_t u = rng_next(&rng) >> rng_below(&rng, 64);
                    int64_t v = rng_below(&rng, 2) ? (int64_t)u : -(int64_t)(u >> 1);
                    b.cols[c].i64[r] = v;
                    enc_i64(&want->enc, v);
                } else if (ty == SF_FLOAT64) {
                    double v = random_double(&rng);
                    b.cols[c].f64[r] = v;
                    enc_f64(&want->enc, v);
                } else if (ty == SF_TIMESTAMP) {
                    int64_t v = (int64_t)(rng_next(&rng) % UINT64_C(4000000000000000));
                    b.cols[c].i64[r] = v;
                    enc_i64(&want->enc, v);
                } else {
                    size_t len;
                    random_string(&rng, str, &len);
                    assert_int_equal(sf_dict_intern(&b.cols[c].dict, str, len, &b.cols[c].code[r]), SF_OK);
                    enc_str(&want->enc, str, len);
                }
            }
            rowset_close(want, -1, 0);
        }
        if (sf_table_writer_write(w, &b) != SF_OK) fail_msg("%s", sf_error_message());
        done += n;
    }
    assert_int_equal(sf_table_writer_close(&w), SF_OK);
    sf_batch_fini(&b);
    sf_schema_fini(&s);
    return nrows;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 0, SEEK_END), 0);
    long n = ftell(fp);
    assert_true(n >= 0);
    assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
    char *p = malloc((size_t)n + 1);
    assert_non_null(p);
    assert_int_equal(fread(p, 1, (size_t)n, fp), (size_t)n);
    assert_int_equal(fclose(fp), 0);
    p[n] = '\0';
    *len = (size_t)n;
    return p;
}

static void test_csv_writer_random(void **state)
{
    (void)state;
    static const size_t blocks[] = {7, 13, 64, 4096};
    static const size_t batches[] = {1, 2, 5, 1000};
    sf_type_hint hints5[5] = {{(char *)"id", SF_INT64},
                              {(char *)"x", SF_FLOAT64},
                              {(char *)"s", SF_STRING},
                              {(char *)"t", SF_TIMESTAMP},
                              {(char *)"k", SF_STRING}};
    sf_type_hint hint1[1] = {{(char *)"s", SF_STRING}};
    size_t total_rows = 0;
    for (uint64_t seed = 1; seed <= 60; seed++) {
        const bool one_col = seed % 3 == 0;
        char path[128];
        snprintf(path, sizeof path, "%s/writer_%" PRIu64 ".csv", g_dir, seed);
        rowset gen;
        rowset_init(&gen);
        size_t nrows = writer_file(path, seed * 7919, one_col, &gen);
        total_rows += nrows;
        size_t size;
        char *text = slurp(path, &size);

        sf_input_config cfg;
        sf_input_config_defaults(&cfg);
        cfg.format = SF_INPUT_CSV;
        cfg.path = path;
        cfg.max_line_length = MAXLEN;
        cfg.hints = one_col ? hint1 : hints5;
        cfg.nhints = one_col ? 1 : 5;
        cfg.block_size = blocks[seed % 4];
        cfg.batch_rows = batches[(seed / 4) % 4];
        pass w;
        pass_init(&w);
        read_whole(&cfg, &w);
        if (w.rc != SF_OK) fail_msg("%s: %s", path, w.msg);
        /* The reference is what was written, value by value. */
        assert_rows_x(&w.rows, &gen, 0, gen.n, false, path);
        assert_int_equal(w.bad, 0);
        int ns[10];
        int k = 0;
        for (int n = 1; n <= 8; n++) ns[k++] = n;
        ns[k++] = (int)nrows + 3;
        for (int i = 0; i < k; i++) {
            cfg.block_size = blocks[(seed + (uint64_t)i) % 4];
            cfg.batch_rows = batches[(seed + 3 * (uint64_t)i) % 4];
            plan pl;
            plan_open(&pl, &cfg, ns[i], NULL, text);
            pass *ps = calloc((size_t)ns[i], sizeof *ps);
            assert_non_null(ps);
            read_parts(&pl, ps, false, (unsigned)(seed + (uint64_t)i));
            assert_int_equal(check_rfc_parts(path, text, size, &pl, ps, &w.rows), 0);
            passes_fini(ps, ns[i]);
            plan_close(&pl);
        }
        pass_fini(&w);
        rowset_fini(&gen);
        free(text);
        unlink(path);
    }
    assert_true(total_rows > 3000);
}

/* ------------------------------------------------------------------ */
/* Errors: the same file:line as the whole file */

/* on_bad_row: fail. A part that holds bad records fails on its first one
 * with exactly the message the whole-file reader gives for that record
 * (taken from its skipped-row samples, which hold every bad row here), and
 * delivered only rows before it; a part without any reads all its rows. */
static void error_parts(const hfile *f, const pass *whole_skip, size_t batch, size_t block, int n, unsigned salt,
                        size_t *nfailed, size_t *nclean)
{
    sf_type_hint hints[4];
    sf_input_config cfg = hcfg(f, hints, batch, block, SF_BAD_ROW_FAIL);
    plan pl;
    plan_open(&pl, &cfg, n, NULL, (const char *)f->text.data);
    pass *ps = calloc((size_t)n, sizeof *ps);
    assert_non_null(ps);
    read_parts(&pl, ps, false, salt);
    const uint64_t size = f->text.len;
    size_t row = 0;
    for (int p = 0; p < n; p++) {
        uint64_t lo = ref_boundary((const char *)f->text.data, size, f->ds, pl.begin[p]);
        uint64_t hi = ref_boundary((const char *)f->text.data, size, f->ds, pl.end[p]);
        const hrec *first_bad = NULL;
        for (size_t i = 0; i < f->nrec && first_bad == NULL; i++)
            if (hk_bad(f->rec[i].kind) && f->rec[i].off >= lo && f->rec[i].off < hi) first_bad = &f->rec[i];
        size_t k = row;
        while (k < f->exp.n && (uint64_t)f->exp.off[k] < hi) k++;
        char what[512];
        snprintf(what, sizeof what, "%s: part %d of %d", f->path, p, n);
        if (first_bad == NULL) {
            if (ps[p].rc != SF_OK) fail_msg("%s: %s", what, ps[p].msg);
            assert_rows(&ps[p].rows, &f->exp, row, k - row, what);
            (*nclean)++;
        } else {
            (*nfailed)++;
            assert_int_equal(ps[p].rc, SF_ERR_PARSE);
            const char *expect = NULL;
            for (size_t s = 0; s < whole_skip->nsamples; s++)
                if (whole_skip->samples[s].line == first_bad->line) expect = whole_skip->samples[s].message;
            assert_non_null(expect);
            assert_string_equal(ps[p].msg, expect);
            char prefix[200];
            snprintf(prefix, sizeof prefix, "%s:%" PRIu64 ":", f->path, first_bad->line);
            assert_int_equal(strncmp(ps[p].msg, prefix, strlen(prefix)), 0);
            /* Only rows before the bad record. */
            size_t before = row;
            while (before < k && (uint64_t)f->exp.off[before] < first_bad->off) before++;
            assert_true(ps[p].rows.n <= before - row);
            assert_rows(&ps[p].rows, &f->exp, row, ps[p].rows.n, what);
        }
        row = k;
    }
    passes_fini(ps, n);
    plan_close(&pl);
}

static void test_csv_error_lines(void **state)
{
    (void)state;
    const hspec specs[] = {
        {4, 90, false, true, 5, 12, 9, false},
        {4, 90, true, false, 5, 12, 9, false},
        {1, 70, true, true, 0, 12, 9, false},
    };
    size_t nfailed = 0, nclean = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        for (uint64_t seed = 1; seed <= 4; seed++) {
            hfile f;
            char name[64];
            snprintf(name, sizeof name, "errors_%zu_%" PRIu64 ".csv", s, seed);
            hfile_make(&f, &specs[s], 500 + seed * 10 + s, name);
            assert_true(f.nbad >= 3 && f.nbad <= 10); /* all kept as samples */
            sf_type_hint hints[4];
            sf_input_config cfg = hcfg(&f, hints, 4, 0, SF_BAD_ROW_SKIP);
            pass ws;
            pass_init(&ws);
            read_whole(&cfg, &ws);
            check_whole(&f, &ws);
            assert_int_equal(ws.nsamples, f.nbad);
            /* The whole file under fail stops at its first bad record with
             * the message skip recorded for it. */
            cfg.on_bad_row = SF_BAD_ROW_FAIL;
            pass wf;
            pass_init(&wf);
            read_whole(&cfg, &wf);
            assert_int_equal(wf.rc, SF_ERR_PARSE);
            assert_string_equal(wf.msg, ws.samples[0].message);
            pass_fini(&wf);
            for (int n = 1; n <= 8; n++)
                error_parts(&f, &ws, g_batches[(unsigned)n % 4], g_blocks[(unsigned)n % 3], n, (unsigned)(n + seed),
                            &nfailed, &nclean);
            error_parts(&f, &ws, 2, 7, (int)f.nrec + 3, 1, &nfailed, &nclean);
            pass_fini(&ws);
            hfile_fini(&f);
        }
    }
    /* Parts that held bad records and parts that did not. */
    assert_true(nfailed > 100 && nclean > 100);
}

/* ------------------------------------------------------------------ */
/* Quotes inside unquoted fields: the ambiguity */

/* Either every part reads and together they give the whole file's rows
 * (and bad-row count), or the first part that does not give its share
 * fails, saying that a quoted field runs past its end, which it names.
 * Returns that part, or -1. */
static int check_ambiguous(const char *path, const char *text, uint64_t size, const plan *pl, const pass *ps,
                           const pass *whole)
{
    const uint64_t ds = sf_reader_data_start(pl->r[0]);
    size_t row = 0;
    uint64_t bad = 0;
    for (int p = 0; p < pl->n; p++) {
        const uint64_t hi = ref_boundary(text, size, ds, pl->end[p]);
        size_t k = row;
        while (k < whole->rows.n && (uint64_t)whole->rows.off[k] < hi) k++;
        if (ps[p].rc == SF_OK && rows_are(&ps[p].rows, &whole->rows, row, k - row)) {
            row = k;
            bad += ps[p].bad;
            continue;
        }
        if (ps[p].rc == SF_OK)
            fail_msg("%s: part %d of %d [%" PRIu64 ", %" PRIu64 ") read without error but its rows are not the "
                     "whole file's",
                     path, p, pl->n, pl->begin[p], pl->end[p]);
        assert_true(hi < size);
        char needle[128];
        snprintf(needle, sizeof needle, "a quoted field runs past byte %" PRIu64 ",", hi);
        if (strstr(ps[p].msg, needle) == NULL)
            fail_msg("%s: part %d of %d failed with '%s', not '%s'", path, p, pl->n, ps[p].msg, needle);
        /* The line named is that of the record that holds byte hi (when the
         * whole file delivers that record as a row). */
        if (k > 0 && (uint64_t)(whole->rows.off[k - 1] + whole->rows.bytes[k - 1]) > hi) {
            char prefix[200];
            snprintf(prefix, sizeof prefix, "%s:%" PRIu64 ": ", path, line_of(text, (uint64_t)whole->rows.off[k - 1]));
            if (strncmp(ps[p].msg, prefix, strlen(prefix)) != 0)
                fail_msg("%s: '%s' does not start with '%s'", path, ps[p].msg, prefix);
        }
        return p;
    }
    assert_int_equal(row, whole->rows.n);
    assert_int_equal(bad, whole->bad);
    return -1;
}

static int ambiguous_parts(const char *path, const char *text, uint64_t size, const sf_input_config *cfg, int n,
                           const uint64_t *cuts, const pass *whole, unsigned salt, char *msg, size_t msglen)
{
    plan pl;
    plan_open(&pl, cfg, n, cuts, text);
    pass *ps = calloc((size_t)n, sizeof *ps);
    assert_non_null(ps);
    read_parts(&pl, ps, false, salt);
    int failed = check_ambiguous(path, text, size, &pl, ps, whole);
    if (msg) snprintf(msg, msglen, "%s", failed >= 0 ? ps[failed].msg : "");
    passes_fini(ps, n);
    plan_close(&pl);
    return failed;
}

/* A file written here; the whole file's rows are given as string pairs. */
static void literal_file(const char *path, const char *text, const char *const *vals, size_t nrows, rowset *want)
{
    write_bytes(path, text, strlen(text));
    rowset_init(want);
    for (size_t i = 0; i < nrows; i++) {
        enc_str(&want->enc, vals[2 * i], strlen(vals[2 * i]));
        enc_str(&want->enc, vals[2 * i + 1], strlen(vals[2 * i + 1]));
        rowset_close(want, -1, 0);
    }
}

static sf_input_config str2_cfg(const char *path, sf_type_hint *hints, sf_bad_row_policy pol, size_t block,
                                size_t maxlen)
{
    hints[0] = (sf_type_hint){(char *)"s", SF_STRING};
    hints[1] = (sf_type_hint){(char *)"n", SF_STRING};
    sf_input_config cfg;
    sf_input_config_defaults(&cfg);
    cfg.format = SF_INPUT_CSV;
    cfg.path = (char *)path;
    cfg.hints = hints;
    cfg.nhints = 2;
    cfg.on_bad_row = pol;
    cfg.batch_rows = 2;
    cfg.max_line_length = maxlen;
    if (block) cfg.block_size = block;
    return cfg;
}

/* Every split point x >= ds (the data start) of a literal file as two
 * parts: the first part must fail, naming byte `byte` and line `line`,
 * exactly for x in (fail_lo, fail_hi]; otherwise the parts give the whole
 * file. */
static void literal_splits(const char *path, const char *text, const sf_input_config *cfg, const rowset *want,
                           uint64_t want_bad, uint64_t ds, uint64_t fail_lo, uint64_t fail_hi, uint64_t byte,
                           uint64_t line)
{
    const uint64_t size = strlen(text);
    pass whole;
    pass_init(&whole);
    read_whole(cfg, &whole);
    if (whole.rc != SF_OK) fail_msg("%s: %s", path, whole.msg);
    assert_rows_x(&whole.rows, want, 0, want->n, false, path);
    assert_int_equal(whole.bad, want_bad);
    char expect[256];
    snprintf(expect, sizeof expect, "%s:%" PRIu64 ": a quoted field runs past byte %" PRIu64 ", where this", path,
             line, byte);
    for (uint64_t x = ds; x <= size; x++) {
        uint64_t cuts[3] = {ds, x, size};
        char msg[1024];
        int failed = ambiguous_parts(path, text, size, cfg, 2, cuts, &whole, (unsigned)x, msg, sizeof msg);
        if (x > fail_lo && x <= fail_hi) {
            if (failed != 0) fail_msg("%s: split at %" PRIu64 ": part 0 did not fail", path, x);
            if (strncmp(msg, expect, strlen(expect)) != 0) fail_msg("%s: '%s' is not '%s...'", path, msg, expect);
        } else {
            assert_int_equal(failed, -1);
        }
    }
    /* And as n even parts. */
    for (int n = 1; n <= 8; n++) ambiguous_parts(path, text, size, cfg, n, NULL, &whole, (unsigned)n, NULL, 0);
    pass_fini(&whole);
}

static void test_csv_ambiguous_must_fail(void **state)
{
    (void)state;
    char path[128];
    sf_type_hint hints[2];
    rowset want;

    /* ab"c leaves an odd number of quotes before every later line end
     * until the quoted field "p<LF>q": its inner line feed (byte 17, so
     * position 18) looks like a record boundary. A split anywhere in
     * (4, 18] makes part 0 end there, inside the quoted field. */
    snprintf(path, sizeof path, "%s/stray.csv", g_dir);
    const char *t1 = "s,n\nab\"c,1\nx,2\n\"p\nq\",3\ny,4\n";
    const char *v1[] = {"ab\"c", "1", "x", "2", "p\nq", "3", "y", "4"};
    literal_file(path, t1, v1, 4, &want);
    for (int b = 0; b < 3; b++) {
        sf_input_config cfg = str2_cfg(path, hints, SF_BAD_ROW_FAIL, g_blocks[b], MAXLEN);
        literal_splits(path, t1, &cfg, &want, 0, 4, 4, 18, 18, 4);
        /* Two even parts split at byte 15: must fail. */
        char msg[1024];
        pass whole;
        pass_init(&whole);
        read_whole(&cfg, &whole);
        assert_int_equal(ambiguous_parts(path, t1, strlen(t1), &cfg, 2, NULL, &whole, 0, msg, sizeof msg), 0);
        assert_non_null(strstr(msg, "runs past byte 18,"));
        pass_fini(&whole);
    }
    rowset_fini(&want);
    unlink(path);

    /* A closing quote followed by other bytes ("b"c"d): the rest of the
     * field is unquoted, so its quote counts for the boundary but not for
     * the reader, which skips the record ("x<LF>y" is quoted) under skip.
     * Position 18 looks like a boundary; a part ending there ends inside
     * the quoted field and must say so rather than let the next part read
     * y",2 as a row. */
    snprintf(path, sizeof path, "%s/badquote.csv", g_dir);
    const char *t2 = "s,n\na,1\n\"b\"c\"d,\"x\ny\",2\nz,3\n";
    const char *v2[] = {"a", "1", "z", "3"};
    literal_file(path, t2, v2, 2, &want);
    for (int b = 0; b < 3; b++) {
        sf_input_config cfg = str2_cfg(path, hints, SF_BAD_ROW_SKIP, g_blocks[b], MAXLEN);
        literal_splits(path, t2, &cfg, &want, 1, 4, 8, 18, 18, 3);
    }
    /* Under fail, every split fails on the bad quote, with the whole
     * file's message. */
    {
        sf_input_config cfg = str2_cfg(path, hints, SF_BAD_ROW_FAIL, 7, MAXLEN);
        pass whole;
        pass_init(&whole);
        read_whole(&cfg, &whole);
        assert_int_equal(whole.rc, SF_ERR_PARSE);
        char prefix[200];
        snprintf(prefix, sizeof prefix, "%s:3:1: unexpected 'c' after closing quote", path);
        assert_string_equal(whole.msg, prefix);
        for (uint64_t x = 9; x <= 18; x++) {
            uint64_t cuts[3] = {4, x, strlen(t2)};
            plan pl;
            plan_open(&pl, &cfg, 2, cuts, t2);
            pass *ps = calloc(2, sizeof *ps);
            assert_non_null(ps);
            read_parts(&pl, ps, false, (unsigned)x);
            assert_int_equal(ps[0].rc, SF_ERR_PARSE);
            assert_string_equal(ps[0].msg, whole.msg);
            passes_fini(ps, 2);
            plan_close(&pl);
        }
        pass_fini(&whole);
    }
    rowset_fini(&want);
    unlink(path);

    /* A record longer than max_line_length (16) whose quoted field holds a
     * line end that looks like a boundary (position 33): skipping it must
     * not stop silently at the part's end. */
    snprintf(path, sizeof path, "%s/overlong.csv", g_dir);
    const char *t3 = "s,n\nab\"c,1\n\"pppppppppppppppppppp\nq\",2\ny,3\n";
    const char *v3[] = {"ab\"c", "1", "y", "3"};
    literal_file(path, t3, v3, 2, &want);
    for (int b = 0; b < 3; b++) {
        sf_input_config cfg = str2_cfg(path, hints, SF_BAD_ROW_SKIP, g_blocks[b], 16);
        literal_splits(path, t3, &cfg, &want, 1, 4, 4, 33, 33, 3);
    }
    rowset_fini(&want);
    unlink(path);
}

/* Random files with quotes inside unquoted fields (and, under skip, bad
 * records): whatever the parts, never silently different rows. */
static void test_csv_ambiguous_random(void **state)
{
    (void)state;
    const hspec specs[] = {
        {4, 50, false, true, 5, 0, 0, true},
        {4, 50, true, false, 5, 10, 8, true},
        {1, 50, false, true, 0, 0, 0, true},
        {1, 40, true, true, 0, 10, 5, true},
    };
    size_t failed = 0, fine = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        for (uint64_t seed = 1; seed <= 8; seed++) {
            hfile f;
            char name[64];
            snprintf(name, sizeof name, "stray_%zu_%" PRIu64 ".csv", s, seed);
            hfile_make(&f, &specs[s], 9000 + seed * 10 + s, name);
            sf_type_hint hints[4];
            const sf_bad_row_policy pol = specs[s].bad_pct ? SF_BAD_ROW_SKIP : SF_BAD_ROW_FAIL;
            sf_input_config cfg = hcfg(&f, hints, 3, 7, pol);
            pass whole;
            pass_init(&whole);
            read_whole(&cfg, &whole);
            if (whole.rc != SF_OK) fail_msg("%s: %s", f.path, whole.msg);
            assert_rows(&whole.rows, &f.exp, 0, f.exp.n, f.path);
            assert_int_equal(whole.bad, f.nbad);
            const uint64_t size = f.text.len;
            for (int n = 1; n <= 8; n++) {
                cfg.block_size = g_blocks[(unsigned)n % 3] ? g_blocks[(unsigned)n % 3] : (size_t)4 << 20;
                cfg.batch_rows = g_batches[(unsigned)n % 4];
                int p = ambiguous_parts(f.path, (const char *)f.text.data, size, &cfg, n, NULL, &whole, (unsigned)n, NULL, 0);
                if (p >= 0) failed++;
                else if (n > 1) fine++;
            }
            if (seed <= 2) {
                cfg.block_size = 64;
                for (uint64_t x = f.ds; x <= size; x++) {
                    uint64_t cuts[3] = {f.ds, x, size};
                    int p = ambiguous_parts(f.path, (const char *)f.text.data, size, &cfg, 2, cuts, &whole, (unsigned)x, NULL, 0);
                    if (p >= 0) failed++;
                    else fine++;
                }
            }
            pass_fini(&whole);
            hfile_fini(&f);
        }
    }
    /* Both outcomes happened. */
    assert_true(failed > 20);
    assert_true(fine > 20);
}

/* ------------------------------------------------------------------ */
/* Bounds, counts and arguments */

static void test_csv_counts(void **state)
{
    (void)state;
    /* Quotes and line feeds among the bytes that differ from them in one
     * bit (the top one: 0xa2, 0x8a; the lowest: '#', 0x0b) or by one, which
     * is where counting eight bytes at a time can go wrong, at every
     * alignment. */
    sf_buf t;
    sf_buf_init(&t);
    bput(&t, "a,b\n");
    uint64_t rng = 99;
    static const char bytes[] = {'"', '\n', '\xa2', '\x8a', '#', '\x0b', '!', '\x09', 'x',
                                 '"', '\n', '\xff', '\x00', ',', '\x01', '\x80'};
    for (int i = 0; i < 3000; i++) {
        char ch = bytes[rng_below(&rng, sizeof bytes)];
        assert_int_equal(sf_buf_append(&t, &ch, 1), SF_OK);
    }
    char path[128];
    snprintf(path, sizeof path, "%s/counts.csv", g_dir);
    write_bytes(path, (const char *)t.data, t.len);
    sf_input_config cfg;
    sf_input_config_defaults(&cfg);
    cfg.format = SF_INPUT_CSV;
    cfg.path = path;
    cfg.max_line_length = MAXLEN;
    sf_type_hint hints[2] = {{(char *)"a", SF_STRING}, {(char *)"b", SF_STRING}};
    cfg.hints = hints;
    cfg.nhints = 2;
    cfg.on_bad_row = SF_BAD_ROW_SKIP;
    sf_reader *r = open_reader(&cfg);
    assert_int_equal(sf_reader_data_start(r), 4);
    assert_int_equal(sf_reader_data_bytes(r), t.len - 4);
    for (int k = 0; k < 2000; k++) {
        uint64_t a = rng_next(&rng) % (t.len + 1), e = rng_next(&rng) % (t.len + 1);
        if (a > e) {
            uint64_t x = a;
            a = e;
            e = x;
        }
        uint64_t got[2], want[2];
        assert_int_equal(sf_reader_part_count(r, a, e, got), SF_OK);
        count_text((const char *)t.data, a, e, want);
        assert_int_equal(got[0], want[0]);
        assert_int_equal(got[1], want[1]);
    }
    /* Reversed ranges are refused. */
    uint64_t c[2], z[2] = {0, 0};
    assert_int_equal(sf_reader_part_count(r, 10, 9, c), SF_ERR_ARG);
    assert_int_equal(sf_reader_set_part(r, 10, 9, z, z), SF_ERR_ARG);
    sf_reader_destroy(&r);

    /* Counting does not move the reader: a pass with counts taken between
     * its batches is the pass without them. */
    pass w, m;
    pass_init(&w);
    pass_init(&m);
    cfg.batch_rows = 3;
    cfg.block_size = 7;
    read_whole(&cfg, &w);
    r = open_reader(&cfg);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (;;) {
        uint64_t cnt[2];
        assert_int_equal(sf_reader_part_count(r, 4, t.len, cnt), SF_OK);
        bool eof;
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        for (size_t i = 0; i < b.nrows; i++) put_row(&m.rows, &b, i);
    }
    sf_batch_fini(&b);
    assert_int_equal(sf_reader_bad_rows(r), w.bad);
    assert_rows(&m.rows, &w.rows, 0, w.rows.n, "pass with counts");
    sf_reader_destroy(&r);
    pass_fini(&w);
    pass_fini(&m);
    sf_buf_fini(&t);
    unlink(path);
}

/* ------------------------------------------------------------------ */
/* HDF5 and the synthetic generator: parts are row ranges */

static bool h5_null(uint64_t i) { return i % 11 == 3; }
static int64_t h5_id(uint64_t i) { return (int64_t)(i * i % 100003) - 50000; }
static double h5_x(uint64_t i) { return (double)i * 0.25 - 1000.5; }
static size_t h5_s(uint64_t i, char *out) { return (size_t)sprintf(out, "s%" PRIu64 "-%" PRIu64, i % 97, i); }
static int64_t h5_t(uint64_t i) { return INT64_C(1767225600000000) + (int64_t)i * 1234567; }

static void h5_write(const char *path, uint64_t rows)
{
    sf_schema s;
    sf_schema_init(&s);
    assert_int_equal(sf_schema_add(&s, "id", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(&s, "x", SF_FLOAT64), SF_OK);
    assert_int_equal(sf_schema_add(&s, "s", SF_STRING), SF_OK);
    assert_int_equal(sf_schema_add(&s, "t", SF_TIMESTAMP), SF_OK);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_HDF5, "/t", &s, true, &w), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 500), SF_OK);
    char buf[64];
    for (uint64_t first = 0; first < rows; first += 500) {
        sf_batch_clear(&b);
        size_t n = rows - first < 500 ? (size_t)(rows - first) : 500;
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

/* Reads cfg whole and as n parts: the parts' rows, in order, are the whole
 * input's, and first_row is the global row index (checked by read_pass). */
static void row_parts(const sf_input_config *cfg, const pass *whole, int n, unsigned salt)
{
    plan pl;
    plan_open(&pl, cfg, n, NULL, NULL);
    pass *ps = calloc((size_t)n, sizeof *ps);
    assert_non_null(ps);
    read_parts(&pl, ps, true, salt);
    size_t row = 0;
    for (int p = 0; p < n; p++) {
        char what[128];
        snprintf(what, sizeof what, "part %d of %d, rows [%" PRIu64 ", %" PRIu64 ")", p, n, pl.begin[p], pl.end[p]);
        if (ps[p].rc != SF_OK) fail_msg("%s: %s", what, ps[p].msg);
        assert_int_equal(pl.begin[p], row);
        assert_rows(&ps[p].rows, &whole->rows, row, (size_t)(pl.end[p] - pl.begin[p]), what);
        row += ps[p].rows.n;
        assert_int_equal(ps[p].bad, 0);
    }
    assert_int_equal(row, whole->rows.n);
    passes_fini(ps, n);
    plan_close(&pl);
}

/* cfg in the P x T layout: the sub-parts' rows, in order, are the whole
 * input's, sub-part g holding rows [cuts[g], cuts[g + 1]). */
static void row_layout(const sf_input_config *cfg, const pass *whole, int P, int T, unsigned salt)
{
    layout L;
    layout_open(&L, cfg, P, T, NULL);
    const int n = P * T;
    pass *ps = calloc((size_t)n, sizeof *ps);
    assert_non_null(ps);
    layout_read(&L, ps, true, salt % 2 == 1);
    size_t row = 0;
    for (int g = 0; g < n; g++) {
        char what[128];
        snprintf(what, sizeof what, "%d x %d, sub-part %d, rows [%" PRIu64 ", %" PRIu64 ")", P, T, g, L.cuts[g],
                 L.cuts[g + 1]);
        if (ps[g].rc != SF_OK) fail_msg("%s: %s", what, ps[g].msg);
        assert_int_equal(L.cuts[g], row);
        assert_rows(&ps[g].rows, &whole->rows, row, (size_t)(L.cuts[g + 1] - L.cuts[g]), what);
        row += ps[g].rows.n;
    }
    assert_int_equal(row, whole->rows.n);
    for (int p = 0; p < P; p++) {
        assert_int_equal(sf_reader_bad_rows(L.r[p]), 0);
        pass none;
        pass_init(&none);
        layout_sequential(&L, p, ps, true, &none);
        pass_fini(&none);
    }
    passes_fini(ps, n);
    layout_close(&L);
}

/* set_part: past the end and reversed are SF_ERR_ARG; a second part
 * replaces the first, even one read to its end. */
static void row_part_args(const sf_input_config *cfg, const pass *whole)
{
    const uint64_t rows = whole->rows.n;
    sf_reader *r = open_reader(cfg);
    uint64_t z[2] = {0, 0}, c[2] = {9, 9};
    assert_int_equal(sf_reader_part_count(r, 0, rows, c), SF_OK);
    assert_int_equal(c[0], 0);
    assert_int_equal(c[1], 0);
    assert_int_equal(sf_reader_set_part(r, 0, rows + 1, z, z), SF_ERR_ARG);
    assert_int_equal(sf_reader_set_part(r, rows + 1, rows + 2, z, z), SF_ERR_ARG);
    assert_int_equal(sf_reader_set_part(r, 3, 2, z, z), SF_ERR_ARG);
    assert_int_equal(sf_reader_set_part(r, 0, rows, z, z), SF_OK); /* the end itself is fine */
    pass ps;
    pass_init(&ps);
    assert_int_equal(sf_reader_set_part(r, rows / 3, rows / 2, z, z), SF_OK);
    read_pass(r, &ps, rows / 3, SIZE_MAX);
    assert_int_equal(ps.rc, SF_OK);
    assert_rows(&ps.rows, &whole->rows, rows / 3, rows / 2 - rows / 3, "first part");
    assert_int_equal(sf_reader_set_part(r, rows / 5, rows, z, z), SF_OK);
    read_pass(r, &ps, rows / 5, 1);
    assert_int_equal(sf_reader_set_part(r, rows / 2, rows, z, z), SF_OK);
    read_pass(r, &ps, rows / 2, SIZE_MAX);
    assert_rows(&ps.rows, &whole->rows, rows / 2, rows - rows / 2, "part given again");
    assert_int_equal(sf_reader_set_part(r, rows, rows, z, z), SF_OK);
    read_pass(r, &ps, rows, SIZE_MAX);
    assert_int_equal(ps.rows.n, 0);
    pass_fini(&ps);
    sf_reader_destroy(&r);
}

static void test_hdf5_parts(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {1013, 5};
    for (int k = 0; k < 2; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s/table_%d.h5", g_dir, k);
        h5_write(path, sizes[k]);
        sf_input_config cfg;
        sf_input_config_defaults(&cfg);
        cfg.format = SF_INPUT_HDF5;
        cfg.path = path;
        cfg.group = (char *)"/t";
        cfg.batch_rows = 37;
        pass whole;
        pass_init(&whole);
        read_whole(&cfg, &whole);
        if (whole.rc != SF_OK) fail_msg("%s", whole.msg);
        /* The reference against the formulas the table was written from. */
        rowset exp;
        rowset_init(&exp);
        char buf[64];
        for (uint64_t i = 0; i < sizes[k]; i++) {
            if (h5_null(i)) enc_null(&exp.enc);
            else enc_i64(&exp.enc, h5_id(i));
            enc_f64(&exp.enc, h5_x(i));
            size_t len = h5_s(i, buf);
            enc_str(&exp.enc, buf, len);
            enc_i64(&exp.enc, h5_t(i));
            rowset_close(&exp, -1, 0);
        }
        assert_rows(&whole.rows, &exp, 0, exp.n, "whole table");
        rowset_fini(&exp);
        sf_reader *r = open_reader(&cfg);
        assert_int_equal(sf_reader_total_rows(r), sizes[k]);
        sf_reader_destroy(&r);
        for (int n = 1; n <= 8; n++) {
            cfg.batch_rows = g_batches[(unsigned)n % 4];
            row_parts(&cfg, &whole, n, (unsigned)n);
        }
        row_parts(&cfg, &whole, (int)sizes[k] % 50 + 9, 3); /* more parts than rows for the small table */
        for (int P = 1; P <= 3; P++)
            for (int T = 1; T <= 3; T++) row_layout(&cfg, &whole, P, T, (unsigned)(P * 3 + T));
        row_part_args(&cfg, &whole);
        pass_fini(&whole);
        unlink(path);
    }
}

static void test_gen_parts(void **state)
{
    (void)state;
    static const uint64_t sizes[] = {20011, 6};
    for (int k = 0; k < 2; k++) {
        sf_input_config cfg;
        sf_input_config_defaults(&cfg);
        cfg.format = SF_INPUT_SYNTHETIC;
        cfg.generator = (char *)"requests"; /* borrowed */
        cfg.rows = sizes[k];
        cfg.seed = 2029;
        cfg.users = 5000;
        cfg.batch_rows = 777;
        pass whole;
        pass_init(&whole);
        read_whole(&cfg, &whole);
        if (whole.rc != SF_OK) fail_msg("%s", whole.msg);
        assert_int_equal(whole.rows.n, sizes[k]);
        for (int n = 1; n <= 8; n++) {
            cfg.batch_rows = n % 2 ? 777 : 1000;
            row_parts(&cfg, &whole, n, (unsigned)n);
        }
        row_parts(&cfg, &whole, 11, 2); /* more parts than rows for the small input */
        for (int P = 1; P <= 3; P++)
            for (int T = 1; T <= 3; T++) row_layout(&cfg, &whole, P, T, (unsigned)(P * 3 + T));
        {
            /* The generator's sub-parts run on threads at once. */
            sf_reader *r = open_reader(&cfg);
            assert_true(sf_reader_sub_concurrent(r));
            sf_reader_destroy(&r);
        }
        row_part_args(&cfg, &whole);
        pass_fini(&whole);
    }
}

/* CSV: a part given twice replaces the first, even one read to its end. */
static void test_csv_part_twice(void **state)
{
    (void)state;
    const hspec sp = {4, 60, true, true, 5, 10, 6, false};
    hfile f;
    hfile_make(&f, &sp, 4242, "twice.csv");
    sf_type_hint hints[4];
    sf_input_config cfg = hcfg(&f, hints, 4, 7, SF_BAD_ROW_SKIP);
    plan pl;
    plan_open(&pl, &cfg, 3, NULL, (const char *)f.text.data);
    pass *ps = calloc(3, sizeof *ps);
    assert_non_null(ps);
    read_parts(&pl, ps, false, 0);
    check_rfc_parts(f.path, (const char *)f.text.data, f.text.len, &pl, ps, &f.exp);
    /* Reader 0 now reads part 2, then part 1 after a batch of it. */
    pass again;
    pass_init(&again);
    read_pass(pl.r[0], &again, 0, SIZE_MAX);
    assert_int_equal(again.rows.n, 0); /* still at its part's end */
    assert_int_equal(sf_reader_set_part(pl.r[0], pl.begin[2], pl.end[2], pl.at[2], pl.at[3]), SF_OK);
    assert_int_equal(sf_reader_bad_rows(pl.r[0]), 0);
    read_pass(pl.r[0], &again, 0, SIZE_MAX);
    assert_int_equal(again.rc, SF_OK);
    assert_rows(&again.rows, &ps[2].rows, 0, ps[2].rows.n, "part 2 given to reader 0");
    assert_int_equal(again.bad, ps[2].bad);
    assert_int_equal(sf_reader_set_part(pl.r[0], pl.begin[1], pl.end[1], pl.at[1], pl.at[2]), SF_OK);
    read_pass(pl.r[0], &again, 0, 1);
    assert_int_equal(sf_reader_set_part(pl.r[0], pl.begin[1], pl.end[1], pl.at[1], pl.at[2]), SF_OK);
    read_pass(pl.r[0], &again, 0, SIZE_MAX);
    assert_rows(&again.rows, &ps[1].rows, 0, ps[1].rows.n, "part 1 given to reader 0 twice");
    assert_int_equal(again.bad, ps[1].bad);
    pass_fini(&again);
    passes_fini(ps, 3);
    plan_close(&pl);
    hfile_fini(&f);
}

/* Hand-made CSV files (quoted line feeds, CRLF line ends, blank lines,
 * bad records) in every layout of P ranks x T threads, P and T in 1..3:
 * under skip (rows, bad-row counts and samples with their lines) and,
 * where every bad record has a sample to compare with, under fail (each
 * sub-part stops at its first bad record, with the whole file's message). */
static void test_csv_layouts(void **state)
{
    (void)state;
    const hspec specs[] = {
        {4, 60, false, true, 10, 0, 0, false},  {4, 60, true, false, 10, 0, 0, false},
        {4, 80, false, false, 5, 10, 9, false}, {4, 80, true, true, 5, 10, 9, false},
        {1, 60, true, false, 0, 8, 9, false},   {1, 50, false, true, 0, 0, 0, false},
        {4, 25, true, true, 30, 0, 0, false},   {4, 120, true, true, 5, 15, 30, false},
    };
    size_t with_bad = 0, fail_runs = 0;
    for (size_t s = 0; s < sizeof specs / sizeof specs[0]; s++) {
        for (uint64_t seed = 1; seed <= 3; seed++) {
            hfile f;
            char name[64];
            snprintf(name, sizeof name, "layout_%zu_%" PRIu64 ".csv", s, seed);
            hfile_make(&f, &specs[s], 7000 + seed * 10 + s, name);
            const char *text = (const char *)f.text.data;
            sf_type_hint hints[4];
            sf_input_config cfg = hcfg(&f, hints, 4, 0, SF_BAD_ROW_SKIP);
            pass ws;
            pass_init(&ws);
            read_whole(&cfg, &ws);
            check_whole(&f, &ws);
            with_bad += f.nbad > SAMPLE_LIMIT;
            for (int P = 1; P <= 3; P++) {
                for (int T = 1; T <= 3; T++) {
                    const unsigned salt = (unsigned)(seed + s + (uint64_t)(P * 3 + T));
                    cfg = hcfg(&f, hints, g_batches[salt % 4], g_blocks[salt % 3], SF_BAD_ROW_SKIP);
                    csv_layout_x(&cfg, text, f.text.len, &f.exp, &f, &ws, P, T, salt);
                    if (f.nbad > 0 && f.nbad <= SAMPLE_LIMIT) {
                        cfg.on_bad_row = SF_BAD_ROW_FAIL;
                        csv_layout_x(&cfg, text, f.text.len, &f.exp, &f, &ws, P, T, salt + 1);
                        fail_runs++;
                    }
                }
            }
            pass_fini(&ws);
            hfile_fini(&f);
        }
    }
    /* Files with more bad records than samples, and failing layouts. */
    assert_true(with_bad >= 2);
    assert_true(fail_runs > 50);
}

/* What a split reader passes on to its sub-parts (projection, rows per
 * batch), and the calls it refuses or that undo the split. */
static void test_split_settings(void **state)
{
    (void)state;
    const hspec sp = {4, 120, true, true, 5, 20, 40, false};
    hfile f;
    hfile_make(&f, &sp, 31337, "settings.csv");
    const char *text = (const char *)f.text.data;
    const uint64_t size = f.text.len;
    sf_type_hint hints[4];
    sf_input_config cfg = hcfg(&f, hints, 64, 7, SF_BAD_ROW_SKIP);
    /* Bad records other than a bad value of column v (2): those that a
     * projection without v still skips. */
    uint64_t bad_not_v = 0, bad_v = 0;
    for (size_t i = 0; i < f.nrec; i++) {
        if (!hk_bad(f.rec[i].kind)) continue;
        if (f.rec[i].kind == HK_BAD_V) bad_v++;
        else bad_not_v++;
    }
    assert_true(bad_v > 0 && bad_not_v > 0);
    const uint8_t no_v[4] = {1, 1, 0, 1};
    /* The same projection on a reader that is not split: the second path. */
    sf_reader *whole = open_reader(&cfg);
    assert_int_equal(sf_reader_set_projection(whole, no_v), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(whole, &b), SF_OK);
    uint64_t whole_rows = 0;
    for (;;) {
        bool eof;
        assert_int_equal(sf_reader_next(whole, &b, &eof), SF_OK);
        if (eof) break;
        whole_rows += b.nrows;
    }
    assert_int_equal(sf_reader_bad_rows(whole), bad_not_v);
    sf_batch_fini(&b);
    sf_reader_destroy(&whole);

    /* Three sub-parts, their counts computed here from the text. */
    enum { T = 3 };
    uint64_t cuts[T + 1], at[2 * (T + 1)];
    for (int t = 0; t < T; t++) sf_reader_sub_bounds(f.ds, size, t, T, &cuts[t], &cuts[t + 1]);
    for (int t = 0; t <= T; t++) count_text(text, f.ds, cuts[t], &at[2 * t]);
    sf_reader *r = open_reader(&cfg);
    assert_true(sf_reader_sub_concurrent(r));
    assert_int_equal(sf_reader_split(r, T, cuts, at), SF_OK);
    assert_int_equal(sf_reader_split_count(r), T);
    /* The batch is made before the projection (so it would take v if a
     * reader converted it): only the readers' projection leaves v out. */
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    assert_true(b.cols[2].loaded);
    assert_int_equal(sf_reader_set_projection(r, no_v), SF_OK);
    /* Fewer rows per batch after the batch was made: every sub-part takes
     * the new limit. */
    sf_reader_set_batch_rows(r, 2);
    uint64_t rows = 0;
    for (int t = 0; t < T; t++) {
        for (;;) {
            bool eof;
            assert_int_equal(sf_reader_next_sub(r, t, &b, &eof), SF_OK);
            if (eof) break;
            assert_true(b.nrows >= 1 && b.nrows <= 2);
            rows += b.nrows;
        }
    }
    assert_int_equal(rows, whole_rows);
    assert_int_equal(rows, f.exp.n + bad_v);
    assert_int_equal(sf_reader_bad_rows(r), bad_not_v);
    /* All columns again, after a rewind: every bad record is skipped. */
    assert_int_equal(sf_reader_rewind(r), SF_OK);
    assert_int_equal(sf_reader_set_projection(r, NULL), SF_OK);
    sf_batch_fini(&b);
    pass ps;
    pass_init(&ps);
    read_pass(r, &ps, 0, SIZE_MAX);
    assert_int_equal(ps.rc, SF_OK);
    assert_rows(&ps.rows, &f.exp, 0, f.exp.n, "split reader read in sequence");
    assert_int_equal(ps.bad, f.nbad);
    /* No seek across sub-parts; sub-parts out of range; reversed cuts. */
    sf_reader_pos pos;
    sf_reader_tell(r, &pos);
    assert_int_equal(sf_reader_seek(r, &pos), SF_ERR_ARG);
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    assert_int_equal(sf_reader_next_sub(r, T, &b, &eof), SF_ERR_ARG);
    assert_int_equal(sf_reader_next_sub(r, -1, &b, &eof), SF_ERR_ARG);
    uint64_t bad_cuts[3] = {cuts[0], cuts[2], cuts[1]};
    assert_int_equal(sf_reader_split(r, 2, bad_cuts, at), SF_ERR_ARG);
    assert_int_equal(sf_reader_split(r, 0, cuts, at), SF_ERR_ARG);
    /* A part given again replaces the split (as split into one does). */
    assert_int_equal(sf_reader_split(r, T, cuts, at), SF_OK);
    assert_int_equal(sf_reader_set_part(r, cuts[0], cuts[T], at, at + 2 * T), SF_OK);
    assert_int_equal(sf_reader_split_count(r), 1);
    read_pass(r, &ps, 0, SIZE_MAX);
    assert_rows(&ps.rows, &f.exp, 0, f.exp.n, "part after a split");
    assert_int_equal(ps.bad, f.nbad);
    assert_int_equal(sf_reader_split(r, T, cuts, at), SF_OK);
    uint64_t one[2] = {cuts[1], cuts[T]};
    assert_int_equal(sf_reader_split(r, 1, one, at + 2), SF_OK);
    assert_int_equal(sf_reader_split_count(r), 1);
    read_pass(r, &ps, 0, SIZE_MAX);
    const uint64_t lo = ref_boundary(text, size, f.ds, cuts[1]);
    size_t first = 0;
    while (first < f.exp.n && (uint64_t)f.exp.off[first] < lo) first++;
    assert_rows(&ps.rows, &f.exp, first, f.exp.n - first, "split into one");
    pass_fini(&ps);
    /* A projection given before the split holds for the sub-parts that
     * the split opens (b was made with every column). */
    assert_int_equal(sf_reader_set_projection(r, no_v), SF_OK);
    assert_int_equal(sf_reader_split(r, T, cuts, at), SF_OK);
    rows = 0;
    for (int t = 0; t < T; t++) {
        for (;;) {
            assert_int_equal(sf_reader_next_sub(r, t, &b, &eof), SF_OK);
            if (eof) break;
            rows += b.nrows;
        }
    }
    assert_int_equal(rows, whole_rows);
    assert_int_equal(sf_reader_bad_rows(r), bad_not_v);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    hfile_fini(&f);
}

/* sf_exec_parallel, which reads the sub-parts: every index once, and the
 * lowest failing index's status and message whichever thread ends first. */
static sf_status par_index(void *ctx, int t)
{
    int *hits = ctx;
    hits[t]++;
    if (t == 2) {
        /* The lowest failure ends last. */
        struct timespec ts = {0, 3000000};
        nanosleep(&ts, NULL);
    }
    if (t % 3 == 2) return sf_error_set(t == 2 ? SF_ERR_PARSE : SF_ERR_IO, __FILE__, __LINE__, "index %d failed", t);
    return SF_OK;
}

static void test_exec_parallel(void **state)
{
    (void)state;
    for (int n = 0; n <= 9; n++) {
        int hits[9] = {0};
        sf_error_clear();
        sf_status rc = sf_exec_parallel(n, par_index, hits);
        for (int t = 0; t < 9; t++) assert_int_equal(hits[t], t < n);
        if (n >= 3) {
            assert_int_equal(rc, SF_ERR_PARSE);
            assert_string_equal(sf_error_message(), "index 2 failed");
        } else {
            assert_int_equal(rc, SF_OK);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csv_counts),
        cmocka_unit_test(test_csv_small),
        cmocka_unit_test(test_csv_hand),
        cmocka_unit_test(test_csv_every_split),
        cmocka_unit_test(test_csv_writer_random),
        cmocka_unit_test(test_csv_error_lines),
        cmocka_unit_test(test_csv_ambiguous_must_fail),
        cmocka_unit_test(test_csv_ambiguous_random),
        cmocka_unit_test(test_csv_part_twice),
        cmocka_unit_test(test_hdf5_parts),
        cmocka_unit_test(test_gen_parts),
        cmocka_unit_test(test_csv_layouts),
        cmocka_unit_test(test_split_settings),
        cmocka_unit_test(test_exec_parallel),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
