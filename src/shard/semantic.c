/* Semantic sharding: rows with related keys stay together. A categorical key
 * (string or int64) maps to a group, through an optional key->group CSV
 * (shard.map, header "key,group"); keys the map does not name form a group of
 * their own, named after the key. The pre-pass counts the rows of every key;
 * finish() bin-packs whole groups onto the K shards, largest first (LPT), so
 * a group is never split. Routing is key -> group -> shard through a hash
 * table; string keys are looked up once per dictionary code of a batch. */
#define _POSIX_C_SOURCE 200809L

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shard/plan_impl.h"
#include "shardflow/io.h"

/* Groups listed per shard in describe(); the rest are counted. */
#define SEM_DESCRIBE_GROUPS 100
#define SEM_MAX_ENTRIES (UINT32_MAX / 2)

typedef struct sem_key {
    uint64_t hash;       /* table hash: XXH64 of the bytes (string), mix64 (int64) */
    int64_t ival;        /* int64 keys */
    size_t soff;         /* string keys: bytes in the arena */
    uint32_t slen;
    uint32_t map_line;   /* line in the map file, 0 if the map does not name it */
    int64_t group;       /* -1 until finish() for keys the map does not name */
    uint64_t count;      /* rows in the pre-pass */
    uint32_t shard;      /* set by finish() */
} sem_key;

typedef struct sem_group {
    size_t name_off;     /* name bytes in the arena */
    uint32_t name_len;
    bool unmapped;       /* a key the map does not name, grouped alone */
    uint64_t rows;
    uint32_t shard;
} sem_group;

typedef struct sem_plan {
    bool is_string;
    char *map_path;          /* owned copy of shard.map, NULL if none */
    sf_buf arena;            /* key bytes and group names */
    sem_key *keys;
    size_t nkeys, keys_cap;
    uint32_t *kslots;        /* open addressing: key index + 1, 0 = empty */
    size_t kmask;
    sem_group *groups;
    size_t ngroups, groups_cap;
    uint32_t *gslots;        /* group names -> index + 1 (map loading) */
    size_t gmask;
    size_t map_keys;         /* keys named by the map */
    uint64_t unmapped_keys;  /* distinct keys seen in the pre-pass, not in the map */
    uint64_t rows, null_rows;
    uint64_t *code_count;    /* observe() scratch, per dictionary code */
    size_t code_cap;
    /* finish(): groups in packing order and grouped by shard. */
    uint32_t *by_shard;      /* group indices, shard by shard, in packing order */
    size_t *shard_start;     /* K + 1 offsets into by_shard */
    uint64_t *load;          /* rows per shard */
} sem_plan;

static const char *arena_at(const sem_plan *s, size_t off)
{
    return s->arena.data != NULL ? (const char *)s->arena.data + off : "";
}

static sf_status arena_add(sem_plan *s, const char *bytes, size_t n, size_t *off)
{
    *off = s->arena.len;
    return sf_buf_append(&s->arena, n ? bytes : "", n);
}

/* ---- key table ---------------------------------------------------------- */

static uint64_t int_hash(int64_t v) { return sf__shard_mix64((uint64_t)v ^ UINT64_C(0x53454d414e544943)); }

static bool key_equal(const sem_plan *s, const sem_key *k, uint64_t h, int64_t iv, const char *str,
                      size_t len)
{
    if (k->hash != h) return false;
    if (!s->is_string) return k->ival == iv;
    return k->slen == len && memcmp(arena_at(s, k->soff), str, len) == 0;
}

/* Index of the key, or -1. */
static int64_t key_find(const sem_plan *s, uint64_t h, int64_t iv, const char *str, size_t len)
{
    if (s->kslots == NULL) return -1;
    for (size_t i = (size_t)h & s->kmask;; i = (i + 1) & s->kmask) {
        uint32_t v = s->kslots[i];
        if (v == 0) return -1;
        if (key_equal(s, &s->keys[v - 1], h, iv, str, len)) return (int64_t)v - 1;
    }
}

static sf_status grow_slots(uint32_t **slots, size_t *mask, size_t n_entries, const void *entries,
                            size_t stride, size_t hash_off)
{
    size_t cap = (*slots == NULL) ? 1024 : 2 * (*mask + 1);
    while (cap < 2 * (n_entries + 1)) cap *= 2;
    uint32_t *ns = calloc(cap, sizeof *ns);
    SF_CHECK(ns != NULL, SF_ERR_NOMEM, "out of memory growing a shard key table to %zu slots", cap);
    for (size_t e = 0; e < n_entries; e++) {
        uint64_t h;
        memcpy(&h, (const char *)entries + e * stride + hash_off, sizeof h);
        size_t i = (size_t)h & (cap - 1);
        while (ns[i] != 0) i = (i + 1) & (cap - 1);
        ns[i] = (uint32_t)(e + 1);
    }
    free(*slots);
    *slots = ns;
    *mask = cap - 1;
    return SF_OK;
}

