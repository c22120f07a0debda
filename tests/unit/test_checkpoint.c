/* Unit tests of checkpoint files (fault/checkpoint.c).
 *
 * Every checkpoint is built from the table and formulas below, and what
 * load returns is compared with those, not with the struct that was
 * written. Corruption is made with plain POSIX calls on the file (truncate,
 * a flipped byte found by searching for a pattern the test put in a state),
 * crashes by forking a writer that is killed at a hook point. The input
 * identity is recomputed here from its definition (stat, xxh64 of the
 * sampled blocks). */
#define _GNU_SOURCE /* memmem, nftw */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>

#include "shardflow/checkpoint.h"

#define HASH "0123456789abcdef"
#define INPUT "size=10 mtime=1.000000000 sample=00000000deadbeef"
#define NOTES_CAP 4096

/* ---- temporary directories --------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)type;
    (void)ftw;
    return remove(path);
}

static void rm_tree(const char *dir) { nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static char *make_dir(void)
{
    char *d = strdup("/tmp/shardflow_test_ckpt_XXXXXX");
    assert_non_null(d);
    assert_non_null(mkdtemp(d));
    return d;
}

static int setup(void **state)
{
    *state = make_dir();
    return 0;
}

static int teardown(void **state)
{
    rm_tree(*state);
    free(*state);
    return 0;
}

static void path_in(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < cap);
}

static bool exists(const char *dir, const char *name)
{
    char p[512];
    path_in(p, sizeof p, dir, name);
    struct stat sb;
    return stat(p, &sb) == 0;
}

static unsigned char *read_all(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    assert_int_equal(fseek(f, 0, SEEK_END), 0);
    long sz = ftell(f);
    assert_true(sz >= 0);
    rewind(f);
    unsigned char *b = malloc((size_t)sz + 1);
    assert_non_null(b);
    assert_int_equal(fread(b, 1, (size_t)sz, f), (size_t)sz);
    fclose(f);
    *n = (size_t)sz;
    return b;
}

static void write_all(const char *path, const void *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(b, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void copy_file(const char *src, const char *dst)
{
    size_t n;
    unsigned char *b = read_all(src, &n);
    write_all(dst, b, n);
    free(b);
}

/* ---- the checkpoint contents ------------------------------------------------- */

/* 16 bytes found nowhere else in a file: locates a state's data. */
static const uint8_t PATTERN[16] = {0xA5, 'S', 'h', 'a', 'r', 'd', 'F', 'l', 'o', 'w', '-', 'P', 'a', 't', 0x5A, 0x00};

/* Binary bytes with zeros in them (every fifth byte). */
static uint8_t fill_byte(size_t i, unsigned salt)
{
    return i % 5 == 0 ? 0 : (uint8_t)(i * 131u + salt * 7u + 1u);
}

typedef struct spec_state {
    const char *stage, *agent, *kind;
    int level;
    uint64_t rows;
    size_t len;
    unsigned salt;
    bool pattern; /* data starts with PATTERN */
} spec_state;

/* Interleaved stages (load order must survive), names with '/', '%', a
 * leading '.', "." and "..", an empty id, a zero-length state and a state
 * whose stage is not in the stage list. */
static const spec_state STATES[] = {
    {"load", "stats", "stats", 0, 1000, 64, 1, false},
    {"by/region", "top/k", "topk", 1, 500, 100, 2, true},
    {"load", "empty", "distinct", 0, 0, 0, 0, false},
    {"by/region", "", "histogram", 1, 3, 2, 3, false},
    {".hidden%41", "%2F..", "stats", 1, UINT64_MAX, 7, 4, false},
    {"orphan", ".", "quantiles", 2, 9, 1, 5, false},
    {"load", "..", "window", 0, 17, 300, 6, false},
};
#define NSTATES ((int)(sizeof STATES / sizeof STATES[0]))

typedef struct spec_stage {
    const char *name;
    int level;
    bool done;
} spec_stage;

static const spec_stage STAGES[] = {
    {"load", 0, true}, {"by/region", 1, false}, {".hidden%41", 1, false}, {"late", 2, false}};
