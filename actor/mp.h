/*
 * actor/mp.h - internal msgpack sizing and encoding for the runtime's hot path.
 *
 * The send path sizes a payload first (to allocate the message once, with the
 * payload inline) and then encodes straight into it. These three functions
 * are that split; tr_mp_encode_vals() in msg.h is built on them. The reader
 * side (tr_mp_check, tr_mp_get_val, tr_mp_get_vals) is public and declared in
 * troupe/msg.h.
 *
 * Everything here is pure: no allocation, no global state, any thread.
 */
#ifndef TROUPE_ACTOR_MP_H
#define TROUPE_ACTOR_MP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "troupe/msg.h"

/*
 * The deepest nesting of arrays and maps a payload may have, counting every
 * container including empty ones. It equals msgpack-c's compiled-in limit
 * (MSGPACK_EMBED_STACK_SIZE), so whatever we accept msgpack-c can decode.
 */
#define TRI_MP_MAX_DEPTH 32

/*
 * Exact msgpack-encoded size of one value, as msgpack-c's packer writes it;
 * 0 if the value is invalid (NULL, unknown type, STR/BIN with a NULL pointer
 * and a non-zero length, or a length above UINT32_MAX).
 */
size_t tri_mp_val_size(const tr_val *v);

/*
 * Encoded size of an array header for n elements (1, 3 or 5 bytes); 0 when
 * n exceeds UINT32_MAX, which msgpack cannot express.
 */
size_t tri_mp_array_header_size(size_t n);

/*
 * Encode `n` values into buf: one bare value when `as_array` is false (n must
 * be 1), else an array of n. The caller sized buf with the functions above.
 * Returns the number of bytes written; 0 on invalid input or when cap is too
 * small (a valid encoding is never empty, so 0 is unambiguous). On 0 the
 * contents of buf are unspecified.
 */
size_t tri_mp_write_vals(uint8_t *buf, size_t cap, const tr_val *vals, size_t n, bool as_array);

/*
 * The runtime's own messages (DOWN, EXIT, dead letters, supervision) are
 * arrays of at most 15 parts, each a scalar or one already encoded value
 * (a reason, a forwarded payload) copied as is.
 */
typedef struct tri_mp_part {
  tr_val val;      /* used when raw is NULL */
  const void *raw; /* one encoded msgpack value */
  size_t raw_len;
} tri_mp_part;

#define TRI_MP_VAL(v)    ((tri_mp_part){.val = (v)})
#define TRI_MP_RAW(p, n) ((tri_mp_part){.raw = (p), .raw_len = (n)})
/* Encoded size of the array of parts (0 if a part is invalid). */
size_t tri_mp_parts_size(const tri_mp_part *parts, size_t n);
/* Write it; returns bytes written, 0 on error (n > 15, no room). */
size_t tri_mp_write_parts(uint8_t *buf, size_t cap, const tri_mp_part *parts, size_t n);

/* The byte span of each of the n elements of an array that is all of
 * bytes. TR_EMALFORMED, or TR_EDECODE when it is not an array of n. */
typedef struct tri_mp_span {
  const uint8_t *p;
  size_t len;
} tri_mp_span;
tr_status tri_mp_spans(const void *bytes, size_t len, tri_mp_span *spans, size_t n);

#endif /* TROUPE_ACTOR_MP_H */
