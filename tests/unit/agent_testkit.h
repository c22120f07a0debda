/* Helpers shared by the unit tests of the agents: a seeded random source,
 * configurations (from YAML text or from a hand-built option mapping), and
 * the life of a state (create, feed in morsels, encode, compare, report,
 * read a whole-state statistic, destroy).
 *
 * Convention: every helper that runs an agent takes the agent's operations
 * `const sf_agent_ops *ops` as its first parameter, so a test of several
 * agents (top-k and count-min, detectors and their baselines) uses the same
 * helpers as a test of one; a test of one agent keeps a file-scope
 * `static const sf_agent_ops *ops` and passes it. Nothing here reads a
 * test's globals: the schema is passed where a configuration needs it.
 *
 * Every failure is a CMocka assertion, so the helpers return plain values.
 * The functions are static inline so that a test using only some of them
 * compiles without unused-function warnings. Include this header after the
 * CMocka headers' prerequisites (it includes them itself, in the order
 * cmocka.h requires). */
#ifndef SF_TESTS_AGENT_TESTKIT_H
#define SF_TESTS_AGENT_TESTKIT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/batch.h"
#include "shardflow/buf.h"
#include "shardflow/config.h"
#include "shardflow/json.h"

#include "flow/yaml_tree.h"

/* ---- random source ---------------------------------------------------------- */

/* The state of the splitmix64 generator; tests seed it by assignment so a
 * failing case can be replayed from its seed. */
static uint64_t rng_state;

/* The next splitmix64 output. */
static inline uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform in [0, 1): 53 random bits. */
static inline double rnd01(void)
{
    return (double)(rnd() >> 11) * 0x1p-53;
}

/* Uniform in (0, 1): never 0, so log() of it is finite. */
static inline double unif(void)
{
    return ((double)(rnd() >> 11) + 0.5) * 0x1p-53;
}

/* ---- configurations ------------------------------------------------------------ */

/* An agent configuration over `schema` whose options are the YAML mapping
 * text `yaml` (NULL: none; its line 1 stands for the agent: key). col < 0
 * means no column. The parsed node belongs to the configuration and is
 * freed by yaml_cfg_free; schema and by_col must outlive it. */
static inline sf_agent_config yaml_cfg(const sf_schema *schema, const char *agent, const char *id, int col,
                                       int nby, const int *by_col, const char *yaml)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = agent;
    c.id = id;
    c.column = col >= 0 ? schema->fields[col].name : NULL;
    c.col = col;
    c.nby = nby;
    c.by_col = by_col;
    c.schema = schema;
    c.file = "test.yaml";
    c.line = 1;
    if (yaml != NULL) {
        sf_cfg_node *node = NULL;
        assert_int_equal(sf__cfg_parse("test.yaml", yaml, strlen(yaml), &node), SF_OK);
        c.node = node;
    }
    return c;
}

/* Frees the option node of a configuration made by yaml_cfg. */
static inline void yaml_cfg_free(sf_agent_config *c)
{
    sf__cfg_node_free((sf_cfg_node *)c->node);
    c->node = NULL;
}

enum { OPTS_MAX = 8 };

/* An option mapping built by hand (the agent's node in a workflow), for
 * tests that set options one by one with their own line numbers. Keys and
 * values are borrowed: they must outlive the mapping. */
typedef struct opts {
    sf_cfg_node map;
    char *keys[OPTS_MAX];
    int lines[OPTS_MAX];
    sf_cfg_node vals[OPTS_MAX];
    sf_cfg_node *items[OPTS_MAX];
} opts;

/* An empty mapping that starts at `line` of the workflow. */
static inline void opts_init_at(opts *o, int line)
{
    memset(o, 0, sizeof *o);
    o->map.kind = SF_NODE_MAP;
    o->map.keys = o->keys;
    o->map.key_lines = o->lines;
    o->map.items = o->items;
    o->map.line = line;
}

/* An empty mapping at line 1. */
static inline void opts_init(opts *o)
{
    opts_init_at(o, 1);
}

/* Adds `key: value` (a scalar) at `line`. */
static inline void opts_add(opts *o, const char *key, const char *value, int line)
{
    size_t i = o->map.n++;
    assert_true(i < OPTS_MAX);
    o->keys[i] = (char *)key;
    o->lines[i] = line;
    o->vals[i].kind = SF_NODE_SCALAR;
    o->vals[i].scalar = (char *)value;
    o->vals[i].line = line;
    o->vals[i].col = 5;
    o->items[i] = &o->vals[i];
}

/* ---- states ---------------------------------------------------------------------- */

/* A state initialized from cfg; free it with free_state. */
static inline void *new_state(const sf_agent_ops *ops, const sf_agent_config *cfg)
{
    void *s = calloc(1, ops->state_size);
    assert_non_null(s);
    assert_int_equal(ops->init(s, cfg), SF_OK);
    return s;
}

static inline void free_state(const sf_agent_ops *ops, void *s)
{
    ops->destroy(s);
    free(s);
}

/* Processes the rows of b as contiguous selections of `morsel` rows (the
 * last one shorter), as the engine hands them out; stops at the first
 * failure and returns its status. A batch without rows is not processed. */
static inline sf_status process_morsels(const sf_agent_ops *ops, void *s, const sf_batch *b, size_t morsel)
{
    const size_t n = b->nrows;
    sf_status rc = SF_OK;
    for (size_t at = 0; at < n && rc == SF_OK; at += morsel) {
        size_t end = at + morsel < n ? at + morsel : n;
        sf_rows sel = {at, end - at, NULL, SF_ROWS_NO_SHARD};
        rc = ops->process(s, b, &sel);
    }
    return rc;
}

