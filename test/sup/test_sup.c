/*
 * test_sup.c - supervisors: strategies, restart types, intensity and
 * escalation, backoff, in-place restarts (ref and pending mail kept),
 * nesting, dynamic children, ordered shutdown, and the root giving up.
 *
 * Children are `kid` actors. Their start argument is a small index; the
 * test counts, per index, how often init and fini ran and what the fresh
 * state saw, in globals (each Criterion test runs in its own process).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <troupe.h>

#include "../common/tr_test.h"

#define NK 8

enum { T_FAIL = 1, T_PING, T_STOP, T_SLOW_FAIL };

static _Atomic unsigned inits[NK], finis[NK], pings[NK];
static _Atomic uint64_t init_at[NK][8]; /* when each init ran (ns) */
static _Atomic int fini_order[32];
static _Atomic unsigned nfini;
static _Atomic int fail_init_from[NK]; /* init fails from this count on (0: never) */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

typedef struct kid_state {
  int idx;
  unsigned pings; /* since this state was made */
} kid_state;

static tr_status kid_init(void *state, const void *arg) {
  kid_state *k = state;
  k->idx = *(const int *)arg;
  unsigned n = atomic_fetch_add(&inits[k->idx], 1) + 1;
  if (n <= 8)
    atomic_store(&init_at[k->idx][n - 1], now_ns());
  int from = atomic_load(&fail_init_from[k->idx]);
  if (from != 0 && (int)n >= from)
    return TR_EINIT;
  return TR_OK;
}

static void kid_fini(void *state) {
  kid_state *k = state;
  atomic_fetch_add(&finis[k->idx], 1);
  unsigned i = atomic_fetch_add(&nfini, 1);
  if (i < 32)
    atomic_store(&fini_order[i], k->idx);
}

static tr_status kid_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  kid_state *k = state;
  switch (tr_msg_tag(msg)) {
  case T_FAIL:
    return TR_EFAIL;
  case T_PING:
    k->pings++;
    atomic_store(&pings[k->idx], k->pings);
    return TR_OK;
  case T_STOP:
    return tr_stop(ctx, tr_self(ctx));
  default:
    return TR_OK;
  }
}

static const int idx[NK] = {0, 1, 2, 3, 4, 5, 6, 7};

#define KID(i, rt)                                                                                 \
  {                                                                                                \
    .id = "kid" #i,                                                                                \
    .actor = {.name = "kid" #i,                                                                    \
              .behaviour = kid_behaviour,                                                          \
              .state_size = sizeof(kid_state),                                                     \
              .init = kid_init,                                                                    \
              .fini = kid_fini},                                                                   \
    .arg = &idx[i], .restart = (rt)                                                                \
  }

static tr_system *new_sys(unsigned threads) {
  tr_system *sys;
  tr_system_config cfg = {.threads = threads};
  OK(tr_system_new(&cfg, &sys));
  OK(tr_system_start(sys));
  return sys;
}

static void send(tr_system *sys, tr_ref to, uint32_t tag) {
  OK(tr_send(tr_system_ctx(sys), to, tag));
}

static tr_sup_stats sup_stats(tr_system *sys, tr_ref sup) {
  tr_sup_stats s;
  OK(tr_sup_stats_get(sys, sup, 5000, &s));
  return s;
}

static void expect_inits(const unsigned *want, unsigned n) {
  for (unsigned i = 0; i < n; i++)
    cr_expect_eq(atomic_load(&inits[i]), want[i], "kid%u: %u inits, want %u", i,
                 atomic_load(&inits[i]), want[i]);
}

/* Fail child `which` of a 3-child supervisor with `strategy`; check who
 * restarted. */
