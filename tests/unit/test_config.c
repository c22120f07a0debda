/* Workflow loading: parsed values, defaults, paths, every validation error
 * with its exact location, --set overrides, stage order, config hash, byte
 * sizes. Expected line numbers are computed from the test's own YAML text. */
#define _POSIX_C_SOURCE 200809L
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shardflow/config.h"
#include "shardflow/json.h"
#include "shardflow/status.h"

/* ---------------------------------------------------------------------------
 * Fixtures */

static char tmpdir[256];
static char *written[256];
static int nwritten;

static int group_setup(void **state)
{
    (void)state;
    const char *base = getenv("TMPDIR");
    snprintf(tmpdir, sizeof tmpdir, "%s/sf_test_config_XXXXXX", base && base[0] ? base : "/tmp");
    return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int group_teardown(void **state)
{
    (void)state;
    /* Files first, then directories, deepest (last created) first. */
    for (int i = nwritten - 1; i >= 0; i--) {
        remove(written[i]);
        free(written[i]);
    }
    rmdir(tmpdir);
    return 0;
}

static void track(const char *path)
{
    for (int i = 0; i < nwritten; i++)
        if (strcmp(written[i], path) == 0) return;
    assert_true(nwritten < 256);
    written[nwritten] = strdup(path);
    assert_non_null(written[nwritten]);
    nwritten++;
}

/* Writes text to tmpdir/rel (creating one level of folder) and returns the
 * full path (static storage, valid until the next call). */
static const char *write_file(const char *rel, const char *text)
{
    static char path[512];
    const char *slash = strchr(rel, '/');
    if (slash) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%.*s", tmpdir, (int)(slash - rel), rel);
        mkdir(dir, 0700);
        track(dir);
    }
    snprintf(path, sizeof path, "%s/%s", tmpdir, rel);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    track(path);
    return path;
}

static sf_status load_text(const char *text, int nsets, const char *const *sets, sf_workflow **w)
{
    const char *path = write_file("wf.yaml", text);
    return sf_workflow_load(path, nsets, sets, w);
}

static sf_workflow *load_ok(const char *text, int nsets, const char *const *sets)
{
    sf_workflow *w = NULL;
    sf_status rc = load_text(text, nsets, sets, &w);
    if (rc != SF_OK) fail_msg("load failed (%s): %s", sf_status_name(rc), sf_error_message());
    assert_non_null(w);
    return w;
}

/* 1-based line of the first occurrence of needle in text. */
static int line_of(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    if (p == NULL) fail_msg("needle '%s' not in the test text", needle);
    int line = 1;
    for (const char *q = text; q < p; q++)
        if (*q == '\n') line++;
    return line;
}

/* 1-based column of the first occurrence of needle in text. */
static int col_of(const char *text, const char *needle)
{
    const char *p = strstr(text, needle);
    if (p == NULL) fail_msg("needle '%s' not in the test text", needle);
    const char *q = p;
    while (q > text && q[-1] != '\n') q--;
    return (int)(p - q) + 1;
}

/* text with the first occurrence of from replaced by to (malloc'ed). */
static char *subst(const char *text, const char *from, const char *to)
{
    const char *p = strstr(text, from);
    if (p == NULL) fail_msg("'%s' not in the base text", from);
    size_t a = (size_t)(p - text), nf = strlen(from), nt = strlen(to), nr = strlen(p + nf);
    char *r = malloc(a + nt + nr + 1);
    assert_non_null(r);
    memcpy(r, text, a);
    memcpy(r + a, to, nt);
    memcpy(r + a + nt, p + nf, nr + 1);
    return r;
}

static char *concat(const char *a, const char *b)
{
    char *r = malloc(strlen(a) + strlen(b) + 1);
    assert_non_null(r);
    strcpy(r, a);
    strcat(r, b);
    return r;
}

/* The load must fail with SF_ERR_CONFIG, a message starting with prefix and
 * containing more. */
static void expect_failure(const char *text, int nsets, const char *const *sets, const char *prefix,
                           const char *more)
{
    sf_workflow *w = NULL;
    sf_status rc = load_text(text, nsets, sets, &w);
    const char *msg = sf_error_message();
    if (rc != SF_ERR_CONFIG)
        fail_msg("expected SF_ERR_CONFIG with '%s', got %s: %s\n--- text ---\n%s", prefix, sf_status_name(rc), msg,
                 text);
    assert_null(w);
    if (strncmp(msg, prefix, strlen(prefix)) != 0)
        fail_msg("message\n  '%s'\ndoes not start with\n  '%s'\n--- text ---\n%s", msg, prefix, text);
    if (more && strstr(msg, more) == NULL)
        fail_msg("message\n  '%s'\ndoes not contain\n  '%s'\n--- text ---\n%s", msg, more, text);
}

/* "DIR/wf.yaml:LINE: KEY: " with LINE the line of needle in text. */
static void expect_error_at(const char *text, const char *needle, const char *key, const char *more)
{
    char prefix[1024];
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:%d: %s: ", tmpdir, line_of(text, needle), key);
    expect_failure(text, 0, NULL, prefix, more);
}

/* ---------------------------------------------------------------------------
 * The base workflow that the error cases edit. */

static const char BASE_HEAD[] = "name: demo\n"
                                "input:\n"
                                "  format: csv\n"
                                "  path: data.csv\n"
                                "shard:\n"
                                "  strategy: hash\n"
                                "  key: user_id\n"
                                "  shards: 8\n"
                                "distribute:\n"
                                "  mode: static\n"
                                "  memory_budget: 64MiB\n"
                                "threads: 2\n"
                                "output:\n"
                                "  dir: out\n";
static const char BASE_STAGES[] = "stages:\n"
                                  "  - name: profile\n"
                                  "    agents:\n"
                                  "      - {agent: stats, id: latency, column: latency_ms, by: [service]}\n"
                                  "  - name: detail\n"
                                  "    after: [profile]\n"
                                  "    agents:\n"
                                  "      - agent: stats\n"
                                  "        column: bytes\n";

static char *base_text(void) { return concat(BASE_HEAD, BASE_STAGES); }

static void test_base_is_valid(void **state)
{
    (void)state;
    char *text = base_text();
    sf_workflow *w = load_ok(text, 0, NULL);
    assert_string_equal(w->name, "demo");
    assert_int_equal(w->nstages, 2);
    sf_workflow_destroy(&w);
    assert_null(w);
    sf_workflow_destroy(&w); /* NULL is fine */
    free(text);
}

/* ---------------------------------------------------------------------------
 * A full workflow, every key set to a value that is not its default. */

