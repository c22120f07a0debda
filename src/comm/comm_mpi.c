/* The MPI communication layer: the only file that includes mpi.h. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <limits.h>
#include <mpi.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/chunks.h"
#include "shardflow/comm.h"

static size_t chunk_limit = INT_MAX;
static int world_rank = 0, world_size = 1, local_rank = 0, local_size = 1;
static MPI_Comm node_comm = MPI_COMM_NULL;

/* The two levels of the hierarchical reduction, made on the first reduction
 * (collective) and freed by sf_comm_finalize. Nodes are the
 * MPI_COMM_TYPE_SHARED groups, or blocks of SF_RANKS_PER_NODE consecutive
 * ranks. The flat reduction uses the same node map to count its inter-node
 * messages. */
typedef struct reduce_topo {
    bool ready;
    MPI_Comm node;       /* the ranks of this node, ordered by world rank */
    MPI_Comm leaders;    /* the lowest rank of every node; MPI_COMM_NULL elsewhere */
    int *node_of;        /* world rank -> world rank of its node's leader */
    int *node_world;     /* rank in node -> world rank */
    int *leader_world;   /* rank in leaders -> world rank (leaders only) */
} reduce_topo;

static reduce_topo topo = {false, MPI_COMM_NULL, MPI_COMM_NULL, NULL, NULL, NULL};
static sf_comm_reduce_stats flat_stats;

/* Turns an MPI error code into a status with MPI's own text. */
static sf_status mpi_fail(int err, const char *what, const char *file, int line)
{
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(err, text, &len) != MPI_SUCCESS) {
        strcpy(text, "unknown MPI error");
    }
    return sf_error_set(SF_ERR_MPI, file, line, "rank %d: %s failed: %s", world_rank, what, text);
}

#define SF_CALL_MPI(call)                                                   \
    do {                                                                    \
        int sf__e_ = (call);                                                \
        if (sf__e_ != MPI_SUCCESS) return mpi_fail(sf__e_, #call, __FILE__, __LINE__); \
    } while (0)

sf_status sf_comm_init(int *argc, char ***argv)
{
    int provided = 0;
    int e = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (e != MPI_SUCCESS) return sf_error_set(SF_ERR_MPI, __FILE__, __LINE__, "MPI_Init_thread failed");
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    SF_CHECK(provided >= MPI_THREAD_FUNNELED, SF_ERR_MPI,
             "the MPI library provides thread level %d, shardflow needs MPI_THREAD_FUNNELED", provided);
    SF_CALL_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL,
                                    &node_comm));
    MPI_Comm_set_errhandler(node_comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(node_comm, &local_rank);
    MPI_Comm_size(node_comm, &local_size);
    return SF_OK;
}

static void topo_free(void)
{
    if (topo.node != MPI_COMM_NULL) MPI_Comm_free(&topo.node);
    if (topo.leaders != MPI_COMM_NULL) MPI_Comm_free(&topo.leaders);
    free(topo.node_of);
    free(topo.node_world);
    free(topo.leader_world);
    topo = (reduce_topo){false, MPI_COMM_NULL, MPI_COMM_NULL, NULL, NULL, NULL};
}

void sf_comm_finalize(void)
{
    topo_free();
    if (node_comm != MPI_COMM_NULL) MPI_Comm_free(&node_comm);
    MPI_Finalize();
}

void sf_comm_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }
int sf_comm_rank(void) { return world_rank; }
int sf_comm_size(void) { return world_size; }
int sf_comm_local_size(void) { return local_size; }
int sf_comm_local_rank(void) { return local_rank; }
double sf_comm_wtime(void) { return MPI_Wtime(); }
void sf_comm_set_chunk_limit(size_t bytes) { chunk_limit = bytes ? (bytes > INT_MAX ? INT_MAX : bytes) : 1; }
size_t sf_comm_chunk_limit(void) { return chunk_limit; }

