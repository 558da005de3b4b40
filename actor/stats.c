/*
 * stats.c - counters of every actor while the system runs: the snapshot
 * API (tr_snapshot_take) and the TROUPE_STATS printer.
 *
 * The problem. The counters live in the actors (mailbox counters, time in
 * behaviour), and actors come and go while we read. The registry gives
 * lock-free lookups, and an actor found there stays valid while the reader
 * is inside a read section (the scheduler's QSBR: a worker's run, or an
 * outside thread's tri_sched_ext_enter/leave bracket).
 *
 * The approach. tri_actors_walk reads the registry's high-water mark once
 * under its lock, then visits slots [0, used) without it, a chunk at a time,
 * each chunk inside one read section, so no chunk holds back reclamation for
 * long and spawns never wait for a reader. An actor spawned after the walk
 * began may be missed, and one stopped meanwhile may be seen: a snapshot is
 * a sequence of per-actor reads, not one instant. The printer keeps, from
 * one interval to the next, only (id, handled, busy) per actor, in index
 * order, so the per-actor rates come from a merge of two sorted lists and it
 * costs 24 bytes per actor.
 */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../sched/alloc.h"
#include "internal_trace.h"

#define WALK_CHUNK 1024u /* slots visited per read section */
#define TOP_K      5u    /* actors per list in the TROUPE_STATS table */

/* ------------------------------------------------------------ walking */

tr_status tri_actors_walk(tr_system *sys, void (*fn)(tri_actor *a, void *arg), void *arg) {
  /* A worker (inside a behaviour) is inside a read section for its whole
   * run already; anyone else enters one per chunk. */
  bool worker = tri_sched_self(sys->sched) != NULL;
  uint32_t used = tri_registry_used(&sys->reg);

  for (uint32_t base = 0; base < used; base += WALK_CHUNK) {
    tri_ext *e = NULL;
    if (!worker && (e = tri_sched_ext_enter(sys->sched)) == NULL)
      return TR_ENOMEM;
    uint32_t end = used - base > WALK_CHUNK ? base + WALK_CHUNK : used;
    for (uint32_t idx = base; idx < end; idx++) {
      tri_actor *a = tri_registry_at(&sys->reg, idx);
      if (a != NULL)
        fn(a, arg);
    }
    if (e != NULL)
      tri_sched_ext_leave(e); /* after the last read of this chunk's actors */
  }
  return TR_OK;
}

void tri_actor_stats_fill(tri_actor *a, tr_actor_stats *out, double ns_per_tick) {
  tri_mailbox_counters mc;
  tri_mailbox_counters_any(&a->mb, &mc);
  *out = (tr_actor_stats){0};
  out->received = mc.received;
  out->handled = mc.popped;
  out->spilled = mc.spilled;
  out->depth = mc.depth;
  out->peak_depth = mc.peak;
  out->runs = mc.runs;
  out->busy_ns = tri_ticks_ns(atomic_load_explicit(&a->busy, memory_order_relaxed), ns_per_tick);
  tri_bound *b = tri_bound_of(a);
  if (b != NULL) {
    out->capacity = b->capacity;
    out->refused = atomic_load_explicit(&b->refused, memory_order_relaxed);
    out->dropped = atomic_load_explicit(&b->dropped, memory_order_relaxed);
    /* Dropped-oldest messages were taken off the mailbox, not handled. */
    out->handled -= atomic_load_explicit(&b->dropped_oldest, memory_order_relaxed);
    out->overflow = atomic_load_explicit(&b->overflow, memory_order_relaxed);
    out->holds = atomic_load_explicit(&b->holds, memory_order_relaxed);
  }
}

/* Copy at most TR_SNAPSHOT_NAME - 1 bytes of a name. */
static void copy_name(char *dst, const char *name) {
  size_t n = 0;
  if (name != NULL)
    while (n < TR_SNAPSHOT_NAME - 1 && name[n] != '\0')
      n++;
  if (n != 0)
    memcpy(dst, name, n);
  dst[n] = '\0';
}

/* ------------------------------------------------------------ snapshot */

typedef struct gather {
  tr_snapshot *snap;
  size_t cap;
  double npt;
  bool nomem;
} gather;

