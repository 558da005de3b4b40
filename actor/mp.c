/*
 * actor/mp.c - the msgpack reader and writer behind every payload.
 *
 * Problem. Every message carries exactly one msgpack value, and payloads can
 * come from outside the process (a journal, a socket). The reader therefore
 * faces untrusted bytes on the hot path, where msgpack-c's unpacker is a poor
 * fit: it allocates a zone per message, and it sizes that zone from container
 * headers before the elements arrive, so a 5-byte array32 header asks for
 * gigabytes (see notes/prior-art.md, section 5).
 *
 * Reading. We read with our own small decoder that follows the msgpack spec
 * byte for byte and never allocates. `walk` validates a buffer in one forward
 * pass, O(len), with an explicit stack of at most TRI_MP_MAX_DEPTH (32)
 * counters, one per open container, holding how many values that container
 * still owes. Two invariants keep hostile headers harmless:
 *   - every value occupies at least one byte, so the total number of values
 *     still owed (`pending`) can never exceed the bytes left. A container
 *     whose count would break that is rejected on its header, before a single
 *     element is walked: the array32 header claiming 2^32-1 elements fails at
 *     once. The same invariant bounds `pending` by `len`, so it cannot wrap;
 *   - each loop iteration consumes at least one byte, so the walk ends.
 * Nesting counts every container, empty ones included, and stops at 32; this
 * is exactly where msgpack-c's own unpacker stops (MSGPACK_EMBED_STACK_SIZE),
 * so what we accept, msgpack-c can decode too.
 * The getters validate the whole buffer first and decode second, so a
 * malformed buffer is always TR_EMALFORMED whatever its first byte says, and
 * the decoding pass cannot fail halfway: an error leaves the outputs untouched.
 * Strings and binaries are returned as pointers into the caller's buffer.
 *
 * Writing. Encoding goes through msgpack-c's packer, so the wire format is
 * msgpack-c's own choice of smallest encodings. Its write callback appends to
 * a caller-sized buffer and refuses to overflow it. Because the runtime wants
 * to allocate a message once with its payload inline, the size is computed
 * first by `tri_mp_val_size`, a table that mirrors msgpack-c 4.0.0's
 * pack_template.h; the tests check the table against the packer's output at
 * every boundary, and the bounded callback makes a mismatch an error rather
 * than an overflow.
 */
#include "mp.h"

#include <assert.h>
#include <msgpack.h>
#include <string.h>

/* Floats are decoded by copying their big-endian bits into a float/double. */
_Static_assert(sizeof(float) == 4 && sizeof(double) == 8,
               "msgpack floats are IEEE 754 binary32/64");

/* ------------------------------------------------------------------ reader */

/* What one msgpack item is, as far as the walker and the getters care. */
enum kind { K_SCALAR, K_ARRAY, K_MAP, K_EXT };

typedef struct item {
  enum kind kind;
  size_t count; /* K_ARRAY: elements; K_MAP: key/value pairs */
  tr_val val;   /* K_SCALAR only */
} item;

/* A cursor over the input: `left` bytes remain from `p` on. */
typedef struct rd {
  const uint8_t *p;
  size_t left;
} rd;

/* Consume n bytes and return where they start, or NULL if fewer remain. */
static const uint8_t *take(rd *r, size_t n) {
  if (n > r->left)
    return NULL;
  const uint8_t *at = r->p;
  r->p += n;
  r->left -= n;
  return at;
}

