/* Unit tests of the `sessions` agent (agents/sessions.c).
 *
 * Expectations come from an exact reference written here: all events sorted
 * per user and split where consecutive events are more than the gap apart,
 * the end event being the largest in (time, latency, group key bytes). The
 * agent's state is read back through its documented encoding and compared
 * session by session; its report is compared with one the test builds from
 * the reference sessions; splits into states merged in random orders must
 * give the same bytes. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "agents/sessions.h"
#include "agents/txn.h"

#include "agent_testkit.h"

enum { COL_USER, COL_TS, COL_LAT, COL_REGION, COL_NAME, COL_MS, NCOLS };

static const sf_agent_ops *ops = &sf__agent_sessions;
static sf_schema schema;

#define T0 INT64_C(1767225600000000) /* 2026-01-01T00:00:00Z */
#define MIN_US INT64_C(60000000)
#define GAP_US (5 * MIN_US)

static uint64_t below(uint64_t n) { return rnd() % n; }

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "user", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "timestamp", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "latency_ms", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "region", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "name", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "ms", SF_INT64) != SF_OK) return -1;
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_schema_fini(&schema);
    return 0;
}

/* ---- configurations ---------------------------------------------------------- */

static const int by_region[] = {COL_REGION};

/* A configuration; node may be NULL (all defaults). */
static sf_agent_config make_cfg(int nby, const sf_cfg_node *node)
{
    sf_agent_config c;
    memset(&c, 0, sizeof c);
    c.agent = "sessions";
    c.id = "sess";
    c.column = NULL;
    c.col = -1;
    c.nby = nby;
    c.by = nby ? (const char *const[]){"region"} : NULL;
    c.by_col = nby ? by_region : NULL;
    c.schema = &schema;
    c.node = node;
    c.file = "wf.yaml";
    c.line = 7;
    c.stage = "ux";
    c.shard_strategy = "hash";
    c.shard_key = "user";
    return c;
}

/* ---- events ------------------------------------------------------------------------ */

typedef struct ev {
    int64_t user;       /* 0: null user */
    int64_t t;
    double lat;
    bool lat_null;
    bool t_null;
    const char *region; /* NULL: null */
} ev;

static void fill_batch(sf_batch *b, const ev *e, size_t n)
{
    assert_int_equal(sf_batch_init(b, &schema, NULL, n ? n : 1), SF_OK);
    for (size_t r = 0; r < n; r++) {
        b->cols[COL_USER].i64[r] = e[r].user;
        if (e[r].user == 0) assert_int_equal(sf_batch_set_null(b, COL_USER, r), SF_OK);
        b->cols[COL_TS].i64[r] = e[r].t;
        if (e[r].t_null) assert_int_equal(sf_batch_set_null(b, COL_TS, r), SF_OK);
        b->cols[COL_LAT].f64[r] = e[r].lat;
        if (e[r].lat_null) assert_int_equal(sf_batch_set_null(b, COL_LAT, r), SF_OK);
        b->cols[COL_MS].i64[r] = isnan(e[r].lat) ? 0 : (int64_t)e[r].lat;
        uint32_t code;
        if (e[r].region) {
            assert_int_equal(sf_dict_intern(&b->cols[COL_REGION].dict, e[r].region, strlen(e[r].region), &code),
                             SF_OK);
            b->cols[COL_REGION].code[r] = code;
        } else {
            assert_int_equal(sf_batch_set_null(b, COL_REGION, r), SF_OK);
        }
        char name[32];
        int len = snprintf(name, sizeof name, "u%lld", (long long)e[r].user);
        assert_int_equal(sf_dict_intern(&b->cols[COL_NAME].dict, name, (size_t)len, &code), SF_OK);
        b->cols[COL_NAME].code[r] = code;
    }
    b->nrows = n;
}

/* The shard feed() tells process() its rows come from: any, a user's rows
 * need not all come from one (the agent lays out its memory by shard, its
 * result must not depend on it). */
static uint32_t feed_shards = 0;
static void feed_whole(void *s, const ev *e, size_t n);
static uint32_t feed_shard(void)
{
    if (feed_shards == 0) return SF_ROWS_NO_SHARD;
    uint64_t k = below(feed_shards + 1);
    return k == feed_shards ? SF_ROWS_NO_SHARD : (uint32_t)(k * 97); /* beyond any cluster count too */
}

/* Processes events in morsels of random sizes: contiguous row ranges of a
 * batch of the events, and every other morsel as a row selection (the rows
 * of a where: filter) over a batch where decoys sit between the events. */
static void feed(void *s, const ev *e, size_t n)
{
    sf_batch b;
    fill_batch(&b, e, n);
    if (n == 0) {
        sf_rows rows = {0, 0, NULL, SF_ROWS_NO_SHARD};
        assert_int_equal(ops->process(s, &b, &rows), SF_OK);
        sf_batch_fini(&b);
        return;
    }
    ev *all = malloc(sizeof *all * 2 * n);
    uint32_t *sel = malloc(sizeof *sel * n);
    assert_non_null(all);
    assert_non_null(sel);
    for (size_t i = 0; i < n; i++) {
        all[2 * i] = e[i];
        all[2 * i + 1] = e[i];
        all[2 * i + 1].user = 1000000 + (int64_t)i; /* would be visible if counted */
    }
    sf_batch d;
    fill_batch(&d, all, 2 * n);
    for (size_t at = 0, part = 0; at < n; part++) {
        size_t m = 1 + below(n - at < 97 ? n - at : 97);
        if (part % 2 == 0) {
            for (size_t i = 0; i < m; i++) sel[i] = (uint32_t)(2 * (at + i));
            sf_rows rows = {0, m, sel, feed_shard()};
            assert_int_equal(ops->process(s, &d, &rows), SF_OK);
        } else {
            sf_rows rows = {at, m, NULL, feed_shard()};
            assert_int_equal(ops->process(s, &b, &rows), SF_OK);
        }
        at += m;
    }
    sf_batch_fini(&b);
    sf_batch_fini(&d);
    free(all);
    free(sel);
}

/* ---- the reference ------------------------------------------------------------------ */

/* The documented order key of a latency (0 for null or NaN). */
static uint64_t lat_key(const ev *e)
{
    if (e->lat_null || isnan(e->lat)) return 0;
    uint64_t b;
    memcpy(&b, &e->lat, sizeof b);
    return (b >> 63) ? ~b : b | 0x8000000000000000ull;
}

typedef struct keybytes {
    uint8_t b[64];
    size_t n;
} keybytes;

/* Canonical keys as documented in shardflow/agent.h. */
static keybytes int_key(int64_t v)
{
    keybytes k;
    k.b[0] = 1;
    for (int i = 0; i < 8; i++) k.b[1 + i] = (uint8_t)((uint64_t)v >> (8 * i));
    k.n = 9;
    return k;
}

static keybytes str_key(const char *s)
{
    keybytes k;
    if (s == NULL) {
        k.b[0] = 0;
        k.n = 1;
        return k;
    }
    uint32_t len = (uint32_t)strlen(s);
    k.b[0] = 1;
    for (int i = 0; i < 4; i++) k.b[1 + i] = (uint8_t)(len >> (8 * i));
    memcpy(k.b + 5, s, len);
    k.n = 5 + len;
    return k;
}

static int key_cmp(const keybytes *a, const keybytes *b)
{
    size_t n = a->n < b->n ? a->n : b->n;
    int c = memcmp(a->b, b->b, n);
    if (c != 0) return c;
    return a->n < b->n ? -1 : a->n > b->n;
}

