/*
 * actor.c - spawning, sending, running and stopping actors.
 *
 * An actor is one allocation: the struct (scheduler task word, mailbox,
 * identity, behaviour), then its ring's slot array, then its private state.
 * Nothing of it is reachable before tri_registry_add publishes it.
 *
 * Sending. Look the receiver up by ref, count the message as accepted (for
 * quiescence), push it on the mailbox, then tri_sched_notify, which makes the
 * receiver runnable if it was idle. The receiver's memory is guaranteed to
 * stay valid between lookup and notify: on a worker by QSBR (the worker is
 * between quiescent points for the whole run), elsewhere by the scheduler's
 * external read section.
 *
 * Running. A worker runs up to `batch` messages of one actor. A failure (a
 * behaviour returning non-OK), a self-stop and a stop request all end in
 * actor_die, on the running worker, which owns the actor at that moment:
 *   1. set DEAD in the task word: no producer will ever schedule it again;
 *   2. unpublish it from the registry: no new lookup finds it (senders now
 *      get TR_ESTALE, counted as dead letters);
 *   3. run fini, and turn the queued mail into dead letters (STOPPED);
 *   4. defer the free through QSBR: senders that found the actor before step
 *      2 may still push; once they are all past, reclaim() drains what they
 *      pushed (dead letters, STOPPED) and frees the memory.
 * Every accepted message is thus handled or dead-lettered, exactly once.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../sched/alloc.h"
#include "internal.h"
#include "internal_trace.h"
#include "mp.h"

/* ------------------------------------------------------------ helpers */

static tri_actor *actor_of(tri_task *t) { return (tri_actor *)t; }

static tri_local *local_of(tri_worker *w) { return w != NULL ? tri_worker_local(w) : NULL; }

void tri_dead_letter(tr_system *sys, tri_local *l, tri_msg *m, tr_dead_reason why, uint64_t to,
                     const void *detail, size_t detail_len) {
  atomic_fetch_add_explicit(&sys->dead[why], 1, memory_order_relaxed);
  tri_trace_dead_letter(sys, m, why, to);
  /* Not at shutdown (nothing runs), and never a dead letter's dead letter. */
  if (l != NULL && why != TR_DEAD_SHUTDOWN && m->tag != TR_TAG_DEAD_LETTER &&
      atomic_load_explicit(&sys->dead_handler, memory_order_relaxed) != 0)
    tri_dead_forward(sys, l, m, why, to, detail, detail_len);
  tri_msg_free(l, m);
}

/* Turn everything takeable in a's mailbox into dead letters; returns count. */
static uint64_t drain(tr_system *sys, tri_actor *a, tri_worker *w, tr_dead_reason why) {
  uint64_t n = 0;
  tri_mbnode *node;

  while ((node = tri_mailbox_pop_sc(&a->mb)) != NULL) {
    tri_dead_letter(sys, local_of(w), (tri_msg *)node, why, tri_actor_ref(a).id, NULL, 0);
    n++;
  }
  tri_mailbox_end_sc(&a->mb);
  return n;
}

static uint32_t state_of(tri_actor *a, memory_order mo) {
  return atomic_load_explicit(&a->task.state, mo);
}

/* Pending requests in a state word: each is one unit of work. */
static unsigned requests_in(uint32_t st) {
  return (unsigned)__builtin_popcount(st & TRI_ACTOR_REQUESTS);
}

void tri_actor_reclaim(tri_deferred *d, tri_worker *w, void *arg) {
  tri_actor *a = (tri_actor *)((char *)d - offsetof(tri_actor, u.dead));
  tr_system *sys = arg;
  uint64_t n = drain(sys, a, w, TR_DEAD_STOPPED);
  /* Senders held on it after it died (they saw it alive). */
  tri_bound_release(sys, w, a, true);

  if (n != 0)
    tri_sched_count_done(sys->sched, w, n);
  free(a);
}

tri_child *tri_child_of(tri_actor *a) {
  if (!(a->task.user & TRI_ACTOR_SUPERVISED))
    return NULL;
  /* Laid out by tri_spawn: actor, ring slots, [bound], child, state. */
  size_t off = sizeof(tri_actor) + tri_mailbox_slots_size(a->mb.ring.size);
  if (a->task.user & TRI_ACTOR_BOUNDED)
    off += sizeof(tri_bound);
  return (tri_child *)((char *)a + off);
}

/* Tell a supervised actor's supervisor what happened to it. */
static tr_status tell_parent(tr_system *sys, tri_worker *w, tri_actor *a, unsigned kind,
                             const void *reason, size_t len) {
  tri_child *c = tri_child_of(a);
  tri_mp_part parts[4] = {
      TRI_MP_VAL(tr_uint(kind)),
      TRI_MP_VAL(tr_uint(tri_actor_ref(a).id)),
      TRI_MP_VAL(tr_uint(c->index)),
      TRI_MP_RAW(reason, len),
  };
  return tri_sys_send(sys, tri_worker_local(w), tri_actor_ref(a).id, (tr_ref){c->parent},
                      TRI_TAG_CHILD, parts, 4);
}

