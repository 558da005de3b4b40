/*
 * troupe/core.h - systems, actors, refs, sending.
 *
 * A tr_system owns N worker threads and every actor spawned in it. An actor is
 * a behaviour function plus a private state; it is reached only through a
 * tr_ref, a copyable id with a generation, never a pointer. A behaviour runs on
 * one worker at a time, so its state needs no lock.
 *
 * Thread-safety words used below:
 *   any thread      - callable from workers and from threads troupe did not make;
 *   behaviour only  - only with the tr_ctx passed to the running behaviour;
 *   owner only      - from the thread that created the system, not concurrently
 *                     with other owner-only calls.
 */
#ifndef TROUPE_CORE_H
#define TROUPE_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "msg.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tr_system tr_system;

/*
 * A context: what a send or spawn is done "as". Inside a behaviour it is the
 * ctx passed in (sends carry the running actor as sender and use the worker's
 * message pool). Outside, tr_system_ctx() gives the system's external ctx
 * (sender is TR_REF_NONE).
 */
typedef struct tr_ctx tr_ctx;

/* An actor reference: index (low 32 bits) and generation (high 32 bits). */
typedef struct tr_ref {
  uint64_t id;
} tr_ref;

#define TR_REF_NONE ((tr_ref){0})
static inline bool tr_ref_eq(tr_ref a, tr_ref b) { return a.id == b.id; }
static inline bool tr_ref_is_none(tr_ref r) { return r.id == 0; }

/*
 * A behaviour handles one message. Return TR_OK to go on. Any other status
 * (or a tr_fail call) is a failure (see troupe/fault.h): the message is a
 * dead letter (FAILED) and the actor exits: a supervised actor waits for its
 * supervisor to restart it in place (troupe/sup.h); any other actor stops,
 * its fini runs and the mail still queued becomes dead letters (STOPPED).
 */
typedef tr_status (*tr_behaviour)(tr_ctx *ctx, void *state, const tr_msg *msg);

/* ------------------------------------------------------------------ system */

typedef struct tr_system_config {
  unsigned threads;       /* worker threads; 0 = number of online CPUs */
  unsigned batch;         /* messages per actor run; 0 = default (100) */
  size_t max_msg_size;    /* payload limit in bytes; 0 = default (16 MiB) */
  unsigned mailbox_slots; /* default ring slots per mailbox; 0 = default (8) */
  /* Non-zero: deterministic scheduling (for testing). One worker (threads
   * must be 0 or 1); the order in which runnable actors run, and the number
   * of messages each run takes, come from a PRNG seeded with this value, so
   * a seed explores one interleaving and the same seed replays it, as long
   * as no outside thread or timer makes actors runnable at times of its own. */
  uint64_t seed;
} tr_system_config;

#define TR_MAX_THREADS       256u
#define TR_MAX_BATCH         1000000u
#define TR_MAX_MAILBOX_SLOTS 65536u

/*
 * tr_system_new - create a system (threads are not started yet).
 * `cfg` may be NULL for defaults.
 * Ownership: `*out` is the caller's, release it with tr_system_free.
 * Errors: TR_EINVAL (out NULL, threads > TR_MAX_THREADS, batch >
 * TR_MAX_BATCH, mailbox_slots not a power of two in [4, TR_MAX_MAILBOX_SLOTS],
 * max_msg_size > UINT32_MAX, seed with threads > 1),
 * TR_ENOMEM. Thread-safety: any thread.
 */
TR_API TR_NODISCARD tr_status tr_system_new(const tr_system_config *cfg, tr_system **out);

/*
 * tr_system_start - start the worker threads. Actors spawned and messages
 * sent before start wait until then.
 * Errors: TR_EINVAL (NULL), TR_ESTATE (already started or stopped), TR_ESYS
 * (thread creation failed; no thread is left running). Thread-safety: owner
 * only.
 */
TR_API TR_NODISCARD tr_status tr_system_start(tr_system *sys);

/*
 * tr_system_wait - block until the system is quiescent: no actor runnable
 * and every mailbox empty (every accepted message handled or dead-lettered),
 * or until tr_system_stop. tr_system_wait_for gives up after `timeout_ms`.
 * Errors: TR_EINVAL (NULL), TR_ESTATE (not started, or called from a
 * worker), TR_ETIMEDOUT.
 * Thread-safety: any thread except a worker (a behaviour must not wait).
 */
