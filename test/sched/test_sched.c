/*
 * test_sched.c - the scheduler's promises, checked through the public API.
 *
 * What is promised (troupe/core.h, sched/sched.c): every accepted message is
 * handled or dead-lettered exactly once; messages from one sender to one
 * receiver are handled in send order, across the ring and the spill list; an
 * actor is never run by two threads at once; work spreads over the workers by
 * stealing; tr_system_wait returns exactly at quiescence; stopping an actor
 * accounts for its mail; an idle system sleeps.
 *
 * How. Behaviours run on worker threads, where a Criterion assertion would
 * abort the test with an unclear report, so they never assert: they count
 * what went wrong in atomics (with the line of the first failure) and the
 * main thread asserts on the counts once tr_system_wait says the system is
 * quiescent. What a behaviour reports goes to static atomics (or to slots
 * it is handed through its init argument); everything else stays in its
 * private state, which only the runtime's exclusivity protects.
 * Counts are modest so each test takes well under a second natively and a
 * few seconds under ThreadSanitizer on a 2-core machine.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <troupe.h>

#include "../common/tr_test.h"
#include <unistd.h>

TestSuite(sched, .timeout = 60);

/* ------------------------------------------------------------ helpers */

static void reset_bad(void) {
  atomic_store(&g_bad, 0);
  atomic_store(&g_bad_line, 0);
}

static tr_system *new_system(unsigned threads, unsigned batch) {
  tr_system_config cfg = {.threads = threads, .batch = batch};
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  cr_assert_not_null(sys);
  cr_assert_eq(tr_system_threads(sys), threads);
  return sys;
}

static tr_ref spawn(tr_system *sys, const tr_actor_spec *spec, const void *arg) {
  tr_ref r = TR_REF_NONE;
  OK(tr_spawn(tr_system_ctx(sys), spec, arg, &r));
  cr_assert(!tr_ref_is_none(r));
  return r;
}

static tr_actor_stats actor_stats(tr_system *sys, tr_ref r) {
  tr_actor_stats s;
  OK(tr_actor_stats_get(tr_system_ctx(sys), r, &s));
  return s;
}

/* Once quiescent: every accepted message was handled or dead-lettered. */
static void assert_conserved(tr_system *sys) {
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, s.handled + s.dead_letters[TR_DEAD_STOPPED] + s.dead_letters[TR_DEAD_FAILED],
               "sent %llu != handled %llu + stopped %llu + failed %llu", (unsigned long long)s.sent,
               (unsigned long long)s.handled, (unsigned long long)s.dead_letters[TR_DEAD_STOPPED],
               (unsigned long long)s.dead_letters[TR_DEAD_FAILED]);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double cpu_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static void busy_us(unsigned us) {
  double end = now_s() + us / 1e6;
  while (now_s() < end)
    ;
}

static int my_tid(void) { return (int)syscall(SYS_gettid); }

enum {
  T_DATA = 1,
  T_START,
  T_CONTINUE,
  T_REPORT,
  T_GO,
  T_WORK,
  T_TOKEN,
  T_FAIL,
  T_STOP_SELF,
  T_BLOCK,
  T_PING,
  T_PONG,
  T_SWITCH,
};

/* Sender actors (used by several tests): send a chunk per run, then re-send
 * themselves CONTINUE, so no run hogs a worker and senders interleave. */
typedef tr_status (*chunk_fn)(tr_ctx *ctx, unsigned sender, uint64_t seq);

typedef struct sender_arg {
  unsigned sender;
  uint64_t count; /* sequence numbers 0 .. count-1 */
  uint64_t chunk;
  chunk_fn send_one; /* sends sequence number `seq` to every receiver */
} sender_arg;

typedef struct sender_state {
  sender_arg a;
  uint64_t next;
} sender_state;

static tr_status sender_init(void *state, const void *arg) {
  sender_state *s = state;
  s->a = *(const sender_arg *)arg;
  s->next = 0;
  return TR_OK;
}

static tr_status sender_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  sender_state *s = state;
  if (!EXPECT(tr_msg_tag(msg) == T_START || tr_msg_tag(msg) == T_CONTINUE))
    return TR_EINVAL;
  uint64_t end = s->next + s->a.chunk < s->a.count ? s->next + s->a.chunk : s->a.count;
  for (; s->next < end; s->next++) {
    tr_status st = s->a.send_one(ctx, s->a.sender, s->next);
    if (!EXPECT(st == TR_OK))
      return st;
  }
  if (s->next < s->a.count) {
    tr_status st = tr_send(ctx, tr_self(ctx), T_CONTINUE);
    if (!EXPECT(st == TR_OK))
      return st;
  }
  return TR_OK;
}

static const tr_actor_spec sender_spec = {.name = "sender",
                                          .behaviour = sender_behaviour,
                                          .state_size = sizeof(sender_state),
                                          .init = sender_init};

/* Runs per sender actor for `count` messages in chunks of `chunk`. */
static uint64_t sender_runs(uint64_t count, uint64_t chunk) { return (count + chunk - 1) / chunk; }

/* Sender threads (outside the runtime) do the same in one loop. */
typedef struct sender_thread {
  pthread_t tid;
  tr_system *sys;
  unsigned sender;
  uint64_t count;
  chunk_fn send_one;
  pthread_barrier_t *go; /* optional: start together */
} sender_thread;

static void *sender_thread_main(void *p) {
  sender_thread *t = p;
  tr_ctx *ctx = tr_system_ctx(t->sys);
  if (t->go != NULL)
    pthread_barrier_wait(t->go);
  for (uint64_t i = 0; i < t->count; i++)
    if (!EXPECT(t->send_one(ctx, t->sender, i) == TR_OK))
      break;
  return NULL;
}

static void start_sender_threads(sender_thread *ts, unsigned n, tr_system *sys, unsigned first,
                                 uint64_t count, chunk_fn fn, pthread_barrier_t *go) {
  for (unsigned i = 0; i < n; i++) {
    ts[i] =
        (sender_thread){.sys = sys, .sender = first + i, .count = count, .send_one = fn, .go = go};
    cr_assert_eq(pthread_create(&ts[i].tid, NULL, sender_thread_main, &ts[i]), 0);
  }
}

static void join_sender_threads(sender_thread *ts, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    cr_assert_eq(pthread_join(ts[i].tid, NULL), 0);
}

/* ================================================================ exactly once
 *
 * EO_RECV receivers get EO_MSGS numbered messages from each of EO_SENDERS
 * senders (actors and threads, at once). Each receiver marks every (sender,
 * seq) it sees, so a duplicate is caught where it happens, and sums the
 * values, so a loss shows up after the wait.
 */
#define EO_RECV    12
#define EO_ACTORS  5
#define EO_THREADS 3
#define EO_SENDERS (EO_ACTORS + EO_THREADS)
#define EO_MSGS    150
#define EO_CHUNK   25

typedef struct eo_result {
  _Atomic uint64_t count, sum;
} eo_result;

static eo_result eo_results[EO_RECV];
static tr_ref eo_receivers[EO_RECV];

typedef struct eo_receiver {
  eo_result *res;
  uint8_t seen[EO_SENDERS][EO_MSGS];
} eo_receiver;

static tr_status eo_receiver_init(void *state, const void *arg) {
  ((eo_receiver *)state)->res = (eo_result *)arg;
  return TR_OK;
}

