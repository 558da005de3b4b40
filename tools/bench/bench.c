/*
 * troupe-bench - the workloads of shared/bench/WORKLOADS.md on troupe's
 * public API, with the command line and the JSON output of the peers
 * (shared/peers/{caf,erlang,go}).
 *
 *   troupe-bench WORKLOAD|all [THREADS] [SIZE...]
 *
 * WORKLOAD is one of counting pingpong ring fjthrput spawn bank bndbuffer;
 * `all` runs each once, every one in a process of its own (this program
 * re-executes itself), applying each key=value override to the workloads
 * that have that key. THREADS is the number of worker threads (default: the
 * number of online CPUs). SIZE overrides a size parameter, as key=value or
 * positionally in the order below:
 *
 *   counting n | pingpong n | ring r h | fjthrput k n | spawn a |
 *   bank a t w | bndbuffer p c b i
 *
 * The design follows the rules of WORKLOADS.md. One system per run, with
 * exactly THREADS workers, started before the clock: the clock runs from
 * just before the first actor is spawned to just after main has seen the
 * final result. Every actor of a workload is spawned inside the timed
 * section. Main learns the result through tr_system_wait: when the system
 * is quiescent every message has been handled, and the one actor that
 * computes the final result has published it into a `result` slot (an
 * atomic flag with release/acquire pairs the plain fields written before
 * it). A failed actor never publishes, so a run with a protocol bug or a
 * failed send ends quiescent with no result and is reported as not ok.
 * Every payload is encoded as msgpack by the ordinary send helpers
 * (tr_send_int, tr_send_uint, tr_send_vals) and decoded with the tr_msg_*
 * getters: that cost is part of what is measured.
 *
 * Actors that send much in one go (the counting producer, the fjthrput
 * driver) send a chunk per turn and re-send themselves CONTINUE, as
 * samples/counter.c does, so that they never hold a worker for long and the
 * receivers can run meanwhile.
 *
 * Output: one JSON line per run on stdout, with the peers' fields plus
 * "steals" (tr_system_stats). Exit status 0 when every self-check passed, 1
 * when one failed, 2 on usage errors.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <troupe.h>
#include <unistd.h>

/* Messages a chunked sender sends per turn before re-sending CONTINUE. */
#define SEND_CHUNK 100

/* Message tags of every workload (one enum, so a stray message is caught). */
enum {
  START = 1, /* main -> first actor: begin (uint payload where noted) */
  CONTINUE,  /* actor -> itself: send the next chunk */
  INCREMENT, /* counting: producer -> counter, nil */
  GET,       /* counting: producer -> counter, nil */
  COUNT,     /* counting: counter -> producer, uint */
  PING,      /* pingpong: uint hops left */
  PONG,      /* pingpong: uint hops left */
  LINK,      /* ring: main -> last actor, uint ref id of the first */
  TOKEN,     /* ring: uint hops left */
  VALUE,     /* fjthrput: driver -> worker, uint; spawn: main -> child, int */
  DONE,      /* fjthrput: worker -> driver, uint sum; spawn: child -> collector */
  DEBIT,     /* bank: teller -> source, [amount, destination ref id] */
  CREDIT,    /* bank: source -> destination, int amount */
  ACK,       /* bank: destination -> teller, nil */
  REFUSED,   /* bank: source -> teller, nil (would go negative) */
  BALANCE,   /* bank: teller -> account, nil; account -> teller, int */
  WANT,      /* bndbuffer: producer -> manager, uint items wanted */
  GRANT,     /* bndbuffer: manager -> producer, uint items granted */
  PUT,       /* bndbuffer: producer -> manager, uint item */
  REQUEST,   /* bndbuffer: consumer -> manager, nil */
  ITEM,      /* bndbuffer: manager -> consumer, uint item */
  STOP,      /* bndbuffer: manager -> consumer, nil: report and finish */
  TALLY,     /* bndbuffer: consumer -> manager, [count, sum] */
};

/* ------------------------------------------------------------ results */

/* Where the actor computing a workload's final result hands it to main. */
typedef struct result {
  uint64_t v[4];
  _Atomic bool done;
} result;

static tr_status publish(result *r) {
  /* Release: pairs with the acquire in result_done(), so v[] written above
   * is visible to main once it sees done. */
  atomic_store_explicit(&r->done, true, memory_order_release);
  return TR_OK;
}

static bool result_done(result *r) { return atomic_load_explicit(&r->done, memory_order_acquire); }

/* ------------------------------------------------------------ one run */

#define MAX_PARAMS 4

typedef struct param {
  const char *name;
  uint64_t value, min;
} param;

typedef struct run run;

typedef struct workload {
  const char *name;
  const char *unit;
  void (*fn)(run *);
  param defaults[MAX_PARAMS];
} workload;

struct run {
  const workload *w;
  param ps[MAX_PARAMS];
  unsigned threads;
  tr_system *sys;
  tr_ctx *ctx;
  /* filled by the workload */
  double t0, seconds;
  uint64_t total;
  bool ok;
  long rss_kb;
  char extra[512];
  size_t extra_len;
};

static uint64_t get(const run *r, const char *name) {
  for (size_t i = 0; i < MAX_PARAMS && r->ps[i].name; i++)
    if (strcmp(r->ps[i].name, name) == 0)
      return r->ps[i].value;
  fprintf(stderr, "troupe-bench: no parameter %s\n", name);
  abort();
}

static void extra(run *r, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t room = sizeof r->extra - r->extra_len;
  int n = vsnprintf(r->extra + r->extra_len, room, fmt, ap);
  va_end(ap);
  if (n > 0 && (size_t)n < room)
    r->extra_len += (size_t)n;
}

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static long peak_rss_kb(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_maxrss;
}

