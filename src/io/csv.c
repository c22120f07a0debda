/* CSV reader: RFC 4180 records read in fixed-size blocks, converted into
 * columnar batches.
 *
 * The file is read block_size bytes at a time into one buffer that also holds
 * the unfinished record carried over from the previous block, so the buffer
 * never grows beyond block_size + max_line_length + 2 bytes. A record is
 * tokenized without modifying the buffer (fields are spans into it; doubled
 * quotes are collapsed only when a value is converted), so a record that runs
 * past the end of the buffer is simply tokenized again after the next read.
 *
 * Most records never reach the tokenizer. Runs of plain records (no field
 * starting with a quote) are taken in chunks: split on SSE2 masks of the
 * delimiters and line feeds, then converted a column at a time
 * (chunk_records); a record with simple quoted strings is taken on its own
 * (fast_record). Both take only values whose reading is beyond doubt (short
 * numbers, well-formed timestamps) and leave everything else, errors
 * included, to the general path (slow_record), so their results are the
 * general path's. The buffer keeps a '\n' sentinel after its data and
 * BUF_PAD bytes after that, which their scans and wide loads rely on.
 *
 * Rules that are not in RFC 4180, chosen to be strict and simple:
 * - An unquoted empty field is null. A quoted empty field ("") is the empty
 *   string in a string column and null in any other column.
 * - Numbers and timestamps must fill the whole field: surrounding spaces are a
 *   parse error (strings are never trimmed).
 * - float64 accepts [+-]digits[.digits][(e|E)[+-]digits] and the words nan,
 *   inf (with an optional sign), as the CSV writer prints them; no hex.
 * - A quote inside an unquoted field is an ordinary character; a closing quote
 *   must be followed by the delimiter or the end of the record.
 * - Line ends are LF or CRLF; a lone CR is data.
 * - With more than one column, a blank line (no bytes before its line end) is
 *   not a record and is skipped silently. With a single column it is a record
 *   holding one null field, which is how the writer writes such a row.
 * - max_line_length bounds a record's bytes excluding its line end.
 * - A UTF-8 byte order mark before the header is ignored.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/reader_impl.h"

typedef struct csv_span {
    const char *p;   /* first byte of the value (inside the quotes if quoted) */
    size_t len;
    unsigned flags;  /* SPAN_QUOTED, SPAN_ESCAPED */
} csv_span;

enum { SPAN_QUOTED = 1u, SPAN_ESCAPED = 2u };

typedef enum tok_rc {
    TOK_OK,           /* a complete record */
    TOK_MORE,         /* the record runs past the end of the buffer */
    TOK_UNTERMINATED, /* end of file inside a quoted field */
    TOK_BAD_QUOTE     /* a closing quote followed by something else */
} tok_rc;

typedef struct csv_rec {
    size_t end;        /* buffer index just past the record's line end */
    size_t len;        /* bytes of the record without its line end */
    size_t nfields;    /* fields found (only the first fcap are stored) */
    uint64_t nlines;   /* physical lines the record spans */
    size_t bad_field;  /* TOK_BAD_QUOTE: 0-based field */
    char bad_char;     /* TOK_BAD_QUOTE: the offending byte */
} csv_rec;

/* A small direct-mapped cache in front of a string column's dictionary, so
 * that a low-cardinality column (service, region) costs a multiply and two
 * compares per value instead of XXH3, a probe and a memcmp. A slot holds the
 * first 16 bytes of a string (zero-padded), its length and its code; it is
 * trusted only during the csv_next call that filled it (gen), because the
 * batch's dictionaries are cleared between calls. A column whose values
 * mostly miss (high cardinality: addresses, ids) turns its cache off for the
 * rest of the call, so there it costs a few hundred lookups per batch. */
enum { SCACHE_BITS = 6, SCACHE_SLOTS = 1 << SCACHE_BITS, SCACHE_MIN_MISSES = 256 };

typedef struct str_slot {
    uint64_t w0, w1;    /* bytes 0-7 and 8-15, zero past the end */
    uint32_t len, code, gen;
} str_slot;

typedef struct str_cache {
    str_slot *slot;          /* SCACHE_SLOTS slots; NULL: not a string column */
    uint32_t tries, misses;  /* in this call */
    bool off;                /* in this call: too many misses to pay */
} str_cache;

/* The last date a timestamp column held: a log's timestamps mostly share
 * their date, which is then validated and converted once. */
typedef struct ts_cache {
    uint64_t d8;        /* bytes 0-7 of "YYYY-MM-DD" */
    uint16_t d2;        /* bytes 8-9 */
    bool valid;
    int64_t day_us;     /* that date at midnight, microseconds since the epoch */
} ts_cache;

typedef struct csv_impl {
    int fd;
    const char *path;
    char delim;
    bool fast_ok;       /* the delimiter cannot occur inside a number */
    size_t block;       /* bytes per read */
    size_t maxlen;      /* longest record, line end excluded */
    char *buf;
    size_t cap, len, pos;
    uint64_t buf_off;   /* file offset of buf[0] */
    bool eof;           /* read() reported the end of the file */
    uint64_t line;      /* physical line (1-based) of the record at pos */
    uint64_t data_line; /* line of the first data record */
    uint64_t rows;      /* data rows delivered in this pass */
    csv_span *f;
    size_t fcap;
    char *scratch;      /* maxlen + 2 bytes: unescaped values */
    char *numbuf;       /* maxlen + 2 bytes after scratch: strtod input */
    /* Per-call column plan (rebuilt by each next: the projection may change). */
    uint8_t *kind;      /* K_* of each column */
    int *str_cols;      /* the K_STR columns */
    int nstr;
    int *null_cols;
    int *pend_cols;     /* fast path: string columns left for commit_row */
    /* Per-call destinations of the numeric columns (the batch's arrays), so
     * the fast path stores without going through b->cols. */
    void **dst;
    /* Fast-path caches, allocated once at open: a string cache for each
     * string column and the last date of each timestamp column. */
    str_cache *scache;  /* ncols entries */
    str_slot *slots;    /* nslots: SCACHE_SLOTS per string column */
    size_t nslots;
    ts_cache *tcache;   /* ncols entries */
    uint32_t gen;       /* csv_next calls: tells this call's cache slots from older ones */
    /* Chunks (chunk_records): the fields of up to chunk_rows records, the
     * empty fields of each column, and the adaptation state. */
    int ncols;
    const char **fs, **fe; /* chunk_rows * ncols: field starts and ends */
    const char **rnext; /* chunk_rows: where the next record starts */
    uint64_t *cnull;    /* ncols */
    size_t chunk_rows;  /* at most 64: a null is one bit of cnull */
    size_t chunk_len;   /* the records the next chunk may split */
    size_t chunk_wait, chunk_backoff;
    /* A part (sf_reader_set_part): the records that start in [part_lo,
     * part_hi); the file ends at part_hi for this reader. */
    bool part;
    uint64_t part_lo, part_hi, part_line;
    bool fadvise;       /* input.fadvise on a regular file */
} csv_impl;

/* ------------------------------------------------------------------ */
/* Buffer */

static sf_status refill(csv_impl *c)
{
    if (c->pos > 0) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->buf_off += c->pos;
        c->len -= c->pos;
        c->pos = 0;
    }
    size_t room = c->cap - c->len;
    size_t want = room < c->block ? room : c->block;
    if (c->part) {
        /* Nothing past the part's end is ever read. */
        uint64_t at = c->buf_off + c->len;
        uint64_t left = c->part_hi > at ? c->part_hi - at : 0;
        if (left < want) want = (size_t)left;
        if (want == 0) {
            c->eof = true;
            c->buf[c->len] = '\n';
            return SF_OK;
        }
    }
    if (want == 0) {
        return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "%s: CSV buffer full", c->path);
    }
    ssize_t n;
    do {
        n = read(c->fd, c->buf + c->len, want);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: read failed: %s", c->path,
                            strerror(errno));
    }
    if (n == 0) c->eof = true;
    c->len += (size_t)n;
    c->buf[c->len] = '\n'; /* sentinel for the fast path's scans */
    /* Ask for the next block now, so it is (being) read while this one is
     * parsed. */
    if (c->fadvise && n > 0)
        (void)posix_fadvise(c->fd, (off_t)(c->buf_off + c->len), (off_t)c->block, POSIX_FADV_WILLNEED);
    return SF_OK;
}

/* Positions the reader at file offset off (which is the start of a record
 * on physical line `line`). Reuses the buffer when it still holds off. */
static sf_status seek_to(csv_impl *c, uint64_t off, uint64_t line)
{
    c->line = line;
    if (off >= c->buf_off && off <= c->buf_off + c->len) {
        c->pos = (size_t)(off - c->buf_off);
        return SF_OK;
    }
    if (lseek(c->fd, (off_t)off, SEEK_SET) == (off_t)-1) {
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: seek failed: %s", c->path,
                            strerror(errno));
    }
    c->buf_off = off;
    c->len = c->pos = 0;
    c->eof = false;
    return SF_OK;
}

/* ------------------------------------------------------------------ */
/* Tokenizer */

static inline void put_field(csv_impl *c, size_t nf, const char *p, size_t len, unsigned flags)
{
    if (nf < c->fcap) {
        c->f[nf].p = p;
        c->f[nf].len = len;
        c->f[nf].flags = flags;
    }
}

static uint64_t count_newlines(const char *p, const char *e)
{
    uint64_t n = 0;
    while ((p = memchr(p, '\n', (size_t)(e - p))) != NULL) {
        n++;
        p++;
    }
    return n;
}

