/* Checkpoint files: writing, verifying and loading them (layout and
 * guarantees in include/shardflow/checkpoint.h).
 *
 * HDF5 use. Only rank 0 touches checkpoints, so files are opened with the
 * serial sec2 driver even though the library is the parallel build: no
 * communicator is involved and nothing here is collective. Files are
 * created with the latest file format (H5Pset_libver_bounds LATEST,
 * LATEST) so that every object header, heap and B-tree node carries HDF5's
 * own checksum; raw dataset bytes are not covered by those, which is what
 * the checkpoint's own xxh64 checksum is for. Automatic error printing is
 * turned off; a failure becomes a status with HDF5's innermost message.
 * File locking is left to HDF5: 1.10.8 reads HDF5_USE_FILE_LOCKING from
 * the environment at every open and create (FALSE turns locking off on
 * file systems without lock support) and that setting overrides any
 * property list, so nothing here sets or overrides it.
 *
 * Names. Stage names and agent ids are user strings but become HDF5 link
 * names, which cannot contain '/' and must not be "." or "..". '%' and
 * '/' are therefore written %25 and %2F, a leading '.' as %2E, and the
 * empty string as a lone "%" (which no other string encodes to); load
 * decodes them, so every name round-trips.
 *
 * Order. /stages and every stage group track link creation order, and the
 * stages come back in that order. States can interleave stages, so each
 * state dataset also carries its position in the checkpoint (attribute
 * index) and load puts them back by it.
 *
 * Attributes beyond the header's list: a state dataset holds the agent
 * name (c->states[i].kind) as its "agent" attribute, since the dataset's
 * own name is already the agent id, plus "level" and "index". A state
 * whose stage is not among c->stages lives in a stage group without the
 * level and status attributes; load does not count such groups as stages.
 *
 * Checksum. xxh64 (seed 0) over a canonical byte string: a tag, then every
 * root attribute except checksum in the header's order, the stage count
 * and each stage (name, level, done), the state count and each state
 * (stage, agent, kind, level, rows, length, bytes), then k and the four
 * shard arrays. Integers are 8-byte little-endian (signed ones sign-
 * extended), doubles their IEEE bits, strings and byte arrays their length
 * followed by their bytes. Each state's dataset also carries xxh64 of its
 * own part of that string. Load recomputes both from what it read. */
#define _POSIX_C_SOURCE 200809L
#define XXH_STATIC_LINKING_ONLY /* XXH64_state_t on the stack: no allocation to fail */
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/fs.h"
#include "io/hdf5_errors.h"
#include "shardflow/checkpoint.h"

#ifndef SF_VERSION
#define SF_VERSION "0.0.0"
#endif

#define CKPT_NEWEST "checkpoint.h5"
#define CKPT_PREV "checkpoint.prev.h5"
#define CKPT_TMP "checkpoint.h5.tmp"
#define CKPT_TAG "shardflow checkpoint"
#define ID_BLOCK ((size_t)64 << 10)
#define ID_BLOCKS 16
#define WHY_CAP 640

/* ---- lifecycle ------------------------------------------------------------ */

void sf_ckpt_init(sf_ckpt *c) { memset(c, 0, sizeof *c); }

void sf_ckpt_fini(sf_ckpt *c)
{
    if (c == NULL) return;
    for (int i = 0; i < c->nstages; i++) free(c->stages[i].name);
    free(c->stages);
    for (int i = 0; i < c->nstates; i++) {
        free(c->states[i].stage);
        free(c->states[i].agent);
        free(c->states[i].kind);
        free(c->states[i].data);
    }
    free(c->states);
    free(c->shard_rows_done);
    free(c->shard_rows_excluded);
    free(c->shard_attempts);
    free(c->shard_pieces_excluded);
    memset(c, 0, sizeof *c);
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL) memcpy(d, s, n);
    return d;
}

sf_status sf_ckpt_add_state(sf_ckpt *c, const char *stage, const char *agent, const char *kind, int level,
                            uint64_t rows, const uint8_t *data, size_t len)
{
    SF_CHECK(c != NULL && stage != NULL && agent != NULL && kind != NULL, SF_ERR_ARG,
             "sf_ckpt_add_state: NULL argument");
    SF_CHECK(data != NULL || len == 0, SF_ERR_ARG, "sf_ckpt_add_state: %s/%s: NULL data of %zu bytes", stage,
             agent, len);
    SF_CHECK(c->nstates < INT_MAX, SF_ERR_ARG, "sf_ckpt_add_state: too many states");
    sf_ckpt_state *grown = realloc(c->states, ((size_t)c->nstates + 1) * sizeof *grown);
    SF_CHECK(grown != NULL, SF_ERR_NOMEM, "out of memory (checkpoint state list)");
    c->states = grown;
    sf_ckpt_state s = {.level = level, .rows = rows, .len = len};
    s.stage = dup_str(stage);
    s.agent = dup_str(agent);
    s.kind = dup_str(kind);
    if (len > 0) {
        s.data = malloc(len);
        if (s.data != NULL) memcpy(s.data, data, len);
    }
    if (s.stage == NULL || s.agent == NULL || s.kind == NULL || (len > 0 && s.data == NULL)) {
        free(s.stage);
        free(s.agent);
        free(s.kind);
        free(s.data);
        return sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (checkpoint state %s/%s, %zu bytes)",
                            stage, agent, len);
    }
    c->states[c->nstates++] = s;
    return SF_OK;
}

sf_status sf_ckpt_add_stage(sf_ckpt *c, const char *name, int level, bool done)
{
    SF_CHECK(c != NULL && name != NULL, SF_ERR_ARG, "sf_ckpt_add_stage: NULL argument");
    SF_CHECK(c->nstages < INT_MAX, SF_ERR_ARG, "sf_ckpt_add_stage: too many stages");
    sf_ckpt_stage *grown = realloc(c->stages, ((size_t)c->nstages + 1) * sizeof *grown);
    SF_CHECK(grown != NULL, SF_ERR_NOMEM, "out of memory (checkpoint stage list)");
    c->stages = grown;
    char *copy = dup_str(name);
    SF_CHECK(copy != NULL, SF_ERR_NOMEM, "out of memory (checkpoint stage %s)", name);
    c->stages[c->nstages++] = (sf_ckpt_stage){.name = copy, .level = level, .done = done};
    return SF_OK;
}

sf_status sf_ckpt_set_shards(sf_ckpt *c, int k)
{
    SF_CHECK(c != NULL && k >= 0, SF_ERR_ARG, "sf_ckpt_set_shards: bad argument (k = %d)", k);
    free(c->shard_rows_done);
    free(c->shard_rows_excluded);
    free(c->shard_attempts);
    free(c->shard_pieces_excluded);
    c->shard_rows_done = c->shard_rows_excluded = NULL;
    c->shard_attempts = c->shard_pieces_excluded = NULL;
    c->k = 0;
    if (k == 0) return SF_OK;
    c->shard_rows_done = calloc((size_t)k, sizeof *c->shard_rows_done);
    c->shard_rows_excluded = calloc((size_t)k, sizeof *c->shard_rows_excluded);
    c->shard_attempts = calloc((size_t)k, sizeof *c->shard_attempts);
    c->shard_pieces_excluded = calloc((size_t)k, sizeof *c->shard_pieces_excluded);
    if (c->shard_rows_done == NULL || c->shard_rows_excluded == NULL || c->shard_attempts == NULL ||
        c->shard_pieces_excluded == NULL) {
        free(c->shard_rows_done);
        free(c->shard_rows_excluded);
        free(c->shard_attempts);
        free(c->shard_pieces_excluded);
        c->shard_rows_done = c->shard_rows_excluded = NULL;
        c->shard_attempts = c->shard_pieces_excluded = NULL;
        return sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (checkpoint arrays for %d shards)", k);
    }
    c->k = k;
    return SF_OK;
}

