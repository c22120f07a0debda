/* HDF5 tables: a group whose 1-D datasets of equal length are the columns.
 *
 * Reading (sf__hdf5_open):
 *  - Columns are the group's datasets, in link creation order when the group
 *    tracks it (groups written by shardflow, or by h5py with track_order=True),
 *    otherwise in name order (byte-wise, as HDF5's name index sorts). Links to
 *    other groups and to named datatypes are ignored; a link that cannot be
 *    opened, or a dataset that is not 1-D, is an error.
 *  - Types: integers of any width and sign become int64 (an unsigned 64-bit
 *    value above INT64_MAX is an error); floats of any width become float64;
 *    fixed- and variable-length strings become dictionary-encoded strings
 *    (fixed strings lose their padding: trailing NULs, or trailing spaces
 *    when the type is space-padded); an integer dataset with the string
 *    attribute shardflow_type = "timestamp" is a timestamp column holding
 *    microseconds since 1970-01-01T00:00:00 UTC. Anything else (compound,
 *    enum, and so booleans from h5py, arrays, references, opaque) is an error
 *    naming the dataset.
 *  - Nulls: see "Validity masks" below. A float NaN is an ordinary float64
 *    value, never a null.
 *  - Every next() reads one hyperslab of at most batch_rows rows per column
 *    and never the whole dataset; unloaded (projected-away) columns are not
 *    read at all.
 *
 * Writing (sf__hdf5_writer_create): one chunked, extendible, uncompressed 1-D
 * dataset per column in a group that tracks creation order (so the column
 * order survives a round trip); int64 as 64-bit little-endian integers,
 * timestamps the same plus the shardflow_type = "timestamp" attribute,
 * float64 as IEEE doubles, strings as UTF-8 variable-length strings or, by
 * default, fixed-length NUL-padded strings. A fixed width must be chosen when
 * the dataset is created: it is the longest string of the first batch written,
 * at least SF__H5_FIXED_WIDTH_MIN bytes, rounded up to a multiple of 8; a
 * longer string in a later batch is an error that suggests variable-length
 * strings. Columns named "_valid" are refused (the name of the mask group).
 *
 * Validity masks (nulls). The table group may hold a subgroup named "_valid".
 * A 1-D integer dataset "_valid/<column>" with as many elements as the column
 * is that column's validity mask: 1 = present, 0 = null (any other value is
 * an error). A column without a mask has no nulls. The "_valid" group is never
 * a column itself (no subgroup is), and links in it that are not datasets are
 * ignored. A mask whose length differs from the table's, that names no column
 * of the table, or that is not 1-D integer, is an error naming the file and
 * the mask dataset, raised when the table is opened.
 *  - The reader reads each loaded column's mask with the same hyperslab as the
 *    column (projected-away columns read neither) and marks the nulls with
 *    sf_batch_set_null, so a null holds 0, 0.0 or "" in its value slot,
 *    whatever the file stored there, exactly as in CSV input. (Raw reads,
 *    below, put a uint8 mask straight into the validity bytes and zero the
 *    value slots of its nulls: the same batch.)
 *
 * Raw reads: int64 and float64 columns stored as plain native values
 * (contiguous, or chunked without filters, no external storage, no user
 * block) and their uint8 masks are read with pread at the file offsets HDF5
 * reports, chunk by chunk; anything else, and any chunk not allocated, goes
 * through H5Dread. Every batch checks before and after its reads that the
 * file is still as long as HDF5's end of allocated space (HDF5 itself would
 * return zeros past the end of a file cut while it is read).
 *  - Mapped reads (input.mmap, default true): the file is mapped read-only,
 *    and a batch's rows of such a column (and of its mask) that lie in one
 *    chunk are not copied at all: the batch's column points into the
 *    mapping (core/batch_lend.h). Batches then end at chunk boundaries. A
 *    column's values are lent only when 8-byte aligned and, where its mask
 *    has nulls in the batch, when the file holds 0 under every one (as the
 *    writer does for int64; its float64 nulls hold NaN, so those batches
 *    are copied and zeroed as above): the batch is the same either way. A
 *    file cut while mapped raises SIGBUS on the next read of a lost page;
 *    sf_signal_map_add turns that into a message naming the file and exit
 *    status 1.
 *  - The writer writes masks as chunked, extendible uint8 datasets (chunked
 *    like the data datasets). A column's mask is created at the first batch in
 *    which the column has a null, with 1s back-filled for the rows already
 *    written, and then grows with every batch (all 1s for a batch without
 *    nulls), so it always has the column's length. A column that never holds
 *    a null gets no mask, and a table without nulls no "_valid" group. The
 *    value slots of nulls are written as 0 (int64 and timestamp), NaN
 *    (float64) and "" (strings), so a program that ignores the masks sees the
 *    usual "missing" values.
 *
 * HDF5's automatic error printing is turned off; every failure becomes
 * SF_ERR_H5 with a message naming the file and object, plus HDF5's innermost
 * error description. File locking is left to HDF5: version 1.10.7 and later
 * read the HDF5_USE_FILE_LOCKING environment variable themselves (set it to
 * FALSE on file systems without lock support), and nothing here overrides it. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <hdf5.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "shardflow/fault.h"

#include "core/batch_lend.h"
#include "io/hdf5_errors.h"
#include "io/reader_impl.h"

#define SF__H5_FIXED_WIDTH_MIN 64
#define SF__H5_CHUNK_BYTES ((size_t)1 << 20)
#define SF__H5_CHUNK_ROWS_MAX 65536
#define SF__H5_CHUNK_ROWS_MIN 1024
#define SF__H5_TYPE_ATTR "shardflow_type"
#define SF__H5_VALID_GROUP "_valid"

/* ---- errors --------------------------------------------------------------- */


static sf_status grow_scratch(void **p, size_t *cap, size_t need)
{
    if (need <= *cap) return SF_OK;
    size_t n = *cap ? *cap : 4096;
    while (n < need) n *= 2;
    void *q = realloc(*p, n);
    SF_CHECK(q != NULL, SF_ERR_NOMEM, "out of memory (HDF5 buffer of %zu bytes)", n);
    *p = q;
    *cap = n;
    return SF_OK;
}

/* "/table" + "x" -> "/table/x" (root: "/x"). */
static void object_path(char *out, size_t n, const char *group, const char *name)
{
    size_t gl = strlen(group);
    snprintf(out, n, "%s%s%s", group, gl > 0 && group[gl - 1] == '/' ? "" : "/", name);
}

/* "/table" + "x" -> "/table/_valid/x" (root: "/_valid/x"), column x's mask. */
static void mask_path(char *out, size_t n, const char *group, const char *name)
{
    size_t gl = strlen(group);
    snprintf(out, n, "%s%s%s/%s", group, gl > 0 && group[gl - 1] == '/' ? "" : "/", SF__H5_VALID_GROUP, name);
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "variable-length sequence";
    case H5T_ARRAY: return "array";
    default: return "unknown";
    }
}

/* ---- reader --------------------------------------------------------------- */

typedef enum col_kind { K_INT, K_UINT64, K_FLOAT, K_FSTR, K_VSTR } col_kind;

/* Raw reads: a dataset stored as plain native values in the file
 * (contiguous, or chunked without filters; no external storage, no user
 * block) is read with pread at the file offsets HDF5 reports, skipping the
 * library's per-call selection and conversion work. Unallocated chunks
 * (fill values) and anything else go through H5Dread. */
typedef struct h5raw {
    bool on;
    size_t elem;         /* bytes per element */
    haddr_t addr;        /* contiguous: offset of element 0 */
    hsize_t chunk;       /* chunked: elements per chunk (0: contiguous) */
    haddr_t *chunk_addr; /* per chunk: 0 = not looked up yet */
    uint64_t nchunks;
} h5raw;

typedef struct h5col {
    hid_t dset;
    hid_t fspace;
    hid_t mtype;       /* owned copy for strings; a native type otherwise */
    bool own_mtype;
    col_kind kind;
    size_t width;      /* fixed strings */
    bool spacepad;     /* fixed strings padded with spaces */
    char *path;        /* "/table/x", for messages */
    hid_t vdset;       /* validity mask "_valid/x", or H5I_INVALID_HID */
    hid_t vfspace;
    char *vpath;       /* "/table/_valid/x", for messages */
    h5raw raw, vraw;   /* raw reads of the data and of the mask */
} h5col;

typedef struct h5reader {
    hid_t file;
    hid_t group;
    int ncols;
    h5col *cols;
    uint64_t nrows;
    uint64_t next_row;
    uint64_t lo, hi;   /* the part read (sf_reader_set_part): rows [lo, hi) */
    void *scratch;
    size_t scratch_cap;
    int64_t *mask;     /* one column's mask values for the current batch */
    size_t mask_cap;   /* bytes */
    int fd;            /* the file, for raw reads and the size check (-1: none) */
    uint64_t need_bytes; /* HDF5's end of allocated space: the least file size */
    const uint8_t *map;  /* input.mmap: the file, read-only (NULL: not mapped) */
    size_t map_len;
} h5reader;

static void h5reader_free(h5reader *h)
{
    if (h == NULL) return;
    for (int c = 0; c < h->ncols; c++) {
        h5col *k = &h->cols[c];
        sf__h5_close_id(&k->fspace);
        if (k->own_mtype) sf__h5_close_id(&k->mtype);
        sf__h5_close_id(&k->dset);
        sf__h5_close_id(&k->vfspace);
        sf__h5_close_id(&k->vdset);
        free(k->path);
        free(k->vpath);
        free(k->raw.chunk_addr);
        free(k->vraw.chunk_addr);
    }
    if (h->map != NULL) {
        sf_signal_map_remove(h->map);
        munmap((void *)(uintptr_t)h->map, h->map_len);
    }
    if (h->fd >= 0) close(h->fd);
    free(h->cols);
    sf__h5_close_id(&h->group);
    sf__h5_close_id(&h->file);
    free(h->scratch);
    free(h->mask);
    free(h);
}

