/*
 * stress.c - message conservation, per-sender order and one-thread-per-actor
 * under load, as a plain program (so it also runs under ThreadSanitizer,
 * which Criterion cannot host: Snaipe/Criterion#274).
 *
 * R receiver actors; S sender actors and T sender threads each send M
 * messages [sender, seq] to receivers picked by a seeded PRNG, in bursts
 * large enough to spill past the rings. Each receiver checks, per sender,
 * that seq strictly increases, and checks with an atomic flag that no other
 * thread is inside its behaviour. At the end every message must have been
 * handled exactly once (sum of per-receiver counts == S*M + T*M), and the
 * system's own counters must agree.
 *
 *   stress [-w workers] [-r receivers] [-s sender actors] [-t sender threads]
 *          [-m messages per sender] [-x seed]
 * Prints "stress: N passed, N failed"; exits non-zero on any failure.
 */
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <troupe.h>

#include "check.h"

enum { GO = 1, DATA, MORE };

typedef struct config {
  unsigned workers, receivers, sactors, sthreads;
  uint64_t msgs, seed;
} config;

typedef struct shared {
  config cfg;
  tr_ref *receivers;
  _Atomic uint64_t received, fifo_violations, overlap_violations, decode_errors;
} shared;

static shared g;

/* ------------------------------------------------------------ receiver */

typedef struct receiver {
  _Atomic int inside;
  uint64_t count;
  int64_t last[]; /* per sender: last seq seen */
} receiver;

static size_t nsenders(void) { return (size_t)g.cfg.sactors + g.cfg.sthreads; }

static tr_status receiver_init(void *state, const void *arg) {
  (void)arg;
  receiver *r = state;
  for (size_t i = 0; i < nsenders(); i++)
    r->last[i] = -1;
  return TR_OK;
}

static tr_status receiver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  receiver *r = state;
  if (atomic_exchange(&r->inside, 1) != 0)
    atomic_fetch_add(&g.overlap_violations, 1);
  tr_val v[2];
  size_t n;
  uint64_t sender, seq;
  if (tr_msg_get_vals(msg, v, 2, &n) != TR_OK || n != 2 || tr_val_get_uint(&v[0], &sender) ||
      tr_val_get_uint(&v[1], &seq) || sender >= nsenders()) {
    atomic_fetch_add(&g.decode_errors, 1);
  } else {
    if ((int64_t)seq <= r->last[sender])
      atomic_fetch_add(&g.fifo_violations, 1);
    r->last[sender] = (int64_t)seq;
  }
  r->count++;
  atomic_fetch_add_explicit(&g.received, 1, memory_order_relaxed);
  atomic_store(&r->inside, 0);
  return TR_OK;
}

/* ------------------------------------------------------------ senders */

/* Send one burst of up to `burst` messages from sender `id`; returns the
 * number of send errors. */
static uint64_t burst(tr_ctx *ctx, uint64_t id, uint64_t *seq, uint64_t *rng, uint64_t n) {
  uint64_t errors = 0;
  for (uint64_t i = 0; i < n; i++) {
    tr_val v[2] = {tr_uint(id), tr_uint((*seq)++)};
    tr_ref to = g.receivers[check_rand(rng) % g.cfg.receivers];
    errors += tr_send_vals(ctx, to, DATA, v, 2) != TR_OK;
  }
  return errors;
}

typedef struct sender {
  uint64_t id, seq, rng;
} sender;

static _Atomic uint64_t send_errors;

static tr_status sender_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  sender *s = state;
  if (tr_msg_tag(msg) == GO && tr_msg_get_uint(msg, &s->id) != TR_OK)
    return TR_EDECODE;
  if (tr_msg_tag(msg) == GO)
    s->rng = g.cfg.seed * 2654435761u + s->id + 1;
  uint64_t left = g.cfg.msgs - s->seq;
  uint64_t n = left < 64 ? left : 64;
  atomic_fetch_add(&send_errors, burst(ctx, s->id, &s->seq, &s->rng, n));
  if (s->seq < g.cfg.msgs)
    return tr_send(ctx, tr_self(ctx), MORE);
  return TR_OK;
}

typedef struct thread_arg {
  tr_system *sys;
  uint64_t id;
} thread_arg;

static void *sender_thread(void *p) {
  thread_arg *a = p;
  uint64_t seq = 0, rng = g.cfg.seed * 2654435761u + a->id + 1;
  while (seq < g.cfg.msgs) {
    uint64_t left = g.cfg.msgs - seq;
    atomic_fetch_add(&send_errors,
                     burst(tr_system_ctx(a->sys), a->id, &seq, &rng, left < 256 ? left : 256));
    sched_yield();
  }
  return NULL;
}

/* ------------------------------------------------------------ main */

