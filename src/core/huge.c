#define _DEFAULT_SOURCE
#include "core/huge.h"

#include <stdint.h>
#include <sys/mman.h>

void sf__mem_huge(void *p, size_t n)
{
#ifdef MADV_HUGEPAGE
    const uintptr_t page = (uintptr_t)2 << 20;
    if (p == NULL || n < SF__HUGE_MIN) return;
    uintptr_t lo = ((uintptr_t)p + page - 1) & ~(page - 1);
    uintptr_t hi = ((uintptr_t)p + n) & ~(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_HUGEPAGE);
#else
    (void)p;
    (void)n;
#endif
}
