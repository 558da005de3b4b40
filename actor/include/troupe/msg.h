/*
 * troupe/msg.h - messages: a tag plus one msgpack value.
 *
 * Every message carries a 32-bit tag chosen by the application and a payload
 * that is exactly one well-formed msgpack value (a message "without payload"
 * carries msgpack nil). The payload can therefore be logged, traced,
 * journalled or sent to another process unchanged.
 *
 * Reading follows msgpack's own rules, as msgpack-c decodes them:
 * - any non-negative integer decodes as TR_VAL_UINT, whatever width or
 *   signedness the sender packed; negative ones as TR_VAL_INT. The scalar
 *   getters accept both and return TR_ERANGE when the value does not fit;
 * - strings and binaries are NOT NUL-terminated and point into the message:
 *   they are valid only while the behaviour handling the message runs;
 * - lengths and counts read from a payload never size an allocation.
 */
#ifndef TROUPE_MSG_H
#define TROUPE_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A received message. Borrowed: valid only during the behaviour call. */
typedef struct tr_msg tr_msg;

typedef enum tr_val_type {
  TR_VAL_NIL,
  TR_VAL_BOOL,
  TR_VAL_INT,    /* a negative integer (decoding), or any int64 (encoding) */
  TR_VAL_UINT,   /* a non-negative integer */
  TR_VAL_DOUBLE, /* float32 or float64 on the wire; always a double here */
  TR_VAL_STR,    /* UTF-8 by convention; not NUL-terminated */
  TR_VAL_BIN
} tr_val_type;

/*
 * One scalar msgpack value. Used to encode a small array (tr_send_vals) and
 * to decode one (tr_msg_get_vals). For STR and BIN, `bytes.ptr` points into
 * the caller's memory when encoding and into the message when decoding.
 */
typedef struct tr_val {
  tr_val_type type;
  union {
    bool b;
    int64_t i;
    uint64_t u;
    double d;
    struct {
      const void *ptr;
      size_t len;
    } bytes;
  } as;
} tr_val;

/* Constructors for tr_val literals: tr_val v[] = {tr_int(1), tr_str("x")}. */
static inline tr_val tr_nil(void) {
  tr_val v = {TR_VAL_NIL, {.u = 0}};
  return v;
}
static inline tr_val tr_bool(bool b) {
  tr_val v = {TR_VAL_BOOL, {.b = b}};
  return v;
}
static inline tr_val tr_int(int64_t i) {
  tr_val v = {TR_VAL_INT, {.i = i}};
  return v;
}
static inline tr_val tr_uint(uint64_t u) {
  tr_val v = {TR_VAL_UINT, {.u = u}};
  return v;
}
static inline tr_val tr_double(double d) {
  tr_val v = {TR_VAL_DOUBLE, {.d = d}};
  return v;
}
static inline tr_val tr_strn(const char *s, size_t n) {
  tr_val v = {TR_VAL_STR, {.bytes = {s, n}}};
  return v;
}
/* A STR value from a NUL-terminated string (NULL gives the empty string). */
TR_API tr_val tr_str(const char *s);
static inline tr_val tr_bin(const void *p, size_t n) {
  tr_val v = {TR_VAL_BIN, {.bytes = {p, n}}};
  return v;
}

/*
 * tr_val_get_int / tr_val_get_uint - read a decoded integer of either
 * msgpack sign class into the requested C type.
 * Errors: TR_EINVAL (NULL), TR_EDECODE if `v` is not an integer, TR_ERANGE
 * if it does not fit.
 * Thread-safety: any thread.
 */
TR_API TR_NODISCARD tr_status tr_val_get_int(const tr_val *v, int64_t *out);
TR_API TR_NODISCARD tr_status tr_val_get_uint(const tr_val *v, uint64_t *out);

/* The message's tag, as given to the send call. */
TR_API uint32_t tr_msg_tag(const tr_msg *msg);