/* ---- HDF5 errors ---------------------------------------------------------- */

static void h5_quiet(void)
{
    /* Idempotent, and per thread in a thread-safe HDF5 build, so it is done
     * at every entry point rather than behind a once-flag. */
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}


/* ---- names ---------------------------------------------------------------- */

/* The link name of a user string (see the file comment); NULL: no memory. */
static char *name_encode(const char *s)
{
    size_t n = strlen(s);
    if (n == 0) return dup_str("%");
    char *o = malloc(3 * n + 1);
    if (o == NULL) return NULL;
    size_t j = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '/' || ch == '%' || (i == 0 && ch == '.')) {
            snprintf(o + j, 4, "%%%02X", ch);
            j += 3;
        } else {
            o[j++] = (char)ch;
        }
    }
    o[j] = '\0';
    return o;
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    return -1;
}

/* Inverse of name_encode. SF_ERR_PARSE for a name no encoder produces. */
static sf_status name_decode(const char *s, char **out /* out */)
{
    *out = NULL;
    size_t n = strlen(s);
    char *o = malloc(n + 1);
    SF_CHECK(o != NULL, SF_ERR_NOMEM, "out of memory (checkpoint name)");
    size_t j = 0;
    if (strcmp(s, "%") != 0) {
        for (size_t i = 0; i < n; i++) {
            if (s[i] != '%') {
                o[j++] = s[i];
                continue;
            }
            int hi = i + 2 < n ? hex_digit(s[i + 1]) : -1;
            int lo = hi >= 0 ? hex_digit(s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || hi * 16 + lo == 0) {
                free(o);
                return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, "bad link name '%s'", s);
            }
            o[j++] = (char)(hi * 16 + lo);
            i += 2;
        }
    }
    o[j] = '\0';
    *out = o;
    return SF_OK;
}

/* ---- checksum --------------------------------------------------------------- */

static void h_u64(XXH64_state_t *h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(v >> (8 * i));
    XXH64_update(h, b, sizeof b);
}

static void h_i64(XXH64_state_t *h, int64_t v) { h_u64(h, (uint64_t)v); }

static void h_f64(XXH64_state_t *h, double v)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    h_u64(h, bits);
}

static void h_bytes(XXH64_state_t *h, const void *p, size_t n)
{
    h_u64(h, (uint64_t)n);
    if (n > 0) XXH64_update(h, p, n);
}

static void h_str(XXH64_state_t *h, const char *s) { h_bytes(h, s, strlen(s)); }

static void h_state(XXH64_state_t *h, const sf_ckpt_state *s)
{
    h_str(h, s->stage);
    h_str(h, s->agent);
    h_str(h, s->kind);
    h_i64(h, s->level);
    h_u64(h, s->rows);
    h_bytes(h, s->data, s->len);
}

static uint64_t state_digest(const sf_ckpt_state *s)
{
    XXH64_state_t h;
    XXH64_reset(&h, 0);
    h_state(&h, s);
    return XXH64_digest(&h);
}

/* The file's checksum; created and version are the two root attributes
 * that the struct does not hold. */
static uint64_t ckpt_digest(const sf_ckpt *c, const char *created, const char *version)
{
    XXH64_state_t h;
    XXH64_reset(&h, 0);
    h_str(&h, CKPT_TAG);
    h_u64(&h, c->format_version);
    h_str(&h, c->config_hash);
    h_str(&h, c->input_id);
    h_u64(&h, c->sequence);
    h_f64(&h, c->created_unix);
    h_str(&h, created);
    h_str(&h, version);
    h_i64(&h, c->ranks);
    h_i64(&h, c->threads);
    h_i64(&h, c->level);
    h_i64(&h, c->nlevels);
    h_u64(&h, c->rows_read);
    h_u64(&h, c->pieces_done);
    h_u64(&h, c->rounds_done);
    for (int i = 0; i < 4; i++) h_u64(&h, c->reader_pos[i]);
    h_i64(&h, c->nstages);
    for (int i = 0; i < c->nstages; i++) {
        h_str(&h, c->stages[i].name);
        h_i64(&h, c->stages[i].level);
        h_u64(&h, c->stages[i].done ? 1 : 0);
    }
    h_i64(&h, c->nstates);
    for (int i = 0; i < c->nstates; i++) h_state(&h, &c->states[i]);
    h_i64(&h, c->k);
    for (int i = 0; i < c->k; i++) h_u64(&h, c->shard_rows_done[i]);
    for (int i = 0; i < c->k; i++) h_u64(&h, c->shard_rows_excluded[i]);
    for (int i = 0; i < c->k; i++) h_u64(&h, c->shard_attempts[i]);
    for (int i = 0; i < c->k; i++) h_u64(&h, c->shard_pieces_excluded[i]);
    return XXH64_digest(&h);
}

/* ---- paths and POSIX helpers -------------------------------------------------- */

static sf_status join_path(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    SF_CHECK(n > 0 && (size_t)n < cap, SF_ERR_ARG, "checkpoint directory path too long: %s", dir);
    return SF_OK;
}


/* fsync of a file or (O_DIRECTORY) a directory by path. */
static sf_status fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    SF_CHECK(fd >= 0, SF_ERR_IO, "%s: cannot open to fsync: %s", path, strerror(errno));
    if (fsync(fd) != 0) {
        int e = errno;
        close(fd);
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: fsync failed: %s", path, strerror(e));
    }
    SF_CHECK(close(fd) == 0, SF_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    return SF_OK;
}

/* ---- writing --------------------------------------------------------------- */

/* Writes an attribute of n elements (n == 0: a scalar). */
static sf_status attr_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, hsize_t n,
                            const void *buf, const char *path)
{
    sf_status rc = SF_OK;
    hid_t space = H5I_INVALID_HID, attr = H5I_INVALID_HID;
    SF_CALL_H5(space = n == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL), done,
               "%s: cannot create the dataspace of attribute %s", path, name);
    SF_CALL_H5(attr = H5Acreate2(loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT), done,
               "%s: cannot create attribute %s", path, name);
    SF_CALL_H5(H5Awrite(attr, mem_type, buf), done, "%s: cannot write attribute %s", path, name);
done:
    sf__h5_close_id(&attr);
    sf__h5_close_id(&space);
    return rc;
}

/* A fixed-length NUL-terminated string attribute. */
static sf_status attr_write_str(hid_t loc, const char *name, const char *s, const char *path)
{
    sf_status rc = SF_OK;
    hid_t type = H5I_INVALID_HID;
    SF_CALL_H5(type = H5Tcopy(H5T_C_S1), done, "%s: cannot make a string type", path);
    SF_CALL_H5(H5Tset_size(type, strlen(s) + 1), done, "%s: cannot size the type of attribute %s", path, name);
    SF_CALL_H5(H5Tset_strpad(type, H5T_STR_NULLTERM), done, "%s: cannot set the padding of attribute %s", path,
               name);
    rc = attr_write(loc, name, type, type, 0, s, path);
done:
    sf__h5_close_id(&type);
    return rc;
}

