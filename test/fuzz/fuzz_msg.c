/*
 * test/fuzz/fuzz_msg.c - libFuzzer target: real messages through a system.
 *
 * Problem. A behaviour reads its message with the tr_msg_* getters, which
 * decode the payload the runtime copied into the message (inline in a pool
 * block for small ones, where ASan cannot see an overread past the payload,
 * or malloc'ed). tr_send_msgpack must accept exactly the buffers tr_mp_check
 * accepts, deliver them byte for byte, and every getter must keep its
 * contract on whatever payload arrives.
 *
 * Approach. LLVMFuzzerInitialize starts one system with one worker and
 * spawns one actor, once. Each input is sent as a raw msgpack payload from
 * outside (the system's ctx); when the send accepts it, the fuzzing thread
 * waits for quiescence (tr_system_wait), a synchronous hand-off, and checks
 * that the behaviour ran exactly once. Inside the behaviour every tr_msg_*
 * reader is called and checked against tr_mp_get_val/tr_mp_get_vals on the
 * payload (fuzz_mp.c checks those against msgpack-c): the right status for
 * the payload's type and range, outputs untouched on error, STR/BIN pointing
 * inside the payload, NULL arguments refused, and no malloc while a getter
 * runs. Any failure aborts, so libFuzzer keeps the input.
 *
 * The input is published to the worker before the send; the send's enqueue
 * orders it before the behaviour runs, and tr_system_wait orders the
 * behaviour's writes before the fuzzing thread reads the count.
 */
#include <sanitizer/allocator_interface.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "troupe.h"

#include "fuzz_val.h"

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail(__LINE__, #cond);                                                                       \
  } while (0)

static void fail(int line, const char *expr) {
  fprintf(stderr, "fuzz_msg.c:%d: check failed: %s\n", line, expr);
  abort();
}

static tr_system *sys;
static tr_ref target;

/* The input being sent, written by the fuzzing thread before each send. */
static const uint8_t *cur_data;
static size_t cur_size;
static uint32_t cur_tag;
/* Messages the behaviour has checked. */
static atomic_ulong handled;

/* -------------------------------------------------- getters never allocate */

static _Thread_local bool in_getter;

static void on_malloc(const volatile void *ptr, size_t size) {
  (void)ptr;
  (void)size;
  if (in_getter) {
    in_getter = false; /* fail() may allocate */
    fail(__LINE__, "a tr_msg getter called malloc");
  }
}

static void on_free(const volatile void *ptr) { (void)ptr; }

/* ------------------------------------------------------------ the checks */

#define SENTINEL 0xa5

static bool untouched(const void *p, size_t len) {
  const uint8_t *b = p;
  for (size_t i = 0; i < len; i++) {
    if (b[i] != SENTINEL)
      return false;
  }
  return true;
}

/* [ptr, ptr+len) lies inside [base, base+size); compared as addresses. */
static bool inside(const void *ptr, size_t len, const void *base, size_t size) {
  uintptr_t lo = (uintptr_t)base, p = (uintptr_t)ptr;
  return ptr != NULL && p >= lo && p - lo <= size && len <= size - (p - lo);
}

/* The same value, STR/BIN at the same address. */
static bool same_val(const tr_val *a, const tr_val *b) { return fuzz_val_same(a, b, true); }

/* A getter's status given the payload's reference decoding (st, v). */
static tr_status want_typed(tr_status st, const tr_val *v, tr_val_type type) {
  if (st != TR_OK)
    return st;
  return v->type == type ? TR_OK : TR_EDECODE;
}