static const char FULL[] = "# every key, none at its default\n"
                           "name: full\n"
                           "threads: 3\n"
                           "input:\n"
                           "  format: csv\n"
                           "  path: data/req.csv\n"
                           "  delimiter: \";\"\n"
                           "  on_bad_row: skip\n"
                           "  max_line_length: 2MiB\n"
                           "  block_size: 512 KiB\n"
                           "  batch_rows: 1000\n"
                           "  infer_rows: 50\n"
                           "  schema: {latency_ms: float64, ts: timestamp, user_id: int64, service: string}\n"
                           "shard:\n"
                           "  strategy: semantic\n"
                           "  key: user_id\n"
                           "  shards: 64\n"
                           "  map: groups.csv\n"
                           "  sample: 5000\n"
                           "  seed: 9\n"
                           "distribute:\n"
                           "  mode: dynamic\n"
                           "  memory_budget: 1GB\n"
                           "  morsel_rows: 4096\n"
                           "  chunk_bytes: 1MiB\n"
                           "output:\n"
                           "  dir: results/full\n"
                           "stages:\n"
                           "  - name: profile\n"
                           "    agents:\n"
                           "      - {agent: stats, id: latency, column: latency_ms, by: [service, region]}\n"
                           "      - agent: stats\n"
                           "        column: bytes\n"
                           "        by: service\n"
                           "        bins: 10\n"
                           "  - name: report\n"
                           "    after: profile\n"
                           "    agents:\n"
                           "      - {agent: stats, id: late}\n";

static void test_full_workflow(void **state)
{
    (void)state;
    sf_workflow *w = load_ok(FULL, 0, NULL);
    char expect[600];

    assert_string_equal(w->name, "full");
    assert_int_equal(w->threads, 3);
    snprintf(expect, sizeof expect, "%s/wf.yaml", tmpdir);
    assert_string_equal(w->file, expect);

    const sf_input_config *in = &w->input;
    assert_int_equal(in->format, SF_INPUT_CSV);
    snprintf(expect, sizeof expect, "%s/data/req.csv", tmpdir);
    assert_string_equal(in->path, expect);
    assert_int_equal(in->delimiter, ';');
    assert_int_equal(in->on_bad_row, SF_BAD_ROW_SKIP);
    assert_int_equal(in->max_line_length, 2 * 1024 * 1024);
    assert_int_equal(in->block_size, 512 * 1024);
    assert_int_equal(in->batch_rows, 1000);
    assert_int_equal(in->infer_rows, 50);
    assert_int_equal(in->nhints, 4);
    static const char *const hint_names[] = {"latency_ms", "ts", "user_id", "service"};
    static const sf_type hint_types[] = {SF_FLOAT64, SF_TIMESTAMP, SF_INT64, SF_STRING};
    for (int i = 0; i < 4; i++) {
        assert_string_equal(in->hints[i].name, hint_names[i]);
        assert_int_equal(in->hints[i].type, hint_types[i]);
    }

    assert_int_equal(w->shard.strategy, SF_SHARD_SEMANTIC);
    assert_string_equal(w->shard.key, "user_id");
    assert_int_equal(w->shard.key_line, line_of(FULL, "key: user_id"));
    assert_int_equal(w->shard.shards, 64);
    snprintf(expect, sizeof expect, "%s/groups.csv", tmpdir);
    assert_string_equal(w->shard.map, expect);
    assert_int_equal(w->shard.sample, 5000);
    assert_int_equal(w->shard.seed, 9);

    assert_int_equal(w->distribute.mode, SF_DIST_DYNAMIC);
    assert_int_equal(w->distribute.memory_budget, 1000000000ull);
    assert_int_equal(w->distribute.morsel_rows, 4096);
    assert_int_equal(w->distribute.chunk_bytes, 1048576);
    assert_string_equal(w->out_dir, "results/full");

    assert_int_equal(w->nstages, 2);
    const sf_stage_config *s0 = &w->stages[0], *s1 = &w->stages[1];
    assert_string_equal(s0->name, "profile");
    assert_int_equal(s0->line, line_of(FULL, "name: profile"));
    assert_int_equal(s0->nafter, 0);
    assert_int_equal(s0->nagents, 2);
    const sf_agent_spec *a0 = &s0->agents[0], *a1 = &s0->agents[1];
    assert_string_equal(a0->agent, "stats");
    assert_string_equal(a0->id, "latency");
    assert_string_equal(a0->column, "latency_ms");
    assert_int_equal(a0->nby, 2);
    assert_string_equal(a0->by[0], "service");
    assert_string_equal(a0->by[1], "region");
    assert_int_equal(a0->line, line_of(FULL, "{agent: stats, id: latency"));
    assert_string_equal(a1->agent, "stats");
    assert_string_equal(a1->id, "stats"); /* no id: the agent name */
    assert_string_equal(a1->column, "bytes");
    assert_int_equal(a1->nby, 1);          /* a single name is a one-element list */
    assert_string_equal(a1->by[0], "service");
    assert_int_equal(a1->line, line_of(FULL, "agent: stats\n        column: bytes"));
    /* Agent options stay in the node for the agent's check(). */
    const sf_cfg_node *bins = sf_cfg_get(a1->node, "bins");
    assert_non_null(bins);
    assert_int_equal(bins->kind, SF_NODE_SCALAR);
    assert_string_equal(bins->scalar, "10");
    assert_false(bins->quoted);
    assert_int_equal(bins->line, line_of(FULL, "bins: 10"));
    assert_int_equal(bins->col, col_of(FULL, "10\n  - name: report"));

    assert_string_equal(s1->name, "report");
    assert_int_equal(s1->nafter, 1);
    assert_string_equal(s1->after[0], "profile");
    assert_int_equal(s1->after_idx[0], 0);
    assert_int_equal(s1->nagents, 1);
    assert_string_equal(s1->agents[0].id, "late");
    assert_null(s1->agents[0].column);
    assert_int_equal(s1->agents[0].nby, 0);
    assert_int_equal(w->order[0], 0);
    assert_int_equal(w->order[1], 1);
    assert_int_equal(w->level[0], 0);
    assert_int_equal(w->level[1], 1);

    /* The tree: keys in file order, with their lines; quoting recorded. */
    const sf_cfg_node *root = w->root;
    assert_int_equal(root->kind, SF_NODE_MAP);
    static const char *const top[] = {"name", "threads", "input", "shard", "distribute", "output", "stages"};
    static const char *const top_needle[] = {"name:", "threads:", "input:", "shard:", "distribute:", "output:",
                                             "stages:"};
    assert_int_equal(root->n, 7);
    for (int i = 0; i < 7; i++) {
        assert_string_equal(root->keys[i], top[i]);
        assert_int_equal(root->key_lines[i], line_of(FULL, top_needle[i]));
    }
    const sf_cfg_node *delim = sf_cfg_get(sf_cfg_get(root, "input"), "delimiter");
    assert_true(delim->quoted);
    assert_int_equal(delim->col, col_of(FULL, "\";\""));
    assert_null(sf_cfg_get(root, "nosuch"));
    assert_null(sf_cfg_get(delim, "x")); /* not a map */
    assert_null(sf_cfg_get(NULL, "x"));

    assert_int_equal(strlen(w->config_hash), 16);
    for (int i = 0; i < 16; i++) assert_non_null(strchr("0123456789abcdef", w->config_hash[i]));
    sf_workflow_destroy(&w);
}