typedef struct ref_ev {
    keybytes user, group;
    int64_t t;
    uint64_t lat;
} ref_ev;

typedef struct ref_sess {
    keybytes user, group;
    int64_t start, end;
    uint64_t events, lat;
} ref_sess;

static int ref_ev_cmp(const void *x, const void *y)
{
    const ref_ev *a = x, *b = y;
    int c = key_cmp(&a->user, &b->user);
    if (c != 0) return c;
    if (a->t != b->t) return a->t < b->t ? -1 : 1;
    if (a->lat != b->lat) return a->lat < b->lat ? -1 : 1;
    return key_cmp(&a->group, &b->group);
}

/* Sessions of events e[0..n) in encoding order (users by key bytes, then
 * start); the group is the region when grouped, the empty key otherwise.
 * string_user: the user key is the "name" column. */
static ref_sess *reference(const ev *e, size_t n, int64_t gap, bool grouped, bool string_user, size_t *nsess,
                           uint64_t *skipped)
{
    ref_ev *r = malloc(sizeof *r * (n ? n : 1));
    assert_non_null(r);
    size_t m = 0;
    *skipped = 0;
    for (size_t i = 0; i < n; i++) {
        if (e[i].user == 0 || e[i].t_null) {
            (*skipped)++;
            continue;
        }
        char name[32];
        snprintf(name, sizeof name, "u%lld", (long long)e[i].user);
        r[m].user = string_user ? str_key(name) : int_key(e[i].user);
        if (grouped) {
            r[m].group = str_key(e[i].region);
        } else {
            r[m].group.n = 0;
        }
        r[m].t = e[i].t;
        r[m].lat = lat_key(&e[i]);
        m++;
    }
    qsort(r, m, sizeof *r, ref_ev_cmp);
    ref_sess *out = malloc(sizeof *out * (m ? m : 1));
    assert_non_null(out);
    size_t k = 0;
    for (size_t i = 0; i < m; i++) {
        bool same_user = i > 0 && key_cmp(&r[i].user, &r[i - 1].user) == 0;
        if (same_user && r[i].t - r[i - 1].t <= gap) {
            ref_sess *x = &out[k - 1];
            x->end = r[i].t;
            x->events++;
            x->lat = r[i].lat; /* the sort puts the largest (time, latency, key) last */
            x->group = r[i].group;
            continue;
        }
        out[k].user = r[i].user;
        out[k].group = r[i].group;
        out[k].start = out[k].end = r[i].t;
        out[k].events = 1;
        out[k].lat = r[i].lat;
        k++;
    }
    free(r);
    *nsess = k;
    return out;
}

/* Reads the documented encoding back into sessions (a second reader). */
static ref_sess *parse_state(const sf_buf *buf, int64_t gap, size_t *nsess, uint64_t *skipped)
{
    sf_rd r;
    sf_rd_init(&r, buf->data, buf->len);
    uint8_t version, nby;
    int64_t g;
    uint64_t nkeys, nusers;
    assert_int_equal(sf_rd_u8(&r, &version), SF_OK);
    assert_int_equal(version, 1);
    assert_int_equal(sf_rd_u8(&r, &nby), SF_OK);
    assert_int_equal(sf_rd_i64(&r, &g), SF_OK);
    assert_int_equal(g, gap);
    assert_int_equal(sf_rd_u64(&r, skipped), SF_OK);
    assert_int_equal(sf_rd_u64(&r, &nkeys), SF_OK);
    keybytes *keys = malloc(sizeof *keys * (nkeys ? nkeys : 1));
    assert_non_null(keys);
    for (uint64_t i = 0; i < nkeys; i++) {
        const char *p;
        size_t len;
        assert_int_equal(sf_rd_str(&r, &p, &len), SF_OK);
        assert_true(len <= sizeof keys[i].b);
        memcpy(keys[i].b, p, len);
        keys[i].n = len;
        if (i > 0) assert_true(key_cmp(&keys[i - 1], &keys[i]) < 0);
    }
    assert_int_equal(sf_rd_u64(&r, &nusers), SF_OK);
    size_t cap = 16, k = 0;
    ref_sess *out = malloc(sizeof *out * cap);
    assert_non_null(out);
    for (uint64_t u = 0; u < nusers; u++) {
        const char *p;
        size_t len;
        assert_int_equal(sf_rd_str(&r, &p, &len), SF_OK);
        keybytes uk;
        memcpy(uk.b, p, len);
        uk.n = len;
        uint64_t ns;
        assert_int_equal(sf_rd_u64(&r, &ns), SF_OK);
        for (uint64_t i = 0; i < ns; i++) {
            if (k == cap) {
                cap *= 2;
                out = realloc(out, sizeof *out * cap);
                assert_non_null(out);
            }
            ref_sess *x = &out[k++];
            uint32_t rank;
            x->user = uk;
            assert_int_equal(sf_rd_i64(&r, &x->start), SF_OK);
            assert_int_equal(sf_rd_i64(&r, &x->end), SF_OK);
            assert_int_equal(sf_rd_u64(&r, &x->events), SF_OK);
            assert_int_equal(sf_rd_u64(&r, &x->lat), SF_OK);
            assert_int_equal(sf_rd_u32(&r, &rank), SF_OK);
            assert_true(rank < nkeys);
            x->group = keys[rank];
        }
    }
    assert_int_equal(r.off, buf->len);
    free(keys);
    *nsess = k;
    return out;
}

static void assert_sessions_equal(const ref_sess *a, size_t na, const ref_sess *b, size_t nb)
{
    assert_int_equal(na, nb);
    for (size_t i = 0; i < na; i++) {
        assert_int_equal(key_cmp(&a[i].user, &b[i].user), 0);
        assert_int_equal(a[i].start, b[i].start);
        assert_int_equal(a[i].end, b[i].end);
        assert_int_equal(a[i].events, b[i].events);
        assert_int_equal(a[i].lat, b[i].lat);
        assert_int_equal(key_cmp(&a[i].group, &b[i].group), 0);
    }
}

/* The printed group of a reference session: the region, \N for null. */
static void group_text(const ref_sess *x, char *buf, size_t n)
{
    if (x->group.b[0] == 0) {
        snprintf(buf, n, "\\N");
        return;
    }
    size_t len = x->group.n - 5;
    assert_true(len < n);
    memcpy(buf, x->group.b + 5, len);
    buf[len] = '\0';
}

typedef struct cell {
    char group[32];
    int64_t bucket;
    bool ab;
} cell;

static int cell_cmp(const void *x, const void *y)
{
    const cell *a = x, *b = y;
    int c = strcmp(a->group, b->group);
    if (c != 0) return c;
    return a->bucket < b->bucket ? -1 : a->bucket > b->bucket;
}

static void ref_buckets(sf_json *j, const cell *c, size_t n)
{
    sf_json_obj_begin(j);
    for (size_t i = 0; i < n;) {
        size_t e = i;
        uint64_t ab = 0;
        while (e < n && c[e].bucket == c[i].bucket) ab += c[e++].ab;
        char iso[40];
        sf_timestamp_format(c[i].bucket, iso, sizeof iso);
        sf_json_key(j, iso);
        sf_json_obj_begin(j);
        sf_json_key(j, "sessions");
        sf_json_uint(j, e - i);
        sf_json_key(j, "abandoned");
        sf_json_uint(j, ab);
        sf_json_key(j, "rate");
        sf_json_num(j, (double)ab / (double)(e - i));
        sf_json_obj_end(j);
        i = e;
    }
    sf_json_obj_end(j);
}

