/*
 * bank - event-sourced bank accounts under a supervisor: transfers that
 * survive actor failures and kill -9, and a check that no money was lost or
 * made.
 *
 *   bank [--dir D] [--accounts N] [--transfers T] [--tellers K]
 *        [--fail-rate P] [--flush event|batch|none] [--seed S] [--threads W]
 *        [--verify] [--fresh]            (--help for the rest)
 *
 * Event sourcing. An account is an actor whose state (its balance) is never
 * written anywhere. What is written is the list of events that changed it,
 * in its own journal file (samples/journal.h): "opened with 1000",
 * "withdrew 40 for transfer 17 of teller 2", "deposited 40 for ...". The
 * balance is the fold of those events (apply_event below), computed again
 * from the journal whenever the account starts: when the program starts,
 * and when its supervisor restarts it after a failure. An event is appended
 * BEFORE anyone is told the change happened (the reply), so whatever a
 * caller saw is in the journal.
 *
 * Supervision. The accounts are the children of one ONE_FOR_ONE supervisor.
 * When an account fails, the supervisor restarts it in place: same tr_ref,
 * the mail still queued is kept, the state is zeroed and init runs again,
 * which replays the journal. A fault injector (--fail-rate) makes accounts
 * fail at random, either before they journal a change or, the hard case,
 * after journaling it but before replying.
 *
 * Transfers and idempotence. A teller actor moves money from one account to
 * another in two steps, withdraw then deposit, each a request (tr_ask) that
 * may get no reply: the account failed before or after doing it, and the
 * teller cannot tell which. So the teller retries the same step with the
 * same transfer id after a timeout, and an account applies each (teller, id)
 * at most once: it remembers the last id it applied per teller (part of the
 * folded state, so a restart remembers it too) and answers a repeat with
 * "done" without applying it again. A teller runs one transfer at a time,
 * so the ids one account sees from one teller only grow.
 *
 * Surviving kill -9. The teller journals its own intent too: "begin transfer
 * 17: 40 from account 3 to account 5" before its first request, and "done
 * 17" or "aborted 17" (insufficient funds) at the end. A process killed
 * anywhere leaves every journal whole (a record is one write()), so the next
 * run (or --verify) replays each teller's journal, finds a transfer begun
 * and not ended, and finishes it with the same id: the accounts' idempotence
 * makes the repeated steps harmless. A withdrawal that succeeded is always
 * followed by its deposit; a transfer is aborted only when its withdrawal
 * was refused, so an abort never needs undoing. (The tellers are plain
 * actors, neither supervised nor fault-injected: their recovery is the same
 * init-replays-the-journal as the accounts', and kill -9 exercises it.)
 *
 * The check. Money enters the bank only through the accounts' "opened"
 * events. Once no transfer is in flight, the balances must add up to the
 * money opened: "money conserved: yes (total N)", else the exit status is 1.
 *
 * Flush policy (--flush, default batch, as the journal's). kill -9 loses
 * nothing under any policy; the check above holds after it. A power cut can
 * lose each journal's unsynced tail, and since each journal is synced on its
 * own, the account and teller journals may then disagree: only
 * --flush event (an fsync before every reply and every request) keeps them
 * consistent through a power cut, at the price of an fsync per event.
 *
 * Not shown, on purpose: snapshots (a restart replays the whole journal,
 * fine for thousands of events, not for years of them), and disk I/O off
 * the worker threads (a behaviour that calls write() or fsync() stalls the
 * worker it runs on).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <troupe.h>
#include <unistd.h>

#include "journal.h"
#include "opt.h"

/* Message tags. Requests (tr_ask) and their replies (tr_reply). */
enum {
  WITHDRAW = 1, /* [teller, transfer id, amount] -> DONE | INSUFFICIENT */
  DEPOSIT,      /* [teller, transfer id, amount] -> DONE */
  BALANCE,      /* nil -> BALANCE_IS [balance, opened, events] */
  DONE,         /* the change is applied (now, or already before): [balance] */
  INSUFFICIENT, /* the withdrawal was refused; nothing changed: [balance] */
  BALANCE_IS,
  START, /* to a teller: uint, how many new transfers to make */
};

/* Account events, as journalled: msgpack arrays of unsigned integers. */
enum {
  EV_OPENED = 1, /* [EV_OPENED, amount] - always the first event */
  EV_WITHDRAWN,  /* [EV_WITHDRAWN, teller, transfer id, amount] */
  EV_DEPOSITED,  /* [EV_DEPOSITED, teller, transfer id, amount] */
};

/* Teller records, as journalled. */
enum {
  TX_BEGIN = 1, /* [TX_BEGIN, id, from, to, amount] - before the first request */
  TX_DONE,      /* [TX_DONE, id] - after the deposit was acknowledged */
  TX_ABORTED,   /* [TX_ABORTED, id] - the withdrawal was refused */
};

#define MAX_TELLERS  64u
#define MAX_ACCOUNTS 4096u
#define MAX_VALS     5
#define MAX_ATTEMPTS 30 /* per step, before a teller leaves a transfer to the next run */

/* ----------------------------------------------------------------- options */

typedef struct options {
  char dir[PATH_MAX - 32];
  unsigned accounts;
  bool accounts_given;
  uint64_t transfers;
  unsigned tellers;
  double fail_rate;
  tj_flush flush;
  uint64_t seed;
  unsigned threads;
  bool verify, fresh;
  uint64_t initial;    /* each new account opens with this much */
  uint64_t max_amount; /* a transfer moves 1..max_amount */
  unsigned intensity;  /* supervisor: restarts per second; 0 = from tellers and timeout */
  uint64_t timeout_ms; /* a teller's first wait for a reply */
} options;

/* What one account's slot holds: set up by main, pointed to by the child
 * spec's start argument, so it outlives every restart of the actor (the
 * actor's own state is zeroed at each one). */
typedef struct account_slot {
  const struct bank *bank;
  unsigned index;
  char id[24]; /* "account-3": the child's id in the supervisor */
  char path[PATH_MAX];
  _Atomic uint64_t inits;      /* times init ran: 1 + restarts */
  _Atomic uint64_t faults;     /* faults injected */
  _Atomic uint64_t duplicates; /* repeated requests answered without applying */
  _Atomic uint64_t torn_bytes; /* torn journal tails dropped at init */
  _Atomic bool complained;     /* its journal could not be replayed: said so */
} account_slot;

