/*
 * test_trace.c - counters, the snapshot API, the event trace and the
 * troupe-trace tool end to end.
 *
 * The scripted system: three actors exchange known numbers of messages
 * (alpha sends N_BETA pings to beta and N_GAMMA to gamma; each ping is
 * answered with a pong to alpha; gamma also forwards each of its pings to
 * beta). Every actor counts what its behaviour saw; the trace's per-actor
 * message counts (troupe-trace table) must equal those counts, and so must
 * the mailbox counters.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../common/tr_test.h"
/* After criterion.h (tr_test.h): alone it defines the asserts otherwise. */
#include <criterion/redirect.h>

#include "internal_trace.h"

TestSuite(trace, .timeout = 120);

#ifndef TROUPE_TRACE_TOOL
#error "build with -DTROUPE_TRACE_TOOL=path of troupe-trace"
#endif

enum { START = 1, PING, PONG, FWD };
enum { N_BETA = 3000, N_GAMMA = 1200 };
enum { ALPHA, BETA, GAMMA, NACTORS };

static const char *names[NACTORS] = {"alpha", "beta", "gamma"};
static _Atomic uint64_t seen[NACTORS];

typedef struct peer {
  unsigned who;
  tr_ref beta, gamma;
} peer;

static tr_status peer_init(void *state, const void *arg) {
  *(peer *)state = *(const peer *)arg;
  return TR_OK;
}

static tr_status peer_behaviour(tr_ctx *ctx, void *state, const tr_msg *msg) {
  peer *p = state;
  atomic_fetch_add_explicit(&seen[p->who], 1, memory_order_relaxed);
  switch (tr_msg_tag(msg)) {
  case START:
    for (unsigned i = 0; i < N_BETA; i++)
      if (tr_send_uint(ctx, p->beta, PING, i) != TR_OK)
        return TR_EFAIL;
    for (unsigned i = 0; i < N_GAMMA; i++)
      if (tr_send_uint(ctx, p->gamma, PING, i) != TR_OK)
        return TR_EFAIL;
    return TR_OK;
  case PING:
    if (p->who == GAMMA && tr_send(ctx, p->beta, FWD) != TR_OK)
      return TR_EFAIL;
    return tr_send(ctx, tr_msg_sender(msg), PONG);
  case PONG:
  case FWD:
    return TR_OK;
  default:
    return TR_EFAIL;
  }
}

/* What each actor must see. */
static const uint64_t want[NACTORS] = {1 + N_BETA + N_GAMMA, N_BETA + N_GAMMA, N_GAMMA};

typedef struct scripted {
  tr_system *sys;
  tr_ref ref[NACTORS];
} scripted;

/* Spawn the three. */
static void scripted_spawn(scripted *s, unsigned threads) {
  tr_system_config cfg = {.threads = threads};
  for (unsigned i = 0; i < NACTORS; i++)
    atomic_store(&seen[i], 0);
  OK(tr_system_new(&cfg, &s->sys));
  tr_ctx *ext = tr_system_ctx(s->sys);
  peer p = {0};
  static const unsigned order[NACTORS] = {BETA, GAMMA, ALPHA}; /* each knows the ones before */
  for (unsigned k = 0; k < NACTORS; k++) {
    unsigned i = order[k];
    p.who = i;
    tr_actor_spec spec = {.name = names[i],
                          .behaviour = peer_behaviour,
                          .state_size = sizeof(peer),
                          .init = peer_init};
    OK(tr_spawn(ext, &spec, &p, &s->ref[i]));
    if (i == BETA)
      p.beta = s->ref[i];
    if (i == GAMMA)
      p.gamma = s->ref[i];
  }
}

static void scripted_run(scripted *s) {
  OK(tr_send(tr_system_ctx(s->sys), s->ref[ALPHA], START));
  WAIT(s->sys);
  for (unsigned i = 0; i < NACTORS; i++)
    cr_assert_eq(atomic_load(&seen[i]), want[i], "%s saw %llu messages, want %llu", names[i],
                 (unsigned long long)atomic_load(&seen[i]), (unsigned long long)want[i]);
}

