/*
 * internal.h - the actor layer's private types: system, actor, message,
 * context, per-worker message pool, registry. Not installed.
 */
#ifndef TROUPE_ACTOR_INTERNAL_H
#define TROUPE_ACTOR_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "../mailbox/mailbox.h"
#include "../sched/sched.h"
#include "mp.h"
#include "troupe.h"

#define TRI_DEFAULT_BATCH   100u
#define TRI_DEFAULT_MAX_MSG ((size_t)16 << 20)
#define TRI_DEFAULT_SLOTS   8u

/* Bugs abort with where and what; the environment gets a tr_status. */
#define tri_assert(e) ((e) ? (void)0 : tri_assert_fail(#e, __FILE__, __LINE__, __func__))
_Noreturn void tri_assert_fail(const char *expr, const char *file, int line, const char *func);

/* ------------------------------------------------------------ messages */

/* Bits of the task word that the scheduler leaves alone. Requests (set by
 * any thread, each counted as a unit of work while pending, cleared by the
 * actor's own run): */
#define TRI_ACTOR_STOP     TRI_TASK_USER        /* tr_stop */
#define TRI_ACTOR_TERM     (TRI_TASK_USER << 2) /* its supervisor: stop for good */
#define TRI_ACTOR_KILL     (TRI_TASK_USER << 3) /* a linked actor failed: fail too */
#define TRI_ACTOR_RESTART  (TRI_TASK_USER << 4) /* its supervisor: restart in place */
#define TRI_ACTOR_REQUESTS (TRI_ACTOR_STOP | TRI_ACTOR_TERM | TRI_ACTOR_KILL | TRI_ACTOR_RESTART)
/* States: */
#define TRI_ACTOR_HELD    (TRI_TASK_USER << 1) /* back-pressure: parked until a receiver drains */
#define TRI_ACTOR_SUSP    (TRI_TASK_USER << 5) /* exited, supervised: waits for its supervisor */
#define TRI_ACTOR_WATCHED (TRI_TASK_USER << 6) /* has monitors or links (watch.c) */
#define TRI_ACTOR_TRAP    (TRI_TASK_USER << 7) /* traps exits */
/* task.user: immutable flags. */
#define TRI_ACTOR_BOUNDED    1u
#define TRI_ACTOR_SUPERVISED 2u /* has a tri_child block (a supervisor's child) */
#define TRI_CORR_REPLY       0x80000000u
#define TRI_MSG_HEAP         UINT32_MAX /* owner of a message not from a pool */
#define TRI_MSG_BLOCK        64u        /* pooled block size */

struct tr_msg {
  tri_mbnode node; /* mailbox link; first, so a node converts to a message */
  uint32_t tag;
  uint32_t len;    /* payload bytes */
  uint64_t sender; /* tr_ref id */
  uint32_t owner;  /* worker whose pool it came from, or TRI_MSG_HEAP */
  uint32_t corr;   /* ask correlation id (TRI_CORR_REPLY set on replies), or 0 */
  uint8_t bytes[]; /* payload: inline in the block, or trailing a heap one */
};
typedef struct tr_msg tri_msg;

#define TRI_MSG_INLINE (TRI_MSG_BLOCK - sizeof(tri_msg))
_Static_assert(sizeof(tri_msg) == 40, "message header layout");

/* Per-worker message pool: see msg.c. */
typedef struct tri_outbox {
  tri_msg *head, *tail;
  unsigned n;
} tri_outbox;

typedef struct tri_pool {
  tri_msg *free;               /* owner only */
  _Atomic(tri_msg *) returned; /* chains pushed by other senders; owner takes all */
  tri_outbox *outbox;          /* one per worker: its blocks to hand back */
  tri_outbox ext_ob;           /* blocks of one external owner to hand back */
  uint32_t ext_ob_owner;
  void **slabs;
  size_t nslabs, cap_slabs;
} tri_pool;

/* The local area of a sender: a worker, or an external participant. */
typedef struct tri_local {
  tri_pool pool;
  _Atomic uint64_t handled; /* behaviour calls that returned OK (single writer) */
  tr_system *sys;
  uint32_t id; /* worker index, or external id (>= threads): its pool's owner id */
} tri_local;

/* ------------------------------------------------------------ actors */

