/*
 * troupe/fault.h - failure, exit reasons, monitors, links, dead letters.
 *
 * An actor fails when its behaviour returns a status other than TR_OK, when
 * it calls tr_fail, or when its init fails while it is being restarted. Every
 * exit carries a reason, which is one msgpack value, so it can be logged,
 * traced and sent on. The runtime's own reasons are msgpack strings:
 *   "normal"   the actor stopped itself (tr_stop(ctx, tr_self(ctx)));
 *   "stopped"  another actor or thread stopped it (tr_stop);
 *   "shutdown" its supervisor stopped it;
 *   "noproc"   (DOWN only) it was already gone when it was monitored;
 *   "EFAIL", "EINIT", ...  its behaviour returned that status, or its init
 *              failed on restart (the status name, tr_status_name).
 * The first three and "noproc" are normal exits; every other reason is a
 * failure. A crash of the whole process (SIGSEGV, abort) is not an actor
 * failure: troupe supervises inside one process and cannot survive that.
 *
 * The runtime's notifications (DOWN, EXIT, dead letters, and supervision's
 * own) are ordinary messages with reserved tags. They are never refused or
 * dropped by a bounded mailbox; they go past the bound.
 */
#ifndef TROUPE_FAULT_H
#define TROUPE_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core.h"
#include "msg.h"
#include "status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Tags from TR_TAG_RESERVED up are the runtime's: a send with one of them
 * returns TR_EINVAL. */
#define TR_TAG_RESERVED    0xFFFFFF00u
#define TR_TAG_DOWN        0xFFFFFF01u /* a monitored actor exited */
#define TR_TAG_EXIT        0xFFFFFF02u /* a linked actor exited (trapping exits) */
#define TR_TAG_DEAD_LETTER 0xFFFFFF03u /* to the dead-letter handler */

/*
 * tr_fail - fail the running actor with `reason`, one msgpack value (NULL:
 * nil), once the behaviour returns (whatever it returns). The message being
 * handled becomes a dead letter (FAILED) carrying the reason. The last call
 * wins. Errors: TR_EINVAL (NULL ctx), TR_ESTATE (not inside a behaviour),
 * TR_EMALFORMED, TR_ETOOBIG (over the system's max_msg_size), TR_ENOMEM.
 * Behaviour only.
 */
TR_API TR_NODISCARD tr_status tr_fail(tr_ctx *ctx, const void *reason, size_t len);
/* tr_fail with a string reason. */
TR_API TR_NODISCARD tr_status tr_fail_str(tr_ctx *ctx, const char *reason);

/* What a DOWN or EXIT message says. `reason` points into the message. */
typedef struct tr_exit_info {
  tr_ref ref;         /* the actor that exited */
  uint64_t monitor;   /* DOWN: the id tr_monitor returned; EXIT: 0 */
  bool failed;        /* a failure, not a normal exit */
  const void *reason; /* one msgpack value */
  size_t reason_len;
} tr_exit_info;

/* Decode a DOWN or EXIT message. Errors: TR_EINVAL (NULL, or another tag),
 * TR_EMALFORMED. Any thread. */
TR_API TR_NODISCARD tr_status tr_msg_exit_info(const tr_msg *msg, tr_exit_info *out);

/* True when `reason` is the msgpack string `s` (e.g. "normal"). */
TR_API bool tr_reason_is(const void *reason, size_t len, const char *s);

/*
 * tr_monitor - the running actor watches `target`: when target exits (stops
 * or fails for good; a supervised restart is not an exit: the ref stays
 * valid) the watcher gets one DOWN message (tag TR_TAG_DOWN), exactly once
 * per monitor. If target is already gone, DOWN comes at once with reason
 * "noproc". Monitoring twice gives two monitors. `*id` names the monitor.
 * Errors: TR_EINVAL (NULL), TR_ESTATE (not inside a behaviour), TR_ENOMEM.
 * Behaviour only.
 */
