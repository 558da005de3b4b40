/*
 * test_fault.c - failure, exit reasons, monitors, links, dead letters and
 * tr_system_exit, checked against what troupe/fault.h promises.
 *
 * Monitors, links, trap_exits and tr_fail may only be called inside a
 * behaviour, so the tests drive them through one generic actor, the
 * "agent": the main thread sends it a command (DO_MONITOR with a ref,
 * DO_FAIL_STR with a reason, ...), and the agent makes the call and logs
 * what it returned. Whatever an agent receives from the runtime (DOWN, EXIT,
 * dead letters) is decoded and logged too, with its msgpack bytes copied.
 * The log is one array under a mutex. The main thread reads it once
 * tr_system_wait_for says the system is quiescent, and asserts there:
 * Criterion's asserts belong to the main thread, so expectations inside
 * behaviours go through EXPECT (tr_test.h) and ASSERT_NO_BAD.
 *
 * Negative claims ("no DOWN comes", "nothing is forwarded", "it does not
 * fail") are checked after quiescence, when nothing more can arrive, and
 * each comes with a positive control in the same system (another monitor
 * that does fire, another dead letter that is forwarded, a ping that is
 * handled), so that a test cannot pass because nothing was delivered at all.
 *
 * Where a mailbox must be full at an exact moment, the test fills it before
 * tr_system_start, or lets one worker run the actor that fills it and then
 * exits, or holds the receiver inside a message on a flag (the "gate").
 *
 * Criterion runs each test in its own process, so the static log starts
 * empty in every test.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <troupe.h>

#include "../common/tr_test.h"

TestSuite(fault, .timeout = 120);

/* ================================================================ the log */

#define EV_MAX   60000
#define EV_BYTES 64
#define ANY      UINT32_MAX /* any agent */

/* A copy of msgpack bytes from a message. */
typedef struct bytes {
  uint8_t b[EV_BYTES];
  size_t n;
} bytes;

typedef struct event {
  uint32_t agent;     /* the agent that logged it */
  uint32_t kind;      /* TR_TAG_DOWN, TR_TAG_EXIT, TR_TAG_DEAD_LETTER, or the tag it handled */
  tr_status st;       /* a command: what its call returned */
  uint64_t val;       /* a command: what the call gave back (a monitor id) */
  tr_ref ref;         /* DOWN/EXIT: the actor that exited; dead letter: `to` */
  tr_ref from;        /* dead letter: its sender; a handled message: its sender */
  uint64_t monitor;   /* DOWN/EXIT */
  bool failed;        /* DOWN/EXIT */
  tr_dead_reason why; /* dead letter */
  uint32_t tag;       /* dead letter: the original tag */
  bytes a;            /* DOWN/EXIT: reason; dead letter: payload; else the message's payload */
  bytes b;            /* dead letter: detail */
} event;

static pthread_mutex_t ev_lock = PTHREAD_MUTEX_INITIALIZER;
static event ev[EV_MAX];
static size_t ev_n;

static void put_bytes(bytes *dst, const void *p, size_t n) {
  if (!EXPECT(n <= sizeof dst->b))
    n = sizeof dst->b;
  memcpy(dst->b, p, n);
  dst->n = n;
}

static void ev_add(const event *e) {
  pthread_mutex_lock(&ev_lock);
  if (EXPECT(ev_n < EV_MAX))
    ev[ev_n++] = *e;
  pthread_mutex_unlock(&ev_lock);
}

static void ev_reset(void) {
  pthread_mutex_lock(&ev_lock);
  ev_n = 0;
  pthread_mutex_unlock(&ev_lock);
}

static bool ev_match(const event *e, uint32_t agent, uint32_t kind) {
  return (agent == ANY || e->agent == agent) && e->kind == kind;
}

static size_t ev_count(uint32_t agent, uint32_t kind) {
  size_t n = 0;
  pthread_mutex_lock(&ev_lock);
  for (size_t i = 0; i < ev_n; i++)
    n += ev_match(&ev[i], agent, kind);
  pthread_mutex_unlock(&ev_lock);
  return n;
}

/* The k-th event of `kind` logged by `agent` (ANY: by anyone). */
static bool ev_find(uint32_t agent, uint32_t kind, size_t k, event *out) {
  bool found = false;
  pthread_mutex_lock(&ev_lock);
  for (size_t i = 0; i < ev_n && !found; i++)
    if (ev_match(&ev[i], agent, kind) && k-- == 0) {
      *out = ev[i];
      found = true;
    }
  pthread_mutex_unlock(&ev_lock);
  return found;
}

static event ev_get(uint32_t agent, uint32_t kind, size_t k) {
  event e;
  cr_assert(ev_find(agent, kind, k, &e), "agent %u logged no event #%zu of kind %#x", agent, k,
            kind);
  return e;
}

/* Copies of every event (for the stress tests); the caller frees. */
static event *ev_all(size_t *n) {
  pthread_mutex_lock(&ev_lock);
  event *all = malloc((ev_n ? ev_n : 1) * sizeof *all);
  cr_assert_not_null(all);
  memcpy(all, ev, ev_n * sizeof *all);
  *n = ev_n;
  pthread_mutex_unlock(&ev_lock);
  return all;
}

/* ================================================================ the agent */

enum {
  PING = 1,
  DATA,
  DO_MONITOR,       /* uint ref */
  DO_DEMONITOR,     /* uint monitor id */
  DO_LINK,          /* uint ref */
  DO_UNLINK,        /* uint ref */
  DO_TRAP,          /* bool */
  DO_FAIL,          /* any value: tr_fail with the payload as the reason */
  DO_FAIL_NIL,      /* tr_fail(ctx, NULL, 0) */
  DO_FAIL_STR,      /* str */
  DO_FAIL_TWICE,    /* [str, str]: tr_fail_str with each */
  DO_FAIL_RETURN,   /* [str, uint status]: tr_fail_str, then return the status */
  DO_FAIL_STOP,     /* str: tr_fail_str, then tr_stop(self) */
  DO_FAIL_KEEP,     /* str: tr_fail_str, then a refused tr_fail (malformed) */
  DO_RETURN,        /* uint status: return it */
  DO_STOP_SELF,     /* tr_stop(self) */
  DO_STOP,          /* uint ref: tr_stop(ref) */
  DO_SEND,          /* uint ref: send it DATA "from-actor" */
  DO_FILL,          /* uint ref: send it DATA "f1", "f2", "f3", then stop self */
  DO_EXIT,          /* any value: tr_system_exit with it, then with "later" */
  DO_GATE,          /* spin until gate_open */
  DO_CHECKS,        /* uint ref of a live actor not linked: bad input in a behaviour */
  DO_TOO_BIG,       /* tr_fail and tr_fail_str over max_msg_size */
  DO_RESERVED,      /* uint ref: reserved tags refused, then ask it QUESTION */
  QUESTION,         /* an ask: reply ANSWER */
  ANSWER,           /* the reply */
  DO_MONITOR_RANGE, /* [first, n]: monitor targets[first .. first + n) */
  DO_KILL_RANGE,    /* [first, n]: end targets[first .. first + n), each its own way */
  DO_TIMER,         /* uint ref: send it DATA "tock" after 5 ms */
  DO_ASK_LATE,      /* uint ref: ask it SLOW_QUESTION, timing out after 10 ms */
  SLOW_QUESTION,    /* an ask: reply ANSWER "late" once the asker saw its timeout */
};

typedef struct agent {
  uint32_t idx;
} agent;

/* An agent as the main thread knows it. */
typedef struct ag {
  tr_ref ref;
  uint32_t idx;
} ag;

/* The stress tests' targets, written before tr_system_start. */
#define MAX_TARGETS 2048
static tr_ref targets[MAX_TARGETS];
static uint32_t n_targets;

static _Atomic bool gate_entered, gate_open;
static _Atomic bool timeout_seen; /* an agent got TR_TAG_TIMEOUT */

static uint64_t uint_arg(const tr_msg *msg) {
  uint64_t u = 0;
  EXPECT(tr_msg_get_uint(msg, &u) == TR_OK);
  return u;
}

static tr_ref ref_arg(const tr_msg *msg) { return (tr_ref){uint_arg(msg)}; }

static void copy_str(const char *s, size_t n, char out[EV_BYTES]) {
  out[0] = '\0';
  if (EXPECT(n < EV_BYTES)) {
    memcpy(out, s, n);
    out[n] = '\0';
  }
}

static void str_arg(const tr_msg *msg, char out[EV_BYTES]) {
  const char *s = "";
  size_t n = 0;
  EXPECT(tr_msg_get_str(msg, &s, &n) == TR_OK);
  copy_str(s, n, out);
}

/* [str, str] or [str, uint]. */
static void pair_arg(const tr_msg *msg, char s1[EV_BYTES], char s2[EV_BYTES], uint64_t *u) {
  tr_val v[2];
  size_t n = 0;
  s1[0] = '\0';
  if (!EXPECT(tr_msg_get_vals(msg, v, 2, &n) == TR_OK && n == 2 && v[0].type == TR_VAL_STR))
    return;
  copy_str(v[0].as.bytes.ptr, v[0].as.bytes.len, s1);
  if (s2 != NULL && EXPECT(v[1].type == TR_VAL_STR))
    copy_str(v[1].as.bytes.ptr, v[1].as.bytes.len, s2);
  if (u != NULL)
    EXPECT(tr_val_get_uint(&v[1], u) == TR_OK);
}

static void range_arg(const tr_msg *msg, uint64_t *first, uint64_t *n) {
  tr_val v[2];
  size_t k = 0;
  *first = *n = 0;
  if (EXPECT(tr_msg_get_vals(msg, v, 2, &k) == TR_OK && k == 2)) {
    EXPECT(tr_val_get_uint(&v[0], first) == TR_OK);
    EXPECT(tr_val_get_uint(&v[1], n) == TR_OK);
  }
}

static void log_call(const agent *me, uint32_t kind, tr_status st, uint64_t val, tr_ref ref) {
  event e = {.agent = me->idx, .kind = kind, .st = st, .val = val, .ref = ref};
  ev_add(&e);
}

static void on_exit_msg(tr_ctx *ctx, const agent *me, const tr_msg *msg) {
  tr_exit_info info;
  tr_dead_letter dl;
  event e = {.agent = me->idx, .kind = tr_msg_tag(msg)};
  if (!EXPECT(tr_msg_exit_info(msg, &info) == TR_OK))
    return;
  EXPECT(tr_msg_exit_info(msg, NULL) == TR_EINVAL);
  EXPECT(tr_msg_dead_letter(msg, &dl) == TR_EINVAL);
  /* A monitor that fired is gone: nothing left to demonitor. */
  if (e.kind == TR_TAG_DOWN)
    EXPECT(tr_demonitor(ctx, info.monitor) == TR_ESTALE);
  e.ref = info.ref;
  e.monitor = info.monitor;
  e.failed = info.failed;
  put_bytes(&e.a, info.reason, info.reason_len);
  ev_add(&e);
}

static void on_dead_letter(const agent *me, const tr_msg *msg) {
  tr_dead_letter dl;
  tr_exit_info info;
  event e = {.agent = me->idx, .kind = TR_TAG_DEAD_LETTER};
  if (!EXPECT(tr_msg_dead_letter(msg, &dl) == TR_OK))
    return;
  EXPECT(tr_msg_dead_letter(msg, NULL) == TR_EINVAL);
  EXPECT(tr_msg_exit_info(msg, &info) == TR_EINVAL);
  e.why = dl.reason;
  e.ref = dl.to;
  e.from = dl.from;
  e.tag = dl.tag;
  put_bytes(&e.a, dl.payload, dl.payload_len);
  put_bytes(&e.b, dl.detail, dl.detail_len);
  ev_add(&e);
}

/* Send `to` DATA three times, log each status, then stop. */
static void fill(tr_ctx *ctx, const agent *me, tr_ref to) {
  static const char *const items[] = {"f1", "f2", "f3"};
  for (uint64_t i = 0; i < 3; i++)
    log_call(me, DO_FILL, tr_send_str(ctx, to, DATA, items[i], 2), i, to);
  EXPECT(tr_stop(ctx, tr_self(ctx)) == TR_OK);
}

static void gate_wait(void) {
  atomic_store(&gate_entered, true);
  while (!atomic_load(&gate_open))
    sched_yield();
}

