/* The `sessions` agent: the sessions of every user (events of one user
 * closer than an idle gap to each other), how many events they hold and how
 * long they last, and how many are abandoned: a session whose last event is
 * slow (latency >= slow_ms), counted per time bucket of the session end and
 * optionally per group (by: columns, taken from the session's last event).
 *
 * State: per user, the sorted list of its sessions {start, end, events,
 * latency and group key of the end event}; no event is stored. Adding an
 * event or merging two states is a union of the lists followed by coalescing
 * neighbours whose gap (next.start - prev.end) is at most `gap`. The result
 * is the partition of the user's events into the connected components of the
 * "at most gap apart" relation, which depends only on the set of events, so
 * merge is exactly associative and commutative. The end event of a session is
 * its maximum in the order (time, latency, group key bytes), so ties at equal
 * end times are broken the same way whatever the arrival order. Latencies are
 * compared through an order-preserving integer key (0 for null or NaN, which
 * never count as slow).
 *
 * A session is never split between shards when the input is hash-sharded by
 * the user column (check() requires it), so every shard's sessions are final
 * ones; merging would still be exact otherwise, but the memory of a user
 * would then be held by every rank it appears on.
 *
 * Rows with a null user or a null time are not events; they are counted as
 * "skipped".
 *
 * Statistics (stat()): "count" (events), "rows" (events plus skipped rows),
 * "sessions", "abandoned"; with a group key, those of the sessions that end
 * in that group (a key no session ends with is unknown). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/config.h"

#include "core/huge.h"

#include "agents/groups.h"
#include "agents/order_key.h"
#include "agents/sessions.h"
#include "agents/txn.h"

#define SESSIONS_FORMAT 1
#define DEFAULT_GAP_US INT64_C(300000000)    /* 5 minutes */
#define DEFAULT_BUCKET_US INT64_C(60000000)  /* 1 minute */
#define DEFAULT_SLOW_MS 2000.0
/* Encoded sizes, for bounds on counts read from untrusted bytes. */
#define SESSION_BYTES 36   /* start, end, events, latency key (8 each), group rank (4) */
#define USER_MIN_BYTES 12  /* key length (4) and session count (8) */
#define NCLUS 256          /* clusters of shards for the layout of the user table */
#define CLUS_BLOCK 32      /* slots a cluster takes at a time (2 KiB) */

typedef struct session {
    int64_t start, end;  /* times of the first and last event, microseconds */
    uint64_t events;
    uint64_t lat;        /* order key of the end event's latency, 0 = null */
    uint32_t key;        /* group of the end event (index into the state's key table) */
} session;

/* A user's sessions, sorted by start, consecutive ones more than gap
 * apart: the latest lives in the entry itself, the earlier ones (n - 1 of
 * them) in heap (room for cap), so that an event in time order, which
 * extends the latest session or starts one after it, touches the entry
 * only. */
typedef struct user_sessions {
    uint32_t n, cap;
    session *heap;
    session last;        /* when n > 0 */
} user_sessions;

/* An event not yet added to its user's sessions. */
typedef struct pending_ev {
    uint32_t ui, key;
    int64_t t;
    uint64_t lat;
} pending_ev;

/* The users of a cluster of shards: where their slots come from, and the
 * events of theirs that process() has taken but not yet added. */
typedef struct cluster {
    uint32_t next, end;  /* the free slots of its current block */
    uint32_t users;      /* slots it has handed out */
    size_t n, cap;       /* pending events ev[0..n) */
    size_t kept;         /* inside a transaction: ev[0..kept) came before it */
    pending_ev *ev;
} cluster;

/* Session k of a user's list (k < us->n). */
static inline const session *SES(const user_sessions *us, uint32_t k)
{
    return k + 1 == us->n ? &us->last : &us->heap[k];
}

typedef struct sessions_state {
    const sf_agent_config *cfg;
    int *user_col;       /* heap, one entry: the user table's key column */
    int time_col, lat_col;
    int64_t gap, bucket;
    uint64_t slow;       /* order key of slow_ms */
    uint64_t skipped;
    sf__groups users;    /* user key -> index into u */
    sf__groups keys;     /* group key of the by: columns -> index */
    /* The users' sessions live in slots of u, handed out in blocks of
     * CLUS_BLOCK to clusters of shards (sf_rows.shard % NCLUS): a new user
     * takes the next slot of its shard's cluster. process() only appends
     * the events to their cluster's pending list; a cluster's list is added
     * to the sessions when it holds several events per user of the cluster
     * (settle_cluster), so that its users' entries, a few hundred kilobytes
     * at most, stay in the cache while they are updated, where adding each
     * event as it comes would miss the cache on nearly every row of a table
     * of millions of users. Clusters and slots are layout only: the sessions
     * are the same whatever the order in which events are added. */
    user_sessions *u;    /* ucap slots, uused of them handed out (the rest zero) */
    uint32_t ucap, uused;
    uint32_t *slot;      /* user index -> its slot, for users 0 .. nslot-1 */
    uint32_t nslot, slot_cap;
    cluster clus[NCLUS];
    session *scratch;    /* merge output */
    size_t scratch_cap;
    uint32_t *kmap;      /* merge and decode: other state's key index -> ours */
    size_t kmap_cap;
    uint32_t *mwhich;    /* merge: the other state's users with sessions, then ours of them */
    size_t mwhich_cap;
    /* The in-place transaction (agents/txn.h), if one is open: its events
     * are the pending ones after each cluster's `kept`, so that undoing it
     * is forgetting them. */
    bool in_txn;
    uint64_t skipped_before;
} sessions_state;

/* The sessions of user ui (ui < s->nslot). */
static inline user_sessions *U(const sessions_state *s, uint32_t ui) { return &s->u[s->slot[ui]]; }

/* The options, as check(), columns() and init() read them. */
typedef struct sessions_opts {
    const char *user, *time, *latency;
    int64_t gap, bucket;
    double slow_ms;
} sessions_opts;

/* ---- values ------------------------------------------------------------------ */

/* A NaN latency sorts below every number (it is never slow). */
static inline uint64_t order_key(double x) { return isnan(x) ? 0 : sf__order_key(x); }

static int bytes_cmp(const uint8_t *a, size_t na, const uint8_t *b, size_t nb)
{
    size_t n = na < nb ? na : nb;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) return c;
    return na < nb ? -1 : na > nb ? 1 : 0;
}

/* Whether an event at time `next` belongs with a session ending at `prev`
 * (next - prev <= gap; always when next <= prev), without overflow. */
static inline bool within(int64_t prev, int64_t next, int64_t gap)
{
    return next <= prev || (uint64_t)next - (uint64_t)prev <= (uint64_t)gap;
}

/* ---- sessions ------------------------------------------------------------------ */

/* Whether end event b beats end event a at the same time: the larger
 * latency key, then the larger group key bytes. */
static bool end_wins(const sessions_state *s, const session *a, const session *b)
{
    if (b->lat != a->lat) return b->lat > a->lat;
    if (b->key == a->key) return false;
    size_t na, nb;
    const uint8_t *ka = sf__groups_key(&s->keys, a->key, &na);
    const uint8_t *kb = sf__groups_key(&s->keys, b->key, &nb);
    return bytes_cmp(ka, na, kb, nb) < 0;
}

/* a = a joined with b (both of this state's key table). */
static void join(const sessions_state *s, session *a, const session *b)
{
    if (b->start < a->start) a->start = b->start;
    a->events += b->events;
    if (b->end > a->end || (b->end == a->end && end_wins(s, a, b))) {
        a->end = b->end;
        a->lat = b->lat;
        a->key = b->key;
    }
}

/* Heap room for a list of need sessions (need - 1 earlier ones). */
static sf_status reserve_sessions(user_sessions *us, uint32_t need)
{
    if (need <= 1 || need - 1 <= us->cap) return SF_OK;
    SF_CHECK(need < UINT32_MAX / 2, SF_ERR_NOMEM, "sessions: %u sessions of one user", need);
    uint32_t cap = us->cap ? us->cap : 4;
    while (cap < need - 1) cap *= 2;
    session *p = realloc(us->heap, (size_t)cap * sizeof *p);
    SF_CHECK(p != NULL, SF_ERR_NOMEM, "sessions: out of memory for %u sessions of one user", cap);
    us->heap = p;
    us->cap = cap;
    return SF_OK;
}

