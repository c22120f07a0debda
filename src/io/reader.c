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
    c->mmap = true;
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

/* Destroys the sub-part readers r opened (sf_reader_split); r itself stays
 * restricted to sub-part 0 until it is given a part again. */
static void unsplit(sf_reader *r)
{
    sf__reader_split *s = r->split;
    if (s == NULL) return;
    for (int t = 1; t < s->n; t++) sf_reader_destroy(&s->sub[t]);
    free(s->sub);
    free(s);
    r->split = NULL;
}

void sf_reader_destroy(sf_reader **pr)
{
    if (pr == NULL || *pr == NULL) return;
    sf_reader *r = *pr;
    unsplit(r);
    if (r->ops && r->ops->destroy) r->ops->destroy(r);
    sf_schema_fini(&r->schema);
    free(r->want);
    free(r);
    *pr = NULL;
}

const sf_schema *sf_reader_schema(const sf_reader *r) { return &r->schema; }

const sf_dict *sf_reader_stable_dict(const sf_reader *r, int col)
{
    if (col < 0 || col >= r->schema.ncols || r->schema.fields[col].type != SF_STRING) return NULL;
    return r->ops->stable_dict ? r->ops->stable_dict(r, col) : NULL;
}

static sf_status set_projection_one(sf_reader *r, const uint8_t *want)
{
    free(r->want);
    r->want = NULL;
    if (want == NULL) return SF_OK;
    r->want = malloc((size_t)(r->schema.ncols ? r->schema.ncols : 1));
    SF_CHECK(r->want != NULL, SF_ERR_NOMEM, "out of memory (projection)");
    memcpy(r->want, want, (size_t)r->schema.ncols);
    return SF_OK;
}

sf_status sf_reader_set_projection(sf_reader *r, const uint8_t *want)
{
    SF_CALL(set_projection_one(r, want));
    for (int t = 1; r->split && t < r->split->n; t++) SF_CALL(set_projection_one(r->split->sub[t], want));
    return SF_OK;
}

void sf_reader_set_batch_rows(sf_reader *r, size_t rows)
{
    r->cfg.batch_rows = rows ? rows : 1;
    for (int t = 1; r->split && t < r->split->n; t++) r->split->sub[t]->cfg.batch_rows = r->cfg.batch_rows;
}
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

static sf_status next_one(sf_reader *r, sf_batch *b, bool *eof)
{
    *eof = false;
    sf_batch_clear(b);
    return r->ops->next(r, b, eof);
}

sf_status sf_reader_next(sf_reader *r, sf_batch *b, bool *eof)
{
    sf__reader_split *s = r->split;
    if (s == NULL) return next_one(r, b, eof);
    /* The sub-parts in file order, as one part. */
    for (;;) {
        SF_CALL(next_one(s->sub[s->cur], b, eof));
        if (!*eof || s->cur == s->n - 1) break;
        s->cur++;
        s->rows_before = s->rows;
    }
    s->rows += b->nrows;
    /* CSV counts first_row from the start of the part, HDF5 and the
     * generator give the global row: only the former is shifted. */
    if (r->offsets) b->first_row += s->rows_before;
    return SF_OK;
}

static sf_status rewind_one(sf_reader *r)
{
    r->bad_rows = 0;
    r->nbad_samples = 0;
    return r->ops->rewind(r);
}

sf_status sf_reader_rewind(sf_reader *r)
{
    SF_CALL(rewind_one(r));
    sf__reader_split *s = r->split;
    if (s == NULL) return SF_OK;
    for (int t = 1; t < s->n; t++) SF_CALL(rewind_one(s->sub[t]));
    s->cur = 0;
    s->rows = s->rows_before = 0;
    return SF_OK;
}

void sf_reader_tell(const sf_reader *r, sf_reader_pos *pos)
{
    memset(pos, 0, sizeof *pos);
    r->ops->tell(r, pos);
}

