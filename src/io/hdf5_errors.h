/* Internal: HDF5 error messages and id cleanup shared by the HDF5 table
 * reader/writer (src/io/hdf5_table.c) and the checkpoint files
 * (src/fault/checkpoint.c), the only code that includes hdf5.h. */
#ifndef SF_IO_HDF5_ERRORS_H
#define SF_IO_HDF5_ERRORS_H

#include <hdf5.h>

#include "shardflow/status.h"

/* Records SF_ERR_H5 with the formatted message and the most specific entry
 * of HDF5's error stack (with a hint when a file could not be locked),
 * then clears the stack. */
__attribute__((format(printf, 3, 4))) sf_status sf__h5_fail(const char *src, int line, const char *fmt, ...);

/* Runs an HDF5 call; a negative result records SF_ERR_H5 and jumps to label
 * (functions with one exit path and a `rc` variable). */
#define SF_CALL_H5(expr, label, ...)                                     \
    do {                                                                 \
        if ((expr) < 0) {                                                \
            rc = sf__h5_fail(__FILE__, __LINE__, __VA_ARGS__);           \
            goto label;                                                  \
        }                                                                \
    } while (0)

/* Closes any HDF5 id (file, group, dataset, space, type, attribute, list)
 * and sets it invalid; a negative id is left alone. */
void sf__h5_close_id(hid_t *id);

#endif
