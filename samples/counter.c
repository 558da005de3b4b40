/*
 * counter - the Counter actor of the concurrency primer, on troupe.
 *
 * One counter actor holds a count that nothing else can touch. Producers
 * send it `increment` messages: some producers are actors (each sends its
 * share in chunks, re-sending itself a `continue` so it never hogs a worker),
 * some are plain threads outside the runtime. When all of them are done, a
 * reporter actor asks the counter with `get`; the counter replies to the
 * sender of that message with its count, and the sample checks it.
 *
 *   counter [-t threads] [-n increments per producer] [-a producer actors]
 *           [-p producer threads]
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <troupe.h>

enum { INCREMENT = 1, GET, COUNT, START, CONTINUE, ASK };

#define CHUNK 100

/* ---------------------------------------------------------------- counter */

typedef struct counter {
  uint64_t count;
} counter;

static tr_status counter_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  counter *c = state;
  switch (tr_msg_tag(msg)) {
  case INCREMENT:
    c->count++;
    return TR_OK;
  case GET: /* reply to whoever asked */
    return tr_send_uint(ctx, tr_msg_sender(msg), COUNT, c->count);
  default:
    return TR_EINVAL; /* an unknown message is a bug: fail the actor */
  }
}

/* ---------------------------------------------------------------- producer */

typedef struct producer {
  tr_ref counter;
  uint64_t remaining;
} producer;

static tr_status producer_init(void *state, const void *arg) {
  ((producer *)state)->counter = *(const tr_ref *)arg;
  return TR_OK;
}

static tr_status producer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  producer *p = state;
  tr_status st;

  if (tr_msg_tag(msg) == START && (st = tr_msg_get_uint(msg, &p->remaining)) != TR_OK)
    return st;
  uint64_t n = p->remaining < CHUNK ? p->remaining : CHUNK;
  for (uint64_t i = 0; i < n; i++)
    if ((st = tr_send(ctx, p->counter, INCREMENT)) != TR_OK)
      return st;
  p->remaining -= n;
  return p->remaining > 0 ? tr_send(ctx, tr_self(ctx), CONTINUE) : TR_OK;
}

/* ---------------------------------------------------------------- reporter */

typedef struct reporter {
  tr_ref counter;
  _Atomic uint64_t *result;
} reporter;

typedef struct reporter_arg {
  tr_ref counter;
  _Atomic uint64_t *result;
} reporter_arg;

static tr_status reporter_init(void *state, const void *arg) {
  const reporter_arg *a = arg;
  reporter *r = state;
  r->counter = a->counter;
  r->result = a->result;
  return TR_OK;
}

static tr_status reporter_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  reporter *r = state;
  uint64_t count;
  tr_status st;

  switch (tr_msg_tag(msg)) {
  case ASK:
    return tr_send(ctx, r->counter, GET);
  case COUNT:
    if ((st = tr_msg_get_uint(msg, &count)) != TR_OK)
      return st;
    atomic_store(r->result, count);
    return TR_OK;
  default:
    return TR_EINVAL;
  }
}

/* ---------------------------------------------------------------- threads */

typedef struct thread_arg {
  tr_system *sys;
  tr_ref counter;
  uint64_t n;
  tr_status status;
} thread_arg;

