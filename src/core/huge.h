/* Internal: transparent huge pages for large tables read at random. */
#ifndef SF_CORE_HUGE_H
#define SF_CORE_HUGE_H

#include <stddef.h>

/* Tables at least this large are worth huge pages. */
#define SF__HUGE_MIN ((size_t)4 << 20)

/* Asks the kernel to back the 2 MiB-aligned part of [p, p + n) with
 * transparent huge pages from the next page fault on (where THP is in
 * madvise mode, Debian's default). A table of users or groups touched at
 * random misses the TLB on nearly every access with 4 KiB pages; under a
 * hypervisor each such miss is a two-level page walk. Only a hint: errors
 * are ignored, smaller ranges are left alone. */
void sf__mem_huge(void *p, size_t n);

#endif
