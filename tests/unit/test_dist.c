/* Unit tests of work units (dist/piece.c) and of one pass on one rank
 * (dist/distribute.c, linked with the serial communication layer).
 *
 * Pieces are cut from a random source batch whose values, nulls and strings
 * the test also keeps in plain arrays of its own; every parsed value is
 * compared with those arrays through the test's own row lists. A pass over a
 * synthetic input is compared with the same agents fed directly from the
 * same reader's batches, and its shard counts with counts computed here with
 * sf_shard_route. */
#define _POSIX_C_SOURCE 200809L
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "shardflow/agent.h"
#include "shardflow/dist.h"
#include "shardflow/exec.h"
#include "shardflow/io.h"
#include "shardflow/shard.h"

/* ---- the source batch ------------------------------------------------------ */

enum { C_ID, C_NAME, C_X, C_AT, C_TAG, NCOLS };
#define NROWS 700
#define NVOCAB 400 /* more than sf_piece_append sends whole: names are compacted, tags not */
#define NTAGS 5

static sf_schema schema;
static sf_batch src;

/* The test's own copy of the data. */
static int64_t ref_id[NROWS], ref_at[NROWS];
static double ref_x[NROWS];
static int ref_name[NROWS], ref_tag[NROWS]; /* indices into vocab / tags */
static bool ref_null[NCOLS][NROWS];
static char vocab[NVOCAB][320];
static const char *const tags[NTAGS] = {"red", "", "green", "blue\xc3\xa9", "a,b"};

static uint64_t rng_state;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static const char *ref_text(int col, size_t r)
{
    return col == C_NAME ? vocab[ref_name[r]] : tags[ref_tag[r]];
}

static int setup(void **st)
{
    (void)st;
    sf_schema_init(&schema);
    if (sf_schema_add(&schema, "id", SF_INT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "name", SF_STRING) != SF_OK) return -1;
    if (sf_schema_add(&schema, "x", SF_FLOAT64) != SF_OK) return -1;
    if (sf_schema_add(&schema, "at", SF_TIMESTAMP) != SF_OK) return -1;
    if (sf_schema_add(&schema, "tag", SF_STRING) != SF_OK) return -1;

    rng_state = 2024;
    for (int v = 0; v < NVOCAB; v++) {
        /* Lengths 0 to 12, and one long string, so offsets are exercised. */
        size_t len = v == 7 ? 300 : (size_t)(rnd() % 13);
        int k = snprintf(vocab[v], sizeof vocab[v], "n%d-", v);
        if (v == 3) k = 0, len = 0; /* the empty string */
        for (size_t i = 0; i < len && (size_t)k + 1 < sizeof vocab[v]; i++)
            vocab[v][k++] = (char)('a' + rnd() % 26);
        vocab[v][k] = '\0';
    }
    if (sf_batch_init(&src, &schema, NULL, NROWS) != SF_OK) return -1;
    for (size_t r = 0; r < NROWS; r++) {
        ref_id[r] = (int64_t)rnd();
        uint64_t u = rnd();
        double x = ldexp((double)(int64_t)(u >> 11) - (double)(1ull << 52), (int)(rnd() % 200) - 100);
        if (u % 50 == 1) x = -0.0;
        if (u % 50 == 2) x = NAN;
        if (u % 50 == 3) x = -INFINITY;
        ref_x[r] = x;
        ref_at[r] = INT64_C(1700000000000000) + (int64_t)(rnd() % 100000000000ull) - 50000000000;
        ref_name[r] = (int)(rnd() % NVOCAB);
        ref_tag[r] = (int)(rnd() % NTAGS);
        src.cols[C_ID].i64[r] = ref_id[r];
        src.cols[C_X].f64[r] = ref_x[r];
        src.cols[C_AT].i64[r] = ref_at[r];
        uint32_t code;
        const char *name = vocab[ref_name[r]];
        if (sf_dict_intern(&src.cols[C_NAME].dict, name, strlen(name), &code) != SF_OK) return -1;
        src.cols[C_NAME].code[r] = code;
        if (sf_dict_intern(&src.cols[C_TAG].dict, tags[ref_tag[r]], strlen(tags[ref_tag[r]]), &code) != SF_OK)
            return -1;
        src.cols[C_TAG].code[r] = code;
    }
    src.nrows = NROWS;
    if (src.cols[C_NAME].dict.n <= 256 || src.cols[C_TAG].dict.n > 256) return -1; /* both paths of sf_piece_append */
    /* Nulls in every column, about one row in six; rows 0..19 have none. */
    for (int c = 0; c < NCOLS; c++)
        for (size_t r = 20; r < NROWS; r++)
            if (rnd() % 6 == 0) {
                ref_null[c][r] = true;
                if (sf_batch_set_null(&src, c, r) != SF_OK) return -1;
            }
    /* Rows 600..609 are null in every column. */
    for (int c = 0; c < NCOLS; c++)
        for (size_t r = 600; r < 610; r++)
            if (!ref_null[c][r]) {
                ref_null[c][r] = true;
                if (sf_batch_set_null(&src, c, r) != SF_OK) return -1;
            }
    return 0;
}

static int teardown(void **st)
{
    (void)st;
    sf_batch_fini(&src);
    sf_schema_fini(&schema);
    return 0;
}

/* The pass schema of a projection: the source columns in cols[] order. */
static void pass_schema_of(const int *cols, int ncols, sf_schema *out)
{
    sf_schema_init(out);
    for (int k = 0; k < ncols; k++)
        assert_int_equal(sf_schema_add(out, schema.fields[cols[k]].name, schema.fields[cols[k]].type), SF_OK);
}

/* ---- row lists ------------------------------------------------------------- */

typedef struct piece_spec {
    uint32_t shard;
    uint32_t *rows;
    size_t n;
} piece_spec;

enum { PICK_SUBSET, PICK_SHUFFLED, PICK_REPEATS, PICK_ALL, PICK_NONE, PICK_ALL_NULL, PICK_NO_NULL, NPICKS };

static void pick_rows(piece_spec *p, int how)
{
    p->rows = malloc(sizeof *p->rows * NROWS * 2);
    assert_non_null(p->rows);
    p->n = 0;
    switch (how) {
    case PICK_SUBSET:
        for (uint32_t r = 0; r < NROWS; r++)
            if (rnd() % 3 == 0) p->rows[p->n++] = r;
        break;
    case PICK_SHUFFLED:
        for (uint32_t r = 0; r < NROWS; r++)
            if (rnd() % 2 == 0) p->rows[p->n++] = r;
        for (size_t i = p->n; i > 1; i--) {
            size_t j = rnd() % i;
            uint32_t t = p->rows[i - 1];
            p->rows[i - 1] = p->rows[j];
            p->rows[j] = t;
        }
        break;
    case PICK_REPEATS:
        for (size_t i = 0; i < 900; i++) p->rows[p->n++] = (uint32_t)(rnd() % NROWS);
        break;
    case PICK_ALL:
        for (uint32_t r = 0; r < NROWS; r++) p->rows[p->n++] = r;
        break;
    case PICK_NONE: break;
    case PICK_ALL_NULL:
        for (uint32_t r = 600; r < 610; r++) p->rows[p->n++] = r;
        break;
    case PICK_NO_NULL:
        for (uint32_t r = 0; r < 20; r += 3) p->rows[p->n++] = r;
        break;
    }
}

/* ---- checking a view ------------------------------------------------------- */

