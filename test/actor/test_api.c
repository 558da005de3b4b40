/*
 * test_api.c - API semantics and bad input.
 *
 * Every documented error is provoked and must come back as its named status,
 * with nothing crashing, nothing leaking (run under AddressSanitizer) and,
 * where the header says "an error means nothing happened", no message sent,
 * no actor spawned and no callback run. Worker-side observations are counted
 * in atomics and asserted by the main thread after tr_system_wait.
 */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <troupe.h>

#include "../common/tr_test.h"

TestSuite(api, .timeout = 60);

/* ------------------------------------------------------------ helpers */

static tr_system *new_system(unsigned threads) {
  tr_system_config cfg = {.threads = threads};
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  cr_assert_not_null(sys);
  return sys;
}

/* A behaviour that counts what it handles. */
static _Atomic uint64_t counted;

static tr_status count_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  (void)msg;
  atomic_fetch_add_explicit(&counted, 1, memory_order_relaxed);
  return TR_OK;
}

static const tr_actor_spec count_spec = {.name = "count", .behaviour = count_behaviour};

/* ------------------------------------------------------------ systems */

static void expect_bad_config(tr_system_config cfg, const char *what) {
  tr_system *sys = NULL;
  tr_status st = tr_system_new(&cfg, &sys);
  cr_assert_eq(st, TR_EINVAL, "%s: got %s", what, tr_status_name(st));
}

static void expect_good_config(tr_system_config cfg, const char *what) {
  tr_system *sys = NULL;
  tr_status st = tr_system_new(&cfg, &sys);
  cr_assert_eq(st, TR_OK, "%s: got %s", what, tr_status_name(st));
  cr_assert_not_null(sys);
  tr_system_free(sys);
}

Test(api, system_new_rejects_bad_config) {
  tr_system_config good = {.threads = 1};
  EXPECT_ST(tr_system_new(&good, NULL), TR_EINVAL);
  EXPECT_ST(tr_system_new(NULL, NULL), TR_EINVAL);
  expect_bad_config((tr_system_config){.threads = TR_MAX_THREADS + 1}, "threads > max");
  expect_bad_config((tr_system_config){.threads = UINT32_MAX}, "threads = UINT_MAX");
  expect_bad_config((tr_system_config){.threads = 1, .batch = TR_MAX_BATCH + 1}, "batch > max");
  /* Not a power of two, or outside [4, TR_MAX_MAILBOX_SLOTS]. */
  const unsigned slots[] = {1, 2, 3, 5, 6, 12, 100, TR_MAX_MAILBOX_SLOTS + 1, 0x20000, UINT32_MAX};
  for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
    char what[64];
    snprintf(what, sizeof what, "mailbox_slots = %u", slots[i]);
    expect_bad_config((tr_system_config){.threads = 1, .mailbox_slots = slots[i]}, what);
  }
}

Test(api, system_new_accepts_limits) {
  expect_good_config((tr_system_config){.threads = 1, .batch = TR_MAX_BATCH}, "batch = max");
  expect_good_config((tr_system_config){.threads = 1, .batch = 1}, "batch = 1");
  expect_good_config((tr_system_config){.threads = 1, .mailbox_slots = 4}, "slots = 4");
  expect_good_config((tr_system_config){.threads = 1, .mailbox_slots = TR_MAX_MAILBOX_SLOTS},
                     "slots = max");
  /* Threads are created by start, not new: the maximum is cheap here. */
  tr_system *sys = NULL;
  tr_system_config max = {.threads = TR_MAX_THREADS};
  OK(tr_system_new(&max, &sys));
  cr_assert_eq(tr_system_threads(sys), TR_MAX_THREADS);
  tr_system_free(sys);
  /* NULL config and threads = 0: defaults, at least one worker. */
  sys = NULL;
  OK(tr_system_new(NULL, &sys));
  cr_assert_geq(tr_system_threads(sys), 1);
  cr_assert_leq(tr_system_threads(sys), TR_MAX_THREADS);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.threads, tr_system_threads(sys));
  tr_system_free(sys);
}

