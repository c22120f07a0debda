/* Chunking arithmetic shared by the MPI and serial layers. */
#ifndef SF_COMM_CHUNKS_H
#define SF_COMM_CHUNKS_H
#include <limits.h>
#include <stddef.h>

static inline size_t sf__comm_chunk_count(size_t n, size_t limit)
{
    if (limit == 0) limit = 1;
    return n == 0 ? 0 : (n - 1) / limit + 1;
}

static inline size_t sf__comm_chunk_size(size_t n, size_t limit, size_t i)
{
    if (limit == 0) limit = 1;
    if (i >= sf__comm_chunk_count(n, limit)) return 0; /* also keeps i * limit from overflowing */
    size_t start = i * limit;
    return n - start < limit ? n - start : limit;
}
#endif