TR_API TR_NODISCARD tr_status tr_monitor(tr_ctx *ctx, tr_ref target, uint64_t *id);
/* Remove a monitor; no DOWN comes for it afterwards (one already queued
 * stays queued). Errors: TR_EINVAL, TR_ESTATE, TR_ESTALE (no such monitor of
 * this actor, or it already fired). Behaviour only. */
TR_API TR_NODISCARD tr_status tr_demonitor(tr_ctx *ctx, uint64_t id);

/*
 * tr_link - link the running actor and `other`, both ways. When one of them
 * fails (exits with a failure reason), the other fails too, with the same
 * reason, unless it traps exits: then it gets an EXIT message (tag
 * TR_TAG_EXIT) instead. A trapping actor gets EXIT for normal exits too;
 * a non-trapping one ignores them. Linking twice is one link.
 * Errors: TR_EINVAL (NULL, or linking to itself), TR_ESTATE (not inside a
 * behaviour), TR_ESTALE (other is already gone: nothing is linked),
 * TR_ENOMEM. Behaviour only.
 */
TR_API TR_NODISCARD tr_status tr_link(tr_ctx *ctx, tr_ref other);
/* Errors: TR_EINVAL, TR_ESTATE, TR_ESTALE (not linked). Behaviour only. */
TR_API TR_NODISCARD tr_status tr_unlink(tr_ctx *ctx, tr_ref other);
/* Trap exits (EXIT messages instead of failing with linked actors). Errors:
 * TR_EINVAL, TR_ESTATE. Behaviour only. */
TR_API TR_NODISCARD tr_status tr_trap_exits(tr_ctx *ctx, bool on);

/*
 * Dead letters. Every message that is not handled is counted by reason in
 * tr_system_stats.dead_letters, and every send a bounded mailbox refused
 * (TR_EFULL: its sender still has the message) in tr_system_stats.refused.
 * A system may also name a handler actor: then each dead letter (except
 * SHUTDOWN ones, and dead letters of dead letters) is also sent to it as a
 * TR_TAG_DEAD_LETTER message. Refused sends are not forwarded.
 */
typedef struct tr_dead_letter {
  tr_dead_reason reason;
  tr_ref to;           /* the receiver it was meant for */
  tr_ref from;         /* its sender (TR_REF_NONE from outside) */
  uint32_t tag;        /* its tag */
  const void *payload; /* its payload (one msgpack value, in the message) */
  size_t payload_len;
  const void *detail; /* FAILED: the failure reason; else msgpack nil */
  size_t detail_len;
} tr_dead_letter;

/* Name the handler (TR_REF_NONE: none). Errors: TR_EINVAL. Any thread. */
TR_API TR_NODISCARD tr_status tr_system_set_dead_letter_handler(tr_system *sys, tr_ref handler);
/* Decode a TR_TAG_DEAD_LETTER message. Errors: TR_EINVAL (NULL, another
 * tag), TR_EMALFORMED. Any thread. */
TR_API TR_NODISCARD tr_status tr_msg_dead_letter(const tr_msg *msg, tr_dead_letter *out);

/*
 * tr_system_exit - stop the system from inside, with a reason (one msgpack
 * value; NULL: nil): tr_system_wait returns TR_EEXIT from now on, and the
 * owner then calls tr_system_stop / tr_system_free as usual. A root
 * supervisor that gives up calls this. The first reason is kept.
 * Errors: TR_EINVAL (NULL ctx), TR_EMALFORMED, TR_ENOMEM. Any thread.
 */
TR_API TR_NODISCARD tr_status tr_system_exit(tr_ctx *ctx, const void *reason, size_t len);
/* The reason given to tr_system_exit (owned by the system, valid until
 * tr_system_free). Errors: TR_EINVAL, TR_ESTATE (no exit yet). Any thread. */
TR_API TR_NODISCARD tr_status tr_system_exit_reason(tr_system *sys, const void **reason,
                                                    size_t *len);

#ifdef __cplusplus
}
#endif

#endif /* TROUPE_FAULT_H */
