#define _POSIX_C_SOURCE 200809L
#include "core/fs.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

sf_status sf__mkdir_p(const char *path)
{
    char tmp[PATH_MAX];
    int n = snprintf(tmp, sizeof tmp, "%s", path);
    SF_CHECK(n > 0 && (size_t)n < sizeof tmp, SF_ERR_ARG, "directory path too long: %s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
            return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: cannot create directory: %s", tmp,
                                strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0777) != 0 && errno != EEXIST)
        return sf_error_set(SF_ERR_IO, __FILE__, __LINE__, "%s: cannot create directory: %s", tmp,
                            strerror(errno));
    struct stat st;
    SF_CHECK(stat(tmp, &st) == 0 && S_ISDIR(st.st_mode), SF_ERR_IO, "%s: not a directory", tmp);
    return SF_OK;
}
