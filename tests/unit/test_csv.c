/* CSV reader and writer through the public reader/writer API.
 *
 * Each test writes a small CSV file from a string into a temporary directory,
 * reads it with sf_reader_open/sf_reader_next and compares what came back
 * with an expectation written by hand in the test (or, for floats, with
 * strtod on the same text). Rows are rendered as text for the comparison:
 * fields joined with '|', strings in single quotes, NULL for nulls, '-' for
 * columns that were not loaded, int64 in decimal, float64 as %.17g and
 * timestamps as '@' plus microseconds since the epoch. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "io/reader_impl.h" /* SF__BAD_ROW_SAMPLES only; everything else is public API */
#include "shardflow/buf.h"
#include "shardflow/io.h"

/* How many bad rows a reader keeps with their messages. */
#define SF__BAD_ROW_SAMPLES_TEST SF__BAD_ROW_SAMPLES

static char g_dir[256];
static char *g_files[256];
static int g_nfiles;

/* Writes data into the temporary directory; returns the path (kept until
 * the group teardown). */
static const char *write_file(const char *name, const char *data, size_t len)
{
    char *path = malloc(strlen(g_dir) + strlen(name) + 2);
    assert_non_null(path);
    sprintf(path, "%s/%s", g_dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
    int i;
    for (i = 0; i < g_nfiles; i++)
        if (strcmp(g_files[i], path) == 0) break;
    if (i < g_nfiles) {
        free(path);
        return g_files[i];
    }
    assert_true(g_nfiles < 256);
    g_files[g_nfiles++] = path;
    return path;
}

static const char *write_str(const char *name, const char *data)
{
    return write_file(name, data, strlen(data));
}

static sf_input_config csv_cfg(const char *path)
{
    sf_input_config c;
    sf_input_config_defaults(&c);
    c.format = SF_INPUT_CSV;
    c.path = (char *)path; /* borrowed: never passed to sf_input_config_fini */
    return c;
}

static void render_batch(const sf_batch *b, sf_buf *out)
{
    char tmp[64];
    for (size_t r = 0; r < b->nrows; r++) {
        for (int c = 0; c < b->ncols; c++) {
            const sf_column *col = &b->cols[c];
            if (c > 0) assert_int_equal(sf_buf_append(out, "|", 1), SF_OK);
            if (!col->loaded) {
                assert_int_equal(sf_buf_append(out, "-", 1), SF_OK);
                continue;
            }
            if (sf_col_is_null(col, r)) {
                assert_int_equal(sf_buf_append(out, "NULL", 4), SF_OK);
                continue;
            }
            switch (col->type) {
            case SF_INT64: snprintf(tmp, sizeof tmp, "%" PRId64, col->i64[r]); break;
            case SF_FLOAT64: snprintf(tmp, sizeof tmp, "%.17g", col->f64[r]); break;
            case SF_TIMESTAMP: snprintf(tmp, sizeof tmp, "@%" PRId64, col->i64[r]); break;
            case SF_STRING: {
                size_t len;
                const char *s = sf_dict_str(&col->dict, col->code[r], &len);
                assert_int_equal(sf_buf_append(out, "'", 1), SF_OK);
                assert_int_equal(sf_buf_append(out, s, len), SF_OK);
                assert_int_equal(sf_buf_append(out, "'", 1), SF_OK);
                tmp[0] = '\0';
                break;
            }
            default: fail_msg("bad column type %d", (int)col->type);
            }
            assert_int_equal(sf_buf_append(out, tmp, strlen(tmp)), SF_OK);
        }
        assert_int_equal(sf_buf_append(out, "\n", 1), SF_OK);
    }
}

/* Reads every batch of r into text; returns the status of the first failing
 * call (the text holds the rows of the batches before it). */
static sf_status render_all(sf_reader *r, sf_buf *out)
{
    sf_batch b;
    sf_status rc = sf_reader_batch_init(r, &b);
    if (rc != SF_OK) return rc;
    uint64_t expect_first = 0;
    for (;;) {
        bool eof = true;
        rc = sf_reader_next(r, &b, &eof);
        if (rc != SF_OK) break;
        assert_int_equal(eof, b.nrows == 0);
        if (eof) break;
        assert_int_equal(b.first_row, expect_first);
        expect_first += b.nrows;
        render_batch(&b, out);
    }
    sf_batch_fini(&b);
    assert_int_equal(sf_buf_reserve(out, 1), SF_OK);
    out->data[out->len] = '\0';
    return rc;
}

/* Opens, reads all and returns the rendered rows (caller frees). */
static char *read_text_cfg(const sf_input_config *cfg)
{
    sf_reader *r = NULL;
    sf_status rc = sf_reader_open(cfg, &r);
    if (rc != SF_OK) fail_msg("open failed: %s", sf_error_message());
    sf_buf out;
    sf_buf_init(&out);
    rc = render_all(r, &out);
    if (rc != SF_OK) fail_msg("read failed: %s", sf_error_message());
    sf_reader_destroy(&r);
    assert_null(r);
    out.data[out.len] = '\0';
    return (char *)out.data;
}

static char *read_text(const char *path)
{
    sf_input_config cfg = csv_cfg(path);
    return read_text_cfg(&cfg);
}

/* Expects reading to fail with code and exactly the message path + suffix. */
static void expect_error_cfg(const sf_input_config *cfg, sf_status code, const char *suffix)
{
    char expect[1024];
    snprintf(expect, sizeof expect, "%s%s", cfg->path, suffix);
    sf_error_clear();
    sf_reader *r = NULL;
    sf_status rc = sf_reader_open(cfg, &r);
    if (rc == SF_OK) {
        sf_buf out;
        sf_buf_init(&out);
        rc = render_all(r, &out);
        sf_buf_fini(&out);
        sf_reader_destroy(&r);
    } else {
        assert_null(r);
    }
    assert_int_equal(rc, code);
    assert_string_equal(sf_error_message(), expect);
}

static void expect_error(const char *name, const char *content, sf_status code, const char *suffix)
{
    sf_input_config cfg = csv_cfg(write_str(name, content));
    expect_error_cfg(&cfg, code, suffix);
}

static void check_types(sf_reader *r, const char *names, const sf_type *types)
{
    const sf_schema *s = sf_reader_schema(r);
    char buf[512] = "";
    for (int i = 0; i < s->ncols; i++) {
        if (i) strcat(buf, ",");
        strcat(buf, s->fields[i].name);
    }
    assert_string_equal(buf, names);
    for (int i = 0; i < s->ncols; i++) assert_int_equal(s->fields[i].type, types[i]);
}

/* 2024-01-02T03:04:05Z: 19724 days after the epoch plus 3h4m5s. */
#define TS_2024_01_02_030405 (INT64_C(19724) * 86400 * 1000000 + INT64_C(11045) * 1000000)

/* ------------------------------------------------------------------ */

static void test_basic_types(void **state)
{
    (void)state;
    const char *path = write_str("basic.csv",
                                 "id,latency_ms,host,ts\n"
                                 "1,2.5,web-1,2024-01-02T03:04:05\n"
                                 "-7,10,db,2024-01-02 03:04:05.5\n"
                                 "42,-0.125,\"q,uoted\",1970-01-01T00:00:00\n");
    sf_input_config cfg = csv_cfg(path);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_type types[] = {SF_INT64, SF_FLOAT64, SF_STRING, SF_TIMESTAMP};
    check_types(r, "id,latency_ms,host,ts", types);
    assert_int_equal(sf_reader_data_start(r), strlen("id,latency_ms,host,ts\n"));
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(sf_reader_data_bytes(r), (uint64_t)st.st_size - strlen("id,latency_ms,host,ts\n"));
    assert_int_equal(sf_reader_total_rows(r), UINT64_MAX);
    sf_reader_destroy(&r);

    char *text = read_text(path);
    char expect[512];
    snprintf(expect, sizeof expect,
             "1|2.5|'web-1'|@%" PRId64 "\n"
             "-7|10|'db'|@%" PRId64 "\n"
             "42|-0.125|'q,uoted'|@0\n",
             TS_2024_01_02_030405, TS_2024_01_02_030405 + 500000);
    assert_string_equal(text, expect);
    free(text);
}

static void test_quoting(void **state)
{
    (void)state;
    const char *path = write_str("quoting.csv",
                                 "\"na,me\",\"say \"\"hi\"\"\",plain\n"
                                 "\"a,b\",\"he said \"\"no\"\"\",x\n"
                                 "\"line1\nline2\",\"\",\n"
                                 "\"\"\"\",\"a\"\"\",\"\"\"b\"\n"
                                 "ab\"c,\"\"\"\"\"\",\"\r\n\"\n");
    sf_input_config cfg = csv_cfg(path);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_type types[] = {SF_STRING, SF_STRING, SF_STRING};
    check_types(r, "na,me,say \"hi\",plain", types);
    sf_reader_destroy(&r);
    char *text = read_text(path);
    /* "" is the empty string, an unquoted empty field is null; a quote
     * inside an unquoted field is data. */
    assert_string_equal(text, "'a,b'|'he said \"no\"'|'x'\n"
                              "'line1\nline2'|''|NULL\n"
                              "'\"'|'a\"'|'\"b'\n"
                              "'ab\"c'|'\"\"'|'\r\n'\n");
    free(text);
}

static void test_crlf_and_last_line(void **state)
{
    (void)state;
    char *text = read_text(write_str("crlf.csv", "a,b\r\n1,x\r\n2,\"y\r\nz\"\r\n3,w"));
    assert_string_equal(text, "1|'x'\n2|'y\r\nz'\n3|'w'\n");
    free(text);
    text = read_text(write_str("crlf_end.csv", "a,b\r\n1,x\r\n3,\"w\"\r\n"));
    assert_string_equal(text, "1|'x'\n3|'w'\n");
    free(text);
    /* A lone CR is data, not a line end. */
    text = read_text(write_str("cr.csv", "a,b\n1,x\ry\n"));
    assert_string_equal(text, "1|'x\ry'\n");
    free(text);
    /* A header alone: no rows, columns default to string. */
    sf_input_config cfg = csv_cfg(write_str("header_only.csv", "a,b"));
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_type types[] = {SF_STRING, SF_STRING};
    check_types(r, "a,b", types);
    assert_int_equal(sf_reader_data_start(r), 3);
    assert_int_equal(sf_reader_data_bytes(r), 0);
    sf_reader_destroy(&r);
    text = read_text(cfg.path);
    assert_string_equal(text, "");
    free(text);
}

static void test_custom_delimiter(void **state)
{
    (void)state;
    sf_input_config cfg = csv_cfg(write_str("semi.csv", "a;b;c\n1,5;x,y;\"p;q\"\n2;3;\n"));
    cfg.delimiter = ';';
    char *text = read_text_cfg(&cfg);
    /* "1,5" is not a number: column a is a string column. */
    assert_string_equal(text, "'1,5'|'x,y'|'p;q'\n'2'|'3'|NULL\n");
    free(text);
    cfg = csv_cfg(write_str("tab.tsv", "a\tb\n1\t2.5\n3\t4\n"));
    cfg.delimiter = '\t';
    text = read_text_cfg(&cfg);
    assert_string_equal(text, "1|2.5\n3|4\n");
    free(text);
    cfg.delimiter = '"';
    expect_error_cfg(&cfg, SF_ERR_ARG, ": input.delimiter cannot be a quote or a line end");
}

static void test_bom_and_blank_lines(void **state)
{
    (void)state;
    char *text = read_text(write_str("bom.csv", "\xEF\xBB\xBF" "a,b\n1,2\n\n3,4\n\r\n"));
    assert_string_equal(text, "1|2\n3|4\n");
    free(text);
    /* With one column a blank line is a null value. */
    text = read_text(write_str("one_col.csv", "x\n1\n\n3\n"));
    assert_string_equal(text, "1\nNULL\n3\n");
    free(text);
}

/* Records with embedded newlines read with tiny blocks, so that every
 * record straddles block boundaries; offsets and sizes of each record are
 * checked against the raw text. */
static void test_block_boundaries(void **state)
{
    (void)state;
    const char *header = "id,note,v\n";
    const char *recs[] = {
        "1,\"multi\nline\nnote\",1.5\n",
        "2,plain,2\r\n",
        "3,\"with \"\"quotes\"\", and, commas\",3.25\n",
        "4,\"\n\",4\n",
        "5,\"ends with quote\"\"\",5\n",
        "6,last,6",
    };
    const int nrec = 6;
    char content[1024];
    strcpy(content, header);
    for (int i = 0; i < nrec; i++) strcat(content, recs[i]);
    const char *path = write_str("blocks.csv", content);
    const char *expect = "1|'multi\nline\nnote'|1.5\n"
                         "2|'plain'|2\n"
                         "3|'with \"quotes\", and, commas'|3.25\n"
                         "4|'\n'|4\n"
                         "5|'ends with quote\"'|5\n"
                         "6|'last'|6\n";
    for (size_t block = 1; block <= 48; block++) {
        sf_input_config cfg = csv_cfg(path);
        cfg.block_size = block;
        cfg.max_line_length = 64;
        cfg.batch_rows = 4;
        sf_reader *r = NULL;
        assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
        sf_type types[] = {SF_INT64, SF_STRING, SF_FLOAT64};
        check_types(r, "id,note,v", types);
        assert_int_equal(sf_reader_data_start(r), strlen(header));
        sf_batch b;
        assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
        sf_buf out;
        sf_buf_init(&out);
        int rec = 0;
        size_t nbatches = 0;
        for (;;) {
            bool eof;
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            if (eof) break;
            nbatches++;
            assert_true(b.nrows <= 4);
            assert_int_equal(b.first_row, (uint64_t)rec);
            for (size_t i = 0; i < b.nrows; i++, rec++) {
                size_t off = strlen(header);
                for (int k = 0; k < rec; k++) off += strlen(recs[k]);
                assert_int_equal(b.row_offset[i], (int64_t)off);
                assert_int_equal(b.row_bytes[i], strlen(recs[rec]));
            }
            render_batch(&b, &out);
        }
        assert_int_equal(rec, nrec);
        assert_int_equal(nbatches, 2);
        assert_int_equal(sf_buf_append(&out, "", 1), SF_OK);
        assert_string_equal((char *)out.data, expect);
        sf_buf_fini(&out);
        sf_batch_fini(&b);
        sf_reader_destroy(&r);
    }
}

static void test_nulls(void **state)
{
    (void)state;
    const char *path = write_str("nulls.csv",
                                 "i,f,s,t\n"
                                 "1,1.5,a,2024-01-02T03:04:05\n"
                                 ",,,\n"
                                 "\"\",\"\",\"\",\"\"\n"
                                 "3,,b,\n");
    sf_input_config cfg = csv_cfg(path);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_type types[] = {SF_INT64, SF_FLOAT64, SF_STRING, SF_TIMESTAMP};
    check_types(r, "i,f,s,t", types);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_int_equal(b.nrows, 4);
    /* Nulls per column, counted by hand from the text above. */
    assert_int_equal(b.cols[0].nulls, 2);
    assert_int_equal(b.cols[1].nulls, 3);
    assert_int_equal(b.cols[2].nulls, 1); /* "" is the empty string */
    assert_int_equal(b.cols[3].nulls, 3);
    sf_buf out;
    sf_buf_init(&out);
    render_batch(&b, &out);
    assert_int_equal(sf_buf_append(&out, "", 1), SF_OK);
    char expect[256];
    snprintf(expect, sizeof expect,
             "1|1.5|'a'|@%" PRId64 "\nNULL|NULL|NULL|NULL\nNULL|NULL|''|NULL\n3|NULL|'b'|NULL\n",
             TS_2024_01_02_030405);
    assert_string_equal((char *)out.data, expect);
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_true(eof);
    assert_int_equal(b.nrows, 0);
    sf_buf_fini(&out);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
}

static void test_inference(void **state)
{
    (void)state;
    const char *path = write_str("infer.csv",
                                 "int,big,mixed,sci,spaced,ts,tsfrac,empty,word,signs,inf\n"
                                 "1,9223372036854775807,1,1e3,1,2024-01-02T03:04:05,2024-01-02 03:04:05.000001,,a,+5,inf\n"
                                 "-2,9223372036854775808,2.5,-2.5E-3, 2,1970-01-01T00:00:00,1970-01-01T00:00:00.1,,1,-0,-inf\n"
                                 ",,,.5,,,,,,007,nan\n");
    sf_input_config cfg = csv_cfg(path);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_type types[] = {SF_INT64,     SF_FLOAT64,   SF_FLOAT64, SF_FLOAT64, SF_STRING, SF_TIMESTAMP,
                       SF_TIMESTAMP, SF_STRING,    SF_STRING,  SF_INT64,   SF_FLOAT64};
    check_types(r, "int,big,mixed,sci,spaced,ts,tsfrac,empty,word,signs,inf", types);
    sf_reader_destroy(&r);
    char *text = read_text(path);
    char expect[1024];
    snprintf(expect, sizeof expect,
             "1|9.2233720368547758e+18|1|1000|'1'|@%" PRId64 "|@%" PRId64 "|NULL|'a'|5|inf\n"
             "-2|9.2233720368547758e+18|2.5|-0.0025000000000000001|' 2'|@0|@100000|NULL|'1'|0|-inf\n"
             "NULL|NULL|NULL|0.5|NULL|NULL|NULL|NULL|NULL|7|nan\n",
             TS_2024_01_02_030405, TS_2024_01_02_030405 + 1);
    assert_string_equal(text, expect);
    free(text);
}

/* Inference looks at the first infer_rows records only; the rest must
 * match the inferred type, and inference loses no rows. */
static void test_infer_rows_limit(void **state)
{
    (void)state;
    const char *path = write_str("infer_limit.csv", "a,b\n1,x\n2,y\nabc,z\n");
    sf_input_config cfg = csv_cfg(path);
    cfg.infer_rows = 2;
    expect_error_cfg(&cfg, SF_ERR_PARSE, ":4:1: column 'a': cannot parse 'abc' as int64");
    cfg.infer_rows = 3;
    char *text = read_text_cfg(&cfg);
    assert_string_equal(text, "'1'|'x'\n'2'|'y'\n'abc'|'z'\n");
    free(text);
    /* Inference with tiny blocks reads past several refills, then restarts. */
    cfg.infer_rows = 1000;
    cfg.block_size = 3;
    cfg.max_line_length = 16;
    text = read_text_cfg(&cfg);
    assert_string_equal(text, "'1'|'x'\n'2'|'y'\n'abc'|'z'\n");
    free(text);
}

static void test_hints(void **state)
{
    (void)state;
    const char *path = write_str("hints.csv", "zip,n,when,x\n007,1,2024-01-02T03:04:05,1\n010,2,,2\n");
    sf_type_hint hints[] = {
        {(char *)"zip", SF_STRING}, {(char *)"n", SF_FLOAT64}, {(char *)"when", SF_STRING}};
    sf_input_config cfg = csv_cfg(path);
    cfg.hints = hints;
    cfg.nhints = 3;
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_type types[] = {SF_STRING, SF_FLOAT64, SF_STRING, SF_INT64};
    check_types(r, "zip,n,when,x", types);
    sf_reader_destroy(&r);
    char *text = read_text_cfg(&cfg);
    assert_string_equal(text, "'007'|1|'2024-01-02T03:04:05'|1\n'010'|2|NULL|2\n");
    free(text);

    sf_type_hint bad[] = {{(char *)"zip", SF_INT64}, {(char *)"nope", SF_INT64}};
    cfg.hints = bad;
    cfg.nhints = 2;
    expect_error_cfg(&cfg, SF_ERR_CONFIG, ": input.schema names column 'nope', which is not in the header");
    /* A hint forces the type even where the data does not fit it. */
    sf_type_hint ts[] = {{(char *)"zip", SF_TIMESTAMP}};
    cfg.hints = ts;
    cfg.nhints = 1;
    expect_error_cfg(&cfg, SF_ERR_PARSE, ":2:1: column 'zip': cannot parse '007' as timestamp");
}

static void test_int64_limits(void **state)
{
    (void)state;
    sf_type_hint h[] = {{(char *)"v", SF_INT64}};
    sf_input_config cfg = csv_cfg(write_str("ilimits.csv",
                                            "v\n9223372036854775807\n-9223372036854775808\n"
                                            "00000000000000000000000042\n-0\n+12\n"));
    cfg.hints = h;
    cfg.nhints = 1;
    char *text = read_text_cfg(&cfg);
    assert_string_equal(text, "9223372036854775807\n-9223372036854775808\n42\n0\n12\n");
    free(text);
    /* Integers of every length from 1 to 19 digits, with and without signs
     * and leading zeros, against strtoll. */
    sf_buf csv;
    sf_buf_init(&csv);
    assert_int_equal(sf_buf_printf(&csv, "v,w\n"), SF_OK);
    char texts[2000][32];
    uint64_t rng = 88172645463325252u;
    for (int i = 0; i < 2000; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        int nd = 1 + i % 19;
        size_t k = 0;
        if (rng % 3 == 0) texts[i][k++] = '-';
        else if (rng % 7 == 0) texts[i][k++] = '+';
        for (int d = 0; d < nd; d++) {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            char digit = (char)('0' + rng % 10);
            if (d == 0 && nd == 19 && digit == '9') digit = '8'; /* stay in range */
            texts[i][k++] = digit;
        }
        texts[i][k] = '\0';
        assert_int_equal(sf_buf_printf(&csv, "%s,%d\n", texts[i], i), SF_OK);
    }
    cfg = csv_cfg(write_file("ints.csv", (char *)csv.data, csv.len));
    sf_buf_fini(&csv);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_schema(r)->fields[0].type, SF_INT64);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_int_equal(b.nrows, 2000);
    for (int i = 0; i < 2000; i++) {
        errno = 0;
        long long want = strtoll(texts[i], NULL, 10);
        assert_int_equal(errno, 0);
        if (b.cols[0].i64[i] != want) fail_msg("'%s': got %" PRId64, texts[i], b.cols[0].i64[i]);
        assert_int_equal(b.cols[1].i64[i], i);
    }
    sf_batch_fini(&b);
    sf_reader_destroy(&r);

    const char *bad[] = {"9223372036854775808", "-9223372036854775809", "99999999999999999999",
                         "1.0", "1e3", "--1", "+", "-", "0x10", " 1", "1 "};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char content[128], suffix[160];
        snprintf(content, sizeof content, "v\n1\n%s\n", bad[i]);
        snprintf(suffix, sizeof suffix, ":3:1: column 'v': cannot parse '%s' as int64", bad[i]);
        cfg = csv_cfg(write_str("ilimits_bad.csv", content));
        cfg.hints = h;
        cfg.nhints = 1;
        expect_error_cfg(&cfg, SF_ERR_PARSE, suffix);
    }
}