static void temp_path(char *buf, size_t len, const char *what) {
  snprintf(buf, len, "/tmp/troupe-test-%ld-%s", (long)getpid(), what);
}

static bool exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

/* Run a shell command, capturing stdout into `out` (malloc'd); exit status. */
static int run(const char *cmd, char **out) {
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p, "popen %s", cmd);
  size_t cap = 1 << 16, n = 0;
  char *buf = malloc(cap);
  cr_assert_not_null(buf);
  size_t got;
  while ((got = fread(buf + n, 1, cap - n - 1, p)) > 0) {
    n += got;
    if (n + 1 == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      cr_assert_not_null(buf);
    }
  }
  buf[n] = '\0';
  int st = pclose(p);
  if (out != NULL)
    *out = buf;
  else
    free(buf);
  return st;
}

static bool have(const char *prog) {
  char cmd[256];
  snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
  return system(cmd) == 0;
}

/* The "messages" column of the table row whose name is `name`. */
static uint64_t table_messages(const char *table, const char *name) {
  for (const char *line = table; line != NULL && *line; line = strchr(line, '\n')) {
    if (*line == '\n')
      line++;
    char ref[32], nm[64];
    unsigned long long msgs;
    if (sscanf(line, "%31s %63s %llu", ref, nm, &msgs) == 3 && strcmp(nm, name) == 0)
      return msgs;
  }
  cr_assert_fail("no row for %s in:\n%s", name, table);
  return 0;
}

/* ------------------------------------------------------------ the trace */

Test(trace, table_counts_equal_what_actors_saw) {
  char path[256];
  temp_path(path, sizeof path, "table.trace");
  scripted s;
  scripted_spawn(&s, 2);
  OK(tr_trace_start(s.sys, path));
  OK(tr_system_start(s.sys));
  scripted_run(&s);
  for (unsigned i = 0; i < NACTORS; i++) {
    tr_actor_stats st;
    OK(tr_actor_stats_get(tr_system_ctx(s.sys), s.ref[i], &st));
    cr_assert_eq(st.handled, want[i], "%s: mailbox handled %llu", names[i],
                 (unsigned long long)st.handled);
    cr_assert_gt(st.runs, 0);
    cr_assert_gt(st.busy_ns, 0);
  }
  OK(tr_trace_stop(s.sys));
  tr_system_free(s.sys);

  char cmd[512], *table;
  snprintf(cmd, sizeof cmd, "%s table %s 2>&1", TROUPE_TRACE_TOOL, path);
  cr_assert_eq(run(cmd, &table), 0, "%s:\n%s", cmd, table);
  for (unsigned i = 0; i < NACTORS; i++)
    cr_assert_eq(table_messages(table, names[i]), want[i], "%s in the table:\n%s", names[i], table);
  cr_assert_null(strstr(table, "events were lost"), "%s", table);
  cr_assert_null(strstr(table, "no end record"), "%s", table);
  free(table);
  unlink(path);
}