/* Finds the key or adds it (group -1, count 0). */
static sf_status key_upsert(sem_plan *s, uint64_t h, int64_t iv, const char *str, size_t len,
                            size_t *idx)
{
    int64_t f = key_find(s, h, iv, str, len);
    if (f >= 0) {
        *idx = (size_t)f;
        return SF_OK;
    }
    SF_CHECK(s->nkeys < SEM_MAX_ENTRIES, SF_ERR_NOMEM, "semantic sharding: more than %u keys",
             (unsigned)SEM_MAX_ENTRIES);
    SF_CHECK(len <= UINT32_MAX, SF_ERR_ARG, "semantic sharding: key of %zu bytes is too long", len);
    if (s->nkeys == s->keys_cap) {
        size_t cap = s->keys_cap ? 2 * s->keys_cap : 256;
        sem_key *nk = realloc(s->keys, cap * sizeof *nk);
        SF_CHECK(nk != NULL, SF_ERR_NOMEM, "out of memory growing the semantic key table");
        s->keys = nk;
        s->keys_cap = cap;
    }
    if (s->kslots == NULL || 2 * (s->nkeys + 1) > s->kmask + 1)
        SF_CALL(grow_slots(&s->kslots, &s->kmask, s->nkeys, s->keys, sizeof *s->keys,
                           offsetof(sem_key, hash)));
    sem_key *k = &s->keys[s->nkeys];
    memset(k, 0, sizeof *k);
    k->hash = h;
    k->ival = iv;
    k->group = -1;
    if (s->is_string) {
        SF_CALL(arena_add(s, str, len, &k->soff));
        k->slen = (uint32_t)len;
    }
    size_t i = (size_t)h & s->kmask;
    while (s->kslots[i] != 0) i = (i + 1) & s->kmask;
    s->kslots[i] = (uint32_t)(s->nkeys + 1);
    *idx = s->nkeys++;
    return SF_OK;
}

/* ---- groups ------------------------------------------------------------- */

static uint64_t group_hash(const char *name, size_t len) { return sf__shard_hash_bytes(name, len); }

/* Appends a group whose name is len bytes at name_off in the arena. */
static sf_status group_new(sem_plan *s, size_t name_off, size_t len, bool unmapped, size_t *idx)
{
    SF_CHECK(s->ngroups < SEM_MAX_ENTRIES, SF_ERR_NOMEM, "semantic sharding: more than %u groups",
             (unsigned)SEM_MAX_ENTRIES);
    SF_CHECK(len <= UINT32_MAX, SF_ERR_ARG, "semantic sharding: group name of %zu bytes is too long",
             len);
    if (s->ngroups == s->groups_cap) {
        size_t cap = s->groups_cap ? 2 * s->groups_cap : 64;
        sem_group *ng = realloc(s->groups, cap * sizeof *ng);
        SF_CHECK(ng != NULL, SF_ERR_NOMEM, "out of memory growing the semantic group table");
        s->groups = ng;
        s->groups_cap = cap;
    }
    sem_group *g = &s->groups[s->ngroups];
    memset(g, 0, sizeof *g);
    g->name_off = name_off;
    g->name_len = (uint32_t)len;
    g->unmapped = unmapped;
    *idx = s->ngroups++;
    return SF_OK;
}

/* Appends a group named by a copy of name[0..len). */
static sf_status group_add(sem_plan *s, const char *name, size_t len, bool unmapped, size_t *idx)
{
    size_t off;
    SF_CHECK(len <= UINT32_MAX, SF_ERR_ARG, "semantic sharding: group name of %zu bytes is too long",
             len);
    SF_CALL(arena_add(s, name, len, &off));
    return group_new(s, off, len, unmapped, idx);
}

/* Group of the map by name, created on first use. The name index hashes
 * names afresh on growth, so it keeps its own hash array. */
static sf_status map_group(sem_plan *s, uint64_t **ghash, const char *name, size_t len, size_t *idx)
{
    uint64_t h = group_hash(name, len);
    if (s->gslots != NULL) {
        for (size_t i = (size_t)h & s->gmask;; i = (i + 1) & s->gmask) {
            uint32_t v = s->gslots[i];
            if (v == 0) break;
            const sem_group *g = &s->groups[v - 1];
            if ((*ghash)[v - 1] == h && g->name_len == len &&
                memcmp(arena_at(s, g->name_off), name, len) == 0) {
                *idx = v - 1;
                return SF_OK;
            }
        }
    }
    size_t before_cap = s->groups_cap;
    SF_CALL(group_add(s, name, len, false, idx));
    if (s->groups_cap != before_cap || *ghash == NULL) {
        uint64_t *nh = realloc(*ghash, s->groups_cap * sizeof *nh);
        SF_CHECK(nh != NULL, SF_ERR_NOMEM, "out of memory reading the shard map");
        *ghash = nh;
    }
    (*ghash)[*idx] = h;
    if (s->gslots == NULL || 2 * s->ngroups > s->gmask + 1)
        SF_CALL(grow_slots(&s->gslots, &s->gmask, s->ngroups, *ghash, sizeof **ghash, 0));
    else {
        size_t i = (size_t)h & s->gmask;
        while (s->gslots[i] != 0) i = (i + 1) & s->gmask;
        s->gslots[i] = (uint32_t)(*idx + 1);
    }
    return SF_OK;
}

/* ---- the map file ------------------------------------------------------- */

static bool parse_int64(const char *str, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, str, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno != 0 || *end != '\0' || end == buf) return false;
    *out = (int64_t)v;
    return true;
}