TR_API TR_NODISCARD tr_status tr_system_wait(tr_system *sys);
TR_API TR_NODISCARD tr_status tr_system_wait_for(tr_system *sys, uint64_t timeout_ms);

/*
 * tr_system_stop - stop and join the workers. Messages still queued stay
 * queued and are counted as dead letters (reason SHUTDOWN) by tr_system_free.
 * Idempotent. Once stopping, calls from outside the workers that would send
 * or stop (tr_send*, tr_stop, tr_spawn, timers, asks) return TR_ESTATE.
 * Errors: TR_EINVAL (NULL), TR_ESTATE when called from a worker.
 * Thread-safety: owner only.
 */
TR_API tr_status tr_system_stop(tr_system *sys);

/*
 * tr_system_free - stop if needed, run every live actor's fini, count queued
 * mail as dead letters, release all memory. NULL is a no-op.
 * Thread-safety: owner only; no other call on `sys` may run concurrently.
 */
TR_API void tr_system_free(tr_system *sys);

/* The system's external context (sender TR_REF_NONE). Any thread. */
TR_API tr_ctx *tr_system_ctx(tr_system *sys);

/* Number of worker threads the system runs (after defaults are applied). */
TR_API unsigned tr_system_threads(const tr_system *sys);

/* ------------------------------------------------------------------ actors */

/*
 * What a bounded mailbox does when a message arrives and `capacity`
 * messages already wait. Whatever the policy, nothing is lost silently:
 * every refusal and drop is counted (tr_actor_stats, tr_system_stats).
 */
typedef enum tr_mailbox_policy {
  /* Unbounded (the default): never refuses; past its ring it spills. */
  TR_MAILBOX_UNBOUNDED = 0,
  /* The send returns TR_EFULL and nothing was sent: the caller keeps its
   * data and decides. Counted as refused. */
  TR_MAILBOX_REFUSE,
  /* The new message is dropped; the send returns TR_OK. Counted as a dead
   * letter (DROPPED_NEWEST). */
  TR_MAILBOX_DROP_NEWEST,
  /* The oldest waiting message is dropped when the receiver next runs, so
   * it handles the newest `capacity`. Counted as dead letters
   * (DROPPED_OLDEST). Until the receiver runs at most 2 x capacity wait;
   * past that, new messages are dropped too (DROPPED_NEWEST). */
  TR_MAILBOX_DROP_OLDEST,
  /* Back-pressure. The message is queued, and a sending actor is held: it
   * finishes the message it is handling, then is not run again until the
   * receiver has drained to half its capacity. A held actor's own mailbox
   * keeps filling, so senders to it are held in turn: back-pressure
   * propagates upstream through a pipeline. An outside thread using a
   * blocking ctx (tr_ctx_new_blocking) waits for room, up to its timeout
   * (TR_ETIMEDOUT); with the system's plain ctx it gets TR_EFULL. Deadlock
   * freedom: a hold that would close a cycle of holds (A held on B held on
   * A, or a chain longer than 64) is not made; that sender's message goes
   * past the bound, counted as overflow. So every chain of holds ends at an
   * actor that can run. A mailbox can exceed its capacity by what one
   * behaviour call of each sender held on it sends, and by overflow. */
  TR_MAILBOX_HOLD_SENDER,
} tr_mailbox_policy;

typedef struct tr_actor_spec {
  const char *name;       /* for stats and traces; not copied: must outlive the actor */
  tr_behaviour behaviour; /* required */
  size_t state_size;      /* bytes of private state the runtime allocates (may be 0) */
  /* Fill a zeroed state from the spawn argument. NULL = leave zeroed.
   * A non-OK return fails the spawn with TR_EINIT; fini is not called. */
  tr_status (*init)(void *state, const void *arg);
  void (*fini)(void *state);        /* release what init took; NULL = nothing */
  unsigned mailbox_slots;           /* ring slots; 0 = the system default */
  tr_mailbox_policy mailbox_policy; /* 0 = unbounded */
  unsigned mailbox_capacity;        /* messages, 1..TR_MAX_MAILBOX_CAPACITY, for a bounded policy */
} tr_actor_spec;

#define TR_MAX_MAILBOX_CAPACITY (1u << 30)

#define TR_MAX_STATE_SIZE ((size_t)1 << 30)