/* Every float is compared bit for bit with strtod on the same text: the
 * fast path for simple decimals and the fallback must both round exactly. */
static void test_float_parsing_matches_strtod(void **state)
{
    (void)state;
    static const char *fixed[] = {
        "0.1", "0.2", "0.3", "1.7976931348623157e308", "2.2250738585072011e-308", "4.9e-324",
        "9007199254740993", "9007199254740992", "123456789012345678901234567890", "1e23",
        "8.0e22", "1e22", "1e-22", "3.14159265358979323846264338327950288", "-0", "-0.0",
        "0e999", "1e309", "1e-400", ".5", "5.", "-.5e+2", "+1.5", "0.000000000000000000000000001",
        "12345678901234567890e-20", "1234567.891", "1E5", "100000000000000000000000",
        "0.30000000000000004", "2.5e-3",
    };
    const size_t nfixed = sizeof fixed / sizeof fixed[0];
    const size_t nrand = 4000;
    char **texts = calloc(nfixed + nrand, sizeof *texts);
    assert_non_null(texts);
    sf_buf csv;
    sf_buf_init(&csv);
    assert_int_equal(sf_buf_printf(&csv, "x\n"), SF_OK);
    uint64_t rng = 0x9E3779B97F4A7C15u;
    for (size_t i = 0; i < nfixed + nrand; i++) {
        char t[64];
        if (i < nfixed) {
            snprintf(t, sizeof t, "%s", fixed[i]);
        } else {
            size_t k = 0;
            rng = rng * 6364136223846793005u + 1442695040888963407u;
            uint64_t bits = rng >> 11;
            if (bits & 1) t[k++] = '-';
            int nint = (int)((bits >> 1) % 12), nfrac = (int)((bits >> 5) % 14);
            if (nint + nfrac == 0) nint = 1;
            for (int d = 0; d < nint; d++) {
                rng = rng * 6364136223846793005u + 1442695040888963407u;
                t[k++] = (char)('0' + (rng >> 33) % 10);
            }
            if (nfrac || (bits >> 9) % 3 == 0) t[k++] = '.';
            for (int d = 0; d < nfrac; d++) {
                rng = rng * 6364136223846793005u + 1442695040888963407u;
                t[k++] = (char)('0' + (rng >> 33) % 10);
            }
            t[k] = '\0';
            if ((bits >> 12) % 3 == 0) {
                int e = (int)((bits >> 14) % 81) - 40;
                if ((bits >> 21) % 16 == 0) e = (int)((bits >> 14) % 700) - 350;
                snprintf(t + k, sizeof t - k, "e%d", e);
            }
        }
        texts[i] = strdup(t);
        assert_non_null(texts[i]);
        assert_int_equal(sf_buf_printf(&csv, "%s\n", t), SF_OK);
    }
    sf_input_config cfg = csv_cfg(write_file("floats.csv", (char *)csv.data, csv.len));
    sf_type_hint h[] = {{(char *)"x", SF_FLOAT64}};
    cfg.hints = h;
    cfg.nhints = 1;
    cfg.batch_rows = 1000;
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    size_t row = 0;
    for (;;) {
        bool eof;
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        for (size_t i = 0; i < b.nrows; i++, row++) {
            double want = strtod(texts[row], NULL);
            double got = b.cols[0].f64[i];
            if (memcmp(&want, &got, sizeof want) != 0)
                fail_msg("'%s': got %a, strtod gives %a", texts[row], got, want);
        }
    }
    assert_int_equal(row, nfixed + nrand);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    for (size_t i = 0; i < nfixed + nrand; i++) free(texts[i]);
    free(texts);
    sf_buf_fini(&csv);

    const char *bad[] = {"abc", "1.2.3", "0x1p3", " 1.5", "1.5 ", "1e", "1e+", ".", "-", "e5",
                         "infinity", "NaN", "1,5"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char content[128], suffix[160];
        snprintf(content, sizeof content, "n,latency_ms\n1,2\n2,\"%s\"\n", bad[i]);
        snprintf(suffix, sizeof suffix, ":3:2: column 'latency_ms': cannot parse '%s' as float64",
                 bad[i]);
        cfg = csv_cfg(write_str("fbad.csv", content));
        sf_type_hint hl[] = {{(char *)"latency_ms", SF_FLOAT64}};
        cfg.hints = hl;
        cfg.nhints = 1;
        expect_error_cfg(&cfg, SF_ERR_PARSE, suffix);
    }
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("empty.csv", "", SF_ERR_PARSE, ": empty file");
    expect_error("blank_first.csv", "\na,b\n1,2\n", SF_ERR_PARSE, ":1: missing header");
    expect_error("blank_ws.csv", "  \t\r\n1,2\n", SF_ERR_PARSE, ":1: missing header");
    expect_error("dup.csv", "a,b,a\n1,2,3\n", SF_ERR_PARSE, ":1:3: duplicate column name 'a' (also column 1)");
    expect_error("dupq.csv", "\"a\",\"b\",\"b\"\n", SF_ERR_PARSE,
                 ":1:3: duplicate column name 'b' (also column 2)");
    expect_error("emptyname.csv", "a,,c\n1,2,3\n", SF_ERR_PARSE, ":1:2: empty column name");
    expect_error("emptyname2.csv", "a,b,\n", SF_ERR_PARSE, ":1:3: empty column name");
    expect_error("short.csv", "a,b,c\n1,2,3\n4,5\n", SF_ERR_PARSE, ":3: expected 3 fields, found 2");
    expect_error("long.csv", "a,b,c\n1,2,3\n4,5,6,7\n", SF_ERR_PARSE, ":3: expected 3 fields, found 4");
    /* The line is the physical line where the record starts. */
    expect_error("lines.csv", "a,b\n\"x\ny\",1\n\"p\r\nq\",2\nz\n", SF_ERR_PARSE,
                 ":6: expected 2 fields, found 1");
    expect_error("hdr_multiline.csv", "\"a\nb\",c\n1,2\n3\n", SF_ERR_PARSE, ":4: expected 2 fields, found 1");
    {
        sf_type_hint h[] = {{(char *)"latency_ms", SF_FLOAT64}};
        sf_input_config cfg = csv_cfg(write_str("badfloat.csv", "host,latency_ms\na,1.5\nb,abc\n"));
        cfg.hints = h;
        cfg.nhints = 1;
        expect_error_cfg(&cfg, SF_ERR_PARSE, ":3:2: column 'latency_ms': cannot parse 'abc' as float64");
        /* Long values are shortened in the message. */
        char content[256], suffix[256];
        const char *v = "x123456789012345678901234567890123456789012345678901234567890123456789";
        snprintf(content, sizeof content, "host,latency_ms\na,%s\n", v);
        snprintf(suffix, sizeof suffix, ":2:2: column 'latency_ms': cannot parse '%.64s...' as float64", v);
        cfg.path = (char *)write_str("badfloat_long.csv", content);
        expect_error_cfg(&cfg, SF_ERR_PARSE, suffix);
    }
    {
        sf_type_hint h[] = {{(char *)"t", SF_TIMESTAMP}};
        sf_input_config cfg = csv_cfg(write_str("badts.csv", "t\n2024-01-02T03:04:05\n2024-02-30T00:00:00\n"));
        cfg.hints = h;
        cfg.nhints = 1;
        expect_error_cfg(&cfg, SF_ERR_PARSE, ":3:1: column 't': cannot parse '2024-02-30T00:00:00' as timestamp");
    }
    expect_error("unterminated.csv", "a,b\n1,2\n3,\"abc\n4,5\n", SF_ERR_PARSE, ":3: unterminated quoted field");
    expect_error("unterminated_hdr.csv", "a,\"b\n1,2\n", SF_ERR_PARSE, ":1: unterminated quoted field");
    expect_error("afterquote.csv", "a,b\n1,\"x\"y\n", SF_ERR_PARSE, ":2:2: unexpected 'y' after closing quote");
    {
        /* Records of exactly 64 bytes pass (LF or CRLF), 65 bytes fail. */
        char content[512], r64[80], r65[80];
        memset(r64, 'x', 64);
        r64[64] = '\0';
        memset(r65, 'y', 65);
        r65[65] = '\0';
        snprintf(content, sizeof content, "a\n%s\r\n%s\n%s\n", r64, r64, r65);
        sf_input_config cfg = csv_cfg(write_str("overlong.csv", content));
        cfg.max_line_length = 64;
        expect_error_cfg(&cfg, SF_ERR_PARSE, ":4: record longer than 64 bytes (input.max_line_length)");
        cfg.block_size = 7;
        expect_error_cfg(&cfg, SF_ERR_PARSE, ":4: record longer than 64 bytes (input.max_line_length)");
        snprintf(content, sizeof content, "a\n%s\r\n%s", r64, r64);
        cfg.path = (char *)write_str("overlong_ok.csv", content);
        char *text = read_text_cfg(&cfg);
        char expect[256];
        snprintf(expect, sizeof expect, "'%s'\n'%s'\n", r64, r64);
        assert_string_equal(text, expect);
        free(text);
        snprintf(content, sizeof content, "%s\n1\n", r65);
        cfg.path = (char *)write_str("overlong_hdr.csv", content);
        expect_error_cfg(&cfg, SF_ERR_PARSE, ":1: record longer than 64 bytes (input.max_line_length)");
    }
    {
        sf_input_config cfg = csv_cfg("/nonexistent-dir-for-shardflow-test/x.csv");
        expect_error_cfg(&cfg, SF_ERR_IO, ": cannot open: No such file or directory");
        /* A directory opens but cannot be read: the read error is reported. */
        cfg = csv_cfg(g_dir);
        expect_error_cfg(&cfg, SF_ERR_IO, ": read failed: Is a directory");
    }
}