/* The map's header must name the columns "key" and "group". */
static sf_status check_header(const char *path, const sf_schema *sch)
{
    if (sf_schema_find(sch, "key") >= 0 && sf_schema_find(sch, "group") >= 0) return SF_OK;
    char found[256];
    size_t used = 0;
    found[0] = '\0';
    for (int i = 0; i < sch->ncols && used + 1 < sizeof found; i++) {
        int w = snprintf(found + used, sizeof found - used, "%s%s", i ? "," : "",
                         sch->fields[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                        "%s:1: shard map: expected the header 'key,group', found '%s'", path,
                        found);
}

/* 1-based line number of the byte at offset off of the file at path (only
 * used to word an error, so reading the file again is fine). */
static uint64_t line_at(const char *path, uint64_t off)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) return 0;
    uint64_t line = 1, pos = 0;
    int ch;
    while (pos < off && (ch = fgetc(f)) != EOF) {
        if (ch == '\n') line++;
        pos++;
    }
    fclose(f);
    return line;
}

static sf_status load_map(sf_shard_plan *p, sem_plan *s)
{
    sf_status rc = SF_OK;
    const char *path = s->map_path;
    sf_input_config ic;
    sf_reader *rd = NULL;
    sf_batch b;
    bool have_batch = false;
    uint64_t *ghash = NULL;

    sf_input_config_defaults(&ic);
    ic.format = SF_INPUT_CSV;
    ic.path = strdup(path);
    ic.hints = calloc(2, sizeof *ic.hints);
    SF_CHECK_GOTO(ic.path != NULL && ic.hints != NULL, SF_ERR_NOMEM, done,
                  "out of memory reading the shard map");
    ic.nhints = 2;
    ic.hints[0].name = strdup("key");
    ic.hints[0].type = SF_STRING;
    ic.hints[1].name = strdup("group");
    ic.hints[1].type = SF_STRING;
    SF_CHECK_GOTO(ic.hints[0].name != NULL && ic.hints[1].name != NULL, SF_ERR_NOMEM, done,
                  "out of memory reading the shard map");

    rc = sf_reader_open(&ic, &rd);
    if (rc != SF_OK) {
        /* The reader refuses hints for columns the header lacks; open it
         * again without hints to tell a wrong header from other failures. */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", sf_error_message());
        sf_status first = rc;
        ic.nhints = 0;
        sf_status again = sf_reader_open(&ic, &rd);
        ic.nhints = 2;
        if (again == SF_OK) SF_CALL_GOTO(check_header(path, sf_reader_schema(rd)), done);
        rc = sf_error_set(first, __FILE__, __LINE__, "%s: shard.map: %s", p->file, msg);
        goto done;
    }
    const sf_schema *sch = sf_reader_schema(rd);
    SF_CALL_GOTO(check_header(path, sch), done);
    int ck = sf_schema_find(sch, "key"), cg = sf_schema_find(sch, "group");
    SF_CHECK_GOTO(sch->fields[ck].type == SF_STRING && sch->fields[cg].type == SF_STRING,
                  SF_ERR_INTERNAL, done, "%s: shard map: columns were not read as strings", path);
    SF_CALL_GOTO(sf_reader_batch_init(rd, &b), done);
    have_batch = true;
    for (;;) {
        bool eof = false;
        SF_CALL_GOTO(sf_reader_next(rd, &b, &eof), done);
        if (eof || b.nrows == 0) break;
        const sf_column *kc = &b.cols[ck], *gc = &b.cols[cg];
        for (size_t i = 0; i < b.nrows; i++) {
            /* The record's line, counted from its byte offset (quoted
             * fields may span lines; blank lines are skipped). */
            uint64_t line = b.row_offset ? line_at(path, (uint64_t)b.row_offset[i]) : b.first_row + i + 2;
            size_t klen = 0, glen = 0;
            const char *kstr = "", *gstr = "";
            if (!sf_col_is_null(kc, i)) kstr = sf_dict_str(&kc->dict, kc->code[i], &klen);
            if (!sf_col_is_null(gc, i)) gstr = sf_dict_str(&gc->dict, gc->code[i], &glen);
            SF_CHECK_GOTO(klen > 0, SF_ERR_PARSE, done, "%s:%" PRIu64 ":%d: shard map: empty key",
                          path, line, ck + 1);
            SF_CHECK_GOTO(glen > 0, SF_ERR_PARSE, done,
                          "%s:%" PRIu64 ":%d: shard map: key '%.*s' has an empty group", path, line,
                          cg + 1, (int)klen, kstr);
            int64_t iv = 0;
            uint64_t h;
            if (s->is_string) {
                h = sf__shard_hash_bytes(kstr, klen);
            } else {
                SF_CHECK_GOTO(parse_int64(kstr, klen, &iv), SF_ERR_PARSE, done,
                              "%s:%" PRIu64 ":%d: shard map: key '%.*s' is not an int64 "
                              "(shard.key '%s' is an int64 column)",
                              path, line, ck + 1, (int)klen, kstr, p->key);
                h = int_hash(iv);
            }
            size_t g, ki;
            SF_CALL_GOTO(map_group(s, &ghash, gstr, glen, &g), done);
            SF_CALL_GOTO(key_upsert(s, h, iv, kstr, klen, &ki), done);
            sem_key *k = &s->keys[ki];
            if (k->group >= 0) {
                const sem_group *old = &s->groups[k->group];
                SF_CHECK_GOTO((size_t)k->group == g, SF_ERR_PARSE, done,
                              "%s:%" PRIu64 ":%d: shard map: key '%.*s' is mapped to '%.*s' here "
                              "and to '%.*s' on line %u",
                              path, line, cg + 1, (int)klen, kstr, (int)glen, gstr, (int)old->name_len,
                              arena_at(s, old->name_off), k->map_line);
                continue;
            }
            k->group = (int64_t)g;
            k->map_line = line > UINT32_MAX ? UINT32_MAX : (uint32_t)line;
            s->map_keys++;
        }
    }
done:
    if (have_batch) sf_batch_fini(&b);
    sf_reader_destroy(&rd);
    sf_input_config_fini(&ic);
    free(ghash);
    free(s->gslots);
    s->gslots = NULL;
    return rc;
}