/* The general state machine, used for records that contain a quote. */
static tok_rc tokenize_quoted(csv_impl *c, bool at_eof, csv_rec *rec)
{
    const char *buf = c->buf;
    const char *s = buf + c->pos, *e = buf + c->len, *p = s;
    const char delim = c->delim;
    size_t nf = 0;
    uint64_t nlines = 1;
    for (;;) {
        if (p < e && *p == '"') {
            const char *start = p + 1, *q = start;
            unsigned flags = SPAN_QUOTED;
            const char *close;
            for (;;) {
                close = memchr(q, '"', (size_t)(e - q));
                if (close == NULL) {
                    if (!at_eof) return TOK_MORE;
                    rec->nlines = nlines + count_newlines(start, e);
                    rec->end = c->len;
                    rec->len = c->len - c->pos;
                    return TOK_UNTERMINATED;
                }
                if (close + 1 == e && !at_eof) return TOK_MORE; /* escaped or closing: the next byte decides */
                if (close + 1 < e && close[1] == '"') {
                    flags |= SPAN_ESCAPED;
                    q = close + 2;
                    continue;
                }
                break;
            }
            nlines += count_newlines(start, close);
            put_field(c, nf++, start, (size_t)(close - start), flags);
            p = close + 1;
            if (p == e) { /* at_eof: the last record has no line end */
                rec->len = (size_t)(e - s);
                rec->end = c->len;
                break;
            }
            if (*p == delim) {
                p++;
                continue;
            }
            if (*p == '\n') {
                rec->len = (size_t)(p - s);
                rec->end = (size_t)(p + 1 - buf);
                break;
            }
            if (*p == '\r') {
                if (p + 1 == e) {
                    if (!at_eof) return TOK_MORE;
                    rec->len = (size_t)(p - s);
                    rec->end = c->len;
                    break;
                }
                if (p[1] == '\n') {
                    rec->len = (size_t)(p - s);
                    rec->end = (size_t)(p + 2 - buf);
                    break;
                }
            }
            rec->bad_field = nf - 1; /* 0-based: the field was just stored */
            rec->bad_char = *p;
            rec->nlines = nlines;
            return TOK_BAD_QUOTE;
        }
        const char *q = p;
        while (q < e && *q != delim && *q != '\n') q++;
        if (q == e && !at_eof) return TOK_MORE;
        if (q < e && *q == delim) {
            put_field(c, nf++, p, (size_t)(q - p), 0);
            p = q + 1;
            continue;
        }
        const char *fe = q;
        if (fe > p && fe[-1] == '\r') fe--;
        put_field(c, nf++, p, (size_t)(fe - p), 0);
        rec->len = (size_t)(fe - s);
        rec->end = q < e ? (size_t)(q + 1 - buf) : c->len;
        break;
    }
    rec->nfields = nf;
    rec->nlines = nlines;
    return TOK_OK;
}

/* Tokenizes the record at c->pos. Only called with c->pos < c->len. The
 * common case (no quote before the line end) splits the line with memchr. */
static tok_rc tokenize(csv_impl *c, bool at_eof, csv_rec *rec)
{
    const char *buf = c->buf;
    const char *s = buf + c->pos, *e = buf + c->len;
    const char *nl = memchr(s, '\n', (size_t)(e - s));
    const char *le = nl ? nl : e;
    if (nl == NULL && !at_eof) return TOK_MORE;
    if (memchr(s, '"', (size_t)(le - s)) != NULL) return tokenize_quoted(c, at_eof, rec);
    const char *ce = le;
    if (ce > s && ce[-1] == '\r') ce--;
    const char delim = c->delim;
    const char *p = s;
    size_t nf = 0;
    for (;;) {
        const char *d = memchr(p, delim, (size_t)(ce - p));
        if (d == NULL) {
            put_field(c, nf++, p, (size_t)(ce - p), 0);
            break;
        }
        put_field(c, nf++, p, (size_t)(d - p), 0);
        p = d + 1;
    }
    rec->nfields = nf;
    rec->len = (size_t)(ce - s);
    rec->end = nl ? (size_t)(nl + 1 - buf) : c->len;
    rec->nlines = 1;
    return TOK_OK;
}

/* Whether this reader is a part (sf_reader_set_part) that ends before the
 * end of the file. */
static bool part_cut_short(const sf_reader *r, const csv_impl *c)
{
    return c->part && c->part_hi < r->data_start + r->data_bytes;
}

/* A part cut short ended inside a quoted field of the record that starts
 * on `line`: the part's end was taken for a record boundary only because a
 * quote inside an unquoted field earlier in the file changed the count of
 * quotes. The record can be neither read nor skipped without the next
 * part's bytes, and the next part, which starts inside it, would read the
 * rest of it as rows: fail instead. */
static sf_status part_overrun(const csv_impl *c, uint64_t line)
{
    return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                        "%s:%" PRIu64 ": a quoted field runs past byte %" PRIu64
                        ", where this part of the file ends: a quote inside an unquoted "
                        "field earlier in the file made the split ambiguous; read this file with "
                        "distribute.mode: static or dynamic",
                        c->path, line, c->part_hi);
}

/* Consumes the record at c->pos without keeping it (used for records that
 * are too long to hold, or malformed), reading further blocks as needed.
 * Follows the same grammar as the tokenizer; after a closing quote that is
 * followed by other bytes the rest of the field is taken as unquoted. */
static sf_status skip_record(sf_reader *r, csv_impl *c)
{
    enum { FIELD_START, UNQUOTED, QUOTED, QUOTE_SEEN } st = FIELD_START;
    uint64_t nlines = 1;
    const uint64_t line = c->line;
    const char delim = c->delim;
    for (;;) {
        if (c->pos == c->len) {
            if (c->eof) {
                /* The end of a part cut short, inside a quoted field (a
                 * bad-quote or overlong record): as in next_record. */
                if (st == QUOTED && part_cut_short(r, c)) return part_overrun(c, line);
                break;
            }
            SF_CALL(refill(c));
            continue;
        }
        const char *p = c->buf + c->pos, *e = c->buf + c->len;
        bool done = false;
        for (; p < e && !done; p++) {
            char ch = *p;
            switch (st) {
            case FIELD_START:
            case UNQUOTED:
                if (ch == '\n') done = true;
                else if (ch == delim) st = FIELD_START;
                else if (ch == '"' && st == FIELD_START) st = QUOTED;
                else st = UNQUOTED;
                break;
            case QUOTED:
                if (ch == '"') st = QUOTE_SEEN;
                else if (ch == '\n') nlines++;
                break;
            case QUOTE_SEEN:
                if (ch == '"') st = QUOTED;
                else if (ch == '\n') done = true;
                else if (ch == delim) st = FIELD_START;
                else st = UNQUOTED;
                break;
            }
        }
        c->pos = (size_t)(p - c->buf);
        if (done) break;
    }
    c->line += nlines;
    return SF_OK;
}

/* ------------------------------------------------------------------ */
/* Value conversion */

/* Collapses the doubled quotes of a quoted field into c->scratch. */
static const char *field_text(csv_impl *c, const csv_span *f, size_t *len)
{
    if (!(f->flags & SPAN_ESCAPED)) {
        *len = f->len;
        return f->p;
    }
    char *d = c->scratch;
    size_t k = 0;
    for (size_t i = 0; i < f->len; i++) {
        d[k++] = f->p[i];
        if (f->p[i] == '"') i++; /* the tokenizer guarantees the quote is doubled */
    }
    *len = k;
    return d;
}

static bool parse_i64(const char *s, size_t n, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    if (i == n) return false;
    while (i + 1 < n && s[i] == '0') i++; /* leading zeros do not count toward 19 digits */
    if (n - i > 19) {
        return false;
    }
    uint64_t v = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return false;
        v = v * 10 + d; /* at most 19 digits: cannot wrap */
    }
    if (neg) {
        if (v > (uint64_t)INT64_MAX + 1) return false;
        *out = v == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)v;
    } else {
        if (v > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)v;
    }
    return true;
}

static bool word_eq(const char *s, size_t n, const char *w)
{
    return strlen(w) == n && memcmp(s, w, n) == 0;
}

/* Decimal text to the correctly rounded double. Simple decimals (at most 19
 * significant digits forming an integer below 2^53, scaled by 10^k with
 * |k| <= 22) are computed exactly with one rounding (Clinger's fast path),
 * which gives the same double as strtod; anything else goes to strtod after
 * the grammar was checked here (strtod alone would accept hex, spaces and
 * more words). scratch needs n + 1 bytes. */
static bool parse_f64(const char *s, size_t n, char *scratch, double *out)
{
    static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    size_t i = 0;
    bool neg = false;
    if (n > 0 && (s[0] == '-' || s[0] == '+')) {
        neg = s[0] == '-';
        i = 1;
    }
    uint64_t mant = 0;
    int ndig = 0;           /* significant digits held in mant */
    long exp10 = 0;
    bool exact = true;      /* mant * 10^exp10 is exactly the text's value */
    size_t ndigits = 0;
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) break;
        ndigits++;
        if (mant == 0 && d == 0) continue;
        if (ndig < 19) {
            mant = mant * 10 + d;
            ndig++;
        } else {
            exp10++;
            if (d) exact = false;
        }
    }
    if (i < n && s[i] == '.') {
        for (i++; i < n; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9) break;
            ndigits++;
            if (mant == 0 && d == 0) {
                exp10--;
            } else if (ndig < 19) {
                mant = mant * 10 + d;
                ndig++;
                exp10--;
            } else if (d) {
                exact = false;
            }
        }
    }
    if (ndigits == 0) {
        const char *w = s + (n > 0 && (s[0] == '-' || s[0] == '+'));
        size_t wn = n - (size_t)(w - s);
        if (word_eq(w, wn, "nan")) {
            *out = neg ? -(double)NAN : (double)NAN;
            return true;
        }
        if (word_eq(w, wn, "inf")) {
            *out = neg ? -(double)INFINITY : (double)INFINITY;
            return true;
        }
        return false;
    }
    if (i < n && (s[i] == 'e' || s[i] == 'E')) {
        i++;
        bool eneg = false;
        if (i < n && (s[i] == '-' || s[i] == '+')) {
            eneg = s[i] == '-';
            i++;
        }
        size_t start = i;
        long ev = 0;
        for (; i < n; i++) {
            unsigned d = (unsigned)(unsigned char)s[i] - '0';
            if (d > 9) break;
            if (ev < 100000) ev = ev * 10 + d;
        }
        if (i == start) return false;
        exp10 += eneg ? -ev : ev;
    }
    if (i != n) return false;
    if (mant == 0) {
        *out = neg ? -0.0 : 0.0;
        return true;
    }
#if FLT_EVAL_METHOD == 0
    if (exact && mant <= ((uint64_t)1 << 53) && exp10 >= -22 && exp10 <= 22) {
        double v = (double)mant;
        v = exp10 < 0 ? v / pow10[-exp10] : v * pow10[exp10];
        *out = neg ? -v : v;
        return true;
    }
#else
    (void)pow10;
    (void)exact;