static void check_view(const sf_piece_view *v, const piece_spec *p, const int *cols, int ncols)
{
    assert_int_equal(v->shard, p->shard);
    const sf_batch *b = &v->batch;
    assert_int_equal(b->nrows, p->n);
    assert_int_equal(b->ncols, ncols);
    for (int k = 0; k < ncols; k++) {
        int c = cols[k];
        const sf_column *col = &b->cols[k];
        assert_int_equal(col->type, schema.fields[c].type);
        assert_true(col->loaded);
        size_t nulls = 0;
        for (size_t i = 0; i < p->n; i++) {
            uint32_t r = p->rows[i];
            bool null = ref_null[c][r];
            nulls += null;
            if (sf_col_is_null(col, i) != null)
                fail_msg("piece of shard %u, column %d, row %zu (source %u): null is %d, want %d", p->shard,
                         k, i, r, (int)sf_col_is_null(col, i), (int)null);
            if (col->type == SF_STRING) {
                /* Every code is valid, also for nulls. */
                assert_true(col->code[i] < col->dict.n);
            }
            if (null) continue;
            switch (col->type) {
            case SF_INT64: assert_int_equal(col->i64[i], ref_id[r]); break;
            case SF_TIMESTAMP: assert_int_equal(col->i64[i], ref_at[r]); break;
            case SF_FLOAT64: {
                uint64_t a, e;
                memcpy(&a, &col->f64[i], 8);
                memcpy(&e, &ref_x[r], 8);
                if (a != e)
                    fail_msg("row %zu (source %u): x is %.17g, want %.17g", i, r, col->f64[i], ref_x[r]);
                break;
            }
            case SF_STRING: {
                size_t len;
                const char *s = sf_dict_str(&col->dict, col->code[i], &len);
                const char *want = ref_text(c, r);
                if (len != strlen(want) || memcmp(s, want, len) != 0)
                    fail_msg("row %zu (source %u), column %d: '%.*s', want '%s'", i, r, k, (int)len, s, want);
                break;
            }
            default: fail_msg("unexpected type %d", (int)col->type);
            }
        }
        assert_int_equal(col->nulls, nulls);
        if (col->type == SF_STRING && src.cols[c].dict.n <= 256) {
            /* A small dictionary travels whole: the source's strings under
             * the source's codes. */
            const sf_column *sc = &src.cols[c];
            assert_int_equal(col->dict.n, sc->dict.n);
            for (uint32_t d = 0; d < col->dict.n; d++) {
                size_t la, lb;
                const char *a = sf_dict_str(&col->dict, d, &la);
                const char *bb = sf_dict_str(&sc->dict, d, &lb);
                if (la != lb || (la != 0 && memcmp(a, bb, la) != 0))
                    fail_msg("dictionary entry %u of column %d differs from the source's", d, k);
            }
            for (size_t i = 0; i < p->n; i++) assert_int_equal(col->code[i], sc->code[p->rows[i]]);
        } else if (col->type == SF_STRING) {
            /* Compact: exactly the distinct source strings of these rows,
             * each once, each used. */
            const sf_column *sc = &src.cols[c];
            uint8_t *seen_src = calloc(sc->dict.n + 1, 1);
            uint8_t *used = calloc(col->dict.n + 1, 1);
            assert_non_null(seen_src);
            assert_non_null(used);
            size_t distinct = 0;
            for (size_t i = 0; i < p->n; i++) {
                if (!seen_src[sc->code[p->rows[i]]]) distinct++;
                seen_src[sc->code[p->rows[i]]] = 1;
                used[col->code[i]] = 1;
            }
            assert_int_equal(col->dict.n, distinct);
            size_t bytes = 0;
            for (uint32_t d = 0; d < col->dict.n; d++) {
                if (!used[d]) fail_msg("dictionary entry %u of column %d is not used by the piece", d, k);
                size_t la, lb;
                const char *a = sf_dict_str(&col->dict, d, &la);
                bytes += la;
                for (uint32_t e = d + 1; e < col->dict.n; e++) {
                    const char *bb = sf_dict_str(&col->dict, e, &lb);
                    if (la == lb && memcmp(a, bb, la) == 0)
                        fail_msg("entries %u and %u of column %d are equal", d, e, k);
                }
            }
            assert_int_equal(col->dict.bytes_len, bytes);
            /* The same code means the same source string, within the piece. */
            for (size_t i = 0; i + 1 < p->n; i++)
                if (col->code[i] == col->code[i + 1])
                    assert_int_equal(sc->code[p->rows[i]], sc->code[p->rows[i + 1]]);
            free(seen_src);
            free(used);
        }
    }
}

static void free_specs(piece_spec *ps, size_t n)
{
    for (size_t i = 0; i < n; i++) free(ps[i].rows);
}

/* Builds a unit of the given pieces, parses it, checks every view. */
static void round_trip(const int *cols, int ncols, piece_spec *ps, size_t np, sf_buf *unit,
                       sf_piece_view **views, size_t *cap)
{
    sf_schema ps_schema;
    pass_schema_of(cols, ncols, &ps_schema);
    assert_int_equal(sf_unit_begin(unit, 0), SF_OK);
    for (size_t i = 0; i < np; i++)
        assert_int_equal(sf_piece_append(unit, &src, cols, ncols, ps[i].shard, ps[i].rows, ps[i].n), SF_OK);
    uint32_t kind = 99;
    size_t nv = 12345;
    if (sf_unit_parse(unit->data, unit->len, &ps_schema, &kind, views, &nv, cap) != SF_OK)
        fail_msg("parse: %s", sf_error_message());
    assert_int_equal(kind, 0);
    assert_int_equal(nv, np);
    assert_true(*cap >= np);
    for (size_t i = 0; i < np; i++) check_view(&(*views)[i], &ps[i], cols, ncols);
    sf_schema_fini(&ps_schema);
}

static const int proj_a[] = {C_AT, C_NAME, C_X}; /* 3 of 5, not in schema order */
static const int proj_all[] = {C_ID, C_NAME, C_X, C_AT, C_TAG};
static const int proj_rev[] = {C_TAG, C_AT, C_X, C_NAME, C_ID};
static const int proj_one[] = {C_TAG};

/* ---- tests: pieces ------------------------------------------------------------ */

/* Units of pieces packed apart (as parallel-read's sub-parts pack them)
 * and joined with sf_unit_append_pieces behind other bytes in the same
 * buffer: the joined unit parses as all their pieces in order, with the
 * first unit's round; the bytes before it are untouched. */
static void test_unit_append_pieces(void **st)
{
    (void)st;
    sf_schema ps_schema;
    pass_schema_of(proj_all, 5, &ps_schema);
    rng_state = 77;
    piece_spec ps[NPICKS];
    for (int k = 0; k < NPICKS; k++) {
        pick_rows(&ps[k], k);
        ps[k].shard = (uint32_t)k * 3u;
    }
    sf_buf parts[3], out;
    sf_buf_init(&out);
    const int split[4] = {0, 1, 1, NPICKS}; /* the second unit has no piece */
    for (int u = 0; u < 3; u++) {
        sf_buf_init(&parts[u]);
        assert_int_equal(sf_unit_begin(&parts[u], 0), SF_OK);
        sf_unit_set_round(&parts[u], 40u + (uint32_t)u);
        for (int k = split[u]; k < split[u + 1]; k++)
            assert_int_equal(sf_piece_append(&parts[u], &src, proj_all, 5, ps[k].shard, ps[k].rows, ps[k].n), SF_OK);
    }
    static const uint8_t before[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(sf_buf_append(&out, before, sizeof before), SF_OK);
    for (int u = 0; u < 3; u++)
        assert_int_equal(sf_unit_append_pieces(&out, sizeof before, parts[u].data, parts[u].len), SF_OK);
    assert_memory_equal(out.data, before, sizeof before);
    size_t want = parts[0].len + (parts[1].len - 16) + (parts[2].len - 16);
    assert_int_equal(out.len - sizeof before, want);
    sf_piece_view *views = NULL;
    size_t cap = 0, nv = 0;
    uint32_t kind = 99;
    const uint8_t *unit = out.data + sizeof before;
    if (sf_unit_parse(unit, out.len - sizeof before, &ps_schema, &kind, &views, &nv, &cap) != SF_OK)
        fail_msg("parse: %s", sf_error_message());
    assert_int_equal(kind, 0);
    assert_int_equal(nv, NPICKS);
    assert_int_equal(sf_unit_round(unit, out.len - sizeof before), 40);
    for (int k = 0; k < NPICKS; k++) check_view(&views[k], &ps[k], proj_all, 5);
    /* A malformed unit is refused. */
    assert_int_not_equal(sf_unit_append_pieces(&out, sizeof before, parts[0].data, 12), SF_OK);
    sf_unit_views_free(views, cap);
    for (int u = 0; u < 3; u++) sf_buf_fini(&parts[u]);
    sf_buf_fini(&out);
    free_specs(ps, NPICKS);
    sf_schema_fini(&ps_schema);
}

static void test_pieces_round_trip(void **st)
{
    (void)st;
    struct {
        const int *cols;
        int n;
    } projs[] = {{proj_a, 3}, {proj_all, 5}, {proj_rev, 5}, {proj_one, 1}};
    enum { NPROJ = sizeof projs / sizeof projs[0] };
    sf_buf unit;
    sf_buf_init(&unit);
    /* Views are reused from unit to unit of one pass schema (see
     * test_views_across_schemas for different schemas). */
    sf_piece_view *views[NPROJ] = {NULL};
    size_t cap[NPROJ] = {0};
    for (uint64_t seed = 1; seed <= 4; seed++) {
        rng_state = seed * 1000;
        for (size_t pj = 0; pj < NPROJ; pj++) {
            /* One piece of every kind, shards chosen at random (repeats
             * allowed, the top of the range included). */
            piece_spec ps[NPICKS];
            for (int k = 0; k < NPICKS; k++) {
                pick_rows(&ps[k], (k + (int)seed) % NPICKS);
                ps[k].shard = k == 0 ? UINT32_MAX : (uint32_t)(rnd() % 9);
            }
            round_trip(projs[pj].cols, projs[pj].n, ps, NPICKS, &unit, &views[pj], &cap[pj]);
            free_specs(ps, NPICKS);
        }
    }
    /* More pieces than the views first held: the array grows and the
     * earlier views stay right. */
    piece_spec many[19];
    for (int k = 0; k < 19; k++) {
        pick_rows(&many[k], k % NPICKS);
        many[k].shard = (uint32_t)k * 1000u;
    }
    round_trip(proj_all, 5, many, 19, &unit, &views[1], &cap[1]);
    assert_true(cap[1] >= 19);
    /* Then fewer again, reusing the views. */
    round_trip(proj_all, 5, many + 3, 2, &unit, &views[1], &cap[1]);
    free_specs(many, 19);
    for (size_t pj = 0; pj < NPROJ; pj++) sf_unit_views_free(views[pj], cap[pj]);
    sf_buf_fini(&unit);
}

/* Runs fn in a child process and fails if the child does not exit with 0:
 * for checks that may end in a sanitizer abort, which must not take the
 * other tests down with it. */
static void in_child(int (*fn)(void), const char *what)
{
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) _exit(fn());
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) fail_msg("%s: the child died of signal %d", what, WTERMSIG(status));
    if (WEXITSTATUS(status) != 0) fail_msg("%s: the child exited with %d", what, WEXITSTATUS(status));
}