#define NSTAGES ((int)(sizeof STAGES / sizeof STAGES[0]))

static const uint64_t ROWS_DONE[3] = {100, 0, UINT64_MAX};
static const uint64_t ROWS_EXCL[3] = {1, 2, 3};
static const uint32_t ATTEMPTS[3] = {0, 5, UINT32_MAX};
static const uint32_t PIECES_EXCL[3] = {7, 0, 1};

static void state_bytes(const spec_state *s, uint64_t seq, uint8_t *out)
{
    for (size_t i = 0; i < s->len; i++) out[i] = fill_byte(i, s->salt + (unsigned)seq);
    if (s->pattern) memcpy(out, PATTERN, sizeof PATTERN);
}

/* The checkpoint with sequence seq: every value follows from seq. */
static void build(sf_ckpt *c, uint64_t seq, uint32_t format_version)
{
    sf_ckpt_init(c);
    c->format_version = format_version;
    snprintf(c->config_hash, sizeof c->config_hash, "%s", HASH);
    snprintf(c->input_id, sizeof c->input_id, "%s", INPUT);
    c->sequence = seq;
    c->created_unix = 1700000000.25 + (double)seq;
    c->ranks = 4;
    c->threads = 3;
    c->nlevels = 3;
    c->level = 1;
    c->rows_read = 12345 + seq;
    c->pieces_done = 7 * seq;
    c->reader_pos[0] = 1;
    c->reader_pos[1] = seq;
    c->reader_pos[2] = 0;
    c->reader_pos[3] = UINT64_MAX;
    for (int i = 0; i < NSTAGES; i++)
        assert_int_equal(sf_ckpt_add_stage(c, STAGES[i].name, STAGES[i].level, STAGES[i].done), SF_OK);
    for (int i = 0; i < NSTATES; i++) {
        uint8_t buf[512];
        state_bytes(&STATES[i], seq, buf);
        assert_int_equal(sf_ckpt_add_state(c, STATES[i].stage, STATES[i].agent, STATES[i].kind, STATES[i].level,
                                           STATES[i].rows, STATES[i].len ? buf : NULL, STATES[i].len),
                         SF_OK);
    }
    assert_int_equal(sf_ckpt_set_shards(c, 3), SF_OK);
    for (int i = 0; i < 3; i++) {
        c->shard_rows_done[i] = ROWS_DONE[i];
        c->shard_rows_excluded[i] = ROWS_EXCL[i];
        c->shard_attempts[i] = ATTEMPTS[i];
        c->shard_pieces_excluded[i] = PIECES_EXCL[i];
    }
}

/* Compares a loaded checkpoint with the table, field by field. */
static void assert_spec(const sf_ckpt *g, uint64_t seq)
{
    assert_int_equal(g->format_version, SF_CKPT_FORMAT_VERSION);
    assert_string_equal(g->config_hash, HASH);
    assert_string_equal(g->input_id, INPUT);
    assert_true(g->sequence == seq);
    assert_true(g->created_unix == 1700000000.25 + (double)seq);
    assert_int_equal(g->ranks, 4);
    assert_int_equal(g->threads, 3);
    assert_int_equal(g->nlevels, 3);
    assert_int_equal(g->level, 1);
    assert_true(g->rows_read == 12345 + seq);
    assert_true(g->pieces_done == 7 * seq);
    assert_true(g->reader_pos[0] == 1 && g->reader_pos[1] == seq && g->reader_pos[2] == 0 &&
                g->reader_pos[3] == UINT64_MAX);
    assert_int_equal(g->nstages, NSTAGES);
    for (int i = 0; i < NSTAGES; i++) {
        assert_string_equal(g->stages[i].name, STAGES[i].name);
        assert_int_equal(g->stages[i].level, STAGES[i].level);
        assert_int_equal(g->stages[i].done, STAGES[i].done);
    }
    assert_int_equal(g->nstates, NSTATES);
    for (int i = 0; i < NSTATES; i++) {
        const sf_ckpt_state *s = &g->states[i];
        assert_string_equal(s->stage, STATES[i].stage);
        assert_string_equal(s->agent, STATES[i].agent);
        assert_string_equal(s->kind, STATES[i].kind);
        assert_int_equal(s->level, STATES[i].level);
        assert_true(s->rows == STATES[i].rows);
        assert_int_equal(s->len, STATES[i].len);
        uint8_t want[512];
        state_bytes(&STATES[i], seq, want);
        if (STATES[i].len > 0) assert_memory_equal(s->data, want, STATES[i].len);
    }
    assert_int_equal(g->k, 3);
    for (int i = 0; i < 3; i++) {
        assert_true(g->shard_rows_done[i] == ROWS_DONE[i]);
        assert_true(g->shard_rows_excluded[i] == ROWS_EXCL[i]);
        assert_int_equal(g->shard_attempts[i], ATTEMPTS[i]);
        assert_int_equal(g->shard_pieces_excluded[i], PIECES_EXCL[i]);
    }
}

