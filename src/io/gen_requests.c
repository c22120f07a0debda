/* The synthetic `requests` generator: a web-service request log.
 *
 * Content (cfg->zipf is the exponent of every Zipf-distributed key; 0 makes
 * them uniform):
 *  - timestamp: row i at 2026-01-01T00:00:00Z + i ms + a jitter in [0, 1) ms,
 *    so timestamps strictly increase;
 *  - service: 12 services, Zipf in the order of services[] below (search is
 *    the most common); endpoint: "/api/<service>/<verb>", 3 to 8 per service,
 *    Zipf within the service; region: 6 regions, Zipf;
 *  - user_id: Zipf over 1..cfg->users (id 1 the most common); client_ip:
 *    Zipf over 50000 addresses "10.a.b.c" (popularity rank scattered over the
 *    address space by a bijection);
 *  - status: 200 about 84%, then 201, 204, 301, 304, 400, 401, 403, 404, 429,
 *    500, 502, 503, with per-service tweaks (auth refuses more, payments sees
 *    more upstream errors, catalog answers more 304s, ...);
 *  - latency_ms: lognormal, sigma 0.6, median per service (20 to 300 ms)
 *    times a status factor, rounded to 3 decimals;
 *  - bytes: lognormal integer (sigma 1.0 around a per-service median for 2xx,
 *    0.3 around small medians for errors); null for 204 and 304;
 *  - revenue: for 2xx checkout and payments requests a lognormal amount
 *    (median 45, sigma 0.9) rounded to cents, at least 0.01; null otherwise.
 *
 * Randomness is counter-based. Row i has a key mix64(seed_key + i * GOLDEN)
 * (the i-th output of a splitmix64 stream), and draw k of that row is
 * mix64(key + (k + 1) * GOLDEN). Every field reads fixed draw numbers, so a
 * row is a pure function of (seed, i, options): ranges can be generated in any
 * order and size, and leaving a column out (projection) changes nothing else.
 *
 * Categorical fields are sampled from cumulative tables with 63-bit integer
 * thresholds and a guide table (Chen and Asau's cutpoint method): the top bits
 * of the draw pick a bin whose answer lies between two guide entries, found by
 * a short bisection; the expected cost is O(1) and the result is exact (no
 * floating-point boundary cases). User ids above SF__GEN_MAX_TABLE use
 * Hoermann and Derflinger's rejection-inversion sampler instead, which needs
 * no table (but costs some 60 ns per row more). Lognormal values come from a
 * tabulated quantile function (see lntab). No allocation happens per row or
 * per batch.
 *
 * Strings are dictionary-encoded directly: the model keeps, per vocabulary
 * entry, the dictionary code assigned in the current fill and the fill's stamp,
 * so an entry is interned (hashed) once per batch and then reused.
 *
 * Incidents (input.incidents: true). Five incidents are injected into the
 * natural rows, each in a window [a T, b T) of the span T = rows ms, both
 * ends rounded down to whole minutes:
 *  1. latency_regression [0.25, 0.35): latency_ms x 5 for the rows of one
 *     mid-traffic service S1 (cart, recommendations, profile, inventory or
 *     payments) in one of the 3 busiest regions R1;
 *  2. error_burst [0.50, 0.55): each row of a busy service S2 (not S1, not
 *     checkout, not auth; at least 1% of the traffic, so that a 5-minute
 *     window holds thousands of its rows) becomes status 503 with probability
 *     0.5, with the latency and bytes of a 503;
 *  3. credential_stuffing [0.10, 0.30): each row becomes, with probability
 *     0.03, a login attempt: the login endpoint of the service that has one
 *     (auth), a uniformly random user, one of 3 addresses of 203.0.113.0/24
 *     (natural addresses are all in 10.0.0.0/8), status 401 with probability
 *     0.95 else 200, latency and bytes from the model;
 *  4. checkout_failure [0.65, 0.75): each checkout row of a region R4 (not
 *     R1) becomes status 500 with probability 0.9 (so it has no revenue);
 *  5. slow_abandonment [0.80, 0.88): every row of a user of the slow set A
 *     (a hash of (seed, user) selects about 4% of users) moves to a region R5
 *     (not R1, not R4) with latency 3000 ms x lognormal(sigma 0.3); then for
 *     10 minutes from 0.88 T the rows of A's users go to the next user id not
 *     in A, so those users fall silent right after a slow page (these
 *     reassigned rows are not marked: the marked rows are the slow ones).
 * A window shorter than a minute after rounding (a span under 20 minutes) is
 * extended to one minute, so that no incident vanishes.
 * The first incident that applies to a row wins, in the order 3, 5, 1, 4, 2;
 * a changed row carries its id in the `incident` column, others 0. Every
 * decision reads further fixed draws of the row's stream (D_INC_*) or a hash
 * of (seed, user), so rows stay a pure function of (seed, i, options), and
 * with incidents off nothing changes: the same draws give the same rows. */
#define _POSIX_C_SOURCE 200809L
#include "io/gen_requests.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/reader_impl.h"

#define GOLDEN UINT64_C(0x9e3779b97f4a7c15)

/* Tables are used for vocabularies up to this many entries (12 MiB of table
 * at the limit); beyond it user ids come from rejection-inversion. */
#define SF__GEN_MAX_TABLE ((uint64_t)1 << 20)

#define NSERVICES 12
#define SERVICE_CHECKOUT 6   /* indices in services[] */
#define SERVICE_PAYMENTS 8
#define NREGIONS 6
#define NSTATUS 13
#define NIPS 50000
#define MAX_VERBS 8
#define LATENCY_SIGMA 0.6
#define BYTES_SIGMA 1.0
#define BYTES_ERROR_SIGMA 0.3
#define REVENUE_MEDIAN 45.0
#define REVENUE_SIGMA 0.9

/* Draw numbers of the fields (see the file comment). */
enum {
    D_JITTER = 0,
    D_SERVICE,
    D_ENDPOINT,
    D_REGION,
    D_USER,
    D_IP,
    D_STATUS,
    D_LATENCY,
    D_BYTES,
    D_REVENUE,
    D_USER_RETRY   /* rejection-inversion retries use D_USER_RETRY + attempt */
};
#define MAX_RETRIES 64
/* Draws of the incidents, after the retries. */
enum {
    D_INC_LOGIN = D_USER_RETRY + MAX_RETRIES, /* 3: is the row a login attempt */
    D_INC_LOGIN_USER,
    D_INC_LOGIN_IP,
    D_INC_LOGIN_STATUS,
    D_INC_CHECKOUT,                           /* 4: does the checkout row fail */
    D_INC_ERRORS,                             /* 2: does the row become a 503 */
    D_INC_SLOW                                /* 5: the slow latency factor */
};

static const int status_codes[NSTATUS] = {200, 201, 204, 301, 304, 400, 401,
                                          403, 404, 429, 500, 502, 503};
/* Base shares of the status codes, in parts per 10000 (normalised anyway). */
static const double status_base[NSTATUS] = {8400, 300, 200, 50, 250, 150, 100,
                                            50,   200, 80,  80, 40, 50};

typedef struct status_tweak {
    int status;
    double mult;
} status_tweak;

typedef struct service_spec {
    const char *name;
    double latency_median_ms;
    double bytes_median;
    const char *verbs[MAX_VERBS + 1];   /* NULL-terminated */
    status_tweak tweaks[4];              /* status 0 ends the list */
} service_spec;

