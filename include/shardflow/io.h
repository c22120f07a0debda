/* Table readers (CSV, HDF5, synthetic) behind one streaming interface. */
#ifndef SF_IO_H
#define SF_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shardflow/batch.h"
#include "shardflow/status.h"

typedef enum sf_input_format {
    SF_INPUT_CSV = 1,
    SF_INPUT_HDF5 = 2,
    SF_INPUT_SYNTHETIC = 3
} sf_input_format;

typedef enum sf_bad_row_policy {
    SF_BAD_ROW_FAIL = 0,
    SF_BAD_ROW_SKIP = 1
} sf_bad_row_policy;

/* A column type given in the workflow (input.schema). */
typedef struct sf_type_hint {
    char *name;
    sf_type type;
} sf_type_hint;

/* What the workflow says about the input. Strings are owned by the config. */
typedef struct sf_input_config {
    sf_input_format format;
    char *path;               /* csv, hdf5 */
    char *group;              /* hdf5: group holding the column datasets */
    char *generator;          /* synthetic: "requests" */
    uint64_t rows;            /* synthetic: number of rows */
    uint64_t seed;            /* synthetic */
    double zipf;              /* synthetic: Zipf exponent of keys (0 = uniform) */
    uint64_t users;           /* synthetic: number of distinct user ids */
    bool incidents;           /* synthetic: inject the five incidents (default false) */
    char delimiter;           /* csv, default ',' */
    sf_bad_row_policy on_bad_row;
    size_t max_line_length;   /* csv: longest record in bytes (default 1 MiB) */
    size_t block_size;        /* csv: read size in bytes (default 4 MiB) */
    size_t batch_rows;        /* rows per batch produced by readers (default 65536) */
    size_t infer_rows;        /* csv: rows sampled for type inference (default 1000) */
    bool fadvise;             /* csv: tell the kernel the reads are sequential (default true) */
    int nhints;
    sf_type_hint *hints;      /* input.schema */
    bool mmap;                /* hdf5: plain numeric columns read from a mapping of the file (default true) */
} sf_input_config;

/* Writes the ground truth of a synthetic input (the injected incidents, see
 * the README) as JSON to path (via a temporary file and rename). Fails for
 * inputs that are not synthetic. Not collective. */
sf_status sf_gen_truth_write(const sf_input_config *c, const char *path);

/* Fills the defaults above (format unset). */
void sf_input_config_defaults(sf_input_config *c);
/* Frees the strings and hints. */
void sf_input_config_fini(sf_input_config *c);

/* One skipped bad row, for run.json. */
typedef struct sf_bad_row {
    uint64_t line;
    char message[240];
} sf_bad_row;

typedef struct sf_reader sf_reader;

/* Opens the input, reads the schema (CSV: header plus type inference over the
 * first infer_rows records). Not collective: only one rank opens an input. */
sf_status sf_reader_open(const sf_input_config *cfg, sf_reader **out);
void sf_reader_destroy(sf_reader **r);
const sf_schema *sf_reader_schema(const sf_reader *r);
/* A dictionary that the codes of string column col index in every batch
 * this reader fills (the batch's own dictionary holds the same strings
 * under the same codes, or a prefix of them), immutable and with a
 * stable_id, living as long as the reader; NULL where the reader promises
 * none (its dictionaries grow with the data read). The generator's client
 * addresses have one; CSV and HDF5 columns none. */
const sf_dict *sf_reader_stable_dict(const sf_reader *r, int col);
/* Restricts which columns are converted (want[i] != 0); others are left
 * unloaded in the batches. want == NULL loads all. Call before the first next.
 * The array is copied. */
sf_status sf_reader_set_projection(sf_reader *r, const uint8_t *want);
/* Changes the rows per batch for batches initialised after this call. */
void sf_reader_set_batch_rows(sf_reader *r, size_t rows);
size_t sf_reader_batch_rows(const sf_reader *r);
/* Initialises a batch suitable for this reader (schema, projection, offsets). */
sf_status sf_reader_batch_init(sf_reader *r, sf_batch *b);
/* Reads the next rows into b (cleared first). At the end, b->nrows == 0 and
 * *eof is true. Errors name file, line and column. */
