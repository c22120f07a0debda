/* Fault settings, seeded fault injection and crash points.
 *
 * Every decision is a pure function of (seed, spec, pass, shard, round,
 * morsel, attempt): the same shard pieces fail whatever the rank count,
 * the thread count or the order in which the pieces are processed, so a
 * run with injected faults is as reproducible as one without. */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardflow/fault.h"

void sf_fault_config_defaults(sf_fault_config *f)
{
    memset(f, 0, sizeof *f);
    f->seed = 1;
    f->max_attempts = 3;
    f->backoff = 0.01;
    f->task_timeout = 0.0;
    f->min_coverage = 1.0;
    f->grace = 60.0;
    f->redistribute = true;
    f->speculate = true;
    f->watchdog = 0.0;
}

void sf_fault_config_fini(sf_fault_config *f)
{
    free(f->inject);
    memset(f, 0, sizeof *f);
}

void sf_checkpoint_config_defaults(sf_checkpoint_config *c)
{
    memset(c, 0, sizeof *c);
    c->enabled = true;
    c->every_shards = 0;
    c->every_seconds = 60.0;
    c->restart = SF_RESTART_AUTO;
}

void sf_checkpoint_config_fini(sf_checkpoint_config *c)
{
    free(c->dir);
    memset(c, 0, sizeof *c);
}

/* ---- parsing "KIND:key=value,..." ---- */

static const char *const kind_names[] = {NULL, "error", "hang", "slow", "corrupt", "oom", "crash"};

static const char *const crash_points[] = {"round",        "ckpt.begin",   "ckpt.partial", "ckpt.closed",
                                           "ckpt.rotated", "ckpt.renamed", "ckpt.done",    NULL};

static bool parse_num(const char *v, double *out)
{
    char *end = NULL;
    double d = strtod(v, &end);
    if (end == v || *end != '\0') return false;
    *out = d;
    return true;
}

static bool parse_int(const char *v, long long *out)
{
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0') return false;
    *out = n;
    return true;
}

sf_status sf_fault_parse(const char *spec, sf_fault_spec *out)
{
    memset(out, 0, sizeof *out);
    out->shard = -1;
    out->rank = -1;
    out->level = -1;
    out->factor = 1.0;
    char buf[512];
    SF_CHECK(spec != NULL && strlen(spec) < sizeof buf, SF_ERR_CONFIG, "fault spec too long");
    snprintf(buf, sizeof buf, "%s", spec);
    char *colon = strchr(buf, ':');
    if (colon) *colon = '\0';
    for (int k = 1; k <= SF_FAULT_CRASH; k++)
        if (strcmp(buf, kind_names[k]) == 0) out->kind = (sf_fault_kind)k;
    SF_CHECK(out->kind != 0, SF_ERR_CONFIG,
             "fault '%s': unknown kind '%s' (expected error, hang, slow, corrupt, oom or crash)", spec, buf);
    char *save = NULL;
    for (char *kv = colon ? strtok_r(colon + 1, ",", &save) : NULL; kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        SF_CHECK(eq != NULL, SF_ERR_CONFIG, "fault '%s': expected key=value, found '%s'", spec, kv);
        *eq = '\0';
        const char *key = kv, *val = eq + 1;
        double d;
        long long n;
        bool ok = true;
        if (strcmp(key, "rate") == 0) ok = parse_num(val, &out->rate) && out->rate >= 0 && out->rate <= 1;
        else if (strcmp(key, "shard") == 0) ok = parse_int(val, &n) && n >= 0 && n < INT32_MAX && ((out->shard = (int)n), 1);
        else if (strcmp(key, "rank") == 0) ok = parse_int(val, &n) && n >= 0 && n < INT32_MAX && ((out->rank = (int)n), 1);
        else if (strcmp(key, "level") == 0) ok = parse_int(val, &n) && n >= 0 && n < INT32_MAX && ((out->level = (int)n), 1);
        else if (strcmp(key, "attempts") == 0) ok = parse_int(val, &n) && n >= 1 && n < 1000000 && ((out->attempts = (int)n), 1);
        else if (strcmp(key, "seconds") == 0) ok = parse_num(val, &out->seconds) && out->seconds >= 0;
        else if (strcmp(key, "factor") == 0) ok = parse_num(val, &out->factor) && out->factor >= 1;
        else if (strcmp(key, "rows") == 0) ok = parse_int(val, &n) && n >= 1 && ((out->rows = (uint64_t)n), 1);
        else if (strcmp(key, "at") == 0) ok = parse_int(val, &n) && n >= 1 && ((out->at = (uint64_t)n), 1);
        else if (strcmp(key, "point") == 0) {
            ok = false;
            for (int i = 0; crash_points[i]; i++) ok = ok || strcmp(val, crash_points[i]) == 0;
            if (ok) snprintf(out->point, sizeof out->point, "%s", val);
            else
                return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                                    "fault '%s': unknown crash point '%s' (round, ckpt.begin, ckpt.partial, "
                                    "ckpt.closed, ckpt.rotated, ckpt.renamed, ckpt.done)",
                                    spec, val);
        } else {
            return sf_error_set(SF_ERR_CONFIG, __FILE__, __LINE__,
                                "fault '%s': unknown key '%s' (rate, shard, rank, level, attempts, seconds, factor, "
                                "rows, point, at)",
                                spec, key);
        }
        (void)d;
        SF_CHECK(ok, SF_ERR_CONFIG, "fault '%s': bad value '%s' for %s", spec, val, key);
    }
    switch (out->kind) {
    case SF_FAULT_CRASH:
        if (out->point[0] == '\0') snprintf(out->point, sizeof out->point, "round");
        if (out->at == 0) out->at = 1;
        break;
    case SF_FAULT_SLOW:
        SF_CHECK(out->factor > 1.0, SF_ERR_CONFIG, "fault '%s': slow needs factor > 1", spec);
        break;
    case SF_FAULT_CORRUPT:
        if (out->rows == 0) out->rows = 1;
        /* fall through */
    default:
        SF_CHECK(out->rate > 0 || out->shard >= 0, SF_ERR_CONFIG,
                 "fault '%s': say where: rate=P (per morsel) or shard=N", spec);
    }
    return SF_OK;
}

