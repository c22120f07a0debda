/* Agent option helpers (sf_agent_opt_*, sf_agent_check_options,
 * sf_agent_need_col in shardflow/agent.h): defaults, ranges, parsing, and
 * every message, compared with the documented "FILE:LINE: agent 'ID':
 * option 'KEY': ..." (or "--set KEY: ..." for command-line values). Option
 * maps are built by hand with chosen lines, and loaded from a workflow file
 * whose expected lines are counted in the test's own YAML text. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/status.h"

/* ---------------------------------------------------------------------------
 * Hand-built option maps */

#define MAXK 32
#define MAXSEQ 8

typedef struct opts {
    sf_cfg_node map;
    char *keys[MAXK];
    int key_lines[MAXK];
    sf_cfg_node *items[MAXK];
    sf_cfg_node vals[MAXK];
    sf_cfg_node sub[MAXK][MAXSEQ];
    sf_cfg_node *subp[MAXK][MAXSEQ];
} opts;

static void opts_init(opts *o)
{
    memset(o, 0, sizeof *o);
    o->map.kind = SF_NODE_MAP;
    o->map.keys = o->keys;
    o->map.key_lines = o->key_lines;
    o->map.items = o->items;
    o->map.line = 4;
}

static sf_cfg_node *opts_add(opts *o, const char *key, int line, sf_node_kind kind)
{
    assert_true(o->map.n < MAXK);
    size_t i = o->map.n++;
    o->keys[i] = (char *)key;
    o->key_lines[i] = line;
    sf_cfg_node *v = &o->vals[i];
    v->kind = kind;
    v->line = line;
    v->col = line ? 9 : 0;
    o->items[i] = v;
    return v;
}

static void add_scalar(opts *o, const char *key, const char *value, int line)
{
    opts_add(o, key, line, SF_NODE_SCALAR)->scalar = (char *)value;
}

static void add_quoted(opts *o, const char *key, const char *value, int line)
{
    sf_cfg_node *v = opts_add(o, key, line, SF_NODE_SCALAR);
    v->scalar = (char *)value;
    v->quoted = true;
}

/* A sequence of scalars (n of them); a NULL item is a nested empty list. */
static void add_seq(opts *o, const char *key, int line, int n, const char *const *items)
{
    size_t i = o->map.n;
    sf_cfg_node *v = opts_add(o, key, line, SF_NODE_SEQ);
    assert_true(n <= MAXSEQ);
    v->n = (size_t)n;
    v->items = o->subp[i];
    for (int j = 0; j < n; j++) {
        sf_cfg_node *e = &o->sub[i][j];
        e->kind = items[j] ? SF_NODE_SCALAR : SF_NODE_SEQ;
        e->scalar = (char *)items[j];
        e->line = line;
        o->subp[i][j] = e;
    }
}

static void add_map(opts *o, const char *key, int line) { opts_add(o, key, line, SF_NODE_MAP); }

static sf_schema schema;

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "ts", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "svc", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "lat", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

static sf_agent_config make_cfg(const opts *o)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = "histogram";
    c.id = "h1";
    c.column = "lat";
    c.col = 2;
    c.schema = &schema;
    c.node = o ? &o->map : NULL;
    c.file = "flows/wf.yaml";
    c.line = 3;
    return c;
}

/* The documented message of an option error. */
static void expect_msg_at(sf_status rc, int line, const char *key, const char *what)
{
    char want[1024];
    snprintf(want, sizeof want, "flows/wf.yaml:%d: agent 'h1': option '%s': %s", line, key, what);
    if (rc != SF_ERR_CONFIG) fail_msg("expected SF_ERR_CONFIG (%s), got %s", want, sf_status_name(rc));
    if (strcmp(sf_error_message(), want) != 0) fail_msg("\n got      %s\n expected %s", sf_error_message(), want);
}

static void expect_msg_set(sf_status rc, const char *key, const char *what)
{
    char want[1024];
    snprintf(want, sizeof want, "--set %s: agent 'h1': option '%s': %s", key, key, what);
    if (rc != SF_ERR_CONFIG) fail_msg("expected SF_ERR_CONFIG (%s), got %s", want, sf_status_name(rc));
    if (strcmp(sf_error_message(), want) != 0) fail_msg("\n got      %s\n expected %s", sf_error_message(), want);
}

/* ---------------------------------------------------------------------------
 * sf_agent_check_options and sf_agent_option */

static const char *const hist_allowed[] = {"bins", "lo", "hi"};
#define HIST_ACCEPTS "histogram accepts agent, id, column, by, where, baseline, bins, lo, hi"

