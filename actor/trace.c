/*
 * trace.c - the event trace: per-worker buffers, a writer thread, a file.
 *
 * The problem. A trace must see every behaviour run, steal, park, dead
 * letter and restart of a system doing ~25 M messages/s without slowing it
 * down much, and cost nothing measurable when it is off. So a worker must
 * never take a lock, allocate, make a system call or wait to record an
 * event, and when the trace is off the hooks must reduce to one load and a
 * branch that is predicted not taken.
 *
 * The approach. Each worker has its own buffer: a single-producer,
 * single-consumer ring of fixed-size 32-byte records (the format is in
 * internal_trace.h and docs/trace-format.md). The worker is the only
 * producer; a writer thread, started with the trace, is the only consumer:
 * every DRAIN_MS (at once again while the rings fill fast) it copies what
 * the rings hold, turns clock ticks into nanoseconds since the trace began,
 * and writes it to the file through stdio. A worker that finds its ring full drops the event and
 * counts it; the writer records each buffer's losses in the file (DROPPED records) and the total in
 * the END record. Threads that are not workers (outside senders and the timer thread: dead letters,
 * spawns) share one buffer under a mutex: they are rare, and not on a worker's path.
 *
 * The ring (per worker). Producer: its worker. Consumer: the writer thread.
 * Wait-free on both sides; a full ring loses the event, it never blocks.
 *   producer: write the records at tail..tail+n-1 (mod capacity), then
 *             store tail + n with release;
 *   consumer: load tail with acquire (pairs with that release: the records
 *             below it are fully written), copy [head, tail), then store
 *             head = tail with release;
 *   producer, when the ring looks full: reload head with acquire (pairs
 *             with the consumer's release: the copies of the slots it frees
 *             are complete before they are overwritten).
 * tail is written by the producer only and head by the consumer only, each
 * on its own cache line; the producer keeps a private copy of head
 * (head_seen) and reloads the shared one only when the ring looks full.
 *
 * Sessions. The buffers are made by the first tr_trace_start and kept until
 * tr_system_free, so starting and stopping a trace never has to wait for
 * the workers: a worker that loaded the trace pointer just before a stop may
 * still write a record after the writer's last drain. Each record carries
 * the session number it was written for (in the worker field, which the
 * buffer makes redundant), and a writer drops records of other sessions:
 * a late record is lost, or ignored by the next trace, never misplaced.
 *
 * Names. When a trace starts, the writer walks the registry (stats.c) and
 * writes every live actor's name and counters; tr_spawn writes the name of
 * each actor spawned later. The walk reads the registry's bound under its
 * lock after the trace pointer is published, and a spawn adds under that
 * lock before it loads the pointer: so an actor is named by the walk, by
 * its spawn, or by both (readers keep the first).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../sched/alloc.h"
#include "internal_trace.h"

#define RING_BIG   65536u /* records per worker buffer (2 MiB), up to 16 workers */
#define RING_SMALL 16384u /* beyond */
#define EXT_CAP    16384u /* records in the outside threads' shared buffer */
#define DRAIN_MS   10u    /* the writer's period */
#define OUT_RECS   2048u  /* records the writer stages per fwrite */
#define FILE_BUF   (1u << 20)

/* What follows a NAME or COUNTERS record: raw records to copy or skip. */
typedef struct follow {
  uint32_t left;
  bool keep;
} follow;

typedef struct tbuf {
  /* --- the producer: its worker --- */
  _Atomic uint64_t tail;    /* records published */
  uint64_t head_seen;       /* the producer's copy of head */
  _Atomic uint64_t dropped; /* events lost to a full ring (single writer) */
  char pad1[64 - 3 * sizeof(uint64_t)];
  /* --- the consumer: the writer thread (or tr_trace_start before it) --- */
  _Atomic uint64_t head; /* records consumed */
  uint64_t dropped_seen; /* dropped, as last written to the file */
  follow fol;
  char pad2[64 - 2 * sizeof(uint64_t) - sizeof(follow)];
  /* --- immutable --- */
  tri_trace_rec *recs;
} tbuf;