sf_status sf_comm_agree(sf_status local)
{
    struct { int code; int rank; } in = {(int)local, world_rank}, out;
    /* MAXLOC keeps the largest code and, among equal codes, the lowest rank. */
    SF_CALL_MPI(MPI_Allreduce(&in, &out, 1, MPI_2INT, MPI_MAXLOC, MPI_COMM_WORLD));
    if (out.code == SF_OK) return SF_OK;
    char msg[2048];
    if (world_rank == out.rank) {
        strncpy(msg, sf_error_message(), sizeof msg - 1);
        msg[sizeof msg - 1] = '\0';
    }
    SF_CALL_MPI(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, out.rank, MPI_COMM_WORLD));
    msg[sizeof msg - 1] = '\0';
    sf_error_set_message(msg);
    return (sf_status)out.code;
}

sf_status sf_comm_barrier(void)
{
    SF_CALL_MPI(MPI_Barrier(MPI_COMM_WORLD));
    return SF_OK;
}

sf_status sf_comm_bcast(sf_buf *buf, int root)
{
    unsigned long long n = buf->len;
    SF_CALL_MPI(MPI_Bcast(&n, 1, MPI_UNSIGNED_LONG_LONG, root, MPI_COMM_WORLD));
    if (world_rank != root) {
        sf_buf_clear(buf);
        if (sf_buf_reserve(buf, (size_t)n) != SF_OK) {
            /* The other ranks are already in the broadcast: nothing to agree on. */
            fprintf(stderr, "shardflow: rank %d: out of memory receiving a %llu-byte broadcast\n",
                    world_rank, n);
            MPI_Abort(MPI_COMM_WORLD, 1);
        }
        buf->len = (size_t)n;
    }
    size_t count = sf__comm_chunk_count((size_t)n, chunk_limit);
    for (size_t i = 0; i < count; i++) {
        size_t sz = sf__comm_chunk_size((size_t)n, chunk_limit, i);
        SF_CALL_MPI(MPI_Bcast(buf->data + i * chunk_limit, (int)sz, MPI_BYTE, root, MPI_COMM_WORLD));
    }
    return SF_OK;
}

sf_status sf_comm_allreduce_sum_u64(uint64_t *v, int n)
{
    SF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD));
    return SF_OK;
}

sf_status sf_comm_exscan_sum_u64(const uint64_t *in, uint64_t *out, int n)
{
    SF_CALL_MPI(MPI_Exscan(in, out, n, MPI_UINT64_T, MPI_SUM, MPI_COMM_WORLD));
    /* MPI leaves rank 0's output undefined. */
    if (world_rank == 0) memset(out, 0, sizeof *out * (size_t)n);
    return SF_OK;
}

sf_status sf_comm_allreduce_max_f64(double *v, int n)
{
    SF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD));
    return SF_OK;
}