typedef struct teller_slot {
  const struct bank *bank;
  unsigned index;
  char path[PATH_MAX];
  /* Written by the teller, read by main once the system is quiescent. */
  _Atomic uint64_t done, aborted; /* this run, recovered transfers included */
  _Atomic uint64_t recovered;     /* transfers found in flight at start, then ended */
  _Atomic uint64_t retries;       /* requests sent again after a timeout */
  _Atomic uint64_t torn_bytes;    /* torn journal tail dropped at init */
  _Atomic uint64_t history_done, history_aborted; /* all runs, from the journal */
  _Atomic bool idle;                              /* nothing in flight, nothing to do */
} teller_slot;

typedef struct bank {
  options opt;
  unsigned naccounts, ntellers;
  tr_ref *accounts; /* filled by tr_sup_start before any teller starts */
  account_slot *aslots;
  tr_child_spec *children; /* the supervisor's spec: must outlive it */
  tr_sup_spec sup_spec;
  tr_ref *tellers;
  teller_slot *tslots;
} bank;

/* Journals opened and not yet closed, to check at exit that every init had
 * its fini (a restart must run fini before init runs again). */
static _Atomic long g_open_journals;

/* ------------------------------------------------------------------ helpers */

static uint64_t splitmix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/* xorshift64*: the actors' own random numbers (never 0 as a state). */
static uint64_t rnd(uint64_t *s) {
  *s ^= *s >> 12;
  *s ^= *s << 25;
  *s ^= *s >> 27;
  return *s * 0x2545F4914F6CDD1Dull;
}

static double rnd01(uint64_t *s) { return (double)(rnd(s) >> 11) * 0x1.0p-53; }

/* Encode unsigned integers as one msgpack array (events, requests). */
static tr_status encode(const uint64_t *v, size_t n, unsigned char *buf, size_t cap, size_t *len) {
  tr_val vals[MAX_VALS];
  for (size_t i = 0; i < n; i++)
    vals[i] = tr_uint(v[i]);
  return tr_mp_encode_vals(vals, n, true, buf, cap, len);
}

/* Decode a msgpack array of unsigned integers (at most MAX_VALS). */
static tr_status decode(const void *bytes, size_t len, uint64_t *v, size_t *n) {
  tr_val vals[MAX_VALS];
  tr_status st = tr_mp_get_vals(bytes, len, vals, MAX_VALS, n);
  for (size_t i = 0; st == TR_OK && i < *n; i++)
    st = tr_val_get_uint(&vals[i], &v[i]);
  return st;
}

static tr_status reply_uint(tr_ctx *ctx, const tr_msg *request, uint32_t tag, uint64_t v) {
  unsigned char buf[16];
  size_t len;
  tr_val val = tr_uint(v);
  tr_status st = tr_mp_encode_vals(&val, 1, false, buf, sizeof buf, &len);
  return st == TR_OK ? tr_reply(ctx, request, tag, buf, len) : st;
}

static tr_status open_journal(const char *path, tj_flush flush, tj_journal **j) {
  tj_options jo = {.flush = flush};
  tr_status st = tj_open(path, &jo, j);
  if (st == TR_OK)
    atomic_fetch_add_explicit(&g_open_journals, 1, memory_order_relaxed);
  else
    fprintf(stderr, "bank: cannot open journal %s: %s%s%s\n", path, tr_strerror(st),
            st == TR_ESYS ? ": " : "", st == TR_ESYS ? strerror(errno) : "");
  return st;
}

static void close_journal(tj_journal *j, const char *who) {
  if (j == NULL)
    return;
  atomic_fetch_sub_explicit(&g_open_journals, 1, memory_order_relaxed);
  if (tj_close(j) != TR_OK)
    fprintf(stderr, "bank: %s: closing the journal failed: %s\n", who, strerror(errno));
}

/* Say why a replay failed; never go on with a partial history. */
static void replay_failed(const char *who, const char *path, tr_status st,
                          const tj_replay_info *info) {
  if (st == TR_ECORRUPT && info->corrupt_offset != 0)
    fprintf(stderr,
            "bank: %s: journal %s is damaged at byte %" PRIu64 " (a bad record with good ones "
            "after it, not a torn tail); refusing to start rather than rebuild a wrong state\n",
            who, path, info->corrupt_offset);
  else if (st == TR_ECORRUPT)
    fprintf(stderr, "bank: %s: journal %s: record %" PRIu64 " is not a valid event here%s\n", who,
            path, info->records + 1, info->end < TJ_HEADER_SIZE ? " (file cut short)" : "");
  else
    fprintf(stderr, "bank: %s: replaying journal %s failed: %s\n", who, path, tr_strerror(st));
}

/* ------------------------------------------------------------------ account */

typedef struct account {
  account_slot *slot;
  tj_journal *journal;
  uint64_t balance;
  uint64_t opened; /* the money this account brought into the bank */
  uint64_t events;
  uint64_t last_id[MAX_TELLERS]; /* last transfer id applied, per teller */
  uint64_t rng;
} account;

/*
 * The fold: one event applied to the state. The same function rebuilds the
 * state at init (from the journal) and applies each new event after it was
 * journalled, so the two can never disagree. An event that breaks the
 * account's rules (an overdraft, a repeated id) means the journal is not
 * this account's true history: TR_ECORRUPT.
 */
static tr_status apply_event(account *a, const void *payload, size_t len) {
  uint64_t v[MAX_VALS] = {0};
  size_t n;
  if (decode(payload, len, v, &n) != TR_OK || n < 2)
    return TR_ECORRUPT;
  if (v[0] == EV_OPENED) {
    if (n != 2 || a->events != 0)
      return TR_ECORRUPT;
    a->opened = a->balance = v[1];
  } else if (v[0] == EV_WITHDRAWN || v[0] == EV_DEPOSITED) {
    uint64_t teller = v[1], id = v[2], amount = v[3];
    if (n != 4 || a->events == 0 || teller >= MAX_TELLERS || id <= a->last_id[teller])
      return TR_ECORRUPT;
    if (v[0] == EV_WITHDRAWN && amount > a->balance)
      return TR_ECORRUPT;
    if (v[0] == EV_DEPOSITED && amount > UINT64_MAX - a->balance)
      return TR_ECORRUPT;
    a->balance = v[0] == EV_WITHDRAWN ? a->balance - amount : a->balance + amount;
    a->last_id[teller] = id;
  } else {
    return TR_ECORRUPT;
  }
  a->events++;
  return TR_OK;
}

