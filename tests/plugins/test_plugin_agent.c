/* Loading agent plugins (sf_plugin_load) and the example `range_count`
 * agent they provide, driven through its ops as the engine drives it.
 *
 * Expectations come from counting the generated values directly (the
 * reference), from hand-built report text, and from a second path through
 * the agent (one state against many merged in a shuffled order).
 *
 * usage: test_plugin_agent EXAMPLE_PLUGIN NO_INIT_PLUGIN */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"
#include "shardflow/plugin.h"

static const char *example_path, *no_init_path;

enum { COL_V, COL_SERVICE, COL_N, COL_NAME, NCOLS };
static sf_schema schema;
static const int by_service[1] = {COL_SERVICE};
static const char *const by_names[1] = {"service"};

#define NSERVICES 5
static const char *const services[NSERVICES] = {"api", "auth", "a|b", "db", "search"};

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const sf_agent_ops *agent(void)
{
    assert_int_equal(sf_plugin_load(example_path), SF_OK);
    const sf_agent_ops *ops = sf_agent_find("range_count");
    assert_non_null(ops);
    return ops;
}

/* ---- configurations with hand-built option maps ---------------------- */

#define MAX_OPTS 8
typedef struct opts {
    sf_cfg_node map;
    char *keys[MAX_OPTS];
    int key_lines[MAX_OPTS];
    sf_cfg_node *items[MAX_OPTS];
    sf_cfg_node vals[MAX_OPTS];
} opts;

/* The agent's mapping: key: value on line 2, 3, ... in the order added. */
static void opts_init(opts *o)
{
    memset(o, 0, sizeof *o);
    o->map.kind = SF_NODE_MAP;
    o->map.line = 1;
    o->map.keys = o->keys;
    o->map.key_lines = o->key_lines;
    o->map.items = o->items;
}

static void opts_add(opts *o, const char *key, const char *value)
{
    size_t i = o->map.n++;
    assert_true(i < MAX_OPTS);
    o->keys[i] = (char *)key;
    o->key_lines[i] = (int)i + 2;
    o->vals[i] = (sf_cfg_node){.kind = SF_NODE_SCALAR, .scalar = (char *)value, .line = (int)i + 2, .col = 5};
    o->items[i] = &o->vals[i];
}

static sf_agent_config make_cfg(const opts *o, const char *column, int nby)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = "range_count";
    c.id = "fast";
    c.column = column;
    c.col = sf_schema_find(&schema, column);
    c.nby = nby;
    c.by = nby ? by_names : NULL;
    c.by_col = nby ? by_service : NULL;
    c.schema = &schema;
    c.node = &o->map;
    c.file = "test.yaml";
    c.line = 1;
    c.stage = "profile";
    c.seed = 1;
    return c;
}

/* lo: 10, hi: 20 on column v (or n), grouped by service or not. */
static sf_agent_config standard_cfg(opts *o, const char *column, int nby)
{
    opts_init(o);
    opts_add(o, "agent", "range_count");
    opts_add(o, "column", column);
    opts_add(o, "lo", "10");
    opts_add(o, "hi", "20");
    return make_cfg(o, column, nby);
}

/* ---- data --------------------------------------------------------------- */

typedef struct ref {
    uint64_t n[NSERVICES][4]; /* in_range, below, above, missing */
} ref;

/* n rows: v uniform in [0, 30) with nulls and NaNs, service uniform or
 * skewed (90% "api"), n an integer in [5, 25] (so 10 and 20 occur), name a
 * string. Counts for v go into *rv, for n into *rn (both per service). */