/* Reads the dataset's shardflow_type attribute into out ("" if absent). */
static sf_status read_type_attr(hid_t dset, const char *file, const char *obj, char *out, size_t n)
{
    sf_status rc = SF_OK;
    hid_t attr = H5I_INVALID_HID, atype = H5I_INVALID_HID, mtype = H5I_INVALID_HID,
          aspace = H5I_INVALID_HID;
    char *vstr = NULL, *fbuf = NULL;
    out[0] = '\0';
    htri_t has = H5Aexists(dset, SF__H5_TYPE_ATTR);
    SF_CALL_H5(has, done, "%s: dataset '%s': cannot look up attribute '%s'", file, obj, SF__H5_TYPE_ATTR);
    if (!has) goto done;
    SF_CALL_H5(attr = H5Aopen(dset, SF__H5_TYPE_ATTR, H5P_DEFAULT), done,
               "%s: dataset '%s': cannot open attribute '%s'", file, obj, SF__H5_TYPE_ATTR);
    SF_CALL_H5(atype = H5Aget_type(attr), done, "%s: dataset '%s': attribute '%s'", file, obj,
               SF__H5_TYPE_ATTR);
    SF_CALL_H5(aspace = H5Aget_space(attr), done, "%s: dataset '%s': attribute '%s'", file, obj,
               SF__H5_TYPE_ATTR);
    SF_CHECK_GOTO(H5Tget_class(atype) == H5T_STRING && H5Sget_simple_extent_npoints(aspace) == 1,
                  SF_ERR_PARSE, done, "%s: dataset '%s': attribute '%s' must be a single string", file, obj,
                  SF__H5_TYPE_ATTR);
    htri_t is_var = H5Tis_variable_str(atype);
    SF_CALL_H5(is_var, done, "%s: dataset '%s': attribute '%s'", file, obj, SF__H5_TYPE_ATTR);
    SF_CALL_H5(mtype = H5Tcopy(atype), done, "%s: dataset '%s': attribute '%s'", file, obj, SF__H5_TYPE_ATTR);
    if (is_var) {
        SF_CALL_H5(H5Aread(attr, mtype, &vstr), done, "%s: dataset '%s': cannot read attribute '%s'", file,
                   obj, SF__H5_TYPE_ATTR);
        snprintf(out, n, "%s", vstr ? vstr : "");
    } else {
        size_t sz = H5Tget_size(atype);
        fbuf = calloc(sz + 1, 1);
        SF_CHECK_GOTO(fbuf != NULL, SF_ERR_NOMEM, done, "out of memory (attribute)");
        SF_CALL_H5(H5Aread(attr, mtype, fbuf), done, "%s: dataset '%s': cannot read attribute '%s'", file,
                   obj, SF__H5_TYPE_ATTR);
        size_t len = strnlen(fbuf, sz);
        while (len > 0 && fbuf[len - 1] == ' ') len--;
        fbuf[len] = '\0';
        snprintf(out, n, "%s", fbuf);
    }
done:
    if (vstr) H5free_memory(vstr);
    free(fbuf);
    sf__h5_close_id(&mtype);
    sf__h5_close_id(&aspace);
    sf__h5_close_id(&atype);
    sf__h5_close_id(&attr);
    return rc;
}

/* Works out the column type of dataset k and its memory type. */
static sf_status classify(h5col *k, const char *file, sf_type *type)
{
    sf_status rc = SF_OK;
    hid_t ftype = H5I_INVALID_HID;
    char attr[64];
    SF_CALL_H5(ftype = H5Dget_type(k->dset), done, "%s: dataset '%s': cannot read its type", file, k->path);
    SF_CALL_GOTO(read_type_attr(k->dset, file, k->path, attr, sizeof attr), done);
    H5T_class_t cls = H5Tget_class(ftype);
    SF_CHECK_GOTO(attr[0] == '\0' || strcmp(attr, "timestamp") == 0, SF_ERR_PARSE, done,
                  "%s: dataset '%s': unknown %s '%s' (known: timestamp)", file, k->path, SF__H5_TYPE_ATTR,
                  attr);
    SF_CHECK_GOTO(attr[0] == '\0' || cls == H5T_INTEGER, SF_ERR_PARSE, done,
                  "%s: dataset '%s': %s = 'timestamp' needs an integer dataset, found %s", file, k->path,
                  SF__H5_TYPE_ATTR, class_name(cls));
    switch (cls) {
    case H5T_INTEGER: {
        size_t sz = H5Tget_size(ftype);
        H5T_sign_t sign = H5Tget_sign(ftype);
        SF_CHECK_GOTO(sz <= 8, SF_ERR_PARSE, done,
                      "%s: dataset '%s': %zu-byte integers are not supported (at most 8 bytes)", file,
                      k->path, sz);
        k->kind = sign == H5T_SGN_NONE && sz == 8 ? K_UINT64 : K_INT;
        k->mtype = k->kind == K_UINT64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64;
        *type = attr[0] ? SF_TIMESTAMP : SF_INT64;
        break;
    }
    case H5T_FLOAT:
        k->kind = K_FLOAT;
        k->mtype = H5T_NATIVE_DOUBLE;
        *type = SF_FLOAT64;
        break;
    case H5T_STRING: {
        htri_t var = H5Tis_variable_str(ftype);
        SF_CALL_H5(var, done, "%s: dataset '%s': cannot read its string type", file, k->path);
        SF_CALL_H5(k->mtype = H5Tcopy(ftype), done, "%s: dataset '%s': cannot copy its type", file, k->path);
        k->own_mtype = true;
        if (var) {
            k->kind = K_VSTR;
        } else {
            k->kind = K_FSTR;
            k->width = H5Tget_size(ftype);
            k->spacepad = H5Tget_strpad(ftype) == H5T_STR_SPACEPAD;
        }
        *type = SF_STRING;
        break;
    }
    default:
        rc = sf_error_set(SF_ERR_PARSE, __FILE__, __LINE__,
                          "%s: dataset '%s': unsupported type (%s); columns must be integer, float or "
                          "string datasets",
                          file, k->path, class_name(cls));
        goto done;
    }
done:
    sf__h5_close_id(&ftype);
    return rc;
}

static sf_status h5_next(sf_reader *r, sf_batch *b, bool *eof);
static sf_status h5_rewind(sf_reader *r);
static void h5_destroy(sf_reader *r);
static void h5_tell(const sf_reader *r, sf_reader_pos *pos);
static sf_status h5_seek(sf_reader *r, const sf_reader_pos *pos);
static sf_status h5_set_part(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                             const uint64_t at_end[2]);
/* The sub-parts of a split reader (parallel-read at several threads) read
 * on several threads at once only where the HDF5 library can take it. */
#ifdef H5_HAVE_THREADSAFE
#define H5_SERIAL_NEXT false
#else
#define H5_SERIAL_NEXT true
#endif
static bool h5_lock_free_next(sf_reader *r);
static const sf__reader_ops h5_ops = {h5_next, h5_rewind,   h5_destroy,     h5_tell,          h5_seek,
                                      NULL,    h5_set_part, H5_SERIAL_NEXT, h5_lock_free_next, NULL};

/* Opens the validity masks in the table's "_valid" group and attaches each
 * to its column, checking name, shape, type and length. */