static void write_seq(const char *dir, uint64_t seq, uint32_t fv)
{
    sf_ckpt c;
    build(&c, seq, fv);
    assert_int_equal(sf_ckpt_write(dir, &c, NULL, NULL), SF_OK);
    sf_ckpt_fini(&c);
}

/* Loads dir expecting success; returns what was found and the sequence. */
static sf_ckpt_found load_ok(const char *dir, sf_ckpt *out, char *notes)
{
    sf_ckpt_found found = SF_CKPT_NONE;
    sf_status rc = sf_ckpt_load(dir, HASH, INPUT, out, &found, notes, NOTES_CAP);
    if (rc != SF_OK) fail_msg("load %s: %s", dir, sf_error_message());
    return found;
}

/* ---- tests ------------------------------------------------------------------- */

static void test_round_trip(void **state)
{
    const char *dir = *state;
    write_seq(dir, 5, SF_CKPT_FORMAT_VERSION);
    assert_true(exists(dir, "checkpoint.h5"));
    assert_false(exists(dir, "checkpoint.prev.h5"));
    assert_false(exists(dir, "checkpoint.h5.tmp"));
    sf_ckpt g;
    char notes[NOTES_CAP];
    assert_int_equal(load_ok(dir, &g, notes), SF_CKPT_NEWEST);
    assert_string_equal(notes, "");
    assert_spec(&g, 5);
    sf_ckpt_fini(&g);
    /* fini leaves a zeroed struct. */
    assert_null(g.states);
    assert_int_equal(g.nstates, 0);
}

/* No stages, no states, no shards: every dataset has length 0. */
static void test_empty_checkpoint(void **state)
{
    char dir[512];
    path_in(dir, sizeof dir, *state, "a/b/c"); /* created with its parents */
    sf_ckpt c, g;
    sf_ckpt_init(&c);
    c.format_version = SF_CKPT_FORMAT_VERSION;
    snprintf(c.config_hash, sizeof c.config_hash, "%s", HASH);
    c.sequence = 1;
    c.level = c.nlevels = 2;
    assert_int_equal(sf_ckpt_write(dir, &c, NULL, NULL), SF_OK);
    sf_ckpt_found found;
    assert_int_equal(sf_ckpt_load(dir, HASH, "", &g, &found, NULL, 0), SF_OK);
    assert_int_equal(found, SF_CKPT_NEWEST);
    assert_int_equal(g.nstages, 0);
    assert_int_equal(g.nstates, 0);
    assert_int_equal(g.k, 0);
    assert_string_equal(g.input_id, "");
    assert_int_equal(g.level, 2);
    assert_true(g.sequence == 1);
    sf_ckpt_fini(&g);
    sf_ckpt_fini(&c);
}

