/* Internal: file-system helpers shared by the run and the checkpoints. */
#ifndef SF_CORE_FS_H
#define SF_CORE_FS_H

#include "shardflow/status.h"

/* Creates path and its missing parents (like mkdir -p); an existing
 * directory is fine, an existing non-directory is SF_ERR_IO. Not
 * collective. */
sf_status sf__mkdir_p(const char *path);

#endif
