/*
 * test_flow.c - flow control and time: bounded mailboxes, back-pressure,
 * timers, request/reply and blocking contexts, checked through the public
 * API against what troupe/core.h (tr_mailbox_policy) and troupe/time.h
 * promise.
 *
 * Exact counts need a receiver that cannot run while it is being filled.
 * Two ways are used: spawn and send before tr_system_start (nothing runs
 * until then, so every send meets exactly the mailbox the test built), or a
 * receiver held inside a message on a flag (the "gate"). Behaviours never
 * assert, since Criterion's asserts belong to the main thread: they count
 * failed expectations in atomics, with the line of the first, and record
 * what they handled in atomic arrays; the main thread asserts once
 * tr_system_wait_for says the system is quiescent. Every wait has a
 * deadline, so a lost wake-up, a timer that never fires or two held actors
 * waiting on each other fail the test instead of hanging it.
 *
 * Timing assertions are one-sided where they can be (a timer must not fire
 * early, a cancelled one must never fire, a blocking send must have waited)
 * and generous where they cannot (a 10 ms periodic timer must fire 3 times
 * within 5 s), so a slow sanitizer build does not make them flaky.
 *
 * Criterion runs each test in its own process, so the static recorders
 * start zeroed in every test.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <troupe.h>

#include "../common/tr_test.h"

TestSuite(flow, .timeout = 60);

/* ================================================================ helpers */

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static double ms_since(uint64_t t0) { return (double)(now_ns() - t0) / 1e6; }

static void sleep_ms(unsigned ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

static void busy_us(unsigned us) {
  uint64_t end = now_ns() + (uint64_t)us * 1000u;
  while (now_ns() < end)
    ;
}

static tr_system *new_system(unsigned threads) {
  tr_system_config cfg = {.threads = threads};
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  cr_assert_not_null(sys);
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

/* Once quiescent, every accepted message was handled or dead-lettered
 * (core.h, tr_system_stats): refused and dropped-on-arrival sends were
 * never accepted, and DROPPED_OLDEST ones were. */
static void assert_conserved(tr_system *sys) {
  tr_system_stats s = stats(sys);
  uint64_t out = s.handled + s.dead_letters[TR_DEAD_STOPPED] + s.dead_letters[TR_DEAD_FAILED] +
                 s.dead_letters[TR_DEAD_DROPPED_OLDEST];
  cr_assert_eq(s.sent, out,
               "sent %llu != handled %llu + stopped %llu + failed %llu + dropped-oldest %llu",
               (unsigned long long)s.sent, (unsigned long long)s.handled,
               (unsigned long long)s.dead_letters[TR_DEAD_STOPPED],
               (unsigned long long)s.dead_letters[TR_DEAD_FAILED],
               (unsigned long long)s.dead_letters[TR_DEAD_DROPPED_OLDEST]);
}

/* Every dead-letter reason must hold exactly `want[reason]`. */
static void assert_dead(tr_system *sys, const uint64_t want[TR_DEAD_REASON_COUNT]) {
  tr_system_stats s = stats(sys);
  for (unsigned r = 0; r < TR_DEAD_REASON_COUNT; r++)
    cr_assert_eq(s.dead_letters[r], want[r], "dead letters %s: got %llu, want %llu",
                 tr_dead_reason_name((tr_dead_reason)r), (unsigned long long)s.dead_letters[r],
                 (unsigned long long)want[r]);
}

static void assert_no_dead(tr_system *sys) {
  const uint64_t none[TR_DEAD_REASON_COUNT] = {0};
  assert_dead(sys, none);
}

/* Wait for quiescence that is due well within `within_ms`.
 * tr_system_wait_for also answers TR_OK when it finds the system quiescent
 * at its deadline, so a lost wake-up shows only as time: the wait must end
 * before its deadline. */
static void wait_promptly(tr_system *sys, unsigned within_ms) {
  uint64_t t0 = now_ns();
  EXPECT_ST(tr_system_wait_for(sys, within_ms), TR_OK);
  double el = ms_since(t0);
  /* Not fatal: the test goes on to check what the wait was for. */
  cr_expect_lt(el, 0.9 * within_ms,
               "tr_system_wait_for(%u ms) returned only at its deadline (%.0f ms), though the work "
               "was done long before: a lost wake-up",
               within_ms, el);
}

/* Poll `cond` (an expression) until true or `ms` pass; false on timeout. */
#define POLL_UNTIL(cond, ms)                                                                       \
  ({                                                                                               \
    uint64_t give_up_ = now_ns() + (uint64_t)(ms)*1000000u;                                        \
    bool ok_ = false;                                                                              \
    while (!(ok_ = (cond)) && now_ns() < give_up_)                                                 \
      sleep_ms(1);                                                                                 \
    ok_;                                                                                           \
  })

/* One msgpack uint into `buf`; 0 if it did not fit (cannot happen here). */
static size_t mp_uint(uint64_t v, uint8_t *buf, size_t cap) {
  tr_val x = tr_uint(v);
  size_t len = 0;
  return tr_mp_encode_vals(&x, 1, false, buf, cap, &len) == TR_OK ? len : 0;
}

enum {
  T_DATA = 1,
  T_BLOCK,
  T_GO,
  T_CONTINUE,
  T_HOP,
  T_TICK,
  T_Q,
  T_A,
};

/* ================================================================ recorder
 *
 * A receiver that records, in handling order, the uint payload of each
 * message (UINT64_MAX for nil), when it was handled and who sent it. A
 * T_BLOCK message holds it on the gate until the main thread opens it.
 */
#define REC_MAX 8192
static _Atomic uint64_t rec_n;
static _Atomic uint64_t rec_val[REC_MAX];
static _Atomic uint64_t rec_at[REC_MAX]; /* now_ns() when handled */
static _Atomic uint64_t rec_sender[REC_MAX];
static _Atomic uint32_t rec_tag[REC_MAX];
static _Atomic unsigned rec_work_us; /* busy time per recorded message */
static _Atomic bool gate_entered, gate_open;

static void gate_hold(void) {
  atomic_store(&gate_entered, true);
  uint64_t give_up = now_ns() + 20000000000u;
  while (!atomic_load(&gate_open) && EXPECT(now_ns() < give_up))
    sched_yield();
}

static tr_status record_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  if (tr_msg_tag(msg) == T_BLOCK) {
    gate_hold();
    return TR_OK;
  }
  uint64_t v = UINT64_MAX;
  if (!tr_msg_is_nil(msg))
    EXPECT(tr_msg_get_uint(msg, &v) == TR_OK);
  uint64_t i = atomic_fetch_add(&rec_n, 1);
  if (EXPECT(i < REC_MAX)) {
    atomic_store(&rec_val[i], v);
    atomic_store(&rec_at[i], now_ns());
    atomic_store(&rec_sender[i], tr_msg_sender(msg).id);
    atomic_store(&rec_tag[i], tr_msg_tag(msg));
  }
  unsigned work = atomic_load(&rec_work_us);
  if (work != 0)
    busy_us(work);
  return TR_OK;
}

static const tr_actor_spec record_spec = {.name = "record", .behaviour = record_behaviour};

static tr_actor_spec bounded_spec(tr_mailbox_policy policy, unsigned capacity) {
  return (tr_actor_spec){.name = "bounded",
                         .behaviour = record_behaviour,
                         .mailbox_policy = policy,
                         .mailbox_capacity = capacity};
}

/* The recorder handled exactly first, first+1, ..., first+count-1. */
static void assert_recorded_run(uint64_t first, uint64_t count) {
  cr_assert_eq(atomic_load(&rec_n), count, "recorded %llu messages, want %llu",
               (unsigned long long)atomic_load(&rec_n), (unsigned long long)count);
  for (uint64_t i = 0; i < count; i++)
    cr_assert_eq(atomic_load(&rec_val[i]), first + i, "message #%llu: value %llu, want %llu",
                 (unsigned long long)i, (unsigned long long)atomic_load(&rec_val[i]),
                 (unsigned long long)(first + i));
}

/* Start, send the recorder a T_BLOCK and wait until it is held on the gate. */
static void hold_on_gate(tr_system *sys, tr_ref r) {
  OK(tr_send(tr_system_ctx(sys), r, T_BLOCK));
  cr_assert(POLL_UNTIL(atomic_load(&gate_entered), 10000), "receiver never reached the gate");
}

/* ================================================================ spec checks */

Test(flow, spawn_rejects_bad_bounds) {
  tr_system *sys = new_system(1);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r;
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_REFUSE, 0);
  EXPECT_ST(tr_spawn(ctx, &spec, NULL, &r), TR_EINVAL);
  spec.mailbox_capacity = TR_MAX_MAILBOX_CAPACITY + 1;
  EXPECT_ST(tr_spawn(ctx, &spec, NULL, &r), TR_EINVAL);
  spec = bounded_spec((tr_mailbox_policy)(TR_MAILBOX_HOLD_SENDER + 1), 4);
  EXPECT_ST(tr_spawn(ctx, &spec, NULL, &r), TR_EINVAL);
  cr_assert_eq(stats(sys).actors_spawned, 0);
  /* The limits themselves are fine. */
  spec = bounded_spec(TR_MAILBOX_HOLD_SENDER, 1);
  OK(tr_spawn(ctx, &spec, NULL, &r));
  spec = bounded_spec(TR_MAILBOX_DROP_OLDEST, TR_MAX_MAILBOX_CAPACITY);
  OK(tr_spawn(ctx, &spec, NULL, &r));
  cr_assert_eq(actor_stats(sys, r).capacity, TR_MAX_MAILBOX_CAPACITY);
  /* Unbounded mailboxes report no bound. */
  OK(tr_spawn(ctx, &record_spec, NULL, &r));
  cr_assert_eq(actor_stats(sys, r).capacity, 0);
  tr_system_free(sys);
}

/* ================================================================ REFUSE */

static void refuse_case(unsigned k, unsigned n) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_REFUSE, k);
  tr_ref r = spawn(sys, &spec, NULL);
  /* Not started: nothing drains, so the first k fit and every later send
   * meets a full mailbox. */
  for (unsigned i = 0; i < n; i++) {
    tr_status st = tr_send_uint(ctx, r, T_DATA, i);
    cr_assert_eq(st, i < k ? TR_OK : TR_EFULL, "send %u of %u (capacity %u): %s", i, n, k,
                 tr_status_name(st));
  }
  tr_actor_stats as = actor_stats(sys, r);
  cr_assert_eq(as.capacity, k);
  cr_assert_eq(as.received, k);
  cr_assert_eq(as.depth, k);
  cr_assert_eq(as.refused, n - k, "actor refused %llu, want %u", (unsigned long long)as.refused,
               n - k);
  cr_assert_eq(stats(sys).refused, n - k);

  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, k);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, k);
  cr_assert_eq(s.handled, k);
  cr_assert_eq(s.refused, n - k, "system refused %llu, want %u", (unsigned long long)s.refused,
               n - k);
  cr_assert_eq(s.holds, 0);
  assert_no_dead(sys);
  assert_conserved(sys);
  as = actor_stats(sys, r);
  cr_assert_eq(as.handled, k);
  cr_assert_eq(as.refused, n - k);
  cr_assert_eq(as.dropped, 0);
  cr_assert_eq(as.overflow, 0);
  cr_assert_eq(as.depth, 0);
  /* Drained, it takes mail again. */
  OK(tr_send_uint(ctx, r, T_DATA, k));
  WAIT(sys);
  cr_assert_eq(atomic_load(&rec_n), k + 1);
  tr_system_free(sys);
}