static void make_batch(sf_batch *b, size_t n, bool skewed, ref *rv, ref *rn)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n), SF_OK);
    memset(rv, 0, sizeof *rv);
    memset(rn, 0, sizeof *rn);
    for (size_t r = 0; r < n; r++) {
        int s = skewed ? (rnd() % 10 ? 0 : 1 + (int)(rnd() % (NSERVICES - 1))) : (int)(rnd() % NSERVICES);
        uint32_t code;
        assert_int_equal(sf_dict_intern(&b->cols[COL_SERVICE].dict, services[s], strlen(services[s]), &code), SF_OK);
        b->cols[COL_SERVICE].code[r] = code;
        assert_int_equal(sf_dict_intern(&b->cols[COL_NAME].dict, "x", 1, &code), SF_OK);
        b->cols[COL_NAME].code[r] = code;
        uint64_t u = rnd();
        int kind;
        if (u % 17 == 0) {
            assert_int_equal(sf_batch_set_null(b, COL_V, r), SF_OK);
            kind = 3;
        } else if (u % 23 == 0) {
            b->cols[COL_V].f64[r] = NAN;
            kind = 3;
        } else {
            /* Multiples of 1/4 so the bounds themselves occur. */
            double x = (double)((u >> 20) % 120) / 4.0;
            b->cols[COL_V].f64[r] = x;
            kind = x < 10 ? 1 : x >= 20 ? 2 : 0;
        }
        rv->n[s][kind]++;
        int64_t k = 5 + (int64_t)((u >> 40) % 21);
        b->cols[COL_N].i64[r] = k;
        rn->n[s][k < 10 ? 1 : k >= 20 ? 2 : 0]++;
    }
    b->nrows = n;
}

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "v", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "service", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "n", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "name", SF_STRING) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* ---- state helpers --------------------------------------------------------- */

static void *new_state(const sf_agent_ops *ops, const sf_agent_config *cfg)
{
    void *s = calloc(1, ops->state_size);
    assert_non_null(s);
    assert_int_equal(ops->init(s, cfg), SF_OK);
    return s;
}

static void free_state(const sf_agent_ops *ops, void *s)
{
    ops->destroy(s);
    free(s);
}

static void encode(const sf_agent_ops *ops, const void *s, sf_buf *out)
{
    sf_buf_clear(out);
    assert_int_equal(ops->encode(s, out), SF_OK);
}

static void assert_same_bytes(const sf_buf *a, const sf_buf *b)
{
    assert_int_equal(a->len, b->len);
    assert_memory_equal(a->data, b->data, a->len);
}

static void process_all(const sf_agent_ops *ops, void *s, const sf_batch *b)
{
    sf_rows rows = {0, b->nrows, NULL, SF_ROWS_NO_SHARD};
    assert_int_equal(ops->process(s, b, &rows), SF_OK);
}

/* The canonical key of a service: tag 1, u32 length, bytes. */
static size_t service_key(int s, uint8_t *key)
{
    size_t n = strlen(services[s]);
    key[0] = 1;
    for (int i = 0; i < 4; i++) key[1 + i] = (uint8_t)(n >> (8 * i));
    memcpy(key + 5, services[s], n);
    return 5 + n;
}

/* The report text expected for per-service counts: keys printed with '|'
 * escaped, in byte order of the printed keys, services with no rows absent. */
static void expected_report(const ref *r, char *out, size_t cap)
{
    int order[NSERVICES];
    char printed[NSERVICES][32];
    for (int s = 0; s < NSERVICES; s++) {
        size_t k = 0;
        for (const char *p = services[s]; *p; p++) {
            if (*p == '|' || *p == '\\') printed[s][k++] = '\\';
            printed[s][k++] = *p;
        }
        printed[s][k] = '\0';
        order[s] = s;
    }
    for (int i = 1; i < NSERVICES; i++)
        for (int j = i; j > 0 && strcmp(printed[order[j - 1]], printed[order[j]]) > 0; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    size_t len = (size_t)snprintf(out, cap, "{\"groups\":{");
    bool first = true;
    for (int i = 0; i < NSERVICES; i++) {
        int s = order[i];
        const uint64_t *c = r->n[s];
        if (c[0] + c[1] + c[2] + c[3] == 0) continue;
        /* JSON escapes the backslash of the printed key once more. */
        char js[64];
        size_t k = 0;
        for (const char *p = printed[s]; *p; p++) {
            if (*p == '\\' || *p == '"') js[k++] = '\\';
            js[k++] = *p;
        }
        js[k] = '\0';
        len += (size_t)snprintf(out + len, cap - len,
                                "%s\"%s\":{\"in_range\":%llu,\"below\":%llu,\"above\":%llu,\"missing\":%llu}",
                                first ? "" : ",", js, (unsigned long long)c[0], (unsigned long long)c[1],
                                (unsigned long long)c[2], (unsigned long long)c[3]);
        first = false;
    }
    snprintf(out + len, cap - len, "}}");
}

static void report_text(const sf_agent_ops *ops, const void *s, sf_buf *out)
{
    sf_json j;
    sf_json_init(&j, false);
    assert_int_equal(ops->report(s, &j), SF_OK);
    sf_buf_clear(out);
    assert_int_equal(sf_buf_append(out, j.out.data, j.out.len), SF_OK);
    assert_int_equal(sf_buf_put_u8(out, 0), SF_OK);
    sf_json_fini(&j);
}

/* ---- loading ------------------------------------------------------------------ */

static void test_load_errors(void **st)
{
    (void)st;
    int before = sf_plugin_count();
    assert_int_equal(sf_plugin_load("/nonexistent-dir/missing_plugin.so"), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "plugin /nonexistent-dir/missing_plugin.so: cannot load"));
    assert_non_null(strstr(sf_error_message(), "No such file"));

    assert_int_equal(sf_plugin_load(no_init_path), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), no_init_path));
    assert_non_null(strstr(sf_error_message(), "no sf_plugin_init function"));

    assert_int_equal(sf_plugin_load(""), SF_ERR_CONFIG);
    /* A bare name is a file in the current directory, not a library to
     * search for: libc exists on the library path but not here. */
    assert_int_equal(sf_plugin_load("libc.so.6"), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "plugin libc.so.6: cannot load"));
    assert_int_equal(sf_plugin_count(), before);
}

