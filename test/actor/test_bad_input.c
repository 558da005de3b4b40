/*
 * test_bad_input.c - the bad input table, one test per row.
 *
 * docs/bad-input.md lists every public function's bad inputs and the status
 * each gets; every row names one Test() here (suite bad_input), and every
 * Test() here is one row. Each test provokes its bad input, asserts the
 * exact status, and asserts that nothing happened: the system counters that
 * record messages, actors, timers and asks moved by exactly what the row
 * says (usually nothing; a stale send counts one STALE dead letter, as the
 * header says), out-parameters were left untouched, and, since the suite
 * also runs under AddressSanitizer, nothing leaked.
 *
 * Where the code and a header disagree, the test asserts what the code does
 * and says so in a "DISAGREES" comment; the table marks the same rows.
 *
 * Calls that need a behaviour (getters, tr_become, tr_ask, tr_reply, calls
 * a worker must not make) run in a probe actor, which records statuses in
 * atomics; the main thread asserts them after tr_system_wait_for (Criterion's
 * asserts must not run on a worker).
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <troupe.h>

#include "../common/tr_test.h"

TestSuite(bad_input, .timeout = 60);

/* A msgpack byte string and its length, for (bytes, len) parameters. */
#define MP(s) (s), (sizeof(s) - 1)

/* Payloads. */
#define MP_NIL      "\xc0"
#define MP_TRUE     "\xc3"
#define MP_UINT5    "\x05"
#define MP_NEG1     "\xff"
#define MP_U2_63    "\xcf\x80\x00\x00\x00\x00\x00\x00\x00" /* 2^63: over INT64_MAX */
#define MP_DOUBLE   "\xcb\x3f\xf8\x00\x00\x00\x00\x00\x00" /* 1.5 */
#define MP_STR      "\243abc" /* octal escapes: no hex digit can run on */
#define MP_BIN      "\304\003abc"
#define MP_STR4     "\244abcd" /* 5 bytes */
#define MP_ARRAY3   "\x93\x01\x02\x03"
#define MP_NESTED   "\x92\x01\x91\x02"     /* [1, [2]] */
#define MP_NESTED3  "\x93\x01\x02\x91\x03" /* [1, 2, [3]]: nested and 3 long */
#define MP_MAP      "\x81\x01\x02"
#define MP_EXT      "\xd4\x01\x00"
#define MP_ARR_EXT  "\x91\xd4\x01\x00"
#define MP_TRUNC    "\245ab"               /* str of 5, 2 bytes given */
#define MP_TRAILING "\x01\x02"             /* two values */
#define MP_RESERVED "\xc1"                 /* never used */
#define MP_HUGE_ARR "\xdd\xff\xff\xff\xff" /* array32 claiming 2^32-1 elements */

enum { TAG = 7, TAG_GO = 1, TAG_REQ = 2 };

/* ================================================================ helpers */

static tr_system *sys_new(unsigned threads, size_t max_msg) {
  tr_system_config cfg = {.threads = threads, .max_msg_size = max_msg};
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  cr_assert_not_null(sys);
  return sys;
}

static tr_system *sys_started(unsigned threads, size_t max_msg) {
  tr_system *sys = sys_new(threads, max_msg);
  OK(tr_system_start(sys));
  return sys;
}

/* The counters that say whether something happened, compared exactly:
 * `after` must equal `before` plus `delta` (scheduler counters such as runs
 * and parks are noise and left out). Every mismatch is reported. */
static void expect_delta_at(const tr_system_stats *b, const tr_system_stats *a,
                            const tr_system_stats *d, int line) {
#define FIELD(f)                                                                                   \
  cr_expect_eq(a->f, b->f + d->f, "line %d: " #f " is %llu, want %llu + %llu", line,               \
               (unsigned long long)a->f, (unsigned long long)b->f, (unsigned long long)d->f)
  FIELD(actors_spawned);
  FIELD(actors_stopped);
  FIELD(sent);
  FIELD(handled);
  FIELD(refused);
  FIELD(holds);
  FIELD(timers_armed);
  FIELD(timers_fired);
  FIELD(timers_cancelled);
  FIELD(asks);
  FIELD(ask_timeouts);
#undef FIELD
  for (unsigned r = 0; r < TR_DEAD_REASON_COUNT; r++)
    cr_expect_eq(a->dead_letters[r], b->dead_letters[r] + d->dead_letters[r],
                 "line %d: dead_letters[%s] is %llu, want %llu + %llu", line,
                 tr_dead_reason_name((tr_dead_reason)r), (unsigned long long)a->dead_letters[r],
                 (unsigned long long)b->dead_letters[r], (unsigned long long)d->dead_letters[r]);
}

#define EXPECT_DELTA(sys, before, ...)                                                             \
  do {                                                                                             \
    tr_system_stats after_ = stats(sys);                                                           \
    tr_system_stats delta_ = {__VA_ARGS__};                                                        \
    expect_delta_at(&(before), &after_, &delta_, __LINE__);                                        \
  } while (0)
#define EXPECT_NOTHING(sys, before) EXPECT_DELTA(sys, before, .threads = 0)
#define STALE_1                     .dead_letters[TR_DEAD_STALE] = 1

/* A ref to an actor that has stopped (its slot is free again). */
static _Atomic uint64_t sunk;
static tr_status sink_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  (void)msg;
  atomic_fetch_add(&sunk, 1);
  return TR_OK;
}
static const tr_actor_spec sink_spec = {.name = "sink", .behaviour = sink_behaviour};

static tr_ref stopped_ref(tr_system *sys) {
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  OK(tr_stop(tr_system_ctx(sys), r));
  WAIT(sys);
  return r;
}

/* Bounded specs. */
static tr_actor_spec bounded(tr_mailbox_policy policy, unsigned capacity) {
  tr_actor_spec s = {.name = "bounded",
                     .behaviour = sink_behaviour,
                     .mailbox_policy = policy,
                     .mailbox_capacity = capacity};
  return s;
}

/* Sleep-wait in a behaviour for a flag set elsewhere, with a deadline. */
static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}
static bool wait_flag(_Atomic int *flag, int want) {
  uint64_t deadline = now_ms() + 10000;
  while (atomic_load(flag) < want) {
    if (now_ms() > deadline)
      return false;
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  }
  return true;
}

/* ---------------------------------------------------------------- probe */

/* What the probe actor does with the message it handles. */
typedef void (*probe_fn)(tr_ctx *ctx, const tr_msg *msg);
static probe_fn probe_body;
static tr_ref g_target; /* another actor a probe talks to */

/* Statuses a behaviour recorded (-1: not recorded) and whether the
 * out-parameters of that call were left untouched. */
static _Atomic int got[4] = {-1, -1, -1, -1};
static _Atomic bool kept[4];
static _Atomic uint64_t got_n;

static void rec(int i, tr_status st) { atomic_store(&got[i], (int)st); }

#define GOT(i, want)                                                                               \
  cr_assert_eq(atomic_load(&got[i]), (int)(want), "got[%d] is %s, want %s", (i),                   \
               tr_status_name((tr_status)atomic_load(&got[i])), tr_status_name(want))
#define KEPT(i) cr_assert(atomic_load(&kept[i]), "an out-parameter was written on error")

static tr_status probe_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (probe_body != NULL)
    probe_body(ctx, msg);
  return TR_OK;
}
static const tr_actor_spec probe_spec = {.name = "probe", .behaviour = probe_behaviour};

/* In a started system: spawn a probe running `fn`, let it handle one
 * message carrying `mp`, wait. Returns the counters from just before that
 * message was sent. */
static tr_system_stats probe_with(tr_system *sys, probe_fn fn, const void *mp, size_t len) {
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref p;
  probe_body = fn;
  OK(tr_spawn(ctx, &probe_spec, NULL, &p));
  WAIT(sys);
  tr_system_stats before = stats(sys);
  OK(tr_send_msgpack(ctx, p, TAG, mp, len));
  WAIT(sys);
  return before;
}

/* A probe whose calls have no effect on the system: exactly the probe's
 * own message was sent and handled. */
static void probe_payload(probe_fn fn, const void *mp, size_t len) {
  tr_system *sys = sys_started(1, 0);
  tr_system_stats before = probe_with(sys, fn, mp, len);
  EXPECT_DELTA(sys, before, .sent = 1, .handled = 1);
  tr_system_free(sys);
}

/* ================================================================ status.h */