static void strategy_case(tr_sup_strategy strategy, unsigned which, const unsigned want[3],
                          unsigned threads) {
  tr_system *sys = new_sys(threads);
  const tr_child_spec kids[3] = {KID(0, TR_RESTART_PERMANENT), KID(1, TR_RESTART_PERMANENT),
                                 KID(2, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.name = "sup", .strategy = strategy, .children = kids, .nchildren = 3};
  tr_ref sup, c[3];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  WAIT(sys);
  send(sys, c[which], T_FAIL);
  WAIT(sys);
  expect_inits(want, 3);
  for (unsigned i = 0; i < 3; i++) /* every restart ran fini first */
    cr_expect_eq(atomic_load(&finis[i]), want[i] - 1);
  tr_sup_stats st = sup_stats(sys, sup);
  unsigned restarted = want[0] + want[1] + want[2] - 3;
  cr_expect_eq(st.restarts, restarted);
  cr_expect_eq(st.exits, 1);
  cr_expect_eq(st.children, 3);
  cr_expect(!st.gave_up);
  /* Refs are kept: the same refs reach the fresh states. */
  for (unsigned i = 0; i < 3; i++)
    send(sys, c[i], T_PING);
  WAIT(sys);
  for (unsigned i = 0; i < 3; i++)
    cr_expect_eq(atomic_load(&pings[i]), 1);
  tr_system_stats s = stats(sys);
  cr_expect_eq(s.dead_letters[TR_DEAD_FAILED], 1);
  cr_expect_eq(s.dead_letters[TR_DEAD_STALE], 0);
  tr_system_free(sys);
}

Test(sup, one_for_one_restarts_only_the_failed_child) {
  const unsigned want[3] = {1, 2, 1};
  strategy_case(TR_SUP_ONE_FOR_ONE, 1, want, 1);
}

Test(sup, one_for_one_two_workers) {
  const unsigned want[3] = {2, 1, 1};
  strategy_case(TR_SUP_ONE_FOR_ONE, 0, want, 2);
}

Test(sup, one_for_all_restarts_every_child) {
  const unsigned want[3] = {2, 2, 2};
  strategy_case(TR_SUP_ONE_FOR_ALL, 1, want, 2);
}

Test(sup, rest_for_one_restarts_the_child_and_those_after_it) {
  const unsigned want[3] = {1, 2, 2};
  strategy_case(TR_SUP_REST_FOR_ONE, 1, want, 2);
}

Test(sup, rest_for_one_last_child_alone) {
  const unsigned want[3] = {1, 1, 2};
  strategy_case(TR_SUP_REST_FOR_ONE, 2, want, 1);
}

/* The failed message is a dead letter; the mail queued behind it survives
 * the restart and is handled by the fresh state. */
Test(sup, restart_keeps_ref_and_pending_mail) {
  tr_system *sys;
  tr_system_config cfg = {.threads = 1};
  OK(tr_system_new(&cfg, &sys));
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 1};
  tr_ref sup, c;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  send(sys, c, T_PING);
  send(sys, c, T_FAIL);
  for (int i = 0; i < 20; i++) /* queued before anything runs */
    send(sys, c, T_PING);
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_expect_eq(atomic_load(&inits[0]), 2);
  cr_expect_eq(atomic_load(&pings[0]), 20, "fresh state saw %u pings", atomic_load(&pings[0]));
  tr_system_stats s = stats(sys);
  cr_expect_eq(s.dead_letters[TR_DEAD_FAILED], 1);
  cr_expect_eq(s.dead_letters[TR_DEAD_STOPPED], 0);
  cr_expect_eq(s.sent, s.handled + s.dead_letters[TR_DEAD_STOPPED] +
                           s.dead_letters[TR_DEAD_FAILED] + s.dead_letters[TR_DEAD_DROPPED_OLDEST]);
  tr_system_free(sys);
}

/* Restart types, after a failure and after a normal exit. */
static void restart_type_case(tr_restart_type rt, uint32_t how, unsigned want_inits,
                              bool want_alive) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[2] = {KID(0, TR_RESTART_PERMANENT), KID(1, rt)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 2};
  tr_ref sup, c[2];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  if (how == 0)
    OK(tr_stop(tr_system_ctx(sys), c[1])); /* "stopped": a normal exit */
  else
    send(sys, c[1], how);
  WAIT(sys);
  cr_expect_eq(atomic_load(&inits[1]), want_inits);
  tr_sup_stats st = sup_stats(sys, sup);
  cr_expect_eq(st.children, want_alive ? 2 : 1);
  tr_status ping = tr_send(tr_system_ctx(sys), c[1], T_PING);
  cr_expect_eq(ping, want_alive ? TR_OK : TR_ESTALE, "send after: %s", tr_status_name(ping));
  WAIT(sys);
  cr_expect_eq(atomic_load(&inits[0]), 1); /* the sibling untouched */
  tr_system_free(sys);
}

