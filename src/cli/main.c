/* The shardflow command line: run, validate, gen. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/comm.h"
#include "shardflow/fault.h"
#include "shardflow/io.h"
#include "shardflow/plugin.h"
#include "shardflow/run.h"

#ifndef SF_VERSION
#define SF_VERSION "0.0.0"
#endif

/* Exit codes (documented in the README). */
enum {
    EXIT_OK = 0,
    EXIT_RUNTIME = 1,   /* I/O, MPI, HDF5, memory, internal errors */
    EXIT_USAGE = 2,     /* bad command line */
    EXIT_CONFIG = 3,    /* invalid workflow file */
    EXIT_INPUT = 4,     /* malformed input data */
    EXIT_COVERAGE = SF_EXIT_COVERAGE,       /* 5: partial result below fault.min_coverage */
    EXIT_INTERRUPTED = SF_EXIT_INTERRUPTED  /* 75: stopped by SIGTERM/SIGUSR1, checkpoint written */
};

static int exit_code(sf_status rc)
{
    switch (rc) {
    case SF_OK: return EXIT_OK;
    case SF_ERR_CONFIG: return EXIT_CONFIG;
    case SF_ERR_PARSE: return EXIT_INPUT;
    case SF_ERR_ARG: return EXIT_USAGE;
    case SF_ERR_COVERAGE: return EXIT_COVERAGE;
    case SF_ERR_INTERRUPTED: return EXIT_INTERRUPTED;
    default: return EXIT_RUNTIME;
    }
}

static void usage(FILE *f)
{
    fputs("usage: shardflow run WORKFLOW.yaml [--out DIR] [--set KEY.PATH=VALUE]... [--threads N]\n"
          "                     [--plugin LIB.so]... [--restart] [--inject FAULT]...\n"
          "       shardflow validate WORKFLOW.yaml [--set KEY.PATH=VALUE]... [--plugin LIB.so]...\n"
          "       shardflow gen [--generator requests] --rows N [--seed S] [--zipf A] [--users U]\n"
          "                     [--incidents] --format csv|hdf5 [--vlen-strings] -o FILE\n"
          "       shardflow agents [--plugin LIB.so]...\n"
          "       shardflow --help | --version\n"
          "\n"
          "Run under MPI: mpirun -np N shardflow run WORKFLOW.yaml\n"
          "Exit codes: 0 ok, 1 runtime error, 2 usage, 3 invalid workflow, 4 bad input data,\n"
          "            5 coverage below fault.min_coverage, 75 stopped by a signal (checkpoint written;\n"
          "            rerun with --restart to resume), 76 the watchdog ended the job.\n",
          f);
}

static int fail_usage(const char *fmt, const char *arg)
{
    if (sf_comm_rank() == 0) {
        fprintf(stderr, "shardflow: ");
        fprintf(stderr, fmt, arg);
        fputc('\n', stderr);
        usage(stderr);
    }
    return EXIT_USAGE;
}

static int parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end || s[0] == '-') return 0;
    *out = v;
    return 1;
}

static int cmd_run(int argc, char **argv, int validate)
{
    sf_run_options o = {0};
    const char **sets = calloc((size_t)argc + 1, sizeof *sets);
    const char **plugins = calloc((size_t)argc + 1, sizeof *plugins);
    if (!sets || !plugins) {
        free(sets);
        free(plugins);
        return EXIT_RUNTIME;
    }
    o.plugins = plugins;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--out") == 0 && !validate) {
            if (++i >= argc) { free(sets); return fail_usage("%s needs a directory", a); }
            o.out_dir = argv[i];
        } else if (strcmp(a, "--set") == 0) {
            if (++i >= argc) { free(sets); return fail_usage("%s needs KEY.PATH=VALUE", a); }
            if (!strchr(argv[i], '=')) { free(sets); return fail_usage("--set %s: expected KEY.PATH=VALUE", argv[i]); }
            sets[o.nsets++] = argv[i];
        } else if (strcmp(a, "--plugin") == 0) {
            if (++i >= argc) { free(sets); free(plugins); return fail_usage("%s needs a shared object", a); }
            plugins[o.nplugins++] = argv[i];
        } else if (strcmp(a, "--restart") == 0 && !validate) {
            o.restart = true;
        } else if (strcmp(a, "--inject") == 0 && !validate) {
            /* Same as one more fault.inject item: --set takes a scalar. */
            if (++i >= argc) { free(sets); free(plugins); return fail_usage("%s needs a fault spec", a); }
            if (o.ninject == SF_RUN_MAX_INJECT) {
                free(sets);
                free(plugins);
                return fail_usage("at most 16 --inject options%s", "");
            }
            o.inject[o.ninject++] = argv[i];
        } else if (strcmp(a, "--threads") == 0 && !validate) {
            uint64_t t;
            if (++i >= argc || !parse_u64(argv[i], &t) || t == 0 || t > 4096) {
                free(sets);
                return fail_usage("--threads needs a number from 1 to 4096%s", "");
            }
            o.threads = (int)t;
        } else if (a[0] == '-' && a[1]) {
            free(sets);
            free(plugins);
            return fail_usage("unknown option %s", a);
        } else if (o.workflow == NULL) {
            o.workflow = a;
        } else {
            free(sets);
            free(plugins);
            return fail_usage("unexpected argument %s", a);
        }
    }
    if (o.workflow == NULL) {
        free(sets);
        free(plugins);
        return fail_usage("%s needs a workflow file", validate ? "validate" : "run");
    }
    o.sets = sets;
    o.validate_only = validate != 0;
    char dir[4096] = "";
    sf_status rc = sf_run(&o, dir);
    free(sets);
    free(plugins);
    if (sf_comm_rank() == 0) {
        if (rc != SF_OK) {
            fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
        } else if (validate) {
            printf("%s: valid\n", o.workflow);
        } else {
            printf("shardflow: results in %s/result.json (run details in %s/run.json)\n", dir, dir);
        }
    }
    if (rc == SF_ERR_INTERRUPTED) {
        /* Every rank exits with the same code; flush what was printed. */
        fflush(stdout);
    }
    return exit_code(rc);
}

