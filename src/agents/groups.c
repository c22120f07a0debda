/* Group tables and canonical row keys (see agents/groups.h and the group
 * key section of shardflow/agent.h). */
#include "agents/groups.h"
#include "core/huge.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <xxhash.h>

/* ---- canonical keys ------------------------------------------------------ */

static inline uint8_t *put_u64(uint8_t *p, uint64_t v)
{
    sf_store_u64(p, v);
    return p + 8;
}

/* The key bits of a non-null number: one value for every NaN payload, and
 * -0 and +0 as one key, as in sharding. */
static inline uint64_t num_key_bits(const sf_column *c, size_t r)
{
    if (c->type != SF_FLOAT64) return (uint64_t)c->i64[r];
    double v = c->f64[r];
    if (isnan(v)) v = NAN;
    if (v == 0.0) v = 0.0;
    uint64_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits;
}

static sf_status reserve(uint8_t **buf, size_t *cap, size_t need)
{
    if (need <= *cap && *buf != NULL) return SF_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    uint8_t *p = realloc(*buf, c);
    SF_CHECK(p != NULL, SF_ERR_NOMEM, "out of memory for a %zu-byte group key", c);
    *buf = p;
    *cap = c;
    return SF_OK;
}

sf_status sf_agent_row_key(const sf_batch *b, const int *by_col, int nby, size_t r, uint8_t **key,
                           size_t *cap, size_t *len)
{
    size_t need = 1;
    for (int i = 0; i < nby; i++) {
        const sf_column *c = &b->cols[by_col[i]];
        need += 9;
        if (c->type == SF_STRING && !sf_col_is_null(c, r))
            need += (size_t)(c->dict.off[c->code[r] + 1] - c->dict.off[c->code[r]]);
    }
    SF_CALL(reserve(key, cap, need));
    uint8_t *p = *key;
    for (int i = 0; i < nby; i++) {
        const sf_column *c = &b->cols[by_col[i]];
        if (sf_col_is_null(c, r)) {
            *p++ = 0;
            continue;
        }
        *p++ = 1;
        if (c->type == SF_STRING) {
            size_t n;
            const char *str = sf_dict_str(&c->dict, c->code[r], &n);
            uint32_t n32 = (uint32_t)n;
            for (int k = 0; k < 4; k++) *p++ = (uint8_t)(n32 >> (8 * k));
            if (n != 0) memcpy(p, str, n); /* an empty dictionary may have no bytes */
            p += n;
        } else {
            p = put_u64(p, num_key_bits(c, r));
        }
    }
    *len = (size_t)(p - *key);
    return SF_OK;
}

static inline uint32_t rd_len32(const uint8_t *k)
{
    return (uint32_t)k[0] | (uint32_t)k[1] << 8 | (uint32_t)k[2] << 16 | (uint32_t)k[3] << 24;
}

bool sf_agent_key_valid(const sf_schema *s, const int *by_col, int nby, const uint8_t *k, size_t n)
{
    size_t off = 0;
    for (int i = 0; i < nby; i++) {
        if (off >= n) return false;
        uint8_t tag = k[off++];
        if (tag == 0) continue;
        if (tag != 1) return false;
        if (s->fields[by_col[i]].type == SF_STRING) {
            if (n - off < 4) return false;
            uint32_t len = rd_len32(k + off);
            off += 4;
            if (n - off < len) return false;
            off += len;
        } else {
            if (n - off < 8) return false;
            off += 8;
        }
    }
    return off == n;
}

sf_status sf_agent_key_text(const sf_schema *s, const int *by_col, int nby, const uint8_t *k,
                            size_t n, sf_buf *out)
{
    SF_CHECK(sf_agent_key_valid(s, by_col, nby, k, n), SF_ERR_INTERNAL, "malformed group key");
    size_t off = 0;
    for (int i = 0; i < nby; i++) {
        if (i > 0) SF_CALL(sf_buf_put_u8(out, '|'));
        if (k[off++] == 0) {
            /* A null key part is \N, which no value prints as (see below). */
            SF_CALL(sf_buf_append(out, "\\N", 2));
            continue;
        }
        sf_type t = s->fields[by_col[i]].type;
        if (t == SF_STRING) {
            uint32_t len = rd_len32(k + off);
            off += 4;
            /* Escape the separator and the escape character, so that
             * different keys never print alike. */
            for (uint32_t b = 0; b < len; b++) {
                uint8_t ch = k[off + b];
                if (ch == '|' || ch == '\\') SF_CALL(sf_buf_put_u8(out, '\\'));
                SF_CALL(sf_buf_put_u8(out, ch));
            }
            off += len;
            continue;
        }
        /* A one-row column, so that numbers print exactly as elsewhere. */
        uint64_t bits = sf_load_u64(k + off);
        off += 8;
        int64_t iv = (int64_t)bits;
        double dv;
        memcpy(&dv, &bits, sizeof dv);
        sf_column c;
        memset(&c, 0, sizeof c);
        c.type = t;
        c.loaded = true;
        c.i64 = &iv;
        c.f64 = &dv;
        char text[64];
        size_t len = sf_col_format(&c, 0, text, sizeof text);
        SF_CALL(sf_buf_append(out, text, len));
    }
    return SF_OK;
}

/* ---- the table ------------------------------------------------------------ */

#define VCACHE_SIZE 1024 /* entries of the numeric-key cache (power of two) */

/* Hashes stay inside the table (nothing encoded depends on them), so short
 * keys, the common case (one number: 9 bytes; a short string or two),
 * take an inline multiply-mix of two words instead of a library call. */
static inline uint64_t mix64(uint64_t x)
{
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    x ^= x >> 32;
    x *= 0xD6E8FEB86659FD93ull;
    return x ^ (x >> 32);
}

static inline uint64_t key_hash(const uint8_t *k, size_t n)
{
    if (n > 32) return XXH3_64bits(k, n);
    uint64_t w[4] = {0, 0, 0, 0};
    if (n != 0) memcpy(w, k, n);
    uint64_t h = mix64(w[0] ^ ((uint64_t)n << 56));
    h = mix64(h ^ w[1]);
    if (n > 16) {
        h = mix64(h ^ w[2]);
        h = mix64(h ^ w[3]);
    }
    return h;
}