struct tri_trace {
  /* --- immutable once made --- */
  tr_system *sys;
  unsigned nbufs;
  uint32_t cap; /* records per ring, a power of two */
  tbuf *bufs;
  /* --- per session: set by tr_trace_start before it publishes the trace
   * (release store of sys->trace); emitters read it with relaxed loads after
   * their acquire load of sys->trace. Atomic, since a late emitter of the
   * last session may read it while the next one sets it. --- */
  _Atomic uint32_t session; /* low 16 bits stamp the records */
  /* --- the outside threads' buffer, under ext_lock --- */
  pthread_mutex_t ext_lock;
  tri_trace_rec *ext, *ext_spare; /* the writer swaps them */
  uint32_t ext_n;
  uint64_t ext_dropped;
  /* --- the writer thread's (and tr_trace_start's before it runs) --- */
  pthread_t thread;
  pthread_mutex_t lock; /* stop, and the writer's sleep */
  pthread_cond_t cond;
  bool stop;
  FILE *f;
  char *fbuf;
  int err; /* errno of the first failed write */
  uint64_t base;
  double npt;
  follow ext_fol;
  uint64_t ext_dropped_seen, lost;
  uint8_t *out;
  uint32_t out_n;
};

/* A system's trace control: made at the first need, kept until free. */
struct tri_tracing {
  pthread_mutex_t lock; /* start/stop of the trace and the printer */
  tri_trace *trace;     /* the buffers, once made */
  bool on;
  void *printer;
};

/* Makes each system's tri_tracing once (sys->tracing). */
static pthread_mutex_t make_lock = PTHREAD_MUTEX_INITIALIZER;
/* Traces started by TROUPE_TRACE in this process: names path, path.2, ... */
static _Atomic unsigned env_traces;

/* ------------------------------------------------------------ emitting */

static uint16_t session_of(tri_trace *t) {
  return (uint16_t)atomic_load_explicit(&t->session, memory_order_relaxed);
}

/* Producer: room for n records? Returns false (one event lost) if not. */
static bool ring_room(tri_trace *t, tbuf *b, uint32_t n, uint64_t *tail) {
  uint64_t tl = atomic_load_explicit(&b->tail, memory_order_relaxed); /* ours */
  if (tl + n - b->head_seen > t->cap) {
    /* Acquire: pairs with the consumer's release store of head. */
    b->head_seen = atomic_load_explicit(&b->head, memory_order_acquire);
    if (tl + n - b->head_seen > t->cap) {
      tri_ctr_add(&b->dropped, 1);
      return false;
    }
  }
  *tail = tl;
  return true;
}

/* Record n records as one event, from worker w (NULL: any other thread). */
static void emit(tri_trace *t, tri_worker *w, const tri_trace_rec *r, uint32_t n) {
  if (w != NULL) {
    tbuf *b = &t->bufs[tri_worker_id(w)];
    uint64_t tl;
    if (!ring_room(t, b, n, &tl))
      return;
    for (uint32_t i = 0; i < n; i++)
      b->recs[(tl + i) & (t->cap - 1)] = r[i];
    /* Release: pairs with the writer's acquire load of tail. */
    atomic_store_explicit(&b->tail, tl + n, memory_order_release);
    return;
  }
  pthread_mutex_lock(&t->ext_lock);
  if (t->ext_n + n > EXT_CAP) {
    t->ext_dropped++;
  } else {
    memcpy(&t->ext[t->ext_n], r, n * sizeof *r);
    t->ext_n += n;
  }
  pthread_mutex_unlock(&t->ext_lock);
}

void tri_trace_run(tri_trace *t, tri_worker *w, tri_actor *a, uint64_t t0, uint64_t t1,
                   uint64_t depth, uint64_t handled) {
  uint16_t sess = session_of(t);
  uint64_t id = tri_actor_ref(a).id;
  tri_trace_rec r[2] = {
      {.ts = t0, .actor = id, .arg = depth, .kind = TRI_EV_DEPTH, .worker = sess},
      {.ts = t0,
       .actor = id,
       .arg = t1 > t0 ? t1 - t0 : 0,
       .arg2 = handled > UINT32_MAX ? UINT32_MAX : (uint32_t)handled,
       .kind = TRI_EV_RUN,
       .worker = sess},
  };
  emit(t, w, r, 2);
}

void tri_trace_dead(tri_trace *t, tr_system *sys, const tri_msg *m, tr_dead_reason why,
                    uint64_t to) {
  tri_trace_rec r = {.ts = tri_ticks(),
                     .actor = to,
                     .arg = m->sender,
                     .arg2 = m->tag,
                     .kind = TRI_EV_DEAD,
                     .flags = (uint8_t)why,
                     .worker = session_of(t)};
  emit(t, tri_sched_self(sys->sched), &r, 1);
}