Test(api, system_free_null_is_a_noop) {
  tr_system_free(NULL);
  /* And a system that never started frees cleanly, with actors and mail. */
  tr_system *sys = new_system(2);
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &count_spec, NULL, &r));
  OK(tr_send_str(tr_system_ctx(sys), r, 1, "queued, never handled", 21));
  tr_system_free(sys);
}

Test(api, lifecycle_state_errors) {
  tr_system *sys = new_system(2);
  EXPECT_ST(tr_system_wait(sys), TR_ESTATE);
  EXPECT_ST(tr_system_wait_for(sys, 10), TR_ESTATE);
  OK(tr_system_start(sys));
  EXPECT_ST(tr_system_start(sys), TR_ESTATE);
  WAIT(sys);
  OK(tr_system_stop(sys));
  OK(tr_system_stop(sys)); /* idempotent */
  EXPECT_ST(tr_system_start(sys), TR_ESTATE);
  tr_ref r;
  EXPECT_ST(tr_spawn(tr_system_ctx(sys), &count_spec, NULL, &r), TR_ESTATE);
  tr_system_free(sys);
}

Test(api, stop_before_start) {
  tr_system *sys = new_system(1);
  OK(tr_system_stop(sys));
  EXPECT_ST(tr_system_start(sys), TR_ESTATE);
  tr_system_free(sys);
}

/* Calls that a behaviour must not make. */
static _Atomic int in_worker_stop = -1, in_worker_wait = -1, in_worker_wait_for = -1;

static tr_status owner_calls_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  (void)msg;
  tr_system *sys = tr_ctx_system(ctx);
  atomic_store(&in_worker_stop, tr_system_stop(sys));
  atomic_store(&in_worker_wait, tr_system_wait(sys));
  atomic_store(&in_worker_wait_for, tr_system_wait_for(sys, 1));
  return TR_OK;
}

Test(api, owner_calls_from_a_worker_are_refused) {
  tr_system *sys = new_system(2);
  cr_assert_eq(tr_ctx_system(tr_system_ctx(sys)), sys);
  tr_actor_spec spec = {.name = "owner-calls", .behaviour = owner_calls_behaviour};
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &spec, NULL, &r));
  OK(tr_system_start(sys));
  OK(tr_send(tr_system_ctx(sys), r, 1));
  WAIT(sys);
  cr_assert_eq(atomic_load(&in_worker_stop), TR_ESTATE, "tr_system_stop in a behaviour: %s",
               tr_status_name(atomic_load(&in_worker_stop)));
  cr_assert_eq(atomic_load(&in_worker_wait), TR_ESTATE, "tr_system_wait in a behaviour: %s",
               tr_status_name(atomic_load(&in_worker_wait)));
  cr_assert_eq(atomic_load(&in_worker_wait_for), TR_ESTATE);
  /* The system still runs. */
  OK(tr_send(tr_system_ctx(sys), r, 1));
  WAIT(sys);
  cr_assert_eq(stats(sys).handled, 2);
  tr_system_free(sys);
}

/* ------------------------------------------------------------ spawning */

static _Atomic int inits, finis;
static _Atomic int init_saw_zero = -1;

typedef struct big_state {
  uint8_t bytes[4096];
} big_state;

static tr_status failing_init(void *state, const void *arg) {
  atomic_fetch_add(&inits, 1);
  big_state *s = state;
  bool zero = true;
  for (size_t i = 0; i < sizeof s->bytes; i++)
    zero = zero && s->bytes[i] == 0;
  atomic_store(&init_saw_zero, zero);
  memset(s->bytes, 0xAB, sizeof s->bytes);
  return arg != NULL ? *(const tr_status *)arg : TR_OK;
}

static void counting_fini(void *state) {
  (void)state;
  atomic_fetch_add(&finis, 1);
}