static sf_status rehash(sf__groups *g, uint32_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    SF_CHECK(slots != NULL, SF_ERR_NOMEM, "out of memory for %u group hash slots", nslots);
    sf__mem_huge(slots, (size_t)nslots * sizeof *slots);
    uint32_t mask = nslots - 1;
    for (uint32_t i = 0; i < g->n; i++) {
        uint32_t h = (uint32_t)g->e[i].hash & mask;
        while (slots[h] != 0) h = (h + 1) & mask;
        slots[h] = i + 1;
    }
    free(g->slots);
    g->slots = slots;
    g->nslots = nslots;
    return SF_OK;
}

/* Room for at least `need` group entries (and their numbers): doubling. */
static sf_status grow_entries(sf__groups *g, size_t need)
{
    if (need <= g->cap) return SF_OK;
    SF_CHECK(need <= (size_t)1 << 31, SF_ERR_NOMEM, "too many groups (%zu)", need);
    size_t cap = g->cap ? g->cap : 16;
    while (cap < need) cap *= 2;
    struct sf__group_entry *e = realloc(g->e, cap * sizeof *e);
    SF_CHECK(e != NULL, SF_ERR_NOMEM, "out of memory for %zu groups", cap);
    sf__mem_huge(e, cap * sizeof *e);
    g->e = e;
    if (g->nby == 1 && g->schema != NULL && g->schema->fields[g->by_col[0]].type != SF_STRING) {
        uint64_t *nm = realloc(g->num, cap * sizeof *nm);
        SF_CHECK(nm != NULL, SF_ERR_NOMEM, "out of memory for %zu groups", cap);
        g->num = nm;
    }
    g->cap = (uint32_t)cap;
    return SF_OK;
}

/* The dense map of one SF_INT64 key column covers values below
 * max(DENSE_MIN, DENSE_PER_GROUP x groups), at most DENSE_MAX: its memory
 * stays within a small multiple of the table's own. */
#define DENSE_MIN (UINT64_C(1) << 16)
#define DENSE_PER_GROUP 8
#define DENSE_MAX (UINT64_C(1) << 24)

/* Notes that value v has group gi, growing the map to cover v where the
 * bound allows; where it does not (or memory is short) v is found through
 * the hash table only. */
static void dense_note(sf__groups *g, uint64_t v, uint32_t gi)
{
    if (v >= g->dense_cap) {
        uint64_t bound = (uint64_t)DENSE_PER_GROUP * g->n;
        if (bound < DENSE_MIN) bound = DENSE_MIN;
        if (bound > DENSE_MAX) bound = DENSE_MAX;
        if (v >= bound) return;
        uint64_t cap = g->dense_cap ? g->dense_cap : 1024;
        while (cap <= v) cap *= 2;
        uint32_t *d = realloc(g->dense, (size_t)cap * sizeof *d);
        if (d == NULL) return;
        sf__mem_huge(d, (size_t)cap * sizeof *d);
        memset(d + g->dense_cap, 0, (size_t)(cap - g->dense_cap) * sizeof *d);
        g->dense = d;
        g->dense_cap = (uint32_t)cap;
    }
    g->dense[v] = gi + 1;
}

static sf_status new_group(sf__groups *g, const uint8_t *key, size_t len, uint64_t hash,
                           uint32_t *out)
{
    SF_CHECK(g->n < SF__NO_GROUP - 1 && len <= UINT32_MAX, SF_ERR_NOMEM, "too many groups");
    SF_CALL(grow_entries(g, (size_t)g->n + 1));
    if (g->keys == NULL || g->keys_cap - g->keys_len < len) {
        size_t cap = g->keys_cap ? g->keys_cap : 256;
        while (cap - g->keys_len < len) cap *= 2;
        uint8_t *k = realloc(g->keys, cap);
        SF_CHECK(k != NULL, SF_ERR_NOMEM, "out of memory for %zu bytes of group keys", cap);
        sf__mem_huge(k, cap);
        g->keys = k;
        g->keys_cap = cap;
    }
    if ((size_t)(g->n + 1) * 2 > g->nslots) SF_CALL(rehash(g, g->nslots ? g->nslots * 2 : 32));
    uint32_t i = g->n++;
    if (len != 0) memcpy(g->keys + g->keys_len, key, len);
    g->e[i].off = g->keys_len;
    g->e[i].len = (uint32_t)len;
    g->e[i].hash = hash;
    if (g->num != NULL) {
        if (len == 9 && key[0] == 1) {
            g->num[i] = sf_load_u64(key + 1);
            if (g->dense_ok) dense_note(g, g->num[i], i);
        } else {
            g->num_null = i; /* the null key: one tag byte */
        }
    }
    g->keys_len += len;
    uint32_t mask = g->nslots - 1;
    uint32_t h = (uint32_t)hash & mask;
    while (g->slots[h] != 0) h = (h + 1) & mask;
    g->slots[h] = i + 1;
    *out = i;
    return SF_OK;
}

static uint32_t lookup_hashed(const sf__groups *g, const uint8_t *key, size_t len, uint64_t hash)
{
    if (g->nslots == 0) return SF__NO_GROUP;
    uint32_t mask = g->nslots - 1;
    for (uint32_t h = (uint32_t)hash & mask; g->slots[h] != 0; h = (h + 1) & mask) {
        uint32_t i = g->slots[h] - 1;
        if (g->e[i].hash == hash && g->e[i].len == len &&
            (len == 0 || memcmp(g->keys + g->e[i].off, key, len) == 0))
            return i;
    }
    return SF__NO_GROUP;
}

/* The group of the non-null numeric key with value bits (tables with
 * num[]); hash is key_hash of its canonical key. */
