/* The cost of exactness: nanoseconds per value for summing lognormal doubles
 * and their squares with
 *   (a) plain double accumulation (order-dependent, the baseline),
 *   (b) two exact superaccumulators (sf_xsum),
 *   (c) the full `stats` agent process(): ungrouped, and grouped by a string
 *       key with 12 distinct values, with its vector block kernels (where
 *       the CPU has them) and without (value by value, SF_STATS_SIMD=0),
 * each the best of several runs, with the ratio to (a).
 *
 * Usage: accum_cost [N]   (default 10000000 values) */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "shardflow/agent.h"
#include "shardflow/xsum.h"

#include "agents/stats_kernels.h"

#define REPEATS 5
#define MORSEL 16384

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static uint64_t rng_state = 42;

static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static double uniform01(void)
{
    return ((double)(rnd() >> 11) + 0.5) * 0x1p-53; /* in (0, 1) */
}

/* Lognormal(0, 1) by Box-Muller. */
static void lognormal(double *v, size_t n)
{
    const double two_pi = 6.283185307179586;
    for (size_t i = 0; i < n; i += 2) {
        double r = sqrt(-2.0 * log(uniform01()));
        double a = two_pi * uniform01();
        v[i] = exp(r * cos(a));
        if (i + 1 < n) v[i + 1] = exp(r * sin(a));
    }
}

static volatile double sink;

static double run_plain(const double *v, size_t n)
{
    double t0 = now_s();
    double s = 0.0, q = 0.0;
    for (size_t i = 0; i < n; i++) {
        s += v[i];
        q += v[i] * v[i];
    }
    double t = now_s() - t0;
    sink = s + q;
    return t;
}

static double run_xsum(const double *v, size_t n)
{
    sf_xsum s, q;
    double t0 = now_s();
    sf_xsum_init(&s);
    sf_xsum_init(&q);
    for (size_t i = 0; i < n; i++) {
        sf_xsum_add(&s, v[i]);
        sf_xsum_add(&q, v[i] * v[i]);
    }
    double t = now_s() - t0;
    sink = sf_xsum_round(&s) + sf_xsum_round(&q);
    return t;
}

static int run_agent(const sf_agent_ops *ops, const sf_agent_config *cfg, const sf_batch *b,
                     double *seconds)
{
    void *state = calloc(1, ops->state_size);
    if (state == NULL) return -1;
    int rc = -1;
    if (ops->init(state, cfg) != SF_OK) {
        free(state);
        return -1;
    }
    double t0 = now_s();
    for (size_t at = 0; at < b->nrows; at += MORSEL) {
        size_t end = at + MORSEL < b->nrows ? at + MORSEL : b->nrows;
        if (ops->process(state, b, &(sf_rows){at, end - at, NULL, SF_ROWS_NO_SHARD}) != SF_OK) goto done;
    }
    *seconds = now_s() - t0;
    sf_json j;
    sf_json_init(&j, false);
    rc = ops->report(state, &j) == SF_OK ? 0 : -1;
    sf_json_fini(&j);
done:
    ops->destroy(state);
    free(state);
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 10000000;
    if (n == 0) {
        fprintf(stderr, "usage: accum_cost [N]\n");
        return 2;
    }
    static const char *const keys[12] = {"auth",   "search", "cart",  "checkout", "img", "api",
                                         "events", "login",  "feeds", "profile",  "pay", "ads"};
    sf_schema schema;
    sf_schema_init(&schema);
    sf_batch b;
    if (sf_schema_add(&schema, "latency", SF_FLOAT64) != SF_OK ||
        sf_schema_add(&schema, "service", SF_STRING) != SF_OK ||
        sf_batch_init(&b, &schema, NULL, n) != SF_OK) {
        fprintf(stderr, "accum_cost: %s\n", sf_error_message());
        return 1;
    }
    double *v = b.cols[0].f64;
    lognormal(v, n);
    uint32_t codes[12];
    for (int k = 0; k < 12; k++)
        if (sf_dict_intern(&b.cols[1].dict, keys[k], strlen(keys[k]), &codes[k]) != SF_OK) return 1;
    for (size_t i = 0; i < n; i++) b.cols[1].code[i] = codes[rnd() % 12];
    b.nrows = n;

    sf_agents_register_builtin();
    const sf_agent_ops *ops = sf_agent_find("stats");
    if (ops == NULL) {
        fprintf(stderr, "accum_cost: no stats agent\n");
        return 1;
    }
    int by_col[1] = {1};
    sf_agent_config plain = {.agent = "stats", .id = "stats", .column = "latency", .col = 0,
                             .schema = &schema, .file = "bench", .line = 1};
    sf_agent_config grouped = plain;
    const char *by_name[1] = {"service"};
    grouped.nby = 1;
    grouped.by = by_name;
    grouped.by_col = by_col;

    double best[6] = {INFINITY, INFINITY, INFINITY, INFINITY, INFINITY, INFINITY};
    for (int r = 0; r < REPEATS; r++) {
        double t = run_plain(v, n);
        if (t < best[0]) best[0] = t;
        t = run_xsum(v, n);
        if (t < best[1]) best[1] = t;
        if (run_agent(ops, &plain, &b, &t) != 0) goto fail;
        if (t < best[2]) best[2] = t;
        if (run_agent(ops, &grouped, &b, &t) != 0) goto fail;
        if (t < best[3]) best[3] = t;
        sf__stats_simd_force(0);
        if (run_agent(ops, &plain, &b, &t) != 0) goto fail;
        if (t < best[4]) best[4] = t;
        if (run_agent(ops, &grouped, &b, &t) != 0) goto fail;
        if (t < best[5]) best[5] = t;
        sf__stats_simd_force(-1);
    }

    static const char *const what[6] = {
        "(a) plain double sum of x and x^2",
        "(b) sf_xsum of x and x^2",
        "(c) stats agent, ungrouped",
        "(c) stats agent, by 12-value string key",
        "(c) ungrouped, kernels off",
        "(c) by 12-value key, kernels off",
    };
    printf("accum_cost: %zu lognormal values, best of %d runs, morsels of %d rows, vector kernels %s\n", n,
           REPEATS, MORSEL, sf__stats_simd_enabled() ? "on" : "not available (or SF_STATS_SIMD=0)");
    for (int k = 0; k < 6; k++)
        printf("  %-42s %7.2f ns/value  %6.2fx\n", what[k], 1e9 * best[k] / (double)n,
               best[k] / best[0]);
    sf_batch_fini(&b);
    sf_schema_fini(&schema);
    return 0;
fail:
    fprintf(stderr, "accum_cost: %s\n", sf_error_message());
    return 1;
}
