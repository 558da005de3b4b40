/*
 * churn.c - sends racing with stops: refs go stale under the senders' feet.
 *
 * V victim slots hold refs to live actors. Sender threads and sender actors
 * keep sending to whatever ref a slot holds; a killer thread keeps stopping
 * the actor in a random slot (tr_stop from outside, or a "stop yourself"
 * message) and spawning a replacement into the slot. Every send must return
 * TR_OK or TR_ESTALE, nothing may touch freed memory (run it under ASan and
 * TSan), and at the end the runtime's books must balance exactly:
 *   messages accepted == handled + dead letters (STOPPED)
 *   sends refused as stale == dead letters (STALE)
 *
 *   churn [-w workers] [-v victims] [-t sender threads] [-a sender actors]
 *         [-m messages per sender] [-k replacements]
 * Prints "churn: N passed, N failed"; exits non-zero on any failure.
 */
#include <getopt.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <troupe.h>

#include "check.h"

enum { DATA = 1, SUICIDE, GO, MORE };

static unsigned nvictims = 32;
static _Atomic uint64_t *slots; /* tr_ref ids */
static uint64_t per_sender = 20000;
static _Atomic uint64_t ok_sends, stale_sends, other_errors, fini_calls, handled_data;

static tr_status victim(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (tr_msg_tag(msg) == SUICIDE)
    return tr_stop(ctx, tr_self(ctx));
  atomic_fetch_add_explicit(&handled_data, 1, memory_order_relaxed);
  return TR_OK;
}

static void victim_fini(void *state) {
  (void)state;
  atomic_fetch_add(&fini_calls, 1);
}

static const tr_actor_spec victim_spec = {
    .name = "victim", .behaviour = victim, .state_size = 8, .fini = victim_fini};

static void count(tr_status st) {
  if (st == TR_OK)
    atomic_fetch_add_explicit(&ok_sends, 1, memory_order_relaxed);
  else if (st == TR_ESTALE)
    atomic_fetch_add_explicit(&stale_sends, 1, memory_order_relaxed);
  else
    atomic_fetch_add(&other_errors, 1);
}

static void send_some(tr_ctx *ctx, uint64_t *rng, uint64_t n) {
  for (uint64_t i = 0; i < n; i++) {
    tr_ref to = {atomic_load_explicit(&slots[check_rand(rng) % nvictims], memory_order_relaxed)};
    count(tr_send_uint(ctx, to, DATA, i));
  }
}

/* A sender actor: GO(seed), then bursts of 50 with MORE in between. */
typedef struct sender {
  uint64_t rng, sent;
} sender;

static tr_status sender_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  sender *s = state;
  if (tr_msg_tag(msg) == GO && tr_msg_get_uint(msg, &s->rng) != TR_OK)
    return TR_EDECODE;
  uint64_t n = per_sender - s->sent < 50 ? per_sender - s->sent : 50;
  send_some(ctx, &s->rng, n);
  s->sent += n;
  return s->sent < per_sender ? tr_send(ctx, tr_self(ctx), MORE) : TR_OK;
}

static void *sender_thread(void *p) {
  tr_system *sys = p;
  uint64_t rng = (uint64_t)(uintptr_t)&rng | 1;
  for (uint64_t done = 0; done < per_sender; done += 100) {
    send_some(tr_system_ctx(sys), &rng, 100);
    sched_yield();
  }
  return NULL;
}