static inline uint32_t lookup_num(const sf__groups *g, uint64_t bits, uint64_t hash)
{
    if (g->nslots == 0) return SF__NO_GROUP;
    uint32_t mask = g->nslots - 1;
    for (uint32_t h = (uint32_t)hash & mask; g->slots[h] != 0; h = (h + 1) & mask) {
        uint32_t i = g->slots[h] - 1;
        if (g->num[i] == bits && i != g->num_null) return i;
    }
    return SF__NO_GROUP;
}

/* key_hash of the canonical key of one non-null number, {1, bits (LE)},
 * without building it. */
static inline uint64_t num_key_hash(uint64_t bits)
{
    uint64_t h = mix64((1u | (bits << 8)) ^ ((uint64_t)9 << 56));
    return mix64(h ^ (bits >> 56));
}

uint32_t sf__groups_lookup(const sf__groups *g, const uint8_t *key, size_t len)
{
    return lookup_hashed(g, key, len, key_hash(key, len));
}

sf_status sf__groups_find(sf__groups *g, const uint8_t *key, size_t len, uint32_t *idx,
                          bool *created)
{
    uint64_t hash = key_hash(key, len);
    if (created) *created = false;
    uint32_t i = lookup_hashed(g, key, len, hash);
    if (i != SF__NO_GROUP) {
        *idx = i;
        return SF_OK;
    }
    if (created) *created = true;
    return new_group(g, key, len, hash, idx);
}

/* Keys between a probe's slot prefetch and its lookup (the entry's
 * prefetch is issued half way). */
#define FIND_AHEAD 16

/* Room for n more groups without a rehash. */
static sf_status reserve_groups(sf__groups *g, size_t n)
{
    if ((size_t)g->n + n >= (size_t)1 << 30) return SF_OK; /* new_group grows them as it goes */
    uint32_t want = g->nslots ? g->nslots : 32;
    while (((size_t)g->n + n + 1) * 2 > want) want *= 2;
    return want != g->nslots ? rehash(g, want) : SF_OK;
}

sf_status sf__groups_reserve(sf__groups *g, size_t n)
{
    if ((size_t)g->n + n >= (size_t)1 << 30) return SF_OK; /* new_group grows them as it goes */
    SF_CALL(grow_entries(g, (size_t)g->n + n));
    return reserve_groups(g, n);
}

sf_status sf__groups_find_all(sf__groups *g, const sf__groups *src, const uint32_t *which, size_t n,
                              uint32_t *out, bool *created)
{
    if (created) *created = false;
    if (n == 0) return SF_OK;
    SF_CHECK(g->nby == src->nby, SF_ERR_INTERNAL, "merging group tables of different key columns");
    /* Room for every key first: no rehash moves the slots under the
     * prefetches (new_group then never grows them). */
    SF_CALL(reserve_groups(g, n));
    const bool num = g->num != NULL && src->num != NULL;
    const size_t half = FIND_AHEAD / 2;
    for (size_t i = 0; i < n + FIND_AHEAD; i++) {
        uint32_t mask = g->nslots - 1;
        if (i < n) {
            const struct sf__group_entry *e = &src->e[which ? which[i] : (uint32_t)i];
            __builtin_prefetch(&g->slots[(uint32_t)e->hash & mask]);
        }
        if (i >= half && i - half < n) {
            const struct sf__group_entry *e = &src->e[which ? which[i - half] : (uint32_t)(i - half)];
            uint32_t s = g->slots[(uint32_t)e->hash & mask];
            if (s != 0) {
                if (num)
                    __builtin_prefetch(&g->num[s - 1]);
                else
                    __builtin_prefetch(&g->e[s - 1]);
            }
        }
        if (i < FIND_AHEAD) continue;
        size_t k = i - FIND_AHEAD;
        uint32_t j = which ? which[k] : (uint32_t)k;
        const struct sf__group_entry *e = &src->e[j];
        uint32_t gi = num && j != src->num_null ? lookup_num(g, src->num[j], e->hash)
                                                : lookup_hashed(g, src->keys + e->off, e->len, e->hash);
        if (gi == SF__NO_GROUP) {
            SF_CALL(new_group(g, src->keys + e->off, e->len, e->hash, &gi));
            if (created) *created = true;
        }
        out[k] = gi;
    }
    return SF_OK;
}

sf_status sf__groups_find_fixed(sf__groups *g, const uint8_t *keys, size_t klen, size_t n, uint32_t *out,
                                bool *created)
{
    if (created) *created = false;
    if (n == 0) return SF_OK;
    SF_CALL(reserve_groups(g, n));
    uint64_t ring[2 * FIND_AHEAD]; /* hashes of keys i - FIND_AHEAD .. i */
    for (size_t i = 0; i < n + FIND_AHEAD; i++) {
        uint32_t mask = g->nslots - 1;
        if (i < n) {
            uint64_t h = key_hash(keys + i * klen, klen);
            ring[i % (2 * FIND_AHEAD)] = h;
            __builtin_prefetch(&g->slots[(uint32_t)h & mask]);
        }
        if (i >= FIND_AHEAD / 2 && i - FIND_AHEAD / 2 < n) {
            uint32_t s = g->slots[(uint32_t)ring[(i - FIND_AHEAD / 2) % (2 * FIND_AHEAD)] & mask];
            if (s != 0) __builtin_prefetch(&g->e[s - 1]);
        }
        if (i < FIND_AHEAD) continue;
        size_t k = i - FIND_AHEAD;
        const uint8_t *key = keys + k * klen;
        uint64_t h = ring[k % (2 * FIND_AHEAD)];
        uint32_t gi = lookup_hashed(g, key, klen, h);
        if (gi == SF__NO_GROUP) {
            SF_CALL(new_group(g, key, klen, h, &gi));
            if (created) *created = true;
        }
        out[k] = gi;
    }
    return SF_OK;
}

sf_status sf__groups_map(sf__groups *g, const sf__groups *src, size_t n, uint32_t **map, bool *created)
{
    *map = NULL;
    if (created) *created = false;
    if (n == 0) return SF_OK;
    uint32_t *m = malloc(n * sizeof *m);
    SF_CHECK(m != NULL, SF_ERR_NOMEM, "out of memory merging %zu groups", n);
    sf_status rc = sf__groups_find_all(g, src, NULL, n, m, created);
    if (rc != SF_OK) {
        free(m);
        return rc;
    }
    *map = m;
    return SF_OK;
}