/*
 * tr_msg_payload - the raw msgpack bytes of the payload (never empty: at
 * least one byte, nil for a message sent without payload).
 * Ownership: borrowed, valid during the behaviour call.
 */
TR_API const void *tr_msg_payload(const tr_msg *msg, size_t *len);

/*
 * Scalar getters: decode the whole payload as one value of the named kind.
 * Errors: TR_EINVAL for NULL arguments; TR_EDECODE when the payload is a
 * value of another kind; TR_ERANGE when an integer does not fit; TR_EMALFORMED
 * when the bytes are not one complete msgpack value (cannot happen for
 * payloads that went through a troupe send, which validates them).
 * On error `*out` is left untouched.
 * Ownership: str/bin results point into the message (borrowed).
 * Thread-safety: the thread running the behaviour.
 */
TR_API TR_NODISCARD tr_status tr_msg_get_int(const tr_msg *msg, int64_t *out);
TR_API TR_NODISCARD tr_status tr_msg_get_uint(const tr_msg *msg, uint64_t *out);
TR_API TR_NODISCARD tr_status tr_msg_get_double(const tr_msg *msg, double *out);
TR_API TR_NODISCARD tr_status tr_msg_get_bool(const tr_msg *msg, bool *out);
TR_API TR_NODISCARD tr_status tr_msg_get_str(const tr_msg *msg, const char **ptr, size_t *len);
TR_API TR_NODISCARD tr_status tr_msg_get_bin(const tr_msg *msg, const void **ptr, size_t *len);
/* True when the payload is msgpack nil (a message sent without payload). */
TR_API bool tr_msg_is_nil(const tr_msg *msg);

/*
 * tr_msg_get_vals - decode a payload that is a msgpack array of scalars.
 * Writes the values to `out` and their number to `*n`.
 * Errors: TR_EDECODE if the payload is not an array or holds a nested
 * array/map/ext (this wins over TR_ENOSPC); TR_ENOSPC if the array has more
 * than `cap` elements (`*n` then holds the array's length, so the caller can
 * retry; pass out=NULL, cap=0 to ask); TR_EMALFORMED as above. On any error
 * `out` is left untouched. Ownership: STR/BIN values point into the message
 * (borrowed).
 */
TR_API TR_NODISCARD tr_status tr_msg_get_vals(const tr_msg *msg, tr_val *out, size_t cap,
                                              size_t *n);

/*
 * Decoders on plain bytes, for payloads kept outside a behaviour (a journal
 * record, a network frame). Same rules and statuses as the tr_msg_* getters;
 * `bytes` must hold exactly one msgpack value, else TR_EMALFORMED (also for
 * an empty buffer, NULL with len 0 included, and for nesting deeper than 32
 * levels, msgpack-c's own limit); TR_EINVAL for NULL bytes with len > 0. They allocate nothing, and
 * a container whose declared count exceeds the bytes left is rejected from its header.
 */
TR_API TR_NODISCARD tr_status tr_mp_check(const void *bytes, size_t len);
TR_API TR_NODISCARD tr_status tr_mp_get_val(const void *bytes, size_t len, tr_val *out);
TR_API TR_NODISCARD tr_status tr_mp_get_vals(const void *bytes, size_t len, tr_val *out, size_t cap,
                                             size_t *n);

/*
 * tr_mp_encode_vals - encode `n` values as msgpack into `buf`: one value when
 * `as_array` is false (n must be 1), else an array of n.
 * Writes the encoded size to `*len` (also when `buf` is too small, so the
 * caller can size a buffer: pass buf=NULL, cap=0 to ask).
 * Errors: TR_EINVAL (bad arguments or value type), TR_ENOSPC (buffer too small).
 * Thread-safety: any thread.
 */
TR_API TR_NODISCARD tr_status tr_mp_encode_vals(const tr_val *vals, size_t n, bool as_array,
                                                void *buf, size_t cap, size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_MSG_H */
