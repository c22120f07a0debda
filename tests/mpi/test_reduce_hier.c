/* Real MPI: the hierarchical reduction (node, then cluster) gives the same
 * bytes as the flat binomial tree and as a reference computed on one rank,
 * sends the expected messages (P - 1 in all, nodes - 1 between nodes), and
 * reports a failure injected on any one rank like the flat tree does.
 *
 * Every rank contributes a sorted multiset of (rank, payload) entries with
 * a checksum. Merging two multisets is order-independent, but the result
 * depends on every contribution, so a lost, doubled or misrouted message
 * changes the bytes. Nodes are blocks of SF_RANKS_PER_NODE consecutive
 * ranks when that is set, else of sf_comm_local_size() ranks (all ranks of
 * one machine, as mpirun places them by default).
 *
 * usage: test_reduce_hier           (under mpirun, any rank count)
 *        test_reduce_hier --bad-env (SF_RANKS_PER_NODE set to a bad value) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/comm.h"

static int failures = 0;
#define EXPECT(cond, ...)                                                                     \
    do {                                                                                      \
        if (!(cond)) {                                                                        \
            fprintf(stderr, "rank %d: FAIL %s:%d: ", sf_comm_rank(), __FILE__, __LINE__);     \
            fprintf(stderr, __VA_ARGS__);                                                     \
            fputc('\n', stderr);                                                              \
            failures++;                                                                       \
        }                                                                                     \
    } while (0)

#define FORMAT 1
#define HEADER_BYTES 17 /* version u8, entries u64, checksum u64 */
static const char poison[] = "poison";

/* ---- the multiset encoding ------------------------------------------- */

typedef struct entry {
    uint32_t rank;
    uint32_t len;
    const uint8_t *bytes;
} entry;

static int entry_cmp(const entry *a, const entry *b)
{
    if (a->rank != b->rank) return a->rank < b->rank ? -1 : 1;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->len ? memcmp(a->bytes, b->bytes, a->len) : 0;
}

static int entry_qsort_cmp(const void *a, const void *b) { return entry_cmp(a, b); }

static uint64_t entry_sum(const entry *e)
{
    uint64_t s = e->rank;
    for (uint32_t i = 0; i < e->len; i++) s += e->bytes[i];
    return s;
}

/* Strict decode: version, count, sorted entries, checksum, no trailing
 * bytes; a poisoned entry fails with its rank in the message. *out is
 * malloc'ed (borrowing from p). */
static sf_status decode(const uint8_t *p, size_t n, entry **out, uint64_t *count)
{
    sf_rd r;
    sf_rd_init(&r, p, n);
    uint8_t version;
    uint64_t ne, sum, got = 0;
    *out = NULL;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == FORMAT, SF_ERR_PARSE, "multiset: unknown format %u", version);
    SF_CALL(sf_rd_u64(&r, &ne));
    SF_CALL(sf_rd_u64(&r, &sum));
    SF_CHECK(ne <= (n - r.off) / 8, SF_ERR_PARSE, "multiset: %llu entries in %zu bytes", (unsigned long long)ne, n);
    entry *e = malloc(sizeof *e * (ne ? ne : 1));
    SF_CHECK(e != NULL, SF_ERR_NOMEM, "multiset: out of memory");
    sf_status rc = SF_OK;
    for (uint64_t i = 0; i < ne; i++) {
        SF_CALL_GOTO(sf_rd_u32(&r, &e[i].rank), fail);
        SF_CALL_GOTO(sf_rd_u32(&r, &e[i].len), fail);
        SF_CALL_GOTO(sf_rd_bytes(&r, e[i].len, &e[i].bytes), fail);
        SF_CHECK_GOTO(i == 0 || entry_cmp(&e[i - 1], &e[i]) <= 0, SF_ERR_PARSE, fail, "multiset: entries out of order");
        SF_CHECK_GOTO(!(e[i].len == sizeof poison - 1 && memcmp(e[i].bytes, poison, e[i].len) == 0), SF_ERR_PARSE,
                      fail, "multiset: poisoned entry from rank %u", e[i].rank);
        got += entry_sum(&e[i]);
    }
    SF_CHECK_GOTO(r.off == n, SF_ERR_PARSE, fail, "multiset: %zu trailing bytes", n - r.off);
    SF_CHECK_GOTO(got == sum, SF_ERR_PARSE, fail, "multiset: checksum mismatch");
    *out = e;
    *count = ne;
    return SF_OK;
