/*
 * bound.c - bounded mailboxes: capacity, overflow policies, back-pressure.
 *
 * The problem. A producer faster than its consumer fills memory without
 * bound. A bounded mailbox must do something else when full, chosen at
 * spawn (tr_mailbox_policy): refuse, drop the newest, drop the oldest, or
 * hold the sender back - and none of these may lose a message silently or
 * deadlock the system (Pony's muting has an open deadlock report, ponyc#3382;
 * a blocking send deadlocks when every worker blocks, protoactor-kotlin#16).
 *
 * Counting. `count` is the number of messages accepted and not yet taken:
 * producers add before pushing (so they decide against an up-to-date
 * count), the consumer subtracts after each pop. It may exceed capacity for
 * hold-sender (messages are never refused there), for drop-oldest (the
 * excess is dropped when the consumer takes it) and for overflow.
 *
 * Holding (back-pressure). An actor that sends to a full HOLD_SENDER
 * mailbox R still gets its message queued, but when its current behaviour
 * call returns it is "held": the actor layer sets TRI_ACTOR_HELD in its task
 * word (it stays SCHEDULED, on no queue, so nobody else runs it), pushes a
 * hold record onto R's `held` stack (a Treiber stack whose owner takes all
 * with one exchange, so no ABA), and tells the scheduler TRI_RUN_HELD. R, at
 * the end of each run, when it has drained to `low` (half its capacity),
 * takes the stack and releases each held actor. Releasing is a claim:
 * fetch_and clearing HELD; only the thread that cleared it requeues the
 * actor, so a record that outlives its hold (the actor was released some
 * other way) is skipped, and an actor is never queued twice.
 *
 * No lost release. The holder pushes its record, then (seq_cst fence)
 * reads R's count; R subtracts from count (seq_cst RMW), then takes the
 * stack. If the holder reads a count above `low`, R's later decrement to
 * `low` comes after the push, and R's take sees the record. If it reads
 * `low` or less, R may have taken the stack already: the holder kicks R
 * (tri_sched_notify), whose ready() reports held records with room, so R
 * runs and releases it.
 *
 * No deadlock. A hold is refused when it would close a cycle: under the
 * hold lock, the sender follows the chain of holds from the receiver (the
 * receiver is held on X, X on Y, ...); if the chain comes back to the sender
 * (or runs past HOLD_CHAIN_MAX), the sender is not held and its message goes
 * past the bound, counted as overflow. Holds form chains, never cycles, so
 * every chain ends at an actor that is not held and can run; it drains and
 * releases the one held on it, and so on up the chain. That is how
 * back-pressure propagates upstream through a pipeline of full stages. A
 * stop request, and the death of the receiver, release held actors too.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

tri_bound *tri_bound_of(tri_actor *a) {
  if (!(a->task.user & TRI_ACTOR_BOUNDED))
    return NULL;
  /* Laid out by tr_spawn: actor, ring slots, bound, state. */
  return (tri_bound *)((char *)(a + 1) + tri_mailbox_slots_size(a->mb.ring.size));
}

void tri_bound_init(tri_bound *b, tr_mailbox_policy policy, uint32_t capacity) {
  b->capacity = capacity;
  b->low = capacity / 2;
  b->policy = policy;
  atomic_init(&b->count, 0);
  atomic_init(&b->held, NULL);
  atomic_init(&b->refused, 0);
  atomic_init(&b->dropped, 0);
  atomic_init(&b->dropped_oldest, 0);
  atomic_init(&b->overflow, 0);
  atomic_init(&b->holds, 0);
}

static uint32_t count_of(tri_bound *b) {
  return atomic_load_explicit(&b->count, memory_order_seq_cst);
}

static void ctr_inc(_Atomic uint64_t *c) { atomic_fetch_add_explicit(c, 1, memory_order_relaxed); }