/* Under on_bad_row: skip, every kind of bad record is skipped and reported
 * with its line, and the good rows around them are kept in order. */
static void test_skip_policy(void **state)
{
    (void)state;
    char content[1024], longrec[100];
    memset(longrec, 'L', 70);
    longrec[70] = '\0';
    snprintf(content, sizeof content,
             "id,v,s\n"         /* 1 */
             "1,1.5,a\n"        /* 2 */
             "2,2.5\n"          /* 3: too few fields */
             "3,abc,c\n"        /* 4: not a float */
             "4,\"%s\",d\n"     /* 5: too long */
             "5,5.5,\"e\"x\n"   /* 6: garbage after quote */
             "6,6.5,\"f\ng\"\n" /* 7-8 */
             "7,7.5,h,extra\n"  /* 9: too many fields */
             "8,8.5,\"i\n",     /* 10-11: unterminated at the end */
             longrec);
    const char *path = write_str("skip.csv", content);
    sf_type_hint h[] = {{(char *)"v", SF_FLOAT64}, {(char *)"id", SF_INT64}};
    const char *expect_rows = "1|1.5|'a'\n6|6.5|'f\ng'\n";
    const uint64_t lines[] = {3, 4, 5, 6, 9, 10};
    char msgs[6][240];
    snprintf(msgs[0], 240, "%s:3: expected 3 fields, found 2", path);
    snprintf(msgs[1], 240, "%s:4:2: column 'v': cannot parse 'abc' as float64", path);
    snprintf(msgs[2], 240, "%s:5: record longer than 64 bytes (input.max_line_length)", path);
    snprintf(msgs[3], 240, "%s:6:3: unexpected 'x' after closing quote", path);
    snprintf(msgs[4], 240, "%s:9: expected 3 fields, found 4", path);
    snprintf(msgs[5], 240, "%s:10: unterminated quoted field", path);
    for (int pass = 0; pass < 2; pass++) {
        sf_input_config cfg = csv_cfg(path);
        cfg.hints = h;
        cfg.nhints = 2;
        cfg.max_line_length = 64;
        cfg.on_bad_row = SF_BAD_ROW_SKIP;
        if (pass == 1) cfg.block_size = 5;
        sf_reader *r = NULL;
        assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
        for (int round = 0; round < 2; round++) {
            sf_buf out;
            sf_buf_init(&out);
            assert_int_equal(render_all(r, &out), SF_OK);
            assert_string_equal((char *)out.data, expect_rows);
            sf_buf_fini(&out);
            assert_int_equal(sf_reader_bad_rows(r), 6);
            const sf_bad_row *rows;
            assert_int_equal(sf_reader_bad_row_samples(r, &rows), 6);
            for (int i = 0; i < 6; i++) {
                assert_int_equal(rows[i].line, lines[i]);
                assert_string_equal(rows[i].message, msgs[i]);
            }
            /* rewind resets the counters and reads the same rows again */
            assert_int_equal(sf_reader_rewind(r), SF_OK);
            assert_int_equal(sf_reader_bad_rows(r), 0);
        }
        sf_reader_destroy(&r);
    }
    /* The same file under fail stops at the first bad record. */
    sf_input_config cfg = csv_cfg(path);
    cfg.hints = h;
    cfg.nhints = 2;
    cfg.max_line_length = 64;
    expect_error_cfg(&cfg, SF_ERR_PARSE, ":3: expected 3 fields, found 2");
}