#endif
    memcpy(scratch, s, n);
    scratch[n] = '\0';
    *out = strtod(scratch, NULL); /* ERANGE gives +-inf or a denormal/zero: the rounded value */
    return true;
}

/* A value shown in a message: at most 64 bytes, control bytes as '?'. */
static void show_value(const char *p, size_t n, char out[80])
{
    size_t k = n > 64 ? 64 : n;
    for (size_t i = 0; i < k; i++) {
        unsigned char ch = (unsigned char)p[i];
        out[i] = ch < 0x20 || ch == 0x7f ? '?' : (char)ch;
    }
    if (n > k) {
        memcpy(out + k, "...", 3);
        k += 3;
    }
    out[k] = '\0';
}

/* ------------------------------------------------------------------ */
/* Bad records */

/* A bad record starting on `line`: under on_bad_row: fail it becomes the
 * error (SF_ERR_PARSE); under skip it is counted and SF_OK is returned so the
 * caller moves past it. */
static sf_status bad_record(sf_reader *r, uint64_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static sf_status bad_record(sf_reader *r, uint64_t line, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r->cfg.on_bad_row != SF_BAD_ROW_SKIP)
        return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, "%s", msg);
    sf__reader_note_bad_row(r, line, msg);
    return SF_OK;
}

static sf_status overlong(sf_reader *r, csv_impl *c, uint64_t line)
{
    return bad_record(r, line, "%s:%" PRIu64 ": record longer than %zu bytes (input.max_line_length)",
                      c->path, line, c->maxlen);
}

static sf_status bad_quote(sf_reader *r, csv_impl *c, const csv_rec *rec)
{
    char ch = rec->bad_char;
    if ((unsigned char)ch < 0x20 || ch == 0x7f) ch = '?';
    return bad_record(r, c->line, "%s:%" PRIu64 ":%zu: unexpected '%c' after closing quote", c->path,
                      c->line, rec->bad_field + 1, ch);
}

/* Reads the next complete record into c->f. Returns SF_OK with *got false at
 * the end of the data. Bad records are reported (fail) or skipped (skip);
 * with `quiet` (type inference) they are skipped without being reported. */
static sf_status next_record(sf_reader *r, csv_impl *c, bool quiet, csv_rec *rec, bool *got)
{
    *got = false;
    for (;;) {
        if (c->pos == c->len) {
            if (c->eof) return SF_OK;
            SF_CALL(refill(c));
            continue;
        }
        tok_rc t = tokenize(c, c->eof, rec);
        if (t == TOK_MORE) {
            if (c->len - c->pos > c->maxlen + 1) {
                uint64_t line = c->line;
                if (!quiet) SF_CALL(overlong(r, c, line));
                SF_CALL(skip_record(r, c));
                continue;
            }
            SF_CALL(refill(c));
            continue;
        }
        if (t == TOK_UNTERMINATED) {
            uint64_t line = c->line;
            c->pos = c->len;
            c->line += rec->nlines;
            if (!quiet && part_cut_short(r, c)) return part_overrun(c, line);
            if (!quiet)
                SF_CALL(bad_record(r, line, "%s:%" PRIu64 ": unterminated quoted field", c->path, line));
            continue;
        }
        if (t == TOK_BAD_QUOTE) {
            if (!quiet) SF_CALL(bad_quote(r, c, rec));
            SF_CALL(skip_record(r, c));
            continue;
        }
        if (rec->len > c->maxlen) {
            uint64_t line = c->line;
            c->pos = rec->end;
            c->line += rec->nlines;
            if (!quiet) SF_CALL(overlong(r, c, line));
            continue;
        }
        *got = true;
        return SF_OK;
    }
}

/* Decimal digits. */

static const uint64_t pow10u[20] = {1u,
                                    10u,
                                    100u,
                                    1000u,
                                    10000u,
                                    100000u,
                                    1000000u,
                                    10000000u,
                                    100000000u,
                                    1000000000u,
                                    10000000000u,
                                    100000000000u,
                                    1000000000000u,
                                    10000000000000u,
                                    100000000000000u,
                                    1000000000000000u,
                                    10000000000000000u,
                                    100000000000000000u,
                                    1000000000000000000u,
                                    10000000000000000000u};

/* 8 bytes at p as a little-endian word: byte 0 in the low bits, whatever
 * the machine, so the SWAR below reads the digits in text order. */
static inline uint64_t load_le64(const char *p)
{
    uint64_t w;
    memcpy(&w, p, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    w = __builtin_bswap64(w);
#endif
    return w;
}

/* The value of a word of 8 digit bytes, the first one most significant
 * (zero bytes count as leading zeros). Three multiplies combine pairs of
 * digits, then pairs of pairs, then the two halves (SWAR). */
static inline uint64_t eight_digits(uint64_t w)
{
    w = ((w & 0x0F0F0F0F0F0F0F0Fu) * 2561) >> 8;
    w = ((w & 0x00FF00FF00FF00FFu) * 6553601) >> 16;
    return ((w & 0x0000FFFF0000FFFFu) * 42949672960001u) >> 32;
}

/* The value of the n <= 8 digits at p (known to be digits; n == 0 gives 0).
 * Reads 8 bytes, so the buffer is padded. */
static inline uint64_t digits_value8(const char *p, size_t n)
{
    /* Drop the bytes after the digits; the zeros shifted in become leading
     * zeros. Two shifts, so that n == 0 (a shift by 64) is defined. */
    const unsigned s = 4 * (8 - (unsigned)n);
    return eight_digits((load_le64(p) << s) << s);
}

/* Up to 8 leading digits of p at once (SWAR): returns how many, their value
 * in *v. Reads 8 bytes, so the buffer is padded. */
static inline unsigned digits8(const char *p, uint64_t *v)
{
    uint64_t w = load_le64(p);
    /* A byte is a digit iff its high nibble is 3 and adding 6 keeps it 3.
     * A carry out of a non-digit byte only disturbs the bytes after it. */
    uint64_t bad = ((w & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u) |
                   (((w + 0x0606060606060606u) & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u);
    unsigned k = bad ? (unsigned)__builtin_ctzll(bad) / 8 : 8;
    *v = digits_value8(p, k);
    return k;
}

/* ------------------------------------------------------------------ */
/* next / rewind / destroy */

/* How each column is handled in this call (the projection may change
 * between calls). */
enum { K_SKIP = 0, K_INT = 1, K_FLOAT = 2, K_TS = 3, K_STR = 4 };

/* The buffer's bytes past the sentinel: every load of the fast path (at
 * most 64 bytes, from a byte at or before the sentinel) stays inside the
 * allocation. */
enum { BUF_PAD = 64 };

/* The bytes that end a field (the delimiter or a line feed) or a quoted
 * field (a quote or a line feed), found 16 at a time with SSE2, which every
 * x86-64 has. */
#if defined(__SSE2__)
#include <emmintrin.h>
typedef struct stop_set {
    __m128i a, b;
} stop_set;

static inline stop_set stop_set_make(char a, char b)
{
    stop_set s = {_mm_set1_epi8(a), _mm_set1_epi8(b)};
    return s;
}

/* The first byte at or after p that is one of the set. The caller knows
 * there is one at or before the buffer's sentinel; the loads may read up
 * to 15 bytes past it, into the padding. */
static inline const char *scan_stop(const char *p, const stop_set *s)
{
    for (;; p += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
        const __m128i hit = _mm_or_si128(_mm_cmpeq_epi8(v, s->a), _mm_cmpeq_epi8(v, s->b));
        const unsigned m = (unsigned)_mm_movemask_epi8(hit);
        if (m != 0) return p + __builtin_ctz(m);
    }
}
#else
typedef struct stop_set {
    char a, b;
} stop_set;

static inline stop_set stop_set_make(char a, char b)
{
    stop_set s = {a, b};
    return s;
}

static inline const char *scan_stop(const char *p, const stop_set *s)
{
    while (*p != s->a && *p != s->b) p++;
    return p;
}
#endif

#if defined(__SSE2__)
/* Bit i: p[i] is one of the set, i < 16. */
static inline unsigned stops16(const char *p, const stop_set *ss)
{
    const __m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
    return (unsigned)_mm_movemask_epi8(_mm_or_si128(_mm_cmpeq_epi8(v, ss->a), _mm_cmpeq_epi8(v, ss->b)));
}

/* Bit i: p[i] is not a decimal digit, i < 16: x - '0' > 9 unsigned, which
 * SSE2 (no unsigned compare) tells as max(x - '0', 9) != 9. */
static inline unsigned nondigits16(const char *p)
{
    const __m128i nine = _mm_set1_epi8(9);
    const __m128i t = _mm_sub_epi8(_mm_loadu_si128((const __m128i *)(const void *)p), _mm_set1_epi8('0'));
    return ~(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_max_epu8(t, nine), nine)) & 0xFFFFu;
}
#else
static inline unsigned stops16(const char *p, const stop_set *ss)
{
    unsigned m = 0;
    for (unsigned i = 0; i < 16; i++) m |= (unsigned)(p[i] == ss->a || p[i] == ss->b) << i;
    return m;
}

static inline unsigned nondigits16(const char *p)
{
    unsigned m = 0;
    for (unsigned i = 0; i < 16; i++) m |= (unsigned)((unsigned)(unsigned char)p[i] - '0' > 9) << i;
    return m;
}
#endif

/* The stop mask of the 64 bytes at p (p at or before the sentinel: the
 * loads reach into the padding). */
static inline uint64_t stops64(const char *p, const stop_set *ss)
{
    return (uint64_t)stops16(p, ss) | (uint64_t)stops16(p + 16, ss) << 16 |
           (uint64_t)stops16(p + 32, ss) << 32 | (uint64_t)stops16(p + 48, ss) << 48;
}

/* Masks keeping the first k bytes of a little-endian word, k = 0..8. */
static const uint64_t keep_bytes[9] = {0,
                                       UINT64_C(0xff),
                                       UINT64_C(0xffff),
                                       UINT64_C(0xffffff),
                                       UINT64_C(0xffffffff),
                                       UINT64_C(0xffffffffff),
                                       UINT64_C(0xffffffffffff),
                                       UINT64_C(0xffffffffffffff),
                                       UINT64_MAX};

/* The value of the n <= 15 digits at p (known to be digits). */
static inline uint64_t digits_value15(const char *p, size_t n)
{
    if (n <= 8) return digits_value8(p, n);
    return digits_value8(p, n - 8) * 100000000u + eight_digits(load_le64(p + n - 8));
}

/* The fast path's numbers: the whole field p[0..len) (len > 0) is an
 * optional '-' and at most 15 more bytes, digits (and for floats one
 * decimal point). false leaves anything else (a '+', more digits,
 * exponents, words, spaces, quotes) to the general path, which reads it or
 * reports it. The sign is taken without a branch: which values are
 * negative is data, and a mispredicted branch costs more than the field.
 * Reads 16 bytes from p and 8 from p + len + 1 (the buffer is padded). */
static inline bool fast_int(const char *p, size_t len, int64_t *out)
{
    const unsigned neg = *p == '-';
    if (len > 15 + neg || len == neg) return false;
    if ((nondigits16(p) & ((1u << len) - 1) & ~neg) != 0) return false;
    const int64_t v = (int64_t)digits_value15(p + neg, len - neg), sn = -(int64_t)neg;
    *out = (v ^ sn) - sn;
    return true;
}

static inline bool fast_float(const char *p, size_t len, double *out)
{
    static const double pow10[16] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    const unsigned neg = *p == '-';
    if (len > 15 + neg) return false;
    const unsigned bad = nondigits16(p) & ((1u << len) - 1) & ~neg;
    size_t ni = len - neg, nf = 0;
    if (bad != 0) { /* the only non-digit must be the decimal point */
        const unsigned d = (unsigned)__builtin_ctz(bad);
        if ((bad & (bad - 1)) != 0 || p[d] != '.') return false;
        ni = d - neg;
        nf = len - d - 1;
    }
    if (ni + nf == 0) return false;
    /* The integer and fraction digits convert apart: their lengths are
     * steadier than their sum (a column's fraction has a fixed width more
     * often than not), so the branches on them are predicted. */
    const uint64_t m = digits_value15(p + neg, ni) * pow10u[nf] + digits_value15(p + neg + ni + 1, nf);
    /* An exact integer below 2^53 (at most 15 digits) divided by an exact
     * power of ten: one rounding, the same double strtod gives (Clinger).
     * The quotient is >= 0, so the sign is its top bit. */
    const double v = (double)(int64_t)m / pow10[nf];
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    bits |= (uint64_t)neg << 63;
    memcpy(out, &bits, sizeof bits);
    return true;
}

/* Whether the column's cache takes p[0..len) in this call. */
static inline bool cache_on(const str_cache *sc, size_t len)
{
    return sc->slot != NULL && !sc->off && len <= UINT32_MAX;
}

/* The slot of p[0..len) and its first 16 bytes, zero-padded. p must have 16
 * readable bytes (a span of the padded buffer). */
static inline str_slot *cache_slot(const str_cache *sc, const char *p, size_t len, uint64_t *w0, uint64_t *w1)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + 8, 8);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    a = __builtin_bswap64(a);
    b = __builtin_bswap64(b);
#endif
    a &= keep_bytes[len < 8 ? len : 8];
    b &= keep_bytes[len < 8 ? 0 : len < 16 ? len - 8 : 8];
    *w0 = a;
    *w1 = b;
    uint64_t h = (a ^ (b * UINT64_C(0x9E3779B97F4A7C15)) ^ len) * UINT64_C(0xC2B2AE3D27D4EB4F);
    return &sc->slot[h >> (64 - SCACHE_BITS)];
}