static tr_status eo_receiver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  eo_receiver *r = state;
  uint64_t v;
  if (!EXPECT(tr_msg_tag(msg) == T_DATA) || !EXPECT(tr_msg_get_uint(msg, &v) == TR_OK))
    return TR_EINVAL;
  uint64_t s = v / EO_MSGS, q = v % EO_MSGS;
  if (!EXPECT(s < EO_SENDERS))
    return TR_EINVAL;
  EXPECT(r->seen[s][q]++ == 0); /* a duplicate */
  atomic_fetch_add_explicit(&r->res->count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&r->res->sum, v + 1, memory_order_relaxed);
  return TR_OK;
}

static tr_status eo_send_one(tr_ctx *ctx, unsigned sender, uint64_t seq) {
  for (unsigned r = 0; r < EO_RECV; r++) {
    tr_status st = tr_send_uint(ctx, eo_receivers[r], T_DATA, (uint64_t)sender * EO_MSGS + seq);
    if (st != TR_OK)
      return st;
  }
  return TR_OK;
}

static void exactly_once(unsigned threads) {
  reset_bad();
  memset(eo_results, 0, sizeof eo_results);
  tr_system *sys = new_system(threads, 0);
  tr_actor_spec rspec = {.name = "eo-receiver",
                         .behaviour = eo_receiver_behaviour,
                         .state_size = sizeof(eo_receiver),
                         .init = eo_receiver_init};
  for (unsigned r = 0; r < EO_RECV; r++)
    eo_receivers[r] = spawn(sys, &rspec, &eo_results[r]);
  OK(tr_system_start(sys));

  /* Sender actors are spawned while the system runs. */
  for (unsigned a = 0; a < EO_ACTORS; a++) {
    sender_arg sa = {a, EO_MSGS, EO_CHUNK, eo_send_one};
    OK(tr_send(tr_system_ctx(sys), spawn(sys, &sender_spec, &sa), T_START));
  }
  sender_thread ts[EO_THREADS];
  start_sender_threads(ts, EO_THREADS, sys, EO_ACTORS, EO_MSGS, eo_send_one, NULL);
  join_sender_threads(ts, EO_THREADS);
  WAIT(sys);

  ASSERT_NO_BAD();
  const uint64_t n = (uint64_t)EO_SENDERS * EO_MSGS;
  for (unsigned r = 0; r < EO_RECV; r++) {
    cr_assert_eq(atomic_load(&eo_results[r].count), n, "receiver %u handled %llu of %llu", r,
                 (unsigned long long)atomic_load(&eo_results[r].count), (unsigned long long)n);
    cr_assert_eq(atomic_load(&eo_results[r].sum), n * (n + 1) / 2, "receiver %u: wrong sum", r);
    tr_actor_stats as = actor_stats(sys, eo_receivers[r]);
    cr_assert_eq(as.received, n);
    cr_assert_eq(as.handled, n);
    cr_assert_eq(as.depth, 0);
  }
  tr_system_stats s = stats(sys);
  uint64_t control = (uint64_t)EO_ACTORS * sender_runs(EO_MSGS, EO_CHUNK);
  cr_assert_eq(s.sent, EO_RECV * n + control, "sent %llu", (unsigned long long)s.sent);
  cr_assert_eq(s.handled, EO_RECV * n + control, "handled %llu", (unsigned long long)s.handled);
  for (unsigned d = 0; d < TR_DEAD_REASON_COUNT; d++)
    cr_assert_eq(s.dead_letters[d], 0, "dead letters %s: %llu", tr_dead_reason_name(d),
                 (unsigned long long)s.dead_letters[d]);
  cr_assert_eq(s.threads, threads);
  tr_system_free(sys);
}

Test(sched, exactly_once_1_worker) { exactly_once(1); }
Test(sched, exactly_once_2_workers) { exactly_once(2); }
Test(sched, exactly_once_8_workers) { exactly_once(8); }

/* ================================================================ per-sender FIFO
 *
 * Every sender numbers its messages 1, 2, ...; each receiver keeps, in its
 * private state, the last number seen from each sender and counts any that is
 * not larger. Sender 0 is the main thread, which sends a burst before the
 * system starts: the receivers cannot run, so the burst overruns the 8-slot
 * ring and spills, and FIFO across ring and spill list is certainly tested.
 * The other senders (actors and threads) then race while the system runs.
 */
#define FF_RECV    3
#define FF_ACTORS  3
#define FF_THREADS 3
#define FF_SENDERS (1 + FF_ACTORS + FF_THREADS)
#define FF_PRE     100
#define FF_MSGS    1000
#define FF_CHUNK   100

static _Atomic uint64_t ff_count[FF_RECV][FF_SENDERS];
static tr_ref ff_receivers[FF_RECV];

typedef struct ff_receiver {
  unsigned idx;
  uint64_t last[FF_SENDERS];
} ff_receiver;

static tr_status ff_receiver_init(void *state, const void *arg) {
  ((ff_receiver *)state)->idx = *(const unsigned *)arg;
  return TR_OK;
}

static tr_status ff_receiver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  ff_receiver *r = state;
  tr_val v[2];
  size_t n = 0;
  uint64_t sender, seq;
  if (!EXPECT(tr_msg_get_vals(msg, v, 2, &n) == TR_OK) || !EXPECT(n == 2) ||
      !EXPECT(tr_val_get_uint(&v[0], &sender) == TR_OK) ||
      !EXPECT(tr_val_get_uint(&v[1], &seq) == TR_OK) || !EXPECT(sender < FF_SENDERS))
    return TR_EINVAL;
  EXPECT(seq > r->last[sender]); /* out of order, or a duplicate */
  r->last[sender] = seq;
  /* Now and then give the CPU away, so producers fill the ring and spill
   * while this receiver is between messages. */
  if (atomic_fetch_add_explicit(&ff_count[r->idx][sender], 1, memory_order_relaxed) % 64 == 63)
    sched_yield();
  return TR_OK;
}

static tr_status ff_send_one(tr_ctx *ctx, unsigned sender, uint64_t seq) {
  tr_val v[2] = {tr_uint(sender), tr_uint(seq + 1)};
  for (unsigned r = 0; r < FF_RECV; r++) {
    tr_status st = tr_send_vals(ctx, ff_receivers[r], T_DATA, v, 2);
    if (st != TR_OK)
      return st;
  }
  return TR_OK;
}