/* ---- lifecycle ---------------------------------------------------------- */

static sf_status sem_init(sf_shard_plan *p, const sf_shard_config *cfg)
{
    sem_plan *s = calloc(1, sizeof *s);
    SF_CHECK(s != NULL, SF_ERR_NOMEM, "out of memory creating the shard plan");
    p->impl = s;
    sf_buf_init(&s->arena);
    s->is_string = p->key_type == SF_STRING;
    if (cfg->map != NULL && cfg->map[0] != '\0') {
        s->map_path = strdup(cfg->map);
        SF_CHECK(s->map_path != NULL, SF_ERR_NOMEM, "out of memory creating the shard plan");
        SF_CALL(load_map(p, s));
    }
    return SF_OK;
}

/* Frees and zeroes everything but map_path (which comes from the config
 * and outlives a decode that replaces the rest). */
static void sem_clear(sem_plan *s)
{
    sf_buf_fini(&s->arena);
    free(s->keys);
    free(s->kslots);
    free(s->groups);
    free(s->gslots);
    free(s->code_count);
    free(s->by_shard);
    free(s->shard_start);
    free(s->load);
    char *map_path = s->map_path;
    bool is_string = s->is_string;
    memset(s, 0, sizeof *s);
    sf_buf_init(&s->arena);
    s->map_path = map_path;
    s->is_string = is_string;
}

static void sem_destroy(sf_shard_plan *p)
{
    sem_plan *s = p->impl;
    sem_clear(s);
    free(s->map_path);
    free(s);
    p->impl = NULL;
}

/* ---- pre-pass ----------------------------------------------------------- */

static sf_status count_string(sem_plan *s, const sf_column *key, uint32_t code, uint64_t n)
{
    size_t len, idx;
    SF_CHECK(code < key->dict.n, SF_ERR_INTERNAL, "semantic sharding: dictionary code %u of %u",
             code, key->dict.n);
    const char *str = sf_dict_str(&key->dict, code, &len);
    SF_CALL(key_upsert(s, sf__shard_hash_bytes(str, len), 0, str, len, &idx));
    s->keys[idx].count += n;
    return SF_OK;
}

static sf_status sem_observe(sf_shard_plan *p, const sf_batch *b, const sf_column *key)
{
    sem_plan *s = p->impl;
    size_t n = b->nrows;
    uint64_t present = 0;
    if (s->is_string && sf__shard_use_code_cache(key, n)) {
        /* Count rows per code, then touch the table once per code. */
        size_t nd = key->dict.n;
        if (nd > s->code_cap) {
            uint64_t *cc = realloc(s->code_count, nd * sizeof *cc);
            SF_CHECK(cc != NULL, SF_ERR_NOMEM, "out of memory counting keys (%zu codes)", nd);
            s->code_count = cc;
            s->code_cap = nd;
        }
        if (nd > 0) memset(s->code_count, 0, nd * sizeof *s->code_count);
        for (size_t i = 0; i < n; i++) {
            if (sf_col_is_null(key, i)) continue;
            uint32_t c = key->code[i];
            SF_CHECK(c < nd, SF_ERR_INTERNAL, "semantic sharding: dictionary code %u of %zu", c, nd);
            s->code_count[c]++;
            present++;
        }
        for (uint32_t c = 0; c < nd; c++)
            if (s->code_count[c] > 0) SF_CALL(count_string(s, key, c, s->code_count[c]));
    } else if (s->is_string) {
        for (size_t i = 0; i < n; i++) {
            if (sf_col_is_null(key, i)) continue;
            SF_CALL(count_string(s, key, key->code[i], 1));
            present++;
        }
    } else {
        for (size_t i = 0; i < n; i++) {
            if (sf_col_is_null(key, i)) continue;
            int64_t v = key->i64[i];
            size_t idx;
            SF_CALL(key_upsert(s, int_hash(v), v, NULL, 0, &idx));
            s->keys[idx].count++;
            present++;
        }
    }
    s->rows += present;
    s->null_rows += n - present;
    return SF_OK;
}

/* ---- packing ------------------------------------------------------------ */

/* One group as the packing sorts it; self-contained so qsort needs no
 * context. */
typedef struct pack_item {
    uint64_t rows;
    const char *name;
    uint32_t name_len;
    bool unmapped;
    uint32_t group;
} pack_item;

/* Packing order: rows descending, then name ascending (bytes), then groups
 * from the map before lone unmapped keys of the same name. A total order,
 * so the packing never depends on table or input order. */
static int cmp_pack(const void *a, const void *b)
{
    const pack_item *x = a, *y = b;
    if (x->rows != y->rows) return x->rows > y->rows ? -1 : 1;
    size_t n = x->name_len < y->name_len ? x->name_len : y->name_len;
    int c = n ? memcmp(x->name, y->name, n) : 0;
    if (c != 0) return c;
    if (x->name_len != y->name_len) return x->name_len < y->name_len ? -1 : 1;
    return (int)x->unmapped - (int)y->unmapped;
}