/* The scalar getters against tr_mp_get_val on the payload. */
static void check_scalars(const tr_msg *msg, const uint8_t *payload, size_t len) {
  tr_val v;
  tr_status st = tr_mp_get_val(payload, len, &v);
  /* The send validated the payload: it is one value, maybe not a scalar. */
  CHECK(st == TR_OK || st == TR_EDECODE);

  int64_t i;
  memset(&i, SENTINEL, sizeof i);
  tr_status got = tr_msg_get_int(msg, &i);
  if (st == TR_OK && (v.type == TR_VAL_INT || v.type == TR_VAL_UINT)) {
    int64_t want;
    tr_status ws = tr_val_get_int(&v, &want);
    CHECK(got == ws && (ws != TR_OK || i == want));
  } else {
    CHECK(got == (st == TR_OK ? TR_EDECODE : st));
  }
  if (got != TR_OK)
    CHECK(untouched(&i, sizeof i));

  uint64_t u;
  memset(&u, SENTINEL, sizeof u);
  got = tr_msg_get_uint(msg, &u);
  if (st == TR_OK && (v.type == TR_VAL_INT || v.type == TR_VAL_UINT)) {
    uint64_t want;
    tr_status ws = tr_val_get_uint(&v, &want);
    CHECK(got == ws && (ws != TR_OK || u == want));
  } else {
    CHECK(got == (st == TR_OK ? TR_EDECODE : st));
  }
  if (got != TR_OK)
    CHECK(untouched(&u, sizeof u));

  double d;
  memset(&d, SENTINEL, sizeof d);
  got = tr_msg_get_double(msg, &d);
  CHECK(got == want_typed(st, &v, TR_VAL_DOUBLE));
  CHECK(got == TR_OK ? bits_eq(d, v.as.d) : untouched(&d, sizeof d));

  bool b;
  memset(&b, SENTINEL, sizeof b);
  got = tr_msg_get_bool(msg, &b);
  CHECK(got == want_typed(st, &v, TR_VAL_BOOL));
  CHECK(got == TR_OK ? b == v.as.b : untouched(&b, sizeof b));

  const char *s;
  size_t slen;
  memset(&s, SENTINEL, sizeof s);
  memset(&slen, SENTINEL, sizeof slen);
  got = tr_msg_get_str(msg, &s, &slen);
  CHECK(got == want_typed(st, &v, TR_VAL_STR));
  if (got == TR_OK)
    CHECK(s == v.as.bytes.ptr && slen == v.as.bytes.len && inside(s, slen, payload, len));
  else
    CHECK(untouched(&s, sizeof s) && untouched(&slen, sizeof slen));

  const void *p;
  size_t plen;
  memset(&p, SENTINEL, sizeof p);
  memset(&plen, SENTINEL, sizeof plen);
  got = tr_msg_get_bin(msg, &p, &plen);
  CHECK(got == want_typed(st, &v, TR_VAL_BIN));
  if (got == TR_OK)
    CHECK(p == v.as.bytes.ptr && plen == v.as.bytes.len && inside(p, plen, payload, len));
  else
    CHECK(untouched(&p, sizeof p) && untouched(&plen, sizeof plen));

  CHECK(tr_msg_is_nil(msg) == (st == TR_OK && v.type == TR_VAL_NIL));

  /* NULL outputs are refused whatever the payload. */
  CHECK(tr_msg_get_int(msg, NULL) == TR_EINVAL);
  CHECK(tr_msg_get_uint(msg, NULL) == TR_EINVAL);
  CHECK(tr_msg_get_double(msg, NULL) == TR_EINVAL);
  CHECK(tr_msg_get_bool(msg, NULL) == TR_EINVAL);
  CHECK(tr_msg_get_str(msg, NULL, &slen) == TR_EINVAL);
  CHECK(tr_msg_get_str(msg, &s, NULL) == TR_EINVAL);
  CHECK(tr_msg_get_bin(msg, NULL, &plen) == TR_EINVAL);
  CHECK(tr_msg_get_bin(msg, &p, NULL) == TR_EINVAL);
}

/* Room for any array of a fuzz input: one value per byte, plus a guard. */
static tr_val *outs;
static size_t outs_cap;