static sf_status attr_write_int(hid_t loc, const char *name, int v, const char *path)
{
    return attr_write(loc, name, H5T_STD_I32LE, H5T_NATIVE_INT, 0, &v, path);
}

static sf_status attr_write_u64(hid_t loc, const char *name, uint64_t v, const char *path)
{
    return attr_write(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, 0, &v, path);
}

/* A fixed-size 1-D contiguous dataset of n elements. n == 0 gives a dataset
 * of shape (0,) with nothing written: H5Dwrite is not called, since some
 * HDF5 versions refuse a NULL buffer even for an empty selection. */
static sf_status dset_write(hid_t loc, const char *name, hid_t file_type, hid_t mem_type, size_t n,
                            const void *buf, hid_t *dset_out /* out, may be NULL */, const char *path,
                            const char *what)
{
    sf_status rc = SF_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hsize_t dim = (hsize_t)n;
    SF_CALL_H5(space = H5Screate_simple(1, &dim, NULL), done, "%s: cannot create the dataspace of %s", path, what);
    SF_CALL_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE), done, "%s: cannot create a property list", path);
    /* Every byte is written right away; a fill would only write them twice. */
    SF_CALL_H5(H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER), done, "%s: cannot set the fill time of %s", path,
               what);
    SF_CALL_H5(dset = H5Dcreate2(loc, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), done,
               "%s: cannot create dataset %s", path, what);
    if (n > 0)
        SF_CALL_H5(H5Dwrite(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), done, "%s: cannot write %s",
                   path, what);
    if (dset_out != NULL) {
        *dset_out = dset;
        dset = H5I_INVALID_HID;
    }
done:
    sf__h5_close_id(&dset);
    sf__h5_close_id(&dcpl);
    sf__h5_close_id(&space);
    return rc;
}

/* A group that tracks (and indexes) link creation order. */
static sf_status group_create(hid_t loc, const char *name, hid_t *out /* out */, const char *path)
{
    sf_status rc = SF_OK;
    hid_t gcpl = H5I_INVALID_HID;
    *out = H5I_INVALID_HID;
    SF_CALL_H5(gcpl = H5Pcreate(H5P_GROUP_CREATE), done, "%s: cannot create a property list", path);
    SF_CALL_H5(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), done,
               "%s: cannot track creation order", path);
    SF_CALL_H5(*out = H5Gcreate2(loc, name, H5P_DEFAULT, gcpl, H5P_DEFAULT), done, "%s: cannot create group %s",
               path, name);
done:
    sf__h5_close_id(&gcpl);
    return rc;
}

static sf_status write_root(hid_t file, const sf_ckpt *c, const char *created, uint64_t sum, const char *path)
{
    SF_CALL(attr_write(file, "format_version", H5T_STD_U32LE, H5T_NATIVE_UINT32, 0, &c->format_version, path));
    SF_CALL(attr_write_str(file, "config_hash", c->config_hash, path));
    SF_CALL(attr_write_str(file, "input_id", c->input_id, path));
    SF_CALL(attr_write_u64(file, "sequence", c->sequence, path));
    SF_CALL(attr_write(file, "created_unix", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 0, &c->created_unix, path));
    SF_CALL(attr_write_str(file, "created", created, path));
    SF_CALL(attr_write_str(file, "shardflow_version", SF_VERSION, path));
    SF_CALL(attr_write_int(file, "ranks", c->ranks, path));
    SF_CALL(attr_write_int(file, "threads", c->threads, path));
    SF_CALL(attr_write_int(file, "level", c->level, path));
    SF_CALL(attr_write_int(file, "nlevels", c->nlevels, path));
    SF_CALL(attr_write_u64(file, "rows_read", c->rows_read, path));
    SF_CALL(attr_write_u64(file, "pieces_done", c->pieces_done, path));
    SF_CALL(attr_write_u64(file, "rounds_done", c->rounds_done, path));
    SF_CALL(attr_write(file, "reader_pos", H5T_STD_U64LE, H5T_NATIVE_UINT64, 4, c->reader_pos, path));
    SF_CALL(attr_write_u64(file, "checksum", sum, path));
    return SF_OK;
}

/* Creates /stages/NAME with the stage's attributes (st == NULL: a group only
 * holding states of a stage that is not in the list). */
static sf_status write_stage_group(hid_t stages, const char *name, const sf_ckpt_stage *st, const char *path)
{
    sf_status rc = SF_OK;
    hid_t g = H5I_INVALID_HID;
    char *link = name_encode(name);
    SF_CHECK_GOTO(link != NULL, SF_ERR_NOMEM, done, "out of memory (checkpoint name)");
    SF_CALL_GOTO(group_create(stages, link, &g, path), done);
    if (st != NULL) {
        SF_CALL_GOTO(attr_write_int(g, "level", st->level, path), done);
        SF_CALL_GOTO(attr_write_str(g, "status", st->done ? "done" : "running", path), done);
    }
done:
    sf__h5_close_id(&g);
    free(link);
    return rc;
}

static sf_status write_state(hid_t stages, const sf_ckpt_state *s, int index, const char *path)
{
    sf_status rc = SF_OK;
    hid_t g = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    char *glink = name_encode(s->stage), *dlink = name_encode(s->agent);
    char what[512];
    snprintf(what, sizeof what, "the state of %s/%s", s->stage, s->agent);
    SF_CHECK_GOTO(glink != NULL && dlink != NULL, SF_ERR_NOMEM, done, "out of memory (checkpoint name)");
    SF_CALL_H5(g = H5Gopen2(stages, glink, H5P_DEFAULT), done, "%s: cannot open the group of stage %s", path,
               s->stage);
    SF_CALL_GOTO(dset_write(g, dlink, H5T_STD_U8LE, H5T_NATIVE_UINT8, s->len, s->data, &dset, path, what), done);
    SF_CALL_GOTO(attr_write_str(dset, "agent", s->kind, path), done);
    SF_CALL_GOTO(attr_write_int(dset, "level", s->level, path), done);
    SF_CALL_GOTO(attr_write_u64(dset, "rows", s->rows, path), done);
    SF_CALL_GOTO(attr_write_u64(dset, "index", (uint64_t)index, path), done);
    SF_CALL_GOTO(attr_write_u64(dset, "checksum", state_digest(s), path), done);
done:
    sf__h5_close_id(&dset);
    sf__h5_close_id(&g);
    free(glink);
    free(dlink);
    return rc;
}

static bool stage_listed(const sf_ckpt *c, const char *name, int upto)
{
    for (int i = 0; i < upto; i++)
        if (strcmp(c->stages[i].name, name) == 0) return true;
    return false;
}

/* What HDF5 cannot hold or load could not give back, refused before any
 * file is touched. */