/* Min-heap of shards on (load, index). */
static bool shard_less(const uint64_t *load, uint32_t a, uint32_t b)
{
    return load[a] < load[b] || (load[a] == load[b] && a < b);
}

static void heap_down(uint32_t *h, size_t n, size_t i, const uint64_t *load)
{
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) return;
        if (c + 1 < n && shard_less(load, h[c + 1], h[c])) c++;
        if (!shard_less(load, h[c], h[i])) return;
        uint32_t t = h[c];
        h[c] = h[i];
        h[i] = t;
        i = c;
    }
}

static sf_status sem_finish(sf_shard_plan *p, uint64_t total_rows, uint64_t data_start,
                            uint64_t data_bytes)
{
    sf_status rc = SF_OK;
    sem_plan *s = p->impl;
    size_t k = (size_t)p->k;
    pack_item *items = NULL;
    uint32_t *order = NULL, *heap = NULL;
    size_t *fill = NULL;

    /* Lone groups for keys the map does not name, in key order; their
     * indices do not matter, since packing sorts by (rows, name). */
    char num[32];
    for (size_t i = 0; i < s->nkeys; i++) {
        if (s->keys[i].group >= 0) continue;
        size_t g;
        if (s->is_string) {
            /* The lone group shares the key's bytes in the arena. */
            SF_CALL_GOTO(group_new(s, s->keys[i].soff, s->keys[i].slen, true, &g), done);
        } else {
            size_t len = (size_t)snprintf(num, sizeof num, "%" PRId64, s->keys[i].ival);
            SF_CALL_GOTO(group_add(s, num, len, true, &g), done);
        }
        s->keys[i].group = (int64_t)g;
        s->unmapped_keys++;
    }
    for (size_t i = 0; i < s->nkeys; i++) s->groups[s->keys[i].group].rows += s->keys[i].count;

    items = malloc((s->ngroups ? s->ngroups : 1) * sizeof *items);
    order = malloc((s->ngroups ? s->ngroups : 1) * sizeof *order);
    heap = malloc(k * sizeof *heap);
    s->load = calloc(k, sizeof *s->load);
    s->shard_start = calloc(k + 1, sizeof *s->shard_start);
    s->by_shard = malloc((s->ngroups ? s->ngroups : 1) * sizeof *s->by_shard);
    fill = calloc(k, sizeof *fill);
    SF_CHECK_GOTO(items && order && heap && s->load && s->shard_start && s->by_shard && fill, SF_ERR_NOMEM,
                  done, "out of memory packing %zu groups", s->ngroups);
    for (size_t g = 0; g < s->ngroups; g++) {
        const sem_group *gr = &s->groups[g];
        items[g] = (pack_item){gr->rows, arena_at(s, gr->name_off), gr->name_len, gr->unmapped,
                               (uint32_t)g};
    }
    qsort(items, s->ngroups, sizeof *items, cmp_pack);
    for (size_t g = 0; g < s->ngroups; g++) order[g] = items[g].group;

    /* LPT: each group in turn onto the least loaded shard (lowest index on
     * ties). All loads start at 0, so 0..K-1 is already a valid heap. */
    for (size_t i = 0; i < k; i++) heap[i] = (uint32_t)i;
    for (size_t i = 0; i < s->ngroups; i++) {
        sem_group *g = &s->groups[order[i]];
        uint32_t sh = heap[0];
        g->shard = sh;
        s->load[sh] += g->rows;
        heap_down(heap, k, 0, s->load);
    }
    for (size_t i = 0; i < s->nkeys; i++) s->keys[i].shard = s->groups[s->keys[i].group].shard;

    /* Groups by shard, each shard's list in packing order. */
    for (size_t g = 0; g < s->ngroups; g++) s->shard_start[s->groups[g].shard + 1]++;
    for (size_t i = 0; i < k; i++) s->shard_start[i + 1] += s->shard_start[i];
    for (size_t i = 0; i < s->ngroups; i++) {
        uint32_t sh = s->groups[order[i]].shard;
        s->by_shard[s->shard_start[sh] + fill[sh]++] = order[i];
    }
done:
    free(items);
    free(order);
    free(heap);
    free(fill);
    free(s->code_count);
    s->code_count = NULL;
    s->code_cap = 0;
    return rc;
}

/* ---- routing ------------------------------------------------------------ */

static uint32_t route_string(const sf_shard_plan *p, const sem_plan *s, const sf_column *key,
                             size_t row)
{
    size_t len;
    const char *str = sf_dict_str(&key->dict, key->code[row], &len);
    uint64_t h = sf__shard_hash_bytes(str, len);
    int64_t f = key_find(s, h, 0, str, len);
    /* A key the pre-pass never saw still goes to a stable shard. */
    return f >= 0 ? s->keys[f].shard : (uint32_t)(h % (uint64_t)p->k);
}