/* The resident set size now, in KiB (/proc/self/statm). */
static long current_rss_kb(void) {
  long pages = 0, resident = 0;
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
    resident = 0;
  fclose(f);
  return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* Report a failed call; returns true when `st` is an error. */
static bool failed(tr_status st, const char *what) {
  if (st != TR_OK)
    fprintf(stderr, "troupe-bench: %s: %s (%s)\n", what, tr_strerror(st), tr_status_name(st));
  return st != TR_OK;
}

static void clock_start(run *r) { r->t0 = now(); }

/* Wait for quiescence, stop the clock, and take the peak RSS. */
static bool clock_stop(run *r) {
  bool bad = failed(tr_system_wait(r->sys), "wait");
  r->seconds = now() - r->t0;
  r->rss_kb = peak_rss_kb();
  return bad;
}

static tr_status spawn(run *r, const char *name, tr_behaviour b, size_t size, const void *arg,
                       tr_status (*init)(void *, const void *), tr_ref *out) {
  tr_actor_spec spec = {.name = name, .behaviour = b, .state_size = size, .init = init};
  return tr_spawn(r->ctx, &spec, arg, out);
}

/* ================================================================ counting */

typedef struct counter {
  uint64_t count;
} counter;

static tr_status counter_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  counter *c = state;
  switch (tr_msg_tag(msg)) {
  case INCREMENT:
    c->count++;
    return TR_OK;
  case GET:
    return tr_send_uint(ctx, tr_msg_sender(msg), COUNT, c->count);
  default:
    return TR_EINVAL; /* an unknown message is a bug: fail the actor */
  }
}

typedef struct producer {
  tr_ref counter;
  uint64_t remaining;
  result *out;
} producer;

static tr_status producer_init(void *state, const void *arg) {
  *(producer *)state = *(const producer *)arg;
  return TR_OK;
}

static tr_status producer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  producer *p = state;
  tr_status st;
  switch (tr_msg_tag(msg)) {
  case START:
    if ((st = tr_msg_get_uint(msg, &p->remaining)) != TR_OK)
      return st;
    /* fall through */
  case CONTINUE: {
    uint64_t n = p->remaining < SEND_CHUNK ? p->remaining : SEND_CHUNK;
    for (uint64_t i = 0; i < n; i++)
      if ((st = tr_send(ctx, p->counter, INCREMENT)) != TR_OK)
        return st;
    p->remaining -= n;
    return tr_send(ctx, p->remaining > 0 ? tr_self(ctx) : p->counter,
                   p->remaining > 0 ? CONTINUE : GET);
  }
  case COUNT:
    if ((st = tr_msg_get_uint(msg, &p->out->v[0])) != TR_OK)
      return st;
    return publish(p->out);
  default:
    return TR_EINVAL;
  }
}

static void run_counting(run *r) {
  uint64_t n = get(r, "n");
  result res = {0};
  tr_ref c, p;
  clock_start(r);
  bool bad = failed(spawn(r, "counter", counter_behaviour, sizeof(counter), NULL, NULL, &c),
                    "spawn counter");
  producer pa = {.counter = c, .out = &res};
  bad = bad ||
        failed(spawn(r, "producer", producer_behaviour, sizeof(producer), &pa, producer_init, &p),
               "spawn producer");
  bad = bad || failed(tr_send_uint(r->ctx, p, START, n), "start");
  bad |= clock_stop(r);
  r->total = n;
  r->ok = !bad && result_done(&res) && res.v[0] == n;
  extra(r, ",\"count\":%" PRIu64, res.v[0]);
}

/* ================================================================ pingpong */

typedef struct pinger {
  tr_ref pong;
  uint64_t left;
  result *out;
} pinger;

static tr_status pinger_init(void *state, const void *arg) {
  *(pinger *)state = *(const pinger *)arg;
  return TR_OK;
}

static tr_status ping_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  pinger *p = state;
  uint64_t h;
  tr_status st;
  if ((st = tr_msg_get_uint(msg, &h)) != TR_OK)
    return st;
  switch (tr_msg_tag(msg)) {
  case START:
    p->left = h;
    return tr_send_uint(ctx, p->pong, PING, h);
  case PONG:
    if (h != p->left)
      return TR_EINVAL; /* the hop count came back changed: a bug */
    p->out->v[0]++;     /* round trips done */
    if (--p->left == 0)
      return publish(p->out);
    return tr_send_uint(ctx, p->pong, PING, p->left);
  default:
    return TR_EINVAL;
  }
}

static tr_status pong_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  uint64_t h;
  tr_status st;
  (void)state;
  if (tr_msg_tag(msg) != PING)
    return TR_EINVAL;
  if ((st = tr_msg_get_uint(msg, &h)) != TR_OK)
    return st;
  return tr_send_uint(ctx, tr_msg_sender(msg), PONG, h);
}

static void run_pingpong(run *r) {
  uint64_t n = get(r, "n");
  result res = {0};
  tr_ref pong, ping;
  clock_start(r);
  bool bad = failed(spawn(r, "pong", pong_behaviour, 0, NULL, NULL, &pong), "spawn pong");
  pinger pa = {.pong = pong, .out = &res};
  bad = bad ||
        failed(spawn(r, "ping", ping_behaviour, sizeof(pinger), &pa, pinger_init, &ping), "spawn");
  bad = bad || failed(tr_send_uint(r->ctx, ping, START, n), "start");
  bad |= clock_stop(r);
  r->total = n;
  r->ok = !bad && result_done(&res) && res.v[0] == n;
  extra(r, ",\"round_trips\":%" PRIu64, res.v[0]);
}