static void fifo(unsigned threads) {
  reset_bad();
  memset(ff_count, 0, sizeof ff_count);
  tr_system *sys = new_system(threads, 0);
  tr_actor_spec rspec = {.name = "ff-receiver",
                         .behaviour = ff_receiver_behaviour,
                         .state_size = sizeof(ff_receiver),
                         .init = ff_receiver_init};
  for (unsigned r = 0; r < FF_RECV; r++)
    ff_receivers[r] = spawn(sys, &rspec, &r);
  for (uint64_t i = 0; i < FF_PRE; i++)
    OK(ff_send_one(tr_system_ctx(sys), 0, i));
  tr_ref senders[FF_ACTORS];
  for (unsigned a = 0; a < FF_ACTORS; a++) {
    sender_arg sa = {1 + a, FF_MSGS, FF_CHUNK, ff_send_one};
    senders[a] = spawn(sys, &sender_spec, &sa);
  }
  pthread_barrier_t go;
  cr_assert_eq(pthread_barrier_init(&go, NULL, FF_THREADS + 1), 0);
  sender_thread ts[FF_THREADS];
  start_sender_threads(ts, FF_THREADS, sys, 1 + FF_ACTORS, FF_MSGS, ff_send_one, &go);

  OK(tr_system_start(sys));
  for (unsigned a = 0; a < FF_ACTORS; a++)
    OK(tr_send(tr_system_ctx(sys), senders[a], T_START));
  pthread_barrier_wait(&go);
  join_sender_threads(ts, FF_THREADS);
  pthread_barrier_destroy(&go);
  WAIT(sys);

  ASSERT_NO_BAD();
  for (unsigned r = 0; r < FF_RECV; r++) {
    for (unsigned s = 0; s < FF_SENDERS; s++) {
      uint64_t want = s == 0 ? FF_PRE : FF_MSGS;
      cr_assert_eq(atomic_load(&ff_count[r][s]), want, "receiver %u got %llu of %llu from %u", r,
                   (unsigned long long)atomic_load(&ff_count[r][s]), (unsigned long long)want, s);
    }
    tr_actor_stats as = actor_stats(sys, ff_receivers[r]);
    cr_assert_gt(as.spilled, 0, "receiver %u never spilled: FIFO across the spill list untested",
                 r);
    cr_assert_geq(as.peak_depth, FF_PRE);
  }
  assert_conserved(sys);
  tr_system_free(sys);
}

/* The same, made deterministic: the receiver is held inside its first
 * message while its ring has room again and older mail of the same sender
 * waits on the spill list; what that sender sends now must queue behind it. */
static _Atomic bool fd_entered, fd_release;
static _Atomic uint64_t fd_count;

typedef struct fd_receiver {
  uint64_t last;
} fd_receiver;

static tr_status fd_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  fd_receiver *r = state;
  uint64_t seq;
  if (!EXPECT(tr_msg_get_uint(msg, &seq) == TR_OK))
    return TR_EINVAL;
  EXPECT(seq == r->last + 1);
  r->last = seq;
  atomic_fetch_add_explicit(&fd_count, 1, memory_order_relaxed);
  if (tr_msg_tag(msg) == T_BLOCK) {
    atomic_store(&fd_entered, true);
    double give_up = now_s() + 10;
    while (!atomic_load(&fd_release) && EXPECT(now_s() < give_up))
      sched_yield();
  }
  return TR_OK;
}

Test(sched, fifo_across_ring_and_spill_list) {
  reset_bad();
  atomic_store(&fd_entered, false);
  atomic_store(&fd_release, false);
  atomic_store(&fd_count, 0);
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "fd", .behaviour = fd_behaviour, .state_size = sizeof(fd_receiver)};
  tr_ref r = spawn(sys, &spec, NULL);
  /* 1..7 fill the default ring (8 slots hold 7); 8..20 spill. */
  OK(tr_send_uint(ctx, r, T_BLOCK, 1));
  for (uint64_t seq = 2; seq <= 20; seq++)
    OK(tr_send_uint(ctx, r, T_DATA, seq));
  OK(tr_system_start(sys));
  while (!atomic_load(&fd_entered))
    sched_yield();
  /* 1 was taken from the ring, so it has room; 8..20 still wait. */
  for (uint64_t seq = 21; seq <= 30; seq++)
    OK(tr_send_uint(ctx, r, T_DATA, seq));
  atomic_store(&fd_release, true);
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&fd_count), 30);
  tr_actor_stats as = actor_stats(sys, r);
  cr_assert_geq(as.spilled, 13);
  cr_assert_geq(as.peak_depth, 20);
  tr_system_free(sys);
}

Test(sched, fifo_per_sender_1_worker) { fifo(1); }
Test(sched, fifo_per_sender_2_workers) { fifo(2); }
Test(sched, fifo_per_sender_8_workers) { fifo(8); }

/* ================================================================ exclusivity
 *
 * Each target counts, in an atomic, the threads inside its behaviour right
 * now; finding another one there is a violation. Meanwhile it updates plain
 * private state (a counter and a scratch array) that would lose updates if
 * two runs overlapped, and now and then yields the CPU inside the behaviour
 * to widen any window. At the end each target reports its plain counter.
 */
#define EX_TARGETS 4
#define EX_ACTORS  4
#define EX_THREADS 4
#define EX_MSGS    300
#define EX_CHUNK   50

static _Atomic unsigned ex_inside[EX_TARGETS];
static _Atomic uint64_t ex_violations;
static _Atomic uint64_t ex_reported[EX_TARGETS];
static tr_ref ex_targets[EX_TARGETS];

typedef struct ex_target {
  unsigned idx;
  uint64_t handled;
  uint64_t scratch[16];
} ex_target;

static tr_status ex_target_init(void *state, const void *arg) {
  ((ex_target *)state)->idx = *(const unsigned *)arg;
  return TR_OK;
}

static tr_status ex_target_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  ex_target *t = state;
  if (tr_msg_tag(msg) == T_REPORT) {
    atomic_store_explicit(&ex_reported[t->idx], t->handled, memory_order_relaxed);
    return TR_OK;
  }
  /* Acq_rel: pairs with the fetch_sub below in a run on another thread. */
  if (atomic_fetch_add_explicit(&ex_inside[t->idx], 1, memory_order_acq_rel) != 0)
    atomic_fetch_add_explicit(&ex_violations, 1, memory_order_relaxed);
  uint64_t h = t->handled;
  for (unsigned i = 0; i < 16; i++)
    t->scratch[i] += h + i;
  if (h % 16 == 0)
    sched_yield();
  t->handled = h + 1;
  atomic_fetch_sub_explicit(&ex_inside[t->idx], 1, memory_order_acq_rel);
  return TR_OK;
}

static tr_status ex_send_one(tr_ctx *ctx, unsigned sender, uint64_t seq) {
  (void)sender;
  (void)seq;
  for (unsigned t = 0; t < EX_TARGETS; t++) {
    tr_status st = tr_send(ctx, ex_targets[t], T_DATA);
    if (st != TR_OK)
      return st;
  }
  return TR_OK;
}