/* A NAME record and the name's bytes after it, into r (room for
 * 1 + TRI_TRACE_NAME_MAX / 32 + 1 records); returns the count. */
static uint32_t name_recs(tri_trace_rec *r, tri_actor *a, uint64_t ts, uint16_t stamp) {
  const char *name = a->name != NULL ? a->name : "";
  size_t len = strnlen(name, TRI_TRACE_NAME_MAX);
  uint32_t raw = (uint32_t)((len + sizeof *r - 1) / sizeof *r);
  r[0] = (tri_trace_rec){.ts = ts,
                         .actor = tri_actor_ref(a).id,
                         .arg2 = (uint32_t)len,
                         .kind = TRI_EV_NAME,
                         .worker = stamp};
  memset(&r[1], 0, raw * sizeof *r);
  memcpy(&r[1], name, len);
  return 1 + raw;
}

#define NAME_RECS (2 + TRI_TRACE_NAME_MAX / sizeof(tri_trace_rec))

void tri_trace_actor(tri_trace *t, tr_system *sys, tri_worker *w, tri_actor *a, uint8_t kind) {
  (void)sys;
  tri_trace_rec r[NAME_RECS];
  uint32_t n = 1;
  if (kind == TRI_EV_NAME)
    n = name_recs(r, a, tri_ticks(), session_of(t));
  else
    r[0] = (tri_trace_rec){
        .ts = tri_ticks(), .actor = tri_actor_ref(a).id, .kind = kind, .worker = session_of(t)};
  emit(t, w, r, n);
}

void tri_trace_sched(tri_worker *w, int event, tri_task *task, uint64_t a, uint64_t b, void *arg) {
  tri_trace *t = tri_trace_get(arg);
  if (t == NULL)
    return;
  tri_trace_rec r = {.worker = session_of(t)};
  if (event == TRI_SCHED_EV_STEAL) {
    r.ts = tri_ticks();
    /* The stolen actor is SCHEDULED and owned by this worker now: alive. */
    r.actor = tri_actor_ref((tri_actor *)task).id;
    r.arg = a;
    r.kind = TRI_EV_STEAL;
  } else {
    r.ts = a;
    r.arg = b > a ? b - a : 0;
    r.arg2 = event == TRI_SCHED_EV_PARK_WOKEN;
    r.kind = TRI_EV_PARK;
  }
  emit(t, w, &r, 1);
}

/* ------------------------------------------------------------ writing */