Test(api, spawn_rejects_bad_input) {
  tr_system *sys = new_system(1);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = TR_REF_NONE;
  tr_actor_spec spec = count_spec;
  EXPECT_ST(tr_spawn(NULL, &spec, NULL, &r), TR_EINVAL);
  EXPECT_ST(tr_spawn(ctx, NULL, NULL, &r), TR_EINVAL);
  EXPECT_ST(tr_spawn(ctx, &spec, NULL, NULL), TR_EINVAL);
  tr_actor_spec no_behaviour = {.name = "none", .fini = counting_fini};
  EXPECT_ST(tr_spawn(ctx, &no_behaviour, NULL, &r), TR_EINVAL);
  tr_actor_spec huge = {
      .name = "huge", .behaviour = count_behaviour, .state_size = TR_MAX_STATE_SIZE + 1};
  EXPECT_ST(tr_spawn(ctx, &huge, NULL, &r), TR_EINVAL);
  huge.state_size = SIZE_MAX;
  EXPECT_ST(tr_spawn(ctx, &huge, NULL, &r), TR_EINVAL);
  const unsigned bad_slots[] = {1, 2, 3, 5, 7, 24, TR_MAX_MAILBOX_SLOTS + 1, 0x20000};
  for (size_t i = 0; i < sizeof bad_slots / sizeof bad_slots[0]; i++) {
    tr_actor_spec s = {
        .name = "slots", .behaviour = count_behaviour, .mailbox_slots = bad_slots[i]};
    tr_status st = tr_spawn(ctx, &s, NULL, &r);
    cr_assert_eq(st, TR_EINVAL, "mailbox_slots %u: %s", bad_slots[i], tr_status_name(st));
  }
  cr_assert(tr_ref_is_none(r), "a refused spawn wrote a ref");
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.actors_spawned, 0);
  cr_assert_eq(s.actors_live, 0);
  /* The limits themselves are fine. */
  tr_actor_spec ok4 = {.name = "ok4", .behaviour = count_behaviour, .mailbox_slots = 4};
  tr_actor_spec okmax = {
      .name = "okmax", .behaviour = count_behaviour, .mailbox_slots = TR_MAX_MAILBOX_SLOTS};
  OK(tr_spawn(ctx, &ok4, NULL, &r));
  OK(tr_spawn(ctx, &okmax, NULL, &r));
  cr_assert_eq(stats(sys).actors_spawned, 2);
  tr_system_free(sys);
}

Test(api, init_failure_is_einit_and_skips_fini) {
  atomic_store(&inits, 0);
  atomic_store(&finis, 0);
  tr_system *sys = new_system(1);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "init",
                        .behaviour = count_behaviour,
                        .state_size = sizeof(big_state),
                        .init = failing_init,
                        .fini = counting_fini};
  tr_ref r = TR_REF_NONE;
  const tr_status fails[] = {TR_EFAIL, TR_ENOMEM, TR_EINVAL};
  for (size_t i = 0; i < 3; i++) {
    tr_status st = tr_spawn(ctx, &spec, &fails[i], &r);
    cr_assert_eq(st, TR_EINIT, "init returning %s: spawn gave %s", tr_status_name(fails[i]),
                 tr_status_name(st));
  }
  cr_assert(tr_ref_is_none(r));
  cr_assert_eq(atomic_load(&inits), 3);
  cr_assert_eq(atomic_load(&finis), 0, "fini ran for an actor whose init failed");
  cr_assert_eq(stats(sys).actors_spawned, 0);
  /* A succeeding init gets zeroed state; its fini runs once, at free. */
  OK(tr_spawn(ctx, &spec, NULL, &r));
  cr_assert_eq(atomic_load(&init_saw_zero), 1, "init did not get a zeroed state");
  cr_assert_eq(stats(sys).actors_spawned, 1);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&inits), 4);
  cr_assert_eq(atomic_load(&finis), 1);
}

/* ------------------------------------------------------------ stale refs */