/* The report the reference sessions imply (slow: latency >= slow_ms). */
static char *reference_report(const ref_sess *x, size_t n, int64_t gap, int64_t bucket, double slow_ms,
                              bool grouped, uint64_t skipped)
{
    cell *c = malloc(sizeof *c * (n ? n : 1));
    assert_non_null(c);
    uint64_t events = 0, dur = 0, ab = 0;
    ev probe = {0};
    probe.lat = slow_ms;
    uint64_t slow = lat_key(&probe);
    for (size_t i = 0; i < n; i++) {
        events += x[i].events;
        dur += (uint64_t)(x[i].end - x[i].start);
        c[i].ab = x[i].lat != 0 && x[i].lat >= slow;
        ab += c[i].ab;
        if (grouped) group_text(&x[i], c[i].group, sizeof c[i].group);
        else c[i].group[0] = '\0';
        /* Bucket starts: floor((end - T0) / bucket), times here are after T0. */
        c[i].bucket = x[i].end - (x[i].end % bucket + bucket) % bucket;
    }
    qsort(c, n, sizeof *c, cell_cmp);
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    sf_json_key(&j, "gap_us");
    sf_json_int(&j, gap);
    sf_json_key(&j, "sessions");
    sf_json_uint(&j, n);
    sf_json_key(&j, "events");
    sf_json_uint(&j, events);
    sf_json_key(&j, "mean_events");
    sf_json_num(&j, (double)events / (double)n);
    sf_json_key(&j, "mean_duration_s");
    sf_json_num(&j, (double)dur / (double)n / 1e6);
    sf_json_key(&j, "abandoned");
    sf_json_uint(&j, ab);
    sf_json_key(&j, "abandon_rate");
    sf_json_num(&j, (double)ab / (double)n);
    sf_json_key(&j, "bucket_us");
    sf_json_int(&j, bucket);
    if (!grouped) {
        sf_json_key(&j, "buckets");
        ref_buckets(&j, c, n);
    } else {
        sf_json_key(&j, "groups");
        sf_json_obj_begin(&j);
        for (size_t i = 0; i < n;) {
            size_t e = i;
            while (e < n && strcmp(c[e].group, c[i].group) == 0) e++;
            sf_json_key(&j, c[i].group);
            sf_json_obj_begin(&j);
            sf_json_key(&j, "buckets");
            ref_buckets(&j, c + i, e - i);
            sf_json_obj_end(&j);
            i = e;
        }
        sf_json_obj_end(&j);
    }
    sf_json_key(&j, "skipped");
    sf_json_uint(&j, skipped);
    sf_json_obj_end(&j);
    assert_int_equal(j.rc, SF_OK);
    char *t = malloc(j.out.len + 1);
    assert_non_null(t);
    memcpy(t, j.out.data, j.out.len);
    t[j.out.len] = '\0';
    sf_json_fini(&j);
    free(c);
    return t;
}

/* ---- random data ------------------------------------------------------------------------ */

static const char *const region_names[] = {"us-east", "eu-west", "ap-south", "eu-central", NULL};
static const double latencies[] = {120, 2000, 2500, 80.5, 3100};

/* n events; skewed: one user has half of them. Times are multiples of 30 s
 * over two hours, so equal times (ties) and gaps of exactly 5 minutes are
 * common; a few latencies are null or NaN, a few regions null, a few users
 * and times null. */
static ev *random_events(size_t n, uint64_t users, bool skewed)
{
    ev *e = malloc(sizeof *e * (n ? n : 1));
    assert_non_null(e);
    for (size_t i = 0; i < n; i++) {
        e[i].user = (int64_t)(skewed && below(2) ? 7 : 1 + below(users));
        if (below(200) == 0) e[i].user = 0;
        /* Users alternate between busy periods and idle ones. */
        uint64_t period = below(8);
        e[i].t = T0 + (int64_t)(period * 15 + below(period % 3 == 0 ? 20 : 8)) * 30000000;
        if (below(500) == 0) e[i].t += 1; /* a time that is not on the grid */
        e[i].t_null = below(300) == 0;
        e[i].lat = latencies[below(5)];
        e[i].lat_null = below(50) == 0;
        if (below(100) == 0) e[i].lat = NAN;
        e[i].region = region_names[below(5)];
    }
    return e;
}

static void shuffle(ev *e, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = below(i);
        ev t = e[i - 1];
        e[i - 1] = e[j];
        e[j] = t;
    }
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void check_against_reference(size_t n, uint64_t users, bool skewed, bool grouped)
{
    ev *e = random_events(n, users, skewed);
    sf_agent_config cfg = make_cfg(grouped ? 1 : 0, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);
    void *s = new_state(ops, &cfg);
    feed_shards = 4;
    feed(s, e, n);
    feed_shards = 0;
    sf_buf enc = encoded(ops, s);
    size_t na, nb;
    uint64_t ska, skb;
    ref_sess *want = reference(e, n, GAP_US, grouped, false, &na, &ska);
    ref_sess *got = parse_state(&enc, GAP_US, &nb, &skb);
    assert_int_equal(skb, ska);
    assert_sessions_equal(got, nb, want, na);
    char *rep = report_text(ops, s);
    char *exp = reference_report(want, na, GAP_US, MIN_US, 2000, grouped, ska);
    assert_string_equal(rep, exp);
    /* stat() agrees with the reference as well. */
    double v;
    uint64_t events = 0;
    for (size_t i = 0; i < na; i++) events += want[i].events;
    assert_int_equal(ops->stat(s, NULL, 0, "rows", &v), SF_OK);
    assert_true(v == (double)(events + ska));
    assert_true(ska > 0 || n == 0);
    assert_int_equal(ops->stat(s, NULL, 0, "count", &v), SF_OK);
    assert_true(v == (double)events);
    assert_int_equal(ops->stat(s, NULL, 0, "sessions", &v), SF_OK);
    assert_true(v == (double)na);
    free(rep);
    free(exp);
    free(want);
    free(got);
    sf_buf_fini(&enc);
    free_state(ops, s);
    free(e);
}

static void test_reference(void **state)
{
    (void)state;
    rng_state = 11;
    check_against_reference(3000, 40, false, false);
    check_against_reference(3000, 40, false, true);
    check_against_reference(5000, 300, true, true);   /* skewed: one heavy user */
    check_against_reference(2000, 1, false, true);    /* a single user */
    check_against_reference(0, 10, false, false);     /* nothing */
}

/* Processes e split at random over k states (each in a random order), then
 * merges them in a random order; returns the encoding. */
static sf_buf split_and_merge(const sf_agent_config *cfg, const ev *e, size_t n, int k)
{
    void *st[16];
    ev *part[16];
    size_t np[16] = {0};
    assert_true(k <= 16);
    for (int i = 0; i < k; i++) {
        part[i] = malloc(sizeof *part[i] * (n ? n : 1));
        assert_non_null(part[i]);
        st[i] = new_state(ops, cfg);
    }
    for (size_t i = 0; i < n; i++) {
        int p = (int)below((uint64_t)k);
        part[p][np[p]++] = e[i];
    }
    for (int i = 0; i < k; i++) {
        shuffle(part[i], np[i]);
        feed(st[i], part[i], np[i]);
        free(part[i]);
    }
    int live = k;
    while (live > 1) {
        int a = (int)below((uint64_t)live), b = (int)below((uint64_t)live - 1);
        if (b >= a) b++;
        assert_int_equal(ops->merge(st[a], st[b]), SF_OK);
        free_state(ops, st[b]);
        st[b] = st[--live];
    }
    sf_buf out = encoded(ops, st[0]);
    free_state(ops, st[0]);
    return out;
}

