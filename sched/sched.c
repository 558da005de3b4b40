/*
 * sched.c - N workers, each with a run queue; stealing; parking; quiescence.
 *
 * The problem. Any number of tasks (actors) must be multiplexed over N OS
 * threads so that (1) a task never runs on two threads at once, (2) no
 * wake-up is lost, (3) communicating tasks stay on one core, where a message
 * costs ~10 ns instead of the ~100x that a cross-core hand-off costs on this
 * machine (shared/notes/hardware-floor.md), (4) idle threads sleep, and (5)
 * the owner can wait until everything is done.
 *
 * Run queues. Each worker owns a ck_ring in SPMC mode: only the owner
 * enqueues; the owner and thieves dequeue (oldest first). Beside it, a
 * one-task "next" slot that only the owner touches: a task made runnable by
 * a send on this worker goes there and runs as soon as the current task
 * yields, on the same core with warm caches (Go's runnext, CAF's "internal
 * enqueue goes to the current worker"). A task already in the slot is moved
 * to the stealable queue, and only then is a parked worker woken: there is
 * now runnable work waiting behind the running one. So a ping-pong or a
 * token ring never leaves its core and never wakes anyone. A streak limit
 * stops two tasks from monopolising the slot while the queue waits. Tasks
 * made runnable by non-worker threads, and run-queue overflow, go to a
 * mutex-protected injection queue (not a per-message path).
 *
 * The state word (sched.h) carries the scheduling invariant. A producer,
 * after publishing work, CASes IDLE -> SCHEDULED and, if it won, pushes the
 * task on a queue: exactly one push per idle -> scheduled transition, so a
 * task is on at most one queue and run by at most one worker. If the task is
 * already SCHEDULED the producer sets NOTIFY instead. The worker finishing a
 * run that found nothing more CASes SCHEDULED -> IDLE; that CAS fails if a
 * producer set NOTIFY meanwhile, and the worker, still the owner, clears the
 * flag and re-checks. Ordering argument (no lost wake-up):
 *   producer:  publish work;  then either a seq_cst RMW on the state (CAS to
 *              SCHEDULED, or CAS setting NOTIFY), or, when NOTIFY is already
 *              set and nothing needs writing, fence(seq_cst) and a reload;
 *   worker:    seq_cst RMW (CAS SCHEDULED->IDLE, or fetch_and ~NOTIFY), then
 *              check for work.
 * RMWs on one variable are totally ordered. If the producer's RMW comes
 * first, the worker's RMW reads its value, which synchronises with it, so
 * the worker's check sees the published work (or its CAS to IDLE fails on
 * NOTIFY and it checks). If the worker's RMW comes first, the producer's RMW
 * reads IDLE and schedules the task. On the write-free path, the fence puts
 * the publication before the reload in the seq_cst order: if the reload
 * still shows NOTIFY, the worker's clearing RMW is later and its check sees
 * the work. A plain load alone would not do: it could be satisfied before
 * the producer's own publishing store leaves its store buffer.
 *
 * Parking. A worker that finds nothing spins briefly, stealing, then
 * registers as parked under park_lock, issues a seq_cst fence and looks for
 * work once more before sleeping on its own condition variable. Whoever makes
 * work stealable issues a seq_cst fence after the push and then reads
 * nparked: one of the two sees the other (Dekker), so work is never left
 * with every worker asleep. An idle system burns no CPU.
 *
 * Stealing only what would wait. A thief takes a task only when its victim,
 * at the rate it is getting through its queue, would keep the task waiting
 * longer than STEAL_WAIT_NS, or is stuck in one run that long
 * (worth_stealing). Moving an actor costs cross-core transfers on every
 * later message, so a core that keeps up with its queue keeps it. A worker
 * that sees only such work naps (NAP_NS) off the parked stack instead of
 * sleeping: it is not woken by every push it would not act on, and it looks
 * again soon. Work that nobody steals is still run by its owner, and a
 * worker that goes idle with work in the injection queue is never in a nap,
 * so this changes where work runs, never whether it runs; the cost is a
 * delay of at most NAP_NS before help comes for a backlog that builds up
 * while everyone else naps, and tr_system_wait noticing quiescence up to
 * NAP_NS later.
 *
 * Quiescence. Every unit of work is counted when accepted and when disposed
 * of, in per-worker single-writer counters (no shared cache line per
 * message). With every worker parked (so none is writing), the sums are
 * stable; equal sums mean no message is waiting anywhere.
 *
 * Reclamation (QSBR). Workers hold raw pointers to tasks between a lookup
 * and the end of the current run, never across a quiescent point (between
 * two runs) or while parked. Threads that are not workers take part too,
 * through a per-thread participant record (tri_ext) that is online only
 * inside each API call. An unpublished object is stamped with a fresh global
 * epoch and reclaimed once every online participant has announced that epoch
 * (or gone offline) since.
 */
#include "sched.h"
#include "alloc.h"

#include "../mailbox/tsan.h"
#include "clock.h"
#include "timer.h"

#include <ck_pr.h>
#include <ck_ring.h>
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define RUNQ_SLOTS      4096u /* per worker; overflow goes to the injection queue */
#define NEXT_STREAK_MAX 64    /* runs from the next slot before the queue gets a turn */
#define INJECT_EVERY    61    /* check the injection queue first every Nth pick */
#define SPIN_ROUNDS     32    /* steal attempts before parking */
#define SPIN_PAUSES     32
#define POLL_EVERY      64 /* runs between reclamation polls */
/* Stealing (see worth_stealing): take a task only if the victim would keep
 * it waiting longer than STEAL_WAIT_NS at the rate it is going, judged over
 * at least STEAL_LOOK_NS; a queue of STEAL_NOW tasks is always worth it. */
#define STEAL_WAIT_NS 50000u
#define STEAL_LOOK_NS 4000u
#define STEAL_NOW     256u
/* A worker that finds only work not worth stealing naps this long. */
#define NAP_NS    200000
#define TLS_SLOTS 4 /* systems a thread can call into without a lookup */