static void exclusive(unsigned threads) {
  reset_bad();
  memset(ex_inside, 0, sizeof ex_inside);
  memset(ex_reported, 0, sizeof ex_reported);
  atomic_store(&ex_violations, 0);
  tr_system *sys = new_system(threads, 0);
  tr_actor_spec tspec = {.name = "ex-target",
                         .behaviour = ex_target_behaviour,
                         .state_size = sizeof(ex_target),
                         .init = ex_target_init};
  for (unsigned t = 0; t < EX_TARGETS; t++)
    ex_targets[t] = spawn(sys, &tspec, &t);
  OK(tr_system_start(sys));
  pthread_barrier_t go;
  cr_assert_eq(pthread_barrier_init(&go, NULL, EX_THREADS + 1), 0);
  sender_thread ts[EX_THREADS];
  start_sender_threads(ts, EX_THREADS, sys, EX_ACTORS, EX_MSGS, ex_send_one, &go);
  for (unsigned a = 0; a < EX_ACTORS; a++) {
    sender_arg sa = {a, EX_MSGS, EX_CHUNK, ex_send_one};
    OK(tr_send(tr_system_ctx(sys), spawn(sys, &sender_spec, &sa), T_START));
  }
  pthread_barrier_wait(&go);
  join_sender_threads(ts, EX_THREADS);
  pthread_barrier_destroy(&go);
  tr_status waited = tr_system_wait_for(sys, WAIT_MS);
  /* Overlapping runs usually break the counts too: report them first. */
  cr_assert_eq(atomic_load(&ex_violations), 0, "%llu runs overlapped another run of the actor",
               (unsigned long long)atomic_load(&ex_violations));
  EXPECT_ST(waited, TR_OK);
  for (unsigned t = 0; t < EX_TARGETS; t++)
    OK(tr_send(tr_system_ctx(sys), ex_targets[t], T_REPORT));
  WAIT(sys);

  ASSERT_NO_BAD();
  const uint64_t want = (uint64_t)(EX_ACTORS + EX_THREADS) * EX_MSGS;
  for (unsigned t = 0; t < EX_TARGETS; t++)
    cr_assert_eq(atomic_load(&ex_reported[t]), want, "target %u counted %llu of %llu", t,
                 (unsigned long long)atomic_load(&ex_reported[t]), (unsigned long long)want);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(sched, never_run_twice_at_once_2_workers) { exclusive(2); }
Test(sched, never_run_twice_at_once_8_workers) { exclusive(8); }

/* ================================================================ work spreads
 *
 * One actor spawns WS_WORKERS actors from inside its behaviour and sends each
 * WS_WORK messages that take ~1 ms of CPU each. They all become runnable on
 * the spawner's worker; the other worker must steal some. Each run records
 * the OS thread it ran on.
 */
#define WS_WORKERS 64
#define WS_WORK    3
#define WS_US      1000

static _Atomic int ws_tid[WS_WORKERS * WS_WORK];
static _Atomic unsigned ws_done;

typedef struct ws_worker {
  unsigned idx;
} ws_worker;

static tr_status ws_worker_init(void *state, const void *arg) {
  ((ws_worker *)state)->idx = *(const unsigned *)arg;
  return TR_OK;
}

static tr_status ws_worker_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  ws_worker *w = state;
  uint64_t k;
  if (!EXPECT(tr_msg_tag(msg) == T_WORK) || !EXPECT(tr_msg_get_uint(msg, &k) == TR_OK) ||
      !EXPECT(k < WS_WORK))
    return TR_EINVAL;
  busy_us(WS_US);
  atomic_store_explicit(&ws_tid[w->idx * WS_WORK + k], my_tid(), memory_order_relaxed);
  atomic_fetch_add_explicit(&ws_done, 1, memory_order_relaxed);
  return TR_OK;
}

static const tr_actor_spec ws_worker_spec = {.name = "ws-worker",
                                             .behaviour = ws_worker_behaviour,
                                             .state_size = sizeof(ws_worker),
                                             .init = ws_worker_init};

static tr_status ws_spawner_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (!EXPECT(tr_msg_tag(msg) == T_GO))
    return TR_EINVAL;
  tr_ref workers[WS_WORKERS];
  for (unsigned i = 0; i < WS_WORKERS; i++) {
    tr_status st = tr_spawn(ctx, &ws_worker_spec, &i, &workers[i]);
    if (!EXPECT(st == TR_OK))
      return st;
  }
  for (unsigned k = 0; k < WS_WORK; k++) {
    for (unsigned i = 0; i < WS_WORKERS; i++) {
      tr_status st = tr_send_uint(ctx, workers[i], T_WORK, k);
      if (!EXPECT(st == TR_OK))
        return st;
    }
  }
  return TR_OK;
}

static void work_spreads(unsigned threads) {
  reset_bad();
  memset(ws_tid, 0, sizeof ws_tid);
  atomic_store(&ws_done, 0);
  tr_system *sys = new_system(threads, 0);
  tr_actor_spec spec = {.name = "ws-spawner", .behaviour = ws_spawner_behaviour};
  tr_ref spawner = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  double t0 = now_s();
  OK(tr_send(tr_system_ctx(sys), spawner, T_GO));
  WAIT(sys);
  double elapsed = now_s() - t0;

  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&ws_done), WS_WORKERS * WS_WORK);
  int distinct[WS_WORKERS * WS_WORK];
  unsigned ndistinct = 0;
  for (unsigned i = 0; i < WS_WORKERS * WS_WORK; i++) {
    int tid = atomic_load(&ws_tid[i]);
    cr_assert_neq(tid, 0, "work item %u never ran", i);
    unsigned j = 0;
    while (j < ndistinct && distinct[j] != tid)
      j++;
    if (j == ndistinct)
      distinct[ndistinct++] = tid;
  }
  tr_system_stats s = stats(sys);
  cr_assert_gt(ndistinct, 1, "all %u work items ran on one thread (%.0f ms)", WS_WORKERS * WS_WORK,
               elapsed * 1e3);
  cr_assert_leq(ndistinct, threads);
  cr_assert_gt(s.steals, 0, "no steals");
  cr_assert_eq(s.actors_spawned, 1 + WS_WORKERS);
  cr_log_info("work_spreads(%u): %u threads ran the work, %llu steals, %.0f ms", threads, ndistinct,
              (unsigned long long)s.steals, elapsed * 1e3);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(sched, work_spreads_2_workers) { work_spreads(2); }
Test(sched, work_spreads_4_workers) { work_spreads(4); }

/* ================================================================ quiescence */

/* A chain: each link forwards the value + 1 to the next; the last one
 * records. tr_system_wait must not return while a token is in flight. */
#define CH_LEN    8
#define CH_TOKENS 100
#define CH_ROUNDS 10

static _Atomic uint64_t ch_count, ch_sum;

typedef struct ch_link {
  tr_ref next; /* none: the last link */
} ch_link;

static tr_status ch_link_init(void *state, const void *arg) {
  ((ch_link *)state)->next = *(const tr_ref *)arg;
  return TR_OK;
}

static tr_status ch_link_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  ch_link *l = state;
  uint64_t v;
  if (!EXPECT(tr_msg_get_uint(msg, &v) == TR_OK))
    return TR_EINVAL;
  if (tr_ref_is_none(l->next)) {
    atomic_fetch_add_explicit(&ch_sum, v, memory_order_relaxed);
    atomic_fetch_add_explicit(&ch_count, 1, memory_order_relaxed);
    return TR_OK;
  }
  tr_status st = tr_send_uint(ctx, l->next, T_TOKEN, v + 1);
  EXPECT(st == TR_OK);
  return st;
}

/* A ring of RG_LEN actors passing one token RG_HOPS times. */
#define RG_LEN  3
#define RG_HOPS 1000

static _Atomic uint64_t rg_hops, rg_done;

typedef struct rg_node {
  tr_ref next;
} rg_node;

static tr_status rg_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  rg_node *n = state;
  uint64_t left;
  if (tr_msg_tag(msg) == T_START) { /* learn the next node */
    const void *p;
    size_t len;
    if (!EXPECT(tr_msg_get_bin(msg, &p, &len) == TR_OK) || !EXPECT(len == sizeof n->next))
      return TR_EINVAL;
    memcpy(&n->next, p, sizeof n->next);
    return TR_OK;
  }
  if (!EXPECT(tr_msg_get_uint(msg, &left) == TR_OK))
    return TR_EINVAL;
  atomic_fetch_add_explicit(&rg_hops, 1, memory_order_relaxed);
  if (left == 0) {
    atomic_fetch_add_explicit(&rg_done, 1, memory_order_relaxed);
    return TR_OK;
  }
  tr_status st = tr_send_uint(ctx, n->next, T_TOKEN, left - 1);
  EXPECT(st == TR_OK);
  return st;
}

