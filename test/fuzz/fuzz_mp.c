/*
 * test/fuzz/fuzz_mp.c - libFuzzer target: the payload decoders on raw bytes.
 *
 * Problem. tr_mp_check, tr_mp_get_val and tr_mp_get_vals read bytes that may
 * come from outside the process (a journal, a socket). They must never read
 * out of bounds, never allocate, never disagree with msgpack-c about what is
 * one well-formed value, and keep their documented contracts on every input.
 *
 * Approach. Each input goes to every decoder, and the answers are checked
 * against the header's contracts and against each other; any failure aborts,
 * so libFuzzer keeps the input:
 *   - tr_mp_check says OK or EMALFORMED; an accepted buffer loses that status
 *     when cut by one byte or extended by one (msgpack values are
 *     self-delimiting);
 *   - tr_mp_get_val and tr_mp_get_vals report EMALFORMED exactly when the
 *     check does, else OK or EDECODE; on error their outputs are untouched;
 *     tr_mp_get_vals is called with a capacity that always fits, then with
 *     0 (NULL and non-NULL `out`) and the true count minus one, exact and
 *     plus one, and answers ENOSPC with the true count exactly when the
 *     array does not fit, writing no more than the count;
 *   - every STR/BIN a decoder returns lies inside the input buffer;
 *   - tr_val_get_int/uint agree with the decoded type and range;
 *   - no decoder calls malloc (a sanitizer malloc hook aborts if one does);
 *   - whatever decodes, re-encodes with tr_mp_encode_vals and decodes again
 *     to the same values;
 *   - differential: msgpack-c's msgpack_unpack accepts exactly one object
 *     spanning the buffer exactly when tr_mp_check accepts it, and agrees on
 *     every scalar (same rules as test_mp.c: non-negative integers are
 *     POSITIVE_INTEGER, float32 and float64 compare as the same double bits,
 *     STR/BIN point at the same bytes), on which values are containers or
 *     ext, and on which arrays hold only scalars.
 *
 * msgpack-c sizes an array or map's storage from its header before the
 * elements arrive (notes/prior-art.md, section 5), so it is handed only
 * buffers whose headers are bounded: those tr_mp_check accepts (it rejects a
 * count above the bytes left), and rejected ones in which no byte that could
 * be an array16/32 or map16/32 header claims more elements than the whole
 * buffer holds; and never more than MC_MAX_LEN bytes. Its allocations are
 * then at most 48 bytes per input byte per open container.
 */
#include <msgpack.h>
#include <sanitizer/allocator_interface.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "troupe/msg.h"

#include "fuzz_val.h"

/* The largest buffer handed to msgpack-c (tools/fuzz.sh uses -max_len=4096). */
#define MC_MAX_LEN ((size_t)64 * 1024)