/* The actor is gone for good (see the file's top). Pending requests in the
 * state word are retired here. */
static void actor_die(tr_system *sys, tri_worker *w, tri_actor *a, const void *reason, size_t len,
                      bool failed, uint64_t *done) {
  /* Seq_cst: after this, tri_sched_notify never pushes the task again, and
   * requesters (tr_stop, tri_actor_request) see DEAD. */
  uint32_t old = atomic_fetch_or_explicit(&a->task.state, TRI_TASK_DEAD, memory_order_seq_cst);
  *done += requests_in(old);
  tri_registry_remove(&sys->reg, a);
  /* A suspended actor's fini already ran. */
  if (a->fini != NULL && !(old & TRI_ACTOR_SUSP))
    a->fini(a->u.live.state);
  *done += drain(sys, a, w, TR_DEAD_STOPPED);
  tri_bound_release(sys, w, a, true); /* nobody waits on a dead mailbox */
  atomic_fetch_add_explicit(&sys->stopped, 1, memory_order_relaxed);
  if (old & TRI_ACTOR_WATCHED)
    tri_watch_exit(sys, w, a, reason, len, failed);
  if ((a->task.user & TRI_ACTOR_SUPERVISED) && tri_child_of(a)->parent != 0)
    (void)tell_parent(sys, w, a, TRI_CHILD_GONE, reason, len);
  tri_sched_defer(w, &a->u.dead);
}

/*
 * An exit that is not the end for a supervised actor: its state is
 * released (fini) and it waits, mailbox intact, for its supervisor to
 * restart or terminate it. Returns false when its supervisor is gone (the
 * caller then lets it die).
 */
static bool suspend(tr_system *sys, tri_worker *w, tri_actor *a, const void *reason, size_t len,
                    bool failed) {
  if (tri_child_of(a)->parent == 0)
    return false; /* a root supervisor: nobody to decide, it dies */
  if (!(state_of(a, memory_order_relaxed) & TRI_ACTOR_SUSP)) {
    if (a->fini != NULL)
      a->fini(a->u.live.state);
    atomic_fetch_or_explicit(&a->task.state, TRI_ACTOR_SUSP, memory_order_relaxed);
  }
  return tell_parent(sys, w, a, failed ? TRI_CHILD_FAILED : TRI_CHILD_EXITED, reason, len) == TR_OK;
}

/* An actor exits (stops or fails): suspended if supervised, else dead.
 * Returns true when it died. */
static bool actor_exit(tr_system *sys, tri_worker *w, tri_actor *a, const void *reason, size_t len,
                       bool failed, uint64_t *done) {
  if ((a->task.user & TRI_ACTOR_SUPERVISED) && suspend(sys, w, a, reason, len, failed))
    return false;
  actor_die(sys, w, a, reason, len, failed, done);
  return true;
}

/* Retire a request bit the actor has acted on. */
static void take_request(tri_actor *a, uint32_t bit, uint64_t *done) {
  atomic_fetch_and_explicit(&a->task.state, ~bit, memory_order_relaxed);
  ++*done;
}

/* A status as a failure reason: its name, as a msgpack string. */
static size_t status_reason(tr_status st, uint8_t *buf, size_t cap) {
  tr_val v = tr_str(tr_status_name(st));
  return tri_mp_write_vals(buf, cap, &v, 1, false);
}

/* Restart in place: fresh state from init, the spec's behaviour, mailbox
 * kept. Returns true when the actor died (init failed and its supervisor
 * is gone). */
static bool restart(tr_system *sys, tri_worker *w, tri_actor *a, uint64_t *done) {
  tri_child *c = tri_child_of(a);
  if (c == NULL)
    return false; /* only supervision asks for restarts */
  if (!(state_of(a, memory_order_relaxed) & TRI_ACTOR_SUSP)) {
    if (a->fini != NULL)
      a->fini(a->u.live.state);
    atomic_fetch_or_explicit(&a->task.state, TRI_ACTOR_SUSP, memory_order_relaxed);
  }
  if (c->state_size != 0)
    memset(a->u.live.state, 0, c->state_size);
  a->u.live.behaviour = c->behaviour;
  if (c->init != NULL) {
    tr_status st = c->init(a->u.live.state, c->arg);
    if (st != TR_OK) {
      /* Still suspended, and fini will not run on this state. */
      uint8_t why[16];
      size_t len = status_reason(TR_EINIT, why, sizeof why);
      if (c->parent != 0 && tell_parent(sys, w, a, TRI_CHILD_FAILED, why, len) == TR_OK)
        return false;
      actor_die(sys, w, a, why, len, true, done);
      return true;
    }
  }
  atomic_fetch_and_explicit(&a->task.state, ~TRI_ACTOR_SUSP, memory_order_relaxed);
  tri_trace_restart(sys, w, a);
  return false;
}

