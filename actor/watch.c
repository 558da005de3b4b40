/*
 * watch.c - monitors, links, exit reasons, the dead-letter handler, and
 * tr_system_exit.
 *
 * Monitors and links live in one side table per system, keyed by actor id
 * and guarded by one mutex: only actors that use them pay anything (a bit in
 * their task word, TRI_ACTOR_WATCHED, and a record here). An actor's record
 * holds the entries that watch it (monitors on it, and its links: a link is
 * two entries, one in each actor's record) and the monitors it holds on
 * others, so that either end's exit can remove an entry from both lists.
 *
 * Exactly once. An actor's death (actor_die) first sets DEAD in its task
 * word (seq_cst RMW), and only then, if WATCHED was set, takes the lock and
 * fires what its record holds. tr_monitor and tr_link take the lock and then
 * set WATCHED with a seq_cst RMW that also reads DEAD:
 *   - DEAD not yet set: the death's later RMW sees WATCHED, so it takes the
 *     lock after us and finds the entry we add: it fires it, once;
 *   - DEAD set: the death may or may not visit the table, but we add
 *     nothing, and tr_monitor sends the DOWN ("noproc") itself.
 * An entry is removed under the lock by whoever fires or cancels it, so no
 * entry fires twice, and no monitor of a live actor is lost.
 *
 * Notifications are sent while the lock is held: a send never takes this
 * lock, never blocks (runtime messages go past any bound), and so cannot
 * deadlock against it.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../sched/alloc.h"
#include "internal.h"

const uint8_t tri_reason_normal[7] = {0xa6, 'n', 'o', 'r', 'm', 'a', 'l'};
const uint8_t tri_reason_stopped[8] = {0xa7, 's', 't', 'o', 'p', 'p', 'e', 'd'};
const uint8_t tri_reason_shutdown[9] = {0xa8, 's', 'h', 'u', 't', 'd', 'o', 'w', 'n'};
const uint8_t tri_reason_noproc[7] = {0xa6, 'n', 'o', 'p', 'r', 'o', 'c'};
static const uint8_t nil_value = 0xc0;

/* ------------------------------------------------------------ the table */

typedef struct wentry {
  struct wentry *next_t; /* in the target's list */
  struct wentry *next_w; /* in the watcher's list (monitors only) */
  uint64_t target, watcher;
  uint64_t id; /* monitor id; 0 for a link */
} wentry;

typedef struct wrec {
  struct wrec *next; /* hash chain */
  uint64_t actor;
  wentry *as_target;    /* monitors on it, and its links (watcher = the peer) */
  wentry *as_watcher;   /* monitors it holds on others */
  uint8_t *kill_reason; /* a pending KILL's reason */
  size_t kill_len;
} wrec;

struct tri_watch {
  pthread_mutex_t lock;
  wrec **buckets;
  size_t nbuckets, nrecs;
  uint64_t next_id;
};

tr_status tri_watch_new(tr_system *sys) {
  struct tri_watch *t = tri_calloc(1, sizeof *t);
  if (t == NULL)
    return TR_ENOMEM;
  t->nbuckets = 64;
  t->buckets = tri_calloc(t->nbuckets, sizeof *t->buckets);
  if (t->buckets == NULL) {
    free(t);
    return TR_ENOMEM;
  }
  pthread_mutex_init(&t->lock, NULL);
  sys->watch = t;
  return TR_OK;
}

static void rec_free(wrec *r) {
  wentry *e, *next;
  /* Entries are freed through their target's list (every entry is in
   * exactly one as_target list); as_watcher only links them. */
  for (e = r->as_target; e != NULL; e = next) {
    next = e->next_t;
    free(e);
  }
  free(r->kill_reason);
  free(r);
}

void tri_watch_free(tr_system *sys) {
  struct tri_watch *t = sys->watch;
  if (t == NULL)
    return;
  for (size_t i = 0; i < t->nbuckets; i++) {
    wrec *r, *next;
    for (r = t->buckets[i]; r != NULL; r = next) {
      next = r->next;
      rec_free(r);
    }
  }
  free(t->buckets);
  pthread_mutex_destroy(&t->lock);
  free(t);
  sys->watch = NULL;
}