static sf_status open_masks(sf_reader *r, h5reader *h, const char *file, const char *gname)
{
    sf_status rc = SF_OK;
    hid_t vg = H5I_INVALID_HID, obj = H5I_INVALID_HID, ftype = H5I_INVALID_HID;
    char *lname = NULL;
    char vgpath[1024], mpath[1024];
    object_path(vgpath, sizeof vgpath, gname, SF__H5_VALID_GROUP);
    SF_CALL_H5(vg = H5Gopen2(h->group, SF__H5_VALID_GROUP, H5P_DEFAULT), done, "%s: cannot open group '%s'",
               file, vgpath);
    H5G_info_t info;
    SF_CALL_H5(H5Gget_info(vg, &info), done, "%s: group '%s'", file, vgpath);
    for (hsize_t i = 0; i < info.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(vg, ".", H5_INDEX_NAME, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        SF_CALL_H5(len, done, "%s: group '%s': cannot list link %llu", file, vgpath, (unsigned long long)i);
        free(lname);
        lname = malloc((size_t)len + 1);
        SF_CHECK_GOTO(lname != NULL, SF_ERR_NOMEM, done, "out of memory (HDF5 reader)");
        SF_CALL_H5(H5Lget_name_by_idx(vg, ".", H5_INDEX_NAME, H5_ITER_INC, i, lname, (size_t)len + 1, H5P_DEFAULT),
                   done, "%s: group '%s': cannot list link %llu", file, vgpath, (unsigned long long)i);
        mask_path(mpath, sizeof mpath, gname, lname);
        SF_CALL_H5(obj = H5Oopen(vg, lname, H5P_DEFAULT), done, "%s: cannot open '%s'", file, mpath);
        if (H5Iget_type(obj) != H5I_DATASET) {
            sf__h5_close_id(&obj);
            continue;
        }
        int c = sf_schema_find(&r->schema, lname);
        SF_CHECK_GOTO(c >= 0, SF_ERR_PARSE, done,
                      "%s: validity mask '%s' names no column of group '%s' (no dataset '%s' there)", file, mpath,
                      gname, lname);
        h5col *k = &h->cols[c];
        k->vdset = obj;
        obj = H5I_INVALID_HID;
        k->vpath = strdup(mpath);
        SF_CHECK_GOTO(k->vpath != NULL, SF_ERR_NOMEM, done, "out of memory (HDF5 reader)");
        SF_CALL_H5(k->vfspace = H5Dget_space(k->vdset), done, "%s: validity mask '%s': cannot read its shape",
                   file, mpath);
        int ndims = H5Sget_simple_extent_ndims(k->vfspace);
        SF_CALL_H5(ndims, done, "%s: validity mask '%s': cannot read its shape", file, mpath);
        SF_CHECK_GOTO(ndims == 1, SF_ERR_PARSE, done,
                      "%s: validity mask '%s' has %d dimensions; masks must be 1-D datasets", file, mpath, ndims);
        hsize_t dim;
        SF_CALL_H5(H5Sget_simple_extent_dims(k->vfspace, &dim, NULL), done, "%s: validity mask '%s'", file, mpath);
        SF_CHECK_GOTO((uint64_t)dim == h->nrows, SF_ERR_PARSE, done,
                      "%s: validity mask '%s' has %llu elements but column '%s' has %llu rows; a mask must "
                      "have the length of its column",
                      file, mpath, (unsigned long long)dim, k->path, (unsigned long long)h->nrows);
        SF_CALL_H5(ftype = H5Dget_type(k->vdset), done, "%s: validity mask '%s': cannot read its type", file,
                   mpath);
        H5T_class_t cls = H5Tget_class(ftype);
        SF_CHECK_GOTO(cls == H5T_INTEGER, SF_ERR_PARSE, done,
                      "%s: validity mask '%s' is a %s dataset; masks must be integer datasets (1 = present, "
                      "0 = null; with h5py write numpy uint8, not bool)",
                      file, mpath, class_name(cls));
        sf__h5_close_id(&ftype);
    }
done:
    free(lname);
    sf__h5_close_id(&ftype);
    sf__h5_close_id(&obj);
    sf__h5_close_id(&vg);
    return rc;
}

/* Whether dataset d holds plain values of memory type mtype that a pread
 * can take (see h5raw); fills w. Any doubt leaves w off. */
static void raw_probe(hid_t d, hid_t mtype, uint64_t nrows, h5raw *w)
{
    hid_t ftype = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    memset(w, 0, sizeof *w);
    if ((ftype = H5Dget_type(d)) < 0 || H5Tequal(ftype, mtype) <= 0) goto done;
    if ((dcpl = H5Dget_create_plist(d)) < 0 || H5Pget_external_count(dcpl) != 0) goto done;
    w->elem = H5Tget_size(mtype);
    switch (H5Pget_layout(dcpl)) {
    case H5D_CONTIGUOUS:
        w->addr = H5Dget_offset(d);
        w->on = w->addr != HADDR_UNDEF;
        break;
    case H5D_CHUNKED: {
        hsize_t c = 0;
        if (H5Pget_nfilters(dcpl) != 0 || H5Pget_chunk(dcpl, 1, &c) != 1 || c == 0) break;
        w->chunk = c;
        w->nchunks = (nrows + c - 1) / c;
        w->chunk_addr = calloc(w->nchunks ? w->nchunks : 1, sizeof *w->chunk_addr);
        w->on = w->chunk_addr != NULL;
        break;
    }
    default: break;
    }
done:
    H5Eclear2(H5E_DEFAULT);
    sf__h5_close_id(&dcpl);
    sf__h5_close_id(&ftype);
}

/* Raw reads for the int64 and float64 columns and their uint8 masks, where
 * the file has no user block (HDF5 addresses are then file offsets). */
static void setup_raw_reads(h5reader *h, const char *file, bool want_map)
{
    hid_t fcpl = H5Fget_create_plist(h->file);
    hsize_t ub = 1;
    bool ub_known = fcpl >= 0 && H5Pget_userblock(fcpl, &ub) >= 0;
    sf__h5_close_id(&fcpl);
    haddr_t eoa = HADDR_UNDEF;
    if (H5Fget_eoa(h->file, &eoa) < 0) eoa = HADDR_UNDEF;
    H5Eclear2(H5E_DEFAULT);
    if ((h->fd = open(file, O_RDONLY | O_CLOEXEC)) < 0) return;
    /* H5Fget_eoa counts the user block in (unlike dataset addresses). */
    if (eoa != HADDR_UNDEF) h->need_bytes = (uint64_t)eoa;
    if (!ub_known || ub != 0) return;
    bool any_raw = false;
    for (int c = 0; c < h->ncols; c++) {
        h5col *k = &h->cols[c];
        if (k->kind != K_INT && k->kind != K_FLOAT) continue;
        raw_probe(k->dset, k->kind == K_INT ? H5T_NATIVE_INT64 : H5T_NATIVE_DOUBLE, h->nrows, &k->raw);
        if (k->vdset >= 0) raw_probe(k->vdset, H5T_NATIVE_UINT8, h->nrows, &k->vraw);
        any_raw = any_raw || k->raw.on;
    }
    /* The mapping: no copy of what it covers (a failure only means copies). */
    struct stat st;
    if (want_map && any_raw && fstat(h->fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0 &&
        (uint64_t)st.st_size >= h->need_bytes) {
        void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, h->fd, 0);
        if (m != MAP_FAILED) {
            h->map = m;
            h->map_len = (size_t)st.st_size;
            sf_signal_map_add(m, h->map_len, file);
        }
    }
}

sf_status sf__hdf5_open(sf_reader *r)
{
    sf_status rc = SF_OK;
    const char *file = r->cfg.path;
    const char *gname = r->cfg.group ? r->cfg.group : "/table";
    hid_t gcpl = H5I_INVALID_HID, obj = H5I_INVALID_HID;
    char *lname = NULL;
    h5reader *h = NULL;
    uint64_t first_len = 0;
    const char *first_path = NULL;
    bool has_masks = false;

    SF_CHECK(file != NULL && file[0] != '\0', SF_ERR_CONFIG, "input.path: missing for an HDF5 input");
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    struct stat st;
    SF_CHECK(stat(file, &st) == 0, SF_ERR_IO, "%s: cannot open: %s", file, strerror(errno));

    h = calloc(1, sizeof *h);
    SF_CHECK(h != NULL, SF_ERR_NOMEM, "out of memory (HDF5 reader)");
    h->file = h->group = H5I_INVALID_HID;
    h->fd = -1;
    /* HDF5 applies HDF5_USE_FILE_LOCKING from the environment to this open. */
    SF_CALL_H5(h->file = H5Fopen(file, H5F_ACC_RDONLY, H5P_DEFAULT), done,
               "%s: cannot open as an HDF5 file", file);
    htri_t gexists = H5Lexists(h->file, gname, H5P_DEFAULT);
    if (strcmp(gname, "/") != 0)
        SF_CHECK_GOTO(gexists > 0, SF_ERR_H5, done, "%s: no group '%s' in the file (set input.group)", file,
                      gname);
    H5Eclear2(H5E_DEFAULT);
    SF_CALL_H5(h->group = H5Gopen2(h->file, gname, H5P_DEFAULT), done, "%s: '%s' is not a group", file, gname);

    SF_CALL_H5(gcpl = H5Gget_create_plist(h->group), done, "%s: group '%s'", file, gname);
    unsigned crt_flags = 0;
    SF_CALL_H5(H5Pget_link_creation_order(gcpl, &crt_flags), done, "%s: group '%s'", file, gname);
    H5_index_t order = (crt_flags & H5P_CRT_ORDER_TRACKED) ? H5_INDEX_CRT_ORDER : H5_INDEX_NAME;
    H5G_info_t ginfo;
    SF_CALL_H5(H5Gget_info(h->group, &ginfo), done, "%s: group '%s'", file, gname);
    h->cols = calloc(ginfo.nlinks ? ginfo.nlinks : 1, sizeof *h->cols);
    SF_CHECK_GOTO(h->cols != NULL, SF_ERR_NOMEM, done, "out of memory (HDF5 reader)");

    for (hsize_t i = 0; i < ginfo.nlinks; i++) {
        ssize_t len = H5Lget_name_by_idx(h->group, ".", order, H5_ITER_INC, i, NULL, 0, H5P_DEFAULT);
        SF_CALL_H5(len, done, "%s: group '%s': cannot list link %llu", file, gname, (unsigned long long)i);
        free(lname);
        lname = malloc((size_t)len + 1);
        SF_CHECK_GOTO(lname != NULL, SF_ERR_NOMEM, done, "out of memory (HDF5 reader)");
        SF_CALL_H5(H5Lget_name_by_idx(h->group, ".", order, H5_ITER_INC, i, lname, (size_t)len + 1, H5P_DEFAULT),
                   done, "%s: group '%s': cannot list link %llu", file, gname, (unsigned long long)i);
        char opath[1024];
        object_path(opath, sizeof opath, gname, lname);
        SF_CALL_H5(obj = H5Oopen(h->group, lname, H5P_DEFAULT), done, "%s: cannot open '%s'", file, opath);
        if (H5Iget_type(obj) != H5I_DATASET) {   /* subgroups (the masks among them), named datatypes */
            if (H5Iget_type(obj) == H5I_GROUP && strcmp(lname, SF__H5_VALID_GROUP) == 0) has_masks = true;
            sf__h5_close_id(&obj);
            continue;
        }
        h5col *k = &h->cols[h->ncols];
        k->dset = obj;
        obj = H5I_INVALID_HID;
        k->fspace = k->mtype = k->vdset = k->vfspace = H5I_INVALID_HID;
        h->ncols++;
        k->path = strdup(opath);
        SF_CHECK_GOTO(k->path != NULL, SF_ERR_NOMEM, done, "out of memory (HDF5 reader)");
        SF_CALL_H5(k->fspace = H5Dget_space(k->dset), done, "%s: dataset '%s': cannot read its shape", file,
                   opath);
        int ndims = H5Sget_simple_extent_ndims(k->fspace);
        SF_CALL_H5(ndims, done, "%s: dataset '%s': cannot read its shape", file, opath);
        SF_CHECK_GOTO(ndims == 1, SF_ERR_PARSE, done,
                      "%s: dataset '%s' has %d dimensions; table columns must be 1-D datasets", file, opath,
                      ndims);
        hsize_t dim;
        SF_CALL_H5(H5Sget_simple_extent_dims(k->fspace, &dim, NULL), done, "%s: dataset '%s'", file, opath);
        if (h->ncols == 1) {
            first_len = dim;
            first_path = k->path;
        }
        SF_CHECK_GOTO((uint64_t)dim == first_len, SF_ERR_PARSE, done,
                      "%s: dataset '%s' has %llu rows but '%s' has %llu; all columns must have the same "
                      "length",
                      file, opath, (unsigned long long)dim, first_path, (unsigned long long)first_len);
        sf_type type = SF_TYPE_NONE;
        SF_CALL_GOTO(classify(k, file, &type), done);
        SF_CALL_GOTO(sf_schema_add(&r->schema, lname, type), done);
    }
    SF_CHECK_GOTO(h->ncols > 0, SF_ERR_PARSE, done, "%s: group '%s' holds no datasets (no columns)", file,
                  gname);
    h->nrows = first_len;
    h->hi = h->nrows;
    if (has_masks) SF_CALL_GOTO(open_masks(r, h, file, gname), done);
    setup_raw_reads(h, file, r->cfg.mmap);
    r->total_rows = h->nrows;
    r->data_bytes = 0;
    r->data_start = 0;
    r->offsets = false;
    r->impl = h;
    r->ops = &h5_ops;
    h = NULL;
done:
    free(lname);
    sf__h5_close_id(&obj);
    sf__h5_close_id(&gcpl);
    if (rc != SF_OK) {
        h5reader_free(h);
        sf_schema_fini(&r->schema);
    }
    return rc;
}

/* Reads rows row0..row0+n of column k's validity mask into h->mask (the same
 * hyperslab as the column's); every value must be 0 or 1. */
static sf_status read_mask(sf_reader *r, h5reader *h, h5col *k, uint64_t row0, size_t n, hid_t mspace)
{
    sf_status rc = SF_OK;
    const char *file = r->cfg.path;
    hsize_t start = row0, count = n;
    SF_CALL(grow_scratch((void **)&h->mask, &h->mask_cap, n * sizeof(int64_t)));
    SF_CALL_H5(H5Sselect_hyperslab(k->vfspace, H5S_SELECT_SET, &start, NULL, &count, NULL), done,
               "%s: validity mask '%s': cannot select rows %llu..%llu", file, k->vpath, (unsigned long long)row0,
               (unsigned long long)(row0 + n));
    SF_CALL_H5(H5Dread(k->vdset, H5T_NATIVE_INT64, mspace, k->vfspace, H5P_DEFAULT, h->mask), done,
               "%s: validity mask '%s': cannot read rows %llu..%llu", file, k->vpath, (unsigned long long)row0,
               (unsigned long long)(row0 + n));
    for (size_t i = 0; i < n; i++)
        SF_CHECK_GOTO(h->mask[i] == 0 || h->mask[i] == 1, SF_ERR_PARSE, done,
                      "%s: validity mask '%s', element %llu: value %" PRId64
                      " is neither 1 (present) nor 0 (null)",
                      file, k->vpath, (unsigned long long)(row0 + i), h->mask[i]);
done:
    return rc;
}

/* Marks the rows whose mask value is 0 null (the value slot as
 * sf_batch_set_null sets it). */
static sf_status apply_mask(sf_batch *b, int c, const int64_t *mask, size_t n)
{
    if (mask == NULL) return SF_OK;
    for (size_t i = 0; i < n; i++)
        if (mask[i] == 0) SF_CALL(sf_batch_set_null(b, c, i));
    return SF_OK;
}

/* Interns n fixed-width strings from buf into column c's dictionary; rows
 * whose mask value is 0 become nulls instead (mask may be NULL), in row order,
 * so the dictionary grows as the CSV reader's does. */
static sf_status intern_fixed(sf_batch *b, int c, const int64_t *mask, const char *buf, size_t n, size_t width,
                              bool spacepad)
{
    sf_column *col = &b->cols[c];
    for (size_t i = 0; i < n; i++) {
        if (mask != NULL && mask[i] == 0) {
            SF_CALL(sf_batch_set_null(b, c, i));
            continue;
        }
        const char *s = buf + i * width;
        size_t len;
        if (spacepad) {
            len = width;
            while (len > 0 && (s[len - 1] == ' ' || s[len - 1] == '\0')) len--;
        } else {
            len = strnlen(s, width);
        }
        SF_CALL(sf_dict_intern(&col->dict, s, len, &col->code[i]));
    }
    return SF_OK;
}

/* Chunk c's file offset in w->chunk_addr[c] (looked up once); false where
 * the chunk is not allocated or not stored plain (whole, unfiltered). */
static bool chunk_lookup(h5raw *w, hid_t d, uint64_t c)
{
    if (w->chunk_addr[c] != 0) return true;
    hsize_t off = c * w->chunk, size = 0;
    unsigned fmask = 0;
    haddr_t a = HADDR_UNDEF;
    herr_t e = H5Dget_chunk_info_by_coord(d, &off, &fmask, &a, &size);
    H5Eclear2(H5E_DEFAULT);
    if (e < 0 || a == HADDR_UNDEF || a == 0 || fmask != 0 || size != w->chunk * w->elem) return false;
    w->chunk_addr[c] = a;
    return true;
}

/* Reads rows row0..row0+n of dataset `path` raw into dst; *done = false
 * (dst partly written, nothing else changed) where a chunk is not
 * allocated or not plain, for H5Dread to take the batch. */
static sf_status raw_read(h5reader *h, h5raw *w, hid_t d, const char *file, const char *path, uint64_t row0,
                          size_t n, void *dst, bool *done)
{
    *done = false;
    uint8_t *out = dst;
    for (uint64_t row = row0; row < row0 + n;) {
        uint64_t stop = row0 + n, at;
        if (w->chunk == 0) {
            at = w->addr + row * w->elem;
        } else {
            uint64_t c = row / w->chunk;
            if (c >= w->nchunks) return SF_OK;
            if (!chunk_lookup(w, d, c)) return SF_OK;
            at = w->chunk_addr[c] + (row - c * w->chunk) * w->elem;
            if ((c + 1) * w->chunk < stop) stop = (c + 1) * w->chunk;
        }
        size_t want = (size_t)(stop - row) * w->elem, got = 0;
        while (got < want) {
            ssize_t k = pread(h->fd, out + got, want - got, (off_t)(at + got));
            if (k < 0 && errno == EINTR) continue;
            SF_CHECK(k >= 0, SF_ERR_IO, "%s: dataset '%s': cannot read rows %llu..%llu: %s", file, path,
                     (unsigned long long)row, (unsigned long long)stop, strerror(errno));
            SF_CHECK(k > 0, SF_ERR_IO, "%s: dataset '%s': rows %llu..%llu lie past the end of the file (truncated?)",
                     file, path, (unsigned long long)row, (unsigned long long)stop);
            got += (size_t)k;
        }
        out += want;
        row = stop;
    }
    *done = true;
    return SF_OK;
}

/* Rows row0..row0+n of w in the mapping, when they lie in one plain chunk
 * (or a contiguous dataset) inside it; NULL otherwise. */
static const uint8_t *mapped_rows(const h5reader *h, h5raw *w, hid_t d, uint64_t row0, size_t n)
{
    if (h->map == NULL || !w->on || n == 0) return NULL;
    uint64_t at;
    if (w->chunk == 0) {
        at = w->addr + row0 * w->elem;
    } else {
        uint64_t c = row0 / w->chunk;
        if (c >= w->nchunks || (row0 + n - 1) / w->chunk != c || !chunk_lookup(w, d, c)) return NULL;
        at = w->chunk_addr[c] + (row0 - c * w->chunk) * w->elem;
    }
    if (at > h->map_len || (uint64_t)n * w->elem > h->map_len - at) return NULL;
    return h->map + at;
}

/* Asks the kernel to read rows row0..row0+n of w into the page cache
 * ahead (asynchronously): faults on a mapping read ahead far less than
 * read() does, so a file not in the page cache would come in slower. It
 * asks for cached rows too: looking first (mincore) or asking less often
 * saved 1-1.5 ms of a 48 ms pass over 250 MB a rank when the file was
 * cached, but made a file read from disk 5-10% slower (bench/peers). */
static void map_willneed(const h5reader *h, h5raw *w, hid_t d, uint64_t row0, size_t n)
{
    const uint8_t *p = mapped_rows(h, w, d, row0, n);
    if (p == NULL) return;
    uintptr_t a = (uintptr_t)p & ~(uintptr_t)4095;
    (void)posix_madvise((void *)a, n * w->elem + ((uintptr_t)p - a), POSIX_MADV_WILLNEED);
}

/* The rows a batch starting at row0 may hold (at most n) so that it ends
 * at the next chunk boundary of every column that can be lent (mapped
 * reads lend one chunk). Only chunks of at least 16384 rows or half a
 * batch count: small chunks (h5py's defaults, say) would make batches
 * tiny, so those columns are copied unless a batch falls in one chunk. */
static size_t chunk_cut(const sf_reader *r, const h5reader *h, uint64_t row0, size_t n)
{
    if (h->map == NULL) return n;
    const size_t least = n / 2 < 16384 ? n / 2 : 16384;
    for (int c = 0; c < h->ncols; c++) {
        if (r->want != NULL && !r->want[c]) continue;
        const h5col *k = &h->cols[c];
        if (!k->raw.on || (k->vdset >= 0 && !k->vraw.on)) continue;
        const h5raw *w[2] = {&k->raw, k->vdset >= 0 ? &k->vraw : NULL};
        for (int j = 0; j < 2; j++) {
            if (w[j] == NULL || w[j]->chunk == 0 || w[j]->chunk < least) continue;
            uint64_t end = (row0 / w[j]->chunk + 1) * w[j]->chunk;
            if (end - row0 < n) n = (size_t)(end - row0);
        }
    }
    return n;
}

/* Looks up the chunks of rows [lo, hi) of w (chunked); false where one is
 * not allocated or not plain. */
static bool raw_resolve(h5raw *w, hid_t d, uint64_t lo, uint64_t hi)
{
    if (w->chunk == 0 || hi <= lo) return true;
    for (uint64_t c = lo / w->chunk; c <= (hi - 1) / w->chunk; c++) {
        if (c >= w->nchunks || !chunk_lookup(w, d, c)) return false;
    }
    return true;
}

/* next() calls no HDF5 function when every loaded column and its mask are
 * read raw and the chunks of the part are looked up beforehand (here). */
static bool h5_lock_free_next(sf_reader *r)
{
    h5reader *h = r->impl;
    if (h == NULL || h->fd < 0) return false;
    for (int c = 0; c < h->ncols; c++) {
        if (r->want != NULL && !r->want[c]) continue;
        h5col *k = &h->cols[c];
        if (!k->raw.on || (k->vdset >= 0 && !k->vraw.on)) return false;
        if (!raw_resolve(&k->raw, k->dset, h->lo, h->hi)) return false;
        if (k->vdset >= 0 && !raw_resolve(&k->vraw, k->vdset, h->lo, h->hi)) return false;
    }
    return true;
}

/* Checks n mask bytes read raw (each 0 or 1) and returns the nulls
 * (sf__lend_mask_scan: 64 bytes a step where the CPU has AVX-512); a bad
 * byte is then looked for one by one, for the message. */
static sf_status count_mask(const uint8_t *v, size_t n, const char *file, const char *vpath, uint64_t row0,
                            size_t *nulls)
{
    if (sf__lend_mask_scan(v, n, nulls)) return SF_OK;
    for (size_t i = 0; i < n; i++)
        SF_CHECK(v[i] <= 1, SF_ERR_PARSE,
                 "%s: validity mask '%s', element %llu: value %u is neither 1 (present) nor 0 (null)", file, vpath,
                 (unsigned long long)(row0 + i), (unsigned)v[i]);
    return sf_error_set(SF_ERR_INTERNAL, __FILE__, __LINE__, "%s: validity mask '%s': a bad byte was not found again",
                        file, vpath);
}

/* The value slots of the nulls of a number column, zeroed (as
 * sf_batch_set_null leaves them); branch-free, so that it vectorizes. */
static void zero_nulls(sf_column *col, size_t n)
{
    const uint8_t *v = col->valid;
    if (col->type == SF_FLOAT64) {
        double *x = col->f64;
        for (size_t i = 0; i < n; i++) x[i] = v[i] ? x[i] : 0.0;
    } else {
        int64_t *x = col->i64;
        for (size_t i = 0; i < n; i++) x[i] &= -(int64_t)(v[i] != 0);
    }
}

/* Rows row0..row0+n of a number column and of its mask (if any) by raw
 * reads alone; *done = false, the batch's column as it was, where a part
 * of either cannot be read raw (H5Dread then takes the column). */
static sf_status read_column_raw(sf_reader *r, h5reader *h, int c, sf_batch *b, uint64_t row0, size_t n,
                                 bool *done)
{
    const char *file = r->cfg.path;
    h5col *k = &h->cols[c];
    sf_column *col = &b->cols[c];
    *done = false;
    const uint8_t *mask_map = k->vdset >= 0 ? mapped_rows(h, &k->vraw, k->vdset, row0, n) : NULL;
    const uint8_t *val_map = mapped_rows(h, &k->raw, k->dset, row0, n);
    if (val_map != NULL && row0 + n < h->hi) {
        /* The next batch's rows (inside the part: their chunks are known). */
        size_t next = h->hi - (row0 + n) < n ? (size_t)(h->hi - (row0 + n)) : n;
        map_willneed(h, &k->raw, k->dset, row0 + n, next);
        if (mask_map != NULL) map_willneed(h, &k->vraw, k->vdset, row0 + n, next);
    }
    if (val_map != NULL && (uintptr_t)val_map % 8 != 0) val_map = NULL;
    if (mask_map != NULL) {
        /* The mask from the mapping: lent to the batch where it has nulls. */
        size_t nulls = 0;
        SF_CALL(count_mask(mask_map, n, file, k->vpath, row0, &nulls));
        if (nulls > 0) {
            SF_CALL(sf__batch_lend(b, c, NULL, mask_map));
            col->nulls = nulls;
        }
    } else if (k->vdset >= 0) {
        /* The mask straight into the batch's validity bytes. */
        bool got = false;
        SF_CALL(sf_batch_enable_valid(b, c));
        sf_status rc = raw_read(h, &k->vraw, k->vdset, file, k->vpath, row0, n, col->valid, &got);
        size_t nulls = 0;
        if (rc == SF_OK && got) rc = count_mask(col->valid, n, file, k->vpath, row0, &nulls);
        if (rc != SF_OK || !got) {
            memset(col->valid, 1, n);
            return rc;
        }
        col->nulls = nulls;
    }
    if (val_map != NULL && (col->nulls == 0 || sf__lend_zero_under_nulls(val_map, col->valid, n))) {
        SF_CALL(sf__batch_lend(b, c, val_map, NULL));
        *done = true;
        return SF_OK;
    }
    void *dst = k->kind == K_INT ? (void *)col->i64 : (void *)col->f64;
    bool got = false;
    sf_status rc = raw_read(h, &k->raw, k->dset, file, k->path, row0, n, dst, &got);
    if (rc != SF_OK || !got) {
        /* H5Dread takes the column: its own validity bytes back, all 1. */
        if (sf__batch_is_lent(b, c)) sf__batch_unlend(b, c);
        else if (col->valid && col->nulls) memset(col->valid, 1, n);
        col->nulls = 0;
        return rc;
    }
    if (col->nulls) zero_nulls(col, n);
    *done = true;
    return SF_OK;
}

/* Reads rows row0..row0+n of column c (and its mask, if any) into b. */
static sf_status read_column(sf_reader *r, h5reader *h, int c, sf_batch *b, uint64_t row0, size_t n)
{
    sf_status rc = SF_OK;
    if (h->cols[c].raw.on && (h->cols[c].vdset < 0 || h->cols[c].vraw.on)) {
        bool done = false;
        SF_CALL(read_column_raw(r, h, c, b, row0, n, &done));
        if (done) return SF_OK;
    }
    const char *file = r->cfg.path;
    h5col *k = &h->cols[c];
    sf_column *col = &b->cols[c];
    hid_t mspace = H5I_INVALID_HID;
    bool vlen_held = false;
    const int64_t *mask = NULL;
    hsize_t start = row0, count = n;
    SF_CALL_H5(mspace = H5Screate_simple(1, &count, NULL), done, "%s: dataset '%s'", file, k->path);
    /* The mask first: values under a null are neither checked nor interned. */
    if (k->vdset >= 0) {
        SF_CALL_GOTO(read_mask(r, h, k, row0, n, mspace), done);
        mask = h->mask;
    }
    SF_CALL_H5(H5Sselect_hyperslab(k->fspace, H5S_SELECT_SET, &start, NULL, &count, NULL), done,
               "%s: dataset '%s': cannot select rows %llu..%llu", file, k->path, (unsigned long long)row0,
               (unsigned long long)(row0 + n));
    switch (k->kind) {
    case K_INT:
    case K_FLOAT: {
        void *dst = k->kind == K_INT ? (void *)col->i64 : (void *)col->f64;
        SF_CALL_H5(H5Dread(k->dset, k->mtype, mspace, k->fspace, H5P_DEFAULT, dst), done,
                   "%s: dataset '%s': cannot read rows %llu..%llu", file, k->path, (unsigned long long)row0,
                   (unsigned long long)(row0 + n));
        SF_CALL_GOTO(apply_mask(b, c, mask, n), done);
        break;
    }
    case K_UINT64: {
        SF_CALL_GOTO(grow_scratch(&h->scratch, &h->scratch_cap, n * sizeof(uint64_t)), done);
        uint64_t *u = h->scratch;
        SF_CALL_H5(H5Dread(k->dset, k->mtype, mspace, k->fspace, H5P_DEFAULT, u), done,
                   "%s: dataset '%s': cannot read rows %llu..%llu", file, k->path, (unsigned long long)row0,
                   (unsigned long long)(row0 + n));
        for (size_t i = 0; i < n; i++) {
            if (mask != NULL && mask[i] == 0) {
                SF_CALL_GOTO(sf_batch_set_null(b, c, i), done);
                continue;
            }
            SF_CHECK_GOTO(u[i] <= (uint64_t)INT64_MAX, SF_ERR_PARSE, done,
                          "%s: dataset '%s', element %llu: value %" PRIu64 " does not fit int64", file,
                          k->path, (unsigned long long)(row0 + i), u[i]);
            col->i64[i] = (int64_t)u[i];
        }
        break;
    }
    case K_FSTR:
        SF_CALL_GOTO(grow_scratch(&h->scratch, &h->scratch_cap, n * k->width), done);
        SF_CALL_H5(H5Dread(k->dset, k->mtype, mspace, k->fspace, H5P_DEFAULT, h->scratch), done,
                   "%s: dataset '%s': cannot read rows %llu..%llu", file, k->path, (unsigned long long)row0,
                   (unsigned long long)(row0 + n));
        SF_CALL_GOTO(intern_fixed(b, c, mask, h->scratch, n, k->width, k->spacepad), done);
        break;
    case K_VSTR: {
        SF_CALL_GOTO(grow_scratch(&h->scratch, &h->scratch_cap, n * sizeof(char *)), done);
        char **v = h->scratch;
        memset(v, 0, n * sizeof(char *));
        SF_CALL_H5(H5Dread(k->dset, k->mtype, mspace, k->fspace, H5P_DEFAULT, v), done,
                   "%s: dataset '%s': cannot read rows %llu..%llu", file, k->path, (unsigned long long)row0,
                   (unsigned long long)(row0 + n));
        vlen_held = true;
        for (size_t i = 0; i < n; i++) {
            if (mask != NULL && mask[i] == 0) {
                SF_CALL_GOTO(sf_batch_set_null(b, c, i), done);
                continue;
            }
            const char *s = v[i] ? v[i] : "";
            SF_CALL_GOTO(sf_dict_intern(&col->dict, s, strlen(s), &col->code[i]), done);
        }
        break;
    }
    }
done:
    if (vlen_held) {
#if H5_VERSION_GE(1, 12, 0)
        H5Treclaim(k->mtype, mspace, H5P_DEFAULT, h->scratch);
#else
        H5Dvlen_reclaim(k->mtype, mspace, H5P_DEFAULT, h->scratch);
#endif
    }
    sf__h5_close_id(&mspace);
    return rc;
}

/* A file cut while it is read: HDF5's own reads past its end give zeros,
 * so every batch checks the file's length before and after its reads (a
 * file that shrank during them is caught by the second). */
static sf_status check_length(sf_reader *r, const h5reader *h)
{
    if (h->need_bytes == 0) return SF_OK;
    struct stat st;
    SF_CHECK(fstat(h->fd, &st) == 0, SF_ERR_IO, "%s: cannot stat: %s", r->cfg.path, strerror(errno));
    SF_CHECK((uint64_t)st.st_size >= h->need_bytes, SF_ERR_IO,
             "%s: the file is now %lld bytes, shorter than the %llu its HDF5 metadata allocate: truncated "
             "while being read",
             r->cfg.path, (long long)st.st_size, (unsigned long long)h->need_bytes);
    return SF_OK;
}

static sf_status h5_next(sf_reader *r, sf_batch *b, bool *eof)
{
    h5reader *h = r->impl;
    sf_batch_clear(b);
    uint64_t left = h->hi > h->next_row ? h->hi - h->next_row : 0;
    if (left == 0) {
        *eof = true;
        return SF_OK;
    }
    size_t per = r->cfg.batch_rows && r->cfg.batch_rows < b->cap ? r->cfg.batch_rows : b->cap;
    size_t n = chunk_cut(r, h, h->next_row, left < per ? (size_t)left : per);
    SF_CHECK(b->ncols == h->ncols, SF_ERR_ARG, "%s: batch has %d columns, the table %d", r->cfg.path, b->ncols,
             h->ncols);
    SF_CALL(check_length(r, h));
    for (int c = 0; c < h->ncols; c++) {
        if (!b->cols[c].loaded || (r->want != NULL && !r->want[c])) continue;
        sf_status rc = read_column(r, h, c, b, h->next_row, n);
        if (rc != SF_OK) {
            /* Leave the batch empty, with the nulls marked so far undone. */
            b->nrows = n;
            sf_batch_clear(b);
            return rc;
        }
    }
    sf_status rc = check_length(r, h);
    if (rc != SF_OK) {
        b->nrows = n;
        sf_batch_clear(b);
        return rc;
    }
    b->first_row = h->next_row;
    b->nrows = n;
    h->next_row += n;
    *eof = false;
    return SF_OK;
}

static sf_status h5_rewind(sf_reader *r)
{
    h5reader *h = r->impl;
    h->next_row = h->lo;
    return SF_OK;
}

/* A part is a row range: every next reads its hyperslabs from there. */
static sf_status h5_set_part(sf_reader *r, uint64_t begin, uint64_t end, const uint64_t at_begin[2],
                             const uint64_t at_end[2])
{
    (void)at_begin;
    (void)at_end;
    h5reader *h = r->impl;
    SF_CHECK(end <= h->nrows, SF_ERR_ARG, "%s: part [%" PRIu64 ", %" PRIu64 ") is past the end (%" PRIu64 " rows)",
             r->cfg.path, begin, end, h->nrows);
    h->lo = h->next_row = begin;
    h->hi = end;
    return SF_OK;
}

/* A position is the next row: v[0] next row, v[1] rows delivered (the
 * same: no row is ever skipped), v[2] the table's row count, to refuse a
 * position taken on another table; v[3] is zero. */
static void h5_tell(const sf_reader *r, sf_reader_pos *pos)
{
    const h5reader *h = r->impl;
    pos->v[0] = h->next_row;
    pos->v[1] = h->next_row;
    pos->v[2] = h->nrows;
    pos->v[3] = 0;
}

/* Every next reads its own hyperslab starting at next_row, so a seek only
 * moves that index. */
static sf_status h5_seek(sf_reader *r, const sf_reader_pos *pos)
{
    h5reader *h = r->impl;
    SF_CHECK(pos->v[2] == h->nrows, SF_ERR_ARG,
             "%s: reader position was taken on a table of %" PRIu64 " rows, this one has %" PRIu64,
             r->cfg.path, pos->v[2], h->nrows);
    SF_CHECK(pos->v[0] <= h->nrows, SF_ERR_ARG,
             "%s: reader position row %" PRIu64 " is past the end of the table (%" PRIu64 " rows)",
             r->cfg.path, pos->v[0], h->nrows);
    SF_CHECK(pos->v[1] == pos->v[0] && pos->v[3] == 0, SF_ERR_ARG,
             "%s: reader position {%" PRIu64 ", %" PRIu64 ", %" PRIu64 ", %" PRIu64
             "} is not one of an HDF5 table",
             r->cfg.path, pos->v[0], pos->v[1], pos->v[2], pos->v[3]);
    h->next_row = pos->v[0];
    r->bad_rows = 0;
    return SF_OK;
}

static void h5_destroy(sf_reader *r)
{
    h5reader_free(r->impl);
    r->impl = NULL;
}

/* ---- writer --------------------------------------------------------------- */

typedef struct h5wcol {
    hid_t dset;
    hid_t ftype;    /* file type (also the memory type for strings) */
    size_t width;   /* fixed strings */
    hid_t vdset;    /* validity mask, created at the column's first null */
} h5wcol;

typedef struct h5writer {
    char *path;
    char *group_name;
    hid_t file;
    hid_t group;
    bool vlen;
    bool created;   /* datasets exist */
    int ncols;
    h5wcol *cols;
    uint64_t nrows;
    void *scratch;
    size_t scratch_cap;
    char *sbuf;
    size_t sbuf_cap;
    hid_t vgroup;   /* "_valid", created with the first mask */
    uint8_t *ones;  /* SF__H5_CHUNK_ROWS_MAX 1s, for masks of rows without nulls */
} h5writer;

static void h5writer_free(h5writer *h)
{
    if (h == NULL) return;
    for (int c = 0; h->cols != NULL && c < h->ncols; c++) {
        sf__h5_close_id(&h->cols[c].dset);
        sf__h5_close_id(&h->cols[c].vdset);
        sf__h5_close_id(&h->cols[c].ftype);
    }
    free(h->cols);
    sf__h5_close_id(&h->vgroup);
    sf__h5_close_id(&h->group);
    sf__h5_close_id(&h->file);
    free(h->path);
    free(h->group_name);
    free(h->scratch);
    free(h->sbuf);
    free(h->ones);
    free(h);
}

static size_t chunk_rows(size_t elem)
{
    size_t rows = SF__H5_CHUNK_BYTES / (elem ? elem : 1);
    if (rows > SF__H5_CHUNK_ROWS_MAX) rows = SF__H5_CHUNK_ROWS_MAX;
    if (rows < SF__H5_CHUNK_ROWS_MIN) rows = SF__H5_CHUNK_ROWS_MIN;
    return rows;
}

static sf_status write_type_attr(h5writer *h, hid_t dset, const char *obj)
{
    sf_status rc = SF_OK;
    hid_t st = H5I_INVALID_HID, sp = H5I_INVALID_HID, a = H5I_INVALID_HID;
    const char *val = "timestamp";
    SF_CALL_H5(st = H5Tcopy(H5T_C_S1), done, "%s: dataset '%s': attribute type", h->path, obj);
    SF_CALL_H5(H5Tset_size(st, H5T_VARIABLE), done, "%s: dataset '%s': attribute type", h->path, obj);
    SF_CALL_H5(H5Tset_cset(st, H5T_CSET_UTF8), done, "%s: dataset '%s': attribute type", h->path, obj);
    SF_CALL_H5(sp = H5Screate(H5S_SCALAR), done, "%s: dataset '%s': attribute space", h->path, obj);
    SF_CALL_H5(a = H5Acreate2(dset, SF__H5_TYPE_ATTR, st, sp, H5P_DEFAULT, H5P_DEFAULT), done,
               "%s: dataset '%s': cannot create attribute '%s'", h->path, obj, SF__H5_TYPE_ATTR);
    SF_CALL_H5(H5Awrite(a, st, &val), done, "%s: dataset '%s': cannot write attribute '%s'", h->path, obj,
               SF__H5_TYPE_ATTR);
done:
    sf__h5_close_id(&a);
    sf__h5_close_id(&sp);
    sf__h5_close_id(&st);
    return rc;
}

/* Creates every column's dataset; first (may be NULL) is the first batch,
 * which sets the fixed string widths. */
static sf_status create_datasets(sf_table_writer *w, h5writer *h, const sf_batch *first)
{
    sf_status rc = SF_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID;
    hsize_t zero = 0, unlimited = H5S_UNLIMITED;
    SF_CALL_H5(space = H5Screate_simple(1, &zero, &unlimited), done, "%s: dataspace", h->path);
    for (int c = 0; c < h->ncols; c++) {
        const sf_field *f = &w->schema.fields[c];
        h5wcol *k = &h->cols[c];
        char obj[1024];
        object_path(obj, sizeof obj, h->group_name, f->name);
        size_t elem = 8;
        switch (f->type) {
        case SF_INT64:
        case SF_TIMESTAMP: SF_CALL_H5(k->ftype = H5Tcopy(H5T_STD_I64LE), done, "%s: type", h->path); break;
        case SF_FLOAT64: SF_CALL_H5(k->ftype = H5Tcopy(H5T_IEEE_F64LE), done, "%s: type", h->path); break;
        case SF_STRING:
            SF_CALL_H5(k->ftype = H5Tcopy(H5T_C_S1), done, "%s: type", h->path);
            SF_CALL_H5(H5Tset_cset(k->ftype, H5T_CSET_UTF8), done, "%s: type", h->path);
            if (h->vlen) {
                SF_CALL_H5(H5Tset_size(k->ftype, H5T_VARIABLE), done, "%s: type", h->path);
                elem = 16;
            } else {
                size_t longest = 0;
                if (first != NULL && first->cols[c].loaded) {
                    const sf_column *col = &first->cols[c];
                    for (size_t r = 0; r < first->nrows; r++) {
                        if (sf_col_is_null(col, r)) continue;
                        size_t len;
                        (void)sf_dict_str(&col->dict, col->code[r], &len);
                        if (len > longest) longest = len;
                    }
                }
                size_t width = longest > SF__H5_FIXED_WIDTH_MIN ? longest : SF__H5_FIXED_WIDTH_MIN;
                width = (width + 7) / 8 * 8;
                k->width = width;
                elem = width;
                SF_CALL_H5(H5Tset_size(k->ftype, width), done, "%s: type", h->path);
                SF_CALL_H5(H5Tset_strpad(k->ftype, H5T_STR_NULLPAD), done, "%s: type", h->path);
            }
            break;
        case SF_TYPE_NONE:
            SF_CHECK_GOTO(false, SF_ERR_ARG, done, "%s: column '%s' has no type", h->path, f->name);
        }
        hsize_t chunk = chunk_rows(elem);
        SF_CALL_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE), done, "%s: property list", h->path);
        SF_CALL_H5(H5Pset_chunk(dcpl, 1, &chunk), done, "%s: dataset '%s': chunking", h->path, obj);
        SF_CALL_H5(k->dset = H5Dcreate2(h->group, f->name, k->ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), done,
                   "%s: cannot create dataset '%s'", h->path, obj);
        sf__h5_close_id(&dcpl);
        if (f->type == SF_TIMESTAMP) SF_CALL_GOTO(write_type_attr(h, k->dset, obj), done);
    }
    h->created = true;
