/*
 * test_send.c - the message helpers end to end.
 *
 * Every payload kind is sent twice, once from outside (the system's external
 * ctx) and once from inside a behaviour (a driver actor), to a receiver whose
 * behaviour reads it back with the getters, including the getters of the
 * wrong kind, which must fail with TR_EDECODE / TR_ERANGE and leave their
 * outputs untouched. A table of cases holds, for each kind, how to send it
 * and how to check it; the receiver finds the case by the message's tag.
 *
 * Checks run on worker threads, where a Criterion assertion would abort the
 * test with an unclear report, so a check only records the line of its first
 * failed expectation; the main thread asserts, naming the case and the line,
 * once tr_system_wait says everything was handled.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <msgpack.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <troupe.h>

#include "../common/tr_test.h"

TestSuite(send, .timeout = 60);

/* ------------------------------------------------------------ helpers */

/* In a check (a worker thread): remember the first failed expectation. */
#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond) && *line == 0)                                                                     \
      *line = __LINE__;                                                                            \
  } while (0)
#define CHECK_ST(expr, want) CHECK((expr) == (want))

/* ------------------------------------------------------------ payloads */

#define BIG_BIN   (100u * 1024u)
#define LONG_STR  70000u /* past 65535: a str32 */
#define MANY_VALS 1000u

static uint8_t big_bin[BIG_BIN];
static char long_str[LONG_STR];
static tr_val many_vals[MANY_VALS];

/* msgpack-c packed payloads: {"k": [1, -2, "x"], "b": true}, true, 1.5f,
 * int64-width 5, int8-width -1, [[1, 2], [3]], nil. */
typedef struct packed {
  uint8_t bytes[64];
  size_t len;
} packed;
static packed pk_map, pk_true, pk_float, pk_wide_pos, pk_narrow_neg, pk_nested, pk_nil;

static void pack_done(msgpack_sbuffer *sb, packed *out) {
  cr_assert_leq(sb->size, sizeof out->bytes);
  memcpy(out->bytes, sb->data, sb->size);
  out->len = sb->size;
  msgpack_sbuffer_clear(sb);
}

/* Fill the shared payloads; they are only read once the system runs. */
static void prepare(void) {
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < BIG_BIN; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    big_bin[i] = (uint8_t)x;
  }
  for (size_t i = 0; i < LONG_STR; i++)
    long_str[i] = (char)('a' + i % 26);
  for (size_t i = 0; i < MANY_VALS; i++)
    many_vals[i] = i % 2 ? tr_int(-(int64_t)i) : tr_uint(i * 1000003u);

  msgpack_sbuffer sb;
  msgpack_packer pk;
  msgpack_sbuffer_init(&sb);
  msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
  msgpack_pack_map(&pk, 2);
  msgpack_pack_str(&pk, 1);
  msgpack_pack_str_body(&pk, "k", 1);
  msgpack_pack_array(&pk, 3);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, -2);
  msgpack_pack_str(&pk, 1);
  msgpack_pack_str_body(&pk, "x", 1);
  msgpack_pack_str(&pk, 1);
  msgpack_pack_str_body(&pk, "b", 1);
  msgpack_pack_true(&pk);
  pack_done(&sb, &pk_map);
  msgpack_pack_true(&pk);
  pack_done(&sb, &pk_true);
  msgpack_pack_float(&pk, 1.5f);
  pack_done(&sb, &pk_float);
  msgpack_pack_fix_int64(&pk, 5);
  pack_done(&sb, &pk_wide_pos);
  msgpack_pack_fix_int8(&pk, -1);
  pack_done(&sb, &pk_narrow_neg);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_array(&pk, 2);
  msgpack_pack_int(&pk, 1);
  msgpack_pack_int(&pk, 2);
  msgpack_pack_array(&pk, 1);
  msgpack_pack_int(&pk, 3);
  pack_done(&sb, &pk_nested);
  msgpack_pack_nil(&pk);
  pack_done(&sb, &pk_nil);
  msgpack_sbuffer_destroy(&sb);
  cr_assert_eq(pk_float.len, 5, "msgpack-c did not pack a float32");
  cr_assert_eq(pk_wide_pos.bytes[0], 0xd3, "msgpack-c did not pack an int64");
}

/* ------------------------------------------------------------ wrong-kind reads */

/* Every scalar getter except the ones named must refuse the message with
 * TR_EDECODE and leave its output as it was. */
enum { G_INT = 1, G_UINT = 2, G_DOUBLE = 4, G_BOOL = 8, G_STR = 16, G_BIN = 32, G_VALS = 64 };

static void check_other_getters(const tr_msg *msg, unsigned allowed, int *line) {
  int64_t i = 11;
  uint64_t u = 12;
  double d = 13.0;
  bool b = true;
  const char *s = "untouched";
  const void *p = "untouched";
  size_t len = 14, n = 15;
  tr_val v[2];

  if (!(allowed & G_INT))
    CHECK_ST(tr_msg_get_int(msg, &i), TR_EDECODE);
  if (!(allowed & G_UINT))
    CHECK_ST(tr_msg_get_uint(msg, &u), TR_EDECODE);
  if (!(allowed & G_DOUBLE))
    CHECK_ST(tr_msg_get_double(msg, &d), TR_EDECODE);
  if (!(allowed & G_BOOL))
    CHECK_ST(tr_msg_get_bool(msg, &b), TR_EDECODE);
  if (!(allowed & G_STR))
    CHECK_ST(tr_msg_get_str(msg, &s, &len), TR_EDECODE);
  if (!(allowed & G_BIN))
    CHECK_ST(tr_msg_get_bin(msg, &p, &len), TR_EDECODE);
  if (!(allowed & G_VALS))
    CHECK_ST(tr_msg_get_vals(msg, v, 2, &n), TR_EDECODE);
  CHECK(i == 11 && u == 12 && d == 13.0 && b && len == 14);
  CHECK(strcmp(s, "untouched") == 0 && strcmp(p, "untouched") == 0);
  /* NULL outputs are refused before anything is decoded. */
  CHECK_ST(tr_msg_get_int(msg, NULL), TR_EINVAL);
  CHECK_ST(tr_msg_get_str(msg, NULL, &len), TR_EINVAL);
  CHECK_ST(tr_msg_get_bin(msg, &p, NULL), TR_EINVAL);
}