/* Bad input inside a behaviour: each call is refused and nothing happens. */
static void checks(tr_ctx *ctx, const tr_msg *msg, tr_ref other) {
  static const uint8_t reserved_byte[] = {0xc1};       /* never used by msgpack */
  static const uint8_t truncated[] = {0xa4, 'a', 'b'}; /* a 4-byte string, 2 bytes */
  static const uint8_t two_values[] = {0x01, 0x02};
  tr_exit_info info;
  tr_dead_letter dl;
  uint64_t id = 0;
  EXPECT(tr_fail(ctx, reserved_byte, sizeof reserved_byte) == TR_EMALFORMED);
  EXPECT(tr_fail(ctx, truncated, sizeof truncated) == TR_EMALFORMED);
  EXPECT(tr_fail(ctx, two_values, sizeof two_values) == TR_EMALFORMED);
  EXPECT(tr_fail(ctx, two_values, 0) == TR_EMALFORMED);
  EXPECT(tr_msg_exit_info(msg, &info) == TR_EINVAL);
  EXPECT(tr_msg_dead_letter(msg, &dl) == TR_EINVAL);
  EXPECT(tr_msg_exit_info(NULL, &info) == TR_EINVAL);
  EXPECT(tr_msg_dead_letter(NULL, &dl) == TR_EINVAL);
  EXPECT(tr_monitor(ctx, other, NULL) == TR_EINVAL);
  EXPECT(tr_link(ctx, tr_self(ctx)) == TR_EINVAL);
  EXPECT(tr_unlink(ctx, other) == TR_ESTALE);
  EXPECT(tr_demonitor(ctx, 0) == TR_ESTALE);
  EXPECT(tr_demonitor(ctx, UINT64_MAX) == TR_ESTALE);
  /* And the calls still work afterwards: one real monitor, removed. */
  if (EXPECT(tr_monitor(ctx, other, &id) == TR_OK))
    EXPECT(tr_demonitor(ctx, id) == TR_OK);
  EXPECT(tr_demonitor(ctx, id) == TR_ESTALE);
}

/* Over a max_msg_size of 32 bytes. */
static void too_big(tr_ctx *ctx) {
  char big[48];
  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  EXPECT(tr_fail_str(ctx, big) == TR_ETOOBIG);
  uint8_t raw[49] = {0xd9, 47}; /* str 8, 47 bytes */
  memset(raw + 2, 'y', 47);
  EXPECT(tr_mp_check(raw, sizeof raw) == TR_OK);
  EXPECT(tr_fail(ctx, raw, sizeof raw) == TR_ETOOBIG);
}

static const uint32_t reserved_tags[] = {
    TR_TAG_RESERVED,        TR_TAG_DOWN,   TR_TAG_EXIT, TR_TAG_DEAD_LETTER, TR_TAG_RESERVED + 0x80,
    TR_TAG_RESERVED + 0xFE, TR_TAG_TIMEOUT};
#define N_RESERVED (sizeof reserved_tags / sizeof reserved_tags[0])

/* Every user send with a reserved tag: 0 when all were refused with
 * TR_EINVAL, else 1 + the index of the first call that was not. */
static int reserved_sends(tr_ctx *ctx, tr_ref to, uint32_t tag) {
  static const uint8_t nil = 0xc0;
  tr_val vals[2] = {tr_int(1), tr_str("x")};
  tr_timer timer;
  tr_status st[] = {
      tr_send(ctx, to, tag),
      tr_send_int(ctx, to, tag, -1),
      tr_send_uint(ctx, to, tag, 1),
      tr_send_double(ctx, to, tag, 1.5),
      tr_send_str(ctx, to, tag, "x", 1),
      tr_send_bin(ctx, to, tag, "x", 1),
      tr_send_vals(ctx, to, tag, vals, 2),
      tr_send_msgpack(ctx, to, tag, &nil, 1),
      tr_send_after(ctx, to, tag, 1, 0, NULL, 0, &timer),
      tr_send_after(ctx, to, tag, 1, 5, &nil, 1, NULL),
  };
  for (size_t i = 0; i < sizeof st / sizeof st[0]; i++)
    if (st[i] != TR_EINVAL)
      return (int)i + 1;
  return 0;
}

static tr_status reserved_in_behaviour(tr_ctx *ctx, tr_ref to) {
  uint32_t corr = 0;
  for (size_t i = 0; i < N_RESERVED; i++) {
    EXPECT(reserved_sends(ctx, to, reserved_tags[i]) == 0);
    EXPECT(tr_ask(ctx, to, reserved_tags[i], NULL, 0, 1000, &corr) == TR_EINVAL);
  }
  /* The last tag below the reserved range is the user's. */
  EXPECT(tr_send(ctx, to, TR_TAG_RESERVED - 1) == TR_OK);
  return tr_ask(ctx, to, QUESTION, NULL, 0, 60000, &corr);
}

static tr_status answer(tr_ctx *ctx, const tr_msg *request) {
  for (size_t i = 0; i < N_RESERVED; i++)
    EXPECT(tr_reply(ctx, request, reserved_tags[i], NULL, 0) == TR_EINVAL);
  return tr_reply(ctx, request, ANSWER, NULL, 0);
}

/* Reply only once the asker has had its timeout: a late reply. Needs two
 * workers (the asker runs while this one spins). */
static tr_status slow_answer(tr_ctx *ctx, const tr_msg *request) {
  uint64_t give_up = (uint64_t)time(NULL) + WAIT_MS / 1000;
  while (!atomic_load(&timeout_seen) && (uint64_t)time(NULL) < give_up)
    sched_yield();
  EXPECT(atomic_load(&timeout_seen));
  return tr_reply(ctx, request, ANSWER, "\xa4late", 5);
}

static void monitor_range(tr_ctx *ctx, const agent *me, const tr_msg *msg) {
  uint64_t first, n;
  range_arg(msg, &first, &n);
  for (uint64_t j = 0; j < n; j++) {
    tr_ref t = targets[(first + j) % n_targets];
    uint64_t id = 0;
    tr_status st = tr_monitor(ctx, t, &id);
    log_call(me, DO_MONITOR, st, id, t);
  }
}

/* How target i of the stress tests ends: see kill_range. */
enum { BY_KILLER_STOP, BY_OWN_STOP, BY_OWN_FAILURE, BY_MAIN_STOP, N_ENDS };

static void kill_range(tr_ctx *ctx, const tr_msg *msg) {
  uint64_t first, n;
  range_arg(msg, &first, &n);
  for (uint64_t j = 0; j < n; j++) {
    uint64_t i = (first + j) % n_targets;
    switch (i % N_ENDS) {
    case BY_KILLER_STOP:
      EXPECT(tr_stop(ctx, targets[i]) == TR_OK);
      break;
    case BY_OWN_STOP:
      EXPECT(tr_send(ctx, targets[i], DO_STOP_SELF) == TR_OK);
      break;
    case BY_OWN_FAILURE:
      EXPECT(tr_send_uint(ctx, targets[i], DO_RETURN, TR_EFAIL) == TR_OK);
      break;
    default: /* BY_MAIN_STOP: the main thread's */
      break;
    }
  }
}

static tr_status agent_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  const agent *me = state;
  uint32_t tag = tr_msg_tag(msg);
  size_t len = 0;
  const void *p = tr_msg_payload(msg, &len);
  tr_status st = TR_OK, ret = TR_OK;
  uint64_t u = 0;
  bool on = false;
  char s1[EV_BYTES], s2[EV_BYTES];

  switch (tag) {
  case TR_TAG_DOWN:
  case TR_TAG_EXIT:
    on_exit_msg(ctx, me, msg);
    return TR_OK;
  case TR_TAG_DEAD_LETTER:
    on_dead_letter(me, msg);
    return TR_OK;
  case DO_MONITOR:
    st = tr_monitor(ctx, ref_arg(msg), &u);
    break;
  case DO_DEMONITOR:
    st = tr_demonitor(ctx, uint_arg(msg));
    break;
  case DO_LINK:
    st = tr_link(ctx, ref_arg(msg));
    break;
  case DO_UNLINK:
    st = tr_unlink(ctx, ref_arg(msg));
    break;
  case DO_TRAP:
    EXPECT(tr_msg_get_bool(msg, &on) == TR_OK);
    st = tr_trap_exits(ctx, on);
    break;
  case DO_FAIL:
    st = tr_fail(ctx, p, len);
    break;
  case DO_FAIL_NIL:
    st = tr_fail(ctx, NULL, 0);
    break;
  case DO_FAIL_STR:
    str_arg(msg, s1);
    st = tr_fail_str(ctx, s1);
    break;
  case DO_FAIL_TWICE:
    pair_arg(msg, s1, s2, NULL);
    st = tr_fail_str(ctx, s1);
    if (st == TR_OK)
      st = tr_fail_str(ctx, s2);
    break;
  case DO_FAIL_RETURN:
    pair_arg(msg, s1, NULL, &u);
    st = tr_fail_str(ctx, s1);
    ret = (tr_status)u;
    break;
  case DO_FAIL_KEEP:
    str_arg(msg, s1);
    st = tr_fail_str(ctx, s1);
    EXPECT(tr_fail(ctx, "\xc1", 1) == TR_EMALFORMED);
    break;
  case DO_FAIL_STOP:
    str_arg(msg, s1);
    st = tr_fail_str(ctx, s1);
    if (st == TR_OK)
      st = tr_stop(ctx, tr_self(ctx));
    break;
  case DO_RETURN:
    ret = (tr_status)uint_arg(msg);
    break;
  case DO_STOP_SELF:
    st = tr_stop(ctx, tr_self(ctx));
    break;
  case DO_STOP:
    st = tr_stop(ctx, ref_arg(msg));
    break;
  case DO_SEND:
    st = tr_send_str(ctx, ref_arg(msg), DATA, "from-actor", 10);
    break;
  case DO_FILL:
    fill(ctx, me, ref_arg(msg));
    return TR_OK;
  case DO_EXIT:
    st = tr_system_exit(ctx, p, len);
    log_call(me, DO_EXIT, st, 0, TR_REF_NONE);
    st = tr_system_exit(ctx, "\xa5later", 6);
    break;
  case DO_GATE:
    gate_wait();
    break;
  case DO_CHECKS:
    checks(ctx, msg, ref_arg(msg));
    break;
  case DO_TOO_BIG:
    too_big(ctx);
    break;
  case DO_RESERVED:
    st = reserved_in_behaviour(ctx, ref_arg(msg));
    break;
  case QUESTION:
    st = answer(ctx, msg);
    break;
  case ANSWER:
    u = tr_msg_is_reply(msg);
    break;
  case DO_MONITOR_RANGE:
    monitor_range(ctx, me, msg);
    return TR_OK;
  case DO_KILL_RANGE:
    kill_range(ctx, msg);
    return TR_OK;
  case DO_TIMER:
    st = tr_send_after(ctx, ref_arg(msg), DATA, 5, 0, "\xa4tock", 5, NULL);
    break;
  case DO_ASK_LATE:
    st = tr_ask(ctx, ref_arg(msg), SLOW_QUESTION, NULL, 0, 10, NULL);
    break;
  case SLOW_QUESTION:
    st = slow_answer(ctx, msg);
    break;
  case TR_TAG_TIMEOUT:
    atomic_store(&timeout_seen, true);
    break;
  default: /* PING, DATA and the rest: logged with their payload */
    break;
  }
  event e = {.agent = me->idx, .kind = tag, .st = st, .val = u, .from = tr_msg_sender(msg)};
  put_bytes(&e.a, p, len < EV_BYTES ? len : EV_BYTES);
  ev_add(&e);
  return ret;
}

static tr_status agent_init(void *state, const void *arg) {
  ((agent *)state)->idx = *(const uint32_t *)arg;
  return TR_OK;
}

static const tr_actor_spec agent_spec = {
    .name = "agent", .behaviour = agent_behaviour, .state_size = sizeof(agent), .init = agent_init};

static tr_actor_spec bounded_agent(tr_mailbox_policy policy, unsigned capacity) {
  tr_actor_spec s = agent_spec;
  s.mailbox_policy = policy;
  s.mailbox_capacity = capacity;
  return s;
}

/* ================================================================ main side */

static tr_system *new_system_cfg(tr_system_config cfg) {
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  cr_assert_not_null(sys);
  return sys;
}

static tr_system *new_system(unsigned threads) {
  return new_system_cfg((tr_system_config){.threads = threads});
}

static ag spawn_agent_spec(tr_system *sys, uint32_t idx, const tr_actor_spec *spec) {
  ag a = {TR_REF_NONE, idx};
  OK(tr_spawn(tr_system_ctx(sys), spec, &idx, &a.ref));
  cr_assert(!tr_ref_is_none(a.ref));
  return a;
}