done:
    sf__h5_close_id(&dcpl);
    sf__h5_close_id(&space);
    return rc;
}

/* Writes mask values for rows start..start+n of column k's mask, extending it
 * first: valid[0..n) or, when valid is NULL, 1s (in pieces of at most
 * SF__H5_CHUNK_ROWS_MAX rows from one small buffer, however many rows). */
static sf_status write_mask_rows(h5writer *h, h5wcol *k, const char *obj, uint64_t start, uint64_t n,
                                 const uint8_t *valid)
{
    sf_status rc = SF_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    hsize_t total = start + n;
    if (n == 0) return SF_OK;
    if (valid == NULL && h->ones == NULL) {
        h->ones = malloc(SF__H5_CHUNK_ROWS_MAX);
        SF_CHECK(h->ones != NULL, SF_ERR_NOMEM, "out of memory (HDF5 mask buffer)");
        memset(h->ones, 1, SF__H5_CHUNK_ROWS_MAX);
    }
    SF_CALL_H5(H5Dset_extent(k->vdset, &total), done, "%s: validity mask '%s': cannot extend to %llu rows",
               h->path, obj, (unsigned long long)total);
    SF_CALL_H5(fspace = H5Dget_space(k->vdset), done, "%s: validity mask '%s'", h->path, obj);
    uint64_t piece = valid != NULL ? n : SF__H5_CHUNK_ROWS_MAX;
    for (uint64_t off = 0; off < n; off += piece) {
        hsize_t at = start + off, count = n - off < piece ? n - off : piece;
        SF_CALL_H5(mspace = H5Screate_simple(1, &count, NULL), done, "%s: dataspace", h->path);
        SF_CALL_H5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &at, NULL, &count, NULL), done,
                   "%s: validity mask '%s': cannot select rows", h->path, obj);
        SF_CALL_H5(H5Dwrite(k->vdset, H5T_NATIVE_UINT8, mspace, fspace, H5P_DEFAULT, valid ? valid : h->ones),
                   done, "%s: validity mask '%s': cannot write rows %llu..%llu", h->path, obj,
                   (unsigned long long)at, (unsigned long long)(at + count));
        sf__h5_close_id(&mspace);
    }