/* Checks one parsed view against a piece of the first rows of src, in
 * plain C (for a child process): 0 if right. */
static int view_matches(const sf_piece_view *v, const int *cols, int ncols, size_t n)
{
    if (v->batch.ncols != ncols || v->batch.nrows != n) return 10;
    for (int k = 0; k < ncols; k++) {
        const sf_column *col = &v->batch.cols[k];
        if (col->type != schema.fields[cols[k]].type) return 11;
        for (size_t r = 0; r < n; r++) {
            if (sf_col_is_null(col, r) != ref_null[cols[k]][r]) return 12;
            if (ref_null[cols[k]][r]) continue;
            if (col->type == SF_INT64 && col->i64[r] != ref_id[r]) return 13;
            if (col->type == SF_STRING) {
                size_t len;
                const char *s = sf_dict_str(&col->dict, col->code[r], &len);
                const char *want = ref_text(cols[k], r);
                if (len != strlen(want) || memcmp(s, want, len) != 0) return 14;
            }
        }
    }
    return 0;
}

static int parse_widening_then_narrowing(void)
{
    static const uint32_t rows[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19};
    const size_t n = sizeof rows / sizeof rows[0];
    sf_schema one, all;
    pass_schema_of(proj_one, 1, &one);
    pass_schema_of(proj_all, 5, &all);
    sf_buf u1, u5;
    sf_buf_init(&u1);
    sf_buf_init(&u5);
    if (sf_unit_begin(&u1, 0) || sf_piece_append(&u1, &src, proj_one, 1, 0, rows, n)) return 2;
    if (sf_unit_begin(&u5, 0) || sf_piece_append(&u5, &src, proj_all, 5, 0, rows, n)) return 2;
    sf_piece_view *views = NULL;
    size_t cap = 0, nv;
    uint32_t kind;
    /* One column, then five, then one again, with the same views. */
    if (sf_unit_parse(u1.data, u1.len, &one, &kind, &views, &nv, &cap) != SF_OK || nv != 1) return 3;
    if (view_matches(&views[0], proj_one, 1, n)) return 4;
    if (sf_unit_parse(u5.data, u5.len, &all, &kind, &views, &nv, &cap) != SF_OK || nv != 1) return 5;
    int bad = view_matches(&views[0], proj_all, 5, n);
    if (bad) return bad;
    if (sf_unit_parse(u1.data, u1.len, &one, &kind, &views, &nv, &cap) != SF_OK || nv != 1) return 6;
    bad = view_matches(&views[0], proj_one, 1, n);
    if (bad) return 20 + bad;
    sf_unit_views_free(views, cap);
    sf_buf_fini(&u1);
    sf_buf_fini(&u5);
    sf_schema_fini(&one);
    sf_schema_fini(&all);
    return 0;
}

/* sf_unit_parse takes the pass schema on every call, and nothing in dist.h
 * ties a set of views to one schema: views made for a narrow schema must
 * still be right (and in bounds) for a wider one, and the other way. */
static void test_views_across_schemas(void **st)
{
    (void)st;
    in_child(parse_widening_then_narrowing, "views reused for a wider, then a narrower pass schema");
}

/* A unit with no pieces, and control units: zero views, the kind read back;
 * sf_unit_begin starts over whatever the buffer held. */
static void test_control_units(void **st)
{
    (void)st;
    sf_schema ps_schema;
    pass_schema_of(proj_a, 3, &ps_schema);
    sf_buf unit;
    sf_buf_init(&unit);
    sf_piece_view *views = NULL;
    size_t cap = 0;
    for (uint32_t kind = 0; kind <= 2; kind++) {
        assert_int_equal(sf_buf_append(&unit, "garbage!", 8), SF_OK);
        assert_int_equal(sf_unit_begin(&unit, kind), SF_OK);
        uint32_t got = 77;
        size_t nv = 5;
        assert_int_equal(sf_unit_parse(unit.data, unit.len, &ps_schema, &got, &views, &nv, &cap), SF_OK);
        assert_int_equal(got, kind);
        assert_int_equal(nv, 0);
    }
    sf_unit_views_free(views, cap);
    sf_buf_fini(&unit);
    sf_schema_fini(&ps_schema);
}

static sf_status parse_copy(const uint8_t *bytes, size_t n, const sf_schema *s, sf_piece_view **views,
                            size_t *cap)
{
    /* An exact-size copy, so that the sanitizer sees any read past the end. */
    uint8_t *t = malloc(n ? n : 1);
    assert_non_null(t);
    memcpy(t, bytes, n);
    uint32_t kind;
    size_t nv;
    sf_error_clear();
    sf_status rc = sf_unit_parse(t, n, s, &kind, views, &nv, cap);
    if (rc != SF_OK && sf_error_message()[0] == '\0') fail_msg("parse failed without a message");
    free(t);
    return rc;
}

/* Bad magic, every truncated prefix, trailing bytes: rejected, never read
 * past the end. */
static void test_malformed_units(void **st)
{
    (void)st;
    sf_schema ps_schema;
    pass_schema_of(proj_all, 5, &ps_schema);
    sf_buf unit;
    sf_buf_init(&unit);
    sf_piece_view *views = NULL;
    size_t cap = 0;
    rng_state = 99;
    piece_spec ps[4];
    const int picks[4] = {PICK_SUBSET, PICK_NONE, PICK_ALL_NULL, PICK_NO_NULL};
    for (int k = 0; k < 4; k++) {
        pick_rows(&ps[k], picks[k]);
        if (k == 0) ps[k].n = 40; /* keep the unit small: each prefix is parsed */
        ps[k].shard = (uint32_t)k;
    }
    round_trip(proj_all, 5, ps, 4, &unit, &views, &cap);
    assert_int_equal(parse_copy(unit.data, unit.len, &ps_schema, &views, &cap), SF_OK);

    for (size_t len = 0; len < unit.len; len++)
        if (parse_copy(unit.data, len, &ps_schema, &views, &cap) == SF_OK)
            fail_msg("a %zu-byte prefix of a %zu-byte unit was accepted", len, unit.len);

    uint8_t *bad = malloc(unit.len + 9);
    assert_non_null(bad);
    memcpy(bad, unit.data, unit.len);
    memset(bad + unit.len, 0, 9);
    assert_int_not_equal(parse_copy(bad, unit.len + 8, &ps_schema, &views, &cap), SF_OK);
    assert_int_not_equal(parse_copy(bad, unit.len + 1, &ps_schema, &views, &cap), SF_OK);
    for (int byte = 0; byte < 4; byte++) {
        memcpy(bad, unit.data, unit.len);
        bad[byte] ^= 0x20;
        assert_int_not_equal(parse_copy(bad, unit.len, &ps_schema, &views, &cap), SF_OK);
    }
    /* A control unit with a bad magic. */
    sf_buf ctl;
    sf_buf_init(&ctl);
    assert_int_equal(sf_unit_begin(&ctl, 1), SF_OK);
    ctl.data[0] ^= 1;
    assert_int_not_equal(parse_copy(ctl.data, ctl.len, &ps_schema, &views, &cap), SF_OK);
    for (size_t len = 0; len < ctl.len; len++) {
        assert_int_equal(sf_unit_begin(&ctl, 2), SF_OK);
        assert_int_not_equal(parse_copy(ctl.data, len, &ps_schema, &views, &cap), SF_OK);
    }
    sf_buf_fini(&ctl);
    free(bad);
    free_specs(ps, 4);
    sf_unit_views_free(views, cap);
    sf_buf_fini(&unit);
    sf_schema_fini(&ps_schema);
}

/* A control unit followed by stray bytes is as malformed as a data unit
 * with trailing bytes. */
