/*
 * tracestress.c - the event trace started and stopped, and snapshots taken,
 * again and again while the system is busy: producer actors flood a sink,
 * actors are spawned and stop themselves, and an outside thread sends to
 * stopped actors (dead letters from outside a worker). A plain program, so
 * that it runs under ThreadSanitizer too (the trace's rings, sessions and
 * writer thread, and the snapshot's registry walk, against the workers).
 *
 *   tracestress [-w workers] [-r rounds] [-t troupe-trace] [-d dir]
 * Checks the books balance, every trace file has a header, and, with -t,
 * that troupe-trace reads every file without complaint about its form.
 * Prints "tracestress: N passed, N failed".
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <troupe.h>
#include <unistd.h>

#include "check.h"

enum { GO = 1, DATA, SPAWN, QUIT };
#define CHUNK 64

static _Atomic uint64_t sink_seen, stop_flag;

static tr_status sink(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx, (void)state, (void)msg;
  atomic_fetch_add_explicit(&sink_seen, 1, memory_order_relaxed);
  return TR_OK;
}

static tr_status child(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state, (void)msg;
  return tr_stop(ctx, tr_self(ctx));
}

static tr_status producer(tr_ctx *ctx, void *state, const tr_msg *msg) {
  tr_ref to = *(tr_ref *)state;
  (void)msg;
  for (int i = 0; i < CHUNK; i++)
    if (tr_send(ctx, to, DATA) != TR_OK)
      return TR_EFAIL;
  /* A short-lived child now and then: names at spawn, stops. */
  tr_actor_spec spec = {.name = "child", .behaviour = child};
  tr_ref c;
  if (tr_spawn(ctx, &spec, NULL, &c) != TR_OK || tr_send(ctx, c, QUIT) != TR_OK)
    return TR_EFAIL;
  if (atomic_load_explicit(&stop_flag, memory_order_relaxed))
    return TR_OK;
  return tr_send(ctx, tr_self(ctx), GO);
}

static tr_status producer_init(void *state, const void *arg) {
  *(tr_ref *)state = *(const tr_ref *)arg;
  return TR_OK;
}

typedef struct outside {
  tr_system *sys;
  tr_ref stale;
  uint64_t stale_sends;
} outside;

/* Sends to a stopped actor from outside: dead letters (STALE), traced into
 * the shared buffer. */
static void *outside_main(void *arg) {
  outside *o = arg;
  while (!atomic_load_explicit(&stop_flag, memory_order_relaxed)) {
    if (tr_send(tr_system_ctx(o->sys), o->stale, DATA) == TR_ESTALE)
      o->stale_sends++;
    struct timespec ts = {0, 200 * 1000};
    nanosleep(&ts, NULL);
  }
  return NULL;
}

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
  unsigned workers = 2, rounds = 12;
  const char *tool = NULL, *dir = "/tmp";
  int opt;
  while ((opt = getopt(argc, argv, "w:r:t:d:")) != -1) {
    switch (opt) {
    case 'w':
      workers = (unsigned)atoi(optarg);
      break;
    case 'r':
      rounds = (unsigned)atoi(optarg);
      break;
    case 't':
      tool = optarg;
      break;
    case 'd':
      dir = optarg;
      break;
    default:
      fprintf(stderr, "usage: tracestress [-w workers] [-r rounds] [-t troupe-trace] [-d dir]\n");
      return 2;
    }
  }
  tr_system_config cfg = {.threads = workers};
  tr_system *sys;
  if (tr_system_new(&cfg, &sys) != TR_OK)
    return 1;
  tr_ctx *ext = tr_system_ctx(sys);
  tr_actor_spec sspec = {.name = "sink", .behaviour = sink};
  tr_ref s, p[2], stale;
  tr_actor_spec cspec = {.name = "gone", .behaviour = child};
  expect(tr_spawn(ext, &sspec, NULL, &s) == TR_OK, "spawn sink", 0, 0);
  expect(tr_spawn(ext, &cspec, NULL, &stale) == TR_OK, "spawn gone", 0, 0);
  for (int i = 0; i < 2; i++) {
    tr_actor_spec pspec = {.name = "producer",
                           .behaviour = producer,
                           .state_size = sizeof(tr_ref),
                           .init = producer_init};
    expect(tr_spawn(ext, &pspec, &s, &p[i]) == TR_OK, "spawn producer", 0, 0);
  }
  expect(tr_system_start(sys) == TR_OK, "start", 0, 0);
  expect(tr_send(ext, stale, QUIT) == TR_OK, "quit", 0, 0);
  expect(tr_system_wait(sys) == TR_OK, "wait", 0, 0);
  outside o = {sys, stale, 0};
  pthread_t th;
  expect(pthread_create(&th, NULL, outside_main, &o) == 0, "thread", 0, 0);
  for (int i = 0; i < 2; i++)
    expect(tr_send(ext, p[i], GO) == TR_OK, "go", 0, 0);

  char path[2][512];
  for (int k = 0; k < 2; k++)
    snprintf(path[k], sizeof path[k], "%s/tracestress-%ld-%d.trace", dir, (long)getpid(), k);
  for (unsigned r = 0; r < rounds; r++) {
    const char *f = path[r % 2];
    tr_status st = tr_trace_start(sys, f);
    expect(st == TR_OK, "tr_trace_start", (unsigned long long)st, TR_OK);
    sleep_ms(5 + (long)(r % 4) * 5);
    tr_snapshot *snap;
    st = tr_snapshot_take(sys, &snap);
    expect(st == TR_OK, "tr_snapshot_take", (unsigned long long)st, TR_OK);
    if (st == TR_OK) {
      expect(snap->nworkers == workers, "snapshot workers", snap->nworkers, workers);
      expect(snap->nactors >= 3, "snapshot actors", snap->nactors, 3);
      tr_snapshot_free(snap);
    }
    st = tr_trace_stop(sys);
    expect(st == TR_OK, "tr_trace_stop", (unsigned long long)st, TR_OK);
    struct stat sb;
    expect(stat(f, &sb) == 0 && sb.st_size >= 64, "trace file has a header",
           (unsigned long long)sb.st_size, 64);
    if (tool != NULL) {
      char cmd[2048];
      /* Any remark about the file's form (cut short, corrupt, unknown)
       * is a failure; lost events under load are not. */
      snprintf(cmd, sizeof cmd,
               "%s table %s 2>&1 >/dev/null | grep -E 'truncated|no end record|corrupt|unknown'",
               tool, f);
      expect(system(cmd) != 0, "troupe-trace finds the file whole", r, 0);
    }
  }
  atomic_store(&stop_flag, 1);
  pthread_join(th, NULL);
  expect(tr_system_wait(sys) == TR_OK, "wait at end", 0, 0);
  tr_system_stats ss;
  expect(tr_system_stats_get(sys, &ss) == TR_OK, "stats", 0, 0);
  expect(ss.dead_letters[TR_DEAD_STALE] == o.stale_sends, "stale sends are dead letters",
         ss.dead_letters[TR_DEAD_STALE], o.stale_sends);
  expect(ss.sent == ss.handled + ss.dead_letters[TR_DEAD_STOPPED], "books balance", ss.sent,
         ss.handled + ss.dead_letters[TR_DEAD_STOPPED]);
  tr_system_free(sys);
  for (int k = 0; k < 2; k++)
    unlink(path[k]);
  return check_report("tracestress");
}