enum { CTL_GO, CTL_SUSPENDED, CTL_DEAD };

/*
 * Act on pending requests, in order of precedence: terminate, fail (a
 * linked actor failed), stop, restart. Then say whether mail may be taken.
 * Runs on the worker that owns the actor.
 */
static int control(tr_system *sys, tri_worker *w, tri_actor *a, uint64_t *done) {
  for (;;) {
    uint32_t st = state_of(a, memory_order_acquire);
    if (st & TRI_ACTOR_TERM) {
      actor_die(sys, w, a, tri_reason_shutdown, sizeof tri_reason_shutdown, false, done);
      return CTL_DEAD;
    }
    if (st & TRI_ACTOR_KILL) {
      size_t len = 0;
      uint8_t *why = tri_watch_take_kill(sys, tri_actor_ref(a).id, &len);
      uint8_t nil = 0xc0;
      take_request(a, TRI_ACTOR_KILL, done);
      bool died = (st & TRI_ACTOR_SUSP) == 0 &&
                  actor_exit(sys, w, a, why ? why : &nil, why ? len : 1, true, done);
      free(why);
      if (died)
        return CTL_DEAD;
      continue;
    }
    if (st & TRI_ACTOR_STOP) {
      if (!(a->task.user & TRI_ACTOR_SUPERVISED)) {
        actor_die(sys, w, a, tri_reason_stopped, sizeof tri_reason_stopped, false, done);
        return CTL_DEAD;
      }
      take_request(a, TRI_ACTOR_STOP, done);
      if (!(st & TRI_ACTOR_SUSP) &&
          actor_exit(sys, w, a, tri_reason_stopped, sizeof tri_reason_stopped, false, done))
        return CTL_DEAD;
      continue;
    }
    if (st & TRI_ACTOR_RESTART) {
      take_request(a, TRI_ACTOR_RESTART, done);
      if (restart(sys, w, a, done))
        return CTL_DEAD;
      continue;
    }
    return (st & TRI_ACTOR_SUSP) ? CTL_SUSPENDED : CTL_GO;
  }
}

/* ------------------------------------------------------------ running */

bool tri_actor_ready(tri_task *t, void *arg) {
  (void)arg;
  tri_actor *a = actor_of(t);
  uint32_t st = state_of(a, memory_order_acquire);
  if (st & TRI_ACTOR_REQUESTS)
    return true;
  if (st & TRI_ACTOR_SUSP)
    return false; /* its mail waits for the restart */
  return tri_mailbox_ready_sc(&a->mb) || tri_bound_can_release(a);
}

/* The behaviour failed on `m`: dead-letter it with the reason, then exit.
 * Returns the run's result. */
static tri_run_result fail(tr_system *sys, tri_worker *w, tri_actor *a, tri_msg *m, tr_ctx *ctx,
                           tr_status st, uint64_t *done) {
  uint8_t buf[16];
  const void *why = ctx->fail_reason;
  size_t len = ctx->fail_len;
  if (!ctx->failing) {
    len = status_reason(st == TR_OK ? TR_EFAIL : st, buf, sizeof buf);
    why = buf;
  }
  tri_dead_letter(sys, tri_worker_local(w), m, TR_DEAD_FAILED, tri_actor_ref(a).id, why, len);
  bool died = actor_exit(sys, w, a, why, len, true, done);
  free(ctx->fail_reason);
  ctx->fail_reason = NULL;
  ctx->failing = false;
  ctx->next_behaviour = NULL;
  ctx->stop_self = false;
  return died ? TRI_RUN_DEAD : TRI_RUN_EMPTY;
}

