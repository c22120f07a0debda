/* A small strict JSON reader: parses a document into a read-only tree
 * (objects keep their keys in document order, numbers keep their original
 * text next to the double, strings are unescaped), for reading back the
 * results shardflow writes.
 *
 * Strict means RFC 8259 and nothing more: no comments, no trailing commas,
 * no leading zeros, no NaN or Infinity, no numbers outside the double range,
 * no control characters or invalid UTF-8 in strings, no lone surrogate
 * escapes, no duplicate keys in an object, only whitespace after the value,
 * and at most SF_JV_MAX_DEPTH nested arrays and objects. Anything else fails
 * with SF_ERR_PARSE and a message with the line and column.
 *
 * Every accessor takes NULL (and a value of the wrong type) and answers
 * "absent", so that lookups chain: sf_jv_get(sf_jv_get(root, "a"), "b").
 * A parsed document is immutable: any number of threads may read it. */
#ifndef SF_JSONV_H
#define SF_JSONV_H

#include <stdbool.h>
#include <stddef.h>

#include "shardflow/json.h"
#include "shardflow/status.h"

#define SF_JV_MAX_DEPTH 64

typedef enum sf_jv_type {
    SF_JV_NONE = 0,   /* no value (a NULL sf_jv pointer) */
    SF_JV_NULL = 1,
    SF_JV_BOOL = 2,
    SF_JV_NUM = 3,
    SF_JV_STR = 4,
    SF_JV_ARR = 5,
    SF_JV_OBJ = 6
} sf_jv_type;

typedef struct sf_jv sf_jv;         /* one value of a document */
typedef struct sf_jv_doc sf_jv_doc; /* a parsed document: owns every value */

/* Parses text[0..len) (copied; the caller keeps text). On failure *out is
 * NULL and nothing needs freeing. Not collective. */
sf_status sf_jv_parse(const char *text, size_t len, sf_jv_doc **out /* out */);
/* Frees a document and every value in it; NULL is fine; sets *doc = NULL. */
void sf_jv_destroy(sf_jv_doc **doc);
/* The top-level value (borrowed from doc). */
const sf_jv *sf_jv_root(const sf_jv_doc *doc);

/* The type of v, SF_JV_NONE for NULL. */
sf_jv_type sf_jv_type_of(const sf_jv *v);
/* "null", "boolean", "number", "string", "array", "object" ("nothing" for
 * SF_JV_NONE), for messages. */
const char *sf_jv_type_name(sf_jv_type t);

/* Member of an object by key (the first byte-wise equal key; keys are
 * unique), NULL if absent or v is not an object. Objects with more than a
 * few keys are searched through a sorted index, in O(log n). */
const sf_jv *sf_jv_get(const sf_jv *obj, const char *key);
const sf_jv *sf_jv_getn(const sf_jv *obj, const char *key, size_t keylen);
/* Items of an array or members of an object; 0 for anything else. */
size_t sf_jv_len(const sf_jv *v);
/* The i-th item of an array or the i-th member value of an object (in
 * document order); NULL when out of range. */
const sf_jv *sf_jv_at(const sf_jv *v, size_t i);
/* The i-th key of an object (NUL-terminated, its length in *len, which may
 * be NULL); NULL when out of range or v is not an object. */
const char *sf_jv_key_at(const sf_jv *obj, size_t i, size_t *len);

/* true for a number, with its value in *out. */
bool sf_jv_num(const sf_jv *v, double *out);
/* The original text of a number (not NUL-terminated; length in *len), NULL
 * if v is not a number. */
const char *sf_jv_num_text(const sf_jv *v, size_t *len);
/* The unescaped bytes of a string, NUL-terminated (a string may also hold
 * NUL bytes: use *len, which may be NULL), NULL if v is not a string. */
const char *sf_jv_str(const sf_jv *v, size_t *len);
/* true for a boolean, with its value in *out. */
bool sf_jv_bool(const sf_jv *v, bool *out);

/* Writes v into j: numbers with their original text, strings and keys
 * re-escaped as sf_json does, so a document that sf_json wrote is written
 * back byte for byte (but for "\ufffd", which sf_json writes for invalid
 * UTF-8 and which comes back as the character itself). NULL writes null.
 * Not collective. */
void sf_jv_write(const sf_jv *v, sf_json *j);

#endif