sf_status sf_reader_next(sf_reader *r, sf_batch *b, bool *eof /* out */);
/* Starts again from the first data row (for a new pass). */
sf_status sf_reader_rewind(sf_reader *r);
/* Where a reader is: opaque to callers, stored in checkpoints. Four words
 * (CSV: byte offset of the next record, its physical line, rows delivered,
 * bad rows skipped; HDF5 and synthetic: next row, rows delivered, the
 * input's row count, 0). Only the count of bad rows carries across a seek,
 * not their sample messages (run.json after a restart lists those seen
 * since). */
typedef struct sf_reader_pos {
    uint64_t v[4];
} sf_reader_pos;
/* The position after the last batch returned by sf_reader_next (at the
 * start: the first data row). Not collective. */
void sf_reader_tell(const sf_reader *r, sf_reader_pos *pos /* out */);
/* Continues reading from a position that sf_reader_tell gave for the same
 * input (after a rewind or on a fresh reader with the same config and
 * projection): the following batches hold exactly the rows that followed
 * it, with the same line numbers in messages and the same bad-row count.
 * A position that cannot belong to this input (past its end, inside the
 * header) is SF_ERR_ARG. Not collective. */
sf_status sf_reader_seek(sf_reader *r, const sf_reader_pos *pos);
/* Parallel reading (distribute.mode: parallel-read): every rank reads one
 * part of the input. A part is given in the input's own units: byte
 * offsets into the file for CSV (between sf_reader_data_start and
 * data_start + sf_reader_data_bytes), row indices for HDF5 and synthetic
 * inputs.
 *
 * The nominal bounds of part p of n: an even split of those units. Not
 * collective. */
void sf_reader_part_bounds(const sf_reader *r, int p, int n, uint64_t *begin /* out */, uint64_t *end /* out */);
/* CSV: counts the quote characters (counts[0]) and line feeds (counts[1])
 * in the file bytes [begin, end); other inputs: zeros. Reads with pread,
 * so the reader's position is unchanged, and it changes nothing in the
 * reader: several threads may count ranges of one reader at once. Not
 * collective. */
sf_status sf_reader_part_count(sf_reader *r, uint64_t begin, uint64_t end, uint64_t counts[2] /* out */);
/* Restricts the reader to one part, from its start: the following batches
 * (and those after any rewind) hold only the part's rows. begin and end are
 * nominal bounds; before[0..1] are the counts (sf_reader_part_count) of the
 * bytes [data_start, begin), that is, the sum over the parts before.
 *
 * CSV: the part holds the records that start at or after B(begin) and
 * before B(end), where B(x) is the first record boundary at or after x
 * (data_start for x = data_start, the end of the file for x = its end): the
 * first position after a line feed at which an even number of quotes has
 * been seen since data_start. That is exact for RFC 4180 files, so the
 * parts of all ranks together hold every record exactly once. A quote
 * inside an unquoted field (which the reader otherwise accepts) can move a
 * boundary inside a quoted field; then the part before it ends inside a
 * quoted field and fails with a message saying so, rather than splitting
 * a record. Line numbers in messages are the file's; the batches'
 * first_row counts rows from the part's start, and row_offset is the
 * file offset as always.
 *
 * HDF5 and synthetic: rows [begin, end); first_row is the global row.
 * A part given twice replaces the first. Not collective. */
sf_status sf_reader_set_part(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                             const uint64_t at_end[2]);
/* Reading one part with several threads (distribute.mode: parallel-read
 * at more than one thread per rank): the part is cut into sub-parts in the
 * same way as the input is cut into parts, and each sub-part is read by its
 * own reader.
 *
 * The nominal bounds of sub-part t of n of [begin, end): an even split, as
 * sf_reader_part_bounds makes of the whole input. Not collective. */
void sf_reader_sub_bounds(uint64_t begin, uint64_t end, int t, int n, uint64_t *sub_begin /* out */,
                          uint64_t *sub_end /* out */);
