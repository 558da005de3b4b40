/*
 * tr_test.h - assertions the Criterion suites share (main thread only:
 * Criterion's asserts must not run on a worker thread).
 */
#ifndef TROUPE_TR_TEST_H
#define TROUPE_TR_TEST_H

#include <criterion/criterion.h>
#include <troupe.h>

/* A call must succeed. */
#define OK(expr)                                                                                   \
  do {                                                                                             \
    tr_status st_ = (expr);                                                                        \
    cr_assert_eq(st_, TR_OK, "%s: %s", #expr, tr_status_name(st_));                                \
  } while (0)

/* A call must give `want`. */
#define EXPECT_ST(expr, want)                                                                      \
  do {                                                                                             \
    tr_status st_ = (expr);                                                                        \
    cr_assert_eq(st_, (want), "%s: got %s, want %s", #expr, tr_status_name(st_),                   \
                 tr_status_name(want));                                                            \
  } while (0)

/* Wait for quiescence with a deadline, so a lost wake-up fails the test
 * with a message instead of hanging it. */
#define WAIT_MS   20000
#define WAIT(sys) EXPECT_ST(tr_system_wait_for((sys), WAIT_MS), TR_OK)

static inline tr_system_stats stats(tr_system *sys) {
  tr_system_stats s;
  OK(tr_system_stats_get(sys, &s));
  return s;
}

#endif
