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
                        ", where this rank's part of the file ends: a quote inside an unquoted "
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

#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
/* Up to 8 leading digits of p at once (SWAR): returns how many, their value
 * in *v. Reads 8 bytes, so the buffer is padded. */
static inline unsigned digits8(const char *p, uint64_t *v)
{
    uint64_t w;
    memcpy(&w, p, 8);
    /* A byte is a digit iff its high nibble is 3 and adding 6 keeps it 3.
     * A carry out of a non-digit byte only disturbs the bytes after it. */
    uint64_t bad = ((w & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u) |
                   (((w + 0x0606060606060606u) & 0xF0F0F0F0F0F0F0F0u) ^ 0x3030303030303030u);
    unsigned k = bad ? (unsigned)__builtin_ctzll(bad) / 8 : 8;
    if (k == 0) {
        *v = 0;
        return 0;
    }
    w <<= 8 * (8 - k); /* drop the bytes after the digits; zeros become leading 0 digits */
    w = ((w & 0x0F0F0F0F0F0F0F0Fu) * 2561) >> 8;
    w = ((w & 0x00FF00FF00FF00FFu) * 6553601) >> 16;
    *v = ((w & 0x0000FFFF0000FFFFu) * 42949672960001u) >> 32;
    return k;
}
#else
static inline unsigned digits8(const char *p, uint64_t *v)
{
    uint64_t m = 0;
    unsigned k = 0, d;
    while (k < 8 && (d = (unsigned)(unsigned char)p[k] - '0') <= 9) {
        m = m * 10 + d;
        k++;
    }
    *v = m;
    return k;
}
#endif

/* The run of digits at *pp: advances *pp past it and returns its value
 * (modulo 2^64; callers reject runs longer than 19 digits). */
static inline uint64_t digit_run(const char **pp)
{
    const char *p = *pp;
    uint64_t v, m;
    unsigned k = digits8(p, &m);
    p += k;
    while (k == 8) {
        k = digits8(p, &v);
        m = m * pow10u[k] + v;
        p += k;
    }
    *pp = p;
    return m;
}

/* ------------------------------------------------------------------ */
/* next / rewind / destroy */

/* How each column is handled in this call (the projection may change
 * between calls). */
enum { K_SKIP = 0, K_INT = 1, K_FLOAT = 2, K_TS = 3, K_STR = 4 };

/* Commits row n: interns the string fields, marks the nulls and records
 * where the record lies in the file. */
static sf_status commit_row(csv_impl *c, sf_batch *b, size_t n, int nnull, size_t start, size_t end)
{
    for (int k = 0; k < c->nstr; k++) {
        const int ci = c->str_cols[k];
        const csv_span *f = &c->f[ci];
        if (f->len == 0 && !(f->flags & SPAN_QUOTED)) {
            c->null_cols[nnull++] = ci;
            continue;
        }
        size_t len;
        const char *p = field_text(c, f, &len);
        SF_CALL(sf_dict_intern(&b->cols[ci].dict, p, len, &b->cols[ci].code[n]));
    }
    for (int k = 0; k < nnull; k++) SF_CALL(sf_batch_set_null(b, c->null_cols[k], n));
    if (b->row_offset != NULL) {
        size_t nb = end - start;
        b->row_offset[n] = (int64_t)(c->buf_off + start);
        b->row_bytes[n] = nb > UINT32_MAX ? UINT32_MAX : (uint32_t)nb;
    }
    return SF_OK;
}

/* The fast path for an ordinary record: no field starts with a quote, every
 * value is simple, the record ends inside the buffer. Fields are scanned in
 * column order and numbers are converted as they are scanned (the number
 * itself finds the end of the field). Returns false, having committed
 * nothing, for anything else: the general path then handles the record and
 * reports what is wrong with it. Relies on the '\n' sentinel at buf[len].
 * Numbers written into row n before a failure are simply overwritten later. */
static bool fast_record(csv_impl *c, sf_batch *b, size_t n, int *nnull_out, size_t *end_out)
{
    static const double pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                     1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                     1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *const s = c->buf + c->pos, *const e = c->buf + c->len;
    const char delim = c->delim;
    const int ncols = b->ncols;
    const char *p = s;
    int nnull = 0;
    for (int ci = 0; ci < ncols; ci++) {
        const char *q = p;
        const int kind = c->kind[ci];
        if (*p == '"') {
            /* A quoted string without doubled quotes or line ends. */
            if (kind != K_STR && kind != K_SKIP) return false;
            q = p + 1;
            while (*q != '"' && *q != '\n') q++;
            if (*q != '"' || q == e) return false;
            if (kind == K_STR) {
                c->f[ci].p = p + 1;
                c->f[ci].len = (size_t)(q - p - 1);
                c->f[ci].flags = SPAN_QUOTED;
            }
            q++;
            if (*q == '"') return false;
        } else if (kind == K_INT || kind == K_FLOAT) {
            bool neg = false;
            if (*q == '-' || *q == '+') {
                neg = *q == '-';
                q++;
            }
            const char *d0 = q;
            uint64_t m = digit_run(&q);
            size_t nint = (size_t)(q - d0), nfrac = 0;
            if (kind == K_FLOAT && *q == '.') {
                const char *f0 = ++q;
                uint64_t f = digit_run(&q);
                nfrac = (size_t)(q - f0);
                if (nfrac > 19) return false;
                m = m * pow10u[nfrac] + f; /* may wrap: then nint + nfrac > 19 below */
            }
            if (q == p) {
                c->null_cols[nnull++] = ci; /* empty field; the terminator is checked below */
            } else if (kind == K_INT) {
                if (nint == 0 || nint > 18) return false; /* 19 digits: range check is slow path */
                b->cols[ci].i64[n] = neg ? -(int64_t)m : (int64_t)m;
            } else {
                /* Exact integer below 2^53 divided by an exact power of ten:
                 * one rounding, the same double strtod gives. */
                if (nint + nfrac == 0 || nint + nfrac > 19 || nfrac > 22 || m > ((uint64_t)1 << 53) ||
                    *q == 'e' || *q == 'E')
                    return false;
                double v = (double)m / pow10[nfrac];
                b->cols[ci].f64[n] = neg ? -v : v;
            }
        } else {
            while (*q != delim && *q != '\n') q++;
            if (kind == K_TS) {
                const char *fe = q;
                if (ci + 1 == ncols && fe > p && fe[-1] == '\r') fe--;
                if (fe == p) c->null_cols[nnull++] = ci;
                else if (!sf_timestamp_parse(p, (size_t)(fe - p), &b->cols[ci].i64[n])) return false;
            } else if (kind == K_STR) {
                const char *fe = q;
                if (ci + 1 == ncols && fe > p && fe[-1] == '\r') fe--;
                c->f[ci].p = p;
                c->f[ci].len = (size_t)(fe - p);
                c->f[ci].flags = 0;
            }
        }
        if (q == e) return false;
        if (ci + 1 < ncols) {
            if (*q != delim) return false;
            p = q + 1;
            continue;
        }
        size_t len;
        if (*q == '\n') {
            len = (size_t)(q - s);
            if (len > 0 && q[-1] == '\r') len--;
            *end_out = (size_t)(q + 1 - c->buf);
        } else if (*q == '\r' && q + 1 < e && q[1] == '\n') {
            len = (size_t)(q - s);
            *end_out = (size_t)(q + 2 - c->buf);
        } else {
            return false;
        }
        if (len > c->maxlen || (len == 0 && ncols > 1)) return false;
        break;
    }
    *nnull_out = nnull;
    return true;
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
    SF_CALL(commit_row(c, b, n, nnull, start, rec.end));
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
    for (int i = 0; i < ncols; i++) {
        uint8_t k = K_SKIP;
        if ((r->want == NULL || r->want[i] != 0) && b->cols[i].loaded) {
            switch (s->fields[i].type) {
            case SF_INT64: k = K_INT; break;
            case SF_FLOAT64: k = K_FLOAT; break;
            case SF_TIMESTAMP: k = K_TS; break;
            default: k = K_STR; break;
            }
        }
        c->kind[i] = k;
        if (k == K_STR) c->str_cols[c->nstr++] = i;
    }
    size_t limit = b->cap;
    if (r->cfg.batch_rows > 0 && r->cfg.batch_rows < limit) limit = r->cfg.batch_rows;
    b->first_row = c->rows;
    size_t n = 0;
    while (n < limit) {
        if (c->pos < c->len) {
            int nnull = 0;
            size_t end = 0;
            /* The fast path scans numbers without looking for the
             * delimiter inside them: only for delimiters that cannot be
             * part of a number. */
            if (c->fast_ok && fast_record(c, b, n, &nnull, &end)) {
                SF_CALL(commit_row(c, b, n, nnull, c->pos, end));
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
    const __m128i q = _mm_set1_epi8('"'), nl = _mm_set1_epi8('\n');
    uint64_t nq = 0, nn = 0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        __m128i v = _mm_loadu_si128((const __m128i *)(const void *)(p + i));
        nq += (uint64_t)__builtin_popcount((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, q)));
        nn += (uint64_t)__builtin_popcount((unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(v, nl)));
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
    free(c);
}

static void csv_destroy(sf_reader *r)
{
    impl_free(r->impl);
    r->impl = NULL;
}

static const sf__reader_ops csv_ops = {csv_next,  csv_rewind,     csv_destroy, csv_tell,
                                       csv_seek, csv_part_count, csv_set_part};

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
    c->buf = calloc(c->cap + 1 + 8, 1); /* + the sentinel, + padding for 8-byte loads */
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