static void test_split_invariance(void **state)
{
    (void)state;
    rng_state = 12;
    for (int trial = 0; trial < 12; trial++) {
        size_t n = 500 + below(3000);
        bool grouped = trial % 2 == 0;
        ev *e = random_events(n, trial % 3 == 0 ? 5 : 200, trial % 4 == 1);
        sf_agent_config cfg = make_cfg(grouped ? 1 : 0, NULL);
        void *one = new_state(ops, &cfg);
        feed(one, e, n);
        sf_buf want = encoded(ops, one);
        for (int k = 2; k <= 9; k += 7 - trial % 3) {
            sf_buf got = split_and_merge(&cfg, e, n, k);
            assert_same_bytes(&got, &want);
            sf_buf_fini(&got);
        }
        sf_buf_fini(&want);
        free_state(ops, one);
        free(e);
    }
}

static void test_merge_laws(void **state)
{
    (void)state;
    rng_state = 13;
    sf_agent_config cfg = make_cfg(1, NULL);
    ev *e = random_events(3000, 60, false);
    void *x = new_state(ops, &cfg), *y = new_state(ops, &cfg), *z = new_state(ops, &cfg);
    feed(x, e, 1000);
    feed(y, e + 1000, 1000);
    feed(z, e + 2000, 1000);
    sf_buf bx = encoded(ops, x);

    /* Identity on both sides. */
    void *i1 = new_state(ops, &cfg);
    assert_int_equal(ops->merge(i1, x), SF_OK);
    sf_buf b1 = encoded(ops, i1);
    assert_same_bytes(&b1, &bx);
    void *x2 = new_state(ops, &cfg);
    feed(x2, e, 1000);
    void *empty = new_state(ops, &cfg);
    assert_int_equal(ops->merge(x2, empty), SF_OK);
    sf_buf b2 = encoded(ops, x2);
    assert_same_bytes(&b2, &bx);

    /* (x + y) + z == x + (y + z) == (z + x) + y. */
    void *l = new_state(ops, &cfg), *r = new_state(ops, &cfg), *c = new_state(ops, &cfg), *yz = new_state(ops, &cfg);
    assert_int_equal(ops->merge(l, x), SF_OK);
    assert_int_equal(ops->merge(l, y), SF_OK);
    assert_int_equal(ops->merge(l, z), SF_OK);
    assert_int_equal(ops->merge(yz, y), SF_OK);
    assert_int_equal(ops->merge(yz, z), SF_OK);
    assert_int_equal(ops->merge(r, x), SF_OK);
    assert_int_equal(ops->merge(r, yz), SF_OK);
    assert_int_equal(ops->merge(c, z), SF_OK);
    assert_int_equal(ops->merge(c, x), SF_OK);
    assert_int_equal(ops->merge(c, y), SF_OK);
    sf_buf bl = encoded(ops, l), br = encoded(ops, r), bc = encoded(ops, c);
    assert_same_bytes(&bl, &br);
    assert_same_bytes(&bl, &bc);
    /* The sum has what one state of all events has. */
    void *all = new_state(ops, &cfg);
    feed(all, e, 3000);
    sf_buf ba = encoded(ops, all);
    assert_same_bytes(&bl, &ba);

    sf_buf_fini(&bx);
    sf_buf_fini(&b1);
    sf_buf_fini(&b2);
    sf_buf_fini(&bl);
    sf_buf_fini(&br);
    sf_buf_fini(&bc);
    sf_buf_fini(&ba);
    void *states[] = {x, y, z, i1, x2, empty, l, r, c, yz, all};
    for (size_t i = 0; i < sizeof states / sizeof states[0]; i++) free_state(ops, states[i]);
    free(e);
}

/* In-place transactions (agents/txn.h): a rolled-back transaction leaves
 * the state's encoding exactly as it was at begin, whatever it did (new
 * users, users whose one inline session moved to the heap, heap lists that
 * grew, joins and bridges inside old lists, skipped rows); a committed one
 * leaves what processing without a transaction leaves; a state stays usable
 * for later transactions and merges. Compared against states fed the same
 * events without transactions. */
static void test_in_place_transactions(void **state)
{
    (void)state;
    const sf__agent_txn *tx = sf__agent_txn_of(ops);
    assert_non_null(tx);
    assert_ptr_equal(tx, &sf__sessions_txn);
    for (int nby = 0; nby < 2; nby++) {
        rng_state = 2024 + (uint64_t)nby;
        sf_agent_config cfg = make_cfg(nby, NULL);
        const size_t n = 6000, chunk = 500;
        /* Few users: lists grow long and every chunk touches old users; the
         * second half brings users the first half never saw. */
        ev *e = random_events(n, 40, nby == 1);
        for (size_t i = n / 2; i < n; i++)
            if (below(4) == 0 && e[i].user != 0) e[i].user += 1000;
        void *x = new_state(ops, &cfg), *ref = new_state(ops, &cfg);
        for (size_t at = 0, k = 0; at < n; at += chunk, k++) {
            feed_shards = (uint32_t)(k % 4);
            sf_buf before = encoded(ops, x);
            assert_int_equal(tx->begin(x), SF_OK);
            feed(x, e + at, chunk / 2);
            feed(x, e + at + chunk / 2, chunk - chunk / 2);
            if (k % 3 == 1) {
                /* Rolled back: as before; then done again and committed. */
                tx->rollback(x);
                sf_buf after = encoded(ops, x);
                assert_same_bytes(&after, &before);
                sf_buf_fini(&after);
                assert_int_equal(tx->begin(x), SF_OK);
                feed(x, e + at, chunk);
            }
            tx->commit(x);
            feed(ref, e + at, chunk);
            sf_buf bx = encoded(ops, x), br = encoded(ops, ref);
            assert_same_bytes(&bx, &br);
            sf_buf_fini(&bx);
            sf_buf_fini(&br);
            sf_buf_fini(&before);
        }
        /* A rolled-back transaction with nothing in it, and one whose
         * events are all for users the state has never seen. */
        sf_buf b0 = encoded(ops, x);
        assert_int_equal(tx->begin(x), SF_OK);
        tx->rollback(x);
        ev fresh[3] = {{5001, T0, 1.0, false, false, "eu"}, {5001, T0 + 1000, 2.0, false, false, "eu"},
                       {5002, T0, 3.0, false, false, NULL}};
        assert_int_equal(tx->begin(x), SF_OK);
        feed(x, fresh, 3);
        tx->rollback(x);
        sf_buf b1 = encoded(ops, x);
        assert_same_bytes(&b1, &b0);
        /* Merging the state into an empty one and reports still agree. */
        void *m = new_state(ops, &cfg);
        assert_int_equal(ops->merge(m, x), SF_OK);
        sf_buf bm = encoded(ops, m);
        assert_same_bytes(&bm, &b0);
        /* A second transaction can not be opened inside the first. */
        assert_int_equal(tx->begin(x), SF_OK);
        assert_int_equal(tx->begin(x), SF_ERR_INTERNAL);
        tx->commit(x);
        sf_buf_fini(&b0);
        sf_buf_fini(&b1);
        sf_buf_fini(&bm);
        free_state(ops, x);
        free_state(ops, ref);
        free_state(ops, m);
        free(e);
    }
}