static void test_defaults(void **state)
{
    (void)state;
    const char *text = "name: mini\n"
                       "input: {format: csv, path: /abs/data.csv}\n"
                       "stages:\n"
                       "  - name: s\n"
                       "    agents: [{agent: stats}]\n";
    sf_workflow *w = load_ok(text, 0, NULL);
    const sf_input_config *in = &w->input;
    assert_int_equal(in->format, SF_INPUT_CSV);
    assert_string_equal(in->path, "/abs/data.csv"); /* absolute: kept */
    assert_int_equal(in->delimiter, ',');
    assert_int_equal(in->on_bad_row, SF_BAD_ROW_FAIL);
    assert_int_equal(in->max_line_length, 1u << 20);
    assert_int_equal(in->block_size, 4u << 20);
    assert_int_equal(in->batch_rows, 65536);
    assert_int_equal(in->infer_rows, 1000);
    assert_int_equal(in->nhints, 0);
    assert_int_equal(w->shard.strategy, SF_SHARD_SIZE);
    assert_null(w->shard.key);
    assert_int_equal(w->shard.shards, 16);
    assert_null(w->shard.map);
    assert_int_equal(w->shard.sample, 100000);
    assert_int_equal(w->shard.seed, 1);
    assert_int_equal(w->distribute.mode, SF_DIST_STATIC);
    assert_int_equal(w->distribute.memory_budget, 268435456ull);
    assert_int_equal(w->distribute.morsel_rows, 16384);
    assert_int_equal(w->distribute.chunk_bytes, 2147483647ull);
    assert_int_equal(w->threads, 0);
    assert_null(w->out_dir);
    assert_int_equal(w->nstages, 1);
    assert_string_equal(w->stages[0].agents[0].id, "stats");
    assert_null(w->stages[0].agents[0].column);
    assert_int_equal(w->stages[0].nafter, 0);
    assert_int_equal(w->order[0], 0);
    assert_int_equal(w->level[0], 0);
    sf_workflow_destroy(&w);

    /* Empty optional sections read as absent. */
    const char *empty = "name: mini\n"
                        "input: {format: csv, path: d.csv}\n"
                        "shard:\n"
                        "distribute: {}\n"
                        "output:\n"
                        "stages:\n"
                        "  - name: s\n"
                        "    after:\n"
                        "    agents: [{agent: stats}]\n";
    w = load_ok(empty, 0, NULL);
    assert_int_equal(w->shard.shards, 16);
    assert_int_equal(w->distribute.morsel_rows, 16384);
    assert_null(w->out_dir);
    assert_int_equal(w->stages[0].nafter, 0);
    sf_workflow_destroy(&w);
}

static void test_synthetic_and_hdf5(void **state)
{
    (void)state;
    const char *synth = "name: gen\n"
                        "input: {format: synthetic, rows: 2000000}\n"
                        "stages: [{name: s, agents: [{agent: stats}]}]\n";
    sf_workflow *w = load_ok(synth, 0, NULL);
    assert_int_equal(w->input.format, SF_INPUT_SYNTHETIC);
    assert_int_equal(w->input.rows, 2000000);
    assert_string_equal(w->input.generator, "requests");
    assert_int_equal(w->input.seed, 42);
    assert_true(w->input.zipf == 1.1);
    assert_int_equal(w->input.users, 100000);
    assert_null(w->input.path);
    sf_workflow_destroy(&w);

    const char *synth2 = "name: gen\n"
                         "input: {format: synthetic, generator: requests, rows: 10, seed: 7, zipf: 0, users: 3,"
                         " batch_rows: 4}\n"
                         "stages: [{name: s, agents: [{agent: stats}]}]\n";
    w = load_ok(synth2, 0, NULL);
    assert_int_equal(w->input.rows, 10);
    assert_int_equal(w->input.seed, 7);
    assert_true(w->input.zipf == 0.0);
    assert_int_equal(w->input.users, 3);
    assert_int_equal(w->input.batch_rows, 4);
    sf_workflow_destroy(&w);

    const char *h5 = "name: h\n"
                     "input: {format: hdf5, path: t.h5}\n"
                     "stages: [{name: s, agents: [{agent: stats}]}]\n";
    w = load_ok(h5, 0, NULL);
    assert_int_equal(w->input.format, SF_INPUT_HDF5);
    assert_string_equal(w->input.group, "/table");
    sf_workflow_destroy(&w);
    char *h5g = subst(h5, "t.h5}", "t.h5, group: /other}");
    w = load_ok(h5g, 0, NULL);
    assert_string_equal(w->input.group, "/other");
    sf_workflow_destroy(&w);
    free(h5g);
}

static void test_path_resolution(void **state)
{
    (void)state;
    const char *text = "name: p\n"
                       "input: {format: csv, path: data.csv}\n"
                       "shard: {strategy: semantic, key: k, map: maps/g.csv}\n"
                       "output: {dir: out/x}\n"
                       "stages: [{name: s, agents: [{agent: stats}]}]\n";
    const char *path = write_file("sub/wf.yaml", text);
    sf_workflow *w = NULL;
    assert_int_equal(sf_workflow_load(path, 0, NULL, &w), SF_OK);
    char expect[600];
    snprintf(expect, sizeof expect, "%s/sub/data.csv", tmpdir);
    assert_string_equal(w->input.path, expect);
    snprintf(expect, sizeof expect, "%s/sub/maps/g.csv", tmpdir);
    assert_string_equal(w->shard.map, expect);
    assert_string_equal(w->out_dir, "out/x"); /* relative to the current directory */
    sf_workflow_destroy(&w);

    /* A path given on the command line is relative to the current directory. */
    const char *sets[] = {"input.path=other.csv"};
    path = write_file("sub/wf.yaml", text);
    assert_int_equal(sf_workflow_load(path, 1, sets, &w), SF_OK);
    assert_string_equal(w->input.path, "other.csv");
    sf_workflow_destroy(&w);

    /* A workflow named without a folder: paths stay as written. */
    char cwd[1024];
    assert_non_null(getcwd(cwd, sizeof cwd));
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", tmpdir);
    assert_int_equal(chdir(sub), 0);
    sf_status rc = sf_workflow_load("wf.yaml", 0, NULL, &w);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(rc, SF_OK);
    assert_string_equal(w->input.path, "data.csv");
    assert_string_equal(w->shard.map, "maps/g.csv");
    sf_workflow_destroy(&w);
}

/* ---------------------------------------------------------------------------
 * Validation errors, each an edit of the base workflow. */

