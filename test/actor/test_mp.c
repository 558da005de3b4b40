/*
 * test/actor/test_mp.c - the msgpack reader and writer (actor/mp.c).
 *
 * Three kinds of evidence: round trips through our own encoder and decoder at
 * every format boundary; cross-checks against msgpack-c in both directions
 * (its packer's bytes decode right with ours, our bytes unpack right with its
 * unpacker, and a randomised differential run agrees on which buffers are one
 * well-formed value); and hostile inputs that must be rejected, quickly and
 * without reading past the buffer (run this file under ASan: every malformed
 * buffer is copied into an exactly-sized heap block first).
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <msgpack.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mp.h"

/* ----------------------------------------------------------------- helpers */

/* A heap copy of exactly len bytes, so that ASan flags any read past it. */
static uint8_t *dup_exact(const void *src, size_t len) {
  uint8_t *p = malloc(len ? len : 1);
  cr_assert_not_null(p);
  if (len)
    memcpy(p, src, len);
  return p;
}

/* Encode values with tr_mp_encode_vals into a fresh exact-size heap buffer. */
static uint8_t *encode(const tr_val *vals, size_t n, bool as_array, size_t *len) {
  size_t need = 0;
  cr_assert_eq(tr_mp_encode_vals(vals, n, as_array, NULL, 0, &need), TR_ENOSPC);
  uint8_t *buf = malloc(need);
  cr_assert_not_null(buf);
  size_t got = 0;
  cr_assert_eq(tr_mp_encode_vals(vals, n, as_array, buf, need, &got), TR_OK);
  cr_assert_eq(got, need, "size asked %zu, size written %zu", need, got);
  *len = got;
  return buf;
}

/* msgpack-c must see exactly one object spanning all of buf; it lands in *u. */
static void mc_unpack_exact(msgpack_unpacked *u, const uint8_t *buf, size_t len) {
  size_t off = 0;
  msgpack_unpacked_init(u);
  msgpack_unpack_return r = msgpack_unpack_next(u, (const char *)buf, len, &off);
  cr_assert_eq(r, MSGPACK_UNPACK_SUCCESS, "msgpack-c says %d", (int)r);
  cr_assert_eq(off, len, "msgpack-c consumed %zu of %zu bytes", off, len);
}

static void assert_bits_eq(double a, double b) {
  cr_assert(memcmp(&a, &b, sizeof a) == 0, "doubles differ: %a vs %a", a, b);
}

/* A decoded tr_val equals the expected value (the encoder's input). */
static void assert_val_eq(const tr_val *got, const tr_val *want) {
  switch (want->type) {
  case TR_VAL_INT:
    /* Non-negative INTs come back as UINT, as msgpack-c decodes them. */
    if (want->as.i >= 0) {
      cr_assert_eq(got->type, TR_VAL_UINT);
      cr_assert_eq(got->as.u, (uint64_t)want->as.i);
    } else {
      cr_assert_eq(got->type, TR_VAL_INT);
      cr_assert_eq(got->as.i, want->as.i);
    }
    return;
  case TR_VAL_UINT:
    cr_assert_eq(got->type, TR_VAL_UINT);
    cr_assert_eq(got->as.u, want->as.u);
    return;
  case TR_VAL_NIL:
    cr_assert_eq(got->type, TR_VAL_NIL);
    return;
  case TR_VAL_BOOL:
    cr_assert_eq(got->type, TR_VAL_BOOL);
    cr_assert_eq(got->as.b, want->as.b);
    return;
  case TR_VAL_DOUBLE:
    cr_assert_eq(got->type, TR_VAL_DOUBLE);
    assert_bits_eq(got->as.d, want->as.d);
    return;
  case TR_VAL_STR:
  case TR_VAL_BIN:
    cr_assert_eq(got->type, want->type);
    cr_assert_eq(got->as.bytes.len, want->as.bytes.len);
    if (want->as.bytes.len)
      cr_assert(memcmp(got->as.bytes.ptr, want->as.bytes.ptr, want->as.bytes.len) == 0);
    return;
  }
  cr_assert_fail("unexpected type %d", (int)want->type);
}

/* A msgpack-c object equals the value we encoded. */
static void assert_obj_eq(const msgpack_object *o, const tr_val *want) {
  switch (want->type) {
  case TR_VAL_NIL:
    cr_assert_eq(o->type, MSGPACK_OBJECT_NIL);
    return;
  case TR_VAL_BOOL:
    cr_assert_eq(o->type, MSGPACK_OBJECT_BOOLEAN);
    cr_assert_eq(o->via.boolean, want->as.b);
    return;
  case TR_VAL_INT:
    if (want->as.i >= 0) {
      cr_assert_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
      cr_assert_eq(o->via.u64, (uint64_t)want->as.i);
    } else {
      cr_assert_eq(o->type, MSGPACK_OBJECT_NEGATIVE_INTEGER);
      cr_assert_eq(o->via.i64, want->as.i);
    }
    return;
  case TR_VAL_UINT:
    cr_assert_eq(o->type, MSGPACK_OBJECT_POSITIVE_INTEGER);
    cr_assert_eq(o->via.u64, want->as.u);
    return;
  case TR_VAL_DOUBLE:
    cr_assert_eq(o->type, MSGPACK_OBJECT_FLOAT64);
    assert_bits_eq(o->via.f64, want->as.d);
    return;
  case TR_VAL_STR:
    cr_assert_eq(o->type, MSGPACK_OBJECT_STR);
    cr_assert_eq(o->via.str.size, want->as.bytes.len);
    if (want->as.bytes.len)
      cr_assert(memcmp(o->via.str.ptr, want->as.bytes.ptr, want->as.bytes.len) == 0);
    return;
  case TR_VAL_BIN:
    cr_assert_eq(o->type, MSGPACK_OBJECT_BIN);
    cr_assert_eq(o->via.bin.size, want->as.bytes.len);
    if (want->as.bytes.len)
      cr_assert(memcmp(o->via.bin.ptr, want->as.bytes.ptr, want->as.bytes.len) == 0);
    return;
  }
  cr_assert_fail("unexpected type %d", (int)want->type);
}

/*
 * The full round trip of one scalar: its predicted size, our decoder, and
 * msgpack-c's unpacker all agree with what was encoded.
 */
static void round_trip(tr_val v) {
  size_t len;
  uint8_t *buf = encode(&v, 1, false, &len);
  cr_assert_eq(tri_mp_val_size(&v), len);
  cr_assert_eq(tr_mp_check(buf, len), TR_OK);

  tr_val got;
  cr_assert_eq(tr_mp_get_val(buf, len, &got), TR_OK);
  assert_val_eq(&got, &v);
  if (v.type == TR_VAL_STR || v.type == TR_VAL_BIN) {
    /* Zero-copy: the body lies inside the buffer, at its end. */
    cr_assert_eq((const uint8_t *)got.as.bytes.ptr + got.as.bytes.len, buf + len);
  }

  msgpack_unpacked u;
  mc_unpack_exact(&u, buf, len);
  assert_obj_eq(&u.data, &v);
  msgpack_unpacked_destroy(&u);
  free(buf);
}

/* Bytes written by msgpack-c's own packer into a growable sbuffer. */
typedef struct mc_buf {
  msgpack_sbuffer sb;
  msgpack_packer pk;
} mc_buf;

static void mc_init(mc_buf *m) {
  msgpack_sbuffer_init(&m->sb);
  msgpack_packer_init(&m->pk, &m->sb, msgpack_sbuffer_write);
}

/* Our encoding of v is byte-identical to the given msgpack-c bytes. */
static void assert_same_bytes_as(const mc_buf *m, tr_val v) {
  size_t len;
  uint8_t *buf = encode(&v, 1, false, &len);
  cr_assert_eq(len, m->sb.size, "ours %zu bytes, msgpack-c %zu", len, m->sb.size);
  cr_assert(memcmp(buf, m->sb.data, len) == 0);
  free(buf);
}