/* Whether the cache holds p[0..len) (then its code is in *code). Changes
 * nothing but the counters, so the fast path asks before it knows the
 * record is good, and the dictionary still gets a record's strings only
 * when the record is committed, in the same order as without the cache. */
static inline bool cache_find(const csv_impl *c, str_cache *sc, const sf_dict *d, const char *p, size_t len,
                              uint32_t *code)
{
    uint64_t w0, w1;
    const str_slot *s = cache_slot(sc, p, len, &w0, &w1);
    sc->tries++;
    /* Equal length and first 16 bytes decide for strings of up to 16
     * bytes; longer ones compare the rest with the dictionary's copy. */
    if (s->gen == c->gen && s->len == len && s->w0 == w0 && s->w1 == w1 &&
        (len <= 16 || memcmp(d->bytes + d->off[s->code] + 16, p + 16, len - 16) == 0)) {
        *code = s->code;
        return true;
    }
    return false;
}

/* Interns p[0..len) (p as for cache_slot) and remembers it in the cache. */
static sf_status intern_fill(const csv_impl *c, str_cache *sc, sf_dict *d, const char *p, size_t len,
                             uint32_t *code)
{
    SF_CALL(sf_dict_intern(d, p, len, code));
    if (!cache_on(sc, len)) return SF_OK;
    uint64_t w0, w1;
    str_slot *s = cache_slot(sc, p, len, &w0, &w1);
    s->w0 = w0;
    s->w1 = w1;
    s->len = (uint32_t)len;
    s->code = *code;
    s->gen = c->gen;
    if (++sc->misses >= SCACHE_MIN_MISSES && (uint64_t)sc->misses * 4 > (uint64_t)sc->tries * 3)
        sc->off = true;
    return SF_OK;
}

/* s[0..len) as a timestamp: when it returns true, the value and verdict of
 * sf_timestamp_parse; false sends the record to the general path, which
 * calls sf_timestamp_parse and reports the error if there is one. The date
 * is checked and converted by sf_timestamp_parse itself (on that date at
 * midnight) when it differs from the column's last one. Reads 8 bytes from
 * s + 20 (the padded buffer). */
static inline bool fast_ts(ts_cache *tc, const char *s, size_t len, int64_t *out)
{
    if (len < 19) return false;
    uint64_t d8;
    uint16_t d2;
    memcpy(&d8, s, 8);
    memcpy(&d2, s + 8, 2);
    if (!tc->valid || d8 != tc->d8 || d2 != tc->d2) {
        char day[19];
        memcpy(day, s, 10);
        memcpy(day + 10, "T00:00:00", 9);
        tc->valid = false;
        if (!sf_timestamp_parse(day, sizeof day, &tc->day_us)) return false;
        tc->d8 = d8;
        tc->d2 = d2;
        tc->valid = true;
    }
    if ((s[10] != 'T' && s[10] != ' ') || s[13] != ':' || s[16] != ':') return false;
    const unsigned h1 = (unsigned)(unsigned char)s[11] - '0', h0 = (unsigned)(unsigned char)s[12] - '0';
    const unsigned m1 = (unsigned)(unsigned char)s[14] - '0', m0 = (unsigned)(unsigned char)s[15] - '0';
    const unsigned s1 = (unsigned)(unsigned char)s[17] - '0', s0 = (unsigned)(unsigned char)s[18] - '0';
    if ((h1 > 9) | (h0 > 9) | (m1 > 9) | (m0 > 9) | (s1 > 9) | (s0 > 9)) return false;
    const unsigned h = h1 * 10 + h0, mi = m1 * 10 + m0, se = s1 * 10 + s0;
    if (h > 23 || mi > 59 || se > 59) return false;
    size_t i = 19;
    int64_t frac = 0;
    if (i < len && s[i] == '.') {
        uint64_t v;
        unsigned k = digits8(s + 20, &v);
        /* 1 to 6 digits, all inside the field. */
        if (k == 0 || k > 6 || k > len - 20) return false;
        frac = (int64_t)(v * pow10u[6 - k]);
        i = 20 + k;
    }
    if (i < len && s[i] == 'Z') i++;
    if (i != len) return false;
    *out = tc->day_us + (int64_t)(h * 3600 + mi * 60 + se) * 1000000 + frac;
    return true;
}

/* Commits row n: interns the string fields of the columns cols[0..ncols)
 * (in column order: codes follow the order of first appearance), marks the
 * nulls and records where the record lies in the file. */
static sf_status commit_row(csv_impl *c, sf_batch *b, size_t n, const int *cols, int ncols, int nnull,
                            size_t start, size_t end)
{
    for (int k = 0; k < ncols; k++) {
        const int ci = cols[k];
        const csv_span *f = &c->f[ci];
        sf_column *col = &b->cols[ci];
        if (f->len == 0 && !(f->flags & SPAN_QUOTED)) {
            c->null_cols[nnull++] = ci;
            continue;
        }
        if (f->flags & SPAN_ESCAPED) {
            size_t len;
            const char *p = field_text(c, f, &len);
            SF_CALL(sf_dict_intern(&col->dict, p, len, &col->code[n]));
        } else {
            SF_CALL(intern_fill(c, &c->scache[ci], &col->dict, f->p, f->len, &col->code[n]));
        }
    }
    for (int k = 0; k < nnull; k++) SF_CALL(sf_batch_set_null(b, c->null_cols[k], n));
    if (b->row_offset != NULL) {
        size_t nb = end - start;
        b->row_offset[n] = (int64_t)(c->buf_off + start);
        b->row_bytes[n] = nb > UINT32_MAX ? UINT32_MAX : (uint32_t)nb;
    }
    return SF_OK;
}

/* A string field met by the fast path: its code goes straight into row n
 * when the column's cache knows it; otherwise it is left (as a span, its
 * column appended to pend_cols) for commit_row. Returns the new count of
 * pending columns. */
static inline int str_field(csv_impl *c, sf_batch *b, size_t n, int ci, const char *p, size_t len,
                            unsigned flags, int npend)
{
    str_cache *sc = &c->scache[ci];
    if (cache_on(sc, len) && cache_find(c, sc, &b->cols[ci].dict, p, len, &((uint32_t *)c->dst[ci])[n]))
        return npend;
    c->f[ci].p = p;
    c->f[ci].len = len;
    c->f[ci].flags = flags;
    c->pend_cols[npend] = ci;
    return npend + 1;
}

/* Converts the non-empty plain field p[0..len) of column ci (kind kd) into
 * row n; a string the cache does not know is left pending (str_field).
 * false: the general path's value. */
static inline bool fast_value(csv_impl *c, sf_batch *b, size_t n, int ci, int kd, const char *p, size_t len,
                              int *npend)
{
    switch (kd) {
    case K_INT: return fast_int(p, len, &((int64_t *)c->dst[ci])[n]);
    case K_FLOAT: return fast_float(p, len, &((double *)c->dst[ci])[n]);
    case K_TS: return fast_ts(&c->tcache[ci], p, len, &((int64_t *)c->dst[ci])[n]);
    default: *npend = str_field(c, b, n, ci, p, len, 0, *npend); return true;
    }
}

