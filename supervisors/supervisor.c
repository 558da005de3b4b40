/*
 * supervisor.c - supervisors: an ordinary actor whose behaviour applies a
 * restart strategy to the exits of its children (see troupe/sup.h for the
 * semantics users see).
 *
 * How it hangs together with the runtime (actor.c):
 *   - children are spawned with a tri_child block naming their supervisor;
 *   - when a child exits it does not die: its fini runs, it is suspended
 *     (mailbox kept, no mail taken) and it tells its supervisor with a
 *     TRI_TAG_CHILD message [kind, child, index, reason];
 *   - the supervisor answers with a request bit on the child: RESTART (the
 *     child re-runs init in place, on its own worker, then takes its mail
 *     again) or TERM (it dies for good and sends TRI_CHILD_GONE).
 * A supervisor is itself such a child when nested; a root supervisor has a
 * child block with parent 0, so that tr_sup_start_child can find its spec.
 *
 * Everything the supervisor decides happens in its behaviour, one message
 * at a time: no lock, no shared state beyond the request bits.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../actor/internal.h"
#include "../sched/alloc.h"

enum { OP_START = 1, OP_ADOPT, OP_TERMINATE, OP_STOP, OP_STATS };

typedef struct sup_arg {
  const tr_sup_spec *spec;
  tr_system *sys;
} sup_arg;

typedef struct kid {
  tr_ref ref;              /* 0: not running */
  const tr_child_spec *cs; /* its spec (the template for DYNAMIC) */
  bool alive;              /* spawned, no GONE seen yet */
  bool terminating;        /* told to stop for good: never restarted */
  bool waiting;            /* suspended, a backoff timer will restart it */
  bool down;               /* exited (suspended): takes no mail until restarted */
} kid;

typedef struct sup {
  const tr_sup_spec *spec;
  tr_system *sys;
  kid *kids;
  size_t nkids, cap;
  /* Restart events of the last `intensity` (ring of timestamps, ns). */
  uint64_t *events;
  size_t nevents, next_event;
  bool started;    /* its children were started (once per incarnation) */
  bool shutting;   /* stopping children in reverse order */
  bool give_up;    /* ... and then failing (intensity exceeded) */
  size_t cursor;   /* children at or past it are stopped or being stopped */
  uint8_t *reason; /* the reason to fail with once shut down */
  size_t reason_len;
  uint64_t rng;
  tr_sup_stats stats;
} sup;

/* For calls whose failure leaves nothing to do (noted at each use). */
static void ignore(tr_status st) { (void)st; }

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static unsigned intensity_of(const tr_sup_spec *s) {
  return s->intensity == 0 && s->period_ms == 0 ? 1 : s->intensity;
}

static uint64_t period_of(const tr_sup_spec *s) {
  return s->intensity == 0 && s->period_ms == 0 ? 5000 : s->period_ms;
}

/* ------------------------------------------------------------ lifecycle */

static tr_status sup_init(void *state, const void *arg) {
  sup *s = state;
  const sup_arg *a = arg;
  s->spec = a->spec;
  s->sys = a->sys;
  s->cap = a->spec->strategy == TR_SUP_DYNAMIC ? 8 : a->spec->nchildren;
  s->kids = tri_calloc(s->cap, sizeof *s->kids);
  unsigned n = intensity_of(a->spec);
  s->events = n != 0 ? tri_calloc(n, sizeof *s->events) : NULL;
  if (s->kids == NULL || (n != 0 && s->events == NULL)) {
    free(s->kids);
    free(s->events);
    return TR_ENOMEM;
  }
  if (a->spec->strategy != TR_SUP_DYNAMIC) {
    s->nkids = a->spec->nchildren;
    for (size_t i = 0; i < s->nkids; i++)
      s->kids[i].cs = &a->spec->children[i];
  }
  s->rng = now_ns() | 1;
  return TR_OK;
}