Test(trace, perfetto_json_and_svg_are_well_formed) {
  char path[256], json[256], svg[256];
  temp_path(path, sizeof path, "pf.trace");
  temp_path(json, sizeof json, "pf.json");
  temp_path(svg, sizeof svg, "pf.svg");
  scripted s;
  scripted_spawn(&s, 2);
  OK(tr_trace_start(s.sys, path));
  OK(tr_system_start(s.sys));
  scripted_run(&s);
  /* A dead letter (to a stopped actor) and a restart event (supervision's
   * hook, called here from outside a worker). */
  tr_ref gone;
  tr_actor_spec spec = {.name = "gone", .behaviour = peer_behaviour};
  OK(tr_spawn(tr_system_ctx(s.sys), &spec, NULL, &gone));
  OK(tr_stop(tr_system_ctx(s.sys), gone));
  WAIT(s.sys);
  EXPECT_ST(tr_send(tr_system_ctx(s.sys), gone, PING), TR_ESTALE);
  tri_trace_restart(s.sys, NULL, tri_registry_get(&s.sys->reg, s.ref[BETA]));
  OK(tr_trace_stop(s.sys));
  tr_system_free(s.sys);

  char cmd[4096], *out;
  snprintf(cmd, sizeof cmd, "%s perfetto %s %s 2>&1 && %s svg %s %s --top 3 2>&1",
           TROUPE_TRACE_TOOL, path, json, TROUPE_TRACE_TOOL, path, svg);
  cr_assert_eq(run(cmd, &out), 0, "%s:\n%s", cmd, out);
  free(out);
  if (!have("python3")) {
    unlink(path);
    unlink(json);
    unlink(svg);
    cr_skip_test("python3 not found: the JSON and SVG were written but not parsed "
                 "(tools/install-deps.sh installs python3)");
  }
  /* One track per worker (thread_name metadata, every slice on one),
   * counter tracks for the mailboxes, the dead letter and the restart. */
  snprintf(cmd, sizeof cmd,
           "python3 - %s %s <<'EOF' 2>&1\n"
           "import json, sys, xml.etree.ElementTree as ET\n"
           "d = json.load(open(sys.argv[1]))\n"
           "ev = d['traceEvents']\n"
           "names = {e['tid']: e['args']['name'] for e in ev if e.get('name') == 'thread_name'}\n"
           "assert names.get(0) == 'worker 0' and names.get(1) == 'worker 1', names\n"
           "runs = [e for e in ev if e['ph'] == 'X' and e.get('cat') == 'run']\n"
           "assert runs and all(e['tid'] in (0, 1) for e in runs), 'slices'\n"
           "assert {e['name'] for e in runs} >= {'alpha', 'beta', 'gamma'}, 'names'\n"
           "assert sum(e['args']['messages'] for e in runs if e['name'] == 'beta') == %d\n"
           "ctr = {e['name'] for e in ev if e['ph'] == 'C'}\n"
           "assert any(n.startswith('mailbox beta') for n in ctr), ctr\n"
           "assert any(e['name'] == 'dead letter STALE' for e in ev), 'dead letter'\n"
           "assert any(e['name'] == 'restart beta' for e in ev), 'restart'\n"
           "root = ET.parse(sys.argv[2]).getroot()\n"
           "assert root.tag.endswith('svg') and root.findall('.//{*}polyline'), 'svg'\n"
           "print('ok')\n"
           "EOF",
           json, svg, (int)want[BETA]);
  cr_assert_eq(run(cmd, &out), 0, "python checks failed:\n%s", out);
  free(out);
  unlink(path);
  unlink(json);
  unlink(svg);
}

/* Real supervised restarts reach the trace: one RESTART event per restart
 * in place, under the child's name, and FAILED dead letters. */
static tr_status phoenix(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)ctx;
  (void)state;
  return tr_msg_tag(msg) == PING ? TR_EFAIL : TR_OK;
}