/* The payload is exactly `len` bytes that tr_mp_check accepts. */
static void check_payload(const tr_msg *msg, const void *want, size_t want_len, int *line) {
  size_t len = 0;
  const void *p = tr_msg_payload(msg, &len);
  CHECK(p != NULL && len >= 1);
  CHECK_ST(tr_mp_check(p, len), TR_OK);
  if (want != NULL)
    CHECK(len == want_len && memcmp(p, want, len) == 0);
}

/* ------------------------------------------------------------ the cases */

typedef struct send_case {
  const char *name;
  tr_status (*send)(tr_ctx *ctx, tr_ref to, uint32_t tag);
  void (*check)(const tr_msg *msg, int *line);
} send_case;

/* nil */
static tr_status send_nil(tr_ctx *c, tr_ref to, uint32_t tag) { return tr_send(c, to, tag); }
static void check_nil(const tr_msg *msg, int *line) {
  CHECK(tr_msg_is_nil(msg));
  check_payload(msg, "\xc0", 1, line);
  check_other_getters(msg, 0, line);
}

/* signed integers */
static void check_int(const tr_msg *msg, int64_t want, int *line) {
  int64_t i = 0;
  uint64_t u = 99;
  CHECK_ST(tr_msg_get_int(msg, &i), TR_OK);
  CHECK(i == want);
  if (want < 0) {
    CHECK_ST(tr_msg_get_uint(msg, &u), TR_ERANGE);
    CHECK(u == 99);
  } else { /* non-negative: decoded as an unsigned, readable both ways */
    CHECK_ST(tr_msg_get_uint(msg, &u), TR_OK);
    CHECK(u == (uint64_t)want);
  }
  CHECK(!tr_msg_is_nil(msg));
  check_payload(msg, NULL, 0, line);
  check_other_getters(msg, G_INT | G_UINT, line);
}
static tr_status send_int_neg(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_int(c, to, tag, -5);
}
static void check_int_neg(const tr_msg *msg, int *line) { check_int(msg, -5, line); }
static tr_status send_int_min(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_int(c, to, tag, INT64_MIN);
}
static void check_int_min(const tr_msg *msg, int *line) { check_int(msg, INT64_MIN, line); }
static tr_status send_int_pos(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_int(c, to, tag, 300);
}
static void check_int_pos(const tr_msg *msg, int *line) { check_int(msg, 300, line); }
static tr_status send_int_max(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_int(c, to, tag, INT64_MAX);
}
static void check_int_max(const tr_msg *msg, int *line) { check_int(msg, INT64_MAX, line); }

/* unsigned integers */
static void check_uint(const tr_msg *msg, uint64_t want, int *line) {
  uint64_t u = 0;
  int64_t i = 99;
  CHECK_ST(tr_msg_get_uint(msg, &u), TR_OK);
  CHECK(u == want);
  if (want > INT64_MAX) {
    CHECK_ST(tr_msg_get_int(msg, &i), TR_ERANGE);
    CHECK(i == 99);
  } else {
    CHECK_ST(tr_msg_get_int(msg, &i), TR_OK);
    CHECK(i == (int64_t)want);
  }
  check_payload(msg, NULL, 0, line);
  check_other_getters(msg, G_INT | G_UINT, line);
}
static tr_status send_uint_zero(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_uint(c, to, tag, 0);
}
static void check_uint_zero(const tr_msg *msg, int *line) {
  check_uint(msg, 0, line);
  check_payload(msg, "\x00", 1, line);
}
static tr_status send_uint_2_63(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_uint(c, to, tag, (uint64_t)1 << 63);
}
static void check_uint_2_63(const tr_msg *msg, int *line) {
  check_uint(msg, (uint64_t)1 << 63, line);
}
static tr_status send_uint_max(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_uint(c, to, tag, UINT64_MAX);
}
static void check_uint_max(const tr_msg *msg, int *line) {
  check_uint(msg, UINT64_MAX, line);
  check_payload(msg, "\xcf\xff\xff\xff\xff\xff\xff\xff\xff", 9, line);
}

/* doubles */
static void check_double_common(const tr_msg *msg, int *line) {
  check_payload(msg, NULL, 0, line);
  check_other_getters(msg, G_DOUBLE, line);
}
static tr_status send_double(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_double(c, to, tag, -1234.5625);
}
static void check_double(const tr_msg *msg, int *line) {
  double d = 0;
  CHECK_ST(tr_msg_get_double(msg, &d), TR_OK);
  CHECK(d == -1234.5625);
  check_double_common(msg, line);
}
static tr_status send_double_neg_zero(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_double(c, to, tag, -0.0);
}
static void check_double_neg_zero(const tr_msg *msg, int *line) {
  double d = 1;
  CHECK_ST(tr_msg_get_double(msg, &d), TR_OK);
  CHECK(d == 0.0 && signbit(d));
  check_double_common(msg, line);
}
static tr_status send_double_inf(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_double(c, to, tag, -INFINITY);
}
static void check_double_inf(const tr_msg *msg, int *line) {
  double d = 0;
  CHECK_ST(tr_msg_get_double(msg, &d), TR_OK);
  CHECK(isinf(d) && d < 0);
  check_double_common(msg, line);
}
static tr_status send_double_nan(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_double(c, to, tag, NAN);
}
static void check_double_nan(const tr_msg *msg, int *line) {
  double d = 0;
  CHECK_ST(tr_msg_get_double(msg, &d), TR_OK);
  CHECK(isnan(d));
  check_double_common(msg, line);
}