/* Big-endian loads; msgpack stores every multi-byte number big-endian. */
static uint64_t be(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

/*
 * Read an n-byte big-endian unsigned number into `*out`. Returns false on
 * truncation. n is 1, 2, 4 or 8.
 */
static bool take_be(rd *r, size_t n, uint64_t *out) {
  const uint8_t *at = take(r, n);
  if (!at)
    return false;
  *out = be(at, n);
  return true;
}

/*
 * Reinterpret the low `bits` bits of u as a two's-complement number. Written
 * without converting an out-of-range unsigned value to int64_t, which C leaves
 * implementation-defined: for a negative value the magnitude minus one,
 * ~u & mask, always fits.
 */
static int64_t to_signed(uint64_t u, unsigned bits) {
  uint64_t mask = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1;
  uint64_t sign = UINT64_C(1) << (bits - 1);
  if (!(u & sign))
    return (int64_t)(u & mask);
  return -(int64_t)(~u & mask) - 1;
}

/* A decoded integer goes to UINT when non-negative, INT otherwise (as msgpack-c). */
static void set_signed(item *it, int64_t i) {
  if (i >= 0) {
    it->val.type = TR_VAL_UINT;
    it->val.as.u = (uint64_t)i;
  } else {
    it->val.type = TR_VAL_INT;
    it->val.as.i = i;
  }
}

static void set_uint(item *it, uint64_t u) {
  it->val.type = TR_VAL_UINT;
  it->val.as.u = u;
}

/* A str or bin body of n bytes, borrowed from the input. */
static bool take_bytes(rd *r, size_t n, tr_val_type type, item *it) {
  const uint8_t *at = take(r, n);
  if (!at)
    return false;
  it->val.type = type;
  it->val.as.bytes.ptr = at;
  it->val.as.bytes.len = n;
  return true;
}

/* An ext: one type byte then n data bytes; we only need to skip it. */
static bool skip_ext(rd *r, size_t n, item *it) {
  it->kind = K_EXT;
  return take(r, 1) != NULL && take(r, n) != NULL;
}

/*
 * Read one item: its header and, for everything but arrays and maps, its
 * body. Containers only report their count; their elements follow as further
 * items. Returns false when the bytes end early or the type byte is 0xc1,
 * which the spec reserves as "never used".
 */
static bool next(rd *r, item *it) {
  const uint8_t *at = take(r, 1);
  if (!at)
    return false;
  uint8_t b = *at;
  uint64_t u;

  it->kind = K_SCALAR;
  it->count = 0;
  if (b <= 0x7f) { /* positive fixint */
    set_uint(it, b);
    return true;
  }
  if (b >= 0xe0) { /* negative fixint */
    it->val.type = TR_VAL_INT;
    it->val.as.i = to_signed(b, 8);
    return true;
  }
  if (b <= 0x8f) { /* fixmap */
    it->kind = K_MAP;
    it->count = b & 0x0f;
    return true;
  }
  if (b <= 0x9f) { /* fixarray */
    it->kind = K_ARRAY;
    it->count = b & 0x0f;
    return true;
  }
  if (b <= 0xbf) /* fixstr */
    return take_bytes(r, b & 0x1f, TR_VAL_STR, it);

  switch (b) {
  case 0xc0:
    it->val.type = TR_VAL_NIL;
    it->val.as.u = 0;
    return true;
  case 0xc2:
  case 0xc3:
    it->val.type = TR_VAL_BOOL;
    it->val.as.b = b == 0xc3;
    return true;

  case 0xc4: /* bin 8/16/32 */
  case 0xc5:
  case 0xc6:
    return take_be(r, (size_t)1 << (b - 0xc4), &u) && take_bytes(r, (size_t)u, TR_VAL_BIN, it);

  case 0xc7: /* ext 8/16/32 */
  case 0xc8:
  case 0xc9:
    return take_be(r, (size_t)1 << (b - 0xc7), &u) && skip_ext(r, (size_t)u, it);

  case 0xca: { /* float 32 */
    float f;
    uint32_t bits;
    if (!take_be(r, 4, &u))
      return false;
    bits = (uint32_t)u;
    memcpy(&f, &bits, sizeof f);
    it->val.type = TR_VAL_DOUBLE;
    it->val.as.d = (double)f;
    return true;
  }
  case 0xcb: { /* float 64 */
    double d;
    if (!take_be(r, 8, &u))
      return false;
    memcpy(&d, &u, sizeof d);
    it->val.type = TR_VAL_DOUBLE;
    it->val.as.d = d;
    return true;
  }

  case 0xcc: /* uint 8/16/32/64 */
  case 0xcd:
  case 0xce:
  case 0xcf:
    if (!take_be(r, (size_t)1 << (b - 0xcc), &u))
      return false;
    set_uint(it, u);
    return true;

  case 0xd0: /* int 8/16/32/64 */
  case 0xd1:
  case 0xd2:
  case 0xd3: {
    size_t n = (size_t)1 << (b - 0xd0);
    if (!take_be(r, n, &u))
      return false;
    set_signed(it, to_signed(u, (unsigned)(8 * n)));
    return true;
  }

  case 0xd4: /* fixext 1/2/4/8/16 */
  case 0xd5:
  case 0xd6:
  case 0xd7:
  case 0xd8:
    return skip_ext(r, (size_t)1 << (b - 0xd4), it);

  case 0xd9: /* str 8/16/32 */
  case 0xda:
  case 0xdb:
    return take_be(r, (size_t)1 << (b - 0xd9), &u) && take_bytes(r, (size_t)u, TR_VAL_STR, it);

  case 0xdc: /* array 16/32 */
  case 0xdd:
    if (!take_be(r, (size_t)2 << (b - 0xdc), &u))
      return false;
    it->kind = K_ARRAY;
    it->count = (size_t)u;
    return true;

  case 0xde: /* map 16/32 */
  case 0xdf:
    if (!take_be(r, (size_t)2 << (b - 0xde), &u))
      return false;
    it->kind = K_MAP;
    it->count = (size_t)u;
    return true;

  default: /* 0xc1: never used */
    return false;
  }
}

/* What a successful walk learned about the buffer. */
typedef struct shape {
  item top;         /* the outermost item */
  size_t max_depth; /* deepest nesting of containers; 0 for a scalar or ext */
  bool has_ext;     /* an ext appears anywhere */
} shape;

/*
 * Validate that [p, p+len) is exactly one well-formed value (see the essay
 * for the invariants). Fills *sh on success.
 */
static tr_status walk_prefix(const uint8_t *p, size_t len, shape *sh, size_t *used) {
  /* Values each open container still owes; a map owes two per pair. */
  uint64_t owed[TRI_MP_MAX_DEPTH];
  size_t depth = 0;
  /* Values owed in total, the root included. Invariant: pending <= r.left. */
  uint64_t pending = 1;
  rd r = {p, len};
  item it;

  if (len == 0)
    return TR_EMALFORMED;
  sh->max_depth = 0;
  sh->has_ext = false;
  for (bool first = true; pending > 0; first = false) {
    if (!next(&r, &it))
      return TR_EMALFORMED;
    if (first)
      sh->top = it;
    pending--;
    if (depth > 0)
      owed[depth - 1]--;
    if (it.kind == K_EXT)
      sh->has_ext = true;

    if (it.kind == K_ARRAY || it.kind == K_MAP) {
      /* A count is at most 2^32-1, so a map's 2n fits in 64 bits. */
      uint64_t n = it.kind == K_MAP ? 2 * (uint64_t)it.count : (uint64_t)it.count;
      if (depth == TRI_MP_MAX_DEPTH)
        return TR_EMALFORMED;
      if (depth + 1 > sh->max_depth)
        sh->max_depth = depth + 1;
      /* Each owed value needs at least one byte: reject before walking. */
      if (n > r.left - pending)
        return TR_EMALFORMED;
      if (n > 0) {
        owed[depth++] = n;
        pending += n;
      }
    }
    /* Close every container that has received all it was owed. */
    while (depth > 0 && owed[depth - 1] == 0)
      depth--;
  }
  if (used != NULL) {
    *used = len - r.left;
    return TR_OK;
  }
  return r.left == 0 ? TR_OK : TR_EMALFORMED;
}

static tr_status walk(const uint8_t *p, size_t len, shape *sh) {
  return walk_prefix(p, len, sh, NULL);
}

TR_API tr_status tr_mp_check(const void *bytes, size_t len) {
  shape sh;
  if (!bytes && len > 0)
    return TR_EINVAL;
  return walk(bytes, len, &sh);
}

TR_API tr_status tr_mp_get_val(const void *bytes, size_t len, tr_val *out) {
  shape sh;
  tr_status st;
  if ((!bytes && len > 0) || !out)
    return TR_EINVAL;
  st = walk(bytes, len, &sh);
  if (st != TR_OK)
    return st;
  if (sh.top.kind != K_SCALAR)
    return TR_EDECODE;
  *out = sh.top.val;
  return TR_OK;
}

TR_API tr_status tr_mp_get_vals(const void *bytes, size_t len, tr_val *out, size_t cap, size_t *n) {
  shape sh;
  tr_status st;
  rd r = {bytes, len};
  item it;
  if ((!bytes && len > 0) || (!out && cap > 0) || !n)
    return TR_EINVAL;
  st = walk(bytes, len, &sh);
  if (st != TR_OK)
    return st;
  /*
   * An array whose deepest nesting is itself, with no ext inside, holds only
   * scalars. Type errors are reported before ENOSPC, since a retry with a
   * bigger `out` could not fix them.
   */
  if (sh.top.kind != K_ARRAY || sh.max_depth != 1 || sh.has_ext)
    return TR_EDECODE;
  if (sh.top.count > cap) {
    *n = sh.top.count;
    return TR_ENOSPC;
  }
  /* The walk validated every byte, so this second pass cannot fail. */
  (void)next(&r, &it);
  for (size_t i = 0; i < sh.top.count; i++) {
    bool ok = next(&r, &it);
    assert(ok && it.kind == K_SCALAR);
    (void)ok;
    out[i] = it.val;
  }
  *n = sh.top.count;
  return TR_OK;
}

TR_API tr_status tr_val_get_int(const tr_val *v, int64_t *out) {
  if (!v || !out)
    return TR_EINVAL;
  switch (v->type) {
  case TR_VAL_INT:
    *out = v->as.i;
    return TR_OK;
  case TR_VAL_UINT:
    if (v->as.u > (uint64_t)INT64_MAX)
      return TR_ERANGE;
    *out = (int64_t)v->as.u;
    return TR_OK;
  default:
    return TR_EDECODE;
  }
}

TR_API tr_status tr_val_get_uint(const tr_val *v, uint64_t *out) {
  if (!v || !out)
    return TR_EINVAL;
  switch (v->type) {
  case TR_VAL_UINT:
    *out = v->as.u;
    return TR_OK;
  case TR_VAL_INT:
    /* Decoding only yields negative INTs, but a hand-built tr_int(5) is fine. */
    if (v->as.i < 0)
      return TR_ERANGE;
    *out = (uint64_t)v->as.i;
    return TR_OK;
  default:
    return TR_EDECODE;
  }
}

TR_API tr_val tr_str(const char *s) {
  /* A non-NULL pointer even when empty, so callers may pass it to memcpy. */
  return s ? tr_strn(s, strlen(s)) : tr_strn("", 0);
}

/* ------------------------------------------------------------------ writer */

/*
 * The size tables below mirror msgpack-c 4.0.0's pack_template.h: integers
 * take the smallest form for their value (non-negative int64s use the
 * unsigned forms), msgpack_pack_double always writes float64, and
 * msgpack_pack_str uses str8 from 32 bytes on while bin has no fix form.
 */
static size_t uint_size(uint64_t u) {
  if (u < 128)
    return 1;
  if (u < 256)
    return 2;
  if (u < 65536)
    return 3;
  if (u <= UINT32_MAX)
    return 5;
  return 9;
}

static size_t int_size(int64_t i) {
  if (i >= 0)
    return uint_size((uint64_t)i);
  if (i >= -32)
    return 1;
  if (i >= INT8_MIN)
    return 2;
  if (i >= INT16_MIN)
    return 3;
  if (i >= INT32_MIN)
    return 5;
  return 9;
}

/* Header sizes for a str/bin of len bytes; len <= UINT32_MAX. */
static size_t str_header_size(size_t len) {
  return len < 32 ? 1 : len < 256 ? 2 : len < 65536 ? 3 : 5;
}

static size_t bin_header_size(size_t len) { return len < 256 ? 2 : len < 65536 ? 3 : 5; }

/*
 * A STR/BIN is encodable when its bytes exist and its length fits msgpack's
 * 32-bit length field. The second bound keeps header + len from wrapping a
 * 32-bit size_t.
 */
static bool bytes_ok(const tr_val *v) {
  size_t len = v->as.bytes.len;
  return (v->as.bytes.ptr != NULL || len == 0) && (uint64_t)len <= UINT32_MAX &&
         len <= SIZE_MAX - 5;
}

size_t tri_mp_val_size(const tr_val *v) {
  if (!v)
    return 0;
  switch (v->type) {
  case TR_VAL_NIL:
  case TR_VAL_BOOL:
    return 1;
  case TR_VAL_INT:
    return int_size(v->as.i);
  case TR_VAL_UINT:
    return uint_size(v->as.u);
  case TR_VAL_DOUBLE:
    return 9;
  case TR_VAL_STR:
    return bytes_ok(v) ? str_header_size(v->as.bytes.len) + v->as.bytes.len : 0;
  case TR_VAL_BIN:
    return bytes_ok(v) ? bin_header_size(v->as.bytes.len) + v->as.bytes.len : 0;
  default:
    return 0;
  }
}

size_t tri_mp_array_header_size(size_t n) {
  if ((uint64_t)n > UINT32_MAX)
    return 0;
  return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

/* The packer's destination: a fixed buffer that refuses to overflow. */
typedef struct sink {
  uint8_t *buf;
  size_t cap;
  size_t len;
} sink;

/* msgpack_packer_write: a non-zero return makes the pack call fail with it. */
static int sink_write(void *data, const char *src, size_t n) {
  sink *s = data;
  if (n > s->cap - s->len)
    return -1;
  /* An empty str/bin body may come with a NULL src; memcpy must not see it. */
  if (n > 0) {
    memcpy(s->buf + s->len, src, n);
    s->len += n;
  }
  return 0;
}

/* Pack one value; false when it is invalid or the sink is full. */
static bool pack_val(msgpack_packer *pk, const tr_val *v) {
  switch (v->type) {
  case TR_VAL_NIL:
    return msgpack_pack_nil(pk) == 0;
  case TR_VAL_BOOL:
    return (v->as.b ? msgpack_pack_true(pk) : msgpack_pack_false(pk)) == 0;
  case TR_VAL_INT:
    return msgpack_pack_int64(pk, v->as.i) == 0;
  case TR_VAL_UINT:
    return msgpack_pack_uint64(pk, v->as.u) == 0;
  case TR_VAL_DOUBLE:
    return msgpack_pack_double(pk, v->as.d) == 0;
  case TR_VAL_STR:
    /* The header must be checked here: msgpack-c would truncate a long len. */
    return bytes_ok(v) && msgpack_pack_str(pk, v->as.bytes.len) == 0 &&
           msgpack_pack_str_body(pk, v->as.bytes.ptr, v->as.bytes.len) == 0;
  case TR_VAL_BIN:
    return bytes_ok(v) && msgpack_pack_bin(pk, v->as.bytes.len) == 0 &&
           msgpack_pack_bin_body(pk, v->as.bytes.ptr, v->as.bytes.len) == 0;
  default:
    return false;
  }
}

/* Big-endian `n` bytes of x after the type byte t. */
static size_t put_be(uint8_t *buf, size_t cap, uint8_t t, uint64_t x, unsigned n) {
  if (cap < 1 + (size_t)n)
    return 0;
  buf[0] = t;
  for (unsigned i = n; i > 0; i--, x >>= 8)
    buf[i] = (uint8_t)x;
  return 1 + n;
}

/*
 * One integer, written the way msgpack-c's msgpack_pack_uint64 and
 * msgpack_pack_int64 write it (the smallest form; a non-negative int64 as
 * an unsigned form), without the packer's callback per byte. test_mp
 * compares the two on boundary values of every form.
 */
static size_t put_uint(uint8_t *buf, size_t cap, uint64_t u) {
  if (u < 128)
    return put_be(buf, cap, (uint8_t)u, 0, 0);
  if (u < 256)
    return put_be(buf, cap, 0xcc, u, 1);
  if (u < 65536)
    return put_be(buf, cap, 0xcd, u, 2);
  if (u <= UINT32_MAX)
    return put_be(buf, cap, 0xce, u, 4);
  return put_be(buf, cap, 0xcf, u, 8);
}

static size_t put_int(uint8_t *buf, size_t cap, int64_t i) {
  if (i >= 0)
    return put_uint(buf, cap, (uint64_t)i);
  if (i >= -32)
    return put_be(buf, cap, (uint8_t)(int8_t)i, 0, 0);
  if (i >= INT8_MIN)
    return put_be(buf, cap, 0xd0, (uint64_t)i, 1);
  if (i >= INT16_MIN)
    return put_be(buf, cap, 0xd1, (uint64_t)i, 2);
  if (i >= INT32_MIN)
    return put_be(buf, cap, 0xd2, (uint64_t)i, 4);
  return put_be(buf, cap, 0xd3, (uint64_t)i, 8);
}

size_t tri_mp_write_vals(uint8_t *buf, size_t cap, const tr_val *vals, size_t n, bool as_array) {
  sink s = {buf, cap, 0};
  msgpack_packer pk;

  if (!buf || (!vals && n > 0) || (!as_array && n != 1))
    return 0;
  if (!as_array && vals[0].type == TR_VAL_UINT) /* the common sends, fast */
    return put_uint(buf, cap, vals[0].as.u);
  if (!as_array && vals[0].type == TR_VAL_INT)
    return put_int(buf, cap, vals[0].as.i);
  msgpack_packer_init(&pk, &s, sink_write);
  if (as_array) {
    /* msgpack_pack_array would silently truncate a count above 2^32-1. */
    if (tri_mp_array_header_size(n) == 0 || msgpack_pack_array(&pk, n) != 0)
      return 0;
  }
  for (size_t i = 0; i < n; i++) {
    if (!pack_val(&pk, &vals[i]))
      return 0;
  }
  return s.len;
}

/*
 * Total encoded size of vals into *total; false if any value is invalid or
 * the sum does not fit a size_t (possible only with a 32-bit size_t).
 */
static bool encoded_size(const tr_val *vals, size_t n, bool as_array, size_t *total) {
  size_t sum = 0;
  if (as_array) {
    sum = tri_mp_array_header_size(n);
    if (sum == 0)
      return false;
  }
  for (size_t i = 0; i < n; i++) {
    size_t one = tri_mp_val_size(&vals[i]);
    if (one == 0 || one > SIZE_MAX - sum)
      return false;
    sum += one;
  }
  *total = sum;
  return true;
}

TR_API tr_status tr_mp_encode_vals(const tr_val *vals, size_t n, bool as_array, void *buf,
                                   size_t cap, size_t *len) {
  size_t total, written;
  if (!len || (!vals && n > 0) || (!buf && cap > 0) || (!as_array && n != 1))
    return TR_EINVAL;
  if (!encoded_size(vals, n, as_array, &total))
    return TR_EINVAL;
  *len = total;
  if (total > cap)
    return TR_ENOSPC;
  written = tri_mp_write_vals(buf, cap, vals, n, as_array);
  /* The values were validated above, so only a size-table bug could differ. */
  assert(written == total);
  (void)written;
  return TR_OK;
}

/* ------------------------------------------------------------------ parts */

static size_t part_size(const tri_mp_part *pt) {
  return pt->raw != NULL ? pt->raw_len : tri_mp_val_size(&pt->val);
}

size_t tri_mp_parts_size(const tri_mp_part *parts, size_t n) {
  size_t total = tri_mp_array_header_size(n);
  for (size_t i = 0; i < n; i++) {
    size_t s = part_size(&parts[i]);
    if (s == 0 || total == 0)
      return 0;
    total += s;
  }
  return total;
}

size_t tri_mp_write_parts(uint8_t *buf, size_t cap, const tri_mp_part *parts, size_t n) {
  size_t len = 1;
  if (buf == NULL || cap == 0 || n > 15)
    return 0;
  buf[0] = (uint8_t)(0x90 | n); /* fixarray of n */
  for (size_t i = 0; i < n; i++) {
    const tri_mp_part *pt = &parts[i];
    size_t w;
    if (pt->raw != NULL) {
      if (pt->raw_len > cap - len)
        return 0;
      memcpy(buf + len, pt->raw, pt->raw_len);
      w = pt->raw_len;
    } else {
      w = tri_mp_write_vals(buf + len, cap - len, &pt->val, 1, false);
      if (w == 0)
        return 0;
    }
    len += w;
  }
  return len;
}

tr_status tri_mp_spans(const void *bytes, size_t len, tri_mp_span *spans, size_t n) {
  shape sh;
  rd r = {bytes, len};
  item it;
  tr_status st;

  if (bytes == NULL)
    return TR_EINVAL;
  if ((st = walk(bytes, len, &sh)) != TR_OK)
    return st;
  if (!next(&r, &it) || it.kind != K_ARRAY || it.count != n)
    return TR_EDECODE;
  for (size_t i = 0; i < n; i++) {
    size_t used;
    if ((st = walk_prefix(r.p, r.left, &sh, &used)) != TR_OK)
      return st;
    spans[i] = (tri_mp_span){r.p, used};
    r.p += used;
    r.left -= used;
  }
  return TR_OK;
}
