/* Unit tests of the strict JSON reader (core/json_read.c). Expectations
 * come from the writer (documents written by sf_json must come back byte
 * for byte and value for value), from hand-decoded escapes, and from a
 * linear scan for the indexed key lookup. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/json.h"
#include "shardflow/jsonv.h"

static const char *const strings[] = {
    "", "plain", "quote \" and backslash \\", "tab\tnewline\nreturn\r", "ctl \x01\x1f end",
    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "pipe|and\\|escaped", "slash / stays",
};
static const double numbers[] = {0.0, -0.0, 1.0, -1.5, 0.1, 1e-300, 1.7976931348623157e308, 123456789.125,
                                 -2.2250738585072014e-308, 3.141592653589793};

/* A document exercising every kind of value, written by sf_json. */
static void build_doc(sf_json *j)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "strings");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) sf_json_str(j, strings[i]);
    sf_json_arr_end(j);
    sf_json_key(j, "numbers");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) sf_json_num(j, numbers[i]);
    sf_json_arr_end(j);
    sf_json_key(j, "ints");
    sf_json_arr_begin(j);
    sf_json_int(j, INT64_MIN);
    sf_json_int(j, -7);
    sf_json_uint(j, UINT64_MAX);
    sf_json_arr_end(j);
    sf_json_key(j, "flags");
    sf_json_obj_begin(j);
    sf_json_key(j, "yes");
    sf_json_bool(j, true);
    sf_json_key(j, "no");
    sf_json_bool(j, false);
    sf_json_key(j, "nothing");
    sf_json_null(j);
    sf_json_key(j, "nan is null");
    sf_json_num(j, NAN);
    sf_json_obj_end(j);
    sf_json_key(j, "empty");
    sf_json_obj_begin(j);
    sf_json_key(j, "obj");
    sf_json_obj_begin(j);
    sf_json_obj_end(j);
    sf_json_key(j, "arr");
    sf_json_arr_begin(j);
    sf_json_arr_end(j);
    sf_json_obj_end(j);
    sf_json_key(j, "k\"ey\\with\nescapes");
    sf_json_str(j, "v");
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    for (int g = 0; g < 40; g++) {
        char key[32];
        snprintf(key, sizeof key, "svc-%02d|eu", 39 - g);
        sf_json_key(j, key);
        sf_json_obj_begin(j);
        sf_json_key(j, "count");
        sf_json_int(j, g);
        sf_json_key(j, "mean");
        sf_json_num(j, g / 3.0);
        sf_json_obj_end(j);
    }
    sf_json_obj_end(j);
    sf_json_obj_end(j);
}

static sf_jv_doc *parse_ok(const char *text, size_t len)
{
    sf_jv_doc *d = NULL;
    sf_status rc = sf_jv_parse(text, len, &d);
    if (rc != SF_OK) fprintf(stderr, "unexpected failure: %s\n", sf_error_message());
    assert_int_equal(rc, SF_OK);
    assert_non_null(d);
    return d;
}

static void roundtrip(bool pretty)
{
    sf_json j;
    sf_json_init(&j, pretty);
    build_doc(&j);
    assert_int_equal(j.rc, SF_OK);
    sf_jv_doc *d = parse_ok((const char *)j.out.data, j.out.len);
    sf_json back;
    sf_json_init(&back, pretty);
    sf_jv_write(sf_jv_root(d), &back);
    assert_int_equal(back.rc, SF_OK);
    assert_int_equal(back.out.len, j.out.len);
    assert_memory_equal(back.out.data, j.out.data, j.out.len);
    sf_json_fini(&back);

    /* Values, against what was written. */
    const sf_jv *root = sf_jv_root(d);
    assert_int_equal(sf_jv_type_of(root), SF_JV_OBJ);
    const sf_jv *s = sf_jv_get(root, "strings");
    assert_int_equal(sf_jv_len(s), sizeof strings / sizeof strings[0]);
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        size_t len;
        const char *v = sf_jv_str(sf_jv_at(s, i), &len);
        assert_non_null(v);
        assert_int_equal(len, strlen(strings[i]));
        assert_memory_equal(v, strings[i], len);
        assert_int_equal(v[len], '\0');
    }
    const sf_jv *n = sf_jv_get(root, "numbers");
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++) {
        double v;
        assert_true(sf_jv_num(sf_jv_at(n, i), &v));
        /* Bits, so that -0 is told from +0. */
        assert_memory_equal(&v, &numbers[i], sizeof v);
    }
    size_t tl;
    const char *t = sf_jv_num_text(sf_jv_at(sf_jv_get(root, "ints"), 2), &tl);
    assert_int_equal(tl, strlen("18446744073709551615"));
    assert_memory_equal(t, "18446744073709551615", tl);
    bool b;
    const sf_jv *flags = sf_jv_get(root, "flags");
    assert_true(sf_jv_bool(sf_jv_get(flags, "yes"), &b) && b);
    assert_true(sf_jv_bool(sf_jv_get(flags, "no"), &b) && !b);
    assert_int_equal(sf_jv_type_of(sf_jv_get(flags, "nothing")), SF_JV_NULL);
    assert_int_equal(sf_jv_type_of(sf_jv_get(flags, "nan is null")), SF_JV_NULL);
    assert_int_equal(sf_jv_len(sf_jv_get(sf_jv_get(root, "empty"), "obj")), 0);
    assert_int_equal(sf_jv_type_of(sf_jv_get(sf_jv_get(root, "empty"), "arr")), SF_JV_ARR);
    assert_string_equal(sf_jv_str(sf_jv_get(root, "k\"ey\\with\nescapes"), NULL), "v");
    /* Key order is document order. */
    const sf_jv *g = sf_jv_get(root, "groups");
    assert_int_equal(sf_jv_len(g), 40);
    for (size_t i = 0; i < 40; i++) {
        char key[32];
        snprintf(key, sizeof key, "svc-%02d|eu", (int)(39 - i));
        assert_string_equal(sf_jv_key_at(g, i, NULL), key);
        double c;
        assert_true(sf_jv_num(sf_jv_get(sf_jv_get(g, key), "count"), &c));
        assert_true(c == (double)i);
    }
    sf_jv_destroy(&d);
    assert_null(d);
    sf_json_fini(&j);
}

