/* Range sharding: K contiguous ranges of an ordered key (int64, float64 or
 * timestamp), chosen from a seeded sample of the key.
 *
 * Sampling is bottom-m by a counter-based priority: row g gets the priority
 * splitmix64(seed, g), a bijection of g, and the sample is the m rows of
 * smallest priority. That set depends only on (seed, the rows' global
 * indices, their keys), never on how the rows were cut into batches or in
 * which order the batches came. Candidates below a threshold collect in a
 * buffer of 2m; when it fills, a selection keeps the m smallest and the
 * threshold drops to the largest kept, so a row costs one hash and one
 * comparison and the whole pre-pass O(rows + m log(rows / m)).
 *
 * Splitters: the sorted sample is collapsed into (key, weight) runs; the
 * smallest capacity C for which K contiguous ranges of runs hold every run
 * is found by binary search with a greedy check, then the ranges are cut
 * left to right, each as close to an equal share of what is left as C and
 * the remaining shards allow. A run is never cut, so a key never spans two
 * shards. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "shard/plan_impl.h"

#define GOLDEN_GAMMA UINT64_C(0x9e3779b97f4a7c15)
#define RANGE_MAX_SAMPLE (UINT64_C(1) << 32)

typedef union key64 {
    int64_t i;   /* int64, timestamp */
    double f;    /* float64 */
} key64;

typedef struct sample_ent {
    uint64_t prio;
    key64 v;
} sample_ent;

typedef struct heavy_key {
    key64 v;
    uint64_t weight;   /* sample rows */
    int shard;
} heavy_key;

typedef struct range_plan {
    bool is_float;
    uint64_t want;          /* requested sample size m */
    uint64_t seed;
    uint64_t seedkey;
    sample_ent *cand;       /* candidates, ncand <= 2m */
    size_t ncand, cand_cap;
    uint64_t thresh;        /* rows with prio >= thresh cannot be in the sample */
    uint64_t rows;          /* observed non-null, non-NaN rows */
    uint64_t null_rows, nan_rows;
    /* Result of finish(). */
    uint64_t m;             /* sample size used */
    size_t nsplit;
    key64 *split;           /* nsplit <= K-1, strictly increasing */
    uint64_t *shard_weight; /* K entries, sample rows per shard */
    size_t nruns;           /* distinct sampled keys */
    size_t nheavy;
    heavy_key *heavy;
} range_plan;

static uint64_t priority(const range_plan *r, uint64_t g)
{
    return sf__shard_mix64(r->seedkey + (g + 1) * GOLDEN_GAMMA);
}

static sf_status range_init(sf_shard_plan *p, const sf_shard_config *cfg)
{
    SF_CHECK(cfg->sample >= 1 && cfg->sample <= RANGE_MAX_SAMPLE, SF_ERR_CONFIG,
             "%s: shard.sample must be between 1 and %llu, got %llu", p->file,
             (unsigned long long)RANGE_MAX_SAMPLE, (unsigned long long)cfg->sample);
    range_plan *r = calloc(1, sizeof *r);
    SF_CHECK(r != NULL, SF_ERR_NOMEM, "out of memory creating the shard plan");
    p->impl = r;
    r->is_float = p->key_type == SF_FLOAT64;
    r->want = cfg->sample;
    r->seed = cfg->seed;
    r->seedkey = sf__shard_mix64(cfg->seed ^ UINT64_C(0x5348415244524e47));
    r->thresh = UINT64_MAX;
    return SF_OK;
}

/* Reorders c[0..n) so that c[0..m) holds the m smallest priorities:
 * quickselect with a three-way partition around a median-of-three pivot. */