/* strings */
static void check_str(const tr_msg *msg, const char *want, size_t want_len, int *line) {
  const char *s = NULL;
  size_t len = 1234;
  CHECK_ST(tr_msg_get_str(msg, &s, &len), TR_OK);
  CHECK(len == want_len);
  CHECK(len == 0 || (s != NULL && memcmp(s, want, len) == 0));
  check_payload(msg, NULL, 0, line);
  check_other_getters(msg, G_STR, line);
}
static tr_status send_str(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_str(c, to, tag, "hello, troupe", 13);
}
static void check_str_hello(const tr_msg *msg, int *line) {
  check_str(msg, "hello, troupe", 13, line);
}
static tr_status send_str_empty(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_str(c, to, tag, "", 0);
}
static void check_str_empty(const tr_msg *msg, int *line) {
  check_str(msg, "", 0, line);
  check_payload(msg, "\xa0", 1, line);
}
static tr_status send_str_nul(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_str(c, to, tag, "a\0b", 3);
}
static void check_str_nul(const tr_msg *msg, int *line) { check_str(msg, "a\0b", 3, line); }
static tr_status send_str_long(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_str(c, to, tag, long_str, LONG_STR);
}
static void check_str_long(const tr_msg *msg, int *line) {
  check_str(msg, long_str, LONG_STR, line);
}
static tr_status send_str_val(tr_ctx *c, tr_ref to, uint32_t tag) {
  /* tr_str() takes a NUL-terminated string; sent as one value via msgpack. */
  uint8_t buf[16];
  size_t len = 0;
  tr_val v = tr_str("cstr");
  tr_status st = tr_mp_encode_vals(&v, 1, false, buf, sizeof buf, &len);
  return st != TR_OK ? st : tr_send_msgpack(c, to, tag, buf, len);
}
static void check_str_val(const tr_msg *msg, int *line) { check_str(msg, "cstr", 4, line); }

/* binaries */
static void check_bin(const tr_msg *msg, const void *want, size_t want_len, int *line) {
  const void *p = NULL;
  size_t len = 1234;
  CHECK_ST(tr_msg_get_bin(msg, &p, &len), TR_OK);
  CHECK(len == want_len);
  CHECK(len == 0 || (p != NULL && memcmp(p, want, len) == 0));
  check_payload(msg, NULL, 0, line);
  check_other_getters(msg, G_BIN, line);
}
static const uint8_t small_bin[5] = {0x00, 0xff, 0xc1, 0x80, 0x7f};
static tr_status send_bin_small(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_bin(c, to, tag, small_bin, sizeof small_bin);
}
static void check_bin_small(const tr_msg *msg, int *line) {
  check_bin(msg, small_bin, sizeof small_bin, line);
  check_payload(msg, "\xc4\x05\x00\xff\xc1\x80\x7f", 7, line);
}
static tr_status send_bin_empty(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_bin(c, to, tag, small_bin, 0);
}
static void check_bin_empty(const tr_msg *msg, int *line) { check_bin(msg, small_bin, 0, line); }
static tr_status send_bin_big(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_bin(c, to, tag, big_bin, BIG_BIN);
}
static void check_bin_big(const tr_msg *msg, int *line) {
  check_bin(msg, big_bin, BIG_BIN, line);
  size_t len = 0;
  tr_msg_payload(msg, &len);
  CHECK(len == BIG_BIN + 5); /* bin32: 0xc6 + 4 length bytes */
}

/* arrays of scalars */
static tr_status send_vals(tr_ctx *c, tr_ref to, uint32_t tag) {
  tr_val v[8] = {tr_nil(),       tr_bool(true),    tr_int(-7),          tr_uint(7),
                 tr_double(1.5), tr_strn("ab", 2), tr_bin("\1\2\3", 3), tr_int(9)};
  return tr_send_vals(c, to, tag, v, 8);
}
static void check_vals(const tr_msg *msg, int *line) {
  tr_val v[8];
  size_t n = 0;
  CHECK_ST(tr_msg_get_vals(msg, v, 8, &n), TR_OK);
  CHECK(n == 8);
  if (n != 8)
    return;
  CHECK(v[0].type == TR_VAL_NIL);
  CHECK(v[1].type == TR_VAL_BOOL && v[1].as.b);
  CHECK(v[2].type == TR_VAL_INT && v[2].as.i == -7);
  CHECK(v[3].type == TR_VAL_UINT && v[3].as.u == 7);
  CHECK(v[4].type == TR_VAL_DOUBLE && v[4].as.d == 1.5);
  CHECK(v[5].type == TR_VAL_STR && v[5].as.bytes.len == 2 &&
        memcmp(v[5].as.bytes.ptr, "ab", 2) == 0);
  CHECK(v[6].type == TR_VAL_BIN && v[6].as.bytes.len == 3 &&
        memcmp(v[6].as.bytes.ptr, "\1\2\3", 3) == 0);
  /* Sent as a (non-negative) int, it decodes as an unsigned. */
  CHECK(v[7].type == TR_VAL_UINT && v[7].as.u == 9);
  int64_t i = 0;
  uint64_t u = 0;
  CHECK_ST(tr_val_get_int(&v[7], &i), TR_OK);
  CHECK(i == 9);
  CHECK_ST(tr_val_get_int(&v[2], &i), TR_OK);
  CHECK(i == -7);
  CHECK_ST(tr_val_get_uint(&v[2], &u), TR_ERANGE);
  CHECK_ST(tr_val_get_int(&v[4], &i), TR_EDECODE);
  CHECK_ST(tr_val_get_uint(&v[5], &u), TR_EDECODE);
  /* Too small an array: TR_ENOSPC, the length to retry with, and the
   * array left untouched. */
  tr_val small[3] = {tr_uint(41), tr_uint(42), tr_uint(43)};
  n = 0;
  CHECK_ST(tr_msg_get_vals(msg, small, 3, &n), TR_ENOSPC);
  CHECK(n == 8);
  CHECK(small[0].type == TR_VAL_UINT && small[0].as.u == 41 && small[2].as.u == 43);
  n = 0;
  CHECK_ST(tr_msg_get_vals(msg, NULL, 0, &n), TR_ENOSPC); /* asking for the length */
  CHECK(n == 8);
  check_payload(msg, NULL, 0, line);
  check_other_getters(msg, G_VALS, line);
}
static tr_status send_vals_empty(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_vals(c, to, tag, NULL, 0);
}
static void check_vals_empty(const tr_msg *msg, int *line) {
  tr_val v[1];
  size_t n = 99;
  CHECK_ST(tr_msg_get_vals(msg, v, 1, &n), TR_OK);
  CHECK(n == 0);
  check_payload(msg, "\x90", 1, line);
  check_other_getters(msg, G_VALS, line);
}
static tr_status send_vals_many(tr_ctx *c, tr_ref to, uint32_t tag) {
  return tr_send_vals(c, to, tag, many_vals, MANY_VALS);
}
static void check_vals_many(const tr_msg *msg, int *line) {
  tr_val v[MANY_VALS];
  size_t n = 0;
  CHECK_ST(tr_msg_get_vals(msg, v, MANY_VALS, &n), TR_OK);
  CHECK(n == MANY_VALS);
  for (size_t i = 0; i < n && i < MANY_VALS; i++) {
    int64_t got = 0;
    CHECK_ST(tr_val_get_int(&v[i], &got), TR_OK);
    CHECK(i % 2 ? got == -(int64_t)i : got == (int64_t)(i * 1000003u));
  }
}
static tr_status send_vals_big_bin(tr_ctx *c, tr_ref to, uint32_t tag) {
  tr_val v[2] = {tr_bin(big_bin, BIG_BIN), tr_strn(long_str, LONG_STR)};
  return tr_send_vals(c, to, tag, v, 2);
}
static void check_vals_big_bin(const tr_msg *msg, int *line) {
  tr_val v[2];
  size_t n = 0;
  CHECK_ST(tr_msg_get_vals(msg, v, 2, &n), TR_OK);
  CHECK(n == 2);
  CHECK(v[0].type == TR_VAL_BIN && v[0].as.bytes.len == BIG_BIN &&
        memcmp(v[0].as.bytes.ptr, big_bin, BIG_BIN) == 0);
  CHECK(v[1].type == TR_VAL_STR && v[1].as.bytes.len == LONG_STR &&
        memcmp(v[1].as.bytes.ptr, long_str, LONG_STR) == 0);
}