static void wait_covers_chains(unsigned threads) {
  reset_bad();
  atomic_store(&ch_count, 0);
  atomic_store(&ch_sum, 0);
  atomic_store(&rg_hops, 0);
  atomic_store(&rg_done, 0);
  tr_system *sys = new_system(threads, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec lspec = {.name = "ch-link",
                         .behaviour = ch_link_behaviour,
                         .state_size = sizeof(ch_link),
                         .init = ch_link_init};
  tr_ref next = TR_REF_NONE;
  for (unsigned i = 0; i < CH_LEN; i++)
    next = spawn(sys, &lspec, &next);
  tr_ref head = next;
  tr_actor_spec rspec = {
      .name = "rg-node", .behaviour = rg_behaviour, .state_size = sizeof(rg_node)};
  tr_ref ring[RG_LEN];
  for (unsigned i = 0; i < RG_LEN; i++)
    ring[i] = spawn(sys, &rspec, NULL);
  for (unsigned i = 0; i < RG_LEN; i++)
    OK(tr_send_bin(ctx, ring[i], T_START, &ring[(i + 1) % RG_LEN], sizeof(tr_ref)));
  OK(tr_system_start(sys));

  for (uint64_t round = 1; round <= CH_ROUNDS; round++) {
    for (uint64_t t = 0; t < CH_TOKENS; t++)
      OK(tr_send_uint(ctx, head, T_TOKEN, t));
    OK(tr_send_uint(ctx, ring[0], T_TOKEN, RG_HOPS - 1));
    OK(tr_system_wait(sys));
    /* No sleep, no retry: quiescence means everything has arrived. */
    cr_assert_eq(atomic_load(&ch_count), round * CH_TOKENS, "round %llu: %llu of %llu tokens",
                 (unsigned long long)round, (unsigned long long)atomic_load(&ch_count),
                 (unsigned long long)(round * CH_TOKENS));
    cr_assert_eq(atomic_load(&rg_done), round);
    cr_assert_eq(atomic_load(&rg_hops), round * RG_HOPS);
    assert_conserved(sys);
  }
  ASSERT_NO_BAD();
  /* Each token t arrives as t + (CH_LEN - 1). */
  uint64_t per_round =
      (uint64_t)CH_TOKENS * (CH_TOKENS - 1) / 2 + (uint64_t)CH_TOKENS * (CH_LEN - 1);
  cr_assert_eq(atomic_load(&ch_sum), CH_ROUNDS * per_round);
  tr_system_free(sys);
}

Test(sched, wait_covers_chains_1_worker) { wait_covers_chains(1); }
Test(sched, wait_covers_chains_2_workers) { wait_covers_chains(2); }
Test(sched, wait_covers_chains_8_workers) { wait_covers_chains(8); }

/* An actor that sends itself a message forever: never quiescent. */
static _Atomic uint64_t loop_runs, loop_finis;

static tr_status loop_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  (void)msg;
  atomic_fetch_add_explicit(&loop_runs, 1, memory_order_relaxed);
  tr_status st = tr_send(ctx, tr_self(ctx), T_CONTINUE);
  EXPECT(st == TR_OK);
  return st;
}

static void loop_fini(void *state) {
  (void)state;
  atomic_fetch_add_explicit(&loop_finis, 1, memory_order_relaxed);
}

Test(sched, wait_for_times_out_while_busy) {
  reset_bad();
  atomic_store(&loop_runs, 0);
  atomic_store(&loop_finis, 0);
  tr_system *sys = new_system(2, 0);
  tr_actor_spec spec = {.name = "loop", .behaviour = loop_behaviour, .fini = loop_fini};
  tr_ref a = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_send(tr_system_ctx(sys), a, T_CONTINUE));

  double t0 = now_s();
  EXPECT_ST(tr_system_wait_for(sys, 50), TR_ETIMEDOUT);
  double waited = now_s() - t0;
  cr_assert_geq(waited, 0.045, "wait_for(50 ms) gave up after %.1f ms", waited * 1e3);
  cr_assert_lt(waited, 5.0, "wait_for(50 ms) took %.1f ms", waited * 1e3);
  cr_assert_gt(atomic_load(&loop_runs), 0);
  EXPECT_ST(tr_system_wait_for(sys, 1), TR_ETIMEDOUT);

  /* Stop ends the loop, and a wait after stop returns at once. */
  OK(tr_system_stop(sys));
  uint64_t runs = atomic_load(&loop_runs);
  OK(tr_system_wait(sys));
  OK(tr_system_wait_for(sys, 0));
  OK(tr_system_stop(sys)); /* idempotent */
  cr_assert_eq(atomic_load(&loop_runs), runs, "the actor ran after tr_system_stop");
  /* Its one queued message is still waiting; nothing was lost. */
  tr_system_stats s = stats(sys);
  tr_actor_stats as = actor_stats(sys, a);
  cr_assert_eq(as.depth, 1);
  cr_assert_eq(s.sent, s.handled + as.depth);
  cr_assert_eq(atomic_load(&loop_finis), 0);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&loop_finis), 1);
  ASSERT_NO_BAD();
}

Test(sched, wait_on_idle_system_returns_promptly) {
  tr_system *sys = new_system(2, 0);
  OK(tr_system_start(sys));
  double t0 = now_s();
  OK(tr_system_wait(sys));
  double first = now_s() - t0;
  cr_assert_lt(first, 1.0, "wait on an idle system took %.1f ms", first * 1e3);
  /* Already quiescent: even a 1 ms wait succeeds. */
  t0 = now_s();
  OK(tr_system_wait_for(sys, 1));
  OK(tr_system_wait(sys));
  double again = now_s() - t0;
  cr_assert_lt(again, 0.5, "second wait took %.1f ms", again * 1e3);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, 0);
  cr_assert_eq(s.handled, 0);
  cr_assert_eq(s.runs, 0);
  tr_system_free(sys);
}

/* Mixed fates, all decided before start, so every count is exact:
 *   - "plain": AC_PLAIN messages, all handled;
 *   - "fails": fails on message AC_FAIL_AT of AC_QUEUED: AC_FAIL_AT - 1
 *     handled, 1 failed, the rest stopped;
 *   - "stopped": AC_QUEUED messages, then tr_stop from outside: all stopped. */
#define AC_PLAIN   50
#define AC_QUEUED  20
#define AC_FAIL_AT 5

static _Atomic uint64_t ac_calls;

static tr_status ac_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  atomic_fetch_add_explicit(&ac_calls, 1, memory_order_relaxed);
  return tr_msg_tag(msg) == T_FAIL ? TR_EFAIL : TR_OK;
}