static void test_check_options(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    static const char *const by[] = {"svc"};
    add_scalar(&o, "agent", "histogram", 4);
    add_scalar(&o, "id", "h1", 5);
    add_scalar(&o, "column", "lat", 6);
    add_seq(&o, "by", 7, 1, by);
    add_quoted(&o, "where", "lat > 0", 8);
    add_scalar(&o, "baseline", "profile.lat", 9);
    add_scalar(&o, "bins", "12", 10);
    add_scalar(&o, "hi", "5", 11);
    sf_agent_config c = make_cfg(&o);
    assert_int_equal(sf_agent_check_options(&c, hist_allowed, 3), SF_OK);
    /* The engine keys are always accepted, even with no allowed options. */
    o.map.n = 6;
    assert_int_equal(sf_agent_check_options(&c, NULL, 0), SF_OK);
    o.map.n = 8;

    /* The first unknown key is named, at its own line. */
    add_scalar(&o, "binz", "3", 12);
    add_scalar(&o, "also_bad", "3", 13);
    sf_status rc = sf_agent_check_options(&c, hist_allowed, 3);
    assert_int_equal(rc, SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "flows/wf.yaml:12: agent 'h1': unknown option 'binz' (" HIST_ACCEPTS ")");
    /* bins is not an engine key. */
    assert_int_equal(sf_agent_check_options(&c, NULL, 0), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "flows/wf.yaml:10: agent 'h1': unknown option 'bins' (histogram accepts agent, id, column, by, "
                        "where, baseline)");

    /* A key added by --set has line 0. */
    o.key_lines[8] = 0;
    o.vals[8].line = 0;
    rc = sf_agent_check_options(&c, hist_allowed, 3);
    assert_int_equal(rc, SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "--set binz: agent 'h1': unknown option 'binz' (" HIST_ACCEPTS ")");

    /* Without key lines the agent's line is used. */
    o.map.key_lines = NULL;
    assert_int_equal(sf_agent_check_options(&c, hist_allowed, 3), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "flows/wf.yaml:3: agent 'h1': unknown option 'binz' (" HIST_ACCEPTS ")");
    o.map.key_lines = o.key_lines;
    o.key_lines[8] = 12;

    /* Without id the agent name is the id; without file, <workflow>. */
    c.id = NULL;
    c.file = NULL;
    assert_int_equal(sf_agent_check_options(&c, hist_allowed, 3), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "<workflow>:12: agent 'histogram': unknown option 'binz' (" HIST_ACCEPTS ")");
    c.agent = NULL;
    assert_int_equal(sf_agent_check_options(&c, hist_allowed, 3), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "<workflow>:12: agent '?': unknown option 'binz' (the agent accepts agent, id, column, by, "
                        "where, baseline, bins, lo, hi)");

    /* No mapping (a hand-made config, or a scalar node): nothing to check. */
    c = make_cfg(NULL);
    assert_int_equal(sf_agent_check_options(&c, NULL, 0), SF_OK);
    sf_cfg_node scalar = {.kind = SF_NODE_SCALAR, .scalar = "x", .line = 2};
    c.node = &scalar;
    assert_int_equal(sf_agent_check_options(&c, NULL, 0), SF_OK);
}

static void test_option_lookup(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    add_scalar(&o, "bins", "12", 10);
    add_scalar(&o, "lo", "0", 11);
    sf_agent_config c = make_cfg(&o);
    assert_ptr_equal(sf_agent_option(&c, "bins"), &o.vals[0]);
    assert_ptr_equal(sf_agent_option(&c, "lo"), &o.vals[1]);
    assert_null(sf_agent_option(&c, "hi"));
    assert_null(sf_agent_option(&c, "Bins")); /* keys are case-sensitive */
    c.node = NULL;
    assert_null(sf_agent_option(&c, "bins"));
}

/* ---------------------------------------------------------------------------
 * Numbers */

static void test_opt_double(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    add_scalar(&o, "a", "0.25", 10);
    add_scalar(&o, "lo_edge", "0", 11);
    add_scalar(&o, "hi_edge", "1", 12);
    add_scalar(&o, "exp", "-2.5e-3", 13);
    add_quoted(&o, "quoted", "0.75", 14);
    add_scalar(&o, "nul", "null", 15);
    add_scalar(&o, "tilde", "~", 16);
    add_scalar(&o, "empty", "", 17);
    add_scalar(&o, "over", "1.5", 18);
    add_scalar(&o, "under", "-0.001", 19);
    add_scalar(&o, "word", "abc", 20);
    add_scalar(&o, "trail", "0.5x", 21);
    add_scalar(&o, "nan", "nan", 22);
    add_scalar(&o, "inf", "inf", 23);
    add_scalar(&o, "huge", "1e999", 24);
    add_seq(&o, "list", 25, 0, NULL);
    add_map(&o, "map", 26);
    add_quoted(&o, "qnull", "null", 27);
    add_scalar(&o, "setv", "7", 0);
    sf_agent_config c = make_cfg(&o);
    double x = -1;
    assert_int_equal(sf_agent_opt_double(&c, "a", 9, 0, 1, &x), SF_OK);
    assert_true(x == 0.25);
    assert_int_equal(sf_agent_opt_double(&c, "lo_edge", 9, 0, 1, &x), SF_OK); /* bounds are inclusive */
    assert_true(x == 0.0);
    assert_int_equal(sf_agent_opt_double(&c, "hi_edge", 9, 0, 1, &x), SF_OK);
    assert_true(x == 1.0);
    assert_int_equal(sf_agent_opt_double(&c, "exp", 9, -1, 1, &x), SF_OK);
    assert_true(x == -2.5e-3);
    assert_int_equal(sf_agent_opt_double(&c, "quoted", 9, 0, 1, &x), SF_OK);
    assert_true(x == 0.75);
    /* Absent and null values give the default, whatever the range. */
    static const char *const dflt_keys[] = {"absent", "nul", "tilde", "empty"};
    for (int k = 0; k < 4; k++) {
        x = -1;
        assert_int_equal(sf_agent_opt_double(&c, dflt_keys[k], 42.5, 0, 1, &x), SF_OK);
        assert_true(x == 42.5);
    }
    c.node = NULL;
    assert_int_equal(sf_agent_opt_double(&c, "a", 3.5, 0, 1, &x), SF_OK);
    assert_true(x == 3.5);
    c.node = &o.map;

    char what[256];
    snprintf(what, sizeof what, "%g is outside [%g, %g]", 1.5, 0.0, 1.0);
    expect_msg_at(sf_agent_opt_double(&c, "over", 9, 0, 1, &x), 18, "over", what);
    snprintf(what, sizeof what, "%g is outside [%g, %g]", -0.001, 0.0, 1.0);
    expect_msg_at(sf_agent_opt_double(&c, "under", 9, 0, 1, &x), 19, "under", what);
    expect_msg_at(sf_agent_opt_double(&c, "word", 9, 0, 1, &x), 20, "word", "expected a number, found 'abc'");
    expect_msg_at(sf_agent_opt_double(&c, "trail", 9, 0, 1, &x), 21, "trail", "expected a number, found '0.5x'");
    expect_msg_at(sf_agent_opt_double(&c, "nan", 9, 0, 1, &x), 22, "nan", "expected a number, found 'nan'");
    expect_msg_at(sf_agent_opt_double(&c, "inf", 9, 0, 1, &x), 23, "inf", "expected a number, found 'inf'");
    expect_msg_at(sf_agent_opt_double(&c, "huge", 9, 0, 1, &x), 24, "huge", "expected a number, found '1e999'");
    expect_msg_at(sf_agent_opt_double(&c, "list", 9, 0, 1, &x), 25, "list", "expected a number, found 'a list'");
    expect_msg_at(sf_agent_opt_double(&c, "map", 9, 0, 1, &x), 26, "map", "expected a number, found 'a mapping'");
    /* A quoted null is text, not an absent value. */
    expect_msg_at(sf_agent_opt_double(&c, "qnull", 9, 0, 1, &x), 27, "qnull", "expected a number, found 'null'");
    snprintf(what, sizeof what, "%g is outside [%g, %g]", 7.0, 0.0, 1.0);
    expect_msg_set(sf_agent_opt_double(&c, "setv", 9, 0, 1, &x), "setv", what);
    assert_true(x == 3.5); /* failures leave *out alone */
}