static void test_rotation(void **state)
{
    const char *dir = *state;
    for (uint64_t s = 1; s <= 3; s++) write_seq(dir, s, SF_CKPT_FORMAT_VERSION);
    const char *names[2] = {"checkpoint.h5", "checkpoint.prev.h5"};
    const uint64_t want[2] = {3, 2};
    for (int i = 0; i < 2; i++) {
        char *alone = make_dir(), src[512], dst[512];
        path_in(src, sizeof src, dir, names[i]);
        path_in(dst, sizeof dst, alone, "checkpoint.h5");
        copy_file(src, dst);
        sf_ckpt g;
        char notes[NOTES_CAP];
        assert_int_equal(load_ok(alone, &g, notes), SF_CKPT_NEWEST);
        assert_spec(&g, want[i]);
        sf_ckpt_fini(&g);
        rm_tree(alone);
        free(alone);
    }
}

static void test_truncated_newest(void **state)
{
    const char *dir = *state;
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    write_seq(dir, 2, SF_CKPT_FORMAT_VERSION);
    char p[512];
    path_in(p, sizeof p, dir, "checkpoint.h5");
    struct stat sb;
    assert_int_equal(stat(p, &sb), 0);
    assert_int_equal(truncate(p, sb.st_size / 2), 0);
    sf_ckpt g;
    char notes[NOTES_CAP];
    assert_int_equal(load_ok(dir, &g, notes), SF_CKPT_PREVIOUS);
    assert_spec(&g, 1);
    assert_non_null(strstr(notes, "checkpoint.h5: not a readable HDF5 file"));
    assert_non_null(strstr(notes, "using checkpoint.prev.h5"));
    sf_ckpt_fini(&g);
}

/* Flips the byte at offset off of path. */
static void flip_byte(const char *path, size_t off)
{
    size_t n;
    unsigned char *b = read_all(path, &n);
    assert_true(off < n);
    b[off] ^= 0x40;
    write_all(path, b, n);
    free(b);
}

static void test_flipped_data_byte(void **state)
{
    const char *dir = *state;
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    write_seq(dir, 2, SF_CKPT_FORMAT_VERSION);
    char p[512];
    path_in(p, sizeof p, dir, "checkpoint.h5");
    size_t n;
    unsigned char *b = read_all(p, &n);
    unsigned char *at = memmem(b, n, PATTERN, sizeof PATTERN);
    assert_non_null(at);
    /* Once only: the flip below hits the state's data and nothing else. */
    assert_null(memmem(at + 1, n - (size_t)(at + 1 - b), PATTERN, sizeof PATTERN));
    size_t off = (size_t)(at - b) + 5;
    free(b);
    flip_byte(p, off);
    sf_ckpt g;
    char notes[NOTES_CAP];
    assert_int_equal(load_ok(dir, &g, notes), SF_CKPT_PREVIOUS);
    assert_spec(&g, 1);
    assert_non_null(strstr(notes, "checkpoint.h5: checksum mismatch"));
    sf_ckpt_fini(&g);
}

static void test_flipped_metadata_byte(void **state)
{
    const char *dir = *state;
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    write_seq(dir, 2, SF_CKPT_FORMAT_VERSION);
    char p[512];
    path_in(p, sizeof p, dir, "checkpoint.h5");
    flip_byte(p, 100);
    sf_ckpt g;
    sf_ckpt_found found = SF_CKPT_NONE;
    char notes[NOTES_CAP];
    sf_status rc = sf_ckpt_load(dir, HASH, INPUT, &g, &found, notes, sizeof notes);
    /* Detected one way or another; whatever loads is exactly what was
     * written. */
    if (rc == SF_OK && found == SF_CKPT_PREVIOUS) {
        assert_spec(&g, 1);
        assert_non_null(strstr(notes, "checkpoint.h5: "));
    } else if (rc == SF_OK) {
        assert_int_equal(found, SF_CKPT_NEWEST);
        assert_spec(&g, 2);
    } else {
        assert_int_equal(found, SF_CKPT_NONE);
        assert_int_equal(g.nstates, 0);
    }
    sf_ckpt_fini(&g);
}

/* Bytes of the newest file flipped in turn (every 5th in the first 2 KiB,
 * where superblock, root header and heaps lie, then every 31st): each load
 * is the old file, the new one exactly, or an error; never different
 * contents. */
