#define _POSIX_C_SOURCE 200809L
#include "shardflow/buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void sf_buf_init(sf_buf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void sf_buf_fini(sf_buf *b)
{
    free(b->data);
    sf_buf_init(b);
}

sf_status sf_buf_reserve(sf_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra) return SF_OK;
    size_t need = b->len + extra;
    SF_CHECK(need >= b->len, SF_ERR_NOMEM, "buffer size overflow");
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    uint8_t *p = realloc(b->data, cap);
    SF_CHECK(p != NULL, SF_ERR_NOMEM, "out of memory growing a buffer to %zu bytes", cap);
    b->data = p;
    b->cap = cap;
    return SF_OK;
}

void sf_buf_clear(sf_buf *b) { b->len = 0; }

sf_status sf_buf_append(sf_buf *b, const void *p, size_t n)
{
    if (n == 0) return SF_OK;
    SF_CALL(sf_buf_reserve(b, n));
    memcpy(b->data + b->len, p, n);
    b->len += n;
    return SF_OK;
}

sf_status sf_buf_put_u8(sf_buf *b, uint8_t v) { return sf_buf_append(b, &v, 1); }

sf_status sf_buf_put_u32(sf_buf *b, uint32_t v)
{
    uint8_t t[4] = {(uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24)};
    return sf_buf_append(b, t, 4);
}

sf_status sf_buf_put_u64(sf_buf *b, uint64_t v)
{
    uint8_t t[8];
    sf_store_u64(t, v);
    return sf_buf_append(b, t, 8);
}

sf_status sf_buf_put_i64(sf_buf *b, int64_t v) { return sf_buf_put_u64(b, (uint64_t)v); }

sf_status sf_buf_put_f64(sf_buf *b, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    return sf_buf_put_u64(b, u);
}

sf_status sf_buf_put_str(sf_buf *b, const char *s, size_t n)
{
    SF_CHECK(n <= UINT32_MAX, SF_ERR_ARG, "string of %zu bytes is too long to encode", n);
    SF_CALL(sf_buf_put_u32(b, (uint32_t)n));
    return sf_buf_append(b, s, n);
}

sf_status sf_buf_printf(sf_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[256];
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    SF_CHECK(n >= 0, SF_ERR_INTERNAL, "formatting failed");
    if ((size_t)n < sizeof tmp) return sf_buf_append(b, tmp, (size_t)n);
    SF_CALL(sf_buf_reserve(b, (size_t)n + 1));
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return SF_OK;
}

void sf_rd_init(sf_rd *r, const void *p, size_t n)
{
    r->p = p;
    r->n = n;
    r->off = 0;
}

#define SF__RD_NEED(r, k) \
    SF_CHECK((r)->n - (r)->off >= (k), SF_ERR_PARSE, "truncated encoding (need %zu bytes at offset %zu of %zu)", (size_t)(k), (r)->off, (r)->n)

sf_status sf_rd_u8(sf_rd *r, uint8_t *v)
{
    SF__RD_NEED(r, 1);
    *v = r->p[r->off++];
    return SF_OK;
}

sf_status sf_rd_u32(sf_rd *r, uint32_t *v)
{
    SF__RD_NEED(r, 4);
    const uint8_t *p = r->p + r->off;
    *v = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    r->off += 4;
    return SF_OK;
}

sf_status sf_rd_u64(sf_rd *r, uint64_t *v)
{
    SF__RD_NEED(r, 8);
    *v = sf_load_u64(r->p + r->off);
    r->off += 8;
    return SF_OK;
}

sf_status sf_rd_i64(sf_rd *r, int64_t *v)
{
    uint64_t u;
    SF_CALL(sf_rd_u64(r, &u));
    *v = (int64_t)u;
    return SF_OK;
}

sf_status sf_rd_f64(sf_rd *r, double *v)
{
    uint64_t u;
    SF_CALL(sf_rd_u64(r, &u));
    memcpy(v, &u, 8);
    return SF_OK;
}

sf_status sf_rd_bytes(sf_rd *r, size_t n, const uint8_t **p)
{
    SF__RD_NEED(r, n);
    *p = r->p + r->off;
    r->off += n;
    return SF_OK;
}

sf_status sf_rd_str(sf_rd *r, const char **s, size_t *n)
{
    uint32_t len;
    SF_CALL(sf_rd_u32(r, &len));
    const uint8_t *p;
    SF_CALL(sf_rd_bytes(r, len, &p));
    *s = (const char *)p;
    *n = len;
    return SF_OK;
}
