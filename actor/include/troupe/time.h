/*
 * troupe/time.h - timers, request/reply, and blocking contexts.
 *
 * Timers belong to the system: a message sent after a delay, once or
 * periodically, until cancelled. Timers fire in deadline order (equal
 * deadlines in the order they were armed), and a pending timer keeps the
 * system from being quiescent (so tr_system_wait waits for it; a periodic
 * timer must be cancelled first).
 *
 * Request/reply: tr_ask sends a request carrying a correlation id; the
 * receiver answers with tr_reply; the reply comes back to the asker as an
 * ordinary message with the same correlation id, or, if none arrives in
 * time, a message tagged TR_TAG_TIMEOUT with that id. Exactly one of the two
 * arrives. A reply that comes after the timeout is not delivered: it is
 * counted as a dead letter (LATE_REPLY).
 */
#ifndef TROUPE_TIME_H
#define TROUPE_TIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A timer handle: copyable; stale once the timer fired (one-shot) or was
 * cancelled. */
typedef struct tr_timer {
  uint64_t id;
} tr_timer;

#define TR_TIMER_MAX_MS (1000ull * 60 * 60 * 24 * 365) /* one year */

/*
 * tr_send_after - send `to` a message (tag + payload) after `delay_ms`, and
 * then every `period_ms` if period_ms > 0. The payload is raw msgpack
 * (validated, copied); NULL means nil. Inside a behaviour the sender is the
 * running actor. A periodic timer whose receiver has stopped cancels itself.
 * Ownership: the payload is copied. `out` may be NULL (a timer you will not
 * cancel).
 * Errors: TR_EINVAL (NULL ctx, delay or period over TR_TIMER_MAX_MS),
 * TR_EMALFORMED, TR_ETOOBIG, TR_ENOMEM, TR_ESTATE (system stopping).
 * Thread-safety: any thread.
 */
TR_API TR_NODISCARD tr_status tr_send_after(tr_ctx *ctx, tr_ref to, uint32_t tag, uint64_t delay_ms,
                                            uint64_t period_ms, const void *msgpack, size_t len,
                                            tr_timer *out);

/*
 * tr_timer_cancel - stop a timer. TR_OK: it will not fire again (a message
 * it already sent is not recalled). TR_ESTALE: it had already fired (one-shot)
 * or was cancelled, or the handle is not one (a zeroed tr_timer). TR_EINVAL:
 * NULL ctx. Thread-safety: any thread.
 */
TR_API TR_NODISCARD tr_status tr_timer_cancel(tr_ctx *ctx, tr_timer timer);

/* The tag of the message an ask's asker gets when no reply came in time. */
#define TR_TAG_TIMEOUT UINT32_MAX

/*
 * tr_ask - send `to` a request and expect one reply within `timeout_ms`.
 * The asker (the running actor: behaviour only) later receives either the
 * reply (tr_msg_corr(msg) == *corr, tr_msg_is_reply true) or a message with
 * tag TR_TAG_TIMEOUT and the same correlation id (nil payload).
 * Payload: raw msgpack or NULL (nil). `corr` may be NULL.
 * Errors: TR_ESTATE (not inside a behaviour), TR_EINVAL (timeout 0 or over
 * TR_TIMER_MAX_MS), the errors of tr_send_msgpack; on any error no request
 * was sent and no timeout will come (a timeout timer armed before the send
 * failed is cancelled: it shows in timers_armed and timers_cancelled).
 */
TR_API TR_NODISCARD tr_status tr_ask(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *msgpack,
                                     size_t len, uint64_t timeout_ms, uint32_t *corr);

/*
 * tr_reply - answer the request `request` (a message that came from
 * tr_ask). The reply goes to its asker with its correlation id. A reply that
 * is late (the ask timed out) is counted as a LATE_REPLY dead letter and
 * this still returns TR_OK: the replier did its part.
 * Errors: TR_EINVAL (request is not an ask), the errors of tr_send_msgpack.
 * Thread-safety: any ctx of the system (usually the behaviour's handling
 * `request`).
 */
TR_API TR_NODISCARD tr_status tr_reply(tr_ctx *ctx, const tr_msg *request, uint32_t tag,
                                       const void *msgpack, size_t len);

/* The correlation id of a request or reply (0 for any other message). */
TR_API uint32_t tr_msg_corr(const tr_msg *msg);
/* True for a reply produced by tr_reply. */
TR_API bool tr_msg_is_reply(const tr_msg *msg);

/*
 * tr_ask_wait - tr_ask for threads outside the runtime: blocks until the
 * reply arrives or `timeout_ms` passes (TR_ETIMEDOUT).
 * On TR_OK, *reply_tag is the reply's tag, and *reply (of *reply_len bytes) a malloc'd
 * copy of its msgpack payload: the caller frees it with free().
 * Errors: TR_ESTATE (called from a worker, or system not started),
 * TR_ETIMEDOUT, TR_ESTALE (receiver unknown), TR_EFULL, and the errors of
 * tr_send_msgpack. Thread-safety: any thread that is not a worker.
 * It works through a short-lived internal actor that receives the outcome
 * (it shows in tr_system_stats: spawned, stopped, sent, handled, also when
 * the ask fails), and every ask's timeout is a timer (timers_armed /
 * timers_cancelled).
 */
TR_API TR_NODISCARD tr_status tr_ask_wait(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *msgpack,
                                          size_t len, uint64_t timeout_ms, uint32_t *reply_tag,
                                          void **reply, size_t *reply_len);

/*
 * tr_ctx_new_blocking - a context for a thread outside the runtime whose
 * sends to a full HOLD_SENDER mailbox wait for room, up to `timeout_ms`
 * (UINT64_MAX: no limit), instead of returning TR_EFULL at once.
 * Ownership: the caller frees it with tr_ctx_free before tr_system_free.
 * Errors: TR_EINVAL, TR_ENOMEM. Thread-safety: any thread; the ctx itself
 * may be used by several threads at once.
 */
TR_API TR_NODISCARD tr_status tr_ctx_new_blocking(tr_system *sys, uint64_t timeout_ms,
                                                  tr_ctx **out);
TR_API void tr_ctx_free(tr_ctx *ctx);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_TIME_H */