static void test_flip_sweep(void **state)
{
    const char *dir = *state;
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    write_seq(dir, 2, SF_CKPT_FORMAT_VERSION);
    char p[512];
    path_in(p, sizeof p, dir, "checkpoint.h5");
    size_t n;
    unsigned char *orig = read_all(p, &n);
    int prev = 0, newest = 0, errors = 0;
    for (size_t off = 0; off < n; off += off < 2048 ? 5 : 31) {
        orig[off] ^= 0x10;
        write_all(p, orig, n);
        orig[off] ^= 0x10;
        sf_ckpt g;
        sf_ckpt_found found = SF_CKPT_NONE;
        sf_status rc = sf_ckpt_load(dir, HASH, INPUT, &g, &found, NULL, 0);
        if (rc != SF_OK) {
            assert_int_equal(found, SF_CKPT_NONE);
            errors++;
        } else if (found == SF_CKPT_PREVIOUS) {
            assert_spec(&g, 1);
            prev++;
        } else {
            assert_int_equal(found, SF_CKPT_NEWEST);
            assert_spec(&g, 2);
            newest++;
        }
        sf_ckpt_fini(&g);
    }
    free(orig);
    print_message("flip sweep over %zu bytes: %d fell back, %d loaded unchanged, %d errors\n", n, prev, newest,
                  errors);
    /* Most flips hit checksummed bytes and must be caught. */
    assert_true(prev > newest);
}

static void test_wrong_identity(void **state)
{
    const char *dir = *state;
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    sf_ckpt g;
    sf_ckpt_found found = SF_CKPT_NEWEST;
    assert_int_equal(sf_ckpt_load(dir, "fedcba9876543210", INPUT, &g, &found, NULL, 0), SF_ERR_CONFIG);
    assert_int_equal(found, SF_CKPT_NONE);
    const char *m = sf_error_message();
    assert_non_null(strstr(m, HASH));
    assert_non_null(strstr(m, "fedcba9876543210"));
    assert_non_null(strstr(m, dir));
    assert_int_equal(g.nstates, 0);

    found = SF_CKPT_NEWEST;
    assert_int_equal(sf_ckpt_load(dir, HASH, "size=11 other", &g, &found, NULL, 0), SF_ERR_CONFIG);
    assert_int_equal(found, SF_CKPT_NONE);
    m = sf_error_message();
    assert_non_null(strstr(m, "'" INPUT "'"));
    assert_non_null(strstr(m, "'size=11 other'"));

    /* NULL: not checked. */
    assert_int_equal(sf_ckpt_load(dir, NULL, NULL, &g, &found, NULL, 0), SF_OK);
    assert_int_equal(found, SF_CKPT_NEWEST);
    assert_spec(&g, 1);
    sf_ckpt_fini(&g);

    /* A fallback file with another identity is refused the same way. */
    write_seq(dir, 2, SF_CKPT_FORMAT_VERSION);
    char p[512];
    path_in(p, sizeof p, dir, "checkpoint.h5");
    assert_int_equal(truncate(p, 10), 0);
    assert_int_equal(sf_ckpt_load(dir, "fedcba9876543210", NULL, &g, &found, NULL, 0), SF_ERR_CONFIG);
    assert_non_null(strstr(sf_error_message(), "checkpoint.prev.h5"));
}