tri_admit tri_bound_admit(tr_ctx *ctx, tri_actor *r) {
  tri_bound *b = tri_bound_of(r);
  /* Seq_cst: the "no lost release" argument above orders this against the
   * holders' fence. */
  uint32_t old = atomic_fetch_add_explicit(&b->count, 1, memory_order_seq_cst);
  if (old < b->capacity)
    return TRI_ADMIT_PUSH;

  switch (b->policy) {
  case TR_MAILBOX_DROP_OLDEST:
    if (old < 2 * (uint64_t)b->capacity)
      return TRI_ADMIT_PUSH; /* the consumer drops the oldest */
    break;
  case TR_MAILBOX_HOLD_SENDER:
    if (ctx->actor != NULL)
      return TRI_ADMIT_HOLD; /* queued; the sender is held after its message */
    /* Only threads outside the runtime may wait: a waiting worker could be
     * the one the receiver needs. */
    if (ctx->blocking && tri_sched_self(ctx->sys->sched) == NULL) {
      atomic_fetch_sub_explicit(&b->count, 1, memory_order_seq_cst);
      return TRI_ADMIT_WAIT;
    }
    break;
  default:
    break;
  }
  atomic_fetch_sub_explicit(&b->count, 1, memory_order_seq_cst);
  if (b->policy == TR_MAILBOX_DROP_NEWEST || b->policy == TR_MAILBOX_DROP_OLDEST) {
    ctr_inc(&b->dropped);
    return TRI_ADMIT_DROP;
  }
  ctr_inc(&b->refused);
  ctr_inc(&ctx->sys->refused);
  return TRI_ADMIT_REFUSE;
}

bool tri_bound_taken(tr_system *sys, tri_actor *a) {
  tri_bound *b = tri_bound_of(a);
  uint32_t old = atomic_fetch_sub_explicit(&b->count, 1, memory_order_seq_cst);
  /* Room again for outside threads waiting on a hold-sender mailbox. */
  if (old <= b->capacity && atomic_load_explicit(&sys->room_waiters, memory_order_seq_cst) != 0) {
    pthread_mutex_lock(&sys->room_lock);
    pthread_cond_broadcast(&sys->room_cond);
    pthread_mutex_unlock(&sys->room_lock);
  }
  if (b->policy == TR_MAILBOX_DROP_OLDEST && old > b->capacity) {
    ctr_inc(&b->dropped);
    ctr_inc(&b->dropped_oldest);
    return true; /* `old - 1` newer messages wait: this one is among the oldest */
  }
  return false;
}

bool tri_bound_can_release(tri_actor *a) {
  tri_bound *b = tri_bound_of(a);
  return b != NULL && atomic_load_explicit(&b->held, memory_order_acquire) != NULL &&
         count_of(b) <= b->low;
}

/*
 * The hold graph. Each held actor waits on exactly one receiver; that edge
 * is kept in the actor's task.inject_next (unused while it is held: a held
 * actor is on no queue) and changes only under sys->hold_lock, together with
 * the TRI_ACTOR_HELD bit. Holds are per run, not per message, so one lock is
 * cheap enough, and it makes the cycle check below exact.
 */
static tri_actor *held_on(tri_actor *a) { return (tri_actor *)a->task.inject_next; }

/* Under hold_lock: take s back if it is held (on `on`, unless NULL). */
static bool claim_locked(tri_actor *s, tri_actor *on) {
  if (!(atomic_load_explicit(&s->task.state, memory_order_relaxed) & TRI_ACTOR_HELD) ||
      (on != NULL && held_on(s) != on))
    return false; /* already released (and maybe held elsewhere since) */
  atomic_fetch_and_explicit(&s->task.state, ~(uint32_t)TRI_ACTOR_HELD, memory_order_acq_rel);
  s->task.inject_next = NULL;
  return true;
}

bool tri_actor_unhold(tr_system *sys, tri_worker *w, tri_actor *s) {
  pthread_mutex_lock(&sys->hold_lock);
  bool mine = claim_locked(s, NULL);
  pthread_mutex_unlock(&sys->hold_lock);
  if (mine)
    tri_sched_requeue(sys->sched, w, &s->task);
  return mine;
}