Test(trace, supervised_restarts_are_traced) {
  char path[256], json[256];
  temp_path(path, sizeof path, "sup.trace");
  temp_path(json, sizeof json, "sup.json");
  tr_system *sys;
  tr_system_config cfg = {.threads = 2};
  OK(tr_system_new(&cfg, &sys));
  OK(tr_trace_start(sys, path));
  OK(tr_system_start(sys));
  static const tr_child_spec kids[1] = {
      {.id = "phoenix", .actor = {.name = "phoenix", .behaviour = phoenix}}};
  tr_sup_spec spec = {.name = "sup",
                      .strategy = TR_SUP_ONE_FOR_ONE,
                      .intensity = 10,
                      .period_ms = 10000,
                      .children = kids,
                      .nchildren = 1};
  tr_ref sup, child;
  OK(tr_sup_start(tr_system_ctx(sys), &spec, &sup, &child));
  for (int i = 0; i < 3; i++) {
    OK(tr_send(tr_system_ctx(sys), child, PING));
    WAIT(sys);
  }
  OK(tr_trace_stop(sys));
  tr_system_free(sys);
  char cmd[4096], *out;
  snprintf(cmd, sizeof cmd, "%s perfetto %s %s 2>&1", TROUPE_TRACE_TOOL, path, json);
  cr_assert_eq(run(cmd, &out), 0, "%s:\n%s", cmd, out);
  free(out);
  if (!have("python3")) {
    unlink(path);
    unlink(json);
    cr_skip_test("python3 not found (tools/install-deps.sh installs python3)");
  }
  snprintf(cmd, sizeof cmd,
           "python3 - %s <<'EOF' 2>&1\n"
           "import json, sys\n"
           "ev = json.load(open(sys.argv[1]))['traceEvents']\n"
           "r = [e for e in ev if e.get('name') == 'restart phoenix']\n"
           "assert len(r) == 3, len(r)\n"
           "f = [e for e in ev if e.get('name') == 'dead letter FAILED']\n"
           "assert len(f) == 3, len(f)\n"
           "print('ok')\n"
           "EOF",
           json);
  cr_assert_eq(run(cmd, &out), 0, "python checks failed:\n%s", out);
  free(out);
  unlink(path);
  unlink(json);
}

Test(trace, off_creates_no_file_and_stop_says_so) {
  char path[256];
  temp_path(path, sizeof path, "off.trace");
  unsetenv("TROUPE_TRACE");
  scripted s;
  scripted_spawn(&s, 2);
  OK(tr_system_start(s.sys));
  scripted_run(&s);
  EXPECT_ST(tr_trace_stop(s.sys), TR_ESTATE);
  cr_assert_null(atomic_load(&s.sys->trace));
  cr_assert_null(s.sys->tracing, "nothing of the trace was even made");
  tr_system_free(s.sys);
  cr_assert_not(exists(path));
}

Test(trace, env_var_traces_and_numbers_later_systems) {
  char path[256], path2[300];
  temp_path(path, sizeof path, "env.trace");
  snprintf(path2, sizeof path2, "%s.2", path);
  setenv("TROUPE_TRACE", path, 1);
  for (int round = 0; round < 2; round++) {
    scripted s;
    scripted_spawn(&s, 1);
    OK(tr_system_start(s.sys));
    scripted_run(&s);
    OK(tr_system_stop(s.sys)); /* stops and closes the trace */
    EXPECT_ST(tr_trace_stop(s.sys), TR_ESTATE);
    tr_system_free(s.sys);
  }
  unsetenv("TROUPE_TRACE");
  cr_assert(exists(path));
  cr_assert(exists(path2), "the second system writes %s", path2);
  char cmd[512], *table;
  snprintf(cmd, sizeof cmd, "%s table %s 2>&1", TROUPE_TRACE_TOOL, path2);
  cr_assert_eq(run(cmd, &table), 0, "%s", table);
  cr_assert_eq(table_messages(table, "beta"), want[BETA], "%s", table);
  free(table);
  unlink(path);
  unlink(path2);
}