done:
    sf__h5_close_id(&mspace);
    sf__h5_close_id(&fspace);
    return rc;
}

/* Creates column `name`'s mask (and the "_valid" group with the first mask),
 * with 1s for the h->nrows rows already written. */
static sf_status create_mask(h5writer *h, h5wcol *k, const char *name, const char *obj)
{
    sf_status rc = SF_OK;
    hid_t space = H5I_INVALID_HID, dcpl = H5I_INVALID_HID, gcpl = H5I_INVALID_HID;
    hsize_t zero = 0, unlimited = H5S_UNLIMITED, chunk = chunk_rows(1);
    if (h->vgroup < 0) {
        char gpath[1024];
        object_path(gpath, sizeof gpath, h->group_name, SF__H5_VALID_GROUP);
        SF_CALL_H5(gcpl = H5Pcreate(H5P_GROUP_CREATE), done, "%s: property list", h->path);
        SF_CALL_H5(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), done,
                   "%s: property list", h->path);
        SF_CALL_H5(h->vgroup = H5Gcreate2(h->group, SF__H5_VALID_GROUP, H5P_DEFAULT, gcpl, H5P_DEFAULT), done,
                   "%s: cannot create group '%s'", h->path, gpath);
    }
    SF_CALL_H5(space = H5Screate_simple(1, &zero, &unlimited), done, "%s: dataspace", h->path);
    SF_CALL_H5(dcpl = H5Pcreate(H5P_DATASET_CREATE), done, "%s: property list", h->path);
    SF_CALL_H5(H5Pset_chunk(dcpl, 1, &chunk), done, "%s: validity mask '%s': chunking", h->path, obj);
    SF_CALL_H5(k->vdset = H5Dcreate2(h->vgroup, name, H5T_STD_U8LE, space, H5P_DEFAULT, dcpl, H5P_DEFAULT), done,
               "%s: cannot create validity mask '%s'", h->path, obj);
    SF_CALL_GOTO(write_mask_rows(h, k, obj, 0, h->nrows, NULL), done);