/* Copies a user's list to dst[0..us->n). */
static void load_list(const user_sessions *us, session *dst)
{
    if (us->n > 1) memcpy(dst, us->heap, (size_t)(us->n - 1) * sizeof *dst);
    if (us->n > 0) dst[us->n - 1] = us->last;
}

/* Makes x[0..m) the user's list. */
static sf_status store_list(user_sessions *us, const session *x, uint32_t m)
{
    SF_CALL(reserve_sessions(us, m));
    if (m > 1) memcpy(us->heap, x, (size_t)(m - 1) * sizeof *x);
    if (m > 0) us->last = x[m - 1];
    us->n = m;
    return SF_OK;
}

/* Appends x, which starts after the user's latest session and more than
 * gap after its end (or the list is empty). */
static sf_status push_session(user_sessions *us, const session *x)
{
    if (us->n > 0) {
        SF_CALL(reserve_sessions(us, us->n + 1));
        us->heap[us->n - 1] = us->last;
    }
    us->last = *x;
    us->n++;
    return SF_OK;
}

/* Room for need elements of elem bytes in array p of *cap (doubling from
 * first): *out is the array, p itself or its reallocation (p is left as it
 * was on a failure); what names the elements in the message. */
static sf_status reserve_array(void *p, size_t *cap, size_t need, size_t elem, size_t first, const char *what,
                               void **out)
{
    *out = p;
    if (need <= *cap && p != NULL) return SF_OK;
    size_t c = *cap ? *cap : first;
    while (c < need) c *= 2;
    SF_CHECK(c <= SIZE_MAX / elem, SF_ERR_NOMEM, "sessions: %zu %s", need, what);
    void *q = realloc(p, c * elem);
    SF_CHECK(q != NULL, SF_ERR_NOMEM, "sessions: out of memory for %zu %s", c, what);
    *out = q;
    *cap = c;
    return SF_OK;
}

/* Scratch room for need sessions. */
static sf_status reserve_scratch(sessions_state *s, size_t need)
{
    void *p;
    sf_status rc = reserve_array(s->scratch, &s->scratch_cap, need, sizeof *s->scratch, 16, "sessions", &p);
    s->scratch = p;
    return rc;
}

/* Adds one event to a user's sessions. Events mostly arrive in time order:
 * they extend the latest session, or start a new one after it, touching
 * only the user's entry. */
static sf_status add_event(sessions_state *s, user_sessions *us, const session *ev)
{
    uint32_t n = us->n;
    int64_t t = ev->start;
    if (n == 0 || us->last.start <= t) {
        if (n > 0 && within(us->last.end, t, s->gap)) {
            join(s, &us->last, ev);
            return SF_OK;
        }
        return push_session(us, ev);
    }
    /* An event before the start of the latest session: on a copy of the
     * list. pos: the first session starting after t (pos < n). */
    SF_CALL(reserve_scratch(s, (size_t)n + 1));
    session *a = s->scratch;
    load_list(us, a);
    uint32_t lo = 0, hi = n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (a[mid].start > t) hi = mid;
        else lo = mid + 1;
    }
    const uint32_t pos = lo;
    if (pos > 0 && within(a[pos - 1].end, t, s->gap)) {
        join(s, &a[pos - 1], ev);
        /* The event may bridge the gap to the next session. */
        if (within(a[pos - 1].end, a[pos].start, s->gap)) {
            join(s, &a[pos - 1], &a[pos]);
            memmove(&a[pos], &a[pos + 1], (size_t)(n - pos - 1) * sizeof *a);
            n--;
        }
    } else if (within(t, a[pos].start, s->gap)) {
        join(s, &a[pos], ev);
    } else {
        memmove(&a[pos + 1], &a[pos], (size_t)(n - pos) * sizeof *a);
        a[pos] = *ev;
        n++;
    }
    return store_list(us, a, n);
}

/* into = into (+) from, where from's group keys are mapped through kmap. */
static sf_status merge_lists(sessions_state *s, user_sessions *into, const user_sessions *from,
                             const uint32_t *kmap)
{
    /* Lists are normalized (sorted, consecutive sessions more than gap
     * apart: add_event, this merge and decode keep it so). When from starts
     * no earlier than into's last session, the merge order is into, then
     * from: into's sessions stay as they are and from's are appended, each
     * joined to the last one where within the gap. (The common case: a
     * user's later rows arrive in later units.) */
    if (from->n == 0) return SF_OK;
    const session *f0 = from->n > 1 ? &from->heap[0] : &from->last;
    if (into->n == 0 || f0->start >= into->last.start) {
        for (uint32_t j = 0; j < from->n; j++) {
            session next = j + 1 < from->n ? from->heap[j] : from->last;
            next.key = kmap[next.key];
            if (into->n > 0 && within(into->last.end, next.start, s->gap))
                join(s, &into->last, &next);
            else
                SF_CALL(push_session(into, &next));
        }
        return SF_OK;
    }
    /* Both lists copied side by side, merged after them. */
    const size_t ni = into->n, nf = from->n;
    SF_CALL(reserve_scratch(s, 2 * (ni + nf)));
    session *a = s->scratch, *b = s->scratch + ni, *o = s->scratch + ni + nf;
    load_list(into, a);
    load_list(from, b);
    size_t out = 0, i = 0, j = 0;
    while (i < ni || j < nf) {
        session next;
        if (j >= nf || (i < ni && a[i].start <= b[j].start)) {
            next = a[i++];
        } else {
            next = b[j++];
            next.key = kmap[next.key];
        }
        if (out > 0 && within(o[out - 1].end, next.start, s->gap))
            join(s, &o[out - 1], &next);
        else
            o[out++] = next;
    }
    return store_list(into, o, (uint32_t)out);
}

/* ---- options ------------------------------------------------------------------- */

static const char *cfg_file(const sf_agent_config *cfg) { return cfg->file ? cfg->file : "<workflow>"; }
static const char *cfg_id(const sf_agent_config *cfg) { return cfg->id ? cfg->id : "sessions"; }

static sf_status read_opts(const sf_agent_config *cfg, sessions_opts *o)
{
    SF_CALL(sf_agent_opt_str(cfg, "user", cfg->shard_key, &o->user));
    SF_CALL(sf_agent_opt_str(cfg, "time", "timestamp", &o->time));
    SF_CALL(sf_agent_opt_str(cfg, "latency", "latency_ms", &o->latency));
    SF_CALL(sf_agent_opt_duration_us(cfg, "gap", DEFAULT_GAP_US, &o->gap));
    SF_CALL(sf_agent_opt_duration_us(cfg, "bucket", DEFAULT_BUCKET_US, &o->bucket));
    SF_CALL(sf_agent_opt_double(cfg, "slow_ms", DEFAULT_SLOW_MS, 0, 1e300, &o->slow_ms));
    return SF_OK;
}