Test(bad_input, strerror_out_of_range) {
  const int bad[] = {TR_STATUS_COUNT_, TR_STATUS_COUNT_ + 1, 1000, -1, INT32_MIN, INT32_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_str_eq(tr_strerror((tr_status)bad[i]), "unknown status");
}

Test(bad_input, status_name_out_of_range) {
  const int bad[] = {TR_STATUS_COUNT_, TR_STATUS_COUNT_ + 1, 1000, -1, INT32_MIN, INT32_MAX};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_str_eq(tr_status_name((tr_status)bad[i]), "UNKNOWN");
}

/* ================================================================ system */

#define SENTINEL_SYS ((tr_system *)(uintptr_t)0x5151)

static void expect_new_fails(tr_system_config cfg) {
  tr_system *sys = SENTINEL_SYS;
  EXPECT_ST(tr_system_new(&cfg, &sys), TR_EINVAL);
  cr_assert_eq(sys, SENTINEL_SYS, "a refused tr_system_new wrote *out");
}

Test(bad_input, system_new_null_out) {
  tr_system_config cfg = {.threads = 1};
  EXPECT_ST(tr_system_new(&cfg, NULL), TR_EINVAL);
  EXPECT_ST(tr_system_new(NULL, NULL), TR_EINVAL);
}

Test(bad_input, system_new_threads_over_max) {
  expect_new_fails((tr_system_config){.threads = TR_MAX_THREADS + 1});
  expect_new_fails((tr_system_config){.threads = UINT32_MAX});
}

Test(bad_input, system_new_batch_over_max) {
  expect_new_fails((tr_system_config){.threads = 1, .batch = TR_MAX_BATCH + 1});
  expect_new_fails((tr_system_config){.threads = 1, .batch = UINT32_MAX});
}

Test(bad_input, system_new_slots_not_power_of_two) {
  const unsigned bad[] = {3, 5, 6, 12, 100, 65535};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_new_fails((tr_system_config){.threads = 1, .mailbox_slots = bad[i]});
}

Test(bad_input, system_new_slots_out_of_range) {
  const unsigned bad[] = {1, 2, TR_MAX_MAILBOX_SLOTS * 2, 1u << 31};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    expect_new_fails((tr_system_config){.threads = 1, .mailbox_slots = bad[i]});
}

/* Deterministic mode runs one worker only. */
Test(bad_input, system_new_seed_with_threads) {
  expect_new_fails((tr_system_config){.threads = 2, .seed = 1});
  expect_new_fails((tr_system_config){.threads = TR_MAX_THREADS, .seed = UINT64_MAX});
}

/* DISAGREES: the header does not list max_msg_size among the bad configs. */
Test(bad_input, system_new_max_msg_size_over_u32) {
  expect_new_fails((tr_system_config){.threads = 1, .max_msg_size = (size_t)UINT32_MAX + 1});
  expect_new_fails((tr_system_config){.threads = 1, .max_msg_size = SIZE_MAX});
}

/* DISAGREES: TR_EINVAL for NULL is not in the header's list. */
Test(bad_input, system_start_null) { EXPECT_ST(tr_system_start(NULL), TR_EINVAL); }

Test(bad_input, system_start_twice) {
  tr_system *sys = sys_started(1, 0);
  EXPECT_ST(tr_system_start(sys), TR_ESTATE);
  cr_assert_eq(tr_system_threads(sys), 1);
  WAIT(sys);
  tr_system_free(sys);
}

Test(bad_input, system_start_after_stop) {
  tr_system *sys = sys_started(1, 0);
  OK(tr_system_stop(sys));
  EXPECT_ST(tr_system_start(sys), TR_ESTATE);
  tr_system_free(sys);
  /* Stopped before it ever started: the same. */
  sys = sys_new(1, 0);
  OK(tr_system_stop(sys));
  EXPECT_ST(tr_system_start(sys), TR_ESTATE);
  tr_system_free(sys);
}

static void p_start(tr_ctx *c, const tr_msg *m) {
  (void)m;
  rec(0, tr_system_start(tr_ctx_system(c)));
}
Test(bad_input, system_start_inside_behaviour) {
  probe_payload(p_start, MP(MP_NIL));
  GOT(0, TR_ESTATE);
}

/* DISAGREES: TR_EINVAL for NULL is not in the header's list. */
Test(bad_input, system_wait_null) { EXPECT_ST(tr_system_wait(NULL), TR_EINVAL); }

Test(bad_input, system_wait_before_start) {
  tr_system *sys = sys_new(1, 0);
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  OK(tr_send(tr_system_ctx(sys), r, TAG));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_system_wait(sys), TR_ESTATE);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

static void p_wait(tr_ctx *c, const tr_msg *m) {
  (void)m;
  rec(0, tr_system_wait(tr_ctx_system(c)));
}
Test(bad_input, system_wait_inside_behaviour) {
  probe_payload(p_wait, MP(MP_NIL));
  GOT(0, TR_ESTATE);
}

Test(bad_input, system_wait_after_stop) {
  tr_system *sys = sys_started(1, 0);
  OK(tr_system_stop(sys));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_system_wait(sys), TR_OK); /* returns at once */
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

/* DISAGREES: TR_EINVAL for NULL is not in the header's list. */
Test(bad_input, system_wait_for_null) { EXPECT_ST(tr_system_wait_for(NULL, 10), TR_EINVAL); }

Test(bad_input, system_wait_for_before_start) {
  tr_system *sys = sys_new(1, 0);
  EXPECT_ST(tr_system_wait_for(sys, 0), TR_ESTATE);
  EXPECT_ST(tr_system_wait_for(sys, 10), TR_ESTATE);
  tr_system_free(sys);
}

static void p_wait_for(tr_ctx *c, const tr_msg *m) {
  (void)m;
  rec(0, tr_system_wait_for(tr_ctx_system(c), 1));
}
Test(bad_input, system_wait_for_inside_behaviour) {
  probe_payload(p_wait_for, MP(MP_NIL));
  GOT(0, TR_ESTATE);
}

Test(bad_input, system_wait_for_zero_timeout_busy) {
  tr_system *sys = sys_started(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r;
  OK(tr_spawn(ctx, &sink_spec, NULL, &r));
  tr_timer t;
  OK(tr_send_after(ctx, r, TAG, 3600 * 1000, 0, NULL, 0, &t)); /* keeps it busy */
  EXPECT_ST(tr_system_wait_for(sys, 0), TR_ETIMEDOUT);
  EXPECT_ST(tr_system_wait_for(sys, 1), TR_ETIMEDOUT);
  OK(tr_timer_cancel(ctx, t));
  WAIT(sys);
  cr_assert_eq(atomic_load(&sunk), 0);
  tr_system_free(sys);
}

Test(bad_input, system_wait_for_absurd_timeout) {
  tr_system *sys = sys_started(1, 0);
  WAIT(sys);
  EXPECT_ST(tr_system_wait_for(sys, UINT64_MAX - 1), TR_OK); /* quiescent: at once */
  tr_system_free(sys);
}

/* DISAGREES: TR_EINVAL for NULL is not in the header's list. */
Test(bad_input, system_stop_null) { EXPECT_ST(tr_system_stop(NULL), TR_EINVAL); }

static void p_stop_sys(tr_ctx *c, const tr_msg *m) {
  (void)m;
  rec(0, tr_system_stop(tr_ctx_system(c)));
}
Test(bad_input, system_stop_inside_behaviour) {
  tr_system *sys = sys_started(1, 0);
  tr_system_stats before = probe_with(sys, p_stop_sys, MP(MP_NIL));
  GOT(0, TR_ESTATE);
  EXPECT_DELTA(sys, before, .sent = 1, .handled = 1);
  /* It still runs. */
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  OK(tr_send(tr_system_ctx(sys), r, TAG));
  WAIT(sys);
  cr_assert_eq(atomic_load(&sunk), 1);
  tr_system_free(sys);
}

Test(bad_input, system_stop_twice) {
  tr_system *sys = sys_started(1, 0);
  OK(tr_system_stop(sys));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_system_stop(sys), TR_OK); /* idempotent */
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, system_free_null) { tr_system_free(NULL); }

/* A bug, not the environment: tri_assert aborts the process. */
static void p_free_sys(tr_ctx *c, const tr_msg *m) {
  (void)m;
  tr_system_free(tr_ctx_system(c));
}
Test(bad_input, system_free_inside_behaviour, .signal = SIGABRT) {
  tr_system *sys = sys_started(1, 0);
  tr_ref p;
  probe_body = p_free_sys;
  OK(tr_spawn(tr_system_ctx(sys), &probe_spec, NULL, &p));
  OK(tr_send(tr_system_ctx(sys), p, TAG));
  tr_status st = tr_system_wait_for(sys, WAIT_MS);
  cr_assert_fail("tr_system_free in a behaviour returned (wait: %s)", tr_status_name(st));
}

Test(bad_input, system_ctx_null) { cr_assert_null(tr_system_ctx(NULL)); }

Test(bad_input, system_threads_null) { cr_assert_eq(tr_system_threads(NULL), 0); }

/* DISAGREES: the header lists no errors for tr_system_stats_get. */
Test(bad_input, system_stats_get_null_sys) {
  tr_system_stats s = {.sent = 77};
  EXPECT_ST(tr_system_stats_get(NULL, &s), TR_EINVAL);
  cr_assert_eq(s.sent, 77);
}

/* DISAGREES: the header lists no errors for tr_system_stats_get. */
Test(bad_input, system_stats_get_null_out) {
  tr_system *sys = sys_new(1, 0);
  EXPECT_ST(tr_system_stats_get(sys, NULL), TR_EINVAL);
  tr_system_free(sys);
}

/* ================================================================ spawn */

static _Atomic int inits, finis;
static tr_status counting_init(void *state, const void *arg) {
  (void)state;
  atomic_fetch_add(&inits, 1);
  return arg != NULL ? *(const tr_status *)arg : TR_OK;
}
static void counting_fini(void *state) {
  (void)state;
  atomic_fetch_add(&finis, 1);
}

#define SENTINEL_REF ((tr_ref){0x5151515151ull})

/* `spec` is refused with `want`: no ref written, no actor, no init/fini. */
static void expect_spawn_fails(tr_system *sys, tr_ctx *ctx, const tr_actor_spec *spec,
                               const void *arg, tr_status want, bool init_runs) {
  tr_ref r = SENTINEL_REF;
  tr_system_stats before = stats(sys);
  int i0 = atomic_load(&inits);
  EXPECT_ST(tr_spawn(ctx, spec, arg, &r), want);
  cr_assert(tr_ref_eq(r, SENTINEL_REF), "a refused spawn wrote *out");
  EXPECT_NOTHING(sys, before);
  cr_assert_eq(stats(sys).actors_live, before.actors_live);
  cr_assert_eq(atomic_load(&inits), i0 + (init_runs ? 1 : 0));
  cr_assert_eq(atomic_load(&finis), 0, "fini ran for an actor never spawned");
}

static tr_actor_spec full_spec(void) {
  tr_actor_spec s = {
      .name = "spec", .behaviour = sink_behaviour, .init = counting_init, .fini = counting_fini};
  return s;
}

Test(bad_input, spawn_null_ctx) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  expect_spawn_fails(sys, NULL, &s, NULL, TR_EINVAL, false);
  tr_system_free(sys);
}

Test(bad_input, spawn_null_spec) {
  tr_system *sys = sys_new(1, 0);
  expect_spawn_fails(sys, tr_system_ctx(sys), NULL, NULL, TR_EINVAL, false);
  tr_system_free(sys);
}

Test(bad_input, spawn_null_behaviour) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  s.behaviour = NULL;
  expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  tr_system_free(sys);
}

Test(bad_input, spawn_null_out) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_spawn(tr_system_ctx(sys), &s, NULL, NULL), TR_EINVAL);
  EXPECT_NOTHING(sys, before);
  cr_assert_eq(atomic_load(&inits), 0);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&finis), 0);
}

Test(bad_input, spawn_state_size_over_max) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  s.state_size = TR_MAX_STATE_SIZE + 1;
  expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  s.state_size = SIZE_MAX;
  expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  tr_system_free(sys);
}

Test(bad_input, spawn_slots_not_power_of_two) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  const unsigned bad[] = {3, 5, 7, 24, 1000};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s.mailbox_slots = bad[i];
    expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  }
  tr_system_free(sys);
}

Test(bad_input, spawn_slots_out_of_range) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  const unsigned bad[] = {1, 2, TR_MAX_MAILBOX_SLOTS * 2, 1u << 31};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s.mailbox_slots = bad[i];
    expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  }
  tr_system_free(sys);
}

/* DISAGREES (mild): tr_spawn's Errors line does not name a bad policy. */
Test(bad_input, spawn_policy_out_of_range) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  s.mailbox_capacity = 4;
  const int bad[] = {TR_MAILBOX_HOLD_SENDER + 1, 99, -1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    s.mailbox_policy = (tr_mailbox_policy)bad[i];
    expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  }
  tr_system_free(sys);
}

/* DISAGREES (mild): only the spec field's comment gives the range. */
Test(bad_input, spawn_bounded_zero_capacity) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  for (int p = TR_MAILBOX_REFUSE; p <= TR_MAILBOX_HOLD_SENDER; p++) {
    s.mailbox_policy = (tr_mailbox_policy)p;
    s.mailbox_capacity = 0;
    expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  }
  tr_system_free(sys);
}

/* DISAGREES (mild): only the spec field's comment gives the range. */
Test(bad_input, spawn_capacity_over_max) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  s.mailbox_policy = TR_MAILBOX_REFUSE;
  s.mailbox_capacity = TR_MAX_MAILBOX_CAPACITY + 1;
  expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  s.mailbox_capacity = UINT32_MAX;
  expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_EINVAL, false);
  tr_system_free(sys);
}

/* A capacity without a bounded policy is ignored, not refused. */
Test(bad_input, spawn_capacity_without_policy) {
  tr_system *sys = sys_new(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec s = {.name = "unbounded", .behaviour = sink_behaviour, .mailbox_capacity = 2};
  tr_ref r;
  EXPECT_ST(tr_spawn(ctx, &s, NULL, &r), TR_OK);
  for (int i = 0; i < 10; i++)
    OK(tr_send(ctx, r, TAG));
  tr_actor_stats as;
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.capacity, 0);
  cr_assert_eq(as.received, 10);
  cr_assert_eq(as.refused, 0);
  tr_system_free(sys);
}

Test(bad_input, spawn_when_system_stopped) {
  tr_system *sys = sys_started(1, 0);
  OK(tr_system_stop(sys));
  tr_actor_spec s = full_spec();
  expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_ESTATE, false);
  tr_system_free(sys);
  /* Stopped before it started: the same. */
  sys = sys_new(1, 0);
  OK(tr_system_stop(sys));
  expect_spawn_fails(sys, tr_system_ctx(sys), &s, NULL, TR_ESTATE, false);
  tr_system_free(sys);
}

Test(bad_input, spawn_init_fails) {
  tr_system *sys = sys_new(1, 0);
  tr_actor_spec s = full_spec();
  const tr_status fails[] = {TR_EFAIL, TR_EINVAL, TR_ENOMEM, (tr_status)-1};
  for (size_t i = 0; i < sizeof fails / sizeof fails[0]; i++)
    expect_spawn_fails(sys, tr_system_ctx(sys), &s, &fails[i], TR_EINIT, true);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&finis), 0);
}

Test(bad_input, self_null_ctx) { cr_assert(tr_ref_is_none(tr_self(NULL))); }

Test(bad_input, self_outside_behaviour) {
  tr_system *sys = sys_new(1, 0);
  cr_assert(tr_ref_is_none(tr_self(tr_system_ctx(sys))));
  tr_system_free(sys);
}

Test(bad_input, ctx_system_null) { cr_assert_null(tr_ctx_system(NULL)); }

Test(bad_input, msg_sender_null) { cr_assert(tr_ref_is_none(tr_msg_sender(NULL))); }

/* ================================================================ become */

Test(bad_input, become_null_ctx) { EXPECT_ST(tr_become(NULL, sink_behaviour), TR_EINVAL); }

static _Atomic int become_runs;
static tr_status become_null_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  (void)msg;
  atomic_fetch_add(&become_runs, 1);
  rec(0, tr_become(ctx, NULL));
  return TR_OK;
}
Test(bad_input, become_null_behaviour) {
  tr_system *sys = sys_started(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec s = {.name = "become-null", .behaviour = become_null_behaviour};
  tr_ref r;
  OK(tr_spawn(ctx, &s, NULL, &r));
  WAIT(sys);
  tr_system_stats before = stats(sys);
  OK(tr_send(ctx, r, TAG));
  OK(tr_send(ctx, r, TAG)); /* the behaviour did not change: it runs again */
  WAIT(sys);
  GOT(0, TR_EINVAL);
  cr_assert_eq(atomic_load(&become_runs), 2);
  EXPECT_DELTA(sys, before, .sent = 2, .handled = 2);
  tr_system_free(sys);
}

Test(bad_input, become_outside_behaviour) {
  tr_system *sys = sys_new(1, 0);
  EXPECT_ST(tr_become(tr_system_ctx(sys), sink_behaviour), TR_ESTATE);
  tr_ctx *b;
  OK(tr_ctx_new_blocking(sys, 10, &b));
  EXPECT_ST(tr_become(b, sink_behaviour), TR_ESTATE);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* ================================================================ stop */

Test(bad_input, stop_null_ctx) {
  tr_system *sys = sys_new(1, 0);
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_stop(NULL, r), TR_EINVAL);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, stop_stale_ref) {
  tr_system *sys = sys_started(1, 0);
  tr_ref old = stopped_ref(sys);
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_stop(tr_system_ctx(sys), old), TR_ESTALE);
  EXPECT_ST(tr_stop(tr_system_ctx(sys), TR_REF_NONE), TR_ESTALE);
  EXPECT_ST(tr_stop(tr_system_ctx(sys), (tr_ref){0xDEAD00000001ull}), TR_ESTALE);
  WAIT(sys);
  EXPECT_NOTHING(sys, before); /* no dead letter: a stop is not a message */
  tr_system_free(sys);
}

/* A second request before the actor ran is accepted (idempotent). */
Test(bad_input, stop_twice_before_it_ran) {
  atomic_store(&finis, 0);
  tr_system *sys = sys_new(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec s = {.name = "s", .behaviour = sink_behaviour, .fini = counting_fini};
  tr_ref r;
  OK(tr_spawn(ctx, &s, NULL, &r));
  OK(tr_stop(ctx, r));
  EXPECT_ST(tr_stop(ctx, r), TR_OK);
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(atomic_load(&finis), 1);
  cr_assert_eq(stats(sys).actors_stopped, 1);
  EXPECT_ST(tr_stop(ctx, r), TR_ESTALE);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&finis), 1);
}