/*
 * tr_spawn - create an actor. `init(state, arg)` runs in the calling thread
 * before the actor is reachable, so it needs no synchronisation.
 * Ownership: `spec` and `arg` are only read during the call, except
 * spec->name, which must outlive the actor (use a string literal).
 * Errors: TR_EINVAL (NULL ctx/spec/behaviour/out, state_size >
 * TR_MAX_STATE_SIZE, bad mailbox_slots, mailbox_policy out of range, a
 * bounded policy with capacity 0 or over TR_MAX_MAILBOX_CAPACITY),
 * TR_ESTATE (system stopped),
 * TR_ELIMIT (2^26 live actors), TR_ENOMEM, TR_EINIT.
 * Thread-safety: any thread (inside a behaviour, pass its ctx).
 */
TR_API TR_NODISCARD tr_status tr_spawn(tr_ctx *ctx, const tr_actor_spec *spec, const void *arg,
                                       tr_ref *out);

/* The running actor's ref. Behaviour only. */
TR_API tr_ref tr_self(const tr_ctx *ctx);
/* The system a ctx belongs to. Any thread. */
TR_API tr_system *tr_ctx_system(const tr_ctx *ctx);
/* The sender of a message (TR_REF_NONE when sent from outside). */
TR_API tr_ref tr_msg_sender(const tr_msg *msg);

/*
 * tr_become - handle the next message with `behaviour` instead (the current
 * call finishes normally). Errors: TR_EINVAL (NULL), TR_ESTATE (not inside a
 * behaviour). Behaviour only.
 */
TR_API TR_NODISCARD tr_status tr_become(tr_ctx *ctx, tr_behaviour behaviour);

/*
 * tr_stop - stop an actor: it finishes the message it is handling (if any),
 * runs fini, and the mail still queued is counted as dead letters (STOPPED).
 * Stopping yourself (tr_self) takes effect when the behaviour returns.
 * A supervised actor's stop is an exit its supervisor decides on (a
 * permanent child is restarted: use tr_sup_terminate_child to end it).
 * Asynchronous: returns once the stop is requested.
 * Errors: TR_ESTALE (unknown or already stopped actor), TR_EINVAL.
 * Thread-safety: any thread.
 */
TR_API TR_NODISCARD tr_status tr_stop(tr_ctx *ctx, tr_ref ref);

/* ------------------------------------------------------------------ sending */

/*
 * Sending. Each call builds one message (tag + msgpack payload) and enqueues
 * it on the receiver's mailbox, making the receiver runnable if it was idle.
 * The default mailbox never refuses: past its ring it spills, counted.
 * Messages from one sender to one receiver are handled in send order.
 *
 * Ownership: the payload is copied; the caller keeps its buffers.
 * Errors (nothing was sent): TR_EINVAL (NULL ctx, bad value type, NULL
 * bytes with a length, NULL bytes for tr_send_msgpack), TR_ESTALE (unknown
 * or stopped receiver; counted as a dead letter), TR_EFULL (a full bounded
 * mailbox refused it: REFUSE, or HOLD_SENDER from an outside thread),
 * TR_ETIMEDOUT (a blocking ctx waited for room in vain), TR_ETOOBIG
 * (payload over the system's max_msg_size), TR_EMALFORMED (tr_send_msgpack
 * bytes not exactly one well-formed msgpack value), TR_ENOMEM, TR_ESTATE
 * (from outside a behaviour once the system is stopping, or freed).
 * A ref is only meaningful in the system that made it: refs carry no system
 * id, so another system's ref is not detected (it may name a live actor).
 * Thread-safety: any thread (inside a behaviour, pass its ctx).
 */
TR_API TR_NODISCARD tr_status tr_send(tr_ctx *ctx, tr_ref to, uint32_t tag);
TR_API TR_NODISCARD tr_status tr_send_int(tr_ctx *ctx, tr_ref to, uint32_t tag, int64_t v);
TR_API TR_NODISCARD tr_status tr_send_uint(tr_ctx *ctx, tr_ref to, uint32_t tag, uint64_t v);
TR_API TR_NODISCARD tr_status tr_send_double(tr_ctx *ctx, tr_ref to, uint32_t tag, double v);
TR_API TR_NODISCARD tr_status tr_send_str(tr_ctx *ctx, tr_ref to, uint32_t tag, const char *s,
                                          size_t len);
TR_API TR_NODISCARD tr_status tr_send_bin(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *p,
                                          size_t len);
/* A msgpack array of `n` scalars (n may be 0: an empty array). */
TR_API TR_NODISCARD tr_status tr_send_vals(tr_ctx *ctx, tr_ref to, uint32_t tag, const tr_val *vals,
                                           size_t n);