/* ================================================================ ring */

typedef struct ring_node {
  tr_ref next;
  uint64_t index;
  result *out;
} ring_node;

static tr_status ring_init(void *state, const void *arg) {
  *(ring_node *)state = *(const ring_node *)arg;
  return TR_OK;
}

static tr_status ring_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  ring_node *n = state;
  uint64_t h;
  tr_status st;
  if ((st = tr_msg_get_uint(msg, &h)) != TR_OK)
    return st;
  switch (tr_msg_tag(msg)) {
  case LINK:
    n->next = (tr_ref){h};
    return TR_OK;
  case TOKEN:
    if (h > 0)
      return tr_send_uint(ctx, n->next, TOKEN, h - 1);
    n->out->v[0] = n->index; /* the last holder reports */
    return publish(n->out);
  default:
    return TR_EINVAL;
  }
}

static void run_ring(run *r) {
  uint64_t nr = get(r, "r"), h = get(r, "h");
  result res = {0};
  tr_ref *refs = calloc(nr, sizeof *refs);
  if (!refs)
    return;
  bool bad = false;
  clock_start(r);
  /* Last to first, so each is spawned knowing its successor; the last one
   * learns the first by a LINK message, which main sends before the token,
   * so it has arrived before the token can come round. */
  for (uint64_t i = nr; i-- > 0 && !bad;) {
    ring_node a = {.next = i + 1 < nr ? refs[i + 1] : TR_REF_NONE, .index = i, .out = &res};
    bad = failed(spawn(r, "ring", ring_behaviour, sizeof(ring_node), &a, ring_init, &refs[i]),
                 "spawn ring");
  }
  bad = bad || failed(tr_send_uint(r->ctx, refs[nr - 1], LINK, refs[0].id), "link");
  bad = bad || failed(tr_send_uint(r->ctx, refs[0], TOKEN, h), "token");
  bad |= clock_stop(r);
  r->total = h;
  r->ok = !bad && result_done(&res) && res.v[0] == h % nr;
  extra(r, ",\"final_holder\":%" PRIu64, res.v[0]);
  free(refs);
}

/* ================================================================ fjthrput */

typedef struct fj_worker {
  uint64_t n, count, sum;
} fj_worker;

static tr_status fj_worker_init(void *state, const void *arg) {
  ((fj_worker *)state)->n = *(const uint64_t *)arg;
  return TR_OK;
}

static tr_status fj_worker_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  fj_worker *w = state;
  uint64_t v;
  tr_status st;
  if (tr_msg_tag(msg) != VALUE)
    return TR_EINVAL;
  if ((st = tr_msg_get_uint(msg, &v)) != TR_OK)
    return st;
  w->sum += v;
  if (++w->count == w->n) /* all in: tell the driver */
    return tr_send_uint(ctx, tr_msg_sender(msg), DONE, w->sum);
  return TR_OK;
}

typedef struct fj_driver {
  const tr_ref *workers;
  uint64_t k, n;
  uint64_t round, next; /* the next message: value round + 1 to workers[next] */
  uint64_t dones;
  result *out;
} fj_driver;

static tr_status fj_driver_init(void *state, const void *arg) {
  *(fj_driver *)state = *(const fj_driver *)arg;
  return TR_OK;
}

static tr_status fj_driver_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  fj_driver *d = state;
  tr_status st;
  switch (tr_msg_tag(msg)) {
  case START:
  case CONTINUE:
    for (unsigned i = 0; i < SEND_CHUNK && d->round < d->n; i++) {
      if ((st = tr_send_uint(ctx, d->workers[d->next], VALUE, d->round + 1)) != TR_OK)
        return st;
      if (++d->next == d->k)
        d->next = 0, d->round++;
    }
    return d->round < d->n ? tr_send(ctx, tr_self(ctx), CONTINUE) : TR_OK;
  case DONE: {
    uint64_t sum;
    if ((st = tr_msg_get_uint(msg, &sum)) != TR_OK)
      return st;
    if (sum != d->n * (d->n + 1) / 2)
      d->out->v[1]++; /* a wrong sum */
    if (++d->dones == d->k)
      return publish(d->out);
    return TR_OK;
  }
  default:
    return TR_EINVAL;
  }
}

static void run_fjthrput(run *r) {
  uint64_t k = get(r, "k"), n = get(r, "n");
  result res = {0};
  tr_ref *refs = calloc(k, sizeof *refs), driver;
  if (!refs)
    return;
  bool bad = false;
  clock_start(r);
  for (uint64_t i = 0; i < k && !bad; i++)
    bad = failed(
        spawn(r, "worker", fj_worker_behaviour, sizeof(fj_worker), &n, fj_worker_init, &refs[i]),
        "spawn worker");
  fj_driver da = {.workers = refs, .k = k, .n = n, .out = &res};
  bad = bad || failed(spawn(r, "driver", fj_driver_behaviour, sizeof(fj_driver), &da,
                            fj_driver_init, &driver),
                      "spawn driver");
  bad = bad || failed(tr_send(r->ctx, driver, START), "start");
  bad |= clock_stop(r);
  r->total = k * n;
  r->ok = !bad && result_done(&res) && res.v[1] == 0;
  extra(r, ",\"wrong_sums\":%" PRIu64, res.v[1]);
  free(refs);
}

/* ================================================================ spawn */

typedef struct collector {
  uint64_t a, count, sum;
  result *out;
} collector;

static tr_status collector_init(void *state, const void *arg) {
  *(collector *)state = *(const collector *)arg;
  return TR_OK;
}

