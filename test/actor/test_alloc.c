/*
 * test_alloc.c - allocation failure, walked over every allocation of a
 * representative scenario: system creation, spawn (unbounded and bounded),
 * sends from outside and from actors (pooled, heap-sized, spilling past the
 * ring, into a hold-sender mailbox), a timer, an ask, a stop, quiescence and
 * shutdown; and a second one for supervision: a supervisor tree, restarts,
 * a backoff timer, monitors, links, the dead-letter handler, ordered stop. For N = 1, 2, ... the
 * Nth allocation fails; each run must see only TR_OK or a status that follows from the failure
 * (TR_ENOMEM, or a failed actor's own consequences), reach quiescence, and balance its books: every
 * accepted message handled or dead-lettered. Leaks are ASan's to find (ctest fails the run on any
 * sanitizer report).
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <string.h>

#include "../../sched/alloc.h"
#include "../common/tr_test.h"

enum { NUM = 1, BIG, FWD, ASK };

static _Atomic uint64_t handled_by_b;

static tr_status a_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  tr_ref b = *(tr_ref *)state;
  if (tr_msg_is_reply(msg) || tr_msg_tag(msg) == TR_TAG_TIMEOUT)
    return TR_OK; /* the outcome of our ask */
  switch (tr_msg_tag(msg)) {
  case FWD: { /* forward into the bounded mailbox: may hold us, may fail */
    uint64_t v;
    tr_status st = tr_msg_get_uint(msg, &v);
    return st != TR_OK ? st : tr_send_uint(ctx, b, NUM, v);
  }
  case ASK: {
    uint32_t corr;
    return tr_ask(ctx, b, ASK, NULL, 0, 1000, &corr);
  }
  default:
    return TR_OK; /* numbers, blobs, timer ticks, replies, timeouts */
  }
}

static tr_status a_init(void *state, const void *arg) {
  memcpy(state, arg, sizeof(tr_ref));
  return TR_OK;
}

static tr_status b_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  atomic_fetch_add(&handled_by_b, 1);
  if (tr_msg_tag(msg) == ASK)
    return tr_reply(ctx, msg, ASK, NULL, 0);
  return TR_OK;
}

/* A status a call may return when an allocation failed somewhere: the
 * failure itself, or TR_ESTALE when it made an actor fail (its behaviour got
 * TR_ENOMEM from a send and returned it), so later sends find it stopped. */
static bool acceptable(tr_status st) { return st == TR_OK || st == TR_ENOMEM || st == TR_ESTALE; }

typedef struct outcome {
  bool ran;       /* the system could be created */
  bool all_ok;    /* every call returned TR_OK */
  int bad_status; /* a status that no allocation failure explains */
  bool quiescent;
  bool balanced;
  uint64_t sent, handled, dead;
} outcome;

/* Record a call's status: any failure clears all_ok; one that no allocation
 * failure explains is kept as bad_status. */
static void note_call(outcome *o, tr_status st) {
  if (st != TR_OK)
    o->all_ok = false;
  if (!acceptable(st))
    o->bad_status = st;
}

#define CALL(expr) note_call(o, (expr))

/* Start a run: a fresh outcome and a one-worker system (NULL when even
 * creating it failed, as an allocation failure may make it). */
static tr_system *begin(outcome *o) {
  tr_system *sys;
  tr_system_config cfg = {.threads = 1};
  *o = (outcome){.all_ok = true, .bad_status = -1};
  tr_status st = tr_system_new(&cfg, &sys);
  if (st != TR_OK) {
    if (!acceptable(st))
      o->bad_status = st;
    return NULL;
  }
  o->ran = true;
  return sys;
}

/* The books once quiescent: every accepted message handled or dead. */
static void finish(outcome *o, tr_system *sys) {
  tr_system_stats s;
  if (tr_system_stats_get(sys, &s) == TR_OK) {
    o->sent = s.sent;
    o->handled = s.handled;
    o->dead = s.dead_letters[TR_DEAD_STOPPED] + s.dead_letters[TR_DEAD_FAILED] +
              s.dead_letters[TR_DEAD_DROPPED_OLDEST];
    o->balanced = s.sent == o->handled + o->dead;
  }
  tr_system_free(sys);
}

