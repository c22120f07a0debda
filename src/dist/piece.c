/* Work units: the wire form of shard pieces.
 *
 * A unit is a header {magic, kind, npieces, round} (u32 each) followed by
 * pieces; round is the input round its pieces come from (for data units).
 * A piece is {shard u32, ncols u32, nrows u64} and per column {type u8,
 * has_valid u8, stable u8, 5 pad bytes, nulls u64} then its arrays, each
 * padded to 8 bytes: int64/timestamp/float64 values (8 bytes a row);
 * strings as {ndict u32, pad u32}, codes (u32 a row), ndict+1 offsets
 * (u32), dictionary bytes; with stable = 1, {ndict u32, pad u32} and the
 * codes only, which index the column's stable dictionary (of ndict
 * strings) that sender and receiver both hold (sf_piece_append_ex); then
 * the validity bytes if has_valid. Everything is little-endian and
 * 8-byte aligned relative to the start of the unit, so a receiver reads the
 * arrays in place without copying. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <string.h>

#include "shardflow/dist.h"

#define UNIT_MAGIC 0x43504653u /* "SFPC" */

static int host_is_little_endian(void)
{
    uint16_t v = 1;
    uint8_t b;
    memcpy(&b, &v, 1);
    return b == 1;
}

static sf_status pad8(sf_buf *out)
{
    static const uint8_t zeros[8] = {0};
    size_t r = out->len % 8;
    return r ? sf_buf_append(out, zeros, 8 - r) : SF_OK;
}

sf_status sf_unit_begin(sf_buf *out, uint32_t kind)
{
    SF_CHECK(host_is_little_endian(), SF_ERR_INTERNAL, "shardflow's wire format needs a little-endian host");
    sf_buf_clear(out);
    SF_CALL(sf_buf_put_u32(out, UNIT_MAGIC));
    SF_CALL(sf_buf_put_u32(out, kind));
    SF_CALL(sf_buf_put_u32(out, 0));
    return sf_buf_put_u32(out, 0);
}

/* Per-thread scratch for remapping dictionary codes; grows, never shrinks. */
static _Thread_local uint32_t *remap_stamp, *remap_code, *remap_order;
static _Thread_local size_t remap_cap;
static _Thread_local uint32_t remap_gen;

static sf_status remap_reserve(size_t n)
{
    if (n <= remap_cap) return SF_OK;
    size_t cap = remap_cap ? remap_cap : 1024;
    while (cap < n) cap *= 2;
    uint32_t *a = realloc(remap_stamp, cap * sizeof *a);
    if (a) remap_stamp = a;
    uint32_t *b = realloc(remap_code, cap * sizeof *b);
    if (b) remap_code = b;
    uint32_t *c = realloc(remap_order, cap * sizeof *c);
    if (c) remap_order = c;
    SF_CHECK(a && b && c, SF_ERR_NOMEM, "out of memory (dictionary remap)");
    memset(remap_stamp + remap_cap, 0, (cap - remap_cap) * sizeof *a);
    remap_cap = cap;
    return SF_OK;
}

/* A dictionary of at most this many strings travels whole, its codes as
 * they are: the pieces of a round then share one dictionary, and an agent's
 * cache from codes to groups survives from piece to piece (agents/groups.c)
 * where the reader's dictionaries are stable across rounds, as the
 * generator's are. Larger dictionaries (addresses, users) are cut down to
 * the strings the piece uses. */
#define WHOLE_DICT_MAX 256

/* {nd, 0} and the codes of rows[0..n) unchanged, padded: every code must
 * be below nd and inside c's dictionary (what names the dictionary). */
static sf_status append_codes(sf_buf *out, const sf_column *c, const uint32_t *rows, size_t n, uint32_t nd,
                              const char *what)
{
    SF_CALL(sf_buf_put_u32(out, nd));
    SF_CALL(sf_buf_put_u32(out, 0));
    SF_CALL(sf_buf_reserve(out, n * 4 + 8));
    uint32_t *codes = (uint32_t *)(out->data + out->len);
    const uint32_t lim = nd < c->dict.n ? nd : c->dict.n;
    uint32_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t code = c->code[rows[i]];
        bad |= code >= lim;
        codes[i] = code;
    }
    SF_CHECK(!bad, SF_ERR_INTERNAL, "a piece's string column has a code outside its %s of %u", what, nd);
    out->len += n * 4;
    return pad8(out);
}