static void test_rewind_and_batches(void **state)
{
    (void)state;
    sf_buf csv;
    sf_buf_init(&csv);
    assert_int_equal(sf_buf_printf(&csv, "k,v\n"), SF_OK);
    for (int i = 0; i < 10; i++) assert_int_equal(sf_buf_printf(&csv, "%d,s%d\n", i, i * i), SF_OK);
    sf_input_config cfg = csv_cfg(write_file("rewind.csv", (char *)csv.data, csv.len));
    sf_buf_fini(&csv);
    cfg.batch_rows = 3;
    cfg.block_size = 16;
    cfg.max_line_length = 32;
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (int pass = 0; pass < 3; pass++) {
        const size_t sizes[] = {3, 3, 3, 1, 0};
        int k = 0;
        for (int call = 0; call < 5; call++) {
            bool eof;
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            assert_int_equal(b.nrows, sizes[call]);
            assert_int_equal(eof, sizes[call] == 0);
            if (eof) break;
            assert_int_equal(b.first_row, (uint64_t)(3 * call));
            for (size_t i = 0; i < b.nrows; i++, k++) {
                assert_int_equal(b.cols[0].i64[i], k);
                char want[16];
                snprintf(want, sizeof want, "s%d", k * k);
                size_t len;
                const char *s = sf_dict_str(&b.cols[1].dict, b.cols[1].code[i], &len);
                assert_int_equal(len, strlen(want));
                assert_memory_equal(s, want, len);
            }
        }
        assert_int_equal(k, 10);
        /* After the end, more calls keep returning eof. */
        bool eof;
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        assert_true(eof);
        if (pass == 1) {
            /* Rewind in the middle of a pass too. */
            assert_int_equal(sf_reader_rewind(r), SF_OK);
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            assert_int_equal(b.cols[0].i64[0], 0);
        }
        assert_int_equal(sf_reader_rewind(r), SF_OK);
    }
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
}