static void scenario(outcome *o) {
  tr_system *sys = begin(o);
  if (sys == NULL)
    return;
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec bspec = {.name = "b",
                         .behaviour = b_behaviour,
                         .mailbox_policy = TR_MAILBOX_HOLD_SENDER,
                         .mailbox_capacity = 4};
  tr_actor_spec aspec = {
      .name = "a", .behaviour = a_behaviour, .state_size = sizeof(tr_ref), .init = a_init};
  tr_actor_spec cspec = {.name = "c",
                         .behaviour = b_behaviour,
                         .mailbox_policy = TR_MAILBOX_DROP_OLDEST,
                         .mailbox_capacity = 2};
  tr_ref a = TR_REF_NONE, b = TR_REF_NONE, c = TR_REF_NONE;
  CALL(tr_spawn(ctx, &bspec, NULL, &b));
  CALL(tr_spawn(ctx, &aspec, &b, &a));
  CALL(tr_spawn(ctx, &cspec, NULL, &c));
  CALL(tr_system_start(sys));

  static uint8_t blob[300];
  for (int i = 0; i < 40; i++) /* a burst: past the ring, onto the spill list */
    if (!tr_ref_is_none(a))
      CALL(tr_send_uint(ctx, a, NUM, (uint64_t)i));
  if (!tr_ref_is_none(a)) {
    CALL(tr_send_bin(ctx, a, BIG, blob, sizeof blob)); /* heap-sized message */
    for (int i = 0; i < 12; i++)
      CALL(tr_send_uint(ctx, a, FWD, (uint64_t)i)); /* a holds on b */
    CALL(tr_send(ctx, a, ASK));
    CALL(tr_send_after(ctx, a, NUM, 1, 0, NULL, 0, NULL));
  }
  if (!tr_ref_is_none(c)) {
    for (int i = 0; i < 6; i++) /* drop-oldest */
      CALL(tr_send_uint(ctx, c, NUM, (uint64_t)i));
    CALL(tr_stop(ctx, c));
  }
  o->quiescent = tr_system_wait_for(sys, 10000) == TR_OK;
  finish(o, sys);
}

/* ------------------------------------------------------------ supervision */

enum { FAIL = 10, WATCH, LINK };

static tr_status kid_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  return tr_msg_tag(msg) == FAIL ? TR_EFAIL : TR_OK;
}

static tr_status kid_init(void *state, const void *arg) {
  memcpy(state, arg, sizeof(int));
  return TR_OK;
}

static tr_status watch_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  uint64_t id, target;
  if (tr_msg_tag(msg) != WATCH && tr_msg_tag(msg) != LINK)
    return TR_OK; /* DOWN, EXIT, dead letters */
  tr_status st = tr_msg_get_uint(msg, &target);
  if (st != TR_OK)
    return st;
  if (tr_msg_tag(msg) == LINK) {
    st = tr_trap_exits(ctx, true);
    return st != TR_OK ? st : tr_link(ctx, (tr_ref){target});
  }
  return tr_monitor(ctx, (tr_ref){target}, &id);
}