/* In order of popularity: with Zipf keys the first is the most common. */
static const service_spec services[NSERVICES] = {
    {"search", 45, 12000, {"query", "suggest", "filters", NULL}, {{304, 3}, {404, 1.5}}},
    {"catalog", 30, 18000, {"list", "item", "categories", "brands", "prices", "images", NULL},
     {{304, 4}, {404, 2}}},
    {"auth", 25, 900, {"login", "token", "refresh", "logout", "verify", NULL},
     {{401, 6}, {403, 3}, {201, 2}}},
    {"cart", 35, 3500, {"view", "add", "remove", "update", NULL}, {{201, 2}, {204, 2}}},
    {"recommendations", 120, 9000,
     {"home", "similar", "trending", "personalized", "recent", "bundles", "upsell", "cross-sell", NULL},
     {{503, 3}, {204, 3}}},
    {"profile", 20, 2500, {"get", "update", "addresses", "preferences", NULL}, {{304, 2}, {401, 2}}},
    {"checkout", 180, 4000, {"start", "confirm", "status", "cancel", NULL}, {{201, 4}, {500, 1.5}}},
    {"inventory", 40, 700, {"check", "reserve", "release", NULL}, {{404, 2}, {429, 2}}},
    {"payments", 300, 1200, {"authorize", "capture", "refund", "methods", "status", NULL},
     {{502, 3}, {503, 2}, {201, 3}, {400, 2}}},
    {"shipping", 90, 2000, {"quote", "track", "label", "carriers", NULL}, {{502, 2}}},
    {"reviews", 50, 7000, {"list", "create", "helpful", "report", "summary", NULL},
     {{304, 3}, {201, 1.5}}},
    {"notifications", 60, 1500,
     {"list", "subscribe", "unsubscribe", "mark-read", "send", "preferences", "digest", NULL},
     {{204, 6}, {429, 3}}},
};

static const char *const regions[NREGIONS] = {"us-east", "us-west", "eu-west",
                                              "eu-central", "ap-south", "ap-northeast"};

/* A discrete distribution over 0..n-1: thr[k] = P(X <= k) * 2^63 (the last
 * is 2^63), and guide[j] = the least k with thr[k] > j << (63 - gbits), for
 * j = 0..2^gbits (guide[2^gbits] = n - 1). A draw x (63 bits) lies in guide
 * bin j = x >> (63 - gbits) and its answer in [guide[j], guide[j + 1]]. The
 * guide has at most 4096 entries, so it and the head of a Zipf table stay in
 * cache; only draws in the long tail search (by bisection) colder memory.
 * uniform tables need neither array. */
typedef struct dtab {
    uint32_t n;
    int gbits;
    bool uniform;
    uint64_t *thr;
    uint32_t *guide;
} dtab;

/* Hoermann-Derflinger rejection-inversion for Zipf over 1..n, exponent s > 0. */
typedef struct ri_zipf {
    double n, s, hx1, hn, sq;
} ri_zipf;

/* Quantile function of a lognormal with median 1: q(u) = exp(sigma * z(u)),
 * z the standard normal quantile, tabulated at u = j / LN_BINS and
 * interpolated linearly; the two outermost bins (probability 2 / LN_BINS)
 * are computed exactly. One uniform draw per value and no libm call on the
 * common path (Box-Muller costs a log, a sqrt, a sin/cos and an exp). */
#define LN_BITS 12
#define LN_BINS (1u << LN_BITS)
typedef struct lntab {
    double sigma;
    double q[LN_BINS + 1];
} lntab;

/* What a (service, status) pair implies for the numeric fields. */
typedef struct outcome {
    double latency_median;   /* ms: the service's median times a status factor */
    double bytes_median;
    const struct lntab *bytes_ln;
    bool bytes_null;         /* 204 and 304 carry no body */
    bool revenue;            /* a successful (2xx) checkout or payments request */
} outcome;

struct sf__gen_model {
    uint64_t seed_key;
    sf__gen_incidents inc;          /* inc.on false: no incidents */
    uint64_t win_lo[SF__GEN_NINCIDENTS + 1], win_hi[SF__GEN_NINCIDENTS + 1]; /* windows, then the silence */
    uint32_t login_ep;              /* global endpoint index of incident 3's endpoint */
    uint64_t free_user;             /* a user outside the slow set (the substitutes' last resort) */
    uint8_t st_200, st_401, st_500, st_503; /* indices in status_codes */
    lntab ln_slow;
    uint64_t users;
    double zipf;
    bool users_table;               /* else rejection-inversion (or uniform) */
    dtab service_tab;
    dtab endpoint_tab[NSERVICES];
    dtab region_tab;
    dtab status_tab[NSERVICES];
    dtab ip_tab;
    dtab user_tab;
    ri_zipf user_ri;
    lntab ln_latency, ln_bytes_ok, ln_bytes_other, ln_revenue;
    uint8_t service_len[NSERVICES], region_len[NREGIONS];
    outcome out[NSERVICES][NSTATUS];
    uint32_t ep_base[NSERVICES + 1]; /* global endpoint index of service s's first */
    char (*ep_name)[48];
    uint8_t *ep_len;
    char (*ip_name)[16];
    uint8_t *ip_len;
    /* Every client address, natural ones in index order (code = index),
     * then incident 3's; a fill copies it into its batch. */
    sf_dict ip_dict;
    uint32_t inc_ip_code[3];
};

static inline uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

static inline uint64_t draw(uint64_t key, int k) { return mix64(key + (uint64_t)(k + 1) * GOLDEN); }

/* round() for 0 <= x < 2^62, without a libm call (halves round up). */
static inline double round_pos(double x) { return (double)(int64_t)(x + 0.5); }

/* Uniform in [0, 1). */
static inline double u01(uint64_t x) { return (double)(x >> 11) * 0x1p-53; }

/* ---- discrete tables ---------------------------------------------------- */

static void dtab_fini(dtab *t)
{
    free(t->thr);
    free(t->guide);
    memset(t, 0, sizeof *t);
}

/* Builds a table from n positive weights (w == NULL: Zipf weights k^-s for
 * k = 1..n, s = 0 being uniform). */
static sf_status dtab_build(dtab *t, uint32_t n, const double *w, double s)
{
    memset(t, 0, sizeof *t);
    SF_CHECK(n >= 1, SF_ERR_INTERNAL, "empty distribution table");
    t->n = n;
    if (w == NULL && s == 0) {
        t->uniform = true;
        return SF_OK;
    }
    int gbits = 6;
    while (gbits < 20 && ((uint64_t)1 << gbits) < (uint64_t)n * 2) gbits++;
    t->gbits = gbits;
    t->thr = malloc(sizeof *t->thr * n);
    t->guide = malloc(sizeof *t->guide * (((size_t)1 << gbits) + 1));
    double *cum = malloc(sizeof *cum * n);
    if (t->thr == NULL || t->guide == NULL || cum == NULL) {
        free(cum);
        dtab_fini(t);
        SF_CHECK(false, SF_ERR_NOMEM, "out of memory (generator table of %u entries)", n);
    }
    double total = 0;
    for (uint32_t k = 0; k < n; k++) {
        total += w ? w[k] : pow((double)(k + 1), -s);
        cum[k] = total;
    }
    for (uint32_t k = 0; k < n; k++) {
        double p = cum[k] / total;
        uint64_t v = p >= 1.0 ? (UINT64_C(1) << 63) : (uint64_t)(p * 0x1p63);
        if (k > 0 && v < t->thr[k - 1]) v = t->thr[k - 1];
        t->thr[k] = v;
    }
    free(cum);
    /* The last threshold is exactly 2^63: every 63-bit draw is below it. */
    t->thr[n - 1] = UINT64_C(1) << 63;
    uint32_t k = 0;
    for (uint64_t j = 0; j < ((uint64_t)1 << gbits); j++) {
        uint64_t lo = j << (63 - gbits);
        while (t->thr[k] <= lo) k++;
        t->guide[j] = k;
    }
    t->guide[(size_t)1 << gbits] = n - 1;
    return SF_OK;
}

/* Index (0-based) drawn from t with the random bits x. */
static inline uint32_t dtab_sample(const dtab *t, uint64_t x)
{
    if (t->uniform) return (uint32_t)(((x >> 32) * t->n) >> 32);
    x >>= 1;
    uint64_t j = x >> (63 - t->gbits);
    uint32_t lo = t->guide[j], hi = t->guide[j + 1];
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->thr[mid] > x) hi = mid;
        else lo = mid + 1;
    }
    return lo;
}

