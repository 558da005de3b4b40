/*
 * tsan.h - tell ThreadSanitizer about hand-offs it cannot see.
 *
 * Concurrency Kit's ck_pr operations are inline asm (or volatile accesses
 * plus fences with CK_USE_CC_BUILTINS), which ThreadSanitizer does not model
 * as synchronisation. Where troupe hands an object from one thread to
 * another through a ck_ring, it says so explicitly: the producer releases
 * the object just before publishing it, the consumer acquires it just after
 * taking it. This is the same happens-before edge the ring's fences create;
 * it adds no ordering of its own and compiles to nothing outside TSan builds.
 */
#ifndef TROUPE_TSAN_H
#define TROUPE_TSAN_H

#if defined(__SANITIZE_THREAD__)
#include <sanitizer/tsan_interface.h>
#define TRI_TSAN_RELEASE(p) __tsan_release((void *)(p))
#define TRI_TSAN_ACQUIRE(p) __tsan_acquire((void *)(p))
#else
#define TRI_TSAN_RELEASE(p) ((void)(p))
#define TRI_TSAN_ACQUIRE(p) ((void)(p))
#endif

#endif /* TROUPE_TSAN_H */