static sf_status sessions_check(const sf_agent_config *cfg)
{
    static const char *const allowed[] = {"user", "time", "gap", "latency", "slow_ms", "bucket"};
    SF_CALL(sf_agent_check_options(cfg, allowed, (int)(sizeof allowed / sizeof allowed[0])));
    sessions_opts o;
    SF_CALL(read_opts(cfg, &o));
    SF_CHECK(cfg->column == NULL, SF_ERR_CONFIG,
             "%s:%d: agent '%s': sessions takes no column: (it reads user:, time: and latency:)",
             cfg_file(cfg), cfg->line, cfg_id(cfg));
    bool hash = cfg->shard_strategy != NULL && strcmp(cfg->shard_strategy, "hash") == 0;
    bool keyed = o.user != NULL && cfg->shard_key != NULL && strcmp(cfg->shard_key, o.user) == 0;
    SF_CHECK(hash && keyed, SF_ERR_CONFIG,
             "%s:%d: agent '%s': sessions needs shard.strategy: hash with shard.key: %s (a user's "
             "sessions must never be split across shards)",
             cfg_file(cfg), cfg->line, cfg_id(cfg), o.user ? o.user : "<the user column>");
    SF_CHECK(cfg->schema != NULL, SF_ERR_CONFIG, "%s:%d: agent '%s': no input schema", cfg_file(cfg),
             cfg->line, cfg_id(cfg));
    static const sf_type user_types[] = {SF_STRING, SF_INT64};
    static const sf_type time_types[] = {SF_TIMESTAMP, SF_INT64};
    static const sf_type lat_types[] = {SF_FLOAT64, SF_INT64};
    int col;
    SF_CALL(sf_agent_need_col(cfg, "user", o.user, user_types, 2, &col));
    SF_CALL(sf_agent_need_col(cfg, "time", o.time, time_types, 2, &col));
    SF_CALL(sf_agent_need_col(cfg, "latency", o.latency, lat_types, 2, &col));
    SF_CHECK(cfg->nby >= 0 && cfg->nby <= 255 && (cfg->nby == 0 || cfg->by_col != NULL), SF_ERR_CONFIG,
             "%s:%d: agent '%s': by: takes 1 to 255 columns", cfg_file(cfg), cfg->line, cfg_id(cfg));
    for (int i = 0; i < cfg->nby; i++)
        SF_CHECK(cfg->by_col[i] >= 0 && cfg->by_col[i] < cfg->schema->ncols, SF_ERR_CONFIG,
                 "%s:%d: agent '%s': by column '%s' is not in the input", cfg_file(cfg), cfg->line,
                 cfg_id(cfg), cfg->by && cfg->by[i] ? cfg->by[i] : "?");
    return SF_OK;
}

static sf_status sessions_columns(const sf_agent_config *cfg, const char **names, int max, int *n)
{
    *n = 0;
    sessions_opts o;
    SF_CALL(read_opts(cfg, &o));
    const char *want[3] = {o.user, o.time, o.latency};
    for (int i = 0; i < 3; i++) {
        if (want[i] == NULL) continue; /* check() names the missing user column */
        SF_CHECK(*n < max, SF_ERR_CONFIG, "%s:%d: agent '%s': too many columns", cfg_file(cfg), cfg->line,
                 cfg_id(cfg));
        names[(*n)++] = want[i];
    }
    return SF_OK;
}

/* ---- lifecycle -------------------------------------------------------------------- */

static void sessions_destroy(void *state)
{
    sessions_state *s = state;
    for (uint32_t i = 0; i < s->ucap; i++) free(s->u[i].heap);
    free(s->u);
    free(s->slot);
    free(s->scratch);
    free(s->kmap);
    free(s->mwhich);
    for (int c = 0; c < NCLUS; c++) free(s->clus[c].ev);
    free(s->user_col);
    sf__groups_fini(&s->users);
    sf__groups_fini(&s->keys);
    memset(s, 0, sizeof *s);
}

static sf_status sessions_init(void *state, const sf_agent_config *cfg)
{
    sessions_state *s = state;
    memset(s, 0, sizeof *s);
    sessions_opts o;
    SF_CALL(read_opts(cfg, &o));
    int uc = sf_agent_col(cfg, o.user), tc = sf_agent_col(cfg, o.time), lc = sf_agent_col(cfg, o.latency);
    SF_CHECK(uc >= 0 && tc >= 0 && lc >= 0 && cfg->nby >= 0 && cfg->nby <= 255 &&
                 (cfg->nby == 0 || cfg->by_col != NULL),
             SF_ERR_ARG, "sessions: configuration of agent '%s' was not checked", cfg_id(cfg));
    s->cfg = cfg;
    s->time_col = tc;
    s->lat_col = lc;
    s->gap = o.gap;
    s->bucket = o.bucket;
    s->slow = order_key(o.slow_ms);
    /* The key column lives on the heap: the group table keeps a pointer to it. */
    s->user_col = malloc(sizeof *s->user_col);
    SF_CHECK(s->user_col != NULL, SF_ERR_NOMEM, "sessions: out of memory");
    *s->user_col = uc;
    sf_status rc = sf__groups_init(&s->users, cfg->schema, s->user_col, 1);
    if (rc == SF_OK) rc = sf__groups_init(&s->keys, cfg->schema, cfg->by_col, cfg->nby);
    if (rc != SF_OK) sessions_destroy(s);
    return rc;
}

/* Gives every user of the table without one a slot, in the cluster of
 * shard (the shard whose rows created them; SF_ROWS_NO_SHARD for users a
 * merge or a decode created). */
static sf_status grow_users(sessions_state *s, uint32_t shard)
{
    if (s->users.n <= s->nslot) return SF_OK;
    SF_CHECK(s->users.n < UINT32_MAX / 4, SF_ERR_NOMEM, "sessions: %u users", s->users.n);
    if (s->users.n > s->slot_cap) {
        uint32_t cap = s->slot_cap ? s->slot_cap : 64;
        while (cap < s->users.n) cap *= 2;
        uint32_t *p = realloc(s->slot, (size_t)cap * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "sessions: out of memory for %u users", cap);
        s->slot = p;
        s->slot_cap = cap;
    }
    cluster *c = &s->clus[shard % NCLUS];
    for (uint32_t ui = s->nslot; ui < s->users.n; ui++) {
        if (c->next == c->end) {
            if (s->uused + CLUS_BLOCK > s->ucap) {
                SF_CHECK(s->ucap < UINT32_MAX / 4, SF_ERR_NOMEM, "sessions: %u user slots", s->ucap);
                uint32_t cap = s->ucap ? 2 * s->ucap : 4 * CLUS_BLOCK;
                user_sessions *u = realloc(s->u, (size_t)cap * sizeof *u);
                SF_CHECK(u != NULL, SF_ERR_NOMEM, "sessions: out of memory for %u users", cap);
                sf__mem_huge(u, (size_t)cap * sizeof *u);
                memset(u + s->ucap, 0, (size_t)(cap - s->ucap) * sizeof *u);
                s->u = u;
                s->ucap = cap;
            }
            c->next = s->uused;
            c->end = s->uused + CLUS_BLOCK;
            s->uused += CLUS_BLOCK;
        }
        s->slot[ui] = c->next++;
        c->users++;
        s->nslot = ui + 1;
    }
    return SF_OK;
}

/* ---- in-place transactions ------------------------------------------------------- */

/* A cluster's pending events are added once they are this many: two per
 * user of the cluster (four or sixteen were no faster, and the events
 * still pending when the pass ends are added by encode()). */
static size_t settle_at(const cluster *c)
{
    size_t k = (size_t)2 * c->users;
    return k > 1024 ? k : 1024;
}

/* Adds pending events ev[0..upto) of cluster c to the sessions and drops
 * them from the list. On a failure the events added so far are dropped
 * too, so that a later call goes on where this one stopped. */
static sf_status settle_cluster(sessions_state *s, cluster *c, size_t upto)
{
    sf_status rc = SF_OK;
    size_t i = 0;
    const uint32_t nu = s->nslot;
    for (; i < upto; i++) {
        if (i + 8 < upto && c->ev[i + 8].ui < nu) {
            const char *e = (const char *)U(s, c->ev[i + 8].ui);
            __builtin_prefetch(e);
            __builtin_prefetch(e + sizeof(user_sessions) - 1);
        }
        const pending_ev *p = &c->ev[i];
        SF_CHECK_GOTO(p->ui < nu, SF_ERR_INTERNAL, done, "sessions: user %u has no slot", p->ui);
        const session ev = {p->t, p->t, 1, p->lat, p->key};
        SF_CALL_GOTO(add_event(s, U(s, p->ui), &ev), done);
    }
done:
    memmove(c->ev, c->ev + i, (c->n - i) * sizeof *c->ev);
    c->n -= i;
    c->kept = c->kept > i ? c->kept - i : 0;
    return rc;
}

/* Adds every pending event outside an open transaction (all of them when
 * none is open). */
static sf_status settle(sessions_state *s)
{
    for (int k = 0; k < NCLUS; k++) {
        cluster *c = &s->clus[k];
        size_t upto = s->in_txn ? c->kept : c->n;
        if (upto > 0) SF_CALL(settle_cluster(s, c, upto));
    }
    return SF_OK;
}

/* The const entry points (encode, report, stat) add a state's pending
 * events first. Its value does not change; only processing leaves events
 * pending, and a state being processed is read by no one else, so a final
 * state (merged or decoded: settled) is never written through here. */