Test(sup, permanent_restarts_after_failure) {
  restart_type_case(TR_RESTART_PERMANENT, T_FAIL, 2, true);
}
Test(sup, permanent_restarts_after_stop) { restart_type_case(TR_RESTART_PERMANENT, 0, 2, true); }
Test(sup, permanent_restarts_after_self_stop) {
  restart_type_case(TR_RESTART_PERMANENT, T_STOP, 2, true);
}
Test(sup, transient_restarts_after_failure) {
  restart_type_case(TR_RESTART_TRANSIENT, T_FAIL, 2, true);
}
Test(sup, transient_stays_stopped_after_stop) {
  restart_type_case(TR_RESTART_TRANSIENT, 0, 1, false);
}
Test(sup, transient_stays_stopped_after_self_stop) {
  restart_type_case(TR_RESTART_TRANSIENT, T_STOP, 1, false);
}
Test(sup, temporary_never_restarts) { restart_type_case(TR_RESTART_TEMPORARY, T_FAIL, 1, false); }

/* Intensity: `intensity` restarts are allowed, one more makes the root
 * give up: children stopped in reverse start order, tr_system_wait says
 * TR_EEXIT, the reason names the child. */
static void give_up_case(unsigned intensity, uint64_t period_ms, unsigned failures_allowed) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[3] = {KID(0, TR_RESTART_PERMANENT), KID(1, TR_RESTART_PERMANENT),
                                 KID(2, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = intensity,
                      .period_ms = period_ms,
                      .children = kids,
                      .nchildren = 3};
  tr_ref sup, c[3];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  for (unsigned i = 0; i < failures_allowed; i++) {
    send(sys, c[1], T_FAIL);
    WAIT(sys);
    cr_expect_eq(atomic_load(&inits[1]), 2 + i);
  }
  cr_expect_eq(sup_stats(sys, sup).restarts, failures_allowed);
  atomic_store(&nfini, 0);
  send(sys, c[1], T_FAIL);
  EXPECT_ST(tr_system_wait_for(sys, WAIT_MS), TR_EEXIT);
  const void *why;
  size_t len;
  OK(tr_system_exit_reason(sys, &why, &len));
  tr_val v[3];
  size_t n;
  /* ["shutdown", "kid1", "EFAIL"] */
  OK(tr_mp_get_vals(why, len, v, 3, &n));
  cr_assert_eq(n, 3);
  cr_expect(v[0].type == TR_VAL_STR && v[0].as.bytes.len == 8 &&
            memcmp(v[0].as.bytes.ptr, "shutdown", 8) == 0);
  cr_expect(v[1].type == TR_VAL_STR && v[1].as.bytes.len == 4 &&
            memcmp(v[1].as.bytes.ptr, "kid1", 4) == 0);
  cr_expect(v[2].type == TR_VAL_STR && v[2].as.bytes.len == 5 &&
            memcmp(v[2].as.bytes.ptr, "EFAIL", 5) == 0);
  /* The shutdown finishes on its own: wait for it to be quiescent. */
  for (int i = 0; i < 2000 && stats(sys).actors_live != 0; i++) {
    struct timespec ts = {0, 1000000};
    nanosleep(&ts, NULL);
  }
  tr_system_stats s = stats(sys);
  cr_expect_eq(s.actors_live, 0, "%llu actors left", (unsigned long long)s.actors_live);
  /* kid1 had already exited (its fini ran when it failed): the others
   * stop in reverse start order. */
  cr_expect_eq(atomic_load(&nfini), 3);
  cr_expect_eq(atomic_load(&fini_order[0]), 1);
  cr_expect_eq(atomic_load(&fini_order[1]), 2);
  cr_expect_eq(atomic_load(&fini_order[2]), 0);
  cr_expect_eq(atomic_load(&inits[1]), 1 + failures_allowed); /* no restart after giving up */
  tr_system_free(sys);
}