/* Many transactions, a third of them rolled back, with no encode() in
 * between (encode adds whatever events a state holds back): the events of
 * earlier transactions are added inside later ones, whose rollback must
 * not lose them. Rows come from several shards. The committed events must
 * give the state that one state fed them all, shard unknown, gives. */
static void test_transactions_without_reads(void **state)
{
    (void)state;
    const sf__agent_txn *tx = sf__agent_txn_of(ops);
    for (int nby = 0; nby < 2; nby++) {
        rng_state = 77 + (uint64_t)nby;
        sf_agent_config cfg = make_cfg(nby, NULL);
        const size_t n = 40000, chunk = 700;
        ev *e = random_events(n, 300, nby == 1);
        if (nby == 1) shuffle(e, n);
        ev *kept = malloc(sizeof *kept * n);
        assert_non_null(kept);
        size_t nkept = 0;
        void *x = new_state(ops, &cfg), *ref = new_state(ops, &cfg);
        feed_shards = 5;
        for (size_t at = 0, k = 0; at < n; at += chunk, k++) {
            size_t m = n - at < chunk ? n - at : chunk;
            assert_int_equal(tx->begin(x), SF_OK);
            feed(x, e + at, m);
            if (k % 3 == 2) {
                tx->rollback(x);
            } else {
                tx->commit(x);
                memcpy(kept + nkept, e + at, m * sizeof *e);
                nkept += m;
            }
        }
        /* And outside transactions, in large calls. */
        feed(x, e, n / 4);
        memcpy(kept + nkept, e, n / 4 * sizeof *e);
        nkept += n / 4;
        feed_shards = 0;
        feed_whole(ref, kept, nkept);
        sf_buf bx = encoded(ops, x), br = encoded(ops, ref);
        assert_same_bytes(&bx, &br);
        /* A merge of a state that holds events back gives them too. */
        void *y = new_state(ops, &cfg), *m0 = new_state(ops, &cfg);
        feed_shards = 3;
        feed(y, e, n / 2);
        feed_shards = 0;
        assert_int_equal(ops->merge(m0, y), SF_OK);
        void *yr = new_state(ops, &cfg);
        feed_whole(yr, e, n / 2);
        sf_buf bm = encoded(ops, m0), by = encoded(ops, yr);
        assert_same_bytes(&bm, &by);
        sf_buf_fini(&bx);
        sf_buf_fini(&br);
        sf_buf_fini(&bm);
        sf_buf_fini(&by);
        free_state(ops, x);
        free_state(ops, ref);
        free_state(ops, y);
        free_state(ops, yr);
        free_state(ops, m0);
        free(kept);
        free(e);
    }
}

/* Whole batches as one process() call each (contiguous rows). */
static void feed_whole(void *s, const ev *e, size_t n)
{
    sf_batch b;
    fill_batch(&b, e, n);
    sf_rows rows = {0, n, NULL, SF_ROWS_NO_SHARD};
    assert_int_equal(ops->process(s, &b, &rows), SF_OK);
    sf_batch_fini(&b);
}

/* Tens of thousands of users in calls of tens of thousands of rows (the
 * user table far larger than the caches, its probes prefetched): the state
 * must be the one the small morsels of feed() give, also after a
 * rolled-back transaction of such a call. */
static void test_many_users_large_calls(void **state)
{
    (void)state;
    const sf__agent_txn *tx = sf__agent_txn_of(ops);
    for (int nby = 0; nby < 2; nby++) {
        rng_state = 4242 + (uint64_t)nby;
        sf_agent_config cfg = make_cfg(nby, NULL);
        const size_t n = 60000;
        ev *e = random_events(n, 30000, nby == 1);
        shuffle(e, n);
        void *big = new_state(ops, &cfg), *small = new_state(ops, &cfg);
        feed_whole(big, e, n / 2);
        feed(small, e, n / 2);
        sf_buf b0 = encoded(ops, big);
        assert_int_equal(tx->begin(big), SF_OK);
        feed_whole(big, e + n / 2, n - n / 2);
        tx->rollback(big);
        sf_buf b1 = encoded(ops, big);
        assert_same_bytes(&b1, &b0);
        assert_int_equal(tx->begin(big), SF_OK);
        feed_whole(big, e + n / 2, n - n / 2);
        tx->commit(big);
        feed(small, e + n / 2, n - n / 2);
        sf_buf bb = encoded(ops, big), bs = encoded(ops, small);
        assert_same_bytes(&bb, &bs);
        sf_buf_fini(&b0);
        sf_buf_fini(&b1);
        sf_buf_fini(&bb);
        sf_buf_fini(&bs);
        free_state(ops, big);
        free_state(ops, small);
        free(e);
    }
}

/* Ties at equal end times: the end event is the one with the larger
 * latency, then the larger group key bytes, whichever state saw it. */
static void test_end_ties(void **state)
{
    (void)state;
    sf_agent_config cfg = make_cfg(1, NULL);
    const int64_t t = T0 + 10 * MIN_US;
    const ev a[] = {{1, t - 3 * MIN_US, 100, false, false, "us-east"}, {1, t, 2500, false, false, "ap-south"}};
    const ev b[] = {{1, t, 2500, false, false, "eu-west"}, {1, t, 300, false, false, "zz-last"}};
    const ev c[] = {{1, t, 0, true, false, "zzz"}};
    /* The two 2500 ms ends tie; their keys compare as canonical bytes (the
     * length comes first), which the test works out from the encoding. */
    keybytes k1 = str_key("ap-south"), k2 = str_key("eu-west");
    const char *winner = key_cmp(&k1, &k2) > 0 ? "ap-south" : "eu-west";
    char expect[64];
    snprintf(expect, sizeof expect, "\"%s\":{\"buckets\":{\"2026-01-01T00:10:00\"", winner);
    char *first = NULL;
    for (int order = 0; order < 6; order++) {
        void *sa = new_state(ops, &cfg), *sb = new_state(ops, &cfg), *sc = new_state(ops, &cfg);
        feed(sa, a, 2);
        feed(sb, b, 2);
        feed(sc, c, 1);
        void *st[3] = {sa, sb, sc};
        int p = order % 3, q = (order / 3 + p + 1) % 3, rr = 3 - p - q;
        assert_int_equal(ops->merge(st[p], st[q]), SF_OK);
        assert_int_equal(ops->merge(st[p], st[rr]), SF_OK);
        char *rep = report_text(ops, st[p]);
        /* One session of 5 events, ended slow (2500) in the winning region. */
        assert_non_null(strstr(rep, "\"sessions\":1,\"events\":5,"));
        assert_non_null(strstr(rep, "\"abandoned\":1,"));
        assert_non_null(strstr(rep, expect));
        if (first == NULL) first = rep;
        else {
            assert_string_equal(rep, first);
            free(rep);
        }
        free_state(ops, sa);
        free_state(ops, sb);
        free_state(ops, sc);
    }
    free(first);
}

/* A small case worked out by hand. gap 5 min, bucket 1 min, slow 2000:
 * user 1: 00:00 (100 ms), 00:04 (2500 ms), 00:09 (150 ms) -> one session
 *   00:00-00:09 (gap 5 min exactly joins), 3 events, ends fast in eu-west;
 * user 1: 00:20 (3000 ms) -> a session of one event at 00:20, slow;
 * user 2: 00:09:30 (2000 ms, us-east), 00:15 (null latency, us-east) ->
 *   00:15 - 00:09:30 = 5.5 min > 5: two sessions; the first slow (2000 >=
 *   2000), the second not (null latency).
 * Four sessions, 7 events, 2 abandoned; durations 540 s, 0, 0, 0. */
