/*
 * system.c - a system's life: new, start, wait, stop, free, stats.
 *
 * Shutdown order matters and is the only subtle part: workers are joined
 * first (nothing runs any more), then the scheduler's deferred reclamations
 * run (actors that stopped while it ran: their late mail becomes dead
 * letters), then every live actor's fini runs and its queued mail becomes
 * dead letters (SHUTDOWN), and only then is pool memory released, since
 * queued messages live in it.
 */
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "../sched/alloc.h"
#include "internal.h"
#include "internal_trace.h"

TR_API tr_status tr_system_new(const tr_system_config *cfg, tr_system **out) {
  tr_system_config c = {0};

  if (out == NULL)
    return TR_EINVAL;
  if (cfg != NULL)
    c = *cfg;
  if (c.threads > TR_MAX_THREADS || c.batch > TR_MAX_BATCH)
    return TR_EINVAL;
  if (c.mailbox_slots != 0 && (c.mailbox_slots < 4 || c.mailbox_slots > TR_MAX_MAILBOX_SLOTS ||
                               (c.mailbox_slots & (c.mailbox_slots - 1)) != 0))
    return TR_EINVAL;
  if (c.max_msg_size > UINT32_MAX)
    return TR_EINVAL;
  if (c.seed != 0 && c.threads > 1)
    return TR_EINVAL;
  if (c.seed != 0)
    c.threads = 1;
  if (c.threads == 0) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    c.threads = n < 1 ? 1 : n > (long)TR_MAX_THREADS ? TR_MAX_THREADS : (unsigned)n;
  }
  if (c.batch == 0)
    c.batch = TRI_DEFAULT_BATCH;
  if (c.max_msg_size == 0)
    c.max_msg_size = TRI_DEFAULT_MAX_MSG;
  if (c.mailbox_slots == 0)
    c.mailbox_slots = TRI_DEFAULT_SLOTS;

  tr_system *sys = tri_calloc(1, sizeof *sys);
  if (sys == NULL)
    return TR_ENOMEM;
  sys->cfg = c;
  tri_registry_init(&sys->reg);
  sys->ext = (struct tr_ctx){.sys = sys};
  pthread_mutex_init(&sys->room_lock, NULL);
  pthread_mutex_init(&sys->hold_lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&sys->room_cond, &ca);
  pthread_condattr_destroy(&ca);
  pthread_mutex_init(&sys->exit_lock, NULL);
  if (tri_asks_new(sys) != TR_OK) {
    tri_registry_destroy(&sys->reg);
    free(sys);
    return TR_ENOMEM;
  }
  if (tri_watch_new(sys) != TR_OK) {
    tri_asks_free(sys);
    tri_registry_destroy(&sys->reg);
    free(sys);
    return TR_ENOMEM;
  }

  tri_sched_ops ops = {.run = tri_actor_run,
                       .ready = tri_actor_ready,
                       .reclaim = tri_actor_reclaim,
                       .timer_fire = tri_timer_fire,
                       .timer_free = tri_timer_free,
                       .ext_start = tri_ext_start,
                       .trace = tri_trace_sched,
                       .arg = sys};
  if (tri_sched_new(c.threads, &ops, sizeof(tri_local), &sys->sched) != 0) {
    tri_watch_free(sys);
    tri_asks_free(sys);
    tri_registry_destroy(&sys->reg);
    free(sys);
    return TR_ENOMEM;
  }
  for (unsigned i = 0; i < c.threads; i++) {
    tri_local *l = tri_worker_local(tri_sched_worker(sys->sched, i));
    tri_local_start(l, sys, i, c.threads);
  }
  if (c.seed != 0)
    tri_sched_set_deterministic(sys->sched, c.seed);
  *out = sys;
  return TR_OK;
}

TR_API tr_status tr_system_start(tr_system *sys) {
  if (sys == NULL)
    return TR_EINVAL;
  if (tri_sched_started(sys->sched))
    return TR_ESTATE;
  tri_tracing_start(sys); /* TROUPE_TRACE, TROUPE_STATS: before the first run */
  /* On failure the scheduler has joined whatever threads it had started. */
  if (tri_sched_start(sys->sched) != 0) {
    tri_tracing_stop(sys);
    return TR_ESYS;
  }
  return TR_OK;
}

