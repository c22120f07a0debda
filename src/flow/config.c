/* The workflow file: YAML tree, --set overrides, validation, config hash.
 *
 * Keys (a key that is not listed is an error, at every level):
 *
 *   name: STRING                     required. Name of the workflow.
 *   threads: INT                     OpenMP threads per rank, default 0 =
 *                                    automatic.
 *   input:                           required mapping.
 *     format: csv|hdf5|synthetic     required.
 *     path: STRING                   csv, hdf5: required. A relative path is
 *                                    relative to the directory of the workflow
 *                                    file (one given by --set: relative to the
 *                                    current directory).
 *     group: STRING                  hdf5: group of the column datasets,
 *                                    default /table.
 *     delimiter: CHAR                csv: exactly one byte, default ",".
 *     on_bad_row: fail|skip          csv: default fail.
 *     max_line_length: BYTES         csv: longest record, default 1MiB.
 *     block_size: BYTES              csv: read size, default 4MiB.
 *     fadvise: BOOL                  csv: posix_fadvise(SEQUENTIAL) and
 *                                    read-ahead of the next block, default true.
 *     mmap: BOOL                     hdf5: plain int64/float64 columns and
 *                                    masks read from a mapping of the file
 *                                    instead of copied, default true.
 *     infer_rows: INT                csv: rows sampled for type inference,
 *                                    default 1000 (>= 1).
 *     schema: {COLUMN: TYPE, ...}    csv, hdf5: column types int64, float64,
 *                                    string, timestamp (overrides inference).
 *     generator: STRING              synthetic: default requests.
 *     rows: INT                      synthetic: required, >= 1.
 *     seed: INT                      synthetic: default 42.
 *     zipf: FLOAT                    synthetic: key skew, >= 0 (0 = uniform),
 *                                    default 1.1.
 *     users: INT                     synthetic: distinct user ids, default
 *                                    100000 (>= 1).
 *     batch_rows: INT                all formats: rows per batch, default
 *                                    65536, 1..2147483647.
 *   shard:                           optional mapping.
 *     strategy: size|hash|range|semantic   default size.
 *     key: STRING                    column to shard by; required for hash,
 *                                    range and semantic (ignored by size).
 *     shards: INT                    K logical shards, 1..1000000, default 16.
 *     map: STRING                    semantic only: key->group CSV; relative
 *                                    to the workflow file like input.path.
 *     sample: INT                    range: sample size, default 100000 (>= 1).
 *     seed: INT                      range: sample seed, default 1.
 *   distribute:                      optional mapping.
 *     mode: static|dynamic|parallel-read  default static.
 *     exchange: auto|always|never    parallel-read: move records to the rank
 *                                    owning their shard (auto: for hash,
 *                                    range and semantic sharding).
 *     overlap, batch_pieces, pools, in_place: BOOL  optimizations, default
 *                                    true.
 *     memory_budget: BYTES           bound on buffers in flight, default 256MiB.
 *     morsel_rows: INT               rows per morsel, default 16384,
 *                                    1..2147483647.
 *     chunk_bytes: BYTES             largest single MPI message, default and
 *                                    maximum 2147483647.
 *   checkpoint:                      optional mapping (include/shardflow/fault.h).
 *     dir: STRING                    default OUTDIR/checkpoint; relative to the
 *                                    workflow file like input.path.
 *     enabled: BOOL                  default true.
 *     every_shards: INT              a checkpoint after every N shard pieces
 *                                    (0 = off, default).
 *     every_seconds: DURATION        ... or at the first round boundary this
 *                                    long after the last one (default 60s).
 *     restart: auto|never            auto: resume an unfinished checkpoint of
 *                                    the same workflow (default).
 *   fault:                           optional mapping (include/shardflow/fault.h).
 *     inject: [SPEC, ...]            seeded fault injection.
 *     seed, max_attempts (1..100), backoff, task_timeout, min_coverage (0..1),
 *     grace, redistribute, speculate, watchdog.
 *   output:                          optional mapping.
 *     dir: STRING                    output directory, relative to the current
 *                                    directory; default unset (the command line
 *                                    decides).
 *   stages:                          required, a non-empty sequence of:
 *     - name: STRING                 required, unique.
 *       after: [STAGE, ...]          optional; stages this one waits for (a
 *                                    single name is a one-element list).
 *       agents:                      required, a non-empty sequence of:
 *         - agent: NAME              required, a registered agent.
 *           id: STRING               result key, default the agent name;
 *                                    unique within the stage.
 *           column: STRING           optional.
 *           by: [COLUMN, ...]        optional group-by columns (a single
 *                                    name is a one-element list).
 *           ...                      other keys belong to the agent and are
 *                                    checked by its check() function.
 *
 * INT is a plain decimal integer (no sign, no separators). BYTES is an
 * integer with an optional suffix B, KiB, MiB, GiB, TiB (powers of 1024) or
 * KB, MB, GB, TB (powers of 1000), optionally after one space: 4096, 512KiB,
 * "1 GiB", 2GB. An empty value (`key:` or `~`) of an optional mapping or list
 * is the same as an empty one. Quoting does not change a value ("16" == 16).
 *
 * Messages: "FILE:LINE: key.path: problem" (YAML syntax errors carry the
 * column too); a value that came from --set is located as "--set KEY".
 *
 * config_hash: xxh64 (seed 0) of a canonical encoding of the tree after the
 * --set overrides: kinds, keys in file order and scalar texts (nulls folded
 * together), no positions, no quoting style, no comments. Defaults are not
 * part of it, so adding a key with its default value changes the hash. */
#define _POSIX_C_SOURCE 200809L
#include "shardflow/config.h"
#include "shardflow/plugin.h"

#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "flow/yaml_tree.h"
#include "shardflow/agent.h"
#include "shardflow/buf.h"

#define PATH_LEN 384
#define MAX_SHARDS 1000000

/* A node made by --set and the override that made it. */
typedef struct set_origin {
    const sf_cfg_node *node;
    int set;
} set_origin;

typedef struct load_ctx {
    const char *file;
    int nsets;
    char **set_keys;          /* the KEY part of each --set */
    set_origin *origins;
    size_t norigins, cap_origins;
    const sf_cfg_node *stages; /* the stages sequence */
} load_ctx;

/* What an absent optional mapping or a null value reads as. */
static const sf_cfg_node empty_map = {.kind = SF_NODE_MAP};

/* ---------------------------------------------------------------------------
 * Strings, paths and lookups */

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void path_key(char *dst, const char *parent, const char *key)
{
    /* Key paths are for messages; a path longer than PATH_LEN is cut short. */
    size_t np = strlen(parent), nk = strlen(key);
    if (np > PATH_LEN - 2) np = PATH_LEN - 2;
    memcpy(dst, parent, np);
    size_t at = np;
    if (np > 0) dst[at++] = '.';
    if (nk > PATH_LEN - 1 - at) nk = PATH_LEN - 1 - at;
    memcpy(dst + at, key, nk);
    dst[at + nk] = '\0';
}

static void path_idx(char *dst, const char *parent, size_t i)
{
    char idx[32];
    int n = snprintf(idx, sizeof idx, "[%zu]", i);
    size_t np = strlen(parent);
    if (np > PATH_LEN - 1 - (size_t)n) np = PATH_LEN - 1 - (size_t)n;
    memcpy(dst, parent, np);
    memcpy(dst + np, idx, (size_t)n + 1);
}

const sf_cfg_node *sf_cfg_get(const sf_cfg_node *map, const char *key)
{
    if (map == NULL || key == NULL || map->kind != SF_NODE_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0) return map->items[i];
    return NULL;
}

/* Like sf_cfg_get, also giving the line of the key. */
static const sf_cfg_node *get_at(const sf_cfg_node *map, const char *key, int *key_line)
{
    *key_line = 0;
    if (map == NULL || map->kind != SF_NODE_MAP) return NULL;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            *key_line = map->key_lines ? map->key_lines[i] : 0;
            return map->items[i];
        }
    }
    return NULL;
}

static bool in_list(const char *const *list, const char *s)
{
    for (; *list; list++)
        if (strcmp(*list, s) == 0) return true;
    return false;
}

static void join_list(const char *const *list, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (const char *const *p = list; *p && len < cap; p++) {
        int w = snprintf(buf + len, cap - len, "%s%s", p == list ? "" : ", ", *p);
        if (w < 0) break;
        len += (size_t)w;
    }
}

/* Edit distance, for "did you mean" hints on misspelt keys and values. */
static size_t edit_distance(const char *a, const char *b)
{
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return SIZE_MAX;
    size_t prev[64], cur[64];
    for (size_t j = 0; j <= nb; j++) prev[j] = j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            size_t del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, (nb + 1) * sizeof *prev);
    }
    return prev[nb];
}

static const char *nearest(const char *const *list, const char *s)
{
    const char *best = NULL;
    size_t bestd = 3; /* at most two edits */
    for (; *list; list++) {
        size_t d = edit_distance(*list, s);
        if (d < bestd) {
            bestd = d;
            best = *list;
        }
    }
    return best;
}

/* ---------------------------------------------------------------------------
 * Messages */

/* Where a node is: the --set that made it, else FILE:LINE from line (if > 0)
 * or from the node's own line. */
static void where(const load_ctx *c, const sf_cfg_node *node, int line, char *buf, size_t cap)
{
    for (size_t i = 0; node != NULL && i < c->norigins; i++) {
        if (c->origins[i].node == node) {
            (void)snprintf(buf, cap, "--set %s", c->set_keys[c->origins[i].set]);
            return;
        }
    }
    if (line <= 0 && node != NULL) line = node->line;
    if (line > 0) (void)snprintf(buf, cap, "%s:%d", c->file, line);
    else (void)snprintf(buf, cap, "%s", c->file);
}