fail:
    free(e);
    return rc;
}

static sf_status encode(const entry *e, uint64_t n, sf_buf *out)
{
    uint64_t sum = 0;
    for (uint64_t i = 0; i < n; i++) sum += entry_sum(&e[i]);
    sf_buf_clear(out);
    SF_CALL(sf_buf_put_u8(out, FORMAT));
    SF_CALL(sf_buf_put_u64(out, n));
    SF_CALL(sf_buf_put_u64(out, sum));
    for (uint64_t i = 0; i < n; i++) {
        SF_CALL(sf_buf_put_u32(out, e[i].rank));
        SF_CALL(sf_buf_put_u32(out, e[i].len));
        SF_CALL(sf_buf_append(out, e[i].bytes, e[i].len));
    }
    return SF_OK;
}

/* The reduction's merge: a merge of two sorted lists, re-encoded. */
static sf_status merge(sf_buf *into, const uint8_t *from, size_t n, void *ctx)
{
    (void)ctx;
    entry *a = NULL, *b = NULL, *m = NULL;
    uint64_t na = 0, nb = 0;
    sf_buf out;
    sf_buf_init(&out);
    sf_status rc = SF_OK;
    SF_CALL_GOTO(decode(into->data, into->len, &a, &na), done);
    SF_CALL_GOTO(decode(from, n, &b, &nb), done);
    m = malloc(sizeof *m * (na + nb + 1));
    SF_CHECK_GOTO(m != NULL, SF_ERR_NOMEM, done, "multiset: out of memory");
    uint64_t i = 0, j = 0, k = 0;
    while (i < na || j < nb) m[k++] = j >= nb || (i < na && entry_cmp(&a[i], &b[j]) <= 0) ? a[i++] : b[j++];
    SF_CALL_GOTO(encode(m, k, &out), done);
    sf_buf t = *into;
    *into = out;
    out = t;
done:
    free(a);
    free(b);
    free(m);
    sf_buf_fini(&out);
    return rc;
}

/* ---- contributions ---------------------------------------------------- */

#define MAX_ENTRIES 6
#define MAX_PAYLOAD 48

typedef struct contribution {
    int n;
    entry e[MAX_ENTRIES];
    uint8_t bytes[MAX_ENTRIES][MAX_PAYLOAD];
} contribution;

/* The entries of rank r in round k: 1 to 4 entries of 0 to 39 bytes, odd
 * ranks with one entry twice (a multiset, not a set), and the poison entry
 * on poison_rank. Any rank can rebuild any other rank's contribution. */
static void contribution_make(int r, int k, int poison_rank, contribution *c)
{
    uint64_t x = (uint64_t)(r + 1) * 0x9E3779B97F4A7C15ull + (uint64_t)k * 0xBF58476D1CE4E5B9ull;
    c->n = 1 + (r * 7 + k) % 4;
    for (int i = 0; i < c->n; i++) {
        uint32_t len = (uint32_t)((r * 13 + i * 5 + k * 3) % 40);
        for (uint32_t b = 0; b < len; b++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            c->bytes[i][b] = (uint8_t)x;
        }
        c->e[i] = (entry){(uint32_t)r, len, c->bytes[i]};
    }
    if (r % 2 == 1) {
        c->e[c->n] = c->e[0];
        c->n++;
    }
    if (r == poison_rank) {
        memcpy(c->bytes[c->n], poison, sizeof poison - 1);
        c->e[c->n] = (entry){(uint32_t)r, (uint32_t)(sizeof poison - 1), c->bytes[c->n]};
        c->n++;
    }
    qsort(c->e, (size_t)c->n, sizeof c->e[0], entry_qsort_cmp);
}

/* Encoded size of the entries of ranks [lo, hi), header included: the
 * bytes a rank sends for the subtree of those ranks. */
static uint64_t subtree_bytes(int lo, int hi, int k)
{
    uint64_t n = HEADER_BYTES;
    for (int r = lo; r < hi; r++) {
        contribution c;
        contribution_make(r, k, -1, &c);
        for (int i = 0; i < c.n; i++) n += 8 + c.e[i].len;
    }
    return n;
}