done:
    sf__h5_close_id(&gcpl);
    sf__h5_close_id(&dcpl);
    sf__h5_close_id(&space);
    return rc;
}

/* Appends this batch's part of column c's mask, creating the mask at the
 * column's first null. */
static sf_status write_mask(h5writer *h, h5wcol *k, const char *name, const sf_column *col, size_t n)
{
    bool has_null = col->valid != NULL && (col->nulls > 0 || memchr(col->valid, 0, n) != NULL);
    if (k->vdset < 0 && !has_null) return SF_OK;
    char obj[1024];
    mask_path(obj, sizeof obj, h->group_name, name);
    if (k->vdset < 0) SF_CALL(create_mask(h, k, name, obj));
    return write_mask_rows(h, k, obj, h->nrows, n, col->valid);
}

static sf_status h5w_write(sf_table_writer *w, const sf_batch *b)
{
    sf_status rc = SF_OK;
    h5writer *h = w->impl;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    SF_CHECK(b->ncols == h->ncols, SF_ERR_ARG, "%s: batch has %d columns, the writer's schema %d", h->path,
             b->ncols, h->ncols);
    for (int c = 0; c < h->ncols; c++) {
        SF_CHECK(b->cols[c].loaded, SF_ERR_ARG, "%s: column '%s' is not loaded in the batch", h->path,
                 w->schema.fields[c].name);
        SF_CHECK(b->cols[c].type == w->schema.fields[c].type, SF_ERR_ARG,
                 "%s: column '%s' is %s in the batch but %s in the writer's schema", h->path,
                 w->schema.fields[c].name, sf_type_name(b->cols[c].type),
                 sf_type_name(w->schema.fields[c].type));
    }
    if (!h->created) SF_CALL(create_datasets(w, h, b));
    size_t n = b->nrows;
    if (n == 0) return SF_OK;
    /* Check every string before extending any dataset, so that a batch that
     * cannot be written leaves the file as it was (all columns one length).
     * HDF5 strings end at a NUL byte: refuse values that hold one. */
    for (int c = 0; c < h->ncols; c++) {
        const sf_column *col = &b->cols[c];
        if (col->type != SF_STRING) continue;
        for (size_t r = 0; r < n; r++) {
            if (sf_col_is_null(col, r)) continue;
            size_t len;
            const char *s = sf_dict_str(&col->dict, col->code[r], &len);
            SF_CHECK(memchr(s, '\0', len) == NULL, SF_ERR_ARG,
                     "%s: column '%s', row %llu: a string with a NUL byte cannot be stored in HDF5",
                     h->path, w->schema.fields[c].name, (unsigned long long)(h->nrows + r));
            SF_CHECK(h->vlen || len <= h->cols[c].width, SF_ERR_ARG,
                     "%s: column '%s', row %llu: a string of %zu bytes does not fit the fixed width of %zu "
                     "bytes chosen from the first batch; write variable-length strings instead",
                     h->path, w->schema.fields[c].name, (unsigned long long)(h->nrows + r), len,
                     h->cols[c].width);
        }
    }
    hsize_t start = h->nrows, count = n, total = h->nrows + n;
    SF_CALL_H5(mspace = H5Screate_simple(1, &count, NULL), done, "%s: dataspace", h->path);
    for (int c = 0; c < h->ncols; c++) {
        const sf_column *col = &b->cols[c];
        h5wcol *k = &h->cols[c];
        const char *name = w->schema.fields[c].name;
        const void *buf = NULL;
        hid_t mtype = k->ftype;
        switch (col->type) {
        case SF_INT64:
        case SF_TIMESTAMP:
            mtype = H5T_NATIVE_INT64;
            buf = col->i64;
            if (col->valid && col->nulls) {
                SF_CALL_GOTO(grow_scratch(&h->scratch, &h->scratch_cap, n * sizeof(int64_t)), done);
                int64_t *v = h->scratch;
                for (size_t r = 0; r < n; r++) v[r] = col->valid[r] ? col->i64[r] : 0;
                buf = v;
            }
            break;
        case SF_FLOAT64:
            mtype = H5T_NATIVE_DOUBLE;
            buf = col->f64;
            if (col->valid && col->nulls) {
                SF_CALL_GOTO(grow_scratch(&h->scratch, &h->scratch_cap, n * sizeof(double)), done);
                double *v = h->scratch;
                for (size_t r = 0; r < n; r++) v[r] = col->valid[r] ? col->f64[r] : NAN;
                buf = v;
            }
            break;
        case SF_STRING:
            if (h->vlen) {
                size_t bytes = 0, len;
                for (size_t r = 0; r < n; r++) {
                    if (!sf_col_is_null(col, r)) (void)sf_dict_str(&col->dict, col->code[r], &len);
                    else len = 0;
                    bytes += len + 1;
                }
                SF_CALL_GOTO(grow_scratch(&h->scratch, &h->scratch_cap, n * sizeof(char *)), done);
                SF_CALL_GOTO(grow_scratch((void **)&h->sbuf, &h->sbuf_cap, bytes), done);
                char **p = h->scratch;
                char *q = h->sbuf;
                for (size_t r = 0; r < n; r++) {
                    const char *s = "";
                    len = 0;
                    if (!sf_col_is_null(col, r)) s = sf_dict_str(&col->dict, col->code[r], &len);
                    memcpy(q, s, len);
                    q[len] = '\0';
                    p[r] = q;
                    q += len + 1;
                }
                buf = p;
            } else {
                SF_CALL_GOTO(grow_scratch(&h->scratch, &h->scratch_cap, n * k->width), done);
                char *v = h->scratch;
                memset(v, 0, n * k->width);
                for (size_t r = 0; r < n; r++) {
                    if (sf_col_is_null(col, r)) continue;
                    size_t len;
                    const char *s = sf_dict_str(&col->dict, col->code[r], &len);
                    SF_CHECK_GOTO(len <= k->width, SF_ERR_ARG, done,
                                  "%s: column '%s', row %llu: a string of %zu bytes does not fit the fixed "
                                  "width of %zu bytes chosen from the first batch; write variable-length "
                                  "strings instead",
                                  h->path, name, (unsigned long long)(h->nrows + r), len, k->width);
                    memcpy(v + r * k->width, s, len);
                }
                buf = v;
            }
            break;
        case SF_TYPE_NONE: break;
        }
        SF_CALL_H5(H5Dset_extent(k->dset, &total), done, "%s: dataset '%s/%s': cannot extend to %llu rows",
                   h->path, h->group_name, name, (unsigned long long)total);
        SF_CALL_H5(fspace = H5Dget_space(k->dset), done, "%s: dataset '%s/%s'", h->path, h->group_name, name);
        SF_CALL_H5(H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL), done,
                   "%s: dataset '%s/%s': cannot select rows", h->path, h->group_name, name);
        SF_CALL_H5(H5Dwrite(k->dset, mtype, mspace, fspace, H5P_DEFAULT, buf), done,
                   "%s: dataset '%s/%s': cannot write rows %llu..%llu", h->path, h->group_name, name,
                   (unsigned long long)start, (unsigned long long)total);
        sf__h5_close_id(&fspace);
        SF_CALL_GOTO(write_mask(h, k, name, col, n), done);
    }
    h->nrows = total;
