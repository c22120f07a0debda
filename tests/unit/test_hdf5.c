/* Unit tests of the HDF5 table reader and writer (io/hdf5_table.c).
 *
 * Tables are written with the writer and read back through the public reader
 * API, and other files are built directly with the HDF5 C API (other integer
 * widths, float32, padded fixed strings, validity masks, error cases).
 * Every expected value
 * comes from a formula in this file, evaluated independently of the code
 * under test. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <hdf5.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/batch_lend.h"
#include "shardflow/exec.h"
#include "shardflow/io.h"

static char tmpdir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof tmpdir, "/tmp/sf_test_hdf5_XXXXXX");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static void tmp_path(char *out, size_t n, const char *name) { snprintf(out, n, "%s/%s", tmpdir, name); }

static void h5_config(sf_input_config *cfg, const char *path, const char *group, size_t batch_rows)
{
    sf_input_config_defaults(cfg);
    cfg->format = SF_INPUT_HDF5;
    cfg->path = strdup(path);
    cfg->group = group ? strdup(group) : NULL;
    cfg->batch_rows = batch_rows;
}

/* ---- expected values of the round-trip table ------------------------------ */

static int64_t ts_of(uint64_t i) { return INT64_C(1767225600000000) + (int64_t)i * 1234567; }

static int64_t int_of(uint64_t i)
{
    if (i == 0) return INT64_MIN;
    if (i == 1) return INT64_MAX;
    return (int64_t)(i * i * 7919) - 4000000;
}

static double float_of(uint64_t i)
{
    if (i == 5) return NAN;
    if (i == 7) return 1e308;
    return (double)i * 0.1 - 17.5;
}

/* Strings of length i % 41 (the empty string included), plus one long string
 * at row long_row if it is set. */
static uint64_t long_row = UINT64_MAX;
static size_t long_len = 0;

static size_t str_of(uint64_t i, char *out)
{
    size_t len = i == long_row ? long_len : i % 41;
    for (size_t j = 0; j < len; j++) out[j] = (char)('a' + (i + j) % 26);
    out[len] = '\0';
    return len;
}

/* Columns deliberately not in name order, to see creation order kept. */
static void roundtrip_schema(sf_schema *s)
{
    sf_schema_init(s);
    assert_int_equal(sf_schema_add(s, "zeta", SF_TIMESTAMP), SF_OK);
    assert_int_equal(sf_schema_add(s, "alpha", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "mid", SF_FLOAT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "beta", SF_STRING), SF_OK);
}

static void fill_batch(sf_batch *b, uint64_t first, size_t n)
{
    sf_batch_clear(b);
    char buf[512];
    for (size_t r = 0; r < n; r++) {
        uint64_t i = first + r;
        b->cols[0].i64[r] = ts_of(i);
        b->cols[1].i64[r] = int_of(i);
        b->cols[2].f64[r] = float_of(i);
        size_t len = str_of(i, buf);
        assert_int_equal(sf_dict_intern(&b->cols[3].dict, buf, len, &b->cols[3].code[r]), SF_OK);
    }
    b->nrows = n;
    b->first_row = first;
}

/* Writes batches of the given sizes; returns the writer's status. */
static sf_status write_table(const char *path, bool vlen, const size_t *sizes, int nbatches)
{
    sf_schema s;
    roundtrip_schema(&s);
    sf_table_writer *w = NULL;
    sf_status rc = sf_table_writer_create(path, SF_OUTPUT_HDF5, "/data", &s, vlen, &w);
    assert_int_equal(rc, SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 4096), SF_OK);
    uint64_t first = 0;
    for (int k = 0; k < nbatches && rc == SF_OK; k++) {
        fill_batch(&b, first, sizes[k]);
        rc = sf_table_writer_write(w, &b);
        first += sizes[k];
    }
    char msg[2048];
    snprintf(msg, sizeof msg, "%s", sf_error_message());
    sf_status rc_close = sf_table_writer_close(&w);
    assert_null(w);
    if (rc == SF_OK) rc = rc_close;
    else sf_error_set_message(msg);
    sf_batch_fini(&b);
    sf_schema_fini(&s);
    return rc;
}

/* Reads the table back with batches of batch_rows rows and checks every value. */
static void check_table(const char *path, uint64_t nrows, size_t batch_rows, const uint8_t *want)
{
    sf_input_config cfg;
    h5_config(&cfg, path, "/data", batch_rows);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    const sf_schema *s = sf_reader_schema(r);
    assert_int_equal(s->ncols, 4);
    assert_string_equal(s->fields[0].name, "zeta");
    assert_int_equal(s->fields[0].type, SF_TIMESTAMP);
    assert_string_equal(s->fields[1].name, "alpha");
    assert_int_equal(s->fields[1].type, SF_INT64);
    assert_string_equal(s->fields[2].name, "mid");
    assert_int_equal(s->fields[2].type, SF_FLOAT64);
    assert_string_equal(s->fields[3].name, "beta");
    assert_int_equal(s->fields[3].type, SF_STRING);
    assert_int_equal(sf_reader_total_rows(r), nrows);
    assert_int_equal(sf_reader_data_bytes(r), 0);
    if (want) assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (int pass = 0; pass < 2; pass++) {   /* the second pass after a rewind */
        uint64_t seen = 0;
        bool eof = false;
        for (;;) {
            assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
            if (eof) break;
            assert_int_equal(b.first_row, seen);
            uint64_t left = nrows - seen;
            assert_int_equal(b.nrows, left < batch_rows ? left : batch_rows);
            for (int c = 0; c < 4; c++) {
                assert_int_equal(b.cols[c].loaded, want == NULL || want[c]);
                assert_null(b.cols[c].valid);   /* nothing null was written: no masks */
            }
            char buf[512];
            for (size_t k = 0; k < b.nrows; k++) {
                uint64_t i = seen + k;
                if (b.cols[0].loaded) assert_int_equal(b.cols[0].i64[k], ts_of(i));
                if (b.cols[1].loaded) assert_int_equal(b.cols[1].i64[k], int_of(i));
                if (b.cols[2].loaded) {
                    double e = float_of(i), v = b.cols[2].f64[k];
                    if (isnan(e)) assert_true(isnan(v));
                    else assert_true(v == e);
                }
                if (b.cols[3].loaded) {
                    size_t len = str_of(i, buf), got;
                    const char *str = sf_dict_str(&b.cols[3].dict, b.cols[3].code[k], &got);
                    assert_int_equal(got, len);
                    assert_memory_equal(str, buf, len);
                }
            }
            seen += b.nrows;
        }
        assert_int_equal(seen, nrows);
        assert_int_equal(sf_reader_rewind(r), SF_OK);
    }
    if (want && !want[3]) assert_null(b.cols[3].code);   /* never allocated */
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

static void test_roundtrip_fixed(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "fixed.h5");
    static const size_t sizes[] = {1000, 1, 2500};
    long_row = UINT64_MAX;
    assert_int_equal(write_table(path, false, sizes, 3), SF_OK);
    check_table(path, 3501, 700, NULL);
    check_table(path, 3501, 65536, NULL);

    /* The layout: chunked, extendible, fixed strings of the 64-byte minimum
     * (the longest string is 40 bytes), the timestamp attribute. */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "/data/beta", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    assert_int_equal(H5Tget_class(t), H5T_STRING);
    assert_false(H5Tis_variable_str(t));
    assert_int_equal(H5Tget_size(t), 64);
    H5Tclose(t);
    hid_t sp = H5Dget_space(d);
    hsize_t dim, maxdim;
    H5Sget_simple_extent_dims(sp, &dim, &maxdim);
    assert_int_equal(dim, 3501);
    assert_true(maxdim == H5S_UNLIMITED);
    H5Sclose(sp);
    hid_t pl = H5Dget_create_plist(d);
    assert_int_equal(H5Pget_layout(pl), H5D_CHUNKED);
    H5Pclose(pl);
    H5Dclose(d);
    d = H5Dopen2(f, "/data/zeta", H5P_DEFAULT);
    assert_true(H5Aexists(d, "shardflow_type") > 0);
    H5Dclose(d);
    assert_int_equal(H5Lexists(f, "/data/_valid", H5P_DEFAULT), 0);   /* no nulls, no mask group */
    H5Fclose(f);
}

static void test_roundtrip_vlen(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "vlen.h5");
    static const size_t sizes[] = {3, 4096, 1000};
    long_row = 4500;   /* in the last batch: fine for variable-length strings */
    long_len = 300;
    assert_int_equal(write_table(path, true, sizes, 3), SF_OK);
    check_table(path, 5099, 1024, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/data/beta", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    assert_true(H5Tis_variable_str(t) > 0);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);
    long_row = UINT64_MAX;
}

static void test_fixed_width(void **state)
{
    (void)state;
    char path[128];
    /* A 100-byte string in the first batch sets the width to 104. */
    tmp_path(path, sizeof path, "wide.h5");
    long_row = 10;
    long_len = 100;
    static const size_t sizes[] = {50, 60};
    assert_int_equal(write_table(path, false, sizes, 2), SF_OK);
    check_table(path, 110, 33, NULL);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/data/beta", H5P_DEFAULT);
    hid_t t = H5Dget_type(d);
    assert_int_equal(H5Tget_size(t), 104);
    H5Tclose(t);
    H5Dclose(d);
    H5Fclose(f);

    /* A later string longer than the width is a clear error. */
    tmp_path(path, sizeof path, "narrow.h5");
    long_row = 70;
    assert_int_equal(write_table(path, false, sizes, 2), SF_ERR_ARG);
    const char *msg = sf_error_message();
    assert_non_null(strstr(msg, "narrow.h5"));
    assert_non_null(strstr(msg, "column 'beta', row 70"));
    assert_non_null(strstr(msg, "100 bytes"));
    assert_non_null(strstr(msg, "width of 64 bytes"));
    assert_non_null(strstr(msg, "variable-length"));
    long_row = UINT64_MAX;
}

static void test_projection(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "proj.h5");
    static const size_t sizes[] = {777, 777};
    assert_int_equal(write_table(path, false, sizes, 2), SF_OK);
    static const uint8_t want_a[4] = {1, 0, 1, 0};
    static const uint8_t want_b[4] = {0, 0, 0, 1};
    check_table(path, 1554, 500, want_a);
    check_table(path, 1554, 500, want_b);
}