/* Without a worker (tr_system_free) every actor is shut down anyway. */
static void terminate_all(sup *s) {
  tri_worker *w = tri_sched_self(s->sys->sched);
  if (w == NULL)
    return;
  struct tr_ctx ctx = {.sys = s->sys, .w = w};
  for (size_t i = s->nkids; i-- > 0;)
    if (s->kids[i].alive)
      (void)tri_actor_request(&ctx, s->kids[i].ref, TRI_ACTOR_TERM);
}

static void sup_fini(void *state) {
  sup *s = state;
  terminate_all(s);
  free(s->kids);
  free(s->events);
  free(s->reason);
}

static tr_status sup_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg);

static tr_actor_spec sup_actor(const tr_sup_spec *spec) {
  return (tr_actor_spec){.name = spec->name != NULL ? spec->name : "troupe.supervisor",
                         .behaviour = sup_behaviour,
                         .state_size = sizeof(sup),
                         .init = sup_init,
                         .fini = sup_fini};
}

/* ------------------------------------------------------------ starting */

/* Refs spawned by one tr_sup_start, to stop them all if a later one fails. */
typedef struct spawned {
  tr_ref *refs;
  size_t n, cap;
} spawned;

static tr_status note(spawned *sp, tr_ref r) {
  if (sp == NULL)
    return TR_OK;
  if (sp->n == sp->cap) {
    size_t cap = sp->cap ? 2 * sp->cap : 16;
    tr_ref *p = tri_realloc(sp->refs, cap * sizeof *p);
    if (p == NULL)
      return TR_ENOMEM;
    sp->refs = p;
    sp->cap = cap;
  }
  sp->refs[sp->n++] = r;
  return TR_OK;
}

static tr_status start_sup(tr_ctx *ctx, const tr_sup_spec *spec, tr_ref parent, uint32_t index,
                           tr_ref *out, tr_ref *kids_out, spawned *sp);

/* Start child i of supervisor `self` (spawned in the caller's thread). */
static tr_status start_child(tr_ctx *ctx, tr_ref self, const tr_child_spec *cs, uint32_t index,
                             const void *arg, size_t arg_size, tr_ref *out, spawned *sp) {
  if (cs->sup != NULL)
    return start_sup(ctx, cs->sup, self, index, out, NULL, sp);
  tri_child_opts o = {self, index, arg, arg_size};
  tr_status st = tri_spawn(ctx, &cs->actor, NULL, &o, out);
  if (st == TR_OK && (st = note(sp, *out)) != TR_OK)
    (void)tri_actor_request(ctx, *out, TRI_ACTOR_TERM);
  return st;
}

/*
 * Spawn a supervisor and its static children, in the caller's thread.
 * The children's refs are written straight into the new supervisor's
 * state: it cannot run yet (nobody else has its ref until this call
 * returns, and its children cannot exit before anyone can send to them),
 * and whatever later makes it run reaches it through the scheduler's
 * hand-off, which orders these writes before its first run.
 */
static tr_status start_sup(tr_ctx *ctx, const tr_sup_spec *spec, tr_ref parent, uint32_t index,
                           tr_ref *out, tr_ref *kids_out, spawned *sp) {
  sup_arg a = {spec, ctx->sys};
  tri_child_opts o = {parent, index, &a, sizeof a};
  tr_actor_spec as = sup_actor(spec);
  tr_ref self;
  tr_status st = tri_spawn(ctx, &as, NULL, &o, &self);
  if (st == TR_EINIT)
    return TR_ENOMEM; /* sup_init fails only for want of memory */
  if (st != TR_OK)
    return st;
  if ((st = note(sp, self)) != TR_OK) {
    (void)tri_actor_request(ctx, self, TRI_ACTOR_TERM);
    return st;
  }
  sup *s = tri_registry_get(&ctx->sys->reg, self)->u.live.state;
  s->started = true;
  for (uint32_t i = 0; spec->strategy != TR_SUP_DYNAMIC && i < spec->nchildren; i++) {
    const tr_child_spec *cs = &spec->children[i];
    tr_ref r;
    if ((st = start_child(ctx, self, cs, i, cs->arg, cs->arg_size, &r, sp)) != TR_OK)
      return st;
    s->kids[i].ref = r;
    s->kids[i].alive = true;
    if (kids_out != NULL)
      kids_out[i] = r;
  }
  *out = self;
  return TR_OK;
}