static sf_status append_whole_dict(sf_buf *out, const sf_column *c, const uint32_t *rows, size_t n)
{
    const uint32_t nd = c->dict.n;
    SF_CALL(append_codes(out, c, rows, n, nd, "dictionary"));
    const uint32_t base = c->dict.off[0], len = c->dict.off[nd] - base;
    SF_CALL(sf_buf_reserve(out, ((size_t)nd + 1) * 4 + 8));
    uint32_t *off = (uint32_t *)(out->data + out->len);
    for (uint32_t k = 0; k <= nd; k++) off[k] = c->dict.off[k] - base;
    out->len += ((size_t)nd + 1) * 4;
    SF_CALL(pad8(out));
    if (len) SF_CALL(sf_buf_append(out, c->dict.bytes + base, len));
    return pad8(out);
}

/* A piece of far fewer rows than its column's dictionary has strings (a
 * shard's share of a round of client addresses): its codes are renumbered
 * through a small hash table, which stays in the L1 cache, instead of
 * arrays as long as the dictionary. The same numbering (first appearance). */
static _Thread_local uint32_t *small_key, *small_val;
static _Thread_local size_t small_cap;

static sf_status remap_small(const sf_column *c, const uint32_t *rows, size_t n, uint32_t *codes, uint32_t *nd_out)
{
    size_t t = 64;
    while (t < 2 * n) t *= 2;
    if (t > small_cap) {
        uint32_t *k = realloc(small_key, t * sizeof *k);
        if (k) small_key = k;
        uint32_t *v = realloc(small_val, t * sizeof *v);
        if (v) small_val = v;
        SF_CHECK(k && v, SF_ERR_NOMEM, "out of memory (dictionary remap)");
        small_cap = t;
    }
    memset(small_key, 0, t * sizeof *small_key);
    const uint32_t mask = (uint32_t)t - 1;
    uint32_t nd = 0, bad = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t code = c->code[rows[i]];
        bad |= code >= c->dict.n;
        uint32_t h = (code * 0x9E3779B1u) & mask;
        while (small_key[h] != 0 && small_key[h] != code + 1) h = (h + 1) & mask;
        if (small_key[h] == 0) {
            small_key[h] = code + 1;
            small_val[h] = nd;
            remap_order[nd++] = code;
        }
        codes[i] = small_val[h];
    }
    SF_CHECK(!bad, SF_ERR_INTERNAL, "a piece's string column has a code outside its dictionary of %u", c->dict.n);
    *nd_out = nd;
    return SF_OK;
}

static sf_status append_strings(sf_buf *out, const sf_column *c, const uint32_t *rows, size_t n)
{
    if (c->dict.n > 0 && c->dict.n <= WHOLE_DICT_MAX) return append_whole_dict(out, c, rows, n);
    const bool small = (uint64_t)n * 8 <= c->dict.n;
    SF_CALL(remap_reserve(small ? n + 1 : (size_t)c->dict.n + 1));
    size_t at = out->len;
    SF_CALL(sf_buf_put_u32(out, 0));
    SF_CALL(sf_buf_put_u32(out, 0));
    SF_CALL(sf_buf_reserve(out, n * 4 + 8));
    uint32_t *codes = (uint32_t *)(out->data + out->len);
    uint32_t nd = 0;
    if (small) {
        SF_CALL(remap_small(c, rows, n, codes, &nd));
    } else {
        if (++remap_gen == 0) {
            memset(remap_stamp, 0, remap_cap * sizeof *remap_stamp);
            remap_gen = 1;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t code = c->code[rows[i]];
            if (remap_stamp[code] != remap_gen) {
                remap_stamp[code] = remap_gen;
                remap_code[code] = nd;
                remap_order[nd++] = code;
            }
            codes[i] = remap_code[code];
        }
    }
    out->len += n * 4;
    SF_CALL(pad8(out));
    uint32_t ndict = nd;
    memcpy(out->data + at, &ndict, 4);
    SF_CALL(sf_buf_reserve(out, ((size_t)nd + 1) * 4 + 8));
    uint32_t *off = (uint32_t *)(out->data + out->len);
    uint32_t pos = 0;
    off[0] = 0;
    for (uint32_t k = 0; k < nd; k++) {
        uint32_t src = remap_order[k];
        pos += c->dict.off[src + 1] - c->dict.off[src];
        off[k + 1] = pos;
    }
    out->len += ((size_t)nd + 1) * 4;
    SF_CALL(pad8(out));
    SF_CALL(sf_buf_reserve(out, (size_t)pos + 8));
    for (uint32_t k = 0; k < nd; k++) {
        size_t len;
        const char *s = sf_dict_str(&c->dict, remap_order[k], &len);
        memcpy(out->data + out->len, s, len);
        out->len += len;
    }
    return pad8(out);
}