Test(sup, default_intensity_is_one_in_five_seconds) { give_up_case(0, 0, 1); }
Test(sup, intensity_three) { give_up_case(3, 10000, 3); }
Test(sup, intensity_zero_never_restarts) { give_up_case(0, 1000, 0); }

/* Restarts spread over more than the period do not add up. */
Test(sup, intensity_window_slides) {
  tr_system *sys = new_sys(1);
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 1,
                      .period_ms = 100,
                      .children = kids,
                      .nchildren = 1};
  tr_ref sup, c;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  for (int i = 0; i < 3; i++) {
    send(sys, c, T_FAIL);
    WAIT(sys);
    struct timespec ts = {0, 150 * 1000000};
    nanosleep(&ts, NULL);
  }
  cr_expect_eq(atomic_load(&inits[0]), 4);
  cr_expect(!sup_stats(sys, sup).gave_up);
  tr_system_free(sys);
}

/* Backoff: the n-th restart within the period waits min * 2^(n-1). */
Test(sup, backoff_doubles_within_bounds) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 10,
                      .period_ms = 60000,
                      .backoff_min_ms = 40,
                      .backoff_max_ms = 100,
                      .children = kids,
                      .nchildren = 1};
  tr_ref sup, c;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  const uint64_t want_ms[3] = {40, 80, 100}; /* capped at max */
  for (int i = 0; i < 3; i++) {
    uint64_t t0 = now_ns();
    send(sys, c, T_FAIL);
    WAIT(sys); /* the backoff timer counts as pending work */
    uint64_t took = (atomic_load(&init_at[0][i + 1]) - t0) / 1000000u;
    cr_expect_geq(took, want_ms[i], "restart %d after %llu ms, want >= %llu", i + 1,
                  (unsigned long long)took, (unsigned long long)want_ms[i]);
    cr_expect_lt(took, want_ms[i] + 400, "restart %d after %llu ms", i + 1,
                 (unsigned long long)took);
  }
  tr_system_free(sys);
}

Test(sup, backoff_jitter_stays_in_range) {
  tr_system *sys = new_sys(1);
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 10,
                      .period_ms = 10,
                      .backoff_min_ms = 60,
                      .backoff_jitter = 0.5,
                      .children = kids,
                      .nchildren = 1};
  tr_ref sup, c;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  for (int i = 0; i < 4; i++) {
    uint64_t t0 = now_ns();
    send(sys, c, T_FAIL);
    WAIT(sys);
    uint64_t took = (atomic_load(&init_at[0][i + 1]) - t0) / 1000000u;
    /* period 10 ms: each failure is the first in its window: 60 ms +- 50 % */
    cr_expect_geq(took, 30);
    cr_expect_lt(took, 90 + 400);
  }
  tr_system_free(sys);
}

/* Mail sent while a child waits out its backoff is kept for it. */
Test(sup, mail_waits_during_backoff) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 5,
                      .period_ms = 5000,
                      .backoff_min_ms = 100,
                      .children = kids,
                      .nchildren = 1};
  tr_ref sup, c;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  send(sys, c, T_FAIL);
  for (int i = 0; i < 10; i++)
    send(sys, c, T_PING);
  WAIT(sys);
  cr_expect_eq(atomic_load(&inits[0]), 2);
  cr_expect_eq(atomic_load(&pings[0]), 10);
  tr_system_free(sys);
}

/* Nested: an inner supervisor's failure is handled by the outer one. */
static const tr_child_spec inner_kids[2] = {KID(1, TR_RESTART_PERMANENT),
                                            KID(2, TR_RESTART_PERMANENT)};
static const tr_sup_spec inner_spec = {.name = "inner",
                                       .strategy = TR_SUP_ONE_FOR_ALL,
                                       .intensity = 1,
                                       .period_ms = 60000,
                                       .children = inner_kids,
                                       .nchildren = 2};

