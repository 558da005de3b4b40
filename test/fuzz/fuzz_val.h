/* fuzz_val.h - comparing decoded values, shared by the fuzz targets. */
#ifndef TROUPE_FUZZ_VAL_H
#define TROUPE_FUZZ_VAL_H

#include "troupe/msg.h"
#include <stdbool.h>
#include <string.h>

/* Two doubles with the same bits (NaN payloads, -0 included). */
static inline bool bits_eq(double a, double b) { return memcmp(&a, &b, sizeof a) == 0; }

/* The same value: doubles bit for bit; STR/BIN by content, or (by_address)
 * at the very same address. */
static inline bool fuzz_val_same(const tr_val *a, const tr_val *b, bool by_address) {
  if (a->type != b->type)
    return false;
  switch (a->type) {
  case TR_VAL_NIL:
    return true;
  case TR_VAL_BOOL:
    return a->as.b == b->as.b;
  case TR_VAL_INT:
    return a->as.i == b->as.i;
  case TR_VAL_UINT:
    return a->as.u == b->as.u;
  case TR_VAL_DOUBLE:
    return bits_eq(a->as.d, b->as.d);
  case TR_VAL_STR:
  case TR_VAL_BIN:
    if (a->as.bytes.len != b->as.bytes.len)
      return false;
    if (by_address)
      return a->as.bytes.ptr == b->as.bytes.ptr;
    return a->as.bytes.len == 0 || memcmp(a->as.bytes.ptr, b->as.bytes.ptr, a->as.bytes.len) == 0;
  }
  return false;
}

#endif