static void put64(uint8_t *p, uint64_t v) {
  for (unsigned i = 0; i < 8; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void put32(uint8_t *p, uint32_t v) {
  for (unsigned i = 0; i < 4; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void flush_out(tri_trace *t) {
  if (t->out_n != 0 && t->err == 0 &&
      fwrite(t->out, sizeof(tri_trace_rec), t->out_n, t->f) != t->out_n)
    t->err = errno != 0 ? errno : EIO;
  t->out_n = 0;
}

/* Append one record in the file's form (little-endian, times in ns). */
static void out_rec(tri_trace *t, const tri_trace_rec *r) {
  if (t->out_n == OUT_RECS)
    flush_out(t);
  uint8_t *p = t->out + (size_t)t->out_n++ * sizeof *r;
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  /* The struct is the file's layout (see the asserts below): copy it. */
  memcpy(p, r, sizeof *r);
  return;
#endif
  put64(p, r->ts);
  put64(p + 8, r->actor);
  put64(p + 16, r->arg);
  put32(p + 24, r->arg2);
  p[28] = r->kind;
  p[29] = r->flags;
  p[30] = (uint8_t)r->worker;
  p[31] = (uint8_t)(r->worker >> 8);
}

_Static_assert(offsetof(tri_trace_rec, actor) == 8 && offsetof(tri_trace_rec, arg) == 16 &&
                   offsetof(tri_trace_rec, arg2) == 24 && offsetof(tri_trace_rec, kind) == 28 &&
                   offsetof(tri_trace_rec, flags) == 29 && offsetof(tri_trace_rec, worker) == 30,
               "tri_trace_rec is laid out as a file record");

/* Append raw bytes (a name, counters) as they are. */
static void out_raw(tri_trace *t, const void *bytes) {
  if (t->out_n == OUT_RECS)
    flush_out(t);
  memcpy(t->out + (size_t)t->out_n++ * sizeof(tri_trace_rec), bytes, sizeof(tri_trace_rec));
}

static uint64_t ns_since_start(tri_trace *t, uint64_t ticks) {
  return ticks > t->base ? tri_ticks_ns(ticks - t->base, t->npt) : 0;
}

/* One record from a buffer: keep it if it is this session's, in file form. */
static void put_rec(tri_trace *t, follow *fol, const tri_trace_rec *r, uint16_t worker) {
  if (fol->left != 0) { /* the bytes of a name */
    fol->left--;
    if (fol->keep)
      out_raw(t, r);
    return;
  }
  bool keep = r->worker == session_of(t);
  if (r->kind == TRI_EV_NAME)
    *fol = (follow){(r->arg2 + (uint32_t)sizeof *r - 1) / (uint32_t)sizeof *r, keep};
  if (!keep)
    return;
  tri_trace_rec o = *r;
  o.ts = ns_since_start(t, r->ts);
  if (r->kind == TRI_EV_RUN || r->kind == TRI_EV_PARK)
    o.arg = tri_ticks_ns(r->arg, t->npt);
  o.worker = worker;
  out_rec(t, &o);
}

static void put_dropped(tri_trace *t, uint64_t *seen, uint64_t now, uint16_t worker, uint64_t ts) {
  if (now == *seen)
    return;
  tri_trace_rec o = {.ts = ts, .arg = now - *seen, .kind = TRI_EV_DROPPED, .worker = worker};
  t->lost += now - *seen;
  *seen = now;
  out_rec(t, &o);
}

/* Copy out every buffer; returns the most records one ring held. */
static uint64_t drain(tri_trace *t) {
  t->npt = tri_ns_per_tick();
  uint64_t ts = ns_since_start(t, tri_ticks()), most = 0;
  for (unsigned i = 0; i < t->nbufs; i++) {
    tbuf *b = &t->bufs[i];
    /* Acquire: pairs with the producer's release store of tail. */
    uint64_t tail = atomic_load_explicit(&b->tail, memory_order_acquire);
    uint64_t h = atomic_load_explicit(&b->head, memory_order_relaxed); /* ours */
    if (tail - h > most)
      most = tail - h;
    for (; h != tail; h++)
      put_rec(t, &b->fol, &b->recs[h & (t->cap - 1)], (uint16_t)i);
    /* Release: our copies above are done before the producer reuses them. */
    atomic_store_explicit(&b->head, tail, memory_order_release);
    put_dropped(t, &b->dropped_seen, atomic_load_explicit(&b->dropped, memory_order_relaxed),
                (uint16_t)i, ts);
  }
  pthread_mutex_lock(&t->ext_lock);
  tri_trace_rec *ext = t->ext;
  uint32_t n = t->ext_n;
  uint64_t dropped = t->ext_dropped;
  t->ext = t->ext_spare;
  t->ext_spare = ext;
  t->ext_n = 0;
  pthread_mutex_unlock(&t->ext_lock);
  for (uint32_t i = 0; i < n; i++)
    put_rec(t, &t->ext_fol, &ext[i], TRI_TRACE_OUTSIDE);
  put_dropped(t, &t->ext_dropped_seen, dropped, TRI_TRACE_OUTSIDE, ts);
  flush_out(t);
  return most;
}

/* The registry walk's visitor: name and counters of one live actor. */
typedef struct walk {
  tri_trace *t;
  bool names;
  uint64_t ts;
} walk;

static void walk_one(tri_actor *a, void *arg) {
  walk *wk = arg;
  tri_trace *t = wk->t;
  if (wk->names) {
    tri_trace_rec r[NAME_RECS];
    uint32_t n = name_recs(r, a, wk->ts, TRI_TRACE_OUTSIDE);
    out_rec(t, &r[0]);
    for (uint32_t i = 1; i < n; i++)
      out_raw(t, &r[i]);
  }
  tr_actor_stats st;
  tri_actor_stats_fill(a, &st, t->npt);
  tri_trace_rec c = {.ts = wk->ts,
                     .actor = tri_actor_ref(a).id,
                     .arg = st.busy_ns,
                     .arg2 = (uint32_t)st.runs,
                     .kind = TRI_EV_COUNTERS,
                     .worker = TRI_TRACE_OUTSIDE};
  uint8_t tail[sizeof c];
  put64(tail, st.received);
  put64(tail + 8, st.handled);
  put64(tail + 16, st.spilled);
  put64(tail + 24, st.peak_depth);
  out_rec(t, &c);
  out_raw(t, tail);
}

static void walk_actors(tri_trace *t, bool names) {
  t->npt = tri_ns_per_tick();
  walk wk = {t, names, ns_since_start(t, tri_ticks())};
  /* Only if this thread cannot become a reader: then the file just lacks
   * the walk's records (the tool reports actors without names by ref). */
  (void)tri_actors_walk(t->sys, walk_one, &wk);
  flush_out(t);
}

static void *writer_main(void *arg) {
  tri_trace *t = arg;
  walk_actors(t, true);
  pthread_mutex_lock(&t->lock);
  uint64_t found = 0;
  while (!t->stop) {
    /* Busy buffers (an eighth full or more since the last drain): drain
     * again at once, so a fast worker loses fewer events; else sleep. */
    if (found >= t->cap / 8) {
      pthread_mutex_unlock(&t->lock);
      found = drain(t);
      pthread_mutex_lock(&t->lock);
      continue;
    }
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += DRAIN_MS * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
      until.tv_sec++;
      until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&t->cond, &t->lock, &until);
    if (t->stop)
      break;
    pthread_mutex_unlock(&t->lock);
    found = drain(t);
    pthread_mutex_lock(&t->lock);
  }
  pthread_mutex_unlock(&t->lock);
  drain(t);
  walk_actors(t, false);
  tri_trace_rec end = {.ts = ns_since_start(t, tri_ticks()),
                       .arg = t->lost,
                       .kind = TRI_EV_END,
                       .worker = TRI_TRACE_OUTSIDE};
  out_rec(t, &end);
  flush_out(t);
  return NULL;
}

/* ------------------------------------------------------------ control */

static void trace_free(tri_trace *t) {
  if (t == NULL)
    return;
  if (t->bufs != NULL)
    for (unsigned i = 0; i < t->nbufs; i++)
      free(t->bufs[i].recs);
  free(t->bufs);
  free(t->ext);
  free(t->ext_spare);
  free(t->out);
  pthread_mutex_destroy(&t->ext_lock);
  pthread_mutex_destroy(&t->lock);
  pthread_cond_destroy(&t->cond);
  free(t);
}

static tri_trace *trace_new(tr_system *sys) {
  tri_trace *t = tri_calloc(1, sizeof *t);
  if (t == NULL)
    return NULL;
  t->sys = sys;
  t->nbufs = sys->cfg.threads;
  t->cap = t->nbufs <= 16 ? RING_BIG : RING_SMALL;
  pthread_mutex_init(&t->ext_lock, NULL);
  pthread_mutex_init(&t->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&t->cond, &ca);
  pthread_condattr_destroy(&ca);
  t->bufs = tri_calloc(t->nbufs, sizeof *t->bufs);
  t->ext = tri_malloc(EXT_CAP * sizeof *t->ext);
  t->ext_spare = tri_malloc(EXT_CAP * sizeof *t->ext_spare);
  t->out = tri_malloc(OUT_RECS * sizeof(tri_trace_rec));
  bool ok = t->bufs != NULL && t->ext != NULL && t->ext_spare != NULL && t->out != NULL;
  for (unsigned i = 0; ok && i < t->nbufs; i++) {
    tbuf *b = &t->bufs[i];
    atomic_init(&b->tail, 0);
    atomic_init(&b->head, 0);
    atomic_init(&b->dropped, 0);
    ok = (b->recs = tri_malloc(t->cap * sizeof *b->recs)) != NULL;
  }
  if (!ok) {
    trace_free(t);
    return NULL;
  }
  return t;
}

static struct tri_tracing *tracing_of(tr_system *sys) {
  pthread_mutex_lock(&make_lock);
  struct tri_tracing *g = sys->tracing;
  if (g == NULL && (g = tri_calloc(1, sizeof *g)) != NULL) {
    pthread_mutex_init(&g->lock, NULL);
    sys->tracing = g;
  }
  pthread_mutex_unlock(&make_lock);
  return g;
}

static void put_header(uint8_t *h, unsigned workers) {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  memset(h, 0, TRI_TRACE_HEADER);
  memcpy(h, TRI_TRACE_MAGIC, 8);
  put32(h + 8, TRI_TRACE_VERSION);
  put32(h + 12, TRI_TRACE_HEADER);
  put32(h + 16, sizeof(tri_trace_rec));
  put32(h + 20, workers);
  put64(h + 24, (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec);
  put32(h + 32, (uint32_t)getpid());
  put32(h + 36, tri_clock_tsc ? 1u : 0u);
}

/* Start a trace into `path`, with g->lock held. */
static tr_status trace_start_locked(tr_system *sys, struct tri_tracing *g, const char *path) {
  if (g->on)
    return TR_ESTATE;
  if (g->trace == NULL && (g->trace = trace_new(sys)) == NULL)
    return TR_ENOMEM;
  tri_trace *t = g->trace;
  t->fbuf = tri_malloc(FILE_BUF);
  if (t->fbuf == NULL)
    return TR_ENOMEM;
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    free(t->fbuf);
    t->fbuf = NULL;
    return TR_ESYS;
  }
  setvbuf(f, t->fbuf, _IOFBF, FILE_BUF);
  uint8_t h[TRI_TRACE_HEADER];
  put_header(h, t->nbufs);
  if (fwrite(h, sizeof h, 1, f) != 1) {
    fclose(f);
    free(t->fbuf);
    t->fbuf = NULL;
    return TR_ESYS;
  }
  /* A new session, as the consumer (no writer thread runs): skip what the
   * rings still hold from the last one, and count only new losses. */
  atomic_store_explicit(&t->session, atomic_load_explicit(&t->session, memory_order_relaxed) + 1,
                        memory_order_relaxed);
  for (unsigned i = 0; i < t->nbufs; i++) {
    tbuf *b = &t->bufs[i];
    /* Acquire/release: as in drain(). */
    atomic_store_explicit(&b->head, atomic_load_explicit(&b->tail, memory_order_acquire),
                          memory_order_release);
    b->dropped_seen = atomic_load_explicit(&b->dropped, memory_order_relaxed);
    b->fol = (follow){0, false};
  }
  pthread_mutex_lock(&t->ext_lock);
  t->ext_n = 0;
  t->ext_dropped_seen = t->ext_dropped;
  pthread_mutex_unlock(&t->ext_lock);
  t->ext_fol = (follow){0, false};
  t->f = f;
  t->err = 0;
  t->lost = 0;
  t->out_n = 0;
  t->stop = false;
  t->base = tri_ticks();
  t->npt = tri_ns_per_tick();
  /* Release: the session above is set up before an emitter (acquire load
   * in tri_trace_get) can find the trace. Then the writer, whose walk must
   * come after this store (see "Names" at the top). */
  atomic_store_explicit(&sys->trace, t, memory_order_release);
  tri_sched_trace(sys->sched, true);
  if (pthread_create(&t->thread, NULL, writer_main, t) != 0) {
    tri_sched_trace(sys->sched, false);
    atomic_store_explicit(&sys->trace, NULL, memory_order_release);
    fclose(f);
    free(t->fbuf);
    t->fbuf = NULL;
    return TR_ESYS;
  }
  g->on = true;
  return TR_OK;
}

static tr_status trace_stop_locked(tr_system *sys, struct tri_tracing *g) {
  if (!g->on)
    return TR_ESTATE;
  tri_trace *t = g->trace;
  tri_sched_trace(sys->sched, false);
  atomic_store_explicit(&sys->trace, NULL, memory_order_release);
  pthread_mutex_lock(&t->lock);
  t->stop = true;
  pthread_cond_signal(&t->cond);
  pthread_mutex_unlock(&t->lock);
  pthread_join(t->thread, NULL);
  int err = t->err;
  if (fclose(t->f) != 0 && err == 0)
    err = errno != 0 ? errno : EIO;
  t->f = NULL;
  free(t->fbuf);
  t->fbuf = NULL;
  g->on = false;
  if (err != 0) {
    errno = err;
    return TR_ESYS;
  }
  return TR_OK;
}

TR_API tr_status tr_trace_start(tr_system *sys, const char *path) {
  if (sys == NULL || path == NULL || path[0] == '\0')
    return TR_EINVAL;
  if (atomic_load_explicit(&sys->freeing, memory_order_acquire) || tri_sched_stopping(sys->sched))
    return TR_ESTATE;
  struct tri_tracing *g = tracing_of(sys);
  if (g == NULL)
    return TR_ENOMEM;
  pthread_mutex_lock(&g->lock);
  tr_status st = trace_start_locked(sys, g, path);
  pthread_mutex_unlock(&g->lock);
  return st;
}

/* The system's tracing control if it was ever made, else NULL. */
static struct tri_tracing *tracing_if_made(tr_system *sys) {
  pthread_mutex_lock(&make_lock);
  struct tri_tracing *g = sys->tracing;
  pthread_mutex_unlock(&make_lock);
  return g;
}

TR_API tr_status tr_trace_stop(tr_system *sys) {
  if (sys == NULL)
    return TR_EINVAL;
  struct tri_tracing *g = tracing_if_made(sys);
  if (g == NULL)
    return TR_ESTATE; /* never made, so never started */
  pthread_mutex_lock(&g->lock);
  tr_status st = trace_stop_locked(sys, g);
  pthread_mutex_unlock(&g->lock);
  return st;
}

/* ------------------------------------------------------------ the system */

static void env_trace(tr_system *sys, struct tri_tracing *g) {
  const char *path = getenv("TROUPE_TRACE");
  if (path == NULL || path[0] == '\0')
    return;
  unsigned n = atomic_fetch_add_explicit(&env_traces, 1, memory_order_relaxed) + 1;
  char *numbered = NULL;
  if (n > 1) {
    size_t len = strlen(path) + 16;
    if ((numbered = tri_malloc(len)) == NULL) {
      fprintf(stderr, "troupe: TROUPE_TRACE: out of memory; not tracing\n");
      return;
    }
    snprintf(numbered, len, "%s.%u", path, n);
  }
  const char *use = numbered != NULL ? numbered : path;
  tr_status st = trace_start_locked(sys, g, use);
  if (st != TR_OK)
    fprintf(stderr, "troupe: TROUPE_TRACE=%s: %s%s%s; not tracing\n", use, tr_strerror(st),
            st == TR_ESYS ? ": " : "", st == TR_ESYS ? strerror(errno) : "");
  free(numbered);
}

static void env_stats(tr_system *sys, struct tri_tracing *g) {
  const char *v = getenv("TROUPE_STATS");
  if (v == NULL || v[0] == '\0' || g->printer != NULL)
    return;
  char *end;
  errno = 0;
  unsigned long long ms = strtoull(v, &end, 10);
  if (errno != 0 || *end != '\0' || ms == 0 || ms > 3600000u || v[0] == '-') {
    fprintf(stderr,
            "troupe: TROUPE_STATS=%s: not an interval in milliseconds (1..3600000); "
            "no stats\n",
            v);
    return;
  }
  tr_status st = tri_stats_printer_start(sys, ms, &g->printer);
  if (st != TR_OK)
    fprintf(stderr, "troupe: TROUPE_STATS: %s; no stats\n", tr_strerror(st));
}

void tri_tracing_start(tr_system *sys) {
  const char *tr = getenv("TROUPE_TRACE"), *stats = getenv("TROUPE_STATS");
  if ((tr == NULL || tr[0] == '\0') && (stats == NULL || stats[0] == '\0'))
    return; /* the common case: nothing made */
  struct tri_tracing *g = tracing_of(sys);
  if (g == NULL) {
    fprintf(stderr, "troupe: TROUPE_TRACE/TROUPE_STATS: out of memory; ignored\n");
    return;
  }
  pthread_mutex_lock(&g->lock);
  env_trace(sys, g);
  env_stats(sys, g);
  pthread_mutex_unlock(&g->lock);
}

void tri_tracing_stop(tr_system *sys) {
  struct tri_tracing *g = tracing_if_made(sys);
  if (g == NULL)
    return;
  pthread_mutex_lock(&g->lock);
  if (g->on) {
    tr_status st = trace_stop_locked(sys, g);
    if (st != TR_OK)
      fprintf(stderr, "troupe: the trace file could not be written in full: %s\n", strerror(errno));
  }
  tri_stats_printer_stop(g->printer);
  g->printer = NULL;
  pthread_mutex_unlock(&g->lock);
}

void tri_tracing_free(tr_system *sys) {
  tri_tracing_stop(sys);
  struct tri_tracing *g = sys->tracing;
  if (g == NULL)
    return;
  trace_free(g->trace);
  pthread_mutex_destroy(&g->lock);
  free(g);
  sys->tracing = NULL;
}