static void test_projection(void **state)
{
    (void)state;
    const char *path = write_str("proj.csv", "a,b,c\n1,2.5,x\n2,zzz,y\n3,,z\n");
    sf_type_hint h[] = {{(char *)"b", SF_FLOAT64}};
    sf_input_config cfg = csv_cfg(path);
    cfg.hints = h;
    cfg.nhints = 1;
    /* Without projection column b fails to parse... */
    expect_error_cfg(&cfg, SF_ERR_PARSE, ":3:2: column 'b': cannot parse 'zzz' as float64");
    /* ...with b projected away it is never converted. */
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    const uint8_t want[] = {1, 0, 1};
    assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    sf_buf out;
    sf_buf_init(&out);
    assert_int_equal(render_all(r, &out), SF_OK);
    assert_string_equal((char *)out.data, "1|-|'x'\n2|-|'y'\n3|-|'z'\n");
    sf_buf_fini(&out);
    sf_reader_destroy(&r);
    /* Skipped columns still count for the field count. */
    cfg.path = (char *)write_str("proj_short.csv", "a,b,c\n1,2.5,x\n2,3\n");
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    sf_buf_init(&out);
    assert_int_equal(render_all(r, &out), SF_ERR_PARSE);
    char expect[512];
    snprintf(expect, sizeof expect, "%s:3: expected 3 fields, found 2", cfg.path);
    assert_string_equal(sf_error_message(), expect);
    sf_buf_fini(&out);
    sf_reader_destroy(&r);
}

/* The fast path (plain records) and the general path (records with quoted
 * fields, records at block edges) must agree. The same random rows, good and
 * bad, are written three ways: plain, every field quoted (which takes the
 * general path), and plain read with tiny blocks. Kept rows are compared with
 * strtoll/strtod and hand-computed timestamps; bad rows must be exactly the
 * ones the generator made bad, with the same messages in all three reads. */
typedef struct fuzz_row {
    bool bad;
    bool null[4];
    int64_t i;
    double f;
    int64_t ts;
    char text[4][48];
} fuzz_row;

