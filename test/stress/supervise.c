/*
 * supervise.c - supervision, monitors and links under load, as a plain
 * program so that it also runs under ThreadSanitizer.
 *
 * A root supervisor (one-for-one) has K workers and a nested one-for-all
 * supervisor with J workers. T outside threads send M DATA messages each,
 * spread over all workers. A worker fails on a DATA message whose sequence
 * number hashes to 0 mod F, so the number of failures is known in advance
 * whatever the interleaving. A watcher actor monitors every worker. L pairs
 * of plain actors are linked (half of the survivors trap exits) and one of
 * each pair fails. At the end, exactly:
 *   - every DATA message was handled or is a FAILED dead letter, and FAILED
 *     equals the failures the hash predicts;
 *   - restarts: one per failure at the root, J per failure in the nested
 *     supervisor (one-for-all);
 *   - no DOWN while workers only restart; after tr_sup_stop, exactly one
 *     DOWN per monitor, reason "shutdown";
 *   - each link: the non-trapping peer failed with the same reason (seen by
 *     a monitor on it), the trapping peer got one EXIT and lives;
 *   - conservation: sent == handled + STOPPED + FAILED + DROPPED_OLDEST.
 *
 *   supervise [-w workers] [-k root kids] [-j nested kids] [-t threads]
 *             [-m msgs per thread] [-f fail 1 in F] [-l link pairs]
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <troupe.h>

#include "check.h"

enum { DATA = 1, WATCH, FAIL_NOW, LINK, TRAP };

static uint64_t fail_one_in = 50;

static bool fails(uint64_t seq) {
  uint64_t x = seq * 0x9E3779B97F4A7C15ull;
  x ^= x >> 29;
  return x % fail_one_in == 0;
}

/* ------------------------------------------------------------ workers */

static _Atomic uint64_t data_handled;

static tr_status worker(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  uint64_t seq;
  if (tr_msg_tag(msg) != DATA || tr_msg_get_uint(msg, &seq) != TR_OK)
    return TR_OK;
  if (fails(seq))
    return tr_fail_str(ctx, "hash says fail") == TR_OK ? TR_OK : TR_EFAIL;
  atomic_fetch_add_explicit(&data_handled, 1, memory_order_relaxed);
  return TR_OK;
}

/* ------------------------------------------------------------ watcher */

#define MAXW 4096
static _Atomic unsigned downs_of[MAXW]; /* by monitor id */
static _Atomic uint64_t downs, downs_shutdown, downs_failed_same, exits_seen;

static tr_status watcher(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  uint64_t id;
  switch (tr_msg_tag(msg)) {
  case WATCH: {
    uint64_t target;
    if (tr_msg_get_uint(msg, &target) != TR_OK)
      return TR_EFAIL;
    return tr_monitor(ctx, (tr_ref){target}, &id);
  }
  case TR_TAG_DOWN: {
    tr_exit_info in;
    if (tr_msg_exit_info(msg, &in) != TR_OK || in.monitor >= MAXW)
      return TR_EFAIL;
    atomic_fetch_add(&downs_of[in.monitor], 1);
    atomic_fetch_add(&downs, 1);
    if (tr_reason_is(in.reason, in.reason_len, "shutdown"))
      atomic_fetch_add(&downs_shutdown, 1);
    if (in.failed && tr_reason_is(in.reason, in.reason_len, "link victim"))
      atomic_fetch_add(&downs_failed_same, 1);
    return TR_OK;
  }
  default:
    return TR_OK;
  }
}

/* ------------------------------------------------------------ links */

static tr_status linker(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  uint64_t peer;
  switch (tr_msg_tag(msg)) {
  case LINK:
    if (tr_msg_get_uint(msg, &peer) != TR_OK)
      return TR_EFAIL;
    return tr_link(ctx, (tr_ref){peer});
  case TRAP:
    return tr_trap_exits(ctx, true);
  case FAIL_NOW:
    return tr_fail_str(ctx, "link victim") == TR_OK ? TR_OK : TR_EFAIL;
  case TR_TAG_EXIT: {
    tr_exit_info in;
    if (tr_msg_exit_info(msg, &in) == TR_OK && in.failed &&
        tr_reason_is(in.reason, in.reason_len, "link victim"))
      atomic_fetch_add(&exits_seen, 1);
    return TR_OK;
  }
  default:
    return TR_OK;
  }
}

/* ------------------------------------------------------------ senders */

typedef struct sender {
  tr_system *sys;
  tr_ref *workers;
  unsigned nworkers;
  uint64_t first, count;
  _Atomic uint64_t sent;
} sender;

static void *send_thread(void *arg) {
  sender *s = arg;
  tr_ctx *ctx = tr_system_ctx(s->sys);
  for (uint64_t i = 0; i < s->count; i++) {
    uint64_t seq = s->first + i;
    tr_status st = tr_send_uint(ctx, s->workers[seq % s->nworkers], DATA, seq);
    if (st == TR_OK)
      atomic_fetch_add(&s->sent, 1);
  }
  return NULL;
}

