/* A STREAM-style copy loop (a[i] = b[i]) that measures this machine's memory
 * bandwidth, so that bench/peers can put the HDF5 scan rate beside it.
 *
 * Each array holds max(8 x the last-level cache, 256 MiB) unless a size is
 * given, capped at an eighth of physical memory so that the two arrays never
 * take more than a quarter of it. The copy runs 10 times with 1 thread and 10
 * times with 2 threads (or the thread counts given); the best time of each
 * counts, and bytes are counted as STREAM counts them: 8 read + 8 written per
 * element (write-allocate traffic is not counted). Pages are first touched by
 * the thread that later copies them (static schedule in both loops), so on a
 * multi-socket machine each thread copies memory local to it.
 *
 * Built by bench/peers/run.sh with `cc -O2 -fopenmp`; at -O2 GCC may turn the
 * loop into memcpy calls, which is what an ordinary program's copies use too.
 *
 * usage: stream [MIB_PER_ARRAY [THREADS...]]
 * prints one line per thread count: "copy threads=T mib=M best_s=S gbps=G" */
#define _POSIX_C_SOURCE 200809L

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REPEATS 10

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Size of the largest cache the C library reports, 0 if none. */
static long llc_bytes(void)
{
    long best = 0;
#ifdef _SC_LEVEL3_CACHE_SIZE
    long l3 = sysconf(_SC_LEVEL3_CACHE_SIZE);
    if (l3 > best) best = l3;
#endif
#ifdef _SC_LEVEL2_CACHE_SIZE
    long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    if (l2 > best) best = l2;
#endif
    return best;
}

static int parse_long(const char *s, long *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v <= 0) return -1;
    *out = v;
    return 0;
}

int main(int argc, char **argv)
{
    long mib = 0;
    if (argc > 1 && parse_long(argv[1], &mib) != 0) {
        fprintf(stderr, "stream: bad size '%s' (MiB per array)\n", argv[1]);
        return 2;
    }
    if (mib == 0) {
        long llc = llc_bytes();
        mib = (8 * llc + (1L << 20) - 1) >> 20;
        if (mib < 256) mib = 256;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages > 0 && page > 0) {
        long cap = (long)(((double)pages * (double)page / 8.0) / (1 << 20));
        if (mib > cap) mib = cap;
    }
    size_t n = (size_t)mib * ((size_t)1 << 20) / sizeof(double);

    double *a = malloc(n * sizeof(double));
    double *b = malloc(n * sizeof(double));
    if (a == NULL || b == NULL) {
        fprintf(stderr, "stream: cannot allocate 2 x %ld MiB\n", mib);
        free(a);
        free(b);
        return 1;
    }

    int nthreads_list[16] = {1, 2};
    int nlist = 2;
    if (argc > 2) {
        nlist = 0;
        for (int i = 2; i < argc && nlist < 16; i++) {
            long t = 0;
            if (parse_long(argv[i], &t) != 0 || t > 1024) {
                fprintf(stderr, "stream: bad thread count '%s'\n", argv[i]);
                free(a);
                free(b);
                return 2;
            }
            nthreads_list[nlist++] = (int)t;
        }
    }

    int rc = 0;
    for (int k = 0; k < nlist; k++) {
        int nt = nthreads_list[k];
        omp_set_num_threads(nt);
        /* First touch with the same static partition as the copy. */
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            a[i] = 0.0;
            b[i] = (double)(i & 1023);
        }
        double best = 1e30;
        for (int r = 0; r < REPEATS; r++) {
            double t0 = now_s();
#pragma omp parallel for schedule(static)
            for (size_t i = 0; i < n; i++) a[i] = b[i];
            double t = now_s() - t0;
            if (t < best) best = t;
        }
        /* Read one value back so the copy cannot be optimised away, and check it. */
        size_t probe = n / 3;
        if (a[probe] != (double)(probe & 1023)) {
            fprintf(stderr, "stream: copy check failed at %zu\n", probe);
            rc = 1;
        }
        double bytes = 2.0 * (double)n * sizeof(double);
        printf("copy threads=%d mib=%ld best_s=%.6f gbps=%.3f\n", nt, mib, best, bytes / best / 1e9);
    }
    free(a);
    free(b);
    return rc;
}