/* raw msgpack from msgpack-c's packer */
static tr_status send_pk(tr_ctx *c, tr_ref to, uint32_t tag, const packed *p) {
  return tr_send_msgpack(c, to, tag, p->bytes, p->len);
}
static tr_status send_pk_map(tr_ctx *c, tr_ref to, uint32_t tag) {
  return send_pk(c, to, tag, &pk_map);
}
static void check_pk_map(const tr_msg *msg, int *line) {
  check_payload(msg, pk_map.bytes, pk_map.len, line);
  /* A map is not an array of scalars. */
  check_other_getters(msg, 0, line);
  /* The bytes decode with msgpack-c as what was packed. */
  size_t len = 0;
  const void *p = tr_msg_payload(msg, &len);
  msgpack_unpacked u;
  msgpack_unpacked_init(&u);
  size_t off = 0;
  CHECK(msgpack_unpack_next(&u, p, len, &off) == MSGPACK_UNPACK_SUCCESS && off == len);
  CHECK(u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 2);
  if (u.data.type == MSGPACK_OBJECT_MAP && u.data.via.map.size == 2) {
    msgpack_object_kv *kv = u.data.via.map.ptr;
    CHECK(kv[0].val.type == MSGPACK_OBJECT_ARRAY && kv[0].val.via.array.size == 3);
    CHECK(kv[1].val.type == MSGPACK_OBJECT_BOOLEAN && kv[1].val.via.boolean);
  }
  msgpack_unpacked_destroy(&u);
}
static tr_status send_pk_true(tr_ctx *c, tr_ref to, uint32_t tag) {
  return send_pk(c, to, tag, &pk_true);
}
static void check_pk_true(const tr_msg *msg, int *line) {
  bool b = false;
  CHECK_ST(tr_msg_get_bool(msg, &b), TR_OK);
  CHECK(b);
  check_payload(msg, "\xc3", 1, line);
  check_other_getters(msg, G_BOOL, line);
}
static tr_status send_pk_float(tr_ctx *c, tr_ref to, uint32_t tag) {
  return send_pk(c, to, tag, &pk_float);
}
static void check_pk_float(const tr_msg *msg, int *line) {
  double d = 0;
  CHECK_ST(tr_msg_get_double(msg, &d), TR_OK); /* float32 on the wire */
  CHECK(d == 1.5);
  check_payload(msg, pk_float.bytes, pk_float.len, line);
  check_other_getters(msg, G_DOUBLE, line);
}
static tr_status send_pk_wide_pos(tr_ctx *c, tr_ref to, uint32_t tag) {
  return send_pk(c, to, tag, &pk_wide_pos);
}
static void check_pk_wide_pos(const tr_msg *msg, int *line) {
  /* Packed as a signed int64: still a non-negative integer. */
  check_uint(msg, 5, line);
  check_payload(msg, pk_wide_pos.bytes, pk_wide_pos.len, line);
}
static tr_status send_pk_narrow_neg(tr_ctx *c, tr_ref to, uint32_t tag) {
  return send_pk(c, to, tag, &pk_narrow_neg);
}
static void check_pk_narrow_neg(const tr_msg *msg, int *line) { check_int(msg, -1, line); }
static tr_status send_pk_nested(tr_ctx *c, tr_ref to, uint32_t tag) {
  return send_pk(c, to, tag, &pk_nested);
}
static void check_pk_nested(const tr_msg *msg, int *line) {
  /* An array holding arrays is not an array of scalars, and that wins over
   * a too-small output array. */
  check_payload(msg, pk_nested.bytes, pk_nested.len, line);
  check_other_getters(msg, 0, line);
  tr_val v[1];
  size_t n = 0;
  CHECK_ST(tr_msg_get_vals(msg, v, 1, &n), TR_EDECODE);
  CHECK_ST(tr_msg_get_vals(msg, NULL, 0, &n), TR_EDECODE);
}
static tr_status send_pk_nil(tr_ctx *c, tr_ref to, uint32_t tag) {
  return send_pk(c, to, tag, &pk_nil);
}
static void check_pk_nil(const tr_msg *msg, int *line) { check_nil(msg, line); }