static ag spawn_agent(tr_system *sys, uint32_t idx) {
  return spawn_agent_spec(sys, idx, &agent_spec);
}

static bytes enc(const tr_val *v, size_t n, bool as_array) {
  bytes x = {{0}, 0};
  OK(tr_mp_encode_vals(v, n, as_array, x.b, sizeof x.b, &x.n));
  return x;
}

static bytes mp_str(const char *s) {
  tr_val v = tr_str(s);
  return enc(&v, 1, false);
}

static bytes mp_uint(uint64_t u) {
  tr_val v = tr_uint(u);
  return enc(&v, 1, false);
}

static bytes mp_bool(bool b) {
  tr_val v = tr_bool(b);
  return enc(&v, 1, false);
}

static bytes mp_ref(ag a) { return mp_uint(a.ref.id); }

static bytes mp_nil(void) {
  bytes x = {{0xc0}, 1};
  return x;
}

static bytes mp_raw(const void *p, size_t n) {
  bytes x = {{0}, n};
  cr_assert_leq(n, sizeof x.b);
  memcpy(x.b, p, n);
  return x;
}

/* [a, b] */
static bytes mp_pair(tr_val a, tr_val b) {
  tr_val v[2] = {a, b};
  return enc(v, 2, true);
}

/* Send a command (from outside: sender TR_REF_NONE). */
static void cmd(tr_system *sys, ag to, uint32_t tag, bytes payload) {
  OK(tr_send_msgpack(tr_system_ctx(sys), to.ref, tag, payload.b, payload.n));
}

/* Send a command, wait for quiescence, and return the call it logged. */
static event do_call(tr_system *sys, ag a, uint32_t tag, bytes payload) {
  size_t before = ev_count(a.idx, tag);
  cmd(sys, a, tag, payload);
  WAIT(sys);
  cr_assert_eq(ev_count(a.idx, tag), before + 1, "agent %u did not log command %u", a.idx, tag);
  return ev_get(a.idx, tag, before);
}

static void call_ok(tr_system *sys, ag a, uint32_t tag, bytes payload) {
  event e = do_call(sys, a, tag, payload);
  cr_assert_eq(e.st, TR_OK, "agent %u, command %u: %s", a.idx, tag, tr_status_name(e.st));
}

static tr_status call_st(tr_system *sys, ag a, uint32_t tag, bytes payload) {
  return do_call(sys, a, tag, payload).st;
}

/* `w` monitors `t`: the monitor's id. */
static uint64_t monitor(tr_system *sys, ag w, ag t) {
  event e = do_call(sys, w, DO_MONITOR, mp_ref(t));
  cr_assert_eq(e.st, TR_OK, "tr_monitor: %s", tr_status_name(e.st));
  return e.val;
}

static const char *hex(const bytes *x, char *buf, size_t cap) {
  size_t at = 0;
  buf[0] = '\0';
  for (size_t i = 0; i < x->n && at + 4 < cap; i++)
    at += (size_t)snprintf(buf + at, cap - at, "%02x ", x->b[i]);
  return buf;
}

static bool same_bytes(const bytes *a, const bytes *b) {
  return a->n == b->n && memcmp(a->b, b->b, a->n) == 0;
}

static void assert_bytes(const bytes *got, const bytes *want, const char *what) {
  char g[3 * EV_BYTES + 8], w[3 * EV_BYTES + 8];
  cr_assert(same_bytes(got, want), "%s: got [%s], want [%s]", what, hex(got, g, sizeof g),
            hex(want, w, sizeof w));
}

/* DOWN messages `watcher` got for monitor `id`. */
static size_t downs_for(uint32_t watcher, uint64_t id) {
  size_t n = 0;
  event e;
  for (size_t k = 0; ev_find(watcher, TR_TAG_DOWN, k, &e); k++)
    n += e.monitor == id;
  return n;
}

/* Exactly one DOWN for monitor `id` reached `watcher`, saying so. */
static void assert_down(ag watcher, uint64_t id, ag target, bool failed, const bytes *reason,
                        const char *what) {
  cr_assert_eq(downs_for(watcher.idx, id), 1, "%s: agent %u got %zu DOWN for monitor %llu, want 1",
               what, watcher.idx, downs_for(watcher.idx, id), (unsigned long long)id);
  event e;
  for (size_t k = 0; ev_find(watcher.idx, TR_TAG_DOWN, k, &e) && e.monitor != id; k++)
    ;
  cr_assert_eq(e.monitor, id);
  cr_assert(tr_ref_eq(e.ref, target.ref), "%s: DOWN names %llx, want %llx", what,
            (unsigned long long)e.ref.id, (unsigned long long)target.ref.id);
  cr_assert_eq(e.failed, failed, "%s: DOWN failed=%d, want %d", what, e.failed, failed);
  assert_bytes(&e.a, reason, what);
}

/* EXIT messages `a` got from `from`. */
static size_t exits_from(uint32_t a, tr_ref from) {
  size_t n = 0;
  event e;
  for (size_t k = 0; ev_find(a, TR_TAG_EXIT, k, &e); k++)
    n += tr_ref_eq(e.ref, from);
  return n;
}

static void assert_exit(ag a, ag from, bool failed, const bytes *reason, const char *what) {
  cr_assert_eq(exits_from(a.idx, from.ref), 1, "%s: agent %u got %zu EXIT from %llx, want 1", what,
               a.idx, exits_from(a.idx, from.ref), (unsigned long long)from.ref.id);
  event e;
  for (size_t k = 0; ev_find(a.idx, TR_TAG_EXIT, k, &e) && !tr_ref_eq(e.ref, from.ref); k++)
    ;
  cr_assert_eq(e.monitor, 0, "%s: EXIT carries monitor %llu, want 0", what,
               (unsigned long long)e.monitor);
  cr_assert_eq(e.failed, failed, "%s: EXIT failed=%d, want %d", what, e.failed, failed);
  assert_bytes(&e.a, reason, what);
}

static bool is_alive(tr_system *sys, ag a) {
  tr_actor_stats s;
  tr_status st = tr_actor_stats_get(tr_system_ctx(sys), a.ref, &s);
  cr_assert(st == TR_OK || st == TR_ESTALE, "tr_actor_stats_get: %s", tr_status_name(st));
  return st == TR_OK;
}

/* Alive, and still handling mail. */
static void assert_alive(tr_system *sys, ag a, const char *what) {
  cr_assert(is_alive(sys, a), "%s: agent %u is gone", what, a.idx);
  size_t before = ev_count(a.idx, PING);
  cmd(sys, a, PING, mp_nil());
  WAIT(sys);
  cr_assert_eq(ev_count(a.idx, PING), before + 1, "%s: agent %u did not handle a ping", what,
               a.idx);
}

static void assert_gone(tr_system *sys, ag a, const char *what) {
  cr_assert(!is_alive(sys, a), "%s: agent %u is still alive", what, a.idx);
}

/* Once quiescent, every accepted message was handled or dead-lettered
 * (core.h, tr_system_stats). */
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
static void assert_dead(tr_system *sys, const uint64_t want[TR_DEAD_REASON_COUNT],
                        const char *what) {
  tr_system_stats s = stats(sys);
  for (unsigned r = 0; r < TR_DEAD_REASON_COUNT; r++)
    cr_assert_eq(s.dead_letters[r], want[r], "%s: dead letters %s: got %llu, want %llu", what,
                 tr_dead_reason_name((tr_dead_reason)r), (unsigned long long)s.dead_letters[r],
                 (unsigned long long)want[r]);
}

/* The one dead letter of reason `why` from `from` that `handler` got. */
static event dead_letter(ag handler, tr_dead_reason why, tr_ref from) {
  event e, found = {0};
  size_t n = 0;
  for (size_t k = 0; ev_find(handler.idx, TR_TAG_DEAD_LETTER, k, &e); k++)
    if (e.why == why && tr_ref_eq(e.from, from)) {
      found = e;
      n++;
    }
  cr_assert_eq(n, 1, "handler got %zu dead letters %s from %llx, want 1", n,
               tr_dead_reason_name(why), (unsigned long long)from.id);
  return found;
}

static void assert_dead_letter(const event *e, ag to, uint32_t tag, const bytes *payload,
                               const bytes *detail, const char *what) {
  cr_assert(tr_ref_eq(e->ref, to.ref), "%s: dead letter to %llx, want %llx", what,
            (unsigned long long)e->ref.id, (unsigned long long)to.ref.id);
  cr_assert_eq(e->tag, tag, "%s: dead letter tag %u, want %u", what, e->tag, tag);
  assert_bytes(&e->a, payload, what);
  assert_bytes(&e->b, detail, what);
}

static uint64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Two workers or more, one running `a` while it spins in DO_GATE. */
static void enter_gate(tr_system *sys, ag a) {
  atomic_store(&gate_entered, false);
  atomic_store(&gate_open, false);
  cmd(sys, a, DO_GATE, mp_nil());
  uint64_t give_up = now_ms() + WAIT_MS;
  while (!atomic_load(&gate_entered) && now_ms() < give_up)
    sched_yield();
  cr_assert(atomic_load(&gate_entered), "the gate was never entered");
}

#define AT_1_AND_2(fn)                                                                             \
  Test(fault, fn##_1_worker) { fn(1); }                                                            \
  Test(fault, fn##_2_workers) { fn(2); }

/* ================================================================ exits: one matrix */

/* The ways an actor can exit, and what its DOWN / EXIT must then say. */
enum how {
  BY_SELF_STOP,
  BY_OUTSIDE_STOP,
  BY_ACTOR_STOP,
  BY_RETURN_EFAIL,
  BY_RETURN_EDECODE,
  BY_FAIL_STR,
  BY_FAIL_MAP,
  BY_FAIL_NIL,
  BY_FAIL_TWICE,
  BY_FAIL_THEN_RETURN_ERROR,
  BY_FAIL_THEN_RETURN_OK,
  BY_FAIL_THEN_STOP,
  BY_FAIL_THEN_REFUSED_FAIL,
  N_HOWS
};

typedef struct how_case {
  const char *name;
  bool failed;
  bytes reason;
  uint32_t tag;  /* failures: the message that failed (a FAILED dead letter) */
  bytes payload; /* and its payload */
} how_case;

/* Make `t` exit as `h` says (`helper` stops it for BY_ACTOR_STOP). */
static how_case provoke(tr_system *sys, enum how h, ag t, ag helper) {
  static const uint8_t map[] = {0x81, 0xa4, 'c', 'o', 'd', 'e', 0x2a}; /* {"code": 42} */
  how_case c = {.failed = true};
  switch (h) {
  case BY_SELF_STOP:
    c = (how_case){"tr_stop(self)", false, mp_str("normal"), 0, mp_nil()};
    cmd(sys, t, DO_STOP_SELF, mp_nil());
    return c;
  case BY_OUTSIDE_STOP:
    c = (how_case){"tr_stop from outside", false, mp_str("stopped"), 0, mp_nil()};
    OK(tr_stop(tr_system_ctx(sys), t.ref));
    return c;
  case BY_ACTOR_STOP:
    c = (how_case){"tr_stop from an actor", false, mp_str("stopped"), 0, mp_nil()};
    cmd(sys, helper, DO_STOP, mp_ref(t));
    return c;
  case BY_RETURN_EFAIL:
    c = (how_case){"returns TR_EFAIL", true, mp_str("EFAIL"), DO_RETURN, mp_uint(TR_EFAIL)};
    break;
  case BY_RETURN_EDECODE:
    c = (how_case){"returns TR_EDECODE", true, mp_str("EDECODE"), DO_RETURN, mp_uint(TR_EDECODE)};
    break;
  case BY_FAIL_STR:
    c = (how_case){"tr_fail_str", true, mp_str("boom"), DO_FAIL_STR, mp_str("boom")};
    break;
  case BY_FAIL_MAP:
    c = (how_case){"tr_fail with a map", true, mp_raw(map, sizeof map), DO_FAIL,
                   mp_raw(map, sizeof map)};
    break;
  case BY_FAIL_NIL:
    c = (how_case){"tr_fail(NULL)", true, mp_nil(), DO_FAIL_NIL, mp_nil()};
    break;
  case BY_FAIL_TWICE:
    c = (how_case){"tr_fail twice: the last wins", true, mp_str("second"), DO_FAIL_TWICE,
                   mp_pair(tr_str("first"), tr_str("second"))};
    break;
  case BY_FAIL_THEN_RETURN_ERROR:
    c = (how_case){"tr_fail, then return TR_EDECODE: tr_fail's reason", true, mp_str("mine"),
                   DO_FAIL_RETURN, mp_pair(tr_str("mine"), tr_uint(TR_EDECODE))};
    break;
  case BY_FAIL_THEN_RETURN_OK:
    c = (how_case){"tr_fail, then return TR_OK: still fails", true, mp_str("anyway"),
                   DO_FAIL_RETURN, mp_pair(tr_str("anyway"), tr_uint(TR_OK))};
    break;
  case BY_FAIL_THEN_STOP:
    c = (how_case){"tr_fail, then tr_stop(self): fails", true, mp_str("fail-and-stop"),
                   DO_FAIL_STOP, mp_str("fail-and-stop")};
    break;
  case BY_FAIL_THEN_REFUSED_FAIL:
    c = (how_case){"tr_fail, then a refused tr_fail: the first reason", true, mp_str("kept"),
                   DO_FAIL_KEEP, mp_str("kept")};
    break;
  default:
    cr_assert_fail("no such case %d", (int)h);
  }
  cmd(sys, t, c.tag, c.payload);
  return c;
}

/*
 * One exit, seen from every side: a monitor (DOWN), a trapping link (EXIT),
 * a plain link (fails too, with the same reason, or lives on), and the
 * dead-letter handler (the FAILED message, its detail the reason).
 */
static void exit_case(unsigned workers, enum how h) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0); /* dead-letter handler */
  ag w = spawn_agent(sys, 1);  /* monitors t and n */
  ag l = spawn_agent(sys, 2);  /* traps exits; linked to t */
  ag n = spawn_agent(sys, 3);  /* linked to t */
  ag t = spawn_agent(sys, 4);  /* exits */
  ag helper = spawn_agent(sys, 5);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  uint64_t mt = monitor(sys, w, t), mn = monitor(sys, w, n);
  cr_assert_neq(mt, mn);
  call_ok(sys, l, DO_TRAP, mp_bool(true));
  call_ok(sys, l, DO_LINK, mp_ref(t));
  call_ok(sys, n, DO_LINK, mp_ref(t));

  how_case c = provoke(sys, h, t, helper);
  WAIT(sys);
  assert_gone(sys, t, c.name);
  assert_down(w, mt, t, c.failed, &c.reason, c.name);
  assert_exit(l, t, c.failed, &c.reason, c.name);
  assert_alive(sys, l, c.name);
  if (c.failed) {
    /* A failure propagates along the link, with the same reason. */
    assert_down(w, mn, n, true, &c.reason, c.name);
    assert_gone(sys, n, c.name);
  } else {
    cr_assert_eq(downs_for(w.idx, mn), 0, "%s: a normal exit killed a linked actor", c.name);
    assert_alive(sys, n, c.name);
  }
  cr_assert_eq(ev_count(w.idx, TR_TAG_DOWN), c.failed ? 2 : 1, "%s: DOWN count", c.name);

  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_FAILED] = c.failed;
  assert_dead(sys, want, c.name);
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), c.failed, "%s: dead letters forwarded",
               c.name);
  if (c.failed) {
    event e = dead_letter(hd, TR_DEAD_FAILED, TR_REF_NONE);
    assert_dead_letter(&e, t, c.tag, &c.payload, &c.reason, c.name);
  }
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}