Test(trace, start_stop_errors_and_restart) {
  char path[256], path2[256];
  temp_path(path, sizeof path, "ss1.trace");
  temp_path(path2, sizeof path2, "ss2.trace");
  scripted s;
  scripted_spawn(&s, 2);
  EXPECT_ST(tr_trace_start(NULL, path), TR_EINVAL);
  EXPECT_ST(tr_trace_start(s.sys, NULL), TR_EINVAL);
  EXPECT_ST(tr_trace_start(s.sys, ""), TR_EINVAL);
  EXPECT_ST(tr_trace_stop(NULL), TR_EINVAL);
  EXPECT_ST(tr_trace_stop(s.sys), TR_ESTATE);
  EXPECT_ST(tr_trace_start(s.sys, "/nonexistent-dir/x/y.trace"), TR_ESYS);
  OK(tr_system_start(s.sys));
  OK(tr_trace_start(s.sys, path));
  EXPECT_ST(tr_trace_start(s.sys, path2), TR_ESTATE);
  scripted_run(&s);
  OK(tr_trace_stop(s.sys));
  /* A second trace of the same system: only what happens during it. */
  OK(tr_trace_start(s.sys, path2));
  for (unsigned i = 0; i < NACTORS; i++)
    atomic_store(&seen[i], 0);
  scripted_run(&s);
  OK(tr_trace_stop(s.sys));
  OK(tr_system_stop(s.sys));
  EXPECT_ST(tr_trace_start(s.sys, path), TR_ESTATE); /* stopped */
  tr_system_free(s.sys);
  char cmd[512], *table;
  const char *files[] = {path, path2};
  for (int f = 0; f < 2; f++) {
    snprintf(cmd, sizeof cmd, "%s table %s 2>&1", TROUPE_TRACE_TOOL, files[f]);
    cr_assert_eq(run(cmd, &table), 0, "%s", table);
    for (unsigned i = 0; i < NACTORS; i++)
      cr_assert_eq(table_messages(table, names[i]), want[i], "trace %d, %s:\n%s", f, names[i],
                   table);
    free(table);
    unlink(files[f]);
  }
}

/* ------------------------------------------------------------ snapshot */

static _Atomic int inside_status = -1;
static _Atomic size_t inside_actors;

static tr_status snapper(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state, (void)msg;
  tr_snapshot *snap;
  tr_status st = tr_snapshot_take(tr_ctx_system(ctx), &snap);
  atomic_store(&inside_status, (int)st);
  if (st == TR_OK) {
    atomic_store(&inside_actors, snap->nactors);
    tr_snapshot_free(snap);
  }
  return TR_OK;
}

Test(trace, snapshot_has_every_actor_and_worker) {
  scripted s;
  scripted_spawn(&s, 2);
  OK(tr_system_start(s.sys));
  scripted_run(&s);
  tr_snapshot *snap;
  EXPECT_ST(tr_snapshot_take(NULL, &snap), TR_EINVAL);
  EXPECT_ST(tr_snapshot_take(s.sys, NULL), TR_EINVAL);
  tr_snapshot_free(NULL);
  OK(tr_snapshot_take(s.sys, &snap));
  cr_assert(snap->counters);
  cr_assert_eq(snap->nworkers, 2);
  cr_assert_eq(snap->nactors, NACTORS);
  cr_assert_eq(snap->system.actors_live, NACTORS);
  uint64_t runs = 0, handled = 0;
  for (size_t i = 0; i < snap->nworkers; i++) {
    runs += snap->workers[i].runs;
    handled += snap->workers[i].handled;
  }
  cr_assert_eq(runs, snap->system.runs);
  cr_assert_eq(handled, snap->system.handled);
  for (size_t i = 0; i < snap->nactors; i++) {
    const tr_actor_snapshot *a = &snap->actors[i];
    unsigned who = NACTORS;
    for (unsigned k = 0; k < NACTORS; k++)
      if (tr_ref_eq(a->ref, s.ref[k]))
        who = k;
    cr_assert_lt(who, NACTORS, "unknown actor in the snapshot");
    cr_assert_str_eq(a->name, names[who]);
    tr_actor_stats st;
    OK(tr_actor_stats_get(tr_system_ctx(s.sys), a->ref, &st));
    cr_assert_eq(a->stats.handled, want[who]);
    cr_assert_eq(a->stats.handled, st.handled);
    cr_assert_eq(a->stats.received, st.received);
    cr_assert_eq(a->stats.runs, st.runs);
    /* Exact at rest in ticks; in ns within the clock's calibration. */
    cr_assert_lt(llabs((long long)(a->stats.busy_ns - st.busy_ns)), 1 + st.busy_ns / 1000);
    cr_assert_gt(a->stats.busy_ns, 0);
    cr_assert_eq(a->stats.depth, 0);
    if (i > 0)
      cr_assert_lt((uint32_t)snap->actors[i - 1].ref.id, (uint32_t)a->ref.id, "index order");
  }
  tr_snapshot_free(snap);

  /* From inside a behaviour, and with a long name cut to fit. */
  static const char long_name[] = "an-actor-name-much-longer-than-a-snapshot-keeps-in-full";
  tr_actor_spec spec = {.name = long_name, .behaviour = snapper};
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(s.sys), &spec, NULL, &r));
  OK(tr_send(tr_system_ctx(s.sys), r, START));
  WAIT(s.sys);
  cr_assert_eq(atomic_load(&inside_status), TR_OK);
  cr_assert_eq(atomic_load(&inside_actors), NACTORS + 1);
  OK(tr_snapshot_take(s.sys, &snap));
  const tr_actor_snapshot *last = &snap->actors[snap->nactors - 1];
  cr_assert_eq(strlen(last->name), TR_SNAPSHOT_NAME - 1);
  cr_assert_eq(strncmp(last->name, long_name, TR_SNAPSHOT_NAME - 1), 0);
  tr_snapshot_free(snap);
  tr_system_free(s.sys);
}