static sf_status sem_route(const sf_shard_plan *p, const sf_batch *b, const sf_column *key,
                           uint32_t *shard)
{
    const sem_plan *s = p->impl;
    size_t n = b->nrows;
    if (!s->is_string) {
        for (size_t i = 0; i < n; i++) {
            if (sf_col_is_null(key, i)) {
                shard[i] = 0;
                continue;
            }
            int64_t v = key->i64[i];
            int64_t f = key_find(s, int_hash(v), v, NULL, 0);
            shard[i] = f >= 0 ? s->keys[f].shard
                              : (uint32_t)(sf_shard_key_hash(key, i) % (uint64_t)p->k);
        }
        return SF_OK;
    }
    uint32_t nd = key->dict.n;
    for (size_t i = 0; i < n; i++)
        SF_CHECK(sf_col_is_null(key, i) || key->code[i] < nd, SF_ERR_INTERNAL,
                 "shard plan: row %zu of column '%s' has dictionary code %u of %u", i, p->key,
                 key->code[i], nd);
    if (nd > 0 && sf__shard_use_code_cache(key, n)) {
        /* Per-batch cache: shard of each code, looked up on first use. */
        uint32_t *cache = malloc((size_t)nd * sizeof *cache);
        SF_CHECK(cache != NULL, SF_ERR_NOMEM, "out of memory routing a batch (%u codes)", nd);
        for (uint32_t c = 0; c < nd; c++) cache[c] = UINT32_MAX;
        for (size_t i = 0; i < n; i++) {
            if (sf_col_is_null(key, i)) {
                shard[i] = 0;
                continue;
            }
            uint32_t c = key->code[i];
            if (cache[c] == UINT32_MAX) cache[c] = route_string(p, s, key, i);
            shard[i] = cache[c];
        }
        free(cache);
        return SF_OK;
    }
    for (size_t i = 0; i < n; i++)
        shard[i] = sf_col_is_null(key, i) ? 0 : route_string(p, s, key, i);
    return SF_OK;
}

/* ---- describe ----------------------------------------------------------- */

static void group_name_json(const sem_plan *s, sf_json *j, const sem_group *g)
{
    sf_json_strn(j, arena_at(s, g->name_off), g->name_len);
}

static void sem_describe(const sf_shard_plan *p, sf_json *j)
{
    const sem_plan *s = p->impl;
    sf_json_key(j, "map");
    if (s->map_path != NULL)
        sf_json_str(j, s->map_path);
    else
        sf_json_null(j);
    sf_json_key(j, "map_keys");
    sf_json_uint(j, s->map_keys);
    sf_json_key(j, "keys");
    sf_json_uint(j, s->nkeys);
    sf_json_key(j, "rows");
    sf_json_uint(j, s->rows);
    sf_json_key(j, "null_rows");
    sf_json_uint(j, s->null_rows);
    sf_json_key(j, "unmapped_keys");
    sf_json_uint(j, s->unmapped_keys);
    sf_json_key(j, "group_count");
    sf_json_uint(j, s->ngroups);
    if (!p->finished) return;
    double mean = (double)s->rows / (double)p->k;
    sf_json_key(j, "mean_shard_rows");
    sf_json_num(j, mean);
    sf_json_key(j, "groups");
    sf_json_arr_begin(j);
    for (int sh = 0; sh < p->k; sh++) {
        size_t a = s->shard_start[sh], e = s->shard_start[sh + 1];
        sf_json_obj_begin(j);
        sf_json_key(j, "shard");
        sf_json_int(j, sh);
        sf_json_key(j, "rows");
        sf_json_uint(j, s->load[sh]);
        sf_json_key(j, "groups");
        sf_json_arr_begin(j);
        for (size_t i = a; i < e && i - a < SEM_DESCRIBE_GROUPS; i++) {
            const sem_group *g = &s->groups[s->by_shard[i]];
            sf_json_obj_begin(j);
            sf_json_key(j, "group");
            group_name_json(s, j, g);
            sf_json_key(j, "rows");
            sf_json_uint(j, g->rows);
            if (g->unmapped && s->map_path != NULL) {
                sf_json_key(j, "unmapped");
                sf_json_bool(j, true);
            }
            sf_json_obj_end(j);
        }
        sf_json_arr_end(j);
        if (e - a > SEM_DESCRIBE_GROUPS) {
            sf_json_key(j, "groups_omitted");
            sf_json_uint(j, e - a - SEM_DESCRIBE_GROUPS);
        }
        sf_json_obj_end(j);
    }
    sf_json_arr_end(j);
    /* Groups that alone outweigh the mean shard, in packing order. */
    sf_json_key(j, "heavy_groups");
    sf_json_arr_begin(j);
    for (int sh = 0; sh < p->k; sh++) {
        for (size_t i = s->shard_start[sh]; i < s->shard_start[sh + 1]; i++) {
            const sem_group *g = &s->groups[s->by_shard[i]];
            if ((long double)g->rows * p->k <= (long double)s->rows) continue;
            sf_json_obj_begin(j);
            sf_json_key(j, "group");
            group_name_json(s, j, g);
            sf_json_key(j, "rows");
            sf_json_uint(j, g->rows);
            sf_json_key(j, "mean_shard_rows");
            sf_json_num(j, mean);
            sf_json_key(j, "shard");
            sf_json_int(j, sh);
            sf_json_key(j, "note");
            sf_json_str(j, "this group alone is larger than the mean shard and is never split");
            sf_json_obj_end(j);
        }
    }
    sf_json_arr_end(j);
}

/* ---- portable state ----------------------------------------------------- */

/* Body: has_map (u8, checked against this plan's config, since describe()
 * reports the map from it), rows and null_rows (u64); the groups (u64
 * count) in describe()'s order, shard by shard in packing order, each as
 * shard (u32), unmapped (u8), rows (u64) and, for groups of the map, the
 * name (u32 length, bytes); then the keys (u64 count), each as its bytes
 * (u32 length, bytes) or its int64, and the index of its group in that
 * order (u32). A group of an unmapped key carries no name: it is named
 * after its one key, as finish() names it. Key row counts and map lines
 * are pre-pass scratch that neither route() nor describe() reads, and are
 * not carried. */
