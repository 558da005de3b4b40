/*
 * internal_trace.h - always-on run counters and the event trace's hooks.
 * Not installed. The design is at the top of trace.c; the file format in
 * docs/trace-format.md.
 *
 * Every hook here costs, when tracing is off, one acquire load of
 * sys->trace (a plain load on x86) and a branch that is predicted not
 * taken. The run counters (time in behaviour, runs) are two clock reads per
 * run, not per message (sched/clock.h), unless compiled out with
 * TROUPE_COUNTERS=0.
 */
#ifndef TROUPE_INTERNAL_TRACE_H
#define TROUPE_INTERNAL_TRACE_H

#include "../sched/clock.h"
#include "internal.h"

/* ------------------------------------------------------------ the format */

/* Event kinds (docs/trace-format.md): append only. */
enum {
  TRI_EV_RUN = 1,      /* a behaviour run: ts = begin, arg = duration, arg2 = messages */
  TRI_EV_DEPTH = 2,    /* mailbox depth at a run's begin: arg = depth */
  TRI_EV_STEAL = 3,    /* worker took actor from worker arg */
  TRI_EV_PARK = 4,     /* worker slept: ts = begin, arg = duration, arg2 = 1 if woken for work */
  TRI_EV_DEAD = 5,     /* dead letter: actor = receiver (0: unknown), arg = sender, arg2 = tag,
                        * flags = tr_dead_reason */
  TRI_EV_RESTART = 6,  /* actor restarted in place by its supervisor */
  TRI_EV_NAME = 7,     /* actor's name: arg2 = length; the bytes follow in
                        * ceil(length / 32) raw records */
  TRI_EV_COUNTERS = 8, /* actor's counters: arg = busy ns, arg2 = runs mod 2^32; one raw
                        * record follows: received, handled, spilled, peak depth */
  TRI_EV_DROPPED = 9,  /* arg = events lost on worker's full buffer since the last one */
  TRI_EV_END = 10,     /* the trace was closed: arg = events lost in all */
};

#define TRI_TRACE_MAGIC      "TROUPETR"
#define TRI_TRACE_VERSION    1u
#define TRI_TRACE_HEADER     64u
#define TRI_TRACE_OUTSIDE    0xFFFFu /* worker field: not a worker thread */
#define TRI_TRACE_NAME_MAX   255u    /* longer names are cut */
#define TRI_TRACE_COUNTERS_V 4u      /* u64 values in a COUNTERS record's tail */

/*
 * One record, 32 bytes. In a worker's buffer, times and durations are raw
 * clock ticks and `worker` holds the trace session's number (stale records
 * of an earlier session are dropped by the writer); the writer turns them
 * into the file's form: ns since the trace began, and the worker index.
 */
typedef struct tri_trace_rec {
  uint64_t ts;
  uint64_t actor; /* tr_ref id, 0 for none */
  uint64_t arg;
  uint32_t arg2;
  uint8_t kind;
  uint8_t flags;
  uint16_t worker;
} tri_trace_rec;
_Static_assert(sizeof(tri_trace_rec) == 32, "trace record layout");

/* ------------------------------------------------------------ the hooks */

typedef struct tri_trace tri_trace;

/* The running trace, or NULL. Acquire: pairs with the release store in
 * trace.c that publishes a fully set-up session. */
static inline tri_trace *tri_trace_get(tr_system *sys) {
  return atomic_load_explicit(&sys->trace, memory_order_acquire);
}

/* Out of line, only while tracing. */
void tri_trace_run(tri_trace *t, tri_worker *w, tri_actor *a, uint64_t t0, uint64_t t1,
                   uint64_t depth, uint64_t handled);
void tri_trace_dead(tri_trace *t, tr_system *sys, const tri_msg *m, tr_dead_reason why,
                    uint64_t to);
void tri_trace_actor(tri_trace *t, tr_system *sys, tri_worker *w, tri_actor *a, uint8_t kind);
/* The scheduler's hook (tri_sched_ops.trace). */
void tri_trace_sched(tri_worker *w, int event, tri_task *task, uint64_t a, uint64_t b, void *sys);

