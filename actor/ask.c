/*
 * ask.c - timers as messages, request/reply with timeouts, blocking asks.
 *
 * Timers. tr_send_after copies the message (tag, payload, sender) into a
 * timer record and arms a scheduler timer (sched/timer.c) with it. When it
 * fires, the timer thread sends the copy like any outside thread would, but
 * in the name of the actor that armed it.
 *
 * Asks. A request carries a correlation id (31 bits, per system). The ask
 * is recorded in a table keyed by (asker, id), together with the id of a
 * one-shot timer that fires after the timeout. Exactly one of two things
 * then takes the record out of the table, under the table's lock:
 *  - the reply, when tr_reply sends it (deliver() asks tri_ask_answer): the
 *    timer is cancelled and the reply delivered;
 *  - the timer, when it fires: the asker gets a TR_TAG_TIMEOUT message.
 * Whichever comes second finds no record: a late reply becomes a LATE_REPLY
 * dead letter, a late timer does nothing. So the asker sees exactly one
 * outcome per ask, and never a reply "as if on time" after its timeout.
 *
 * Blocking asks (tr_ask_wait) spawn a one-message waiter actor that asks on
 * the caller's behalf and hands the outcome over through a mutex and a
 * condition variable.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../sched/alloc.h"
#include "internal.h"

/* ------------------------------------------------------------ the table */

#define ASK_SHARDS  64
#define ASK_BUCKETS 64

typedef struct ask_node {
  struct ask_node *next;
  uint64_t asker;
  uint64_t timer;
  uint32_t corr;
} ask_node;

struct tri_asks {
  struct {
    pthread_mutex_t lock;
    ask_node *bucket[ASK_BUCKETS];
  } shard[ASK_SHARDS];
};

static unsigned ask_hash(uint64_t asker, uint32_t corr) {
  uint64_t h = (asker ^ ((uint64_t)corr << 17)) * 0x9E3779B97F4A7C15ull;
  return (unsigned)(h >> 52); /* 12 bits: shard (6) and bucket (6) */
}

tr_status tri_asks_new(tr_system *sys) {
  struct tri_asks *t = tri_calloc(1, sizeof *t);
  if (t == NULL)
    return TR_ENOMEM;
  for (unsigned i = 0; i < ASK_SHARDS; i++)
    pthread_mutex_init(&t->shard[i].lock, NULL);
  sys->asks_table = t;
  return TR_OK;
}

void tri_asks_free(tr_system *sys) {
  struct tri_asks *t = sys->asks_table;
  if (t == NULL)
    return;
  for (unsigned i = 0; i < ASK_SHARDS; i++) {
    for (unsigned b = 0; b < ASK_BUCKETS; b++) {
      for (ask_node *n = t->shard[i].bucket[b], *next; n != NULL; n = next) {
        next = n->next;
        free(n);
      }
    }
    pthread_mutex_destroy(&t->shard[i].lock);
  }
  free(t);
  sys->asks_table = NULL;
}

static void ask_put(tr_system *sys, ask_node *n) {
  unsigned h = ask_hash(n->asker, n->corr);
  struct tri_asks *t = sys->asks_table;
  pthread_mutex_lock(&t->shard[h % ASK_SHARDS].lock);
  ask_node **b = &t->shard[h % ASK_SHARDS].bucket[h / ASK_SHARDS];
  n->next = *b;
  *b = n;
  pthread_mutex_unlock(&t->shard[h % ASK_SHARDS].lock);
}

/* Take the record of (asker, corr) out of the table; NULL if none. */
static ask_node *ask_take(tr_system *sys, uint64_t asker, uint32_t corr) {
  unsigned h = ask_hash(asker, corr);
  struct tri_asks *t = sys->asks_table;
  ask_node *found = NULL;
  pthread_mutex_lock(&t->shard[h % ASK_SHARDS].lock);
  for (ask_node **p = &t->shard[h % ASK_SHARDS].bucket[h / ASK_SHARDS]; *p; p = &(*p)->next) {
    if ((*p)->asker == asker && (*p)->corr == corr) {
      found = *p;
      *p = found->next;
      break;
    }
  }
  pthread_mutex_unlock(&t->shard[h % ASK_SHARDS].lock);
  return found;
}