/* dtab_sample(t, draw(key[k], d)) for k < n (n <= BLOCK), the same values,
 * in three passes over the block (guide bins, their bounds, the searches),
 * so that the loads of different draws, which miss the cache for a table
 * of many entries (users, addresses), overlap instead of waiting on each
 * other's branches. */
#define BLOCK_MAX 512

static void dtab_sample_block(const dtab *t, const uint64_t *key, int d, size_t n, uint32_t *out)
{
    if (t->uniform) {
        for (size_t k = 0; k < n; k++) out[k] = dtab_sample(t, draw(key[k], d));
        return;
    }
    uint64_t x[BLOCK_MAX];
    uint32_t lo[BLOCK_MAX], hi[BLOCK_MAX];
    const int sh = 63 - t->gbits;
    const uint32_t *guide = t->guide;
    const uint64_t *thr = t->thr;
    for (size_t k = 0; k < n; k++) {
        x[k] = draw(key[k], d) >> 1;
        __builtin_prefetch(&guide[x[k] >> sh]);
    }
    for (size_t k = 0; k < n; k++) {
        uint64_t j = x[k] >> sh;
        lo[k] = guide[j];
        hi[k] = guide[j + 1];
        __builtin_prefetch(&thr[lo[k] + (hi[k] - lo[k]) / 2]);
    }
    for (size_t k = 0; k < n; k++) {
        uint32_t a = lo[k], b = hi[k];
        const uint64_t v = x[k];
        while (a < b) {
            uint32_t mid = a + (b - a) / 2;
            if (thr[mid] > v) b = mid;
            else a = mid + 1;
        }
        out[k] = a;
    }
}

/* ---- rejection-inversion Zipf ------------------------------------------- */

static double ri_helper1(double x) { return fabs(x) > 1e-8 ? log1p(x) / x : 1 - x * (0.5 - x * (1.0 / 3 - 0.25 * x)); }
static double ri_helper2(double x)
{
    return fabs(x) > 1e-8 ? expm1(x) / x : 1 + x * 0.5 * (1 + x * (1.0 / 3) * (1 + 0.25 * x));
}
static double ri_h(const ri_zipf *z, double x) { return exp(-z->s * log(x)); }
static double ri_hint(const ri_zipf *z, double x)
{
    double lx = log(x);
    return ri_helper2((1 - z->s) * lx) * lx;
}
static double ri_hint_inv(const ri_zipf *z, double x)
{
    double t = x * (1 - z->s);
    if (t < -1) t = -1;
    return exp(ri_helper1(t) * x);
}

static void ri_init(ri_zipf *z, uint64_t n, double s)
{
    z->n = (double)n;
    z->s = s;
    z->hx1 = ri_hint(z, 1.5) - 1;
    z->hn = ri_hint(z, z->n + 0.5);
    z->sq = 2 - ri_hint_inv(z, ri_hint(z, 2.5) - ri_h(z, 2));
}

/* One attempt with uniform u in [0, 1); returns 0 if rejected. */
static inline uint64_t ri_try(const ri_zipf *z, double u)
{
    double uu = z->hn + u * (z->hx1 - z->hn);
    double x = ri_hint_inv(z, uu);
    double kd = floor(x + 0.5);
    if (kd < 1) kd = 1;
    if (kd > z->n) kd = z->n;
    if (kd - x <= z->sq || uu >= ri_hint(z, kd + 0.5) - ri_h(z, kd)) return (uint64_t)kd;
    return 0;
}

/* ---- lognormal values ----------------------------------------------------- */

/* Standard normal quantile, Wichura's algorithm AS 241 (PPND16), accurate to
 * about 1e-16 for p in (0, 1). */
static double norm_quantile(double p)
{
    double q = p - 0.5, r, x;
    if (fabs(q) <= 0.425) {
        r = 0.180625 - q * q;
        return q * (((((((2509.0809287301226727 * r + 33430.575583588128105) * r + 67265.770927008700853) * r +
                         45921.953931549871457) * r + 13731.693765509461125) * r + 1971.5909503065514427) * r +
                      133.14166789178437745) * r + 3.387132872796366608) /
               (((((((5226.495278852545925 * r + 28729.085735721942674) * r + 39307.89580009271061) * r +
                    21213.794301586595867) * r + 5394.1960214247511077) * r + 687.1870074920579083) * r +
                 42.313330701600911252) * r + 1.0);
    }
    r = q < 0 ? p : 1 - p;
    r = sqrt(-log(r));
    if (r <= 5) {
        r -= 1.6;
        x = (((((((7.7454501427834140764e-4 * r + 0.0227238449892691845833) * r + 0.24178072517745061177) * r +
                 1.27045825245236838258) * r + 3.64784832476320460504) * r + 5.7694972214606914055) * r +
              4.6303378461565452959) * r + 1.42343711074968357734) /
            (((((((1.05075007164441684324e-9 * r + 5.475938084995344946e-4) * r + 0.0151986665636164571966) * r +
                 0.14810397642748007459) * r + 0.68976733498510000455) * r + 1.6763848301838038494) * r +
              2.05319162663775882187) * r + 1.0);
    } else {
        r -= 5;
        x = (((((((2.01033439929228813265e-7 * r + 2.71155556874348757815e-5) * r + 0.0012426609473880784386) * r +
                 0.026532189526576123093) * r + 0.29656057182850489123) * r + 1.7848265399172913358) * r +
              5.4637849111641143699) * r + 6.6579046435011037772) /
            (((((((2.04426310338993978564e-15 * r + 1.4215117583164458887e-7) * r + 1.8463183175100546818e-5) * r +
                 7.868691311456132591e-4) * r + 0.0148753612908506148525) * r + 0.13692988092273580531) * r +
              0.59983220655588793769) * r + 1.0);
    }
    return q < 0 ? -x : x;
}

static void lntab_init(lntab *t, double sigma)
{
    t->sigma = sigma;
    t->q[0] = 0;
    t->q[LN_BINS] = 0;   /* the end bins are computed exactly, never read */
    for (uint32_t j = 1; j < LN_BINS; j++) t->q[j] = exp(sigma * norm_quantile((double)j / LN_BINS));
}

/* A lognormal value with median 1 from the random bits x. */
static inline double lntab_sample(const lntab *t, uint64_t x)
{
    uint32_t j = (uint32_t)(x >> (64 - LN_BITS));
    if (j == 0 || j == LN_BINS - 1) {
        double u = ((double)(x >> 11) + 0.5) * 0x1p-53;   /* in (0, 1) */
        return exp(t->sigma * norm_quantile(u));
    }
    double f = (double)(x & ((UINT64_C(1) << (64 - LN_BITS)) - 1)) * 0x1p-52;   /* 64 - LN_BITS = 52 */
    return t->q[j] + f * (t->q[j + 1] - t->q[j]);
}

/* Interns vocabulary entry i into a dictionary that holds entries 0..i-1
 * in order, so that its code is i. */
static sf_status intern_at(sf_dict *d, uint32_t i, const char *s, size_t len)
{
    uint32_t code;
    SF_CALL(sf_dict_intern(d, s, len, &code));
    SF_CHECK(code == i, SF_ERR_INTERNAL, "requests generator: vocabulary entry %u got code %u", i, code);
    return SF_OK;
}

/* ---- the model ---------------------------------------------------------- */

sf_status sf__gen_requests_schema(sf_schema *s)
{
    static const struct {
        const char *name;
        sf_type type;
    } cols[SF__GEN_NCOLS] = {
        {"timestamp", SF_TIMESTAMP}, {"service", SF_STRING},  {"endpoint", SF_STRING},
        {"region", SF_STRING},       {"user_id", SF_INT64},   {"client_ip", SF_STRING},
        {"status", SF_INT64},        {"latency_ms", SF_FLOAT64}, {"bytes", SF_INT64},
        {"revenue", SF_FLOAT64},
    };
    for (int i = 0; i < SF__GEN_NCOLS; i++) SF_CALL(sf_schema_add(s, cols[i].name, cols[i].type));
    return SF_OK;
}