/* Accepted after tr_system_stop; the actor's fini runs once, at free. */
Test(bad_input, stop_when_system_stopped) {
  atomic_store(&finis, 0);
  tr_system *sys = sys_started(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec s = {.name = "s", .behaviour = sink_behaviour, .fini = counting_fini};
  tr_ref r;
  OK(tr_spawn(ctx, &s, NULL, &r));
  WAIT(sys);
  OK(tr_system_stop(sys));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_stop(ctx, r), TR_ESTATE); /* as a send would be: nothing runs now */
  EXPECT_NOTHING(sys, before);
  cr_assert_eq(atomic_load(&finis), 0);
  tr_system_free(sys);
  cr_assert_eq(atomic_load(&finis), 1);
}

/* ================================================================ actor stats */

Test(bad_input, actor_stats_get_null_ctx) {
  tr_system *sys = sys_new(1, 0);
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  tr_actor_stats as = {.received = 77};
  EXPECT_ST(tr_actor_stats_get(NULL, r, &as), TR_EINVAL);
  cr_assert_eq(as.received, 77);
  tr_system_free(sys);
}

Test(bad_input, actor_stats_get_null_out) {
  tr_system *sys = sys_new(1, 0);
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  EXPECT_ST(tr_actor_stats_get(tr_system_ctx(sys), r, NULL), TR_EINVAL);
  tr_system_free(sys);
}

Test(bad_input, actor_stats_get_stale_ref) {
  tr_system *sys = sys_started(1, 0);
  tr_ref old = stopped_ref(sys);
  tr_system_stats before = stats(sys);
  tr_actor_stats as = {.received = 77};
  EXPECT_ST(tr_actor_stats_get(tr_system_ctx(sys), old, &as), TR_ESTALE);
  EXPECT_ST(tr_actor_stats_get(tr_system_ctx(sys), TR_REF_NONE, &as), TR_ESTALE);
  cr_assert_eq(as.received, 77);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, dead_reason_name_out_of_range) {
  const int bad[] = {TR_DEAD_REASON_COUNT, TR_DEAD_REASON_COUNT + 1, 1000, -1, INT32_MIN};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    cr_assert_str_eq(tr_dead_reason_name((tr_dead_reason)bad[i]), "UNKNOWN");
}

/* ================================================================ sending */

/* Every send function, as one shape, with a valid payload. */
typedef tr_status (*send_fn)(tr_ctx *ctx, tr_ref to);
static tr_status do_send(tr_ctx *c, tr_ref to) { return tr_send(c, to, TAG); }
static tr_status do_send_int(tr_ctx *c, tr_ref to) { return tr_send_int(c, to, TAG, -42); }
static tr_status do_send_uint(tr_ctx *c, tr_ref to) { return tr_send_uint(c, to, TAG, 42); }
static tr_status do_send_double(tr_ctx *c, tr_ref to) { return tr_send_double(c, to, TAG, 1.5); }
static tr_status do_send_str(tr_ctx *c, tr_ref to) { return tr_send_str(c, to, TAG, "abc", 3); }
static tr_status do_send_bin(tr_ctx *c, tr_ref to) { return tr_send_bin(c, to, TAG, "abc", 3); }
static tr_status do_send_vals(tr_ctx *c, tr_ref to) {
  tr_val v[2] = {tr_int(-1), tr_str("x")};
  return tr_send_vals(c, to, TAG, v, 2);
}
static tr_status do_send_msgpack(tr_ctx *c, tr_ref to) {
  return tr_send_msgpack(c, to, TAG, MP(MP_ARRAY3));
}

/* NULL ctx: TR_EINVAL, nothing sent, the receiver untouched. */
static void check_null_ctx(send_fn f) {
  tr_system *sys = sys_new(1, 0);
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  tr_system_stats before = stats(sys);
  EXPECT_ST(f(NULL, r), TR_EINVAL);
  EXPECT_NOTHING(sys, before);
  tr_actor_stats as;
  OK(tr_actor_stats_get(tr_system_ctx(sys), r, &as));
  cr_assert_eq(as.received, 0);
  tr_system_free(sys);
}

/* A stopped actor's ref, after its slot was reused: TR_ESTALE, one STALE
 * dead letter (the header says stale sends are counted), nothing else. */
static void check_stale(send_fn f) {
  tr_system *sys = sys_started(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref old = stopped_ref(sys), fresh;
  OK(tr_spawn(ctx, &sink_spec, NULL, &fresh));
  cr_assert_eq((uint32_t)fresh.id, (uint32_t)old.id, "precondition: the slot was reused");
  WAIT(sys);
  atomic_store(&sunk, 0);
  tr_system_stats before = stats(sys);
  EXPECT_ST(f(ctx, old), TR_ESTALE);
  EXPECT_ST(f(ctx, TR_REF_NONE), TR_ESTALE);
  WAIT(sys);
  EXPECT_DELTA(sys, before, .dead_letters[TR_DEAD_STALE] = 2);
  cr_assert_eq(atomic_load(&sunk), 0, "the slot's new actor got the old ref's mail");
  tr_system_free(sys);
}

/* Once the system is stopping, a send is refused with TR_ESTATE and nothing
 * is queued. */
static void check_when_stopped(send_fn f) {
  tr_system *sys = sys_started(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref r;
  OK(tr_spawn(ctx, &sink_spec, NULL, &r));
  WAIT(sys);
  OK(tr_system_stop(sys));
  tr_system_stats before = stats(sys);
  EXPECT_ST(f(ctx, r), TR_ESTATE);
  EXPECT_NOTHING(sys, before);
  tr_actor_stats as;
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, 0);
  cr_assert_eq(as.depth, 0);
  cr_assert_eq(atomic_load(&sunk), 0);
  tr_system_free(sys);
}

/* A full REFUSE mailbox: TR_EFULL, counted as refused, nothing queued.
 * DISAGREES (mild): TR_EFULL is documented with the policies, not in the
 * send functions' Errors list. */
static void check_full(send_fn f) {
  tr_system *sys = sys_new(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec s = bounded(TR_MAILBOX_REFUSE, 1);
  tr_ref r;
  OK(tr_spawn(ctx, &s, NULL, &r));
  OK(tr_send(ctx, r, TAG)); /* not started: it stays full */
  tr_system_stats before = stats(sys);
  EXPECT_ST(f(ctx, r), TR_EFULL);
  EXPECT_DELTA(sys, before, .refused = 1);
  tr_actor_stats as;
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, 1);
  cr_assert_eq(as.refused, 1);
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(atomic_load(&sunk), 1);
  tr_system_free(sys);
}

Test(bad_input, send_null_ctx) { check_null_ctx(do_send); }
Test(bad_input, send_to_stale_ref) { check_stale(do_send); }
Test(bad_input, send_when_system_stopped) { check_when_stopped(do_send); }
Test(bad_input, send_to_full_mailbox) { check_full(do_send); }
Test(bad_input, send_int_null_ctx) { check_null_ctx(do_send_int); }
Test(bad_input, send_int_to_stale_ref) { check_stale(do_send_int); }
Test(bad_input, send_int_when_system_stopped) { check_when_stopped(do_send_int); }
Test(bad_input, send_int_to_full_mailbox) { check_full(do_send_int); }
Test(bad_input, send_uint_null_ctx) { check_null_ctx(do_send_uint); }
Test(bad_input, send_uint_to_stale_ref) { check_stale(do_send_uint); }
Test(bad_input, send_uint_when_system_stopped) { check_when_stopped(do_send_uint); }
Test(bad_input, send_uint_to_full_mailbox) { check_full(do_send_uint); }
Test(bad_input, send_double_null_ctx) { check_null_ctx(do_send_double); }
Test(bad_input, send_double_to_stale_ref) { check_stale(do_send_double); }
Test(bad_input, send_double_when_system_stopped) { check_when_stopped(do_send_double); }
Test(bad_input, send_double_to_full_mailbox) { check_full(do_send_double); }
Test(bad_input, send_str_null_ctx) { check_null_ctx(do_send_str); }
Test(bad_input, send_str_to_stale_ref) { check_stale(do_send_str); }
Test(bad_input, send_str_when_system_stopped) { check_when_stopped(do_send_str); }
Test(bad_input, send_str_to_full_mailbox) { check_full(do_send_str); }
Test(bad_input, send_bin_null_ctx) { check_null_ctx(do_send_bin); }
Test(bad_input, send_bin_to_stale_ref) { check_stale(do_send_bin); }
Test(bad_input, send_bin_when_system_stopped) { check_when_stopped(do_send_bin); }
Test(bad_input, send_bin_to_full_mailbox) { check_full(do_send_bin); }
Test(bad_input, send_vals_null_ctx) { check_null_ctx(do_send_vals); }
Test(bad_input, send_vals_to_stale_ref) { check_stale(do_send_vals); }
Test(bad_input, send_vals_when_system_stopped) { check_when_stopped(do_send_vals); }
Test(bad_input, send_vals_to_full_mailbox) { check_full(do_send_vals); }
Test(bad_input, send_msgpack_null_ctx) { check_null_ctx(do_send_msgpack); }
Test(bad_input, send_msgpack_to_stale_ref) { check_stale(do_send_msgpack); }
Test(bad_input, send_msgpack_when_system_stopped) { check_when_stopped(do_send_msgpack); }
Test(bad_input, send_msgpack_to_full_mailbox) { check_full(do_send_msgpack); }

/* Argument errors of one send: `want`, nothing sent, nothing dead-lettered. */
typedef struct send_env {
  tr_system *sys;
  tr_ctx *ctx;
  tr_ref r;
  tr_system_stats before;
} send_env;

static send_env env_new(size_t max_msg) {
  send_env e;
  e.sys = sys_new(1, max_msg);
  e.ctx = tr_system_ctx(e.sys);
  OK(tr_spawn(e.ctx, &sink_spec, NULL, &e.r));
  e.before = stats(e.sys);
  return e;
}

static void env_done(send_env *e) {
  EXPECT_NOTHING(e->sys, e->before);
  tr_actor_stats as;
  OK(tr_actor_stats_get(e->ctx, e->r, &as));
  cr_assert_eq(as.received, 0);
  tr_system_free(e->sys);
}

Test(bad_input, send_int_oversized) {
  send_env e = env_new(8);
  EXPECT_ST(tr_send_int(e.ctx, e.r, TAG, INT64_MIN), TR_ETOOBIG); /* 9 bytes */
  env_done(&e);
}

Test(bad_input, send_uint_oversized) {
  send_env e = env_new(8);
  EXPECT_ST(tr_send_uint(e.ctx, e.r, TAG, UINT64_MAX), TR_ETOOBIG); /* 9 bytes */
  env_done(&e);
}

Test(bad_input, send_double_oversized) {
  send_env e = env_new(8);
  EXPECT_ST(tr_send_double(e.ctx, e.r, TAG, 0.0), TR_ETOOBIG); /* always 9 bytes */
  env_done(&e);
}

/* DISAGREES (mild): the header's EINVAL causes are "NULL ctx, bad value
 * type"; a NULL buffer with a length is not named. */
Test(bad_input, send_str_null_with_len) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_str(e.ctx, e.r, TAG, NULL, 1), TR_EINVAL);
  env_done(&e);
}

Test(bad_input, send_str_oversized) {
  send_env e = env_new(16);
  char buf[17] = "0123456789abcdef";
  EXPECT_ST(tr_send_str(e.ctx, e.r, TAG, buf, 15), TR_OK); /* 1 + 15 = the limit */
  e.before = stats(e.sys);
  EXPECT_ST(tr_send_str(e.ctx, e.r, TAG, buf, 16), TR_ETOOBIG);
  /* Absurd lengths fail from the header alone, before the bytes are read. */
  EXPECT_ST(tr_send_str(e.ctx, e.r, TAG, buf, UINT32_MAX), TR_ETOOBIG);
  EXPECT_NOTHING(e.sys, e.before);
  tr_system_free(e.sys);
}

Test(bad_input, send_str_len_over_u32) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_str(e.ctx, e.r, TAG, "x", (size_t)UINT32_MAX + 1), TR_EINVAL);
  EXPECT_ST(tr_send_str(e.ctx, e.r, TAG, "x", SIZE_MAX), TR_EINVAL);
  env_done(&e);
}

/* DISAGREES (mild): as send_str_null_with_len. */
Test(bad_input, send_bin_null_with_len) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_bin(e.ctx, e.r, TAG, NULL, 1), TR_EINVAL);
  env_done(&e);
}

Test(bad_input, send_bin_oversized) {
  send_env e = env_new(16);
  uint8_t buf[16] = {0};
  EXPECT_ST(tr_send_bin(e.ctx, e.r, TAG, buf, 15), TR_ETOOBIG); /* 2 + 15 */
  EXPECT_ST(tr_send_bin(e.ctx, e.r, TAG, buf, UINT32_MAX), TR_ETOOBIG);
  env_done(&e);
}

Test(bad_input, send_bin_len_over_u32) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_bin(e.ctx, e.r, TAG, "x", (size_t)UINT32_MAX + 1), TR_EINVAL);
  EXPECT_ST(tr_send_bin(e.ctx, e.r, TAG, "x", SIZE_MAX), TR_EINVAL);
  env_done(&e);
}

/* DISAGREES (mild): as send_str_null_with_len. */
Test(bad_input, send_vals_null_with_count) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_vals(e.ctx, e.r, TAG, NULL, 1), TR_EINVAL);
  env_done(&e);
}

Test(bad_input, send_vals_bad_type) {
  send_env e = env_new(0);
  tr_val v[2] = {tr_int(1), tr_nil()};
  const int bad[] = {TR_VAL_BIN + 1, 99, -1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    v[1].type = (tr_val_type)bad[i];
    EXPECT_ST(tr_send_vals(e.ctx, e.r, TAG, v, 2), TR_EINVAL);
  }
  env_done(&e);
}

