#define _POSIX_C_SOURCE 200809L
#include "io/hdf5_errors.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static herr_t h5_innermost(unsigned n, const H5E_error2_t *e, void *data)
{
    char *out = data;
    if (n == 0 && e->desc != NULL) snprintf(out, 256, "%s", e->desc);
    return 0;
}

sf_status sf__h5_fail(const char *src, int line, const char *fmt, ...)
{
    char msg[768], detail[256] = "";
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_innermost, detail);
    H5Eclear2(H5E_DEFAULT);
    /* A failed lock is the usual trouble on parallel file systems; say how
     * to turn locking off. Not a bare "lock": HDF5's messages about
     * truncated files ("sblock") and heap blocks contain it too. */
    if (strstr(detail, "to lock file") != NULL || strstr(detail, "to lock the file") != NULL)
        return sf_error_set(SF_ERR_H5, src, line,
                            "%s (HDF5: %s; on a file system without file locking set "
                            "HDF5_USE_FILE_LOCKING=FALSE)",
                            msg, detail);
    if (detail[0]) return sf_error_set(SF_ERR_H5, src, line, "%s (HDF5: %s)", msg, detail);
    return sf_error_set(SF_ERR_H5, src, line, "%s", msg);
}

void sf__h5_close_id(hid_t *id)
{
    if (*id < 0) return;
    switch (H5Iget_type(*id)) {
    case H5I_FILE: H5Fclose(*id); break;
    case H5I_GROUP: H5Gclose(*id); break;
    case H5I_DATASET: H5Dclose(*id); break;
    case H5I_DATASPACE: H5Sclose(*id); break;
    case H5I_DATATYPE: H5Tclose(*id); break;
    case H5I_ATTR: H5Aclose(*id); break;
    case H5I_GENPROP_LST: H5Pclose(*id); break;
    default: H5Oclose(*id); break;
    }
    *id = H5I_INVALID_HID;
}
