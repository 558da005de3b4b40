/*
 * timer.c - the scheduler's timers: a binary min-heap and one thread.
 *
 * The problem. Messages sent after a delay, once or periodically, must fire
 * in deadline order, be cancellable, cost nothing while none is pending, and
 * count toward quiescence (tr_system_wait must not return while one is
 * pending).
 *
 * The approach. Entries live in a table indexed by slot (a timer id is slot
 * + generation, so a stale id is recognised, never misused); a binary heap of
 * slots orders them by (deadline, arming sequence). One thread sleeps on a
 * condition variable until the earliest deadline (or, with no timer, until
 * woken), pops what is due and fires it outside the lock through the
 * scheduler's timer_fire callback. Timers are not a per-message path: one
 * mutex guards everything. An entry being fired is marked so that a cancel
 * racing with the firing is honoured right after it (no further firing).
 *
 * Accounting. Arming counts one unit of work (sent) for the arming
 * participant; the unit is retired (done) when a one-shot timer has fired,
 * or when any timer is cancelled or freed. So a pending timer keeps the
 * system from quiescence, and a periodic one does until cancelled.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "alloc.h"
#include "sched.h"
#include "timer.h"

typedef struct entry {
  uint64_t deadline; /* ns, CLOCK_MONOTONIC */
  uint64_t period;   /* ns; 0 = one-shot */
  uint64_t seq;      /* arming order: ties fire first-armed first */
  void *data;
  uint32_t gen; /* bumped when the slot is freed */
  uint32_t pos; /* index in the heap, or NOT_QUEUED */
  bool live, firing, cancel_after_fire;
  uint32_t next_free;
} entry;

#define NOT_QUEUED UINT32_MAX

struct tri_timers {
  tri_sched *s;
  const tri_sched_ops *ops;
  pthread_mutex_t lock;
  pthread_cond_t cond; /* CLOCK_MONOTONIC */
  entry *ents;
  uint32_t nents, cap;
  uint32_t free_head; /* slot + 1; 0 = none */
  uint32_t *heap;     /* slots, min-heap by (deadline, seq) */
  uint32_t nheap;
  uint64_t seq;
  bool running, stop;
  pthread_t thread;
  _Atomic uint64_t armed, fired, cancelled;
};

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------ the heap */

static bool before(const tri_timers *t, uint32_t a, uint32_t b) {
  const entry *x = &t->ents[a], *y = &t->ents[b];
  return x->deadline < y->deadline || (x->deadline == y->deadline && x->seq < y->seq);
}

static void place(tri_timers *t, uint32_t i, uint32_t slot) {
  t->heap[i] = slot;
  t->ents[slot].pos = i;
}

static void sift_up(tri_timers *t, uint32_t i) {
  uint32_t slot = t->heap[i];
  while (i > 0) {
    uint32_t parent = (i - 1) / 2;
    if (!before(t, slot, t->heap[parent]))
      break;
    place(t, i, t->heap[parent]);
    i = parent;
  }
  place(t, i, slot);
}

static void sift_down(tri_timers *t, uint32_t i) {
  uint32_t slot = t->heap[i];
  for (;;) {
    uint32_t l = 2 * i + 1, r = l + 1, best = i;
    uint32_t best_slot = slot;
    if (l < t->nheap && before(t, t->heap[l], best_slot)) {
      best = l;
      best_slot = t->heap[l];
    }
    if (r < t->nheap && before(t, t->heap[r], best_slot)) {
      best = r;
      best_slot = t->heap[r];
    }
    if (best == i)
      break;
    place(t, i, best_slot);
    i = best;
  }
  place(t, i, slot);
}

static void heap_remove(tri_timers *t, uint32_t slot) {
  uint32_t i = t->ents[slot].pos;
  t->ents[slot].pos = NOT_QUEUED;
  uint32_t last = t->heap[--t->nheap];
  if (i == t->nheap)
    return;
  place(t, i, last);
  sift_down(t, i);
  sift_up(t, t->ents[last].pos);
}