/* A supervisor restarted in place starts its children from its behaviour. */
static tr_status restart_children(tr_ctx *ctx, sup *s) {
  for (uint32_t i = 0; s->spec->strategy != TR_SUP_DYNAMIC && i < s->nkids; i++) {
    const tr_child_spec *cs = s->kids[i].cs;
    tr_ref r;
    tr_status st = start_child(ctx, tr_self(ctx), cs, i, cs->arg, cs->arg_size, &r, NULL);
    if (st != TR_OK)
      return st;
    s->kids[i] = (kid){.ref = r, .cs = cs, .alive = true};
  }
  return TR_OK;
}

/* ------------------------------------------------------------ validation */

static tr_status check_spec(const tr_sup_spec *spec, unsigned depth) {
  if (spec == NULL || depth > 32 || spec->children == NULL || spec->nchildren == 0 ||
      spec->nchildren > TR_SUP_MAX_CHILDREN || (unsigned)spec->strategy > TR_SUP_DYNAMIC ||
      (spec->strategy == TR_SUP_DYNAMIC && spec->nchildren != 1) ||
      !(spec->backoff_jitter >= 0.0 && spec->backoff_jitter <= 1.0) ||
      (spec->backoff_max_ms != 0 && spec->backoff_max_ms < spec->backoff_min_ms) ||
      spec->period_ms > TR_TIMER_MAX_MS || spec->backoff_min_ms > TR_TIMER_MAX_MS ||
      spec->backoff_max_ms > TR_TIMER_MAX_MS || spec->intensity > TR_SUP_MAX_INTENSITY)
    return TR_EINVAL;
  for (size_t i = 0; i < spec->nchildren; i++) {
    const tr_child_spec *cs = &spec->children[i];
    if ((unsigned)cs->restart > TR_RESTART_TEMPORARY || (cs->arg == NULL && cs->arg_size != 0))
      return TR_EINVAL;
    if (cs->sup != NULL) {
      tr_status st = check_spec(cs->sup, depth + 1);
      if (st != TR_OK)
        return st;
    } else if (cs->actor.behaviour == NULL) {
      return TR_EINVAL;
    }
  }
  return TR_OK;
}

TR_API tr_status tr_sup_start(tr_ctx *ctx, const tr_sup_spec *spec, tr_ref *out,
                              tr_ref *children_out) {
  if (ctx == NULL || out == NULL)
    return TR_EINVAL;
  tr_status st = check_spec(spec, 0);
  if (st != TR_OK)
    return st;
  spawned sp = {0};
  st = start_sup(ctx, spec, TR_REF_NONE, UINT32_MAX, out, children_out, &sp);
  if (st != TR_OK) {
    /* Undo in reverse: children first, the supervisors they belong to last. */
    for (size_t i = sp.n; i-- > 0;)
      (void)tri_actor_request(ctx, sp.refs[i], TRI_ACTOR_TERM);
  }
  free(sp.refs);
  return st;
}

/* The spec of the supervisor `ref`, if it is one (its child block is
 * immutable, so any thread may read it while the actor lives). */
static const sup_arg *sup_of(tri_actor *a) {
  tri_child *c = tri_child_of(a);
  if (c == NULL || c->behaviour != sup_behaviour)
    return NULL;
  return c->arg;
}

static tr_status tell_sup(tr_ctx *ctx, tr_ref sup_ref, uint64_t op, uint64_t arg) {
  tri_mp_part parts[2] = {TRI_MP_VAL(tr_uint(op)), TRI_MP_VAL(tr_uint(arg))};
  return tri_ctx_send(ctx, sup_ref, TRI_TAG_SUP, parts, 2);
}