tri_run_result tri_actor_run(tri_worker *w, tri_task *t, void *arg) {
  tri_actor *a = actor_of(t);
  tr_system *sys = arg;
  struct tr_ctx ctx = {.sys = sys, .w = w, .actor = a};
  bool bounded = (a->task.user & TRI_ACTOR_BOUNDED) != 0;
  uint64_t done = 0, ok = 0;
  tri_run_result result = TRI_RUN_MORE;

  /* Fairness between a fast producer and its consumer (Erlang charges a
   * send to a long queue extra reductions; this is the same idea):
   *  - a run ends after `batch` messages, or once `batch` of its sends
   *    spilled past a receiver's ring: a producer flooding a busy actor
   *    yields sooner, so the consumer gets the core;
   *  - an actor that finds a backlog deeper than `batch` at the start of
   *    its run may take up to that backlog (at most 16 x batch), so it
   *    drains what is already queued instead of falling ever further behind.
   */
  uint64_t depth = tri_mailbox_begin_sc(&a->mb);
  uint64_t t0 = tri_run_begin(sys); /* time in behaviour, per run */
  uint64_t batch = sys->cfg.batch;
  if (depth > batch)
    batch = depth < 16 * batch ? depth : 16 * batch;
  uint64_t r = tri_worker_det_rand(w); /* deterministic mode: vary the batch */
  if (r != 0)
    batch = 1 + r % batch;
  /* A hold ends the run after the message that caused it. */
  for (uint64_t i = 0; i < batch && ctx.spills < sys->cfg.batch && ctx.hold_on == NULL; i++) {
    /* Relaxed is enough for the test: the request was published to us
     * through the scheduler (the notify CAS and the run-queue hand-off);
     * control() re-reads with acquire. Suspended actors take no mail. */
    if (state_of(a, memory_order_relaxed) & (TRI_ACTOR_REQUESTS | TRI_ACTOR_SUSP)) {
      int c = control(sys, w, a, &done);
      if (c == CTL_DEAD) {
        result = TRI_RUN_DEAD;
        break;
      }
      if (c == CTL_SUSPENDED) {
        result = TRI_RUN_EMPTY;
        break;
      }
    }
    tri_mbnode *node = tri_mailbox_pop_sc(&a->mb);
    if (node == NULL) {
      result = TRI_RUN_EMPTY;
      break;
    }
    tri_msg *m = (tri_msg *)node;
    /* The runtime's own messages went past the bound: not counted in it. */
    if (bounded && m->tag < TR_TAG_RESERVED && tri_bound_taken(sys, a)) {
      /* Drop-oldest: newer messages beyond the capacity wait behind it. */
      tri_dead_letter(sys, tri_worker_local(w), m, TR_DEAD_DROPPED_OLDEST, tri_actor_ref(a).id,
                      NULL, 0);
      done++;
      continue;
    }
    tr_status st = a->u.live.behaviour(&ctx, a->u.live.state, m);
    done++;
    if (st != TR_OK || ctx.failing) {
      result = fail(sys, w, a, m, &ctx, st, &done);
      break;
    }
    ok++;
    tri_msg_free(tri_worker_local(w), m);
    if (ctx.next_behaviour != NULL) {
      a->u.live.behaviour = ctx.next_behaviour;
      ctx.next_behaviour = NULL;
    }
    if (ctx.stop_self) {
      ctx.stop_self = false;
      if (actor_exit(sys, w, a, tri_reason_normal, sizeof tri_reason_normal, false, &done)) {
        result = TRI_RUN_DEAD;
        break;
      }
      result = TRI_RUN_EMPTY; /* suspended: its supervisor decides */
      break;
    }
  }
  /* A run that used up its budget may still have emptied the mailbox (it
   * took exactly the backlog it found): say so, or the scheduler would
   * requeue it as busy and perhaps wake a helper for nothing. */
  if (result == TRI_RUN_MORE && !tri_actor_ready(t, sys))
    result = TRI_RUN_EMPTY;
  else if (result == TRI_RUN_MORE && ctx.spills >= sys->cfg.batch)
    result = TRI_RUN_YIELD;
  if (result != TRI_RUN_DEAD) {
    tri_mailbox_end_sc(&a->mb);
    if (bounded)
      tri_bound_release(sys, w, a, false); /* room again: let held senders go */
  }
  tri_local *l = tri_worker_local(w);
  tri_ctr_add(&l->handled, ok);
  tri_sched_count_done(sys->sched, w, done);
  tri_run_end(sys, w, a, t0, depth, ok); /* before a hold: it may run elsewhere at once */
  /* Back-pressure: it sent to a full hold-sender mailbox. Last, since once
   * held it may be released and run elsewhere at once. */
  if (ctx.hold_on != NULL && result != TRI_RUN_DEAD && tri_bound_hold(sys, w, a, ctx.hold_on))
    return TRI_RUN_HELD;
  return result;
}

/* At tr_system_free, workers stopped: dispose of one live actor. */
void tri_actor_shutdown(tri_actor *a, void *arg) {
  tr_system *sys = arg;
  uint64_t n;
  uint32_t st = state_of(a, memory_order_relaxed);

  if (a->fini != NULL && !(st & TRI_ACTOR_SUSP))
    a->fini(a->u.live.state);
  n = drain(sys, a, NULL, TR_DEAD_SHUTDOWN);
  n += requests_in(st);
  if (n != 0)
    tri_sched_count_done(sys->sched, NULL, n);
  free(a);
}

/* ------------------------------------------------------------ spawning */

static bool slots_ok(unsigned n) {
  return n >= 4 && n <= TR_MAX_MAILBOX_SLOTS && (n & (n - 1)) == 0;
}

