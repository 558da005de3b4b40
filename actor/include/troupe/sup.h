/*
 * troupe/sup.h - supervisors: restart failed actors, Erlang/OTP style.
 *
 * A supervisor is an actor that starts an ordered list of children and
 * watches them. When a child exits, its restart type and the supervisor's
 * strategy decide what happens:
 *
 *   restart type  after a failure   after a normal exit ("normal", "stopped")
 *   permanent     restart           restart
 *   transient     restart           stays stopped
 *   temporary     stays stopped     stays stopped
 *
 *   strategy      which children restart when one must
 *   ONE_FOR_ONE   that child only
 *   ONE_FOR_ALL   all children (the others too, in start order)
 *   REST_FOR_ONE  that child and every child started after it
 *   DYNAMIC       (OTP's simple_one_for_one) one child template; children
 *                 are added at run time with tr_sup_start_child; each is
 *                 restarted alone
 *
 * A restart happens in place: the child keeps its tr_ref (refs others hold
 * stay valid) and the messages still waiting in its mailbox; its state is
 * made fresh (zeroed, then init with the child's start argument) and its
 * behaviour is the spec's again. The message whose handling failed is a
 * dead letter (FAILED) carrying the failure reason. While a child waits to
 * be restarted (backoff) its mailbox keeps accepting mail.
 *
 * Restart intensity: at most `intensity` restarts within `period_ms`
 * (default 1 in 5000 ms, as OTP). One more and the supervisor gives up: it
 * stops its children in reverse start order, each one finishing before the
 * next is told, then fails with reason ["shutdown", child id, child's
 * reason], so its own supervisor reacts. A root supervisor (one started with
 * tr_sup_start, not a child) that gives up calls tr_system_exit with that
 * reason: tr_system_wait returns TR_EEXIT.
 *
 * Backoff (which OTP never shipped): with backoff_min_ms > 0 the n-th
 * restart within the period waits min * 2^(n-1) ms, capped at
 * backoff_max_ms, scaled by a random factor in [1 - jitter, 1 + jitter].
 *
 * Stopping: tr_sup_stop stops the subtree in order (reverse start order,
 * each child finished before the next is told; nested supervisors do the
 * same for their own children) and then the supervisor. A plain tr_stop of
 * a supervisor, or tr_system_free, also stops every child, but without
 * waiting between them.
 */
#ifndef TROUPE_SUP_H
#define TROUPE_SUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tr_sup_strategy {
  TR_SUP_ONE_FOR_ONE = 0,
  TR_SUP_ONE_FOR_ALL,
  TR_SUP_REST_FOR_ONE,
  TR_SUP_DYNAMIC,
} tr_sup_strategy;

typedef enum tr_restart_type {
  TR_RESTART_PERMANENT = 0,
  TR_RESTART_TRANSIENT,
  TR_RESTART_TEMPORARY,
} tr_restart_type;

typedef struct tr_sup_spec tr_sup_spec;

typedef struct tr_child_spec {
  const char *id;         /* names the child in reasons; must outlive the supervisor */
  tr_actor_spec actor;    /* the child (unused when `sup` is set) */
  const tr_sup_spec *sup; /* non-NULL: the child is a supervisor; must outlive it */
  /* The start argument init gets, at start and at every restart: arg_size
   * bytes copied from arg into the child; arg_size 0 passes the pointer as
   * is (then it must outlive the child). */
  const void *arg;
  size_t arg_size;
  tr_restart_type restart;
} tr_child_spec;