typedef struct tri_actor {
  tri_task task; /* first: the scheduler hands us back tri_task pointers;
                  * its state word also carries TRI_ACTOR_STOP (any thread) */
  /* --- immutable after spawn (senders read gen on every lookup) --- */
  uint32_t idx, gen;
  const char *name;
  void (*fini)(void *state);
  /* Producers' fields first, the consumer's last (see tri_mailbox). */
  tri_mailbox mb;
  /* --- the running worker only --- */
  union {
    struct {
      tr_behaviour behaviour;
      void *state;
    } live;
    tri_deferred dead; /* after the actor stopped: its reclamation */
  } u;
  /* --- the running worker only, atomic so stats readers may load it --- */
  _Atomic uint64_t busy; /* clock ticks spent in its runs (internal_trace.h) */
} tri_actor;

/* ------------------------------------------------------------ contexts */

struct tr_ctx {
  tr_system *sys;
  tri_worker *w;    /* NULL for the external ctx */
  tri_actor *actor; /* running actor, NULL outside a behaviour */
  tr_behaviour next_behaviour;
  bool stop_self;
  unsigned spills;    /* sends this run that spilled past a receiver's ring */
  tri_actor *hold_on; /* a full HOLD_SENDER receiver this run sent to */
  /* External contexts: wait for room in a full HOLD_SENDER mailbox? */
  bool blocking;
  bool owned; /* made by tr_ctx_new_blocking: tr_ctx_free frees it */
  uint64_t timeout_ms;
  uint64_t as_sender; /* outside a behaviour: send in this actor's name */
  /* tr_fail: the reason (one msgpack value, malloc'd) the actor fails with
   * once the behaviour returns. */
  uint8_t *fail_reason;
  size_t fail_len;
  bool failing;
};

/* ------------------------------------------------------------ bounds */

/* A bounded mailbox's state, after the ring's slots in the actor block. */
typedef struct tri_bound {
  uint32_t capacity;
  uint32_t low; /* held senders are released at or below this depth */
  tr_mailbox_policy policy;
  /* --- any thread --- */
  _Atomic uint32_t count;  /* accepted and not yet taken */
  _Atomic(tri_msg *) held; /* hold records (Treiber stack, owner takes all) */
  _Atomic uint64_t refused, dropped, dropped_oldest, overflow, holds;
} tri_bound;

/* What a producer does with a message for a bounded mailbox. */
typedef enum tri_admit {
  TRI_ADMIT_PUSH,   /* queue it */
  TRI_ADMIT_HOLD,   /* queue it and hold the sending actor after its run */
  TRI_ADMIT_REFUSE, /* TR_EFULL, nothing sent */
  TRI_ADMIT_DROP,   /* dead letter DROPPED_NEWEST */
  TRI_ADMIT_WAIT,   /* blocking outside sender: wait for room, retry */
} tri_admit;

/* ------------------------------------------------------------ supervision */

/* A supervised child's block, after the ring slots (and bound): what a
 * restart needs. The start argument's copy follows it. Immutable. */
typedef struct tri_child {
  uint64_t parent; /* the supervisor's ref */
  tr_behaviour behaviour;
  tr_status (*init)(void *state, const void *arg);
  const void *arg; /* the start argument: arg_copy below, or the caller's */
  size_t state_size;
  uint32_t index; /* in the supervisor's spec; UINT32_MAX: dynamic */
  uint32_t arg_size;
  uint8_t arg_copy[];
} tri_child;

/* How a supervised child is spawned (NULL for a plain actor). */
typedef struct tri_child_opts {
  tr_ref parent;
  uint32_t index;
  const void *arg;
  size_t arg_size; /* bytes to copy; 0: keep the pointer */
} tri_child_opts;

/* Supervision's messages between the runtime and supervisors. */
#define TRI_TAG_CHILD 0xFFFFFF10u /* [kind, child, index, reason]: child -> parent */
#define TRI_TAG_SUP   0xFFFFFF11u /* requests to a supervisor: [op, ...] */
#define TRI_TAG_TIMER 0xFFFFFF12u /* a supervisor's backoff timer: [child] */
enum {
  TRI_CHILD_FAILED = 0, /* suspended after a failure: restart or terminate it */
  TRI_CHILD_EXITED = 1, /* suspended after a normal exit: restart or terminate it */
  TRI_CHILD_GONE = 2,   /* stopped for good (terminated, or orphaned) */
};