enum { S_NEW, S_RUNNING, S_STOPPING, S_STOPPED };

struct tri_worker {
  /* --- immutable after tri_sched_new --- */
  tri_sched *sched;
  unsigned id;
  void *local;
  ck_ring_buffer_t *runq_slots;

  /* --- owner only --- */
  tri_task *next;
  unsigned next_streak;
  unsigned tick;
  unsigned since_poll;
  uint64_t rng;
  pthread_t thread;
  bool thread_started;
  /* Stealing: per victim, when this worker last looked and how many runs
   * the victim had done then (see worth_stealing). */
  uint64_t *seen_at, *seen_runs;

  /* --- the run queue: owner enqueues, owner and thieves dequeue --- */
  struct ck_ring runq;

  /* --- single writer (owner), atomic so others may read --- */
  _Atomic uint64_t qs; /* QSBR: 0 = offline, else the epoch seen last */
  _Atomic uint64_t sent, done;
  _Atomic uint64_t runs, steals, parks, wakes;

  /* --- under sched->park_lock --- */
  pthread_cond_t cond;
  bool parked, woken;
};

struct tri_sched {
  tri_sched_ops ops;
  unsigned n;
  tri_worker *workers;
  _Atomic int state;

  /* Injection queue: intrusive FIFO through tri_task.inject_next. */
  pthread_mutex_t inject_lock;
  tri_task *inject_head, *inject_tail;
  _Atomic size_t inject_len;

  /* Parking. nparked is written under park_lock, read anywhere. */
  pthread_mutex_t park_lock;
  pthread_cond_t quiet_cond;
  _Atomic bool exiting; /* tri_sched_exit: waiters return */
  _Atomic unsigned nparked;
  unsigned nstack;
  tri_worker **stack;

  /* Work disposed of outside workers (timer thread, owner after stop). */
  _Atomic uint64_t late_done;
  tri_timers *timers;
  uint64_t det_rng;     /* deterministic mode's PRNG state (0: off); worker 0 only */
  _Atomic bool tracing; /* call ops.trace (tri_sched_trace) */

  /* QSBR. */
  _Atomic uint64_t gp;
  pthread_mutex_t limbo_lock;
  tri_deferred *limbo_head, *limbo_tail;
  _Atomic size_t limbo_len;

  /* External participants (see tri_ext). */
  uint64_t uid; /* process-unique, never reused: keys the per-thread cache */
  size_t local_size;
  pthread_mutex_t ext_lock;
  _Atomic(tri_ext *) ext_head; /* every record, for lock-free iteration */
  _Atomic(tri_ext *) ext_dir[TRI_EXT_MAX];
  unsigned ext_count;   /* under ext_lock */
  tri_sched *live_next; /* under live_lock */
};

/*
 * An external participant: the state one non-worker thread needs to call
 * into one system. It is a QSBR participant that is online only inside an
 * API call (qs != 0), it counts the work that thread accepts (single writer),
 * and it carries a local area like a worker's (the message pool). A record
 * is held by at most one thread at a time; it is released when the thread
 * exits (or evicts it from its small cache) and reused by the next thread
 * that needs one. Records live until the system is freed.
 */
struct tri_ext {
  /* --- single writer: the thread holding the record --- */
  _Atomic uint64_t qs;
  _Atomic uint64_t sent;
  /* --- immutable after creation --- */
  tri_sched *sched;
  unsigned id; /* s->n + index: its pool's owner id */
  void *local;
  tri_ext *next;
  /* --- under sched->ext_lock --- */
  bool in_use;
};

static _Thread_local tri_worker *tls_worker;

/* ------------------------------------------------------------ accessors */

unsigned tri_sched_threads(const tri_sched *s) { return s->n; }
bool tri_sched_started(const tri_sched *s) {
  return atomic_load_explicit(&s->state, memory_order_acquire) != S_NEW;
}
bool tri_sched_stopping(const tri_sched *s) {
  return atomic_load_explicit(&s->state, memory_order_acquire) >= S_STOPPING;
}
tri_worker *tri_sched_self(const tri_sched *s) {
  tri_worker *w = tls_worker;
  return w != NULL && w->sched == s ? w : NULL;
}
unsigned tri_worker_id(const tri_worker *w) { return w->id; }
void *tri_worker_local(tri_worker *w) { return w->local; }
tri_sched *tri_worker_sched(tri_worker *w) { return w->sched; }
tri_worker *tri_sched_worker(tri_sched *s, unsigned i) { return i < s->n ? &s->workers[i] : NULL; }

/* ------------------------------------------------------------ counters */

void tri_sched_count_sent(tri_worker *w, tri_ext *e, int64_t n) {
  tri_ctr_add(w != NULL ? &w->sent : &e->sent, (uint64_t)n);
}

static bool quiescent_locked(tri_sched *s);

void tri_sched_count_done(tri_sched *s, tri_worker *w, uint64_t n) {
  if (w != NULL) {
    tri_ctr_add(&w->done, n);
    return;
  }
  atomic_fetch_add_explicit(&s->late_done, n, memory_order_seq_cst);
  /* Work retired outside the workers (a timer that fired into a stopped
   * actor, a cancel from another thread) may be the last unit: if every
   * worker is already parked, no parking worker will announce quiescence,
   * so do it here. */
  pthread_mutex_lock(&s->park_lock);
  if (quiescent_locked(s))
    pthread_cond_broadcast(&s->quiet_cond);
  pthread_mutex_unlock(&s->park_lock);
}

uint64_t tri_sched_sent_total(tri_sched *s) {
  uint64_t t = 0;
  for (unsigned i = 0; i < s->n; i++)
    t += atomic_load_explicit(&s->workers[i].sent, memory_order_relaxed);
  for (tri_ext *e = atomic_load_explicit(&s->ext_head, memory_order_acquire); e; e = e->next)
    t += atomic_load_explicit(&e->sent, memory_order_relaxed);
  return t;
}