static void select_smallest(sample_ent *c, size_t n, size_t m)
{
    size_t lo = 0, hi = n;   /* the boundary m lies in [lo, hi] */
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        uint64_t a = c[lo].prio, b = c[mid].prio, d = c[hi - 1].prio;
        uint64_t pivot = a < b ? (b < d ? b : (a < d ? d : a)) : (a < d ? a : (b < d ? d : b));
        /* [lo, lt) < pivot, [lt, gt) == pivot, [gt, hi) > pivot */
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            if (c[i].prio < pivot) {
                sample_ent t = c[lt];
                c[lt++] = c[i];
                c[i++] = t;
            } else if (c[i].prio > pivot) {
                sample_ent t = c[--gt];
                c[gt] = c[i];
                c[i] = t;
            } else {
                i++;
            }
        }
        if (m < lt)
            hi = lt;
        else if (m > gt)
            lo = gt;
        else
            return;
    }
}

/* Keeps the m smallest candidates and lowers the threshold to the largest
 * of them. */
static void compact(range_plan *r)
{
    size_t m = (size_t)r->want;
    if (r->ncand <= m) return;
    select_smallest(r->cand, r->ncand, m);
    uint64_t mx = 0;
    for (size_t i = 0; i < m; i++)
        if (r->cand[i].prio > mx) mx = r->cand[i].prio;
    r->ncand = m;
    r->thresh = mx;
}

static sf_status offer(range_plan *r, uint64_t pr, key64 v)
{
    if (r->ncand == r->cand_cap) {
        size_t full = (size_t)(2 * r->want);
        if (r->cand_cap == full) {
            compact(r);
        } else {
            size_t cap = r->cand_cap ? 2 * r->cand_cap : 1024;
            if (cap > full) cap = full;
            sample_ent *c = realloc(r->cand, cap * sizeof *c);
            SF_CHECK(c != NULL, SF_ERR_NOMEM,
                     "out of memory growing the range sample to %zu keys", cap);
            r->cand = c;
            r->cand_cap = cap;
        }
        /* After a compaction this row may no longer qualify. */
        if (pr >= r->thresh) return SF_OK;
    }
    r->cand[r->ncand++] = (sample_ent){pr, v};
    return SF_OK;
}

