#define _POSIX_C_SOURCE 200809L
#include "shardflow/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* One message per thread: OpenMP threads may fail independently and the
 * executor copies the first failure's message to the master thread. */
static _Thread_local char sf_msg[2048];

const char *sf_status_name(sf_status code)
{
    switch (code) {
    case SF_OK: return "SF_OK";
    case SF_ERR_ARG: return "SF_ERR_ARG";
    case SF_ERR_IO: return "SF_ERR_IO";
    case SF_ERR_PARSE: return "SF_ERR_PARSE";
    case SF_ERR_CONFIG: return "SF_ERR_CONFIG";
    case SF_ERR_MPI: return "SF_ERR_MPI";
    case SF_ERR_H5: return "SF_ERR_H5";
    case SF_ERR_NOMEM: return "SF_ERR_NOMEM";
    case SF_ERR_TIMEOUT: return "SF_ERR_TIMEOUT";
    case SF_ERR_INTERNAL: return "SF_ERR_INTERNAL";
    case SF_ERR_INTERRUPTED: return "SF_ERR_INTERRUPTED";
    case SF_ERR_COVERAGE: return "SF_ERR_COVERAGE";
    }
    return "SF_ERR_UNKNOWN";
}

sf_status sf_error_set(sf_status code, const char *src_file, int src_line, const char *fmt, ...)
{
    (void)src_file;
    (void)src_line;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sf_msg, sizeof sf_msg, fmt, ap);
    va_end(ap);
    return code;
}

const char *sf_error_message(void) { return sf_msg; }

void sf_error_set_message(const char *msg)
{
    snprintf(sf_msg, sizeof sf_msg, "%s", msg ? msg : "");
}

void sf_error_clear(void) { sf_msg[0] = '\0'; }
