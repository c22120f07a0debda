/* A small streaming JSON writer with deterministic output. */
#ifndef SF_JSON_H
#define SF_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/buf.h"
#include "shardflow/status.h"

#define SF_JSON_MAX_DEPTH 64

typedef struct sf_json {
    sf_buf out;
    int depth;
    bool first[SF_JSON_MAX_DEPTH];
    bool after_key;
    bool pretty;
    sf_status rc;  /* sticky: the first failure */
} sf_json;

/* pretty: newline and two-space indentation per level. */
void sf_json_init(sf_json *j, bool pretty);
/* Starts a writer for one value that will follow a key at nesting depth
 * `depth` of another document (inserted there with sf_json_raw): its pretty
 * output is then byte for byte what writing the value in place gives. */
void sf_json_init_value_at(sf_json *j, bool pretty, int depth);
void sf_json_fini(sf_json *j);
void sf_json_obj_begin(sf_json *j);
void sf_json_obj_end(sf_json *j);
void sf_json_arr_begin(sf_json *j);
void sf_json_arr_end(sf_json *j);
void sf_json_key(sf_json *j, const char *k);
void sf_json_keyn(sf_json *j, const char *k, size_t n);
void sf_json_str(sf_json *j, const char *s);
void sf_json_strn(sf_json *j, const char *s, size_t n);
void sf_json_int(sf_json *j, int64_t v);
void sf_json_uint(sf_json *j, uint64_t v);
/* %.17g; non-finite values are written as null. */
void sf_json_num(sf_json *j, double v);
void sf_json_bool(sf_json *j, bool v);
void sf_json_null(sf_json *j);
/* Inserts pre-formatted JSON (a complete value). */
void sf_json_raw(sf_json *j, const char *s, size_t n);
/* Whether s is a number in JSON's grammar (so it can be written as is). */
bool sf_json_is_number(const char *s);
/* Writes the document to path (via a temporary file and rename). */
sf_status sf_json_write_file(sf_json *j, const char *path);

#endif