/* The reference result: every contribution gathered into one list, sorted
 * with qsort (not merged), encoded. */
static sf_status reference(int size, int k, sf_buf *out)
{
    contribution *c = malloc(sizeof *c * (size_t)size);
    entry *all = malloc(sizeof *all * (size_t)size * MAX_ENTRIES);
    sf_status rc = SF_OK;
    SF_CHECK_GOTO(c != NULL && all != NULL, SF_ERR_NOMEM, done, "out of memory");
    uint64_t n = 0;
    for (int r = 0; r < size; r++) {
        contribution_make(r, k, -1, &c[r]);
        for (int i = 0; i < c[r].n; i++) all[n++] = c[r].e[i];
    }
    qsort(all, (size_t)n, sizeof *all, entry_qsort_cmp);
    rc = encode(all, n, out);
done:
    free(c);
    free(all);
    return rc;
}

/* ---- the node map, computed from the block layout --------------------- */

static int per_node; /* ranks per node */

static int node_of(int r) { return r / per_node; }
static int lowbit(int r) { return r & -r; }

/* Inter-node edges of the flat binomial tree: rank r sends to r - lowbit(r). */
static uint64_t flat_internode(int size)
{
    uint64_t n = 0;
    for (int r = 1; r < size; r++) n += node_of(r) != node_of(r - lowbit(r));
    return n;
}

/* The ranks whose bytes rank r forwards, [*lo, *hi), and the rank it sends
 * to (-1 for rank 0), in the flat tree or the two-level one. The flat tree:
 * rank r sends to r - lowbit(r) and forwards [r, r + lowbit(r)). Two
 * levels: a non-leader does the same inside its node; a leader forwards the
 * whole nodes of its subtree among the leaders. */
static void subtree(bool hier, int r, int size, int *lo, int *hi, int *parent)
{
    if (!hier) {
        *lo = r;
        *hi = r == 0 ? size : (r + lowbit(r) < size ? r + lowbit(r) : size);
        *parent = r == 0 ? -1 : r - lowbit(r);
        return;
    }
    int node = node_of(r), base = node * per_node;
    int nnodes = (size + per_node - 1) / per_node;
    int in_node = base + per_node < size ? per_node : size - base;
    int l = r - base;
    if (l > 0) {
        *lo = r;
        *hi = base + (l + lowbit(l) < in_node ? l + lowbit(l) : in_node);
        *parent = base + l - lowbit(l);
        return;
    }
    int hi_node = node == 0 ? nnodes : (node + lowbit(node) < nnodes ? node + lowbit(node) : nnodes);
    *lo = base;
    *hi = hi_node * per_node < size ? hi_node * per_node : size;
    *parent = node == 0 ? -1 : (node - lowbit(node)) * per_node;
}

/* The bytes rank r sends in round k when rank bad (or none: -1) holds the
 * poison entry. The first merge that meets the poison fails: on bad itself
 * if it has children, else on its parent; that rank and every rank above it
 * send only the failure mark (0 bytes). */
static uint64_t sent_bytes(bool hier, int r, int size, int k, int bad)
{
    int lo, hi, parent;
    subtree(hier, r, size, &lo, &hi, &parent);
    if (parent < 0) return 0;
    if (bad >= 0) {
        int blo, bhi, bparent;
        subtree(hier, bad, size, &blo, &bhi, &bparent);
        int failed = bhi - blo > 1 ? bad : bparent;
        if (failed >= lo && failed < hi) return 0;
    }
    uint64_t n = subtree_bytes(lo, hi, k);
    if (bad >= lo && bad < hi) n += 8 + sizeof poison - 1;
    return n;
}

/* ---- the checks ------------------------------------------------------- */