/* The record-at-a-time fast path, for an ordinary record that chunks do
 * not take (it has a quoted field, or chunks are resting after records
 * they could not take): every value is simple
 * (see fast_int and fast_float; quoted strings without doubled quotes or
 * line ends), the record ends inside the buffer. Returns false, having
 * committed nothing, for anything else: the general path then handles the
 * record and reports what is wrong with it. Relies on the '\n' sentinel at
 * buf[len] and the padding after it. Values written into row n before a
 * failure are simply overwritten later. */
static bool fast_record(csv_impl *c, sf_batch *b, size_t n, int *nnull_out, int *npend_out, size_t *end_out)
{
    const char *const s = c->buf + c->pos, *const e = c->buf + c->len;
    const char delim = c->delim;
    const int last = b->ncols - 1;
    const uint8_t *const kind = c->kind;
    const stop_set field_end = stop_set_make(delim, '\n');
    const char *p = s, *q;
    int nnull = 0, npend = 0;
    for (int ci = 0;; ci++) {
        const int kd = kind[ci];
        if (*p == '"') {
            /* A quoted string without doubled quotes or line ends. */
            if (kd != K_STR && kd != K_SKIP) return false;
            const stop_set quote_end = stop_set_make('"', '\n');
            q = scan_stop(p + 1, &quote_end);
            if (*q != '"' || q == e) return false;
            if (kd == K_STR) npend = str_field(c, b, n, ci, p + 1, (size_t)(q - p - 1), SPAN_QUOTED, npend);
            q++;
            if (*q == '"') return false;
        } else {
            q = scan_stop(p, &field_end);
            if (kd != K_SKIP) {
                const char *fe = q;
                if (ci == last && fe > p && fe[-1] == '\r') fe--;
                const size_t len = (size_t)(fe - p);
                if (len == 0) c->null_cols[nnull++] = ci;
                else if (!fast_value(c, b, n, ci, kd, p, len, &npend)) return false;
            }
        }
        if (ci == last) break;
        /* A field that ends at the sentinel ends at a '\n', not here. */
        if (*q != delim) return false;
        p = q + 1;
    }
    if (q == e) return false; /* the record may go on in the next block */
    size_t len;
    if (*q == '\n') {
        len = (size_t)(q - s);
        if (len > 0 && q[-1] == '\r') len--;
        *end_out = (size_t)(q + 1 - c->buf);
    } else if (*q == '\r' && q + 1 < e && q[1] == '\n') { /* after a closing quote */
        len = (size_t)(q - s);
        *end_out = (size_t)(q + 2 - c->buf);
    } else {
        return false;
    }
    if (len > c->maxlen || (len == 0 && last > 0)) return false;
    *nnull_out = nnull;
    *npend_out = npend;
    return true;
}

enum { CHUNK_FIELDS = 4096, CHUNK_MIN = 4, CHUNK_BACKOFF_MAX = 1023 };

/* Chunks: up to 64 plain records (no field starts with a quote) are
 * split first, then converted a column at a time. The split needs nothing
 * but the stops (delimiters and line feeds, 64 bytes per mask, each field's
 * end a count of trailing zeros away), and a column's loop repeats the same
 * few instructions on independent values, which the CPU overlaps; the
 * record-at-a-time path spends more on each field's kind and waits for each
 * field's end before it can start the next. A value the fast path does not
 * take ends the chunk before its record: nothing after it is committed,
 * and the record goes to the record-at-a-time paths. */

/* Splits up to max plain records from c->pos into the chunk tables: field
 * ci of record r spans [fs[i], fe[i]) with i = r * ncols + ci (the CR of a
 * CRLF line end is not in the last field), and the next record starts at
 * rnext[r]. Stops before the first record that is not plain or not whole:
 * a field that starts with a quote, the wrong number of fields, a blank or
 * overlong line, the end of the buffer. Returns the records. */
static size_t chunk_split(csv_impl *c, int ncols, size_t max)
{
    const char **fs = c->fs, **fe = c->fe;
    const char *p = c->buf + c->pos, *const e = c->buf + c->len;
    const char delim = c->delim;
    const stop_set ss = stop_set_make(delim, '\n');
    const int last = ncols - 1;
    const char *base = p;
    uint64_t rem = stops64(p, &ss); /* stops of base[0..64) not yet taken */
    size_t r = 0;
    for (; r < max; r++, fs += ncols, fe += ncols) {
        const char *const s = p, *q;
        for (int ci = 0;; ci++) {
            fs[ci] = p;
            if (*p == '"') return r;
            if (rem == 0) {
                base = p;
                rem = stops64(p, &ss);
            }
            if (rem != 0) {
                q = base + __builtin_ctzll(rem);
                rem &= rem - 1;
            } else { /* a field of 64 bytes or more */
                q = scan_stop(p + 64, &ss);
            }
            fe[ci] = q;
            if (ci == last) break;
            if (*q != delim) return r;
            p = q + 1;
        }
        if (*q != '\n' || q == e) return r;
        const char *le = q;
        if (le > s && le[-1] == '\r') le--;
        if ((size_t)(le - s) > c->maxlen || (le == s && ncols > 1)) return r;
        fe[last] = le; /* without the CR of a CRLF line end */
        p = q + 1;
        c->rnext[r] = p;
    }
    return r;
}

/* Converts the numbers or timestamps of column ci (kind kd) of chunk
 * records [0, nr) into rows n0 + r; bit r of *nulls: record r's field is
 * empty. Returns the records before the first value the fast path does not
 * take. */
static size_t chunk_column(csv_impl *c, int ci, int kd, size_t n0, size_t nr, uint64_t *nulls)
{
    const size_t stride = (size_t)c->ncols;
    const char *const *fs = c->fs + ci, *const *fe = c->fe + ci;
    uint64_t nm = 0;
    size_t r = 0;
    if (kd == K_INT) {
        int64_t *out = (int64_t *)c->dst[ci] + n0;
        for (; r < nr; r++) {
            const char *p = fs[r * stride];
            const size_t len = (size_t)(fe[r * stride] - p);
            if (len == 0) nm |= UINT64_C(1) << r;
            else if (!fast_int(p, len, &out[r])) break;
        }
    } else if (kd == K_FLOAT) {
        double *out = (double *)c->dst[ci] + n0;
        for (; r < nr; r++) {
            const char *p = fs[r * stride];
            const size_t len = (size_t)(fe[r * stride] - p);
            if (len == 0) nm |= UINT64_C(1) << r;
            else if (!fast_float(p, len, &out[r])) break;
        }
    } else {
        int64_t *out = (int64_t *)c->dst[ci] + n0;
        ts_cache *tc = &c->tcache[ci];
        for (; r < nr; r++) {
            const char *p = fs[r * stride];
            const size_t len = (size_t)(fe[r * stride] - p);
            if (len == 0) nm |= UINT64_C(1) << r;
            else if (!fast_ts(tc, p, len, &out[r])) break;
        }
    }
    *nulls = nm;
    return r;
}

/* How many records the next chunk may take: the room left in the batch,
 * at most the current chunk length. */
static inline size_t chunk_size(const csv_impl *c, size_t room)
{
    return room < c->chunk_len ? room : c->chunk_len;
}

/* After a chunk that split `split` records and committed `got`: a value
 * that stopped it wasted the work on the records after it, so chunks get
 * shorter while that happens (and longer again when it stops); a chunk
 * that got nothing at all makes the next few records go record by record,
 * for longer each time, so that data the chunks never take (numbers with
 * exponents, say) costs little more than without them. */
static inline void chunk_adapt(csv_impl *c, size_t split, size_t got)
{
    if (got < split) {
        c->chunk_len = c->chunk_len / 2 > CHUNK_MIN ? c->chunk_len / 2 : CHUNK_MIN;
    } else if (got == split && c->chunk_len < c->chunk_rows) {
        c->chunk_len = c->chunk_len * 2 < c->chunk_rows ? c->chunk_len * 2 : c->chunk_rows;
    }
    if (got == 0) {
        c->chunk_wait = c->chunk_backoff;
        const size_t next = c->chunk_backoff * 2 + 1;
        c->chunk_backoff = next < CHUNK_BACKOFF_MAX ? next : CHUNK_BACKOFF_MAX;
    } else {
        c->chunk_backoff = 0;
    }
}

/* Reads a chunk of at most max records into rows n0...: *split gets the
 * plain records found, *got those committed (fewer when a value stopped
 * the chunk). */
static sf_status chunk_records(csv_impl *c, sf_batch *b, size_t n0, size_t max, size_t *split, size_t *got)
{
    const int ncols = c->ncols;
    const size_t stride = (size_t)ncols;
    size_t nr = chunk_split(c, ncols, max);
    *split = nr;
    /* Numbers and timestamps first: they may end the chunk early, and
     * nothing of the records after the end may reach the batch (strings
     * would enter the dictionaries). */
    for (int ci = 0; ci < ncols && nr > 0; ci++) {
        const int kd = c->kind[ci];
        if (kd == K_INT || kd == K_FLOAT || kd == K_TS) nr = chunk_column(c, ci, kd, n0, nr, &c->cnull[ci]);
    }
    *got = nr;
    if (nr == 0) return SF_OK;
    const uint64_t keep = nr == 64 ? UINT64_MAX : (UINT64_C(1) << nr) - 1;
    for (int ci = 0; ci < ncols; ci++) {
        const int kd = c->kind[ci];
        if (kd == K_INT || kd == K_FLOAT || kd == K_TS) {
            for (uint64_t m = c->cnull[ci] & keep; m != 0; m &= m - 1)
                SF_CALL(sf_batch_set_null(b, ci, n0 + (size_t)__builtin_ctzll(m)));
        } else if (kd == K_STR) {
            /* In record order, as record-at-a-time would: codes follow the
             * order of first appearance. */
            sf_column *col = &b->cols[ci];
            str_cache *sc = &c->scache[ci];
            for (size_t r = 0; r < nr; r++) {
                const char *p = c->fs[r * stride + (size_t)ci];
                const size_t len = (size_t)(c->fe[r * stride + (size_t)ci] - p);
                uint32_t *code = &col->code[n0 + r];
                if (len == 0) SF_CALL(sf_batch_set_null(b, ci, n0 + r));
                else if (!cache_on(sc, len) || !cache_find(c, sc, &col->dict, p, len, code))
                    SF_CALL(intern_fill(c, sc, &col->dict, p, len, code));
            }
        }
    }
    if (b->row_offset != NULL) {
        for (size_t r = 0; r < nr; r++) {
            const char *rs = c->fs[r * stride];
            const size_t nb = (size_t)(c->rnext[r] - rs);
            b->row_offset[n0 + r] = (int64_t)(c->buf_off + (size_t)(rs - c->buf));
            b->row_bytes[n0 + r] = nb > UINT32_MAX ? UINT32_MAX : (uint32_t)nb;
        }
    }
    c->pos = (size_t)(c->rnext[nr - 1] - c->buf);
    c->line += nr;
    return SF_OK;
}