sf_status sf__groups_init(sf__groups *g, const sf_schema *schema, const int *by_col, int nby)
{
    memset(g, 0, sizeof *g);
    SF_CHECK(nby >= 0 && nby <= 255 && (nby == 0 || by_col != NULL), SF_ERR_ARG,
             "group keys take 0 to 255 columns");
    g->schema = schema;
    g->by_col = by_col;
    g->nby = nby;
    g->null_grp = SF__NO_GROUP;
    g->dense_ok = nby == 1 && schema != NULL && by_col[0] >= 0 && by_col[0] < schema->ncols &&
                  schema->fields[by_col[0]].type == SF_INT64;
    return sf__groups_clear(g);
}

sf_status sf__groups_clear(sf__groups *g)
{
    g->n = 0;
    g->ncd = 0; /* the code cache names groups that are gone */
    if (g->dense) memset(g->dense, 0, (size_t)g->dense_cap * sizeof *g->dense);
    g->num_null = SF__NO_GROUP;
    g->keys_len = 0;
    if (g->slots) memset(g->slots, 0, (size_t)g->nslots * sizeof *g->slots);
    g->cache_col = NULL;
    g->multi_batch = NULL;
    g->null_grp = SF__NO_GROUP;
    if (g->vcache) memset(g->vcache, 0xff, VCACHE_SIZE * sizeof *g->vcache);
    if (g->nby == 0) {
        uint32_t i;
        sf_status rc = sf__groups_find(g, (const uint8_t *)"", 0, &i, NULL);
        if (rc != SF_OK) {
            sf__groups_fini(g);
            return rc;
        }
    }
    return SF_OK;
}

void sf__groups_fini(sf__groups *g)
{
    free(g->vcache);
    free(g->e);
    free(g->num);
    free(g->keys);
    free(g->slots);
    free(g->scratch);
    free(g->cache);
    free(g->idx);
    free(g->dense);
    for (int j = 0; j < 4; j++) {
        free(g->cd[j].off);
        free(g->cd[j].bytes);
    }
    memset(g, 0, sizeof *g);
}

#define MULTI_CACHE_MAX (1u << 20)

/* Grows the code cache to ncodes entries and starts a new generation. */
static bool cache_prepare(sf__groups *g, size_t ncodes)
{
    if (g->cache_cap < ncodes) {
        size_t cap = g->cache_cap ? g->cache_cap : 64;
        while (cap < ncodes) cap *= 2;
        struct sf__code_cache *cc = realloc(g->cache, cap * sizeof *cc);
        if (cc == NULL) return false; /* no cache: every row takes the hashed path */
        memset(cc + g->cache_cap, 0, (cap - g->cache_cap) * sizeof *cc);
        g->cache = cc;
        g->cache_cap = cap;
    }
    if (++g->gen == 0) {
        memset(g->cache, 0, g->cache_cap * sizeof *g->cache);
        g->gen = 1;
    }
    return true;
}

#define SAVED_DICT_MAX 256
#define SAVED_DICT_BYTES 16384

/* Whether the key columns of b have the dictionaries the cache was filled for. */
static bool dicts_saved(const sf__groups *g, const sf_batch *b)
{
    if (g->ncd != g->nby) return false;
    for (int j = 0; j < g->nby; j++) {
        const sf_dict *d = &b->cols[g->by_col[j]].dict;
        const struct sf__saved_dict *sd = &g->cd[j];
        if (sd->stable_id != 0 || d->stable_id != 0) {
            if (sd->stable_id != d->stable_id || sd->n != d->n) return false;
            continue;
        }
        if (d->n != sd->n || memcmp(d->off, sd->off, ((size_t)d->n + 1) * sizeof *d->off) != 0) return false;
        size_t len = d->off[d->n];
        if (len != 0 && memcmp(d->bytes, sd->bytes, len) != 0) return false;
    }
    return true;
}

/* Saves copies of the key columns' dictionaries (after the cache started
 * afresh for b); too large ones, or no memory, save none. */
static void dicts_save(sf__groups *g, const sf_batch *b)
{
    g->ncd = 0;
    if (g->nby > 4) return;
    for (int j = 0; j < g->nby; j++) {
        const sf_dict *d = &b->cols[g->by_col[j]].dict;
        if (d->stable_id != 0) continue;
        if (d->n > SAVED_DICT_MAX || d->off == NULL || d->off[d->n] > SAVED_DICT_BYTES) return;
    }
    for (int j = 0; j < g->nby; j++) {
        const sf_dict *d = &b->cols[g->by_col[j]].dict;
        struct sf__saved_dict *sd = &g->cd[j];
        sd->stable_id = d->stable_id;
        if (d->stable_id != 0) {
            sd->n = d->n;
            continue;
        }
        size_t noff = (size_t)d->n + 1, len = d->off[d->n];
        if (sd->off_cap < noff) {
            uint32_t *o = realloc(sd->off, SAVED_DICT_MAX * sizeof *o + sizeof *o);
            if (o == NULL) return;
            sd->off = o;
            sd->off_cap = SAVED_DICT_MAX + 1;
        }
        if (sd->bytes_cap < len) {
            char *p = realloc(sd->bytes, SAVED_DICT_BYTES);
            if (p == NULL) return;
            sd->bytes = p;
            sd->bytes_cap = SAVED_DICT_BYTES;
        }
        memcpy(sd->off, d->off, noff * sizeof *d->off);
        if (len != 0) memcpy(sd->bytes, d->bytes, len);
        sd->n = d->n;
    }
    g->ncd = g->nby;
}