/* ------------------------------------------------------------ registry */

/* Two-level table: a fixed directory of lazily allocated chunks, so a slot
 * never moves once a reader has found it. */
#define TRI_REG_CHUNK_BITS 12u
#define TRI_REG_CHUNK      (1u << TRI_REG_CHUNK_BITS)
#define TRI_REG_DIR        (1u << 14)
#define TRI_REG_MAX        (TRI_REG_CHUNK * TRI_REG_DIR) /* 2^26 actors */

typedef struct tri_slot {
  _Atomic(tri_actor *) actor; /* NULL when free or stopped */
  uint32_t gen;               /* generation of the last occupant (under lock) */
  uint32_t next_free;         /* free-list link (under lock) */
} tri_slot;

typedef struct tri_registry {
  _Atomic(tri_slot *) dir[TRI_REG_DIR];
  pthread_mutex_t lock;
  uint32_t free_head; /* index + 1; 0 = empty */
  uint32_t used;      /* slots ever handed out */
  uint64_t live;
} tri_registry;

/* ------------------------------------------------------------ system */

struct tr_system {
  tri_sched *sched;
  tr_system_config cfg;
  struct tr_ctx ext; /* the external ctx */
  tri_registry reg;
  _Atomic uint64_t spawned, stopped;
  _Atomic uint64_t requests; /* requests posted (stop, restart, ...): not messages */
  _Atomic uint64_t dead[TR_DEAD_REASON_COUNT];
  _Atomic uint64_t refused, holds, asks, ask_timeouts;
  _Atomic bool freeing;
  /* The hold graph's edges change under this lock (bound.c). */
  pthread_mutex_t hold_lock;
  /* The event trace, NULL when off (trace.c), and the TROUPE_STATS
   * printer (stats.c). */
  _Atomic(struct tri_trace *) trace;
  struct tri_tracing *tracing;
  /* Outside threads waiting for room in a HOLD_SENDER mailbox. */
  pthread_mutex_t room_lock;
  pthread_cond_t room_cond;
  _Atomic unsigned room_waiters;
  /* Asks in flight (ask.c). */
  struct tri_asks *asks_table;
  _Atomic uint32_t next_corr;
  /* Monitors and links (watch.c). */
  struct tri_watch *watch;
  _Atomic uint64_t dead_handler; /* ref of the dead-letter handler, or 0 */
  /* tr_system_exit: the first reason, kept until free. */
  pthread_mutex_t exit_lock;
  _Atomic bool exited;
  uint8_t *exit_reason;
  size_t exit_len;
};

/* registry.c */
void tri_registry_init(tri_registry *r);
void tri_registry_destroy(tri_registry *r);
tr_status tri_registry_add(tri_registry *r, tri_actor *a);
void tri_registry_remove(tri_registry *r, tri_actor *a);
tri_actor *tri_registry_get(tri_registry *r, tr_ref ref);
/* Call fn on every live actor (owner only, workers stopped). */
void tri_registry_each(tri_registry *r, void (*fn)(tri_actor *a, void *arg), void *arg);
/* Slots ever handed out (under the lock): every live actor's index is below. */
uint32_t tri_registry_used(tri_registry *r);
/* The actor published in slot idx < tri_registry_used, or NULL. Any thread;
 * keeping it alive is the caller's business (a read section). */
tri_actor *tri_registry_at(tri_registry *r, uint32_t idx);

static inline tr_ref tri_actor_ref(const tri_actor *a) {
  return (tr_ref){((uint64_t)a->gen << 32) | a->idx};
}

/* actor.c: supervision */
tri_child *tri_child_of(tri_actor *a);
tr_status tri_spawn(tr_ctx *ctx, const tr_actor_spec *spec, const void *arg,
                    const tri_child_opts *child, tr_ref *out);
/* Send a runtime message (reserved tag) built from parts, as actor `from`
 * (its id; 0 from outside) through local area l. It goes past any bound. */
tr_status tri_sys_send(tr_system *sys, tri_local *l, uint64_t from, tr_ref to, uint32_t tag,
                       const tri_mp_part *parts, size_t n);
/* tri_sys_send from any ctx (enters the read section from outside). */
tr_status tri_ctx_send(tr_ctx *ctx, tr_ref to, uint32_t tag, const tri_mp_part *parts, size_t n);
/* Post a request bit (TRI_ACTOR_TERM, _RESTART, _KILL) to a live actor.
 * TR_ESTALE when it is gone; TR_OK also when already pending. */
