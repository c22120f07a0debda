/* The synthetic `requests` generator: a web-service request log.
 *
 * Randomness is counter-based. Row i has a key mix64(seed_key + i * GOLDEN)
 * (the i-th output of a splitmix64 stream), and draw k of that row is
 * mix64(key + (k + 1) * GOLDEN). Every field reads fixed draw numbers, so a
 * row is a pure function of (seed, i, options): ranges can be generated in any
 * order and size, and leaving a column out (projection) changes nothing else.
 *
 * Categorical fields are sampled from cumulative tables with 63-bit integer
 * thresholds and a guide table (Chen and Asau's cutpoint method): the top bits
 * of the draw pick a starting index, from which a short linear scan finds the
 * answer; the expected cost is O(1) and the result is exact (no floating-point
 * boundary cases). User ids above SF__GEN_MAX_TABLE use Hoermann and
 * Derflinger's rejection-inversion sampler instead, which needs no table.
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

/* A discrete distribution: thr[k] = P(X <= k) * 2^63 (last = 2^63), and
 * guide[j] = the least k with thr[k] > j << (63 - gbits). */
typedef struct dtab {
    uint32_t n;
    int gbits;
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

/* Per-vocabulary dictionary codes of the current fill. */
typedef struct vcache {
    uint32_t n;
    uint32_t *code;
    uint32_t *stamp;
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
    int gbits = 4;
    while (gbits < 20 && ((uint32_t)1 << gbits) < n) gbits++;
    t->n = n;
    t->gbits = gbits;
    t->thr = malloc(sizeof *t->thr * n);
    t->guide = malloc(sizeof *t->guide * ((size_t)1 << gbits));
    if (t->thr == NULL || t->guide == NULL) {
        dtab_fini(t);
        SF_CHECK(false, SF_ERR_NOMEM, "out of memory (generator table of %u entries)", n);
    }
    /* Cumulative sums in order; the last threshold is exactly 2^63, so every
     * 63-bit draw is below it and the scan always stops. */
    double total = 0;
    for (uint32_t k = 0; k < n; k++) total += w ? w[k] : (s == 0 ? 1.0 : pow((double)(k + 1), -s));
    double cum = 0;
    for (uint32_t k = 0; k < n; k++) {
        cum += w ? w[k] : (s == 0 ? 1.0 : pow((double)(k + 1), -s));
        double p = cum / total;
        uint64_t v = p >= 1.0 ? (UINT64_C(1) << 63) : (uint64_t)(p * 0x1p63);
        if (k > 0 && v < t->thr[k - 1]) v = t->thr[k - 1];
        t->thr[k] = v;
    }
    t->thr[n - 1] = UINT64_C(1) << 63;
    uint32_t k = 0;
    for (uint64_t j = 0; j < ((uint64_t)1 << gbits); j++) {
        uint64_t lo = j << (63 - gbits);
        while (t->thr[k] <= lo) k++;
        t->guide[j] = k;
    }
    return SF_OK;
}

/* Index (0-based) drawn from t with the random bits x. */
static inline uint32_t dtab_sample(const dtab *t, uint64_t x)
{
    x >>= 1;
    uint32_t k = t->guide[x >> (63 - t->gbits)];
    while (t->thr[k] <= x) k++;
    return k;
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
    c->code = calloc(n, sizeof *c->code);
    c->stamp = calloc(n, sizeof *c->stamp);
    SF_CHECK(c->code && c->stamp, SF_ERR_NOMEM, "out of memory (generator vocabulary)");
    return SF_OK;
}

static void vcache_fini(vcache *c)
{
    free(c->code);
    free(c->stamp);
    memset(c, 0, sizeof *c);
}

/* The code of vocabulary entry i in dictionary d, interning it on the first
 * use in this fill. */
static inline sf_status vcache_code(vcache *c, uint32_t epoch, uint32_t i, sf_dict *d, const char *s,
                                    size_t len, uint32_t *code)
{
    if (c->stamp[i] != epoch) {
        SF_CALL(sf_dict_intern(d, s, len, &c->code[i]));
        c->stamp[i] = epoch;
    }
    *code = c->code[i];
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
        memset(m->c_service.stamp, 0, sizeof(uint32_t) * m->c_service.n);
        memset(m->c_endpoint.stamp, 0, sizeof(uint32_t) * m->c_endpoint.n);
        memset(m->c_region.stamp, 0, sizeof(uint32_t) * m->c_region.n);
        memset(m->c_ip.stamp, 0, sizeof(uint32_t) * m->c_ip.n);
        m->epoch = 1;
    }
    const uint32_t ep = m->epoch;
    sf_column *cols = b->cols;
    size_t bytes_nulls = 0, revenue_nulls = 0;
    const uint64_t checkout = 6, payments = 8;   /* indices in services[] */

    for (size_t r = 0; r < nrows; r++) {
        uint64_t i = first_row + r;
        uint64_t key = mix64(m->seed_key + i * GOLDEN);

        if (on[SF__GEN_TIMESTAMP]) {
            uint64_t jitter = ((draw(key, D_JITTER) >> 32) * 1000) >> 32;   /* 0..999 */
            cols[SF__GEN_TIMESTAMP].i64[r] = SF__GEN_EPOCH_US + (int64_t)(i * 1000 + jitter);
        }
        uint32_t sv = 0;
        if (need_service) sv = dtab_sample(&m->service_tab, draw(key, D_SERVICE));
        if (on[SF__GEN_SERVICE])
            SF_CALL(vcache_code(&m->c_service, ep, sv, &cols[SF__GEN_SERVICE].dict, services[sv].name,
                                m->service_len[sv], &cols[SF__GEN_SERVICE].code[r]));
        if (on[SF__GEN_ENDPOINT]) {
            uint32_t e = m->ep_base[sv] + dtab_sample(&m->endpoint_tab[sv], draw(key, D_ENDPOINT));
            SF_CALL(vcache_code(&m->c_endpoint, ep, e, &cols[SF__GEN_ENDPOINT].dict, m->ep_name[e],
                                m->ep_len[e], &cols[SF__GEN_ENDPOINT].code[r]));
        }
        if (on[SF__GEN_REGION]) {
            uint32_t g = dtab_sample(&m->region_tab, draw(key, D_REGION));
            SF_CALL(vcache_code(&m->c_region, ep, g, &cols[SF__GEN_REGION].dict, regions[g],
                                m->region_len[g], &cols[SF__GEN_REGION].code[r]));
        }
        if (on[SF__GEN_USER_ID]) cols[SF__GEN_USER_ID].i64[r] = (int64_t)sample_user(m, key);
        if (on[SF__GEN_CLIENT_IP]) {
            uint32_t a = dtab_sample(&m->ip_tab, draw(key, D_IP));
            SF_CALL(vcache_code(&m->c_ip, ep, a, &cols[SF__GEN_CLIENT_IP].dict, m->ip_name[a],
                                m->ip_len[a], &cols[SF__GEN_CLIENT_IP].code[r]));
        }
        if (!need_status) continue;
        int status = status_codes[dtab_sample(&m->status_tab[sv], draw(key, D_STATUS))];
        if (on[SF__GEN_STATUS]) cols[SF__GEN_STATUS].i64[r] = status;

        if (on[SF__GEN_LATENCY_MS]) {
            /* Cached answers and refusals are fast, upstream failures slow. */
            double f = 1.0;
            if (status == 304 || status == 301) f = 0.4;
            else if (status == 401 || status == 403 || status == 429) f = 0.3;
            else if (status == 400 || status == 404) f = 0.5;
            else if (status == 500) f = 2.0;
            else if (status == 502) f = 3.0;
            else if (status == 503) f = 0.2;
            double x = services[sv].latency_median_ms * f * lntab_sample(&m->ln_latency, draw(key, D_LATENCY));
            double lat = round(x * 1000) / 1000;
            cols[SF__GEN_LATENCY_MS].f64[r] = lat > 0 ? lat : 0.001;
        }
        if (on[SF__GEN_BYTES]) {
            sf_column *c = &cols[SF__GEN_BYTES];
            if (status == 204 || status == 304) {
                c->i64[r] = 0;
                c->valid[r] = 0;
                bytes_nulls++;
            } else {
                uint64_t d = draw(key, D_BYTES);
                double x;
                if (status < 300) x = services[sv].bytes_median * lntab_sample(&m->ln_bytes_ok, d);
                else if (status < 400) x = 180 * lntab_sample(&m->ln_bytes_other, d);
                else if (status < 500) x = 250 * lntab_sample(&m->ln_bytes_other, d);
                else x = 400 * lntab_sample(&m->ln_bytes_other, d);
                int64_t v = (int64_t)llround(x);
                c->i64[r] = v > 0 ? v : 1;
                c->valid[r] = 1;
            }
        }
        if (on[SF__GEN_REVENUE]) {
            sf_column *c = &cols[SF__GEN_REVENUE];
            if ((sv == checkout || sv == payments) && status >= 200 && status < 300) {
                double amount = round(REVENUE_MEDIAN * lntab_sample(&m->ln_revenue, draw(key, D_REVENUE)) * 100) / 100;
                c->f64[r] = amount >= 0.01 ? amount : 0.01;
                c->valid[r] = 1;
            } else {
                c->f64[r] = 0.0;
                c->valid[r] = 0;
                revenue_nulls++;
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