TR_API tr_status tr_sup_start_child(tr_ctx *ctx, tr_ref sup_ref, const void *arg, size_t arg_size,
                                    tr_ref *out) {
  if (ctx == NULL || out == NULL || (arg == NULL && arg_size != 0))
    return TR_EINVAL;
  /* The lookup must be inside a read section from outside threads: take
   * the spec pointer (immutable, outlives the supervisor) and go. */
  tri_ext *e = NULL;
  if (ctx->w == NULL && (e = tri_sched_ext_enter(ctx->sys->sched)) == NULL)
    return TR_ENOMEM;
  tri_actor *actor = tri_registry_get(&ctx->sys->reg, sup_ref);
  const sup_arg *a = actor != NULL ? sup_of(actor) : NULL;
  const tr_sup_spec *spec = a != NULL ? a->spec : NULL;
  if (e != NULL)
    tri_sched_ext_leave(e);
  if (spec == NULL)
    return actor != NULL ? TR_EINVAL : TR_ESTALE;
  if (spec->strategy != TR_SUP_DYNAMIC)
    return TR_EINVAL;
  tr_ref r;
  tr_status st = start_child(ctx, sup_ref, &spec->children[0], UINT32_MAX, arg, arg_size, &r, NULL);
  if (st != TR_OK)
    return st;
  if ((st = tell_sup(ctx, sup_ref, OP_ADOPT, r.id)) != TR_OK) {
    (void)tri_actor_request(ctx, r, TRI_ACTOR_TERM);
    return st;
  }
  *out = r;
  return TR_OK;
}

TR_API tr_status tr_sup_terminate_child(tr_ctx *ctx, tr_ref sup_ref, tr_ref child) {
  if (ctx == NULL)
    return TR_EINVAL;
  return tell_sup(ctx, sup_ref, OP_TERMINATE, child.id);
}

TR_API tr_status tr_sup_stop(tr_ctx *ctx, tr_ref sup_ref) {
  if (ctx == NULL)
    return TR_EINVAL;
  return tell_sup(ctx, sup_ref, OP_STOP, 0);
}

TR_API tr_status tr_sup_stats_get(tr_system *sys, tr_ref sup_ref, uint64_t timeout_ms,
                                  tr_sup_stats *out) {
  if (sys == NULL || out == NULL)
    return TR_EINVAL;
  uint8_t req[2] = {0x91, OP_STATS}; /* [OP_STATS] */
  uint32_t tag;
  void *reply;
  size_t len;
  tr_status st = tri_ask_wait(tr_system_ctx(sys), sup_ref, TRI_TAG_SUP, req, sizeof req, timeout_ms,
                              &tag, &reply, &len);
  if (st != TR_OK)
    return st;
  tr_val v[4];
  size_t n = 0;
  st = tr_mp_get_vals(reply, len, v, 4, &n);
  free(reply);
  if (st != TR_OK || n != 4 || v[0].type != TR_VAL_UINT || v[1].type != TR_VAL_UINT ||
      v[2].type != TR_VAL_UINT || v[3].type != TR_VAL_BOOL)
    return TR_EINVAL; /* not a supervisor: it answered something else */
  *out = (tr_sup_stats){v[0].as.u, v[1].as.u, v[2].as.u, v[3].as.b};
  return TR_OK;
}

/* ------------------------------------------------------------ deciding */

static kid *find(sup *s, uint64_t ref) {
  for (size_t i = 0; i < s->nkids; i++)
    if (s->kids[i].ref.id == ref && s->kids[i].alive)
      return &s->kids[i];
  return NULL;
}

static void forget(sup *s, kid *k) {
  if (s->spec->strategy == TR_SUP_DYNAMIC) {
    *k = s->kids[--s->nkids]; /* dynamic children have no order */
  } else {
    k->alive = false;
    k->ref = TR_REF_NONE;
  }
}

static uint64_t live_children(const sup *s) {
  uint64_t n = 0;
  for (size_t i = 0; i < s->nkids; i++)
    n += s->kids[i].alive;
  return n;
}