static void exit_matrix(unsigned workers) {
  for (int h = 0; h < N_HOWS; h++)
    exit_case(workers, (enum how)h);
}
AT_1_AND_2(exit_matrix)

/* ================================================================ tr_fail */

/* Refused calls inside a behaviour change nothing: the actor lives on. */
static void fail_bad_input(unsigned workers) {
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0), w = spawn_agent(sys, 1), a = spawn_agent(sys, 2);
  ag other = spawn_agent(sys, 3);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  uint64_t m = monitor(sys, w, a);
  call_ok(sys, a, DO_CHECKS, mp_ref(other));
  ASSERT_NO_BAD();
  assert_alive(sys, a, "after refused calls");
  /* The refused tr_monitor(other, NULL) and the removed monitor left no
   * monitor behind: other's exit sends no DOWN. The control: w's monitor
   * on a still fires. */
  OK(tr_stop(tr_system_ctx(sys), other.ref));
  OK(tr_stop(tr_system_ctx(sys), a.ref));
  WAIT(sys);
  bytes stopped = mp_str("stopped");
  assert_down(w, m, a, false, &stopped, "control");
  cr_assert_eq(ev_count(a.idx, TR_TAG_DOWN), 0);
  cr_assert_eq(ev_count(ANY, TR_TAG_DOWN), 1);
  const uint64_t none[TR_DEAD_REASON_COUNT] = {0};
  assert_dead(sys, none, "refused calls");
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 0);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(fail_bad_input)

Test(fault, fail_over_max_msg_size_is_refused) {
  tr_system *sys = new_system_cfg((tr_system_config){.threads = 1, .max_msg_size = 32});
  ag a = spawn_agent(sys, 0);
  OK(tr_system_start(sys));
  call_ok(sys, a, DO_TOO_BIG, mp_nil());
  ASSERT_NO_BAD();
  assert_alive(sys, a, "after TR_ETOOBIG");
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_FAILED], 0);
  tr_system_free(sys);
}

/* Outside a behaviour, or with NULL: refused, and nothing happened. */
Test(fault, calls_outside_a_behaviour_are_refused) {
  tr_system *sys = new_system(1);
  tr_ctx *ext = tr_system_ctx(sys);
  ag a = spawn_agent(sys, 0), b = spawn_agent(sys, 1);
  uint64_t id = 0;
  tr_exit_info info;
  tr_dead_letter dl;
  const void *reason = NULL;
  size_t len = 0;
  OK(tr_system_start(sys));

  EXPECT_ST(tr_fail(ext, "\xa1x", 2), TR_ESTATE);
  EXPECT_ST(tr_fail(ext, NULL, 0), TR_ESTATE);
  EXPECT_ST(tr_fail_str(ext, "x"), TR_ESTATE);
  EXPECT_ST(tr_fail(NULL, "\xa1x", 2), TR_EINVAL);
  EXPECT_ST(tr_fail_str(NULL, "x"), TR_EINVAL);
  EXPECT_ST(tr_monitor(ext, a.ref, &id), TR_ESTATE);
  EXPECT_ST(tr_monitor(NULL, a.ref, &id), TR_EINVAL);
  EXPECT_ST(tr_demonitor(ext, 1), TR_ESTATE);
  EXPECT_ST(tr_demonitor(NULL, 1), TR_EINVAL);
  EXPECT_ST(tr_link(ext, a.ref), TR_ESTATE);
  EXPECT_ST(tr_link(NULL, a.ref), TR_EINVAL);
  EXPECT_ST(tr_unlink(ext, a.ref), TR_ESTATE);
  EXPECT_ST(tr_unlink(NULL, a.ref), TR_EINVAL);
  EXPECT_ST(tr_trap_exits(ext, true), TR_ESTATE);
  EXPECT_ST(tr_trap_exits(NULL, true), TR_EINVAL);
  EXPECT_ST(tr_system_set_dead_letter_handler(NULL, a.ref), TR_EINVAL);
  EXPECT_ST(tr_msg_exit_info(NULL, &info), TR_EINVAL);
  EXPECT_ST(tr_msg_dead_letter(NULL, &dl), TR_EINVAL);
  EXPECT_ST(tr_system_exit(NULL, NULL, 0), TR_EINVAL);
  EXPECT_ST(tr_system_exit_reason(NULL, &reason, &len), TR_EINVAL);
  EXPECT_ST(tr_system_exit_reason(sys, NULL, &len), TR_EINVAL);
  EXPECT_ST(tr_system_exit_reason(sys, &reason, NULL), TR_EINVAL);
  EXPECT_ST(tr_system_exit_reason(sys, &reason, &len), TR_ESTATE);

  /* Nothing happened: nothing sent, nothing failed, no monitor or link. */
  WAIT(sys);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, 0);
  const uint64_t none[TR_DEAD_REASON_COUNT] = {0};
  assert_dead(sys, none, "refused calls");
  assert_alive(sys, a, "after refused calls");
  uint64_t m = monitor(sys, b, a);
  cmd(sys, a, DO_RETURN, mp_uint(TR_EFAIL));
  WAIT(sys);
  bytes efail = mp_str("EFAIL");
  assert_down(b, m, a, true, &efail, "control");
  cr_assert_eq(ev_count(ANY, TR_TAG_DOWN), 1);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}

Test(fault, reason_is) {
  const uint8_t normal[] = {0xa6, 'n', 'o', 'r', 'm', 'a', 'l'};
  const uint8_t bin[] = {0xc4, 6, 'n', 'o', 'r', 'm', 'a', 'l'};
  const uint8_t empty[] = {0xa0};
  const uint8_t nil = 0xc0;
  cr_assert(tr_reason_is(normal, sizeof normal, "normal"));
  cr_assert(!tr_reason_is(normal, sizeof normal, "norma"));
  cr_assert(!tr_reason_is(normal, sizeof normal, "normal!"));
  cr_assert(!tr_reason_is(normal, sizeof normal, "stopped"));
  cr_assert(!tr_reason_is(normal, sizeof normal - 1, "normal")); /* truncated */
  cr_assert(!tr_reason_is(bin, sizeof bin, "normal"));           /* a binary, not a string */
  cr_assert(tr_reason_is(empty, sizeof empty, ""));
  cr_assert(!tr_reason_is(&nil, 1, ""));
  cr_assert(!tr_reason_is(NULL, 0, "normal"));
}

/* A behaviour returning TR_EFAIL: reason "EFAIL", by tr_reason_is. */
static void efail_reason(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag w = spawn_agent(sys, 0), t = spawn_agent(sys, 1);
  OK(tr_system_start(sys));
  uint64_t m = monitor(sys, w, t);
  cmd(sys, t, DO_RETURN, mp_uint(TR_EFAIL));
  WAIT(sys);
  cr_assert_eq(downs_for(w.idx, m), 1);
  event e = ev_get(w.idx, TR_TAG_DOWN, 0);
  cr_assert(e.failed);
  cr_assert(tr_reason_is(e.a.b, e.a.n, "EFAIL"));
  cr_assert(tr_reason_is(e.a.b, e.a.n, tr_status_name(TR_EFAIL)));
  assert_gone(sys, t, "returned TR_EFAIL");
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_FAILED], 1);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(efail_reason)

/* The mail queued behind the failing message is dead-lettered STOPPED, the
 * failing one FAILED. */
static void fail_with_queued_mail(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0), t = spawn_agent(sys, 1);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  cmd(sys, t, DO_FAIL_STR, mp_str("down"));
  cmd(sys, t, DATA, mp_str("behind"));
  cmd(sys, t, DATA, mp_str("behind2"));
  OK(tr_system_start(sys));
  WAIT(sys);
  assert_gone(sys, t, "failed");
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_FAILED] = 1;
  want[TR_DEAD_STOPPED] = 2;
  assert_dead(sys, want, "fail with mail queued");
  event e = dead_letter(hd, TR_DEAD_FAILED, TR_REF_NONE);
  bytes down = mp_str("down"), nil = mp_nil();
  assert_dead_letter(&e, t, DO_FAIL_STR, &down, &down, "the failing message");
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 3);
  cr_assert_eq(ev_count(t.idx, DATA), 0, "mail behind a failure was handled");
  bytes behind[2] = {mp_str("behind"), mp_str("behind2")};
  bool seen[2] = {false, false};
  event d;
  for (size_t k = 0; ev_find(hd.idx, TR_TAG_DEAD_LETTER, k, &d); k++) {
    if (d.why != TR_DEAD_STOPPED)
      continue;
    int which = same_bytes(&d.a, &behind[1]);
    cr_assert(!seen[which], "the same message was dead-lettered twice");
    seen[which] = true;
    assert_dead_letter(&d, t, DATA, &behind[which], &nil, "queued behind the failure");
  }
  cr_assert(seen[0] && seen[1]);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(fail_with_queued_mail)

/* ================================================================ monitors */