static void heap_push(tri_timers *t, uint32_t slot) {
  place(t, t->nheap++, slot);
  sift_up(t, t->nheap - 1);
}

/* ------------------------------------------------------------ slots */

static void slot_free(tri_timers *t, uint32_t slot) {
  entry *e = &t->ents[slot];
  e->live = false;
  e->data = NULL;
  e->gen = (e->gen + 1) & 0x7fffffffu; /* 31 bits: ids keep bit 63 for "not 0" */
  e->next_free = t->free_head;
  t->free_head = slot + 1;
}

static bool slot_get(tri_timers *t, uint64_t id, uint32_t *slot) {
  uint32_t i = (uint32_t)id;
  if (i >= t->nents || t->ents[i].gen != (uint32_t)(id >> 32) || !t->ents[i].live)
    return false;
  *slot = i;
  return true;
}

/* ------------------------------------------------------------ the thread */

static void *timer_main(void *arg) {
  tri_timers *t = arg;

  pthread_mutex_lock(&t->lock);
  while (!t->stop) {
    if (t->nheap == 0) {
      pthread_cond_wait(&t->cond, &t->lock);
      continue;
    }
    uint32_t slot = t->heap[0];
    entry *e = &t->ents[slot];
    uint64_t now = now_ns();
    if (e->deadline > now) {
      struct timespec ts = {(time_t)(e->deadline / 1000000000u), (long)(e->deadline % 1000000000u)};
      pthread_cond_timedwait(&t->cond, &t->lock, &ts);
      continue;
    }
    heap_remove(t, slot);
    e->firing = true;
    void *data = e->data;
    pthread_mutex_unlock(&t->lock);

    int r = t->ops->timer_fire(data, t->ops->arg);
    bool keep = r == TRI_TIMER_KEEP;
    if (r != TRI_TIMER_RETRY)
      atomic_fetch_add_explicit(&t->fired, 1, memory_order_relaxed);

    pthread_mutex_lock(&t->lock);
    e = &t->ents[slot]; /* the table may have grown meanwhile */
    e->firing = false;
    if (r == TRI_TIMER_RETRY && !e->cancel_after_fire && !t->stop) {
      /* Out of memory: the same entry fires again shortly (it needs no
       * allocation), and stays pending work meanwhile. */
      e->deadline = now_ns() + 1000000u;
      e->seq = t->seq++;
      heap_push(t, slot);
      continue;
    }
    if (e->period != 0 && keep && !e->cancel_after_fire && !t->stop) {
      /* Next period from the planned deadline, not from now: no drift; if
       * the thread fell behind by whole periods, skip them. */
      e->deadline += e->period;
      uint64_t late = now_ns();
      if (e->deadline <= late)
        e->deadline = late + e->period - (late - e->deadline) % e->period;
      e->seq = t->seq++;
      heap_push(t, slot);
      continue;
    }
    if (e->period != 0 && !keep)
      atomic_fetch_add_explicit(&t->cancelled, 1, memory_order_relaxed);
    slot_free(t, slot);
    pthread_mutex_unlock(&t->lock);
    t->ops->timer_free(data, t->ops->arg);
    /* Retired after the fired message was counted as sent. */
    tri_sched_count_done(t->s, NULL, 1);
    pthread_mutex_lock(&t->lock);
  }
  pthread_mutex_unlock(&t->lock);
  return NULL;
}

/* ------------------------------------------------------------ the API */

int tri_timers_new(tri_sched *s, const tri_sched_ops *ops, tri_timers **out) {
  tri_timers *t = tri_calloc(1, sizeof *t);
  if (t == NULL)
    return ENOMEM;
  t->s = s;
  t->ops = ops;
  pthread_mutex_init(&t->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cond, &ca);
  pthread_condattr_destroy(&ca);
  *out = t;
  return 0;
}

int tri_timers_start(tri_timers *t) {
  pthread_mutex_lock(&t->lock);
  t->stop = false;
  int rc = pthread_create(&t->thread, NULL, timer_main, t);
  t->running = rc == 0;
  pthread_mutex_unlock(&t->lock);
  return rc;
}