static void test_opt_int(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    add_scalar(&o, "n", "42", 10);
    add_scalar(&o, "neg", "-3", 11);
    add_scalar(&o, "max", "9223372036854775807", 12);
    add_scalar(&o, "min", "-9223372036854775808", 13);
    add_scalar(&o, "over64", "9223372036854775808", 14);
    add_scalar(&o, "frac", "4.5", 15);
    add_scalar(&o, "exp", "1e3", 16);
    add_scalar(&o, "hex", "0x10", 17);
    add_scalar(&o, "word", "many", 18);
    add_scalar(&o, "big", "101", 19);
    add_scalar(&o, "small", "0", 20);
    add_seq(&o, "list", 21, 0, NULL);
    add_scalar(&o, "nul", "~", 22);
    add_quoted(&o, "qempty", "", 23);
    add_scalar(&o, "setv", "1000", 0);
    sf_agent_config c = make_cfg(&o);
    int64_t x = -1;
    assert_int_equal(sf_agent_opt_int(&c, "n", 7, 1, 100, &x), SF_OK);
    assert_int_equal(x, 42);
    assert_int_equal(sf_agent_opt_int(&c, "neg", 7, -10, 10, &x), SF_OK);
    assert_int_equal(x, -3);
    assert_int_equal(sf_agent_opt_int(&c, "max", 7, INT64_MIN, INT64_MAX, &x), SF_OK);
    assert_true(x == INT64_MAX);
    assert_int_equal(sf_agent_opt_int(&c, "min", 7, INT64_MIN, INT64_MAX, &x), SF_OK);
    assert_true(x == INT64_MIN);
    assert_int_equal(sf_agent_opt_int(&c, "absent", 7, 1, 100, &x), SF_OK);
    assert_int_equal(x, 7);
    assert_int_equal(sf_agent_opt_int(&c, "nul", 8, 1, 100, &x), SF_OK);
    assert_int_equal(x, 8);
    assert_int_equal(sf_agent_opt_int(&c, "big", 7, 1, 101, &x), SF_OK); /* hi is inclusive */
    assert_int_equal(x, 101);

    expect_msg_at(sf_agent_opt_int(&c, "over64", 7, 1, 100, &x), 14, "over64",
                  "expected an integer, found '9223372036854775808'");
    expect_msg_at(sf_agent_opt_int(&c, "frac", 7, 1, 100, &x), 15, "frac", "expected an integer, found '4.5'");
    expect_msg_at(sf_agent_opt_int(&c, "exp", 7, 1, 100, &x), 16, "exp", "expected an integer, found '1e3'");
    expect_msg_at(sf_agent_opt_int(&c, "hex", 7, 1, 100, &x), 17, "hex", "expected an integer, found '0x10'");
    expect_msg_at(sf_agent_opt_int(&c, "word", 7, 1, 100, &x), 18, "word", "expected an integer, found 'many'");
    expect_msg_at(sf_agent_opt_int(&c, "big", 7, 1, 100, &x), 19, "big", "101 is outside [1, 100]");
    expect_msg_at(sf_agent_opt_int(&c, "small", 7, 1, 100, &x), 20, "small", "0 is outside [1, 100]");
    expect_msg_at(sf_agent_opt_int(&c, "list", 7, 1, 100, &x), 21, "list", "expected an integer");
    expect_msg_at(sf_agent_opt_int(&c, "qempty", 7, 1, 100, &x), 23, "qempty", "expected an integer, found ''");
    expect_msg_set(sf_agent_opt_int(&c, "setv", 7, -5, 5, &x), "setv", "1000 is outside [-5, 5]");
    assert_int_equal(x, 101);
}

/* ---------------------------------------------------------------------------
 * Strings, choices, bools */