/* The general path for one record: tokenizes it (reading more blocks as
 * needed) and converts it, reporting bad records. *added tells whether row n
 * was filled; *end whether the data is exhausted. */
static sf_status slow_record(sf_reader *r, csv_impl *c, sf_batch *b, size_t n, bool *added, bool *end)
{
    const sf_schema *s = &r->schema;
    const int ncols = s->ncols;
    *added = *end = false;
    csv_rec rec;
    bool got;
    SF_CALL(next_record(r, c, false, &rec, &got));
    if (!got) {
        *end = true;
        return SF_OK;
    }
    uint64_t line = c->line;
    size_t start = c->pos;
    c->pos = rec.end;
    c->line += rec.nlines;
    if (rec.len == 0 && ncols > 1) return SF_OK; /* blank line */
    if (rec.nfields != (size_t)ncols) {
        return bad_record(r, line, "%s:%" PRIu64 ": expected %d fields, found %zu", c->path, line,
                          ncols, rec.nfields);
    }
    int nnull = 0;
    for (int ci = 0; ci < ncols; ci++) {
        int kind = c->kind[ci];
        if (kind == K_SKIP || kind == K_STR) continue;
        const csv_span *f = &c->f[ci];
        if (f->len == 0) {
            c->null_cols[nnull++] = ci;
            continue;
        }
        size_t len;
        const char *p = field_text(c, f, &len);
        sf_column *col = &b->cols[ci];
        bool ok;
        switch (kind) {
        case K_INT: ok = parse_i64(p, len, &col->i64[n]); break;
        case K_FLOAT: ok = parse_f64(p, len, c->numbuf, &col->f64[n]); break;
        default: ok = sf_timestamp_parse(p, len, &col->i64[n]); break;
        }
        if (!ok) {
            char shown[80];
            show_value(p, len, shown);
            return bad_record(r, line, "%s:%" PRIu64 ":%d: column '%s': cannot parse '%s' as %s",
                              c->path, line, ci + 1, s->fields[ci].name, shown,
                              sf_type_name(col->type));
        }
    }
    SF_CALL(commit_row(c, b, n, c->str_cols, c->nstr, nnull, start, rec.end));
    *added = true;
    return SF_OK;
}

static sf_status csv_next(sf_reader *r, sf_batch *b, bool *eof)
{
    csv_impl *c = r->impl;
    const sf_schema *s = &r->schema;
    const int ncols = s->ncols;
    *eof = false;
    SF_CHECK(b->ncols == ncols, SF_ERR_ARG, "%s: batch has %d columns, reader has %d", c->path,
             b->ncols, ncols);
    c->nstr = 0;
    if (++c->gen == 0) { /* wrapped: no slot may look filled in this call */
        memset(c->slots, 0, sizeof *c->slots * c->nslots);
        c->gen = 1;
    }
    for (int i = 0; i < ncols; i++) {
        uint8_t k = K_SKIP;
        void *dst = NULL;
        if ((r->want == NULL || r->want[i] != 0) && b->cols[i].loaded) {
            switch (s->fields[i].type) {
            case SF_INT64: k = K_INT; dst = b->cols[i].i64; break;
            case SF_FLOAT64: k = K_FLOAT; dst = b->cols[i].f64; break;
            case SF_TIMESTAMP: k = K_TS; dst = b->cols[i].i64; break;
            default: k = K_STR; dst = b->cols[i].code; break;
            }
        }
        c->kind[i] = k;
        c->dst[i] = dst;
        c->scache[i].tries = c->scache[i].misses = 0;
        c->scache[i].off = false;
        if (k == K_STR) c->str_cols[c->nstr++] = i;
    }
    size_t limit = b->cap;
    if (r->cfg.batch_rows > 0 && r->cfg.batch_rows < limit) limit = r->cfg.batch_rows;
    b->first_row = c->rows;
    size_t n = 0;
    while (n < limit) {
        /* The fast paths (chunks, then record at a time), only for
         * delimiters that cannot occur in a number: files with such
         * delimiters are rare, and keeping them on the general path spares
         * the fast paths' number grammar any question about them. */
        if (c->pos < c->len && c->fast_ok) {
            if (c->chunk_wait == 0) {
                size_t split, got;
                SF_CALL(chunk_records(c, b, n, chunk_size(c, limit - n), &split, &got));
                n += got;
                chunk_adapt(c, split, got);
                if (got > 0) continue;
            } else {
                c->chunk_wait--;
            }
            int nnull = 0, npend = 0;
            size_t end = 0;
            if (fast_record(c, b, n, &nnull, &npend, &end)) {
                SF_CALL(commit_row(c, b, n, c->pend_cols, npend, nnull, c->pos, end));
                c->pos = end;
                c->line++;
                n++;
                continue;
            }
        }
        bool added, end;
        SF_CALL(slow_record(r, c, b, n, &added, &end));
        if (end) break;
        if (added) n++;
    }
    b->nrows = n;
    c->rows += n;
    *eof = n == 0;
    return SF_OK;
}

static sf_status csv_rewind(sf_reader *r)
{
    csv_impl *c = r->impl;
    r->bad_rows = 0;
    r->nbad_samples = 0;
    c->rows = 0;
    if (c->part) return seek_to(c, c->part_lo, c->part_line);
    return seek_to(c, r->data_start, c->data_line);
}

/* ---- parts (parallel reading) ---- */

/* Quote characters and line feeds in p[0..n). SSE2 (part of x86-64) when
 * available: 16 bytes per compare; else 8 at a time (SWAR: a zero byte of
 * w ^ ch*0x01.. is found without carries between bytes). */
#if defined(__SSE2__)
#include <emmintrin.h>
static void count_quotes_lines(const char *p, size_t n, uint64_t *quotes, uint64_t *lines)
{
    /* Per-byte counters (a match is -1, subtracted) over at most 255
     * blocks, then summed with SAD: no popcount, which the baseline x86-64
     * target only has as a library call. */
    const __m128i q = _mm_set1_epi8('"'), nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    uint64_t nq = 0, nn = 0;
    size_t i = 0;
    while (n - i >= 16) {
        size_t blocks = (n - i) / 16;
        if (blocks > 255) blocks = 255;
        const size_t stop = i + blocks * 16;
        __m128i aq = zero, an = zero;
        for (; i < stop; i += 16) {
            __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
            aq = _mm_sub_epi8(aq, _mm_cmpeq_epi8(v, q));
            an = _mm_sub_epi8(an, _mm_cmpeq_epi8(v, nl));
        }
        __m128i sq = _mm_sad_epu8(aq, zero), sn = _mm_sad_epu8(an, zero);
        nq += (uint64_t)_mm_cvtsi128_si64(sq) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sq, sq));
        nn += (uint64_t)_mm_cvtsi128_si64(sn) + (uint64_t)_mm_cvtsi128_si64(_mm_unpackhi_epi64(sn, sn));
    }
    for (; i < n; i++) {
        nq += p[i] == '"';
        nn += p[i] == '\n';
    }
    *quotes += nq;
    *lines += nn;
}
#else
static inline unsigned count_byte8(uint64_t w, uint64_t ch8)
{
    const uint64_t lo7 = UINT64_C(0x7f7f7f7f7f7f7f7f);
    uint64_t x = w ^ ch8;
    uint64_t t = ((x & lo7) + lo7) | x;
    return (unsigned)__builtin_popcountll(~t & ~lo7);
}

static void count_quotes_lines(const char *p, size_t n, uint64_t *quotes, uint64_t *lines)
{
    const uint64_t q8 = UINT64_C(0x0101010101010101) * (unsigned char)'"';
    const uint64_t n8 = UINT64_C(0x0101010101010101) * (unsigned char)'\n';
    uint64_t nq = 0, nn = 0;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        nq += count_byte8(w, q8);
        nn += count_byte8(w, n8);
    }
    for (; i < n; i++) {
        nq += p[i] == '"';
        nn += p[i] == '\n';
    }
    *quotes += nq;
    *lines += nn;
}
#endif

static sf_status csv_part_count(sf_reader *r, uint64_t begin, uint64_t end, uint64_t counts[2])
{
    csv_impl *c = r->impl;
    enum { BLOCK = 1 << 20 };
    char *buf = malloc(BLOCK + 8);
    SF_CHECK(buf != NULL, SF_ERR_NOMEM, "out of memory (counting a part of %s)", c->path);
    uint64_t quotes = 0, lines = 0;
    sf_status rc = SF_OK;
    for (uint64_t off = begin; off < end;) {
        size_t want = end - off < BLOCK ? (size_t)(end - off) : (size_t)BLOCK;
        ssize_t n;
        do {
            n = pread(c->fd, buf, want, (off_t)off);
        } while (n < 0 && errno == EINTR);
        if (n <= 0) {
            rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: read failed at byte %" PRIu64 ": %s", c->path,
                              off, n < 0 ? strerror(errno) : "end of file");
            break;
        }
        count_quotes_lines(buf, (size_t)n, &quotes, &lines);
        off += (uint64_t)n;
    }
    free(buf);
    counts[0] = quotes;
    counts[1] = lines;
    return rc;
}

/* B(x): the first record boundary at or after x, given the quotes and line
 * feeds in [data_start, x) (see sf_reader_set_part); *line gets the
 * physical line of the record that starts there. */