static void assert_malformed(const void *bytes, size_t len);
static int mc_unpack_status(const uint8_t *b, size_t len);

/* ---------------------------------------------------------- round trips */

static const uint64_t uint_edges[] = {0,
                                      1,
                                      127,
                                      128,
                                      255,
                                      256,
                                      65535,
                                      65536,
                                      UINT32_MAX,
                                      (uint64_t)UINT32_MAX + 1,
                                      (uint64_t)INT64_MAX,
                                      (uint64_t)INT64_MAX + 1,
                                      UINT64_MAX - 1,
                                      UINT64_MAX};

static const int64_t int_edges[] = {0,
                                    127,
                                    128,
                                    255,
                                    256,
                                    65535,
                                    65536,
                                    UINT32_MAX,
                                    (int64_t)UINT32_MAX + 1,
                                    INT64_MAX,
                                    -1,
                                    -32,
                                    -33,
                                    -128,
                                    -129,
                                    -32768,
                                    -32769,
                                    INT32_MIN,
                                    (int64_t)INT32_MIN - 1,
                                    INT64_MIN + 1,
                                    INT64_MIN};

Test(mp_round_trip, uint_boundaries) {
  for (size_t i = 0; i < sizeof uint_edges / sizeof uint_edges[0]; i++) {
    mc_buf m;
    mc_init(&m);
    cr_assert_eq(msgpack_pack_uint64(&m.pk, uint_edges[i]), 0);
    round_trip(tr_uint(uint_edges[i]));
    assert_same_bytes_as(&m, tr_uint(uint_edges[i]));
    msgpack_sbuffer_destroy(&m.sb);
  }
}

Test(mp_round_trip, int_boundaries) {
  for (size_t i = 0; i < sizeof int_edges / sizeof int_edges[0]; i++) {
    mc_buf m;
    mc_init(&m);
    cr_assert_eq(msgpack_pack_int64(&m.pk, int_edges[i]), 0);
    round_trip(tr_int(int_edges[i]));
    assert_same_bytes_as(&m, tr_int(int_edges[i]));
    msgpack_sbuffer_destroy(&m.sb);
  }
}

/* The smallest form is chosen at each boundary, as the spec lays them out. */
Test(mp_round_trip, int_encoded_sizes) {
  static const struct {
    int64_t i;
    size_t size;
    uint8_t first;
  } cases[] = {
      {0, 1, 0x00},         {127, 1, 0x7f},        {128, 2, 0xcc},
      {255, 2, 0xcc},       {256, 3, 0xcd},        {65535, 3, 0xcd},
      {65536, 5, 0xce},     {UINT32_MAX, 5, 0xce}, {(int64_t)UINT32_MAX + 1, 9, 0xcf},
      {-1, 1, 0xff},        {-32, 1, 0xe0},        {-33, 2, 0xd0},
      {-128, 2, 0xd0},      {-129, 3, 0xd1},       {-32768, 3, 0xd1},
      {-32769, 5, 0xd2},    {INT32_MIN, 5, 0xd2},  {(int64_t)INT32_MIN - 1, 9, 0xd3},
      {INT64_MIN, 9, 0xd3},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    tr_val v = tr_int(cases[k].i);
    size_t len;
    uint8_t *buf = encode(&v, 1, false, &len);
    cr_assert_eq(len, cases[k].size, "%lld: %zu bytes", (long long)cases[k].i, len);
    cr_assert_eq(buf[0], cases[k].first, "%lld: first byte %#x", (long long)cases[k].i, buf[0]);
    free(buf);
  }
}

static void bytes_round_trip(tr_val_type type) {
  static const size_t sizes[] = {0, 1, 31, 32, 255, 256, 65535, 65536, 70001};
  uint8_t *data = malloc(70001);
  cr_assert_not_null(data);
  for (size_t i = 0; i < 70001; i++)
    data[i] = (uint8_t)(i * 7 + 3);
  for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
    tr_val v = type == TR_VAL_STR ? tr_strn((const char *)data, sizes[k]) : tr_bin(data, sizes[k]);
    mc_buf m;
    mc_init(&m);
    if (type == TR_VAL_STR) {
      cr_assert_eq(msgpack_pack_str(&m.pk, sizes[k]), 0);
      cr_assert_eq(msgpack_pack_str_body(&m.pk, data, sizes[k]), 0);
    } else {
      cr_assert_eq(msgpack_pack_bin(&m.pk, sizes[k]), 0);
      cr_assert_eq(msgpack_pack_bin_body(&m.pk, data, sizes[k]), 0);
    }
    round_trip(v);
    assert_same_bytes_as(&m, v);
    msgpack_sbuffer_destroy(&m.sb);
  }
  free(data);
}

Test(mp_round_trip, strings) { bytes_round_trip(TR_VAL_STR); }
Test(mp_round_trip, binaries) { bytes_round_trip(TR_VAL_BIN); }

Test(mp_round_trip, string_header_forms) {
  static const struct {
    size_t len;
    uint8_t first;
    size_t header;
  } cases[] = {{0, 0xa0, 1},   {31, 0xbf, 1},    {32, 0xd9, 2},   {255, 0xd9, 2},
               {256, 0xda, 3}, {65535, 0xda, 3}, {65536, 0xdb, 5}};
  char *s = calloc(65536, 1);
  cr_assert_not_null(s);
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    tr_val v = tr_strn(s, cases[k].len);
    size_t len;
    uint8_t *buf = encode(&v, 1, false, &len);
    cr_assert_eq(buf[0], cases[k].first);
    cr_assert_eq(len, cases[k].header + cases[k].len);
    free(buf);
  }
  free(s);
}

Test(mp_round_trip, empty_bytes_with_null_pointer) {
  /* A zero-length STR/BIN may have a NULL pointer; it encodes as empty. */
  round_trip(tr_strn(NULL, 0));
  round_trip(tr_bin(NULL, 0));
}

Test(mp_round_trip, doubles) {
  static const double ds[] = {
      0.0,      -0.0,      1.5, -2.25, 0.1, DBL_MAX, -DBL_MAX, DBL_MIN, 4.9406564584124654e-324,
      HUGE_VAL, -HUGE_VAL, NAN};
  for (size_t k = 0; k < sizeof ds / sizeof ds[0]; k++) {
    mc_buf m;
    mc_init(&m);
    cr_assert_eq(msgpack_pack_double(&m.pk, ds[k]), 0);
    round_trip(tr_double(ds[k]));
    assert_same_bytes_as(&m, tr_double(ds[k]));
    msgpack_sbuffer_destroy(&m.sb);
  }
}

Test(mp_round_trip, bool_and_nil) {
  round_trip(tr_bool(true));
  round_trip(tr_bool(false));
  round_trip(tr_nil());
  uint8_t t = 0xc3, f = 0xc2, n = 0xc0;
  tr_val v;
  cr_assert_eq(tr_mp_get_val(&t, 1, &v), TR_OK);
  cr_assert(v.type == TR_VAL_BOOL && v.as.b);
  cr_assert_eq(tr_mp_get_val(&f, 1, &v), TR_OK);
  cr_assert(v.type == TR_VAL_BOOL && !v.as.b);
  cr_assert_eq(tr_mp_get_val(&n, 1, &v), TR_OK);
  cr_assert_eq(v.type, TR_VAL_NIL);
}

