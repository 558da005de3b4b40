/*
 * clock.c - choosing the clock and calibrating TSC ticks against
 * CLOCK_MONOTONIC (see clock.h).
 *
 * The rate is (monotonic ns elapsed) / (ticks elapsed) since the baseline
 * taken at the first tri_clock_init. Each end of that interval is read to
 * within one clock read (~35 ns), so the rate's relative error is about
 * 35 ns / baseline: 3.5e-5 after 1 ms, 7e-7 after 50 ms, when it is fixed
 * for good (so a counter converts the same way every time it is read).
 */
#include "clock.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

bool tri_clock_tsc;

/* The baseline: written once under pthread_once, read-only afterwards
 * (pthread_once orders the writes before every caller's reads). */
static uint64_t base_ticks, base_ns;
static pthread_once_t once = PTHREAD_ONCE_INIT;
/* The rate once the baseline is long enough (bits of a double; 0: not yet). */
#define SETTLE_NS 50000000u
static _Atomic uint64_t settled;

#if TRI_CLOCK_TSC
#include <cpuid.h>
/* CPUID 0x80000007, EDX bit 8: invariant TSC (constant rate, runs in every
 * C-state and P-state). */
static bool tsc_invariant(void) {
  unsigned a, b, c, d;
  /* int in clang's cpuid.h, unsigned in gcc's. */
  if ((unsigned)__get_cpuid_max(0x80000000u, NULL) < 0x80000007u)
    return false;
  __cpuid(0x80000007u, a, b, c, d);
  (void)a, (void)b, (void)c;
  return (d & (1u << 8)) != 0;
}
#endif

static void init_once(void) {
  const char *env = getenv("TROUPE_CLOCK");
  bool want_tsc = env == NULL || strcmp(env, "monotonic") != 0;
#if TRI_CLOCK_TSC
  tri_clock_tsc = want_tsc && tsc_invariant();
#else
  (void)want_tsc;
  tri_clock_tsc = false;
#endif
  base_ns = tri_mono_ns();
  base_ticks = tri_ticks();
}

void tri_clock_init(void) { pthread_once(&once, init_once); }

double tri_ns_per_tick(void) {
  tri_clock_init();
  if (!tri_clock_tsc)
    return 1.0;
  /* Relaxed: the value is all there is to it (bits of a double). */
  uint64_t bits = atomic_load_explicit(&settled, memory_order_relaxed);
  double npt;
  if (bits != 0) {
    memcpy(&npt, &bits, sizeof npt);
    return npt;
  }
  uint64_t ns, ticks;
  /* A baseline shorter than 1 ms gives a poor rate: wait for it (only
   * conversions in a process's first millisecond ever do). */
  while ((ns = tri_mono_ns()) - base_ns < 1000000u)
    ;
  ticks = tri_ticks();
  if (ticks <= base_ticks)
    return 1.0; /* a TSC that went backwards: no rate to trust */
  npt = (double)(ns - base_ns) / (double)(ticks - base_ticks);
  /* From a 50 ms baseline on (error below 1e-6) the rate stays fixed, so
   * the same ticks always give the same nanoseconds. */
  if (ns - base_ns >= SETTLE_NS) {
    memcpy(&bits, &npt, sizeof bits);
    atomic_store_explicit(&settled, bits, memory_order_relaxed);
  }
  return npt;
}