uint64_t tri_sched_done_total(tri_sched *s) {
  uint64_t t = atomic_load_explicit(&s->late_done, memory_order_relaxed);
  for (unsigned i = 0; i < s->n; i++)
    t += atomic_load_explicit(&s->workers[i].done, memory_order_relaxed);
  return t;
}

void tri_sched_worker_stats(tri_sched *s, unsigned i, tri_worker_stats *out) {
  tri_worker *w = &s->workers[i];
  out->runs = atomic_load_explicit(&w->runs, memory_order_relaxed);
  out->steals = atomic_load_explicit(&w->steals, memory_order_relaxed);
  out->parks = atomic_load_explicit(&w->parks, memory_order_relaxed);
  out->wakes = atomic_load_explicit(&w->wakes, memory_order_relaxed);
}

/* Relaxed: a switch, not a publication; the hook itself loads what it
 * needs with acquire (the actor layer's trace pointer). */
void tri_sched_trace(tri_sched *s, bool on) {
  atomic_store_explicit(&s->tracing, on && s->ops.trace != NULL, memory_order_relaxed);
}

static bool tracing(tri_sched *s) {
  return __builtin_expect(atomic_load_explicit(&s->tracing, memory_order_relaxed), 0);
}

/* ------------------------------------------------------------ waking */

/* Wake one parked worker, if any. Callers have made work stealable and
 * issued a seq_cst fence (see "Parking" above). */
static void wake_one(tri_sched *s) {
  if (atomic_load_explicit(&s->nparked, memory_order_relaxed) == 0)
    return;
  pthread_mutex_lock(&s->park_lock);
  if (s->nstack > 0) {
    tri_worker *w = s->stack[--s->nstack];
    w->parked = false;
    w->woken = true;
    atomic_store_explicit(&s->nparked, s->nstack, memory_order_relaxed);
    pthread_cond_signal(&w->cond);
  }
  pthread_mutex_unlock(&s->park_lock);
}