static sf_status fail_at(const load_ctx *c, int src_line, const sf_cfg_node *node, int line, const char *path,
                         const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static sf_status fail_at(const load_ctx *c, int src_line, const sf_cfg_node *node, int line, const char *path,
                         const char *fmt, ...)
{
    char at[PATH_LEN + 64], msg[1536];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    where(c, node, line, at, sizeof at);
    if (path != NULL && path[0] != '\0')
        return sf_error_set(SF_ERR_CONFIG, __FILE__, src_line, "%s: %s: %s", at, path, msg);
    return sf_error_set(SF_ERR_CONFIG, __FILE__, src_line, "%s: %s", at, msg);
}

#define FAIL(c, node, line, path, ...) fail_at((c), __LINE__, (node), (line), (path), __VA_ARGS__)

/* ---------------------------------------------------------------------------
 * Scalars */

/* Every key of map must be in allowed. for_what, if set, says which variant
 * the list belongs to ("format hdf5"). */
static sf_status check_keys(const load_ctx *c, const sf_cfg_node *map, const char *path,
                            const char *const *allowed, const char *for_what)
{
    for (size_t i = 0; i < map->n; i++) {
        const char *key = map->keys[i];
        if (in_list(allowed, key)) continue;
        char sub[PATH_LEN], list[512];
        path_key(sub, path, key);
        join_list(allowed, list, sizeof list);
        const char *near = nearest(allowed, key);
        if (for_what)
            return FAIL(c, map->items[i], map->key_lines[i], sub,
                        "key '%s' does not apply to %s%s%s%s (allowed for %s: %s)", key, for_what,
                        near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "", for_what, list);
        return FAIL(c, map->items[i], map->key_lines[i], sub, "unknown key '%s'%s%s%s (allowed: %s)", key,
                    near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "", list);
    }
    return SF_OK;
}

/* An optional mapping: absent or null reads as empty. */
static sf_status opt_map(const load_ctx *c, const sf_cfg_node *node, const char *path, const char *what,
                         const sf_cfg_node **out)
{
    *out = &empty_map;
    if (node == NULL || sf__cfg_is_null(node)) return SF_OK;
    if (node->kind != SF_NODE_MAP)
        return FAIL(c, node, 0, path, "expected a mapping%s%s, found %s%s%s%s", what ? " " : "", what ? what : "",
                    sf__cfg_kind_name(node), node->kind == SF_NODE_SCALAR ? " '" : "",
                    node->kind == SF_NODE_SCALAR ? node->scalar : "", node->kind == SF_NODE_SCALAR ? "'" : "");
    *out = node;
    return SF_OK;
}

static sf_status want_scalar(const load_ctx *c, const sf_cfg_node *node, const char *path, const char *what)
{
    if (node->kind != SF_NODE_SCALAR || sf__cfg_is_null(node))
        return FAIL(c, node, 0, path, "expected %s, found %s", what, sf__cfg_kind_name(node));
    return SF_OK;
}

/* A non-empty string, copied. */
static sf_status parse_string(const load_ctx *c, const sf_cfg_node *node, const char *path, char **out)
{
    SF_CALL(want_scalar(c, node, path, "a string"));
    if (node->scalar[0] == '\0') return FAIL(c, node, 0, path, "must not be empty");
    char *s = dup_str(node->scalar);
    SF_CHECK(s != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    free(*out);
    *out = s;
    return SF_OK;
}

static bool all_digits(const char *s)
{
    if (*s == '\0') return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

/* An unsigned integer in [min, max]. */
static sf_status parse_uint(const load_ctx *c, const sf_cfg_node *node, const char *path, uint64_t min,
                            uint64_t max, uint64_t *out)
{
    SF_CALL(want_scalar(c, node, path, "an integer"));
    const char *s = node->scalar;
    if (s[0] == '-' && all_digits(s + 1)) return FAIL(c, node, 0, path, "must not be negative, found '%s'", s);
    if (!all_digits(s)) return FAIL(c, node, 0, path, "expected an integer, found '%s'", s);
    uint64_t v = 0;
    bool overflow = false;
    for (const char *p = s; *p; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) overflow = true;
        else v = v * 10 + d;
    }
    if (overflow && max == UINT64_MAX)
        return FAIL(c, node, 0, path, "'%s' is too large (the largest integer is %" PRIu64 ")", s, UINT64_MAX);
    if (overflow || v > max || (v < min && max != UINT64_MAX))
        return FAIL(c, node, 0, path, "'%s' is out of range [%" PRIu64 ", %" PRIu64 "]", s, min, max);
    if (v < min) return FAIL(c, node, 0, path, "must be positive, found '%s'", s);
    *out = v;
    return SF_OK;
}

/* 0: parsed; 1: not a byte size; 2: too large for 64 bits. */
static int bytes_parse(const char *s, uint64_t *out)
{
    static const struct {
        const char *suffix;
        uint64_t mult;
    } units[] = {
        {"B", 1},
        {"KiB", UINT64_C(1) << 10},
        {"MiB", UINT64_C(1) << 20},
        {"GiB", UINT64_C(1) << 30},
        {"TiB", UINT64_C(1) << 40},
        {"KB", UINT64_C(1000)},
        {"MB", UINT64_C(1000000)},
        {"GB", UINT64_C(1000000000)},
        {"TB", UINT64_C(1000000000000)},
    };
    if (s == NULL || s[0] < '0' || s[0] > '9') return 1;
    uint64_t v = 0;
    bool overflow = false;
    const char *p = s;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10) overflow = true;
        else v = v * 10 + d;
    }
    uint64_t mult = 1;
    if (*p == ' ') {
        p++;
        if (*p == '\0') return 1;
    }
    if (*p != '\0') {
        size_t k = 0, nunits = sizeof units / sizeof units[0];
        while (k < nunits && strcmp(p, units[k].suffix) != 0) k++;
        if (k == nunits) return 1;
        mult = units[k].mult;
    }
    if (overflow || v > UINT64_MAX / mult) return 2;
    *out = v * mult;
    return 0;
}

bool sf_parse_bytes(const char *s, uint64_t *out)
{
    uint64_t v;
    if (bytes_parse(s, &v) != 0) return false;
    *out = v;
    return true;
}

static sf_status parse_size(const load_ctx *c, const sf_cfg_node *node, const char *path, uint64_t min,
                            uint64_t max, uint64_t *out)
{
    SF_CALL(want_scalar(c, node, path, "a byte size"));
    const char *s = node->scalar;
    uint64_t v = 0;
    int r = bytes_parse(s, &v);
    if (r == 1 && s[0] == '-') return FAIL(c, node, 0, path, "must not be negative, found '%s'", s);
    if (r == 1)
        return FAIL(c, node, 0, path,
                    "expected a byte size such as 4096, 512KiB, 256MiB or 1GiB (suffixes B, KiB, MiB, GiB, "
                    "TiB, KB, MB, GB, TB), found '%s'",
                    s);
    if (r == 2) return FAIL(c, node, 0, path, "'%s' is too large (more than 2^64 - 1 bytes)", s);
    if (v < min || v > max)
        return FAIL(c, node, 0, path, "'%s' is out of range [%" PRIu64 ", %" PRIu64 "] bytes", s, min, max);
    *out = v;
    return SF_OK;
}

/* One of names (NULL-terminated); *out is its index. */
static sf_status parse_enum(const load_ctx *c, const sf_cfg_node *node, const char *path,
                            const char *const *names, int *out)
{
    char list[256];
    join_list(names, list, sizeof list);
    if (node->kind != SF_NODE_SCALAR || sf__cfg_is_null(node))
        return FAIL(c, node, 0, path, "expected one of %s, found %s", list, sf__cfg_kind_name(node));
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], node->scalar) == 0) {
            *out = i;
            return SF_OK;
        }
    }
    const char *near = nearest(names, node->scalar);
    return FAIL(c, node, 0, path, "unknown value '%s'%s%s%s (allowed: %s)", node->scalar,
                near ? "; did you mean '" : "", near ? near : "", near ? "'?" : "", list);
}

static sf_status parse_bool(const load_ctx *c, const sf_cfg_node *node, const char *path, bool *out)
{
    static const char *const names[] = {"false", "true", "no", "yes", "off", "on", NULL};
    int k;
    SF_CALL(parse_enum(c, node, path, names, &k));
    *out = (k % 2) == 1;
    return SF_OK;
}


static sf_status parse_float(const load_ctx *c, const sf_cfg_node *node, const char *path, double min,
                             double *out)
{
    SF_CALL(want_scalar(c, node, path, "a number"));
    const char *s = node->scalar;
    char *end = NULL;
    double v = strtod(s, &end);
    /* Plain decimals only: strtod alone would also take hex and spaces. */
    if (end == s || *end != '\0' || !isfinite(v) || !sf_json_is_number(s))
        return FAIL(c, node, 0, path, "expected a number, found '%s'", s);
    if (v < min) return FAIL(c, node, 0, path, "must be at least %g, found '%s'", min, s);
    *out = v;
    return SF_OK;
}

