/*
 * sched.h - worker threads, run queues, work stealing, parking, quiescence,
 * and deferred reclamation (QSBR) for the things they schedule.
 *
 * The scheduler runs "tasks" (actors, to the layer above) through callbacks;
 * it knows nothing of messages. Its one contract with a task is the state
 * word below and the two callbacks in tri_sched_ops.
 */
#ifndef TROUPE_SCHED_H
#define TROUPE_SCHED_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tri_sched tri_sched;
typedef struct tri_worker tri_worker;
typedef struct tri_deferred tri_deferred;
typedef struct tri_ext tri_ext;

#define TRI_EXT_MAX 1024u /* external participants (threads at once) per system */

/*
 * Task state word. IDLE (0): on no queue, not running. SCHEDULED: on exactly
 * one run queue or being run by exactly one worker. NOTIFY: set by a producer
 * that published work while the task was SCHEDULED, so the running worker
 * re-checks before letting go. DEAD: never scheduled again.
 */
enum {
  TRI_TASK_IDLE = 0u,
  TRI_TASK_SCHEDULED = 1u,
  TRI_TASK_NOTIFY = 2u,
  TRI_TASK_DEAD = 4u,
  /* Bits from here up belong to the layer above (the actor layer keeps its
   * stop request there); every scheduler transition preserves them. */
  TRI_TASK_USER = 8u,
};

typedef struct tri_task {
  _Atomic uint32_t state;
  uint32_t user;                /* the layer above's, immutable after init */
  struct tri_task *inject_next; /* injection-queue link, under its lock */
} tri_task;

static inline void tri_task_init(tri_task *t) {
  atomic_init(&t->state, TRI_TASK_IDLE);
  t->user = 0;
  t->inject_next = NULL;
}

typedef enum tri_run_result {
  TRI_RUN_MORE,  /* batch limit reached, work remains: requeue */
  TRI_RUN_YIELD, /* work remains, but the task is flooding busy receivers:
                  * requeue it without waking a helper for it */
  TRI_RUN_EMPTY, /* nothing takeable now: try to go idle */
  TRI_RUN_DEAD,  /* the task set TRI_TASK_DEAD and must not be touched again */
  TRI_RUN_HELD,  /* the layer above parked the (still SCHEDULED) task somewhere
                  * and will hand it back with tri_sched_requeue: hands off */
} tri_run_result;

/* What a fired timer asks for. */
enum {
  TRI_TIMER_STOP = 0,  /* done (a periodic timer stops) */
  TRI_TIMER_KEEP = 1,  /* a periodic timer goes on; a one-shot is done */
  TRI_TIMER_RETRY = 2, /* could not act (out of memory): fire again in 1 ms */
};

typedef struct tri_sched_ops {
  /* Run one batch of `task` on worker `w` (which owns it right now). */
  tri_run_result (*run)(tri_worker *w, tri_task *task, void *arg);
  /* Owner-side precise check: can the task make progress now? */
  bool (*ready)(tri_task *task, void *arg);
  /* Per-worker local area lifecycle, on the worker's thread (may be NULL). */
  /* Reclaim an object deferred with tri_sched_defer (required if used). */
  void (*reclaim)(tri_deferred *d, tri_worker *w, void *arg);
  void (*worker_start)(tri_worker *w, void *local, void *arg);
  /* A new external participant's local area, on the creating thread. */
  void (*ext_start)(tri_ext *e, void *local, void *arg);
  /* A timer is due (on the timer thread; may send). Returns a
   * tri_timer_result. Then, when the timer is done for good, timer_free. */
  int (*timer_fire)(void *data, void *arg);
  void (*timer_free)(void *data, void *arg);
  void (*worker_stop)(tri_worker *w, void *local, void *arg);
  /* Tracing (may be NULL): called on worker w, only while switched on with
   * tri_sched_trace. STEAL: w took `task` from worker `a`. PARK, PARK_WOKEN:
   * w slept from tick `a` to tick `b` (sched/clock.h), and was then woken
   * for work (PARK_WOKEN) or not (stopping, or nothing). */
  void (*trace)(tri_worker *w, int event, tri_task *task, uint64_t a, uint64_t b, void *arg);
  void *arg;
} tri_sched_ops;

enum { TRI_SCHED_EV_STEAL = 1, TRI_SCHED_EV_PARK, TRI_SCHED_EV_PARK_WOKEN };

/* A node for deferred reclamation; embed it in what must outlive readers. */
struct tri_deferred {
  tri_deferred *next;
  uint64_t epoch;
};

typedef struct tri_worker_stats {
  uint64_t runs, steals, parks, wakes;
} tri_worker_stats;

int tri_sched_new(unsigned nthreads, const tri_sched_ops *ops, size_t local_size, tri_sched **out);
/* Deterministic mode (see sched.c): one worker, run order from a seeded
 * PRNG. Before start; EINVAL with more than one worker. */
int tri_sched_set_deterministic(tri_sched *s, uint64_t seed);
/* In deterministic mode, the next PRNG value (never 0); else 0. Worker only. */
uint64_t tri_worker_det_rand(tri_worker *w);
/* Start the threads; 0 or an errno value (no thread left running). */
int tri_sched_start(tri_sched *s);
/* Ask the workers to exit and join them. Idempotent. */
void tri_sched_stop(tri_sched *s);
/* After tri_sched_stop: run every pending deferred callback (w = NULL). */
void tri_sched_run_deferred(tri_sched *s);
/* Free (stops first and runs deferred callbacks if still needed). */
void tri_sched_free(tri_sched *s);

