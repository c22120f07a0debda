/* Benchmark of the shard planners on the synthetic request log.
 *
 *   sharding [ROWS [K]]        (defaults: 2000000 rows, K = 16)
 *
 * For uniform (zipf 0) and skewed (zipf 1.1) keys it generates ROWS rows
 * once into memory (only the key columns), then for each strategy measures
 * the planning time (create + pre-pass over every batch + finish), the
 * routing time of every row, the max/mean imbalance of the routed rows, and
 * the heavy-key note of the plan if it has one. Semantic sharding uses an
 * endpoint -> service map written to a temporary file, made from the
 * endpoints the generator produced ("/api/<service>/<verb>").
 *
 * Planning and routing are timed on data already in memory, so the numbers
 * are the planner's own cost, not the generator's. */
#define _POSIX_C_SOURCE 200809L

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "shardflow/batch.h"
#include "shardflow/config.h"
#include "shardflow/io.h"
#include "shardflow/json.h"
#include "shardflow/shard.h"
#include "shardflow/status.h"

#define BATCH_ROWS 65536

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int fail(const char *what)
{
    fprintf(stderr, "sharding: %s: %s\n", what, sf_error_message());
    return 1;
}

typedef struct dataset {
    sf_schema schema;
    sf_batch *batches;
    size_t nbatches;
    uint64_t rows;
} dataset;

static void dataset_fini(dataset *d)
{
    for (size_t i = 0; i < d->nbatches; i++) sf_batch_fini(&d->batches[i]);
    free(d->batches);
    sf_schema_fini(&d->schema);
    memset(d, 0, sizeof *d);
}

/* Generates the rows (user_id, timestamp, endpoint only) into memory. */
static sf_status dataset_make(uint64_t rows, double zipf, dataset *d)
{
    sf_status rc = SF_OK;
    sf_input_config ic;
    sf_reader *r = NULL;
    uint8_t *want = NULL;
    memset(d, 0, sizeof *d);
    sf_schema_init(&d->schema);
    sf_input_config_defaults(&ic);
    ic.format = SF_INPUT_SYNTHETIC;
    ic.generator = "requests";   /* borrowed: the reader does not free it */
    ic.rows = rows;
    ic.zipf = zipf;
    ic.users = 100000;
    ic.seed = 42;
    ic.batch_rows = BATCH_ROWS;
    SF_CALL_GOTO(sf_reader_open(&ic, &r), done);
    const sf_schema *s = sf_reader_schema(r);
    SF_CALL_GOTO(sf_schema_copy(&d->schema, s), done);
    want = calloc((size_t)s->ncols, 1);
    SF_CHECK_GOTO(want != NULL, SF_ERR_NOMEM, done, "out of memory");
    const char *cols[3] = {"user_id", "timestamp", "endpoint"};
    for (int i = 0; i < 3; i++) {
        int c = sf_schema_find(s, cols[i]);
        SF_CHECK_GOTO(c >= 0, SF_ERR_ARG, done, "generator has no column '%s'", cols[i]);
        want[c] = 1;
    }
    SF_CALL_GOTO(sf_reader_set_projection(r, want), done);
    size_t cap = (size_t)((rows + BATCH_ROWS - 1) / BATCH_ROWS) + 1;
    d->batches = calloc(cap, sizeof *d->batches);
    SF_CHECK_GOTO(d->batches != NULL, SF_ERR_NOMEM, done, "out of memory");
    for (;;) {
        SF_CHECK_GOTO(d->nbatches < cap, SF_ERR_INTERNAL, done, "more batches than expected");
        sf_batch *b = &d->batches[d->nbatches];
        SF_CALL_GOTO(sf_reader_batch_init(r, b), done);
        bool eof = false;
        rc = sf_reader_next(r, b, &eof);
        if (rc != SF_OK || eof || b->nrows == 0) {
            sf_batch_fini(b);
            if (rc != SF_OK) goto done;
            break;
        }
        d->rows += b->nrows;
        d->nbatches++;
    }
done:
    free(want);
    sf_reader_destroy(&r);
    if (rc != SF_OK) dataset_fini(d);
    return rc;
}