sf_status sf_reader_seek(sf_reader *r, const sf_reader_pos *pos)
{
    /* A position is one reader's; a split part has several. */
    SF_CHECK(r->split == NULL, SF_ERR_ARG, "a reader split into %d sub-parts cannot seek",
             r->split ? r->split->n : 0);
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
uint64_t sf_reader_bad_rows(const sf_reader *r)
{
    uint64_t n = r->bad_rows;
    for (int t = 1; r->split && t < r->split->n; t++) n += r->split->sub[t]->bad_rows;
    return n;
}

size_t sf_reader_bad_row_samples(const sf_reader *r, const sf_bad_row **rows)
{
    sf__reader_split *s = r->split;
    if (s == NULL) {
        *rows = r->bad_samples;
        return r->nbad_samples;
    }
    /* The first samples of the whole part: each sub-part keeps its own
     * first ones, and the sub-parts are in file order. A sub-part that
     * kept fewer than it skipped is full, so none after it can come in
     * before the limit. */
    size_t n = 0;
    for (int t = 0; t < s->n && n < SF__BAD_ROW_SAMPLES; t++) {
        const sf_reader *u = s->sub[t];
        for (size_t i = 0; i < u->nbad_samples && n < SF__BAD_ROW_SAMPLES; i++) s->samples[n++] = u->bad_samples[i];
    }
    *rows = s->samples;
    return n;
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

static sf_status set_part_one(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
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

sf_status sf_reader_set_part(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                             const uint64_t at_end[2])
{
    unsplit(r);
    return set_part_one(r, begin, end, at_begin, at_end);
}

void sf_reader_sub_bounds(uint64_t begin, uint64_t end, int t, int n, uint64_t *sub_begin, uint64_t *sub_end)
{
    uint64_t total = end > begin ? end - begin : 0;
    if (n < 1) n = 1;
    /* total * t / n without overflowing 64 bits, as sf_reader_part_bounds. */
    uint64_t q = total / (uint64_t)n, m = total % (uint64_t)n;
    *sub_begin = begin + q * (uint64_t)t + m * (uint64_t)t / (uint64_t)n;
    *sub_end = begin + q * (uint64_t)(t + 1) + m * (uint64_t)(t + 1) / (uint64_t)n;
}

static bool same_schema(const sf_schema *a, const sf_schema *b)
{
    if (a->ncols != b->ncols) return false;
    for (int i = 0; i < a->ncols; i++)
        if (a->fields[i].type != b->fields[i].type || strcmp(a->fields[i].name, b->fields[i].name) != 0) return false;
    return true;
}

sf_status sf_reader_split(sf_reader *r, int n, const uint64_t *cuts, const uint64_t *at)
{
    unsplit(r);
    SF_CHECK(n >= 1, SF_ERR_ARG, "a reader cannot be split into %d sub-parts", n);
    for (int t = 0; t < n; t++)
        SF_CHECK(cuts[t] <= cuts[t + 1], SF_ERR_ARG, "reader sub-part %d [%llu, %llu) is reversed", t,
                 (unsigned long long)cuts[t], (unsigned long long)cuts[t + 1]);
    SF_CALL(set_part_one(r, cuts[0], cuts[1], at, at + 2));
    if (n == 1) return SF_OK;
    sf__reader_split *s = calloc(1, sizeof *s);
    sf_reader **sub = calloc((size_t)n, sizeof *sub);
    sf_status rc = SF_OK;
    if (s == NULL || sub == NULL) rc = sf_error_set(SF_ERR_NOMEM, __FILE__, __LINE__, "out of memory (reader split)");
    if (rc == SF_OK) {
        s->n = n;
        s->sub = sub;
        sub[0] = r;
    }
    for (int t = 1; t < n && rc == SF_OK; t++) {
        rc = sf_reader_open(&r->cfg, &sub[t]);
        /* The same input opened again: another schema means that it
         * changed in between. */
        if (rc == SF_OK && !same_schema(&sub[t]->schema, &r->schema))
            rc = sf_error_set(SF_ERR_IO, __FILE__, __LINE__,
                              "%s: opened again for sub-part %d of %d, it has another header or column types "
                              "(did the input change?)",
                              r->cfg.path ? r->cfg.path : "input", t, n);
        if (rc == SF_OK && r->want) rc = set_projection_one(sub[t], r->want);
        if (rc == SF_OK) rc = set_part_one(sub[t], cuts[t], cuts[t + 1], at + 2 * t, at + 2 * t + 2);
    }
    if (rc != SF_OK) {
        for (int t = 1; sub && t < n; t++) sf_reader_destroy(&sub[t]);
        free(sub);
        free(s);
        return rc;
    }
    r->split = s;
    return SF_OK;
}

int sf_reader_split_count(const sf_reader *r) { return r->split ? r->split->n : 1; }

sf_status sf_reader_next_sub(sf_reader *r, int t, sf_batch *b, bool *eof)
{
    const int n = sf_reader_split_count(r);
    SF_CHECK(t >= 0 && t < n, SF_ERR_ARG, "reader sub-part %d of %d", t, n);
    return next_one(t == 0 ? r : r->split->sub[t], b, eof);
}

bool sf_reader_sub_concurrent(sf_reader *r)
{
    if (!r->ops->serial_next) return true;
    if (r->ops->lock_free_next == NULL) return false;
    const int n = sf_reader_split_count(r);
    for (int t = 0; t < n; t++) {
        sf_reader *s = t == 0 ? r : r->split->sub[t];
        if (!s->ops->lock_free_next(s)) return false;
    }
    return true;
}