#define TRI_MAX_CHILD_ARG ((size_t)1 << 20)

tr_status tri_spawn(tr_ctx *ctx, const tr_actor_spec *spec, const void *arg,
                    const tri_child_opts *child, tr_ref *out) {
  if (ctx == NULL || spec == NULL || spec->behaviour == NULL || out == NULL ||
      spec->state_size > TR_MAX_STATE_SIZE)
    return TR_EINVAL;
  tr_system *sys = ctx->sys;
  unsigned slots = spec->mailbox_slots ? spec->mailbox_slots : sys->cfg.mailbox_slots;
  if (!slots_ok(slots))
    return TR_EINVAL;
  bool bounded = spec->mailbox_policy != TR_MAILBOX_UNBOUNDED;
  if ((unsigned)spec->mailbox_policy > TR_MAILBOX_HOLD_SENDER ||
      (bounded &&
       (spec->mailbox_capacity == 0 || spec->mailbox_capacity > TR_MAX_MAILBOX_CAPACITY)))
    return TR_EINVAL;
  if (child != NULL &&
      (child->arg_size > TRI_MAX_CHILD_ARG || (child->arg == NULL && child->arg_size)))
    return TR_EINVAL;
  if (atomic_load_explicit(&sys->freeing, memory_order_acquire) || tri_sched_stopping(sys->sched))
    return TR_ESTATE;

  /* One block: actor, ring slots, [bound], [child + argument], state
   * (16-byte aligned). */
  size_t head = sizeof(tri_actor) + tri_mailbox_slots_size(slots);
  if (bounded)
    head += sizeof(tri_bound);
  if (child != NULL)
    head += sizeof(tri_child) + child->arg_size;
  head = (head + 15) & ~(size_t)15;
  tri_actor *a = tri_calloc(1, head + spec->state_size);
  if (a == NULL)
    return TR_ENOMEM;
  tri_task_init(&a->task);
  tri_mailbox_init(&a->mb, (ck_ring_buffer_t *)(a + 1), slots);
  if (bounded) {
    a->task.user |= TRI_ACTOR_BOUNDED;
    tri_bound_init(tri_bound_of(a), spec->mailbox_policy, spec->mailbox_capacity);
  }
  a->name = spec->name;
  a->fini = spec->fini;
  a->u.live.behaviour = spec->behaviour;
  a->u.live.state = spec->state_size ? (char *)a + head : NULL;
  if (child != NULL) {
    a->task.user |= TRI_ACTOR_SUPERVISED;
    tri_child *c = tri_child_of(a);
    c->parent = child->parent.id;
    c->behaviour = spec->behaviour;
    c->init = spec->init;
    c->state_size = spec->state_size;
    c->index = child->index;
    c->arg_size = (uint32_t)child->arg_size;
    if (child->arg_size != 0)
      memcpy(c->arg_copy, child->arg, child->arg_size);
    c->arg = child->arg_size != 0 ? c->arg_copy : child->arg;
    arg = c->arg;
  }

  if (spec->init != NULL && spec->init(a->u.live.state, arg) != TR_OK) {
    free(a);
    return TR_EINIT;
  }
  tr_status st = tri_registry_add(&sys->reg, a);
  if (st != TR_OK) {
    if (a->fini != NULL)
      a->fini(a->u.live.state);
    free(a);
    return st;
  }
  atomic_fetch_add_explicit(&sys->spawned, 1, memory_order_relaxed);
  tri_trace_spawn(sys, ctx->w, a); /* after the add: see "Names" in trace.c */
  *out = tri_actor_ref(a);
  return TR_OK;
}

TR_API tr_status tr_spawn(tr_ctx *ctx, const tr_actor_spec *spec, const void *arg, tr_ref *out) {
  return tri_spawn(ctx, spec, arg, NULL, out);
}

/* ------------------------------------------------------------ sending */

/* Who is calling: a worker (inside a behaviour) or an outside thread. */
typedef struct caller {
  tri_worker *w;
  tri_ext *e;
  tri_local *l; /* its local area: message pool, counters */
  bool wait;    /* deliver: wait for room and retry */
} caller;

/* Enter the section that keeps looked-up actors alive (see file top). A
 * worker's whole run already is one; an outside thread becomes an online
 * participant for the length of the call. */
static tr_status enter(tr_ctx *ctx, caller *c) {
  c->w = ctx->w;
  c->e = NULL;
  if (c->w != NULL) {
    c->l = tri_worker_local(c->w);
    return TR_OK;
  }
  if ((c->e = tri_sched_ext_enter(ctx->sys->sched)) == NULL)
    return TR_ENOMEM;
  c->l = tri_ext_local(c->e);
  return TR_OK;
}