static void test_roundtrip_compact(void **st)
{
    (void)st;
    roundtrip(false);
}

static void test_roundtrip_pretty(void **st)
{
    (void)st;
    roundtrip(true);
}

static void test_escapes(void **st)
{
    (void)st;
    const char *text = "[\"a\\u00e9\\ud83d\\ude00\\n\\/\\b\\f\\t\\r\\\"\\\\\", \"\\u0000x\", \"\\u20AC\"]";
    sf_jv_doc *d = parse_ok(text, strlen(text));
    size_t len;
    const char *s = sf_jv_str(sf_jv_at(sf_jv_root(d), 0), &len);
    const char expect[] = "a\xc3\xa9\xf0\x9f\x98\x80\n/\b\f\t\r\"\\";
    assert_int_equal(len, sizeof expect - 1);
    assert_memory_equal(s, expect, len);
    s = sf_jv_str(sf_jv_at(sf_jv_root(d), 1), &len);
    assert_int_equal(len, 2);
    assert_int_equal(s[0], '\0');
    assert_int_equal(s[1], 'x');
    assert_string_equal(sf_jv_str(sf_jv_at(sf_jv_root(d), 2), NULL), "\xe2\x82\xac");
    sf_jv_destroy(&d);
}

static void test_numbers_keep_text(void **st)
{
    (void)st;
    const char *text = " [1.50, -0, 1E+2, 0.5e-1, 12345678901234567890123] ";
    sf_jv_doc *d = parse_ok(text, strlen(text));
    const sf_jv *a = sf_jv_root(d);
    const char *want[] = {"1.50", "-0", "1E+2", "0.5e-1", "12345678901234567890123"};
    const double vals[] = {1.5, -0.0, 100.0, 0.05, 12345678901234567890123.0};
    for (int i = 0; i < 5; i++) {
        size_t len;
        const char *t = sf_jv_num_text(sf_jv_at(a, (size_t)i), &len);
        assert_int_equal(len, strlen(want[i]));
        assert_memory_equal(t, want[i], len);
        double v;
        assert_true(sf_jv_num(sf_jv_at(a, (size_t)i), &v));
        assert_memory_equal(&v, &vals[i], sizeof v);
    }
    sf_json j;
    sf_json_init(&j, false);
    sf_jv_write(a, &j);
    const char *back = "[1.50,-0,1E+2,0.5e-1,12345678901234567890123]";
    assert_int_equal(j.out.len, strlen(back));
    assert_memory_equal(j.out.data, back, j.out.len);
    sf_json_fini(&j);
    sf_jv_destroy(&d);
}

static void expect_error(const char *text, size_t len, const char *what)
{
    sf_jv_doc *d = (sf_jv_doc *)1;
    sf_error_clear();
    sf_status rc = sf_jv_parse(text, len, &d);
    if (rc != SF_ERR_PARSE) fprintf(stderr, "accepted: %.*s\n", (int)len, text);
    assert_int_equal(rc, SF_ERR_PARSE);
    assert_null(d);
    if (what != NULL && strstr(sf_error_message(), what) == NULL)
        fail_msg("message '%s' lacks '%s' (input %.*s)", sf_error_message(), what, (int)len, text);
}

