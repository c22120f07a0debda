#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
/* Inline (header-only) XXH3: the same hashes as the library's, without a
 * call through the PLT for every string a reader interns. */
#define XXH_INLINE_ALL
#include <xxhash.h>

#include "shardflow/batch.h"

void sf_dict_init(sf_dict *d) { memset(d, 0, sizeof *d); }

uint64_t sf_dict_stable_id(void)
{
    static _Atomic uint64_t next = 1;
    return atomic_fetch_add(&next, 1);
}

void sf_dict_fini(sf_dict *d)
{
    free(d->off);
    free(d->bytes);
    free(d->slots);
    free(d->hashes);
    sf_dict_init(d);
}

void sf_dict_clear(sf_dict *d)
{
    d->n = 0;
    d->bytes_len = 0;
    if (d->off) d->off[0] = 0;
    if (d->slots) memset(d->slots, 0, sizeof(uint32_t) * d->nslots);
}

static sf_status dict_rehash(sf_dict *d, uint32_t nslots)
{
    uint32_t *slots = calloc(nslots, sizeof *slots);
    SF_CHECK(slots != NULL, SF_ERR_NOMEM, "out of memory (string dictionary)");
    for (uint32_t c = 0; c < d->n; c++) {
        uint32_t i = (uint32_t)d->hashes[c] & (nslots - 1);
        while (slots[i]) i = (i + 1) & (nslots - 1);
        slots[i] = c + 1;
    }
    free(d->slots);
    d->slots = slots;
    d->nslots = nslots;
    return SF_OK;
}

sf_status sf_dict_intern(sf_dict *d, const char *s, size_t len, uint32_t *code)
{
    if (d->off == NULL) {
        d->off_cap = 64;
        d->off = malloc(sizeof(uint32_t) * (d->off_cap + 1));
        d->hashes = malloc(sizeof(uint64_t) * d->off_cap);
        SF_CHECK(d->off && d->hashes, SF_ERR_NOMEM, "out of memory (string dictionary)");
        d->off[0] = 0;
    }
    if (d->nslots == 0) SF_CALL(dict_rehash(d, 128));
    uint64_t h = XXH3_64bits(s, len);
    uint32_t mask = d->nslots - 1;
    uint32_t i = (uint32_t)h & mask;
    for (;;) {
        uint32_t slot = d->slots[i];
        if (slot == 0) break;
        uint32_t c = slot - 1;
        if (d->hashes[c] == h && d->off[c + 1] - d->off[c] == len &&
            (len == 0 || memcmp(d->bytes + d->off[c], s, len) == 0)) {
            *code = c;
            return SF_OK;
        }
        i = (i + 1) & mask;
    }
    SF_CHECK(d->n < UINT32_MAX - 1, SF_ERR_NOMEM, "string dictionary is full");
    SF_CHECK(d->bytes_len + len <= UINT32_MAX, SF_ERR_NOMEM,
             "string dictionary exceeds 4 GiB in one batch; use a smaller input.batch_rows");
    if (d->n == d->off_cap) {
        uint32_t cap = d->off_cap * 2;
        uint32_t *off = realloc(d->off, sizeof(uint32_t) * (cap + 1));
        SF_CHECK(off != NULL, SF_ERR_NOMEM, "out of memory (string dictionary)");
        d->off = off;
        uint64_t *hs = realloc(d->hashes, sizeof(uint64_t) * cap);
        SF_CHECK(hs != NULL, SF_ERR_NOMEM, "out of memory (string dictionary)");
        d->hashes = hs;
        d->off_cap = cap;
    }
    if (d->bytes_cap - d->bytes_len < len) {
        size_t cap = d->bytes_cap ? d->bytes_cap : 1024;
        while (cap - d->bytes_len < len) cap *= 2;
        char *b = realloc(d->bytes, cap);
        SF_CHECK(b != NULL, SF_ERR_NOMEM, "out of memory (string dictionary)");
        d->bytes = b;
        d->bytes_cap = cap;
    }
    if (len) memcpy(d->bytes + d->bytes_len, s, len);
    d->bytes_len += len;
    uint32_t c = d->n++;
    d->off[c + 1] = (uint32_t)d->bytes_len;
    d->hashes[c] = h;
    d->slots[i] = c + 1;
    *code = c;
    if ((uint64_t)d->n * 2 > d->nslots) SF_CALL(dict_rehash(d, d->nslots * 2));
    return SF_OK;
}