typedef struct edit_case {
    const char *from, *to;  /* replace from by to in the base text */
    const char *needle;     /* the error's line is the line of needle in the edited text */
    const char *key;        /* the key path in the message */
    const char *more;       /* a further substring of the message */
} edit_case;

static const edit_case edit_cases[] = {
    /* unknown keys */
    {"name: demo\n", "nmae: demo\n", "nmae", "nmae", "unknown key 'nmae'; did you mean 'name'?"},
    {"  strategy: hash\n", "  stratgy: hash\n", "stratgy", "shard.stratgy",
     "unknown key 'stratgy'; did you mean 'strategy'? (allowed: strategy, key, shards, map, sample, seed)"},
    {"  - name: detail\n", "  - name: detail\n    color: red\n", "color: red", "stages[1].color",
     "unknown key 'color' (allowed: name, after, agents, aspects)"},
    {"  format: csv\n", "  format: hdf5\n  delimiter: \";\"\n", "delimiter", "input.delimiter",
     "key 'delimiter' does not apply to format hdf5"},
    {"  path: data.csv\n", "  path: data.csv\n  colour: x\n", "colour", "input.colour", "unknown key 'colour'"},
    {"  mode: static\n", "  mode: static\n  budget: 1\n", "budget", "distribute.budget", "unknown key 'budget'"},
    {"  dir: out\n", "  dir: out\n  format: x\n", "format: x", "output.format", "unknown key 'format' (allowed: dir)"},
    /* wrong node kinds */
    {"name: demo\n", "name: {a: 1}\n", "name: {", "name", "expected a string, found a mapping"},
    {"  shards: 8\n", "  shards: [1, 2]\n", "shards: [", "shard.shards", "expected an integer, found a sequence"},
    {"input:\n  format: csv\n  path: data.csv\n", "input: data.csv\n", "input: data", "input",
     "expected a mapping with format and path, found a scalar"},
    {"input:\n  format: csv\n  path: data.csv\n", "input:\n", "input:", "input",
     "expected a mapping with format and path, found an empty value"},
    {"shard:\n  strategy: hash\n  key: user_id\n  shards: 8\n", "shard: [a]\n", "shard: [a]", "shard",
     "expected a mapping, found a sequence"},
    {"      - agent: stats\n        column: bytes\n", "      - stats\n", "- stats", "stages[1].agents[0]",
     "expected a mapping such as {agent: stats"},
    {"  - name: detail\n    after: [profile]\n    agents:\n      - agent: stats\n        column: bytes\n",
     "  - detail\n", "- detail", "stages[1]", "expected a mapping with name and agents, found a scalar"},
    {"      - agent: stats\n        column: bytes\n", "      - agent: stats\n        column: {a: b}\n", "column: {",
     "stages[1].agents[0].column", "expected a string, found a mapping"},
    {"column: latency_ms", "column: \"\"", "column: \"\"", "stages[0].agents[0].column", "must not be empty"},
    /* missing required keys */
    {"name: demo\n", "", "input:", "name", "missing required key 'name'"},
    {"input:\n  format: csv\n  path: data.csv\n", "", "name: demo", "input", "missing required key 'input'"},
    {"  format: csv\n", "", "input:", "input.format", "missing required key 'format'"},
    {"  path: data.csv\n", "", "input:", "input.path", "missing required key 'path' for format csv"},
    {"  format: csv\n  path: data.csv\n", "  format: hdf5\n", "input:", "input.path",
     "missing required key 'path' for format hdf5"},
    {"  format: csv\n  path: data.csv\n", "  format: synthetic\n  seed: 7\n", "input:", "input.rows",
     "missing required key 'rows' for format synthetic"},
    {"  - name: detail\n    after: [profile]\n", "  - after: [profile]\n", "- after: [profile]", "stages[1].name",
     "missing required key 'name'"},
    {"      - agent: stats\n        column: bytes\n", "      - column: bytes\n", "- column: bytes",
     "stages[1].agents[0].agent", "missing required key 'agent'"},
    {"    agents:\n      - agent: stats\n        column: bytes\n", "", "- name: detail", "stages[1].agents",
     "missing required key 'agents'"},
    {"    agents:\n      - agent: stats\n        column: bytes\n", "    agents: []\n", "agents: []",
     "stages[1].agents", "at least one agent is required"},
    /* enum values */
    {"  strategy: hash\n", "  strategy: hsah\n", "hsah", "shard.strategy",
     "unknown value 'hsah'; did you mean 'hash'? (allowed: size, hash, range, semantic)"},
    {"  mode: static\n", "  mode: eager\n", "eager", "distribute.mode", "unknown value 'eager' (allowed: static, dynamic, parallel-read)"},
    {"  format: csv\n", "  format: parquet\n", "parquet", "input.format",
     "unknown value 'parquet' (allowed: csv, hdf5, synthetic)"},
    {"  path: data.csv\n", "  path: data.csv\n  on_bad_row: ignore\n", "ignore", "input.on_bad_row",
     "(allowed: fail, skip)"},
    {"  path: data.csv\n", "  path: data.csv\n  schema: {latency_ms: double}\n", "schema:", "input.schema.latency_ms",
     "unknown value 'double' (allowed: int64, float64, string, timestamp)"},
    {"  strategy: hash\n", "  strategy: [hash]\n", "strategy: [", "shard.strategy",
     "expected one of size, hash, range, semantic, found a sequence"},
    /* integers */
    {"  shards: 8\n", "  shards: abc\n", "shards: abc", "shard.shards", "expected an integer, found 'abc'"},
    {"  shards: 8\n", "  shards: 1.5\n", "shards: 1.5", "shard.shards", "expected an integer, found '1.5'"},
    {"  shards: 8\n", "  shards: -4\n", "shards: -4", "shard.shards", "must not be negative, found '-4'"},
    {"  shards: 8\n", "  shards: 0\n", "shards: 0", "shard.shards", "'0' is out of range [1, 1000000]"},
    {"  shards: 8\n", "  shards: 1000001\n", "shards: 1000001", "shard.shards",
     "'1000001' is out of range [1, 1000000]"},
    {"  shards: 8\n", "  shards: 99999999999999999999999\n", "shards: 9", "shard.shards", "is out of range [1, 1000000]"},
    {"  shards: 8\n", "  shards: 1000000\n  seed: 18446744073709551616\n", "seed:", "shard.seed",
     "'18446744073709551616' is too large"},
    {"  shards: 8\n", "  shards: 8\n  sample: 0\n", "sample:", "shard.sample", "must be positive, found '0'"},
    {"threads: 2\n", "threads: -1\n", "threads: -1", "threads", "must not be negative, found '-1'"},
    {"threads: 2\n", "threads: 2147483648\n", "threads: 2", "threads", "'2147483648' is out of range [0, 2147483647]"},
    {"  path: data.csv\n", "  path: data.csv\n  batch_rows: 0\n", "batch_rows", "input.batch_rows",
     "'0' is out of range [1, 2147483647]"},
    {"  path: data.csv\n", "  path: data.csv\n  infer_rows: many\n", "infer_rows", "input.infer_rows",
     "expected an integer, found 'many'"},
    {"  memory_budget: 64MiB\n", "  memory_budget: 64MiB\n  morsel_rows: \n", "morsel_rows", "distribute.morsel_rows",
     "expected an integer, found an empty value"},
    {"  format: csv\n  path: data.csv\n", "  format: synthetic\n  rows: 0\n", "rows: 0", "input.rows",
     "must be positive, found '0'"},
    {"  format: csv\n  path: data.csv\n", "  format: synthetic\n  rows: 5\n  zipf: -0.5\n", "zipf", "input.zipf",
     "must be at least 0"},
    {"  format: csv\n  path: data.csv\n", "  format: synthetic\n  rows: 5\n  zipf: steep\n", "zipf", "input.zipf",
     "expected a number, found 'steep'"},
    /* byte sizes */
    {"  memory_budget: 64MiB\n", "  memory_budget: 12XB\n", "12XB", "distribute.memory_budget",
     "expected a byte size such as"},
    {"  memory_budget: 64MiB\n", "  memory_budget: 1.5GiB\n", "1.5GiB", "distribute.memory_budget",
     "found '1.5GiB'"},
    {"  memory_budget: 64MiB\n", "  memory_budget: -1MiB\n", "-1MiB", "distribute.memory_budget",
     "must not be negative, found '-1MiB'"},
    {"  memory_budget: 64MiB\n", "  memory_budget: 0\n", "memory_budget: 0", "distribute.memory_budget",
     "'0' is out of range [1, 18446744073709551615] bytes"},
    {"  memory_budget: 64MiB\n", "  memory_budget: 99999999TiB\n", "99999999TiB", "distribute.memory_budget",
     "'99999999TiB' is too large"},
    {"  memory_budget: 64MiB\n", "  chunk_bytes: 3GiB\n", "3GiB", "distribute.chunk_bytes",
     "'3GiB' is out of range [1, 2147483647] bytes"},
    {"  path: data.csv\n", "  path: data.csv\n  block_size: 4mb\n", "4mb", "input.block_size", "found '4mb'"},
    /* delimiter */
    {"  path: data.csv\n", "  path: data.csv\n  delimiter: \";;\"\n", "delimiter", "input.delimiter",
     "must be exactly one byte, found ';;' (2 bytes)"},
    {"  path: data.csv\n", "  path: data.csv\n  delimiter: \"\"\n", "delimiter", "input.delimiter",
     "must be exactly one byte, found '' (0 bytes)"},
    {"  path: data.csv\n", "  path: data.csv\n  delimiter: '\"'\n", "delimiter", "input.delimiter",
     "a quote or line break cannot be the delimiter"},
    /* shard key and map */
    {"  key: user_id\n", "", "shard:", "shard.key", "missing required key 'key' for strategy hash"},
    {"  strategy: hash\n  key: user_id\n", "  strategy: range\n", "shard:", "shard.key",
     "missing required key 'key' for strategy range"},
    {"  key: user_id\n", "  key: user_id\n  map: groups.csv\n", "map: groups", "shard.map",
     "only used by strategy semantic (strategy is hash)"},
    /* agents */
    {"      - agent: stats\n        column: bytes\n", "      - agent: nosuch\n        column: bytes\n", "nosuch",
     "stages[1].agents[0].agent", "unknown agent 'nosuch'"},
    {"by: [service]", "by: {a: b}", "by: {a", "stages[0].agents[0].by", "expected a list of names, found a mapping"},
    {"by: [service]", "by: [[a]]", "by: [[", "stages[0].agents[0].by[0]", "expected a string, found a sequence"},
    {"by: [service]}\n", "by: [service]}\n      - {agent: stats, id: latency, column: bytes}\n",
     "id: latency, column: bytes", "stages[0].agents[1].id", "duplicate agent id 'latency' in stage 'profile'"},
    {"        column: bytes\n", "        column: bytes\n      - agent: stats\n        column: size\n",
     "agent: stats\n        column: size", "stages[1].agents[1].agent", "duplicate agent id 'stats' in stage 'detail'"},
    /* stages */
    {"  - name: detail\n", "  - name: profile\n", "name: profile\n    after", "stages[1].name",
     "duplicate stage name 'profile' (also stages[0], first at line 16)"},
    {"after: [profile]", "after: [profiel]", "profiel", "stages[1].after", "unknown stage 'profiel' (stages: profile, detail)"},
    {"after: [profile]", "after: [detail]", "after: [detail]", "stages[1].after", "stage 'detail' cannot run after itself"},
    {"after: [profile]", "after: [profile, profile]", "after: [profile, profile]", "stages[1].after",
     "stage 'profile' is listed twice"},
    {"after: [profile]", "after: {a: b}", "after: {", "stages[1].after", "expected a list of names, found a mapping"},
    /* duplicate keys */
    {"  shards: 8\n", "  shards: 8\n  shards: 9\n", "shards: 9", "shard.shards", "duplicate key 'shards' (first at line 8)"},
};