static void test_rejects(void **st)
{
    (void)st;
    static const struct {
        const char *text, *what;
    } bad[] = {
        {"", "empty document"},
        {"   \n ", "empty document"},
        {"{", "unterminated object"},
        {"[1,]", "unexpected character"},
        {"{\"a\":1,}", "expected a string key"},
        {"[1 2]", "expected ',' or ']'"},
        {"{\"a\" 1}", "expected ':'"},
        {"{\"a\":1 \"b\":2}", "expected ',' or '}'"},
        {"01", "leading zero"},
        {"-", "invalid number"},
        {"1.", "digit expected after the decimal point"},
        {"1e", "digit expected in the exponent"},
        {"+1", "unexpected character"},
        {".5", "unexpected character"},
        {"1e999", "out of the range"},
        {"NaN", "unexpected character"},
        {"Infinity", "unexpected character"},
        {"tru", "invalid literal"},
        {"nul", "invalid literal"},
        {"\"abc", "unterminated string"},
        {"\"a\tb\"", "control character"},
        {"\"\\x\"", "invalid escape"},
        {"\"\\u12\"", "four hex digits"},
        {"\"\\udc00\"", "lone low surrogate"},
        {"\"\\ud800\"", "high surrogate"},
        {"\"\\ud800\\u0041\"", "high surrogate"},
        {"\"\xc3\"", "invalid UTF-8"},
        {"\"\xc0\xaf\"", "invalid UTF-8"},
        {"\"\xed\xa0\x80\"", "invalid UTF-8"},
        {"\"\xf4\x90\x80\x80\"", "invalid UTF-8"},
        {"1 2", "unexpected text after the value"},
        {"{} x", "unexpected text after the value"},
        {"\xef\xbb\xbf{}", "unexpected character"},
        {"{\"a\":1,\"a\":2}", "duplicate key \"a\""},
        {"// c\n1", "unexpected character"},
        {"[1]\x0c", "unexpected text"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) expect_error(bad[i].text, strlen(bad[i].text), bad[i].what);
    /* A NUL byte is never whitespace. */
    expect_error("[1]\0", 4, "unexpected text");
}

static void test_error_position(void **st)
{
    (void)st;
    const char *text = "{\n  \"a\": [1,\n        2,\n        x]\n}";
    expect_error(text, strlen(text), "JSON line 4, column 9");
    text = "[\"\xe2\x82\xac\", \"ok\",\n tru]";
    expect_error(text, strlen(text), "line 2, column 2");
}

static void test_depth_limit(void **st)
{
    (void)st;
    char buf[2 * SF_JV_MAX_DEPTH + 8];
    size_t n = 0;
    for (int i = 0; i < SF_JV_MAX_DEPTH; i++) buf[n++] = '[';
    for (int i = 0; i < SF_JV_MAX_DEPTH; i++) buf[n++] = ']';
    sf_jv_doc *d = parse_ok(buf, n);
    const sf_jv *v = sf_jv_root(d);
    int depth = 0;
    while (sf_jv_type_of(v) == SF_JV_ARR) {
        depth++;
        v = sf_jv_at(v, 0);
    }
    assert_int_equal(depth, SF_JV_MAX_DEPTH);
    sf_jv_destroy(&d);
    n = 0;
    for (int i = 0; i <= SF_JV_MAX_DEPTH; i++) buf[n++] = '[';
    for (int i = 0; i <= SF_JV_MAX_DEPTH; i++) buf[n++] = ']';
    expect_error(buf, n, "nested deeper than 64");
}

/* The indexed lookup of large objects against a linear scan, and duplicate
 * keys found wherever they are. */
static void test_large_object_lookup(void **st)
{
    (void)st;
    enum { N = 2000 };
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    uint64_t x = 12345;
    char keys[N][24];
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        /* Keys of different lengths sharing prefixes. */
        snprintf(keys[i], sizeof keys[i], "k%llu", (unsigned long long)(x >> (40 + (i % 20))));
        bool dup = false;
        for (int k = 0; k < i && !dup; k++) dup = strcmp(keys[k], keys[i]) == 0;
        if (dup) snprintf(keys[i], sizeof keys[i], "u%d", i);
        sf_json_key(&j, keys[i]);
        sf_json_int(&j, i);
    }
    sf_json_obj_end(&j);
    sf_jv_doc *d = parse_ok((const char *)j.out.data, j.out.len);
    const sf_jv *o = sf_jv_root(d);
    assert_int_equal(sf_jv_len(o), N);
    for (int i = 0; i < N; i++) {
        const sf_jv *v = sf_jv_get(o, keys[i]);
        /* The linear reference: the member at the key's position. */
        assert_ptr_equal(v, sf_jv_at(o, (size_t)i));
        assert_string_equal(sf_jv_key_at(o, (size_t)i, NULL), keys[i]);
    }
    assert_null(sf_jv_get(o, "absent"));
    assert_null(sf_jv_get(o, ""));
    assert_null(sf_jv_get(o, "k"));
    sf_jv_destroy(&d);

    /* A duplicate at the end of a large object. */
    sf_buf b;
    sf_buf_init(&b);
    assert_int_equal(sf_buf_append(&b, j.out.data, j.out.len - 1), SF_OK);
    assert_int_equal(sf_buf_printf(&b, ",\"%s\":0}", keys[N / 2]), SF_OK);
    char what[64];
    snprintf(what, sizeof what, "duplicate key \"%s\"", keys[N / 2]);
    expect_error((const char *)b.data, b.len, what);
    sf_buf_fini(&b);
    sf_json_fini(&j);
}