static void monitor_after_death(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag w = spawn_agent(sys, 0), t = spawn_agent(sys, 1), f = spawn_agent(sys, 2);
  OK(tr_system_start(sys));
  OK(tr_stop(tr_system_ctx(sys), t.ref));
  cmd(sys, f, DO_RETURN, mp_uint(TR_EFAIL));
  WAIT(sys);
  assert_gone(sys, t, "stopped");
  assert_gone(sys, f, "failed");
  uint64_t s0 = stats(sys).dead_letters[TR_DEAD_STALE];

  /* Monitoring the dead succeeds and gives one DOWN "noproc", not failed,
   * whatever the actor died of; twice gives two. */
  uint64_t m1 = monitor(sys, w, t), m2 = monitor(sys, w, t), m3 = monitor(sys, w, f);
  cr_assert(m1 != m2 && m2 != m3 && m1 != m3);
  WAIT(sys);
  bytes noproc = mp_str("noproc");
  assert_down(w, m1, t, false, &noproc, "monitor after tr_stop");
  assert_down(w, m2, t, false, &noproc, "second monitor after tr_stop");
  assert_down(w, m3, f, false, &noproc, "monitor after a failure");
  cr_assert_eq(ev_count(w.idx, TR_TAG_DOWN), 3);
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_STALE], s0, "a DOWN went astray");
  /* A "noproc" DOWN fired already: nothing to demonitor. */
  cr_assert_eq(call_st(sys, w, DO_DEMONITOR, mp_uint(m1)), TR_ESTALE);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(monitor_after_death)

static void two_monitors(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag w = spawn_agent(sys, 0), w2 = spawn_agent(sys, 1), t = spawn_agent(sys, 2);
  OK(tr_system_start(sys));
  uint64_t m1 = monitor(sys, w, t), m2 = monitor(sys, w, t), m3 = monitor(sys, w2, t);
  cr_assert(m1 != m2 && m2 != m3 && m1 != m3, "monitor ids %llu %llu %llu", (unsigned long long)m1,
            (unsigned long long)m2, (unsigned long long)m3);
  OK(tr_stop(tr_system_ctx(sys), t.ref));
  WAIT(sys);
  bytes stopped = mp_str("stopped");
  assert_down(w, m1, t, false, &stopped, "first monitor");
  assert_down(w, m2, t, false, &stopped, "second monitor");
  assert_down(w2, m3, t, false, &stopped, "another watcher's monitor");
  cr_assert_eq(ev_count(w.idx, TR_TAG_DOWN), 2);
  cr_assert_eq(ev_count(w2.idx, TR_TAG_DOWN), 1);
  /* Still exactly once after more traffic. */
  assert_alive(sys, w, "watcher");
  assert_alive(sys, w2, "watcher");
  cr_assert_eq(ev_count(ANY, TR_TAG_DOWN), 3);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(two_monitors)

static void demonitor(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag w = spawn_agent(sys, 0), w2 = spawn_agent(sys, 1), t = spawn_agent(sys, 2);
  OK(tr_system_start(sys));
  uint64_t m1 = monitor(sys, w, t), m2 = monitor(sys, w, t), m3 = monitor(sys, w2, t);
  call_ok(sys, w, DO_DEMONITOR, mp_uint(m1));
  cr_assert_eq(call_st(sys, w, DO_DEMONITOR, mp_uint(m1)), TR_ESTALE, "demonitor twice");
  cr_assert_eq(call_st(sys, w, DO_DEMONITOR, mp_uint(m3)), TR_ESTALE, "another actor's monitor");
  cr_assert_eq(call_st(sys, w, DO_DEMONITOR, mp_uint(UINT64_MAX)), TR_ESTALE, "unknown id");
  cr_assert_eq(call_st(sys, w, DO_DEMONITOR, mp_uint(0)), TR_ESTALE, "id 0");
  uint64_t s0 = stats(sys).dead_letters[TR_DEAD_STALE];
  cmd(sys, t, DO_FAIL_STR, mp_str("gone"));
  WAIT(sys);
  bytes gone = mp_str("gone");
  cr_assert_eq(downs_for(w.idx, m1), 0, "a DOWN came for a removed monitor");
  assert_down(w, m2, t, true, &gone, "the monitor kept");
  assert_down(w2, m3, t, true, &gone, "another actor's monitor, which w could not remove");
  cr_assert_eq(ev_count(ANY, TR_TAG_DOWN), 2);
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_STALE], s0);
  /* Fired: gone. */
  cr_assert_eq(call_st(sys, w, DO_DEMONITOR, mp_uint(m2)), TR_ESTALE, "demonitor after DOWN");
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(demonitor)

/* The watcher exits before its target: no DOWN anywhere, nothing astray. */
static void watcher_dies_first(unsigned workers, bool watcher_fails) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0), w = spawn_agent(sys, 1), t = spawn_agent(sys, 2);
  ag control = spawn_agent(sys, 3);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  monitor(sys, w, t);
  monitor(sys, w, t);
  monitor(sys, w, control);
  uint64_t mc = monitor(sys, control, t);
  if (watcher_fails)
    cmd(sys, w, DO_RETURN, mp_uint(TR_EFAIL));
  else
    OK(tr_stop(tr_system_ctx(sys), w.ref));
  WAIT(sys);
  assert_gone(sys, w, "watcher");
  tr_system_stats s0 = stats(sys);
  size_t dl0 = ev_count(hd.idx, TR_TAG_DEAD_LETTER);

  cmd(sys, t, DO_FAIL_STR, mp_str("late"));
  WAIT(sys);
  assert_gone(sys, t, "target");
  bytes late = mp_str("late");
  assert_down(control, mc, t, true, &late, "control monitor");
  cr_assert_eq(ev_count(ANY, TR_TAG_DOWN), 1, "a DOWN reached someone else");
  tr_system_stats s1 = stats(sys);
  cr_assert_eq(s1.dead_letters[TR_DEAD_STALE], s0.dead_letters[TR_DEAD_STALE],
               "a DOWN was sent to the dead watcher");
  cr_assert_eq(s1.dead_letters[TR_DEAD_STOPPED], s0.dead_letters[TR_DEAD_STOPPED]);
  cr_assert_eq(s1.dead_letters[TR_DEAD_FAILED], s0.dead_letters[TR_DEAD_FAILED] + 1);
  /* The handler got t's FAILED message, and nothing else. */
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), dl0 + 1);
  event e = ev_get(hd.idx, TR_TAG_DEAD_LETTER, dl0);
  cr_assert_eq(e.why, TR_DEAD_FAILED);
  cr_assert(tr_ref_eq(e.ref, t.ref));
  /* The dead watcher's monitor on `control` is gone too. */
  OK(tr_stop(tr_system_ctx(sys), control.ref));
  WAIT(sys);
  cr_assert_eq(ev_count(ANY, TR_TAG_DOWN), 1);
  cr_assert_eq(stats(sys).dead_letters[TR_DEAD_STALE], s0.dead_letters[TR_DEAD_STALE]);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}

static void watcher_stopped_first(unsigned workers) { watcher_dies_first(workers, false); }
static void watcher_failed_first(unsigned workers) { watcher_dies_first(workers, true); }
AT_1_AND_2(watcher_stopped_first)
AT_1_AND_2(watcher_failed_first)

/* ---------------------------------------------------------------- stress */

typedef struct mrec {
  uint64_t id;
  uint64_t watcher;
  uint64_t target;
  size_t ev; /* index into the events */
} mrec;

static int mrec_cmp(const void *a, const void *b) {
  const mrec *x = a, *y = b;
  return x->id < y->id ? -1 : x->id > y->id;
}

typedef struct tref {
  uint64_t ref;
  uint32_t index;
} tref;

static int tref_cmp(const void *a, const void *b) {
  const tref *x = a, *y = b;
  return x->ref < y->ref ? -1 : x->ref > y->ref;
}

/*
 * Many watchers monitor many targets while killers (and the main thread) end
 * those targets: monitor races death. Every monitor must get exactly one
 * DOWN, with "noproc" (it came too late) or with the reason its target ended
 * with. With `watchers_die`, half the watchers are stopped meanwhile: the
 * survivors' monitors still fire exactly once, and none fires twice.
 */
static void monitor_race(unsigned workers, bool watchers_die) {
  enum { NW = 8, NK = 2, NT = 1200, CHUNK = 40, ROUNDS = 3 };
  static tref by_ref[NT];
  const bytes reason[N_ENDS] = {mp_str("stopped"), mp_str("normal"), mp_str("EFAIL"),
                                mp_str("stopped")};
  const bytes noproc = mp_str("noproc");
  for (int round = 0; round < ROUNDS; round++) {
    ev_reset();
    tr_system *sys = new_system(workers);
    tr_ctx *ext = tr_system_ctx(sys);
    ag w[NW], k[NK];
    for (uint32_t i = 0; i < NW; i++)
      w[i] = spawn_agent(sys, i);
    for (uint32_t i = 0; i < NK; i++)
      k[i] = spawn_agent(sys, NW + i);
    n_targets = NT;
    for (uint32_t i = 0; i < NT; i++) {
      targets[i] = spawn_agent(sys, 100 + i).ref;
      by_ref[i] = (tref){targets[i].id, i};
    }
    qsort(by_ref, NT, sizeof by_ref[0], tref_cmp);
    OK(tr_system_start(sys));

    /* Watchers go forwards, each from its own offset; killers and the main
     * thread go backwards, so monitors and deaths cross everywhere. */
    const uint32_t steps = NT / CHUNK;
    uint32_t stopped_watchers = 0;
    for (uint32_t s = 0; s < steps; s++) {
      for (uint32_t i = stopped_watchers; i < NW; i++)
        cmd(sys, w[i], DO_MONITOR_RANGE,
            mp_pair(tr_uint((s * CHUNK + i * (NT / NW)) % NT), tr_uint(CHUNK)));
      uint32_t first = (steps - 1 - s) * CHUNK;
      cmd(sys, k[s % NK], DO_KILL_RANGE, mp_pair(tr_uint(first), tr_uint(CHUNK)));
      for (uint32_t i = first; i < first + CHUNK; i++)
        if (i % N_ENDS == BY_MAIN_STOP)
          OK(tr_stop(ext, targets[i]));
      if (watchers_die && s == steps / 2) {
        for (uint32_t i = 0; i < NW / 2; i++)
          OK(tr_stop(ext, w[i].ref));
        stopped_watchers = NW / 2;
      }
    }
    WAIT(sys);
    ASSERT_NO_BAD();
    for (uint32_t i = 0; i < NT; i++)
      cr_assert(!is_alive(sys, (ag){targets[i], 100 + i}), "target %u outlived its end", i);

    size_t n = 0;
    event *all = ev_all(&n);
    mrec *mons = calloc(n + 1, sizeof *mons), *downs = calloc(n + 1, sizeof *downs);
    cr_assert(mons != NULL && downs != NULL);
    size_t nm = 0, nd = 0;
    for (size_t i = 0; i < n; i++) {
      if (all[i].kind == DO_MONITOR) {
        cr_assert_eq(all[i].st, TR_OK, "tr_monitor: %s", tr_status_name(all[i].st));
        mons[nm++] = (mrec){all[i].val, all[i].agent, all[i].ref.id, i};
      } else if (all[i].kind == TR_TAG_DOWN) {
        downs[nd++] = (mrec){all[i].monitor, all[i].agent, all[i].ref.id, i};
      }
    }
    if (!watchers_die)
      cr_assert_eq(nm, (size_t)NW * NT, "monitors made: %zu", nm);
    qsort(mons, nm, sizeof *mons, mrec_cmp);
    qsort(downs, nd, sizeof *downs, mrec_cmp);
    for (size_t i = 1; i < nm; i++)
      cr_assert_neq(mons[i].id, mons[i - 1].id, "two monitors got id %llu",
                    (unsigned long long)mons[i].id);
    for (size_t i = 1; i < nd; i++)
      cr_assert_neq(downs[i].id, downs[i - 1].id, "monitor %llu fired twice",
                    (unsigned long long)downs[i].id);

    /* Walk both lists: every DOWN belongs to a monitor made, with its
     * watcher and target, and says the right thing. */
    size_t j = 0, survivors = 0, fired = 0;
    for (size_t i = 0; i < nm; i++) {
      bool survivor = !watchers_die || mons[i].watcher >= NW / 2;
      survivors += survivor;
      while (j < nd && downs[j].id < mons[i].id)
        cr_assert_fail("DOWN for monitor %llu, which was never made",
                       (unsigned long long)downs[j++].id);
      if (j == nd || downs[j].id != mons[i].id) {
        cr_assert(!survivor, "monitor %llu of watcher %llu got no DOWN",
                  (unsigned long long)mons[i].id, (unsigned long long)mons[i].watcher);
        continue;
      }
      const mrec *d = &downs[j++];
      fired++;
      cr_assert_eq(d->watcher, mons[i].watcher, "DOWN %llu went to the wrong watcher",
                   (unsigned long long)d->id);
      cr_assert_eq(d->target, mons[i].target, "DOWN %llu names the wrong actor",
                   (unsigned long long)d->id);
      const event *e = &all[d->ev];
      tref key = {d->target, 0};
      const tref *t = bsearch(&key, by_ref, NT, sizeof by_ref[0], tref_cmp);
      cr_assert_not_null(t);
      unsigned end = t->index % N_ENDS;
      if (same_bytes(&e->a, &noproc)) {
        cr_assert(!e->failed, "a noproc DOWN says failed");
      } else {
        assert_bytes(&e->a, &reason[end], "DOWN reason");
        cr_assert_eq(e->failed, end == BY_OWN_FAILURE, "DOWN failed flag, target %u", t->index);
      }
    }
    cr_assert_eq(j, nd, "DOWNs for monitors never made");
    cr_assert_geq(fired, survivors);
    if (!watchers_die) {
      cr_assert_eq(nd, (size_t)NW * NT);
      tr_system_stats s = stats(sys);
      uint64_t want[TR_DEAD_REASON_COUNT] = {0};
      want[TR_DEAD_FAILED] = s.dead_letters[TR_DEAD_FAILED];
      cr_assert_eq(want[TR_DEAD_FAILED], (NT + N_ENDS - 1 - BY_OWN_FAILURE) / N_ENDS);
      assert_dead(sys, want, "monitor race");
    }
    assert_conserved(sys);
    free(mons);
    free(downs);
    free(all);
    ASSERT_NO_BAD();
    tr_system_free(sys);
  }
}

