/* Status codes and error recording shared by every module. */
#ifndef SF_STATUS_H
#define SF_STATUS_H

#include <stddef.h>

typedef enum sf_status {
    SF_OK = 0,
    SF_ERR_ARG,      /* bad argument from our own code or the command line */
    SF_ERR_IO,       /* file system errors */
    SF_ERR_PARSE,    /* malformed input data (CSV, HDF5 contents) */
    SF_ERR_CONFIG,   /* malformed or invalid workflow file */
    SF_ERR_MPI,      /* an MPI call failed */
    SF_ERR_H5,       /* an HDF5 call failed */
    SF_ERR_NOMEM,    /* allocation failed or memory budget exhausted */
    SF_ERR_TIMEOUT,  /* a deadline passed */
    SF_ERR_INTERNAL, /* a bug in shardflow */
    SF_ERR_INTERRUPTED, /* stopped by a signal (a checkpoint was written) */
    SF_ERR_COVERAGE  /* too many rows excluded (fault.min_coverage) */
} sf_status;

/* Short stable name of a status ("SF_ERR_PARSE"). Not collective. */
const char *sf_status_name(sf_status code);

/* Records a formatted message for the calling thread and returns code.
 * src_file/src_line are the C source location (kept for debugging only).
 * Not collective; thread-safe (the message is thread-local). */
sf_status sf_error_set(sf_status code, const char *src_file, int src_line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* The calling thread's last recorded message ("" if none). */
const char *sf_error_message(void);

/* Replaces the calling thread's message (used to carry a message across ranks
 * or threads). */
void sf_error_set_message(const char *msg);

/* Clears the calling thread's message. */
void sf_error_clear(void);

/* Check a condition; on failure record the message and return code. */
#define SF_CHECK(cond, code, ...)                                        \
    do {                                                                 \
        if (!(cond)) return sf_error_set((code), __FILE__, __LINE__, __VA_ARGS__); \
    } while (0)

/* Propagate a failing status. */
#define SF_CALL(expr)                                                    \
    do {                                                                 \
        sf_status sf__rc_ = (expr);                                      \
        if (sf__rc_ != SF_OK) return sf__rc_;                            \
    } while (0)

/* Variants for functions with a single exit path: they assign `rc` and jump. */
#define SF_CHECK_GOTO(cond, code, label, ...)                            \
    do {                                                                 \
        if (!(cond)) {                                                   \
            rc = sf_error_set((code), __FILE__, __LINE__, __VA_ARGS__);  \
            goto label;                                                  \
        }                                                                \
    } while (0)

#define SF_CALL_GOTO(expr, label)                                        \
    do {                                                                 \
        rc = (expr);                                                     \
        if (rc != SF_OK) goto label;                                     \
    } while (0)

#endif