/* One more restart event now: allowed by the intensity? Records it. */
static bool allow_restart(sup *s, uint64_t now, unsigned *recent) {
  unsigned max = intensity_of(s->spec);
  uint64_t window = period_of(s->spec) * 1000000u;
  if (max == 0)
    return false;
  /* The ring holds the last `max` events, oldest at next_event once full:
   * count back from the newest while they are inside the window, so the
   * cost is the number of recent restarts, not the intensity. */
  unsigned n = 0;
  for (size_t i = 0; i < s->nevents; i++) {
    size_t at = (s->next_event + max - 1 - i) % max;
    if (now - s->events[at] >= window)
      break;
    n++;
  }
  if (n >= max)
    return false;
  s->events[s->next_event] = now;
  s->next_event = (s->next_event + 1) % max;
  if (s->nevents < max)
    s->nevents++;
  *recent = n + 1;
  return true;
}

/* The wait before the n-th restart within the period (backoff). */
static uint64_t backoff_ms(sup *s, unsigned n) {
  const tr_sup_spec *sp = s->spec;
  if (sp->backoff_min_ms == 0)
    return 0;
  uint64_t cap = sp->backoff_max_ms != 0 ? sp->backoff_max_ms : 64 * sp->backoff_min_ms;
  uint64_t d = sp->backoff_min_ms;
  for (unsigned i = 1; i < n && d < cap; i++)
    d *= 2;
  if (d > cap)
    d = cap;
  /* xorshift64: the jitter factor in [1 - j, 1 + j]. */
  s->rng ^= s->rng << 13;
  s->rng ^= s->rng >> 7;
  s->rng ^= s->rng << 17;
  double u = (double)(s->rng >> 11) / (double)(1ull << 53);
  double f = 1.0 + sp->backoff_jitter * (2.0 * u - 1.0);
  return (uint64_t)((double)d * f + 0.5);
}

static tr_status tell_sup(tr_ctx *ctx, tr_ref sup_ref, uint64_t op, uint64_t arg);

/* End a child for good. A supervisor child is first asked to stop its own
 * subtree in order; its exit then comes back (on_child) and is made final
 * with TERM. */
/* Returns false when the child is already gone (its GONE message may be
 * on the way, or lost to an allocation failure: either way it is over). */
static bool terminate(tr_ctx *ctx, kid *k) {
  bool first = !k->terminating;
  k->terminating = true;
  k->waiting = false;
  if (first && !k->down && k->cs->sup != NULL && tell_sup(ctx, k->ref, OP_STOP, 0) == TR_OK)
    return true;
  return tri_actor_request(ctx, k->ref, TRI_ACTOR_TERM) != TR_ESTALE;
}

/* Restart one child in place (a supervisor child also restarts its own
 * children: it is told to start them once its init has run). */
static void restart_one(tr_ctx *ctx, sup *s, kid *k) {
  k->waiting = false;
  k->down = false;
  if (tri_actor_request(ctx, k->ref, TRI_ACTOR_RESTART) != TR_OK)
    return; /* gone meanwhile: its GONE is on the way */
  s->stats.restarts++;
  if (k->cs->sup != NULL)
    (void)tell_sup(ctx, k->ref, OP_START, 0);
}

/* Restart `k` and, by the strategy, its siblings (in start order). */
static void restart_group(tr_ctx *ctx, sup *s, kid *k) {
  tr_sup_strategy strat = s->spec->strategy;
  if (strat == TR_SUP_ONE_FOR_ONE || strat == TR_SUP_DYNAMIC) {
    restart_one(ctx, s, k);
    return;
  }
  size_t from = strat == TR_SUP_ONE_FOR_ALL ? 0 : (size_t)(k - s->kids);
  for (size_t i = from; i < s->nkids; i++) {
    kid *o = &s->kids[i];
    if (!o->alive || o->terminating)
      continue;
    if (o != k && o->cs->restart == TR_RESTART_TEMPORARY) {
      if (!terminate(ctx, o)) /* OTP: temporary siblings are not restarted */
        forget(s, o);
    } else
      restart_one(ctx, s, o);
  }
}