static tr_status collector_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  collector *c = state;
  int64_t x;
  tr_status st;
  (void)ctx;
  if (tr_msg_tag(msg) != DONE)
    return TR_EINVAL;
  if ((st = tr_msg_get_int(msg, &x)) != TR_OK)
    return st;
  c->sum += (uint64_t)x;
  if (++c->count == c->a) {
    c->out->v[0] = c->count;
    c->out->v[1] = c->sum;
    return publish(c->out);
  }
  return TR_OK;
}

static tr_status child_init(void *state, const void *arg) {
  *(tr_ref *)state = *(const tr_ref *)arg;
  return TR_OK;
}

/* Receives one integer, passes it to the collector, and stays alive. */
static tr_status child_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  int64_t x;
  tr_status st;
  if (tr_msg_tag(msg) != VALUE)
    return TR_EINVAL;
  if ((st = tr_msg_get_int(msg, &x)) != TR_OK)
    return st;
  return tr_send_int(ctx, *(const tr_ref *)state, DONE, x);
}

static void run_spawn(run *r) {
  uint64_t a = get(r, "a");
  result res = {0};
  tr_ref coll;
  bool bad = false;
  /* The refs array is allocated inside the measured span, as a program
   * that wants to stop its actors later must keep them (8 B per actor). */
  long rss0 = current_rss_kb();
  clock_start(r);
  tr_ref *refs = malloc(a * sizeof *refs);
  collector ca = {.a = a, .out = &res};
  bad = !refs || failed(spawn(r, "collector", collector_behaviour, sizeof(collector), &ca,
                              collector_init, &coll),
                        "spawn collector");
  uint64_t spawned = 0;
  for (uint64_t i = 0; i < a && !bad; i++, spawned++) {
    bad = failed(spawn(r, "child", child_behaviour, sizeof(tr_ref), &coll, child_init, &refs[i]),
                 "spawn child");
    bad = bad || failed(tr_send_int(r->ctx, refs[i], VALUE, (int64_t)i + 1), "send child");
  }
  bad |= clock_stop(r);
  r->total = a;
  r->ok = !bad && result_done(&res) && res.v[0] == a && res.v[1] == a * (a + 1) / 2;
  long rss_now = current_rss_kb();

  /* Not timed: stop them all, and wait until they are gone. */
  double t1 = now();
  for (uint64_t i = 0; i < spawned; i++)
    bad |= failed(tr_stop(r->ctx, refs[i]), "stop child");
  bad |= failed(tr_system_wait(r->sys), "wait after stop");
  tr_system_stats ss;
  if (!failed(tr_system_stats_get(r->sys, &ss), "stats") && ss.actors_live != 1)
    bad = true; /* only the collector may be left */
  r->ok = r->ok && !bad;
  extra(r, ",\"bytes_per_actor\":%.0f", (double)(r->rss_kb - rss0) * 1024.0 / (double)a);
  extra(r, ",\"bytes_per_actor_rss_now\":%.0f", (double)(rss_now - rss0) * 1024.0 / (double)a);
  extra(r, ",\"baseline_rss_kb\":%ld,\"stop_seconds\":%.3f", rss0, now() - t1);
  free(refs);
}

/* ================================================================ bank */

#define INITIAL_BALANCE 10000

typedef struct account {
  int64_t balance;
  tr_ref teller;
} account;

static tr_status account_init(void *state, const void *arg) {
  account *a = state;
  a->balance = INITIAL_BALANCE;
  a->teller = *(const tr_ref *)arg;
  return TR_OK;
}

static tr_status account_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  account *a = state;
  tr_status st;
  switch (tr_msg_tag(msg)) {
  case DEBIT: {
    tr_val v[2];
    size_t n;
    uint64_t amount, dst;
    if ((st = tr_msg_get_vals(msg, v, 2, &n)) != TR_OK)
      return st;
    if (n != 2 || tr_val_get_uint(&v[0], &amount) != TR_OK || tr_val_get_uint(&v[1], &dst) != TR_OK)
      return TR_EDECODE;
    if ((int64_t)amount > a->balance)
      return tr_send(ctx, a->teller, REFUSED);
    a->balance -= (int64_t)amount;
    return tr_send_int(ctx, (tr_ref){dst}, CREDIT, (int64_t)amount);
  }
  case CREDIT: {
    int64_t amount;
    if ((st = tr_msg_get_int(msg, &amount)) != TR_OK)
      return st;
    a->balance += amount;
    return tr_send(ctx, a->teller, ACK);
  }
  case BALANCE:
    return tr_send_int(ctx, tr_msg_sender(msg), BALANCE, a->balance);
  default:
    return TR_EINVAL;
  }
}

/* splitmix64: the PRNG and seed of the peers, so the transfers are theirs. */
static uint64_t splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15u);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
  return z ^ (z >> 31);
}

typedef struct teller {
  const tr_ref *accounts;
  uint64_t a, t, w;
  uint64_t rng, issued, acked, refused, balances;
  int64_t sum;
  uint64_t negative;
  result *out;
} teller;

static tr_status teller_init(void *state, const void *arg) {
  *(teller *)state = *(const teller *)arg;
  ((teller *)state)->rng = 20141020;
  return TR_OK;
}

static tr_status issue(tr_ctx *ctx, teller *t) {
  uint64_t src = splitmix64(&t->rng) % t->a;
  uint64_t dst = splitmix64(&t->rng) % (t->a - 1);
  if (dst >= src)
    dst++;
  uint64_t amount = 1 + splitmix64(&t->rng) % 100;
  tr_val v[2] = {tr_uint(amount), tr_uint(t->accounts[dst].id)};
  t->issued++;
  return tr_send_vals(ctx, t->accounts[src], DEBIT, v, 2);
}