/* Every send kind to `r` gives TR_ESTALE and counts one STALE dead letter. */
static void assert_all_sends_stale(tr_system *sys, tr_ref r) {
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_system_stats before = stats(sys);
  tr_val v[2] = {tr_int(1), tr_str("x")};
  EXPECT_ST(tr_send(ctx, r, 1), TR_ESTALE);
  EXPECT_ST(tr_send_int(ctx, r, 1, -1), TR_ESTALE);
  EXPECT_ST(tr_send_uint(ctx, r, 1, 1), TR_ESTALE);
  EXPECT_ST(tr_send_double(ctx, r, 1, 1.0), TR_ESTALE);
  EXPECT_ST(tr_send_str(ctx, r, 1, "x", 1), TR_ESTALE);
  EXPECT_ST(tr_send_bin(ctx, r, 1, "x", 1), TR_ESTALE);
  EXPECT_ST(tr_send_vals(ctx, r, 1, v, 2), TR_ESTALE);
  EXPECT_ST(tr_send_msgpack(ctx, r, 1, "\x01", 1), TR_ESTALE);
  EXPECT_ST(tr_stop(ctx, r), TR_ESTALE);
  tr_actor_stats as;
  EXPECT_ST(tr_actor_stats_get(ctx, r, &as), TR_ESTALE);
  tr_system_stats after = stats(sys);
  cr_assert_eq(after.dead_letters[TR_DEAD_STALE], before.dead_letters[TR_DEAD_STALE] + 8);
  cr_assert_eq(after.sent, before.sent, "a stale send was counted as sent");
}

Test(api, sends_to_unknown_refs_are_stale) {
  atomic_store(&counted, 0);
  tr_system *sys = new_system(2);
  tr_ref live;
  OK(tr_spawn(tr_system_ctx(sys), &count_spec, NULL, &live));
  OK(tr_system_start(sys));
  assert_all_sends_stale(sys, TR_REF_NONE);
  /* Made-up refs: random ids, an index never handed out, the live actor's
   * index with another generation, and generation 0 (means "no ref"). */
  const uint64_t made_up[] = {
      0xDEADBEEF12345678ull,
      0x0000000100001000ull,
      live.id + ((uint64_t)1 << 32),
      live.id - ((uint64_t)1 << 32),
      live.id & 0xFFFFFFFFull,
      UINT64_MAX,
      ((uint64_t)1 << 32) | 0xFFFFFFFFull,
  };
  for (size_t i = 0; i < sizeof made_up / sizeof made_up[0]; i++) {
    if (made_up[i] == live.id)
      continue;
    assert_all_sends_stale(sys, (tr_ref){made_up[i]});
  }
  WAIT(sys);
  cr_assert_eq(atomic_load(&counted), 0, "a message to a made-up ref reached a live actor");
  tr_system_free(sys);
}

Test(api, stopped_ref_stays_stale_after_slot_reuse) {
  atomic_store(&counted, 0);
  atomic_store(&finis, 0);
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "count", .behaviour = count_behaviour, .fini = counting_fini};
  tr_ref old;
  OK(tr_spawn(ctx, &spec, NULL, &old));
  OK(tr_system_start(sys));
  OK(tr_send(ctx, old, 1));
  WAIT(sys);
  OK(tr_stop(ctx, old));
  WAIT(sys);
  cr_assert_eq(atomic_load(&finis), 1);
  assert_all_sends_stale(sys, old);

  /* Spawn until the old slot is reused (the index is the ref's low half). */
  tr_ref fresh = TR_REF_NONE;
  bool reused = false;
  for (int i = 0; i < 64 && !reused; i++) {
    OK(tr_spawn(ctx, &spec, NULL, &fresh));
    reused = (uint32_t)fresh.id == (uint32_t)old.id;
  }
  cr_assert(reused, "precondition: the stopped actor's slot was never reused");
  cr_assert(!tr_ref_eq(fresh, old), "a reused slot gave out the same ref");
  uint64_t before = atomic_load(&counted);
  assert_all_sends_stale(sys, old);
  WAIT(sys);
  cr_assert_eq(atomic_load(&counted), before, "the new actor in the slot got the old ref's mail");
  /* The new actor itself is reachable. */
  OK(tr_send(ctx, fresh, 1));
  WAIT(sys);
  cr_assert_eq(atomic_load(&counted), before + 1);
  tr_actor_stats as;
  OK(tr_actor_stats_get(ctx, fresh, &as));
  cr_assert_eq(as.received, 1);
  EXPECT_ST(tr_stop(ctx, old), TR_ESTALE);
  tr_system_free(sys);
}

/* ------------------------------------------------------------ misc calls */

static _Atomic int become_null = -1;

static tr_status become_null_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  (void)msg;
  atomic_store(&become_null, tr_become(ctx, NULL));
  return TR_OK;
}