sf_status sf__groups_batch(sf__groups *g, const sf_batch *b)
{
    for (int i = 0; i < g->nby; i++)
        SF_CHECK(g->by_col[i] >= 0 && g->by_col[i] < b->ncols && b->cols[g->by_col[i]].loaded, SF_ERR_INTERNAL,
                 "key column %d is not loaded", g->by_col[i]);
    g->cache_col = NULL;
    g->multi_batch = NULL;
    g->null_grp = SF__NO_GROUP;
    if (g->nby >= 2 && g->nby <= 4) {
        size_t prod = 1;
        for (int i = g->nby - 1; i >= 0; i--) {
            const sf_column *c = &b->cols[g->by_col[i]];
            if (c->type != SF_STRING || c->dict.n == 0) return SF_OK;
            g->stride[i] = (uint32_t)prod;
            prod *= c->dict.n;
            if (prod > MULTI_CACHE_MAX) return SF_OK;
        }
        if (g->cache_cap >= prod && dicts_saved(g, b)) {
            g->multi_batch = b;
        } else if (cache_prepare(g, prod)) {
            g->multi_batch = b;
            dicts_save(g, b);
        }
        return SF_OK;
    }
    if (g->nby != 1) return SF_OK;
    const sf_column *kc = &b->cols[g->by_col[0]];
    if (kc->type != SF_STRING) return SF_OK;
    if (g->cache_cap >= kc->dict.n && dicts_saved(g, b)) {
        g->cache_col = kc;
    } else if (cache_prepare(g, kc->dict.n)) {
        g->cache_col = kc;
        dicts_save(g, b);
    }
    return SF_OK;
}

sf_status sf__groups_row(sf__groups *g, const sf_batch *b, size_t r, uint32_t *idx, bool *created)
{
    if (created) *created = false;
    if (g->nby == 0) {
        *idx = 0;
        return SF_OK;
    }
    if (g->multi_batch == b) {
        size_t code = 0;
        bool any_null = false;
        for (int i = 0; i < g->nby; i++) {
            const sf_column *c = &b->cols[g->by_col[i]];
            if (sf_col_is_null(c, r)) {
                any_null = true;
                break;
            }
            SF_CHECK(c->code[r] < c->dict.n, SF_ERR_INTERNAL, "dictionary code %u of %u", c->code[r], c->dict.n);
            code += (size_t)c->code[r] * g->stride[i];
        }
        if (!any_null) {
            struct sf__code_cache *e = &g->cache[code];
            if (e->gen == g->gen) {
                *idx = e->grp;
                return SF_OK;
            }
            size_t len;
            SF_CALL(sf_agent_row_key(b, g->by_col, g->nby, r, &g->scratch, &g->scratch_cap, &len));
            SF_CALL(sf__groups_find(g, g->scratch, len, idx, created));
            e->gen = g->gen;
            e->grp = *idx;
            return SF_OK;
        }
    }
    if (g->nby == 1 && b->cols[g->by_col[0]].type != SF_STRING && !sf_col_is_null(&b->cols[g->by_col[0]], r)) {
        const sf_column *c = &b->cols[g->by_col[0]];
        const uint64_t bits = num_key_bits(c, r);
        if (g->vcache == NULL) {
            g->vcache = malloc(VCACHE_SIZE * sizeof *g->vcache);
            if (g->vcache) memset(g->vcache, 0xff, VCACHE_SIZE * sizeof *g->vcache);
        }
        if (g->vcache) {
            struct sf__value_cache *e = &g->vcache[(bits * 0x9E3779B97F4A7C15ull) >> 54];
            if (e->grp != SF__NO_GROUP && e->bits == bits) {
                *idx = e->grp;
                return SF_OK;
            }
            size_t len;
            SF_CALL(sf_agent_row_key(b, g->by_col, g->nby, r, &g->scratch, &g->scratch_cap, &len));
            SF_CALL(sf__groups_find(g, g->scratch, len, idx, created));
            e->bits = bits;
            e->grp = *idx;
            return SF_OK;
        }
    }
    const sf_column *kc = g->cache_col;
    if (kc != NULL && kc == &b->cols[g->by_col[0]]) {
        if (sf_col_is_null(kc, r)) {
            if (g->null_grp == SF__NO_GROUP) {
                size_t len;
                SF_CALL(sf_agent_row_key(b, g->by_col, g->nby, r, &g->scratch, &g->scratch_cap, &len));
                SF_CALL(sf__groups_find(g, g->scratch, len, &g->null_grp, created));
            }
            *idx = g->null_grp;
            return SF_OK;
        }
        uint32_t code = kc->code[r];
        SF_CHECK(code < kc->dict.n, SF_ERR_INTERNAL, "dictionary code %u of %u", code, kc->dict.n);
        struct sf__code_cache *e = &g->cache[code];
        if (e->gen == g->gen) {
            *idx = e->grp;
            return SF_OK;
        }
        size_t len;
        SF_CALL(sf_agent_row_key(b, g->by_col, g->nby, r, &g->scratch, &g->scratch_cap, &len));
        SF_CALL(sf__groups_find(g, g->scratch, len, idx, created));
        e->gen = g->gen;
        e->grp = *idx;
        return SF_OK;
    }
    size_t len;
    SF_CALL(sf_agent_row_key(b, g->by_col, g->nby, r, &g->scratch, &g->scratch_cap, &len));
    return sf__groups_find(g, g->scratch, len, idx, created);
}

/* A row the cached loops below could not place (a cache miss, a null key
 * part, or no cache): the general path. */
static inline sf_status row_slow(sf__groups *g, const sf_batch *b, size_t r, uint32_t *idx, bool *created)
{
    bool cr = false;
    SF_CALL(sf__groups_row(g, b, r, idx, &cr));
    *created |= cr;
    return SF_OK;
}

/* A code-cache miss of a row whose key columns are all strings and all
 * non-null: the canonical key built straight from the dictionaries, the
 * group found or created, and the cache entry e filled. */