static void gather_one(tri_actor *a, void *arg) {
  gather *g = arg;
  tr_snapshot *s = g->snap;
  if (g->nomem)
    return;
  if (s->nactors == g->cap) {
    size_t cap = g->cap * 2 + 64;
    tr_actor_snapshot *more = tri_realloc(s->actors, cap * sizeof *more);
    if (more == NULL) {
      g->nomem = true;
      return;
    }
    s->actors = more;
    g->cap = cap;
  }
  tr_actor_snapshot *o = &s->actors[s->nactors++];
  o->ref = tri_actor_ref(a);
  copy_name(o->name, a->name);
  tri_actor_stats_fill(a, &o->stats, g->npt);
}

TR_API tr_status tr_snapshot_take(tr_system *sys, tr_snapshot **out) {
  if (sys == NULL || out == NULL)
    return TR_EINVAL;
  if (atomic_load_explicit(&sys->freeing, memory_order_acquire))
    return TR_ESTATE;
  tr_snapshot *s = tri_calloc(1, sizeof *s);
  if (s == NULL)
    return TR_ENOMEM;
  unsigned n = sys->cfg.threads;
  s->workers = tri_calloc(n, sizeof *s->workers);
  uint64_t live = atomic_load_explicit(&sys->spawned, memory_order_relaxed) -
                  atomic_load_explicit(&sys->stopped, memory_order_relaxed);
  gather g = {.snap = s, .cap = (size_t)live + 16, .npt = tri_ns_per_tick()};
  s->actors = tri_malloc(g.cap * sizeof *s->actors);
  tr_status st = s->workers == NULL || s->actors == NULL ? TR_ENOMEM : TR_OK;
  if (st == TR_OK)
    st = tri_actors_walk(sys, gather_one, &g);
  if (st == TR_OK && g.nomem)
    st = TR_ENOMEM;
  if (st == TR_OK)
    st = tr_system_stats_get(sys, &s->system);
  if (st != TR_OK) {
    tr_snapshot_free(s);
    return st;
  }
  s->nworkers = n;
  for (unsigned i = 0; i < n; i++) {
    tri_worker_stats ws;
    tri_sched_worker_stats(sys->sched, i, &ws);
    tri_local *l = tri_worker_local(tri_sched_worker(sys->sched, i));
    s->workers[i] = (tr_worker_snapshot){ws.runs, ws.steals, ws.parks, ws.wakes,
                                         atomic_load_explicit(&l->handled, memory_order_relaxed)};
  }
  s->counters = TROUPE_COUNTERS != 0;
  s->time_ns = tri_mono_ns();
  *out = s;
  return TR_OK;
}

TR_API void tr_snapshot_free(tr_snapshot *snap) {
  if (snap == NULL)
    return;
  free(snap->workers);
  free(snap->actors);
  free(snap);
}

/* ------------------------------------------------------------ TROUPE_STATS */

/* What the printer remembers of an actor from one interval to the next. */
typedef struct seen {
  uint64_t id, handled, busy_ns;
} seen;

/* One row of a top list. */
typedef struct row {
  uint64_t id;
  char name[24];
  double rate, busy;
  uint64_t depth, peak;
} row;

typedef struct printer {
  tr_system *sys;
  uint64_t interval_ms;
  pthread_t thread;
  pthread_mutex_t lock;
  pthread_cond_t cond;
  bool stop; /* under lock */
  /* The printer thread's own, from here on. */
  seen *prev, *cur;
  size_t nprev, ncur, cap_prev, cap_cur;
  size_t pi; /* merge position in prev */
  bool nomem;
  double dt, npt;
  row by_rate[TOP_K], by_depth[TOP_K];
  unsigned nrate, ndepth;
  uint64_t t0_ns, last_ns, actors;
  tr_system_stats last;
  tri_worker_stats *wlast;
} printer;

/* Insert r into a top list kept in descending order of key. */
static void top_insert(row *list, unsigned *n, const row *r, double (*key)(const row *)) {
  unsigned i = *n < TOP_K ? (*n)++ : TOP_K;
  if (i == TOP_K) {
    if (key(r) <= key(&list[TOP_K - 1]))
      return;
    i = TOP_K - 1;
  }
  while (i > 0 && key(&list[i - 1]) < key(r)) {
    list[i] = list[i - 1];
    i--;
  }
  list[i] = *r;
}

static double key_rate(const row *r) { return r->rate; }
static double key_depth(const row *r) { return (double)r->depth; }