Test(sched, stats_balance_after_wait) {
  atomic_store(&ac_calls, 0);
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "ac", .behaviour = ac_behaviour};
  tr_ref plain = spawn(sys, &spec, NULL), fails = spawn(sys, &spec, NULL),
         stopped = spawn(sys, &spec, NULL);
  for (unsigned i = 0; i < AC_PLAIN; i++)
    OK(tr_send(ctx, plain, T_DATA));
  for (unsigned i = 1; i <= AC_QUEUED; i++) {
    OK(tr_send(ctx, fails, i == AC_FAIL_AT ? T_FAIL : T_DATA));
    OK(tr_send(ctx, stopped, T_DATA));
  }
  OK(tr_stop(ctx, stopped));
  OK(tr_stop(ctx, stopped)); /* a pending request: idempotent */
  OK(tr_system_start(sys));
  WAIT(sys);

  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, AC_PLAIN + 2 * AC_QUEUED, "sent %llu (stop requests are not messages)",
               (unsigned long long)s.sent);
  cr_assert_eq(s.handled, AC_PLAIN + AC_FAIL_AT - 1);
  cr_assert_eq(s.dead_letters[TR_DEAD_FAILED], 1);
  cr_assert_eq(s.dead_letters[TR_DEAD_STOPPED], (AC_QUEUED - AC_FAIL_AT) + AC_QUEUED);
  cr_assert_eq(s.dead_letters[TR_DEAD_STALE], 0);
  cr_assert_eq(s.dead_letters[TR_DEAD_SHUTDOWN], 0);
  assert_conserved(sys);
  cr_assert_eq(atomic_load(&ac_calls), AC_PLAIN + AC_FAIL_AT);
  cr_assert_eq(s.actors_spawned, 3);
  cr_assert_eq(s.actors_stopped, 2);
  cr_assert_eq(s.actors_live, 1);
  tr_system_free(sys);
}

/* ================================================================ stopping */

static _Atomic uint64_t st_finis, st_handled, st_after_stop;

static void st_fini(void *state) {
  (void)state;
  atomic_fetch_add_explicit(&st_finis, 1, memory_order_relaxed);
}

typedef struct st_state {
  bool stopping;
} st_state;

static tr_status st_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  st_state *s = state;
  if (s->stopping)
    atomic_fetch_add_explicit(&st_after_stop, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&st_handled, 1, memory_order_relaxed);
  switch (tr_msg_tag(msg)) {
  case T_STOP_SELF: {
    s->stopping = true;
    tr_status st = tr_stop(ctx, tr_self(ctx));
    EXPECT(st == TR_OK);
    return st;
  }
  case T_FAIL:
    return TR_EFAIL;
  default:
    return TR_OK;
  }
}

static const tr_actor_spec st_spec = {
    .name = "st", .behaviour = st_behaviour, .state_size = sizeof(st_state), .fini = st_fini};

static void st_reset(void) {
  reset_bad();
  atomic_store(&st_finis, 0);
  atomic_store(&st_handled, 0);
  atomic_store(&st_after_stop, 0);
}

/* After an actor is gone: sends and stops give TR_ESTALE, each send counted
 * as a STALE dead letter, and its fini ran exactly once. */
static void assert_gone(tr_system *sys, tr_ref r) {
  tr_ctx *ctx = tr_system_ctx(sys);
  uint64_t stale = stats(sys).dead_letters[TR_DEAD_STALE];
  EXPECT_ST(tr_send(ctx, r, T_DATA), TR_ESTALE);
  EXPECT_ST(tr_send_uint(ctx, r, T_DATA, 7), TR_ESTALE);
  EXPECT_ST(tr_send_str(ctx, r, T_DATA, "x", 1), TR_ESTALE);
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_STALE], stale + 3);
  EXPECT_ST(tr_stop(ctx, r), TR_ESTALE);
  tr_actor_stats as;
  EXPECT_ST(tr_actor_stats_get(ctx, r, &as), TR_ESTALE);
  cr_assert_eq(atomic_load(&st_finis), 1, "fini ran %llu times",
               (unsigned long long)atomic_load(&st_finis));
}

Test(sched, stop_from_outside) {
  st_reset();
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref a = spawn(sys, &st_spec, NULL);
  OK(tr_system_start(sys));
  for (unsigned i = 0; i < 10; i++)
    OK(tr_send(ctx, a, T_DATA));
  WAIT(sys);
  cr_assert_eq(atomic_load(&st_handled), 10);
  cr_assert_eq(atomic_load(&st_finis), 0);
  OK(tr_stop(ctx, a));
  WAIT(sys);
  assert_gone(sys, a);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.actors_stopped, 1);
  cr_assert_eq(s.actors_live, 0);
  cr_assert_eq(s.dead_letters[TR_DEAD_STOPPED], 0);
  assert_conserved(sys);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&st_finis), 1, "fini ran again at free");
  ASSERT_NO_BAD();
}

Test(sched, stop_self_from_inside) {
  st_reset();
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref a = spawn(sys, &st_spec, NULL);
  /* Queued before start, so the order is certain: 3 handled, then the stop
   * (handled too: it returned OK), then 7 queued behind it. */
  for (unsigned i = 0; i < 3; i++)
    OK(tr_send(ctx, a, T_DATA));
  OK(tr_send(ctx, a, T_STOP_SELF));
  for (unsigned i = 0; i < 7; i++)
    OK(tr_send(ctx, a, T_DATA));
  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&st_handled), 4);
  cr_assert_eq(atomic_load(&st_after_stop), 0, "the actor ran after stopping itself");
  assert_gone(sys, a);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.handled, 4);
  cr_assert_eq(s.dead_letters[TR_DEAD_STOPPED], 7);
  cr_assert_eq(s.dead_letters[TR_DEAD_FAILED], 0);
  assert_conserved(sys);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&st_finis), 1, "fini ran again at free");
}

Test(sched, stop_drops_mail_queued_behind_it) {
  st_reset();
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref a = spawn(sys, &st_spec, NULL);
  for (unsigned i = 0; i < 50; i++)
    OK(tr_send(ctx, a, T_DATA));
  OK(tr_stop(ctx, a));
  /* Still accepted: the actor is live until it runs the stop. */
  OK(tr_send(ctx, a, T_DATA));
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(atomic_load(&st_handled), 0, "a stop requested before any run let %llu through",
               (unsigned long long)atomic_load(&st_handled));
  assert_gone(sys, a);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.dead_letters[TR_DEAD_STOPPED], 51);
  cr_assert_eq(s.handled, 0);
  assert_conserved(sys);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&st_finis), 1);
}

Test(sched, failing_behaviour_stops_actor) {
  st_reset();
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref a = spawn(sys, &st_spec, NULL);
  tr_ref b = spawn(sys, &st_spec, NULL); /* stays alive */
  OK(tr_send(ctx, a, T_DATA));
  OK(tr_send(ctx, a, T_DATA));
  OK(tr_send(ctx, a, T_FAIL));
  for (unsigned i = 0; i < 3; i++)
    OK(tr_send(ctx, a, T_DATA));
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(atomic_load(&st_handled), 3, "behaviour calls: 2 OK + the failing one");
  assert_gone(sys, a);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.handled, 2);
  cr_assert_eq(s.dead_letters[TR_DEAD_FAILED], 1);
  cr_assert_eq(s.dead_letters[TR_DEAD_STOPPED], 3);
  cr_assert_eq(s.actors_live, 1);
  assert_conserved(sys);
  /* The other actor is unaffected. */
  OK(tr_send(ctx, b, T_DATA));
  WAIT(sys);
  cr_assert_eq(atomic_load(&st_handled), 4);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&st_finis), 2, "b's fini runs at free");
}

/* Stopping while a behaviour runs: the actor stops after that message. */
static _Atomic bool sb_entered, sb_release;

static tr_status sb_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  atomic_fetch_add_explicit(&st_handled, 1, memory_order_relaxed);
  if (tr_msg_tag(msg) == T_BLOCK) {
    atomic_store(&sb_entered, true);
    double give_up = now_s() + 10;
    while (!atomic_load(&sb_release) && EXPECT(now_s() < give_up))
      sched_yield();
  }
  return TR_OK;
}