static void check_counts(const char *what, const sf_comm_reduce_stats *st, uint64_t want_bytes,
                         uint64_t want_internode_total)
{
    int rank = sf_comm_rank(), size = sf_comm_size();
    EXPECT(st->messages == (rank != 0), "%s: rank %d sent %llu messages", what, rank,
           (unsigned long long)st->messages);
    EXPECT(st->bytes == want_bytes, "%s: rank %d sent %llu bytes, expected %llu", what, rank,
           (unsigned long long)st->bytes, (unsigned long long)want_bytes);
    uint64_t v[2] = {st->messages, st->internode_messages};
    EXPECT(sf_comm_allreduce_sum_u64(v, 2) == SF_OK, "allreduce");
    EXPECT(v[0] == (uint64_t)size - 1, "%s: %llu messages in all, expected %d", what,
           (unsigned long long)v[0], size - 1);
    EXPECT(v[1] == want_internode_total, "%s: %llu inter-node messages, expected %llu", what,
           (unsigned long long)v[1], (unsigned long long)want_internode_total);
}

/* One clean round: both trees equal the reference, with the expected counts. */
static void round_clean(int k, size_t chunk)
{
    int rank = sf_comm_rank(), size = sf_comm_size();
    int nnodes = (size + per_node - 1) / per_node;
    sf_comm_set_chunk_limit(chunk);
    contribution c;
    contribution_make(rank, k, -1, &c);
    sf_buf flat, hier, ref;
    sf_buf_init(&flat);
    sf_buf_init(&hier);
    sf_buf_init(&ref);
    EXPECT(encode(c.e, (uint64_t)c.n, &flat) == SF_OK && encode(c.e, (uint64_t)c.n, &hier) == SF_OK, "encode");

    sf_status rc = sf_comm_reduce(&flat, merge, NULL);
    EXPECT(sf_comm_agree(rc) == SF_OK, "flat reduce: %s", sf_error_message());
    sf_comm_reduce_stats fst;
    sf_comm_reduce_last_stats(&fst);
    sf_comm_reduce_stats hst = {99, 99, 99};
    rc = sf_comm_reduce_hier(&hier, merge, NULL, &hst);
    EXPECT(sf_comm_agree(rc) == SF_OK, "hierarchical reduce: %s", sf_error_message());

    uint64_t want_flat = flat_internode(size);
    EXPECT(want_flat >= (uint64_t)nnodes - 1, "flat tree crosses nodes %llu times for %d nodes",
           (unsigned long long)want_flat, nnodes);
    check_counts("flat", &fst, sent_bytes(false, rank, size, k, -1), want_flat);
    check_counts("hierarchical", &hst, sent_bytes(true, rank, size, k, -1), (uint64_t)nnodes - 1);
    /* The flat counts are those of the last flat reduction, not overwritten
     * by the hierarchical one. */
    sf_comm_reduce_stats again;
    sf_comm_reduce_last_stats(&again);
    EXPECT(memcmp(&again, &fst, sizeof again) == 0, "last flat stats changed by the hierarchical reduce");

    if (rank == 0) {
        EXPECT(reference(size, k, &ref) == SF_OK, "reference");
        EXPECT(flat.len == ref.len && memcmp(flat.data, ref.data, ref.len) == 0,
               "round %d (chunk %zu): flat result (%zu bytes) differs from the reference (%zu bytes)", k,
               chunk, flat.len, ref.len);
        EXPECT(hier.len == ref.len && memcmp(hier.data, ref.data, ref.len) == 0,
               "round %d (chunk %zu): hierarchical result (%zu bytes) differs from the reference (%zu bytes)", k,
               chunk, hier.len, ref.len);
    }
    sf_buf_fini(&flat);
    sf_buf_fini(&hier);
    sf_buf_fini(&ref);
}

/* One round with a poisoned contribution on rank bad: both trees complete
 * and the agreed status names it. */
