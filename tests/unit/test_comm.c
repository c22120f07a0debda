/* Unit tests of the communication layer's serial build (comm/comm_serial.c)
 * and of the chunking arithmetic shared with the MPI build.
 *
 * Chunk counts and sizes are compared with a closed form written here in a
 * different way (quotient and remainder instead of (n - 1) / limit + 1 and a
 * start offset); coverage of [0, n) is checked by walking the chunks where
 * that is cheap and by exact division where n is huge. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "shardflow/comm.h"

/* ---- chunking arithmetic ---------------------------------------------------- */

/* ceil(n / limit) from quotient and remainder. */
static size_t want_count(size_t n, size_t limit)
{
    return n / limit + (n % limit != 0);
}

/* Every chunk is full but the last, which holds the remainder (or a full
 * chunk when limit divides n); past the end there is nothing. */
static size_t want_size(size_t n, size_t limit, size_t i)
{
    size_t count = want_count(n, limit);
    if (i >= count) return 0;
    if (i + 1 < count) return limit;
    return n % limit ? n % limit : limit;
}

static const size_t limits[] = {1, 7, (size_t)INT_MAX};

/* n values around the interesting points of a limit, and sizes beyond
 * INT_MAX. Filled for each limit. */
static size_t interesting_sizes(size_t limit, size_t *out)
{
    size_t k = 0;
    const size_t fixed[] = {0,
                            1,
                            2,
                            3,
                            6,
                            7,
                            8,
                            13,
                            14,
                            15,
                            1000,
                            (size_t)INT_MAX - 1,
                            (size_t)INT_MAX,
                            (size_t)INT_MAX + 1,
                            (size_t)2 * INT_MAX,
                            (size_t)2 * INT_MAX + 1,
                            (size_t)1 << 32,
                            ((size_t)1 << 32) + 1,
                            (size_t)5 * INT_MAX + 3,
                            (size_t)1 << 40,
                            SIZE_MAX / 2,
                            SIZE_MAX - 1,
                            SIZE_MAX};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) out[k++] = fixed[i];
    out[k++] = limit - 1;
    out[k++] = limit;
    out[k++] = limit + 1;
    out[k++] = 2 * limit - 1;
    out[k++] = 2 * limit;
    out[k++] = 2 * limit + 1;
    out[k++] = 3 * limit;
    return k;
}

static void test_chunk_closed_form(void **st)
{
    (void)st;
    size_t sizes[64];
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        size_t limit = limits[li];
        size_t ns = interesting_sizes(limit, sizes);
        for (size_t k = 0; k < ns; k++) {
            size_t n = sizes[k];
            size_t count = sf_comm_chunk_count(n, limit);
            if (count != want_count(n, limit))
                fail_msg("chunk_count(%zu, %zu) = %zu, want %zu", n, limit, count,
                         want_count(n, limit));
            /* The first, second, second-to-last and last chunks: every
             * other one is like the first (past the end: see below). */
            const size_t probe[] = {0, 1, count > 1 ? count - 2 : 0, count ? count - 1 : 0};
            for (size_t p = 0; p < sizeof probe / sizeof probe[0]; p++) {
                size_t i = probe[p];
                if (i >= count) continue;
                size_t got = sf_comm_chunk_size(n, limit, i);
                if (got != want_size(n, limit, i))
                    fail_msg("chunk_size(%zu, %zu, %zu) = %zu, want %zu", n, limit, i, got,
                             want_size(n, limit, i));
            }
            /* No chunk exceeds the limit or any MPI count at INT_MAX. */
            assert_true(sf_comm_chunk_size(n, limit, 0) <= limit);
            if (limit <= (size_t)INT_MAX) assert_true(sf_comm_chunk_size(n, limit, 0) <= (size_t)INT_MAX);
        }
    }
}

/* Sum of chunk sizes and the chunk boundaries, exactly, in 128-bit
 * arithmetic where the chunks are too many to walk. */
static void test_chunks_cover_exactly(void **st)
{
    (void)st;
    size_t sizes[64];
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        size_t limit = limits[li];
        size_t ns = interesting_sizes(limit, sizes);
        for (size_t k = 0; k < ns; k++) {
            size_t n = sizes[k];
            size_t count = sf_comm_chunk_count(n, limit);
            if (count <= 100000) {
                /* Walk: consecutive chunks, none empty, ending exactly at n. */
                size_t at = 0;
                for (size_t i = 0; i < count; i++) {
                    size_t s = sf_comm_chunk_size(n, limit, i);
                    if (s == 0 || s > limit || s > n - at)
                        fail_msg("chunk %zu of n=%zu limit=%zu has size %zu at offset %zu", i, n,
                                 limit, s, at);
                    at += s;
                }
                if (at != n) fail_msg("chunks of n=%zu limit=%zu cover %zu bytes", n, limit, at);
            } else {
                /* count - 1 full chunks plus the last one: n - last is
                 * exactly (count - 1) * limit (checked by division, which
                 * cannot overflow). */
                size_t last = sf_comm_chunk_size(n, limit, count - 1);
                assert_true(last >= 1 && last <= limit && last <= n);
                if ((n - last) % limit != 0 || (n - last) / limit != count - 1)
                    fail_msg("chunks of n=%zu limit=%zu do not sum to n", n, limit);
                assert_int_equal(sf_comm_chunk_size(n, limit, count - 2), limit);
            }
        }
    }
    /* Small n and limits exhaustively. */
    for (size_t limit = 1; limit <= 40; limit++)
        for (size_t n = 0; n <= 200; n++) {
            size_t count = sf_comm_chunk_count(n, limit);
            assert_int_equal(count, want_count(n, limit));
            size_t at = 0;
            for (size_t i = 0; i < count; i++) {
                assert_int_equal(sf_comm_chunk_size(n, limit, i), want_size(n, limit, i));
                at += sf_comm_chunk_size(n, limit, i);
            }
            assert_int_equal(at, n);
            assert_int_equal(sf_comm_chunk_size(n, limit, count), 0);
        }
}