Test(bad_input, send_vals_str_null_ptr) {
  send_env e = env_new(0);
  tr_val v[2] = {tr_int(1), tr_strn(NULL, 3)};
  EXPECT_ST(tr_send_vals(e.ctx, e.r, TAG, v, 2), TR_EINVAL);
  v[1] = tr_bin(NULL, 3);
  EXPECT_ST(tr_send_vals(e.ctx, e.r, TAG, v, 2), TR_EINVAL);
  v[1] = tr_strn("x", (size_t)UINT32_MAX + 1);
  EXPECT_ST(tr_send_vals(e.ctx, e.r, TAG, v, 2), TR_EINVAL);
  env_done(&e);
}

Test(bad_input, send_vals_oversized) {
  send_env e = env_new(16);
  tr_val v[16];
  for (int i = 0; i < 16; i++)
    v[i] = tr_nil();
  OK(tr_send_vals(e.ctx, e.r, TAG, v, 15)); /* 1 + 15 = the limit */
  e.before = stats(e.sys);
  EXPECT_ST(tr_send_vals(e.ctx, e.r, TAG, v, 16), TR_ETOOBIG);
  EXPECT_NOTHING(e.sys, e.before);
  tr_system_free(e.sys);
}

/* An element count msgpack cannot express: refused by size before the
 * elements past the limit are read (the array holds only 20). */
Test(bad_input, send_vals_count_over_u32) {
  send_env e = env_new(16);
  tr_val v[20];
  for (int i = 0; i < 20; i++)
    v[i] = tr_nil();
  EXPECT_ST(tr_send_vals(e.ctx, e.r, TAG, v, (size_t)UINT32_MAX + 1), TR_ETOOBIG);
  env_done(&e);
}

/* DISAGREES (mild): as send_str_null_with_len. */
Test(bad_input, send_msgpack_null_bytes) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, NULL, 1), TR_EINVAL);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, NULL, 0), TR_EINVAL);
  env_done(&e);
}

Test(bad_input, send_msgpack_empty) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, "", 0), TR_EMALFORMED);
  env_done(&e);
}

Test(bad_input, send_msgpack_truncated) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP(MP_TRUNC)), TR_EMALFORMED);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP("\x92\x01")), TR_EMALFORMED);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP("\xcd\x01")), TR_EMALFORMED);
  env_done(&e);
}

Test(bad_input, send_msgpack_trailing_bytes) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP(MP_TRAILING)), TR_EMALFORMED);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP(MP_NIL MP_NIL)), TR_EMALFORMED);
  env_done(&e);
}

Test(bad_input, send_msgpack_reserved_byte) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP(MP_RESERVED)), TR_EMALFORMED);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP("\x91\xc1")), TR_EMALFORMED);
  env_done(&e);
}

/* 33 nested arrays, one past msgpack-c's limit. */
Test(bad_input, send_msgpack_too_deep) {
  send_env e = env_new(0);
  uint8_t deep[34];
  memset(deep, 0x91, 33);
  deep[33] = 0x01;
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, deep, sizeof deep), TR_EMALFORMED);
  env_done(&e);
}

Test(bad_input, send_msgpack_huge_count) {
  send_env e = env_new(0);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP(MP_HUGE_ARR)), TR_EMALFORMED);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP("\xdf\xff\xff\xff\xff")), TR_EMALFORMED);
  env_done(&e);
}

Test(bad_input, send_msgpack_oversized) {
  send_env e = env_new(4);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP(MP_STR)), TR_OK); /* 4 bytes: the limit */
  e.before = stats(e.sys);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP(MP_STR4)), TR_ETOOBIG);
  /* Size is checked before validity, and before any byte is read. */
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, MP("\xc1\xc1\xc1\xc1\xc1")), TR_ETOOBIG);
  EXPECT_ST(tr_send_msgpack(e.ctx, e.r, TAG, "x", SIZE_MAX), TR_ETOOBIG);
  EXPECT_NOTHING(e.sys, e.before);
  tr_system_free(e.sys);
}

Test(bad_input, send_to_none_ref) {
  tr_system *sys = sys_new(1, 0);
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_send(tr_system_ctx(sys), TR_REF_NONE, TAG), TR_ESTALE);
  EXPECT_ST(tr_send(tr_system_ctx(sys), (tr_ref){UINT64_MAX}, TAG), TR_ESTALE);
  EXPECT_DELTA(sys, before, .dead_letters[TR_DEAD_STALE] = 2);
  tr_system_free(sys);
}

/* A ref made by another system, whose slot is unused here: stale. */
Test(bad_input, send_to_foreign_ref_unused_slot) {
  tr_system *a = sys_new(1, 0), *b = sys_new(1, 0);
  tr_ref ra[3], rb;
  for (int i = 0; i < 3; i++)
    OK(tr_spawn(tr_system_ctx(a), &sink_spec, NULL, &ra[i]));
  OK(tr_spawn(tr_system_ctx(b), &sink_spec, NULL, &rb));
  tr_system_stats before = stats(b);
  EXPECT_ST(tr_send(tr_system_ctx(b), ra[2], TAG), TR_ESTALE);
  EXPECT_DELTA(b, before, STALE_1);
  tr_actor_stats as;
  OK(tr_actor_stats_get(tr_system_ctx(b), rb, &as));
  cr_assert_eq(as.received, 0);
  tr_system_free(a);
  tr_system_free(b);
}

/* DISAGREES: a ref carries no system id, so another system's ref whose
 * index and generation are live here is NOT stale: the message goes to
 * this system's actor in that slot. */
Test(bad_input, send_to_foreign_ref_aliasing) {
  tr_system *a = sys_new(1, 0), *b = sys_new(1, 0);
  tr_ref ra, rb;
  OK(tr_spawn(tr_system_ctx(a), &sink_spec, NULL, &ra));
  OK(tr_spawn(tr_system_ctx(b), &sink_spec, NULL, &rb));
  cr_assert(tr_ref_eq(ra, rb), "precondition: both first actors get the same ref");
  tr_system_stats before = stats(b);
  EXPECT_ST(tr_send(tr_system_ctx(b), ra, TAG), TR_OK);
  EXPECT_DELTA(b, before, .sent = 1);
  tr_actor_stats as;
  OK(tr_actor_stats_get(tr_system_ctx(b), rb, &as));
  cr_assert_eq(as.received, 1);
  tr_system_free(a);
  tr_system_free(b);
}

/* DISAGREES (mild): TR_EFULL is documented with the policies, not in the
 * send functions' Errors list. */
Test(bad_input, send_to_full_hold_sender_from_outside) {
  tr_system *sys = sys_new(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec s = bounded(TR_MAILBOX_HOLD_SENDER, 1);
  tr_ref r;
  OK(tr_spawn(ctx, &s, NULL, &r));
  OK(tr_send(ctx, r, TAG));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_send(ctx, r, TAG), TR_EFULL);
  EXPECT_DELTA(sys, before, .refused = 1);
  tr_system_free(sys);
}

/* DISAGREES (mild): TR_ETIMEDOUT is documented with HOLD_SENDER, not in
 * the send functions' Errors list. Not counted as refused. */
Test(bad_input, send_blocking_ctx_to_full_hold_sender_times_out) {
  tr_system *sys = sys_new(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys), *b;
  tr_actor_spec s = bounded(TR_MAILBOX_HOLD_SENDER, 1);
  tr_ref r;
  OK(tr_spawn(ctx, &s, NULL, &r));
  OK(tr_send(ctx, r, TAG));
  OK(tr_ctx_new_blocking(sys, 20, &b));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_send_int(b, r, TAG, 5), TR_ETIMEDOUT);
  EXPECT_NOTHING(sys, before);
  tr_actor_stats as;
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, 1);
  tr_ctx_free(b);
  tr_system_free(sys);
}

/* ================================================================ msg.h: values */

Test(bad_input, str_null) {
  tr_val v = tr_str(NULL);
  cr_assert_eq(v.type, TR_VAL_STR);
  cr_assert_not_null(v.as.bytes.ptr);
  cr_assert_eq(v.as.bytes.len, 0);
}

/* DISAGREES (mild): the header lists only EDECODE and ERANGE. */
Test(bad_input, val_get_int_null) {
  tr_val v = tr_int(1);
  int64_t out = 77;
  EXPECT_ST(tr_val_get_int(NULL, &out), TR_EINVAL);
  EXPECT_ST(tr_val_get_int(&v, NULL), TR_EINVAL);
  cr_assert_eq(out, 77);
}

Test(bad_input, val_get_int_not_integer) {
  const tr_val bad[] = {tr_nil(), tr_bool(true), tr_double(1.0), tr_str("1"), tr_bin("1", 1)};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    int64_t out = 77;
    EXPECT_ST(tr_val_get_int(&bad[i], &out), TR_EDECODE);
    cr_assert_eq(out, 77);
  }
}

Test(bad_input, val_get_int_out_of_range) {
  tr_val v = tr_uint((uint64_t)INT64_MAX + 1);
  int64_t out = 77;
  EXPECT_ST(tr_val_get_int(&v, &out), TR_ERANGE);
  v = tr_uint(UINT64_MAX);
  EXPECT_ST(tr_val_get_int(&v, &out), TR_ERANGE);
  cr_assert_eq(out, 77);
}

Test(bad_input, val_get_int_bad_type) {
  tr_val v = tr_int(1);
  int64_t out = 77;
  v.type = (tr_val_type)99;
  EXPECT_ST(tr_val_get_int(&v, &out), TR_EDECODE);
  v.type = (tr_val_type)-1;
  EXPECT_ST(tr_val_get_int(&v, &out), TR_EDECODE);
  cr_assert_eq(out, 77);
}

/* DISAGREES (mild): the header lists only EDECODE and ERANGE. */
Test(bad_input, val_get_uint_null) {
  tr_val v = tr_uint(1);
  uint64_t out = 77;
  EXPECT_ST(tr_val_get_uint(NULL, &out), TR_EINVAL);
  EXPECT_ST(tr_val_get_uint(&v, NULL), TR_EINVAL);
  cr_assert_eq(out, 77);
}

Test(bad_input, val_get_uint_not_integer) {
  const tr_val bad[] = {tr_nil(), tr_bool(false), tr_double(1.0), tr_str("1"), tr_bin("1", 1)};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t out = 77;
    EXPECT_ST(tr_val_get_uint(&bad[i], &out), TR_EDECODE);
    cr_assert_eq(out, 77);
  }
}

Test(bad_input, val_get_uint_negative) {
  tr_val v = tr_int(-1);
  uint64_t out = 77;
  EXPECT_ST(tr_val_get_uint(&v, &out), TR_ERANGE);
  v = tr_int(INT64_MIN);
  EXPECT_ST(tr_val_get_uint(&v, &out), TR_ERANGE);
  cr_assert_eq(out, 77);
}

Test(bad_input, val_get_uint_bad_type) {
  tr_val v = tr_uint(1);
  uint64_t out = 77;
  v.type = (tr_val_type)99;
  EXPECT_ST(tr_val_get_uint(&v, &out), TR_EDECODE);
  cr_assert_eq(out, 77);
}

/* ================================================================ msg.h: messages */

Test(bad_input, msg_tag_null) { cr_assert_eq(tr_msg_tag(NULL), 0); }

Test(bad_input, msg_payload_null) {
  size_t len = 77;
  cr_assert_null(tr_msg_payload(NULL, &len));
  cr_assert_eq(len, 0);
  cr_assert_null(tr_msg_payload(NULL, NULL));
}

Test(bad_input, msg_is_nil_null) { cr_assert(!tr_msg_is_nil(NULL)); }

/* Getter probes: got[0] with a real out (kept[0]: left untouched), got[1]
 * (and got[2]) with a NULL out-parameter. */
static void p_get_int(tr_ctx *c, const tr_msg *m) {
  (void)c;
  int64_t v = 77;
  rec(0, tr_msg_get_int(m, &v));
  atomic_store(&kept[0], v == 77);
  rec(1, tr_msg_get_int(m, NULL));
}
static void p_get_uint(tr_ctx *c, const tr_msg *m) {
  (void)c;
  uint64_t v = 77;
  rec(0, tr_msg_get_uint(m, &v));
  atomic_store(&kept[0], v == 77);
  rec(1, tr_msg_get_uint(m, NULL));
}
static void p_get_double(tr_ctx *c, const tr_msg *m) {
  (void)c;
  double v = 7.5;
  rec(0, tr_msg_get_double(m, &v));
  atomic_store(&kept[0], v == 7.5);
  rec(1, tr_msg_get_double(m, NULL));
}
static void p_get_bool(tr_ctx *c, const tr_msg *m) {
  (void)c;
  bool v = true;
  rec(0, tr_msg_get_bool(m, &v));
  atomic_store(&kept[0], v == true);
  rec(1, tr_msg_get_bool(m, NULL));
}
static const char sentinel_bytes[] = "sentinel";
/* Str/bin probes: got[1] with ptr NULL (kept[1]: len untouched), got[2]
 * with len NULL (kept[2]: ptr untouched). */
static void p_get_str(tr_ctx *c, const tr_msg *m) {
  (void)c;
  const char *p = sentinel_bytes, *p2 = sentinel_bytes;
  size_t len = 77, len1 = 77;
  rec(0, tr_msg_get_str(m, &p, &len));
  atomic_store(&kept[0], p == sentinel_bytes && len == 77);
  rec(1, tr_msg_get_str(m, NULL, &len1));
  atomic_store(&kept[1], len1 == 77);
  rec(2, tr_msg_get_str(m, &p2, NULL));
  atomic_store(&kept[2], p2 == sentinel_bytes);
}
static void p_get_bin(tr_ctx *c, const tr_msg *m) {
  (void)c;
  const void *p = sentinel_bytes, *p2 = sentinel_bytes;
  size_t len = 77, len1 = 77;
  rec(0, tr_msg_get_bin(m, &p, &len));
  atomic_store(&kept[0], p == sentinel_bytes && len == 77);
  rec(1, tr_msg_get_bin(m, NULL, &len1));
  atomic_store(&kept[1], len1 == 77);
  rec(2, tr_msg_get_bin(m, &p2, NULL));
  atomic_store(&kept[2], p2 == sentinel_bytes);
}