static tr_status teller_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  teller *t = state;
  tr_status st;
  switch (tr_msg_tag(msg)) {
  case START:
    while (t->issued < t->w && t->issued < t->t)
      if ((st = issue(ctx, t)) != TR_OK)
        return st;
    return TR_OK;
  case ACK:
  case REFUSED:
    if (tr_msg_tag(msg) == ACK)
      t->acked++;
    else
      t->refused++;
    if (t->issued < t->t)
      return issue(ctx, t);
    if (t->acked + t->refused == t->t) /* all replies in: ask every balance */
      for (uint64_t i = 0; i < t->a; i++)
        if ((st = tr_send(ctx, t->accounts[i], BALANCE)) != TR_OK)
          return st;
    return TR_OK;
  case BALANCE: {
    int64_t b;
    if ((st = tr_msg_get_int(msg, &b)) != TR_OK)
      return st;
    t->sum += b;
    t->negative += b < 0;
    if (++t->balances == t->a) {
      t->out->v[0] = t->acked;
      t->out->v[1] = t->refused;
      t->out->v[2] = (uint64_t)t->sum;
      t->out->v[3] = t->negative;
      return publish(t->out);
    }
    return TR_OK;
  }
  default:
    return TR_EINVAL;
  }
}

static void run_bank(run *r) {
  uint64_t a = get(r, "a"), t = get(r, "t"), w = get(r, "w");
  result res = {0};
  tr_ref *refs = calloc(a, sizeof *refs), tel;
  if (!refs)
    return;
  clock_start(r);
  /* The teller first, so the accounts know it; it reads `refs` only after
   * START, which main sends once every account is spawned. */
  teller ta = {.accounts = refs, .a = a, .t = t, .w = w, .out = &res};
  bool bad = failed(spawn(r, "teller", teller_behaviour, sizeof(teller), &ta, teller_init, &tel),
                    "spawn teller");
  for (uint64_t i = 0; i < a && !bad; i++)
    bad = failed(
        spawn(r, "account", account_behaviour, sizeof(account), &tel, account_init, &refs[i]),
        "spawn account");
  bad = bad || failed(tr_send(r->ctx, tel, START), "start");
  bad |= clock_stop(r);
  r->total = t;
  r->ok = !bad && result_done(&res) && res.v[0] + res.v[1] == t &&
          res.v[2] == a * INITIAL_BALANCE && res.v[3] == 0;
  extra(r, ",\"acked\":%" PRIu64 ",\"refused\":%" PRIu64 ",\"balance_sum\":%" PRId64, res.v[0],
        res.v[1], (int64_t)res.v[2]);
  free(refs);
}

/* ================================================================ bndbuffer */

/*
 * The credit protocol of samples/pipeline.c's buffer mode. A producer asks
 * the manager for room with WANT(n), n at most half the buffer, and sends n
 * items (PUT) once granted GRANT(n); the manager grants no more than it has
 * free slots (held + granted-not-yet-put <= B), so a producer waits while
 * the buffer is full: its WANT sits in the manager's queue. An idle consumer
 * sends REQUEST and gets one ITEM, at once if the buffer holds one, else
 * straight from the next PUT. When all P * I items have gone to consumers,
 * the manager sends every consumer STOP; each answers TALLY [count, sum]
 * and, when all have, the manager publishes the totals.
 */

typedef struct bb_producer {
  tr_ref manager;
  uint64_t next, end, chunk;
} bb_producer;

static tr_status bb_producer_init(void *state, const void *arg) {
  *(bb_producer *)state = *(const bb_producer *)arg;
  return TR_OK;
}

static tr_status want_more(tr_ctx *ctx, bb_producer *p) {
  uint64_t left = p->end - p->next;
  return left > 0 ? tr_send_uint(ctx, p->manager, WANT, left < p->chunk ? left : p->chunk) : TR_OK;
}

static tr_status bb_producer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  bb_producer *p = state;
  uint64_t k;
  tr_status st;
  switch (tr_msg_tag(msg)) {
  case START:
    return want_more(ctx, p);
  case GRANT:
    if ((st = tr_msg_get_uint(msg, &k)) != TR_OK)
      return st;
    if (k == 0 || k > p->end - p->next)
      return TR_EINVAL; /* more than it asked for: a protocol bug */
    for (; k > 0; k--)
      if ((st = tr_send_uint(ctx, p->manager, PUT, p->next++)) != TR_OK)
        return st;
    return want_more(ctx, p);
  default:
    return TR_EINVAL;
  }
}

typedef struct bb_consumer {
  tr_ref manager;
  uint64_t count, sum;
} bb_consumer;

static tr_status bb_consumer_init(void *state, const void *arg) {
  ((bb_consumer *)state)->manager = *(const tr_ref *)arg;
  return TR_OK;
}

static tr_status bb_consumer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  bb_consumer *c = state;
  uint64_t v;
  tr_status st;
  switch (tr_msg_tag(msg)) {
  case START:
    return tr_send(ctx, c->manager, REQUEST);
  case ITEM:
    if ((st = tr_msg_get_uint(msg, &v)) != TR_OK)
      return st;
    c->count++;
    c->sum += v;
    return tr_send(ctx, c->manager, REQUEST); /* idle again */
  case STOP: {
    tr_val t[2] = {tr_uint(c->count), tr_uint(c->sum)};
    return tr_send_vals(ctx, c->manager, TALLY, t, 2);
  }
  default:
    return TR_EINVAL;
  }
}

