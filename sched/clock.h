/*
 * clock.h - the runtime's cheap clock, for per-run counters and traces.
 *
 * Time in behaviour is measured once per actor run (two reads per run, not
 * per message), so the clock is on the hot path of every run. On x86 with an
 * invariant TSC (CPUID says its rate is constant and it keeps running in
 * deep sleep states) a read is one rdtsc: 13 ns on the 2-core development
 * machine, against 35 ns for clock_gettime(CLOCK_MONOTONIC), whose vDSO
 * there goes through kvm-clock. Elsewhere, or with TROUPE_CLOCK=monotonic in
 * the environment, a tick is a CLOCK_MONOTONIC nanosecond.
 *
 * Ticks are converted to nanoseconds off the hot path (stats readers, the
 * trace writer) with a rate measured against CLOCK_MONOTONIC from the
 * process's first tri_clock_init onwards (clock.c): conversions wait until
 * that baseline is at least 1 ms long, and the rate is fixed once it is
 * 50 ms long.
 */
#ifndef TROUPE_CLOCK_H
#define TROUPE_CLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#if defined(__x86_64__) || defined(__i386__)
#include <x86intrin.h>
#define TRI_CLOCK_TSC 1
#else
#define TRI_CLOCK_TSC 0
#endif

/* True when ticks are TSC cycles (set once by tri_clock_init). */
extern bool tri_clock_tsc;

/* Choose the clock and start the calibration baseline. Idempotent, any
 * thread; call before the first tri_ticks (tr_system_new does). */
void tri_clock_init(void);

static inline uint64_t tri_mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Now, in ticks. Any thread. */
static inline uint64_t tri_ticks(void) {
#if TRI_CLOCK_TSC
  if (__builtin_expect(tri_clock_tsc, 1))
    return __rdtsc();
#endif
  return tri_mono_ns();
}

/* Nanoseconds per tick (1.0 without the TSC). Off the hot path: it reads
 * CLOCK_MONOTONIC, and may wait up to 1 ms just after tri_clock_init. */
double tri_ns_per_tick(void);

/* `ticks` (a duration) in nanoseconds, with rate `npt` from tri_ns_per_tick. */
static inline uint64_t tri_ticks_ns(uint64_t ticks, double npt) {
  return npt == 1.0 ? ticks : (uint64_t)((double)ticks * npt + 0.5);
}

#endif