Test(api, become_and_stop_argument_errors) {
  tr_system *sys = new_system(1);
  tr_ctx *ctx = tr_system_ctx(sys);
  EXPECT_ST(tr_become(ctx, count_behaviour), TR_ESTATE);
  EXPECT_ST(tr_become(NULL, count_behaviour), TR_EINVAL);
  tr_ref r;
  OK(tr_spawn(ctx, &count_spec, NULL, &r));
  EXPECT_ST(tr_stop(NULL, r), TR_EINVAL);
  tr_actor_stats as;
  EXPECT_ST(tr_actor_stats_get(NULL, r, &as), TR_EINVAL);
  EXPECT_ST(tr_actor_stats_get(ctx, r, NULL), TR_EINVAL);

  tr_actor_spec spec = {.name = "become-null", .behaviour = become_null_behaviour};
  tr_ref b;
  OK(tr_spawn(ctx, &spec, NULL, &b));
  OK(tr_system_start(sys));
  OK(tr_send(ctx, b, 1));
  OK(tr_send(ctx, b, 1)); /* the behaviour did not change: it runs again */
  WAIT(sys);
  cr_assert_eq(atomic_load(&become_null), TR_EINVAL);
  cr_assert_eq(stats(sys).handled, 2);
  cr_assert_eq(stats(sys).actors_live, 2);
  tr_system_free(sys);
}

/* ------------------------------------------------------------ statuses */

Test(api, status_strings_are_distinct) {
  const tr_status all[] = {
#define X(name, msg) TR_##name,
      TR_STATUS_MAP(X)
#undef X
  };
  const char *names[] = {
#define X(name, msg) #name,
      TR_STATUS_MAP(X)
#undef X
  };
  const char *msgs[] = {
#define X(name, msg) msg,
      TR_STATUS_MAP(X)
#undef X
  };
  const size_t n = sizeof all / sizeof all[0];
  cr_assert_eq(n, (size_t)TR_STATUS_COUNT_);
  cr_assert_eq(TR_OK, 0);
  for (size_t i = 0; i < n; i++) {
    cr_assert_eq((size_t)all[i], i, "statuses are numbered in table order");
    const char *e = tr_strerror(all[i]), *nm = tr_status_name(all[i]);
    cr_assert_not_null(e);
    cr_assert_not_null(nm);
    cr_assert_gt(strlen(e), 0);
    cr_assert_gt(strlen(nm), 0);
    cr_assert_str_eq(nm, names[i]);
    cr_assert_str_eq(e, msgs[i]);
    cr_assert_str_neq(e, "unknown status");
    cr_assert_str_neq(nm, "UNKNOWN");
    for (size_t j = 0; j < i; j++) {
      cr_assert_str_neq(e, tr_strerror(all[j]), "%s and %s share a message", nm, names[j]);
      cr_assert_str_neq(nm, tr_status_name(all[j]));
    }
  }
  const int out_of_range[] = {TR_STATUS_COUNT_, TR_STATUS_COUNT_ + 1, 1000, -1, INT32_MIN};
  for (size_t i = 0; i < sizeof out_of_range / sizeof out_of_range[0]; i++) {
    cr_assert_str_eq(tr_strerror((tr_status)out_of_range[i]), "unknown status");
    cr_assert_str_eq(tr_status_name((tr_status)out_of_range[i]), "UNKNOWN");
  }
}

Test(api, dead_reason_names_are_distinct) {
  const char *names[] = {
#define X(name, msg) #name,
      TR_DEAD_REASON_MAP(X)
#undef X
  };
  cr_assert_eq(sizeof names / sizeof names[0], (size_t)TR_DEAD_REASON_COUNT);
  for (unsigned i = 0; i < TR_DEAD_REASON_COUNT; i++) {
    cr_assert_str_eq(tr_dead_reason_name((tr_dead_reason)i), names[i]);
    for (unsigned j = 0; j < i; j++)
      cr_assert_str_neq(tr_dead_reason_name((tr_dead_reason)i),
                        tr_dead_reason_name((tr_dead_reason)j));
  }
  cr_assert_str_eq(tr_dead_reason_name(TR_DEAD_REASON_COUNT), "UNKNOWN");
  cr_assert_str_eq(tr_dead_reason_name((tr_dead_reason)-1), "UNKNOWN");
}