static void test_older_format(void **state)
{
    const char *dir = *state;
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    write_seq(dir, 2, 0);
    sf_ckpt g;
    char notes[NOTES_CAP];
    assert_int_equal(load_ok(dir, &g, notes), SF_CKPT_PREVIOUS);
    assert_spec(&g, 1);
    char want[128];
    snprintf(want, sizeof want, "checkpoint.h5: format version 0, this build reads %u", SF_CKPT_FORMAT_VERSION);
    assert_non_null(strstr(notes, want));
    sf_ckpt_fini(&g);

    /* Newest v0 again, previous v0 too: nothing usable. */
    write_seq(dir, 3, 0);
    sf_ckpt_found found = SF_CKPT_NEWEST;
    assert_int_equal(sf_ckpt_load(dir, HASH, INPUT, &g, &found, notes, sizeof notes), SF_ERR_IO);
    assert_int_equal(found, SF_CKPT_NONE);
    const char *m = sf_error_message();
    assert_non_null(strstr(m, "checkpoint.h5: format version 0"));
    assert_non_null(strstr(m, "checkpoint.prev.h5: format version 0"));

    /* Two different reasons, both named. */
    write_seq(dir, 4, SF_CKPT_FORMAT_VERSION); /* prev = v0 (3), newest = v1 (4) */
    char p[512];
    path_in(p, sizeof p, dir, "checkpoint.h5");
    assert_int_equal(truncate(p, 100), 0);
    assert_int_equal(sf_ckpt_load(dir, HASH, INPUT, &g, &found, notes, sizeof notes), SF_ERR_IO);
    m = sf_error_message();
    assert_non_null(strstr(m, "checkpoint.h5: not a readable HDF5 file"));
    assert_non_null(strstr(m, "checkpoint.prev.h5: format version 0"));
    assert_non_null(strstr(notes, "checkpoint.h5: not a readable HDF5 file"));
    assert_non_null(strstr(notes, "checkpoint.prev.h5: format version 0"));
}

static void test_none_and_prev_only(void **state)
{
    const char *dir = *state;
    sf_ckpt g;
    sf_ckpt_found found = SF_CKPT_NEWEST;
    char notes[NOTES_CAP] = "junk";
    assert_int_equal(sf_ckpt_load(dir, HASH, INPUT, &g, &found, notes, sizeof notes), SF_OK);
    assert_int_equal(found, SF_CKPT_NONE);
    assert_string_equal(notes, "");
    char missing[512];
    path_in(missing, sizeof missing, dir, "not/there");
    found = SF_CKPT_NEWEST;
    assert_int_equal(sf_ckpt_load(missing, HASH, INPUT, &g, &found, NULL, 0), SF_OK);
    assert_int_equal(found, SF_CKPT_NONE);

    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    write_seq(dir, 2, SF_CKPT_FORMAT_VERSION);
    char p[512];
    path_in(p, sizeof p, dir, "checkpoint.h5");
    assert_int_equal(unlink(p), 0);
    assert_int_equal(load_ok(dir, &g, notes), SF_CKPT_PREVIOUS);
    assert_spec(&g, 1);
    assert_non_null(strstr(notes, "checkpoint.h5: missing"));
    sf_ckpt_fini(&g);

    /* Newest corrupt and no previous: an error, not a silent fresh start. */
    rm_tree(dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    assert_int_equal(truncate(p, 64), 0);
    assert_int_equal(sf_ckpt_load(dir, HASH, INPUT, &g, &found, NULL, 0), SF_ERR_IO);
    assert_non_null(strstr(sf_error_message(), p));
}

typedef struct hook_log {
    char points[16][32];
    int n;
} hook_log;

static void record_hook(const char *point, void *ctx)
{
    hook_log *l = ctx;
    if (l->n < 16) snprintf(l->points[l->n], sizeof l->points[0], "%s", point);
    l->n++;
}

static const char *const POINTS[6] = {"ckpt.begin",   "ckpt.partial", "ckpt.closed",
                                      "ckpt.rotated", "ckpt.renamed", "ckpt.done"};

static void test_hook_points(void **state)
{
    const char *dir = *state;
    /* First write (nothing to rotate) and a later one pass the same points. */
    for (uint64_t seq = 1; seq <= 2; seq++) {
        sf_ckpt c;
        build(&c, seq, SF_CKPT_FORMAT_VERSION);
        hook_log log = {.n = 0};
        assert_int_equal(sf_ckpt_write(dir, &c, record_hook, &log), SF_OK);
        assert_int_equal(log.n, 6);
        for (int i = 0; i < 6; i++) assert_string_equal(log.points[i], POINTS[i]);
        sf_ckpt_fini(&c);
    }
}

static const char *crash_at;

/* SIGKILL rather than _exit: nothing at all runs after the point (no
 * atexit handlers, no leak checker of a tool the test runs under). */
static void crash_hook(const char *point, void *ctx)
{
    (void)ctx;
    if (strcmp(point, crash_at) == 0) kill(getpid(), SIGKILL);
}

/* Writes sequence 2 in a child that is killed at point, over a directory
 * holding sequence 1; returns after checking the child died there. */
static void crash_write(const char *dir, const char *point)
{
    crash_at = point;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sf_ckpt c;
        build(&c, 2, SF_CKPT_FORMAT_VERSION);
        sf_ckpt_write(dir, &c, crash_hook, NULL);
        _exit(3); /* the point was never reached */
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGKILL) fail_msg("writer did not die at %s (status %d)", point, st);
}