static sf_status check_writable(const sf_ckpt *c, const char *dir)
{
    SF_CHECK(memchr(c->config_hash, '\0', sizeof c->config_hash) != NULL, SF_ERR_ARG,
             "checkpoint %s: config_hash is not a terminated string", dir);
    SF_CHECK(memchr(c->input_id, '\0', sizeof c->input_id) != NULL, SF_ERR_ARG,
             "checkpoint %s: input_id is not a terminated string", dir);
    SF_CHECK(c->nstages >= 0 && c->nstates >= 0 && c->k >= 0, SF_ERR_ARG, "checkpoint %s: negative count", dir);
    SF_CHECK(c->k == 0 || (c->shard_rows_done != NULL && c->shard_rows_excluded != NULL &&
                           c->shard_attempts != NULL && c->shard_pieces_excluded != NULL),
             SF_ERR_ARG, "checkpoint %s: shard arrays missing (use sf_ckpt_set_shards)", dir);
    for (int i = 0; i < c->nstages; i++)
        SF_CHECK(!stage_listed(c, c->stages[i].name, i), SF_ERR_ARG, "checkpoint %s: stage '%s' listed twice",
                 dir, c->stages[i].name);
    /* States are few (agents of a workflow), so the quadratic check is cheap. */
    for (int i = 0; i < c->nstates; i++)
        for (int j = 0; j < i; j++)
            SF_CHECK(strcmp(c->states[i].stage, c->states[j].stage) != 0 ||
                         strcmp(c->states[i].agent, c->states[j].agent) != 0,
                     SF_ERR_ARG, "checkpoint %s: two states for agent '%s' of stage '%s'", dir, c->states[i].agent,
                     c->states[i].stage);
    return SF_OK;
}

static void format_created(double t, char *out, size_t cap)
{
    struct tm tm;
    time_t s = (time_t)floor(t);
    if (!(t >= 0 && t < 253402300800.0) || gmtime_r(&s, &tm) == NULL ||
        strftime(out, cap, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, cap, "unknown");
}

/* Everything up to the closed temporary file (points begin .. partial). */
static sf_status write_tmp(const char *tmp, const sf_ckpt *c, sf_ckpt_hook hook, void *hook_ctx)
{
    sf_status rc = SF_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, stages = H5I_INVALID_HID, shards = H5I_INVALID_HID;
    char created[64];
    format_created(c->created_unix, created, sizeof created);
    uint64_t sum = ckpt_digest(c, created, SF_VERSION);

    SF_CALL_H5(fapl = H5Pcreate(H5P_FILE_ACCESS), done, "%s: cannot create a property list", tmp);
    SF_CALL_H5(H5Pset_fapl_sec2(fapl), done, "%s: cannot select the sec2 driver", tmp);
    SF_CALL_H5(H5Pset_libver_bounds(fapl, H5F_LIBVER_LATEST, H5F_LIBVER_LATEST), done,
               "%s: cannot select the latest file format", tmp);
    /* SEMI: closing the file fails if an object were still open, instead of
     * leaving the file silently unfinished. */
    SF_CALL_H5(H5Pset_fclose_degree(fapl, H5F_CLOSE_SEMI), done, "%s: cannot set the close degree", tmp);
    /* TRUNC: a temporary file left by a writer that crashed is overwritten. */
    SF_CALL_H5(file = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl), done, "%s: cannot create", tmp);
    SF_CALL_GOTO(write_root(file, c, created, sum, tmp), done);

    SF_CALL_GOTO(group_create(file, "stages", &stages, tmp), done);
    for (int i = 0; i < c->nstages; i++)
        SF_CALL_GOTO(write_stage_group(stages, c->stages[i].name, &c->stages[i], tmp), done);
    for (int i = 0; i < c->nstates; i++) {
        const char *st = c->states[i].stage;
        bool seen = stage_listed(c, st, c->nstages);
        for (int j = 0; j < i && !seen; j++) seen = strcmp(c->states[j].stage, st) == 0;
        if (!seen) SF_CALL_GOTO(write_stage_group(stages, st, NULL, tmp), done);
    }
    int half = (c->nstates + 1) / 2;
    for (int i = 0; i < c->nstates; i++) {
        if (i == half && hook != NULL) hook("ckpt.partial", hook_ctx);
        SF_CALL_GOTO(write_state(stages, &c->states[i], i, tmp), done);
    }
    if (half == c->nstates && hook != NULL) hook("ckpt.partial", hook_ctx);

    SF_CALL_GOTO(group_create(file, "shards", &shards, tmp), done);
    size_t k = (size_t)c->k;
    SF_CALL_GOTO(dset_write(shards, "rows_done", H5T_STD_U64LE, H5T_NATIVE_UINT64, k, c->shard_rows_done, NULL,
                            tmp, "shards/rows_done"),
                 done);
    SF_CALL_GOTO(dset_write(shards, "rows_excluded", H5T_STD_U64LE, H5T_NATIVE_UINT64, k, c->shard_rows_excluded,
                            NULL, tmp, "shards/rows_excluded"),
                 done);
    SF_CALL_GOTO(dset_write(shards, "attempts", H5T_STD_U32LE, H5T_NATIVE_UINT32, k, c->shard_attempts, NULL, tmp,
                            "shards/attempts"),
                 done);
    SF_CALL_GOTO(dset_write(shards, "pieces_excluded", H5T_STD_U32LE, H5T_NATIVE_UINT32, k,
                            c->shard_pieces_excluded, NULL, tmp, "shards/pieces_excluded"),
                 done);
    sf__h5_close_id(&shards);
    sf__h5_close_id(&stages);
    herr_t closed = H5Fclose(file);
    file = H5I_INVALID_HID;
    SF_CALL_H5(closed, done, "%s: cannot close (write incomplete)", tmp);
done:
    sf__h5_close_id(&shards);
    sf__h5_close_id(&stages);
    sf__h5_close_id(&file);
    sf__h5_close_id(&fapl);
    return rc;
}

sf_status sf_ckpt_write(const char *dir, const sf_ckpt *c, sf_ckpt_hook hook, void *hook_ctx)
{
    sf_status rc = SF_OK;
    char newest[PATH_MAX], prev[PATH_MAX], tmp[PATH_MAX];
    bool tmp_exists = false;
    SF_CHECK(dir != NULL && dir[0] != '\0' && c != NULL, SF_ERR_ARG, "sf_ckpt_write: missing argument");
    SF_CALL(join_path(newest, sizeof newest, dir, CKPT_NEWEST));
    SF_CALL(join_path(prev, sizeof prev, dir, CKPT_PREV));
    SF_CALL(join_path(tmp, sizeof tmp, dir, CKPT_TMP));
    SF_CALL(check_writable(c, dir));
    h5_quiet();

    if (hook != NULL) hook("ckpt.begin", hook_ctx);
    SF_CALL(sf__mkdir_p(dir));
    tmp_exists = true;
    SF_CALL_GOTO(write_tmp(tmp, c, hook, hook_ctx), done);
    SF_CALL_GOTO(fsync_path(tmp, O_RDONLY), done);
    if (hook != NULL) hook("ckpt.closed", hook_ctx);

    /* From here on the directory holds a complete checkpoint at every
     * instant: after this rename only .prev (the last complete one, which
     * load then uses), after the next the new newest. The point is called
     * also when there was no newest to rotate, so a write always passes the
     * same six points. */
    if (rename(newest, prev) != 0 && errno != ENOENT)
        SF_CHECK_GOTO(false, SF_ERR_IO, done, "%s: cannot rename to %s: %s", newest, prev, strerror(errno));
    if (hook != NULL) hook("ckpt.rotated", hook_ctx);
    SF_CHECK_GOTO(rename(tmp, newest) == 0, SF_ERR_IO, done, "%s: cannot rename to %s: %s", tmp, newest,
                  strerror(errno));
    tmp_exists = false;
    if (hook != NULL) hook("ckpt.renamed", hook_ctx);
    SF_CALL_GOTO(fsync_path(dir, O_RDONLY | O_DIRECTORY), done);
    if (hook != NULL) hook("ckpt.done", hook_ctx);
done:
    /* A failed write leaves no temporary file behind (the next one would
     * overwrite it anyway). */
    if (rc != SF_OK && tmp_exists) unlink(tmp);
    return rc;
}