done:
    sf__h5_close_id(&fspace);
    sf__h5_close_id(&mspace);
    return rc;
}

static sf_status h5w_close(sf_table_writer *w)
{
    sf_status rc = SF_OK;
    h5writer *h = w->impl;
    if (h == NULL) return SF_OK;
    /* A table that never saw a batch still gets its (empty) columns. */
    if (!h->created && w->rc == SF_OK) rc = create_datasets(w, h, NULL);
    for (int c = 0; c < h->ncols; c++) {
        if (h->cols[c].dset >= 0 && H5Dclose(h->cols[c].dset) < 0 && rc == SF_OK)
            rc = sf__h5_fail(__FILE__, __LINE__, "%s: cannot close dataset '%s'", h->path, w->schema.fields[c].name);
        h->cols[c].dset = H5I_INVALID_HID;
        if (h->cols[c].vdset >= 0 && H5Dclose(h->cols[c].vdset) < 0 && rc == SF_OK)
            rc = sf__h5_fail(__FILE__, __LINE__, "%s: cannot close the validity mask of '%s'", h->path,
                         w->schema.fields[c].name);
        h->cols[c].vdset = H5I_INVALID_HID;
    }
    if (h->vgroup >= 0 && H5Gclose(h->vgroup) < 0 && rc == SF_OK)
        rc = sf__h5_fail(__FILE__, __LINE__, "%s: cannot close group '%s'", h->path, SF__H5_VALID_GROUP);
    h->vgroup = H5I_INVALID_HID;
    if (h->group >= 0 && H5Gclose(h->group) < 0 && rc == SF_OK)
        rc = sf__h5_fail(__FILE__, __LINE__, "%s: cannot close group '%s'", h->path, h->group_name);
    h->group = H5I_INVALID_HID;
    if (h->file >= 0 && H5Fclose(h->file) < 0 && rc == SF_OK)
        rc = sf__h5_fail(__FILE__, __LINE__, "%s: cannot close the file (data may be incomplete)", h->path);
    h->file = H5I_INVALID_HID;
    h5writer_free(h);
    w->impl = NULL;
    return rc;
}