Test(fault, monitor_race_2_workers, .timeout = 300) { monitor_race(2, false); }
Test(fault, monitor_race_4_workers, .timeout = 300) { monitor_race(4, false); }
Test(fault, monitor_race_watchers_die_2_workers, .timeout = 300) { monitor_race(2, true); }
Test(fault, monitor_race_watchers_die_4_workers, .timeout = 300) { monitor_race(4, true); }

/* ================================================================ links */

/* A failure propagates to a linked actor, whichever end made the link. */
static void link_failure_propagates(unsigned workers) {
  for (int linker_fails = 0; linker_fails < 2; linker_fails++) {
    ev_reset();
    tr_system *sys = new_system(workers);
    ag o = spawn_agent(sys, 0), a = spawn_agent(sys, 1), b = spawn_agent(sys, 2);
    OK(tr_system_start(sys));
    uint64_t ma = monitor(sys, o, a), mb = monitor(sys, o, b);
    call_ok(sys, a, DO_LINK, mp_ref(b));
    ag failing = linker_fails ? a : b, other = linker_fails ? b : a;
    cmd(sys, failing, DO_FAIL_STR, mp_str("cascade"));
    WAIT(sys);
    bytes r = mp_str("cascade");
    const char *what = linker_fails ? "the linker failed" : "the linked actor failed";
    assert_down(o, linker_fails ? ma : mb, failing, true, &r, what);
    assert_down(o, linker_fails ? mb : ma, other, true, &r, what);
    assert_gone(sys, a, what);
    assert_gone(sys, b, what);
    assert_conserved(sys);
    ASSERT_NO_BAD();
    tr_system_free(sys);
  }
}
AT_1_AND_2(link_failure_propagates)

/* A - B - C: C's failure reaches A through B, with C's reason. A trapping B
 * stops it: B gets EXIT and lives, A is untouched. */
static void link_chain(unsigned workers) {
  for (int b_traps = 0; b_traps < 2; b_traps++) {
    ev_reset();
    tr_system *sys = new_system(workers);
    ag o = spawn_agent(sys, 0), a = spawn_agent(sys, 1), b = spawn_agent(sys, 2);
    ag c = spawn_agent(sys, 3);
    OK(tr_system_start(sys));
    uint64_t ma = monitor(sys, o, a), mb = monitor(sys, o, b), mc = monitor(sys, o, c);
    if (b_traps)
      call_ok(sys, b, DO_TRAP, mp_bool(true));
    call_ok(sys, a, DO_LINK, mp_ref(b));
    call_ok(sys, b, DO_LINK, mp_ref(c));
    static const uint8_t why[] = {0x92, 0xa5, 'c', 'h', 'a', 'i', 'n', 0x07}; /* ["chain", 7] */
    bytes r = mp_raw(why, sizeof why);
    cmd(sys, c, DO_FAIL, r);
    WAIT(sys);
    assert_down(o, mc, c, true, &r, "C failed");
    if (!b_traps) {
      assert_down(o, mb, b, true, &r, "B, linked to C");
      assert_down(o, ma, a, true, &r, "A, linked to B");
      assert_gone(sys, a, "A");
      assert_gone(sys, b, "B");
    } else {
      assert_exit(b, c, true, &r, "trapping B");
      cr_assert_eq(downs_for(o.idx, mb) + downs_for(o.idx, ma), 0, "a trapped failure spread");
      assert_alive(sys, b, "trapping B");
      assert_alive(sys, a, "A behind a trapping B");
      cr_assert_eq(ev_count(a.idx, TR_TAG_EXIT), 0);
    }
    assert_conserved(sys);
    ASSERT_NO_BAD();
    tr_system_free(sys);
  }
}
AT_1_AND_2(link_chain)

/* Normal exits do not propagate to a non-trapping linked actor. */
static void link_normal_exit(unsigned workers) {
  for (int by_outside = 0; by_outside < 2; by_outside++) {
    ev_reset();
    tr_system *sys = new_system(workers);
    ag o = spawn_agent(sys, 0), a = spawn_agent(sys, 1), b = spawn_agent(sys, 2);
    OK(tr_system_start(sys));
    uint64_t ma = monitor(sys, o, a), mb = monitor(sys, o, b);
    call_ok(sys, a, DO_LINK, mp_ref(b));
    if (by_outside)
      OK(tr_stop(tr_system_ctx(sys), b.ref));
    else
      cmd(sys, b, DO_STOP_SELF, mp_nil());
    WAIT(sys);
    bytes r = mp_str(by_outside ? "stopped" : "normal");
    assert_down(o, mb, b, false, &r, "B's normal exit");
    cr_assert_eq(downs_for(o.idx, ma), 0, "a normal exit killed a linked actor");
    assert_alive(sys, a, "A after B's normal exit");
    cr_assert_eq(ev_count(a.idx, TR_TAG_EXIT), 0, "EXIT to an actor that does not trap");
    assert_conserved(sys);
    ASSERT_NO_BAD();
    tr_system_free(sys);
  }
}
AT_1_AND_2(link_normal_exit)

/* A trapping actor gets EXIT for normal and failed exits and lives on;
 * trapping off again, it fails with its link. */
static void trap_exits(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag o = spawn_agent(sys, 0), a = spawn_agent(sys, 1), b1 = spawn_agent(sys, 2);
  ag b2 = spawn_agent(sys, 3), b3 = spawn_agent(sys, 4), b4 = spawn_agent(sys, 5);
  OK(tr_system_start(sys));
  uint64_t ma = monitor(sys, o, a);
  call_ok(sys, a, DO_TRAP, mp_bool(true));
  call_ok(sys, a, DO_LINK, mp_ref(b1));
  call_ok(sys, a, DO_LINK, mp_ref(b2));
  call_ok(sys, a, DO_LINK, mp_ref(b3));
  cmd(sys, b1, DO_STOP_SELF, mp_nil());
  cmd(sys, b2, DO_FAIL_STR, mp_str("trapped"));
  OK(tr_stop(tr_system_ctx(sys), b3.ref));
  WAIT(sys);
  bytes normal = mp_str("normal"), trapped = mp_str("trapped"), stopped = mp_str("stopped");
  assert_exit(a, b1, false, &normal, "EXIT for a normal exit");
  assert_exit(a, b2, true, &trapped, "EXIT for a failure");
  assert_exit(a, b3, false, &stopped, "EXIT for a stop");
  cr_assert_eq(ev_count(a.idx, TR_TAG_EXIT), 3);
  cr_assert_eq(ev_count(a.idx, TR_TAG_DOWN), 0);
  assert_alive(sys, a, "trapping actor");

  /* Trapping off: the next failure takes it down, with the same reason. */
  call_ok(sys, a, DO_TRAP, mp_bool(false));
  call_ok(sys, a, DO_LINK, mp_ref(b4));
  cmd(sys, b4, DO_FAIL_STR, mp_str("untrapped"));
  WAIT(sys);
  bytes untrapped = mp_str("untrapped");
  assert_down(o, ma, a, true, &untrapped, "trapping off");
  cr_assert_eq(ev_count(a.idx, TR_TAG_EXIT), 3);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(trap_exits)

static void link_refused(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag a = spawn_agent(sys, 0), dead = spawn_agent(sys, 1), b = spawn_agent(sys, 2);
  OK(tr_system_start(sys));
  OK(tr_stop(tr_system_ctx(sys), dead.ref));
  WAIT(sys);
  cr_assert_eq(call_st(sys, a, DO_LINK, mp_ref(a)), TR_EINVAL, "link to self");
  cr_assert_eq(call_st(sys, a, DO_LINK, mp_ref(dead)), TR_ESTALE, "link to a dead ref");
  cr_assert_eq(call_st(sys, a, DO_UNLINK, mp_ref(dead)), TR_ESTALE, "nothing was linked");
  cr_assert_eq(call_st(sys, a, DO_UNLINK, mp_ref(b)), TR_ESTALE, "unlink of a non-link");
  /* Nothing was linked: b's failure leaves a alone. */
  cmd(sys, b, DO_RETURN, mp_uint(TR_EFAIL));
  WAIT(sys);
  assert_gone(sys, b, "b failed");
  assert_alive(sys, a, "a, never linked");
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(link_refused)

/* After tr_unlink (from either end), a failure does not propagate. */
static void unlink_stops_propagation(unsigned workers) {
  for (int from_other_end = 0; from_other_end < 2; from_other_end++) {
    ev_reset();
    tr_system *sys = new_system(workers);
    ag o = spawn_agent(sys, 0), a = spawn_agent(sys, 1), b = spawn_agent(sys, 2);
    OK(tr_system_start(sys));
    uint64_t ma = monitor(sys, o, a), mb = monitor(sys, o, b);
    call_ok(sys, a, DO_LINK, mp_ref(b));
    if (from_other_end)
      call_ok(sys, b, DO_UNLINK, mp_ref(a));
    else
      call_ok(sys, a, DO_UNLINK, mp_ref(b));
    cr_assert_eq(call_st(sys, a, DO_UNLINK, mp_ref(b)), TR_ESTALE, "unlink twice");
    cr_assert_eq(call_st(sys, b, DO_UNLINK, mp_ref(a)), TR_ESTALE, "unlink twice, other end");
    cmd(sys, b, DO_FAIL_STR, mp_str("alone"));
    WAIT(sys);
    bytes alone = mp_str("alone");
    assert_down(o, mb, b, true, &alone, "b failed");
    cr_assert_eq(downs_for(o.idx, ma), 0, "the failure crossed a removed link");
    assert_alive(sys, a, "a, unlinked");
    assert_conserved(sys);
    ASSERT_NO_BAD();
    tr_system_free(sys);
  }
}
AT_1_AND_2(unlink_stops_propagation)

/* Linking twice (or from both ends) is one link: one EXIT, one unlink. */
static void link_twice_is_one_link(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag a = spawn_agent(sys, 0), b = spawn_agent(sys, 1), c = spawn_agent(sys, 2);
  OK(tr_system_start(sys));
  call_ok(sys, a, DO_TRAP, mp_bool(true));
  call_ok(sys, a, DO_LINK, mp_ref(b));
  call_ok(sys, a, DO_LINK, mp_ref(b));
  call_ok(sys, b, DO_LINK, mp_ref(a));
  cmd(sys, b, DO_FAIL_STR, mp_str("once"));
  WAIT(sys);
  bytes once = mp_str("once");
  assert_exit(a, b, true, &once, "linked three times");
  cr_assert_eq(ev_count(a.idx, TR_TAG_EXIT), 1);

  /* One link: one unlink removes it. */
  call_ok(sys, a, DO_LINK, mp_ref(c));
  call_ok(sys, a, DO_LINK, mp_ref(c));
  call_ok(sys, a, DO_UNLINK, mp_ref(c));
  cr_assert_eq(call_st(sys, a, DO_UNLINK, mp_ref(c)), TR_ESTALE, "a second unlink");
  cmd(sys, c, DO_FAIL_STR, mp_str("unlinked"));
  WAIT(sys);
  assert_gone(sys, c, "c failed");
  cr_assert_eq(ev_count(a.idx, TR_TAG_EXIT), 1, "EXIT through a removed link");
  assert_alive(sys, a, "a");
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(link_twice_is_one_link)

/* ================================================================ dead letters */

/*
 * Each kind of dead letter reaches the handler with what it was, and the
 * forwarded dead letters are messages like any other: counted in sent and
 * handled, so conservation still holds.
 */
static void dead_letters_reach_the_handler(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0);
  ag t1 = spawn_agent(sys, 1); /* stops with mail queued */
  ag t2 = spawn_agent(sys, 2); /* fails */
  tr_actor_spec drop_newest = bounded_agent(TR_MAILBOX_DROP_NEWEST, 1);
  tr_actor_spec drop_oldest = bounded_agent(TR_MAILBOX_DROP_OLDEST, 1);
  tr_actor_spec refuse = bounded_agent(TR_MAILBOX_REFUSE, 1);
  ag bn = spawn_agent_spec(sys, 3, &drop_newest);
  ag bo = spawn_agent_spec(sys, 4, &drop_oldest);
  ag br = spawn_agent_spec(sys, 5, &refuse);
  ag a = spawn_agent(sys, 6); /* sends to a stale ref */
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  tr_ctx *ext = tr_system_ctx(sys);

  /* Before start, so each mailbox is exactly as built here. 7 accepted. */
  cmd(sys, t1, DO_STOP_SELF, mp_nil());
  cmd(sys, t1, DATA, mp_str("queued"));
  bytes fail_payload = mp_pair(tr_str("why"), tr_uint(TR_OK));
  cmd(sys, t2, DO_FAIL_RETURN, fail_payload);
  cmd(sys, bn, DATA, mp_str("keep"));
  cmd(sys, bn, DATA, mp_str("drop")); /* dropped on arrival: not accepted */
  cmd(sys, bo, DATA, mp_str("old"));  /* dropped when bo runs */
  cmd(sys, bo, DATA, mp_str("new"));
  cmd(sys, br, DATA, mp_str("r1"));
  EXPECT_ST(tr_send_str(ext, br.ref, DATA, "r2", 2), TR_EFULL); /* refused: not forwarded */
  OK(tr_system_start(sys));
  WAIT(sys);
  assert_gone(sys, t1, "t1 stopped");
  assert_gone(sys, t2, "t2 failed");

  /* Stale: from outside, and from an actor (1 more accepted). */
  EXPECT_ST(tr_send_str(ext, t1.ref, DATA, "late", 4), TR_ESTALE);
  event sent = do_call(sys, a, DO_SEND, mp_ref(t1));
  cr_assert_eq(sent.st, TR_ESTALE);
  WAIT(sys);

  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_STALE] = 2;
  want[TR_DEAD_STOPPED] = 1;
  want[TR_DEAD_FAILED] = 1;
  want[TR_DEAD_DROPPED_NEWEST] = 1;
  want[TR_DEAD_DROPPED_OLDEST] = 1;
  assert_dead(sys, want, "one of each");
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 6, "forwarded: %zu",
               ev_count(hd.idx, TR_TAG_DEAD_LETTER));
  for (unsigned r = 0; r < TR_DEAD_REASON_COUNT; r++) {
    size_t n = 0;
    event e;
    for (size_t k = 0; ev_find(hd.idx, TR_TAG_DEAD_LETTER, k, &e); k++)
      n += e.why == r;
    cr_assert_eq(n, want[r], "handler got %zu dead letters %s, counted %llu", n,
                 tr_dead_reason_name((tr_dead_reason)r), (unsigned long long)want[r]);
  }

  bytes nil = mp_nil();
  bytes queued = mp_str("queued"), why = mp_str("why"), drop = mp_str("drop"), old = mp_str("old");
  bytes late = mp_str("late"), from_actor = mp_str("from-actor");
  event e = dead_letter(hd, TR_DEAD_STOPPED, TR_REF_NONE);
  assert_dead_letter(&e, t1, DATA, &queued, &nil, "STOPPED");
  e = dead_letter(hd, TR_DEAD_FAILED, TR_REF_NONE);
  assert_dead_letter(&e, t2, DO_FAIL_RETURN, &fail_payload, &why, "FAILED");
  e = dead_letter(hd, TR_DEAD_DROPPED_NEWEST, TR_REF_NONE);
  assert_dead_letter(&e, bn, DATA, &drop, &nil, "DROPPED_NEWEST");
  e = dead_letter(hd, TR_DEAD_DROPPED_OLDEST, TR_REF_NONE);
  assert_dead_letter(&e, bo, DATA, &old, &nil, "DROPPED_OLDEST");
  e = dead_letter(hd, TR_DEAD_STALE, TR_REF_NONE);
  assert_dead_letter(&e, t1, DATA, &late, &nil, "STALE from outside");
  e = dead_letter(hd, TR_DEAD_STALE, a.ref);
  assert_dead_letter(&e, t1, DATA, &from_actor, &nil, "STALE from an actor");

  /* The refused send was counted as refused and not forwarded. */
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.refused, 1);
  event d;
  for (size_t k = 0; ev_find(hd.idx, TR_TAG_DEAD_LETTER, k, &d); k++)
    cr_assert(!(d.a.n == 3 && memcmp(d.a.b, "\xa2r2", 3) == 0), "a refused send was forwarded");

  /* Accepted: 7 before start + 1 DO_SEND, plus the 6 forwarded. Handled:
   * t1's stop, keep, new, r1, DO_SEND, and the handler's 6. */
  cr_assert_eq(s.sent, 8 + 6, "sent %llu", (unsigned long long)s.sent);
  cr_assert_eq(s.handled, 5 + 6, "handled %llu", (unsigned long long)s.handled);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(dead_letters_reach_the_handler)