static tr_status replay_account_event(const void *payload, size_t len, void *user) {
  return apply_event(user, payload, len);
}

/* Journal an event, then apply it. */
static tr_status record_event(account *a, const uint64_t *v, size_t n) {
  unsigned char buf[64];
  size_t len;
  tr_status st = encode(v, n, buf, sizeof buf, &len);
  if (st == TR_OK)
    st = tj_append(a->journal, buf, len);
  if (st != TR_OK) {
    fprintf(stderr, "bank: %s: journal append failed: %s\n", a->slot->id, tr_strerror(st));
    return st; /* the account fails; its supervisor restarts it */
  }
  return apply_event(a, buf, len);
}

/* Runs at the first start and at every restart, in place: rebuild the state
 * from the journal. `arg` is this account's slot (passed as a pointer). */
static tr_status account_init(void *state, const void *arg) {
  account *a = state;
  account_slot *slot = (account_slot *)arg;
  const options *o = &slot->bank->opt;
  tj_replay_info info;
  tr_status st;

  a->slot = slot;
  uint64_t generation = atomic_fetch_add_explicit(&slot->inits, 1, memory_order_relaxed);
  /* Each incarnation draws other faults than the last, or a fault on the
   * first message after a restart would repeat forever. */
  a->rng = splitmix64(o->seed ^ ((uint64_t)slot->index << 32) ^ (generation << 48)) | 1;

  if ((st = open_journal(slot->path, o->flush, &a->journal)) != TR_OK)
    return st;
  st = tj_replay(a->journal, replay_account_event, a, &info);
  if (st != TR_OK) {
    /* Said once: the supervisor will try again until it gives up. */
    if (!atomic_exchange_explicit(&slot->complained, true, memory_order_relaxed))
      replay_failed(slot->id, slot->path, st, &info);
    close_journal(a->journal, slot->id);
    return st; /* init fails: tr_sup_start (or the restart) reports EINIT */
  }
  if (info.dropped_bytes > 0) {
    fprintf(stderr,
            "bank: %s: dropped a torn tail of %" PRIu64 " bytes from %s (the last record, cut "
            "short by a crash)\n",
            slot->id, info.dropped_bytes, slot->path);
    atomic_fetch_add_explicit(&slot->torn_bytes, info.dropped_bytes, memory_order_relaxed);
  }
  if (a->events == 0) { /* a new account: the money it brings into the bank */
    const uint64_t ev[] = {EV_OPENED, o->initial};
    if ((st = record_event(a, ev, 2)) != TR_OK) {
      close_journal(a->journal, slot->id);
      return st;
    }
  }
  return TR_OK;
}

static void account_fini(void *state) {
  account *a = state;
  close_journal(a->journal, a->slot->id);
}

enum { NO_FAULT, FAULT_BEFORE, FAULT_AFTER };

/* Fail the account on purpose (the fault injector). tr_fail_str makes the
 * actor fail once the behaviour returns: its supervisor restarts it, the
 * request being handled is a dead letter (FAILED), and no reply goes out, so
 * the teller will time out and retry. */
static tr_status inject(tr_ctx *ctx, account *a, const char *reason) {
  atomic_fetch_add_explicit(&a->slot->faults, 1, memory_order_relaxed);
  return tr_fail_str(ctx, reason);
}

/* WITHDRAW or DEPOSIT, for transfer `id` of `teller`. */
static tr_status account_change(tr_ctx *ctx, account *a, const tr_msg *msg, uint32_t tag) {
  const options *o = &a->slot->bank->opt;
  size_t len, n;
  const void *payload = tr_msg_payload(msg, &len);
  uint64_t v[MAX_VALS];
  tr_status st;

  if (decode(payload, len, v, &n) != TR_OK || n != 3 || v[0] >= MAX_TELLERS || v[2] == 0)
    return TR_EDECODE; /* not a request our tellers send: a bug, fail */
  uint64_t teller = v[0], id = v[1], amount = v[2];

  int fault = NO_FAULT;
  if (o->fail_rate > 0 && rnd01(&a->rng) < o->fail_rate)
    fault = (rnd(&a->rng) & 1) ? FAULT_AFTER : FAULT_BEFORE;
  if (fault == FAULT_BEFORE)
    return inject(ctx, a, "injected fault, before journaling");

  uint32_t answer = DONE;
  if (id <= a->last_id[teller]) {
    /* Already applied (a retry whose first attempt's reply was lost):
     * answer as the first time, change nothing. */
    atomic_fetch_add_explicit(&a->slot->duplicates, 1, memory_order_relaxed);
  } else if (tag == WITHDRAW && a->balance < amount) {
    answer = INSUFFICIENT; /* nothing journalled, state unchanged */
  } else {
    const uint64_t ev[] = {tag == WITHDRAW ? EV_WITHDRAWN : EV_DEPOSITED, teller, id, amount};
    if ((st = record_event(a, ev, 4)) != TR_OK)
      return st;
  }
  /* The hard case: the change is in the journal, but the teller will never
   * hear of it. The restart rebuilds it from the journal; the retry finds it
   * applied. */
  if (fault == FAULT_AFTER)
    return inject(ctx, a, "injected fault, after journaling, before the reply");
  return reply_uint(ctx, msg, answer, a->balance);
}

static tr_status account_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  account *a = state;
  uint32_t tag = tr_msg_tag(msg);
  switch (tag) {
  case WITHDRAW:
  case DEPOSIT:
    return account_change(ctx, a, msg, tag);
  case BALANCE: {
    const uint64_t v[] = {a->balance, a->opened, a->events};
    unsigned char buf[64];
    size_t len;
    tr_status st = encode(v, 3, buf, sizeof buf, &len);
    return st == TR_OK ? tr_reply(ctx, msg, BALANCE_IS, buf, len) : st;
  }
  default:
    return TR_EINVAL; /* an unknown message is a bug: fail */
  }
}

/* ------------------------------------------------------------------- teller */

enum { STEP_WITHDRAW, STEP_DEPOSIT };