sf_status sf_piece_append(sf_buf *out, const sf_batch *src, const int *cols, int ncols,
                          uint32_t shard, const uint32_t *rows, size_t n)
{
    return sf_piece_append_ex(out, src, cols, ncols, shard, rows, n, NULL);
}

sf_status sf_piece_append_ex(sf_buf *out, const sf_batch *src, const int *cols, int ncols, uint32_t shard,
                             const uint32_t *rows, size_t n, const sf_dict *const *stable)
{
    SF_CHECK(out->len >= 16 && out->len % 8 == 0, SF_ERR_INTERNAL, "piece appended outside a unit");
    SF_CALL(sf_buf_put_u32(out, shard));
    SF_CALL(sf_buf_put_u32(out, (uint32_t)ncols));
    SF_CALL(sf_buf_put_u64(out, (uint64_t)n));
    for (int k = 0; k < ncols; k++) {
        const sf_column *c = &src->cols[cols[k]];
        SF_CHECK(c->loaded, SF_ERR_INTERNAL, "column %d of a piece was not loaded", cols[k]);
        size_t nulls = 0;
        if (c->valid && c->nulls)
            for (size_t i = 0; i < n; i++) nulls += c->valid[rows[i]] == 0;
        const sf_dict *sd = stable && c->type == SF_STRING ? stable[k] : NULL;
        uint8_t hdr[8] = {(uint8_t)c->type, (uint8_t)(nulls > 0), (uint8_t)(sd != NULL), 0, 0, 0, 0, 0};
        SF_CALL(sf_buf_append(out, hdr, 8));
        SF_CALL(sf_buf_put_u64(out, nulls));
        if (sd != NULL) {
            SF_CALL(append_codes(out, c, rows, n, sd->n, "stable dictionary"));
        } else if (c->type == SF_STRING) {
            SF_CALL(append_strings(out, c, rows, n));
        } else {
            SF_CALL(sf_buf_reserve(out, n * 8));
            if (c->type == SF_FLOAT64) {
                double *d = (double *)(out->data + out->len);
                for (size_t i = 0; i < n; i++) d[i] = c->f64[rows[i]];
            } else {
                int64_t *d = (int64_t *)(out->data + out->len);
                for (size_t i = 0; i < n; i++) d[i] = c->i64[rows[i]];
            }
            out->len += n * 8;
        }
        if (nulls) {
            SF_CALL(sf_buf_reserve(out, n + 8));
            uint8_t *v = out->data + out->len;
            for (size_t i = 0; i < n; i++) v[i] = c->valid[rows[i]];
            out->len += n;
            SF_CALL(pad8(out));
        }
    }
    uint32_t np;
    memcpy(&np, out->data + 8, 4);
    np++;
    memcpy(out->data + 8, &np, 4);
    return SF_OK;
}

#define NEED(k)                                                                    \
    SF_CHECK((k) <= n - off, SF_ERR_INTERNAL, "malformed work unit (%zu bytes at %zu of %zu)", \
             (size_t)(k), off, n)