void tri_timers_stop(tri_timers *t) {
  pthread_mutex_lock(&t->lock);
  bool running = t->running;
  t->stop = true;
  t->running = false;
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
  if (running)
    pthread_join(t->thread, NULL);
}

void tri_timers_free(tri_timers *t) {
  if (t == NULL)
    return;
  tri_timers_stop(t);
  for (uint32_t i = 0; i < t->nents; i++) {
    if (t->ents[i].live) {
      t->ops->timer_free(t->ents[i].data, t->ops->arg);
      tri_sched_count_done(t->s, NULL, 1);
    }
  }
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  free(t->ents);
  free(t->heap);
  free(t);
}

uint64_t tri_timers_add(tri_timers *t, tri_worker *w, tri_ext *x, uint64_t delay_ns,
                        uint64_t period_ns, void *data) {
  uint64_t id = 0; /* 0: out of memory; a real id has bit 63 set */

  pthread_mutex_lock(&t->lock);
  uint32_t slot;
  if (t->free_head != 0) {
    slot = t->free_head - 1;
    t->free_head = t->ents[slot].next_free;
  } else {
    if (t->nents == t->cap) {
      uint32_t cap = t->cap ? t->cap * 2 : 64;
      entry *ents = tri_realloc(t->ents, cap * sizeof *ents);
      if (ents == NULL)
        goto out;
      t->ents = ents;
      uint32_t *heap = tri_realloc(t->heap, cap * sizeof *heap);
      if (heap == NULL)
        goto out;
      t->heap = heap;
      t->cap = cap;
    }
    slot = t->nents++;
    t->ents[slot] = (entry){0};
  }
  entry *e = &t->ents[slot];
  e->deadline = now_ns() + delay_ns;
  e->period = period_ns;
  e->seq = t->seq++;
  e->data = data;
  e->live = true;
  e->firing = e->cancel_after_fire = false;
  /* Counted before it can fire (quiescence). */
  tri_sched_count_sent(w, x, 1);
  heap_push(t, slot);
  if (t->heap[0] == slot)
    pthread_cond_signal(&t->cond); /* a new earliest deadline */
  id = ((uint64_t)e->gen << 32) | slot | ((uint64_t)1 << 63);
  atomic_fetch_add_explicit(&t->armed, 1, memory_order_relaxed);
out:
  pthread_mutex_unlock(&t->lock);
  return id;
}

bool tri_timers_cancel(tri_timers *t, uint64_t id) {
  uint32_t slot;
  void *data = NULL;
  bool ok = false;

  if (!(id & ((uint64_t)1 << 63)))
    return false; /* not a handle this module made (a zeroed tr_timer) */
  id &= ~((uint64_t)1 << 63);
  pthread_mutex_lock(&t->lock);
  if (slot_get(t, id, &slot)) {
    entry *e = &t->ents[slot];
    if (e->firing) {
      /* Only a periodic timer can still be cancelled while it fires. */
      if (e->period != 0 && !e->cancel_after_fire) {
        e->cancel_after_fire = true;
        ok = true;
        atomic_fetch_add_explicit(&t->cancelled, 1, memory_order_relaxed);
      }
    } else {
      heap_remove(t, slot);
      data = e->data;
      slot_free(t, slot);
      ok = true;
      atomic_fetch_add_explicit(&t->cancelled, 1, memory_order_relaxed);
    }
  }
  pthread_mutex_unlock(&t->lock);
  if (data != NULL) {
    t->ops->timer_free(data, t->ops->arg);
    tri_sched_count_done(t->s, NULL, 1);
  }
  return ok;
}

void tri_timers_stats(tri_timers *t, uint64_t *armed, uint64_t *fired, uint64_t *cancelled) {
  *armed = atomic_load_explicit(&t->armed, memory_order_relaxed);
  *fired = atomic_load_explicit(&t->fired, memory_order_relaxed);
  *cancelled = atomic_load_explicit(&t->cancelled, memory_order_relaxed);
}