#define CASE(name)                                                                                 \
  { #name, send_##name, check_##name }
static const send_case cases[] = {
    {"nil", send_nil, check_nil},
    CASE(int_neg),
    CASE(int_min),
    CASE(int_pos),
    CASE(int_max),
    CASE(uint_zero),
    CASE(uint_2_63),
    CASE(uint_max),
    CASE(double),
    CASE(double_neg_zero),
    CASE(double_inf),
    CASE(double_nan),
    {"str", send_str, check_str_hello},
    CASE(str_empty),
    CASE(str_nul),
    CASE(str_long),
    CASE(str_val),
    CASE(bin_small),
    CASE(bin_empty),
    CASE(bin_big),
    CASE(vals),
    CASE(vals_empty),
    CASE(vals_many),
    CASE(vals_big_bin),
    CASE(pk_map),
    CASE(pk_true),
    CASE(pk_float),
    CASE(pk_wide_pos),
    CASE(pk_narrow_neg),
    CASE(pk_nested),
    CASE(pk_nil),
};
#define NCASES   (sizeof cases / sizeof cases[0])
#define TAG_BASE 1000u

/* ------------------------------------------------------------ receiver, driver */

enum { FROM_OUTSIDE, FROM_INSIDE };

static _Atomic int got[NCASES][2];
static _Atomic int fail_line[NCASES][2];
static _Atomic int send_status[NCASES]; /* what the driver's sends returned */
static _Atomic int stray;               /* messages with an unknown tag or sender */
static _Atomic uint64_t driver_id;

static tr_status receiver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  uint32_t tag = tr_msg_tag(msg);
  tr_ref from = tr_msg_sender(msg);
  int origin = tr_ref_is_none(from) ? FROM_OUTSIDE : FROM_INSIDE;
  if (tag < TAG_BASE || tag >= TAG_BASE + NCASES ||
      (origin == FROM_INSIDE && from.id != atomic_load(&driver_id))) {
    atomic_fetch_add(&stray, 1);
    return TR_OK;
  }
  size_t c = tag - TAG_BASE;
  int line = 0;
  cases[c].check(msg, &line);
  atomic_fetch_add(&got[c][origin], 1);
  if (line != 0)
    atomic_store(&fail_line[c][origin], line);
  return TR_OK;
}

typedef struct driver {
  tr_ref to;
} driver;

static tr_status driver_init(void *state, const void *arg) {
  ((driver *)state)->to = *(const tr_ref *)arg;
  return TR_OK;
}

static tr_status driver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)msg;
  driver *d = state;
  for (size_t c = 0; c < NCASES; c++)
    atomic_store(&send_status[c], cases[c].send(ctx, d->to, TAG_BASE + (uint32_t)c));
  return TR_OK;
}

static void reset(void) {
  for (size_t c = 0; c < NCASES; c++) {
    atomic_store(&got[c][0], 0);
    atomic_store(&got[c][1], 0);
    atomic_store(&fail_line[c][0], 0);
    atomic_store(&fail_line[c][1], 0);
    atomic_store(&send_status[c], -1);
  }
  atomic_store(&stray, 0);
  atomic_store(&driver_id, 0);
}

static const tr_actor_spec receiver_spec = {.name = "receiver", .behaviour = receiver_behaviour};
static const tr_actor_spec driver_spec = {.name = "driver",
                                          .behaviour = driver_behaviour,
                                          .state_size = sizeof(driver),
                                          .init = driver_init};

static tr_system *new_system(unsigned threads, size_t max_msg_size) {
  tr_system_config cfg = {.threads = threads, .max_msg_size = max_msg_size};
  tr_system *sys = NULL;
  OK(tr_system_new(&cfg, &sys));
  return sys;
}

static void assert_cases(int origin) {
  cr_assert_eq(atomic_load(&stray), 0, "%d stray messages", atomic_load(&stray));
  for (size_t c = 0; c < NCASES; c++) {
    cr_assert_eq(atomic_load(&got[c][origin]), 1, "case %s: received %d times", cases[c].name,
                 atomic_load(&got[c][origin]));
    cr_assert_eq(atomic_load(&fail_line[c][origin]), 0, "case %s: check failed at test_send.c:%d",
                 cases[c].name, atomic_load(&fail_line[c][origin]));
    cr_assert_eq(atomic_load(&got[c][!origin]), 0);
  }
}

/* ------------------------------------------------------------ tests */

Test(send, every_kind_from_outside) {
  reset();
  prepare();
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref rx;
  OK(tr_spawn(ctx, &receiver_spec, NULL, &rx));
  OK(tr_system_start(sys));
  for (size_t c = 0; c < NCASES; c++) {
    tr_status st = cases[c].send(ctx, rx, TAG_BASE + (uint32_t)c);
    cr_assert_eq(st, TR_OK, "case %s: send gave %s", cases[c].name, tr_status_name(st));
  }
  WAIT(sys);
  assert_cases(FROM_OUTSIDE);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, NCASES);
  cr_assert_eq(s.handled, NCASES);
  tr_system_free(sys);
}

Test(send, every_kind_from_a_behaviour) {
  reset();
  prepare();
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref rx, drv;
  OK(tr_spawn(ctx, &receiver_spec, NULL, &rx));
  OK(tr_spawn(ctx, &driver_spec, &rx, &drv));
  atomic_store(&driver_id, drv.id);
  OK(tr_system_start(sys));
  OK(tr_send(ctx, drv, 1));
  WAIT(sys);
  for (size_t c = 0; c < NCASES; c++)
    cr_assert_eq(atomic_load(&send_status[c]), TR_OK, "case %s: send from a behaviour gave %s",
                 cases[c].name, tr_status_name(atomic_load(&send_status[c])));
  assert_cases(FROM_INSIDE);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, NCASES + 1);
  cr_assert_eq(s.handled, NCASES + 1);
  tr_system_free(sys);
}

/* Both at once, from one worker, to exercise the pooled and heap message
 * memory side by side. */