Test(sup, nested_inner_handles_its_own_children) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[2] = {KID(0, TR_RESTART_PERMANENT), {.id = "inner", .sup = &inner_spec}};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 2};
  tr_ref sup, c[2];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  cr_expect_eq(atomic_load(&inits[1]), 1);
  cr_expect_eq(atomic_load(&inits[2]), 1);
  tr_sup_stats in = sup_stats(sys, c[1]);
  cr_expect_eq(in.children, 2);
  cr_expect_eq(sup_stats(sys, sup).children, 2);
  tr_system_free(sys);
}

/* Stopping the inner supervisor (a permanent child) restarts it in place:
 * same ref, and it starts fresh children. */
Test(sup, nested_restart_restarts_the_subtree) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[2] = {KID(0, TR_RESTART_PERMANENT), {.id = "inner", .sup = &inner_spec}};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 5,
                      .period_ms = 60000,
                      .children = kids,
                      .nchildren = 2};
  tr_ref sup, c[2];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  tr_ref inner = c[1];
  OK(tr_stop(tr_system_ctx(sys), inner));
  WAIT(sys);
  cr_expect_eq(atomic_load(&inits[1]), 2);
  cr_expect_eq(atomic_load(&inits[2]), 2);
  cr_expect_eq(atomic_load(&finis[1]), 1);
  cr_expect_eq(atomic_load(&finis[2]), 1);
  cr_expect_eq(atomic_load(&inits[0]), 1);
  cr_expect_eq(sup_stats(sys, inner).children, 2);
  cr_expect_eq(sup_stats(sys, sup).restarts, 1);
  WAIT(sys); /* tr_sup_stats_get's waiter actor ends */
  tr_system_stats ss = stats(sys);
  cr_expect_eq(ss.actors_live, 5, "live %llu spawned %llu", (unsigned long long)ss.actors_live,
               (unsigned long long)ss.actors_spawned); /* outer, kid0, inner, kid1, kid2 */
  tr_system_free(sys);
}

/* The inner supervisor cannot start its children again (kid1's init fails
 * from its second run on): it fails each time, the outer one restarts it
 * until its own intensity (5) is spent, then the root gives up. */
Test(sup, nested_failure_escalates_to_the_root) {
  tr_system *sys = new_sys(2);
  atomic_store(&fail_init_from[1], 2);
  const tr_child_spec kids[2] = {KID(0, TR_RESTART_PERMANENT), {.id = "inner", .sup = &inner_spec}};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 5,
                      .period_ms = 60000,
                      .children = kids,
                      .nchildren = 2};
  tr_ref sup, c[2];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  OK(tr_stop(tr_system_ctx(sys), c[1]));
  EXPECT_ST(tr_system_wait_for(sys, WAIT_MS), TR_EEXIT);
  const void *why;
  size_t len;
  OK(tr_system_exit_reason(sys, &why, &len));
  tr_val v[3];
  size_t n;
  OK(tr_mp_get_vals(why, len, v, 3, &n));
  cr_assert_eq(n, 3);
  cr_expect(v[1].type == TR_VAL_STR && v[1].as.bytes.len == 5 &&
            memcmp(v[1].as.bytes.ptr, "inner", 5) == 0);
  cr_expect(v[2].type == TR_VAL_STR && v[2].as.bytes.len == 12 &&
            memcmp(v[2].as.bytes.ptr, "start_failed", 12) == 0);
  cr_expect_eq(atomic_load(&inits[1]), 6); /* first start + 5 restarts */
  cr_expect_eq(atomic_load(&inits[2]), 1); /* never reached again */
  tr_system_free(sys);
}

/* Dynamic children: added at run time, each restarted alone. */
typedef struct dyn_state {
  int idx;
} dyn_state;

static tr_status dyn_init(void *state, const void *arg) {
  dyn_state *d = state;
  d->idx = *(const int *)arg; /* a copy the runtime keeps */
  atomic_fetch_add(&inits[d->idx], 1);
  return TR_OK;
}

