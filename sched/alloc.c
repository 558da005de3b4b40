/* alloc.c - allocation wrappers with a failure-injection hook (see alloc.h). */
#include "alloc.h"

#include <stdatomic.h>
#include <stdlib.h>

/* 0: off. Otherwise the 1-based index of the allocation to fail. */
static _Atomic uint64_t fail_at;
static _Atomic uint64_t count;
static _Atomic int failed;

/* Relaxed: a test arms the hook before the scenario and reads the counters
 * after it; the allocations in between need no ordering among themselves. */
static int should_fail(void) {
  uint64_t n = atomic_load_explicit(&fail_at, memory_order_relaxed);
  if (n == 0)
    return 0;
  if (atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) + 1 != n)
    return 0;
  atomic_store_explicit(&failed, 1, memory_order_relaxed);
  return 1;
}

void *tri_malloc(size_t n) { return should_fail() ? NULL : malloc(n); }
void *tri_calloc(size_t count_, size_t size) { return should_fail() ? NULL : calloc(count_, size); }
void *tri_realloc(void *p, size_t n) { return should_fail() ? NULL : realloc(p, n); }

void tri_alloc_fail_at(uint64_t n) {
  atomic_store(&count, 0);
  atomic_store(&failed, 0);
  atomic_store(&fail_at, n);
}

uint64_t tri_alloc_count(void) { return atomic_load(&count); }
int tri_alloc_failed(void) { return atomic_load(&failed); }