static sf_status settle_const(const sessions_state *s)
{
    for (int k = 0; k < NCLUS; k++)
        if (s->clus[k].n > 0) return settle((sessions_state *)s);
    return SF_OK;
}

static sf_status sessions_txn_begin(void *state)
{
    sessions_state *s = state;
    SF_CHECK(!s->in_txn, SF_ERR_INTERNAL, "sessions: a transaction is already open");
    for (int k = 0; k < NCLUS; k++) s->clus[k].kept = s->clus[k].n;
    s->in_txn = true;
    s->skipped_before = s->skipped;
    return SF_OK;
}

static void sessions_txn_commit(void *state)
{
    sessions_state *s = state;
    s->in_txn = false;
}

/* Forgets the transaction's events. The users it created stay, without
 * sessions (a user without sessions is neither encoded, merged nor
 * reported; nor are the keys it created, which no session refers to). */
static void sessions_txn_rollback(void *state)
{
    sessions_state *s = state;
    if (!s->in_txn) return; /* none open (its begin failed): nothing to undo */
    for (int k = 0; k < NCLUS; k++) s->clus[k].n = s->clus[k].kept;
    s->skipped = s->skipped_before;
    s->in_txn = false;
}

const sf__agent_txn sf__sessions_txn = {sessions_txn_begin, sessions_txn_commit, sessions_txn_rollback};

static sf_status sessions_process(void *state, const sf_batch *b, const sf_rows *rows)
{
    sessions_state *s = state;
    const int uc = *s->user_col;
    SF_CHECK(uc < b->ncols && s->time_col < b->ncols && s->lat_col < b->ncols && b->cols[uc].loaded &&
                 b->cols[s->time_col].loaded && b->cols[s->lat_col].loaded,
             SF_ERR_INTERNAL, "sessions: user, time or latency column not loaded");
    const sf_column *ucol = &b->cols[uc], *tcol = &b->cols[s->time_col], *lcol = &b->cols[s->lat_col];
    /* The cluster's events are added here, by the thread that owns the
     * state, once enough of them have come (inside a transaction: of those
     * that came before it). */
    cluster *c = &s->clus[rows->shard % NCLUS];
    const size_t ready = s->in_txn ? c->kept : c->n;
    if (ready >= settle_at(c)) SF_CALL(settle_cluster(s, c, ready));
    SF_CALL(sf__groups_batch(&s->users, b));
    SF_CALL(sf__groups_batch(&s->keys, b));
    /* Users and group keys for the whole call at once. A row that is not
     * an event may so create a user or key with no session: neither is
     * encoded, merged or reported (only sessions are). */
    const uint32_t *uidx, *kidx;
    bool created;
    SF_CALL(sf__groups_rows(&s->users, b, rows, &uidx, &created));
    if (created) SF_CALL(grow_users(s, rows->shard));
    SF_CALL(sf__groups_rows(&s->keys, b, rows, &kidx, &created));
    void *ev;
    sf_status grown = reserve_array(c->ev, &c->cap, c->n + rows->n, sizeof *c->ev, 1024, "pending events", &ev);
    c->ev = ev;
    SF_CALL(grown);
    pending_ev *out = c->ev + c->n;
    size_t k = 0;
    uint64_t skipped = 0;
    for (size_t i = 0; i < rows->n; i++) {
        size_t r = sf_rows_at(rows, i);
        if (sf_col_is_null(ucol, r) || sf_col_is_null(tcol, r)) {
            skipped++;
            continue;
        }
        out[k].ui = uidx[i];
        out[k].key = kidx[i];
        out[k].t = tcol->i64[r];
        out[k].lat = sf_col_is_null(lcol, r) ? 0 : order_key(sf_col_as_double(lcol, r));
        k++;
    }
    c->n += k;
    s->skipped += skipped;
    return SF_OK;
}

static sf_status reserve_kmap(sessions_state *s, size_t n)
{
    void *p;
    sf_status rc = reserve_array(s->kmap, &s->kmap_cap, n, sizeof *s->kmap, 64, "group keys", &p);
    s->kmap = p;
    return rc;
}

static sf_status sessions_merge(void *into, const void *from)
{
    sessions_state *a = into;
    const sessions_state *f = from;
    SF_CALL(settle(a));
    SF_CALL(settle_const(f));
    SF_CHECK(a->keys.nby == f->keys.nby && a->gap == f->gap, SF_ERR_INTERNAL,
             "sessions: merging states of different shapes");
    SF_CALL(reserve_kmap(a, f->keys.n));
    for (uint32_t i = 0; i < f->keys.n; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&f->keys, i, &len);
        SF_CALL(sf__groups_find(&a->keys, k, len, &a->kmap[i], NULL));
    }
    /* The users with sessions, looked up in one pass (prefetched: a
     * commit merges a unit's users into a table of all of the rank's). */
    size_t nu = 0;
    for (uint32_t j = 0; j < f->nslot; j++) nu += U(f, j)->n != 0;
    if (nu == 0) {
        a->skipped += f->skipped;
        return SF_OK;
    }
    if (2 * nu > a->mwhich_cap) {
        uint32_t *p = realloc(a->mwhich, 2 * nu * sizeof *p);
        SF_CHECK(p != NULL, SF_ERR_NOMEM, "sessions: out of memory merging %zu users", nu);
        a->mwhich = p;
        a->mwhich_cap = 2 * nu;
    }
    uint32_t *which = a->mwhich, *ours = a->mwhich + nu;
    nu = 0;
    for (uint32_t j = 0; j < f->nslot; j++)
        if (U(f, j)->n != 0) which[nu++] = j;
    bool created;
    SF_CALL(sf__groups_find_all(&a->users, &f->users, which, nu, ours, &created));
    if (created) SF_CALL(grow_users(a, SF_ROWS_NO_SHARD));
    SF_CHECK(a->nslot == a->users.n, SF_ERR_INTERNAL, "sessions: users without a slot");
    for (size_t i = 0; i < nu; i++) {
        if (i + 8 < nu) __builtin_prefetch(U(a, ours[i + 8]));
        SF_CALL(merge_lists(a, U(a, ours[i]), U(f, which[i]), a->kmap));
    }
    a->skipped += f->skipped;
    return SF_OK;
}

/* ---- encoding ------------------------------------------------------------------------ */

/* The group keys that sessions refer to, in byte order: rank[i] is the
 * position of key i among them (UINT32_MAX for a key no session refers to),
 * order[0..*nref) the keys by rank. Both malloc'ed. */
static sf_status referenced_keys(const sessions_state *s, uint32_t **rank, uint32_t **order, uint32_t *nref)
{
    *rank = NULL;
    *order = NULL;
    *nref = 0;
    if (s->keys.n == 0) return SF_OK;
    uint32_t *sorted = NULL;
    uint32_t *rk = malloc((size_t)s->keys.n * sizeof *rk);
    SF_CHECK(rk != NULL, SF_ERR_NOMEM, "sessions: out of memory for %u group keys", s->keys.n);
    for (uint32_t i = 0; i < s->keys.n; i++) rk[i] = 0;
    for (uint32_t i = 0; i < s->uused; i++)
        for (uint32_t k = 0; k < s->u[i].n; k++) rk[SES(&s->u[i], k)->key] = 1;
    sf_status rc = sf__groups_sorted(&s->keys, &sorted);
    if (rc != SF_OK) {
        free(rk);
        return rc;
    }
    uint32_t n = 0;
    for (uint32_t i = 0; i < s->keys.n; i++) {
        uint32_t g = sorted[i];
        if (rk[g]) sorted[n++] = g;
    }
    for (uint32_t i = 0; i < s->keys.n; i++) rk[i] = UINT32_MAX;
    for (uint32_t i = 0; i < n; i++) rk[sorted[i]] = i;
    *rank = rk;
    *order = sorted;
    *nref = n;
    return SF_OK;
}

/* Format 1: u8 version, u8 nby, i64 gap, u64 skipped; u64 number of group
 * keys, each a u32-length string, in ascending byte order (only keys some
 * session ends with); u64 number of users, each: key string (ascending),
 * u64 number of sessions, then per session (by start) i64 start, i64 end,
 * u64 events, u64 latency key, u32 rank of its group key. Little-endian. */
