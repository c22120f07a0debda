/* Growable byte buffers and a bounds-checked little-endian reader.
 * The encodings of agent states and shards use these so that the same bytes
 * travel over MPI and into checkpoints on any machine. */
#ifndef SF_BUF_H
#define SF_BUF_H

#include <stddef.h>
#include <stdint.h>

#include "shardflow/status.h"

typedef struct sf_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
} sf_buf;

/* Lifecycle of a buffer in caller storage. fini frees and zeroes. */
void sf_buf_init(sf_buf *b);
void sf_buf_fini(sf_buf *b);
/* Ensures room for `extra` more bytes. */
sf_status sf_buf_reserve(sf_buf *b, size_t extra);
/* Sets len to 0 and keeps the capacity. */
void sf_buf_clear(sf_buf *b);
sf_status sf_buf_append(sf_buf *b, const void *p, size_t n);
sf_status sf_buf_put_u8(sf_buf *b, uint8_t v);
sf_status sf_buf_put_u32(sf_buf *b, uint32_t v);
sf_status sf_buf_put_u64(sf_buf *b, uint64_t v);
sf_status sf_buf_put_i64(sf_buf *b, int64_t v);
sf_status sf_buf_put_f64(sf_buf *b, double v);
/* Length-prefixed (u32) byte string. */
sf_status sf_buf_put_str(sf_buf *b, const char *s, size_t n);
sf_status sf_buf_printf(sf_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Cursor over encoded bytes; every get fails with SF_ERR_PARSE on underflow. */
typedef struct sf_rd {
    const uint8_t *p;
    size_t n;
    size_t off;
} sf_rd;

void sf_rd_init(sf_rd *r, const void *p, size_t n);
sf_status sf_rd_u8(sf_rd *r, uint8_t *v);
sf_status sf_rd_u32(sf_rd *r, uint32_t *v);
sf_status sf_rd_u64(sf_rd *r, uint64_t *v);
sf_status sf_rd_i64(sf_rd *r, int64_t *v);
sf_status sf_rd_f64(sf_rd *r, double *v);
/* Borrows n bytes from the cursor (no copy). */
sf_status sf_rd_bytes(sf_rd *r, size_t n, const uint8_t **p);
/* Length-prefixed string; *s points into the encoded bytes (not terminated). */
sf_status sf_rd_str(sf_rd *r, const char **s, size_t *n);

/* Portable little-endian stores/loads for fixed-width values. */
static inline void sf_store_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline void sf_store_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t sf_load_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline uint64_t sf_load_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
}

#endif