static void test_load(void **st)
{
    (void)st;
    assert_int_equal(sf_plugin_load(example_path), SF_OK);
    int n = sf_plugin_count();
    assert_true(n >= 1);
    int at = -1;
    for (int i = 0; i < n; i++)
        if (strcmp(sf_plugin_path(i), example_path) == 0) at = i;
    assert_true(at >= 0);
    assert_string_equal(sf_plugin_label(at), "example agents");
    assert_null(sf_plugin_path(n));
    const sf_agent_ops *ops = sf_agent_find("range_count");
    assert_non_null(ops);
    assert_int_equal(ops->abi_version, SF_AGENT_ABI_VERSION);

    /* The same file again, by the same and by another path: nothing new. */
    assert_int_equal(sf_plugin_load(example_path), SF_OK);
    char other[4096];
    const char *slash = strrchr(example_path, '/');
    assert_non_null(slash);
    snprintf(other, sizeof other, "%.*s/./%s", (int)(slash - example_path), example_path, slash + 1);
    assert_int_equal(sf_plugin_load(other), SF_OK);
    assert_int_equal(sf_plugin_count(), n);
    assert_ptr_equal(sf_agent_find("range_count"), ops);
}

/* ---- the agent -------------------------------------------------------------- */

static void check_against_reference(bool skewed)
{
    const sf_agent_ops *ops = agent();
    opts o;
    sf_agent_config cfg = standard_cfg(&o, "v", 1);
    assert_int_equal(ops->check(&cfg), SF_OK);
    sf_batch b;
    ref rv, rn;
    make_batch(&b, 5000, skewed, &rv, &rn);
    void *s = new_state(ops, &cfg);
    process_all(ops, s, &b);
    uint64_t total[4] = {0, 0, 0, 0};
    for (int sv = 0; sv < NSERVICES; sv++) {
        uint8_t key[64];
        size_t kn = service_key(sv, key);
        const char *names[4] = {"in_range", "below", "above", "missing"};
        for (int k = 0; k < 4; k++) {
            double got = -1;
            if (rv.n[sv][0] + rv.n[sv][1] + rv.n[sv][2] + rv.n[sv][3] == 0) {
                assert_int_equal(ops->stat(s, key, kn, names[k], &got), SF_ERR_ARG);
                continue;
            }
            assert_int_equal(ops->stat(s, key, kn, names[k], &got), SF_OK);
            assert_true(got == (double)rv.n[sv][k]);
            total[k] += rv.n[sv][k];
        }
    }
    double got;
    assert_int_equal(ops->stat(s, NULL, 0, "count", &got), SF_OK);
    assert_true(got == (double)(total[0] + total[1] + total[2]));
    assert_int_equal(ops->stat(s, NULL, 0, "rows", &got), SF_OK);
    assert_true(got == 5000.0);
    assert_int_equal(ops->stat(s, NULL, 0, "mean", &got), SF_ERR_ARG);

    sf_buf text;
    sf_buf_init(&text);
    report_text(ops, s, &text);
    char want[4096];
    expected_report(&rv, want, sizeof want);
    assert_string_equal((const char *)text.data, want);
    free_state(ops, s);

    /* The integer column, where 10 and 20 themselves occur: [lo, hi) is half-open. */
    sf_agent_config cn = standard_cfg(&o, "n", 1);
    assert_int_equal(ops->check(&cn), SF_OK);
    s = new_state(ops, &cn);
    process_all(ops, s, &b);
    report_text(ops, s, &text);
    expected_report(&rn, want, sizeof want);
    assert_string_equal((const char *)text.data, want);
    free_state(ops, s);

    /* Ungrouped: the sums over services. */
    sf_agent_config cu = standard_cfg(&o, "v", 0);
    s = new_state(ops, &cu);
    process_all(ops, s, &b);
    report_text(ops, s, &text);
    snprintf(want, sizeof want, "{\"in_range\":%llu,\"below\":%llu,\"above\":%llu,\"missing\":%llu}",
             (unsigned long long)total[0], (unsigned long long)total[1], (unsigned long long)total[2],
             (unsigned long long)total[3]);
    assert_string_equal((const char *)text.data, want);
    free_state(ops, s);
    sf_buf_fini(&text);
    sf_batch_fini(&b);
}