/* ---- loading ----------------------------------------------------------------- */

/* Content that is not what a checkpoint writer produces. */
#define BAD(...) sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, __VA_ARGS__)

/* Opens attribute name of loc and checks it has n elements (n == 0: scalar
 * or one element) of the given type class. */
static sf_status attr_open(hid_t loc, const char *name, H5T_class_t cls, hsize_t n, hid_t *attr /* out */,
                           const char *where)
{
    sf_status rc = SF_OK;
    hid_t type = H5I_INVALID_HID, space = H5I_INVALID_HID;
    *attr = H5I_INVALID_HID;
    SF_CALL_H5(*attr = H5Aopen(loc, name, H5P_DEFAULT), done, "cannot open attribute %s of %s", name, where);
    SF_CALL_H5(type = H5Aget_type(*attr), done, "cannot read the type of attribute %s of %s", name, where);
    SF_CALL_H5(space = H5Aget_space(*attr), done, "cannot read the shape of attribute %s of %s", name, where);
    hssize_t np = H5Sget_simple_extent_npoints(space);
    SF_CHECK_GOTO(H5Tget_class(type) == cls && np == (hssize_t)(n == 0 ? 1 : n), SF_ERR_PARSE, done,
                  "attribute %s of %s has an unexpected type or shape", name, where);
done:
    sf__h5_close_id(&space);
    sf__h5_close_id(&type);
    if (rc != SF_OK) sf__h5_close_id(attr);
    return rc;
}

static sf_status attr_read(hid_t loc, const char *name, H5T_class_t cls, hid_t mem_type, hsize_t n, void *buf,
                           const char *where)
{
    sf_status rc = SF_OK;
    hid_t attr = H5I_INVALID_HID;
    SF_CALL_GOTO(attr_open(loc, name, cls, n, &attr, where), done);
    SF_CALL_H5(H5Aread(attr, mem_type, buf), done, "cannot read attribute %s of %s", name, where);
done:
    sf__h5_close_id(&attr);
    return rc;
}

static sf_status attr_read_int(hid_t loc, const char *name, int *v, const char *where)
{
    return attr_read(loc, name, H5T_INTEGER, H5T_NATIVE_INT, 0, v, where);
}

static sf_status attr_read_u64(hid_t loc, const char *name, uint64_t *v, const char *where)
{
    return attr_read(loc, name, H5T_INTEGER, H5T_NATIVE_UINT64, 0, v, where);
}

/* A fixed-length string attribute into a new string. */
static sf_status attr_read_str(hid_t loc, const char *name, char **out /* out */, const char *where)
{
    sf_status rc = SF_OK;
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    char *s = NULL;
    *out = NULL;
    SF_CALL_GOTO(attr_open(loc, name, H5T_STRING, 0, &attr, where), done);
    SF_CALL_H5(ftype = H5Aget_type(attr), done, "cannot read the type of attribute %s of %s", name, where);
    htri_t var = H5Tis_variable_str(ftype);
    SF_CALL_H5(var, done, "cannot read the type of attribute %s of %s", name, where);
    SF_CHECK_GOTO(!var, SF_ERR_PARSE, done, "attribute %s of %s is not a fixed-length string", name, where);
    size_t size = H5Tget_size(ftype);
    SF_CHECK_GOTO(size > 0, SF_ERR_PARSE, done, "attribute %s of %s has no size", name, where);
    s = malloc(size + 1);
    SF_CHECK_GOTO(s != NULL, SF_ERR_NOMEM, done, "out of memory (attribute %s)", name);
    SF_CALL_H5(mtype = H5Tcopy(H5T_C_S1), done, "cannot make a string type");
    SF_CALL_H5(H5Tset_size(mtype, size), done, "cannot size a string type");
    SF_CALL_H5(H5Aread(attr, mtype, s), done, "cannot read attribute %s of %s", name, where);
    s[size] = '\0';
    *out = s;
    s = NULL;
done:
    free(s);
    sf__h5_close_id(&mtype);
    sf__h5_close_id(&ftype);
    sf__h5_close_id(&attr);
    return rc;
}

/* A string attribute into a fixed buffer; longer is a content error. */
static sf_status attr_read_strbuf(hid_t loc, const char *name, char *buf, size_t cap, const char *where)
{
    char *s = NULL;
    SF_CALL(attr_read_str(loc, name, &s, where));
    size_t n = strlen(s);
    if (n >= cap) {
        free(s);
        return BAD("attribute %s of %s is longer than %zu bytes", name, where, cap - 1);
    }
    memcpy(buf, s, n + 1);
    free(s);
    return SF_OK;
}

/* Reads a 1-D dataset (opened) into a new array of *n elements of size
 * elem; the element count is bounded by the file's size so a corrupt
 * shape cannot ask for more memory than the file could hold. */
static sf_status dset_read(hid_t dset, hid_t mem_type, size_t elem, uint64_t file_size, void **out /* out */,
                           size_t *n /* out */, const char *where)
{
    sf_status rc = SF_OK;
    hid_t space = H5I_INVALID_HID;
    void *buf = NULL;
    *out = NULL;
    *n = 0;
    SF_CALL_H5(space = H5Dget_space(dset), done, "cannot read the shape of %s", where);
    int rank = H5Sget_simple_extent_ndims(space);
    SF_CALL_H5(rank, done, "cannot read the shape of %s", where);
    SF_CHECK_GOTO(rank == 1, SF_ERR_PARSE, done, "%s is not 1-D", where);
    hsize_t dim = 0;
    SF_CALL_H5(H5Sget_simple_extent_dims(space, &dim, NULL), done, "cannot read the shape of %s", where);
    SF_CHECK_GOTO(dim <= file_size, SF_ERR_PARSE, done, "%s claims %llu elements, more than the file holds",
                  where, (unsigned long long)dim);
    if (dim > 0) {
        buf = malloc((size_t)dim * elem);
        SF_CHECK_GOTO(buf != NULL, SF_ERR_NOMEM, done, "out of memory (%s, %llu elements)", where,
                      (unsigned long long)dim);
        SF_CALL_H5(H5Dread(dset, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf), done, "cannot read %s", where);
    }
    *out = buf;
    *n = (size_t)dim;
    buf = NULL;
done:
    free(buf);
    sf__h5_close_id(&space);
    return rc;
}

/* A state as read, with its position and stored checksum. */
typedef struct loaded_state {
    sf_ckpt_state s;
    uint64_t index, checksum;
} loaded_state;

typedef struct loader {
    const char *path;
    uint64_t file_size;
    sf_ckpt *c;
    loaded_state *ls;
    size_t nls, cap_ls;
} loader;

static void loaded_state_free(loaded_state *l)
{
    free(l->s.stage);
    free(l->s.agent);
    free(l->s.kind);
    free(l->s.data);
    memset(l, 0, sizeof *l);
}