static sf_status sessions_encode(const void *state, sf_buf *out)
{
    const sessions_state *s = state;
    sf_status rc = SF_OK;
    uint32_t *rank = NULL, *korder = NULL, *uorder = NULL, nref = 0;
    SF_CALL(settle_const(s));
    SF_CALL_GOTO(referenced_keys(s, &rank, &korder, &nref), done);
    SF_CALL_GOTO(sf__groups_sorted(&s->users, &uorder), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, SESSIONS_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->keys.nby), done);
    SF_CALL_GOTO(sf_buf_put_i64(out, s->gap), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, s->skipped), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, nref), done);
    for (uint32_t i = 0; i < nref; i++) {
        size_t len;
        const uint8_t *k = sf__groups_key(&s->keys, korder[i], &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
    }
    /* Counted in table order (one sequential walk); written in key order,
     * with the entries and keys a few users ahead asked for early: in a
     * table far larger than the caches each user is a miss otherwise. */
    uint64_t nusers = 0;
    for (uint32_t i = 0; i < s->uused; i++) nusers += s->u[i].n > 0;
    SF_CALL_GOTO(sf_buf_put_u64(out, nusers), done);
    enum { AHEAD = 8 };
    for (uint32_t i = 0; i < s->users.n; i++) {
        if (i + AHEAD < s->users.n) {
            uint32_t a = uorder[i + AHEAD];
            if (a < s->nslot) __builtin_prefetch(U(s, a));
            __builtin_prefetch(&s->users.e[a]);
        }
        if (i + AHEAD / 2 < s->users.n) {
            uint32_t a = uorder[i + AHEAD / 2];
            __builtin_prefetch(s->users.keys + s->users.e[a].off);
        }
        uint32_t u = uorder[i];
        if (u >= s->nslot || U(s, u)->n == 0) continue;
        const user_sessions *us = U(s, u);
        size_t len;
        const uint8_t *k = sf__groups_key(&s->users, u, &len);
        SF_CALL_GOTO(sf_buf_put_str(out, (const char *)k, len), done);
        SF_CALL_GOTO(sf_buf_reserve(out, 8 + (size_t)us->n * SESSION_BYTES), done);
        uint8_t *p = out->data + out->len;
        sf_store_u64(p, us->n);
        p += 8;
        for (uint32_t k2 = 0; k2 < us->n; k2++) {
            const session *x = SES(us, k2);
            sf_store_u64(p, (uint64_t)x->start);
            sf_store_u64(p + 8, (uint64_t)x->end);
            sf_store_u64(p + 16, x->events);
            sf_store_u64(p + 24, x->lat);
            sf_store_u32(p + 32, rank[x->key]);
            p += SESSION_BYTES;
        }
        out->len = (size_t)(p - out->data);
    }
done:
    free(rank);
    free(korder);
    free(uorder);
    return rc;
}

/* Empties a state, keeping its allocations. */
static sf_status clear_state(sessions_state *s)
{
    for (uint32_t i = 0; i < s->ucap; i++) s->u[i].n = 0;
    s->uused = 0;
    s->nslot = 0;
    for (int k = 0; k < NCLUS; k++) {
        cluster *c = &s->clus[k];
        c->next = c->end = c->users = 0;
        c->n = c->kept = 0;
    }
    s->skipped = 0;
    SF_CALL(sf__groups_clear(&s->users));
    return sf__groups_clear(&s->keys);
}

