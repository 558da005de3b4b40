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
#include "troupe.h"

#define TRI_DEFAULT_BATCH   100u
#define TRI_DEFAULT_MAX_MSG ((size_t)16 << 20)
#define TRI_DEFAULT_SLOTS   8u

/* Bugs abort with where and what; the environment gets a tr_status. */
#define tri_assert(e) ((e) ? (void)0 : tri_assert_fail(#e, __FILE__, __LINE__, __func__))
_Noreturn void tri_assert_fail(const char *expr, const char *file, int line, const char *func);

/* ------------------------------------------------------------ messages */

/* Bits of the task word that the scheduler leaves alone: a stop request,
 * and "held" (back-pressure: parked until a full receiver drains). */
#define TRI_ACTOR_STOP TRI_TASK_USER
#define TRI_ACTOR_HELD (TRI_TASK_USER << 1)
/* task.user: immutable flags. */
#define TRI_ACTOR_BOUNDED 1u
#define TRI_CORR_REPLY    0x80000000u
#define TRI_MSG_HEAP      UINT32_MAX /* owner of a message not from a pool */
#define TRI_MSG_BLOCK     64u        /* pooled block size */

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
  _Atomic uint64_t stop_requests; /* accepted by tr_stop: not messages */
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

/* msg.c */
void tri_local_start(tri_local *l, tr_system *sys, uint32_t id, unsigned nworkers);
void tri_local_destroy(tri_local *l);
/* A message with room for `len` payload bytes, from l's pool when it fits
 * (l NULL: malloc). NULL when out of memory. */
tri_msg *tri_msg_alloc(tri_local *l, size_t len);
/* Free a handled message; `l` is the caller's local area (NULL at shutdown). */
void tri_msg_free(tri_local *l, tri_msg *m);

/* actor.c */
void tri_dead_letter(tr_system *sys, tri_local *l, tri_msg *m, tr_dead_reason why);
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
bool tri_timer_fire(void *data, void *sys);
void tri_timer_free(void *data, void *sys);
tri_run_result tri_actor_run(tri_worker *w, tri_task *t, void *arg);
bool tri_actor_ready(tri_task *t, void *arg);
void tri_actor_reclaim(tri_deferred *d, tri_worker *w, void *arg);
void tri_actor_shutdown(tri_actor *a, void *arg);

#endif /* TROUPE_ACTOR_INTERNAL_H */