sf_status sf_comm_alltoallv(const uint8_t *send, const uint64_t *sendcounts, sf_buf *recv, uint64_t *recvcounts)
{
    const int P = world_size;
    sf_status rc = SF_OK;
    int *sc = NULL, *sd = NULL, *rcn = NULL, *rd = NULL;
    uint64_t *soff = NULL, *roff = NULL;
    uint8_t *stage_s = NULL, *stage_r = NULL;
    sf_buf_clear(recv);
    SF_CALL_MPI(MPI_Alltoall(sendcounts, 1, MPI_UINT64_T, recvcounts, 1, MPI_UINT64_T, MPI_COMM_WORLD));
    size_t limit = chunk_limit < (size_t)INT_MAX ? chunk_limit : (size_t)INT_MAX;
    uint64_t q = limit / (size_t)P;
    if (q == 0) q = 1;
    /* Steps: the largest pair, anywhere, decides (every rank takes part in every step). */
    uint64_t steps = 0, total_r = 0;
    for (int i = 0; i < P; i++) {
        uint64_t a = (sendcounts[i] + q - 1) / q, b = (recvcounts[i] + q - 1) / q;
        if (a > steps) steps = a;
        if (b > steps) steps = b;
        total_r += recvcounts[i];
    }
    SF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, &steps, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD));
    sc = malloc(sizeof(int) * (size_t)P);
    sd = malloc(sizeof(int) * (size_t)P);
    rcn = malloc(sizeof(int) * (size_t)P);
    rd = malloc(sizeof(int) * (size_t)P);
    soff = malloc(sizeof(uint64_t) * (size_t)P);
    roff = malloc(sizeof(uint64_t) * (size_t)P);
    stage_s = steps > 1 ? malloc((size_t)(q * (uint64_t)P)) : NULL;
    stage_r = steps > 1 ? malloc((size_t)(q * (uint64_t)P)) : NULL;
    int ok = sc && sd && rcn && rd && soff && roff && (steps <= 1 || (stage_s && stage_r)) &&
             sf_buf_reserve(recv, (size_t)total_r) == SF_OK;
    if (!ok) rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "rank %d: out of memory (all-to-all of %llu bytes)",
                               world_rank, (unsigned long long)total_r);
    /* Every rank learns whether all can take part before any data moves. */
    int all_ok = ok;
    int e = MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
    if (e != MPI_SUCCESS && rc == SF_OK) rc = mpi_fail(e, "MPI_Allreduce", __FILE__, __LINE__);
    if (rc == SF_OK && !all_ok)
        rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "another rank ran out of memory in an all-to-all");
    if (rc != SF_OK) steps = 0;
    uint64_t so = 0, ro = 0;
    for (int i = 0; rc == SF_OK && i < P; i++) {
        soff[i] = so;
        roff[i] = ro;
        so += sendcounts[i];
        ro += recvcounts[i];
    }
    for (uint64_t t = 0; t < steps; t++) {
        int scount = 0, rcount = 0;
        const uint64_t from = t * q;
        for (int i = 0; i < P; i++) {
            uint64_t ns = sendcounts[i] > from ? sendcounts[i] - from : 0;
            uint64_t nr = recvcounts[i] > from ? recvcounts[i] - from : 0;
            if (ns > q) ns = q;
            if (nr > q) nr = q;
            sc[i] = (int)ns;
            rcn[i] = (int)nr;
            sd[i] = steps > 1 ? scount : (int)soff[i];
            rd[i] = steps > 1 ? rcount : (int)roff[i];
            if (steps > 1 && ns > 0) memcpy(stage_s + scount, send + soff[i] + from, (size_t)ns);
            scount += (int)ns;
            rcount += (int)nr;
        }
        const void *sb = steps > 1 ? (const void *)stage_s : (const void *)send;
        void *rb = steps > 1 ? (void *)stage_r : (void *)recv->data;
        e = MPI_Alltoallv(sb, sc, sd, MPI_BYTE, rb, rcn, rd, MPI_BYTE, MPI_COMM_WORLD);
        if (e != MPI_SUCCESS) {
            rc = mpi_fail(e, "MPI_Alltoallv", __FILE__, __LINE__);
            break;
        }
        if (steps > 1) {
            for (int i = 0; i < P; i++)
                if (rcn[i] > 0) memcpy(recv->data + roff[i] + from, stage_r + rd[i], (size_t)rcn[i]);
        }
    }
    if (rc == SF_OK) recv->len = (size_t)total_r;
    free(sc);
    free(sd);
    free(rcn);
    free(rd);
    free(soff);
    free(roff);
    free(stage_s);
    free(stage_r);
    return rc;
}

/* Wire protocol: a header message (tag*2) holding the u64 payload size, then
 * the payload in chunks (tag*2+1). MPI's non-overtaking rule keeps the
 * chunks of one message in order and after its header. */
#define HDR_TAG(t) ((t) * 2)
#define DATA_TAG(t) ((t) * 2 + 1)

struct sf_comm_req {
    uint64_t header;
    int n;
    MPI_Request reqs[];
};