static void test_control_unit_trailing_bytes(void **st)
{
    (void)st;
    sf_schema ps_schema;
    pass_schema_of(proj_a, 3, &ps_schema);
    sf_piece_view *views = NULL;
    size_t cap = 0;
    sf_buf ctl;
    sf_buf_init(&ctl);
    int accepted = 0;
    for (uint32_t kind = 1; kind <= 2; kind++) {
        assert_int_equal(sf_unit_begin(&ctl, kind), SF_OK);
        assert_int_equal(sf_buf_put_u64(&ctl, 0), SF_OK);
        if (parse_copy(ctl.data, ctl.len, &ps_schema, &views, &cap) == SF_OK) {
            print_error("a control unit of kind %u with 8 trailing bytes was accepted\n", kind);
            accepted++;
        }
    }
    sf_buf_fini(&ctl);
    sf_unit_views_free(views, cap);
    sf_schema_fini(&ps_schema);
    assert_int_equal(accepted, 0);
}

/* A unit whose row count makes rows * 8 (or rows * 4) wrap around must not
 * pass the length checks: a receiver would read far past the message. The
 * unit is a real one-piece unit of zero rows with the row count patched
 * (piece layout: dist/piece.c). */
static void test_huge_row_count_rejected(void **st)
{
    (void)st;
    const int one_int[] = {C_ID};
    const int one_str[] = {C_NAME};
    struct {
        const int *cols;
        uint64_t rows;
    } cases[] = {{one_int, (uint64_t)1 << 61}, {one_str, (uint64_t)1 << 62}};
    int accepted = 0;
    for (size_t i = 0; i < 2; i++) {
        sf_schema s1;
        pass_schema_of(cases[i].cols, 1, &s1);
        sf_buf unit;
        sf_buf_init(&unit);
        assert_int_equal(sf_unit_begin(&unit, 0), SF_OK);
        assert_int_equal(sf_piece_append(&unit, &src, cases[i].cols, 1, 0, NULL, 0), SF_OK);
        sf_piece_view *views = NULL;
        size_t cap = 0;
        assert_int_equal(parse_copy(unit.data, unit.len, &s1, &views, &cap), SF_OK);
        sf_store_u64(unit.data + 16 + 8, cases[i].rows);
        sf_status rc = parse_copy(unit.data, unit.len, &s1, &views, &cap);
        if (rc == SF_OK) {
            print_error("a %zu-byte unit claiming %llu rows of %s was accepted\n", unit.len,
                        (unsigned long long)cases[i].rows, sf_type_name(s1.fields[0].type));
            accepted++;
        }
        sf_unit_views_free(views, cap);
        sf_buf_fini(&unit);
        sf_schema_fini(&s1);
    }
    assert_int_equal(accepted, 0);
}

/* A piece whose columns do not match the pass schema (type or count). */
static void test_schema_mismatch(void **st)
{
    (void)st;
    sf_buf unit;
    sf_buf_init(&unit);
    sf_piece_view *views = NULL;
    size_t cap = 0;
    rng_state = 5;
    piece_spec ps[2];
    pick_rows(&ps[0], PICK_SUBSET);
    pick_rows(&ps[1], PICK_NO_NULL);
    ps[0].shard = 1;
    ps[1].shard = 2;
    round_trip(proj_all, 5, ps, 2, &unit, &views, &cap);
    const sf_type types[] = {SF_INT64, SF_FLOAT64, SF_STRING, SF_TIMESTAMP};
    for (int k = 0; k < 5; k++)
        for (int t = 0; t < 4; t++) {
            if (types[t] == schema.fields[proj_all[k]].type) continue;
            sf_schema other;
            sf_schema_init(&other);
            for (int j = 0; j < 5; j++)
                assert_int_equal(sf_schema_add(&other, schema.fields[proj_all[j]].name,
                                               j == k ? types[t] : schema.fields[proj_all[j]].type),
                                 SF_OK);
            if (parse_copy(unit.data, unit.len, &other, &views, &cap) == SF_OK)
                fail_msg("column %d of type %s parsed as %s", k,
                         sf_type_name(schema.fields[proj_all[k]].type), sf_type_name(types[t]));
            sf_schema_fini(&other);
        }
    /* Fewer and more columns than the pieces carry. */
    sf_schema four, six;
    pass_schema_of(proj_all, 4, &four);
    pass_schema_of(proj_all, 5, &six);
    assert_int_equal(sf_schema_add(&six, "extra", SF_INT64), SF_OK);
    assert_int_not_equal(parse_copy(unit.data, unit.len, &four, &views, &cap), SF_OK);
    assert_int_not_equal(parse_copy(unit.data, unit.len, &six, &views, &cap), SF_OK);
    sf_schema_fini(&four);
    sf_schema_fini(&six);
    free_specs(ps, 2);
    sf_unit_views_free(views, cap);
    sf_buf_fini(&unit);
}

/* ---- tests: views of contiguous runs ------------------------------------------ */

/* A random numeric batch for the run views (a fresh one in b): columns of
 * the three number types, each with its own null pattern (none, a validity
 * array without nulls, sparse nulls, all null, blocks of nulls), and the
 * test's own record of the nulls (runs_null). */
#define RUNS_COLS 6
#define RUNS_CAP 1500
static bool runs_null[RUNS_COLS][RUNS_CAP];

enum { NULLS_NONE, NULLS_ARRAY_ONLY, NULLS_SPARSE, NULLS_ALL, NULLS_BLOCKS, NNULL_KINDS };

static void runs_batch(sf_batch *b, const sf_schema *s, size_t n)
{
    assert_int_equal(sf_batch_init(b, s, NULL, RUNS_CAP), SF_OK);
    for (int c = 0; c < s->ncols; c++) {
        sf_column *col = &b->cols[c];
        for (size_t r = 0; r < n; r++) {
            uint64_t u = rnd();
            if (s->fields[c].type == SF_FLOAT64) {
                if (u % 17 == 0) u = 0x8000000000000000ull;           /* -0.0 */
                else if (u % 17 == 1) u = 0x7ff8000000000123ull;      /* NaN with a payload */
                memcpy(&col->f64[r], &u, 8);
            } else {
                col->i64[r] = u % 13 == 0 ? INT64_MIN : (int64_t)u;
            }
        }
        int kind = (int)(rnd() % NNULL_KINDS);
        for (size_t r = 0; r < n; r++) runs_null[c][r] = false;
        if (kind == NULLS_ARRAY_ONLY) assert_int_equal(sf_batch_enable_valid(b, c), SF_OK);
        for (size_t r = 0; r < n; r++) {
            bool null = kind == NULLS_SPARSE ? rnd() % 9 == 0
                        : kind == NULLS_ALL  ? true
                        : kind == NULLS_BLOCKS ? (r / 64) % 3 == 1
                                               : false;
            if (!null) continue;
            runs_null[c][r] = true;
            assert_int_equal(sf_batch_set_null(b, c, r), SF_OK);
            /* Whatever lies under a null travels as it is. */
            if (s->fields[c].type == SF_FLOAT64) col->f64[r] = (double)r + 0.5;
            else col->i64[r] = (int64_t)r * 3 - 7;
        }
    }
    b->nrows = n;
}

/* Random runs start[0..k]: 0, ascending cut points (repeats make empty
 * shards), n. */
static void runs_cuts(size_t *start, int k, size_t n)
{
    start[0] = 0;
    start[k] = n;
    for (int s = 1; s < k; s++) start[s] = n ? (size_t)(rnd() % (n + 1)) : 0;
    for (int s = 1; s < k; s++) /* insertion sort of the inner cuts */
        for (int t = s; t > 1 && start[t - 1] > start[t]; t--) {
            size_t x = start[t];
            start[t] = start[t - 1];
            start[t - 1] = x;
        }
    if (k > 2 && rnd() % 2) start[1] = 0;           /* an empty first shard */
    if (k > 2 && rnd() % 2) start[k - 1] = n;       /* an empty last shard */
}


/* Pieces whose string columns refer to stable dictionaries (copies of the
 * source's, with an id, as a reader's sf_reader_stable_dict gives): each row
 * reads back its own source string through the receiver's dictionary, the
 * view's dictionary carries the stable id, and the unit is exactly the size
 * of codes alone (no dictionary bytes). A receiver without the dictionary, or
 * with one of another size, rejects the unit; a code outside the stable
 * dictionary is refused when packing. */