#define SEM_GROUP_MIN_BYTES 13
#define SEM_STR_KEY_MIN_BYTES 8
#define SEM_INT_KEY_MIN_BYTES 12

static sf_status sem_encode(const sf_shard_plan *p, sf_buf *out)
{
    sf_status rc = SF_OK;
    const sem_plan *s = p->impl;
    /* Position of each group in describe()'s order, which is the order the
     * groups are written in and the index the keys refer to. */
    uint32_t *pos = malloc((s->ngroups ? s->ngroups : 1) * sizeof *pos);
    SF_CHECK(pos != NULL, SF_ERR_NOMEM, "out of memory encoding %zu groups", s->ngroups);
    for (size_t i = 0; i < s->ngroups; i++) pos[s->by_shard[i]] = (uint32_t)i;
    SF_CALL_GOTO(sf_buf_reserve(out, 25 + s->ngroups * SEM_GROUP_MIN_BYTES +
                                         s->nkeys * SEM_INT_KEY_MIN_BYTES + s->arena.len),
                 done);
    SF_CALL_GOTO(sf_buf_put_u8(out, s->map_path != NULL), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->rows), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->null_rows), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->ngroups), done);
    for (size_t i = 0; i < s->ngroups; i++) {
        const sem_group *g = &s->groups[s->by_shard[i]];
        SF_CALL_GOTO(sf_buf_put_u32(out, g->shard), done);
        SF_CALL_GOTO(sf_buf_put_u8(out, g->unmapped), done);
        SF_CALL_GOTO(sf_buf_put_u64(out, g->rows), done);
        if (!g->unmapped)
            SF_CALL_GOTO(sf_buf_put_str(out, arena_at(s, g->name_off), g->name_len), done);
    }
    SF_CALL_GOTO(sf_buf_put_u64(out, s->nkeys), done);
    for (size_t i = 0; i < s->nkeys; i++) {
        const sem_key *k = &s->keys[i];
        if (s->is_string)
            SF_CALL_GOTO(sf_buf_put_str(out, arena_at(s, k->soff), k->slen), done);
        else
            SF_CALL_GOTO(sf_buf_put_i64(out, k->ival), done);
        SF_CALL_GOTO(sf_buf_put_u32(out, pos[k->group]), done);
    }
done:
    free(pos);
    return rc;
}