/* Start of a run, after tri_mailbox_begin_sc: the clock, or 0 when nothing
 * needs it (counters compiled out and no trace). */
static inline uint64_t tri_run_begin(tr_system *sys) {
#if TROUPE_COUNTERS
  (void)sys;
  return tri_ticks();
#else
  return tri_trace_get(sys) != NULL ? tri_ticks() : 0;
#endif
}

/*
 * End of a run, while the worker still owns the actor: add the run's time
 * to the actor's busy counter, and trace the run. `depth` is what
 * tri_mailbox_begin_sc returned, `handled` the behaviour calls that
 * returned TR_OK.
 */
static inline void tri_run_end(tr_system *sys, tri_worker *w, tri_actor *a, uint64_t t0,
                               uint64_t depth, uint64_t handled) {
  tri_trace *t = tri_trace_get(sys);
#if TROUPE_COUNTERS
  uint64_t t1 = tri_ticks();
  /* A thread moved to a core whose TSC is behind: count nothing. */
  tri_ctr_add(&a->busy, t1 > t0 ? t1 - t0 : 0);
  if (__builtin_expect(t != NULL, 0))
    tri_trace_run(t, w, a, t0, t1, depth, handled);
#else
  if (__builtin_expect(t != NULL, 0) && t0 != 0)
    tri_trace_run(t, w, a, t0, tri_ticks(), depth, handled);
#endif
}

/* A message becomes a dead letter (before it is freed). `to`: the actor it
 * was meant for, 0 when not known. Any thread. */
static inline void tri_trace_dead_letter(tr_system *sys, const tri_msg *m, tr_dead_reason why,
                                         uint64_t to) {
  tri_trace *t = tri_trace_get(sys);
  if (__builtin_expect(t != NULL, 0))
    tri_trace_dead(t, sys, m, why, to);
}

/* An actor was spawned (after tri_registry_add): its name. `w`: the
 * spawning worker, NULL outside. */
static inline void tri_trace_spawn(tr_system *sys, tri_worker *w, tri_actor *a) {
  tri_trace *t = tri_trace_get(sys);
  if (__builtin_expect(t != NULL, 0))
    tri_trace_actor(t, sys, w, a, TRI_EV_NAME);
}

/* A supervisor restarted actor `a` in place, on worker `w` (NULL outside a
 * worker). For supervision's restart path. */
static inline void tri_trace_restart(tr_system *sys, tri_worker *w, tri_actor *a) {
  tri_trace *t = tri_trace_get(sys);
  if (__builtin_expect(t != NULL, 0))
    tri_trace_actor(t, sys, w, a, TRI_EV_RESTART);
}

/* ------------------------------------------------------------ the rest */

/* Fill `out` with a live actor's counters (the caller keeps `a` alive). */
void tri_actor_stats_fill(tri_actor *a, tr_actor_stats *out, double ns_per_tick);

/*
 * Call fn on every live actor, in index order, from any thread: in chunks,
 * each inside a read section (so fn must not block), the registry's bound
 * read once under its lock. TR_ENOMEM when this thread cannot become a
 * reader (no participant record).
 */
tr_status tri_actors_walk(tr_system *sys, void (*fn)(tri_actor *a, void *arg), void *arg);

/* tr_system_start: TROUPE_TRACE and TROUPE_STATS. tr_system_stop and
 * tr_system_free (workers joined): stop both and flush; free: release all. */
void tri_tracing_start(tr_system *sys);
void tri_tracing_stop(tr_system *sys);
void tri_tracing_free(tr_system *sys);
/* stats.c: the TROUPE_STATS printer. */
tr_status tri_stats_printer_start(tr_system *sys, uint64_t interval_ms, void **out);
void tri_stats_printer_stop(void *printer);

#endif /* TROUPE_INTERNAL_TRACE_H */