static uint64_t fz(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fuzz_int(uint64_t *rng, fuzz_row *row)
{
    static const char *bad[] = {"1.5", "abc", " 1", "1 ", "9223372036854775808", "--1", "+", "1e3", "0x1",
                                "-9223372036854775809", "12a"};
    uint64_t u = fz(rng);
    if (u % 40 == 0) {
        snprintf(row->text[0], 48, "%s", bad[fz(rng) % (sizeof bad / sizeof bad[0])]);
        row->bad = true;
        return;
    }
    if (u % 13 == 0) {
        row->null[0] = true;
        return;
    }
    int nd = 1 + (int)(fz(rng) % 19);
    size_t k = 0;
    if (u % 3 == 0) row->text[0][k++] = '-';
    for (int d = 0; d < nd; d++) {
        char digit = (char)('0' + fz(rng) % 10);
        if (d == 0 && nd == 19 && digit == '9') digit = '1';
        row->text[0][k++] = digit;
    }
    row->text[0][k] = '\0';
    row->i = strtoll(row->text[0], NULL, 10);
}

static void fuzz_float(uint64_t *rng, fuzz_row *row)
{
    static const char *bad[] = {"1.2.3", "abc", " 1.5", "1.5 ", "1e", "e5", ".", "-", "0x10", "infinity",
                                "1.5x", "--2"};
    uint64_t u = fz(rng);
    char *t = row->text[1];
    if (u % 40 == 0) {
        snprintf(t, 48, "%s", bad[fz(rng) % (sizeof bad / sizeof bad[0])]);
        row->bad = true;
        return;
    }
    if (u % 13 == 0) {
        row->null[1] = true;
        return;
    }
    if (u % 29 == 0) {
        static const char *words[] = {"nan", "inf", "-inf", "+inf"};
        snprintf(t, 48, "%s", words[fz(rng) % 4]);
    } else {
        size_t k = 0;
        if (u % 3 == 0) t[k++] = '-';
        int nint = (int)(fz(rng) % 21), nfrac = (int)(fz(rng) % 21);
        if (nint + nfrac == 0) nint = 1;
        for (int d = 0; d < nint; d++) t[k++] = (char)('0' + fz(rng) % 10);
        if (nfrac) t[k++] = '.';
        for (int d = 0; d < nfrac; d++) t[k++] = (char)('0' + fz(rng) % 10);
        t[k] = '\0';
        if (u % 5 == 0) snprintf(t + k, 48 - k, "e%d", (int)(fz(rng) % 640) - 320);
    }
    row->f = strtod(t, NULL);
}

static void fuzz_ts(uint64_t *rng, fuzz_row *row)
{
    static const char *bad[] = {"2024-13-01T00:00:00", "2024-01-02", "x", "2024-02-30T00:00:00",
                                "2024-01-01T24:00:00", " 2024-01-01T00:00:00"};
    /* Days before each month of 2024 (a leap year). */
    static const int before[12] = {0, 31, 60, 91, 121, 152, 182, 213, 244, 274, 305, 335};
    static const int mdays[12] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    uint64_t u = fz(rng);
    if (u % 40 == 0) {
        snprintf(row->text[2], 48, "%s", bad[fz(rng) % (sizeof bad / sizeof bad[0])]);
        row->bad = true;
        return;
    }
    if (u % 13 == 0) {
        row->null[2] = true;
        return;
    }
    int mo = (int)(fz(rng) % 12), d = 1 + (int)(fz(rng) % (uint64_t)mdays[mo]);
    int h = (int)(fz(rng) % 24), mi = (int)(fz(rng) % 60), se = (int)(fz(rng) % 60);
    int us = (int)(fz(rng) % 1000000);
    char sep = u % 2 ? 'T' : ' ';
    if (u % 3 == 0) {
        snprintf(row->text[2], 48, "2024-%02d-%02d%c%02d:%02d:%02d", mo + 1, d, sep, h, mi, se);
        us = 0;
    } else {
        snprintf(row->text[2], 48, "2024-%02d-%02d%c%02d:%02d:%02d.%06d", mo + 1, d, sep, h, mi, se, us);
    }
    int64_t days = 19723 + before[mo] + d - 1; /* 2024-01-01 is day 19723 */
    row->ts = ((days * 24 + h) * 60 + mi) * INT64_C(60000000) + (int64_t)se * 1000000 + us;
}

static void fuzz_string(uint64_t *rng, fuzz_row *row)
{
    static const char alphabet[] = "abcxyz 019-_.\"'\t\r";
    uint64_t u = fz(rng);
    if (u % 13 == 0) {
        row->null[3] = true;
        return;
    }
    size_t n = 1 + fz(rng) % 30, k = 0;
    row->text[3][k++] = 's'; /* a plain field must not start with a quote */
    for (size_t j = 1; j < n; j++) row->text[3][k++] = alphabet[fz(rng) % (sizeof alphabet - 1)];
    if (row->text[3][k - 1] == '\r') row->text[3][k - 1] = 'r'; /* a CR before the line end is part of it */
    row->text[3][k] = '\0';
}

/* Appends a field, quoted (quotes doubled) when asked and not empty. */
static void put_field(sf_buf *out, const char *t, bool quote)
{
    if (!quote || t[0] == '\0') {
        assert_int_equal(sf_buf_append(out, t, strlen(t)), SF_OK);
        return;
    }
    assert_int_equal(sf_buf_append(out, "\"", 1), SF_OK);
    for (const char *p = t; *p; p++) {
        assert_int_equal(sf_buf_append(out, p, 1), SF_OK);
        if (*p == '"') assert_int_equal(sf_buf_append(out, "\"", 1), SF_OK);
    }
    assert_int_equal(sf_buf_append(out, "\"", 1), SF_OK);
}

static void test_fast_and_general_paths_agree(void **state)
{
    (void)state;
    const size_t nrows = 6000;
    fuzz_row *rows = calloc(nrows, sizeof *rows);
    assert_non_null(rows);
    uint64_t rng = 0x2545F4914F6CDD1Du;
    sf_buf plain, quoted;
    sf_buf_init(&plain);
    sf_buf_init(&quoted);
    assert_int_equal(sf_buf_printf(&plain, "i,f,t,s\n"), SF_OK);
    assert_int_equal(sf_buf_printf(&quoted, "\"i\",\"f\",\"t\",\"s\"\n"), SF_OK);
    size_t nbad = 0;
    for (size_t r = 0; r < nrows; r++) {
        fuzz_row *row = &rows[r];
        fuzz_int(&rng, row);
        fuzz_float(&rng, row);
        fuzz_ts(&rng, row);
        fuzz_string(&rng, row);
        uint64_t u = fz(&rng);
        int nfields = u % 50 == 0 ? 3 : u % 50 == 1 ? 5 : 4;
        if (nfields != 4) row->bad = true;
        nbad += row->bad;
        for (int k = 0; k < nfields; k++) {
            const char *t = k < 4 ? row->text[k] : "extra";
            if (k > 0) {
                assert_int_equal(sf_buf_append(&plain, ",", 1), SF_OK);
                assert_int_equal(sf_buf_append(&quoted, ",", 1), SF_OK);
            }
            put_field(&plain, t, false);
            put_field(&quoted, t, true);
        }
        const char *eol = u % 3 == 0 ? "\r\n" : "\n";
        assert_int_equal(sf_buf_append(&plain, eol, strlen(eol)), SF_OK);
        assert_int_equal(sf_buf_append(&quoted, eol, strlen(eol)), SF_OK);
    }
    assert_true(nbad > 100 && nbad < nrows / 4);
    const char *paths[3];
    paths[0] = write_file("fuzz_plain.csv", (char *)plain.data, plain.len);
    paths[1] = write_file("fuzz_quoted.csv", (char *)quoted.data, quoted.len);
    paths[2] = paths[0];
    sf_buf_fini(&plain);
    sf_buf_fini(&quoted);
    sf_type_hint h[] = {{(char *)"i", SF_INT64},
                        {(char *)"f", SF_FLOAT64},
                        {(char *)"t", SF_TIMESTAMP},
                        {(char *)"s", SF_STRING}};
    char msgs[3][SF__BAD_ROW_SAMPLES_TEST][240];
    uint64_t lines[3][SF__BAD_ROW_SAMPLES_TEST];
    for (int v = 0; v < 3; v++) {
        sf_input_config cfg = csv_cfg(paths[v]);
        cfg.hints = h;
        cfg.nhints = 4;
        cfg.on_bad_row = SF_BAD_ROW_SKIP;
        cfg.batch_rows = 1000;
        if (v == 2) {
            cfg.block_size = 13;
            cfg.max_line_length = 200;
        }
        sf_reader *r = NULL;
        assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
        sf_batch b;
        assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
        size_t src = 0;
        for (;;) {
            bool eof;
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            if (eof) break;
            for (size_t i = 0; i < b.nrows; i++, src++) {
                while (src < nrows && rows[src].bad) src++;
                assert_true(src < nrows);
                const fuzz_row *row = &rows[src];
                for (int c = 0; c < 4; c++) {
                    if (sf_col_is_null(&b.cols[c], i) != row->null[c])
                        fail_msg("variant %d row %zu col %d: null mismatch ('%s')", v, src, c, row->text[c]);
                }
                if (!row->null[0] && b.cols[0].i64[i] != row->i)
                    fail_msg("variant %d row %zu: '%s' read as %" PRId64, v, src, row->text[0], b.cols[0].i64[i]);
                if (!row->null[1]) {
                    double got = b.cols[1].f64[i];
                    bool same = isnan(row->f) ? isnan(got) : memcmp(&got, &row->f, sizeof got) == 0;
                    if (!same) fail_msg("variant %d row %zu: '%s' read as %a, strtod %a", v, src, row->text[1], got, row->f);
                }
                if (!row->null[2] && b.cols[2].i64[i] != row->ts)
                    fail_msg("variant %d row %zu: '%s' read as %" PRId64, v, src, row->text[2], b.cols[2].i64[i]);
                if (!row->null[3]) {
                    size_t len;
                    const char *str = sf_dict_str(&b.cols[3].dict, b.cols[3].code[i], &len);
                    size_t want = strlen(row->text[3]);
                    if (len != want || memcmp(str, row->text[3], len) != 0)
                        fail_msg("variant %d row %zu: string '%.*s' != '%s'", v, src, (int)len, str, row->text[3]);
                }
            }
        }
        while (src < nrows && rows[src].bad) src++;
        assert_int_equal(src, nrows);
        assert_int_equal(sf_reader_bad_rows(r), nbad);
        const sf_bad_row *bad;
        size_t ns = sf_reader_bad_row_samples(r, &bad);
        assert_int_equal(ns, SF__BAD_ROW_SAMPLES_TEST);
        for (size_t k = 0; k < ns; k++) {
            lines[v][k] = bad[k].line;
            /* compare messages without the path, which differs */
            const char *m = bad[k].message + strlen(paths[v]);
            snprintf(msgs[v][k], 240, "%s", m);
        }
        sf_batch_fini(&b);
        sf_reader_destroy(&r);
    }
    for (int v = 1; v < 3; v++) {
        for (size_t k = 0; k < SF__BAD_ROW_SAMPLES_TEST; k++) {
            assert_int_equal(lines[v][k], lines[0][k]);
            assert_string_equal(msgs[v][k], msgs[0][k]);
        }
    }
    /* The first bad rows are at the lines the generator put them on. */
    size_t k = 0;
    for (size_t r = 0; r < nrows && k < SF__BAD_ROW_SAMPLES_TEST; r++)
        if (rows[r].bad) assert_int_equal(lines[0][k++], r + 2);
    free(rows);
}

/* Data files in tests/data/csv: the good ones with known contents, the bad
 * ones with the error each must give. */
static void test_data_files(void **state)
{
    (void)state;
    const char *dir = getenv("SF_TEST_DATA");
    if (dir == NULL) fail_msg("SF_TEST_DATA is not set: run the test through ctest");
    char path[1024];
    snprintf(path, sizeof path, "%s/csv/requests_small.csv", dir);
    sf_input_config cfg = csv_cfg(path);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_type types[] = {SF_TIMESTAMP, SF_STRING, SF_STRING, SF_INT64, SF_FLOAT64, SF_INT64};
    check_types(r, "ts,host,endpoint,status,latency_ms,bytes", types);
    sf_reader_destroy(&r);
    char *text = read_text(path);
    /* 2024-03-01T00:00:00Z is 19783 days after the epoch. */
    int64_t d0 = INT64_C(19783) * 86400 * 1000000;
    char expect[1024];
    snprintf(expect, sizeof expect,
             "@%" PRId64 "|'web-1'|'/api/v1/items'|200|12.5|512\n"
             "@%" PRId64 "|'web-2'|'/api/v1/items?q=a,b'|200|7.25|1024\n"
             "@%" PRId64 "|'web-1'|'/login'|500|NULL|0\n"
             "@%" PRId64 "|'db \"primary\"'|'/health\ncheck'|204|0.001|NULL\n",
             d0, d0 + 1500000, d0 + 61000000, d0 + 3600000000 + 250);
    assert_string_equal(text, expect);
    free(text);

    snprintf(path, sizeof path, "%s/csv/bad_field_count_crlf.csv", dir);
    cfg = csv_cfg(path);
    expect_error_cfg(&cfg, SF_ERR_PARSE, ":4: expected 3 fields, found 2");
    snprintf(path, sizeof path, "%s/csv/bad_quote_multiline.csv", dir);
    cfg = csv_cfg(path);
    expect_error_cfg(&cfg, SF_ERR_PARSE, ":5: unterminated quoted field");
}

/* The bad-input corpus used by the end-to-end test: each file must fail
 * with the message fragment EXPECT lists for it, and every file in the
 * folder must be listed. */
static void test_bad_corpus(void **state)
{
    (void)state;
    const char *src = getenv("SF_SOURCE_DIR");
    if (src == NULL) fail_msg("SF_SOURCE_DIR is not set: run the test through ctest");
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/e2e/bad_csv/EXPECT", src);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0 || line[0] == '#') continue;
        char *tab = strchr(line, '\t');
        assert_non_null(tab);
        *tab = '\0';
        const char *want = tab + 1;
        char file[2100];
        snprintf(file, sizeof file, "%s/tests/e2e/bad_csv/%s", src, line);
        sf_input_config cfg = csv_cfg(file);
        sf_reader *r = NULL;
        sf_error_clear();
        sf_status rc = sf_reader_open(&cfg, &r);
        if (rc == SF_OK) {
            sf_buf out;
            sf_buf_init(&out);
            rc = render_all(r, &out);
            sf_buf_fini(&out);
            sf_reader_destroy(&r);
        }
        if (rc == SF_OK) fail_msg("%s: read without error", line);
        if (strstr(sf_error_message(), want) == NULL)
            fail_msg("%s: message '%s' lacks '%s'", line, sf_error_message(), want);
        if (strncmp(sf_error_message(), file, strlen(file)) != 0)
            fail_msg("%s: message '%s' does not start with the path", line, sf_error_message());
        n++;
    }
    fclose(fp);
    assert_true(n >= 12);
    /* Every .csv in the folder is listed. */
    snprintf(path, sizeof path, "%s/tests/e2e/bad_csv", src);
    DIR *dir = opendir(path);
    assert_non_null(dir);
    int files = 0;
    for (struct dirent *de; (de = readdir(dir)) != NULL;) {
        size_t len = strlen(de->d_name);
        files += len > 4 && strcmp(de->d_name + len - 4, ".csv") == 0;
    }
    closedir(dir);
    assert_int_equal(files, n);
}