Test(bad_input, msg_get_int_null_msg) {
  int64_t v = 77;
  EXPECT_ST(tr_msg_get_int(NULL, &v), TR_EINVAL);
  cr_assert_eq(v, 77);
}
Test(bad_input, msg_get_int_null_out) {
  probe_payload(p_get_int, MP(MP_UINT5));
  GOT(0, TR_OK);
  GOT(1, TR_EINVAL);
}
Test(bad_input, msg_get_int_wrong_type) {
  probe_payload(p_get_int, MP(MP_STR));
  GOT(0, TR_EDECODE);
  KEPT(0);
}
Test(bad_input, msg_get_int_of_nil) {
  probe_payload(p_get_int, MP(MP_NIL));
  GOT(0, TR_EDECODE);
  KEPT(0);
}
Test(bad_input, msg_get_int_of_container) {
  probe_payload(p_get_int, MP(MP_ARRAY3));
  GOT(0, TR_EDECODE);
  KEPT(0);
}
Test(bad_input, msg_get_int_of_ext) {
  probe_payload(p_get_int, MP(MP_EXT));
  GOT(0, TR_EDECODE);
  KEPT(0);
}
Test(bad_input, msg_get_int_out_of_range) {
  probe_payload(p_get_int, MP(MP_U2_63));
  GOT(0, TR_ERANGE);
  KEPT(0);
}

Test(bad_input, msg_get_uint_null_msg) {
  uint64_t v = 77;
  EXPECT_ST(tr_msg_get_uint(NULL, &v), TR_EINVAL);
  cr_assert_eq(v, 77);
}
Test(bad_input, msg_get_uint_null_out) {
  probe_payload(p_get_uint, MP(MP_UINT5));
  GOT(0, TR_OK);
  GOT(1, TR_EINVAL);
}
Test(bad_input, msg_get_uint_wrong_type) {
  probe_payload(p_get_uint, MP(MP_DOUBLE));
  GOT(0, TR_EDECODE);
  KEPT(0);
}
Test(bad_input, msg_get_uint_negative) {
  probe_payload(p_get_uint, MP(MP_NEG1));
  GOT(0, TR_ERANGE);
  KEPT(0);
}

Test(bad_input, msg_get_double_null_msg) {
  double v = 7.5;
  EXPECT_ST(tr_msg_get_double(NULL, &v), TR_EINVAL);
  cr_assert_eq(v, 7.5);
}
Test(bad_input, msg_get_double_null_out) {
  probe_payload(p_get_double, MP(MP_DOUBLE));
  GOT(0, TR_OK);
  GOT(1, TR_EINVAL);
}
/* An integer is not converted to a double. */
Test(bad_input, msg_get_double_wrong_type) {
  probe_payload(p_get_double, MP(MP_UINT5));
  GOT(0, TR_EDECODE);
  KEPT(0);
}

Test(bad_input, msg_get_bool_null_msg) {
  bool v = true;
  EXPECT_ST(tr_msg_get_bool(NULL, &v), TR_EINVAL);
  cr_assert(v);
}
Test(bad_input, msg_get_bool_null_out) {
  probe_payload(p_get_bool, MP(MP_TRUE));
  GOT(0, TR_OK);
  GOT(1, TR_EINVAL);
}
/* Nil and 0 are not false. */
Test(bad_input, msg_get_bool_wrong_type) {
  probe_payload(p_get_bool, MP(MP_NIL));
  GOT(0, TR_EDECODE);
  KEPT(0);
}

Test(bad_input, msg_get_str_null_msg) {
  const char *p = sentinel_bytes;
  size_t len = 77;
  EXPECT_ST(tr_msg_get_str(NULL, &p, &len), TR_EINVAL);
  cr_assert(p == sentinel_bytes && len == 77);
}
Test(bad_input, msg_get_str_null_ptr) {
  probe_payload(p_get_str, MP(MP_STR));
  GOT(0, TR_OK);
  GOT(1, TR_EINVAL);
  KEPT(1);
}
Test(bad_input, msg_get_str_null_len) {
  probe_payload(p_get_str, MP(MP_STR));
  GOT(0, TR_OK);
  GOT(2, TR_EINVAL);
  KEPT(2);
}
/* A bin is not a str. */
Test(bad_input, msg_get_str_wrong_type) {
  probe_payload(p_get_str, MP(MP_BIN));
  GOT(0, TR_EDECODE);
  KEPT(0);
}

Test(bad_input, msg_get_bin_null_msg) {
  const void *p = sentinel_bytes;
  size_t len = 77;
  EXPECT_ST(tr_msg_get_bin(NULL, &p, &len), TR_EINVAL);
  cr_assert(p == sentinel_bytes && len == 77);
}
Test(bad_input, msg_get_bin_null_ptr) {
  probe_payload(p_get_bin, MP(MP_BIN));
  GOT(0, TR_OK);
  GOT(1, TR_EINVAL);
  KEPT(1);
}
Test(bad_input, msg_get_bin_null_len) {
  probe_payload(p_get_bin, MP(MP_BIN));
  GOT(0, TR_OK);
  GOT(2, TR_EINVAL);
  KEPT(2);
}
/* A str is not a bin. */
Test(bad_input, msg_get_bin_wrong_type) {
  probe_payload(p_get_bin, MP(MP_STR));
  GOT(0, TR_EDECODE);
  KEPT(0);
}

/* tr_msg_get_vals: got[0] with out[2] (kept[0]: out untouched; got_n: *n),
 * got[1] with n NULL (kept[2]: out untouched), got[2] with out NULL but
 * cap 1 (kept[1]: *n untouched). */
static void p_get_vals(tr_ctx *c, const tr_msg *m) {
  (void)c;
  tr_val out[2], pattern[2];
  memset(out, 0xAB, sizeof out);
  memset(pattern, 0xAB, sizeof pattern);
  size_t n = 77;
  rec(0, tr_msg_get_vals(m, out, 2, &n));
  atomic_store(&kept[0], memcmp(out, pattern, sizeof out) == 0);
  atomic_store(&got_n, n);
  tr_val out1[2];
  memset(out1, 0xAB, sizeof out1);
  rec(1, tr_msg_get_vals(m, out1, 2, NULL));
  atomic_store(&kept[2], memcmp(out1, pattern, sizeof out1) == 0);
  size_t n2 = 77;
  rec(2, tr_msg_get_vals(m, NULL, 1, &n2));
  atomic_store(&kept[1], n2 == 77);
}

Test(bad_input, msg_get_vals_null_msg) {
  size_t n = 77;
  tr_val out[2];
  EXPECT_ST(tr_msg_get_vals(NULL, out, 2, &n), TR_EINVAL);
  cr_assert_eq(n, 77);
}
Test(bad_input, msg_get_vals_null_n) {
  probe_payload(p_get_vals, MP("\x92\x01\x02"));
  GOT(0, TR_OK);
  GOT(1, TR_EINVAL);
  KEPT(2);
}
Test(bad_input, msg_get_vals_null_out_with_cap) {
  probe_payload(p_get_vals, MP("\x92\x01\x02"));
  GOT(2, TR_EINVAL);
  KEPT(1);
}
Test(bad_input, msg_get_vals_not_array) {
  probe_payload(p_get_vals, MP(MP_UINT5));
  GOT(0, TR_EDECODE);
  KEPT(0);
  cr_assert_eq(atomic_load(&got_n), 77);
}
Test(bad_input, msg_get_vals_nested) {
  probe_payload(p_get_vals, MP(MP_NESTED));
  GOT(0, TR_EDECODE);
  KEPT(0);
  cr_assert_eq(atomic_load(&got_n), 77);
}
Test(bad_input, msg_get_vals_map) {
  probe_payload(p_get_vals, MP(MP_MAP));
  GOT(0, TR_EDECODE);
  KEPT(0);
}
Test(bad_input, msg_get_vals_ext_element) {
  probe_payload(p_get_vals, MP(MP_ARR_EXT));
  GOT(0, TR_EDECODE);
  KEPT(0);
}
/* ENOSPC tells the length, and leaves `out` alone. */
Test(bad_input, msg_get_vals_too_small) {
  probe_payload(p_get_vals, MP(MP_ARRAY3));
  GOT(0, TR_ENOSPC);
  KEPT(0);
  cr_assert_eq(atomic_load(&got_n), 3);
}
/* A nested array that is also too long: EDECODE wins over ENOSPC. */
Test(bad_input, msg_get_vals_nested_too_small) {
  probe_payload(p_get_vals, MP(MP_NESTED3));
  GOT(0, TR_EDECODE);
  KEPT(0);
  cr_assert_eq(atomic_load(&got_n), 77);
}

/* ================================================================ msg.h: bytes */

/* DISAGREES (mild): the header names EMALFORMED for NULL with len 0 but not
 * EINVAL for NULL with a length. */
Test(bad_input, mp_check_null_with_len) { EXPECT_ST(tr_mp_check(NULL, 1), TR_EINVAL); }

Test(bad_input, mp_check_empty) {
  EXPECT_ST(tr_mp_check(NULL, 0), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check("", 0), TR_EMALFORMED);
}

Test(bad_input, mp_check_truncated) {
  EXPECT_ST(tr_mp_check(MP(MP_TRUNC)), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check(MP("\x92\x01")), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check(MP("\xcb\x00\x00")), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check(MP("\xd4\x01")), TR_EMALFORMED);
}

Test(bad_input, mp_check_trailing_bytes) {
  EXPECT_ST(tr_mp_check(MP(MP_TRAILING)), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check(MP("\x91\x01\x01")), TR_EMALFORMED);
}

Test(bad_input, mp_check_reserved_byte) {
  EXPECT_ST(tr_mp_check(MP(MP_RESERVED)), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check(MP("\x81\x01\xc1")), TR_EMALFORMED);
}

Test(bad_input, mp_check_too_deep) {
  uint8_t deep[34];
  memset(deep, 0x91, 33);
  deep[33] = 0x01;
  EXPECT_ST(tr_mp_check(deep, sizeof deep), TR_EMALFORMED); /* 33 levels */
  EXPECT_ST(tr_mp_check(deep + 1, sizeof deep - 1), TR_OK); /* 32: the limit */
  memset(deep, 0x91, 32);
  deep[32] = 0x90; /* an empty array counts as a level too */
  EXPECT_ST(tr_mp_check(deep, 33), TR_EMALFORMED);
}

Test(bad_input, mp_check_huge_count) {
  EXPECT_ST(tr_mp_check(MP(MP_HUGE_ARR)), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check(MP("\xdf\xff\xff\xff\xff")), TR_EMALFORMED);
  EXPECT_ST(tr_mp_check(MP("\xdb\xff\xff\xff\xff")), TR_EMALFORMED); /* str32 */
  EXPECT_ST(tr_mp_check(MP("\xc6\xff\xff\xff\xff")), TR_EMALFORMED); /* bin32 */
}

Test(bad_input, mp_get_val_null) {
  tr_val v = tr_int(77);
  EXPECT_ST(tr_mp_get_val(NULL, 1, &v), TR_EINVAL);
  EXPECT_ST(tr_mp_get_val(MP(MP_UINT5), NULL), TR_EINVAL);
  cr_assert(v.type == TR_VAL_INT && v.as.i == 77);
}

Test(bad_input, mp_get_val_malformed) {
  tr_val v = tr_int(77);
  EXPECT_ST(tr_mp_get_val(NULL, 0, &v), TR_EMALFORMED);
  EXPECT_ST(tr_mp_get_val(MP(MP_TRUNC), &v), TR_EMALFORMED);
  EXPECT_ST(tr_mp_get_val(MP(MP_TRAILING), &v), TR_EMALFORMED);
  EXPECT_ST(tr_mp_get_val(MP(MP_RESERVED), &v), TR_EMALFORMED);
  cr_assert(v.type == TR_VAL_INT && v.as.i == 77);
}

Test(bad_input, mp_get_val_container) {
  tr_val v = tr_int(77);
  EXPECT_ST(tr_mp_get_val(MP(MP_ARRAY3), &v), TR_EDECODE);
  EXPECT_ST(tr_mp_get_val(MP(MP_MAP), &v), TR_EDECODE);
  EXPECT_ST(tr_mp_get_val(MP("\x90"), &v), TR_EDECODE);
  cr_assert(v.type == TR_VAL_INT && v.as.i == 77);
}

Test(bad_input, mp_get_val_ext) {
  tr_val v = tr_int(77);
  EXPECT_ST(tr_mp_get_val(MP(MP_EXT), &v), TR_EDECODE);
  cr_assert(v.type == TR_VAL_INT && v.as.i == 77);
}

static bool vals_untouched(const tr_val *out, size_t n) {
  tr_val pattern[4];
  memset(pattern, 0xAB, sizeof pattern);
  return memcmp(out, pattern, n * sizeof *out) == 0;
}

Test(bad_input, mp_get_vals_null) {
  tr_val out[2];
  memset(out, 0xAB, sizeof out);
  size_t n = 77;
  EXPECT_ST(tr_mp_get_vals(NULL, 1, out, 2, &n), TR_EINVAL);
  EXPECT_ST(tr_mp_get_vals(MP(MP_ARRAY3), out, 2, NULL), TR_EINVAL);
  EXPECT_ST(tr_mp_get_vals(MP("\x91\x01"), NULL, 1, &n), TR_EINVAL);
  cr_assert_eq(n, 77);
  cr_assert(vals_untouched(out, 2));
}