#define CHECK(cond)                                                                                \
  do {                                                                                             \
    if (!(cond))                                                                                   \
      fail(__LINE__, #cond);                                                                       \
  } while (0)

static void fail(int line, const char *expr) {
  fprintf(stderr, "fuzz_mp.c:%d: check failed: %s\n", line, expr);
  abort();
}

/* ------------------------------------------------- decoders never allocate */

/* True while a decoder runs; the malloc hook aborts if it sees an allocation. */
static volatile bool in_decoder;

static void on_malloc(const volatile void *ptr, size_t size) {
  (void)ptr;
  (void)size;
  if (in_decoder) {
    in_decoder = false; /* fail() may allocate */
    fail(__LINE__, "a decoder called malloc");
  }
}

static void on_free(const volatile void *ptr) { (void)ptr; }

static tr_status check(const void *b, size_t len) {
  in_decoder = true;
  tr_status st = tr_mp_check(b, len);
  in_decoder = false;
  return st;
}

static tr_status get_val(const void *b, size_t len, tr_val *out) {
  in_decoder = true;
  tr_status st = tr_mp_get_val(b, len, out);
  in_decoder = false;
  return st;
}

static tr_status get_vals(const void *b, size_t len, tr_val *out, size_t cap, size_t *n) {
  in_decoder = true;
  tr_status st = tr_mp_get_vals(b, len, out, cap, n);
  in_decoder = false;
  return st;
}

/* ------------------------------------------------------------ value checks */

/* A byte pattern no decoder writes by chance: outputs still holding it were untouched. */
#define SENTINEL 0xa5

static bool untouched(const void *p, size_t len) {
  const uint8_t *b = p;
  for (size_t i = 0; i < len; i++) {
    if (b[i] != SENTINEL)
      return false;
  }
  return true;
}

/* Two decoded values are the same value (bytes compared by content). */
static bool val_eq(const tr_val *a, const tr_val *b) { return fuzz_val_same(a, b, false); }

/* The integer accessors agree with the value's type and range. */
static void check_int_access(const tr_val *v) {
  int64_t i;
  uint64_t u;
  memset(&i, SENTINEL, sizeof i);
  memset(&u, SENTINEL, sizeof u);
  tr_status si = tr_val_get_int(v, &i);
  tr_status su = tr_val_get_uint(v, &u);
  switch (v->type) {
  case TR_VAL_UINT:
    CHECK(su == TR_OK && u == v->as.u);
    if (v->as.u <= (uint64_t)INT64_MAX)
      CHECK(si == TR_OK && i == (int64_t)v->as.u);
    else
      CHECK(si == TR_ERANGE && untouched(&i, sizeof i));
    break;
  case TR_VAL_INT:
    CHECK(si == TR_OK && i == v->as.i);
    CHECK(su == TR_ERANGE && untouched(&u, sizeof u));
    break;
  default:
    CHECK(si == TR_EDECODE && untouched(&i, sizeof i));
    CHECK(su == TR_EDECODE && untouched(&u, sizeof u));
  }
  CHECK(tr_val_get_int(v, NULL) == TR_EINVAL);
  CHECK(tr_val_get_uint(v, NULL) == TR_EINVAL);
}

/* A value decoded from [data, data+size) is well-typed and points inside it. */
static void check_decoded(const tr_val *v, const uint8_t *data, size_t size) {
  switch (v->type) {
  case TR_VAL_NIL:
  case TR_VAL_UINT:
  case TR_VAL_DOUBLE:
    break;
  case TR_VAL_BOOL:
    /* Read as a byte: a bool holding anything but 0 or 1 is a decoder bug. */
    CHECK(*(const uint8_t *)&v->as.b <= 1);
    break;
  case TR_VAL_INT:
    /* Decoding yields INT only for negative numbers. */
    CHECK(v->as.i < 0);
    break;
  case TR_VAL_STR:
  case TR_VAL_BIN: {
    /* Compared as addresses, so that a wild pointer cannot make it UB. */
    uintptr_t lo = (uintptr_t)data, p = (uintptr_t)v->as.bytes.ptr;
    CHECK(v->as.bytes.ptr != NULL);
    CHECK(p >= lo && p - lo <= size && v->as.bytes.len <= size - (p - lo));
    break;
  }
  default:
    CHECK(!"unknown tr_val type");
  }
  check_int_access(v);
}

/*
 * Room for any count: a buffer of `size` bytes holds at most `size` values,
 * since each takes a byte. Both have outs_cap + 1 entries (one guard).
 */
static tr_val *outs, *outs2;
static size_t outs_cap;

static void outs_reserve(size_t size) {
  if (outs != NULL && outs_cap >= size)
    return;
  free(outs);
  free(outs2);
  outs = malloc((size + 1) * sizeof *outs);
  outs2 = malloc((size + 1) * sizeof *outs2);
  CHECK(outs != NULL && outs2 != NULL);
  outs_cap = size;
}

/* ---------------------------------------------------------- encode again */

static uint8_t *scratch;
static size_t scratch_cap;

/* A buffer of at least n bytes; n derives from the input's size only. */
static uint8_t *scratch_get(size_t n) {
  if (n > scratch_cap) {
    free(scratch);
    scratch = malloc(n);
    CHECK(scratch != NULL);
    scratch_cap = n;
  }
  return scratch;
}

/*
 * Values decoded from `size` bytes re-encode to one value or array of at
 * most 2*size+16 bytes (a float32 grows from 5 to 9 bytes, nothing grows
 * more), and decode back to the same values.
 */
static void reencode(const tr_val *vals, size_t n, bool as_array, size_t size) {
  size_t bound = 2 * size + 16, len = 0;
  CHECK(tr_mp_encode_vals(vals, n, as_array, NULL, 0, &len) == TR_ENOSPC);
  CHECK(len > 0 && len <= bound);
  uint8_t *buf = scratch_get(bound);
  size_t len2 = 0;
  CHECK(tr_mp_encode_vals(vals, n, as_array, buf, bound, &len2) == TR_OK && len2 == len);
  if (!as_array) {
    tr_val back;
    CHECK(get_val(buf, len, &back) == TR_OK && val_eq(&back, &vals[0]));
    return;
  }
  size_t m = 0;
  CHECK(n <= outs_cap && get_vals(buf, len, outs2, outs_cap, &m) == TR_OK && m == n);
  for (size_t i = 0; i < n; i++)
    CHECK(val_eq(&outs2[i], &vals[i]));
}

/* ------------------------------------------------------------- msgpack-c */

static msgpack_zone zone;

/*
 * Could msgpack-c allocate more than the buffer's size per open container?
 * Reads every byte as if it began an array16/32 or map16/32 header, so it
 * bounds the real headers wherever they are.
 */
static bool counts_bounded(const uint8_t *data, size_t size) {
  for (size_t i = 0; i < size; i++) {
    size_t w = data[i] == 0xdc || data[i] == 0xde ? 2 : data[i] == 0xdd || data[i] == 0xdf ? 4 : 0;
    if (w == 0 || size - i - 1 < w)
      continue;
    uint64_t count = 0;
    for (size_t k = 0; k < w; k++)
      count = count << 8 | data[i + 1 + k];
    if (count > size)
      return false;
  }
  return true;
}

static bool mc_is_scalar(const msgpack_object *o) {
  return o->type != MSGPACK_OBJECT_ARRAY && o->type != MSGPACK_OBJECT_MAP &&
         o->type != MSGPACK_OBJECT_EXT;
}

/* A msgpack-c object is the value we decoded (STR/BIN at the same address). */
static void check_same(const msgpack_object *o, const tr_val *v) {
  switch (v->type) {
  case TR_VAL_NIL:
    CHECK(o->type == MSGPACK_OBJECT_NIL);
    return;
  case TR_VAL_BOOL:
    CHECK(o->type == MSGPACK_OBJECT_BOOLEAN && o->via.boolean == v->as.b);
    return;
  case TR_VAL_UINT:
    CHECK(o->type == MSGPACK_OBJECT_POSITIVE_INTEGER && o->via.u64 == v->as.u);
    return;
  case TR_VAL_INT:
    CHECK(o->type == MSGPACK_OBJECT_NEGATIVE_INTEGER && o->via.i64 == v->as.i);
    return;
  case TR_VAL_DOUBLE:
    CHECK(o->type == MSGPACK_OBJECT_FLOAT32 || o->type == MSGPACK_OBJECT_FLOAT64);
    CHECK(bits_eq(o->via.f64, v->as.d));
    return;
  case TR_VAL_STR:
    CHECK(o->type == MSGPACK_OBJECT_STR && o->via.str.size == v->as.bytes.len);
    CHECK((const void *)o->via.str.ptr == v->as.bytes.ptr || v->as.bytes.len == 0);
    return;
  case TR_VAL_BIN:
    CHECK(o->type == MSGPACK_OBJECT_BIN && o->via.bin.size == v->as.bytes.len);
    CHECK((const void *)o->via.bin.ptr == v->as.bytes.ptr || v->as.bytes.len == 0);
    return;
  }
  CHECK(!"unknown tr_val type");
}

/* What our decoders said about one input, for the comparison. */
typedef struct verdict {
  tr_status check;    /* tr_mp_check */
  tr_status val;      /* tr_mp_get_val */
  tr_val v;           /* its value when val is TR_OK */
  tr_status vals;     /* tr_mp_get_vals with a capacity that always fits */
  const tr_val *outs; /* its values when vals is TR_OK */
  size_t n;
} verdict;

static void differential(const uint8_t *data, size_t size, const verdict *our) {
  if (size > MC_MAX_LEN || (our->check != TR_OK && !counts_bounded(data, size)))
    return;
  msgpack_object o;
  size_t off = 0;
  msgpack_unpack_return r = msgpack_unpack((const char *)data, size, &off, &zone, &o);
  bool mc_ok = r == MSGPACK_UNPACK_SUCCESS && off == size;
  if (mc_ok != (our->check == TR_OK)) {
    fprintf(stderr, "fuzz_mp: tr_mp_check says %s, msgpack_unpack %d (consumed %zu of %zu)\n",
            tr_status_name(our->check), (int)r, off, size);
    abort();
  }
  if (mc_ok) {
    if (our->val == TR_OK)
      check_same(&o, &our->v);
    else
      CHECK(!mc_is_scalar(&o));
    bool scalar_array = o.type == MSGPACK_OBJECT_ARRAY;
    for (uint32_t i = 0; scalar_array && i < o.via.array.size; i++)
      scalar_array = mc_is_scalar(&o.via.array.ptr[i]);
    CHECK(scalar_array == (our->vals == TR_OK));
    if (scalar_array) {
      CHECK(o.via.array.size == our->n);
      for (size_t i = 0; i < our->n; i++)
        check_same(&o.via.array.ptr[i], &our->outs[i]);
    }
  }
  msgpack_zone_clear(&zone);
}

/* ------------------------------------------------------------ the target */

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  CHECK(__sanitizer_install_malloc_and_free_hooks(on_malloc, on_free) != 0);
  CHECK(msgpack_zone_init(&zone, MSGPACK_ZONE_CHUNK_SIZE));
  /* Argument contracts that no input reaches. */
  tr_val v;
  size_t n;
  CHECK(check(NULL, 0) == TR_EMALFORMED);
  CHECK(check(NULL, 1) == TR_EINVAL);
  CHECK(get_val(NULL, 0, &v) == TR_EMALFORMED);
  CHECK(get_val(NULL, 1, &v) == TR_EINVAL);
  CHECK(get_vals(NULL, 0, NULL, 0, &n) == TR_EMALFORMED);
  CHECK(get_vals(NULL, 1, &v, 1, &n) == TR_EINVAL);
  CHECK(tr_val_get_int(NULL, &(int64_t){0}) == TR_EINVAL);
  CHECK(tr_val_get_uint(NULL, &(uint64_t){0}) == TR_EINVAL);
  return 0;
}