/* ------------------------------------------------------------------ */
/* Writer */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void fill_schema(sf_schema *s)
{
    sf_schema_init(s);
    assert_int_equal(sf_schema_add(s, "id", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "value", SF_FLOAT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "when", SF_TIMESTAMP), SF_OK);
    assert_int_equal(sf_schema_add(s, "text, \"quoted\"", SF_STRING), SF_OK);
}

typedef struct expect_row {
    bool null[4];
    int64_t id, when;
    double value;
    char text[24];
    size_t text_len;
} expect_row;

static double random_double(uint64_t *rng)
{
    uint64_t u = rng_next(rng);
    switch (u % 9) {
    case 0: {
        uint64_t bits = rng_next(rng);
        double d;
        memcpy(&d, &bits, sizeof d);
        return d; /* any bit pattern, including nan, inf and denormals */
    }
    case 1: return (double)(int64_t)(rng_next(rng) % 2000001 - 1000000) / 1000.0;
    case 2: return (double)(int64_t)(rng_next(rng) % 20001 - 10000) / 100.0;
    case 3: return (double)(int64_t)(rng_next(rng) % 1000) ; /* integral */
    case 4: {
        static const double special[] = {0.0, -0.0, 1e300, -1e-300, 4.9e-324, 1.7976931348623157e308,
                                         2.2250738585072014e-308, 0.1, 1.0 / 3.0, 1e16, 123456789012345678.0};
        return special[rng_next(rng) % (sizeof special / sizeof special[0])];
    }
    case 5: return INFINITY;
    case 6: return -INFINITY;
    default: return ldexp((double)(rng_next(rng) >> 11), (int)(rng_next(rng) % 200) - 100);
    }
}

static void test_writer_round_trip(void **state)
{
    (void)state;
    sf_schema s;
    fill_schema(&s);
    char path[512];
    snprintf(path, sizeof path, "%s/roundtrip.csv", g_dir);
    if (g_nfiles < 256) g_files[g_nfiles++] = strdup(path);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_CSV, NULL, &s, false, &w), SF_OK);
    const size_t sizes[] = {500, 1, 0, 777};
    size_t total = 0;
    for (size_t i = 0; i < 4; i++) total += sizes[i];
    expect_row *rows = calloc(total, sizeof *rows);
    assert_non_null(rows);
    uint64_t rng = 12345;
    static const char alphabet[] = "abc ,\"\n\rxyz\t;'\xc3\xa9";
    size_t k = 0;
    for (size_t bi = 0; bi < 4; bi++) {
        sf_batch b;
        assert_int_equal(sf_batch_init(&b, &s, NULL, sizes[bi]), SF_OK);
        for (size_t r = 0; r < sizes[bi]; r++, k++) {
            expect_row *e = &rows[k];
            for (int c = 0; c < 4; c++) e->null[c] = rng_next(&rng) % 10 == 0;
            if (k == 0) memset(e->null, 0, sizeof e->null);
            uint64_t u = rng_next(&rng);
            e->id = u % 7 == 0 ? INT64_MIN : u % 7 == 1 ? INT64_MAX : (int64_t)rng_next(&rng);
            e->value = random_double(&rng);
            e->when = (int64_t)(rng_next(&rng) % (INT64_C(9400000000) * 1000000)) - INT64_C(2208988800) * 1000000;
            e->text_len = rng_next(&rng) % 20;
            for (size_t j = 0; j < e->text_len; j++) e->text[j] = alphabet[rng_next(&rng) % (sizeof alphabet - 1)];
            if (e->text_len > 0) e->text[0] = 'q'; /* never looks like a number or timestamp */
            b.cols[0].i64[r] = e->id;
            b.cols[1].f64[r] = e->value;
            b.cols[2].i64[r] = e->when;
            assert_int_equal(sf_dict_intern(&b.cols[3].dict, e->text, e->text_len, &b.cols[3].code[r]), SF_OK);
            b.nrows = r + 1;
            for (int c = 0; c < 4; c++)
                if (e->null[c]) assert_int_equal(sf_batch_set_null(&b, c, r), SF_OK);
        }
        b.nrows = sizes[bi];
        assert_int_equal(sf_table_writer_write(w, &b), SF_OK);
        sf_batch_fini(&b);
    }
    assert_int_equal(sf_table_writer_close(&w), SF_OK);
    assert_null(w);

    /* Read back with inference (the types must come out the same) and
     * batches of a different size. */
    sf_input_config cfg = csv_cfg(path);
    cfg.batch_rows = 300;
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    const sf_schema *rs = sf_reader_schema(r);
    assert_int_equal(rs->ncols, 4);
    for (int c = 0; c < 4; c++) {
        assert_string_equal(rs->fields[c].name, s.fields[c].name);
        assert_int_equal(rs->fields[c].type, s.fields[c].type);
    }
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    size_t row = 0;
    for (;;) {
        bool eof;
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        for (size_t i = 0; i < b.nrows; i++, row++) {
            const expect_row *e = &rows[row];
            for (int c = 0; c < 4; c++) assert_int_equal(sf_col_is_null(&b.cols[c], i), e->null[c]);
            if (!e->null[0]) assert_int_equal(b.cols[0].i64[i], e->id);
            if (!e->null[1]) {
                double got = b.cols[1].f64[i];
                if (isnan(e->value)) assert_true(isnan(got));
                else if (memcmp(&got, &e->value, sizeof got) != 0)
                    fail_msg("row %zu: wrote %a, read %a", row, e->value, got);
            }
            if (!e->null[2]) assert_int_equal(b.cols[2].i64[i], e->when);
            if (!e->null[3]) {
                size_t len;
                const char *str = sf_dict_str(&b.cols[3].dict, b.cols[3].code[i], &len);
                assert_int_equal(len, e->text_len);
                assert_memory_equal(str, e->text, len);
            }
        }
    }
    assert_int_equal(row, total);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    free(rows);
    sf_schema_fini(&s);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    char *data = malloc(1 << 16);
    assert_non_null(data);
    *len = fread(data, 1, (1 << 16) - 1, fp);
    data[*len] = '\0';
    fclose(fp);
    return data;
}

