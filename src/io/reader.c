#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/reader_impl.h"

void sf_input_config_defaults(sf_input_config *c)
{
    memset(c, 0, sizeof *c);
    c->delimiter = ',';
    c->on_bad_row = SF_BAD_ROW_FAIL;
    c->max_line_length = (size_t)1 << 20;
    c->block_size = (size_t)4 << 20;
    c->fadvise = true;
    c->batch_rows = 65536;
    c->infer_rows = 1000;
    c->zipf = 1.1;
    c->users = 100000;
    c->seed = 42;
}

void sf_input_config_fini(sf_input_config *c)
{
    free(c->path);
    free(c->group);
    free(c->generator);
    for (int i = 0; i < c->nhints; i++) free(c->hints[i].name);
    free(c->hints);
    memset(c, 0, sizeof *c);
}

sf_status sf_reader_open(const sf_input_config *cfg, sf_reader **out)
{
    *out = NULL;
    sf_reader *r = calloc(1, sizeof *r);
    SF_CHECK(r != NULL, SF_ERR_NOMEM, "out of memory (reader)");
    r->cfg = *cfg;
    if (r->cfg.batch_rows == 0) r->cfg.batch_rows = 65536;
    sf_schema_init(&r->schema);
    r->total_rows = UINT64_MAX;
    sf_status rc;
    switch (cfg->format) {
    case SF_INPUT_CSV: rc = sf__csv_open(r); break;
    case SF_INPUT_HDF5: rc = sf__hdf5_open(r); break;
    case SF_INPUT_SYNTHETIC: rc = sf__gen_open(r); break;
    default: rc = sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "unknown input format %d", (int)cfg->format);
    }
    if (rc != SF_OK) {
        if (r->ops && r->ops->destroy) r->ops->destroy(r);
        sf_schema_fini(&r->schema);
        free(r);
        return rc;
    }
    *out = r;
    return SF_OK;
}

void sf_reader_destroy(sf_reader **pr)
{
    if (pr == NULL || *pr == NULL) return;
    sf_reader *r = *pr;
    if (r->ops && r->ops->destroy) r->ops->destroy(r);
    sf_schema_fini(&r->schema);
    free(r->want);
    free(r);
    *pr = NULL;
}

const sf_schema *sf_reader_schema(const sf_reader *r) { return &r->schema; }

sf_status sf_reader_set_projection(sf_reader *r, const uint8_t *want)
{
    free(r->want);
    r->want = NULL;
    if (want == NULL) return SF_OK;
    r->want = malloc((size_t)(r->schema.ncols ? r->schema.ncols : 1));
    SF_CHECK(r->want != NULL, SF_ERR_NOMEM, "out of memory (projection)");
    memcpy(r->want, want, (size_t)r->schema.ncols);
    return SF_OK;
}

void sf_reader_set_batch_rows(sf_reader *r, size_t rows) { r->cfg.batch_rows = rows ? rows : 1; }
size_t sf_reader_batch_rows(const sf_reader *r) { return r->cfg.batch_rows; }

sf_status sf_reader_batch_init(sf_reader *r, sf_batch *b)
{
    SF_CALL(sf_batch_init(b, &r->schema, r->want, r->cfg.batch_rows));
    if (r->offsets) {
        sf_status rc = sf_batch_enable_offsets(b);
        if (rc != SF_OK) {
            sf_batch_fini(b);
            return rc;
        }
    }
    return SF_OK;
}

sf_status sf_reader_next(sf_reader *r, sf_batch *b, bool *eof)
{
    *eof = false;
    sf_batch_clear(b);
    return r->ops->next(r, b, eof);
}

sf_status sf_reader_rewind(sf_reader *r)
{
    r->bad_rows = 0;
    r->nbad_samples = 0;
    return r->ops->rewind(r);
}

void sf_reader_tell(const sf_reader *r, sf_reader_pos *pos)
{
    memset(pos, 0, sizeof *pos);
    r->ops->tell(r, pos);
}

sf_status sf_reader_seek(sf_reader *r, const sf_reader_pos *pos)
{
    SF_CALL(r->ops->seek(r, pos));
    /* The messages of the bad rows before pos are not part of the position:
     * the samples restart with the rows read from here, while the count
     * (set by the format) continues the pass's total. */
    r->nbad_samples = 0;
    return SF_OK;
}