Test(sup, dynamic_children) {
  tr_system *sys = new_sys(2);
  const tr_child_spec tmpl[1] = {{.id = "dyn",
                                  .actor = {.name = "dyn",
                                            .behaviour = kid_behaviour,
                                            .state_size = sizeof(kid_state),
                                            .init = dyn_init},
                                  .restart = TR_RESTART_TRANSIENT}};
  tr_sup_spec spec = {.strategy = TR_SUP_DYNAMIC,
                      .intensity = 10,
                      .period_ms = 1000,
                      .children = tmpl,
                      .nchildren = 1};
  tr_ref sup, d[3];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, NULL));
  for (int i = 0; i < 3; i++) {
    int arg = i + 3; /* copied: this variable changes right after */
    OK(tr_sup_start_child(tr_system_ctx(sys), sup, &arg, sizeof arg, &d[i]));
  }
  WAIT(sys);
  cr_expect_eq(sup_stats(sys, sup).children, 3);
  send(sys, d[1], T_FAIL);
  WAIT(sys);
  cr_expect_eq(atomic_load(&inits[3]), 1);
  cr_expect_eq(atomic_load(&inits[4]), 2); /* the copy of 4 survived */
  cr_expect_eq(atomic_load(&inits[5]), 1);
  OK(tr_sup_terminate_child(tr_system_ctx(sys), sup, d[0]));
  WAIT(sys);
  EXPECT_ST(tr_send(tr_system_ctx(sys), d[0], T_PING), TR_ESTALE);
  tr_sup_stats st = sup_stats(sys, sup);
  cr_expect_eq(st.children, 2);
  cr_expect_eq(st.restarts, 1);
  send(sys, d[2], T_STOP); /* transient, normal exit: forgotten */
  WAIT(sys);
  cr_expect_eq(sup_stats(sys, sup).children, 1);
  tr_system_free(sys);
}

Test(sup, start_child_errors) {
  tr_system *sys = new_sys(1);
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 1};
  tr_ref sup, c, out;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  EXPECT_ST(tr_sup_start_child(tr_system_ctx(sys), sup, NULL, 0, &out), TR_EINVAL); /* static */
  EXPECT_ST(tr_sup_start_child(tr_system_ctx(sys), c, NULL, 0, &out), TR_EINVAL);   /* not a sup */
  EXPECT_ST(tr_sup_start_child(tr_system_ctx(sys), (tr_ref){12345}, NULL, 0, &out), TR_ESTALE);
  EXPECT_ST(tr_sup_start_child(NULL, sup, NULL, 0, &out), TR_EINVAL);
  EXPECT_ST(tr_sup_start_child(tr_system_ctx(sys), sup, NULL, 4, &out), TR_EINVAL);
  EXPECT_ST(tr_sup_stats_get(sys, c, 200, &(tr_sup_stats){0}), TR_ETIMEDOUT); /* kid ignores it */
  tr_system_free(sys);
}

/* tr_sup_stop: children stop in reverse start order, then the supervisor. */
Test(sup, stop_is_ordered) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[4] = {KID(0, TR_RESTART_PERMANENT), KID(1, TR_RESTART_TRANSIENT),
                                 KID(2, TR_RESTART_TEMPORARY), KID(3, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 4};
  tr_ref sup, c[4];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  OK(tr_sup_stop(tr_system_ctx(sys), sup));
  WAIT(sys);
  cr_expect_eq(atomic_load(&nfini), 4);
  for (int i = 0; i < 4; i++)
    cr_expect_eq(atomic_load(&fini_order[i]), 3 - i, "fini %d was kid%d", i,
                 atomic_load(&fini_order[i]));
  EXPECT_ST(tr_send(tr_system_ctx(sys), sup, T_PING), TR_ESTALE);
  cr_expect_eq(stats(sys).actors_live, 0);
  tr_system_free(sys);
}