Test(sched, stop_while_running_finishes_current_message) {
  st_reset();
  atomic_store(&sb_entered, false);
  atomic_store(&sb_release, false);
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "sb", .behaviour = sb_behaviour, .fini = st_fini};
  tr_ref a = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_send(ctx, a, T_BLOCK));
  while (!atomic_load(&sb_entered))
    sched_yield();
  for (unsigned i = 0; i < 20; i++)
    OK(tr_send(ctx, a, T_DATA));
  OK(tr_stop(ctx, a));
  atomic_store(&sb_release, true);
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&st_handled), 1, "%llu messages handled after the stop request",
               (unsigned long long)atomic_load(&st_handled) - 1);
  assert_gone(sys, a);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.dead_letters[TR_DEAD_STOPPED], 20);
  assert_conserved(sys);
  tr_system_free(sys);
}

/* tr_system_stop with mail queued: nothing is lost. With batch 1, the one
 * worker handles BLOCK, which holds it until the system is stopping (probed
 * with tr_spawn, which answers TR_ESTATE then; its init always fails, so a
 * probe never creates an actor); the mail behind BLOCK is never handled. */
static tr_status probe_init(void *state, const void *arg) {
  (void)state;
  (void)arg;
  return TR_EFAIL;
}

static tr_status probe_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  (void)msg;
  return TR_OK;
}

static const tr_actor_spec probe_spec = {
    .name = "probe", .behaviour = probe_behaviour, .init = probe_init};

static tr_status hold_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  atomic_fetch_add_explicit(&st_handled, 1, memory_order_relaxed);
  if (tr_msg_tag(msg) != T_BLOCK)
    return TR_OK;
  atomic_store(&sb_entered, true);
  double give_up = now_s() + 10;
  tr_ref r;
  tr_status st;
  while ((st = tr_spawn(ctx, &probe_spec, NULL, &r)) == TR_EINIT && EXPECT(now_s() < give_up))
    sched_yield();
  EXPECT(st == TR_ESTATE || st == TR_EINIT);
  return TR_OK;
}

Test(sched, system_stop_keeps_queued_mail_counted) {
  st_reset();
  atomic_store(&sb_entered, false);
  tr_system *sys = new_system(1, 1);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "hold", .behaviour = hold_behaviour, .fini = st_fini};
  tr_ref a = spawn(sys, &spec, NULL);
  tr_ref idle = spawn(sys, &st_spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_send(ctx, a, T_BLOCK));
  while (!atomic_load(&sb_entered))
    sched_yield();
  for (unsigned i = 0; i < 30; i++)
    OK(tr_send(ctx, a, T_DATA));
  OK(tr_system_stop(sys));
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&st_handled), 1);
  OK(tr_system_wait(sys)); /* stopped: returns at once */

  /* Before free: every accepted message is handled or still queued. */
  tr_system_stats s = stats(sys);
  tr_actor_stats as = actor_stats(sys, a);
  cr_assert_eq(as.received, 31);
  cr_assert_eq(as.handled, 1);
  cr_assert_eq(as.depth, 30);
  cr_assert_eq(s.sent, 31);
  cr_assert_eq(s.handled, 1);
  cr_assert_eq(s.sent, s.handled + s.dead_letters[TR_DEAD_STOPPED] +
                           s.dead_letters[TR_DEAD_FAILED] + as.depth);
  cr_assert_eq(s.actors_spawned, 2, "a failed probe spawn was counted");
  cr_assert_eq(s.actors_live, 2);
  /* A stopped system cannot be restarted, and takes no new actors. */
  EXPECT_ST(tr_system_start(sys), TR_ESTATE);
  tr_ref r;
  EXPECT_ST(tr_spawn(ctx, &st_spec, NULL, &r), TR_ESTATE);
  cr_assert_eq(atomic_load(&st_finis), 0);
  (void)idle;
  tr_system_free(sys); /* fini of both live actors; the 30 become SHUTDOWN */
  cr_assert_eq(atomic_load(&st_finis), 2);
}

/* ================================================================ mixed senders */

/* One hot counter gets messages from threads and actors at the same time;
 * the threads also feed the actors, so worker sends and external sends hit
 * the same mailboxes concurrently. */
#define MX_ACTORS  4
#define MX_THREADS 4
#define MX_MSGS    500

static _Atomic uint64_t mx_count, mx_sum;
static tr_ref mx_counter;
static tr_ref mx_relays[MX_ACTORS];

static tr_status mx_counter_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  uint64_t v;
  if (!EXPECT(tr_msg_get_uint(msg, &v) == TR_OK))
    return TR_EINVAL;
  atomic_fetch_add_explicit(&mx_count, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(&mx_sum, v, memory_order_relaxed);
  return TR_OK;
}

/* A relay forwards what it gets to the counter, from its worker. */
static tr_status mx_relay_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  uint64_t v;
  if (!EXPECT(tr_msg_get_uint(msg, &v) == TR_OK))
    return TR_EINVAL;
  tr_status st = tr_send_uint(ctx, mx_counter, T_DATA, v);
  EXPECT(st == TR_OK);
  return st;
}

static tr_status mx_send_one(tr_ctx *ctx, unsigned sender, uint64_t seq) {
  tr_status st = tr_send_uint(ctx, mx_counter, T_DATA, seq + 1);
  if (st == TR_OK)
    st = tr_send_uint(ctx, mx_relays[(sender + seq) % MX_ACTORS], T_DATA, seq + 1);
  return st;
}

static void mixed_senders(unsigned threads) {
  reset_bad();
  atomic_store(&mx_count, 0);
  atomic_store(&mx_sum, 0);
  tr_system *sys = new_system(threads, 0);
  tr_actor_spec cspec = {.name = "mx-counter", .behaviour = mx_counter_behaviour};
  tr_actor_spec rspec = {.name = "mx-relay", .behaviour = mx_relay_behaviour};
  mx_counter = spawn(sys, &cspec, NULL);
  for (unsigned i = 0; i < MX_ACTORS; i++)
    mx_relays[i] = spawn(sys, &rspec, NULL);
  OK(tr_system_start(sys));
  pthread_barrier_t go;
  cr_assert_eq(pthread_barrier_init(&go, NULL, MX_THREADS + 1), 0);
  sender_thread ts[MX_THREADS];
  start_sender_threads(ts, MX_THREADS, sys, 0, MX_MSGS, mx_send_one, &go);
  pthread_barrier_wait(&go);
  join_sender_threads(ts, MX_THREADS);
  pthread_barrier_destroy(&go);
  WAIT(sys);
  ASSERT_NO_BAD();
  /* Each thread sends 1..MX_MSGS directly and the same again via relays. */
  uint64_t n = 2ull * MX_THREADS * MX_MSGS;
  cr_assert_eq(atomic_load(&mx_count), n, "counter got %llu of %llu",
               (unsigned long long)atomic_load(&mx_count), (unsigned long long)n);
  cr_assert_eq(atomic_load(&mx_sum), 2ull * MX_THREADS * MX_MSGS * (MX_MSGS + 1) / 2);
  tr_actor_stats as = actor_stats(sys, mx_counter);
  cr_assert_eq(as.received, n);
  cr_assert_eq(as.handled, n);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, n + (uint64_t)MX_THREADS * MX_MSGS);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(sched, external_and_worker_sends_concurrently_2_workers) { mixed_senders(2); }
