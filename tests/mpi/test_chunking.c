/* Real MPI: messages split into chunks of a forced small limit arrive intact
 * (send, isend, bcast, reduce, all-to-all), and the chunk arithmetic covers every byte.
 * Run under mpirun at several rank counts. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/comm.h"

static int failures = 0;
#define EXPECT(cond, ...)                                  \
    do {                                                   \
        if (!(cond)) {                                     \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", sf_comm_rank(), __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                  \
            fputc('\n', stderr);                           \
            failures++;                                    \
        }                                                  \
    } while (0)

/* Deterministic bytes, regenerated independently on the receiver. */
static void fill(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)x;
    }
}

/* Reduction payload: a vector of u64 summed element-wise. */
static sf_status sum_merge(sf_buf *into, const uint8_t *from, size_t n, void *ctx)
{
    (void)ctx;
    if (n != into->len) return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "length mismatch");
    for (size_t i = 0; i + 8 <= n; i += 8) sf_store_u64(into->data + i, sf_load_u64(into->data + i) + sf_load_u64(from + i));
    return SF_OK;
}

int main(int argc, char **argv)
{
    if (sf_comm_init(&argc, &argv) != SF_OK) return 1;
    int rank = sf_comm_rank(), size = sf_comm_size();
    size_t limits[] = {1, 7, 4096};
    size_t sizes[] = {0, 1, 6, 7, 8, 13, 1000, 100003};

    /* Pure arithmetic: chunks cover [0, n) exactly with no chunk over the limit. */
    for (size_t li = 0; li < 3; li++)
        for (size_t si = 0; si < 8; si++) {
            size_t n = sizes[si], lim = limits[li], total = 0, count = sf_comm_chunk_count(n, lim);
            for (size_t i = 0; i < count; i++) {
                size_t c = sf_comm_chunk_size(n, lim, i);
                EXPECT(c >= 1 && c <= lim, "chunk %zu of %zu has %zu bytes", i, n, c);
                total += c;
            }
            EXPECT(total == n, "chunks of %zu cover %zu", n, total);
            EXPECT(count == (n + lim - 1) / lim, "chunk count %zu for %zu/%zu", count, n, lim);
        }

    sf_buf got;
    sf_buf_init(&got);
    for (size_t li = 0; li < 3; li++) {
        sf_comm_set_chunk_limit(limits[li]);
        for (size_t si = 0; si < 8; si++) {
            size_t n = sizes[si];
            if (limits[li] == 1 && n > 20000) continue; /* a byte per message: keep it short */
            uint64_t seed = li * 100 + si;
            if (rank == 0) {
                uint8_t *p = malloc(n + 1);
                fill(p, n, seed);
                sf_comm_req **reqs = calloc((size_t)size, sizeof *reqs);
                for (int d = 1; d < size; d++) {
                    if (d % 2)
                        EXPECT(sf_comm_send(d, SF_TAG_TEST, p, n) == SF_OK, "send: %s", sf_error_message());
                    else
                        EXPECT(sf_comm_isend(d, SF_TAG_TEST, p, n, &reqs[d]) == SF_OK, "isend: %s", sf_error_message());
                }
                for (int d = 1; d < size; d++) EXPECT(sf_comm_wait(&reqs[d]) == SF_OK, "wait");
                free(reqs);
                free(p);
            } else {
                int from = -2;
                EXPECT(sf_comm_recv(-1, SF_TAG_TEST, &got, &from) == SF_OK, "recv: %s", sf_error_message());
                EXPECT(from == 0, "message from %d", from);
                uint8_t *want = malloc(n + 1);
                fill(want, n, seed);
                EXPECT(got.len == n && (n == 0 || memcmp(got.data, want, n) == 0),
                       "payload of %zu bytes (limit %zu) differs (got %zu bytes)", n, limits[li], got.len);
                free(want);
            }
            /* Broadcast of the same payload. */
            sf_buf b;
            sf_buf_init(&b);
            if (rank == 0) {
                sf_buf_reserve(&b, n + 1);
                fill(b.data, n, seed + 7);
                b.len = n;
            }
            EXPECT(sf_comm_bcast(&b, 0) == SF_OK, "bcast");
            uint8_t *want = malloc(n + 1);
            fill(want, n, seed + 7);
            EXPECT(b.len == n && (n == 0 || memcmp(b.data, want, n) == 0), "bcast payload of %zu differs", n);
            free(want);
            sf_buf_fini(&b);
        }
        /* Tree reduction of (rank + 1) * (i + 1): the sum has a closed form. */
        sf_buf v;
        sf_buf_init(&v);
        int nelem = 1000;
        for (int i = 0; i < nelem; i++) sf_buf_put_u64(&v, (uint64_t)(rank + 1) * (uint64_t)(i + 1));
        EXPECT(sf_comm_reduce(&v, sum_merge, NULL) == SF_OK, "reduce: %s", sf_error_message());
        if (rank == 0) {
            uint64_t ranks = (uint64_t)size * (uint64_t)(size + 1) / 2;
            for (int i = 0; i < nelem; i++)
                EXPECT(sf_load_u64(v.data + 8 * i) == ranks * (uint64_t)(i + 1), "reduced element %d", i);
        }
        sf_buf_fini(&v);

        /* All-to-all: rank s sends rank d a payload whose size and bytes
         * depend on (s, d); every receiver regenerates what it expects. */
        for (size_t si = 0; si < 8; si++) {
            if (limits[li] == 1 && sizes[si] > 1000) continue;
            uint64_t *sc = calloc((size_t)size, sizeof *sc), *rcv = calloc((size_t)size, sizeof *rcv);
            size_t total = 0;
            for (int d = 0; d < size; d++) {
                sc[d] = (sizes[si] + (size_t)(3 * rank + d)) % (sizes[si] + 5);
                total += sc[d];
            }
            uint8_t *sb = malloc(total + 1);
            size_t at = 0;
            for (int d = 0; d < size; d++) {
                fill(sb + at, sc[d], 1000 * li + 100 * (uint64_t)rank + (uint64_t)d + si);
                at += sc[d];
            }
            sf_buf rb;
            sf_buf_init(&rb);
            EXPECT(sf_comm_alltoallv(sb, sc, &rb, rcv) == SF_OK, "alltoallv: %s", sf_error_message());
            size_t off = 0;
            for (int s = 0; s < size; s++) {
                size_t want_n = (sizes[si] + (size_t)(3 * s + rank)) % (sizes[si] + 5);
                EXPECT(rcv[s] == want_n, "alltoallv from %d: %llu bytes, expected %zu", s, (unsigned long long)rcv[s],
                       want_n);
                uint8_t *want = malloc(want_n + 1);
                fill(want, want_n, 1000 * li + 100 * (uint64_t)s + (uint64_t)rank + si);
                EXPECT(off + want_n <= rb.len && (want_n == 0 || memcmp(rb.data + off, want, want_n) == 0),
                       "alltoallv payload from %d (limit %zu, %zu bytes) differs", s, limits[li], want_n);
                free(want);
                off += want_n;
            }
            EXPECT(rb.len == off, "alltoallv received %zu bytes, expected %zu", rb.len, off);
            sf_buf_fini(&rb);
            free(sb);
            free(sc);
            free(rcv);
        }
    }
    sf_buf_fini(&got);

    /* Agreement: rank size-1 fails with a message every rank must see. */
    sf_error_clear();
    sf_status local = SF_OK;
    if (rank == size - 1) local = sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, "boom on rank %d", rank);
    sf_status agreed = sf_comm_agree(local);
    char want_msg[64];
    snprintf(want_msg, sizeof want_msg, "boom on rank %d", size - 1);
    EXPECT(agreed == SF_ERR_PARSE, "agreed status %d", (int)agreed);
    EXPECT(strcmp(sf_error_message(), want_msg) == 0, "agreed message '%s'", sf_error_message());
    EXPECT(sf_comm_agree(SF_OK) == SF_OK, "agree on success");

    uint64_t fails = (uint64_t)failures;
    sf_comm_allreduce_sum_u64(&fails, 1);
    if (rank == 0) printf("test_chunking: %d ranks, %s\n", size, fails ? "FAILED" : "ok");
    sf_comm_finalize();
    return fails ? 1 : 0;
}
