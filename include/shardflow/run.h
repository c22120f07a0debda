/* Running a workflow end to end. */
#ifndef SF_RUN_H
#define SF_RUN_H

#include <stdbool.h>

#include "shardflow/status.h"

typedef struct sf_run_options {
    const char *workflow;      /* path of the YAML file */
    const char *out_dir;       /* --out, or NULL for output.dir / results/NAME */
    int nsets;
    const char *const *sets;   /* --set key.path=value */
    int threads;               /* --threads, 0 = workflow / automatic */
    bool validate_only;        /* stop after checking the workflow and the input schema */
    int nplugins;
    const char *const *plugins; /* --plugin PATH: agent plugins loaded before the workflow */
    bool restart;              /* --restart: resume from the checkpoint (none: start afresh);
                                * one for another workflow or input is refused */
#define SF_RUN_MAX_INJECT 16
    int ninject;
    const char *inject[SF_RUN_MAX_INJECT]; /* --inject SPEC: added to fault.inject */
} sf_run_options;

/* Loads, plans, distributes, processes, reduces and writes DIR/result.json
 * and DIR/run.json. On failure every rank returns the same status and rank
 * 0's sf_error_message() holds the one message to print. Collective. */
sf_status sf_run(const sf_run_options *o, char *out_dir_used /* out, 4096 bytes */);

#endif