int main(int argc, char **argv) {
  unsigned workers = 2, nthreads = 2, nactors = 4;
  uint64_t replacements = 2000;
  int opt;
  while ((opt = getopt(argc, argv, "w:v:t:a:m:k:")) != -1) {
    unsigned long long v = strtoull(optarg, NULL, 10);
    switch (opt) {
    case 'w':
      workers = (unsigned)v;
      break;
    case 'v':
      nvictims = v ? (unsigned)v : 1;
      break;
    case 't':
      nthreads = (unsigned)v;
      break;
    case 'a':
      nactors = (unsigned)v;
      break;
    case 'm':
      per_sender = v;
      break;
    case 'k':
      replacements = v;
      break;
    default:
      fprintf(stderr, "usage: churn [-w workers] [-v victims] [-t threads] [-a actors] "
                      "[-m msgs per sender] [-k replacements]\n");
      return 2;
    }
  }
  printf("churn: workers %u, victims %u, sender threads %u, sender actors %u, %llu msgs each, "
         "%llu replacements\n",
         workers, nvictims, nthreads, nactors, (unsigned long long)per_sender,
         (unsigned long long)replacements);
  slots = calloc(nvictims, sizeof *slots);

  tr_system *sys;
  tr_system_config cfg = {.threads = workers};
  if (tr_system_new(&cfg, &sys) != TR_OK)
    return 1;
  tr_ctx *ctx = tr_system_ctx(sys);
  int setup_ok = 1;
  uint64_t spawned = 0;
  for (unsigned i = 0; i < nvictims; i++) {
    tr_ref r;
    setup_ok &= tr_spawn(ctx, &victim_spec, NULL, &r) == TR_OK;
    atomic_store(&slots[i], r.id);
    spawned++;
  }
  setup_ok &= tr_system_start(sys) == TR_OK;
  tr_actor_spec sspec = {
      .name = "sender", .behaviour = sender_behaviour, .state_size = sizeof(sender)};
  for (unsigned i = 0; i < nactors; i++) {
    tr_ref s;
    setup_ok &= tr_spawn(ctx, &sspec, NULL, &s) == TR_OK;
    setup_ok &= tr_send_uint(ctx, s, GO, 0x9E3779B97F4A7C15ull * (i + 1)) == TR_OK;
  }
  pthread_t *t = calloc(nthreads + 1, sizeof *t);
  for (unsigned i = 0; i < nthreads; i++)
    setup_ok &= pthread_create(&t[i], NULL, sender_thread, sys) == 0;

  /* The killer: this thread. */
  uint64_t rng = 88172645463325252ull, stops = 0;
  for (uint64_t k = 0; k < replacements; k++) {
    unsigned i = (unsigned)(check_rand(&rng) % nvictims);
    tr_ref old = {atomic_load(&slots[i])};
    tr_status st = (k & 1) ? tr_stop(ctx, old) : tr_send(ctx, old, SUICIDE);
    if (st == TR_OK)
      stops++;
    else
      setup_ok &= st == TR_ESTALE; /* already stopped by an earlier SUICIDE */
    if (!(k & 1))
      count(st); /* the SUICIDE message was a send like any other */
    tr_ref fresh;
    setup_ok &= tr_spawn(ctx, &victim_spec, NULL, &fresh) == TR_OK;
    atomic_store(&slots[i], fresh.id);
    spawned++;
    if ((k & 15) == 0)
      sched_yield();
  }
  for (unsigned i = 0; i < nthreads; i++)
    pthread_join(t[i], NULL);
  setup_ok &= tr_system_wait(sys) == TR_OK;
  expect(setup_ok, "set-up calls", setup_ok, 1);

  tr_system_stats s;
  expect(tr_system_stats_get(sys, &s) == TR_OK, "stats", 0, 0);
  expect(atomic_load(&other_errors) == 0, "sends that failed with neither OK nor ESTALE",
         atomic_load(&other_errors), 0);
  expect(s.dead_letters[TR_DEAD_STALE] == atomic_load(&stale_sends),
         "stale sends == dead letters (STALE)", s.dead_letters[TR_DEAD_STALE],
         atomic_load(&stale_sends));
  expect(s.sent == s.handled + s.dead_letters[TR_DEAD_STOPPED] + s.dead_letters[TR_DEAD_FAILED],
         "sent == handled + dead letters (STOPPED + FAILED)", s.sent,
         s.handled + s.dead_letters[TR_DEAD_STOPPED] + s.dead_letters[TR_DEAD_FAILED]);
  expect(s.dead_letters[TR_DEAD_FAILED] == 0, "no failed handling", s.dead_letters[TR_DEAD_FAILED],
         0);
  expect(s.actors_spawned == spawned + nactors, "actors spawned", s.actors_spawned,
         spawned + nactors);
  /* Stopped victims: each stop request or SUICIDE that was accepted. */
  expect(s.actors_stopped >= stops / 2 && s.actors_stopped <= stops, "actors stopped",
         s.actors_stopped, stops);
  expect(atomic_load(&fini_calls) == s.actors_stopped, "fini ran once per stopped victim",
         atomic_load(&fini_calls), s.actors_stopped);
  printf("churn: %llu sends ok, %llu stale, %llu handled, %llu dead (stopped), %llu stopped\n",
         (unsigned long long)atomic_load(&ok_sends), (unsigned long long)atomic_load(&stale_sends),
         (unsigned long long)atomic_load(&handled_data),
         (unsigned long long)s.dead_letters[TR_DEAD_STOPPED], (unsigned long long)s.actors_stopped);
  tr_system_free(sys);
  expect(atomic_load(&fini_calls) == spawned, "fini ran once per victim after free",
         atomic_load(&fini_calls), spawned);
  free(slots);
  free(t);
  return check_report("churn");
}