static void sup_scenario(outcome *o) {
  tr_system *sys = begin(o);
  if (sys == NULL)
    return;
  tr_ctx *ctx = tr_system_ctx(sys);
  static const int one = 1;
  static const tr_child_spec kids[2] = {
      {.id = "k0",
       .actor = {.name = "k0", .behaviour = kid_behaviour, .state_size = 8, .init = kid_init},
       .arg = &one,
       .arg_size = sizeof one},
      {.id = "k1", .actor = {.name = "k1", .behaviour = kid_behaviour}},
  };
  static const tr_sup_spec inner = {.strategy = TR_SUP_ONE_FOR_ALL,
                                    .intensity = 10,
                                    .period_ms = 10000,
                                    .children = kids,
                                    .nchildren = 2};
  static const tr_child_spec top[2] = {
      {.id = "k", .actor = {.name = "k", .behaviour = kid_behaviour}},
      {.id = "inner", .sup = &inner},
  };
  static const tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                                   .intensity = 10,
                                   .period_ms = 10000,
                                   .backoff_min_ms = 1,
                                   .children = top,
                                   .nchildren = 2};
  tr_actor_spec wspec = {.name = "w", .behaviour = watch_behaviour};
  tr_ref sup = TR_REF_NONE, refs[2] = {TR_REF_NONE, TR_REF_NONE}, w = TR_REF_NONE;
  CALL(tr_spawn(ctx, &wspec, NULL, &w));
  if (!tr_ref_is_none(w))
    CALL(tr_system_set_dead_letter_handler(sys, w));
  CALL(tr_sup_start(ctx, &spec, &sup, refs));
  CALL(tr_system_start(sys));
  if (!tr_ref_is_none(sup) && !tr_ref_is_none(w)) {
    CALL(tr_send_uint(ctx, w, WATCH, refs[0].id));
    CALL(tr_send_uint(ctx, w, LINK, refs[0].id));
    CALL(tr_send_uint(ctx, w, WATCH, 999)); /* noproc */
    for (int i = 0; i < 3; i++)
      CALL(tr_send(ctx, refs[0], FAIL));               /* restarts, after a backoff */
    CALL(tr_send(ctx, refs[1], NUM));                  /* the inner supervisor ignores it */
    CALL(tr_stop(ctx, refs[1]));                       /* the inner tree restarts */
    tr_status st = tr_send(ctx, (tr_ref){12345}, NUM); /* a dead letter, forwarded */
    if (st != TR_ESTALE && st != TR_ENOMEM)
      o->bad_status = st;
  }
  o->quiescent = tr_system_wait_for(sys, 10000) == TR_OK;
  if (!tr_ref_is_none(sup))
    CALL(tr_sup_stop(ctx, sup));
  o->quiescent = o->quiescent && tr_system_wait_for(sys, 10000) == TR_OK;
  finish(o, sys);
}

/* Without failures every call succeeds, and the books balance. */
static void baseline(void (*scenario_fn)(outcome *)) {
  outcome o;
  tri_alloc_fail_at(0);
  scenario_fn(&o);
  cr_assert(o.ran && o.all_ok, "without failures every call succeeds");
  cr_assert(o.quiescent);
  cr_assert(o.balanced, "sent %llu != handled %llu + dead %llu", (unsigned long long)o.sent,
            (unsigned long long)o.handled, (unsigned long long)o.dead);
}

/* Fail allocation 1, 2, ... of the scenario in turn until a run passes
 * its last allocation; each run must explain its statuses, reach
 * quiescence and balance. Returns the runs, and how many saw a failure. */
static unsigned walk(void (*scenario_fn)(outcome *), unsigned *with_enomem) {
  unsigned runs = 0;
  *with_enomem = 0;
  for (uint64_t n = 1;; n++) {
    outcome o;
    tri_alloc_fail_at(n);
    scenario_fn(&o);
    bool failed = tri_alloc_failed();
    tri_alloc_fail_at(0);
    cr_assert_eq(o.bad_status, -1, "allocation %llu failing gave %s", (unsigned long long)n,
                 tr_status_name((tr_status)o.bad_status));
    if (o.ran) {
      cr_assert(o.quiescent, "allocation %llu failing: no quiescence", (unsigned long long)n);
      cr_assert(o.balanced, "allocation %llu failing: sent %llu != handled %llu + dead %llu",
                (unsigned long long)n, (unsigned long long)o.sent, (unsigned long long)o.handled,
                (unsigned long long)o.dead);
    }
    runs++;
    *with_enomem += !o.all_ok;
    if (!failed)
      break; /* n is past the scenario's last allocation: walked them all */
    cr_assert_lt(n, 100000, "the walk does not end");
  }
  return runs;
}

Test(alloc, supervision_baseline_succeeds) { baseline(sup_scenario); }

Test(alloc, supervision_every_allocation_may_fail, .timeout = 300) {
  unsigned with_enomem;
  unsigned runs = walk(sup_scenario, &with_enomem);
  cr_log_info("walked %u allocations, %u runs saw a failure status", runs - 1, with_enomem);
  cr_assert_gt(runs, 40, "the scenario should allocate more than that (%u)", runs);
  cr_assert_gt(with_enomem, 0);
}

Test(alloc, baseline_scenario_succeeds) { baseline(scenario); }

Test(alloc, every_allocation_may_fail, .timeout = 300) {
  unsigned with_enomem;
  unsigned runs = walk(scenario, &with_enomem);
  cr_log_info("walked %u allocations, %u runs saw a failure status", runs - 1, with_enomem);
  cr_assert_gt(runs, 20, "the scenario should allocate more than that (%u)", runs);
  cr_assert_gt(with_enomem, 0);
}