/* ---- the active configuration ---- */

static sf_fault_spec *active;
static int nactive;
static uint64_t active_seed;
static int my_rank;
#define MAX_POINTS 8
static _Atomic uint64_t point_hits[MAX_POINTS];

sf_status sf_fault_activate(const sf_fault_config *f, int rank)
{
    sf_fault_deactivate();
    my_rank = rank;
    active_seed = f->seed;
    if (f->ninject == 0) return SF_OK;
    active = malloc(sizeof *active * (size_t)f->ninject);
    SF_CHECK(active != NULL, SF_ERR_NOMEM, "out of memory (fault injection)");
    memcpy(active, f->inject, sizeof *active * (size_t)f->ninject);
    nactive = f->ninject;
    return SF_OK;
}

void sf_fault_deactivate(void)
{
    free(active);
    active = NULL;
    nactive = 0;
    for (int i = 0; i < MAX_POINTS; i++) atomic_store(&point_hits[i], 0);
}

void sf_fault_point(const char *point)
{
    int idx = -1;
    for (int i = 0; crash_points[i] && i < MAX_POINTS; i++)
        if (strcmp(point, crash_points[i]) == 0) idx = i;
    if (idx < 0 || nactive == 0) return;
    uint64_t n = atomic_fetch_add(&point_hits[idx], 1) + 1;
    for (int i = 0; i < nactive; i++) {
        const sf_fault_spec *s = &active[i];
        if (s->kind != SF_FAULT_CRASH || strcmp(s->point, point) != 0) continue;
        if (s->rank >= 0 && s->rank != my_rank) continue;
        if (s->at != n) continue;
        /* A real crash: no flushing, no handlers, no MPI_Finalize. */
        static const char msg[] = "shardflow: injected crash\n";
        ssize_t w = write(2, msg, sizeof msg - 1);
        (void)w;
        raise(SIGKILL);
    }
}

static uint64_t mix(uint64_t x)
{
    /* splitmix64's finaliser: a good 64-bit bijection. */
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

sf_fault_kind sf_fault_morsel(int level, uint32_t shard, uint64_t round, uint64_t morsel, int attempt,
                              const sf_fault_spec **spec)
{
    if (spec) *spec = NULL;
    for (int i = 0; i < nactive; i++) {
        const sf_fault_spec *s = &active[i];
        if (s->kind == SF_FAULT_CRASH || s->kind == SF_FAULT_SLOW) continue;
        if (s->rank >= 0 && s->rank != my_rank) continue;
        if (s->level >= 0 && s->level != level) continue;
        if (s->shard >= 0 && (uint32_t)s->shard != shard) continue;
        if (s->attempts > 0 && attempt > s->attempts) continue;
        bool hit;
        if (s->rate > 0) {
            /* The attempt is part of the draw: a retry is a fresh chance
             * unless attempts= makes the fault persistent. */
            uint64_t h = mix(active_seed ^ mix((uint64_t)i + 1));
            h = mix(h ^ (uint64_t)(level + 1));
            h = mix(h ^ shard);
            h = mix(h ^ round);
            h = mix(h ^ morsel);
            if (s->attempts == 0) h = mix(h ^ (uint64_t)attempt);
            hit = (double)(h >> 11) * 0x1.0p-53 < s->rate;
        } else {
            /* shard= without rate: the piece's first morsel (a hang, and
             * corrupt rows: rows= per piece) or every morsel (the others). */
            hit = s->kind == SF_FAULT_HANG || s->kind == SF_FAULT_CORRUPT ? morsel == 0 : true;
        }
        if (hit) {
            if (spec) *spec = s;
            return s->kind;
        }
    }
    return 0;
}

double sf_fault_slow_factor(void)
{
    double f = 1.0;
    for (int i = 0; i < nactive; i++)
        if (active[i].kind == SF_FAULT_SLOW && (active[i].rank < 0 || active[i].rank == my_rank) &&
            active[i].factor > f)
            f = active[i].factor;
    return f;
}