Test(flow, refuse_capacity_1) { refuse_case(1, 5); }
Test(flow, refuse_capacity_8) { refuse_case(8, 20); }
Test(flow, refuse_capacity_past_the_ring) { refuse_case(100, 250); }

/* The message being handled is no longer waiting ("capacity messages
 * already wait", core.h): a receiver held inside one message still takes
 * exactly `capacity` more. */
Test(flow, refuse_counts_waiting_messages_not_the_one_in_hand) {
  const unsigned k = 4, n = 10;
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_REFUSE, k);
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  hold_on_gate(sys, r);
  unsigned ok = 0, full = 0;
  for (unsigned i = 0; i < n; i++) {
    tr_status st = tr_send_uint(ctx, r, T_DATA, i);
    cr_assert(st == TR_OK || st == TR_EFULL, "send %u: %s", i, tr_status_name(st));
    ok += st == TR_OK;
    full += st == TR_EFULL;
    cr_assert(st == TR_EFULL || full == 0, "send %u accepted after a refusal", i);
  }
  atomic_store(&gate_open, true);
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(ok, k, "a receiver busy with one message accepted %u more, want %u", ok, k);
  cr_assert_eq(full, n - k);
  assert_recorded_run(0, k);
  cr_assert_eq(stats(sys).refused, n - k);
  tr_system_free(sys);
}

/* ================================================================ DROP_NEWEST */

static void drop_newest_case(unsigned k, unsigned n) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_DROP_NEWEST, k);
  tr_ref r = spawn(sys, &spec, NULL);
  for (unsigned i = 0; i < n; i++)
    OK(tr_send_uint(ctx, r, T_DATA, i));
  /* Dropped on arrival: counted at once, and never accepted. */
  tr_actor_stats as = actor_stats(sys, r);
  cr_assert_eq(as.received, k);
  cr_assert_eq(as.dropped, n - k);
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_DROPPED_NEWEST], n - k);

  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, k); /* the FIRST k */
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_DROPPED_NEWEST] = n - k;
  assert_dead(sys, want);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, k);
  cr_assert_eq(s.handled, k);
  cr_assert_eq(s.refused, 0);
  assert_conserved(sys);
  as = actor_stats(sys, r);
  cr_assert_eq(as.handled, k);
  cr_assert_eq(as.dropped, n - k);
  cr_assert_eq(as.refused, 0);
  tr_system_free(sys);
}

Test(flow, drop_newest_capacity_1) { drop_newest_case(1, 6); }
Test(flow, drop_newest_capacity_8) { drop_newest_case(8, 21); }
Test(flow, drop_newest_capacity_past_the_ring) { drop_newest_case(64, 200); }

/* ================================================================ DROP_OLDEST */

static void drop_oldest_case(unsigned k, unsigned n) {
  /* Until the receiver runs at most 2k wait; past that, new messages are
   * dropped on arrival. When it runs, the oldest are dropped down to k. */
  unsigned accepted = n < 2 * k ? n : 2 * k;
  unsigned dropped_newest = n - accepted;
  unsigned handled = accepted < k ? accepted : k;
  unsigned dropped_oldest = accepted - handled;
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_DROP_OLDEST, k);
  tr_ref r = spawn(sys, &spec, NULL);
  for (unsigned i = 0; i < n; i++)
    OK(tr_send_uint(ctx, r, T_DATA, i));
  tr_actor_stats as = actor_stats(sys, r);
  cr_assert_eq(as.received, accepted, "accepted before the first run: %llu, want %u",
               (unsigned long long)as.received, accepted);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.dead_letters[TR_DEAD_DROPPED_NEWEST], dropped_newest);

  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(accepted - handled, handled); /* the LAST k accepted, in order */
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_DROPPED_NEWEST] = dropped_newest;
  want[TR_DEAD_DROPPED_OLDEST] = dropped_oldest;
  assert_dead(sys, want);
  s = stats(sys);
  cr_assert_eq(s.sent, accepted);
  cr_assert_eq(s.handled, handled);
  cr_assert_eq(s.refused, 0);
  assert_conserved(sys);
  as = actor_stats(sys, r);
  /* "handled: passed to the behaviour" (core.h): the dropped are not. */
  cr_assert_eq(as.handled, handled, "actor stats: handled %llu, want %u (%u dropped oldest)",
               (unsigned long long)as.handled, handled, dropped_oldest);
  cr_assert_eq(as.dropped, dropped_newest + dropped_oldest);
  tr_system_free(sys);
}

Test(flow, drop_oldest_under_capacity) { drop_oldest_case(4, 3); }
Test(flow, drop_oldest_capacity_1) { drop_oldest_case(1, 2); }
Test(flow, drop_oldest_between_k_and_2k) { drop_oldest_case(8, 13); }
Test(flow, drop_oldest_exactly_2k) { drop_oldest_case(8, 16); }
Test(flow, drop_oldest_past_2k_drops_newest_too) { drop_oldest_case(8, 30); }
Test(flow, drop_oldest_capacity_1_past_2k) { drop_oldest_case(1, 7); }
Test(flow, drop_oldest_past_the_ring) { drop_oldest_case(50, 170); }

/* ================================================================ HOLD_SENDER, outside */

Test(flow, hold_sender_plain_ctx_gets_efull) {
  const unsigned k = 6, n = 15;
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_HOLD_SENDER, k);
  tr_ref r = spawn(sys, &spec, NULL);
  for (unsigned i = 0; i < n; i++) {
    tr_status st = tr_send_uint(ctx, r, T_DATA, i);
    cr_assert_eq(st, i < k ? TR_OK : TR_EFULL, "send %u: %s", i, tr_status_name(st));
  }
  cr_assert_eq(actor_stats(sys, r).refused, n - k);
  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, k);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.refused, n - k);
  cr_assert_eq(s.holds, 0, "an outside thread is not an actor: nothing to hold");
  cr_assert_eq(s.sent, k);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(flow, blocking_ctx_rejects_bad_args) {
  tr_system *sys = new_system(1);
  tr_ctx *b = NULL;
  EXPECT_ST(tr_ctx_new_blocking(NULL, 10, &b), TR_EINVAL);
  EXPECT_ST(tr_ctx_new_blocking(sys, 10, NULL), TR_EINVAL);
  OK(tr_ctx_new_blocking(sys, UINT64_MAX, &b));
  cr_assert_not_null(b);
  cr_assert_eq(tr_ctx_system(b), sys);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* Before start nothing drains: a blocking send to a full mailbox waits its
 * whole timeout, then gives up with nothing sent. */
Test(flow, hold_sender_blocking_ctx_times_out_before_start) {
  const unsigned k = 4;
  tr_system *sys = new_system(2);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_HOLD_SENDER, k);
  tr_ref r = spawn(sys, &spec, NULL);
  for (unsigned i = 0; i < k; i++)
    OK(tr_send_uint(tr_system_ctx(sys), r, T_DATA, i));
  tr_ctx *b = NULL;
  OK(tr_ctx_new_blocking(sys, 100, &b));
  uint64_t t0 = now_ns();
  EXPECT_ST(tr_send_uint(b, r, T_DATA, 99), TR_ETIMEDOUT);
  double el = ms_since(t0);
  cr_assert_geq(el, 99.0, "gave up after %.1f ms, timeout 100 ms", el);
  cr_assert_lt(el, 10000.0);
  cr_assert_eq(actor_stats(sys, r).received, k);
  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, k);
  cr_assert_eq(stats(sys).sent, k);
  assert_conserved(sys);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* Fill a receiver held on the gate until a plain send is refused; returns
 * how many were accepted (values first, first+1, ...). */
static unsigned fill_until_full(tr_system *sys, tr_ref r, unsigned k, uint64_t first) {
  unsigned ok = 0;
  for (unsigned i = 0; i < 2 * k + 2; i++) {
    tr_status st = tr_send_uint(tr_system_ctx(sys), r, T_DATA, first + i);
    if (st == TR_EFULL)
      return ok;
    cr_assert_eq(st, TR_OK, "fill send %u: %s", i, tr_status_name(st));
    ok++;
  }
  cr_assert_fail("the mailbox never refused (capacity %u, %u accepted)", k, ok);
  return ok;
}

Test(flow, hold_sender_blocking_ctx_times_out_on_a_stuck_receiver) {
  const unsigned k = 4;
  tr_system *sys = new_system(2);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_HOLD_SENDER, k);
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  hold_on_gate(sys, r);
  unsigned filled = fill_until_full(sys, r, k, 0);
  tr_ctx *b = NULL;
  OK(tr_ctx_new_blocking(sys, 80, &b));
  uint64_t t0 = now_ns();
  EXPECT_ST(tr_send_uint(b, r, T_DATA, 999), TR_ETIMEDOUT);
  double el = ms_since(t0);
  cr_assert_geq(el, 79.0, "gave up after %.1f ms, timeout 80 ms", el);
  atomic_store(&gate_open, true);
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, filled); /* 999 was never sent */
  cr_assert_eq(stats(sys).handled, filled + 1);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_ctx_free(b);
  tr_system_free(sys);
}

static void *open_gate_after(void *arg) {
  sleep_ms(*(const unsigned *)arg);
  atomic_store(&gate_open, true);
  return NULL;
}

Test(flow, hold_sender_blocking_ctx_waits_for_room) {
  const unsigned k = 4;
  static const unsigned delay = 150;
  tr_system *sys = new_system(2);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_HOLD_SENDER, k);
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  hold_on_gate(sys, r);
  unsigned filled = fill_until_full(sys, r, k, 0);
  tr_ctx *b = NULL;
  OK(tr_ctx_new_blocking(sys, 20000, &b));
  pthread_t opener;
  uint64_t t0 = now_ns();
  cr_assert_eq(pthread_create(&opener, NULL, open_gate_after, (void *)&delay), 0);
  OK(tr_send_uint(b, r, T_DATA, filled));
  double el = ms_since(t0);
  pthread_join(opener, NULL);
  cr_assert_geq(el, delay - 10.0, "the blocking send returned after %.1f ms, before there was room",
                el);
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, filled + 1);
  cr_assert_eq(atomic_load(&rec_sender[filled]), 0, "a blocking ctx sends as TR_REF_NONE");
  assert_no_dead(sys);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* A blocking ctx only waits on HOLD_SENDER mailboxes: the others keep
 * their own policy. */
Test(flow, blocking_ctx_keeps_other_policies) {
  const unsigned k = 2;
  tr_system *sys = new_system(2);
  tr_actor_spec refuse = bounded_spec(TR_MAILBOX_REFUSE, k);
  tr_actor_spec newest = bounded_spec(TR_MAILBOX_DROP_NEWEST, k);
  tr_ref rr = spawn(sys, &refuse, NULL);
  tr_ref rn = spawn(sys, &newest, NULL);
  tr_ctx *b = NULL;
  OK(tr_ctx_new_blocking(sys, 5000, &b));
  uint64_t t0 = now_ns();
  for (unsigned i = 0; i < k; i++) {
    OK(tr_send_uint(b, rr, T_DATA, i));
    OK(tr_send_uint(b, rn, T_DATA, i));
  }
  EXPECT_ST(tr_send_uint(b, rr, T_DATA, 9), TR_EFULL);
  OK(tr_send_uint(b, rn, T_DATA, 9));
  cr_assert_lt(ms_since(t0), 2500.0, "a blocking ctx waited on a mailbox that does not hold");
  OK(tr_system_start(sys));
  WAIT(sys);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.refused, 1);
  cr_assert_eq(s.dead_letters[TR_DEAD_DROPPED_NEWEST], 1);
  cr_assert_eq(s.handled, 2 * k);
  tr_ctx_free(b);
  tr_system_free(sys);
}

