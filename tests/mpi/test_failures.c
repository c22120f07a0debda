/* A test program: shardflow with an extra "failer" agent that fails on one
 * rank at a chosen point (FAIL_RANK, FAIL_WHAT = process|encode|decode,
 * FAIL_AFTER rows), to check that every failure stops all ranks with one
 * message and no hang. Also an example of registering an agent from C.
 * usage: test_failures WORKFLOW OUTDIR [--set KEY=VALUE]... */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>

#include "shardflow/agent.h"
#include "shardflow/comm.h"
#include "shardflow/run.h"

typedef struct { unsigned long long rows; } st;
static int frank = -1, my = 0;
static const char *what = "";
static unsigned long long after = 0;
static _Atomic unsigned long long seen = 0; /* rows seen by this rank, all threads */

static int hit(const char *w) { return my == frank && strcmp(what, w) == 0; }
static sf_status f_init(void *s, const sf_agent_config *c) { (void)c; memset(s, 0, sizeof(st)); return SF_OK; }
static sf_status f_process(void *s, const sf_batch *b, const sf_rows *r)
{
    (void)b;
    ((st *)s)->rows += r->n;
    seen += r->n;
    if (hit("process") && seen > after)
        return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, "failer: process failed on rank %d after %llu rows", my, seen);
    return SF_OK;
}
static sf_status f_merge(void *into, const void *from) { ((st *)into)->rows += ((const st *)from)->rows; return SF_OK; }
static sf_status f_encode(const void *s, sf_buf *out)
{
    if (hit("encode")) return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "failer: encode failed on rank %d", my);
    return sf_buf_put_u64(out, ((const st *)s)->rows);
}
static sf_status f_decode(void *s, const void *p, size_t n)
{
    if (hit("decode")) return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "failer: decode failed on rank %d", my);
    if (n != 8) return sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__, "bad");
    memcpy(&((st *)s)->rows, p, 8);
    return SF_OK;
}
static sf_status f_report(const void *s, sf_json *j)
{
    sf_json_obj_begin(j); sf_json_key(j, "rows"); sf_json_uint(j, ((const st *)s)->rows); sf_json_obj_end(j);
    return j->rc;
}
static void f_destroy(void *s) { (void)s; }
static const sf_agent_ops ops = {.abi_version = SF_AGENT_ABI_VERSION, .name = "failer", .aspect = "test",
                                 .state_size = sizeof(st), .init = f_init, .process = f_process,
                                 .merge = f_merge, .encode = f_encode, .decode = f_decode,
                                 .report = f_report, .destroy = f_destroy};

int main(int argc, char **argv)
{
    if (sf_comm_init(&argc, &argv) != SF_OK) return 1;
    my = sf_comm_rank();
    if (getenv("FAIL_RANK")) frank = atoi(getenv("FAIL_RANK"));
    if (getenv("FAIL_WHAT")) what = getenv("FAIL_WHAT");
    if (getenv("FAIL_AFTER")) after = strtoull(getenv("FAIL_AFTER"), NULL, 10);
    if (getenv("CHUNK")) sf_comm_set_chunk_limit(strtoull(getenv("CHUNK"), NULL, 10));
    sf_agents_register_builtin();
    sf_agent_register(&ops);
    sf_run_options o = {0};
    o.workflow = argv[1];
    o.out_dir = argv[2];
    const char **sets = calloc((size_t)argc, sizeof *sets);
    for (int i = 3; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--set") == 0) sets[o.nsets++] = argv[i + 1];
    o.sets = sets;
    char dir[4096];
    sf_status rc = sf_run(&o, dir);
    if (my == 0 && rc != SF_OK) fprintf(stderr, "shardflow: error: %s\n", sf_error_message());
    free(sets);
    sf_comm_finalize();
    return rc ? 1 : 0;
}