static void test_reference_uniform(void **st)
{
    (void)st;
    rng_state = 1;
    check_against_reference(false);
}

static void test_reference_skewed(void **st)
{
    (void)st;
    rng_state = 2;
    check_against_reference(true);
}

/* merge(init, x) == x, commutativity, associativity and split invariance,
 * all through the encoded bytes, grouped and not. */
static void test_merge_laws(void **st)
{
    (void)st;
    const sf_agent_ops *ops = agent();
    rng_state = 3;
    sf_batch b;
    ref rv, rn;
    make_batch(&b, 3000, true, &rv, &rn);
    for (int nby = 0; nby <= 1; nby++) {
        opts o;
        sf_agent_config cfg = standard_cfg(&o, "v", nby);
        sf_buf whole, got, other;
        sf_buf_init(&whole);
        sf_buf_init(&got);
        sf_buf_init(&other);
        void *one = new_state(ops, &cfg);
        process_all(ops, one, &b);
        encode(ops, one, &whole);

        /* merge(init, x) == x and merge(x, init) == x. */
        void *e = new_state(ops, &cfg);
        assert_int_equal(ops->merge(e, one), SF_OK);
        encode(ops, e, &got);
        assert_same_bytes(&got, &whole);
        void *e2 = new_state(ops, &cfg);
        assert_int_equal(ops->merge(one, e2), SF_OK);
        encode(ops, one, &got);
        assert_same_bytes(&got, &whole);

        /* K states over a random split (row selections), merged in a
         * shuffled order. */
        enum { K = 7 };
        uint32_t *sel[K];
        size_t nsel[K] = {0};
        void *part[K];
        for (int k = 0; k < K; k++) {
            sel[k] = malloc(sizeof(uint32_t) * b.nrows);
            assert_non_null(sel[k]);
            part[k] = new_state(ops, &cfg);
        }
        for (size_t r = 0; r < b.nrows; r++) {
            int k = (int)(rnd() % K);
            sel[k][nsel[k]++] = (uint32_t)r;
        }
        for (int k = 0; k < K; k++) {
            sf_rows rows = {0, nsel[k], sel[k], SF_ROWS_NO_SHARD};
            assert_int_equal(ops->process(part[k], &b, &rows), SF_OK);
        }
        int perm[K];
        for (int k = 0; k < K; k++) perm[k] = k;
        for (int k = K - 1; k > 0; k--) {
            int j = (int)(rnd() % (uint64_t)(k + 1));
            int t = perm[k];
            perm[k] = perm[j];
            perm[j] = t;
        }
        void *acc = new_state(ops, &cfg);
        for (int k = 0; k < K; k++) assert_int_equal(ops->merge(acc, part[perm[k]]), SF_OK);
        encode(ops, acc, &got);
        assert_same_bytes(&got, &whole);

        /* Commutativity and associativity on three of the parts. */
        void *ab = new_state(ops, &cfg), *ba = new_state(ops, &cfg);
        assert_int_equal(ops->merge(ab, part[0]), SF_OK);
        assert_int_equal(ops->merge(ab, part[1]), SF_OK);
        assert_int_equal(ops->merge(ba, part[1]), SF_OK);
        assert_int_equal(ops->merge(ba, part[0]), SF_OK);
        encode(ops, ab, &got);
        encode(ops, ba, &other);
        assert_same_bytes(&got, &other);
        void *bc = new_state(ops, &cfg);
        assert_int_equal(ops->merge(bc, part[1]), SF_OK);
        assert_int_equal(ops->merge(bc, part[2]), SF_OK);
        assert_int_equal(ops->merge(ab, part[2]), SF_OK);  /* (a + b) + c */
        void *a_bc = new_state(ops, &cfg);
        assert_int_equal(ops->merge(a_bc, part[0]), SF_OK);
        assert_int_equal(ops->merge(a_bc, bc), SF_OK);     /* a + (b + c) */
        encode(ops, ab, &got);
        encode(ops, a_bc, &other);
        assert_same_bytes(&got, &other);

        void *all[] = {one, e, e2, acc, ab, ba, bc, a_bc};
        for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) free_state(ops, all[i]);
        for (int k = 0; k < K; k++) {
            free_state(ops, part[k]);
            free(sel[k]);
        }
        sf_buf_fini(&whole);
        sf_buf_fini(&got);
        sf_buf_fini(&other);
    }
    sf_batch_fini(&b);
}