Test(flow, hold_sender_blocking_ctx_all_succeed_when_drained) {
  const unsigned k = 4, n = 300;
  tr_system *sys = new_system(2);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_HOLD_SENDER, k);
  tr_ref r = spawn(sys, &spec, NULL);
  atomic_store(&rec_work_us, 100);
  OK(tr_system_start(sys));
  tr_ctx *b = NULL;
  OK(tr_ctx_new_blocking(sys, 20000, &b));
  for (unsigned i = 0; i < n; i++)
    OK(tr_send_uint(b, r, T_DATA, i));
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, n);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.refused, 0);
  cr_assert_eq(s.sent, n);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_actor_stats as = actor_stats(sys, r);
  /* A blocked outside sender waits for room, so the mailbox never goes
   * past its bound (one more for a count that includes the message being
   * handled). */
  cr_assert_leq(as.peak_depth, k + 1, "peak depth %llu, capacity %u",
                (unsigned long long)as.peak_depth, k);
  cr_assert_eq(as.overflow, 0);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* One blocking ctx shared by several threads (time.h allows it): every
 * message arrives once, in each thread's order. */
#define BT_THREADS 4
#define BT_MSGS    200

typedef struct bt_arg {
  tr_ctx *ctx;
  tr_ref to;
  unsigned id;
} bt_arg;

static void *bt_thread(void *p) {
  bt_arg *a = p;
  for (uint64_t seq = 0; seq < BT_MSGS; seq++) {
    tr_val v[2] = {tr_uint(a->id), tr_uint(seq)};
    EXPECT(tr_send_vals(a->ctx, a->to, T_DATA, v, 2) == TR_OK);
  }
  return NULL;
}

typedef struct bt_state {
  uint64_t next[BT_THREADS];
} bt_state;

static _Atomic uint64_t bt_count;

static tr_status bt_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  bt_state *s = state;
  tr_val v[2];
  size_t n = 0;
  uint64_t id = 0, seq = 0;
  if (!EXPECT(tr_msg_get_vals(msg, v, 2, &n) == TR_OK && n == 2 &&
              tr_val_get_uint(&v[0], &id) == TR_OK && tr_val_get_uint(&v[1], &seq) == TR_OK &&
              id < BT_THREADS))
    return TR_OK;
  EXPECT(seq == s->next[id]);
  s->next[id] = seq + 1;
  atomic_fetch_add(&bt_count, 1);
  busy_us(20);
  return TR_OK;
}

Test(flow, blocking_ctx_shared_by_threads) {
  const unsigned k = 8;
  tr_system *sys = new_system(2);
  tr_actor_spec spec = {.name = "bt",
                        .behaviour = bt_behaviour,
                        .state_size = sizeof(bt_state),
                        .mailbox_policy = TR_MAILBOX_HOLD_SENDER,
                        .mailbox_capacity = k};
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  tr_ctx *b = NULL;
  OK(tr_ctx_new_blocking(sys, 20000, &b));
  pthread_t t[BT_THREADS];
  bt_arg args[BT_THREADS];
  for (unsigned i = 0; i < BT_THREADS; i++) {
    args[i] = (bt_arg){b, r, i};
    cr_assert_eq(pthread_create(&t[i], NULL, bt_thread, &args[i]), 0);
  }
  for (unsigned i = 0; i < BT_THREADS; i++)
    pthread_join(t[i], NULL);
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&bt_count), BT_THREADS * BT_MSGS);
  cr_assert_eq(stats(sys).refused, 0);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* ================================================================ HOLD_SENDER, actors
 *
 * A producer actor sends CHUNK items per behaviour call (then re-sends
 * itself CONTINUE) to a consumer with a HOLD_SENDER mailbox of capacity K
 * that takes ~20 us per item, far slower than the producer.
 *
 * Bound on the consumer's depth. A send that finds the mailbox full (K
 * waiting) holds the producer: it finishes its current call and is not run
 * again until the consumer has drained to K/2. So at the start of any
 * producer call the depth is <= K: either the previous call never met a
 * full mailbox (its last send found < K waiting, leaving <= K), or the
 * producer was held and released at <= K/2. One call adds at most CHUNK.
 * Hence depth <= K + CHUNK at all times. The consumer measures it itself:
 * when handling item v, the items the producer has counted as sent beyond v
 * are waiting (the producer counts after each send returns, so this can
 * only under-count). The runtime's peak_depth may count the message in hand
 * too, so it gets one more, and one more of slack for a snapshot taken
 * between a pop and its count.
 */
#define BP_K     32u
#define BP_CHUNK 16u

typedef struct producer {
  tr_ref to;
  uint64_t next, total, chunk;
} producer;

static _Atomic uint64_t bp_sent, bp_handled, bp_max_waiting;

static tr_status producer_init(void *state, const void *arg) {
  *(producer *)state = *(const producer *)arg;
  return TR_OK;
}

static tr_status producer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)msg;
  producer *p = state;
  for (uint64_t i = 0; i < p->chunk && p->next < p->total; i++) {
    tr_status st = tr_send_uint(ctx, p->to, T_DATA, p->next);
    if (!EXPECT(st == TR_OK))
      return st;
    p->next++;
    /* Release: pairs with the acquire in consumer_behaviour. */
    atomic_store_explicit(&bp_sent, p->next, memory_order_release);
  }
  if (p->next < p->total)
    return tr_send(ctx, tr_self(ctx), T_CONTINUE);
  return TR_OK;
}

typedef struct consumer {
  uint64_t expect;
  uint64_t max_waiting;
} consumer;

static tr_status consumer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  consumer *c = state;
  uint64_t v = 0;
  if (!EXPECT(tr_msg_get_uint(msg, &v) == TR_OK))
    return TR_OK;
  EXPECT(v == c->expect); /* exactly once, in order */
  c->expect = v + 1;
  uint64_t sent = atomic_load_explicit(&bp_sent, memory_order_acquire);
  uint64_t waiting = sent > v + 1 ? sent - v - 1 : 0;
  if (waiting > c->max_waiting) {
    c->max_waiting = waiting;
    atomic_store(&bp_max_waiting, waiting);
  }
  atomic_fetch_add(&bp_handled, 1);
  busy_us(20);
  return TR_OK;
}

static void hold_from_actor(unsigned workers) {
  const uint64_t total = 3000;
  tr_system *sys = new_system(workers);
  tr_actor_spec cspec = {.name = "consumer",
                         .behaviour = consumer_behaviour,
                         .state_size = sizeof(consumer),
                         .mailbox_policy = TR_MAILBOX_HOLD_SENDER,
                         .mailbox_capacity = BP_K};
  tr_ref c = spawn(sys, &cspec, NULL);
  producer arg = {.to = c, .total = total, .chunk = BP_CHUNK};
  tr_actor_spec pspec = {.name = "producer",
                         .behaviour = producer_behaviour,
                         .state_size = sizeof(producer),
                         .init = producer_init};
  tr_ref p = spawn(sys, &pspec, &arg);
  OK(tr_system_start(sys));
  OK(tr_send(tr_system_ctx(sys), p, T_GO));
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&bp_handled), total);
  tr_system_stats s = stats(sys);
  cr_assert_gt(s.holds, 0, "a producer far faster than its consumer was never held");
  cr_assert_eq(s.refused, 0, "an actor sending to HOLD_SENDER is held, never refused");
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_actor_stats as = actor_stats(sys, c);
  cr_assert_eq(as.handled, total);
  cr_assert_gt(as.holds, 0);
  uint64_t seen = atomic_load(&bp_max_waiting);
  cr_assert_leq(seen, BP_K + BP_CHUNK, "consumer saw %llu waiting; bound K + CHUNK = %u",
                (unsigned long long)seen, BP_K + BP_CHUNK);
  cr_assert_leq(as.peak_depth, BP_K + BP_CHUNK + 2, "runtime peak depth %llu; bound %u",
                (unsigned long long)as.peak_depth, BP_K + BP_CHUNK + 2);
  cr_log_info("hold_from_actor(%u): holds %llu, consumer max waiting %llu, peak_depth %llu, "
              "overflow %llu",
              workers, (unsigned long long)s.holds, (unsigned long long)seen,
              (unsigned long long)as.peak_depth, (unsigned long long)as.overflow);
  tr_system_free(sys);
}

Test(flow, hold_sender_from_actor_1_worker) { hold_from_actor(1); }
Test(flow, hold_sender_from_actor_2_workers) { hold_from_actor(2); }
Test(flow, hold_sender_from_actor_4_workers) { hold_from_actor(4); }

/* The hold itself, step by step. C (capacity HC_K) is held on the gate and
 * filled until refused; P then sends HC_SENDS to C in ONE behaviour call:
 * every send is queued (TR_OK) and P is held after the call. P must not run
 * again (a T_DATA waits in its mailbox) until C has drained to HC_K/2; when
 * it does run, it reads C's depth. So one held sender puts C HC_SENDS past
 * its capacity, not one message (as core.h's last HOLD_SENDER sentence
 * says): the bound is one behaviour call's sends per held sender. */
#define HC_K     8u
#define HC_SENDS 10u

static tr_ref hc_c;
static _Atomic unsigned hc_ok, hc_calls;
static _Atomic int64_t hc_depth_at_rerun = -1;

static tr_status hc_producer(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  atomic_fetch_add(&hc_calls, 1);
  if (tr_msg_tag(msg) == T_GO) {
    for (unsigned i = 0; i < HC_SENDS; i++)
      atomic_fetch_add(&hc_ok, tr_send_uint(ctx, hc_c, T_DATA, 1000 + i) == TR_OK);
    return TR_OK;
  }
  tr_actor_stats cs;
  if (EXPECT(tr_actor_stats_get(ctx, hc_c, &cs) == TR_OK))
    atomic_store(&hc_depth_at_rerun, (int64_t)cs.depth);
  return TR_OK;
}

Test(flow, hold_sender_holds_after_the_call) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec cspec = bounded_spec(TR_MAILBOX_HOLD_SENDER, HC_K);
  hc_c = spawn(sys, &cspec, NULL);
  tr_actor_spec pspec = {.name = "hc-producer", .behaviour = hc_producer};
  tr_ref p = spawn(sys, &pspec, NULL);
  OK(tr_system_start(sys));
  hold_on_gate(sys, hc_c);
  unsigned filled = fill_until_full(sys, hc_c, HC_K, 0);
  OK(tr_send(ctx, p, T_GO));
  cr_assert(POLL_UNTIL(actor_stats(sys, hc_c).holds == 1, 10000), "P was never held on C");
  cr_assert_eq(atomic_load(&hc_ok), HC_SENDS, "only %u of %u sends in the call were accepted",
               atomic_load(&hc_ok), HC_SENDS);
  /* Held: P's next message waits. */
  OK(tr_send(ctx, p, T_DATA));
  sleep_ms(100);
  cr_assert_eq(atomic_load(&hc_calls), 1, "a held actor ran again before its receiver drained");
  atomic_store(&gate_open, true);
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&hc_calls), 2);
  int64_t d = atomic_load(&hc_depth_at_rerun);
  cr_assert(d >= 0 && d <= (int64_t)HC_K / 2, "P ran again with %lld waiting at C; capacity %u",
            (long long)d, HC_K);
  cr_assert_eq(atomic_load(&rec_n), filled + HC_SENDS);
  for (unsigned i = 0; i < HC_SENDS; i++)
    cr_assert_eq(atomic_load(&rec_val[filled + i]), 1000 + i);
  tr_actor_stats cs = actor_stats(sys, hc_c);
  cr_assert_eq(cs.received, filled + 1 + HC_SENDS);
  cr_assert_eq(cs.overflow, 0);
  cr_assert_eq(cs.holds, 1);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.holds, 1);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_system_free(sys);
}