static sf_status miss_strings(sf__groups *g, const sf_batch *b, size_t r, struct sf__code_cache *e,
                              uint32_t *idx, bool *created)
{
    size_t need = 0;
    for (int j = 0; j < g->nby; j++) {
        const sf_column *c = &b->cols[g->by_col[j]];
        need += 5 + (size_t)(c->dict.off[c->code[r] + 1] - c->dict.off[c->code[r]]);
    }
    SF_CALL(reserve(&g->scratch, &g->scratch_cap, need));
    uint8_t *p = g->scratch;
    for (int j = 0; j < g->nby; j++) {
        const sf_column *c = &b->cols[g->by_col[j]];
        uint32_t lo = c->dict.off[c->code[r]], n = c->dict.off[c->code[r] + 1] - lo;
        *p++ = 1;
        for (int k = 0; k < 4; k++) *p++ = (uint8_t)(n >> (8 * k));
        if (n != 0) memcpy(p, c->dict.bytes + lo, n);
        p += n;
    }
    uint64_t h = key_hash(g->scratch, need);
    uint32_t i = lookup_hashed(g, g->scratch, need, h);
    if (i == SF__NO_GROUP) {
        SF_CALL(new_group(g, g->scratch, need, h, &i));
        *created = true;
    }
    e->gen = g->gen;
    e->grp = i;
    *idx = i;
    return SF_OK;
}

sf_status sf__groups_rows(sf__groups *g, const sf_batch *b, const sf_rows *rows, const uint32_t **out,
                          bool *created)
{
    *created = false;
    const size_t n = rows->n;
    if (g->idx_cap < n || g->idx == NULL) {
        size_t cap = g->idx_cap ? g->idx_cap : 1024;
        while (cap < n) cap *= 2;
        uint32_t *p = realloc(g->idx, cap * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "out of memory for the groups of %zu rows", n);
        g->idx = p;
        g->idx_cap = cap;
    }
    uint32_t *idx = g->idx;
    *out = idx;
    if (g->nby == 0) {
        for (size_t i = 0; i < n; i++) idx[i] = 0;
        return SF_OK;
    }
    const uint32_t *sel = rows->sel;
    const size_t begin = rows->begin;
    if (g->multi_batch == b) {
        const uint32_t *code[4];
        const uint8_t *valid[4];
        uint32_t ncodes[4], stride[4];
        const int nby = g->nby;
        bool nulls = false;
        for (int j = 0; j < nby; j++) {
            const sf_column *c = &b->cols[g->by_col[j]];
            code[j] = c->code;
            valid[j] = c->valid;
            nulls |= c->valid != NULL;
            ncodes[j] = c->dict.n;
            stride[j] = g->stride[j];
        }
        const struct sf__code_cache *cache = g->cache;
        const uint32_t gen = g->gen;
        if (nby == 2 && !nulls) {
            /* The common case (e.g. service x region) as straight code. */
            const uint32_t *c0 = code[0], *c1 = code[1];
            const uint32_t s0 = stride[0], n0 = ncodes[0], n1 = ncodes[1];
            for (size_t i = 0; i < n; i++) {
                size_t r = sel ? sel[i] : begin + i;
                uint32_t a = c0[r], d = c1[r];
                SF_CHECK(a < n0 && d < n1, SF_ERR_INTERNAL, "dictionary codes %u of %u, %u of %u", a, n0, d, n1);
                size_t k = (size_t)a * s0 + d;
                if (cache[k].gen == gen) {
                    idx[i] = cache[k].grp;
                    continue;
                }
                SF_CALL(miss_strings(g, b, r, &g->cache[k], &idx[i], created));
            }
            return SF_OK;
        }
        for (size_t i = 0; i < n; i++) {
            size_t r = sel ? sel[i] : begin + i;
            size_t k = 0;
            bool ok = true;
            for (int j = 0; j < nby; j++) {
                if (nulls && valid[j] != NULL && valid[j][r] == 0) ok = false;
                uint32_t cj = code[j][r];
                SF_CHECK(cj < ncodes[j] || !ok, SF_ERR_INTERNAL, "dictionary code %u of %u", cj, ncodes[j]);
                k += (size_t)cj * stride[j];
            }
            if (ok && cache[k].gen == gen) {
                idx[i] = cache[k].grp;
                continue;
            }
            if (ok)
                SF_CALL(miss_strings(g, b, r, &g->cache[k], &idx[i], created));
            else
                SF_CALL(row_slow(g, b, r, &idx[i], created));
        }
        return SF_OK;
    }
    const sf_column *kc = g->cache_col;
    if (g->nby == 1 && kc != NULL && kc == &b->cols[g->by_col[0]]) {
        const uint32_t *code = kc->code;
        const uint8_t *valid = kc->valid;
        const uint32_t ncodes = kc->dict.n;
        const struct sf__code_cache *cache = g->cache;
        for (size_t i = 0; i < n; i++) {
            size_t r = sel ? sel[i] : begin + i;
            uint32_t c = code[r];
            if ((valid == NULL || valid[r] != 0) && c < ncodes) {
                if (cache[c].gen == g->gen) {
                    idx[i] = cache[c].grp;
                    continue;
                }
                SF_CALL(miss_strings(g, b, r, &g->cache[c], &idx[i], created));
                continue;
            }
            SF_CALL(row_slow(g, b, r, &idx[i], created));
        }
        return SF_OK;
    }
    if (g->nby == 1 && b->cols[g->by_col[0]].type != SF_STRING) {
        /* One numeric key: the value cache, inline (row_slow fills it). */
        const sf_column *c = &b->cols[g->by_col[0]];
        if (g->vcache == NULL) {
            g->vcache = malloc(VCACHE_SIZE * sizeof *g->vcache);
            if (g->vcache) memset(g->vcache, 0xff, VCACHE_SIZE * sizeof *g->vcache);
        }
        struct sf__value_cache *vc = g->vcache;
        const uint8_t *valid = c->valid;
        /* With far more groups than cache entries (e.g. users), the cache
         * would only thrash: probe the table directly. */
        const bool use_cache = vc != NULL && g->n <= 4 * VCACHE_SIZE;
        uint8_t key[9];
        key[0] = 1;
        /* Without the cache every row probes a table that may be far
         * larger than the caches: prefetch the slot of the row AHEAD rows
         * on, and the entry of the row half as far on (by then its slot
         * is in cache). The table may grow meanwhile; a prefetch is only
         * a hint, and every index is taken with the current mask. */
        const bool ahead = !use_cache && g->num != NULL && g->n >= 4096;
        enum { AHEAD = 16 };
        if (g->dense_cap != 0 && c->type != SF_FLOAT64 && valid == NULL) {
            /* Integer keys all present (user ids): the dense map, and the
             * general path below only for a value it does not hold. */
            const int64_t *v = c->i64;
            for (size_t i = 0; i < n; i++) {
                const size_t r = sel ? sel[i] : begin + i;
                if (i + AHEAD < n) {
                    uint64_t x2 = (uint64_t)v[sel ? sel[i + AHEAD] : begin + i + AHEAD];
                    if (x2 < g->dense_cap) __builtin_prefetch(&g->dense[x2]);
                }
                const uint64_t x = (uint64_t)v[r];
                const uint32_t d = x < g->dense_cap ? g->dense[x] : 0;
                if (d != 0) {
                    idx[i] = d - 1;
                    continue;
                }
                const uint64_t h = num_key_hash(x);
                sf_store_u64(key + 1, x);
                uint32_t gi = g->num != NULL ? lookup_num(g, x, h) : lookup_hashed(g, key, sizeof key, h);
                if (gi == SF__NO_GROUP) {
                    SF_CALL(new_group(g, key, sizeof key, h, &gi));
                    *created = true;
                } else if (g->dense_ok) {
                    dense_note(g, x, gi);
                }
                idx[i] = gi;
            }
            return SF_OK;
        }
        for (size_t i = 0; i < n; i++) {
            size_t r = sel ? sel[i] : begin + i;
            if (g->dense_cap != 0) {
                /* The dense map first (it may grow within the loop). */
                if (ahead && i + AHEAD < n) {
                    uint64_t v2 = num_key_bits(c, sel ? sel[i + AHEAD] : begin + i + AHEAD);
                    if (v2 < g->dense_cap) __builtin_prefetch(&g->dense[v2]);
                }
                if (valid == NULL || valid[r] != 0) {
                    const uint64_t v = num_key_bits(c, r);
                    if (v < g->dense_cap && g->dense[v] != 0) {
                        idx[i] = g->dense[v] - 1;
                        continue;
                    }
                }
            } else if (ahead) {
                const uint32_t mask = g->nslots - 1;
                if (i + AHEAD < n) {
                    size_t r2 = sel ? sel[i + AHEAD] : begin + i + AHEAD;
                    __builtin_prefetch(&g->slots[(uint32_t)num_key_hash(num_key_bits(c, r2)) & mask]);
                }
                if (i + AHEAD / 2 < n) {
                    size_t r2 = sel ? sel[i + AHEAD / 2] : begin + i + AHEAD / 2;
                    uint32_t sl = g->slots[(uint32_t)num_key_hash(num_key_bits(c, r2)) & mask];
                    if (sl != 0) __builtin_prefetch(&g->num[sl - 1]);
                }
            }
            if (valid != NULL && valid[r] == 0) {
                SF_CALL(row_slow(g, b, r, &idx[i], created));
                continue;
            }
            const uint64_t bits = num_key_bits(c, r);
            struct sf__value_cache *e = use_cache ? &vc[(bits * 0x9E3779B97F4A7C15ull) >> 54] : NULL;
            if (e != NULL && e->grp != SF__NO_GROUP && e->bits == bits) {
                idx[i] = e->grp;
                continue;
            }
            uint64_t h = num_key_hash(bits);
            /* The canonical key of one number (see sf_agent_row_key). */
            sf_store_u64(key + 1, bits);
            uint32_t gi = g->num != NULL ? lookup_num(g, bits, h) : lookup_hashed(g, key, sizeof key, h);
            if (gi == SF__NO_GROUP) {
                SF_CALL(new_group(g, key, sizeof key, h, &gi));
                *created = true;
            } else if (g->dense_ok) {
                dense_note(g, bits, gi); /* a group from before the map covered its value */
            }
            if (e != NULL) {
                e->bits = bits;
                e->grp = gi;
            }
            idx[i] = gi;
        }
        return SF_OK;
    }
    for (size_t i = 0; i < n; i++) SF_CALL(row_slow(g, b, sel ? sel[i] : begin + i, &idx[i], created));
    return SF_OK;
}