Test(sched, external_and_worker_sends_concurrently_8_workers) { mixed_senders(8); }

/* ================================================================ spawn, become */

/* A parent spawns a child from inside its behaviour and pings it; the child
 * replies to the sender; the parent records the reply. */
static _Atomic uint64_t sp_parent_id, sp_child_id, sp_ping_sender, sp_self_in_child, sp_pongs;
static _Atomic uint64_t sp_child_inits;

typedef struct sp_child {
  uint64_t magic;
} sp_child;

static tr_status sp_child_init(void *state, const void *arg) {
  ((sp_child *)state)->magic = *(const uint64_t *)arg;
  atomic_fetch_add_explicit(&sp_child_inits, 1, memory_order_relaxed);
  return TR_OK;
}

static tr_status sp_child_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  sp_child *c = state;
  if (!EXPECT(tr_msg_tag(msg) == T_PING))
    return TR_EINVAL;
  atomic_store(&sp_ping_sender, tr_msg_sender(msg).id);
  atomic_store(&sp_self_in_child, tr_self(ctx).id);
  tr_status st = tr_send_uint(ctx, tr_msg_sender(msg), T_PONG, c->magic);
  EXPECT(st == TR_OK);
  return st;
}

static tr_status sp_parent_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  switch (tr_msg_tag(msg)) {
  case T_GO: {
    EXPECT(tr_ref_is_none(tr_msg_sender(msg))); /* sent from outside */
    atomic_store(&sp_parent_id, tr_self(ctx).id);
    tr_actor_spec spec = {.name = "sp-child",
                          .behaviour = sp_child_behaviour,
                          .state_size = sizeof(sp_child),
                          .init = sp_child_init};
    uint64_t magic = 0xC0FFEE;
    tr_ref child;
    tr_status st = tr_spawn(ctx, &spec, &magic, &child);
    if (!EXPECT(st == TR_OK))
      return st;
    atomic_store(&sp_child_id, child.id);
    st = tr_send(ctx, child, T_PING);
    EXPECT(st == TR_OK);
    return st;
  }
  case T_PONG: {
    uint64_t v;
    if (!EXPECT(tr_msg_get_uint(msg, &v) == TR_OK) || !EXPECT(v == 0xC0FFEE) ||
        !EXPECT(tr_msg_sender(msg).id == atomic_load(&sp_child_id)))
      return TR_EINVAL;
    atomic_fetch_add(&sp_pongs, 1);
    return TR_OK;
  }
  default:
    EXPECT(false);
    return TR_EINVAL;
  }
}

Test(sched, spawn_inside_and_outside) {
  reset_bad();
  atomic_store(&sp_pongs, 0);
  atomic_store(&sp_child_inits, 0);
  tr_system *sys = new_system(2, 0);
  tr_actor_spec pspec = {.name = "sp-parent", .behaviour = sp_parent_behaviour};
  tr_ref before = spawn(sys, &pspec, NULL); /* outside, before start */
  OK(tr_system_start(sys));
  tr_ref after = spawn(sys, &pspec, NULL); /* outside, while running */
  cr_assert(!tr_ref_eq(before, after));
  OK(tr_send(tr_system_ctx(sys), before, T_GO));
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&sp_pongs), 1);
  cr_assert_eq(atomic_load(&sp_parent_id), before.id, "tr_self differs from the spawned ref");
  cr_assert_eq(atomic_load(&sp_ping_sender), before.id, "tr_msg_sender is not the parent");
  cr_assert_eq(atomic_load(&sp_self_in_child), atomic_load(&sp_child_id));
  OK(tr_send(tr_system_ctx(sys), after, T_GO));
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&sp_pongs), 2);
  cr_assert_eq(atomic_load(&sp_parent_id), after.id);
  cr_assert_eq(atomic_load(&sp_child_inits), 2);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.actors_spawned, 4);
  cr_assert_eq(s.actors_live, 4);
  assert_conserved(sys);
  tr_system_free(sys);
}

/* tr_become: the behaviour that handles each message is logged. */
#define BE_MSGS 6
static _Atomic char be_log[BE_MSGS + 1];
static _Atomic unsigned be_n;

static tr_status be_second(tr_ctx *ctx, void *state, const tr_msg *msg);

static tr_status be_first(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  unsigned i = atomic_fetch_add(&be_n, 1);
  if (i < BE_MSGS)
    atomic_store(&be_log[i], 'A');
  if (tr_msg_tag(msg) == T_SWITCH) {
    tr_status st = tr_become(ctx, be_second);
    EXPECT(st == TR_OK);
    return st;
  }
  return TR_OK;
}

static tr_status be_second(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  unsigned i = atomic_fetch_add(&be_n, 1);
  if (i < BE_MSGS)
    atomic_store(&be_log[i], 'B');
  if (tr_msg_tag(msg) == T_SWITCH) {
    tr_status st = tr_become(ctx, be_first);
    EXPECT(st == TR_OK);
    return st;
  }
  return TR_OK;
}

Test(sched, become_switches_for_next_message) {
  reset_bad();
  for (unsigned i = 0; i <= BE_MSGS; i++)
    atomic_store(&be_log[i], 0);
  atomic_store(&be_n, 0);
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "be", .behaviour = be_first};
  tr_ref a = spawn(sys, &spec, NULL);
  /* A: data, switch | B: data, data, switch | A: data */
  uint32_t tags[BE_MSGS] = {T_DATA, T_SWITCH, T_DATA, T_DATA, T_SWITCH, T_DATA};
  for (unsigned i = 0; i < BE_MSGS; i++)
    OK(tr_send(ctx, a, tags[i]));
  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  char got[BE_MSGS + 1];
  for (unsigned i = 0; i <= BE_MSGS; i++)
    got[i] = atomic_load(&be_log[i]);
  cr_assert_str_eq(got, "AABBBA");
  /* The switch persists across runs: the next message, in a later run. */
  OK(tr_send(ctx, a, T_DATA));
  WAIT(sys);
  cr_assert_eq(atomic_load(&be_n), BE_MSGS + 1);
  tr_system_free(sys);
}

/* ================================================================ idle CPU */

Test(sched, idle_system_uses_no_cpu) {
  tr_system *sys = new_system(2, 0);
  tr_actor_spec spec = {.name = "ac", .behaviour = ac_behaviour};
  tr_ref a = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  /* Some work first, so the workers have been busy and must go back to
   * sleep, not merely never have woken. */
  for (unsigned i = 0; i < 1000; i++)
    OK(tr_send(tr_system_ctx(sys), a, T_DATA));
  WAIT(sys);
  sleep_ms(50);

  double cpu0 = cpu_s(), wall0 = now_s();
  sleep_ms(300);
  double cpu = cpu_s() - cpu0, wall = now_s() - wall0;
  cr_log_info("idle: %.2f ms CPU over %.0f ms", cpu * 1e3, wall * 1e3);
  cr_assert_lt(cpu, 0.10 * wall, "an idle system used %.1f ms of CPU in %.0f ms (%.0f%%)",
               cpu * 1e3, wall * 1e3, 100 * cpu / wall);
  tr_system_stats s = stats(sys);
  cr_assert_geq(s.parks, 2, "workers never parked");
  tr_system_free(sys);
}