static void *producer_thread(void *p) {
  thread_arg *a = p;
  tr_ctx *ctx = tr_system_ctx(a->sys);
  a->status = TR_OK;
  for (uint64_t i = 0; i < a->n && a->status == TR_OK; i++)
    a->status = tr_send(ctx, a->counter, INCREMENT);
  return NULL;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int check(tr_status st, const char *what) {
  if (st != TR_OK)
    fprintf(stderr, "counter: %s: %s (%s)\n", what, tr_strerror(st), tr_status_name(st));
  return st != TR_OK;
}

int main(int argc, char **argv) {
  unsigned threads = 0, actors = 2, pthreads = 2;
  uint64_t n = 1000000;
  int opt;

  while ((opt = getopt(argc, argv, "t:n:a:p:h")) != -1) {
    switch (opt) {
    case 't':
      threads = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'n':
      n = strtoull(optarg, NULL, 10);
      break;
    case 'a':
      actors = (unsigned)strtoul(optarg, NULL, 10);
      break;
    case 'p':
      pthreads = (unsigned)strtoul(optarg, NULL, 10);
      break;
    default:
      fprintf(stderr,
              "usage: %s [-t threads] [-n increments per producer] "
              "[-a producer actors] [-p producer threads]\n",
              argv[0]);
      return opt == 'h' ? 0 : 2;
    }
  }

  tr_system *sys;
  tr_system_config cfg = {.threads = threads};
  if (check(tr_system_new(&cfg, &sys), "system"))
    return 1;
  tr_ctx *ctx = tr_system_ctx(sys);

  tr_actor_spec counter_spec = {
      .name = "counter", .behaviour = counter_behaviour, .state_size = sizeof(counter)};
  tr_actor_spec producer_spec = {.name = "producer",
                                 .behaviour = producer_behaviour,
                                 .state_size = sizeof(producer),
                                 .init = producer_init};
  tr_actor_spec reporter_spec = {.name = "reporter",
                                 .behaviour = reporter_behaviour,
                                 .state_size = sizeof(reporter),
                                 .init = reporter_init};
  tr_ref c, rep;
  _Atomic uint64_t result = UINT64_MAX;
  int bad = check(tr_spawn(ctx, &counter_spec, NULL, &c), "spawn counter");
  reporter_arg ra = {c, &result};
  bad |= check(tr_spawn(ctx, &reporter_spec, &ra, &rep), "spawn reporter");
  bad |= check(tr_system_start(sys), "start");

  double t0 = now();
  for (unsigned i = 0; i < actors && !bad; i++) {
    tr_ref p;
    bad |= check(tr_spawn(ctx, &producer_spec, &c, &p), "spawn producer");
    bad |= check(tr_send_uint(ctx, p, START, n), "start producer");
  }
  pthread_t *tids = calloc(pthreads ? pthreads : 1, sizeof *tids);
  thread_arg *targs = calloc(pthreads ? pthreads : 1, sizeof *targs);
  for (unsigned i = 0; i < pthreads && !bad; i++) {
    targs[i] = (thread_arg){sys, c, n, TR_OK};
    bad |= pthread_create(&tids[i], NULL, producer_thread, &targs[i]) != 0;
  }
  for (unsigned i = 0; i < pthreads; i++) {
    pthread_join(tids[i], NULL);
    bad |= check(targs[i].status, "producer thread send");
  }
  bad |= check(tr_system_wait(sys), "wait");
  double t1 = now();
  bad |= check(tr_send(ctx, rep, ASK), "ask");
  bad |= check(tr_system_wait(sys), "wait");

  uint64_t expected = n * (actors + pthreads);
  uint64_t got = atomic_load(&result);
  tr_actor_stats as = {0};
  tr_system_stats ss = {0};
  bad |= check(tr_actor_stats_get(ctx, c, &as), "counter stats");
  bad |= check(tr_system_stats_get(sys, &ss), "system stats");

  printf("counter: %u worker threads, %u producer actors + %u producer threads x %llu increments\n",
         tr_system_threads(sys), actors, pthreads, (unsigned long long)n);
  printf("count: %llu (expected %llu) %s\n", (unsigned long long)got, (unsigned long long)expected,
         got == expected ? "OK" : "WRONG");
  printf("time: %.3f s, %.2f M increments/s\n", t1 - t0, (double)expected / (t1 - t0) / 1e6);
  printf("counter mailbox: received %llu, handled %llu, spilled %llu, peak depth %llu\n",
         (unsigned long long)as.received, (unsigned long long)as.handled,
         (unsigned long long)as.spilled, (unsigned long long)as.peak_depth);
  printf("system: sent %llu, handled %llu, dead letters %llu, runs %llu, steals %llu, parks %llu\n",
         (unsigned long long)ss.sent, (unsigned long long)ss.handled,
         (unsigned long long)(ss.dead_letters[TR_DEAD_STALE] + ss.dead_letters[TR_DEAD_STOPPED] +
                              ss.dead_letters[TR_DEAD_FAILED]),
         (unsigned long long)ss.runs, (unsigned long long)ss.steals, (unsigned long long)ss.parks);
  free(tids);
  free(targs);
  tr_system_free(sys);
  return bad || got != expected;
}