static void observe(tri_actor *a, void *arg) {
  printer *p = arg;
  if (p->nomem)
    return;
  if (p->ncur == p->cap_cur) {
    size_t cap = p->cap_cur * 2 + 64;
    seen *more = tri_realloc(p->cur, cap * sizeof *more);
    if (more == NULL) {
      p->nomem = true;
      return;
    }
    p->cur = more;
    p->cap_cur = cap;
  }
  tr_actor_stats st;
  tri_actor_stats_fill(a, &st, p->npt);
  uint64_t id = tri_actor_ref(a).id;
  seen *c = &p->cur[p->ncur++];
  *c = (seen){id, st.handled, st.busy_ns};
  /* Both lists are in slot index order (the low 32 bits of the id). */
  while (p->pi < p->nprev && (uint32_t)p->prev[p->pi].id < (uint32_t)id)
    p->pi++;
  uint64_t h0 = 0, b0 = 0;
  if (p->pi < p->nprev && p->prev[p->pi].id == id) {
    h0 = p->prev[p->pi].handled;
    b0 = p->prev[p->pi].busy_ns;
  }
  row r = {.id = id, .depth = st.depth, .peak = st.peak_depth};
  r.rate = (double)(st.handled - h0) / p->dt;
  r.busy = (double)(st.busy_ns - b0) / (p->dt * 1e9);
  size_t n = 0;
  if (a->name != NULL)
    while (n < sizeof r.name - 1 && a->name[n] != '\0')
      n++;
  memcpy(r.name, a->name != NULL ? a->name : "", n);
  r.name[n] = '\0';
  top_insert(p->by_rate, &p->nrate, &r, key_rate);
  if (r.depth > 0)
    top_insert(p->by_depth, &p->ndepth, &r, key_depth);
}

/* A count per second, with an SI suffix, in a 9-character field. */
static const char *si(char *buf, size_t len, double v) {
  const char *unit = "";
  if (v >= 1e9) {
    v /= 1e9;
    unit = "G";
  } else if (v >= 1e6) {
    v /= 1e6;
    unit = "M";
  } else if (v >= 1e3) {
    v /= 1e3;
    unit = "k";
  }
  snprintf(buf, len, "%.1f%s", v, unit);
  return buf;
}

static void print_rows(FILE *f, const char *title, const row *list, unsigned n) {
  char b1[32];
  fprintf(f, "  %s\n    %-12s %-23s %9s %9s %9s %6s\n", title, "actor", "name", "msg/s", "depth",
          "peak", "busy");
  if (n == 0)
    fprintf(f, "    (none)\n");
  for (unsigned i = 0; i < n; i++) {
    char ref[24];
    snprintf(ref, sizeof ref, "%" PRIu32 ".%" PRIu32, (uint32_t)list[i].id,
             (uint32_t)(list[i].id >> 32));
    fprintf(f, "    %-12s %-23s %9s %9" PRIu64 " %9" PRIu64 " %5.1f%%\n", ref, list[i].name,
            si(b1, sizeof b1, list[i].rate), list[i].depth, list[i].peak, list[i].busy * 100);
  }
}