/* An array of n mixed scalars survives ours both ways and msgpack-c's unpacker. */
static void array_round_trip(size_t n, size_t header) {
  static const char text[] = "the quick brown fox";
  tr_val *vals = malloc((n ? n : 1) * sizeof *vals);
  tr_val *back = malloc((n ? n : 1) * sizeof *back);
  cr_assert(vals && back);
  for (size_t i = 0; i < n; i++) {
    switch (i % 7) {
    case 0:
      vals[i] = tr_uint(i * 1000003u);
      break;
    case 1:
      vals[i] = tr_int(-(int64_t)i);
      break;
    case 2:
      vals[i] = tr_double((double)i / 3.0);
      break;
    case 3:
      vals[i] = tr_strn(text, i % sizeof text);
      break;
    case 4:
      vals[i] = tr_bin(text, (i / 7) % 5);
      break;
    case 5:
      vals[i] = tr_bool(i & 8);
      break;
    default:
      vals[i] = tr_nil();
      break;
    }
  }
  size_t len;
  uint8_t *buf = encode(vals, n, true, &len);
  size_t predicted = tri_mp_array_header_size(n);
  cr_assert_eq(predicted, header);
  for (size_t i = 0; i < n; i++)
    predicted += tri_mp_val_size(&vals[i]);
  cr_assert_eq(len, predicted);
  cr_assert_eq(tr_mp_check(buf, len), TR_OK);

  size_t got_n = SIZE_MAX;
  cr_assert_eq(tr_mp_get_vals(buf, len, back, n, &got_n), TR_OK);
  cr_assert_eq(got_n, n);
  for (size_t i = 0; i < n; i++)
    assert_val_eq(&back[i], &vals[i]);

  msgpack_unpacked u;
  mc_unpack_exact(&u, buf, len);
  cr_assert_eq(u.data.type, MSGPACK_OBJECT_ARRAY);
  cr_assert_eq(u.data.via.array.size, n);
  for (size_t i = 0; i < n; i++)
    assert_obj_eq(&u.data.via.array.ptr[i], &vals[i]);
  msgpack_unpacked_destroy(&u);

  free(buf);
  free(vals);
  free(back);
}

Test(mp_round_trip, array_0) { array_round_trip(0, 1); }
Test(mp_round_trip, array_15) { array_round_trip(15, 1); }
Test(mp_round_trip, array_16) { array_round_trip(16, 3); }
Test(mp_round_trip, array_65535) { array_round_trip(65535, 3); }
Test(mp_round_trip, array_70000) { array_round_trip(70000, 5); }

Test(mp_round_trip, array_header_sizes) {
  cr_assert_eq(tri_mp_array_header_size(0), 1);
  cr_assert_eq(tri_mp_array_header_size(15), 1);
  cr_assert_eq(tri_mp_array_header_size(16), 3);
  cr_assert_eq(tri_mp_array_header_size(65535), 3);
  cr_assert_eq(tri_mp_array_header_size(65536), 5);
  cr_assert_eq(tri_mp_array_header_size(UINT32_MAX), 5);
#if SIZE_MAX > UINT32_MAX
  cr_assert_eq(tri_mp_array_header_size((size_t)UINT32_MAX + 1), 0);
#endif
}

Test(mp_round_trip, write_vals_direct) {
  /* The hot-path writer: exact capacity works, one byte less fails. */
  tr_val vals[] = {tr_uint(300), tr_str("hi"), tr_nil()};
  size_t need = tri_mp_array_header_size(3);
  for (size_t i = 0; i < 3; i++)
    need += tri_mp_val_size(&vals[i]);
  uint8_t buf[32];
  cr_assert_eq(tri_mp_write_vals(buf, need, vals, 3, true), need);
  static const uint8_t want[] = {0x93, 0xcd, 0x01, 0x2c, 0xa2, 'h', 'i', 0xc0};
  cr_assert_eq(need, sizeof want);
  cr_assert(memcmp(buf, want, sizeof want) == 0);
  cr_assert_eq(tri_mp_write_vals(buf, need - 1, vals, 3, true), 0);
  cr_assert_eq(tri_mp_write_vals(buf, sizeof buf, vals, 2, false), 0);
  cr_assert_eq(tri_mp_write_vals(buf, sizeof buf, vals, 1, false), 3);
  cr_assert_eq(tri_mp_write_vals(NULL, 0, vals, 1, false), 0);
}

/* -------------------------------------------------- msgpack-c -> ours */

/* Decode msgpack-c's bytes with ours and return the value. */
static tr_val decode_mc(const mc_buf *m) {
  tr_val v;
  uint8_t *copy = dup_exact(m->sb.data, m->sb.size);
  cr_assert_eq(tr_mp_check(copy, m->sb.size), TR_OK);
  cr_assert_eq(tr_mp_get_val(copy, m->sb.size, &v), TR_OK);
  free(copy); /* Scalars compared below hold no pointer into the copy. */
  return v;
}

Test(mp_cross, msgpack_c_integers_any_width) {
  static const struct {
    int which;
    int64_t value;
  } cases[] = {{0, 5},         {1, 5},         {2, 5},         {3, 5},        {4, 5},  {5, 5},
               {6, 5},         {7, 5},         {8, 5},         {9, 5},        {0, -5}, {1, -5},
               {2, -5},        {3, -5},        {4, -5},        {5, -5},       {6, -5}, {7, -5},
               {3, INT64_MIN}, {7, INT64_MIN}, {3, INT64_MAX}, {7, INT64_MAX}};
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    mc_buf m;
    mc_init(&m);
    int64_t x = cases[k].value;
    int rc = -1;
    switch (cases[k].which) {
    case 0:
      rc = msgpack_pack_int8(&m.pk, (int8_t)x);
      break;
    case 1:
      rc = msgpack_pack_int16(&m.pk, (int16_t)x);
      break;
    case 2:
      rc = msgpack_pack_int32(&m.pk, (int32_t)x);
      break;
    case 3:
      rc = msgpack_pack_int64(&m.pk, x);
      break;
    /* The fix_ forms force the full-width signed encodings (0xd0..0xd3). */
    case 4:
      rc = msgpack_pack_fix_int8(&m.pk, (int8_t)x);
      break;
    case 5:
      rc = msgpack_pack_fix_int16(&m.pk, (int16_t)x);
      break;
    case 6:
      rc = msgpack_pack_fix_int32(&m.pk, (int32_t)x);
      break;
    case 7:
      rc = msgpack_pack_fix_int64(&m.pk, x);
      break;
    case 8:
      rc = msgpack_pack_fix_uint8(&m.pk, (uint8_t)x);
      break;
    case 9:
      rc = msgpack_pack_fix_uint64(&m.pk, (uint64_t)x);
      break;
    }
    cr_assert_eq(rc, 0);
    tr_val v = decode_mc(&m);
    if (x >= 0) {
      cr_assert_eq(v.type, TR_VAL_UINT, "case %zu", k);
      cr_assert_eq(v.as.u, (uint64_t)x, "case %zu", k);
    } else {
      cr_assert_eq(v.type, TR_VAL_INT, "case %zu", k);
      cr_assert_eq(v.as.i, x, "case %zu", k);
    }
    msgpack_sbuffer_destroy(&m.sb);
  }
}

Test(mp_cross, msgpack_c_int8_and_int64_of_5_are_uint) {
  /* The two cases the brief singles out, spelled out on their own. */
  mc_buf m;
  mc_init(&m);
  cr_assert_eq(msgpack_pack_int8(&m.pk, 5), 0);
  tr_val v = decode_mc(&m);
  cr_assert_eq(v.type, TR_VAL_UINT);
  cr_assert_eq(v.as.u, 5);
  msgpack_sbuffer_clear(&m.sb);
  cr_assert_eq(msgpack_pack_int64(&m.pk, 5), 0);
  v = decode_mc(&m);
  cr_assert_eq(v.type, TR_VAL_UINT);
  cr_assert_eq(v.as.u, 5);
  int64_t i;
  cr_assert_eq(tr_val_get_int(&v, &i), TR_OK);
  cr_assert_eq(i, 5);
  msgpack_sbuffer_destroy(&m.sb);
}