static void test_opt_str_choice_bool(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    add_scalar(&o, "name", "p99", 10);
    add_scalar(&o, "nul", "null", 11);
    add_quoted(&o, "qnull", "null", 12);
    add_quoted(&o, "qempty", "", 13);
    static const char *const two[] = {"a", "b"};
    add_seq(&o, "list", 14, 2, two);
    add_map(&o, "map", 15);
    add_scalar(&o, "mode", "approx", 16);
    add_scalar(&o, "mode_bad", "EXACT", 17);
    add_scalar(&o, "t1", "true", 18);
    add_scalar(&o, "t2", "yes", 19);
    add_scalar(&o, "t3", "on", 20);
    add_scalar(&o, "f1", "false", 21);
    add_scalar(&o, "f2", "no", 22);
    add_scalar(&o, "f3", "off", 23);
    add_scalar(&o, "bad", "maybe", 24);
    add_scalar(&o, "one", "1", 0);
    sf_agent_config c = make_cfg(&o);

    const char *s = "unset";
    assert_int_equal(sf_agent_opt_str(&c, "name", NULL, &s), SF_OK);
    assert_ptr_equal(s, o.vals[0].scalar); /* borrowed from the node */
    assert_int_equal(sf_agent_opt_str(&c, "absent", "dflt", &s), SF_OK);
    assert_string_equal(s, "dflt");
    assert_int_equal(sf_agent_opt_str(&c, "absent", NULL, &s), SF_OK);
    assert_null(s);
    assert_int_equal(sf_agent_opt_str(&c, "nul", "dflt", &s), SF_OK);
    assert_string_equal(s, "dflt");
    assert_int_equal(sf_agent_opt_str(&c, "qnull", "dflt", &s), SF_OK);
    assert_string_equal(s, "null");
    assert_int_equal(sf_agent_opt_str(&c, "qempty", "dflt", &s), SF_OK);
    assert_string_equal(s, "");
    expect_msg_at(sf_agent_opt_str(&c, "list", NULL, &s), 14, "list", "expected a single value");
    expect_msg_at(sf_agent_opt_str(&c, "map", NULL, &s), 15, "map", "expected a single value");

    static const char *const modes[] = {"exact", "approx", "auto"};
    int m = -1;
    assert_int_equal(sf_agent_opt_choice(&c, "mode", modes, 3, 2, &m), SF_OK);
    assert_int_equal(m, 1);
    assert_int_equal(sf_agent_opt_choice(&c, "absent", modes, 3, 2, &m), SF_OK);
    assert_int_equal(m, 2);
    assert_int_equal(sf_agent_opt_choice(&c, "nul", modes, 3, 0, &m), SF_OK);
    assert_int_equal(m, 0);
    expect_msg_at(sf_agent_opt_choice(&c, "mode_bad", modes, 3, 0, &m), 17, "mode_bad",
                  "'EXACT' is not one of exact, approx, auto");
    expect_msg_at(sf_agent_opt_choice(&c, "list", modes, 3, 0, &m), 14, "list", "expected a single value");
    expect_msg_set(sf_agent_opt_choice(&c, "one", modes, 3, 0, &m), "one", "'1' is not one of exact, approx, auto");
    assert_int_equal(m, 0);

    static const struct { const char *key; bool want; } bools[] = {
        {"t1", true}, {"t2", true}, {"t3", true}, {"f1", false}, {"f2", false}, {"f3", false}};
    for (size_t k = 0; k < sizeof bools / sizeof bools[0]; k++) {
        bool b = !bools[k].want;
        assert_int_equal(sf_agent_opt_bool(&c, bools[k].key, !bools[k].want, &b), SF_OK);
        assert_true(b == bools[k].want);
    }
    bool b = false;
    assert_int_equal(sf_agent_opt_bool(&c, "absent", true, &b), SF_OK);
    assert_true(b);
    assert_int_equal(sf_agent_opt_bool(&c, "nul", true, &b), SF_OK);
    assert_true(b);
    expect_msg_at(sf_agent_opt_bool(&c, "bad", true, &b), 24, "bad", "expected true or false, found 'maybe'");
    expect_msg_at(sf_agent_opt_bool(&c, "qnull", true, &b), 12, "qnull", "expected true or false, found 'null'");
    expect_msg_set(sf_agent_opt_bool(&c, "one", true, &b), "one", "expected true or false, found '1'");
    expect_msg_at(sf_agent_opt_bool(&c, "map", true, &b), 15, "map", "expected a single value");
}

/* ---------------------------------------------------------------------------
 * Lists */