TR_API tr_status tr_system_wait_for(tr_system *sys, uint64_t timeout_ms) {
  if (sys == NULL)
    return TR_EINVAL;
  if (!tri_sched_started(sys->sched) || tri_sched_self(sys->sched) != NULL)
    return TR_ESTATE;
  int rc = tri_sched_wait(sys->sched, timeout_ms);
  if (atomic_load(&sys->exited))
    return TR_EEXIT;
  return rc == 0 ? TR_OK : TR_ETIMEDOUT;
}

TR_API tr_status tr_system_wait(tr_system *sys) { return tr_system_wait_for(sys, UINT64_MAX); }

TR_API tr_status tr_system_stop(tr_system *sys) {
  if (sys == NULL)
    return TR_EINVAL;
  if (tri_sched_self(sys->sched) != NULL)
    return TR_ESTATE;
  tri_sched_stop(sys->sched);
  tri_tracing_stop(sys); /* workers joined: the trace has every event */
  return TR_OK;
}

TR_API void tr_system_free(tr_system *sys) {
  if (sys == NULL)
    return;
  tri_assert(tri_sched_self(sys->sched) == NULL);
  tri_sched_stop(sys->sched);
  tri_tracing_free(sys);
  atomic_store_explicit(&sys->freeing, true, memory_order_release);
  tri_sched_run_deferred(sys->sched);
  tri_registry_each(&sys->reg, tri_actor_shutdown, sys);
  /* Queued messages live in the pools: release them only now. */
  for (unsigned i = 0; i < sys->cfg.threads; i++)
    tri_local_destroy(tri_worker_local(tri_sched_worker(sys->sched, i)));
  tri_ext *e;
  for (unsigned id = sys->cfg.threads; (e = tri_sched_ext_by_id(sys->sched, id)) != NULL; id++)
    tri_local_destroy(tri_ext_local(e));
  tri_sched_free(sys->sched); /* pending timers freed here */
  tri_asks_free(sys);
  tri_watch_free(sys);
  tri_registry_destroy(&sys->reg);
  free(sys->exit_reason);
  pthread_mutex_destroy(&sys->exit_lock);
  pthread_mutex_destroy(&sys->room_lock);
  pthread_mutex_destroy(&sys->hold_lock);
  pthread_cond_destroy(&sys->room_cond);
  free(sys);
}

TR_API tr_ctx *tr_system_ctx(tr_system *sys) { return sys ? &sys->ext : NULL; }

TR_API unsigned tr_system_threads(const tr_system *sys) { return sys ? sys->cfg.threads : 0; }

TR_API tr_status tr_system_stats_get(tr_system *sys, tr_system_stats *out) {
  if (sys == NULL || out == NULL)
    return TR_EINVAL;
  *out = (tr_system_stats){0};
  out->threads = sys->cfg.threads;
  out->actors_spawned = atomic_load_explicit(&sys->spawned, memory_order_relaxed);
  out->actors_stopped = atomic_load_explicit(&sys->stopped, memory_order_relaxed);
  out->actors_live = out->actors_spawned - out->actors_stopped;
  /* The scheduler counts units of work: messages, stop requests and armed
   * timers. Only messages are "sent". */
  tri_sched_timer_stats(sys->sched, &out->timers_armed, &out->timers_fired, &out->timers_cancelled);
  out->sent = tri_sched_sent_total(sys->sched) -
              atomic_load_explicit(&sys->requests, memory_order_relaxed) - out->timers_armed;
  for (unsigned r = 0; r < TR_DEAD_REASON_COUNT; r++)
    out->dead_letters[r] = atomic_load_explicit(&sys->dead[r], memory_order_relaxed);
  for (unsigned i = 0; i < sys->cfg.threads; i++) {
    tri_worker_stats ws;
    tri_sched_worker_stats(sys->sched, i, &ws);
    tri_local *l = tri_worker_local(tri_sched_worker(sys->sched, i));
    out->handled += atomic_load_explicit(&l->handled, memory_order_relaxed);
    /* External participants never run behaviours: nothing to add. */
    out->runs += ws.runs;
    out->steals += ws.steals;
    out->parks += ws.parks;
    out->wakes += ws.wakes;
  }
  out->refused = atomic_load_explicit(&sys->refused, memory_order_relaxed);
  out->holds = atomic_load_explicit(&sys->holds, memory_order_relaxed);
  out->asks = atomic_load_explicit(&sys->asks, memory_order_relaxed);
  out->ask_timeouts = atomic_load_explicit(&sys->ask_timeouts, memory_order_relaxed);
  return TR_OK;
}