/* Blocking send of a message (header, then chunks) over comm. */
static sf_status comm_send(MPI_Comm comm, int dest, int tag, const void *data, size_t n)
{
    uint64_t header = n;
    SF_CALL_MPI(MPI_Send(&header, 1, MPI_UINT64_T, dest, HDR_TAG(tag), comm));
    size_t count = sf__comm_chunk_count(n, chunk_limit);
    for (size_t i = 0; i < count; i++) {
        size_t sz = sf__comm_chunk_size(n, chunk_limit, i);
        SF_CALL_MPI(MPI_Send((const char *)data + i * chunk_limit, (int)sz, MPI_BYTE, dest,
                             DATA_TAG(tag), comm));
    }
    return SF_OK;
}

sf_status sf_comm_send(int dest, int tag, const void *data, size_t n)
{
    return comm_send(MPI_COMM_WORLD, dest, tag, data, n);
}

sf_status sf_comm_isend(int dest, int tag, const void *data, size_t n, sf_comm_req **out)
{
    *out = NULL;
    size_t count = sf__comm_chunk_count(n, chunk_limit);
    SF_CHECK(count < (size_t)INT_MAX - 1, SF_ERR_ARG, "message of %zu bytes needs too many chunks", n);
    sf_comm_req *r = malloc(sizeof *r + sizeof(MPI_Request) * (count + 1));
    SF_CHECK(r != NULL, SF_ERR_NOMEM, "out of memory (send request)");
    r->header = n;
    r->n = 0;
    int e = MPI_Isend(&r->header, 1, MPI_UINT64_T, dest, HDR_TAG(tag), MPI_COMM_WORLD, &r->reqs[0]);
    if (e == MPI_SUCCESS) r->n = 1;
    for (size_t i = 0; i < count && e == MPI_SUCCESS; i++) {
        size_t sz = sf__comm_chunk_size(n, chunk_limit, i);
        e = MPI_Isend((const char *)data + i * chunk_limit, (int)sz, MPI_BYTE, dest, DATA_TAG(tag),
                      MPI_COMM_WORLD, &r->reqs[i + 1]);
        if (e == MPI_SUCCESS) r->n++;
    }
    if (e != MPI_SUCCESS) {
        if (r->n > 0) MPI_Waitall(r->n, r->reqs, MPI_STATUSES_IGNORE);
        free(r);
        return mpi_fail(e, "MPI_Isend", __FILE__, __LINE__);
    }
    *out = r;
    return SF_OK;
}

sf_status sf_comm_wait(sf_comm_req **req)
{
    if (req == NULL || *req == NULL) return SF_OK;
    sf_comm_req *r = *req;
    int e = MPI_Waitall(r->n, r->reqs, MPI_STATUSES_IGNORE);
    free(r);
    *req = NULL;
    if (e != MPI_SUCCESS) return mpi_fail(e, "MPI_Waitall", __FILE__, __LINE__);
    return SF_OK;
}

sf_status sf_comm_test(sf_comm_req **req, bool *done)
{
    *done = true;
    if (req == NULL || *req == NULL) return SF_OK;
    int flag = 0;
    SF_CALL_MPI(MPI_Testall((*req)->n, (*req)->reqs, &flag, MPI_STATUSES_IGNORE));
    *done = flag != 0;
    if (flag) {
        free(*req);
        *req = NULL;
    }
    return SF_OK;
}