static void test_opt_lists(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    static const char *const qs[] = {"0.5", "0.9", "0.99"};
    static const char *const bad_item[] = {"0.5", "x", "0.9"};
    static const char *const out_item[] = {"0.5", "0.9", "1.5"};
    static const char *const nested[] = {"a", NULL};
    static const char *const names[] = {"svc", "host"};
    static const char *const empty_name[] = {""};
    add_seq(&o, "qs", 10, 3, qs);
    add_scalar(&o, "q1", "0.25", 11);
    add_seq(&o, "none", 12, 0, NULL);
    add_seq(&o, "bad_item", 13, 3, bad_item);
    add_seq(&o, "out_item", 14, 3, out_item);
    add_map(&o, "map", 15);
    add_seq(&o, "names", 16, 2, names);
    add_scalar(&o, "name1", "svc", 17);
    add_seq(&o, "nested", 18, 2, nested);
    add_seq(&o, "empty_name", 19, 1, empty_name);
    add_scalar(&o, "nul", "null", 20);
    add_seq(&o, "setq", 0, 3, qs);
    sf_agent_config c = make_cfg(&o);

    double v[4] = {-1, -1, -1, -1};
    int n = -1;
    assert_int_equal(sf_agent_opt_doubles(&c, "qs", 0, 1, v, 4, &n), SF_OK);
    assert_int_equal(n, 3);
    assert_true(v[0] == 0.5 && v[1] == 0.9 && v[2] == 0.99 && v[3] == -1);
    assert_int_equal(sf_agent_opt_doubles(&c, "qs", 0, 1, v, 3, &n), SF_OK); /* exactly max */
    assert_int_equal(n, 3);
    assert_int_equal(sf_agent_opt_doubles(&c, "q1", 0, 1, v, 4, &n), SF_OK);
    assert_int_equal(n, 1);
    assert_true(v[0] == 0.25);
    assert_int_equal(sf_agent_opt_doubles(&c, "none", 0, 1, v, 4, &n), SF_OK);
    assert_int_equal(n, 0);
    n = -1;
    assert_int_equal(sf_agent_opt_doubles(&c, "absent", 0, 1, v, 4, &n), SF_OK);
    assert_int_equal(n, 0);
    n = -1;
    assert_int_equal(sf_agent_opt_doubles(&c, "nul", 0, 1, v, 4, &n), SF_OK);
    assert_int_equal(n, 0);
    expect_msg_at(sf_agent_opt_doubles(&c, "qs", 0, 1, v, 2, &n), 10, "qs", "at most 2 values, found 3");
    assert_int_equal(n, 0);
    expect_msg_at(sf_agent_opt_doubles(&c, "bad_item", 0, 1, v, 4, &n), 13, "bad_item", "item 1: expected a number");
    char what[256];
    snprintf(what, sizeof what, "item 2: %g is outside [%g, %g]", 1.5, 0.0, 1.0);
    expect_msg_at(sf_agent_opt_doubles(&c, "out_item", 0, 1, v, 4, &n), 14, "out_item", what);
    assert_int_equal(n, 0);
    expect_msg_at(sf_agent_opt_doubles(&c, "map", 0, 1, v, 4, &n), 15, "map", "expected a number or a list of numbers");
    expect_msg_at(sf_agent_opt_doubles(&c, "nested", 0, 1, v, 4, &n), 18, "nested", "item 0: expected a number");
    expect_msg_set(sf_agent_opt_doubles(&c, "setq", 0, 0.95, v, 4, &n), "setq",
                   (snprintf(what, sizeof what, "item 2: %g is outside [%g, %g]", 0.99, 0.0, 0.95), what));

    const char *s[3] = {NULL, NULL, NULL};
    assert_int_equal(sf_agent_opt_strs(&c, "names", s, 3, &n), SF_OK);
    assert_int_equal(n, 2);
    assert_string_equal(s[0], "svc");
    assert_string_equal(s[1], "host");
    assert_null(s[2]);
    assert_int_equal(sf_agent_opt_strs(&c, "name1", s, 3, &n), SF_OK);
    assert_int_equal(n, 1);
    assert_ptr_equal(s[0], o.vals[7].scalar);
    assert_int_equal(sf_agent_opt_strs(&c, "absent", s, 3, &n), SF_OK);
    assert_int_equal(n, 0);
    assert_int_equal(sf_agent_opt_strs(&c, "none", s, 3, &n), SF_OK);
    assert_int_equal(n, 0);
    expect_msg_at(sf_agent_opt_strs(&c, "names", s, 1, &n), 16, "names", "at most 1 values, found 2");
    expect_msg_at(sf_agent_opt_strs(&c, "map", s, 3, &n), 15, "map", "expected a name or a list of names");
    expect_msg_at(sf_agent_opt_strs(&c, "nested", s, 3, &n), 18, "nested", "item 1: expected a name");
    expect_msg_at(sf_agent_opt_strs(&c, "empty_name", s, 3, &n), 19, "empty_name", "item 0: expected a name");
    assert_int_equal(n, 0);
}

/* ---------------------------------------------------------------------------
 * Durations */

typedef struct dur_case {
    const char *text;
    int64_t us; /* expected, or -1 for an error */
    const char *what;
} dur_case;

#define SEC INT64_C(1000000)

static const dur_case durations[] = {
    {"500ms", 500 * INT64_C(1000), NULL},
    {"30s", 30 * SEC, NULL},
    {"1m", 60 * SEC, NULL},
    {"1min", 60 * SEC, NULL},
    {"2h", 2 * 3600 * SEC, NULL},
    {"1d", 86400 * SEC, NULL},
    {"7d", 7 * 86400 * SEC, NULL},
    {"45", 45 * SEC, NULL},
    {"1.5", 1500 * INT64_C(1000), NULL},
    {"0.5s", 500 * INT64_C(1000), NULL},
    {"1.5m", 90 * SEC, NULL},
    {"0.25h", 900 * SEC, NULL},
    {"250us", 250, NULL},
    {"1us", 1, NULL},
    {"2.5ms", 2500, NULL},
    {"2 s", 2 * SEC, NULL},
    {"1e3", 1000 * SEC, NULL},
    {"0", -1, "'0' must be at least 1us and finite"},
    {"0s", -1, "'0s' must be at least 1us and finite"},
    {"0ms", -1, "'0ms' must be at least 1us and finite"},
    {"-1s", -1, "'-1s' must be at least 1us and finite"},
    {"0.5us", -1, "'0.5us' must be at least 1us and finite"},
    {"1e14d", -1, "'1e14d' must be at least 1us and finite"},
    {"1.0000005s", -1, "'1.0000005s' is not a whole number of microseconds"},
    {"5x", -1, "unknown unit 'x' in '5x' (use us, ms, s, m, h or d)"},
    {"5 sec", -1, "unknown unit 'sec' in '5 sec' (use us, ms, s, m, h or d)"},
    {"5S", -1, "unknown unit 'S' in '5S' (use us, ms, s, m, h or d)"},
    {"1h30m", -1, "unknown unit 'h30m' in '1h30m' (use us, ms, s, m, h or d)"},
    {"abc", -1, "expected a duration such as 30s or 1m, found 'abc'"},
    {"s", -1, "expected a duration such as 30s or 1m, found 's'"},
    {"inf", -1, "expected a duration such as 30s or 1m, found 'inf'"},
    {"1e400s", -1, "expected a duration such as 30s or 1m, found '1e400s'"},
};