static void test_validation_errors(void **state)
{
    (void)state;
    char *base = base_text();
    /* The duplicate-stage and duplicate-key cases name lines of the base. */
    assert_int_equal(line_of(base, "- name: profile"), 16);
    assert_int_equal(line_of(base, "shards: 8"), 8);
    for (size_t i = 0; i < sizeof edit_cases / sizeof edit_cases[0]; i++) {
        const edit_case *e = &edit_cases[i];
        char *text = subst(base, e->from, e->to);
        expect_error_at(text, e->needle, e->key, e->more);
        free(text);
    }
    free(base);
}

static void test_stage_list_errors(void **state)
{
    (void)state;
    expect_error_at(BASE_HEAD, "name: demo", "stages", "missing required key 'stages'");
    char *t = concat(BASE_HEAD, "stages: []\n");
    expect_error_at(t, "stages: []", "stages", "at least one stage is required");
    free(t);
    t = concat(BASE_HEAD, "stages: {name: x}\n");
    expect_error_at(t, "stages: {", "stages", "expected a sequence of stages, found a mapping");
    free(t);
    t = concat(BASE_HEAD, "stages:\n  - name: only\n    agents: stats\n");
    expect_error_at(t, "agents: stats", "stages[0].agents", "expected a sequence of agents, found a scalar");
    free(t);
}