/* Set the timer of a recorded ask (it is armed after the record exists). */
static void ask_set_timer(tr_system *sys, uint64_t asker, uint32_t corr, uint64_t timer) {
  unsigned h = ask_hash(asker, corr);
  struct tri_asks *t = sys->asks_table;
  pthread_mutex_lock(&t->shard[h % ASK_SHARDS].lock);
  for (ask_node *n = t->shard[h % ASK_SHARDS].bucket[h / ASK_SHARDS]; n; n = n->next)
    if (n->asker == asker && n->corr == corr)
      n->timer = timer;
  pthread_mutex_unlock(&t->shard[h % ASK_SHARDS].lock);
}

bool tri_ask_answer(tr_system *sys, uint64_t asker, uint32_t corr) {
  ask_node *n = ask_take(sys, asker, corr);
  if (n == NULL)
    return false;
  if (n->timer != 0)
    tri_sched_timer_cancel(sys->sched, n->timer);
  free(n);
  return true;
}

/* ------------------------------------------------------------ timer records */

enum { TD_SEND, TD_ASK_TIMEOUT };

typedef struct tdata {
  int kind;
  tr_ref to;
  uint64_t sender; /* sent in this actor's name (0: none) */
  uint32_t tag, corr;
  size_t len; /* 0: nil */
  uint8_t payload[];
} tdata;

/*
 * Out of memory on the timer thread. A user timer's message is counted as a
 * NOMEM dead letter (nobody to tell). The runtime's own timed messages (an
 * ask's timeout, a supervisor's backoff) must not be lost, or an asker would
 * never hear back and a child would never be restarted: the timer fires
 * again shortly instead (TRI_TIMER_RETRY), and stays pending work.
 */
int tri_timer_fire(void *data, void *arg) {
  tdata *d = data;
  tr_system *sys = arg;
  struct tr_ctx ctx = {.sys = sys, .as_sender = d->sender};

  if (d->kind == TD_ASK_TIMEOUT) {
    ask_node *n = ask_take(sys, d->to.id, d->corr);
    if (n == NULL)
      return TRI_TIMER_STOP; /* the reply won */
    if (tri_send_raw(&ctx, d->to, TR_TAG_TIMEOUT, d->corr, NULL, 0) == TR_ENOMEM) {
      ask_put(sys, n); /* still pending: a reply may yet win */
      return TRI_TIMER_RETRY;
    }
    free(n);
    atomic_fetch_add_explicit(&sys->ask_timeouts, 1, memory_order_relaxed);
    return TRI_TIMER_STOP;
  }
  tr_status st = tri_send_raw(&ctx, d->to, d->tag, 0, d->len ? d->payload : NULL, d->len);
  if (st == TR_ENOMEM) {
    if (d->tag >= TR_TAG_RESERVED)
      return TRI_TIMER_RETRY;
    atomic_fetch_add_explicit(&sys->dead[TR_DEAD_NOMEM], 1, memory_order_relaxed);
  }
  /* A periodic timer to a stopped actor ends. */
  return st != TR_ESTALE ? TRI_TIMER_KEEP : TRI_TIMER_STOP;
}

void tri_timer_free(void *data, void *arg) {
  (void)arg;
  free(data);
}

static uint64_t ms_to_ns(uint64_t ms) { return ms * 1000000u; }

/* Arm a timer for `d` (taken over on success). Counts for the caller. */
static tr_status arm(tr_ctx *ctx, tdata *d, uint64_t delay_ms, uint64_t period_ms, uint64_t *id) {
  tri_ext *e = NULL;
  if (ctx->w == NULL && (e = tri_sched_ext_enter(ctx->sys->sched)) == NULL)
    return TR_ENOMEM;
  *id = tri_sched_timer_add(ctx->sys->sched, ctx->w, e, ms_to_ns(delay_ms), ms_to_ns(period_ms), d);
  if (e != NULL)
    tri_sched_ext_leave(e);
  return *id != 0 ? TR_OK : TR_ENOMEM;
}