/*
 * tr_mp_get_vals with capacity `cap` (cap < outs_cap) agrees with the call
 * that always fits; `null_out` passes out=NULL (cap must be 0).
 */
static void check_cap(const uint8_t *data, size_t size, const verdict *our, bool null_out,
                      size_t cap) {
  size_t n = 0;
  memset(outs2, SENTINEL, (cap + 1) * sizeof *outs2);
  tr_status st = get_vals(data, size, null_out ? NULL : outs2, cap, &n);
  if (our->vals != TR_OK) {
    CHECK(st == our->vals);
  } else if (our->n > cap) {
    CHECK(st == TR_ENOSPC && n == our->n);
  } else {
    CHECK(st == TR_OK && n == our->n);
    for (size_t i = 0; i < n; i++) {
      CHECK(val_eq(&outs2[i], &our->outs[i]));
      if (outs2[i].type == TR_VAL_STR || outs2[i].type == TR_VAL_BIN)
        CHECK(outs2[i].as.bytes.ptr == our->outs[i].as.bytes.ptr);
    }
  }
  /* Only the first n entries are written, and only on success. */
  size_t written = st == TR_OK ? n : 0;
  CHECK(untouched(&outs2[written], (cap + 1 - written) * sizeof *outs2));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  verdict our;
  size_t n;

  /* tr_mp_check, and self-delimitation: one byte less or more is malformed. */
  our.check = check(data, size);
  CHECK(our.check == TR_OK || our.check == TR_EMALFORMED);
  CHECK(size > 0 || our.check == TR_EMALFORMED);
  if (our.check == TR_OK) {
    CHECK(check(data, size - 1) == TR_EMALFORMED);
    uint8_t *longer = scratch_get(size + 1);
    memcpy(longer, data, size);
    longer[size] = 0xc0;
    CHECK(check(longer, size + 1) == TR_EMALFORMED);
  }

  /* tr_mp_get_val. */
  memset(&our.v, SENTINEL, sizeof our.v);
  our.val = get_val(data, size, &our.v);
  if (our.check != TR_OK)
    CHECK(our.val == our.check);
  else
    CHECK(our.val == TR_OK || our.val == TR_EDECODE);
  if (our.val == TR_OK)
    check_decoded(&our.v, data, size);
  else
    CHECK(untouched(&our.v, sizeof our.v));
  CHECK(get_val(data, size, NULL) == TR_EINVAL);

  /* tr_mp_get_vals with room for any count: every value takes a byte. */
  outs_reserve(size + 1); /* room for the capacities tried below, up to size + 1 */
  memset(outs, SENTINEL, (size + 1) * sizeof *outs);
  our.n = 0;
  our.vals = get_vals(data, size, outs, size, &our.n);
  our.outs = outs;
  if (our.check != TR_OK)
    CHECK(our.vals == our.check);
  else
    CHECK(our.vals == TR_OK || our.vals == TR_EDECODE);
  if (our.vals == TR_OK) {
    CHECK(our.val == TR_EDECODE); /* an array is not a scalar */
    CHECK(our.n < size);
    for (size_t i = 0; i < our.n; i++)
      check_decoded(&outs[i], data, size);
    CHECK(untouched(&outs[our.n], (size + 1 - our.n) * sizeof *outs));
  } else {
    CHECK(untouched(outs, (size + 1) * sizeof *outs));
  }
  CHECK(get_vals(data, size, outs, size, NULL) == TR_EINVAL);
  CHECK(get_vals(data, size, NULL, 1, &n) == TR_EINVAL);

  /* Around the true count: ENOSPC with that count exactly when it does not fit. */
  check_cap(data, size, &our, true, 0);
  check_cap(data, size, &our, false, 0);
  if (our.vals == TR_OK) {
    /* our.n < size, so every capacity here is within outs_cap. */
    if (our.n > 1)
      check_cap(data, size, &our, false, our.n - 1);
    if (our.n > 0)
      check_cap(data, size, &our, false, our.n);
    check_cap(data, size, &our, false, our.n + 1);
  } else {
    check_cap(data, size, &our, false, 1);
  }

  /* What decodes, encodes again to the same values. */
  if (our.val == TR_OK)
    reencode(&our.v, 1, false, size);
  if (our.vals == TR_OK)
    reencode(outs, our.n, true, size);

  differential(data, size, &our);
  return 0;
}