uint64_t sf_reader_total_rows(const sf_reader *r) { return r->total_rows; }
uint64_t sf_reader_data_bytes(const sf_reader *r) { return r->data_bytes; }
uint64_t sf_reader_data_start(const sf_reader *r) { return r->data_start; }
uint64_t sf_reader_bad_rows(const sf_reader *r) { return r->bad_rows; }

size_t sf_reader_bad_row_samples(const sf_reader *r, const sf_bad_row **rows)
{
    *rows = r->bad_samples;
    return r->nbad_samples;
}

void sf__reader_note_bad_row(sf_reader *r, uint64_t line, const char *msg)
{
    r->bad_rows++;
    if (r->nbad_samples < SF__BAD_ROW_SAMPLES) {
        sf_bad_row *b = &r->bad_samples[r->nbad_samples++];
        b->line = line;
        snprintf(b->message, sizeof b->message, "%s", msg);
    }
}

sf_status sf_table_writer_create(const char *path, sf_output_format fmt, const char *group,
                                 const sf_schema *s, bool vlen_strings, sf_table_writer **out)
{
    *out = NULL;
    sf_table_writer *w = calloc(1, sizeof *w);
    SF_CHECK(w != NULL, SF_ERR_NOMEM, "out of memory (writer)");
    sf_status rc = sf_schema_copy(&w->schema, s);
    if (rc == SF_OK) {
        if (fmt == SF_OUTPUT_CSV)
            rc = sf__csv_writer_create(w, path);
        else if (fmt == SF_OUTPUT_HDF5)
            rc = sf__hdf5_writer_create(w, path, group ? group : "/table", vlen_strings);
        else
            rc = sf_error_set(SF_ERR_ARG, __FILE__, __LINE__, "unknown output format %d", (int)fmt);
    }
    if (rc != SF_OK) {
        sf_schema_fini(&w->schema);
        free(w);
        return rc;
    }
    *out = w;
    return SF_OK;
}

sf_status sf_table_writer_write(sf_table_writer *w, const sf_batch *b)
{
    if (w->rc != SF_OK) return w->rc;
    w->rc = w->ops->write(w, b);
    return w->rc;
}

sf_status sf_table_writer_close(sf_table_writer **pw)
{
    if (pw == NULL || *pw == NULL) return SF_OK;
    sf_table_writer *w = *pw;
    sf_status rc = w->ops->close(w);
    if (w->rc != SF_OK) rc = w->rc;
    sf_schema_fini(&w->schema);
    free(w);
    *pw = NULL;
    return rc;
}

void sf_reader_part_bounds(const sf_reader *r, int p, int n, uint64_t *begin, uint64_t *end)
{
    uint64_t base = r->offsets ? r->data_start : 0;
    uint64_t total = r->offsets ? r->data_bytes : r->total_rows;
    if (total == UINT64_MAX) total = 0;
    if (n < 1) n = 1;
    /* total * p / n without overflowing 64 bits. */
    uint64_t q = total / (uint64_t)n, m = total % (uint64_t)n;
    *begin = base + q * (uint64_t)p + m * (uint64_t)p / (uint64_t)n;
    *end = base + q * (uint64_t)(p + 1) + m * (uint64_t)(p + 1) / (uint64_t)n;
}

sf_status sf_reader_part_count(sf_reader *r, uint64_t begin, uint64_t end, uint64_t counts[2])
{
    counts[0] = counts[1] = 0;
    SF_CHECK(begin <= end, SF_ERR_ARG, "reader part [%llu, %llu) is reversed", (unsigned long long)begin,
             (unsigned long long)end);
    if (r->ops->part_count == NULL) return SF_OK;
    return r->ops->part_count(r, begin, end, counts);
}

sf_status sf_reader_set_part(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                             const uint64_t at_end[2])
{
    SF_CHECK(begin <= end, SF_ERR_ARG, "reader part [%llu, %llu) is reversed", (unsigned long long)begin,
             (unsigned long long)end);
    SF_CHECK(r->ops->set_part != NULL, SF_ERR_ARG, "this input cannot be read in parts");
    SF_CALL(r->ops->set_part(r, begin, end, at_begin, at_end));
    r->bad_rows = 0;
    r->nbad_samples = 0;
    return SF_OK;
}