static void leave(caller *c) {
  if (c->e != NULL)
    tri_sched_ext_leave(c->e);
}

/* Hand `m` to the actor named by `to`. On error `m` is freed. */
/* Hand `m` to the actor named by `to`. On error `m` is freed, except when
 * c->wait is set on return: then the caller keeps it, waits for room in a
 * full hold-sender mailbox, and tries again. */
static tr_status deliver(tr_ctx *ctx, caller *c, tr_ref to, tri_msg *m) {
  tr_system *sys = ctx->sys;

  c->wait = false;
  m->sender = ctx->actor != NULL ? tri_actor_ref(ctx->actor).id : ctx->as_sender;
  /* A reply whose ask already timed out (or never was) is not delivered,
   * whether or not its asker is still there. */
  if ((m->corr & TRI_CORR_REPLY) && !tri_ask_answer(sys, to.id, m->corr & ~TRI_CORR_REPLY)) {
    tri_dead_letter(sys, c->l, m, TR_DEAD_LATE_REPLY, to.id, NULL, 0);
    return TR_OK;
  }
  tri_actor *a = tri_registry_get(&sys->reg, to);
  if (a == NULL) {
    tri_dead_letter(sys, c->l, m, TR_DEAD_STALE, to.id, NULL, 0);
    return TR_ESTALE;
  }
  /* The runtime's own messages (ask timeouts) go past any bound. */
  tri_admit adm = (a->task.user & TRI_ACTOR_BOUNDED) && m->tag < TR_TAG_RESERVED
                      ? tri_bound_admit(ctx, a)
                      : TRI_ADMIT_PUSH;
  switch (adm) {
  case TRI_ADMIT_REFUSE:
    tri_msg_free(c->l, m);
    return TR_EFULL;
  case TRI_ADMIT_DROP:
    tri_dead_letter(sys, c->l, m, TR_DEAD_DROPPED_NEWEST, to.id, NULL, 0);
    return TR_OK;
  case TRI_ADMIT_WAIT:
    c->wait = true;
    return TR_EFULL;
  case TRI_ADMIT_HOLD:
    if (ctx->hold_on == NULL)
      ctx->hold_on = a;
    break;
  case TRI_ADMIT_PUSH:
    break;
  }
  /* Count before the push: quiescence must never see it handled but not
   * yet accepted. */
  tri_sched_count_sent(c->w, c->e, 1);
  /* Only a behaviour's ctx counts spills: the external ctx is shared by
   * every outside thread. */
  if (tri_mailbox_push_mp(&a->mb, &m->node) && ctx->actor != NULL)
    ctx->spills++;
  tri_sched_notify(sys->sched, c->w, &a->task);
  return TR_OK;
}

static tr_status check_ctx(const tr_ctx *ctx) {
  if (ctx == NULL)
    return TR_EINVAL;
  /* After tr_system_stop nothing would ever run an outside thread's message:
   * refuse it rather than queue it for a dead-letter count at free. A
   * behaviour finishing its run while the system stops still sends (its
   * messages are counted as SHUTDOWN dead letters at free), so that
   * stopping the system never turns into actor failures. */
  if (atomic_load_explicit(&ctx->sys->freeing, memory_order_acquire) ||
      (ctx->w == NULL && tri_sched_stopping(ctx->sys->sched)))
    return TR_ESTATE;
  return TR_OK;
}

/* What a message will carry: scalars to encode, or validated raw bytes. */
typedef struct payload {
  const tr_val *vals;
  size_t n;
  bool as_array;
  const void *raw;
} payload;

/* Build a message of `size` payload bytes from `p` and deliver it. */
static uint64_t deadline_after(uint64_t ms) {
  if (ms == UINT64_MAX)
    return UINT64_MAX;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + ms * 1000000u;
}

static tr_status send_payload(tr_ctx *ctx, tr_ref to, uint32_t tag, uint32_t corr, size_t size,
                              const payload *p) {
  caller c;
  tr_status st = enter(ctx, &c);
  if (st != TR_OK)
    return st;
  tri_msg *m = tri_msg_alloc(c.l, size);
  if (m == NULL) {
    leave(&c);
    return TR_ENOMEM;
  }
  if (p->raw != NULL) {
    memcpy(m->bytes, p->raw, size);
  } else {
    size_t wrote = tri_mp_write_vals(m->bytes, size, p->vals, p->n, p->as_array);
    tri_assert(wrote == size);
  }
  m->tag = tag;
  m->corr = corr;
  uint64_t deadline = 0;
  while ((st = deliver(ctx, &c, to, m)) == TR_EFULL && c.wait) {
    /* A blocking outside ctx and a full hold-sender mailbox: wait outside
     * the read section (reclamation must not wait on us), then retry. */
    if (deadline == 0)
      deadline = deadline_after(ctx->timeout_ms);
    leave(&c);
    st = tri_bound_wait_room(ctx->sys, deadline);
    tr_status again = enter(ctx, &c);
    if (st != TR_OK || again != TR_OK) {
      tri_msg_free(c.l, m);
      leave(&c);
      return st != TR_OK ? st : again;
    }
  }
  leave(&c);
  return st;
}

