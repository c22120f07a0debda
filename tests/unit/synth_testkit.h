/* Helpers shared by the unit tests of the synthesis (findings rules,
 * combine, consensus, quality checks): a workflow of stages and aspects
 * built around hand-written agent results, sf_synth_write into a parsed
 * document, and typed reads of that document that fail the test when a
 * field is missing. The functions are static inline so that a test using
 * only some of them compiles without unused-function warnings. */
#ifndef SF_TESTS_SYNTH_TESTKIT_H
#define SF_TESTS_SYNTH_TESTKIT_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "shardflow/config.h"
#include "shardflow/json.h"
#include "shardflow/jsonv.h"
#include "shardflow/status.h"
#include "shardflow/synth.h"

#include "flow/yaml_tree.h"

/* Timestamps of the results, in microseconds since the epoch. */
#define T0 INT64_C(1767225600000000) /* 2026-01-01T00:00:00 */
#define MIN INT64_C(60000000)

/* ---- fixture: a workflow of stages and aspects around hand-made results ---- */

typedef struct tagent {
    const char *stage, *aspect, *id;
    int nby;
    const char *by[4];
    const char *json;
} tagent;

typedef struct fixture {
    sf_cfg_node *root;
    sf_workflow w;
    sf_stage_config stages[4];
    sf_aspect_config aspects[4][4];
    sf_synth_agent agents[16];
    sf_synth_input in;
} fixture;

/* yaml holds findings: {STAGE: {ASPECT: [rules]}} and synthesis:. */
static inline void fx_build(fixture *f, const char *yaml, const tagent *ag, int n)
{
    memset(f, 0, sizeof *f);
    assert_int_equal(sf__cfg_parse("test.yaml", yaml, strlen(yaml), &f->root), SF_OK);
    f->w.file = "test.yaml";
    f->w.stages = f->stages;
    const sf_cfg_node *fnd = sf_cfg_get(f->root, "findings");
    for (int i = 0; i < n; i++) {
        int s = -1;
        for (int k = 0; k < f->w.nstages; k++)
            if (strcmp(f->stages[k].name, ag[i].stage) == 0) s = k;
        if (s < 0) {
            s = f->w.nstages++;
            f->stages[s].name = (char *)ag[i].stage;
            f->stages[s].aspects = f->aspects[s];
            f->stages[s].line = 1;
        }
        sf_stage_config *st = &f->stages[s];
        if (ag[i].aspect != NULL) {
            int a = -1;
            for (int k = 0; k < st->naspects; k++)
                if (strcmp(st->aspects[k].name, ag[i].aspect) == 0) a = k;
            if (a < 0) {
                a = st->naspects++;
                st->aspects[a].name = (char *)ag[i].aspect;
                st->aspects[a].line = 1;
                st->aspects[a].findings = sf_cfg_get(sf_cfg_get(fnd, st->name), ag[i].aspect);
            }
        }
        sf_synth_agent *x = &f->agents[i];
        x->stage = ag[i].stage;
        x->aspect = ag[i].aspect;
        x->id = ag[i].id;
        x->agent = "test";
        x->nby = ag[i].nby;
        x->by = ag[i].by;
        x->line = 1;
        x->json = ag[i].json;
        x->json_len = ag[i].json ? strlen(ag[i].json) : 0;
    }
    f->w.synthesis = sf_cfg_get(f->root, "synthesis");
    f->in.w = &f->w;
    f->in.nagents = n;
    f->in.agents = f->agents;
    f->in.coverage = (sf_synth_coverage){.shards_done = 4, .shards_total = 4, .rows_done = 100, .rows_total = 100};
}

static inline void fx_fini(fixture *f) { sf__cfg_node_free(f->root); }

/* sf_synth_write into a fresh object; the parsed output in *out. */
static inline sf_status fx_write(fixture *f, sf_jv_doc **out)
{
    sf_json j;
    sf_json_init(&j, false);
    sf_json_obj_begin(&j);
    sf_status rc = sf_synth_write(&f->in, &j);
    sf_json_obj_end(&j);
    *out = NULL;
    if (rc == SF_OK) {
        assert_int_equal(j.rc, SF_OK);
        if (sf_jv_parse((const char *)j.out.data, j.out.len, out) != SF_OK)
            fail_msg("output is not JSON: %s", sf_error_message());
    }
    sf_json_fini(&j);
    return rc;
}


static inline double num(const sf_jv *v, const char *key)
{
    double d;
    if (!sf_jv_num(sf_jv_get(v, key), &d)) fail_msg("no number '%s'", key);
    return d;
}

static inline const char *str(const sf_jv *v, const char *key)
{
    const char *s = sf_jv_str(sf_jv_get(v, key), NULL);
    if (s == NULL) fail_msg("no string '%s'", key);
    return s;
}

static inline void assert_close(double a, double b)
{
    if (!(fabs(a - b) <= 1e-12 * fmax(1.0, fabs(b)))) fail_msg("%.17g != %.17g", a, b);
}

#endif