sf_status sf_dict_copy(sf_dict *d, const sf_dict *src)
{
    sf_dict_clear(d);
    if (src->n == 0) return SF_OK;
    if (d->off == NULL || d->off_cap < src->n) {
        uint32_t cap = d->off_cap ? d->off_cap : 64;
        while (cap < src->n) cap *= 2;
        uint32_t *off = realloc(d->off, sizeof(uint32_t) * ((size_t)cap + 1));
        if (off) d->off = off;
        uint64_t *hs = realloc(d->hashes, sizeof(uint64_t) * cap);
        if (hs) d->hashes = hs;
        SF_CHECK(off && hs, SF_ERR_NOMEM, "out of memory (string dictionary of %u strings)", src->n);
        d->off_cap = cap;
    }
    if (d->bytes_cap < src->bytes_len) {
        char *b = realloc(d->bytes, src->bytes_len);
        SF_CHECK(b != NULL, SF_ERR_NOMEM, "out of memory (string dictionary of %zu bytes)", src->bytes_len);
        d->bytes = b;
        d->bytes_cap = src->bytes_len;
    }
    memcpy(d->off, src->off, sizeof(uint32_t) * ((size_t)src->n + 1));
    if (src->bytes_len) memcpy(d->bytes, src->bytes, src->bytes_len);
    d->n = src->n;
    d->bytes_len = src->bytes_len;
    if (src->hashes != NULL && src->slots != NULL && src->nslots != 0) {
        memcpy(d->hashes, src->hashes, sizeof(uint64_t) * src->n);
        if (d->nslots != src->nslots) {
            uint32_t *slots = malloc(sizeof(uint32_t) * src->nslots);
            SF_CHECK(slots != NULL, SF_ERR_NOMEM, "out of memory (string dictionary)");
            free(d->slots);
            d->slots = slots;
            d->nslots = src->nslots;
        }
        memcpy(d->slots, src->slots, sizeof(uint32_t) * src->nslots);
        return SF_OK;
    }
    /* src has no index (a view of a work unit): build one. */
    for (uint32_t c = 0; c < d->n; c++) d->hashes[c] = XXH3_64bits(d->bytes + d->off[c], d->off[c + 1] - d->off[c]);
    uint32_t nslots = 128;
    while ((uint64_t)d->n * 2 > nslots) nslots *= 2;
    return dict_rehash(d, nslots);
}

bool sf_dict_find(const sf_dict *d, const char *s, size_t len, uint32_t *code)
{
    if (d->n == 0) return false;
    if (d->nslots != 0 && d->slots != NULL && d->hashes != NULL) {
        uint64_t h = XXH3_64bits(s, len);
        uint32_t mask = d->nslots - 1;
        for (uint32_t i = (uint32_t)h & mask; d->slots[i] != 0; i = (i + 1) & mask) {
            uint32_t c = d->slots[i] - 1;
            if (d->hashes[c] == h && d->off[c + 1] - d->off[c] == len &&
                (len == 0 || memcmp(d->bytes + d->off[c], s, len) == 0)) {
                *code = c;
                return true;
            }
        }
        return false;
    }
    /* A dictionary viewed in place (a received work unit) has no index. */
    for (uint32_t c = 0; c < d->n; c++)
        if (d->off[c + 1] - d->off[c] == len && (len == 0 || memcmp(d->bytes + d->off[c], s, len) == 0)) {
            *code = c;
            return true;
        }
    return false;
}