Test(bad_input, mp_get_vals_malformed) {
  tr_val out[2];
  memset(out, 0xAB, sizeof out);
  size_t n = 77;
  EXPECT_ST(tr_mp_get_vals(NULL, 0, out, 2, &n), TR_EMALFORMED);
  EXPECT_ST(tr_mp_get_vals(MP("\x92\x01"), out, 2, &n), TR_EMALFORMED);
  EXPECT_ST(tr_mp_get_vals(MP(MP_HUGE_ARR), out, 2, &n), TR_EMALFORMED);
  EXPECT_ST(tr_mp_get_vals(MP("\x91\x01\x01"), out, 2, &n), TR_EMALFORMED);
  cr_assert_eq(n, 77);
  cr_assert(vals_untouched(out, 2));
}

Test(bad_input, mp_get_vals_not_array) {
  tr_val out[2];
  memset(out, 0xAB, sizeof out);
  size_t n = 77;
  EXPECT_ST(tr_mp_get_vals(MP(MP_UINT5), out, 2, &n), TR_EDECODE);
  EXPECT_ST(tr_mp_get_vals(MP(MP_MAP), out, 2, &n), TR_EDECODE);
  EXPECT_ST(tr_mp_get_vals(MP(MP_NESTED), out, 2, &n), TR_EDECODE);
  EXPECT_ST(tr_mp_get_vals(MP(MP_ARR_EXT), out, 2, &n), TR_EDECODE);
  cr_assert_eq(n, 77);
  cr_assert(vals_untouched(out, 2));
}

Test(bad_input, mp_get_vals_too_small) {
  tr_val out[2];
  memset(out, 0xAB, sizeof out);
  size_t n = 77;
  EXPECT_ST(tr_mp_get_vals(MP(MP_ARRAY3), out, 2, &n), TR_ENOSPC);
  cr_assert_eq(n, 3);
  cr_assert(vals_untouched(out, 2));
  n = 77;
  EXPECT_ST(tr_mp_get_vals(MP(MP_ARRAY3), NULL, 0, &n), TR_ENOSPC); /* the size query */
  cr_assert_eq(n, 3);
}

Test(bad_input, mp_get_vals_nested_too_small) {
  tr_val out[2];
  memset(out, 0xAB, sizeof out);
  size_t n = 77;
  EXPECT_ST(tr_mp_get_vals(MP(MP_NESTED3), out, 2, &n), TR_EDECODE);
  cr_assert_eq(n, 77);
  cr_assert(vals_untouched(out, 2));
}

/* tr_mp_encode_vals: on error `buf` is untouched, and *len is too except
 * for ENOSPC. */
static uint8_t enc_buf[16];
static void enc_reset(void) { memset(enc_buf, 0x5A, sizeof enc_buf); }
static bool enc_untouched(void) {
  for (size_t i = 0; i < sizeof enc_buf; i++)
    if (enc_buf[i] != 0x5A)
      return false;
  return true;
}

Test(bad_input, mp_encode_vals_null_len) {
  tr_val v = tr_int(1);
  enc_reset();
  EXPECT_ST(tr_mp_encode_vals(&v, 1, false, enc_buf, sizeof enc_buf, NULL), TR_EINVAL);
  cr_assert(enc_untouched());
}