static void test_opt_duration(void **st)
{
    (void)st;
    for (size_t k = 0; k < sizeof durations / sizeof durations[0]; k++) {
        const dur_case *d = &durations[k];
        opts o;
        opts_init(&o);
        add_scalar(&o, "every", d->text, 30 + (int)k);
        sf_agent_config c = make_cfg(&o);
        int64_t us = -7;
        sf_status rc = sf_agent_opt_duration_us(&c, "every", 5, &us);
        if (d->us >= 0) {
            if (rc != SF_OK) fail_msg("'%s': %s", d->text, sf_error_message());
            if (us != d->us) fail_msg("'%s' is %" PRId64 " us, expected %" PRId64, d->text, us, d->us);
        } else {
            expect_msg_at(rc, 30 + (int)k, "every", d->what);
            assert_int_equal(us, -7);
        }
    }
    /* Defaults: absent, null, and no mapping at all. */
    opts o;
    opts_init(&o);
    add_scalar(&o, "nul", "~", 10);
    add_quoted(&o, "qempty", "", 11);
    static const char *const seq1[] = {"1s"};
    add_seq(&o, "list", 12, 1, seq1);
    add_scalar(&o, "setd", "0s", 0);
    sf_agent_config c = make_cfg(&o);
    int64_t us = 0;
    assert_int_equal(sf_agent_opt_duration_us(&c, "absent", 1234, &us), SF_OK);
    assert_int_equal(us, 1234);
    assert_int_equal(sf_agent_opt_duration_us(&c, "nul", 4321, &us), SF_OK);
    assert_int_equal(us, 4321);
    expect_msg_at(sf_agent_opt_duration_us(&c, "qempty", 1, &us), 11, "qempty",
                  "expected a duration such as 30s or 1m, found ''");
    expect_msg_at(sf_agent_opt_duration_us(&c, "list", 1, &us), 12, "list", "expected a single value");
    expect_msg_set(sf_agent_opt_duration_us(&c, "setd", 1, &us), "setd", "'0s' must be at least 1us and finite");
    c.node = NULL;
    assert_int_equal(sf_agent_opt_duration_us(&c, "every", 99, &us), SF_OK);
    assert_int_equal(us, 99);
}

/* Decimal durations name a whole number of microseconds even when their
 * binary double times the unit is not an integer (1.039 * 1e6 is
 * 1038999.9999999999 in double arithmetic). */
static void test_opt_duration_decimal_rounding(void **st)
{
    (void)st;
    static const dur_case cases[] = {
        {"1.039s", 1039 * INT64_C(1000), NULL},
        {"0.000123s", 123, NULL},
        {"0.017m", 1020 * INT64_C(1000), NULL},
        {"1.001ms", 1001, NULL},
    };
    char bad[1024] = "";
    size_t len = 0;
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        opts o;
        opts_init(&o);
        add_scalar(&o, "every", cases[k].text, 10);
        sf_agent_config c = make_cfg(&o);
        int64_t us = -7;
        sf_status rc = sf_agent_opt_duration_us(&c, "every", 5, &us);
        if (rc != SF_OK)
            len += (size_t)snprintf(bad + len, sizeof bad - len, "\n  '%s' rejected: %s", cases[k].text,
                                    sf_error_message());
        else if (us != cases[k].us)
            len += (size_t)snprintf(bad + len, sizeof bad - len, "\n  '%s' is %" PRId64 " us, expected %" PRId64,
                                    cases[k].text, us, cases[k].us);
        assert_true(len < sizeof bad);
    }
    if (len) fail_msg("%s", bad);
}

/* ---------------------------------------------------------------------------
 * Columns */