void tri_bound_release(tr_system *sys, tri_worker *w, tri_actor *r, bool all) {
  tri_bound *b = tri_bound_of(r);
  if (b == NULL || atomic_load_explicit(&b->held, memory_order_acquire) == NULL)
    return;
  if (!all && count_of(b) > b->low)
    return;
  /* Acquire: pairs with the release CAS in tri_bound_hold. */
  tri_msg *recs = atomic_exchange_explicit(&b->held, NULL, memory_order_acq_rel);
  tri_local *l = w != NULL ? tri_worker_local(w) : NULL;
  pthread_mutex_lock(&sys->hold_lock);
  for (tri_msg *rec = recs; rec != NULL;
       rec = (tri_msg *)atomic_load_explicit(&rec->node.next, memory_order_relaxed)) {
    tri_actor *s;
    memcpy(&s, rec->bytes, sizeof s);
    /* Claimed ones stay in their record for the requeue below. */
    if (!claim_locked(s, r))
      memset(rec->bytes, 0, sizeof s);
  }
  pthread_mutex_unlock(&sys->hold_lock);
  while (recs != NULL) {
    tri_msg *next = (tri_msg *)atomic_load_explicit(&recs->node.next, memory_order_relaxed);
    tri_actor *s;
    memcpy(&s, recs->bytes, sizeof s);
    if (s != NULL && w != NULL) /* at shutdown (w NULL) nothing runs again */
      tri_sched_requeue(sys->sched, w, &s->task);
    tri_msg_free(l, recs);
    recs = next;
  }
}

/* Longest chain of holds followed when checking for a cycle; a longer one
 * counts as a cycle (the sender is not held). */
#define HOLD_CHAIN_MAX 64

bool tri_bound_hold(tr_system *sys, tri_worker *w, tri_actor *s, tri_actor *r) {
  tri_bound *b = tri_bound_of(r);
  tri_msg *rec = tri_msg_alloc(tri_worker_local(w), sizeof s);
  if (rec == NULL)
    return false; /* no memory for the record: just don't hold */
  memcpy(rec->bytes, &s, sizeof s);

  pthread_mutex_lock(&sys->hold_lock);
  /* No cycle: follow the receivers' holds; if they lead back to s, holding
   * s would close a cycle in which nobody can run. */
  bool cycle = r == s;
  tri_actor *x = r;
  for (int steps = 0;
       !cycle && (atomic_load_explicit(&x->task.state, memory_order_relaxed) & TRI_ACTOR_HELD);
       steps++) {
    x = held_on(x);
    cycle = x == s || steps >= HOLD_CHAIN_MAX;
  }
  bool dead = (atomic_load_explicit(&r->task.state, memory_order_seq_cst) & TRI_TASK_DEAD) != 0;
  if (cycle || dead) {
    pthread_mutex_unlock(&sys->hold_lock);
    if (cycle)
      ctr_inc(&b->overflow);
    tri_msg_free(tri_worker_local(w), rec);
    return false;
  }
  atomic_fetch_or_explicit(&s->task.state, TRI_ACTOR_HELD, memory_order_seq_cst);
  s->task.inject_next = &r->task;
  tri_msg *top = atomic_load_explicit(&b->held, memory_order_relaxed);
  do {
    atomic_store_explicit(&rec->node.next, top != NULL ? &top->node : NULL, memory_order_relaxed);
    /* Release: the record is complete before R can take it. */
  } while (!atomic_compare_exchange_weak_explicit(&b->held, &top, rec, memory_order_release,
                                                  memory_order_relaxed));
  pthread_mutex_unlock(&sys->hold_lock);
  ctr_inc(&b->holds);
  ctr_inc(&sys->holds);
  /* From here on, s may already be released and running elsewhere: do not
   * touch it. Seq_cst fence: see "No lost release". If R died meanwhile,
   * its death released everything held on it (tri_bound_release, all). */
  atomic_thread_fence(memory_order_seq_cst);
  if (count_of(b) <= b->low)
    tri_sched_notify(sys->sched, w, &r->task);
  return true;
}

tr_status tri_bound_wait_room(tr_system *sys, uint64_t deadline_ns) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  uint64_t t = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
  if (deadline_ns != UINT64_MAX && t >= deadline_ns)
    return TR_ETIMEDOUT;
  /* Wait for any consumer of a hold-sender mailbox to make room, at most
   * 10 ms at a time (then the caller simply retries its send), so a
   * broadcast that raced with this wait costs at most 10 ms. */
  uint64_t until = t + 10000000u;
  if (deadline_ns < until)
    until = deadline_ns;
  struct timespec ts = {(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
  pthread_mutex_lock(&sys->room_lock);
  atomic_fetch_add_explicit(&sys->room_waiters, 1, memory_order_seq_cst);
  pthread_cond_timedwait(&sys->room_cond, &sys->room_lock, &ts);
  atomic_fetch_sub_explicit(&sys->room_waiters, 1, memory_order_seq_cst);
  pthread_mutex_unlock(&sys->room_lock);
  return TR_OK;
}