/* decode(encode(x)) encodes to the same bytes; every truncation, a trailing
 * byte, a bad version, another range and keys out of order are rejected. */
static void test_encoding(void **st)
{
    (void)st;
    const sf_agent_ops *ops = agent();
    rng_state = 4;
    sf_batch b;
    ref rv, rn;
    make_batch(&b, 500, false, &rv, &rn);
    for (int nby = 0; nby <= 1; nby++) {
        opts o;
        sf_agent_config cfg = standard_cfg(&o, "v", nby);
        void *s = new_state(ops, &cfg), *d = new_state(ops, &cfg);
        process_all(ops, s, &b);
        sf_buf enc, again;
        sf_buf_init(&enc);
        sf_buf_init(&again);
        encode(ops, s, &enc);
        assert_int_equal(ops->decode(d, enc.data, enc.len), SF_OK);
        encode(ops, d, &again);
        assert_same_bytes(&again, &enc);
        /* Decoding replaces: twice gives the same state. */
        assert_int_equal(ops->decode(d, enc.data, enc.len), SF_OK);
        encode(ops, d, &again);
        assert_same_bytes(&again, &enc);

        for (size_t n = 0; n < enc.len; n++) assert_int_equal(ops->decode(d, enc.data, n), SF_ERR_PARSE);
        uint8_t *p = malloc(enc.len + 1);
        assert_non_null(p);
        memcpy(p, enc.data, enc.len);
        p[enc.len] = 0;
        assert_int_equal(ops->decode(d, p, enc.len + 1), SF_ERR_PARSE);
        p[0] = 2;
        assert_int_equal(ops->decode(d, p, enc.len), SF_ERR_PARSE);
        p[0] = enc.data[0];
        p[2 + 7] ^= 0x01; /* a bit of lo */
        assert_int_equal(ops->decode(d, p, enc.len), SF_ERR_PARSE);
        assert_non_null(strstr(sf_error_message(), "range"));
        free(p);

        /* A state encoded by another configuration (other hi) is refused. */
        opts o2;
        opts_init(&o2);
        opts_add(&o2, "lo", "10");
        opts_add(&o2, "hi", "21");
        sf_agent_config c2 = make_cfg(&o2, "v", nby);
        void *t = new_state(ops, &c2);
        assert_int_equal(ops->decode(t, enc.data, enc.len), SF_ERR_PARSE);
        free_state(ops, t);
        sf_buf_fini(&enc);
        sf_buf_fini(&again);
        free_state(ops, s);
        free_state(ops, d);
    }

    /* Two groups swapped: keys out of order. Keys "api" and "db" have the
     * same length, so their records have the same size. */
    opts o;
    sf_agent_config cfg = standard_cfg(&o, "v", 1);
    void *s = new_state(ops, &cfg), *d = new_state(ops, &cfg);
    sf_batch two;
    assert_int_equal(sf_batch_init(&two, &schema, NULL, 2), SF_OK);
    const char *names[2] = {"api", "db "};
    for (int r = 0; r < 2; r++) {
        uint32_t code;
        assert_int_equal(sf_dict_intern(&two.cols[COL_SERVICE].dict, names[r], 3, &code), SF_OK);
        two.cols[COL_SERVICE].code[r] = code;
        two.cols[COL_NAME].code[r] = code;
        two.cols[COL_V].f64[r] = 15.0 * (r + 1);
    }
    two.nrows = 2;
    process_all(ops, s, &two);
    sf_buf enc;
    sf_buf_init(&enc);
    encode(ops, s, &enc);
    size_t head = 1 + 1 + 8 + 8 + 8, rec = 4 + 8 + 32;
    assert_int_equal(enc.len, head + 2 * rec);
    assert_int_equal(ops->decode(d, enc.data, enc.len), SF_OK);
    uint8_t swapped[256];
    memcpy(swapped, enc.data, head);
    memcpy(swapped + head, enc.data + head + rec, rec);
    memcpy(swapped + head + rec, enc.data + head, rec);
    assert_int_equal(ops->decode(d, swapped, enc.len), SF_ERR_PARSE);
    assert_non_null(strstr(sf_error_message(), "out of order"));
    /* A duplicated key is out of order too. */
    memcpy(swapped + head + rec, enc.data + head, rec);
    memcpy(swapped + head, enc.data + head, rec);
    assert_int_equal(ops->decode(d, swapped, enc.len), SF_ERR_PARSE);
    /* A malformed key (tag byte 7). */
    memcpy(swapped, enc.data, enc.len);
    swapped[head + 4] = 7;
    assert_int_equal(ops->decode(d, swapped, enc.len), SF_ERR_PARSE);
    sf_buf_fini(&enc);
    sf_batch_fini(&two);
    free_state(ops, s);
    free_state(ops, d);
    sf_batch_fini(&b);
}