static sf_status sessions_decode(void *state, const void *bytes, size_t n)
{
    sessions_state *s = state;
    sf_status rc = SF_OK;
    uint8_t *used = NULL;
    SF_CALL(clear_state(s));
    sf_rd r;
    sf_rd_init(&r, bytes, n);
    uint8_t version, nby;
    int64_t gap;
    uint64_t nkeys, nusers;
    SF_CALL(sf_rd_u8(&r, &version));
    SF_CHECK(version == SESSIONS_FORMAT, SF_ERR_PARSE, "sessions state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&r, &nby));
    SF_CHECK(nby == s->keys.nby, SF_ERR_PARSE, "sessions state: %u key columns, expected %d", nby, s->keys.nby);
    SF_CALL(sf_rd_i64(&r, &gap));
    SF_CHECK(gap == s->gap, SF_ERR_PARSE, "sessions state: gap %lld us, expected %lld", (long long)gap,
             (long long)s->gap);
    SF_CALL(sf_rd_u64(&r, &s->skipped));
    SF_CALL(sf_rd_u64(&r, &nkeys));
    SF_CHECK(nkeys <= (n - r.off) / 4, SF_ERR_PARSE, "sessions state: %llu group keys in %zu bytes",
             (unsigned long long)nkeys, n);
    SF_CALL(reserve_kmap(s, (size_t)nkeys));
    const uint8_t *prev = NULL;
    size_t prev_len = 0;
    for (uint64_t i = 0; i < nkeys; i++) SF_CALL(sf__groups_decode_key(&s->keys, &r, &prev, &prev_len, &s->kmap[i]));
    used = calloc(nkeys ? (size_t)nkeys : 1, 1);
    SF_CHECK(used != NULL, SF_ERR_NOMEM, "sessions: out of memory decoding %llu group keys",
             (unsigned long long)nkeys);

    SF_CALL_GOTO(sf_rd_u64(&r, &nusers), done);
    SF_CHECK_GOTO(nusers <= (n - r.off) / (USER_MIN_BYTES + SESSION_BYTES), SF_ERR_PARSE, done,
                  "sessions state: %llu users in %zu bytes", (unsigned long long)nusers, n);
    SF_CALL_GOTO(sf__groups_reserve(&s->users, (size_t)nusers), done);
    prev = NULL;
    prev_len = 0;
    for (uint64_t i = 0; i < nusers; i++) {
        uint32_t ui;
        uint64_t ns;
        SF_CALL_GOTO(sf__groups_decode_key(&s->users, &r, &prev, &prev_len, &ui), done);
        SF_CALL_GOTO(grow_users(s, SF_ROWS_NO_SHARD), done);
        SF_CALL_GOTO(sf_rd_u64(&r, &ns), done);
        SF_CHECK_GOTO(ns >= 1 && ns <= (n - r.off) / SESSION_BYTES && ns <= UINT32_MAX / 4, SF_ERR_PARSE, done,
                      "sessions state: user %llu has %llu sessions in %zu bytes", (unsigned long long)i,
                      (unsigned long long)ns, n);
        user_sessions *us = U(s, ui);
        SF_CHECK_GOTO(us->n == 0, SF_ERR_PARSE, done, "sessions state: user %llu listed twice",
                      (unsigned long long)i);
        SF_CALL_GOTO(reserve_sessions(us, (uint32_t)ns), done);
        const uint8_t *p;
        SF_CALL_GOTO(sf_rd_bytes(&r, (size_t)ns * SESSION_BYTES, &p), done);
        for (uint64_t k = 0; k < ns; k++, p += SESSION_BYTES) {
            session x;
            x.start = (int64_t)sf_load_u64(p);
            x.end = (int64_t)sf_load_u64(p + 8);
            x.events = sf_load_u64(p + 16);
            x.lat = sf_load_u64(p + 24);
            uint32_t kr = sf_load_u32(p + 32);
            /* Only what processing can produce: a session of one event is
             * an instant, later sessions start more than gap after the end
             * of the previous one. */
            SF_CHECK_GOTO(x.start <= x.end && x.events >= (x.start < x.end ? 2u : 1u), SF_ERR_PARSE, done,
                          "sessions state: malformed session");
            SF_CHECK_GOTO(x.lat == 0 || !isnan(sf__from_order_key(x.lat)), SF_ERR_PARSE, done,
                          "sessions state: malformed latency");
            SF_CHECK_GOTO(kr < nkeys, SF_ERR_PARSE, done, "sessions state: group key %u of %llu", kr,
                          (unsigned long long)nkeys);
            SF_CHECK_GOTO(k == 0 || !within(us->last.end, x.start, s->gap), SF_ERR_PARSE, done,
                          "sessions state: sessions out of order or closer than the gap");
            used[kr] = 1;
            x.key = s->kmap[kr];
            SF_CALL_GOTO(push_session(us, &x), done);
        }
    }
    for (uint64_t i = 0; i < nkeys; i++)
        SF_CHECK_GOTO(used[i], SF_ERR_PARSE, done, "sessions state: group key %llu is not used",
                      (unsigned long long)i);
    SF_CHECK_GOTO(r.off == n, SF_ERR_PARSE, done, "sessions state: %zu trailing bytes", n - r.off);
done:
    free(used);
    return rc;
}

/* ---- merging encodings --------------------------------------------------------------------
 * encode(merge(decode(a), decode(b))) without building either state: both
 * encodings list their group keys and their users in byte order, so the
 * merge is a walk of two sorted sequences. Sessions refer to group keys by
 * their position in the union of both key lists while the users are
 * written (positions in the union compare as the key bytes do, which is
 * what end_wins needs), and are renumbered at the end to the keys some
 * session still ends with. Every check of decode is made on both inputs. */

typedef struct enc_in {
    sf_rd r;
    uint64_t skipped, nkeys, nusers, users_read;
    const uint8_t **kp;   /* the group keys */
    size_t *kl;
    uint32_t *kmap;       /* key -> its position in the union */
    uint8_t *kused;       /* key referenced by some session */
    const uint8_t *uk;    /* the current user: key, sessions */
    size_t ukl;
    uint64_t uns;
    const uint8_t *us;
    bool done;
} enc_in;

static void enc_fini(enc_in *e)
{
    free(e->kp);
    free(e->kl);
    free(e->kmap);
    free(e->kused);
}

static sf_status enc_open(const sessions_state *s, const uint8_t *p, size_t n, enc_in *e)
{
    memset(e, 0, sizeof *e);
    sf_rd_init(&e->r, p, n);
    uint8_t version, nby;
    int64_t gap;
    SF_CALL(sf_rd_u8(&e->r, &version));
    SF_CHECK(version == SESSIONS_FORMAT, SF_ERR_PARSE, "sessions state: unknown format %u", version);
    SF_CALL(sf_rd_u8(&e->r, &nby));
    SF_CHECK(nby == s->keys.nby, SF_ERR_PARSE, "sessions state: %u key columns, expected %d", nby, s->keys.nby);
    SF_CALL(sf_rd_i64(&e->r, &gap));
    SF_CHECK(gap == s->gap, SF_ERR_PARSE, "sessions state: gap %lld us, expected %lld", (long long)gap,
             (long long)s->gap);
    SF_CALL(sf_rd_u64(&e->r, &e->skipped));
    SF_CALL(sf_rd_u64(&e->r, &e->nkeys));
    SF_CHECK(e->nkeys <= (n - e->r.off) / 4, SF_ERR_PARSE, "sessions state: %llu group keys in %zu bytes",
             (unsigned long long)e->nkeys, n);
    size_t nk = e->nkeys ? (size_t)e->nkeys : 1;
    e->kp = malloc(nk * sizeof *e->kp);
    e->kl = malloc(nk * sizeof *e->kl);
    e->kmap = malloc(nk * sizeof *e->kmap);
    e->kused = calloc(nk, 1);
    SF_CHECK(e->kp && e->kl && e->kmap && e->kused, SF_ERR_NOMEM, "sessions: out of memory merging %llu keys",
             (unsigned long long)e->nkeys);
    for (uint64_t i = 0; i < e->nkeys; i++) {
        const char *k;
        SF_CALL(sf_rd_str(&e->r, &k, &e->kl[i]));
        e->kp[i] = (const uint8_t *)k;
        SF_CHECK(sf_agent_key_valid(s->keys.schema, s->keys.by_col, s->keys.nby, e->kp[i], e->kl[i]), SF_ERR_PARSE,
                 "agent state: malformed group key");
        SF_CHECK(i == 0 || bytes_cmp(e->kp[i - 1], e->kl[i - 1], e->kp[i], e->kl[i]) < 0, SF_ERR_PARSE,
                 "agent state: groups out of order");
    }
    SF_CALL(sf_rd_u64(&e->r, &e->nusers));
    SF_CHECK(e->nusers <= (n - e->r.off) / (USER_MIN_BYTES + SESSION_BYTES), SF_ERR_PARSE,
             "sessions state: %llu users in %zu bytes", (unsigned long long)e->nusers, n);
    return SF_OK;
}

/* The next user of e (e->done after the last), its sessions checked as
 * decode checks them. */
static sf_status enc_next_user(const sessions_state *s, enc_in *e)
{
    if (e->users_read == e->nusers) {
        SF_CHECK(e->r.off == e->r.n, SF_ERR_PARSE, "sessions state: %zu trailing bytes", e->r.n - e->r.off);
        for (uint64_t i = 0; i < e->nkeys; i++)
            SF_CHECK(e->kused[i], SF_ERR_PARSE, "sessions state: group key %llu is not used", (unsigned long long)i);
        e->done = true;
        return SF_OK;
    }
    const uint8_t *prev = e->uk;
    size_t prev_len = e->ukl;
    const char *k;
    SF_CALL(sf_rd_str(&e->r, &k, &e->ukl));
    e->uk = (const uint8_t *)k;
    SF_CHECK(sf_agent_key_valid(s->users.schema, s->users.by_col, s->users.nby, e->uk, e->ukl), SF_ERR_PARSE,
             "agent state: malformed group key");
    SF_CHECK(prev == NULL || bytes_cmp(prev, prev_len, e->uk, e->ukl) < 0, SF_ERR_PARSE,
             "agent state: groups out of order");
    size_t n = e->r.n;
    SF_CALL(sf_rd_u64(&e->r, &e->uns));
    SF_CHECK(e->uns >= 1 && e->uns <= (n - e->r.off) / SESSION_BYTES && e->uns <= UINT32_MAX / 4, SF_ERR_PARSE,
             "sessions state: user %llu has %llu sessions in %zu bytes", (unsigned long long)e->users_read,
             (unsigned long long)e->uns, n);
    SF_CALL(sf_rd_bytes(&e->r, (size_t)e->uns * SESSION_BYTES, &e->us));
    int64_t prev_end = 0;
    for (uint64_t j = 0; j < e->uns; j++) {
        const uint8_t *p = e->us + j * SESSION_BYTES;
        int64_t start = (int64_t)sf_load_u64(p), end = (int64_t)sf_load_u64(p + 8);
        uint64_t events = sf_load_u64(p + 16), lat = sf_load_u64(p + 24);
        uint32_t kr = sf_load_u32(p + 32);
        SF_CHECK(start <= end && events >= (start < end ? 2u : 1u), SF_ERR_PARSE, "sessions state: malformed session");
        SF_CHECK(lat == 0 || !isnan(sf__from_order_key(lat)), SF_ERR_PARSE, "sessions state: malformed latency");
        SF_CHECK(kr < e->nkeys, SF_ERR_PARSE, "sessions state: group key %u of %llu", kr,
                 (unsigned long long)e->nkeys);
        SF_CHECK(j == 0 || !within(prev_end, start, s->gap), SF_ERR_PARSE,
                 "sessions state: sessions out of order or closer than the gap");
        e->kused[kr] = 1;
        prev_end = end;
    }
    e->users_read++;
    return SF_OK;
}

/* The sessions of e's current user, their keys as union positions. */
static void enc_sessions(const enc_in *e, session *out)
{
    for (uint64_t j = 0; j < e->uns; j++) {
        const uint8_t *p = e->us + j * SESSION_BYTES;
        out[j].start = (int64_t)sf_load_u64(p);
        out[j].end = (int64_t)sf_load_u64(p + 8);
        out[j].events = sf_load_u64(p + 16);
        out[j].lat = sf_load_u64(p + 24);
        out[j].key = e->kmap[sf_load_u32(p + 32)];
    }
}

/* join() with group keys compared by their union positions. */
static void join_ranked(session *a, const session *b)
{
    if (b->start < a->start) a->start = b->start;
    a->events += b->events;
    bool wins = b->lat != a->lat ? b->lat > a->lat : b->key > a->key;
    if (b->end > a->end || (b->end == a->end && wins)) {
        a->end = b->end;
        a->lat = b->lat;
        a->key = b->key;
    }
}

/* Appends a user (key, sessions with union positions) to t. */
static sf_status put_user(sf_buf *t, const uint8_t *key, size_t klen, const session *x, size_t n, uint8_t *uused)
{
    SF_CALL(sf_buf_put_str(t, (const char *)key, klen));
    SF_CALL(sf_buf_reserve(t, 8 + n * SESSION_BYTES));
    uint8_t *p = t->data + t->len;
    sf_store_u64(p, n);
    p += 8;
    for (size_t j = 0; j < n; j++, p += SESSION_BYTES) {
        sf_store_u64(p, (uint64_t)x[j].start);
        sf_store_u64(p + 8, (uint64_t)x[j].end);
        sf_store_u64(p + 16, x[j].events);
        sf_store_u64(p + 24, x[j].lat);
        sf_store_u32(p + 32, x[j].key);
        uused[x[j].key] = 1;
    }
    t->len = (size_t)(p - t->data);
    return SF_OK;
}

static sf_status sessions_merge_encoded(void *scratch, const uint8_t *pa, size_t na, const uint8_t *pb, size_t nb,
                                        sf_buf *out)
{
    sessions_state *s = scratch;
    sf_status rc = SF_OK;
    enc_in in[2];
    memset(in, 0, sizeof in);
    sf_buf t;
    sf_buf_init(&t);
    const uint8_t **up = NULL;
    size_t *ul = NULL;
    uint8_t *uused = NULL;
    uint32_t *rank = NULL;
    session *xa = NULL, *xb = NULL, *xm = NULL;
    size_t xcap = 0;
    SF_CALL_GOTO(enc_open(s, pa, na, &in[0]), done);
    SF_CALL_GOTO(enc_open(s, pb, nb, &in[1]), done);
    /* The union of the key lists. */
    SF_CHECK_GOTO(in[0].nkeys + in[1].nkeys < UINT32_MAX, SF_ERR_PARSE, done, "sessions state: too many group keys");
    size_t nu_max = (size_t)(in[0].nkeys + in[1].nkeys);
    up = malloc((nu_max ? nu_max : 1) * sizeof *up);
    ul = malloc((nu_max ? nu_max : 1) * sizeof *ul);
    uused = calloc(nu_max ? nu_max : 1, 1);
    rank = malloc((nu_max ? nu_max : 1) * sizeof *rank);
    SF_CHECK_GOTO(up && ul && uused && rank, SF_ERR_NOMEM, done, "sessions: out of memory merging %zu keys", nu_max);
    uint32_t nu = 0;
    for (uint64_t i = 0, j = 0; i < in[0].nkeys || j < in[1].nkeys;) {
        int c = i >= in[0].nkeys   ? 1
                : j >= in[1].nkeys ? -1
                                   : bytes_cmp(in[0].kp[i], in[0].kl[i], in[1].kp[j], in[1].kl[j]);
        if (c <= 0) {
            up[nu] = in[0].kp[i];
            ul[nu] = in[0].kl[i];
            in[0].kmap[i++] = nu;
        }
        if (c >= 0) {
            up[nu] = in[1].kp[j];
            ul[nu] = in[1].kl[j];
            in[1].kmap[j++] = nu;
        }
        nu++;
    }
    /* The users, in byte order. */
    SF_CALL_GOTO(enc_next_user(s, &in[0]), done);
    SF_CALL_GOTO(enc_next_user(s, &in[1]), done);
    uint64_t nusers = 0;
    while (!in[0].done || !in[1].done) {
        int c = in[0].done   ? 1
                : in[1].done ? -1
                             : bytes_cmp(in[0].uk, in[0].ukl, in[1].uk, in[1].ukl);
        size_t need = (size_t)((c <= 0 ? in[0].uns : 0) + (c >= 0 ? in[1].uns : 0));
        if (need > xcap) {
            size_t cap = xcap ? xcap : 16;
            while (cap < need) cap *= 2;
            session *a = realloc(xa, cap * sizeof *a);
            if (a != NULL) xa = a;
            session *b = a != NULL ? realloc(xb, cap * sizeof *b) : NULL;
            if (b != NULL) xb = b;
            session *m = b != NULL ? realloc(xm, cap * sizeof *m) : NULL;
            if (m != NULL) xm = m;
            SF_CHECK_GOTO(a && b && m, SF_ERR_NOMEM, done, "sessions: out of memory merging %zu sessions", need);
            xcap = cap;
        }
        if (c != 0) {
            /* A user of one side only: its record as it is, the group
             * keys of its sessions renumbered to union positions. */
            enc_in *e = &in[c < 0 ? 0 : 1];
            size_t rec = 4 + e->ukl + 8 + (size_t)e->uns * SESSION_BYTES;
            SF_CALL_GOTO(sf_buf_reserve(&t, rec), done);
            uint8_t *p = t.data + t.len;
            memcpy(p, e->uk - 4, rec);
            uint8_t *q = p + 4 + e->ukl + 8;
            for (uint64_t j = 0; j < e->uns; j++, q += SESSION_BYTES) {
                uint32_t k = e->kmap[sf_load_u32(q + 32)];
                sf_store_u32(q + 32, k);
                uused[k] = 1;
            }
            t.len += rec;
        } else {
            /* The same user in both: the union of the lists, coalesced. */
            enc_sessions(&in[0], xa);
            enc_sessions(&in[1], xb);
            size_t m = 0, i = 0, j = 0;
            while (i < in[0].uns || j < in[1].uns) {
                session next = j >= in[1].uns || (i < in[0].uns && xa[i].start <= xb[j].start) ? xa[i++] : xb[j++];
                if (m > 0 && within(xm[m - 1].end, next.start, s->gap))
                    join_ranked(&xm[m - 1], &next);
                else
                    xm[m++] = next;
            }
            SF_CALL_GOTO(put_user(&t, in[0].uk, in[0].ukl, xm, m, uused), done);
        }
        nusers++;
        if (c <= 0) SF_CALL_GOTO(enc_next_user(s, &in[0]), done);
        if (c >= 0) SF_CALL_GOTO(enc_next_user(s, &in[1]), done);
    }
    /* The keys some session ends with, renumbered. */
    uint32_t nref = 0;
    for (uint32_t k = 0; k < nu; k++) rank[k] = uused[k] ? nref++ : UINT32_MAX;
    SF_CALL_GOTO(sf_buf_put_u8(out, SESSIONS_FORMAT), done);
    SF_CALL_GOTO(sf_buf_put_u8(out, (uint8_t)s->keys.nby), done);
    SF_CALL_GOTO(sf_buf_put_i64(out, s->gap), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, in[0].skipped + in[1].skipped), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, nref), done);
    for (uint32_t k = 0; k < nu; k++)
        if (uused[k]) SF_CALL_GOTO(sf_buf_put_str(out, (const char *)up[k], ul[k]), done);
    SF_CALL_GOTO(sf_buf_put_u64(out, nusers), done);
    size_t at = out->len;
    SF_CALL_GOTO(sf_buf_append(out, t.data, t.len), done);
    /* Walk the users just copied and put the final key numbers in. */
    for (uint64_t u = 0; u < nusers; u++) {
        uint8_t *p = out->data + at;
        size_t klen = sf_load_u32(p);
        p += 4 + klen;
        uint64_t ns = sf_load_u64(p);
        p += 8;
        for (uint64_t j = 0; j < ns; j++, p += SESSION_BYTES) sf_store_u32(p + 32, rank[sf_load_u32(p + 32)]);
        at = (size_t)(p - out->data);
    }