static int cmd_gen(int argc, char **argv)
{
    sf_input_config cfg;
    sf_input_config_defaults(&cfg);
    cfg.format = SF_INPUT_SYNTHETIC;
    const char *gen = "requests", *out = NULL, *fmt = NULL;
    int have_rows = 0, vlen = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--vlen-strings") == 0) { vlen = 1; continue; }
        if (strcmp(a, "--incidents") == 0) { cfg.incidents = true; continue; }
        if (v == NULL) return fail_usage("%s needs a value", a);
        i++;
        if (strcmp(a, "--rows") == 0) {
            if (!parse_u64(v, &cfg.rows)) return fail_usage("--rows: not a row count: %s", v);
            have_rows = 1;
        } else if (strcmp(a, "--seed") == 0) {
            if (!parse_u64(v, &cfg.seed)) return fail_usage("--seed: not a number: %s", v);
        } else if (strcmp(a, "--users") == 0) {
            if (!parse_u64(v, &cfg.users) || cfg.users == 0) return fail_usage("--users: not a positive number: %s", v);
        } else if (strcmp(a, "--zipf") == 0) {
            char *end;
            cfg.zipf = strtod(v, &end);
            if (*end || cfg.zipf < 0) return fail_usage("--zipf: not a non-negative number: %s", v);
        } else if (strcmp(a, "--format") == 0) {
            fmt = v;
        } else if (strcmp(a, "--generator") == 0) {
            gen = v;
        } else if (strcmp(a, "-o") == 0 || strcmp(a, "--output") == 0) {
            out = v;
        } else {
            return fail_usage("gen: unknown option %s", a);
        }
    }
    if (!have_rows) return fail_usage("gen needs --rows N%s", "");
    if (!out) return fail_usage("gen needs -o FILE%s", "");
    if (!fmt || (strcmp(fmt, "csv") && strcmp(fmt, "hdf5")))
        return fail_usage("gen needs --format csv or --format hdf5%s", "");
    cfg.generator = (char *)gen;
    sf_reader *r = NULL;
    sf_table_writer *w = NULL;
    sf_batch b;
    int have_batch = 0;
    sf_status rc = sf_reader_open(&cfg, &r);
    if (rc == SF_OK)
        rc = sf_table_writer_create(out, strcmp(fmt, "csv") == 0 ? SF_OUTPUT_CSV : SF_OUTPUT_HDF5,
                                    "/table", sf_reader_schema(r), vlen, &w);
    if (rc == SF_OK) {
        rc = sf_reader_batch_init(r, &b);
        have_batch = rc == SF_OK;
    }
    bool eof = false;
    while (rc == SF_OK) {
        rc = sf_reader_next(r, &b, &eof);
        if (rc != SF_OK || eof) break;
        rc = sf_table_writer_write(w, &b);
    }
    sf_status rc2 = sf_table_writer_close(&w);
    if (rc == SF_OK) rc = rc2;
    if (have_batch) sf_batch_fini(&b);
    sf_reader_destroy(&r);
    if (rc != SF_OK) {
        fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
        return exit_code(rc);
    }
    if (cfg.incidents) {
        char truth[4200];
        snprintf(truth, sizeof truth, "%s.truth.json", out);
        rc = sf_gen_truth_write(&cfg, truth);
        if (rc != SF_OK) {
            fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
            return exit_code(rc);
        }
        printf("shardflow: wrote %" PRIu64 " rows to %s (ground truth in %s)\n", cfg.rows, out, truth);
        return EXIT_OK;
    }
    printf("shardflow: wrote %" PRIu64 " rows to %s\n", cfg.rows, out);
    return EXIT_OK;
}

/* Lists the registered agents (built-ins and those of --plugin libraries). */
static int cmd_agents(int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--plugin") != 0 || i + 1 >= argc) return fail_usage("agents: unknown option %s", argv[i]);
        sf_status rc = sf_plugin_load(argv[++i]);
        if (rc != SF_OK) {
            fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
            return EXIT_CONFIG;
        }
    }
    for (int i = 0; i < sf_agent_count(); i++) {
        const sf_agent_ops *ops = sf_agent_at(i);
        printf("%-12s %s\n", ops->name, ops->aspect ? ops->aspect : "");
    }
    return EXIT_OK;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        usage(stdout);
        return EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
        printf("shardflow %s\n", SF_VERSION);
        return EXIT_OK;
    }
    if (argc >= 2 && strcmp(argv[1], "gen") == 0) return cmd_gen(argc - 2, argv + 2);
    if (argc >= 2 && strcmp(argv[1], "agents") == 0) return cmd_agents(argc - 2, argv + 2);
    if (sf_comm_init(&argc, &argv) != SF_OK) {
        fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
        return EXIT_RUNTIME;
    }
    int code;
    if (argc < 2) {
        code = fail_usage("missing command%s", "");
    } else if (strcmp(argv[1], "run") == 0) {
        code = cmd_run(argc - 2, argv + 2, 0);
    } else if (strcmp(argv[1], "validate") == 0) {
        code = cmd_run(argc - 2, argv + 2, 1);
    } else {
        code = fail_usage("unknown command %s", argv[1]);
    }
    sf_comm_finalize();
    return code;
}