static void round_poisoned(int k, int bad, bool hierarchical)
{
    int rank = sf_comm_rank(), size = sf_comm_size();
    contribution c;
    contribution_make(rank, k, bad, &c);
    sf_buf b;
    sf_buf_init(&b);
    EXPECT(encode(c.e, (uint64_t)c.n, &b) == SF_OK, "encode");
    sf_error_clear();
    sf_comm_reduce_stats st;
    sf_status rc = hierarchical ? sf_comm_reduce_hier(&b, merge, NULL, &st) : sf_comm_reduce(&b, merge, NULL);
    if (!hierarchical) sf_comm_reduce_last_stats(&st);
    sf_status agreed = sf_comm_agree(rc);
    char want[64];
    snprintf(want, sizeof want, "poisoned entry from rank %d", bad);
    const char *what = hierarchical ? "hierarchical" : "flat";
    EXPECT(agreed == SF_ERR_PARSE, "%s, poison on rank %d: agreed status %s", what, bad, sf_status_name(agreed));
    EXPECT(strstr(sf_error_message(), want) != NULL, "%s, poison on rank %d: agreed message '%s'", what, bad,
           sf_error_message());
    /* A failed subtree still sends its mark: one message per rank but 0,
     * with no bytes from the failed merge up to the root. */
    uint64_t want_bytes = sent_bytes(hierarchical, rank, size, k, bad);
    EXPECT(st.bytes == want_bytes, "%s, poison on rank %d: rank %d sent %llu bytes, expected %llu", what, bad,
           rank, (unsigned long long)st.bytes, (unsigned long long)want_bytes);
    uint64_t m = st.messages;
    EXPECT(sf_comm_allreduce_sum_u64(&m, 1) == SF_OK && m == (uint64_t)size - 1,
           "%s, poison on rank %d: %llu messages", what, bad, (unsigned long long)m);
    sf_buf_fini(&b);
}

static int finish(const char *name)
{
    uint64_t fails = (uint64_t)failures;
    sf_comm_allreduce_sum_u64(&fails, 1);
    if (sf_comm_rank() == 0)
        printf("test_reduce_hier%s: %d ranks, %d per node, %s\n", name, sf_comm_size(), per_node,
               fails ? "FAILED" : "ok");
    sf_comm_finalize();
    return fails ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (sf_comm_init(&argc, &argv) != SF_OK) return 1;
    int size = sf_comm_size();
    const char *env = getenv("SF_RANKS_PER_NODE");

    if (argc > 1 && strcmp(argv[1], "--bad-env") == 0) {
        /* Every rank fails, with the variable named, in both reductions and
         * again on a second call (the communicators were never made). */
        per_node = 0;
        for (int pass = 0; pass < 2; pass++) {
            sf_buf b;
            sf_buf_init(&b);
            sf_buf_put_u8(&b, 1);
            sf_status rc = sf_comm_reduce_hier(&b, merge, NULL, NULL);
            EXPECT(rc == SF_ERR_ARG && strstr(sf_error_message(), "SF_RANKS_PER_NODE") != NULL,
                   "bad SF_RANKS_PER_NODE=%s: hierarchical gives %s '%s'", env ? env : "", sf_status_name(rc),
                   sf_error_message());
            rc = sf_comm_reduce(&b, merge, NULL);
            EXPECT(rc == SF_ERR_ARG && strstr(sf_error_message(), "SF_RANKS_PER_NODE") != NULL,
                   "bad SF_RANKS_PER_NODE=%s: flat gives %s '%s'", env ? env : "", sf_status_name(rc),
                   sf_error_message());
            sf_buf_fini(&b);
        }
        return finish(" --bad-env");
    }

    per_node = env != NULL && env[0] != '\0' ? atoi(env) : sf_comm_local_size();
    EXPECT(per_node >= 1, "ranks per node %d", per_node);
    if (per_node < 1) per_node = 1;

    /* A stats pointer may be NULL. */
    {
        sf_buf b;
        sf_buf_init(&b);
        contribution c;
        contribution_make(sf_comm_rank(), 9, -1, &c);
        EXPECT(encode(c.e, (uint64_t)c.n, &b) == SF_OK, "encode");
        EXPECT(sf_comm_agree(sf_comm_reduce_hier(&b, merge, NULL, NULL)) == SF_OK, "reduce without stats: %s",
               sf_error_message());
        sf_buf_fini(&b);
    }

    size_t chunks[] = {(size_t)-1, 5, 1};
    for (int k = 0; k < 3; k++) round_clean(k, chunks[k]);

    if (size >= 2) {
        int bads[3] = {size - 1, 0, size / 2};
        for (int i = 0; i < 3; i++) {
            if (i == 2 && (bads[2] == bads[0] || bads[2] == bads[1])) continue;
            round_poisoned(10 + i, bads[i], false);
            round_poisoned(10 + i, bads[i], true);
        }
        /* The trees drained every message of the failed rounds: a clean
         * round after them is still exact. */
        round_clean(20, 7);
    }
    return finish("");
}