/* process_morsels, which must succeed. */
static inline void feed_morsels(const sf_agent_ops *ops, void *s, const sf_batch *b, size_t morsel)
{
    assert_int_equal(process_morsels(ops, s, b, morsel), SF_OK);
}

/* feed_morsels, and a batch without rows is processed once as an empty
 * selection, which an agent must accept and ignore. */
static inline void feed_morsels_or_empty(const sf_agent_ops *ops, void *s, const sf_batch *b, size_t morsel)
{
    feed_morsels(ops, s, b, morsel);
    if (b->nrows == 0) {
        sf_rows none = {0, 0, NULL, SF_ROWS_NO_SHARD};
        assert_int_equal(ops->process(s, b, &none), SF_OK);
    }
}

/* The encoding of s; the caller finis it. */
static inline sf_buf encoded(const sf_agent_ops *ops, const void *s)
{
    sf_buf b;
    sf_buf_init(&b);
    assert_int_equal(ops->encode(s, &b), SF_OK);
    return b;
}

static inline void assert_same_bytes(const sf_buf *a, const sf_buf *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

/* Two states are the same exactly when their canonical encodings are. */
static inline void assert_same_state(const sf_agent_ops *ops, const void *a, const void *b)
{
    sf_buf ea = encoded(ops, a), eb = encoded(ops, b);
    assert_same_bytes(&ea, &eb);
    sf_buf_fini(&ea);
    sf_buf_fini(&eb);
}

/* The report of s as a NUL-terminated string; the caller frees it. */
static inline char *report_text(const sf_agent_ops *ops, const void *s)
{
    sf_json j;
    sf_json_init(&j, false);
    assert_int_equal(ops->report(s, &j), SF_OK);
    char *t = malloc(j.out.len + 1);
    assert_non_null(t);
    memcpy(t, j.out.data, j.out.len);
    t[j.out.len] = '\0';
    sf_json_fini(&j);
    return t;
}

static inline void assert_report(const sf_agent_ops *ops, const void *s, const char *want)
{
    char *got = report_text(ops, s);
    assert_string_equal(got, want);
    free(got);
}

/* The whole-state statistic `name` (the empty group key), which must exist. */
static inline double stat_of(const sf_agent_ops *ops, const void *s, const char *name)
{
    double v = -1;
    assert_int_equal(ops->stat(s, NULL, 0, name, &v), SF_OK);
    return v;
}

/* A fresh state of cfg into which s is merged: a copy of s by the merge
 * path, as a reduction makes it. */
static inline void *copy_state(const sf_agent_ops *ops, const sf_agent_config *cfg, const void *s)
{
    void *c = new_state(ops, cfg);
    assert_int_equal(ops->merge(c, s), SF_OK);
    return c;
}

/* ---- merge laws and strict decoding --------------------------------------------- */

/* (a + b) + c and a + (b + c), each merged into a fresh state of cfg,
 * encode alike. */
static inline void assert_merge_associative(const sf_agent_ops *ops, const sf_agent_config *cfg, const void *a,
                                            const void *b, const void *c)
{
    void *ab_c = new_state(ops, cfg), *a_bc = new_state(ops, cfg), *bc = new_state(ops, cfg);
    assert_int_equal(ops->merge(ab_c, a), SF_OK);
    assert_int_equal(ops->merge(ab_c, b), SF_OK);
    assert_int_equal(ops->merge(ab_c, c), SF_OK);
    assert_int_equal(ops->merge(bc, b), SF_OK);
    assert_int_equal(ops->merge(bc, c), SF_OK);
    assert_int_equal(ops->merge(a_bc, a), SF_OK);
    assert_int_equal(ops->merge(a_bc, bc), SF_OK);
    assert_same_state(ops, ab_c, a_bc);
    free_state(ops, ab_c);
    free_state(ops, a_bc);
    free_state(ops, bc);
}

/* a + b and b + a, each merged into a fresh state of cfg, encode alike. */
static inline void assert_merge_commutative(const sf_agent_ops *ops, const sf_agent_config *cfg, const void *a,
                                            const void *b)
{
    void *ab = new_state(ops, cfg), *ba = new_state(ops, cfg);
    assert_int_equal(ops->merge(ab, a), SF_OK);
    assert_int_equal(ops->merge(ab, b), SF_OK);
    assert_int_equal(ops->merge(ba, b), SF_OK);
    assert_int_equal(ops->merge(ba, a), SF_OK);
    assert_same_state(ops, ab, ba);
    free_state(ops, ab);
    free_state(ops, ba);
}

/* Decoding into t rejects every strict prefix of enc and enc followed by a
 * trailing byte with SF_ERR_PARSE, then accepts enc itself (t then holds
 * what enc encodes). */
static inline void assert_decode_strict(const sf_agent_ops *ops, void *t, const sf_buf *enc)
{
    for (size_t n = 0; n < enc->len; n++) assert_int_equal(ops->decode(t, enc->data, n), SF_ERR_PARSE);
    sf_buf longer;
    sf_buf_init(&longer);
    assert_int_equal(sf_buf_append(&longer, enc->data, enc->len), SF_OK);
    assert_int_equal(sf_buf_put_u8(&longer, 0), SF_OK);
    assert_int_equal(ops->decode(t, longer.data, longer.len), SF_ERR_PARSE);
    sf_buf_fini(&longer);
    assert_int_equal(ops->decode(t, enc->data, enc->len), SF_OK);
}

#endif