static tr_status check(tr_ctx *ctx) {
  if (ctx == NULL)
    return TR_EINVAL;
  if (atomic_load_explicit(&ctx->sys->freeing, memory_order_acquire) ||
      tri_sched_stopping(ctx->sys->sched))
    return TR_ESTATE;
  return TR_OK;
}

static tr_status check_payload(tr_ctx *ctx, const void *msgpack, size_t len) {
  if (msgpack == NULL)
    return TR_OK;
  if (len > ctx->sys->cfg.max_msg_size)
    return TR_ETOOBIG;
  return tr_mp_check(msgpack, len);
}

static uint64_t sender_of(const tr_ctx *ctx) {
  return ctx->actor != NULL ? tri_actor_ref(ctx->actor).id : ctx->as_sender;
}

TR_API tr_status tr_send_after(tr_ctx *ctx, tr_ref to, uint32_t tag, uint64_t delay_ms,
                               uint64_t period_ms, const void *msgpack, size_t len, tr_timer *out) {
  if (tag >= TR_TAG_RESERVED)
    return TR_EINVAL;
  return tri_send_after(ctx, to, tag, delay_ms, period_ms, msgpack, len, out);
}

tr_status tri_send_after(tr_ctx *ctx, tr_ref to, uint32_t tag, uint64_t delay_ms,
                         uint64_t period_ms, const void *msgpack, size_t len, tr_timer *out) {
  tr_status st = check(ctx);
  if (st != TR_OK)
    return st;
  if (delay_ms > TR_TIMER_MAX_MS || period_ms > TR_TIMER_MAX_MS)
    return TR_EINVAL;
  if ((st = check_payload(ctx, msgpack, len)) != TR_OK)
    return st;
  size_t n = msgpack != NULL ? len : 0;
  tdata *d = tri_malloc(sizeof *d + n);
  if (d == NULL)
    return TR_ENOMEM;
  *d = (tdata){TD_SEND, to, sender_of(ctx), tag, 0, n};
  if (n != 0)
    memcpy(d->payload, msgpack, n);
  uint64_t id;
  if ((st = arm(ctx, d, delay_ms, period_ms, &id)) != TR_OK) {
    free(d);
    return st;
  }
  if (out != NULL)
    out->id = id;
  return TR_OK;
}

TR_API tr_status tr_timer_cancel(tr_ctx *ctx, tr_timer timer) {
  if (ctx == NULL)
    return TR_EINVAL;
  return tri_sched_timer_cancel(ctx->sys->sched, timer.id) ? TR_OK : TR_ESTALE;
}

/* ------------------------------------------------------------ asks */

TR_API uint32_t tr_msg_corr(const tr_msg *msg) { return msg ? msg->corr & ~TRI_CORR_REPLY : 0; }

TR_API bool tr_msg_is_reply(const tr_msg *msg) {
  return msg != NULL && (msg->corr & TRI_CORR_REPLY) != 0;
}

static uint32_t new_corr(tr_system *sys) {
  uint32_t corr;
  do
    corr = atomic_fetch_add_explicit(&sys->next_corr, 1, memory_order_relaxed) & ~TRI_CORR_REPLY;
  while (corr == 0);
  return corr;
}