static void test_document_errors(void **state)
{
    (void)state;
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:1: ", tmpdir);
    expect_failure("", 0, NULL, prefix, "the workflow is empty");
    expect_failure("# only a comment\n", 0, NULL, prefix, "the workflow is empty");
    expect_failure("- a\n- b\n", 0, NULL, prefix, "expected a mapping of workflow keys");

    /* YAML syntax errors carry the column. */
    const char *bad = "name: demo\n"
                      "input: {format: csv, path: x.csv}\n"
                      "threads: 2: 3\n";
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:%d:%d: YAML error: ", tmpdir, line_of(bad, "2: 3"),
             col_of(bad, ": 3"));
    expect_failure(bad, 0, NULL, prefix, "mapping values are not allowed");

    const char *unclosed = "name: demo\n"
                           "input: {format: csv, path: x.csv\n"
                           "stages: []\n";
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:", tmpdir);
    expect_failure(unclosed, 0, NULL, prefix, "YAML error: did not find expected ',' or '}'");

    const char *anchor = "name: demo\n"
                         "input: {format: csv, path: x.csv}\n"
                         "threads: &t 2\n"
                         "stages: *t\n";
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:%d:%d: YAML error: ", tmpdir, line_of(anchor, "&t"),
             col_of(anchor, "&t"));
    expect_failure(anchor, 0, NULL, prefix, "anchors (&t) and aliases are not supported");

    const char *two = "name: a\n---\nname: b\n";
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:%d:1: YAML error: ", tmpdir, line_of(two, "---"));
    expect_failure(two, 0, NULL, prefix, "one YAML document");

    const char *complex_key = "name: a\n? [x, y]\n: 1\n";
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:%d:%d: YAML error: ", tmpdir, line_of(complex_key, "[x, y]"),
             col_of(complex_key, "[x, y]"));
    expect_failure(complex_key, 0, NULL, prefix, "a mapping key must be a plain string");

    /* A missing file is an I/O error that names the file. */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/no-such-workflow.yaml", tmpdir);
    sf_workflow *w = NULL;
    assert_int_equal(sf_workflow_load(missing, 0, NULL, &w), SF_ERR_IO);
    assert_null(w);
    assert_non_null(strstr(sf_error_message(), missing));
}

/* Agent keys beyond agent/id/column/by belong to the agent. */
static void test_agent_options_kept(void **state)
{
    (void)state;
    char *base = base_text();
    char *text = subst(base, "column: latency_ms,", "column: latency_ms, bins: [1, 2], weird_option: {x: 1},");
    sf_workflow *w = load_ok(text, 0, NULL);
    const sf_cfg_node *n = w->stages[0].agents[0].node;
    const sf_cfg_node *bins = sf_cfg_get(n, "bins");
    assert_int_equal(bins->kind, SF_NODE_SEQ);
    assert_int_equal(bins->n, 2);
    assert_string_equal(bins->items[1]->scalar, "2");
    assert_int_equal(sf_cfg_get(sf_cfg_get(n, "weird_option"), "x")->line, line_of(text, "weird_option"));
    sf_workflow_destroy(&w);
    free(text);
    free(base);
}

/* ---------------------------------------------------------------------------
 * --set */

static void test_set_overrides(void **state)
{
    (void)state;
    char *base = base_text();

    const char *s1[] = {"shard.shards=32", "stages.1.agents.0.column=size", "stages.0.agents.0.by=[a, b]",
                        "output.dir=elsewhere"};
    sf_workflow *w = load_ok(base, 4, s1);
    assert_int_equal(w->shard.shards, 32);
    assert_string_equal(w->stages[1].agents[0].column, "size");
    assert_int_equal(w->stages[0].agents[0].nby, 2);
    assert_string_equal(w->stages[0].agents[0].by[0], "a");
    assert_string_equal(w->stages[0].agents[0].by[1], "b");
    assert_string_equal(w->out_dir, "elsewhere");
    const sf_cfg_node *shards = sf_cfg_get(sf_cfg_get(w->root, "shard"), "shards");
    assert_int_equal(shards->line, 0); /* made by --set */
    assert_string_equal(shards->scalar, "32");
    char hash_set[17];
    memcpy(hash_set, w->config_hash, 17);
    sf_workflow_destroy(&w);

    /* The same values written into the file give the same hash. */
    char *t1 = subst(base, "shards: 8", "shards: 32");
    char *t2 = subst(t1, "column: bytes", "column: size");
    char *t3 = subst(t2, "by: [service]", "by: [a, b]");
    char *t4 = subst(t3, "dir: out", "dir: elsewhere");
    w = load_ok(t4, 0, NULL);
    assert_string_equal(w->config_hash, hash_set);
    sf_workflow_destroy(&w);
    free(t1);
    free(t2);
    free(t3);
    free(t4);

    /* The last --set of a key wins; a missing section is created. */
    char *nodist = subst(base, "distribute:\n  mode: static\n  memory_budget: 64MiB\n", "");
    const char *s2[] = {"shard.shards=4", "shard.shards=5", "distribute.mode=dynamic",
                        "distribute.memory_budget=1GiB"};
    w = load_ok(nodist, 4, s2);
    assert_int_equal(w->shard.shards, 5);
    assert_int_equal(w->distribute.mode, SF_DIST_DYNAMIC);
    assert_int_equal(w->distribute.memory_budget, 1ull << 30);
    sf_workflow_destroy(&w);
    free(nodist);

    /* An empty section is filled. */
    char *nullshard = subst(base, "shard:\n  strategy: hash\n  key: user_id\n  shards: 8\n", "shard:\n");
    const char *s3[] = {"shard.strategy=range", "shard.key=ts"};
    w = load_ok(nullshard, 2, s3);
    assert_int_equal(w->shard.strategy, SF_SHARD_RANGE);
    assert_string_equal(w->shard.key, "ts");
    assert_int_equal(w->shard.key_line, 0);
    sf_workflow_destroy(&w);
    free(nullshard);

    free(base);
}