Test(send, every_kind_from_both_one_worker) {
  reset();
  prepare();
  tr_system *sys = new_system(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_ref rx, drv;
  OK(tr_spawn(ctx, &receiver_spec, NULL, &rx));
  OK(tr_spawn(ctx, &driver_spec, &rx, &drv));
  atomic_store(&driver_id, drv.id);
  OK(tr_send(ctx, drv, 1));
  for (size_t c = 0; c < NCASES; c++)
    OK(cases[c].send(ctx, rx, TAG_BASE + (uint32_t)c));
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(atomic_load(&stray), 0);
  for (size_t c = 0; c < NCASES; c++) {
    for (int o = 0; o < 2; o++) {
      cr_assert_eq(atomic_load(&got[c][o]), 1, "case %s from %s: received %d times", cases[c].name,
                   o ? "inside" : "outside", atomic_load(&got[c][o]));
      cr_assert_eq(atomic_load(&fail_line[c][o]), 0, "case %s from %s: check failed at line %d",
                   cases[c].name, o ? "inside" : "outside", atomic_load(&fail_line[c][o]));
    }
  }
  tr_system_free(sys);
}

/* The payload is copied at send time: the caller may reuse its buffer. */
static _Atomic int copy_line, copy_got;
static uint8_t copy_buf[4096];

static tr_status copy_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  int l = 0, *line = &l;
  const void *p = NULL;
  size_t len = 0;
  CHECK_ST(tr_msg_get_bin(msg, &p, &len), TR_OK);
  CHECK(len == sizeof copy_buf);
  for (size_t i = 0; i < len && p != NULL; i++)
    CHECK(((const uint8_t *)p)[i] == (uint8_t)(i * 7 + tr_msg_tag(msg)));
  atomic_fetch_add(&copy_got, 1);
  if (l != 0)
    atomic_store(&copy_line, l);
  return TR_OK;
}

Test(send, payload_is_copied) {
  atomic_store(&copy_line, 0);
  atomic_store(&copy_got, 0);
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "copy", .behaviour = copy_behaviour};
  tr_ref r;
  OK(tr_spawn(ctx, &spec, NULL, &r));
  /* Before start, so nothing can have been read yet when we overwrite. */
  for (uint32_t tag = 0; tag < 3; tag++) {
    for (size_t i = 0; i < sizeof copy_buf; i++)
      copy_buf[i] = (uint8_t)(i * 7 + tag);
    OK(tr_send_bin(ctx, r, tag, copy_buf, sizeof copy_buf));
  }
  memset(copy_buf, 0xEE, sizeof copy_buf);
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(atomic_load(&copy_got), 3);
  cr_assert_eq(atomic_load(&copy_line), 0, "check failed at line %d", atomic_load(&copy_line));
  tr_system_free(sys);
}

/* Tags go through unchanged, from 0 to the last one below the runtime's
 * reserved range; a reserved tag is refused (TR_EINVAL) by every send. */
static _Atomic uint32_t tag_seen[4];
static _Atomic unsigned tag_n;

static tr_status tag_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  unsigned i = atomic_fetch_add(&tag_n, 1);
  if (i < 4)
    atomic_store(&tag_seen[i], tr_msg_tag(msg));
  return TR_OK;
}

Test(send, tags_round_trip) {
  atomic_store(&tag_n, 0);
  tr_system *sys = new_system(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "tags", .behaviour = tag_behaviour};
  tr_ref r;
  OK(tr_spawn(ctx, &spec, NULL, &r));
  const uint32_t tags[4] = {0, TR_TAG_RESERVED - 1, 1, 0x80000000u};
  for (unsigned i = 0; i < 4; i++)
    OK(tr_send_uint(ctx, r, tags[i], i));
  const uint32_t reserved[3] = {TR_TAG_RESERVED, TR_TAG_DOWN, UINT32_MAX};
  for (unsigned i = 0; i < 3; i++) {
    EXPECT_ST(tr_send_uint(ctx, r, reserved[i], i), TR_EINVAL);
    EXPECT_ST(tr_send(ctx, r, reserved[i]), TR_EINVAL);
    EXPECT_ST(tr_send_msgpack(ctx, r, reserved[i], "\xc0", 1), TR_EINVAL);
    EXPECT_ST(tr_send_after(ctx, r, reserved[i], 1, 0, NULL, 0, NULL), TR_EINVAL);
  }
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_assert_eq(atomic_load(&tag_n), 4);
  for (unsigned i = 0; i < 4; i++)
    cr_assert_eq(atomic_load(&tag_seen[i]), tags[i], "tag %u came back as %u", tags[i],
                 atomic_load(&tag_seen[i]));
  tr_system_free(sys);
}

/* ------------------------------------------------------------ refused sends */

/* Bytes that are not exactly one well-formed msgpack value. */
typedef struct bad_bytes {
  const char *name;
  const uint8_t *bytes;
  size_t len;
} bad_bytes;

static const uint8_t b_reserved[] = {0xc1};
static const uint8_t b_trunc_u16[] = {0xcd, 0x01};
static const uint8_t b_two_values[] = {0x01, 0x02};
static const uint8_t b_short_array[] = {0x92, 0x01};
static const uint8_t b_huge_array[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
static const uint8_t b_short_str[] = {0xa5, 'a', 'b'};
static const uint8_t b_short_bin[] = {0xc4, 0x05, 1, 2};
static const uint8_t b_short_map[] = {0x81, 0x01};
static const uint8_t b_trunc_f64[] = {0xcb, 0x40, 0x09};
static const uint8_t b_nil_then_junk[] = {0xc0, 0xc1};

#define BAD(x)                                                                                     \
  { #x, b_##x, sizeof b_##x }
static const bad_bytes bad[] = {
    {"empty", b_reserved, 0}, BAD(reserved),   BAD(trunc_u16),     BAD(two_values),
    BAD(short_array),         BAD(huge_array), BAD(short_str),     BAD(short_bin),
    BAD(short_map),           BAD(trunc_f64),  BAD(nil_then_junk),
};
#define NBAD (sizeof bad / sizeof bad[0])

static _Atomic int bad_status[NBAD];
static _Atomic int sink_got;

static tr_status sink_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  (void)msg;
  atomic_fetch_add(&sink_got, 1);
  return TR_OK;
}

static tr_status bad_driver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)msg;
  driver *d = state;
  for (size_t i = 0; i < NBAD; i++)
    atomic_store(&bad_status[i], tr_send_msgpack(ctx, d->to, 7, bad[i].bytes, bad[i].len));
  return TR_OK;
}