int main(int argc, char **argv) {
  config c = {.workers = 2, .receivers = 16, .sactors = 8, .sthreads = 2, .msgs = 20000, .seed = 1};
  int opt;
  while ((opt = getopt(argc, argv, "w:r:s:t:m:x:")) != -1) {
    unsigned long long v = strtoull(optarg, NULL, 10);
    switch (opt) {
    case 'w':
      c.workers = (unsigned)v;
      break;
    case 'r':
      c.receivers = (unsigned)v;
      break;
    case 's':
      c.sactors = (unsigned)v;
      break;
    case 't':
      c.sthreads = (unsigned)v;
      break;
    case 'm':
      c.msgs = v;
      break;
    case 'x':
      c.seed = v;
      break;
    default:
      fprintf(stderr, "usage: stress [-w workers] [-r receivers] [-s sender actors] "
                      "[-t sender threads] [-m msgs per sender] [-x seed]\n");
      return 2;
    }
  }
  if (c.receivers == 0) {
    fprintf(stderr, "stress: need at least one receiver\n");
    return 2;
  }
  g.cfg = c;
  printf("stress: workers %u, receivers %u, sender actors %u, sender threads %u, "
         "%llu msgs each, seed %llu\n",
         c.workers, c.receivers, c.sactors, c.sthreads, (unsigned long long)c.msgs,
         (unsigned long long)c.seed);

  tr_system *sys;
  tr_system_config sc = {.threads = c.workers};
  if (tr_system_new(&sc, &sys) != TR_OK)
    return 1;
  tr_ctx *ctx = tr_system_ctx(sys);
  g.receivers = calloc(c.receivers, sizeof *g.receivers);
  tr_actor_spec rspec = {.name = "receiver",
                         .behaviour = receiver_behaviour,
                         .state_size = sizeof(receiver) + nsenders() * sizeof(int64_t),
                         .init = receiver_init};
  tr_actor_spec sspec = {
      .name = "sender", .behaviour = sender_behaviour, .state_size = sizeof(sender)};
  int setup_ok = 1;
  for (unsigned i = 0; i < c.receivers; i++)
    setup_ok &= tr_spawn(ctx, &rspec, NULL, &g.receivers[i]) == TR_OK;
  setup_ok &= tr_system_start(sys) == TR_OK;
  for (unsigned i = 0; i < c.sactors; i++) {
    tr_ref s;
    setup_ok &= tr_spawn(ctx, &sspec, NULL, &s) == TR_OK;
    setup_ok &= tr_send_uint(ctx, s, GO, i) == TR_OK;
  }
  pthread_t *tids = calloc(c.sthreads + 1, sizeof *tids);
  thread_arg *targs = calloc(c.sthreads + 1, sizeof *targs);
  for (unsigned i = 0; i < c.sthreads; i++) {
    targs[i] = (thread_arg){sys, c.sactors + i};
    setup_ok &= pthread_create(&tids[i], NULL, sender_thread, &targs[i]) == 0;
  }
  for (unsigned i = 0; i < c.sthreads; i++)
    pthread_join(tids[i], NULL);
  setup_ok &= tr_system_wait(sys) == TR_OK;
  expect(setup_ok, "set-up calls all returned TR_OK", setup_ok, 1);

  uint64_t want = (uint64_t)nsenders() * c.msgs;
  tr_system_stats st;
  expect(tr_system_stats_get(sys, &st) == TR_OK, "stats", 0, 0);
  expect(atomic_load(&send_errors) == 0, "send errors", atomic_load(&send_errors), 0);
  expect(atomic_load(&g.received) == want, "messages received", atomic_load(&g.received), want);
  expect(atomic_load(&g.fifo_violations) == 0, "per-sender order violations",
         atomic_load(&g.fifo_violations), 0);
  expect(atomic_load(&g.overlap_violations) == 0, "behaviour ran on two threads at once",
         atomic_load(&g.overlap_violations), 0);
  expect(atomic_load(&g.decode_errors) == 0, "payload decode errors", atomic_load(&g.decode_errors),
         0);
  /* The runtime counted the DATA messages plus the senders' GO and MORE. */
  expect(st.sent >= want + c.sactors, "runtime: messages sent", st.sent, want + c.sactors);
  expect(st.sent == st.handled, "runtime: sent == handled", st.sent, st.handled);
  uint64_t dead = 0;
  for (unsigned r = 0; r < TR_DEAD_REASON_COUNT; r++)
    dead += st.dead_letters[r];
  expect(dead == 0, "dead letters", dead, 0);
  uint64_t total = 0;
  for (unsigned i = 0; i < c.receivers; i++) {
    tr_actor_stats as;
    if (tr_actor_stats_get(ctx, g.receivers[i], &as) == TR_OK) {
      total += as.handled;
      expect(as.received == as.handled && as.depth == 0, "receiver mailbox drained", as.received,
             as.handled);
    }
  }
  expect(total == want, "sum of receivers' mailbox counters", total, want);
  printf("stress: runs %llu, steals %llu, parks %llu\n", (unsigned long long)st.runs,
         (unsigned long long)st.steals, (unsigned long long)st.parks);

  tr_system_free(sys);
  free(g.receivers);
  free(tids);
  free(targs);
  return check_report("stress");
}