static sf_status part_boundary(sf_reader *r, uint64_t x, const uint64_t at[2], uint64_t *out, uint64_t *line)
{
    csv_impl *c = r->impl;
    const uint64_t size = r->data_start + r->data_bytes;
    *line = c->data_line + at[1];
    if (x <= r->data_start) {
        *out = r->data_start;
        *line = c->data_line;
        return SF_OK;
    }
    if (x >= size) {
        *out = size;
        return SF_OK;
    }
    bool inq = (at[0] & 1) != 0;
    enum { BLOCK = 1 << 16 };
    char buf[BLOCK];
    /* x itself is a boundary when a line feed ends the byte before it. */
    uint64_t off = x - 1;
    bool first = true;
    while (off < size) {
        size_t want = size - off < BLOCK ? (size_t)(size - off) : (size_t)BLOCK;
        ssize_t n;
        do {
            n = pread(c->fd, buf, want, (off_t)off);
        } while (n < 0 && errno == EINTR);
        SF_CHECK(n > 0, SF_ERR_IO, "%s: read failed at byte %" PRIu64 ": %s", c->path, off,
                 n < 0 ? strerror(errno) : "end of file");
        for (ssize_t i = 0; i < n; i++) {
            char ch = buf[i];
            if (first) {
                /* The byte before x: already counted in at[]. */
                first = false;
                if (ch == '\n' && !inq) {
                    *out = x;
                    return SF_OK;
                }
                continue;
            }
            if (ch == '"') {
                inq = !inq;
            } else if (ch == '\n') {
                (*line)++;
                if (!inq) {
                    *out = off + (uint64_t)i + 1;
                    return SF_OK;
                }
            }
        }
        off += (uint64_t)n;
    }
    *out = size;
    return SF_OK;
}

static sf_status csv_set_part(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                              const uint64_t at_end[2])
{
    csv_impl *c = r->impl;
    uint64_t lo, hi, lo_line, hi_line;
    SF_CALL(part_boundary(r, begin, at_begin, &lo, &lo_line));
    SF_CALL(part_boundary(r, end, at_end, &hi, &hi_line));
    if (hi < lo) hi = lo;
    c->part = true;
    c->part_lo = lo;
    c->part_hi = hi;
    c->part_line = lo_line;
    c->rows = 0;
    /* The buffer may hold bytes past the new end: start afresh. */
    c->buf_off = lo;
    c->len = c->pos = 0;
    c->eof = false;
    c->line = lo_line;
    if (lseek(c->fd, (off_t)lo, SEEK_SET) == (off_t)-1)
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: seek failed: %s", c->path, strerror(errno));
    return SF_OK;
}

/* A position is where the next record starts: v[0] its byte offset, v[1]
 * its physical line, v[2] the rows delivered so far, v[3] the bad rows
 * skipped so far (the pass's count, which the seek restores). Blank lines
 * and bad records after the last delivered row are not consumed yet: the
 * next call meets them again, with the same lines. */
static void csv_tell(const sf_reader *r, sf_reader_pos *pos)
{
    const csv_impl *c = r->impl;
    pos->v[0] = c->buf_off + c->pos;
    pos->v[1] = c->line;
    pos->v[2] = c->rows;
    pos->v[3] = r->bad_rows;
}

/* Checks what can be checked cheaply (the offset lies in the data and starts
 * a line; every record took at least one line and one byte), then moves
 * there, reusing the buffer when it still holds the offset. Nothing is read
 * or parsed between the data start and the offset, so a seek costs a stat
 * and a one-byte read whatever the offset; the tokenizer's results do not
 * depend on where a block starts, so the records that follow are the same
 * as in a pass that read up to them. */
static sf_status csv_seek(sf_reader *r, const sf_reader_pos *pos)
{
    csv_impl *c = r->impl;
    const uint64_t off = pos->v[0], line = pos->v[1], rows = pos->v[2], bad = pos->v[3];
    /* Already there (a restart at the position a fresh reader starts at):
     * nothing to check or move, which also lets such a restart read a pipe. */
    if (off == c->buf_off + c->pos && line == c->line && rows == c->rows && bad == r->bad_rows) return SF_OK;
    struct stat st;
    SF_CHECK(fstat(c->fd, &st) == 0, SF_ERR_IO, "%s: cannot stat: %s", c->path, strerror(errno));
    SF_CHECK(S_ISREG(st.st_mode), SF_ERR_ARG, "%s: cannot seek in an input that is not a regular file",
             c->path);
    const uint64_t size = (uint64_t)st.st_size;
    SF_CHECK(off >= r->data_start, SF_ERR_ARG,
             "%s: reader position (byte %" PRIu64 ") is inside the header, which ends at byte %" PRIu64,
             c->path, off, r->data_start);
    SF_CHECK(off <= size, SF_ERR_ARG,
             "%s: reader position (byte %" PRIu64 ") is past the end of the file (%" PRIu64 " bytes)",
             c->path, off, size);
    SF_CHECK(line >= c->data_line && line - c->data_line >= rows && line - c->data_line - rows >= bad &&
                 off - r->data_start >= rows && off - r->data_start - rows >= bad,
             SF_ERR_ARG,
             "%s: reader position (byte %" PRIu64 ", line %" PRIu64 ", %" PRIu64 " rows, %" PRIu64
             " bad rows) is not consistent with data that starts at byte %" PRIu64 ", line %" PRIu64,
             c->path, off, line, rows, bad, r->data_start, c->data_line);
    SF_CHECK(off > r->data_start || line == c->data_line, SF_ERR_ARG,
             "%s: reader position at the first data byte must be on line %" PRIu64 ", not %" PRIu64, c->path,
             c->data_line, line);
    if (off > r->data_start && off < size) {
        /* A record starts after a line end (the end of the file is also a
         * boundary, with or without a final line end). */
        char prev;
        ssize_t n;
        do {
            n = pread(c->fd, &prev, 1, (off_t)(off - 1));
        } while (n < 0 && errno == EINTR);
        SF_CHECK(n == 1, SF_ERR_IO, "%s: read failed at byte %" PRIu64 ": %s", c->path, off - 1,
                 n < 0 ? strerror(errno) : "end of file");
        SF_CHECK(prev == '\n', SF_ERR_ARG,
                 "%s: reader position (byte %" PRIu64 ", line %" PRIu64 ") is not the start of a record", c->path,
                 off, line);
    }
    const uint64_t old_line = c->line;
    sf_status rc = seek_to(c, off, line);
    if (rc != SF_OK) {
        c->line = old_line;
        return rc;
    }
    c->rows = rows;
    r->bad_rows = bad;
    return SF_OK;
}

static void impl_free(csv_impl *c)
{
    if (c == NULL) return;
    if (c->fd >= 0) close(c->fd);
    free(c->buf);
    free(c->f);
    free(c->scratch);
    free(c->kind);
    free(c->str_cols);
    free(c->null_cols);
    free(c->dst);
    free(c->fs);
    free(c->fe);
    free(c->rnext);
    free(c->cnull);
    free(c->pend_cols);
    free(c->scache);
    free(c->slots);
    free(c->tcache);
    free(c);
}

static void csv_destroy(sf_reader *r)
{
    impl_free(r->impl);
    r->impl = NULL;
}

static const sf__reader_ops csv_ops = {csv_next,  csv_rewind,     csv_destroy,  csv_tell,
                                       csv_seek, csv_part_count, csv_set_part, false, NULL, NULL};

/* ------------------------------------------------------------------ */
/* open: header, hints, type inference */

static sf_status grow_fields(csv_impl *c, size_t n)
{
    if (n <= c->fcap) return SF_OK;
    csv_span *f = realloc(c->f, sizeof *f * n);
    SF_CHECK(f != NULL, SF_ERR_NOMEM, "out of memory (CSV fields)");
    c->f = f;
    c->fcap = n;
    return SF_OK;
}

static bool is_blank(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r') return false;
    return true;
}

static sf_status read_header(sf_reader *r, csv_impl *c)
{
    while (!c->eof && c->len < 3) SF_CALL(refill(c));
    SF_CHECK(c->len > 0, SF_ERR_PARSE, "%s: empty file", c->path);
    if (c->len >= 3 && memcmp(c->buf, "\xEF\xBB\xBF", 3) == 0) c->pos = 3;
    csv_rec rec;
    for (;;) {
        if (c->pos == c->len && !c->eof) {
            SF_CALL(refill(c));
            continue;
        }
        SF_CHECK(c->pos < c->len, SF_ERR_PARSE, "%s:1: missing header", c->path);
        tok_rc t = tokenize(c, c->eof, &rec);
        if (t == TOK_MORE) {
            SF_CHECK(c->len - c->pos <= c->maxlen + 1, SF_ERR_PARSE,
                     "%s:1: record longer than %zu bytes (input.max_line_length)", c->path, c->maxlen);
            SF_CALL(refill(c));
            continue;
        }
        SF_CHECK(t != TOK_UNTERMINATED, SF_ERR_PARSE, "%s:1: unterminated quoted field", c->path);
        if (t == TOK_BAD_QUOTE) {
            char ch = rec.bad_char;
            if ((unsigned char)ch < 0x20 || ch == 0x7f) ch = '?';
            return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                                "%s:1:%zu: unexpected '%c' after closing quote", c->path,
                                rec.bad_field + 1, ch);
        }
        SF_CHECK(rec.len <= c->maxlen, SF_ERR_PARSE,
                 "%s:1: record longer than %zu bytes (input.max_line_length)", c->path, c->maxlen);
        if (rec.nfields > c->fcap) {
            SF_CALL(grow_fields(c, rec.nfields));
            continue; /* tokenize again, now storing every field */
        }
        break;
    }
    SF_CHECK(rec.nfields <= INT32_MAX / 2, SF_ERR_PARSE, "%s:1: too many columns", c->path);
    bool blank = rec.nfields == 1 && !(c->f[0].flags & SPAN_QUOTED) && is_blank(c->f[0].p, c->f[0].len);
    SF_CHECK(!blank, SF_ERR_PARSE, "%s:1: missing header", c->path);
    for (size_t i = 0; i < rec.nfields; i++) {
        size_t len;
        const char *p = field_text(c, &c->f[i], &len);
        char shown[80];
        show_value(p, len, shown);
        SF_CHECK(len > 0, SF_ERR_PARSE, "%s:1:%zu: empty column name", c->path, i + 1);
        SF_CHECK(memchr(p, '\0', len) == NULL, SF_ERR_PARSE,
                 "%s:1:%zu: column name '%s' contains a NUL byte", c->path, i + 1, shown);
        if (p != c->scratch) memcpy(c->scratch, p, len);
        c->scratch[len] = '\0';
        int dup = sf_schema_find(&r->schema, c->scratch);
        SF_CHECK(dup < 0, SF_ERR_PARSE, "%s:1:%zu: duplicate column name '%s' (also column %d)",
                 c->path, i + 1, shown, dup + 1);
        SF_CALL(sf_schema_add(&r->schema, c->scratch, SF_TYPE_NONE));
    }
    c->pos = rec.end;
    c->line = 1 + rec.nlines;
    c->data_line = c->line;
    r->data_start = c->buf_off + rec.end;
    return SF_OK;
}