/* tr_msg_get_vals against tr_mp_get_vals on the payload, at three capacities. */
static void check_vals(const tr_msg *msg, const uint8_t *payload, size_t len) {
  size_t k = 0;
  tr_status st = tr_mp_get_vals(payload, len, outs, len, &k);
  CHECK(st == TR_OK || st == TR_EDECODE);
  tr_val want[2];
  if (st == TR_OK) {
    CHECK(k < len);
    for (size_t j = 0; j < k && j < 2; j++)
      want[j] = outs[j];
  }

  static const size_t caps[] = {0, 1, 2};
  for (size_t c = 0; c < sizeof caps / sizeof caps[0]; c++) {
    tr_val got[3];
    size_t n = 0;
    memset(got, SENTINEL, sizeof got);
    tr_status gs = tr_msg_get_vals(msg, caps[c] == 0 ? NULL : got, caps[c], &n);
    if (st != TR_OK) {
      CHECK(gs == st);
    } else if (k > caps[c]) {
      CHECK(gs == TR_ENOSPC && n == k);
    } else {
      CHECK(gs == TR_OK && n == k);
      for (size_t j = 0; j < n; j++)
        CHECK(same_val(&got[j], &want[j]));
    }
    size_t written = gs == TR_OK ? n : 0;
    CHECK(untouched(&got[written], (3 - written) * sizeof got[0]));
  }

  /* With room for all, every STR/BIN points inside the payload. */
  if (st == TR_OK) {
    size_t n = 0;
    memset(outs, SENTINEL, (len + 1) * sizeof *outs);
    CHECK(tr_msg_get_vals(msg, outs, len, &n) == TR_OK && n == k);
    for (size_t j = 0; j < n; j++) {
      if (outs[j].type == TR_VAL_STR || outs[j].type == TR_VAL_BIN)
        CHECK(inside(outs[j].as.bytes.ptr, outs[j].as.bytes.len, payload, len));
    }
    CHECK(untouched(&outs[n], (len + 1 - n) * sizeof *outs));
  }

  size_t n;
  CHECK(tr_msg_get_vals(msg, NULL, 1, &n) == TR_EINVAL);
  CHECK(tr_msg_get_vals(msg, outs, 1, NULL) == TR_EINVAL);
}

static tr_status on_msg(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  /* The message is the input, copied, with its tag, from outside. */
  size_t len = 0;
  const uint8_t *payload = tr_msg_payload(msg, &len);
  CHECK(payload != NULL && len == cur_size && memcmp(payload, cur_data, len) == 0);
  CHECK(payload != cur_data);
  CHECK(tr_msg_payload(msg, NULL) == payload);
  CHECK(tr_msg_tag(msg) == cur_tag);
  CHECK(tr_ref_is_none(tr_msg_sender(msg)));

  if (outs == NULL || outs_cap < len) {
    free(outs);
    outs = malloc((len + 1) * sizeof *outs);
    CHECK(outs != NULL);
    outs_cap = len;
  }
  in_getter = true;
  check_scalars(msg, payload, len);
  check_vals(msg, payload, len);
  in_getter = false;
  /* Seq_cst: read by the fuzzing thread after tr_system_wait. */
  atomic_fetch_add(&handled, 1);
  return TR_OK;
}

/* At exit: how many inputs made the full round trip (the rest were rejected). */
static void shutdown_system(void) {
  tr_system_free(sys);
  fprintf(stderr, "fuzz_msg: %lu messages delivered and checked\n", atomic_load(&handled));
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  CHECK(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0);
  tr_system_config cfg = {.threads = 1};
  CHECK(tr_system_new(&cfg, &sys) == TR_OK);
  CHECK(tr_system_start(sys) == TR_OK);
  tr_actor_spec spec = {.name = "fuzz_msg", .behaviour = on_msg};
  CHECK(tr_spawn(tr_system_ctx(sys), &spec, NULL, &target) == TR_OK);
  atexit(shutdown_system);
  /* Getters on no message refuse it. */
  int64_t i;
  size_t len = 1, n;
  CHECK(tr_msg_get_int(NULL, &i) == TR_EINVAL);
  CHECK(tr_msg_get_vals(NULL, NULL, 0, &n) == TR_EINVAL);
  CHECK(!tr_msg_is_nil(NULL));
  CHECK(tr_msg_tag(NULL) == 0);
  CHECK(tr_msg_payload(NULL, &len) == NULL && len == 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  unsigned long before = atomic_load(&handled);
  cur_data = data;
  cur_size = size;
  cur_tag = (uint32_t)before * 2654435761u; /* a different tag per message */
  tr_status st = tr_send_msgpack(tr_system_ctx(sys), target, cur_tag, data, size);
  if (data == NULL) {
    CHECK(st == TR_EINVAL);
    return 0;
  }
  tr_status valid = tr_mp_check(data, size);
  CHECK(st == valid);
  if (st != TR_OK) {
    CHECK(st == TR_EMALFORMED && atomic_load(&handled) == before);
    return 0;
  }
  CHECK(tr_system_wait(sys) == TR_OK);
  CHECK(atomic_load(&handled) == before + 1);
  return 0;
}