static void test_set_errors(void **state)
{
    (void)state;
    char *base = base_text();
    struct {
        const char *set, *prefix, *more;
    } cases[] = {
        {"shard.colour=red", "--set shard.colour: shard.colour: ", "unknown key 'colour'"},
        {"colour=red", "--set colour: colour: ", "unknown key 'colour'"},
        {"shard.strategy=sideways", "--set shard.strategy: shard.strategy: ", "unknown value 'sideways'"},
        {"shard.shards=0", "--set shard.shards: shard.shards: ", "'0' is out of range [1, 1000000]"},
        {"stages.1.name=profile", "--set stages.1.name: stages[1].name: ", "duplicate stage name 'profile'"},
        {"stages.0.agents.0.by=[a, {x: 1}]", "--set stages.0.agents.0.by: stages[0].agents[0].by[1]: ",
         "expected a string, found a mapping"},
        {"stages.5.name=x", "--set stages.5.name: ", "index 5 is out of range ('stages' has 2 items)"},
        {"stages.0.agents.1.column=x", "--set stages.0.agents.1.column: ",
         "index 1 is out of range ('stages.0.agents' has 1 item)"},
        {"stages.first.name=x", "--set stages.first.name: ", "'stages' is a sequence; index it by number"},
        {"name.first=x", "--set name.first: ", "'name' is a scalar ('demo'); it has no key 'first'"},
        {"input=x", "--set input: input: ", "expected a mapping with format and path, found a scalar"},
        {"input={format: csv}", "--set input: input.path: ", "missing required key 'path' for format csv"},
        {"shard.shards", "--set shard.shards: ", "expected KEY.PATH=VALUE"},
        {"=3", "--set =3: ", "expected KEY.PATH=VALUE"},
        {"shard..shards=3", "--set shard..shards: ", "empty key component"},
        {"stages.0.agents=[x, [1", "--set stages.0.agents: ", "value '[x, [1' is not valid YAML: did not find expected"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *sets[] = {cases[i].set};
        expect_failure(base, 1, sets, cases[i].prefix, cases[i].more);
    }
    /* A value replaced by --set is located there, the rest of the file still
     * by line. */
    const char *sets[] = {"shard.shards=16"};
    char *text = subst(base, "  strategy: hash\n", "  strategy: hsah\n");
    char prefix[600];
    snprintf(prefix, sizeof prefix, "%s/wf.yaml:%d: shard.strategy: ", tmpdir, line_of(text, "hsah"));
    expect_failure(text, 1, sets, prefix, "unknown value 'hsah'");
    free(text);
    free(base);
}

/* ---------------------------------------------------------------------------
 * Stage order */

static void test_order_diamond(void **state)
{
    (void)state;
    /* Declared sink first: d waits for b and c, which wait for a. */
    const char *text = "name: diamond\n"
                       "input: {format: synthetic, rows: 10}\n"
                       "stages:\n"
                       "  - {name: d, after: [b, c], agents: [{agent: stats}]}\n"
                       "  - {name: c, after: [a], agents: [{agent: stats}]}\n"
                       "  - {name: b, after: [a], agents: [{agent: stats}]}\n"
                       "  - {name: a, agents: [{agent: stats}]}\n"
                       "  - {name: e, agents: [{agent: stats}]}\n";
    sf_workflow *w = load_ok(text, 0, NULL);
    /* By hand: ready {a, e} -> a (3); ready {c, b, e} -> c (1); ready {b, e}
     * (d still waits for b) -> b (2); ready {d, e} -> d (0); then e (4). */
    static const int expect_order[] = {3, 1, 2, 0, 4};
    static const int expect_level[] = {2, 1, 1, 0, 0};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(w->order[i], expect_order[i]);
        assert_int_equal(w->level[i], expect_level[i]);
    }
    assert_int_equal(w->stages[0].after_idx[0], 2);
    assert_int_equal(w->stages[0].after_idx[1], 1);
    sf_workflow_destroy(&w);
}

static void test_order_chain(void **state)
{
    (void)state;
    const char *text = "name: chain\n"
                       "input: {format: synthetic, rows: 10}\n"
                       "stages:\n"
                       "  - {name: third, after: second, agents: [{agent: stats}]}\n"
                       "  - {name: second, after: [first], agents: [{agent: stats}]}\n"
                       "  - {name: first, agents: [{agent: stats}]}\n";
    sf_workflow *w = load_ok(text, 0, NULL);
    static const int expect_order[] = {2, 1, 0};
    static const int expect_level[] = {2, 1, 0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(w->order[i], expect_order[i]);
        assert_int_equal(w->level[i], expect_level[i]);
    }
    sf_workflow_destroy(&w);
}

/* Longest path from a root, by memoised recursion (the loader uses the
 * topological order instead). */
static int ref_level(int i, int n, const int deps[][16], const int *ndeps, int *memo)
{
    if (memo[i] >= 0) return memo[i];
    int l = 0;
    for (int k = 0; k < ndeps[i]; k++) {
        int d = ref_level(deps[i][k], n, deps, ndeps, memo) + 1;
        if (d > l) l = d;
    }
    return memo[i] = l;
}

static void test_order_random_dags(void **state)
{
    (void)state;
    uint64_t rng = 12345;
    for (int trial = 0; trial < 40; trial++) {
        enum { N = 14 };
        int rank[N], deps[N][16], ndeps[N];
        /* A hidden rank makes the graph acyclic: deps have a lower rank. */
        for (int i = 0; i < N; i++) rank[i] = i;
        for (int i = N - 1; i > 0; i--) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            int j = (int)((rng >> 33) % (uint64_t)(i + 1));
            int t = rank[i];
            rank[i] = rank[j];
            rank[j] = t;
        }
        char text[8192];
        size_t len = (size_t)snprintf(text, sizeof text, "name: r\ninput: {format: synthetic, rows: 1}\nstages:\n");
        for (int i = 0; i < N; i++) {
            ndeps[i] = 0;
            len += (size_t)snprintf(text + len, sizeof text - len, "  - name: s%d\n    after: [", i);
            for (int j = 0; j < N && ndeps[i] < 16; j++) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                if (rank[j] < rank[i] && (rng >> 60) < 4) {
                    len += (size_t)snprintf(text + len, sizeof text - len, "%ss%d", ndeps[i] ? ", " : "", j);
                    deps[i][ndeps[i]++] = j;
                }
            }
            len += (size_t)snprintf(text + len, sizeof text - len, "]\n    agents: [{agent: stats}]\n");
        }
        assert_true(len < sizeof text);
        sf_workflow *w = load_ok(text, 0, NULL);
        int memo[N], pos[N];
        for (int i = 0; i < N; i++) memo[i] = pos[i] = -1;
        for (int s = 0; s < N; s++) {
            int i = w->order[s];
            assert_in_range(i, 0, N - 1);
            assert_int_equal(pos[i], -1); /* a permutation */
            pos[i] = s;
        }
        for (int s = 0; s < N; s++) {
            int i = w->order[s];
            /* Its dependencies came before it... */
            for (int k = 0; k < ndeps[i]; k++) assert_true(pos[deps[i][k]] < s);
            /* ...and no stage declared before it was ready at that step. */
            for (int m = 0; m < i; m++) {
                if (pos[m] < s) continue;
                bool ready = true;
                for (int k = 0; k < ndeps[m]; k++) ready = ready && pos[deps[m][k]] < s;
                assert_false(ready);
            }
            assert_int_equal(w->level[i], ref_level(i, N, deps, ndeps, memo));
        }
        sf_workflow_destroy(&w);
    }
}