/* Link name idx of group g in creation order, decoded. */
static sf_status link_name(hid_t g, hsize_t idx, char **raw /* out */, const char *where)
{
    sf_status rc = SF_OK;
    *raw = NULL;
    ssize_t n = H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, idx, NULL, 0, H5P_DEFAULT);
    SF_CALL_H5(n, done, "cannot read link %llu of %s", (unsigned long long)idx, where);
    char *s = malloc((size_t)n + 1);
    SF_CHECK_GOTO(s != NULL, SF_ERR_NOMEM, done, "out of memory (link name)");
    if (H5Lget_name_by_idx(g, ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, idx, s, (size_t)n + 1, H5P_DEFAULT) < 0) {
        free(s);
        SF_CALL_H5(-1, done, "cannot read link %llu of %s", (unsigned long long)idx, where);
    }
    *raw = s;
done:
    return rc;
}

static sf_status load_state(loader *L, hid_t g, hsize_t idx, const char *stage)
{
    sf_status rc = SF_OK;
    hid_t obj = H5I_INVALID_HID;
    char *raw = NULL;
    char where[600];
    loaded_state l = {0};
    SF_CALL_GOTO(link_name(g, idx, &raw, stage), done);
    snprintf(where, sizeof where, "/stages/%s/%s", stage, raw);
    SF_CALL_H5(obj = H5Oopen(g, raw, H5P_DEFAULT), done, "cannot open %s", where);
    SF_CHECK_GOTO(H5Iget_type(obj) == H5I_DATASET, SF_ERR_PARSE, done, "%s is not a dataset", where);
    l.s.stage = dup_str(stage);
    SF_CHECK_GOTO(l.s.stage != NULL, SF_ERR_NOMEM, done, "out of memory (checkpoint state)");
    SF_CALL_GOTO(name_decode(raw, &l.s.agent), done);
    SF_CALL_GOTO(attr_read_str(obj, "agent", &l.s.kind, where), done);
    SF_CALL_GOTO(attr_read_int(obj, "level", &l.s.level, where), done);
    SF_CALL_GOTO(attr_read_u64(obj, "rows", &l.s.rows, where), done);
    SF_CALL_GOTO(attr_read_u64(obj, "index", &l.index, where), done);
    SF_CALL_GOTO(attr_read_u64(obj, "checksum", &l.checksum, where), done);
    void *data = NULL;
    SF_CALL_GOTO(dset_read(obj, H5T_NATIVE_UINT8, 1, L->file_size, &data, &l.s.len, where), done);
    l.s.data = data;
    if (L->nls == L->cap_ls) {
        size_t cap = L->cap_ls ? 2 * L->cap_ls : 16;
        loaded_state *grown = realloc(L->ls, cap * sizeof *grown);
        SF_CHECK_GOTO(grown != NULL, SF_ERR_NOMEM, done, "out of memory (checkpoint states)");
        L->ls = grown;
        L->cap_ls = cap;
    }
    L->ls[L->nls++] = l;
    memset(&l, 0, sizeof l);
done:
    loaded_state_free(&l);
    sf__h5_close_id(&obj);
    free(raw);
    return rc;
}

static sf_status load_stage_group(loader *L, hid_t stages, hsize_t idx)
{
    sf_status rc = SF_OK;
    hid_t g = H5I_INVALID_HID;
    char *raw = NULL, *name = NULL, *status = NULL;
    char where[600];
    SF_CALL_GOTO(link_name(stages, idx, &raw, "/stages"), done);
    snprintf(where, sizeof where, "/stages/%s", raw);
    SF_CALL_H5(g = H5Oopen(stages, raw, H5P_DEFAULT), done, "cannot open %s", where);
    SF_CHECK_GOTO(H5Iget_type(g) == H5I_GROUP, SF_ERR_PARSE, done, "%s is not a group", where);
    SF_CALL_GOTO(name_decode(raw, &name), done);
    htri_t is_stage = H5Aexists(g, "status");
    SF_CALL_H5(is_stage, done, "cannot read the attributes of %s", where);
    if (is_stage) {
        int level = 0;
        SF_CALL_GOTO(attr_read_int(g, "level", &level, where), done);
        SF_CALL_GOTO(attr_read_str(g, "status", &status, where), done);
        bool done_ = strcmp(status, "done") == 0;
        SF_CHECK_GOTO(done_ || strcmp(status, "running") == 0, SF_ERR_PARSE, done,
                      "%s: status '%s' is neither done nor running", where, status);
        SF_CALL_GOTO(sf_ckpt_add_stage(L->c, name, level, done_), done);
    }
    H5G_info_t info;
    SF_CALL_H5(H5Gget_info(g, &info), done, "cannot read %s", where);
    for (hsize_t i = 0; i < info.nlinks; i++) SF_CALL_GOTO(load_state(L, g, i, name), done);
done:
    free(status);
    free(name);
    free(raw);
    sf__h5_close_id(&g);
    return rc;
}

/* Puts the states read into L->c in the order of their index attributes,
 * which must be 0 .. n-1 each once. */
static sf_status place_states(loader *L)
{
    sf_ckpt *c = L->c;
    SF_CHECK(L->nls < INT_MAX, SF_ERR_PARSE, "too many states");
    if (L->nls == 0) return SF_OK;
    c->states = calloc(L->nls, sizeof *c->states);
    SF_CHECK(c->states != NULL, SF_ERR_NOMEM, "out of memory (checkpoint states)");
    /* Counted in full at once: the slots not yet placed are zeroed, which
     * sf_ckpt_fini frees harmlessly if a check below fails. */
    c->nstates = (int)L->nls;
    for (size_t i = 0; i < L->nls; i++) {
        uint64_t at = L->ls[i].index;
        SF_CHECK(at < L->nls && c->states[at].stage == NULL, SF_ERR_PARSE,
                 "state /stages/%s/%s has index %" PRIu64 ", out of place among %zu states", L->ls[i].s.stage,
                 L->ls[i].s.agent, at, L->nls);
        SF_CHECK(state_digest(&L->ls[i].s) == L->ls[i].checksum, SF_ERR_PARSE,
                 "checksum mismatch (file corrupt or truncated)");
        c->states[at] = L->ls[i].s;
        memset(&L->ls[i].s, 0, sizeof L->ls[i].s);
    }
    return SF_OK;
}

static sf_status load_shard_array(loader *L, hid_t shards, const char *name, hid_t mem_type, size_t elem,
                                  void **out, size_t *n)
{
    sf_status rc = SF_OK;
    hid_t d = H5I_INVALID_HID;
    char where[64];
    snprintf(where, sizeof where, "/shards/%s", name);
    SF_CALL_H5(d = H5Dopen2(shards, name, H5P_DEFAULT), done, "cannot open %s", where);
    SF_CALL_GOTO(dset_read(d, mem_type, elem, L->file_size, out, n, where), done);
done:
    sf__h5_close_id(&d);
    return rc;
}

