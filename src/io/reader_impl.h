/* Internal: the reader vtable each input format implements. */
#ifndef SF_IO_READER_IMPL_H
#define SF_IO_READER_IMPL_H

#include "shardflow/io.h"

#define SF__BAD_ROW_SAMPLES 10

typedef struct sf__reader_ops {
    sf_status (*next)(sf_reader *r, sf_batch *b, bool *eof);
    sf_status (*rewind)(sf_reader *r);
    void (*destroy)(sf_reader *r);   /* frees the format's private data only */
    /* The position after the last batch (see sf_reader_tell). */
    void (*tell)(const sf_reader *r, sf_reader_pos *pos);
    /* Checks that pos can belong to this input and, only if it can, moves
     * there and sets r->bad_rows to the count the position carries; a
     * position that cannot is SF_ERR_ARG and leaves the reader as it was.
     * The caller drops the bad-row samples. */
    sf_status (*seek)(sf_reader *r, const sf_reader_pos *pos);
    /* Parallel reading (see sf_reader_part_count / sf_reader_set_part);
     * part_count may be NULL (the counts are then zeros). set_part is
     * called with begin <= end inside the input's units. */
    sf_status (*part_count)(sf_reader *r, uint64_t begin, uint64_t end, uint64_t counts[2]);
    sf_status (*set_part)(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                          const uint64_t at_end[2]);
    /* The readers of one input may not run next on different threads at
     * once (a library without thread safety underneath). */
    bool serial_next;
    /* Optional, for a reader with serial_next: prepares next() to run
     * without calls into the library underneath (for the current part and
     * projection) and returns true where it then does. */
    bool (*lock_free_next)(sf_reader *r);
    /* Optional: see sf_reader_stable_dict. */
    const sf_dict *(*stable_dict)(const sf_reader *r, int col);
} sf__reader_ops;

/* A reader split into sub-parts (sf_reader_split): sub[0] is the owner
 * itself, the others are readers it opened and destroys. */
typedef struct sf__reader_split {
    int n;
    sf_reader **sub;
    int cur;               /* sf_reader_next: the sub-part being read */
    uint64_t rows;         /* rows that sf_reader_next delivered in this pass */
    uint64_t rows_before;  /* ... of them from the sub-parts before cur */
    /* sf_reader_bad_row_samples of the whole: filled when asked for. */
    sf_bad_row samples[SF__BAD_ROW_SAMPLES];
} sf__reader_split;

struct sf_reader {
    const sf__reader_ops *ops;
    sf_input_config cfg;        /* borrowed pointers: the caller's config outlives the reader */
    sf_schema schema;           /* owned */
    uint8_t *want;              /* projection, schema.ncols entries (1 = load) */
    bool offsets;               /* batches carry row_offset/row_bytes (CSV) */
    uint64_t total_rows;        /* UINT64_MAX if unknown */
    uint64_t data_bytes;
    uint64_t data_start;
    uint64_t bad_rows;
    size_t nbad_samples;
    sf_bad_row bad_samples[SF__BAD_ROW_SAMPLES];
    void *impl;                 /* format-private state */
    sf__reader_split *split;    /* NULL unless split; the counts above are sub-part 0's then */
};

/* Each format's open fills r->ops, r->schema, r->impl and the sizes; r->cfg
 * and r->want are set by the caller (want is all-ones on entry). */
sf_status sf__csv_open(sf_reader *r);
sf_status sf__hdf5_open(sf_reader *r);
sf_status sf__gen_open(sf_reader *r);

/* Records a skipped bad row (counts it, keeps the first few messages). */
void sf__reader_note_bad_row(sf_reader *r, uint64_t line, const char *msg);

/* Writers: each format provides these (CSV in csv_write.c, HDF5 in hdf5_table.c). */
typedef struct sf__writer_ops {
    sf_status (*write)(sf_table_writer *w, const sf_batch *b);
    sf_status (*close)(sf_table_writer *w);
} sf__writer_ops;

struct sf_table_writer {
    const sf__writer_ops *ops;
    sf_schema schema;
    sf_status rc;
    void *impl;
};

sf_status sf__csv_writer_create(sf_table_writer *w, const char *path);
sf_status sf__hdf5_writer_create(sf_table_writer *w, const char *path, const char *group,
                                 bool vlen_strings);

#endif