/* A limit of 0 behaves as a limit of 1 (the layer never divides by zero). */
static void test_chunk_limit_zero(void **st)
{
    (void)st;
    const size_t ns[] = {0, 1, 5, (size_t)INT_MAX + 1};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        assert_int_equal(sf_comm_chunk_count(ns[k], 0), ns[k]);
        assert_int_equal(sf_comm_chunk_size(ns[k], 0, 0), ns[k] ? 1 : 0);
        assert_int_equal(sf_comm_chunk_size(ns[k], 0, ns[k]), 0);
    }
}

/* Chunks past the end do not exist and have size 0, also where i * limit
 * no longer fits in size_t: with limit 7 and n = SIZE_MAX the first index
 * past the end is SIZE_MAX / 7 + 1, and i * 7 wraps around to 5. */
static void test_chunk_size_past_end(void **st)
{
    (void)st;
    size_t sizes[64];
    for (size_t li = 0; li < sizeof limits / sizeof limits[0]; li++) {
        size_t limit = limits[li];
        size_t ns = interesting_sizes(limit, sizes);
        for (size_t k = 0; k < ns; k++) {
            size_t n = sizes[k];
            size_t count = want_count(n, limit);
            for (size_t i = count; i >= count && i <= count + 2; i++) {
                size_t got = sf_comm_chunk_size(n, limit, i);
                if (got != 0)
                    fail_msg("chunk_size(%zu, %zu, %zu) = %zu past the end (count %zu), want 0", n,
                             limit, i, got, count);
            }
        }
    }
    assert_int_equal(sf_comm_chunk_size(100, 7, SIZE_MAX / 7 + 1), 0);
    assert_int_equal(sf_comm_chunk_size((size_t)INT_MAX * 3, (size_t)INT_MAX, SIZE_MAX / INT_MAX + 1), 0);
    assert_int_equal(sf_comm_chunk_size(10, 1, SIZE_MAX), 0);
}

/* ---- the serial layer ---------------------------------------------------------- */

static void test_serial_identity(void **st)
{
    (void)st;
    int argc = 1;
    char arg0[] = "test_comm";
    char *args[] = {arg0, NULL};
    char **argv = args;
    assert_int_equal(sf_comm_init(&argc, &argv), SF_OK);
    assert_int_equal(argc, 1);
    assert_int_equal(sf_comm_rank(), 0);
    assert_int_equal(sf_comm_size(), 1);
    assert_int_equal(sf_comm_local_size(), 1);
    assert_int_equal(sf_comm_local_rank(), 0);
    assert_int_equal(sf_comm_barrier(), SF_OK);
    double t0 = sf_comm_wtime(), t1 = sf_comm_wtime();
    assert_true(t0 > 0 && t1 >= t0);
}

/* One rank agrees with itself: the status and the message are its own. */
static void test_serial_agree(void **st)
{
    (void)st;
    const sf_status codes[] = {SF_OK,          SF_ERR_ARG,    SF_ERR_IO,     SF_ERR_PARSE,
                               SF_ERR_CONFIG,  SF_ERR_MPI,    SF_ERR_H5,     SF_ERR_NOMEM,
                               SF_ERR_TIMEOUT, SF_ERR_INTERNAL};
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        char msg[64];
        snprintf(msg, sizeof msg, "data.csv:%zu:1: planted failure", i + 10);
        sf_error_set_message(msg);
        assert_int_equal(sf_comm_agree(codes[i]), codes[i]);
        assert_string_equal(sf_error_message(), msg);
    }
    sf_error_clear();
}

typedef struct gather_log {
    int calls;
    int rank;
    const uint8_t *bytes;
    size_t n;
    uint8_t copy[64];
    sf_status ret;
} gather_log;

static sf_status on_rank(int rank, const uint8_t *bytes, size_t n, void *ctx)
{
    gather_log *g = ctx;
    g->calls++;
    g->rank = rank;
    g->bytes = bytes;
    g->n = n;
    if (n <= sizeof g->copy && n) memcpy(g->copy, bytes, n);
    if (g->ret != SF_OK) return sf_error_set(g->ret, __FILE__, __LINE__, "gather callback failed");
    return SF_OK;
}