static sf_status sem_decode(sf_shard_plan *p, const uint8_t *bytes, size_t n)
{
    sf_status rc = SF_OK;
    sem_plan *s = p->impl;
    size_t k = (size_t)p->k;
    /* Built aside and swapped in only once every check has passed, so a
     * bad encoding leaves the plan as it was. */
    sem_plan t;
    memset(&t, 0, sizeof t);
    sf_buf_init(&t.arena);
    t.is_string = s->is_string;
    uint32_t *owner = NULL;   /* unmapped group -> its one key + 1 */
    uint8_t has_map;
    uint64_t ngroups, nkeys, total = 0;
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);

    SF_CALL_GOTO(sf_rd_u8(&rd, &has_map), done);
    SF_CHECK_GOTO(has_map <= 1, SF_ERR_ARG, done, "map flag %u", (unsigned)has_map);
    SF_CHECK_GOTO(has_map == (s->map_path != NULL), SF_ERR_ARG, done,
                  "planned %s a shard.map, this plan has %s", has_map ? "with" : "without",
                  s->map_path != NULL ? "one" : "none");
    SF_CALL_GOTO(sf_rd_u64(&rd, &t.rows), done);
    SF_CALL_GOTO(sf_rd_u64(&rd, &t.null_rows), done);

    SF_CALL_GOTO(sf_rd_u64(&rd, &ngroups), done);
    SF_CHECK_GOTO(ngroups <= SEM_MAX_ENTRIES && ngroups <= (n - rd.off) / SEM_GROUP_MIN_BYTES,
                  SF_ERR_ARG, done, "%llu groups in the %zu bytes left",
                  (unsigned long long)ngroups, n - rd.off);
    size_t ng = (size_t)ngroups;
    t.groups = malloc((ng ? ng : 1) * sizeof *t.groups);
    t.groups_cap = ng;   /* exactly ng, so group_new() never grows it */
    t.by_shard = malloc((ng ? ng : 1) * sizeof *t.by_shard);
    t.shard_start = calloc(k + 1, sizeof *t.shard_start);
    t.load = calloc(k, sizeof *t.load);
    owner = calloc(ng ? ng : 1, sizeof *owner);
    SF_CHECK_GOTO(t.groups && t.by_shard && t.shard_start && t.load && owner, SF_ERR_NOMEM, done,
                  "out of memory decoding %zu groups", ng);
    uint32_t prev_shard = 0;
    for (size_t i = 0; i < ng; i++) {
        uint32_t sh;
        uint8_t unmapped;
        uint64_t rows;
        size_t gi;
        SF_CALL_GOTO(sf_rd_u32(&rd, &sh), done);
        SF_CALL_GOTO(sf_rd_u8(&rd, &unmapped), done);
        SF_CALL_GOTO(sf_rd_u64(&rd, &rows), done);
        /* describe() walks the groups shard by shard. */
        SF_CHECK_GOTO(sh < k && sh >= prev_shard, SF_ERR_ARG, done,
                      "group %zu on shard %u, after shard %u, with K = %zu", i, (unsigned)sh,
                      (unsigned)prev_shard, k);
        SF_CHECK_GOTO(unmapped <= 1 && (unmapped || has_map), SF_ERR_ARG, done,
                      "group %zu: unmapped flag %u %s a shard.map", i, (unsigned)unmapped,
                      has_map ? "with" : "without");
        SF_CHECK_GOTO(rows <= UINT64_MAX - total, SF_ERR_ARG, done, "group rows overflow");
        if (unmapped) {
            /* Named after its key once the keys are read. */
            SF_CALL_GOTO(group_new(&t, 0, 0, true, &gi), done);
        } else {
            const char *name;
            size_t len;
            SF_CALL_GOTO(sf_rd_str(&rd, &name, &len), done);
            SF_CHECK_GOTO(len > 0, SF_ERR_ARG, done, "group %zu of the map has an empty name", i);
            SF_CALL_GOTO(group_add(&t, name, len, false, &gi), done);
        }
        t.groups[gi].rows = rows;
        t.groups[gi].shard = sh;
        t.by_shard[i] = (uint32_t)gi;
        t.shard_start[sh + 1]++;
        t.load[sh] += rows;
        total += rows;
        prev_shard = sh;
    }
    for (size_t i = 0; i < k; i++) t.shard_start[i + 1] += t.shard_start[i];
    SF_CHECK_GOTO(total == t.rows, SF_ERR_ARG, done,
                  "group rows sum to %llu, the pre-pass counted %llu rows",
                  (unsigned long long)total, (unsigned long long)t.rows);

    SF_CALL_GOTO(sf_rd_u64(&rd, &nkeys), done);
    size_t key_min = t.is_string ? SEM_STR_KEY_MIN_BYTES : SEM_INT_KEY_MIN_BYTES;
    SF_CHECK_GOTO(nkeys <= SEM_MAX_ENTRIES && nkeys <= (n - rd.off) / key_min, SF_ERR_ARG, done,
                  "%llu keys in the %zu bytes left", (unsigned long long)nkeys, n - rd.off);
    if (nkeys > 0) {
        t.keys = malloc((size_t)nkeys * sizeof *t.keys);
        SF_CHECK_GOTO(t.keys != NULL, SF_ERR_NOMEM, done, "out of memory decoding %llu keys",
                      (unsigned long long)nkeys);
        t.keys_cap = (size_t)nkeys;
    }
    for (size_t i = 0; i < (size_t)nkeys; i++) {
        const char *str = NULL;
        size_t len = 0, idx;
        int64_t iv = 0;
        uint64_t h;
        uint32_t gi;
        if (t.is_string) {
            SF_CALL_GOTO(sf_rd_str(&rd, &str, &len), done);
            h = sf__shard_hash_bytes(str, len);
        } else {
            SF_CALL_GOTO(sf_rd_i64(&rd, &iv), done);
            h = int_hash(iv);
        }
        SF_CALL_GOTO(sf_rd_u32(&rd, &gi), done);
        SF_CHECK_GOTO(gi < ng, SF_ERR_ARG, done, "key %zu is in group %u of %zu", i,
                      (unsigned)gi, ng);
        SF_CALL_GOTO(key_upsert(&t, h, iv, str, len, &idx), done);
        SF_CHECK_GOTO(idx == i, SF_ERR_ARG, done, "key %zu repeats key %zu", i, idx);
        sem_group *g = &t.groups[gi];
        if (g->unmapped) {
            SF_CHECK_GOTO(owner[gi] == 0, SF_ERR_ARG, done,
                          "keys %u and %zu share the group of an unmapped key", owner[gi] - 1, i);
            owner[gi] = (uint32_t)i + 1;
        } else {
            t.map_keys++;
        }
        t.keys[i].group = (int64_t)gi;
        t.keys[i].shard = g->shard;
    }
    /* Name each lone group after its key, as finish() does. */
    char num[32];
    for (size_t g = 0; g < ng; g++) {
        if (!t.groups[g].unmapped) continue;
        SF_CHECK_GOTO(owner[g] != 0, SF_ERR_ARG, done, "group %zu of an unmapped key has no key",
                      g);
        const sem_key *key = &t.keys[owner[g] - 1];
        if (t.is_string) {
            t.groups[g].name_off = key->soff;
            t.groups[g].name_len = key->slen;
        } else {
            size_t len = (size_t)snprintf(num, sizeof num, "%" PRId64, key->ival);
            SF_CALL_GOTO(arena_add(&t, num, len, &t.groups[g].name_off), done);
            t.groups[g].name_len = (uint32_t)len;
        }
        t.unmapped_keys++;
    }
    SF_CHECK_GOTO(rd.off == n, SF_ERR_ARG, done, "%zu trailing bytes", n - rd.off);

    /* Valid: replace the plan's tables (the map as loaded and any observed
     * counts) with the decoded ones; map_path stays. */
    t.map_path = s->map_path;
    s->map_path = NULL;
    sem_clear(s);
    *s = t;
    memset(&t, 0, sizeof t);
    sf_buf_init(&t.arena);
done:
    sem_clear(&t);
    free(owner);
    return rc;
}

const sf__shard_ops sf__shard_semantic_ops = {
    .name = "semantic",
    .needs_prepass = true,
    .init = sem_init,
    .observe = sem_observe,
    .finish = sem_finish,
    .route = sem_route,
    .describe = sem_describe,
    .encode = sem_encode,
    .decode = sem_decode,
    .destroy = sem_destroy,
};