/* Stop the next child in reverse start order; once none is left, finish:
 * fail (giving up) or stop. */
static void shutdown_step(tr_ctx *ctx, sup *s) {
  while (s->cursor > 0) {
    kid *k = &s->kids[s->cursor - 1];
    if (k->alive) {
      if (k->terminating || terminate(ctx, k))
        return; /* wait for its GONE */
      forget(s, k);
    }
    s->cursor--;
  }
  if (s->give_up) {
    /* A root: the system exits (only ENOMEM can refuse: then the owner
     * sees the root's failure in the stats, not an exit reason). */
    if (tri_child_of(ctx->actor)->parent == 0)
      ignore(tr_system_exit(ctx, s->reason, s->reason_len));
    if (s->reason == NULL || tr_fail(ctx, s->reason, s->reason_len) != TR_OK)
      ignore(tr_fail_str(ctx, "shutdown")); /* out of memory: a shorter reason */
  } else {
    ignore(tr_stop(ctx, tr_self(ctx))); /* stopping oneself cannot fail */
  }
}

static void begin_shutdown(tr_ctx *ctx, sup *s) {
  s->shutting = true;
  s->cursor = s->nkids;
  shutdown_step(ctx, s);
}

/* Intensity exceeded: reason ["shutdown", child id, child's reason]. */
static void give_up(tr_ctx *ctx, sup *s, kid *k, tri_mp_span reason) {
  const char *id = k->cs->id != NULL ? k->cs->id : "";
  tri_mp_part parts[3] = {TRI_MP_VAL(tr_str("shutdown")), TRI_MP_VAL(tr_str(id)),
                          TRI_MP_RAW(reason.p, reason.len)};
  size_t size = tri_mp_parts_size(parts, 3);
  free(s->reason);
  s->reason = size != 0 ? tri_malloc(size) : NULL;
  s->reason_len = s->reason != NULL ? tri_mp_write_parts(s->reason, size, parts, 3) : 0;
  if (s->reason_len == 0) {
    free(s->reason);
    s->reason = NULL;
  }
  s->stats.gave_up = true;
  s->give_up = true;
  begin_shutdown(ctx, s);
}

static tr_status span_uint(tri_mp_span sp, uint64_t *out) {
  tr_val v;
  tr_status st = tr_mp_get_val(sp.p, sp.len, &v);
  if (st != TR_OK || v.type != TR_VAL_UINT)
    return TR_EMALFORMED;
  *out = v.as.u;
  return TR_OK;
}

/* A child exited: [kind, child, index, reason]. */
static void on_child(tr_ctx *ctx, sup *s, const tr_msg *msg) {
  tri_mp_span sp[4];
  uint64_t kind, ref, index;
  size_t len;
  const void *p = tr_msg_payload(msg, &len);
  if (tri_mp_spans(p, len, sp, 4) != TR_OK || span_uint(sp[0], &kind) != TR_OK ||
      span_uint(sp[1], &ref) != TR_OK || span_uint(sp[2], &index) != TR_OK)
    return;
  kid *k = find(s, ref);
  if (k == NULL) {
    /* A child of an earlier incarnation of this supervisor: end it. */
    if (kind != TRI_CHILD_GONE)
      (void)tri_actor_request(ctx, (tr_ref){ref}, TRI_ACTOR_TERM);
    return;
  }
  s->stats.exits++;
  if (kind == TRI_CHILD_GONE) {
    forget(s, k);
    if (s->shutting)
      shutdown_step(ctx, s);
    return;
  }
  bool failed = kind == TRI_CHILD_FAILED;
  k->down = true;
  tr_restart_type rt = k->cs->restart;
  bool again = rt == TR_RESTART_PERMANENT || (rt == TR_RESTART_TRANSIENT && failed);
  if (s->shutting || k->terminating || !again) {
    if (!terminate(ctx, k))
      forget(s, k);
    return;
  }
  unsigned recent = 0;
  if (!allow_restart(s, now_ns(), &recent)) {
    give_up(ctx, s, k, sp[3]);
    return;
  }
  uint64_t delay = backoff_ms(s, recent);
  if (delay == 0) {
    restart_group(ctx, s, k);
    return;
  }
  k->waiting = true;
  uint8_t buf[10];
  tr_val v = tr_uint(ref);
  size_t n = tri_mp_write_vals(buf, sizeof buf, &v, 1, false);
  if (tri_send_after(ctx, tr_self(ctx), TRI_TAG_TIMER, delay, 0, buf, n, NULL) != TR_OK)
    restart_group(ctx, s, k); /* no timer: restart at once rather than never */
}