sf_status sf__gen_requests_schema_of(const sf_input_config *cfg, sf_schema *s)
{
    SF_CALL(sf__gen_requests_schema(s));
    if (cfg->incidents) SF_CALL(sf_schema_add(s, "incident", SF_INT64));
    return SF_OK;
}

/* ---- incidents ------------------------------------------------------------ */

/* Probabilities of the incidents' per-row decisions, as thresholds on a
 * 64-bit draw (x < p 2^64). */
#define P64(p) ((uint64_t)((p) * 0x1p64))
#define P_LOGIN P64(0.03)
#define P_LOGIN_401 P64(0.95)
#define P_CHECKOUT_500 P64(0.9)
#define P_ERRORS_503 P64(0.5)
#define P_SLOW_USER P64(0.04)
#define SLOW_LATENCY_MS 3000.0
#define SLOW_SIGMA 0.3
#define LATENCY_FACTOR 5
#define SILENCE_ROWS UINT64_C(600000)   /* 10 minutes */
#define MINUTE_ROWS UINT64_C(60000)

/* Salts of the hashes that pick the keys from the seed. */
#define SALT_S1 UINT64_C(0x5331)
#define SALT_R1 UINT64_C(0x5231)
#define SALT_S2 UINT64_C(0x5332)
#define SALT_R4 UINT64_C(0x5234)
#define SALT_R5 UINT64_C(0x5235)
#define SALT_IP UINT64_C(0x4950)
#define SALT_SLOW UINT64_C(0x534c4f57)

static const struct {
    const char *kind, *aspect, *effect;
    unsigned lo_pct, hi_pct;   /* window [lo, hi) in percent of the span */
} incident_specs[SF__GEN_NINCIDENTS] = {
    {"latency_regression", "performance", "latency x5", 25, 35},
    {"error_burst", "technical", "status 503 with probability 0.5 (latency and bytes of a 503)", 50, 55},
    {"credential_stuffing", "security",
     "3% of requests replaced by login attempts of uniformly random users from 3 addresses, "
     "status 401 with probability 0.95",
     10, 30},
    {"checkout_failure", "business", "checkout status 500 with probability 0.9 (no revenue)", 65, 75},
    {"slow_abandonment", "user_experience",
     "about 4% of users moved to the region with latency 3000 ms x lognormal (sigma 0.3), then silent "
     "for 10 minutes",
     80, 88},
};

/* Mid-traffic services (popularity ranks 4 to 9, checkout left out) for
 * incident 1, and the busiest regions for its region. */
static const int s1_candidates[] = {3, 4, 5, 7, 8};
#define R1_CANDIDATES 3

/* floor(rows * pct / 100) rounded down to a whole minute, without overflow. */
static uint64_t window_edge(uint64_t rows, unsigned pct)
{
    uint64_t ms = rows / 100 * pct + rows % 100 * pct / 100;
    return ms / MINUTE_ROWS * MINUTE_ROWS;
}

/* A hash of the seed choosing among n candidates. */
static uint64_t pick(uint64_t seed_key, uint64_t salt, uint64_t n)
{
    return mix64(seed_key ^ mix64(salt)) % n;
}

static uint64_t seed_key_of(uint64_t seed) { return mix64(seed ^ UINT64_C(0x7265717565737473)); } /* "requests" */

static bool is_login_verb(const char *v) { return strcmp(v, "login") == 0 || strcmp(v, "auth") == 0; }

bool sf__gen_requests_slow_user(const sf__gen_incidents *p, uint64_t user)
{
    return p->on && mix64(p->slow_key + user * GOLDEN) < p->slow_threshold;
}

/* The checks every use of a configuration starts with. */
static sf_status validate(const sf_input_config *cfg)
{
    SF_CHECK(cfg->generator != NULL && strcmp(cfg->generator, "requests") == 0, SF_ERR_CONFIG,
             "input.generator: unknown generator '%s' (known generators: requests)",
             cfg->generator ? cfg->generator : "");
    SF_CHECK(cfg->users >= 1, SF_ERR_CONFIG, "input.users: must be at least 1 (got %llu)",
             (unsigned long long)cfg->users);
    SF_CHECK(cfg->users <= ((uint64_t)1 << 53), SF_ERR_CONFIG,
             "input.users: at most 2^53 distinct users are supported (got %llu)",
             (unsigned long long)cfg->users);
    SF_CHECK(isfinite(cfg->zipf) && cfg->zipf >= 0, SF_ERR_CONFIG,
             "input.zipf: must be a finite number >= 0 (got %g)", cfg->zipf);
    if (cfg->incidents) {
        SF_CHECK(cfg->rows >= SF__GEN_INCIDENT_MIN_ROWS, SF_ERR_CONFIG,
                 "input.incidents: needs input.rows >= %llu (10 minutes of requests, one per ms), "
                 "got %llu",
                 (unsigned long long)SF__GEN_INCIDENT_MIN_ROWS, (unsigned long long)cfg->rows);
        SF_CHECK(cfg->users >= SF__GEN_INCIDENT_MIN_USERS, SF_ERR_CONFIG,
                 "input.incidents: needs input.users >= %llu (incident 5 picks about 4%% of the "
                 "users), got %llu",
                 (unsigned long long)SF__GEN_INCIDENT_MIN_USERS, (unsigned long long)cfg->users);
    }
    return SF_OK;
}

sf_status sf__gen_requests_incidents(const sf_input_config *cfg, sf__gen_incidents *out)
{
    memset(out, 0, sizeof *out);
    SF_CALL(validate(cfg));
    out->rows = cfg->rows;
    if (!cfg->incidents) return SF_OK;
    out->on = true;
    uint64_t sk = seed_key_of(cfg->seed);
    for (int k = 0; k < SF__GEN_NINCIDENTS; k++) {
        sf__gen_incident *x = &out->inc[k];
        x->id = k + 1;
        x->kind = incident_specs[k].kind;
        x->aspect = incident_specs[k].aspect;
        x->effect = incident_specs[k].effect;
        x->first_row = window_edge(cfg->rows, incident_specs[k].lo_pct);
        x->end_row = window_edge(cfg->rows, incident_specs[k].hi_pct);
        /* A short span can round a window away (0.05 T is 30 s at 10
         * minutes): every window lasts at least one minute. */
        if (x->end_row < x->first_row + MINUTE_ROWS) x->end_row = x->first_row + MINUTE_ROWS;
    }

    /* 3: the first service with a login verb (the first service if none). */
    out->login_service = 0;
    out->login_endpoint = 0;
    bool found = false;
    for (int sv = 0; sv < NSERVICES && !found; sv++)
        for (int v = 0; services[sv].verbs[v] && !found; v++)
            if (is_login_verb(services[sv].verbs[v])) {
                out->login_service = sv;
                out->login_endpoint = v;
                found = true;
            }
    out->login_service_name = services[out->login_service].name;
    snprintf(out->login_endpoint_name, sizeof out->login_endpoint_name, "/api/%s/%s",
             services[out->login_service].name, services[out->login_service].verbs[out->login_endpoint]);
    uint32_t octet[3];
    for (int j = 0, attempt = 0; j < 3; attempt++) {
        uint32_t o = 1 + (uint32_t)pick(sk, SALT_IP + (uint64_t)attempt, 254);
        bool dup = false;
        for (int i = 0; i < j; i++) dup = dup || octet[i] == o;
        if (!dup) octet[j++] = o;
    }
    for (int j = 0; j < 3; j++) snprintf(out->ip[j], sizeof out->ip[j], "203.0.113.%u", octet[j]);

    /* 1: a mid-traffic service (never the login service or checkout) and a
     * busy region. */
    int nc1 = 0, c1[NSERVICES];
    for (size_t i = 0; i < sizeof s1_candidates / sizeof s1_candidates[0]; i++)
        if (s1_candidates[i] != out->login_service && s1_candidates[i] != SERVICE_CHECKOUT)
            c1[nc1++] = s1_candidates[i];
    out->s1 = c1[pick(sk, SALT_S1, (uint64_t)nc1)];
    out->r1 = (int)pick(sk, SALT_R1, R1_CANDIDATES);

    /* 2: a service with at least 1% of the traffic under the Zipf exponent
     * (the most common service always qualifies: its share is >= 1/12). */
    double h = 0;
    for (int k = NSERVICES; k >= 1; k--) h += pow((double)k, -cfg->zipf);
    int nc2 = 0, c2[NSERVICES];
    for (int k = 0; k < NSERVICES; k++)
        if (k != out->s1 && k != SERVICE_CHECKOUT && k != out->login_service &&
            pow((double)(k + 1), -cfg->zipf) / h >= 0.01)
            c2[nc2++] = k;
    out->s2 = c2[pick(sk, SALT_S2, (uint64_t)nc2)];

    /* 4 and 5: regions other than R1, and than each other. */
    int c4[NREGIONS], nc4 = 0;
    for (int g = 0; g < NREGIONS; g++)
        if (g != out->r1) c4[nc4++] = g;
    out->r4 = c4[pick(sk, SALT_R4, (uint64_t)nc4)];
    int c5[NREGIONS], nc5 = 0;
    for (int g = 0; g < NREGIONS; g++)
        if (g != out->r1 && g != out->r4) c5[nc5++] = g;
    out->r5 = c5[pick(sk, SALT_R5, (uint64_t)nc5)];

    out->s1_name = services[out->s1].name;
    out->r1_name = regions[out->r1];
    out->s2_name = services[out->s2].name;
    out->r4_name = regions[out->r4];
    out->r5_name = regions[out->r5];

    out->silence_first = out->inc[SF__INC_ABANDON - 1].end_row;
    out->silence_end = out->silence_first + SILENCE_ROWS;
    out->slow_key = mix64(sk ^ mix64(SALT_SLOW));
    out->slow_threshold = P_SLOW_USER;
    return SF_OK;
}