static sf_status range_observe(sf_shard_plan *p, const sf_batch *b, const sf_column *key)
{
    range_plan *r = p->impl;
    for (size_t i = 0; i < b->nrows; i++) {
        if (sf_col_is_null(key, i)) {
            r->null_rows++;
            continue;
        }
        key64 v;
        if (r->is_float) {
            v.f = key->f64[i];
            if (v.f != v.f) {
                r->nan_rows++;
                continue;
            }
            if (v.f == 0.0) v.f = 0.0;   /* one zero */
        } else {
            v.i = key->i64[i];
        }
        r->rows++;
        uint64_t pr = priority(r, b->first_row + i);
        if (pr < r->thresh) SF_CALL(offer(r, pr, v));
    }
    return SF_OK;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_f64(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* First index in P[0..n] with P[idx] > x (n + 1 if none). */
static size_t upper_bound_u64(const uint64_t *P, size_t n1, uint64_t x)
{
    size_t lo = 0, hi = n1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (P[mid] <= x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* Largest e <= n with P[e] - P[j] <= cap. */
static size_t next_end(const uint64_t *P, size_t n, size_t j, uint64_t cap)
{
    return upper_bound_u64(P, n + 1, P[j] + cap) - 1;
}

/* Whether the n runs fit in k contiguous ranges of weight <= cap (greedy
 * filling is optimal for contiguous packing). */
static bool feasible(const uint64_t *P, size_t n, uint64_t k, uint64_t cap)
{
    size_t j = 0;
    for (uint64_t used = 0; j < n; used++) {
        if (used == k) return false;
        j = next_end(P, n, j, cap);
    }
    return true;
}

static uint64_t diff_abs(uint64_t a, uint64_t b) { return a > b ? a - b : b - a; }

static sf_status range_finish(sf_shard_plan *p, uint64_t total_rows, uint64_t data_start,
                              uint64_t data_bytes)
{
    sf_status rc = SF_OK;
    range_plan *r = p->impl;
    compact(r);
    size_t m = r->ncand, n = 0;
    uint64_t k = (uint64_t)p->k;
    key64 *vals = NULL, *runs = NULL;
    uint64_t *P = NULL;
    size_t *need = NULL;

    r->m = m;
    r->shard_weight = calloc((size_t)k, sizeof *r->shard_weight);
    SF_CHECK_GOTO(r->shard_weight != NULL, SF_ERR_NOMEM, done, "out of memory finishing the plan");
    if (m == 0) goto done;

    vals = malloc(m * sizeof *vals);
    runs = malloc(m * sizeof *runs);
    P = malloc((m + 1) * sizeof *P);
    SF_CHECK_GOTO(vals && runs && P, SF_ERR_NOMEM, done,
                  "out of memory sorting the range sample (%zu keys)", m);
    for (size_t i = 0; i < m; i++) vals[i] = r->cand[i].v;
    /* key64 is one 8-byte member wide, so the array sorts as int64 or double. */
    qsort(vals, m, sizeof *vals, r->is_float ? cmp_f64 : cmp_i64);

    /* Runs of equal keys with their weights, as prefix sums P[0..n]. */
    uint64_t wmax = 0;
    P[0] = 0;
    for (size_t i = 0; i < m;) {
        size_t e = i + 1;
        if (r->is_float)
            while (e < m && vals[e].f == vals[i].f) e++;
        else
            while (e < m && vals[e].i == vals[i].i) e++;
        runs[n] = vals[i];
        P[n + 1] = P[n] + (e - i);
        if (e - i > wmax) wmax = e - i;
        n++;
        i = e;
    }
    r->nruns = n;

    /* Smallest capacity that fits the runs into K ranges. */
    uint64_t lo = (m + k - 1) / k, hi = m;
    if (lo < wmax) lo = wmax;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (feasible(P, n, k, mid))
            hi = mid;
        else
            lo = mid + 1;
    }
    uint64_t cap = lo;

    /* need[j]: fewest ranges that hold runs j..n-1 under cap; non-increasing. */
    need = malloc((n + 1) * sizeof *need);
    SF_CHECK_GOTO(need != NULL, SF_ERR_NOMEM, done, "out of memory finishing the plan");
    need[n] = 0;
    for (size_t j = n; j-- > 0;) need[j] = 1 + need[next_end(P, n, j, cap)];

    r->split = malloc((size_t)(k > 1 ? k - 1 : 1) * sizeof *r->split);
    SF_CHECK_GOTO(r->split != NULL, SF_ERR_NOMEM, done, "out of memory finishing the plan");
    size_t j = 0;
    for (uint64_t s = 0; s < k && j < n; s++) {
        uint64_t left = k - s;
        size_t e;
        if (left == 1) {
            e = n;
        } else {
            size_t emax = next_end(P, n, j, cap);
            /* Smallest end that still lets the rest fit in left - 1 ranges. */
            size_t a = j + 1, bnd = emax;
            while (a < bnd) {
                size_t mid = a + (bnd - a) / 2;
                if (need[mid] <= left - 1)
                    bnd = mid;
                else
                    a = mid + 1;
            }
            size_t emin = a;
            /* The end closest to an equal share of the rest: minimise
             * |left * (P[e] - P[j]) - (P[n] - P[j])|, ties to the smaller e. */
            uint64_t rest = P[n] - P[j];
            size_t x = emin, y = emax;
            while (x < y) {
                size_t mid = x + (y - x) / 2;
                if (left * (P[mid] - P[j]) >= rest)
                    y = mid;
                else
                    x = mid + 1;
            }
            e = x;
            if (e > emin &&
                diff_abs(left * (P[e - 1] - P[j]), rest) <= diff_abs(left * (P[e] - P[j]), rest))
                e = e - 1;
        }
        r->shard_weight[s] = P[e] - P[j];
        if (e < n) r->split[r->nsplit++] = runs[e];
        j = e;
    }

    /* Keys that alone outweigh the mean shard (w > m / K). */
    for (size_t i = 0; i < n; i++)
        if ((P[i + 1] - P[i]) * k > m) r->nheavy++;
    if (r->nheavy > 0) {
        r->heavy = malloc(r->nheavy * sizeof *r->heavy);
        SF_CHECK_GOTO(r->heavy != NULL, SF_ERR_NOMEM, done, "out of memory finishing the plan");
        size_t h = 0, shard = 0;
        for (size_t i = 0; i < n; i++) {
            while (shard < r->nsplit && (r->is_float ? r->split[shard].f <= runs[i].f
                                                     : r->split[shard].i <= runs[i].i))
                shard++;
            uint64_t w = P[i + 1] - P[i];
            if (w * k > m) r->heavy[h++] = (heavy_key){runs[i], w, (int)shard};
        }
    }
done:
    free(vals);
    free(runs);
    free(P);
    free(need);
    /* The sample is no longer needed once the splitters exist. */
    free(r->cand);
    r->cand = NULL;
    r->ncand = r->cand_cap = 0;
    return rc;
}

/* Number of splitters <= v, without data-dependent branches (the step is
 * masked, not taken), so random keys route at a steady rate. */
static inline size_t count_le_i64(const key64 *s, size_t n, int64_t v)
{
    if (n == 0) return 0;
    const key64 *base = s;
    while (n > 1) {
        size_t half = n / 2;
        base += half & (0 - (size_t)(base[half - 1].i <= v));
        n -= half;
    }
    return (size_t)(base - s) + (base->i <= v);
}

static inline size_t count_le_f64(const key64 *s, size_t n, double v)
{
    if (n == 0) return 0;
    const key64 *base = s;
    while (n > 1) {
        size_t half = n / 2;
        base += half & (0 - (size_t)(base[half - 1].f <= v));
        n -= half;
    }
    return (size_t)(base - s) + (base->f <= v);
}

static sf_status range_route(const sf_shard_plan *p, const sf_batch *b, const sf_column *key,
                             uint32_t *shard)
{
    const range_plan *r = p->impl;
    const size_t ns = r->nsplit;
    const uint32_t last = (uint32_t)p->k - 1;
    if (r->is_float) {
        for (size_t i = 0; i < b->nrows; i++) {
            double v = key->f64[i];
            if (sf_col_is_null(key, i))
                shard[i] = 0;
            else if (v != v)
                shard[i] = last;   /* NaN */
            else
                shard[i] = (uint32_t)count_le_f64(r->split, ns, v);
        }
    } else {
        for (size_t i = 0; i < b->nrows; i++)
            shard[i] = sf_col_is_null(key, i) ? 0 : (uint32_t)count_le_i64(r->split, ns, key->i64[i]);
    }
    return SF_OK;
}

static void key_json(const sf_shard_plan *p, sf_json *j, key64 v)
{
    if (p->key_type == SF_FLOAT64) {
        /* JSON has no infinities: name them rather than print null. */
        if (isinf(v.f))
            sf_json_str(j, v.f > 0 ? "inf" : "-inf");
        else if (isnan(v.f))
            sf_json_str(j, "nan");
        else
            sf_json_num(j, v.f);
    } else if (p->key_type == SF_TIMESTAMP) {
        char buf[64];
        size_t n = sf_timestamp_format(v.i, buf, sizeof buf);
        sf_json_strn(j, buf, n);
    } else {
        sf_json_int(j, v.i);
    }
}

/* Sample weight scaled to the observed rows. */
static uint64_t estimate(const range_plan *r, uint64_t w)
{
    if (r->m == 0) return 0;
    return (uint64_t)((long double)w * (long double)r->rows / (long double)r->m + 0.5L);
}

static void range_describe(const sf_shard_plan *p, sf_json *j)
{
    const range_plan *r = p->impl;
    double mean = (double)r->rows / (double)p->k;
    sf_json_key(j, "sample");
    sf_json_obj_begin(j);
    sf_json_key(j, "requested");
    sf_json_uint(j, r->want);
    sf_json_key(j, "size");
    sf_json_uint(j, p->finished ? r->m : (uint64_t)(r->ncand < r->want ? r->ncand : r->want));
    sf_json_key(j, "seed");
    sf_json_uint(j, r->seed);
    sf_json_key(j, "distinct_keys");
    sf_json_uint(j, r->nruns);
    sf_json_obj_end(j);
    sf_json_key(j, "rows");
    sf_json_uint(j, r->rows);
    sf_json_key(j, "null_rows");
    sf_json_uint(j, r->null_rows);
    if (r->is_float) {
        sf_json_key(j, "nan_rows");
        sf_json_uint(j, r->nan_rows);
    }
    sf_json_key(j, "splitters");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < r->nsplit; i++) key_json(p, j, r->split[i]);
    sf_json_arr_end(j);
    sf_json_key(j, "estimated_rows");
    sf_json_arr_begin(j);
    if (r->shard_weight != NULL)
        for (int s = 0; s < p->k; s++) sf_json_uint(j, estimate(r, r->shard_weight[s]));
    sf_json_arr_end(j);
    sf_json_key(j, "mean_shard_rows");
    sf_json_num(j, mean);
    sf_json_key(j, "heavy_keys");
    sf_json_arr_begin(j);
    for (size_t i = 0; i < r->nheavy; i++) {
        sf_json_obj_begin(j);
        sf_json_key(j, "key");
        key_json(p, j, r->heavy[i].v);
        sf_json_key(j, "estimated_rows");
        sf_json_uint(j, estimate(r, r->heavy[i].weight));
        sf_json_key(j, "mean_shard_rows");
        sf_json_num(j, mean);
        sf_json_key(j, "shard");
        sf_json_int(j, r->heavy[i].shard);
        sf_json_key(j, "note");
        sf_json_str(j, "this key alone is larger than the mean shard and is never split");
        sf_json_obj_end(j);
    }
    sf_json_arr_end(j);
}

/* ---- portable state ----------------------------------------------------- */

/* Body: shard.sample and shard.seed (u64, checked against this plan's
 * config, since describe() reports them from it), m, rows, null_rows,
 * nan_rows, nruns (u64), nsplit (u64) and the splitters, the K shard
 * weights (u64), nheavy (u64) and the heavy keys (key, weight u64, shard
 * u32). Keys travel as the 8 bytes of their int64 or float64 value. */
#define RANGE_FIXED_BYTES (8 * 8)
#define RANGE_HEAVY_BYTES 20

static uint64_t key_bits(key64 v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof u);
    return u;
}

static key64 bits_key(uint64_t u)
{
    key64 v;
    memcpy(&v, &u, sizeof v);
    return v;
}

static sf_status range_encode(const sf_shard_plan *p, sf_buf *out)
{
    const range_plan *r = p->impl;
    size_t k = (size_t)p->k;
    SF_CALL(sf_buf_reserve(out, RANGE_FIXED_BYTES + 8 * (r->nsplit + k) + 8 +
                                    RANGE_HEAVY_BYTES * r->nheavy));
    SF_CALL(sf_buf_put_u64(out, r->want));
    SF_CALL(sf_buf_put_u64(out, r->seed));
    SF_CALL(sf_buf_put_u64(out, r->m));
    SF_CALL(sf_buf_put_u64(out, r->rows));
    SF_CALL(sf_buf_put_u64(out, r->null_rows));
    SF_CALL(sf_buf_put_u64(out, r->nan_rows));
    SF_CALL(sf_buf_put_u64(out, r->nruns));
    SF_CALL(sf_buf_put_u64(out, r->nsplit));
    for (size_t i = 0; i < r->nsplit; i++) SF_CALL(sf_buf_put_u64(out, key_bits(r->split[i])));
    for (size_t s = 0; s < k; s++) SF_CALL(sf_buf_put_u64(out, r->shard_weight[s]));
    SF_CALL(sf_buf_put_u64(out, r->nheavy));
    for (size_t i = 0; i < r->nheavy; i++) {
        SF_CALL(sf_buf_put_u64(out, key_bits(r->heavy[i].v)));
        SF_CALL(sf_buf_put_u64(out, r->heavy[i].weight));
        SF_CALL(sf_buf_put_u32(out, (uint32_t)r->heavy[i].shard));
    }
    return SF_OK;
}

static bool key_less(bool is_float, key64 a, key64 b) { return is_float ? a.f < b.f : a.i < b.i; }

static sf_status range_decode(sf_shard_plan *p, const uint8_t *bytes, size_t n)
{
    sf_status rc = SF_OK;
    range_plan *r = p->impl;
    size_t k = (size_t)p->k;
    key64 *split = NULL;
    uint64_t *weight = NULL;
    heavy_key *heavy = NULL;
    uint64_t want, seed, m, rows, null_rows, nan_rows, nruns, nsplit, nheavy;
    sf_rd rd;
    sf_rd_init(&rd, bytes, n);

    SF_CALL_GOTO(sf_rd_u64(&rd, &want), done);
    SF_CALL_GOTO(sf_rd_u64(&rd, &seed), done);
    SF_CHECK_GOTO(want == r->want && seed == r->seed, SF_ERR_ARG, done,
                  "sampled with shard.sample = %llu and shard.seed = %llu, this plan has "
                  "shard.sample = %llu and shard.seed = %llu",
                  (unsigned long long)want, (unsigned long long)seed,
                  (unsigned long long)r->want, (unsigned long long)r->seed);
    SF_CALL_GOTO(sf_rd_u64(&rd, &m), done);
    SF_CALL_GOTO(sf_rd_u64(&rd, &rows), done);
    SF_CALL_GOTO(sf_rd_u64(&rd, &null_rows), done);
    SF_CALL_GOTO(sf_rd_u64(&rd, &nan_rows), done);
    SF_CALL_GOTO(sf_rd_u64(&rd, &nruns), done);
    /* What finish() guarantees: the sample is at most the requested size
     * and the observed rows, and has at most one run per sampled row. */
    SF_CHECK_GOTO(m <= want && m <= rows, SF_ERR_ARG, done,
                  "sample of %llu keys from %llu rows with shard.sample = %llu",
                  (unsigned long long)m, (unsigned long long)rows, (unsigned long long)want);
    SF_CHECK_GOTO(nruns <= m && (nruns == 0) == (m == 0), SF_ERR_ARG, done,
                  "%llu distinct keys in a sample of %llu", (unsigned long long)nruns,
                  (unsigned long long)m);
    SF_CHECK_GOTO(r->is_float || nan_rows == 0, SF_ERR_ARG, done,
                  "%llu NaN rows for a %s key", (unsigned long long)nan_rows,
                  sf_type_name(p->key_type));

    SF_CALL_GOTO(sf_rd_u64(&rd, &nsplit), done);
    SF_CHECK_GOTO(nsplit < k && (nsplit == 0 || nsplit < nruns), SF_ERR_ARG, done,
                  "%llu splitters for K = %zu shards and %llu distinct keys",
                  (unsigned long long)nsplit, k, (unsigned long long)nruns);
    SF_CHECK_GOTO(nsplit <= (n - rd.off) / 8, SF_ERR_ARG, done,
                  "%llu splitters in the %zu bytes left", (unsigned long long)nsplit, n - rd.off);
    split = malloc((size_t)(nsplit ? nsplit : 1) * sizeof *split);
    SF_CHECK_GOTO(split != NULL, SF_ERR_NOMEM, done, "out of memory decoding %llu splitters",
                  (unsigned long long)nsplit);
    for (size_t i = 0; i < nsplit; i++) {
        uint64_t u;
        SF_CALL_GOTO(sf_rd_u64(&rd, &u), done);
        split[i] = bits_key(u);
        /* route() binary-searches the splitters: they must be ordered. */
        SF_CHECK_GOTO(!r->is_float || split[i].f == split[i].f, SF_ERR_ARG, done,
                      "splitter %zu is NaN", i);
        SF_CHECK_GOTO(i == 0 || key_less(r->is_float, split[i - 1], split[i]), SF_ERR_ARG, done,
                      "splitter %zu is not above splitter %zu", i, i - 1);
    }

    SF_CHECK_GOTO(k <= (n - rd.off) / 8, SF_ERR_ARG, done,
                  "%zu shard weights in the %zu bytes left", k, n - rd.off);
    weight = malloc(k * sizeof *weight);
    SF_CHECK_GOTO(weight != NULL, SF_ERR_NOMEM, done, "out of memory decoding %zu shard weights", k);
    uint64_t total = 0;
    for (size_t s = 0; s < k; s++) {
        SF_CALL_GOTO(sf_rd_u64(&rd, &weight[s]), done);
        SF_CHECK_GOTO(weight[s] <= m - total, SF_ERR_ARG, done,
                      "shard weights exceed the sample of %llu keys", (unsigned long long)m);
        total += weight[s];
    }
    SF_CHECK_GOTO(total == m, SF_ERR_ARG, done, "shard weights sum to %llu, the sample has %llu",
                  (unsigned long long)total, (unsigned long long)m);

    SF_CALL_GOTO(sf_rd_u64(&rd, &nheavy), done);
    SF_CHECK_GOTO(nheavy <= nruns, SF_ERR_ARG, done, "%llu heavy keys among %llu distinct keys",
                  (unsigned long long)nheavy, (unsigned long long)nruns);
    SF_CHECK_GOTO(nheavy <= (n - rd.off) / RANGE_HEAVY_BYTES, SF_ERR_ARG, done,
                  "%llu heavy keys in the %zu bytes left", (unsigned long long)nheavy, n - rd.off);
    if (nheavy > 0) {
        heavy = malloc((size_t)nheavy * sizeof *heavy);
        SF_CHECK_GOTO(heavy != NULL, SF_ERR_NOMEM, done, "out of memory decoding %llu heavy keys",
                      (unsigned long long)nheavy);
    }
    for (size_t i = 0; i < nheavy; i++) {
        uint64_t u, w;
        uint32_t sh;
        SF_CALL_GOTO(sf_rd_u64(&rd, &u), done);
        SF_CALL_GOTO(sf_rd_u64(&rd, &w), done);
        SF_CALL_GOTO(sf_rd_u32(&rd, &sh), done);
        SF_CHECK_GOTO(w <= m && sh <= nsplit, SF_ERR_ARG, done,
                      "heavy key %zu: %llu sample rows of %llu on shard %u of %llu used", i,
                      (unsigned long long)w, (unsigned long long)m, (unsigned)sh,
                      (unsigned long long)nsplit + 1);
        heavy[i] = (heavy_key){bits_key(u), w, (int)sh};
    }
    SF_CHECK_GOTO(rd.off == n, SF_ERR_ARG, done, "%zu trailing bytes", n - rd.off);

    /* Valid: replace whatever the plan held (an observed sample included,
     * which finish() would have dropped too). */
    free(r->cand);
    free(r->split);
    free(r->shard_weight);
    free(r->heavy);
    r->cand = NULL;
    r->ncand = r->cand_cap = 0;
    r->m = m;
    r->rows = rows;
    r->null_rows = null_rows;
    r->nan_rows = nan_rows;
    r->nruns = (size_t)nruns;
    r->nsplit = (size_t)nsplit;
    r->split = split;
    r->shard_weight = weight;
    r->nheavy = (size_t)nheavy;
    r->heavy = heavy;
    split = NULL;
    weight = NULL;
    heavy = NULL;
done:
    free(split);
    free(weight);
    free(heavy);
    return rc;
}

static void range_destroy(sf_shard_plan *p)
{
    range_plan *r = p->impl;
    free(r->cand);
    free(r->split);
    free(r->shard_weight);
    free(r->heavy);
    free(r);
    p->impl = NULL;
}

const sf__shard_ops sf__shard_range_ops = {
    .name = "range",
    .needs_prepass = true,
    .init = range_init,
    .observe = range_observe,
    .finish = range_finish,
    .route = range_route,
    .describe = range_describe,
    .encode = range_encode,
    .decode = range_decode,
    .destroy = range_destroy,
};