typedef struct teller {
  teller_slot *slot;
  const bank *bank;
  tj_journal *journal;
  uint64_t rng;
  uint64_t last_id;  /* the last transfer id begun */
  uint64_t to_begin; /* new transfers still to begin in this run */
  /* The transfer in flight, if busy. */
  bool busy;
  bool recovering; /* it was found in flight at start */
  bool stuck;      /* gave up waiting: left in flight for the next run */
  uint64_t id, from, to, amount;
  int step;
  uint32_t corr;     /* the outstanding request's correlation id */
  unsigned attempts; /* of the current step */
  uint64_t done, aborted;
} teller;

/* The teller's fold: which transfer, if any, was left in flight. */
static tr_status apply_tx(teller *t, const void *payload, size_t len) {
  uint64_t v[MAX_VALS] = {0};
  size_t n;
  if (decode(payload, len, v, &n) != TR_OK || n < 2)
    return TR_ECORRUPT;
  switch (v[0]) {
  case TX_BEGIN:
    if (n != 5 || t->busy || v[1] <= t->last_id || v[2] >= t->bank->naccounts ||
        v[3] >= t->bank->naccounts || v[2] == v[3] || v[4] == 0)
      return TR_ECORRUPT;
    t->busy = true;
    t->last_id = t->id = v[1];
    t->from = v[2];
    t->to = v[3];
    t->amount = v[4];
    t->step = STEP_WITHDRAW;
    return TR_OK;
  case TX_DONE:
  case TX_ABORTED:
    if (n != 2 || !t->busy || v[1] != t->id)
      return TR_ECORRUPT;
    t->busy = false;
    if (v[0] == TX_DONE)
      t->done++;
    else
      t->aborted++;
    return TR_OK;
  default:
    return TR_ECORRUPT;
  }
}

static tr_status replay_tx(const void *payload, size_t len, void *user) {
  return apply_tx(user, payload, len);
}

static tr_status record_tx(teller *t, const uint64_t *v, size_t n) {
  unsigned char buf[64];
  size_t len;
  tr_status st = encode(v, n, buf, sizeof buf, &len);
  if (st == TR_OK)
    st = tj_append(t->journal, buf, len);
  if (st != TR_OK) {
    fprintf(stderr, "bank: teller-%u: journal append failed: %s\n", t->slot->index,
            tr_strerror(st));
    return st;
  }
  return apply_tx(t, buf, len);
}

static tr_status teller_init(void *state, const void *arg) {
  teller *t = state;
  teller_slot *slot = (teller_slot *)arg;
  tj_replay_info info;
  char who[32];
  tr_status st;

  t->slot = slot;
  t->bank = slot->bank;
  snprintf(who, sizeof who, "teller-%u", slot->index);
  if ((st = open_journal(slot->path, t->bank->opt.flush, &t->journal)) != TR_OK)
    return st;
  st = tj_replay(t->journal, replay_tx, t, &info);
  if (st != TR_OK) {
    replay_failed(who, slot->path, st, &info);
    close_journal(t->journal, who);
    return st;
  }
  if (info.dropped_bytes > 0) {
    fprintf(stderr, "bank: %s: dropped a torn tail of %" PRIu64 " bytes from %s\n", who,
            info.dropped_bytes, slot->path);
    atomic_store_explicit(&slot->torn_bytes, info.dropped_bytes, memory_order_relaxed);
  }
  t->recovering = t->busy;
  t->rng = splitmix64(t->bank->opt.seed ^ ((uint64_t)slot->index << 40) ^ t->last_id) | 1;
  atomic_store_explicit(&slot->history_done, t->done, memory_order_relaxed);
  atomic_store_explicit(&slot->history_aborted, t->aborted, memory_order_relaxed);
  return TR_OK;
}

static void teller_fini(void *state) {
  teller *t = state;
  char who[32];
  snprintf(who, sizeof who, "teller-%u", t->slot->index);
  close_journal(t->journal, who);
}

/* Send (or send again) the current step's request. */
static tr_status send_step(tr_ctx *ctx, teller *t) {
  const uint64_t v[] = {t->slot->index, t->id, t->amount};
  unsigned char buf[64];
  size_t len;
  tr_status st = encode(v, 3, buf, sizeof buf, &len);
  if (st != TR_OK)
    return st;
  /* Wait longer after each timeout (up to 16x), so a slow account is not
   * flooded with retries. */
  unsigned shift = t->attempts < 4 ? t->attempts : 4;
  uint64_t timeout = t->bank->opt.timeout_ms << shift;
  bool withdraw = t->step == STEP_WITHDRAW;
  tr_ref to = t->bank->accounts[withdraw ? t->from : t->to];
  return tr_ask(ctx, to, withdraw ? WITHDRAW : DEPOSIT, buf, len, timeout, &t->corr);
}

/* Finish or begin the next transfer, or go idle. */
static tr_status next_step(tr_ctx *ctx, teller *t) {
  if (!t->busy && t->to_begin > 0) {
    uint64_t n = t->bank->naccounts;
    uint64_t from = rnd(&t->rng) % n, to = rnd(&t->rng) % (n - 1);
    if (to >= from)
      to++; /* any account but `from` */
    uint64_t amount = 1 + rnd(&t->rng) % t->bank->opt.max_amount;
    /* Write-ahead: the intent is in the journal before any account hears
     * of it, so a crash at any later point leaves a transfer to finish. */
    const uint64_t rec[] = {TX_BEGIN, t->last_id + 1, from, to, amount};
    tr_status st = record_tx(t, rec, 5);
    if (st != TR_OK)
      return st;
    t->to_begin--;
    t->attempts = 0;
  }
  if (t->busy)
    return send_step(ctx, t);
  atomic_store_explicit(&t->slot->idle, true, memory_order_release);
  return TR_OK;
}

/* The end of a transfer: journal it, count it, go on. */
static tr_status end_transfer(tr_ctx *ctx, teller *t, bool done) {
  const uint64_t rec[] = {done ? TX_DONE : TX_ABORTED, t->id};
  tr_status st = record_tx(t, rec, 2);
  if (st != TR_OK)
    return st;
  teller_slot *s = t->slot;
  atomic_fetch_add_explicit(done ? &s->done : &s->aborted, 1, memory_order_relaxed);
  atomic_fetch_add_explicit(done ? &s->history_done : &s->history_aborted, 1, memory_order_relaxed);
  if (t->recovering)
    atomic_fetch_add_explicit(&s->recovered, 1, memory_order_relaxed);
  t->recovering = false;
  return next_step(ctx, t);
}

