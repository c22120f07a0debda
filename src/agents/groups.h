/* A group table for grouped agents: canonical key bytes -> dense group index
 * 0, 1, 2, ... in order of first appearance. The agent keeps its own
 * per-group payload in arrays indexed by the group index (grow them when
 * sf__groups_row/find report created).
 *
 * With string key columns (one, or up to four whose dictionaries' sizes
 * multiply to at most 2^20), a cache from the batch's dictionary codes to
 * the group makes most rows cost one array lookup; sf__groups_batch starts
 * it afresh for a batch whose dictionaries differ from those it was filled
 * for (codes are only meaningful inside one dictionary), and keeps it when
 * they are equal (compared for dictionaries of up to 256 strings). Private to src/agents/. Not thread-safe (one table per
 * state); const functions may be called concurrently. */
#ifndef SF_AGENTS_GROUPS_H
#define SF_AGENTS_GROUPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/agent.h"
#include "shardflow/buf.h"

#define SF__NO_GROUP UINT32_MAX

typedef struct sf__groups {
    int nby;
    const int *by_col;       /* borrowed: key columns in the pass schema */
    const sf_schema *schema; /* borrowed */
    uint32_t n;              /* groups */
    uint32_t cap;
    /* Group i's key is keys + e[i].off, e[i].len bytes; its hash beside it,
     * so that a probe touches one entry, not three arrays. */
    struct sf__group_entry { uint64_t hash; size_t off; uint32_t len; } *e;
    uint8_t *keys;
    size_t keys_len, keys_cap;
    uint32_t *slots;         /* group + 1, 0 = empty */
    uint32_t nslots;         /* power of two */
    uint8_t *scratch;        /* key of the current row */
    size_t scratch_cap;
    struct sf__code_cache { uint32_t gen, grp; } *cache;
    size_t cache_cap;
    uint32_t gen;
    const sf_column *cache_col; /* the key column of the current batch */
    uint32_t null_grp;          /* group of a null key in the current batch */
    /* Several string key columns: the cache is indexed by the composite
     * code sum(code_i * stride_i) when the product of the dictionaries'
     * sizes is small. */
    const sf_batch *multi_batch;
    uint32_t stride[4];
    /* One numeric key column: a direct-mapped cache from the value's bits
     * to the group (values, unlike dictionary codes, keep their meaning
     * across batches). */
    struct sf__value_cache { uint64_t bits; uint32_t grp; } *vcache;
    /* One numeric key column: each group's value bits (beside e[], so
     * that a probe compares one word instead of the key bytes), and the
     * group of the null key (SF__NO_GROUP if none). */
    uint64_t *num;
    uint32_t num_null;
    /* One SF_INT64 key column: the group + 1 of values v < dense_cap that
     * have a group (0: not noted, ask the hash table), so that small
     * non-negative keys (user ids, status codes) cost one array lookup and
     * no hash. Bounded by the number of groups (agents/groups.c). */
    bool dense_ok;
    uint32_t *dense;
    uint32_t dense_cap;
    /* Copies of the (small) dictionaries of the key columns that the code
     * cache was filled for: a batch whose dictionaries are equal keeps the
     * cache instead of starting it afresh (pieces of a stable reader, such
     * as the generator's, share their dictionaries). A dictionary with a
     * stable_id is saved as its id alone, whatever its size. ncd == 0: none. */
    struct sf__saved_dict {
        uint32_t n;
        uint32_t *off;
        char *bytes;
        size_t off_cap, bytes_cap;
        uint64_t stable_id;
    } cd[4];
    int ncd;
    /* The group indices of the last sf__groups_rows call. */
    uint32_t *idx;
    size_t idx_cap;
} sf__groups;

/* by_col/nby/schema are borrowed (normally from the agent's config). With
 * nby == 0 every row is in the one group of the empty key, created here. */
sf_status sf__groups_init(sf__groups *g, const sf_schema *schema, const int *by_col, int nby);
void sf__groups_fini(sf__groups *g);
/* Forgets every group (keeps allocations); with nby == 0 recreates the one group. */
sf_status sf__groups_clear(sf__groups *g);