/* Snapshots while actors spawn and stop: every actor found is whole. */
static tr_status churner(tr_ctx *ctx, void *state, const tr_msg *msg) {
  (void)state;
  if (tr_msg_tag(msg) == START) {
    tr_actor_spec spec = {.name = "child", .behaviour = churner};
    tr_ref c;
    if (tr_spawn(ctx, &spec, NULL, &c) == TR_OK && tr_send(ctx, c, PING) != TR_OK)
      return TR_EFAIL;
    uint64_t left;
    if (tr_msg_get_uint(msg, &left) == TR_OK && left > 0)
      return tr_send_uint(ctx, tr_self(ctx), START, left - 1);
    return TR_OK;
  }
  return tr_stop(ctx, tr_self(ctx));
}

Test(trace, snapshot_while_actors_come_and_go) {
  tr_system_config cfg = {.threads = 2};
  tr_system *sys;
  OK(tr_system_new(&cfg, &sys));
  OK(tr_system_start(sys));
  tr_actor_spec spec = {.name = "churner", .behaviour = churner};
  tr_ref r;
  OK(tr_spawn(tr_system_ctx(sys), &spec, NULL, &r));
  OK(tr_send_uint(tr_system_ctx(sys), r, START, 20000));
  for (int i = 0; i < 50; i++) {
    tr_snapshot *snap;
    OK(tr_snapshot_take(sys, &snap));
    for (size_t k = 0; k < snap->nactors; k++)
      cr_assert(strcmp(snap->actors[k].name, "child") == 0 ||
                strcmp(snap->actors[k].name, "churner") == 0);
    tr_snapshot_free(snap);
  }
  WAIT(sys);
  tr_system_free(sys);
}

/* ------------------------------------------------------------ TROUPE_STATS */

Test(trace, stats_env_prints_a_table, .init = cr_redirect_stderr) {
  setenv("TROUPE_STATS", "20", 1);
  scripted s;
  scripted_spawn(&s, 2);
  OK(tr_system_start(s.sys));
  scripted_run(&s);
  struct timespec ts = {0, 80 * 1000 * 1000};
  nanosleep(&ts, NULL);
  OK(tr_system_stop(s.sys));
  tr_system_free(s.sys);
  unsetenv("TROUPE_STATS");
  fflush(stderr);
  FILE *err = cr_get_redirected_stderr();
  char buf[8192];
  size_t n = fread(buf, 1, sizeof buf - 1, err);
  buf[n] = '\0';
  cr_assert(strstr(buf, "troupe stats") != NULL, "stderr:\n%s", buf);
  cr_assert(strstr(buf, "top actors by message rate") != NULL, "stderr:\n%s", buf);
  cr_assert(strstr(buf, "alpha") != NULL, "stderr:\n%s", buf);
}