done:
    enc_fini(&in[0]);
    enc_fini(&in[1]);
    sf_buf_fini(&t);
    free(up);
    free(ul);
    free(uused);
    free(rank);
    free(xa);
    free(xb);
    free(xm);
    return rc;
}

const sf__merge_encoded_fn sf__sessions_merge_encoded = sessions_merge_encoded;

/* ---- report ---------------------------------------------------------------------------- */

typedef struct bucket_ref {
    uint32_t grank;   /* rank of the group's printed key */
    int64_t bucket;   /* start of the bucket of the session end */
    uint8_t abandoned;
} bucket_ref;

static int bucket_cmp(const void *x, const void *y)
{
    const bucket_ref *a = x, *b = y;
    if (a->grank != b->grank) return a->grank < b->grank ? -1 : 1;
    if (a->bucket != b->bucket) return a->bucket < b->bucket ? -1 : 1;
    return (int)a->abandoned - (int)b->abandoned;
}

static inline bool abandoned(const sessions_state *s, const session *x) { return x->lat != 0 && x->lat >= s->slow; }

/* Start of the bucket holding t (floor division). */
static int64_t bucket_of(int64_t t, int64_t b)
{
    int64_t q = t / b;
    if (t % b != 0 && t < 0) q--;
    return q * b;
}