/* Writes "key,group" lines mapping every endpoint seen to its service. */
static sf_status write_map(const dataset *d, const char *path)
{
    int ec = sf_schema_find(&d->schema, "endpoint");
    FILE *f = fopen(path, "w");
    SF_CHECK(f != NULL, SF_ERR_IO, "%s: cannot create the map file", path);
    fputs("key,group\n", f);
    /* Endpoints are few (tens): a linear list of the ones written. */
    char (*seen)[96] = NULL;
    size_t nseen = 0, cap = 0;
    sf_status rc = SF_OK;
    for (size_t bi = 0; bi < d->nbatches; bi++) {
        const sf_dict *dict = &d->batches[bi].cols[ec].dict;
        for (uint32_t c = 0; c < dict->n; c++) {
            size_t len;
            const char *e = sf_dict_str(dict, c, &len);
            if (len >= 96) continue;
            size_t k = 0;
            while (k < nseen && (strlen(seen[k]) != len || memcmp(seen[k], e, len) != 0)) k++;
            if (k < nseen) continue;
            if (nseen == cap) {
                cap = cap ? 2 * cap : 64;
                void *ns = realloc(seen, cap * sizeof *seen);
                SF_CHECK_GOTO(ns != NULL, SF_ERR_NOMEM, done, "out of memory");
                seen = ns;
            }
            memcpy(seen[nseen], e, len);
            seen[nseen][len] = '\0';
            nseen++;
            /* "/api/<service>/<verb>" -> "<service>" */
            const char *svc = e, *end = e + len;
            if (len > 5 && memcmp(e, "/api/", 5) == 0) svc = e + 5;
            const char *slash = memchr(svc, '/', (size_t)(end - svc));
            size_t slen = slash ? (size_t)(slash - svc) : (size_t)(end - svc);
            fprintf(f, "%.*s,%.*s\n", (int)len, e, (int)slen, svc);
        }
    }
done:
    free(seen);
    if (fclose(f) != 0 && rc == SF_OK) rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: write failed", path);
    return rc;
}

/* The first heavy-key (range) or heavy-group (semantic) note of a plan's
 * description, as "KEY ~ROWS rows (mean MEAN)" plus the count of others. */
static void heavy_note(const char *desc, char *out, size_t n)
{
    const char *arr = strstr(desc, "\"heavy_keys\":[");
    const char *name_key = "\"key\":", *rows_key = "\"estimated_rows\":";
    if (arr == NULL) {
        arr = strstr(desc, "\"heavy_groups\":[");
        name_key = "\"group\":";
        rows_key = "\"rows\":";
    }
    snprintf(out, n, "-");
    if (arr == NULL) return;
    arr = strchr(arr, '[') + 1;
    if (*arr == ']') return;
    int count = 0, depth = 0;
    for (const char *p = arr; *p && !(depth == 0 && *p == ']'); p++) {
        if (*p == '{' && depth++ == 0) count++;
        if (*p == '}') depth--;
    }
    const char *k = strstr(arr, name_key), *r = strstr(arr, rows_key);
    const char *m = strstr(arr, "\"mean_shard_rows\":");
    if (!k || !r || !m) return;
    k += strlen(name_key);
    const char *kend = strchr(k, ',');
    unsigned long long rows = strtoull(r + strlen(rows_key), NULL, 10);
    double mean = strtod(m + strlen("\"mean_shard_rows\":"), NULL);
    int w = snprintf(out, n, "%.*s alone ~%llu rows > mean %.0f", (int)(kend - k), k, rows, mean);
    if (count > 1 && w > 0 && (size_t)w < n)
        snprintf(out + w, n - (size_t)w, " (+%d more)", count - 1);
}

typedef struct bench_case {
    sf_shard_strategy strategy;
    const char *name;
    const char *key;
    bool map;
} bench_case;

