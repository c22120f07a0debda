/* The ground truth of a synthetic input: which incidents the generator
 * injected, where (keys) and when (windows), as a JSON document that
 * evaluations compare analyses with. The per-row truth is the generator's
 * `incident` column; this file is its summary, resolved from the
 * configuration alone (no row is generated). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>

#include "io/gen_requests.h"
#include "shardflow/io.h"
#include "shardflow/json.h"

/* Writes the time of row offset `row` (milliseconds after the first row) as
 * an ISO timestamp. */
static void json_row_time(sf_json *j, uint64_t row)
{
    char buf[40];
    size_t n = sf_timestamp_format(SF__GEN_EPOCH_US + (int64_t)row * 1000, buf, sizeof buf);
    sf_json_strn(j, buf, n);
}

static void write_keys(sf_json *j, const sf__gen_incidents *p, int id)
{
    sf_json_obj_begin(j);
    switch (id) {
    case SF__INC_LATENCY:
        sf_json_key(j, "service");
        sf_json_str(j, p->s1_name);
        sf_json_key(j, "region");
        sf_json_str(j, p->r1_name);
        break;
    case SF__INC_ERRORS:
        sf_json_key(j, "service");
        sf_json_str(j, p->s2_name);
        break;
    case SF__INC_CREDENTIALS:
        sf_json_key(j, "client_ip");
        sf_json_arr_begin(j);
        for (int k = 0; k < 3; k++) sf_json_str(j, p->ip[k]);
        sf_json_arr_end(j);
        break;
    case SF__INC_CHECKOUT:
        sf_json_key(j, "service");
        sf_json_str(j, "checkout");
        sf_json_key(j, "region");
        sf_json_str(j, p->r4_name);
        break;
    case SF__INC_ABANDON:
        sf_json_key(j, "region");
        sf_json_str(j, p->r5_name);
        break;
    default: break;
    }
    sf_json_obj_end(j);
}

sf_status sf_gen_truth_write(const sf_input_config *c, const char *path)
{
    SF_CHECK(c != NULL && c->format == SF_INPUT_SYNTHETIC, SF_ERR_ARG,
             "ground truth: only synthetic inputs (input.format: synthetic) have one");
    SF_CHECK(path != NULL && path[0] != '\0', SF_ERR_ARG, "ground truth: no output path");
    sf__gen_incidents p;
    SF_CALL(sf__gen_requests_incidents(c, &p));

    sf_json j;
    sf_json_init(&j, true);
    sf_json_obj_begin(&j);
    sf_json_key(&j, "generator");
    sf_json_str(&j, c->generator);
    sf_json_key(&j, "seed");
    sf_json_uint(&j, c->seed);
    sf_json_key(&j, "rows");
    sf_json_uint(&j, c->rows);
    sf_json_key(&j, "start");
    json_row_time(&j, 0);
    sf_json_key(&j, "end");
    json_row_time(&j, c->rows);
    sf_json_key(&j, "incidents");
    sf_json_arr_begin(&j);
    for (int k = 0; p.on && k < SF__GEN_NINCIDENTS; k++) {
        const sf__gen_incident *x = &p.inc[k];
        sf_json_obj_begin(&j);
        sf_json_key(&j, "id");
        sf_json_int(&j, x->id);
        sf_json_key(&j, "kind");
        sf_json_str(&j, x->kind);
        sf_json_key(&j, "aspect");
        sf_json_str(&j, x->aspect);
        sf_json_key(&j, "keys");
        write_keys(&j, &p, x->id);
        sf_json_key(&j, "start");
        json_row_time(&j, x->first_row);
        sf_json_key(&j, "end");
        json_row_time(&j, x->end_row);
        sf_json_key(&j, "effect");
        sf_json_str(&j, x->effect);
        sf_json_obj_end(&j);
    }
    sf_json_arr_end(&j);
    sf_json_obj_end(&j);
    sf_status rc = sf_json_write_file(&j, path);
    sf_json_fini(&j);
    return rc;
}
