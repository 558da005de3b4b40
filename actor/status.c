/* status.c - tr_strerror and friends, generated from the one table. */
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

TR_API const char *tr_strerror(tr_status status) {
  switch (status) {
#define TR_STATUS_MSG(name, msg)                                                                   \
  case TR_##name:                                                                                  \
    return msg;
    TR_STATUS_MAP(TR_STATUS_MSG)
#undef TR_STATUS_MSG
  default:
    return "unknown status";
  }
}

TR_API const char *tr_status_name(tr_status status) {
  switch (status) {
#define TR_STATUS_NAME(name, msg)                                                                  \
  case TR_##name:                                                                                  \
    return #name;
    TR_STATUS_MAP(TR_STATUS_NAME)
#undef TR_STATUS_NAME
  default:
    return "UNKNOWN";
  }
}

TR_API const char *tr_dead_reason_name(tr_dead_reason reason) {
  switch (reason) {
#define TR_DEAD_NAME(name, msg)                                                                    \
  case TR_DEAD_##name:                                                                             \
    return #name;
    TR_DEAD_REASON_MAP(TR_DEAD_NAME)
#undef TR_DEAD_NAME
  default:
    return "UNKNOWN";
  }
}

_Noreturn void tri_assert_fail(const char *expr, const char *file, int line, const char *func) {
  fprintf(stderr, "troupe: assertion failed: %s (%s:%d, %s)\n", expr, file, line, func);
  abort();
}