/* A dead letter that cannot reach a stopped handler is counted, and not
 * forwarded again: no loop, and the system goes quiet. */
static void dead_letter_to_a_stopped_handler(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0), t = spawn_agent(sys, 1);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  OK(tr_stop(tr_system_ctx(sys), t.ref));
  OK(tr_stop(tr_system_ctx(sys), hd.ref));
  WAIT(sys);
  const uint64_t none[TR_DEAD_REASON_COUNT] = {0};
  assert_dead(sys, none, "before");
  EXPECT_ST(tr_send_str(tr_system_ctx(sys), t.ref, DATA, "lost", 4), TR_ESTALE);
  WAIT(sys);
  /* The stale send, and its forward to the stale handler: both stale. */
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_STALE] = 2;
  assert_dead(sys, want, "after one stale send");
  cr_assert_eq(ev_count(ANY, TR_TAG_DEAD_LETTER), 0);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(dead_letter_to_a_stopped_handler)

/* The handler stops with a forwarded dead letter still queued: that one
 * becomes a STOPPED dead letter, counted and not forwarded. */
static void handler_stops_with_dead_letters_queued(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0);
  tr_actor_spec drop_newest = bounded_agent(TR_MAILBOX_DROP_NEWEST, 1);
  ag bn = spawn_agent_spec(sys, 1, &drop_newest);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  cmd(sys, hd, DO_STOP_SELF, mp_nil());
  cmd(sys, bn, DATA, mp_str("keep"));
  cmd(sys, bn, DATA, mp_str("drop")); /* forwarded behind hd's stop */
  OK(tr_system_start(sys));
  WAIT(sys);
  assert_gone(sys, hd, "handler");
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_DROPPED_NEWEST] = 1;
  want[TR_DEAD_STOPPED] = 1;
  assert_dead(sys, want, "handler stopped with one queued");
  cr_assert_eq(ev_count(ANY, TR_TAG_DEAD_LETTER), 0);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(handler_stops_with_dead_letters_queued)

/* The handler itself fails: its own FAILED dead letter is not forwarded
 * round and round. */
static void handler_fails(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  cmd(sys, hd, DO_RETURN, mp_uint(TR_EFAIL));
  WAIT(sys);
  assert_gone(sys, hd, "handler");
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.dead_letters[TR_DEAD_FAILED], 1);
  /* The forward of its own FAILED message found it alive (then STOPPED with
   * it) or gone (STALE): one dead letter either way, and no more. */
  cr_assert_eq(s.dead_letters[TR_DEAD_STOPPED] + s.dead_letters[TR_DEAD_STALE], 1,
               "stopped %llu + stale %llu", (unsigned long long)s.dead_letters[TR_DEAD_STOPPED],
               (unsigned long long)s.dead_letters[TR_DEAD_STALE]);
  cr_assert_eq(ev_count(ANY, TR_TAG_DEAD_LETTER), 0);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(handler_fails)

/* Refused sends are counted in stats.refused, and never forwarded. */
static void refused_sends_are_not_forwarded(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag hd = spawn_agent(sys, 0), gone = spawn_agent(sys, 1);
  tr_actor_spec refuse = bounded_agent(TR_MAILBOX_REFUSE, 2);
  ag br = spawn_agent_spec(sys, 2, &refuse);
  tr_ctx *ext = tr_system_ctx(sys);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_send_str(ext, br.ref, DATA, "1", 1));
  OK(tr_send_str(ext, br.ref, DATA, "2", 1));
  for (int i = 0; i < 3; i++)
    EXPECT_ST(tr_send_str(ext, br.ref, DATA, "x", 1), TR_EFULL);
  OK(tr_stop(ext, gone.ref));
  OK(tr_system_start(sys));
  WAIT(sys);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.refused, 3);
  const uint64_t none[TR_DEAD_REASON_COUNT] = {0};
  assert_dead(sys, none, "refusals");
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 0, "a refused send was forwarded");
  /* Control: a real dead letter is forwarded. */
  EXPECT_ST(tr_send(ext, gone.ref, DATA), TR_ESTALE);
  WAIT(sys);
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 1);
  event e = dead_letter(hd, TR_DEAD_STALE, TR_REF_NONE);
  cr_assert(tr_ref_eq(e.ref, gone.ref));
  cr_assert_eq(stats(sys).refused, 3);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(refused_sends_are_not_forwarded)

/* A timer's message to an actor gone meanwhile: a STALE dead letter,
 * forwarded from the timer thread, in the name of whoever armed it. */
static void timer_dead_letter(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  tr_ctx *ext = tr_system_ctx(sys);
  ag hd = spawn_agent(sys, 0), t = spawn_agent(sys, 1), a = spawn_agent(sys, 2);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  OK(tr_stop(ext, t.ref));
  WAIT(sys);
  bytes tick = mp_str("tick"), tock = mp_str("tock"), nil = mp_nil();
  OK(tr_send_after(ext, t.ref, DATA, 5, 0, tick.b, tick.n, NULL));
  call_ok(sys, a, DO_TIMER, mp_ref(t));
  WAIT(sys); /* the pending timers keep it busy until they fired */
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_STALE] = 2;
  assert_dead(sys, want, "timers to a stopped actor");
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 2);
  event e = dead_letter(hd, TR_DEAD_STALE, TR_REF_NONE);
  assert_dead_letter(&e, t, DATA, &tick, &nil, "a timer armed outside");
  e = dead_letter(hd, TR_DEAD_STALE, a.ref);
  assert_dead_letter(&e, t, DATA, &tock, &nil, "a timer armed by an actor");
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(timer_dead_letter)

/* A reply after its ask timed out: a LATE_REPLY dead letter, forwarded. */
Test(fault, late_reply_dead_letter_2_workers) {
  ev_reset();
  tr_system *sys = new_system(2);
  ag hd = spawn_agent(sys, 0), a = spawn_agent(sys, 1), b = spawn_agent(sys, 2);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  call_ok(sys, a, DO_ASK_LATE, mp_ref(b));
  ASSERT_NO_BAD();
  cr_assert_eq(ev_count(a.idx, TR_TAG_TIMEOUT), 1);
  cr_assert_eq(ev_count(a.idx, ANSWER), 0, "a late reply was delivered");
  cr_assert_eq(ev_get(b.idx, SLOW_QUESTION, 0).st, TR_OK, "a late tr_reply");
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_LATE_REPLY] = 1;
  assert_dead(sys, want, "late reply");
  event e = dead_letter(hd, TR_DEAD_LATE_REPLY, b.ref);
  bytes late = mp_str("late"), nil = mp_nil();
  assert_dead_letter(&e, a, ANSWER, &late, &nil, "LATE_REPLY");
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 1);
  assert_conserved(sys);
  tr_system_free(sys);
}

/* TR_REF_NONE removes the handler: dead letters are counted only. */
static void dead_letter_handler_removed(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  tr_ctx *ext = tr_system_ctx(sys);
  ag hd = spawn_agent(sys, 0), t = spawn_agent(sys, 1);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_system_start(sys));
  OK(tr_stop(ext, t.ref));
  WAIT(sys);
  EXPECT_ST(tr_send(ext, t.ref, DATA), TR_ESTALE);
  WAIT(sys);
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 1);
  OK(tr_system_set_dead_letter_handler(sys, TR_REF_NONE));
  EXPECT_ST(tr_send(ext, t.ref, DATA), TR_ESTALE);
  WAIT(sys);
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 1, "forwarded after the handler was removed");
  uint64_t want[TR_DEAD_REASON_COUNT] = {0};
  want[TR_DEAD_STALE] = 2;
  assert_dead(sys, want, "handler removed");
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(dead_letter_handler_removed)