static tr_status teller_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  teller *t = state;
  uint32_t tag = tr_msg_tag(msg);
  tr_status st;

  if (tag == START) {
    if ((st = tr_msg_get_uint(msg, &t->to_begin)) != TR_OK)
      return st;
    atomic_store_explicit(&t->slot->idle, false, memory_order_relaxed);
    return next_step(ctx, t);
  }
  /* Anything else answers a request: only the outstanding one counts. */
  if (!t->busy || t->stuck || tr_msg_corr(msg) != t->corr)
    return TR_OK;
  if (tag == TR_TAG_TIMEOUT) {
    /* No reply in time: the account failed before or after applying the
     * step, or is slow. Ask again, with the same id: it applies it once. */
    if (++t->attempts >= MAX_ATTEMPTS) {
      /* Not worth waiting longer (--fail-rate 1 gets here). The transfer
       * stays begun in the journal: the next run finishes it. */
      fprintf(stderr,
              "bank: teller-%u: no answer for transfer %" PRIu64 " after %u attempts; "
              "it stays in flight for the next run\n",
              t->slot->index, t->id, MAX_ATTEMPTS);
      t->stuck = true;
      return TR_OK; /* not idle: main reports the transfer in flight */
    }
    atomic_fetch_add_explicit(&t->slot->retries, 1, memory_order_relaxed);
    return send_step(ctx, t);
  }
  if (t->step == STEP_WITHDRAW && tag == DONE) {
    t->step = STEP_DEPOSIT; /* the money has left `from`: it must reach `to` */
    t->attempts = 0;
    return send_step(ctx, t);
  }
  if (t->step == STEP_WITHDRAW && tag == INSUFFICIENT)
    return end_transfer(ctx, t, false);
  if (t->step == STEP_DEPOSIT && tag == DONE)
    return end_transfer(ctx, t, true);
  return TR_EINVAL; /* a reply that makes no sense: a bug, fail */
}

/* --------------------------------------------------------------- the files */