static void test_hand_example(void **state)
{
    (void)state;
    const ev e[] = {
        {1, T0, 100, false, false, "us-east"},
        {1, T0 + 4 * MIN_US, 2500, false, false, "us-east"},
        {1, T0 + 9 * MIN_US, 150, false, false, "eu-west"},
        {1, T0 + 20 * MIN_US, 3000, false, false, "eu-west"},
        {2, T0 + 9 * MIN_US + 30000000, 2000, false, false, "us-east"},
        {2, T0 + 15 * MIN_US, 0, true, false, "us-east"},
        {0, T0, 1, false, false, "us-east"},   /* null user: skipped */
    };
    sf_agent_config cfg = make_cfg(0, NULL);
    void *s = new_state(ops, &cfg);
    feed(s, e, 7);
    char *rep = report_text(ops, s);
    assert_string_equal(rep,
                        "{\"gap_us\":300000000,\"sessions\":4,\"events\":6,\"mean_events\":1.5,"
                        "\"mean_duration_s\":135,\"abandoned\":2,\"abandon_rate\":0.5,\"bucket_us\":60000000,"
                        "\"buckets\":{\"2026-01-01T00:09:00\":{\"sessions\":2,\"abandoned\":1,\"rate\":0.5},"
                        "\"2026-01-01T00:15:00\":{\"sessions\":1,\"abandoned\":0,\"rate\":0},"
                        "\"2026-01-01T00:20:00\":{\"sessions\":1,\"abandoned\":1,\"rate\":1}},\"skipped\":1}");
    free(rep);
    free_state(ops, s);

    /* Grouped by the region of the last event, with a 10-minute bucket. */
    opts o;
    opts_init_at(&o, 7);
    opts_add(&o, "bucket", "10m", 8);
    cfg = make_cfg(1, &o.map);
    assert_int_equal(ops->check(&cfg), SF_OK);
    s = new_state(ops, &cfg);
    feed(s, e, 7);
    rep = report_text(ops, s);
    assert_string_equal(rep,
                        "{\"gap_us\":300000000,\"sessions\":4,\"events\":6,\"mean_events\":1.5,"
                        "\"mean_duration_s\":135,\"abandoned\":2,\"abandon_rate\":0.5,\"bucket_us\":600000000,"
                        "\"groups\":{\"eu-west\":{\"buckets\":{\"2026-01-01T00:00:00\":{\"sessions\":1,\"abandoned\":0,"
                        "\"rate\":0},\"2026-01-01T00:20:00\":{\"sessions\":1,\"abandoned\":1,\"rate\":1}}},"
                        "\"us-east\":{\"buckets\":{\"2026-01-01T00:00:00\":{\"sessions\":1,\"abandoned\":1,\"rate\":1},"
                        "\"2026-01-01T00:10:00\":{\"sessions\":1,\"abandoned\":0,\"rate\":0}}}},\"skipped\":1}");
    /* Statistics per group: eu-west ends 2 sessions of 3 + 1 events. */
    keybytes k = str_key("eu-west");
    double v;
    assert_int_equal(ops->stat(s, k.b, k.n, "sessions", &v), SF_OK);
    assert_true(v == 2);
    assert_int_equal(ops->stat(s, k.b, k.n, "rows", &v), SF_OK);
    assert_true(v == 4);
    assert_int_equal(ops->stat(s, k.b, k.n, "count", &v), SF_OK);
    assert_true(v == 4);
    assert_int_equal(ops->stat(s, NULL, 0, "rows", &v), SF_OK);
    assert_true(v == 7); /* six events and the skipped row */
    assert_int_equal(ops->stat(s, NULL, 0, "count", &v), SF_OK);
    assert_true(v == 6);
    assert_int_equal(ops->stat(s, k.b, k.n, "abandoned", &v), SF_OK);
    assert_true(v == 1);
    keybytes none = str_key("mars");
    assert_int_equal(ops->stat(s, none.b, none.n, "rows", &v), SF_ERR_ARG);
    assert_int_equal(ops->stat(s, NULL, 0, "mean", &v), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), "'mean'"));
    free(rep);
    free_state(ops, s);

    /* Options: a 10-minute gap joins user 2's events, slow_ms 2600 leaves
     * only the 3000 ms end slow; an integer latency column works too. */
    opts_init_at(&o, 7);
    opts_add(&o, "gap", "10m", 8);
    opts_add(&o, "slow_ms", "2600", 9);
    opts_add(&o, "latency", "ms", 10);
    cfg = make_cfg(0, &o.map);
    assert_int_equal(ops->check(&cfg), SF_OK);
    s = new_state(ops, &cfg);
    feed(s, e, 7);
    rep = report_text(ops, s);
    assert_non_null(strstr(rep, "{\"gap_us\":600000000,\"sessions\":3,\"events\":6,\"mean_events\":2,"));
    assert_non_null(strstr(rep, "\"abandoned\":1,"));
    free(rep);
    free_state(ops, s);
}

static void test_string_users(void **state)
{
    (void)state;
    rng_state = 14;
    opts o;
    opts_init_at(&o, 7);
    opts_add(&o, "user", "name", 8);
    sf_agent_config cfg = make_cfg(1, &o.map);
    cfg.shard_key = "name";
    assert_int_equal(ops->check(&cfg), SF_OK);
    size_t n = 2500;
    ev *e = random_events(n, 80, true);
    /* A null id would print as "u0" in the name column: no null users here. */
    for (size_t i = 0; i < n; i++)
        if (e[i].user == 0) e[i].user = 3;
    void *s = new_state(ops, &cfg);
    feed_shards = 4;
    feed(s, e, n);
    feed_shards = 0;
    sf_buf enc = encoded(ops, s);
    size_t na, nb;
    uint64_t ska, skb;
    ref_sess *want = reference(e, n, GAP_US, true, true, &na, &ska);
    ref_sess *got = parse_state(&enc, GAP_US, &nb, &skb);
    assert_int_equal(skb, ska);
    assert_sessions_equal(got, nb, want, na);
    sf_buf split = split_and_merge(&cfg, e, n, 5);
    assert_same_bytes(&split, &enc);
    sf_buf_fini(&split);
    free(got);
    free(want);
    sf_buf_fini(&enc);
    free_state(ops, s);
    free(e);
}

/* The merge of two encodings (used by the reduction across ranks) against
 * decode, merge and encode: random pairs of states whose users overlap
 * (sessions that join across the two, so that group keys one side ended
 * with may end no session after the merge), string users, an empty side;
 * and every cut or flipped-byte input that decode refuses is refused. */
static void check_merge_encoded(const sf_agent_config *cfg, const sf_buf *a, const sf_buf *b)
{
    void *da = new_state(ops, cfg), *db = new_state(ops, cfg), *scratch = new_state(ops, cfg);
    assert_int_equal(ops->decode(da, a->data, a->len), SF_OK);
    assert_int_equal(ops->decode(db, b->data, b->len), SF_OK);
    assert_int_equal(ops->merge(da, db), SF_OK);
    sf_buf want = encoded(ops, da);
    sf_buf got;
    sf_buf_init(&got);
    assert_int_equal(sf__sessions_merge_encoded(scratch, a->data, a->len, b->data, b->len, &got), SF_OK);
    assert_same_bytes(&got, &want);
    sf_buf_fini(&got);
    sf_buf_fini(&want);
    free_state(ops, da);
    free_state(ops, db);
    free_state(ops, scratch);
}