static void inject_push(tri_sched *s, tri_task *t) {
  pthread_mutex_lock(&s->inject_lock);
  t->inject_next = NULL;
  if (s->inject_tail != NULL)
    s->inject_tail->inject_next = t;
  else
    s->inject_head = t;
  s->inject_tail = t;
  atomic_store_explicit(&s->inject_len,
                        atomic_load_explicit(&s->inject_len, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  pthread_mutex_unlock(&s->inject_lock);
  /* Seq_cst fence: pairs with the fence in park() (Dekker on inject_len vs
   * nparked). */
  atomic_thread_fence(memory_order_seq_cst);
  wake_one(s);
}

static tri_task *inject_pop(tri_sched *s) {
  if (atomic_load_explicit(&s->inject_len, memory_order_relaxed) == 0)
    return NULL;
  pthread_mutex_lock(&s->inject_lock);
  tri_task *t = s->inject_head;
  if (t != NULL) {
    s->inject_head = t->inject_next;
    if (s->inject_head == NULL)
      s->inject_tail = NULL;
    t->inject_next = NULL;
    atomic_store_explicit(&s->inject_len,
                          atomic_load_explicit(&s->inject_len, memory_order_relaxed) - 1,
                          memory_order_relaxed);
  }
  pthread_mutex_unlock(&s->inject_lock);
  return t;
}

/* Owner only: append to the stealable queue, or inject when it is full. */
static void runq_push(tri_worker *w, tri_task *t) {
  TRI_TSAN_RELEASE(t);
  if (!ck_ring_enqueue_spmc(&w->runq, w->runq_slots, t))
    inject_push(w->sched, t);
}

/* Owner only: `t` just became runnable on this worker (see "Run queues"). */
static void push_local(tri_worker *w, tri_task *t) {
  if (w->next == NULL) {
    w->next = t;
    return;
  }
  tri_task *old = w->next;
  w->next = t;
  runq_push(w, old);
  /* Seq_cst fence: the ring publish above must be visible before we read
   * nparked; pairs with the fence in park(). */
  atomic_thread_fence(memory_order_seq_cst);
  wake_one(w->sched);
}

void tri_sched_notify(tri_sched *s, tri_worker *w, tri_task *t) {
  /* A first guess only: every decision below is taken by a seq_cst RMW, or,
   * on the one path that writes nothing, after a seq_cst fence and a reload.
   * That is what orders the caller's publication before our read of the
   * state (see the argument at the top of this file). */
  uint32_t st = atomic_load_explicit(&t->state, memory_order_relaxed);

  for (;;) {
    if (st & TRI_TASK_DEAD)
      return;
    if ((st & (TRI_TASK_SCHEDULED | TRI_TASK_NOTIFY)) == (TRI_TASK_SCHEDULED | TRI_TASK_NOTIFY)) {
      /* Nothing to write: someone already flagged the running worker. The
       * fence makes our publication precede the reload in the total order;
       * if NOTIFY is still set then, the worker's clearing RMW comes later
       * and its re-check sees our work. */
      atomic_thread_fence(memory_order_seq_cst);
      uint32_t again = atomic_load_explicit(&t->state, memory_order_relaxed);
      if (again == st)
        return;
      st = again;
      continue;
    }
    if (st & TRI_TASK_SCHEDULED) {
      /* Seq_cst RMW: pairs with the worker's CAS to idle / fetch_and. */
      if (atomic_compare_exchange_weak_explicit(&t->state, &st, st | TRI_TASK_NOTIFY,
                                                memory_order_seq_cst, memory_order_relaxed))
        return;
      continue;
    }
    /* Idle: take it. Seq_cst RMW; its acquire part makes the previous run's
     * writes (released by that worker's CAS to idle) visible to whoever we
     * hand the task to. */
    if (atomic_compare_exchange_weak_explicit(&t->state, &st, st | TRI_TASK_SCHEDULED,
                                              memory_order_seq_cst, memory_order_relaxed)) {
      if (w != NULL && !tri_sched_stopping(s))
        push_local(w, t);
      else
        inject_push(s, t);
      return;
    }
  }
}

void tri_sched_requeue(tri_sched *s, tri_worker *w, tri_task *t) {
  if (w == NULL || tri_sched_stopping(s)) {
    inject_push(s, t);
    return;
  }
  runq_push(w, t);
  if (ck_ring_size(&w->runq) > 1) {
    atomic_thread_fence(memory_order_seq_cst); /* pairs with park()'s fence */
    wake_one(s);
  }
}

uint64_t tri_sched_timer_add(tri_sched *s, tri_worker *w, tri_ext *e, uint64_t delay_ns,
                             uint64_t period_ns, void *data) {
  return tri_timers_add(s->timers, w, e, delay_ns, period_ns, data);
}

bool tri_sched_timer_cancel(tri_sched *s, uint64_t id) { return tri_timers_cancel(s->timers, id); }

void tri_sched_timer_stats(tri_sched *s, uint64_t *armed, uint64_t *fired, uint64_t *cancelled) {
  tri_timers_stats(s->timers, armed, fired, cancelled);
}

/* ------------------------------------------------------------ QSBR */

static void qs_online(tri_sched *s, tri_worker *w) {
  /* Seq_cst store then fence: a reclaimer that read us as offline (0) comes
   * earlier in the total order, so our later lookups see its unpublishing. */
  atomic_store_explicit(&w->qs, atomic_load_explicit(&s->gp, memory_order_seq_cst),
                        memory_order_seq_cst);
  atomic_thread_fence(memory_order_seq_cst);
}

static void qs_offline(tri_worker *w) {
  /* Release: our accesses to tasks happen before a reclaimer that acquires
   * this 0 and frees them. */
  atomic_store_explicit(&w->qs, 0, memory_order_seq_cst);
}

static void qs_point(tri_sched *s, tri_worker *w) {
  uint64_t g = atomic_load_explicit(&s->gp, memory_order_acquire);
  if (atomic_load_explicit(&w->qs, memory_order_relaxed) != g)
    /* Release: pairs with the acquire load in reclaim_poll. */
    atomic_store_explicit(&w->qs, g, memory_order_release);
}

void tri_sched_defer(tri_worker *w, tri_deferred *d) {
  tri_sched *s = w->sched;
  d->next = NULL;
  pthread_mutex_lock(&s->limbo_lock);
  /* Seq_cst: the caller's unpublishing store comes before this increment. */
  d->epoch = atomic_fetch_add_explicit(&s->gp, 1, memory_order_seq_cst) + 1;
  if (s->limbo_tail != NULL)
    s->limbo_tail->next = d;
  else
    s->limbo_head = d;
  s->limbo_tail = d;
  atomic_fetch_add_explicit(&s->limbo_len, 1, memory_order_relaxed);
  pthread_mutex_unlock(&s->limbo_lock);
}

static void run_batch(tri_sched *s, tri_deferred *d, tri_worker *w) {
  while (d != NULL) {
    tri_deferred *next = d->next;
    s->ops.reclaim(d, w, s->ops.arg);
    d = next;
  }
}

/* The oldest epoch an online participant may still be reading under. */
static uint64_t qs_min(tri_sched *s) {
  uint64_t min = UINT64_MAX;
  /* Seq_cst loads: pair with the participants' seq_cst online stores (see
   * qs_online) and acquire their release stores at quiescent points. */
  for (unsigned i = 0; i < s->n; i++) {
    uint64_t q = atomic_load_explicit(&s->workers[i].qs, memory_order_seq_cst);
    if (q != 0 && q < min)
      min = q;
  }
  for (tri_ext *e = atomic_load_explicit(&s->ext_head, memory_order_acquire); e; e = e->next) {
    uint64_t q = atomic_load_explicit(&e->qs, memory_order_seq_cst);
    if (q != 0 && q < min)
      min = q;
  }
  return min;
}

static void reclaim_poll(tri_sched *s, tri_worker *w) {
  if (atomic_load_explicit(&s->limbo_len, memory_order_relaxed) == 0)
    return;
  uint64_t min = qs_min(s);
  tri_deferred *batch = NULL, **tail = &batch;
  size_t taken = 0;
  pthread_mutex_lock(&s->limbo_lock);
  /* Epochs are assigned under this lock, so the list is in epoch order. */
  while (s->limbo_head != NULL && s->limbo_head->epoch <= min) {
    tri_deferred *d = s->limbo_head;
    s->limbo_head = d->next;
    d->next = NULL;
    *tail = d;
    tail = &d->next;
    taken++;
  }
  if (s->limbo_head == NULL)
    s->limbo_tail = NULL;
  atomic_fetch_sub_explicit(&s->limbo_len, taken, memory_order_relaxed);
  pthread_mutex_unlock(&s->limbo_lock);
  run_batch(s, batch, w);
}

void tri_sched_run_deferred(tri_sched *s) {
  pthread_mutex_lock(&s->limbo_lock);
  tri_deferred *batch = s->limbo_head;
  s->limbo_head = s->limbo_tail = NULL;
  atomic_store_explicit(&s->limbo_len, 0, memory_order_relaxed);
  pthread_mutex_unlock(&s->limbo_lock);
  run_batch(s, batch, NULL);
}

/* ------------------------------------------------------------ externals */

/* Live systems, so a thread-exit destructor never touches a freed one. */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static tri_sched *live_head;
static _Atomic uint64_t next_uid = 1;

/* Per thread: the records it holds, keyed by system uid. */
typedef struct tls_entry {
  uint64_t uid;
  tri_ext *e;
} tls_entry;
static _Thread_local tls_entry tls_ext[TLS_SLOTS];
static _Thread_local unsigned tls_victim;
static pthread_key_t tls_key;
static pthread_once_t tls_once = PTHREAD_ONCE_INIT;

/* Give a record back, if its system still exists. Lock order: live_lock,
 * then ext_lock. */
static void ext_release(uint64_t uid, tri_ext *e) {
  pthread_mutex_lock(&live_lock);
  for (tri_sched *s = live_head; s != NULL; s = s->live_next) {
    if (s->uid == uid) {
      pthread_mutex_lock(&s->ext_lock);
      e->in_use = false;
      pthread_mutex_unlock(&s->ext_lock);
      break;
    }
  }
  pthread_mutex_unlock(&live_lock);
}

static void tls_exit(void *unused) {
  (void)unused;
  for (unsigned i = 0; i < TLS_SLOTS; i++) {
    if (tls_ext[i].e != NULL)
      ext_release(tls_ext[i].uid, tls_ext[i].e);
    tls_ext[i] = (tls_entry){0, NULL};
  }
}

static void tls_key_make(void) { pthread_key_create(&tls_key, tls_exit); }

static tri_ext *ext_acquire(tri_sched *s) {
  tri_ext *e = NULL;

  pthread_once(&tls_once, tls_key_make);
  pthread_mutex_lock(&s->ext_lock);
  for (tri_ext *x = atomic_load_explicit(&s->ext_head, memory_order_relaxed); x; x = x->next) {
    if (!x->in_use) {
      e = x;
      break;
    }
  }
  if (e == NULL && s->ext_count < TRI_EXT_MAX) {
    e = tri_calloc(1, sizeof *e);
    void *local = s->local_size ? tri_calloc(1, s->local_size) : NULL;
    if (e == NULL || (s->local_size && local == NULL)) {
      free(e);
      free(local);
      e = NULL;
    } else {
      e->sched = s;
      e->id = s->n + s->ext_count;
      e->local = local;
      if (s->ops.ext_start != NULL)
        s->ops.ext_start(e, local, s->ops.arg);
      e->next = atomic_load_explicit(&s->ext_head, memory_order_relaxed);
      /* Release: the record is complete before readers can reach it. */
      atomic_store_explicit(&s->ext_dir[s->ext_count], e, memory_order_release);
      atomic_store_explicit(&s->ext_head, e, memory_order_release);
      s->ext_count++;
    }
  }
  if (e != NULL)
    e->in_use = true;
  pthread_mutex_unlock(&s->ext_lock);
  if (e == NULL)
    return NULL;
  pthread_setspecific(tls_key, (void *)1); /* run tls_exit at thread exit */
  tls_entry *slot = &tls_ext[tls_victim++ % TLS_SLOTS];
  if (slot->e != NULL)
    ext_release(slot->uid, slot->e);
  *slot = (tls_entry){s->uid, e};
  return e;
}

tri_ext *tri_sched_ext_enter(tri_sched *s) {
  tri_ext *e = NULL;
  for (unsigned i = 0; i < TLS_SLOTS; i++) {
    if (tls_ext[i].uid == s->uid) {
      e = tls_ext[i].e;
      break;
    }
  }
  if (e == NULL && (e = ext_acquire(s)) == NULL)
    return NULL;
  /* Online for the length of this call; same argument as qs_online. */
  atomic_store_explicit(&e->qs, atomic_load_explicit(&s->gp, memory_order_seq_cst),
                        memory_order_seq_cst);
  atomic_thread_fence(memory_order_seq_cst);
  return e;
}

void tri_sched_ext_leave(tri_ext *e) {
  /* Release: our accesses happen before a reclaimer that reads the 0. */
  atomic_store_explicit(&e->qs, 0, memory_order_release);
}

unsigned tri_ext_id(const tri_ext *e) { return e->id; }
void *tri_ext_local(tri_ext *e) { return e->local; }

tri_ext *tri_sched_ext_by_id(tri_sched *s, unsigned id) {
  if (id < s->n || id - s->n >= TRI_EXT_MAX)
    return NULL;
  return atomic_load_explicit(&s->ext_dir[id - s->n], memory_order_acquire);
}

/* ------------------------------------------------------------ workers */

static uint64_t xorshift(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/*
 * Is a task in v's queue worth stealing? Moving an actor to another core
 * costs several cross-core cache-line transfers (run-queue slot, task word,
 * mailbox, messages), and an actor woken by a send goes back to the
 * sender's queue, so for short runs a thief pays that on nearly every
 * message: a producer with many short-lived consumers ran 5 to 10x slower
 * on two cores than on one. So the thief first watches: it steals only if
 * the victim, at the rate it has been running tasks since this thief last
 * looked (at least STEAL_LOOK_NS ago), would take longer than STEAL_WAIT_NS
 * to get through its queue, or has run nothing for STEAL_WAIT_NS (a long
 * run: its queue is stuck behind it). Only the thief reads the clock; the victim's
 * run counter is one it keeps anyway. This is a heuristic on top of the
 * stealing protocol (the CAS on the ring's head), which it does not touch.
 */
static bool worth_stealing(tri_worker *w, tri_worker *v, unsigned size) {
  if (size >= STEAL_NOW)
    return true;
  uint64_t now = mono_ns();
  uint64_t runs = atomic_load_explicit(&v->runs, memory_order_relaxed);
  uint64_t at = w->seen_at[v->id], before = w->seen_runs[v->id];
  if (at == 0 || now - at > 16 * STEAL_WAIT_NS) { /* a first or stale look */
    w->seen_at[v->id] = now;
    w->seen_runs[v->id] = runs;
    return false;
  }
  uint64_t dt = now - at, done = runs - before;
  if (done == 0) /* nothing ran since: stuck behind one run for that long? */
    return dt >= STEAL_WAIT_NS;
  if (dt < STEAL_LOOK_NS)
    return false;
  w->seen_at[v->id] = now;
  w->seen_runs[v->id] = runs;
  return (uint64_t)size * dt > (uint64_t)STEAL_WAIT_NS * done;
}

static tri_task *steal(tri_sched *s, tri_worker *w) {
  if (s->n < 2 || s->det_rng != 0)
    return NULL;
  unsigned start = (unsigned)(xorshift(&w->rng) % s->n);
  for (unsigned i = 0; i < s->n; i++) {
    tri_worker *v = &s->workers[(start + i) % s->n];
    void *t;
    if (v == w)
      continue;
    /* MC dequeue on the victim's SPMC ring: the CAS on c_head makes us and
     * the owner agree on who took which task. */
    unsigned size = ck_ring_size(&v->runq);
    if (size != 0 && worth_stealing(w, v, size) &&
        ck_ring_trydequeue_spmc(&v->runq, v->runq_slots, &t)) {
      TRI_TSAN_ACQUIRE(t);
      tri_ctr_add(&w->steals, 1);
      if (tracing(s))
        s->ops.trace(w, TRI_SCHED_EV_STEAL, t, v->id, 0, s->ops.arg);
      return t;
    }
  }
  return NULL;
}

/*
 * Deterministic mode (one worker, a seed): the order in which runnable
 * tasks run is decided by a PRNG seeded by the user instead of by queue
 * order, so a seed explores one interleaving and the same seed replays it
 * (as long as nothing outside the worker, an outside thread or a timer,
 * makes tasks runnable at times of its own). Picks the next slot or a task
 * from anywhere in the run queue (by rotating it).
 */
static tri_task *det_pick(tri_sched *s, tri_worker *w) {
  void *t;
  uint64_t r = xorshift(&s->det_rng);
  unsigned n = ck_ring_size(&w->runq);
  if (w->next != NULL && (n == 0 || r % (n + 1) == 0)) {
    t = w->next;
    w->next = NULL;
    return t;
  }
  if (n == 0)
    return inject_pop(s);
  for (unsigned k = (unsigned)((r >> 16) % n); k > 0; k--) {
    if (ck_ring_dequeue_spmc(&w->runq, w->runq_slots, &t))
      runq_push(w, t);
  }
  if (ck_ring_dequeue_spmc(&w->runq, w->runq_slots, &t)) {
    TRI_TSAN_ACQUIRE(t);
    return t;
  }
  return inject_pop(s);
}

static tri_task *find_local(tri_sched *s, tri_worker *w) {
  void *t;

  if (s->det_rng != 0)
    return det_pick(s, w);
  if (w->next != NULL) {
    if (w->next_streak < NEXT_STREAK_MAX || ck_ring_size(&w->runq) == 0) {
      t = w->next;
      w->next = NULL;
      w->next_streak++;
      return t;
    }
    /* Fairness: the slot had its turns; queue it behind the others. */
    runq_push(w, w->next);
    w->next = NULL;
  }
  w->next_streak = 0;
  if (++w->tick % INJECT_EVERY == 0 && (t = inject_pop(s)) != NULL)
    return t;
  if (ck_ring_dequeue_spmc(&w->runq, w->runq_slots, &t)) {
    TRI_TSAN_ACQUIRE(t);
    return t;
  }
  return inject_pop(s);
}

static bool work_visible(tri_sched *s) {
  if (atomic_load_explicit(&s->inject_len, memory_order_relaxed) != 0)
    return true;
  for (unsigned i = 0; i < s->n; i++)
    if (ck_ring_size(&s->workers[i].runq) != 0)
      return true;
  return false;
}

static bool quiescent_locked(tri_sched *s) {
  return atomic_load_explicit(&s->nparked, memory_order_relaxed) == s->n &&
         tri_sched_sent_total(s) == tri_sched_done_total(s);
}

/* Sleep until woken or stopping. Returns with the worker online again. */
static void park(tri_sched *s, tri_worker *w) {
  qs_offline(w);
  pthread_mutex_lock(&s->park_lock);
  if (tri_sched_stopping(s)) {
    pthread_mutex_unlock(&s->park_lock);
    qs_online(s, w);
    return;
  }
  w->parked = true;
  w->woken = false;
  s->stack[s->nstack++] = w;
  atomic_store_explicit(&s->nparked, s->nstack, memory_order_relaxed);
  pthread_mutex_unlock(&s->park_lock);

  /* Seq_cst fence: pairs with the fences after every push (Dekker). */
  atomic_thread_fence(memory_order_seq_cst);
  bool found = work_visible(s);
  if (!found)
    reclaim_poll(s, w);

  pthread_mutex_lock(&s->park_lock);
  uint64_t t0 = 0; /* trace: when it went to sleep */
  bool woken = false;
  if (!found) {
    if (quiescent_locked(s))
      pthread_cond_broadcast(&s->quiet_cond);
    tri_ctr_add(&w->parks, 1);
    if (tracing(s))
      t0 = tri_ticks();
    while (!w->woken && !tri_sched_stopping(s))
      pthread_cond_wait(&w->cond, &s->park_lock);
    if ((woken = w->woken))
      tri_ctr_add(&w->wakes, 1);
  } else if (atomic_load_explicit(&s->inject_len, memory_order_relaxed) == 0) {
    /* Only other workers' queues have work, and find_work found none of it
     * worth stealing: nap instead of spinning, then look again. Off the
     * stack first, so that the busy worker's pushes do not pay a wake-up
     * for a worker that would not take the work anyway. A nap is not a
     * park: quiescence waits for it to end (at most NAP_NS). */
    for (unsigned i = 0; i < s->nstack; i++) {
      if (s->stack[i] == w) {
        s->stack[i] = s->stack[--s->nstack];
        break;
      }
    }
    w->parked = false;
    atomic_store_explicit(&s->nparked, s->nstack, memory_order_relaxed);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += NAP_NS;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    while (!tri_sched_stopping(s) && pthread_cond_timedwait(&w->cond, &s->park_lock, &until) == 0)
      ;
  }
  if (w->parked) { /* not popped by a waker: take ourselves off the stack */
    for (unsigned i = 0; i < s->nstack; i++) {
      if (s->stack[i] == w) {
        s->stack[i] = s->stack[--s->nstack];
        break;
      }
    }
    w->parked = false;
    atomic_store_explicit(&s->nparked, s->nstack, memory_order_relaxed);
  }
  w->woken = false;
  pthread_mutex_unlock(&s->park_lock);
  qs_online(s, w);
  if (t0 != 0 && tracing(s))
    s->ops.trace(w, woken ? TRI_SCHED_EV_PARK_WOKEN : TRI_SCHED_EV_PARK, NULL, t0, tri_ticks(),
                 s->ops.arg);
}

static tri_task *find_work(tri_sched *s, tri_worker *w) {
  tri_task *t = find_local(s, w);
  if (t != NULL)
    return t;
  for (int round = 0; round < SPIN_ROUNDS; round++) {
    if ((t = steal(s, w)) != NULL || (t = inject_pop(s)) != NULL)
      return t;
    if (tri_sched_stopping(s))
      return NULL;
    for (int i = 0; i < SPIN_PAUSES; i++)
      ck_pr_stall();
    if (round >= SPIN_ROUNDS / 2)
      sched_yield();
  }
  return NULL;
}

/* The run finished with nothing takeable: let go of the task, unless a
 * producer flagged NOTIFY meanwhile and there is work after all. */
static bool release_task(tri_sched *s, tri_task *t) {
  uint32_t cur = atomic_load_explicit(&t->state, memory_order_relaxed);

  for (;;) {
    if (cur & TRI_TASK_NOTIFY) {
      /* Still the owner: clear the flag, then look again (seq_cst: see the
       * ordering argument at the top of this file). */
      atomic_fetch_and_explicit(&t->state, ~(uint32_t)TRI_TASK_NOTIFY, memory_order_seq_cst);
      if (s->ops.ready(t, s->ops.arg))
        return false;
      cur = atomic_load_explicit(&t->state, memory_order_relaxed);
      continue;
    }
    /* Seq_cst CAS to idle, keeping the upper layer's bits. Its release part
     * makes this run's writes visible to the next owner's acquire CAS in
     * tri_sched_notify. Fails if NOTIFY appeared meanwhile. */
    if (atomic_compare_exchange_weak_explicit(&t->state, &cur, cur & ~(uint32_t)TRI_TASK_SCHEDULED,
                                              memory_order_seq_cst, memory_order_relaxed))
      return true;
  }
}

static void after_run(tri_sched *s, tri_worker *w, tri_task *t, tri_run_result r) {
  if (r == TRI_RUN_DEAD || r == TRI_RUN_HELD)
    return;
  if (r == TRI_RUN_EMPTY && release_task(s, t))
    return;
  /* More work: behind whatever else waits here. Wake a helper only when
   * another actor is already waiting in the stealable queue. An actor that
   * just made the next-slot actor runnable (a producer and its consumer) is
   * not "waiting behind" it: splitting such a pair across cores makes every
   * message a cross-core hand-off (~100x a same-core one here). */
  runq_push(w, t);
  /* A task that yielded because its receivers are backed up gains nothing
   * from another core: the receivers are the bottleneck, and moving the
   * sender away only makes each of its messages a cross-core hand-off. */
  if (r != TRI_RUN_YIELD && ck_ring_size(&w->runq) > 1) {
    atomic_thread_fence(memory_order_seq_cst);
    wake_one(s);
  }
}

static void *worker_main(void *arg) {
  tri_worker *w = arg;
  tri_sched *s = w->sched;

  tls_worker = w;
  if (s->ops.worker_start != NULL)
    s->ops.worker_start(w, w->local, s->ops.arg);
  qs_online(s, w);
  while (!tri_sched_stopping(s)) {
    tri_task *t = find_work(s, w);
    if (t == NULL) {
      park(s, w);
      continue;
    }
    tri_ctr_add(&w->runs, 1);
    after_run(s, w, t, s->ops.run(w, t, s->ops.arg));
    qs_point(s, w);
    if (++w->since_poll >= POLL_EVERY) {
      w->since_poll = 0;
      reclaim_poll(s, w);
    }
  }
  /* Tasks still queued here stay SCHEDULED and are never run again; the
   * layer above disposes of them (and their mail) at free. */
  qs_offline(w);
  if (s->ops.worker_stop != NULL)
    s->ops.worker_stop(w, w->local, s->ops.arg);
  tls_worker = NULL;
  return NULL;
}

/* ------------------------------------------------------------ lifecycle */

int tri_sched_new(unsigned nthreads, const tri_sched_ops *ops, size_t local_size, tri_sched **out) {
  if (nthreads == 0 || ops == NULL || ops->run == NULL || ops->ready == NULL || out == NULL)
    return EINVAL;
  tri_clock_init(); /* before any worker or hook reads the clock */
  tri_sched *s = tri_calloc(1, sizeof *s);
  if (s == NULL)
    return ENOMEM;
  s->ops = *ops;
  s->n = nthreads;
  s->workers = tri_calloc(nthreads, sizeof *s->workers);
  s->stack = tri_calloc(nthreads, sizeof *s->stack);
  if (s->workers == NULL || s->stack == NULL)
    goto nomem;
  for (unsigned i = 0; i < nthreads; i++) {
    tri_worker *w = &s->workers[i];
    w->sched = s;
    w->id = i;
    w->rng = 0x9E3779B97F4A7C15ull * (i + 1);
    w->runq_slots = tri_calloc(RUNQ_SLOTS, sizeof *w->runq_slots);
    w->local = local_size ? tri_calloc(1, local_size) : NULL;
    w->seen_at = tri_calloc(nthreads, sizeof *w->seen_at);
    w->seen_runs = tri_calloc(nthreads, sizeof *w->seen_runs);
    if (w->runq_slots == NULL || (local_size && w->local == NULL) || w->seen_at == NULL ||
        w->seen_runs == NULL)
      goto nomem;
    ck_ring_init(&w->runq, RUNQ_SLOTS);
    pthread_cond_init(&w->cond, NULL);
  }
  pthread_mutex_init(&s->inject_lock, NULL);
  pthread_mutex_init(&s->park_lock, NULL);
  pthread_cond_init(&s->quiet_cond, NULL);
  pthread_mutex_init(&s->limbo_lock, NULL);
  pthread_mutex_init(&s->ext_lock, NULL);
  s->local_size = local_size;
  if (tri_timers_new(s, &s->ops, &s->timers) != 0)
    goto nomem;
  s->uid = atomic_fetch_add(&next_uid, 1);
  pthread_mutex_lock(&live_lock);
  s->live_next = live_head;
  live_head = s;
  pthread_mutex_unlock(&live_lock);
  atomic_init(&s->gp, 1);
  atomic_init(&s->state, S_NEW);
  *out = s;
  return 0;
nomem:
  if (s->workers != NULL) {
    for (unsigned i = 0; i < nthreads; i++) {
      free(s->workers[i].runq_slots);
      free(s->workers[i].local);
      free(s->workers[i].seen_at);
      free(s->workers[i].seen_runs);
    }
  }
  free(s->workers);
  free(s->stack);
  free(s);
  return ENOMEM;
}

int tri_sched_set_deterministic(tri_sched *s, uint64_t seed) {
  if (s->n != 1 || tri_sched_started(s))
    return EINVAL;
  /* xorshift needs a non-zero state; mix the seed so nearby seeds differ. */
  uint64_t x = seed * 0x9E3779B97F4A7C15ull;
  s->det_rng = x != 0 ? x : 1;
  return 0;
}

uint64_t tri_worker_det_rand(tri_worker *w) {
  return w->sched->det_rng != 0 ? xorshift(&w->sched->det_rng) : 0;
}

int tri_sched_start(tri_sched *s) {
  int expect = S_NEW;
  if (!atomic_compare_exchange_strong(&s->state, &expect, S_RUNNING))
    return EALREADY;
  for (unsigned i = 0; i < s->n; i++) {
    int rc = pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]);
    if (rc != 0) {
      tri_sched_stop(s);
      return rc;
    }
    s->workers[i].thread_started = true;
  }
  int rc = tri_timers_start(s->timers);
  if (rc != 0)
    tri_sched_stop(s);
  return rc;
}

void tri_sched_stop(tri_sched *s) {
  int st = atomic_load(&s->state);
  if (st == S_STOPPED)
    return;
  /* Timers first: they send, and their sends should find workers. */
  tri_timers_stop(s->timers);
  pthread_mutex_lock(&s->park_lock);
  atomic_store(&s->state, S_STOPPING);
  for (unsigned i = 0; i < s->n; i++)
    pthread_cond_signal(&s->workers[i].cond);
  pthread_cond_broadcast(&s->quiet_cond);
  pthread_mutex_unlock(&s->park_lock);
  for (unsigned i = 0; i < s->n; i++) {
    if (s->workers[i].thread_started) {
      pthread_join(s->workers[i].thread, NULL);
      s->workers[i].thread_started = false;
    }
  }
  atomic_store(&s->state, S_STOPPED);
}

int tri_sched_wait(tri_sched *s, uint64_t timeout_ms) {
  struct timespec deadline;
  int rc = 0;

  if (timeout_ms != UINT64_MAX) {
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)(timeout_ms / 1000);
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
      deadline.tv_sec++;
      deadline.tv_nsec -= 1000000000L;
    }
  }
  pthread_mutex_lock(&s->park_lock);
  while (!tri_sched_stopping(s) && !atomic_load(&s->exiting) && !quiescent_locked(s)) {
    if (timeout_ms == UINT64_MAX) {
      pthread_cond_wait(&s->quiet_cond, &s->park_lock);
    } else if (pthread_cond_timedwait(&s->quiet_cond, &s->park_lock, &deadline) == ETIMEDOUT) {
      rc = quiescent_locked(s) ? 0 : ETIMEDOUT;
      break;
    }
  }
  pthread_mutex_unlock(&s->park_lock);
  return rc;
}