static void test_crash_points(void **state)
{
    const char *base = *state;
    /* What a loader finds after a crash at each point. */
    static const struct {
        const char *point;
        sf_ckpt_found found;
        uint64_t seq;
    } cases[] = {
        {"ckpt.begin", SF_CKPT_NEWEST, 1},     {"ckpt.partial", SF_CKPT_NEWEST, 1},
        {"ckpt.closed", SF_CKPT_NEWEST, 1},    {"ckpt.rotated", SF_CKPT_PREVIOUS, 1},
        {"ckpt.renamed", SF_CKPT_NEWEST, 2},   {"ckpt.done", SF_CKPT_NEWEST, 2},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[512];
        path_in(dir, sizeof dir, base, cases[i].point);
        write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
        crash_write(dir, cases[i].point);
        sf_ckpt g;
        char notes[NOTES_CAP];
        sf_ckpt_found found = load_ok(dir, &g, notes);
        if (found != cases[i].found) fail_msg("crash at %s: found %d, expected %d", cases[i].point, found, cases[i].found);
        assert_spec(&g, cases[i].seq);
        sf_ckpt_fini(&g);
        /* The next write replaces any stale temporary file and rotates as usual. */
        write_seq(dir, 3, SF_CKPT_FORMAT_VERSION);
        assert_false(exists(dir, "checkpoint.h5.tmp"));
        assert_int_equal(load_ok(dir, &g, notes), SF_CKPT_NEWEST);
        assert_spec(&g, 3);
        sf_ckpt_fini(&g);
    }
}

static void test_stale_tmp_and_remove(void **state)
{
    const char *dir = *state;
    char tmp[512];
    path_in(tmp, sizeof tmp, dir, "checkpoint.h5.tmp");
    write_all(tmp, "not an HDF5 file at all", 23);
    write_seq(dir, 1, SF_CKPT_FORMAT_VERSION);
    write_seq(dir, 2, SF_CKPT_FORMAT_VERSION);
    assert_false(exists(dir, "checkpoint.h5.tmp"));
    write_all(tmp, "stale", 5);
    assert_int_equal(sf_ckpt_remove(dir), SF_OK);
    assert_false(exists(dir, "checkpoint.h5"));
    assert_false(exists(dir, "checkpoint.prev.h5"));
    assert_false(exists(dir, "checkpoint.h5.tmp"));
    assert_int_equal(sf_ckpt_remove(dir), SF_OK); /* missing files are fine */
}

static void test_write_refuses_duplicates(void **state)
{
    const char *dir = *state;
    sf_ckpt c;
    build(&c, 1, SF_CKPT_FORMAT_VERSION);
    assert_int_equal(sf_ckpt_add_state(&c, "load", "stats", "stats", 0, 1, NULL, 0), SF_OK);
    assert_int_equal(sf_ckpt_write(dir, &c, NULL, NULL), SF_ERR_ARG);
    assert_non_null(strstr(sf_error_message(), "stats"));
    assert_false(exists(dir, "checkpoint.h5"));
    assert_false(exists(dir, "checkpoint.h5.tmp"));
    sf_ckpt_fini(&c);
}

/* ---- input identity ---------------------------------------------------------- */

/* The identity from its definition: whole file up to 16 blocks of 64 KiB,
 * else 16 blocks at offsets b * (size - 64 KiB) / 15. */