/* Starts a batch: call once per process() before sf__groups_row. Fails
 * (SF_ERR_INTERNAL) if a key column is not loaded in b. */
sf_status sf__groups_batch(sf__groups *g, const sf_batch *b);
/* The group of row r of b (created if new: *created, which may be NULL). */
sf_status sf__groups_row(sf__groups *g, const sf_batch *b, size_t r, uint32_t *idx, bool *created);
/* The groups of all rows of a process() call: (*idx)[i] is the group of
 * row sf_rows_at(rows, i), created if new (*created: whether any was, so
 * that the caller grows its per-group arrays once). The array belongs to
 * the table and is valid until the next call. Same groups, created in the
 * same order, as sf__groups_row row by row; the cached paths run as one
 * loop without a call per row. Call sf__groups_batch(g, b) first. */
sf_status sf__groups_rows(sf__groups *g, const sf_batch *b, const sf_rows *rows, const uint32_t **idx /* out */,
                          bool *created /* out */);
/* Room for n more groups (entries and hash slots) without growing, e.g.
 * before decoding n keys. */
sf_status sf__groups_reserve(sf__groups *g, size_t n);
/* The group of key bytes (created if new). */
sf_status sf__groups_find(sf__groups *g, const uint8_t *key, size_t len, uint32_t *idx,
                          bool *created);
/* The groups in g of groups of another table with the same key columns
 * (merges): out[i] is the group in g of src's group which[i] (which NULL:
 * of src's group i, for i < n), created if new, and *created (may be NULL)
 * whether any was. The same groups, created in the same order, as
 * sf__groups_find of each key in turn; it reuses the hashes src keeps,
 * compares numbers instead of key bytes where both tables keep them, and
 * prefetches the probes some keys ahead, so that a merge into a table much
 * larger than the caches is not one cache miss after another. */
sf_status sf__groups_find_all(sf__groups *g, const sf__groups *src, const uint32_t *which, size_t n,
                              uint32_t *out, bool *created /* out */);
/* A merge's mapping: *map (malloc'ed, the caller frees it; NULL when n is
 * 0) gets the groups in g of src's groups 0..n-1, as sf__groups_find_all. */
sf_status sf__groups_map(sf__groups *g, const sf__groups *src, size_t n, uint32_t **map, bool *created /* out */);
/* The same for n keys of klen bytes each, key i at keys + i * klen. */
sf_status sf__groups_find_fixed(sf__groups *g, const uint8_t *keys, size_t klen, size_t n, uint32_t *out,
                                bool *created /* out */);
/* The group of key bytes without creating it: SF__NO_GROUP if absent. */
uint32_t sf__groups_lookup(const sf__groups *g, const uint8_t *key, size_t len);
static inline const uint8_t *sf__groups_key(const sf__groups *g, uint32_t i, size_t *len)
{
    *len = g->e[i].len;
    return g->keys + g->e[i].off;
}

/* The groups in ascending byte order of their keys (for encode): a malloc'ed
 * array of n indices in *order (NULL when n == 0). */
sf_status sf__groups_sorted(const sf__groups *g, uint32_t **order);
/* The groups in ascending byte order of their printed keys (for report):
 * *order as above; text receives the printed keys, group i's at
 * text->data + (*toff)[i] with length (*tlen)[i]. Free order, toff and tlen. */
sf_status sf__groups_text_order(const sf__groups *g, sf_buf *text, uint32_t **order, size_t **toff,
                                size_t **tlen);

/* Encoding helpers: a key is written as sf_buf_put_str (keys in the order
 * of sf__groups_sorted); decode reads one, checks that it is well formed
 * for the columns and strictly greater than the previous one (prev/prev_len,
 * NULL at the start), and adds its group. Call sf__groups_clear first; with
 * nby == 0 the empty key is the existing group 0. */
sf_status sf__groups_decode_key(sf__groups *g, sf_rd *rd, const uint8_t **prev,
                                size_t *prev_len, uint32_t *idx);

#endif