/* Back-pressure propagates upstream (core.h): src -> mid -> sink, both
 * HOLD_SENDER with capacity PL_K, sink slow. mid is held on sink, so its own
 * mailbox fills and src is held on mid. Bounds, by the argument above: mid
 * forwards one message per call, so sink's depth stays <= PL_K + 1; src
 * sends BP_CHUNK per call, so mid's depth stays <= PL_K + BP_CHUNK; each
 * with the same slack of 2 for the runtime's peak_depth. */
#define PL_K 16u

static tr_ref pl_sink;
static _Atomic uint64_t pl_forwarded, pl_max_waiting;

static tr_status mid_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  uint64_t v = 0;
  if (!EXPECT(tr_msg_get_uint(msg, &v) == TR_OK))
    return TR_OK;
  tr_status st = tr_send_uint(ctx, pl_sink, T_DATA, v);
  if (!EXPECT(st == TR_OK))
    return st;
  /* Release: pairs with the acquire in sink_behaviour. */
  atomic_store_explicit(&pl_forwarded, v + 1, memory_order_release);
  return TR_OK;
}

static tr_status sink_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  uint64_t *expect = state;
  uint64_t v = 0;
  if (!EXPECT(tr_msg_get_uint(msg, &v) == TR_OK))
    return TR_OK;
  EXPECT(v == *expect);
  *expect = v + 1;
  uint64_t fwd = atomic_load_explicit(&pl_forwarded, memory_order_acquire);
  uint64_t waiting = fwd > v + 1 ? fwd - v - 1 : 0;
  if (waiting > atomic_load_explicit(&pl_max_waiting, memory_order_relaxed))
    atomic_store(&pl_max_waiting, waiting);
  atomic_fetch_add(&bp_handled, 1);
  busy_us(20);
  return TR_OK;
}

static void pipeline(unsigned workers) {
  const uint64_t total = 2000;
  tr_system *sys = new_system(workers);
  tr_actor_spec sink_spec = {.name = "sink",
                             .behaviour = sink_behaviour,
                             .state_size = sizeof(uint64_t),
                             .mailbox_policy = TR_MAILBOX_HOLD_SENDER,
                             .mailbox_capacity = PL_K};
  tr_actor_spec mid_spec = {.name = "mid",
                            .behaviour = mid_behaviour,
                            .mailbox_policy = TR_MAILBOX_HOLD_SENDER,
                            .mailbox_capacity = PL_K};
  pl_sink = spawn(sys, &sink_spec, NULL);
  tr_ref mid = spawn(sys, &mid_spec, NULL);
  producer arg = {.to = mid, .total = total, .chunk = BP_CHUNK};
  tr_actor_spec src_spec = {.name = "src",
                            .behaviour = producer_behaviour,
                            .state_size = sizeof(producer),
                            .init = producer_init};
  tr_ref src = spawn(sys, &src_spec, &arg);
  OK(tr_system_start(sys));
  OK(tr_send(tr_system_ctx(sys), src, T_GO));
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&bp_handled), total);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_actor_stats ss = actor_stats(sys, pl_sink), ms = actor_stats(sys, mid);
  cr_log_info("pipeline(%u): sink holds %llu peak %llu (seen %llu); mid holds %llu peak %llu",
              workers, (unsigned long long)ss.holds, (unsigned long long)ss.peak_depth,
              (unsigned long long)atomic_load(&pl_max_waiting), (unsigned long long)ms.holds,
              (unsigned long long)ms.peak_depth);
  cr_assert_gt(ss.holds, 0, "mid was never held on the slow sink");
  cr_assert_gt(ms.holds, 0, "back-pressure did not reach src: never held on mid");
  cr_assert_eq(ss.overflow + ms.overflow, 0, "a pipeline has no cycle: nothing may overflow");
  cr_assert_leq(atomic_load(&pl_max_waiting), PL_K + 1, "sink saw %llu waiting; bound %u",
                (unsigned long long)atomic_load(&pl_max_waiting), PL_K + 1);
  cr_assert_leq(ss.peak_depth, PL_K + 1 + 2);
  cr_assert_leq(ms.peak_depth, PL_K + BP_CHUNK + 2, "mid peak depth %llu; bound %u",
                (unsigned long long)ms.peak_depth, PL_K + BP_CHUNK + 2);
  tr_system_free(sys);
}

Test(flow, hold_sender_propagates_upstream_1_worker) { pipeline(1); }
Test(flow, hold_sender_propagates_upstream_2_workers) { pipeline(2); }
Test(flow, hold_sender_propagates_upstream_4_workers) { pipeline(4); }

/* ================================================================ conservation */

static tr_status fail_on_5(tr_ctx *ctx, void *state, const tr_msg *msg) {
  uint64_t v = 0;
  if (tr_msg_get_uint(msg, &v) == TR_OK && v == 5)
    return TR_EFAIL;
  return record_behaviour(ctx, state, msg);
}

/* Every reason that enters the balance at once, with exact counts. */
Test(flow, conservation_with_every_policy) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  /* DROP_OLDEST, capacity 4, 0..7 queued: 0..3 dropped oldest when it runs,
   * 4 handled, 5 fails, 6 and 7 are dead letters of a stopped actor. */
  tr_actor_spec oldest = {.name = "oldest",
                          .behaviour = fail_on_5,
                          .mailbox_policy = TR_MAILBOX_DROP_OLDEST,
                          .mailbox_capacity = 4};
  tr_ref ro = spawn(sys, &oldest, NULL);
  for (uint64_t i = 0; i < 8; i++)
    OK(tr_send_uint(ctx, ro, T_DATA, i));
  /* REFUSE, capacity 3, 5 sends: 3 handled, 2 refused (never accepted). */
  tr_actor_spec refuse = bounded_spec(TR_MAILBOX_REFUSE, 3);
  tr_ref rr = spawn(sys, &refuse, NULL);
  unsigned full = 0;
  for (uint64_t i = 100; i < 105; i++)
    full += tr_send_uint(ctx, rr, T_DATA, i) == TR_EFULL;
  cr_assert_eq(full, 2);
  /* DROP_NEWEST, capacity 2, 5 sends: 2 handled, 3 dropped on arrival. */
  tr_actor_spec newest = bounded_spec(TR_MAILBOX_DROP_NEWEST, 2);
  tr_ref rn = spawn(sys, &newest, NULL);
  for (uint64_t i = 200; i < 205; i++)
    OK(tr_send_uint(ctx, rn, T_DATA, i));
  OK(tr_system_start(sys));
  WAIT(sys);
  ASSERT_NO_BAD();
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_DROPPED_OLDEST] = 4;
  want[TR_DEAD_FAILED] = 1;
  want[TR_DEAD_STOPPED] = 2;
  want[TR_DEAD_DROPPED_NEWEST] = 3;
  assert_dead(sys, want);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, 8 + 3 + 2);
  cr_assert_eq(s.handled, 1 + 3 + 2);
  cr_assert_eq(s.refused, 2);
  assert_conserved(sys);
  cr_assert_eq(atomic_load(&rec_n), 6);
  EXPECT_ST(tr_actor_stats_get(ctx, ro, &(tr_actor_stats){0}), TR_ESTALE);
  tr_system_free(sys);
}

/* ================================================================ mutual hold
 *
 * A ring of n HOLD_SENDER actors with capacity K, each mailbox filled with K
 * messages before start. Handling a message with hop count h > 0 sends FAN
 * messages with h-1 to the next actor, which is full from the start. Two
 * actors holding each other would deadlock; the runtime's deadlock-freedom
 * rule (core.h: a hold that would close a cycle of holds is not made, the
 * message goes past the bound as overflow) must let it finish. One initial
 * message with hop H causes
 * T(H) = 1 + FAN + FAN^2 + ... + FAN^H handled messages.
 */
#define CY_K   4u
#define CY_FAN 3u
#define CY_HOP 5u

static tr_ref cy_refs[3];
static unsigned cy_n;
static _Atomic uint64_t cy_handled;

static tr_status cy_init(void *state, const void *arg) {
  *(unsigned *)state = *(const unsigned *)arg;
  return TR_OK;
}

static tr_status cy_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  unsigned idx = *(unsigned *)state;
  uint64_t h = 0;
  if (!EXPECT(tr_msg_get_uint(msg, &h) == TR_OK))
    return TR_OK;
  atomic_fetch_add_explicit(&cy_handled, 1, memory_order_relaxed);
  if (h > 0)
    for (unsigned f = 0; f < CY_FAN; f++)
      EXPECT(tr_send_uint(ctx, cy_refs[(idx + 1) % cy_n], T_HOP, h - 1) == TR_OK);
  return TR_OK;
}

static void cycle(unsigned n, unsigned workers) {
  tr_system *sys = new_system(workers);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "cycle",
                        .behaviour = cy_behaviour,
                        .state_size = sizeof(unsigned),
                        .init = cy_init,
                        .mailbox_policy = TR_MAILBOX_HOLD_SENDER,
                        .mailbox_capacity = CY_K};
  cy_n = n;
  for (unsigned i = 0; i < n; i++)
    cy_refs[i] = spawn(sys, &spec, &i);
  for (unsigned i = 0; i < n; i++)
    for (unsigned j = 0; j < CY_K; j++)
      OK(tr_send_uint(ctx, cy_refs[i], T_HOP, CY_HOP));
  uint64_t per = 0, pow = 1;
  for (unsigned h = 0; h <= CY_HOP; h++, pow *= CY_FAN)
    per += pow;
  uint64_t want = (uint64_t)n * CY_K * per;
  OK(tr_system_start(sys));
  tr_status st = tr_system_wait_for(sys, 30000);
  cr_assert_eq(st, TR_OK, "%u held actors never reached quiescence (%s); handled %llu of %llu", n,
               tr_status_name(st), (unsigned long long)atomic_load(&cy_handled),
               (unsigned long long)want);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&cy_handled), want);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.handled, want);
  cr_assert_eq(s.sent, want);
  cr_assert_eq(s.refused, 0);
  assert_no_dead(sys);
  assert_conserved(sys);
  uint64_t overflow = 0;
  for (unsigned i = 0; i < n; i++)
    overflow += actor_stats(sys, cy_refs[i]).overflow;
  cr_log_info("cycle(%u actors, %u workers): %llu handled, holds %llu, overflow %llu", n, workers,
              (unsigned long long)want, (unsigned long long)s.holds, (unsigned long long)overflow);
  tr_system_free(sys);
}