static void test_stable_dict_pieces(void **st)
{
    (void)st;
    sf_dict sname, stag;
    sf_dict_init(&sname);
    sf_dict_init(&stag);
    assert_int_equal(sf_dict_copy(&sname, &src.cols[C_NAME].dict), SF_OK);
    assert_int_equal(sf_dict_copy(&stag, &src.cols[C_TAG].dict), SF_OK);
    sname.stable_id = sf_dict_stable_id();
    stag.stable_id = sf_dict_stable_id();
    assert_true(sname.stable_id != 0 && stag.stable_id != 0 && sname.stable_id != stag.stable_id);
    /* proj_all = {id, name, x, at, tag}: the table is by pass column. */
    const sf_dict *table[5] = {NULL, &sname, NULL, NULL, &stag};
    sf_schema ps_schema;
    pass_schema_of(proj_all, 5, &ps_schema);
    rng_state = 4242;
    piece_spec ps[NPICKS];
    for (int h = 0; h < NPICKS; h++) {
        ps[h].shard = (uint32_t)(h * 3 + 1);
        pick_rows(&ps[h], h);
    }
    sf_buf unit;
    sf_buf_init(&unit);
    assert_int_equal(sf_unit_begin(&unit, 0), SF_OK);
    size_t want_len = 16;
    for (int h = 0; h < NPICKS; h++) {
        assert_int_equal(sf_piece_append_ex(&unit, &src, proj_all, 5, ps[h].shard, ps[h].rows, ps[h].n, table),
                         SF_OK);
        want_len += 16;
        for (int k = 0; k < 5; k++) {
            int c = proj_all[k];
            size_t n = ps[h].n, nulls = 0;
            for (size_t i = 0; i < n; i++) nulls += ref_null[c][ps[h].rows[i]];
            want_len += 16;
            want_len += schema.fields[c].type == SF_STRING ? 8 + (n * 4 + 7) / 8 * 8 : n * 8;
            if (nulls) want_len += (n + 7) / 8 * 8;
        }
    }
    assert_int_equal(unit.len, want_len);

    sf_piece_view *views = NULL;
    size_t nv = 0, cap = 0;
    uint32_t kind = 99;
    if (sf_unit_parse_ex(unit.data, unit.len, &ps_schema, table, &kind, &views, &nv, &cap) != SF_OK)
        fail_msg("parse: %s", sf_error_message());
    assert_int_equal(kind, 0);
    assert_int_equal(nv, NPICKS);
    for (int h = 0; h < NPICKS; h++) {
        const sf_batch *b = &views[h].batch;
        assert_int_equal(views[h].shard, ps[h].shard);
        assert_int_equal(b->nrows, ps[h].n);
        for (int k = 0; k < 5; k++) {
            int c = proj_all[k];
            const sf_column *col = &b->cols[k];
            if (col->type == SF_STRING) {
                const sf_dict *sd = table[k];
                assert_int_equal(col->dict.n, sd->n);
                assert_true(col->dict.stable_id == sd->stable_id);
            }
            for (size_t i = 0; i < ps[h].n; i++) {
                uint32_t r = ps[h].rows[i];
                assert_int_equal(sf_col_is_null(col, i), ref_null[c][r]);
                if (ref_null[c][r]) continue;
                if (col->type == SF_STRING) {
                    size_t len;
                    const char *sv = sf_dict_str(&col->dict, col->code[i], &len);
                    const char *want = ref_text(c, r);
                    if (len != strlen(want) || memcmp(sv, want, len) != 0)
                        fail_msg("piece %d row %zu column %d: '%.*s', want '%s'", h, i, k, (int)len, sv, want);
                } else if (col->type == SF_FLOAT64) {
                    assert_memory_equal(&col->f64[i], &ref_x[r], 8);
                } else {
                    assert_int_equal(col->i64[i], c == C_ID ? ref_id[r] : ref_at[r]);
                }
            }
        }
    }

    /* No dictionary on the receiving side, or one of another size. */
    assert_int_equal(sf_unit_parse(unit.data, unit.len, &ps_schema, &kind, &views, &nv, &cap), SF_ERR_INTERNAL);
    assert_non_null(strstr(sf_error_message(), "stable dictionary"));
    sf_dict other;
    sf_dict_init(&other);
    assert_int_equal(sf_dict_copy(&other, &src.cols[C_NAME].dict), SF_OK);
    uint32_t code;
    assert_int_equal(sf_dict_intern(&other, "not in the source", 17, &code), SF_OK);
    other.stable_id = sf_dict_stable_id();
    const sf_dict *wrong[5] = {NULL, &other, NULL, NULL, &stag};
    assert_int_equal(sf_unit_parse_ex(unit.data, unit.len, &ps_schema, wrong, &kind, &views, &nv, &cap),
                     SF_ERR_INTERNAL);
    assert_non_null(strstr(sf_error_message(), "strings"));

    /* A stable dictionary that lacks some of the source's codes. */
    sf_dict part;
    sf_dict_init(&part);
    for (uint32_t d = 0; d < 10; d++) {
        size_t len;
        const char *sv = sf_dict_str(&src.cols[C_NAME].dict, d, &len);
        assert_int_equal(sf_dict_intern(&part, sv, len, &code), SF_OK);
    }
    part.stable_id = sf_dict_stable_id();
    const sf_dict *partial[1] = {&part};
    static const int only_name[] = {C_NAME};
    uint32_t rows[2] = {0, 0};
    for (uint32_t r = 0; r < NROWS && rows[1] == 0; r++)
        if (src.cols[C_NAME].code[r] >= 10) rows[1] = r;
    assert_true(src.cols[C_NAME].code[rows[1]] >= 10);
    sf_buf u2;
    sf_buf_init(&u2);
    assert_int_equal(sf_unit_begin(&u2, 0), SF_OK);
    assert_int_equal(sf_piece_append_ex(&u2, &src, only_name, 1, 0, rows, 2, partial), SF_ERR_INTERNAL);
    assert_non_null(strstr(sf_error_message(), "outside its stable dictionary"));

    sf_buf_fini(&u2);
    sf_dict_fini(&part);
    sf_dict_fini(&other);
    sf_unit_views_free(views, cap);
    sf_buf_fini(&unit);
    free_specs(ps, NPICKS);
    sf_schema_fini(&ps_schema);
    sf_dict_fini(&sname);
    sf_dict_fini(&stag);
}

/* Pieces of a column whose dictionary is far larger than the piece (a
 * round's client addresses cut into shards' pieces): small pieces are
 * renumbered through a small table, larger ones through arrays as long as
 * the dictionary; both must give exactly the strings the piece uses, each
 * once, numbered in order of first appearance, the rows' strings intact. */
static void test_large_dict_pieces(void **st)
{
    (void)st;
    enum { NV = 20000, NR = 3000 };
    sf_schema sch;
    sf_schema_init(&sch);
    assert_int_equal(sf_schema_add(&sch, "name", SF_STRING), SF_OK);
    sf_batch b;
    assert_int_equal(sf_batch_init(&b, &sch, NULL, NR), SF_OK);
    rng_state = 31337;
    char text[32];
    uint32_t code;
    for (uint32_t v = 0; v < NV; v++) {
        int len = snprintf(text, sizeof text, "10.%u.%u", v % 251, v * 7919u);
        assert_int_equal(sf_dict_intern(&b.cols[0].dict, text, (size_t)len, &code), SF_OK);
    }
    for (size_t r = 0; r < NR; r++) b.cols[0].code[r] = (uint32_t)(rnd() % 97 < 30 ? rnd() % 20 : rnd() % NV);
    b.nrows = NR;
    static const size_t sizes[] = {1, 2, 37, 300, NV / 8, NV / 8 + 1, NR};
    static const int cols[] = {0};
    uint32_t *rows = malloc(NR * sizeof *rows);
    assert_non_null(rows);
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        size_t n = sizes[k];
        for (size_t i = 0; i < n; i++) rows[i] = (uint32_t)(rnd() % NR);
        sf_buf unit;
        sf_buf_init(&unit);
        assert_int_equal(sf_unit_begin(&unit, 0), SF_OK);
        assert_int_equal(sf_piece_append(&unit, &b, cols, 1, 7, rows, n), SF_OK);
        sf_piece_view *views = NULL;
        size_t nv = 0, cap = 0;
        uint32_t kind;
        assert_int_equal(sf_unit_parse(unit.data, unit.len, &sch, &kind, &views, &nv, &cap), SF_OK);
        assert_int_equal(nv, 1);
        const sf_column *pc = &views[0].batch.cols[0];
        assert_int_equal(views[0].batch.nrows, n);
        uint32_t next = 0;
        uint8_t *seen = calloc(NV, 1);
        assert_non_null(seen);
        for (size_t i = 0; i < n; i++) {
            size_t la, lb;
            const char *a = sf_dict_str(&pc->dict, pc->code[i], &la);
            const char *e = sf_dict_str(&b.cols[0].dict, b.cols[0].code[rows[i]], &lb);
            if (la != lb || memcmp(a, e, la) != 0) fail_msg("size %zu row %zu: '%.*s', want '%.*s'", n, i, (int)la, a, (int)lb, e);
            /* First appearance: a source string new to the piece gets the next code. */
            if (!seen[b.cols[0].code[rows[i]]]) {
                seen[b.cols[0].code[rows[i]]] = 1;
                assert_int_equal(pc->code[i], next);
                next++;
            } else {
                assert_true(pc->code[i] < next);
            }
        }
        assert_int_equal(pc->dict.n, next);
        free(seen);
        sf_unit_views_free(views, cap);
        sf_buf_fini(&unit);
    }
    free(rows);
    sf_batch_fini(&b);
    sf_schema_fini(&sch);
}

/* sf_dict_copy: the copy holds the same strings under the same codes,
 * replaces what the destination held, and is indexed (find and intern work
 * on it as on a dictionary built by interning), also when the source is an
 * unindexed view such as a received work unit's. */