/* The user that takes over a row of slow-set user u during the silence: the
 * next id (cyclically) outside the set. */
static inline uint64_t silence_substitute(const sf__gen_model *m, uint64_t u)
{
    for (uint64_t k = 1; k <= 64; k++) {
        uint64_t v = (u - 1 + k) % m->users + 1;
        if (!sf__gen_requests_slow_user(&m->inc, v)) return v;
    }
    return m->free_user;   /* 64 set members in a row: p = 0.04^64 per user */
}

/* Model parts of the incidents: windows, endpoint, addresses, status indices,
 * a user outside the slow set. */
static sf_status incidents_build(sf__gen_model *m)
{
    const sf__gen_incidents *p = &m->inc;
    for (int k = 0; k < SF__GEN_NINCIDENTS; k++) {
        m->win_lo[k] = p->inc[k].first_row;
        m->win_hi[k] = p->inc[k].end_row;
    }
    m->win_lo[SF__GEN_NINCIDENTS] = p->silence_first;
    m->win_hi[SF__GEN_NINCIDENTS] = p->silence_end;
    m->login_ep = m->ep_base[p->login_service] + (uint32_t)p->login_endpoint;
    for (int j = 0; j < 3; j++) {
        size_t len = strlen(p->ip[j]);
        memcpy(m->ip_name[NIPS + j], p->ip[j], len + 1);
        m->ip_len[NIPS + j] = (uint8_t)len;
    }
    for (int k = 0; k < NSTATUS; k++) {
        if (status_codes[k] == 200) m->st_200 = (uint8_t)k;
        if (status_codes[k] == 401) m->st_401 = (uint8_t)k;
        if (status_codes[k] == 500) m->st_500 = (uint8_t)k;
        if (status_codes[k] == 503) m->st_503 = (uint8_t)k;
    }
    lntab_init(&m->ln_slow, SLOW_SIGMA);
    /* The slow set must be neither empty nor everyone; with users >= 1000
     * both fail with probability below 1e-17, but say so rather than guess. */
    uint64_t scan = m->users < ((uint64_t)1 << 16) ? m->users : ((uint64_t)1 << 16);
    bool member = false;
    m->free_user = 0;
    for (uint64_t u = 1; u <= scan && (!member || m->free_user == 0); u++) {
        if (sf__gen_requests_slow_user(p, u)) member = true;
        else if (m->free_user == 0) m->free_user = u;
    }
    SF_CHECK(member && m->free_user != 0, SF_ERR_CONFIG,
             "input.seed: with this seed the slow set of incident 5 is %s among the first %llu "
             "users; choose another seed",
             member ? "everyone" : "empty", (unsigned long long)scan);
    return SF_OK;
}

void sf__gen_requests_model_destroy(sf__gen_model **pm)
{
    if (pm == NULL || *pm == NULL) return;
    sf__gen_model *m = *pm;
    dtab_fini(&m->service_tab);
    dtab_fini(&m->region_tab);
    dtab_fini(&m->ip_tab);
    dtab_fini(&m->user_tab);
    for (int s = 0; s < NSERVICES; s++) {
        dtab_fini(&m->endpoint_tab[s]);
        dtab_fini(&m->status_tab[s]);
    }
    free(m->ep_name);
    free(m->ep_len);
    free(m->ip_name);
    free(m->ip_len);
    sf_dict_fini(&m->ip_dict);
    free(m);
    *pm = NULL;
}

/* "10.a.b.c" for 24-bit v, without printf (called 50000 times per model). */
static size_t format_ip(uint32_t v, char *out)
{
    size_t n = 0;
    out[n++] = '1';
    out[n++] = '0';
    for (int sh = 16; sh >= 0; sh -= 8) {
        unsigned o = (v >> sh) & 0xff;
        out[n++] = '.';
        if (o >= 100) out[n++] = (char)('0' + o / 100);
        if (o >= 10) out[n++] = (char)('0' + o / 10 % 10);
        out[n++] = (char)('0' + o % 10);
    }
    out[n] = '\0';
    return n;
}