static void test_cycle(void **state)
{
    (void)state;
    /* e waits for the cycle a -> b -> c -> a but is not on it. */
    const char *text = "name: cyc\n"
                       "input: {format: synthetic, rows: 10}\n"
                       "stages:\n"
                       "  - {name: e, after: [a], agents: [{agent: stats}]}\n"
                       "  - {name: a, after: [c], agents: [{agent: stats}]}\n"
                       "  - {name: b, after: [a], agents: [{agent: stats}]}\n"
                       "  - {name: c, after: [b], agents: [{agent: stats}]}\n"
                       "  - {name: d, agents: [{agent: stats}]}\n";
    expect_error_at(text, "name: a,", "stages[1].after", "dependency cycle: a -> b -> c -> a");

    const char *two = "name: cyc\n"
                      "input: {format: synthetic, rows: 10}\n"
                      "stages:\n"
                      "  - name: x\n"
                      "    agents: [{agent: stats}]\n"
                      "  - name: y\n"
                      "    after: [z]\n"
                      "    agents: [{agent: stats}]\n"
                      "  - name: z\n"
                      "    after: [x, y]\n"
                      "    agents: [{agent: stats}]\n";
    expect_error_at(two, "after: [z]", "stages[1].after", "dependency cycle: y -> z -> y");
}

/* ---------------------------------------------------------------------------
 * Config hash and JSON */

static void test_config_hash(void **state)
{
    (void)state;
    char *base = base_text();
    sf_workflow *w = load_ok(base, 0, NULL);
    char h0[17];
    memcpy(h0, w->config_hash, 17);
    sf_workflow_destroy(&w);

    /* The same workflow in flow style, with quotes, comments, blank lines. */
    const char *reformatted = "# the same workflow\n"
                              "name: \"demo\"   # quoted\n"
                              "\n"
                              "input: {format: csv, path: 'data.csv'}\n"
                              "shard: {strategy: hash, key: user_id, shards: \"8\"}\n"
                              "distribute:\n"
                              "    mode: static\n"
                              "    memory_budget: 64MiB\n"
                              "threads: 2\n"
                              "output: {dir: out}\n"
                              "stages:\n"
                              "- name: profile\n"
                              "  agents:\n"
                              "  - agent: stats\n"
                              "    id: latency\n"
                              "    column: latency_ms\n"
                              "    by:\n"
                              "    - service\n"
                              "- {name: detail, after: [profile], agents: [{agent: stats, column: bytes}]}\n";
    w = load_ok(reformatted, 0, NULL);
    assert_string_equal(w->config_hash, h0);
    sf_workflow_destroy(&w);

    /* Any value change changes it. */
    const char *changes[][2] = {
        {"shards: 8", "shards: 9"},
        {"column: bytes", "column: byte"},
        {"name: demo", "name: demo2"},
        {"by: [service]", "by: [service, region]"},
        {"    after: [profile]\n", ""},
    };
    for (size_t i = 0; i < sizeof changes / sizeof changes[0]; i++) {
        char *t = subst(base, changes[i][0], changes[i][1]);
        w = load_ok(t, 0, NULL);
        if (strcmp(w->config_hash, h0) == 0) fail_msg("hash unchanged after '%s' -> '%s'", changes[i][0], changes[i][1]);
        sf_workflow_destroy(&w);
        free(t);
    }
    /* A sequence and a scalar of the same text differ. */
    char *t = subst(base, "by: [service]", "by: service");
    w = load_ok(t, 0, NULL);
    assert_string_not_equal(w->config_hash, h0);
    sf_workflow_destroy(&w);
    free(t);
    free(base);
}

static void test_write_json(void **state)
{
    (void)state;
    const char *text = "name: mini\n"
                       "threads: 2\n"
                       "input: {format: csv, path: data.csv, delimiter: \";\"}\n"
                       "stages:\n"
                       "  - name: s\n"
                       "    after: []\n"
                       "    agents: [{agent: stats, flag: true, ratio: -0.5e3, note: \"7\", code: 007, empty: ~,"
                       " text: \"a\\\"b\"}]\n";
    sf_workflow *w = load_ok(text, 0, NULL);
    sf_json j;
    sf_json_init(&j, false);
    sf_workflow_write_json(w, &j);
    assert_int_equal(j.rc, SF_OK);
    const char *expect = "{\"name\":\"mini\",\"threads\":2,"
                         "\"input\":{\"format\":\"csv\",\"path\":\"data.csv\",\"delimiter\":\";\"},"
                         "\"stages\":[{\"name\":\"s\",\"after\":[],\"agents\":[{\"agent\":\"stats\",\"flag\":true,"
                         "\"ratio\":-0.5e3,\"note\":\"7\",\"code\":\"007\",\"empty\":null,\"text\":\"a\\\"b\"}]}]}";
    assert_int_equal(j.out.len, strlen(expect));
    assert_memory_equal(j.out.data, expect, strlen(expect));
    sf_json_fini(&j);
    sf_workflow_destroy(&w);
}

/* ---------------------------------------------------------------------------
 * Byte sizes */

static void test_parse_bytes(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        uint64_t v;
    } good[] = {
        {"0", 0},
        {"4096", 4096},
        {"1B", 1},
        {"7 B", 7},
        {"512KiB", 512ull * 1024},
        {"256MiB", 256ull * 1024 * 1024},
        {"1GiB", 1073741824ull},
        {"1 GiB", 1073741824ull},
        {"2TiB", 2ull * 1099511627776ull},
        {"1KB", 1000},
        {"3 MB", 3000000},
        {"2GB", 2000000000ull},
        {"5TB", 5000000000000ull},
        {"18446744073709551615", UINT64_MAX},
        {"16777215TiB", 16777215ull * 1099511627776ull},
        {"18446744073709551615B", UINT64_MAX},
        {"00012KiB", 12288},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        uint64_t v = 12345;
        if (!sf_parse_bytes(good[i].s, &v)) fail_msg("'%s' rejected", good[i].s);
        if (v != good[i].v) fail_msg("'%s': got %" PRIu64 ", want %" PRIu64, good[i].s, v, good[i].v);
    }
    static const char *const bad[] = {
        "", " 1", "1 ", "1  MiB", "1.5GiB", "-1", "+1", "MiB", "1MiBs", "1mb", "1Mb", "1kib", "1K", "1 k",
        "0x10", "1e6", "18446744073709551616", "16777216TiB", "18446744073709551616B", "20000000000000000GB",
        "1_000", "1,000",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t v = 777;
        if (sf_parse_bytes(bad[i], &v)) fail_msg("'%s' accepted as %" PRIu64, bad[i], v);
        assert_int_equal(v, 777); /* untouched on failure */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base_is_valid),
        cmocka_unit_test(test_full_workflow),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_synthetic_and_hdf5),
        cmocka_unit_test(test_path_resolution),
        cmocka_unit_test(test_validation_errors),
        cmocka_unit_test(test_stage_list_errors),
        cmocka_unit_test(test_document_errors),
        cmocka_unit_test(test_agent_options_kept),
        cmocka_unit_test(test_set_overrides),
        cmocka_unit_test(test_set_errors),
        cmocka_unit_test(test_order_diamond),
        cmocka_unit_test(test_order_chain),
        cmocka_unit_test(test_order_random_dags),
        cmocka_unit_test(test_cycle),
        cmocka_unit_test(test_config_hash),
        cmocka_unit_test(test_write_json),
        cmocka_unit_test(test_parse_bytes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
