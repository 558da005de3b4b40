/*
 * alloc.h - every heap allocation troupe makes goes through here, so tests
 * can make the Nth one fail (and check that each failure becomes a clear
 * status or a counted dead letter: never a crash, a leak or a lost message).
 */
#ifndef TROUPE_ALLOC_H
#define TROUPE_ALLOC_H

#include <stddef.h>
#include <stdint.h>

void *tri_malloc(size_t n);
void *tri_calloc(size_t count, size_t size);
void *tri_realloc(void *p, size_t n);

/*
 * Test hook: from now on, count allocations and make the nth one fail
 * (n >= 1; every later one succeeds). n = 0 turns the hook off. Process-wide;
 * not for use while another system allocates concurrently.
 */
void tri_alloc_fail_at(uint64_t n);
/* Allocations counted since the hook was last armed. */
uint64_t tri_alloc_count(void);
/* True once the armed failure has happened. */
int tri_alloc_failed(void);

#endif