/* ---- orders ----------------------------------------------------------------- */

typedef struct ref {
    const uint8_t *p;
    size_t len;
    uint32_t idx;
} ref;

static int bytes_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

static int ref_cmp(const void *x, const void *y)
{
    const ref *a = x, *b = y;
    int c = bytes_cmp(a->p, a->len, b->p, b->len);
    if (c != 0) return c;
    return a->idx < b->idx ? -1 : a->idx > b->idx;
}

static sf_status sort_refs(ref *refs, uint32_t n, uint32_t **order)
{
    qsort(refs, n, sizeof *refs, ref_cmp);
    uint32_t *o = malloc((size_t)n * sizeof *o);
    SF_CHECK(o != NULL, SF_ERR_NOMEM, "out of memory sorting %u groups", n);
    for (uint32_t i = 0; i < n; i++) o[i] = refs[i].idx;
    *order = o;
    return SF_OK;
}

/* The first 8 bytes of a key as a big-endian number, zero-padded: a < b
 * in this number implies a < b in byte order (bytes_cmp), so sorting by it
 * and then each run of equal prefixes by bytes gives the byte order. */
static inline uint64_t key_prefix(const uint8_t *p, size_t len)
{
    uint64_t v = 0;
    size_t n = len < 8 ? len : 8;
    for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (56 - 8 * i);
    return v;
}

typedef struct pref {
    uint64_t key;
    uint32_t idx;
} pref;

/* Below this many groups a comparison sort is as fast. */
#define RADIX_MIN 512

/* Byte order of many groups: an LSD radix sort (8-bit digits, skipping
 * the digits in which every key agrees) of the 8-byte prefixes, stable, so
 * that equal prefixes keep ascending group indices; then each run of equal
 * prefixes whose keys are longer than 8 bytes is sorted by ref_cmp, which
 * breaks ties between equal keys by index as the comparison path does
 * (group keys are unique, so ties do not arise). */