Test(bad_input, mp_encode_vals_null_vals) {
  size_t len = 77;
  enc_reset();
  EXPECT_ST(tr_mp_encode_vals(NULL, 1, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  EXPECT_ST(tr_mp_encode_vals(NULL, 2, true, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  cr_assert_eq(len, 77);
  cr_assert(enc_untouched());
}

Test(bad_input, mp_encode_vals_null_buf_with_cap) {
  tr_val v = tr_int(1);
  size_t len = 77;
  EXPECT_ST(tr_mp_encode_vals(&v, 1, false, NULL, 16, &len), TR_EINVAL);
  cr_assert_eq(len, 77);
}

Test(bad_input, mp_encode_vals_bare_count_not_one) {
  tr_val v[2] = {tr_int(1), tr_int(2)};
  size_t len = 77;
  enc_reset();
  EXPECT_ST(tr_mp_encode_vals(v, 0, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  EXPECT_ST(tr_mp_encode_vals(v, 2, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  cr_assert_eq(len, 77);
  cr_assert(enc_untouched());
}

Test(bad_input, mp_encode_vals_bad_type) {
  tr_val v[2] = {tr_int(1), tr_nil()};
  size_t len = 77;
  enc_reset();
  const int bad[] = {TR_VAL_BIN + 1, 99, -1};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    v[1].type = (tr_val_type)bad[i];
    EXPECT_ST(tr_mp_encode_vals(v, 2, true, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
    EXPECT_ST(tr_mp_encode_vals(&v[1], 1, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  }
  cr_assert_eq(len, 77);
  cr_assert(enc_untouched());
}

Test(bad_input, mp_encode_vals_str_null_ptr) {
  tr_val v = tr_strn(NULL, 3);
  size_t len = 77;
  enc_reset();
  EXPECT_ST(tr_mp_encode_vals(&v, 1, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  v = tr_bin(NULL, 3);
  EXPECT_ST(tr_mp_encode_vals(&v, 1, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  cr_assert_eq(len, 77);
  cr_assert(enc_untouched());
}

Test(bad_input, mp_encode_vals_str_len_over_u32) {
  tr_val v = tr_strn("x", (size_t)UINT32_MAX + 1);
  size_t len = 77;
  enc_reset();
  EXPECT_ST(tr_mp_encode_vals(&v, 1, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  v = tr_bin("x", SIZE_MAX);
  EXPECT_ST(tr_mp_encode_vals(&v, 1, false, enc_buf, sizeof enc_buf, &len), TR_EINVAL);
  cr_assert_eq(len, 77);
  cr_assert(enc_untouched());
}

/* Refused from the count alone: no element is read. */
Test(bad_input, mp_encode_vals_count_over_u32) {
  tr_val v = tr_nil();
  size_t len = 77;
  enc_reset();
  EXPECT_ST(tr_mp_encode_vals(&v, (size_t)UINT32_MAX + 1, true, enc_buf, sizeof enc_buf, &len),
            TR_EINVAL);
  cr_assert_eq(len, 77);
  cr_assert(enc_untouched());
}

Test(bad_input, mp_encode_vals_too_small) {
  tr_val v[2] = {tr_str("hello"), tr_uint(UINT64_MAX)}; /* 1 + 6 + 9 bytes */
  size_t len = 77;
  enc_reset();
  EXPECT_ST(tr_mp_encode_vals(v, 2, true, enc_buf, 15, &len), TR_ENOSPC);
  cr_assert_eq(len, 16, "ENOSPC gives the size needed");
  cr_assert(enc_untouched());
  len = 77;
  EXPECT_ST(tr_mp_encode_vals(v, 2, true, NULL, 0, &len), TR_ENOSPC); /* the size query */
  cr_assert_eq(len, 16);
}

/* ================================================================ timers */

static tr_system_stats timer_env(tr_system **sys, tr_ref *r, size_t max_msg) {
  *sys = sys_started(1, max_msg);
  OK(tr_spawn(tr_system_ctx(*sys), &sink_spec, NULL, r));
  WAIT(*sys);
  return stats(*sys);
}

#define SENTINEL_TIMER ((tr_timer){0x5151})

Test(bad_input, send_after_null_ctx) {
  tr_timer t = SENTINEL_TIMER;
  EXPECT_ST(tr_send_after(NULL, TR_REF_NONE, TAG, 0, 0, NULL, 0, &t), TR_EINVAL);
  cr_assert_eq(t.id, SENTINEL_TIMER.id);
}

Test(bad_input, send_after_delay_over_max) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 0);
  tr_timer t = SENTINEL_TIMER;
  tr_ctx *ctx = tr_system_ctx(sys);
  EXPECT_ST(tr_send_after(ctx, r, TAG, TR_TIMER_MAX_MS + 1, 0, NULL, 0, &t), TR_EINVAL);
  EXPECT_ST(tr_send_after(ctx, r, TAG, UINT64_MAX, 0, NULL, 0, &t), TR_EINVAL);
  cr_assert_eq(t.id, SENTINEL_TIMER.id);
  WAIT(sys);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, send_after_period_over_max) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 0);
  tr_timer t = SENTINEL_TIMER;
  tr_ctx *ctx = tr_system_ctx(sys);
  EXPECT_ST(tr_send_after(ctx, r, TAG, 0, TR_TIMER_MAX_MS + 1, NULL, 0, &t), TR_EINVAL);
  EXPECT_ST(tr_send_after(ctx, r, TAG, 0, UINT64_MAX, NULL, 0, &t), TR_EINVAL);
  cr_assert_eq(t.id, SENTINEL_TIMER.id);
  WAIT(sys);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, send_after_malformed) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 0);
  tr_timer t = SENTINEL_TIMER;
  tr_ctx *ctx = tr_system_ctx(sys);
  EXPECT_ST(tr_send_after(ctx, r, TAG, 0, 0, MP(MP_TRUNC), &t), TR_EMALFORMED);
  EXPECT_ST(tr_send_after(ctx, r, TAG, 0, 0, MP(MP_TRAILING), &t), TR_EMALFORMED);
  EXPECT_ST(tr_send_after(ctx, r, TAG, 0, 0, MP(MP_RESERVED), &t), TR_EMALFORMED);
  cr_assert_eq(t.id, SENTINEL_TIMER.id);
  WAIT(sys);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, send_after_empty_payload) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 0);
  tr_timer t = SENTINEL_TIMER;
  EXPECT_ST(tr_send_after(tr_system_ctx(sys), r, TAG, 0, 0, "", 0, &t), TR_EMALFORMED);
  cr_assert_eq(t.id, SENTINEL_TIMER.id);
  WAIT(sys);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, send_after_oversized) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 4);
  tr_timer t = SENTINEL_TIMER;
  tr_ctx *ctx = tr_system_ctx(sys);
  EXPECT_ST(tr_send_after(ctx, r, TAG, 0, 0, MP(MP_STR4), &t), TR_ETOOBIG);
  EXPECT_ST(tr_send_after(ctx, r, TAG, 0, 0, "x", SIZE_MAX, &t), TR_ETOOBIG);
  cr_assert_eq(t.id, SENTINEL_TIMER.id);
  WAIT(sys);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, send_after_when_system_stopped) {
  tr_system *sys;
  tr_ref r;
  timer_env(&sys, &r, 0);
  OK(tr_system_stop(sys));
  tr_system_stats before = stats(sys);
  tr_timer t = SENTINEL_TIMER;
  EXPECT_ST(tr_send_after(tr_system_ctx(sys), r, TAG, 0, 0, NULL, 0, &t), TR_ESTATE);
  cr_assert_eq(t.id, SENTINEL_TIMER.id);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

/* The ref is not checked when arming: the timer fires into a STALE dead
 * letter. */
Test(bad_input, send_after_to_stale_ref) {
  tr_system *sys = sys_started(1, 0);
  tr_ref old = stopped_ref(sys);
  tr_system_stats before = stats(sys);
  tr_timer t;
  EXPECT_ST(tr_send_after(tr_system_ctx(sys), old, TAG, 0, 0, MP(MP_UINT5), &t), TR_OK);
  WAIT(sys);
  EXPECT_DELTA(sys, before, .timers_armed = 1, .timers_fired = 1, STALE_1);
  EXPECT_ST(tr_timer_cancel(tr_system_ctx(sys), t), TR_ESTALE);
  tr_system_free(sys);
}

/* A periodic timer to a stale ref fires once and ends itself, counted as
 * cancelled (the wait returns: nothing keeps the system busy). */
Test(bad_input, send_after_periodic_to_stale_ref) {
  tr_system *sys = sys_started(1, 0);
  tr_ref old = stopped_ref(sys);
  tr_system_stats before = stats(sys);
  tr_timer t;
  EXPECT_ST(tr_send_after(tr_system_ctx(sys), old, TAG, 0, 1, NULL, 0, &t), TR_OK);
  WAIT(sys);
  EXPECT_DELTA(sys, before, .timers_armed = 1, .timers_fired = 1, .timers_cancelled = 1, STALE_1);
  EXPECT_ST(tr_timer_cancel(tr_system_ctx(sys), t), TR_ESTALE);
  tr_system_free(sys);
}

/* NULL payload means nil, whatever the length says. */
static void p_is_nil(tr_ctx *c, const tr_msg *m) {
  (void)c;
  atomic_store(&kept[0], tr_msg_is_nil(m));
  rec(0, TR_OK);
}
Test(bad_input, send_after_null_payload_with_len) {
  tr_system *sys = sys_started(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref p;
  probe_body = p_is_nil;
  OK(tr_spawn(ctx, &probe_spec, NULL, &p));
  WAIT(sys);
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_send_after(ctx, p, TAG, 0, 0, NULL, 5, NULL), TR_OK);
  WAIT(sys);
  GOT(0, TR_OK);
  KEPT(0);
  EXPECT_DELTA(sys, before, .timers_armed = 1, .timers_fired = 1, .sent = 1, .handled = 1);
  tr_system_free(sys);
}

/* DISAGREES (mild): the header lists only TR_OK and TR_ESTALE. */
Test(bad_input, timer_cancel_null_ctx) {
  tr_system *sys;
  tr_ref r;
  timer_env(&sys, &r, 0);
  tr_timer t;
  OK(tr_send_after(tr_system_ctx(sys), r, TAG, 3600 * 1000, 0, NULL, 0, &t));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_timer_cancel(NULL, t), TR_EINVAL);
  EXPECT_NOTHING(sys, before);
  OK(tr_timer_cancel(tr_system_ctx(sys), t)); /* still pending */
  WAIT(sys);
  tr_system_free(sys);
}

Test(bad_input, timer_cancel_zero_handle) {
  tr_system *sys = sys_started(1, 0);
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_timer_cancel(tr_system_ctx(sys), (tr_timer){0}), TR_ESTALE);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

/* A zeroed tr_timer is no handle: TR_ESTALE, even while the system's first
 * timer (slot 0, generation 0) is pending, which must not be cancelled. */
Test(bad_input, timer_cancel_zero_handle_with_first_timer_pending) {
  tr_system *sys;
  tr_ref r;
  timer_env(&sys, &r, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_timer t;
  OK(tr_send_after(ctx, r, TAG, 3600 * 1000, 0, NULL, 0, &t));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_timer_cancel(ctx, (tr_timer){0}), TR_ESTALE);
  EXPECT_NOTHING(sys, before);
  EXPECT_ST(tr_timer_cancel(ctx, t), TR_OK); /* the real handle still works */
  WAIT(sys);
  tr_system_free(sys);
}

Test(bad_input, timer_cancel_made_up_handle) {
  tr_system *sys;
  tr_ref r;
  timer_env(&sys, &r, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_timer t;
  OK(tr_send_after(ctx, r, TAG, 3600 * 1000, 0, NULL, 0, &t));
  tr_system_stats before = stats(sys);
  const uint64_t bad[] = {UINT64_MAX, (1ull << 63) | 12345, t.id + (1ull << 32), t.id + 1,
                          0xDEADBEEFull};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    EXPECT_ST(tr_timer_cancel(ctx, (tr_timer){bad[i]}), TR_ESTALE);
  EXPECT_NOTHING(sys, before);
  OK(tr_timer_cancel(ctx, t)); /* the real one was not touched */
  WAIT(sys);
  tr_system_free(sys);
}

Test(bad_input, timer_cancel_fired) {
  tr_system *sys;
  tr_ref r;
  timer_env(&sys, &r, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_timer t;
  OK(tr_send_after(ctx, r, TAG, 0, 0, NULL, 0, &t));
  WAIT(sys);
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_timer_cancel(ctx, t), TR_ESTALE);
  EXPECT_NOTHING(sys, before);
  cr_assert_eq(atomic_load(&sunk), 1);
  tr_system_free(sys);
}

Test(bad_input, timer_cancel_twice) {
  tr_system *sys;
  tr_ref r;
  timer_env(&sys, &r, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_timer t;
  OK(tr_send_after(ctx, r, TAG, 3600 * 1000, 1000, NULL, 0, &t));
  OK(tr_timer_cancel(ctx, t));
  tr_system_stats before = stats(sys);
  EXPECT_ST(tr_timer_cancel(ctx, t), TR_ESTALE);
  EXPECT_NOTHING(sys, before);
  WAIT(sys);
  cr_assert_eq(atomic_load(&sunk), 0);
  tr_system_free(sys);
}

/* ================================================================ asks */

Test(bad_input, msg_corr_null) { cr_assert_eq(tr_msg_corr(NULL), 0); }

Test(bad_input, msg_is_reply_null) { cr_assert(!tr_msg_is_reply(NULL)); }

Test(bad_input, ask_null_ctx) {
  uint32_t corr = 77;
  EXPECT_ST(tr_ask(NULL, TR_REF_NONE, TAG, NULL, 0, 100, &corr), TR_EINVAL);
  cr_assert_eq(corr, 77);
}

Test(bad_input, ask_outside_behaviour) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 0);
  uint32_t corr = 77;
  EXPECT_ST(tr_ask(tr_system_ctx(sys), r, TAG, NULL, 0, 100, &corr), TR_ESTATE);
  tr_ctx *b;
  OK(tr_ctx_new_blocking(sys, 10, &b));
  EXPECT_ST(tr_ask(b, r, TAG, NULL, 0, 100, &corr), TR_ESTATE);
  tr_ctx_free(b);
  cr_assert_eq(corr, 77);
  WAIT(sys);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

/* Ask probes: got[0] is the status, kept[0] whether *corr was left alone. */
static void ask_rec(tr_status st, uint32_t corr) {
  rec(0, st);
  atomic_store(&kept[0], corr == 77);
}
static void p_ask_timeout_zero(tr_ctx *c, const tr_msg *m) {
  (void)m;
  uint32_t corr = 77;
  ask_rec(tr_ask(c, g_target, TAG, NULL, 0, 0, &corr), corr);
}
static void p_ask_timeout_over_max(tr_ctx *c, const tr_msg *m) {
  (void)m;
  uint32_t corr = 77;
  tr_status st = tr_ask(c, g_target, TAG, NULL, 0, TR_TIMER_MAX_MS + 1, &corr);
  if (st == TR_EINVAL)
    st = tr_ask(c, g_target, TAG, NULL, 0, UINT64_MAX, &corr);
  ask_rec(st, corr);
}
static void p_ask_malformed(tr_ctx *c, const tr_msg *m) {
  (void)m;
  uint32_t corr = 77;
  ask_rec(tr_ask(c, g_target, TAG, MP(MP_TRUNC), 100, &corr), corr);
}
static void p_ask_oversized(tr_ctx *c, const tr_msg *m) {
  (void)m;
  uint32_t corr = 77;
  ask_rec(tr_ask(c, g_target, TAG, MP(MP_STR4), 100, &corr), corr);
}
static void p_ask_stale(tr_ctx *c, const tr_msg *m) {
  (void)m;
  uint32_t corr = 77;
  ask_rec(tr_ask(c, g_target, TAG, NULL, 0, 100, &corr), corr);
}
static void p_ask_full(tr_ctx *c, const tr_msg *m) {
  (void)m;
  uint32_t corr = 77;
  tr_status filler = tr_send(c, g_target, TAG); /* capacity 1: now full */
  ask_rec(filler == TR_OK ? tr_ask(c, g_target, TAG, NULL, 0, 100, &corr) : filler, corr);
}

/* One probe asks g_target; only the probe's own message happens. */
static void ask_arg_error(probe_fn fn, size_t max_msg, tr_status want) {
  tr_system *sys = sys_started(1, max_msg);
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &g_target));
  tr_system_stats before = probe_with(sys, fn, MP(MP_NIL));
  GOT(0, want);
  KEPT(0);
  EXPECT_DELTA(sys, before, .sent = 1, .handled = 1);
  cr_assert_eq(atomic_load(&sunk), 0);
  tr_system_free(sys);
}

Test(bad_input, ask_zero_timeout) { ask_arg_error(p_ask_timeout_zero, 0, TR_EINVAL); }
Test(bad_input, ask_timeout_over_max) { ask_arg_error(p_ask_timeout_over_max, 0, TR_EINVAL); }
Test(bad_input, ask_malformed) { ask_arg_error(p_ask_malformed, 0, TR_EMALFORMED); }
Test(bad_input, ask_oversized) { ask_arg_error(p_ask_oversized, 4, TR_ETOOBIG); }

/* DISAGREES (mild): "an error means nothing happened", yet the failed
 * ask's timeout timer shows in timers_armed and timers_cancelled (asks is
 * not counted). No timeout message comes (the wait returns, and the probe
 * ran once). */
Test(bad_input, ask_to_stale_ref) {
  tr_system *sys = sys_started(1, 0);
  g_target = stopped_ref(sys);
  tr_system_stats before = probe_with(sys, p_ask_stale, MP(MP_NIL));
  GOT(0, TR_ESTALE);
  KEPT(0);
  EXPECT_DELTA(sys, before, .sent = 1, .handled = 1, STALE_1, .timers_armed = 1,
               .timers_cancelled = 1);
  tr_system_free(sys);
}

/* DISAGREES (mild): as ask_to_stale_ref, the failed ask's timer shows. */
Test(bad_input, ask_to_full_mailbox) {
  tr_system *sys = sys_started(1, 0);
  tr_actor_spec s = bounded(TR_MAILBOX_REFUSE, 1);
  OK(tr_spawn(tr_system_ctx(sys), &s, NULL, &g_target));
  tr_system_stats before = probe_with(sys, p_ask_full, MP(MP_NIL));
  GOT(0, TR_EFULL);
  KEPT(0);
  /* The probe's message and its filler were sent and handled. */
  EXPECT_DELTA(sys, before, .sent = 2, .handled = 2, .refused = 1, .timers_armed = 1,
               .timers_cancelled = 1);
  tr_system_free(sys);
}

/* ---------------------------------------------------------------- replies */

/* An asker and a replier. The asker, on TAG_GO, asks the replier (timeout
 * g_ask_ms) and may then stop itself; on the reply or the timeout it runs
 * a hook. The replier runs `on_request` on the request. */
static uint64_t g_ask_ms = 50; /* paths that end in the timeout */
#define ASK_MS_LONG 10000      /* paths that must beat it, even under ASan */
static bool g_asker_stops;
static tr_ref g_replier;
static probe_fn on_request, on_reply, on_timeout;
static _Atomic int replies, timeouts;

static tr_status asker_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (tr_msg_tag(msg) == TAG_GO && !tr_msg_is_reply(msg) && tr_msg_corr(msg) == 0) {
    uint32_t corr;
    rec(3, tr_ask(ctx, g_replier, TAG_REQ, NULL, 0, g_ask_ms, &corr));
    if (g_asker_stops)
      return tr_stop(ctx, tr_self(ctx));
  } else if (tr_msg_is_reply(msg)) {
    atomic_fetch_add(&replies, 1);
    if (on_reply != NULL)
      on_reply(ctx, msg);
  } else if (tr_msg_tag(msg) == TR_TAG_TIMEOUT) {
    atomic_fetch_add(&timeouts, 1);
    if (on_timeout != NULL)
      on_timeout(ctx, msg);
  }
  return TR_OK;
}

static tr_status replier_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (on_request != NULL)
    on_request(ctx, msg);
  return TR_OK;
}

/* Start the pair, send GO, wait; returns the counters from before GO. */
static tr_system_stats ask_pair(tr_system *sys) {
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec as = {.name = "asker", .behaviour = asker_behaviour};
  tr_actor_spec rs = {.name = "replier", .behaviour = replier_behaviour};
  tr_ref asker;
  OK(tr_spawn(ctx, &as, NULL, &asker));
  OK(tr_spawn(ctx, &rs, NULL, &g_replier));
  WAIT(sys);
  tr_system_stats before = stats(sys);
  OK(tr_send(ctx, asker, TAG_GO));
  WAIT(sys);
  GOT(3, TR_OK); /* the ask itself went out */
  return before;
}

static void reply_ok(tr_ctx *c, const tr_msg *m) { rec(1, tr_reply(c, m, TAG, MP(MP_UINT5))); }

/* The replier's bad call sent nothing: the asker got its timeout instead. */
static void expect_reply_failed(tr_system *sys, tr_system_stats before) {
  cr_assert_eq(atomic_load(&replies), 0);
  cr_assert_eq(atomic_load(&timeouts), 1);
  EXPECT_DELTA(sys, before, .sent = 3, .handled = 3, .asks = 1, .ask_timeouts = 1,
               .timers_armed = 1, .timers_fired = 1);
}

static void r_null_ctx(tr_ctx *c, const tr_msg *m) {
  (void)c;
  rec(0, tr_reply(NULL, m, TAG, NULL, 0));
}
Test(bad_input, reply_null_ctx) {
  tr_system *sys = sys_started(2, 0);
  on_request = r_null_ctx;
  tr_system_stats before = ask_pair(sys);
  GOT(0, TR_EINVAL);
  expect_reply_failed(sys, before);
  tr_system_free(sys);
}

static void r_null_request(tr_ctx *c, const tr_msg *m) {
  (void)m;
  rec(0, tr_reply(c, NULL, TAG, NULL, 0));
}
Test(bad_input, reply_null_request) {
  tr_system *sys = sys_started(2, 0);
  on_request = r_null_request;
  tr_system_stats before = ask_pair(sys);
  GOT(0, TR_EINVAL);
  expect_reply_failed(sys, before);
  tr_system_free(sys);
}

static void r_malformed(tr_ctx *c, const tr_msg *m) {
  rec(0, tr_reply(c, m, TAG, MP(MP_TRAILING)));
}
Test(bad_input, reply_malformed) {
  tr_system *sys = sys_started(2, 0);
  on_request = r_malformed;
  tr_system_stats before = ask_pair(sys);
  GOT(0, TR_EMALFORMED);
  expect_reply_failed(sys, before);
  tr_system_free(sys);
}

static void r_oversized(tr_ctx *c, const tr_msg *m) { rec(0, tr_reply(c, m, TAG, MP(MP_STR4))); }
Test(bad_input, reply_oversized) {
  tr_system *sys = sys_started(2, 4);
  on_request = r_oversized;
  tr_system_stats before = ask_pair(sys);
  GOT(0, TR_ETOOBIG);
  expect_reply_failed(sys, before);
  tr_system_free(sys);
}

static void p_reply_plain(tr_ctx *c, const tr_msg *m) { rec(0, tr_reply(c, m, TAG, NULL, 0)); }
Test(bad_input, reply_to_plain_message) { /* not an ask: from outside, or from an actor */
  tr_system *sys = sys_started(1, 0);
  tr_system_stats before = probe_with(sys, p_reply_plain, MP(MP_NIL));
  GOT(0, TR_EINVAL);
  EXPECT_DELTA(sys, before, .sent = 1, .handled = 1);
  tr_system_free(sys);
}

static void a_reply_to_reply(tr_ctx *c, const tr_msg *m) { rec(0, tr_reply(c, m, TAG, NULL, 0)); }
Test(bad_input, reply_to_a_reply) {
  tr_system *sys = sys_started(2, 0);
  g_ask_ms = ASK_MS_LONG;
  on_request = reply_ok;
  on_reply = a_reply_to_reply;
  tr_system_stats before = ask_pair(sys);
  GOT(1, TR_OK);
  GOT(0, TR_EINVAL);
  cr_assert_eq(atomic_load(&replies), 1);
  cr_assert_eq(atomic_load(&timeouts), 0);
  EXPECT_DELTA(sys, before, .sent = 3, .handled = 3, .asks = 1, .timers_armed = 1,
               .timers_cancelled = 1);
  tr_system_free(sys);
}

Test(bad_input, reply_to_timeout_message) {
  tr_system *sys = sys_started(2, 0);
  on_timeout = a_reply_to_reply;
  tr_system_stats before = ask_pair(sys);
  GOT(0, TR_EINVAL);
  expect_reply_failed(sys, before);
  tr_system_free(sys);
}

static void r_twice(tr_ctx *c, const tr_msg *m) {
  rec(1, tr_reply(c, m, TAG, NULL, 0));
  rec(0, tr_reply(c, m, TAG, NULL, 0));
}
/* The second reply is late: TR_OK, a LATE_REPLY dead letter. */
Test(bad_input, reply_twice) {
  tr_system *sys = sys_started(2, 0);
  g_ask_ms = ASK_MS_LONG;
  on_request = r_twice;
  tr_system_stats before = ask_pair(sys);
  GOT(1, TR_OK);
  GOT(0, TR_OK);
  cr_assert_eq(atomic_load(&replies), 1);
  cr_assert_eq(atomic_load(&timeouts), 0);
  EXPECT_DELTA(sys, before, .sent = 3, .handled = 3, .asks = 1, .timers_armed = 1,
               .timers_cancelled = 1, .dead_letters[TR_DEAD_LATE_REPLY] = 1);
  tr_system_free(sys);
}

/* The replier holds the request until the asker has had its timeout. */
static void r_late(tr_ctx *c, const tr_msg *m) {
  bool timed_out = wait_flag(&timeouts, 1);
  rec(0, timed_out ? tr_reply(c, m, TAG, MP(MP_UINT5)) : TR_ETIMEDOUT);
}
Test(bad_input, reply_after_ask_timeout) {
  tr_system *sys = sys_started(2, 0);
  g_ask_ms = 1;
  on_request = r_late;
  tr_system_stats before = ask_pair(sys);
  GOT(0, TR_OK);
  cr_assert_eq(atomic_load(&replies), 0, "a late reply was delivered");
  cr_assert_eq(atomic_load(&timeouts), 1);
  EXPECT_DELTA(sys, before, .sent = 3, .handled = 3, .asks = 1, .ask_timeouts = 1,
               .timers_armed = 1, .timers_fired = 1, .dead_letters[TR_DEAD_LATE_REPLY] = 1);
  tr_system_free(sys);
}

/* The asker stopped after asking (one worker: before the replier ran). The
 * reply answers the ask (its timeout timer is cancelled) and becomes a
 * STALE dead letter; tr_reply still says TR_OK. */
Test(bad_input, reply_to_stopped_asker) {
  tr_system *sys = sys_started(1, 0);
  g_asker_stops = true;
  g_ask_ms = ASK_MS_LONG;
  on_request = reply_ok;
  tr_system_stats before = ask_pair(sys);
  GOT(1, TR_OK);
  cr_assert_eq(atomic_load(&replies) + atomic_load(&timeouts), 0);
  EXPECT_DELTA(sys, before, .sent = 2, .handled = 2, .actors_stopped = 1, .asks = 1,
               .timers_armed = 1, .timers_cancelled = 1, STALE_1);
  tr_system_free(sys);
}

/* DISAGREES (mild): "behaviour only (the ctx handling request)" is not
 * enforced: a reply made with the system's ctx inside the behaviour is
 * delivered like any other. */
static void r_system_ctx(tr_ctx *c, const tr_msg *m) {
  rec(1, tr_reply(tr_system_ctx(tr_ctx_system(c)), m, TAG, NULL, 0));
}
Test(bad_input, reply_with_system_ctx) {
  tr_system *sys = sys_started(2, 0);
  g_ask_ms = ASK_MS_LONG;
  on_request = r_system_ctx;
  tr_system_stats before = ask_pair(sys);
  GOT(1, TR_OK);
  cr_assert_eq(atomic_load(&replies), 1);
  EXPECT_DELTA(sys, before, .sent = 3, .handled = 3, .asks = 1, .timers_armed = 1,
               .timers_cancelled = 1);
  tr_system_free(sys);
}

/* ---------------------------------------------------------------- blocking asks */

/* On error the reply outputs are left untouched. */
typedef struct ask_out {
  uint32_t tag;
  void *reply;
  size_t len;
} ask_out;
#define ASK_OUT_INIT                                                                               \
  { 77, (void *)(uintptr_t)0x5151, 77 }
#define ASK_ARGS(o) &(o).tag, &(o).reply, &(o).len
static void expect_out_kept(const ask_out *o) {
  cr_assert(o->tag == 77 && o->reply == (void *)(uintptr_t)0x5151 && o->len == 77,
            "tr_ask_wait wrote its outputs on error");
}

Test(bad_input, ask_wait_null_ctx) {
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(NULL, TR_REF_NONE, TAG, NULL, 0, 100, ASK_ARGS(o)), TR_EINVAL);
  expect_out_kept(&o);
}

Test(bad_input, ask_wait_null_outputs) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(ctx, r, TAG, NULL, 0, 100, NULL, &o.reply, &o.len), TR_EINVAL);
  EXPECT_ST(tr_ask_wait(ctx, r, TAG, NULL, 0, 100, &o.tag, NULL, &o.len), TR_EINVAL);
  EXPECT_ST(tr_ask_wait(ctx, r, TAG, NULL, 0, 100, &o.tag, &o.reply, NULL), TR_EINVAL);
  expect_out_kept(&o);
  WAIT(sys);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, ask_wait_before_start) {
  tr_system *sys = sys_new(1, 0);
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &r));
  tr_system_stats before = stats(sys);
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), r, TAG, NULL, 0, 100, ASK_ARGS(o)), TR_ESTATE);
  expect_out_kept(&o);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