static tr_status on_request(tr_ctx *ctx, sup *s, const tr_msg *msg) {
  size_t len;
  const void *p = tr_msg_payload(msg, &len);
  tr_val v[2];
  size_t n = 0;
  if (tr_mp_get_vals(p, len, v, 2, &n) != TR_OK || n < 1 || v[0].type != TR_VAL_UINT)
    return TR_OK; /* not ours: ignored */
  uint64_t arg = n == 2 && v[1].type == TR_VAL_UINT ? v[1].as.u : 0;
  switch (v[0].as.u) {
  case OP_START: /* after our own restart in place */
    /* Restart requests that came close together were one restart (the
     * request bit coalesces them), but each came with a START: only the
     * first START of an incarnation starts children. */
    if (s->started)
      break;
    s->started = true;
    if (restart_children(ctx, s) != TR_OK) {
      terminate_all(s);
      ignore(tr_fail_str(ctx, "start_failed")); /* ENOMEM: the return fails it */
      return TR_EFAIL;
    }
    break;
  case OP_ADOPT:
    if (s->spec->strategy == TR_SUP_DYNAMIC && find(s, arg) == NULL) {
      if (s->nkids == s->cap) {
        kid *k = tri_realloc(s->kids, 2 * s->cap * sizeof *k);
        if (k == NULL) {
          (void)tri_actor_request(ctx, (tr_ref){arg}, TRI_ACTOR_TERM);
          break;
        }
        s->kids = k;
        s->cap *= 2;
      }
      s->kids[s->nkids++] = (kid){.ref = {arg}, .cs = &s->spec->children[0], .alive = true};
      if (s->shutting && !terminate(ctx, &s->kids[s->nkids - 1]))
        forget(s, &s->kids[s->nkids - 1]);
    }
    break;
  case OP_TERMINATE: {
    kid *k = find(s, arg);
    if (k != NULL && !terminate(ctx, k))
      forget(s, k);
    break;
  }
  case OP_STOP:
    if (!s->shutting)
      begin_shutdown(ctx, s);
    break;
  case OP_STATS: {
    s->stats.children = live_children(s);
    tr_val r[4] = {tr_uint(s->stats.restarts), tr_uint(s->stats.exits), tr_uint(s->stats.children),
                   tr_bool(s->stats.gave_up)};
    uint8_t buf[64];
    size_t w = tri_mp_write_vals(buf, sizeof buf, r, 4, true);
    ignore(tr_reply(ctx, msg, TRI_TAG_SUP, buf, w)); /* the asker times out */
    break;
  }
  default:
    break;
  }
  return TR_OK;
}

static tr_status sup_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  sup *s = state;
  switch (tr_msg_tag(msg)) {
  case TRI_TAG_CHILD:
    on_child(ctx, s, msg);
    break;
  case TRI_TAG_SUP:
    return on_request(ctx, s, msg);
  case TRI_TAG_TIMER: {
    uint64_t ref;
    if (tr_msg_get_uint(msg, &ref) == TR_OK) {
      kid *k = find(s, ref);
      if (k != NULL && k->waiting && !s->shutting)
        restart_group(ctx, s, k);
    }
    break;
  }
  default:
    break; /* a supervisor has no protocol of its own: ignore */
  }
  return TR_OK;
}