tr_status tri_send_raw(tr_ctx *ctx, tr_ref to, uint32_t tag, uint32_t corr, const void *msgpack,
                       size_t len) {
  static const uint8_t nil = 0xc0;
  payload p = {NULL, 0, false, msgpack != NULL ? msgpack : &nil};
  return send_payload(ctx, to, tag, corr, msgpack != NULL ? len : 1, &p);
}

static tr_status send_vals(tr_ctx *ctx, tr_ref to, uint32_t tag, const tr_val *vals, size_t n,
                           bool as_array) {
  tr_status st = check_ctx(ctx);
  if (st != TR_OK)
    return st;
  if ((vals == NULL && n > 0) || tag >= TR_TAG_RESERVED)
    return TR_EINVAL;

  size_t size = as_array ? tri_mp_array_header_size(n) : 0;
  size_t max = ctx->sys->cfg.max_msg_size;
  for (size_t i = 0; i < n; i++) {
    size_t s = tri_mp_val_size(&vals[i]);
    if (s == 0)
      return TR_EINVAL;
    if (s > max || size > max - s) /* also guards the addition */
      return TR_ETOOBIG;
    size += s;
  }
  if (size > max)
    return TR_ETOOBIG;
  payload p = {vals, n, as_array, NULL};
  return send_payload(ctx, to, tag, 0, size, &p);
}

TR_API tr_status tr_send(tr_ctx *ctx, tr_ref to, uint32_t tag) {
  tr_val v = tr_nil();
  return send_vals(ctx, to, tag, &v, 1, false);
}

TR_API tr_status tr_send_int(tr_ctx *ctx, tr_ref to, uint32_t tag, int64_t i) {
  tr_val v = tr_int(i);
  return send_vals(ctx, to, tag, &v, 1, false);
}

TR_API tr_status tr_send_uint(tr_ctx *ctx, tr_ref to, uint32_t tag, uint64_t u) {
  tr_val v = tr_uint(u);
  return send_vals(ctx, to, tag, &v, 1, false);
}

TR_API tr_status tr_send_double(tr_ctx *ctx, tr_ref to, uint32_t tag, double d) {
  tr_val v = tr_double(d);
  return send_vals(ctx, to, tag, &v, 1, false);
}

TR_API tr_status tr_send_str(tr_ctx *ctx, tr_ref to, uint32_t tag, const char *s, size_t len) {
  if (s == NULL && len > 0)
    return TR_EINVAL;
  tr_val v = tr_strn(s, len);
  return send_vals(ctx, to, tag, &v, 1, false);
}

TR_API tr_status tr_send_bin(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *p, size_t len) {
  if (p == NULL && len > 0)
    return TR_EINVAL;
  tr_val v = tr_bin(p, len);
  return send_vals(ctx, to, tag, &v, 1, false);
}

TR_API tr_status tr_send_vals(tr_ctx *ctx, tr_ref to, uint32_t tag, const tr_val *vals, size_t n) {
  return send_vals(ctx, to, tag, vals, n, true);
}

TR_API tr_status tr_send_msgpack(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *bytes,
                                 size_t len) {
  tr_status st = check_ctx(ctx);
  if (st != TR_OK)
    return st;
  if (bytes == NULL || tag >= TR_TAG_RESERVED)
    return TR_EINVAL;
  if (len > ctx->sys->cfg.max_msg_size)
    return TR_ETOOBIG;
  if ((st = tr_mp_check(bytes, len)) != TR_OK)
    return st;
  payload p = {NULL, 0, false, bytes};
  return send_payload(ctx, to, tag, 0, len, &p);
}

/* ------------------------------------------------------------ control */

TR_API tr_ref tr_self(const tr_ctx *ctx) {
  return ctx != NULL && ctx->actor != NULL ? tri_actor_ref(ctx->actor) : TR_REF_NONE;
}

TR_API tr_system *tr_ctx_system(const tr_ctx *ctx) { return ctx ? ctx->sys : NULL; }

TR_API tr_status tr_become(tr_ctx *ctx, tr_behaviour behaviour) {
  if (ctx == NULL || behaviour == NULL)
    return TR_EINVAL;
  if (ctx->actor == NULL)
    return TR_ESTATE;
  ctx->next_behaviour = behaviour;
  return TR_OK;
}

