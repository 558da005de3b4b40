/*
 * troupe/status.h - the one table of status codes.
 *
 * Every fallible troupe call returns a tr_status. TR_STATUS_MAP generates the
 * enum, tr_strerror() and tr_status_name() from one list, so the three can
 * never drift apart. An error means nothing happened: no ownership moved, no
 * message was accepted, no callback will fire.
 */
#ifndef TROUPE_STATUS_H
#define TROUPE_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

#if defined(TROUPE_BUILDING) && defined(__GNUC__)
#define TR_API __attribute__((visibility("default")))
#else
#define TR_API
#endif

#if defined(__GNUC__)
#define TR_NODISCARD __attribute__((warn_unused_result))
#else
#define TR_NODISCARD
#endif

/* X(NAME, "message") - append only; the numeric values are part of the ABI. */
#define TR_STATUS_MAP(X)                                                                           \
  X(OK, "success")                                                                                 \
  X(EINVAL, "invalid argument")                                                                    \
  X(ENOMEM, "out of memory")                                                                       \
  X(ESTALE, "unknown actor reference, or its actor has stopped")                                   \
  X(EDECODE, "message payload is not of the requested type")                                       \
  X(EMALFORMED, "payload is not one well-formed msgpack value")                                    \
  X(ERANGE, "decoded value does not fit the requested type")                                       \
  X(ETOOBIG, "message payload is larger than the system's limit")                                  \
  X(ENOSPC, "output buffer or array is too small")                                                 \
  X(ESTATE, "operation not allowed in the system's current state")                                 \
  X(ELIMIT, "a runtime limit was reached (too many actors)")                                       \
  X(EINIT, "the actor's init function failed")                                                     \
  X(EFAIL, "the behaviour reported a failure")                                                     \
  X(ETIMEDOUT, "timed out")                                                                        \
  X(ESYS, "an operating-system call failed (thread creation, file I/O)")                           \
  X(EFULL, "the receiver's bounded mailbox is full")                                               \
  X(EEXIT, "the system was stopped from inside (a root supervisor gave up, or tr_system_exit)")    \
  X(ECORRUPT, "stored data failed its checksum or framing (a corrupt journal record)")

typedef enum tr_status {
#define TR_STATUS_ENUM(name, msg) TR_##name,
  TR_STATUS_MAP(TR_STATUS_ENUM)
#undef TR_STATUS_ENUM
      TR_STATUS_COUNT_
} tr_status;

/*
 * tr_strerror - a one-line English description of a status.
 * Ownership: returns a static string; never NULL (unknown codes get
 * "unknown status"). Thread-safety: any thread.
 */
TR_API const char *tr_strerror(tr_status status);

/*
 * tr_status_name - the status's enum name without the TR_ prefix ("ESTALE").
 * Ownership: static string; never NULL. Thread-safety: any thread.
 */
TR_API const char *tr_status_name(tr_status status);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_STATUS_H */