/* Reads a whole 1-D dataset of n elements as mtype into buf. */
static void read_all(hid_t f, const char *obj, hid_t mtype, void *buf)
{
    hid_t d = H5Dopen2(f, obj, H5P_DEFAULT);
    assert_true(d >= 0);
    assert_true(H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    H5Dclose(d);
}

/* One batch with nulls at rows 2 and 5 of every column: the file holds the
 * documented placeholders and a uint8 mask per column; the reader gives back
 * the nulls with the value slots sf_batch_set_null leaves. */
static void test_nulls_written(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "nulls.h5");
    sf_schema s;
    roundtrip_schema(&s);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_HDF5, NULL, &s, false, &w), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 16), SF_OK);
    fill_batch(&b, 100, 10);   /* rows 100..109: no special values */
    for (int c = 0; c < 4; c++) {
        assert_int_equal(sf_batch_set_null(&b, c, 2), SF_OK);
        assert_int_equal(sf_batch_set_null(&b, c, 5), SF_OK);
    }
    b.cols[1].i64[5] = 4242;    /* whatever a null's slot holds is not written */
    b.cols[2].f64[2] = 42.5;
    assert_int_equal(sf_table_writer_write(w, &b), SF_OK);
    assert_int_equal(sf_table_writer_close(&w), SF_OK);
    sf_batch_fini(&b);

    /* The file as another program sees it. */
    static const uint8_t mask_exp[10] = {1, 1, 0, 1, 1, 0, 1, 1, 1, 1};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    static const char *names[4] = {"zeta", "alpha", "mid", "beta"};
    for (int c = 0; c < 4; c++) {
        char obj[64];
        snprintf(obj, sizeof obj, "/table/_valid/%s", names[c]);
        hid_t d = H5Dopen2(f, obj, H5P_DEFAULT);
        assert_true(d >= 0);
        hid_t t = H5Dget_type(d);
        assert_true(H5Tequal(t, H5T_STD_U8LE) > 0);
        H5Tclose(t);
        H5Dclose(d);
        uint8_t m[10];
        read_all(f, obj, H5T_NATIVE_UINT8, m);
        assert_memory_equal(m, mask_exp, 10);
    }
    int64_t iv[10];
    double fv[10];
    read_all(f, "/table/alpha", H5T_NATIVE_INT64, iv);
    read_all(f, "/table/mid", H5T_NATIVE_DOUBLE, fv);
    assert_int_equal(iv[2], 0);
    assert_int_equal(iv[5], 0);
    assert_int_equal(iv[4], int_of(104));
    assert_true(isnan(fv[2]) && isnan(fv[5]));
    assert_true(fv[3] == float_of(103));
    H5Fclose(f);

    sf_input_config cfg;
    h5_config(&cfg, path, NULL, 100);   /* the default group, /table */
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_schema(r)->ncols, 4);   /* _valid is not a column */
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_int_equal(b.nrows, 10);
    char buf[64];
    for (int c = 0; c < 4; c++) assert_int_equal(b.cols[c].nulls, 2);
    for (size_t k = 0; k < 10; k++) {
        uint64_t i = 100 + k;
        bool null = k == 2 || k == 5;
        for (int c = 0; c < 4; c++) assert_int_equal(sf_col_is_null(&b.cols[c], k), null);
        assert_int_equal(b.cols[0].i64[k], null ? 0 : ts_of(i));
        assert_int_equal(b.cols[1].i64[k], null ? 0 : int_of(i));
        assert_true(b.cols[2].f64[k] == (null ? 0.0 : float_of(i)));
        size_t len = null ? 0 : str_of(i, buf), got;
        const char *str = sf_dict_str(&b.cols[3].dict, b.cols[3].code[k], &got);
        assert_int_equal(got, len);
        assert_memory_equal(str, buf, len);
    }
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_true(eof);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
    sf_schema_fini(&s);
}

/* ---- nulls over many batches ----------------------------------------------- */

/* Written as batches of 40000, 30000, 25000 and 5000 rows. Column 1 (alpha)
 * has its first nulls in the third batch, so its mask is created there with
 * 70000 back-filled 1s (more than one piece of the 1s buffer); alpha and beta
 * have no nulls in the fourth batch, which is written from a fresh batch
 * without validity arrays; "clean" never has a null and gets no mask. */
#define NT_ROWS 100000
#define NT_B3 70000   /* first row of the third batch */
#define NT_B4 95000   /* first row of the fourth batch */
#define NT_COLS 5
static const size_t nt_sizes[] = {40000, 30000, 25000, 5000};
static const char *nt_names[NT_COLS] = {"zeta", "alpha", "mid", "beta", "clean"};
/* Nulls of each column over the whole table, counted by hand from nt_null:
 * i % 7 == 3 below 100000; multiples of 11 in [70000, 95000) (6364*11 ..
 * 8636*11); i % 5 == 1; i % 4 == 2 below 95000; none. */
static const size_t nt_total_nulls[NT_COLS] = {14286, 2273, 20000, 23750, 0};

static bool nt_null(int c, uint64_t i)
{
    switch (c) {
    case 0: return i % 7 == 3;
    case 1: return i >= NT_B3 && i < NT_B4 && i % 11 == 0;
    case 2: return i % 5 == 1;
    case 3: return i < NT_B4 && i % 4 == 2;
    default: return false;
    }
}

/* NaN at every 13th row, besides float_of's own at row 5: values, not nulls. */
static double nt_float(uint64_t i) { return i % 13 == 0 ? NAN : float_of(i); }

static void nt_schema(sf_schema *s)
{
    sf_schema_init(s);
    assert_int_equal(sf_schema_add(s, "zeta", SF_TIMESTAMP), SF_OK);
    assert_int_equal(sf_schema_add(s, "alpha", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "mid", SF_FLOAT64), SF_OK);
    assert_int_equal(sf_schema_add(s, "beta", SF_STRING), SF_OK);
    assert_int_equal(sf_schema_add(s, "clean", SF_INT64), SF_OK);
}

static void nt_fill(sf_batch *b, uint64_t first, size_t n)
{
    sf_batch_clear(b);
    char buf[64];
    for (size_t r = 0; r < n; r++) {
        uint64_t i = first + r;
        b->cols[0].i64[r] = ts_of(i);
        b->cols[1].i64[r] = int_of(i);
        b->cols[2].f64[r] = nt_float(i);
        b->cols[4].i64[r] = (int64_t)i * 3 - 1;
        if (!nt_null(3, i)) {
            size_t len = str_of(i, buf);
            assert_int_equal(sf_dict_intern(&b->cols[3].dict, buf, len, &b->cols[3].code[r]), SF_OK);
        }
        for (int c = 0; c < NT_COLS; c++)
            if (nt_null(c, i)) assert_int_equal(sf_batch_set_null(b, c, r), SF_OK);
    }
    b->nrows = n;
    b->first_row = first;
}

static void nt_write(const char *path, bool vlen)
{
    sf_schema s;
    nt_schema(&s);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_HDF5, "/t", &s, vlen, &w), SF_OK);
    sf_batch b, fresh;
    assert_int_equal(sf_batch_init(&b, &s, NULL, 40000), SF_OK);
    assert_int_equal(sf_batch_init(&fresh, &s, NULL, 5000), SF_OK);
    uint64_t first = 0;
    for (int k = 0; k < 4; k++) {
        sf_batch *use = k == 3 ? &fresh : &b;
        nt_fill(use, first, nt_sizes[k]);
        if (k == 3) {
            assert_null(use->cols[1].valid);
            assert_null(use->cols[3].valid);
        }
        assert_int_equal(sf_table_writer_write(w, use), SF_OK);
        first += nt_sizes[k];
    }
    assert_int_equal(first, NT_ROWS);
    assert_int_equal(sf_table_writer_close(&w), SF_OK);
    sf_batch_fini(&fresh);
    sf_batch_fini(&b);
    sf_schema_fini(&s);
}

/* Reads the table in batches of batch_rows and checks every null position,
 * every value and the null counts of every batch and of the whole table. */
static void nt_check(const char *path, size_t batch_rows, const uint8_t *want)
{
    sf_input_config cfg;
    h5_config(&cfg, path, "/t", batch_rows);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    const sf_schema *s = sf_reader_schema(r);
    assert_int_equal(s->ncols, NT_COLS);
    for (int c = 0; c < NT_COLS; c++) assert_string_equal(s->fields[c].name, nt_names[c]);
    assert_int_equal(sf_reader_total_rows(r), NT_ROWS);
    if (want) assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    size_t total[NT_COLS] = {0};
    uint64_t seen = 0;
    bool eof = false;
    char buf[64];
    for (;;) {
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        assert_int_equal(b.first_row, seen);
        for (int c = 0; c < NT_COLS; c++) {
            const sf_column *col = &b.cols[c];
            bool loaded = want == NULL || want[c];
            assert_int_equal(col->loaded, loaded);
            if (!loaded || c == 4) {
                assert_null(col->valid);   /* unread, or no mask */
                if (!loaded) continue;
            }
            size_t nulls = 0;
            for (size_t k = 0; k < b.nrows; k++) {
                uint64_t i = seen + k;
                bool null = nt_null(c, i);
                nulls += null;
                if (sf_col_is_null(col, k) != null)
                    fail_msg("column %s, row %llu: null %d, expected %d", nt_names[c], (unsigned long long)i,
                             (int)sf_col_is_null(col, k), (int)null);
                switch (c) {
                case 0: assert_int_equal(col->i64[k], null ? 0 : ts_of(i)); break;
                case 1: assert_int_equal(col->i64[k], null ? 0 : int_of(i)); break;
                case 2: {
                    double e = null ? 0.0 : nt_float(i), v = col->f64[k];
                    if (isnan(e)) assert_true(isnan(v));
                    else assert_true(v == e);
                    break;
                }
                case 3: {
                    size_t len = null ? 0 : str_of(i, buf), got;
                    const char *str = sf_dict_str(&col->dict, col->code[k], &got);
                    assert_int_equal(got, len);
                    assert_memory_equal(str, buf, len);
                    break;
                }
                default: assert_int_equal(col->i64[k], (int64_t)i * 3 - 1);
                }
            }
            assert_int_equal(col->nulls, nulls);
            total[c] += col->nulls;
        }
        seen += b.nrows;
    }
    assert_int_equal(seen, NT_ROWS);
    for (int c = 0; c < NT_COLS; c++) assert_int_equal(total[c], want == NULL || want[c] ? nt_total_nulls[c] : 0);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

/* The masks on disk: uint8, chunked like the data (64 Ki rows of 1 byte),
 * extendible, the column's length, 1 exactly where the row is present. */
static void nt_check_layout(const char *path)
{
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t g = H5Gopen2(f, "/t", H5P_DEFAULT);
    H5G_info_t info;
    assert_true(H5Gget_info(g, &info) >= 0);
    assert_int_equal(info.nlinks, NT_COLS + 1);   /* the columns and _valid */
    H5Gclose(g);
    assert_int_equal(H5Lexists(f, "/t/_valid/clean", H5P_DEFAULT), 0);
    uint8_t *m = malloc(NT_ROWS);
    assert_non_null(m);
    for (int c = 0; c < 4; c++) {
        char obj[64];
        snprintf(obj, sizeof obj, "/t/_valid/%s", nt_names[c]);
        hid_t d = H5Dopen2(f, obj, H5P_DEFAULT);
        assert_true(d >= 0);
        hid_t t = H5Dget_type(d);
        assert_true(H5Tequal(t, H5T_STD_U8LE) > 0);
        H5Tclose(t);
        hid_t sp = H5Dget_space(d);
        hsize_t dim, maxdim;
        H5Sget_simple_extent_dims(sp, &dim, &maxdim);
        assert_int_equal(dim, NT_ROWS);
        assert_true(maxdim == H5S_UNLIMITED);
        H5Sclose(sp);
        hid_t pl = H5Dget_create_plist(d);
        hsize_t chunk = 0;
        assert_int_equal(H5Pget_layout(pl), H5D_CHUNKED);
        assert_int_equal(H5Pget_chunk(pl, 1, &chunk), 1);
        assert_int_equal(chunk, 65536);
        H5Pclose(pl);
        H5Dclose(d);
        read_all(f, obj, H5T_NATIVE_UINT8, m);
        for (uint64_t i = 0; i < NT_ROWS; i++)
            if (m[i] != !nt_null(c, i))
                fail_msg("%s[%llu] = %u, expected %d", obj, (unsigned long long)i, m[i], !nt_null(c, i));
    }
    free(m);
    H5Fclose(f);
}

static void test_nulls_roundtrip(void **state)
{
    (void)state;
    char path[128];
    for (int vlen = 0; vlen < 2; vlen++) {
        tmp_path(path, sizeof path, vlen ? "nt_vlen.h5" : "nt_fixed.h5");
        nt_write(path, vlen);
        nt_check_layout(path);
        nt_check(path, 6000, NULL);    /* batches that straddle the written ones */
        nt_check(path, 65536, NULL);
    }
}

static void test_nulls_projection(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "nt_proj.h5");
    nt_write(path, false);
    static const uint8_t want_a[NT_COLS] = {0, 1, 0, 1, 1};
    static const uint8_t want_b[NT_COLS] = {1, 0, 1, 0, 0};
    nt_check(path, 7777, want_a);
    nt_check(path, 7777, want_b);
}