Test(flow, mutual_full_pair_completes_1_worker) { cycle(2, 1); }
Test(flow, mutual_full_pair_completes_2_workers) { cycle(2, 2); }
Test(flow, mutual_full_pair_completes_4_workers) { cycle(2, 4); }
Test(flow, mutual_full_ring_of_3_completes_1_worker) { cycle(3, 1); }
Test(flow, mutual_full_ring_of_3_completes_2_workers) { cycle(3, 2); }
Test(flow, mutual_full_ring_of_3_completes_4_workers) { cycle(3, 4); }

/* ================================================================ timers */

static void arm(tr_system *sys, tr_ref to, uint64_t delay, uint64_t period, uint64_t value,
                tr_timer *out) {
  uint8_t buf[16];
  size_t len = mp_uint(value, buf, sizeof buf);
  cr_assert_gt(len, 0);
  OK(tr_send_after(tr_system_ctx(sys), to, T_TICK, delay, period, buf, len, out));
}

Test(flow, timers_fire_in_deadline_order) {
  static const uint64_t delays[] = {75, 15, 120, 45, 105, 30, 90, 60, 0};
  const size_t n = sizeof delays / sizeof delays[0];
  tr_system *sys = new_system(2);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++)
    arm(sys, r, delays[i], 0, delays[i], NULL);
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&rec_n), n);
  for (size_t i = 0; i < n; i++) {
    uint64_t d = atomic_load(&rec_val[i]);
    cr_assert_eq(d, 15 * i, "timer #%zu to fire had delay %llu, want %zu", i, (unsigned long long)d,
                 15 * i);
    double at = (double)(atomic_load(&rec_at[i]) - t0) / 1e6;
    cr_assert_geq(at, (double)d, "timer with delay %llu ms handled after %.2f ms",
                  (unsigned long long)d, at);
    cr_assert_eq(atomic_load(&rec_tag[i]), T_TICK);
    cr_assert_eq(atomic_load(&rec_sender[i]), 0, "armed outside: sender TR_REF_NONE");
  }
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.timers_armed, n);
  cr_assert_eq(s.timers_fired, n);
  cr_assert_eq(s.timers_cancelled, 0);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(flow, equal_deadlines_fire_in_arming_order) {
  const uint64_t n = 64;
  tr_system *sys = new_system(2);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  for (uint64_t i = 0; i < n; i++)
    arm(sys, r, 40, 0, i, NULL);
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, n);
  tr_system_free(sys);
}

/* Order is by deadline, not by arming: a timer armed 20 ms after two
 * others, with a deadline before both, fires first (the timer thread is
 * already sleeping towards the earlier of the two when it is armed). */
Test(flow, later_armed_earlier_deadline_goes_first) {
  tr_system *sys = new_system(1);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  arm(sys, r, 200, 0, 2, NULL);
  arm(sys, r, 100, 0, 1, NULL);
  sleep_ms(20);
  arm(sys, r, 10, 0, 0, NULL);
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_recorded_run(0, 3);
  tr_system_free(sys);
}

Test(flow, cancel_before_firing) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  tr_timer t;
  arm(sys, r, 300, 0, 1, &t);
  OK(tr_timer_cancel(ctx, t));
  EXPECT_ST(tr_timer_cancel(ctx, t), TR_ESTALE);
  /* A cancelled timer is not pending: wait returns at once. */
  uint64_t t0 = now_ns();
  WAIT(sys);
  cr_assert_lt(ms_since(t0), 250.0, "wait waited for a cancelled timer");
  sleep_ms(450);
  WAIT(sys);
  cr_assert_eq(atomic_load(&rec_n), 0, "a cancelled timer fired");
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.timers_armed, 1);
  cr_assert_eq(s.timers_cancelled, 1);
  cr_assert_eq(s.timers_fired, 0);
  tr_system_free(sys);
}

Test(flow, cancel_after_firing_is_stale) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  tr_timer t;
  arm(sys, r, 10, 0, 7, &t);
  WAIT(sys);
  assert_recorded_run(7, 1);
  EXPECT_ST(tr_timer_cancel(ctx, t), TR_ESTALE);
  EXPECT_ST(tr_timer_cancel(ctx, (tr_timer){0}), TR_ESTALE);
  EXPECT_ST(tr_timer_cancel(ctx, (tr_timer){0x123456789abcdefull}), TR_ESTALE);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.timers_fired, 1);
  cr_assert_eq(s.timers_cancelled, 0);
  tr_system_free(sys);
}

Test(flow, periodic_fires_until_cancelled) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  tr_timer t;
  uint64_t t0 = now_ns();
  arm(sys, r, 10, 10, 5, &t);
  /* A pending periodic timer keeps the system from quiescence. */
  EXPECT_ST(tr_system_wait_for(sys, 50), TR_ETIMEDOUT);
  cr_assert(POLL_UNTIL(atomic_load(&rec_n) >= 3, 5000), "periodic timer fired %llu times in 5 s",
            (unsigned long long)atomic_load(&rec_n));
  OK(tr_timer_cancel(ctx, t));
  double el = ms_since(t0);
  WAIT(sys);
  uint64_t fired = atomic_load(&rec_n);
  /* Not faster than its period: first at 10 ms, then every 10 ms. */
  cr_assert_leq((double)fired, (el - 10.0) / 10.0 + 2.0, "%llu firings in %.1f ms",
                (unsigned long long)fired, el);
  sleep_ms(100);
  WAIT(sys);
  cr_assert_eq(atomic_load(&rec_n), fired, "a cancelled periodic timer fired again");
  EXPECT_ST(tr_timer_cancel(ctx, t), TR_ESTALE);
  for (uint64_t i = 0; i < fired; i++)
    cr_assert_eq(atomic_load(&rec_val[i]), 5);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.timers_armed, 1);
  cr_assert_eq(s.timers_cancelled, 1);
  cr_log_info("periodic: %llu firings, timers_fired %llu", (unsigned long long)fired,
              (unsigned long long)s.timers_fired);
  tr_system_free(sys);
}

Test(flow, wait_waits_for_a_pending_one_shot) {
  const uint64_t delay = 150;
  tr_system *sys = new_system(2);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  uint64_t t0 = now_ns();
  arm(sys, r, delay, 0, 1, NULL);
  WAIT(sys);
  double el = ms_since(t0);
  cr_assert_eq(atomic_load(&rec_n), 1, "tr_system_wait returned before the timer fired");
  cr_assert_geq(el, (double)delay);
  cr_assert_geq((double)(atomic_load(&rec_at[0]) - t0) / 1e6, (double)delay, "fired early");
  tr_system_free(sys);
}

Test(flow, one_shot_to_stopped_actor_is_a_stale_dead_letter) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_stop(ctx, r));
  WAIT(sys);
  arm(sys, r, 10, 0, 1, NULL);
  wait_promptly(sys, 3000);
  cr_assert_eq(atomic_load(&rec_n), 0);
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_STALE] = 1;
  assert_dead(sys, want);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(flow, periodic_to_stopped_actor_cancels_itself) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_stop(ctx, r));
  WAIT(sys);
  tr_timer t;
  arm(sys, r, 5, 5, 1, &t);
  /* Quiescence is only possible once the timer has cancelled itself. */
  wait_promptly(sys, 3000);
  EXPECT_ST(tr_timer_cancel(ctx, t), TR_ESTALE);
  tr_system_stats s = stats(sys);
  cr_assert_geq(s.dead_letters[TR_DEAD_STALE], 1);
  cr_assert_leq(s.dead_letters[TR_DEAD_STALE], 1,
                "a periodic timer to a stopped actor fired %llu "
                "times before cancelling itself",
                (unsigned long long)s.dead_letters[TR_DEAD_STALE]);
  tr_system_free(sys);
}

/* The receiver stops while its periodic timer runs. */
Test(flow, periodic_stops_with_its_receiver) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  arm(sys, r, 5, 5, 1, NULL);
  cr_assert(POLL_UNTIL(atomic_load(&rec_n) >= 2, 5000));
  OK(tr_stop(ctx, r));
  wait_promptly(sys, 3000);
  ASSERT_NO_BAD();
  assert_conserved(sys);
  tr_system_free(sys);
}

/* Cancelling the last pending timer from another thread ends a wait
 * that is already blocked. */
typedef struct cancel_later {
  tr_system *sys;
  tr_timer t;
  unsigned after_ms;
  _Atomic int st;
} cancel_later;

static void *cancel_after(void *p) {
  cancel_later *c = p;
  sleep_ms(c->after_ms);
  atomic_store(&c->st, tr_timer_cancel(tr_system_ctx(c->sys), c->t));
  return NULL;
}

Test(flow, cancel_from_another_thread_ends_a_blocked_wait) {
  tr_system *sys = new_system(2);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  cancel_later c = {.sys = sys, .after_ms = 100, .st = -1};
  arm(sys, r, 3600 * 1000, 0, 1, &c.t);
  pthread_t th;
  cr_assert_eq(pthread_create(&th, NULL, cancel_after, &c), 0);
  wait_promptly(sys, 3000);
  pthread_join(th, NULL);
  cr_assert_eq(atomic_load(&c.st), TR_OK);
  cr_assert_eq(atomic_load(&rec_n), 0);
  tr_system_free(sys);
}

/* A one-shot timer's unit of work is retired by the timer thread after its
 * message was sent; the receiver may handle it and the workers park before
 * that. Many short rounds: each wait must still end promptly. */
Test(flow, wait_after_many_short_timers) {
  tr_system *sys = new_system(2);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  for (uint64_t i = 0; i < 300; i++) {
    arm(sys, r, 1, 0, i, NULL);
    uint64_t t0 = now_ns();
    EXPECT_ST(tr_system_wait_for(sys, 2000), TR_OK);
    double el = ms_since(t0);
    cr_assert_lt(el, 1000.0, "round %llu: a 1 ms timer's wait took %.0f ms (lost wake-up)",
                 (unsigned long long)i, el);
  }
  assert_recorded_run(0, 300);
  tr_system_free(sys);
}

Test(flow, timer_bad_args) {
  tr_system_config cfg = {.threads = 1, .max_msg_size = 64};
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  tr_timer t = {0};
  static const uint8_t one[] = {0x01};
  static const uint8_t truncated[] = {0x92, 0x01}; /* array of 2 holding 1 */
  static const uint8_t trailing[] = {0x01, 0x02};  /* two values */
  static const uint8_t never_used[] = {0xc1};      /* reserved byte */
  uint8_t big[128] = {0xc4, 100};                  /* bin 8 of 100 bytes */
  EXPECT_ST(tr_send_after(NULL, r, T_TICK, 10, 0, one, 1, &t), TR_EINVAL);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, TR_TIMER_MAX_MS + 1, 0, one, 1, &t), TR_EINVAL);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, 10, TR_TIMER_MAX_MS + 1, one, 1, &t), TR_EINVAL);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, UINT64_MAX, 0, one, 1, &t), TR_EINVAL);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, 10, 0, truncated, sizeof truncated, &t), TR_EMALFORMED);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, 10, 0, trailing, sizeof trailing, &t), TR_EMALFORMED);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, 10, 0, never_used, 1, &t), TR_EMALFORMED);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, 10, 0, one, 0, &t), TR_EMALFORMED);
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, 10, 0, big, 102, &t), TR_ETOOBIG);
  cr_assert_eq(stats(sys).timers_armed, 0, "a refused timer was counted as armed");
  /* The limits themselves are fine; NULL payload is nil; out may be NULL. */
  tr_timer far;
  OK(tr_send_after(ctx, r, T_TICK, TR_TIMER_MAX_MS, TR_TIMER_MAX_MS, one, 1, &far));
  OK(tr_timer_cancel(ctx, far));
  OK(tr_send_after(ctx, r, T_TICK, 0, 0, NULL, 0, NULL));
  WAIT(sys);
  cr_assert_eq(atomic_load(&rec_n), 1);
  cr_assert_eq(atomic_load(&rec_val[0]), UINT64_MAX, "NULL payload arrives as nil");
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.timers_armed, 2);
  cr_assert_eq(s.timers_cancelled, 1);
  cr_assert_eq(s.timers_fired, 1);
  OK(tr_system_stop(sys));
  EXPECT_ST(tr_send_after(ctx, r, T_TICK, 10, 0, one, 1, &t), TR_ESTATE);
  tr_system_free(sys);
}