Test(mp_cross, msgpack_c_float32) {
  static const float fs[] = {1.5f, 0.1f, -3.25e30f, FLT_MIN, FLT_MAX, 0.0f};
  for (size_t k = 0; k < sizeof fs / sizeof fs[0]; k++) {
    mc_buf m;
    mc_init(&m);
    cr_assert_eq(msgpack_pack_float(&m.pk, fs[k]), 0);
    cr_assert_eq(m.sb.size, 5);
    cr_assert_eq((uint8_t)m.sb.data[0], 0xca);
    tr_val v = decode_mc(&m);
    cr_assert_eq(v.type, TR_VAL_DOUBLE);
    assert_bits_eq(v.as.d, (double)fs[k]);
    msgpack_sbuffer_destroy(&m.sb);
  }
}

Test(mp_cross, msgpack_c_array_of_scalars) {
  mc_buf m;
  mc_init(&m);
  cr_assert_eq(msgpack_pack_array(&m.pk, 8), 0);
  cr_assert_eq(msgpack_pack_fix_int16(&m.pk, 7), 0);
  cr_assert_eq(msgpack_pack_int64(&m.pk, -70000), 0);
  cr_assert_eq(msgpack_pack_float(&m.pk, 2.5f), 0);
  cr_assert_eq(msgpack_pack_double(&m.pk, -0.5), 0);
  cr_assert_eq(msgpack_pack_str(&m.pk, 3), 0);
  cr_assert_eq(msgpack_pack_str_body(&m.pk, "abc", 3), 0);
  cr_assert_eq(msgpack_pack_bin(&m.pk, 2), 0);
  cr_assert_eq(msgpack_pack_bin_body(&m.pk, "\x00\xff", 2), 0);
  cr_assert_eq(msgpack_pack_true(&m.pk), 0);
  cr_assert_eq(msgpack_pack_nil(&m.pk), 0);

  uint8_t *copy = dup_exact(m.sb.data, m.sb.size);
  tr_val out[8];
  size_t n = 0;
  cr_assert_eq(tr_mp_get_vals(copy, m.sb.size, out, 8, &n), TR_OK);
  cr_assert_eq(n, 8);
  cr_assert(out[0].type == TR_VAL_UINT && out[0].as.u == 7);
  cr_assert(out[1].type == TR_VAL_INT && out[1].as.i == -70000);
  cr_assert(out[2].type == TR_VAL_DOUBLE && out[2].as.d == 2.5);
  cr_assert(out[3].type == TR_VAL_DOUBLE && out[3].as.d == -0.5);
  cr_assert(out[4].type == TR_VAL_STR && out[4].as.bytes.len == 3);
  cr_assert(memcmp(out[4].as.bytes.ptr, "abc", 3) == 0);
  cr_assert(out[4].as.bytes.ptr > (const void *)copy &&
            out[4].as.bytes.ptr < (const void *)(copy + m.sb.size));
  cr_assert(out[5].type == TR_VAL_BIN && out[5].as.bytes.len == 2);
  cr_assert(memcmp(out[5].as.bytes.ptr, "\x00\xff", 2) == 0);
  cr_assert(out[6].type == TR_VAL_BOOL && out[6].as.b);
  cr_assert_eq(out[7].type, TR_VAL_NIL);
  free(copy);
  msgpack_sbuffer_destroy(&m.sb);
}

Test(mp_cross, msgpack_c_containers_and_ext_check_ok_but_not_scalars) {
  /* Maps, nested arrays and every ext form are well-formed: check accepts
   * them, while the scalar getters refuse them as the wrong kind. */
  mc_buf m;
  mc_init(&m);
  static const size_t ext_sizes[] = {1, 2, 4, 8, 16, 0, 3, 255, 256, 65536};
  static char ext_body[65536];
  for (size_t k = 0; k < sizeof ext_sizes / sizeof ext_sizes[0] + 3; k++) {
    msgpack_sbuffer_clear(&m.sb);
    if (k < sizeof ext_sizes / sizeof ext_sizes[0]) {
      cr_assert_eq(msgpack_pack_ext(&m.pk, ext_sizes[k], 42), 0);
      cr_assert_eq(msgpack_pack_ext_body(&m.pk, ext_body, ext_sizes[k]), 0);
    } else if (k == sizeof ext_sizes / sizeof ext_sizes[0]) {
      cr_assert_eq(msgpack_pack_map(&m.pk, 2), 0);
      cr_assert_eq(msgpack_pack_str(&m.pk, 1), 0);
      cr_assert_eq(msgpack_pack_str_body(&m.pk, "k", 1), 0);
      cr_assert_eq(msgpack_pack_array(&m.pk, 1), 0);
      cr_assert_eq(msgpack_pack_map(&m.pk, 0), 0);
      cr_assert_eq(msgpack_pack_int(&m.pk, 1), 0);
      cr_assert_eq(msgpack_pack_ext(&m.pk, 1, -1), 0);
      cr_assert_eq(msgpack_pack_ext_body(&m.pk, "x", 1), 0);
    } else if (k == sizeof ext_sizes / sizeof ext_sizes[0] + 1) {
      cr_assert_eq(msgpack_pack_map(&m.pk, 20), 0);
      for (int i = 0; i < 40; i++)
        cr_assert_eq(msgpack_pack_int(&m.pk, i), 0);
    } else {
      cr_assert_eq(msgpack_pack_map(&m.pk, 70000), 0);
      for (int i = 0; i < 140000; i++)
        cr_assert_eq(msgpack_pack_nil(&m.pk), 0);
    }
    uint8_t *copy = dup_exact(m.sb.data, m.sb.size);
    tr_val v;
    size_t n;
    cr_assert_eq(tr_mp_check(copy, m.sb.size), TR_OK, "case %zu", k);
    cr_assert_eq(tr_mp_get_val(copy, m.sb.size, &v), TR_EDECODE, "case %zu", k);
    cr_assert_eq(tr_mp_get_vals(copy, m.sb.size, &v, 1, &n), TR_EDECODE, "case %zu", k);
    free(copy);
  }
  msgpack_sbuffer_destroy(&m.sb);
}

Test(mp_cross, ours_unpack_with_msgpack_c) {
  /* Every single-value encoding msgpack-c must read as one object, no extra. */
  tr_val vals[] = {
      tr_nil(),       tr_bool(true),   tr_int(-129),      tr_int(INT64_MIN), tr_uint(UINT64_MAX),
      tr_double(3.0), tr_str("héllo"), tr_bin("\0\1", 2), tr_int(5),         tr_uint(0)};
  for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++)
    round_trip(vals[k]);
  /* And as one array. */
  size_t len;
  uint8_t *buf = encode(vals, sizeof vals / sizeof vals[0], true, &len);
  msgpack_unpacked u;
  mc_unpack_exact(&u, buf, len);
  cr_assert_eq(u.data.type, MSGPACK_OBJECT_ARRAY);
  cr_assert_eq(u.data.via.array.size, sizeof vals / sizeof vals[0]);
  for (size_t k = 0; k < sizeof vals / sizeof vals[0]; k++)
    assert_obj_eq(&u.data.via.array.ptr[k], &vals[k]);
  msgpack_unpacked_destroy(&u);
  free(buf);
}

/*
 * The shortest well-formed value starting with type byte b (containers hold
 * nils, str/bin/ext bodies are 3 bytes), written to out; returns its length,
 * 0 for 0xc1. `kind` gets the tr_val type get_val must report, or -1 where
 * get_val must say EDECODE (containers and ext).
 */