static sf_status model_build(sf__gen_model *m, const sf_input_config *cfg)
{
    m->seed_key = seed_key_of(cfg->seed);
    m->users = cfg->users;
    m->zipf = cfg->zipf;
    double s = cfg->zipf;

    SF_CALL(dtab_build(&m->service_tab, NSERVICES, NULL, s));
    SF_CALL(dtab_build(&m->region_tab, NREGIONS, NULL, s));
    SF_CALL(dtab_build(&m->ip_tab, NIPS, NULL, s));

    uint32_t nep = 0;
    for (int sv = 0; sv < NSERVICES; sv++) {
        uint32_t nv = 0;
        while (services[sv].verbs[nv]) nv++;
        m->ep_base[sv] = nep;
        nep += nv;
        SF_CALL(dtab_build(&m->endpoint_tab[sv], nv, NULL, s));
        double w[NSTATUS];
        for (int k = 0; k < NSTATUS; k++) {
            w[k] = status_base[k];
            for (int t = 0; t < 4 && services[sv].tweaks[t].status; t++)
                if (services[sv].tweaks[t].status == status_codes[k]) w[k] *= services[sv].tweaks[t].mult;
        }
        SF_CALL(dtab_build(&m->status_tab[sv], NSTATUS, w, 0));
    }
    m->ep_base[NSERVICES] = nep;

    m->ep_name = malloc(sizeof *m->ep_name * nep);
    m->ep_len = malloc(nep);
    /* The natural addresses, then incident 3's three. */
    m->ip_name = malloc(sizeof *m->ip_name * (NIPS + 3));
    m->ip_len = malloc(NIPS + 3);
    SF_CHECK(m->ep_name && m->ep_len && m->ip_name && m->ip_len, SF_ERR_NOMEM,
             "out of memory (generator vocabulary)");
    for (int sv = 0; sv < NSERVICES; sv++)
        for (uint32_t v = 0; services[sv].verbs[v]; v++) {
            uint32_t e = m->ep_base[sv] + v;
            int len = snprintf(m->ep_name[e], sizeof m->ep_name[e], "/api/%s/%s", services[sv].name,
                               services[sv].verbs[v]);
            m->ep_len[e] = (uint8_t)len;
        }
    /* Popularity rank k maps to a scattered but distinct address: k * odd
     * constant is a bijection modulo 2^24. */
    for (uint32_t k = 0; k < NIPS; k++) {
        uint32_t v = (uint32_t)((k * UINT32_C(2654435761) + UINT32_C(0x5a17)) & 0xffffff);
        m->ip_len[k] = (uint8_t)format_ip(v, m->ip_name[k]);
    }

    if (m->users <= SF__GEN_MAX_TABLE) {
        m->users_table = true;
        SF_CALL(dtab_build(&m->user_tab, (uint32_t)m->users, NULL, s));
    } else if (s > 0) {
        ri_init(&m->user_ri, m->users, s);
    }

    lntab_init(&m->ln_latency, LATENCY_SIGMA);
    lntab_init(&m->ln_bytes_ok, BYTES_SIGMA);
    lntab_init(&m->ln_bytes_other, BYTES_ERROR_SIGMA);
    lntab_init(&m->ln_revenue, REVENUE_SIGMA);
    for (int k = 0; k < NSERVICES; k++) m->service_len[k] = (uint8_t)strlen(services[k].name);
    for (int k = 0; k < NREGIONS; k++) m->region_len[k] = (uint8_t)strlen(regions[k]);
    for (int sv = 0; sv < NSERVICES; sv++)
        for (int k = 0; k < NSTATUS; k++) {
            outcome *o = &m->out[sv][k];
            int st = status_codes[k];
            /* Cached answers and refusals are fast, upstream failures slow. */
            double f = 1.0;
            if (st == 304 || st == 301) f = 0.4;
            else if (st == 401 || st == 403 || st == 429) f = 0.3;
            else if (st == 400 || st == 404) f = 0.5;
            else if (st == 500) f = 2.0;
            else if (st == 502) f = 3.0;
            else if (st == 503) f = 0.2;
            o->latency_median = services[sv].latency_median_ms * f;
            o->bytes_null = st == 204 || st == 304;
            o->bytes_ln = st < 300 ? &m->ln_bytes_ok : &m->ln_bytes_other;
            o->bytes_median = st < 300 ? services[sv].bytes_median : st < 400 ? 180 : st < 500 ? 250 : 400;
            o->revenue = (sv == SERVICE_CHECKOUT || sv == SERVICE_PAYMENTS) && st >= 200 && st < 300;
        }

    SF_CALL(sf__gen_requests_incidents(cfg, &m->inc));
    if (m->inc.on) SF_CALL(incidents_build(m));
    sf_dict_init(&m->ip_dict);
    for (uint32_t k = 0; k < NIPS; k++) SF_CALL(intern_at(&m->ip_dict, k, m->ip_name[k], m->ip_len[k]));
    for (int j = 0; m->inc.on && j < 3; j++)
        SF_CALL(sf_dict_intern(&m->ip_dict, m->ip_name[NIPS + j], m->ip_len[NIPS + j], &m->inc_ip_code[j]));
    /* Complete: every fill copies it unchanged (sf__gen_requests_stable_dict). */
    m->ip_dict.stable_id = sf_dict_stable_id();
    return SF_OK;
}

const sf_dict *sf__gen_requests_stable_dict(const sf__gen_model *m, int col)
{
    return col == SF__GEN_CLIENT_IP ? &m->ip_dict : NULL;
}

sf_status sf__gen_requests_model_create(const sf_input_config *cfg, sf__gen_model **out)
{
    *out = NULL;
    SF_CALL(validate(cfg));
    sf__gen_model *m = calloc(1, sizeof *m);
    SF_CHECK(m != NULL, SF_ERR_NOMEM, "out of memory (generator)");
    sf_status rc = model_build(m, cfg);
    if (rc != SF_OK) {
        sf__gen_requests_model_destroy(&m);
        return rc;
    }
    *out = m;
    return SF_OK;
}

static inline uint64_t sample_user(const sf__gen_model *m, uint64_t key)
{
    uint64_t x = draw(key, D_USER);
    if (m->users_table) return (uint64_t)dtab_sample(&m->user_tab, x) + 1;
    if (m->zipf == 0) {
        uint64_t k = (uint64_t)(u01(x) * (double)m->users);
        return (k < m->users ? k : m->users - 1) + 1;
    }
    for (int a = 0; a < MAX_RETRIES; a++) {
        uint64_t k = ri_try(&m->user_ri, u01(x));
        if (k) return k;
        x = draw(key, D_USER_RETRY + a);
    }
    return 1;   /* unreachable in practice: each attempt is accepted with p > 0.5 */
}

/* sample_user(m, key[k]) for k < n (n <= BLOCK). */
static void sample_users_block(const sf__gen_model *m, const uint64_t *key, size_t n, uint64_t *out)
{
    if (!m->users_table) {
        for (size_t k = 0; k < n; k++) out[k] = sample_user(m, key[k]);
        return;
    }
    uint32_t idx[BLOCK_MAX];
    dtab_sample_block(&m->user_tab, key, D_USER, n, idx);
    for (size_t k = 0; k < n; k++) out[k] = (uint64_t)idx[k] + 1;
}

/* Rows are generated in blocks: first the row keys and the fields others
 * depend on (service, status), then one tight loop per wanted column. */
#define BLOCK BLOCK_MAX

/* The changes the incidents make to one block (see incidents_apply). */
typedef struct inc_block {
    uint8_t inc[BLOCK];   /* incident id, 0 = untouched */
    uint8_t reg[BLOCK];   /* region index after the incidents */
    uint8_t ip[BLOCK];    /* incident 3: which of its addresses */
    uint64_t usr[BLOCK];  /* user id after the incidents */
} inc_block;

/* Whether rows [i0, i0 + nb) meet an incident window or the silence. */
static bool block_has_incidents(const sf__gen_model *m, uint64_t i0, size_t nb)
{
    for (int k = 0; k <= SF__GEN_NINCIDENTS; k++)
        if (i0 < m->win_hi[k] && i0 + nb > m->win_lo[k]) return true;
    return false;
}

static inline bool in_window(const sf__gen_model *m, int id, uint64_t i)
{
    return i >= m->win_lo[id - 1] && i < m->win_hi[id - 1];
}

/* Decides the incident of every row of a block from the natural service,
 * status, region and user (which the caller has drawn into svc and sti, and
 * which this draws into x->reg and x->usr), and applies it: svc, sti, x->reg
 * and x->usr become the row's final values. The order of the tests is the
 * precedence 3 > 5 > 1 > 4 > 2. */
static void incidents_apply(const sf__gen_model *m, uint64_t i0, size_t nb, const uint64_t *key,
                            uint8_t *svc, uint8_t *sti, inc_block *x)
{
    const sf__gen_incidents *p = &m->inc;
    for (size_t k = 0; k < nb; k++) x->reg[k] = (uint8_t)dtab_sample(&m->region_tab, draw(key[k], D_REGION));
    sample_users_block(m, key, nb, x->usr);
    for (size_t k = 0; k < nb; k++) {
        uint64_t i = i0 + k;
        uint8_t id = 0;
        if (in_window(m, SF__INC_CREDENTIALS, i) && draw(key[k], D_INC_LOGIN) < P_LOGIN) {
            id = SF__INC_CREDENTIALS;
            svc[k] = (uint8_t)p->login_service;
            uint64_t u = (uint64_t)(u01(draw(key[k], D_INC_LOGIN_USER)) * (double)m->users);
            x->usr[k] = (u < m->users ? u : m->users - 1) + 1;
            x->ip[k] = (uint8_t)(((draw(key[k], D_INC_LOGIN_IP) >> 32) * 3) >> 32);
            sti[k] = draw(key[k], D_INC_LOGIN_STATUS) < P_LOGIN_401 ? m->st_401 : m->st_200;
        } else if (in_window(m, SF__INC_ABANDON, i) && sf__gen_requests_slow_user(p, x->usr[k])) {
            id = SF__INC_ABANDON;
            x->reg[k] = (uint8_t)p->r5;
        } else if (in_window(m, SF__INC_LATENCY, i) && svc[k] == p->s1 && x->reg[k] == p->r1) {
            id = SF__INC_LATENCY;
        } else if (in_window(m, SF__INC_CHECKOUT, i) && svc[k] == SERVICE_CHECKOUT && x->reg[k] == p->r4 &&
                   draw(key[k], D_INC_CHECKOUT) < P_CHECKOUT_500) {
            id = SF__INC_CHECKOUT;
            sti[k] = m->st_500;
        } else if (in_window(m, SF__INC_ERRORS, i) && svc[k] == p->s2 &&
                   draw(key[k], D_INC_ERRORS) < P_ERRORS_503) {
            id = SF__INC_ERRORS;
            sti[k] = m->st_503;
        } else if (i >= p->silence_first && i < p->silence_end && sf__gen_requests_slow_user(p, x->usr[k])) {
            /* Not marked: the incident's rows are the slow ones before. */
            x->usr[k] = silence_substitute(m, x->usr[k]);
        }
        x->inc[k] = id;
    }
}