enum { MAYBE_INT = 1, MAYBE_FLOAT = 2, MAYBE_TS = 4 };

/* Infers the type of every column that has no hint from the first
 * infer_rows good records, then goes back to the first data record. */
static sf_status infer_types(sf_reader *r, csv_impl *c)
{
    const int ncols = r->schema.ncols;
    sf_status rc = SF_OK;
    unsigned *maybe = calloc((size_t)ncols, sizeof *maybe);
    size_t *nonempty = calloc((size_t)ncols, sizeof *nonempty);
    int *open_cols = malloc(sizeof(int) * (size_t)ncols);
    SF_CHECK_GOTO(maybe && nonempty && open_cols, SF_ERR_NOMEM, done, "out of memory (CSV inference)");
    int nopen = 0;
    for (int i = 0; i < ncols; i++) {
        if (r->schema.fields[i].type != SF_TYPE_NONE) continue;
        maybe[i] = MAYBE_INT | MAYBE_FLOAT | MAYBE_TS;
        open_cols[nopen++] = i;
    }
    size_t sampled = 0;
    while (nopen > 0 && sampled < r->cfg.infer_rows) {
        csv_rec rec;
        bool got;
        SF_CALL_GOTO(next_record(r, c, true, &rec, &got), done);
        if (!got) break;
        c->pos = rec.end;
        c->line += rec.nlines;
        if (rec.len == 0 && ncols > 1) continue;
        if (rec.nfields != (size_t)ncols) continue;
        sampled++;
        for (int k = 0; k < nopen; k++) {
            int ci = open_cols[k];
            const csv_span *f = &c->f[ci];
            if (f->len == 0) continue;
            size_t len;
            const char *p = field_text(c, f, &len);
            nonempty[ci]++;
            int64_t iv;
            double dv;
            if ((maybe[ci] & MAYBE_INT) && !parse_i64(p, len, &iv)) maybe[ci] &= ~(unsigned)MAYBE_INT;
            if ((maybe[ci] & MAYBE_FLOAT) && !parse_f64(p, len, c->numbuf, &dv)) {
                maybe[ci] &= ~(unsigned)MAYBE_FLOAT;
            }
            if ((maybe[ci] & MAYBE_TS) && !sf_timestamp_parse(p, len, &iv)) maybe[ci] &= ~(unsigned)MAYBE_TS;
            if (maybe[ci] == 0) { /* decided: string; stop looking at it */
                open_cols[k--] = open_cols[--nopen];
            }
        }
    }
    for (int i = 0; i < ncols; i++) {
        sf_field *fd = &r->schema.fields[i];
        if (fd->type != SF_TYPE_NONE) continue;
        if (nonempty[i] == 0) fd->type = SF_STRING;
        else if (maybe[i] & MAYBE_INT) fd->type = SF_INT64;
        else if (maybe[i] & MAYBE_FLOAT) fd->type = SF_FLOAT64;
        else if (maybe[i] & MAYBE_TS) fd->type = SF_TIMESTAMP;
        else fd->type = SF_STRING;
    }
    SF_CALL_GOTO(seek_to(c, r->data_start, c->data_line), done);
done:
    free(maybe);
    free(nonempty);
    free(open_cols);
    return rc;
}

/* The fast path's per-column state, once the types are known: a string
 * cache for each string column (the others never reach it) and a date for
 * each column. */
static sf_status alloc_caches(const sf_reader *r, csv_impl *c)
{
    const int ncols = r->schema.ncols;
    size_t nstring = 0;
    for (int i = 0; i < ncols; i++) {
        sf_type t = r->schema.fields[i].type;
        nstring += t != SF_INT64 && t != SF_FLOAT64 && t != SF_TIMESTAMP;
    }
    c->dst = calloc((size_t)ncols, sizeof *c->dst);
    /* Chunks of 64 records, fewer for wide files (the table of field
     * starts stays within a few thousand entries). */
    c->ncols = ncols;
    c->chunk_rows = CHUNK_FIELDS / (size_t)ncols;
    if (c->chunk_rows > 64) c->chunk_rows = 64;
    if (c->chunk_rows < 1) c->chunk_rows = 1;
    c->chunk_len = c->chunk_rows;
    c->fs = malloc(sizeof *c->fs * c->chunk_rows * (size_t)ncols);
    c->fe = malloc(sizeof *c->fe * c->chunk_rows * (size_t)ncols);
    c->rnext = malloc(sizeof *c->rnext * c->chunk_rows);
    c->cnull = calloc((size_t)ncols, sizeof *c->cnull);
    c->pend_cols = calloc((size_t)ncols, sizeof *c->pend_cols);
    c->scache = calloc((size_t)ncols, sizeof *c->scache);
    c->tcache = calloc((size_t)ncols, sizeof *c->tcache);
    c->nslots = nstring * SCACHE_SLOTS;
    c->slots = calloc(c->nslots ? c->nslots : 1, sizeof *c->slots);
    SF_CHECK(c->dst && c->fs && c->fe && c->rnext && c->cnull && c->pend_cols && c->scache && c->tcache &&
                 c->slots,
             SF_ERR_NOMEM, "out of memory (CSV reader)");
    size_t k = 0;
    for (int i = 0; i < ncols; i++) {
        sf_type t = r->schema.fields[i].type;
        if (t != SF_INT64 && t != SF_FLOAT64 && t != SF_TIMESTAMP)
            c->scache[i].slot = c->slots + SCACHE_SLOTS * k++;
    }
    return SF_OK;
}

sf_status sf__csv_open(sf_reader *r)
{
    sf_status rc = SF_OK;
    const sf_input_config *cfg = &r->cfg;
    csv_impl *c = calloc(1, sizeof *c);
    SF_CHECK(c != NULL, SF_ERR_NOMEM, "out of memory (CSV reader)");
    c->fd = -1;
    SF_CHECK_GOTO(cfg->path != NULL && cfg->path[0] != '\0', SF_ERR_ARG, done, "CSV input has no path");
    c->path = cfg->path;
    c->delim = cfg->delimiter ? cfg->delimiter : ',';
    SF_CHECK_GOTO(c->delim != '"' && c->delim != '\n' && c->delim != '\r', SF_ERR_ARG, done,
                  "%s: input.delimiter cannot be a quote or a line end", c->path);
    c->fast_ok = strchr("0123456789.+-eE", c->delim) == NULL;
    c->maxlen = cfg->max_line_length ? cfg->max_line_length : (size_t)1 << 20;
    c->block = cfg->block_size ? cfg->block_size : (size_t)4 << 20;
    SF_CHECK_GOTO(c->maxlen < SIZE_MAX / 4 && c->block < SIZE_MAX / 4, SF_ERR_ARG, done,
                  "%s: input.max_line_length or input.block_size too large", c->path);
    c->cap = c->block + c->maxlen + 2;
    c->buf = calloc(c->cap + 1 + BUF_PAD, 1); /* + the sentinel, + padding for the fast path's loads */
    c->scratch = malloc(2 * (c->maxlen + 2));
    SF_CHECK_GOTO(c->buf && c->scratch, SF_ERR_NOMEM, done, "out of memory (CSV buffer of %zu bytes)",
                  c->cap);
    c->numbuf = c->scratch ? c->scratch + c->maxlen + 2 : NULL;
    SF_CALL_GOTO(grow_fields(c, 16), done);

    do {
        c->fd = open(c->path, O_RDONLY);
    } while (c->fd < 0 && errno == EINTR);
    SF_CHECK_GOTO(c->fd >= 0, SF_ERR_IO, done, "%s: cannot open: %s", c->path, strerror(errno));
    struct stat st;
    SF_CHECK_GOTO(fstat(c->fd, &st) == 0, SF_ERR_IO, done, "%s: cannot stat: %s", c->path,
                  strerror(errno));
    c->fadvise = cfg->fadvise && S_ISREG(st.st_mode);
    /* Sequential reads: the kernel may read further ahead (advice only;
     * a failure changes nothing). */
    if (c->fadvise) (void)posix_fadvise(c->fd, 0, 0, POSIX_FADV_SEQUENTIAL);

    SF_CALL_GOTO(read_header(r, c), done);
    const int ncols = r->schema.ncols;
    SF_CALL_GOTO(grow_fields(c, (size_t)ncols + 1), done);
    c->kind = malloc((size_t)ncols);
    c->str_cols = malloc(sizeof(int) * (size_t)ncols);
    c->null_cols = malloc(sizeof(int) * (size_t)ncols);
    SF_CHECK_GOTO(c->kind && c->str_cols && c->null_cols, SF_ERR_NOMEM, done,
                  "out of memory (CSV reader)");

    for (int h = 0; h < cfg->nhints; h++) {
        const sf_type_hint *hint = &cfg->hints[h];
        int ci = sf_schema_find(&r->schema, hint->name);
        SF_CHECK_GOTO(ci >= 0, SF_ERR_CONFIG, done,
                      "%s: input.schema names column '%s', which is not in the header", c->path,
                      hint->name);
        SF_CHECK_GOTO(hint->type >= SF_INT64 && hint->type <= SF_TIMESTAMP, SF_ERR_CONFIG, done,
                      "%s: input.schema: column '%s' has no valid type", c->path, hint->name);
        r->schema.fields[ci].type = hint->type;
    }
    r->impl = c;
    SF_CALL_GOTO(infer_types(r, c), done);
    SF_CALL_GOTO(alloc_caches(r, c), done);

    r->ops = &csv_ops;
    r->offsets = true;
    r->total_rows = UINT64_MAX;
    r->data_bytes = S_ISREG(st.st_mode) && (uint64_t)st.st_size > r->data_start
                        ? (uint64_t)st.st_size - r->data_start
                        : 0;
done:
    if (rc != SF_OK) {
        impl_free(c);
        r->impl = NULL;
        r->ops = NULL;
        sf_schema_fini(&r->schema);
    }
    return rc;
}