/* Writes the buckets of refs[0..n) (one group) as an object. */
static void write_buckets(sf_json *j, const bucket_ref *refs, size_t n)
{
    sf_json_obj_begin(j);
    for (size_t i = 0; i < n;) {
        size_t e = i;
        uint64_t sessions = 0, ab = 0;
        while (e < n && refs[e].bucket == refs[i].bucket) {
            sessions++;
            ab += refs[e].abandoned;
            e++;
        }
        char iso[48];
        size_t len = sf_timestamp_format(refs[i].bucket, iso, sizeof iso);
        sf_json_keyn(j, iso, len);
        sf_json_obj_begin(j);
        sf_json_key(j, "sessions");
        sf_json_uint(j, sessions);
        sf_json_key(j, "abandoned");
        sf_json_uint(j, ab);
        sf_json_key(j, "rate");
        sf_json_num(j, (double)ab / (double)sessions);
        sf_json_obj_end(j);
        i = e;
    }
    sf_json_obj_end(j);
}

static sf_status sessions_report(const void *state, sf_json *j)
{
    const sessions_state *s = state;
    SF_CALL(settle_const(s));
    sf_status rc = SF_OK;
    sf_buf text;
    sf_buf_init(&text);
    uint32_t *order = NULL, *grank = NULL, *rank_group = NULL;
    size_t *toff = NULL, *tlen = NULL;
    bucket_ref *refs = NULL;

    uint64_t nsess = 0, events = 0, ab = 0, dur_lo = 0, dur_hi = 0;
    for (uint32_t u = 0; u < s->uused; u++)
        for (uint32_t k = 0; k < s->u[u].n; k++) {
            const session *x = SES(&s->u[u], k);
            nsess++;
            events += x->events;
            ab += abandoned(s, x);
            /* The sum of durations in 128 bits: exact whatever the span. */
            uint64_t d = (uint64_t)x->end - (uint64_t)x->start;
            dur_lo += d;
            dur_hi += dur_lo < d;
        }

    /* Printed-key ranks of the groups (equal texts share a rank). */
    SF_CALL_GOTO(sf__groups_text_order(&s->keys, &text, &order, &toff, &tlen), done);
    if (s->keys.n > 0) {
        grank = malloc((size_t)s->keys.n * sizeof *grank);
        rank_group = malloc((size_t)s->keys.n * sizeof *rank_group);
        SF_CHECK_GOTO(grank != NULL && rank_group != NULL, SF_ERR_NOMEM, done,
                      "sessions: out of memory reporting %u groups", s->keys.n);
        uint32_t rk = 0;
        rank_group[0] = order[0];
        for (uint32_t i = 0; i < s->keys.n; i++) {
            if (i > 0 && bytes_cmp(text.data + toff[order[i - 1]], tlen[order[i - 1]], text.data + toff[order[i]],
                                   tlen[order[i]]) != 0)
                rank_group[++rk] = order[i];
            grank[order[i]] = rk;
        }
    }
    if (nsess > 0) {
        refs = malloc((size_t)nsess * sizeof *refs);
        SF_CHECK_GOTO(refs != NULL, SF_ERR_NOMEM, done, "sessions: out of memory reporting %llu sessions",
                      (unsigned long long)nsess);
    }
    size_t nr = 0;
    for (uint32_t u = 0; u < s->uused; u++)
        for (uint32_t k = 0; k < s->u[u].n; k++) {
            const session *x = SES(&s->u[u], k);
            refs[nr].grank = grank[x->key];
            refs[nr].bucket = bucket_of(x->end, s->bucket);
            refs[nr].abandoned = abandoned(s, x);
            nr++;
        }
    if (nr > 0) qsort(refs, nr, sizeof *refs, bucket_cmp);

    double n = (double)nsess;
    sf_json_obj_begin(j);
    sf_json_key(j, "gap_us");
    sf_json_int(j, s->gap);
    sf_json_key(j, "sessions");
    sf_json_uint(j, nsess);
    sf_json_key(j, "events");
    sf_json_uint(j, events);
    sf_json_key(j, "mean_events");
    sf_json_num(j, (double)events / n);
    sf_json_key(j, "mean_duration_s");
    sf_json_num(j, ((double)dur_hi * 0x1p64 + (double)dur_lo) / n / 1e6);
    sf_json_key(j, "abandoned");
    sf_json_uint(j, ab);
    sf_json_key(j, "abandon_rate");
    sf_json_num(j, (double)ab / n);
    sf_json_key(j, "bucket_us");
    sf_json_int(j, s->bucket);
    if (s->keys.nby == 0) {
        sf_json_key(j, "buckets");
        write_buckets(j, refs, nr);
    } else {
        sf_json_key(j, "groups");
        sf_json_obj_begin(j);
        for (size_t i = 0; i < nr;) {
            size_t e = i;
            while (e < nr && refs[e].grank == refs[i].grank) e++;
            /* Keys print uniquely (see sf_agent_key_text); should two ever
             * print alike, their sessions are reported together. */
            uint32_t g = rank_group[refs[i].grank];
            sf_json_keyn(j, (const char *)text.data + toff[g], tlen[g]);
            sf_json_obj_begin(j);
            sf_json_key(j, "buckets");
            write_buckets(j, refs + i, e - i);
            sf_json_obj_end(j);
            i = e;
        }
        sf_json_obj_end(j);
    }
    sf_json_key(j, "skipped");
    sf_json_uint(j, s->skipped);
    sf_json_obj_end(j);
    rc = j->rc;
done:
    free(order);
    free(grank);
    free(rank_group);
    free(toff);
    free(tlen);
    free(refs);
    sf_buf_fini(&text);
    return rc;
}

/* ---- statistics ---------------------------------------------------------------------------- */

static sf_status sessions_stat(const void *state, const uint8_t *key, size_t keylen, const char *name,
                               double *out)
{
    const sessions_state *s = state;
    SF_CALL(settle_const(s));
    int what = strcmp(name, "count") == 0      ? 0
               : strcmp(name, "sessions") == 0  ? 1
               : strcmp(name, "abandoned") == 0 ? 2
               : strcmp(name, "rows") == 0      ? 3
                                                : -1;
    SF_CHECK(what >= 0, SF_ERR_ARG,
             "sessions: no statistic '%s' (sessions has rows, count, sessions, abandoned)", name);
    uint32_t g = SF__NO_GROUP;
    if (key != NULL) {
        g = sf__groups_lookup(&s->keys, key, keylen);
        SF_CHECK(g != SF__NO_GROUP, SF_ERR_ARG, "sessions: unknown group key");
    }
    uint64_t events = 0, nsess = 0, ab = 0;
    for (uint32_t u = 0; u < s->uused; u++)
        for (uint32_t k = 0; k < s->u[u].n; k++) {
            const session *x = SES(&s->u[u], k);
            if (g != SF__NO_GROUP && x->key != g) continue;
            nsess++;
            events += x->events;
            ab += abandoned(s, x);
        }
    /* A key that no session ends with is unknown, as it is in a decoded state. */
    SF_CHECK(g == SF__NO_GROUP || nsess > 0, SF_ERR_ARG, "sessions: unknown group key");
    /* "count" is the events; "rows" adds the skipped rows (rows seen, as
     * for every agent), which belong to no group. */
    *out = what == 0   ? (double)events
           : what == 1 ? (double)nsess
           : what == 2 ? (double)ab
                       : (double)(events + (g == SF__NO_GROUP ? s->skipped : 0));
    return SF_OK;
}

const sf_agent_ops sf__agent_sessions = {
    .abi_version = SF_AGENT_ABI_VERSION,
    .name = "sessions",
    .aspect = "user_experience",
    .state_size = sizeof(sessions_state),
    .check = sessions_check,
    .init = sessions_init,
    .process = sessions_process,
    .merge = sessions_merge,
    .encode = sessions_encode,
    .decode = sessions_decode,
    .report = sessions_report,
    .destroy = sessions_destroy,
    .columns = sessions_columns,
    .stat = sessions_stat,
};