/* Raw msgpack bytes (e.g. from msgpack-c's packer); validated, then copied. */
TR_API TR_NODISCARD tr_status tr_send_msgpack(tr_ctx *ctx, tr_ref to, uint32_t tag,
                                              const void *bytes, size_t len);

/* ------------------------------------------------------------------ stats */

typedef struct tr_actor_stats {
  uint64_t received;   /* accepted into the mailbox */
  uint64_t handled;    /* passed to the behaviour */
  uint64_t spilled;    /* accepted past the ring, onto the overflow list */
  uint64_t depth;      /* waiting now (a racy snapshot while it runs) */
  uint64_t peak_depth; /* deepest the mailbox was seen: at run starts and spills */
  /* Bounded mailboxes (all 0 for unbounded ones): */
  uint64_t capacity; /* the bound */
  uint64_t refused;  /* sends answered TR_EFULL */
  uint64_t dropped;  /* dead letters DROPPED_NEWEST + DROPPED_OLDEST */
  uint64_t overflow; /* accepted past the bound (senders that may not be held) */
  uint64_t holds;    /* times a sending actor was held on this mailbox */
  /* Time, measured per run (a clock read at its begin and end), not per
   * message; 0 when the counters are compiled out (TROUPE_COUNTERS=OFF): */
  uint64_t busy_ns; /* time in its runs: behaviour calls and the runtime's work between */
  uint64_t runs;    /* its runs on a worker, modulo 2^32 */
} tr_actor_stats;

/*
 * tr_actor_stats_get - counters of one live actor. Counters are exact once
 * the system is quiescent; while it runs they are a consistent-enough
 * snapshot (each field read atomically, not all at one instant).
 * Errors: TR_EINVAL, TR_ESTALE. Thread-safety: any thread.
 */
TR_API TR_NODISCARD tr_status tr_actor_stats_get(tr_ctx *ctx, tr_ref ref, tr_actor_stats *out);

/* Why a message became a dead letter. */
#define TR_DEAD_REASON_MAP(X)                                                                      \
  X(STALE, "sent to an unknown or stopped actor")                                                  \
  X(STOPPED, "queued for an actor that stopped")                                                   \
  X(FAILED, "its handling failed")                                                                 \
  X(SHUTDOWN, "still queued when the system was freed")                                            \
  X(DROPPED_NEWEST, "dropped on arrival: bounded mailbox full")                                    \
  X(DROPPED_OLDEST, "dropped from a full bounded mailbox for a newer one")                         \
  X(LATE_REPLY, "a reply that came after its ask timed out, or to no ask")                         \
  X(NOMEM, "a user timer's message that could not be built: out of memory")

typedef enum tr_dead_reason {
#define TR_DEAD_ENUM(name, msg) TR_DEAD_##name,
  TR_DEAD_REASON_MAP(TR_DEAD_ENUM)
#undef TR_DEAD_ENUM
      TR_DEAD_REASON_COUNT
} tr_dead_reason;

TR_API const char *tr_dead_reason_name(tr_dead_reason reason);

typedef struct tr_system_stats {
  unsigned threads;
  uint64_t actors_live;
  uint64_t actors_spawned;
  uint64_t actors_stopped;
  uint64_t sent;    /* messages accepted by a mailbox (stale, refused and
                     * dropped-on-arrival sends excluded) */
  uint64_t handled; /* messages whose behaviour call returned TR_OK */
  /* Once quiescent:
   *   sent == handled + dead_letters[STOPPED] + [FAILED] + [DROPPED_OLDEST] */
  uint64_t dead_letters[TR_DEAD_REASON_COUNT];
  uint64_t runs;    /* actor runs, all workers */
  uint64_t steals;  /* actors taken from another worker's queue */
  uint64_t parks;   /* times a worker went to sleep */
  uint64_t wakes;   /* times a sleeping worker was woken for work */
  uint64_t refused; /* sends answered TR_EFULL by a bounded mailbox */
  uint64_t holds;   /* times a sending actor was held (back-pressure) */
  uint64_t timers_armed, timers_fired, timers_cancelled;
  uint64_t asks, ask_timeouts;
} tr_system_stats;

/* Snapshot of system-wide counters. Exact when quiescent.
 * Errors: TR_EINVAL (NULL). Any thread. */
TR_API TR_NODISCARD tr_status tr_system_stats_get(tr_system *sys, tr_system_stats *out);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_CORE_H */