/* A list of non-empty strings: a sequence of scalars, or one scalar. */
static sf_status parse_str_list(const load_ctx *c, const sf_cfg_node *node, const char *path, int *n,
                                char ***out)
{
    size_t count;
    if (sf__cfg_is_null(node)) count = 0;
    else if (node->kind == SF_NODE_SCALAR) count = 1;
    else if (node->kind == SF_NODE_SEQ) count = node->n;
    else return FAIL(c, node, 0, path, "expected a list of names, found %s", sf__cfg_kind_name(node));
    SF_CHECK(count < INT_MAX, SF_ERR_CONFIG, "%s: too many items", path);
    *out = calloc(count ? count : 1, sizeof **out);
    SF_CHECK(*out != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    *n = (int)count;
    for (size_t i = 0; i < count; i++) {
        const sf_cfg_node *item = node->kind == SF_NODE_SEQ ? node->items[i] : node;
        char sub[PATH_LEN];
        if (node->kind == SF_NODE_SEQ) path_idx(sub, path, i);
        else (void)snprintf(sub, sizeof sub, "%s", path);
        SF_CALL(parse_string(c, item, sub, &(*out)[i]));
    }
    return SF_OK;
}

/* Resolves p against the directory of the workflow file, unless it is
 * absolute or came from the command line. */
static sf_status resolve_path(const load_ctx *c, const sf_cfg_node *node, char **p)
{
    if ((*p)[0] == '/' || node->line == 0) return SF_OK;
    const char *slash = strrchr(c->file, '/');
    if (slash == NULL) return SF_OK;
    size_t dlen = (size_t)(slash - c->file) + 1, plen = strlen(*p);
    char *r = malloc(dlen + plen + 1);
    SF_CHECK(r != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    memcpy(r, c->file, dlen);
    memcpy(r + dlen, *p, plen + 1);
    free(*p);
    *p = r;
    return SF_OK;
}

/* ---------------------------------------------------------------------------
 * Sections */

static const char *const input_keys_all[] = {
    "format", "path", "group", "delimiter", "on_bad_row", "max_line_length", "block_size", "infer_rows",
    "fadvise", "schema", "generator", "rows", "seed", "zipf", "users", "incidents", "batch_rows", "mmap", NULL};
static const char *const input_keys_csv[] = {"format",     "path",       "delimiter",  "on_bad_row",
                                             "max_line_length", "block_size", "infer_rows", "batch_rows",
                                             "schema",     "fadvise",    NULL};
static const char *const input_keys_hdf5[] = {"format", "path", "group", "batch_rows", "schema", "mmap", NULL};
static const char *const input_keys_synth[] = {"format", "generator", "rows",       "seed",
                                               "zipf",   "users",     "incidents", "batch_rows", NULL};

/* true/false (yes/no, on/off) into *out. */
static sf_status parse_bool(const load_ctx *c, const sf_cfg_node *node, const char *path, bool *out);

/* A required key: its node, or an error at the line of the map's key. */
static sf_status need(const load_ctx *c, const sf_cfg_node *map, int map_line, const char *path, const char *key,
                      const char *why, const sf_cfg_node **out, int *key_line)
{
    int kl;
    *out = get_at(map, key, &kl);
    if (key_line) *key_line = kl;
    if (*out != NULL) return SF_OK;
    char sub[PATH_LEN];
    path_key(sub, path, key);
    return FAIL(c, map, map_line, sub, "missing required key '%s'%s%s", key, why ? " " : "", why ? why : "");
}

static sf_status load_schema(const load_ctx *c, sf_input_config *in, const sf_cfg_node *node)
{
    const sf_cfg_node *map;
    SF_CALL(opt_map(c, node, "input.schema", "of column: type", &map));
    if (map->n == 0) return SF_OK;
    in->hints = calloc(map->n, sizeof *in->hints);
    SF_CHECK(in->hints != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    for (size_t i = 0; i < map->n; i++) {
        char sub[PATH_LEN];
        path_key(sub, "input.schema", map->keys[i]);
        if (map->keys[i][0] == '\0') return FAIL(c, map, map->key_lines[i], sub, "empty column name");
        static const char *const types[] = {"int64", "float64", "string", "timestamp", NULL};
        int t;
        SF_CALL(parse_enum(c, map->items[i], sub, types, &t));
        in->hints[i].name = dup_str(map->keys[i]);
        SF_CHECK(in->hints[i].name != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
        in->hints[i].type = sf_type_parse(types[t]);
        in->nhints = (int)i + 1;
        SF_CHECK(in->hints[i].type != SF_TYPE_NONE, SF_ERR_INTERNAL, "type '%s' is not known to the core",
                 types[t]);
    }
    return SF_OK;
}

static sf_status load_input(const load_ctx *c, sf_workflow *w, const sf_cfg_node *root)
{
    sf_input_config *in = &w->input;
    int kl;
    const sf_cfg_node *node, *v;
    SF_CALL(need(c, root, root->line, "", "input", "(format and path of the data)", &node, &kl));
    if (node->kind != SF_NODE_MAP)
        return FAIL(c, node, kl, "input", "expected a mapping with format and path, found %s",
                    sf__cfg_kind_name(node));
    SF_CALL(check_keys(c, node, "input", input_keys_all, NULL));

    static const char *const formats[] = {"csv", "hdf5", "synthetic", NULL};
    static const sf_input_format format_values[] = {SF_INPUT_CSV, SF_INPUT_HDF5, SF_INPUT_SYNTHETIC};
    int f;
    SF_CALL(need(c, node, kl, "input", "format", "(csv, hdf5 or synthetic)", &v, NULL));
    SF_CALL(parse_enum(c, v, "input.format", formats, &f));
    in->format = format_values[f];
    static const char *const *const lists[] = {input_keys_csv, input_keys_hdf5, input_keys_synth};
    char for_what[32];
    (void)snprintf(for_what, sizeof for_what, "format %s", formats[f]);
    SF_CALL(check_keys(c, node, "input", lists[f], for_what));

    uint64_t u;
    if (in->format == SF_INPUT_CSV || in->format == SF_INPUT_HDF5) {
        char why[48];
        (void)snprintf(why, sizeof why, "for format %s", formats[f]);
        SF_CALL(need(c, node, kl, "input", "path", why, &v, NULL));
        SF_CALL(parse_string(c, v, "input.path", &in->path));
        SF_CALL(resolve_path(c, v, &in->path));
        SF_CALL(load_schema(c, in, sf_cfg_get(node, "schema")));
    }
    if (in->format == SF_INPUT_HDF5) {
        if ((v = sf_cfg_get(node, "group")) != NULL) {
            SF_CALL(parse_string(c, v, "input.group", &in->group));
        } else if (in->group == NULL) {
            in->group = dup_str("/table");
            SF_CHECK(in->group != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
        }
    }
    if (in->format == SF_INPUT_CSV) {
        if ((v = sf_cfg_get(node, "delimiter")) != NULL) {
            SF_CALL(want_scalar(c, v, "input.delimiter", "a one-character delimiter"));
            if (strlen(v->scalar) != 1)
                return FAIL(c, v, 0, "input.delimiter", "must be exactly one byte, found '%s' (%zu bytes)",
                            v->scalar, strlen(v->scalar));
            if (strchr("\"\r\n", v->scalar[0]) != NULL)
                return FAIL(c, v, 0, "input.delimiter", "a quote or line break cannot be the delimiter");
            in->delimiter = v->scalar[0];
        }
        if ((v = sf_cfg_get(node, "on_bad_row")) != NULL) {
            static const char *const policies[] = {"fail", "skip", NULL};
            int p;
            SF_CALL(parse_enum(c, v, "input.on_bad_row", policies, &p));
            in->on_bad_row = p == 0 ? SF_BAD_ROW_FAIL : SF_BAD_ROW_SKIP;
        }
        if ((v = sf_cfg_get(node, "max_line_length")) != NULL) {
            SF_CALL(parse_size(c, v, "input.max_line_length", 1, SIZE_MAX, &u));
            in->max_line_length = (size_t)u;
        }
        if ((v = sf_cfg_get(node, "block_size")) != NULL) {
            SF_CALL(parse_size(c, v, "input.block_size", 1, SIZE_MAX, &u));
            in->block_size = (size_t)u;
        }
        if ((v = sf_cfg_get(node, "infer_rows")) != NULL) {
            SF_CALL(parse_uint(c, v, "input.infer_rows", 1, INT_MAX, &u));
            in->infer_rows = (size_t)u;
        }
        if ((v = sf_cfg_get(node, "fadvise")) != NULL) SF_CALL(parse_bool(c, v, "input.fadvise", &in->fadvise));
    }
    if (in->format == SF_INPUT_HDF5 && (v = sf_cfg_get(node, "mmap")) != NULL)
        SF_CALL(parse_bool(c, v, "input.mmap", &in->mmap));
    if (in->format == SF_INPUT_SYNTHETIC) {
        if ((v = sf_cfg_get(node, "generator")) != NULL) {
            SF_CALL(parse_string(c, v, "input.generator", &in->generator));
        } else if (in->generator == NULL) {
            in->generator = dup_str("requests");
            SF_CHECK(in->generator != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
        }
        SF_CALL(need(c, node, kl, "input", "rows", "for format synthetic", &v, NULL));
        SF_CALL(parse_uint(c, v, "input.rows", 1, UINT64_MAX, &in->rows));
        if ((v = sf_cfg_get(node, "seed")) != NULL) SF_CALL(parse_uint(c, v, "input.seed", 0, UINT64_MAX, &in->seed));
        if ((v = sf_cfg_get(node, "zipf")) != NULL) SF_CALL(parse_float(c, v, "input.zipf", 0.0, &in->zipf));
        if ((v = sf_cfg_get(node, "users")) != NULL)
            SF_CALL(parse_uint(c, v, "input.users", 1, UINT64_MAX, &in->users));
        if ((v = sf_cfg_get(node, "incidents")) != NULL) SF_CALL(parse_bool(c, v, "input.incidents", &in->incidents));
    }
    if ((v = sf_cfg_get(node, "batch_rows")) != NULL) {
        SF_CALL(parse_uint(c, v, "input.batch_rows", 1, INT_MAX, &u));
        in->batch_rows = (size_t)u;
    }
    return SF_OK;
}

static sf_status load_shard(const load_ctx *c, sf_workflow *w, const sf_cfg_node *root)
{
    static const char *const keys[] = {"strategy", "key", "shards", "map", "sample", "seed", NULL};
    static const char *const strategies[] = {"size", "hash", "range", "semantic", NULL};
    static const sf_shard_strategy strategy_values[] = {SF_SHARD_SIZE, SF_SHARD_HASH, SF_SHARD_RANGE,
                                                        SF_SHARD_SEMANTIC};
    sf_shard_config *s = &w->shard;
    int kl;
    const sf_cfg_node *node = get_at(root, "shard", &kl), *map, *v;
    SF_CALL(opt_map(c, node, "shard", NULL, &map));
    SF_CALL(check_keys(c, map, "shard", keys, NULL));
    int st = 0;
    if ((v = sf_cfg_get(map, "strategy")) != NULL) SF_CALL(parse_enum(c, v, "shard.strategy", strategies, &st));
    s->strategy = strategy_values[st];
    int key_line;
    if ((v = get_at(map, "key", &key_line)) != NULL) {
        SF_CALL(parse_string(c, v, "shard.key", &s->key));
        s->key_line = v->line > 0 ? v->line : key_line;
    } else if (s->strategy != SF_SHARD_SIZE) {
        return FAIL(c, map == &empty_map ? node : map, kl, "shard.key",
                    "missing required key 'key' for strategy %s (the column to shard by)", strategies[st]);
    }
    uint64_t u;
    if ((v = sf_cfg_get(map, "shards")) != NULL) {
        SF_CALL(parse_uint(c, v, "shard.shards", 1, MAX_SHARDS, &u));
        s->shards = (int)u;
    }
    if ((v = get_at(map, "map", &key_line)) != NULL) {
        if (s->strategy != SF_SHARD_SEMANTIC)
            return FAIL(c, v, key_line, "shard.map", "only used by strategy semantic (strategy is %s)",
                        strategies[st]);
        SF_CALL(parse_string(c, v, "shard.map", &s->map));
        SF_CALL(resolve_path(c, v, &s->map));
    }
    if ((v = sf_cfg_get(map, "sample")) != NULL) SF_CALL(parse_uint(c, v, "shard.sample", 1, UINT64_MAX, &s->sample));
    if ((v = sf_cfg_get(map, "seed")) != NULL) SF_CALL(parse_uint(c, v, "shard.seed", 0, UINT64_MAX, &s->seed));
    return SF_OK;
}

static sf_status load_distribute(const load_ctx *c, sf_workflow *w, const sf_cfg_node *root)
{
    static const char *const keys[] = {"mode",    "memory_budget", "morsel_rows",  "chunk_bytes", "reduce",
                                       "aspects", "exchange",      "overlap",      "batch_pieces", "pools", "in_place",
                                       NULL};
    static const char *const modes[] = {"static", "dynamic", "parallel-read", NULL};
    static const sf_dist_mode mode_values[] = {SF_DIST_STATIC, SF_DIST_DYNAMIC, SF_DIST_PARALLEL_READ};
    static const char *const exchanges[] = {"auto", "always", "never", NULL};
    static const char *const reduces[] = {"hierarchical", "flat", NULL};
    static const char *const schedules[] = {"concurrent", "sequential", NULL};
    sf_distribute_config *d = &w->distribute;
    const sf_cfg_node *map, *v;
    SF_CALL(opt_map(c, sf_cfg_get(root, "distribute"), "distribute", NULL, &map));
    SF_CALL(check_keys(c, map, "distribute", keys, NULL));
    int m;
    if ((v = sf_cfg_get(map, "mode")) != NULL) {
        SF_CALL(parse_enum(c, v, "distribute.mode", modes, &m));
        d->mode = mode_values[m];
    }
    if ((v = sf_cfg_get(map, "exchange")) != NULL) {
        SF_CALL(parse_enum(c, v, "distribute.exchange", exchanges, &m));
        d->exchange = (sf_exchange_mode)m;
    }
    if ((v = sf_cfg_get(map, "overlap")) != NULL) SF_CALL(parse_bool(c, v, "distribute.overlap", &d->overlap));
    if ((v = sf_cfg_get(map, "in_place")) != NULL) SF_CALL(parse_bool(c, v, "distribute.in_place", &d->in_place));
    if ((v = sf_cfg_get(map, "batch_pieces")) != NULL)
        SF_CALL(parse_bool(c, v, "distribute.batch_pieces", &d->batch_pieces));
    if ((v = sf_cfg_get(map, "pools")) != NULL) SF_CALL(parse_bool(c, v, "distribute.pools", &d->pools));
    if ((v = sf_cfg_get(map, "memory_budget")) != NULL)
        SF_CALL(parse_size(c, v, "distribute.memory_budget", 1, UINT64_MAX, &d->memory_budget));
    uint64_t u;
    if ((v = sf_cfg_get(map, "morsel_rows")) != NULL) {
        SF_CALL(parse_uint(c, v, "distribute.morsel_rows", 1, INT_MAX, &u));
        d->morsel_rows = (size_t)u;
    }
    if ((v = sf_cfg_get(map, "chunk_bytes")) != NULL)
        SF_CALL(parse_size(c, v, "distribute.chunk_bytes", 1, INT_MAX, &d->chunk_bytes));
    if ((v = sf_cfg_get(map, "reduce")) != NULL) {
        SF_CALL(parse_enum(c, v, "distribute.reduce", reduces, &m));
        d->reduce = m == 0 ? SF_REDUCE_HIERARCHICAL : SF_REDUCE_FLAT;
    }
    if ((v = sf_cfg_get(map, "aspects")) != NULL) {
        SF_CALL(parse_enum(c, v, "distribute.aspects", schedules, &m));
        d->aspects = m == 0 ? SF_ASPECTS_CONCURRENT : SF_ASPECTS_SEQUENTIAL;
    }
    return SF_OK;
}

/* A duration: a number with an optional unit ms, s, m or h (default s). */
static sf_status parse_duration(const load_ctx *c, const sf_cfg_node *node, const char *path, double *out)
{
    SF_CALL(want_scalar(c, node, path, "a duration such as 30s, 500ms or 2m"));
    const char *s = node->scalar;
    char *end = NULL;
    double v = strtod(s, &end);
    double unit = 1.0;
    if (end != s && strcmp(end, "ms") == 0) unit = 1e-3;
    else if (end != s && (strcmp(end, "s") == 0 || *end == '\0')) unit = 1.0;
    else if (end != s && strcmp(end, "m") == 0) unit = 60.0;
    else if (end != s && strcmp(end, "h") == 0) unit = 3600.0;
    else end = NULL;
    if (end == NULL || s[0] == '-' || s[0] == '+' || !isfinite(v) || v < 0)
        return FAIL(c, node, 0, path, "expected a duration such as 30s, 500ms or 2m, found '%s'", s);
    *out = v * unit;
    return SF_OK;
}

static sf_status load_checkpoint(const load_ctx *c, sf_workflow *w, const sf_cfg_node *root)
{
    static const char *const keys[] = {"dir", "enabled", "every_shards", "every_seconds", "restart", NULL};
    static const char *const modes[] = {"auto", "never", NULL};
    sf_checkpoint_config *k = &w->checkpoint;
    const sf_cfg_node *map, *v;
    SF_CALL(opt_map(c, sf_cfg_get(root, "checkpoint"), "checkpoint", NULL, &map));
    SF_CALL(check_keys(c, map, "checkpoint", keys, NULL));
    if ((v = sf_cfg_get(map, "dir")) != NULL) {
        SF_CALL(parse_string(c, v, "checkpoint.dir", &k->dir));
        SF_CALL(resolve_path(c, v, &k->dir));
    }
    if ((v = sf_cfg_get(map, "enabled")) != NULL) SF_CALL(parse_bool(c, v, "checkpoint.enabled", &k->enabled));
    if ((v = sf_cfg_get(map, "every_shards")) != NULL)
        SF_CALL(parse_uint(c, v, "checkpoint.every_shards", 0, UINT64_MAX, &k->every_shards));
    if ((v = sf_cfg_get(map, "every_seconds")) != NULL)
        SF_CALL(parse_duration(c, v, "checkpoint.every_seconds", &k->every_seconds));
    if ((v = sf_cfg_get(map, "restart")) != NULL) {
        int m;
        SF_CALL(parse_enum(c, v, "checkpoint.restart", modes, &m));
        k->restart = m == 0 ? SF_RESTART_AUTO : SF_RESTART_NEVER;
    }
    return SF_OK;
}

static sf_status load_cache(const load_ctx *c, sf_workflow *w, const sf_cfg_node *root)
{
    static const char *const keys[] = {"enabled", "dir", NULL};
    const sf_cfg_node *map, *v;
    SF_CALL(opt_map(c, sf_cfg_get(root, "cache"), "cache", NULL, &map));
    SF_CALL(check_keys(c, map, "cache", keys, NULL));
    if ((v = sf_cfg_get(map, "enabled")) != NULL) SF_CALL(parse_bool(c, v, "cache.enabled", &w->cache_enabled));
    if ((v = sf_cfg_get(map, "dir")) != NULL) {
        SF_CALL(parse_string(c, v, "cache.dir", &w->cache_dir));
        SF_CALL(resolve_path(c, v, &w->cache_dir));
    }
    return SF_OK;
}

static sf_status load_fault(const load_ctx *c, sf_workflow *w, const sf_cfg_node *root)
{
    static const char *const keys[] = {"inject",       "seed",  "max_attempts", "backoff",   "task_timeout",
                                       "min_coverage", "grace", "redistribute", "speculate", "watchdog",
                                       NULL};
    sf_fault_config *f = &w->fault;
    const sf_cfg_node *map, *v;
    SF_CALL(opt_map(c, sf_cfg_get(root, "fault"), "fault", NULL, &map));
    SF_CALL(check_keys(c, map, "fault", keys, NULL));
    uint64_t u;
    if ((v = sf_cfg_get(map, "inject")) != NULL) {
        int n = 0;
        char **specs = NULL;
        sf_status rc = parse_str_list(c, v, "fault.inject", &n, &specs);
        if (rc == SF_OK && n > 0) {
            f->inject = calloc((size_t)n, sizeof *f->inject);
            if (f->inject == NULL) rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (workflow)");
        }
        for (int i = 0; i < n && rc == SF_OK; i++) {
            rc = sf_fault_parse(specs[i], &f->inject[i]);
            if (rc != SF_OK) {
                char msg[1024], sub[PATH_LEN];
                snprintf(msg, sizeof msg, "%s", sf_error_message());
                if (v->kind == SF_NODE_SEQ) path_idx(sub, "fault.inject", (size_t)i);
                else (void)snprintf(sub, sizeof sub, "fault.inject");
                rc = FAIL(c, v->kind == SF_NODE_SEQ ? v->items[i] : v, 0, sub, "%s", msg);
            } else {
                f->ninject = i + 1;
            }
        }
        for (int i = 0; i < n && specs; i++) free(specs[i]);
        free(specs);
        SF_CALL(rc);
    }
    if ((v = sf_cfg_get(map, "seed")) != NULL) SF_CALL(parse_uint(c, v, "fault.seed", 0, UINT64_MAX, &f->seed));
    if ((v = sf_cfg_get(map, "max_attempts")) != NULL) {
        SF_CALL(parse_uint(c, v, "fault.max_attempts", 1, 100, &u));
        f->max_attempts = (int)u;
    }
    if ((v = sf_cfg_get(map, "backoff")) != NULL) SF_CALL(parse_duration(c, v, "fault.backoff", &f->backoff));
    if ((v = sf_cfg_get(map, "task_timeout")) != NULL)
        SF_CALL(parse_duration(c, v, "fault.task_timeout", &f->task_timeout));
    if ((v = sf_cfg_get(map, "min_coverage")) != NULL) {
        SF_CALL(parse_float(c, v, "fault.min_coverage", 0.0, &f->min_coverage));
        if (f->min_coverage > 1.0)
            return FAIL(c, v, 0, "fault.min_coverage", "must be at most 1, found '%s'", v->scalar);
    }
    if ((v = sf_cfg_get(map, "grace")) != NULL) SF_CALL(parse_duration(c, v, "fault.grace", &f->grace));
    if ((v = sf_cfg_get(map, "redistribute")) != NULL)
        SF_CALL(parse_bool(c, v, "fault.redistribute", &f->redistribute));
    if ((v = sf_cfg_get(map, "speculate")) != NULL) SF_CALL(parse_bool(c, v, "fault.speculate", &f->speculate));
    if ((v = sf_cfg_get(map, "watchdog")) != NULL) SF_CALL(parse_duration(c, v, "fault.watchdog", &f->watchdog));
    return SF_OK;
}

static sf_status load_agent(const load_ctx *c, sf_stage_config *st, int j, const sf_cfg_node *node,
                            const char *path)
{
    sf_agent_spec *a = &st->agents[j];
    char sub[PATH_LEN];
    if (node->kind != SF_NODE_MAP)
        return FAIL(c, node, 0, path, "expected a mapping such as {agent: stats, column: x}, found %s%s%s%s",
                    sf__cfg_kind_name(node), node->kind == SF_NODE_SCALAR ? " '" : "",
                    node->kind == SF_NODE_SCALAR ? node->scalar : "", node->kind == SF_NODE_SCALAR ? "'" : "");
    a->node = node;
    a->line = node->line;
    const sf_cfg_node *v;
    SF_CALL(need(c, node, node->line, path, "agent", "(the name of a registered agent)", &v, NULL));
    path_key(sub, path, "agent");
    SF_CALL(parse_string(c, v, sub, &a->agent));
    if (sf_agent_find(a->agent) == NULL) return FAIL(c, v, 0, sub, "unknown agent '%s'", a->agent);
    const sf_cfg_node *idnode = sf_cfg_get(node, "id");
    path_key(sub, path, "id");
    SF_CALL(parse_string(c, idnode ? idnode : v, sub, &a->id));
    if ((v = sf_cfg_get(node, "column")) != NULL) {
        path_key(sub, path, "column");
        SF_CALL(parse_string(c, v, sub, &a->column));
    }
    if ((v = sf_cfg_get(node, "by")) != NULL) {
        path_key(sub, path, "by");
        SF_CALL(parse_str_list(c, v, sub, &a->nby, &a->by));
    }
    if ((v = sf_cfg_get(node, "where")) != NULL) {
        path_key(sub, path, "where");
        SF_CALL(parse_string(c, v, sub, &a->where));
    }
    if ((v = sf_cfg_get(node, "baseline")) != NULL) {
        path_key(sub, path, "baseline");
        SF_CALL(parse_str_list(c, v, sub, &a->nbaseline, &a->baseline));
        for (int k = 0; k < a->nbaseline; k++) {
            const char *dot = strchr(a->baseline[k], '.');
            if (dot == NULL || dot == a->baseline[k] || dot[1] == '\0')
                return FAIL(c, v->kind == SF_NODE_SEQ ? v->items[k] : v, 0, sub,
                            "'%s' is not STAGE.AGENT_ID (an agent of an earlier stage)", a->baseline[k]);
        }
    }
    for (int k = 0; k < j; k++) {
        if (strcmp(st->agents[k].id, a->id) == 0) {
            const sf_cfg_node *at = idnode ? idnode : sf_cfg_get(node, "agent");
            path_key(sub, path, idnode ? "id" : "agent");
            char first[48] = "";
            if (st->agents[k].line > 0) (void)snprintf(first, sizeof first, " (first at line %d)", st->agents[k].line);
            return FAIL(c, at, 0, sub, "duplicate agent id '%s' in stage '%s'%s; give each agent its own id:",
                        a->id, st->name, first);
        }
    }
    return SF_OK;
}

/* Loads the agents of list v (path sub) into st->agents[at ...], aspect index asp. */
static sf_status load_agent_list(const load_ctx *c, sf_stage_config *st, const sf_cfg_node *v, int kl,
                                 const char *sub, int asp)
{
    if (sf__cfg_is_null(v) || (v->kind == SF_NODE_SEQ && v->n == 0))
        return FAIL(c, v, kl, sub, "at least one agent is required");
    if (v->kind != SF_NODE_SEQ)
        return FAIL(c, v, kl, sub, "expected a sequence of agents, found %s", sf__cfg_kind_name(v));
    SF_CHECK(v->n < INT_MAX / 2 && (size_t)st->nagents + v->n < INT_MAX / 2, SF_ERR_CONFIG, "%s: too many agents", sub);
    sf_agent_spec *ag = realloc(st->agents, ((size_t)st->nagents + v->n) * sizeof *ag);
    SF_CHECK(ag != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    memset(ag + st->nagents, 0, v->n * sizeof *ag);
    st->agents = ag;
    int at = st->nagents;
    for (size_t j = 0; j < v->n; j++) {
        char apath[PATH_LEN];
        path_idx(apath, sub, j);
        st->nagents = at + (int)j + 1;
        st->agents[at + (int)j].aspect = asp;
        SF_CALL(load_agent(c, st, at + (int)j, v->items[j], apath));
    }
    return SF_OK;
}

static sf_status load_aspect(const load_ctx *c, sf_stage_config *st, int k, const sf_cfg_node *node,
                             const char *path)
{
    static const char *const keys[] = {"name", "agents", "findings", NULL};
    char sub[PATH_LEN];
    sf_aspect_config *as = &st->aspects[k];
    if (node->kind != SF_NODE_MAP)
        return FAIL(c, node, 0, path, "expected a mapping with name, agents and findings, found %s",
                    sf__cfg_kind_name(node));
    as->line = node->line;
    SF_CALL(check_keys(c, node, path, keys, NULL));
    const sf_cfg_node *v;
    SF_CALL(need(c, node, node->line, path, "name", "(performance, security, ... or your own)", &v, NULL));
    path_key(sub, path, "name");
    SF_CALL(parse_string(c, v, sub, &as->name));
    for (int m = 0; m < k; m++)
        if (strcmp(st->aspects[m].name, as->name) == 0)
            return FAIL(c, v, 0, sub, "duplicate aspect '%s' in stage '%s'", as->name, st->name);
    int kl;
    SF_CALL(need(c, node, node->line, path, "agents", "(a list of agents)", &v, &kl));
    path_key(sub, path, "agents");
    as->agent0 = st->nagents;
    SF_CALL(load_agent_list(c, st, v, kl, sub, k));
    as->nagents = st->nagents - as->agent0;
    v = sf_cfg_get(node, "findings");
    if (v != NULL && !sf__cfg_is_null(v)) {
        path_key(sub, path, "findings");
        if (v->kind != SF_NODE_SEQ)
            return FAIL(c, v, 0, sub, "expected a sequence of finding rules, found %s", sf__cfg_kind_name(v));
        as->findings = v;
    }
    return SF_OK;
}

static sf_status load_stage(const load_ctx *c, sf_workflow *w, int i)
{
    static const char *const keys[] = {"name", "after", "agents", "aspects", NULL};
    const sf_cfg_node *node = c->stages->items[i], *v;
    sf_stage_config *st = &w->stages[i];
    char path[PATH_LEN], sub[PATH_LEN];
    path_idx(path, "stages", (size_t)i);
    if (node->kind != SF_NODE_MAP)
        return FAIL(c, node, 0, path, "expected a mapping with name and agents, found %s", sf__cfg_kind_name(node));
    st->line = node->line;
    SF_CALL(check_keys(c, node, path, keys, NULL));
    SF_CALL(need(c, node, node->line, path, "name", NULL, &v, NULL));
    path_key(sub, path, "name");
    SF_CALL(parse_string(c, v, sub, &st->name));
    for (int k = 0; k < i; k++) {
        if (strcmp(w->stages[k].name, st->name) == 0) {
            char first[48] = "";
            if (w->stages[k].line > 0) (void)snprintf(first, sizeof first, ", first at line %d", w->stages[k].line);
            return FAIL(c, v, 0, sub, "duplicate stage name '%s' (also stages[%d]%s)", st->name, k, first);
        }
    }
    if ((v = sf_cfg_get(node, "after")) != NULL) {
        path_key(sub, path, "after");
        SF_CALL(parse_str_list(c, v, sub, &st->nafter, &st->after));
    }
    int kl;
    const sf_cfg_node *asp = get_at(node, "aspects", &kl);
    if (asp == NULL || sf_cfg_get(node, "agents") != NULL) {
        SF_CALL(need(c, node, node->line, path, "agents", "(a list of agents, or aspects:)", &v, &kl));
        path_key(sub, path, "agents");
        SF_CALL(load_agent_list(c, st, v, kl, sub, -1));
    }
    if (asp != NULL) {
        path_key(sub, path, "aspects");
        if (sf__cfg_is_null(asp) || (asp->kind == SF_NODE_SEQ && asp->n == 0))
            return FAIL(c, asp, kl, sub, "at least one aspect is required (or leave aspects: out)");
        if (asp->kind != SF_NODE_SEQ)
            return FAIL(c, asp, kl, sub, "expected a sequence of aspects, found %s", sf__cfg_kind_name(asp));
        SF_CHECK(asp->n < 1000, SF_ERR_CONFIG, "%s: too many aspects", sub);
        st->aspects = calloc(asp->n, sizeof *st->aspects);
        SF_CHECK(st->aspects != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
        st->naspects = (int)asp->n;
        for (size_t k = 0; k < asp->n; k++) {
            char apath[PATH_LEN];
            path_idx(apath, sub, k);
            SF_CALL(load_aspect(c, st, (int)k, asp->items[k], apath));
        }
    }
    return SF_OK;
}

/* The node of after item k of stage i, for messages. */
static const sf_cfg_node *after_item(const load_ctx *c, int i, int k)
{
    const sf_cfg_node *a = sf_cfg_get(c->stages->items[i], "after");
    return a->kind == SF_NODE_SEQ ? a->items[k] : a;
}

static void after_path(char *dst, int i)
{
    (void)snprintf(dst, PATH_LEN, "stages[%d].after", i);
}

static sf_status order_stages(const load_ctx *c, sf_workflow *w)
{
    int n = w->nstages;
    char sub[PATH_LEN];
    for (int i = 0; i < n; i++) {
        sf_stage_config *st = &w->stages[i];
        st->after_idx = calloc((size_t)(st->nafter ? st->nafter : 1), sizeof *st->after_idx);
        SF_CHECK(st->after_idx != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
        for (int k = 0; k < st->nafter; k++) {
            int found = -1;
            for (int m = 0; m < n && found < 0; m++)
                if (strcmp(w->stages[m].name, st->after[k]) == 0) found = m;
            after_path(sub, i);
            const sf_cfg_node *item = after_item(c, i, k);
            if (found < 0) {
                char names[512];
                size_t len = 0;
                names[0] = '\0';
                for (int m = 0; m < n && len < sizeof names; m++) {
                    int wr = snprintf(names + len, sizeof names - len, "%s%s", m ? ", " : "", w->stages[m].name);
                    if (wr < 0) break;
                    len += (size_t)wr;
                }
                return FAIL(c, item, 0, sub, "unknown stage '%s' (stages: %s)", st->after[k], names);
            }
            if (found == i) return FAIL(c, item, 0, sub, "stage '%s' cannot run after itself", st->name);
            for (int m = 0; m < k; m++)
                if (st->after_idx[m] == found)
                    return FAIL(c, item, 0, sub, "stage '%s' is listed twice", st->after[k]);
            st->after_idx[k] = found;
        }
    }

    w->order = calloc((size_t)n, sizeof *w->order);
    w->level = calloc((size_t)n, sizeof *w->level);
    bool *done = calloc((size_t)n, sizeof *done);
    int *pos = malloc((size_t)n * sizeof *pos), *walk = malloc((size_t)(n + 1) * sizeof *walk);
    sf_status rc = SF_OK;
    SF_CHECK_GOTO(w->order && w->level && done && pos && walk, SF_ERR_NOMEM, out, "out of memory (workflow)");
    /* Kahn's algorithm, always taking the first declared ready stage, so the
     * order is stable under adding unrelated stages at the end. */
    for (int step = 0; step < n; step++) {
        int pick = -1;
        for (int i = 0; i < n && pick < 0; i++) {
            if (done[i]) continue;
            bool ready = true;
            for (int k = 0; k < w->stages[i].nafter && ready; k++) ready = done[w->stages[i].after_idx[k]];
            if (ready) pick = i;
        }
        if (pick < 0) {
            /* Every stage left waits for another stage left: walk the first
             * unfinished dependency from the first such stage until a stage
             * repeats; the walk from there is a cycle. */
            for (int i = 0; i < n; i++) pos[i] = -1;
            int cur = 0;
            while (done[cur]) cur++;
            int len = 0;
            while (pos[cur] < 0) {
                pos[cur] = len;
                walk[len++] = cur;
                const sf_stage_config *st = &w->stages[cur];
                int next = -1;
                for (int k = 0; k < st->nafter && next < 0; k++)
                    if (!done[st->after_idx[k]]) next = st->after_idx[k];
                cur = next;
            }
            /* walk[pos[cur]..len) depend on each other in walk order; print
             * it in run order (a -> b: b is after a), from its first
             * declared stage. */
            int first = pos[cur], lo = first;
            for (int k = first; k < len; k++)
                if (walk[k] < walk[lo]) lo = k;
            char cyc[1024];
            size_t cl = 0;
            cyc[0] = '\0';
            int ncyc = len - first;
            for (int s = 0; s <= ncyc && cl < sizeof cyc; s++) {
                int k = first + ((lo - first) - s + ncyc * 2) % ncyc;
                int wr = snprintf(cyc + cl, sizeof cyc - cl, "%s%s", s ? " -> " : "", w->stages[walk[k]].name);
                if (wr < 0) break;
                cl += (size_t)wr;
            }
            int kl;
            (void)get_at(c->stages->items[walk[lo]], "after", &kl);
            after_path(sub, walk[lo]);
            rc = FAIL(c, sf_cfg_get(c->stages->items[walk[lo]], "after"), kl, sub,
                      "dependency cycle: %s (each stage lists the one before it in after:)", cyc);
            goto out;
        }
        done[pick] = true;
        w->order[step] = pick;
        int lvl = 0;
        for (int k = 0; k < w->stages[pick].nafter; k++) {
            int l = w->level[w->stages[pick].after_idx[k]] + 1;
            if (l > lvl) lvl = l;
        }
        w->level[pick] = lvl;
    }
out:
    free(done);
    free(pos);
    free(walk);
    return rc;
}

static sf_status load_stages(load_ctx *c, sf_workflow *w, const sf_cfg_node *root)
{
    int kl;
    const sf_cfg_node *node;
    SF_CALL(need(c, root, root->line, "", "stages", "(a list of stages, each with a name and agents)", &node, &kl));
    if (sf__cfg_is_null(node) || (node->kind == SF_NODE_SEQ && node->n == 0))
        return FAIL(c, node, kl, "stages", "at least one stage is required");
    if (node->kind != SF_NODE_SEQ)
        return FAIL(c, node, kl, "stages", "expected a sequence of stages, found %s", sf__cfg_kind_name(node));
    SF_CHECK(node->n < INT_MAX, SF_ERR_CONFIG, "%s: too many stages", c->file);
    c->stages = node;
    w->stages = calloc(node->n, sizeof *w->stages);
    SF_CHECK(w->stages != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    w->nstages = (int)node->n;
    for (int i = 0; i < w->nstages; i++) SF_CALL(load_stage(c, w, i));
    return order_stages(c, w);
}

static sf_status validate(load_ctx *c, sf_workflow *w)
{
    static const char *const keys[] = {"name",   "input", "shard",     "distribute", "threads",    "output",
                                       "stages", "seed",  "synthesis", "plugins",    "checkpoint", "fault",
                                       "cache",  NULL};
    const sf_cfg_node *root = w->root, *v;
    if (root == NULL)
        return FAIL(c, NULL, 1, "", "the workflow is empty; it needs at least name, input and stages");
    if (root->kind != SF_NODE_MAP)
        return FAIL(c, root, 0, "", "expected a mapping of workflow keys (name, input, stages, ...), found %s",
                    sf__cfg_kind_name(root));
    SF_CALL(check_keys(c, root, "", keys, NULL));
    SF_CALL(need(c, root, root->line, "", "name", "(the name of the workflow)", &v, NULL));
    SF_CALL(parse_string(c, v, "name", &w->name));
    SF_CALL(load_input(c, w, root));
    SF_CALL(load_shard(c, w, root));
    SF_CALL(load_distribute(c, w, root));
    SF_CALL(load_checkpoint(c, w, root));
    SF_CALL(load_cache(c, w, root));
    SF_CALL(load_fault(c, w, root));
    if ((v = sf_cfg_get(root, "threads")) != NULL) {
        uint64_t u;
        SF_CALL(parse_uint(c, v, "threads", 0, INT_MAX, &u));
        w->threads = (int)u;
    }
    const sf_cfg_node *out;
    SF_CALL(opt_map(c, sf_cfg_get(root, "output"), "output", NULL, &out));
    static const char *const out_keys[] = {"dir", NULL};
    SF_CALL(check_keys(c, out, "output", out_keys, NULL));
    if ((v = sf_cfg_get(out, "dir")) != NULL) SF_CALL(parse_string(c, v, "output.dir", &w->out_dir));
    if ((v = sf_cfg_get(root, "seed")) != NULL) SF_CALL(parse_uint(c, v, "seed", 0, UINT64_MAX, &w->seed));
    int kl;
    if ((v = get_at(root, "synthesis", &kl)) != NULL && !sf__cfg_is_null(v)) {
        if (v->kind != SF_NODE_MAP)
            return FAIL(c, v, kl, "synthesis", "expected a mapping (combine:, conflicts:), found %s",
                        sf__cfg_kind_name(v));
        w->synthesis = v;
    }
    if ((v = sf_cfg_get(root, "plugins")) != NULL) {
        SF_CALL(parse_str_list(c, v, "plugins", &w->nplugins, &w->plugins));
        for (int k = 0; k < w->nplugins; k++) {
            const sf_cfg_node *item = v->kind == SF_NODE_SEQ ? v->items[k] : v;
            SF_CALL(resolve_path(c, item, &w->plugins[k]));
            /* Agents of plugins must exist before the stages name them. */
            sf_status rc = sf_plugin_load(w->plugins[k]);
            if (rc != SF_OK) {
                char msg[2048];
                snprintf(msg, sizeof msg, "%s", sf_error_message());
                return FAIL(c, item, 0, "plugins", "%s", msg);
            }
        }
    }
    return load_stages(c, w, root);
}

/* ---------------------------------------------------------------------------
 * --set overrides */

static sf_status remember(load_ctx *c, const sf_cfg_node *node, int set)
{
    if (c->norigins == c->cap_origins) {
        size_t cap = c->cap_origins ? 2 * c->cap_origins : 16;
        set_origin *o = realloc(c->origins, cap * sizeof *o);
        SF_CHECK(o != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
        c->origins = o;
        c->cap_origins = cap;
    }
    c->origins[c->norigins++] = (set_origin){node, set};
    return SF_OK;
}

static sf_status remember_tree(load_ctx *c, const sf_cfg_node *node, int set)
{
    SF_CALL(remember(c, node, set));
    for (size_t i = 0; i < node->n; i++) SF_CALL(remember_tree(c, node->items[i], set));
    return SF_OK;
}

/* Drops the origins of a subtree about to be freed, so that a later node at
 * the same address is not taken for it. */
static void forget_tree(load_ctx *c, const sf_cfg_node *node)
{
    for (size_t i = 0; i < c->norigins;) {
        if (c->origins[i].node == node) c->origins[i] = c->origins[--c->norigins];
        else i++;
    }
    for (size_t i = 0; i < node->n; i++) forget_tree(c, node->items[i]);
}

/* The value of a --set: YAML for a flow sequence or mapping, else the text. */
static sf_status set_value(const load_ctx *c, int set, const char *value, sf_cfg_node **out)
{
    *out = NULL;
    if (value[0] == '[' || value[0] == '{') {
        char name[PATH_LEN + 8];
        (void)snprintf(name, sizeof name, "--set %s", c->set_keys[set]);
        if (sf__cfg_parse(name, value, strlen(value), out) != SF_OK) {
            /* Positions inside a one-line value say little; keep the problem. */
            const char *m = strstr(sf_error_message(), "YAML error: ");
            char problem[512];
            (void)snprintf(problem, sizeof problem, "%s", m ? m + strlen("YAML error: ") : sf_error_message());
            return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__, "--set %s: value '%s' is not valid YAML: %s",
                                c->set_keys[set], value, problem);
        }
        if (*out != NULL) {
            sf__cfg_set_position(*out, 0, 0);
            return SF_OK;
        }
    }
    *out = sf__cfg_scalar_new(value, strlen(value), false, 0, 0);
    SF_CHECK(*out != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    return SF_OK;
}

static sf_status apply_set(load_ctx *c, sf_cfg_node **root, int set, const char *text)
{
    SF_CHECK(text != NULL, SF_ERR_ARG, "--set %d: missing override text", set);
    const char *eq = strchr(text, '=');
    SF_CHECK(eq != NULL && eq != text, SF_ERR_CONFIG, "--set %s: expected KEY.PATH=VALUE (for example shard.shards=32)",
             text);
    size_t klen = (size_t)(eq - text);
    char *key = malloc(klen + 1);
    SF_CHECK(key != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    memcpy(key, text, klen);
    key[klen] = '\0';
    c->set_keys[set] = key;

    if (*root == NULL) {
        *root = sf__cfg_container_new(SF_NODE_MAP, 0, 0);
        SF_CHECK(*root != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
        SF_CALL(remember(c, *root, set));
    }
    sf_cfg_node *cur = *root;
    const char *comp = key;
    for (;;) {
        const char *dot = strchr(comp, '.');
        size_t clen = dot ? (size_t)(dot - comp) : strlen(comp);
        bool last = dot == NULL;
        int plen = (int)(comp - key) - (comp > key);   /* the path before comp, for messages */
        SF_CHECK(clen > 0 && clen < PATH_LEN, SF_ERR_CONFIG, "--set %s: empty key component", key);
        char name[PATH_LEN];
        memcpy(name, comp, clen);
        name[clen] = '\0';
        sf_cfg_node **slot = NULL;
        if (cur->kind == SF_NODE_MAP) {
            for (size_t i = 0; i < cur->n && slot == NULL; i++)
                if (strcmp(cur->keys[i], name) == 0) slot = &cur->items[i];
            if (slot == NULL) {
                /* A key the map lacks is added; validation then says
                 * whether it is allowed there. */
                sf_cfg_node *fresh;
                if (last) SF_CALL(set_value(c, set, eq + 1, &fresh));
                else fresh = sf__cfg_container_new(SF_NODE_MAP, 0, 0);
                SF_CHECK(fresh != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
                sf_status rc = sf__cfg_map_append(cur, name, 0, fresh);
                if (rc != SF_OK) {
                    sf__cfg_node_free(fresh);
                    return rc;
                }
                SF_CALL(remember_tree(c, fresh, set));
                if (last) return SF_OK;
                cur = fresh;
                comp = dot + 1;
                continue;
            }
        } else if (cur->kind == SF_NODE_SEQ) {
            SF_CHECK(all_digits(name), SF_ERR_CONFIG, "--set %s: '%.*s' is a sequence; index it by number, not '%s'",
                     key, plen, key, name);
            unsigned long long idx = strtoull(name, NULL, 10);
            SF_CHECK(idx < cur->n, SF_ERR_CONFIG, "--set %s: index %s is out of range ('%.*s' has %zu item%s)", key,
                     name, plen, key, cur->n, cur->n == 1 ? "" : "s");
            slot = &cur->items[idx];
        } else {
            SF_CHECK(false, SF_ERR_CONFIG, "--set %s: '%.*s' is a scalar ('%s'); it has no key '%s'", key, plen,
                     key, cur->scalar, name);
        }
        if (last) {
            sf_cfg_node *fresh;
            SF_CALL(set_value(c, set, eq + 1, &fresh));
            sf_status rc = remember_tree(c, fresh, set);
            if (rc != SF_OK) {
                sf__cfg_node_free(fresh);
                return rc;
            }
            forget_tree(c, *slot);
            sf__cfg_node_free(*slot);
            *slot = fresh;
            return SF_OK;
        }
        if (sf__cfg_is_null(*slot)) {
            /* `shard:` with nothing under it reads as an empty mapping. */
            sf_cfg_node *fresh = sf__cfg_container_new(SF_NODE_MAP, (*slot)->line, (*slot)->col);
            SF_CHECK(fresh != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
            forget_tree(c, *slot);
            sf__cfg_node_free(*slot);
            *slot = fresh;
        }
        cur = *slot;
        comp = dot + 1;
    }
}

/* ---------------------------------------------------------------------------
 * Hash and JSON */

static sf_status encode_node(const sf_cfg_node *n, sf_buf *b)
{
    if (sf__cfg_is_null(n)) return sf_buf_put_u8(b, 'N');
    switch (n->kind) {
    case SF_NODE_SCALAR:
        SF_CALL(sf_buf_put_u8(b, 'S'));
        return sf_buf_put_str(b, n->scalar, strlen(n->scalar));
    case SF_NODE_MAP:
        SF_CALL(sf_buf_put_u8(b, 'M'));
        SF_CALL(sf_buf_put_u64(b, n->n));
        for (size_t i = 0; i < n->n; i++) {
            SF_CALL(sf_buf_put_str(b, n->keys[i], strlen(n->keys[i])));
            SF_CALL(encode_node(n->items[i], b));
        }
        return SF_OK;
    case SF_NODE_SEQ:
        SF_CALL(sf_buf_put_u8(b, 'Q'));
        SF_CALL(sf_buf_put_u64(b, n->n));
        for (size_t i = 0; i < n->n; i++) SF_CALL(encode_node(n->items[i], b));
        return SF_OK;
    }
    return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "workflow node of unknown kind %d", (int)n->kind);
}

/* The keys a restart may change without changing result.json. */
static bool run_only_key(const char *key)
{
    static const char *const keys[] = {"threads", "output", "distribute", "checkpoint", "fault", "cache", NULL};
    return in_list(keys, key);
}

static sf_status compute_hash(sf_workflow *w)
{
    sf_buf b;
    sf_buf_init(&b);
    sf_status rc = encode_node(w->root, &b);
    if (rc == SF_OK) {
        XXH64_hash_t h = XXH64(b.data, b.len, 0);
        (void)snprintf(w->config_hash, sizeof w->config_hash, "%016" PRIx64, (uint64_t)h);
    }
    /* The result hash: the root mapping without the run-only keys. */
    sf_buf_clear(&b);
    const sf_cfg_node *r = w->root;
    size_t kept = 0;
    for (size_t i = 0; i < r->n; i++) kept += !run_only_key(r->keys[i]);
    if (rc == SF_OK) rc = sf_buf_put_u8(&b, 'M');
    if (rc == SF_OK) rc = sf_buf_put_u64(&b, kept);
    for (size_t i = 0; i < r->n && rc == SF_OK; i++) {
        if (run_only_key(r->keys[i])) continue;
        rc = sf_buf_put_str(&b, r->keys[i], strlen(r->keys[i]));
        if (rc == SF_OK) rc = encode_node(r->items[i], &b);
    }
    if (rc == SF_OK) {
        XXH64_hash_t h = XXH64(b.data, b.len, 0);
        (void)snprintf(w->result_hash, sizeof w->result_hash, "%016" PRIx64, (uint64_t)h);
    }
    sf_buf_fini(&b);
    return rc;
}

void sf_workflow_level_hash(const sf_workflow *w, int level, char out[17])
{
    sf_buf b;
    sf_buf_init(&b);
    const sf_cfg_node *r = w->root;
    const sf_cfg_node *stages = sf_cfg_get(r, "stages");
    sf_status rc = sf_buf_put_u8(&b, 'L');
    for (size_t i = 0; i < r->n && rc == SF_OK; i++) {
        const char *k = r->keys[i];
        if (run_only_key(k) || strcmp(k, "stages") == 0 || strcmp(k, "synthesis") == 0 || strcmp(k, "name") == 0)
            continue;
        rc = sf_buf_put_str(&b, k, strlen(k));
        if (rc == SF_OK) rc = encode_node(r->items[i], &b);
    }
    for (int s = 0; s < w->nstages && rc == SF_OK && stages != NULL && stages->kind == SF_NODE_SEQ; s++) {
        if (w->level[s] > level || (size_t)s >= stages->n) continue;
        rc = sf_buf_put_u64(&b, (uint64_t)s);
        if (rc == SF_OK) rc = encode_node(stages->items[s], &b);
    }
    /* Out of memory: an empty key, which the cache never uses. */
    if (rc == SF_OK)
        (void)snprintf(out, 17, "%016" PRIx64, (uint64_t)XXH64(b.data, b.len, 0));
    else
        out[0] = '\0';
    sf_buf_fini(&b);
}


static void json_node(sf_json *j, const sf_cfg_node *n)
{
    if (sf__cfg_is_null(n)) {
        sf_json_null(j);
        return;
    }
    switch (n->kind) {
    case SF_NODE_SCALAR:
        if (!n->quoted && (strcmp(n->scalar, "true") == 0 || strcmp(n->scalar, "false") == 0))
            sf_json_bool(j, n->scalar[0] == 't');
        else if (!n->quoted && sf_json_is_number(n->scalar))
            sf_json_raw(j, n->scalar, strlen(n->scalar));
        else
            sf_json_str(j, n->scalar);
        break;
    case SF_NODE_MAP:
        sf_json_obj_begin(j);
        for (size_t i = 0; i < n->n; i++) {
            sf_json_key(j, n->keys[i]);
            json_node(j, n->items[i]);
        }
        sf_json_obj_end(j);
        break;
    case SF_NODE_SEQ:
        sf_json_arr_begin(j);
        for (size_t i = 0; i < n->n; i++) json_node(j, n->items[i]);
        sf_json_arr_end(j);
        break;
    }
}

void sf_workflow_write_json(const sf_workflow *w, sf_json *j)
{
    if (w == NULL || w->root == NULL) {
        sf_json_null(j);
        return;
    }
    json_node(j, w->root);
}

/* ---------------------------------------------------------------------------
 * Lifecycle */

void sf_workflow_destroy(sf_workflow **pw)
{
    if (pw == NULL || *pw == NULL) return;
    sf_workflow *w = *pw;
    free(w->file);
    free(w->name);
    sf_input_config_fini(&w->input);
    sf_checkpoint_config_fini(&w->checkpoint);
    sf_fault_config_fini(&w->fault);
    free(w->shard.key);
    free(w->shard.map);
    for (int i = 0; i < w->nstages && w->stages; i++) {
        sf_stage_config *st = &w->stages[i];
        free(st->name);
        for (int k = 0; k < st->nafter && st->after; k++) free(st->after[k]);
        free(st->after);
        free(st->after_idx);
        for (int k = 0; k < st->nagents && st->agents; k++) {
            sf_agent_spec *a = &st->agents[k];
            free(a->agent);
            free(a->id);
            free(a->column);
            for (int m = 0; m < a->nby && a->by; m++) free(a->by[m]);
            free(a->by);
            free(a->where);
            for (int m = 0; m < a->nbaseline && a->baseline; m++) free(a->baseline[m]);
            free(a->baseline);
        }
        free(st->agents);
        for (int k = 0; k < st->naspects && st->aspects; k++) free(st->aspects[k].name);
        free(st->aspects);
    }
    free(w->stages);
    free(w->order);
    free(w->level);
    free(w->out_dir);
    free(w->cache_dir);
    for (int k = 0; k < w->nplugins && w->plugins; k++) free(w->plugins[k]);
    free(w->plugins);
    sf__cfg_node_free(w->root);
    free(w);
    *pw = NULL;
}

sf_status sf_workflow_load(const char *path, int nsets, const char *const *sets, sf_workflow **out)
{
    *out = NULL;
    SF_CHECK(path != NULL && nsets >= 0 && (nsets == 0 || sets != NULL), SF_ERR_ARG,
             "sf_workflow_load: bad arguments");
    sf_status rc = SF_OK;
    load_ctx c = {.file = path, .nsets = nsets};
    sf_workflow *w = calloc(1, sizeof *w);
    SF_CHECK(w != NULL, SF_ERR_NOMEM, "out of memory (workflow)");
    sf_input_config_defaults(&w->input);
    w->shard.strategy = SF_SHARD_SIZE;
    w->shard.shards = 16;
    w->shard.sample = 100000;
    w->shard.seed = 1;
    w->distribute.mode = SF_DIST_STATIC;
    w->distribute.reduce = SF_REDUCE_HIERARCHICAL;
    w->distribute.aspects = SF_ASPECTS_CONCURRENT;
    w->seed = 1;
    w->distribute.memory_budget = UINT64_C(256) << 20;
    w->distribute.morsel_rows = 16384;
    w->distribute.chunk_bytes = INT_MAX;
    w->distribute.exchange = SF_EXCHANGE_AUTO;
    w->distribute.overlap = true;
    w->distribute.batch_pieces = true;
    w->distribute.in_place = true;
    w->distribute.pools = true;
    sf_checkpoint_config_defaults(&w->checkpoint);
    sf_fault_config_defaults(&w->fault);
    w->file = dup_str(path);
    SF_CHECK_GOTO(w->file != NULL, SF_ERR_NOMEM, done, "out of memory (workflow)");
    if (nsets > 0) {
        c.set_keys = calloc((size_t)nsets, sizeof *c.set_keys);
        SF_CHECK_GOTO(c.set_keys != NULL, SF_ERR_NOMEM, done, "out of memory (workflow)");
    }

    SF_CALL_GOTO(sf__cfg_parse_file(path, &w->root), done);
    for (int i = 0; i < nsets; i++) SF_CALL_GOTO(apply_set(&c, &w->root, i, sets[i]), done);
    sf_agents_register_builtin();
    SF_CALL_GOTO(validate(&c, w), done);
    SF_CALL_GOTO(compute_hash(w), done);
    *out = w;
    w = NULL;

done:
    for (int i = 0; c.set_keys && i < nsets; i++) free(c.set_keys[i]);
    free(c.set_keys);
    free(c.origins);
    sf_workflow_destroy(&w);
    return rc;
}