Test(flow, timer_stats_match) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &record_spec, NULL);
  OK(tr_system_start(sys));
  tr_timer keep[3], drop[2];
  for (unsigned i = 0; i < 3; i++)
    arm(sys, r, 10 + i, 0, i, &keep[i]);
  for (unsigned i = 0; i < 2; i++)
    arm(sys, r, 5000, 0, 100 + i, &drop[i]);
  for (unsigned i = 0; i < 2; i++)
    OK(tr_timer_cancel(ctx, drop[i]));
  WAIT(sys);
  assert_recorded_run(0, 3);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.timers_armed, 5);
  cr_assert_eq(s.timers_fired, 3);
  cr_assert_eq(s.timers_cancelled, 2);
  tr_system_free(sys);
}

/* Timers armed inside a behaviour: the sender is the running actor, the
 * payload arrives intact, and a periodic one can be cancelled from its own
 * receiver. */
typedef struct ticker {
  tr_timer periodic;
  unsigned ticks;
} ticker;

static _Atomic unsigned tk_ticks, tk_strs;
static _Atomic int tk_arm_st = -1, tk_cancel_st = -1;

static tr_status ticker_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  ticker *t = state;
  if (tr_msg_tag(msg) == T_GO) {
    uint8_t buf[32];
    tr_val v = tr_str("tick-tock");
    size_t len = 0;
    EXPECT(tr_mp_encode_vals(&v, 1, false, buf, sizeof buf, &len) == TR_OK);
    EXPECT(tr_send_after(ctx, tr_self(ctx), T_DATA, 15, 0, buf, len, NULL) == TR_OK);
    atomic_store(&tk_arm_st, tr_send_after(ctx, tr_self(ctx), T_TICK, 5, 5, NULL, 0, &t->periodic));
    return TR_OK;
  }
  EXPECT(tr_ref_eq(tr_msg_sender(msg), tr_self(ctx)));
  if (tr_msg_tag(msg) == T_DATA) {
    const char *s = NULL;
    size_t len = 0;
    EXPECT(tr_msg_get_str(msg, &s, &len) == TR_OK && len == 9 && memcmp(s, "tick-tock", 9) == 0);
    atomic_fetch_add(&tk_strs, 1);
    return TR_OK;
  }
  atomic_fetch_add(&tk_ticks, 1);
  if (++t->ticks == 3)
    atomic_store(&tk_cancel_st, tr_timer_cancel(ctx, t->periodic));
  return TR_OK;
}

Test(flow, timers_armed_inside_a_behaviour) {
  tr_system *sys = new_system(2);
  tr_actor_spec spec = {
      .name = "ticker", .behaviour = ticker_behaviour, .state_size = sizeof(ticker)};
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_send(tr_system_ctx(sys), r, T_GO));
  /* Quiescence needs the periodic timer cancelled by its receiver. */
  wait_promptly(sys, 3000);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&tk_arm_st), TR_OK);
  cr_assert_eq(atomic_load(&tk_cancel_st), TR_OK);
  cr_assert_eq(atomic_load(&tk_strs), 1);
  /* A tick already sent when it was cancelled is not recalled. */
  cr_assert(atomic_load(&tk_ticks) >= 3 && atomic_load(&tk_ticks) <= 4, "%u ticks",
            atomic_load(&tk_ticks));
  tr_system_free(sys);
}

/* ================================================================ ask / reply
 *
 * The asker asks `ask_target` when it gets T_GO (payload: the value to
 * ask about) and records every other message it gets: its tag, corr,
 * whether it is a reply, its uint payload (UINT64_MAX for nil), its sender.
 */
static tr_ref ask_target;
static _Atomic uint64_t ask_timeout_ms = 10000;
static _Atomic uint32_t ask_corr;
static _Atomic int ask_st = -1;
static _Atomic uint64_t ask_at; /* now_ns() when asked */

#define ANS_MAX 16
static _Atomic unsigned ans_n;
static _Atomic uint32_t ans_tag[ANS_MAX], ans_corr[ANS_MAX];
static _Atomic bool ans_is_reply[ANS_MAX], ans_nil[ANS_MAX];
static _Atomic uint64_t ans_val[ANS_MAX], ans_sender[ANS_MAX], ans_at[ANS_MAX];

static tr_status asker_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (tr_msg_tag(msg) == T_GO) {
    uint64_t v = 0;
    EXPECT(tr_msg_get_uint(msg, &v) == TR_OK);
    uint8_t buf[16];
    size_t len = mp_uint(v, buf, sizeof buf);
    uint32_t corr = 0;
    atomic_store(&ask_at, now_ns());
    atomic_store(&ask_st,
                 tr_ask(ctx, ask_target, T_Q, buf, len, atomic_load(&ask_timeout_ms), &corr));
    atomic_store(&ask_corr, corr);
    return TR_OK;
  }
  unsigned i = atomic_fetch_add(&ans_n, 1);
  if (!EXPECT(i < ANS_MAX))
    return TR_OK;
  uint64_t v = UINT64_MAX;
  bool nil = tr_msg_is_nil(msg);
  if (!nil)
    EXPECT(tr_msg_get_uint(msg, &v) == TR_OK);
  atomic_store(&ans_tag[i], tr_msg_tag(msg));
  atomic_store(&ans_corr[i], tr_msg_corr(msg));
  atomic_store(&ans_is_reply[i], tr_msg_is_reply(msg));
  atomic_store(&ans_nil[i], nil);
  atomic_store(&ans_val[i], v);
  atomic_store(&ans_sender[i], tr_msg_sender(msg).id);
  atomic_store(&ans_at[i], now_ns());
  return TR_OK;
}

static const tr_actor_spec asker_spec = {.name = "asker", .behaviour = asker_behaviour};

/* Repliers. */
static _Atomic unsigned req_n;
static _Atomic uint32_t req_corr;
static _Atomic uint64_t req_sender;
static _Atomic bool req_is_reply = true;
static _Atomic int reply_st = -1, reply2_st = -1;
static _Atomic unsigned late_ms = 150;

static void note_request(const tr_msg *msg) {
  atomic_fetch_add(&req_n, 1);
  atomic_store(&req_corr, tr_msg_corr(msg));
  atomic_store(&req_sender, tr_msg_sender(msg).id);
  atomic_store(&req_is_reply, tr_msg_is_reply(msg));
}

/* Answers v with 2v. */
static tr_status doubler(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  note_request(msg);
  uint64_t v = 0;
  EXPECT(tr_msg_get_uint(msg, &v) == TR_OK);
  uint8_t buf[16];
  size_t len = mp_uint(2 * v, buf, sizeof buf);
  atomic_store(&reply_st, tr_reply(ctx, msg, T_A, buf, len));
  return TR_OK;
}

static tr_status silent(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  note_request(msg);
  return TR_OK;
}

/* Answers after late_ms, while still handling the request. */
static tr_status late_replier(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  note_request(msg);
  sleep_ms(atomic_load(&late_ms));
  uint8_t buf[16];
  size_t len = mp_uint(1, buf, sizeof buf);
  atomic_store(&reply_st, tr_reply(ctx, msg, T_A, buf, len));
  return TR_OK;
}

/* Answers twice. */
static tr_status twice(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  note_request(msg);
  uint8_t buf[16];
  size_t len = mp_uint(1, buf, sizeof buf);
  atomic_store(&reply_st, tr_reply(ctx, msg, T_A, buf, len));
  len = mp_uint(2, buf, sizeof buf);
  atomic_store(&reply2_st, tr_reply(ctx, msg, T_A, buf, len));
  return TR_OK;
}

/* Start `replier` and an asker; ask once about `v`; wait. */
static tr_system *ask_once(tr_behaviour replier, unsigned workers, uint64_t timeout_ms, uint64_t v,
                           tr_ref *asker, tr_ref *target) {
  tr_system *sys = new_system(workers);
  tr_actor_spec rspec = {.name = "replier", .behaviour = replier};
  ask_target = spawn(sys, &rspec, NULL);
  *target = ask_target;
  *asker = spawn(sys, &asker_spec, NULL);
  atomic_store(&ask_timeout_ms, timeout_ms);
  OK(tr_system_start(sys));
  OK(tr_send_uint(tr_system_ctx(sys), *asker, T_GO, v));
  WAIT(sys);
  ASSERT_NO_BAD();
  cr_assert_eq(atomic_load(&ask_st), TR_OK, "tr_ask: %s", tr_status_name(atomic_load(&ask_st)));
  cr_assert_neq(atomic_load(&ask_corr), 0, "tr_ask gave correlation id 0");
  return sys;
}

Test(flow, ask_gets_its_reply) {
  tr_ref asker, target;
  uint64_t t0 = now_ns();
  tr_system *sys = ask_once(doubler, 2, 10000, 21, &asker, &target);
  /* The reply settled the ask: its 10 s timeout must not hold up wait. */
  cr_assert_lt(ms_since(t0), 5000.0, "tr_system_wait waited for a settled ask's timeout");
  uint32_t corr = atomic_load(&ask_corr);
  cr_assert_eq(atomic_load(&req_n), 1);
  cr_assert_eq(atomic_load(&req_corr), corr, "the request carries the ask's corr");
  cr_assert(!atomic_load(&req_is_reply));
  cr_assert_eq(atomic_load(&req_sender), asker.id, "the request's sender is the asker");
  cr_assert_eq(atomic_load(&reply_st), TR_OK);
  cr_assert_eq(atomic_load(&ans_n), 1, "the asker got %u messages", atomic_load(&ans_n));
  cr_assert_eq(atomic_load(&ans_tag[0]), T_A);
  cr_assert_eq(atomic_load(&ans_corr[0]), corr);
  cr_assert(atomic_load(&ans_is_reply[0]));
  cr_assert_eq(atomic_load(&ans_val[0]), 42);
  cr_assert_eq(atomic_load(&ans_sender[0]), target.id, "the reply comes from the replier");
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.asks, 1);
  cr_assert_eq(s.ask_timeouts, 0);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(flow, ask_without_reply_times_out) {
  const uint64_t timeout = 50;
  tr_ref asker, target;
  tr_system *sys = ask_once(silent, 2, timeout, 1, &asker, &target);
  cr_assert_eq(atomic_load(&req_n), 1);
  cr_assert_eq(atomic_load(&ans_n), 1);
  cr_assert_eq(atomic_load(&ans_tag[0]), TR_TAG_TIMEOUT);
  cr_assert_eq(atomic_load(&ans_corr[0]), atomic_load(&ask_corr));
  cr_assert(!atomic_load(&ans_is_reply[0]));
  cr_assert(atomic_load(&ans_nil[0]), "a timeout carries nil");
  double after = (double)(atomic_load(&ans_at[0]) - atomic_load(&ask_at)) / 1e6;
  cr_assert_geq(after, (double)timeout, "timed out after %.1f ms, timeout %llu", after,
                (unsigned long long)timeout);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.asks, 1);
  cr_assert_eq(s.ask_timeouts, 1);
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(flow, late_reply_is_a_dead_letter) {
  tr_ref asker, target;
  atomic_store(&late_ms, 150);
  tr_system *sys = ask_once(late_replier, 2, 30, 1, &asker, &target);
  cr_assert_eq(atomic_load(&reply_st), TR_OK, "a late reply still returns TR_OK: %s",
               tr_status_name(atomic_load(&reply_st)));
  cr_assert_eq(atomic_load(&ans_n), 1, "the asker got %u messages", atomic_load(&ans_n));
  cr_assert_eq(atomic_load(&ans_tag[0]), TR_TAG_TIMEOUT);
  cr_assert_eq(atomic_load(&ans_corr[0]), atomic_load(&ask_corr));
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.ask_timeouts, 1);
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_LATE_REPLY] = 1;
  assert_dead(sys, want);
  assert_conserved(sys);
  tr_system_free(sys);
}