/* ================================================================ past the bound */

/*
 * DOWN and EXIT go past a full bounded mailbox. One worker: the target
 * fills the watcher's mailbox and stops in one behaviour call, so the
 * watcher cannot run between the fill and the notification.
 */
static void notification_past_the_bound(tr_mailbox_policy policy, bool by_link) {
  ev_reset();
  tr_system *sys = new_system(1);
  tr_actor_spec bounded = bounded_agent(policy, 1);
  ag w = spawn_agent_spec(sys, 0, &bounded), t = spawn_agent(sys, 1);
  OK(tr_system_start(sys));
  uint64_t m = 0;
  if (by_link) {
    call_ok(sys, w, DO_TRAP, mp_bool(true));
    call_ok(sys, w, DO_LINK, mp_ref(t));
  } else {
    m = monitor(sys, w, t);
  }
  tr_system_stats s0 = stats(sys);
  cmd(sys, t, DO_FILL, mp_ref(w));
  WAIT(sys);
  assert_gone(sys, t, "filler");
  /* The mailbox was full: the third send was refused or dropped. */
  event f3 = ev_get(t.idx, DO_FILL, 2);
  tr_system_stats s = stats(sys);
  if (policy == TR_MAILBOX_REFUSE) {
    cr_assert_eq(f3.st, TR_EFULL);
    cr_assert_eq(s.refused - s0.refused, 2);
  } else {
    cr_assert_eq(f3.st, TR_OK);
    cr_assert_geq(s.dead_letters[TR_DEAD_DROPPED_NEWEST], 1);
  }
  bytes normal = mp_str("normal");
  if (by_link)
    assert_exit(w, t, false, &normal, "EXIT past the bound");
  else
    assert_down(w, m, t, false, &normal, "DOWN past the bound");
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}

Test(fault, down_past_a_full_refuse_mailbox) {
  notification_past_the_bound(TR_MAILBOX_REFUSE, false);
}
Test(fault, down_past_a_full_drop_newest_mailbox) {
  notification_past_the_bound(TR_MAILBOX_DROP_NEWEST, false);
}
Test(fault, down_past_a_full_drop_oldest_mailbox) {
  notification_past_the_bound(TR_MAILBOX_DROP_OLDEST, false);
}
Test(fault, exit_past_a_full_refuse_mailbox) {
  notification_past_the_bound(TR_MAILBOX_REFUSE, true);
}
Test(fault, exit_past_a_full_drop_newest_mailbox) {
  notification_past_the_bound(TR_MAILBOX_DROP_NEWEST, true);
}

/* Two workers: the watcher is held in the gate with a full REFUSE mailbox
 * while its target is stopped on the other worker. */
Test(fault, down_past_a_full_mailbox_2_workers) {
  ev_reset();
  tr_system *sys = new_system(2);
  tr_ctx *ext = tr_system_ctx(sys);
  tr_actor_spec refuse = bounded_agent(TR_MAILBOX_REFUSE, 1);
  ag w = spawn_agent_spec(sys, 0, &refuse), t = spawn_agent(sys, 1);
  OK(tr_system_start(sys));
  uint64_t m = monitor(sys, w, t);
  enter_gate(sys, w);
  OK(tr_send_str(ext, w.ref, DATA, "fill", 4));
  EXPECT_ST(tr_send_str(ext, w.ref, DATA, "over", 4), TR_EFULL);
  OK(tr_stop(ext, t.ref));
  /* Wait (bounded) until the DOWN waits in w's mailbox behind "fill". The
   * depth is exact here: w's consumer is stuck in the gate. */
  tr_actor_stats as;
  uint64_t give_up = now_ms() + WAIT_MS;
  do {
    OK(tr_actor_stats_get(ext, w.ref, &as));
    if (as.depth >= 2)
      break;
    sched_yield();
  } while (now_ms() < give_up);
  cr_assert_eq(as.depth, 2, "the DOWN was not accepted past the bound: depth %llu; t is %s",
               (unsigned long long)as.depth, is_alive(sys, t) ? "alive" : "gone");
  EXPECT_ST(tr_send_str(ext, w.ref, DATA, "over", 4), TR_EFULL);
  atomic_store(&gate_open, true);
  WAIT(sys);
  bytes stopped = mp_str("stopped");
  assert_down(w, m, t, false, &stopped, "DOWN past a full mailbox");
  cr_assert_eq(ev_count(w.idx, DATA), 1);
  cr_assert_eq(stats(sys).refused, 2);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}

/* A dead letter goes past the handler's full bounded mailbox. */
static void dead_letter_past_the_bound(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  tr_ctx *ext = tr_system_ctx(sys);
  tr_actor_spec refuse = bounded_agent(TR_MAILBOX_REFUSE, 1);
  tr_actor_spec drop_newest = bounded_agent(TR_MAILBOX_DROP_NEWEST, 1);
  ag hd = spawn_agent_spec(sys, 0, &refuse), bn = spawn_agent_spec(sys, 1, &drop_newest);
  OK(tr_system_set_dead_letter_handler(sys, hd.ref));
  OK(tr_send_str(ext, hd.ref, DATA, "fill", 4));
  EXPECT_ST(tr_send_str(ext, hd.ref, DATA, "over", 4), TR_EFULL);
  OK(tr_send_str(ext, bn.ref, DATA, "keep", 4));
  OK(tr_send_str(ext, bn.ref, DATA, "drop", 4)); /* forwarded to the full handler */
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(ev_count(hd.idx, TR_TAG_DEAD_LETTER), 1, "the dead letter was not delivered");
  event e = dead_letter(hd, TR_DEAD_DROPPED_NEWEST, TR_REF_NONE);
  bytes drop = mp_str("drop"), nil = mp_nil();
  assert_dead_letter(&e, bn, DATA, &drop, &nil, "past the bound");
  cr_assert_eq(stats(sys).refused, 1);
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(dead_letter_past_the_bound)

/* ================================================================ reserved tags */

static void reserved_tags_refused(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  tr_ctx *ext = tr_system_ctx(sys);
  ag a = spawn_agent(sys, 0), b = spawn_agent(sys, 1);
  OK(tr_system_start(sys));
  for (size_t i = 0; i < N_RESERVED; i++) {
    int bad = reserved_sends(ext, b.ref, reserved_tags[i]);
    cr_assert_eq(bad, 0, "tag %#x: send call #%d was not refused with TR_EINVAL", reserved_tags[i],
                 bad);
    uint32_t rtag = 0;
    void *reply = NULL;
    size_t rlen = 0;
    EXPECT_ST(tr_ask_wait(ext, b.ref, reserved_tags[i], NULL, 0, 1000, &rtag, &reply, &rlen),
              TR_EINVAL);
  }
  WAIT(sys);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, 0, "a reserved-tag send went out");
  cr_assert_eq(s.timers_armed, 0);
  cr_assert_eq(s.asks, 0);

  /* Inside a behaviour: sends, asks and replies; then a real ask works,
   * and the last user tag goes through. */
  call_ok(sys, a, DO_RESERVED, mp_ref(b));
  WAIT(sys);
  cr_assert_eq(ev_count(b.idx, TR_TAG_RESERVED - 1), 1);
  cr_assert_eq(ev_count(b.idx, QUESTION), 1);
  cr_assert_eq(ev_get(b.idx, QUESTION, 0).st, TR_OK, "tr_reply");
  cr_assert_eq(ev_count(a.idx, ANSWER), 1);
  cr_assert_eq(ev_get(a.idx, ANSWER, 0).val, 1, "the answer is not a reply");
  cr_assert_eq(ev_count(ANY, TR_TAG_DOWN) + ev_count(ANY, TR_TAG_EXIT), 0);
  s = stats(sys);
  cr_assert_eq(s.timers_armed, 1, "only the real ask armed a timer");
  const uint64_t none[TR_DEAD_REASON_COUNT] = {0};
  assert_dead(sys, none, "reserved tags");
  assert_conserved(sys);
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(reserved_tags_refused)

/* ================================================================ tr_system_exit */

static void assert_exit_reason(tr_system *sys, const bytes *want, const char *what) {
  const void *reason = NULL;
  size_t len = 0;
  OK(tr_system_exit_reason(sys, &reason, &len));
  cr_assert_not_null(reason);
  cr_assert_leq(len, EV_BYTES);
  bytes got = mp_raw(reason, len);
  assert_bytes(&got, want, what);
}

static void system_exit_from_a_behaviour(unsigned workers) {
  ev_reset();
  tr_system *sys = new_system(workers);
  ag a = spawn_agent(sys, 0);
  const void *reason = NULL;
  size_t len = 0;
  EXPECT_ST(tr_system_exit_reason(sys, &reason, &len), TR_ESTATE);
  OK(tr_system_start(sys));
  WAIT(sys);
  EXPECT_ST(tr_system_exit_reason(sys, &reason, &len), TR_ESTATE);

  bytes first = mp_pair(tr_str("gave up"), tr_uint(3));
  cmd(sys, a, DO_EXIT, first);
  EXPECT_ST(tr_system_wait(sys), TR_EEXIT);
  EXPECT_ST(tr_system_wait(sys), TR_EEXIT);
  EXPECT_ST(tr_system_wait_for(sys, 10), TR_EEXIT);
  EXPECT_ST(tr_system_wait_for(sys, WAIT_MS), TR_EEXIT);
  assert_exit_reason(sys, &first, "the first reason");
  /* A second exit, from outside: the first reason is kept. */
  OK(tr_system_exit(tr_system_ctx(sys), "\xa6second", 7));
  assert_exit_reason(sys, &first, "after a second exit");
  OK(tr_system_stop(sys));
  /* The behaviour's two calls (its own second one: "later") both worked. */
  cr_assert_eq(ev_count(a.idx, DO_EXIT), 2);
  cr_assert_eq(ev_get(a.idx, DO_EXIT, 0).st, TR_OK);
  cr_assert_eq(ev_get(a.idx, DO_EXIT, 1).st, TR_OK);
  assert_exit_reason(sys, &first, "after stop");
  ASSERT_NO_BAD();
  tr_system_free(sys);
}
AT_1_AND_2(system_exit_from_a_behaviour)

/* A waiter already blocked (a timer keeps the system busy) is woken. */
Test(fault, system_exit_wakes_a_blocked_wait) {
  tr_system *sys = new_system(2);
  ag a = spawn_agent(sys, 0);
  OK(tr_system_start(sys));
  bytes reason = mp_str("timer said so");
  OK(tr_send_after(tr_system_ctx(sys), a.ref, DO_EXIT, 50, 0, reason.b, reason.n, NULL));
  EXPECT_ST(tr_system_wait_for(sys, WAIT_MS), TR_EEXIT);
  assert_exit_reason(sys, &reason, "from a timer's message");
  tr_system_free(sys);
}

Test(fault, system_exit_from_outside) {
  tr_system *sys = new_system(1);
  tr_ctx *ext = tr_system_ctx(sys);
  const void *reason = NULL;
  size_t len = 0;
  static const uint8_t bad[] = {0xc1}, two[] = {0x01, 0x02};
  EXPECT_ST(tr_system_exit(NULL, NULL, 0), TR_EINVAL);
  EXPECT_ST(tr_system_exit(ext, bad, sizeof bad), TR_EMALFORMED);
  EXPECT_ST(tr_system_exit(ext, two, sizeof two), TR_EMALFORMED);
  EXPECT_ST(tr_system_exit(ext, two, 0), TR_EMALFORMED);
  EXPECT_ST(tr_system_exit_reason(sys, &reason, &len), TR_ESTATE);
  OK(tr_system_start(sys));
  WAIT(sys); /* the refused exits did not exit */
  OK(tr_system_exit(ext, NULL, 0));
  EXPECT_ST(tr_system_wait(sys), TR_EEXIT);
  bytes nil = mp_nil();
  assert_exit_reason(sys, &nil, "NULL: nil");
  OK(tr_system_exit(ext,
                    "\xa3"
                    "abc",
                    4));
  assert_exit_reason(sys, &nil, "the first reason is kept");
  EXPECT_ST(tr_system_wait(sys), TR_EEXIT);
  tr_system_free(sys);
}