/* mkdir -p */
static bool make_dirs(const char *dir) {
  char buf[PATH_MAX];
  size_t len = strlen(dir);
  if (len == 0 || len >= sizeof buf)
    return false;
  memcpy(buf, dir, len + 1);
  for (char *p = buf + 1; *p; p++) {
    if (*p != '/')
      continue;
    *p = '\0';
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
      return false;
    *p = '/';
  }
  return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

/* Is `name` "<prefix><number>.tj"? */
static bool journal_name(const char *name, const char *prefix) {
  size_t pl = strlen(prefix), nl = strlen(name);
  if (nl <= pl + 3 || strncmp(name, prefix, pl) != 0 || strcmp(name + nl - 3, ".tj") != 0)
    return false;
  for (size_t i = pl; i < nl - 3; i++)
    if (name[i] < '0' || name[i] > '9')
      return false;
  return true;
}

/* --fresh: delete this sample's journals (and nothing else) from `dir`. */
static bool delete_journals(const char *dir) {
  DIR *d = opendir(dir);
  struct dirent *e;
  char path[PATH_MAX];
  bool ok = true;
  if (d == NULL)
    return errno == ENOENT;
  while ((e = readdir(d)) != NULL) {
    if (!journal_name(e->d_name, "account-") && !journal_name(e->d_name, "teller-"))
      continue;
    snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
    if (unlink(path) != 0) {
      fprintf(stderr, "bank: cannot delete %s: %s\n", path, strerror(errno));
      ok = false;
    }
  }
  closedir(d);
  return ok;
}

/* How many of <dir>/<prefix>0.tj, 1, 2, ... exist, counting up to the first
 * missing one. */
static unsigned count_journals(const char *dir, const char *prefix, unsigned max) {
  char path[PATH_MAX];
  unsigned n = 0;
  for (; n < max; n++) {
    snprintf(path, sizeof path, "%s/%s%u.tj", dir, prefix, n);
    if (access(path, F_OK) != 0)
      break;
  }
  return n;
}

/* ---------------------------------------------------------------- options */

enum {
  OPT_FLUSH = 256,
  OPT_SEED,
  OPT_VERIFY,
  OPT_FRESH,
  OPT_INITIAL,
  OPT_MAX_AMOUNT,
  OPT_INTENSITY,
  OPT_TIMEOUT
};

static const struct option long_options[] = {
    {"dir", required_argument, NULL, 'd'},
    {"accounts", required_argument, NULL, 'a'},
    {"transfers", required_argument, NULL, 'n'},
    {"tellers", required_argument, NULL, 'k'},
    {"fail-rate", required_argument, NULL, 'f'},
    {"flush", required_argument, NULL, OPT_FLUSH},
    {"seed", required_argument, NULL, OPT_SEED},
    {"threads", required_argument, NULL, 't'},
    {"verify", no_argument, NULL, OPT_VERIFY},
    {"fresh", no_argument, NULL, OPT_FRESH},
    {"initial", required_argument, NULL, OPT_INITIAL},
    {"max-amount", required_argument, NULL, OPT_MAX_AMOUNT},
    {"intensity", required_argument, NULL, OPT_INTENSITY},
    {"timeout-ms", required_argument, NULL, OPT_TIMEOUT},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

static void usage(FILE *f, const char *argv0) {
  fprintf(f,
          "usage: %s [options]\n"
          "  -d, --dir D             journal directory, created if missing\n"
          "                          (default $TMPDIR/troupe-bank, TMPDIR defaulting to /tmp)\n"
          "  -a, --accounts N        accounts (8; a directory that holds more keeps them)\n"
          "  -n, --transfers T       new transfers in this run, k and M suffixes allowed (2000)\n"
          "  -k, --tellers K         teller actors, at most %u (4)\n"
          "  -f, --fail-rate P       probability that an account fails on a request\n"
          "                          (0.01; 0 with --verify)\n"
          "      --flush event|batch|none  journal fsync policy (batch: every 64 records and\n"
          "                          at exit; kill -9 safe; use event to survive a power cut)\n"
          "      --seed S            random seed (1)\n"
          "  -t, --threads W         worker threads, 0 = one per CPU (0)\n"
          "      --verify            replay the journals, finish transfers left in flight,\n"
          "                          check the total; no new transfers\n"
          "      --fresh             delete the old journals first\n"
          "      --initial A         opening balance of a new account (1000)\n"
          "      --max-amount A      largest transfer (250)\n"
          "      --intensity R       supervisor: restarts allowed per second, 1..100000\n"
          "                          (default: what the tellers can cause, see the code)\n"
          "      --timeout-ms MS     a teller's first wait for a reply (25; doubles on retry)\n",
          argv0, MAX_TELLERS);
}

static int parse_options(int argc, char **argv, options *o) {
  const char *tmp = getenv("TMPDIR");
  *o = (options){.accounts = 8,
                 .transfers = 2000,
                 .tellers = 4,
                 .fail_rate = 0.01,
                 .flush = TJ_FLUSH_BATCH,
                 .seed = 1,
                 .initial = 1000,
                 .max_amount = 250,
                 .timeout_ms = 25};
  snprintf(o->dir, sizeof o->dir, "%s/troupe-bank", tmp && *tmp ? tmp : "/tmp");
  bool fail_rate_given = false;
  int opt;
  while ((opt = getopt_long(argc, argv, "d:a:n:k:f:t:h", long_options, NULL)) != -1) {
    uint64_t v = 0;
    bool ok = true;
    char *end;
    switch (opt) {
    case 'd':
      ok = strlen(optarg) > 0 && strlen(optarg) < sizeof o->dir;
      if (ok)
        snprintf(o->dir, sizeof o->dir, "%s", optarg);
      break;
    case 'a':
      ok = parse_num(optarg, 2, MAX_ACCOUNTS, &v), o->accounts = (unsigned)v;
      o->accounts_given = true;
      break;
    case 'n':
      ok = parse_num(optarg, 0, (uint64_t)1 << 40, &o->transfers);
      break;
    case 'k':
      ok = parse_num(optarg, 1, MAX_TELLERS, &v), o->tellers = (unsigned)v;
      break;
    case 'f':
      errno = 0;
      o->fail_rate = strtod(optarg, &end);
      ok = errno == 0 && *end == '\0' && end != optarg && o->fail_rate >= 0 && o->fail_rate <= 1;
      fail_rate_given = true;
      break;
    case OPT_FLUSH:
      if (strcmp(optarg, "event") == 0)
        o->flush = TJ_FLUSH_EVENT;
      else if (strcmp(optarg, "batch") == 0)
        o->flush = TJ_FLUSH_BATCH;
      else if (strcmp(optarg, "none") == 0)
        o->flush = TJ_FLUSH_NONE;
      else
        ok = false;
      break;
    case OPT_SEED:
      ok = parse_num(optarg, 0, UINT64_MAX, &o->seed);
      break;
    case 't':
      ok = parse_num(optarg, 0, TR_MAX_THREADS, &v), o->threads = (unsigned)v;
      break;
    case OPT_VERIFY:
      o->verify = true;
      break;
    case OPT_FRESH:
      o->fresh = true;
      break;
    case OPT_INITIAL:
      ok = parse_num(optarg, 1, (uint64_t)1 << 40, &o->initial);
      break;
    case OPT_MAX_AMOUNT:
      ok = parse_num(optarg, 1, (uint64_t)1 << 40, &o->max_amount);
      break;
    case OPT_INTENSITY:
      /* The supervisor keeps one timestamp per allowed restart, and takes
       * at most 100000. */
      ok = parse_num(optarg, 1, 100000, &v), o->intensity = (unsigned)v;
      break;
    case OPT_TIMEOUT:
      ok = parse_num(optarg, 1, 60000, &o->timeout_ms);
      break;
    case 'h':
      usage(stdout, argv[0]);
      exit(0);
    default:
      usage(stderr, argv[0]);
      return 2;
    }
    if (!ok) {
      fprintf(stderr, "bank: bad value '%s' for --%s (see --help)\n", optarg,
              opt_name(long_options, opt));
      return 2;
    }
  }
  if (optind < argc) {
    usage(stderr, argv[0]);
    return 2;
  }
  if (o->verify && !fail_rate_given)
    o->fail_rate = 0; /* a check injects no faults unless asked to */
  return 0;
}

/* ------------------------------------------------------------------- main */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Print a msgpack exit reason such as ["shutdown", "account-3", "..."]. */
static void print_reason(const void *reason, size_t len) {
  tr_val v[4];
  size_t n = 0;
  if (tr_mp_get_vals(reason, len, v, 4, &n) != TR_OK) {
    if (tr_mp_get_val(reason, len, &v[0]) != TR_OK) {
      fprintf(stderr, "(%zu bytes of msgpack)", len);
      return;
    }
    n = 1;
  }
  for (size_t i = 0; i < n; i++) {
    if (v[i].type == TR_VAL_STR)
      fprintf(stderr, "%s%.*s", i ? ", " : "", (int)v[i].as.bytes.len,
              (const char *)v[i].as.bytes.ptr);
    else
      fprintf(stderr, "%s(value of type %d)", i ? ", " : "", (int)v[i].type);
  }
}

/* The supervisor's restart budget, per second. An account fails only while
 * handling a teller's request, and a teller whose request got no reply waits
 * at least timeout_ms before it sends another; so the accounts cannot fail
 * more often than about tellers x 1000 / timeout_ms times a second, whatever
 * the fail rate. Twice that, and some room. */
static unsigned default_intensity(const options *o, unsigned tellers) {
  uint64_t r = 10 + 2 * 2 * (uint64_t)tellers * 1000 / o->timeout_ms;
  return r > 100000 ? 100000 : (unsigned)r;
}

/* Size the bank from the options and the journals in the directory, and
 * allocate its slots. */
static bool prepare(bank *b, unsigned *had_accounts) {
  options *o = &b->opt;
  if (!make_dirs(o->dir)) {
    fprintf(stderr, "bank: cannot create %s: %s\n", o->dir, strerror(errno));
    return false;
  }
  if (o->fresh && !delete_journals(o->dir))
    return false;
  unsigned had = count_journals(o->dir, "account-", MAX_ACCOUNTS);
  unsigned had_tellers = count_journals(o->dir, "teller-", MAX_TELLERS);
  if (o->verify && had == 0) {
    fprintf(stderr, "bank: nothing to verify: no account journals in %s\n", o->dir);
    return false;
  }
  /* The bank never shrinks: accounts and tellers whose journals exist are
   * started again (a teller that gets no new transfers still finishes the
   * one it left in flight). --verify creates nothing. */
  b->naccounts = o->verify || had > o->accounts ? had : o->accounts;
  if (had > o->accounts && o->accounts_given)
    fprintf(stderr, "bank: note: %s holds %u accounts; keeping them all\n", o->dir, had);
  b->ntellers = had_tellers > o->tellers ? had_tellers : o->tellers;
  if (o->intensity == 0)
    o->intensity = default_intensity(o, b->ntellers);
  *had_accounts = had;

  b->accounts = calloc(b->naccounts, sizeof *b->accounts);
  b->aslots = calloc(b->naccounts, sizeof *b->aslots);
  b->children = calloc(b->naccounts, sizeof *b->children);
  b->tellers = calloc(b->ntellers, sizeof *b->tellers);
  b->tslots = calloc(b->ntellers, sizeof *b->tslots);
  if (!b->accounts || !b->aslots || !b->children || !b->tellers || !b->tslots) {
    fprintf(stderr, "bank: out of memory\n");
    return false;
  }
  for (unsigned i = 0; i < b->naccounts; i++) {
    account_slot *s = &b->aslots[i];
    s->bank = b;
    s->index = i;
    snprintf(s->id, sizeof s->id, "account-%u", i);
    snprintf(s->path, sizeof s->path, "%s/account-%u.tj", o->dir, i);
  }
  for (unsigned i = 0; i < b->ntellers; i++) {
    teller_slot *s = &b->tslots[i];
    s->bank = b;
    s->index = i;
    snprintf(s->path, sizeof s->path, "%s/teller-%u.tj", o->dir, i);
  }
  return true;
}

/* Start the accounts under their supervisor, then the tellers, and give
 * the tellers their work. */
static tr_status start_bank(bank *b, tr_system *sys, tr_ref *sup) {
  const options *o = &b->opt;
  tr_ctx *out = tr_system_ctx(sys);
  tr_status st;

  /* The accounts: children of one ONE_FOR_ONE supervisor, permanent (a
   * failed account is always restarted). The start argument is the slot's
   * address (arg_size 0: passed as is), the same at every restart. The
   * spec must outlive the supervisor: main frees it after tr_system_free. */
  const tr_actor_spec account_spec = {.name = "account",
                                      .behaviour = account_behaviour,
                                      .state_size = sizeof(account),
                                      .init = account_init,
                                      .fini = account_fini};
  for (unsigned i = 0; i < b->naccounts; i++)
    b->children[i] = (tr_child_spec){.id = b->aslots[i].id,
                                     .actor = account_spec,
                                     .arg = &b->aslots[i],
                                     .arg_size = 0,
                                     .restart = TR_RESTART_PERMANENT};
  b->sup_spec = (tr_sup_spec){.name = "accounts",
                              .strategy = TR_SUP_ONE_FOR_ONE,
                              .intensity = o->intensity,
                              .period_ms = 1000,
                              .children = b->children,
                              .nchildren = b->naccounts};
  /* Each account's init replays its journal here, in this thread. */
  if ((st = tr_sup_start(out, &b->sup_spec, sup, b->accounts)) != TR_OK) {
    fprintf(stderr, "bank: starting the accounts failed: %s%s\n", tr_strerror(st),
            st == TR_EINIT ? " (see above)" : "");
    return st;
  }

  /* The tellers: plain actors (not supervised, see the top of the file). */
  const tr_actor_spec teller_spec = {.name = "teller",
                                     .behaviour = teller_behaviour,
                                     .state_size = sizeof(teller),
                                     .init = teller_init,
                                     .fini = teller_fini};
  for (unsigned i = 0; i < b->ntellers; i++) {
    if ((st = tr_spawn(out, &teller_spec, &b->tslots[i], &b->tellers[i])) != TR_OK) {
      fprintf(stderr, "bank: starting teller-%u failed: %s\n", i, tr_strerror(st));
      return st;
    }
  }
  /* Each teller first finishes what it left in flight, then makes its share
   * of the new transfers. */
  for (unsigned i = 0; i < b->ntellers; i++) {
    uint64_t share = 0;
    if (!o->verify && i < o->tellers)
      share = o->transfers / o->tellers + (i < o->transfers % o->tellers);
    if ((st = tr_send_uint(out, b->tellers[i], START, share)) != TR_OK)
      return st;
  }
  return TR_OK;
}

/* Print what happened and check the money. True when it is conserved. */
static bool report(bank *b, tr_system *sys, tr_ref sup, tr_status wait_st, double elapsed) {
  uint64_t done = 0, aborted = 0, recovered = 0, retries = 0, hdone = 0, haborted = 0, torn = 0;
  unsigned busy = 0;
  for (unsigned i = 0; i < b->ntellers; i++) {
    teller_slot *s = &b->tslots[i];
    done += atomic_load(&s->done);
    aborted += atomic_load(&s->aborted);
    recovered += atomic_load(&s->recovered);
    retries += atomic_load(&s->retries);
    hdone += atomic_load(&s->history_done);
    haborted += atomic_load(&s->history_aborted);
    busy += !atomic_load_explicit(&s->idle, memory_order_acquire);
    torn += atomic_load(&s->torn_bytes);
  }
  uint64_t faults = 0, inits = 0, dups = 0;
  bool lost_mail = false;
  for (unsigned i = 0; i < b->naccounts; i++) {
    faults += atomic_load(&b->aslots[i].faults);
    inits += atomic_load(&b->aslots[i].inits);
    dups += atomic_load(&b->aslots[i].duplicates);
    torn += atomic_load(&b->aslots[i].torn_bytes);
  }
  printf("transfers: %" PRIu64 " done, %" PRIu64 " aborted (insufficient funds) in %.2f s; "
         "%" PRIu64 " of them left in flight by an earlier run\n",
         done, aborted, elapsed, recovered);
  printf("  all runs: %" PRIu64 " done, %" PRIu64 " aborted\n", hdone, haborted);

  /* Restarts, as the supervisor counts them (it must still be running to
   * answer) and as the accounts' inits count them. */
  tr_sup_stats ss = {0};
  tr_status sst = wait_st == TR_OK ? tr_sup_stats_get(sys, sup, 5000, &ss) : TR_ESTATE;
  printf("failures injected: %" PRIu64 ", restarts: ", faults);
  if (sst == TR_OK)
    printf("%" PRIu64 " (supervisor)", ss.restarts);
  else
    printf("? (supervisor: %s)", tr_status_name(sst));
  printf(", %" PRIu64 " (account inits - 1)\n", inits - b->naccounts);
  printf("retries after a timeout: %" PRIu64 ", repeated requests ignored: %" PRIu64
         ", torn journal bytes dropped: %" PRIu64 "\n",
         retries, dups, torn);

  /* FAILED: requests whose handling an injected fault cut short;
   * LATE_REPLY: replies that came after the teller's timeout. */
  tr_system_stats sy;
  if (tr_system_stats_get(sys, &sy) == TR_OK) {
    uint64_t dl = 0;
    const char *sep = " (";
    for (int r = 0; r < TR_DEAD_REASON_COUNT; r++)
      dl += sy.dead_letters[r];
    printf("dead letters: %" PRIu64, dl);
    for (int r = 0; r < TR_DEAD_REASON_COUNT; r++) {
      if (sy.dead_letters[r] > 0) {
        printf("%s%s %" PRIu64, sep, tr_dead_reason_name((tr_dead_reason)r), sy.dead_letters[r]);
        sep = ", ";
      }
    }
    printf("%s\n", dl > 0 ? ")" : "");
    /* Each injected fault loses exactly the request being handled; the
     * restart keeps the rest of the mailbox, so no other mail is lost. */
    if (wait_st == TR_OK &&
        (sy.dead_letters[TR_DEAD_FAILED] != faults || sy.dead_letters[TR_DEAD_STOPPED] != 0)) {
      fprintf(stderr,
              "bank: expected %" PRIu64 " FAILED and 0 STOPPED dead letters, one per injected "
              "fault\n",
              faults);
      lost_mail = true;
    }
  }

  /* Balances: asked from outside the runtime, with tr_ask_wait. */
  uint64_t total = 0, opened = 0;
  bool have_all = wait_st == TR_OK;
  if (have_all)
    printf("balances:");
  for (unsigned i = 0; have_all && i < b->naccounts; i++) {
    uint32_t tag;
    void *reply = NULL;
    size_t len, n;
    uint64_t v[MAX_VALS];
    tr_status st = tr_ask_wait(tr_system_ctx(sys), b->accounts[i], BALANCE, NULL, 0, 10000, &tag,
                               &reply, &len);
    if (st != TR_OK || tag != BALANCE_IS || decode(reply, len, v, &n) != TR_OK || n != 3) {
      printf("\n");
      fprintf(stderr, "bank: account-%u did not tell its balance: %s\n", i, tr_strerror(st));
      have_all = false;
    } else {
      total += v[0];
      opened += v[1];
      if (i < 16)
        printf(" %" PRIu64, v[0]);
      else if (i == 16)
        printf(" ...");
    }
    free(reply);
  }
  if (have_all)
    printf("\ntotal: %" PRIu64 " in %u accounts, opened with %" PRIu64 "\n", total, b->naccounts,
           opened);

  /* The check: only meaningful once no transfer is in flight. */
  if (!have_all || busy > 0) {
    printf("money conserved: unknown (%u tellers still have a transfer in flight%s)\n", busy,
           have_all ? "" : ", or an account did not answer");
    return false;
  }
  if (total != opened) {
    printf("money conserved: NO (total %" PRIu64 ", but %" PRIu64 " was opened)\n", total, opened);
    return false;
  }
  printf("money conserved: yes (total %" PRIu64 ")\n", total);
  return !lost_mail;
}

int main(int argc, char **argv) {
  bank b = {0};
  unsigned had_accounts = 0;
  tr_system *sys = NULL;
  tr_ref sup = TR_REF_NONE;
  bool ok = false;
  int rc = parse_options(argc, argv, &b.opt);
  if (rc != 0)
    return rc;
  const options *o = &b.opt;
  if (!prepare(&b, &had_accounts))
    goto done;

  tr_system_config cfg = {.threads = o->threads};
  tr_status st = tr_system_new(&cfg, &sys);
  if (st != TR_OK) {
    fprintf(stderr, "bank: tr_system_new: %s\n", tr_strerror(st));
    goto done;
  }
  printf("bank: %u accounts, %u tellers, %" PRIu64 " new transfers, fail rate %g, flush %s, "
         "%u worker threads\n      journals in %s%s\n",
         b.naccounts, b.ntellers, o->verify ? 0 : o->transfers, o->fail_rate,
         o->flush == TJ_FLUSH_EVENT  ? "event"
         : o->flush == TJ_FLUSH_NONE ? "none"
                                     : "batch",
         tr_system_threads(sys), o->dir,
         o->verify      ? " (verify: recover and check only)"
         : had_accounts ? " (continuing: replayed from the journals)"
                        : "");

  double t0 = now_s();
  st = tr_system_start(sys);
  if (st == TR_OK)
    st = start_bank(&b, sys, &sup);
  if (st == TR_OK) {
    /* Quiescence: every teller idle, every request answered or timed out. */
    st = tr_system_wait(sys);
    double elapsed = now_s() - t0;
    if (st == TR_EEXIT) {
      const void *reason;
      size_t len;
      fprintf(stderr,
              "bank: the supervisor gave up (more than %u restarts in a second): ", o->intensity);
      if (tr_system_exit_reason(sys, &reason, &len) == TR_OK)
        print_reason(reason, len);
      fprintf(stderr, "\nbank: the journals are intact: run again with --verify\n");
    } else if (st != TR_OK) {
      fprintf(stderr, "bank: tr_system_wait: %s\n", tr_strerror(st));
    }
    ok = report(&b, sys, sup, st, elapsed) && st == TR_OK;
  }

  /* Stops everything; each fini closes its journal (a final fsync, unless
   * --flush none). */
  tr_system_free(sys);
  long still_open = atomic_load(&g_open_journals);
  if (still_open != 0) {
    fprintf(stderr,
            "bank: %ld journals still open after tr_system_free: an init without its fini\n",
            still_open);
    ok = false;
  }
done:
  free(b.accounts);
  free(b.aslots);
  free(b.children);
  free(b.tellers);
  free(b.tslots);
  return ok ? 0 : 1;
}