/* Ask `to` in the name of `asker` (ctx sends the request) with id `corr`. */
static tr_status ask_as(tr_ctx *ctx, uint64_t asker, uint32_t corr, tr_ref to, uint32_t tag,
                        const void *msgpack, size_t len, uint64_t timeout_ms) {
  tr_system *sys = ctx->sys;
  tr_status st = check(ctx);
  if (st != TR_OK)
    return st;
  if (timeout_ms == 0 || timeout_ms > TR_TIMER_MAX_MS)
    return TR_EINVAL;
  if ((st = check_payload(ctx, msgpack, len)) != TR_OK)
    return st;

  ask_node *n = tri_malloc(sizeof *n);
  tdata *d = tri_malloc(sizeof *d);
  if (n == NULL || d == NULL) {
    free(n);
    free(d);
    return TR_ENOMEM;
  }
  *n = (ask_node){NULL, asker, 0, corr};
  *d = (tdata){TD_ASK_TIMEOUT, (tr_ref){asker}, 0, TR_TAG_TIMEOUT, corr, 0};
  ask_put(sys, n);
  uint64_t timer;
  if ((st = arm(ctx, d, timeout_ms, 0, &timer)) != TR_OK) {
    free(d);
    free(ask_take(sys, asker, corr));
    return st;
  }
  ask_set_timer(sys, asker, corr, timer);
  st = tri_send_raw(ctx, to, tag, corr, msgpack, len);
  if (st != TR_OK) {
    /* Nothing was asked: no timeout either. */
    ask_node *mine = ask_take(sys, asker, corr);
    if (mine != NULL) {
      tri_sched_timer_cancel(sys->sched, mine->timer);
      free(mine);
    }
    return st;
  }
  atomic_fetch_add_explicit(&sys->asks, 1, memory_order_relaxed);
  return TR_OK;
}

TR_API tr_status tr_ask(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *msgpack, size_t len,
                        uint64_t timeout_ms, uint32_t *corr) {
  if (ctx == NULL || tag >= TR_TAG_RESERVED)
    return TR_EINVAL;
  if (ctx->actor == NULL)
    return TR_ESTATE;
  uint32_t id = new_corr(ctx->sys);
  tr_status st = ask_as(ctx, tri_actor_ref(ctx->actor).id, id, to, tag, msgpack, len, timeout_ms);
  if (st == TR_OK && corr != NULL)
    *corr = id;
  return st;
}

TR_API tr_status tr_reply(tr_ctx *ctx, const tr_msg *request, uint32_t tag, const void *msgpack,
                          size_t len) {
  tr_status st = check(ctx);
  if (st != TR_OK)
    return st;
  if (request == NULL || request->corr == 0 || (request->corr & TRI_CORR_REPLY) ||
      request->sender == 0 || (tag >= TR_TAG_RESERVED && request->tag < TR_TAG_RESERVED))
    return TR_EINVAL;
  if ((st = check_payload(ctx, msgpack, len)) != TR_OK)
    return st;
  st = tri_send_raw(ctx, (tr_ref){request->sender}, tag, request->corr | TRI_CORR_REPLY, msgpack,
                    len);
  /* A stopped asker: its ask is over; the reply is a dead letter either way. */
  return st == TR_ESTALE ? TR_OK : st;
}

/* ------------------------------------------------------------ blocking asks */

typedef struct waitbox {
  pthread_mutex_t lock;
  pthread_cond_t cond;
  _Atomic int refs; /* the caller and the waiter actor */
  bool done;
  tr_status status;
  _Atomic uint32_t corr; /* set before the request goes out */
  uint32_t tag;
  void *reply;
  size_t len;
} waitbox;

static void box_unref(waitbox *b) {
  if (atomic_fetch_sub(&b->refs, 1) == 1) {
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b->reply);
    free(b);
  }
}

typedef struct waiter {
  waitbox *box;
} waiter;

static tr_status waiter_init(void *state, const void *arg) {
  ((waiter *)state)->box = (waitbox *)arg;
  atomic_fetch_add(&((waitbox *)arg)->refs, 1);
  return TR_OK;
}

static void waiter_fini(void *state) { box_unref(((waiter *)state)->box); }

static tr_status waiter_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  waitbox *b = ((waiter *)state)->box;
  bool mine = tr_msg_corr(msg) == atomic_load(&b->corr);
  pthread_mutex_lock(&b->lock);
  if (!b->done && mine) {
    if (tr_msg_tag(msg) == TR_TAG_TIMEOUT && !tr_msg_is_reply(msg)) {
      b->status = TR_ETIMEDOUT;
    } else {
      size_t len;
      const void *p = tr_msg_payload(msg, &len);
      b->reply = tri_malloc(len);
      b->status = b->reply != NULL ? TR_OK : TR_ENOMEM;
      if (b->reply != NULL)
        memcpy(b->reply, p, len);
      b->len = len;
      b->tag = tr_msg_tag(msg);
    }
    b->done = true;
    pthread_cond_signal(&b->cond);
  }
  pthread_mutex_unlock(&b->lock);
  return mine ? tr_stop(ctx, tr_self(ctx)) : TR_OK; /* one outcome, then done */
}

