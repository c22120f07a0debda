/* Columnar batches with a schema.
 *
 * A batch holds up to `cap` rows of every column of its schema. Integers and
 * timestamps are int64 (timestamps in microseconds since 1970-01-01T00:00:00
 * UTC), floats are float64, strings are dictionary-encoded: each row holds a
 * uint32 code into the column's dictionary. A null (an empty CSV field) has
 * valid[row] == 0; `valid == NULL` means that no row is null. Batches are
 * reused: sf_batch_clear keeps every allocation, so readers do not allocate
 * per batch on the hot path. Not thread-safe; a batch may be read by many
 * threads at once while nobody writes it. */
#ifndef SF_BATCH_H
#define SF_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/status.h"

typedef enum sf_type {
    SF_TYPE_NONE = 0,
    SF_INT64 = 1,
    SF_FLOAT64 = 2,
    SF_STRING = 3,
    SF_TIMESTAMP = 4
} sf_type;

/* "int64", "float64", "string", "timestamp". */
const char *sf_type_name(sf_type t);
/* Parses a type name; SF_TYPE_NONE if unknown. */
sf_type sf_type_parse(const char *name);

typedef struct sf_field {
    char *name;
    sf_type type;
} sf_field;

typedef struct sf_schema {
    int ncols;
    sf_field *fields;
} sf_schema;

void sf_schema_init(sf_schema *s);
void sf_schema_fini(sf_schema *s);
/* Appends a column (name copied). */
sf_status sf_schema_add(sf_schema *s, const char *name, sf_type type);
/* Index of a column by name, -1 if absent. */
int sf_schema_find(const sf_schema *s, const char *name);
sf_status sf_schema_copy(sf_schema *dst, const sf_schema *src);
/* Writes the column names as "a, b, c" into buf (cut with "..." if too
 * long), for messages. */
void sf_schema_format_columns(const sf_schema *s, char *buf, size_t n);

/* A string dictionary with a hash index for interning. */
typedef struct sf_dict {
    uint32_t n;        /* number of strings */
    uint32_t *off;     /* n + 1 offsets into bytes */
    char *bytes;       /* concatenated strings (not terminated) */
    size_t bytes_len, bytes_cap;
    uint32_t off_cap;
    uint32_t *slots;   /* open-addressing index: code + 1, 0 = empty */
    uint64_t *hashes;  /* hash of each string, by code */
    uint32_t nslots;
    /* 0, or the id (sf_dict_stable_id) of an immutable dictionary this one
     * is or is a view of: two dictionaries with the same non-zero id hold
     * the same strings under the same codes, so a cache from codes to
     * anything may be kept from one to the other. sf_dict_copy does not
     * copy it. */
    uint64_t stable_id;
} sf_dict;

void sf_dict_init(sf_dict *d);
/* A new non-zero id, unique in the process (thread-safe), for a dictionary
 * that stays unchanged from now on (sf_dict.stable_id). */
uint64_t sf_dict_stable_id(void);
void sf_dict_fini(sf_dict *d);
void sf_dict_clear(sf_dict *d);
/* Returns the code of s, adding it if new. */
sf_status sf_dict_intern(sf_dict *d, const char *s, size_t len, uint32_t *code /* out */);
/* Makes d a copy of src: the same strings under the same codes (and an
 * index, so that d can be interned into). For a reader whose vocabulary is
 * known up front: copying a prebuilt dictionary costs a memcpy, interning
 * its strings again a hash and a probe each. */
sf_status sf_dict_copy(sf_dict *d, const sf_dict *src);
/* Finds the code of s without adding it; false if absent. Const (safe for
 * concurrent readers); works on dictionaries without an index too. */
bool sf_dict_find(const sf_dict *d, const char *s, size_t len, uint32_t *code /* out */);
/* The bytes of string `code` (not terminated) and their length. */
static inline const char *sf_dict_str(const sf_dict *d, uint32_t code, size_t *len /* out */)
{
    *len = d->off[code + 1] - d->off[code];
    return d->bytes + d->off[code];
}

typedef struct sf_column {
    sf_type type;
    bool loaded;       /* false when the reader skipped this column */
    int64_t *i64;      /* SF_INT64, SF_TIMESTAMP */
    double *f64;       /* SF_FLOAT64 */
    uint32_t *code;    /* SF_STRING */
    sf_dict dict;      /* SF_STRING */
    uint8_t *valid;    /* NULL: no nulls; else 1 = present, 0 = null */
    size_t nulls;
} sf_column;

typedef struct sf_batch {
    int ncols;
    sf_column *cols;
    size_t nrows;
    size_t cap;
    uint64_t first_row;     /* global index (0-based, data rows) of row 0 */
    int64_t *row_offset;    /* optional (CSV): byte offset of each row in the file */
    uint32_t *row_bytes;    /* optional (CSV): raw bytes of each row in the file */
    /* Engine-private: the batch's own column buffers while a reader has
     * pointed columns at memory it lends (a mapped file, read-only); NULL
     * when nothing is lent. sf_batch_clear and sf_batch_fini give lent
     * columns their own buffers back. */
    struct sf__batch_lent *lent;
} sf_batch;

/* Creates an empty batch for schema s with room for cap rows. Columns with
 * want[i] == 0 are not allocated (loaded = false); want may be NULL (all). */
sf_status sf_batch_init(sf_batch *b, const sf_schema *s, const uint8_t *want, size_t cap);
void sf_batch_fini(sf_batch *b);
/* Grows every loaded column (and offsets) to hold at least cap rows. */
sf_status sf_batch_reserve(sf_batch *b, size_t cap);
/* Drops all rows, keeps allocations. */
void sf_batch_clear(sf_batch *b);
/* Allocates the per-row offset/bytes arrays (CSV readers). */
sf_status sf_batch_enable_offsets(sf_batch *b);
/* Allocates the validity array of column c (all rows so far marked valid). */
sf_status sf_batch_enable_valid(sf_batch *b, int c);
/* Marks row r of column c null (enables the validity array if needed). The
 * value slot is left as zero. */
sf_status sf_batch_set_null(sf_batch *b, int c, size_t r);
/* The zero bytes (nulls) of validity bytes valid[0..n): 8 bytes a step, a
 * few instructions each (any nonzero byte counts as present). */
size_t sf_valid_nulls(const uint8_t *valid, size_t n);

static inline bool sf_col_is_null(const sf_column *c, size_t r)
{
    return c->valid != NULL && c->valid[r] == 0;
}

/* Value of a numeric column (int64, float64, timestamp) as a double. */
static inline double sf_col_as_double(const sf_column *c, size_t r)
{
    return c->type == SF_FLOAT64 ? c->f64[r] : (double)c->i64[r];
}

/* Formats row r of column c as text into buf (size n); returns the length.
 * Strings are copied raw, int64 in decimal, float64 with %.17g, timestamps
 * as ISO-8601 (YYYY-MM-DDTHH:MM:SS[.ffffff]). Nulls give "". */
size_t sf_col_format(const sf_column *c, size_t r, char *buf, size_t n);

/* Timestamps. Parses "YYYY-MM-DD[ T]HH:MM:SS[.f{1,6}]" (UTC) to microseconds.
 * Returns false if s[0..len) is not such a timestamp. */
bool sf_timestamp_parse(const char *s, size_t len, int64_t *us /* out */);
/* Writes the ISO form into buf (at least 32 bytes); returns length. */
size_t sf_timestamp_format(int64_t us, char *buf, size_t n);

#endif