sf_status sf__gen_requests_fill(sf__gen_model *m, uint64_t first_row, uint64_t nrows, const uint8_t *want,
                                sf_batch *b)
{
    const int ncols = m->inc.on ? SF__GEN_NCOLS_INCIDENTS : SF__GEN_NCOLS;
    SF_CHECK(b->ncols == ncols, SF_ERR_ARG, "requests generator: batch has %d columns, expected %d",
             b->ncols, ncols);
    SF_CHECK(nrows <= b->cap, SF_ERR_ARG, "requests generator: %llu rows do not fit a batch of %zu",
             (unsigned long long)nrows, b->cap);
    sf_batch_clear(b);
    b->first_row = first_row;

    bool on[SF__GEN_NCOLS_INCIDENTS] = {false};
    for (int c = 0; c < ncols; c++) on[c] = b->cols[c].loaded && (want == NULL || want[c]);
    bool need_status = on[SF__GEN_STATUS] || on[SF__GEN_LATENCY_MS] || on[SF__GEN_BYTES] ||
                       on[SF__GEN_REVENUE];
    bool need_service = need_status || on[SF__GEN_SERVICE] || on[SF__GEN_ENDPOINT];
    /* Incidents change every column but the timestamp. */
    bool need_incidents = false;
    for (int c = SF__GEN_TIMESTAMP + 1; c < ncols; c++) need_incidents = need_incidents || (m->inc.on && on[c]);
    if (on[SF__GEN_BYTES]) SF_CALL(sf_batch_enable_valid(b, SF__GEN_BYTES));
    if (on[SF__GEN_REVENUE]) SF_CALL(sf_batch_enable_valid(b, SF__GEN_REVENUE));

    sf_column *cols = b->cols;
    /* Services, endpoints and regions are few: every fill interns all of
     * them in vocabulary order, so that their codes are the vocabulary
     * indices and every batch has the same dictionaries (which lets
     * pieces keep them whole, and agents keep their code caches, from one
     * batch to the next). The client addresses' dictionary is built once
     * and copied. */
    if (on[SF__GEN_SERVICE])
        for (uint32_t i = 0; i < NSERVICES; i++)
            SF_CALL(intern_at(&cols[SF__GEN_SERVICE].dict, i, services[i].name, m->service_len[i]));
    if (on[SF__GEN_ENDPOINT])
        for (uint32_t i = 0; i < m->ep_base[NSERVICES]; i++)
            SF_CALL(intern_at(&cols[SF__GEN_ENDPOINT].dict, i, m->ep_name[i], m->ep_len[i]));
    if (on[SF__GEN_REGION])
        for (uint32_t i = 0; i < NREGIONS; i++)
            SF_CALL(intern_at(&cols[SF__GEN_REGION].dict, i, regions[i], m->region_len[i]));
    if (on[SF__GEN_CLIENT_IP]) SF_CALL(sf_dict_copy(&cols[SF__GEN_CLIENT_IP].dict, &m->ip_dict));
    size_t bytes_nulls = 0, revenue_nulls = 0;
    uint64_t key[BLOCK];
    uint8_t svc[BLOCK], sti[BLOCK];
    inc_block x;

    for (uint64_t r0 = 0; r0 < nrows; r0 += BLOCK) {
        size_t nb = nrows - r0 < BLOCK ? (size_t)(nrows - r0) : BLOCK;
        uint64_t i0 = first_row + r0;
        /* blk: this block has incident rows; its region and user come from x. */
        bool blk = need_incidents && block_has_incidents(m, i0, nb);
        for (size_t k = 0; k < nb; k++) key[k] = mix64(m->seed_key + (i0 + k) * GOLDEN);
        if (need_service || blk)
            for (size_t k = 0; k < nb; k++) svc[k] = (uint8_t)dtab_sample(&m->service_tab, draw(key[k], D_SERVICE));
        if (need_status || blk)
            for (size_t k = 0; k < nb; k++)
                sti[k] = (uint8_t)dtab_sample(&m->status_tab[svc[k]], draw(key[k], D_STATUS));
        if (blk) incidents_apply(m, i0, nb, key, svc, sti, &x);

        if (on[SF__GEN_TIMESTAMP]) {
            int64_t *v = cols[SF__GEN_TIMESTAMP].i64 + r0;
            for (size_t k = 0; k < nb; k++) {
                uint64_t jitter = ((draw(key[k], D_JITTER) >> 32) * 1000) >> 32;   /* 0..999 */
                v[k] = SF__GEN_EPOCH_US + (int64_t)((i0 + k) * 1000 + jitter);
            }
        }
        if (on[SF__GEN_SERVICE]) {
            uint32_t *code = cols[SF__GEN_SERVICE].code + r0;
            for (size_t k = 0; k < nb; k++) code[k] = svc[k];
        }
        if (on[SF__GEN_ENDPOINT]) {
            uint32_t *code = cols[SF__GEN_ENDPOINT].code + r0;
            for (size_t k = 0; k < nb; k++)
                code[k] = blk && x.inc[k] == SF__INC_CREDENTIALS
                              ? m->login_ep
                              : m->ep_base[svc[k]] + dtab_sample(&m->endpoint_tab[svc[k]], draw(key[k], D_ENDPOINT));
        }
        if (on[SF__GEN_REGION]) {
            uint32_t *code = cols[SF__GEN_REGION].code + r0;
            for (size_t k = 0; k < nb; k++)
                code[k] = blk ? x.reg[k] : dtab_sample(&m->region_tab, draw(key[k], D_REGION));
        }
        if (on[SF__GEN_USER_ID]) {
            int64_t *v = cols[SF__GEN_USER_ID].i64 + r0;
            if (blk)
                for (size_t k = 0; k < nb; k++) v[k] = (int64_t)x.usr[k];
            else
                sample_users_block(m, key, nb, (uint64_t *)v);
        }
        if (on[SF__GEN_CLIENT_IP]) {
            uint32_t *code = cols[SF__GEN_CLIENT_IP].code + r0;
            dtab_sample_block(&m->ip_tab, key, D_IP, nb, code);
            if (blk)
                for (size_t k = 0; k < nb; k++)
                    if (x.inc[k] == SF__INC_CREDENTIALS) code[k] = m->inc_ip_code[x.ip[k]];
        }
        if (on[SF__GEN_STATUS]) {
            int64_t *v = cols[SF__GEN_STATUS].i64 + r0;
            for (size_t k = 0; k < nb; k++) v[k] = status_codes[sti[k]];
        }
        if (on[SF__GEN_LATENCY_MS]) {
            double *v = cols[SF__GEN_LATENCY_MS].f64 + r0;
            for (size_t k = 0; k < nb; k++) {
                const outcome *o = &m->out[svc[k]][sti[k]];
                double lat0 = o->latency_median * lntab_sample(&m->ln_latency, draw(key[k], D_LATENCY));
                double lat = round_pos(lat0 * 1000) / 1000;
                lat = lat > 0 ? lat : 0.001;
                if (blk && x.inc[k] == SF__INC_LATENCY) {
                    /* Five times the natural value, still 3 decimals. */
                    lat = round_pos(lat * LATENCY_FACTOR * 1000) / 1000;
                } else if (blk && x.inc[k] == SF__INC_ABANDON) {
                    double slow = SLOW_LATENCY_MS * lntab_sample(&m->ln_slow, draw(key[k], D_INC_SLOW));
                    lat = round_pos(slow * 1000) / 1000;
                    lat = lat > 0 ? lat : 0.001;
                }
                v[k] = lat;
            }
        }
        if (on[SF__GEN_BYTES]) {
            int64_t *v = cols[SF__GEN_BYTES].i64 + r0;
            uint8_t *valid = cols[SF__GEN_BYTES].valid + r0;
            for (size_t k = 0; k < nb; k++) {
                const outcome *o = &m->out[svc[k]][sti[k]];
                int64_t bv = (int64_t)(o->bytes_median * lntab_sample(o->bytes_ln, draw(key[k], D_BYTES)) + 0.5);
                bv = bv > 0 ? bv : 1;
                v[k] = o->bytes_null ? 0 : bv;
                valid[k] = !o->bytes_null;
                bytes_nulls += o->bytes_null;
            }
        }
        if (on[SF__GEN_REVENUE]) {
            double *v = cols[SF__GEN_REVENUE].f64 + r0;
            uint8_t *valid = cols[SF__GEN_REVENUE].valid + r0;
            for (size_t k = 0; k < nb; k++) {
                const outcome *o = &m->out[svc[k]][sti[k]];
                if (o->revenue) {
                    double rv = round_pos(REVENUE_MEDIAN * lntab_sample(&m->ln_revenue, draw(key[k], D_REVENUE)) * 100) / 100;
                    v[k] = rv >= 0.01 ? rv : 0.01;
                    valid[k] = 1;
                } else {
                    v[k] = 0.0;
                    valid[k] = 0;
                    revenue_nulls++;
                }
            }
        }
        if (on[SF__GEN_INCIDENT]) {
            int64_t *v = cols[SF__GEN_INCIDENT].i64 + r0;
            for (size_t k = 0; k < nb; k++) v[k] = blk ? x.inc[k] : 0;
        }
    }
    if (on[SF__GEN_BYTES]) cols[SF__GEN_BYTES].nulls = bytes_nulls;
    if (on[SF__GEN_REVENUE]) cols[SF__GEN_REVENUE].nulls = revenue_nulls;
    b->nrows = nrows;
    return SF_OK;
}