static sf_status load_shards(loader *L, hid_t file)
{
    sf_status rc = SF_OK;
    sf_ckpt *c = L->c;
    hid_t shards = H5I_INVALID_HID;
    void *a = NULL, *b = NULL, *d = NULL, *e = NULL;
    size_t na = 0, nb = 0, nd = 0, ne = 0;
    SF_CALL_H5(shards = H5Gopen2(file, "shards", H5P_DEFAULT), done, "cannot open /shards");
    SF_CALL_GOTO(load_shard_array(L, shards, "rows_done", H5T_NATIVE_UINT64, 8, &a, &na), done);
    SF_CALL_GOTO(load_shard_array(L, shards, "rows_excluded", H5T_NATIVE_UINT64, 8, &b, &nb), done);
    SF_CALL_GOTO(load_shard_array(L, shards, "attempts", H5T_NATIVE_UINT32, 4, &d, &nd), done);
    SF_CALL_GOTO(load_shard_array(L, shards, "pieces_excluded", H5T_NATIVE_UINT32, 4, &e, &ne), done);
    SF_CHECK_GOTO(na == nb && na == nd && na == ne && na <= INT_MAX, SF_ERR_PARSE, done,
                  "the /shards datasets differ in length");
    c->k = (int)na;
    c->shard_rows_done = a;
    c->shard_rows_excluded = b;
    c->shard_attempts = d;
    c->shard_pieces_excluded = e;
    a = b = d = e = NULL;
done:
    free(a);
    free(b);
    free(d);
    free(e);
    sf__h5_close_id(&shards);
    return rc;
}

/* Reads and verifies one open file into L->c (init'ed by the caller).
 * SF_ERR_H5: HDF5 could not read it; SF_ERR_PARSE: it is not a valid
 * checkpoint; the message says why, without the path. */
static sf_status load_open_file(loader *L, hid_t file)
{
    sf_status rc = SF_OK;
    sf_ckpt *c = L->c;
    hid_t stages = H5I_INVALID_HID;
    char *created = NULL, *version = NULL;
    uint64_t sum = 0;

    SF_CALL_GOTO(attr_read(file, "format_version", H5T_INTEGER, H5T_NATIVE_UINT32, 0, &c->format_version, "/"),
                 done);
    /* Checked first: an older format may lay out everything else
     * differently, its checksum included. */
    SF_CHECK_GOTO(c->format_version == SF_CKPT_FORMAT_VERSION, SF_ERR_PARSE, done,
                  "format version %" PRIu32 ", this build reads %u", c->format_version, SF_CKPT_FORMAT_VERSION);
    SF_CALL_GOTO(attr_read_strbuf(file, "config_hash", c->config_hash, sizeof c->config_hash, "/"), done);
    SF_CALL_GOTO(attr_read_strbuf(file, "input_id", c->input_id, sizeof c->input_id, "/"), done);
    SF_CALL_GOTO(attr_read_u64(file, "sequence", &c->sequence, "/"), done);
    SF_CALL_GOTO(attr_read(file, "created_unix", H5T_FLOAT, H5T_NATIVE_DOUBLE, 0, &c->created_unix, "/"), done);
    SF_CALL_GOTO(attr_read_str(file, "created", &created, "/"), done);
    SF_CALL_GOTO(attr_read_str(file, "shardflow_version", &version, "/"), done);
    SF_CALL_GOTO(attr_read_int(file, "ranks", &c->ranks, "/"), done);
    SF_CALL_GOTO(attr_read_int(file, "threads", &c->threads, "/"), done);
    SF_CALL_GOTO(attr_read_int(file, "level", &c->level, "/"), done);
    SF_CALL_GOTO(attr_read_int(file, "nlevels", &c->nlevels, "/"), done);
    SF_CALL_GOTO(attr_read_u64(file, "rows_read", &c->rows_read, "/"), done);
    SF_CALL_GOTO(attr_read_u64(file, "pieces_done", &c->pieces_done, "/"), done);
    SF_CALL_GOTO(attr_read_u64(file, "rounds_done", &c->rounds_done, "/"), done);
    SF_CALL_GOTO(attr_read(file, "reader_pos", H5T_INTEGER, H5T_NATIVE_UINT64, 4, c->reader_pos, "/"), done);
    SF_CALL_GOTO(attr_read_u64(file, "checksum", &sum, "/"), done);

    SF_CALL_H5(stages = H5Gopen2(file, "stages", H5P_DEFAULT), done, "cannot open /stages");
    H5G_info_t info;
    SF_CALL_H5(H5Gget_info(stages, &info), done, "cannot read /stages");
    for (hsize_t i = 0; i < info.nlinks; i++) SF_CALL_GOTO(load_stage_group(L, stages, i), done);
    SF_CALL_GOTO(place_states(L), done);
    SF_CALL_GOTO(load_shards(L, file), done);
    SF_CHECK_GOTO(ckpt_digest(c, created, version) == sum, SF_ERR_PARSE, done,
                  "checksum mismatch (file corrupt or truncated)");
done:
    free(created);
    free(version);
    sf__h5_close_id(&stages);
    return rc;
}

typedef enum slot_state { SLOT_ABSENT, SLOT_VALID, SLOT_INVALID } slot_state;

/* Loads path into out (init'ed here). *st says what was found; for
 * SLOT_INVALID why holds the reason. Only a failure that says nothing about
 * the file (no memory) is returned as an error. */
static sf_status load_slot(const char *path, sf_ckpt *out, slot_state *st /* out */, char *why, size_t cap)
{
    sf_status rc = SF_OK;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID;
    loader L = {.path = path, .c = out};
    sf_ckpt_init(out);
    *st = SLOT_INVALID;
    why[0] = '\0';

    struct stat sb;
    if (stat(path, &sb) != 0) {
        if (errno == ENOENT) {
            *st = SLOT_ABSENT;
        } else {
            snprintf(why, cap, "cannot stat: %s", strerror(errno));
        }
        return SF_OK;
    }
    if (!S_ISREG(sb.st_mode)) {
        snprintf(why, cap, "not a regular file");
        return SF_OK;
    }
    L.file_size = (uint64_t)sb.st_size;

    SF_CALL_H5(fapl = H5Pcreate(H5P_FILE_ACCESS), done, "cannot create a property list");
    SF_CALL_H5(H5Pset_fapl_sec2(fapl), done, "cannot select the sec2 driver");
    /* STRONG: closing the file closes whatever an error path left open. */
    SF_CALL_H5(H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG), done, "cannot set the close degree");
    SF_CALL_H5(file = H5Fopen(path, H5F_ACC_RDONLY, fapl), done, "cannot open");
    SF_CALL_GOTO(load_open_file(&L, file), done);
done:
    for (size_t i = 0; i < L.nls; i++) loaded_state_free(&L.ls[i]);
    free(L.ls);
    sf__h5_close_id(&file);
    sf__h5_close_id(&fapl);
    H5Eclear2(H5E_DEFAULT);
    if (rc == SF_OK) {
        *st = SLOT_VALID;
        return SF_OK;
    }
    sf_ckpt_fini(out);
    if (rc == SF_ERR_NOMEM) return rc;
    char detail[WHY_CAP - 128]; /* leaves room for the prefix below */
    snprintf(detail, sizeof detail, "%s", sf_error_message());
    sf_error_clear();
    if (rc == SF_ERR_H5)
        snprintf(why, cap, "not a readable HDF5 file (truncated or corrupt): %s", detail);
    else
        snprintf(why, cap, "%s", detail);
    return SF_OK;
}