static void check_copy(const sf_dict *d, char (*strs)[24], size_t n)
{
    assert_int_equal(d->n, n);
    for (size_t k = 0; k < n; k++) {
        size_t len;
        const char *got = sf_dict_str(d, (uint32_t)k, &len);
        assert_int_equal(len, strlen(strs[k]));
        if (len) assert_memory_equal(got, strs[k], len);
        uint32_t code = UINT32_MAX;
        assert_true(sf_dict_find(d, strs[k], strlen(strs[k]), &code));
        assert_int_equal(code, k);
    }
}

static void test_dict_copy(void **st)
{
    (void)st;
    enum { N = 1500 };
    static char strs[N + 1][24];
    rng_state = 99;
    sf_dict from, dst;
    sf_dict_init(&from);
    sf_dict_init(&dst);
    for (size_t k = 0; k < N; k++) {
        if (k == 5) strs[k][0] = '\0'; /* the empty string */
        else snprintf(strs[k], sizeof strs[k], "s%zu-%llx", k, (unsigned long long)(rnd() % 100000));
        uint32_t code;
        assert_int_equal(sf_dict_intern(&from, strs[k], strlen(strs[k]), &code), SF_OK);
        assert_int_equal(code, k);
    }
    /* The destination holds other strings first. */
    uint32_t code;
    for (int k = 0; k < 40; k++) {
        char other[16];
        int len = snprintf(other, sizeof other, "other%d", k);
        assert_int_equal(sf_dict_intern(&dst, other, (size_t)len, &code), SF_OK);
    }
    assert_int_equal(sf_dict_copy(&dst, &from), SF_OK);
    check_copy(&dst, strs, N);
    assert_false(sf_dict_find(&dst, "other3", 6, &code));
    /* Interning into the copy: an existing string keeps its code, a new one comes next. */
    assert_int_equal(sf_dict_intern(&dst, strs[700], strlen(strs[700]), &code), SF_OK);
    assert_int_equal(code, 700);
    snprintf(strs[N], sizeof strs[N], "new-one");
    assert_int_equal(sf_dict_intern(&dst, strs[N], strlen(strs[N]), &code), SF_OK);
    assert_int_equal(code, N);
    check_copy(&dst, strs, N + 1);
    check_copy(&from, strs, N); /* the source is untouched */

    /* From an unindexed view of the same arrays. */
    sf_dict view;
    memset(&view, 0, sizeof view);
    view.n = from.n;
    view.off = from.off;
    view.bytes = from.bytes;
    view.bytes_len = from.bytes_len;
    sf_dict fresh;
    sf_dict_init(&fresh);
    assert_int_equal(sf_dict_copy(&fresh, &view), SF_OK);
    check_copy(&fresh, strs, N);
    assert_int_equal(sf_dict_intern(&fresh, strs[N], strlen(strs[N]), &code), SF_OK);
    assert_int_equal(code, N);

    /* An empty source empties the destination. */
    sf_dict empty;
    sf_dict_init(&empty);
    assert_int_equal(sf_dict_copy(&fresh, &empty), SF_OK);
    assert_int_equal(fresh.n, 0);
    assert_false(sf_dict_find(&fresh, strs[1], strlen(strs[1]), &code));
    sf_dict_fini(&fresh);
    sf_dict_fini(&dst);
    sf_dict_fini(&from);
}

/* sf_unit_views_of_runs against sf_piece_append + sf_unit_parse of the same
 * rows (shard s: rows start[s] .. start[s + 1] as an order array): the same
 * pieces, column by column (type, rows, nulls, validity present exactly when
 * the piece has a null, every value bit for bit, every validity byte), the
 * views borrowing the batch's arrays; empty shards left out, shards in
 * ascending order; the nulls also checked against the test's own record.
 * A string column is refused with SF_ERR_ARG. */
/* sf_valid_nulls against a byte-by-byte count: lengths around its 8-byte
 * steps and its 255-word blocks, unaligned starts, bytes of any value (any
 * nonzero byte is present), all-present and all-null masks. */
static void test_valid_nulls(void **st)
{
    (void)st;
    const size_t lens[] = {0, 1, 7, 8, 9, 63, 64, 65, 2039, 2040, 2041, 2047, 4080, 4081, 10007, 65536};
    uint8_t *buf = malloc(65536 + 16);
    assert_non_null(buf);
    uint64_t x = 88172645463325252ull;
    for (int fill = 0; fill < 5; fill++) {
        for (size_t i = 0; i < 65536 + 16; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            uint8_t r = (uint8_t)(x >> 24);
            buf[i] = fill == 0 ? (uint8_t)(r % 3 != 0)       /* 0/1, a third null */
                     : fill == 1 ? (uint8_t)(r % 97 == 0 ? 0 : r | 1) /* any nonzero, few nulls */
                     : fill == 2 ? 0xFF                       /* every lane at its limit */
                     : fill == 3 ? 0                          /* all null */
                                 : r;                         /* anything */
        }
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            for (size_t off = 0; off < 8; off += 3) {
                size_t want = 0;
                for (size_t i = 0; i < lens[li]; i++) want += buf[off + i] == 0;
                assert_int_equal(sf_valid_nulls(buf + off, lens[li]), want);
            }
        }
    }
    free(buf);
}

static void test_views_of_runs(void **st)
{
    (void)st;
    sf_schema s;
    sf_schema_init(&s);
    static const sf_type types[RUNS_COLS] = {SF_INT64, SF_FLOAT64, SF_TIMESTAMP,
                                             SF_FLOAT64, SF_INT64, SF_TIMESTAMP};
    for (int c = 0; c < RUNS_COLS; c++) {
        char name[8];
        snprintf(name, sizeof name, "c%d", c);
        assert_int_equal(sf_schema_add(&s, name, types[c]), SF_OK);
    }
    sf_batch b;
    sf_buf unit;
    sf_buf_init(&unit);
    sf_piece_view *views = NULL, *parsed = NULL;
    size_t vcap = 0, pcap = 0;
    uint32_t *rows = malloc(RUNS_CAP * sizeof *rows);
    assert_non_null(rows);
    rng_state = 4242;
    size_t pieces_seen = 0, null_pieces = 0, clean_pieces = 0, empty_shards = 0;
    for (int trial = 0; trial < 200; trial++) {
        size_t n = trial == 0 ? 0 : trial == 1 ? 1 : (size_t)(rnd() % RUNS_CAP) + 1;
        runs_batch(&b, &s, n);
        /* Pass columns: a random subset in random order (repeats allowed). */
        int cols[RUNS_COLS + 2], ncols = (int)(rnd() % (RUNS_COLS + 2)) + 1;
        for (int k = 0; k < ncols; k++) cols[k] = (int)(rnd() % RUNS_COLS);
        sf_schema ps;
        sf_schema_init(&ps);
        for (int k = 0; k < ncols; k++) {
            char name[8];
            snprintf(name, sizeof name, "p%d", k);
            assert_int_equal(sf_schema_add(&ps, name, types[cols[k]]), SF_OK);
        }
        int k = trial == 2 ? 1 : (int)(rnd() % 40) + 1;
        size_t start[41];
        runs_cuts(start, k, n);

        size_t nv = 777;
        if (sf_unit_views_of_runs(&b, cols, ncols, start, k, &views, &nv, &vcap) != SF_OK)
            fail_msg("trial %d: %s", trial, sf_error_message());
        assert_int_equal(sf_unit_begin(&unit, 0), SF_OK);
        size_t want_nv = 0;
        for (int sh = 0; sh < k; sh++) {
            size_t r0 = start[sh], m = start[sh + 1] - start[sh];
            if (m == 0) {
                empty_shards++;
                continue;
            }
            for (size_t i = 0; i < m; i++) rows[i] = (uint32_t)(r0 + i);
            assert_int_equal(sf_piece_append(&unit, &b, cols, ncols, (uint32_t)sh, rows, m), SF_OK);
            want_nv++;
        }
        uint32_t kind = 99;
        size_t np = 555;
        if (sf_unit_parse(unit.data, unit.len, &ps, &kind, &parsed, &np, &pcap) != SF_OK)
            fail_msg("trial %d: parse: %s", trial, sf_error_message());
        assert_int_equal(np, want_nv);
        assert_int_equal(nv, want_nv);
        int last_shard = -1;
        for (size_t v = 0; v < nv; v++) {
            const sf_piece_view *a = &views[v], *e = &parsed[v];
            assert_int_equal(a->shard, e->shard);
            assert_true((int)a->shard > last_shard); /* ascending, each once */
            last_shard = (int)a->shard;
            size_t r0 = start[a->shard], m = start[a->shard + 1] - r0;
            assert_true(m > 0);
            assert_int_equal(a->batch.nrows, m);
            assert_int_equal(e->batch.nrows, m);
            assert_int_equal(a->batch.ncols, ncols);
            pieces_seen++;
            for (int c = 0; c < ncols; c++) {
                const sf_column *ac = &a->batch.cols[c], *ec = &e->batch.cols[c], *sc = &b.cols[cols[c]];
                assert_int_equal(ac->type, ec->type);
                assert_int_equal(ac->type, types[cols[c]]);
                assert_true(ac->loaded);
                size_t nulls = 0;
                for (size_t i = 0; i < m; i++) nulls += runs_null[cols[c]][r0 + i];
                assert_int_equal(ec->nulls, nulls);
                assert_int_equal(ac->nulls, nulls);
                assert_int_equal(ac->valid == NULL, ec->valid == NULL);
                assert_int_equal(ac->valid == NULL, nulls == 0);
                if (nulls) {
                    null_pieces++;
                    assert_memory_equal(ac->valid, ec->valid, m);
                    assert_ptr_equal(ac->valid, sc->valid + r0);
                    for (size_t i = 0; i < m; i++)
                        assert_int_equal(ac->valid[i] == 0, runs_null[cols[c]][r0 + i]);
                } else {
                    clean_pieces++;
                }
                if (ac->type == SF_FLOAT64) {
                    assert_memory_equal(ac->f64, ec->f64, m * sizeof(double));
                    assert_ptr_equal(ac->f64, sc->f64 + r0);
                    assert_null(ac->i64);
                } else {
                    assert_memory_equal(ac->i64, ec->i64, m * sizeof(int64_t));
                    assert_ptr_equal(ac->i64, sc->i64 + r0);
                    assert_null(ac->f64);
                }
            }
        }
        sf_schema_fini(&ps);
        sf_batch_fini(&b);
    }
    /* The trials reached every case. */
    assert_true(pieces_seen > 1000 && null_pieces > 100 && clean_pieces > 100 && empty_shards > 100);

    /* A string column anywhere among the pass columns is refused. */
    sf_schema ws;
    sf_schema_init(&ws);
    assert_int_equal(sf_schema_add(&ws, "n", SF_INT64), SF_OK);
    assert_int_equal(sf_schema_add(&ws, "s", SF_STRING), SF_OK);
    sf_batch wb;
    assert_int_equal(sf_batch_init(&wb, &ws, NULL, 16), SF_OK);
    for (size_t r = 0; r < 10; r++) {
        wb.cols[0].i64[r] = (int64_t)r;
        assert_int_equal(sf_dict_intern(&wb.cols[1].dict, "a", 1, &wb.cols[1].code[r]), SF_OK);
    }
    wb.nrows = 10;
    static const size_t wstart[3] = {0, 4, 10};
    static const int with_str[3][2] = {{1, 0}, {0, 1}, {1, 1}};
    for (int t = 0; t < 3; t++) {
        size_t nv = 99;
        sf_error_clear();
        assert_int_equal(sf_unit_views_of_runs(&wb, with_str[t], 2, wstart, 2, &views, &nv, &vcap),
                         SF_ERR_ARG);
        assert_int_equal(nv, 0);
        assert_true(sf_error_message()[0] != '\0');
    }
    /* ... while the number column alone is fine. */
    size_t nv = 0;
    static const int num_only[1] = {0};
    assert_int_equal(sf_unit_views_of_runs(&wb, num_only, 1, wstart, 2, &views, &nv, &vcap), SF_OK);
    assert_int_equal(nv, 2);
    assert_int_equal(views[1].shard, 1);
    assert_int_equal(views[1].batch.nrows, 6);
    assert_int_equal(views[1].batch.cols[0].i64[0], 4);
    sf_batch_fini(&wb);
    sf_schema_fini(&ws);

    free(rows);
    sf_unit_views_free(views, vcap);
    sf_unit_views_free(parsed, pcap);
    sf_buf_fini(&unit);
    sf_schema_fini(&s);
}