static size_t minimal_value(uint8_t b, uint8_t *out, int *kind) {
  size_t n = 0;
  out[n++] = b;
  *kind = -1;
  /* Append a big-endian length field of w bytes holding v. */
#define PUT_LEN(w, v)                                                                              \
  do {                                                                                             \
    for (size_t k_ = (w); k_-- > 0;)                                                               \
      out[n++] = (uint8_t)((uint64_t)(v) >> (8 * k_));                                             \
  } while (0)
#define FILL(count, byte)                                                                          \
  do {                                                                                             \
    for (size_t k_ = 0; k_ < (size_t)(count); k_++)                                                \
      out[n++] = (byte);                                                                           \
  } while (0)
  if (b <= 0x7f || b >= 0xe0) {
    *kind = b <= 0x7f ? TR_VAL_UINT : TR_VAL_INT;
  } else if (b <= 0x8f) {
    FILL(2 * (b & 0x0f), 0xc0);
  } else if (b <= 0x9f) {
    FILL(b & 0x0f, 0xc0);
  } else if (b <= 0xbf) {
    *kind = TR_VAL_STR;
    FILL(b & 0x1f, 'x');
  } else {
    switch (b) {
    case 0xc0:
      *kind = TR_VAL_NIL;
      break;
    case 0xc1:
      return 0;
    case 0xc2:
    case 0xc3:
      *kind = TR_VAL_BOOL;
      break;
    case 0xc4:
    case 0xc5:
    case 0xc6:
      *kind = TR_VAL_BIN;
      PUT_LEN((size_t)1 << (b - 0xc4), 3);
      FILL(3, 'b');
      break;
    case 0xc7:
    case 0xc8:
    case 0xc9:
      PUT_LEN((size_t)1 << (b - 0xc7), 3);
      FILL(1 + 3, 'e');
      break;
    case 0xca:
      *kind = TR_VAL_DOUBLE;
      FILL(4, 0x40);
      break;
    case 0xcb:
      *kind = TR_VAL_DOUBLE;
      FILL(8, 0x40);
      break;
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
      *kind = TR_VAL_UINT;
      FILL((size_t)1 << (b - 0xcc), 0x80);
      break;
    /* A leading 0x80 makes every signed width negative. */
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
      *kind = TR_VAL_INT;
      FILL((size_t)1 << (b - 0xd0), 0x80);
      break;
    case 0xd4:
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
      FILL(1 + ((size_t)1 << (b - 0xd4)), 'e');
      break;
    case 0xd9:
    case 0xda:
    case 0xdb:
      *kind = TR_VAL_STR;
      PUT_LEN((size_t)1 << (b - 0xd9), 3);
      FILL(3, 's');
      break;
    case 0xdc:
    case 0xdd:
      PUT_LEN((size_t)2 << (b - 0xdc), 3);
      FILL(3, 0xc0);
      break;
    case 0xde:
    case 0xdf:
      PUT_LEN((size_t)2 << (b - 0xde), 2);
      FILL(4, 0xc0);
      break;
    }
  }
#undef PUT_LEN
#undef FILL
  return n;
}

/*
 * Every one of the 256 type bytes: its shortest value is well-formed for us
 * and for msgpack-c, decodes to the right kind, and any byte fewer or one
 * byte more is malformed. This pins each format's header width and body size.
 */
Test(mp_cross, every_type_byte) {
  uint8_t buf[64];
  for (unsigned b = 0; b <= 0xff; b++) {
    int kind;
    size_t len = minimal_value((uint8_t)b, buf, &kind);
    if (len == 0) {
      assert_malformed(buf, 1);
      cr_assert_eq(mc_unpack_status(buf, 1), -1);
      continue;
    }
    uint8_t *copy = dup_exact(buf, len);
    cr_assert_eq(tr_mp_check(copy, len), TR_OK, "type byte %#x", b);
    cr_assert_eq(mc_unpack_status(copy, len), 0, "msgpack-c on type byte %#x", b);
    tr_val v;
    if (kind < 0) {
      cr_assert_eq(tr_mp_get_val(copy, len, &v), TR_EDECODE, "type byte %#x", b);
    } else {
      cr_assert_eq(tr_mp_get_val(copy, len, &v), TR_OK, "type byte %#x", b);
      cr_assert_eq((int)v.type, kind, "type byte %#x decoded as %d", b, (int)v.type);
    }
    free(copy);
    for (size_t cut = 0; cut < len; cut++)
      assert_malformed(buf, cut);
    buf[len] = 0xc0;
    assert_malformed(buf, len + 1);
  }
}

/* xorshift64*: a fixed-seed generator, so a failure replays exactly. */
static uint64_t rng_next(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * UINT64_C(2685821657736338717);
}

/*
 * Differential: on short random buffers, ours says "one well-formed value"
 * exactly when msgpack-c unpacks one object that spans the buffer. Header
 * bytes are over-represented so that many buffers are valid. array32/map32
 * headers are left out and array16/map16 counts kept under 256: msgpack-c
 * allocates count*24 bytes for a container up front, the very weakness our
 * reader avoids, and that would trip ASan or make a sanitised run crawl.
 */
Test(mp_cross, differential_random_buffers) {
  static const uint8_t interesting[] = {
      0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x8f, 0x90, 0x91, 0x92, 0x9f, 0xa0, 0xa1, 0xa3,
      0xbf, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xcb, 0xcc,
      0xcd, 0xce, 0xcf, 0xd0, 0xd1, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9, 0xda,
      0xdb, 0xdc, 0xde, 0xe0, 0xff, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04};
  uint64_t seed = UINT64_C(0x9e3779b97f4a7c15);
  size_t valid = 0, invalid = 0;
  uint8_t buf[14];
  /* One zone, cleared after each buffer, instead of an allocation per call. */
  msgpack_zone zone;
  cr_assert(msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE));
  for (int iter = 0; iter < 300000; iter++) {
    size_t len = 1 + (size_t)(rng_next(&seed) % sizeof buf);
    for (size_t i = 0; i < len; i++) {
      uint64_t r = rng_next(&seed);
      uint8_t b = (r & 3) ? interesting[(r >> 8) % sizeof interesting] : (uint8_t)(r >> 16);
      if (b == 0xdd || b == 0xdf)
        b = 0xc0;
      buf[i] = b;
    }
    /* Keep array16/map16 counts under 256 (see above). */
    for (size_t i = 0; i + 1 < len; i++) {
      if (buf[i] == 0xdc || buf[i] == 0xde)
        buf[i + 1] = 0;
    }
    /* An exact heap copy, as dup_exact makes, but asserting only on failure. */
    uint8_t *copy = malloc(len);
    if (!copy)
      cr_assert_fail("out of memory");
    memcpy(copy, buf, len);
    /* msgpack_unpack says SUCCESS only for one object with no extra bytes. */
    msgpack_object obj;
    size_t off = 0;
    bool mc_ok =
        msgpack_unpack((const char *)copy, len, &off, &zone, &obj) == MSGPACK_UNPACK_SUCCESS;
    msgpack_zone_clear(&zone);
    bool ours_ok = tr_mp_check(copy, len) == TR_OK;
    if (ours_ok != mc_ok) {
      char hex[3 * sizeof buf + 1] = {0};
      for (size_t i = 0; i < len; i++)
        snprintf(hex + 3 * i, 4, "%02x ", copy[i]);
      cr_assert_fail("disagree on [%s]: ours %d, msgpack-c %d", hex, ours_ok, mc_ok);
    }
    free(copy);
    if (mc_ok)
      valid++;
    else
      invalid++;
  }
  msgpack_zone_destroy(&zone);
  /* Both outcomes must be well represented, or the comparison proves little. */
  cr_assert_gt(valid, 10000, "only %zu valid buffers", valid);
  cr_assert_gt(invalid, 10000, "only %zu invalid buffers", invalid);
}

/* ------------------------------------------------------------ malformed */

