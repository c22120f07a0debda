/* Lending memory to a batch (engine-private: readers in src/io/).
 *
 * A reader that has a column's rows in memory already (a mapped file) can
 * point the batch's column at it instead of copying: the memory must stay
 * valid and unchanged until the batch is cleared or destroyed, and it is
 * read-only, so nothing may write into a lent column (sf_batch_set_null,
 * sf_batch_enable_valid and sf_batch_reserve refuse to). sf_batch_clear
 * and sf_batch_fini give every lent column its own buffers back. */
#ifndef SF_CORE_BATCH_LEND_H
#define SF_CORE_BATCH_LEND_H

#include <stdbool.h>

#include "shardflow/batch.h"

/* Points column c's values (int64 or float64; NULL: keep its own) and
 * validity bytes (NULL: keep its own) at lent memory, for the rows of the
 * current batch. */
sf_status sf__batch_lend(sf_batch *b, int c, const void *values, const uint8_t *valid);
/* Gives column c its own buffers back (values as they were before the
 * lending, validity bytes all 1). */
void sf__batch_unlend(sf_batch *b, int c);
/* Whether any of column c's arrays are lent. */
bool sf__batch_is_lent(const sf_batch *b, int c);

/* Validity bytes valid[0..n) about to be lent: true when every byte is 0
 * or 1, with *nulls the zeros (*nulls undefined when false). */
bool sf__lend_mask_scan(const uint8_t *valid, size_t n, size_t *nulls);
/* Whether every 8-byte value slot of values[0..n) under a null of
 * valid[0..n) (bytes 0 or 1) holds all-zero bits, as a copy leaves them
 * after zeroing the nulls. Only the slots under nulls are read. */
bool sf__lend_zero_under_nulls(const void *values, const uint8_t *valid, size_t n);
/* The same without the vector units (tests compare the two). */
bool sf__lend_mask_scan_portable(const uint8_t *valid, size_t n, size_t *nulls);
bool sf__lend_zero_under_nulls_portable(const void *values, const uint8_t *valid, size_t n);

#endif