__attribute__((format(printf, 3, 4))) static void note_add(char *notes, size_t cap, const char *fmt, ...)
{
    if (notes == NULL || cap == 0) return;
    size_t used = strlen(notes);
    if (used + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes + used, cap - used, fmt, ap);
    va_end(ap);
    used = strlen(notes);
    if (used + 1 < cap) {
        notes[used] = '\n';
        notes[used + 1] = '\0';
    }
}

/* The run-identity check of a valid file. */
static sf_status check_identity(const sf_ckpt *c, const char *path, const char *config_hash, const char *input_id)
{
    SF_CHECK(config_hash == NULL || strcmp(c->config_hash, config_hash) == 0, SF_ERR_CONFIG,
             "checkpoint %s was written for workflow hash %s, this run is %s",
             path, c->config_hash, config_hash);
    SF_CHECK(input_id == NULL || strcmp(c->input_id, input_id) == 0, SF_ERR_CONFIG,
             "checkpoint %s was written for input '%s', the input now is '%s'",
             path, c->input_id, input_id);
    return SF_OK;
}

sf_status sf_ckpt_load(const char *dir, const char *config_hash, const char *input_id, sf_ckpt *out,
                       sf_ckpt_found *found, char *notes, size_t notes_cap)
{
    sf_status rc = SF_OK;
    char newest[PATH_MAX], prev[PATH_MAX];
    char why_new[WHY_CAP], why_prev[WHY_CAP];
    slot_state st_new, st_prev;
    sf_ckpt c;
    SF_CHECK(dir != NULL && out != NULL && found != NULL, SF_ERR_ARG, "sf_ckpt_load: missing argument");
    sf_ckpt_init(out);
    sf_ckpt_init(&c);
    *found = SF_CKPT_NONE;
    if (notes != NULL && notes_cap > 0) notes[0] = '\0';
    SF_CALL(join_path(newest, sizeof newest, dir, CKPT_NEWEST));
    SF_CALL(join_path(prev, sizeof prev, dir, CKPT_PREV));
    h5_quiet();

    SF_CALL(load_slot(newest, &c, &st_new, why_new, sizeof why_new));
    if (st_new == SLOT_VALID) {
        SF_CALL_GOTO(check_identity(&c, newest, config_hash, input_id), done);
        *found = SF_CKPT_NEWEST;
        goto done;
    }
    SF_CALL(load_slot(prev, &c, &st_prev, why_prev, sizeof why_prev));
    if (st_prev == SLOT_VALID) {
        /* Newest invalid, or missing because a write was interrupted
         * between its two renames: .prev is the last complete checkpoint. */
        note_add(notes, notes_cap, "%s: %s; using %s", CKPT_NEWEST, st_new == SLOT_ABSENT ? "missing" : why_new,
                 CKPT_PREV);
        SF_CALL_GOTO(check_identity(&c, prev, config_hash, input_id), done);
        *found = SF_CKPT_PREVIOUS;
        goto done;
    }
    if (st_new == SLOT_ABSENT && st_prev == SLOT_ABSENT) goto done;
    if (st_new == SLOT_INVALID) note_add(notes, notes_cap, "%s: %s", CKPT_NEWEST, why_new);
    if (st_prev == SLOT_INVALID) note_add(notes, notes_cap, "%s: %s", CKPT_PREV, why_prev);
    if (st_new == SLOT_INVALID && st_prev == SLOT_INVALID)
        rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__,
                          "%s: no valid checkpoint: %s: %s; %s: %s",
                          dir, CKPT_NEWEST, why_new, CKPT_PREV, why_prev);
    else if (st_new == SLOT_INVALID)
        rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__,
                          "%s: %s, and there is no %s to fall back to",
                          newest, why_new, CKPT_PREV);
    else
        rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__,
                          "%s: %s, and there is no %s",
                          prev, why_prev, CKPT_NEWEST);
done:
    if (rc == SF_OK) sf_error_clear(); /* what a passed-over file left */
    if (rc == SF_OK && *found != SF_CKPT_NONE) {
        *out = c;
    } else {
        if (rc != SF_OK) *found = SF_CKPT_NONE;
        sf_ckpt_fini(&c);
    }
    return rc;
}

/* ---- removal and input identity --------------------------------------------- */

sf_status sf_ckpt_remove(const char *dir)
{
    static const char *const names[] = {CKPT_NEWEST, CKPT_PREV, CKPT_TMP};
    SF_CHECK(dir != NULL, SF_ERR_ARG, "sf_ckpt_remove: missing directory");
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char path[PATH_MAX];
        SF_CALL(join_path(path, sizeof path, dir, names[i]));
        SF_CHECK(unlink(path) == 0 || errno == ENOENT, SF_ERR_IO, "%s: cannot remove: %s", path, strerror(errno));
    }
    return SF_OK;
}

sf_status sf_ckpt_input_identity(const char *path, char *out, size_t cap)
{
    sf_status rc = SF_OK;
    int fd = -1;
    unsigned char *block = NULL;
    SF_CHECK(path != NULL && out != NULL && cap > 0, SF_ERR_ARG, "sf_ckpt_input_identity: missing argument");
    out[0] = '\0';
    fd = open(path, O_RDONLY);
    SF_CHECK(fd >= 0, SF_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    SF_CHECK_GOTO(fstat(fd, &sb) == 0, SF_ERR_IO, done, "%s: cannot stat: %s", path, strerror(errno));
    block = malloc(ID_BLOCK);
    SF_CHECK_GOTO(block != NULL, SF_ERR_NOMEM, done, "out of memory (input identity)");

    uint64_t size = (uint64_t)sb.st_size;
    XXH64_state_t h;
    XXH64_reset(&h, 0);
    /* Small files are hashed whole; larger ones in ID_BLOCKS blocks, the
     * first at 0 and the last ending at EOF, evenly spaced in between. */
    int nblocks = size <= (uint64_t)ID_BLOCK * ID_BLOCKS ? (int)((size + ID_BLOCK - 1) / ID_BLOCK) : ID_BLOCKS;
    for (int b = 0; b < nblocks; b++) {
        uint64_t off = size <= (uint64_t)ID_BLOCK * ID_BLOCKS
                           ? (uint64_t)b * ID_BLOCK
                           : (size - ID_BLOCK) * (uint64_t)b / (ID_BLOCKS - 1);
        size_t want = size - off < ID_BLOCK ? (size_t)(size - off) : ID_BLOCK;
        size_t got = 0;
        while (got < want) {
            ssize_t n = pread(fd, block + got, want - got, (off_t)(off + got));
            if (n < 0 && errno == EINTR) continue;
            SF_CHECK_GOTO(n >= 0, SF_ERR_IO, done, "%s: read failed: %s", path, strerror(errno));
            SF_CHECK_GOTO(n > 0, SF_ERR_IO, done, "%s: file shrank while being read", path);
            got += (size_t)n;
        }
        XXH64_update(&h, block, want);
    }
    int n = snprintf(out, cap, "size=%llu mtime=%lld.%09ld sample=%016llx", (unsigned long long)size,
                     (long long)sb.st_mtim.tv_sec, (long)sb.st_mtim.tv_nsec, (unsigned long long)XXH64_digest(&h));
    SF_CHECK_GOTO(n > 0 && (size_t)n < cap, SF_ERR_ARG, done, "%s: input identity does not fit in %zu bytes", path,
                  cap);
done:
    free(block);
    if (fd >= 0) close(fd);
    return rc;
}