/* Restricts the reader to the part [cuts[0], cuts[n]) read as n sub-parts
 * [cuts[t], cuts[t + 1]) (nominal bounds, ascending); at[2t] and at[2t + 1]
 * (t = 0..n) are the counts (sf_reader_part_count: quotes, line feeds) of
 * the bytes [data_start, cuts[t]).
 * Sub-part 0 is read by r itself, each other one by a reader that this call
 * opens with r's config (its schema must be r's) and that r owns; the
 * boundaries between them are found as between parts (see
 * sf_reader_set_part), so the sub-parts together hold exactly the records
 * of the part [cuts[0], cuts[n]), each once, with the file's line numbers.
 * n == 1 is sf_reader_set_part(r, cuts[0], cuts[1], at, at + 2). From
 * then on sf_reader_rewind, sf_reader_set_projection and
 * sf_reader_set_batch_rows act on every sub-part; sf_reader_bad_rows counts
 * the bad rows of all of them and sf_reader_bad_row_samples gives the first
 * ones in file order (sub-part 0's, then 1's, ...). sf_reader_next reads
 * the sub-parts one after the other (batches never mix two; CSV first_row
 * counts from the part's start as without a split). A split reader cannot
 * seek (SF_ERR_ARG), and sf_reader_tell describes sub-part 0 only. A
 * later sf_reader_set_part or sf_reader_split replaces the split. On
 * failure the reader is left with no sub-parts and must be given a part
 * again before it is read. Not collective. */
sf_status sf_reader_split(sf_reader *r, int n, const uint64_t *cuts, const uint64_t *at);
/* The sub-parts of r: 1 for a reader that was not split. */
int sf_reader_split_count(const sf_reader *r);
/* Reads the next rows of sub-part t (0 <= t < sf_reader_split_count) into b
 * (a batch of sf_reader_batch_init(r), cleared first), as sf_reader_next
 * does for a whole reader; errors name the file's line. Each sub-part has
 * its own position, independent of the others and of sf_reader_next's. */
sf_status sf_reader_next_sub(sf_reader *r, int t, sf_batch *b, bool *eof /* out */);
/* Whether sf_reader_next_sub may run for different sub-parts on different
 * threads at once (each sub-part on one thread at a time): true for CSV and
 * the generator; for HDF5 where the HDF5 library was built thread-safe, or
 * where every loaded column of every sub-part is read raw (plain numbers,
 * see the HDF5 reader), which calls the library only here, to look up the
 * parts' chunks. Ask after the parts and the projection are set. Not
 * collective. */
bool sf_reader_sub_concurrent(sf_reader *r);
/* Rows in the input if known without reading it (HDF5, synthetic), else
 * UINT64_MAX. */
uint64_t sf_reader_total_rows(const sf_reader *r);
/* Bytes of data (CSV: file size after the header; others: 0 if unknown). */
uint64_t sf_reader_data_bytes(const sf_reader *r);
/* Byte offset where data rows start (CSV: after the header), else 0. */
uint64_t sf_reader_data_start(const sf_reader *r);
/* Bad rows skipped so far in this pass (on_bad_row: skip), and the first few
 * of them with their messages. */
uint64_t sf_reader_bad_rows(const sf_reader *r);
size_t sf_reader_bad_row_samples(const sf_reader *r, const sf_bad_row **rows /* out */);

/* Writers used by `shardflow gen` and by tests. */
typedef struct sf_table_writer sf_table_writer;
typedef enum sf_output_format { SF_OUTPUT_CSV = 1, SF_OUTPUT_HDF5 = 2 } sf_output_format;
/* Creates path; for HDF5 the columns are 1-D chunked datasets in group
 * (default "/table"); vlen_strings selects variable-length strings instead
 * of fixed-length ones. Not collective. */
sf_status sf_table_writer_create(const char *path, sf_output_format fmt, const char *group,
                                 const sf_schema *s, bool vlen_strings, sf_table_writer **out);
sf_status sf_table_writer_write(sf_table_writer *w, const sf_batch *b);
/* Flushes and closes; *w set to NULL. Returns the first error of the writer. */
sf_status sf_table_writer_close(sf_table_writer **w);

#endif