void tri_sched_exit(tri_sched *s) {
  pthread_mutex_lock(&s->park_lock);
  atomic_store(&s->exiting, true);
  pthread_cond_broadcast(&s->quiet_cond);
  pthread_mutex_unlock(&s->park_lock);
}

void tri_sched_free(tri_sched *s) {
  if (s == NULL)
    return;
  tri_sched_stop(s);
  tri_sched_run_deferred(s);
  tri_timers_free(s->timers);
  /* Unlist first: from now on no thread-exit destructor touches a record. */
  pthread_mutex_lock(&live_lock);
  for (tri_sched **p = &live_head; *p != NULL; p = &(*p)->live_next) {
    if (*p == s) {
      *p = s->live_next;
      break;
    }
  }
  pthread_mutex_unlock(&live_lock);
  for (tri_ext *e = atomic_load(&s->ext_head), *next; e != NULL; e = next) {
    next = e->next;
    free(e->local);
    free(e);
  }
  pthread_mutex_destroy(&s->ext_lock);
  for (unsigned i = 0; i < s->n; i++) {
    free(s->workers[i].runq_slots);
    free(s->workers[i].local);
    free(s->workers[i].seen_at);
    free(s->workers[i].seen_runs);
    pthread_cond_destroy(&s->workers[i].cond);
  }
  pthread_mutex_destroy(&s->inject_lock);
  pthread_mutex_destroy(&s->park_lock);
  pthread_cond_destroy(&s->quiet_cond);
  pthread_mutex_destroy(&s->limbo_lock);
  free(s->workers);
  free(s->stack);
  free(s);
}