Test(trace, stats_env_bad_value_is_reported_and_ignored, .init = cr_redirect_stderr) {
  setenv("TROUPE_STATS", "soon", 1);
  scripted s;
  scripted_spawn(&s, 1);
  OK(tr_system_start(s.sys));
  scripted_run(&s);
  tr_system_free(s.sys);
  unsetenv("TROUPE_STATS");
  fflush(stderr);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, cr_get_redirected_stderr());
  buf[n] = '\0';
  cr_assert(strstr(buf, "TROUPE_STATS=soon") != NULL, "stderr:\n%s", buf);
}

/* ------------------------------------------------------------ the tool */

/* Where the i-th truncation (0 <= i < 20) cuts a file of `size` bytes:
 * inside the header, at its end, then spread over the records, mostly in
 * the middle of one. */
static long cut_at(int i, long size) {
  static const long first[] = {0, 7, 40, 63, 64, 65, 64 + 32, 64 + 33};
  if (i < 8)
    return first[i] < size ? first[i] : size;
  return 64 + (size - 64) * (i - 7) / 13 - (i % 5) * 7;
}

/* The tool on a cut-off or damaged trace: a clear message, never a crash. */
Test(trace, tool_survives_truncated_and_corrupt_files) {
  char path[256], bad[256], json[256];
  temp_path(path, sizeof path, "good.trace");
  temp_path(bad, sizeof bad, "bad.trace");
  temp_path(json, sizeof json, "bad.json");
  scripted s;
  scripted_spawn(&s, 2);
  OK(tr_trace_start(s.sys, path));
  OK(tr_system_start(s.sys));
  scripted_run(&s);
  tr_system_free(s.sys); /* stops the trace */
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  rewind(f);
  uint8_t *data = malloc((size_t)size);
  cr_assert_eq(fread(data, 1, (size_t)size, f), (size_t)size);
  fclose(f);
  uint64_t seed = 42;
  for (int i = 0; i < 40; i++) {
    long len = i < 20 ? cut_at(i, size) : size;
    uint8_t *copy = malloc((size_t)size);
    memcpy(copy, data, (size_t)size);
    if (i >= 20) /* damage: random bytes at random places */
      for (int k = 0; k < 16; k++) {
        seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
        copy[seed % (uint64_t)size] = (uint8_t)(seed >> 32);
      }
    f = fopen(bad, "wb");
    cr_assert_not_null(f);
    fwrite(copy, 1, (size_t)len, f);
    fclose(f);
    free(copy);
    const char *cmds[] = {"table %s", "perfetto %s %s", "svg %s %s"};
    for (int c = 0; c < 3; c++) {
      char cmd[1024], args[600];
      snprintf(args, sizeof args, cmds[c], bad, json);
      snprintf(cmd, sizeof cmd, "%s %s >/dev/null 2>&1", TROUPE_TRACE_TOOL, args);
      int st = system(cmd);
      cr_assert(WIFEXITED(st) && (WEXITSTATUS(st) == 0 || WEXITSTATUS(st) == 1),
                "%s (file of %ld bytes): status %d", cmd, len, st);
    }
  }
  free(data);
  /* Not a trace at all, an empty file, a missing file: exit 1 with a message. */
  const char *junk[] = {"", "TROUPETR", "hello, world\n"};
  for (int j = 0; j < 3; j++) {
    f = fopen(bad, "wb");
    fputs(junk[j], f);
    fclose(f);
    char cmd[600], *out;
    snprintf(cmd, sizeof cmd, "%s table %s 2>&1", TROUPE_TRACE_TOOL, bad);
    int st = run(cmd, &out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1, "%s: %d", cmd, st);
    cr_assert(strstr(out, "troupe-trace: ") != NULL, "%s", out);
    free(out);
  }
  char cmd[600];
  snprintf(cmd, sizeof cmd, "%s table /nonexistent/trace >/dev/null 2>&1", TROUPE_TRACE_TOOL);
  int st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 1);
  snprintf(cmd, sizeof cmd, "%s frobnicate x >/dev/null 2>&1", TROUPE_TRACE_TOOL);
  st = system(cmd);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 2);
  unlink(path);
  unlink(bad);
  unlink(json);
}