/* Every strict prefix of a document is incomplete. */
static void test_truncations(void **st)
{
    (void)st;
    sf_json j;
    sf_json_init(&j, false);
    build_doc(&j);
    for (size_t n = 0; n < j.out.len; n++) {
        sf_jv_doc *d = NULL;
        assert_int_equal(sf_jv_parse((const char *)j.out.data, n, &d), SF_ERR_PARSE);
        assert_null(d);
    }
    sf_json_fini(&j);
}

static void test_null_tolerant(void **st)
{
    (void)st;
    double v;
    bool b;
    assert_int_equal(sf_jv_type_of(NULL), SF_JV_NONE);
    assert_null(sf_jv_get(NULL, "a"));
    assert_null(sf_jv_at(NULL, 0));
    assert_int_equal(sf_jv_len(NULL), 0);
    assert_false(sf_jv_num(NULL, &v));
    assert_false(sf_jv_bool(NULL, &b));
    assert_null(sf_jv_str(NULL, NULL));
    assert_null(sf_jv_key_at(NULL, 0, NULL));
    sf_jv_destroy(NULL);
    sf_jv_doc *d = parse_ok("{\"a\":[true]}", 12);
    const sf_jv *a = sf_jv_get(sf_jv_root(d), "a");
    /* Wrong types answer "absent". */
    assert_null(sf_jv_get(a, "x"));
    assert_null(sf_jv_key_at(a, 0, NULL));
    assert_null(sf_jv_at(a, 1));
    assert_false(sf_jv_num(sf_jv_at(a, 0), &v));
    assert_null(sf_jv_str(a, NULL));
    assert_string_equal(sf_jv_type_name(sf_jv_type_of(a)), "array");
    sf_jv_destroy(&d);
}

/* A value rendered alone at depth 3 and inserted with sf_json_raw gives the
 * same bytes as the value written in place (result.json relies on it). */
static void write_value(sf_json *j)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "groups");
    sf_json_obj_begin(j);
    sf_json_key(j, "a|b");
    sf_json_arr_begin(j);
    sf_json_num(j, 1.5);
    sf_json_null(j);
    sf_json_arr_end(j);
    sf_json_key(j, "empty");
    sf_json_obj_begin(j);
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    sf_json_obj_end(j);
}

static void doc(sf_json *j, bool inline_value, const sf_buf *value)
{
    sf_json_obj_begin(j);
    sf_json_key(j, "results");
    sf_json_obj_begin(j);
    sf_json_key(j, "stage");
    sf_json_obj_begin(j);
    sf_json_key(j, "first");
    sf_json_int(j, 1);
    sf_json_key(j, "agent");
    if (inline_value)
        write_value(j);
    else
        sf_json_raw(j, (const char *)value->data, value->len);
    sf_json_obj_end(j);
    sf_json_obj_end(j);
    sf_json_obj_end(j);
}

static void test_value_at_depth(void **st)
{
    (void)st;
    for (int pretty = 0; pretty < 2; pretty++) {
        sf_json a, b, v;
        sf_json_init(&a, pretty);
        doc(&a, true, NULL);
        sf_json_init_value_at(&v, pretty, 3);
        write_value(&v);
        assert_int_equal(v.rc, SF_OK);
        sf_json_init(&b, pretty);
        doc(&b, false, &v.out);
        assert_int_equal(a.rc, SF_OK);
        assert_int_equal(b.rc, SF_OK);
        assert_int_equal(a.out.len, b.out.len);
        assert_memory_equal(a.out.data, b.out.data, a.out.len);
        sf_json_fini(&a);
        sf_json_fini(&b);
        sf_json_fini(&v);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_compact),
        cmocka_unit_test(test_roundtrip_pretty),
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_numbers_keep_text),
        cmocka_unit_test(test_rejects),
        cmocka_unit_test(test_error_position),
        cmocka_unit_test(test_depth_limit),
        cmocka_unit_test(test_large_object_lookup),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_null_tolerant),
        cmocka_unit_test(test_value_at_depth),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