/* The exact text the writer produces for a hand-made batch. */
static void test_writer_format(void **state)
{
    (void)state;
    sf_schema s;
    fill_schema(&s);
    char path[512];
    snprintf(path, sizeof path, "%s/format.csv", g_dir);
    if (g_nfiles < 256) g_files[g_nfiles++] = strdup(path);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_CSV, NULL, &s, false, &w), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 8), SF_OK);
    const int64_t ids[] = {0, -42, INT64_MIN, 7, 8, 9};
    const double vals[] = {0.1, 1.0, 1234.5, 0.30000000000000004, -0.0, 2.675};
    const int64_t whens[] = {0, TS_2024_01_02_030405 + 500000, -1, 0, 0, 0};
    const char *texts[] = {"plain", "a,b", "say \"hi\"", "two\nlines", "", "cr\r"};
    b.nrows = 6;
    for (size_t r = 0; r < 6; r++) {
        b.cols[0].i64[r] = ids[r];
        b.cols[1].f64[r] = vals[r];
        b.cols[2].i64[r] = whens[r];
        assert_int_equal(sf_dict_intern(&b.cols[3].dict, texts[r], strlen(texts[r]), &b.cols[3].code[r]), SF_OK);
    }
    assert_int_equal(sf_batch_set_null(&b, 0, 4), SF_OK);
    assert_int_equal(sf_batch_set_null(&b, 2, 5), SF_OK);
    assert_int_equal(sf_batch_set_null(&b, 3, 5), SF_OK);
    assert_int_equal(sf_table_writer_write(w, &b), SF_OK);
    sf_batch_fini(&b);
    assert_int_equal(sf_table_writer_close(&w), SF_OK);
    size_t len;
    char *data = slurp(path, &len);
    assert_string_equal(data, "id,value,when,\"text, \"\"quoted\"\"\"\n"
                              "0,0.1,1970-01-01T00:00:00,plain\n"
                              "-42,1.0,2024-01-02T03:04:05.500000,\"a,b\"\n"
                              "-9223372036854775808,1234.5,1969-12-31T23:59:59.999999,\"say \"\"hi\"\"\"\n"
                              "7,0.30000000000000004,1970-01-01T00:00:00,\"two\nlines\"\n"
                              ",-0.0,1970-01-01T00:00:00,\"\"\n"
                              "9,2.675,,\n");
    free(data);
    sf_schema_fini(&s);
}

/* A value bigger than the writer's buffer and than many reader blocks. */
static void test_large_value(void **state)
{
    (void)state;
    const size_t n = (size_t)5 << 19; /* 2.5 MiB */
    char *big = malloc(n);
    assert_non_null(big);
    for (size_t i = 0; i < n; i++) big[i] = "ab,\"\ncd"[i % 7];
    sf_schema s;
    sf_schema_init(&s);
    assert_int_equal(sf_schema_add(&s, "k", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(&s, "blob", SF_STRING), SF_OK);
    char path[512];
    snprintf(path, sizeof path, "%s/large.csv", g_dir);
    if (g_nfiles < 256) g_files[g_nfiles++] = strdup(path);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_CSV, NULL, &s, false, &w), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 4), SF_OK);
    b.nrows = 2;
    b.cols[0].i64[0] = 1;
    b.cols[0].i64[1] = 2;
    assert_int_equal(sf_dict_intern(&b.cols[1].dict, big, n, &b.cols[1].code[0]), SF_OK);
    assert_int_equal(sf_dict_intern(&b.cols[1].dict, "small", 5, &b.cols[1].code[1]), SF_OK);
    assert_int_equal(sf_table_writer_write(w, &b), SF_OK);
    sf_batch_fini(&b);
    assert_int_equal(sf_table_writer_close(&w), SF_OK);

    sf_input_config cfg = csv_cfg(path);
    cfg.block_size = (size_t)256 << 10;
    cfg.max_line_length = (size_t)4 << 20;
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_int_equal(b.nrows, 2);
    size_t len;
    const char *got = sf_dict_str(&b.cols[1].dict, b.cols[1].code[0], &len);
    assert_int_equal(len, n);
    assert_memory_equal(got, big, n);
    got = sf_dict_str(&b.cols[1].dict, b.cols[1].code[1], &len);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "small", 5);
    assert_int_equal(b.cols[0].i64[1], 2);
    /* Quotes are doubled on disk: 2 + n + quotes + ",\n" after "1,". */
    size_t quotes = 0;
    for (size_t i = 0; i < n; i++) quotes += big[i] == '"';
    assert_int_equal(b.row_bytes[0], 2 + 2 + n + quotes + 1);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    /* With the default limit of 1 MiB the record is too long. */
    cfg = csv_cfg(path);
    expect_error_cfg(&cfg, SF_ERR_PARSE, ":2: record longer than 1048576 bytes (input.max_line_length)");
    free(big);
    sf_schema_fini(&s);
}

static void test_writer_disk_full(void **state)
{
    (void)state;
    /* /dev/full (every write fails with ENOSPC) is how the disk-full path is tested. */
    if (access("/dev/full", W_OK) != 0) fail_msg("/dev/full is not writable here: cannot test write errors");
    sf_schema s;
    fill_schema(&s);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create("/dev/full", SF_OUTPUT_CSV, NULL, &s, false, &w), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 4), SF_OK);
    b.nrows = 1;
    b.cols[0].i64[0] = 1;
    b.cols[1].f64[0] = 2;
    b.cols[2].i64[0] = 3;
    assert_int_equal(sf_dict_intern(&b.cols[3].dict, "x", 1, &b.cols[3].code[0]), SF_OK);
    assert_int_equal(sf_table_writer_write(w, &b), SF_OK); /* still in the buffer */
    sf_batch_fini(&b);
    assert_int_equal(sf_table_writer_close(&w), SF_ERR_IO);
    assert_null(w);
    assert_string_equal(sf_error_message(), "/dev/full: write failed: No space left on device");
    sf_schema_fini(&s);

    sf_schema_init(&s);
    assert_int_equal(sf_schema_add(&s, "a", SF_INT64), SF_OK);
    assert_int_equal(sf_table_writer_create("/nonexistent-dir-for-shardflow-test/o.csv", SF_OUTPUT_CSV,
                                            NULL, &s, false, &w),
                     SF_ERR_IO);
    assert_null(w);
    assert_string_equal(sf_error_message(),
                        "/nonexistent-dir-for-shardflow-test/o.csv: cannot create: No such file or directory");
    sf_schema_fini(&s);
}

/* ------------------------------------------------------------------ */

static int group_setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(g_dir, sizeof g_dir, "%s/sf_test_csv_XXXXXX", tmp && *tmp ? tmp : "/tmp");
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
        cmocka_unit_test(test_basic_types),
        cmocka_unit_test(test_quoting),
        cmocka_unit_test(test_crlf_and_last_line),
        cmocka_unit_test(test_custom_delimiter),
        cmocka_unit_test(test_bom_and_blank_lines),
        cmocka_unit_test(test_block_boundaries),
        cmocka_unit_test(test_nulls),
        cmocka_unit_test(test_inference),
        cmocka_unit_test(test_infer_rows_limit),
        cmocka_unit_test(test_hints),
        cmocka_unit_test(test_int64_limits),
        cmocka_unit_test(test_float_parsing_matches_strtod),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_skip_policy),
        cmocka_unit_test(test_rewind_and_batches),
        cmocka_unit_test(test_projection),
        cmocka_unit_test(test_fast_and_general_paths_agree),
        cmocka_unit_test(test_data_files),
        cmocka_unit_test(test_bad_corpus),
        cmocka_unit_test(test_writer_round_trip),
        cmocka_unit_test(test_writer_format),
        cmocka_unit_test(test_large_value),
        cmocka_unit_test(test_writer_disk_full),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