#define ALIGN8(x) (((x) + 7) & ~(size_t)7)
/* count elements of size elem (padded to 8) fit in what is left, checked
 * without overflow. */
#define NEED_ARRAY(count, elem)                                                        \
    SF_CHECK((uint64_t)(count) <= (uint64_t)(n - off) / (elem) &&                    \
                 ALIGN8((size_t)(count) * (elem)) <= n - off,                          \
             SF_ERR_INTERNAL, "malformed work unit (%llu elements of %d bytes at %zu of %zu)", \
             (unsigned long long)(count), (int)(elem), off, n)

static sf_status view_reserve(sf_piece_view **views, size_t *cap, size_t need)
{
    if (need <= *cap) return SF_OK;
    size_t nc = *cap ? *cap : 8;
    while (nc < need) nc *= 2;
    sf_piece_view *v = realloc(*views, nc * sizeof *v);
    SF_CHECK(v != NULL, SF_ERR_NOMEM, "out of memory (piece views)");
    /* Stored at once: realloc may have moved the old array. */
    *views = v;
    for (size_t i = *cap; i < nc; i++) memset(&v[i], 0, sizeof v[i]);
    *cap = nc;
    return SF_OK;
}

/* Gives a view room for ncols columns (views are reused across passes). */
static sf_status view_columns(sf_piece_view *v, int ncols)
{
    if (v->cols_cap < ncols || v->batch.cols == NULL) {
        int want = ncols ? ncols : 1;
        sf_column *c = realloc(v->batch.cols, sizeof(sf_column) * (size_t)want);
        SF_CHECK(c != NULL, SF_ERR_NOMEM, "out of memory (piece views)");
        v->batch.cols = c;
        v->cols_cap = want;
    }
    v->batch.ncols = ncols;
    return SF_OK;
}

sf_status sf_unit_views_of_runs(const sf_batch *b, const int *cols, int ncols, const size_t *start, int k,
                                sf_piece_view **views, size_t *nviews, size_t *cap)
{
    *nviews = 0;
    size_t np = 0;
    for (int s = 0; s < k; s++) np += start[s + 1] > start[s];
    SF_CALL(view_reserve(views, cap, np));
    for (int c = 0; c < ncols; c++) {
        const sf_column *src = &b->cols[cols[c]];
        SF_CHECK(src->loaded && src->type != SF_STRING && src->type != SF_TYPE_NONE, SF_ERR_ARG,
                 "column %d of a piece view is not a loaded number", cols[c]);
    }
    size_t at = 0;
    for (int s = 0; s < k; s++) {
        const size_t r0 = start[s], n = start[s + 1] - start[s];
        if (n == 0) continue;
        SF_CHECK(start[s + 1] <= b->nrows, SF_ERR_INTERNAL, "piece view rows %zu..%zu of %zu", r0, r0 + n,
                 b->nrows);
        sf_piece_view *v = &(*views)[at];
        SF_CALL(view_columns(v, ncols));
        v->shard = (uint32_t)s;
        sf_batch *pb = &v->batch;
        pb->nrows = pb->cap = n;
        pb->first_row = 0;
        pb->row_offset = NULL;
        pb->row_bytes = NULL;
        for (int c = 0; c < ncols; c++) {
            const sf_column *src = &b->cols[cols[c]];
            sf_column *col = &pb->cols[c];
            memset(col, 0, sizeof *col);
            col->type = src->type;
            col->loaded = true;
            if (src->type == SF_FLOAT64)
                col->f64 = src->f64 + r0;
            else
                col->i64 = src->i64 + r0;
            size_t nulls = 0;
            if (src->valid && src->nulls) nulls = sf_valid_nulls(src->valid + r0, n);
            /* As a packed piece: validity only where the piece has a null. */
            col->nulls = nulls;
            col->valid = nulls ? src->valid + r0 : NULL;
        }
        *nviews = ++at;
    }
    return SF_OK;
}

void sf_unit_views_free(sf_piece_view *views, size_t cap)
{
    for (size_t i = 0; i < cap; i++) free(views[i].batch.cols);
    free(views);
}