static void test_need_col(void **st)
{
    (void)st;
    opts o;
    opts_init(&o);
    add_scalar(&o, "time", "svc", 9);
    add_scalar(&o, "value", "nosuch", 10);
    sf_agent_config c = make_cfg(&o);
    assert_int_equal(sf_agent_col(&c, "ts"), 0);
    assert_int_equal(sf_agent_col(&c, "n"), 3);
    assert_int_equal(sf_agent_col(&c, "TS"), -1);
    assert_int_equal(sf_agent_col(&c, NULL), -1);

    static const sf_type ts_only[] = {SF_TIMESTAMP};
    static const sf_type int_ts[] = {SF_INT64, SF_TIMESTAMP};
    static const sf_type numeric[] = {SF_INT64, SF_FLOAT64, SF_TIMESTAMP};
    int col = -9;
    assert_int_equal(sf_agent_need_col(&c, "time", "ts", ts_only, 1, &col), SF_OK);
    assert_int_equal(col, 0);
    assert_int_equal(sf_agent_need_col(&c, "time", "n", int_ts, 2, &col), SF_OK);
    assert_int_equal(col, 3);
    assert_int_equal(sf_agent_need_col(&c, "time", "lat", numeric, 3, &col), SF_OK);
    assert_int_equal(col, 2);
    assert_int_equal(sf_agent_need_col(&c, "time", "svc", NULL, 0, &col), SF_OK); /* any type */
    assert_int_equal(col, 1);

    /* Type errors at the line of the option that named the column. */
    col = -9;
    expect_msg_at(sf_agent_need_col(&c, "time", "svc", ts_only, 1, &col), 9, "time",
                  "column 'svc' is string, expected timestamp");
    expect_msg_at(sf_agent_need_col(&c, "time", "svc", int_ts, 2, &col), 9, "time",
                  "column 'svc' is string, expected int64 or timestamp");
    expect_msg_at(sf_agent_need_col(&c, "time", "svc", numeric, 3, &col), 9, "time",
                  "column 'svc' is string, expected int64, float64 or timestamp");
    assert_int_equal(col, -9);
    /* Unknown columns, with the pass schema's columns listed. */
    expect_msg_at(sf_agent_need_col(&c, "value", "nosuch", numeric, 3, &col), 10, "value",
                  "no column 'nosuch' (columns: ts, svc, lat, n)");
    /* A column named by something other than an option of the mapping (the
     * column: key of a hand-made config): the agent's line. */
    expect_msg_at(sf_agent_need_col(&c, "column", "latency", numeric, 3, &col), 3, "column",
                  "no column 'latency' (columns: ts, svc, lat, n)");
    /* A missing name: the message still names file:line, agent and key. */
    assert_int_equal(sf_agent_need_col(&c, "time", NULL, numeric, 3, &col), SF_ERR_CONFIG);
    const char *m = sf_error_message();
    assert_true(strncmp(m, "flows/wf.yaml:3: agent 'h1': ", strlen("flows/wf.yaml:3: agent 'h1': ")) == 0);
    assert_non_null(strstr(m, "time"));
    assert_non_null(strstr(m, "a column name is required"));
    /* No schema: every column is unknown. */
    c.schema = NULL;
    assert_int_equal(sf_agent_col(&c, "ts"), -1);
    expect_msg_at(sf_agent_need_col(&c, "time", "ts", ts_only, 1, &col), 9, "time", "no column 'ts' (columns: )");
}

/* ---------------------------------------------------------------------------
 * Options loaded from a workflow file, with --set overrides */

static char wf_path[512];

static const char WF[] = "name: opts\n"
                         "input:\n"
                         "  format: csv\n"
                         "  path: data.csv\n"
                         "stages:\n"
                         "  - name: profile\n"
                         "    agents:\n"
                         "      - agent: stats\n"
                         "        id: h1\n"
                         "        column: lat\n"
                         "        bins: 12\n"
                         "        window: 90s\n"
                         "        mode: fast\n"
                         "        qs: [0.5, 0.9, 2]\n"
                         "        names:\n"
                         "          - svc\n"
                         "          - ''\n"
                         "        ratio: 0.5\n"
                         "      - {agent: stats, id: h2, column: lat, bins: x12, every: 0s}\n";

static int line_of(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    if (p == NULL) fail_msg("'%s' not in the test text", needle);
    int line = 1;
    for (const char *q = text; q < p; q++) line += *q == '\n';
    return line;
}

static sf_workflow *load_wf(int nsets, const char *const *sets)
{
    /* TMPDIR, else the test's working directory (the build tree). */
    const char *base = getenv("TMPDIR");
    snprintf(wf_path, sizeof wf_path, "%s/sf_test_agent_options_%ld.yaml", base && base[0] ? base : ".",
             (long)getpid());
    FILE *f = fopen(wf_path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(WF, 1, strlen(WF), f), strlen(WF));
    assert_int_equal(fclose(f), 0);
    sf_workflow *w = NULL;
    sf_status rc = sf_workflow_load(wf_path, nsets, sets, &w);
    remove(wf_path);
    if (rc != SF_OK) fail_msg("load failed: %s", sf_error_message());
    return w;
}

static sf_agent_config cfg_of(const sf_workflow *w, int j)
{
    const sf_agent_spec *a = &w->stages[0].agents[j];
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = a->agent;
    c.id = a->id;
    c.column = a->column;
    c.col = sf_schema_find(&schema, a->column);
    c.schema = &schema;
    c.node = a->node;
    c.file = w->file;
    c.line = a->line;
    return c;
}

static void expect_file_msg(sf_status rc, const sf_workflow *w, int line, const char *id, const char *key,
                            const char *what)
{
    char want[1024];
    snprintf(want, sizeof want, "%s:%d: agent '%s': option '%s': %s", w->file, line, id, key, what);
    if (rc != SF_ERR_CONFIG) fail_msg("expected SF_ERR_CONFIG (%s), got %s", want, sf_status_name(rc));
    if (strcmp(sf_error_message(), want) != 0) fail_msg("\n got      %s\n expected %s", sf_error_message(), want);
}

