/*
 * check.h - what the plain stress programs share: a seeded PRNG and a
 * checker that counts results and prints the closing "N passed, N failed".
 * (They are not Criterion tests so that they also run under TSan.)
 */
#ifndef TROUPE_TEST_CHECK_H
#define TROUPE_TEST_CHECK_H

#include <stdint.h>
#include <stdio.h>

/* xorshift64: deterministic for a given seed (which must not be 0). */
static inline uint64_t check_rand(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static unsigned check_passed, check_failed;

/* Record one check; on failure print what, got and expected. */
static inline void expect(int ok, const char *what, unsigned long long got,
                          unsigned long long want) {
  if (ok) {
    check_passed++;
  } else {
    check_failed++;
    fprintf(stderr, "FAILED %s: got %llu, expected %llu\n", what, got, want);
  }
}

/* Print the closing line; returns the process exit status. */
static inline int check_report(const char *prog) {
  printf("%s: %u passed, %u failed\n", prog, check_passed, check_failed);
  return check_failed != 0;
}

#endif