/* ------------------------------------------------------------ bad input */

/* docs/bad-input.md, section "Tracing": one test per row. */

static tr_system *bad_sys(void) {
  tr_system *sys;
  tr_system_config cfg = {.threads = 1};
  OK(tr_system_new(&cfg, &sys));
  return sys;
}

Test(bad_input, snapshot_take_null_sys) {
  tr_snapshot *snap = (tr_snapshot *)&snap; /* must stay as it was */
  tr_snapshot *before = snap;
  EXPECT_ST(tr_snapshot_take(NULL, &snap), TR_EINVAL);
  cr_assert_eq(snap, before);
}

Test(bad_input, snapshot_take_null_out) {
  tr_system *sys = bad_sys();
  EXPECT_ST(tr_snapshot_take(sys, NULL), TR_EINVAL);
  tr_system_free(sys);
}

Test(bad_input, snapshot_free_null) { tr_snapshot_free(NULL); }

Test(bad_input, trace_start_null_sys) {
  char path[256];
  temp_path(path, sizeof path, "bad1.trace");
  EXPECT_ST(tr_trace_start(NULL, path), TR_EINVAL);
  cr_assert_not(exists(path));
}

Test(bad_input, trace_start_bad_path) {
  tr_system *sys = bad_sys();
  EXPECT_ST(tr_trace_start(sys, NULL), TR_EINVAL);
  EXPECT_ST(tr_trace_start(sys, ""), TR_EINVAL);
  EXPECT_ST(tr_trace_stop(sys), TR_ESTATE); /* nothing started */
  tr_system_free(sys);
}

Test(bad_input, trace_start_unwritable) {
  tr_system *sys = bad_sys();
  errno = 0;
  EXPECT_ST(tr_trace_start(sys, "/nonexistent-troupe-dir/x.trace"), TR_ESYS);
  cr_assert_eq(errno, ENOENT);
  EXPECT_ST(tr_trace_stop(sys), TR_ESTATE);
  tr_system_free(sys);
}

Test(bad_input, trace_start_twice) {
  char path[256], path2[256];
  temp_path(path, sizeof path, "twice1.trace");
  temp_path(path2, sizeof path2, "twice2.trace");
  tr_system *sys = bad_sys();
  OK(tr_trace_start(sys, path));
  EXPECT_ST(tr_trace_start(sys, path2), TR_ESTATE);
  cr_assert_not(exists(path2));
  OK(tr_trace_stop(sys)); /* the first one was still running */
  tr_system_free(sys);
  unlink(path);
}

Test(bad_input, trace_start_stopped) {
  char path[256];
  temp_path(path, sizeof path, "stopped.trace");
  tr_system *sys = bad_sys();
  OK(tr_system_start(sys));
  OK(tr_system_stop(sys));
  EXPECT_ST(tr_trace_start(sys, path), TR_ESTATE);
  cr_assert_not(exists(path));
  tr_system_free(sys);
}

Test(bad_input, trace_stop_null_sys) { EXPECT_ST(tr_trace_stop(NULL), TR_EINVAL); }

Test(bad_input, trace_stop_not_running) {
  char path[256];
  temp_path(path, sizeof path, "notrunning.trace");
  tr_system *sys = bad_sys();
  EXPECT_ST(tr_trace_stop(sys), TR_ESTATE);
  OK(tr_trace_start(sys, path));
  OK(tr_trace_stop(sys));
  EXPECT_ST(tr_trace_stop(sys), TR_ESTATE);
  tr_system_free(sys);
  unlink(path);
}