/* A nested tree stops depth-first, in reverse order at each level. */
Test(sup, stop_nested_tree_in_order) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[3] = {KID(0, TR_RESTART_PERMANENT),
                                 {.id = "inner", .sup = &inner_spec},
                                 KID(3, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 3};
  tr_ref sup, c[3];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  OK(tr_sup_stop(tr_system_ctx(sys), sup));
  WAIT(sys);
  cr_expect_eq(atomic_load(&nfini), 4);
  cr_expect_eq(atomic_load(&fini_order[0]), 3);
  cr_expect_eq(atomic_load(&fini_order[1]), 2);
  cr_expect_eq(atomic_load(&fini_order[2]), 1);
  cr_expect_eq(atomic_load(&fini_order[3]), 0);
  cr_expect_eq(stats(sys).actors_live, 0);
  tr_system_free(sys);
}

/* A child whose init fails at start: nothing is left running. */
Test(sup, init_failure_at_start_undoes_everything) {
  tr_system *sys = new_sys(2);
  atomic_store(&fail_init_from[2], 1);
  const tr_child_spec kids[3] = {KID(0, TR_RESTART_PERMANENT), KID(1, TR_RESTART_PERMANENT),
                                 KID(2, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 3};
  tr_ref sup;
  EXPECT_ST(tr_sup_start(tr_system_ctx(sys), &spec, &sup, NULL), TR_EINIT);
  WAIT(sys);
  cr_expect_eq(stats(sys).actors_live, 0);
  cr_expect_eq(atomic_load(&finis[0]), 1);
  cr_expect_eq(atomic_load(&finis[1]), 1);
  cr_expect_eq(atomic_load(&finis[2]), 0); /* its init failed: no fini */
  tr_system_free(sys);
}

/* Init failing on restart counts against the intensity until it gives up. */
Test(sup, init_failure_on_restart_escalates) {
  tr_system *sys = new_sys(2);
  atomic_store(&fail_init_from[0], 2);
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 3,
                      .period_ms = 60000,
                      .children = kids,
                      .nchildren = 1};
  tr_ref sup, c;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  send(sys, c, T_FAIL);
  EXPECT_ST(tr_system_wait_for(sys, WAIT_MS), TR_EEXIT);
  cr_expect_eq(atomic_load(&inits[0]), 4); /* start + 3 failed restarts */
  cr_expect_eq(atomic_load(&finis[0]), 1); /* only the state that init made */
  const void *why;
  size_t len;
  OK(tr_system_exit_reason(sys, &why, &len));
  tr_val v[3];
  size_t n;
  OK(tr_mp_get_vals(why, len, v, 3, &n));
  cr_expect(v[2].type == TR_VAL_STR && v[2].as.bytes.len == 5 &&
            memcmp(v[2].as.bytes.ptr, "EINIT", 5) == 0);
  tr_system_free(sys);
}

/* A restart is not an exit: a monitor on a supervised child fires only
 * when the child ends for good. */
typedef struct watcher {
  tr_ref target;
} watcher;

static _Atomic unsigned downs;
static _Atomic bool down_shutdown;

static tr_status watcher_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  watcher *w = state;
  if (tr_msg_tag(msg) == TR_TAG_DOWN) {
    tr_exit_info info;
    if (tr_msg_exit_info(msg, &info) == TR_OK && tr_ref_eq(info.ref, w->target)) {
      atomic_fetch_add(&downs, 1);
      atomic_store(&down_shutdown, tr_reason_is(info.reason, info.reason_len, "shutdown"));
    }
    return TR_OK;
  }
  uint64_t id;
  if (tr_msg_get_uint(msg, &w->target.id) != TR_OK)
    return TR_EFAIL;
  return tr_monitor(ctx, w->target, &id);
}

Test(sup, monitor_sees_termination_not_restart) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[1] = {KID(0, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 5,
                      .period_ms = 1000,
                      .children = kids,
                      .nchildren = 1};
  tr_ref sup, c, w;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &c));
  tr_actor_spec ws = {
      .name = "watcher", .behaviour = watcher_behaviour, .state_size = sizeof(watcher)};
  OK(tr_spawn(tr_system_ctx(sys), &ws, NULL, &w));
  OK(tr_send_uint(tr_system_ctx(sys), w, 1, c.id));
  WAIT(sys);
  send(sys, c, T_FAIL);
  WAIT(sys);
  cr_expect_eq(atomic_load(&inits[0]), 2);
  cr_expect_eq(atomic_load(&downs), 0);
  OK(tr_sup_terminate_child(tr_system_ctx(sys), sup, c));
  WAIT(sys);
  cr_expect_eq(atomic_load(&downs), 1);
  cr_expect(atomic_load(&down_shutdown));
  cr_expect_eq(atomic_load(&inits[0]), 2); /* terminated: not restarted */
  tr_system_free(sys);
}