typedef struct waiter {
  tr_ref who;
  uint64_t n;
} waiter;

/* FIFOs of fixed size, allocated at init: buffered items (at most B),
 * producers waiting for room (at most P), idle consumers (at most C). */
typedef struct manager {
  const tr_ref *consumers;
  uint64_t p, c, total;
  uint64_t *items;
  uint64_t cap, head, held, peak_held, granted;
  waiter *wants;
  uint64_t whead, wlen;
  tr_ref *idle;
  uint64_t ihead, ilen;
  uint64_t delivered, tallies, count, sum;
  bool stopping;
  result *out;
} manager;

static void manager_fini(void *state) {
  manager *m = state;
  free(m->items);
  free(m->wants);
  free(m->idle);
}

static tr_status manager_init(void *state, const void *arg) {
  manager *m = state;
  *m = *(const manager *)arg;
  m->items = malloc(m->cap * sizeof *m->items);
  m->wants = malloc(m->p * sizeof *m->wants);
  m->idle = malloc(m->c * sizeof *m->idle);
  if (!m->items || !m->wants || !m->idle) {
    manager_fini(m); /* a failed init gets no fini call */
    return TR_ENOMEM;
  }
  return TR_OK;
}

/* Grant waiting producers, oldest first, all they asked for once it fits. */
static tr_status grant(tr_ctx *ctx, manager *m) {
  while (m->wlen > 0 && m->held + m->granted + m->wants[m->whead].n <= m->cap) {
    waiter *w = &m->wants[m->whead];
    tr_status st = tr_send_uint(ctx, w->who, GRANT, w->n);
    if (st != TR_OK)
      return st;
    m->granted += w->n;
    m->whead = (m->whead + 1) % m->p;
    m->wlen--;
  }
  return TR_OK;
}

/* An item went to a consumer; after the last, stop every consumer. */
static tr_status delivered(tr_ctx *ctx, manager *m, tr_ref to, uint64_t v) {
  tr_status st = tr_send_uint(ctx, to, ITEM, v);
  if (st != TR_OK || ++m->delivered < m->total)
    return st;
  m->stopping = true;
  for (uint64_t i = 0; i < m->c; i++)
    if ((st = tr_send(ctx, m->consumers[i], STOP)) != TR_OK)
      return st;
  return TR_OK;
}

static tr_status manager_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  manager *m = state;
  uint64_t v;
  tr_status st;
  switch (tr_msg_tag(msg)) {
  case PUT:
    if ((st = tr_msg_get_uint(msg, &v)) != TR_OK)
      return st;
    if (m->granted == 0)
      return TR_EINVAL; /* a PUT without room granted: a protocol bug */
    m->granted--;
    if (m->ilen > 0) { /* a consumer is waiting: hand it over directly */
      tr_ref c = m->idle[m->ihead];
      m->ihead = (m->ihead + 1) % m->c;
      m->ilen--;
      if ((st = delivered(ctx, m, c, v)) != TR_OK)
        return st;
    } else {
      /* held + granted <= cap held before this PUT, so there is room. */
      m->items[(m->head + m->held) % m->cap] = v;
      if (++m->held > m->peak_held)
        m->peak_held = m->held;
    }
    return grant(ctx, m);
  case REQUEST:
    if (m->stopping)
      return TR_OK; /* a consumer's last request, after all was delivered */
    if (m->held > 0) {
      v = m->items[m->head];
      m->head = (m->head + 1) % m->cap;
      m->held--;
      if ((st = delivered(ctx, m, tr_msg_sender(msg), v)) != TR_OK)
        return st;
      return grant(ctx, m); /* a slot came free */
    }
    if (m->ilen == m->c)
      return TR_EINVAL; /* more requests than consumers: a protocol bug */
    m->idle[(m->ihead + m->ilen++) % m->c] = tr_msg_sender(msg);
    return TR_OK;
  case WANT:
    if ((st = tr_msg_get_uint(msg, &v)) != TR_OK)
      return st;
    if (v == 0 || v > m->cap || m->wlen == m->p)
      return TR_EINVAL; /* more than fits, or a second WANT: a protocol bug */
    m->wants[(m->whead + m->wlen++) % m->p] = (waiter){tr_msg_sender(msg), v};
    return grant(ctx, m);
  case TALLY: {
    tr_val t[2];
    size_t n;
    uint64_t count, sum;
    if ((st = tr_msg_get_vals(msg, t, 2, &n)) != TR_OK)
      return st;
    if (n != 2 || tr_val_get_uint(&t[0], &count) != TR_OK || tr_val_get_uint(&t[1], &sum) != TR_OK)
      return TR_EDECODE;
    m->count += count;
    m->sum += sum;
    if (++m->tallies < m->c)
      return TR_OK;
    m->out->v[0] = m->count;
    m->out->v[1] = m->sum;
    m->out->v[2] = m->peak_held;
    m->out->v[3] = m->held + m->granted;
    return publish(m->out);
  }
  default:
    return TR_EINVAL;
  }
}