static sf_status radix_order(const sf__groups *g, uint32_t **order)
{
    const uint32_t n = g->n;
    pref *a = malloc((size_t)n * sizeof *a), *b = malloc((size_t)n * sizeof *b);
    uint32_t *o = malloc((size_t)n * sizeof *o);
    sf_status rc = SF_OK;
    SF_CHECK_GOTO(a != NULL && b != NULL && o != NULL, SF_ERR_NOMEM, done, "out of memory sorting %u groups", n);
    uint64_t all_or = 0, all_and = ~(uint64_t)0;
    for (uint32_t i = 0; i < n; i++) {
        uint64_t k = key_prefix(g->keys + g->e[i].off, g->e[i].len);
        a[i] = (pref){k, i};
        all_or |= k;
        all_and &= k;
    }
    const uint64_t varies = all_or ^ all_and;
    for (int shift = 0; shift < 64; shift += 8) {
        if (((varies >> shift) & 0xff) == 0) continue;
        uint32_t cnt[256] = {0};
        for (uint32_t i = 0; i < n; i++) cnt[(a[i].key >> shift) & 0xff]++;
        uint32_t sum = 0;
        for (int d = 0; d < 256; d++) {
            uint32_t c = cnt[d];
            cnt[d] = sum;
            sum += c;
        }
        for (uint32_t i = 0; i < n; i++) b[cnt[(a[i].key >> shift) & 0xff]++] = a[i];
        pref *t = a;
        a = b;
        b = t;
    }
    for (uint32_t i = 0; i < n;) {
        uint32_t e = i + 1;
        while (e < n && a[e].key == a[i].key) e++;
        if (e - i > 1) {
            bool long_keys = false;
            for (uint32_t j = i; j < e; j++) long_keys |= g->e[a[j].idx].len > 8;
            if (long_keys) {
                ref *refs = malloc((size_t)(e - i) * sizeof *refs);
                SF_CHECK_GOTO(refs != NULL, SF_ERR_NOMEM, done, "out of memory sorting %u groups", n);
                for (uint32_t j = i; j < e; j++)
                    refs[j - i] = (ref){g->keys + g->e[a[j].idx].off, g->e[a[j].idx].len, a[j].idx};
                qsort(refs, e - i, sizeof *refs, ref_cmp);
                for (uint32_t j = i; j < e; j++) a[j].idx = refs[j - i].idx;
                free(refs);
            } else {
                /* Keys of at most 8 bytes with equal padded prefixes differ
                 * only in trailing zero bytes: the shorter sorts first. */
                for (uint32_t j = i + 1; j < e; j++) {
                    pref x = a[j];
                    uint32_t m = j;
                    while (m > i && g->e[a[m - 1].idx].len > g->e[x.idx].len) {
                        a[m] = a[m - 1];
                        m--;
                    }
                    a[m] = x;
                }
            }
        }
        i = e;
    }
    for (uint32_t i = 0; i < n; i++) o[i] = a[i].idx;
    *order = o;
    o = NULL;
done:
    free(a);
    free(b);
    free(o);
    return rc;
}

sf_status sf__groups_sorted(const sf__groups *g, uint32_t **order)
{
    *order = NULL;
    if (g->n == 0) return SF_OK;
    if (g->n >= RADIX_MIN) return radix_order(g, order);
    ref *refs = malloc((size_t)g->n * sizeof *refs);
    SF_CHECK(refs != NULL, SF_ERR_NOMEM, "out of memory sorting %u groups", g->n);
    for (uint32_t i = 0; i < g->n; i++) refs[i] = (ref){g->keys + g->e[i].off, g->e[i].len, i};
    sf_status rc = sort_refs(refs, g->n, order);
    free(refs);
    return rc;
}

sf_status sf__groups_text_order(const sf__groups *g, sf_buf *text, uint32_t **order, size_t **toff,
                                size_t **tlen)
{
    *order = NULL;
    *toff = NULL;
    *tlen = NULL;
    sf_status rc = SF_OK;
    ref *refs = NULL;
    size_t *off = NULL, *len = NULL;
    SF_CALL(sf_buf_reserve(text, 1)); /* never a NULL base, even when every key prints empty */
    if (g->n == 0) return SF_OK;
    off = malloc((size_t)g->n * sizeof *off);
    len = malloc((size_t)g->n * sizeof *len);
    refs = malloc((size_t)g->n * sizeof *refs);
    SF_CHECK_GOTO(off && len && refs, SF_ERR_NOMEM, fail, "out of memory printing %u group keys", g->n);
    for (uint32_t i = 0; i < g->n; i++) {
        off[i] = text->len;
        SF_CALL_GOTO(sf_agent_key_text(g->schema, g->by_col, g->nby, g->keys + g->e[i].off, g->e[i].len, text),
                     fail);
        len[i] = text->len - off[i];
    }
    for (uint32_t i = 0; i < g->n; i++) refs[i] = (ref){text->data + off[i], len[i], i};
    SF_CALL_GOTO(sort_refs(refs, g->n, order), fail);
    free(refs);
    *toff = off;
    *tlen = len;
    return SF_OK;
fail:
    free(refs);
    free(off);
    free(len);
    return rc;
}

sf_status sf__groups_decode_key(sf__groups *g, sf_rd *rd, const uint8_t **prev,
                                size_t *prev_len, uint32_t *idx)
{
    const char *key;
    size_t klen;
    SF_CALL(sf_rd_str(rd, &key, &klen));
    const uint8_t *k = (const uint8_t *)key;
    SF_CHECK(sf_agent_key_valid(g->schema, g->by_col, g->nby, k, klen), SF_ERR_PARSE,
             "agent state: malformed group key");
    SF_CHECK(*prev == NULL || bytes_cmp(*prev, *prev_len, k, klen) < 0, SF_ERR_PARSE,
             "agent state: groups out of order");
    *prev = k;
    *prev_len = klen;
    bool created;
    SF_CALL(sf__groups_find(g, k, klen, idx, &created));
    SF_CHECK(created || g->nby == 0, SF_ERR_PARSE, "agent state: duplicate group key");
    return SF_OK;
}