static int run_case(const dataset *d, const bench_case *bc, double zipf, int k, const char *map,
                    uint32_t *shard, uint64_t *sizes)
{
    sf_shard_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.strategy = bc->strategy;
    cfg.key = (char *)bc->key;
    cfg.shards = k;
    cfg.sample = 100000;
    cfg.seed = 1;
    cfg.map = bc->map ? (char *)map : NULL;

    sf_shard_plan *p = NULL;
    double t0 = now_s();
    if (sf_shard_plan_create(&cfg, &d->schema, "bench", &p) != SF_OK) return fail("create");
    if (sf_shard_plan_needs_prepass(p))
        for (size_t i = 0; i < d->nbatches; i++)
            if (sf_shard_plan_observe(p, &d->batches[i]) != SF_OK) {
                sf_shard_plan_destroy(&p);
                return fail("observe");
            }
    if (sf_shard_plan_finish(p, d->rows, 0, 0) != SF_OK) {
        sf_shard_plan_destroy(&p);
        return fail("finish");
    }
    double t1 = now_s();
    memset(sizes, 0, (size_t)k * sizeof *sizes);
    for (size_t i = 0; i < d->nbatches; i++) {
        if (sf_shard_route(p, &d->batches[i], shard) != SF_OK) {
            sf_shard_plan_destroy(&p);
            return fail("route");
        }
        for (size_t r = 0; r < d->batches[i].nrows; r++) sizes[shard[r]]++;
    }
    double t2 = now_s();

    sf_json j;
    sf_json_init(&j, false);
    sf_shard_plan_describe(p, &j);
    char *desc = malloc(j.out.len + 1);
    char note[200] = "-";
    if (desc != NULL) {
        memcpy(desc, j.out.data, j.out.len);
        desc[j.out.len] = '\0';
        heavy_note(desc, note, sizeof note);
        free(desc);
    }
    sf_json_fini(&j);
    printf("%-9s %-10s %4.1f %5d %10.1f %10.1f %9.1f %9.3f  %s\n", bc->name, bc->key ? bc->key : "-",
           zipf, k, 1e3 * (t1 - t0), 1e3 * (t2 - t1), (double)d->rows / (t2 - t1) / 1e6,
           sf_shard_imbalance(sizes, k), note);
    sf_shard_plan_destroy(&p);
    return 0;
}

int main(int argc, char **argv)
{
    uint64_t rows = 2000000;
    int k = 16;
    if (argc > 1) rows = strtoull(argv[1], NULL, 10);
    if (argc > 2) k = atoi(argv[2]);
    if (rows == 0 || k < 1 || argc > 3) {
        fprintf(stderr, "usage: %s [ROWS [K]]   (defaults 2000000 16)\n", argv[0]);
        return 2;
    }
    const bench_case cases[] = {
        {SF_SHARD_SIZE, "size", NULL, false},
        {SF_SHARD_HASH, "hash", "user_id", false},
        {SF_SHARD_RANGE, "range", "user_id", false},
        {SF_SHARD_RANGE, "range", "timestamp", false},
        {SF_SHARD_SEMANTIC, "semantic", "endpoint", true},
    };
    const char *tmp = getenv("TMPDIR");
    char map[512];
    snprintf(map, sizeof map, "%s/sf_bench_map_XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(map);
    if (fd < 0) {
        fprintf(stderr, "sharding: cannot create a temporary map file in %s\n", tmp ? tmp : "/tmp");
        return 1;
    }
    close(fd);

    uint32_t *shard = malloc(BATCH_ROWS * sizeof *shard);
    uint64_t *sizes = malloc((size_t)k * sizeof *sizes);
    int status = shard && sizes ? 0 : 1;
    printf("shard planners: %" PRIu64 " rows of the synthetic request log, K = %d, "
           "100000 users, range sample 100000\n", rows, k);
    printf("plan = create + pre-pass + finish; route = every row; imbalance = max/mean rows\n\n");
    printf("%-9s %-10s %4s %5s %10s %10s %9s %9s  %s\n", "strategy", "key", "skew", "K",
           "plan_ms", "route_ms", "Mrows/s", "max/mean", "heavy key note");
    const double skews[2] = {0.0, 1.1};
    for (int si = 0; si < 2 && status == 0; si++) {
        dataset d;
        double t0 = now_s();
        if (dataset_make(rows, skews[si], &d) != SF_OK) {
            status = fail("generating the input");
            break;
        }
        double tg = now_s() - t0;
        if (write_map(&d, map) != SF_OK) {
            status = fail("writing the map");
            dataset_fini(&d);
            break;
        }
        for (size_t c = 0; c < sizeof cases / sizeof cases[0] && status == 0; c++)
            status = run_case(&d, &cases[c], skews[si], k, map, shard, sizes);
        printf("  (zipf %.1f: %" PRIu64 " rows generated in %.0f ms, not counted above)\n",
               skews[si], d.rows, 1e3 * tg);
        dataset_fini(&d);
    }
    unlink(map);
    free(shard);
    free(sizes);
    return status;
}