/* Failures under load: conservation holds exactly. */
Test(sup, conservation_with_restarts) {
  tr_system *sys = new_sys(2);
  const tr_child_spec kids[3] = {KID(0, TR_RESTART_PERMANENT), KID(1, TR_RESTART_PERMANENT),
                                 KID(2, TR_RESTART_PERMANENT)};
  tr_sup_spec spec = {.strategy = TR_SUP_ONE_FOR_ALL,
                      .intensity = 1000,
                      .period_ms = 1000,
                      .children = kids,
                      .nchildren = 3};
  tr_ref sup, c[3];
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, c));
  for (int i = 0; i < 3000; i++)
    send(sys, c[i % 3], i % 97 == 0 ? T_FAIL : T_PING);
  WAIT(sys);
  tr_system_stats s = stats(sys);
  cr_expect_eq(s.dead_letters[TR_DEAD_FAILED], 31);
  cr_expect_eq(s.sent, s.handled + s.dead_letters[TR_DEAD_STOPPED] +
                           s.dead_letters[TR_DEAD_FAILED] + s.dead_letters[TR_DEAD_DROPPED_OLDEST]);
  cr_expect_eq(sup_stats(sys, sup).restarts, 31 * 3);
  cr_expect(!sup_stats(sys, sup).gave_up);
  tr_system_free(sys);
}

Test(sup, bad_specs) {
  tr_system *sys = new_sys(1);
  tr_ctx *ctx = tr_system_ctx(sys);
  const tr_child_spec kids[2] = {KID(0, TR_RESTART_PERMANENT), KID(1, TR_RESTART_PERMANENT)};
  tr_ref sup;
  tr_sup_spec ok = {.strategy = TR_SUP_ONE_FOR_ONE, .children = kids, .nchildren = 2};
  EXPECT_ST(tr_sup_start(NULL, &ok, &sup, NULL), TR_EINVAL);
  EXPECT_ST(tr_sup_start(ctx, NULL, &sup, NULL), TR_EINVAL);
  EXPECT_ST(tr_sup_start(ctx, &ok, NULL, NULL), TR_EINVAL);
  tr_sup_spec s = ok;
  s.nchildren = 0;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  s = ok;
  s.children = NULL;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  s = ok;
  s.strategy = (tr_sup_strategy)9;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  s = ok;
  s.strategy = TR_SUP_DYNAMIC; /* two templates */
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  s = ok;
  s.backoff_jitter = 1.5;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  s = ok;
  s.backoff_min_ms = 100;
  s.backoff_max_ms = 10;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  tr_child_spec bad[1] = {KID(0, TR_RESTART_PERMANENT)};
  bad[0].restart = (tr_restart_type)7;
  s = ok;
  s.children = bad;
  s.nchildren = 1;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  bad[0] = (tr_child_spec)KID(0, TR_RESTART_PERMANENT);
  bad[0].actor.behaviour = NULL;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  bad[0] = (tr_child_spec)KID(0, TR_RESTART_PERMANENT);
  bad[0].arg = NULL;
  bad[0].arg_size = 4;
  EXPECT_ST(tr_sup_start(ctx, &s, &sup, NULL), TR_EINVAL);
  cr_expect_eq(stats(sys).actors_spawned, 0);
  EXPECT_ST(tr_sup_stop(ctx, (tr_ref){999}), TR_ESTALE);
  EXPECT_ST(tr_sup_terminate_child(ctx, (tr_ref){999}, (tr_ref){1}), TR_ESTALE);
  EXPECT_ST(tr_sup_stats_get(NULL, sup, 10, &(tr_sup_stats){0}), TR_EINVAL);
  tr_system_free(sys);
}