static void test_merge_encoded(void **state)
{
    (void)state;
    /* A session of each side joined into one that ends in the second's
     * group: the first's group key ends no session any more and must be
     * dropped from the key list (the others renumbered). */
    {
        sf_agent_config cfg = make_cfg(1, NULL);
        ev ea[2] = {{1, T0, 1.0, false, false, "a"}, {2, T0, 1.0, false, false, "c"}};
        ev eb[1] = {{1, T0 + 10000000, 2.0, false, false, "b"}};
        void *sa = new_state(ops, &cfg), *sb = new_state(ops, &cfg);
        feed(sa, ea, 2);
        feed(sb, eb, 1);
        sf_buf a = encoded(ops, sa), b = encoded(ops, sb);
        check_merge_encoded(&cfg, &a, &b);
        check_merge_encoded(&cfg, &b, &a);
        sf_buf_fini(&a);
        sf_buf_fini(&b);
        free_state(ops, sa);
        free_state(ops, sb);
    }
    rng_state = 99;
    for (int trial = 0; trial < 16; trial++) {
        int nby = trial % 2;
        opts o;
        opts_init_at(&o, 7);
        bool strings = trial % 4 == 3;
        if (strings) opts_add(&o, "user", "name", 8);
        sf_agent_config cfg = make_cfg(nby, strings ? &o.map : NULL);
        if (strings) cfg.shard_key = "name";
        size_t n = 300 + below(3000);
        ev *e = random_events(n, trial % 3 == 0 ? 8 : 400, trial % 5 == 1);
        void *sa = new_state(ops, &cfg), *sb = new_state(ops, &cfg);
        size_t cut = trial == 5 ? 0 : below(n);
        /* Interleaved halves: the same users on both sides. */
        ev *ea = malloc(sizeof *ea * n), *eb = malloc(sizeof *eb * n);
        assert_non_null(ea);
        assert_non_null(eb);
        size_t ka = 0, kb = 0;
        for (size_t i = 0; i < n; i++) {
            if (trial == 5 || below(n) < cut) ea[ka++] = e[i];
            else eb[kb++] = e[i];
        }
        feed(sa, ea, ka);
        feed(sb, eb, kb);
        sf_buf a = encoded(ops, sa), b = encoded(ops, sb);
        check_merge_encoded(&cfg, &a, &b);
        check_merge_encoded(&cfg, &b, &a);
        check_merge_encoded(&cfg, &a, &a);
        if (trial < 4) {
            /* Damaged inputs: what decode refuses, the merge refuses. */
            void *d = new_state(ops, &cfg), *scratch = new_state(ops, &cfg);
            for (size_t len = 0; len < a.len; len += 1 + a.len / 97) {
                sf_buf out;
                sf_buf_init(&out);
                assert_int_not_equal(ops->decode(d, a.data, len), SF_OK);
                assert_int_not_equal(sf__sessions_merge_encoded(scratch, a.data, len, b.data, b.len, &out), SF_OK);
                assert_int_not_equal(sf__sessions_merge_encoded(scratch, b.data, b.len, a.data, len, &out), SF_OK);
                sf_buf_fini(&out);
            }
            for (size_t at = 0; at < a.len; at += 1 + a.len / 61) {
                uint8_t was = a.data[at];
                a.data[at] ^= 0x5a;
                bool dec_ok = ops->decode(d, a.data, a.len) == SF_OK;
                sf_buf out;
                sf_buf_init(&out);
                bool mer_ok = sf__sessions_merge_encoded(scratch, a.data, a.len, b.data, b.len, &out) == SF_OK;
                sf_buf_fini(&out);
                if (!dec_ok && mer_ok) fail_msg("byte %zu flipped: decode refuses, the merge accepts", at);
                if (dec_ok && mer_ok) check_merge_encoded(&cfg, &a, &b);
                a.data[at] = was;
            }
            free_state(ops, d);
            free_state(ops, scratch);
        }
        sf_buf_fini(&a);
        sf_buf_fini(&b);
        free_state(ops, sa);
        free_state(ops, sb);
        free(ea);
        free(eb);
        free(e);
    }
}