/* All three readers reject a buffer as malformed (read from an exact copy). */
static void assert_malformed(const void *bytes, size_t len) {
  uint8_t *copy = dup_exact(bytes, len);
  tr_val v[4];
  size_t n = 77;
  cr_assert_eq(tr_mp_check(copy, len), TR_EMALFORMED, "check, len %zu", len);
  cr_assert_eq(tr_mp_get_val(copy, len, v), TR_EMALFORMED, "get_val, len %zu", len);
  cr_assert_eq(tr_mp_get_vals(copy, len, v, 4, &n), TR_EMALFORMED, "get_vals, len %zu", len);
  cr_assert_eq(n, 77, "get_vals wrote *n on error");
  free(copy);
}

Test(mp_malformed, empty) {
  uint8_t b = 0xc0;
  assert_malformed(&b, 0);
  cr_assert_eq(tr_mp_check(NULL, 0), TR_EMALFORMED);
  tr_val v;
  cr_assert_eq(tr_mp_get_val(NULL, 0, &v), TR_EMALFORMED);
}

Test(mp_malformed, null_bytes_with_length) {
  tr_val v;
  size_t n;
  cr_assert_eq(tr_mp_check(NULL, 1), TR_EINVAL);
  cr_assert_eq(tr_mp_get_val(NULL, 1, &v), TR_EINVAL);
  cr_assert_eq(tr_mp_get_vals(NULL, 1, &v, 1, &n), TR_EINVAL);
  uint8_t b = 0xc0;
  cr_assert_eq(tr_mp_get_val(&b, 1, NULL), TR_EINVAL);
  cr_assert_eq(tr_mp_get_vals(&b, 1, &v, 1, NULL), TR_EINVAL);
  cr_assert_eq(tr_mp_get_vals(&b, 1, NULL, 1, &n), TR_EINVAL);
}

/* Every proper prefix of a valid encoding is malformed; the whole is valid. */
static void assert_prefixes_malformed(const uint8_t *buf, size_t len) {
  uint8_t *copy = dup_exact(buf, len);
  cr_assert_eq(tr_mp_check(copy, len), TR_OK);
  free(copy);
  for (size_t cut = 0; cut < len; cut++)
    assert_malformed(buf, cut);
}

Test(mp_malformed, truncated_at_every_prefix) {
  static char body[300];
  tr_val singles[] = {tr_uint(UINT64_MAX), tr_uint(70000),  tr_int(-200),
                      tr_int(INT64_MIN),   tr_double(0.25), tr_strn(body, 40),
                      tr_strn(body, 300),  tr_bin(body, 3), tr_bin(body, 300)};
  for (size_t k = 0; k < sizeof singles / sizeof singles[0]; k++) {
    size_t len;
    uint8_t *buf = encode(&singles[k], 1, false, &len);
    assert_prefixes_malformed(buf, len);
    free(buf);
  }
  size_t len;
  uint8_t *buf = encode(singles, sizeof singles / sizeof singles[0], true, &len);
  assert_prefixes_malformed(buf, len);
  free(buf);

  /* Containers and ext from msgpack-c: a map with nested array, ext forms. */
  mc_buf m;
  mc_init(&m);
  cr_assert_eq(msgpack_pack_map(&m.pk, 2), 0);
  cr_assert_eq(msgpack_pack_str(&m.pk, 2), 0);
  cr_assert_eq(msgpack_pack_str_body(&m.pk, "ab", 2), 0);
  cr_assert_eq(msgpack_pack_array(&m.pk, 2), 0);
  cr_assert_eq(msgpack_pack_float(&m.pk, 1.0f), 0);
  cr_assert_eq(msgpack_pack_ext(&m.pk, 16, 3), 0);
  cr_assert_eq(msgpack_pack_ext_body(&m.pk, body, 16), 0);
  cr_assert_eq(msgpack_pack_uint16(&m.pk, 999), 0);
  cr_assert_eq(msgpack_pack_ext(&m.pk, 300, 7), 0);
  cr_assert_eq(msgpack_pack_ext_body(&m.pk, body, 300), 0);
  assert_prefixes_malformed((const uint8_t *)m.sb.data, m.sb.size);
  msgpack_sbuffer_destroy(&m.sb);
}

Test(mp_malformed, trailing_bytes) {
  static const uint8_t cases[][4] = {
      {0xc0, 0xc0}, {0x01, 0x00}, {0x90, 0xc0}, {0xa1, 'x', 'y'}, {0x91, 0x01, 0x02}};
  static const size_t lens[] = {2, 2, 2, 3, 3};
  for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
    uint8_t *copy = dup_exact(cases[k], lens[k] - 1);
    cr_assert_eq(tr_mp_check(copy, lens[k] - 1), TR_OK, "case %zu without its tail", k);
    free(copy);
    assert_malformed(cases[k], lens[k]);
  }
}