/* Blocking receive of a message over comm (src < 0: any source). */
static sf_status comm_recv(MPI_Comm comm, int src, int tag, sf_buf *out, int *from)
{
    uint64_t n = 0;
    MPI_Status st;
    SF_CALL_MPI(MPI_Recv(&n, 1, MPI_UINT64_T, src < 0 ? MPI_ANY_SOURCE : src, HDR_TAG(tag), comm,
                         &st));
    int source = st.MPI_SOURCE;
    if (from) *from = source;
    sf_buf_clear(out);
    size_t count = sf__comm_chunk_count((size_t)n, chunk_limit);
    sf_status rc = sf_buf_reserve(out, (size_t)n);
    if (rc != SF_OK) {
        /* Consume the chunks anyway (a zero-count receive truncates and
         * discards), so the sender is never left blocked. */
        char dummy;
        for (size_t i = 0; i < count; i++)
            MPI_Recv(&dummy, 0, MPI_BYTE, source, DATA_TAG(tag), comm, MPI_STATUS_IGNORE);
        return rc;
    }
    for (size_t i = 0; i < count; i++) {
        size_t sz = sf__comm_chunk_size((size_t)n, chunk_limit, i);
        SF_CALL_MPI(MPI_Recv(out->data + i * chunk_limit, (int)sz, MPI_BYTE, source, DATA_TAG(tag),
                             comm, MPI_STATUS_IGNORE));
    }
    out->len = (size_t)n;
    return SF_OK;
}

sf_status sf_comm_recv(int src, int tag, sf_buf *out, int *from)
{
    return comm_recv(MPI_COMM_WORLD, src, tag, out, from);
}

sf_status sf_comm_iprobe(int tag, bool *flag, int *from)
{
    int f = 0;
    MPI_Status st;
    SF_CALL_MPI(MPI_Iprobe(MPI_ANY_SOURCE, HDR_TAG(tag), MPI_COMM_WORLD, &f, &st));
    *flag = f != 0;
    *from = f ? st.MPI_SOURCE : -1;
    return SF_OK;
}

/* ---- tree reductions ------------------------------------------------ */

/* The node size forced by SF_RANKS_PER_NODE, read on rank 0 only and
 * broadcast, so that a variable set differently on some ranks cannot make
 * them build different communicators: 0 when unset. Collective. */
static sf_status ranks_per_node(int *out)
{
    int n = 0;
    const char *text = getenv("SF_RANKS_PER_NODE");
    if (world_rank == 0 && text != NULL && text[0] != '\0') {
        char *end = NULL;
        errno = 0;
        long v = strtol(text, &end, 10);
        n = errno == 0 && *end == '\0' && v >= 1 && v <= INT_MAX ? (int)v : -1;
    }
    SF_CALL_MPI(MPI_Bcast(&n, 1, MPI_INT, 0, MPI_COMM_WORLD));
    SF_CHECK(n >= 0, SF_ERR_ARG, "SF_RANKS_PER_NODE=%s (on rank 0): expected a whole number of ranks >= 1",
             world_rank == 0 && text != NULL ? text : "?");
    *out = n;
    return SF_OK;
}

/* Builds the node and leader communicators and the rank maps into topo.
 * Collective; on failure topo holds what was made so far. */