Test(bad_input, ask_wait_when_system_stopped) {
  tr_system *sys;
  tr_ref r;
  timer_env(&sys, &r, 0);
  OK(tr_system_stop(sys));
  tr_system_stats before = stats(sys);
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), r, TAG, NULL, 0, 100, ASK_ARGS(o)), TR_ESTATE);
  expect_out_kept(&o);
  EXPECT_NOTHING(sys, before);
  tr_system_free(sys);
}

static void p_ask_wait_own_ctx(tr_ctx *c, const tr_msg *m) {
  (void)m;
  ask_out o = ASK_OUT_INIT;
  rec(0, tr_ask_wait(c, g_target, TAG, NULL, 0, 100, ASK_ARGS(o)));
  atomic_store(&kept[0], o.tag == 77 && o.len == 77);
}
Test(bad_input, ask_wait_inside_behaviour) {
  tr_system *sys = sys_started(1, 0);
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &g_target));
  tr_system_stats before = probe_with(sys, p_ask_wait_own_ctx, MP(MP_NIL));
  GOT(0, TR_ESTATE);
  KEPT(0);
  EXPECT_DELTA(sys, before, .sent = 1, .handled = 1);
  tr_system_free(sys);
}

static void p_ask_wait_system_ctx(tr_ctx *c, const tr_msg *m) {
  (void)m;
  ask_out o = ASK_OUT_INIT;
  rec(0, tr_ask_wait(tr_system_ctx(tr_ctx_system(c)), g_target, TAG, NULL, 0, 100, ASK_ARGS(o)));
  atomic_store(&kept[0], o.tag == 77 && o.len == 77);
}
Test(bad_input, ask_wait_on_worker_with_system_ctx) {
  tr_system *sys = sys_started(1, 0);
  OK(tr_spawn(tr_system_ctx(sys), &sink_spec, NULL, &g_target));
  tr_system_stats before = probe_with(sys, p_ask_wait_system_ctx, MP(MP_NIL));
  GOT(0, TR_ESTATE);
  KEPT(0);
  EXPECT_DELTA(sys, before, .sent = 1, .handled = 1);
  tr_system_free(sys);
}

/* Argument errors found after tr_ask_wait has spawned its waiter actor.
 * DISAGREES (mild): "an error means nothing happened", yet the waiter was
 * spawned and stopped (actors_spawned and actors_stopped each + 1). */
static void ask_wait_arg_error(size_t max_msg, const void *mp, size_t len, uint64_t timeout_ms,
                               tr_status want) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, max_msg);
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), r, TAG, mp, len, timeout_ms, ASK_ARGS(o)), want);
  expect_out_kept(&o);
  WAIT(sys);
  EXPECT_DELTA(sys, before, .actors_spawned = 1, .actors_stopped = 1);
  cr_assert_eq(atomic_load(&sunk), 0);
  tr_system_free(sys);
}

Test(bad_input, ask_wait_zero_timeout) { ask_wait_arg_error(0, NULL, 0, 0, TR_EINVAL); }
Test(bad_input, ask_wait_timeout_over_max) {
  ask_wait_arg_error(0, NULL, 0, TR_TIMER_MAX_MS + 1, TR_EINVAL);
}
Test(bad_input, ask_wait_malformed) { ask_wait_arg_error(0, MP(MP_TRUNC), 100, TR_EMALFORMED); }
Test(bad_input, ask_wait_oversized) { ask_wait_arg_error(4, MP(MP_STR4), 100, TR_ETOOBIG); }

/* DISAGREES (mild): besides the waiter, the failed ask's timer shows
 * (timers_armed, timers_cancelled). */
Test(bad_input, ask_wait_to_stale_ref) {
  tr_system *sys = sys_started(1, 0);
  tr_ref old = stopped_ref(sys);
  tr_system_stats before = stats(sys);
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), old, TAG, NULL, 0, 100, ASK_ARGS(o)), TR_ESTALE);
  expect_out_kept(&o);
  WAIT(sys);
  EXPECT_DELTA(sys, before, .actors_spawned = 1, .actors_stopped = 1, STALE_1, .timers_armed = 1,
               .timers_cancelled = 1);
  tr_system_free(sys);
}

/* A receiver that never replies: TR_ETIMEDOUT after the timeout. */
Test(bad_input, ask_wait_no_reply) {
  tr_system *sys;
  tr_ref r;
  tr_system_stats before = timer_env(&sys, &r, 0);
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(tr_system_ctx(sys), r, TAG, NULL, 0, 20, ASK_ARGS(o)), TR_ETIMEDOUT);
  expect_out_kept(&o);
  WAIT(sys);
  /* The request reached the sink; the timeout reached the waiter. */
  EXPECT_DELTA(sys, before, .actors_spawned = 1, .actors_stopped = 1, .sent = 2, .handled = 2,
               .asks = 1, .ask_timeouts = 1, .timers_armed = 1, .timers_fired = 1);
  cr_assert_eq(atomic_load(&sunk), 1);
  tr_system_free(sys);
}

/* A gate: the first message holds the actor until the test opens it. */
static _Atomic int gate_entered, gate_open;
static tr_status gate_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  (void)msg;
  if (atomic_fetch_add(&gate_entered, 1) == 0)
    (void)wait_flag(&gate_open, 1);
  return TR_OK;
}

/* DISAGREES (mild): as ask_wait_to_stale_ref. */
Test(bad_input, ask_wait_to_full_mailbox) {
  tr_system *sys = sys_started(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec s = {.name = "gate",
                     .behaviour = gate_behaviour,
                     .mailbox_policy = TR_MAILBOX_REFUSE,
                     .mailbox_capacity = 1};
  tr_ref r;
  OK(tr_spawn(ctx, &s, NULL, &r));
  OK(tr_send(ctx, r, TAG));
  uint64_t deadline = now_ms() + 10000;
  while (atomic_load(&gate_entered) == 0 && now_ms() < deadline)
    nanosleep(&(struct timespec){0, 1000000}, NULL);
  cr_assert_eq(atomic_load(&gate_entered), 1, "precondition: the gate took its message");
  OK(tr_send(ctx, r, TAG)); /* waits: the mailbox is full */
  tr_system_stats before = stats(sys);
  ask_out o = ASK_OUT_INIT;
  EXPECT_ST(tr_ask_wait(ctx, r, TAG, NULL, 0, 100, ASK_ARGS(o)), TR_EFULL);
  expect_out_kept(&o);
  atomic_store(&gate_open, 1);
  WAIT(sys);
  EXPECT_DELTA(sys, before, .actors_spawned = 1, .actors_stopped = 1, .handled = 2, .refused = 1,
               .timers_armed = 1, .timers_cancelled = 1);
  cr_assert_eq(atomic_load(&gate_entered), 2);
  tr_system_free(sys);
}

/* ================================================================ contexts */

Test(bad_input, ctx_new_blocking_null_sys) {
  tr_ctx *c = (tr_ctx *)(uintptr_t)0x5151;
  EXPECT_ST(tr_ctx_new_blocking(NULL, 10, &c), TR_EINVAL);
  cr_assert_eq(c, (tr_ctx *)(uintptr_t)0x5151);
}

Test(bad_input, ctx_new_blocking_null_out) {
  tr_system *sys = sys_new(1, 0);
  EXPECT_ST(tr_ctx_new_blocking(sys, 10, NULL), TR_EINVAL);
  tr_system_free(sys);
}

Test(bad_input, ctx_free_null) { tr_ctx_free(NULL); }

/* Not made by tr_ctx_new_blocking: ignored, and it still works. */
Test(bad_input, ctx_free_system_ctx) {
  tr_system *sys = sys_started(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ctx_free(ctx);
  tr_ref r;
  OK(tr_spawn(ctx, &sink_spec, NULL, &r));
  OK(tr_send(ctx, r, TAG));
  WAIT(sys);
  cr_assert_eq(atomic_load(&sunk), 1);
  tr_system_free(sys);
}
