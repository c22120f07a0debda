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
 * so an entry is interned (hashed) once per batch and then reused. */
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

/* Per-vocabulary dictionary codes of the current fill: entry i holds the
 * code of vocabulary entry i if its stamp is the fill's. */
typedef struct ventry {
    uint32_t stamp;
    uint32_t code;
} ventry;

typedef struct vcache {
    uint32_t n;
    ventry *e;
} vcache;

struct sf__gen_model {
    uint64_t seed_key;
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
    vcache c_service, c_endpoint, c_region, c_ip;
    uint32_t epoch;
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

/* ---- vocabulary code cache --------------------------------------------- */

static sf_status vcache_init(vcache *c, uint32_t n)
{
    c->n = n;
    c->e = calloc(n, sizeof *c->e);
    SF_CHECK(c->e != NULL, SF_ERR_NOMEM, "out of memory (generator vocabulary)");
    return SF_OK;
}

static void vcache_fini(vcache *c)
{
    free(c->e);
    memset(c, 0, sizeof *c);
}

static void vcache_forget(vcache *c) { memset(c->e, 0, sizeof *c->e * c->n); }

/* The code of vocabulary entry i in dictionary d, interning it on the first
 * use in this fill. */
static inline sf_status vcache_code(vcache *c, uint32_t epoch, uint32_t i, sf_dict *d, const char *s,
                                    size_t len, uint32_t *code)
{
    ventry *e = &c->e[i];
    if (e->stamp != epoch) {
        SF_CALL(sf_dict_intern(d, s, len, &e->code));
        e->stamp = epoch;
    }
    *code = e->code;
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
    vcache_fini(&m->c_service);
    vcache_fini(&m->c_endpoint);
    vcache_fini(&m->c_region);
    vcache_fini(&m->c_ip);
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
    m->seed_key = mix64(cfg->seed ^ UINT64_C(0x7265717565737473));   /* "requests" */
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
    m->ip_name = malloc(sizeof *m->ip_name * NIPS);
    m->ip_len = malloc(NIPS);
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

    SF_CALL(vcache_init(&m->c_service, NSERVICES));
    SF_CALL(vcache_init(&m->c_endpoint, nep));
    SF_CALL(vcache_init(&m->c_region, NREGIONS));
    SF_CALL(vcache_init(&m->c_ip, NIPS));
    m->epoch = 0;
    return SF_OK;
}

sf_status sf__gen_requests_model_create(const sf_input_config *cfg, sf__gen_model **out)
{
    *out = NULL;
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

/* Rows are generated in blocks: first the row keys and the fields others
 * depend on (service, status), then one tight loop per wanted column. */
#define BLOCK 512

sf_status sf__gen_requests_fill(sf__gen_model *m, uint64_t first_row, uint64_t nrows, const uint8_t *want,
                                sf_batch *b)
{
    SF_CHECK(b->ncols == SF__GEN_NCOLS, SF_ERR_ARG,
             "requests generator: batch has %d columns, expected %d", b->ncols, SF__GEN_NCOLS);
    SF_CHECK(nrows <= b->cap, SF_ERR_ARG, "requests generator: %llu rows do not fit a batch of %zu",
             (unsigned long long)nrows, b->cap);
    sf_batch_clear(b);
    b->first_row = first_row;

    bool on[SF__GEN_NCOLS];
    for (int c = 0; c < SF__GEN_NCOLS; c++) on[c] = b->cols[c].loaded && (want == NULL || want[c]);
    bool need_status = on[SF__GEN_STATUS] || on[SF__GEN_LATENCY_MS] || on[SF__GEN_BYTES] ||
                       on[SF__GEN_REVENUE];
    bool need_service = need_status || on[SF__GEN_SERVICE] || on[SF__GEN_ENDPOINT];
    if (on[SF__GEN_BYTES]) SF_CALL(sf_batch_enable_valid(b, SF__GEN_BYTES));
    if (on[SF__GEN_REVENUE]) SF_CALL(sf_batch_enable_valid(b, SF__GEN_REVENUE));

    /* A new stamp for this fill; on wrap-around, forget all stamps. */
    if (++m->epoch == 0) {
        vcache_forget(&m->c_service);
        vcache_forget(&m->c_endpoint);
        vcache_forget(&m->c_region);
        vcache_forget(&m->c_ip);
        m->epoch = 1;
    }
    const uint32_t ep = m->epoch;
    sf_column *cols = b->cols;
    size_t bytes_nulls = 0, revenue_nulls = 0;
    uint64_t key[BLOCK];
    uint8_t svc[BLOCK], sti[BLOCK];

    for (uint64_t r0 = 0; r0 < nrows; r0 += BLOCK) {
        size_t nb = nrows - r0 < BLOCK ? (size_t)(nrows - r0) : BLOCK;
        uint64_t i0 = first_row + r0;
        for (size_t k = 0; k < nb; k++) key[k] = mix64(m->seed_key + (i0 + k) * GOLDEN);
        if (need_service)
            for (size_t k = 0; k < nb; k++) svc[k] = (uint8_t)dtab_sample(&m->service_tab, draw(key[k], D_SERVICE));
        if (need_status)
            for (size_t k = 0; k < nb; k++)
                sti[k] = (uint8_t)dtab_sample(&m->status_tab[svc[k]], draw(key[k], D_STATUS));

        if (on[SF__GEN_TIMESTAMP]) {
            int64_t *v = cols[SF__GEN_TIMESTAMP].i64 + r0;
            for (size_t k = 0; k < nb; k++) {
                uint64_t jitter = ((draw(key[k], D_JITTER) >> 32) * 1000) >> 32;   /* 0..999 */
                v[k] = SF__GEN_EPOCH_US + (int64_t)((i0 + k) * 1000 + jitter);
            }
        }
        if (on[SF__GEN_SERVICE]) {
            sf_column *c = &cols[SF__GEN_SERVICE];
            for (size_t k = 0; k < nb; k++)
                SF_CALL(vcache_code(&m->c_service, ep, svc[k], &c->dict, services[svc[k]].name,
                                    m->service_len[svc[k]], &c->code[r0 + k]));
        }
        if (on[SF__GEN_ENDPOINT]) {
            sf_column *c = &cols[SF__GEN_ENDPOINT];
            for (size_t k = 0; k < nb; k++) {
                uint32_t e = m->ep_base[svc[k]] + dtab_sample(&m->endpoint_tab[svc[k]], draw(key[k], D_ENDPOINT));
                SF_CALL(vcache_code(&m->c_endpoint, ep, e, &c->dict, m->ep_name[e], m->ep_len[e], &c->code[r0 + k]));
            }
        }
        if (on[SF__GEN_REGION]) {
            sf_column *c = &cols[SF__GEN_REGION];
            for (size_t k = 0; k < nb; k++) {
                uint32_t g = dtab_sample(&m->region_tab, draw(key[k], D_REGION));
                SF_CALL(vcache_code(&m->c_region, ep, g, &c->dict, regions[g], m->region_len[g], &c->code[r0 + k]));
            }
        }
        if (on[SF__GEN_USER_ID]) {
            int64_t *v = cols[SF__GEN_USER_ID].i64 + r0;
            for (size_t k = 0; k < nb; k++) v[k] = (int64_t)sample_user(m, key[k]);
        }
        if (on[SF__GEN_CLIENT_IP]) {
            sf_column *c = &cols[SF__GEN_CLIENT_IP];
            for (size_t k = 0; k < nb; k++) {
                uint32_t a = dtab_sample(&m->ip_tab, draw(key[k], D_IP));
                SF_CALL(vcache_code(&m->c_ip, ep, a, &c->dict, m->ip_name[a], m->ip_len[a], &c->code[r0 + k]));
            }
        }
        if (on[SF__GEN_STATUS]) {
            int64_t *v = cols[SF__GEN_STATUS].i64 + r0;
            for (size_t k = 0; k < nb; k++) v[k] = status_codes[sti[k]];
        }
        if (on[SF__GEN_LATENCY_MS]) {
            double *v = cols[SF__GEN_LATENCY_MS].f64 + r0;
            for (size_t k = 0; k < nb; k++) {
                const outcome *o = &m->out[svc[k]][sti[k]];
                double x = o->latency_median * lntab_sample(&m->ln_latency, draw(key[k], D_LATENCY));
                double lat = round_pos(x * 1000) / 1000;
                v[k] = lat > 0 ? lat : 0.001;
            }
        }
        if (on[SF__GEN_BYTES]) {
            int64_t *v = cols[SF__GEN_BYTES].i64 + r0;
            uint8_t *valid = cols[SF__GEN_BYTES].valid + r0;
            for (size_t k = 0; k < nb; k++) {
                const outcome *o = &m->out[svc[k]][sti[k]];
                int64_t x = (int64_t)(o->bytes_median * lntab_sample(o->bytes_ln, draw(key[k], D_BYTES)) + 0.5);
                x = x > 0 ? x : 1;
                v[k] = o->bytes_null ? 0 : x;
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
                    double x = round_pos(REVENUE_MEDIAN * lntab_sample(&m->ln_revenue, draw(key[k], D_REVENUE)) * 100) / 100;
                    v[k] = x >= 0.01 ? x : 0.01;
                    valid[k] = 1;
                } else {
                    v[k] = 0.0;
                    valid[k] = 0;
                    revenue_nulls++;
                }
            }
        }
    }
    if (on[SF__GEN_BYTES]) cols[SF__GEN_BYTES].nulls = bytes_nulls;
    if (on[SF__GEN_REVENUE]) cols[SF__GEN_REVENUE].nulls = revenue_nulls;
    b->nrows = nrows;
    return SF_OK;
}

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
} gen_reader;

static sf_status gen_next(sf_reader *r, sf_batch *b, bool *eof)
{
    gen_reader *g = r->impl;
    uint64_t left = r->cfg.rows - g->next_row;
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
    g->next_row = 0;
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

static const sf__reader_ops gen_ops = {gen_next, gen_rewind, gen_destroy};

sf_status sf__gen_open(sf_reader *r)
{
    sf_status rc = SF_OK;
    gen_reader *g = calloc(1, sizeof *g);
    SF_CHECK(g != NULL, SF_ERR_NOMEM, "out of memory (generator)");
    SF_CALL_GOTO(sf__gen_requests_model_create(&r->cfg, &g->model), done);
    SF_CALL_GOTO(sf__gen_requests_schema(&r->schema), done);
    r->total_rows = r->cfg.rows;
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