static const sf__writer_ops h5w_ops = {h5w_write, h5w_close};

sf_status sf__hdf5_writer_create(sf_table_writer *w, const char *path, const char *group, bool vlen_strings)
{
    sf_status rc = SF_OK;
    hid_t fcpl = H5I_INVALID_HID, gcpl = H5I_INVALID_HID, lcpl = H5I_INVALID_HID;
    const char *gname = group ? group : "/table";
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    for (int c = 0; c < w->schema.ncols; c++) {
        const char *name = w->schema.fields[c].name;
        SF_CHECK(name[0] != '\0' && strchr(name, '/') == NULL && strcmp(name, ".") != 0, SF_ERR_ARG,
                 "%s: column name '%s' cannot be an HDF5 dataset name (empty, '.' or containing '/')", path,
                 name);
        SF_CHECK(strcmp(name, SF__H5_VALID_GROUP) != 0, SF_ERR_ARG,
                 "%s: column name '%s' is reserved in HDF5 tables (the group of the validity masks)", path, name);
    }
    h5writer *h = calloc(1, sizeof *h);
    SF_CHECK(h != NULL, SF_ERR_NOMEM, "out of memory (HDF5 writer)");
    h->file = h->group = h->vgroup = H5I_INVALID_HID;
    h->vlen = vlen_strings;
    h->ncols = w->schema.ncols;
    h->path = strdup(path);
    h->group_name = strdup(gname);
    h->cols = calloc(h->ncols ? (size_t)h->ncols : 1, sizeof *h->cols);
    for (int c = 0; h->cols != NULL && c < h->ncols; c++)
        h->cols[c].dset = h->cols[c].ftype = h->cols[c].vdset = H5I_INVALID_HID;
    SF_CHECK_GOTO(h->path && h->group_name && h->cols, SF_ERR_NOMEM, done, "out of memory (HDF5 writer)");

    /* Track creation order everywhere (the root group too), so readers see
     * the columns in schema order. */
    SF_CALL_H5(fcpl = H5Pcreate(H5P_FILE_CREATE), done, "%s: property list", path);
    SF_CALL_H5(H5Pset_link_creation_order(fcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), done,
               "%s: property list", path);
    SF_CALL_H5(h->file = H5Fcreate(path, H5F_ACC_TRUNC, fcpl, H5P_DEFAULT), done,
               "%s: cannot create the HDF5 file", path);
    if (strcmp(gname, "/") == 0) {
        SF_CALL_H5(h->group = H5Gopen2(h->file, "/", H5P_DEFAULT), done, "%s: cannot open the root group", path);
    } else {
        SF_CALL_H5(gcpl = H5Pcreate(H5P_GROUP_CREATE), done, "%s: property list", path);
        SF_CALL_H5(H5Pset_link_creation_order(gcpl, H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED), done,
                   "%s: property list", path);
        SF_CALL_H5(lcpl = H5Pcreate(H5P_LINK_CREATE), done, "%s: property list", path);
        SF_CALL_H5(H5Pset_create_intermediate_group(lcpl, 1), done, "%s: property list", path);
        SF_CALL_H5(h->group = H5Gcreate2(h->file, gname, lcpl, gcpl, H5P_DEFAULT), done,
                   "%s: cannot create group '%s'", path, gname);
    }
    w->impl = h;
    w->ops = &h5w_ops;
    h = NULL;
done:
    sf__h5_close_id(&lcpl);
    sf__h5_close_id(&gcpl);
    sf__h5_close_id(&fcpl);
    h5writer_free(h);
    return rc;
}