#define KID(nm)                                                                                    \
  { .id = nm, .actor = {.name = nm, .behaviour = worker}, .restart = TR_RESTART_PERMANENT }

int main(int argc, char **argv) {
  unsigned workers = 2, kroot = 6, jnest = 3, threads = 2, pairs = 16;
  tr_sup_strategy strategy = TR_SUP_ONE_FOR_ONE;
  uint64_t msgs = 20000;
  int c;
  while ((c = getopt(argc, argv, "w:k:j:t:m:f:l:s:")) != -1) {
    switch (c) {
    case 'w':
      workers = (unsigned)atoi(optarg);
      break;
    case 'k':
      kroot = (unsigned)atoi(optarg);
      break;
    case 'j':
      jnest = (unsigned)atoi(optarg);
      break;
    case 't':
      threads = (unsigned)atoi(optarg);
      break;
    case 'm':
      msgs = strtoull(optarg, NULL, 10);
      break;
    case 'f':
      fail_one_in = strtoull(optarg, NULL, 10);
      break;
    case 'l':
      pairs = (unsigned)atoi(optarg);
      break;
    case 's':
      strategy = strcmp(optarg, "all") == 0    ? TR_SUP_ONE_FOR_ALL
                 : strcmp(optarg, "rest") == 0 ? TR_SUP_REST_FOR_ONE
                                               : TR_SUP_ONE_FOR_ONE;
      break;
    default:
      fprintf(stderr, "usage: supervise [-w workers] [-k root kids] [-j nested kids] [-t threads] "
                      "[-m msgs] [-f fail 1 in F] [-l link pairs] [-s one|all|rest]\n");
      return 2;
    }
  }
  if (kroot < 1 || kroot > 64 || jnest < 1 || jnest > 64 || threads < 1 || threads > 16 ||
      fail_one_in < 2 || pairs > 256) {
    fprintf(stderr, "supervise: option out of range\n");
    return 2;
  }
  printf("supervise: strategy %d, workers %u, root kids %u, nested kids %u, threads %u, %llu msgs "
         "each, fail "
         "1 in %llu, %u link pairs\n",
         (int)strategy, workers, kroot, jnest, threads, (unsigned long long)msgs,
         (unsigned long long)fail_one_in, pairs);

  tr_system *sys;
  tr_system_config cfg = {.threads = workers};
  if (tr_system_new(&cfg, &sys) != TR_OK || tr_system_start(sys) != TR_OK)
    return 1;
  tr_ctx *ctx = tr_system_ctx(sys);

  tr_child_spec nkids[64], rkids[65];
  for (unsigned i = 0; i < jnest; i++)
    nkids[i] = (tr_child_spec)KID("nested");
  tr_sup_spec nested = {.name = "nested",
                        .strategy = TR_SUP_ONE_FOR_ALL,
                        .intensity = 100000,
                        .period_ms = 1000,
                        .children = nkids,
                        .nchildren = jnest};
  for (unsigned i = 0; i < kroot; i++)
    rkids[i] = (tr_child_spec)KID("root");
  rkids[kroot] = (tr_child_spec){.id = "nested", .sup = &nested};
  tr_sup_spec root = {.name = "root",
                      .strategy = strategy,
                      .intensity = 100000,
                      .period_ms = 1000,
                      .children = rkids,
                      .nchildren = kroot + 1};
  tr_ref sup, refs[65];
  expect(tr_sup_start(ctx, &root, &sup, refs) == TR_OK, "tr_sup_start", 0, 0);

  /* DATA goes to the root's K workers; with one-for-all and rest-for-one
   * their failures also restart the nested supervisor (and so its whole
   * subtree, in place). */
  tr_ref *targets = refs;
  tr_actor_spec ws = {.name = "watcher", .behaviour = watcher};
  tr_ref w;
  expect(tr_spawn(ctx, &ws, NULL, &w) == TR_OK, "spawn watcher", 0, 0);
  for (unsigned i = 0; i < kroot; i++)
    expect(tr_send_uint(ctx, w, WATCH, refs[i].id) == TR_OK, "watch", i, 0);
  expect(tr_system_wait(sys) == TR_OK, "wait (monitors)", 0, 0);

  /* Link pairs: a_i fails; b_i does not trap for even i, traps for odd i. */
  tr_actor_spec ls = {.name = "linker", .behaviour = linker};
  tr_ref a[256], b[256];
  for (unsigned i = 0; i < pairs; i++) {
    expect(tr_spawn(ctx, &ls, NULL, &a[i]) == TR_OK, "spawn a", i, 0);
    expect(tr_spawn(ctx, &ls, NULL, &b[i]) == TR_OK, "spawn b", i, 0);
    if (i % 2 == 1)
      expect(tr_send(ctx, b[i], TRAP) == TR_OK, "trap", i, 0);
    expect(tr_send_uint(ctx, b[i], LINK, a[i].id) == TR_OK, "link", i, 0);
    expect(tr_send_uint(ctx, w, WATCH, b[i].id) == TR_OK, "watch b", i, 0);
  }
  expect(tr_system_wait(sys) == TR_OK, "wait (links)", 0, 0);
  uint64_t downs_before = atomic_load(&downs);

  pthread_t th[16];
  sender snd[16];
  for (unsigned i = 0; i < threads; i++) {
    snd[i] = (sender){sys, targets, kroot, (uint64_t)i * msgs, msgs, 0};
    pthread_create(&th[i], NULL, send_thread, &snd[i]);
  }
  for (unsigned i = 0; i < pairs; i++)
    expect(tr_send(ctx, a[i], FAIL_NOW) == TR_OK, "fail a", i, 0);
  uint64_t sent = 0;
  for (unsigned i = 0; i < threads; i++) {
    pthread_join(th[i], NULL);
    sent += atomic_load(&snd[i].sent);
  }
  expect(tr_system_wait(sys) == TR_OK, "wait (load)", 0, 0);

  uint64_t want_fail = 0, want_restarts = 0;
  for (uint64_t s = 0; s < (uint64_t)threads * msgs; s++) {
    if (!fails(s))
      continue;
    want_fail++;
    /* The children restarted: the one, all K+1, or it and those after it. */
    want_restarts += strategy == TR_SUP_ONE_FOR_ONE   ? 1
                     : strategy == TR_SUP_ONE_FOR_ALL ? kroot + 1
                                                      : kroot + 1 - s % kroot;
  }
  tr_system_stats st;
  expect(tr_system_stats_get(sys, &st) == TR_OK, "stats", 0, 0);
  expect(sent == (uint64_t)threads * msgs, "every DATA send accepted", sent,
         (uint64_t)threads * msgs);
  expect(atomic_load(&data_handled) + want_fail == sent, "DATA handled + predicted failures",
         atomic_load(&data_handled) + want_fail, sent);
  expect(st.dead_letters[TR_DEAD_FAILED] == want_fail + pairs, "FAILED dead letters",
         st.dead_letters[TR_DEAD_FAILED], want_fail + pairs);
  tr_sup_stats ss;
  expect(tr_sup_stats_get(sys, sup, 10000, &ss) == TR_OK, "root stats", 0, 0);
  expect(ss.restarts == want_restarts, "root restarts", ss.restarts, want_restarts);
  expect(ss.exits == want_fail, "root saw every failure", ss.exits, want_fail);
  expect(ss.children == kroot + 1, "root children", ss.children, kroot + 1);
  expect(!ss.gave_up, "root did not give up", ss.gave_up, 0);
  /* Link pairs: b_i even failed with the same reason (DOWN, failed), odd
   * got one EXIT each. The a_i were not monitored. */
  unsigned victims = (pairs + 1) / 2; /* the even b_i: they do not trap */
  expect(atomic_load(&downs) - downs_before == victims, "DOWNs during load (linked victims only)",
         atomic_load(&downs) - downs_before, victims);
  expect(atomic_load(&downs_failed_same) == victims, "victims failed with the same reason",
         atomic_load(&downs_failed_same), victims);
  expect(atomic_load(&exits_seen) == pairs / 2, "EXITs to trapping peers", atomic_load(&exits_seen),
         pairs / 2);

  /* Ordered stop: one DOWN per worker monitor, reason "shutdown". */
  expect(tr_sup_stop(ctx, sup) == TR_OK, "tr_sup_stop", 0, 0);
  expect(tr_system_wait(sys) == TR_OK, "wait (stop)", 0, 0);
  expect(atomic_load(&downs_shutdown) == kroot, "shutdown DOWNs", atomic_load(&downs_shutdown),
         kroot);
  unsigned twice = 0;
  for (unsigned i = 0; i < MAXW; i++)
    twice += atomic_load(&downs_of[i]) > 1;
  expect(twice == 0, "no monitor fired twice", twice, 0);

  expect(tr_system_stats_get(sys, &st) == TR_OK, "stats", 0, 0);
  uint64_t rhs = st.handled + st.dead_letters[TR_DEAD_STOPPED] + st.dead_letters[TR_DEAD_FAILED] +
                 st.dead_letters[TR_DEAD_DROPPED_OLDEST];
  expect(st.sent == rhs, "sent == handled + STOPPED + FAILED + DROPPED_OLDEST", st.sent, rhs);
  /* Left: the watcher, the a/b linkers still alive (odd b_i). */
  expect(st.actors_live == 1 + pairs / 2, "live actors at the end", st.actors_live, 1 + pairs / 2);
  tr_system_free(sys);
  return check_report("supervise");
}