Test(send, malformed_msgpack_is_refused) {
  atomic_store(&sink_got, 0);
  tr_system *sys = new_system(2, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec sink = {.name = "sink", .behaviour = sink_behaviour};
  tr_actor_spec drv_spec = {.name = "bad-driver",
                            .behaviour = bad_driver_behaviour,
                            .state_size = sizeof(driver),
                            .init = driver_init};
  tr_ref r, drv;
  OK(tr_spawn(ctx, &sink, NULL, &r));
  OK(tr_spawn(ctx, &drv_spec, &r, &drv));
  OK(tr_system_start(sys));
  for (size_t i = 0; i < NBAD; i++) {
    cr_assert_eq(tr_mp_check(bad[i].bytes, bad[i].len), TR_EMALFORMED, "%s", bad[i].name);
    tr_status st = tr_send_msgpack(ctx, r, 7, bad[i].bytes, bad[i].len);
    cr_assert_eq(st, TR_EMALFORMED, "%s from outside: %s", bad[i].name, tr_status_name(st));
    atomic_store(&bad_status[i], -1);
  }
  EXPECT_ST(tr_send_msgpack(ctx, r, 7, NULL, 1), TR_EINVAL);
  OK(tr_send(ctx, drv, 1));
  WAIT(sys);
  for (size_t i = 0; i < NBAD; i++)
    cr_assert_eq(atomic_load(&bad_status[i]), TR_EMALFORMED, "%s from a behaviour: %s", bad[i].name,
                 tr_status_name(atomic_load(&bad_status[i])));
  /* Nothing was sent: only the driver's trigger message. */
  cr_assert_eq(atomic_load(&sink_got), 0);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, 1);
  for (unsigned d = 0; d < TR_DEAD_REASON_COUNT; d++)
    cr_assert_eq(s.dead_letters[d], 0, "a refused send was counted as a dead letter");
  tr_actor_stats as;
  OK(tr_actor_stats_get(ctx, r, &as));
  cr_assert_eq(as.received, 0);
  /* A well-formed one still goes through. */
  OK(tr_send_msgpack(ctx, r, 7, "\x92\x01\xa1x", 4));
  WAIT(sys);
  cr_assert_eq(atomic_load(&sink_got), 1);
  tr_system_free(sys);
}

/* max_msg_size 1024: encoded sizes at and just over the limit. A bin or str
 * of 256..65535 bytes has a 3-byte header; an array of up to 15 a 1-byte one. */
#define LIMIT 1024u

static uint8_t limit_buf[LIMIT + 16];
static _Atomic int big_status[4];

static void try_over_limit(tr_ctx *ctx, tr_ref to, _Atomic int *out) {
  tr_val over[1] = {tr_bin(limit_buf, LIMIT - 3)}; /* 1 + 3 + 1021 = 1025 */
  atomic_store(&out[0], tr_send_bin(ctx, to, 1, limit_buf, LIMIT - 2));
  atomic_store(&out[1], tr_send_str(ctx, to, 1, (const char *)limit_buf, LIMIT - 2));
  atomic_store(&out[2], tr_send_vals(ctx, to, 1, over, 1));
  /* A valid msgpack bin16 of 1022 bytes: 1025 bytes in all. */
  uint8_t raw[LIMIT + 1] = {0};
  raw[0] = 0xc5;
  raw[1] = (uint8_t)((LIMIT - 2) >> 8);
  raw[2] = (uint8_t)(LIMIT - 2);
  atomic_store(&out[3], tr_send_msgpack(ctx, to, 1, raw, sizeof raw));
}

static tr_status big_driver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)msg;
  try_over_limit(ctx, ((driver *)state)->to, big_status);
  return TR_OK;
}

Test(send, payload_over_max_msg_size_is_refused) {
  atomic_store(&sink_got, 0);
  tr_system *sys = new_system(2, LIMIT);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec sink = {.name = "sink", .behaviour = sink_behaviour};
  tr_actor_spec drv_spec = {.name = "big-driver",
                            .behaviour = big_driver_behaviour,
                            .state_size = sizeof(driver),
                            .init = driver_init};
  tr_ref r, drv;
  OK(tr_spawn(ctx, &sink, NULL, &r));
  OK(tr_spawn(ctx, &drv_spec, &r, &drv));
  OK(tr_system_start(sys));

  _Atomic int outside[4];
  try_over_limit(ctx, r, outside);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(atomic_load(&outside[i]), TR_ETOOBIG, "oversize send %d from outside: %s", i,
                 tr_status_name(atomic_load(&outside[i])));
  OK(tr_send(ctx, drv, 1));
  WAIT(sys);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(atomic_load(&big_status[i]), TR_ETOOBIG, "oversize send %d from a behaviour: %s",
                 i, tr_status_name(atomic_load(&big_status[i])));
  cr_assert_eq(atomic_load(&sink_got), 0);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, 1);
  for (unsigned d = 0; d < TR_DEAD_REASON_COUNT; d++)
    cr_assert_eq(s.dead_letters[d], 0);

  /* Exactly at the limit: accepted. */
  tr_val at[1] = {tr_bin(limit_buf, LIMIT - 4)}; /* 1 + 3 + 1020 = 1024 */
  OK(tr_send_bin(ctx, r, 1, limit_buf, LIMIT - 3));
  OK(tr_send_str(ctx, r, 1, (const char *)limit_buf, LIMIT - 3));
  OK(tr_send_vals(ctx, r, 1, at, 1));
  WAIT(sys);
  cr_assert_eq(atomic_load(&sink_got), 3);
  tr_system_free(sys);
}