static void test_round_trip_and_truncation(void **state)
{
    (void)state;
    rng_state = 15;
    for (int grouped = 0; grouped <= 1; grouped++) {
        sf_agent_config cfg = make_cfg(grouped, NULL);
        ev *e = random_events(400, 12, false);
        void *s = new_state(ops, &cfg);
        feed(s, e, 400);
        sf_buf enc = encoded(ops, s);
        char *rep = report_text(ops, s);

        void *d = new_state(ops, &cfg);
        assert_int_equal(ops->decode(d, enc.data, enc.len), SF_OK);
        sf_buf again = encoded(ops, d);
        assert_same_bytes(&again, &enc);
        char *rep2 = report_text(ops, d);
        assert_string_equal(rep, rep2);
        /* Decoding replaces what the state held. */
        feed(d, e, 50);
        assert_int_equal(ops->decode(d, enc.data, enc.len), SF_OK);
        sf_buf third = encoded(ops, d);
        assert_same_bytes(&third, &enc);

        /* Every proper prefix is rejected. */
        void *t = new_state(ops, &cfg);
        for (size_t len = 0; len < enc.len; len++)
            if (ops->decode(t, enc.data, len) != SF_ERR_PARSE) fail_msg("prefix of %zu bytes accepted", len);
        /* So are trailing bytes. */
        sf_buf longer;
        sf_buf_init(&longer);
        assert_int_equal(sf_buf_append(&longer, enc.data, enc.len), SF_OK);
        assert_int_equal(sf_buf_put_u8(&longer, 0), SF_OK);
        assert_int_equal(ops->decode(t, longer.data, longer.len), SF_ERR_PARSE);
        /* A wrong version, a different gap. */
        sf_buf bad;
        sf_buf_init(&bad);
        assert_int_equal(sf_buf_append(&bad, enc.data, enc.len), SF_OK);
        bad.data[0] = 9;
        assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
        bad.data[0] = enc.data[0];
        bad.data[2] ^= 1; /* gap, i64 at offset 2 */
        assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
        sf_buf_fini(&bad);
        sf_buf_fini(&longer);
        sf_buf_fini(&again);
        sf_buf_fini(&third);
        free(rep);
        free(rep2);
        free_state(ops, t);
        free_state(ops, d);
        free_state(ops, s);
        sf_buf_fini(&enc);
        free(e);
    }

    /* Hand-made states that processing cannot produce are rejected. */
    sf_agent_config cfg = make_cfg(0, NULL);
    void *t = new_state(ops, &cfg);
    const ev two[] = {{1, T0, 100, false, false, "x"}, {1, T0 + 6 * MIN_US, 100, false, false, "x"}};
    void *s = new_state(ops, &cfg);
    feed(s, two, 2);
    sf_buf enc = encoded(ops, s);
    /* Layout: 1 + 1 + 8 + 8, keys: 8 + (4 + 0), users: 8, user key 4 + 9,
     * sessions count 8, then two sessions of 36 bytes. */
    size_t first = 1 + 1 + 8 + 8 + 8 + 4 + 8 + 4 + 9 + 8;
    assert_int_equal(enc.len, first + 2 * 36);
    assert_int_equal(ops->decode(t, enc.data, enc.len), SF_OK);
    sf_buf bad;
    sf_buf_init(&bad);
    assert_int_equal(sf_buf_append(&bad, enc.data, enc.len), SF_OK);
    /* The second session starting 5 minutes after the first: closer than the gap. */
    sf_store_u64(bad.data + first + 36, (uint64_t)(T0 + 5 * MIN_US));
    sf_store_u64(bad.data + first + 36 + 8, (uint64_t)(T0 + 5 * MIN_US));
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    memcpy(bad.data, enc.data, enc.len);
    /* A session of one event that lasts. */
    sf_store_u64(bad.data + first + 8, (uint64_t)(T0 + 1));
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    memcpy(bad.data, enc.data, enc.len);
    /* Zero events; a NaN latency key; a group rank out of range. */
    sf_store_u64(bad.data + first + 16, 0);
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    memcpy(bad.data, enc.data, enc.len);
    sf_store_u64(bad.data + first + 24, UINT64_C(0xFFF8000000000000)); /* order key of a NaN */
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    memcpy(bad.data, enc.data, enc.len);
    bad.data[first + 32] = 1;
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_ERR_PARSE);
    memcpy(bad.data, enc.data, enc.len);
    assert_int_equal(ops->decode(t, bad.data, bad.len), SF_OK);
    sf_buf_fini(&bad);
    sf_buf_fini(&enc);
    free_state(ops, s);
    free_state(ops, t);

    /* A group key that no session ends with, or keys out of order. */
    cfg = make_cfg(1, NULL);
    t = new_state(ops, &cfg);
    keybytes ka = str_key("a"), kb = str_key("b"), user = int_key(1);
    for (int variant = 0; variant < 3; variant++) {
        sf_buf h;
        sf_buf_init(&h);
        assert_int_equal(sf_buf_put_u8(&h, 1), SF_OK);
        assert_int_equal(sf_buf_put_u8(&h, 1), SF_OK);
        assert_int_equal(sf_buf_put_i64(&h, GAP_US), SF_OK);
        assert_int_equal(sf_buf_put_u64(&h, 0), SF_OK);
        assert_int_equal(sf_buf_put_u64(&h, variant == 0 ? 1 : 2), SF_OK);
        if (variant == 2) {
            assert_int_equal(sf_buf_put_str(&h, (const char *)kb.b, kb.n), SF_OK);
            assert_int_equal(sf_buf_put_str(&h, (const char *)ka.b, ka.n), SF_OK);
        } else {
            assert_int_equal(sf_buf_put_str(&h, (const char *)ka.b, ka.n), SF_OK);
            if (variant == 1) assert_int_equal(sf_buf_put_str(&h, (const char *)kb.b, kb.n), SF_OK);
        }
        assert_int_equal(sf_buf_put_u64(&h, 1), SF_OK);
        assert_int_equal(sf_buf_put_str(&h, (const char *)user.b, user.n), SF_OK);
        assert_int_equal(sf_buf_put_u64(&h, 1), SF_OK);
        assert_int_equal(sf_buf_put_i64(&h, T0), SF_OK);
        assert_int_equal(sf_buf_put_i64(&h, T0), SF_OK);
        assert_int_equal(sf_buf_put_u64(&h, 1), SF_OK);
        assert_int_equal(sf_buf_put_u64(&h, 0), SF_OK);
        assert_int_equal(sf_buf_put_u32(&h, 0), SF_OK);
        /* Only the first is what processing one event of region a gives. */
        assert_int_equal(ops->decode(t, h.data, h.len), variant == 0 ? SF_OK : SF_ERR_PARSE);
        if (variant == 0) {
            const ev one[] = {{1, T0, 0, true, false, "a"}};
            void *p1 = new_state(ops, &cfg);
            feed(p1, one, 1);
            sf_buf e1 = encoded(ops, p1);
            assert_same_bytes(&e1, &h);
            sf_buf_fini(&e1);
            free_state(ops, p1);
        }
        sf_buf_fini(&h);
    }
    free_state(ops, t);
}

static void test_check_and_options(void **state)
{
    (void)state;
    sf_agent_config cfg = make_cfg(1, NULL);
    assert_int_equal(ops->check(&cfg), SF_OK);

    const char *want = "wf.yaml:7: agent 'sess': sessions needs shard.strategy: hash with shard.key: user "
                       "(a user's sessions must never be split across shards)";
    cfg.shard_strategy = "size";
    cfg.shard_key = NULL;
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    /* Without shard.key and user: the message cannot name the column. */
    assert_non_null(strstr(sf_error_message(), "sessions needs shard.strategy: hash with shard.key:"));
    opts o;
    opts_init_at(&o, 7);
    opts_add(&o, "user", "user", 8);
    cfg.node = &o.map;
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), want);
    cfg.shard_strategy = "hash";
    cfg.shard_key = "region";
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), want);
    cfg.shard_strategy = "range";
    cfg.shard_key = "user";
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_string_equal(sf_error_message(), want);
    cfg.shard_strategy = "hash";
    assert_int_equal(ops->check(&cfg), SF_OK);

    /* Options name the file, the line, the agent and the option. */
    opts_add(&o, "gap", "soon", 9);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "wf.yaml:9: agent 'sess': option 'gap'"));
    opts_init_at(&o, 7);
    opts_add(&o, "slow_ms", "-1", 11);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "wf.yaml:11: agent 'sess': option 'slow_ms'"));
    opts_init_at(&o, 7);
    opts_add(&o, "timeout", "5m", 12);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "wf.yaml:12: agent 'sess': unknown option 'timeout'"));
    opts_init_at(&o, 7);
    opts_add(&o, "time", "region", 13);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "wf.yaml:13: agent 'sess': option 'time'"));
    assert_non_null(strstr(sf_error_message(), "string"));
    opts_init_at(&o, 7);
    opts_add(&o, "latency", "nope", 14);
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "wf.yaml:14: agent 'sess': option 'latency'"));
    assert_non_null(strstr(sf_error_message(), "no column 'nope'"));
    opts_init_at(&o, 7);
    cfg.column = "latency_ms";
    assert_int_equal(ops->check(&cfg), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "wf.yaml:7: agent 'sess': sessions takes no column:"));
    cfg.column = NULL;

    /* columns(): the user (shard.key by default), time and latency. */
    const char *names[8];
    int n = 0;
    cfg.node = NULL;
    assert_int_equal(ops->columns(&cfg, names, 8, &n), SF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "user");
    assert_string_equal(names[1], "timestamp");
    assert_string_equal(names[2], "latency_ms");
    opts_init_at(&o, 7);
    opts_add(&o, "user", "name", 8);
    opts_add(&o, "time", "ts2", 9);
    opts_add(&o, "latency", "ms", 10);
    cfg.node = &o.map;
    assert_int_equal(ops->columns(&cfg, names, 8, &n), SF_OK);
    assert_int_equal(n, 3);
    assert_string_equal(names[0], "name");
    assert_string_equal(names[1], "ts2");
    assert_string_equal(names[2], "ms");
    assert_int_equal(ops->columns(&cfg, names, 2, &n), SF_ERR_CONFIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference),
        cmocka_unit_test(test_split_invariance),
        cmocka_unit_test(test_merge_laws),
        cmocka_unit_test(test_in_place_transactions),
        cmocka_unit_test(test_transactions_without_reads),
        cmocka_unit_test(test_many_users_large_calls),
        cmocka_unit_test(test_end_ties),
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_string_users),
        cmocka_unit_test(test_merge_encoded),
        cmocka_unit_test(test_round_trip_and_truncation),
        cmocka_unit_test(test_check_and_options),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