/* The same with one worker: the timeout fires while the only worker is
 * inside the replier, so the asker cannot even run before the reply. */
Test(flow, late_reply_is_a_dead_letter_1_worker) {
  tr_ref asker, target;
  atomic_store(&late_ms, 150);
  tr_system *sys = ask_once(late_replier, 1, 30, 1, &asker, &target);
  cr_assert_eq(atomic_load(&ans_n), 1, "the asker got %u messages", atomic_load(&ans_n));
  cr_assert_eq(atomic_load(&ans_tag[0]), TR_TAG_TIMEOUT);
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_LATE_REPLY], 1);
  tr_system_free(sys);
}

Test(flow, second_reply_is_a_dead_letter) {
  tr_ref asker, target;
  tr_system *sys = ask_once(twice, 2, 10000, 1, &asker, &target);
  cr_assert_eq(atomic_load(&reply_st), TR_OK);
  cr_assert_eq(atomic_load(&reply2_st), TR_OK);
  cr_assert_eq(atomic_load(&ans_n), 1, "one ask, %u answers", atomic_load(&ans_n));
  cr_assert_eq(atomic_load(&ans_val[0]), 1);
  cr_assert(atomic_load(&ans_is_reply[0]));
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_LATE_REPLY], 1);
  tr_system_free(sys);
}

/* tr_reply on a message that is not a request. */
static _Atomic int nonask_reply_st = -1;
static _Atomic uint32_t nonask_corr = 99;
static _Atomic bool nonask_is_reply = true;

static tr_status reply_to_plain(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  atomic_store(&nonask_corr, tr_msg_corr(msg));
  atomic_store(&nonask_is_reply, tr_msg_is_reply(msg));
  atomic_store(&nonask_reply_st, tr_reply(ctx, msg, T_A, NULL, 0));
  return TR_OK;
}

Test(flow, reply_to_a_plain_message_is_einval) {
  tr_system *sys = new_system(1);
  tr_actor_spec spec = {.name = "plain", .behaviour = reply_to_plain};
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_send_uint(tr_system_ctx(sys), r, T_DATA, 1));
  WAIT(sys);
  cr_assert_eq(atomic_load(&nonask_reply_st), TR_EINVAL, "tr_reply to a plain message: %s",
               tr_status_name(atomic_load(&nonask_reply_st)));
  cr_assert_eq(atomic_load(&nonask_corr), 0);
  cr_assert(!atomic_load(&nonask_is_reply));
  assert_no_dead(sys);
  cr_assert_eq(stats(sys).sent, 1);
  tr_system_free(sys);
}

Test(flow, ask_outside_a_behaviour_is_estate) {
  tr_system *sys = new_system(1);
  tr_ref r = spawn(sys, &record_spec, NULL);
  uint32_t corr = 0;
  EXPECT_ST(tr_ask(tr_system_ctx(sys), r, T_Q, NULL, 0, 100, &corr), TR_ESTATE);
  OK(tr_system_start(sys));
  EXPECT_ST(tr_ask(tr_system_ctx(sys), r, T_Q, NULL, 0, 100, &corr), TR_ESTATE);
  tr_ctx *b = NULL;
  OK(tr_ctx_new_blocking(sys, 100, &b));
  EXPECT_ST(tr_ask(b, r, T_Q, NULL, 0, 100, NULL), TR_ESTATE);
  WAIT(sys);
  cr_assert_eq(atomic_load(&rec_n), 0, "a refused ask was sent");
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.asks, 0);
  cr_assert_eq(s.sent, 0);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* Bad asks inside a behaviour: each fails, and no timeout follows. */
static tr_ref bad_stale;
static _Atomic int bad_st[6] = {-1, -1, -1, -1, -1, -1};
static _Atomic unsigned bad_others;

static tr_status bad_asker(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (tr_msg_tag(msg) != T_GO) {
    atomic_fetch_add(&bad_others, 1);
    return TR_OK;
  }
  static const uint8_t truncated[] = {0x92, 0x01};
  uint32_t c = 0;
  tr_ref self = tr_self(ctx);
  atomic_store(&bad_st[0], tr_ask(ctx, self, T_Q, NULL, 0, 0, &c));
  atomic_store(&bad_st[1], tr_ask(ctx, self, T_Q, NULL, 0, TR_TIMER_MAX_MS + 1, &c));
  atomic_store(&bad_st[2], tr_ask(ctx, self, T_Q, truncated, sizeof truncated, 100, &c));
  atomic_store(&bad_st[3], tr_ask(ctx, bad_stale, T_Q, NULL, 0, 100, &c));
  atomic_store(&bad_st[4], tr_ask(ctx, self, T_Q, NULL, 0, UINT64_MAX, &c));
  /* A good one with corr NULL, to itself: its request arrives. */
  atomic_store(&bad_st[5], tr_ask(ctx, self, T_Q, NULL, 0, 30, NULL));
  return TR_OK;
}

Test(flow, ask_bad_args_send_nothing) {
  tr_system *sys = new_system(1);
  tr_actor_spec spec = {.name = "bad-asker", .behaviour = bad_asker};
  bad_stale = spawn(sys, &record_spec, NULL);
  OK(tr_stop(tr_system_ctx(sys), bad_stale));
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  WAIT(sys);
  OK(tr_send(tr_system_ctx(sys), r, T_GO));
  WAIT(sys);
  static const tr_status want[6] = {TR_EINVAL, TR_EINVAL, TR_EMALFORMED,
                                    TR_ESTALE, TR_EINVAL, TR_OK};
  for (unsigned i = 0; i < 6; i++)
    cr_assert_eq(atomic_load(&bad_st[i]), want[i], "bad ask %u: got %s, want %s", i,
                 tr_status_name(atomic_load(&bad_st[i])), tr_status_name(want[i]));
  /* Only the good ask: its request, then its timeout (nobody replies). */
  cr_assert_eq(atomic_load(&bad_others), 2, "%u messages after the bad asks",
               atomic_load(&bad_others));
  tr_system_stats s = stats(sys);
  /* "On any error no request was sent": only the good ask counts. */
  cr_assert_eq(s.asks, 1, "asks %llu after 1 good and 5 refused asks", (unsigned long long)s.asks);
  cr_assert_eq(s.ask_timeouts, 1);
  tr_system_free(sys);
}

/* Many asks, reply delays scattered around the timeout: exactly one answer
 * per ask, and every reply that lost the race is a LATE_REPLY. Asks go out
 * in waves of MA_WAVE, each to its own replier, and a wave starts when the
 * last one is settled, so the repliers' sleeps overlap on MA_WORKERS
 * workers instead of queueing behind each other. */
#define MA_N       200
#define MA_WAVE    8
#define MA_WORKERS 12
#define MA_TIMEOUT 20

static tr_ref ma_targets[MA_N];
static uint64_t ma_delay[MA_N];
static _Atomic unsigned ma_replies, ma_timeouts, ma_replies_sent;

typedef struct many_asker {
  unsigned next, outstanding;
  uint32_t corr[MA_N];
  uint8_t answered[MA_N];
} many_asker;

static void ma_wave(tr_ctx *ctx, many_asker *a) {
  for (unsigned j = 0; j < MA_WAVE && a->next < MA_N; j++) {
    unsigned i = a->next++;
    tr_val v[2] = {tr_uint(i), tr_uint(ma_delay[i])};
    uint8_t buf[32];
    size_t len = 0;
    EXPECT(tr_mp_encode_vals(v, 2, true, buf, sizeof buf, &len) == TR_OK);
    uint32_t corr = 0;
    if (!EXPECT(tr_ask(ctx, ma_targets[i], T_Q, buf, len, MA_TIMEOUT, &corr) == TR_OK))
      continue;
    /* Unique among the asks still open. */
    for (unsigned o = 0; o < i; o++)
      EXPECT(a->answered[o] || a->corr[o] != corr);
    a->corr[i] = corr;
    a->outstanding++;
  }
}

static tr_status many_asker_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  many_asker *a = state;
  if (tr_msg_tag(msg) == T_GO) {
    ma_wave(ctx, a);
    return TR_OK;
  }
  uint32_t corr = tr_msg_corr(msg);
  unsigned i = MA_N;
  for (unsigned o = 0; o < a->next; o++)
    if (!a->answered[o] && a->corr[o] == corr) {
      i = o;
      break;
    }
  if (!EXPECT(i < MA_N)) /* an answer to no open ask: a duplicate */
    return TR_OK;
  a->answered[i] = 1;
  if (tr_msg_tag(msg) == TR_TAG_TIMEOUT) {
    EXPECT(!tr_msg_is_reply(msg));
    atomic_fetch_add(&ma_timeouts, 1);
  } else {
    EXPECT(tr_msg_is_reply(msg) && tr_msg_tag(msg) == T_A);
    tr_val v[2];
    size_t n = 0;
    uint64_t echoed = MA_N;
    EXPECT(tr_msg_get_vals(msg, v, 2, &n) == TR_OK && n == 2 &&
           tr_val_get_uint(&v[0], &echoed) == TR_OK && echoed == i);
    atomic_fetch_add(&ma_replies, 1);
  }
  if (--a->outstanding == 0)
    ma_wave(ctx, a);
  return TR_OK;
}

static tr_status ma_replier(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  tr_val v[2];
  size_t n = 0;
  uint64_t delay = 0;
  EXPECT(tr_msg_get_vals(msg, v, 2, &n) == TR_OK && n == 2 &&
         tr_val_get_uint(&v[1], &delay) == TR_OK);
  sleep_ms((unsigned)delay);
  size_t len = 0;
  const void *p = tr_msg_payload(msg, &len);
  EXPECT(tr_reply(ctx, msg, T_A, p, len) == TR_OK);
  atomic_fetch_add(&ma_replies_sent, 1);
  return TR_OK;
}