static void test_serial_gather(void **st)
{
    (void)st;
    sf_buf mine;
    sf_buf_init(&mine);
    const char text[] = "rank zero's bytes";
    assert_int_equal(sf_buf_append(&mine, text, sizeof text - 1), SF_OK);

    gather_log g = {0};
    assert_int_equal(sf_comm_gather(&mine, on_rank, &g), SF_OK);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.rank, 0);
    assert_int_equal(g.n, sizeof text - 1);
    assert_memory_equal(g.copy, text, sizeof text - 1);
    /* The bytes are unchanged after the call. */
    assert_int_equal(mine.len, sizeof text - 1);
    assert_memory_equal(mine.data, text, sizeof text - 1);

    /* The callback's failure is the gather's failure. */
    gather_log bad = {.ret = SF_ERR_IO};
    assert_int_equal(sf_comm_gather(&mine, on_rank, &bad), SF_ERR_IO);
    assert_int_equal(bad.calls, 1);
    assert_string_equal(sf_error_message(), "gather callback failed");

    /* An empty buffer gathers as zero bytes, still one call. */
    sf_buf empty;
    sf_buf_init(&empty);
    gather_log e = {0};
    assert_int_equal(sf_comm_gather(&empty, on_rank, &e), SF_OK);
    assert_int_equal(e.calls, 1);
    assert_int_equal(e.rank, 0);
    assert_int_equal(e.n, 0);
    sf_buf_fini(&mine);
    sf_error_clear();
}

static int merges;

static sf_status count_merge(sf_buf *into, const uint8_t *from, size_t n, void *ctx)
{
    (void)into;
    (void)from;
    (void)n;
    (void)ctx;
    merges++;
    return SF_OK;
}

/* With one rank there is nothing to merge: the buffer is the result. */
static void test_serial_reduce_bcast_allreduce(void **st)
{
    (void)st;
    sf_buf b;
    sf_buf_init(&b);
    uint8_t bytes[37];
    for (size_t i = 0; i < sizeof bytes; i++) bytes[i] = (uint8_t)(i * 29 + 3);
    assert_int_equal(sf_buf_append(&b, bytes, sizeof bytes), SF_OK);
    const uint8_t *data = b.data;

    merges = 0;
    assert_int_equal(sf_comm_reduce(&b, count_merge, NULL), SF_OK);
    assert_int_equal(merges, 0);
    assert_ptr_equal(b.data, data);
    assert_int_equal(b.len, sizeof bytes);
    assert_memory_equal(b.data, bytes, sizeof bytes);

    assert_int_equal(sf_comm_bcast(&b, 0), SF_OK);
    assert_int_equal(b.len, sizeof bytes);
    assert_memory_equal(b.data, bytes, sizeof bytes);
    sf_buf_fini(&b);

    uint64_t v[3] = {0, 7, UINT64_MAX};
    assert_int_equal(sf_comm_allreduce_sum_u64(v, 3), SF_OK);
    assert_true(v[0] == 0 && v[1] == 7 && v[2] == UINT64_MAX);
    double d[2] = {-1.5, 1e300};
    assert_int_equal(sf_comm_allreduce_max_f64(d, 2), SF_OK);
    assert_true(d[0] == -1.5 && d[1] == 1e300);
}

static void test_serial_chunk_limit(void **st)
{
    (void)st;
    /* The default is INT_MAX (comm.h). */
    assert_int_equal(sf_comm_chunk_limit(), (size_t)INT_MAX);
    sf_comm_set_chunk_limit(0);
    assert_int_equal(sf_comm_chunk_limit(), 1);
    sf_comm_set_chunk_limit(7);
    assert_int_equal(sf_comm_chunk_limit(), 7);
    sf_comm_set_chunk_limit((size_t)1 << 40);
    assert_int_equal(sf_comm_chunk_limit(), (size_t)1 << 40);
    sf_comm_set_chunk_limit((size_t)INT_MAX);
    assert_int_equal(sf_comm_chunk_limit(), (size_t)INT_MAX);
}

/* There is no rank 1 to talk to: point-to-point calls fail with a message
 * instead of pretending. */
static void test_serial_no_peer(void **st)
{
    (void)st;
    uint8_t x = 1;
    sf_error_clear();
    assert_int_not_equal(sf_comm_send(1, SF_TAG_TEST, &x, 1), SF_OK);
    assert_true(sf_error_message()[0] != '\0');
    bool flag = true;
    int from = 5;
    assert_int_equal(sf_comm_iprobe(SF_TAG_TEST, &flag, &from), SF_OK);
    assert_false(flag);
    sf_error_clear();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chunk_closed_form),
        cmocka_unit_test(test_chunks_cover_exactly),
        cmocka_unit_test(test_chunk_limit_zero),
        cmocka_unit_test(test_chunk_size_past_end),
        cmocka_unit_test(test_serial_identity),
        cmocka_unit_test(test_serial_agree),
        cmocka_unit_test(test_serial_gather),
        cmocka_unit_test(test_serial_reduce_bcast_allreduce),
        cmocka_unit_test(test_serial_chunk_limit),
        cmocka_unit_test(test_serial_no_peer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