static void test_workflow_options(void **st)
{
    (void)st;
    sf_workflow *w = load_wf(0, NULL);
    sf_agent_config c = cfg_of(w, 0);
    assert_int_equal(c.line, line_of(WF, "- agent: stats") );
    int64_t bins = 0, us = 0;
    assert_int_equal(sf_agent_opt_int(&c, "bins", 10, 1, 1000, &bins), SF_OK);
    assert_int_equal(bins, 12);
    assert_int_equal(sf_agent_opt_duration_us(&c, "window", 1, &us), SF_OK);
    assert_int_equal(us, 90 * SEC);
    static const char *const modes[] = {"exact", "fast"};
    int m = -1;
    assert_int_equal(sf_agent_opt_choice(&c, "mode", modes, 2, 0, &m), SF_OK);
    assert_int_equal(m, 1);
    double qs[4];
    int n = 0;
    assert_int_equal(sf_agent_opt_doubles(&c, "qs", 0, 10, qs, 4, &n), SF_OK);
    assert_int_equal(n, 3);
    assert_true(qs[0] == 0.5 && qs[1] == 0.9 && qs[2] == 2);

    /* Errors name the option's line in the file. */
    char what[256];
    snprintf(what, sizeof what, "item 2: %g is outside [%g, %g]", 2.0, 0.0, 1.0);
    expect_file_msg(sf_agent_opt_doubles(&c, "qs", 0, 1, qs, 4, &n), w, line_of(WF, "qs:"), "h1", "qs", what);
    expect_file_msg(sf_agent_opt_int(&c, "bins", 10, 1, 8, &bins), w, line_of(WF, "bins: 12"), "h1", "bins",
                    "12 is outside [1, 8]");
    expect_file_msg(sf_agent_opt_double(&c, "ratio", 0, 0.6, 1, &qs[0]), w, line_of(WF, "ratio:"), "h1", "ratio",
                    (snprintf(what, sizeof what, "%g is outside [%g, %g]", 0.5, 0.6, 1.0), what));
    /* A block list's value starts on the line of its first item. */
    const char *names[3];
    expect_file_msg(sf_agent_opt_strs(&c, "names", names, 3, &n), w, line_of(WF, "- svc"), "h1", "names",
                    "item 1: expected a name");
    static const char *const allowed[] = {"bins", "window", "mode", "qs", "names"};
    assert_int_equal(sf_agent_check_options(&c, allowed, 5), SF_ERR_CONFIG);
    char want[512];
    snprintf(want, sizeof want,
             "%s:%d: agent 'h1': unknown option 'ratio' (stats accepts agent, id, column, by, where, baseline, bins, "
             "window, mode, qs, names)",
             w->file, line_of(WF, "ratio:"));
    assert_string_equal(sf_error_message(), want);

    /* A flow mapping: every option is on the agent's line. */
    sf_agent_config c2 = cfg_of(w, 1);
    int line2 = line_of(WF, "{agent: stats, id: h2");
    assert_int_equal(c2.line, line2);
    expect_file_msg(sf_agent_opt_int(&c2, "bins", 10, 1, 100, &bins), w, line2, "h2", "bins",
                    "expected an integer, found 'x12'");
    expect_file_msg(sf_agent_opt_duration_us(&c2, "every", 1, &us), w, line2, "h2", "every",
                    "'0s' must be at least 1us and finite");
    sf_workflow_destroy(&w);
}

/* A --set that adds an option has no file line: the message names the
 * --set key instead. */
static void test_workflow_set_new_option(void **st)
{
    (void)st;
    static const char *const sets[] = {"stages.0.agents.0.extra=5", "stages.0.agents.0.factor=[1, x]"};
    sf_workflow *w = load_wf(2, sets);
    sf_agent_config c = cfg_of(w, 0);
    int64_t x = 0;
    assert_int_equal(sf_agent_opt_int(&c, "extra", 1, 1, 10, &x), SF_OK);
    assert_int_equal(x, 5);
    sf_status rc = sf_agent_opt_int(&c, "extra", 1, 1, 4, &x);
    assert_int_equal(rc, SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "--set extra: agent 'h1': option 'extra': 5 is outside [1, 4]");
    double f[4];
    int n;
    rc = sf_agent_opt_doubles(&c, "factor", 0, 10, f, 4, &n);
    assert_int_equal(rc, SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "--set factor: agent 'h1': option 'factor': item 1: expected a number");
    static const char *const allowed[] = {"bins", "window", "mode", "qs", "names", "ratio", "factor"};
    assert_int_equal(sf_agent_check_options(&c, allowed, 7), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(),
                        "--set extra: agent 'h1': unknown option 'extra' (stats accepts agent, id, column, by, where, "
                        "baseline, bins, window, mode, qs, names, ratio, factor)");
    sf_workflow_destroy(&w);
}

/* A --set that replaces the value of an option written in the file: the
 * bad value came from the command line, so the message must name --set,
 * not the file line that holds a different (valid) value. */
static void test_workflow_set_replaced_option(void **st)
{
    (void)st;
    static const char *const sets[] = {"stages.0.agents.0.bins=abc"};
    sf_workflow *w = load_wf(1, sets);
    sf_agent_config c = cfg_of(w, 0);
    int64_t x = 0;
    sf_status rc = sf_agent_opt_int(&c, "bins", 1, 1, 100, &x);
    assert_int_equal(rc, SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), "--set bins: agent 'h1': option 'bins': expected an integer, found 'abc'");
    sf_workflow_destroy(&w);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_check_options),
        cmocka_unit_test(test_option_lookup),
        cmocka_unit_test(test_opt_double),
        cmocka_unit_test(test_opt_int),
        cmocka_unit_test(test_opt_str_choice_bool),
        cmocka_unit_test(test_opt_lists),
        cmocka_unit_test(test_opt_duration),
        cmocka_unit_test(test_opt_duration_decimal_rounding),
        cmocka_unit_test(test_need_col),
        cmocka_unit_test(test_workflow_options),
        cmocka_unit_test(test_workflow_set_new_option),
        cmocka_unit_test(test_workflow_set_replaced_option),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