struct tr_sup_spec {
  const char *name; /* for stats and traces; must outlive the supervisor */
  tr_sup_strategy strategy;
  /* At most `intensity` restarts in `period_ms`. Both 0: 1 in 5000 ms.
   * intensity 0 with a period: never restart (give up at the first exit
   * that needs a restart). At most TR_SUP_MAX_INTENSITY (the supervisor
   * keeps one timestamp per allowed restart). */
  unsigned intensity;
  uint64_t period_ms;
  /* Backoff between restarts; backoff_min_ms 0: restart at once.
   * backoff_max_ms 0: no cap beyond 64 x min. jitter in [0, 1]. */
  uint64_t backoff_min_ms, backoff_max_ms;
  double backoff_jitter;
  /* Children, started in this order. DYNAMIC: exactly one, the template. */
  const tr_child_spec *children;
  size_t nchildren;
};

#define TR_SUP_MAX_CHILDREN  4096u
#define TR_SUP_MAX_INTENSITY 100000u

/*
 * tr_sup_start - start a supervisor and its children (in order, each child's
 * init run in the calling thread; a nested supervisor's children likewise).
 * `children_out` (may be NULL) receives the refs of the direct children, in
 * spec order (none for DYNAMIC); it must have room for spec->nchildren.
 * If a child's init fails, the children already started are stopped and the
 * call returns TR_EINIT. The spec (and everything it points to) must
 * outlive the supervisor.
 * Errors: TR_EINVAL (NULL ctx/spec/out, no children, more than
 * TR_SUP_MAX_CHILDREN, intensity over TR_SUP_MAX_INTENSITY, period or
 * backoff over TR_TIMER_MAX_MS, a child spec without behaviour, DYNAMIC without
 * exactly one child, restart type or strategy out of range, jitter outside
 * [0, 1], backoff_max_ms < backoff_min_ms when set), TR_EINIT, and tr_spawn's
 * errors. Thread-safety: any thread (inside a behaviour, pass its ctx).
 */
TR_API TR_NODISCARD tr_status tr_sup_start(tr_ctx *ctx, const tr_sup_spec *spec, tr_ref *out,
                                           tr_ref *children_out);

/*
 * tr_sup_start_child - add a child to a DYNAMIC supervisor, from its
 * template, with start argument `arg` (arg_size bytes copied; 0: the pointer
 * is passed as is). Returns once the child is started (its init ran in the
 * calling thread). Errors: TR_EINVAL (NULL, not a supervisor, not DYNAMIC),
 * TR_ESTALE (no such supervisor), TR_EINIT, tr_spawn's errors.
 * Any thread.
 */
TR_API TR_NODISCARD tr_status tr_sup_start_child(tr_ctx *ctx, tr_ref sup, const void *arg,
                                                 size_t arg_size, tr_ref *out);

/*
 * tr_sup_terminate_child - stop a child for good: it is not restarted, and a
 * DYNAMIC supervisor forgets it. Asynchronous. Errors: TR_EINVAL, TR_ESTALE
 * (no such supervisor). Any thread.
 */
TR_API TR_NODISCARD tr_status tr_sup_terminate_child(tr_ctx *ctx, tr_ref sup, tr_ref child);

/*
 * tr_sup_stop - stop a supervisor and its subtree in order (see above).
 * Asynchronous. Errors: TR_EINVAL, TR_ESTALE. Any thread.
 */
TR_API TR_NODISCARD tr_status tr_sup_stop(tr_ctx *ctx, tr_ref sup);

/* Counters of one supervisor, for tests and tools. */
typedef struct tr_sup_stats {
  uint64_t restarts; /* child restarts done (each child counted) */
  uint64_t exits;    /* child exits seen */
  uint64_t children; /* live children now */
  bool gave_up;      /* intensity exceeded */
} tr_sup_stats;

/*
 * tr_sup_stats_get - ask a supervisor for its counters and wait for the
 * answer (up to timeout_ms). Errors: TR_EINVAL, TR_ESTALE, TR_ETIMEDOUT,
 * TR_ESTATE (called from a behaviour: it would block a worker).
 * Outside threads only.
 */
TR_API TR_NODISCARD tr_status tr_sup_stats_get(tr_system *sys, tr_ref sup, uint64_t timeout_ms,
                                               tr_sup_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_SUP_H */