Test(send, default_limit_is_16_mib) {
  const size_t limit = (size_t)16 << 20;
  uint8_t *buf = calloc(1, limit);
  cr_assert_not_null(buf);
  atomic_store(&sink_got, 0);
  tr_system *sys = new_system(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec sink = {.name = "sink", .behaviour = sink_behaviour};
  tr_ref r;
  OK(tr_spawn(ctx, &sink, NULL, &r));
  OK(tr_system_start(sys));
  /* A bin32 header is 5 bytes. */
  EXPECT_ST(tr_send_bin(ctx, r, 1, buf, limit - 4), TR_ETOOBIG);
  OK(tr_send_bin(ctx, r, 1, buf, limit - 5));
  WAIT(sys);
  cr_assert_eq(atomic_load(&sink_got), 1);
  tr_system_free(sys);
  free(buf);
}

/* Bad arguments to the senders: TR_EINVAL, nothing sent. */
Test(send, bad_arguments) {
  atomic_store(&sink_got, 0);
  tr_system *sys = new_system(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec sink = {.name = "sink", .behaviour = sink_behaviour};
  tr_ref r;
  OK(tr_spawn(ctx, &sink, NULL, &r));
  OK(tr_system_start(sys));
  tr_val v1[1] = {tr_int(1)};
  EXPECT_ST(tr_send(NULL, r, 1), TR_EINVAL);
  EXPECT_ST(tr_send_int(NULL, r, 1, 1), TR_EINVAL);
  EXPECT_ST(tr_send_uint(NULL, r, 1, 1), TR_EINVAL);
  EXPECT_ST(tr_send_double(NULL, r, 1, 1.0), TR_EINVAL);
  EXPECT_ST(tr_send_str(NULL, r, 1, "x", 1), TR_EINVAL);
  EXPECT_ST(tr_send_bin(NULL, r, 1, "x", 1), TR_EINVAL);
  EXPECT_ST(tr_send_vals(NULL, r, 1, v1, 1), TR_EINVAL);
  EXPECT_ST(tr_send_msgpack(NULL, r, 1, "\x01", 1), TR_EINVAL);
  EXPECT_ST(tr_send_str(ctx, r, 1, NULL, 3), TR_EINVAL);
  EXPECT_ST(tr_send_bin(ctx, r, 1, NULL, 3), TR_EINVAL);
  EXPECT_ST(tr_send_vals(ctx, r, 1, NULL, 2), TR_EINVAL);
  tr_val bad_type[2] = {tr_int(1), {(tr_val_type)99, {.u = 0}}};
  EXPECT_ST(tr_send_vals(ctx, r, 1, bad_type, 2), TR_EINVAL);
  tr_val null_str[1] = {tr_strn(NULL, 4)};
  EXPECT_ST(tr_send_vals(ctx, r, 1, null_str, 1), TR_EINVAL);
  tr_val null_bin[1] = {tr_bin(NULL, 4)};
  EXPECT_ST(tr_send_vals(ctx, r, 1, null_bin, 1), TR_EINVAL);
  WAIT(sys);
  cr_assert_eq(atomic_load(&sink_got), 0);
  tr_system_stats s = stats(sys);
  cr_assert_eq(s.sent, 0);
  for (unsigned d = 0; d < TR_DEAD_REASON_COUNT; d++)
    cr_assert_eq(s.dead_letters[d], 0);
  tr_system_free(sys);
}

/* ------------------------------------------------------------ integer getters */

/* tr_msg_get_int/uint take a fast path for a payload that is one integer:
 * it must agree with the general decoder on every form, including signed
 * forms holding non-negative values and unsigned forms beyond INT64_MAX. */
static _Atomic unsigned ints_bad;

static tr_status int_check(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  size_t len;
  const void *p = tr_msg_payload(msg, &len);
  tr_val v;
  tr_status gst = tr_mp_get_val(p, len, &v);
  int64_t i, gi;
  uint64_t u, gu;
  tr_status si = tr_msg_get_int(msg, &i), su = tr_msg_get_uint(msg, &u);
  tr_status gsi = gst != TR_OK ? gst : tr_val_get_int(&v, &gi);
  tr_status gsu = gst != TR_OK ? gst : tr_val_get_uint(&v, &gu);
  if (si != gsi || su != gsu || (si == TR_OK && i != gi) || (su == TR_OK && u != gu))
    atomic_fetch_add(&ints_bad, 1);
  return TR_OK;
}

Test(send, integer_getters_agree_with_the_decoder) {
  tr_system *sys = new_system(1, 0);
  tr_ctx *ctx = tr_system_ctx(sys);
  tr_actor_spec spec = {.name = "ints", .behaviour = int_check};
  tr_ref r;
  OK(tr_spawn(ctx, &spec, NULL, &r));
  /* Every integer form with assorted bodies (big-endian), and near misses
   * (a trailing byte, a float, a nil). */
  static const uint8_t forms[] = {0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3};
  static const uint8_t bodies[][8] = {{0, 0, 0, 0, 0, 0, 0, 0},
                                      {0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                                      {0x80, 0, 0, 0, 0, 0, 0, 0},
                                      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
                                      {0x01, 0x02, 0x03, 0x04, 5, 6, 7, 8},
                                      {0x80, 0, 0, 0, 0, 0, 0, 1}};
  unsigned sent = 0;
  for (size_t f = 0; f < sizeof forms; f++) {
    unsigned n = 1u << ((forms[f] - 0xcc) & 3);
    for (size_t b = 0; b < sizeof bodies / sizeof bodies[0]; b++) {
      uint8_t buf[9];
      buf[0] = forms[f];
      memcpy(buf + 1, bodies[b], n);
      OK(tr_send_msgpack(ctx, r, 1, buf, 1 + n));
      sent++;
    }
  }
  for (unsigned b = 0; b < 256; b++) { /* every one-byte value */
    uint8_t one = (uint8_t)b;
    if (tr_send_msgpack(ctx, r, 1, &one, 1) == TR_OK)
      sent++;
  }
  OK(tr_send_msgpack(ctx, r, 1, "\x92\x05\xc0", 3));             /* an array */
  OK(tr_send_msgpack(ctx, r, 1, "\xca\x00\x00\x00\x00\x00", 5)); /* a float */
  OK(tr_system_start(sys));
  WAIT(sys);
  cr_expect_eq(atomic_load(&ints_bad), 0, "%u payloads decoded differently",
               atomic_load(&ints_bad));
  cr_expect_eq(stats(sys).handled, sent + 2);
  tr_system_free(sys);
}