tr_status tri_actor_request(tr_ctx *ctx, tr_ref ref, uint32_t bit);

/* watch.c */
tr_status tri_watch_new(tr_system *sys);
void tri_watch_free(tr_system *sys);
/* The actor exits for good: fire its monitors and links (worker only). */
void tri_watch_exit(tr_system *sys, tri_worker *w, tri_actor *a, const void *reason, size_t len,
                    bool failed);
/* Take the reason a KILL request carries (malloc'd; NULL: none). */
uint8_t *tri_watch_take_kill(tr_system *sys, uint64_t id, size_t *len);
/* Forward a dead letter to the system's handler, if any. */
void tri_dead_forward(tr_system *sys, tri_local *l, const tri_msg *m, tr_dead_reason why,
                      uint64_t to, const void *detail, size_t detail_len);
extern const uint8_t tri_reason_normal[7], tri_reason_stopped[8], tri_reason_shutdown[9],
    tri_reason_noproc[7];

/* msg.c */
void tri_local_start(tri_local *l, tr_system *sys, uint32_t id, unsigned nworkers);
void tri_local_destroy(tri_local *l);
/* A message with room for `len` payload bytes, from l's pool when it fits
 * (l NULL: malloc). NULL when out of memory. */
tri_msg *tri_msg_alloc(tri_local *l, size_t len);
/* Free a handled message; `l` is the caller's local area (NULL at shutdown). */
void tri_msg_free(tri_local *l, tri_msg *m);

/* actor.c */
/* Count (and forward to the handler) a message that will not be handled,
 * meant for actor `to` (an id); detail: FAILED's reason, else NULL. */
void tri_dead_letter(tr_system *sys, tri_local *l, tri_msg *m, tr_dead_reason why, uint64_t to,
                     const void *detail, size_t detail_len);
void tri_ext_start(tri_ext *e, void *local, void *sys);
/* Send raw, already validated msgpack (NULL: nil) with a correlation id. */
tr_status tri_send_raw(tr_ctx *ctx, tr_ref to, uint32_t tag, uint32_t corr, const void *msgpack,
                       size_t len);

/* bound.c */
tri_bound *tri_bound_of(tri_actor *a);
void tri_bound_init(tri_bound *b, tr_mailbox_policy policy, uint32_t capacity);
tri_admit tri_bound_admit(tr_ctx *ctx, tri_actor *r);
bool tri_bound_taken(tr_system *sys, tri_actor *a);
bool tri_bound_can_release(tri_actor *a);
void tri_bound_release(tr_system *sys, tri_worker *w, tri_actor *r, bool all);
bool tri_bound_hold(tr_system *sys, tri_worker *w, tri_actor *s, tri_actor *r);
bool tri_actor_unhold(tr_system *sys, tri_worker *w, tri_actor *s);
tr_status tri_bound_wait_room(tr_system *sys, uint64_t deadline_ns);

/* ask.c */
tr_status tri_asks_new(tr_system *sys);
void tri_asks_free(tr_system *sys);
/* A reply for (asker, corr) is being sent: true if its ask was pending (and
 * is now answered: its timeout cancelled). */
bool tri_ask_answer(tr_system *sys, uint64_t asker, uint32_t corr);
/* tr_send_after and tr_ask_wait for any tag (the runtime's own included). */
tr_status tri_send_after(tr_ctx *ctx, tr_ref to, uint32_t tag, uint64_t delay_ms,
                         uint64_t period_ms, const void *msgpack, size_t len, tr_timer *out);
tr_status tri_ask_wait(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *msgpack, size_t len,
                       uint64_t timeout_ms, uint32_t *reply_tag, void **reply, size_t *reply_len);
int tri_timer_fire(void *data, void *sys);
void tri_timer_free(void *data, void *sys);
tri_run_result tri_actor_run(tri_worker *w, tri_task *t, void *arg);
bool tri_actor_ready(tri_task *t, void *arg);
void tri_actor_reclaim(tri_deferred *d, tri_worker *w, void *arg);
void tri_actor_shutdown(tri_actor *a, void *arg);

#endif /* TROUPE_ACTOR_INTERNAL_H */