/* ---- tests: a pass on one rank -------------------------------------------------- */

#define PASS_ROWS 50000
#define PASS_K 7
#define NAGENTS 5

typedef struct pass_fixture {
    sf_input_config ic;
    sf_reader *rd;
    const sf_schema *rs;
    sf_shard_plan *plan;
    int pass_cols[6];
    int npass;
    sf_schema pass;
    int user_col;
    /* Agents in pass-schema indices and in reader-schema indices. */
    sf_agent_config cfg[NAGENTS], rcfg[NAGENTS];
    int by[NAGENTS][2], rby[NAGENTS][2];
    char *want_report;
    uint64_t want_shard_rows[PASS_K];
} pass_fixture;

static pass_fixture F;

static char *json_text(sf_json *j)
{
    assert_int_equal(j->rc, SF_OK);
    char *t = malloc(j->out.len + 1);
    assert_non_null(t);
    memcpy(t, j->out.data, j->out.len);
    t[j->out.len] = '\0';
    return t;
}

/* The second path: every agent fed directly from the reader's batches, and
 * the shard of every row from sf_shard_route. */
static void reference_pass(void)
{
    const sf_agent_ops *ops = sf_agent_find("stats");
    void *states[NAGENTS];
    for (int a = 0; a < NAGENTS; a++) {
        states[a] = calloc(1, ops->state_size);
        assert_non_null(states[a]);
        assert_int_equal(ops->init(states[a], &F.rcfg[a]), SF_OK);
    }
    memset(F.want_shard_rows, 0, sizeof F.want_shard_rows);
    assert_int_equal(sf_reader_rewind(F.rd), SF_OK);
    sf_batch b;
    assert_int_equal(sf_reader_batch_init(F.rd, &b), SF_OK);
    uint32_t *shard = malloc(sizeof *shard * 65536);
    assert_non_null(shard);
    uint64_t rows = 0;
    for (;;) {
        bool eof = false;
        assert_int_equal(sf_reader_next(F.rd, &b, &eof), SF_OK);
        if (eof) break;
        assert_true(b.nrows <= 65536);
        rows += b.nrows;
        for (int a = 0; a < NAGENTS; a++) assert_int_equal(ops->process(states[a], &b, &(sf_rows){0, b.nrows, NULL, SF_ROWS_NO_SHARD}), SF_OK);
        assert_int_equal(sf_shard_route(F.plan, &b, shard), SF_OK);
        for (size_t r = 0; r < b.nrows; r++) {
            assert_true(shard[r] < PASS_K);
            F.want_shard_rows[shard[r]]++;
        }
    }
    assert_int_equal(rows, PASS_ROWS);
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    for (int a = 0; a < NAGENTS; a++) {
        sf_json_key(&j, F.rcfg[a].id);
        assert_int_equal(ops->report(states[a], &j), SF_OK);
        ops->destroy(states[a]);
        free(states[a]);
    }
    sf_json_obj_end(&j);
    F.want_report = json_text(&j);
    sf_json_fini(&j);
    free(shard);
    sf_batch_fini(&b);
}

static int pass_setup(void **st)
{
    (void)st;
    memset(&F, 0, sizeof F);
    sf_input_config_defaults(&F.ic);
    F.ic.format = SF_INPUT_SYNTHETIC;
    F.ic.generator = strdup("requests");
    F.ic.rows = PASS_ROWS;
    F.ic.batch_rows = 3000;
    if (F.ic.generator == NULL || sf_reader_open(&F.ic, &F.rd) != SF_OK) return -1;
    F.rs = sf_reader_schema(F.rd);
    const char *names[] = {"latency_ms", "service", "region", "bytes", "revenue", "timestamp"};
    F.npass = 6;
    sf_schema_init(&F.pass);
    for (int k = 0; k < F.npass; k++) {
        F.pass_cols[k] = sf_schema_find(F.rs, names[k]);
        if (F.pass_cols[k] < 0) return -1;
        if (sf_schema_add(&F.pass, names[k], F.rs->fields[F.pass_cols[k]].type) != SF_OK) return -1;
    }
    F.user_col = sf_schema_find(F.rs, "user_id");
    if (F.user_col < 0) return -1;
    /* Load the pass columns and the shard key only. */
    uint8_t want[64] = {0};
    if (F.rs->ncols > 64) return -1;
    for (int k = 0; k < F.npass; k++) want[F.pass_cols[k]] = 1;
    want[F.user_col] = 1;
    if (sf_reader_set_projection(F.rd, want) != SF_OK) return -1;

    char key[] = "user_id";
    sf_shard_config sc;
    memset(&sc, 0, sizeof sc);
    sc.strategy = SF_SHARD_HASH;
    sc.key = key;
    sc.shards = PASS_K;
    sc.sample = 100000;
    sc.seed = 1;
    if (sf_shard_plan_create(&sc, F.rs, "test.yaml", &F.plan) != SF_OK) return -1;
    if (sf_shard_plan_needs_prepass(F.plan)) return -1;
    if (sf_shard_plan_finish(F.plan, sf_reader_total_rows(F.rd), sf_reader_data_start(F.rd),
                             sf_reader_data_bytes(F.rd)) != SF_OK)
        return -1;
    if (sf_shard_plan_count(F.plan) != PASS_K) return -1;

    /* Agents: (id, column, by...) in pass-schema indices. */
    static const struct {
        const char *id;
        int col, nby, by[2];
    } agents[NAGENTS] = {{"lat_by_service", 0, 1, {1, 0}}, {"bytes_by_region_service", 3, 2, {2, 1}},
                         {"revenue", 4, 0, {0, 0}},        {"ts", 5, 0, {0, 0}},
                         {"lat_by_region", 0, 1, {2, 0}}};
    sf_agents_register_builtin();
    const sf_agent_ops *ops = sf_agent_find("stats");
    if (ops == NULL) return -1;
    for (int a = 0; a < NAGENTS; a++) {
        sf_agent_config *c = &F.cfg[a], *r = &F.rcfg[a];
        memset(c, 0, sizeof *c);
        c->agent = "stats";
        c->id = agents[a].id;
        c->col = agents[a].col;
        c->column = F.pass.fields[c->col].name;
        c->nby = agents[a].nby;
        for (int k = 0; k < c->nby; k++) {
            F.by[a][k] = agents[a].by[k];
            F.rby[a][k] = F.pass_cols[agents[a].by[k]];
        }
        c->by_col = c->nby ? F.by[a] : NULL;
        c->schema = &F.pass;
        c->file = "test.yaml";
        c->line = 10 + a;
        *r = *c;
        r->col = F.pass_cols[c->col];
        r->by_col = c->nby ? F.rby[a] : NULL;
        r->schema = F.rs;
        if (ops->check(c) != SF_OK || ops->check(r) != SF_OK) return -1;
    }
    reference_pass();
    return 0;
}