unsigned tri_sched_threads(const tri_sched *s);
bool tri_sched_started(const tri_sched *s);
bool tri_sched_stopping(const tri_sched *s);

/* The worker of `s` running on this thread, or NULL. */
tri_worker *tri_sched_self(const tri_sched *s);
unsigned tri_worker_id(const tri_worker *w);
void *tri_worker_local(tri_worker *w);
tri_sched *tri_worker_sched(tri_worker *w);

/* The worker with index i (0 <= i < threads), e.g. to reach its local area
 * after the workers stopped. */
tri_worker *tri_sched_worker(tri_sched *s, unsigned i);

/*
 * Producer side, after publishing work for `task`: make it runnable if it is
 * idle (onto `w`'s queue when called on worker `w`, else onto the injection
 * queue), or flag NOTIFY if it is running. Any thread; `w` must be
 * tri_sched_self(s).
 */
void tri_sched_notify(tri_sched *s, tri_worker *w, tri_task *task);

/*
 * Put back a task that is SCHEDULED and owned by the caller (one the layer
 * above held after TRI_RUN_HELD): onto w's run queue, or the injection queue
 * when w is NULL. Any thread; w must be tri_sched_self(s).
 */
void tri_sched_requeue(tri_sched *s, tri_worker *w, tri_task *t);

/*
 * Timers: fire ops.timer_fire(data) after delay_ns, then every period_ns if
 * non-zero. Arming counts a unit of work for participant w or e (one of them,
 * or both NULL from the owner before start); it is retired when a one-shot
 * timer fired or any timer is cancelled. Returns an id, never 0; 0 when out
 * of memory. Any thread.
 */
uint64_t tri_sched_timer_add(tri_sched *s, tri_worker *w, tri_ext *e, uint64_t delay_ns,
                             uint64_t period_ns, void *data);
/* True if the timer will not fire again because of this call. */
bool tri_sched_timer_cancel(tri_sched *s, uint64_t id);
void tri_sched_timer_stats(tri_sched *s, uint64_t *armed, uint64_t *fired, uint64_t *cancelled);

/*
 * Quiescence accounting: every unit of work (a message, a stop request) is
 * counted once when it is accepted (tri_sched_count_sent, by the worker `w`
 * or the external participant `e` doing it; n may be negative to take a count
 * back) and once when it is disposed of (tri_sched_count_done, on a worker,
 * or with w NULL from the owner once workers are stopped).
 */
void tri_sched_count_sent(tri_worker *w, tri_ext *e, int64_t n);
void tri_sched_count_done(tri_sched *s, tri_worker *w, uint64_t n);

/* Block until quiescent or stopping. timeout_ms = UINT64_MAX: no limit.
 * Returns 0, or ETIMEDOUT. */
int tri_sched_wait(tri_sched *s, uint64_t timeout_ms);
/* Make every tri_sched_wait return (now and from now on); workers go on.
 * Any thread. */
void tri_sched_exit(tri_sched *s);

/*
 * Deferred reclamation (quiescent-state-based). After unpublishing an object
 * (no new reader can find it), a worker defers its reclamation: `fn` runs,
 * on some worker or at tri_sched_free, once every worker has passed a
 * quiescent point (between task runs, or parked) and every external reader
 * section that began before has ended; then ops.reclaim(d, w, ops.arg) runs
 * on some worker (or at tri_sched_free, with w NULL). Worker only.
 */
void tri_sched_defer(tri_worker *w, tri_deferred *d);

/*
 * A non-worker thread brackets each call that looks tasks up with enter and
 * leave: in between it is an online QSBR participant, so what it found stays
 * valid. enter returns this thread's participant record for `s` (created on
 * first use, cached per thread, given back when the thread exits), or NULL
 * when none can be allocated. Never blocks except on first use. Any thread
 * that is not a worker of `s`.
 */
tri_ext *tri_sched_ext_enter(tri_sched *s);
void tri_sched_ext_leave(tri_ext *e);
unsigned tri_ext_id(const tri_ext *e); /* >= threads: distinct from workers */
void *tri_ext_local(tri_ext *e);
/* The participant with id `id`, or NULL (any thread). */
tri_ext *tri_sched_ext_by_id(tri_sched *s, unsigned id);

void tri_sched_worker_stats(tri_sched *s, unsigned i, tri_worker_stats *out);
uint64_t tri_sched_sent_total(tri_sched *s);
uint64_t tri_sched_done_total(tri_sched *s);
/* Switch the ops.trace hook on or off. Any thread; workers see the change
 * within a run or two. */
void tri_sched_trace(tri_sched *s, bool on);

/* Relaxed counter bump for a counter with a single writer: a plain add that
 * readers on other threads may load atomically (no locked instruction). */
static inline void tri_ctr_add(_Atomic uint64_t *c, uint64_t n) {
  atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n, memory_order_relaxed);
}

#endif /* TROUPE_SCHED_H */