/* The waiter may have stopped itself already: TR_ESTALE is fine here. */
static void stop_quietly(tr_ctx *ctx, tr_ref w) {
  tr_status st = tr_stop(ctx, w);
  (void)st;
}

static const tr_actor_spec waiter_spec = {.name = "troupe.ask_wait",
                                          .behaviour = waiter_behaviour,
                                          .state_size = sizeof(waiter),
                                          .init = waiter_init,
                                          .fini = waiter_fini};

TR_API tr_status tr_ask_wait(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *msgpack, size_t len,
                             uint64_t timeout_ms, uint32_t *reply_tag, void **reply,
                             size_t *reply_len) {
  if (tag >= TR_TAG_RESERVED)
    return TR_EINVAL;
  return tri_ask_wait(ctx, to, tag, msgpack, len, timeout_ms, reply_tag, reply, reply_len);
}

tr_status tri_ask_wait(tr_ctx *ctx, tr_ref to, uint32_t tag, const void *msgpack, size_t len,
                       uint64_t timeout_ms, uint32_t *reply_tag, void **reply, size_t *reply_len) {
  if (ctx == NULL || reply_tag == NULL || reply == NULL || reply_len == NULL)
    return TR_EINVAL;
  tr_system *sys = ctx->sys;
  if (ctx->w != NULL || tri_sched_self(sys->sched) != NULL || !tri_sched_started(sys->sched))
    return TR_ESTATE;
  waitbox *b = tri_calloc(1, sizeof *b);
  if (b == NULL)
    return TR_ENOMEM;
  pthread_mutex_init(&b->lock, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&b->cond, &ca);
  pthread_condattr_destroy(&ca);
  atomic_init(&b->refs, 1);

  tr_ref w;
  tr_status st = tr_spawn(ctx, &waiter_spec, b, &w);
  if (st != TR_OK) {
    box_unref(b);
    return st;
  }
  /* The request goes out in the waiter's name, so the reply comes to it. */
  struct tr_ctx as = *ctx;
  as.as_sender = w.id;
  uint32_t corr = new_corr(sys);
  atomic_store(&b->corr, corr); /* before the reply can possibly come */
  st = ask_as(&as, w.id, corr, to, tag, msgpack, len, timeout_ms);
  if (st != TR_OK) {
    stop_quietly(ctx, w);
    box_unref(b);
    return st;
  }
  /* The ask's own timeout always produces an outcome; the extra second only
   * covers a system stopped meanwhile (its timers no longer fire). */
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  uint64_t until =
      (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec + (timeout_ms + 1000) * 1000000u;
  ts = (struct timespec){(time_t)(until / 1000000000u), (long)(until % 1000000000u)};
  pthread_mutex_lock(&b->lock);
  while (!b->done)
    if (pthread_cond_timedwait(&b->cond, &b->lock, &ts) != 0)
      break;
  st = b->done ? b->status : TR_ETIMEDOUT;
  if (st == TR_OK) {
    *reply_tag = b->tag;
    *reply = b->reply;
    *reply_len = b->len;
    b->reply = NULL;
  }
  pthread_mutex_unlock(&b->lock);
  if (!b->done)
    stop_quietly(ctx, w);
  box_unref(b);
  return st;
}

/* ------------------------------------------------------------ contexts */

TR_API tr_status tr_ctx_new_blocking(tr_system *sys, uint64_t timeout_ms, tr_ctx **out) {
  if (sys == NULL || out == NULL)
    return TR_EINVAL;
  tr_ctx *c = tri_calloc(1, sizeof *c);
  if (c == NULL)
    return TR_ENOMEM;
  *c = (struct tr_ctx){.sys = sys, .blocking = true, .timeout_ms = timeout_ms, .owned = true};
  *out = c;
  return TR_OK;
}

TR_API void tr_ctx_free(tr_ctx *ctx) {
  if (ctx != NULL && ctx->owned)
    free(ctx);
}