static void report(printer *p, bool last) {
  tr_system *sys = p->sys;
  uint64_t now = tri_mono_ns();
  p->dt = (double)(now - p->last_ns) / 1e9;
  if (p->dt <= 0)
    p->dt = 1e-9;
  p->npt = tri_ns_per_tick();
  p->ncur = 0;
  p->pi = 0;
  p->nrate = p->ndepth = 0;
  p->nomem = false;
  tr_status st = tri_actors_walk(sys, observe, p);
  tr_system_stats ss;
  if (tr_system_stats_get(sys, &ss) != TR_OK)
    return;

  /* One buffer, written at once, so lines of other threads do not land
   * in the middle of the table. */
  char *text = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&text, &len);
  if (f == NULL)
    return;
  char b1[32], b2[32];
  uint64_t dead = 0, dead0 = 0;
  for (unsigned r = 0; r < TR_DEAD_REASON_COUNT; r++) {
    dead += ss.dead_letters[r];
    dead0 += p->last.dead_letters[r];
  }
  fprintf(f,
          "troupe stats +%.3f s%s: %" PRIu64 " actors, %u workers; sent %s/s, handled %s/s; "
          "dead letters %" PRIu64 " (+%" PRIu64 ")%s\n",
          (double)(now - p->t0_ns) / 1e9, last ? " (at stop)" : "", ss.actors_live, ss.threads,
          si(b1, sizeof b1, (double)(ss.sent - p->last.sent) / p->dt),
          si(b2, sizeof b2, (double)(ss.handled - p->last.handled) / p->dt), dead, dead - dead0,
          st != TR_OK || p->nomem ? " (actors: out of memory, lists incomplete)" : "");
  fprintf(f, "  %-6s %9s %9s %9s %9s %12s %12s %12s\n", "worker", "runs/s", "steals/s", "parks/s",
          "wakes/s", "runs", "steals", "parks");
  for (unsigned i = 0; i < ss.threads; i++) {
    tri_worker_stats ws, *w0 = &p->wlast[i];
    tri_sched_worker_stats(sys->sched, i, &ws);
    char b3[32], b4[32];
    fprintf(f, "  %-6u %9s %9s %9s %9s %12" PRIu64 " %12" PRIu64 " %12" PRIu64 "\n", i,
            si(b1, sizeof b1, (double)(ws.runs - w0->runs) / p->dt),
            si(b2, sizeof b2, (double)(ws.steals - w0->steals) / p->dt),
            si(b3, sizeof b3, (double)(ws.parks - w0->parks) / p->dt),
            si(b4, sizeof b4, (double)(ws.wakes - w0->wakes) / p->dt), ws.runs, ws.steals,
            ws.parks);
    *w0 = ws;
  }
  print_rows(f, "top actors by message rate", p->by_rate, p->nrate);
  print_rows(f, "top actors by mailbox depth", p->by_depth, p->ndepth);
  fclose(f);
  fputs(text, stderr);
  free(text); /* open_memstream's buffer: not ours to route through tri_ */

  seen *t = p->prev;
  size_t cap = p->cap_prev;
  p->prev = p->cur;
  p->cap_prev = p->cap_cur;
  p->nprev = p->ncur;
  p->cur = t;
  p->cap_cur = cap;
  p->last = ss;
  p->last_ns = now;
}

static void *printer_main(void *arg) {
  printer *p = arg;
  pthread_mutex_lock(&p->lock);
  while (!p->stop) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + (p->interval_ms % 1000) * 1000000u;
    until.tv_sec += (time_t)(p->interval_ms / 1000 + ns / 1000000000u);
    until.tv_nsec = (long)(ns % 1000000000u);
    while (!p->stop && pthread_cond_timedwait(&p->cond, &p->lock, &until) == 0)
      ;
    if (p->stop)
      break;
    pthread_mutex_unlock(&p->lock);
    report(p, false);
    pthread_mutex_lock(&p->lock);
  }
  pthread_mutex_unlock(&p->lock);
  /* The system is stopping: one last table, so that a run shorter than
   * the interval shows something too. */
  report(p, true);
  return NULL;
}

static void printer_free(printer *p) {
  pthread_mutex_destroy(&p->lock);
  pthread_cond_destroy(&p->cond);
  free(p->prev);
  free(p->cur);
  free(p->wlast);
  free(p);
}

tr_status tri_stats_printer_start(tr_system *sys, uint64_t interval_ms, void **out) {
  printer *p = tri_calloc(1, sizeof *p);
  if (p == NULL)
    return TR_ENOMEM;
  p->sys = sys;
  p->interval_ms = interval_ms;
  p->cap_prev = p->cap_cur = 1024;
  p->prev = tri_malloc(p->cap_prev * sizeof *p->prev);
  p->cur = tri_malloc(p->cap_cur * sizeof *p->cur);
  p->wlast = tri_calloc(sys->cfg.threads, sizeof *p->wlast);
  pthread_mutex_init(&p->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&p->cond, &ca);
  pthread_condattr_destroy(&ca);
  if (p->prev == NULL || p->cur == NULL || p->wlast == NULL) {
    printer_free(p);
    return TR_ENOMEM;
  }
  p->t0_ns = p->last_ns = tri_mono_ns();
  for (unsigned i = 0; i < sys->cfg.threads; i++)
    tri_sched_worker_stats(sys->sched, i, &p->wlast[i]);
  if (tr_system_stats_get(sys, &p->last) != TR_OK ||
      pthread_create(&p->thread, NULL, printer_main, p) != 0) {
    printer_free(p);
    return TR_ESYS;
  }
  *out = p;
  return TR_OK;
}

void tri_stats_printer_stop(void *arg) {
  printer *p = arg;
  if (p == NULL)
    return;
  pthread_mutex_lock(&p->lock);
  p->stop = true;
  pthread_cond_signal(&p->cond);
  pthread_mutex_unlock(&p->lock);
  pthread_join(p->thread, NULL);
  printer_free(p);
}