/* A configuration error names test.yaml, the line, the agent id and the option. */
static void expect_config_error(const sf_agent_config *cfg, const char *part1, const char *part2)
{
    const sf_agent_ops *ops = agent();
    assert_int_equal(ops->check(cfg), SF_ERR_CONFIG);
    const char *m = sf_error_message();
    if (strstr(m, part1) == NULL || strstr(m, part2) == NULL || strstr(m, "'fast'") == NULL)
        fail_msg("message '%s' lacks '%s', '%s' or the agent id", m, part1, part2);
}

static void test_config_errors(void **st)
{
    (void)st;
    opts o;
    sf_agent_config c;

    opts_init(&o);
    opts_add(&o, "lo", "10");
    opts_add(&o, "hi", "20");
    opts_add(&o, "high", "30");
    c = make_cfg(&o, "v", 0);
    expect_config_error(&c, "test.yaml:4", "unknown option 'high'");

    opts_init(&o);
    opts_add(&o, "lo", "20");
    opts_add(&o, "hi", "10");
    c = make_cfg(&o, "v", 0);
    expect_config_error(&c, "test.yaml:3", "option 'hi'");

    opts_init(&o);
    opts_add(&o, "lo", "5");
    opts_add(&o, "hi", "5");
    c = make_cfg(&o, "v", 0);
    expect_config_error(&c, "test.yaml:3", "must be greater than lo");

    opts_init(&o);
    opts_add(&o, "hi", "10");
    c = make_cfg(&o, "v", 0);
    expect_config_error(&c, "test.yaml:1", "option 'lo' is required");

    opts_init(&o);
    opts_add(&o, "lo", "ten");
    opts_add(&o, "hi", "20");
    c = make_cfg(&o, "v", 0);
    expect_config_error(&c, "test.yaml:2", "option 'lo'");

    opts_init(&o);
    opts_add(&o, "column", "name");
    opts_add(&o, "lo", "1");
    opts_add(&o, "hi", "2");
    c = make_cfg(&o, "name", 0);
    expect_config_error(&c, "test.yaml:2", "column 'name' is string");

    opts_init(&o);
    opts_add(&o, "column", "nope");
    opts_add(&o, "lo", "1");
    opts_add(&o, "hi", "2");
    c = make_cfg(&o, "nope", 0);
    expect_config_error(&c, "test.yaml:2", "no column 'nope'");

    /* And a good one passes. */
    sf_agent_config ok = standard_cfg(&o, "v", 1);
    assert_int_equal(agent()->check(&ok), SF_OK);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s EXAMPLE_PLUGIN NO_INIT_PLUGIN\n", argv[0]);
        return 2;
    }
    example_path = argv[1];
    no_init_path = argv[2];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_load_errors),     cmocka_unit_test(test_load),
        cmocka_unit_test(test_reference_uniform), cmocka_unit_test(test_reference_skewed),
        cmocka_unit_test(test_merge_laws),      cmocka_unit_test(test_encoding),
        cmocka_unit_test(test_config_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