sf_status sf_unit_append_pieces(sf_buf *buf, size_t at, const uint8_t *bytes, size_t n)
{
    SF_CHECK(n >= 16 && n % 8 == 0 && at <= buf->len, SF_ERR_INTERNAL, "appending a malformed unit of %zu bytes",
             n);
    if (buf->len == at) return sf_buf_append(buf, bytes, n);
    SF_CHECK(buf->len - at >= 16, SF_ERR_INTERNAL, "appending to a malformed unit of %zu bytes", buf->len - at);
    uint32_t a, b;
    memcpy(&a, buf->data + at + 8, 4);
    memcpy(&b, bytes + 8, 4);
    /* Units are multiples of 8 bytes: the appended pieces stay aligned. */
    SF_CALL(sf_buf_append(buf, bytes + 16, n - 16));
    a += b;
    memcpy(buf->data + at + 8, &a, 4);
    return SF_OK;
}

void sf_unit_set_round(sf_buf *unit, uint32_t round)
{
    if (unit->len >= 16) memcpy(unit->data + 12, &round, 4);
}

void sf_unit_set_meta(sf_buf *unit, uint32_t id, bool speculative, uint32_t attempt_base)
{
    if (unit->len < 16) return;
    uint32_t w;
    memcpy(&w, unit->data + 4, 4);
    w = (w & 0xFu) | (speculative ? 0x10u : 0u) | ((attempt_base & 0x7Fu) << 5) | ((id & 0xFFFFFu) << 12);
    memcpy(unit->data + 4, &w, 4);
}

void sf_unit_meta(const uint8_t *bytes, size_t n, uint32_t *id, bool *speculative, uint32_t *attempt_base)
{
    uint32_t w = 0;
    if (n >= 16) memcpy(&w, bytes + 4, 4);
    *id = w >> 12;
    *speculative = (w & 0x10u) != 0;
    *attempt_base = (w >> 5) & 0x7Fu;
}

uint32_t sf_unit_round(const uint8_t *bytes, size_t n)
{
    uint32_t r = 0;
    if (n >= 16) memcpy(&r, bytes + 12, 4);
    return r;
}

sf_status sf_unit_parse(const uint8_t *p, size_t n, const sf_schema *schema, uint32_t *kind,
                        sf_piece_view **views, size_t *nviews, size_t *cap)
{
    return sf_unit_parse_ex(p, n, schema, NULL, kind, views, nviews, cap);
}

