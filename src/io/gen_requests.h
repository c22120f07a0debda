/* Internal: the synthetic `requests` generator (a web-service request log).
 *
 * Row i is a pure function of (seed, i, zipf, users, rows, incidents): every
 * row draws its random numbers from a counter-based stream keyed by
 * (seed, i), and every field uses fixed positions in that stream. So any row
 * range can be generated on its own (on any rank, in any batch size) and gives
 * the same values as a single pass, and a projection never changes the values
 * of the columns that are loaded. With input.incidents off, rows do not depend
 * on input.rows at all; with it on, the incident windows are fractions of the
 * span (see gen_requests.c). */
#ifndef SF_IO_GEN_REQUESTS_H
#define SF_IO_GEN_REQUESTS_H

#include <stdint.h>

#include "shardflow/batch.h"
#include "shardflow/io.h"

/* Column indices of the schema, in order. */
enum {
    SF__GEN_TIMESTAMP = 0,
    SF__GEN_SERVICE,
    SF__GEN_ENDPOINT,
    SF__GEN_REGION,
    SF__GEN_USER_ID,
    SF__GEN_CLIENT_IP,
    SF__GEN_STATUS,
    SF__GEN_LATENCY_MS,
    SF__GEN_BYTES,
    SF__GEN_REVENUE,
    SF__GEN_NCOLS
};

/* With input.incidents on, the schema has one more column at the end:
 * `incident` (int64), the id of the incident that changed the row, 0 for an
 * untouched row. It is the per-row ground truth, meant for evaluations only. */
#define SF__GEN_INCIDENT SF__GEN_NCOLS
#define SF__GEN_NCOLS_INCIDENTS (SF__GEN_NCOLS + 1)

/* 2026-01-01T00:00:00Z in microseconds since the epoch: the first row's time. */
#define SF__GEN_EPOCH_US INT64_C(1767225600000000)

/* Fills s (initialised by the caller, empty) with the requests schema
 * without the incident column (the schema of input.incidents: false). */
sf_status sf__gen_requests_schema(sf_schema *s);
/* The schema of configuration cfg: the one above, plus `incident` when
 * cfg->incidents is set. */
sf_status sf__gen_requests_schema_of(const sf_input_config *cfg, sf_schema *s);

/* ---- injected incidents -------------------------------------------------
 * Five incidents, each in a window of the span T = rows ms; a window is
 * [first_row, end_row) in row indices, which are also millisecond offsets
 * from SF__GEN_EPOCH_US (a row's jitter stays below 1 ms), and both ends are
 * whole minutes, so windows align with one-minute buckets (a window that
 * rounds to less than a minute lasts one minute). Keys (services,
 * regions, addresses) are picked among fixed candidates by hashes of the
 * seed. At most one incident changes a row; the first that applies in the
 * order 3, 5, 1, 4, 2 wins. */

#define SF__GEN_NINCIDENTS 5
/* Incidents need ten minutes of rows, and enough users for the slow set. */
#define SF__GEN_INCIDENT_MIN_ROWS UINT64_C(600000)
#define SF__GEN_INCIDENT_MIN_USERS UINT64_C(1000)

enum {
    SF__INC_LATENCY = 1,     /* latency_regression (performance) */
    SF__INC_ERRORS = 2,      /* error_burst (technical) */
    SF__INC_CREDENTIALS = 3, /* credential_stuffing (security) */
    SF__INC_CHECKOUT = 4,    /* checkout_failure (business) */
    SF__INC_ABANDON = 5      /* slow_abandonment (user_experience) */
};

typedef struct sf__gen_incident {
    int id;                /* 1..5 */
    const char *kind;      /* "latency_regression", ... */
    const char *aspect;    /* "performance", ... */
    const char *effect;    /* a short description for the ground truth */
    uint64_t first_row;    /* window [first_row, end_row) */
    uint64_t end_row;
} sf__gen_incident;

/* The resolved incidents of a configuration. Strings are static. */
typedef struct sf__gen_incidents {
    bool on;                            /* cfg->incidents */
    uint64_t rows;
    sf__gen_incident inc[SF__GEN_NINCIDENTS]; /* inc[k].id == k + 1 */
    int s1, r1;                         /* 1: service and region (indices) */
    int s2;                             /* 2: service */
    int login_service, login_endpoint;  /* 3: service and endpoint (verb index) */
    int r4;                             /* 4: region of checkout */
    int r5;                             /* 5: region */
    const char *s1_name, *r1_name, *s2_name, *r4_name, *r5_name;
    const char *login_service_name;
    char login_endpoint_name[48];
    char ip[3][16];                     /* 3: "203.0.113.N", N distinct in 1..254 */
    uint64_t silence_first, silence_end; /* 5: rows where the slow set is silent */
    uint64_t slow_key;                  /* 5: hash key of the slow set */
    uint64_t slow_threshold;            /* 5: a user is in the set if its hash is below */
} sf__gen_incidents;

/* Validates cfg like sf__gen_requests_model_create (with incidents on, also
 * rows >= SF__GEN_INCIDENT_MIN_ROWS and users >= SF__GEN_INCIDENT_MIN_USERS)
 * and resolves the incidents' windows and keys. With cfg->incidents off,
 * out->on is false and the rest is zero. Not collective. */
sf_status sf__gen_requests_incidents(const sf_input_config *cfg, sf__gen_incidents *out);
/* Whether user (an id in 1..users) belongs to the slow set of incident 5:
 * a hash of (seed, user) below a threshold, about 4% of users. */
bool sf__gen_requests_slow_user(const sf__gen_incidents *p, uint64_t user);

/* The sampling tables of one configuration (Zipf tables of services,
 * endpoints, regions, users and client addresses, status mixes) plus a small
 * cache of dictionary codes. Building it costs about a millisecond at the
 * defaults (users = 100000); reuse it for many ranges. A model may be used by
 * one thread at a time (the code cache is mutable); make one per thread. */
typedef struct sf__gen_model sf__gen_model;

/* Validates cfg (generator name, users >= 1, zipf finite and >= 0, and the
 * incident limits above) and builds the model. On failure *out is NULL and
 * nothing needs freeing. */
sf_status sf__gen_requests_model_create(const sf_input_config *cfg, sf__gen_model **out);
void sf__gen_requests_model_destroy(sf__gen_model **m);
/* The dictionary every fill's column col is a copy of (the client
 * addresses), or NULL for a column without one. Lives as long as m. */
const sf_dict *sf__gen_requests_stable_dict(const sf__gen_model *m, int col);

/* Clears b and fills it with rows [first_row, first_row + nrows); nrows must
 * not exceed b->cap. b must have the schema of the model's configuration
 * (sf__gen_requests_schema_of). Columns with
 * want[c] == 0 (or not loaded in b) are neither generated nor written; want
 * may be NULL (all). Strings are interned into the columns' dictionaries;
 * revenue and bytes carry nulls (validity arrays). Sets b->first_row. */
sf_status sf__gen_requests_fill(sf__gen_model *m, uint64_t first_row, uint64_t nrows,
                                const uint8_t *want, sf_batch *b);

/* The same as a model_create + fill + destroy: convenient for one range; a
 * caller that generates many ranges should keep a model. */
sf_status sf__gen_requests_range(const sf_input_config *cfg, uint64_t first_row, uint64_t nrows,
                                 const uint8_t *want, sf_batch *b);
/* The resolved incidents of a model (see sf__gen_requests_incidents). */
const sf__gen_incidents *sf__gen_requests_model_incidents(const sf__gen_model *m);

#endif