static void run_bndbuffer(run *r) {
  uint64_t p = get(r, "p"), c = get(r, "c"), b = get(r, "b"), items = get(r, "i");
  uint64_t total = p * items;
  result res = {0};
  tr_ref *prods = calloc(p, sizeof *prods), *cons = calloc(c, sizeof *cons), mgr;
  if (!prods || !cons) {
    free(prods);
    free(cons);
    return;
  }
  clock_start(r);
  /* The manager first; it reads `cons` only once items flow, after main
   * has spawned every consumer and sent them START. */
  manager ma = {.consumers = cons, .p = p, .c = c, .total = total, .cap = b, .out = &res};
  tr_actor_spec mspec = {.name = "buffer",
                         .behaviour = manager_behaviour,
                         .state_size = sizeof(manager),
                         .init = manager_init,
                         .fini = manager_fini};
  bool bad = failed(tr_spawn(r->ctx, &mspec, &ma, &mgr), "spawn buffer");
  for (uint64_t i = 0; i < c && !bad; i++)
    bad = failed(spawn(r, "consumer", bb_consumer_behaviour, sizeof(bb_consumer), &mgr,
                       bb_consumer_init, &cons[i]),
                 "spawn consumer");
  uint64_t chunk = b / 2 < 64 ? b / 2 : 64;
  for (uint64_t i = 0; i < p && !bad; i++) {
    /* Producer i makes i*I+1 .. i*I+I, so the items are 1 .. P*I. */
    bb_producer pa = {.manager = mgr,
                      .next = i * items + 1,
                      .end = (i + 1) * items + 1,
                      .chunk = chunk ? chunk : 1};
    bad = failed(spawn(r, "producer", bb_producer_behaviour, sizeof(bb_producer), &pa,
                       bb_producer_init, &prods[i]),
                 "spawn producer");
  }
  for (uint64_t i = 0; i < c && !bad; i++)
    bad = failed(tr_send(r->ctx, cons[i], START), "start consumer");
  for (uint64_t i = 0; i < p && !bad; i++)
    bad = failed(tr_send(r->ctx, prods[i], START), "start producer");
  bad |= clock_stop(r);
  r->total = total;
  r->ok = !bad && result_done(&res) && res.v[0] == total && res.v[1] == total * (total + 1) / 2 &&
          res.v[2] <= b && res.v[3] == 0;
  extra(r, ",\"consumed\":%" PRIu64 ",\"max_buffered\":%" PRIu64, res.v[0], res.v[2]);
  free(prods);
  free(cons);
}

/* ================================================================ restart */

/* Not one of WORKLOADS.md's (no peer has supervisors in its benchmark):
 * troupe's cost of a supervised failure and restart in place. K children
 * under a one-for-one supervisor; the main thread sends F failing messages
 * round-robin; each failure is a FAILED dead letter, a supervisor decision
 * and a fresh init (same ref, mail kept). */
static _Atomic uint64_t restart_inits;

static tr_status rchild_init(void *state, const void *arg) {
  (void)state;
  (void)arg;
  atomic_fetch_add_explicit(&restart_inits, 1, memory_order_relaxed);
  return TR_OK;
}

static tr_status rchild_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  return tr_msg_tag(msg) == VALUE ? TR_EFAIL : TR_OK;
}

static void run_restart(run *r) {
  uint64_t k = get(r, "k"), f = get(r, "f");
  tr_child_spec *kids = calloc(k, sizeof *kids);
  tr_ref *refs = calloc(k, sizeof *refs), sup;
  if (!kids || !refs) {
    free(kids);
    free(refs);
    return;
  }
  for (uint64_t i = 0; i < k; i++)
    kids[i] = (tr_child_spec){
        .id = "child",
        .actor = {.name = "child", .behaviour = rchild_behaviour, .init = rchild_init}};
  tr_sup_spec spec = {.name = "sup",
                      .strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = TR_SUP_MAX_INTENSITY,
                      .period_ms = 1,
                      .children = kids,
                      .nchildren = k};
  atomic_store(&restart_inits, 0);
  bool bad = false;
  clock_start(r);
  bad = failed(tr_sup_start(r->ctx, &spec, &sup, refs), "tr_sup_start");
  for (uint64_t i = 0; i < f && !bad; i++)
    bad = failed(tr_send(r->ctx, refs[i % k], VALUE), "send");
  bad |= clock_stop(r);
  r->total = f;
  tr_system_stats ss;
  tr_sup_stats sup_st = {0};
  bad |= failed(tr_system_stats_get(r->sys, &ss), "stats");
  bad |= failed(tr_sup_stats_get(r->sys, sup, 10000, &sup_st), "sup stats");
  r->ok = !bad && ss.dead_letters[TR_DEAD_FAILED] == f && sup_st.restarts == f &&
          atomic_load(&restart_inits) == k + f && !sup_st.gave_up;
  extra(r, ",\"restarts\":%" PRIu64 ",\"inits\":%" PRIu64, sup_st.restarts,
        atomic_load(&restart_inits));
  free(kids);
  free(refs);
}

/* ================================================================ main */

static const workload workloads[] = {
    {"counting", "msg/s", run_counting, {{"n", 10000000, 0}}},
    {"pingpong", "roundtrips/s", run_pingpong, {{"n", 1000000, 1}}},
    {"ring", "hops/s", run_ring, {{"r", 1000, 1}, {"h", 10000000, 0}}},
    {"fjthrput", "msg/s", run_fjthrput, {{"k", 64, 1}, {"n", 200000, 1}}},
    {"spawn", "actors/s", run_spawn, {{"a", 1000000, 1}}},
    {"bank", "transfers/s", run_bank, {{"a", 1000, 2}, {"t", 1000000, 1}, {"w", 64, 1}}},
    {"bndbuffer",
     "items/s",
     run_bndbuffer,
     {{"p", 4, 1}, {"c", 4, 1}, {"b", 64, 1}, {"i", 250000, 1}}},
    {"restart", "restarts/s", run_restart, {{"k", 100, 1}, {"f", 200000, 0}}},
};
#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