static sf_status topo_build(void)
{
    int per_node = 0, nrank = 0, nsize = 0, nleaders = 0;
    SF_CALL(ranks_per_node(&per_node));
    if (per_node > 0)
        SF_CALL_MPI(MPI_Comm_split(MPI_COMM_WORLD, world_rank / per_node, world_rank, &topo.node));
    else
        SF_CALL_MPI(MPI_Comm_dup(node_comm, &topo.node));
    SF_CALL_MPI(MPI_Comm_set_errhandler(topo.node, MPI_ERRORS_RETURN));
    SF_CALL_MPI(MPI_Comm_rank(topo.node, &nrank));
    SF_CALL_MPI(MPI_Comm_size(topo.node, &nsize));
    /* Ordered by world rank, so world rank 0 is rank 0 of the leaders and
     * every node is led by its lowest rank. */
    SF_CALL_MPI(MPI_Comm_split(MPI_COMM_WORLD, nrank == 0 ? 0 : MPI_UNDEFINED, world_rank, &topo.leaders));
    if (topo.leaders != MPI_COMM_NULL) {
        SF_CALL_MPI(MPI_Comm_set_errhandler(topo.leaders, MPI_ERRORS_RETURN));
        SF_CALL_MPI(MPI_Comm_size(topo.leaders, &nleaders));
    }
    topo.node_world = malloc(sizeof(int) * (size_t)nsize);
    topo.node_of = malloc(sizeof(int) * (size_t)world_size);
    topo.leader_world = nleaders > 0 ? malloc(sizeof(int) * (size_t)nleaders) : NULL;
    /* Every rank learns whether all allocations succeeded before the
     * gathers, so a rank short of memory does not leave the others waiting. */
    int nomem = topo.node_world == NULL || topo.node_of == NULL || (nleaders > 0 && topo.leader_world == NULL);
    SF_CALL_MPI(MPI_Allreduce(MPI_IN_PLACE, &nomem, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    SF_CHECK(!nomem, SF_ERR_NOMEM, "out of memory (node map of %d ranks)", world_size);
    SF_CALL_MPI(MPI_Allgather(&world_rank, 1, MPI_INT, topo.node_world, 1, MPI_INT, topo.node));
    SF_CALL_MPI(MPI_Allgather(&topo.node_world[0], 1, MPI_INT, topo.node_of, 1, MPI_INT, MPI_COMM_WORLD));
    if (topo.leaders != MPI_COMM_NULL)
        SF_CALL_MPI(MPI_Allgather(&world_rank, 1, MPI_INT, topo.leader_world, 1, MPI_INT, topo.leaders));
    return SF_OK;
}

/* Makes the reduction communicators on first use. Collective. */
static sf_status topo_init(void)
{
    if (topo.ready) return SF_OK;
    sf_status rc = topo_build();
    if (rc != SF_OK) {
        topo_free();
        return rc;
    }
    topo.ready = true;
    return SF_OK;
}

/* One binomial tree over comm to its rank 0: at step k, ranks with bit k set
 * send to rank - 2^k; the others merge the child rank + 2^k, so children
 * are merged in increasing rank order. Every edge carries a status byte
 * first, then the bytes only if the subtree succeeded, so a failure
 * anywhere still completes the tree and no rank is left waiting; the
 * caller agrees on the status afterwards.
 *
 * *rc is this rank's first local failure (a merge, or memory for a child's
 * bytes) and *subtree_ok whether every child subtree succeeded; both are in
 * and out, so a second tree carries on the marks of the first. to_world
 * maps ranks of comm to world ranks (NULL: comm is the world) to count the
 * messages that leave the node into *st. Returns an MPI failure, else
 * SF_OK. tmp is scratch space. */
static sf_status tree_reduce(MPI_Comm comm, const int *to_world, sf_buf *buf, sf_comm_merge_fn merge,
                             void *ctx, sf_buf *tmp, sf_status *rc, bool *subtree_ok,
                             sf_comm_reduce_stats *st)
{
    int me = 0, n = 1;
    SF_CALL_MPI(MPI_Comm_rank(comm, &me));
    SF_CALL_MPI(MPI_Comm_size(comm, &n));
    sf_status comm_rc = SF_OK;
    for (int step = 1; step < n && comm_rc == SF_OK; step <<= 1) {
        if (me & step) {
            int parent = me - step;
            uint8_t ok = *rc == SF_OK && *subtree_ok;
            comm_rc = comm_send(comm, parent, SF_TAG_REDUCE, &ok, 1);
            if (comm_rc == SF_OK && ok) comm_rc = comm_send(comm, parent, SF_TAG_REDUCE, buf->data, buf->len);
            if (comm_rc == SF_OK) {
                int parent_world = to_world != NULL ? to_world[parent] : parent;
                st->messages++;
                st->bytes += ok ? buf->len : 0;
                if (topo.node_of[parent_world] != topo.node_of[world_rank]) st->internode_messages++;
            }
            break;
        }
        int child = me + step;
        if (child >= n) continue;
        comm_rc = comm_recv(comm, child, SF_TAG_REDUCE, tmp, NULL);
        if (comm_rc != SF_OK) break;
        if (!(tmp->len == 1 && tmp->data[0] == 1)) {
            *subtree_ok = false;
            continue;
        }
        comm_rc = comm_recv(comm, child, SF_TAG_REDUCE, tmp, NULL);
        if (comm_rc == SF_ERR_NOMEM) {
            /* The chunks were consumed: a local failure, not a broken tree. */
            if (*rc == SF_OK) *rc = comm_rc;
            comm_rc = SF_OK;
            continue;
        }
        if (comm_rc == SF_OK && *rc == SF_OK && *subtree_ok) *rc = merge(buf, tmp->data, tmp->len, ctx);
    }
    return comm_rc;
}

sf_status sf_comm_reduce(sf_buf *buf, sf_comm_merge_fn merge, void *ctx)
{
    memset(&flat_stats, 0, sizeof flat_stats);
    SF_CALL(topo_init());
    sf_status rc = SF_OK;
    bool subtree_ok = true; /* a failed child returns its own error; we pass the mark up */
    sf_buf tmp;
    sf_buf_init(&tmp);
    sf_status comm = tree_reduce(MPI_COMM_WORLD, NULL, buf, merge, ctx, &tmp, &rc, &subtree_ok, &flat_stats);
    sf_buf_fini(&tmp);
    return comm != SF_OK ? comm : rc;
}

sf_status sf_comm_reduce_hier(sf_buf *buf, sf_comm_merge_fn merge, void *ctx, sf_comm_reduce_stats *st)
{
    sf_comm_reduce_stats counts = {0, 0, 0};
    if (st != NULL) *st = counts;
    SF_CALL(topo_init());
    sf_status rc = SF_OK;
    bool subtree_ok = true;
    sf_buf tmp;
    sf_buf_init(&tmp);
    /* Level 1: inside the node, to its lowest rank. */
    sf_status comm = tree_reduce(topo.node, topo.node_world, buf, merge, ctx, &tmp, &rc, &subtree_ok, &counts);
    /* Level 2: over the node leaders, to world rank 0. A leader whose node
     * tree broke on an MPI call still takes part, marked failed, so that the
     * other leaders are not left waiting for it. */
    if (topo.leaders != MPI_COMM_NULL) {
        sf_status mark = rc != SF_OK ? rc : comm;
        sf_status comm2 = tree_reduce(topo.leaders, topo.leader_world, buf, merge, ctx, &tmp, &mark,
                                      &subtree_ok, &counts);
        if (rc == SF_OK && comm == SF_OK) rc = mark;
        if (comm == SF_OK) comm = comm2;
    }
    sf_buf_fini(&tmp);
    if (st != NULL) *st = counts;
    return comm != SF_OK ? comm : rc;
}

void sf_comm_reduce_last_stats(sf_comm_reduce_stats *st) { *st = flat_stats; }

sf_status sf_comm_gather(const sf_buf *mine, sf_comm_gather_fn on_rank, void *ctx)
{
    if (world_rank != 0) return sf_comm_send(0, SF_TAG_GATHER, mine->data, mine->len);
    sf_status rc = on_rank(0, mine->data, mine->len, ctx);
    sf_buf tmp;
    sf_buf_init(&tmp);
    for (int r = 1; r < world_size; r++) {
        /* Receive from every rank even after a failure, so no sender blocks. */
        sf_status rr = sf_comm_recv(r, SF_TAG_GATHER, &tmp, NULL);
        if (rr == SF_OK && rc == SF_OK) rr = on_rank(r, tmp.data, tmp.len, ctx);
        if (rc == SF_OK) rc = rr;
    }
    sf_buf_fini(&tmp);
    return rc;
}

size_t sf_comm_chunk_count(size_t n, size_t limit) { return sf__comm_chunk_count(n, limit); }
size_t sf_comm_chunk_size(size_t n, size_t limit, size_t i) { return sf__comm_chunk_size(n, limit, i); }