Test(flow, exactly_one_answer_per_ask) {
  tr_system *sys = new_system(MA_WORKERS);
  tr_actor_spec rspec = {.name = "ma-replier", .behaviour = ma_replier};
  tr_actor_spec aspec = {
      .name = "ma-asker", .behaviour = many_asker_behaviour, .state_size = sizeof(many_asker)};
  uint64_t rng = 0x9e3779b97f4a7c15ull;
  for (unsigned i = 0; i < MA_N; i++) {
    ma_targets[i] = spawn(sys, &rspec, NULL);
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    ma_delay[i] = rng % (2 * MA_TIMEOUT + 1); /* 0 .. 2 x timeout */
  }
  tr_ref a = spawn(sys, &aspec, NULL);
  OK(tr_system_start(sys));
  OK(tr_send(tr_system_ctx(sys), a, T_GO));
  EXPECT_ST(tr_system_wait_for(sys, 30000), TR_OK);
  ASSERT_NO_BAD();
  unsigned replies = atomic_load(&ma_replies), timeouts = atomic_load(&ma_timeouts);
  cr_assert_eq(replies + timeouts, MA_N, "%u replies + %u timeouts for %u asks", replies, timeouts,
               MA_N);
  cr_assert_eq(atomic_load(&ma_replies_sent), MA_N);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.asks, MA_N);
  cr_assert_eq(s.ask_timeouts, timeouts);
  /* Every replier answered once: each ask that timed out got one late reply. */
  cr_assert_eq(s.dead_letters[TR_DEAD_LATE_REPLY], timeouts, "late replies %llu, timeouts %u",
               (unsigned long long)s.dead_letters[TR_DEAD_LATE_REPLY], timeouts);
  assert_conserved(sys);
  cr_log_info("asks: %u replies, %u timeouts", replies, timeouts);
  tr_system_free(sys);
}

/* ================================================================ tr_ask_wait */

/* Answers with tag+1 and the request's own payload bytes. */
static tr_status echo(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  size_t len = 0;
  const void *p = tr_msg_payload(msg, &len);
  EXPECT(tr_reply(ctx, msg, tr_msg_tag(msg) + 1, p, len) == TR_OK);
  return TR_OK;
}

static const tr_actor_spec echo_spec = {.name = "echo", .behaviour = echo};

Test(flow, ask_wait_copies_the_reply_out) {
  tr_system *sys = new_system(2);
  tr_ref r = spawn(sys, &echo_spec, NULL);
  OK(tr_system_start(sys));
  /* A payload bigger than a pooled block: bin 16 of 1000 bytes. */
  uint8_t req[1003];
  req[0] = 0xc5;
  req[1] = 1000 >> 8;
  req[2] = 1000 & 0xff;
  for (unsigned i = 0; i < 1000; i++)
    req[3 + i] = (uint8_t)(i * 31 + 7);
  for (unsigned round = 0; round < 3; round++) {
    size_t len = round == 0 ? sizeof req : 0;
    const void *payload = round == 0 ? req : NULL;
    uint32_t tag = 0;
    void *reply = NULL;
    size_t reply_len = 0;
    OK(tr_ask_wait(tr_system_ctx(sys), r, T_Q, payload, len, 10000, &tag, &reply, &reply_len));
    cr_assert_eq(tag, T_Q + 1);
    cr_assert_not_null(reply);
    if (round == 0) {
      cr_assert_eq(reply_len, sizeof req);
      cr_assert_arr_eq(reply, req, sizeof req);
    } else {
      cr_assert_eq(reply_len, 1);
      cr_assert_eq(((uint8_t *)reply)[0], 0xc0, "NULL payload is nil");
    }
    free(reply);
  }
  WAIT(sys);
  ASSERT_NO_BAD();
  assert_no_dead(sys);
  assert_conserved(sys);
  tr_system_free(sys);
}

Test(flow, ask_wait_times_out) {
  tr_system *sys = new_system(2);
  tr_actor_spec spec = {.name = "silent", .behaviour = silent};
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  uint32_t tag = 0;
  void *reply = NULL;
  size_t reply_len = 0;
  uint64_t t0 = now_ns();
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), r, T_Q, NULL, 0, 60, &tag, &reply, &reply_len),
            TR_ETIMEDOUT);
  double el = ms_since(t0);
  cr_assert_geq(el, 59.0, "ask_wait gave up after %.1f ms, timeout 60", el);
  cr_assert_lt(el, 10000.0);
  WAIT(sys);
  cr_assert_eq(atomic_load(&req_n), 1, "the request was delivered");
  assert_no_dead(sys);
  tr_system_free(sys);
}

Test(flow, ask_wait_late_reply_is_a_dead_letter) {
  tr_system *sys = new_system(2);
  tr_actor_spec spec = {.name = "late", .behaviour = late_replier};
  tr_ref r = spawn(sys, &spec, NULL);
  atomic_store(&late_ms, 150);
  OK(tr_system_start(sys));
  uint32_t tag = 0;
  void *reply = NULL;
  size_t reply_len = 0;
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), r, T_Q, NULL, 0, 30, &tag, &reply, &reply_len),
            TR_ETIMEDOUT);
  WAIT(sys);
  cr_assert_eq(atomic_load(&reply_st), TR_OK);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.dead_letters[TR_DEAD_LATE_REPLY], 1,
               "a reply after tr_ask_wait timed out: LATE_REPLY %llu, STALE %llu",
               (unsigned long long)s.dead_letters[TR_DEAD_LATE_REPLY],
               (unsigned long long)s.dead_letters[TR_DEAD_STALE]);
  /* The ctx still works for the next ask. */
  atomic_store(&late_ms, 0);
  OK(tr_ask_wait(tr_system_ctx(sys), r, T_Q, NULL, 0, 10000, &tag, &reply, &reply_len));
  cr_assert_eq(tag, T_A);
  free(reply);
  tr_system_free(sys);
}

Test(flow, ask_wait_state_and_stale_errors) {
  tr_system *sys = new_system(2);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r = spawn(sys, &echo_spec, NULL);
  uint32_t tag = 0;
  void *reply = NULL;
  size_t reply_len = 0;
  EXPECT_ST(tr_ask_wait(ctx, r, T_Q, NULL, 0, 100, &tag, &reply, &reply_len), TR_ESTATE);
  OK(tr_system_start(sys));
  OK(tr_stop(ctx, r));
  WAIT(sys);
  EXPECT_ST(tr_ask_wait(ctx, r, T_Q, NULL, 0, 100, &tag, &reply, &reply_len), TR_ESTALE);
  EXPECT_ST(tr_ask_wait(ctx, (tr_ref){0x0000000700003039ull}, T_Q, NULL, 0, 100, &tag, &reply,
                        &reply_len),
            TR_ESTALE);
  static const uint8_t truncated[] = {0x92, 0x01};
  tr_ref live = spawn(sys, &echo_spec, NULL);
  EXPECT_ST(tr_ask_wait(ctx, live, T_Q, truncated, sizeof truncated, 100, &tag, &reply, &reply_len),
            TR_EMALFORMED);
  EXPECT_ST(tr_ask_wait(NULL, live, T_Q, NULL, 0, 100, &tag, &reply, &reply_len), TR_EINVAL);
  WAIT(sys);
  cr_assert_eq(actor_stats(sys, live).received, 0, "a failed ask_wait sent its request");
  tr_system_free(sys);
}

/* From a worker, ask_wait would block a worker: refused. */
static _Atomic int in_worker_ask_wait = -1, in_worker_ask_wait_ext = -1;

static tr_status ask_wait_inside(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  (void)msg;
  uint32_t tag;
  void *reply = NULL;
  size_t len;
  atomic_store(&in_worker_ask_wait,
               tr_ask_wait(ctx, ask_target, T_Q, NULL, 0, 100, &tag, &reply, &len));
  atomic_store(&in_worker_ask_wait_ext, tr_ask_wait(tr_system_ctx(tr_ctx_system(ctx)), ask_target,
                                                    T_Q, NULL, 0, 100, &tag, &reply, &len));
  return TR_OK;
}

Test(flow, ask_wait_from_a_worker_is_estate) {
  tr_system *sys = new_system(2);
  ask_target = spawn(sys, &echo_spec, NULL);
  tr_actor_spec spec = {.name = "inside", .behaviour = ask_wait_inside};
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  OK(tr_send(tr_system_ctx(sys), r, T_GO));
  WAIT(sys);
  cr_assert_eq(atomic_load(&in_worker_ask_wait), TR_ESTATE);
  cr_assert_eq(atomic_load(&in_worker_ask_wait_ext), TR_ESTATE);
  tr_system_free(sys);
}

Test(flow, ask_wait_to_a_full_mailbox_is_efull) {
  const unsigned k = 2;
  tr_system *sys = new_system(2);
  tr_actor_spec spec = bounded_spec(TR_MAILBOX_REFUSE, k);
  tr_ref r = spawn(sys, &spec, NULL);
  OK(tr_system_start(sys));
  hold_on_gate(sys, r);
  unsigned filled = fill_until_full(sys, r, k, 0);
  uint32_t tag = 0;
  void *reply = NULL;
  size_t reply_len = 0;
  uint64_t t0 = now_ns();
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), r, T_Q, NULL, 0, 5000, &tag, &reply, &reply_len),
            TR_EFULL);
  cr_assert_lt(ms_since(t0), 2500.0, "EFULL should come at once");
  atomic_store(&gate_open, true);
  WAIT(sys);
  cr_assert_eq(atomic_load(&rec_n), filled);
  tr_system_free(sys);
}

/* Several outside threads asking at once each get their own reply. */
#define AW_THREADS 4
#define AW_ASKS    50

typedef struct aw_arg {
  tr_system *sys;
  tr_ref to;
  unsigned id;
} aw_arg;

static void *aw_thread(void *p) {
  aw_arg *a = p;
  for (uint64_t i = 0; i < AW_ASKS; i++) {
    uint8_t buf[16];
    size_t len = mp_uint(a->id * 1000u + i, buf, sizeof buf);
    uint32_t tag = 0;
    void *reply = NULL;
    size_t reply_len = 0;
    if (!EXPECT(tr_ask_wait(tr_system_ctx(a->sys), a->to, T_Q, buf, len, 20000, &tag, &reply,
                            &reply_len) == TR_OK))
      continue;
    EXPECT(tag == T_Q + 1 && reply_len == len && memcmp(reply, buf, len) == 0);
    free(reply);
  }
  return NULL;
}

Test(flow, ask_wait_from_several_threads) {
  tr_system *sys = new_system(2);
  tr_ref r = spawn(sys, &echo_spec, NULL);
  OK(tr_system_start(sys));
  pthread_t t[AW_THREADS];
  aw_arg args[AW_THREADS];
  for (unsigned i = 0; i < AW_THREADS; i++) {
    args[i] = (aw_arg){sys, r, i};
    cr_assert_eq(pthread_create(&t[i], NULL, aw_thread, &args[i]), 0);
  }
  for (unsigned i = 0; i < AW_THREADS; i++)
    pthread_join(t[i], NULL);
  WAIT(sys);
  ASSERT_NO_BAD();
  /* (The system's own counters also include the runtime's helpers for
   * tr_ask_wait: count at the echo actor.) */
  cr_assert_eq(actor_stats(sys, r).handled, AW_THREADS * AW_ASKS);
  assert_no_dead(sys);
  tr_system_free(sys);
}