static void identity_ref(const char *path, char *out, size_t cap)
{
    struct stat sb;
    assert_int_equal(stat(path, &sb), 0);
    size_t n;
    unsigned char *b = read_all(path, &n);
    const size_t B = 65536;
    XXH64_hash_t h;
    if (n <= 16 * B) {
        h = XXH64(b, n, 0);
    } else {
        unsigned char *cat = malloc(16 * B);
        assert_non_null(cat);
        for (size_t i = 0; i < 16; i++) memcpy(cat + i * B, b + i * (n - B) / 15, B);
        h = XXH64(cat, 16 * B, 0);
        free(cat);
    }
    free(b);
    snprintf(out, cap, "size=%zu mtime=%lld.%09ld sample=%016llx", n, (long long)sb.st_mtim.tv_sec,
             (long)sb.st_mtim.tv_nsec, (unsigned long long)h);
}

static void make_input(const char *path, size_t n, uint32_t seed)
{
    unsigned char *b = malloc(n ? n : 1);
    assert_non_null(b);
    uint32_t x = seed;
    for (size_t i = 0; i < n; i++) {
        x = x * 1664525u + 1013904223u;
        b[i] = (unsigned char)(x >> 24);
    }
    write_all(path, b, n);
    free(b);
}

static void test_input_identity(void **state)
{
    const char *dir = *state;
    const size_t sizes[] = {0, 100, 16 * 65536, 3 * 1024 * 1024 + 17};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        char a[512], b[512], ida[256], idb[256], ref[256], again[256];
        path_in(a, sizeof a, dir, "a.bin");
        path_in(b, sizeof b, dir, "b.bin");
        make_input(a, sizes[i], 1);
        make_input(b, sizes[i], 2);
        assert_int_equal(sf_ckpt_input_identity(a, ida, sizeof ida), SF_OK);
        identity_ref(a, ref, sizeof ref);
        assert_string_equal(ida, ref);
        assert_int_equal(sf_ckpt_input_identity(a, again, sizeof again), SF_OK);
        assert_string_equal(ida, again);
        if (sizes[i] == 0) continue;
        /* Same size and the same mtime, other contents: other samples. */
        struct timespec ts[2] = {{1234567890, 123456789}, {1234567890, 123456789}};
        assert_int_equal(utimensat(AT_FDCWD, a, ts, 0), 0);
        assert_int_equal(utimensat(AT_FDCWD, b, ts, 0), 0);
        assert_int_equal(sf_ckpt_input_identity(a, ida, sizeof ida), SF_OK);
        assert_int_equal(sf_ckpt_input_identity(b, idb, sizeof idb), SF_OK);
        assert_string_not_equal(strstr(ida, "sample="), strstr(idb, "sample="));
        char want[128];
        snprintf(want, sizeof want, "size=%zu mtime=1234567890.123456789 sample=", sizes[i]);
        assert_memory_equal(ida, want, strlen(want));
        assert_memory_equal(idb, want, strlen(want));
        /* Touching the mtime alone changes the identity. */
        struct timespec ts2[2] = {{1234567890, 123456789}, {1234567891, 5}};
        assert_int_equal(utimensat(AT_FDCWD, a, ts2, 0), 0);
        assert_int_equal(sf_ckpt_input_identity(a, again, sizeof again), SF_OK);
        assert_string_not_equal(again, ida);
        assert_non_null(strstr(again, "mtime=1234567891.000000005 "));
        assert_string_equal(strstr(again, "sample="), strstr(ida, "sample="));
    }
    char missing[512], out[64];
    path_in(missing, sizeof missing, dir, "nope");
    assert_int_equal(sf_ckpt_input_identity(missing, out, sizeof out), SF_ERR_IO);
    assert_non_null(strstr(sf_error_message(), missing));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_checkpoint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rotation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncated_newest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_data_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flipped_metadata_byte, setup, teardown),
        cmocka_unit_test_setup_teardown(test_flip_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_identity, setup, teardown),
        cmocka_unit_test_setup_teardown(test_older_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_none_and_prev_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hook_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_points, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stale_tmp_and_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_refuses_duplicates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_input_identity, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