static size_t slot_of(const struct tri_watch *t, uint64_t id) {
  return (size_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & (t->nbuckets - 1);
}

static void grow(struct tri_watch *t) {
  size_t n = t->nbuckets * 2;
  wrec **b = tri_calloc(n, sizeof *b);
  if (b == NULL)
    return; /* longer chains, still correct */
  wrec **old = t->buckets;
  size_t oldn = t->nbuckets;
  t->buckets = b;
  t->nbuckets = n;
  for (size_t i = 0; i < oldn; i++) {
    wrec *r, *next;
    for (r = old[i]; r != NULL; r = next) {
      next = r->next;
      size_t s = slot_of(t, r->actor);
      r->next = b[s];
      b[s] = r;
    }
  }
  free(old);
}

/* The record of `id` (under the lock); created when `create`. */
static wrec *rec_get(struct tri_watch *t, uint64_t id, bool create) {
  for (wrec *r = t->buckets[slot_of(t, id)]; r != NULL; r = r->next)
    if (r->actor == id)
      return r;
  if (!create)
    return NULL;
  wrec *r = tri_calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  if (t->nrecs >= t->nbuckets)
    grow(t);
  size_t s = slot_of(t, id);
  r->actor = id;
  r->next = t->buckets[s];
  t->buckets[s] = r;
  t->nrecs++;
  return r;
}

/* Unhash a record (under the lock). */
static void rec_unhash(struct tri_watch *t, wrec *r) {
  for (wrec **p = &t->buckets[slot_of(t, r->actor)]; *p != NULL; p = &(*p)->next) {
    if (*p == r) {
      *p = r->next;
      t->nrecs--;
      return;
    }
  }
}

/* Drop a record that holds nothing any more. */
static void rec_tidy(struct tri_watch *t, wrec *r) {
  if (r != NULL && r->as_target == NULL && r->as_watcher == NULL && r->kill_reason == NULL) {
    rec_unhash(t, r);
    free(r);
  }
}

static bool unlist_t(wentry **head, const wentry *e) {
  for (wentry **p = head; *p != NULL; p = &(*p)->next_t) {
    if (*p == e) {
      *p = e->next_t;
      return true;
    }
  }
  return false;
}

static bool unlist_w(wentry **head, const wentry *e) {
  for (wentry **p = head; *p != NULL; p = &(*p)->next_w) {
    if (*p == e) {
      *p = e->next_w;
      return true;
    }
  }
  return false;
}

/* The link entry in `in`'s list whose other end is `peer`, or NULL. */
static wentry *find_link(wrec *in, uint64_t peer) {
  if (in == NULL)
    return NULL;
  for (wentry *e = in->as_target; e != NULL; e = e->next_t)
    if (e->id == 0 && e->watcher == peer)
      return e;
  return NULL;
}

/*
 * Under the lock, with the caller inside a read section: mark `ref`'s actor
 * WATCHED; false when it is gone or dying (see the file's top).
 */
static bool mark_watched(tr_system *sys, tr_ref ref) {
  tri_actor *a = tri_registry_get(&sys->reg, ref);
  if (a == NULL)
    return false;
  uint32_t old = atomic_fetch_or_explicit(&a->task.state, TRI_ACTOR_WATCHED, memory_order_seq_cst);
  return (old & TRI_TASK_DEAD) == 0;
}

/* ------------------------------------------------------------ behaviour API */

static tr_status in_behaviour(const tr_ctx *ctx) {
  if (ctx == NULL)
    return TR_EINVAL;
  return ctx->actor != NULL ? TR_OK : TR_ESTATE;
}

static void exit_parts(tri_mp_part parts[4], uint64_t monitor, uint64_t who, bool failed,
                       const void *reason, size_t len) {
  parts[0] = TRI_MP_VAL(tr_uint(monitor));
  parts[1] = TRI_MP_VAL(tr_uint(who));
  parts[2] = TRI_MP_VAL(tr_bool(failed));
  parts[3] = TRI_MP_RAW(reason, len);
}

TR_API tr_status tr_monitor(tr_ctx *ctx, tr_ref target, uint64_t *id) {
  tr_status st = in_behaviour(ctx);
  if (st != TR_OK || id == NULL)
    return st != TR_OK ? st : TR_EINVAL;
  tr_system *sys = ctx->sys;
  struct tri_watch *t = sys->watch;
  uint64_t self = tri_actor_ref(ctx->actor).id;

  pthread_mutex_lock(&t->lock);
  uint64_t mid = ++t->next_id;
  bool alive = mark_watched(sys, target);
  if (alive) {
    wentry *e = tri_calloc(1, sizeof *e);
    wrec *rt = e != NULL ? rec_get(t, target.id, true) : NULL;
    wrec *rw = rt != NULL ? rec_get(t, self, true) : NULL;
    if (rw == NULL) {
      free(e);
      rec_tidy(t, rt);
      pthread_mutex_unlock(&t->lock);
      return TR_ENOMEM;
    }
    *e = (wentry){rt->as_target, rw->as_watcher, target.id, self, mid};
    rt->as_target = e;
    rw->as_watcher = e;
    /* The watcher's exit must remove its monitors from the table too. */
    atomic_fetch_or_explicit(&ctx->actor->task.state, TRI_ACTOR_WATCHED, memory_order_seq_cst);
  }
  pthread_mutex_unlock(&t->lock);
  if (!alive) {
    tri_mp_part parts[4];
    exit_parts(parts, mid, target.id, false, tri_reason_noproc, sizeof tri_reason_noproc);
    st =
        tri_sys_send(sys, tri_worker_local(ctx->w), target.id, tr_self(ctx), TR_TAG_DOWN, parts, 4);
    if (st != TR_OK)
      return st;
  }
  *id = mid;
  return TR_OK;
}

TR_API tr_status tr_demonitor(tr_ctx *ctx, uint64_t id) {
  tr_status st = in_behaviour(ctx);
  if (st != TR_OK)
    return st;
  struct tri_watch *t = ctx->sys->watch;
  uint64_t self = tri_actor_ref(ctx->actor).id;

  st = TR_ESTALE;
  pthread_mutex_lock(&t->lock);
  wrec *rw = rec_get(t, self, false);
  for (wentry *e = rw != NULL ? rw->as_watcher : NULL; e != NULL; e = e->next_w) {
    if (e->id == id) {
      wrec *rt = rec_get(t, e->target, false);
      unlist_w(&rw->as_watcher, e);
      if (rt != NULL)
        unlist_t(&rt->as_target, e);
      free(e);
      rec_tidy(t, rt);
      rec_tidy(t, rw);
      st = TR_OK;
      break;
    }
  }
  pthread_mutex_unlock(&t->lock);
  return st;
}

TR_API tr_status tr_link(tr_ctx *ctx, tr_ref other) {
  tr_status st = in_behaviour(ctx);
  if (st != TR_OK)
    return st;
  tr_system *sys = ctx->sys;
  struct tri_watch *t = sys->watch;
  uint64_t self = tri_actor_ref(ctx->actor).id;
  if (other.id == self)
    return TR_EINVAL;

  pthread_mutex_lock(&t->lock);
  if (!mark_watched(sys, other)) {
    pthread_mutex_unlock(&t->lock);
    return TR_ESTALE;
  }
  atomic_fetch_or_explicit(&ctx->actor->task.state, TRI_ACTOR_WATCHED, memory_order_seq_cst);
  wrec *rs = rec_get(t, self, true);
  wrec *ro = rs != NULL ? rec_get(t, other.id, true) : NULL;
  st = TR_OK;
  if (ro == NULL) {
    rec_tidy(t, rs);
    st = TR_ENOMEM;
  } else if (find_link(rs, other.id) == NULL) {
    wentry *e1 = tri_calloc(1, sizeof *e1), *e2 = tri_calloc(1, sizeof *e2);
    if (e1 == NULL || e2 == NULL) {
      free(e1);
      free(e2);
      rec_tidy(t, rs);
      rec_tidy(t, ro);
      st = TR_ENOMEM;
    } else {
      *e1 = (wentry){rs->as_target, NULL, self, other.id, 0};
      *e2 = (wentry){ro->as_target, NULL, other.id, self, 0};
      rs->as_target = e1;
      ro->as_target = e2;
    }
  }
  pthread_mutex_unlock(&t->lock);
  return st;
}

TR_API tr_status tr_unlink(tr_ctx *ctx, tr_ref other) {
  tr_status st = in_behaviour(ctx);
  if (st != TR_OK)
    return st;
  struct tri_watch *t = ctx->sys->watch;
  uint64_t self = tri_actor_ref(ctx->actor).id;

  pthread_mutex_lock(&t->lock);
  wrec *rs = rec_get(t, self, false), *ro = rec_get(t, other.id, false);
  wentry *e1 = find_link(rs, other.id), *e2 = find_link(ro, self);
  st = e1 != NULL ? TR_OK : TR_ESTALE;
  if (e1 != NULL) {
    unlist_t(&rs->as_target, e1);
    free(e1);
  }
  if (e2 != NULL) {
    unlist_t(&ro->as_target, e2);
    free(e2);
  }
  rec_tidy(t, rs);
  rec_tidy(t, ro);
  pthread_mutex_unlock(&t->lock);
  return st;
}

TR_API tr_status tr_trap_exits(tr_ctx *ctx, bool on) {
  tr_status st = in_behaviour(ctx);
  if (st != TR_OK)
    return st;
  if (on)
    atomic_fetch_or_explicit(&ctx->actor->task.state, TRI_ACTOR_TRAP, memory_order_relaxed);
  else
    atomic_fetch_and_explicit(&ctx->actor->task.state, ~TRI_ACTOR_TRAP, memory_order_relaxed);
  return TR_OK;
}

/* ------------------------------------------------------------ exits */

/* Under the lock: make the linked actor `peer` fail with `reason`. */
static void kill_peer(tr_system *sys, tri_worker *w, uint64_t peer, const void *reason,
                      size_t len) {
  struct tri_watch *t = sys->watch;
  wrec *r = rec_get(t, peer, true);
  if (r != NULL && r->kill_reason == NULL) {
    r->kill_reason = tri_malloc(len);
    if (r->kill_reason != NULL) {
      memcpy(r->kill_reason, reason, len);
      r->kill_len = len;
    }
  }
  struct tr_ctx ctx = {.sys = sys, .w = w};
  if (tri_actor_request(&ctx, (tr_ref){peer}, TRI_ACTOR_KILL) != TR_OK && r != NULL) {
    /* Already gone: nothing will take the reason. */
    free(r->kill_reason);
    r->kill_reason = NULL;
    rec_tidy(t, r);
  }
}

void tri_watch_exit(tr_system *sys, tri_worker *w, tri_actor *a, const void *reason, size_t len,
                    bool failed) {
  struct tri_watch *t = sys->watch;
  uint64_t self = tri_actor_ref(a).id;
  tri_local *l = tri_worker_local(w);
  tri_mp_part parts[4];

  pthread_mutex_lock(&t->lock);
  wrec *r = rec_get(t, self, false);
  if (r == NULL) {
    pthread_mutex_unlock(&t->lock);
    return;
  }
  rec_unhash(t, r);
  /* Monitors it held on others: they will never fire. */
  for (wentry *e = r->as_watcher, *next; e != NULL; e = next) {
    next = e->next_w;
    wrec *rt = e->target == self ? r : rec_get(t, e->target, false);
    if (rt != NULL)
      unlist_t(&rt->as_target, e);
    free(e);
    if (rt != r)
      rec_tidy(t, rt);
  }
  /* Monitors on it, and its links. */
  for (wentry *e = r->as_target, *next; e != NULL; e = next) {
    next = e->next_t;
    wrec *rw = rec_get(t, e->watcher, false);
    if (e->id != 0) {
      if (rw != NULL)
        unlist_w(&rw->as_watcher, e);
      exit_parts(parts, e->id, self, failed, reason, len);
      (void)tri_sys_send(sys, l, self, (tr_ref){e->watcher}, TR_TAG_DOWN, parts, 4);
    } else {
      wentry *mirror = find_link(rw, self);
      if (mirror != NULL) {
        unlist_t(&rw->as_target, mirror);
        free(mirror);
      }
      tri_actor *peer = tri_registry_get(&sys->reg, (tr_ref){e->watcher});
      if (peer != NULL &&
          (atomic_load_explicit(&peer->task.state, memory_order_relaxed) & TRI_ACTOR_TRAP)) {
        exit_parts(parts, 0, self, failed, reason, len);
        (void)tri_sys_send(sys, l, self, (tr_ref){e->watcher}, TR_TAG_EXIT, parts, 4);
      } else if (peer != NULL && failed) {
        kill_peer(sys, w, e->watcher, reason, len);
      }
    }
    free(e);
    rec_tidy(t, rw);
  }
  free(r->kill_reason);
  free(r);
  pthread_mutex_unlock(&t->lock);
}

uint8_t *tri_watch_take_kill(tr_system *sys, uint64_t id, size_t *len) {
  struct tri_watch *t = sys->watch;
  uint8_t *reason = NULL;
  pthread_mutex_lock(&t->lock);
  wrec *r = rec_get(t, id, false);
  if (r != NULL) {
    reason = r->kill_reason;
    *len = r->kill_len;
    r->kill_reason = NULL;
    rec_tidy(t, r);
  }
  pthread_mutex_unlock(&t->lock);
  return reason;
}

/* ------------------------------------------------------------ failing */

static tr_status set_failing(tr_ctx *ctx, const uint8_t *reason, size_t len) {
  uint8_t *copy = tri_malloc(len);
  if (copy == NULL)
    return TR_ENOMEM;
  memcpy(copy, reason, len);
  free(ctx->fail_reason);
  ctx->fail_reason = copy;
  ctx->fail_len = len;
  ctx->failing = true;
  return TR_OK;
}

TR_API tr_status tr_fail(tr_ctx *ctx, const void *reason, size_t len) {
  tr_status st = in_behaviour(ctx);
  if (st != TR_OK)
    return st;
  if (reason == NULL) {
    reason = &nil_value;
    len = 1;
  }
  if (len > ctx->sys->cfg.max_msg_size)
    return TR_ETOOBIG;
  if ((st = tr_mp_check(reason, len)) != TR_OK)
    return st;
  return set_failing(ctx, reason, len);
}

TR_API tr_status tr_fail_str(tr_ctx *ctx, const char *reason) {
  tr_status st = in_behaviour(ctx);
  if (st != TR_OK || reason == NULL)
    return st != TR_OK ? st : TR_EINVAL;
  tr_val v = tr_str(reason);
  size_t size = tri_mp_val_size(&v);
  if (size == 0)
    return TR_EINVAL;
  if (size > ctx->sys->cfg.max_msg_size)
    return TR_ETOOBIG;
  uint8_t *buf = tri_malloc(size);
  if (buf == NULL)
    return TR_ENOMEM;
  tri_mp_write_vals(buf, size, &v, 1, false);
  st = set_failing(ctx, buf, size);
  free(buf);
  return st;
}

/* ------------------------------------------------------------ decoding */

static tr_status get_uint(tri_mp_span s, uint64_t *out) {
  tr_val v;
  tr_status st = tr_mp_get_val(s.p, s.len, &v);
  if (st != TR_OK)
    return st;
  if (v.type != TR_VAL_UINT)
    return TR_EMALFORMED;
  *out = v.as.u;
  return TR_OK;
}

TR_API tr_status tr_msg_exit_info(const tr_msg *msg, tr_exit_info *out) {
  if (msg == NULL || out == NULL || (msg->tag != TR_TAG_DOWN && msg->tag != TR_TAG_EXIT))
    return TR_EINVAL;
  tri_mp_span s[4];
  tr_val failed;
  uint64_t ref;
  tr_status st = tri_mp_spans(msg->bytes, msg->len, s, 4);
  if (st == TR_OK)
    st = get_uint(s[0], &out->monitor);
  if (st == TR_OK)
    st = get_uint(s[1], &ref);
  if (st == TR_OK)
    st = tr_mp_get_val(s[2].p, s[2].len, &failed);
  if (st == TR_OK && failed.type != TR_VAL_BOOL)
    st = TR_EMALFORMED;
  if (st != TR_OK)
    return st == TR_EDECODE ? TR_EMALFORMED : st;
  out->ref = (tr_ref){ref};
  out->failed = failed.as.b;
  out->reason = s[3].p;
  out->reason_len = s[3].len;
  return TR_OK;
}

TR_API bool tr_reason_is(const void *reason, size_t len, const char *s) {
  tr_val v;
  if (reason == NULL || s == NULL || tr_mp_get_val(reason, len, &v) != TR_OK ||
      v.type != TR_VAL_STR)
    return false;
  return v.as.bytes.len == strlen(s) && memcmp(v.as.bytes.ptr, s, v.as.bytes.len) == 0;
}

/* ------------------------------------------------------------ dead letters */

TR_API tr_status tr_system_set_dead_letter_handler(tr_system *sys, tr_ref handler) {
  if (sys == NULL)
    return TR_EINVAL;
  atomic_store_explicit(&sys->dead_handler, handler.id, memory_order_relaxed);
  return TR_OK;
}

void tri_dead_forward(tr_system *sys, tri_local *l, const tri_msg *m, tr_dead_reason why,
                      uint64_t to, const void *detail, size_t detail_len) {
  uint64_t handler = atomic_load_explicit(&sys->dead_handler, memory_order_relaxed);
  if (detail == NULL) {
    detail = &nil_value;
    detail_len = 1;
  }
  tri_mp_part parts[6] = {
      TRI_MP_VAL(tr_str(tr_dead_reason_name(why))),
      TRI_MP_VAL(tr_uint(to)),
      TRI_MP_VAL(tr_uint(m->sender)),
      TRI_MP_VAL(tr_uint(m->tag)),
      TRI_MP_RAW(m->bytes, m->len),
      TRI_MP_RAW(detail, detail_len),
  };
  /* Out of memory: it stays counted, just not forwarded. */
  (void)tri_sys_send(sys, l, 0, (tr_ref){handler}, TR_TAG_DEAD_LETTER, parts, 6);
}

TR_API tr_status tr_msg_dead_letter(const tr_msg *msg, tr_dead_letter *out) {
  if (msg == NULL || out == NULL || msg->tag != TR_TAG_DEAD_LETTER)
    return TR_EINVAL;
  tri_mp_span s[6];
  tr_val name;
  uint64_t to, from, tag;
  tr_status st = tri_mp_spans(msg->bytes, msg->len, s, 6);
  if (st == TR_OK)
    st = tr_mp_get_val(s[0].p, s[0].len, &name);
  if (st == TR_OK && name.type != TR_VAL_STR)
    st = TR_EMALFORMED;
  if (st == TR_OK)
    st = get_uint(s[1], &to);
  if (st == TR_OK)
    st = get_uint(s[2], &from);
  if (st == TR_OK)
    st = get_uint(s[3], &tag);
  if (st != TR_OK)
    return st == TR_EDECODE ? TR_EMALFORMED : st;
  int reason = -1;
  for (int i = 0; i < TR_DEAD_REASON_COUNT; i++) {
    const char *n = tr_dead_reason_name((tr_dead_reason)i);
    if (strlen(n) == name.as.bytes.len && memcmp(n, name.as.bytes.ptr, name.as.bytes.len) == 0)
      reason = i;
  }
  if (reason < 0 || tag > UINT32_MAX)
    return TR_EMALFORMED;
  *out = (tr_dead_letter){
      (tr_dead_reason)reason, {to}, {from}, (uint32_t)tag, s[4].p, s[4].len, s[5].p, s[5].len};
  return TR_OK;
}

/* ------------------------------------------------------------ system exit */

TR_API tr_status tr_system_exit(tr_ctx *ctx, const void *reason, size_t len) {
  if (ctx == NULL)
    return TR_EINVAL;
  if (reason == NULL) {
    reason = &nil_value;
    len = 1;
  }
  tr_status st = tr_mp_check(reason, len);
  if (st != TR_OK)
    return st;
  tr_system *sys = ctx->sys;
  pthread_mutex_lock(&sys->exit_lock);
  if (!atomic_load(&sys->exited)) {
    sys->exit_reason = tri_malloc(len);
    if (sys->exit_reason == NULL) {
      pthread_mutex_unlock(&sys->exit_lock);
      return TR_ENOMEM;
    }
    memcpy(sys->exit_reason, reason, len);
    sys->exit_len = len;
    atomic_store(&sys->exited, true);
  }
  pthread_mutex_unlock(&sys->exit_lock);
  tri_sched_exit(sys->sched);
  return TR_OK;
}

TR_API tr_status tr_system_exit_reason(tr_system *sys, const void **reason, size_t *len) {
  if (sys == NULL || reason == NULL || len == NULL)
    return TR_EINVAL;
  pthread_mutex_lock(&sys->exit_lock);
  bool exited = atomic_load(&sys->exited);
  if (exited) {
    *reason = sys->exit_reason;
    *len = sys->exit_len;
  }
  pthread_mutex_unlock(&sys->exit_lock);
  return exited ? TR_OK : TR_ESTATE;
}