sf_status sf_unit_parse_ex(const uint8_t *p, size_t n, const sf_schema *schema, const sf_dict *const *stable,
                           uint32_t *kind, sf_piece_view **views, size_t *nviews, size_t *cap)
{
    size_t off = 0;
    *nviews = 0;
    NEED(16);
    uint32_t magic, np;
    memcpy(&magic, p, 4);
    memcpy(kind, p + 4, 4);
    *kind &= 0xFu; /* the other bits: sf_unit_meta */
    memcpy(&np, p + 8, 4);
    SF_CHECK(magic == UNIT_MAGIC, SF_ERR_INTERNAL, "work unit has a bad magic number");
    off = 16;
    SF_CHECK(*kind <= 4, SF_ERR_INTERNAL, "work unit has an unknown kind %u", *kind);
    if (*kind != 0) {
        SF_CHECK(np == 0 && n == 16, SF_ERR_INTERNAL, "control unit has %zu extra bytes", n - 16);
        return SF_OK;
    }
    /* Each piece takes at least 16 bytes: a count beyond that is corrupt. */
    SF_CHECK(np <= (n - off) / 16, SF_ERR_INTERNAL, "work unit claims %u pieces in %zu bytes", np, n);
    SF_CALL(view_reserve(views, cap, np));
    for (uint32_t k = 0; k < np; k++) {
        sf_piece_view *v = &(*views)[k];
        SF_CALL(view_columns(v, schema->ncols));
        NEED(16);
        uint32_t ncols;
        uint64_t rows;
        memcpy(&v->shard, p + off, 4);
        memcpy(&ncols, p + off + 4, 4);
        memcpy(&rows, p + off + 8, 8);
        off += 16;
        SF_CHECK((int)ncols == schema->ncols, SF_ERR_INTERNAL, "work unit has %u columns, expected %d",
                 ncols, schema->ncols);
        sf_batch *b = &v->batch;
        b->nrows = b->cap = (size_t)rows;
        b->first_row = 0;
        b->row_offset = NULL;
        b->row_bytes = NULL;
        for (uint32_t c = 0; c < ncols; c++) {
            sf_column *col = &b->cols[c];
            memset(col, 0, sizeof *col);
            NEED(16);
            uint8_t type = p[off], has_valid = p[off + 1], is_stable = p[off + 2];
            uint64_t nulls;
            memcpy(&nulls, p + off + 8, 8);
            off += 16;
            SF_CHECK(type == (uint8_t)schema->fields[c].type, SF_ERR_INTERNAL,
                     "work unit column %u has type %u, expected %d", c, type, (int)schema->fields[c].type);
            col->type = (sf_type)type;
            col->loaded = true;
            col->nulls = (size_t)nulls;
            SF_CHECK(is_stable <= 1 && (!is_stable || col->type == SF_STRING), SF_ERR_INTERNAL,
                     "work unit column %u has a bad stable flag %u", c, is_stable);
            if (is_stable) {
                const sf_dict *sd = stable ? stable[c] : NULL;
                NEED(8);
                uint32_t nd;
                memcpy(&nd, p + off, 4);
                off += 8;
                SF_CHECK(sd != NULL, SF_ERR_INTERNAL,
                         "work unit column %u refers to a stable dictionary this rank does not hold", c);
                SF_CHECK(nd == sd->n, SF_ERR_INTERNAL,
                         "work unit column %u refers to a stable dictionary of %u strings, this rank's has %u", c,
                         nd, sd->n);
                NEED_ARRAY(rows, 4);
                col->code = (uint32_t *)(p + off);
                off += ALIGN8(rows * 4);
                uint32_t bad = 0;
                for (uint64_t i = 0; i < rows; i++) bad |= col->code[i] >= nd;
                SF_CHECK(!bad, SF_ERR_INTERNAL, "work unit string code out of range");
                col->dict = *sd;
            } else if (col->type == SF_STRING) {
                NEED(8);
                uint32_t nd;
                memcpy(&nd, p + off, 4);
                off += 8;
                NEED_ARRAY(rows, 4);
                col->code = (uint32_t *)(p + off);
                off += ALIGN8(rows * 4);
                NEED_ARRAY((uint64_t)nd + 1, 4);
                col->dict.off = (uint32_t *)(p + off);
                col->dict.n = nd;
                off += ALIGN8(((size_t)nd + 1) * 4);
                size_t blen = col->dict.off[nd];
                NEED(ALIGN8(blen));
                /* Offsets ascend from 0 and codes index the dictionary. */
                SF_CHECK(col->dict.off[0] == 0, SF_ERR_INTERNAL, "work unit dictionary does not start at 0");
                for (uint32_t d = 0; d < nd; d++)
                    SF_CHECK(col->dict.off[d] <= col->dict.off[d + 1], SF_ERR_INTERNAL,
                             "work unit dictionary offsets descend");
                for (uint64_t i = 0; i < rows; i++)
                    SF_CHECK(col->code[i] < nd, SF_ERR_INTERNAL, "work unit string code out of range");
                col->dict.bytes = (char *)(p + off);
                col->dict.bytes_len = blen;
                off += ALIGN8(blen);
            } else {
                NEED_ARRAY(rows, 8);
                if (col->type == SF_FLOAT64)
                    col->f64 = (double *)(p + off);
                else
                    col->i64 = (int64_t *)(p + off);
                off += rows * 8;
            }
            if (has_valid) {
                NEED_ARRAY(rows, 1);
                col->valid = (uint8_t *)(p + off);
                off += ALIGN8(rows);
            }
        }
        *nviews = k + 1;
    }
    SF_CHECK(off == n, SF_ERR_INTERNAL, "work unit has %zu trailing bytes", n - off);
    return SF_OK;
}