static int pass_teardown(void **st)
{
    (void)st;
    free(F.want_report);
    sf_shard_plan_destroy(&F.plan);
    sf_reader_destroy(&F.rd);
    sf_input_config_fini(&F.ic);
    sf_schema_fini(&F.pass);
    return 0;
}

static void run_pass(sf_dist_mode mode, int threads, size_t morsel)
{
    sf_exec_agent xa[NAGENTS];
    memset(xa, 0, sizeof xa);
    for (int a = 0; a < NAGENTS; a++) {
        xa[a].ops = sf_agent_find("stats");
        xa[a].cfg = &F.cfg[a];
    }
    sf_exec *x = NULL;
    assert_int_equal(sf_exec_create(xa, NAGENTS, threads, morsel, &x), SF_OK);
    sf_distribute_config dc = {.mode = mode, .memory_budget = (uint64_t)1 << 20, .morsel_rows = morsel,
                               .chunk_bytes = INT_MAX, .overlap = true, .batch_pieces = true, .pools = true};
    sf_dist_stats st;
    assert_int_equal(sf_dist_stats_init(&st, PASS_K), SF_OK);
    assert_int_equal(sf_reader_rewind(F.rd), SF_OK);
    sf_status rc = sf_dist_run_pass(F.rd, F.plan, &dc, F.pass_cols, F.npass, &F.pass, x, &st);
    if (rc != SF_OK) fail_msg("pass failed: %s", sf_error_message());

    sf_buf enc;
    sf_buf_init(&enc);
    assert_int_equal(sf_exec_encode(x, &enc), SF_OK);
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    assert_int_equal(sf_exec_report(x, enc.data, enc.len, 0, NAGENTS, &j), SF_OK);
    sf_json_obj_end(&j);
    char *got = json_text(&j);
    if (strcmp(got, F.want_report) != 0) {
        size_t i = 0;
        while (got[i] && got[i] == F.want_report[i]) i++;
        fail_msg("mode %d, %d threads: report differs from the direct path at byte %zu:\n got  ...%.120s\n "
                 "want ...%.120s",
                 (int)mode, threads, i, got + (i > 40 ? i - 40 : 0), F.want_report + (i > 40 ? i - 40 : 0));
    }
    free(got);
    sf_json_fini(&j);

    assert_int_equal(st.k, PASS_K);
    assert_int_equal(st.rows_read, PASS_ROWS);
    assert_int_equal(st.rows_done, PASS_ROWS);
    assert_int_equal(sf_exec_rows(x), PASS_ROWS);
    uint64_t sum = 0;
    for (int s = 0; s < PASS_K; s++) {
        sum += st.shard_rows[s];
        if (st.shard_rows[s] != F.want_shard_rows[s])
            fail_msg("shard %d: %llu rows, routed %llu", s, (unsigned long long)st.shard_rows[s],
                     (unsigned long long)F.want_shard_rows[s]);
        /* Bytes go where rows go. */
        assert_int_equal(st.shard_bytes[s] > 0, st.shard_rows[s] > 0);
    }
    assert_int_equal(sum, PASS_ROWS);
    /* One rank: nothing goes over the wire; it processes every unit itself. */
    assert_int_equal(st.units_sent, 0);
    assert_int_equal(st.bytes_sent, 0);
    assert_true(st.units_done >= 1);
    assert_true(st.units_done <= (PASS_ROWS + 2999) / 3000 * PASS_K);
    sf_dist_stats_fini(&st);
    sf_buf_fini(&enc);
    sf_exec_destroy(&x);
}

static void test_pass_static(void **st)
{
    (void)st;
    run_pass(SF_DIST_STATIC, 1, 1000);
    run_pass(SF_DIST_STATIC, 3, 1000);
}

static void test_pass_dynamic(void **st)
{
    (void)st;
    run_pass(SF_DIST_DYNAMIC, 2, 1000);
    run_pass(SF_DIST_DYNAMIC, 4, 777);
}

/* Shard counts are spread out: the hash puts rows in more than one shard,
 * so the per-shard comparison above is not trivially all in shard 0. */
static void test_pass_reference_sane(void **st)
{
    (void)st;
    int nonempty = 0;
    uint64_t sum = 0;
    for (int s = 0; s < PASS_K; s++) {
        nonempty += F.want_shard_rows[s] > 0;
        sum += F.want_shard_rows[s];
    }
    assert_int_equal(sum, PASS_ROWS);
    assert_true(nonempty >= 5);
    assert_non_null(strstr(F.want_report, "\"lat_by_service\""));
}

/* A pass schema that does not describe the columns sent fails the pass
 * with a message; nothing crashes. */
static void test_pass_schema_mismatch(void **st)
{
    (void)st;
    sf_schema wrong;
    sf_schema_init(&wrong);
    for (int k = 0; k < F.npass; k++)
        assert_int_equal(sf_schema_add(&wrong, F.pass.fields[k].name,
                                       k == 1 ? SF_INT64 : F.pass.fields[k].type),
                         SF_OK);
    sf_agent_config c = F.cfg[2]; /* revenue, ungrouped */
    c.schema = &wrong;
    sf_exec_agent xa = {sf_agent_find("stats"), &c, NULL, 0};
    sf_exec *x = NULL;
    assert_int_equal(sf_exec_create(&xa, 1, 2, 1000, &x), SF_OK);
    sf_distribute_config dc = {.mode = SF_DIST_STATIC, .memory_budget = (uint64_t)1 << 20,
                               .morsel_rows = 1000, .chunk_bytes = INT_MAX, .overlap = true,
                               .batch_pieces = true, .pools = true};
    sf_dist_stats ds;
    assert_int_equal(sf_dist_stats_init(&ds, PASS_K), SF_OK);
    assert_int_equal(sf_reader_rewind(F.rd), SF_OK);
    sf_error_clear();
    assert_int_not_equal(sf_dist_run_pass(F.rd, F.plan, &dc, F.pass_cols, F.npass, &wrong, x, &ds), SF_OK);
    assert_true(sf_error_message()[0] != '\0');
    assert_int_equal(sf_exec_rows(x), 0);
    sf_dist_stats_fini(&ds);
    sf_exec_destroy(&x);
    sf_schema_fini(&wrong);
    sf_error_clear();
}

int main(void)
{
    const struct CMUnitTest piece_tests[] = {
        cmocka_unit_test(test_unit_append_pieces),
        cmocka_unit_test(test_pieces_round_trip),
        cmocka_unit_test(test_views_across_schemas),
        cmocka_unit_test(test_control_units),
        cmocka_unit_test(test_malformed_units),
        cmocka_unit_test(test_control_unit_trailing_bytes),
        cmocka_unit_test(test_huge_row_count_rejected),
        cmocka_unit_test(test_schema_mismatch),
        cmocka_unit_test(test_valid_nulls),
        cmocka_unit_test(test_dict_copy),
        cmocka_unit_test(test_large_dict_pieces),
        cmocka_unit_test(test_stable_dict_pieces),
        cmocka_unit_test(test_views_of_runs),
    };
    const struct CMUnitTest pass_tests[] = {
        cmocka_unit_test(test_pass_reference_sane),
        cmocka_unit_test(test_pass_static),
        cmocka_unit_test(test_pass_dynamic),
        cmocka_unit_test(test_pass_schema_mismatch),
    };
    int failed = cmocka_run_group_tests_name("pieces", piece_tests, setup, teardown);
    failed += cmocka_run_group_tests_name("pass", pass_tests, pass_setup, pass_teardown);
    return failed;
}