/* ------------------------------------------------------------ actor stats */

Test(api, actor_stats_count_a_burst) {
  atomic_store(&counted, 0);
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r;
  OK(tr_spawn(ctx, &count_spec, NULL, &r));
  tr_actor_stats as;
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, 0);
  cr_assert_eq(as.handled, 0);
  cr_assert_eq(as.spilled, 0);
  cr_assert_eq(as.depth, 0);
  cr_assert_eq(as.peak_depth, 0);

  /* A burst the receiver cannot drain: the system is not started. The
   * default ring has 8 slots, so most of the burst spills. */
  const unsigned burst = 100;
  for (unsigned i = 0; i < burst; i++)
    OK(tr_send_uint(ctx, r, 1, i));
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, burst);
  cr_assert_eq(as.handled, 0);
  cr_assert_eq(as.depth, burst);
  cr_assert_geq(as.spilled, burst - 8);
  cr_assert_leq(as.spilled, burst);

  OK(tr_system_start(sys));
  WAIT(sys);
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, burst);
  cr_assert_eq(as.handled, burst);
  cr_assert_eq(as.depth, 0);
  cr_assert_geq(as.spilled, burst - 8);
  cr_assert_geq(as.peak_depth, burst, "peak depth %llu after a burst of %u",
                (unsigned long long)as.peak_depth, burst);
  cr_assert_eq(atomic_load(&counted), burst);

  /* More traffic after the wait: counters keep adding up. */
  for (unsigned i = 0; i < 10; i++)
    OK(tr_send(ctx, r, 2));
  WAIT(sys);
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, burst + 10);
  cr_assert_eq(as.handled, burst + 10);
  cr_assert_geq(as.peak_depth, burst);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, burst + 10);
  cr_assert_eq(s.handled, burst + 10);
  tr_system_free(sys);
}

Test(api, mailbox_slots_size_the_ring) {
  tr_system_config cfg = {.threads = 1, .mailbox_slots = 64};
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref by_system, small, large;
  OK(tr_spawn(ctx, &count_spec, NULL, &by_system)); /* 64 from the system */
  tr_actor_spec small_spec = {.name = "small", .behaviour = count_behaviour, .mailbox_slots = 4};
  tr_actor_spec large_spec = {.name = "large", .behaviour = count_behaviour, .mailbox_slots = 1024};
  OK(tr_spawn(ctx, &small_spec, NULL, &small));
  OK(tr_spawn(ctx, &large_spec, NULL, &large));
  for (unsigned i = 0; i < 50; i++) {
    OK(tr_send(ctx, by_system, 1));
    OK(tr_send(ctx, small, 1));
    OK(tr_send(ctx, large, 1));
  }
  tr_actor_stats a, b, c;
  OK(tr_actor_stats_get(ctx, by_system, &a));
  OK(tr_actor_stats_get(ctx, small, &b));
  OK(tr_actor_stats_get(ctx, large, &c));
  cr_assert_eq(a.spilled, 0, "50 messages spilled from a 64-slot ring");
  cr_assert_eq(c.spilled, 0);
  cr_assert_geq(b.spilled, 50 - 4, "a 4-slot ring spilled only %llu of 50",
                (unsigned long long)b.spilled);
  OK(tr_system_start(sys));
  WAIT(sys);
  OK(tr_actor_stats_get(ctx, small, &b));
  cr_assert_eq(b.handled, 50);
  tr_system_free(sys);
}

Test(api, actor_stats_of_stale_ref) {
  tr_system *sys = new_system(1);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_stats as;
  EXPECT_ST(tr_actor_stats_get(ctx, TR_REF_NONE, &as), TR_ESTALE);
  EXPECT_ST(tr_actor_stats_get(ctx, (tr_ref){0x123456789ull}, &as), TR_ESTALE);
  tr_ref r;
  OK(tr_spawn(ctx, &count_spec, NULL, &r));
  OK(tr_stop(ctx, r));
  OK(tr_system_start(sys));
  WAIT(sys);
  EXPECT_ST(tr_actor_stats_get(ctx, r, &as), TR_ESTALE);
  tr_system_free(sys);
}
