/*
 * tr_test.h - assertions the Criterion suites share (main thread only:
 * Criterion's asserts must not run on a worker thread).
 */
#ifndef TROUPE_TR_TEST_H
#define TROUPE_TR_TEST_H

#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdbool.h>
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

/* Expectations checked off the main thread (in a behaviour, a producer
 * thread), where Criterion's asserts must not run: count failures and
 * remember the first line; the main thread asserts with ASSERT_NO_BAD. */
static _Atomic uint64_t g_bad;
static _Atomic int g_bad_line;

static inline void note_bad(int line) {
  int none = 0;
  atomic_fetch_add_explicit(&g_bad, 1, memory_order_relaxed);
  atomic_compare_exchange_strong_explicit(&g_bad_line, &none, line, memory_order_relaxed,
                                          memory_order_relaxed);
}

static inline bool expect_at(bool ok, int line) {
  if (!ok)
    note_bad(line);
  return ok;
}

#define EXPECT(cond) expect_at((cond), __LINE__)

#define ASSERT_NO_BAD()                                                                            \
  cr_assert_eq(atomic_load(&g_bad), 0,                                                             \
               "%llu failed expectation(s) off the main thread, the first at line %d",             \
               (unsigned long long)atomic_load(&g_bad), atomic_load(&g_bad_line))

#endif