static void test_empty_table(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "empty.h5");
    static const size_t sizes[] = {0};
    assert_int_equal(write_table(path, false, sizes, 0), SF_OK);   /* no batch at all */
    sf_input_config cfg;
    h5_config(&cfg, path, "/data", 10);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_schema(r)->ncols, 4);
    assert_int_equal(sf_reader_total_rows(r), 0);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof = false;
    assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
    assert_true(eof);
    assert_int_equal(b.nrows, 0);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

/* ---- files made with the HDF5 C API --------------------------------------- */

static void put(hid_t g, const char *name, hid_t ftype, hid_t mtype, hsize_t n, const void *data)
{
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(d >= 0);
    if (n) assert_true(H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
    H5Dclose(d);
    H5Sclose(sp);
}

static hid_t fixed_str(size_t size, H5T_str_t pad)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, size);
    H5Tset_strpad(t, pad);
    return t;
}

/* A fixed-length string attribute (h5py writes variable-length ones; the
 * writer tests cover those). */
static void put_attr(hid_t g, const char *dset, const char *value)
{
    hid_t d = H5Dopen2(g, dset, H5P_DEFAULT);
    hid_t t = fixed_str(strlen(value) + 1, H5T_STR_NULLTERM);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(d, "shardflow_type", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    assert_true(H5Awrite(a, t, value) >= 0);
    H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    H5Dclose(d);
}

static void test_native_types(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "native.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/t", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);   /* no creation order */
    static const int32_t i32[5] = {INT32_MIN, -1, 0, 1, INT32_MAX};
    static const uint16_t u16[5] = {0, 1, 65535, 32768, 7};
    static const float f32[5] = {1.5f, 0.1f, -3.25f, 1e30f, -0.0f};
    static const char fixed[5][8] = {"a", "", {'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'}, "xyz", "hello"};
    static const char spaced[5][6] = {{'a', 'b', ' ', ' ', ' ', ' '}, {' ', ' ', ' ', ' ', ' ', ' '},
                                      {'a', ' ', 'b', ' ', ' ', ' '}, {'s', 'i', 'x', 'x', 'x', 'x'},
                                      {'q', ' ', ' ', ' ', ' ', ' '}};
    static const int64_t ts[5] = {0, 1, -1000000, INT64_C(1767225600000000), 42};
    static const uint64_t u64[5] = {0, 1, INT64_MAX, 5, 6};
    static const int8_t i8[5] = {-128, 127, 0, -5, 5};
    /* Created in an order that is not name order. */
    put(g, "c_int32", H5T_STD_I32BE, H5T_NATIVE_INT32, 5, i32);   /* big-endian on disk */
    put(g, "a_uint16", H5T_STD_U16LE, H5T_NATIVE_UINT16, 5, u16);
    hid_t sp6 = fixed_str(6, H5T_STR_SPACEPAD);
    put(g, "e_space", sp6, sp6, 5, spaced);
    H5Tclose(sp6);
    put(g, "b_float32", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 5, f32);
    hid_t np8 = fixed_str(8, H5T_STR_NULLPAD);
    put(g, "d_fixed", np8, np8, 5, fixed);
    H5Tclose(np8);
    put(g, "f_ts", H5T_STD_I64LE, H5T_NATIVE_INT64, 5, ts);
    put_attr(g, "f_ts", "timestamp");
    put(g, "g_uint64", H5T_STD_U64LE, H5T_NATIVE_UINT64, 5, u64);
    put(g, "h_int8", H5T_STD_I8LE, H5T_NATIVE_INT8, 5, i8);
    hid_t sub = H5Gcreate2(g, "sub", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);   /* ignored */
    put(sub, "x", H5T_STD_I32LE, H5T_NATIVE_INT32, 2, i32);
    H5Gclose(sub);
    H5Gclose(g);
    H5Fclose(f);

    sf_input_config cfg;
    h5_config(&cfg, path, "/t", 2);   /* batches of 2, 2, 1 rows */
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    const sf_schema *s = sf_reader_schema(r);
    static const char *names[] = {"a_uint16", "b_float32", "c_int32", "d_fixed",
                                  "e_space",  "f_ts",      "g_uint64", "h_int8"};
    static const sf_type types[] = {SF_INT64, SF_FLOAT64, SF_INT64,  SF_STRING,
                                    SF_STRING, SF_TIMESTAMP, SF_INT64, SF_INT64};
    assert_int_equal(s->ncols, 8);
    for (int c = 0; c < 8; c++) {
        assert_string_equal(s->fields[c].name, names[c]);
        assert_int_equal(s->fields[c].type, types[c]);
    }
    static const char *fixed_exp[5] = {"a", "", "abcdefgh", "xyz", "hello"};
    static const char *spaced_exp[5] = {"ab", "", "a b", "sixxxx", "q"};
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    size_t row = 0;
    bool eof = false;
    for (;;) {
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        assert_int_equal(b.nrows, row < 4 ? 2 : 1);
        for (size_t k = 0; k < b.nrows; k++, row++) {
            assert_int_equal(b.cols[0].i64[k], u16[row]);
            assert_true(b.cols[1].f64[k] == (double)f32[row]);
            assert_int_equal(signbit(b.cols[1].f64[k]) != 0, signbit(f32[row]) != 0);   /* -0.0f stays */
            assert_int_equal(b.cols[2].i64[k], i32[row]);
            size_t len;
            const char *str = sf_dict_str(&b.cols[3].dict, b.cols[3].code[k], &len);
            assert_int_equal(len, strlen(fixed_exp[row]));
            assert_memory_equal(str, fixed_exp[row], len);
            str = sf_dict_str(&b.cols[4].dict, b.cols[4].code[k], &len);
            assert_int_equal(len, strlen(spaced_exp[row]));
            assert_memory_equal(str, spaced_exp[row], len);
            assert_int_equal(b.cols[5].i64[k], ts[row]);
            assert_int_equal(b.cols[6].i64[k], (int64_t)u64[row]);
            assert_int_equal(b.cols[7].i64[k], i8[row]);
        }
    }
    assert_int_equal(row, 5);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

/* Opens path/group and expects failure code with every needle in the message. */
static void expect_open_error(const char *path, const char *group, sf_status code, const char *n1,
                              const char *n2, const char *n3)
{
    sf_input_config cfg;
    h5_config(&cfg, path, group, 100);
    sf_reader *r = NULL;
    sf_status rc = sf_reader_open(&cfg, &r);
    const char *msg = sf_error_message();
    if (rc != code) fail_msg("expected %d, got %d: %s", (int)code, (int)rc, msg);
    assert_null(r);
    const char *needles[3] = {n1, n2, n3};
    for (int k = 0; k < 3; k++)
        if (needles[k] && !strstr(msg, needles[k])) fail_msg("'%s' not in message: %s", needles[k], msg);
    sf_input_config_fini(&cfg);
}

static void test_errors(void **state)
{
    (void)state;
    char path[128], text[128];
    tmp_path(path, sizeof path, "bad.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    static const int32_t v[7] = {1, 2, 3, 4, 5, 6, 7};
    hid_t g = H5Gcreate2(f, "/uneq", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, 5, v);
    put(g, "b", H5T_STD_I32LE, H5T_NATIVE_INT32, 7, v);
    H5Gclose(g);

    g = H5Gcreate2(f, "/compound", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ct = H5Tcreate(H5T_COMPOUND, 8);
    H5Tinsert(ct, "x", 0, H5T_NATIVE_INT32);
    H5Tinsert(ct, "y", 4, H5T_NATIVE_INT32);
    put(g, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, 3, v);
    put(g, "pair", ct, ct, 3, v);
    H5Tclose(ct);
    H5Gclose(g);

    g = H5Gcreate2(f, "/twod", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dims[2] = {2, 3};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(g, "grid", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Gclose(g);

    g = H5Gcreate2(f, "/badattr", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "when", H5T_STD_I64LE, H5T_NATIVE_INT32, 3, v);
    put_attr(g, "when", "date");
    H5Gclose(g);
    g = H5Gcreate2(f, "/floatts", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "when", H5T_IEEE_F64LE, H5T_NATIVE_INT32, 3, v);
    put_attr(g, "when", "timestamp");
    H5Gclose(g);

    g = H5Gcreate2(f, "/empty", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(g);
    static const int32_t one = 1;
    put(f, "notagroup", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &one);
    H5Fclose(f);

    expect_open_error("/nonexistent-dir/x.h5", NULL, SF_ERR_IO, "/nonexistent-dir/x.h5", "No such file", NULL);
    tmp_path(text, sizeof text, "text.h5");
    FILE *fp = fopen(text, "w");
    fputs("a,b\n1,2\n", fp);
    fclose(fp);
    expect_open_error(text, NULL, SF_ERR_H5, text, "cannot open as an HDF5 file", NULL);
    expect_open_error(path, "/nope", SF_ERR_H5, path, "no group '/nope'", NULL);
    expect_open_error(path, NULL, SF_ERR_H5, path, "no group '/table'", NULL);   /* the default */
    expect_open_error(path, "/nope/deeper", SF_ERR_H5, "no group '/nope/deeper'", NULL, NULL);
    expect_open_error(path, "/notagroup", SF_ERR_H5, "'/notagroup' is not a group", NULL, NULL);
    expect_open_error(path, "/uneq", SF_ERR_PARSE, "dataset '/uneq/b' has 7 rows but '/uneq/a' has 5", path,
                      NULL);
    expect_open_error(path, "/compound", SF_ERR_PARSE, "dataset '/compound/pair'", "unsupported type (compound)",
                      path);
    expect_open_error(path, "/twod", SF_ERR_PARSE, "dataset '/twod/grid' has 2 dimensions", NULL, NULL);
    expect_open_error(path, "/badattr", SF_ERR_PARSE, "'/badattr/when'", "unknown shardflow_type 'date'", NULL);
    expect_open_error(path, "/floatts", SF_ERR_PARSE, "'/floatts/when'", "needs an integer dataset", "float");
    expect_open_error(path, "/empty", SF_ERR_PARSE, "group '/empty' holds no datasets", NULL, NULL);

    /* The writer: a path that cannot be created, a name that cannot be a
     * dataset. */
    sf_schema s;
    roundtrip_schema(&s);
    sf_table_writer *w = NULL;
    assert_int_equal(sf_table_writer_create("/nonexistent-dir/out.h5", SF_OUTPUT_HDF5, NULL, &s, false, &w),
                     SF_ERR_H5);
    assert_null(w);
    assert_non_null(strstr(sf_error_message(), "/nonexistent-dir/out.h5: cannot create the HDF5 file"));
    assert_int_equal(sf_schema_add(&s, "a/b", SF_INT64), SF_OK);
    tmp_path(text, sizeof text, "slash.h5");
    assert_int_equal(sf_table_writer_create(text, SF_OUTPUT_HDF5, NULL, &s, false, &w), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), "column name 'a/b'"));
    sf_schema_fini(&s);
}

/* An unsigned 64-bit value above INT64_MAX fails when its rows are read; a
 * projection that leaves the column out never reads it, so never fails. */
static void test_uint64_overflow_and_projection(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "u64.h5");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/table", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    uint64_t big[300];
    int32_t key[300];
    for (int i = 0; i < 300; i++) {
        big[i] = (uint64_t)i;
        key[i] = 3 * i;
    }
    big[250] = (uint64_t)INT64_MAX + 1;
    put(g, "big", H5T_STD_U64LE, H5T_NATIVE_UINT64, 300, big);
    put(g, "key", H5T_STD_I32LE, H5T_NATIVE_INT32, 300, key);
    H5Gclose(g);
    H5Fclose(f);

    for (int projected = 0; projected < 2; projected++) {
        sf_input_config cfg;
        h5_config(&cfg, path, NULL, 100);
        sf_reader *r = NULL;
        assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
        static const uint8_t only_key[2] = {0, 1};
        if (projected) assert_int_equal(sf_reader_set_projection(r, only_key), SF_OK);
        sf_batch b;
        assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
        bool eof = false;
        uint64_t rows = 0;
        sf_status rc = SF_OK;
        while (!eof) {
            rc = sf_reader_next(r, &b, &eof);
            if (rc != SF_OK) break;
            for (size_t k = 0; k < b.nrows; k++) {
                assert_int_equal(b.cols[1].i64[k], 3 * (int64_t)(rows + k));
                if (!projected) assert_int_equal(b.cols[0].i64[k], (int64_t)(rows + k));
            }
            rows += b.nrows;
        }
        if (projected) {
            assert_int_equal(rc, SF_OK);
            assert_int_equal(rows, 300);
        } else {
            assert_int_equal(rc, SF_ERR_PARSE);
            assert_int_equal(rows, 200);   /* the third batch holds element 250 */
            const char *msg = sf_error_message();
            assert_non_null(strstr(msg, path));
            assert_non_null(strstr(msg, "dataset '/table/big', element 250"));
            assert_non_null(strstr(msg, "9223372036854775808 does not fit int64"));
        }
        sf_batch_fini(&b);
        sf_reader_destroy(&r);
        sf_input_config_fini(&cfg);
    }
}

/* ---- masks in files made with the HDF5 C API -------------------------------- */

/* A group without creation order (columns in name order), masks of several
 * integer types, placeholders under the nulls that are not 0 / "" (and one
 * that does not even fit int64), a NaN that is a value, a column without a
 * mask, a subgroup inside _valid that is ignored; read in batches of 4 and 2
 * rows so the masks' hyperslabs move with the columns'. */
static void test_handmade_masks(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "masks.h5");
    static const int32_t a_int[6] = {10, 20, 999, 40, 50, 999};
    static const uint8_t a_mask[6] = {1, 1, 0, 1, 1, 0};
    static const char b_str[6][8] = {"x", "garbage", "", "yy", "garbage", "z"};
    static const int32_t b_mask[6] = {1, 0, 1, 1, 0, 1};
    static const double c_f64[6] = {1.5, NAN, 2.5, NAN, -0.0, 7};
    static const int16_t c_mask[6] = {1, 1, 0, 0, 1, 1};
    static const uint64_t d_u64[6] = {1, UINT64_C(9223372036854775813), 3, 4, 5, 6};
    static const uint8_t d_mask[6] = {1, 0, 1, 1, 1, 1};
    const char *e_vstr[6] = {"p", "q", "garbage", "s", "", "u"};
    static const int8_t e_mask[6] = {1, 1, 0, 1, 1, 1};
    static const int8_t f_plain[6] = {1, 2, 3, 4, 5, 6};

    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/h", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t v = H5Gcreate2(g, "_valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "f_plain", H5T_STD_I8LE, H5T_NATIVE_INT8, 6, f_plain);
    put(g, "a_int", H5T_STD_I32LE, H5T_NATIVE_INT32, 6, a_int);
    put(v, "a_int", H5T_STD_U8LE, H5T_NATIVE_UINT8, 6, a_mask);
    hid_t np8 = fixed_str(8, H5T_STR_NULLPAD);
    put(g, "b_str", np8, np8, 6, b_str);
    H5Tclose(np8);
    put(v, "b_str", H5T_STD_I32LE, H5T_NATIVE_INT32, 6, b_mask);
    put(g, "c_f64", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 6, c_f64);
    put(v, "c_f64", H5T_STD_I16BE, H5T_NATIVE_INT16, 6, c_mask);
    put(g, "d_u64", H5T_STD_U64LE, H5T_NATIVE_UINT64, 6, d_u64);
    put(v, "d_u64", H5T_STD_U8LE, H5T_NATIVE_UINT8, 6, d_mask);
    hid_t vs = H5Tcopy(H5T_C_S1);
    H5Tset_size(vs, H5T_VARIABLE);
    put(g, "e_vstr", vs, vs, 6, e_vstr);
    H5Tclose(vs);
    put(v, "e_vstr", H5T_STD_I8LE, H5T_NATIVE_INT8, 6, e_mask);
    hid_t sub = H5Gcreate2(v, "notes", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);   /* ignored */
    put(sub, "zzz", H5T_STD_U8LE, H5T_NATIVE_UINT8, 2, a_mask);
    H5Gclose(sub);
    H5Gclose(v);
    H5Gclose(g);
    H5Fclose(f);

    sf_input_config cfg;
    h5_config(&cfg, path, "/h", 4);
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    const sf_schema *s = sf_reader_schema(r);
    static const char *names[] = {"a_int", "b_str", "c_f64", "d_u64", "e_vstr", "f_plain"};
    assert_int_equal(s->ncols, 6);
    for (int c = 0; c < 6; c++) assert_string_equal(s->fields[c].name, names[c]);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    size_t row = 0;
    bool eof = false;
    for (;;) {
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        if (eof) break;
        size_t n = b.nrows;
        assert_int_equal(n, row == 0 ? 4 : 2);
        size_t nulls[6] = {0};
        for (size_t k = 0; k < n; k++) {
            size_t i = row + k;
            nulls[0] += !a_mask[i];
            nulls[1] += !b_mask[i];
            nulls[2] += !c_mask[i];
            nulls[3] += !d_mask[i];
            nulls[4] += !e_mask[i];
            assert_int_equal(sf_col_is_null(&b.cols[0], k), !a_mask[i]);
            assert_int_equal(sf_col_is_null(&b.cols[1], k), !b_mask[i]);
            assert_int_equal(sf_col_is_null(&b.cols[2], k), !c_mask[i]);
            assert_int_equal(sf_col_is_null(&b.cols[3], k), !d_mask[i]);
            assert_int_equal(sf_col_is_null(&b.cols[4], k), !e_mask[i]);
            assert_false(sf_col_is_null(&b.cols[5], k));
            assert_int_equal(b.cols[0].i64[k], a_mask[i] ? a_int[i] : 0);
            size_t len;
            const char *str = sf_dict_str(&b.cols[1].dict, b.cols[1].code[k], &len);
            const char *bexp = b_mask[i] ? b_str[i] : "";
            assert_int_equal(len, strlen(bexp));
            assert_memory_equal(str, bexp, len);
            if (!c_mask[i]) assert_true(b.cols[2].f64[k] == 0.0 && !signbit(b.cols[2].f64[k]));
            else if (isnan(c_f64[i])) assert_true(isnan(b.cols[2].f64[k]));   /* a value, not a null */
            else assert_true(b.cols[2].f64[k] == c_f64[i]);
            assert_int_equal(b.cols[3].i64[k], d_mask[i] ? (int64_t)d_u64[i] : 0);
            str = sf_dict_str(&b.cols[4].dict, b.cols[4].code[k], &len);
            const char *eexp = e_mask[i] ? e_vstr[i] : "";
            assert_int_equal(len, strlen(eexp));
            assert_memory_equal(str, eexp, len);
            assert_int_equal(b.cols[5].i64[k], f_plain[i]);
        }
        for (int c = 0; c < 5; c++) assert_int_equal(b.cols[c].nulls, nulls[c]);
        assert_null(b.cols[5].valid);
        /* What lay under a null never reaches the dictionaries. */
        for (int c = 1; c < 5; c += 3)
            for (uint32_t code = 0; code < b.cols[c].dict.n; code++) {
                size_t len;
                const char *str = sf_dict_str(&b.cols[c].dict, code, &len);
                assert_false(len == 7 && memcmp(str, "garbage", 7) == 0);
            }
        row += n;
    }
    assert_int_equal(row, 6);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

/* Bad masks: caught at open (length, orphan, shape, type) or, for values,
 * when their rows are read, and only for loaded columns. */
static void test_mask_errors(void **state)
{
    (void)state;
    char path[128];
    tmp_path(path, sizeof path, "badmask.h5");
    static const int32_t vals[5] = {1, 2, 3, 4, 5};
    static const uint8_t ones[5] = {1, 1, 1, 1, 1};
    static const uint8_t badv[5] = {1, 1, 0, 2, 1};
    static const double fmask[5] = {1, 1, 1, 1, 1};
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t g = H5Gcreate2(f, "/len", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t v = H5Gcreate2(g, "_valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, 5, vals);
    put(v, "a", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, ones);
    H5Gclose(v);
    H5Gclose(g);
    g = H5Gcreate2(f, "/orphan", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    v = H5Gcreate2(g, "_valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, 5, vals);
    put(v, "a", H5T_STD_U8LE, H5T_NATIVE_UINT8, 5, ones);
    put(v, "zzz", H5T_STD_U8LE, H5T_NATIVE_UINT8, 5, ones);
    H5Gclose(v);
    H5Gclose(g);
    g = H5Gcreate2(f, "/ftype", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    v = H5Gcreate2(g, "_valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, 5, vals);
    put(v, "a", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 5, fmask);
    H5Gclose(v);
    H5Gclose(g);
    g = H5Gcreate2(f, "/twod", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    v = H5Gcreate2(g, "_valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, 4, vals);
    hsize_t dims[2] = {2, 2};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(v, "a", H5T_STD_U8LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Gclose(v);
    H5Gclose(g);
    g = H5Gcreate2(f, "/value", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    v = H5Gcreate2(g, "_valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    put(g, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, 5, vals);
    put(g, "b", H5T_STD_I32LE, H5T_NATIVE_INT32, 5, vals);
    put(v, "a", H5T_STD_U8LE, H5T_NATIVE_UINT8, 5, badv);
    H5Gclose(v);
    H5Gclose(g);
    H5Fclose(f);

    expect_open_error(path, "/len", SF_ERR_PARSE, path, "validity mask '/len/_valid/a' has 4 elements",
                      "column '/len/a' has 5 rows");
    expect_open_error(path, "/orphan", SF_ERR_PARSE, path, "validity mask '/orphan/_valid/zzz'",
                      "names no column of group '/orphan'");
    expect_open_error(path, "/ftype", SF_ERR_PARSE, path, "validity mask '/ftype/_valid/a' is a float dataset",
                      "integer");
    expect_open_error(path, "/twod", SF_ERR_PARSE, path, "validity mask '/twod/_valid/a' has 2 dimensions", NULL);

    /* A value other than 0 or 1 fails where its rows are read (batches of 2:
     * element 3 is in the second), unless the column is projected away. */
    for (int projected = 0; projected < 2; projected++) {
        sf_input_config cfg;
        h5_config(&cfg, path, "/value", 2);
        sf_reader *r = NULL;
        assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
        static const uint8_t only_b[2] = {0, 1};
        if (projected) assert_int_equal(sf_reader_set_projection(r, only_b), SF_OK);
        sf_batch b;
        assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
        bool eof = false;
        uint64_t rows = 0;
        sf_status rc = SF_OK;
        while (!eof) {
            rc = sf_reader_next(r, &b, &eof);
            if (rc != SF_OK) break;
            rows += b.nrows;
        }
        if (projected) {
            assert_int_equal(rc, SF_OK);
            assert_int_equal(rows, 5);
        } else {
            assert_int_equal(rc, SF_ERR_PARSE);
            assert_int_equal(rows, 2);
            assert_int_equal(b.nrows, 0);   /* the failed batch is left empty */
            const char *msg = sf_error_message();
            assert_non_null(strstr(msg, path));
            assert_non_null(strstr(msg, "validity mask '/value/_valid/a', element 3: value 2"));
        }
        sf_batch_fini(&b);
        sf_reader_destroy(&r);
        sf_input_config_fini(&cfg);
    }

    /* The writer keeps the name of the mask group for the masks. */
    sf_schema s;
    sf_schema_init(&s);
    assert_int_equal(sf_schema_add(&s, "_valid", SF_INT64), SF_OK);
    sf_table_writer *w = NULL;
    tmp_path(path, sizeof path, "reserved.h5");
    assert_int_equal(sf_table_writer_create(path, SF_OUTPUT_HDF5, NULL, &s, false, &w), SF_ERR_ARG);
    assert_null(w);
    assert_non_null(strstr(sf_error_message(), "column name '_valid' is reserved"));
    sf_schema_fini(&s);
}

/* ---- storage layouts: raw reads and their fallbacks ------------------------- */

/* Tables of RL_ROWS rows in group /t, made with the HDF5 C API in many
 * storage layouts: column a (integers, validity mask), b (floats, mask),
 * c (an int64 timestamp column, no mask). Plain little-endian int64 and
 * float64 data and uint8 masks stored contiguously or in unfiltered chunks
 * are read with pread; everything else (compact, filters, fill values of
 * unallocated chunks, user blocks, external storage, other types and byte
 * orders, masks of other integer types) through HDF5. Every layout must
 * give back exactly the values written (rl_a, rl_b, rl_c, the nulls
 * rl_null_a, rl_null_b): those arrays are filled here from formulas and
 * the fill values, before and independently of any read. */
#define RL_ROWS 4321
#define RL_CHUNK 1000

/* File types; RT_DEFAULT (0, a field left out) is int64 for a and c,
 * float64 for b and uint8 for the masks, all little-endian. RT_I48: 8-byte
 * little-endian integers of 48 bits' precision (the top two bytes are
 * padding, zero, also for negative values). */
enum { RT_DEFAULT, RT_I64LE, RT_I64BE, RT_I32LE, RT_I48, RT_F64LE, RT_F64BE, RT_F32LE, RT_U8, RT_I8, RT_U8BE };

typedef struct rl_layout {
    const char *name;
    H5D_layout_t layout;
    hsize_t chunk;        /* chunked: rows per chunk of the data (0: RL_CHUNK) */
    hsize_t mask_chunk;   /* chunked: rows per chunk of the masks (0: as the data) */
    bool unlimited;       /* chunked: extendible (H5S_UNLIMITED) */
    bool latest;          /* the newest file format (its other chunk indexes) */
    bool early;           /* space allocated (and filled) when created */
    int deflate;          /* gzip level, 0: none (with the shuffle filter) */
    bool partial;         /* only the rows of rl_written are written */
    bool fill;            /* user-defined fill values */
    hsize_t userblock;
    bool external;        /* contiguous in an external file */
    int ta, tb, tc, ma, mb; /* file types of a, b, c and of a's and b's masks */
} rl_layout;

static int64_t rl_a[RL_ROWS], rl_c[RL_ROWS];
static double rl_b[RL_ROWS];
static uint8_t rl_mask_a[RL_ROWS], rl_mask_b[RL_ROWS];
static bool rl_null_a[RL_ROWS], rl_null_b[RL_ROWS];

#define RL_FILL_A INT64_C(-7)
#define RL_FILL_B 2.5

/* The file type t (to be closed with H5Tclose). */
static hid_t rl_ftype(int t)
{
    if (t == RT_I48) {
        hid_t i48 = H5Tcopy(H5T_STD_I64LE);
        assert_true(H5Tset_precision(i48, 48) >= 0);
        return i48;
    }
    switch (t) {
    case RT_I64LE: return H5Tcopy(H5T_STD_I64LE);
    case RT_I64BE: return H5Tcopy(H5T_STD_I64BE);
    case RT_I32LE: return H5Tcopy(H5T_STD_I32LE);
    case RT_F64LE: return H5Tcopy(H5T_IEEE_F64LE);
    case RT_F64BE: return H5Tcopy(H5T_IEEE_F64BE);
    case RT_F32LE: return H5Tcopy(H5T_IEEE_F32LE);
    case RT_U8: return H5Tcopy(H5T_STD_U8LE);
    case RT_U8BE: return H5Tcopy(H5T_STD_U8BE);
    default: return H5Tcopy(H5T_STD_I8LE);
    }
}

static size_t rl_size(int t)
{
    return t == RT_I32LE || t == RT_F32LE ? 4 : t == RT_U8 || t == RT_I8 || t == RT_U8BE ? 1 : 8;
}

/* Rows written in a partial layout: chunks 0 and 2 whole, part of chunk 3;
 * chunks 1 and 4 never (unallocated unless allocated early). */
static bool rl_written(const rl_layout *L, uint64_t i)
{
    return !L->partial || i < 1000 || (i >= 2000 && i < 3000) || (i >= 3500 && i < 3700);
}

static uint64_t rl_mix(uint64_t i)
{
    uint64_t z = i * 0x9E3779B97F4A7C15ull + 12345;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* The values and masks of layout L, as written and as HDF5 gives back the
 * rows never written (the fill values, or 0 without one). */
static void rl_reference(const rl_layout *L)
{
    for (uint64_t i = 0; i < RL_ROWS; i++) {
        uint64_t u = rl_mix(i);
        int64_t a = i == 1 ? INT64_MIN : i == 2 ? INT64_MAX : (int64_t)u;
        if (L->ta == RT_I32LE) a = (int32_t)(uint32_t)u;
        if (L->ta == RT_I48) /* [-2^46, 2^46), and the extremes of 48 bits */
            a = i == 1   ? -(INT64_C(1) << 47)
                : i == 2 ? (INT64_C(1) << 47) - 1
                         : (int64_t)(u >> 17) - (INT64_C(1) << 46);
        double b = ldexp((double)(int64_t)(u >> 12) - (double)(1ull << 51), (int)(u % 64) - 40);
        if (i % 97 == 5) b = NAN;
        if (i % 89 == 3) b = -0.0;
        if (i == 11) b = -INFINITY;
        if (L->tb == RT_F32LE) b = (double)(float)b;
        int64_t c = INT64_C(1767225600000000) + (int64_t)i * 1000003 - (int64_t)(u % 1000);
        uint8_t ma = i % 7 != 3, mb = !((i / 50) % 4 == 1 || i == RL_ROWS - 1);
        if (!rl_written(L, i)) {
            a = L->fill ? RL_FILL_A : 0;
            b = L->fill ? RL_FILL_B : 0.0;
            c = 0;                 /* c never has a user fill value */
            ma = L->fill ? 1 : 0;  /* a's mask fills with 1 (present) */
            mb = 0;                /* b's with 0 (null), a set fill or not */
        }
        rl_a[i] = a;
        rl_b[i] = b;
        rl_c[i] = c;
        rl_mask_a[i] = ma;
        rl_mask_b[i] = mb;
        rl_null_a[i] = ma == 0;
        rl_null_b[i] = mb == 0;
    }
}

/* Creates dataset name in g with layout L from the RL_ROWS values at data
 * (memory type mtype, melem bytes each), writing only the rows rl_written
 * gives; fill, if not NULL and L->fill, is the user fill value (memory type
 * mtype). ext_tag names its external file (file.ext_tag.raw) or its source
 * dataset (/src_ext_tag) where the layout has one. */
static void rl_dataset(hid_t g, const char *file, const char *name, const char *ext_tag, int ftype, hid_t mtype,
                       const void *data, size_t melem, const void *fill, const rl_layout *L, hsize_t chunk)
{
    hsize_t dim = RL_ROWS, maxdim = L->unlimited ? H5S_UNLIMITED : RL_ROWS;
    hid_t sp = H5Screate_simple(1, &dim, &maxdim);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (L->layout == H5D_CHUNKED) {
        assert_true(H5Pset_chunk(dcpl, 1, &chunk) >= 0);
        if (L->deflate) {
            assert_true(H5Pset_shuffle(dcpl) >= 0);
            assert_true(H5Pset_deflate(dcpl, (unsigned)L->deflate) >= 0);
        }
    } else if (L->layout != H5D_VIRTUAL) {
        assert_true(H5Pset_layout(dcpl, L->layout) >= 0);
    }
    if (L->external) {
        char ext[160];
        snprintf(ext, sizeof ext, "%s.%s.raw", file, ext_tag);
        assert_true(H5Pset_external(dcpl, ext, 0, RL_ROWS * rl_size(ftype)) >= 0);
    }
    if (L->early) assert_true(H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY) >= 0);
    if (L->fill && fill) assert_true(H5Pset_fill_value(dcpl, mtype, fill) >= 0);
    hid_t ft = rl_ftype(ftype);
    if (L->layout == H5D_VIRTUAL) {
        /* The whole dataset maps a source dataset of the file (/src_<tag>),
         * written as the others are. */
        char src_name[64];
        snprintf(src_name, sizeof src_name, "/src_%s", ext_tag);
        rl_layout plain = *L;
        plain.layout = H5D_CONTIGUOUS;
        hid_t f = H5Iget_file_id(g);
        rl_dataset(f, file, src_name + 1, ext_tag, ftype, mtype, data, melem, fill, &plain, chunk);
        H5Fclose(f);
        hid_t src_sp = H5Screate_simple(1, &dim, NULL);
        assert_true(H5Pset_virtual(dcpl, sp, ".", src_name, src_sp) >= 0);
        H5Sclose(src_sp);
    }
    hid_t d = H5Dcreate2(g, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    assert_true(d >= 0);
    H5Tclose(ft);
    /* Row ranges written, one H5Dwrite each. */
    for (uint64_t i = 0; i < RL_ROWS && L->layout != H5D_VIRTUAL;) {
        if (!rl_written(L, i)) {
            i++;
            continue;
        }
        uint64_t j = i;
        while (j < RL_ROWS && rl_written(L, j)) j++;
        hsize_t start = i, count = j - i;
        hid_t ms = H5Screate_simple(1, &count, NULL);
        assert_true(H5Sselect_hyperslab(sp, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0);
        assert_true(H5Dwrite(d, mtype, ms, sp, H5P_DEFAULT, (const char *)data + i * melem) >= 0);
        H5Sclose(ms);
        i = j;
    }
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
}

/* L with the defaults filled in. */
static rl_layout rl_norm(const rl_layout *L)
{
    rl_layout n = *L;
    if (n.chunk == 0) n.chunk = RL_CHUNK;
    if (n.ta == RT_DEFAULT) n.ta = RT_I64LE;
    if (n.tb == RT_DEFAULT) n.tb = RT_F64LE;
    if (n.tc == RT_DEFAULT) n.tc = RT_I64LE;
    if (n.ma == RT_DEFAULT) n.ma = RT_U8;
    if (n.mb == RT_DEFAULT) n.mb = RT_U8;
    return n;
}

static void rl_write(const char *path, const rl_layout *given)
{
    const rl_layout norm = rl_norm(given), *L = &norm;
    rl_reference(L);
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (L->userblock) assert_true(H5Pset_userblock(fcpl, L->userblock) >= 0);
    if (L->latest) assert_true(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST) >= 0);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, fapl);
    assert_true(f >= 0);
    hid_t g = H5Gcreate2(f, "/t", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t v = H5Gcreate2(g, "_valid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    /* The rows never written hold the fill values in the reference, not
     * what the memory arrays say there: write from copies that hold junk in
     * those rows, so that a reader handing out the arrays' rows would fail. */
    static int64_t wa[RL_ROWS], wc[RL_ROWS];
    static double wb[RL_ROWS];
    static uint8_t wma[RL_ROWS], wmb[RL_ROWS];
    for (uint64_t i = 0; i < RL_ROWS; i++) {
        bool w = rl_written(L, i);
        wa[i] = w ? rl_a[i] : 123456789;
        wb[i] = w ? rl_b[i] : -1e300;
        wc[i] = w ? rl_c[i] : 987654321;
        wma[i] = w ? rl_mask_a[i] : 1;
        wmb[i] = w ? rl_mask_b[i] : 1;
    }
    const int64_t fa = RL_FILL_A;
    const double fb = RL_FILL_B;
    const uint8_t one = 1, zero = 0;
    hsize_t mchunk = L->mask_chunk ? L->mask_chunk : L->chunk;
    rl_dataset(g, path, "a", "a", L->ta, H5T_NATIVE_INT64, wa, 8, &fa, L, L->chunk);
    rl_dataset(g, path, "b", "b", L->tb, H5T_NATIVE_DOUBLE, wb, 8, &fb, L, L->chunk);
    rl_dataset(g, path, "c", "c", L->tc, H5T_NATIVE_INT64, wc, 8, NULL, L, L->chunk);
    put_attr(g, "c", "timestamp");
    rl_dataset(v, path, "a", "mask_a", L->ma, H5T_NATIVE_UINT8, wma, 1, &one, L, mchunk);
    rl_dataset(v, path, "b", "mask_b", L->mb, H5T_NATIVE_UINT8, wmb, 1, &zero, L, mchunk);
    H5Gclose(v);
    H5Gclose(g);
    H5Fclose(f);
    H5Pclose(fapl);
    H5Pclose(fcpl);
}

/* The layout of path as intended: so that each case tests what it says. */
static void rl_check_layout(const char *path, const rl_layout *given)
{
    const rl_layout norm = rl_norm(given), *L = &norm;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t fcpl = H5Fget_create_plist(f);
    hsize_t ub = 99;
    assert_true(H5Pget_userblock(fcpl, &ub) >= 0);
    assert_int_equal(ub, L->userblock);
    H5Pclose(fcpl);
    hid_t d = H5Dopen2(f, "/t/a", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t pl = H5Dget_create_plist(d);
    assert_int_equal(H5Pget_layout(pl), L->layout);
    assert_int_equal(H5Pget_nfilters(pl), L->deflate ? 2 : 0);
    assert_int_equal(H5Pget_external_count(pl), L->external ? 1 : 0);
    if (L->layout == H5D_CHUNKED) {
        /* Partial writes leave chunks unallocated (unless allocated early). */
        hsize_t nchunks = 0;
        hid_t sp = H5Dget_space(d);
        assert_true(H5Dget_num_chunks(d, sp, &nchunks) >= 0);
        H5Sclose(sp);
        hsize_t all = (RL_ROWS + L->chunk - 1) / L->chunk;
        assert_int_equal(nchunks, L->partial && !L->early ? all - 2 : all);
    }
    H5Pclose(pl);
    H5Dclose(d);
    H5Fclose(f);
}

/* Whether the layout tests read with input.mmap (batches then also end at
 * chunk boundaries, and plain columns are lent from the mapping). */
static bool rl_mmap;

static void rl_config(sf_input_config *cfg, const char *path, size_t batch_rows)
{
    h5_config(cfg, path, "/t", batch_rows);
    cfg->mmap = rl_mmap;
}

/* Checks batch b (rows first.. of the table) against the reference;
 * loaded[c] says which columns must be there. */
static void rl_check_batch(const char *what, const sf_batch *b, uint64_t first, const uint8_t *loaded)
{
    assert_int_equal(b->first_row, first);
    assert_int_equal(b->ncols, 3);
    for (int c = 0; c < 3; c++) {
        const sf_column *col = &b->cols[c];
        assert_int_equal(col->loaded, loaded[c]);
        if (!loaded[c]) continue;
        if (c == 2) assert_null(col->valid);   /* no mask */
        size_t nulls = 0;
        for (size_t k = 0; k < b->nrows; k++) {
            uint64_t i = first + k;
            bool null = c == 0 ? rl_null_a[i] : c == 1 ? rl_null_b[i] : false;
            nulls += null;
            if (sf_col_is_null(col, k) != null)
                fail_msg("%s: column %c, row %llu: null %d, expected %d", what, 'a' + c, (unsigned long long)i,
                         (int)sf_col_is_null(col, k), (int)null);
            if (c == 1) {
                double e = null ? 0.0 : rl_b[i], g = col->f64[k];
                bool same = isnan(e) ? isnan(g) != 0 : g == e && signbit(g) == signbit(e);
                if (!same)
                    fail_msg("%s: column b, row %llu: %.17g, expected %.17g", what, (unsigned long long)i, g, e);
            } else {
                int64_t e = null ? 0 : c == 0 ? rl_a[i] : rl_c[i];
                if (col->i64[k] != e)
                    fail_msg("%s: column %c, row %llu: %lld, expected %lld", what, 'a' + c, (unsigned long long)i,
                             (long long)col->i64[k], (long long)e);
            }
        }
        if (col->nulls != nulls)
            fail_msg("%s: column %c, rows %llu..%llu: %zu nulls, expected %zu", what, 'a' + c,
                     (unsigned long long)first, (unsigned long long)(first + b->nrows), col->nulls, nulls);
    }
}

/* Reads the rows [begin, end) of the table (the part set with
 * sf_reader_set_part unless it is the whole table; with cuts, as the
 * sub-parts of sf_reader_split) in batches of batch_rows, checking every
 * batch; projection want may be NULL. */
static void rl_read(const char *path, const char *what, uint64_t begin, uint64_t end, size_t batch_rows,
                    const uint8_t *want, int nsub, const uint64_t *cuts)
{
    sf_input_config cfg;
    rl_config(&cfg, path, batch_rows);
    sf_reader *r = NULL;
    if (sf_reader_open(&cfg, &r) != SF_OK) fail_msg("%s: open: %s", what, sf_error_message());
    const sf_schema *s = sf_reader_schema(r);
    assert_int_equal(s->ncols, 3);
    assert_int_equal(s->fields[0].type, SF_INT64);
    assert_int_equal(s->fields[1].type, SF_FLOAT64);
    assert_int_equal(s->fields[2].type, SF_TIMESTAMP);
    assert_int_equal(sf_reader_total_rows(r), RL_ROWS);
    static const uint8_t all[3] = {1, 1, 1};
    if (want) assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    const uint64_t zeros[2 * 8] = {0};
    if (nsub > 0) {
        assert_true(nsub < 8);
        assert_int_equal(sf_reader_split(r, nsub, cuts, zeros), SF_OK);
    } else if (begin != 0 || end != RL_ROWS) {
        assert_int_equal(sf_reader_set_part(r, begin, end, zeros, zeros), SF_OK);
    }
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    uint64_t row = begin;
    for (;;) {
        bool eof = false;
        if (sf_reader_next(r, &b, &eof) != SF_OK) fail_msg("%s: row %llu: %s", what, (unsigned long long)row,
                                                           sf_error_message());
        if (eof) break;
        uint64_t left = end - row;
        /* Sub-parts never share a batch: a batch ends at the next cut. */
        for (int t = 1; t < nsub; t++)
            if (cuts[t] > row && cuts[t] - row < left) left = cuts[t] - row;
        if (rl_mmap) {
            assert_true(b.nrows >= 1 && b.nrows <= (left < batch_rows ? left : batch_rows));
        } else {
            assert_int_equal(b.nrows, left < batch_rows ? left : batch_rows);
        }
        rl_check_batch(what, &b, row, want ? want : all);
        row += b.nrows;
    }
    assert_int_equal(row, end);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

/* Reads some batches, takes the position, and reads the rest on a fresh
 * reader sought there. */
static void rl_read_seek(const char *path, const char *what, size_t batch_rows, int before)
{
    sf_input_config cfg;
    rl_config(&cfg, path, batch_rows);
    static const uint8_t all[3] = {1, 1, 1};
    sf_reader *r = NULL;
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    bool eof = false;
    uint64_t row = 0;
    for (int k = 0; k < before; k++) {
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        assert_false(eof);
        row += b.nrows;
    }
    sf_reader_pos pos;
    sf_reader_tell(r, &pos);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
    assert_int_equal(sf_reader_seek(r, &pos), SF_OK);
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (;;) {
        if (sf_reader_next(r, &b, &eof) != SF_OK) fail_msg("%s: %s", what, sf_error_message());
        if (eof) break;
        rl_check_batch(what, &b, row, all);
        row += b.nrows;
    }
    assert_int_equal(row, RL_ROWS);
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
}

static const rl_layout rl_layouts[] = {
    {.name = "contiguous", .layout = H5D_CONTIGUOUS},
    {.name = "contiguous, int64 and int8 masks", .layout = H5D_CONTIGUOUS, .ma = RT_I64LE, .mb = RT_I8},
    {.name = "contiguous, partly written, fill values", .layout = H5D_CONTIGUOUS, .partial = true,
     .fill = true},
    {.name = "contiguous, allocated early, partly written", .layout = H5D_CONTIGUOUS, .partial = true,
     .early = true},
    {.name = "compact", .layout = H5D_COMPACT},
    {.name = "contiguous, external file", .layout = H5D_CONTIGUOUS, .external = true},
    {.name = "chunked", .layout = H5D_CHUNKED},
    {.name = "chunked, masks in 333-row chunks", .layout = H5D_CHUNKED, .mask_chunk = 333},
    {.name = "chunked, masks in 333-row chunks, partly written, fill values", .layout = H5D_CHUNKED,
     .mask_chunk = 333, .partial = true, .fill = true},
    {.name = "chunked in 7-row chunks", .layout = H5D_CHUNKED, .chunk = 7},
    {.name = "chunked, one chunk longer than the table, extendible", .layout = H5D_CHUNKED, .chunk = 8192,
     .unlimited = true},
    {.name = "chunked, 48-bit integers in 8 bytes", .layout = H5D_CHUNKED, .ta = RT_I48},
    {.name = "contiguous, 48-bit integers in 8 bytes", .layout = H5D_CONTIGUOUS, .ta = RT_I48},
    {.name = "virtual, of contiguous datasets", .layout = H5D_VIRTUAL},
    {.name = "chunked, extendible", .layout = H5D_CHUNKED, .unlimited = true},
    {.name = "chunked, newest format", .layout = H5D_CHUNKED, .latest = true},
    {.name = "chunked, newest format, extendible", .layout = H5D_CHUNKED, .latest = true,
     .unlimited = true},
    {.name = "one chunk, newest format", .layout = H5D_CHUNKED, .chunk = RL_ROWS, .latest = true},
    {.name = "chunked, gzip", .layout = H5D_CHUNKED, .deflate = 6},
    {.name = "chunked, gzip, partly written, fill values", .layout = H5D_CHUNKED, .deflate = 1,
     .partial = true, .fill = true},
    {.name = "chunked, partly written, fill values", .layout = H5D_CHUNKED, .partial = true,
     .fill = true},
    {.name = "chunked, partly written, no fill values", .layout = H5D_CHUNKED, .partial = true},
    {.name = "chunked, partly written, fill values, int64 and int8 masks", .layout = H5D_CHUNKED,
     .partial = true, .fill = true, .ma = RT_I64LE, .mb = RT_I8},
    {.name = "chunked, allocated early, partly written, fill values", .layout = H5D_CHUNKED,
     .partial = true, .fill = true, .early = true},
    {.name = "chunked, newest format, allocated early, partly written, fill values", .layout = H5D_CHUNKED,
     .partial = true, .fill = true, .early = true, .latest = true},
    {.name = "contiguous, user block", .layout = H5D_CONTIGUOUS, .userblock = 512},
    {.name = "chunked, user block", .layout = H5D_CHUNKED, .userblock = 512},
    {.name = "chunked, user block, partly written, fill values", .layout = H5D_CHUNKED,
     .userblock = 4096, .partial = true, .fill = true},
    {.name = "chunked, int32, float32, int8 masks", .layout = H5D_CHUNKED, .ta = RT_I32LE,
     .tb = RT_F32LE, .ma = RT_I8, .mb = RT_I8},
    {.name = "contiguous, int32, float32, big-endian uint8 masks", .layout = H5D_CONTIGUOUS,
     .ta = RT_I32LE, .tb = RT_F32LE, .ma = RT_U8BE, .mb = RT_U8BE},
    {.name = "chunked, big-endian", .layout = H5D_CHUNKED, .ta = RT_I64BE, .tb = RT_F64BE,
     .tc = RT_I64BE},
    {.name = "contiguous, big-endian", .layout = H5D_CONTIGUOUS, .ta = RT_I64BE, .tb = RT_F64BE,
     .tc = RT_I64BE},
    {.name = "chunked, big-endian int64 with little-endian float64, int64 masks", .layout = H5D_CHUNKED,
     .ta = RT_I64BE, .ma = RT_I64LE, .mb = RT_I64LE},
};
#define RL_NLAYOUTS (sizeof rl_layouts / sizeof rl_layouts[0])

/* Every layout, read whole in batches of several sizes (777 and 1000 rows,
 * one batch), as parts and sub-parts that start inside chunks, row by row
 * across a chunk boundary, after a seek into a chunk, and with a column
 * projected away. */
static void test_storage_layouts(void **state)
{
    (void)state;
    bool gzip = H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0;
    int tested = 0;
    for (size_t l = 0; l < 2 * RL_NLAYOUTS; l++) {
        /* Every layout read by copies, then from the mapping. */
        rl_mmap = l >= RL_NLAYOUTS;
        const rl_layout *L = &rl_layouts[l % RL_NLAYOUTS];
        if (L->deflate && !gzip) continue;
        char path[128], what[256], name[160];
        snprintf(path, sizeof path, "%s/layout_%zu.h5", tmpdir, l % RL_NLAYOUTS);
        snprintf(name, sizeof name, "%s%s", rl_layouts[l % RL_NLAYOUTS].name, rl_mmap ? ", mapped" : "");
        if (!rl_mmap) {
            rl_write(path, L);
            rl_check_layout(path, L);
        } else {
            rl_reference(L); /* the file is the one written above */
        }
        snprintf(what, sizeof what, "%s (whole, 777)", name);
        rl_read(path, what, 0, RL_ROWS, 777, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s (whole, 1000)", name);
        rl_read(path, what, 0, RL_ROWS, 1000, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s (one batch)", name);
        rl_read(path, what, 0, RL_ROWS, 65536, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s (part 1234..3999)", name);
        rl_read(path, what, 1234, 3999, 777, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s (part 3999..4321)", name);
        rl_read(path, what, 3999, RL_ROWS, 100, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s (part 2999..3001)", name);
        rl_read(path, what, 2999, 3001, 777, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s (part 2500..2500)", name);
        rl_read(path, what, 2500, 2500, 777, NULL, 0, NULL);
        snprintf(what, sizeof what, "%s (rows 980..1030 one by one)", name);
        rl_read(path, what, 980, 1030, 1, NULL, 0, NULL);
        static const uint64_t cuts[4] = {17, 1234, 2999, RL_ROWS};
        snprintf(what, sizeof what, "%s (sub-parts)", name);
        rl_read(path, what, 17, RL_ROWS, 777, NULL, 3, cuts);
        static const uint8_t no_a[3] = {0, 1, 1}, only_a[3] = {1, 0, 0};
        snprintf(what, sizeof what, "%s (projection b, c)", name);
        rl_read(path, what, 0, RL_ROWS, 777, no_a, 0, NULL);
        snprintf(what, sizeof what, "%s (projection a, part 555..4000)", name);
        rl_read(path, what, 555, 4000, 777, only_a, 0, NULL);
        snprintf(what, sizeof what, "%s (seek)", name);
        rl_read_seek(path, what, 777, 2);
        tested++;
    }
    rl_mmap = false;
    assert_int_equal(tested, 2 * (gzip ? (int)RL_NLAYOUTS : (int)RL_NLAYOUTS - 2));
}

/* ---- bad mask values and truncated files ---------------------------------- */

/* Reads the table in batches of batch_rows from row begin (a part if not 0)
 * and returns the status of the first failing next, with the rows read
 * before it in *rows; every batch returned is checked. */
static sf_status rl_read_until_error(const char *path, uint64_t begin, size_t batch_rows, const uint8_t *want,
                                     uint64_t *rows)
{
    sf_input_config cfg;
    rl_config(&cfg, path, batch_rows);
    sf_reader *r = NULL;
    sf_status rc = sf_reader_open(&cfg, &r);
    *rows = 0;
    if (rc != SF_OK) {
        sf_input_config_fini(&cfg);
        return rc;
    }
    static const uint8_t all[3] = {1, 1, 1};
    if (want) assert_int_equal(sf_reader_set_projection(r, want), SF_OK);
    const uint64_t zeros[2] = {0};
    if (begin) assert_int_equal(sf_reader_set_part(r, begin, RL_ROWS, zeros, zeros), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
    for (;;) {
        bool eof = false;
        rc = sf_reader_next(r, &b, &eof);
        if (rc != SF_OK) {
            assert_int_equal(b.nrows, 0);   /* the failed batch is left empty */
            break;
        }
        if (eof) break;
        rl_check_batch(path, &b, begin + *rows, want ? want : all);
        *rows += b.nrows;
    }
    sf_batch_fini(&b);
    sf_reader_destroy(&r);
    sf_input_config_fini(&cfg);
    return rc;
}

/* Writes layout L with mask value `bad` at element `at` of a's mask. */
static void rl_write_bad_mask(const char *path, const rl_layout *L, uint64_t at, int bad)
{
    rl_write(path, L);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    assert_true(f >= 0);
    hid_t d = H5Dopen2(f, "/t/_valid/a", H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t sp = H5Dget_space(d);
    hsize_t start = at, count = 1;
    hid_t ms = H5Screate_simple(1, &count, NULL);
    assert_true(H5Sselect_hyperslab(sp, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0);
    const int v = bad;
    assert_true(H5Dwrite(d, H5T_NATIVE_INT, ms, sp, H5P_DEFAULT, &v) >= 0);
    H5Sclose(ms);
    H5Sclose(sp);
    H5Dclose(d);
    H5Fclose(f);
}

/* A mask value other than 0 or 1 fails where its rows are read, with the
 * mask and the element named: in uint8 masks read raw (contiguous and
 * chunked, the value inside a run of 8 checked bytes or in the tail of a
 * batch) and in int8 masks read through HDF5; batches before it are right;
 * a part after it, or a projection without the column, never sees it. */
static void test_mask_value_errors(void **state)
{
    (void)state;
    static const rl_layout chunked = {.name = "chunked", .layout = H5D_CHUNKED};
    static const rl_layout contig = {.name = "contiguous", .layout = H5D_CONTIGUOUS};
    static const rl_layout int8 = {.name = "int8 masks", .layout = H5D_CHUNKED, .ma = RT_I8};
    static const rl_layout i64 = {.name = "int64 masks", .layout = H5D_CONTIGUOUS, .ma = RT_I64LE};
    static const struct {
        const rl_layout *L;
        uint64_t at;
        int bad;
        const char *value;
    } cases[] = {
        {&chunked, 2345, 2, "value 2 "}, {&chunked, RL_ROWS - 1, 2, "value 2 "}, {&chunked, 3, 255, "value 255 "},
        {&contig, 2345, 2, "value 2 "},  {&contig, 4000, 128, "value 128 "},    {&int8, 2345, 2, "value 2 "},
        {&int8, 100, -1, "value -1 "},   {&i64, 2345, 2, "value 2 "},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[128], needle[160];
        snprintf(path, sizeof path, "%s/badmask_%zu.h5", tmpdir, k);
        rl_write_bad_mask(path, cases[k].L, cases[k].at, cases[k].bad);
        snprintf(needle, sizeof needle, "validity mask '/t/_valid/a', element %llu: %s",
                 (unsigned long long)cases[k].at, cases[k].value);
        /* The whole table, and a part starting inside the chunk before the
         * element; batches of 777 rows. */
        const uint64_t begins[2] = {0, cases[k].at >= 5 ? cases[k].at - 5 : 0};
        for (int p = 0; p < 4; p++) {
            /* By copies, then from the mapping (batches also end at chunk
             * boundaries: the failing one is the one holding the element). */
            rl_mmap = p >= 2;
            uint64_t begin = begins[p % 2], rows = 0;
            sf_status rc = rl_read_until_error(path, begin, 777, NULL, &rows);
            rl_mmap = false;
            const char *msg = sf_error_message();
            if (rc != SF_ERR_PARSE) fail_msg("%s, element %llu: status %d: %s", cases[k].L->name,
                                             (unsigned long long)cases[k].at, (int)rc, msg);
            if (p < 2) {
                assert_int_equal(rows, (cases[k].at - begin) / 777 * 777);
            } else {
                assert_true(rows <= cases[k].at - begin && rows + 777 > cases[k].at - begin);
            }
            if (!strstr(msg, path) || !strstr(msg, needle))
                fail_msg("%s: '%s' not in message: %s", cases[k].L->name, needle, msg);
        }
        uint64_t rows = 0;
        static const uint8_t no_a[3] = {0, 1, 1};
        assert_int_equal(rl_read_until_error(path, 0, 777, no_a, &rows), SF_OK);
        assert_int_equal(rows, RL_ROWS);
        if (cases[k].at + 1 < RL_ROWS) {
            assert_int_equal(rl_read_until_error(path, cases[k].at + 1, 777, NULL, &rows), SF_OK);
            assert_int_equal(rows, RL_ROWS - cases[k].at - 1);
        }
    }
}

/* The chunk of dataset obj that holds its last row (for a contiguous
 * dataset: the bytes from row 4000 on): where it starts in the file, its
 * first row and its size in the file. */
static uint64_t rl_last_chunk(hid_t f, const char *obj, uint64_t *row, uint64_t *bytes)
{
    hid_t d = H5Dopen2(f, obj, H5P_DEFAULT);
    assert_true(d >= 0);
    hid_t pl = H5Dget_create_plist(d);
    hid_t t = H5Dget_type(d);
    size_t elem = H5Tget_size(t);
    haddr_t addr = HADDR_UNDEF;
    if (H5Pget_layout(pl) == H5D_CHUNKED) {
        hsize_t chunk = 0;
        assert_int_equal(H5Pget_chunk(pl, 1, &chunk), 1);
        hsize_t off = (RL_ROWS - 1) / chunk * chunk, size = 0;
        unsigned fmask = 0;
        assert_true(H5Dget_chunk_info_by_coord(d, &off, &fmask, &addr, &size) >= 0);
        *row = off;
        *bytes = size;
    } else {
        addr = H5Dget_offset(d) + 4000 * elem;
        *row = 4000;
        *bytes = (RL_ROWS - 4000) * elem;
    }
    assert_true(addr != HADDR_UNDEF);
    H5Tclose(t);
    H5Pclose(pl);
    H5Dclose(d);
    return (uint64_t)addr;
}

/* Of the datasets of the table at path, the one whose last chunk lies last
 * in the file: its name (into obj), the first row of that chunk and the
 * dataset's element size; returns where to cut the file: 100 bytes into
 * the chunk, or half way for a smaller (compressed) chunk. */
static uint64_t rl_cut(const char *path, const char **obj, uint64_t *row, size_t *elem)
{
    static const char *objs[5] = {"/t/a", "/t/b", "/t/c", "/t/_valid/a", "/t/_valid/b"};
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    assert_true(f >= 0);
    uint64_t best = 0, cut = 0;
    for (int k = 0; k < 5; k++) {
        uint64_t r = 0, bytes = 0, a = rl_last_chunk(f, objs[k], &r, &bytes);
        if (a > best) {
            best = a;
            cut = a + (bytes < 200 ? bytes / 2 : 100);
            *obj = objs[k];
            *row = r;
            *elem = k < 3 ? 8 : 1;
        }
    }
    H5Fclose(f);
    return cut;
}

/* A file cut inside the chunk that lies last in it: opening fails with a
 * clear message (HDF5 sees the file shorter than it should be), whatever
 * the layout. A file cut so while a reader has it open: reading fails where
 * the raw reads meet the end of the file, with the dataset named; the
 * batches before are right. */
static void test_truncated(void **state)
{
    (void)state;
    bool gzip = H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0;
    static const rl_layout ls[] = {
        {.name = "contiguous", .layout = H5D_CONTIGUOUS},
        {.name = "chunked", .layout = H5D_CHUNKED},
        {.name = "chunked, gzip", .layout = H5D_CHUNKED, .deflate = 6},
        {.name = "chunked, int32", .layout = H5D_CHUNKED, .ta = RT_I32LE},
    };
    for (size_t k = 0; k < sizeof ls / sizeof ls[0]; k++) {
        if (ls[k].deflate && !gzip) continue;
        char path[128];
        snprintf(path, sizeof path, "%s/cut_%zu.h5", tmpdir, k);
        rl_write(path, &ls[k]);
        const char *obj = NULL;
        uint64_t row0 = 0;
        size_t elem = 0;
        uint64_t at = rl_cut(path, &obj, &row0, &elem);
        assert_int_equal(truncate(path, (off_t)at), 0);
        uint64_t rows = 0;
        sf_status rc = rl_read_until_error(path, 0, 777, NULL, &rows);
        const char *msg = sf_error_message();
        if (rc != SF_ERR_H5) fail_msg("%s: status %d: %s", ls[k].name, (int)rc, msg);
        assert_int_equal(rows, 0);
        if (!strstr(msg, path) || !strstr(msg, "cannot open as an HDF5 file") || !strstr(msg, "truncated"))
            fail_msg("%s: message: %s", ls[k].name, msg);
    }

    /* Cut under an open reader (raw reads, H5Dread of a compressed or a
     * converted dataset alike): the next batch fails, before HDF5's reads
     * past the end could return zeros, with a message naming the file. */
    for (size_t k = 0; k < sizeof ls / sizeof ls[0]; k++) {
        if (ls[k].deflate && !gzip) continue;
        char path[128];
        snprintf(path, sizeof path, "%s/cut_open_%zu.h5", tmpdir, k);
        rl_write(path, &ls[k]);
        const char *obj = NULL;
        uint64_t row0 = 0;
        size_t elem = 0;
        uint64_t at = rl_cut(path, &obj, &row0, &elem);
        sf_input_config cfg;
        rl_config(&cfg, path, 777);
        sf_reader *r = NULL;
        assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
        sf_batch b;
        assert_int_equal(sf_reader_batch_init(r, &b), SF_OK);
        static const uint8_t all[3] = {1, 1, 1};
        bool eof = false;
        assert_int_equal(sf_reader_next(r, &b, &eof), SF_OK);
        rl_check_batch(path, &b, 0, all);
        assert_int_equal(truncate(path, (off_t)at), 0);
        sf_status rc = sf_reader_next(r, &b, &eof);
        const char *msg = sf_error_message();
        if (rc != SF_ERR_IO) fail_msg("%s, cut under the reader: status %d: %s", ls[k].name, (int)rc, msg);
        assert_int_equal(b.nrows, 0);
        if (!strstr(msg, path) || !strstr(msg, "truncated while being read"))
            fail_msg("%s, cut under the reader: message: %s", ls[k].name, msg);
        sf_batch_fini(&b);
        sf_reader_destroy(&r);
        sf_input_config_fini(&cfg);
    }
}

/* Sub-parts read on several threads at once: allowed exactly where every
 * loaded column and mask is read raw (plain native numbers, chunks
 * allocated), whatever the HDF5 build; the batches are those of the file. */
typedef struct cjob {
    sf_reader *r;
    const char *what;
    const uint64_t *cuts;
    uint64_t rows[3];
} cjob;

static sf_status cjob_run(void *ctx, int t)
{
    cjob *j = ctx;
    sf_batch b;
    if (sf_reader_batch_init(j->r, &b) != SF_OK) return SF_ERR_NOMEM;
    static const uint8_t all[3] = {1, 1, 1};
    uint64_t row = j->cuts[t];
    sf_status rc = SF_OK;
    for (;;) {
        bool eof = false;
        rc = sf_reader_next_sub(j->r, t, &b, &eof);
        if (rc != SF_OK || eof) break;
        rl_check_batch(j->what, &b, row, all);
        row += b.nrows;
    }
    j->rows[t] = row - j->cuts[t];
    sf_batch_fini(&b);
    return rc;
}

/* A file cut while a batch lent from its mapping is still to be read: the
 * read of a lost page raises SIGBUS, which ends the process with a message
 * naming the file and exit status 1 (not a crash). In a child process. The
 * same batch read by copies (input.mmap: false) is unaffected by the cut. */
static void test_truncated_while_mapped(void **state)
{
    (void)state;
    static const rl_layout chunked = {.name = "chunked", .layout = H5D_CHUNKED};
    for (int mapped = 1; mapped >= 0; mapped--) {
        char path[128];
        snprintf(path, sizeof path, "%s/cut_mapped_%d.h5", tmpdir, mapped);
        rl_write(path, &chunked);
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            dup2(fds[1], 2);
            rl_mmap = mapped;
            sf_input_config cfg;
            rl_config(&cfg, path, 777);
            sf_reader *r = NULL;
            sf_batch b;
            bool eof = false;
            if (sf_reader_open(&cfg, &r) != SF_OK || sf_reader_batch_init(r, &b) != SF_OK ||
                sf_reader_next(r, &b, &eof) != SF_OK || eof || b.nrows == 0)
                _exit(3);
            if (truncate(path, 0) != 0) _exit(4);
            /* Every value of the batch, as an agent would read them. */
            volatile uint64_t sink = 0;
            for (size_t i = 0; i < b.nrows; i++) sink += (uint64_t)b.cols[0].i64[i] + (uint64_t)b.cols[2].i64[i];
            volatile double fs = 0;
            for (size_t i = 0; i < b.nrows; i++) fs += b.cols[1].f64[i];
            (void)sink;
            (void)fs;
            _exit(0);
        }
        close(fds[1]);
        char msg[2048] = "";
        size_t n = 0;
        ssize_t k;
        while (n + 1 < sizeof msg && (k = read(fds[0], msg + n, sizeof msg - 1 - n)) > 0) n += (size_t)k;
        msg[n] = '\0';
        close(fds[0]);
        int st = 0;
        assert_int_equal(waitpid(pid, &st, 0), pid);
        assert_true(WIFEXITED(st));
        if (mapped) {
            if (WEXITSTATUS(st) != 1 || !strstr(msg, path) || !strstr(msg, "became shorter while it was read"))
                fail_msg("mapped: exit %d, message: %s", WEXITSTATUS(st), msg);
        } else {
            if (WEXITSTATUS(st) != 0) fail_msg("copied: exit %d, message: %s", WEXITSTATUS(st), msg);
        }
    }
}

static void test_concurrent_sub_parts(void **state)
{
    (void)state;
    static const struct {
        rl_layout l;
        bool raw;
    } cases[] = {
        {{.name = "contiguous", .layout = H5D_CONTIGUOUS}, true},
        {{.name = "chunked", .layout = H5D_CHUNKED}, true},
        {{.name = "chunked, int32", .layout = H5D_CHUNKED, .ta = RT_I32LE}, false},
        {{.name = "chunked, int64 masks", .layout = H5D_CHUNKED, .ma = RT_I64LE}, false},
        {{.name = "chunked, partly written", .layout = H5D_CHUNKED, .partial = true}, false},
        {{.name = "contiguous, user block", .layout = H5D_CONTIGUOUS, .userblock = 512}, false},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[128];
        snprintf(path, sizeof path, "%s/conc_%zu.h5", tmpdir, k);
        rl_write(path, &cases[k].l);
        sf_input_config cfg;
        rl_config(&cfg, path, 700);
        sf_reader *r = NULL;
        assert_int_equal(sf_reader_open(&cfg, &r), SF_OK);
        const uint64_t cuts[4] = {0, 1500, 2999, RL_ROWS}, zeros[6] = {0};
        assert_int_equal(sf_reader_split(r, 3, cuts, zeros), SF_OK);
        bool conc = sf_reader_sub_concurrent(r);
#ifdef H5_HAVE_THREADSAFE
        assert_true(conc);
#else
        if (conc != cases[k].raw) fail_msg("%s: concurrent %d, expected %d", cases[k].l.name, conc, cases[k].raw);
#endif
        if (conc) {
            cjob j = {r, cases[k].l.name, cuts, {0, 0, 0}};
            if (sf_exec_parallel(3, cjob_run, &j) != SF_OK) fail_msg("%s: %s", cases[k].l.name, sf_error_message());
            for (int t = 0; t < 3; t++) assert_int_equal(j.rows[t], cuts[t + 1] - cuts[t]);
        }
        sf_reader_destroy(&r);
        sf_input_config_fini(&cfg);
    }
}

/* The scans of lent masks and values (core/batch_lend.h), vector and
 * portable, against byte-by-byte references: lengths around the 64-byte
 * steps, unaligned starts, null densities from none to all, a bad byte at
 * the first, a middle and the last position; nonzero bits under a null at
 * every place of a 64-row step and in the tail, and nonzero values under
 * present rows (which do not count). */
static void test_lend_scans(void **st)
{
    (void)st;
    const size_t lens[] = {0, 1, 7, 8, 63, 64, 65, 127, 128, 129, 1000, 65536};
    const int dens[] = {0, 1, 20, 128, 255, 256}; /* nulls per 256 */
    const size_t cap = 65536 + 8;
    uint8_t *m = malloc(cap);
    uint64_t *val = malloc(cap * sizeof *val);
    assert_non_null(m);
    assert_non_null(val);
    uint64_t x = 0x9E3779B97F4A7C15ull;
#define NEXT() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
        const size_t n = lens[li];
        for (size_t di = 0; di < sizeof dens / sizeof dens[0]; di++) {
            for (size_t off = 0; off < 8; off += 5) {
                uint8_t *v = m + off;
                size_t want = 0;
                for (size_t i = 0; i < n; i++) {
                    v[i] = (int)(NEXT() % 256) < dens[di] ? 0 : 1;
                    want += v[i] == 0;
                    /* Present rows hold anything; nulls hold zero bits. */
                    val[i] = v[i] ? NEXT() | 1 : 0;
                }
                size_t got = SIZE_MAX, got_p = SIZE_MAX;
                assert_true(sf__lend_mask_scan(v, n, &got));
                assert_true(sf__lend_mask_scan_portable(v, n, &got_p));
                assert_int_equal(got, want);
                assert_int_equal(got_p, want);
                assert_true(sf__lend_zero_under_nulls(val, v, n));
                assert_true(sf__lend_zero_under_nulls_portable(val, v, n));
                /* A bad byte (2 or 255) anywhere is seen. */
                const size_t at[3] = {0, n / 2, n ? n - 1 : 0};
                for (int k = 0; k < 3 && n > 0; k++) {
                    uint8_t keep = v[at[k]];
                    v[at[k]] = k == 1 ? 255 : 2;
                    assert_false(sf__lend_mask_scan(v, n, &got));
                    assert_false(sf__lend_mask_scan_portable(v, n, &got_p));
                    v[at[k]] = keep;
                }
                /* Nonzero bits under each null in turn (up to 70 of them,
                 * covering every place of a step and the tail). */
                size_t tried = 0;
                for (size_t i = n; i-- > 0 && tried < 70;) {
                    if (v[i] != 0) continue;
                    tried++;
                    val[i] = UINT64_C(1) << (i % 64);
                    assert_false(sf__lend_zero_under_nulls(val, v, n));
                    assert_false(sf__lend_zero_under_nulls_portable(val, v, n));
                    val[i] = 0;
                }
            }
        }
    }
#undef NEXT
    free(m);
    free(val);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lend_scans),
        cmocka_unit_test(test_roundtrip_fixed),
        cmocka_unit_test(test_roundtrip_vlen),
        cmocka_unit_test(test_fixed_width),
        cmocka_unit_test(test_projection),
        cmocka_unit_test(test_nulls_written),
        cmocka_unit_test(test_nulls_roundtrip),
        cmocka_unit_test(test_nulls_projection),
        cmocka_unit_test(test_handmade_masks),
        cmocka_unit_test(test_mask_errors),
        cmocka_unit_test(test_empty_table),
        cmocka_unit_test(test_native_types),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_uint64_overflow_and_projection),
        cmocka_unit_test(test_storage_layouts),
        cmocka_unit_test(test_mask_value_errors),
        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_truncated_while_mapped),
        cmocka_unit_test(test_concurrent_sub_parts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