static int usage(const char *msg) {
  if (msg)
    fprintf(stderr, "troupe-bench: %s\n", msg);
  fprintf(stderr, "usage: troupe-bench WORKLOAD|all [THREADS] [SIZE...]\n");
  for (size_t i = 0; i < NWORKLOADS; i++) {
    fprintf(stderr, "  %-10s", workloads[i].name);
    for (size_t j = 0; j < MAX_PARAMS && workloads[i].defaults[j].name; j++)
      fprintf(stderr, " %s=%" PRIu64, workloads[i].defaults[j].name,
              workloads[i].defaults[j].value);
    fprintf(stderr, "\n");
  }
  return 2;
}

/* A non-negative decimal integer; '_' and ',' may group digits. */
static bool parse_u64(const char *s, uint64_t *out) {
  uint64_t v = 0;
  bool any = false;
  for (; *s; s++) {
    if (*s == '_' || *s == ',')
      continue;
    if (*s < '0' || *s > '9')
      return false;
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10)
      return false;
    v = v * 10 + d;
    any = true;
  }
  *out = v;
  return any;
}

/* `all`: each workload in a process of its own, so that rss_kb is its own. */
static int run_all(const char *self, const char *threads, int nsizes, char **sizes) {
  int status = 0;
  for (size_t i = 0; i < NWORKLOADS; i++) {
    const workload *w = &workloads[i];
    char *argv[MAX_PARAMS + 4];
    int argc = 0;
    argv[argc++] = (char *)self;
    argv[argc++] = (char *)w->name;
    if (threads)
      argv[argc++] = (char *)threads;
    for (int s = 0; s < nsizes; s++) {
      const char *eq = strchr(sizes[s], '=');
      if (!eq)
        return usage("`all` takes key=value sizes only");
      for (size_t j = 0; j < MAX_PARAMS && w->defaults[j].name; j++)
        if (strlen(w->defaults[j].name) == (size_t)(eq - sizes[s]) &&
            strncmp(w->defaults[j].name, sizes[s], (size_t)(eq - sizes[s])) == 0 &&
            argc < MAX_PARAMS + 3)
          argv[argc++] = sizes[s];
    }
    argv[argc] = NULL;
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
      return 1;
    if (pid == 0) {
      execv("/proc/self/exe", argv);
      _exit(127);
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
      ;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
      status = 1;
  }
  return status;
}

int main(int argc, char **argv) {
  if (argc < 2)
    return usage(NULL);
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  uint64_t threads = ncpu > 0 ? (uint64_t)ncpu : 1;
  if (argc >= 3 && (!parse_u64(argv[2], &threads) || threads < 1 || threads > TR_MAX_THREADS))
    return usage("THREADS must be an integer in 1..256");
  if (strcmp(argv[1], "all") == 0)
    return run_all(argv[0], argc >= 3 ? argv[2] : NULL, argc > 3 ? argc - 3 : 0, argv + 3);

  run r = {.threads = (unsigned)threads};
  for (size_t i = 0; i < NWORKLOADS; i++)
    if (strcmp(workloads[i].name, argv[1]) == 0)
      r.w = &workloads[i];
  if (!r.w)
    return usage("unknown workload");
  memcpy(r.ps, r.w->defaults, sizeof r.ps);
  int positional = 0;
  for (int i = 3; i < argc; i++) {
    const char *eq = strchr(argv[i], '=');
    param *p = NULL;
    if (eq) {
      for (size_t j = 0; j < MAX_PARAMS && r.ps[j].name; j++)
        if (strlen(r.ps[j].name) == (size_t)(eq - argv[i]) &&
            strncmp(r.ps[j].name, argv[i], (size_t)(eq - argv[i])) == 0)
          p = &r.ps[j];
      if (!p)
        return usage("unknown size parameter");
    } else {
      if (positional >= MAX_PARAMS || !r.ps[positional].name)
        return usage("too many size arguments");
      p = &r.ps[positional++];
    }
    if (!parse_u64(eq ? eq + 1 : argv[i], &p->value))
      return usage("a size must be a non-negative integer");
  }
  for (size_t j = 0; j < MAX_PARAMS && r.ps[j].name; j++)
    if (r.ps[j].value < r.ps[j].min) {
      fprintf(stderr, "troupe-bench: %s: %s must be >= %" PRIu64 "\n", r.w->name, r.ps[j].name,
              r.ps[j].min);
      return 2;
    }

  tr_system_config cfg = {.threads = r.threads};
  if (failed(tr_system_new(&cfg, &r.sys), "system"))
    return 1;
  if (failed(tr_system_start(r.sys), "start")) {
    tr_system_free(r.sys);
    return 1;
  }
  r.ctx = tr_system_ctx(r.sys);
  r.w->fn(&r);

  tr_system_stats ss = {0};
  bool stats_bad = failed(tr_system_stats_get(r.sys, &ss), "stats");
  r.ok = r.ok && !stats_bad;
  printf("{\"workload\":\"%s\",\"threads\":%u", r.w->name, tr_system_threads(r.sys));
  for (size_t j = 0; j < MAX_PARAMS && r.ps[j].name; j++)
    printf(",\"%s\":%" PRIu64, r.ps[j].name, r.ps[j].value);
  printf(",\"total\":%" PRIu64 ",\"seconds\":%.6f,\"rate\":%.0f,\"unit\":\"%s\",\"rss_kb\":%ld",
         r.total, r.seconds, r.seconds > 0 ? (double)r.total / r.seconds : 0.0, r.w->unit,
         r.rss_kb);
  printf(",\"steals\":%" PRIu64 "%s,\"ok\":%s}\n", ss.steals, r.extra, r.ok ? "true" : "false");
  fflush(stdout);
  tr_system_free(r.sys);
  return r.ok ? 0 : 1;
}