const sf__gen_incidents *sf__gen_requests_model_incidents(const sf__gen_model *m) { return &m->inc; }

sf_status sf__gen_requests_range(const sf_input_config *cfg, uint64_t first_row, uint64_t nrows,
                                 const uint8_t *want, sf_batch *b)
{
    sf__gen_model *m = NULL;
    SF_CALL(sf__gen_requests_model_create(cfg, &m));
    sf_status rc = sf__gen_requests_fill(m, first_row, nrows, want, b);
    sf__gen_requests_model_destroy(&m);
    return rc;
}

/* ---- the reader --------------------------------------------------------- */

typedef struct gen_reader {
    sf__gen_model *model;
    uint64_t next_row;
    uint64_t lo, hi;   /* the part read (sf_reader_set_part): rows [lo, hi) */
} gen_reader;

static sf_status gen_next(sf_reader *r, sf_batch *b, bool *eof)
{
    gen_reader *g = r->impl;
    uint64_t left = g->hi > g->next_row ? g->hi - g->next_row : 0;
    if (left == 0) {
        sf_batch_clear(b);
        *eof = true;
        return SF_OK;
    }
    size_t per = r->cfg.batch_rows < b->cap ? r->cfg.batch_rows : b->cap;
    if (per == 0) per = b->cap;
    uint64_t n = left < per ? left : per;
    SF_CALL(sf__gen_requests_fill(g->model, g->next_row, n, r->want, b));
    g->next_row += n;
    *eof = false;
    return SF_OK;
}

static sf_status gen_rewind(sf_reader *r)
{
    gen_reader *g = r->impl;
    g->next_row = g->lo;
    return SF_OK;
}

/* Every row is a pure function of its index: a part is just a row range,
 * generated by its rank alone. */
static sf_status gen_set_part(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                              const uint64_t at_end[2])
{
    (void)at_begin;
    (void)at_end;
    gen_reader *g = r->impl;
    SF_CHECK(end <= r->cfg.rows, SF_ERR_ARG, "requests generator: part [%llu, %llu) is past the end (%llu rows)",
             (unsigned long long)begin, (unsigned long long)end, (unsigned long long)r->cfg.rows);
    g->lo = g->next_row = begin;
    g->hi = end;
    return SF_OK;
}

/* Rows are a pure function of their index (see the file comment), so a
 * position is just the next row: v[0] next row, v[1] rows delivered (the
 * same number: the generator skips nothing), v[2] the input's row count, to
 * refuse a position taken with another input.rows; v[3] is zero. */
static void gen_tell(const sf_reader *r, sf_reader_pos *pos)
{
    const gen_reader *g = r->impl;
    pos->v[0] = g->next_row;
    pos->v[1] = g->next_row;
    pos->v[2] = r->cfg.rows;
    pos->v[3] = 0;
}

/* Seeking costs nothing beyond the checks: the next fill starts at the row. */
static sf_status gen_seek(sf_reader *r, const sf_reader_pos *pos)
{
    gen_reader *g = r->impl;
    SF_CHECK(pos->v[2] == r->cfg.rows, SF_ERR_ARG,
             "requests generator: reader position was taken with input.rows = %llu, this input has %llu",
             (unsigned long long)pos->v[2], (unsigned long long)r->cfg.rows);
    SF_CHECK(pos->v[0] <= r->cfg.rows, SF_ERR_ARG,
             "requests generator: reader position row %llu is past the end (%llu rows)",
             (unsigned long long)pos->v[0], (unsigned long long)r->cfg.rows);
    SF_CHECK(pos->v[1] == pos->v[0] && pos->v[3] == 0, SF_ERR_ARG,
             "requests generator: reader position {%llu, %llu, %llu, %llu} is not one of this reader",
             (unsigned long long)pos->v[0], (unsigned long long)pos->v[1], (unsigned long long)pos->v[2],
             (unsigned long long)pos->v[3]);
    g->next_row = pos->v[0];
    r->bad_rows = 0;
    return SF_OK;
}

static void gen_destroy(sf_reader *r)
{
    gen_reader *g = r->impl;
    if (g == NULL) return;
    sf__gen_requests_model_destroy(&g->model);
    free(g);
    r->impl = NULL;
}

/* Every reader has its own model: sub-parts generate on threads at once. */
static const sf_dict *gen_stable_dict(const sf_reader *r, int col)
{
    const gen_reader *g = r->impl;
    return sf__gen_requests_stable_dict(g->model, col);
}

static const sf__reader_ops gen_ops = {gen_next, gen_rewind,   gen_destroy, gen_tell,       gen_seek,
                                       NULL,     gen_set_part, false,       NULL,           gen_stable_dict};

sf_status sf__gen_open(sf_reader *r)
{
    sf_status rc = SF_OK;
    gen_reader *g = calloc(1, sizeof *g);
    SF_CHECK(g != NULL, SF_ERR_NOMEM, "out of memory (generator)");
    SF_CALL_GOTO(sf__gen_requests_model_create(&r->cfg, &g->model), done);
    SF_CALL_GOTO(sf__gen_requests_schema_of(&r->cfg, &r->schema), done);
    r->total_rows = r->cfg.rows;
    g->hi = r->cfg.rows;
    r->data_bytes = 0;
    r->data_start = 0;
    r->offsets = false;
    r->impl = g;
    r->ops = &gen_ops;
done:
    if (rc != SF_OK) {
        sf__gen_requests_model_destroy(&g->model);
        free(g);
        sf_schema_fini(&r->schema);
    }
    return rc;
}