Test(mp_malformed, never_used_byte) {
  static const uint8_t alone[] = {0xc1};
  static const uint8_t in_array[] = {0x92, 0x01, 0xc1};
  static const uint8_t as_key[] = {0x81, 0xc1, 0x01};
  assert_malformed(alone, sizeof alone);
  assert_malformed(in_array, sizeof in_array);
  assert_malformed(as_key, sizeof as_key);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * A huge declared count is refused on its header, before any element is
 * walked. The status alone cannot tell that apart from walking until the
 * bytes run out, so the array32 header here is followed by 32 MiB of valid
 * nils: walking them takes tens of milliseconds even unsanitised, while the
 * header check takes well under a microsecond. The best of five runs must
 * stay under 5 ms.
 */
Test(mp_malformed, huge_container_counts) {
  static const uint8_t arr32[] = {0xdd, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t map32[] = {0xdf, 0xff, 0xff, 0xff, 0xff};
  static const uint8_t arr32_some[] = {0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0, 0xc0};
  /* Fifteen array32s, each claiming 2^32-1 elements, inside one fixarray. */
  uint8_t nested[1 + 15 * 5];
  nested[0] = 0x9f;
  for (int i = 0; i < 15; i++)
    memcpy(nested + 1 + 5 * i, arr32, 5);
  assert_malformed(arr32, sizeof arr32);
  assert_malformed(map32, sizeof map32);
  assert_malformed(arr32_some, sizeof arr32_some);
  assert_malformed(nested, sizeof nested);

  const size_t body = (size_t)32 << 20;
  uint8_t *big = malloc(5 + body);
  cr_assert_not_null(big);
  memcpy(big, arr32, 5);
  memset(big + 5, 0xc0, body);
  double best = 1e9;
  for (int rep = 0; rep < 5; rep++) {
    double t0 = now_s();
    tr_status st = tr_mp_check(big, 5 + body);
    double dt = now_s() - t0;
    cr_assert_eq(st, TR_EMALFORMED);
    if (dt < best)
      best = dt;
  }
  free(big);
  cr_assert_lt(best, 0.005, "rejecting the header took %.3f ms", best * 1e3);
}

Test(mp_malformed, count_exceeding_remaining_bytes) {
  /* array16 of 3 with 2 elements; map16 of 2 pairs with 3 elements. */
  static const uint8_t arr[] = {0xdc, 0x00, 0x03, 0xc0, 0xc0};
  static const uint8_t map[] = {0xde, 0x00, 0x02, 0x01, 0x02, 0x03};
  assert_malformed(arr, sizeof arr);
  assert_malformed(map, sizeof map);
}

Test(mp_malformed, map_with_odd_elements) {
  /* A key with no value, at the top and nested. */
  static const uint8_t key_only[] = {0x81, 0xa1, 'k'};
  static const uint8_t nested[] = {0x91, 0x82, 0x01, 0x02, 0x03};
  static const uint8_t ok[] = {0x91, 0x82, 0x01, 0x02, 0x03, 0x04};
  assert_malformed(key_only, sizeof key_only);
  assert_malformed(nested, sizeof nested);
  cr_assert_eq(tr_mp_check(ok, sizeof ok), TR_OK);
}

/* `arrays` nested arrays, the innermost holding `inner` (or empty if none). */
static uint8_t *nest(size_t arrays, int inner, size_t *len) {
  uint8_t *b = malloc(arrays + 1);
  cr_assert_not_null(b);
  for (size_t i = 0; i + 1 < arrays; i++)
    b[i] = 0x91;
  if (inner < 0) {
    b[arrays - 1] = 0x90;
    *len = arrays;
  } else {
    b[arrays - 1] = 0x91;
    b[arrays] = (uint8_t)inner;
    *len = arrays + 1;
  }
  return b;
}

static int mc_unpack_status(const uint8_t *b, size_t len) {
  msgpack_unpacked u;
  size_t off = 0;
  msgpack_unpacked_init(&u);
  int r = msgpack_unpack_next(&u, (const char *)b, len, &off);
  msgpack_unpacked_destroy(&u);
  return r == MSGPACK_UNPACK_SUCCESS && off == len ? 0 : -1;
}

Test(mp_malformed, nesting_limit) {
  size_t len;
  tr_val v;
  size_t n;
  for (int inner = -1; inner <= 0xc0; inner += 0xc1) { /* empty innermost, then nil inside */
    uint8_t *ok = nest(32, inner, &len);
    cr_assert_eq(tr_mp_check(ok, len), TR_OK, "32 arrays, inner %d", inner);
    cr_assert_eq(tr_mp_get_val(ok, len, &v), TR_EDECODE);
    cr_assert_eq(tr_mp_get_vals(ok, len, &v, 1, &n), TR_EDECODE);
    /* msgpack-c has the same limit, so everything we accept it can decode. */
    cr_assert_eq(mc_unpack_status(ok, len), 0);
    free(ok);

    uint8_t *deep = nest(33, inner, &len);
    assert_malformed(deep, len);
    cr_assert_eq(mc_unpack_status(deep, len), -1);
    free(deep);
  }
  /* Maps count too: 33 maps nested through their values. */
  uint8_t maps[33 * 2 + 1];
  for (int i = 0; i < 33; i++) {
    maps[2 * i] = 0x81;
    maps[2 * i + 1] = 0xc0;
  }
  maps[66] = 0xc0;
  assert_malformed(maps, sizeof maps);
  cr_assert_eq(tr_mp_check(maps + 2, sizeof maps - 2), TR_OK); /* 32 maps */
}

Test(mp_malformed, huge_str_bin_ext_lengths) {
  static const uint8_t str32[] = {0xdb, 0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c'};
  static const uint8_t bin32[] = {0xc6, 0xff, 0xff, 0xff, 0xff, 'a', 'b', 'c'};
  static const uint8_t ext32[] = {0xc9, 0xff, 0xff, 0xff, 0xff, 0x01, 'a', 'b'};
  static const uint8_t str8[] = {0xd9, 0x04, 'a', 'b', 'c'};
  static const uint8_t fixext4[] = {0xd6, 0x01, 'a', 'b', 'c'};
  assert_malformed(str32, sizeof str32);
  assert_malformed(bin32, sizeof bin32);
  assert_malformed(ext32, sizeof ext32);
  assert_malformed(str8, sizeof str8);
  assert_malformed(fixext4, sizeof fixext4);
}

/* ------------------------------------------------------ wrong type / range */

Test(mp_type, get_vals_on_scalar_or_map) {
  static const uint8_t scalar[] = {0x05};
  static const uint8_t map[] = {0x81, 0x01, 0x02};
  tr_val out[4];
  size_t n = 77;
  cr_assert_eq(tr_mp_get_vals(scalar, sizeof scalar, out, 4, &n), TR_EDECODE);
  cr_assert_eq(tr_mp_get_vals(map, sizeof map, out, 4, &n), TR_EDECODE);
  cr_assert_eq(n, 77);
}

Test(mp_type, get_vals_nested_container_or_ext) {
  static const uint8_t nested_arr[] = {0x92, 0x01, 0x91, 0x02};
  static const uint8_t nested_map[] = {0x92, 0x01, 0x80};
  static const uint8_t with_ext[] = {0x92, 0x01, 0xd4, 0x01, 0x02};
  /* More elements than cap, one of them nested: the type error wins, since a
   * bigger array could not make it decodable. */
  static const uint8_t big_nested[] = {0x93, 0x01, 0x02, 0x90};
  tr_val out[4];
  size_t n = 77;
  cr_assert_eq(tr_mp_get_vals(nested_arr, sizeof nested_arr, out, 4, &n), TR_EDECODE);
  cr_assert_eq(tr_mp_get_vals(nested_map, sizeof nested_map, out, 4, &n), TR_EDECODE);
  cr_assert_eq(tr_mp_get_vals(with_ext, sizeof with_ext, out, 4, &n), TR_EDECODE);
  cr_assert_eq(tr_mp_get_vals(big_nested, sizeof big_nested, out, 1, &n), TR_EDECODE);
  cr_assert_eq(n, 77);
}

Test(mp_type, get_vals_enospc_reports_count) {
  tr_val vals[5] = {tr_uint(1), tr_uint(2), tr_uint(3), tr_uint(4), tr_uint(5)};
  size_t len;
  uint8_t *buf = encode(vals, 5, true, &len);
  tr_val out[4];
  for (size_t i = 0; i < 4; i++)
    out[i] = tr_str("untouched");
  size_t n = 0;
  cr_assert_eq(tr_mp_get_vals(buf, len, out, 4, &n), TR_ENOSPC);
  cr_assert_eq(n, 5);
  /* ENOSPC is an error: nothing was written to out. */
  for (size_t i = 0; i < 4; i++)
    cr_assert_eq(out[i].type, TR_VAL_STR);
  /* cap 0 with a NULL out asks for the count. */
  n = 0;
  cr_assert_eq(tr_mp_get_vals(buf, len, NULL, 0, &n), TR_ENOSPC);
  cr_assert_eq(n, 5);
  free(buf);

  static const uint8_t empty[] = {0x90};
  n = 77;
  cr_assert_eq(tr_mp_get_vals(empty, 1, NULL, 0, &n), TR_OK);
  cr_assert_eq(n, 0);
}

Test(mp_type, get_int_range) {
  tr_val v = tr_uint(UINT64_MAX);
  int64_t i = 42;
  cr_assert_eq(tr_val_get_int(&v, &i), TR_ERANGE);
  cr_assert_eq(i, 42);
  v = tr_uint((uint64_t)INT64_MAX + 1);
  cr_assert_eq(tr_val_get_int(&v, &i), TR_ERANGE);
  v = tr_uint((uint64_t)INT64_MAX);
  cr_assert_eq(tr_val_get_int(&v, &i), TR_OK);
  cr_assert_eq(i, INT64_MAX);
  v = tr_int(INT64_MIN);
  cr_assert_eq(tr_val_get_int(&v, &i), TR_OK);
  cr_assert_eq(i, INT64_MIN);
}

Test(mp_type, get_uint_range) {
  uint8_t minus_one = 0xff;
  tr_val v;
  uint64_t u = 42;
  cr_assert_eq(tr_mp_get_val(&minus_one, 1, &v), TR_OK);
  cr_assert_eq(v.type, TR_VAL_INT);
  cr_assert_eq(tr_val_get_uint(&v, &u), TR_ERANGE);
  cr_assert_eq(u, 42);
  v = tr_uint(UINT64_MAX);
  cr_assert_eq(tr_val_get_uint(&v, &u), TR_OK);
  cr_assert_eq(u, UINT64_MAX);
  /* A hand-built non-negative INT is an integer that fits. */
  v = tr_int(7);
  cr_assert_eq(tr_val_get_uint(&v, &u), TR_OK);
  cr_assert_eq(u, 7);
}

Test(mp_type, getters_reject_non_integers_and_null) {
  tr_val others[] = {tr_nil(), tr_bool(true), tr_double(1.0), tr_str("1"), tr_bin("1", 1)};
  int64_t i = 42;
  uint64_t u = 42;
  for (size_t k = 0; k < sizeof others / sizeof others[0]; k++) {
    cr_assert_eq(tr_val_get_int(&others[k], &i), TR_EDECODE);
    cr_assert_eq(tr_val_get_uint(&others[k], &u), TR_EDECODE);
  }
  cr_assert(i == 42 && u == 42);
  tr_val v = tr_uint(1);
  cr_assert_eq(tr_val_get_int(NULL, &i), TR_EINVAL);
  cr_assert_eq(tr_val_get_int(&v, NULL), TR_EINVAL);
  cr_assert_eq(tr_val_get_uint(NULL, &u), TR_EINVAL);
  cr_assert_eq(tr_val_get_uint(&v, NULL), TR_EINVAL);
}

Test(mp_type, tr_str_constructor) {
  tr_val v = tr_str("abc");
  cr_assert_eq(v.type, TR_VAL_STR);
  cr_assert_eq(v.as.bytes.len, 3);
  cr_assert(memcmp(v.as.bytes.ptr, "abc", 3) == 0);
  v = tr_str(NULL);
  cr_assert_eq(v.type, TR_VAL_STR);
  cr_assert_eq(v.as.bytes.len, 0);
  cr_assert_not_null(v.as.bytes.ptr);
}

/* --------------------------------------------------------- encode errors */

Test(mp_encode, enospc_reports_needed_size) {
  char s[300];
  memset(s, 'x', sizeof s);
  tr_val v = tr_strn(s, sizeof s);
  uint8_t buf[16];
  memset(buf, 0xee, sizeof buf);
  size_t len = 0;
  cr_assert_eq(tr_mp_encode_vals(&v, 1, false, buf, sizeof buf, &len), TR_ENOSPC);
  cr_assert_eq(len, 303);
  for (size_t i = 0; i < sizeof buf; i++)
    cr_assert_eq(buf[i], 0xee, "byte %zu written on ENOSPC", i);
  len = 0;
  cr_assert_eq(tr_mp_encode_vals(&v, 1, true, NULL, 0, &len), TR_ENOSPC);
  cr_assert_eq(len, 304);
  /* One byte short still fails; exact fits. */
  uint8_t big[304];
  cr_assert_eq(tr_mp_encode_vals(&v, 1, true, big, 303, &len), TR_ENOSPC);
  cr_assert_eq(tr_mp_encode_vals(&v, 1, true, big, 304, &len), TR_OK);
  cr_assert_eq(len, 304);
}

Test(mp_encode, invalid_values) {
  tr_val bad_type;
  memset(&bad_type, 0, sizeof bad_type);
  bad_type.type = (tr_val_type)99;
  tr_val null_str = tr_strn(NULL, 5);
  tr_val null_bin = tr_bin(NULL, 1);
  uint8_t buf[64];
  size_t len = 12345;
  cr_assert_eq(tr_mp_encode_vals(&bad_type, 1, false, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(tr_mp_encode_vals(&null_str, 1, false, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(tr_mp_encode_vals(&null_bin, 1, false, buf, sizeof buf, &len), TR_EINVAL);
  /* One bad value anywhere in an array fails the whole encoding. */
  tr_val arr[3] = {tr_uint(1), tr_uint(2), bad_type};
  cr_assert_eq(tr_mp_encode_vals(arr, 3, true, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(len, 12345, "*len written on EINVAL");
  cr_assert_eq(tri_mp_val_size(&bad_type), 0);
  cr_assert_eq(tri_mp_val_size(&null_str), 0);
  cr_assert_eq(tri_mp_val_size(NULL), 0);
  cr_assert_eq(tri_mp_write_vals(buf, sizeof buf, arr, 3, true), 0);
#if SIZE_MAX > UINT32_MAX
  /* Lengths msgpack cannot express are refused before any byte is read. */
  tr_val too_long = tr_strn("x", (size_t)UINT32_MAX + 1);
  tr_val too_long_bin = tr_bin("x", (size_t)UINT32_MAX + 1);
  cr_assert_eq(tr_mp_encode_vals(&too_long, 1, false, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(tr_mp_encode_vals(&too_long_bin, 1, false, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(tri_mp_val_size(&too_long), 0);
#endif
}

Test(mp_encode, invalid_arguments) {
  tr_val v[2] = {tr_uint(1), tr_uint(2)};
  uint8_t buf[16];
  size_t len = 12345;
  cr_assert_eq(tr_mp_encode_vals(v, 2, false, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(tr_mp_encode_vals(v, 0, false, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(tr_mp_encode_vals(NULL, 1, true, buf, sizeof buf, &len), TR_EINVAL);
  cr_assert_eq(tr_mp_encode_vals(v, 1, false, buf, sizeof buf, NULL), TR_EINVAL);
  cr_assert_eq(tr_mp_encode_vals(v, 1, false, NULL, 4, &len), TR_EINVAL);
  cr_assert_eq(len, 12345);
  /* An empty array needs no values at all. */
  cr_assert_eq(tr_mp_encode_vals(NULL, 0, true, buf, sizeof buf, &len), TR_OK);
  cr_assert_eq(len, 1);
  cr_assert_eq(buf[0], 0x90);
}

/* ------------------------------------------------------------ integer fast path */

/* Boundary values of every integer form, both signs. */
static const int64_t int_forms[] = {0,
                                    1,
                                    31,
                                    32,
                                    -1,
                                    -31,
                                    -32,
                                    -33,
                                    127,
                                    128,
                                    255,
                                    256,
                                    -127,
                                    -128,
                                    -129,
                                    32767,
                                    32768,
                                    65535,
                                    65536,
                                    -32767,
                                    -32768,
                                    -32769,
                                    2147483647,
                                    2147483648,
                                    4294967295,
                                    4294967296,
                                    -2147483647,
                                    -2147483648LL,
                                    -2147483649LL,
                                    INT64_MAX,
                                    INT64_MIN,
                                    INT64_MIN + 1};

/* tri_mp_write_vals writes one integer byte for byte as msgpack-c does. */
Test(mp_encode, integers_match_msgpack_c) {
  for (size_t k = 0; k < sizeof int_forms / sizeof int_forms[0]; k++) {
    for (int as_uint = 0; as_uint < 2; as_uint++) {
      if (as_uint && int_forms[k] < 0)
        continue;
      msgpack_sbuffer sb;
      msgpack_packer pk;
      msgpack_sbuffer_init(&sb);
      msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
      tr_val v = as_uint ? tr_uint((uint64_t)int_forms[k]) : tr_int(int_forms[k]);
      if (as_uint)
        msgpack_pack_uint64(&pk, (uint64_t)int_forms[k]);
      else
        msgpack_pack_int64(&pk, int_forms[k]);
      uint8_t buf[16];
      size_t n = tri_mp_write_vals(buf, sizeof buf, &v, 1, false);
      cr_expect_eq(n, sb.size, "%lld: %zu bytes, msgpack-c %zu", (long long)int_forms[k], n,
                   sb.size);
      cr_expect_eq(n, tri_mp_val_size(&v));
      cr_expect(n == sb.size && memcmp(buf, sb.data, n) == 0, "%lld: bytes differ",
                (long long)int_forms[k]);
      cr_expect_eq(tri_mp_write_vals(buf, n - 1, &v, 1, false), 0, "no room: 0");
      msgpack_sbuffer_destroy(&sb);
    }
  }
  tr_val big = tr_uint(UINT64_MAX);
  uint8_t buf[16];
  cr_expect_eq(tri_mp_write_vals(buf, sizeof buf, &big, 1, false), 9);
  cr_expect_eq(buf[0], 0xcf);
}