/* Post request `bit` to the actor named by `ref` (see internal.h). */
tr_status tri_actor_request(tr_ctx *ctx, tr_ref ref, uint32_t bit) {
  tr_system *sys = ctx->sys;
  caller c;
  tr_status st = enter(ctx, &c);
  if (st != TR_OK)
    return st;
  tri_actor *a = tri_registry_get(&sys->reg, ref);
  if (a == NULL) {
    leave(&c);
    return TR_ESTALE;
  }
  /* A request is a unit of work for quiescence: counted before it is
   * visible, retired by the actor's run when it acts on it, or by
   * actor_die (or tri_actor_shutdown). */
  tri_sched_count_sent(c.w, c.e, 1);
  /* Seq_cst RMW: either we set the bit before actor_die's fetch_or (which
   * then sees it and retires it), or we see DEAD. */
  uint32_t old = atomic_fetch_or_explicit(&a->task.state, bit, memory_order_seq_cst);
  if ((old & (bit | TRI_TASK_DEAD)) == 0) {
    atomic_fetch_add_explicit(&sys->requests, 1, memory_order_relaxed);
    tri_sched_notify(sys->sched, c.w, &a->task);
    if (old & TRI_ACTOR_HELD) /* a request is not held back by back-pressure */
      tri_actor_unhold(sys, c.w, a);
    leave(&c);
    return TR_OK;
  }
  tri_sched_count_sent(c.w, c.e, -1);
  leave(&c);
  /* Already requested (fine: idempotent), or the actor died meanwhile. */
  return (old & TRI_TASK_DEAD) ? TR_ESTALE : TR_OK;
}

tr_status tri_ctx_send(tr_ctx *ctx, tr_ref to, uint32_t tag, const tri_mp_part *parts, size_t n) {
  caller c;
  tr_status st = check_ctx(ctx);
  if (st != TR_OK || (st = enter(ctx, &c)) != TR_OK)
    return st;
  uint64_t from = ctx->actor != NULL ? tri_actor_ref(ctx->actor).id : ctx->as_sender;
  st = tri_sys_send(ctx->sys, c.l, from, to, tag, parts, n);
  leave(&c);
  return st;
}

TR_API tr_status tr_stop(tr_ctx *ctx, tr_ref ref) {
  tr_status st = check_ctx(ctx);
  if (st != TR_OK)
    return st;
  if (ctx->actor != NULL && tr_ref_eq(ref, tri_actor_ref(ctx->actor))) {
    ctx->stop_self = true;
    return TR_OK;
  }
  return tri_actor_request(ctx, ref, TRI_ACTOR_STOP);
}

/* A runtime message: past any bound, never refused (see fault.h). */
tr_status tri_sys_send(tr_system *sys, tri_local *l, uint64_t from, tr_ref to, uint32_t tag,
                       const tri_mp_part *parts, size_t n) {
  size_t size = tri_mp_parts_size(parts, n);
  if (size == 0)
    return TR_EINVAL;
  tri_msg *m = tri_msg_alloc(l, size);
  if (m == NULL)
    return TR_ENOMEM;
  size_t wrote = tri_mp_write_parts(m->bytes, size, parts, n);
  tri_assert(wrote == size);
  m->tag = tag;
  m->corr = 0;
  m->sender = from;
  /* l is the caller's own local area: a worker's, or this thread's
   * participant record (which is inside its read section). */
  tri_worker *w = NULL;
  tri_ext *e = NULL;
  if (l->id < sys->cfg.threads)
    w = tri_sched_worker(sys->sched, l->id);
  else
    e = tri_sched_ext_by_id(sys->sched, l->id);
  tri_actor *a = tri_registry_get(&sys->reg, to);
  if (a == NULL) {
    tri_dead_letter(sys, l, m, TR_DEAD_STALE, to.id, NULL, 0);
    return TR_ESTALE;
  }
  tri_sched_count_sent(w, e, 1);
  tri_mailbox_push_mp(&a->mb, &m->node);
  tri_sched_notify(sys->sched, w, &a->task);
  return TR_OK;
}

TR_API tr_status tr_actor_stats_get(tr_ctx *ctx, tr_ref ref, tr_actor_stats *out) {
  if (ctx == NULL || out == NULL)
    return TR_EINVAL;
  double npt = tri_ns_per_tick(); /* outside the read section: it reads the clock */
  caller c;
  tr_status st = enter(ctx, &c);
  if (st != TR_OK)
    return st;
  tri_actor *a = tri_registry_get(&ctx->sys->reg, ref);
  if (a == NULL) {
    leave(&c);
    return TR_ESTALE;
  }
  tri_actor_stats_fill(a, out, npt); /* stats.c */
  leave(&c);                         /* after the last read of a */
  return TR_OK;
}

void tri_ext_start(tri_ext *e, void *local, void *sys) {
  tri_local_start(local, sys, tri_ext_id(e), tr_system_threads(sys));
}
